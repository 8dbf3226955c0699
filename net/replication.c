/*
 * replication.c - the replication API (docs/replication.md):
 *
 *   GET /api/replication?shard=N&from_lsn=L   a shard's durable WAL as NDJSON events, then its tail
 *   GET /api/replication/snapshot?shard=N     a shard's state at its stored snapshot's LSN
 *   GET /api/replication/status               every shard's last, durable, oldest, snapshot LSNs
 *
 * A stream is a net_stream producer living on the loop of the connection
 * that asked (not necessarily shard N's): it reads shard N's WAL files with
 * a wal_follower on libuv's threadpool, bounded by the durable LSN shard N
 * publishes (an atomic), one job at a time, at most REPL_CHUNK_BYTES of lines
 * per job, and queues the next job only once the previous chunk has left the
 * socket. Memory per stream is therefore one chunk and one WAL record,
 * however slow the consumer.
 *
 * A snapshot is built in one threadpool job into an unlinked temporary file
 * in the data directory (one LMDB read transaction of the shard's snapshot
 * store, then the catalog), and sent from that file in chunks.
 */
#include "net_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum {
    REPL_CHUNK_BYTES = 64 * 1024,  /* lines per read job (one record may exceed it) */
    REPL_POLL_MS = 10,             /* how often an idle stream looks at the durable LSN */
    REPL_HEARTBEAT_MS = 1000,      /* a heartbeat line after this long without a line */
    REPL_SNAPSHOTS_MAX = 2,        /* snapshot answers at once; beyond: 503 */
    REPL_FILE_CHUNK = 256 * 1024,  /* snapshot file bytes per chunk */
    REPL_FILE_FLUSH = 1024 * 1024, /* snapshot lines buffered before a write(2) */
    REPL_STALL_MS = 60 * 1000      /* a reader that takes nothing for this long is dropped */
};

typedef enum { RS_LOG = 1, RS_SNAPSHOT = 2 } rs_kind;

typedef struct rstream rstream;
struct rstream {
    net_stream st; /* first: the net_stream pointer is the rstream pointer */
    rs_kind kind;
    net_server *srv;
    net_request *req; /* until the head is answered */
    uint32_t src;     /* the shard streamed */
    /* RS_LOG */
    wal_follower *f;
    uint64_t from_lsn;    /* asked for */
    uint64_t oldest_lsn;  /* when from_lsn is gone: the oldest retained */
    uint64_t job_durable; /* the bound the running job reads to */
    /* RS_SNAPSHOT */
    int fd;
    uint64_t file_len, file_off, snap_lsn, snap_rows;
    /* Job and its result */
    uv_work_t work;
    void (*job)(rstream *rs);
    repl_buf out;
    int rc;
    char err[512];
    uint64_t events;   /* lines the job produced */
    uint64_t fail_lsn; /* the record the job could not encode (0: none) */
    uint64_t next_lsn; /* the next LSN to send, as of the last job (loop-side copy) */
    repl_buf beat;     /* heartbeats (the loop's own: `out` may be the job's) */
    /* Loop state */
    uv_timer_t timer;
    bool timer_init, working, draining, closed, ended;
    uint64_t last_line_ms;   /* loop time of the last line sent */
    uint64_t drain_since_ms; /* loop time the socket filled up */
};

static net_shard *src_shard(rstream *rs)
{
    return &rs->srv->shards[rs->src];
}

static void wal_dir_of(net_server *s, uint32_t shard, char *out, size_t cap)
{
    snprintf(out, cap, "%s/wal", s->shards[shard].dir);
}

/* ---- Lifetime ----------------------------------------------------------------------- */

static void rs_free(rstream *rs)
{
    if (rs->f != NULL)
        wal_follower_close(rs->f);
    if (rs->fd >= 0)
        close(rs->fd);
    repl_buf_free(&rs->out);
    repl_buf_free(&rs->beat);
    if (rs->kind == RS_LOG) {
        atomic_fetch_sub(&src_shard(rs)->m.repl_streams, 1);
        atomic_fetch_sub(&rs->srv->repl_streams, 1);
    } else
        atomic_fetch_sub(&rs->srv->repl_snapshots, 1);
    free(rs);
}

static void on_timer_closed(uv_handle_t *h)
{
    rstream *rs = h->data;
    rs->timer_init = false;
    if (!rs->working)
        rs_free(rs);
}

/* Frees the stream once nothing refers to it: no job in the pool, the
 * timer closed. */
static void rs_release(rstream *rs)
{
    rs->closed = true;
    if (rs->timer_init) {
        if (!uv_is_closing((uv_handle_t *)&rs->timer))
            uv_close((uv_handle_t *)&rs->timer, on_timer_closed);
        return;
    }
    if (!rs->working)
        rs_free(rs);
}

static void st_closed(net_stream *st)
{
    rs_release((rstream *)st);
}

/* ---- Jobs ------------------------------------------------------------------------------ */

static void after_job(uv_work_t *w, int status);

static void job_work(uv_work_t *w)
{
    rstream *rs = w->data;
    rs->job(rs);
}

static void job_start(rstream *rs, void (*job)(rstream *rs))
{
    NET_ASSERT(!rs->working);
    rs->job = job;
    rs->rc = 0;
    rs->err[0] = '\0';
    rs->events = 0;
    rs->fail_lsn = 0;
    rs->working = true;
    rs->st.shard->local_busy++;
    rs->work.data = rs;
    int rc = uv_queue_work(&rs->st.shard->loop, &rs->work, job_work, after_job);
    NET_ASSERT(rc == 0);
}

/* Threadpool: the next records up to the durable bound, as lines. */
static void log_read(rstream *rs)
{
    while (rs->out.len < REPL_CHUNK_BYTES) {
        wal_record rec;
        int n = wal_follower_next(rs->f, rs->job_durable, &rec);
        if (n == 0)
            return;
        if (n < 0) {
            rs->rc = n;
            snprintf(rs->err, sizeof(rs->err), "%s", wal_follower_error(rs->f));
            return;
        }
        int rc = repl_event_encode(&rs->out, rs->src, &rec);
        if (rc != 0) {
            rs->rc = rc;
            rs->fail_lsn = rec.lsn; /* not sent: a consumer goes on from here */
            snprintf(rs->err, sizeof(rs->err), "LSN %" PRIu64 " (WAL type %u): %s", rec.lsn,
                     rec.type, repl_strerror(rc));
            return;
        }
        rs->events++;
    }
}

/* Threadpool: the next piece of the snapshot file. */
static void file_read(rstream *rs)
{
    size_t want = rs->file_len - rs->file_off < REPL_FILE_CHUNK
                      ? (size_t)(rs->file_len - rs->file_off)
                      : REPL_FILE_CHUNK;
    if (rs->out.cap < want) {
        char *p = realloc(rs->out.p, want);
        if (p == NULL) {
            rs->rc = -ENOMEM;
            return;
        }
        rs->out.p = p;
        rs->out.cap = want;
    }
    size_t got = 0;
    while (got < want) {
        ssize_t n = pread(rs->fd, rs->out.p + got, want - got, (off_t)(rs->file_off + got));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            rs->rc = n < 0 ? -errno : -EIO;
            snprintf(rs->err, sizeof(rs->err), "reading the snapshot file: %s",
                     n < 0 ? strerror(errno) : "short file");
            return;
        }
        got += (size_t)n;
    }
    rs->out.len = got;
    rs->file_off += got;
}

static void pump(rstream *rs);

/* Writes `b`'s lines; returns net__stream_write's answer. */
static int send_buf(rstream *rs, repl_buf *b)
{
    if (b->len == 0)
        return 0;
    int w = net__stream_write(&rs->st, b->p, b->len);
    repl_buf_clear(b);
    rs->last_line_ms = uv_now(&rs->st.shard->loop);
    if (w == 1 && !rs->draining) {
        rs->draining = true;
        rs->drain_since_ms = rs->last_line_ms;
    }
    return w;
}

static int send_out(rstream *rs)
{
    return send_buf(rs, &rs->out);
}

/* The stream cannot go on: an error line, then the end of the body. */
static void fail_stream(rstream *rs, const char *title, const char *detail)
{
    uint64_t next = rs->fail_lsn != 0 ? rs->fail_lsn
                    : rs->f != NULL   ? wal_follower_next_lsn(rs->f)
                                      : 0;
    net__log("warn", "replication stream ended",
             "shard=%" PRIu32 " next_lsn=%" PRIu64 " error=\"%s\" detail=\"%s\"", rs->src, next,
             title, detail);
    repl_buf_clear(&rs->out);
    if (repl_error_encode(&rs->out, rs->src, net__now_ms(rs->st.shard), title, detail, next) == 0)
        send_out(rs);
    rs->ended = true;
    net__stream_end(&rs->st);
}

static void after_job(uv_work_t *w, int status)
{
    rstream *rs = w->data;
    rs->working = false;
    rs->st.shard->local_busy--;
    if (rs->closed) {
        if (!rs->timer_init)
            rs_free(rs);
        return;
    }
    if (status != 0 && rs->rc == 0)
        rs->rc = status;
    if (rs->f != NULL)
        rs->next_lsn = wal_follower_next_lsn(rs->f);
    net_metrics *m = &src_shard(rs)->m;
    atomic_fetch_add(&m->repl_events, rs->events);
    atomic_fetch_add(&m->repl_bytes, rs->out.len);
    int wrote = send_out(rs);
    if (rs->rc != 0) {
        bool gone = rs->rc == WAL_ENOTFOUND || rs->rc == WAL_EGAP;
        fail_stream(rs, gone ? "lsn-gone" : "wal-unreadable",
                    rs->err[0] != '\0' ? rs->err : repl_strerror(rs->rc));
        return;
    }
    if (rs->kind == RS_SNAPSHOT && rs->file_off == rs->file_len) {
        rs->ended = true;
        net__stream_end(&rs->st);
        return;
    }
    if (wrote == 0)
        pump(rs);
}

/* Starts the next read if there is something to read and room to send it. */
static void pump(rstream *rs)
{
    if (rs->working || rs->closed || rs->ended || rs->draining || rs->st.conn == NULL)
        return;
    if (rs->kind == RS_SNAPSHOT) {
        job_start(rs, file_read);
        return;
    }
    uint64_t durable = atomic_load(&src_shard(rs)->durable_lsn);
    if (durable >= wal_follower_next_lsn(rs->f)) {
        rs->job_durable = durable;
        job_start(rs, log_read);
    }
}

static void st_drained(net_stream *st)
{
    rstream *rs = (rstream *)st;
    rs->draining = false;
    pump(rs);
}

/* Idle streams: new durable records, or a heartbeat (also while a read job
 * waits in the shared threadpool: a busy pool must not look like a dead stream). */
static void on_poll(uv_timer_t *t)
{
    rstream *rs = t->data;
    if (rs->closed || rs->ended || rs->st.conn == NULL)
        return;
    uint64_t now = uv_now(&rs->st.shard->loop);
    if (rs->draining) {
        /* Connected but taking nothing: it holds a stream slot, so it goes. */
        if (now - rs->drain_since_ms >= REPL_STALL_MS) {
            net__log("warn", "replication stream dropped: the reader took nothing for 60 s",
                     "shard=%" PRIu32, rs->src);
            net__stream_abort(&rs->st);
        }
        return;
    }
    uint64_t durable = atomic_load(&src_shard(rs)->durable_lsn);
    if (!rs->working && durable >= rs->next_lsn) {
        pump(rs);
        return;
    }
    if (now - rs->last_line_ms < REPL_HEARTBEAT_MS)
        return;
    if (repl_heartbeat_encode(&rs->beat, rs->src, net__now_ms(rs->st.shard), durable,
                              rs->next_lsn) == 0)
        send_buf(rs, &rs->beat);
}

static const net_stream_ops log_ops = {.drained = st_drained, .closed = st_closed};

/* ---- Opening a stream: a job before the head ------------------------------------------ */

static rstream *rs_new(net_request *r, rs_kind kind, uint32_t src)
{
    rstream *rs = calloc(1, sizeof(*rs));
    NET_ASSERT(rs != NULL);
    rs->kind = kind;
    rs->srv = r->shard->server;
    rs->src = src;
    rs->fd = -1;
    rs->req = r;
    rs->st.ops = &log_ops;
    rs->st.shard = r->shard;
    return rs;
}

static void open_after(uv_work_t *w, int status);

/* Runs `job` for a request not answered yet: the request is busy meanwhile. */
static void open_start(rstream *rs, void (*job)(rstream *rs))
{
    net_request *r = rs->req;
    r->busy = true;
    r->shard->local_busy++;
    rs->job = job;
    rs->working = true;
    rs->work.data = rs;
    int rc = uv_queue_work(&r->shard->loop, &rs->work, job_work, open_after);
    NET_ASSERT(rc == 0);
}

/* Threadpool: positions the follower at from_lsn (kept in job_durable). */
static void log_open(rstream *rs)
{
    char dir[sizeof(rs->srv->shards[0].dir) + 8];
    wal_dir_of(rs->srv, rs->src, dir, sizeof(dir));
    rs->rc = wal_follower_open(dir, rs->from_lsn, &rs->f);
    if (rs->rc == WAL_ENOTFOUND) {
        if (wal_oldest_lsn(dir, &rs->oldest_lsn) != 0)
            rs->oldest_lsn = 0;
    } else if (rs->rc != 0) {
        snprintf(rs->err, sizeof(rs->err), "%s", wal_strerror(rs->rc));
    }
}

static void answer_gone(net_request *r, rstream *rs, uint64_t from)
{
    json_t *ext = json_object();
    json_object_set_new(ext, "shard", json_integer(rs->src));
    json_object_set_new(ext, "oldest_lsn", json_integer((json_int_t)rs->oldest_lsn));
    uint64_t snap = atomic_load(&src_shard(rs)->snapshot_lsn);
    json_object_set_new(ext, "snapshot_lsn", json_integer((json_int_t)snap));
    char d[256];
    snprintf(d, sizeof(d),
             "LSN %" PRIu64 " is no longer in shard %" PRIu32
             "'s WAL; read GET /api/replication/snapshot?shard=%" PRIu32
             " and stream from its lsn + 1",
             from, rs->src, rs->src);
    net__problem(r, 410, "lsn-gone", "LSN no longer retained", d, "from_lsn", ext, NULL);
}

static void open_after(uv_work_t *w, int status)
{
    rstream *rs = w->data;
    net_request *r = rs->req;
    rs->working = false;
    rs->req = NULL;
    r->busy = false;
    r->shard->local_busy--;
    if (r->orphan) {
        rs_release(rs);
        net__request_free(r);
        return;
    }
    if (status != 0 && rs->rc == 0)
        rs->rc = status;
    if (r->shard->stopping) {
        net__problem(r, 503, "overloaded", "Service unavailable", "the server is stopping", NULL,
                     NULL, "Retry-After: 1\r\n");
        rs_release(rs);
    } else if (rs->rc == WAL_ENOTFOUND && rs->kind == RS_LOG) {
        answer_gone(r, rs, rs->from_lsn);
        rs_release(rs);
    } else if (rs->rc != 0) {
        char d[600];
        snprintf(d, sizeof(d), "shard %" PRIu32 ": %s", rs->src,
                 rs->err[0] != '\0' ? rs->err : repl_strerror(rs->rc));
        net__log("error", "replication open failed", "detail=\"%s\"", d);
        net__problem(r, 500, "internal", "Internal error", d, NULL, NULL, NULL);
        rs_release(rs);
    } else {
        uv_timer_init(&r->shard->loop, &rs->timer);
        rs->timer.data = rs;
        rs->timer_init = true;
        if (rs->kind == RS_LOG) {
            rs->next_lsn = wal_follower_next_lsn(rs->f);
            uv_timer_start(&rs->timer, on_poll, REPL_POLL_MS, REPL_POLL_MS);
        }
        rs->last_line_ms = uv_now(&r->shard->loop);
        rs->draining = true; /* until the head has left (st_drained) */
        rs->drain_since_ms = rs->last_line_ms;
        net__respond_stream(r, "application/x-ndjson", &rs->st);
    }
    net__request_finish(r);
}

/* shard=N (required) */
static bool query_shard(net_request *r, uint32_t *out)
{
    uint64_t v = 0;
    int q = net__query_u64(r, "shard", 0, r->shard->server->nshards - 1, &v);
    if (q < 0)
        return false;
    if (q == 0) {
        net__problem(r, 400, "invalid-field", "Invalid request field", "is required", "shard", NULL,
                     NULL);
        return false;
    }
    *out = (uint32_t)v;
    return true;
}

void net__route_replication(net_request *r)
{
    net_server *s = r->shard->server;
    uint32_t src;
    uint64_t from = 1;
    if (!query_shard(r, &src) || net__query_u64(r, "from_lsn", 1, INT64_MAX, &from) < 0)
        return;
    net_shard *sh = &s->shards[src];
    uint64_t durable = atomic_load(&sh->durable_lsn);
    if (from > durable + 1) {
        json_t *ext = json_object();
        json_object_set_new(ext, "durable_lsn", json_integer((json_int_t)durable));
        net__problem(r, 416, "lsn-ahead", "LSN ahead of the log",
                     "from_lsn is past the shard's durable LSN + 1: these events were never made "
                     "durable here (another data directory?)",
                     "from_lsn", ext, NULL);
        return;
    }
    if (r->method == HTTP_HEAD) {
        net__respond(r, 200, "application/x-ndjson", NULL, "", 0);
        return;
    }
    if (atomic_fetch_add(&s->repl_streams, 1) >= s->cfg.replication_streams_max) {
        atomic_fetch_sub(&s->repl_streams, 1);
        net__problem(r, 503, "too-many-streams", "Too many replication streams",
                     "the server is at its replication stream limit (--replication-streams)", NULL,
                     NULL, "Retry-After: 1\r\n");
        return;
    }
    atomic_fetch_add(&sh->m.repl_streams, 1);
    rstream *rs = rs_new(r, RS_LOG, src);
    rs->from_lsn = from;
    open_start(rs, log_open);
}

/* ---- Snapshots ------------------------------------------------------------------------ */

typedef struct snap_ctx {
    rstream *rs;
    repl_buf *b;
    uint64_t lsn;
    int64_t written_ms;
    bool begun;
    catalog_kind kind; /* of the entities snap_entity is given */
} snap_ctx;

/* Writes the buffered lines to the file once there are enough (or `force`). */
static int snap_flush(rstream *rs, bool force)
{
    repl_buf *b = &rs->out;
    if (b->len == 0 || (!force && b->len < REPL_FILE_FLUSH))
        return 0;
    size_t done = 0;
    while (done < b->len) {
        ssize_t n = write(rs->fd, b->p + done, b->len - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        done += (size_t)n;
    }
    rs->file_len += b->len;
    repl_buf_clear(b);
    return 0;
}

static int snap_begin(snap_ctx *c)
{
    if (c->begun)
        return 0;
    c->begun = true;
    return repl_snapshot_begin_encode(c->b, c->rs->src, c->lsn, c->written_ms);
}

static int snap_item(void *arg, engine_item_kind kind, uint64_t key, const uint8_t *value,
                     uint32_t len)
{
    snap_ctx *c = arg;
    int rc = snap_begin(c);
    if (rc == 0)
        rc = repl_snapshot_item_encode(c->b, c->rs->src, kind, key, value, len);
    if (rc == 0)
        c->rs->snap_rows++;
    return rc != 0 ? rc : snap_flush(c->rs, false);
}

static int snap_entity(void *arg, uint64_t id, const char *json, size_t len)
{
    snap_ctx *c = arg;
    int rc = repl_snapshot_catalog_encode(c->b, c->rs->src, c->kind, id, json, len);
    if (rc == 0)
        c->rs->snap_rows++;
    return rc != 0 ? rc : snap_flush(c->rs, false);
}

typedef struct snap_rows_ctx {
    snap_ctx *c;
    catalog_read *rd;
} snap_rows_ctx;

static int snap_showtime_row(void *arg, const catalog_showtime_row *row)
{
    snap_rows_ctx *x = arg;
    const char *json;
    size_t len;
    int rc = catalog_get(x->rd, CATALOG_SHOWTIME, row->id, &json, &len);
    if (rc == CATALOG_ENOTFOUND)
        return 0;
    if (rc != 0)
        return rc;
    x->c->kind = CATALOG_SHOWTIME;
    return snap_entity(x->c, row->id, json, len);
}

/* Threadpool: the whole snapshot into an unlinked temporary file. */
static void snap_build(rstream *rs)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/.repl-snapshot-XXXXXX", rs->srv->cfg.data_dir);
    rs->fd = mkstemp(path);
    if (rs->fd < 0) {
        rs->rc = -errno;
        snprintf(rs->err, sizeof(rs->err), "creating a temporary file in %.300s: %s",
                 rs->srv->cfg.data_dir, strerror(errno));
        return;
    }
    unlink(path); /* gone with the descriptor, whatever happens */
    snap_ctx c = {.rs = rs, .b = &rs->out};
    int rc = snapshot_store_each(src_shard(rs)->store, &c.lsn, &c.written_ms, snap_item, &c);
    if (rc == 0)
        rc = snap_begin(&c);
    rs->snap_lsn = c.lsn;
    catalog_read *rd = NULL;
    if (rc == 0)
        rc = catalog_read_begin(rs->srv->cat, &rd);
    if (rc == 0 && rs->src == 0) {
        static const catalog_kind kinds[] = {CATALOG_THEATER, CATALOG_SCREEN, CATALOG_MOVIE,
                                             CATALOG_USER};
        for (size_t i = 0; rc == 0 && i < sizeof(kinds) / sizeof(kinds[0]); i++) {
            c.kind = kinds[i];
            rc = catalog_each(rd, kinds[i], snap_entity, &c);
        }
    }
    if (rc == 0) {
        snap_rows_ctx x = {.c = &c, .rd = rd};
        rc = catalog_showtime_rows(rd, rs->src, snap_showtime_row, &x);
    }
    if (rd != NULL)
        catalog_read_end(rd);
    if (rc == 0)
        rc = repl_snapshot_end_encode(&rs->out, rs->src, c.lsn, rs->snap_rows);
    if (rc == 0)
        rc = snap_flush(rs, true);
    if (rc != 0) {
        rs->rc = rc;
        snprintf(rs->err, sizeof(rs->err), "building the snapshot: %s",
                 rc <= -40000 && rc > -41000   ? catalog_strerror(rc)
                 : rc <= -33000 && rc > -34000 ? repl_strerror(rc)
                                               : snapshot_strerror(rc));
    }
    repl_buf_clear(&rs->out);
}

void net__route_replication_snapshot(net_request *r)
{
    net_server *s = r->shard->server;
    uint32_t src;
    if (!query_shard(r, &src))
        return;
    if (r->method == HTTP_HEAD) {
        net__respond(r, 200, "application/x-ndjson", NULL, "", 0);
        return;
    }
    if (atomic_fetch_add(&s->repl_snapshots, 1) >= REPL_SNAPSHOTS_MAX) {
        atomic_fetch_sub(&s->repl_snapshots, 1);
        net__problem(r, 503, "too-many-streams", "Too many snapshot exports",
                     "2 snapshot exports are already being served", NULL, NULL,
                     "Retry-After: 1\r\n");
        return;
    }
    rstream *rs = rs_new(r, RS_SNAPSHOT, src);
    open_start(rs, snap_build);
}

/* ---- Status ------------------------------------------------------------------------------ */

typedef struct status_job {
    net_request *r;
    uv_work_t work;
    uint64_t oldest[NET_SHARDS_MAX];
    int rc[NET_SHARDS_MAX];
} status_job;

static void status_work(uv_work_t *w)
{
    status_job *j = w->data;
    net_server *s = j->r->shard->server;
    for (uint32_t i = 0; i < s->nshards; i++) {
        char dir[sizeof(s->shards[0].dir) + 8];
        wal_dir_of(s, i, dir, sizeof(dir));
        j->rc[i] = wal_oldest_lsn(dir, &j->oldest[i]);
    }
}

static void status_after(uv_work_t *w, int status)
{
    status_job *j = w->data;
    net_request *r = j->r;
    net_server *s = r->shard->server;
    r->busy = false;
    r->shard->local_busy--;
    if (r->orphan) {
        free(j);
        net__request_free(r);
        return;
    }
    json_t *shards = json_array();
    for (uint32_t i = 0; i < s->nshards; i++) {
        net_shard *sh = &s->shards[i];
        uint64_t durable = atomic_load(&sh->durable_lsn);
        /* An empty log (nothing written yet): the next record will be the oldest. */
        uint64_t oldest = status == 0 && j->rc[i] == 0 ? j->oldest[i] : durable + 1;
        json_t *o = json_object();
        json_object_set_new(o, "shard", json_integer(i));
        json_object_set_new(o, "last_lsn", json_integer((json_int_t)atomic_load(&sh->last_lsn)));
        json_object_set_new(o, "durable_lsn", json_integer((json_int_t)durable));
        json_object_set_new(o, "oldest_lsn", json_integer((json_int_t)oldest));
        json_object_set_new(o, "snapshot_lsn",
                            json_integer((json_int_t)atomic_load(&sh->snapshot_lsn)));
        json_array_append_new(shards, o);
    }
    free(j);
    json_t *o = json_object();
    json_object_set_new(o, "version", json_integer(REPL_FORMAT_VERSION));
    json_object_set_new(o, "shards", shards);
    char *text = json_dumps(o, JSON_COMPACT);
    NET_ASSERT(text != NULL);
    net__respond(r, 200, "application/json", "Cache-Control: no-store\r\n", text, strlen(text));
    free(text);
    json_decref(o);
    net__request_finish(r);
}

void net__route_replication_status(net_request *r)
{
    status_job *j = calloc(1, sizeof(*j));
    NET_ASSERT(j != NULL);
    j->r = r;
    j->work.data = j;
    r->busy = true;
    r->shard->local_busy++;
    int rc = uv_queue_work(&r->shard->loop, &j->work, status_work, status_after);
    NET_ASSERT(rc == 0);
}
