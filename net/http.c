/*
 * http.c - HTTP/1.1 connections: parsing (llhttp, strict), limits, timeouts,
 * pipelining with responses in request order.
 *
 * Bounds and what happens at them:
 *   request line + headers > header_bytes_max   431, connection closed
 *   more than NET_HEADERS_MAX header fields      431, connection closed
 *   an Expect other than 100-continue            417, connection closed
 *   URL > NET_URL_MAX                            414, connection closed
 *   body > body_bytes_max (declared or sent)     413, connection closed
 *   malformed request, CL + TE, bad chunking     400, connection closed
 *   request not complete within request_timeout  408, connection closed
 *   keep-alive idle > idle_timeout               closed silently
 *   pipeline_max requests waiting for responses  parsing pauses, reading stops,
 *                                                both resume as responses leave
 *   connections_max open connections             503 + Retry-After, closed
 */
#include "net_internal.h"

#include <ctype.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

typedef struct conn_write {
    uv_write_t req;
    char *buf;
    bool close_after;
} conn_write;

static void conn_close(net_conn *c);
static void conn_flush(net_conn *c);
static int conn_send(net_conn *c, char *buf, size_t len, bool close_after);
static void conn_resume(net_conn *c);
static void timer_ensure(net_conn *c);
static void conn_handoff_now(net_conn *c);

static const char *status_text(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 204:
        return "No Content";
    case 304:
        return "Not Modified";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 410:
        return "Gone";
    case 413:
        return "Content Too Large";
    case 414:
        return "URI Too Long";
    case 415:
        return "Unsupported Media Type";
    case 416:
        return "Range Not Satisfiable";
    case 417:
        return "Expectation Failed";
    case 422:
        return "Unprocessable Content";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 503:
        return "Service Unavailable";
    default:
        return "Unknown";
    }
}

/* IMF-fixdate of now (RFC 9110 5.6.7), formatted once per second per thread. */
static const char *http_date(void)
{
    static _Thread_local char buf[40];
    static _Thread_local time_t last = -1;
    time_t now = time(NULL);
    if (now != last) {
        struct tm tm;
        gmtime_r(&now, &tm);
        size_t n = strftime(buf, sizeof(buf), "%a, %d %b %Y %H:%M:%S GMT", &tm);
        NET_ASSERT(n == 29); /* net__respond copies exactly this much */
        last = now;
    }
    return buf;
}

/* Appends `len` bytes at *at (the caller sized the buffer). */
static char *put(char *at, const char *s, size_t len)
{
    memcpy(at, s, len);
    return at + len;
}

static char *put_str(char *at, const char *s)
{
    return put(at, s, strlen(s));
}

/* Status line and headers are assembled by hand: this runs for every
 * answer, and snprintf showed in profiles. */
void net__respond(net_request *req, int status, const char *content_type, const char *extra_headers,
                  const char *body, size_t body_len)
{
    NET_ASSERT(!req->done && req->resp == NULL);
    NET_ASSERT(status >= 100 && status <= 999);
    if (!req->keep_alive)
        req->close_after = true;
    const char *extra = extra_headers != NULL ? extra_headers : "";
    const char *text = status_text(status);
    size_t rate_len = strlen(req->rate_headers);
    size_t cap = 160 + strlen(text) + strlen(content_type) + strlen(extra) + rate_len + body_len;
    req->resp = malloc(cap);
    NET_ASSERT(req->resp != NULL);
    char *o = req->resp;
    char code[5] = {(char)('0' + status / 100), (char)('0' + status / 10 % 10),
                    (char)('0' + status % 10), ' ', '\0'};
    o = put(o, "HTTP/1.1 ", 9);
    o = put(o, code, 4);
    o = put_str(o, text);
    o = put(o, "\r\nDate: ", 8);
    o = put(o, http_date(), 29); /* IMF-fixdate: always 29 bytes */
    o = put(o, "\r\n", 2);
    if (status != 204 && status != 304) {
        /* 204 and 304 carry no Content-Length or Content-Type (RFC 9110 8.6,
         * 15.4.5): a 304's length would have to be the 200's. */
        char len[24];
        size_t i = sizeof(len);
        size_t v = body_len;
        do {
            len[--i] = (char)('0' + v % 10);
            v /= 10;
        } while (v != 0);
        o = put(o, "Content-Type: ", 14);
        o = put_str(o, content_type);
        o = put(o, "\r\nContent-Length: ", 18);
        o = put(o, len + i, sizeof(len) - i);
        o = put(o, "\r\n", 2);
    } else {
        NET_ASSERT(body_len == 0);
    }
    if (req->close_after)
        o = put(o, "Connection: close\r\n", 19);
    o = put_str(o, extra);
    o = put(o, req->rate_headers, rate_len);
    o = put(o, "\r\n", 2);
    size_t n = (size_t)(o - req->resp);
    NET_ASSERT(n + body_len <= cap);
    if (req->method == HTTP_HEAD)
        body_len = 0;
    if (body_len > 0)
        memcpy(o, body, body_len);
    req->resp_body_off = n;
    req->resp_len = n + body_len;
    req->status = status;
}

void net__conn_last_request(net_request *req)
{
    req->keep_alive = false;
    if (req->conn != NULL)
        req->conn->last_request = true;
}

void net__respond_stream(net_request *req, const char *content_type, net_stream *st)
{
    NET_ASSERT(!req->done && req->resp == NULL && !req->keep_alive);
    size_t cap = 256 + strlen(content_type);
    req->resp = malloc(cap);
    NET_ASSERT(req->resp != NULL);
    int n = snprintf(req->resp, cap,
                     "HTTP/1.1 200 OK\r\nDate: %s\r\nContent-Type: %s\r\nTransfer-Encoding: "
                     "chunked\r\nCache-Control: no-store\r\nX-Accel-Buffering: no\r\nConnection: "
                     "close\r\n\r\n",
                     http_date(), content_type);
    NET_ASSERT(n > 0 && (size_t)n < cap);
    req->resp_len = req->resp_body_off = (size_t)n;
    req->status = 200;
    req->stream = st;
    st->shard = req->shard;
    st->conn = NULL;
}

int net__stream_write(net_stream *st, const char *data, size_t len)
{
    net_conn *c = st->conn;
    if (c == NULL || c->closing || c->lingering)
        return -1;
    if (len == 0)
        return 0; /* a zero-length chunk would end the body */
    char *buf = malloc(len + 32);
    NET_ASSERT(buf != NULL);
    int h = snprintf(buf, 32, "%zx\r\n", len);
    memcpy(buf + h, data, len);
    memcpy(buf + h + len, "\r\n", 2);
    return conn_send(c, buf, (size_t)h + len + 2, false);
}

void net__stream_abort(net_stream *st)
{
    if (st->conn != NULL)
        conn_close(st->conn);
}

void net__stream_end(net_stream *st)
{
    net_conn *c = st->conn;
    if (c == NULL || c->closing || c->lingering)
        return;
    char *buf = malloc(5);
    NET_ASSERT(buf != NULL);
    memcpy(buf, "0\r\n\r\n", 5);
    conn_send(c, buf, 5, true);
}

/* Appends `s` to a JSON string literal being built (escapes quotes,
 * backslashes and control bytes). */
static size_t json_escape(char *out, size_t cap, const char *s)
{
    size_t o = 0;
    for (; *s != '\0' && o + 7 < cap; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') {
            out[o++] = '\\';
            out[o++] = (char)ch;
        } else if (ch < 0x20) {
            o += (size_t)snprintf(out + o, cap - o, "\\u%04x", ch);
        } else {
            out[o++] = (char)ch;
        }
    }
    out[o] = '\0';
    return o;
}

void net__respond_problem(net_request *req, int status, const char *type, const char *title,
                          const char *detail, const char *field, const char *extra_headers)
{
    char d[1024], f[128], body[1600];
    json_escape(d, sizeof(d), detail);
    int n = snprintf(body, sizeof(body),
                     "{\"type\":\"https://usher.dev/problems/%s\",\"title\":\"%s\",\"status\":%d,"
                     "\"detail\":\"%s\"",
                     type, title, status, d);
    if (field != NULL) {
        json_escape(f, sizeof(f), field);
        n += snprintf(body + n, sizeof(body) - (size_t)n, ",\"field\":\"%s\"", f);
    }
    n += snprintf(body + n, sizeof(body) - (size_t)n, "}");
    net__respond(req, status, "application/problem+json", extra_headers, body, (size_t)n);
}

/* ---- Requests ------------------------------------------------------------- */

enum {
    REQUEST_SPARES_MAX = 1024,    /* spare requests kept per shard */
    REQUEST_SPARE_BODY_MAX = 4096 /* a spare keeps its body buffer up to this size */
};

static net_request *request_new(net_conn *c)
{
    net_shard *sh = c->shard;
    net_request *r = sh->req_spare;
    if (r != NULL) {
        sh->req_spare = r->job.req;
        sh->req_spare_len--;
        /* Everything above the buffers is cleared, the buffers emptied; a
         * body buffer stays (bodies are alike: no malloc per request). */
        char *body = r->body;
        size_t body_cap = r->body_cap;
        memset(r, 0, offsetof(net_request, url));
        r->body = body;
        r->body_cap = body_cap;
        if (body != NULL)
            body[0] = '\0';
        r->url[0] = r->authorization[0] = r->idempotency_key[0] = '\0';
        r->if_none_match[0] = r->content_type[0] = r->expect[0] = r->rate_headers[0] = '\0';
        r->admission_token[0] = r->last_event_id[0] = '\0';
    } else {
        r = calloc(1, sizeof(*r));
        NET_ASSERT(r != NULL);
    }
    r->conn = c;
    r->shard = sh;
    r->route_id = -1;
    r->seq = c->next_seq++;
    r->start_ns = uv_hrtime();
    r->keep_alive = true;
    r->route = "other";
    return r;
}

static void request_free(net_request *r)
{
    if (r == NULL)
        return;
    if (r->busy) {
        /* A job owns it: it is freed when the job returns (net__request_finish). */
        r->orphan = true;
        r->conn = NULL;
        return;
    }
    if (r->stream != NULL) {
        /* A streamed answer whose head never left (the connection closed first). */
        net_stream *st = r->stream;
        r->stream = NULL;
        st->ops->closed(st);
    }
    json_decref(r->job.body);
    free(r->job.text);
    free(r->resp);
    net_shard *sh = r->shard;
    if (r->body_cap > REQUEST_SPARE_BODY_MAX) {
        free(r->body);
        r->body = NULL;
        r->body_cap = 0;
    }
    if (!r->internal && sh->req_spare_len < REQUEST_SPARES_MAX) {
        r->job.req = sh->req_spare;
        sh->req_spare = r;
        sh->req_spare_len++;
        return;
    }
    free(r->body);
    free(r);
}

void net__request_spares_free(net_shard *sh)
{
    while (sh->req_spare != NULL) {
        net_request *r = sh->req_spare;
        sh->req_spare = r->job.req;
        free(r->body);
        free(r);
    }
    sh->req_spare_len = 0;
}

void net__request_free(net_request *r)
{
    request_free(r);
}

/* Adds to a counter only this shard's thread writes: a relaxed load and
 * store, not a locked read-modify-write; readers (/metrics) see whole values. */
static void count_add(_Atomic uint64_t *c, uint64_t n)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
                          memory_order_relaxed);
}

/* Runs on the request's shard thread (the only writer of these counters). */
static void record_metrics(net_request *r)
{
    net_metrics *m = &r->shard->m;
    uint64_t ns = uv_hrtime() - r->start_ns;
    count_add(&m->requests, 1);
    count_add(&m->latency_sum_ns, ns);
    uint64_t us = ns / 1000;
    int b = 0;
    while (b < 15 && us >= ((uint64_t)16 << b))
        b++;
    count_add(&m->latency_hist[b], 1);
    int cls = r->status / 100;
    if (cls >= 1 && cls <= 5) {
        count_add(&m->status_class[cls], 1);
        int slot = r->route_id >= 0 && r->route_id < NET_ROUTE_SLOTS - 1 ? r->route_id
                                                                         : NET_ROUTE_SLOTS - 1;
        count_add(&m->route_status[slot][cls], 1);
    }
}

void net__request_finish(net_request *req)
{
    if (req->dispatching) {
        req->finish_pending = true;
        return;
    }
    NET_ASSERT(req->resp != NULL && !req->done && !req->busy);
    req->done = true;
    record_metrics(req);
    if (req->internal) {
        net_server *s = req->shard->server;
        uv_mutex_lock(&s->call_mu);
        s->call_done = true;
        uv_cond_signal(&s->call_cond);
        uv_mutex_unlock(&s->call_mu);
        return;
    }
    if (req->orphan) {
        request_free(req);
        return;
    }
    conn_flush(req->conn);
}

void net__respond_reset(net_request *req)
{
    free(req->resp);
    req->resp = NULL;
    req->resp_len = 0;
    req->status = 0;
}

/* ---- Writing ---------------------------------------------------------------- */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void on_discard(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    (void)buf;
    net_conn *c = s->data;
    if (n == UV_EOF && c->stream != NULL && !c->lingering) {
        /* A client that half-closed after asking for a stream still reads it;
         * a vanished one shows up as a failed write (heartbeats come each second). */
        uv_read_stop(s);
        c->reading = false;
        return;
    }
    if (n < 0)
        conn_close(c);
}
static void on_linger_end(uv_timer_t *t)
{
    conn_close(t->data);
}
static void on_shutdown(uv_shutdown_t *r, int status)
{
    (void)status;
    free(r);
}
static void conn_linger(net_conn *c)
{
    uv_shutdown_t *r = malloc(sizeof(*r));
    if (r == NULL || uv_shutdown(r, (uv_stream_t *)&c->tcp, on_shutdown) != 0) {
        free(r);
        conn_close(c);
        return;
    }
    c->lingering = true;
    uv_read_stop((uv_stream_t *)&c->tcp);
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_discard);
    uv_timer_start(&c->timer, on_linger_end, 2000, 0);
}

static void on_write(uv_write_t *w, int status)
{
    conn_write *cw = (conn_write *)w;
    net_conn *c = w->data;
    c->writes_pending--;
    free(cw->buf);
    bool close_after = cw->close_after;
    free(cw);
    if (status < 0) {
        conn_close(c);
        return;
    }
    if (close_after) {
        conn_linger(c);
        return;
    }
    if (c->handoff != NULL) {
        if (c->writes_pending == 0)
            conn_handoff_now(c);
        return;
    }
    if (c->stream != NULL) {
        if (c->writes_pending == 0 && !c->closing)
            c->stream->ops->drained(c->stream);
        return;
    }
    conn_resume(c);
}

/* Writes `buf` (malloc'd; ownership passes here). When nothing is queued
 * before it, the write is tried at once (most answers fit the socket buffer:
 * no write request, no callback, no epoll change); what does not fit is
 * queued with uv_write. Returns -1 if the connection is closing, 0 when the
 * answer went out whole, 1 when some of it is queued. */
static int conn_send(net_conn *c, char *buf, size_t len, bool close_after)
{
    size_t off = 0;
    if (c->writes_pending == 0) {
        uv_buf_t b = uv_buf_init(buf, (unsigned)len);
        int n = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
        if (n >= 0) {
            off = (size_t)n;
        } else if (n != UV_EAGAIN) {
            free(buf);
            conn_close(c);
            return -1;
        }
    }
    if (off == len) {
        free(buf);
        if (close_after)
            conn_linger(c);
        return 0;
    }
    conn_write *cw = calloc(1, sizeof(*cw));
    NET_ASSERT(cw != NULL);
    cw->buf = buf;
    cw->close_after = close_after;
    cw->req.data = c;
    uv_buf_t b = uv_buf_init(buf + off, (unsigned)(len - off));
    c->writes_pending++;
    if (uv_write(&cw->req, (uv_stream_t *)&c->tcp, &b, 1, on_write) != 0) {
        c->writes_pending--;
        free(buf);
        free(cw);
        conn_close(c);
        return -1;
    }
    return 1;
}

/* Answers left at once: go on as on_write would (after the parse, if one
 * is running: llhttp must not be re-entered). */
static void conn_written(net_conn *c)
{
    if (c->parsing)
        c->resume_wanted = true;
    else
        conn_resume(c);
}

/* Sends every finished response at the head of the queue, in order. */
static void conn_flush(net_conn *c)
{
    bool sent = false;
    while (c->qlen > 0 && !c->closing) {
        net_request *r = c->queue[c->qhead % NET_PIPELINE_HARD_MAX];
        if (!r->done)
            break;
        c->qhead++;
        c->qlen--;
        char *resp = r->resp;
        size_t len = r->resp_len;
        bool stop = r->close_after;
        r->resp = NULL;
        net_stream *st = r->stream;
        r->stream = NULL;
        request_free(r);
        if (st != NULL) {
            /* A streamed answer: the connection is the producer's from now on.
             * Nothing more is parsed; reading only notices the peer's close. */
            NET_ASSERT(c->qlen == 0);
            c->stream = st;
            st->conn = c;
            /* The kernel's share of a slow reader's backlog is bounded too. */
            int sndbuf = NET_STREAM_SNDBUF;
            uv_send_buffer_size((uv_handle_t *)&c->tcp, &sndbuf);
            uv_timer_stop(&c->timer);
            uv_read_stop((uv_stream_t *)&c->tcp);
            c->reading = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_discard) == 0;
            int rc = conn_send(c, resp, len, false);
            if (c->shard->stopping)
                net__stream_end(st); /* the server is stopping: an empty body, then close */
            else if (rc == 0)
                st->ops->drained(st);
            return;
        }
        if (stop) {
            /* Nothing after a closing response is answered. */
            uv_read_stop((uv_stream_t *)&c->tcp);
            c->reading = false;
            conn_send(c, resp, len, true);
            return;
        }
        int rc = conn_send(c, resp, len, false);
        if (rc < 0)
            return;
        sent |= rc == 0;
    }
    if (sent)
        conn_written(c);
    else if (c->qlen == 0 && c->cur == NULL)
        timer_ensure(c); /* answers queued unsent: the idle deadline still holds */
}

/* ---- Parsing --------------------------------------------------------------------- */

static net_conn *conn_of(llhttp_t *p)
{
    return p->data;
}

static uint64_t loop_now(net_conn *c);

static int on_message_begin(llhttp_t *p)
{
    net_conn *c = conn_of(p);
    NET_ASSERT(c->cur == NULL);
    c->cur = request_new(c);
    c->header_bytes = 0;
    c->header_count = 0;
    c->in_headers = true;
    c->hdr_field_len = 0;
    c->req_deadline_ms = loop_now(c) + c->shard->server->cfg.request_timeout_ms;
    timer_ensure(c);
    return 0;
}

/* Sets the status the error response will carry, then fails the parse. */
static int parse_refuse(net_conn *c, int status)
{
    if (c->cur != NULL && c->cur->status == 0)
        c->cur->status = status;
    return HPE_USER;
}

static int count_header_bytes(net_conn *c, size_t n)
{
    c->header_bytes += n;
    if (c->header_bytes > c->shard->server->cfg.header_bytes_max)
        return parse_refuse(c, 431);
    return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t n)
{
    net_conn *c = conn_of(p);
    net_request *r = c->cur;
    if (r->url_len + n >= NET_URL_MAX)
        return parse_refuse(c, 414);
    memcpy(r->url + r->url_len, at, n);
    r->url_len += n;
    r->url[r->url_len] = '\0';
    return count_header_bytes(c, n);
}

static int on_header_field(llhttp_t *p, const char *at, size_t n)
{
    net_conn *c = conn_of(p);
    for (size_t i = 0; i < n && c->hdr_field_len + 1 < sizeof(c->hdr_field); i++)
        c->hdr_field[c->hdr_field_len++] = (char)tolower((unsigned char)at[i]);
    c->hdr_field[c->hdr_field_len] = '\0';
    return count_header_bytes(c, n);
}

/* Chooses where the value of the header just named goes (or nowhere). */
static int on_header_field_complete(llhttp_t *p)
{
    net_conn *c = conn_of(p);
    net_request *r = c->cur;
    if (c->hdr_field_len == 0)
        return HPE_USER; /* ": value": a header without a name */
    if (++c->header_count > NET_HEADERS_MAX)
        return parse_refuse(c, 431);
    if (count_header_bytes(c, 3) != 0) /* ':', CR, LF */
        return HPE_USER;
#define WANTED(name, field)                                                    \
    {                                                                          \
        name, sizeof(name) - 1, offsetof(net_request, field), sizeof(r->field) \
    }
    static const struct {
        const char *name;
        size_t len, off, cap;
    } wanted[] = {
        WANTED("authorization", authorization),
        WANTED("idempotency-key", idempotency_key),
        WANTED("if-none-match", if_none_match),
        WANTED("content-type", content_type),
        WANTED("expect", expect),
        WANTED("admission-token", admission_token),
        WANTED("last-event-id", last_event_id),
    };
#undef WANTED
    c->hdr_value_dst = NULL;
    for (size_t i = 0; i < sizeof(wanted) / sizeof(wanted[0]); i++) {
        if (c->hdr_field_len == wanted[i].len &&
            memcmp(c->hdr_field, wanted[i].name, wanted[i].len) == 0) {
            c->hdr_value_dst = (char *)r + wanted[i].off;
            c->hdr_value_cap = wanted[i].cap;
            c->hdr_value_dst[0] = '\0';
        }
    }
    c->hdr_value_len = 0;
    return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t n)
{
    net_conn *c = conn_of(p);
    if (c->hdr_value_dst != NULL) {
        if (c->hdr_value_len + n >= c->hdr_value_cap)
            return parse_refuse(c, 431); /* one header we use is longer than we keep */
        memcpy(c->hdr_value_dst + c->hdr_value_len, at, n);
        c->hdr_value_len += n;
        c->hdr_value_dst[c->hdr_value_len] = '\0';
    }
    return count_header_bytes(c, n);
}

static int on_header_value_complete(llhttp_t *p)
{
    net_conn *c = conn_of(p);
    c->hdr_field_len = 0;
    c->hdr_value_dst = NULL;
    return 0;
}

static int on_headers_complete(llhttp_t *p)
{
    net_conn *c = conn_of(p);
    net_request *r = c->cur;
    c->in_headers = false;
    r->method = (llhttp_method_t)p->method;
    r->keep_alive = llhttp_should_keep_alive(p) != 0;
    p->upgrade = 0;
    /* A declared body that will not fit is refused before it is sent. */
    if ((p->flags & F_CONTENT_LENGTH) && p->content_length > c->shard->server->cfg.body_bytes_max)
        return parse_refuse(c, 413);
    if (r->expect[0] != '\0') {
        if (strcasecmp(r->expect, "100-continue") != 0)
            return parse_refuse(c, 417);
        /* The client waits for a go-ahead before sending its body. It can
         * only go out now if no earlier answer is still owed (answers are in
         * order); otherwise the client sends after its own short wait. */
        bool body = (p->flags & F_CHUNKED) || ((p->flags & F_CONTENT_LENGTH) && p->content_length);
        if (body && c->qlen == 0 && c->writes_pending == 0) {
            static const char go[] = "HTTP/1.1 100 Continue\r\n\r\n";
            char *copy = malloc(sizeof(go) - 1);
            NET_ASSERT(copy != NULL);
            memcpy(copy, go, sizeof(go) - 1);
            if (conn_send(c, copy, sizeof(go) - 1, false) == 0)
                conn_written(c);
        }
    }
    return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t n)
{
    net_conn *c = conn_of(p);
    net_request *r = c->cur;
    if (r->body_len + n > c->shard->server->cfg.body_bytes_max)
        return parse_refuse(c, 413);
    if (r->body_len + n + 1 > r->body_cap) {
        size_t cap = r->body_cap ? r->body_cap : 1024;
        while (cap < r->body_len + n + 1)
            cap *= 2;
        char *b = realloc(r->body, cap);
        NET_ASSERT(b != NULL);
        r->body = b;
        r->body_cap = cap;
    }
    memcpy(r->body + r->body_len, at, n);
    r->body_len += n;
    r->body[r->body_len] = '\0';
    return 0;
}

static int on_message_complete(llhttp_t *p)
{
    net_conn *c = conn_of(p);
    net_request *r = c->cur;
    c->cur = NULL;
    NET_ASSERT(c->qlen < NET_PIPELINE_HARD_MAX);
    c->queue[(c->qhead + c->qlen) % NET_PIPELINE_HARD_MAX] = r;
    c->qlen++;
    c->idle_deadline_ms = loop_now(c) + c->shard->server->cfg.idle_timeout_ms;
    net__dispatch(r);
    if (c->last_request)
        return HPE_PAUSED; /* nothing after it is parsed (conn_execute drops the rest) */
    /* Stop parsing while this many answers are owed; conn_resume goes on. */
    if (c->qlen + c->writes_pending >= c->shard->server->cfg.pipeline_max && !c->closing)
        return HPE_PAUSED;
    return 0;
}

static llhttp_settings_t parser_settings;
static uv_once_t parser_settings_once = UV_ONCE_INIT;

static void settings_init(void)
{
    llhttp_settings_t *sp = &parser_settings;
    {
        llhttp_settings_t s;
        llhttp_settings_init(&s);
        s.on_message_begin = on_message_begin;
        s.on_url = on_url;
        s.on_header_field = on_header_field;
        s.on_header_field_complete = on_header_field_complete;
        s.on_header_value = on_header_value;
        s.on_header_value_complete = on_header_value_complete;
        s.on_headers_complete = on_headers_complete;
        s.on_body = on_body;
        s.on_message_complete = on_message_complete;
        *sp = s;
    }
}

/* Built once, before any shard thread can race to it. */
static const llhttp_settings_t *settings(void)
{
    uv_once(&parser_settings_once, settings_init);
    return &parser_settings;
}

/* A parse error: answer it (in order, after what is owed) and close. */
static void conn_parse_error(net_conn *c, llhttp_errno_t err)
{
    c->read_done = true; /* the parser is done with this connection */
    if (err == HPE_CLOSED_CONNECTION) {
        /* Bytes after a closing request. A linger already running (its
         * answer went out within this parse) keeps discarding them. */
        if (!c->lingering) {
            uv_read_stop((uv_stream_t *)&c->tcp);
            c->reading = false;
        }
        return;
    }
    net_request *r = c->cur != NULL ? c->cur : request_new(c);
    c->cur = NULL;
    int status = r->status != 0 ? r->status : 400;
    r->status = 0;
    r->keep_alive = false;
    atomic_fetch_add(&c->shard->m.bad_requests, 1);
    const char *reason = llhttp_get_error_reason(&c->parser);
    if (status == 431)
        net__respond_problem(r, 431, "headers-too-large", "Request header fields too large",
                             "the request line and headers exceed the server's limit", NULL, NULL);
    else if (status == 413)
        net__respond_problem(r, 413, "body-too-large", "Content too large",
                             "the request body exceeds the server's limit", NULL, NULL);
    else if (status == 414)
        net__respond_problem(r, 414, "uri-too-long", "URI too long",
                             "the request target exceeds the server's limit", NULL, NULL);
    else if (status == 417)
        net__respond_problem(r, 417, "expectation-failed", "Expectation failed",
                             "the only expectation supported is 100-continue", "expect", NULL);
    else
        net__respond_problem(r, 400, "malformed-request", "Malformed HTTP request",
                             reason != NULL && err != HPE_USER ? reason : "invalid HTTP request",
                             NULL, NULL);
    r->route = "error";
    uv_read_stop((uv_stream_t *)&c->tcp);
    c->reading = false;
    if (c->qlen == NET_PIPELINE_HARD_MAX) {
        request_free(r); /* nowhere to queue it; the owed answers still go */
        return;
    }
    c->queue[(c->qhead + c->qlen) % NET_PIPELINE_HARD_MAX] = r;
    c->qlen++;
    net__request_finish(r);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    (void)h;
    /* One buffer per shard thread: llhttp copies what a request keeps, so
     * the bytes are dead once on_read returns. */
    static _Thread_local char rbuf[64 * 1024];
    *buf = uv_buf_init(rbuf, sizeof(rbuf));
}

/* Parses `len` bytes. If parsing pauses (too many answers owed), the
 * unparsed rest is kept and reading stops until conn_resume. */
static void conn_execute(net_conn *c, const char *data, size_t len)
{
    NET_ASSERT(!c->parsing);
    c->parsing = true;
    llhttp_errno_t err = llhttp_execute(&c->parser, data, len);
    c->parsing = false;
    if (err == HPE_OK)
        return;
    if (err != HPE_PAUSED) {
        conn_parse_error(c, err);
        return;
    }
    if (c->last_request) {
        /* The request before was the connection's last (a stream): what
         * follows is never parsed, and the connection closes after it. */
        c->read_done = true;
        if (c->reading) {
            uv_read_stop((uv_stream_t *)&c->tcp);
            c->reading = false;
        }
        return;
    }
    const char *at = llhttp_get_error_pos(&c->parser);
    size_t used = at != NULL ? (size_t)(at - data) : len;
    NET_ASSERT(used <= len && c->paused_data == NULL);
    c->paused = true;
    c->paused_len = len - used;
    if (c->paused_len > 0) {
        c->paused_data = malloc(c->paused_len);
        NET_ASSERT(c->paused_data != NULL);
        memcpy(c->paused_data, data + used, c->paused_len);
    }
    if (c->reading) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = false;
    }
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    net_conn *c = s->data;
    if (n < 0) {
        /* EOF or error: answers already owed may still go out, then close. */
        uv_read_stop(s);
        c->reading = false;
        c->eof = true;
        if (c->qlen == 0 && c->writes_pending == 0 && !c->paused)
            conn_close(c);
        return;
    }
    if (n > 0) {
        conn_execute(c, buf->base, (size_t)n);
        if (c->resume_wanted)
            conn_resume(c); /* answers left during the parse */
    }
}

/* After answers left: resume a paused parse, re-arm the idle timer, read
 * again; or close a connection whose peer is done and who is owed nothing. */
static void conn_resume(net_conn *c)
{
    c->resume_wanted = false;
    if (c->closing)
        return;
    /* A loop, not recursion: answers sent during a resumed parse ask for
     * another resume (resume_wanted), which goes on here. */
    while (c->paused && c->qlen + c->writes_pending < c->shard->server->cfg.pipeline_max) {
        c->paused = false;
        llhttp_resume(&c->parser);
        char *data = c->paused_data;
        size_t len = c->paused_len;
        c->paused_data = NULL;
        c->paused_len = 0;
        if (len > 0)
            conn_execute(c, data, len); /* may pause again */
        free(data);
        if (c->closing)
            return;
        c->resume_wanted = false;
    }
    bool owed = c->qlen > 0 || c->writes_pending > 0;
    if (c->eof && !owed && !c->paused) {
        conn_close(c); /* peer finished (or shutdown) and every answer left */
        return;
    }
    if (c->qlen == 0 && c->cur == NULL) {
        if (!owed)
            c->idle_deadline_ms = loop_now(c) + c->shard->server->cfg.idle_timeout_ms;
        timer_ensure(c); /* idle from the last answer, or from the last request if unsent */
    }
    if (!c->paused && !c->reading && !c->eof && !c->refusing && !c->read_done) {
        if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0)
            c->reading = true;
    }
}

/* ---- Timers ------------------------------------------------------------------------ */

static uint64_t loop_now(net_conn *c)
{
    return uv_now(&c->shard->loop);
}

static void on_timer(uv_timer_t *t);

/* Makes the timer due at the deadline that applies (the request being
 * parsed, else idleness once nothing is owed), or sooner: never later. */
static void timer_ensure(net_conn *c)
{
    if (c->closing || c->lingering || c->stream != NULL)
        return;
    uint64_t now = loop_now(c);
    uint64_t due = c->cur != NULL ? c->req_deadline_ms : c->idle_deadline_ms;
    uint64_t soon = now + c->shard->server->cfg.request_timeout_ms;
    if (c->cur == NULL && due > soon)
        due = soon; /* so that a request starting later needs no earlier timer */
    if (uv_is_active((uv_handle_t *)&c->timer) && c->timer_due_ms <= due)
        return;
    c->timer_due_ms = due;
    uv_timer_start(&c->timer, on_timer, due > now ? due - now : 0, 0);
}

static void on_timer(uv_timer_t *t)
{
    net_conn *c = t->data;
    if (c->closing || c->stream != NULL)
        return;
    uint64_t now = loop_now(c);
    if (c->cur != NULL) {
        if (now < c->req_deadline_ms || c->qlen >= NET_PIPELINE_HARD_MAX) {
            timer_ensure(c);
            return;
        }
        /* A request started and did not finish in time (slow client). */
        atomic_fetch_add(&c->shard->m.timeouts, 1);
        net_request *r = c->cur;
        c->cur = NULL;
        r->keep_alive = false;
        r->route = "error";
        net__respond_problem(r, 408, "request-timeout", "Request timeout",
                             "the request did not arrive completely in time", NULL, NULL);
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = false;
        c->read_done = true; /* the parser is mid-request: never feed it again */
        c->queue[(c->qhead + c->qlen) % NET_PIPELINE_HARD_MAX] = r;
        c->qlen++;
        net__request_finish(r);
        return;
    }
    if (c->qlen > 0)
        return; /* answers being prepared: the last one to leave re-arms (conn_resume) */
    /* Idle, or every answer made and some still unsent: a client that stops
     * reading is closed at the idle deadline like an idle one. */
    if (now < c->idle_deadline_ms) {
        timer_ensure(c);
        return;
    }
    atomic_fetch_add(&c->shard->m.timeouts, 1);
    conn_close(c); /* idle keep-alive connection */
}

/* ---- Lifecycle ----------------------------------------------------------------------- */

static void on_handle_closed(uv_handle_t *h)
{
    net_conn *c = h->data;
    if (--c->handles_open > 0)
        return;
    net_shard *sh = c->shard;
    while (c->qlen > 0) {
        request_free(c->queue[c->qhead % NET_PIPELINE_HARD_MAX]);
        c->qhead++;
        c->qlen--;
    }
    request_free(c->cur);
    free(c->paused_data);
    free(c->handoff); /* a move that never happened (its request was in the queue) */
    if (c->prev != NULL)
        c->prev->next = c->next;
    else if (sh->conns == c)
        sh->conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    sh->nconns--;
    atomic_fetch_sub(&sh->server->connections, 1);
    if (c->stream != NULL) {
        net_stream *st = c->stream;
        st->conn = NULL;
        st->ops->closed(st);
    }
    free(c);
}

static void conn_close(net_conn *c)
{
    if (c->closing)
        return;
    c->closing = true;
    c->reading = false;
    uv_read_stop((uv_stream_t *)&c->tcp);
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, on_handle_closed);
    uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
}

#define REFUSE_BODY                                                                       \
    "{\"type\":\"https://usher.dev/problems/too-many-connections\",\"title\":\"Too many " \
    "connections\",\"status\":503,\"detail\":\"the server is at its connection limit\"}"
/* Built per refusal (the Date changes); the length is computed, not typed:
 * a wrong Content-Length hangs clients. Returns a malloc'd response. */
static const char refuse_body[] = REFUSE_BODY;

static char *refuse_response(size_t *len)
{
    size_t cap = sizeof(refuse_body) + 256;
    char *buf = malloc(cap);
    NET_ASSERT(buf != NULL);
    int n = snprintf(buf, cap,
                     "HTTP/1.1 503 Service Unavailable\r\nDate: %s\r\nContent-Type: "
                     "application/problem+json\r\nRetry-After: 1\r\nConnection: "
                     "close\r\nContent-Length: %zu\r\n\r\n%s",
                     http_date(), sizeof(refuse_body) - 1, refuse_body);
    NET_ASSERT(n > 0 && (size_t)n < cap);
    *len = (size_t)n;
    return buf;
}

/* The peer's address as a rate-limit key (net_conn.peer_key). */
static void peer_key_set(net_conn *c)
{
    struct sockaddr_storage ss;
    int len = (int)sizeof(ss);
    memset(c->peer_key, 0, sizeof(c->peer_key));
    c->peer_known = false;
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) != 0)
        return;
    if (ss.ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)&ss;
        c->peer_key[10] = c->peer_key[11] = 0xff; /* ::ffff:a.b.c.d, as a mapped address */
        memcpy(c->peer_key + 12, &a->sin_addr, 4);
        c->peer_known = true;
    } else if (ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&ss;
        const uint8_t *b = a->sin6_addr.s6_addr;
        static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        /* An IPv4 client of an IPv6 listener keeps its whole address; an
         * IPv6 client is keyed by its /64. */
        memcpy(c->peer_key, b, memcmp(b, mapped, 12) == 0 ? 16 : 8);
        c->peer_known = true;
    }
}

/* A connection on `sh`'s loop, in its list and counted; its socket is not
 * open yet. */
static net_conn *conn_new(net_shard *sh)
{
    net_conn *c = calloc(1, sizeof(*c));
    NET_ASSERT(c != NULL);
    c->shard = sh;
    uv_tcp_init(&sh->loop, &c->tcp);
    uv_timer_init(&sh->loop, &c->timer);
    c->tcp.data = c;
    c->timer.data = c;
    c->handles_open = 2;
    c->next = sh->conns;
    if (sh->conns != NULL)
        sh->conns->prev = c;
    sh->conns = c;
    sh->nconns++;
    atomic_fetch_add(&sh->server->connections, 1);
    return c;
}

void net__conn_accept(net_shard *sh, uv_stream_t *listener)
{
    net_conn *c = conn_new(sh);
    if (uv_accept(listener, (uv_stream_t *)&c->tcp) != 0) {
        conn_close(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    peer_key_set(c);
    llhttp_init(&c->parser, HTTP_REQUEST, settings());
    c->parser.data = c;
    uint32_t open = atomic_load(&sh->server->connections);
    if (open > sh->server->cfg.connections_max || sh->stopping) {
        /* Refuse politely: a complete answer, then close. */
        atomic_fetch_add(&sh->m.connections_refused, 1);
        c->refusing = true;
        size_t len;
        char *resp = refuse_response(&len);
        conn_send(c, resp, len, true);
        return;
    }
    atomic_fetch_add(&sh->m.connections_accepted, 1);
    c->idle_deadline_ms = loop_now(c) + sh->server->cfg.idle_timeout_ms;
    timer_ensure(c);
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0)
        c->reading = true;
    else
        conn_close(c);
}

/* Shutdown: connections owed nothing close now; the others stop reading and
 * close once their answers have left. With `force` (the drain deadline
 * passed), every connection closes now, answers or not. */
void net__conn_close_all(net_shard *sh, bool force)
{
    for (net_conn *c = sh->conns, *next; c != NULL; c = next) {
        next = c->next;
        if (force || c->qlen == 0 || c->stream != NULL) {
            conn_close(c);
        } else {
            uv_read_stop((uv_stream_t *)&c->tcp);
            c->reading = false;
            c->eof = true;
        }
    }
}

/* ---- Handing a connection to another shard ------------------------------------------------
 * A stream about one showtime lives on the shard that owns it (sse.c): the
 * connection moves there. The origin closes its handle on a duplicate of
 * the socket's descriptor (the peer notices nothing: no shutdown, the
 * socket stays open through the duplicate), and the duplicate travels to
 * the target as a job, where it opens as a new connection whose only
 * request is the one being answered. Moving needs a connection owing
 * nothing else: no earlier answer queued (pipelining behind other requests
 * is refused with 400) and none still being written (the move waits for
 * that write). */

typedef struct net_handoff {
    net_job job; /* first: the job pointer is the handoff pointer */
    net_request *req;
    void (*fn)(net_request *);
    int fd;
    bool peer_known;
    uint8_t peer_key[16];
} net_handoff;

static void handoff_back(net_shard *sh, net_job *j)
{
    (void)sh;
    free(j); /* the net_handoff (job first) */
}

/* Runs the route on `sh` for a request whose connection is already `sh`'s. */
static void handoff_dispatch(net_request *r, void (*fn)(net_request *))
{
    r->dispatching = true;
    fn(r);
    r->dispatching = false;
    if (r->finish_pending || !r->busy) {
        r->finish_pending = false;
        net__request_finish(r);
    }
}

static void handoff_run(net_shard *sh, net_job *j)
{
    net_handoff *h = (net_handoff *)j;
    net_request *r = h->req;
    void (*fn)(net_request *) = h->fn;
    int fd = h->fd;
    if (sh->stopping) {
        /* Too late to start a stream here (this shard may have drained
         * already): the client sees the connection close and retries. */
        net__job_complete(sh, j);
        close(fd);
        r->busy = false;
        r->shard = sh;
        request_free(r);
        return;
    }
    net_conn *c = conn_new(sh);
    c->peer_known = h->peer_known;
    memcpy(c->peer_key, h->peer_key, sizeof(c->peer_key));
    net__job_complete(sh, j); /* back to the origin, which frees it: not read after this */
    llhttp_init(&c->parser, HTTP_REQUEST, settings());
    c->parser.data = c;
    c->last_request = true;
    c->read_done = true;
    r->conn = c;
    r->shard = sh;
    r->busy = false;
    r->seq = c->next_seq++;
    c->queue[0] = r;
    c->qhead = 0;
    c->qlen = 1;
    if (uv_tcp_open(&c->tcp, fd) != 0) {
        close(fd);
        conn_close(c); /* frees the request with it */
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    handoff_dispatch(r, fn);
}

/* The connection owes nothing else: move it. */
static void conn_handoff_now(net_conn *c)
{
    net_handoff *h = c->handoff;
    net_request *r = h->req;
    c->handoff = NULL;
    NET_ASSERT(c->qlen == 1 && c->queue[c->qhead % NET_PIPELINE_HARD_MAX] == r &&
               c->writes_pending == 0);
    net_shard *sh = c->shard;
    uv_os_fd_t ufd;
    int fd = -1;
    if (uv_fileno((uv_handle_t *)&c->tcp, &ufd) == 0)
        fd = fcntl(ufd, F_DUPFD_CLOEXEC, 3);
    if (fd < 0) {
        free(h);
        net__respond_problem(r, 503, "unavailable", "Service unavailable",
                             "the stream could not be set up; retry shortly", NULL,
                             "Retry-After: 1\r\n");
        net__request_finish(r);
        return;
    }
    h->fd = fd;
    h->peer_known = c->peer_known;
    memcpy(h->peer_key, c->peer_key, sizeof(h->peer_key));
    /* The request leaves this connection, which closes (its descriptor
     * only: the socket lives on in the duplicate). */
    c->qhead++;
    c->qlen--;
    r->conn = NULL;
    r->busy = true;
    conn_close(c);
    h->job.req = r;
    h->job.run = handoff_run;
    h->job.back = handoff_back;
    if (!net__job_send(sh, &h->job, h->job.target)) {
        /* The way there is full: the client retries (EventSource does). */
        close(fd);
        free(h);
        r->busy = false;
        net__request_free(r);
    }
}

void net__conn_handoff(net_request *r, uint32_t target, void (*fn)(net_request *))
{
    net_conn *c = r->conn;
    NET_ASSERT(c != NULL && !r->internal && target != r->shard->id);
    if (c->qlen != 1 || c->queue[c->qhead % NET_PIPELINE_HARD_MAX] != r) {
        r->keep_alive = false;
        net__respond_problem(r, 400, "pipelined-stream", "Stream behind other requests",
                             "an event stream must be the only request its connection is "
                             "waiting for; send it without pipelining",
                             NULL, NULL);
        net__request_finish(r);
        return;
    }
    net_handoff *h = calloc(1, sizeof(*h));
    NET_ASSERT(h != NULL);
    h->req = r;
    h->fn = fn;
    h->job.target = target;
    c->handoff = h;
    if (c->writes_pending == 0)
        conn_handoff_now(c); /* else once the last write is done (on_write) */
}
