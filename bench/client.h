/*
 * client.h - a small asynchronous HTTP/1.1 client on libuv + llhttp, for load
 * generators (usher-bench, usher-seed).
 *
 * A pool (hc_pool) is a fixed set of keep-alive connections to one target,
 * all on one uv loop. Scale out with one pool per thread, each on its own
 * loop (the pool is not thread-safe, except hc_pool_stats()). Each connection
 * carries requests in order: by default one at a time; with `pipeline` > 1 up
 * to that many are written before the first answer arrives. Answers are
 * matched to requests in order and delivered to the request's callback.
 *
 *   hc_target t;
 *   char err[256];
 *   if (hc_target_parse("http://127.0.0.1:8080", &t, err, sizeof(err)) != 0) ...
 *   hc_config cfg;
 *   hc_config_default(&cfg);
 *   cfg.target = &t;
 *   cfg.connections = 1000;
 *   cfg.on_open = start_user;                // each connection, once it is connected
 *   hc_pool *p;
 *   hc_pool_create(loop, &cfg, &p);
 *   hc_pool_start(p);                        // connects, ramping up in batches
 *   uv_run(loop, UV_RUN_DEFAULT);            // until hc_pool_stop() closed everything
 *   hc_pool_destroy(p);
 *
 *   static void start_user(hc_conn *c, void *pool_data) {
 *       hc_request rq = {.method = "GET", .path = "/livez"};
 *       hc_send(c, &rq, on_answer, NULL);
 *   }
 *   static void on_answer(hc_conn *c, void *arg, int err, const hc_response *r) {
 *       if (err == 0) ... r->status, r->body, r->body_len, r->latency_ns ...
 *   }
 *
 * Behaviour:
 * - Ramp-up: hc_pool_start() begins `ramp_batch` connects every
 *   `ramp_interval_ms` so the server's accept backlog is not flooded.
 * - hc_send() copies the request (the caller's strings need not live on). It
 *   is queued while the connection is not open or `pipeline` requests are in
 *   flight, and written as soon as it can be. Latency is measured from the
 *   moment it is written to the socket to the last byte of the answer.
 * - Failures are reported to the callback with err != 0 and r == NULL:
 *   HC_ETIMEDOUT (no complete answer within `request_timeout_ms` of being
 *   written; the connection is closed and reopened, as HTTP/1.1 cannot cancel
 *   a request), HC_ECLOSED (the connection closed or failed while the request
 *   was in flight: it may or may not have been executed), HC_EPROTO (the
 *   answer was malformed or too large; the connection is reopened),
 *   HC_ESTOPPED (the pool is stopping; nothing was sent or the answer was lost).
 *   Requests queued but not yet written survive a reconnect; they fail with
 *   HC_ETIMEDOUT when the connection could not be opened within
 *   `request_timeout_ms` of queueing, or at once with HC_ECLOSED after a failed
 *   connect when `fail_queued_on_connect_error` is set.
 * - Reconnect: a connection closed by the server (Connection: close, EOF,
 *   error, timeout) is reopened: at once if it had served an answer since it
 *   opened, else after `reconnect_delay_ms`, doubling up to
 *   `reconnect_delay_max_ms` (with jitter) while connects keep failing.
 * - Timeouts are checked by one timer per pool every 50 ms, so they fire up
 *   to 50 ms late.
 * - Callbacks run on the pool's loop and may call hc_send() on any connection
 *   of the same pool, and hc_pool_stop().
 *
 * Raising the descriptor limit for many connections: hc_raise_nofile().
 */
#ifndef USHER_BENCH_CLIENT_H
#define USHER_BENCH_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

enum {
    HC_ETIMEDOUT = -1001, /* no answer in time */
    HC_ECLOSED = -1002,   /* the connection closed with the request in flight */
    HC_EPROTO = -1003,    /* malformed or oversized answer */
    HC_ESTOPPED = -1004,  /* the pool is stopping */
    HC_PIPELINE_MAX = 64
};

/** A short name for an HC_E* code ("timeout", "closed", "protocol", "stopped"). */
const char *hc_strerror(int err);

/** Where to connect: the resolved address and the Host header. */
typedef struct hc_target {
    struct sockaddr_storage addr;
    char host[300];     /* "HOST:PORT", sent as Host */
    char base_path[64]; /* a path after HOST:PORT in the URL, without the final '/' ("" if none) */
} hc_target;

/**
 * Parses "http://HOST[:PORT][/PATH]" (port 80 by default; IPv6 as [::1]) and
 * resolves HOST (getaddrinfo, first address). Returns 0, or -1 with a message in `err`.
 */
int hc_target_parse(const char *url, hc_target *t, char *err, size_t errlen);

typedef struct hc_conn hc_conn;
typedef struct hc_pool hc_pool;

/** One answer. Pointers are valid during the callback only. */
typedef struct hc_response {
    int status;          /* 200, 404, ... */
    const char *body;    /* NUL-terminated copy (body[body_len] == '\0'); "" when none */
    size_t body_len;     /* bytes */
    int retry_after_s;   /* Retry-After in seconds (delta form), -1 when absent */
    const char *etag;    /* ETag value with its quotes, "" when absent */
    bool replayed;       /* Idempotent-Replayed: true */
    bool will_close;     /* the server closes the connection after this answer */
    uint64_t latency_ns; /* written to the socket -> last byte read */
    uint64_t sent_ns;    /* uv_hrtime() just before the request was written (so the server
                          * saw it later; sent_ns + latency_ns is when the answer was read) */
} hc_response;

/** Completion: err is 0 and r the answer, or err is an HC_E* code and r NULL. */
typedef void (*hc_cb)(hc_conn *c, void *arg, int err, const hc_response *r);

/** A request. Only method and path are required. */
typedef struct hc_request {
    const char *method;       /* "GET", "POST", "DELETE", "HEAD", ... */
    const char *path;         /* "/api/seats/9?x=1" (target's base_path is NOT prepended) */
    const char *headers;      /* extra header lines, each ending in "\r\n", or NULL */
    const char *body;         /* or NULL */
    size_t body_len;          /* bytes of body */
    const char *content_type; /* with a body; NULL = "application/json" */
} hc_request;

typedef struct hc_config {
    const hc_target *target;         /* required; must outlive the pool */
    uint32_t connections;            /* required, >= 1 */
    uint32_t pipeline;               /* requests in flight per connection, 1..HC_PIPELINE_MAX (1) */
    uint32_t ramp_batch;             /* connects begun per ramp step; 0 = all at once (500) */
    uint32_t ramp_interval_ms;       /* between ramp steps (10) */
    uint32_t connect_timeout_ms;     /* (5000) */
    uint32_t request_timeout_ms;     /* (30000) */
    uint32_t reconnect_delay_ms;     /* first delay after a failed connection (100) */
    uint32_t reconnect_delay_max_ms; /* (2000) */
    size_t max_body_bytes;           /* larger answers are HC_EPROTO (64 MiB) */
    uint32_t first_index;            /* hc_conn_index() of connection 0 (0); for global numbering */
    bool fail_queued_on_connect_error; /* a failed connect fails the queued requests (false) */
    /* Called each time a connection is established (first time and after reconnects). */
    void (*on_open)(hc_conn *c, void *data);
    void *data; /* passed to on_open, returned by hc_pool_data() */
} hc_config;

/** Fills the defaults shown above (target NULL, connections 0). */
void hc_config_default(hc_config *c);

/** Counters of a pool. Safe to read from any thread while the pool runs. */
typedef struct hc_stats {
    uint64_t open;             /* connections open now */
    uint64_t connects;         /* successful connects */
    uint64_t connect_failures; /* refused, unreachable, timed out */
    uint64_t disconnects;      /* open connections that closed (either side) */
    uint64_t requests;         /* written */
    uint64_t responses;        /* complete answers */
    uint64_t timeouts;         /* requests failed with HC_ETIMEDOUT */
    uint64_t closed_in_flight; /* requests failed with HC_ECLOSED */
    uint64_t protocol_errors;  /* answers failed with HC_EPROTO */
    uint64_t bytes_out, bytes_in;
} hc_stats;

/** Creates a pool on `loop` (nothing is connected yet). 0 or a negative errno. */
int hc_pool_create(uv_loop_t *loop, const hc_config *cfg, hc_pool **out);

/** Starts connecting (ramp-up). */
void hc_pool_start(hc_pool *p);

/**
 * Stops: every connection closes, queued and in-flight requests fail with HC_ESTOPPED,
 * later hc_send() calls fail at once. `done` (may be NULL) runs on the loop once every
 * handle is closed; the loop then has nothing left of the pool.
 */
void hc_pool_stop(hc_pool *p, void (*done)(hc_pool *p, void *arg), void *arg);

/** Frees a stopped pool (after its loop ran the closes). */
void hc_pool_destroy(hc_pool *p);

/** Adds the pool's counters to *out (thread-safe, relaxed reads). */
void hc_pool_stats(const hc_pool *p, hc_stats *out);

/** Requests queued or in flight across the pool. */
uint64_t hc_pool_busy(const hc_pool *p);

void *hc_pool_data(const hc_pool *p);
uv_loop_t *hc_pool_loop(const hc_pool *p);
uint32_t hc_pool_size(const hc_pool *p);
/** Connection i (0 <= i < connections). */
hc_conn *hc_pool_conn(hc_pool *p, uint32_t i);

/** The pool of a connection, its number (first_index + position), its user data. */
hc_pool *hc_conn_pool(const hc_conn *c);
uint32_t hc_conn_index(const hc_conn *c);
void *hc_conn_data(const hc_conn *c);
void hc_conn_set_data(hc_conn *c, void *data);
bool hc_conn_is_open(const hc_conn *c);

/**
 * Queues a request on `c`; `cb(c, arg, ...)` runs exactly once with the outcome (never
 * from inside hc_send). Returns 0, -ENOMEM, or HC_ESTOPPED (then cb does not run).
 */
int hc_send(hc_conn *c, const hc_request *req, hc_cb cb, void *arg);

/**
 * Raises RLIMIT_NOFILE's soft limit to the hard limit. Returns the soft limit now in
 * effect (UINT64_MAX for unlimited), or 0 if it cannot be read.
 */
uint64_t hc_raise_nofile(void);

#endif /* USHER_BENCH_CLIENT_H */
