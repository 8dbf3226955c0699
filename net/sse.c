/*
 * sse.c - Server-Sent Events: live seat maps and queue positions
 * (docs/api.md, "Live seat maps and queue positions").
 *
 *   GET /api/seats/:id/events               a showtime's seat changes
 *   GET /api/showtimes/:id/queue/events     the caller's place in its queue
 *
 * Both live on the shard that owns the showtime (the connection moves there,
 * http.c's handoff), so they read the engine directly and need no lock.
 *
 * Seat maps. A watched showtime has a feed. The engine tells the feed of
 * every seat transition as it happens (engine_seat_watch_set); the feed marks
 * the seat (a byte per seat: its newest state) and lists it once. At the end
 * of the loop turn (a check handle) the marked seats become one event, whose
 * id is the shard's last LSN: every record that made those changes is
 * journaled at or before it, and the event goes out only once the WAL made
 * that LSN durable, so a watcher never sees a change a crash could take
 * back. The event is encoded once and kept in the feed's ring; each watcher
 * has a cursor (the id of the last event it was sent) and is written the
 * durable events after it, all in one chunk, when it has no write pending.
 * A watcher that has a write pending gets nothing more until that write
 * left (its backlog is the ring's, shared); if the ring dropped events it
 * had not been sent, it gets a final event (`end`, reason `too-slow`) and the
 * stream ends: memory per watcher is one chunk in flight, never a queue.
 *
 * Resuming. The ring keeps the newest SSE_RING_EVENTS events (at most
 * SSE_RING_BYTES): a Last-Event-ID inside what the ring covers resumes with
 * the events after it; any other (older, from before a restart, unknown)
 * gets a fresh snapshot, which is a complete state: nothing is lost, and no
 * change is sent twice. A feed without watchers stays SSE_FEED_LINGER_MS
 * for the resumes of watchers that reconnect.
 *
 * Queues. A showtime's queue watchers are looked at every SSE_QUEUE_TICK_MS:
 * a state change is sent then, a position change at most every
 * SSE_QUEUE_POSITION_MS; a state read after the shard's last LSN waits until
 * that LSN is durable. The stream ends after a final state (admitted, with
 * its token; lapsed; not in the queue) or when the queue is removed.
 *
 * Bounds: SSE_FEEDS_MAX feeds per shard (beyond: 503), connections by the
 * server's connection limit; a write that has not left after SSE_STALL_MS
 * closes the stream; an idle stream gets a comment every SSE_HEARTBEAT_MS.
 */
#include "net_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
    SSE_RING_EVENTS = 1024,         /* change events kept per seat feed (a power of two) */
    SSE_RING_BYTES = 1024 * 1024,   /* ... and at most this many bytes of them */
    SSE_FEEDS_MAX = 4096,           /* feeds per shard; beyond: 503 */
    SSE_BUCKETS = 1024,             /* feed hash buckets per shard (a power of two) */
    SSE_FEED_LINGER_MS = 60 * 1000, /* a feed without watchers is kept this long */
    SSE_HEARTBEAT_MS = 15 * 1000,   /* a comment after this long without a write */
    SSE_STALL_MS = 30 * 1000,       /* a write pending this long closes the stream */
    SSE_QUEUE_TICK_MS = 250,        /* queue states are looked at this often */
    SSE_QUEUE_POSITION_MS = 1000,   /* a position change is sent at most this often */
    SSE_RETRY_MS = 2000,            /* the reconnect delay suggested to clients */
    SSE_FAN_BUDGET = 256            /* watchers written to per loop turn (feed_push_all) */
};

typedef enum { FEED_SEATS = 0, FEED_QUEUE = 1 } feed_kind;

typedef struct sse_event {
    uint64_t id;
    uint32_t len;
    char text[]; /* "id: N\nevent: seats\ndata: {...}\n\n" */
} sse_event;

typedef struct sse_feed sse_feed;
typedef struct sse_watcher sse_watcher;

struct sse_watcher {
    net_stream st; /* first: the stream pointer is the watcher pointer */
    sse_feed *feed;
    sse_watcher *prev, *next; /* the feed's watchers */
    uint64_t cursor;          /* seats: the id of the last event it has (or will have) */
    char *held;               /* a text waiting until held_lsn is durable (snapshot, state) */
    size_t held_len;
    uint64_t held_lsn;
    bool end_after_held; /* the held text is the stream's last */
    bool writing;        /* a write has not left the socket yet */
    bool ending;         /* its last bytes are written */
    bool started;        /* its first bytes are written */
    int64_t writing_since_ms, last_write_ms;
    /* Queue streams */
    uint64_t user_id;
    int state;
    uint32_t position;
    int64_t position_sent_ms;
};

struct sse_feed {
    feed_kind kind;
    uint64_t showtime_id;
    sse_feed *hnext; /* hash chain */
    sse_feed *dnext; /* the dirty list (seat changes not yet an event) */
    sse_feed *wnext; /* the waiting list (something waits for durability) */
    bool dirty, waiting;
    sse_feed *fan_link;    /* the fanning list (a pass over its watchers is under way) */
    sse_watcher *fan_next; /* ... the pass's next watcher */
    bool fan_active, fan_again;
    bool retired; /* out of the hash (feed_retire): freed with its last watcher */
    const char *end_reason, *end_detail; /* ... and what its watchers are told */
    uint64_t wait_lsn;                   /* ... the highest LSN it waits for */
    sse_watcher *watchers;
    uint32_t nwatchers;
    int64_t idle_since_ms;
    /* Seat feeds */
    uint32_t nseats;
    uint8_t *mark;  /* per seat: 0, or the newest state + 1 of a changed seat */
    uint32_t *pend; /* the changed seats, each once */
    uint32_t npend;
    sse_event *ring[SSE_RING_EVENTS];
    uint32_t rhead, rcount; /* the oldest at ring[rhead] */
    size_t rbytes;
    uint64_t complete_from; /* every change after this id is in the ring */
    uint64_t last_id;       /* the newest event's id */
};

struct net_sse {
    sse_feed *buckets[SSE_BUCKETS];
    uint32_t nfeeds;
    sse_feed *dirty;
    sse_feed *waiting;
    sse_feed *fanning;
    uv_check_t check;
    bool check_active;
    uv_idle_t idle;
    bool idle_active;
    int64_t queue_tick_ms, slow_tick_ms;
};

static int64_t sse_now(net_shard *sh)
{
    return (int64_t)uv_now(&sh->loop);
}

static size_t bucket_of(uint64_t id, feed_kind kind)
{
    uint64_t k = id * 2 + (uint64_t)kind;
    return (size_t)((k * 0x9E3779B97F4A7C15ull) >> 54) & (SSE_BUCKETS - 1);
}

static sse_feed *feed_find(net_sse *x, uint64_t id, feed_kind kind)
{
    for (sse_feed *f = x->buckets[bucket_of(id, kind)]; f != NULL; f = f->hnext)
        if (f->showtime_id == id && f->kind == kind)
            return f;
    return NULL;
}

/* ---- Text ------------------------------------------------------------------------------ */

/* An SSE event: optional id, the event name, one data line (JSON has no raw
 * newline). */
static void sb_event(net_jtext *b, uint64_t id, const char *name, const char *data, size_t len)
{
    char head[96];
    int n = id != 0 ? snprintf(head, sizeof(head), "id: %" PRIu64 "\nevent: %s\ndata: ", id, name)
                    : snprintf(head, sizeof(head), "event: %s\ndata: ", name);
    NET_ASSERT(n > 0 && (size_t)n < sizeof(head));
    net__jt_put(b, head, (size_t)n);
    net__jt_put(b, data, len);
    net__jt_put(b, "\n\n", 2);
}

/* An event whose data is `o` (reference taken), as compact JSON. */
static void sb_event_json(net_jtext *b, uint64_t id, const char *name, json_t *o)
{
    char *data = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    NET_ASSERT(data != NULL);
    sb_event(b, id, name, data, strlen(data));
    free(data);
}

/* The final event: `end` with its reason and a sentence. */
static void sb_end(net_jtext *b, const char *reason, const char *detail)
{
    sb_event_json(b, 0, "end", json_pack("{s:s,s:s}", "reason", reason, "detail", detail));
}

/* ---- Writing to a watcher ----------------------------------------------------------------- */

static void feed_wait(net_sse *x, sse_feed *f, uint64_t lsn)
{
    if (lsn > f->wait_lsn)
        f->wait_lsn = lsn;
    if (!f->waiting) {
        f->waiting = true;
        f->wnext = x->waiting;
        x->waiting = f;
    }
}

/* Writes `b` (and ends the stream after it when `last`). */
static void watcher_write(net_shard *sh, sse_watcher *w, net_jtext *b, bool last)
{
    if (b->n > 0 && !w->started) {
        /* The stream's first bytes: the reconnect delay clients should use. */
        char retry[32];
        int n = snprintf(retry, sizeof(retry), "retry: %d\n\n", SSE_RETRY_MS);
        int rc = net__stream_write(&w->st, retry, (size_t)n);
        if (rc == 1 && !w->writing) {
            w->writing = true;
            w->writing_since_ms = sse_now(sh);
        }
        w->started = true;
    }
    if (b->n > 0) {
        int rc = net__stream_write(&w->st, b->buf, b->n);
        atomic_fetch_add_explicit(&sh->m.sse_bytes, b->n, memory_order_relaxed);
        int64_t now = sse_now(sh);
        w->last_write_ms = now;
        if (rc == 1 && !w->writing) {
            w->writing = true;
            w->writing_since_ms = now;
        }
    }
    if (last) {
        w->ending = true;
        net__stream_end(&w->st);
    }
}

/* A final event, then the end of the stream. */
static void watcher_end(net_shard *sh, sse_watcher *w, const char *reason, const char *detail)
{
    if (w->ending || w->st.conn == NULL)
        return;
    net_jtext b;
    net__jt_init(&b);
    sb_end(&b, reason, detail);
    watcher_write(sh, w, &b, true);
    net__jt_free(&b);
}

/* The ring's index of the first event with an id above `cursor`. */
static uint32_t ring_after(const sse_feed *f, uint64_t cursor)
{
    uint32_t lo = 0, hi = f->rcount;
    while (lo < hi) {
        uint32_t mid = (lo + hi) / 2;
        if (f->ring[(f->rhead + mid) & (SSE_RING_EVENTS - 1)]->id <= cursor)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Sends a watcher what is durable and not yet sent, unless a write of it
 * is still pending (drained() comes then). */
static void watcher_push(net_shard *sh, sse_watcher *w)
{
    if (w->writing || w->ending || w->st.conn == NULL)
        return;
    sse_feed *f = w->feed;
    if (f->retired) { /* its head left after the feed was retired */
        watcher_end(sh, w, f->end_reason, f->end_detail);
        return;
    }
    uint64_t durable = atomic_load(&sh->durable_lsn);
    net_jtext b;
    net__jt_init(&b);
    bool last = false;
    if (w->held != NULL) {
        if (w->held_lsn > durable) {
            feed_wait(sh->sse, f, w->held_lsn);
            return;
        }
        net__jt_put(&b, w->held, w->held_len);
        free(w->held);
        w->held = NULL;
        last = w->end_after_held;
    }
    if (f->kind == FEED_SEATS && !last) {
        if (w->cursor < f->complete_from) {
            net__jt_free(&b);
            atomic_fetch_add(&sh->m.sse_dropped_slow, 1);
            watcher_end(sh, w, "too-slow",
                        "this stream fell further behind than the server keeps changes for; "
                        "reconnect (with Last-Event-ID) for a fresh snapshot");
            return;
        }
        for (uint32_t i = ring_after(f, w->cursor); i < f->rcount; i++) {
            const sse_event *ev = f->ring[(f->rhead + i) & (SSE_RING_EVENTS - 1)];
            if (ev->id > durable) {
                feed_wait(sh->sse, f, ev->id);
                break;
            }
            net__jt_put(&b, ev->text, ev->len);
            w->cursor = ev->id;
        }
    }
    watcher_write(sh, w, &b, last);
    net__jt_free(&b);
}

/* Fan-out. Writing to thousands of sockets takes a while (some 8 us each
 * on loopback), and the shard's other requests wait meanwhile: a pass over
 * a feed's watchers writes to at most SSE_FAN_BUDGET of them per loop turn
 * and goes on in the next (an idle handle keeps the loop turning). Changes
 * during a pass ask for another pass once it ends, so every watcher is
 * pushed at least once per pass. */
static void fan_run(net_shard *sh, sse_feed *f, uint32_t *budget)
{
    while (*budget > 0) {
        if (f->fan_next == NULL) {
            if (!f->fan_again) {
                f->fan_active = false;
                return;
            }
            f->fan_again = false;
            f->fan_next = f->watchers;
            if (f->fan_next == NULL)
                continue;
        }
        sse_watcher *w = f->fan_next;
        f->fan_next = w->next;
        watcher_push(sh, w);
        (*budget)--;
    }
}

static void on_idle(uv_idle_t *h);

static void feed_push_all(net_shard *sh, sse_feed *f)
{
    net_sse *x = sh->sse;
    if (f->fan_active) {
        f->fan_again = true;
        return;
    }
    f->fan_active = true;
    f->fan_again = false;
    f->fan_next = f->watchers;
    uint32_t budget = SSE_FAN_BUDGET;
    fan_run(sh, f, &budget);
    if (!f->fan_active)
        return;
    f->fan_link = x->fanning;
    x->fanning = f;
    if (!x->idle_active) {
        uv_idle_start(&x->idle, on_idle);
        x->idle_active = true;
    }
}

static void on_idle(uv_idle_t *h)
{
    net_shard *sh = h->data;
    net_sse *x = sh->sse;
    uint32_t budget = SSE_FAN_BUDGET;
    sse_feed **p = &x->fanning;
    while (*p != NULL && budget > 0) {
        sse_feed *f = *p;
        fan_run(sh, f, &budget);
        if (f->fan_active)
            p = &f->fan_link;
        else
            *p = f->fan_link;
    }
    if (x->fanning == NULL) {
        uv_idle_stop(h);
        x->idle_active = false;
    }
}

/* ---- Feeds ------------------------------------------------------------------------------ */

static void feed_ring_drop_oldest(sse_feed *f)
{
    sse_event *old = f->ring[f->rhead];
    f->complete_from = old->id;
    f->rbytes -= old->len;
    free(old);
    f->ring[f->rhead] = NULL;
    f->rhead = (f->rhead + 1) & (SSE_RING_EVENTS - 1);
    f->rcount--;
}

static void on_seats(void *arg, uint64_t showtime_id, const uint32_t *seats, uint32_t n,
                     engine_seat_state to);
static void on_check(uv_check_t *h);

/* The marked seats become one event (on the loop's turn end, and before a
 * snapshot is taken so that it covers them). */
static void feed_stamp(net_shard *sh, sse_feed *f)
{
    if (f->npend == 0)
        return;
    uint64_t id = atomic_load(&sh->last_lsn);
    if (id <= f->last_id) {
        /* Changes whose records never reached the WAL (it failed and the
         * shard stopped writing): they will never be durable. */
        NET_ASSERT(atomic_load(&sh->wal_error) != 0);
        for (uint32_t i = 0; i < f->npend; i++)
            f->mark[f->pend[i]] = 0;
        f->npend = 0;
        return;
    }
    uint64_t layout = 0;
    NET_ASSERT(engine_showtime_get(sh->e, f->showtime_id, &layout, NULL, NULL));
    static const char *const names[] = {"free", "held", "sold"};
    json_t *seats = json_array();
    for (uint32_t i = 0; i < f->npend; i++) {
        uint32_t s = f->pend[i];
        int state = f->mark[s] - 1;
        f->mark[s] = 0;
        NET_ASSERT(state >= ENGINE_SEAT_FREE && state <= ENGINE_SEAT_SOLD);
        /* The engine's truth now: the newest mark is the seat's state. */
        NET_ASSERT(engine_seat_state_get(sh->e, f->showtime_id, s) == state);
        const engine_seat_spec *spec = engine_layout_seat(sh->e, layout, s);
        json_array_append_new(seats,
                              json_pack("{s:s,s:s}", "label", spec->label, "state", names[state]));
    }
    f->npend = 0;
    net_jtext b;
    net__jt_init(&b);
    sb_event_json(
        &b, id, "seats",
        json_pack("{s:I,s:o}", "showtime_id", (json_int_t)f->showtime_id, "seats", seats));
    sse_event *ev = malloc(sizeof(*ev) + b.n);
    NET_ASSERT(ev != NULL);
    ev->id = id;
    ev->len = (uint32_t)b.n;
    memcpy(ev->text, b.buf, b.n);
    net__jt_free(&b);
    while (f->rcount > 0 && (f->rcount == SSE_RING_EVENTS || f->rbytes + ev->len > SSE_RING_BYTES))
        feed_ring_drop_oldest(f);
    f->ring[(f->rhead + f->rcount) & (SSE_RING_EVENTS - 1)] = ev;
    f->rcount++;
    f->rbytes += ev->len;
    f->last_id = id;
    atomic_fetch_add_explicit(&sh->m.sse_events, 1, memory_order_relaxed);
    if (id <= atomic_load(&sh->durable_lsn))
        feed_push_all(sh, f);
    else
        feed_wait(sh->sse, f, id);
}

static void stamp_dirty(net_shard *sh)
{
    net_sse *x = sh->sse;
    while (x->dirty != NULL) {
        sse_feed *f = x->dirty;
        x->dirty = f->dnext;
        f->dirty = false;
        feed_stamp(sh, f);
    }
}

static void on_check(uv_check_t *h)
{
    net_shard *sh = h->data;
    stamp_dirty(sh);
    uv_check_stop(h);
    sh->sse->check_active = false;
}

static void on_seats(void *arg, uint64_t showtime_id, const uint32_t *seats, uint32_t n,
                     engine_seat_state to)
{
    net_shard *sh = arg;
    net_sse *x = sh->sse;
    sse_feed *f = feed_find(x, showtime_id, FEED_SEATS);
    NET_ASSERT(f != NULL); /* watched showtimes have a feed */
    for (uint32_t i = 0; i < n; i++) {
        uint32_t s = seats[i];
        NET_ASSERT(s < f->nseats);
        if (f->mark[s] == 0)
            f->pend[f->npend++] = s;
        f->mark[s] = (uint8_t)(to + 1);
    }
    NET_ASSERT(f->npend <= f->nseats);
    if (!f->dirty) {
        f->dirty = true;
        f->dnext = x->dirty;
        x->dirty = f;
    }
    if (!x->check_active) {
        uv_check_start(&x->check, on_check);
        x->check_active = true;
    }
}

/* The feed of a showtime this shard owns, made if needed; NULL at the bound. */
static sse_feed *feed_get(net_shard *sh, uint64_t id, feed_kind kind, uint64_t layout)
{
    net_sse *x = sh->sse;
    sse_feed *f = feed_find(x, id, kind);
    if (f != NULL)
        return f;
    if (x->nfeeds >= SSE_FEEDS_MAX)
        return NULL;
    f = calloc(1, sizeof(*f));
    NET_ASSERT(f != NULL);
    f->kind = kind;
    f->showtime_id = id;
    if (kind == FEED_SEATS) {
        f->nseats = engine_layout_seat_count(sh->e, layout);
        f->mark = calloc(f->nseats ? f->nseats : 1, 1);
        f->pend = malloc(sizeof(uint32_t) * (f->nseats ? f->nseats : 1));
        NET_ASSERT(f->mark != NULL && f->pend != NULL);
        /* Changes from now on are all seen: they are journaled after this LSN. */
        f->complete_from = f->last_id = atomic_load(&sh->last_lsn);
        NET_ASSERT(engine_showtime_watch(sh->e, id, true));
    }
    f->idle_since_ms = sse_now(sh);
    size_t bkt = bucket_of(id, kind);
    f->hnext = x->buckets[bkt];
    x->buckets[bkt] = f;
    x->nfeeds++;
    atomic_store(&sh->m.sse_feeds, x->nfeeds);
    return f;
}

static void list_remove(sse_feed **head, sse_feed *f, size_t next_off)
{
    for (sse_feed **p = head; *p != NULL; p = (sse_feed **)((char *)*p + next_off)) {
        if (*p == f) {
            *p = *(sse_feed **)((char *)f + next_off);
            return;
        }
    }
}

/* Takes a feed out of every list and the hash, and stops the engine
 * telling its showtime's changes (pending ones are dropped). */
static void feed_unlink(net_shard *sh, sse_feed *f)
{
    net_sse *x = sh->sse;
    list_remove(&x->buckets[bucket_of(f->showtime_id, f->kind)], f, offsetof(sse_feed, hnext));
    if (f->dirty)
        list_remove(&x->dirty, f, offsetof(sse_feed, dnext));
    if (f->waiting)
        list_remove(&x->waiting, f, offsetof(sse_feed, wnext));
    if (f->fan_active)
        list_remove(&x->fanning, f, offsetof(sse_feed, fan_link));
    f->dirty = f->waiting = f->fan_active = false;
    for (uint32_t i = 0; i < f->npend; i++)
        f->mark[f->pend[i]] = 0;
    f->npend = 0;
    if (f->kind == FEED_SEATS)
        engine_showtime_watch(sh->e, f->showtime_id, false); /* false once deleted: fine */
    x->nfeeds--;
    atomic_store(&sh->m.sse_feeds, x->nfeeds);
}

static void feed_destroy(sse_feed *f)
{
    NET_ASSERT(f->watchers == NULL);
    while (f->rcount > 0)
        feed_ring_drop_oldest(f);
    free(f->mark);
    free(f->pend);
    free(f);
}

static void feed_free(net_shard *sh, sse_feed *f)
{
    feed_unlink(sh, f);
    feed_destroy(f);
}

static void feed_end_all(net_shard *sh, sse_feed *f, const char *reason, const char *detail);

/* The showtime of a seat feed left the engine: its watchers get a final
 * event; the feed leaves the hash at once (a new one may start for the
 * same id) and is freed when its last watcher has closed. */
static void feed_retire(net_shard *sh, sse_feed *f, const char *reason, const char *detail)
{
    feed_unlink(sh, f);
    f->retired = true;
    f->end_reason = reason;
    f->end_detail = detail;
    feed_end_all(sh, f, reason, detail);
    if (f->watchers == NULL)
        feed_destroy(f);
}

/* ---- Streams ----------------------------------------------------------------------------------
 */

static void st_drained(net_stream *st)
{
    sse_watcher *w = (sse_watcher *)st;
    w->writing = false;
    watcher_push(st->shard, w);
}

static void st_closed(net_stream *st)
{
    sse_watcher *w = (sse_watcher *)st;
    net_shard *sh = st->shard;
    sse_feed *f = w->feed;
    if (f->fan_next == w)
        f->fan_next = w->next;
    if (w->prev != NULL)
        w->prev->next = w->next;
    else
        f->watchers = w->next;
    if (w->next != NULL)
        w->next->prev = w->prev;
    if (--f->nwatchers == 0)
        f->idle_since_ms = sse_now(sh);
    if (f->retired && f->watchers == NULL)
        feed_destroy(f);
    atomic_fetch_sub(&sh->m.sse_streams, 1);
    free(w->held);
    free(w);
}

static const net_stream_ops sse_ops = {.drained = st_drained, .closed = st_closed};

static sse_watcher *watcher_new(net_shard *sh, sse_feed *f)
{
    sse_watcher *w = calloc(1, sizeof(*w));
    NET_ASSERT(w != NULL);
    w->st.ops = &sse_ops;
    w->feed = f;
    w->next = f->watchers;
    if (f->watchers != NULL)
        f->watchers->prev = w;
    f->watchers = w;
    f->nwatchers++;
    w->last_write_ms = sse_now(sh);
    atomic_fetch_add(&sh->m.sse_streams, 1);
    return w;
}

/* Holds `b`'s text (taken from it) until `lsn` is durable: a newer text
 * replaces one not sent yet (each is a complete state). */
static void watcher_hold(sse_watcher *w, net_jtext *b, uint64_t lsn, bool last)
{
    free(w->held);
    w->held = net__jt_take(b, &w->held_len);
    w->held_lsn = lsn;
    w->end_after_held = last;
}

/* The common start of both stream routes; true when it answered. */
static bool stream_refused(net_request *r)
{
    NET_ASSERT(catalog_showtime_shard(r->job.id, r->shard->server->nshards) == r->shard->id);
    if (r->method == HTTP_HEAD) {
        net__respond(r, 200, "text/event-stream", "Cache-Control: no-store\r\n", NULL, 0);
        return true;
    }
    if (r->shard->stopping) {
        net__problem(r, 503, "unavailable", "Service unavailable", "the server is stopping", NULL,
                     NULL, "Retry-After: 1\r\n");
        return true;
    }
    return false;
}

static void feeds_full(net_request *r)
{
    net__problem(r, 503, "unavailable", "Service unavailable",
                 "this shard watches as many showtimes as it may; retry shortly", NULL, NULL,
                 "Retry-After: 5\r\n");
}

/* Where a stream resumes: 1 (set), 0 (none), -1 (answered 400). */
static int resume_from(net_request *r, uint64_t *out)
{
    const char *h = r->last_event_id;
    if (h[0] == '\0')
        return net__query_u64(r, "last_event_id", 1, UINT64_MAX, out);
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(h, &end, 10);
    if (h[0] < '0' || h[0] > '9' || end == NULL || *end != '\0' || errno == ERANGE || v == 0) {
        net__problem(r, 400, "invalid-field", "Invalid field",
                     "Last-Event-ID must be an event id this stream sent (a positive integer)",
                     "Last-Event-ID", NULL, NULL);
        return -1;
    }
    *out = v;
    return 1;
}

void net__route_seat_events(net_request *r)
{
    net_shard *sh = r->shard;
    uint64_t id = r->job.id;
    if (stream_refused(r))
        return;
    uint64_t from = 0;
    int resume = resume_from(r, &from);
    if (resume < 0)
        return;
    uint64_t layout;
    if (!engine_showtime_get(sh->e, id, &layout, NULL, NULL)) {
        net__problem(r, 404, "not-found", "Not found", "no such showtime", NULL, NULL, NULL);
        return;
    }
    sse_feed *f = feed_get(sh, id, FEED_SEATS, layout);
    if (f == NULL) {
        feeds_full(r);
        return;
    }
    feed_stamp(sh, f); /* what changed so far is an event before the stream starts */
    sse_watcher *w = watcher_new(sh, f);
    if (resume > 0 && from >= f->complete_from && from <= f->last_id) {
        w->cursor = from; /* the ring has every change after it */
    } else {
        /* A complete state, sent once everything it shows is durable. */
        size_t len;
        char *map = net__seatmap_json(sh, id, &len);
        NET_ASSERT(map != NULL);
        w->cursor = f->last_id;
        net_jtext b;
        net__jt_init(&b);
        sb_event(&b, w->cursor, "snapshot", map, len);
        free(map);
        watcher_hold(w, &b, atomic_load(&sh->last_lsn), false);
    }
    net__respond_stream(r, "text/event-stream", &w->st);
}

/* ---- Queue positions ------------------------------------------------------------------------ */

/* Looks at a queue watcher's state; holds an event when it changed (and
 * ends the stream after a final one). */
static void queue_look(net_shard *sh, sse_watcher *w, int64_t now, bool first)
{
    if (w->ending || (w->held != NULL && w->end_after_held))
        return;
    uint64_t id = w->feed->showtime_id;
    net_jtext b;
    net__jt_init(&b);
    if (!engine_queue_get(sh->e, id, &(engine_queue_info){0})) {
        sb_end(&b, "no-queue", "the showtime's virtual queue was removed (or the showtime)");
        watcher_hold(w, &b, atomic_load(&sh->last_lsn), true);
        return;
    }
    engine_queue_user u = engine_queue_user_get(sh->e, id, w->user_id, now);
    bool changed = first || (int)u.state != w->state;
    if (!changed && u.state == ENGINE_QUEUE_WAITING && u.position != w->position &&
        now - w->position_sent_ms >= SSE_QUEUE_POSITION_MS)
        changed = true;
    if (!changed)
        return;
    w->state = (int)u.state;
    w->position = u.position;
    w->position_sent_ms = now;
    sb_event_json(&b, 0, "queue", net__queue_me_json(sh, id, w->user_id, now, &u));
    bool last = u.state == ENGINE_QUEUE_ADMITTED || u.state == ENGINE_QUEUE_LAPSED ||
                u.state == ENGINE_QUEUE_NONE;
    watcher_hold(w, &b, atomic_load(&sh->last_lsn), last);
}

void net__route_queue_events(net_request *r)
{
    net_shard *sh = r->shard;
    uint64_t id = r->job.id;
    if (stream_refused(r))
        return;
    int64_t now = net__now_ms(sh);
    if (!engine_showtime_get(sh->e, id, NULL, NULL, NULL)) {
        net__problem(r, 404, "not-found", "Not found", "no such showtime", NULL, NULL, NULL);
        return;
    }
    if (!engine_queue_get(sh->e, id, &(engine_queue_info){0})) {
        net__onsale_refusal(sh, r, ENGINE_NO_QUEUE);
        return;
    }
    net__onsale_steps(sh, now); /* an admission due now counts */
    if (engine_queue_user_get(sh->e, id, r->job.user_id, now).state == ENGINE_QUEUE_NONE) {
        net__onsale_refusal(sh, r, ENGINE_NOT_WAITING);
        return;
    }
    sse_feed *f = feed_get(sh, id, FEED_QUEUE, 0);
    if (f == NULL) {
        feeds_full(r);
        return;
    }
    sse_watcher *w = watcher_new(sh, f);
    w->user_id = r->job.user_id;
    queue_look(sh, w, now, true);
    net__respond_stream(r, "text/event-stream", &w->st);
}

/* ---- Shard hooks ------------------------------------------------------------------------------
 */

int net__sse_init(net_shard *sh)
{
    net_sse *x = calloc(1, sizeof(*x));
    if (x == NULL)
        return -ENOMEM;
    uv_check_init(&sh->loop, &x->check);
    x->check.data = sh;
    uv_idle_init(&sh->loop, &x->idle);
    x->idle.data = sh;
    sh->sse = x;
    engine_seat_watch_set(sh->e, on_seats, sh);
    return 0;
}

void net__sse_close(net_shard *sh)
{
    if (sh->sse != NULL) {
        uv_close((uv_handle_t *)&sh->sse->check, NULL);
        uv_close((uv_handle_t *)&sh->sse->idle, NULL);
    }
}

void net__sse_free(net_shard *sh)
{
    net_sse *x = sh->sse;
    if (x == NULL)
        return;
    for (size_t i = 0; i < SSE_BUCKETS; i++) {
        while (x->buckets[i] != NULL) {
            sse_feed *f = x->buckets[i];
            NET_ASSERT(f->watchers == NULL); /* their connections closed first */
            feed_free(sh, f);
        }
    }
    if (sh->e != NULL)
        engine_seat_watch_set(sh->e, NULL, NULL);
    free(x);
    sh->sse = NULL;
}

void net__sse_durable(net_shard *sh, uint64_t durable_lsn)
{
    net_sse *x = sh->sse;
    if (x == NULL)
        return;
    stamp_dirty(sh);
    sse_feed *f = x->waiting;
    x->waiting = NULL;
    while (f != NULL) {
        sse_feed *next = f->wnext;
        f->waiting = false;
        uint64_t want = f->wait_lsn;
        f->wait_lsn = 0;
        if (want > durable_lsn)
            feed_wait(x, f, want); /* not yet: stays (pushes below may add more) */
        feed_push_all(sh, f);
        f = next;
    }
}

static void feed_end_all(net_shard *sh, sse_feed *f, const char *reason, const char *detail)
{
    for (sse_watcher *w = f->watchers; w != NULL; w = w->next) {
        free(w->held);
        w->held = NULL;
        watcher_end(sh, w, reason, detail);
    }
}

void net__sse_tick(net_shard *sh, int64_t now_ms)
{
    net_sse *x = sh->sse;
    if (x == NULL || x->nfeeds == 0)
        return;
    int64_t now = sse_now(sh);
    bool queues = now - x->queue_tick_ms >= SSE_QUEUE_TICK_MS;
    bool slow = now - x->slow_tick_ms >= 1000;
    if (queues)
        x->queue_tick_ms = now;
    if (slow)
        x->slow_tick_ms = now;
    if (!queues && !slow)
        return;
    for (size_t i = 0; i < SSE_BUCKETS; i++) {
        for (sse_feed *f = x->buckets[i], *fnext; f != NULL; f = fnext) {
            fnext = f->hnext;
            if (f->watchers == NULL) {
                if (slow && now - f->idle_since_ms >= SSE_FEED_LINGER_MS)
                    feed_free(sh, f);
                continue;
            }
            bool gone = !engine_showtime_get(sh->e, f->showtime_id, NULL, NULL, NULL);
            if (gone && f->kind == FEED_SEATS) {
                feed_retire(sh, f, "showtime-deleted", "the showtime was deleted");
                continue;
            }
            for (sse_watcher *w = f->watchers, *next; w != NULL; w = next) {
                next = w->next;
                if (queues && f->kind == FEED_QUEUE) {
                    queue_look(sh, w, now_ms, false);
                    watcher_push(sh, w);
                }
                if (!slow || w->ending || w->st.conn == NULL)
                    continue;
                if (w->writing && now - w->writing_since_ms >= SSE_STALL_MS) {
                    atomic_fetch_add(&sh->m.sse_stalled, 1);
                    net__stream_abort(&w->st); /* a reader that takes nothing */
                } else if (!w->writing && now - w->last_write_ms >= SSE_HEARTBEAT_MS) {
                    net_jtext b;
                    net__jt_init(&b);
                    net__jt_lit(&b, ": keep-alive\n\n");
                    watcher_write(sh, w, &b, false);
                    net__jt_free(&b);
                }
            }
        }
    }
}

void net__sse_showtime_gone(net_shard *sh, uint64_t id, bool deleted)
{
    if (sh->sse == NULL)
        return;
    sse_feed *f = feed_find(sh->sse, id, FEED_SEATS);
    if (f == NULL)
        return;
    if (deleted)
        feed_retire(sh, f, "showtime-deleted", "the showtime was deleted");
    else
        feed_retire(sh, f, "showtime-changed",
                    "the showtime's screen or start changed: reconnect for a fresh snapshot");
}

void net__sse_stop(net_shard *sh)
{
    net_sse *x = sh->sse;
    if (x == NULL)
        return;
    for (size_t i = 0; i < SSE_BUCKETS; i++)
        for (sse_feed *f = x->buckets[i]; f != NULL; f = f->hnext)
            feed_end_all(sh, f, "shutdown", "the server is stopping; reconnect shortly");
}
