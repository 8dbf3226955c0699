/*
 * net_internal.h - what net/'s sources share. Not a public header.
 */
#ifndef USHER_NET_INTERNAL_H
#define USHER_NET_INTERNAL_H

#include "auth.h"
#include "body.h"
#include "catalog.h"
#include "net.h"
#include "ratelimit.h"
#include "repl.h"
#include "ring.h"
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
typedef struct net_stream net_stream;
typedef struct net_sse net_sse; /* sse.c */
typedef struct net_web net_web; /* web.c */

/* JSON text built in place, for the answers of the seat path and seat maps
 * (no jansson tree: a 600-seat map was thousands of small allocations). It
 * starts in `small` and moves to the heap when it outgrows it (jtext.c). */
typedef struct net_jtext {
    char *buf;
    size_t n, cap;
    char small[4096];
} net_jtext;
void net__jt_init(net_jtext *t);
void net__jt_free(net_jtext *t); /* and init again */
void net__jt_put(net_jtext *t, const char *s, size_t n);
void net__jt_lit(net_jtext *t, const char *s);
void net__jt_u64(net_jtext *t, uint64_t v);
void net__jt_i64(net_jtext *t, int64_t v);
/* A JSON string literal: quotes, backslashes and control bytes escaped. */
void net__jt_str(net_jtext *t, const char *s);
/* The text as a malloc'd block (not NUL-terminated), its length in *len;
 * `t` is empty again. */
char *net__jt_take(net_jtext *t, size_t *len);

/* ---- Requests and responses ------------------------------------------------ */

enum {
    NET_URL_MAX = 2048,
    NET_HEADERS_MAX = 100 /* header fields per request; beyond: 431 */
};

/* ---- Jobs: work that leaves the loop turn that parsed its request ----------------
 * A request is parsed on the shard that accepted its connection (the origin).
 * Work on state another shard owns travels there as a job over the SPSC
 * rings, runs on that shard's thread (the target), may wait there until the
 * WAL made its records durable (and, for catalog changes, until LMDB has
 * them), and comes back over the reverse ring. While a job is away its
 * request belongs to the job: the origin does not touch it, and a connection
 * that closes meanwhile leaves it orphaned (freed when the job returns). */
typedef struct net_job net_job;
typedef struct net_request net_request;
typedef void (*net_job_fn)(net_shard *sh, net_job *j);

struct net_job {
    net_request *req; /* the request answered; for a scatter part, the parent's */
    net_job *parent;  /* scatter part: the job that gathers */
    uint32_t origin, target;
    net_job_fn run;    /* on the target */
    net_job_fn back;   /* on the origin once it returns; NULL: finish the request */
    uint64_t wait_lsn; /* target: deliver once durable_lsn >= this */
    bool wait_catalog; /* ... and once the catalog has applied it */
    bool failed;       /* scatter part: could not run (ring full) */
    net_job *next;     /* wait queues */
    /* Caller and arguments, set by the origin. */
    uint64_t user_id;
    auth_role role;
    json_t *body;          /* parsed request body, owned (NULL if none) */
    uint64_t id;           /* the :id in the path, or the resource the job is for */
    catalog_kind cat_kind; /* catalog writes: what ... */
    int cat_op;            /* ... and create, update or delete (api.c) */
    bool pw_ok;            /* login: the password matched */
    char *text;            /* job-specific string (owned), e.g. a password hash */
    void *out;             /* scatter part: results (owned) */
    size_t out_len;        /* ... their count */
    uint64_t total;        /* ... and the total before paging */
    uint32_t parts_pending;
    net_job **parts;
    uint64_t idem_fp;  /* idempotency: fingerprint of method, path and body */
    uint64_t refs[2];  /* catalog ids this write holds in the refs table ... */
    uint32_t nrefs;    /* ... (released when the job returns) */
    uint64_t changing; /* the id it marked as being deleted or edited, or 0 */
    uint32_t idem_slot, idem_gen;
    bool idem;
    bool part; /* a scatter part (a failure marks it, the gather answers) */

    net_job_fn exec;     /* idempotent request: the operation, run on ... */
    uint32_t exec_shard; /* ... this shard after the key's home checked the key */
};

struct net_request {
    net_conn *conn; /* NULL for an internal call (usherd --demo / --create-admin) */
    net_shard *shard;
    bool busy;     /* a job or threadpool task owns it */
    bool orphan;   /* its connection closed while busy: free when the job returns */
    bool internal; /* made by net_server_call(): finishing signals the caller */
    bool dispatching, finish_pending; /* see net__dispatch */
    net_job job;
    uv_work_t work; /* threadpool tasks (password hashing) */
    uint32_t seq;   /* position on its connection */
    llhttp_method_t method;
    size_t url_len;
    char *body; /* body_len bytes (NUL-terminated), owned */
    size_t body_len, body_cap;
    bool keep_alive;
    /* Response, once done. */
    bool done;
    char *resp; /* owned */
    size_t resp_len;
    size_t resp_body_off; /* where the body starts in resp (internal calls read it) */
    bool close_after;     /* connection closes after this response */
    uint64_t start_ns;
    int status;
    const char *route;  /* for metrics: a fixed route name */
    int route_id;       /* index into the route table, -1 if none */
    net_stream *stream; /* a streamed answer (net__respond_stream): its producer */
    /* The large buffers stay last: a reused request clears only what is
     * above them (request_new in http.c) and empties these strings. */
    char url[NET_URL_MAX]; /* path and query, NUL-terminated */
    /* Headers the API uses, copied (bounded by header_bytes_max overall). */
    char authorization[AUTH_TOKEN_MAX + 16]; /* "Bearer " and a token up to AUTH_TOKEN_MAX */
    char idempotency_key[256];               /* longer than 64 is refused with 400; past 255, 431 */
    char if_none_match[128];
    char content_type[128];
    char expect[32];
    char admission_token[96]; /* Admission-Token: a virtual queue's pass (api.c) */
    char last_event_id[32];   /* Last-Event-ID: where an event stream resumes (sse.c) */
    net_reserve_args reserve; /* POST /api/bookings/reserve: filled by h_reserve */
    /* RateLimit-Policy and RateLimit lines every answer to this request
     * carries (CRLF-terminated), or "": set by the rate check (api.c). */
    char rate_headers[192];
};

/* Builds a complete response into req (status line, headers, body). Extra
 * headers (may be NULL) are CRLF-terminated lines. */
void net__respond(net_request *req, int status, const char *content_type, const char *extra_headers,
                  const char *body, size_t body_len);

/* RFC 9457 problem+json: type is a short slug ("not-found"), detail a sentence;
 * field may be NULL. */
void net__respond_problem(net_request *req, int status, const char *type, const char *title,
                          const char *detail, const char *field, const char *extra_headers);

/* Drops a response built earlier (e.g. to replace it with an error). */
void net__respond_reset(net_request *req);

/* Frees a request nobody will answer (orphaned). */
void net__request_free(net_request *req);
/* Frees the shard's spare requests (shutdown). */
void net__request_spares_free(net_shard *sh);

/* Marks the request done and sends what can be sent in order. */
void net__request_finish(net_request *req);

/* ---- Streamed answers (http.c) -----------------------------------------------
 * A route may answer with a stream: a 200 whose chunked body a producer
 * writes over time (replication.c). Such a request is the last its
 * connection is read for (net__conn_last_request): the server parses
 * nothing after it, and once the head has left it only watches for the
 * peer's close. The producer writes a chunk at a time and writes the next
 * only when told the previous ones left (drained), so a slow reader holds
 * at most one chunk in server memory. */
enum { NET_STREAM_SNDBUF = 256 * 1024 /* socket send buffer of a streamed answer */ };

typedef struct net_stream_ops {
    /* Everything written so far has left the socket: write more. */
    void (*drained)(net_stream *st);
    /* The connection is gone (peer closed, error, server stopping, or after
     * net__stream_end): free what is yours. No call follows. */
    void (*closed)(net_stream *st);
} net_stream_ops;

struct net_stream {
    const net_stream_ops *ops;
    net_shard *shard; /* the loop the producer runs on */
    net_conn *conn;   /* set once the head is sent; NULL after closed */
};

/* Marks `req` as the last request its connection is read for, and answers
 * it with Connection: close. Call before answering. */
void net__conn_last_request(net_request *req);
/* Answers `req` (made last with net__conn_last_request) with a streamed 200
 * of `content_type`. The producer gets drained() once the head has left. */
void net__respond_stream(net_request *req, const char *content_type, net_stream *st);
/* Sends one chunk (copied): 0 when it left at once (write on), 1 when some
 * is queued (wait for drained), -1 when the connection is closing. */
int net__stream_write(net_stream *st, const char *data, size_t len);
/* Ends the body; the connection closes once it has left (closed() follows). */
void net__stream_end(net_stream *st);
/* Closes the connection now, whatever is queued (closed() follows). */
void net__stream_abort(net_stream *st);

/* Moves `r`'s connection to shard `target` and runs `fn` (a route handler)
 * for `r` there (http.c, "Handing a connection to another shard"). Call
 * from net__dispatch as its last act: `r` is not the caller's after this.
 * When the connection owes other answers first, `r` is answered 400 here. */
void net__conn_handoff(net_request *r, uint32_t target, void (*fn)(net_request *));

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
    /* Timeouts, in loop time: the request being parsed must be complete by
     * req_deadline_ms, an idle connection closes at idle_deadline_ms. The
     * timer is due at the earlier deadline, or request_timeout from when
     * it was set if that is sooner, so a new request never needs it moved:
     * requests cost no timer operation, a busy connection one wake-up per
     * request_timeout (http.c, timer_ensure). */
    uint64_t req_deadline_ms, idle_deadline_ms, timer_due_ms;
    bool lingering;              /* closing after a final answer: the timer is the linger's */
    bool read_done;              /* the parser failed or timed out mid-request: never read again */
    bool parsing;                /* inside llhttp_execute: answers sent now resume after it */
    bool last_request;           /* a request was the last to parse (a stream's): parse no more */
    net_stream *stream;          /* streaming a body: the producer (the head has been sent) */
    struct net_handoff *handoff; /* moving to another shard once its writes are done */
    bool resume_wanted;          /* ... and this asks for that resume */
    /* The client's address as a rate-limit key (uv_tcp_getpeername at
     * accept): IPv4 as ::ffff:a.b.c.d, IPv6 as its /64 prefix (one host
     * usually owns a whole /64), the rest zero. */
    bool peer_known;
    uint8_t peer_key[16];
    net_conn *prev, *next; /* the shard's connection list */
};

/* ---- Shards ----------------------------------------------------------------- */

enum { NET_ROUTE_SLOTS = 64 /* > the number of routes; the last counts the rest */ };

typedef struct net_metrics {
    _Atomic uint64_t requests;
    _Atomic uint64_t connections_accepted, connections_refused;
    _Atomic uint64_t bad_requests, timeouts;
    _Atomic uint64_t latency_hist[16]; /* request latency < 2^(i+4) µs; last: the rest */
    _Atomic uint64_t latency_sum_ns;
    _Atomic uint64_t status_class[6];
    _Atomic uint64_t holds, confirms, cancels, expiries, releases;
    _Atomic uint64_t forwarded, forward_refused, backlog_refused;
    _Atomic uint64_t seats_held, seats_sold, showtimes; /* gauges, refreshed each tick */
    _Atomic uint64_t waiters, queues, queue_waiting, queue_admitted; /* ... and these */
    _Atomic uint64_t offers;                                         /* waiting-list offers made */
    _Atomic uint64_t catalog_applied_lsn;
    _Atomic uint64_t route_status[NET_ROUTE_SLOTS][6]; /* by route id (last: other), class */
    /* WAL writer statistics, copied each tick (the writer's are loop-thread only). */
    _Atomic uint64_t wal_records, wal_batches, wal_syncs, wal_sync_ns, wal_bytes, wal_batch_max;
    _Atomic uint64_t wal_sync_hist[24];
    _Atomic uint64_t waitq_len;
    /* Event streams (sse.c). */
    _Atomic uint64_t sse_streams, sse_feeds; /* gauges */
    _Atomic uint64_t sse_events, sse_bytes, sse_dropped_slow, sse_stalled;
    /* Replication, by the shard streamed (any shard's thread may serve a stream). */
    _Atomic uint64_t repl_streams, repl_events, repl_bytes;
} net_metrics;

enum {
    NET_REFS_MAX = 1024,        /* catalog references in flight at once; beyond: 503 */
    NET_HASHING_MAX = 32,       /* password jobs per shard on the threadpool; beyond: 503 */
    NET_EXPIRED_RECENT = 8192,  /* remembered expired hold ids per shard (a power of two) */
    NET_OUTSTANDING_MIN = 1024, /* jobs one shard may have away at another, at least ... */
    NET_OUTSTANDING_CAP = 32768 /* ... and at most (see net__mail_init) */
};

typedef struct net_mail {
    uint8_t kind; /* NET_MAIL_RUN or NET_MAIL_BACK */
    net_job *job;
} net_mail;
enum { NET_MAIL_RUN = 1, NET_MAIL_BACK = 2 };

/* Per-shard idempotency table (api.c). */
typedef struct net_idem_entry net_idem_entry;
typedef struct net_idem {
    net_idem_entry *entries; /* ring of `cap`, oldest at head */
    uint32_t *buckets;       /* hash -> entry index + 1 (0: empty), chained through entries */
    uint32_t cap, mask, head, count;
    uint32_t gen;
} net_idem;

/* What browse filters on, copied per shard (browse.c): rebuilt when the
 * catalog's version changes, read by this shard's thread only. */
typedef struct net_browse_entity {
    uint64_t id;
    char *key; /* a theater's city or a movie's genre (owned); NULL if it has none */
} net_browse_entity;

typedef struct net_browse_index {
    bool built;
    uint64_t version;                     /* catalog_read_version it was built at */
    net_browse_entity *theaters, *movies; /* in id order */
    size_t ntheaters, nmovies;
    catalog_showtime_row *rows; /* this shard's showtimes, in id order */
    size_t nrows;
} net_browse_index;

/* Brings the shard's index up to the version `rd` sees. 0, or < 0 (the old
 * index is kept). */
int net__browse_index_refresh(net_shard *sh, catalog_read *rd);
void net__browse_index_free(net_browse_index *ix);
/* The ids (ascending, malloc'd in *out) of the entities whose key equals
 * `key` ignoring ASCII case; returns how many. */
size_t net__browse_ids(const net_browse_entity *v, size_t n, const char *key, uint64_t **out);
/* Binary search in ascending ids. */
bool net__browse_ids_has(const uint64_t *ids, size_t n, uint64_t id);

/* A catalog change journaled but not yet in LMDB. */
typedef struct net_cat_pending {
    uint64_t lsn;
    catalog_change ch; /* json points into `buf` */
    uint8_t *buf;
    struct net_cat_pending *next;
} net_cat_pending;

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
    /* Jobs (mail.c). */
    uv_async_t mail;
    uint32_t outstanding[NET_SHARDS_MAX]; /* jobs away at each shard */
    uint32_t local_busy;                  /* threadpool tasks and local waits */
    net_job *waitq, *waitq_tail;          /* waiting for durability, by LSN */
    uint32_t waitq_len;
    net_job *catq, *catq_tail; /* waiting for the catalog to apply */
    net_cat_pending *cat_pending, *cat_pending_tail;
    bool cat_applying;
    uint32_t cat_failures; /* consecutive failed applies */
    char cat_error[256];   /* the last one's LMDB text */
    uint32_t hashing;      /* password jobs on the threadpool (bounded) */
    uint64_t onsale_seed;  /* the next queue start's shuffle seed (api.c) */
    net_sse *sse;          /* event streams of this shard's showtimes (sse.c) */
    bool onsale_seeded;
    uint64_t cat_applied_lsn;
    uv_work_t cat_work;
    net_cat_pending *cat_batch; /* being applied by cat_work */
    uint64_t cat_batch_lsn;
    int cat_batch_rc;
    net_job *cat_writes, *cat_writes_tail; /* updates waiting for earlier changes to apply */
    auth_cache tokens;
    net_idem idem;
    net_browse_index browse;
    /* Ids of recently expired holds (direct-mapped, lossy): a confirm of one
     * answers "expired" rather than the engine's "ended". */
    uint64_t expired_recent[NET_EXPIRED_RECENT];
    /* Spare requests for reuse (http.c), linked through job.req: a request is some 5 KB, and
     * allocating and zeroing one per request showed in profiles. */
    net_request *req_spare;
    uint32_t req_spare_len;
    bool stopping;
    bool drained;
    int stop_phase; /* server.c: drain, final snapshot, WAL close */
    uint64_t stop_started_ms;
    int exit_rc;
    net_metrics m;
};

struct net_server {
    net_config cfg;
    catalog *cat;
    auth_jwt_key jwt;
    auth_password_opts pw_opts;
    _Atomic uint64_t next_id; /* catalog ids (theaters, screens, movies, showtimes, users) */
    net__ring *rings;         /* [from * nshards + to] */
    uint32_t outstanding_max; /* jobs one shard may have away at another; beyond: 503 */
    _Atomic uint32_t drained; /* shards that finished draining at shutdown */
    int lock_fd;              /* flock on DATA_DIR/LOCK */
    /* Catalog references in flight (api.c): creates that name a theater,
     * screen or movie, and deletes or edits of one, exclude each other until
     * they reached LMDB. Admin paths only; never the seat path. */
    uv_mutex_t refs_mu;
    struct net_ref {
        uint64_t id;
        uint32_t pending; /* creates in flight that refer to it */
        bool changing;    /* a delete or edit in flight */
    } refs[NET_REFS_MAX];
    uint32_t nrefs;
    /* Internal calls (net_server_call), made from non-shard threads. */
    uv_mutex_t call_mu;
    uv_cond_t call_cond;
    net_request *call_inbox;
    bool call_done;
    char listen_host[64];
    uint16_t port;
    uint32_t nshards;
    net_shard *shards;
    _Atomic uint32_t connections;    /* open, across shards */
    _Atomic uint32_t repl_snapshots; /* replication snapshots being served */
    _Atomic uint32_t repl_streams;   /* replication streams open (opening included) */
    _Atomic int stop;
    /* Rate limits (api.c): one table for every shard (a client's
     * connections can land on any shard), NULL when every limit is off. */
    ratelimit *rl;
    net_web *web;                /* --web-root's files, read at start; NULL when none */
    int rl_policy[NET_RL_COUNT]; /* the table's policy number of each limit, -1 when off */
    _Atomic uint64_t rate_limited[NET_RL_COUNT]; /* 429s by limit */
};

/* http.c */
void net__conn_accept(net_shard *sh, uv_stream_t *listener);
void net__conn_close_all(net_shard *sh, bool force);

/* api.c: once per process, before the shard threads start. */
void net__api_init(net_server *s);
/* api.c: route a complete request (loop thread). */
void net__dispatch(net_request *req);
int net__idem_init(net_idem *t, uint32_t cap);
void net__idem_free(net_idem *t);

/* api.c: shared with replication.c */
void net__problem(net_request *r, int status, const char *type, const char *title,
                  const char *detail, const char *field, json_t *ext, const char *extra);
/* A query parameter that must be an integer within [min, max]: 1 (set), 0
 * (absent), -1 (answered 400). */
int net__query_u64(net_request *r, const char *name, uint64_t min, uint64_t max, uint64_t *out);

/* api.c: shared with advice.c */
/* A query parameter, percent-decoded into `out`: 1 (set), 0 (absent), -1
 * (malformed, or `cap` bytes or longer). Answers nothing. */
int net__query_get(const net_request *r, const char *name, char *out, size_t cap);
/* Scatter-gather: one job running `part_run` goes to every shard (parts[i]
 * to shard i, each with the caller's user_id and role; the parent's `text`
 * and `id` are theirs to read); `gather` runs on the origin once every part
 * is back, parts that could not be sent marked failed. A part leaves its
 * results in `out` (one malloc'd block: net__scatter_free frees it). */
void net__scatter(net_request *r, net_job_fn part_run, net_job_fn gather);
void net__scatter_free(net_request *r);
bool net__scatter_failed(net_request *r);
/* A gather's first step: the parent request, or NULL when its connection
 * closed while the parts were away (then the parts and it are freed). */
net_request *net__gather_begin(net_job *parent);
/* On the target: a read job's answer is built; it goes back once the state
 * it looked at is durable. */
void net__read_done(net_shard *sh, net_job *j);

/* advice.c */
void net__route_pricing_suggest(net_request *r);
void net__route_recommendations(net_request *r);

/* replication.c */
void net__route_replication(net_request *r);
void net__route_replication_snapshot(net_request *r);
void net__route_replication_status(net_request *r);

/* api.c: shared with sse.c */
/* GET /api/seats/:id's JSON (malloc'd, length in *len), or
 * NULL for an unknown showtime. */
char *net__seatmap_json(net_shard *sh, uint64_t showtime_id, size_t *len);
/* GET /api/showtimes/:id/queue/me's JSON for user state `u` (the showtime
 * has a queue). */
json_t *net__queue_me_json(net_shard *sh, uint64_t showtime_id, uint64_t user_id, int64_t now,
                           const engine_queue_user *u);
/* Answers an on-sale refusal (an engine result) as its problem. */
void net__onsale_refusal(net_shard *sh, net_request *r, int rc);

/* sse.c: event streams (docs/api.md, "Live seat maps and queue positions").
 * The state lives on the shard that owns the showtime: net__sse_init at
 * shard start (before recovery ends), net__sse_free after its loop ended. */
void net__route_seat_events(net_request *r);
void net__route_queue_events(net_request *r);
int net__sse_init(net_shard *sh);
void net__sse_free(net_shard *sh);
/* WAL progress: sends what became durable. */
void net__sse_durable(net_shard *sh, uint64_t durable_lsn);
/* Each shard tick: queue positions, heartbeats, slow readers, idle feeds. */
void net__sse_tick(net_shard *sh, int64_t now_ms);
/* Showtime `id` left the engine (deleted, or re-created by a change of
 * screen or start): its seat streams end (reason showtime-deleted or
 * showtime-changed) and its feed is dropped. Call right after the delete. */
void net__sse_showtime_gone(net_shard *sh, uint64_t id, bool deleted);
/* Shutdown: every stream gets a final event and ends. */
void net__sse_stop(net_shard *sh);
/* ... and its loop handle closes (with the shard's other handles). */
void net__sse_close(net_shard *sh);

/* web.c: the static files of --web-root, read into memory at start. */
int net__web_load(const char *root, const char *analytics_url, net_web **out, char *err,
                  size_t cap);
void net__web_free(net_web *w);
/* Files and bytes loaded. */
size_t net__web_count(const net_web *w, size_t *bytes);
/* Answers `r` when its path (the first path_len bytes of url) names a file;
 * false (nothing answered) otherwise. */
bool net__web_serve(net_request *r, const net_web *w, const char *url, size_t path_len);

/* server.c */
void net__route_livez(net_request *r);
void net__route_readyz(net_request *r);
void net__route_metrics(net_request *r);
/* api.c: "METHOD /pattern" of route `id`, or NULL past the last. */
const char *net__route_label(int id, char *buf, size_t cap);
int64_t net__now_ms(net_shard *sh);
/* Monotonic milliseconds, the same clock on every thread (rate limits). */
int64_t net__mono_ms(void);
int64_t net__journal(net_shard *sh, const engine_record *rec);
/* Expires due holds (journaled, remembered for "expired" answers). */
void net__holds_sweep(net_shard *sh, int64_t now);
/* Makes the on-sale steps that are due (waiting-list offers, queue starts
 * and admissions), journaled (api.c). */
void net__onsale_steps(net_shard *sh, int64_t now);

/* mail.c */
int net__mail_init(net_server *s);
void net__mail_free(net_server *s);
void net__on_mail(uv_async_t *a);
/* Sends `j` to run on `target` (or runs it now when that is this shard).
 * False when the ring to `target` is at its bound: nothing was sent. */
bool net__job_send(net_shard *sh, net_job *j, uint32_t target);
/* On the target, once the job's answer is built: waits as asked, then
 * returns the job to its origin. */
void net__job_complete(net_shard *sh, net_job *j);
/* WAL progress and failure (called from server.c's callbacks). */
void net__jobs_durable(net_shard *sh, uint64_t durable_lsn);
void net__jobs_wal_failed(net_shard *sh);
/* Journals a catalog change in this shard's WAL; returns the LSN or < 0. */
int64_t net__catalog_journal(net_shard *sh, const catalog_change *ch);
/* Starts applying durable catalog changes (and advancing the applied LSN). */
void net__catalog_kick(net_shard *sh);
/* True when this shard has nothing away, nothing waiting, nothing in the pool. */
bool net__jobs_idle(net_shard *sh);

#endif /* USHER_NET_INTERNAL_H */
