/*
 * net_internal.h - what net/'s sources share. Not a public header.
 */
#ifndef USHER_NET_INTERNAL_H
#define USHER_NET_INTERNAL_H

#include "net.h"
#include "snapshot.h"
#include "wal.h"

#include <llhttp.h>
#include <stdatomic.h>
#include <uv.h>

#define NET_ASSERT(c) ((c) ? (void)0 : net__assert_fail(#c, __FILE__, __LINE__))
_Noreturn void net__assert_fail(const char *expr, const char *file, int line);

/* logfmt line on stderr: ts=... level=... msg="..." then `fmt` (k=v pairs). */
void net__log(const char *level, const char *msg, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

typedef struct net_shard net_shard;
typedef struct net_conn net_conn;

/* ---- Requests and responses ------------------------------------------------ */

enum {
    NET_URL_MAX = 2048,
    NET_HEADERS_MAX = 100 /* header fields per request; beyond: 431 */
};

typedef struct net_request {
    net_conn *conn;
    uint32_t seq; /* position on its connection */
    llhttp_method_t method;
    char url[NET_URL_MAX]; /* path and query, NUL-terminated */
    size_t url_len;
    char *body; /* body_len bytes (NUL-terminated), owned */
    size_t body_len, body_cap;
    bool keep_alive;
    /* Headers the API uses, copied (bounded by header_bytes_max overall). */
    char authorization[1024];
    char idempotency_key[128];
    char if_none_match[128];
    char content_type[128];
    char expect[32];
    /* Response, once done. */
    bool done;
    char *resp; /* owned */
    size_t resp_len;
    bool close_after; /* connection closes after this response */
    uint64_t start_ns;
    int status;
    const char *route; /* for metrics: a fixed route name */
} net_request;

/* Builds a complete response into req (status line, headers, body). Extra
 * headers (may be NULL) are CRLF-terminated lines. */
void net__respond(net_request *req, int status, const char *content_type, const char *extra_headers,
                  const char *body, size_t body_len);

/* RFC 9457 problem+json: type is a short slug ("not-found"), detail a sentence;
 * field may be NULL. */
void net__respond_problem(net_request *req, int status, const char *type, const char *title,
                          const char *detail, const char *field, const char *extra_headers);

/* Marks the request done and sends what can be sent in order. */
void net__request_finish(net_request *req);

/* ---- Connections ---------------------------------------------------------- */

enum { NET_PIPELINE_HARD_MAX = 64 };

struct net_conn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    net_shard *shard;
    llhttp_t parser;
    net_request *cur; /* being parsed */
    net_request *queue[NET_PIPELINE_HARD_MAX];
    uint32_t qhead, qlen; /* in-order responses: queue[qhead .. qhead+qlen) */
    uint32_t next_seq;
    size_t header_bytes;   /* of the request being parsed */
    uint32_t header_count; /* fields of the request being parsed */
    char hdr_field[64];    /* current header name (lowercased, truncated) */
    size_t hdr_field_len;
    bool hdr_field_done;
    char *hdr_value_dst; /* where the current header's value goes, or NULL */
    size_t hdr_value_cap, hdr_value_len;
    bool reading, closing, in_headers;
    bool eof;          /* peer finished or shutdown: close once nothing is owed */
    bool refusing;     /* over the connection limit: only the 503 goes out */
    bool paused;       /* parsing paused: pipeline_max answers owed */
    char *paused_data; /* unparsed bytes kept while paused */
    size_t paused_len;
    int handles_open;
    uint32_t writes_pending;
    net_conn *prev, *next; /* the shard's connection list */
};

/* ---- Shards ----------------------------------------------------------------- */

typedef struct net_route_stats {
    _Atomic uint64_t count[6]; /* by status class: 1xx..5xx, [0] unused */
} net_route_stats;

typedef struct net_metrics {
    _Atomic uint64_t requests;
    _Atomic uint64_t connections_accepted, connections_refused;
    _Atomic uint64_t bad_requests, timeouts;
    _Atomic uint64_t latency_hist[16]; /* request latency < 2^(i+4) µs; last: the rest */
    _Atomic uint64_t latency_sum_ns;
    _Atomic uint64_t status_class[6];
} net_metrics;

struct net_shard {
    uint32_t id;
    net_server *server;
    uv_loop_t loop;
    uv_thread_t thread;
    uv_tcp_t listener;
    uv_async_t wake; /* stop requests */
    uv_timer_t tick; /* expiry sweeps and snapshot ticks */
    engine *e;
    wal_writer *wal;
    snapshot_store *store;
    snapshot_scheduler *sched;
    char dir[4200];
    net_conn *conns;
    uint32_t nconns;
    _Atomic int ready;     /* 1 serving, 0 recovering or stopped */
    _Atomic int wal_error; /* 0, or the error that fail-stopped the WAL */
    _Atomic uint64_t durable_lsn, last_lsn, live_holds, snapshots, snapshot_lsn;
    bool stopping;
    int stop_phase; /* server.c: drain, final snapshot, WAL close */
    uint64_t stop_started_ms;
    int exit_rc;
    net_metrics m;
};

struct net_server {
    net_config cfg;
    char listen_host[64];
    uint16_t port;
    uint32_t nshards;
    net_shard *shards;
    _Atomic uint32_t connections; /* open, across shards */
    _Atomic int stop;
};

/* http.c */
void net__conn_accept(net_shard *sh, uv_stream_t *listener);
void net__conn_close_all(net_shard *sh, bool force);

/* server.c: route a complete request (loop thread). */
void net__dispatch(net_request *req);

#endif /* USHER_NET_INTERNAL_H */
