/*
 * replay_tool_test.c - drives the real usher-replay binary (USHER_REPLAY) on
 * a data directory written by a real engine, WAL writer and snapshot store.
 *
 * The fixture: one shard (DATA/shard-0) built from a deterministic stream of
 * random operations (holds, best-available, confirms, cancels, releases,
 * extensions, expiries, plus layout and showtime creation and deletion),
 * every record journaled into 8 KiB WAL segments, and one full snapshot in
 * the middle. The engine digest after every LSN is kept: it is the state
 * dump taken at that moment, and every rewind must reproduce it exactly.
 * Every test builds its own copy of the fixture (Criterion runs each test in
 * its own process) in its own mkdtemp directory and removes it afterwards.
 */
#include "engine.h"
#include "snapshot.h"
#include "wal.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_RECORDS    4096
#define TARGET_RECORDS 1200
#define SNAPSHOT_AT    600 /* the snapshot is taken at the first LSN >= this */
#define SEGMENT_BYTES  (8 * 1024)
#define ROWS           6
#define COLS           12
#define USERS          12
#define SHOWTIMES      3
#define MAX_SEGMENTS   256
#define PATH_LEN       512

/* 2026-03-14T09:00:00Z: record times are realistic wall-clock milliseconds. */
#define START_MS INT64_C(1773478800000)

/* ---- The fixture --------------------------------------------------------------- */

typedef struct fixture {
    char root[64];     /* mkdtemp directory: everything lives below it */
    char data[128];    /* ROOT/data: the data directory under test */
    char wal_dir[160]; /* ROOT/data/shard-0/wal */
    uint64_t last_lsn; /* last record journaled */
    uint64_t snap_lsn; /* LSN of the stored snapshot */
    uint64_t confirms; /* BOOKING_CONFIRM records */
    uint64_t by_type[16];
    uint64_t digest[MAX_RECORDS + 1]; /* engine_digest() right after LSN i (0: empty engine) */
    int64_t time[MAX_RECORDS + 1];    /* time_ms of LSN i */
    uint16_t type[MAX_RECORDS + 1];   /* record type of LSN i */
    int out_seq;                      /* names fresh --out directories */
} fixture;

static fixture fx;

static uint64_t rng_state;
static uint64_t rng(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static engine_config fixture_config(void)
{
    engine_config cfg;
    engine_config_default(&cfg);
    cfg.holds_max = 4096;
    cfg.bookings_max = 1u << 16;
    cfg.showtimes_max = 16;
    cfg.layouts_max = 4;
    cfg.hold_ttl_ms = 60000;
    cfg.hold_max_lifetime_ms = 180000;
    cfg.id_prefix = 0;
    return cfg;
}

typedef struct builder {
    uv_loop_t loop;
    wal_writer *w;
    engine *e;
    int64_t now_ms;
    uint64_t durable;
    int failed;
    bool closed;
} builder;

static void on_durable(wal_writer *w, uint64_t lsn, void *arg)
{
    (void)w;
    builder *b = arg;
    b->durable = lsn;
}

static void on_failed(wal_writer *w, int err, void *arg)
{
    (void)w;
    builder *b = arg;
    b->failed = err;
}

static void on_closed(wal_writer *w, void *arg)
{
    (void)w;
    builder *b = arg;
    b->closed = true;
}

static void wait_durable(builder *b, uint64_t lsn)
{
    while (b->durable < lsn) {
        cr_assert_eq(b->failed, 0, "WAL writer failed: %s", wal_strerror(b->failed));
        wal_writer_flush(b->w);
        uv_run(&b->loop, UV_RUN_ONCE);
    }
}

/* Journals a record the engine just produced and remembers the state after it. */
static void journal(builder *b, const engine_record *rec)
{
    int64_t lsn = snapshot_record_append(b->w, rec);
    cr_assert_eq(lsn, (int64_t)fx.last_lsn + 1, "append returned %" PRId64, lsn);
    cr_assert_leq(lsn, MAX_RECORDS);
    fx.last_lsn = (uint64_t)lsn;
    fx.type[lsn] = (uint16_t)rec->type;
    fx.time[lsn] = rec->time_ms;
    fx.digest[lsn] = engine_digest(b->e);
    fx.by_type[rec->type]++;
    if (rec->type == ENGINE_REC_BOOKING_CONFIRM)
        fx.confirms++;
    if (lsn % 37 == 0) /* realistic group commits, not one giant batch */
        wait_durable(b, (uint64_t)lsn);
}

static void create_layout(builder *b, uint64_t id, int rows, int cols)
{
    engine_seat_spec seats[ROWS * COLS];
    char row_labels[ROWS][ENGINE_LABEL_MAX];
    for (int r = 0; r < rows; r++) {
        snprintf(row_labels[r], ENGINE_LABEL_MAX, "%c", 'A' + r);
        for (int k = 0; k < cols; k++) {
            engine_seat_spec *s = &seats[r * cols + k];
            memset(s, 0, sizeof(*s));
            snprintf(s->label, ENGINE_LABEL_MAX, "%c%d", 'A' + r, k + 1);
            s->row = (uint16_t)r;
            s->col = (uint16_t)(k + (k >= cols / 2)); /* an aisle in the middle */
            s->category = (uint8_t)(r >= rows / 2);
            if (r == 0 && k == 0)
                s->flags = ENGINE_SEAT_FLAG_ACCESSIBLE;
            if (r == 0 && k == 1)
                s->flags = ENGINE_SEAT_FLAG_COMPANION;
            if (r == 1 && k == cols - 1)
                s->flags = ENGINE_SEAT_FLAG_BLOCKED;
        }
    }
    engine_layout_spec spec = {.seat_count = (uint32_t)(rows * cols),
                               .seats = seats,
                               .row_count = (uint32_t)rows,
                               .row_labels = (const char(*)[ENGINE_LABEL_MAX])row_labels,
                               .category_count = 2,
                               .best_row = (uint32_t)(rows - 2)};
    strcpy(spec.category_names[0], "silver");
    strcpy(spec.category_names[1], "gold");
    engine_record rec;
    engine_problem problem;
    int rc = engine_layout_create(b->e, b->now_ms, id, &spec, &problem, &rec);
    cr_assert_eq(rc, 0, "layout %" PRIu64 ": %d", id, rc);
    journal(b, &rec);
}

static void create_showtime(builder *b, uint64_t id, uint64_t layout, int64_t start_ms)
{
    uint32_t prices[2] = {20000 + (uint32_t)id * 1000, 35000};
    engine_record rec;
    int rc = engine_showtime_create(b->e, b->now_ms, id, layout, start_ms, prices, 2, &rec);
    cr_assert_eq(rc, 0, "showtime %" PRIu64 ": %d", id, rc);
    journal(b, &rec);
}

/* One random operation (after sweeping expired holds), journaled if it succeeded. */
static void step(builder *b)
{
    engine *e = b->e;
    engine_record rec;
    b->now_ms += (int64_t)(rng() % 3000);
    engine_record expired[32];
    size_t n;
    do {
        n = engine_holds_expire(e, b->now_ms, expired, NULL, 32);
        for (size_t i = 0; i < n; i++)
            journal(b, &expired[i]);
    } while (n == 32);
    uint64_t user = 1 + rng() % USERS, st = 1 + rng() % SHOWTIMES;
    uint64_t holds[8], bookings[8];
    uint32_t nh = engine_user_holds(e, user, 0, holds, 8);
    uint32_t nb = engine_user_bookings(e, user, 0, bookings, 8);
    nh = nh < 8 ? nh : 8;
    nb = nb < 8 ? nb : 8;
    switch (rng() % 9) {
    case 0:
    case 1: {
        uint32_t want[4], k = 1 + (uint32_t)(rng() % 4);
        for (uint32_t i = 0; i < k; i++)
            want[i] = (uint32_t)(rng() % (ROWS * COLS));
        if (engine_hold_place(e, b->now_ms, st, user, want, k, NULL, NULL, &rec) != ENGINE_OK)
            return;
        break;
    }
    case 2:
        if (engine_hold_best(e, b->now_ms, st, user, 1 + (uint32_t)(rng() % 4),
                             (uint32_t)(rng() % 2), (uint32_t)(rng() % 2), &rec) != ENGINE_OK)
            return;
        break;
    case 3:
    case 4:
    case 5: {
        if (nh == 0)
            return;
        uint64_t booking;
        bool replayed;
        char key[24];
        int klen = rng() % 2 ? snprintf(key, sizeof(key), "key-%" PRIu64, rng() % 100000) : 0;
        engine_payment pay = (engine_payment)(1 + rng() % 3);
        if (engine_booking_confirm(e, b->now_ms, holds[rng() % nh], user, pay, key, (uint32_t)klen,
                                   &booking, &replayed, &rec) != ENGINE_OK ||
            replayed)
            return;
        break;
    }
    case 6:
        if (nb == 0 || engine_booking_cancel(e, b->now_ms, bookings[rng() % nb], user, NULL,
                                             &rec) != ENGINE_OK)
            return;
        break;
    case 7:
        if (nh == 0 ||
            engine_hold_release(e, b->now_ms, holds[rng() % nh], user, &rec) != ENGINE_OK)
            return;
        break;
    default:
        if (nh == 0 || engine_hold_extend(e, b->now_ms, holds[rng() % nh], user, &rec) != ENGINE_OK)
            return;
        break;
    }
    journal(b, &rec);
}

static void path_join(char *out, const char *a, const char *b)
{
    int n = snprintf(out, PATH_LEN, "%s/%s", a, b);
    cr_assert(n > 0 && n < PATH_LEN, "path too long: %s/%s", a, b);
}

static void build_fixture(void)
{
    memset(&fx, 0, sizeof(fx));
    snprintf(fx.root, sizeof(fx.root), "/tmp/usher-replay-XXXXXX");
    cr_assert_not_null(mkdtemp(fx.root), "mkdtemp: %s", strerror(errno));
    snprintf(fx.data, sizeof(fx.data), "%s/data", fx.root);
    snprintf(fx.wal_dir, sizeof(fx.wal_dir), "%s/shard-0/wal", fx.data);
    char shard_dir[PATH_LEN], snap_dir[PATH_LEN];
    path_join(shard_dir, fx.data, "shard-0");
    path_join(snap_dir, shard_dir, "snapshot");
    cr_assert_eq(mkdir(fx.data, 0755), 0);
    cr_assert_eq(mkdir(shard_dir, 0755), 0);

    rng_state = 20260314;
    static builder b;
    memset(&b, 0, sizeof(b));
    b.now_ms = START_MS;
    engine_config cfg = fixture_config();
    cr_assert_eq(engine_create(&cfg, &b.e), 0);
    fx.digest[0] = engine_digest(b.e);
    cr_assert_eq(uv_loop_init(&b.loop), 0);
    wal_writer_config wc = {.dir = fx.wal_dir,
                            .shard = 0,
                            .next_lsn = 1,
                            .segment_bytes = SEGMENT_BYTES,
                            .durable_cb = on_durable,
                            .failed_cb = on_failed,
                            .arg = &b};
    int rc = wal_writer_open(&b.loop, &wc, &b.w);
    cr_assert_eq(rc, 0, "wal_writer_open: %s", wal_strerror(rc));
    snapshot_store *store;
    rc = snapshot_store_open(snap_dir, 0, 64u << 20, &store);
    cr_assert_eq(rc, 0, "snapshot_store_open: %s", snapshot_strerror(rc));

    /* The catalog: layout 1 with three showtimes on sale, and layout 2 with
     * showtime 4, which are deleted again later (so every record type occurs). */
    create_layout(&b, 1, ROWS, COLS);
    create_layout(&b, 2, 2, 4);
    for (uint64_t s = 1; s <= SHOWTIMES; s++)
        create_showtime(&b, s, 1, START_MS + (int64_t)s * 3 * 3600 * 1000 + (s == 3) * 86400000);
    create_showtime(&b, 4, 2, START_MS + 5 * 3600 * 1000);

    bool deleted_showtime = false, deleted_layout = false;
    while (fx.last_lsn < TARGET_RECORDS) {
        step(&b);
        if (fx.snap_lsn == 0 && fx.last_lsn >= SNAPSHOT_AT) {
            /* Snapshot only once the WAL holds everything up to its LSN. */
            wait_durable(&b, fx.last_lsn);
            engine_snapshot *snap;
            cr_assert_eq(engine_snapshot_take(b.e, true, &snap), 0);
            rc = snapshot_store_write(store, snap, fx.last_lsn);
            cr_assert_eq(rc, 0, "snapshot_store_write: %s", snapshot_strerror(rc));
            engine_snapshot_free(snap);
            fx.snap_lsn = fx.last_lsn;
        }
        engine_record rec;
        if (!deleted_showtime && fx.last_lsn >= 400) {
            cr_assert_eq(engine_showtime_delete(b.e, b.now_ms, 4, &rec), ENGINE_OK);
            journal(&b, &rec);
            deleted_showtime = true;
        }
        if (!deleted_layout && fx.last_lsn >= 800) {
            cr_assert_eq(engine_layout_delete(b.e, b.now_ms, 2, &rec), ENGINE_OK);
            journal(&b, &rec);
            deleted_layout = true;
        }
    }
    wait_durable(&b, fx.last_lsn);
    cr_assert_eq(wal_writer_close(b.w, on_closed, &b), 0);
    while (!b.closed)
        uv_run(&b.loop, UV_RUN_ONCE);
    uv_run(&b.loop, UV_RUN_DEFAULT);
    cr_assert_eq(uv_loop_close(&b.loop), 0);
    snapshot_store_close(store);
    engine_destroy(b.e);

    cr_assert_gt(fx.snap_lsn, 0u);
    cr_assert_lt(fx.snap_lsn, fx.last_lsn);
    for (int t = ENGINE_REC_LAYOUT_CREATE; t <= ENGINE_REC_BOOKING_CANCEL; t++)
        cr_assert_gt(fx.by_type[t], 0u, "the fixture has no %s record",
                     engine_record_type_name((engine_record_type)t));
}

static void remove_fixture(void)
{
    if (fx.root[0] == '\0')
        return;
    char cmd[PATH_LEN];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", fx.root);
    cr_assert_eq(system(cmd), 0);
}

/* ---- Running the binary -------------------------------------------------------- */

typedef struct run_result {
    int status; /* exit status, or -signal */
    char *out, *err;
    size_t out_len;
} run_result;

/* Buffers handed out by slurp(): a failed assertion leaves the test early, so
 * whatever is still outstanding is freed by the suite's teardown. */
static void *outstanding[64];

static void track(void *p)
{
    for (size_t i = 0; i < sizeof(outstanding) / sizeof(outstanding[0]); i++) {
        if (outstanding[i] == NULL) {
            outstanding[i] = p;
            return;
        }
    }
    cr_assert_fail("too many outstanding buffers");
}

static void release(void *p)
{
    for (size_t i = 0; p != NULL && i < sizeof(outstanding) / sizeof(outstanding[0]); i++) {
        if (outstanding[i] == p)
            outstanding[i] = NULL;
    }
    free(p);
}

static void release_all(void)
{
    for (size_t i = 0; i < sizeof(outstanding) / sizeof(outstanding[0]); i++) {
        free(outstanding[i]);
        outstanding[i] = NULL;
    }
}

static char *slurp(const char *path, size_t *len_out)
{
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "%s: %s", path, strerror(errno));
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    cr_assert_not_null(buf);
    size_t n;
    while ((n = fread(buf + len, 1, cap - len - 1, f)) > 0) {
        len += n;
        if (cap - len < 2) {
            cap *= 2;
            buf = realloc(buf, cap);
            cr_assert_not_null(buf);
        }
    }
    fclose(f);
    buf[len] = '\0';
    track(buf);
    if (len_out != NULL)
        *len_out = len;
    return buf;
}

static const char *replay_bin(void)
{
    const char *bin = getenv("USHER_REPLAY");
    cr_assert_not_null(bin, "USHER_REPLAY is not set (run through meson test)");
    return bin;
}

/* Runs `usher-replay ARGS` (ARGS is shell text: the paths are plain). */
static run_result run(const char *fmt, ...)
{
    char args[2048], cmd[4096], out_path[PATH_LEN], err_path[PATH_LEN];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof(args), fmt, ap);
    va_end(ap);
    path_join(out_path, fx.root, "run.stdout");
    path_join(err_path, fx.root, "run.stderr");
    snprintf(cmd, sizeof(cmd), "exec '%s' %s >'%s' 2>'%s'", replay_bin(), args, out_path, err_path);
    int st = system(cmd);
    cr_assert_neq(st, -1, "system: %s", strerror(errno));
    run_result r = {.status = WIFEXITED(st) ? WEXITSTATUS(st) : -WTERMSIG(st)};
    r.out = slurp(out_path, &r.out_len);
    r.err = slurp(err_path, NULL);
    return r;
}

static void run_free(run_result *r)
{
    release(r->out);
    release(r->err);
}

#define SHOWF    "\n--- stdout:\n%.3000s\n--- stderr:\n%.3000s"
#define SHOWA(r) (r).out, (r).err

static void expect_status(const run_result *r, int status, const char *what)
{
    cr_assert_eq(r->status, status, "%s: exit status %d, want %d" SHOWF, what, r->status, status,
                 SHOWA(*r));
}

static bool exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

static void fresh_out(char *out)
{
    snprintf(out, PATH_LEN, "%s/out-%d", fx.root, fx.out_seq++);
}

static void expect_nothing_written(const char *out)
{
    char partial[PATH_LEN + 16];
    snprintf(partial, sizeof(partial), "%s.partial", out);
    cr_assert(!exists(out), "%s exists after a failed recover", out);
    cr_assert(!exists(partial), "%s exists after a failed recover", partial);
}

/* Checks a recovered data directory: state equal to the dump at `lsn`, and verify ok. */
static void check_recovered(const char *out, uint64_t lsn, const char *what)
{
    char shard_dir[PATH_LEN + 16];
    snprintf(shard_dir, sizeof(shard_dir), "%s/shard-0", out);
    snapshot_recover_opts ro = {
        .shard_dir = shard_dir, .shard = 0, .cfg = fixture_config(), .use_snapshot = true};
    snapshot_recovery rep;
    engine *e = NULL;
    int rc = snapshot_recover(&ro, &e, &rep);
    cr_assert_eq(rc, 0, "%s: snapshot_recover on %s: %s (%s)", what, out, snapshot_strerror(rc),
                 rep.error);
    cr_assert_eq(rep.last_lsn, lsn, "%s: recovered to LSN %" PRIu64 ", want %" PRIu64, what,
                 rep.last_lsn, lsn);
    cr_assert(rep.had_snapshot, "%s: the recovered directory has no snapshot", what);
    cr_assert_eq(rep.replayed, 0u, "%s: the recovered directory has WAL records", what);
    cr_assert_eq(engine_digest(e), fx.digest[lsn],
                 "%s: digest %016" PRIx64 " differs from the dump at LSN %" PRIu64 " (%016" PRIx64
                 ")",
                 what, engine_digest(e), lsn, fx.digest[lsn]);
    engine_check(e);
    engine_destroy(e);

    run_result v = run("--data-dir '%s' verify", out);
    expect_status(&v, 0, "verify of a recovered directory");
    run_free(&v);
}

static void recover_to_lsn(uint64_t lsn)
{
    char out[PATH_LEN], what[64];
    fresh_out(out);
    snprintf(what, sizeof(what), "recover --to-lsn %" PRIu64, lsn);
    run_result r =
        run("--data-dir '%s' recover --to-lsn %" PRIu64 " --shard 0 --out '%s'", fx.data, lsn, out);
    expect_status(&r, 0, what);
    char line[128];
    snprintf(line, sizeof(line), "shard 0: recovered to LSN %" PRIu64 " ", lsn);
    cr_assert_not_null(strstr(r.out, line), "%s: no '%s'" SHOWF, what, line, SHOWA(r));
    snprintf(line, sizeof(line), "digest %016" PRIx64 "\n", fx.digest[lsn]);
    cr_assert_not_null(strstr(r.out, line), "%s: no '%s'" SHOWF, what, line, SHOWA(r));
    run_free(&r);
    check_recovered(out, lsn, what);
}

/* ---- Times ------------------------------------------------------------------------ */

/* ISO 8601 for `ms` shown in the zone `offset_min` east of UTC (0: "Z"). */
static void iso8601(int64_t ms, int offset_min, bool with_ms, char *out, size_t len)
{
    int64_t local = ms + (int64_t)offset_min * 60000;
    time_t secs = (time_t)(local / 1000);
    struct tm tm;
    cr_assert_not_null(gmtime_r(&secs, &tm));
    char base[32], frac[16] = "", zone[16] = "Z";
    strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
    if (with_ms)
        snprintf(frac, sizeof(frac), ".%03d", (int)(local % 1000));
    if (offset_min != 0) {
        int a = offset_min < 0 ? -offset_min : offset_min;
        snprintf(zone, sizeof(zone), "%c%02d:%02d", offset_min < 0 ? '-' : '+', a / 60, a % 60);
    }
    snprintf(out, len, "%s%s%s", base, frac, zone);
}

/* The state a --to-time T recover must give: after the last record with time <= T. */
static uint64_t lsn_at_time(int64_t t_ms)
{
    uint64_t lsn = 0;
    for (uint64_t i = 1; i <= fx.last_lsn && fx.time[i] <= t_ms; i++)
        lsn = i;
    return lsn;
}

static void recover_to_time(int64_t ms, int offset_min, bool with_ms)
{
    int64_t t_ms = with_ms ? ms : ms - ms % 1000;
    uint64_t want = lsn_at_time(t_ms);
    cr_assert_gt(want, 0u);
    char when[64], out[PATH_LEN], what[128];
    iso8601(ms, offset_min, with_ms, when, sizeof(when));
    fresh_out(out);
    snprintf(what, sizeof(what), "recover --to-time %s (want LSN %" PRIu64 ")", when, want);
    run_result r = run("--data-dir '%s' recover --to-time '%s' --out '%s'", fx.data, when, out);
    expect_status(&r, 0, what);
    run_free(&r);
    check_recovered(out, want, what);
}

/* ---- WAL files ---------------------------------------------------------------------- */

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* First LSNs of the segments in the fixture's WAL, ascending. */
static size_t list_segments(uint64_t *firsts)
{
    DIR *d = opendir(fx.wal_dir);
    cr_assert_not_null(d);
    size_t n = 0;
    struct dirent *ent;
    while ((ent = readdir(d)) != NULL) {
        uint64_t v;
        char tail[8];
        if (strlen(ent->d_name) == 20 && sscanf(ent->d_name, "%16" SCNx64 "%7s", &v, tail) == 2 &&
            strcmp(tail, ".wal") == 0) {
            cr_assert_lt(n, MAX_SEGMENTS);
            firsts[n++] = v;
        }
    }
    closedir(d);
    qsort(firsts, n, sizeof(*firsts), cmp_u64);
    return n;
}

static void segment_file(uint64_t first, char *name, char *path)
{
    wal_segment_name(first, name);
    snprintf(path, PATH_LEN, "%s/%s", fx.wal_dir, name);
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Byte offsets of the records in a segment file (at most `cap`); returns how many. */
static size_t record_offsets(const char *path, size_t *offs, size_t cap, size_t *file_len)
{
    size_t len;
    uint8_t *buf = (uint8_t *)slurp(path, &len);
    size_t n = 0, off = WAL_SEGMENT_HEADER;
    while (off + WAL_FRAME_HEADER <= len && n < cap) {
        offs[n++] = off;
        off += wal_frame_size(get32(buf + off));
    }
    cr_assert_eq(off, len, "%s: frames do not end at the end of the file", path);
    release(buf);
    *file_len = len;
    return n;
}

static size_t file_size(const char *path)
{
    struct stat st;
    cr_assert_eq(stat(path, &st), 0, "%s: %s", path, strerror(errno));
    return (size_t)st.st_size;
}

/* ---- Fixture setup ------------------------------------------------------------------ */

static void setup(void)
{
    build_fixture();
}

static void teardown(void)
{
    release_all();
    if (getenv("USHER_REPLAY_KEEP") != NULL) {
        fprintf(stderr, "usher_replay: fixture kept: %s\n", fx.root);
        return;
    }
    remove_fixture();
}

TestSuite(usher_replay, .init = setup, .fini = teardown, .timeout = 120);

/* ---- recover --------------------------------------------------------------------------- */

Test(usher_replay, recover_to_lsn_reproduces_the_state_dump)
{
    uint64_t s = fx.snap_lsn, last = fx.last_lsn;
    uint64_t points[] = {1, s - 50, s - 2, s - 1, s, s + 1, s + 9, last - 1, last};
    for (size_t i = 0; i < sizeof(points) / sizeof(points[0]); i++)
        recover_to_lsn(points[i]);
}

Test(usher_replay, recover_to_time_reproduces_the_state_dump)
{
    uint64_t s = fx.snap_lsn, last = fx.last_lsn;
    /* Exact record times with milliseconds, before and after the snapshot. */
    recover_to_time(fx.time[s - 40], 0, true);
    recover_to_time(fx.time[s], 0, true);
    recover_to_time(fx.time[s + 25], 0, true);
    /* One millisecond before a record: the previous state. */
    for (uint64_t l = s + 60; l < last; l++) {
        if (fx.time[l] > fx.time[l - 1]) {
            recover_to_time(fx.time[l] - 1, 0, true);
            break;
        }
    }
    /* Whole seconds, and zone offsets east and west of UTC. */
    recover_to_time(fx.time[s + 100], 0, false);
    recover_to_time(fx.time[s - 100], 330, true);
    recover_to_time(fx.time[s + 150], 330, false);
    recover_to_time(fx.time[s + 200], -180, true);
    /* After the last record: everything. */
    recover_to_time(fx.time[last] + 3600 * 1000, 330, false);
}

Test(usher_replay, recover_to_time_offset_matches_utc)
{
    /* The same instant written in UTC and in +05:30 gives the same state. */
    int64_t t = fx.time[fx.snap_lsn + 33];
    char utc[64], ist[64], out1[PATH_LEN], out2[PATH_LEN];
    iso8601(t, 0, true, utc, sizeof(utc));
    iso8601(t, 330, true, ist, sizeof(ist));
    fresh_out(out1);
    fresh_out(out2);
    run_result a = run("--data-dir '%s' recover --to-time '%s' --out '%s'", fx.data, utc, out1);
    run_result b = run("--data-dir '%s' recover --to-time '%s' --out '%s'", fx.data, ist, out2);
    expect_status(&a, 0, utc);
    expect_status(&b, 0, ist);
    /* "shard 0: recovered to LSN ... digest ..." is the same line. */
    char *la = strstr(a.out, "shard 0:"), *lb = strstr(b.out, "shard 0:");
    cr_assert(la != NULL && lb != NULL);
    size_t na = strcspn(la, "\n"), nb = strcspn(lb, "\n");
    cr_assert(na == nb && memcmp(la, lb, na) == 0, "%.*s\nvs\n%.*s", (int)na, la, (int)nb, lb);
    run_free(&a);
    run_free(&b);
    check_recovered(out2, lsn_at_time(t), ist);
}

Test(usher_replay, recover_past_the_end_fails_and_leaves_nothing)
{
    char out[PATH_LEN];
    fresh_out(out);
    run_result r = run("--data-dir '%s' recover --to-lsn %" PRIu64 " --shard 0 --out '%s'", fx.data,
                       fx.last_lsn + 1, out);
    expect_status(&r, 1, "recover --to-lsn last+1");
    char msg[128];
    snprintf(msg, sizeof(msg), "the log ends at LSN %" PRIu64 ", before %" PRIu64, fx.last_lsn,
             fx.last_lsn + 1);
    cr_assert_not_null(strstr(r.err, msg), "no '%s'" SHOWF, msg, SHOWA(r));
    run_free(&r);
    expect_nothing_written(out);

    fresh_out(out);
    r = run("--data-dir '%s' recover --to-lsn 1000000 --shard 0 --out '%s'", fx.data, out);
    expect_status(&r, 1, "recover --to-lsn 1000000");
    run_free(&r);
    expect_nothing_written(out);

    /* A shard that does not exist. */
    fresh_out(out);
    r = run("--data-dir '%s' recover --to-lsn 5 --shard 1 --out '%s'", fx.data, out);
    expect_status(&r, 1, "recover --shard 1");
    run_free(&r);
    expect_nothing_written(out);
}

Test(usher_replay, recover_usage_errors_touch_nothing)
{
    char out[PATH_LEN];
    fresh_out(out);
    struct {
        const char *args, *what;
    } cases[] = {
        {"recover --to-lsn 10 --out '%s'", "--to-lsn without --shard"},
        {"recover --to-lsn 10 --shard 0 --to-time 2026-03-14T09:10:00Z --out '%s'",
         "both --to-lsn and --to-time"},
        {"recover --shard 0 --out '%s'", "neither --to-lsn nor --to-time"},
        {"recover --to-lsn 0 --shard 0 --out '%s'", "--to-lsn 0"},
        {"recover --to-time 2026-03-14 --out '%s'", "a date without a time"},
        {"recover --to-time 2026-03-14T09:10:00 --out '%s'", "a time without a zone"},
        {"recover --to-time 2026-03-14T09:10:00+5:30 --out '%s'", "a one-digit zone hour"},
        {"recover --to-time 2026-13-14T09:10:00Z --out '%s'", "month 13"},
        {"recover --to-lsn 10 --shard x --out '%s'", "a bad shard number"},
        {"recover --to-lsn -1 --shard 0 --out '%s'", "a negative LSN"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char args[1024];
        snprintf(args, sizeof(args), cases[i].args, out);
        run_result r = run("--data-dir '%s' %s", fx.data, args);
        expect_status(&r, 2, cases[i].what);
        run_free(&r);
        expect_nothing_written(out);
    }
    run_result r = run("--data-dir '%s' recover --to-lsn 10 --shard 0", fx.data);
    expect_status(&r, 2, "recover without --out");
    run_free(&r);

    /* An existing --out is never touched. */
    cr_assert_eq(mkdir(out, 0755), 0);
    char marker[PATH_LEN + 16];
    snprintf(marker, sizeof(marker), "%s/keep-me", out);
    FILE *f = fopen(marker, "w");
    cr_assert_not_null(f);
    fputs("precious\n", f);
    fclose(f);
    r = run("--data-dir '%s' recover --to-lsn 10 --shard 0 --out '%s'", fx.data, out);
    expect_status(&r, 2, "an existing --out");
    cr_assert_not_null(strstr(r.err, "exists"), "no 'exists'" SHOWF, SHOWA(r));
    run_free(&r);
    char *kept = slurp(marker, NULL);
    cr_assert_str_eq(kept, "precious\n");
    release(kept);
    DIR *d = opendir(out);
    cr_assert_not_null(d);
    int entries = 0;
    for (struct dirent *ent; (ent = readdir(d)) != NULL;)
        entries += ent->d_name[0] != '.';
    closedir(d);
    cr_assert_eq(entries, 1, "recover wrote into an existing --out");
    char partial[PATH_LEN + 16];
    snprintf(partial, sizeof(partial), "%s.partial", out);
    cr_assert(!exists(partial));
}

/* ---- verify ---------------------------------------------------------------------------- */

Test(usher_replay, verify_accepts_the_fixture)
{
    run_result r = run("--data-dir '%s' verify", fx.data);
    expect_status(&r, 0, "verify");
    char want[256];
    snprintf(want, sizeof(want), "shard 0: wal ok: %" PRIu64 " records, LSN 1..%" PRIu64 "\n",
             fx.last_lsn, fx.last_lsn);
    cr_assert_not_null(strstr(r.out, want), "no '%s'" SHOWF, want, SHOWA(r));
    snprintf(want, sizeof(want),
             "shard 0: recovery ok: snapshot LSN %" PRIu64 " + %" PRIu64 " records = LSN %" PRIu64
             ", digest %016" PRIx64 "\n",
             fx.snap_lsn, fx.last_lsn - fx.snap_lsn, fx.last_lsn, fx.digest[fx.last_lsn]);
    cr_assert_not_null(strstr(r.out, want), "no '%s'" SHOWF, want, SHOWA(r));
    cr_assert_not_null(strstr(r.out, "snapshot matches a full WAL replay"), "%s" SHOWF, "",
                       SHOWA(r));
    cr_assert_not_null(strstr(r.out, "verify: ok\n"), "%s" SHOWF, "", SHOWA(r));
    cr_assert_null(strstr(r.out, "torn"), "%s" SHOWF, "", SHOWA(r));
    run_free(&r);
    /* --shard 0 is the same shard; --shard 3 does not exist. */
    r = run("--data-dir '%s' verify --shard 0", fx.data);
    expect_status(&r, 0, "verify --shard 0");
    run_free(&r);
    r = run("--data-dir '%s' verify --shard 3", fx.data);
    expect_status(&r, 1, "verify --shard 3");
    run_free(&r);
}

Test(usher_replay, verify_reports_a_flipped_byte_with_file_and_offset)
{
    uint64_t segs[MAX_SEGMENTS];
    size_t nseg = list_segments(segs);
    cr_assert_geq(nseg, 6u, "only %zu segments", nseg);
    /* The third record of the second segment, which lies before the snapshot. */
    char name[32], path[PATH_LEN];
    segment_file(segs[1], name, path);
    cr_assert_lt(segs[2], fx.snap_lsn);
    size_t offs[512], len;
    size_t n = record_offsets(path, offs, 512, &len);
    cr_assert_geq(n, 4u);
    uint64_t bad_lsn = segs[1] + 2;
    int fd = open(path, O_RDWR);
    cr_assert_geq(fd, 0);
    uint8_t hdr[WAL_FRAME_HEADER], byte;
    cr_assert_eq(pread(fd, hdr, sizeof(hdr), (off_t)offs[2]), (ssize_t)sizeof(hdr));
    off_t where = (off_t)(offs[2] + WAL_FRAME_HEADER + get32(hdr) / 2);
    cr_assert_eq(pread(fd, &byte, 1, where), 1);
    byte ^= 0x10;
    cr_assert_eq(pwrite(fd, &byte, 1, where), 1);
    close(fd);

    run_result r = run("--data-dir '%s' verify", fx.data);
    expect_status(&r, 1, "verify with a flipped byte");
    char want[128];
    snprintf(want, sizeof(want), "%s offset %zu", name, offs[2]);
    cr_assert_not_null(strstr(r.out, want), "no '%s'" SHOWF, want, SHOWA(r));
    snprintf(want, sizeof(want), "LSN %" PRIu64, bad_lsn);
    cr_assert_not_null(strstr(r.out, want), "no '%s'" SHOWF, want, SHOWA(r));
    cr_assert_not_null(strstr(r.out, "verify: FAILED"), "%s" SHOWF, "", SHOWA(r));
    run_free(&r);

    /* dump and stats refuse too; recover before the damage still works,
     * recover across it fails; after the snapshot it is not read at all. */
    r = run("--data-dir '%s' dump", fx.data);
    expect_status(&r, 1, "dump with a flipped byte");
    cr_assert_not_null(strstr(r.err, name), "%s" SHOWF, "", SHOWA(r));
    run_free(&r);
    r = run("--data-dir '%s' stats", fx.data);
    expect_status(&r, 1, "stats with a flipped byte");
    run_free(&r);
    char out[PATH_LEN];
    fresh_out(out);
    r = run("--data-dir '%s' recover --to-lsn %" PRIu64 " --shard 0 --out '%s'", fx.data, bad_lsn,
            out);
    expect_status(&r, 1, "recover across a flipped byte");
    cr_assert_not_null(strstr(r.err, name), "%s" SHOWF, "", SHOWA(r));
    run_free(&r);
    expect_nothing_written(out);
    recover_to_lsn(fx.snap_lsn + 3);
}

/* Damage in a record must not stop a rewind to a point before it: recovering
 * to LSN N needs records 1..N only. */
Test(usher_replay, recover_to_just_before_a_damaged_record)
{
    uint64_t segs[MAX_SEGMENTS];
    size_t nseg = list_segments(segs);
    cr_assert_geq(nseg, 6u);
    char name[32], path[PATH_LEN];
    segment_file(segs[1], name, path);
    size_t offs[512], len;
    cr_assert_geq(record_offsets(path, offs, 512, &len), 4u);
    int fd = open(path, O_RDWR);
    cr_assert_geq(fd, 0);
    uint8_t hdr[WAL_FRAME_HEADER], byte;
    cr_assert_eq(pread(fd, hdr, sizeof(hdr), (off_t)offs[2]), (ssize_t)sizeof(hdr));
    off_t where = (off_t)(offs[2] + WAL_FRAME_HEADER + get32(hdr) / 2);
    cr_assert_eq(pread(fd, &byte, 1, where), 1);
    byte ^= 0x10;
    cr_assert_eq(pwrite(fd, &byte, 1, where), 1);
    close(fd);
    recover_to_lsn(segs[1] + 1); /* the record before the damaged one */
}

Test(usher_replay, verify_reports_a_missing_segment)
{
    uint64_t segs[MAX_SEGMENTS];
    size_t nseg = list_segments(segs);
    cr_assert_geq(nseg, 6u);
    char name[32], path[PATH_LEN], before[32], before_path[PATH_LEN];
    segment_file(segs[2], name, path);
    segment_file(segs[1], before, before_path);
    cr_assert_eq(unlink(path), 0);

    run_result r = run("--data-dir '%s' verify", fx.data);
    expect_status(&r, 1, "verify with a missing segment");
    /* It names the segment before the hole and the first missing LSN. */
    char want[PATH_LEN + 256];
    snprintf(
        want, sizeof(want),
        "FAIL wal: LSN gap: the next segment does not start where this one ends at %s offset %zu "
        "(expected LSN %" PRIu64 ")",
        before_path, file_size(before_path), segs[2]);
    cr_assert_not_null(strstr(r.out, want), "no '%s'" SHOWF, want, SHOWA(r));
    cr_assert_not_null(strstr(r.out, "verify: FAILED"), "%s" SHOWF, "", SHOWA(r));
    run_free(&r);
}

Test(usher_replay, verify_accepts_a_torn_tail_with_a_note)
{
    uint64_t segs[MAX_SEGMENTS];
    size_t nseg = list_segments(segs);
    char name[32], path[PATH_LEN];
    segment_file(segs[nseg - 1], name, path);
    size_t offs[512], len;
    size_t n = record_offsets(path, offs, 512, &len);
    cr_assert_geq(n, 2u);
    /* Cut the last record in the middle of its payload. */
    size_t cut = offs[n - 1] + WAL_FRAME_HEADER + 3;
    cr_assert_lt(cut, len);
    cr_assert_eq(truncate(path, (off_t)cut), 0);

    run_result r = run("--data-dir '%s' verify", fx.data);
    expect_status(&r, 0, "verify with a torn tail");
    char want[160];
    snprintf(want, sizeof(want), "shard 0: note: torn tail of %zu bytes after LSN %" PRIu64,
             cut - offs[n - 1], fx.last_lsn - 1);
    cr_assert_not_null(strstr(r.out, want), "no '%s'" SHOWF, want, SHOWA(r));
    cr_assert_not_null(strstr(r.out, "verify: ok"), "%s" SHOWF, "", SHOWA(r));
    run_free(&r);

    /* The torn record is gone for dump and recover; the tool does not repair. */
    r = run("--data-dir '%s' dump", fx.data);
    expect_status(&r, 0, "dump with a torn tail");
    size_t lines = 0;
    for (const char *p = r.out; (p = strchr(p, '\n')) != NULL; p++)
        lines++;
    cr_assert_eq(lines, fx.last_lsn - 1);
    run_free(&r);
    recover_to_lsn(fx.last_lsn - 1);
    char out[PATH_LEN];
    fresh_out(out);
    r = run("--data-dir '%s' recover --to-lsn %" PRIu64 " --shard 0 --out '%s'", fx.data,
            fx.last_lsn, out);
    expect_status(&r, 1, "recover to the torn record");
    run_free(&r);
    expect_nothing_written(out);
    struct stat st;
    cr_assert_eq(stat(path, &st), 0);
    cr_assert_eq((size_t)st.st_size, cut, "a read-only command changed the WAL");
}

/* ---- dump -------------------------------------------------------------------------------- */

static size_t count_lines(const char *s)
{
    size_t n = 0;
    for (const char *p = s; (p = strchr(p, '\n')) != NULL; p++)
        n++;
    return n;
}

Test(usher_replay, dump_prints_every_record_in_order)
{
    run_result r = run("--data-dir '%s' dump", fx.data);
    expect_status(&r, 0, "dump");
    cr_assert_eq(count_lines(r.out), fx.last_lsn, "%zu lines for %" PRIu64 " records",
                 count_lines(r.out), fx.last_lsn);
    const char *p = r.out;
    for (uint64_t lsn = 1; lsn <= fx.last_lsn; lsn++) {
        const char *nl = strchr(p, '\n');
        cr_assert_not_null(nl);
        char head[256], time_s[96], want_time[64];
        snprintf(head, sizeof(head), "{\"shard\":0,\"lsn\":%" PRIu64 ",\"time_ms\":%" PRId64 ",",
                 lsn, fx.time[lsn]);
        cr_assert(strncmp(p, head, strlen(head)) == 0, "line %" PRIu64 ": %.*s", lsn, (int)(nl - p),
                  p);
        iso8601(fx.time[lsn], 0, true, want_time, sizeof(want_time));
        snprintf(time_s, sizeof(time_s), "\"time\":\"%s\",", want_time);
        char type_s[64];
        snprintf(type_s, sizeof(type_s), "\"type\":\"%s\"",
                 engine_record_type_name((engine_record_type)fx.type[lsn]));
        const char *tp = p + strlen(head);
        cr_assert(strncmp(tp, time_s, strlen(time_s)) == 0, "line %" PRIu64 ": %.*s, want %s", lsn,
                  (int)(nl - p), p, time_s);
        tp += strlen(time_s);
        cr_assert(strncmp(tp, type_s, strlen(type_s)) == 0, "line %" PRIu64 ": %.*s, want %s", lsn,
                  (int)(nl - p), p, type_s);
        cr_assert_eq(nl[-1], '}', "line %" PRIu64 " is not one JSON object", lsn);
        p = nl + 1;
    }
    cr_assert_eq(*p, '\0');
    cr_assert_str_eq(r.err, "");
    run_free(&r);
}

Test(usher_replay, dump_filters_and_formats)
{
    run_result r = run("--data-dir '%s' dump --type booking_confirm", fx.data);
    expect_status(&r, 0, "dump --type booking_confirm");
    cr_assert_eq(count_lines(r.out), fx.confirms, "%zu lines, %" PRIu64 " confirms",
                 count_lines(r.out), fx.confirms);
    uint64_t prev = 0;
    for (const char *p = r.out; *p != '\0'; p = strchr(p, '\n') + 1) {
        uint64_t lsn = 0;
        int used = 0;
        cr_assert_eq(sscanf(p, "{\"shard\":0,\"lsn\":%" SCNu64 ",%n", &lsn, &used), 1, "%.200s", p);
        cr_assert(used > 0 && lsn > prev && lsn <= fx.last_lsn, "%.200s", p);
        cr_assert_eq(fx.type[lsn], ENGINE_REC_BOOKING_CONFIRM, "LSN %" PRIu64 " is no confirm",
                     lsn);
        const char *type = strstr(p, "\"type\":\"booking_confirm\"");
        cr_assert(type != NULL && type < strchr(p, '\n'), "%.200s", p);
        prev = lsn;
    }
    run_free(&r);

    for (int t = ENGINE_REC_LAYOUT_CREATE; t <= ENGINE_REC_BOOKING_CANCEL; t++) {
        const char *name = engine_record_type_name((engine_record_type)t);
        r = run("--data-dir '%s' dump --shard 0 --type %s", fx.data, name);
        expect_status(&r, 0, name);
        cr_assert_eq(count_lines(r.out), fx.by_type[t], "--type %s: %zu lines, want %" PRIu64, name,
                     count_lines(r.out), fx.by_type[t]);
        run_free(&r);
    }

    uint64_t a = fx.snap_lsn - 17, b = fx.snap_lsn + 40;
    r = run("--data-dir '%s' dump --from-lsn %" PRIu64 " --to-lsn %" PRIu64, fx.data, a, b);
    expect_status(&r, 0, "dump --from-lsn --to-lsn");
    cr_assert_eq(count_lines(r.out), b - a + 1);
    char first[64];
    snprintf(first, sizeof(first), "{\"shard\":0,\"lsn\":%" PRIu64 ",", a);
    cr_assert(strncmp(r.out, first, strlen(first)) == 0, "%.200s", r.out);
    run_free(&r);

    /* A range and a type together; a range past the end. */
    uint64_t want = 0;
    for (uint64_t l = a; l <= b; l++)
        want += fx.type[l] == ENGINE_REC_HOLD_PLACE;
    r = run("--data-dir '%s' dump --from-lsn %" PRIu64 " --to-lsn %" PRIu64 " --type hold_place",
            fx.data, a, b);
    expect_status(&r, 0, "dump range + type");
    cr_assert_eq(count_lines(r.out), want);
    run_free(&r);
    r = run("--data-dir '%s' dump --from-lsn %" PRIu64, fx.data, fx.last_lsn - 4);
    expect_status(&r, 0, "dump --from-lsn last-4");
    cr_assert_eq(count_lines(r.out), 5u);
    run_free(&r);

    r = run("--data-dir '%s' dump --format table --to-lsn 30", fx.data);
    expect_status(&r, 0, "dump --format table");
    cr_assert_eq(count_lines(r.out), 31u, "%s" SHOWF, "", SHOWA(r));
    cr_assert(strncmp(r.out, "shard", 5) == 0, "no header" SHOWF, SHOWA(r));
    char w[5][16];
    cr_assert_eq(sscanf(r.out, "%15s %15s %15s %15s %15s", w[0], w[1], w[2], w[3], w[4]), 5);
    const char *cols[5] = {"shard", "lsn", "time", "type", "payload"};
    for (int i = 0; i < 5; i++)
        cr_assert_str_eq(w[i], cols[i], "bad header" SHOWF, SHOWA(r));
    const char *nl = strchr(r.out, '\n');
    cr_assert_not_null(strstr(nl, "layout_create"), "%s" SHOWF, "", SHOWA(r));
    run_free(&r);

    r = run("--data-dir '%s' dump --type nope", fx.data);
    expect_status(&r, 2, "dump --type nope");
    cr_assert_eq(r.out_len, 0u, "%s" SHOWF, "", SHOWA(r));
    run_free(&r);
    r = run("--data-dir '%s' dump --format xml", fx.data);
    expect_status(&r, 2, "dump --format xml");
    run_free(&r);
}

/* ---- stats and usage ----------------------------------------------------------------------- */

Test(usher_replay, stats_shows_records_and_snapshot)
{
    run_result r = run("--data-dir '%s' stats", fx.data);
    expect_status(&r, 0, "stats");
    char want[160];
    snprintf(want, sizeof(want), "records   %" PRIu64 " (LSN 1..%" PRIu64 ")\n", fx.last_lsn,
             fx.last_lsn);
    cr_assert_not_null(strstr(r.out, want), "no '%s'" SHOWF, want, SHOWA(r));
    snprintf(want, sizeof(want), "snapshot  LSN %" PRIu64 "\n", fx.snap_lsn);
    cr_assert_not_null(strstr(r.out, want), "no '%s'" SHOWF, want, SHOWA(r));
    char span_a[64], span_b[64];
    iso8601(fx.time[1], 0, true, span_a, sizeof(span_a));
    iso8601(fx.time[fx.last_lsn], 0, true, span_b, sizeof(span_b));
    snprintf(want, sizeof(want), "span      %s .. %s", span_a, span_b);
    cr_assert_not_null(strstr(r.out, want), "no '%s'" SHOWF, want, SHOWA(r));
    const char *c = strstr(r.out, "  booking_confirm ");
    cr_assert_not_null(c, "%s" SHOWF, "", SHOWA(r));
    uint64_t n = 0;
    cr_assert_eq(sscanf(c, " booking_confirm %" SCNu64, &n), 1);
    cr_assert_eq(n, fx.confirms);
    run_free(&r);
}

Test(usher_replay, usage)
{
    run_result r = run("--help");
    expect_status(&r, 0, "--help");
    cr_assert(strncmp(r.out, "usage: usher-replay", 19) == 0, "%s" SHOWF, "", SHOWA(r));
    run_free(&r);
    r = run("-h");
    expect_status(&r, 0, "-h");
    run_free(&r);
    r = run("");
    expect_status(&r, 2, "no arguments");
    run_free(&r);
    r = run("--bogus");
    expect_status(&r, 2, "an unknown option");
    run_free(&r);
    r = run("--data-dir '%s' verify --bogus", fx.data);
    expect_status(&r, 2, "an unknown option after the command");
    run_free(&r);
    r = run("--data-dir '%s' frobnicate", fx.data);
    expect_status(&r, 2, "an unknown command");
    run_free(&r);
    r = run("verify");
    expect_status(&r, 2, "no --data-dir");
    run_free(&r);
    r = run("--data-dir");
    expect_status(&r, 2, "--data-dir without a value");
    run_free(&r);
    r = run("--data-dir '%s' verify extra", fx.data);
    expect_status(&r, 2, "an extra argument");
    run_free(&r);
    r = run("--data-dir '%s/nowhere' verify", fx.root);
    expect_status(&r, 1, "a missing data directory");
    run_free(&r);
}

/* ---- WAL dropped below the snapshot ---------------------------------------------------------- */

Test(usher_replay, dropped_segments_below_the_snapshot)
{
    uint64_t segs[MAX_SEGMENTS];
    size_t nseg = list_segments(segs), dropped = 0;
    /* Delete every segment whose records all lie below the snapshot LSN. */
    for (size_t i = 0; i + 1 < nseg && segs[i + 1] <= fx.snap_lsn; i++) {
        char name[32], path[PATH_LEN];
        segment_file(segs[i], name, path);
        cr_assert_eq(unlink(path), 0);
        dropped++;
    }
    cr_assert_geq(dropped, 3u);
    uint64_t oldest = segs[dropped];
    cr_assert_gt(oldest, 1u);
    cr_assert_leq(oldest, fx.snap_lsn);

    uint64_t below[] = {1, oldest - 1, oldest, fx.snap_lsn - 1};
    for (size_t i = 0; i < sizeof(below) / sizeof(below[0]); i++) {
        char out[PATH_LEN];
        fresh_out(out);
        run_result r = run("--data-dir '%s' recover --to-lsn %" PRIu64 " --shard 0 --out '%s'",
                           fx.data, below[i], out);
        expect_status(&r, 1, "recover below a dropped WAL");
        cr_assert_not_null(strstr(r.err, "no longer holds LSN"), "%s" SHOWF, "", SHOWA(r));
        char reachable[96]; /* the refusal says where the reachable points start */
        snprintf(reachable, sizeof(reachable), "stored snapshot is at LSN %" PRIu64, fx.snap_lsn);
        cr_assert_not_null(strstr(r.err, reachable), "%s" SHOWF, "", SHOWA(r));
        run_free(&r);
        expect_nothing_written(out);
    }
    /* By time, before the snapshot: the same refusal. */
    char when[64], out[PATH_LEN];
    iso8601(fx.time[fx.snap_lsn] - 60000, 0, false, when, sizeof(when));
    cr_assert_lt(lsn_at_time(fx.time[fx.snap_lsn] - 60000), fx.snap_lsn);
    fresh_out(out);
    run_result r = run("--data-dir '%s' recover --to-time '%s' --out '%s'", fx.data, when, out);
    expect_status(&r, 1, "recover --to-time below a dropped WAL");
    cr_assert_not_null(strstr(r.err, "no longer holds LSN"), "%s" SHOWF, "", SHOWA(r));
    run_free(&r);
    expect_nothing_written(out);

    recover_to_lsn(fx.snap_lsn);
    recover_to_lsn(fx.snap_lsn + 1);
    recover_to_lsn(fx.snap_lsn + 77);
    recover_to_lsn(fx.last_lsn);
    recover_to_time(fx.time[fx.snap_lsn + 50], 330, true);

    /* verify, dump and stats work from the oldest kept segment. */
    r = run("--data-dir '%s' verify", fx.data);
    expect_status(&r, 0, "verify of a dropped WAL");
    char want[160];
    snprintf(want, sizeof(want), "shard 0: wal ok: %" PRIu64 " records, LSN %" PRIu64 "..%" PRIu64,
             fx.last_lsn - oldest + 1, oldest, fx.last_lsn);
    cr_assert_not_null(strstr(r.out, want), "no '%s'" SHOWF, want, SHOWA(r));
    cr_assert_not_null(strstr(r.out, "verify: ok"), "%s" SHOWF, "", SHOWA(r));
    run_free(&r);
    r = run("--data-dir '%s' dump", fx.data);
    expect_status(&r, 0, "dump of a dropped WAL");
    cr_assert_eq(count_lines(r.out), fx.last_lsn - oldest + 1);
    snprintf(want, sizeof(want), "{\"shard\":0,\"lsn\":%" PRIu64 ",", oldest);
    cr_assert(strncmp(r.out, want, strlen(want)) == 0, "%.200s", r.out);
    run_free(&r);
    r = run("--data-dir '%s' stats", fx.data);
    expect_status(&r, 0, "stats of a dropped WAL");
    snprintf(want, sizeof(want), "snapshot  LSN %" PRIu64 "\n", fx.snap_lsn);
    cr_assert_not_null(strstr(r.out, want), "no '%s'" SHOWF, want, SHOWA(r));
    run_free(&r);
}
