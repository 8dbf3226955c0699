/*
 * wal_test.c - tests of the write-ahead log against wal.h.
 *
 * Framing is tested bit by bit; the writer and the reader with a real libuv
 * loop in a temporary directory; failures and crashes through fault_io, a
 * wal_io that fails chosen calls, shortens writes, blocks a call, and drops
 * (or garbles) whatever was not fdatasync'ed when it "crashes".
 *
 * Every record a test appends has contents derived from its LSN (type, time,
 * payload bytes, and a length given by the test), so a reader can check each
 * record it gets back without keeping copies.
 */
#include "fault_io.h"
#include "wal.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

/* ---- Temporary directory, one per test ---------------------------------- */

static char g_root[256];

static void rm_rf(const char *path)
{
    struct stat st;
    if (lstat(path, &st) != 0)
        return;
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        if (d != NULL) {
            struct dirent *e;
            while ((e = readdir(d)) != NULL) {
                if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                    continue;
                char sub[1024];
                int n = snprintf(sub, sizeof(sub), "%s/%s", path, e->d_name);
                if (n > 0 && (size_t)n < sizeof(sub)) /* temp paths are short */
                    rm_rf(sub);
            }
            closedir(d);
        }
        rmdir(path);
    } else {
        unlink(path);
    }
}

static void suite_init(void)
{
    snprintf(g_root, sizeof(g_root), "/tmp/usher-wal-test-XXXXXX");
    cr_assert_not_null(mkdtemp(g_root), "mkdtemp: %s", strerror(errno));
}

static void suite_fini(void)
{
    if (g_root[0] != '\0')
        rm_rf(g_root);
}

TestSuite(wal, .init = suite_init, .fini = suite_fini);

/* A fresh WAL directory path under the test's root (not created). */
static void fresh_dir(char *out, size_t len, const char *name)
{
    snprintf(out, len, "%s/%s", g_root, name);
    rm_rf(out);
}

/* ---- Little-endian and file helpers ------------------------------------- */

static uint16_t le16(const uint8_t *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}
static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t le64(const uint8_t *p)
{
    return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32;
}
static void put_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static void put_le64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint8_t *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "open %s: %s", path, strerror(errno));
    cr_assert_eq(fseek(f, 0, SEEK_END), 0);
    long n = ftell(f);
    cr_assert_geq(n, 0);
    rewind(f);
    uint8_t *buf = malloc((size_t)n + 1);
    cr_assert_not_null(buf);
    cr_assert_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static void write_all(const char *path, const uint8_t *buf, size_t len)
{
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f, "create %s: %s", path, strerror(errno));
    cr_assert_eq(fwrite(buf, 1, len, f), len);
    cr_assert_eq(fclose(f), 0);
}

static int64_t file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (int64_t)st.st_size : -1;
}

static void truncate_file(const char *path, uint64_t len)
{
    int fd = open(path, O_WRONLY);
    cr_assert_geq(fd, 0, "open %s: %s", path, strerror(errno));
    cr_assert_eq(ftruncate(fd, (off_t)len), 0);
    close(fd);
}

static void seg_path(const char *dir, uint64_t first, char *out, size_t len)
{
    char name[32];
    wal_segment_name(first, name);
    snprintf(out, len, "%s/%s", dir, name);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* First LSNs of the segments in `dir` (sorted); asserts every entry is one. */
static size_t list_segments(const char *dir, uint64_t *out, size_t max)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return 0;
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char *end = NULL;
        uint64_t v = strtoull(e->d_name, &end, 16);
        cr_assert(end != NULL && strcmp(end, ".wal") == 0 && end - e->d_name == 16,
                  "unexpected file %s in %s", e->d_name, dir);
        cr_assert_lt(n, max);
        out[n++] = v;
    }
    closedir(d);
    qsort(out, n, sizeof(*out), cmp_u64);
    return n;
}

/* True if `msg` contains `prefix` followed by exactly the number `v`. */
static bool has_num(const char *msg, const char *prefix, uint64_t v)
{
    char needle[96];
    snprintf(needle, sizeof(needle), "%s%" PRIu64, prefix, v);
    size_t n = strlen(needle);
    for (const char *p = strstr(msg, needle); p != NULL; p = strstr(p + 1, needle))
        if (p[n] < '0' || p[n] > '9')
            return true;
    return false;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/*
 * fault_io instances are kept reachable from a global, so that a test that
 * fails half-way (Criterion leaves the function) does not add leak reports.
 */
static fault_io *g_fios[64];

static fault_io *fio_new(void)
{
    fault_io *f = fault_io_new();
    for (int i = 0; i < 64; i++) {
        if (g_fios[i] == NULL) {
            g_fios[i] = f;
            return f;
        }
    }
    cr_assert_fail("too many fault_io instances");
    return NULL;
}

static void fio_free(fault_io *f)
{
    for (int i = 0; i < 64; i++)
        if (g_fios[i] == f)
            g_fios[i] = NULL;
    fault_io_free(f);
}

/* ---- Record contents, derived from the LSN ----------------------------- */

typedef uint32_t (*len_fn)(uint64_t lsn);

static uint32_t len_small(uint64_t lsn)
{
    return 8 + (uint32_t)((lsn * 37) % 120);
}

static uint32_t len_40(uint64_t lsn)
{
    (void)lsn;
    return 40;
}

static uint32_t len_100(uint64_t lsn)
{
    (void)lsn;
    return 100;
}

static uint16_t rec_type(uint64_t lsn)
{
    return (uint16_t)(lsn * 7919u);
}

static int64_t rec_time(uint64_t lsn)
{
    return (int64_t)lsn * 1000 - 100000; /* negative for the first 99 */
}

static void rec_payload(uint64_t lsn, uint8_t *out, uint32_t len)
{
    uint64_t x = lsn * 0x9E3779B97F4A7C15u ^ len;
    for (uint32_t i = 0; i < len; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out[i] = (uint8_t)x;
    }
}

/* ---- Reading a whole log back ------------------------------------------- */

typedef struct scan {
    int rc; /* wal_reader_open's error, or the last wal_reader_next result */
    uint64_t count, first, last;
    uint64_t flagged[64]; /* LSNs of records marked WAL_FLAG_BATCH_START (first 64) */
    size_t nflagged;
    wal_tail tail;
    char error[2 * WAL_PATH_MAX + 128];
} scan;

/*
 * Reads `dir` from `from`; asserts that the records come in LSN order from
 * `from` on, each exactly as appended. Stops at the end or an error.
 */
static void scan_log(const char *dir, uint64_t from, len_fn len_of, scan *s)
{
    memset(s, 0, sizeof(*s));
    wal_reader *r = NULL;
    s->rc = wal_reader_open(dir, from, NULL, &r);
    if (s->rc != 0)
        return;
    uint64_t want = from == 0 ? 1 : from;
    uint8_t *exp = NULL;
    size_t exp_cap = 0;
    wal_record rec;
    while ((s->rc = wal_reader_next(r, &rec)) == 1) {
        cr_assert_eq(rec.lsn, want, "record LSN %" PRIu64 ", expected %" PRIu64, rec.lsn, want);
        cr_assert_eq(rec.type, rec_type(want), "LSN %" PRIu64 ": type", want);
        cr_assert_eq(rec.time_ms, rec_time(want), "LSN %" PRIu64 ": time", want);
        uint32_t len = len_of(want);
        cr_assert_eq(rec.payload_len, len, "LSN %" PRIu64 ": payload length %" PRIu32, want,
                     rec.payload_len);
        if (len > exp_cap) {
            free(exp);
            exp_cap = len;
            exp = malloc(exp_cap);
            cr_assert_not_null(exp);
        }
        rec_payload(want, exp, len);
        cr_assert(len == 0 || memcmp(rec.payload, exp, len) == 0, "LSN %" PRIu64 ": payload", want);
        cr_assert(rec.flags == 0 || rec.flags == WAL_FLAG_BATCH_START, "LSN %" PRIu64 ": flags %#x",
                  want, rec.flags);
        if (rec.flags == WAL_FLAG_BATCH_START && s->nflagged < 64)
            s->flagged[s->nflagged++] = want;
        if (s->count == 0)
            s->first = want;
        s->last = want;
        s->count++;
        want++;
    }
    free(exp);
    if (s->rc == 0)
        s->tail = *wal_reader_tail(r);
    else
        snprintf(s->error, sizeof(s->error), "%s", wal_reader_error(r));
    wal_reader_close(r);
}

/* Asserts the log in `dir` holds exactly 1..last, cleanly ended. */
static void expect_log(const char *dir, uint64_t last, len_fn len_of)
{
    scan s;
    scan_log(dir, 1, len_of, &s);
    cr_assert_eq(s.rc, 0, "reader: %s (%s)", wal_strerror(s.rc), s.error);
    cr_assert_eq(s.count, last, "records read: %" PRIu64 ", expected %" PRIu64, s.count, last);
    cr_assert_eq(s.tail.last_lsn, last);
    cr_assert_eq(s.tail.torn_bytes, 0, "torn: %s", s.tail.torn_reason);
    cr_assert_null(s.tail.torn_reason);
}

/* ---- Segment structure -------------------------------------------------- */

/*
 * Checks every segment of `dir`: the header (magic, version, shard, first
 * LSN = name, checksum), frames tiling the file with consecutive LSNs from
 * the name, size <= seg_bytes unless the segment holds a single frame, and
 * tight packing (the next segment's first frame would not have fit).
 * Returns the number of segments.
 */
static size_t check_segments(const char *dir, uint64_t seg_bytes, uint32_t shard)
{
    uint64_t segs[256];
    size_t n = list_segments(dir, segs, 256);
    uint64_t prev_size = 0;
    for (size_t i = 0; i < n; i++) {
        char path[WAL_PATH_MAX + 32];
        seg_path(dir, segs[i], path, sizeof(path));
        size_t len;
        uint8_t *buf = read_all(path, &len);
        cr_assert_geq(len, WAL_SEGMENT_HEADER, "%s: %zu bytes", path, len);
        cr_assert_eq(memcmp(buf, "USHERWAL", 8), 0);
        cr_assert_eq(le32(buf + 8), 1, "version");
        cr_assert_eq(le32(buf + 12), shard, "shard");
        cr_assert_eq(le64(buf + 16), segs[i], "header first LSN vs name");
        cr_assert_eq(le64(buf + 24), XXH3_64bits(buf, 24), "header checksum");
        size_t off = WAL_SEGMENT_HEADER, frames = 0;
        uint64_t first_frame = 0;
        while (off < len) {
            wal_record rec;
            ssize_t fs = wal_frame_decode(buf + off, len - off, &rec);
            cr_assert_gt(fs, 0, "%s offset %zu: decode %zd", path, off, fs);
            cr_assert_eq(rec.lsn, segs[i] + frames, "%s: LSN %" PRIu64, path, rec.lsn);
            if (frames == 0)
                first_frame = (uint64_t)fs;
            frames++;
            off += (size_t)fs;
        }
        cr_assert(len <= seg_bytes || frames == 1, "%s: %zu bytes > %" PRIu64 " with %zu frames",
                  path, len, seg_bytes, frames);
        if (i + 1 < n)
            cr_assert_eq(segs[i] + frames, segs[i + 1], "%s: chain", path);
        if (i > 0)
            cr_assert_gt(prev_size + first_frame, seg_bytes,
                         "segment before %s rotated although the frame fit", path);
        prev_size = len;
        free(buf);
    }
    return n;
}

/* Offset and size of the last frame of a segment file. */
static void last_frame(const char *path, size_t *off, size_t *size, uint64_t *lsn)
{
    size_t len;
    uint8_t *buf = read_all(path, &len);
    size_t o = WAL_SEGMENT_HEADER, lo = 0, ls = 0;
    while (o < len) {
        wal_record rec;
        ssize_t fs = wal_frame_decode(buf + o, len - o, &rec);
        cr_assert_gt(fs, 0);
        lo = o;
        ls = (size_t)fs;
        *lsn = rec.lsn;
        o += (size_t)fs;
    }
    cr_assert_gt(ls, 0, "%s has no frame", path);
    free(buf);
    *off = lo;
    *size = ls;
}

/* Offset of the frame with LSN `lsn` in a segment file. */
static size_t frame_offset(const uint8_t *buf, size_t len, uint64_t lsn)
{
    size_t o = WAL_SEGMENT_HEADER;
    while (o < len) {
        wal_record rec;
        ssize_t fs = wal_frame_decode(buf + o, len - o, &rec);
        cr_assert_gt(fs, 0);
        if (rec.lsn == lsn)
            return o;
        o += (size_t)fs;
    }
    cr_assert_fail("LSN %" PRIu64 " not in segment", lsn);
    return 0;
}

/* ---- Writer harness ----------------------------------------------------- */

enum { DURABLE_LOG_MAX = 4096 };

typedef struct th th;
struct th {
    uv_loop_t loop;
    uv_timer_t tick;
    char dir[WAL_PATH_MAX];
    wal_writer *w;
    wal_writer_config cfg;
    len_fn len_of;
    uint64_t appended; /* last LSN an append returned */
    uint64_t durable;  /* last LSN the durable callback reported */
    uint64_t durable_calls, durable_log[DURABLE_LOG_MAX];
    bool non_monotonic;
    int failed_calls, failed_err;
    uint64_t durable_after_fail;
    int closed;
    uint64_t durable_at_close;
    /* Optional hooks, called from the callbacks. */
    void (*on_durable)(th *h, uint64_t lsn);
    void (*on_failed)(th *h, int err);
};

static void tick_cb(uv_timer_t *t)
{
    (void)t;
}

static void h_init(th *h, const char *name)
{
    memset(h, 0, sizeof(*h));
    cr_assert_eq(uv_loop_init(&h->loop), 0);
    cr_assert_eq(uv_timer_init(&h->loop, &h->tick), 0);
    fresh_dir(h->dir, sizeof(h->dir), name);
    h->len_of = len_small;
}

static void on_durable(wal_writer *w, uint64_t lsn, void *arg)
{
    th *h = arg;
    (void)w;
    if (lsn <= h->durable)
        h->non_monotonic = true;
    if (h->failed_calls > 0)
        h->durable_after_fail++;
    if (h->durable_calls < DURABLE_LOG_MAX)
        h->durable_log[h->durable_calls] = lsn;
    h->durable_calls++;
    h->durable = lsn;
    if (h->on_durable != NULL)
        h->on_durable(h, lsn);
}

static void on_failed(wal_writer *w, int err, void *arg)
{
    th *h = arg;
    (void)w;
    h->failed_calls++;
    h->failed_err = err;
    if (h->on_failed != NULL)
        h->on_failed(h, err);
}

static void on_closed(wal_writer *w, void *arg)
{
    th *h = arg;
    (void)w;
    h->closed++;
    h->durable_at_close = h->durable;
}

/* Opens a writer on h->dir; returns wal_writer_open's result. */
static int h_open_io(th *h, uint64_t next_lsn, uint64_t seg_bytes, uint64_t batch_max,
                     const wal_io *io)
{
    h->cfg = (wal_writer_config){
        .dir = h->dir,
        .shard = 7,
        .next_lsn = next_lsn,
        .segment_bytes = seg_bytes,
        .batch_bytes_max = batch_max,
        .io = io,
        .durable_cb = on_durable,
        .failed_cb = on_failed,
        .arg = h,
    };
    h->appended = next_lsn - 1;
    h->durable = next_lsn - 1;
    h->durable_calls = 0;
    h->non_monotonic = false;
    h->failed_calls = 0;
    h->failed_err = 0;
    h->durable_after_fail = 0;
    h->closed = 0;
    h->w = NULL;
    return wal_writer_open(&h->loop, &h->cfg, &h->w);
}

static void h_open(th *h, uint64_t next_lsn, uint64_t seg_bytes)
{
    int rc = h_open_io(h, next_lsn, seg_bytes, 0, NULL);
    cr_assert_eq(rc, 0, "wal_writer_open: %s", wal_strerror(rc));
    cr_assert_eq(wal_writer_last_lsn(h->w), next_lsn - 1);
    cr_assert_eq(wal_writer_durable_lsn(h->w), next_lsn - 1);
    cr_assert_eq(wal_writer_error(h->w), 0);
}

/* Appends the record for the next LSN; returns what wal_writer_append did. */
static int64_t h_try_append(th *h)
{
    uint64_t lsn = wal_writer_last_lsn(h->w) + 1;
    uint32_t len = h->len_of(lsn);
    uint8_t *p = malloc(len > 0 ? len : 1);
    cr_assert_not_null(p);
    rec_payload(lsn, p, len);
    int64_t rc = wal_writer_append(h->w, rec_type(lsn), rec_time(lsn), len > 0 ? p : NULL, len);
    free(p);
    if (rc > 0) {
        cr_assert_eq((uint64_t)rc, lsn, "append returned LSN %" PRId64 ", expected %" PRIu64, rc,
                     lsn);
        h->appended = lsn;
    }
    return rc;
}

static void h_append(th *h, int n)
{
    for (int i = 0; i < n; i++) {
        int64_t rc = h_try_append(h);
        cr_assert_gt(rc, 0, "append: %s", wal_strerror((int)rc));
    }
}

static bool until_durable(th *h, uint64_t lsn)
{
    return h->durable >= lsn || h->failed_calls > 0;
}

static bool until_closed(th *h, uint64_t unused)
{
    (void)unused;
    return h->closed > 0;
}

static bool until_failed(th *h, uint64_t unused)
{
    (void)unused;
    return h->failed_calls > 0;
}

/* Runs the loop (kept alive by a timer) until `done` or ten seconds pass. */
static bool h_run_until(th *h, bool (*done)(th *, uint64_t), uint64_t arg)
{
    cr_assert_eq(uv_timer_start(&h->tick, tick_cb, 5, 5), 0);
    uint64_t deadline = uv_hrtime() + 10 * UINT64_C(1000000000);
    bool ok;
    while (!(ok = done(h, arg)) && uv_hrtime() < deadline)
        uv_run(&h->loop, UV_RUN_ONCE);
    uv_timer_stop(&h->tick);
    return ok;
}

/* Runs until LSN `lsn` is durable; asserts it gets there without a failure. */
static void h_wait(th *h, uint64_t lsn)
{
    cr_assert(h_run_until(h, until_durable, lsn), "LSN %" PRIu64 " not durable (at %" PRIu64 ")",
              lsn, h->durable);
    cr_assert_eq(h->failed_calls, 0, "writer failed: %s", wal_strerror(h->failed_err));
    cr_assert_geq(h->durable, lsn);
}

/* Runs the loop for about `ms` milliseconds. */
static void h_spin(th *h, long ms)
{
    cr_assert_eq(uv_timer_start(&h->tick, tick_cb, 2, 2), 0);
    uint64_t end = uv_hrtime() + (uint64_t)ms * 1000000u;
    while (uv_hrtime() < end)
        uv_run(&h->loop, UV_RUN_ONCE);
    uv_timer_stop(&h->tick);
}

static void h_close(th *h)
{
    cr_assert_not_null(h->w);
    cr_assert_eq(wal_writer_close(h->w, on_closed, h), 0);
    cr_assert(h_run_until(h, until_closed, 0), "close callback never came");
    cr_assert_eq(h->closed, 1);
    h->w = NULL;
}

/* Closes the loop; asserts the writer left no handle behind. */
static void h_fini(th *h)
{
    if (h->w != NULL)
        h_close(h);
    uv_close((uv_handle_t *)&h->tick, NULL);
    uv_run(&h->loop, UV_RUN_DEFAULT);
    cr_assert_eq(uv_loop_close(&h->loop), 0, "handles left open on the loop");
}

/* Writes records 1..n in turns of `per_turn` on a fresh writer, then closes it. */
static void h_write_log(th *h, uint64_t n, int per_turn, uint64_t seg_bytes)
{
    h_open(h, 1, seg_bytes);
    while (h->appended < n) {
        int k = (int)(n - h->appended < (uint64_t)per_turn ? n - h->appended : (uint64_t)per_turn);
        h_append(h, k);
        h_wait(h, h->appended);
    }
    h_close(h);
}

/* ======================================================================== */
/* Framing                                                                  */
/* ======================================================================== */

Test(wal, frame_layout_and_round_trip)
{
    static const struct {
        uint64_t lsn;
        uint16_t type;
        int64_t time;
        uint32_t len;
    } cases[] = {
        {1, 0, 0, 0},
        {2, 0xFFFF, -1, 1},
        {UINT64_MAX, 7, INT64_MIN, 5},
        {42, 0x1234, INT64_MAX, 1000},
        {3, 9, INT64_C(-1700000000000), WAL_PAYLOAD_MAX},
    };
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        uint32_t len = cases[c].len;
        size_t size = wal_frame_size(len);
        cr_assert_eq(size, 24 + (size_t)len + 8);
        uint8_t *payload = malloc(len + 1);
        uint8_t *buf = malloc(size + 16);
        cr_assert(payload != NULL && buf != NULL);
        rec_payload(cases[c].lsn, payload, len);
        memset(buf + size, 0xEE, 16);
        wal_frame_encode(buf, cases[c].lsn, cases[c].type, cases[c].time, len ? payload : NULL,
                         len);

        /* The documented layout, byte for byte. */
        cr_assert_eq(le32(buf), len);
        cr_assert_eq(le16(buf + 4), cases[c].type);
        cr_assert_eq(le16(buf + 6), 0, "flags");
        cr_assert_eq(le64(buf + 8), cases[c].lsn);
        cr_assert_eq(le64(buf + 16), (uint64_t)cases[c].time);
        cr_assert(len == 0 || memcmp(buf + 24, payload, len) == 0);
        cr_assert_eq(le64(buf + 24 + len), XXH3_64bits(buf, 24 + (size_t)len), "checksum");
        cr_assert_eq(buf[size], 0xEE, "wrote past the frame");

        for (int extra = 0; extra <= 16; extra += 16) {
            wal_record rec;
            memset(&rec, 0, sizeof(rec));
            cr_assert_eq(wal_frame_decode(buf, size + (size_t)extra, &rec), (ssize_t)size);
            cr_assert_eq(rec.lsn, cases[c].lsn);
            cr_assert_eq(rec.type, cases[c].type);
            cr_assert_eq(rec.time_ms, cases[c].time);
            cr_assert_eq(rec.payload_len, len);
            cr_assert_eq(rec.flags, 0);
            cr_assert_eq(rec.payload, buf + 24, "payload borrows the buffer");
            cr_assert(len == 0 || memcmp(rec.payload, payload, len) == 0);
        }
        /* The same frame marked as a batch start differs only in the flags and checksum. */
        uint8_t *flagged = malloc(size);
        cr_assert_not_null(flagged);
        wal_frame_encode_flags(flagged, cases[c].lsn, cases[c].type, WAL_FLAG_BATCH_START,
                               cases[c].time, len ? payload : NULL, len);
        cr_assert_eq(le16(flagged + 6), WAL_FLAG_BATCH_START);
        cr_assert_eq(memcmp(flagged, buf, 6), 0);
        cr_assert_eq(memcmp(flagged + 8, buf + 8, 16 + (size_t)len), 0);
        cr_assert_eq(le64(flagged + 24 + len), XXH3_64bits(flagged, 24 + (size_t)len));
        wal_record rec;
        cr_assert_eq(wal_frame_decode(flagged, size, &rec), (ssize_t)size);
        cr_assert_eq(rec.flags, WAL_FLAG_BATCH_START);
        cr_assert_eq(rec.lsn, cases[c].lsn);
        free(flagged);
        free(payload);
        free(buf);
    }
}

Test(wal, frame_decode_every_truncation_is_incomplete)
{
    static const uint32_t lens[] = {0, 1, 40, 300};
    for (size_t c = 0; c < 4; c++) {
        size_t size = wal_frame_size(lens[c]);
        uint8_t *buf = malloc(size), payload[300];
        rec_payload(9, payload, lens[c]);
        wal_frame_encode(buf, 9, 1, 2, payload, lens[c]);
        for (size_t avail = 0; avail < size; avail++) {
            /* A copy of exactly `avail` bytes, so ASan sees any over-read. */
            uint8_t *cut = malloc(avail > 0 ? avail : 1);
            memcpy(cut, buf, avail);
            wal_record rec;
            cr_assert_eq(wal_frame_decode(cut, avail, &rec), 0, "len %u avail %zu", lens[c], avail);
            free(cut);
        }
        free(buf);
    }
}

/* What decode must say about a frame with one bit flipped (the checksum no longer matches). */
static ssize_t expected_for_flip(const uint8_t *frame, size_t avail)
{
    uint32_t len = le32(frame);
    if (len > WAL_PAYLOAD_MAX || (le16(frame + 6) & ~WAL_FLAG_BATCH_START) != 0)
        return WAL_ECORRUPT;
    if (wal_frame_size(len) > avail)
        return 0;
    return WAL_ECORRUPT;
}

Test(wal, frame_decode_every_bit_flip_is_caught)
{
    enum { LEN = 16, SIZE = 24 + LEN + 8, BIG = 8192 };
    uint8_t payload[LEN], good[SIZE];
    rec_payload(77, payload, LEN);
    wal_frame_encode(good, 77, 300, -5, payload, LEN);
    uint8_t *big = calloc(1, BIG);
    int flips = 0;
    for (size_t pos = 0; pos < SIZE; pos++) {
        for (int bit = 0; bit < 8; bit++) {
            uint8_t frame[SIZE];
            memcpy(frame, good, SIZE);
            frame[pos] ^= (uint8_t)(1u << bit);
            wal_record rec;
            /* The frame alone, and the frame followed by zeros (so a length
             * that grows still fits and the checksum must catch it). */
            cr_assert_eq(wal_frame_decode(frame, SIZE, &rec), expected_for_flip(frame, SIZE),
                         "byte %zu bit %d (exact)", pos, bit);
            memcpy(big, frame, SIZE);
            cr_assert_eq(wal_frame_decode(big, BIG, &rec), expected_for_flip(frame, BIG),
                         "byte %zu bit %d (in a larger buffer)", pos, bit);
            flips++;
        }
    }
    cr_assert_eq(flips, SIZE * 8);
    free(big);
}

Test(wal, frame_decode_rejects_bad_fields)
{
    uint8_t payload[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    uint8_t f[24 + 8 + 8];
    wal_record rec;

    /* Undefined flag bits, even with a checksum that matches. */
    static const uint16_t flags[] = {2, 3, 0x8000, 0xFFFF};
    for (int i = 0; i < 4; i++) {
        wal_frame_encode(f, 5, 1, 1, payload, 8);
        f[6] = (uint8_t)flags[i];
        f[7] = (uint8_t)(flags[i] >> 8);
        put_le64(f + 32, XXH3_64bits(f, 32));
        cr_assert_eq(wal_frame_decode(f, sizeof(f), &rec), WAL_ECORRUPT, "flags %#x", flags[i]);
    }

    /* WAL_FLAG_BATCH_START is the one defined bit. */
    wal_frame_encode(f, 5, 1, 1, payload, 8);
    f[6] = WAL_FLAG_BATCH_START;
    put_le64(f + 32, XXH3_64bits(f, 32));
    cr_assert_eq(wal_frame_decode(f, sizeof(f), &rec), (ssize_t)sizeof(f));
    cr_assert_eq(rec.flags, WAL_FLAG_BATCH_START);

    /* LSN 0 does not exist, even with a good checksum. */
    wal_frame_encode(f, 5, 1, 1, payload, 8);
    put_le64(f + 8, 0);
    put_le64(f + 32, XXH3_64bits(f, 32));
    cr_assert_eq(wal_frame_decode(f, sizeof(f), &rec), WAL_ECORRUPT, "LSN 0");

    /* An oversized length is corrupt from the header alone, not "incomplete". */
    static const uint32_t lens[] = {WAL_PAYLOAD_MAX + 1, 0x80000000u, UINT32_MAX};
    for (int i = 0; i < 3; i++) {
        wal_frame_encode(f, 5, 1, 1, payload, 8);
        put_le32(f, lens[i]);
        cr_assert_eq(wal_frame_decode(f, WAL_FRAME_HEADER, &rec), WAL_ECORRUPT, "len %u", lens[i]);
        cr_assert_eq(wal_frame_decode(f, sizeof(f), &rec), WAL_ECORRUPT, "len %u", lens[i]);
    }
    /* The largest allowed length with too few bytes is merely incomplete. */
    put_le32(f, WAL_PAYLOAD_MAX);
    cr_assert_eq(wal_frame_decode(f, sizeof(f), &rec), 0);
}

Test(wal, segment_names)
{
    char name[32];
    wal_segment_name(1, name);
    cr_assert_str_eq(name, "0000000000000001.wal");
    wal_segment_name(0xabcdef0123u, name);
    cr_assert_str_eq(name, "000000abcdef0123.wal");
    wal_segment_name(UINT64_MAX, name);
    cr_assert_str_eq(name, "ffffffffffffffff.wal");
    cr_assert_eq(strlen(name), 20);
}

Test(wal, strerror_every_code)
{
    static const int codes[] = {WAL_EFAILED, WAL_ETOOBIG, WAL_EFULL,   WAL_ECORRUPT,
                                WAL_EGAP,    WAL_EBADSEG, WAL_ECLOSED, WAL_ENOTFOUND};
    enum { N = sizeof(codes) / sizeof(codes[0]) };
    const char *unknown = wal_strerror(-29999);
    cr_assert_not_null(unknown);
    cr_assert_gt(strlen(unknown), 0);
    for (int i = 0; i < N; i++) {
        const char *s = wal_strerror(codes[i]);
        cr_assert_not_null(s, "code %d", codes[i]);
        cr_assert_gt(strlen(s), 0, "code %d", codes[i]);
        cr_assert_str_neq(s, unknown, "code %d has no description", codes[i]);
        for (int j = 0; j < i; j++)
            cr_assert_str_neq(s, wal_strerror(codes[j]), "codes %d and %d", codes[i], codes[j]);
    }
    static const int errnos[] = {EIO, ENOSPC, EEXIST, EACCES, EMFILE, ENOENT};
    for (int i = 0; i < 6; i++)
        cr_assert_str_eq(wal_strerror(-errnos[i]), strerror(errnos[i]));
    cr_assert_not_null(wal_strerror(0));
    cr_assert_not_null(wal_strerror(12345));
    cr_assert_not_null(wal_strerror(INT_MIN));
    cr_assert_not_null(wal_strerror(INT_MAX));
}

/* ======================================================================== */
/* Writer and reader                                                        */
/* ======================================================================== */

Test(wal, append_and_read_back_over_many_turns)
{
    static th h;
    h_init(&h, "wal");
    h_open(&h, 1, 0);
    struct stat st;
    cr_assert_eq(stat(h.dir, &st), 0, "writer did not create its directory");
    cr_assert(S_ISDIR(st.st_mode));

    uint64_t bytes = 0;
    for (int turn = 0; turn < 20; turn++) {
        h_append(&h, 50);
        cr_assert_eq(wal_writer_last_lsn(h.w), (uint64_t)(turn + 1) * 50);
        h_wait(&h, h.appended);
    }
    for (uint64_t lsn = 1; lsn <= 1000; lsn++)
        bytes += wal_frame_size(h.len_of(lsn));
    cr_assert_not(h.non_monotonic);
    cr_assert_eq(h.durable_calls, 20);
    for (int i = 0; i < 20; i++)
        cr_assert_eq(h.durable_log[i], (uint64_t)(i + 1) * 50, "durable callback %d", i);
    cr_assert_eq(wal_writer_durable_lsn(h.w), 1000);
    cr_assert_eq(wal_writer_last_lsn(h.w), 1000);
    cr_assert_eq(wal_writer_error(h.w), 0);

    wal_stats s;
    wal_writer_stats(h.w, &s);
    cr_assert_eq(s.records, 1000);
    cr_assert_eq(s.bytes, bytes);
    cr_assert_eq(s.durable_bytes, bytes);
    cr_assert_eq(wal_writer_bytes(h.w), bytes);
    cr_assert_eq(s.batches, 20);
    cr_assert_eq(s.syncs, 20);
    cr_assert_eq(s.max_batch_records, 50);
    cr_assert_eq(s.rotations, 1, "one segment started");
    uint64_t hist = 0;
    for (int i = 0; i < 24; i++)
        hist += s.sync_ns_hist[i];
    cr_assert_eq(hist, 20);
    cr_assert_gt(s.sync_ns_total, 0);
    h_close(&h);

    char path[WAL_PATH_MAX + 32];
    seg_path(h.dir, 1, path, sizeof(path));
    cr_assert_eq(file_size(path), (int64_t)(WAL_SEGMENT_HEADER + bytes));
    scan sc;
    scan_log(h.dir, 1, len_small, &sc);
    cr_assert_eq(sc.rc, 0);
    cr_assert_eq(sc.count, 1000);
    cr_assert_eq(sc.tail.last_lsn, 1000);
    cr_assert_str_eq(sc.tail.last_segment, path);
    cr_assert_eq(sc.tail.good_bytes, WAL_SEGMENT_HEADER + bytes);
    cr_assert_eq(sc.tail.torn_bytes, 0);
    cr_assert_null(sc.tail.torn_reason);
    cr_assert_eq(sc.nflagged, 20, "batch marks");
    for (int i = 0; i < 20; i++)
        cr_assert_eq(sc.flagged[i], (uint64_t)i * 50 + 1, "batch %d starts at %" PRIu64, i,
                     sc.flagged[i]);
    cr_assert_eq(check_segments(h.dir, 64u << 20, 7), 1);
    h_fini(&h);
}

Test(wal, group_commit_batches_a_turn_into_one_write_and_sync)
{
    static th h;
    h_init(&h, "wal");
    fault_io *fio = fio_new();
    cr_assert_eq(h_open_io(&h, 1, 0, 0, fault_io_table(fio)), 0);

    /* 500 appends in one loop turn: one batch, one pwrite, one fdatasync. */
    h_append(&h, 500);
    h_wait(&h, 500);
    cr_assert_eq(h.durable_calls, 1);
    cr_assert_eq(h.durable_log[0], 500);
    wal_stats s;
    wal_writer_stats(h.w, &s);
    cr_assert_eq(s.batches, 1);
    cr_assert_eq(s.syncs, 1);
    cr_assert_eq(s.max_batch_records, 500);
    cr_assert_eq(fault_io_calls(fio, FAULT_OPEN), 1);
    cr_assert_eq(fault_io_calls(fio, FAULT_PWRITE), 2, "segment header + one batch");
    cr_assert_eq(fault_io_calls(fio, FAULT_FDATASYNC), 1);
    cr_assert_eq(fault_io_calls(fio, FAULT_FSYNC_DIR), 1);

    /* Double buffering: a batch handed off, then another fills meanwhile. */
    h_append(&h, 100);
    wal_writer_flush(h.w);
    h_append(&h, 100);
    h_wait(&h, 700);
    cr_assert_eq(h.durable_calls, 3);
    cr_assert_eq(h.durable_log[1], 600);
    cr_assert_eq(h.durable_log[2], 700);
    wal_writer_stats(h.w, &s);
    cr_assert_eq(s.batches, 3);
    cr_assert_eq(s.syncs, 3);
    cr_assert_eq(s.records, 700);
    cr_assert_eq(fault_io_calls(fio, FAULT_FDATASYNC), 3);
    cr_assert_eq(fault_io_calls(fio, FAULT_PWRITE), 4);
    cr_assert_not(h.non_monotonic);

    /* An idle writer does no I/O. */
    h_spin(&h, 30);
    cr_assert_eq(fault_io_calls(fio, FAULT_PWRITE), 4);
    cr_assert_eq(fault_io_calls(fio, FAULT_FDATASYNC), 3);
    h_close(&h);
    expect_log(h.dir, 700, len_small);
    scan sc;
    scan_log(h.dir, 1, len_small, &sc);
    cr_assert_eq(sc.nflagged, 3);
    cr_assert_eq(sc.flagged[0], 1);
    cr_assert_eq(sc.flagged[1], 501);
    cr_assert_eq(sc.flagged[2], 601);
    h_fini(&h);
    fio_free(fio);
}

static uint32_t len_limits(uint64_t lsn)
{
    return lsn == 1 ? WAL_PAYLOAD_MAX : lsn == 2 ? 0 : len_small(lsn);
}

Test(wal, payload_limits_and_open_arguments)
{
    static th h;
    h_init(&h, "wal");
    h.len_of = len_limits;
    h_open(&h, 1, 0);
    uint8_t *big = calloc(1, WAL_PAYLOAD_MAX + 1);
    cr_assert_eq(wal_writer_append(h.w, 1, 1, big, WAL_PAYLOAD_MAX + 1), WAL_ETOOBIG);
    cr_assert_eq(wal_writer_last_lsn(h.w), 0, "a refused append used an LSN");
    free(big);
    h_append(&h, 3); /* WAL_PAYLOAD_MAX, empty, small */
    h_wait(&h, 3);
    h_close(&h);
    expect_log(h.dir, 3, len_limits);

    wal_writer *w = NULL;
    wal_writer_config cfg = {.dir = h.dir, .next_lsn = 0, .durable_cb = on_durable, .arg = &h};
    cr_assert_eq(wal_writer_open(&h.loop, &cfg, &w), -EINVAL, "next_lsn 0");
    cfg.next_lsn = 4;
    cfg.durable_cb = NULL;
    cr_assert_eq(wal_writer_open(&h.loop, &cfg, &w), -EINVAL, "no durable callback");
    cfg.durable_cb = on_durable;
    cfg.dir = NULL;
    cr_assert_eq(wal_writer_open(&h.loop, &cfg, &w), -EINVAL, "no directory");
    cr_assert_null(w);
    h_fini(&h);
}

Test(wal, reader_empty_and_missing_directory)
{
    char dir[WAL_PATH_MAX];
    fresh_dir(dir, sizeof(dir), "missing");
    scan s;
    scan_log(dir, 1, len_small, &s);
    cr_assert_eq(s.rc, 0);
    cr_assert_eq(s.count, 0);
    cr_assert_eq(s.tail.last_lsn, 0);
    cr_assert_str_eq(s.tail.last_segment, "");
    cr_assert_eq(s.tail.torn_bytes, 0);
    uint64_t oldest = 99;
    cr_assert_eq(wal_oldest_lsn(dir, &oldest), 0);
    cr_assert_eq(oldest, 0);
    cr_assert_eq(mkdir(dir, 0755), 0);
    oldest = 99;
    cr_assert_eq(wal_oldest_lsn(dir, &oldest), 0);
    cr_assert_eq(oldest, 0);
    scan_log(dir, 5, len_small, &s);
    cr_assert_eq(s.rc, 0);
    cr_assert_eq(s.count, 0);
    cr_assert_eq(s.tail.last_lsn, 4, "from_lsn - 1 when there is no record");
}

Test(wal, reader_from_lsn_anywhere)
{
    static th h;
    h_init(&h, "wal");
    h_write_log(&h, 300, 37, 4096);
    uint64_t segs[64];
    size_t n = list_segments(h.dir, segs, 64);
    cr_assert_geq(n, 5, "expected several segments, got %zu", n);
    cr_assert_eq(segs[0], 1);

    uint64_t froms[] = {0,           1,           2,   segs[1] - 1, segs[1], segs[1] + 1,
                        segs[2] + 3, segs[n - 1], 299, 300,         301,     1000};
    for (size_t i = 0; i < sizeof(froms) / sizeof(froms[0]); i++) {
        uint64_t from = froms[i] == 0 ? 1 : froms[i];
        scan s;
        scan_log(h.dir, froms[i], len_small, &s);
        cr_assert_eq(s.rc, 0, "from %" PRIu64 ": %s", from, s.error);
        uint64_t want = from <= 300 ? 301 - from : 0;
        cr_assert_eq(s.count, want, "from %" PRIu64 ": %" PRIu64 " records", from, s.count);
        if (want > 0) {
            cr_assert_eq(s.first, from);
            cr_assert_eq(s.last, 300);
        }
        cr_assert_eq(s.tail.last_lsn, from <= 301 ? 300 : from - 1, "from %" PRIu64, from);
        cr_assert_eq(s.tail.torn_bytes, 0);
    }
    h_fini(&h);
}

/* Polls until fault_io has seen `n` unlinks (the drop runs on the writer thread). */
static void wait_unlinks(fault_io *fio, uint64_t n)
{
    for (int i = 0; i < 5000 && fault_io_calls(fio, FAULT_UNLINK) < n; i++)
        sleep_ms(1);
    cr_assert_eq(fault_io_calls(fio, FAULT_UNLINK), n);
}

Test(wal, drop_before_deletes_whole_segments_only)
{
    static th h;
    h_init(&h, "wal");
    fault_io *fio = fio_new();
    cr_assert_eq(h_open_io(&h, 1, 4096, 0, fault_io_table(fio)), 0);
    while (h.appended < 300) {
        h_append(&h, 30);
        h_wait(&h, h.appended);
    }
    uint64_t segs[64], now[64];
    size_t n = list_segments(h.dir, segs, 64);
    cr_assert_geq(n, 6);

    /* Segment 0 holds 1..segs[1]-1: one LSN short of it deletes nothing. */
    wal_writer_drop_before(h.w, segs[1] - 2);
    h_append(&h, 1);
    h_wait(&h, h.appended); /* the writer thread has taken the request by now */
    sleep_ms(20);
    cr_assert_eq(fault_io_calls(fio, FAULT_UNLINK), 0);
    cr_assert_eq(list_segments(h.dir, now, 64), n);

    /* Exactly segments 0..2. */
    uint64_t dir_syncs = fault_io_calls(fio, FAULT_FSYNC_DIR);
    wal_writer_drop_before(h.w, segs[3] - 1);
    wait_unlinks(fio, 3);
    sleep_ms(20);
    cr_assert_eq(fault_io_calls(fio, FAULT_UNLINK), 3);
    size_t m = list_segments(h.dir, now, 64);
    cr_assert_eq(m, n - 3);
    for (size_t i = 0; i < m; i++)
        cr_assert_eq(now[i], segs[i + 3]);
    for (int i = 0; i < 1000 && fault_io_calls(fio, FAULT_FSYNC_DIR) == dir_syncs; i++)
        sleep_ms(1);
    cr_assert_gt(fault_io_calls(fio, FAULT_FSYNC_DIR), dir_syncs, "deletions not synced");

    /* Everything: all but the active segment. */
    wal_writer_drop_before(h.w, UINT64_MAX);
    wait_unlinks(fio, n - 1);
    sleep_ms(20);
    cr_assert_eq(list_segments(h.dir, now, 64), 1);
    cr_assert_eq(now[0], segs[n - 1], "the active segment was deleted");

    /* The writer still appends to it, and the log reads from there. */
    h_append(&h, 5);
    h_wait(&h, h.appended);
    h_close(&h);
    cr_assert_eq(fault_io_calls(fio, FAULT_UNLINK), n - 1);
    scan s;
    scan_log(h.dir, 1, len_small, &s);
    cr_assert_eq(s.rc, WAL_ENOTFOUND);
    scan_log(h.dir, segs[n - 2], len_small, &s);
    cr_assert_eq(s.rc, WAL_ENOTFOUND);
    scan_log(h.dir, segs[n - 1], len_small, &s);
    cr_assert_eq(s.rc, 0);
    cr_assert_eq(s.first, segs[n - 1]);
    cr_assert_eq(s.last, h.appended);
    cr_assert_eq(s.count, h.appended - segs[n - 1] + 1);
    h_fini(&h);
    fio_free(fio);
}

/* The catalog applier's floor: segments holding a record past keep_after
 * stay, whatever drop_before asks, until the floor moves. */
Test(wal, keep_after_floor_holds_back_drops)
{
    static th h;
    h_init(&h, "wal");
    fault_io *fio = fio_new();
    cr_assert_eq(h_open_io(&h, 1, 4096, 0, fault_io_table(fio)), 0);
    while (h.appended < 300) {
        h_append(&h, 30);
        h_wait(&h, h.appended);
    }
    uint64_t segs[64], now[64];
    size_t n = list_segments(h.dir, segs, 64);
    cr_assert_geq(n, 6);

    /* Floor inside segment 2: segments 0 and 1 may go, 2 and later stay. */
    wal_writer_keep_after(h.w, segs[2] + 1);
    wal_writer_drop_before(h.w, UINT64_MAX);
    wait_unlinks(fio, 2);
    h_append(&h, 1);
    h_wait(&h, h.appended);
    sleep_ms(20);
    cr_assert_eq(fault_io_calls(fio, FAULT_UNLINK), 2, "the floor was ignored");
    size_t m = list_segments(h.dir, now, 64);
    cr_assert_eq(m, n - 2);
    cr_assert_eq(now[0], segs[2]);

    /* The floor moves on: the same request now deletes up to it. */
    wal_writer_keep_after(h.w, segs[4] - 1);
    wal_writer_drop_before(h.w, UINT64_MAX);
    wait_unlinks(fio, 4);
    sleep_ms(20);
    cr_assert_eq(fault_io_calls(fio, FAULT_UNLINK), 4);
    m = list_segments(h.dir, now, 64);
    cr_assert_eq(now[0], segs[4]);

    /* And drop_before below the floor still limits on its own. */
    wal_writer_keep_after(h.w, UINT64_MAX);
    wal_writer_drop_before(h.w, segs[5] - 1);
    wait_unlinks(fio, 5);
    sleep_ms(20);
    cr_assert_eq(fault_io_calls(fio, FAULT_UNLINK), 5);
    h_close(&h);
    h_fini(&h);
    fio_free(fio);
}

Test(wal, reader_not_found_after_drop)
{
    static th h;
    h_init(&h, "wal");
    fault_io *fio = fio_new();
    cr_assert_eq(h_open_io(&h, 1, 4096, 0, fault_io_table(fio)), 0);
    while (h.appended < 200) {
        h_append(&h, 40);
        h_wait(&h, h.appended);
    }
    uint64_t segs[64];
    size_t n = list_segments(h.dir, segs, 64);
    cr_assert_geq(n, 4);
    uint64_t oldest = 0;
    cr_assert_eq(wal_oldest_lsn(h.dir, &oldest), 0);
    cr_assert_eq(oldest, 1);
    wal_writer_drop_before(h.w, segs[2] - 1);
    wait_unlinks(fio, 2);
    h_close(&h);
    cr_assert_eq(wal_oldest_lsn(h.dir, &oldest), 0);
    cr_assert_eq(oldest, segs[2]);
    scan s;
    uint64_t gone[] = {1, segs[1] - 1, segs[1], segs[2] - 1};
    for (int i = 0; i < 4; i++) {
        scan_log(h.dir, gone[i], len_small, &s);
        cr_assert_eq(s.rc, WAL_ENOTFOUND, "from %" PRIu64, gone[i]);
    }
    scan_log(h.dir, segs[2], len_small, &s);
    cr_assert_eq(s.rc, 0);
    cr_assert_eq(s.count, 200 - segs[2] + 1);
    scan_log(h.dir, segs[2] + 5, len_small, &s);
    cr_assert_eq(s.rc, 0);
    cr_assert_eq(s.first, segs[2] + 5);
    cr_assert_eq(s.last, 200);
    h_fini(&h);
    fio_free(fio);
}

/* ---- Rotation ------------------------------------------------------------ */

/*
 * Where the frames of each batch must go: a segment that has records
 * rotates when the next frame would overflow it, an empty one takes any
 * frame; each run of frames in one segment is one write and one sync.
 */
static void simulate_segments(len_fn len_of, uint64_t records, uint64_t per_batch,
                              uint64_t seg_bytes, uint64_t *segments, uint64_t *runs)
{
    uint64_t seg = 0; /* size of the active segment; 0 = none yet */
    *segments = *runs = 0;
    for (uint64_t a = 1; a <= records; a += per_batch) {
        uint64_t b = a + per_batch - 1 < records ? a + per_batch - 1 : records;
        uint64_t lsn = a;
        while (lsn <= b) {
            uint64_t f = wal_frame_size(len_of(lsn));
            if (seg == 0 || (seg > WAL_SEGMENT_HEADER && seg + f > seg_bytes)) {
                (*segments)++;
                seg = WAL_SEGMENT_HEADER;
            }
            uint64_t run = f;
            for (lsn++; lsn <= b && seg + run + wal_frame_size(len_of(lsn)) <= seg_bytes; lsn++)
                run += wal_frame_size(len_of(lsn));
            seg += run;
            (*runs)++;
        }
    }
}

Test(wal, rotation_makes_tightly_packed_segments)
{
    static th h;
    h_init(&h, "wal");
    h.len_of = len_small;
    h_open(&h, 1, 4096);
    while (h.appended < 400) {
        h_append(&h, h.appended + 23 <= 400 ? 23 : (int)(400 - h.appended));
        h_wait(&h, h.appended);
    }
    wal_stats s;
    wal_writer_stats(h.w, &s);
    h_close(&h);
    size_t n = check_segments(h.dir, 4096, 7);
    uint64_t segments, runs;
    simulate_segments(len_small, 400, 23, 4096, &segments, &runs);
    cr_assert_geq(n, 8);
    cr_assert_eq(n, segments);
    cr_assert_eq(s.rotations, n, "rotations %" PRIu64 " vs %zu segments", s.rotations, n);
    cr_assert_eq(s.batches, 18);
    cr_assert_eq(s.syncs, runs, "one sync per segment a batch touches: %" PRIu64 " vs %" PRIu64,
                 s.syncs, runs);
    cr_assert_gt(runs, s.batches, "fixture: some batch should span a rotation");
    expect_log(h.dir, 400, len_small);
    h_fini(&h);
}

static uint32_t len_oversize(uint64_t lsn)
{
    return lsn == 5 ? 10000 : lsn == 6 ? 5000 : 50;
}

Test(wal, oversized_record_gets_a_segment_of_its_own)
{
    static th h;
    h_init(&h, "wal");
    h.len_of = len_oversize;
    h_open(&h, 1, 4096);
    h_append(&h, 4);
    h_wait(&h, 4);
    h_append(&h, 6); /* 5 and 6 are larger than a segment */
    h_wait(&h, 10);
    h_close(&h);
    uint64_t segs[16];
    size_t n = list_segments(h.dir, segs, 16);
    cr_assert_eq(n, 4);
    cr_assert_eq(segs[0], 1);
    cr_assert_eq(segs[1], 5);
    cr_assert_eq(segs[2], 6);
    cr_assert_eq(segs[3], 7);
    char path[WAL_PATH_MAX + 32];
    seg_path(h.dir, 5, path, sizeof(path));
    cr_assert_eq(file_size(path), (int64_t)(WAL_SEGMENT_HEADER + wal_frame_size(10000)));
    seg_path(h.dir, 6, path, sizeof(path));
    cr_assert_eq(file_size(path), (int64_t)(WAL_SEGMENT_HEADER + wal_frame_size(5000)));
    cr_assert_eq(check_segments(h.dir, 4096, 7), 4);
    expect_log(h.dir, 10, len_oversize);
    h_fini(&h);
}

/* A frame that exactly fills a segment goes into it, at a batch's start or inside one. */
Test(wal, frame_that_fills_a_segment_exactly_stays_in_it)
{
    static th h;
    h_init(&h, "wal");
    h.len_of = len_100;
    const uint64_t seg = WAL_SEGMENT_HEADER + 30 * wal_frame_size(100);
    h_open(&h, 1, seg);
    h_append(&h, 29);
    h_wait(&h, 29);
    h_append(&h, 1); /* LSN 30 fills segment 1 at the start of a batch */
    h_wait(&h, 30);
    h_append(&h, 30); /* 31..60 fill segment 31 inside one batch */
    h_wait(&h, 60);
    h_append(&h, 1);
    h_wait(&h, 61);
    wal_stats stats;
    wal_writer_stats(h.w, &stats);
    h_close(&h);
    uint64_t segs[8];
    cr_assert_eq(list_segments(h.dir, segs, 8), 3);
    cr_assert_eq(segs[0], 1);
    cr_assert_eq(segs[1], 31);
    cr_assert_eq(segs[2], 61);
    char path[WAL_PATH_MAX + 32];
    seg_path(h.dir, 1, path, sizeof(path));
    cr_assert_eq(file_size(path), (int64_t)seg);
    seg_path(h.dir, 31, path, sizeof(path));
    cr_assert_eq(file_size(path), (int64_t)seg);
    cr_assert_eq(check_segments(h.dir, seg, 7), 3);
    expect_log(h.dir, 61, len_100);
    cr_assert_eq(stats.batches, 4);
    cr_assert_eq(stats.syncs, 4, "a batch that fits one segment is one write and one sync");
    cr_assert_eq(stats.rotations, 3);
    h_fini(&h);
}

/* ---- Reopen -------------------------------------------------------------- */

Test(wal, reopen_continues_the_log)
{
    static th h;
    h_init(&h, "wal");
    h_write_log(&h, 150, 20, 4096);
    uint64_t segs[64];
    size_t n = list_segments(h.dir, segs, 64);
    char last[WAL_PATH_MAX + 32];
    seg_path(h.dir, segs[n - 1], last, sizeof(last));
    int64_t size = file_size(last);
    cr_assert_leq((uint64_t)size + wal_frame_size(len_small(151)), 4096,
                  "fixture: the next record should fit the last segment");

    h_open(&h, 151, 4096);
    cr_assert_eq(wal_writer_durable_lsn(h.w), 150);
    h_append(&h, 1);
    h_wait(&h, 151);
    cr_assert_eq(file_size(last), size + (int64_t)wal_frame_size(len_small(151)),
                 "the reopened writer did not continue the last segment");
    while (h.appended < 300) {
        h_append(&h, h.appended + 17 <= 300 ? 17 : (int)(300 - h.appended));
        h_wait(&h, h.appended);
    }
    cr_assert_eq(h.durable_log[0], 151);
    cr_assert_not(h.non_monotonic);
    h_close(&h);
    check_segments(h.dir, 4096, 7);
    expect_log(h.dir, 300, len_small);
    h_fini(&h);
}

Test(wal, reopen_refuses_next_lsn_before_last_segment)
{
    static th h;
    h_init(&h, "wal");
    h_write_log(&h, 200, 50, 4096);
    uint64_t segs[64], after[64];
    size_t n = list_segments(h.dir, segs, 64);
    cr_assert_geq(n, 2);
    uint64_t bad[] = {1, segs[1], segs[n - 1] - 1};
    for (int i = 0; i < 3; i++) {
        int rc = h_open_io(&h, bad[i], 4096, 0, NULL);
        cr_assert_eq(rc, WAL_EGAP, "next_lsn %" PRIu64 ": %s", bad[i], wal_strerror(rc));
    }
    cr_assert_eq(list_segments(h.dir, after, 64), n);
    expect_log(h.dir, 200, len_small);
    h_fini(&h);
}

/*
 * wal.h: wal_writer_open "returns ... WAL_EGAP if the directory's last LSN
 * disagrees" with next_lsn - 1. A next_lsn inside the last segment, or past
 * its end, disagrees as much as one before it does.
 */
Test(wal, reopen_refuses_next_lsn_that_disagrees_with_log_end)
{
    static th h;
    h_init(&h, "wal");
    h_write_log(&h, 10, 10, 0); /* one segment: 1..10 */
    uint64_t bad[] = {1, 5, 10, 12, 20};
    for (int i = 0; i < 5; i++) {
        int rc = h_open_io(&h, bad[i], 0, 0, NULL);
        if (rc == 0) {
            /* Show what the accepted writer does to the log. */
            h_append(&h, 1);
            h_wait(&h, h.appended);
            h_close(&h);
            scan s;
            scan_log(h.dir, 1, len_small, &s);
            cr_assert_fail("next_lsn %" PRIu64 " accepted for a log ending at 10; after one "
                           "append the reader says: %s (%s), %" PRIu64 " records",
                           bad[i], wal_strerror(s.rc), s.error, s.count);
        }
        cr_assert_eq(rc, WAL_EGAP, "next_lsn %" PRIu64 ": %s", bad[i], wal_strerror(rc));
    }
    h_open(&h, 11, 0);
    h_close(&h);
    h_fini(&h);
}

/* ======================================================================== */
/* Corruption before the tail                                               */
/* ======================================================================== */

/* Asserts a scan from 1 stopped with `err` after LSN `good_last`, naming the place. */
static void expect_error_at(const char *dir, int err, uint64_t good_last, const char *file,
                            uint64_t off, uint64_t lsn, const char *what)
{
    scan s;
    scan_log(dir, 1, len_small, &s);
    cr_assert_eq(s.rc, err, "%s: reader returned %d (%s), wanted %s", what, s.rc,
                 wal_strerror(s.rc), wal_strerror(err));
    cr_assert_eq(s.count, good_last, "%s: %" PRIu64 " records before the error", what, s.count);
    cr_assert(strstr(s.error, file) != NULL, "%s: error does not name %s: %s", what, file, s.error);
    cr_assert(has_num(s.error, "offset ", off), "%s: error does not name offset %" PRIu64 ": %s",
              what, off, s.error);
    cr_assert(has_num(s.error, "LSN ", lsn), "%s: error does not name LSN %" PRIu64 ": %s", what,
              lsn, s.error);
}

Test(wal, corrupt_record_before_the_last_segment_is_an_error)
{
    static th h;
    h_init(&h, "wal");
    h_write_log(&h, 200, 40, 4096);
    uint64_t segs[64];
    size_t n = list_segments(h.dir, segs, 64);
    cr_assert_geq(n, 3);
    char path[WAL_PATH_MAX + 32];
    seg_path(h.dir, segs[1], path, sizeof(path));
    size_t len;
    uint8_t *orig = read_all(path, &len);
    uint64_t lsn = segs[1] + 2;
    size_t off = frame_offset(orig, len, lsn);
    size_t fsz = wal_frame_size(len_small(lsn));

    /* One flipped byte anywhere in the frame. */
    for (size_t i = 0; i < fsz; i++) {
        uint8_t *b = malloc(len);
        memcpy(b, orig, len);
        b[off + i] ^= 0x10;
        write_all(path, b, len);
        free(b);
        char what[64];
        snprintf(what, sizeof(what), "byte %zu of the frame", i);
        expect_error_at(h.dir, WAL_ECORRUPT, lsn - 1, path, off, lsn, what);
    }

    /* A well-formed frame with the wrong LSN. */
    {
        uint8_t *b = malloc(len);
        memcpy(b, orig, len);
        uint8_t p[200];
        rec_payload(lsn + 1, p, len_small(lsn));
        wal_frame_encode(b + off, lsn + 1, rec_type(lsn), rec_time(lsn), p, len_small(lsn));
        write_all(path, b, len);
        free(b);
        expect_error_at(h.dir, WAL_ECORRUPT, lsn - 1, path, off, lsn, "wrong LSN");
    }

    /* A segment cut short in a frame. */
    write_all(path, orig, len);
    truncate_file(path, off + fsz / 2);
    expect_error_at(h.dir, WAL_ECORRUPT, lsn - 1, path, off, lsn, "cut short");

    write_all(path, orig, len);
    expect_log(h.dir, 200, len_small);
    free(orig);
    h_fini(&h);
}

Test(wal, corrupt_header_before_the_last_segment_is_an_error)
{
    static th h;
    h_init(&h, "wal");
    h_write_log(&h, 200, 40, 4096);
    uint64_t segs[64];
    size_t n = list_segments(h.dir, segs, 64);
    cr_assert_geq(n, 3);
    char path[WAL_PATH_MAX + 32];
    seg_path(h.dir, segs[1], path, sizeof(path));
    size_t len;
    uint8_t *orig = read_all(path, &len);
    for (size_t i = 0; i < WAL_SEGMENT_HEADER; i++) {
        uint8_t *b = malloc(len);
        memcpy(b, orig, len);
        b[i] ^= 0x01;
        write_all(path, b, len);
        free(b);
        char what[64];
        snprintf(what, sizeof(what), "header byte %zu", i);
        expect_error_at(h.dir, WAL_ECORRUPT, segs[1] - 1, path, 0, segs[1], what);
    }
    /* A consistent header whose first LSN is not the file's name. */
    {
        uint8_t *b = malloc(len);
        memcpy(b, orig, len);
        put_le64(b + 16, segs[1] + 1);
        put_le64(b + 24, XXH3_64bits(b, 24));
        write_all(path, b, len);
        free(b);
        expect_error_at(h.dir, WAL_ECORRUPT, segs[1] - 1, path, 0, segs[1], "name mismatch");
    }
    /* A header cut short. */
    write_all(path, orig, 10);
    expect_error_at(h.dir, WAL_ECORRUPT, segs[1] - 1, path, 0, segs[1], "10-byte segment");
    write_all(path, orig, len);
    expect_log(h.dir, 200, len_small);
    free(orig);
    h_fini(&h);
}

/*
 * Batches of 10 in one segment. A bad record followed by the start of a
 * later batch sat in synced data: corruption. A bad record in the last
 * batch is the torn tail, whatever follows it.
 */
Test(wal, corrupt_record_in_synced_part_of_last_segment_is_an_error)
{
    static th h;
    h_init(&h, "wal");
    h_write_log(&h, 50, 10, 0);
    char path[WAL_PATH_MAX + 32];
    seg_path(h.dir, 1, path, sizeof(path));
    size_t len;
    uint8_t *orig = read_all(path, &len);
    scan s;
    scan_log(h.dir, 1, len_small, &s);
    cr_assert_eq(s.nflagged, 5);
    for (size_t i = 0; i < 5; i++)
        cr_assert_eq(s.flagged[i], 10 * i + 1, "fixture: batch %zu", i);

    uint8_t *b = malloc(len + 512);
    cr_assert_not_null(b);
    static const uint64_t synced[] = {1, 11, 25, 31, 40};
    for (size_t v = 0; v < 5; v++) {
        uint64_t lsn = synced[v];
        size_t off = frame_offset(orig, len, lsn), fsz = wal_frame_size(len_small(lsn));
        for (size_t i = 0; i < fsz; i++) {
            memcpy(b, orig, len);
            b[off + i] ^= 0x04;
            write_all(path, b, len);
            char what[64];
            snprintf(what, sizeof(what), "LSN %" PRIu64 " byte %zu", lsn, i);
            expect_error_at(h.dir, WAL_ECORRUPT, lsn - 1, path, off, lsn, what);
        }
    }

    static const uint64_t last_batch[] = {41, 45, 50};
    for (size_t v = 0; v < 3; v++) {
        uint64_t lsn = last_batch[v];
        size_t off = frame_offset(orig, len, lsn);
        memcpy(b, orig, len);
        b[off + 30] ^= 0x04;
        write_all(path, b, len);
        scan_log(h.dir, 1, len_small, &s);
        cr_assert_eq(s.rc, 0, "LSN %" PRIu64 ": %s", lsn, s.error);
        cr_assert_eq(s.tail.last_lsn, lsn - 1);
        cr_assert_eq(s.tail.good_bytes, off);
        cr_assert_eq(s.tail.torn_bytes, len - off);
    }

    /* A valid batch start with an LSN the log already has proves nothing. */
    {
        size_t off45 = frame_offset(orig, len, 45), off41 = frame_offset(orig, len, 41);
        size_t f41 = wal_frame_size(len_small(41));
        memcpy(b, orig, len);
        b[off45 + 30] ^= 0x04;
        memcpy(b + len, orig + off41, f41);
        write_all(path, b, len + f41);
        scan_log(h.dir, 1, len_small, &s);
        cr_assert_eq(s.rc, 0, "stale batch start: %s", s.error);
        cr_assert_eq(s.tail.last_lsn, 44);
        cr_assert_eq(s.tail.torn_bytes, len + f41 - off45);
    }

    write_all(path, orig, len);
    expect_log(h.dir, 50, len_small);
    free(b);
    free(orig);
    h_fini(&h);
}

Test(wal, missing_or_extra_segment_is_a_gap)
{
    static th h;
    h_init(&h, "wal");
    h_write_log(&h, 200, 40, 4096);
    uint64_t segs[64];
    size_t n = list_segments(h.dir, segs, 64);
    cr_assert_geq(n, 4);
    char prev[WAL_PATH_MAX + 32], gone[WAL_PATH_MAX + 32], extra[WAL_PATH_MAX + 32];
    seg_path(h.dir, segs[1], prev, sizeof(prev));
    seg_path(h.dir, segs[2], gone, sizeof(gone));
    size_t len, plen;
    uint8_t *saved = read_all(gone, &len);
    uint8_t *pbytes = read_all(prev, &plen);

    cr_assert_eq(unlink(gone), 0);
    expect_error_at(h.dir, WAL_EGAP, segs[2] - 1, prev, plen, segs[2], "missing segment");
    /* Reading from after the hole is fine. */
    scan s;
    scan_log(h.dir, segs[3], len_small, &s);
    cr_assert_eq(s.rc, 0);
    cr_assert_eq(s.last, 200);
    write_all(gone, saved, len);

    /* A duplicate of segment 1 under a name inside its range. */
    seg_path(h.dir, segs[1] + 1, extra, sizeof(extra));
    write_all(extra, pbytes, plen);
    scan_log(h.dir, 1, len_small, &s);
    cr_assert(s.rc == WAL_EGAP || s.rc == WAL_ECORRUPT, "extra segment: %s", wal_strerror(s.rc));
    cr_assert_lt(s.count, 200);
    cr_assert_eq(unlink(extra), 0);

    expect_log(h.dir, 200, len_small);
    free(saved);
    free(pbytes);
    h_fini(&h);
}

Test(wal, stray_file_is_not_a_segment)
{
    static th h;
    h_init(&h, "wal");
    h_write_log(&h, 20, 20, 0);
    static const char *names[] = {
        "notes.txt",
        "0000000000000001.wal.tmp",
        "0000000000000001.WAL",
        "000000000000001.wal",
        "00000000000000015.wal",
        "000000000000000g.wal",
        "000000000000000A.wal",
        "0000000000000000.wal",
        ".0000000000000002.wal",
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        char p[WAL_PATH_MAX + 64];
        snprintf(p, sizeof(p), "%s/%s", h.dir, names[i]);
        write_all(p, (const uint8_t *)"x", 1);
        wal_reader *r = NULL;
        cr_assert_eq(wal_reader_open(h.dir, 1, NULL, &r), WAL_EBADSEG, "%s", names[i]);
        cr_assert_eq(h_open_io(&h, 21, 0, 0, NULL), WAL_EBADSEG, "writer with %s", names[i]);
        uint64_t oldest;
        cr_assert_eq(wal_oldest_lsn(h.dir, &oldest), WAL_EBADSEG, "oldest with %s", names[i]);
        cr_assert_eq(unlink(p), 0);
    }
    char sub[WAL_PATH_MAX + 64];
    snprintf(sub, sizeof(sub), "%s/lost+found", h.dir);
    cr_assert_eq(mkdir(sub, 0755), 0);
    wal_reader *r = NULL;
    cr_assert_eq(wal_reader_open(h.dir, 1, NULL, &r), WAL_EBADSEG, "a subdirectory");
    rmdir(sub);
    expect_log(h.dir, 20, len_small);
    h_fini(&h);
}

/* ======================================================================== */
/* Torn tail                                                                */
/* ======================================================================== */

typedef struct torn_fixture {
    char path[WAL_PATH_MAX + 32]; /* last segment */
    uint8_t *orig;
    size_t len;
    size_t off, fsz; /* the last record */
    uint64_t last;   /* its LSN */
} torn_fixture;

/* Two segments of 40-byte records; the last record is in the second. */
static void torn_setup(th *h, torn_fixture *t)
{
    h->len_of = len_40;
    h_write_log(h, 70, 25, 4096);
    uint64_t segs[8];
    size_t n = list_segments(h->dir, segs, 8);
    cr_assert_eq(n, 2);
    seg_path(h->dir, segs[1], t->path, sizeof(t->path));
    t->orig = read_all(t->path, &t->len);
    last_frame(t->path, &t->off, &t->fsz, &t->last);
    cr_assert_eq(t->last, 70);
    cr_assert_eq(t->fsz, wal_frame_size(40));
    cr_assert_eq(t->off + t->fsz, t->len);
}

/* The reader ends cleanly at 69 with `torn` bytes after it; repair cuts them. */
static void torn_expect_and_repair(th *h, torn_fixture *t, size_t torn, const char *what)
{
    scan s;
    scan_log(h->dir, 1, len_40, &s);
    cr_assert_eq(s.rc, 0, "%s: reader: %s (%s)", what, wal_strerror(s.rc), s.error);
    cr_assert_eq(s.count, 69, "%s: %" PRIu64 " records", what, s.count);
    cr_assert_eq(s.tail.last_lsn, 69, "%s", what);
    cr_assert_str_eq(s.tail.last_segment, t->path, "%s", what);
    cr_assert_eq(s.tail.good_bytes, t->off, "%s: good bytes %" PRIu64, what, s.tail.good_bytes);
    cr_assert_eq(s.tail.torn_bytes, torn, "%s: torn bytes %" PRIu64, what, s.tail.torn_bytes);
    if (torn > 0)
        cr_assert_not_null(s.tail.torn_reason, "%s", what);
    else
        cr_assert_null(s.tail.torn_reason, "%s", what);

    /* Reading from inside the log sees the same end. */
    scan s2;
    scan_log(h->dir, 60, len_40, &s2);
    cr_assert_eq(s2.rc, 0);
    cr_assert_eq(s2.count, 10, "%s", what);
    cr_assert_eq(s2.tail.torn_bytes, torn);

    cr_assert_eq(wal_tail_repair(h->dir, &s.tail, NULL), 0, "%s: repair", what);
    cr_assert_eq(file_size(t->path), (int64_t)t->off, "%s: size after repair", what);
    expect_log(h->dir, 69, len_40);
}

/* A writer continues after 69; the log reads 1..71. */
static void torn_continue(th *h, const char *what)
{
    int rc = h_open_io(h, 70, 4096, 0, NULL);
    cr_assert_eq(rc, 0, "%s: reopen: %s", what, wal_strerror(rc));
    h_append(h, 2);
    h_wait(h, 71);
    h_close(h);
    expect_log(h->dir, 71, len_40);
}

Test(wal, torn_tail_every_truncation_of_the_last_record)
{
    static th h;
    h_init(&h, "wal");
    static torn_fixture t;
    torn_setup(&h, &t);
    for (size_t cut = 0; cut < t.fsz; cut++) {
        char what[64];
        snprintf(what, sizeof(what), "last record cut to %zu bytes", cut);
        write_all(t.path, t.orig, t.off + cut);
        torn_expect_and_repair(&h, &t, cut, what);
        torn_continue(&h, what);
    }
    free(t.orig);
    h_fini(&h);
}

Test(wal, torn_tail_every_byte_flip_in_the_last_record)
{
    static th h;
    h_init(&h, "wal");
    static torn_fixture t;
    torn_setup(&h, &t);
    for (size_t i = 0; i < t.fsz; i++) {
        for (int v = 0; v < 2; v++) {
            char what[64];
            snprintf(what, sizeof(what), "byte %zu of the last record ^ %#x", i, v ? 0xFF : 0x01);
            uint8_t *b = malloc(t.len);
            memcpy(b, t.orig, t.len);
            b[t.off + i] ^= v ? 0xFF : 0x01;
            write_all(t.path, b, t.len);
            free(b);
            torn_expect_and_repair(&h, &t, t.fsz, what);
            if (v == 0)
                torn_continue(&h, what);
            else
                write_all(t.path, t.orig, t.off); /* back to 1..69 */
        }
    }
    free(t.orig);
    h_fini(&h);
}

Test(wal, torn_tail_with_garbage_after_the_last_record)
{
    static th h;
    h_init(&h, "wal");
    static torn_fixture t;
    torn_setup(&h, &t);
    /* Zeros (a preallocated tail) and random bytes after record 70. */
    for (int kind = 0; kind < 2; kind++) {
        for (size_t extra = 1; extra <= 200; extra += 13) {
            uint8_t *b = malloc(t.len + extra);
            memcpy(b, t.orig, t.len);
            for (size_t i = 0; i < extra; i++)
                b[t.len + i] = kind == 0 ? 0 : (uint8_t)(i * 131 + 7);
            write_all(t.path, b, t.len + extra);
            free(b);
            scan s;
            scan_log(h.dir, 1, len_40, &s);
            cr_assert_eq(s.rc, 0, "%zu bytes of %s", extra, kind ? "garbage" : "zeros");
            cr_assert_eq(s.tail.last_lsn, 70);
            cr_assert_eq(s.tail.good_bytes, t.len);
            cr_assert_eq(s.tail.torn_bytes, extra);
            cr_assert_eq(wal_tail_repair(h.dir, &s.tail, NULL), 0);
            cr_assert_eq(file_size(t.path), (int64_t)t.len);
        }
    }
    free(t.orig);
    h_fini(&h);
}

Test(wal, torn_segment_header_is_cut_away)
{
    static th h;
    h_init(&h, "wal");
    static torn_fixture t;
    torn_setup(&h, &t);
    uint64_t segs[8];
    list_segments(h.dir, segs, 8);
    uint64_t first = segs[1];
    for (size_t keep = 1; keep < WAL_SEGMENT_HEADER; keep++) {
        write_all(t.path, t.orig, keep);
        scan s;
        scan_log(h.dir, 1, len_40, &s);
        cr_assert_eq(s.rc, 0, "%zu-byte header: %s", keep, s.error);
        cr_assert_eq(s.count, first - 1);
        cr_assert_eq(s.tail.last_lsn, first - 1);
        cr_assert_str_eq(s.tail.last_segment, t.path);
        cr_assert_eq(s.tail.good_bytes, 0);
        cr_assert_eq(s.tail.torn_bytes, keep);
        cr_assert_not_null(s.tail.torn_reason);
        cr_assert_eq(wal_tail_repair(h.dir, &s.tail, NULL), 0);
        cr_assert_eq(file_size(t.path), -1, "%zu-byte header: segment not deleted", keep);
        expect_log(h.dir, first - 1, len_40);
    }
    /* A corrupt (full-length) header of the last segment is a torn one too. */
    {
        uint8_t *b = malloc(t.len);
        memcpy(b, t.orig, t.len);
        b[3] ^= 0x40;
        write_all(t.path, b, t.len);
        free(b);
        scan s;
        scan_log(h.dir, 1, len_40, &s);
        cr_assert_eq(s.rc, 0);
        cr_assert_eq(s.tail.last_lsn, first - 1);
        cr_assert_eq(s.tail.good_bytes, 0);
        cr_assert_eq(s.tail.torn_bytes, t.len);
        cr_assert_eq(wal_tail_repair(h.dir, &s.tail, NULL), 0);
        cr_assert_eq(file_size(t.path), -1);
    }
    /* The writer starts the segment again. */
    cr_assert_eq(h_open_io(&h, first, 4096, 0, NULL), 0);
    h_append(&h, (int)(71 - first));
    h_wait(&h, 70);
    h_close(&h);
    cr_assert_eq(file_size(t.path), (int64_t)t.len, "rewritten segment differs in size");
    expect_log(h.dir, 70, len_40);
    free(t.orig);
    h_fini(&h);
}

Test(wal, header_only_last_segment_is_continued)
{
    static th h;
    h_init(&h, "wal");
    static torn_fixture t;
    torn_setup(&h, &t);
    uint64_t segs[8];
    list_segments(h.dir, segs, 8);
    write_all(t.path, t.orig, WAL_SEGMENT_HEADER);
    scan s;
    scan_log(h.dir, 1, len_40, &s);
    cr_assert_eq(s.rc, 0);
    cr_assert_eq(s.tail.last_lsn, segs[1] - 1);
    cr_assert_eq(s.tail.good_bytes, WAL_SEGMENT_HEADER);
    cr_assert_eq(s.tail.torn_bytes, 0);
    cr_assert_eq(wal_tail_repair(h.dir, &s.tail, NULL), 0);
    cr_assert_eq(h_open_io(&h, segs[1], 4096, 0, NULL), 0);
    h_append(&h, (int)(71 - segs[1]));
    h_wait(&h, 70);
    h_close(&h);
    /* The same records; the continuing writer marks 57 as its first batch start. */
    cr_assert_eq(file_size(t.path), (int64_t)t.len);
    scan s2;
    scan_log(h.dir, segs[1], len_40, &s2);
    cr_assert_eq(s2.nflagged, 1);
    cr_assert_eq(s2.flagged[0], segs[1]);
    expect_log(h.dir, 70, len_40);
    free(t.orig);
    h_fini(&h);
}

/*
 * A crash right after a rotation can leave the new segment with no bytes at
 * all (its name was made durable by the directory sync, its header never
 * was). The reader ends cleanly before it; repair plus a new writer must
 * then carry on.
 */
Test(wal, empty_last_segment_is_recovered)
{
    static th h;
    h_init(&h, "wal");
    static torn_fixture t;
    torn_setup(&h, &t);
    uint64_t segs[8];
    list_segments(h.dir, segs, 8);
    truncate_file(t.path, 0);
    scan s;
    scan_log(h.dir, 1, len_40, &s);
    cr_assert_eq(s.rc, 0);
    cr_assert_eq(s.count, segs[1] - 1);
    cr_assert_eq(s.tail.last_lsn, segs[1] - 1);
    cr_assert_eq(wal_tail_repair(h.dir, &s.tail, NULL), 0);
    int rc = h_open_io(&h, segs[1], 4096, 0, NULL);
    cr_assert_eq(rc, 0, "reopen: %s", wal_strerror(rc));
    h_append(&h, (int)(71 - segs[1]));
    cr_assert(h_run_until(&h, until_durable, 70));
    cr_assert_eq(h.failed_calls, 0,
                 "writer failed after recovering a log whose last segment is empty: %s",
                 wal_strerror(h.failed_err));
    h_close(&h);
    expect_log(h.dir, 70, len_40);
    free(t.orig);
    h_fini(&h);
}

/* ======================================================================== */
/* Failure injection                                                        */
/* ======================================================================== */

enum { SCEN_TURNS = 8, SCEN_PER_TURN = 12, SCEN_SEG = 2048 };

/*
 * The scenario every injection runs: 8 turns of 12 records on 2 KiB
 * segments (several rotations, some inside a batch). Stops at a failure.
 */
static void scenario(th *h, fault_io *fio)
{
    int rc = h_open_io(h, 1, SCEN_SEG, 0, fault_io_table(fio));
    cr_assert_eq(rc, 0, "open: %s", wal_strerror(rc));
    for (int turn = 0; turn < SCEN_TURNS && h->failed_calls == 0; turn++) {
        h_append(h, SCEN_PER_TURN);
        cr_assert(h_run_until(h, until_durable, h->appended), "turn %d stuck", turn);
    }
}

typedef struct op_counts {
    uint64_t c[FAULT_OP_COUNT];
} op_counts;

static op_counts clean_counts(const char *name)
{
    static th h;
    h_init(&h, name);
    fault_io *fio = fio_new();
    scenario(&h, fio);
    cr_assert_eq(h.failed_calls, 0);
    cr_assert_eq(h.durable, SCEN_TURNS * SCEN_PER_TURN);
    h_close(&h);
    op_counts oc;
    for (int op = 0; op < FAULT_OP_COUNT; op++)
        oc.c[op] = fault_io_calls(fio, (fault_op)op);
    cr_assert_geq(oc.c[FAULT_OPEN], 4, "the scenario should rotate");
    expect_log(h.dir, SCEN_TURNS * SCEN_PER_TURN, len_small);
    h_fini(&h);
    fio_free(fio);
    rm_rf(h.dir);
    return oc;
}

static const char *op_name(fault_op op)
{
    static const char *names[] = {"open",      "pwrite", "fdatasync", "fsync_dir",
                                  "ftruncate", "rename", "unlink",    "close"};
    return names[op];
}

/* After a failure: fail-stop, then crash, recover, check, optionally reopen. */
static void check_failed_writer(th *h, fault_io *fio, fault_op op, uint64_t nth, int err,
                                const fault_crash *crash, bool reopen)
{
    char what[96];
    snprintf(what, sizeof(what), "%s #%" PRIu64 " failing with %s", op_name(op), nth,
             wal_strerror(err));
    cr_assert_eq(fault_io_injected(fio, op), 1, "%s: fault not hit", what);
    cr_assert_eq(h->failed_calls, 1, "%s: failed callback ran %d times", what, h->failed_calls);
    cr_assert_eq(h->failed_err, err, "%s: failed callback got %s", what,
                 wal_strerror(h->failed_err));
    cr_assert_eq(wal_writer_error(h->w), err, "%s", what);
    uint64_t d = h->durable;
    cr_assert_eq(wal_writer_durable_lsn(h->w), d, "%s", what);
    cr_assert_not(h->non_monotonic, "%s", what);
    cr_assert_eq(h->durable_after_fail, 0, "%s: acknowledged after the failure", what);

    /* Fail-stop: nothing more is accepted, written or acknowledged. */
    uint64_t last = wal_writer_last_lsn(h->w);
    uint64_t writes = fault_io_calls(fio, FAULT_PWRITE);
    for (int i = 0; i < 5; i++)
        cr_assert_eq(h_try_append(h), WAL_EFAILED, "%s: append after failure", what);
    wal_writer_flush(h->w);
    h_spin(h, 15);
    cr_assert_eq(wal_writer_last_lsn(h->w), last);
    cr_assert_eq(fault_io_calls(fio, FAULT_PWRITE), writes, "%s: wrote after failing", what);
    cr_assert_eq(h->durable, d);
    cr_assert_eq(h->durable_after_fail, 0);
    cr_assert_eq(h->failed_calls, 1, "%s: failed callback ran again", what);
    h_close(h);
    cr_assert_eq(h->durable, d, "%s: close acknowledged something", what);
    cr_assert_eq(h->failed_calls, 1);

    /* Power failure: whatever was not synced is gone (or garbage). */
    int changed = fault_io_crash_ex(fio, crash);
    cr_assert_geq(changed, 0, "crash: %s", wal_strerror(changed));
    scan s;
    scan_log(h->dir, 1, len_small, &s);
    cr_assert_eq(s.rc, 0, "%s: reader after crash: %s (%s)", what, wal_strerror(s.rc), s.error);
    cr_assert_geq(s.tail.last_lsn, d,
                  "%s: lost acknowledged records (log ends at %" PRIu64 ", %" PRIu64
                  " were acknowledged)",
                  what, s.tail.last_lsn, d);
    cr_assert_leq(s.tail.last_lsn, h->appended, "%s: records that were never appended", what);
    cr_assert_eq(s.count, s.tail.last_lsn);
    uint64_t recovered = s.tail.last_lsn;
    cr_assert_eq(wal_tail_repair(h->dir, &s.tail, NULL), 0, "%s: repair", what);
    scan_log(h->dir, 1, len_small, &s);
    cr_assert_eq(s.rc, 0);
    cr_assert_eq(s.tail.last_lsn, recovered);
    cr_assert_eq(s.tail.torn_bytes, 0, "%s: repair left a torn tail", what);

    if (reopen) {
        int rc = h_open_io(h, recovered + 1, SCEN_SEG, 0, NULL);
        cr_assert_eq(rc, 0, "%s: reopen at %" PRIu64 ": %s", what, recovered + 1, wal_strerror(rc));
        h_append(h, 10);
        cr_assert(h_run_until(h, until_durable, h->appended));
        if (h->failed_calls != 0) {
            /* Reported per case, so one run names every case that fails. */
            cr_expect_fail("%s: the writer reopened after recovery (log 1..%" PRIu64 ") failed: %s",
                           what, recovered, wal_strerror(h->failed_err));
            h_close(h);
            return;
        }
        h_close(h);
        expect_log(h->dir, recovered + 10, len_small);
    }
}

/* Fails the 1st..Nth call of `op` (N = calls in a clean run), one run each. */
static void fail_each(fault_op op, const int *errs, int nerrs, bool reopen)
{
    op_counts clean = clean_counts("clean");
    uint64_t n = clean.c[op];
    cr_assert_gt(n, 0);
    for (uint64_t nth = 1; nth <= n; nth++) {
        char name[64];
        snprintf(name, sizeof(name), "run-%s-%" PRIu64, op_name(op), nth);
        static th h;
        h_init(&h, name);
        fault_io *fio = fio_new();
        int err = errs[nth % (uint64_t)nerrs];
        fault_io_fail_nth(fio, op, nth, err);
        scenario(&h, fio);
        /* Alternate crash models: drop unsynced bytes, keep part of them,
         * garbage them; files whose creation was not synced may vanish. */
        fault_crash crash = {.seed = nth};
        switch (nth % 4) {
        case 1:
            crash.keep_unsynced = 45;
            break;
        case 2:
            crash.garbage = true;
            break;
        case 3:
            crash.drop_unsynced_creates = true;
            break;
        }
        check_failed_writer(&h, fio, op, nth, err, &crash, reopen);
        h_fini(&h);
        fio_free(fio);
        rm_rf(h.dir);
    }
}

static const int EIO_ONLY[] = {-EIO};
static const int WRITE_ERRS[] = {-EIO, -ENOSPC};
static const int OPEN_ERRS[] = {-EMFILE, -ENOSPC, -EACCES};

Test(wal, fail_each_pwrite)
{
    fail_each(FAULT_PWRITE, WRITE_ERRS, 2, false);
}

Test(wal, fail_each_fdatasync)
{
    fail_each(FAULT_FDATASYNC, EIO_ONLY, 1, false);
}

Test(wal, fail_each_segment_open)
{
    fail_each(FAULT_OPEN, OPEN_ERRS, 3, false);
}

Test(wal, fail_each_fsync_dir)
{
    fail_each(FAULT_FSYNC_DIR, EIO_ONLY, 1, false);
}

/* The same failures, then recovery and a new writer that carries on. */
Test(wal, recover_and_reopen_after_each_failure)
{
    fail_each(FAULT_PWRITE, WRITE_ERRS, 2, true);
    fail_each(FAULT_FDATASYNC, EIO_ONLY, 1, true);
    fail_each(FAULT_OPEN, OPEN_ERRS, 3, true);
    fail_each(FAULT_FSYNC_DIR, EIO_ONLY, 1, true);
}

Test(wal, short_writes_are_completed)
{
    op_counts clean = clean_counts("clean");
    uint64_t n = clean.c[FAULT_PWRITE];
    /* Each pwrite in turn returns short once. */
    for (uint64_t nth = 1; nth <= n; nth++) {
        char name[64];
        snprintf(name, sizeof(name), "short-%" PRIu64, nth);
        static th h;
        h_init(&h, name);
        fault_io *fio = fio_new();
        fault_io_short_nth(fio, nth, 5);
        scenario(&h, fio);
        cr_assert_eq(h.failed_calls, 0, "short pwrite #%" PRIu64 ": %s", nth,
                     wal_strerror(h.failed_err));
        cr_assert_eq(h.durable, SCEN_TURNS * SCEN_PER_TURN);
        cr_assert_eq(fault_io_calls(fio, FAULT_PWRITE), n + 1,
                     "short pwrite #%" PRIu64 ": the rest was not written in one more call", nth);
        h_close(&h);
        check_segments(h.dir, SCEN_SEG, 7);
        expect_log(h.dir, SCEN_TURNS * SCEN_PER_TURN, len_small);
        h_fini(&h);
        fio_free(fio);
        rm_rf(h.dir);
    }
    /* Every pwrite writes at most 7 bytes. */
    static th h;
    h_init(&h, "short-all");
    fault_io *fio = fio_new();
    fault_io_short_all(fio, 7);
    scenario(&h, fio);
    cr_assert_eq(h.failed_calls, 0);
    cr_assert_eq(h.durable, SCEN_TURNS * SCEN_PER_TURN);
    uint64_t calls = fault_io_calls(fio, FAULT_PWRITE), written = fault_io_bytes_written(fio);
    cr_assert_geq(calls * 7, written);
    cr_assert_gt(calls, 10 * n);
    h_close(&h);
    uint64_t segs[64], total = 0;
    size_t nseg = list_segments(h.dir, segs, 64);
    for (size_t i = 0; i < nseg; i++) {
        char p[WAL_PATH_MAX + 32];
        seg_path(h.dir, segs[i], p, sizeof(p));
        total += (uint64_t)file_size(p);
    }
    cr_assert_eq(written, total, "bytes written vs segment sizes");
    check_segments(h.dir, SCEN_SEG, 7);
    expect_log(h.dir, SCEN_TURNS * SCEN_PER_TURN, len_small);
    h_fini(&h);
    fio_free(fio);
}

Test(wal, zero_byte_write_fails_stop_instead_of_looping)
{
    static th h;
    h_init(&h, "wal");
    fault_io *fio = fio_new();
    fault_io_short_nth(fio, 3, 0);
    scenario(&h, fio);
    cr_assert_eq(h.failed_calls, 1);
    cr_assert_lt(h.failed_err, 0);
    cr_assert_eq(wal_writer_error(h.w), h.failed_err);
    cr_assert_eq(h_try_append(&h), WAL_EFAILED);
    h_close(&h);
    h_fini(&h);
    fio_free(fio);
}

Test(wal, sticky_enospc_fails_stop_once)
{
    static th h;
    h_init(&h, "wal");
    fault_io *fio = fio_new();
    fault_io_fail_from(fio, FAULT_PWRITE, 6, -ENOSPC);
    scenario(&h, fio);
    cr_assert_eq(h.failed_calls, 1);
    cr_assert_eq(h.failed_err, -ENOSPC);
    cr_assert_eq(fault_io_injected(fio, FAULT_PWRITE), 1, "retried a failed write");
    uint64_t d = h.durable;
    cr_assert_lt(d, SCEN_TURNS * SCEN_PER_TURN);
    h_close(&h);
    cr_assert_eq(h.durable, d);
    fault_io_crash(fio);
    scan s;
    scan_log(h.dir, 1, len_small, &s);
    cr_assert_eq(s.rc, 0);
    cr_assert_geq(s.tail.last_lsn, d);
    h_fini(&h);
    fio_free(fio);
}

/* ======================================================================== */
/* Crash                                                                    */
/* ======================================================================== */

Test(wal, fault_io_crash_model_self_test)
{
    char dir[WAL_PATH_MAX], path[WAL_PATH_MAX + 32];
    fresh_dir(dir, sizeof(dir), "fio");
    cr_assert_eq(mkdir(dir, 0755), 0);
    snprintf(path, sizeof(path), "%s/f", dir);
    fault_io *fio = fio_new();
    const wal_io *io = fault_io_table(fio);
    int fd = io->open(io->ctx, path, O_WRONLY | O_CREAT | O_EXCL, 0644);
    cr_assert_geq(fd, 0);
    uint8_t buf[100];
    memset(buf, 'a', sizeof(buf));
    cr_assert_eq(io->pwrite(io->ctx, fd, buf, 100, 0), 100);
    cr_assert_eq(io->fdatasync(io->ctx, fd), 0);
    cr_assert_eq(fault_io_durable_len(fio, path), 100);
    cr_assert_eq(io->pwrite(io->ctx, fd, buf, 60, 100), 60);
    fault_io_short_nth(fio, 3, 10);
    cr_assert_eq(io->pwrite(io->ctx, fd, buf, 60, 160), 10);
    fault_io_fail_nth(fio, FAULT_FDATASYNC, 2, -EIO);
    cr_assert_eq(io->fdatasync(io->ctx, fd), -EIO);
    cr_assert_eq(fault_io_injected(fio, FAULT_FDATASYNC), 1);
    cr_assert_eq(fault_io_durable_len(fio, path), 100);
    cr_assert_eq(file_size(path), 170);
    fault_crash c = {.keep_unsynced = 30};
    cr_assert_eq(fault_io_crash_ex(fio, &c), 1);
    cr_assert_eq(file_size(path), 130);
    cr_assert_eq(io->pwrite(io->ctx, fd, buf, 1, 0), -EIO, "I/O after the crash");
    cr_assert_eq(io->close(io->ctx, fd), 0);
    cr_assert_eq(fault_io_calls(fio, FAULT_PWRITE), 4);
    fio_free(fio);

    /* Garbage, and a creation that was never made durable. */
    fio = fio_new();
    io = fault_io_table(fio);
    unlink(path);
    fd = io->open(io->ctx, path, O_WRONLY | O_CREAT | O_EXCL, 0644);
    cr_assert_eq(io->pwrite(io->ctx, fd, buf, 100, 0), 100);
    cr_assert_eq(io->fdatasync(io->ctx, fd), 0);
    cr_assert_eq(io->pwrite(io->ctx, fd, buf, 50, 100), 50);
    c = (fault_crash){.garbage = true, .seed = 3};
    cr_assert_eq(fault_io_crash_ex(fio, &c), 1);
    size_t len;
    uint8_t *got = read_all(path, &len);
    cr_assert_eq(len, 150);
    cr_assert_eq(memcmp(got, buf, 100), 0);
    cr_assert_neq(memcmp(got + 100, buf, 50), 0);
    free(got);
    io->close(io->ctx, fd);
    fio_free(fio);

    fio = fio_new();
    io = fault_io_table(fio);
    unlink(path);
    fd = io->open(io->ctx, path, O_WRONLY | O_CREAT | O_EXCL, 0644);
    cr_assert_eq(io->fdatasync(io->ctx, fd), 0);
    c = (fault_crash){.drop_unsynced_creates = true};
    cr_assert_eq(fault_io_crash_ex(fio, &c), 1);
    cr_assert_eq(file_size(path), -1, "creation without a directory sync survived");
    io->close(io->ctx, fd);
    fio_free(fio);
}

/*
 * Appends over several turns, then crashes while the writer thread is
 * inside the fdatasync of the next batch (written, not synced).
 */
static void crash_mid_sync(const fault_crash *how, uint64_t seg_bytes, int per_turn,
                           uint64_t *d_out, scan *s, th *h, fault_io **fio_out)
{
    fault_io *fio = fio_new();
    h->len_of = len_100;
    cr_assert_eq(h_open_io(h, 1, seg_bytes, 0, fault_io_table(fio)), 0);
    for (int turn = 0; turn < 5; turn++) {
        h_append(h, per_turn);
        h_wait(h, h->appended);
    }
    uint64_t d = h->durable;
    cr_assert_eq(d, (uint64_t)(5 * per_turn));
    fault_io_block_nth(fio, FAULT_FDATASYNC, fault_io_calls(fio, FAULT_FDATASYNC) + 1);
    h_append(h, 20);
    wal_writer_flush(h->w);
    cr_assert(fault_io_wait_blocked(fio, 5000), "the writer never reached fdatasync");
    cr_assert_eq(h->durable, d);
    int changed = fault_io_crash_ex(fio, how);
    cr_assert_geq(changed, 0);
    scan_log(h->dir, 1, len_100, s);
    /* The crashed process's writer: its sync fails, nothing is acknowledged. */
    cr_assert(h_run_until(h, until_failed, 0));
    cr_assert_eq(h->failed_err, -EIO);
    cr_assert_eq(h->durable, d);
    h_close(h);
    *d_out = d;
    *fio_out = fio;
}

Test(wal, crash_loses_no_acknowledged_record)
{
    enum { PER_TURN = 20 };
    const size_t fsz = wal_frame_size(100);
    const size_t unsynced = 20 * fsz;
    static const struct {
        size_t keep;      /* unsynced bytes that survive as written */
        bool garbage;     /* the rest is garbage instead of cut */
        size_t zero_head; /* then the first bytes of the batch read as zeros */
    } variants[] = {
        {0, false, 0},
        {1, false, 0},
        {131, false, 0},
        {132, false, 0},
        {133, false, 0},
        {700, false, 0},
        {0, true, 0},
        {17, true, 0},
        {132 * 7 + 3, true, 0},
        {SIZE_MAX, false, 0},
        {2639, false, 0},
        {2639, true, 0},
        /* Out-of-order persistence: the batch's head is lost, the rest is on disk. */
        {SIZE_MAX, false, 10},
        {SIZE_MAX, false, 3 * 132},
        {1000, true, 200},
    };
    for (size_t v = 0; v < sizeof(variants) / sizeof(variants[0]); v++) {
        char name[32];
        snprintf(name, sizeof(name), "crash-%zu", v);
        static th h;
        h_init(&h, name);
        fault_crash how = {
            .keep_unsynced = variants[v].keep,
            .garbage = variants[v].garbage,
            .zero_unsynced_head = variants[v].zero_head,
            .seed = v + 1,
        };
        uint64_t d;
        scan s;
        fault_io *fio;
        crash_mid_sync(&how, 0, PER_TURN, &d, &s, &h, &fio);

        size_t keep = variants[v].keep < unsynced ? variants[v].keep : unsynced;
        uint64_t whole = variants[v].zero_head > 0 ? 0 : keep / fsz;
        size_t torn = (variants[v].garbage ? unsynced : keep) - whole * fsz;
        cr_assert_eq(s.rc, 0, "variant %zu: %s (%s)", v, wal_strerror(s.rc), s.error);
        cr_assert_eq(s.tail.last_lsn, d + whole, "variant %zu: log ends at %" PRIu64, v,
                     s.tail.last_lsn);
        cr_assert_eq(s.count, d + whole);
        cr_assert_eq(s.tail.torn_bytes, torn, "variant %zu: torn %" PRIu64, v, s.tail.torn_bytes);
        cr_assert_eq(s.tail.good_bytes, WAL_SEGMENT_HEADER + (d + whole) * fsz);

        cr_assert_eq(wal_tail_repair(h.dir, &s.tail, NULL), 0);
        uint64_t last = s.tail.last_lsn;
        expect_log(h.dir, last, len_100);
        cr_assert_eq(h_open_io(&h, last + 1, 0, 0, NULL), 0);
        h_append(&h, 10);
        h_wait(&h, last + 10);
        h_close(&h);
        expect_log(h.dir, last + 10, len_100);
        h_fini(&h);
        fio_free(fio);
    }
}

/*
 * The crash hits the first sync of a segment the batch just started: its
 * name is durable (the directory was synced), none of its bytes are.
 */
Test(wal, crash_after_rotation_recovers)
{
    enum { PER_TURN = 6 };
    /* 132-byte frames, 30 per 4 KiB segment: turn 5 ends segment 1 exactly. */
    static th h;
    h_init(&h, "wal");
    uint64_t d;
    scan s;
    fault_io *fio;
    crash_mid_sync(NULL, 32 + 30 * wal_frame_size(100), PER_TURN, &d, &s, &h, &fio);
    uint64_t segs[8];
    size_t n = list_segments(h.dir, segs, 8);
    cr_assert_eq(n, 2);
    cr_assert_eq(segs[1], 31);
    char path[WAL_PATH_MAX + 32];
    seg_path(h.dir, 31, path, sizeof(path));
    cr_assert_eq(file_size(path), 0, "fixture: the new segment should be empty after the crash");
    cr_assert_eq(s.rc, 0, "%s", s.error);
    cr_assert_eq(s.tail.last_lsn, 30);
    cr_assert_eq(wal_tail_repair(h.dir, &s.tail, NULL), 0);
    cr_assert_eq(h_open_io(&h, 31, 32 + 30 * wal_frame_size(100), 0, NULL), 0);
    h_append(&h, 10);
    cr_assert(h_run_until(&h, until_durable, 40));
    cr_assert_eq(h.failed_calls, 0, "writer after recovery failed: %s", wal_strerror(h.failed_err));
    h_close(&h);
    expect_log(h.dir, 40, len_100);
    h_fini(&h);
    fio_free(fio);
}

/* ======================================================================== */
/* Backpressure and closing                                                 */
/* ======================================================================== */

static uint32_t len_bp(uint64_t lsn)
{
    return lsn == 16 ? 2000 : 100;
}

Test(wal, full_batch_returns_efull_until_handed_off)
{
    static th h;
    h_init(&h, "wal");
    h.len_of = len_bp;
    /* 132-byte frames: exactly 7 fit the bound, the 8th does not. */
    cr_assert_eq(h_open_io(&h, 1, 0, 7 * wal_frame_size(100), NULL), 0);
    h_append(&h, 7);
    cr_assert_eq(h_try_append(&h), WAL_EFULL);
    cr_assert_eq(h_try_append(&h), WAL_EFULL);
    cr_assert_eq(wal_writer_last_lsn(h.w), 7);
    wal_writer_flush(h.w); /* batch 1 goes to the writer thread */
    h_append(&h, 7);       /* batch 2 fills meanwhile */
    cr_assert_eq(h_try_append(&h), WAL_EFULL);
    cr_assert_eq(wal_writer_last_lsn(h.w), 14);
    h_wait(&h, 14);
    h_append(&h, 1);
    cr_assert_eq(h.appended, 15);
    h_wait(&h, 15);
    /* A record larger than the bound goes into an empty batch, alone. */
    h_append(&h, 1);
    cr_assert_eq(h.appended, 16);
    cr_assert_eq(h_try_append(&h), WAL_EFULL);
    h_wait(&h, 16);
    h_append(&h, 1);
    h_wait(&h, 17);
    wal_stats s;
    wal_writer_stats(h.w, &s);
    cr_assert_eq(s.records, 17);
    cr_assert_leq(s.max_batch_records, 7);
    h_close(&h);
    expect_log(h.dir, 17, len_bp);
    h_fini(&h);
}

Test(wal, close_syncs_pending_records)
{
    static th h;
    h_init(&h, "wal");
    h_open(&h, 1, 0);
    h_append(&h, 50);
    cr_assert_eq(wal_writer_close(h.w, on_closed, &h), 0);
    cr_assert_eq(wal_writer_close(h.w, on_closed, &h), WAL_ECLOSED);
    uint8_t x = 1;
    cr_assert_eq(wal_writer_append(h.w, 1, 1, &x, 1), WAL_ECLOSED);
    cr_assert(h_run_until(&h, until_closed, 0));
    cr_assert_eq(h.closed, 1);
    cr_assert_eq(h.durable_at_close, 50, "close_cb before the pending records were durable");
    h.w = NULL;
    expect_log(h.dir, 50, len_small);
    h_fini(&h);
}

static void append_on_durable(th *h, uint64_t lsn)
{
    (void)lsn;
    if (h->appended < 40)
        h_append(h, 2);
}

/* A server acknowledges, then appends the next request's record, from the callback. */
Test(wal, append_from_durable_callback)
{
    static th h;
    h_init(&h, "wal");
    h_open(&h, 1, 0);
    h.on_durable = append_on_durable;
    h_append(&h, 2);
    h_wait(&h, 40);
    cr_assert_eq(h.durable_calls, 20);
    for (int i = 0; i < 20; i++)
        cr_assert_eq(h.durable_log[i], (uint64_t)(i + 1) * 2);
    cr_assert_not(h.non_monotonic);
    h_close(&h);
    expect_log(h.dir, 40, len_small);
    h_fini(&h);
}

static void close_on_durable(th *h, uint64_t lsn)
{
    if (lsn >= 10 && h->closed == 0 && h->w != NULL) {
        cr_assert_eq(wal_writer_close(h->w, on_closed, h), 0);
        h->w = NULL;
    }
}

/* Closing from the durable callback, with nothing left pending. */
Test(wal, close_from_durable_callback)
{
    static th h;
    h_init(&h, "wal");
    h_open(&h, 1, 0);
    h.on_durable = close_on_durable;
    h_append(&h, 10);
    cr_assert(h_run_until(&h, until_closed, 0));
    h_spin(&h, 20);
    cr_assert_eq(h.closed, 1);
    cr_assert_eq(h.durable, 10);
    h_fini(&h);
    expect_log(h.dir, 10, len_small);
}

static void close_on_failed(th *h, int err)
{
    (void)err;
    cr_assert_eq(wal_writer_close(h->w, on_closed, h), 0);
    h->w = NULL;
}

/* Closing from the failed callback, the obvious reaction to a fail-stop. */
Test(wal, close_from_failed_callback)
{
    static th h;
    h_init(&h, "wal");
    fault_io *fio = fio_new();
    fault_io_fail_nth(fio, FAULT_FDATASYNC, 2, -EIO);
    cr_assert_eq(h_open_io(&h, 1, 0, 0, fault_io_table(fio)), 0);
    h.on_failed = close_on_failed;
    h_append(&h, 5);
    h_wait(&h, 5);
    h_append(&h, 5);
    cr_assert(h_run_until(&h, until_closed, 0));
    h_spin(&h, 20);
    cr_assert_eq(h.closed, 1);
    cr_assert_eq(h.failed_calls, 1);
    cr_assert_eq(h.durable, 5);
    h_fini(&h);
    fio_free(fio);
}

/*
 * A program whose only pending work is appended records: uv_run() must not
 * return before they are durable (the durable callback is a promise).
 */
Test(wal, run_default_makes_appended_records_durable)
{
    static th h;
    h_init(&h, "wal");
    h_open(&h, 1, 0);
    h_append(&h, 3);
    uv_run(&h.loop, UV_RUN_DEFAULT);
    cr_assert_eq(h.durable, 3,
                 "uv_run returned with appended records never written (durable %" PRIu64 ")",
                 h.durable);
    h_close(&h);
    h_fini(&h);
}

/* ======================================================================== */
/* Follower                                                                 */
/* ======================================================================== */

/* Asserts that `f` yields records `from`..`to` exactly as appended. */
static void follow_expect(wal_follower *f, uint64_t from, uint64_t to, uint64_t durable,
                          len_fn len_of)
{
    uint8_t *exp = malloc(4096);
    cr_assert_not_null(exp);
    wal_record rec;
    for (uint64_t lsn = from; lsn <= to; lsn++) {
        int rc = wal_follower_next(f, durable, &rec);
        cr_assert_eq(rc, 1, "LSN %" PRIu64 ": %s (%s)", lsn, rc < 0 ? wal_strerror(rc) : "none",
                     wal_follower_error(f));
        cr_assert_eq(rec.lsn, lsn);
        cr_assert_eq(rec.type, rec_type(lsn));
        cr_assert_eq(rec.time_ms, rec_time(lsn));
        uint32_t len = len_of(lsn);
        cr_assert_eq(rec.payload_len, len);
        rec_payload(lsn, exp, len);
        cr_assert(memcmp(rec.payload, exp, len) == 0, "LSN %" PRIu64 ": payload", lsn);
    }
    free(exp);
}

Test(wal, follower_reads_from_any_lsn_across_segments)
{
    static th h;
    h_init(&h, "follow");
    h_write_log(&h, 3000, 97, 8192); /* small segments: many rotations */
    uint64_t firsts[256];
    cr_assert_gt(list_segments(h.dir, firsts, 256), 10);
    static const uint64_t starts[] = {0, 1, 2, 96, 97, 98, 1500, 2999, 3000, 3001};
    for (size_t i = 0; i < sizeof(starts) / sizeof(starts[0]); i++) {
        wal_follower *f = NULL;
        int rc = wal_follower_open(h.dir, starts[i], &f);
        cr_assert_eq(rc, 0, "open at %" PRIu64 ": %s", starts[i], wal_strerror(rc));
        uint64_t from = starts[i] ? starts[i] : 1;
        cr_assert_eq(wal_follower_next_lsn(f), from);
        follow_expect(f, from, 3000, 3000, h.len_of);
        wal_record rec;
        cr_assert_eq(wal_follower_next(f, 3000, &rec), 0, "nothing past the durable LSN");
        cr_assert_eq(wal_follower_next(f, 1000000, &rec), WAL_EGAP,
                     "a durable bound past the log: a record that should exist does not");
        wal_follower_close(f);
    }
    /* Beyond the end (from_lsn - 1 not in the log), and older than retained. */
    wal_follower *f = NULL;
    cr_assert_eq(wal_follower_open(h.dir, 3002, &f), WAL_ENOTFOUND);
    uint64_t first[64];
    size_t n = list_segments(h.dir, first, 64);
    char path[WAL_PATH_MAX + 64];
    seg_path(h.dir, first[0], path, sizeof(path));
    cr_assert_eq(unlink(path), 0);
    cr_assert_eq(wal_follower_open(h.dir, 1, &f), WAL_ENOTFOUND);
    cr_assert_eq(wal_follower_open(h.dir, first[1], &f), 0);
    follow_expect(f, first[1], 3000, 3000, h.len_of);
    wal_follower_close(f);
    cr_assert_gt(n, 2);
    h_fini(&h);
}

Test(wal, follower_follows_a_live_writer)
{
    static th h;
    h_init(&h, "live");
    wal_follower *f = NULL;
    cr_assert_eq(wal_follower_open(h.dir, 1, &f), 0, "an empty log can be followed from 1");
    wal_record rec;
    cr_assert_eq(wal_follower_next(f, 0, &rec), 0);
    h_open(&h, 1, 4096);
    uint64_t seen = 0;
    for (int turn = 0; turn < 40; turn++) {
        h_append(&h, 1 + turn % 7);
        h_wait(&h, h.appended);
        /* The writer has the next batch open meanwhile: only durable
         * records are asked for. */
        follow_expect(f, seen + 1, h.durable, h.durable, h.len_of);
        seen = h.durable;
        cr_assert_eq(wal_follower_next(f, h.durable, &rec), 0);
    }
    h_close(&h);
    wal_follower_close(f);
    h_fini(&h);
}

Test(wal, follower_reports_corruption)
{
    static th h;
    h_init(&h, "followbad");
    h_write_log(&h, 200, 50, 0);
    uint64_t first[4];
    cr_assert_eq(list_segments(h.dir, first, 4), 1);
    char path[WAL_PATH_MAX + 64];
    seg_path(h.dir, first[0], path, sizeof(path));
    size_t len;
    uint8_t *buf = read_all(path, &len);
    size_t off = frame_offset(buf, len, 120);
    buf[off + WAL_FRAME_HEADER] ^= 0x40; /* a payload byte of LSN 120 */
    write_all(path, buf, len);
    free(buf);
    wal_follower *f = NULL;
    cr_assert_eq(wal_follower_open(h.dir, 100, &f), 0);
    follow_expect(f, 100, 119, 200, h.len_of);
    wal_record rec;
    cr_assert_eq(wal_follower_next(f, 200, &rec), WAL_ECORRUPT);
    cr_assert(has_num(wal_follower_error(f), "LSN ", 120), "%s", wal_follower_error(f));
    wal_follower_close(f);
    /* Skipping over it on open notices it too. */
    cr_assert_eq(wal_follower_open(h.dir, 150, &f), WAL_ECORRUPT);
    h_fini(&h);
}
