/*
 * engine_test.c - unit tests of the seat engine against engine.h.
 *
 * Every operation has a success-path test and a test per refusal; every
 * refusal is checked to change nothing (digest, clock, invariants).
 */
#include "engine.h"

#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- Time and fixture constants ------------------------------------------ */

#define T0    INT64_C(1700000000000)
#define SEC   INT64_C(1000)
#define MIN   (60 * SEC)
#define HOUR  (60 * MIN)
#define START (T0 + 48 * HOUR)
#define TTL   (300 * SEC)
#define LIFE  (900 * SEC)

enum { LAYOUT = 1, SHOW = 10, USER = 42, OTHER = 43 };
enum { SILVER = 0, GOLD = 1, PLATINUM = 2 };

static const uint32_t PRICES[3] = {1000, 1500, 2001};

/* ---- Layout builder ----------------------------------------------------- */

typedef struct tlayout {
    engine_seat_spec *seats;
    char (*rows)[ENGINE_LABEL_MAX];
    uint32_t seat_cap, row_cap;
    engine_layout_spec spec;
} tlayout;

static void tl_init(tlayout *t, uint32_t row_cap, uint32_t seat_cap)
{
    memset(t, 0, sizeof *t);
    t->seats = calloc(seat_cap ? seat_cap : 1, sizeof *t->seats);
    t->rows = calloc(row_cap ? row_cap : 1, sizeof *t->rows);
    cr_assert(t->seats != NULL && t->rows != NULL);
    t->seat_cap = seat_cap;
    t->row_cap = row_cap;
    t->spec.seats = t->seats;
    t->spec.row_labels = (const char(*)[ENGINE_LABEL_MAX])t->rows;
}

static void tl_free(tlayout *t)
{
    free(t->seats);
    free(t->rows);
    memset(t, 0, sizeof *t);
}

static void tl_cat(tlayout *t, const char *name)
{
    cr_assert_lt(t->spec.category_count, ENGINE_CATEGORIES_MAX);
    snprintf(t->spec.category_names[t->spec.category_count++], ENGINE_NAME_MAX, "%s", name);
}

static void tl_row(tlayout *t, const char *label)
{
    cr_assert_lt(t->spec.row_count, t->row_cap);
    snprintf(t->rows[t->spec.row_count++], ENGINE_LABEL_MAX, "%s", label);
}

/* Appends a seat labelled "<row label><col>"; returns its index. */
static uint32_t tl_seat(tlayout *t, uint16_t row, uint16_t col, uint8_t cat, uint8_t flags)
{
    cr_assert_lt(t->spec.seat_count, t->seat_cap);
    cr_assert_lt(row, t->spec.row_count);
    engine_seat_spec *s = &t->seats[t->spec.seat_count];
    snprintf(s->label, sizeof s->label, "%s%u", t->rows[row], (unsigned)col);
    s->row = row;
    s->col = col;
    s->category = cat;
    s->flags = flags;
    return t->spec.seat_count++;
}

/*
 * The standard layout: rows A, B, C (silver, gold, platinum) of ten seats,
 * columns 1-5 and 7-11 (column 6 is an aisle). A1 is a wheelchair space, A2
 * its companion seat, C11 is blocked. The best row is B.
 */
static void std_layout(tlayout *t)
{
    static const char *const rl[] = {"A", "B", "C"};
    tl_init(t, 3, 30);
    tl_cat(t, "silver");
    tl_cat(t, "gold");
    tl_cat(t, "platinum");
    for (uint16_t r = 0; r < 3; r++) {
        tl_row(t, rl[r]);
        for (uint16_t c = 1; c <= 11; c++) {
            if (c == 6) {
                continue;
            }
            uint8_t flags = 0;
            if (r == 0 && c == 1) {
                flags = ENGINE_SEAT_FLAG_ACCESSIBLE;
            } else if (r == 0 && c == 2) {
                flags = ENGINE_SEAT_FLAG_COMPANION;
            } else if (r == 2 && c == 11) {
                flags = ENGINE_SEAT_FLAG_BLOCKED;
            }
            tl_seat(t, r, c, (uint8_t)r, flags);
        }
    }
    t->spec.best_row = 1;
}

/* Seat index of row `r` (0..2), column `c` (1..11, not 6) in the standard layout. */
static uint32_t S(unsigned r, unsigned c)
{
    cr_assert(r < 3 && c >= 1 && c <= 11 && c != 6);
    return r * 10 + (c <= 5 ? c - 1 : c - 2);
}

#define ACC_SEAT     S(0, 1)
#define COMP_SEAT    S(0, 2)
#define BLOCKED_SEAT S(2, 11)

/* A single-category layout of `rows` rows, each with the given columns 1..cols[r]. */
static void grid_layout(tlayout *t, uint32_t rows, const uint16_t *cols, uint32_t best_row)
{
    uint32_t total = 0;
    for (uint32_t r = 0; r < rows; r++) {
        total += cols[r];
    }
    tl_init(t, rows, total);
    tl_cat(t, "standard");
    for (uint32_t r = 0; r < rows; r++) {
        char label[ENGINE_LABEL_MAX];
        snprintf(label, sizeof label, "R%u-", (unsigned)r);
        tl_row(t, label);
        for (uint16_t c = 1; c <= cols[r]; c++) {
            tl_seat(t, (uint16_t)r, c, 0, 0);
        }
    }
    t->spec.best_row = best_row;
}

/* ---- Engine helpers ----------------------------------------------------- */

static engine_config test_cfg(void)
{
    engine_config c;
    engine_config_default(&c);
    c.holds_max = 256;
    c.bookings_max = 1024;
    c.showtimes_max = 16;
    c.layouts_max = 8;
    return c;
}

static engine *new_engine(const engine_config *cfg)
{
    engine *e = NULL;
    int rc = engine_create(cfg, &e);
    cr_assert_eq(rc, 0, "engine_create: %d", rc);
    cr_assert_not_null(e);
    return e;
}

static const char *rname(int r)
{
    if (r >= 0 && r < ENGINE_RESULT_COUNT_) {
        const char *n = engine_result_name((engine_result)r);
        return n ? n : "(null)";
    }
    return engine_strerror(r);
}

static void make_layout(engine *e, int64_t now, uint64_t id, const tlayout *t)
{
    engine_problem p = {0};
    engine_record rec;
    int rc = engine_layout_create(e, now, id, &t->spec, &p, &rec);
    cr_assert_eq(rc, 0, "layout_create: %s (%s[%u]: %s)", rname(rc), p.field ? p.field : "-",
                 p.index, p.reason ? p.reason : "-");
}

static void make_show(engine *e, int64_t now, uint64_t id, uint64_t layout, int64_t start,
                      const uint32_t *prices, uint32_t n)
{
    engine_record rec;
    int rc = engine_showtime_create(e, now, id, layout, start, prices, n, &rec);
    cr_assert_eq(rc, 0, "showtime_create: %s", rname(rc));
}

/* An engine with the standard layout LAYOUT and showtime SHOW (start START), at time T0. */
static engine *fixture_cfg(const engine_config *cfg)
{
    engine *e = new_engine(cfg);
    tlayout t;
    std_layout(&t);
    make_layout(e, T0, LAYOUT, &t);
    tl_free(&t);
    make_show(e, T0, SHOW, LAYOUT, START, PRICES, 3);
    cr_assert_eq(engine_now_ms(e), T0);
    return e;
}

static engine *fixture(void)
{
    engine_config cfg = test_cfg();
    return fixture_cfg(&cfg);
}

/* An engine holding layout `t` as layout 1 and showtime 10 of it, at T0. */
static engine *fixture_layout(const tlayout *t, const uint32_t *prices, uint32_t n)
{
    engine_config cfg = test_cfg();
    engine *e = new_engine(&cfg);
    make_layout(e, T0, LAYOUT, t);
    make_show(e, T0, SHOW, LAYOUT, START, prices, n);
    return e;
}

static uint64_t place_on(engine *e, uint64_t show, int64_t now, uint64_t user,
                         const uint32_t *seats, uint32_t n)
{
    engine_record rec;
    uint32_t conflicts[ENGINE_HOLD_SEATS_MAX + 1];
    uint32_t cc = 0;
    engine_result r = engine_hold_place(e, now, show, user, seats, n, conflicts, &cc, &rec);
    cr_assert_eq(r, ENGINE_OK, "hold_place: %s", rname((int)r));
    cr_assert_eq(rec.type, ENGINE_REC_HOLD_PLACE);
    return rec.u.hold_place.hold_id;
}

#define SEATS(...)  ((const uint32_t[]){__VA_ARGS__})
#define NSEATS(...) ((uint32_t)(sizeof((const uint32_t[]){__VA_ARGS__}) / sizeof(uint32_t)))
#define PLACE(e, now, user, ...) \
    place_on((e), SHOW, (now), (user), SEATS(__VA_ARGS__), NSEATS(__VA_ARGS__))

static uint64_t confirm(engine *e, int64_t now, uint64_t hold, uint64_t user)
{
    engine_record rec;
    uint64_t bid = 0;
    bool replayed = true;
    engine_result r =
        engine_booking_confirm(e, now, hold, user, ENGINE_PAY_UPI, NULL, 0, &bid, &replayed, &rec);
    cr_assert_eq(r, ENGINE_OK, "booking_confirm: %s", rname((int)r));
    cr_assert(!replayed);
    cr_assert_eq(rec.type, ENGINE_REC_BOOKING_CONFIRM);
    cr_assert_eq(rec.u.booking_confirm.booking_id, bid);
    return bid;
}

static bool hold_live(const engine *e, uint64_t id)
{
    engine_hold_info hi;
    return engine_hold_get(e, id, &hi);
}

static void assert_state(const engine *e, uint32_t seat, int want)
{
    int got = engine_seat_state_get(e, SHOW, seat);
    cr_assert_eq(got, want, "seat %u: state %d, want %d", seat, got, want);
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

/* The two seat lists hold the same seats, in any order. */
static void assert_same_seats(const uint32_t *a, uint32_t na, const uint32_t *b, uint32_t nb)
{
    cr_assert_eq(na, nb, "seat counts %u vs %u", na, nb);
    cr_assert_leq(na, ENGINE_HOLD_SEATS_MAX);
    uint32_t x[ENGINE_HOLD_SEATS_MAX], y[ENGINE_HOLD_SEATS_MAX];
    memcpy(x, a, na * sizeof *x);
    memcpy(y, b, nb * sizeof *y);
    qsort(x, na, sizeof *x, cmp_u32);
    qsort(y, nb, sizeof *y, cmp_u32);
    for (uint32_t i = 0; i < na; i++) {
        cr_assert_eq(x[i], y[i], "seat sets differ at %u: %u vs %u", i, x[i], y[i]);
    }
}

/* The seat lists are equal, element by element. */
static void assert_seats_eq(const uint32_t *got, uint32_t ngot, const uint32_t *want,
                            uint32_t nwant)
{
    cr_assert_eq(ngot, nwant, "seat counts %u vs %u", ngot, nwant);
    for (uint32_t i = 0; i < ngot; i++) {
        cr_assert_eq(got[i], want[i], "seat %u: %u, want %u", i, got[i], want[i]);
    }
}

/*
 * Asserts that the call returns `want` and changes nothing: the digest, the
 * clock, the number of live holds and the invariants are as before.
 */
#define REFUSED(e, want, ...)                                                                      \
    do {                                                                                           \
        const engine *e_ = (e);                                                                    \
        uint64_t d_ = engine_digest(e_);                                                           \
        int64_t n_ = engine_now_ms(e_);                                                            \
        uint32_t l_ = engine_holds_live(e_);                                                       \
        int64_t x_ = engine_holds_next_expiry_ms(e_);                                              \
        int got_ = (int)(__VA_ARGS__);                                                             \
        cr_assert_eq(got_, (int)(want), "%s\n  returned %s, want %s", #__VA_ARGS__, rname(got_),   \
                     rname((int)(want)));                                                          \
        cr_assert_eq(engine_digest(e_), d_, "%s changed the digest", #__VA_ARGS__);                \
        cr_assert_eq(engine_now_ms(e_), n_, "%s moved the clock", #__VA_ARGS__);                   \
        cr_assert_eq(engine_holds_live(e_), l_, "%s changed the live holds", #__VA_ARGS__);        \
        cr_assert_eq(engine_holds_next_expiry_ms(e_), x_, "%s changed next expiry", #__VA_ARGS__); \
        cr_assert_eq(engine_check(e_), 0);                                                         \
    } while (0)

/* ---- Configuration and creation ----------------------------------------- */

Test(engine, config_default_matches_documented_values)
{
    engine_config c;
    memset(&c, 0xa5, sizeof c);
    engine_config_default(&c);
    cr_assert_eq(c.hold_ttl_ms, 300000);
    cr_assert_eq(c.hold_max_lifetime_ms, 900000);
    cr_assert_eq(c.max_seats_per_hold, 10);
    cr_assert_eq(c.holds_max, 65536);
    cr_assert_eq(c.bookings_max, 1048576);
    cr_assert_eq(c.showtimes_max, 16384);
    cr_assert_eq(c.layouts_max, 1024);
    cr_assert_eq(c.id_prefix, 0);
    cr_assert_eq(c.refund_tier_count, 2);
    cr_assert_eq(c.refund_tiers[0].min_before_start_ms, 24 * HOUR);
    cr_assert_eq(c.refund_tiers[0].percent, 100);
    cr_assert_eq(c.refund_tiers[1].min_before_start_ms, 2 * HOUR);
    cr_assert_eq(c.refund_tiers[1].percent, 50);
}

Test(engine, create_with_defaults_starts_empty_at_time_zero)
{
    engine_config cfg;
    engine_config_default(&cfg);
    engine *e = new_engine(&cfg);
    const engine_config *got = engine_config_get(e);
    cr_assert_not_null(got);
    cr_assert_eq(got->holds_max, cfg.holds_max);
    cr_assert_eq(got->bookings_max, cfg.bookings_max);
    cr_assert_eq(got->hold_ttl_ms, cfg.hold_ttl_ms);
    cr_assert_eq(got->refund_tier_count, cfg.refund_tier_count);
    cr_assert_eq(engine_now_ms(e), 0);
    cr_assert_eq(engine_holds_live(e), 0);
    cr_assert_eq(engine_holds_next_expiry_ms(e), INT64_MAX);
    cr_assert_eq(engine_layout_seat_count(e, LAYOUT), 0);
    cr_assert(!engine_showtime_get(e, SHOW, NULL, NULL, NULL));
    cr_assert_eq(engine_check(e), 0);

    engine *f = new_engine(&cfg);
    cr_assert_eq(engine_digest(e), engine_digest(f), "two fresh engines differ");
    engine_destroy(f);
    engine_destroy(e);
    engine_destroy(NULL);
}

Test(engine, create_copies_the_config)
{
    engine_config cfg = test_cfg();
    cfg.id_prefix = 7;
    engine *e = new_engine(&cfg);
    engine_config saved = cfg;
    cfg.holds_max = 1;
    cfg.id_prefix = 9;
    const engine_config *got = engine_config_get(e);
    cr_assert_eq(got->holds_max, saved.holds_max);
    cr_assert_eq(got->id_prefix, 7);
    engine_destroy(e);
}

static void expect_einval(const engine_config *cfg, const char *what)
{
    engine *sentinel = (engine *)(uintptr_t)0x1234;
    engine *e = sentinel;
    int rc = engine_create(cfg, &e);
    cr_assert_eq(rc, ENGINE_EINVAL, "%s: engine_create returned %d, want ENGINE_EINVAL", what, rc);
    cr_assert_eq(e, sentinel, "%s: *out was written on error", what);
}

Test(engine, create_rejects_a_zero_pool)
{
    engine_config c = test_cfg();
    c.holds_max = 0;
    expect_einval(&c, "holds_max 0");
    c = test_cfg();
    c.bookings_max = 0;
    expect_einval(&c, "bookings_max 0");
    c = test_cfg();
    c.showtimes_max = 0;
    expect_einval(&c, "showtimes_max 0");
    c = test_cfg();
    c.layouts_max = 0;
    expect_einval(&c, "layouts_max 0");
}

Test(engine, create_rejects_max_seats_per_hold_outside_1_to_16)
{
    engine_config c = test_cfg();
    c.max_seats_per_hold = 0;
    expect_einval(&c, "max_seats_per_hold 0");
    c.max_seats_per_hold = 17;
    expect_einval(&c, "max_seats_per_hold 17");
    c.max_seats_per_hold = 1;
    engine_destroy(new_engine(&c));
    c.max_seats_per_hold = 16;
    engine_destroy(new_engine(&c));
}

Test(engine, create_rejects_refund_tiers_not_descending)
{
    engine_config c = test_cfg();
    c.refund_tier_count = 2;
    c.refund_tiers[0] = (engine_refund_tier){2 * HOUR, 50};
    c.refund_tiers[1] = (engine_refund_tier){24 * HOUR, 100};
    expect_einval(&c, "ascending tiers");
    c.refund_tier_count = 3;
    c.refund_tiers[0] = (engine_refund_tier){48 * HOUR, 100};
    c.refund_tiers[1] = (engine_refund_tier){2 * HOUR, 50};
    c.refund_tiers[2] = (engine_refund_tier){24 * HOUR, 25};
    expect_einval(&c, "third tier out of order");
}

Test(engine, create_rejects_refund_percent_over_100)
{
    engine_config c = test_cfg();
    c.refund_tiers[1].percent = 101;
    expect_einval(&c, "percent 101");
    c.refund_tiers[1].percent = 100;
    engine_destroy(new_engine(&c));
}

Test(engine, create_rejects_more_refund_tiers_than_the_array_holds)
{
    engine_config c = test_cfg();
    c.refund_tier_count = ENGINE_REFUND_TIERS_MAX + 1;
    expect_einval(&c, "refund_tier_count 5");
}

/* ---- Layouts ---------------------------------------------------------------- */

Test(engine, layout_create_fills_the_record_and_answers_queries)
{
    engine_config cfg = test_cfg();
    engine *e = new_engine(&cfg);
    tlayout t;
    std_layout(&t);
    engine_problem p = {0};
    engine_record rec;
    memset(&rec, 0, sizeof rec);
    uint64_t d0 = engine_digest(e);
    int rc = engine_layout_create(e, T0, LAYOUT, &t.spec, &p, &rec);
    cr_assert_eq(rc, 0, "%s", rname(rc));
    cr_assert_eq(rec.type, ENGINE_REC_LAYOUT_CREATE);
    cr_assert_eq(rec.time_ms, T0);
    cr_assert_eq(rec.u.layout_create.layout_id, LAYOUT);
    cr_assert_not_null(rec.u.layout_create.blob);
    cr_assert_gt(rec.u.layout_create.blob_len, 0);
    cr_assert_eq(engine_now_ms(e), T0);
    cr_assert_neq(engine_digest(e), d0);

    cr_assert_eq(engine_layout_seat_count(e, LAYOUT), 30);
    cr_assert_eq(engine_layout_category_count(e, LAYOUT), 3);
    cr_assert_str_eq(engine_layout_category_name(e, LAYOUT, 0), "silver");
    cr_assert_str_eq(engine_layout_category_name(e, LAYOUT, 1), "gold");
    cr_assert_str_eq(engine_layout_category_name(e, LAYOUT, 2), "platinum");
    cr_assert_null(engine_layout_category_name(e, LAYOUT, 3));
    cr_assert_str_eq(engine_layout_row_label(e, LAYOUT, 0), "A");
    cr_assert_str_eq(engine_layout_row_label(e, LAYOUT, 2), "C");
    cr_assert_null(engine_layout_row_label(e, LAYOUT, 3));
    for (uint32_t i = 0; i < 30; i++) {
        const engine_seat_spec *s = engine_layout_seat(e, LAYOUT, i);
        cr_assert_not_null(s, "seat %u", i);
        cr_assert_str_eq(s->label, t.seats[i].label);
        cr_assert_eq(s->row, t.seats[i].row);
        cr_assert_eq(s->col, t.seats[i].col);
        cr_assert_eq(s->category, t.seats[i].category);
        cr_assert_eq(s->flags, t.seats[i].flags);
    }
    cr_assert_null(engine_layout_seat(e, LAYOUT, 30));
    cr_assert_null(engine_layout_seat(e, 99, 0));
    cr_assert_eq(engine_layout_seat_count(e, 99), 0);
    cr_assert_eq(engine_layout_category_count(e, 99), 0);

    /* The spec was copied: scribbling on it changes nothing. */
    uint64_t d1 = engine_digest(e);
    memset(t.seats, 0, 30 * sizeof *t.seats);
    cr_assert_str_eq(engine_layout_seat(e, LAYOUT, 0)->label, "A1");
    cr_assert_eq(engine_digest(e), d1);
    cr_assert_eq(engine_check(e), 0);
    tl_free(&t);
    engine_destroy(e);
}

Test(engine, layout_seat_find_by_label)
{
    engine *e = fixture();
    cr_assert_eq(engine_layout_seat_find(e, LAYOUT, "A1"), (int32_t)S(0, 1));
    cr_assert_eq(engine_layout_seat_find(e, LAYOUT, "A5"), (int32_t)S(0, 5));
    cr_assert_eq(engine_layout_seat_find(e, LAYOUT, "A7"), (int32_t)S(0, 7));
    cr_assert_eq(engine_layout_seat_find(e, LAYOUT, "B10"), (int32_t)S(1, 10));
    cr_assert_eq(engine_layout_seat_find(e, LAYOUT, "C11"), (int32_t)S(2, 11));
    cr_assert_eq(engine_layout_seat_find(e, LAYOUT, "A6"), -1, "the aisle is not a seat");
    cr_assert_eq(engine_layout_seat_find(e, LAYOUT, "D1"), -1);
    cr_assert_eq(engine_layout_seat_find(e, LAYOUT, ""), -1);
    cr_assert_eq(engine_layout_seat_find(e, LAYOUT, "A10000000000000000000"), -1);
    cr_assert_eq(engine_layout_seat_find(e, 99, "A1"), -1);
    engine_destroy(e);
}

Test(engine, layout_create_refuses_an_existing_id)
{
    engine *e = fixture();
    tlayout t;
    std_layout(&t);
    engine_record rec;
    REFUSED(e, ENGINE_EXISTS, engine_layout_create(e, T0 + 1, LAYOUT, &t.spec, NULL, &rec));
    tl_free(&t);
    engine_destroy(e);
}

Test(engine, layout_create_refuses_beyond_layouts_max)
{
    engine_config cfg = test_cfg();
    cfg.layouts_max = 2;
    engine *e = new_engine(&cfg);
    tlayout t;
    std_layout(&t);
    make_layout(e, T0, 1, &t);
    make_layout(e, T0, 2, &t);
    engine_record rec;
    REFUSED(e, ENGINE_CAPACITY, engine_layout_create(e, T0 + 1, 3, &t.spec, NULL, &rec));
    /* Deleting one makes room again. */
    cr_assert_eq(engine_layout_delete(e, T0 + 2, 1, &rec), ENGINE_OK);
    make_layout(e, T0 + 3, 3, &t);
    tl_free(&t);
    engine_destroy(e);
}

/*
 * Creating layout 2 from `t` is refused with ENGINE_BAD_LAYOUT, the problem
 * names `field` (when non-NULL) and `index` (when >= 0), and nothing changes.
 */
static void expect_bad_layout(tlayout *t, const char *field, int64_t index)
{
    engine *e = fixture();
    engine_problem p = {0};
    engine_record rec;
    REFUSED(e, ENGINE_BAD_LAYOUT, engine_layout_create(e, T0 + 5, 2, &t->spec, &p, &rec));
    cr_assert_not_null(p.field, "problem->field not set");
    cr_assert_not_null(p.reason, "problem->reason not set");
    if (field != NULL) {
        cr_assert_str_eq(p.field, field, "problem->field \"%s\", want \"%s\" (%s)", p.field, field,
                         p.reason);
    }
    if (index >= 0) {
        cr_assert_eq(p.index, (uint32_t)index, "problem->index %u, want %u (%s)", p.index,
                     (unsigned)index, p.reason);
    }
    cr_assert_eq(engine_layout_seat_count(e, 2), 0);
    /* Without a problem pointer it is refused all the same. */
    REFUSED(e, ENGINE_BAD_LAYOUT, engine_layout_create(e, T0 + 5, 2, &t->spec, NULL, &rec));
    engine_destroy(e);
    tl_free(t);
}

Test(engine, layout_rejects_zero_seats)
{
    tlayout t;
    std_layout(&t);
    t.spec.seat_count = 0;
    expect_bad_layout(&t, NULL, -1);
}

Test(engine, layout_rejects_more_than_100000_seats)
{
    tlayout t;
    tl_init(&t, 201, ENGINE_SEATS_MAX + 1);
    tl_cat(&t, "standard");
    for (uint16_t r = 0; r < 201; r++) {
        char label[ENGINE_LABEL_MAX];
        snprintf(label, sizeof label, "R%u-", (unsigned)r);
        tl_row(&t, label);
        for (uint16_t c = 1; c <= (r < 200 ? 500 : 1); c++) {
            tl_seat(&t, r, c, 0, 0);
        }
    }
    cr_assert_eq(t.spec.seat_count, ENGINE_SEATS_MAX + 1);
    expect_bad_layout(&t, NULL, -1);
}

Test(engine, layout_rejects_unsorted_seats)
{
    tlayout t;
    std_layout(&t);
    engine_seat_spec tmp = t.seats[3];
    t.seats[3] = t.seats[4];
    t.seats[4] = tmp;
    expect_bad_layout(&t, "seats", -1);
}

Test(engine, layout_rejects_a_repeated_position)
{
    tlayout t;
    std_layout(&t);
    t.seats[4].col = t.seats[3].col; /* labels stay distinct */
    expect_bad_layout(&t, "seats", -1);
}

Test(engine, layout_rejects_a_row_out_of_order)
{
    tlayout t;
    std_layout(&t);
    t.seats[12].row = 0; /* a row-A seat amid row B */
    expect_bad_layout(&t, "seats", -1);
}

Test(engine, layout_rejects_a_duplicate_label)
{
    tlayout t;
    std_layout(&t);
    memcpy(t.seats[25].label, t.seats[2].label, ENGINE_LABEL_MAX);
    expect_bad_layout(&t, "seats", -1);
}

Test(engine, layout_rejects_an_empty_label)
{
    tlayout t;
    std_layout(&t);
    memset(t.seats[3].label, 0, ENGINE_LABEL_MAX);
    expect_bad_layout(&t, "seats", 3);
}

Test(engine, layout_rejects_a_label_without_nul)
{
    tlayout t;
    std_layout(&t);
    memset(t.seats[7].label, 'X', ENGINE_LABEL_MAX);
    expect_bad_layout(&t, "seats", 7);
}

Test(engine, layout_rejects_a_row_out_of_range)
{
    tlayout t;
    std_layout(&t);
    t.seats[29].row = 3; /* row_count is 3; still sorted */
    expect_bad_layout(&t, "seats", 29);
}

Test(engine, layout_rejects_a_row_with_no_seats)
{
    tlayout t;
    std_layout(&t);
    /* Four labelled rows; row D has no seat. */
    char(*rows)[ENGINE_LABEL_MAX] = calloc(4, sizeof *rows);
    cr_assert_not_null(rows);
    memcpy(rows, t.rows, 3 * sizeof *rows);
    snprintf(rows[3], ENGINE_LABEL_MAX, "D");
    free(t.rows);
    t.rows = rows;
    t.spec.row_labels = (const char(*)[ENGINE_LABEL_MAX])rows;
    t.spec.row_count = 4;
    expect_bad_layout(&t, NULL, -1);
}

Test(engine, layout_rejects_an_empty_middle_row)
{
    tlayout t;
    std_layout(&t);
    /* Row B loses its seats: row C seats become row 2 of 3 with row 1 empty. */
    for (uint32_t i = 10; i < 20; i++) {
        t.seats[i] = t.seats[i + 10];
        t.seats[i].row = 2;
        t.seats[i].label[0] = 'X'; /* keep labels unique */
    }
    t.spec.seat_count = 20;
    expect_bad_layout(&t, NULL, -1);
}

Test(engine, layout_rejects_zero_rows_and_too_many_rows)
{
    tlayout t;
    std_layout(&t);
    t.spec.row_count = 0;
    expect_bad_layout(&t, NULL, -1);

    tl_init(&t, ENGINE_ROWS_MAX + 1, ENGINE_ROWS_MAX + 1);
    tl_cat(&t, "standard");
    for (uint16_t r = 0; r <= ENGINE_ROWS_MAX; r++) {
        char label[ENGINE_LABEL_MAX];
        snprintf(label, sizeof label, "R%u-", (unsigned)r);
        tl_row(&t, label);
        tl_seat(&t, r, 1, 0, 0);
    }
    expect_bad_layout(&t, NULL, -1);
}

Test(engine, layout_rejects_a_category_out_of_range)
{
    tlayout t;
    std_layout(&t);
    t.seats[4].category = 3;
    expect_bad_layout(&t, "seats", 4);
}

Test(engine, layout_rejects_a_category_count_out_of_range)
{
    tlayout t;
    std_layout(&t);
    t.spec.category_count = 0;
    expect_bad_layout(&t, NULL, -1);
    std_layout(&t);
    t.spec.category_count = ENGINE_CATEGORIES_MAX + 1;
    expect_bad_layout(&t, NULL, -1);
}

Test(engine, layout_rejects_a_duplicate_category_name)
{
    tlayout t;
    std_layout(&t);
    snprintf(t.spec.category_names[2], ENGINE_NAME_MAX, "silver");
    expect_bad_layout(&t, "category_names", -1);
}

Test(engine, layout_rejects_an_empty_category_name)
{
    tlayout t;
    std_layout(&t);
    memset(t.spec.category_names[1], 0, ENGINE_NAME_MAX);
    expect_bad_layout(&t, "category_names", 1);
}

Test(engine, layout_rejects_a_category_name_without_nul)
{
    tlayout t;
    std_layout(&t);
    memset(t.spec.category_names[2], 'x', ENGINE_NAME_MAX);
    expect_bad_layout(&t, "category_names", 2);
}

Test(engine, layout_rejects_a_duplicate_row_label)
{
    tlayout t;
    std_layout(&t);
    snprintf(t.rows[2], ENGINE_LABEL_MAX, "A");
    for (uint32_t i = 20; i < 30; i++) {
        t.seats[i].label[0] = 'Z'; /* seat labels stay unique */
    }
    expect_bad_layout(&t, "row_labels", -1);
}

Test(engine, layout_rejects_unknown_flag_bits)
{
    tlayout t;
    std_layout(&t);
    t.seats[6].flags = 0x8;
    expect_bad_layout(&t, "seats", 6);
    std_layout(&t);
    t.seats[6].flags = ENGINE_SEAT_FLAG_BLOCKED | 0x80;
    expect_bad_layout(&t, "seats", 6);
}

Test(engine, layout_rejects_best_row_out_of_range)
{
    tlayout t;
    std_layout(&t);
    t.spec.best_row = 3;
    expect_bad_layout(&t, "best_row", -1);
}

Test(engine, layout_accepts_the_edges_of_the_limits)
{
    engine *e = fixture();
    tlayout t;
    tl_init(&t, 1, 2);
    for (int i = 0; i < ENGINE_CATEGORIES_MAX; i++) {
        char name[ENGINE_NAME_MAX];
        memset(name, 'a' + i, sizeof name - 1); /* 23-byte names */
        name[sizeof name - 1] = '\0';
        tl_cat(&t, name);
    }
    tl_row(&t, "ROWLABEL1234567"); /* 15 bytes */
    engine_seat_spec *s = &t.seats[0];
    memset(s->label, 'L', ENGINE_LABEL_MAX - 1);
    s->label[ENGINE_LABEL_MAX - 1] = '\0';
    s->row = 0;
    s->col = 0;
    s->category = ENGINE_CATEGORIES_MAX - 1;
    s->flags = ENGINE_SEAT_FLAG_ALL;
    s = &t.seats[1];
    snprintf(s->label, sizeof s->label, "M");
    s->row = 0;
    s->col = ENGINE_COL_MAX;
    t.spec.seat_count = 2;
    make_layout(e, T0 + 1, 2, &t);
    cr_assert_eq(engine_layout_seat_count(e, 2), 2);
    cr_assert_eq(engine_layout_seat_find(e, 2, "LLLLLLLLLLLLLLL"), 0);
    cr_assert_eq(engine_layout_seat(e, 2, 1)->col, ENGINE_COL_MAX);
    cr_assert_eq(engine_check(e), 0);
    tl_free(&t);
    engine_destroy(e);
}

Test(engine, layout_delete_removes_the_layout)
{
    engine *e = fixture();
    tlayout t;
    std_layout(&t);
    make_layout(e, T0 + 1, 2, &t);
    tl_free(&t);
    engine_record rec;
    memset(&rec, 0, sizeof rec);
    uint64_t d = engine_digest(e);
    cr_assert_eq(engine_layout_delete(e, T0 + 2, 2, &rec), ENGINE_OK);
    cr_assert_eq(rec.type, ENGINE_REC_LAYOUT_DELETE);
    cr_assert_eq(rec.time_ms, T0 + 2);
    cr_assert_eq(rec.u.layout_delete.layout_id, 2);
    cr_assert_eq(engine_now_ms(e), T0 + 2);
    cr_assert_neq(engine_digest(e), d);
    cr_assert_eq(engine_layout_seat_count(e, 2), 0);
    cr_assert_eq(engine_layout_seat_find(e, 2, "A1"), -1);
    cr_assert_null(engine_layout_seat(e, 2, 0));
    cr_assert_eq(engine_layout_seat_count(e, LAYOUT), 30, "the other layout is untouched");
    cr_assert_eq(engine_check(e), 0);
    REFUSED(e, ENGINE_UNKNOWN_LAYOUT, engine_layout_delete(e, T0 + 3, 2, &rec));
    engine_destroy(e);
}

Test(engine, layout_delete_refuses_an_unknown_layout)
{
    engine *e = fixture();
    engine_record rec;
    REFUSED(e, ENGINE_UNKNOWN_LAYOUT, engine_layout_delete(e, T0 + 1, 99, &rec));
    engine_destroy(e);
}

Test(engine, layout_delete_refuses_a_layout_in_use)
{
    engine *e = fixture();
    engine_record rec;
    REFUSED(e, ENGINE_LAYOUT_IN_USE, engine_layout_delete(e, T0 + 1, LAYOUT, &rec));
    cr_assert_eq(engine_showtime_delete(e, T0 + 2, SHOW, &rec), ENGINE_OK);
    cr_assert_eq(engine_layout_delete(e, T0 + 3, LAYOUT, &rec), ENGINE_OK);
    cr_assert_eq(engine_check(e), 0);
    engine_destroy(e);
}

/* ---- Showtimes -------------------------------------------------------------- */

Test(engine, showtime_create_fills_the_record_and_frees_every_sellable_seat)
{
    engine_config cfg = test_cfg();
    engine *e = new_engine(&cfg);
    tlayout t;
    std_layout(&t);
    make_layout(e, T0, LAYOUT, &t);
    tl_free(&t);
    engine_record rec;
    memset(&rec, 0, sizeof rec);
    uint64_t d = engine_digest(e);
    int rc = engine_showtime_create(e, T0 + 7, SHOW, LAYOUT, START, PRICES, 3, &rec);
    cr_assert_eq(rc, 0, "%s", rname(rc));
    cr_assert_eq(rec.type, ENGINE_REC_SHOWTIME_CREATE);
    cr_assert_eq(rec.time_ms, T0 + 7);
    cr_assert_eq(rec.u.showtime_create.showtime_id, SHOW);
    cr_assert_eq(rec.u.showtime_create.layout_id, LAYOUT);
    cr_assert_eq(rec.u.showtime_create.start_ms, START);
    cr_assert_eq(rec.u.showtime_create.price_count, 3);
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(rec.u.showtime_create.prices[i], PRICES[i]);
    }
    cr_assert_eq(engine_now_ms(e), T0 + 7);
    cr_assert_neq(engine_digest(e), d);

    uint64_t layout = 0;
    int64_t start = 0;
    uint32_t prices[ENGINE_CATEGORIES_MAX] = {0};
    cr_assert(engine_showtime_get(e, SHOW, &layout, &start, prices));
    cr_assert_eq(layout, LAYOUT);
    cr_assert_eq(start, START);
    cr_assert_eq(prices[0], 1000);
    cr_assert_eq(prices[1], 1500);
    cr_assert_eq(prices[2], 2001);
    cr_assert(engine_showtime_get(e, SHOW, NULL, NULL, NULL));
    cr_assert(!engine_showtime_get(e, 99, &layout, &start, prices));

    for (uint32_t i = 0; i < 30; i++) {
        assert_state(e, i, i == BLOCKED_SEAT ? ENGINE_SEAT_UNSELLABLE : ENGINE_SEAT_FREE);
    }
    cr_assert_eq(engine_check(e), 0);
    engine_destroy(e);
}

Test(engine, showtime_create_refuses_an_existing_id)
{
    engine *e = fixture();
    engine_record rec;
    REFUSED(e, ENGINE_EXISTS,
            engine_showtime_create(e, T0 + 1, SHOW, LAYOUT, START, PRICES, 3, &rec));
    engine_destroy(e);
}

Test(engine, showtime_create_refuses_an_unknown_layout)
{
    engine *e = fixture();
    engine_record rec;
    REFUSED(e, ENGINE_UNKNOWN_LAYOUT,
            engine_showtime_create(e, T0 + 1, 11, 99, START, PRICES, 3, &rec));
    engine_destroy(e);
}

Test(engine, showtime_create_refuses_a_price_count_unlike_the_categories)
{
    engine *e = fixture();
    engine_record rec;
    const uint32_t four[4] = {1, 2, 3, 4};
    REFUSED(e, ENGINE_BAD_PRICES,
            engine_showtime_create(e, T0 + 1, 11, LAYOUT, START, PRICES, 2, &rec));
    REFUSED(e, ENGINE_BAD_PRICES,
            engine_showtime_create(e, T0 + 1, 11, LAYOUT, START, four, 4, &rec));
    REFUSED(e, ENGINE_BAD_PRICES,
            engine_showtime_create(e, T0 + 1, 11, LAYOUT, START, PRICES, 0, &rec));
    cr_assert(!engine_showtime_get(e, 11, NULL, NULL, NULL));
    engine_destroy(e);
}

Test(engine, showtime_create_refuses_beyond_showtimes_max)
{
    engine_config cfg = test_cfg();
    cfg.showtimes_max = 1;
    engine *e = fixture_cfg(&cfg);
    engine_record rec;
    REFUSED(e, ENGINE_CAPACITY,
            engine_showtime_create(e, T0 + 1, 11, LAYOUT, START, PRICES, 3, &rec));
    cr_assert_eq(engine_showtime_delete(e, T0 + 2, SHOW, &rec), ENGINE_OK);
    make_show(e, T0 + 3, 11, LAYOUT, START, PRICES, 3);
    engine_destroy(e);
}

Test(engine, showtime_create_checks_refusals_in_order)
{
    engine_config cfg = test_cfg();
    cfg.showtimes_max = 1;
    engine *e = fixture_cfg(&cfg);
    engine_record rec;
    /* TIME_BACKWARDS before EXISTS; EXISTS before UNKNOWN_LAYOUT; ... before CAPACITY. */
    REFUSED(e, ENGINE_TIME_BACKWARDS,
            engine_showtime_create(e, T0 - 1, SHOW, 99, START, PRICES, 1, &rec));
    REFUSED(e, ENGINE_EXISTS, engine_showtime_create(e, T0 + 1, SHOW, 99, START, PRICES, 1, &rec));
    REFUSED(e, ENGINE_UNKNOWN_LAYOUT,
            engine_showtime_create(e, T0 + 1, 11, 99, START, PRICES, 1, &rec));
    REFUSED(e, ENGINE_BAD_PRICES,
            engine_showtime_create(e, T0 + 1, 11, LAYOUT, START, PRICES, 1, &rec));
    REFUSED(e, ENGINE_CAPACITY,
            engine_showtime_create(e, T0 + 1, 11, LAYOUT, START, PRICES, 3, &rec));
    engine_destroy(e);
}

Test(engine, showtime_delete_removes_the_showtime)
{
    engine *e = fixture();
    make_show(e, T0 + 1, 11, LAYOUT, START, PRICES, 3);
    engine_record rec;
    memset(&rec, 0, sizeof rec);
    uint64_t d = engine_digest(e);
    cr_assert_eq(engine_showtime_delete(e, T0 + 2, 11, &rec), ENGINE_OK);
    cr_assert_eq(rec.type, ENGINE_REC_SHOWTIME_DELETE);
    cr_assert_eq(rec.time_ms, T0 + 2);
    cr_assert_eq(rec.u.showtime_delete.showtime_id, 11);
    cr_assert_eq(engine_now_ms(e), T0 + 2);
    cr_assert_neq(engine_digest(e), d);
    cr_assert(!engine_showtime_get(e, 11, NULL, NULL, NULL));
    cr_assert_eq(engine_seat_state_get(e, 11, 0), -1);
    cr_assert(engine_showtime_get(e, SHOW, NULL, NULL, NULL));
    cr_assert_eq(engine_check(e), 0);
    engine_destroy(e);
}

Test(engine, showtime_delete_refuses_an_unknown_showtime)
{
    engine *e = fixture();
    engine_record rec;
    REFUSED(e, ENGINE_UNKNOWN_SHOWTIME, engine_showtime_delete(e, T0 + 1, 99, &rec));
    engine_destroy(e);
}

Test(engine, showtime_delete_refuses_while_a_hold_lives)
{
    engine *e = fixture();
    engine_record rec;
    uint64_t h = PLACE(e, T0 + 1, USER, S(1, 1));
    REFUSED(e, ENGINE_SHOWTIME_IN_USE, engine_showtime_delete(e, T0 + 2, SHOW, &rec));
    /* Past its expiry but not swept, the hold still lives. */
    REFUSED(e, ENGINE_SHOWTIME_IN_USE, engine_showtime_delete(e, T0 + 1 + TTL, SHOW, &rec));
    cr_assert_eq(engine_holds_expire(e, T0 + 1 + TTL, &rec, NULL, 1), 1);
    cr_assert(!hold_live(e, h));
    cr_assert_eq(engine_showtime_delete(e, T0 + 1 + TTL, SHOW, &rec), ENGINE_OK);
    cr_assert_eq(engine_check(e), 0);
    engine_destroy(e);
}

Test(engine, showtime_delete_refuses_a_confirmed_booking_but_not_a_cancelled_one)
{
    engine *e = fixture();
    engine_record rec;
    uint64_t h = PLACE(e, T0 + 1, USER, S(1, 1), S(1, 2));
    uint64_t b = confirm(e, T0 + 2, h, USER);
    REFUSED(e, ENGINE_SHOWTIME_IN_USE, engine_showtime_delete(e, T0 + 3, SHOW, &rec));
    uint64_t refund = 0;
    cr_assert_eq(engine_booking_cancel(e, T0 + 4, b, USER, &refund, &rec), ENGINE_OK);
    cr_assert_eq(engine_showtime_delete(e, T0 + 5, SHOW, &rec), ENGINE_OK);
    engine_booking_info bi;
    cr_assert(engine_booking_get(e, b, &bi), "a cancelled booking stays readable");
    cr_assert_eq(bi.status, ENGINE_BOOKING_STATUS_CANCELLED);
    cr_assert_eq(bi.showtime_id, SHOW);
    cr_assert_eq(bi.amount, 3000);
    cr_assert_eq(engine_check(e), 0);
    engine_destroy(e);
}

Test(engine, seatmap_and_availability_follow_holds_and_sales)
{
    engine *e = fixture();
    engine_category_counts counts[ENGINE_CATEGORIES_MAX];
    memset(counts, 0xff, sizeof counts);
    cr_assert_eq(engine_availability_get(e, SHOW, counts), 3);
    cr_assert_eq(counts[SILVER].free, 10);
    cr_assert_eq(counts[SILVER].held, 0);
    cr_assert_eq(counts[SILVER].sold, 0);
    cr_assert_eq(counts[SILVER].blocked, 0);
    cr_assert_eq(counts[PLATINUM].free, 9);
    cr_assert_eq(counts[PLATINUM].blocked, 1);

    uint64_t h1 = PLACE(e, T0 + 1, USER, ACC_SEAT, S(0, 3), S(1, 4));
    uint64_t h2 = PLACE(e, T0 + 2, OTHER, S(2, 1), S(2, 2));
    (void)h1;
    confirm(e, T0 + 3, h2, OTHER);

    uint8_t map[30];
    memset(map, 0xee, sizeof map);
    cr_assert_eq(engine_seatmap_get(e, SHOW, map, sizeof map), 30);
    for (uint32_t i = 0; i < 30; i++) {
        int want = ENGINE_SEAT_FREE;
        if (i == ACC_SEAT || i == S(0, 3) || i == S(1, 4)) {
            want = ENGINE_SEAT_HELD;
        } else if (i == S(2, 1) || i == S(2, 2)) {
            want = ENGINE_SEAT_SOLD;
        } else if (i == BLOCKED_SEAT) {
            want = ENGINE_SEAT_UNSELLABLE;
        }
        cr_assert_eq(map[i], want, "seatmap[%u] = %u, want %d", i, map[i], want);
        assert_state(e, i, want);
    }

    cr_assert_eq(engine_availability_get(e, SHOW, counts), 3);
    cr_assert_eq(counts[SILVER].free, 8);
    cr_assert_eq(counts[SILVER].held, 2);
    cr_assert_eq(counts[SILVER].sold, 0);
    cr_assert_eq(counts[SILVER].blocked, 0);
    cr_assert_eq(counts[GOLD].free, 9);
    cr_assert_eq(counts[GOLD].held, 1);
    cr_assert_eq(counts[GOLD].sold, 0);
    cr_assert_eq(counts[PLATINUM].free, 7);
    cr_assert_eq(counts[PLATINUM].held, 0);
    cr_assert_eq(counts[PLATINUM].sold, 2);
    cr_assert_eq(counts[PLATINUM].blocked, 1);
    engine_destroy(e);
}

Test(engine, seatmap_refuses_a_small_buffer_and_an_unknown_showtime)
{
    engine *e = fixture();
    uint8_t map[64];
    memset(map, 0xee, sizeof map);
    cr_assert_eq(engine_seatmap_get(e, SHOW, map, 29), ENGINE_EBUFSIZE);
    cr_assert_eq(map[0], 0xee, "nothing written on EBUFSIZE");
    cr_assert_eq(engine_seatmap_get(e, SHOW, map, 0), ENGINE_EBUFSIZE);
    cr_assert_eq(engine_seatmap_get(e, 99, map, sizeof map), -1);
    cr_assert_eq(engine_seatmap_get(e, SHOW, map, sizeof map), 30);
    cr_assert_eq(map[30], 0xee, "nothing written past the seat count");
    engine_category_counts counts[ENGINE_CATEGORIES_MAX];
    cr_assert_eq(engine_availability_get(e, 99, counts), -1);
    cr_assert_eq(engine_seat_state_get(e, 99, 0), -1);
    cr_assert_eq(engine_seat_state_get(e, SHOW, 30), -1);
    cr_assert_eq(engine_seat_state_get(e, SHOW, UINT32_MAX), -1);
    engine_destroy(e);
}

Test(engine, deleted_ids_can_be_created_again)
{
    engine *e = fixture();
    tlayout t;
    std_layout(&t);
    make_layout(e, T0 + 1, 2, &t);
    engine_record rec;
    cr_assert_eq(engine_layout_delete(e, T0 + 2, 2, &rec), ENGINE_OK);
    make_layout(e, T0 + 3, 2, &t);
    cr_assert_eq(engine_layout_seat_count(e, 2), 30);
    tl_free(&t);
    make_show(e, T0 + 4, 11, LAYOUT, START, PRICES, 3);
    cr_assert_eq(engine_showtime_delete(e, T0 + 5, 11, &rec), ENGINE_OK);
    const uint32_t other[3] = {1, 2, 3};
    make_show(e, T0 + 6, 11, 2, START + HOUR, other, 3);
    uint64_t layout = 0;
    int64_t start = 0;
    uint32_t prices[ENGINE_CATEGORIES_MAX];
    cr_assert(engine_showtime_get(e, 11, &layout, &start, prices));
    cr_assert_eq(layout, 2);
    cr_assert_eq(start, START + HOUR);
    cr_assert_eq(prices[2], 3);
    cr_assert_eq(engine_check(e), 0);
    engine_destroy(e);
}

Test(engine, showtimes_keep_their_own_prices_and_seats)
{
    engine *e = fixture();
    const uint32_t cheap[3] = {10, 20, 30};
    make_show(e, T0 + 1, 11, LAYOUT, START, cheap, 3);
    /* A small second layout: a seat index valid in SHOW is unknown there. */
    tlayout t;
    const uint16_t cols[1] = {4};
    grid_layout(&t, 1, cols, 0);
    make_layout(e, T0 + 1, 2, &t);
    tl_free(&t);
    const uint32_t one = 5;
    make_show(e, T0 + 1, 12, 2, START, &one, 1);

    uint64_t h1 = PLACE(e, T0 + 2, USER, S(1, 1), S(2, 2));
    uint64_t h2 = place_on(e, 11, T0 + 2, USER, SEATS(S(1, 1), S(2, 2)), 2);
    engine_hold_info a, b;
    cr_assert(engine_hold_get(e, h1, &a));
    cr_assert(engine_hold_get(e, h2, &b));
    cr_assert_eq(a.amount, 3501);
    cr_assert_eq(b.amount, 50);
    cr_assert_eq(b.showtime_id, 11);
    cr_assert_eq(engine_seat_state_get(e, 11, S(1, 1)), ENGINE_SEAT_HELD);
    cr_assert_eq(engine_seat_state_get(e, 11, S(1, 2)), ENGINE_SEAT_FREE);
    engine_record rec;
    uint32_t cc = 0;
    REFUSED(e, ENGINE_UNKNOWN_SEAT,
            engine_hold_place(e, T0 + 3, 12, USER, SEATS(4), 1, NULL, &cc, &rec));
    REFUSED(e, ENGINE_UNKNOWN_CATEGORY, engine_hold_best(e, T0 + 3, 12, USER, 1, 1, 0, &rec));
    uint64_t h3 = place_on(e, 12, T0 + 3, USER, SEATS(3), 1);
    cr_assert(engine_hold_get(e, h3, &a));
    cr_assert_eq(a.amount, 5);
    cr_assert_eq(engine_check(e), 0);
    engine_destroy(e);
}

Test(engine, digest_tells_states_apart)
{
    engine *a = fixture();
    engine *b = fixture();
    cr_assert_eq(engine_digest(a), engine_digest(b));
    PLACE(a, T0 + 1, USER, S(1, 1));
    PLACE(b, T0 + 1, USER, S(1, 2));
    cr_assert_neq(engine_digest(a), engine_digest(b), "different seats");
    engine_destroy(b);
    b = fixture();
    PLACE(b, T0 + 1, OTHER, S(1, 1));
    cr_assert_neq(engine_digest(a), engine_digest(b), "different users");
    engine_destroy(b);
    b = fixture();
    PLACE(b, T0 + 2, USER, S(1, 1));
    cr_assert_neq(engine_digest(a), engine_digest(b), "different times");
    engine_destroy(b);
    b = fixture();
    PLACE(b, T0 + 1, USER, S(1, 1));
    cr_assert_eq(engine_digest(a), engine_digest(b), "the same history");
    engine_destroy(b);
    engine_destroy(a);
}

/* ---- hold_place --------------------------------------------------------------- */

Test(engine, hold_place_holds_the_seats_in_request_order)
{
    engine *e = fixture();
    const uint32_t seats[3] = {S(2, 3), S(0, 5), S(1, 7)};
    engine_record rec;
    memset(&rec, 0, sizeof rec);
    uint32_t cc = 0;
    uint64_t d = engine_digest(e);
    int64_t now = T0 + 1000;
    cr_assert_eq(engine_hold_place(e, now, SHOW, USER, seats, 3, NULL, &cc, &rec), ENGINE_OK);
    cr_assert_eq(rec.type, ENGINE_REC_HOLD_PLACE);
    cr_assert_eq(rec.time_ms, now);
    cr_assert_eq(rec.u.hold_place.hold_id, 1);
    cr_assert_eq(rec.u.hold_place.showtime_id, SHOW);
    cr_assert_eq(rec.u.hold_place.user_id, USER);
    cr_assert_eq(rec.u.hold_place.expires_ms, now + TTL);
    cr_assert_eq(rec.u.hold_place.amount, 2001 + 1000 + 1500);
    assert_seats_eq(rec.u.hold_place.seats, rec.u.hold_place.seat_count, seats, 3);

    engine_hold_info hi;
    memset(&hi, 0, sizeof hi);
    cr_assert(engine_hold_get(e, 1, &hi));
    cr_assert_eq(hi.id, 1);
    cr_assert_eq(hi.showtime_id, SHOW);
    cr_assert_eq(hi.user_id, USER);
    cr_assert_eq(hi.created_ms, now);
    cr_assert_eq(hi.expires_ms, now + TTL);
    cr_assert_eq(hi.amount, 4501);
    assert_seats_eq(hi.seats, hi.seat_count, seats, 3);

    for (int i = 0; i < 3; i++) {
        assert_state(e, seats[i], ENGINE_SEAT_HELD);
    }
    assert_state(e, S(1, 1), ENGINE_SEAT_FREE);
    cr_assert_eq(engine_now_ms(e), now);
    cr_assert_eq(engine_holds_live(e), 1);
    cr_assert_eq(engine_holds_next_expiry_ms(e), now + TTL);
    cr_assert_neq(engine_digest(e), d);
    uint64_t ids[4] = {0};
    cr_assert_eq(engine_user_holds(e, USER, 0, ids, 4), 1);
    cr_assert_eq(ids[0], 1);
    cr_assert_eq(engine_user_holds(e, OTHER, 0, ids, 4), 0);
    cr_assert_eq(engine_check(e), 0);
    engine_destroy(e);
}

Test(engine, hold_place_issues_increasing_ids)
{
    engine *e = fixture();
    cr_assert_eq(PLACE(e, T0 + 1, USER, S(0, 3)), 1);
    cr_assert_eq(PLACE(e, T0 + 1, OTHER, S(0, 4)), 2);
    cr_assert_eq(PLACE(e, T0 + 2, USER, S(0, 5)), 3);
    cr_assert_eq(engine_holds_live(e), 3);
    engine_destroy(e);
}

Test(engine, hold_place_accepts_max_seats_and_accessible_seats)
{
    engine *e = fixture();
    uint64_t h = PLACE(e, T0 + 1, USER, ACC_SEAT, COMP_SEAT, S(0, 3), S(0, 4), S(0, 5), S(0, 7),
                       S(0, 8), S(0, 9), S(0, 10), S(0, 11));
    engine_hold_info hi;
    cr_assert(engine_hold_get(e, h, &hi));
    cr_assert_eq(hi.seat_count, 10);
    cr_assert_eq(hi.amount, 10000);
    engine_destroy(e);
}

Test(engine, hold_place_refuses_an_unknown_showtime)
{
    engine *e = fixture();
    engine_record rec;
    uint32_t cc = 0;
    REFUSED(e, ENGINE_UNKNOWN_SHOWTIME,
            engine_hold_place(e, T0 + 1, 99, USER, SEATS(0), 1, NULL, &cc, &rec));
    engine_destroy(e);
}

Test(engine, hold_place_refuses_from_the_start_of_the_show)
{
    engine *e = fixture();
    engine_record rec;
    uint32_t cc = 0;
    REFUSED(e, ENGINE_SHOW_STARTED,
            engine_hold_place(e, START, SHOW, USER, SEATS(S(1, 1)), 1, NULL, &cc, &rec));
    REFUSED(e, ENGINE_SHOW_STARTED,
            engine_hold_place(e, START + HOUR, SHOW, USER, SEATS(S(1, 1)), 1, NULL, &cc, &rec));
    cr_assert_eq(engine_hold_place(e, START - 1, SHOW, USER, SEATS(S(1, 1)), 1, NULL, &cc, &rec),
                 ENGINE_OK);
    engine_destroy(e);
}

Test(engine, hold_place_refuses_zero_seats_and_more_than_the_maximum)
{
    engine *e = fixture();
    engine_record rec;
    uint32_t cc = 0;
    const uint32_t eleven[11] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    REFUSED(e, ENGINE_BAD_COUNT,
            engine_hold_place(e, T0 + 1, SHOW, USER, eleven, 0, NULL, &cc, &rec));
    REFUSED(e, ENGINE_BAD_COUNT,
            engine_hold_place(e, T0 + 1, SHOW, USER, eleven, 11, NULL, &cc, &rec));
    engine_destroy(e);

    /* With the hard cap configured, 17 is still too many. */
    engine_config cfg = test_cfg();
    cfg.max_seats_per_hold = ENGINE_HOLD_SEATS_MAX;
    e = fixture_cfg(&cfg);
    uint32_t many[17];
    for (uint32_t i = 0; i < 17; i++) {
        many[i] = i + 2;
    }
    REFUSED(e, ENGINE_BAD_COUNT,
            engine_hold_place(e, T0 + 1, SHOW, USER, many, 17, NULL, &cc, &rec));
    cr_assert_eq(engine_hold_place(e, T0 + 1, SHOW, USER, many, 16, NULL, &cc, &rec), ENGINE_OK);
    cr_assert_eq(rec.u.hold_place.seat_count, 16);
    engine_destroy(e);
}

Test(engine, hold_place_refuses_an_unknown_seat)
{
    engine *e = fixture();
    engine_record rec;
    uint32_t cc = 0;
    REFUSED(e, ENGINE_UNKNOWN_SEAT,
            engine_hold_place(e, T0 + 1, SHOW, USER, SEATS(0, 30), 2, NULL, &cc, &rec));
    REFUSED(e, ENGINE_UNKNOWN_SEAT,
            engine_hold_place(e, T0 + 1, SHOW, USER, SEATS(UINT32_MAX), 1, NULL, &cc, &rec));
    engine_destroy(e);
}

Test(engine, hold_place_refuses_a_duplicate_seat)
{
    engine *e = fixture();
    engine_record rec;
    uint32_t cc = 0;
    REFUSED(e, ENGINE_DUPLICATE_SEAT,
            engine_hold_place(e, T0 + 1, SHOW, USER, SEATS(3, 4, 3), 3, NULL, &cc, &rec));
    engine_destroy(e);
}

Test(engine, hold_place_refuses_a_blocked_seat_and_lists_it)
{
    engine *e = fixture();
    engine_record rec;
    uint32_t conflicts[3] = {99, 99, 99};
    uint32_t cc = 99;
    REFUSED(e, ENGINE_SEAT_BLOCKED,
            engine_hold_place(e, T0 + 1, SHOW, USER, SEATS(S(2, 1), BLOCKED_SEAT, S(2, 2)), 3,
                              conflicts, &cc, &rec));
    cr_assert_eq(cc, 1);
    cr_assert_eq(conflicts[0], BLOCKED_SEAT);
    assert_state(e, S(2, 1), ENGINE_SEAT_FREE);
    engine_destroy(e);
}

Test(engine, hold_place_refuses_held_seats_and_lists_them)
{
    engine *e = fixture();
    PLACE(e, T0 + 1, USER, S(1, 2), S(1, 3), S(1, 4));
    engine_record rec;
    uint32_t conflicts[4] = {99, 99, 99, 99};
    uint32_t cc = 99;
    REFUSED(e, ENGINE_SEAT_TAKEN,
            engine_hold_place(e, T0 + 2, SHOW, OTHER, SEATS(S(1, 1), S(1, 4), S(1, 2), S(1, 5)), 4,
                              conflicts, &cc, &rec));
    assert_same_seats(conflicts, cc, SEATS(S(1, 2), S(1, 4)), 2);
    assert_state(e, S(1, 1), ENGINE_SEAT_FREE);
    assert_state(e, S(1, 5), ENGINE_SEAT_FREE);
    /* The same user is refused too: a hold never grows. */
    REFUSED(e, ENGINE_SEAT_TAKEN,
            engine_hold_place(e, T0 + 2, SHOW, USER, SEATS(S(1, 3)), 1, conflicts, &cc, &rec));
    assert_same_seats(conflicts, cc, SEATS(S(1, 3)), 1);
    engine_destroy(e);
}

Test(engine, hold_place_refuses_sold_seats_and_lists_them)
{
    engine *e = fixture();
    uint64_t h = PLACE(e, T0 + 1, USER, S(2, 5), S(2, 7));
    confirm(e, T0 + 2, h, USER);
    engine_record rec;
    uint32_t conflicts[2] = {99, 99};
    uint32_t cc = 99;
    REFUSED(e, ENGINE_SEAT_TAKEN,
            engine_hold_place(e, T0 + 3, SHOW, OTHER, SEATS(S(2, 4), S(2, 7)), 2, conflicts, &cc,
                              &rec));
    assert_same_seats(conflicts, cc, SEATS(S(2, 7)), 1);
    engine_destroy(e);
}

Test(engine, hold_place_conflicts_may_be_null)
{
    engine *e = fixture();
    PLACE(e, T0 + 1, USER, S(1, 2));
    engine_record rec;
    uint32_t cc = 0;
    REFUSED(e, ENGINE_SEAT_TAKEN,
            engine_hold_place(e, T0 + 2, SHOW, OTHER, SEATS(S(1, 2)), 1, NULL, &cc, &rec));
    REFUSED(e, ENGINE_SEAT_BLOCKED,
            engine_hold_place(e, T0 + 2, SHOW, OTHER, SEATS(BLOCKED_SEAT), 1, NULL, &cc, &rec));
    engine_destroy(e);
}

Test(engine, hold_place_an_expired_hold_keeps_its_seats_until_swept)
{
    engine *e = fixture();
    uint64_t h = PLACE(e, T0 + 1, USER, S(1, 2));
    engine_record rec;
    uint32_t conflicts[1];
    uint32_t cc = 0;
    REFUSED(e, ENGINE_SEAT_TAKEN,
            engine_hold_place(e, T0 + 1 + TTL + 5, SHOW, OTHER, SEATS(S(1, 2)), 1, conflicts, &cc,
                              &rec));
    cr_assert_eq(engine_holds_expire(e, T0 + 1 + TTL + 5, &rec, NULL, 4), 1);
    cr_assert_eq(rec.u.hold_end.hold_id, h);
    PLACE(e, T0 + 1 + TTL + 5, OTHER, S(1, 2));
    engine_destroy(e);
}

Test(engine, hold_place_refuses_beyond_holds_max)
{
    engine_config cfg = test_cfg();
    cfg.holds_max = 2;
    engine *e = fixture_cfg(&cfg);
    uint64_t h1 = PLACE(e, T0 + 1, USER, S(1, 1));
    PLACE(e, T0 + 2, USER, S(1, 2));
    engine_record rec;
    uint32_t cc = 0;
    REFUSED(e, ENGINE_CAPACITY,
            engine_hold_place(e, T0 + 3, SHOW, OTHER, SEATS(S(1, 3)), 1, NULL, &cc, &rec));
    /* A released hold frees its slot. */
    cr_assert_eq(engine_hold_release(e, T0 + 4, h1, USER, &rec), ENGINE_OK);
    PLACE(e, T0 + 5, OTHER, S(1, 3));
    engine_destroy(e);
}

Test(engine, hold_place_refuses_when_the_bookings_pool_could_overflow)
{
    engine_config cfg = test_cfg();
    cfg.bookings_max = 2;
    engine *e = fixture_cfg(&cfg);
    uint64_t h1 = PLACE(e, T0 + 1, USER, S(1, 1));
    uint64_t b1 = confirm(e, T0 + 2, h1, USER);
    PLACE(e, T0 + 3, USER, S(1, 2)); /* one booking + one live hold = 2 */
    engine_record rec;
    uint32_t cc = 0;
    REFUSED(e, ENGINE_CAPACITY,
            engine_hold_place(e, T0 + 4, SHOW, OTHER, SEATS(S(1, 3)), 1, NULL, &cc, &rec));
    /* A cancelled booking is still kept, so still counts. */
    uint64_t refund;
    cr_assert_eq(engine_booking_cancel(e, T0 + 5, b1, USER, &refund, &rec), ENGINE_OK);
    REFUSED(e, ENGINE_CAPACITY,
            engine_hold_place(e, T0 + 6, SHOW, OTHER, SEATS(S(1, 3)), 1, NULL, &cc, &rec));
    REFUSED(e, ENGINE_CAPACITY, engine_hold_best(e, T0 + 6, SHOW, OTHER, 1, GOLD, 0, &rec));
    engine_destroy(e);
}

Test(engine, hold_place_checks_refusals_in_order)
{
    engine_config cfg = test_cfg();
    cfg.holds_max = 1;
    engine *e = fixture_cfg(&cfg);
    PLACE(e, T0 + 10, USER, S(1, 5));
    engine_record rec;
    uint32_t conflicts[4];
    uint32_t cc = 0;
    const uint32_t eleven[11] = {30, 30, 0, 1, 2, 3, 4, 5, 6, 7, 8};
    /* TIME_BACKWARDS before UNKNOWN_SHOWTIME. */
    REFUSED(e, ENGINE_TIME_BACKWARDS,
            engine_hold_place(e, T0 + 9, 99, USER, eleven, 0, conflicts, &cc, &rec));
    /* UNKNOWN_SHOWTIME before SHOW_STARTED (there is no start to compare). */
    REFUSED(e, ENGINE_UNKNOWN_SHOWTIME,
            engine_hold_place(e, START, 99, USER, eleven, 0, conflicts, &cc, &rec));
    /* SHOW_STARTED before BAD_COUNT. */
    REFUSED(e, ENGINE_SHOW_STARTED,
            engine_hold_place(e, START, SHOW, USER, eleven, 0, conflicts, &cc, &rec));
    /* BAD_COUNT before UNKNOWN_SEAT. */
    REFUSED(e, ENGINE_BAD_COUNT,
            engine_hold_place(e, T0 + 10, SHOW, USER, eleven, 11, conflicts, &cc, &rec));
    /* UNKNOWN_SEAT before DUPLICATE_SEAT. */
    REFUSED(e, ENGINE_UNKNOWN_SEAT,
            engine_hold_place(e, T0 + 10, SHOW, USER, eleven, 2, conflicts, &cc, &rec));
    /* DUPLICATE_SEAT before SEAT_BLOCKED. */
    REFUSED(e, ENGINE_DUPLICATE_SEAT,
            engine_hold_place(e, T0 + 10, SHOW, USER, SEATS(BLOCKED_SEAT, BLOCKED_SEAT), 2,
                              conflicts, &cc, &rec));
    /* SEAT_BLOCKED before SEAT_TAKEN, listing only the blocked seat. */
    REFUSED(e, ENGINE_SEAT_BLOCKED,
            engine_hold_place(e, T0 + 10, SHOW, USER, SEATS(S(1, 5), BLOCKED_SEAT), 2, conflicts,
                              &cc, &rec));
    assert_same_seats(conflicts, cc, SEATS(BLOCKED_SEAT), 1);
    /* SEAT_TAKEN before CAPACITY. */
    REFUSED(e, ENGINE_SEAT_TAKEN,
            engine_hold_place(e, T0 + 10, SHOW, USER, SEATS(S(1, 5)), 1, conflicts, &cc, &rec));
    REFUSED(e, ENGINE_CAPACITY,
            engine_hold_place(e, T0 + 10, SHOW, USER, SEATS(S(1, 7)), 1, conflicts, &cc, &rec));
    engine_destroy(e);
}

/* ---- hold_best ------------------------------------------------------------------ */

static engine_record best_ok(engine *e, int64_t now, uint64_t user, uint32_t count,
                             uint32_t category, uint32_t options)
{
    engine_record rec;
    memset(&rec, 0, sizeof rec);
    engine_result r = engine_hold_best(e, now, SHOW, user, count, category, options, &rec);
    cr_assert_eq(r, ENGINE_OK, "hold_best(%u, cat %u): %s", count, category, rname((int)r));
    cr_assert_eq(rec.type, ENGINE_REC_HOLD_PLACE);
    cr_assert_eq(rec.u.hold_place.seat_count, count);
    for (uint32_t i = 1; i < count; i++) {
        cr_assert_lt(rec.u.hold_place.seats[i - 1], rec.u.hold_place.seats[i],
                     "seats not ascending");
    }
    for (uint32_t i = 0; i < count; i++) {
        assert_state(e, rec.u.hold_place.seats[i], ENGINE_SEAT_HELD);
    }
    cr_assert_eq(engine_check(e), 0);
    return rec;
}

#define BEST_IS(rec, ...)                                                                        \
    assert_seats_eq((rec).u.hold_place.seats, (rec).u.hold_place.seat_count, SEATS(__VA_ARGS__), \
                    NSEATS(__VA_ARGS__))

Test(engine, hold_best_takes_the_centre_of_the_best_row)
{
    const uint16_t cols[5] = {10, 10, 10, 10, 10};
    tlayout t;
    grid_layout(&t, 5, cols, 2);
    const uint32_t price = 700;
    engine *e = fixture_layout(&t, &price, 1);
    tl_free(&t);
    int64_t now = T0 + 100;
    engine_record rec = best_ok(e, now, USER, 2, 0, 0);
    BEST_IS(rec, 24, 25); /* row 2, columns 5-6 */
    cr_assert_eq(rec.time_ms, now);
    cr_assert_eq(rec.u.hold_place.hold_id, 1);
    cr_assert_eq(rec.u.hold_place.showtime_id, SHOW);
    cr_assert_eq(rec.u.hold_place.user_id, USER);
    cr_assert_eq(rec.u.hold_place.expires_ms, now + TTL);
    cr_assert_eq(rec.u.hold_place.amount, 1400);
    engine_hold_info hi;
    cr_assert(engine_hold_get(e, 1, &hi));
    cr_assert_eq(hi.amount, 1400);
    assert_seats_eq(hi.seats, hi.seat_count, SEATS(24, 25), 2);
    cr_assert_eq(engine_now_ms(e), now);
    engine_destroy(e);
}

Test(engine, hold_best_breaks_a_centre_tie_by_the_lowest_seat)
{
    const uint16_t cols[3] = {10, 10, 10};
    tlayout t;
    grid_layout(&t, 3, cols, 1);
    const uint32_t price = 700;
    engine *e = fixture_layout(&t, &price, 1);
    tl_free(&t);
    /* Columns 4-6 and 5-7 are equally off-centre: the lower index wins. */
    engine_record rec = best_ok(e, T0 + 1, USER, 3, 0, 0);
    BEST_IS(rec, 13, 14, 15);
    engine_destroy(e);
}

Test(engine, hold_best_never_spans_an_aisle)
{
    engine *e = fixture();
    /* Gold row B is the best row: 5|7 would be central but spans the aisle. */
    engine_record rec = best_ok(e, T0 + 1, USER, 2, GOLD, 0);
    BEST_IS(rec, S(1, 4), S(1, 5));
    cr_assert_eq(rec.u.hold_place.amount, 3000);
    /* Three: 3-5 and 7-9 are equally central; 2-4 and 8-10 would strand a seat. */
    engine *f = fixture();
    rec = best_ok(f, T0 + 1, USER, 3, GOLD, 0);
    BEST_IS(rec, S(1, 3), S(1, 4), S(1, 5));
    engine_destroy(f);
    /* Six adjacent gold seats do not exist: each side of the aisle has five. */
    REFUSED(e, ENGINE_NOT_AVAILABLE, engine_hold_best(e, T0 + 2, SHOW, USER, 6, GOLD, 0, &rec));
    engine_destroy(e);
}

Test(engine, hold_best_never_uses_a_blocked_seat)
{
    engine *e = fixture();
    /* Platinum: columns 7-10 plus the blocked 11, so five fit only in 1-5. */
    engine_record rec = best_ok(e, T0 + 1, USER, 5, PLATINUM, 0);
    BEST_IS(rec, S(2, 1), S(2, 2), S(2, 3), S(2, 4), S(2, 5));
    engine_record r2;
    REFUSED(e, ENGINE_NOT_AVAILABLE, engine_hold_best(e, T0 + 2, SHOW, USER, 5, PLATINUM, 0, &r2));
    engine_destroy(e);
}

Test(engine, hold_best_skips_accessible_and_companion_seats_unless_allowed)
{
    /* One row of ten; columns 5 (wheelchair) and 6 (companion) are central. */
    tlayout t;
    tl_init(&t, 1, 10);
    tl_cat(&t, "standard");
    tl_row(&t, "A");
    for (uint16_t c = 1; c <= 10; c++) {
        uint8_t f = c == 5 ? ENGINE_SEAT_FLAG_ACCESSIBLE : c == 6 ? ENGINE_SEAT_FLAG_COMPANION : 0;
        tl_seat(&t, 0, c, 0, f);
    }
    const uint32_t price = 500;
    engine *e = fixture_layout(&t, &price, 1);
    engine *f = fixture_layout(&t, &price, 1);
    tl_free(&t);
    engine_record rec = best_ok(e, T0 + 1, USER, 2, 0, 0);
    BEST_IS(rec, 2, 3); /* columns 3-4: as central as 7-8, lower index */
    rec = best_ok(f, T0 + 1, USER, 2, 0, ENGINE_BEST_ALLOW_ACCESSIBLE);
    BEST_IS(rec, 4, 5);
    engine_destroy(f);
    /* Five adjacent seats exist only through columns 5-6. */
    REFUSED(e, ENGINE_NOT_AVAILABLE, engine_hold_best(e, T0 + 2, SHOW, USER, 5, 0, 0, &rec));
    engine_destroy(e);

    /* The standard layout: A1 wheelchair, A2 companion. */
    e = fixture();
    PLACE(e, T0 + 1, OTHER, S(0, 4), S(0, 5), S(0, 7), S(0, 8), S(0, 9), S(0, 10), S(0, 11));
    /* Silver has A1-A3 free, two of them reserved for wheelchair users. */
    REFUSED(e, ENGINE_NOT_AVAILABLE, engine_hold_best(e, T0 + 2, SHOW, USER, 2, SILVER, 0, &rec));
    /* A1-A2 and A2-A3 both strand a seat; A2-A3 is nearer the centre. */
    rec = best_ok(e, T0 + 2, USER, 2, SILVER, ENGINE_BEST_ALLOW_ACCESSIBLE);
    BEST_IS(rec, COMP_SEAT, S(0, 3));
    engine_destroy(e);
}

Test(engine, hold_best_avoids_stranding_a_single_seat_when_it_can)
{
    /* Best row 0 has three seats: any pair strands one. Row 1 has four. */
    const uint16_t cols[2] = {3, 4};
    tlayout t;
    grid_layout(&t, 2, cols, 0);
    const uint32_t price = 100;
    engine *e = fixture_layout(&t, &price, 1);
    tl_free(&t);
    engine_record rec = best_ok(e, T0 + 1, USER, 2, 0, 0);
    BEST_IS(rec, 3, 4); /* row 1, columns 1-2 (2-3 strands both ends) */
    engine_destroy(e);
}

Test(engine, hold_best_avoids_stranding_a_seat_beside_an_existing_hold)
{
    const uint16_t cols[1] = {10};
    tlayout t;
    grid_layout(&t, 1, cols, 0);
    const uint32_t price = 100;
    engine *e = fixture_layout(&t, &price, 1);
    tl_free(&t);
    /* Hold columns 4-6: runs 1-3 and 7-10 remain. */
    PLACE(e, T0 + 1, OTHER, 3, 4, 5);
    /* Two seats: 2-3 strands 1, 1-2 strands 3, 7-8 leaves 9-10, 8-9 strands 7 and 10. */
    engine_record rec = best_ok(e, T0 + 2, USER, 2, 0, 0);
    BEST_IS(rec, 6, 7);
    engine_destroy(e);
}

Test(engine, hold_best_strands_a_seat_when_nothing_else_fits)
{
    const uint16_t cols[1] = {3};
    tlayout t;
    grid_layout(&t, 1, cols, 0);
    const uint32_t price = 100;
    engine *e = fixture_layout(&t, &price, 1);
    tl_free(&t);
    engine_record rec = best_ok(e, T0 + 1, USER, 2, 0, 0);
    BEST_IS(rec, 0, 1);
    assert_state(e, 2, ENGINE_SEAT_FREE);
    rec = best_ok(e, T0 + 2, OTHER, 1, 0, 0);
    BEST_IS(rec, 2);
    engine_destroy(e);
}

Test(engine, hold_best_prefers_the_row_further_back_on_equal_distance)
{
    const uint16_t cols[3] = {4, 4, 4};
    tlayout t;
    grid_layout(&t, 3, cols, 1);
    const uint32_t price = 100;
    engine *e = fixture_layout(&t, &price, 1);
    tl_free(&t);
    PLACE(e, T0 + 1, OTHER, 4, 5, 6, 7); /* the whole best row */
    engine_record rec = best_ok(e, T0 + 2, USER, 2, 0, 0);
    BEST_IS(rec, 8, 9); /* row 2, not row 0 */
    rec = best_ok(e, T0 + 3, USER, 2, 0, 0);
    BEST_IS(rec, 10, 11);
    rec = best_ok(e, T0 + 4, USER, 2, 0, 0);
    BEST_IS(rec, 0, 1); /* only then the front row */
    engine_destroy(e);
}

Test(engine, hold_best_prefers_the_nearest_row_over_the_centre)
{
    const uint16_t cols[3] = {10, 10, 10};
    tlayout t;
    grid_layout(&t, 3, cols, 1);
    const uint32_t price = 100;
    engine *e = fixture_layout(&t, &price, 1);
    tl_free(&t);
    PLACE(e, T0 + 1, OTHER, 12, 13, 14, 15, 16, 17); /* row 1, columns 3-8 */
    engine_record rec = best_ok(e, T0 + 2, USER, 2, 0, 0);
    BEST_IS(rec, 10, 11); /* row 1 at the edge beats a central pair in rows 0 or 2 */
    engine_destroy(e);
}

Test(engine, hold_best_centres_on_the_layout_not_the_row)
{
    /* Row 0 spans columns 1-10, the best row 1 only 1-6: the centre is 5.5. */
    const uint16_t cols[2] = {10, 6};
    tlayout t;
    grid_layout(&t, 2, cols, 1);
    const uint32_t price = 100;
    engine *e = fixture_layout(&t, &price, 1);
    tl_free(&t);
    engine_record rec = best_ok(e, T0 + 1, USER, 2, 0, 0);
    BEST_IS(rec, 14, 15); /* row 1, columns 5-6 */
    engine_destroy(e);
}

Test(engine, hold_best_refuses_when_no_block_fits)
{
    engine *e = fixture();
    PLACE(e, T0 + 1, OTHER, S(1, 2), S(1, 4), S(1, 8), S(1, 10));
    engine_record rec;
    /* Gold free: 1, 3, 5, 7, 9, 11: no two adjacent. */
    REFUSED(e, ENGINE_NOT_AVAILABLE, engine_hold_best(e, T0 + 2, SHOW, USER, 2, GOLD, 0, &rec));
    REFUSED(e, ENGINE_NOT_AVAILABLE,
            engine_hold_best(e, T0 + 2, SHOW, USER, 2, GOLD, ENGINE_BEST_ALLOW_ACCESSIBLE, &rec));
    rec = best_ok(e, T0 + 2, USER, 1, GOLD, 0);
    engine_destroy(e);
}

Test(engine, hold_best_refuses_an_unknown_category)
{
    engine *e = fixture();
    engine_record rec;
    REFUSED(e, ENGINE_UNKNOWN_CATEGORY, engine_hold_best(e, T0 + 1, SHOW, USER, 2, 3, 0, &rec));
    REFUSED(e, ENGINE_UNKNOWN_CATEGORY,
            engine_hold_best(e, T0 + 1, SHOW, USER, 2, UINT32_MAX, 0, &rec));
    engine_destroy(e);
}

Test(engine, hold_best_refuses_a_bad_count)
{
    engine *e = fixture();
    engine_record rec;
    REFUSED(e, ENGINE_BAD_COUNT, engine_hold_best(e, T0 + 1, SHOW, USER, 0, GOLD, 0, &rec));
    REFUSED(e, ENGINE_BAD_COUNT, engine_hold_best(e, T0 + 1, SHOW, USER, 11, GOLD, 0, &rec));
    REFUSED(e, ENGINE_BAD_COUNT,
            engine_hold_best(e, T0 + 1, SHOW, USER, UINT32_MAX, GOLD, 0, &rec));
    engine_destroy(e);
}

Test(engine, hold_best_refuses_beyond_holds_max)
{
    engine_config cfg = test_cfg();
    cfg.holds_max = 1;
    engine *e = fixture_cfg(&cfg);
    PLACE(e, T0 + 1, OTHER, S(0, 3));
    engine_record rec;
    REFUSED(e, ENGINE_CAPACITY, engine_hold_best(e, T0 + 2, SHOW, USER, 2, GOLD, 0, &rec));
    engine_destroy(e);
}

Test(engine, hold_best_refuses_an_unknown_or_started_show)
{
    engine *e = fixture();
    engine_record rec;
    REFUSED(e, ENGINE_UNKNOWN_SHOWTIME, engine_hold_best(e, T0 + 1, 99, USER, 2, GOLD, 0, &rec));
    REFUSED(e, ENGINE_SHOW_STARTED, engine_hold_best(e, START, SHOW, USER, 2, GOLD, 0, &rec));
    rec = best_ok(e, START - 1, USER, 2, GOLD, 0);
    engine_destroy(e);
}

Test(engine, hold_best_checks_refusals_in_order)
{
    engine_config cfg = test_cfg();
    cfg.holds_max = 1;
    engine *e = fixture_cfg(&cfg);
    PLACE(e, T0 + 10, OTHER, S(2, 1), S(2, 3), S(2, 5), S(2, 8), S(2, 10));
    engine_record rec;
    REFUSED(e, ENGINE_TIME_BACKWARDS, engine_hold_best(e, T0 + 9, 99, USER, 0, 9, 0, &rec));
    REFUSED(e, ENGINE_UNKNOWN_SHOWTIME, engine_hold_best(e, START, 99, USER, 0, 9, 0, &rec));
    REFUSED(e, ENGINE_SHOW_STARTED, engine_hold_best(e, START, SHOW, USER, 0, 9, 0, &rec));
    REFUSED(e, ENGINE_BAD_COUNT, engine_hold_best(e, T0 + 10, SHOW, USER, 0, 9, 0, &rec));
    REFUSED(e, ENGINE_UNKNOWN_CATEGORY, engine_hold_best(e, T0 + 10, SHOW, USER, 2, 9, 0, &rec));
    /* Platinum has no adjacent pair left, and the hold pool is full. */
    REFUSED(e, ENGINE_NOT_AVAILABLE,
            engine_hold_best(e, T0 + 10, SHOW, USER, 2, PLATINUM, 0, &rec));
    REFUSED(e, ENGINE_CAPACITY, engine_hold_best(e, T0 + 10, SHOW, USER, 2, GOLD, 0, &rec));
    engine_destroy(e);
}

/*
 * A brute-force hold_best: every block of every run, ranked by the documented
 * key (stranding, row distance, further back, centre distance, first index).
 */
typedef struct ref_key {
    uint32_t orphan, row_dist, front;
    int64_t dist;
    uint32_t first;
} ref_key;

static bool ref_less(const ref_key *a, const ref_key *b)
{
    if (a->orphan != b->orphan) {
        return a->orphan < b->orphan;
    }
    if (a->row_dist != b->row_dist) {
        return a->row_dist < b->row_dist;
    }
    if (a->front != b->front) {
        return a->front < b->front;
    }
    if (a->dist != b->dist) {
        return a->dist < b->dist;
    }
    return a->first < b->first;
}

static bool ref_eligible(const tlayout *t, const uint8_t *map, uint32_t i, uint32_t cat, bool allow)
{
    const engine_seat_spec *s = &t->seats[i];
    if (map[i] != ENGINE_SEAT_FREE || s->category != cat || (s->flags & ENGINE_SEAT_FLAG_BLOCKED)) {
        return false;
    }
    return allow || !(s->flags & (ENGINE_SEAT_FLAG_ACCESSIBLE | ENGINE_SEAT_FLAG_COMPANION));
}

static bool ref_best(const tlayout *t, const uint8_t *map, uint32_t count, uint32_t cat, bool allow,
                     uint32_t *first)
{
    const engine_seat_spec *s = t->seats;
    const uint32_t n = t->spec.seat_count;
    int64_t minc = INT64_MAX, maxc = INT64_MIN;
    for (uint32_t i = 0; i < n; i++) {
        minc = s[i].col < minc ? s[i].col : minc;
        maxc = s[i].col > maxc ? s[i].col : maxc;
    }
    const int64_t centre2 = minc + maxc;
    const int64_t best_row = t->spec.best_row;
    bool found = false;
    ref_key best = {0};
    for (uint32_t i = 0; i < n;) {
        if (!ref_eligible(t, map, i, cat, allow)) {
            i++;
            continue;
        }
        uint32_t j = i;
        while (j + 1 < n && s[j + 1].row == s[i].row && s[j + 1].col == s[j].col + 1 &&
               ref_eligible(t, map, j + 1, cat, allow)) {
            j++;
        }
        for (uint32_t x = i; x + count - 1 <= j; x++) {
            uint32_t left = x - i, right = j - (x + count - 1);
            int64_t row = s[x].row;
            int64_t d = (int64_t)s[x].col + s[x + count - 1].col - centre2;
            ref_key k = {
                .orphan = left == 1 || right == 1,
                .row_dist = (uint32_t)(row > best_row ? row - best_row : best_row - row),
                .front = row > best_row ? 0 : 1,
                .dist = d < 0 ? -d : d,
                .first = x,
            };
            if (!found || ref_less(&k, &best)) {
                best = k;
                found = true;
            }
        }
        i = j + 1;
    }
    *first = best.first;
    return found;
}

static uint64_t test_rng = 0x2545f4914f6cdd1du;

static uint32_t rnd32(uint32_t bound)
{
    test_rng ^= test_rng >> 12;
    test_rng ^= test_rng << 25;
    test_rng ^= test_rng >> 27;
    return (uint32_t)((test_rng * 0x2545f4914f6cdd1du) >> 33) % bound;
}

/* A random layout: aisles, mixed categories within rows, wheelchair spaces, blocked seats. */
static void random_layout(tlayout *t)
{
    uint32_t rows = 1 + rnd32(6);
    uint32_t cats = 1 + rnd32(3);
    tl_init(t, rows, rows * 160);
    static const char *const names[3] = {"a", "b", "c"};
    for (uint32_t c = 0; c < cats; c++) {
        tl_cat(t, names[c]);
    }
    for (uint32_t r = 0; r < rows; r++) {
        char label[ENGINE_LABEL_MAX];
        snprintf(label, sizeof label, "R%u-", (unsigned)r);
        tl_row(t, label);
        uint32_t seats = 1 + rnd32(r % 2 ? 150 : 40);
        uint16_t col = (uint16_t)(1 + rnd32(4));
        uint8_t cat = (uint8_t)rnd32(cats);
        for (uint32_t k = 0; k < seats; k++) {
            if (rnd32(12) == 0) {
                col = (uint16_t)(col + 1 + rnd32(2)); /* an aisle */
            }
            if (rnd32(20) == 0) {
                cat = (uint8_t)rnd32(cats);
            }
            uint32_t f = rnd32(40);
            uint8_t flags = f == 0   ? ENGINE_SEAT_FLAG_ACCESSIBLE
                            : f == 1 ? ENGINE_SEAT_FLAG_COMPANION
                            : f == 2 ? ENGINE_SEAT_FLAG_BLOCKED
                                     : 0;
            tl_seat(t, (uint16_t)r, col, cat, flags);
            col++;
        }
    }
    t->spec.best_row = rnd32(rows);
}

Test(engine, hold_best_agrees_with_a_brute_force_reference)
{
    engine_config cfg = test_cfg();
    cfg.max_seats_per_hold = ENGINE_HOLD_SEATS_MAX;
    cfg.holds_max = 4096;
    cfg.bookings_max = 1 << 16;
    int picks = 0, misses = 0;
    for (int round = 0; round < 150; round++) {
        tlayout t;
        random_layout(&t);
        engine *e = new_engine(&cfg);
        const uint32_t prices[3] = {100, 200, 300};
        make_layout(e, T0, LAYOUT, &t);
        make_show(e, T0, SHOW, LAYOUT, T0 + 240 * HOUR, prices, t.spec.category_count);
        const uint32_t n = t.spec.seat_count;
        uint8_t *map = malloc(n);
        cr_assert_not_null(map);
        uint64_t holds[4096], bookings[4096];
        uint64_t hold_user[4096];
        uint32_t nh = 0, nb = 0;
        int64_t now = T0;
        for (int op = 0; op < 300; op++) {
            now += 1 + rnd32(3000);
            engine_record recs[16];
            while (engine_holds_expire(e, now, recs, NULL, 16) == 16) {
            }
            cr_assert_eq(engine_seatmap_get(e, SHOW, map, n), (int32_t)n);
            uint32_t what = rnd32(10);
            engine_record rec;
            if (what < 5) {
                uint32_t count = 1 + rnd32(what < 2 ? 3 : ENGINE_HOLD_SEATS_MAX);
                uint32_t cat = rnd32(t.spec.category_count);
                bool allow = rnd32(3) == 0;
                uint32_t want_first = 0;
                bool want = ref_best(&t, map, count, cat, allow, &want_first);
                uint64_t user = 1 + rnd32(5);
                engine_result r = engine_hold_best(e, now, SHOW, user, count, cat,
                                                   allow ? ENGINE_BEST_ALLOW_ACCESSIBLE : 0, &rec);
                if (!want) {
                    cr_assert_eq(r, ENGINE_NOT_AVAILABLE,
                                 "round %d op %d: %u of cat %u%s: got %s, reference finds none",
                                 round, op, count, cat, allow ? " (accessible ok)" : "",
                                 rname((int)r));
                    misses++;
                    continue;
                }
                cr_assert_eq(r, ENGINE_OK, "round %d op %d: %u of cat %u: %s, reference seat %u",
                             round, op, count, cat, rname((int)r), want_first);
                cr_assert_eq(rec.u.hold_place.seat_count, count);
                cr_assert_eq(rec.u.hold_place.seats[0], want_first,
                             "round %d op %d: %u of cat %u%s: engine picks seat %u (row %u col "
                             "%u), reference seat %u (row %u col %u)",
                             round, op, count, cat, allow ? " (accessible ok)" : "",
                             rec.u.hold_place.seats[0], t.seats[rec.u.hold_place.seats[0]].row,
                             t.seats[rec.u.hold_place.seats[0]].col, want_first,
                             t.seats[want_first].row, t.seats[want_first].col);
                for (uint32_t k = 0; k < count; k++) {
                    cr_assert_eq(rec.u.hold_place.seats[k], want_first + k);
                }
                holds[nh] = rec.u.hold_place.hold_id;
                hold_user[nh++] = user;
                picks++;
            } else if (what < 7) {
                /* Scatter a few single holds to fragment the rows. */
                uint32_t seat = rnd32(n);
                if (map[seat] != ENGINE_SEAT_FREE) {
                    continue;
                }
                holds[nh] = place_on(e, SHOW, now, 9, SEATS(seat), 1);
                hold_user[nh++] = 9;
            } else if (what < 9 && nh > 0) {
                uint32_t k = rnd32(nh);
                if (hold_live(e, holds[k])) {
                    if (what == 7) {
                        cr_assert_eq(engine_hold_release(e, now, holds[k], hold_user[k], &rec),
                                     ENGINE_OK);
                    } else {
                        bookings[nb++] = confirm(e, now, holds[k], hold_user[k]);
                    }
                }
                holds[k] = holds[--nh];
                hold_user[k] = hold_user[nh];
            } else if (nb > 0) {
                uint32_t k = rnd32(nb);
                engine_booking_info bi;
                cr_assert(engine_booking_get(e, bookings[k], &bi));
                uint64_t refund;
                cr_assert_eq(engine_booking_cancel(e, now, bookings[k], bi.user_id, &refund, &rec),
                             ENGINE_OK);
                bookings[k] = bookings[--nb];
            }
            cr_assert_lt(nh, 4000);
        }
        cr_assert_eq(engine_check(e), 0);
        free(map);
        tl_free(&t);
        engine_destroy(e);
    }
    cr_log_info("hold_best reference: %d picks, %d refusals agreed", picks, misses);
}

/* ---- extend ---------------------------------------------------------------------- */

Test(engine, hold_extend_moves_the_expiry)
{
    engine *e = fixture();
    uint64_t h = PLACE(e, T0, USER, S(1, 1));
    engine_record rec;
    memset(&rec, 0, sizeof rec);
    int64_t now = T0 + 100 * SEC;
    cr_assert_eq(engine_hold_extend(e, now, h, USER, &rec), ENGINE_OK);
    cr_assert_eq(rec.type, ENGINE_REC_HOLD_EXTEND);
    cr_assert_eq(rec.time_ms, now);
    cr_assert_eq(rec.u.hold_extend.hold_id, h);
    cr_assert_eq(rec.u.hold_extend.expires_ms, now + TTL);
    engine_hold_info hi;
    cr_assert(engine_hold_get(e, h, &hi));
    cr_assert_eq(hi.expires_ms, now + TTL);
    cr_assert_eq(hi.created_ms, T0);
    cr_assert_eq(engine_holds_next_expiry_ms(e), now + TTL);
    cr_assert_eq(engine_now_ms(e), now);
    cr_assert_eq(engine_check(e), 0);
    engine_destroy(e);
}

Test(engine, hold_extend_is_capped_by_the_maximum_lifetime)
{
    engine *e = fixture();
    uint64_t h = PLACE(e, T0, USER, S(1, 1));
    engine_record rec;
    cr_assert_eq(engine_hold_extend(e, T0 + 250 * SEC, h, USER, &rec), ENGINE_OK);
    cr_assert_eq(rec.u.hold_extend.expires_ms, T0 + 550 * SEC);
    cr_assert_eq(engine_hold_extend(e, T0 + 500 * SEC, h, USER, &rec), ENGINE_OK);
    cr_assert_eq(rec.u.hold_extend.expires_ms, T0 + 800 * SEC);
    cr_assert_eq(engine_hold_extend(e, T0 + 700 * SEC, h, USER, &rec), ENGINE_OK);
    cr_assert_eq(rec.u.hold_extend.expires_ms, T0 + LIFE, "capped at created + max lifetime");
    engine_hold_info hi;
    cr_assert(engine_hold_get(e, h, &hi));
    cr_assert_eq(hi.expires_ms, T0 + LIFE);
    REFUSED(e, ENGINE_HOLD_EXTEND_LIMIT, engine_hold_extend(e, T0 + 800 * SEC, h, USER, &rec));
    REFUSED(e, ENGINE_HOLD_EXTEND_LIMIT, engine_hold_extend(e, T0 + 700 * SEC, h, USER, &rec));
    engine_destroy(e);
}

Test(engine, hold_extend_refuses_an_expired_hold)
{
    engine *e = fixture();
    uint64_t h = PLACE(e, T0, USER, S(1, 1));
    engine_record rec;
    REFUSED(e, ENGINE_HOLD_EXPIRED, engine_hold_extend(e, T0 + TTL, h, USER, &rec));
    REFUSED(e, ENGINE_HOLD_EXPIRED, engine_hold_extend(e, T0 + TTL + 1, h, USER, &rec));
    cr_assert_eq(engine_hold_extend(e, T0 + TTL - 1, h, USER, &rec), ENGINE_OK);
    engine_destroy(e);
}

Test(engine, hold_extend_refuses_another_users_hold)
{
    engine *e = fixture();
    uint64_t h = PLACE(e, T0, USER, S(1, 1));
    engine_record rec;
    REFUSED(e, ENGINE_NOT_OWNER, engine_hold_extend(e, T0 + 1, h, OTHER, &rec));
    engine_destroy(e);
}

Test(engine, hold_extend_refuses_an_ended_hold)
{
    engine *e = fixture();
    uint64_t released = PLACE(e, T0, USER, S(1, 1));
    uint64_t confirmed = PLACE(e, T0, USER, S(1, 2));
    uint64_t expired = PLACE(e, T0, USER, S(1, 3));
    engine_record rec;
    cr_assert_eq(engine_hold_release(e, T0 + 1, released, USER, &rec), ENGINE_OK);
    confirm(e, T0 + 2, confirmed, USER);
    cr_assert_eq(engine_holds_expire(e, T0 + TTL, &rec, NULL, 1), 1);
    REFUSED(e, ENGINE_HOLD_ENDED, engine_hold_extend(e, T0 + TTL, released, USER, &rec));
    REFUSED(e, ENGINE_HOLD_ENDED, engine_hold_extend(e, T0 + TTL, confirmed, USER, &rec));
    REFUSED(e, ENGINE_HOLD_ENDED, engine_hold_extend(e, T0 + TTL, expired, USER, &rec));
    engine_destroy(e);
}

Test(engine, hold_extend_refuses_an_unknown_hold)
{
    engine *e = fixture();
    uint64_t h = PLACE(e, T0, USER, S(1, 1));
    engine_record rec;
    REFUSED(e, ENGINE_UNKNOWN_HOLD, engine_hold_extend(e, T0 + 1, h + 1, USER, &rec));
    REFUSED(e, ENGINE_UNKNOWN_HOLD, engine_hold_extend(e, T0 + 1, 0, USER, &rec));
    REFUSED(e, ENGINE_UNKNOWN_HOLD, engine_hold_extend(e, T0 + 1, UINT64_MAX, USER, &rec));
    engine_destroy(e);
}

Test(engine, hold_extend_checks_refusals_in_order)
{
    engine_config cfg = test_cfg();
    cfg.hold_max_lifetime_ms = cfg.hold_ttl_ms; /* every hold is at its limit */
    engine *e = fixture_cfg(&cfg);
    uint64_t ended = PLACE(e, T0 + 10, USER, S(1, 1));
    uint64_t h = PLACE(e, T0 + 10, USER, S(1, 2));
    engine_record rec;
    cr_assert_eq(engine_hold_release(e, T0 + 10, ended, USER, &rec), ENGINE_OK);
    REFUSED(e, ENGINE_TIME_BACKWARDS, engine_hold_extend(e, T0 + 9, 99, OTHER, &rec));
    REFUSED(e, ENGINE_UNKNOWN_HOLD, engine_hold_extend(e, T0 + 10, 99, OTHER, &rec));
    REFUSED(e, ENGINE_HOLD_ENDED, engine_hold_extend(e, T0 + 10 + TTL, ended, OTHER, &rec));
    REFUSED(e, ENGINE_NOT_OWNER, engine_hold_extend(e, T0 + 10 + TTL, h, OTHER, &rec));
    REFUSED(e, ENGINE_HOLD_EXPIRED, engine_hold_extend(e, T0 + 10 + TTL, h, USER, &rec));
    REFUSED(e, ENGINE_HOLD_EXTEND_LIMIT, engine_hold_extend(e, T0 + 11, h, USER, &rec));
    engine_destroy(e);
}

/* ---- release ----------------------------------------------------------------------- */

Test(engine, hold_release_frees_the_seats)
{
    engine *e = fixture();
    uint64_t h = PLACE(e, T0 + 1, USER, S(1, 1), S(1, 2));
    uint64_t keep = PLACE(e, T0 + 1, USER, S(1, 3));
    engine_record rec;
    memset(&rec, 0, sizeof rec);
    cr_assert_eq(engine_hold_release(e, T0 + 5, h, USER, &rec), ENGINE_OK);
    cr_assert_eq(rec.type, ENGINE_REC_HOLD_RELEASE);
    cr_assert_eq(rec.time_ms, T0 + 5);
    cr_assert_eq(rec.u.hold_end.hold_id, h);
    cr_assert_eq(engine_now_ms(e), T0 + 5);
    assert_state(e, S(1, 1), ENGINE_SEAT_FREE);
    assert_state(e, S(1, 2), ENGINE_SEAT_FREE);
    assert_state(e, S(1, 3), ENGINE_SEAT_HELD);
    cr_assert(!hold_live(e, h));
    engine_hold_info hi;
    cr_assert(!engine_hold_get(e, h, &hi));
    cr_assert(engine_hold_get(e, keep, &hi));
    cr_assert_eq(engine_holds_live(e), 1);
    uint64_t ids[4];
    cr_assert_eq(engine_user_holds(e, USER, 0, ids, 4), 1);
    cr_assert_eq(ids[0], keep);
    cr_assert_eq(engine_check(e), 0);
    PLACE(e, T0 + 6, OTHER, S(1, 1), S(1, 2));
    engine_destroy(e);
}

Test(engine, hold_release_works_on_an_expired_hold_not_yet_swept)
{
    engine *e = fixture();
    uint64_t h = PLACE(e, T0 + 1, USER, S(1, 1));
    engine_record rec;
    cr_assert_eq(engine_hold_release(e, T0 + 1 + TTL + 10, h, USER, &rec), ENGINE_OK);
    assert_state(e, S(1, 1), ENGINE_SEAT_FREE);
    cr_assert_eq(engine_holds_live(e), 0);
    cr_assert_eq(engine_holds_next_expiry_ms(e), INT64_MAX);
    cr_assert_eq(engine_holds_expire(e, T0 + 1 + TTL + 10, &rec, NULL, 1), 0);
    engine_destroy(e);
}

Test(engine, hold_release_refuses)
{
    engine *e = fixture();
    uint64_t h = PLACE(e, T0 + 1, USER, S(1, 1));
    engine_record rec;
    REFUSED(e, ENGINE_TIME_BACKWARDS, engine_hold_release(e, T0, h, USER, &rec));
    REFUSED(e, ENGINE_UNKNOWN_HOLD, engine_hold_release(e, T0 + 2, h + 1, USER, &rec));
    REFUSED(e, ENGINE_NOT_OWNER, engine_hold_release(e, T0 + 2, h, OTHER, &rec));
    cr_assert_eq(engine_hold_release(e, T0 + 2, h, USER, &rec), ENGINE_OK);
    REFUSED(e, ENGINE_HOLD_ENDED, engine_hold_release(e, T0 + 3, h, USER, &rec));
    REFUSED(e, ENGINE_HOLD_ENDED, engine_hold_release(e, T0 + 3, h, OTHER, &rec));
    engine_destroy(e);
}

/* ---- expire ------------------------------------------------------------------------ */

Test(engine, holds_expire_sweeps_oldest_first_within_the_cap)
{
    engine *e = fixture();
    uint64_t h1 = PLACE(e, T0, USER, S(0, 3));
    uint64_t h2 = PLACE(e, T0 + 5, OTHER, S(0, 4));
    uint64_t h3 = PLACE(e, T0 + 5, USER, S(0, 5), S(0, 7));
    engine_record rec;
    cr_assert_eq(engine_hold_extend(e, T0 + 10, h1, USER, &rec), ENGINE_OK);
    uint64_t h4 = PLACE(e, T0 + 20, USER, S(1, 1));
    cr_assert_eq(engine_holds_next_expiry_ms(e), T0 + 5 + TTL);

    int64_t now = T0 + 10 + TTL;
    engine_record recs[2];
    engine_hold_info infos[2];
    memset(recs, 0, sizeof recs);
    memset(infos, 0, sizeof infos);
    cr_assert_eq(engine_holds_expire(e, now, recs, infos, 2), 2);
    cr_assert_eq(engine_now_ms(e), now);
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(recs[i].type, ENGINE_REC_HOLD_EXPIRE);
        cr_assert_eq(recs[i].time_ms, now);
    }
    cr_assert_eq(recs[0].u.hold_end.hold_id, h2, "tie on expiry: lower id first");
    cr_assert_eq(recs[1].u.hold_end.hold_id, h3);
    cr_assert_eq(infos[0].id, h2);
    cr_assert_eq(infos[0].user_id, OTHER);
    cr_assert_eq(infos[0].showtime_id, SHOW);
    cr_assert_eq(infos[0].created_ms, T0 + 5);
    cr_assert_eq(infos[0].expires_ms, T0 + 5 + TTL);
    cr_assert_eq(infos[0].amount, 1000);
    assert_seats_eq(infos[0].seats, infos[0].seat_count, SEATS(S(0, 4)), 1);
    cr_assert_eq(infos[1].id, h3);
    cr_assert_eq(infos[1].amount, 2000);
    assert_seats_eq(infos[1].seats, infos[1].seat_count, SEATS(S(0, 5), S(0, 7)), 2);
    assert_state(e, S(0, 4), ENGINE_SEAT_FREE);
    assert_state(e, S(0, 5), ENGINE_SEAT_FREE);
    assert_state(e, S(0, 7), ENGINE_SEAT_FREE);
    assert_state(e, S(0, 3), ENGINE_SEAT_HELD);
    cr_assert_eq(engine_holds_live(e), 2);
    cr_assert_eq(engine_holds_next_expiry_ms(e), now);
    cr_assert_eq(engine_check(e), 0);

    /* The cap was reached: the next call continues with h1. */
    memset(infos, 0, sizeof infos);
    cr_assert_eq(engine_holds_expire(e, now, recs, infos, 2), 1);
    cr_assert_eq(recs[0].u.hold_end.hold_id, h1);
    cr_assert_eq(infos[0].id, h1);
    cr_assert_eq(infos[0].expires_ms, now);
    assert_seats_eq(infos[0].seats, infos[0].seat_count, SEATS(S(0, 3)), 1);
    assert_state(e, S(0, 3), ENGINE_SEAT_FREE);
    cr_assert_eq(engine_holds_live(e), 1);
    cr_assert_eq(engine_holds_next_expiry_ms(e), T0 + 20 + TTL);
    cr_assert(hold_live(e, h4));
    cr_assert(!hold_live(e, h1));
    cr_assert(!hold_live(e, h2));
    uint64_t ids[4];
    cr_assert_eq(engine_user_holds(e, USER, 0, ids, 4), 1);
    cr_assert_eq(ids[0], h4);
    cr_assert_eq(engine_user_holds(e, OTHER, 0, ids, 4), 0);

    /* Nothing more is due. */
    uint64_t d = engine_digest(e);
    cr_assert_eq(engine_holds_expire(e, now + 1, recs, infos, 2), 0);
    cr_assert_eq(engine_digest(e), d);
    cr_assert_eq(engine_now_ms(e), now, "an empty sweep does not move the clock");

    /* The expired holds are ended, not unknown. */
    REFUSED(e, ENGINE_HOLD_ENDED, engine_hold_extend(e, now, h1, USER, &rec));
    REFUSED(e, ENGINE_HOLD_ENDED, engine_hold_release(e, now, h2, OTHER, &rec));

    /* At h4's expiry it goes too, and the pool is empty. */
    cr_assert_eq(engine_holds_expire(e, T0 + 20 + TTL, recs, NULL, 2), 1);
    cr_assert_eq(recs[0].u.hold_end.hold_id, h4);
    cr_assert_eq(engine_holds_live(e), 0);
    cr_assert_eq(engine_holds_next_expiry_ms(e), INT64_MAX);
    cr_assert_eq(engine_check(e), 0);
    engine_destroy(e);
}

Test(engine, holds_expire_with_nothing_due_changes_nothing)
{
    engine *e = fixture();
    PLACE(e, T0 + 1, USER, S(0, 3));
    engine_record recs[4];
    uint64_t d = engine_digest(e);
    cr_assert_eq(engine_holds_expire(e, T0 + TTL, recs, NULL, 4), 0);
    cr_assert_eq(engine_holds_expire(e, T0 + 100, recs, NULL, 4), 0);
    cr_assert_eq(engine_digest(e), d);
    cr_assert_eq(engine_now_ms(e), T0 + 1);
    cr_assert_eq(engine_holds_expire(e, T0 + 1 + TTL, recs, NULL, 4), 1, "due at expires_ms");
    engine_destroy(e);
}

Test(engine, holds_expire_before_the_engine_time_does_nothing)
{
    engine *e = fixture();
    PLACE(e, T0 + 1, USER, S(0, 3));
    PLACE(e, T0 + 1 + TTL + 100, OTHER, S(0, 4)); /* the first is due, not swept */
    engine_record recs[4];
    uint64_t d = engine_digest(e);
    cr_assert_eq(engine_holds_expire(e, T0 + 1 + TTL + 50, recs, NULL, 4), 0);
    cr_assert_eq(engine_digest(e), d);
    cr_assert_eq(engine_now_ms(e), T0 + 1 + TTL + 100);
    cr_assert_eq(engine_holds_live(e), 2);
    cr_assert_eq(engine_holds_expire(e, T0 + 1 + TTL + 100, recs, NULL, 4), 1);
    engine_destroy(e);
}

/* ---- confirm ------------------------------------------------------------------------ */

Test(engine, booking_confirm_sells_the_seats)
{
    engine *e = fixture();
    uint64_t h = PLACE(e, T0 + 1000, USER, S(1, 3), S(2, 1));
    engine_record rec;
    memset(&rec, 0, sizeof rec);
    uint64_t bid = 0;
    bool replayed = true;
    uint64_t d = engine_digest(e);
    int64_t now = T0 + 2000;
    cr_assert_eq(engine_booking_confirm(e, now, h, USER, ENGINE_PAY_CARD, "order-1", 7, &bid,
                                        &replayed, &rec),
                 ENGINE_OK);
    cr_assert_eq(bid, 1);
    cr_assert(!replayed);
    cr_assert_eq(rec.type, ENGINE_REC_BOOKING_CONFIRM);
    cr_assert_eq(rec.time_ms, now);
    cr_assert_eq(rec.u.booking_confirm.booking_id, bid);
    cr_assert_eq(rec.u.booking_confirm.hold_id, h);
    cr_assert_eq(rec.u.booking_confirm.payment, ENGINE_PAY_CARD);
    cr_assert_eq(rec.u.booking_confirm.idem_key_len, 7);
    cr_assert_arr_eq(rec.u.booking_confirm.idem_key, "order-1", 7);

    engine_booking_info bi;
    memset(&bi, 0, sizeof bi);
    cr_assert(engine_booking_get(e, bid, &bi));
    cr_assert_eq(bi.id, bid);
    cr_assert_eq(bi.showtime_id, SHOW);
    cr_assert_eq(bi.user_id, USER);
    cr_assert_eq(bi.hold_id, h);
    cr_assert_eq(bi.confirmed_ms, now);
    cr_assert_eq(bi.cancelled_ms, 0);
    cr_assert_eq(bi.amount, 3501);
    cr_assert_eq(bi.refund, 0);
    cr_assert_eq(bi.payment, ENGINE_PAY_CARD);
    cr_assert_eq(bi.status, ENGINE_BOOKING_STATUS_CONFIRMED);
    assert_same_seats(bi.seats, bi.seat_count, SEATS(S(1, 3), S(2, 1)), 2);
    cr_assert_eq(bi.idem_key_len, 7);
    cr_assert_arr_eq(bi.idem_key, "order-1", 7);
    cr_assert(!engine_booking_get(e, bid + 1, &bi));

    assert_state(e, S(1, 3), ENGINE_SEAT_SOLD);
    assert_state(e, S(2, 1), ENGINE_SEAT_SOLD);
    cr_assert(!hold_live(e, h), "the hold is gone");
    cr_assert_eq(engine_holds_live(e), 0);
    cr_assert_eq(engine_holds_next_expiry_ms(e), INT64_MAX);
    cr_assert_eq(engine_now_ms(e), now);
    cr_assert_neq(engine_digest(e), d);
    uint64_t ids[2];
    cr_assert_eq(engine_user_bookings(e, USER, 0, ids, 2), 1);
    cr_assert_eq(ids[0], bid);
    cr_assert_eq(engine_user_holds(e, USER, 0, ids, 2), 0);
    cr_assert_eq(engine_check(e), 0);

    /* Confirming again without a key: the hold has ended. */
    REFUSED(e, ENGINE_HOLD_ENDED,
            engine_booking_confirm(e, now + 1, h, USER, ENGINE_PAY_CARD, NULL, 0, &bid, &replayed,
                                   &rec));
    engine_destroy(e);
}

Test(engine, booking_confirm_accepts_every_payment_method)
{
    engine *e = fixture();
    const engine_payment pays[3] = {ENGINE_PAY_UPI, ENGINE_PAY_CARD, ENGINE_PAY_WALLET};
    for (int i = 0; i < 3; i++) {
        uint64_t h = PLACE(e, T0 + 10 * i + 1, USER, S(1, (unsigned)i + 1));
        engine_record rec;
        uint64_t bid = 0;
        bool replayed = true;
        cr_assert_eq(engine_booking_confirm(e, T0 + 10 * i + 2, h, USER, pays[i], NULL, 0, &bid,
                                            &replayed, &rec),
                     ENGINE_OK);
        cr_assert_eq(bid, (uint64_t)i + 1);
        cr_assert_eq(rec.u.booking_confirm.payment, pays[i]);
        cr_assert_eq(rec.u.booking_confirm.idem_key_len, 0);
        engine_booking_info bi;
        cr_assert(engine_booking_get(e, bid, &bi));
        cr_assert_eq(bi.payment, pays[i]);
        cr_assert_eq(bi.idem_key_len, 0);
    }
    engine_destroy(e);
}

Test(engine, booking_confirm_replays_with_the_same_key)
{
    engine *e = fixture();
    uint64_t h = PLACE(e, T0 + 1, USER, S(1, 3));
    engine_record rec;
    uint64_t bid = 0, again = 0;
    bool replayed = true;
    cr_assert_eq(
        engine_booking_confirm(e, T0 + 2, h, USER, ENGINE_PAY_UPI, "k-1", 3, &bid, &replayed, &rec),
        ENGINE_OK);
    cr_assert(!replayed);
    REFUSED(e, ENGINE_OK,
            engine_booking_confirm(e, T0 + 50, h, USER, ENGINE_PAY_UPI, "k-1", 3, &again, &replayed,
                                   &rec));
    cr_assert_eq(again, bid);
    cr_assert(replayed);
    /* Still idempotent later, and at the same time. */
    again = 0;
    replayed = false;
    REFUSED(e, ENGINE_OK,
            engine_booking_confirm(e, T0 + 2, h, USER, ENGINE_PAY_UPI, "k-1", 3, &again, &replayed,
                                   &rec));
    cr_assert_eq(again, bid);
    cr_assert(replayed);
    uint64_t ids[2];
    cr_assert_eq(engine_user_bookings(e, USER, 0, ids, 2), 1);
    cr_assert_eq(ids[0], bid);
    engine_destroy(e);
}

Test(engine, booking_confirm_refuses_a_key_used_for_another_hold)
{
    engine *e = fixture();
    uint64_t h1 = PLACE(e, T0 + 1, USER, S(1, 3));
    uint64_t h2 = PLACE(e, T0 + 1, USER, S(1, 4));
    engine_record rec;
    uint64_t bid = 0;
    bool replayed = false;
    cr_assert_eq(engine_booking_confirm(e, T0 + 2, h1, USER, ENGINE_PAY_UPI, "k-1", 3, &bid,
                                        &replayed, &rec),
                 ENGINE_OK);
    REFUSED(e, ENGINE_IDEM_KEY_REUSED,
            engine_booking_confirm(e, T0 + 3, h2, USER, ENGINE_PAY_UPI, "k-1", 3, &bid, &replayed,
                                   &rec));
    assert_state(e, S(1, 4), ENGINE_SEAT_HELD);
    /* A prefix of the key is another key. */
    cr_assert_eq(
        engine_booking_confirm(e, T0 + 3, h2, USER, ENGINE_PAY_UPI, "k-", 2, &bid, &replayed, &rec),
        ENGINE_OK);
    cr_assert(!replayed);
    cr_assert_eq(bid, 2);
    engine_destroy(e);
}

Test(engine, booking_confirm_keys_are_per_user)
{
    engine *e = fixture();
    uint64_t h1 = PLACE(e, T0 + 1, USER, S(1, 3));
    uint64_t h2 = PLACE(e, T0 + 1, OTHER, S(1, 4));
    engine_record rec;
    uint64_t b1 = 0, b2 = 0;
    bool replayed = false;
    cr_assert_eq(engine_booking_confirm(e, T0 + 2, h1, USER, ENGINE_PAY_UPI, "same", 4, &b1,
                                        &replayed, &rec),
                 ENGINE_OK);
    cr_assert_eq(engine_booking_confirm(e, T0 + 2, h2, OTHER, ENGINE_PAY_UPI, "same", 4, &b2,
                                        &replayed, &rec),
                 ENGINE_OK);
    cr_assert(!replayed);
    cr_assert_neq(b1, b2);
    engine_destroy(e);
}

Test(engine, booking_confirm_accepts_64_byte_keys_and_refuses_65)
{
    engine *e = fixture();
    uint64_t h = PLACE(e, T0 + 1, USER, S(1, 3));
    char key[ENGINE_IDEM_KEY_MAX + 1];
    for (int i = 0; i < (int)sizeof key; i++) {
        key[i] = (char)('a' + i % 26);
    }
    engine_record rec;
    uint64_t bid = 0;
    bool replayed = false;
    REFUSED(
        e, ENGINE_BAD_IDEM_KEY,
        engine_booking_confirm(e, T0 + 2, h, USER, ENGINE_PAY_UPI, key, 65, &bid, &replayed, &rec));
    REFUSED(e, ENGINE_BAD_IDEM_KEY,
            engine_booking_confirm(e, T0 + 2, h, USER, ENGINE_PAY_UPI, key, UINT32_MAX, &bid,
                                   &replayed, &rec));
    cr_assert_eq(
        engine_booking_confirm(e, T0 + 2, h, USER, ENGINE_PAY_UPI, key, 64, &bid, &replayed, &rec),
        ENGINE_OK);
    cr_assert_eq(rec.u.booking_confirm.idem_key_len, 64);
    cr_assert_arr_eq(rec.u.booking_confirm.idem_key, key, 64);
    engine_booking_info bi;
    cr_assert(engine_booking_get(e, bid, &bi));
    cr_assert_eq(bi.idem_key_len, 64);
    cr_assert_arr_eq(bi.idem_key, key, 64);
    engine_destroy(e);
}

Test(engine, booking_confirm_refuses_an_unknown_payment_method)
{
    engine *e = fixture();
    uint64_t h = PLACE(e, T0 + 1, USER, S(1, 3));
    engine_record rec;
    uint64_t bid = 0;
    bool replayed = false;
    REFUSED(e, ENGINE_BAD_PAYMENT,
            engine_booking_confirm(e, T0 + 2, h, USER, (engine_payment)0, NULL, 0, &bid, &replayed,
                                   &rec));
    REFUSED(e, ENGINE_BAD_PAYMENT,
            engine_booking_confirm(e, T0 + 2, h, USER, (engine_payment)4, NULL, 0, &bid, &replayed,
                                   &rec));
    assert_state(e, S(1, 3), ENGINE_SEAT_HELD);
    engine_destroy(e);
}

Test(engine, booking_confirm_refuses_an_expired_hold_before_the_sweep)
{
    engine *e = fixture();
    uint64_t h = PLACE(e, T0 + 1, USER, S(1, 3));
    engine_record rec;
    uint64_t bid = 0;
    bool replayed = false;
    REFUSED(e, ENGINE_HOLD_EXPIRED,
            engine_booking_confirm(e, T0 + 1 + TTL, h, USER, ENGINE_PAY_UPI, NULL, 0, &bid,
                                   &replayed, &rec));
    REFUSED(e, ENGINE_HOLD_EXPIRED,
            engine_booking_confirm(e, T0 + 1 + TTL, h, USER, ENGINE_PAY_UPI, "k", 1, &bid,
                                   &replayed, &rec));
    cr_assert_eq(engine_holds_live(e), 1);
    assert_state(e, S(1, 3), ENGINE_SEAT_HELD);
    /* Swept, it has ended. */
    cr_assert_eq(engine_holds_expire(e, T0 + 1 + TTL, &rec, NULL, 1), 1);
    REFUSED(e, ENGINE_HOLD_ENDED,
            engine_booking_confirm(e, T0 + 1 + TTL, h, USER, ENGINE_PAY_UPI, NULL, 0, &bid,
                                   &replayed, &rec));
    engine_destroy(e);
}

Test(engine, booking_confirm_succeeds_just_before_expiry)
{
    engine *e = fixture();
    uint64_t h = PLACE(e, T0 + 1, USER, S(1, 3));
    uint64_t b = confirm(e, T0 + TTL, h, USER);
    cr_assert_eq(b, 1);
    engine_destroy(e);
}

Test(engine, booking_confirm_refuses_a_released_hold)
{
    engine *e = fixture();
    uint64_t h = PLACE(e, T0 + 1, USER, S(1, 3));
    engine_record rec;
    cr_assert_eq(engine_hold_release(e, T0 + 2, h, USER, &rec), ENGINE_OK);
    uint64_t bid = 0;
    bool replayed = false;
    REFUSED(
        e, ENGINE_HOLD_ENDED,
        engine_booking_confirm(e, T0 + 3, h, USER, ENGINE_PAY_UPI, "k", 1, &bid, &replayed, &rec));
    engine_destroy(e);
}

Test(engine, booking_confirm_refuses_another_users_or_an_unknown_hold)
{
    engine *e = fixture();
    uint64_t h = PLACE(e, T0 + 1, USER, S(1, 3));
    engine_record rec;
    uint64_t bid = 0;
    bool replayed = false;
    REFUSED(e, ENGINE_NOT_OWNER,
            engine_booking_confirm(e, T0 + 2, h, OTHER, ENGINE_PAY_UPI, NULL, 0, &bid, &replayed,
                                   &rec));
    REFUSED(e, ENGINE_UNKNOWN_HOLD,
            engine_booking_confirm(e, T0 + 2, h + 1, USER, ENGINE_PAY_UPI, NULL, 0, &bid, &replayed,
                                   &rec));
    REFUSED(
        e, ENGINE_UNKNOWN_HOLD,
        engine_booking_confirm(e, T0 + 2, 0, USER, ENGINE_PAY_UPI, NULL, 0, &bid, &replayed, &rec));
    engine_destroy(e);
}

Test(engine, booking_confirm_checks_refusals_in_order)
{
    engine *e = fixture();
    uint64_t used = PLACE(e, T0 + 10, USER, S(1, 1));
    uint64_t h = PLACE(e, T0 + 10, USER, S(1, 2));
    uint64_t ended = PLACE(e, T0 + 10, USER, S(1, 3));
    engine_record rec;
    uint64_t bid = 0;
    bool replayed = false;
    char long_key[ENGINE_IDEM_KEY_MAX + 1];
    memset(long_key, 'k', sizeof long_key);
    cr_assert_eq(engine_booking_confirm(e, T0 + 10, used, USER, ENGINE_PAY_UPI, "used", 4, &bid,
                                        &replayed, &rec),
                 ENGINE_OK);
    cr_assert_eq(engine_hold_release(e, T0 + 10, ended, USER, &rec), ENGINE_OK);
    const engine_payment bad = (engine_payment)0;
    REFUSED(e, ENGINE_TIME_BACKWARDS,
            engine_booking_confirm(e, T0 + 9, 99, OTHER, bad, long_key, 65, &bid, &replayed, &rec));
    REFUSED(
        e, ENGINE_BAD_PAYMENT,
        engine_booking_confirm(e, T0 + 10, 99, OTHER, bad, long_key, 65, &bid, &replayed, &rec));
    REFUSED(e, ENGINE_BAD_IDEM_KEY,
            engine_booking_confirm(e, T0 + 10, 99, OTHER, ENGINE_PAY_UPI, long_key, 65, &bid,
                                   &replayed, &rec));
    /* The key lookup comes before the hold lookup. */
    REFUSED(e, ENGINE_IDEM_KEY_REUSED,
            engine_booking_confirm(e, T0 + 10, 99, USER, ENGINE_PAY_UPI, "used", 4, &bid, &replayed,
                                   &rec));
    REFUSED(e, ENGINE_UNKNOWN_HOLD,
            engine_booking_confirm(e, T0 + 10, 99, OTHER, ENGINE_PAY_UPI, NULL, 0, &bid, &replayed,
                                   &rec));
    REFUSED(e, ENGINE_HOLD_ENDED,
            engine_booking_confirm(e, T0 + 10 + TTL, ended, OTHER, ENGINE_PAY_UPI, NULL, 0, &bid,
                                   &replayed, &rec));
    REFUSED(e, ENGINE_NOT_OWNER,
            engine_booking_confirm(e, T0 + 10 + TTL, h, OTHER, ENGINE_PAY_UPI, NULL, 0, &bid,
                                   &replayed, &rec));
    REFUSED(e, ENGINE_HOLD_EXPIRED,
            engine_booking_confirm(e, T0 + 10 + TTL, h, USER, ENGINE_PAY_UPI, NULL, 0, &bid,
                                   &replayed, &rec));
    engine_destroy(e);
}

/* ---- cancel ------------------------------------------------------------------------- */

Test(engine, booking_cancel_refunds_by_tier_at_the_boundaries)
{
    engine *e = fixture();
    uint64_t b[4];
    for (unsigned i = 0; i < 4; i++) {
        uint64_t h = PLACE(e, T0 + 10 * i + 1, USER, S(2, i + 1)); /* platinum, 2001 */
        b[i] = confirm(e, T0 + 10 * i + 2, h, USER);
    }
    const int64_t when[4] = {START - 24 * HOUR, START - 24 * HOUR + 1, START - 2 * HOUR,
                             START - 2 * HOUR + 1};
    const uint64_t want[4] = {2001, 1000, 1000, 0};
    for (unsigned i = 0; i < 4; i++) {
        engine_record rec;
        memset(&rec, 0, sizeof rec);
        uint64_t refund = 99999;
        cr_assert_eq(engine_booking_cancel(e, when[i], b[i], USER, &refund, &rec), ENGINE_OK);
        cr_assert_eq(refund, want[i], "cancel %u: refund %" PRIu64 ", want %" PRIu64, i, refund,
                     want[i]);
        cr_assert_eq(rec.type, ENGINE_REC_BOOKING_CANCEL);
        cr_assert_eq(rec.time_ms, when[i]);
        cr_assert_eq(rec.u.booking_cancel.booking_id, b[i]);
        cr_assert_eq(rec.u.booking_cancel.refund, want[i]);
        engine_booking_info bi;
        cr_assert(engine_booking_get(e, b[i], &bi));
        cr_assert_eq(bi.status, ENGINE_BOOKING_STATUS_CANCELLED);
        cr_assert_eq(bi.cancelled_ms, when[i]);
        cr_assert_eq(bi.refund, want[i]);
        cr_assert_eq(bi.amount, 2001);
        cr_assert_eq(bi.confirmed_ms, T0 + 10 * i + 2);
        assert_state(e, S(2, i + 1), ENGINE_SEAT_FREE);
        cr_assert_eq(engine_now_ms(e), when[i]);
        cr_assert_eq(engine_check(e), 0);
    }
    engine_destroy(e);
}

Test(engine, booking_cancel_frees_the_seats_for_rebooking)
{
    engine *e = fixture();
    uint64_t h = PLACE(e, T0 + 1, USER, S(1, 4), S(1, 5));
    uint64_t b = confirm(e, T0 + 2, h, USER);
    engine_record rec;
    uint64_t refund = 0;
    cr_assert_eq(engine_booking_cancel(e, T0 + 3, b, USER, &refund, &rec), ENGINE_OK);
    cr_assert_eq(refund, 3000);
    engine_category_counts counts[ENGINE_CATEGORIES_MAX];
    cr_assert_eq(engine_availability_get(e, SHOW, counts), 3);
    cr_assert_eq(counts[GOLD].free, 10);
    cr_assert_eq(counts[GOLD].sold, 0);
    uint64_t h2 = PLACE(e, T0 + 4, OTHER, S(1, 5), S(1, 4));
    uint64_t b2 = confirm(e, T0 + 5, h2, OTHER);
    cr_assert_eq(b2, b + 1);
    assert_state(e, S(1, 4), ENGINE_SEAT_SOLD);
    engine_booking_info bi;
    cr_assert(engine_booking_get(e, b, &bi));
    cr_assert_eq(bi.status, ENGINE_BOOKING_STATUS_CANCELLED, "the old booking stays cancelled");
    cr_assert_eq(engine_check(e), 0);
    engine_destroy(e);
}

Test(engine, booking_cancel_refuses_a_cancelled_booking)
{
    engine *e = fixture();
    uint64_t h = PLACE(e, T0 + 1, USER, S(1, 4));
    uint64_t b = confirm(e, T0 + 2, h, USER);
    engine_record rec;
    uint64_t refund = 0;
    cr_assert_eq(engine_booking_cancel(e, T0 + 3, b, USER, &refund, &rec), ENGINE_OK);
    REFUSED(e, ENGINE_BOOKING_CANCELLED, engine_booking_cancel(e, T0 + 4, b, USER, &refund, &rec));
    /* Even once the seat is sold again. */
    uint64_t h2 = PLACE(e, T0 + 5, OTHER, S(1, 4));
    confirm(e, T0 + 6, h2, OTHER);
    REFUSED(e, ENGINE_BOOKING_CANCELLED, engine_booking_cancel(e, T0 + 7, b, USER, &refund, &rec));
    assert_state(e, S(1, 4), ENGINE_SEAT_SOLD);
    engine_destroy(e);
}

Test(engine, booking_cancel_refuses_another_user_and_an_unknown_booking)
{
    engine *e = fixture();
    uint64_t h = PLACE(e, T0 + 1, USER, S(1, 4));
    uint64_t b = confirm(e, T0 + 2, h, USER);
    engine_record rec;
    uint64_t refund = 0;
    REFUSED(e, ENGINE_NOT_OWNER, engine_booking_cancel(e, T0 + 3, b, OTHER, &refund, &rec));
    REFUSED(e, ENGINE_UNKNOWN_BOOKING,
            engine_booking_cancel(e, T0 + 3, b + 1, USER, &refund, &rec));
    REFUSED(e, ENGINE_UNKNOWN_BOOKING, engine_booking_cancel(e, T0 + 3, 0, USER, &refund, &rec));
    engine_destroy(e);
}

Test(engine, booking_cancel_refuses_from_the_start_of_the_show)
{
    engine *e = fixture();
    uint64_t h = PLACE(e, T0 + 1, USER, S(1, 4));
    uint64_t b = confirm(e, T0 + 2, h, USER);
    engine_record rec;
    uint64_t refund = 0;
    REFUSED(e, ENGINE_SHOW_STARTED, engine_booking_cancel(e, START, b, USER, &refund, &rec));
    REFUSED(e, ENGINE_SHOW_STARTED, engine_booking_cancel(e, START + HOUR, b, USER, &refund, &rec));
    cr_assert_eq(engine_booking_cancel(e, START - 1, b, USER, &refund, &rec), ENGINE_OK);
    cr_assert_eq(refund, 0);
    engine_destroy(e);
}

Test(engine, booking_cancel_checks_refusals_in_order)
{
    engine *e = fixture();
    uint64_t h1 = PLACE(e, T0 + 1, USER, S(1, 4));
    uint64_t h2 = PLACE(e, T0 + 1, USER, S(1, 5));
    uint64_t b1 = confirm(e, T0 + 2, h1, USER);
    uint64_t b2 = confirm(e, T0 + 2, h2, USER);
    engine_record rec;
    uint64_t refund = 0;
    cr_assert_eq(engine_booking_cancel(e, T0 + 3, b1, USER, &refund, &rec), ENGINE_OK);
    REFUSED(e, ENGINE_TIME_BACKWARDS, engine_booking_cancel(e, T0 + 2, 99, OTHER, &refund, &rec));
    REFUSED(e, ENGINE_UNKNOWN_BOOKING, engine_booking_cancel(e, START, 99, OTHER, &refund, &rec));
    REFUSED(e, ENGINE_NOT_OWNER, engine_booking_cancel(e, START, b1, OTHER, &refund, &rec));
    REFUSED(e, ENGINE_BOOKING_CANCELLED, engine_booking_cancel(e, START, b1, USER, &refund, &rec));
    REFUSED(e, ENGINE_SHOW_STARTED, engine_booking_cancel(e, START, b2, USER, &refund, &rec));
    engine_destroy(e);
}

Test(engine, refund_compute_follows_the_default_policy)
{
    engine_config c;
    engine_config_default(&c);
    cr_assert_eq(engine_refund_compute(&c, 2001, 48 * HOUR), 2001);
    cr_assert_eq(engine_refund_compute(&c, 2001, 24 * HOUR), 2001);
    cr_assert_eq(engine_refund_compute(&c, 2001, 24 * HOUR - 1), 1000);
    cr_assert_eq(engine_refund_compute(&c, 2001, 2 * HOUR), 1000);
    cr_assert_eq(engine_refund_compute(&c, 2001, 2 * HOUR - 1), 0);
    cr_assert_eq(engine_refund_compute(&c, 2001, 0), 0);
    cr_assert_eq(engine_refund_compute(&c, 2001, -HOUR), 0);
    cr_assert_eq(engine_refund_compute(&c, 0, 48 * HOUR), 0);
    cr_assert_eq(engine_refund_compute(&c, 1, 3 * HOUR), 0);
    cr_assert_eq(engine_refund_compute(&c, 3, 3 * HOUR), 1);
}

Test(engine, refund_policy_follows_custom_tiers)
{
    engine_config cfg = test_cfg();
    cfg.refund_tier_count = 3;
    cfg.refund_tiers[0] = (engine_refund_tier){72 * HOUR, 90};
    cfg.refund_tiers[1] = (engine_refund_tier){1 * HOUR, 25};
    cfg.refund_tiers[2] = (engine_refund_tier){0, 10};
    cr_assert_eq(engine_refund_compute(&cfg, 2001, 72 * HOUR), 1800);
    cr_assert_eq(engine_refund_compute(&cfg, 2001, 72 * HOUR - 1), 500);
    cr_assert_eq(engine_refund_compute(&cfg, 2001, HOUR), 500);
    cr_assert_eq(engine_refund_compute(&cfg, 2001, HOUR - 1), 200);
    cr_assert_eq(engine_refund_compute(&cfg, 2001, 0), 200);

    engine *e = fixture_cfg(&cfg);
    const int64_t start = T0 + 100 * HOUR;
    make_show(e, T0 + 1, 11, LAYOUT, start, PRICES, 3);
    const int64_t when[4] = {start - 72 * HOUR, start - 72 * HOUR + 1, start - HOUR + 1, start - 1};
    const uint64_t want[4] = {1800, 500, 200, 200};
    uint64_t b[4];
    for (unsigned i = 0; i < 4; i++) {
        uint64_t h = place_on(e, 11, T0 + 10 * i + 2, USER, SEATS(S(2, i + 1)), 1);
        b[i] = confirm(e, T0 + 10 * i + 3, h, USER);
    }
    for (unsigned i = 0; i < 4; i++) {
        engine_record rec;
        uint64_t refund = 99999;
        cr_assert_eq(engine_booking_cancel(e, when[i], b[i], USER, &refund, &rec), ENGINE_OK);
        cr_assert_eq(refund, want[i], "cancel %u: refund %" PRIu64 ", want %" PRIu64, i, refund,
                     want[i]);
        cr_assert_eq(rec.u.booking_cancel.refund, want[i]);
    }
    engine_destroy(e);

    /* No tiers: no refunds. */
    cfg.refund_tier_count = 0;
    cr_assert_eq(engine_refund_compute(&cfg, 2001, 1000 * HOUR), 0);
}

/* ---- Ids, time, listings -------------------------------------------------------------- */

Test(engine, ids_carry_the_prefix_in_the_top_16_bits)
{
    engine_config cfg = test_cfg();
    cfg.id_prefix = 0xBEEF;
    engine *e = fixture_cfg(&cfg);
    const uint64_t pfx = (uint64_t)0xBEEF << 48;
    uint64_t h1 = PLACE(e, T0 + 1, USER, S(1, 1));
    uint64_t h2 = PLACE(e, T0 + 1, USER, S(1, 2));
    cr_assert_eq(h1, pfx | 1, "hold id %#" PRIx64, h1);
    cr_assert_eq(h2, pfx | 2, "hold id %#" PRIx64, h2);
    engine_record rec = best_ok(e, T0 + 1, USER, 2, PLATINUM, 0);
    cr_assert_eq(rec.u.hold_place.hold_id, pfx | 3);
    uint64_t b1 = confirm(e, T0 + 2, h2, USER);
    uint64_t b2 = confirm(e, T0 + 2, h1, USER);
    cr_assert_eq(b1, pfx | 1, "booking id %#" PRIx64, b1);
    cr_assert_eq(b2, pfx | 2, "booking id %#" PRIx64, b2);
    engine_booking_info bi;
    cr_assert(engine_booking_get(e, b1, &bi));
    cr_assert_eq(bi.hold_id, h2);
    cr_assert(!engine_booking_get(e, 1, &bi), "the bare sequence number is not the id");
    /* Ids without the prefix were never issued. */
    REFUSED(e, ENGINE_UNKNOWN_HOLD, engine_hold_release(e, T0 + 3, 3, USER, &rec));
    uint64_t refund;
    REFUSED(e, ENGINE_UNKNOWN_BOOKING, engine_booking_cancel(e, T0 + 3, 1, USER, &refund, &rec));
    engine_destroy(e);
}

Test(engine, every_mutation_refuses_time_going_backwards)
{
    engine *e = fixture();
    tlayout t;
    std_layout(&t);
    make_layout(e, T0 + 1, 2, &t);
    make_show(e, T0 + 2, 11, LAYOUT, START, PRICES, 3);
    uint64_t h = PLACE(e, T0 + 3, USER, S(1, 1));
    uint64_t hb = PLACE(e, T0 + 4, USER, S(1, 2));
    uint64_t b = confirm(e, T0 + 5, hb, USER);
    const int64_t past = T0 + 4;
    engine_record rec;
    engine_problem p;
    uint32_t cc = 0;
    uint64_t bid = 0, refund = 0;
    bool replayed = false;
    REFUSED(e, ENGINE_TIME_BACKWARDS, engine_layout_create(e, past, 3, &t.spec, &p, &rec));
    REFUSED(e, ENGINE_TIME_BACKWARDS, engine_layout_delete(e, past, 2, &rec));
    REFUSED(e, ENGINE_TIME_BACKWARDS,
            engine_showtime_create(e, past, 12, LAYOUT, START, PRICES, 3, &rec));
    REFUSED(e, ENGINE_TIME_BACKWARDS, engine_showtime_delete(e, past, 11, &rec));
    REFUSED(e, ENGINE_TIME_BACKWARDS,
            engine_hold_place(e, past, SHOW, USER, SEATS(S(1, 5)), 1, NULL, &cc, &rec));
    REFUSED(e, ENGINE_TIME_BACKWARDS, engine_hold_best(e, past, SHOW, USER, 2, GOLD, 0, &rec));
    REFUSED(e, ENGINE_TIME_BACKWARDS, engine_hold_extend(e, past, h, USER, &rec));
    REFUSED(e, ENGINE_TIME_BACKWARDS, engine_hold_release(e, past, h, USER, &rec));
    REFUSED(
        e, ENGINE_TIME_BACKWARDS,
        engine_booking_confirm(e, past, h, USER, ENGINE_PAY_UPI, NULL, 0, &bid, &replayed, &rec));
    REFUSED(e, ENGINE_TIME_BACKWARDS, engine_booking_cancel(e, past, b, USER, &refund, &rec));
    REFUSED(e, ENGINE_TIME_BACKWARDS, engine_booking_cancel(e, INT64_MIN, b, USER, &refund, &rec));
    uint64_t d = engine_digest(e);
    cr_assert_eq(engine_holds_expire(e, past, &rec, NULL, 1), 0);
    cr_assert_eq(engine_digest(e), d);

    /* The same time as the last mutation is fine for each. */
    const int64_t now = T0 + 5;
    cr_assert_eq(engine_layout_create(e, now, 3, &t.spec, &p, &rec), 0);
    cr_assert_eq(engine_layout_delete(e, now, 2, &rec), ENGINE_OK);
    cr_assert_eq(engine_showtime_create(e, now, 12, LAYOUT, START, PRICES, 3, &rec), 0);
    cr_assert_eq(engine_showtime_delete(e, now, 11, &rec), ENGINE_OK);
    cr_assert_eq(engine_hold_place(e, now, SHOW, USER, SEATS(S(1, 5)), 1, NULL, &cc, &rec),
                 ENGINE_OK);
    cr_assert_eq(engine_hold_best(e, now, SHOW, USER, 2, PLATINUM, 0, &rec), ENGINE_OK);
    cr_assert_eq(engine_hold_extend(e, now, h, USER, &rec), ENGINE_OK);
    cr_assert_eq(
        engine_booking_confirm(e, now, h, USER, ENGINE_PAY_UPI, NULL, 0, &bid, &replayed, &rec),
        ENGINE_OK);
    cr_assert_eq(engine_booking_cancel(e, now, b, USER, &refund, &rec), ENGINE_OK);
    cr_assert_eq(engine_now_ms(e), now);
    cr_assert_eq(engine_check(e), 0);
    tl_free(&t);
    engine_destroy(e);
}

Test(engine, user_listings_paginate_and_return_totals)
{
    engine *e = fixture();
    uint64_t h1 = PLACE(e, T0 + 1, USER, S(1, 1));
    uint64_t other = PLACE(e, T0 + 1, OTHER, S(1, 2));
    uint64_t h2 = PLACE(e, T0 + 2, USER, S(1, 3));
    uint64_t h3 = PLACE(e, T0 + 3, USER, S(1, 4));
    uint64_t ids[8];

    cr_assert_eq(engine_user_holds(e, USER, 0, ids, 8), 3);
    cr_assert_eq(ids[0], h1);
    cr_assert_eq(ids[1], h2);
    cr_assert_eq(ids[2], h3);
    memset(ids, 0, sizeof ids);
    cr_assert_eq(engine_user_holds(e, USER, 1, ids, 1), 3);
    cr_assert_eq(ids[0], h2);
    cr_assert_eq(ids[1], 0, "wrote past cap");
    cr_assert_eq(engine_user_holds(e, USER, 2, ids, 8), 3);
    cr_assert_eq(ids[0], h3);
    memset(ids, 0, sizeof ids);
    cr_assert_eq(engine_user_holds(e, USER, 3, ids, 8), 3);
    cr_assert_eq(engine_user_holds(e, USER, 100, ids, 8), 3);
    cr_assert_eq(ids[0], 0, "nothing to write past the end");
    cr_assert_eq(engine_user_holds(e, USER, 0, ids, 0), 3);
    cr_assert_eq(ids[0], 0, "cap 0 writes nothing");
    cr_assert_eq(engine_user_holds(e, OTHER, 0, ids, 8), 1);
    cr_assert_eq(ids[0], other);
    cr_assert_eq(engine_user_holds(e, 999, 0, ids, 8), 0);

    uint64_t b1 = confirm(e, T0 + 4, h1, USER);
    uint64_t b3 = confirm(e, T0 + 5, h3, USER);
    uint64_t b2 = confirm(e, T0 + 6, h2, USER);
    cr_assert_eq(engine_user_holds(e, USER, 0, ids, 8), 0);
    memset(ids, 0, sizeof ids);
    cr_assert_eq(engine_user_bookings(e, USER, 0, ids, 8), 3);
    cr_assert_eq(ids[0], b2, "newest first");
    cr_assert_eq(ids[1], b3);
    cr_assert_eq(ids[2], b1);
    memset(ids, 0, sizeof ids);
    cr_assert_eq(engine_user_bookings(e, USER, 1, ids, 1), 3);
    cr_assert_eq(ids[0], b3);
    cr_assert_eq(ids[1], 0);
    memset(ids, 0, sizeof ids);
    cr_assert_eq(engine_user_bookings(e, USER, 2, ids, 5), 3);
    cr_assert_eq(ids[0], b1);
    cr_assert_eq(ids[1], 0);
    cr_assert_eq(engine_user_bookings(e, OTHER, 0, ids, 8), 0);
    engine_destroy(e);
}

/* ---- Scale ------------------------------------------------------------------------------ */

Test(engine, a_100000_seat_layout_works_in_little_state)
{
    tlayout t;
    tl_init(&t, 200, 100000);
    tl_cat(&t, "standard");
    for (uint16_t r = 0; r < 200; r++) {
        char label[ENGINE_LABEL_MAX];
        snprintf(label, sizeof label, "R%u-", (unsigned)r);
        tl_row(&t, label);
        for (uint16_t c = 1; c <= 500; c++) {
            tl_seat(&t, r, c, 0, 0);
        }
    }
    t.spec.best_row = 100;
    const uint32_t price = 1234;
    engine *e = fixture_layout(&t, &price, 1);
    tl_free(&t);
    cr_assert_eq(engine_layout_seat_count(e, LAYOUT), 100000);
    cr_assert_eq(engine_layout_seat_find(e, LAYOUT, "R199-500"), 99999);
    size_t bytes = engine_showtime_state_bytes(e, SHOW);
    cr_assert_gt(bytes, 0);
    cr_assert_lt(bytes, 64 * 1024, "showtime state %zu bytes", bytes);

    uint64_t h = PLACE(e, T0 + 1, USER, 0, 99999, 50000);
    engine_record rec = best_ok(e, T0 + 2, OTHER, 4, 0, 0);
    BEST_IS(rec, 50248, 50249, 50250, 50251); /* row 100, columns 249-252 */
    uint64_t b1 = confirm(e, T0 + 3, h, USER);
    uint64_t b2 = confirm(e, T0 + 3, rec.u.hold_place.hold_id, OTHER);
    cr_assert_neq(b1, b2);
    assert_state(e, 99999, ENGINE_SEAT_SOLD);
    assert_state(e, 50250, ENGINE_SEAT_SOLD);
    engine_category_counts counts[ENGINE_CATEGORIES_MAX];
    cr_assert_eq(engine_availability_get(e, SHOW, counts), 1);
    cr_assert_eq(counts[0].free, 100000 - 7);
    cr_assert_eq(counts[0].sold, 7);
    uint8_t *map = malloc(100000);
    cr_assert_not_null(map);
    cr_assert_eq(engine_seatmap_get(e, SHOW, map, 100000), 100000);
    cr_assert_eq(map[50000], ENGINE_SEAT_SOLD);
    cr_assert_eq(map[1], ENGINE_SEAT_FREE);
    free(map);
    cr_assert_eq(engine_showtime_state_bytes(e, SHOW), bytes);
    cr_assert_eq(engine_check(e), 0);
    engine_destroy(e);
}

/* ---- Replay --------------------------------------------------------------------------- */

enum { LOG_MAX = 64, LOG_BUF = 1 << 20 };

typedef struct reclog {
    size_t n;
    uint8_t *bytes[LOG_MAX];
    size_t len[LOG_MAX];
    uint64_t digest[LOG_MAX];
    bool whole[LOG_MAX]; /* false: mid-way through one expire call, no digest to compare */
    int64_t now[LOG_MAX];
} reclog;

/* Encodes `rec` (just produced by `e`) and remembers e's digest after it. */
static void log_rec(reclog *l, const engine *e, const engine_record *rec)
{
    cr_assert_lt(l->n, LOG_MAX);
    uint8_t *buf = malloc(LOG_BUF);
    cr_assert_not_null(buf);
    int n = engine_record_encode(rec, buf, LOG_BUF);
    cr_assert_gt(n, 0, "encode %s: %d", engine_record_type_name(rec->type), n);
    l->bytes[l->n] = buf;
    l->len[l->n] = (size_t)n;
    l->digest[l->n] = engine_digest(e);
    l->whole[l->n] = true;
    l->now[l->n] = engine_now_ms(e);
    l->n++;
}

static void log_free(reclog *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->bytes[i]);
    }
    l->n = 0;
}

/* Decodes and applies log entry i on `e`; its digest must match the original's. */
static void replay_one(engine *e, const reclog *l, size_t i)
{
    engine_record rec;
    cr_assert_eq(engine_record_decode(l->bytes[i], l->len[i], &rec), 0, "decode %zu", i);
    int rc = engine_record_apply(e, &rec);
    cr_assert_eq(rc, 0, "apply %zu (%s): %d %s", i, engine_record_type_name(rec.type), rc,
                 engine_strerror(rc));
    if (l->whole[i]) {
        cr_assert_eq(engine_digest(e), l->digest[i], "digest differs after record %zu (%s)", i,
                     engine_record_type_name(rec.type));
    }
    cr_assert_eq(engine_now_ms(e), l->now[i]);
    cr_assert_eq(engine_check(e), 0);
}

/* Builds a history covering every record type on `a`, logging every record. */
static void build_history(engine *a, reclog *l)
{
    engine_record rec;
    tlayout t;
    std_layout(&t);
    cr_assert_eq(engine_layout_create(a, T0, LAYOUT, &t.spec, NULL, &rec), 0);
    log_rec(l, a, &rec);
    cr_assert_eq(engine_layout_create(a, T0 + 1, 2, &t.spec, NULL, &rec), 0);
    log_rec(l, a, &rec);
    tl_free(&t);
    cr_assert_eq(engine_layout_delete(a, T0 + 2, 2, &rec), ENGINE_OK);
    log_rec(l, a, &rec);
    cr_assert_eq(engine_showtime_create(a, T0 + 3, SHOW, LAYOUT, START, PRICES, 3, &rec), 0);
    log_rec(l, a, &rec);
    cr_assert_eq(engine_showtime_create(a, T0 + 4, 11, LAYOUT, START, PRICES, 3, &rec), 0);
    log_rec(l, a, &rec);
    cr_assert_eq(engine_showtime_delete(a, T0 + 5, 11, &rec), ENGINE_OK);
    log_rec(l, a, &rec);

    uint32_t cc = 0;
    cr_assert_eq(
        engine_hold_place(a, T0 + 10, SHOW, 1, SEATS(S(0, 3), S(0, 4)), 2, NULL, &cc, &rec),
        ENGINE_OK);
    uint64_t h1 = rec.u.hold_place.hold_id;
    log_rec(l, a, &rec);
    cr_assert_eq(engine_hold_best(a, T0 + 11, SHOW, 2, 3, GOLD, 0, &rec), ENGINE_OK);
    uint64_t h2 = rec.u.hold_place.hold_id;
    log_rec(l, a, &rec);
    cr_assert_eq(engine_hold_extend(a, T0 + 20, h1, 1, &rec), ENGINE_OK);
    log_rec(l, a, &rec);
    cr_assert_eq(
        engine_hold_place(a, T0 + 21, SHOW, 3, SEATS(S(2, 1), S(2, 2)), 2, NULL, &cc, &rec),
        ENGINE_OK);
    uint64_t h3 = rec.u.hold_place.hold_id;
    log_rec(l, a, &rec);
    cr_assert_eq(engine_hold_release(a, T0 + 22, h3, 3, &rec), ENGINE_OK);
    log_rec(l, a, &rec);

    uint64_t b1 = 0, b2 = 0, refund = 0;
    bool replayed = false;
    cr_assert_eq(engine_booking_confirm(a, T0 + 30, h1, 1, ENGINE_PAY_WALLET, "abc", 3, &b1,
                                        &replayed, &rec),
                 ENGINE_OK);
    log_rec(l, a, &rec);
    cr_assert_eq(
        engine_booking_confirm(a, T0 + 31, h2, 2, ENGINE_PAY_CARD, NULL, 0, &b2, &replayed, &rec),
        ENGINE_OK);
    log_rec(l, a, &rec);
    cr_assert_eq(engine_booking_cancel(a, T0 + 40, b1, 1, &refund, &rec), ENGINE_OK);
    log_rec(l, a, &rec);

    cr_assert_eq(engine_hold_place(a, T0 + 50, SHOW, 4, SEATS(S(2, 3)), 1, NULL, &cc, &rec),
                 ENGINE_OK);
    log_rec(l, a, &rec);
    cr_assert_eq(engine_hold_place(a, T0 + 51, SHOW, 4, SEATS(S(2, 4)), 1, NULL, &cc, &rec),
                 ENGINE_OK);
    log_rec(l, a, &rec);
    engine_record recs[4];
    size_t n = engine_holds_expire(a, T0 + 51 + TTL, recs, NULL, 4);
    cr_assert_eq(n, 2);
    for (size_t i = 0; i < n; i++) {
        log_rec(l, a, &recs[i]);
        l->whole[l->n - 1] = i + 1 == n;
    }
    /* One more hold stays live at the end. */
    cr_assert_eq(engine_hold_place(a, T0 + 60 + TTL, SHOW, 5, SEATS(S(2, 5)), 1, NULL, &cc, &rec),
                 ENGINE_OK);
    log_rec(l, a, &rec);
}

Test(engine, replaying_records_rebuilds_the_same_state)
{
    engine_config cfg = test_cfg();
    cfg.id_prefix = 5;
    engine *a = new_engine(&cfg);
    reclog l = {0};
    build_history(a, &l);
    bool seen[ENGINE_REC_BOOKING_CANCEL + 1] = {false};
    for (size_t i = 0; i < l.n; i++) {
        engine_record rec;
        cr_assert_eq(engine_record_decode(l.bytes[i], l.len[i], &rec), 0);
        seen[rec.type] = true;
    }
    for (int t = ENGINE_REC_LAYOUT_CREATE; t <= ENGINE_REC_BOOKING_CANCEL; t++) {
        cr_assert(seen[t], "history lacks a %s record", engine_record_type_name(t));
    }

    engine *b = new_engine(&cfg);
    for (size_t i = 0; i < l.n; i++) {
        replay_one(b, &l, i);
    }
    cr_assert_eq(engine_digest(b), engine_digest(a));
    cr_assert_eq(engine_holds_live(b), engine_holds_live(a));
    cr_assert_eq(engine_holds_next_expiry_ms(b), engine_holds_next_expiry_ms(a));

    /* The replica carries on exactly like the original. */
    uint64_t ha = PLACE(a, engine_now_ms(a) + 1, 9, S(1, 9));
    uint64_t hb = PLACE(b, engine_now_ms(b) + 1, 9, S(1, 9));
    cr_assert_eq(ha, hb);
    cr_assert_eq(engine_digest(b), engine_digest(a));

    /* Records applied straight from the struct work as well as decoded ones. */
    engine *c = new_engine(&cfg);
    for (size_t i = 0; i < l.n; i++) {
        engine_record rec;
        cr_assert_eq(engine_record_decode(l.bytes[i], l.len[i], &rec), 0);
        engine_record copy = rec;
        cr_assert_eq(engine_record_apply(c, &copy), 0);
    }
    cr_assert_eq(engine_digest(c), l.digest[l.n - 1]);
    engine_destroy(c);
    log_free(&l);
    engine_destroy(a);
    engine_destroy(b);
}

static int apply_bytes(engine *e, const uint8_t *buf, size_t len)
{
    engine_record rec;
    cr_assert_eq(engine_record_decode(buf, len, &rec), 0);
    return engine_record_apply(e, &rec);
}

Test(engine, replay_refuses_records_that_do_not_fit)
{
    engine_config cfg = test_cfg();
    engine *a = new_engine(&cfg);
    reclog l = {0};
    build_history(a, &l);
    engine *b = new_engine(&cfg);
    for (size_t i = 0; i < l.n; i++) {
        replay_one(b, &l, i);
    }
    engine_record rec;

    /* Old records again: the layout exists, ids are used, time went on. */
    for (size_t i = 0; i < l.n; i++) {
        REFUSED(b, ENGINE_EREPLAY, apply_bytes(b, l.bytes[i], l.len[i]));
    }

    /* A hold on a seat that is already held. */
    int64_t now = engine_now_ms(a) + 10;
    uint32_t cc = 0;
    cr_assert_eq(engine_hold_place(a, now, SHOW, 7, SEATS(S(1, 9), S(1, 10)), 2, NULL, &cc, &rec),
                 ENGINE_OK);
    engine_record first = rec;
    cr_assert_eq(engine_hold_place(a, now, SHOW, 7, SEATS(S(1, 11)), 1, NULL, &cc, &rec),
                 ENGINE_OK);
    engine_record second = rec;
    cr_assert_eq(engine_record_apply(b, &first), 0);
    engine_record clash = second;
    clash.u.hold_place.seats[0] = S(1, 10);
    REFUSED(b, ENGINE_EREPLAY, engine_record_apply(b, &clash));
    /* On a sold seat, a blocked seat, a seat outside the layout, an unknown showtime. */
    clash.u.hold_place.seats[0] = S(1, 4); /* sold by hold_best + confirm */
    cr_assert_eq(engine_seat_state_get(b, SHOW, S(1, 4)), ENGINE_SEAT_SOLD);
    REFUSED(b, ENGINE_EREPLAY, engine_record_apply(b, &clash));
    clash.u.hold_place.seats[0] = BLOCKED_SEAT;
    REFUSED(b, ENGINE_EREPLAY, engine_record_apply(b, &clash));
    clash.u.hold_place.seats[0] = 30;
    REFUSED(b, ENGINE_EREPLAY, engine_record_apply(b, &clash));
    clash = second;
    clash.u.hold_place.showtime_id = 99;
    REFUSED(b, ENGINE_EREPLAY, engine_record_apply(b, &clash));
    /* A hold id that is not the next one. */
    clash = second;
    clash.u.hold_place.hold_id += 7;
    REFUSED(b, ENGINE_EREPLAY, engine_record_apply(b, &clash));
    /* A time before the replica's clock. */
    clash = second;
    clash.time_ms = engine_now_ms(b) - 1;
    REFUSED(b, ENGINE_EREPLAY, engine_record_apply(b, &clash));
    /* The genuine record still applies: the refusals consumed nothing. */
    cr_assert_eq(engine_record_apply(b, &second), 0);
    cr_assert_eq(engine_digest(b), engine_digest(a));

    /* Ending, extending or confirming a hold that does not exist or is not live. */
    engine_record bad;
    memset(&bad, 0, sizeof bad);
    bad.type = ENGINE_REC_HOLD_RELEASE;
    bad.time_ms = now + 1;
    bad.u.hold_end.hold_id = 999;
    REFUSED(b, ENGINE_EREPLAY, engine_record_apply(b, &bad));
    bad.type = ENGINE_REC_HOLD_EXPIRE;
    REFUSED(b, ENGINE_EREPLAY, engine_record_apply(b, &bad));
    bad.u.hold_end.hold_id = 1; /* confirmed long ago */
    REFUSED(b, ENGINE_EREPLAY, engine_record_apply(b, &bad));
    bad.type = ENGINE_REC_HOLD_RELEASE;
    REFUSED(b, ENGINE_EREPLAY, engine_record_apply(b, &bad));
    memset(&bad, 0, sizeof bad);
    bad.type = ENGINE_REC_HOLD_EXTEND;
    bad.time_ms = now + 1;
    bad.u.hold_extend.hold_id = 999;
    bad.u.hold_extend.expires_ms = now + 1 + TTL;
    REFUSED(b, ENGINE_EREPLAY, engine_record_apply(b, &bad));
    memset(&bad, 0, sizeof bad);
    bad.type = ENGINE_REC_BOOKING_CONFIRM;
    bad.time_ms = now + 1;
    bad.u.booking_confirm.booking_id = 3;
    bad.u.booking_confirm.hold_id = 999;
    bad.u.booking_confirm.payment = ENGINE_PAY_UPI;
    REFUSED(b, ENGINE_EREPLAY, engine_record_apply(b, &bad));
    memset(&bad, 0, sizeof bad);
    bad.type = ENGINE_REC_BOOKING_CANCEL;
    bad.time_ms = now + 1;
    bad.u.booking_cancel.booking_id = 999;
    REFUSED(b, ENGINE_EREPLAY, engine_record_apply(b, &bad));
    bad.u.booking_cancel.booking_id = 1; /* already cancelled */
    REFUSED(b, ENGINE_EREPLAY, engine_record_apply(b, &bad));
    engine_booking_info bi;
    cr_assert(engine_booking_get(b, 2, &bi));
    cr_assert_eq(bi.status, ENGINE_BOOKING_STATUS_CONFIRMED);
    bad.u.booking_cancel.booking_id = 2;
    bad.u.booking_cancel.refund = bi.amount + 1; /* more than was paid */
    REFUSED(b, ENGINE_EREPLAY, engine_record_apply(b, &bad));
    memset(&bad, 0, sizeof bad);
    bad.type = ENGINE_REC_LAYOUT_DELETE;
    bad.time_ms = now + 1;
    bad.u.layout_delete.layout_id = LAYOUT; /* in use */
    REFUSED(b, ENGINE_EREPLAY, engine_record_apply(b, &bad));
    bad.u.layout_delete.layout_id = 99;
    REFUSED(b, ENGINE_EREPLAY, engine_record_apply(b, &bad));
    memset(&bad, 0, sizeof bad);
    bad.type = ENGINE_REC_SHOWTIME_DELETE;
    bad.time_ms = now + 1;
    bad.u.showtime_delete.showtime_id = SHOW; /* in use */
    REFUSED(b, ENGINE_EREPLAY, engine_record_apply(b, &bad));
    memset(&bad, 0, sizeof bad);
    bad.type = ENGINE_REC_SHOWTIME_CREATE;
    bad.time_ms = now + 1;
    bad.u.showtime_create.showtime_id = 12;
    bad.u.showtime_create.layout_id = 99; /* unknown layout */
    bad.u.showtime_create.start_ms = START;
    bad.u.showtime_create.price_count = 3;
    REFUSED(b, ENGINE_EREPLAY, engine_record_apply(b, &bad));
    bad.u.showtime_create.layout_id = LAYOUT;
    bad.u.showtime_create.price_count = 2; /* wrong price count */
    REFUSED(b, ENGINE_EREPLAY, engine_record_apply(b, &bad));

    cr_assert_eq(engine_digest(b), engine_digest(a));
    log_free(&l);
    engine_destroy(a);
    engine_destroy(b);
}

/* ---- engine_layout_validate ------------------------------------------------ */

/*
 * engine_layout_validate() gives the verdict engine_layout_create() gives on
 * a fresh engine, with the same problem, and returns `want`. Returns the
 * problem's field.
 */
static const char *expect_same_verdict(const tlayout *t, int want)
{
    engine_problem pv = {0}, pc = {0};
    int v = engine_layout_validate(&t->spec, &pv);
    cr_assert_eq(v, want, "validate: %s, want %s (%s)", rname(v), rname(want),
                 pv.reason ? pv.reason : "-");
    cr_assert_eq(engine_layout_validate(&t->spec, NULL), want, "without a problem pointer");
    engine_config cfg = test_cfg();
    engine *e = new_engine(&cfg);
    engine_record rec;
    int c = engine_layout_create(e, T0, 2, &t->spec, &pc, &rec);
    cr_assert_eq(c, want, "create: %s, want %s", rname(c), rname(want));
    engine_destroy(e);
    if (want != ENGINE_BAD_LAYOUT)
        return NULL;
    cr_assert_str_eq(pv.field, pc.field);
    cr_assert_eq(pv.index, pc.index);
    cr_assert_str_eq(pv.reason, pc.reason);
    return pv.field;
}

Test(engine, layout_validate_accepts_a_good_layout_without_an_engine)
{
    tlayout t;
    std_layout(&t);
    cr_assert_null(expect_same_verdict(&t, 0));
    uint16_t cols[4] = {1, 1000, 7, 30};
    tlayout g;
    grid_layout(&g, 4, cols, 3);
    cr_assert_null(expect_same_verdict(&g, 0));
    tl_free(&g);
    tl_free(&t);
}

Test(engine, layout_validate_refuses_what_layout_create_refuses)
{
    tlayout t;
    std_layout(&t);
    memcpy(t.seats[25].label, t.seats[2].label, ENGINE_LABEL_MAX); /* "A3" twice */
    cr_assert_str_eq(expect_same_verdict(&t, ENGINE_BAD_LAYOUT), "seats");
    tl_free(&t);

    std_layout(&t);
    strcpy(t.rows[2], "A"); /* seat labels stay C1..C11: only the row label clashes */
    cr_assert_str_eq(expect_same_verdict(&t, ENGINE_BAD_LAYOUT), "row_labels");
    tl_free(&t);

    std_layout(&t);
    t.spec.best_row = 3;
    cr_assert_str_eq(expect_same_verdict(&t, ENGINE_BAD_LAYOUT), "best_row");
    tl_free(&t);

    std_layout(&t);
    engine_seat_spec tmp = t.seats[3];
    t.seats[3] = t.seats[4];
    t.seats[4] = tmp;
    cr_assert_str_eq(expect_same_verdict(&t, ENGINE_BAD_LAYOUT), "seats");
    tl_free(&t);

    std_layout(&t);
    t.spec.seat_count = 0; /* refused while encoding, before any parse */
    expect_same_verdict(&t, ENGINE_BAD_LAYOUT);
    tl_free(&t);

    std_layout(&t);
    snprintf(t.spec.category_names[1], ENGINE_NAME_MAX, "%s", "silver");
    cr_assert_str_eq(expect_same_verdict(&t, ENGINE_BAD_LAYOUT), "category_names");
    tl_free(&t);
}

/* engine_seat_totals follows holds, confirms, releases, cancels and a
 * second showtime, as /metrics shows them. */
Test(engine, seat_totals_follow_every_seat_change)
{
    engine *e = fixture();
    uint64_t held, sold;
    uint32_t shows;
    engine_seat_totals(e, &held, &sold, &shows);
    cr_assert_eq(held, 0);
    cr_assert_eq(sold, 0);
    cr_assert_eq(shows, 1);
    make_show(e, T0, SHOW + 1, LAYOUT, START, PRICES, 3);
    uint64_t h1 = PLACE(e, T0 + 1, USER, S(0, 1), S(0, 2), S(0, 3));
    uint64_t h2 = place_on(e, SHOW + 1, T0 + 2, OTHER, SEATS(S(1, 1), S(1, 2)), 2);
    engine_seat_totals(e, &held, &sold, &shows);
    cr_assert_eq(held, 5);
    cr_assert_eq(sold, 0);
    cr_assert_eq(shows, 2);
    engine_record rec;
    uint64_t booking;
    bool replayed;
    cr_assert_eq(engine_booking_confirm(e, T0 + 3, h1, USER, ENGINE_PAY_CARD, NULL, 0, &booking,
                                        &replayed, &rec),
                 ENGINE_OK);
    cr_assert_eq(engine_hold_release(e, T0 + 4, h2, OTHER, &rec), ENGINE_OK);
    engine_seat_totals(e, &held, &sold, &shows);
    cr_assert_eq(held, 0);
    cr_assert_eq(sold, 3);
    uint64_t refund;
    cr_assert_eq(engine_booking_cancel(e, T0 + 5, booking, USER, &refund, &rec), ENGINE_OK);
    engine_seat_totals(e, &held, &sold, &shows);
    cr_assert_eq(sold, 0);
    engine_destroy(e);
}
