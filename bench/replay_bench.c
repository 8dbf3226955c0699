/*
 * replay-bench - how fast recovery replays the WAL, and what group commit buys.
 *
 *   replay-bench [--records N] [--dir DIR] [--json]
 *
 * 1. Fills a fresh WAL with N engine records (a realistic mix: 4-seat holds,
 *    confirms, cancels, releases on a 100,000-seat showtime) and times
 *    snapshot_recover() over it without a snapshot: records per second and
 *    MB per second, reading, checksumming, decoding and applying every record.
 * 2. Times durable appends on the same disk: one record per fdatasync (what
 *    a server without group commit would do) against batches of 64 and 1,024
 *    records per fdatasync.
 * Not a test: a measurement. The directory (default: a new one under /tmp)
 * is removed afterwards.
 */
#include "engine.h"
#include "snapshot.h"
#include "wal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static bool json;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, int rc)
{
    fprintf(stderr, "replay-bench: %s failed: %d (%s)\n", what, rc, snapshot_strerror(rc));
    exit(1);
}

typedef struct sink {
    uv_loop_t loop;
    wal_writer *w;
    uint64_t durable;
} sink;

static void on_durable(wal_writer *w, uint64_t lsn, void *arg)
{
    (void)w;
    ((sink *)arg)->durable = lsn;
}

static void sink_open(sink *s, const char *dir, uint64_t next_lsn)
{
    memset(s, 0, sizeof(*s));
    uv_loop_init(&s->loop);
    wal_writer_config c = {.dir = dir, .next_lsn = next_lsn, .durable_cb = on_durable, .arg = s};
    int rc = wal_writer_open(&s->loop, &c, &s->w);
    if (rc != 0)
        die("wal_writer_open", rc);
    s->durable = next_lsn - 1;
}

static void sink_wait(sink *s)
{
    wal_writer_flush(s->w);
    while (s->durable < wal_writer_last_lsn(s->w))
        uv_run(&s->loop, UV_RUN_ONCE);
}

static void on_closed(wal_writer *w, void *arg)
{
    (void)w;
    (void)arg;
}

static void sink_close(sink *s)
{
    wal_writer_close(s->w, on_closed, NULL);
    uv_run(&s->loop, UV_RUN_DEFAULT);
    uv_loop_close(&s->loop);
}

static void journal(sink *s, const engine_record *rec)
{
    int64_t lsn = snapshot_record_append(s->w, rec);
    if (lsn == WAL_EFULL) {
        sink_wait(s);
        lsn = snapshot_record_append(s->w, rec);
    }
    if (lsn < 0)
        die("snapshot_record_append", (int)lsn);
}

static engine_config bench_config(void)
{
    engine_config cfg;
    engine_config_default(&cfg);
    cfg.bookings_max = 1u << 23;
    return cfg;
}

/* Writes ~n records; returns how many. */
static uint64_t fill(const char *wal_dir, uint64_t n)
{
    engine *e;
    engine_config cfg = bench_config();
    if (engine_create(&cfg, &e) != 0)
        die("engine_create", -1);
    sink s;
    sink_open(&s, wal_dir, 1);
    enum { ROWS = 200, COLS = 500 };
    engine_seat_spec *seats = calloc(ROWS * COLS, sizeof(*seats));
    char(*rows)[ENGINE_LABEL_MAX] = calloc(ROWS, sizeof(*rows));
    for (int r = 0; r < ROWS; r++) {
        snprintf(rows[r], ENGINE_LABEL_MAX, "R%d", r);
        for (int c = 0; c < COLS; c++) {
            engine_seat_spec *sp = &seats[r * COLS + c];
            snprintf(sp->label, ENGINE_LABEL_MAX, "R%d-%d", r, c);
            sp->row = (uint16_t)r;
            sp->col = (uint16_t)c;
            sp->category = (uint8_t)(r * 3 / ROWS);
        }
    }
    engine_layout_spec spec = {.seat_count = ROWS * COLS,
                               .seats = seats,
                               .row_count = ROWS,
                               .row_labels = (const char(*)[ENGINE_LABEL_MAX])rows,
                               .category_count = 3,
                               .best_row = 120};
    strcpy(spec.category_names[0], "silver");
    strcpy(spec.category_names[1], "gold");
    strcpy(spec.category_names[2], "platinum");
    int64_t now = INT64_C(1795000000000); /* Nov 2026 */
    engine_record rec;
    if (engine_layout_create(e, now, 1, &spec, NULL, &rec) != 0)
        die("layout", -1);
    journal(&s, &rec);
    uint32_t prices[3] = {15000, 25000, 40000};
    if (engine_showtime_create(e, now, 1, 1, now + INT64_C(30) * 86400000, prices, 3, &rec) != 0)
        die("showtime", -1);
    journal(&s, &rec);
    free(seats);
    free(rows);

    uint64_t written = 2, q = 0;
    while (written < n) {
        uint32_t base = (uint32_t)(q++ % (ROWS * COLS / 4)) * 4;
        uint32_t want[4] = {base, base + 1, base + 2, base + 3};
        uint64_t user = 1 + q % 5000;
        now += 1;
        if (engine_hold_place(e, now, 1, user, want, 4, NULL, NULL, &rec) != ENGINE_OK)
            die("hold", -1);
        journal(&s, &rec);
        uint64_t hold = rec.u.hold_place.hold_id, booking;
        written++;
        if (q % 2 == 0) {
            if (engine_booking_confirm(e, now, hold, user, ENGINE_PAY_UPI, NULL, 0, &booking, NULL,
                                       &rec) != ENGINE_OK)
                die("confirm", -1);
            journal(&s, &rec);
            if (engine_booking_cancel(e, now, booking, user, NULL, &rec) != ENGINE_OK)
                die("cancel", -1);
        } else if (engine_hold_release(e, now, hold, user, &rec) != ENGINE_OK) {
            die("release", -1);
        }
        journal(&s, &rec);
        written += 1 + (q % 2 == 0);
    }
    sink_wait(&s);
    sink_close(&s);
    engine_destroy(e);
    return written;
}

static void bench_replay(const char *dir, uint64_t n)
{
    char shard[4200], wal[4300];
    snprintf(shard, sizeof(shard), "%s/shard-0", dir);
    snprintf(wal, sizeof(wal), "%s/wal", shard);
    mkdir(shard, 0755);
    double t0 = now_s();
    uint64_t records = fill(wal, n);
    double fill_s = now_s() - t0;

    double best = 1e9;
    uint64_t bytes = 0;
    for (int round = 0; round < 3; round++) {
        snapshot_recover_opts o = {.shard_dir = shard, .cfg = bench_config()};
        snapshot_recovery rep;
        engine *e;
        double t1 = now_s();
        int rc = snapshot_recover(&o, &e, &rep);
        double took = now_s() - t1;
        if (rc != 0)
            die(rep.error, rc);
        if (rep.replayed != records)
            die("replayed count", (int)rep.replayed);
        engine_destroy(e);
        if (took < best)
            best = took;
    }
    wal_reader *r;
    wal_record rec;
    wal_reader_open(wal, 1, NULL, &r);
    while (wal_reader_next(r, &rec) == 1)
        bytes += wal_frame_size(rec.payload_len);
    wal_reader_close(r);
    double rps = (double)records / best;
    if (json)
        printf("{\"op\": \"replay\", \"records\": %" PRIu64 ", \"bytes\": %" PRIu64
               ", \"seconds\": %.3f, \"records_per_s\": %.0f, \"mb_per_s\": %.1f}\n",
               records, bytes, best, rps, (double)bytes / best / 1e6);
    else
        printf("replay     %10" PRIu64 " records %8.1f MB  best of 3: %.3f s = %10.0f records/s "
               "(%.0f MB/s); written in %.1f s\n",
               records, (double)bytes / 1e6, best, rps, (double)bytes / best / 1e6, fill_s);
}

/* Durable appends of 100-byte records, `batch` per fdatasync. */
static void bench_commit(const char *dir, uint32_t batch, double seconds)
{
    char wal[4200];
    snprintf(wal, sizeof(wal), "%s/commit-%u", dir, batch);
    sink s;
    sink_open(&s, wal, 1);
    uint8_t payload[100];
    memset(payload, 0xab, sizeof(payload));
    uint64_t n = 0;
    double t0 = now_s(), t;
    do {
        for (uint32_t i = 0; i < batch; i++)
            if (wal_writer_append(s.w, 99, 0, payload, sizeof(payload)) < 0)
                die("append", -1);
        n += batch;
        sink_wait(&s);
        t = now_s() - t0;
    } while (t < seconds);
    wal_stats st;
    wal_writer_stats(s.w, &st);
    double p50_us = 0;
    uint64_t seen = 0;
    for (int b = 0; b < 24; b++) {
        seen += st.sync_ns_hist[b];
        if (seen * 2 >= st.batches) {
            p50_us = b == 0 ? 1 : (double)(1u << b);
            break;
        }
    }
    if (json)
        printf("{\"op\": \"commit\", \"records_per_sync\": %u, \"records_per_s\": %.0f, "
               "\"syncs_per_s\": %.0f, \"mean_sync_us\": %.1f, \"p50_sync_us_below\": %.0f}\n",
               batch, (double)n / t, (double)st.syncs / t,
               (double)st.sync_ns_total / (double)st.syncs / 1e3, p50_us);
    else
        printf("commit     %5u records/fdatasync: %10.0f records/s, %7.0f syncs/s, mean sync "
               "%.1f us (p50 < %.0f us)\n",
               batch, (double)n / t, (double)st.syncs / t,
               (double)st.sync_ns_total / (double)st.syncs / 1e3, p50_us);
    sink_close(&s);
}

int main(int argc, char **argv)
{
    uint64_t records = 2000000;
    const char *dir = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0) {
            json = true;
        } else if (strcmp(argv[i], "--records") == 0 && i + 1 < argc) {
            records = strtoull(argv[++i], NULL, 10);
            if (records < 10)
                records = 10;
        } else if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc) {
            dir = argv[++i];
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            printf("usage: replay-bench [--records N] [--dir DIR] [--json]\n\n"
                   "Times WAL recovery (records/s) over N records (default 2,000,000) and\n"
                   "durable appends at 1, 64 and 1,024 records per fdatasync. DIR (default a\n"
                   "new directory under /tmp) should be on the disk you care about.\n");
            return 0;
        } else {
            fprintf(stderr, "replay-bench: unknown argument '%s' (try --help)\n", argv[i]);
            return 2;
        }
    }
    char tmp[] = "/tmp/usher-replay-bench-XXXXXX";
    char base[4096];
    if (dir == NULL) {
        if (mkdtemp(tmp) == NULL)
            die("mkdtemp", -1);
        snprintf(base, sizeof(base), "%s", tmp);
    } else {
        snprintf(base, sizeof(base), "%s/usher-replay-bench-%d", dir, (int)getpid());
        if (mkdir(base, 0755) != 0)
            die("mkdir", -1);
    }
    bench_replay(base, records);
    bench_commit(base, 1, 2.0);
    bench_commit(base, 64, 2.0);
    bench_commit(base, 1024, 2.0);
    char cmd[4200];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", base);
    return system(cmd) == 0 ? 0 : 1;
}
