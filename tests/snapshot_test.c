/*
 * snapshot_test.c - the LMDB snapshot store, recovery, and the snapshot
 * scheduler (snapshot/snapshot.h), against docs/storage.md.
 *
 * Store tests drive a real engine and inspect the LMDB environment directly
 * (lmdb.h, and mdb_stat from lmdb-utils) to check the documented layout:
 * five named databases, 8-byte big-endian id keys, the five meta keys. They
 * also corrupt it and expect SNAPSHOT_ECORRUPT, never an abort. Recovery
 * tests journal every record through a real wal_writer and remember the
 * engine digest after every LSN, so any rewind can be checked exactly.
 * Scheduler tests run a real libuv loop with a real wal_writer.
 *
 * Every test works in its own mkdtemp directory, removed by the suite's
 * teardown (also after a failed assertion). LMDB forbids opening one
 * environment twice in a process, so a store is always closed before the
 * test opens the environment itself or runs recovery on it.
 */
#include "engine.h"
#include "snapshot.h"
#include "wal.h"

#include <criterion/criterion.h>
#include <criterion/hooks.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PATH_LEN    512
#define MAX_RECORDS 4096
#define USERS       8
#define OTHER_TYPE  150 /* a non-engine WAL record type */

/* 2026-03-14T09:00:00Z: record times are realistic wall-clock milliseconds. */
#define START_MS INT64_C(1773478800000)
#define HOUR_MS  INT64_C(3600000)

/* ---- Temporary directories ---------------------------------------------------------- */

static char g_root[64];

static void rm_rf(const char *path)
{
    struct stat st;
    if (lstat(path, &st) < 0)
        return;
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        if (d != NULL) {
            struct dirent *de;
            while ((de = readdir(d)) != NULL) {
                if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
                    continue;
                char child[PATH_LEN];
                snprintf(child, sizeof(child), "%s/%s", path, de->d_name);
                rm_rf(child);
            }
            closedir(d);
        }
        rmdir(path);
    } else {
        unlink(path);
    }
}

/* Each test runs in a child of the Criterion runner; its directory carries
 * the runner's pid, so the runner can also remove what a crashed test left. */
static void suite_init(void)
{
    snprintf(g_root, sizeof(g_root), "/tmp/usher-snapshot-%ld-XXXXXX", (long)getppid());
    cr_assert_not_null(mkdtemp(g_root), "mkdtemp: %s", strerror(errno));
}

static void suite_fini(void)
{
    if (g_root[0] != '\0')
        rm_rf(g_root);
    g_root[0] = '\0';
}

TestSuite(snapshot, .init = suite_init, .fini = suite_fini);

ReportHook(POST_ALL)(struct criterion_global_stats *stats)
{
    (void)stats;
    char prefix[64];
    int n = snprintf(prefix, sizeof(prefix), "usher-snapshot-%ld-", (long)getpid());
    DIR *d = opendir("/tmp");
    if (d == NULL)
        return;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (strncmp(de->d_name, prefix, (size_t)n) == 0) {
            char path[PATH_LEN];
            snprintf(path, sizeof(path), "/tmp/%s", de->d_name);
            rm_rf(path);
        }
    }
    closedir(d);
}

/* ROOT/name */
static void in_root(char out[PATH_LEN], const char *name)
{
    snprintf(out, PATH_LEN, "%s/%s", g_root, name);
}

static void sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int64_t mono_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static int64_t wall_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* ---- A shard: engine, optional WAL, optional scheduler --------------------------- */

static engine_config test_config(uint16_t prefix)
{
    engine_config cfg;
    engine_config_default(&cfg);
    cfg.holds_max = 512;
    cfg.bookings_max = 8192;
    cfg.showtimes_max = 16;
    cfg.layouts_max = 8;
    cfg.hold_ttl_ms = 60000;
    cfg.hold_max_lifetime_ms = 180000;
    cfg.id_prefix = prefix;
    return cfg;
}

typedef struct shard {
    engine_config cfg;
    engine *e;
    int64_t now;
    uint64_t last_lsn; /* journaled, or (without a WAL) counted */
    uint64_t digest[MAX_RECORDS + 1];
    int64_t time[MAX_RECORDS + 1];
    uint64_t by_type[16];

    bool has_wal;
    char dir[PATH_LEN]; /* the shard directory: wal/ and snapshot/ */
    uv_loop_t loop;
    wal_writer *w;
    uint64_t durable;
    int failed;
    bool closed;
    snapshot_scheduler *sc;
    snapshot_store *store;
    bool forward; /* pass durable LSNs on to the scheduler */
} shard;

static shard S;
static uint64_t rng_state;

static uint64_t rng(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void on_durable(wal_writer *w, uint64_t lsn, void *arg)
{
    (void)w;
    shard *s = arg;
    s->durable = lsn;
    if (s->sc != NULL && s->forward)
        snapshot_scheduler_durable(s->sc, lsn);
}

static void on_failed(wal_writer *w, int err, void *arg)
{
    (void)w;
    shard *s = arg;
    s->failed = err;
}

static void on_closed(wal_writer *w, void *arg)
{
    (void)w;
    shard *s = arg;
    s->closed = true;
}

/* An engine only: LSNs are counted, nothing is journaled. */
static void shard_init(shard *s, uint16_t prefix)
{
    memset(s, 0, sizeof(*s));
    s->cfg = test_config(prefix);
    s->now = START_MS;
    cr_assert_eq(engine_create(&s->cfg, &s->e), 0);
    s->digest[0] = engine_digest(s->e);
}

/* An engine journaling into DIR/wal (DIR = ROOT/name). */
static void shard_open_wal(shard *s, const char *name, uint64_t segment_bytes)
{
    shard_init(s, 0);
    s->has_wal = true;
    s->forward = true;
    in_root(s->dir, name);
    cr_assert_eq(mkdir(s->dir, 0755), 0);
    char wal_dir[PATH_LEN + 8];
    snprintf(wal_dir, sizeof(wal_dir), "%s/wal", s->dir);
    cr_assert_eq(uv_loop_init(&s->loop), 0);
    wal_writer_config wc = {.dir = wal_dir,
                            .shard = 0,
                            .next_lsn = 1,
                            .segment_bytes = segment_bytes,
                            .durable_cb = on_durable,
                            .failed_cb = on_failed,
                            .arg = s};
    int rc = wal_writer_open(&s->loop, &wc, &s->w);
    cr_assert_eq(rc, 0, "wal_writer_open: %s", wal_strerror(rc));
}

static void shard_open_store(shard *s, uint64_t map_bytes)
{
    char dir[PATH_LEN + 16];
    snprintf(dir, sizeof(dir), "%s/snapshot", s->dir);
    int rc = snapshot_store_open(dir, 0, map_bytes, &s->store);
    cr_assert_eq(rc, 0, "snapshot_store_open: %s", snapshot_strerror(rc));
}

static void shard_open_scheduler(shard *s, const snapshot_policy *p)
{
    shard_open_store(s, 0);
    cr_assert_eq(snapshot_scheduler_open(&s->loop, s->e, s->w, s->store, p, &s->sc), 0);
}

/* Runs the loop until pred(s) holds; false after timeout_ms. */
static bool run_until(shard *s, bool (*pred)(const shard *), long timeout_ms)
{
    int64_t deadline = mono_ms() + timeout_ms;
    while (!pred(s)) {
        if (mono_ms() > deadline)
            return false;
        cr_assert_eq(s->failed, 0, "WAL writer failed: %s", wal_strerror(s->failed));
        uv_run(&s->loop, UV_RUN_NOWAIT);
        if (!pred(s))
            sleep_ms(1);
    }
    return true;
}

static uint64_t g_wait_lsn;

static bool durable_reached(const shard *s)
{
    return s->durable >= g_wait_lsn;
}

static bool sched_idle(const shard *s)
{
    return !snapshot_scheduler_busy(s->sc);
}

static bool is_closed(const shard *s)
{
    return s->closed;
}

static void wait_durable(shard *s, uint64_t lsn)
{
    g_wait_lsn = lsn;
    wal_writer_flush(s->w);
    cr_assert(run_until(s, durable_reached, 5000), "LSN %" PRIu64 " never became durable", lsn);
}

static void wait_idle(shard *s)
{
    cr_assert(run_until(s, sched_idle, 5000), "the snapshot was never written");
}

/* Closes everything the shard has open (waiting for a pending snapshot first). */
static void shard_close(shard *s)
{
    if (s->sc != NULL)
        wait_idle(s);
    if (s->w != NULL) {
        cr_assert_eq(wal_writer_close(s->w, on_closed, s), 0);
        cr_assert(run_until(s, is_closed, 5000), "the WAL writer never closed");
        s->w = NULL;
    }
    if (s->sc != NULL) {
        cr_assert(!snapshot_scheduler_busy(s->sc));
        snapshot_scheduler_close(s->sc);
        s->sc = NULL;
    }
    if (s->has_wal) {
        uv_run(&s->loop, UV_RUN_NOWAIT);
        cr_assert_eq(uv_loop_close(&s->loop), 0, "handles left on the loop");
        s->has_wal = false;
    }
    snapshot_store_close(s->store);
    s->store = NULL;
    engine_destroy(s->e);
    s->e = NULL;
}

/* Journals (or counts) a record the engine just produced; remembers the state after it. */
static void apply(shard *s, const engine_record *rec)
{
    uint64_t lsn = s->last_lsn + 1;
    cr_assert_leq(lsn, MAX_RECORDS);
    if (s->has_wal) {
        int64_t got = snapshot_record_append(s->w, rec);
        cr_assert_eq(got, (int64_t)lsn, "append returned %" PRId64, got);
    }
    s->last_lsn = lsn;
    s->digest[lsn] = engine_digest(s->e);
    s->time[lsn] = rec->time_ms;
    s->by_type[rec->type]++;
}

/* Appends a record that is not an engine record (the engine does not change). */
static uint64_t append_other(shard *s, const char *payload)
{
    cr_assert(s->has_wal);
    int64_t got = wal_writer_append(s->w, OTHER_TYPE, s->now, payload, (uint32_t)strlen(payload));
    cr_assert_eq(got, (int64_t)s->last_lsn + 1);
    s->last_lsn++;
    s->digest[s->last_lsn] = engine_digest(s->e);
    s->time[s->last_lsn] = s->now;
    return s->last_lsn;
}

static void tick_clock(shard *s)
{
    s->now += 1000;
}

/* A rows x cols layout with an aisle in the middle, two categories, one
 * accessible and one blocked seat. */
static void op_layout(shard *s, uint64_t id, uint16_t rows, uint16_t cols)
{
    tick_clock(s);
    engine_seat_spec *seats = calloc((size_t)rows * cols, sizeof(*seats));
    char(*labels)[ENGINE_LABEL_MAX] = calloc(rows, ENGINE_LABEL_MAX);
    cr_assert(seats != NULL && labels != NULL);
    for (uint16_t r = 0; r < rows; r++) {
        snprintf(labels[r], ENGINE_LABEL_MAX, "R%hu", r);
        for (uint16_t c = 0; c < cols; c++) {
            engine_seat_spec *st = &seats[(size_t)r * cols + c];
            snprintf(st->label, ENGINE_LABEL_MAX, "%hu-%hu", r, c);
            st->row = r;
            st->col = (uint16_t)(c + (c >= cols / 2));
            st->category = (uint8_t)(r >= rows / 2);
            if (r == 0 && c == 0)
                st->flags = ENGINE_SEAT_FLAG_ACCESSIBLE;
            if (r == 1 && c == cols - 1)
                st->flags = ENGINE_SEAT_FLAG_BLOCKED;
        }
    }
    engine_layout_spec spec = {.seat_count = (uint32_t)rows * cols,
                               .seats = seats,
                               .row_count = rows,
                               .row_labels = (const char(*)[ENGINE_LABEL_MAX])labels,
                               .category_count = 2,
                               .best_row = rows > 2 ? rows - 2u : 0u};
    strcpy(spec.category_names[0], "silver");
    strcpy(spec.category_names[1], "gold");
    engine_record rec;
    engine_problem problem = {0};
    int rc = engine_layout_create(s->e, s->now, id, &spec, &problem, &rec);
    cr_assert_eq(rc, 0, "layout %" PRIu64 ": %d (%s: %s)", id, rc,
                 problem.field ? problem.field : "-", problem.reason ? problem.reason : "-");
    apply(s, &rec); /* the record borrows the engine's copy of the blob, not `seats` */
    free(seats);
    free(labels);
}

static void op_layout_delete(shard *s, uint64_t id)
{
    tick_clock(s);
    engine_record rec;
    cr_assert_eq(engine_layout_delete(s->e, s->now, id, &rec), ENGINE_OK);
    apply(s, &rec);
}

static void op_showtime(shard *s, uint64_t id, uint64_t layout)
{
    tick_clock(s);
    uint32_t prices[2] = {20000 + (uint32_t)(id % 100) * 100, 35000};
    engine_record rec;
    int rc =
        engine_showtime_create(s->e, s->now, id, layout, START_MS + 48 * HOUR_MS, prices, 2, &rec);
    cr_assert_eq(rc, 0, "showtime %" PRIu64 ": %d", id, rc);
    apply(s, &rec);
}

static void op_showtime_delete(shard *s, uint64_t id)
{
    tick_clock(s);
    engine_record rec;
    cr_assert_eq(engine_showtime_delete(s->e, s->now, id, &rec), ENGINE_OK);
    apply(s, &rec);
}

static uint64_t op_hold(shard *s, uint64_t showtime, uint64_t user, const uint32_t *seats,
                        uint32_t n)
{
    tick_clock(s);
    engine_record rec;
    engine_result r = engine_hold_place(s->e, s->now, showtime, user, seats, n, NULL, NULL, &rec);
    cr_assert_eq(r, ENGINE_OK, "hold: %s", engine_result_name(r));
    apply(s, &rec);
    return rec.u.hold_place.hold_id;
}

static void op_release(shard *s, uint64_t hold, uint64_t user)
{
    tick_clock(s);
    engine_record rec;
    cr_assert_eq(engine_hold_release(s->e, s->now, hold, user, &rec), ENGINE_OK);
    apply(s, &rec);
}

static uint64_t op_confirm(shard *s, uint64_t hold, uint64_t user, const char *key)
{
    tick_clock(s);
    engine_record rec;
    uint64_t booking = 0;
    bool replayed = false;
    engine_result r =
        engine_booking_confirm(s->e, s->now, hold, user, ENGINE_PAY_CARD, key,
                               key ? (uint32_t)strlen(key) : 0, &booking, &replayed, &rec);
    cr_assert_eq(r, ENGINE_OK, "confirm: %s", engine_result_name(r));
    cr_assert(!replayed);
    apply(s, &rec);
    return booking;
}

static void op_cancel(shard *s, uint64_t booking, uint64_t user)
{
    tick_clock(s);
    engine_record rec;
    engine_result r = engine_booking_cancel(s->e, s->now, booking, user, NULL, &rec);
    cr_assert_eq(r, ENGINE_OK, "cancel: %s", engine_result_name(r));
    apply(s, &rec);
}

/* Expires every hold due at now + advance_ms. */
static size_t op_expire_all(shard *s, int64_t advance_ms)
{
    s->now += advance_ms;
    engine_record rec;
    size_t total = 0;
    while (engine_holds_expire(s->e, s->now, &rec, NULL, 1) == 1) {
        apply(s, &rec); /* one at a time: the digest after each is exact */
        total++;
    }
    return total;
}

/* One random operation on showtimes 1..nshow (after sweeping expired holds). */
static void random_step(shard *s, uint64_t nshow)
{
    engine *e = s->e;
    engine_record rec;
    s->now += (int64_t)(rng() % 4000);
    engine_record expired;
    while (engine_holds_expire(e, s->now, &expired, NULL, 1) == 1)
        apply(s, &expired); /* one at a time: the digest after each is exact */
    uint64_t user = 1 + rng() % USERS, st = 1 + rng() % nshow;
    uint64_t holds[8], bookings[8];
    uint32_t nh = engine_user_holds(e, user, 0, holds, 8);
    uint32_t nb = engine_user_bookings(e, user, 0, bookings, 8);
    nh = nh < 8 ? nh : 8;
    nb = nb < 8 ? nb : 8;
    switch (rng() % 8) {
    case 0:
    case 1: {
        uint32_t want[4], k = 1 + (uint32_t)(rng() % 4);
        for (uint32_t i = 0; i < k; i++)
            want[i] = (uint32_t)(rng() % 72);
        if (engine_hold_place(e, s->now, st, user, want, k, NULL, NULL, &rec) != ENGINE_OK)
            return;
        break;
    }
    case 2:
        if (engine_hold_best(e, s->now, st, user, 1 + (uint32_t)(rng() % 4), (uint32_t)(rng() % 2),
                             0, &rec) != ENGINE_OK)
            return;
        break;
    case 3:
    case 4: {
        if (nh == 0)
            return;
        uint64_t booking;
        bool replayed;
        char key[24];
        int klen = rng() % 2 ? snprintf(key, sizeof(key), "key-%" PRIu64, rng() % 100000) : 0;
        if (engine_booking_confirm(e, s->now, holds[rng() % nh], user,
                                   (engine_payment)(1 + rng() % 3), key, (uint32_t)klen, &booking,
                                   &replayed, &rec) != ENGINE_OK ||
            replayed)
            return;
        break;
    }
    case 5:
        if (nb == 0 ||
            engine_booking_cancel(e, s->now, bookings[rng() % nb], user, NULL, &rec) != ENGINE_OK)
            return;
        break;
    case 6:
        if (nh == 0 || engine_hold_release(e, s->now, holds[rng() % nh], user, &rec) != ENGINE_OK)
            return;
        break;
    default:
        if (nh == 0 || engine_hold_extend(e, s->now, holds[rng() % nh], user, &rec) != ENGINE_OK)
            return;
        break;
    }
    apply(s, &rec);
}

/* ---- Store helpers ------------------------------------------------------------------ */

static snapshot_store *store_open(const char *dir, uint32_t shard_no, uint64_t map_bytes)
{
    snapshot_store *st = NULL;
    int rc = snapshot_store_open(dir, shard_no, map_bytes, &st);
    cr_assert_eq(rc, 0, "snapshot_store_open(%s): %s", dir, snapshot_strerror(rc));
    return st;
}

/* Takes a snapshot of the shard's engine and writes it at the shard's LSN. */
static size_t store_put(snapshot_store *st, shard *s, bool full)
{
    engine_snapshot *snap;
    cr_assert_eq(engine_snapshot_take(s->e, full, &snap), 0);
    cr_assert_eq(engine_snapshot_full(snap), full);
    size_t n = engine_snapshot_count(snap);
    int rc = snapshot_store_write(st, snap, s->last_lsn);
    cr_assert_eq(rc, 0, "snapshot_store_write: %s", snapshot_strerror(rc));
    engine_snapshot_free(snap);
    return n;
}

/* Loads the store into a fresh engine; returns load's result, the digest in *digest. */
static int store_load(snapshot_store *st, const engine_config *cfg, uint64_t *digest, uint64_t *lsn,
                      int64_t *clock_ms)
{
    engine *fresh;
    cr_assert_eq(engine_create(cfg, &fresh), 0);
    uint64_t l = 12345;
    int64_t c = 12345;
    int rc = snapshot_store_load(st, fresh, &l, &c);
    if (digest != NULL)
        *digest = engine_digest(fresh);
    if (lsn != NULL)
        *lsn = l;
    if (clock_ms != NULL)
        *clock_ms = c;
    engine_destroy(fresh);
    return rc;
}

static uint64_t store_lsn(snapshot_store *st)
{
    uint64_t lsn = 999;
    int rc = snapshot_store_lsn(st, &lsn);
    cr_assert_eq(rc, 0, "snapshot_store_lsn: %s", snapshot_strerror(rc));
    return lsn;
}

/* Loads and checks: digest equals the live engine's, LSN and clock as stored. */
static void expect_loads_live(snapshot_store *st, const shard *s)
{
    uint64_t digest, lsn;
    int64_t clock_ms;
    int rc = store_load(st, &s->cfg, &digest, &lsn, &clock_ms);
    cr_assert_eq(rc, 0, "snapshot_store_load: %s", snapshot_strerror(rc));
    cr_assert_eq(digest, engine_digest(s->e), "restored state differs from the live engine");
    cr_assert_eq(lsn, s->last_lsn);
    cr_assert_eq(clock_ms, engine_now_ms(s->e));
    cr_assert_eq(store_lsn(st), s->last_lsn);
}

/* ---- Direct LMDB access ------------------------------------------------------------- */

typedef struct raw_env {
    MDB_env *env;
    MDB_txn *txn;
} raw_env;

static void raw_open(raw_env *r, const char *dir, bool write)
{
    cr_assert_eq(mdb_env_create(&r->env), 0);
    cr_assert_eq(mdb_env_set_maxdbs(r->env, 8), 0);
    int rc = mdb_env_open(r->env, dir, write ? 0 : MDB_RDONLY, 0644);
    cr_assert_eq(rc, 0, "mdb_env_open(%s): %s", dir, mdb_strerror(rc));
    cr_assert_eq(mdb_txn_begin(r->env, NULL, write ? 0 : MDB_RDONLY, &r->txn), 0);
}

static MDB_dbi raw_db(raw_env *r, const char *name)
{
    MDB_dbi dbi;
    int rc = mdb_dbi_open(r->txn, name, 0, &dbi);
    cr_assert_eq(rc, 0, "database '%s': %s", name, mdb_strerror(rc));
    return dbi;
}

/* Commits (write) or aborts (read) and closes. */
static void raw_close(raw_env *r, bool commit)
{
    if (commit)
        cr_assert_eq(mdb_txn_commit(r->txn), 0);
    else
        mdb_txn_abort(r->txn);
    mdb_env_close(r->env);
}

static void be64(uint64_t id, uint8_t out[8])
{
    for (int i = 0; i < 8; i++)
        out[i] = (uint8_t)(id >> (56 - 8 * i));
}

static uint64_t from_be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

static uint64_t le_get(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

/* Every id key of a data database, in cursor order: 8 bytes each, strictly ascending. */
static size_t raw_ids(raw_env *r, const char *db, uint64_t *ids, size_t cap)
{
    MDB_dbi dbi = raw_db(r, db);
    MDB_cursor *c;
    cr_assert_eq(mdb_cursor_open(r->txn, dbi, &c), 0);
    MDB_val k, v;
    size_t n = 0;
    int op = MDB_FIRST;
    while (mdb_cursor_get(c, &k, &v, op) == 0) {
        op = MDB_NEXT;
        cr_assert_eq(k.mv_size, 8u, "%s: a key of %zu bytes", db, k.mv_size);
        uint64_t id = from_be64(k.mv_data);
        cr_assert(n == 0 || id > ids[n - 1], "%s: keys not in numeric order", db);
        cr_assert_lt(n, cap);
        ids[n++] = id;
    }
    mdb_cursor_close(c);
    return n;
}

/* The value stored under `id` in `db` (NULL if absent); borrowed until raw_close. */
static const uint8_t *raw_get(raw_env *r, const char *db, uint64_t id, size_t *len)
{
    uint8_t key[8];
    be64(id, key);
    MDB_val k = {.mv_size = 8, .mv_data = key}, v;
    int rc = mdb_get(r->txn, raw_db(r, db), &k, &v);
    if (rc == MDB_NOTFOUND)
        return NULL;
    cr_assert_eq(rc, 0, "mdb_get: %s", mdb_strerror(rc));
    *len = v.mv_size;
    return v.mv_data;
}

static void raw_put(raw_env *r, const char *db, uint64_t id, const void *value, size_t len)
{
    uint8_t key[8];
    be64(id, key);
    MDB_val k = {.mv_size = 8, .mv_data = key}, v = {.mv_size = len, .mv_data = (void *)value};
    int rc = mdb_put(r->txn, raw_db(r, db), &k, &v, 0);
    cr_assert_eq(rc, 0, "mdb_put: %s", mdb_strerror(rc));
}

static void raw_del(raw_env *r, const char *db, uint64_t id)
{
    uint8_t key[8];
    be64(id, key);
    MDB_val k = {.mv_size = 8, .mv_data = key};
    int rc = mdb_del(r->txn, raw_db(r, db), &k, NULL);
    cr_assert_eq(rc, 0, "mdb_del: %s", mdb_strerror(rc));
}

static bool contains(const uint64_t *ids, size_t n, uint64_t id)
{
    for (size_t i = 0; i < n; i++) {
        if (ids[i] == id)
            return true;
    }
    return false;
}

/* Every live hold of the engine, by asking each user (ascending per user). */
static size_t live_holds(const engine *e, uint64_t *ids, size_t cap)
{
    size_t n = 0;
    for (uint64_t u = 1; u <= USERS; u++) {
        uint64_t buf[64];
        uint32_t total = engine_user_holds(e, u, 0, buf, 64);
        cr_assert_leq(total, 64u);
        for (uint32_t i = 0; i < total; i++) {
            cr_assert_lt(n, cap);
            ids[n++] = buf[i];
        }
    }
    cr_assert_eq(n, engine_holds_live(e));
    return n;
}

/* The holds database holds exactly the live holds, with their current encoding. */
static void expect_holds_db(const char *dir, const engine *e)
{
    uint64_t live[256], stored[256];
    size_t nl = live_holds(e, live, 256);
    raw_env r;
    raw_open(&r, dir, false);
    size_t ns = raw_ids(&r, "holds", stored, 256);
    raw_close(&r, false);
    cr_assert_eq(ns, nl, "holds database has %zu holds, the engine %zu", ns, nl);
    for (size_t i = 0; i < nl; i++)
        cr_assert(contains(stored, ns, live[i]), "live hold %" PRIx64 " not stored", live[i]);
}

/* ---- Store: round trips -------------------------------------------------------------- */

/* Layout 1 with showtimes 1 and 2, some holds and bookings (one cancelled). */
static void small_world(shard *s)
{
    op_layout(s, 1, 6, 12);
    op_showtime(s, 1, 1);
    op_showtime(s, 2, 1);
    uint32_t a[] = {30, 31}, b[] = {40}, c[] = {5, 6, 7}, d[] = {50, 51};
    uint64_t h1 = op_hold(s, 1, 1, a, 2);
    op_hold(s, 1, 2, b, 1);
    uint64_t h3 = op_hold(s, 2, 3, c, 3);
    uint64_t h4 = op_hold(s, 2, 4, d, 2);
    op_confirm(s, h1, 1, "pay-1");
    uint64_t bk = op_confirm(s, h3, 3, NULL);
    op_confirm(s, h4, 4, "pay-4");
    op_cancel(s, bk, 3);
}

Test(snapshot, full_write_and_load_round_trip)
{
    shard_init(&S, 0);
    small_world(&S);
    char dir[PATH_LEN];
    in_root(dir, "snap");
    snapshot_store *st = store_open(dir, 0, 0);
    cr_assert_eq(store_lsn(st), 0u);
    store_put(st, &S, true);
    expect_loads_live(st, &S);
    cr_assert_eq(store_lsn(st), S.last_lsn);

    /* The stored snapshot survives closing and reopening the environment. */
    snapshot_store_close(st);
    st = store_open(dir, 0, 0);
    expect_loads_live(st, &S);

    /* The restored engine goes on like the live one. */
    engine *fresh;
    cr_assert_eq(engine_create(&S.cfg, &fresh), 0);
    uint64_t lsn;
    int64_t clock_ms;
    cr_assert_eq(snapshot_store_load(st, fresh, &lsn, &clock_ms), 0);
    uint32_t seats[] = {60, 61};
    engine_record r1, r2;
    cr_assert_eq(engine_hold_place(S.e, S.now + 5, 1, 7, seats, 2, NULL, NULL, &r1), ENGINE_OK);
    cr_assert_eq(engine_hold_place(fresh, S.now + 5, 1, 7, seats, 2, NULL, NULL, &r2), ENGINE_OK);
    cr_assert_eq(r1.u.hold_place.hold_id, r2.u.hold_place.hold_id);
    cr_assert_eq(engine_digest(fresh), engine_digest(S.e));
    engine_destroy(fresh);
    snapshot_store_close(st);
    shard_close(&S);
}

Test(snapshot, incremental_chain_matches_live_engine)
{
    shard_init(&S, 0);
    char dir[PATH_LEN];
    in_root(dir, "snap");
    snapshot_store *st = store_open(dir, 0, 0);

    op_layout(&S, 1, 6, 12);
    op_layout(&S, 2, 3, 8);
    op_showtime(&S, 1, 1);
    op_showtime(&S, 2, 1);
    op_showtime(&S, 3, 2);
    op_showtime(&S, 4, 2);
    uint32_t a[] = {10, 11}, b[] = {20};
    uint64_t h1 = op_hold(&S, 1, 1, a, 2);
    uint64_t h2 = op_hold(&S, 2, 2, b, 1);
    size_t full_items = store_put(st, &S, true);
    expect_loads_live(st, &S);

    /* 1: a new showtime, holds placed and released. */
    op_showtime(&S, 5, 1);
    uint32_t c[] = {0, 1}, d[] = {33, 34, 35};
    uint64_t h3 = op_hold(&S, 5, 3, d, 3);
    op_hold(&S, 3, 4, c, 2); /* expires in step 2 */
    op_release(&S, h2, 2);
    size_t items = store_put(st, &S, false);
    cr_assert_lt(items, full_items + 3, "an incremental snapshot holds only what changed");
    expect_loads_live(st, &S);
    snapshot_store_close(st);
    expect_holds_db(dir, S.e);
    st = store_open(dir, 0, 0);

    /* 2: bookings confirmed, one cancelled; an expiry. */
    uint64_t b1 = op_confirm(&S, h1, 1, "k1");
    uint64_t b3 = op_confirm(&S, h3, 3, NULL);
    op_cancel(&S, b1, 1);
    uint32_t e1[] = {44};
    op_hold(&S, 2, 5, e1, 1);
    cr_assert_eq(op_expire_all(&S, 70000), 2u); /* h4 and the new one */
    store_put(st, &S, false);
    expect_loads_live(st, &S);
    snapshot_store_close(st);
    expect_holds_db(dir, S.e);
    st = store_open(dir, 0, 0);

    /* 3: two adjacent showtimes deleted (3 and 4, both on layout 2), one
     * booking cancelled, a hold left live. */
    op_cancel(&S, b3, 3);
    op_showtime_delete(&S, 3);
    op_showtime_delete(&S, 4);
    uint32_t f[] = {2, 3};
    uint64_t h6 = op_hold(&S, 1, 6, f, 2);
    store_put(st, &S, false);
    expect_loads_live(st, &S);
    snapshot_store_close(st);
    expect_holds_db(dir, S.e);
    raw_env r;
    raw_open(&r, dir, false);
    uint64_t ids[64];
    size_t n = raw_ids(&r, "showtimes", ids, 64);
    cr_assert_eq(n, 3u);
    cr_assert(!contains(ids, n, 3) && !contains(ids, n, 4), "deleted showtimes still stored");
    cr_assert(contains(ids, n, 1) && contains(ids, n, 2) && contains(ids, n, 5));
    n = raw_ids(&r, "bookings", ids, 64); /* bookings are never deleted */
    cr_assert_eq(n, 2u);
    raw_close(&r, false);
    st = store_open(dir, 0, 0);

    /* 4: layout 2 deleted; a new layout 7, and layout 2 again with another shape. */
    op_layout_delete(&S, 2);
    op_layout(&S, 7, 4, 10);
    op_showtime(&S, 8, 7);
    op_release(&S, h6, 6);
    store_put(st, &S, false);
    expect_loads_live(st, &S);
    snapshot_store_close(st);
    raw_open(&r, dir, false);
    n = raw_ids(&r, "layouts", ids, 64);
    cr_assert_eq(n, 2u);
    cr_assert(!contains(ids, n, 2), "deleted layout 2 still stored");
    cr_assert(contains(ids, n, 1) && contains(ids, n, 7));
    raw_close(&r, false);
    expect_holds_db(dir, S.e);
    st = store_open(dir, 0, 0);

    op_layout(&S, 2, 2, 6);
    op_showtime(&S, 3, 2);
    uint32_t g[] = {1};
    op_hold(&S, 3, 7, g, 1);
    store_put(st, &S, false);
    expect_loads_live(st, &S);
    snapshot_store_close(st);
    raw_open(&r, dir, false);
    size_t len = 0;
    cr_assert_not_null(raw_get(&r, "layouts", 2, &len));
    cr_assert_eq(engine_layout_seat_count(S.e, 2), 12u);
    raw_close(&r, false);
    expect_holds_db(dir, S.e);

    /* 5: nothing changed: an incremental snapshot still loads equal. */
    st = store_open(dir, 0, 0);
    S.last_lsn++; /* a later LSN (e.g. non-engine records) */
    store_put(st, &S, false);
    expect_loads_live(st, &S);
    snapshot_store_close(st);
    shard_close(&S);
}

Test(snapshot, open_checks_shard_and_format)
{
    char dir[PATH_LEN];
    in_root(dir, "snap");
    snapshot_store *st = store_open(dir, 3, 0);
    snapshot_store_close(st);
    snapshot_store *other = NULL;
    cr_assert_eq(snapshot_store_open(dir, 4, 0, &other), SNAPSHOT_ESHARD);
    cr_assert_null(other);
    st = store_open(dir, 3, 0); /* the refusal changed nothing */
    snapshot_store_close(st);

    /* A format this build does not know. */
    raw_env r;
    raw_open(&r, dir, true);
    uint8_t two[4] = {2, 0, 0, 0};
    MDB_val k = {.mv_size = 6, .mv_data = "format"}, v = {.mv_size = 4, .mv_data = two};
    cr_assert_eq(mdb_put(r.txn, raw_db(&r, "meta"), &k, &v, 0), 0);
    raw_close(&r, true);
    cr_assert_eq(snapshot_store_open(dir, 3, 0, &other), SNAPSHOT_EFORMAT);
    cr_assert_null(other);

    /* A directory that cannot be created: -errno. */
    char missing[PATH_LEN];
    in_root(missing, "no/such/dir");
    cr_assert_eq(snapshot_store_open(missing, 3, 0, &other), -ENOENT);
    cr_assert_null(other);
}

Test(snapshot, empty_store_restores_nothing)
{
    char dir[PATH_LEN];
    in_root(dir, "snap");
    snapshot_store *st = store_open(dir, 0, 0);
    cr_assert_eq(store_lsn(st), 0u);
    engine_config cfg = test_config(0);
    engine *fresh, *blank;
    cr_assert_eq(engine_create(&cfg, &fresh), 0);
    cr_assert_eq(engine_create(&cfg, &blank), 0);
    uint64_t lsn = 77;
    int64_t clock_ms = 77;
    cr_assert_eq(snapshot_store_load(st, fresh, &lsn, &clock_ms), 0);
    cr_assert_eq(lsn, 0u);
    cr_assert_eq(clock_ms, 0);
    cr_assert_eq(engine_digest(fresh), engine_digest(blank));
    engine_destroy(fresh);
    engine_destroy(blank);
    snapshot_store_close(st);
}

/* ---- Store: the documented layout ------------------------------------------------------ */

typedef struct item_kind_db {
    engine_item_kind kind;
    const char *db;
} item_kind_db;

static const item_kind_db kind_dbs[] = {{ENGINE_ITEM_LAYOUT, "layouts"},
                                        {ENGINE_ITEM_SHOWTIME, "showtimes"},
                                        {ENGINE_ITEM_HOLD, "holds"},
                                        {ENGINE_ITEM_BOOKING, "bookings"}};

Test(snapshot, keys_big_endian_and_meta_as_documented)
{
    /* Shard 3 with id prefix 3: hold and booking ids are (3 << 48) | seq. */
    shard_init(&S, 3);
    op_layout(&S, 0xA1, 6, 12);
    op_showtime(&S, 1, 0xA1);
    op_showtime(&S, 0x100, 0xA1);
    op_showtime(&S, UINT64_C(0x0102030405060708), 0xA1);
    uint32_t a[] = {3}, b[] = {4, 5}, c[] = {6};
    uint64_t h1 = op_hold(&S, 0x100, 1, a, 1);
    op_hold(&S, 1, 2, b, 2);
    op_hold(&S, UINT64_C(0x0102030405060708), 3, c, 1);
    op_confirm(&S, h1, 1, "idem");
    cr_assert_eq(h1, (UINT64_C(3) << 48) | 1);

    char dir[PATH_LEN];
    in_root(dir, "snap");
    snapshot_store *st = store_open(dir, 3, 0);
    engine_snapshot *snap;
    cr_assert_eq(engine_snapshot_take(S.e, true, &snap), 0);
    int64_t before = wall_ms();
    cr_assert_eq(snapshot_store_write(st, snap, 4242), 0);
    int64_t after = wall_ms();
    snapshot_store_close(st);

    raw_env r;
    raw_open(&r, dir, false);
    /* Data databases: 8-byte big-endian keys, values = the engine items. */
    size_t seen = 0;
    for (size_t d = 0; d < sizeof(kind_dbs) / sizeof(kind_dbs[0]); d++) {
        uint64_t ids[64];
        size_t n = raw_ids(&r, kind_dbs[d].db, ids, 64);
        size_t expect = 0;
        for (size_t i = 0; i < engine_snapshot_count(snap); i++) {
            const engine_item *it = engine_snapshot_item(snap, i);
            if (it->kind != kind_dbs[d].kind)
                continue;
            expect++;
            size_t len = 0;
            const uint8_t *val = raw_get(&r, kind_dbs[d].db, it->key, &len);
            cr_assert_not_null(val, "%s: id %" PRIx64 " missing", kind_dbs[d].db, it->key);
            cr_assert_eq(len, it->len);
            cr_assert_arr_eq(val, it->value, len, "%s: value of %" PRIx64 " differs",
                             kind_dbs[d].db, it->key);
        }
        cr_assert_eq(n, expect, "%s: %zu keys, %zu items", kind_dbs[d].db, n, expect);
        seen += n;
    }
    cr_assert_eq(seen + 1, engine_snapshot_count(snap)); /* + the META item */

    /* The raw key bytes of one showtime: most significant byte first. */
    MDB_cursor *cur;
    cr_assert_eq(mdb_cursor_open(r.txn, raw_db(&r, "showtimes"), &cur), 0);
    MDB_val k, v;
    cr_assert_eq(mdb_cursor_get(cur, &k, &v, MDB_LAST), 0);
    const uint8_t want_key[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    cr_assert_arr_eq(k.mv_data, want_key, 8);
    mdb_cursor_close(cur);

    /* Meta: exactly format, shard, lsn, engine, written_at_ms. */
    cr_assert_eq(mdb_cursor_open(r.txn, raw_db(&r, "meta"), &cur), 0);
    const char *names[] = {"engine", "format", "lsn", "shard", "written_at_ms"};
    size_t nk = 0;
    int op = MDB_FIRST;
    while (mdb_cursor_get(cur, &k, &v, op) == 0) {
        op = MDB_NEXT;
        cr_assert_lt(nk, 5u, "more than five meta keys");
        cr_assert_eq(k.mv_size, strlen(names[nk]), "meta key %zu", nk);
        cr_assert_arr_eq(k.mv_data, names[nk], k.mv_size, "meta key %zu is not '%s'", nk,
                         names[nk]);
        const uint8_t *p = v.mv_data;
        if (nk == 0) { /* engine: the META item */
            const engine_item *meta = engine_snapshot_item(snap, 0);
            cr_assert_eq(meta->kind, ENGINE_ITEM_META);
            cr_assert_eq(v.mv_size, meta->len);
            cr_assert_arr_eq(p, meta->value, meta->len);
            cr_assert_eq(v.mv_size, 1u + 8 + 8 + 4 + 2);
            cr_assert_eq(p[0], 1);
            cr_assert_eq((int64_t)le_get(p + 1, 8), engine_now_ms(S.e));
            cr_assert_eq(le_get(p + 1 + 8 + 8, 4), 1u);     /* bookings */
            cr_assert_eq(le_get(p + 1 + 8 + 8 + 4, 2), 3u); /* id prefix */
        } else if (nk == 1) {
            cr_assert_eq(v.mv_size, 4u);
            cr_assert_eq(le_get(p, 4), 1u);
        } else if (nk == 2) {
            cr_assert_eq(v.mv_size, 8u);
            cr_assert_eq(le_get(p, 8), 4242u);
        } else if (nk == 3) {
            cr_assert_eq(v.mv_size, 4u);
            cr_assert_eq(le_get(p, 4), 3u);
        } else {
            cr_assert_eq(v.mv_size, 8u);
            int64_t at = (int64_t)le_get(p, 8);
            cr_assert(at >= before && at <= after,
                      "written_at_ms %" PRId64 " not in [%" PRId64 ", %" PRId64 "]", at, before,
                      after);
        }
        nk++;
    }
    cr_assert_eq(nk, 5u);
    mdb_cursor_close(cur);

    /* Exactly the six named databases in the main database. */
    MDB_dbi main_db;
    cr_assert_eq(mdb_dbi_open(r.txn, NULL, 0, &main_db), 0);
    cr_assert_eq(mdb_cursor_open(r.txn, main_db, &cur), 0);
    const char *dbs[] = {"bookings", "holds", "layouts", "meta", "onsale", "showtimes"};
    nk = 0;
    op = MDB_FIRST;
    while (mdb_cursor_get(cur, &k, &v, op) == 0) {
        op = MDB_NEXT;
        cr_assert_lt(nk, 6u, "more than six databases");
        cr_assert_eq(k.mv_size, strlen(dbs[nk]));
        cr_assert_arr_eq(k.mv_data, dbs[nk], k.mv_size);
        nk++;
    }
    cr_assert_eq(nk, 6u);
    mdb_cursor_close(cur);
    raw_close(&r, false);
    engine_snapshot_free(snap);

    /* LMDB's own tool reads it. */
    char cmd[PATH_LEN + 64];
    snprintf(cmd, sizeof(cmd), "mdb_stat -a '%s' 2>&1", dir);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    char out[8192];
    size_t len = fread(out, 1, sizeof(out) - 1, p);
    out[len] = '\0';
    int status = pclose(p);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "mdb_stat failed (%d): %s", status,
              out);
    for (size_t i = 0; i < 5; i++) {
        char line[64];
        snprintf(line, sizeof(line), "Status of %s\n", dbs[i]);
        cr_assert_not_null(strstr(out, line), "mdb_stat does not list '%s':\n%s", dbs[i], out);
    }
    shard_close(&S);
}

/* ---- Store: corruption is an error ----------------------------------------------------- */

typedef struct corrupt_world {
    char dir[PATH_LEN];
    uint64_t showtime;   /* showtime 1: booking kept (confirmed), a live hold */
    uint64_t confirmed;  /* a confirmed booking on showtime 1, seats {8, 9} */
    uint64_t confirmed2; /* another, seat {20} */
    uint64_t cancelled;  /* a cancelled booking */
    uint64_t hold;       /* a live hold on showtime 1 */
    uint32_t free_seat;  /* free on showtime 1 */
} corrupt_world;

/* Writes small_world-like state to ROOT/snap and closes the store. */
static void corrupt_setup(corrupt_world *w)
{
    shard_init(&S, 0);
    op_layout(&S, 1, 6, 12);
    op_showtime(&S, 1, 1);
    uint32_t a[] = {8, 9}, b[] = {20}, c[] = {30}, d[] = {40, 41};
    uint64_t ha = op_hold(&S, 1, 1, a, 2);
    uint64_t hb = op_hold(&S, 1, 2, b, 1);
    uint64_t hc = op_hold(&S, 1, 3, c, 1);
    w->hold = op_hold(&S, 1, 4, d, 2);
    w->confirmed = op_confirm(&S, ha, 1, "k1");
    w->confirmed2 = op_confirm(&S, hb, 2, "k2");
    w->cancelled = op_confirm(&S, hc, 3, NULL);
    op_cancel(&S, w->cancelled, 3);
    w->showtime = 1;
    w->free_seat = 50;
    cr_assert_eq(engine_seat_state_get(S.e, 1, w->free_seat), ENGINE_SEAT_FREE);
    in_root(w->dir, "snap");
    snapshot_store *st = store_open(w->dir, 0, 0);
    store_put(st, &S, true);
    expect_loads_live(st, &S);
    snapshot_store_close(st);
}

/* Opens the store again and expects load to fail with SNAPSHOT_ECORRUPT. */
static void expect_corrupt(corrupt_world *w, const char *what)
{
    snapshot_store *st = store_open(w->dir, 0, 0);
    int rc = store_load(st, &S.cfg, NULL, NULL, NULL);
    cr_assert_eq(rc, SNAPSHOT_ECORRUPT, "%s: load returned %d (%s)", what, rc,
                 snapshot_strerror(rc));
    snapshot_store_close(st);
    shard_close(&S);
}

Test(snapshot, corrupt_booking_value_is_an_error)
{
    corrupt_world w;
    corrupt_setup(&w);
    raw_env r;
    raw_open(&r, w.dir, true);
    const char garbage[] = "this is not a booking at all, just bytes";
    raw_put(&r, "bookings", w.confirmed2, garbage, sizeof(garbage));
    raw_close(&r, true);
    expect_corrupt(&w, "garbage booking");
}

Test(snapshot, missing_booking_is_an_error)
{
    corrupt_world w;
    corrupt_setup(&w);
    raw_env r;
    raw_open(&r, w.dir, true);
    raw_del(&r, "bookings", w.cancelled); /* ids 1, 2 remain of 1..3 */
    raw_close(&r, true);
    expect_corrupt(&w, "booking ids not dense");
}

Test(snapshot, sold_seat_without_booking_is_an_error)
{
    corrupt_world w;
    corrupt_setup(&w);
    raw_env r;
    raw_open(&r, w.dir, true);
    size_t len = 0;
    const uint8_t *val = raw_get(&r, "showtimes", w.showtime, &len);
    cr_assert_not_null(val);
    uint8_t *copy = malloc(len);
    memcpy(copy, val, len);
    /* u8 1 | u64 layout | i64 start | u8 n | u32 price[n] | u32 seats | held | sold */
    uint32_t n = copy[17], seats = (uint32_t)le_get(copy + 18 + 4 * n, 4);
    cr_assert_eq(seats, 72u);
    uint32_t words = (seats + 63) / 64;
    size_t sold = 18 + 4 * (size_t)n + 4 + 8 * (size_t)words;
    cr_assert_eq(len, sold + 8 * (size_t)words);
    copy[sold + w.free_seat / 8] ^= (uint8_t)(1u << (w.free_seat % 8));
    raw_put(&r, "showtimes", w.showtime, copy, len);
    free(copy);
    raw_close(&r, true);
    expect_corrupt(&w, "sold bit without a booking");
}

Test(snapshot, truncated_hold_is_an_error)
{
    corrupt_world w;
    corrupt_setup(&w);
    raw_env r;
    raw_open(&r, w.dir, true);
    size_t len = 0;
    const uint8_t *val = raw_get(&r, "holds", w.hold, &len);
    cr_assert_not_null(val);
    uint8_t *copy = malloc(len);
    memcpy(copy, val, len);
    raw_put(&r, "holds", w.hold, copy, len - 3);
    free(copy);
    raw_close(&r, true);
    expect_corrupt(&w, "truncated hold");
}

/* One flipped bit in a hold's amount: restore must refuse it, not abort in
 * engine_check ("hold amount"). */
/* A hold's amount is the prices when it was placed, which may have changed
 * since (engine_showtime_price_set), so a restore cannot re-derive it; a
 * hold's seats it can check. One flipped bit turns seat 40 into seat 8,
 * which a confirmed booking owns. */
Test(snapshot, hold_seat_bit_flip_is_an_error)
{
    corrupt_world w;
    corrupt_setup(&w);
    raw_env r;
    raw_open(&r, w.dir, true);
    size_t len = 0;
    const uint8_t *val = raw_get(&r, "holds", w.hold, &len);
    cr_assert_not_null(val);
    uint8_t *copy = malloc(len);
    memcpy(copy, val, len);
    /* u8 1 | u64 showtime | u64 user | i64 created | i64 expires | u64 amount | u8 n | u32 seats */
    cr_assert_eq(copy[1 + 8 * 5 + 1], 40);
    copy[1 + 8 * 5 + 1] ^= 0x20;
    raw_put(&r, "holds", w.hold, copy, len);
    free(copy);
    raw_close(&r, true);
    expect_corrupt(&w, "hold seat 40 -> 8 (sold)");
}

/* One flipped bit in a confirmed booking's seat (9 -> 8, its other seat):
 * the per-showtime sold count still matches, but the booking now claims a
 * seat twice and seat 9 has no booking. */
Test(snapshot, booking_seat_bit_flip_is_an_error)
{
    corrupt_world w;
    corrupt_setup(&w);
    raw_env r;
    raw_open(&r, w.dir, true);
    size_t len = 0;
    const uint8_t *val = raw_get(&r, "bookings", w.confirmed, &len);
    cr_assert_not_null(val);
    uint8_t *copy = malloc(len);
    memcpy(copy, val, len);
    /* u8 1 | 7 x u64 | u8 payment | u8 status | u8 n | u32 seat[n] | ... */
    size_t seats = 1 + 7 * 8 + 3;
    cr_assert_eq(copy[seats - 1], 2);
    cr_assert_eq(le_get(copy + seats, 4), 8u);
    cr_assert_eq(le_get(copy + seats + 4, 4), 9u);
    copy[seats + 4] ^= 0x01;
    raw_put(&r, "bookings", w.confirmed, copy, len);
    free(copy);
    raw_close(&r, true);
    expect_corrupt(&w, "booking seat 9 -> 8");
}

/* Two bookings of one user with one idempotency key (user 2 -> 1 and key
 * "k2" -> "k1" in booking 2): refused, not an assertion in the key index. */
Test(snapshot, duplicate_idempotency_key_is_an_error)
{
    corrupt_world w;
    corrupt_setup(&w);
    raw_env r;
    raw_open(&r, w.dir, true);
    size_t len = 0;
    const uint8_t *val = raw_get(&r, "bookings", w.confirmed2, &len);
    cr_assert_not_null(val);
    uint8_t *copy = malloc(len);
    memcpy(copy, val, len);
    cr_assert_eq(le_get(copy + 9, 8), 2u); /* user */
    cr_assert_eq(copy[len - 3], 2);        /* key_len */
    cr_assert_eq(memcmp(copy + len - 2, "k2", 2), 0);
    copy[9] = 1;
    copy[len - 1] = '1';
    raw_put(&r, "bookings", w.confirmed2, copy, len);
    free(copy);
    raw_close(&r, true);
    expect_corrupt(&w, "idempotency key twice");
}

/* ---- Store: map growth ----------------------------------------------------------------- */

Test(snapshot, map_grows_for_a_large_snapshot)
{
    shard_init(&S, 0);
    op_layout(&S, 1, 100, 1000); /* 100,000 seats */
    cr_assert_eq(engine_layout_seat_count(S.e, 1), 100000u);
    op_showtime(&S, 1, 1);
    uint32_t a[] = {99998, 99999}, b[] = {12345};
    uint64_t h = op_hold(&S, 1, 1, a, 2);
    op_hold(&S, 1, 2, b, 1);
    op_confirm(&S, h, 1, NULL);

    char dir[PATH_LEN];
    in_root(dir, "snap");
    snapshot_store *st = store_open(dir, 0, 64 * 1024);
    store_put(st, &S, true);
    expect_loads_live(st, &S);
    snapshot_store_close(st);
    struct stat sb;
    char data[PATH_LEN + 16];
    snprintf(data, sizeof(data), "%s/data.mdb", dir);
    cr_assert_eq(stat(data, &sb), 0);
    cr_assert_gt(sb.st_size, 64 * 1024, "the snapshot cannot fit 64 KiB");

    /* Reopened with the tiny map again: still loads, and grows again for more. */
    st = store_open(dir, 0, 64 * 1024);
    expect_loads_live(st, &S);
    op_layout(&S, 2, 100, 1000);
    store_put(st, &S, false);
    expect_loads_live(st, &S);
    store_put(st, &S, true);
    expect_loads_live(st, &S);
    snapshot_store_close(st);
    shard_close(&S);
}

/* ---- Recovery ------------------------------------------------------------------------ */

typedef struct history {
    uint64_t snap_lsn;  /* LSN of the stored snapshot (0: none) */
    uint64_t other_lsn; /* LSN of the non-engine record (0: none) */
} history;

/* Journals a deterministic random history of about `records` records into
 * ROOT/shard-0/wal (8 KiB segments); a full snapshot at the first LSN >=
 * snap_at (0: none); a non-engine record at other_at (0: none). */
static void build_history(history *h, uint64_t records, uint64_t snap_at, uint64_t other_at)
{
    memset(h, 0, sizeof(*h));
    rng_state = 20260314;
    shard_open_wal(&S, "shard-0", 8 * 1024);
    op_layout(&S, 1, 6, 12);
    op_layout(&S, 2, 2, 4);
    for (uint64_t id = 1; id <= 3; id++)
        op_showtime(&S, id, 1);
    op_showtime(&S, 9, 2);
    bool st_deleted = false, layout_deleted = false;
    while (S.last_lsn < records) {
        random_step(&S, 3);
        if (S.last_lsn % 37 == 0)
            wait_durable(&S, S.last_lsn);
        if (other_at != 0 && h->other_lsn == 0 && S.last_lsn + 1 >= other_at)
            h->other_lsn = append_other(&S, "catalog: screen 4 renamed");
        if (snap_at != 0 && h->snap_lsn == 0 && S.last_lsn >= snap_at) {
            wait_durable(&S, S.last_lsn);
            shard_open_store(&S, 0);
            store_put(S.store, &S, true);
            snapshot_store_close(S.store);
            S.store = NULL;
            h->snap_lsn = S.last_lsn;
        }
        if (!st_deleted && S.last_lsn >= records / 3) {
            op_showtime_delete(&S, 9);
            st_deleted = true;
        }
        if (!layout_deleted && S.last_lsn >= 2 * records / 3) {
            op_layout_delete(&S, 2);
            layout_deleted = true;
        }
    }
    wait_durable(&S, S.last_lsn);
    cr_assert_eq(wal_writer_close(S.w, on_closed, &S), 0);
    cr_assert(run_until(&S, is_closed, 5000));
    S.w = NULL;
    for (int t = ENGINE_REC_LAYOUT_CREATE; t <= ENGINE_REC_BOOKING_CANCEL; t++)
        cr_assert_gt(S.by_type[t], 0u, "the history has no %s record",
                     engine_record_type_name((engine_record_type)t));
    if (snap_at != 0)
        cr_assert(h->snap_lsn > 0 && h->snap_lsn < S.last_lsn);
}

static snapshot_recover_opts recover_opts(bool use_snapshot, uint64_t stop_lsn)
{
    snapshot_recover_opts o = {.shard_dir = S.dir,
                               .shard = 0,
                               .cfg = S.cfg,
                               .stop_lsn = stop_lsn,
                               .use_snapshot = use_snapshot,
                               .repair = false};
    return o;
}

/* Recovers and returns the engine's digest; checks the LSN it reached. */
static uint64_t recover_digest(const snapshot_recover_opts *o, snapshot_recovery *rep,
                               uint64_t want_lsn)
{
    engine *e = NULL;
    int rc = snapshot_recover(o, &e, rep);
    cr_assert_eq(rc, 0, "snapshot_recover: %s: %s", snapshot_strerror(rc), rep->error);
    cr_assert_not_null(e);
    cr_assert_eq(rep->last_lsn, want_lsn);
    uint64_t d = engine_digest(e);
    engine_destroy(e);
    return d;
}

Test(snapshot, recover_from_wal_only)
{
    history h;
    build_history(&h, 400, 0, 0);
    snapshot_recover_opts o = recover_opts(true, 0);
    snapshot_recovery rep;
    cr_assert_eq(recover_digest(&o, &rep, S.last_lsn), engine_digest(S.e));
    cr_assert(!rep.had_snapshot);
    cr_assert_eq(rep.snapshot_lsn, 0u);
    cr_assert_eq(rep.stored_snapshot_lsn, 0u);
    cr_assert_eq(rep.replayed, S.last_lsn);
    cr_assert_eq(rep.torn_bytes, 0u);
    shard_close(&S);
}

Test(snapshot, recover_from_snapshot_and_tail)
{
    history h;
    build_history(&h, 400, 200, 0);
    snapshot_recovery rep;

    /* Snapshot + tail. */
    snapshot_recover_opts o = recover_opts(true, 0);
    cr_assert_eq(recover_digest(&o, &rep, S.last_lsn), engine_digest(S.e));
    cr_assert(rep.had_snapshot);
    cr_assert_eq(rep.snapshot_lsn, h.snap_lsn);
    cr_assert_eq(rep.stored_snapshot_lsn, h.snap_lsn);
    cr_assert_eq(rep.replayed, S.last_lsn - h.snap_lsn);

    /* The whole WAL, snapshot ignored. */
    o = recover_opts(false, 0);
    cr_assert_eq(recover_digest(&o, &rep, S.last_lsn), engine_digest(S.e));
    cr_assert(!rep.had_snapshot);
    cr_assert_eq(rep.replayed, S.last_lsn);

    /* Stop points after the snapshot: snapshot + part of the tail. */
    uint64_t stops[] = {h.snap_lsn, h.snap_lsn + 1, (h.snap_lsn + S.last_lsn) / 2, S.last_lsn};
    for (size_t i = 0; i < sizeof(stops) / sizeof(stops[0]); i++) {
        o = recover_opts(true, stops[i]);
        cr_assert_eq(recover_digest(&o, &rep, stops[i]), S.digest[stops[i]], "stop_lsn %" PRIu64,
                     stops[i]);
        cr_assert(rep.had_snapshot);
        cr_assert_eq(rep.replayed, stops[i] - h.snap_lsn);
    }

    /* Stop points before the snapshot: it is too new, recovery starts from scratch. */
    uint64_t early[] = {1, 5, h.snap_lsn / 2, h.snap_lsn - 1};
    for (size_t i = 0; i < sizeof(early) / sizeof(early[0]); i++) {
        o = recover_opts(true, early[i]);
        cr_assert_eq(recover_digest(&o, &rep, early[i]), S.digest[early[i]], "stop_lsn %" PRIu64,
                     early[i]);
        cr_assert(!rep.had_snapshot);
        cr_assert_eq(rep.stored_snapshot_lsn, h.snap_lsn);
        cr_assert_eq(rep.replayed, early[i]);
    }
    shard_close(&S);
}

/* The last LSN whose record time is <= t (times never go backwards). */
static uint64_t last_lsn_at(int64_t t)
{
    uint64_t lsn = 0;
    while (lsn < S.last_lsn && S.time[lsn + 1] <= t)
        lsn++;
    return lsn;
}

Test(snapshot, recover_to_a_point_in_time)
{
    history h;
    build_history(&h, 400, 200, 0);
    snapshot_recovery rep;
    int64_t snap_time = S.time[h.snap_lsn];
    /* After the snapshot's clock: snapshot + the records up to that time. */
    int64_t after[] = {snap_time, snap_time + 1, (snap_time + S.time[S.last_lsn]) / 2,
                       S.time[S.last_lsn]};
    for (size_t i = 0; i < sizeof(after) / sizeof(after[0]); i++) {
        uint64_t want = last_lsn_at(after[i]);
        snapshot_recover_opts o = recover_opts(true, 0);
        o.stop_time_ms = after[i];
        cr_assert_eq(recover_digest(&o, &rep, want), S.digest[want], "stop_time %" PRId64,
                     after[i]);
        cr_assert(rep.had_snapshot);
    }
    /* Before it: from scratch. */
    int64_t before[] = {S.time[1], S.time[h.snap_lsn / 2], snap_time - 1};
    for (size_t i = 0; i < sizeof(before) / sizeof(before[0]); i++) {
        uint64_t want = last_lsn_at(before[i]);
        cr_assert_lt(want, h.snap_lsn);
        snapshot_recover_opts o = recover_opts(true, 0);
        o.stop_time_ms = before[i];
        cr_assert_eq(recover_digest(&o, &rep, want), S.digest[want], "stop_time %" PRId64,
                     before[i]);
        cr_assert(!rep.had_snapshot);
        cr_assert_eq(rep.stored_snapshot_lsn, h.snap_lsn);
    }
    shard_close(&S);
}

Test(snapshot, recover_stops_at_an_unknown_record_type)
{
    history h;
    build_history(&h, 300, 0, 150);
    cr_assert_eq(h.other_lsn, 150u);
    snapshot_recover_opts o = recover_opts(true, 0);
    snapshot_recovery rep;
    engine *e = NULL;
    int rc = snapshot_recover(&o, &e, &rep);
    cr_assert_eq(rc, SNAPSHOT_EREPLAY, "got %d (%s)", rc, snapshot_strerror(rc));
    cr_assert_null(e);
    cr_assert_not_null(strstr(rep.error, "LSN 150 "), "error text: %s", rep.error);

    /* Before it, nothing is wrong. */
    o = recover_opts(true, 149);
    cr_assert_eq(recover_digest(&o, &rep, 149), S.digest[149]);
    shard_close(&S);
}

typedef struct other_seen {
    int calls;
    uint64_t lsn;
    uint16_t type;
    int64_t time_ms;
    char payload[64];
    int ret; /* what the callback answers */
} other_seen;

static int other_cb(void *arg, const wal_record *rec)
{
    other_seen *o = arg;
    o->calls++;
    o->lsn = rec->lsn;
    o->type = rec->type;
    o->time_ms = rec->time_ms;
    size_t n =
        rec->payload_len < sizeof(o->payload) - 1 ? rec->payload_len : sizeof(o->payload) - 1;
    memcpy(o->payload, rec->payload, n);
    o->payload[n] = '\0';
    return o->ret;
}

Test(snapshot, recover_passes_other_records_to_the_callback)
{
    history h;
    build_history(&h, 300, 100, 150);
    other_seen seen = {0};
    snapshot_recover_opts o = recover_opts(true, 0);
    o.other_cb = other_cb;
    o.arg = &seen;
    snapshot_recovery rep;
    cr_assert_eq(recover_digest(&o, &rep, S.last_lsn), engine_digest(S.e));
    cr_assert_eq(seen.calls, 1);
    cr_assert_eq(seen.lsn, 150u);
    cr_assert_eq(seen.type, OTHER_TYPE);
    cr_assert_eq(seen.time_ms, S.time[150]);
    cr_assert_str_eq(seen.payload, "catalog: screen 4 renamed");
    cr_assert(rep.had_snapshot);
    cr_assert_eq(rep.replayed, S.last_lsn - h.snap_lsn); /* the callback's record counts */
    shard_close(&S);
}

/* A callback that refuses its record stops recovery with an error: whatever
 * nonzero value it returns, recovery must not report success with the rest
 * of the log silently left out. */
Test(snapshot, recover_fails_when_the_callback_refuses)
{
    history h;
    build_history(&h, 300, 0, 150);
    int answers[] = {-EPROTO, 1, 7};
    for (size_t i = 0; i < sizeof(answers) / sizeof(answers[0]); i++) {
        other_seen seen = {.ret = answers[i]};
        snapshot_recover_opts o = recover_opts(true, 0);
        o.other_cb = other_cb;
        o.arg = &seen;
        snapshot_recovery rep;
        engine *e = NULL;
        int rc = snapshot_recover(&o, &e, &rep);
        cr_assert_eq(seen.calls, 1);
        if (e != NULL) {
            engine_destroy(e);
            cr_assert_fail("callback answered %d: recovery returned %d and an engine at LSN "
                           "%" PRIu64 " of %" PRIu64,
                           answers[i], rc, rep.last_lsn, S.last_lsn);
        }
        cr_assert_neq(rc, 0, "callback answered %d: recovery succeeded", answers[i]);
        cr_assert_not_null(strstr(rep.error, "LSN 150 "), "error text: %s", rep.error);
    }
    shard_close(&S);
}

/* ---- Scheduler ------------------------------------------------------------------------- */

static snapshot_sched_stats sched_stats(const shard *s)
{
    snapshot_sched_stats st;
    snapshot_scheduler_stats(s->sc, &st);
    return st;
}

static void small_catalog(shard *s)
{
    op_layout(s, 1, 6, 12);
    op_showtime(s, 1, 1);
}

Test(snapshot, scheduler_writes_only_durable_snapshots)
{
    shard_open_wal(&S, "shard-0", 0);
    shard_open_scheduler(&S, NULL);
    small_catalog(&S);
    uint32_t a[] = {1, 2}, b[] = {3}, c[] = {4}, d[] = {60};
    uint64_t h1 = op_hold(&S, 1, 1, a, 2);
    op_hold(&S, 1, 2, b, 1);
    op_confirm(&S, h1, 1, NULL);
    wait_durable(&S, S.last_lsn); /* LSN 5 */
    cr_assert_eq(S.last_lsn, 5u);
    cr_assert(!snapshot_scheduler_busy(S.sc));

    /* Two more records, not yet durable, then the snapshot. */
    uint64_t h3 = op_hold(&S, 1, 3, c, 1);
    op_release(&S, h3, 3);
    uint64_t take_lsn = S.last_lsn;
    cr_assert_eq(take_lsn, 7u);
    cr_assert_eq(wal_writer_last_lsn(S.w), take_lsn);
    cr_assert_lt(wal_writer_durable_lsn(S.w), take_lsn);
    cr_assert_eq(snapshot_scheduler_take(S.sc), 0);
    cr_assert(snapshot_scheduler_busy(S.sc));
    snapshot_sched_stats st = sched_stats(&S);
    cr_assert_eq(st.taken, 1u);
    cr_assert_eq(st.written, 0u);
    cr_assert_eq(st.failed, 0u);
    cr_assert_eq(st.last_lsn, 0u);
    cr_assert_eq(st.last_items, 1u + 1 + 1 + 1 + 1); /* meta, layout, showtime, a hold, a booking */

    /* A change after the take is not in it. */
    op_hold(&S, 1, 4, d, 1);

    /* Nothing reaches LMDB while the WAL has not caught up, even when told
     * about a durable LSN just below the snapshot's. */
    snapshot_scheduler_durable(S.sc, take_lsn - 1);
    sleep_ms(100);
    cr_assert_eq(store_lsn(S.store), 0u, "a snapshot was written before its LSN was durable");
    cr_assert(snapshot_scheduler_busy(S.sc));
    cr_assert_eq(sched_stats(&S).written, 0u);

    /* The WAL reports it durable: the write happens. */
    wait_durable(&S, S.last_lsn);
    wait_idle(&S);
    cr_assert_eq(store_lsn(S.store), take_lsn);
    st = sched_stats(&S);
    cr_assert_eq(st.taken, 1u);
    cr_assert_eq(st.written, 1u);
    cr_assert_eq(st.failed, 0u);
    cr_assert_eq(st.last_lsn, take_lsn);
    cr_assert_gt(st.last_write_ns, 0u);

    uint64_t digest, lsn;
    int64_t clock_ms;
    cr_assert_eq(store_load(S.store, &S.cfg, &digest, &lsn, &clock_ms), 0);
    cr_assert_neq(S.digest[take_lsn], S.digest[S.last_lsn]);
    cr_assert_eq(digest, S.digest[take_lsn]);
    cr_assert_eq(lsn, take_lsn);
    cr_assert_eq(clock_ms, S.time[take_lsn]);

    /* The next one is incremental and covers the later change. */
    cr_assert_eq(snapshot_scheduler_take(S.sc), 0);
    wait_idle(&S);
    st = sched_stats(&S);
    cr_assert_eq(st.taken, 2u);
    cr_assert_eq(st.written, 2u);
    cr_assert_eq(st.last_lsn, S.last_lsn);
    cr_assert_eq(store_load(S.store, &S.cfg, &digest, NULL, NULL), 0);
    cr_assert_eq(digest, engine_digest(S.e));
    shard_close(&S);
}

Test(snapshot, scheduler_tick_by_interval)
{
    shard_open_wal(&S, "shard-0", 0);
    snapshot_policy pol = {.wal_bytes = UINT64_C(1) << 40, .interval_ms = 1000};
    shard_open_scheduler(&S, &pol);
    small_catalog(&S);
    wait_durable(&S, S.last_lsn);

    const uint64_t t0 = 500000;
    cr_assert_eq(snapshot_scheduler_tick(S.sc, t0), 0);
    cr_assert_eq(snapshot_scheduler_tick(S.sc, t0 + 999), 0);
    cr_assert_eq(sched_stats(&S).taken, 0u);
    cr_assert_eq(snapshot_scheduler_tick(S.sc, t0 + 1000), 1);
    cr_assert_eq(sched_stats(&S).taken, 1u);
    wait_idle(&S);
    cr_assert_eq(sched_stats(&S).written, 1u);
    cr_assert_eq(store_lsn(S.store), S.last_lsn);

    /* No new records: due, but nothing to snapshot. */
    cr_assert_eq(snapshot_scheduler_tick(S.sc, t0 + 2000), 0);
    cr_assert_eq(snapshot_scheduler_tick(S.sc, t0 + 9000), 0);
    cr_assert_eq(sched_stats(&S).taken, 1u);

    /* A new record: the interval counts from the last due tick. */
    uint32_t a[] = {7};
    op_hold(&S, 1, 1, a, 1);
    wait_durable(&S, S.last_lsn);
    cr_assert_eq(snapshot_scheduler_tick(S.sc, t0 + 9999), 0);
    cr_assert_eq(snapshot_scheduler_tick(S.sc, t0 + 10000), 1);
    wait_idle(&S);
    snapshot_sched_stats st = sched_stats(&S);
    cr_assert_eq(st.taken, 2u);
    cr_assert_eq(st.written, 2u);
    cr_assert_eq(st.last_lsn, S.last_lsn);
    shard_close(&S);
}

/* Holds and releases one seat: two small records. */
static void churn(shard *s)
{
    uint32_t seat = (uint32_t)(s->last_lsn % 60);
    uint64_t h = op_hold(s, 1, 1, &seat, 1);
    op_release(s, h, 1);
}

/* Churns until a tick takes a snapshot; every tick before must not. Returns
 * the WAL bytes at the take. */
static uint64_t tick_until_taken(shard *s, uint64_t *t, uint64_t base, uint64_t limit)
{
    int quiet = 0;
    for (;;) {
        churn(s);
        wait_durable(s, s->last_lsn);
        uint64_t bytes = wal_writer_bytes(s->w);
        int want = bytes - base >= limit ? 1 : 0;
        int got = snapshot_scheduler_tick(s->sc, (*t)++);
        cr_assert_eq(got, want,
                     "tick at %" PRIu64 " WAL bytes since the last take (limit %" PRIu64
                     ") returned %d",
                     bytes - base, limit, got);
        if (got == 1) {
            cr_assert_geq(quiet, 3, "the limit was crossed too soon to prove anything");
            return bytes;
        }
        quiet++;
    }
}

Test(snapshot, scheduler_tick_by_wal_bytes)
{
    shard_open_wal(&S, "shard-0", 0);
    const uint64_t limit = 2048;
    snapshot_policy pol = {.wal_bytes = limit, .interval_ms = UINT64_C(1) << 40};
    shard_open_scheduler(&S, &pol);
    uint64_t t = 1000;
    cr_assert_eq(snapshot_scheduler_tick(S.sc, t++), 0); /* nothing written yet */
    small_catalog(&S);
    wait_durable(&S, S.last_lsn);
    cr_assert_lt(wal_writer_bytes(S.w), limit);
    cr_assert_eq(snapshot_scheduler_tick(S.sc, t++), 0);

    uint64_t at = tick_until_taken(&S, &t, 0, limit);
    cr_assert_eq(sched_stats(&S).taken, 1u);
    wait_idle(&S);
    cr_assert_eq(store_lsn(S.store), S.last_lsn);

    /* The count restarts at the take. */
    tick_until_taken(&S, &t, at, limit);
    wait_idle(&S);
    snapshot_sched_stats st = sched_stats(&S);
    cr_assert_eq(st.taken, 2u);
    cr_assert_eq(st.written, 2u);

    /* Nothing new since: no snapshot, however long it has been. */
    cr_assert_eq(snapshot_scheduler_tick(S.sc, t + (UINT64_C(1) << 41)), 0);
    cr_assert_eq(sched_stats(&S).taken, 2u);
    shard_close(&S);
}

Test(snapshot, scheduler_take_while_pending_is_busy)
{
    shard_open_wal(&S, "shard-0", 0);
    snapshot_policy pol = {.wal_bytes = 1, .interval_ms = 1};
    shard_open_scheduler(&S, &pol);
    small_catalog(&S); /* not durable yet */
    cr_assert_eq(snapshot_scheduler_take(S.sc), 0);
    cr_assert(snapshot_scheduler_busy(S.sc));
    cr_assert_eq(snapshot_scheduler_take(S.sc), SNAPSHOT_EBUSY);
    cr_assert_eq(snapshot_scheduler_tick(S.sc, 100), 0);
    cr_assert_eq(snapshot_scheduler_tick(S.sc, 100000), 0);
    cr_assert_eq(sched_stats(&S).taken, 1u);
    wait_durable(&S, S.last_lsn);
    wait_idle(&S);
    snapshot_sched_stats st = sched_stats(&S);
    cr_assert_eq(st.taken, 1u);
    cr_assert_eq(st.written, 1u);
    cr_assert_eq(st.last_lsn, S.last_lsn);
    cr_assert_eq(snapshot_scheduler_take(S.sc), 0); /* free again */
    wait_idle(&S);
    cr_assert_eq(sched_stats(&S).written, 2u);
    shard_close(&S);
}

/* First LSNs of the segments in DIR/wal, ascending. */
static size_t wal_segments(const shard *s, uint64_t *firsts, size_t cap)
{
    char dir[PATH_LEN + 8];
    snprintf(dir, sizeof(dir), "%s/wal", s->dir);
    DIR *d = opendir(dir);
    cr_assert_not_null(d);
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        cr_assert_eq(strlen(de->d_name), 20u, "stray file %s", de->d_name);
        cr_assert_lt(n, cap);
        firsts[n++] = strtoull(de->d_name, NULL, 16);
    }
    closedir(d);
    for (size_t i = 1; i < n; i++) { /* insertion sort */
        for (size_t j = i; j > 0 && firsts[j - 1] > firsts[j]; j--) {
            uint64_t x = firsts[j];
            firsts[j] = firsts[j - 1];
            firsts[j - 1] = x;
        }
    }
    return n;
}

static bool same_ids(const uint64_t *a, size_t na, const uint64_t *b, size_t nb)
{
    return na == nb && (na == 0 || memcmp(a, b, na * sizeof(*a)) == 0);
}

Test(snapshot, scheduler_drops_wal_segments_below_the_snapshot)
{
    shard_open_wal(&S, "shard-0", 1024);
    shard_open_scheduler(&S, NULL);
    small_catalog(&S);
    for (int i = 0; i < 30; i++)
        churn(&S);
    /* The snapshot's LSN, then more records in the same batch, so the
     * segment holding it also holds later ones. */
    cr_assert_eq(snapshot_scheduler_take(S.sc), 0);
    uint64_t L = S.last_lsn;
    for (int i = 0; i < 15; i++)
        churn(&S);
    /* Everything durable, but the scheduler not told yet: the segments as
     * they are before any drop. */
    S.forward = false;
    wait_durable(&S, S.last_lsn);
    cr_assert(snapshot_scheduler_busy(S.sc));
    uint64_t before[256];
    size_t nb = wal_segments(&S, before, 256);
    uint64_t expect[256];
    size_t ne = 0, dropped = 0;
    for (size_t i = 0; i < nb; i++) {
        bool whole_below = i + 1 < nb && before[i + 1] - 1 <= L;
        if (whole_below)
            dropped++;
        else
            expect[ne++] = before[i];
    }
    cr_assert_geq(dropped, 2u, "the history is too short to drop anything");
    cr_assert_geq(ne, 2u, "the tail after the snapshot fits one segment");
    cr_assert_leq(expect[0], L, "the segment holding the snapshot's LSN must stay");

    S.forward = true;
    snapshot_scheduler_durable(S.sc, S.durable);
    wait_idle(&S);
    cr_assert_eq(store_lsn(S.store), L);
    uint64_t after[256];
    size_t na = 0;
    int64_t deadline = mono_ms() + 3000;
    do { /* the writer thread deletes them */
        na = wal_segments(&S, after, 256);
        if (same_ids(after, na, expect, ne))
            break;
        sleep_ms(5);
    } while (mono_ms() < deadline);
    cr_assert(same_ids(after, na, expect, ne),
              "%zu segments left, expected %zu (from %zu, snapshot at LSN %" PRIu64 ")", na, ne, nb,
              L);

    /* The WAL goes on in its active segment; recovery uses the snapshot. */
    for (int i = 0; i < 5; i++)
        churn(&S);
    wait_durable(&S, S.last_lsn);
    uint64_t live = engine_digest(S.e), last = S.last_lsn;
    snapshot_scheduler_close(S.sc);
    S.sc = NULL;
    snapshot_store_close(S.store);
    S.store = NULL;
    cr_assert_eq(wal_writer_close(S.w, on_closed, &S), 0);
    cr_assert(run_until(&S, is_closed, 5000));
    S.w = NULL;
    snapshot_recover_opts o = recover_opts(true, 0);
    snapshot_recovery rep;
    cr_assert_eq(recover_digest(&o, &rep, last), live);
    cr_assert(rep.had_snapshot);
    cr_assert_eq(rep.snapshot_lsn, L);
    /* Before the snapshot the log is gone. */
    o = recover_opts(true, L - 1);
    engine *e = NULL;
    int rc = snapshot_recover(&o, &e, &rep);
    cr_assert_eq(rc, SNAPSHOT_ETOOOLD, "got %d (%s)", rc, snapshot_strerror(rc));
    cr_assert_null(e);
    shard_close(&S);
}

/* The documented shutdown order: final snapshot, run the loop until it is
 * written (the still-open WAL makes its LSN durable), close the scheduler,
 * then close the WAL. */
Test(snapshot, shutdown_final_snapshot_before_wal_close)
{
    shard_open_wal(&S, "shard-0", 0);
    shard_open_scheduler(&S, NULL);
    small_catalog(&S);
    uint32_t a[] = {5};
    op_hold(&S, 1, 1, a, 1);
    cr_assert_eq(snapshot_scheduler_take(S.sc), 0);
    cr_assert(snapshot_scheduler_busy(S.sc));
    for (int i = 0; i < 5000 && snapshot_scheduler_busy(S.sc); i++)
        uv_run(&S.loop, UV_RUN_ONCE);
    cr_assert(!snapshot_scheduler_busy(S.sc), "the final snapshot was never written");
    cr_assert_eq(S.durable, S.last_lsn);
    snapshot_sched_stats st = sched_stats(&S);
    cr_assert_eq(st.written, 1u);
    cr_assert_eq(st.last_lsn, S.last_lsn);
    cr_assert_eq(store_lsn(S.store), S.last_lsn);
    snapshot_scheduler_close(S.sc);
    S.sc = NULL;
    cr_assert_eq(wal_writer_close(S.w, on_closed, &S), 0);
    cr_assert(run_until(&S, is_closed, 5000), "closed %d", S.closed);
    S.w = NULL;
    shard_close(&S);
}

/* ---- Errors ------------------------------------------------------------------------------ */

Test(snapshot, strerror_names_every_code)
{
    const int codes[] = {SNAPSHOT_EFORMAT, SNAPSHOT_ESHARD,  SNAPSHOT_ECORRUPT, SNAPSHOT_EREPLAY,
                         SNAPSHOT_EWAL,    SNAPSHOT_ETOOOLD, SNAPSHOT_EBUSY};
    const char *seen[8];
    const char *unknown = snapshot_strerror(-31999);
    cr_assert_not_null(unknown);
    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
        const char *m = snapshot_strerror(codes[i]);
        cr_assert_not_null(m);
        cr_assert_gt(strlen(m), 5u);
        cr_assert_str_neq(m, unknown, "code %d has no text", codes[i]);
        for (size_t j = 0; j < i; j++)
            cr_assert_str_neq(m, seen[j], "codes %d and %d share a text", codes[i], codes[j]);
        seen[i] = m;
    }
    cr_assert_str_eq(snapshot_strerror(-ENOENT), strerror(ENOENT));
    cr_assert_str_eq(snapshot_strerror(-ENOSPC), strerror(ENOSPC));
    cr_assert_str_eq(snapshot_strerror(WAL_ECORRUPT), wal_strerror(WAL_ECORRUPT));
    cr_assert_str_neq(snapshot_strerror(0), unknown);
}

/* LMDB's codes (MDB_KEYEXIST -30799 .. MDB_LAST_ERRCODE -30780) pass through
 * as the header promises, described by mdb_strerror. */
Test(snapshot, strerror_describes_lmdb_codes)
{
    const int codes[] = {MDB_KEYEXIST, MDB_NOTFOUND,    MDB_CORRUPTED,
                         MDB_MAP_FULL, MDB_MAP_RESIZED, MDB_LAST_ERRCODE};
    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++)
        cr_assert_str_eq(snapshot_strerror(codes[i]), mdb_strerror(codes[i]), "LMDB code %d",
                         codes[i]);
}
