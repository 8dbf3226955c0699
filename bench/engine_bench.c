/*
 * engine-bench - nanoseconds per engine operation on a 500-seat and a
 * 100,000-seat showtime. Not a test: a measurement, printed as a table or,
 * with --json, one JSON object per line.
 *
 * Method: each operation runs in rounds over fresh seats; only the operation
 * under test is inside the timed region (setup and cleanup are not). The
 * figure is the median of the rounds' ns/op, so one noisy round (the other
 * core busy, a page fault storm) does not move it.
 */
#include "engine.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define ROUNDS   9
#define START_MS (INT64_C(1) << 41)
#define NOW_MS   (INT64_C(1) << 40)

static bool json;

static int64_t clock_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void die(const char *what, int rc)
{
    fprintf(stderr, "engine-bench: %s failed: %d\n", what, rc);
    exit(1);
}

/* rows x cols seats, an aisle after every `aisle` seats, three categories by
 * row band (front silver, middle gold, back platinum), two accessible seats
 * and their companions at the end of each row. */
static void layout_make(engine *e, uint64_t id, uint32_t rows, uint32_t cols, uint32_t aisle)
{
    engine_seat_spec *seats = calloc((size_t)rows * cols, sizeof(*seats));
    char(*labels)[ENGINE_LABEL_MAX] = calloc(rows, sizeof(*labels));
    if (seats == NULL || labels == NULL)
        die("calloc", -12);
    engine_layout_spec spec = {.seat_count = rows * cols,
                               .seats = seats,
                               .row_count = rows,
                               .row_labels = (const char(*)[ENGINE_LABEL_MAX])labels,
                               .category_count = 3,
                               .best_row = rows * 2 / 3};
    strcpy(spec.category_names[0], "silver");
    strcpy(spec.category_names[1], "gold");
    strcpy(spec.category_names[2], "platinum");
    uint32_t k = 0;
    for (uint32_t r = 0; r < rows; r++) {
        /* Rows and columns fit 16 bits (engine limits), so labels fit 16 bytes. */
        snprintf(labels[r], ENGINE_LABEL_MAX, "R%hu", (unsigned short)(r + 1));
        for (uint32_t c = 0; c < cols; c++, k++) {
            engine_seat_spec *s = &seats[k];
            snprintf(s->label, ENGINE_LABEL_MAX, "R%hu-%hu", (unsigned short)(r + 1),
                     (unsigned short)(c + 1));
            s->row = (uint16_t)r;
            s->col = (uint16_t)(c + c / aisle); /* one empty column per aisle */
            s->category = (uint8_t)(r * 3 / rows);
            if (c >= cols - 2)
                s->flags = c == cols - 1 ? ENGINE_SEAT_FLAG_ACCESSIBLE : ENGINE_SEAT_FLAG_COMPANION;
        }
    }
    engine_record rec;
    int rc = engine_layout_create(e, 0, id, &spec, NULL, &rec);
    if (rc != 0)
        die("engine_layout_create", rc);
    free(seats);
    free(labels);
}

typedef struct fixture {
    engine *e;
    uint64_t showtime;
    uint32_t seats;
    uint32_t rows, cols;
} fixture;

static fixture fixture_make(uint32_t rows, uint32_t cols, uint32_t aisle)
{
    fixture f = {.rows = rows, .cols = cols, .seats = rows * cols, .showtime = 7};
    engine_config cfg;
    engine_config_default(&cfg);
    cfg.holds_max = 1u << 17;
    cfg.bookings_max = 1u << 22;
    int rc = engine_create(&cfg, &f.e);
    if (rc != 0)
        die("engine_create", rc);
    layout_make(f.e, 1, rows, cols, aisle);
    uint32_t prices[3] = {15000, 25000, 40000};
    engine_record rec;
    rc = engine_showtime_create(f.e, 0, f.showtime, 1, START_MS, prices, 3, &rec);
    if (rc != 0)
        die("engine_showtime_create", rc);
    return f;
}

/* Small showtimes repeat a pass so each round times at least ~50,000 ops. */
static uint32_t passes(uint32_t ops_per_pass)
{
    return ops_per_pass >= 50000 ? 1 : (50000 + ops_per_pass - 1) / ops_per_pass;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void report(const char *op, uint32_t seats, double samples[ROUNDS], uint64_t ops)
{
    qsort(samples, ROUNDS, sizeof(double), cmp_double);
    double median = samples[ROUNDS / 2];
    if (json)
        printf("{\"op\": \"%s\", \"seats\": %" PRIu32 ", \"ns_per_op\": %.1f, \"ops\": %" PRIu64
               ", \"rounds\": %d, \"min_ns\": %.1f, \"max_ns\": %.1f}\n",
               op, seats, median, ops, ROUNDS, samples[0], samples[ROUNDS - 1]);
    else
        printf("%-10s %8" PRIu32 " %12" PRIu64 " %10.1f %10.1f %10.1f\n", op, seats, ops, median,
               samples[0], samples[ROUNDS - 1]);
}

/* Holds of 4 listed seats, quads spread over the whole showtime (every
 * other quad, so half the seats end up held), then released. Times both. */
static void bench_hold_release(fixture *f)
{
    double hold_ns[ROUNDS], rel_ns[ROUNDS];
    uint32_t quads = f->seats / 8;
    uint64_t *ids = malloc(quads * sizeof(*ids));
    uint64_t total = 0;
    engine_record rec;
    const uint32_t reps = passes(quads);
    for (int r = 0; r < ROUNDS; r++) {
        int64_t held_ns = 0, released_ns = 0;
        for (uint32_t rep = 0; rep < reps; rep++) {
            int64_t t0 = clock_ns();
            for (uint32_t q = 0; q < quads; q++) {
                uint32_t base = (uint32_t)(((uint64_t)q * 2654435761u) % quads) * 8;
                uint32_t s[4] = {base, base + 1, base + 2, base + 3};
                if (engine_hold_place(f->e, NOW_MS, f->showtime, q % 1000 + 1, s, 4, NULL, NULL,
                                      &rec) != ENGINE_OK)
                    die("engine_hold_place", -1);
                ids[q] = rec.u.hold_place.hold_id;
            }
            int64_t t1 = clock_ns();
            for (uint32_t q = 0; q < quads; q++) {
                if (engine_hold_release(f->e, NOW_MS, ids[q], q % 1000 + 1, &rec) != ENGINE_OK)
                    die("engine_hold_release", -1);
            }
            int64_t t2 = clock_ns();
            held_ns += t1 - t0;
            released_ns += t2 - t1;
        }
        hold_ns[r] = (double)held_ns / ((double)quads * reps);
        rel_ns[r] = (double)released_ns / ((double)quads * reps);
        total += (uint64_t)quads * reps;
    }
    report("hold4", f->seats, hold_ns, total);
    report("release", f->seats, rel_ns, total);
    free(ids);
}

/* Best-available blocks of 4, rotating categories, until 60 % of the seats
 * are held: later holds search past fuller rows, as in a real on-sale. */
static void bench_best(fixture *f)
{
    double ns[ROUNDS];
    uint32_t want = f->seats * 6 / 10 / 4;
    uint64_t *ids = malloc(want * sizeof(*ids));
    uint64_t total = 0;
    engine_record rec;
    const uint32_t reps = passes(want);
    for (int r = 0; r < ROUNDS; r++) {
        int64_t spent = 0;
        for (uint32_t rep = 0; rep < reps; rep++) {
            uint32_t n = 0;
            int64_t t0 = clock_ns();
            for (uint32_t i = 0; i < want; i++) {
                if (engine_hold_best(f->e, NOW_MS, f->showtime, i % 1000 + 1, 4, i % 3, 0, &rec) !=
                    ENGINE_OK)
                    continue;
                ids[n++] = rec.u.hold_place.hold_id;
            }
            int64_t t1 = clock_ns();
            for (uint32_t i = 0; i < n; i++) {
                engine_hold_info h;
                if (!engine_hold_get(f->e, ids[i], &h) ||
                    engine_hold_release(f->e, NOW_MS, ids[i], h.user_id, &rec) != ENGINE_OK)
                    die("engine_hold_release", -1);
            }
            spent += t1 - t0;
        }
        ns[r] = (double)spent / ((double)want * reps);
        total += (uint64_t)want * reps;
    }
    report("best4", f->seats, ns, total);
    free(ids);
}

/* Confirms of 4-seat holds (placed untimed), then cancels (untimed) so the
 * seats are free for the next round. */
static void bench_confirm(fixture *f)
{
    double ns[ROUNDS];
    uint32_t quads = f->seats / 8;
    uint64_t *ids = malloc(quads * sizeof(*ids));
    uint64_t *bookings = malloc(quads * sizeof(*bookings));
    char(*keys)[32] = calloc(quads, sizeof(*keys));
    uint64_t total = 0;
    engine_record rec;
    const uint32_t reps = passes(quads);
    for (int r = 0; r < ROUNDS; r++) {
        int64_t spent = 0;
        for (uint32_t rep = 0; rep < reps; rep++) {
            for (uint32_t q = 0; q < quads; q++) {
                uint32_t s[4] = {q * 8, q * 8 + 1, q * 8 + 2, q * 8 + 3};
                if (engine_hold_place(f->e, NOW_MS, f->showtime, q + 1, s, 4, NULL, NULL, &rec) !=
                    ENGINE_OK)
                    die("engine_hold_place", -1);
                ids[q] = rec.u.hold_place.hold_id;
            }
            /* Half the confirms carry an idempotency key, as API clients would;
             * keys are formatted before the clock starts. */
            for (uint32_t q = 1; q < quads; q += 2)
                snprintf(keys[q], sizeof(keys[q]), "r%d-%" PRIu32 "-q%" PRIu32, r, rep, q);
            int64_t t0 = clock_ns();
            for (uint32_t q = 0; q < quads; q++) {
                uint32_t key_len = q % 2 ? (uint32_t)strlen(keys[q]) : 0;
                if (engine_booking_confirm(f->e, NOW_MS, ids[q], q + 1, ENGINE_PAY_UPI, keys[q],
                                           key_len, &bookings[q], NULL, &rec) != ENGINE_OK)
                    die("engine_booking_confirm", -1);
            }
            int64_t t1 = clock_ns();
            for (uint32_t q = 0; q < quads; q++) {
                if (engine_booking_cancel(f->e, NOW_MS, bookings[q], q + 1, NULL, &rec) !=
                    ENGINE_OK)
                    die("engine_booking_cancel", -1);
            }
            spent += t1 - t0;
        }
        ns[r] = (double)spent / ((double)quads * reps);
        total += (uint64_t)quads * reps;
    }
    report("confirm", f->seats, ns, total);
    free(keys);
    free(ids);
    free(bookings);
}

/* Sweeps of expired 4-seat holds, 256 per call as the server would. */
static void bench_expire(fixture *f)
{
    double ns[ROUNDS];
    uint32_t quads = f->seats / 8;
    engine_record *recs = malloc(256 * sizeof(*recs));
    uint64_t total = 0;
    int64_t now = NOW_MS;
    engine_record rec;
    const uint32_t reps = passes(quads);
    for (int r = 0; r < ROUNDS; r++) {
        int64_t spent = 0;
        for (uint32_t rep = 0; rep < reps; rep++) {
            for (uint32_t q = 0; q < quads; q++) {
                uint32_t s[4] = {q * 8, q * 8 + 1, q * 8 + 2, q * 8 + 3};
                /* Staggered creation times give the heap distinct expiries. */
                if (engine_hold_place(f->e, now + q / 64, f->showtime, q + 1, s, 4, NULL, NULL,
                                      &rec) != ENGINE_OK)
                    die("engine_hold_place", -1);
            }
            now += quads / 64 + 1 + (int64_t)engine_config_get(f->e)->hold_ttl_ms;
            uint32_t n = 0;
            int64_t t0 = clock_ns();
            size_t got;
            while ((got = engine_holds_expire(f->e, now, recs, NULL, 256)) > 0)
                n += (uint32_t)got;
            int64_t t1 = clock_ns();
            if (n != quads)
                die("engine_holds_expire count", (int)n);
            spent += t1 - t0;
        }
        ns[r] = (double)spent / ((double)quads * reps);
        total += (uint64_t)quads * reps;
    }
    report("expire", f->seats, ns, total);
    free(recs);
}

static void bench_showtime(uint32_t rows, uint32_t cols, uint32_t aisle)
{
    fixture f = fixture_make(rows, cols, aisle);
    bench_hold_release(&f);
    bench_best(&f);
    bench_confirm(&f);
    bench_expire(&f);
    size_t bytes = engine_showtime_state_bytes(f.e, f.showtime);
    if (json)
        printf("{\"op\": \"bytes_per_seat\", \"seats\": %" PRIu32
               ", \"bytes_per_seat\": %.3f, \"state_bytes\": %zu}\n",
               f.seats, (double)bytes / f.seats, bytes);
    else
        printf("%-10s %8" PRIu32 " state %zu bytes = %.3f bytes/seat\n", "state", f.seats, bytes,
               (double)bytes / f.seats);
    if (engine_check(f.e) != 0)
        die("engine_check", -1);
    engine_destroy(f.e);
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0) {
            json = true;
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            printf("usage: engine-bench [--json]\n\n"
                   "Measures ns per engine operation (hold4, release, best4, confirm, expire)\n"
                   "on a 500-seat and a 100,000-seat showtime, and bytes of seat state per\n"
                   "seat. Prints a table, or one JSON object per line with --json.\n"
                   "Figures are medians of %d rounds. Build with `make bench` (release).\n",
                   ROUNDS);
            return 0;
        } else {
            fprintf(stderr, "engine-bench: unknown argument '%s' (try --help)\n", argv[i]);
            return 2;
        }
    }
    if (!json)
        printf("%-10s %8s %12s %10s %10s %10s\n", "op", "seats", "ops", "ns/op", "min", "max");
    bench_showtime(20, 25, 10);   /* 500 seats: a cinema screen */
    bench_showtime(200, 500, 50); /* 100,000 seats: a stadium */
    return 0;
}
