/*
 * client.c - asynchronous HTTP/1.1 client pool on libuv + llhttp (see client.h).
 *
 * Per connection: a queue of requests not yet written (`pending`, each one a
 * malloc'd block holding the formatted bytes), a ring of requests written and
 * awaiting their answer (`inflight`, at most `pipeline`), and an llhttp
 * response parser. Failures are always delivered from a libuv callback (the
 * handle's close callback or the stop timer), never from inside hc_send().
 */
#include "client.h"

#include <errno.h>
#include <llhttp.h>
#include <netdb.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>

typedef struct pending {
    struct pending *next;
    hc_cb cb;
    void *arg;
    bool head;          /* HEAD: the answer has no body */
    uint64_t queued_ms; /* uv_now() when queued: it fails after request_timeout_ms */
    size_t len;
    uv_write_t wr; /* when the kernel did not take it all at once */
    char data[];
} pending;

typedef struct inflight {
    hc_cb cb;
    void *arg;
    bool head;
    uint64_t t_sent; /* uv_hrtime() */
} inflight;

enum conn_state { C_IDLE, C_CONNECTING, C_OPEN, C_CLOSING, C_WAIT, C_CLOSED };

struct hc_conn {
    hc_pool *pool;
    uint32_t index; /* position in the pool */
    enum conn_state state;
    void *data;
    uv_tcp_t tcp;
    uv_connect_t connect_req;
    uint64_t deadline_ms; /* connect deadline (C_CONNECTING) or reconnect time (C_WAIT) */
    uint32_t backoff_ms;  /* next reconnect delay while connects keep failing */
    bool served;          /* answered something useful since it opened */
    bool connect_failed;  /* the last connect attempt failed */
    int close_reason;     /* HC_E* given to in-flight requests when closed */
    pending *pend_head, *pend_tail;
    inflight ring[HC_PIPELINE_MAX];
    uint32_t ring_head, ring_n;
    llhttp_t parser;
    /* the answer being parsed */
    char *body;
    size_t body_len, body_cap;
    char hfield[32];
    size_t hfield_len;
    char hvalue[128];
    size_t hvalue_len;
    int retry_after_s;
    char etag[128];
    bool replayed;
    bool oversize;
};

#define STAT_FIELDS(X)  \
    X(open)             \
    X(connects)         \
    X(connect_failures) \
    X(disconnects)      \
    X(requests)         \
    X(responses) X(timeouts) X(closed_in_flight) X(protocol_errors) X(bytes_out) X(bytes_in)

struct hc_pool {
    uv_loop_t *loop;
    hc_config cfg;
    hc_conn *conns;
    uint32_t n;
    uint32_t next_ramp; /* connections started so far by the ramp */
    uv_timer_t sweep, ramp, stop_timer;
    uint32_t handles_open;
    bool started, stopping, done_called;
    void (*done)(hc_pool *, void *);
    void *done_arg;
    uint64_t rng;
    uint64_t busy; /* requests queued or in flight */
    llhttp_settings_t settings;
    char readbuf[65536]; /* shared: a read callback consumes it before returning */
#define X(name) _Atomic uint64_t name;
    STAT_FIELDS(X)
#undef X
};

/* One writer (the loop thread); readers on other threads see relaxed values. */
#define STAT_ADD(p, f, v)                                                                     \
    atomic_store_explicit(&(p)->f, atomic_load_explicit(&(p)->f, memory_order_relaxed) + (v), \
                          memory_order_relaxed)

const char *hc_strerror(int err)
{
    switch (err) {
    case 0:
        return "ok";
    case HC_ETIMEDOUT:
        return "timeout";
    case HC_ECLOSED:
        return "closed";
    case HC_EPROTO:
        return "protocol";
    case HC_ESTOPPED:
        return "stopped";
    default:
        return "error";
    }
}

void hc_config_default(hc_config *c)
{
    memset(c, 0, sizeof(*c));
    c->pipeline = 1;
    c->ramp_batch = 500;
    c->ramp_interval_ms = 10;
    c->connect_timeout_ms = 5000;
    c->request_timeout_ms = 30000;
    c->reconnect_delay_ms = 100;
    c->reconnect_delay_max_ms = 2000;
    c->max_body_bytes = 64u << 20;
}

/* ---- Target ------------------------------------------------------------------------- */

int hc_target_parse(const char *url, hc_target *t, char *err, size_t errlen)
{
    memset(t, 0, sizeof(*t));
    const char *p = url;
    if (strncmp(p, "http://", 7) != 0) {
        snprintf(err, errlen, "'%s' must start with http:// (https is not supported)", url);
        return -1;
    }
    p += 7;
    size_t hostlen = strcspn(p, "/");
    if (hostlen == 0 || hostlen >= sizeof(t->host)) {
        snprintf(err, errlen, "'%s' has no HOST[:PORT] (or it is too long)", url);
        return -1;
    }
    memcpy(t->host, p, hostlen);
    t->host[hostlen] = '\0';
    const char *path = p + hostlen;
    size_t plen = strlen(path);
    while (plen > 0 && path[plen - 1] == '/')
        plen--;
    if (plen >= sizeof(t->base_path)) {
        snprintf(err, errlen, "the path in '%s' is too long", url);
        return -1;
    }
    memcpy(t->base_path, path, plen);
    t->base_path[plen] = '\0';

    char name[300];
    const char *port = "80";
    if (t->host[0] == '[') {
        const char *close = strchr(t->host, ']');
        if (close == NULL) {
            snprintf(err, errlen, "'%s': unclosed '[' in the IPv6 address", url);
            return -1;
        }
        size_t n = (size_t)(close - t->host - 1);
        memcpy(name, t->host + 1, n);
        name[n] = '\0';
        if (close[1] == ':')
            port = close + 2;
        else if (close[1] != '\0') {
            snprintf(err, errlen, "'%s': expected ':PORT' after ']'", url);
            return -1;
        }
    } else {
        const char *colon = strrchr(t->host, ':');
        size_t n = colon ? (size_t)(colon - t->host) : hostlen;
        memcpy(name, t->host, n);
        name[n] = '\0';
        if (colon != NULL)
            port = colon + 1;
    }
    char *end;
    errno = 0;
    unsigned long pn = strtoul(port, &end, 10);
    if (*port == '\0' || *end != '\0' || errno != 0 || pn == 0 || pn > 65535) {
        snprintf(err, errlen, "'%s': the port must be 1 to 65535", url);
        return -1;
    }
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    int rc = getaddrinfo(name, port, &hints, &res);
    if (rc != 0 || res == NULL) {
        snprintf(err, errlen, "cannot resolve '%s': %s", name, gai_strerror(rc));
        return -1;
    }
    memcpy(&t->addr, res->ai_addr, res->ai_addrlen);
    freeaddrinfo(res);
    return 0;
}

uint64_t hc_raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return 0;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0 || getrlimit(RLIMIT_NOFILE, &rl) != 0)
            return 0;
    }
    return rl.rlim_cur == RLIM_INFINITY ? UINT64_MAX : (uint64_t)rl.rlim_cur;
}

/* ---- Small helpers ------------------------------------------------------------------ */

static uint64_t pool_rand(hc_pool *p)
{
    uint64_t x = p->rng;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    p->rng = x;
    return x;
}

/* delay * [0.5, 1.5) */
static uint64_t jitter(hc_pool *p, uint64_t ms)
{
    return ms / 2 + (ms > 0 ? pool_rand(p) % (ms + 1) : 0);
}

static void conn_connect(hc_conn *c);
static void conn_close(hc_conn *c, int reason);
static void conn_flush(hc_conn *c);
static void maybe_done(hc_pool *p);

/* Fails every in-flight request with `reason`, then (when `pending_too`) every queued one.
 * The lists are detached first: callbacks may queue new requests. */
static void fail_requests(hc_conn *c, int reason, bool pending_too, int pending_reason)
{
    hc_pool *p = c->pool;
    uint32_t n = c->ring_n;
    inflight copy[HC_PIPELINE_MAX];
    for (uint32_t i = 0; i < n; i++)
        copy[i] = c->ring[(c->ring_head + i) % HC_PIPELINE_MAX];
    c->ring_n = 0;
    c->ring_head = 0;
    pending *list = NULL;
    if (pending_too) {
        list = c->pend_head;
        c->pend_head = c->pend_tail = NULL;
    }
    if (reason == HC_ETIMEDOUT)
        STAT_ADD(p, timeouts, n);
    else if (reason == HC_ECLOSED)
        STAT_ADD(p, closed_in_flight, n);
    else if (reason == HC_EPROTO)
        STAT_ADD(p, protocol_errors, n);
    for (uint32_t i = 0; i < n; i++) {
        p->busy--;
        copy[i].cb(c, copy[i].arg, reason, NULL);
    }
    while (list != NULL) {
        pending *next = list->next;
        hc_cb cb = list->cb;
        void *arg = list->arg;
        free(list);
        p->busy--;
        cb(c, arg, pending_reason, NULL);
        list = next;
    }
}

/* ---- Parser callbacks --------------------------------------------------------------- */

static int on_message_begin(llhttp_t *parser)
{
    hc_conn *c = parser->data;
    c->body_len = 0;
    c->hfield_len = c->hvalue_len = 0;
    c->retry_after_s = -1;
    c->etag[0] = '\0';
    c->replayed = false;
    c->oversize = false;
    return 0;
}

static int on_header_field(llhttp_t *parser, const char *at, size_t len)
{
    hc_conn *c = parser->data;
    size_t room = sizeof(c->hfield) - 1 - c->hfield_len;
    size_t n = len < room ? len : room;
    memcpy(c->hfield + c->hfield_len, at, n);
    c->hfield_len += n;
    return 0;
}

static int on_header_value(llhttp_t *parser, const char *at, size_t len)
{
    hc_conn *c = parser->data;
    size_t room = sizeof(c->hvalue) - 1 - c->hvalue_len;
    size_t n = len < room ? len : room;
    memcpy(c->hvalue + c->hvalue_len, at, n);
    c->hvalue_len += n;
    return 0;
}

static int on_header_value_complete(llhttp_t *parser)
{
    hc_conn *c = parser->data;
    c->hfield[c->hfield_len] = '\0';
    c->hvalue[c->hvalue_len] = '\0';
    if (strcasecmp(c->hfield, "retry-after") == 0) {
        char *end;
        long v = strtol(c->hvalue, &end, 10);
        if (end != c->hvalue && v >= 0 && v < 86400)
            c->retry_after_s = (int)v;
    } else if (strcasecmp(c->hfield, "etag") == 0) {
        memcpy(c->etag, c->hvalue, c->hvalue_len + 1);
    } else if (strcasecmp(c->hfield, "idempotent-replayed") == 0) {
        c->replayed = strcasecmp(c->hvalue, "true") == 0;
    }
    c->hfield_len = c->hvalue_len = 0;
    return 0;
}

static int on_headers_complete(llhttp_t *parser)
{
    hc_conn *c = parser->data;
    if (parser->content_length > c->pool->cfg.max_body_bytes &&
        parser->content_length != UINT64_MAX) {
        c->oversize = true;
        return -1;
    }
    /* An answer to HEAD has no body, whatever Content-Length says. */
    if (c->ring_n > 0 && c->ring[c->ring_head].head)
        return 1;
    return 0;
}

static int on_body(llhttp_t *parser, const char *at, size_t len)
{
    hc_conn *c = parser->data;
    size_t need = c->body_len + len + 1;
    if (need - 1 > c->pool->cfg.max_body_bytes) {
        c->oversize = true;
        return -1;
    }
    if (need > c->body_cap) {
        size_t cap = c->body_cap ? c->body_cap : 4096;
        while (cap < need)
            cap *= 2;
        char *b = realloc(c->body, cap);
        if (b == NULL)
            return -1;
        c->body = b;
        c->body_cap = cap;
    }
    memcpy(c->body + c->body_len, at, len);
    c->body_len += len;
    return 0;
}

static int on_message_complete(llhttp_t *parser)
{
    hc_conn *c = parser->data;
    hc_pool *p = c->pool;
    int status = parser->status_code;
    if (status < 200)
        return 0; /* 1xx: the real answer follows */
    bool will_close = !llhttp_should_keep_alive(parser);
    if (c->ring_n == 0) {
        /* Unsolicited (e.g. 503 + close at accept, 408): nothing to match it to. */
        if (will_close) {
            conn_close(c, HC_ECLOSED);
            return -1;
        }
        return 0;
    }
    inflight f = c->ring[c->ring_head];
    c->ring_head = (c->ring_head + 1) % HC_PIPELINE_MAX;
    c->ring_n--;
    p->busy--;
    STAT_ADD(p, responses, 1);
    if (status != 503)
        c->served = true;
    static char empty[1] = "";
    if (c->body != NULL)
        c->body[c->body_len] = '\0';
    hc_response r = {
        .status = status,
        .body = c->body != NULL ? c->body : empty,
        .body_len = c->body_len,
        .retry_after_s = c->retry_after_s,
        .etag = c->etag,
        .replayed = c->replayed,
        .will_close = will_close,
        .latency_ns = uv_hrtime() - f.t_sent,
        .sent_ns = f.t_sent,
    };
    f.cb(c, f.arg, 0, &r);
    if (c->body_cap > (1u << 20)) { /* do not keep a large seat map's buffer per connection */
        free(c->body);
        c->body = NULL;
        c->body_cap = 0;
    }
    c->body_len = 0;
    if (c->state != C_OPEN)
        return -1; /* the callback stopped the pool: parse nothing more */
    if (will_close) {
        conn_close(c, HC_ECLOSED);
        return -1;
    }
    return 0;
}

/* ---- Connection life ---------------------------------------------------------------- */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    hc_conn *c = h->data;
    buf->base = c->pool->readbuf;
    buf->len = sizeof(c->pool->readbuf);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    hc_conn *c = s->data;
    hc_pool *p = c->pool;
    if (c->state != C_OPEN)
        return;
    if (nread > 0) {
        STAT_ADD(p, bytes_in, (uint64_t)nread);
        llhttp_errno_t e = llhttp_execute(&c->parser, buf->base, (size_t)nread);
        if (c->state != C_OPEN)
            return;
        if (e != HPE_OK) {
            conn_close(c, HC_EPROTO);
            return;
        }
    } else if (nread < 0) {
        /* EOF may complete an answer delimited by the close. */
        if (nread == UV_EOF && llhttp_finish(&c->parser) == HPE_OK && c->state != C_OPEN)
            return;
        if (c->state == C_OPEN)
            conn_close(c, HC_ECLOSED);
    }
}

static void on_closed(uv_handle_t *h)
{
    hc_conn *c = h->data;
    hc_pool *p = c->pool;
    p->handles_open--;
    if (p->stopping) {
        /* hc_send refuses while stopping, so nothing new can be queued. */
        c->state = C_CLOSED;
        fail_requests(c, c->close_reason, true, HC_ESTOPPED);
        maybe_done(p);
        return;
    }
    c->state = C_WAIT;
    c->deadline_ms = UINT64_MAX;
    bool failed_connect = c->connect_failed && p->cfg.fail_queued_on_connect_error;
    c->connect_failed = false;
    /* callbacks may queue requests again */
    fail_requests(c, c->close_reason, failed_connect, HC_ECLOSED);
    if (p->stopping)
        return; /* a callback stopped the pool: the stop timer fails what is queued */
    /* Reconnect: at once after a useful life, else with backoff. */
    uint64_t delay;
    bool served = c->served;
    c->served = false; /* a failed connect must not count the previous life */
    if (served) {
        c->backoff_ms = p->cfg.reconnect_delay_ms;
        delay = 0;
    } else {
        delay = jitter(p, c->backoff_ms);
        uint64_t next = (uint64_t)c->backoff_ms * 2;
        c->backoff_ms =
            next > p->cfg.reconnect_delay_max_ms ? p->cfg.reconnect_delay_max_ms : (uint32_t)next;
    }
    if (delay == 0)
        conn_connect(c);
    else
        c->deadline_ms = uv_now(p->loop) + delay;
}

static void conn_close(hc_conn *c, int reason)
{
    hc_pool *p = c->pool;
    if (c->state == C_OPEN) {
        STAT_ADD(p, open, (uint64_t)-1);
        if (reason != HC_ESTOPPED)
            STAT_ADD(p, disconnects, 1);
        uv_read_stop((uv_stream_t *)&c->tcp);
    } else if (c->state != C_CONNECTING) {
        return;
    }
    c->state = C_CLOSING;
    c->close_reason = reason;
    uv_close((uv_handle_t *)&c->tcp, on_closed);
}

static void on_connect(uv_connect_t *req, int status)
{
    hc_conn *c = req->data;
    hc_pool *p = c->pool;
    if (c->state != C_CONNECTING)
        return; /* closed (timeout, stop) while connecting */
    if (status < 0) {
        STAT_ADD(p, connect_failures, 1);
        c->connect_failed = true;
        conn_close(c, HC_ECLOSED);
        return;
    }
    c->state = C_OPEN;
    c->served = false;
    STAT_ADD(p, connects, 1);
    STAT_ADD(p, open, 1);
    uv_tcp_nodelay(&c->tcp, 1);
    llhttp_init(&c->parser, HTTP_RESPONSE, &p->settings);
    c->parser.data = c;
    int rc = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    if (rc != 0) {
        conn_close(c, HC_ECLOSED);
        return;
    }
    if (p->cfg.on_open != NULL)
        p->cfg.on_open(c, p->cfg.data);
    if (c->state == C_OPEN)
        conn_flush(c);
}

static void conn_connect(hc_conn *c)
{
    hc_pool *p = c->pool;
    int rc = uv_tcp_init(p->loop, &c->tcp);
    if (rc != 0) {
        STAT_ADD(p, connect_failures, 1);
        c->state = C_WAIT;
        c->deadline_ms = uv_now(p->loop) + jitter(p, p->cfg.reconnect_delay_max_ms);
        return;
    }
    p->handles_open++;
    c->tcp.data = c;
    c->connect_req.data = c;
    c->state = C_CONNECTING;
    c->deadline_ms = uv_now(p->loop) + p->cfg.connect_timeout_ms;
    rc = uv_tcp_connect(&c->connect_req, &c->tcp, (const struct sockaddr *)&p->cfg.target->addr,
                        on_connect);
    if (rc != 0) { /* EMFILE and friends: close, back off */
        STAT_ADD(p, connect_failures, 1);
        conn_close(c, HC_ECLOSED);
    }
}

/* ---- Writing ------------------------------------------------------------------------ */

static void on_write(uv_write_t *w, int status)
{
    pending *q = w->data;
    hc_conn *c = q->wr.handle->data;
    free(q);
    if (status < 0 && c->state == C_OPEN)
        conn_close(c, HC_ECLOSED);
}

static void conn_flush(hc_conn *c)
{
    hc_pool *p = c->pool;
    while (c->state == C_OPEN && c->pend_head != NULL && c->ring_n < p->cfg.pipeline) {
        pending *q = c->pend_head;
        c->pend_head = q->next;
        if (c->pend_head == NULL)
            c->pend_tail = NULL;
        inflight *f = &c->ring[(c->ring_head + c->ring_n) % HC_PIPELINE_MAX];
        f->cb = q->cb;
        f->arg = q->arg;
        f->head = q->head;
        f->t_sent = uv_hrtime();
        c->ring_n++;
        STAT_ADD(p, requests, 1);
        STAT_ADD(p, bytes_out, q->len);
        uv_buf_t b = uv_buf_init(q->data, (unsigned)q->len);
        int n = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
        if (n == (int)q->len) {
            free(q);
            continue;
        }
        if (n < 0 && n != UV_EAGAIN) {
            free(q);
            conn_close(c, HC_ECLOSED);
            return;
        }
        if (n > 0)
            b = uv_buf_init(q->data + n, (unsigned)(q->len - (size_t)n));
        q->wr.data = q;
        if (uv_write(&q->wr, (uv_stream_t *)&c->tcp, &b, 1, on_write) != 0) {
            free(q);
            conn_close(c, HC_ECLOSED);
            return;
        }
    }
}

static char *put(char *d, const char *s, size_t n)
{
    memcpy(d, s, n);
    return d + n;
}

int hc_send(hc_conn *c, const hc_request *req, hc_cb cb, void *arg)
{
    hc_pool *p = c->pool;
    if (p->stopping)
        return HC_ESTOPPED;
    const char *host = p->cfg.target->host;
    const char *ctype = req->content_type ? req->content_type : "application/json";
    size_t ml = strlen(req->method), pl = strlen(req->path), hl = strlen(host);
    size_t xl = req->headers ? strlen(req->headers) : 0;
    char clen[64];
    int cl = 0;
    if (req->body != NULL || strcmp(req->method, "POST") == 0 || strcmp(req->method, "PUT") == 0 ||
        strcmp(req->method, "PATCH") == 0) {
        cl = snprintf(clen, sizeof(clen), "Content-Length: %zu\r\n", req->body_len);
        if (cl < 0 || (size_t)cl >= sizeof(clen))
            return -EINVAL;
    }
    size_t ctl = req->body != NULL ? strlen(ctype) : 0;
    size_t len = ml + 1 + pl + 17 /* " HTTP/1.1\r\nHost: " */ + hl + 2 + xl +
                 (req->body != NULL ? 14 + ctl + 2 : 0) + (size_t)cl + 2 +
                 (req->body != NULL ? req->body_len : 0);
    pending *q = malloc(sizeof(*q) + len);
    if (q == NULL)
        return -ENOMEM;
    char *d = q->data;
    d = put(d, req->method, ml);
    *d++ = ' ';
    d = put(d, req->path, pl);
    d = put(d, " HTTP/1.1\r\nHost: ", 17);
    d = put(d, host, hl);
    d = put(d, "\r\n", 2);
    d = put(d, req->headers ? req->headers : "", xl);
    if (req->body != NULL) {
        d = put(d, "Content-Type: ", 14);
        d = put(d, ctype, ctl);
        d = put(d, "\r\n", 2);
    }
    d = put(d, clen, (size_t)cl);
    d = put(d, "\r\n", 2);
    if (req->body != NULL)
        d = put(d, req->body, req->body_len);
    q->len = (size_t)(d - q->data);
    q->next = NULL;
    q->cb = cb;
    q->arg = arg;
    q->head = strcmp(req->method, "HEAD") == 0;
    q->queued_ms = uv_now(p->loop);
    if (c->pend_tail != NULL)
        c->pend_tail->next = q;
    else
        c->pend_head = q;
    c->pend_tail = q;
    p->busy++;
    conn_flush(c);
    return 0;
}

/* ---- Timers: ramp, sweep, stop ------------------------------------------------------ */

static void on_ramp(uv_timer_t *t)
{
    hc_pool *p = t->data;
    uint32_t batch = p->cfg.ramp_batch ? p->cfg.ramp_batch : p->n;
    for (uint32_t i = 0; i < batch && p->next_ramp < p->n && !p->stopping; i++)
        conn_connect(&p->conns[p->next_ramp++]);
    if (p->next_ramp >= p->n)
        uv_timer_stop(&p->ramp);
}

/* Fails queued requests that waited longer than the request timeout (the connection
 * cannot be opened). They are in queue order, oldest first. */
static void expire_queued(hc_conn *c, uint64_t now)
{
    hc_pool *p = c->pool;
    while (c->pend_head != NULL && now - c->pend_head->queued_ms > p->cfg.request_timeout_ms) {
        pending *q = c->pend_head;
        c->pend_head = q->next;
        if (c->pend_head == NULL)
            c->pend_tail = NULL;
        hc_cb cb = q->cb;
        void *arg = q->arg;
        free(q);
        p->busy--;
        STAT_ADD(p, timeouts, 1);
        cb(c, arg, HC_ETIMEDOUT, NULL);
    }
}

static void on_sweep(uv_timer_t *t)
{
    hc_pool *p = t->data;
    uint64_t now = uv_now(p->loop);
    uint64_t now_ns = uv_hrtime();
    uint64_t limit_ns = (uint64_t)p->cfg.request_timeout_ms * 1000000u;
    for (uint32_t i = 0; i < p->n && !p->stopping; i++) {
        hc_conn *c = &p->conns[i];
        if (c->pend_head != NULL && c->state != C_OPEN)
            expire_queued(c, now);
        switch (c->state) {
        case C_CONNECTING:
            if (now >= c->deadline_ms) {
                STAT_ADD(p, connect_failures, 1);
                conn_close(c, HC_ECLOSED);
            }
            break;
        case C_OPEN:
            if (c->ring_n > 0 && now_ns - c->ring[c->ring_head].t_sent > limit_ns)
                conn_close(c, HC_ETIMEDOUT);
            break;
        case C_WAIT:
            if (now >= c->deadline_ms)
                conn_connect(c);
            break;
        default:
            break;
        }
    }
}

static void on_timer_closed(uv_handle_t *h)
{
    hc_pool *p = h->data;
    p->handles_open--;
    maybe_done(p);
}

static void maybe_done(hc_pool *p)
{
    if (p->stopping && p->handles_open == 0 && !p->done_called) {
        p->done_called = true;
        if (p->done != NULL)
            p->done(p, p->done_arg);
    }
}

static void on_stop_timer(uv_timer_t *t)
{
    hc_pool *p = t->data;
    for (uint32_t i = 0; i < p->n; i++) {
        hc_conn *c = &p->conns[i];
        if (c->state == C_IDLE || c->state == C_WAIT || c->state == C_CLOSED) {
            c->state = C_CLOSED;
            fail_requests(c, HC_ESTOPPED, true, HC_ESTOPPED);
        }
    }
    uv_close((uv_handle_t *)&p->sweep, on_timer_closed);
    uv_close((uv_handle_t *)&p->ramp, on_timer_closed);
    uv_close((uv_handle_t *)&p->stop_timer, on_timer_closed);
}

/* ---- Pool ---------------------------------------------------------------------------- */

int hc_pool_create(uv_loop_t *loop, const hc_config *cfg, hc_pool **out)
{
    if (cfg->target == NULL || cfg->connections == 0 || cfg->pipeline == 0 ||
        cfg->pipeline > HC_PIPELINE_MAX)
        return -EINVAL;
    hc_pool *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return -ENOMEM;
    p->conns = calloc(cfg->connections, sizeof(hc_conn));
    if (p->conns == NULL) {
        free(p);
        return -ENOMEM;
    }
    p->loop = loop;
    p->cfg = *cfg;
    p->n = cfg->connections;
    p->rng = 0x9e3779b97f4a7c15ULL ^ ((uint64_t)(uintptr_t)p) ^ cfg->first_index;
    if (p->rng == 0)
        p->rng = 1;
    for (uint32_t i = 0; i < p->n; i++) {
        p->conns[i].pool = p;
        p->conns[i].index = i;
        p->conns[i].state = C_IDLE;
        p->conns[i].backoff_ms = cfg->reconnect_delay_ms;
    }
    llhttp_settings_init(&p->settings);
    p->settings.on_message_begin = on_message_begin;
    p->settings.on_header_field = on_header_field;
    p->settings.on_header_value = on_header_value;
    p->settings.on_header_value_complete = on_header_value_complete;
    p->settings.on_headers_complete = on_headers_complete;
    p->settings.on_body = on_body;
    p->settings.on_message_complete = on_message_complete;
    uv_timer_init(loop, &p->sweep);
    uv_timer_init(loop, &p->ramp);
    uv_timer_init(loop, &p->stop_timer);
    p->sweep.data = p->ramp.data = p->stop_timer.data = p;
    p->handles_open = 3;
    *out = p;
    return 0;
}

void hc_pool_start(hc_pool *p)
{
    if (p->started || p->stopping)
        return;
    p->started = true;
    uv_timer_start(&p->sweep, on_sweep, 50, 50);
    uv_timer_start(&p->ramp, on_ramp, 0, p->cfg.ramp_interval_ms ? p->cfg.ramp_interval_ms : 1);
}

void hc_pool_stop(hc_pool *p, void (*done)(hc_pool *, void *), void *arg)
{
    if (p->stopping)
        return;
    p->stopping = true;
    p->done = done;
    p->done_arg = arg;
    uv_timer_stop(&p->ramp);
    uv_timer_stop(&p->sweep);
    for (uint32_t i = 0; i < p->n; i++) {
        hc_conn *c = &p->conns[i];
        if (c->state == C_OPEN || c->state == C_CONNECTING)
            conn_close(c, HC_ESTOPPED);
    }
    uv_timer_start(&p->stop_timer, on_stop_timer, 0, 0);
}

void hc_pool_destroy(hc_pool *p)
{
    if (p == NULL)
        return;
    for (uint32_t i = 0; i < p->n; i++) {
        hc_conn *c = &p->conns[i];
        while (c->pend_head != NULL) { /* only if the loop never ran the stop */
            pending *next = c->pend_head->next;
            free(c->pend_head);
            c->pend_head = next;
        }
        free(c->body);
    }
    free(p->conns);
    free(p);
}

void hc_pool_stats(const hc_pool *p, hc_stats *out)
{
#define X(name) out->name += atomic_load_explicit(&p->name, memory_order_relaxed);
    STAT_FIELDS(X)
#undef X
}

uint64_t hc_pool_busy(const hc_pool *p)
{
    return p->busy;
}

void *hc_pool_data(const hc_pool *p)
{
    return p->cfg.data;
}

uv_loop_t *hc_pool_loop(const hc_pool *p)
{
    return p->loop;
}

uint32_t hc_pool_size(const hc_pool *p)
{
    return p->n;
}

hc_conn *hc_pool_conn(hc_pool *p, uint32_t i)
{
    return i < p->n ? &p->conns[i] : NULL;
}

hc_pool *hc_conn_pool(const hc_conn *c)
{
    return c->pool;
}

uint32_t hc_conn_index(const hc_conn *c)
{
    return c->pool->cfg.first_index + c->index;
}

void *hc_conn_data(const hc_conn *c)
{
    return c->data;
}

void hc_conn_set_data(hc_conn *c, void *data)
{
    c->data = data;
}

bool hc_conn_is_open(const hc_conn *c)
{
    return c->state == C_OPEN;
}
