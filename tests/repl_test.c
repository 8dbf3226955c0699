/*
 * repl_test.c - the replication event format (repl/repl.h, docs/replication.md),
 * the engine's item decoders, and snapshot_store_each.
 *
 * Every line an encoder writes is parsed back with jansson and compared, as a
 * whole object, with what docs/replication.md documents: one event per WAL
 * record type, catalog puts (a user's password hash stripped) and deletes,
 * heartbeat and error lines, and the snapshot lines of a real engine checked
 * against what the engine itself reports. Refused input must leave the buffer
 * as it was. Payloads sit in buffers of exactly their size so ASan sees any
 * over-read.
 */
#define _XOPEN_SOURCE 700 /* nftw */

#include "engine.h"
#include "repl.h"
#include "snapshot.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <ftw.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define SHARD  3u
#define LSN    UINT64_C(52)
#define T0     INT64_C(1795271400250) /* the time of every event */
#define T0_STR "2026-11-21T14:30:00.250Z"
#define HOUR   INT64_C(3600000)
#define START  (T0 + 5 * HOUR)           /* the world's showtimes */
#define HOLD1  ((UINT64_C(1) << 48) | 1) /* 281474976710657 */

/* ---- Helpers -------------------------------------------------------------------- */

static uint8_t *exact_copy(const void *src, size_t len)
{
    uint8_t *p = malloc(len ? len : 1);
    cr_assert_not_null(p);
    memcpy(p, src, len);
    return p;
}

/* The line of `b` from `from` on: exactly one '\n', at its end; a JSON object with v 1. */
static json_t *line_json(const repl_buf *b, size_t from)
{
    cr_assert_gt(b->len, from, "no line written");
    const char *s = b->p + from;
    int n = (int)(b->len - from);
    cr_assert_eq(s[n - 1], '\n', "line does not end in a newline: %.*s", n, s);
    cr_assert_null(memchr(s, '\n', (size_t)n - 1), "newline inside the line: %.*s", n, s);
    json_error_t err;
    json_t *o = json_loadb(s, (size_t)n - 1, JSON_REJECT_DUPLICATES, &err);
    cr_assert(json_is_object(o), "not a JSON object (%s): %.*s", err.text, n, s);
    const json_t *v = json_object_get(o, "v");
    cr_assert(json_is_integer(v) && json_integer_value(v) == 1, "v is not 1: %.*s", n, s);
    return o;
}

/* JSON written with single quotes (no quote inside a string), for readable expectations. */
static json_t *J(const char *text)
{
    char *s = strdup(text);
    for (char *p = s; *p; p++)
        *p = *p == '\'' ? '"' : *p;
    json_error_t err;
    json_t *o = json_loads(s, JSON_REJECT_DUPLICATES, &err);
    cr_assert_not_null(o, "bad expectation (%s): %s", err.text, s);
    free(s);
    return o;
}

/* got == want exactly (same members, same values); consumes `want`. */
static void expect_json(const json_t *got, json_t *want, const char *what)
{
    cr_assert_not_null(want, "%s: json_pack failed", what);
    if (!json_equal(got, want)) {
        char *g = json_dumps(got, JSON_COMPACT | JSON_SORT_KEYS);
        char *w = json_dumps(want, JSON_COMPACT | JSON_SORT_KEYS);
        cr_assert_fail("%s:\n   got %s\n  want %s", what, g, w);
    }
    json_decref(want);
}

static json_t *ints(const uint32_t *v, uint32_t n)
{
    json_t *a = json_array();
    for (uint32_t i = 0; i < n; i++)
        json_array_append_new(a, json_integer(v[i]));
    return a;
}

/* Encodes a WAL record as an event, checks the envelope, returns `data` (and the raw line). */
static json_t *event(uint16_t type, const uint8_t *payload, size_t len, const char *want_type,
                     char **raw)
{
    uint8_t *copy = exact_copy(payload, len);
    wal_record rec = {
        .lsn = LSN, .time_ms = T0, .type = type, .payload_len = (uint32_t)len, .payload = copy};
    repl_buf b = {0};
    int rc = repl_event_encode(&b, SHARD, &rec);
    cr_assert_eq(rc, 0, "%s: %s", want_type, repl_strerror(rc));
    json_t *o = line_json(&b, 0);
    json_t *data = json_incref(json_object_get(o, "data"));
    cr_assert(json_is_object(data), "%s: data is not an object", want_type);
    json_object_del(o, "data");
    expect_json(o,
                json_pack("{si sI sI ss ss}", "v", 1, "shard", (json_int_t)SHARD, "lsn",
                          (json_int_t)LSN, "ts", T0_STR, "type", want_type),
                want_type);
    if (raw != NULL)
        *raw = strndup(b.p, b.len);
    json_decref(o);
    repl_buf_free(&b);
    free(copy);
    return data;
}

static json_t *engine_event(const engine_record *r, const char *want_type)
{
    uint8_t buf[4096];
    int n = engine_record_encode(r, buf, sizeof(buf));
    cr_assert_gt(n, 0, "engine_record_encode: %d", n);
    return event((uint16_t)r->type, buf, (size_t)n, want_type, NULL);
}

static int catalog_payload(bool put, catalog_kind kind, uint64_t id, const char *json, uint8_t *buf,
                           size_t cap)
{
    catalog_change ch = {
        .put = put, .kind = kind, .id = id, .json = json, .json_len = json ? strlen(json) : 0};
    int n = catalog_change_encode(&ch, buf, cap);
    cr_assert_gt(n, 0);
    return n;
}

/* repl_event_encode must answer `want` and leave the buffer byte for byte as it was. */
static void expect_refused(repl_buf *b, uint16_t type, const uint8_t *payload, size_t len, int want)
{
    size_t len0 = b->len;
    char *before = strndup(b->p, b->len);
    uint8_t *copy = exact_copy(payload, len);
    wal_record rec = {
        .lsn = LSN, .time_ms = T0, .type = type, .payload_len = (uint32_t)len, .payload = copy};
    int rc = repl_event_encode(b, SHARD, &rec);
    cr_assert_eq(rc, want, "type %u, %zu bytes: %d (%s), want %d", type, len, rc, repl_strerror(rc),
                 want);
    cr_assert_eq(b->len, len0, "the buffer changed length on a refusal");
    cr_assert_eq(memcmp(b->p, before, len0), 0, "the buffer changed on a refusal");
    free(copy);
    free(before);
}

/* ---- A small engine: one layout, two showtimes, holds and bookings ---------------- */

static const char GOLD[] = "Gold \"Plus\" \\ x"; /* printable ASCII, JSON-special */
static const char *const LABELS[6] = {"A1", "A2", "A3", "B\"1", "B\\2", "B3"};
static const uint32_t PRICES[2] = {15000, 25000};

typedef struct world {
    engine *e;
    engine_record layout_rec; /* its blob lives in e */
    uint64_t h1, h2, h3, h4, b1, b2, refund;
} world;

static uint64_t hold(world *w, int64_t now, uint64_t st, uint64_t user, const uint32_t *seats,
                     uint32_t n)
{
    engine_record rec;
    engine_result r = engine_hold_place(w->e, now, st, user, seats, n, NULL, NULL, &rec);
    cr_assert_eq(r, ENGINE_OK, "hold: %s", engine_result_name(r));
    return rec.u.hold_place.hold_id;
}

static uint64_t confirm(world *w, int64_t now, uint64_t h, uint64_t user, engine_payment pay)
{
    engine_record rec;
    uint64_t bid = 0;
    bool replayed = false;
    engine_result r =
        engine_booking_confirm(w->e, now, h, user, pay, "k", 1, &bid, &replayed, &rec);
    cr_assert_eq(r, ENGINE_OK, "confirm: %s", engine_result_name(r));
    return bid;
}

/* Layout 8: rows A, B of 3 seats (LABELS), A in "silver", B in GOLD. Showtimes 45
 * and 44 start at START. On 45: h1 (A1, A2) confirmed as b1 (upi); h2 (B"1) live;
 * h3 (B\2, B3) confirmed as b2 (card), cancelled 5 h before the start (50 %).
 * On 44: h4 (A3) live. */
static void world_build(world *w)
{
    memset(w, 0, sizeof(*w));
    engine_config cfg;
    engine_config_default(&cfg);
    cr_assert_eq(engine_create(&cfg, &w->e), 0);
    static const char rows[2][ENGINE_LABEL_MAX] = {"A", "B"};
    engine_seat_spec seats[6];
    memset(seats, 0, sizeof(seats));
    for (int i = 0; i < 6; i++) {
        seats[i].row = (uint16_t)(i / 3);
        seats[i].col = (uint16_t)(i % 3 + 1);
        seats[i].category = (uint8_t)(i / 3);
        snprintf(seats[i].label, sizeof(seats[i].label), "%s", LABELS[i]);
    }
    engine_layout_spec spec = {.seat_count = 6,
                               .seats = seats,
                               .row_count = 2,
                               .row_labels = rows,
                               .category_count = 2,
                               .category_names = {"silver", "Gold \"Plus\" \\ x"},
                               .best_row = 1};
    engine_problem p = {0};
    int rc = engine_layout_create(w->e, T0, 8, &spec, &p, &w->layout_rec);
    cr_assert_eq(rc, 0, "layout: %d (%s)", rc, p.reason ? p.reason : "-");
    engine_record rec;
    cr_assert_eq(engine_showtime_create(w->e, T0, 45, 8, START, PRICES, 2, &rec), 0);
    cr_assert_eq(engine_showtime_create(w->e, T0, 44, 8, START, PRICES, 2, &rec), 0);
    w->h1 = hold(w, T0 + 1, 45, 31, (const uint32_t[]){0, 1}, 2);
    w->h2 = hold(w, T0 + 2, 45, 32, (const uint32_t[]){3}, 1);
    w->h3 = hold(w, T0 + 3, 45, 33, (const uint32_t[]){4, 5}, 2);
    w->h4 = hold(w, T0 + 4, 44, 34, (const uint32_t[]){2}, 1);
    w->b1 = confirm(w, T0 + 5, w->h1, 31, ENGINE_PAY_UPI);
    w->b2 = confirm(w, T0 + 6, w->h3, 33, ENGINE_PAY_CARD);
    engine_result r = engine_booking_cancel(w->e, T0 + 7, w->b2, 33, &w->refund, &rec);
    cr_assert_eq(r, ENGINE_OK, "cancel: %s", engine_result_name(r));
    cr_assert_eq(w->refund, 25000);
}

static json_t *layout_data(void)
{
    return json_pack("{sI s[ss] s[ssssss] s[iiiiii]}", "layout_id", (json_int_t)8, "categories",
                     "silver", GOLD, "seat_labels", LABELS[0], LABELS[1], LABELS[2], LABELS[3],
                     LABELS[4], LABELS[5], "seat_categories", 0, 0, 0, 1, 1, 1);
}

/* ---- Events: one per WAL record type ----------------------------------------------- */

Test(repl_event, layout_created_escapes_names_and_labels)
{
    world w;
    world_build(&w);
    json_t *d = engine_event(&w.layout_rec, "layout.created");
    expect_json(d, layout_data(), "layout.created");
    json_decref(d);
    engine_destroy(w.e);
}

Test(repl_event, every_small_engine_record)
{
    const engine_record recs[] = {
        {.type = ENGINE_REC_LAYOUT_DELETE, .u.layout_delete = {8}},
        {.type = ENGINE_REC_SHOWTIME_CREATE,
         .u.showtime_create = {45, 8, INT64_C(1795357800000), 3, {15000, 25000, 0}}},
        {.type = ENGINE_REC_SHOWTIME_DELETE, .u.showtime_delete = {45}},
        {.type = ENGINE_REC_HOLD_PLACE,
         .u.hold_place = {HOLD1, 45, 31, T0 + 300000, 50000, 3, {2, 3, 0}}},
        {.type = ENGINE_REC_HOLD_EXTEND, .u.hold_extend = {HOLD1, T0 + 360000}},
        {.type = ENGINE_REC_HOLD_RELEASE, .u.hold_end = {HOLD1 + 1}},
        {.type = ENGINE_REC_HOLD_EXPIRE, .u.hold_end = {HOLD1 + 2}},
        {.type = ENGINE_REC_BOOKING_CONFIRM,
         .u.booking_confirm = {HOLD1, HOLD1 + 2, ENGINE_PAY_UPI, 7, "order-1"}},
        {.type = ENGINE_REC_BOOKING_CONFIRM,
         .u.booking_confirm = {HOLD1 + 1, HOLD1 + 3, ENGINE_PAY_CARD, 0, ""}},
        {.type = ENGINE_REC_BOOKING_CONFIRM,
         .u.booking_confirm = {HOLD1 + 2, HOLD1 + 4, ENGINE_PAY_WALLET, 0, ""}},
        {.type = ENGINE_REC_BOOKING_CANCEL, .u.booking_cancel = {HOLD1, 40000}},
    };
    static const char *const want[][2] = {
        {"layout.deleted", "{'layout_id':8}"},
        {"showtime.opened",
         "{'showtime_id':45,'layout_id':8,'starts_at':'2026-11-22T14:30:00.000Z',"
         "'prices':[15000,25000,0]}"},
        {"showtime.closed", "{'showtime_id':45}"},
        {"booking.reserved", "{'hold_id':281474976710657,'showtime_id':45,'user_id':31,"
                             "'seats':[2,3,0],'amount':50000,'currency':'INR',"
                             "'expires_at':'2026-11-21T14:35:00.250Z'}"},
        {"hold.extended", "{'hold_id':281474976710657,'expires_at':'2026-11-21T14:36:00.250Z'}"},
        {"hold.released", "{'hold_id':281474976710658}"},
        {"hold.expired", "{'hold_id':281474976710659}"},
        {"booking.confirmed",
         "{'booking_id':281474976710657,'hold_id':281474976710659,'method':'upi'}"},
        {"booking.confirmed",
         "{'booking_id':281474976710658,'hold_id':281474976710660,'method':'card'}"},
        {"booking.confirmed",
         "{'booking_id':281474976710659,'hold_id':281474976710661,'method':'wallet'}"},
        {"booking.cancelled", "{'booking_id':281474976710657,'refund':40000}"},
    };
    for (size_t i = 0; i < sizeof(recs) / sizeof(recs[0]); i++) {
        json_t *d = engine_event(&recs[i], want[i][0]);
        expect_json(d, J(want[i][1]), want[i][0]);
        json_decref(d);
    }
}

Test(repl_event, catalog_put_and_delete)
{
    uint8_t buf[1024];
    /* Not in sorted key order: "verbatim" means the bytes, not a re-serialisation. */
    static const char theater[] =
        "{\"name\":\"Regal \\\"One\\\"\",\"id\":7,\"city\":\"Pune\",\"address\":\"a\\\\b\"}";
    int n = catalog_payload(true, CATALOG_THEATER, 7, theater, buf, sizeof(buf));
    char *raw = NULL;
    json_t *d = event(CATALOG_REC_PUT, buf, (size_t)n, "catalog.upsert", &raw);
    expect_json(d,
                json_pack("{ss sI so}", "kind", "theater", "id", (json_int_t)7, "entity",
                          json_loads(theater, 0, NULL)),
                "theater");
    cr_assert_not_null(strstr(raw, theater), "entity not verbatim: %s", raw);
    json_decref(d);
    free(raw);

    static const char user[] =
        "{\"created_at\":\"2026-11-21T09:12:04Z\",\"email\":\"asha@example.com\",\"id\":31,"
        "\"name\":\"Asha\",\"password_hash\":\"$argon2id$v=19$c2FsdA$aGFzaA\",\"role\":"
        "\"customer\"}";
    n = catalog_payload(true, CATALOG_USER, 31, user, buf, sizeof(buf));
    d = event(CATALOG_REC_PUT, buf, (size_t)n, "catalog.upsert", &raw);
    expect_json(d,
                J("{'kind':'user','id':31,'entity':{'created_at':'2026-11-21T09:12:04Z',"
                  "'email':'asha@example.com','id':31,'name':'Asha','role':'customer'}}"),
                "user");
    cr_assert_null(strstr(raw, "argon2id"), "the password hash was sent: %s", raw);
    json_decref(d);
    free(raw);

    n = catalog_payload(false, CATALOG_SHOWTIME, 45, NULL, buf, sizeof(buf));
    d = event(CATALOG_REC_DELETE, buf, (size_t)n, "catalog.delete", NULL);
    expect_json(d, J("{'kind':'showtime','id':45}"), "delete");
    json_decref(d);
}

/* ---- Refusals, escaping, heartbeat and error lines ---------------------------------- */

Test(repl_event, refusals_leave_the_buffer_unchanged)
{
    repl_buf b = {0};
    cr_assert_eq(repl_heartbeat_encode(&b, SHARD, T0, 70, 71), 0);
    uint8_t buf[4096];

    engine_record r = {.type = ENGINE_REC_HOLD_PLACE,
                       .u.hold_place = {HOLD1, 45, 31, T0 + 1, 0, 1, {0}}};
    int n = engine_record_encode(&r, buf, sizeof(buf));
    cr_assert_gt(n, 0);
    expect_refused(&b, 150, buf, (size_t)n, REPL_ETYPE);
    expect_refused(&b, 0, buf, (size_t)n, REPL_ETYPE);
    expect_refused(&b, CATALOG_REC_DELETE + 1, buf, (size_t)n, REPL_ETYPE);
    for (int cut = 0; cut < n; cut++)
        expect_refused(&b, ENGINE_REC_HOLD_PLACE, buf, (size_t)cut, REPL_EDECODE);
    buf[n] = 0;
    expect_refused(&b, ENGINE_REC_HOLD_PLACE, buf, (size_t)n + 1, REPL_EDECODE);
    expect_refused(&b, ENGINE_REC_BOOKING_CONFIRM, buf, (size_t)n, REPL_EDECODE); /* not its type */

    /* A layout record whose blob (its tail) is bad: found after the line was begun. */
    world w;
    world_build(&w);
    n = engine_record_encode(&w.layout_rec, buf, sizeof(buf));
    uint32_t blob_len = w.layout_rec.u.layout_create.blob_len;
    cr_assert_eq(memcmp(buf + n - blob_len, w.layout_rec.u.layout_create.blob, blob_len), 0);
    buf[n - blob_len] ^= 0x5a; /* the blob's version byte */
    expect_refused(&b, ENGINE_REC_LAYOUT_CREATE, buf, (size_t)n, REPL_EDECODE);
    engine_destroy(w.e);

    n = catalog_payload(true, CATALOG_USER, 31, "{\"id\":31,\"email\":\"a@b.c\"}", buf, 256);
    expect_refused(&b, CATALOG_REC_PUT, buf, 5, REPL_EDECODE);
    n = catalog_payload(true, CATALOG_USER, 32, "{\"id\":31}", buf, 256); /* id mismatch */
    expect_refused(&b, CATALOG_REC_PUT, buf, (size_t)n, REPL_EDECODE);

    /* The buffer still works: the next line follows the first. */
    size_t at = b.len;
    r = (engine_record){.type = ENGINE_REC_HOLD_RELEASE, .u.hold_end = {HOLD1}};
    n = engine_record_encode(&r, buf, sizeof(buf));
    wal_record rec = {
        .lsn = LSN, .time_ms = T0, .type = r.type, .payload_len = (uint32_t)n, .payload = buf};
    cr_assert_eq(repl_event_encode(&b, SHARD, &rec), 0);
    json_t *o = line_json(&b, at);
    cr_assert_str_eq(json_string_value(json_object_get(o, "type")), "hold.released");
    json_decref(o);
    repl_buf_free(&b);
}

Test(repl_event, heartbeat_and_error_lines)
{
    repl_buf b = {0};
    cr_assert_eq(repl_heartbeat_encode(&b, SHARD, T0, 70, 71), 0);
    json_t *o = line_json(&b, 0);
    expect_json(
        o,
        J("{'v':1,'shard':3,'type':'heartbeat','ts':'" T0_STR "','durable_lsn':70,'next_lsn':71}"),
        "heartbeat");
    json_decref(o);

    /* Quotes, backslashes and control bytes are escaped. */
    char detail[64] = "no \"WAL\" in C:\\data\n\t";
    size_t len = strlen(detail);
    for (char c = 1; c < 0x20; c += 5)
        detail[len++] = c;
    detail[len] = '\0';
    size_t at = b.len;
    cr_assert_eq(repl_error_encode(&b, SHARD, T0, "lsn-gone", detail, 71), 0);
    o = line_json(&b, at);
    expect_json(o,
                json_pack("{si si ss ss ss ss si}", "v", 1, "shard", (int)SHARD, "type", "error",
                          "ts", T0_STR, "title", "lsn-gone", "detail", detail, "next_lsn", 71),
                "error");
    json_decref(o);
    repl_buf_free(&b);
}

/* ---- Snapshot lines ----------------------------------------------------------------- */

/* The documented data of a snapshot item, from the world and the engine's own reads. */
static json_t *item_want(const world *w, const engine_item *it, const char **type)
{
    char t1[32], t2[32];
    if (it->kind == ENGINE_ITEM_LAYOUT) {
        *type = "snapshot.layout";
        return layout_data();
    }
    if (it->kind == ENGINE_ITEM_SHOWTIME) {
        *type = "snapshot.showtime";
        repl_time_format(START, true, t1);
        return json_pack("{sI sI ss s[ii] si si si}", "showtime_id", (json_int_t)it->key,
                         "layout_id", (json_int_t)8, "starts_at", t1, "prices", 15000, 25000,
                         "seat_count", 6, "held", 1, "sold", it->key == 45 ? 2 : 0);
    }
    if (it->kind == ENGINE_ITEM_HOLD) {
        *type = "snapshot.hold";
        engine_hold_info h;
        cr_assert(engine_hold_get(w->e, it->key, &h), "hold %llu is not live",
                  (unsigned long long)it->key);
        cr_assert_eq(h.amount, it->key == w->h2 ? 25000u : 15000u);
        repl_time_format(h.created_ms, true, t1);
        repl_time_format(h.expires_ms, true, t2);
        return json_pack("{sI sI sI so sI ss ss ss sb}", "hold_id", (json_int_t)h.id, "showtime_id",
                         (json_int_t)h.showtime_id, "user_id", (json_int_t)h.user_id, "seats",
                         ints(h.seats, h.seat_count), "amount", (json_int_t)h.amount, "currency",
                         "INR", "reserved_at", t1, "expires_at", t2, "offer", h.offer);
    }
    *type = "snapshot.booking";
    engine_booking_info bk;
    cr_assert(engine_booking_get(w->e, it->key, &bk));
    bool cancelled = it->key == w->b2;
    cr_assert_eq(bk.refund, cancelled ? 25000u : 0u);
    repl_time_format(bk.confirmed_ms, true, t1);
    repl_time_format(bk.cancelled_ms, true, t2);
    return json_pack("{sI sI sI sI so sI sI ss ss ss ss so}", "booking_id", (json_int_t)bk.id,
                     "hold_id", (json_int_t)(cancelled ? w->h3 : w->h1), "showtime_id",
                     (json_int_t)45, "user_id", (json_int_t)bk.user_id, "seats",
                     ints(bk.seats, bk.seat_count), "amount", (json_int_t)bk.amount, "refund",
                     (json_int_t)bk.refund, "currency", "INR", "method", cancelled ? "card" : "upi",
                     "status", cancelled ? "cancelled" : "confirmed", "confirmed_at", t1,
                     "cancelled_at", cancelled ? json_string(t2) : json_null());
}

Test(repl_snapshot, items_match_the_engine)
{
    world w;
    world_build(&w);
    engine_snapshot *snap = NULL;
    cr_assert_eq(engine_snapshot_take(w.e, true, &snap), 0);
    size_t counts[6] = {0};
    for (size_t i = 0; i < engine_snapshot_count(snap); i++) {
        const engine_item *it = engine_snapshot_item(snap, i);
        repl_buf b = {0};
        int rc = repl_snapshot_item_encode(&b, SHARD, it->kind, it->key, it->value, it->len);
        counts[it->kind]++;
        if (it->kind == ENGINE_ITEM_META) {
            cr_assert_eq(rc, REPL_ETYPE);
            cr_assert_eq(b.len, 0, "a refused META item wrote something");
            continue;
        }
        cr_assert_eq(rc, 0, "kind %d: %s", it->kind, repl_strerror(rc));
        const char *type;
        json_t *want = item_want(&w, it, &type);
        json_t *o = line_json(&b, 0);
        expect_json(
            o, json_pack("{si si ss so}", "v", 1, "shard", (int)SHARD, "type", type, "data", want),
            type);
        json_decref(o);
        repl_buf_free(&b);
    }
    cr_assert_eq(counts[ENGINE_ITEM_META], 1);
    cr_assert_eq(counts[ENGINE_ITEM_LAYOUT], 1);
    cr_assert_eq(counts[ENGINE_ITEM_SHOWTIME], 2);
    cr_assert_eq(counts[ENGINE_ITEM_HOLD], 2);
    cr_assert_eq(counts[ENGINE_ITEM_BOOKING], 2);

    /* An item that does not decode: refused, nothing written. */
    repl_buf b = {0};
    cr_assert_eq(repl_heartbeat_encode(&b, SHARD, T0, 1, 2), 0);
    size_t len0 = b.len;
    for (size_t i = 0; i < engine_snapshot_count(snap); i++) {
        const engine_item *it = engine_snapshot_item(snap, i);
        uint8_t *cut = exact_copy(it->value, it->len - 1);
        int rc = repl_snapshot_item_encode(&b, SHARD, it->kind, it->key, cut, it->len - 1);
        cr_assert_eq(rc, it->kind == ENGINE_ITEM_META ? REPL_ETYPE : REPL_EDECODE);
        cr_assert_eq(b.len, len0);
        free(cut);
    }
    repl_buf_free(&b);
    engine_snapshot_free(snap);
    engine_destroy(w.e);
}

Test(repl_snapshot, begin_end_and_catalog_lines)
{
    repl_buf b = {0};
    cr_assert_eq(repl_snapshot_begin_encode(&b, SHARD, 2001, T0), 0);
    size_t at[4] = {0, b.len};
    cr_assert_eq(repl_snapshot_begin_encode(&b, SHARD, 0, 0), 0); /* none yet: no ts */
    at[2] = b.len;
    static const char user[] = "{\"email\":\"a@b.c\",\"id\":31,\"password_hash\":\"secret\"}";
    cr_assert_eq(repl_snapshot_catalog_encode(&b, SHARD, CATALOG_USER, 31, user, strlen(user)), 0);
    at[3] = b.len;
    cr_assert_eq(repl_snapshot_end_encode(&b, SHARD, 2001, 5), 0);
    static const char *const want[4] = {
        "{'v':1,'shard':3,'ts':'" T0_STR "','type':'snapshot.begin','lsn':2001}",
        "{'v':1,'shard':3,'type':'snapshot.begin','lsn':0}",
        "{'v':1,'shard':3,'type':'snapshot.catalog','data':{'kind':'user','id':31,"
        "'entity':{'email':'a@b.c','id':31}}}",
        "{'v':1,'shard':3,'type':'snapshot.end','lsn':2001,'rows':5}",
    };
    for (int i = 3; i >= 0; i--) { /* from the last line back, cutting each off */
        json_t *o = line_json(&b, at[i]);
        expect_json(o, J(want[i]), want[i]);
        json_decref(o);
        b.len = at[i];
    }
    repl_buf_free(&b);
}

/* ---- snapshot_store_each ------------------------------------------------------------ */

static char g_root[64];

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static void store_init(void)
{
    snprintf(g_root, sizeof(g_root), "/tmp/usher-repl-%ld-XXXXXX", (long)getpid());
    cr_assert_not_null(mkdtemp(g_root), "mkdtemp: %s", strerror(errno));
}

static void store_fini(void)
{
    nftw(g_root, rm_one, 8, FTW_DEPTH | FTW_PHYS);
}

TestSuite(snapshot_each, .init = store_init, .fini = store_fini);

typedef struct seen {
    size_t n, stop_at;
    int stop_rc;
    engine_item it[16]; /* values copied */
} seen;

static int collect(void *arg, engine_item_kind kind, uint64_t key, const uint8_t *value,
                   uint32_t len)
{
    seen *s = arg;
    cr_assert_lt(s->n, 16);
    s->it[s->n++] = (engine_item){kind, key, exact_copy(value, len), len};
    return s->n == s->stop_at ? s->stop_rc : 0;
}

static void seen_free(seen *s)
{
    for (size_t i = 0; i < s->n; i++)
        free((void *)s->it[i].value);
}

static snapshot_store *store_open(const char *name)
{
    char dir[128];
    snprintf(dir, sizeof(dir), "%s/%s", g_root, name);
    snapshot_store *st = NULL;
    int rc = snapshot_store_open(dir, SHARD, 0, &st);
    cr_assert_eq(rc, 0, "snapshot_store_open: %s", snapshot_strerror(rc));
    return st;
}

Test(snapshot_each, walks_the_stored_snapshot_in_order_or_nothing)
{
    /* An empty store: LSN 0, no callback. */
    seen s = {0};
    uint64_t lsn = 99;
    int64_t written = 99;
    snapshot_store *st = store_open("empty");
    cr_assert_eq(snapshot_store_each(st, &lsn, &written, collect, &s), 0);
    cr_assert(lsn == 0 && written == 0 && s.n == 0);
    snapshot_store_close(st);

    world w;
    world_build(&w);
    engine_snapshot *snap = NULL;
    cr_assert_eq(engine_snapshot_take(w.e, true, &snap), 0);
    st = store_open("full");
    cr_assert_eq(snapshot_store_write(st, snap, 42), 0);

    cr_assert_eq(snapshot_store_each(st, &lsn, &written, collect, &s), 0);
    cr_assert_eq(lsn, 42);
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    int64_t now_ms = (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
    cr_assert(written > now_ms - 600000 && written <= now_ms + 1000, "written_ms %lld",
              (long long)written);

    /* The engine's items: layouts, showtimes, holds, bookings, each by ascending key. */
    static const engine_item_kind order[] = {ENGINE_ITEM_LAYOUT, ENGINE_ITEM_SHOWTIME,
                                             ENGINE_ITEM_HOLD, ENGINE_ITEM_BOOKING};
    size_t k = 0;
    for (size_t o = 0; o < 4; o++) {
        for (uint64_t last = 0;; k++) { /* the smallest key of this kind above `last` */
            const engine_item *next = NULL;
            for (size_t i = 0; i < engine_snapshot_count(snap); i++) {
                const engine_item *it = engine_snapshot_item(snap, i);
                if (it->kind == order[o] && it->key > last && (!next || it->key < next->key))
                    next = it;
            }
            if (next == NULL)
                break;
            cr_assert_lt(k, s.n, "item %zu (kind %d, key %llu) was not reported", k, next->kind,
                         (unsigned long long)next->key);
            const engine_item *got = &s.it[k];
            cr_assert(got->kind == next->kind && got->key == next->key, "item %zu: kind, key", k);
            cr_assert(got->len == next->len && memcmp(got->value, next->value, got->len) == 0,
                      "item %zu: bytes", k);
            last = next->key;
        }
    }
    cr_assert_eq(k, 7, "1 layout, 2 showtimes, 2 holds, 2 bookings");
    cr_assert_eq(s.n, k, "%zu items reported, %zu expected", s.n, k);
    seen_free(&s);

    /* A callback's non-zero return stops the walk and is returned. */
    seen stop = {.stop_at = 3, .stop_rc = 7};
    cr_assert_eq(snapshot_store_each(st, &lsn, &written, collect, &stop), 7);
    cr_assert_eq(stop.n, 3);
    seen_free(&stop);
    seen first = {.stop_at = 1, .stop_rc = -5};
    cr_assert_eq(snapshot_store_each(st, &lsn, &written, collect, &first), -5);
    cr_assert_eq(first.n, 1);
    seen_free(&first);

    snapshot_store_close(st);
    engine_snapshot_free(snap);
    engine_destroy(w.e);
}

/* ---- repl_time_format --------------------------------------------------------------- */

static void expect_format(int64_t ms, bool millis, const char *want)
{
    char out[32];
    memset(out, 'x', sizeof(out));
    repl_time_format(ms, millis, out);
    cr_assert_not_null(memchr(out, '\0', sizeof(out)), "%lld: not terminated", (long long)ms);
    cr_assert_str_eq(out, want, "%lld (millis %d)", (long long)ms, millis);
}

Test(repl_time, formats_rfc3339_utc)
{
    expect_format(0, true, "1970-01-01T00:00:00.000Z");
    expect_format(0, false, "1970-01-01T00:00:00Z");
    expect_format(T0, true, T0_STR);
    expect_format(T0, false, "2026-11-21T14:30:00Z"); /* truncated, not rounded */
    expect_format(INT64_C(1709208000000), true, "2024-02-29T12:00:00.000Z");
    expect_format(-1, true, "1969-12-31T23:59:59.999Z");
    expect_format(-1, false, "1969-12-31T23:59:59Z");
    expect_format(-1000, true, "1969-12-31T23:59:59.000Z");
    expect_format(-86400001, true, "1969-12-30T23:59:59.999Z");
    expect_format(INT64_C(-62167219200000), true, "0000-01-01T00:00:00.000Z");
    expect_format(INT64_C(253402300799999), true, "9999-12-31T23:59:59.999Z");
    /* Past 9999: the fallback, still inside 32 bytes. */
    expect_format(INT64_C(253402300800000), true, "10000-01-01T00:00:00.000Z");
    expect_format(INT64_MAX, true, "292278994-08-17T07:12:55.807Z");
    expect_format(INT64_MAX, false, "292278994-08-17T07:12:55Z");
}

/* ---- Engine item decoders ------------------------------------------------------------ */

/* Decodes `len` bytes of `v` (copied to an exact-size buffer) as an item of its kind. */
static int decode_item(const engine_item *it, const uint8_t *v, uint32_t len)
{
    uint8_t *copy = exact_copy(v, len);
    union {
        engine_layout_spec l;
        engine_showtime_item s;
        engine_hold_info h;
        engine_booking_info b;
    } u;
    int rc = it->kind == ENGINE_ITEM_LAYOUT     ? engine_layout_blob_decode(copy, len, &u.l)
             : it->kind == ENGINE_ITEM_SHOWTIME ? engine_item_showtime_decode(copy, len, &u.s)
             : it->kind == ENGINE_ITEM_HOLD     ? engine_item_hold_decode(it->key, copy, len, &u.h)
                                            : engine_item_booking_decode(it->key, copy, len, &u.b);
    if (rc == 0 && it->kind == ENGINE_ITEM_LAYOUT)
        engine_layout_spec_free(&u.l);
    free(copy);
    return rc;
}

/* The values themselves are checked through the snapshot lines above; here the
 * decoders' refusals, and what those lines do not show. */
Test(engine_items, decoders_reject_bad_lengths_and_values)
{
    static const struct {
        engine_item_kind kind;
        uint32_t at;
        uint8_t byte;
    } corrupt[] = {
        {ENGINE_ITEM_LAYOUT, 0, 9},      /* blob version */
        {ENGINE_ITEM_SHOWTIME, 0, 9},    /* item version */
        {ENGINE_ITEM_SHOWTIME, 17, 9},   /* 9 prices */
        {ENGINE_ITEM_HOLD, 41, 0},       /* no seats */
        {ENGINE_ITEM_HOLD, 41, 17},      /* 17 seats */
        {ENGINE_ITEM_BOOKING, 56, 0xff}, /* refund above the amount */
        {ENGINE_ITEM_BOOKING, 57, 4},    /* no such payment */
        {ENGINE_ITEM_BOOKING, 58, 3},    /* no such status */
    };
    world w;
    world_build(&w);
    engine_snapshot *snap = NULL;
    cr_assert_eq(engine_snapshot_take(w.e, true, &snap), 0);
    for (size_t i = 0; i < engine_snapshot_count(snap); i++) {
        const engine_item *it = engine_snapshot_item(snap, i);
        if (it->kind == ENGINE_ITEM_META)
            continue;
        cr_assert_eq(decode_item(it, it->value, it->len), 0, "kind %d", it->kind);
        for (uint32_t cut = 0; cut < it->len; cut++)
            cr_assert_eq(decode_item(it, it->value, cut), ENGINE_EDECODE,
                         "kind %d cut to %u of %u bytes", it->kind, cut, it->len);
        uint8_t *bad = calloc(1, it->len + 1);
        memcpy(bad, it->value, it->len);
        cr_assert_eq(decode_item(it, bad, it->len + 1), ENGINE_EDECODE, "kind %d, trailing byte",
                     it->kind);
        for (size_t c = 0; c < sizeof(corrupt) / sizeof(corrupt[0]); c++) {
            if (corrupt[c].kind != it->kind)
                continue;
            bad[corrupt[c].at] = corrupt[c].byte;
            cr_assert_eq(decode_item(it, bad, it->len), ENGINE_EDECODE, "kind %d, byte %u = %u",
                         it->kind, corrupt[c].at, corrupt[c].byte);
            bad[corrupt[c].at] = it->value[corrupt[c].at];
        }
        free(bad);
        if (it->kind == ENGINE_ITEM_LAYOUT) {
            engine_layout_spec spec;
            cr_assert_eq(engine_layout_blob_decode(it->value, it->len, &spec), 0);
            cr_assert(spec.seat_count == 6 && spec.row_count == 2 && spec.best_row == 1);
            cr_assert_str_eq(spec.row_labels[1], "B");
            for (uint32_t s = 0; s < 6; s++)
                cr_assert(spec.seats[s].row == s / 3 && spec.seats[s].col == s % 3 + 1 &&
                          spec.seats[s].flags == 0);
            engine_layout_spec_free(&spec);
        } else if (it->kind == ENGINE_ITEM_BOOKING) {
            engine_booking_info b;
            cr_assert_eq(engine_item_booking_decode(it->key, it->value, it->len, &b), 0);
            cr_assert(b.id == it->key && b.idem_key_len == 1 && b.idem_key[0] == 'k');
        }
    }
    engine_snapshot_free(snap);
    engine_destroy(w.e);
}
