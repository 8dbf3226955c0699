/*
 * http.c - usher-pgexport's analytics HTTP server: one libuv loop on a thread of
 * its own.
 *
 * The SQL runs on this thread, blocking it (libpq's synchronous calls, one
 * statement at a time, each bounded by statement_timeout). That is acceptable
 * here only because this thread is nobody else's: the exporter's shard threads
 * have their own PostgreSQL connections and never wait for this one, so a slow
 * dashboard query delays other dashboard requests and nothing else.
 *
 * HTTP/1.1 with keep-alive, one request at a time per connection (a pipelined
 * request waits, unparsed, until the answer before it is written). Bounds:
 *
 *   CONNS_MAX connections         more are answered 503 too-many-connections and closed
 *   HEAD_MAX bytes of head        431 headers-too-large, then close
 *   any request body              413 body-too-large, then close
 *   TIMEOUT_MS without a request  closed (408 request-timeout when one had begun)
 */
#include "http.h"

#include "auth.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <llhttp.h>
#include <netdb.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <uv.h>

enum {
    CONNS_MAX = 32,
    HEAD_MAX = 8192,    /* request line and headers, bytes */
    TIMEOUT_MS = 10000, /* a request must arrive (and its answer leave) within this */
    READ_BYTES = 16384,
    LINGER_MS = 2000, /* after a last answer: what the peer still sends is read and dropped */
    ORIGIN_VALUE_MAX = 1024,
};

static const char prefix[] = "/api/analytics/";

struct pgx_http {
    uv_loop_t loop;
    uv_tcp_t listener;
    uv_async_t wake; /* pgx_http_stop's signal */
    uv_thread_t thread;
    pgx_http_config cfg;
    pgx_db *db;
    struct conn *conns; /* open connections, a list */
    unsigned nconns;
    atomic_bool stopping;
};

typedef struct conn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_write_t wreq;
    uv_shutdown_t sreq;
    pgx_http *srv;
    struct conn *prev, *next;
    llhttp_t parser;
    int handles;  /* of tcp and timer, not closed yet */
    bool closing; /* uv_close called */
    bool begun;   /* a request's first byte came, its last not yet */
    bool writing; /* an answer is on its way */
    bool close_after;
    bool paused;    /* the parser stopped after a request; rest holds what followed */
    bool lingering; /* the last answer left: reading until the peer's end, then close */
    int refuse;     /* the status a parser callback refused the request with */
    char *wbuf;
    char *rest;
    size_t rest_len;
    size_t head_bytes;
    char url[HEAD_MAX + 1];
    size_t url_len;
    char field[32]; /* the header name being read, lowercased (cut) */
    size_t field_len;
    char *dst; /* where the value of that header goes, or NULL */
    size_t dst_cap, dst_len;
    char authorization[HEAD_MAX + 1];
    char origin[ORIGIN_VALUE_MAX + 1];
} conn;

static void conn_close(conn *c);
static void conn_execute(conn *c, const char *data, size_t len);
static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf);

/* ---- Origins -------------------------------------------------------------------------------- */

bool pgx_http_add_origins(pgx_http_config *cfg, const char *list, char *err, size_t cap)
{
    for (const char *s = list; *s != '\0';) {
        size_t n = strcspn(s, ",");
        const char *a = s, *b = s + n;
        while (a < b && *a == ' ')
            a++;
        while (b > a && (b[-1] == ' ' || b[-1] == '/'))
            b--;
        if (b > a) {
            if (cfg->norigins == PGX_ORIGINS_MAX) {
                snprintf(err, cap, "more than %d allowed origins", PGX_ORIGINS_MAX);
                return false;
            }
            char *o = cfg->origins[cfg->norigins];
            if ((size_t)(b - a) >= PGX_ORIGIN_MAX) {
                snprintf(err, cap, "an origin longer than %d bytes", PGX_ORIGIN_MAX - 1);
                return false;
            }
            for (size_t i = 0; i < (size_t)(b - a); i++)
                o[i] = (char)tolower((unsigned char)a[i]);
            o[b - a] = '\0';
            if (!auth_origin_valid(o)) {
                snprintf(err, cap,
                         "not an origin (scheme://host[:port], http or https, no path): %.*s",
                         (int)(b - a), a);
                return false;
            }
            cfg->norigins++;
        }
        s += n;
        if (*s == ',')
            s++;
    }
    return true;
}

static const char *allowed_origin(const conn *c)
{
    if (c->origin[0] == '\0')
        return NULL;
    for (size_t i = 0; i < c->srv->cfg.norigins; i++)
        if (strcmp(c->srv->cfg.origins[i], c->origin) == 0)
            return c->srv->cfg.origins[i];
    return NULL;
}

/* ---- Answers -------------------------------------------------------------------------------- */

static const char *reason(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 204:
        return "No Content";
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
    case 413:
        return "Content Too Large";
    case 431:
        return "Request Header Fields Too Large";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    default:
        return "Internal Server Error";
    }
}

static void on_timeout(uv_timer_t *t);

static void on_shutdown(uv_shutdown_t *r, int status)
{
    conn *c = r->data;
    if (status < 0 || c->closing) {
        conn_close(c);
        return;
    }
    /* Closing now with unread bytes would reset the connection, and the peer could lose
     * the answer: what it still sends is read (and dropped) until its end, briefly. */
    c->lingering = true;
    uv_timer_start(&c->timer, on_timeout, LINGER_MS, 0);
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0)
        conn_close(c);
}

static void on_written(uv_write_t *w, int status)
{
    conn *c = w->data;
    free(c->wbuf);
    c->wbuf = NULL;
    c->writing = false;
    if (status < 0 || c->closing) {
        conn_close(c);
        return;
    }
    if (c->close_after) {
        c->sreq.data = c;
        if (uv_shutdown(&c->sreq, (uv_stream_t *)&c->tcp, on_shutdown) != 0)
            conn_close(c);
        return;
    }
    /* Idle from now on; then whatever followed the request is parsed. */
    uv_timer_again(&c->timer);
    llhttp_resume(&c->parser);
    c->paused = false;
    char *rest = c->rest;
    size_t len = c->rest_len;
    c->rest = NULL;
    c->rest_len = 0;
    if (len > 0)
        conn_execute(c, rest, len);
    free(rest);
    if (!c->paused && !c->closing && !c->writing &&
        uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0)
        conn_close(c);
}

/* Writes one answer: status line, headers, body. CORS headers when the request's Origin is
 * allowed; `extra` (CRLF-terminated lines) after them. */
static void respond(conn *c, int status, const char *ctype, const char *extra, const char *body,
                    size_t len, bool close)
{
    if (c->closing || c->writing)
        return;
    if (close)
        c->close_after = true;
    char date[40];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
    const char *origin = allowed_origin(c);
    size_t cap = 512 + (origin != NULL ? strlen(origin) : 0) + (extra != NULL ? strlen(extra) : 0) +
                 (ctype != NULL ? strlen(ctype) : 0) + len;
    char *buf = malloc(cap);
    if (buf == NULL) {
        conn_close(c);
        return;
    }
    int n = snprintf(buf, cap, "HTTP/1.1 %d %s\r\nDate: %s\r\nCache-Control: no-store\r\n", status,
                     reason(status), date);
    if (status != 204)
        n += snprintf(buf + n, cap - (size_t)n,
                      "Content-Type: %s\r\nContent-Length: %zu\r\n"
                      "X-Content-Type-Options: nosniff\r\n",
                      ctype, len);
    if (origin != NULL)
        n += snprintf(buf + n, cap - (size_t)n,
                      "Access-Control-Allow-Origin: %s\r\nVary: Origin\r\n", origin);
    n += snprintf(buf + n, cap - (size_t)n, "%s%s\r\n", extra != NULL ? extra : "",
                  c->close_after ? "Connection: close\r\n" : "");
    if (len > 0)
        memcpy(buf + n, body, len);
    c->wbuf = buf;
    c->writing = true;
    uv_buf_t b = uv_buf_init(buf, (unsigned)((size_t)n + len));
    c->wreq.data = c;
    /* The answer gets TIMEOUT_MS to leave. */
    uv_timer_again(&c->timer);
    if (uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, on_written) != 0) {
        free(c->wbuf);
        c->wbuf = NULL;
        c->writing = false;
        conn_close(c);
    }
}

/* RFC 9457, as usherd writes them (docs/api.md "Errors"). */
static void respond_problem(conn *c, int status, const char *type, const char *title,
                            const char *detail, const char *field, const char *extra, bool close)
{
    char t[160];
    snprintf(t, sizeof(t), "https://usher.dev/problems/%s", type);
    json_t *o = json_pack("{s:s, s:s, s:i, s:s}", "type", t, "title", title, "status", status,
                          "detail", detail);
    if (o != NULL && field != NULL && field[0] != '\0')
        json_object_set_new(o, "field", json_string(field));
    char *body = o != NULL ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (body == NULL) {
        conn_close(c);
        return;
    }
    respond(c, status, "application/problem+json", extra, body, strlen(body), close);
    free(body);
}

/* ---- Requests ------------------------------------------------------------------------------- */

/* The Bearer token must be usherd's, unexpired, of an admin. */
static bool authorized(conn *c)
{
    const char *h = c->authorization;
    if (strncasecmp(h, "Bearer ", 7) != 0) {
        respond_problem(c, 401, "unauthorized", "Unauthorized",
                        "send Authorization: Bearer <token> of an admin (usherd's POST "
                        "/api/auth/login gives one)",
                        NULL, "WWW-Authenticate: Bearer realm=\"usher\"\r\n", false);
        return false;
    }
    const char *tok = h + 7;
    while (*tok == ' ')
        tok++;
    auth_claims claims;
    int rc = auth_jwt_verify(&c->srv->cfg.jwt, tok, strlen(tok), (int64_t)time(NULL), &claims);
    if (rc != 0) {
        respond_problem(
            c, 401, "invalid-token", "Invalid token", auth_strerror(rc), "authorization",
            "WWW-Authenticate: Bearer realm=\"usher\", error=\"invalid_token\"\r\n", false);
        return false;
    }
    if (claims.role != AUTH_ROLE_ADMIN) {
        respond_problem(c, 403, "forbidden", "Forbidden", "analytics need the admin role", NULL,
                        NULL, false);
        return false;
    }
    return true;
}

static void handle(conn *c)
{
    char *query = strchr(c->url, '?');
    if (query != NULL)
        *query++ = '\0';
    const pgx_endpoint *e = NULL;
    if (strncmp(c->url, prefix, sizeof(prefix) - 1) == 0)
        e = pgx_endpoint_find(c->url + sizeof(prefix) - 1);
    if (e == NULL) {
        respond_problem(c, 404, "not-found", "Not found", "no such resource", NULL, NULL, false);
        return;
    }
    int method = llhttp_get_method(&c->parser);
    if (method == HTTP_OPTIONS) {
        /* A preflight: the CORS headers come only for an allowed Origin (respond). */
        const char *pre = allowed_origin(c) != NULL
                              ? "Access-Control-Allow-Methods: GET\r\n"
                                "Access-Control-Allow-Headers: Authorization\r\n"
                                "Access-Control-Max-Age: 600\r\n"
                              : NULL;
        respond(c, 204, NULL, pre, NULL, 0, false);
        return;
    }
    if (method != HTTP_GET) {
        respond_problem(c, 405, "method-not-allowed", "Method not allowed",
                        "this resource answers GET only", NULL, "Allow: GET, OPTIONS\r\n", false);
        return;
    }
    if (!pgx_endpoint_public(e) && !authorized(c))
        return;
    pgx_reply r;
    pgx_endpoint_serve(c->srv->db, e, query, &r);
    if (r.status == 200) {
        respond(c, 200, "application/json", NULL, r.body, r.body_len, false);
        free(r.body);
        return;
    }
    if (r.status >= 500)
        c->srv->cfg.log("warn", "http: answered an error", "path=%s status=%d detail=\"%s\"",
                        c->url, r.status, r.detail);
    char extra[48] = "";
    if (r.retry_after_s > 0)
        snprintf(extra, sizeof(extra), "Retry-After: %u\r\n", r.retry_after_s);
    respond_problem(c, r.status, r.type, r.title, r.detail, r.field, extra, false);
    free(r.body);
}

/* ---- Parsing -------------------------------------------------------------------------------- */

static int refuse(conn *c, int status)
{
    c->refuse = status;
    return HPE_USER;
}

static int count_head(conn *c, size_t n)
{
    c->head_bytes += n;
    return c->head_bytes > HEAD_MAX ? refuse(c, 431) : 0;
}

static int on_message_begin(llhttp_t *p)
{
    conn *c = p->data;
    c->begun = true;
    uv_timer_again(&c->timer); /* the request has TIMEOUT_MS from its first byte */
    c->refuse = 0;
    c->head_bytes = 16; /* the method, the version, spaces and CRLF, roughly */
    c->url_len = 0;
    c->url[0] = '\0';
    c->authorization[0] = '\0';
    c->origin[0] = '\0';
    c->field_len = 0;
    c->dst = NULL;
    return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t n)
{
    conn *c = p->data;
    if (count_head(c, n) != 0)
        return HPE_USER;
    memcpy(c->url + c->url_len, at, n); /* fits: url_len <= head_bytes <= HEAD_MAX */
    c->url_len += n;
    c->url[c->url_len] = '\0';
    return 0;
}

static int on_header_field(llhttp_t *p, const char *at, size_t n)
{
    conn *c = p->data;
    for (size_t i = 0; i < n && c->field_len + 1 < sizeof(c->field); i++)
        c->field[c->field_len++] = (char)tolower((unsigned char)at[i]);
    c->field[c->field_len] = '\0';
    return count_head(c, n);
}

static int on_header_field_complete(llhttp_t *p)
{
    conn *c = p->data;
    c->dst = NULL;
    if (strcmp(c->field, "authorization") == 0) {
        c->dst = c->authorization;
        c->dst_cap = sizeof(c->authorization);
    } else if (strcmp(c->field, "origin") == 0) {
        c->dst = c->origin;
        c->dst_cap = sizeof(c->origin);
    }
    if (c->dst != NULL)
        c->dst[0] = '\0'; /* a header given twice: the last one counts */
    c->dst_len = 0;
    return count_head(c, 4); /* ": " and CRLF */
}

static int on_header_value(llhttp_t *p, const char *at, size_t n)
{
    conn *c = p->data;
    if (count_head(c, n) != 0)
        return HPE_USER;
    if (c->dst != NULL) {
        if (c->dst_len + n >= c->dst_cap)
            return refuse(c, 431);
        memcpy(c->dst + c->dst_len, at, n);
        c->dst_len += n;
        c->dst[c->dst_len] = '\0';
    }
    return 0;
}

static int on_header_value_complete(llhttp_t *p)
{
    conn *c = p->data;
    c->field_len = 0;
    c->field[0] = '\0';
    c->dst = NULL;
    return 0;
}

static int on_headers_complete(llhttp_t *p)
{
    conn *c = p->data;
    /* Nothing here takes a body: refused before it is sent. */
    if ((p->flags & F_CHUNKED) || ((p->flags & F_CONTENT_LENGTH) && p->content_length > 0))
        return refuse(c, 413);
    if (!llhttp_should_keep_alive(p))
        c->close_after = true;
    return 0;
}

static int on_message_complete(llhttp_t *p)
{
    conn *c = p->data;
    c->begun = false;
    handle(c);
    /* Nothing more is parsed until the answer is written (on_written goes on). */
    return HPE_PAUSED;
}

static llhttp_settings_t settings;

static void settings_init(void)
{
    llhttp_settings_init(&settings);
    settings.on_message_begin = on_message_begin;
    settings.on_url = on_url;
    settings.on_header_field = on_header_field;
    settings.on_header_field_complete = on_header_field_complete;
    settings.on_header_value = on_header_value;
    settings.on_header_value_complete = on_header_value_complete;
    settings.on_headers_complete = on_headers_complete;
    settings.on_message_complete = on_message_complete;
}

static void conn_execute(conn *c, const char *data, size_t len)
{
    llhttp_errno_t err = llhttp_execute(&c->parser, data, len);
    if (err == HPE_OK)
        return;
    if (err == HPE_PAUSED) {
        /* A request was answered; keep what followed it for on_written. */
        const char *at = llhttp_get_error_pos(&c->parser);
        size_t used = at != NULL ? (size_t)(at - data) : len;
        c->paused = true;
        uv_read_stop((uv_stream_t *)&c->tcp);
        if (used < len && !c->close_after) {
            c->rest = malloc(len - used);
            if (c->rest == NULL) {
                conn_close(c);
                return;
            }
            memcpy(c->rest, data + used, len - used);
            c->rest_len = len - used;
        }
        return;
    }
    /* Refused or malformed: answer and close. */
    uv_read_stop((uv_stream_t *)&c->tcp);
    if (c->writing) {
        c->close_after = true;
        return;
    }
    c->begun = false;
    if (c->refuse == 431)
        respond_problem(c, 431, "headers-too-large", "Request header fields too large",
                        "the request line and headers exceed 8 KiB", NULL, NULL, true);
    else if (c->refuse == 413)
        respond_problem(c, 413, "body-too-large", "Content too large",
                        "these resources take no request body", NULL, NULL, true);
    else
        respond_problem(c, 400, "malformed-request", "Malformed HTTP request",
                        llhttp_get_error_reason(&c->parser) != NULL && err != HPE_USER
                            ? llhttp_get_error_reason(&c->parser)
                            : "invalid HTTP request",
                        NULL, NULL, true);
}

/* ---- Connections ---------------------------------------------------------------------------- */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    (void)suggested;
    static char rbuf[READ_BYTES]; /* this thread's only; llhttp keeps nothing of it */
    *buf = uv_buf_init(rbuf, sizeof(rbuf));
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    conn *c = s->data;
    if (c->lingering) {
        if (n < 0)
            conn_close(c);
        return;
    }
    if (n < 0) {
        /* The peer is gone or done: an answer on its way still goes out, then close. */
        uv_read_stop(s);
        if (c->writing)
            c->close_after = true;
        else
            conn_close(c);
        return;
    }
    if (n > 0)
        conn_execute(c, buf->base, (size_t)n);
}

static void on_handle_closed(uv_handle_t *h)
{
    conn *c = h->data;
    if (--c->handles > 0)
        return;
    free(c->wbuf);
    free(c->rest);
    free(c);
}

static void conn_close(conn *c)
{
    if (c->closing)
        return;
    c->closing = true;
    pgx_http *s = c->srv;
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    s->nconns--;
    uv_close((uv_handle_t *)&c->timer, on_handle_closed);
    uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
}

static void on_timeout(uv_timer_t *t)
{
    conn *c = t->data;
    if (c->begun && !c->writing && !c->lingering) {
        /* A request began and did not end in time. */
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->begun = false;
        respond_problem(c, 408, "request-timeout", "Request timeout",
                        "the request did not arrive within 10 s", NULL, NULL, true);
        return;
    }
    conn_close(c); /* idle, or an answer the peer does not read */
}

static void on_refused_closed(uv_handle_t *h)
{
    free(h);
}

static void on_connection(uv_stream_t *server, int status)
{
    pgx_http *s = server->data;
    if (status < 0 || atomic_load(&s->stopping))
        return;
    if (s->nconns >= CONNS_MAX) {
        /* A short answer that fits any socket buffer, written without waiting. */
        static const char body[] =
            "{\"type\":\"https://usher.dev/problems/too-many-connections\",\"title\":\"Too many "
            "connections\",\"status\":503,\"detail\":\"the analytics server is at its connection "
            "limit\"}";
        char msg[512];
        int n = snprintf(msg, sizeof(msg),
                         "HTTP/1.1 503 Service Unavailable\r\nContent-Type: "
                         "application/problem+json\r\nContent-Length: %zu\r\nRetry-After: "
                         "1\r\nConnection: close\r\n\r\n%s",
                         sizeof(body) - 1, body);
        uv_tcp_t *t = malloc(sizeof(*t));
        if (t == NULL)
            return;
        uv_tcp_init(&s->loop, t);
        if (uv_accept(server, (uv_stream_t *)t) == 0) {
            uv_buf_t b = uv_buf_init(msg, (unsigned)n);
            uv_try_write((uv_stream_t *)t, &b, 1);
        }
        uv_close((uv_handle_t *)t, on_refused_closed);
        return;
    }
    conn *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return;
    c->srv = s;
    uv_tcp_init(&s->loop, &c->tcp);
    c->tcp.data = c;
    c->handles = 1;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
        c->closing = true;
        uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
        return;
    }
    uv_timer_init(&s->loop, &c->timer);
    c->timer.data = c;
    c->handles = 2;
    c->next = s->conns;
    if (s->conns != NULL)
        s->conns->prev = c;
    s->conns = c;
    s->nconns++;
    llhttp_init(&c->parser, HTTP_REQUEST, &settings);
    c->parser.data = c;
    uv_tcp_nodelay(&c->tcp, 1);
    uv_timer_start(&c->timer, on_timeout, TIMEOUT_MS, TIMEOUT_MS);
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

/* ---- The thread ----------------------------------------------------------------------------- */

static void on_wake(uv_async_t *a)
{
    pgx_http *s = a->data;
    uv_close((uv_handle_t *)&s->listener, NULL);
    uv_close((uv_handle_t *)&s->wake, NULL);
    while (s->conns != NULL)
        conn_close(s->conns);
}

static void run(void *arg)
{
    pgx_http *s = arg;
    uv_run(&s->loop, UV_RUN_DEFAULT);
}

/* HOST:PORT or [IPv6]:PORT to an address (a name resolves, at startup only). */
static int resolve(const char *listen, struct sockaddr_storage *ss, char *err, size_t cap)
{
    char host[256];
    const char *colon = strrchr(listen, ':');
    if (colon == NULL || colon[1] == '\0' || strspn(colon + 1, "0123456789") != strlen(colon + 1) ||
        strlen(colon + 1) > 5) {
        snprintf(err, cap, "--http must be HOST:PORT, not %s", listen);
        return -1;
    }
    size_t hl = (size_t)(colon - listen);
    const char *h = listen;
    if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
        h++;
        hl -= 2;
    }
    if (hl == 0 || hl >= sizeof(host)) {
        snprintf(err, cap, "--http must be HOST:PORT, not %s", listen);
        return -1;
    }
    snprintf(host, sizeof(host), "%.*s", (int)hl, h);
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV}, *res;
    int g = getaddrinfo(host, colon + 1, &hints, &res);
    if (g != 0) {
        snprintf(err, cap, "--http %s: %s", listen, gai_strerror(g));
        return -1;
    }
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    freeaddrinfo(res);
    return 0;
}

static uv_once_t settings_once = UV_ONCE_INIT;

pgx_http *pgx_http_start(const pgx_http_config *cfg, char *err, size_t cap)
{
    uv_once(&settings_once, settings_init);
    struct sockaddr_storage ss;
    if (resolve(cfg->listen, &ss, err, cap) != 0)
        return NULL;
    pgx_http *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        snprintf(err, cap, "out of memory");
        return NULL;
    }
    s->cfg = *cfg;
    uv_loop_init(&s->loop);
    uv_tcp_init(&s->loop, &s->listener);
    s->listener.data = s;
    int rc = uv_tcp_bind(&s->listener, (const struct sockaddr *)&ss, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&s->listener, 64, on_connection);
    if (rc != 0) {
        snprintf(err, cap, "cannot listen on %s: %s", cfg->listen, uv_strerror(rc));
        uv_close((uv_handle_t *)&s->listener, NULL);
        uv_run(&s->loop, UV_RUN_DEFAULT);
        uv_loop_close(&s->loop);
        free(s);
        return NULL;
    }
    struct sockaddr_storage got;
    int len = sizeof(got);
    char ip[64] = "?";
    int port = 0;
    uv_tcp_getsockname(&s->listener, (struct sockaddr *)&got, &len);
    if (got.ss_family == AF_INET6) {
        uv_ip6_name((struct sockaddr_in6 *)&got, ip, sizeof(ip));
        port = ntohs(((struct sockaddr_in6 *)&got)->sin6_port);
    } else {
        uv_ip4_name((struct sockaddr_in *)&got, ip, sizeof(ip));
        port = ntohs(((struct sockaddr_in *)&got)->sin_port);
    }
    s->db = pgx_db_open(cfg->pg, cfg->statement_timeout_ms, cfg->tz, cfg->log);
    int tz = s->db != NULL ? pgx_db_tz_known(s->db, cfg->tz) : -1;
    if (s->db == NULL || tz == 0) {
        if (s->db == NULL)
            snprintf(err, cap, "out of memory");
        else
            snprintf(err, cap, "--http-tz %s: not a time zone PostgreSQL knows (pg_timezone_names)",
                     cfg->tz);
        pgx_db_close(s->db);
        uv_close((uv_handle_t *)&s->listener, NULL);
        uv_run(&s->loop, UV_RUN_DEFAULT);
        uv_loop_close(&s->loop);
        free(s);
        return NULL;
    }
    uv_async_init(&s->loop, &s->wake, on_wake);
    s->wake.data = s;
    if (uv_thread_create(&s->thread, run, s) != 0) {
        snprintf(err, cap, "cannot start the HTTP thread");
        pgx_db_close(s->db);
        uv_close((uv_handle_t *)&s->listener, NULL);
        uv_close((uv_handle_t *)&s->wake, NULL);
        uv_run(&s->loop, UV_RUN_DEFAULT);
        uv_loop_close(&s->loop);
        free(s);
        return NULL;
    }
    cfg->log("info", "http: serving analytics",
             "addr=%s%s%s:%d origins=%zu tz=%s statement_timeout_ms=%u",
             got.ss_family == AF_INET6 ? "[" : "", ip, got.ss_family == AF_INET6 ? "]" : "", port,
             cfg->norigins, cfg->tz, (unsigned)cfg->statement_timeout_ms);
    return s;
}

void pgx_http_stop(pgx_http *s)
{
    if (s == NULL)
        return;
    atomic_store(&s->stopping, true);
    pgx_db_cancel(s->db);
    uv_async_send(&s->wake);
    uv_thread_join(&s->thread);
    uv_loop_close(&s->loop);
    pgx_db_close(s->db);
    memset(&s->cfg.jwt, 0, sizeof(s->cfg.jwt));
    free(s);
}
