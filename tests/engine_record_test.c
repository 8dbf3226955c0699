/*
 * engine_record_test.c - the record codec and the name tables.
 *
 * Round trips for every record type, every way a byte string can be too
 * short or too long, and a fuzz loop over random and mutated encodings that
 * must never crash decode or apply (run under ASan/UBSan, every input in a
 * buffer of exactly its size so any over-read is caught).
 */
#include "engine.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define T0 INT64_C(1700000000000)

enum { BIG = 1 << 20 };

/* ---- Helpers -------------------------------------------------------------- */

static uint64_t rng = 0x9e3779b97f4a7c15u;

static uint64_t rnd(void)
{
    /* xorshift64*: deterministic, so a failure reproduces. */
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return rng * 0x2545f4914f6cdd1du;
}

/* A copy of `len` bytes in a buffer of exactly that size (ASan sees any over-read). */
static uint8_t *exact_copy(const uint8_t *src, size_t len)
{
    uint8_t *p = malloc(len ? len : 1);
    cr_assert_not_null(p);
    if (len) {
        memcpy(p, src, len);
    }
    return p;
}

static int decode_exact(const uint8_t *src, size_t len, engine_record *rec)
{
    uint8_t *p = exact_copy(src, len);
    int rc = engine_record_decode(p, len, rec);
    free(p);
    return rc;
}

static bool is_snake_case(const char *s)
{
    if (s == NULL || !(s[0] >= 'a' && s[0] <= 'z')) {
        return false;
    }
    size_t n = strlen(s);
    if (s[n - 1] == '_') {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
        if (!ok || (c == '_' && s[i + 1] == '_')) {
            return false;
        }
    }
    return true;
}

/* An engine holding one small layout (id 3); *rec is its LAYOUT_CREATE record. */
static engine *layout_engine(engine_record *rec)
{
    engine_config cfg;
    engine_config_default(&cfg);
    cfg.holds_max = 16;
    cfg.bookings_max = 64;
    cfg.showtimes_max = 4;
    cfg.layouts_max = 4;
    engine *e = NULL;
    cr_assert_eq(engine_create(&cfg, &e), 0);

    static const char rows[2][ENGINE_LABEL_MAX] = {"A", "B"};
    engine_seat_spec seats[7];
    memset(seats, 0, sizeof seats);
    const uint16_t cols[7] = {1, 2, 3, 5, 1, 2, 3};
    for (int i = 0; i < 7; i++) {
        seats[i].row = i < 4 ? 0 : 1;
        seats[i].col = cols[i];
        seats[i].category = i < 4 ? 0 : 1;
        seats[i].flags = i == 0   ? ENGINE_SEAT_FLAG_ACCESSIBLE
                         : i == 6 ? ENGINE_SEAT_FLAG_BLOCKED
                                  : 0;
        snprintf(seats[i].label, sizeof seats[i].label, "%c%u", 'A' + seats[i].row,
                 (unsigned)(cols[i] % 100));
    }
    engine_layout_spec spec;
    memset(&spec, 0, sizeof spec);
    spec.seat_count = 7;
    spec.seats = seats;
    spec.row_count = 2;
    spec.row_labels = rows;
    spec.category_count = 2;
    snprintf(spec.category_names[0], ENGINE_NAME_MAX, "stalls");
    snprintf(spec.category_names[1], ENGINE_NAME_MAX, "circle");
    spec.best_row = 1;
    engine_problem p = {0};
    int rc = engine_layout_create(e, T0, 3, &spec, &p, rec);
    cr_assert_eq(rc, 0, "layout_create: %d (%s)", rc, p.reason ? p.reason : "-");
    cr_assert_eq(rec->type, ENGINE_REC_LAYOUT_CREATE);
    return e;
}

/* One hand-built record of every small type, with fields at awkward values. */
enum { SAMPLE_COUNT = 21 };

static void samples(engine_record out[SAMPLE_COUNT])
{
    memset(out, 0, SAMPLE_COUNT * sizeof *out);
    int n = 0;
    engine_record *r;

    r = &out[n++];
    r->type = ENGINE_REC_LAYOUT_DELETE;
    r->time_ms = T0 + 1;
    r->u.layout_delete.layout_id = UINT64_C(0x0102030405060708);

    r = &out[n++];
    r->type = ENGINE_REC_SHOWTIME_CREATE;
    r->time_ms = T0 + 2;
    r->u.showtime_create.showtime_id = UINT64_MAX - 1;
    r->u.showtime_create.layout_id = 77;
    r->u.showtime_create.start_ms = INT64_C(1800000000000);
    r->u.showtime_create.price_count = ENGINE_CATEGORIES_MAX;
    for (uint32_t i = 0; i < ENGINE_CATEGORIES_MAX; i++) {
        r->u.showtime_create.prices[i] = i == 0 ? 0 : i == 1 ? UINT32_MAX : 1000 * i + 7;
    }

    r = &out[n++];
    r->type = ENGINE_REC_SHOWTIME_CREATE;
    r->time_ms = T0 + 3;
    r->u.showtime_create.showtime_id = 5;
    r->u.showtime_create.layout_id = 6;
    r->u.showtime_create.start_ms = 0;
    r->u.showtime_create.price_count = 1;
    r->u.showtime_create.prices[0] = 250;

    r = &out[n++];
    r->type = ENGINE_REC_SHOWTIME_DELETE;
    r->time_ms = T0 + 4;
    r->u.showtime_delete.showtime_id = UINT64_C(0xfedcba9876543210);

    r = &out[n++];
    r->type = ENGINE_REC_HOLD_PLACE;
    r->time_ms = T0 + 5;
    r->u.hold_place.hold_id = (UINT64_C(0xBEEF) << 48) | 12345;
    r->u.hold_place.showtime_id = 10;
    r->u.hold_place.user_id = UINT64_MAX;
    r->u.hold_place.expires_ms = T0 + 5 + 300000;
    r->u.hold_place.amount = UINT64_C(16) * UINT32_MAX;
    r->u.hold_place.seat_count = ENGINE_HOLD_SEATS_MAX;
    for (uint32_t i = 0; i < ENGINE_HOLD_SEATS_MAX; i++) {
        r->u.hold_place.seats[i] = i == 0 ? 99999 : i * 3;
    }

    r = &out[n++];
    r->type = ENGINE_REC_HOLD_PLACE;
    r->time_ms = T0 + 6;
    r->u.hold_place.hold_id = 1;
    r->u.hold_place.showtime_id = 10;
    r->u.hold_place.user_id = 42;
    r->u.hold_place.expires_ms = T0 + 6 + 300000;
    r->u.hold_place.amount = 1500;
    r->u.hold_place.seat_count = 1;
    r->u.hold_place.seats[0] = 0;

    r = &out[n++];
    r->type = ENGINE_REC_HOLD_EXTEND;
    r->time_ms = T0 + 7;
    r->u.hold_extend.hold_id = 99;
    r->u.hold_extend.expires_ms = INT64_MAX;

    r = &out[n++];
    r->type = ENGINE_REC_HOLD_RELEASE;
    r->time_ms = T0 + 8;
    r->u.hold_end.hold_id = 0x1234;

    r = &out[n++];
    r->type = ENGINE_REC_HOLD_EXPIRE;
    r->time_ms = T0 + 8;
    r->u.hold_end.hold_id = 0x1234;

    r = &out[n++];
    r->type = ENGINE_REC_BOOKING_CONFIRM;
    r->time_ms = T0 + 9;
    r->u.booking_confirm.booking_id = (UINT64_C(7) << 48) | 1;
    r->u.booking_confirm.hold_id = (UINT64_C(7) << 48) | 2;
    r->u.booking_confirm.payment = ENGINE_PAY_WALLET;
    r->u.booking_confirm.idem_key_len = ENGINE_IDEM_KEY_MAX;
    for (int i = 0; i < ENGINE_IDEM_KEY_MAX; i++) {
        r->u.booking_confirm.idem_key[i] = (char)('!' + i);
    }

    r = &out[n++];
    r->type = ENGINE_REC_BOOKING_CONFIRM;
    r->time_ms = T0 + 10;
    r->u.booking_confirm.booking_id = 2;
    r->u.booking_confirm.hold_id = 3;
    r->u.booking_confirm.payment = ENGINE_PAY_UPI;
    r->u.booking_confirm.idem_key_len = 0;

    r = &out[n++];
    r->type = ENGINE_REC_BOOKING_CANCEL;
    r->time_ms = T0 + 11;
    r->u.booking_cancel.booking_id = 2;
    r->u.booking_cancel.refund = UINT64_C(0x00ff00ff00ff00ff);

    r = &out[n++];
    r->type = ENGINE_REC_SHOWTIME_PRICE;
    r->time_ms = T0 + 12;
    r->u.showtime_price.showtime_id = 10;
    r->u.showtime_price.price_count = ENGINE_CATEGORIES_MAX;
    for (uint32_t i = 0; i < ENGINE_CATEGORIES_MAX; i++)
        r->u.showtime_price.prices[i] = UINT32_MAX - i;

    r = &out[n++];
    r->type = ENGINE_REC_WAITLIST_JOIN;
    r->time_ms = T0 + 13;
    r->u.waitlist_join.showtime_id = UINT64_MAX;
    r->u.waitlist_join.user_id = 77;
    r->u.waitlist_join.count = ENGINE_HOLD_SEATS_MAX;
    r->u.waitlist_join.category = ENGINE_CATEGORY_ANY;

    r = &out[n++];
    r->type = ENGINE_REC_WAITLIST_LEAVE;
    r->time_ms = T0 + 14;
    r->u.onsale_user.showtime_id = 10;
    r->u.onsale_user.user_id = UINT64_MAX - 1;

    r = &out[n++];
    r->type = ENGINE_REC_WAITLIST_OFFER;
    r->time_ms = T0 + 15;
    r->u.hold_place.hold_id = 9;
    r->u.hold_place.showtime_id = 10;
    r->u.hold_place.user_id = 77;
    r->u.hold_place.expires_ms = T0 + 15 + 600000;
    r->u.hold_place.amount = 3000;
    r->u.hold_place.seat_count = 2;
    r->u.hold_place.seats[0] = 5;
    r->u.hold_place.seats[1] = 4;

    r = &out[n++];
    r->type = ENGINE_REC_QUEUE_SET;
    r->time_ms = T0 + 16;
    r->u.queue_set.showtime_id = 10;
    r->u.queue_set.rate_per_s = UINT32_MAX;
    r->u.queue_set.start_ms = INT64_MIN;

    r = &out[n++];
    r->type = ENGINE_REC_QUEUE_JOIN;
    r->time_ms = T0 + 17;
    r->u.onsale_user.showtime_id = 11;
    r->u.onsale_user.user_id = 78;

    r = &out[n++];
    r->type = ENGINE_REC_QUEUE_LEAVE;
    r->time_ms = T0 + 18;
    r->u.onsale_user.showtime_id = 12;
    r->u.onsale_user.user_id = 79;

    r = &out[n++];
    r->type = ENGINE_REC_QUEUE_START;
    r->time_ms = T0 + 19;
    r->u.queue_start.showtime_id = 10;
    r->u.queue_start.seed = UINT64_C(0x0123456789abcdef);

    r = &out[n++];
    r->type = ENGINE_REC_QUEUE_ADMIT;
    r->time_ms = T0 + 20;
    r->u.queue_admit.showtime_id = 10;
    r->u.queue_admit.cursor = UINT32_MAX;
    r->u.queue_admit.credit_milli = UINT64_MAX;

    cr_assert_eq(n, SAMPLE_COUNT);
}

/* Field-by-field equality of two records. */
static void assert_rec_eq(const engine_record *a, const engine_record *b)
{
    const char *name = engine_record_type_name(a->type);
    cr_assert_eq(a->type, b->type, "type %d vs %d", (int)a->type, (int)b->type);
    cr_assert_eq(a->time_ms, b->time_ms, "%s: time_ms", name);
    switch (a->type) {
    case ENGINE_REC_LAYOUT_CREATE:
        cr_assert_eq(a->u.layout_create.layout_id, b->u.layout_create.layout_id);
        cr_assert_eq(a->u.layout_create.blob_len, b->u.layout_create.blob_len);
        cr_assert_arr_eq(a->u.layout_create.blob, b->u.layout_create.blob,
                         a->u.layout_create.blob_len);
        break;
    case ENGINE_REC_LAYOUT_DELETE:
        cr_assert_eq(a->u.layout_delete.layout_id, b->u.layout_delete.layout_id);
        break;
    case ENGINE_REC_SHOWTIME_CREATE:
        cr_assert_eq(a->u.showtime_create.showtime_id, b->u.showtime_create.showtime_id);
        cr_assert_eq(a->u.showtime_create.layout_id, b->u.showtime_create.layout_id);
        cr_assert_eq(a->u.showtime_create.start_ms, b->u.showtime_create.start_ms);
        cr_assert_eq(a->u.showtime_create.price_count, b->u.showtime_create.price_count);
        for (uint32_t i = 0; i < a->u.showtime_create.price_count; i++) {
            cr_assert_eq(a->u.showtime_create.prices[i], b->u.showtime_create.prices[i], "price %u",
                         i);
        }
        break;
    case ENGINE_REC_SHOWTIME_DELETE:
        cr_assert_eq(a->u.showtime_delete.showtime_id, b->u.showtime_delete.showtime_id);
        break;
    case ENGINE_REC_HOLD_PLACE:
    case ENGINE_REC_WAITLIST_OFFER:
        cr_assert_eq(a->u.hold_place.hold_id, b->u.hold_place.hold_id);
        cr_assert_eq(a->u.hold_place.showtime_id, b->u.hold_place.showtime_id);
        cr_assert_eq(a->u.hold_place.user_id, b->u.hold_place.user_id);
        cr_assert_eq(a->u.hold_place.expires_ms, b->u.hold_place.expires_ms);
        cr_assert_eq(a->u.hold_place.amount, b->u.hold_place.amount);
        cr_assert_eq(a->u.hold_place.seat_count, b->u.hold_place.seat_count);
        for (uint32_t i = 0; i < a->u.hold_place.seat_count; i++) {
            cr_assert_eq(a->u.hold_place.seats[i], b->u.hold_place.seats[i], "seat %u", i);
        }
        break;
    case ENGINE_REC_HOLD_EXTEND:
        cr_assert_eq(a->u.hold_extend.hold_id, b->u.hold_extend.hold_id);
        cr_assert_eq(a->u.hold_extend.expires_ms, b->u.hold_extend.expires_ms);
        break;
    case ENGINE_REC_HOLD_RELEASE:
    case ENGINE_REC_HOLD_EXPIRE:
        cr_assert_eq(a->u.hold_end.hold_id, b->u.hold_end.hold_id);
        break;
    case ENGINE_REC_BOOKING_CONFIRM:
        cr_assert_eq(a->u.booking_confirm.booking_id, b->u.booking_confirm.booking_id);
        cr_assert_eq(a->u.booking_confirm.hold_id, b->u.booking_confirm.hold_id);
        cr_assert_eq(a->u.booking_confirm.payment, b->u.booking_confirm.payment);
        cr_assert_eq(a->u.booking_confirm.idem_key_len, b->u.booking_confirm.idem_key_len);
        cr_assert_leq(a->u.booking_confirm.idem_key_len, ENGINE_IDEM_KEY_MAX);
        cr_assert_arr_eq(a->u.booking_confirm.idem_key, b->u.booking_confirm.idem_key,
                         a->u.booking_confirm.idem_key_len);
        break;
    case ENGINE_REC_BOOKING_CANCEL:
        cr_assert_eq(a->u.booking_cancel.booking_id, b->u.booking_cancel.booking_id);
        cr_assert_eq(a->u.booking_cancel.refund, b->u.booking_cancel.refund);
        break;
    case ENGINE_REC_SHOWTIME_PRICE:
        cr_assert_eq(a->u.showtime_price.showtime_id, b->u.showtime_price.showtime_id);
        cr_assert_eq(a->u.showtime_price.price_count, b->u.showtime_price.price_count);
        for (uint32_t i = 0; i < a->u.showtime_price.price_count; i++)
            cr_assert_eq(a->u.showtime_price.prices[i], b->u.showtime_price.prices[i]);
        break;
    case ENGINE_REC_WAITLIST_JOIN:
        cr_assert_eq(a->u.waitlist_join.showtime_id, b->u.waitlist_join.showtime_id);
        cr_assert_eq(a->u.waitlist_join.user_id, b->u.waitlist_join.user_id);
        cr_assert_eq(a->u.waitlist_join.count, b->u.waitlist_join.count);
        cr_assert_eq(a->u.waitlist_join.category, b->u.waitlist_join.category);
        break;
    case ENGINE_REC_WAITLIST_LEAVE:
    case ENGINE_REC_QUEUE_JOIN:
    case ENGINE_REC_QUEUE_LEAVE:
        cr_assert_eq(a->u.onsale_user.showtime_id, b->u.onsale_user.showtime_id);
        cr_assert_eq(a->u.onsale_user.user_id, b->u.onsale_user.user_id);
        break;
    case ENGINE_REC_QUEUE_SET:
        cr_assert_eq(a->u.queue_set.showtime_id, b->u.queue_set.showtime_id);
        cr_assert_eq(a->u.queue_set.rate_per_s, b->u.queue_set.rate_per_s);
        cr_assert_eq(a->u.queue_set.start_ms, b->u.queue_set.start_ms);
        break;
    case ENGINE_REC_QUEUE_START:
        cr_assert_eq(a->u.queue_start.showtime_id, b->u.queue_start.showtime_id);
        cr_assert_eq(a->u.queue_start.seed, b->u.queue_start.seed);
        break;
    case ENGINE_REC_QUEUE_ADMIT:
        cr_assert_eq(a->u.queue_admit.showtime_id, b->u.queue_admit.showtime_id);
        cr_assert_eq(a->u.queue_admit.cursor, b->u.queue_admit.cursor);
        cr_assert_eq(a->u.queue_admit.credit_milli, b->u.queue_admit.credit_milli);
        break;
    default:
        cr_assert_fail("unexpected record type %d", (int)a->type);
    }
}

static bool valid_type(int t)
{
    return t >= ENGINE_REC_LAYOUT_CREATE && t <= ENGINE_REC_QUEUE_ADMIT;
}

/* ---- Round trips ---------------------------------------------------------- */

Test(engine_record, every_small_record_round_trips_field_by_field)
{
    engine_record in[SAMPLE_COUNT];
    samples(in);
    bool seen[ENGINE_REC_QUEUE_ADMIT + 1] = {false};
    for (int i = 0; i < SAMPLE_COUNT; i++) {
        const char *name = engine_record_type_name(in[i].type);
        uint8_t buf[ENGINE_RECORD_SMALL_MAX];
        int n = engine_record_encode(&in[i], buf, sizeof buf);
        cr_assert_gt(n, 0, "encode %s: %d", name, n);
        cr_assert_leq(n, ENGINE_RECORD_SMALL_MAX);
        engine_record out;
        memset(&out, 0x5a, sizeof out);
        cr_assert_eq(decode_exact(buf, (size_t)n, &out), 0, "decode %s", name);
        assert_rec_eq(&in[i], &out);
        /* Encoding the decoded record gives the same bytes. */
        uint8_t again[ENGINE_RECORD_SMALL_MAX];
        cr_assert_eq(engine_record_encode(&out, again, sizeof again), n, "%s", name);
        cr_assert_arr_eq(again, buf, (size_t)n, "%s re-encodes differently", name);
        seen[in[i].type] = true;
    }
    for (int t = ENGINE_REC_LAYOUT_DELETE; t <= ENGINE_REC_QUEUE_ADMIT; t++) {
        cr_assert(seen[t], "no sample of type %d", t);
    }
}

Test(engine_record, encoding_is_deterministic_and_distinguishes_types)
{
    engine_record in[SAMPLE_COUNT];
    samples(in);
    uint8_t a[ENGINE_RECORD_SMALL_MAX], b[ENGINE_RECORD_SMALL_MAX];
    for (int i = 0; i < SAMPLE_COUNT; i++) {
        int na = engine_record_encode(&in[i], a, sizeof a);
        int nb = engine_record_encode(&in[i], b, sizeof b);
        cr_assert_eq(na, nb);
        cr_assert_arr_eq(a, b, (size_t)na);
    }
    /* HOLD_RELEASE and HOLD_EXPIRE share a payload but not an encoding. */
    int nr = engine_record_encode(&in[7], a, sizeof a);
    int ne = engine_record_encode(&in[8], b, sizeof b);
    cr_assert_eq(in[7].type, ENGINE_REC_HOLD_RELEASE);
    cr_assert_eq(in[8].type, ENGINE_REC_HOLD_EXPIRE);
    cr_assert(nr != ne || memcmp(a, b, (size_t)nr) != 0);
    engine_record out;
    cr_assert_eq(decode_exact(b, (size_t)ne, &out), 0);
    cr_assert_eq(out.type, ENGINE_REC_HOLD_EXPIRE);
}

Test(engine_record, layout_create_round_trips_and_borrows_the_buffer)
{
    engine_record rec;
    engine *e = layout_engine(&rec);
    cr_assert_not_null(rec.u.layout_create.blob);
    cr_assert_gt(rec.u.layout_create.blob_len, 0);
    cr_assert_eq(rec.u.layout_create.layout_id, 3);
    cr_assert_eq(rec.time_ms, T0);

    uint8_t *buf = malloc(BIG);
    cr_assert_not_null(buf);
    int n = engine_record_encode(&rec, buf, BIG);
    cr_assert_gt(n, 0, "encode: %d", n);
    cr_assert_geq((size_t)n, rec.u.layout_create.blob_len);
    uint8_t *exact = exact_copy(buf, (size_t)n);
    engine_record out;
    memset(&out, 0, sizeof out);
    cr_assert_eq(engine_record_decode(exact, (size_t)n, &out), 0);
    assert_rec_eq(&rec, &out);
    cr_assert(out.u.layout_create.blob >= exact &&
                  out.u.layout_create.blob + out.u.layout_create.blob_len <= exact + n,
              "the decoded blob points into the buffer");

    uint8_t *again = malloc(BIG);
    cr_assert_not_null(again);
    cr_assert_eq(engine_record_encode(&out, again, BIG), n);
    cr_assert_arr_eq(again, buf, (size_t)n);

    /* Applied on a fresh engine, the decoded record rebuilds the same layout. */
    engine *f = NULL;
    cr_assert_eq(engine_create(engine_config_get(e), &f), 0);
    cr_assert_eq(engine_record_apply(f, &out), 0);
    cr_assert_eq(engine_digest(f), engine_digest(e));
    cr_assert_eq(engine_layout_seat_count(f, 3), 7);
    cr_assert_eq(engine_layout_seat_find(f, 3, "A5"), 3);
    cr_assert_eq(engine_layout_seat(f, 3, 6)->flags, ENGINE_SEAT_FLAG_BLOCKED);
    cr_assert_str_eq(engine_layout_category_name(f, 3, 1), "circle");
    cr_assert_str_eq(engine_layout_row_label(f, 3, 1), "B");
    cr_assert_eq(engine_check(f), 0);
    /* The layout was copied: the buffer may go. */
    memset(exact, 0, (size_t)n);
    free(exact);
    cr_assert_eq(engine_layout_seat_find(f, 3, "B2"), 5);
    cr_assert_eq(engine_digest(f), engine_digest(e));

    free(again);
    free(buf);
    engine_destroy(f);
    engine_destroy(e);
}

/* ---- Encode errors -------------------------------------------------------- */

Test(engine_record, encode_reports_a_small_buffer)
{
    engine_record in[SAMPLE_COUNT];
    samples(in);
    uint8_t buf[ENGINE_RECORD_SMALL_MAX];
    for (int i = 0; i < SAMPLE_COUNT; i++) {
        int n = engine_record_encode(&in[i], buf, sizeof buf);
        cr_assert_gt(n, 0);
        for (int cap = 0; cap < n; cap++) {
            uint8_t *small = malloc((size_t)cap + 1);
            cr_assert_not_null(small);
            cr_assert_eq(engine_record_encode(&in[i], small, (size_t)cap), ENGINE_EBUFSIZE,
                         "%s with cap %d of %d", engine_record_type_name(in[i].type), cap, n);
            free(small);
        }
        cr_assert_eq(engine_record_encode(&in[i], buf, (size_t)n), n);
    }

    engine_record rec;
    engine *e = layout_engine(&rec);
    uint8_t *big = malloc(BIG);
    cr_assert_not_null(big);
    int n = engine_record_encode(&rec, big, BIG);
    cr_assert_gt(n, 0);
    cr_assert_eq(engine_record_encode(&rec, big, (size_t)n - 1), ENGINE_EBUFSIZE);
    cr_assert_eq(engine_record_encode(&rec, big, (size_t)n / 2), ENGINE_EBUFSIZE);
    cr_assert_eq(engine_record_encode(&rec, big, 0), ENGINE_EBUFSIZE);
    cr_assert_eq(engine_record_encode(&rec, big, (size_t)n), n);
    free(big);
    engine_destroy(e);
}

Test(engine_record, encode_rejects_records_that_cannot_be_encoded)
{
    engine_record in[SAMPLE_COUNT];
    samples(in);
    uint8_t buf[ENGINE_RECORD_SMALL_MAX];
    engine_record r = in[0];
    r.type = (engine_record_type)0;
    cr_assert_eq(engine_record_encode(&r, buf, sizeof buf), ENGINE_EINVAL);
    r.type = (engine_record_type)(ENGINE_REC_QUEUE_ADMIT + 1);
    cr_assert_eq(engine_record_encode(&r, buf, sizeof buf), ENGINE_EINVAL);
    r.type = (engine_record_type)255;
    cr_assert_eq(engine_record_encode(&r, buf, sizeof buf), ENGINE_EINVAL);

    r = in[4]; /* HOLD_PLACE, 16 seats */
    r.u.hold_place.seat_count = ENGINE_HOLD_SEATS_MAX + 1;
    cr_assert_eq(engine_record_encode(&r, buf, sizeof buf), ENGINE_EINVAL);
    r.u.hold_place.seat_count = UINT32_MAX;
    cr_assert_eq(engine_record_encode(&r, buf, sizeof buf), ENGINE_EINVAL);
    r = in[1]; /* SHOWTIME_CREATE, 8 prices */
    r.u.showtime_create.price_count = ENGINE_CATEGORIES_MAX + 1;
    cr_assert_eq(engine_record_encode(&r, buf, sizeof buf), ENGINE_EINVAL);
    r = in[9]; /* BOOKING_CONFIRM, 64-byte key */
    r.u.booking_confirm.idem_key_len = ENGINE_IDEM_KEY_MAX + 1;
    cr_assert_eq(engine_record_encode(&r, buf, sizeof buf), ENGINE_EINVAL);
}

/* ---- Decode errors -------------------------------------------------------- */

Test(engine_record, decode_rejects_every_truncation)
{
    engine_record in[SAMPLE_COUNT];
    samples(in);
    for (int i = 0; i < SAMPLE_COUNT; i++) {
        uint8_t buf[ENGINE_RECORD_SMALL_MAX];
        int n = engine_record_encode(&in[i], buf, sizeof buf);
        cr_assert_gt(n, 0);
        for (int len = 0; len < n; len++) {
            engine_record out;
            cr_assert_eq(decode_exact(buf, (size_t)len, &out), ENGINE_EDECODE,
                         "%s truncated to %d of %d bytes decoded",
                         engine_record_type_name(in[i].type), len, n);
        }
    }

    engine_record rec;
    engine *e = layout_engine(&rec);
    uint8_t *big = malloc(BIG);
    cr_assert_not_null(big);
    int n = engine_record_encode(&rec, big, BIG);
    cr_assert_gt(n, 0);
    for (int len = 0; len < n; len++) {
        engine_record out;
        cr_assert_eq(decode_exact(big, (size_t)len, &out), ENGINE_EDECODE,
                     "layout_create truncated to %d of %d bytes decoded", len, n);
    }
    free(big);
    engine_destroy(e);
}

Test(engine_record, decode_rejects_trailing_bytes)
{
    engine_record in[SAMPLE_COUNT];
    samples(in);
    for (int i = 0; i < SAMPLE_COUNT; i++) {
        uint8_t buf[ENGINE_RECORD_SMALL_MAX + 32];
        int n = engine_record_encode(&in[i], buf, ENGINE_RECORD_SMALL_MAX);
        cr_assert_gt(n, 0);
        for (int extra = 1; extra <= 17; extra += 8) {
            memset(buf + n, extra == 1 ? 0 : 0xab, (size_t)extra);
            engine_record out;
            cr_assert_eq(decode_exact(buf, (size_t)n + (size_t)extra, &out), ENGINE_EDECODE,
                         "%s with %d trailing bytes decoded", engine_record_type_name(in[i].type),
                         extra);
        }
    }

    engine_record rec;
    engine *e = layout_engine(&rec);
    uint8_t *big = malloc(BIG);
    cr_assert_not_null(big);
    int n = engine_record_encode(&rec, big, BIG - 1);
    cr_assert_gt(n, 0);
    big[n] = 0;
    engine_record out;
    cr_assert_eq(decode_exact(big, (size_t)n + 1, &out), ENGINE_EDECODE);
    free(big);
    engine_destroy(e);
}

Test(engine_record, decode_rejects_an_unknown_type)
{
    /* Locate the type: release (7) and expire (8) differ only there. */
    engine_record in[SAMPLE_COUNT];
    samples(in);
    uint8_t rel[ENGINE_RECORD_SMALL_MAX], expi[ENGINE_RECORD_SMALL_MAX];
    int nr = engine_record_encode(&in[7], rel, sizeof rel);
    int ne = engine_record_encode(&in[8], expi, sizeof expi);
    cr_assert_eq(nr, ne);
    int at = -1;
    for (int i = 0; i < nr; i++) {
        if (rel[i] == ENGINE_REC_HOLD_RELEASE && expi[i] == ENGINE_REC_HOLD_EXPIRE) {
            at = i;
            break;
        }
    }
    cr_assert_geq(at, 0, "no byte holds the record type");
    const uint8_t bad[] = {0, ENGINE_REC_QUEUE_ADMIT + 1, 21, 0x7f, 0x80, 0xff};
    for (size_t k = 0; k < sizeof bad; k++) {
        uint8_t buf[ENGINE_RECORD_SMALL_MAX];
        memcpy(buf, rel, (size_t)nr);
        buf[at] = bad[k];
        engine_record out;
        cr_assert_eq(decode_exact(buf, (size_t)nr, &out), ENGINE_EDECODE, "type byte %u decoded",
                     bad[k]);
    }
    /* Every valid type byte on this payload decodes to that type, or is refused. */
    for (int t = 0; t < 256; t++) {
        uint8_t buf[ENGINE_RECORD_SMALL_MAX];
        memcpy(buf, rel, (size_t)nr);
        buf[at] = (uint8_t)t;
        engine_record out;
        int rc = decode_exact(buf, (size_t)nr, &out);
        cr_assert(rc == 0 || rc == ENGINE_EDECODE);
        if (rc == 0) {
            cr_assert(valid_type(t), "type byte %d decoded", t);
            cr_assert_eq((int)out.type, t);
        }
    }
}

Test(engine_record, decode_rejects_bad_field_values)
{
    /* A payment method outside 1..3 cannot be journalled. */
    engine_record in[SAMPLE_COUNT];
    samples(in);
    uint8_t upi[ENGINE_RECORD_SMALL_MAX], card[ENGINE_RECORD_SMALL_MAX];
    engine_record r = in[10];
    int nu = engine_record_encode(&r, upi, sizeof upi);
    r.u.booking_confirm.payment = ENGINE_PAY_CARD;
    int nc = engine_record_encode(&r, card, sizeof card);
    cr_assert_eq(nu, nc);
    int at = -1;
    for (int i = 0; i < nu; i++) {
        if (upi[i] == ENGINE_PAY_UPI && card[i] == ENGINE_PAY_CARD) {
            at = i;
        }
    }
    cr_assert_geq(at, 0, "no byte holds the payment");
    const uint8_t bad[] = {0, 4, 0xff};
    for (size_t k = 0; k < sizeof bad; k++) {
        upi[at] = bad[k];
        engine_record out;
        cr_assert_eq(decode_exact(upi, (size_t)nu, &out), ENGINE_EDECODE, "payment byte %u decoded",
                     bad[k]);
    }
}

/* ---- Fuzz ----------------------------------------------------------------- */

/* Decodes `len` fuzz bytes; whatever decodes must be a sane, re-encodable record. */
static int fuzz_decode(const uint8_t *bytes, size_t len, engine_record *out, uint8_t **keep)
{
    uint8_t *p = exact_copy(bytes, len);
    int rc = engine_record_decode(p, len, out);
    cr_assert(rc == 0 || rc == ENGINE_EDECODE, "decode returned %d", rc);
    if (rc != 0) {
        free(p);
        *keep = NULL;
        return rc;
    }
    cr_assert(valid_type((int)out->type), "decoded type %d", (int)out->type);
    switch (out->type) {
    case ENGINE_REC_SHOWTIME_CREATE:
        cr_assert_leq(out->u.showtime_create.price_count, ENGINE_CATEGORIES_MAX);
        break;
    case ENGINE_REC_HOLD_PLACE:
        cr_assert_leq(out->u.hold_place.seat_count, ENGINE_HOLD_SEATS_MAX);
        break;
    case ENGINE_REC_BOOKING_CONFIRM:
        cr_assert_leq(out->u.booking_confirm.idem_key_len, ENGINE_IDEM_KEY_MAX);
        break;
    case ENGINE_REC_LAYOUT_CREATE:
        cr_assert(out->u.layout_create.blob_len == 0 ||
                  (out->u.layout_create.blob >= p &&
                   out->u.layout_create.blob + out->u.layout_create.blob_len <= p + len));
        break;
    default:
        break;
    }
    uint8_t *re = malloc(BIG);
    cr_assert_not_null(re);
    int n = engine_record_encode(out, re, BIG);
    cr_assert_gt(n, 0, "a decoded %s does not re-encode: %d", engine_record_type_name(out->type),
                 n);
    if (out->type != ENGINE_REC_LAYOUT_CREATE) {
        cr_assert_leq(n, ENGINE_RECORD_SMALL_MAX);
    }
    uint8_t *re_exact = exact_copy(re, (size_t)n);
    engine_record again;
    cr_assert_eq(engine_record_decode(re_exact, (size_t)n, &again), 0);
    assert_rec_eq(out, &again);
    free(re_exact);
    free(re);
    *keep = p; /* a LAYOUT_CREATE record points into it */
    return 0;
}

static size_t mutate(uint8_t *buf, size_t len, size_t cap)
{
    int rounds = 1 + (int)(rnd() % 4);
    for (int k = 0; k < rounds; k++) {
        size_t pos = len ? (size_t)(rnd() % len) : 0;
        switch (rnd() % 8) {
        case 0:
        case 1:
            if (len) {
                buf[pos] ^= (uint8_t)(1u << (rnd() % 8));
            }
            break;
        case 2:
            if (len) {
                buf[pos] = (uint8_t)rnd();
            }
            break;
        case 3:
            if (len) {
                buf[pos] = (rnd() & 1) ? 0xff : 0x00;
            }
            break;
        case 4: /* insert a byte */
            if (len < cap) {
                memmove(buf + pos + 1, buf + pos, len - pos);
                buf[pos] = (uint8_t)rnd();
                len++;
            }
            break;
        case 5: /* delete a byte */
            if (len) {
                memmove(buf + pos, buf + pos + 1, len - pos - 1);
                len--;
            }
            break;
        case 6: /* truncate */
            len = len ? (size_t)(rnd() % len) : 0;
            break;
        default: /* overwrite a 4-byte word with an extreme value */
            if (len >= 4) {
                pos = (size_t)(rnd() % (len - 3));
                uint32_t v = (rnd() & 1) ? UINT32_MAX : 0x80000000u;
                memcpy(buf + pos, &v, 4);
            }
            break;
        }
    }
    return len;
}

Test(engine_record, decode_survives_random_bytes)
{
    engine_record in[SAMPLE_COUNT];
    samples(in);
    uint8_t prefix[SAMPLE_COUNT][ENGINE_RECORD_SMALL_MAX];
    int plen[SAMPLE_COUNT];
    for (int i = 0; i < SAMPLE_COUNT; i++) {
        plen[i] = engine_record_encode(&in[i], prefix[i], sizeof prefix[i]);
        cr_assert_gt(plen[i], 0);
    }
    uint8_t buf[512];
    int decoded = 0;
    for (int iter = 0; iter < 20000; iter++) {
        size_t len = (size_t)(rnd() % sizeof buf);
        for (size_t i = 0; i < len; i++) {
            buf[i] = (uint8_t)rnd();
        }
        if (iter % 2) {
            /* Keep a valid head so the body gets parsed too. */
            int s = (int)(rnd() % SAMPLE_COUNT);
            size_t keep = (size_t)(rnd() % ((size_t)plen[s] + 1));
            if (keep > len) {
                len = keep;
            }
            memcpy(buf, prefix[s], keep);
        }
        engine_record out;
        uint8_t *hold = NULL;
        if (fuzz_decode(buf, len, &out, &hold) == 0) {
            decoded++;
        }
        free(hold);
    }
    cr_log_info("random bytes: %d of 20000 decoded", decoded);
}

/* A real history: every encoded record, in order. */
typedef struct history {
    size_t n;
    uint8_t *bytes[32];
    size_t len[32];
    engine_config cfg;
} history;

static void hist_add(history *h, const engine_record *rec)
{
    cr_assert_lt(h->n, 32);
    uint8_t *buf = malloc(BIG);
    cr_assert_not_null(buf);
    int n = engine_record_encode(rec, buf, BIG);
    cr_assert_gt(n, 0);
    h->bytes[h->n] = exact_copy(buf, (size_t)n);
    h->len[h->n] = (size_t)n;
    h->n++;
    free(buf);
}

static void hist_build(history *h)
{
    engine_record rec;
    engine *e = layout_engine(&rec);
    h->cfg = *engine_config_get(e);
    hist_add(h, &rec);
    const uint32_t prices[2] = {900, 1700};
    cr_assert_eq(engine_showtime_create(e, T0 + 1, 10, 3, T0 + 86400000, prices, 2, &rec), 0);
    hist_add(h, &rec);
    uint32_t cc;
    cr_assert_eq(engine_hold_place(e, T0 + 2, 10, 1, (const uint32_t[]){1, 2}, 2, NULL, &cc, &rec),
                 ENGINE_OK);
    hist_add(h, &rec);
    uint64_t h1 = rec.u.hold_place.hold_id;
    cr_assert_eq(engine_hold_best(e, T0 + 3, 10, 2, 2, 1, 0, &rec), ENGINE_OK);
    hist_add(h, &rec);
    uint64_t h2 = rec.u.hold_place.hold_id;
    cr_assert_eq(engine_hold_extend(e, T0 + 4, h1, 1, &rec), ENGINE_OK);
    hist_add(h, &rec);
    uint64_t b1 = 0, refund = 0;
    bool replayed;
    cr_assert_eq(
        engine_booking_confirm(e, T0 + 5, h1, 1, ENGINE_PAY_CARD, "key-1", 5, &b1, &replayed, &rec),
        ENGINE_OK);
    hist_add(h, &rec);
    cr_assert_eq(engine_hold_release(e, T0 + 6, h2, 2, &rec), ENGINE_OK);
    hist_add(h, &rec);
    cr_assert_eq(engine_hold_place(e, T0 + 7, 10, 3, (const uint32_t[]){3}, 1, NULL, &cc, &rec),
                 ENGINE_OK);
    hist_add(h, &rec);
    engine_record recs[2];
    cr_assert_eq(engine_holds_expire(e, T0 + 7 + 300000, recs, NULL, 2), 1);
    hist_add(h, &recs[0]);
    cr_assert_eq(engine_booking_cancel(e, T0 + 8 + 300000, b1, 1, &refund, &rec), ENGINE_OK);
    hist_add(h, &rec);
    cr_assert_eq(
        engine_hold_place(e, T0 + 9 + 300000, 10, 4, (const uint32_t[]){1}, 1, NULL, &cc, &rec),
        ENGINE_OK);
    hist_add(h, &rec);
    cr_assert_eq(engine_showtime_create(e, T0 + 10 + 300000, 11, 3, T0 + 86400000, prices, 2, &rec),
                 0);
    hist_add(h, &rec);
    cr_assert_eq(engine_showtime_delete(e, T0 + 11 + 300000, 11, &rec), ENGINE_OK);
    hist_add(h, &rec);
    engine_destroy(e);
}

static engine *hist_replay(const history *h, size_t upto)
{
    engine *e = NULL;
    cr_assert_eq(engine_create(&h->cfg, &e), 0);
    for (size_t i = 0; i < upto; i++) {
        engine_record rec;
        cr_assert_eq(engine_record_decode(h->bytes[i], h->len[i], &rec), 0);
        cr_assert_eq(engine_record_apply(e, &rec), 0, "history record %zu", i);
    }
    return e;
}

Test(engine_record, decode_and_apply_survive_mutated_records)
{
    history h = {0};
    hist_build(&h);
    uint8_t *buf = malloc(BIG);
    cr_assert_not_null(buf);
    int decoded = 0, applied = 0;
    for (size_t i = 0; i < h.n; i++) {
        engine *e = hist_replay(&h, i);
        for (int iter = 0; iter < 2500; iter++) {
            memcpy(buf, h.bytes[i], h.len[i]);
            size_t len = mutate(buf, h.len[i], h.len[i] + 64);
            engine_record rec;
            uint8_t *keep = NULL;
            if (fuzz_decode(buf, len, &rec, &keep) != 0) {
                continue;
            }
            decoded++;
            uint64_t d = engine_digest(e);
            int64_t now = engine_now_ms(e);
            int rc = engine_record_apply(e, &rec);
            free(keep);
            cr_assert(rc == 0 || rc == ENGINE_EREPLAY || rc == ENGINE_ENOMEM,
                      "apply of a mutated %s returned %d", engine_record_type_name(rec.type), rc);
            if (rc != 0) {
                cr_assert_eq(engine_digest(e), d, "a refused %s changed the state",
                             engine_record_type_name(rec.type));
                cr_assert_eq(engine_now_ms(e), now);
            } else {
                applied++;
                cr_assert_eq(engine_check(e), 0);
                engine_destroy(e);
                e = hist_replay(&h, i);
            }
        }
        cr_assert_eq(engine_check(e), 0);
        engine_destroy(e);
    }
    free(buf);
    for (size_t i = 0; i < h.n; i++) {
        free(h.bytes[i]);
    }
    cr_log_info("mutated records: %d decoded, %d applied", decoded, applied);
}

Test(engine_record, apply_refuses_hand_built_records_on_an_empty_engine)
{
    engine_config cfg;
    engine_config_default(&cfg);
    cfg.holds_max = 16;
    cfg.bookings_max = 64;
    cfg.showtimes_max = 4;
    cfg.layouts_max = 4;
    engine *e = NULL;
    cr_assert_eq(engine_create(&cfg, &e), 0);
    engine_record in[SAMPLE_COUNT];
    samples(in);
    uint64_t d = engine_digest(e);
    for (int i = 0; i < SAMPLE_COUNT; i++) {
        cr_assert_eq(engine_record_apply(e, &in[i]), ENGINE_EREPLAY, "%s applied to nothing",
                     engine_record_type_name(in[i].type));
        cr_assert_eq(engine_digest(e), d);
        cr_assert_eq(engine_now_ms(e), 0);
    }
    engine_record bad = in[0];
    bad.type = (engine_record_type)99;
    cr_assert_eq(engine_record_apply(e, &bad), ENGINE_EREPLAY);
    cr_assert_eq(engine_digest(e), d);
    cr_assert_eq(engine_check(e), 0);
    engine_destroy(e);
}

/* ---- Names ---------------------------------------------------------------- */

Test(engine_record, record_type_names_are_distinct_snake_case)
{
    const char *names[ENGINE_REC_QUEUE_ADMIT + 1] = {NULL};
    for (int t = ENGINE_REC_LAYOUT_CREATE; t <= ENGINE_REC_QUEUE_ADMIT; t++) {
        const char *n = engine_record_type_name((engine_record_type)t);
        cr_assert_not_null(n, "type %d", t);
        cr_assert(is_snake_case(n), "type %d: \"%s\" is not snake_case", t, n);
        cr_assert_str_neq(n, "unknown", "type %d", t);
        for (int u = ENGINE_REC_LAYOUT_CREATE; u < t; u++) {
            cr_assert_str_neq(n, names[u], "types %d and %d share \"%s\"", u, t, n);
        }
        names[t] = n;
    }
    cr_assert_str_eq(engine_record_type_name(ENGINE_REC_HOLD_PLACE), "hold_place");
    cr_assert_str_eq(engine_record_type_name((engine_record_type)0), "unknown");
    cr_assert_str_eq(engine_record_type_name((engine_record_type)20), "unknown");
    cr_assert_str_eq(engine_record_type_name((engine_record_type)-1), "unknown");
    cr_assert_str_eq(engine_record_type_name((engine_record_type)100000), "unknown");
}

Test(engine_record, result_names_are_distinct_snake_case)
{
    const char *names[ENGINE_RESULT_COUNT_] = {NULL};
    for (int r = 0; r < ENGINE_RESULT_COUNT_; r++) {
        const char *n = engine_result_name((engine_result)r);
        cr_assert_not_null(n, "result %d", r);
        cr_assert(is_snake_case(n), "result %d: \"%s\" is not snake_case", r, n);
        for (int u = 0; u < r; u++) {
            cr_assert_str_neq(n, names[u], "results %d and %d share \"%s\"", u, r, n);
        }
        names[r] = n;
    }
    cr_assert_str_eq(engine_result_name(ENGINE_SEAT_TAKEN), "seat_taken");
}

Test(engine_record, strerror_describes_every_error)
{
    const int errs[5] = {ENGINE_ENOMEM, ENGINE_EINVAL, ENGINE_EDECODE, ENGINE_EREPLAY,
                         ENGINE_EBUFSIZE};
    for (int i = 0; i < 5; i++) {
        const char *s = engine_strerror(errs[i]);
        cr_assert_not_null(s, "error %d", errs[i]);
        cr_assert_gt(strlen(s), 0, "error %d", errs[i]);
        for (int j = 0; j < i; j++) {
            cr_assert_str_neq(s, engine_strerror(errs[j]), "errors %d and %d share \"%s\"", errs[i],
                              errs[j], s);
        }
    }
    const int odd[4] = {-1, 0, 12345, -20004};
    for (int i = 0; i < 4; i++) {
        cr_assert_not_null(engine_strerror(odd[i]), "error %d", odd[i]);
    }
}
