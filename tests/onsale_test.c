/*
 * onsale_test.c - the engine's waiting lists, virtual queues and price
 * changes (engine.h, "Prices", "Waiting lists", "Virtual queues").
 *
 * Every mutation's record is kept, encoded and decoded again; checkpoints
 * replay the journal into a fresh engine and restore a snapshot into
 * another, and both must have the live engine's digest. The randomized
 * tests check the engine against a small reference model and print their
 * seed (USHER_TEST_SEED reruns one).
 */
#include "engine.h"

#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define T0    INT64_C(1700000000000)
#define SEC   INT64_C(1000)
#define HOUR  (3600 * SEC)
#define START (T0 + 48 * HOUR)

enum { LAYOUT = 1, SHOW = 10, ROWS = 3, COLS = 6 };
enum { SILVER = 0, GOLD = 1 };
static const uint32_t PRICES[2] = {1000, 2500};

/* ---- Fixture: rows A, B silver, row C gold; 6 seats a row, an aisle after
 * the third; A1 accessible. Seat index = row * 6 + col - 1. */

typedef struct fx {
    engine *e;
    engine_config cfg;
    int64_t now;
    uint8_t **log; /* encoded records, in order */
    size_t *log_len;
    size_t nlog, caplog;
    uint64_t rng;
} fx;

static uint64_t rnd(fx *f)
{
    uint64_t z = (f->rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void keep(fx *f, const engine_record *rec)
{
    uint8_t buf[ENGINE_RECORD_SMALL_MAX * 64];
    int n = engine_record_encode(rec, buf, sizeof buf);
    cr_assert_gt(n, 0, "encode %s: %d", engine_record_type_name(rec->type), n);
    engine_record back;
    cr_assert_eq(engine_record_decode(buf, (size_t)n, &back), 0);
    cr_assert_eq(back.type, rec->type);
    if (f->nlog == f->caplog) {
        f->caplog = f->caplog ? f->caplog * 2 : 256;
        f->log = realloc(f->log, f->caplog * sizeof(*f->log));
        f->log_len = realloc(f->log_len, f->caplog * sizeof(*f->log_len));
        cr_assert(f->log != NULL && f->log_len != NULL);
    }
    f->log[f->nlog] = malloc((size_t)n);
    cr_assert_not_null(f->log[f->nlog]);
    memcpy(f->log[f->nlog], buf, (size_t)n);
    f->log_len[f->nlog++] = (size_t)n;
}

static void fx_init_cfg(fx *f, const engine_config *cfg)
{
    memset(f, 0, sizeof *f);
    f->cfg = *cfg;
    cr_assert_eq(engine_create(&f->cfg, &f->e), 0);
    f->now = T0;
    engine_seat_spec seats[ROWS * COLS];
    char rows[ROWS][ENGINE_LABEL_MAX] = {"A", "B", "C"};
    engine_layout_spec spec = {.seat_count = ROWS * COLS,
                               .seats = seats,
                               .row_count = ROWS,
                               .row_labels = (const char(*)[ENGINE_LABEL_MAX])rows,
                               .category_count = 2,
                               .best_row = 1};
    snprintf(spec.category_names[0], ENGINE_NAME_MAX, "silver");
    snprintf(spec.category_names[1], ENGINE_NAME_MAX, "gold");
    for (uint32_t r = 0; r < ROWS; r++) {
        for (uint32_t c = 0; c < COLS; c++) {
            engine_seat_spec *s = &seats[r * COLS + c];
            memset(s, 0, sizeof *s);
            snprintf(s->label, sizeof s->label, "%c%u", "ABC"[r], c + 1);
            s->row = (uint16_t)r;
            s->col = (uint16_t)(c + 1 + (c >= 3)); /* an aisle after the third seat */
            s->category = r == 2 ? GOLD : SILVER;
            s->flags = r == 0 && c == 0 ? ENGINE_SEAT_FLAG_ACCESSIBLE : 0;
        }
    }
    engine_record rec;
    cr_assert_eq(engine_layout_create(f->e, f->now, LAYOUT, &spec, NULL, &rec), 0);
    keep(f, &rec);
    cr_assert_eq(engine_showtime_create(f->e, f->now, SHOW, LAYOUT, START, PRICES, 2, &rec), 0);
    keep(f, &rec);
    f->rng = 1;
}

static void fx_init(fx *f)
{
    engine_config cfg;
    engine_config_default(&cfg);
    cfg.offer_ttl_ms = 60 * SEC;
    cfg.queue_admit_window_ms = 120 * SEC;
    fx_init_cfg(f, &cfg);
}

static void fx_free(fx *f)
{
    for (size_t i = 0; i < f->nlog; i++)
        free(f->log[i]);
    free(f->log);
    free(f->log_len);
    engine_destroy(f->e);
}

/* Replays the journal into a fresh engine, and restores a full snapshot
 * into another: both must equal the live engine. */
static void checkpoint(fx *f)
{
    engine_check(f->e);
    uint64_t want = engine_digest(f->e);
    engine *r;
    cr_assert_eq(engine_create(&f->cfg, &r), 0);
    for (size_t i = 0; i < f->nlog; i++) {
        engine_record rec;
        cr_assert_eq(engine_record_decode(f->log[i], f->log_len[i], &rec), 0);
        int rc = engine_record_apply(r, &rec);
        cr_assert_eq(rc, 0, "replay of record %zu (%s): %d", i, engine_record_type_name(rec.type),
                     rc);
    }
    engine_check(r);
    cr_assert_eq(engine_digest(r), want, "replayed engine differs");
    engine_destroy(r);

    engine_snapshot *s;
    cr_assert_eq(engine_snapshot_take(f->e, true, &s), 0);
    cr_assert_eq(engine_create(&f->cfg, &r), 0);
    static const engine_item_kind order[] = {ENGINE_ITEM_META,     ENGINE_ITEM_LAYOUT,
                                             ENGINE_ITEM_SHOWTIME, ENGINE_ITEM_BOOKING,
                                             ENGINE_ITEM_HOLD,     ENGINE_ITEM_ONSALE};
    /* As the store gives them back: by kind, each kind in ascending key order. */
    for (size_t k = 0; k < sizeof order / sizeof order[0]; k++) {
        uint64_t last = 0;
        for (;;) {
            const engine_item *next = NULL;
            for (size_t i = 0; i < engine_snapshot_count(s); i++) {
                const engine_item *it = engine_snapshot_item(s, i);
                if (it->kind == order[k] && (it->key > last || (last == 0 && it->key == 0)) &&
                    (next == NULL || it->key < next->key))
                    next = it;
            }
            if (next == NULL)
                break;
            int rc = engine_restore_item(r, next->kind, next->key, next->value, next->len);
            cr_assert_eq(rc, 0, "restore item kind %d key %" PRIu64 ": %d", next->kind, next->key,
                         rc);
            if (next->key == 0)
                break; /* META */
            last = next->key;
        }
    }
    cr_assert_eq(engine_restore_finish(r), 0);
    cr_assert_eq(engine_digest(r), want, "restored engine differs");
    engine_destroy(r);
    engine_snapshot_free(s);
}

/* Row 0 is A; columns from 1. */
static uint32_t seat(uint32_t row, uint32_t col)
{
    return row * COLS + col - 1;
}

static uint64_t hold(fx *f, uint64_t user, const uint32_t *seats, uint32_t n)
{
    engine_record rec;
    cr_assert_eq(engine_hold_place(f->e, f->now, SHOW, user, seats, n, NULL, NULL, &rec),
                 ENGINE_OK);
    keep(f, &rec);
    return rec.u.hold_place.hold_id;
}

/* Holds every free seat of the showtime, one hold per seat, for `user`. */
static void fill(fx *f, uint64_t user)
{
    for (uint32_t s = 0; s < ROWS * COLS; s++) {
        if (engine_seat_state_get(f->e, SHOW, s) == ENGINE_SEAT_FREE)
            hold(f, user, &s, 1);
    }
}

/* Runs on-sale steps until none is due; returns how many, the records in `out`. */
static size_t drain(fx *f, engine_record *out, size_t cap)
{
    size_t n = 0;
    engine_record rec;
    while (engine_onsale_next(f->e, f->now, rnd(f), &rec) == ENGINE_OK) {
        keep(f, &rec);
        cr_assert_lt(n, cap, "more on-sale steps than expected");
        out[n++] = rec;
    }
    return n;
}

static void join(fx *f, uint64_t user, uint32_t count, uint32_t cat)
{
    engine_record rec;
    int rc = engine_waitlist_join(f->e, f->now, SHOW, user, count, cat, &rec);
    cr_assert_eq(rc, ENGINE_OK, "join user %" PRIu64 ": %s", user,
                 engine_result_name((engine_result)rc));
    keep(f, &rec);
}

/* ---- Prices ------------------------------------------------------------------------ */

Test(onsale, price_change_keeps_live_holds_and_prices_new_ones)
{
    fx f;
    fx_init(&f);
    uint32_t s1 = seat(2, 1), s2 = seat(2, 2); /* C1, C2: gold */
    uint64_t h1 = hold(&f, 7, &s1, 1);
    const uint32_t dear[2] = {1200, 4000};
    engine_record rec;
    f.now += SEC;
    cr_assert_eq(engine_showtime_price_set(f.e, f.now, SHOW, dear, 1, &rec), ENGINE_BAD_PRICES);
    cr_assert_eq(engine_showtime_price_set(f.e, f.now, SHOW + 1, dear, 2, &rec),
                 ENGINE_UNKNOWN_SHOWTIME);
    cr_assert_eq(engine_showtime_price_set(f.e, f.now, SHOW, dear, 2, &rec), ENGINE_OK);
    keep(&f, &rec);
    uint64_t h2 = hold(&f, 8, &s2, 1);
    engine_hold_info a, b;
    cr_assert(engine_hold_get(f.e, h1, &a) && engine_hold_get(f.e, h2, &b));
    cr_assert_eq(a.amount, 2500, "a live hold keeps its price");
    cr_assert_eq(b.amount, 4000, "a new hold pays the new price");
    uint32_t p[ENGINE_CATEGORIES_MAX];
    cr_assert(engine_showtime_get(f.e, SHOW, NULL, NULL, p));
    cr_assert_eq(p[GOLD], 4000);
    checkpoint(&f);
    fx_free(&f);
}

/* ---- Waiting lists --------------------------------------------------------------------- */

Test(onsale, waitlist_join_refusals_change_nothing)
{
    fx f;
    fx_init(&f);
    engine_record rec;
    uint64_t d0 = engine_digest(f.e);
    cr_assert_eq(engine_waitlist_join(f.e, f.now, SHOW, 1, 2, SILVER, &rec), ENGINE_SEATS_AVAILABLE,
                 "seats are free: reserve instead");
    fill(&f, 99);
    d0 = engine_digest(f.e);
    cr_assert_eq(engine_waitlist_join(f.e, f.now, SHOW + 1, 1, 2, SILVER, &rec),
                 ENGINE_UNKNOWN_SHOWTIME);
    cr_assert_eq(engine_waitlist_join(f.e, f.now, SHOW, 1, 0, SILVER, &rec), ENGINE_BAD_COUNT);
    cr_assert_eq(engine_waitlist_join(f.e, f.now, SHOW, 1, 11, SILVER, &rec), ENGINE_BAD_COUNT);
    cr_assert_eq(engine_waitlist_join(f.e, f.now, SHOW, 1, 2, 2, &rec), ENGINE_UNKNOWN_CATEGORY);
    cr_assert_eq(engine_waitlist_join(f.e, START, SHOW, 1, 2, SILVER, &rec), ENGINE_SHOW_STARTED);
    cr_assert_eq(engine_waitlist_join(f.e, f.now - 1, SHOW, 1, 2, SILVER, &rec),
                 ENGINE_TIME_BACKWARDS);
    cr_assert_eq(engine_digest(f.e), d0);
    join(&f, 1, 2, SILVER);
    cr_assert_eq(engine_waitlist_join(f.e, f.now, SHOW, 1, 1, GOLD, &rec), ENGINE_ALREADY_WAITING);
    cr_assert_eq(engine_waitlist_leave(f.e, f.now, SHOW, 2, &rec), ENGINE_NOT_WAITING);
    engine_waiter_info wi;
    cr_assert(engine_waitlist_get(f.e, SHOW, 1, &wi));
    cr_assert_eq(wi.position, 1);
    cr_assert_eq(wi.count, 2);
    cr_assert_eq(wi.category, SILVER);
    cr_assert_eq(engine_showtime_delete(f.e, f.now, SHOW, &rec), ENGINE_SHOWTIME_IN_USE);
    checkpoint(&f);
    fx_free(&f);
}

Test(onsale, waitlist_is_bounded)
{
    engine_config cfg;
    engine_config_default(&cfg);
    cfg.waitlist_max = 3;
    fx f;
    fx_init_cfg(&f, &cfg);
    fill(&f, 99);
    for (uint64_t u = 1; u <= 3; u++)
        join(&f, u, 1, ENGINE_CATEGORY_ANY);
    engine_record rec;
    cr_assert_eq(engine_waitlist_join(f.e, f.now, SHOW, 4, 1, SILVER, &rec), ENGINE_CAPACITY);
    cr_assert_eq(engine_waitlist_length(f.e, SHOW), 3);
    fx_free(&f);
}

Test(onsale, offers_go_first_come_first_served_among_requests_that_fit)
{
    fx f;
    fx_init(&f);
    fill(&f, 99);
    join(&f, 1, 2, GOLD);                /* wants two gold */
    join(&f, 2, 1, SILVER);              /* one silver */
    join(&f, 3, 1, ENGINE_CATEGORY_ANY); /* one of any */
    join(&f, 4, 1, SILVER);
    engine_record out[8];
    cr_assert_eq(drain(&f, out, 8), 0, "no seat came free: no offer");

    /* One silver seat comes free: user 1 wants gold, user 2 is next and fits. */
    uint64_t ids[32];
    uint32_t n = engine_user_holds(f.e, 99, 0, ids, 32);
    cr_assert_eq(n, ROWS * COLS, "one hold a seat, in seat order");
    engine_record rec;
    f.now += SEC;
    cr_assert_eq(engine_hold_release(f.e, f.now, ids[6], 99, &rec), ENGINE_OK); /* B2: silver */
    keep(&f, &rec);
    cr_assert_eq(drain(&f, out, 8), 1);
    cr_assert_eq(out[0].type, ENGINE_REC_WAITLIST_OFFER);
    cr_assert_eq(out[0].u.hold_place.user_id, 2);
    cr_assert_eq(out[0].u.hold_place.seat_count, 1);
    cr_assert_eq(out[0].u.hold_place.amount, PRICES[SILVER]);
    engine_hold_info h;
    cr_assert(engine_hold_get(f.e, out[0].u.hold_place.hold_id, &h));
    cr_assert(h.offer, "an offer is marked");
    cr_assert_eq(h.expires_ms, f.now + 60 * SEC, "an offer lives offer_ttl_ms");
    cr_assert_not(engine_waitlist_get(f.e, SHOW, 2, &(engine_waiter_info){0}));
    engine_waiter_info wi;
    cr_assert(engine_waitlist_get(f.e, SHOW, 3, &wi));
    cr_assert_eq(wi.position, 2, "user 3 moved up behind user 1");

    /* Two gold seats (adjacent) come free: user 1 gets both. */
    f.now += SEC;
    for (uint32_t k = 12; k < 14; k++) {
        cr_assert_eq(engine_hold_release(f.e, f.now, ids[k], 99, &rec), ENGINE_OK);
        keep(&f, &rec);
    }
    cr_assert_eq(drain(&f, out, 8), 1);
    cr_assert_eq(out[0].u.hold_place.user_id, 1);
    cr_assert_eq(out[0].u.hold_place.seat_count, 2);
    cr_assert_eq(out[0].u.hold_place.amount, 2 * PRICES[GOLD]);

    /* User 2 lets the offer lapse: its seat passes to user 3 (any). */
    f.now += 61 * SEC;
    engine_record ex[8];
    engine_hold_info gone[8];
    size_t ne = engine_holds_expire(f.e, f.now, ex, gone, 8);
    for (size_t i = 0; i < ne; i++)
        keep(&f, &ex[i]);
    cr_assert_eq(ne, 2, "both offers expired (user 1 did not confirm either)");
    size_t no = drain(&f, out, 8);
    cr_assert_eq(no, 1, "one offer: user 3 (any) takes silver B1, user 4 (silver) finds none");
    cr_assert_eq(out[0].u.hold_place.user_id, 3, "first in line that fits");
    cr_assert_eq(out[0].u.hold_place.seats[0], seat(1, 1), "any: categories in layout order");
    cr_assert(engine_waitlist_get(f.e, SHOW, 4, &wi));
    cr_assert_eq(wi.position, 1);
    checkpoint(&f);

    /* A confirmed offer is a booking; cancelling it offers its seats again. */
    uint64_t bid;
    bool replayed;
    cr_assert_eq(engine_booking_confirm(f.e, f.now, out[0].u.hold_place.hold_id, 3, ENGINE_PAY_UPI,
                                        NULL, 0, &bid, &replayed, &rec),
                 ENGINE_OK);
    keep(&f, &rec);
    uint64_t refund;
    cr_assert_eq(engine_booking_cancel(f.e, f.now, bid, 3, &refund, &rec), ENGINE_OK);
    keep(&f, &rec);
    cr_assert_eq(drain(&f, out, 8), 1);
    cr_assert_eq(out[0].u.hold_place.user_id, 4, "user 4 was first in line");
    cr_assert_eq(engine_waitlist_length(f.e, SHOW), 0);
    checkpoint(&f);
    fx_free(&f);
}

/* Free seats an offer may take: free, not accessible or companion, of `cat`. */
static uint32_t offerable(fx *f, uint32_t cat)
{
    uint32_t n = 0;
    for (uint32_t s = 0; s < ROWS * COLS; s++) {
        const engine_seat_spec *sp = engine_layout_seat(f->e, LAYOUT, s);
        if (engine_seat_state_get(f->e, SHOW, s) == ENGINE_SEAT_FREE && sp->flags == 0 &&
            (cat == ENGINE_CATEGORY_ANY || sp->category == cat))
            n++;
    }
    return n;
}

typedef struct mwaiter {
    uint64_t user;
    uint32_t count, cat;
} mwaiter;

/* Seat watching (engine_seat_watch_set): a mirror of SHOW's seats kept
 * from the transitions alone, which must always equal the seat map. */
typedef struct mirror {
    uint8_t state[ROWS * COLS];
    uint32_t calls;
} mirror;

static void mirror_seats(void *arg, uint64_t showtime_id, const uint32_t *seats, uint32_t n,
                         engine_seat_state to)
{
    mirror *m = arg;
    cr_assert_eq(showtime_id, SHOW, "only the watched showtime is told");
    cr_assert(n > 0 && to <= ENGINE_SEAT_SOLD);
    for (uint32_t i = 0; i < n; i++) {
        cr_assert_lt(seats[i], ROWS * COLS);
        cr_assert_neq(m->state[seats[i]], to, "a transition changes the seat's state");
        m->state[seats[i]] = (uint8_t)to;
    }
    m->calls++;
}

static void mirror_check(fx *f, const mirror *m, uint64_t seed, int step)
{
    uint8_t now[ROWS * COLS];
    cr_assert_eq(engine_seatmap_get(f->e, SHOW, now, sizeof now), ROWS * COLS);
    for (uint32_t i = 0; i < ROWS * COLS; i++)
        cr_assert_eq(m->state[i], now[i],
                     "seed %" PRIu64 " step %d: seat %u is %u, the watch said %u", seed, step, i,
                     now[i], m->state[i]);
}

Test(onsale, waitlist_against_a_model, .timeout = 120)
{
    const char *env = getenv("USHER_TEST_SEED");
    uint64_t seed = env != NULL ? strtoull(env, NULL, 10) : 20261121;
    for (int round = 0; round < 40; round++, seed++) {
        fx f;
        fx_init(&f);
        f.rng = seed;
        mwaiter model[64];
        uint32_t nm = 0;
        mirror mir;
        cr_assert_eq(engine_seatmap_get(f.e, SHOW, mir.state, sizeof mir.state), ROWS * COLS);
        mir.calls = 0;
        engine_seat_watch_set(f.e, mirror_seats, &mir);
        cr_assert(engine_showtime_watch(f.e, SHOW, true));
        cr_assert(!engine_showtime_watch(f.e, SHOW + 1, true), "unknown showtimes are refused");
        for (int step = 0; step < 300; step++) {
            f.now += (int64_t)(rnd(&f) % (20 * SEC));
            engine_record rec, out[64];
            uint64_t user = 1 + rnd(&f) % 40;
            switch (rnd(&f) % 7) {
            case 0:
            case 1: { /* someone reserves a random block */
                uint32_t s = (uint32_t)(rnd(&f) % (ROWS * COLS)), n = 1 + (uint32_t)(rnd(&f) % 3);
                uint32_t seats[3] = {s, (s + 1) % (ROWS * COLS), (s + 2) % (ROWS * COLS)};
                if (engine_hold_place(f.e, f.now, SHOW, user, seats, n, NULL, NULL, &rec) ==
                    ENGINE_OK)
                    keep(&f, &rec);
                break;
            }
            case 2: { /* someone confirms, releases or cancels */
                uint64_t ids[8];
                uint32_t n = engine_user_holds(f.e, user, 0, ids, 8);
                if (n > 0 && rnd(&f) % 2) {
                    uint64_t b;
                    bool rep;
                    if (engine_booking_confirm(f.e, f.now, ids[0], user, ENGINE_PAY_CARD, NULL, 0,
                                               &b, &rep, &rec) == ENGINE_OK)
                        keep(&f, &rec);
                } else if (n > 0) {
                    cr_assert_eq(engine_hold_release(f.e, f.now, ids[0], user, &rec), ENGINE_OK);
                    keep(&f, &rec);
                } else if (engine_user_bookings(f.e, user, 0, ids, 1) > 0) {
                    uint64_t refund;
                    if (engine_booking_cancel(f.e, f.now, ids[0], user, &refund, &rec) == ENGINE_OK)
                        keep(&f, &rec);
                }
                break;
            }
            case 3:
            case 4: { /* someone joins the waiting list */
                uint32_t count = 1 + (uint32_t)(rnd(&f) % 3);
                uint32_t cat = rnd(&f) % 3 == 2 ? ENGINE_CATEGORY_ANY : (uint32_t)(rnd(&f) % 2);
                int rc = engine_waitlist_join(f.e, f.now, SHOW, user, count, cat, &rec);
                bool on = false;
                for (uint32_t i = 0; i < nm; i++)
                    on |= model[i].user == user;
                if (on)
                    cr_assert_eq(rc, ENGINE_ALREADY_WAITING);
                else if (offerable(&f, cat) >= count)
                    cr_assert_eq(rc, ENGINE_SEATS_AVAILABLE, "seed %" PRIu64, seed);
                else {
                    cr_assert_eq(rc, ENGINE_OK, "seed %" PRIu64 ": %s", seed,
                                 engine_result_name((engine_result)rc));
                    keep(&f, &rec);
                    model[nm++] = (mwaiter){user, count, cat};
                }
                break;
            }
            case 5: { /* someone leaves it */
                int rc = engine_waitlist_leave(f.e, f.now, SHOW, user, &rec);
                uint32_t i = 0;
                while (i < nm && model[i].user != user)
                    i++;
                cr_assert_eq(rc, i < nm ? ENGINE_OK : ENGINE_NOT_WAITING);
                if (i < nm) {
                    keep(&f, &rec);
                    memmove(&model[i], &model[i + 1], (nm - i - 1) * sizeof(model[0]));
                    nm--;
                }
                break;
            }
            default: { /* time passes: holds and offers expire */
                f.now += 30 * SEC;
                engine_record ex[64];
                size_t ne;
                while ((ne = engine_holds_expire(f.e, f.now, ex, NULL, 64)) > 0) {
                    for (size_t i = 0; i < ne; i++)
                        keep(&f, &ex[i]);
                }
                break;
            }
            }
            /* Offers: each goes to the first waiter in line whose request fits. */
            engine_record offer;
            while (engine_onsale_next(f.e, f.now, rnd(&f), &offer) == ENGINE_OK) {
                cr_assert_eq(offer.type, ENGINE_REC_WAITLIST_OFFER);
                uint32_t i = 0;
                /* The offer is made already: count its seats as free again. */
                uint32_t back = offer.u.hold_place.seat_count;
                while (i < nm) {
                    uint32_t avail = offerable(&f, model[i].cat);
                    for (uint32_t k = 0; k < back; k++) {
                        const engine_seat_spec *sp =
                            engine_layout_seat(f.e, LAYOUT, offer.u.hold_place.seats[k]);
                        avail +=
                            model[i].cat == ENGINE_CATEGORY_ANY || sp->category == model[i].cat;
                    }
                    if (avail >= model[i].count)
                        break;
                    i++;
                }
                cr_assert_lt(i, nm, "seed %" PRIu64 ": an offer nobody's request fits", seed);
                cr_assert_eq(offer.u.hold_place.user_id, model[i].user,
                             "seed %" PRIu64 " step %d: offer to %" PRIu64
                             ", first fitting is %" PRIu64,
                             seed, step, offer.u.hold_place.user_id, model[i].user);
                cr_assert_eq(offer.u.hold_place.seat_count, model[i].count);
                for (uint32_t k = 0; k < back; k++) {
                    const engine_seat_spec *sp =
                        engine_layout_seat(f.e, LAYOUT, offer.u.hold_place.seats[k]);
                    cr_assert_eq(sp->flags, 0, "offers skip accessible seats");
                    cr_assert(model[i].cat == ENGINE_CATEGORY_ANY || sp->category == model[i].cat);
                }
                keep(&f, &offer);
                memmove(&model[i], &model[i + 1], (nm - i - 1) * sizeof(model[0]));
                nm--;
                (void)out;
            }
            /* After the steps, nobody waiting fits, unless the show started. */
            for (uint32_t i = 0; i < nm && f.now < START; i++)
                cr_assert_lt(offerable(&f, model[i].cat), model[i].count,
                             "seed %" PRIu64 ": waiter %" PRIu64 " fits but got nothing", seed,
                             model[i].user);
            cr_assert_eq(engine_waitlist_length(f.e, SHOW), nm);
            engine_onsale_totals tot;
            engine_onsale_totals_get(f.e, &tot);
            cr_assert_eq(tot.waiters, nm, "totals count the waiting list");
            cr_assert_eq(tot.queues, 0);
            for (uint32_t i = 0; i < nm; i++) {
                engine_waiter_info wi;
                cr_assert(engine_waitlist_get(f.e, SHOW, model[i].user, &wi));
                cr_assert_eq(wi.position, i + 1);
            }
            mirror_check(&f, &mir, seed, step);
            engine_check(f.e);
        }
        cr_assert_gt(mir.calls, 10, "the watch saw the round's transitions");
        checkpoint(&f);
        fx_free(&f);
    }
}

/* ---- Virtual queues ---------------------------------------------------------------- */

static void qset(fx *f, uint32_t rate, int64_t start)
{
    engine_record rec;
    int rc = engine_queue_set(f->e, f->now, SHOW, rate, start, &rec);
    cr_assert_eq(rc, ENGINE_OK, "queue_set: %s", engine_result_name((engine_result)rc));
    keep(f, &rec);
}

static void qjoin(fx *f, uint64_t user)
{
    engine_record rec;
    bool joined;
    int rc = engine_queue_join(f->e, f->now, SHOW, user, &joined, &rec);
    cr_assert_eq(rc, ENGINE_OK, "queue_join %" PRIu64 ": %s", user,
                 engine_result_name((engine_result)rc));
    if (joined)
        keep(f, &rec);
}

Test(onsale, queue_refusals)
{
    fx f;
    fx_init(&f);
    engine_record rec;
    bool joined;
    cr_assert_eq(engine_queue_join(f.e, f.now, SHOW, 1, &joined, &rec), ENGINE_NO_QUEUE);
    cr_assert_eq(engine_queue_set(f.e, f.now, SHOW, 0, 0, &rec), ENGINE_NO_QUEUE);
    cr_assert_eq(engine_queue_set(f.e, f.now, SHOW + 1, 5, T0, &rec), ENGINE_UNKNOWN_SHOWTIME);
    cr_assert_eq(engine_queue_leave(f.e, f.now, SHOW, 1, &rec), ENGINE_NO_QUEUE);
    qset(&f, 5, T0 + 10 * SEC);
    cr_assert_eq(engine_queue_leave(f.e, f.now, SHOW, 1, &rec), ENGINE_NOT_WAITING);
    cr_assert_eq(engine_queue_join(f.e, START, SHOW, 1, &joined, &rec), ENGINE_SHOW_STARTED);
    qset(&f, 7, T0 + 20 * SEC); /* a queue not started may move */
    f.now = T0 + 20 * SEC;
    engine_record out[4];
    cr_assert_eq(drain(&f, out, 4), 1);
    cr_assert_eq(out[0].type, ENGINE_REC_QUEUE_START);
    cr_assert_eq(engine_queue_set(f.e, f.now, SHOW, 7, T0 + 30 * SEC, &rec), ENGINE_QUEUE_STARTED);
    qset(&f, 9, T0 + 20 * SEC); /* the rate may change */
    cr_assert_eq(engine_showtime_delete(f.e, f.now, SHOW, &rec), ENGINE_SHOWTIME_IN_USE);
    qset(&f, 0, 0);
    engine_queue_info qi;
    cr_assert_not(engine_queue_get(f.e, SHOW, &qi), "rate 0 removes the queue");
    checkpoint(&f);
    fx_free(&f);
}

Test(onsale, queue_shuffles_early_joiners_then_serves_in_order)
{
    fx f;
    fx_init(&f);
    const int64_t qstart = T0 + 60 * SEC;
    qset(&f, 50, qstart);
    enum { EARLY = 500, LATE = 50 };
    for (uint64_t u = 1; u <= EARLY; u++) {
        qjoin(&f, u);
        engine_queue_user qu = engine_queue_user_get(f.e, SHOW, u, f.now);
        cr_assert_eq(qu.state, ENGINE_QUEUE_PREQUEUE);
    }
    qjoin(&f, 1); /* joining again keeps the place */
    engine_queue_info qi;
    cr_assert(engine_queue_get(f.e, SHOW, &qi));
    cr_assert_eq(qi.places, EARLY);
    engine_record rec;
    cr_assert_eq(engine_queue_leave(f.e, f.now, SHOW, 7, &rec), ENGINE_OK);
    keep(&f, &rec);
    f.now = qstart;
    engine_record out[4];
    cr_assert_eq(engine_onsale_next(f.e, f.now, 12345, &rec), ENGINE_OK);
    cr_assert_eq(rec.type, ENGINE_REC_QUEUE_START);
    keep(&f, &rec);
    /* Positions are a permutation of 1..EARLY-1, not the join order. */
    static uint8_t seen[EARLY + 1];
    memset(seen, 0, sizeof seen);
    uint32_t in_order = 0;
    for (uint64_t u = 1; u <= EARLY; u++) {
        engine_queue_user qu = engine_queue_user_get(f.e, SHOW, u, f.now);
        if (u == 7) {
            cr_assert_eq(qu.state, ENGINE_QUEUE_NONE);
            continue;
        }
        cr_assert_eq(qu.state, ENGINE_QUEUE_WAITING);
        cr_assert(qu.position >= 1 && qu.position < EARLY);
        cr_assert_not(seen[qu.position], "position %u twice", qu.position);
        seen[qu.position] = 1;
        in_order += qu.position == (u < 7 ? u : u - 1);
    }
    cr_assert_lt(in_order, 20, "%u of %d early joiners kept their join order: not shuffled",
                 in_order, EARLY - 1);
    /* Later joiners queue behind, in order. */
    for (uint64_t u = 1000; u < 1000 + LATE; u++) {
        qjoin(&f, u);
        engine_queue_user qu = engine_queue_user_get(f.e, SHOW, u, f.now);
        cr_assert_eq(qu.state, ENGINE_QUEUE_WAITING);
        cr_assert_eq(qu.position, EARLY - 1 + (u - 1000) + 1);
    }
    checkpoint(&f);

    /* Admission follows the positions: whoever is admitted had a smaller
     * position than anyone still waiting. */
    uint32_t admitted_prev = 0;
    for (int tick = 1; tick <= 80; tick++) {
        f.now = qstart + tick * 100;
        drain(&f, out, 4);
        cr_assert(engine_queue_get(f.e, SHOW, &qi));
        uint64_t elapsed = (uint64_t)(f.now - qstart);
        cr_assert_leq(qi.admitted, 50 * elapsed / 1000 + 1, "too fast at %" PRIu64 " ms", elapsed);
        cr_assert_geq(qi.admitted, 50 * elapsed / 1000 > 0 ? 50 * elapsed / 1000 - 1 : 0,
                      "too slow at %" PRIu64 " ms", elapsed);
        cr_assert_geq(qi.admitted, admitted_prev);
        admitted_prev = qi.admitted;
    }
    uint32_t late_admitted = 0, min_waiting_pos = UINT32_MAX;
    for (uint64_t u = 1000; u < 1000 + LATE; u++) {
        engine_queue_user qu = engine_queue_user_get(f.e, SHOW, u, f.now);
        if (qu.state == ENGINE_QUEUE_WAITING && qu.position < min_waiting_pos)
            min_waiting_pos = qu.position;
        if (qu.state == ENGINE_QUEUE_ADMITTED)
            late_admitted++;
    }
    cr_assert_eq(qi.admitted, 400, "8 s at 50/s");
    cr_assert_eq(late_admitted, 0, "no late joiner ahead of an early one");
    cr_assert_eq(min_waiting_pos, EARLY - 1 - 400 + 1, "the first late joiner is next after them");
    checkpoint(&f);
    fx_free(&f);
}

Test(onsale, queue_leave_rejoin_goes_to_the_back_and_admission_lapses)
{
    fx f;
    fx_init(&f);
    qset(&f, 1, T0);
    engine_record out[8], rec;
    cr_assert_eq(drain(&f, out, 8), 1, "the start is due at once");
    for (uint64_t u = 1; u <= 5; u++)
        qjoin(&f, u);
    cr_assert_eq(engine_queue_user_get(f.e, SHOW, 2, f.now).position, 2);
    cr_assert_eq(engine_queue_leave(f.e, f.now, SHOW, 2, &rec), ENGINE_OK);
    keep(&f, &rec);
    cr_assert_eq(engine_queue_user_get(f.e, SHOW, 3, f.now).position, 2, "3 moved up");
    qjoin(&f, 2);
    cr_assert_eq(engine_queue_user_get(f.e, SHOW, 2, f.now).position, 5, "2 went to the back");
    /* One admission a second: after 1 s user 1 is in. */
    f.now += SEC;
    cr_assert_eq(drain(&f, out, 8), 1);
    cr_assert_eq(out[0].type, ENGINE_REC_QUEUE_ADMIT);
    engine_queue_user qu = engine_queue_user_get(f.e, SHOW, 1, f.now);
    cr_assert_eq(qu.state, ENGINE_QUEUE_ADMITTED);
    cr_assert_eq(qu.until_ms, qu.admitted_ms + 120 * SEC);
    qjoin(&f, 1); /* admitted: joining again keeps it */
    cr_assert_eq(engine_queue_user_get(f.e, SHOW, 1, f.now).state, ENGINE_QUEUE_ADMITTED);
    cr_assert_eq(engine_queue_user_get(f.e, SHOW, 3, f.now).position, 1);
    /* Past the window the admission lapses; joining again goes to the back. */
    f.now += 121 * SEC;
    cr_assert_eq(engine_queue_user_get(f.e, SHOW, 1, f.now).state, ENGINE_QUEUE_LAPSED);
    drain(&f, out, 8);
    qjoin(&f, 1);
    engine_queue_info qi;
    cr_assert(engine_queue_get(f.e, SHOW, &qi));
    cr_assert_eq(engine_queue_user_get(f.e, SHOW, 1, f.now).state, ENGINE_QUEUE_WAITING);
    cr_assert_eq(engine_queue_user_get(f.e, SHOW, 1, f.now).position, qi.waiting);
    checkpoint(&f);
    fx_free(&f);
}

Test(onsale, queue_against_a_model, .timeout = 120)
{
    const char *env = getenv("USHER_TEST_SEED");
    uint64_t seed = env != NULL ? strtoull(env, NULL, 10) : 4242;
    for (int round = 0; round < 20; round++, seed++) {
        fx f;
        fx_init(&f);
        f.rng = seed;
        const int64_t qstart = T0 + 30 * SEC;
        qset(&f, 1 + (uint32_t)(rnd(&f) % 20), qstart);
        /* The model: users in line, in order (the prequeue as the engine
         * shuffled it, learned at the start), and the admitted set. */
        enum { USERS = 200 };
        uint64_t line[4 * USERS];
        uint32_t nl = 0;
        uint8_t admitted[USERS + 1] = {0};
        uint64_t admissions = 0; /* users admitted so far */
        bool started = false;
        for (int step = 0; step < 600; step++) {
            f.now += (int64_t)(rnd(&f) % 300);
            uint64_t user = 1 + rnd(&f) % USERS;
            engine_record rec;
            uint32_t i = 0;
            while (i < nl && line[i] != user)
                i++;
            switch (rnd(&f) % 4) {
            case 0:
            case 1: {
                engine_queue_user before = engine_queue_user_get(f.e, SHOW, user, f.now);
                qjoin(&f, user);
                if (before.state == ENGINE_QUEUE_LAPSED)
                    admitted[user] = 0; /* a lapsed admission joins again at the back */
                if (i == nl && !admitted[user])
                    line[nl++] = user;
                break;
            }
            case 2: {
                int rc = engine_queue_leave(f.e, f.now, SHOW, user, &rec);
                bool in = i < nl || admitted[user];
                cr_assert_eq(rc, in ? ENGINE_OK : ENGINE_NOT_WAITING, "seed %" PRIu64, seed);
                if (rc == ENGINE_OK)
                    keep(&f, &rec);
                if (i < nl) {
                    memmove(&line[i], &line[i + 1], (nl - i - 1) * sizeof(line[0]));
                    nl--;
                }
                admitted[user] = 0;
                break;
            }
            default: {
                engine_record out;
                while (engine_onsale_next(f.e, f.now, rnd(&f), &out) == ENGINE_OK) {
                    keep(&f, &out);
                    if (out.type == ENGINE_REC_QUEUE_START) {
                        cr_assert_not(started);
                        started = true;
                        /* Learn the shuffled order: sort the line by position. */
                        for (uint32_t a = 0; a < nl; a++) {
                            for (uint32_t b = a + 1; b < nl; b++) {
                                if (engine_queue_user_get(f.e, SHOW, line[b], f.now).position <
                                    engine_queue_user_get(f.e, SHOW, line[a], f.now).position) {
                                    uint64_t t = line[a];
                                    line[a] = line[b];
                                    line[b] = t;
                                }
                            }
                        }
                        continue;
                    }
                    cr_assert_eq(out.type, ENGINE_REC_QUEUE_ADMIT);
                    engine_queue_info qi;
                    cr_assert(engine_queue_get(f.e, SHOW, &qi));
                    /* Whoever the engine admitted is the head of the model's line. */
                    uint32_t k = 0;
                    while (k < nl && engine_queue_user_get(f.e, SHOW, line[k], f.now).state ==
                                         ENGINE_QUEUE_ADMITTED)
                        k++;
                    cr_assert_gt(k, 0, "seed %" PRIu64 ": admission admitted nobody", seed);
                    for (uint32_t j = 0; j < k; j++)
                        admitted[line[j]] = 1;
                    admissions += k;
                    memmove(line, line + k, (nl - k) * sizeof(line[0]));
                    nl -= k;
                }
                break;
            }
            }
            engine_onsale_totals tot;
            engine_onsale_totals_get(f.e, &tot);
            cr_assert_eq(tot.queues, 1);
            cr_assert_eq(tot.queue_waiting, nl, "seed %" PRIu64 ": totals count the line", seed);
            cr_assert_eq(tot.queue_admitted, admissions,
                         "seed %" PRIu64 ": totals count every admission", seed);
            if (!started)
                continue;
            for (uint32_t j = 0; j < nl; j++) {
                engine_queue_user qu = engine_queue_user_get(f.e, SHOW, line[j], f.now);
                cr_assert_eq(qu.state, ENGINE_QUEUE_WAITING, "seed %" PRIu64, seed);
                cr_assert_eq(qu.position, j + 1, "seed %" PRIu64 " step %d: user %" PRIu64, seed,
                             step, line[j]);
            }
        }
        engine_check(f.e);
        checkpoint(&f);
        fx_free(&f);
    }
}

Test(onsale, a_hundred_thousand_queued_users_cost_little, .timeout = 120)
{
    fx f;
    fx_init(&f);
    qset(&f, 500, T0 + HOUR);
    enum { N = 100000 };
    engine_record rec;
    for (uint64_t u = 1; u <= N; u++) {
        bool joined;
        cr_assert_eq(engine_queue_join(f.e, f.now, SHOW, u, &joined, &rec), ENGINE_OK);
        cr_assert(joined);
    }
    size_t bytes = engine_queue_bytes(f.e, SHOW);
    double per = (double)bytes / N;
    printf("queue memory: %zu bytes for %d users = %.1f bytes per queued user\n", bytes, N, per);
    cr_assert_leq(per, 48.0, "%.1f bytes per queued user", per);
    /* Replay and restore a queue this size. */
    /* The joins were not kept in the journal: check the snapshot path alone. */
    engine_snapshot *s;
    cr_assert_eq(engine_snapshot_take(f.e, true, &s), 0);
    engine *r;
    cr_assert_eq(engine_create(&f.cfg, &r), 0);
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < engine_snapshot_count(s); i++) {
            const engine_item *it = engine_snapshot_item(s, i);
            if ((pass == 0) != (it->kind != ENGINE_ITEM_ONSALE))
                continue;
            cr_assert_eq(engine_restore_item(r, it->kind, it->key, it->value, it->len), 0);
        }
    }
    cr_assert_eq(engine_restore_finish(r), 0);
    cr_assert_eq(engine_digest(r), engine_digest(f.e));
    engine_queue_user a = engine_queue_user_get(r, SHOW, 77777, f.now);
    cr_assert_eq(a.state, ENGINE_QUEUE_PREQUEUE);
    engine_destroy(r);
    engine_snapshot_free(s);
    fx_free(&f);
}
