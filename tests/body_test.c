/*
 * body_test.c - the reserve body's fast path (net/body.c) against an oracle.
 *
 * The oracle reads a body with jansson and applies the API's rules for
 * POST /api/bookings/reserve as docs/api.md states them. The property: when
 * the fast path accepts a body, the oracle accepts it too and reads the same
 * request (no answer can change). And the fast path must accept the bodies
 * clients actually send (plain ASCII, any field order and spacing), or it
 * would be useless. Bodies are generated from a small grammar and mutated
 * byte by byte; seeded, so a failure names the seed and the body.
 */
#include "body.h"

#include <criterion/criterion.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SEATS 8 /* the server's default --max-seats-per-hold */

static uint64_t rng_state;

static uint64_t rnd(void)
{
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return rng_state = x;
}

static uint32_t below(uint32_t n)
{
    return (uint32_t)(rnd() % n);
}

/* ---- The oracle -------------------------------------------------------------------- */

static bool oracle(const char *body, size_t n, uint32_t max, net_reserve_args *a)
{
    json_t *o = json_loadb(body, n, JSON_REJECT_DUPLICATES, NULL);
    bool ok = false;
    memset(a, 0, sizeof(*a));
    if (o == NULL || !json_is_object(o))
        goto out;
    const char *k;
    json_t *v;
    json_object_foreach(o, k, v)
    {
        if (strcmp(k, "showtime_id") != 0 && strcmp(k, "seats") != 0 && strcmp(k, "count") != 0 &&
            strcmp(k, "category") != 0 && strcmp(k, "accessible") != 0)
            goto out;
    }
    json_t *id = json_object_get(o, "showtime_id");
    if (!json_is_integer(id) || json_integer_value(id) <= 0)
        goto out;
    a->showtime_id = (uint64_t)json_integer_value(id);
    json_t *seats = json_object_get(o, "seats"), *count = json_object_get(o, "count");
    json_t *cat = json_object_get(o, "category"), *acc = json_object_get(o, "accessible");
    if ((seats == NULL) == (count == NULL))
        goto out;
    if (seats != NULL) {
        if (!json_is_array(seats) || json_array_size(seats) < 1 || json_array_size(seats) > max ||
            cat != NULL || acc != NULL)
            goto out;
        for (size_t i = 0; i < json_array_size(seats); i++) {
            json_t *s = json_array_get(seats, i);
            if (!json_is_string(s) || json_string_length(s) == 0 ||
                json_string_length(s) >= ENGINE_LABEL_MAX)
                goto out;
            snprintf(a->seats[i], sizeof(a->seats[i]), "%s", json_string_value(s));
        }
        a->nseats = (uint32_t)json_array_size(seats);
        ok = true;
        goto out;
    }
    if (!json_is_integer(count) || json_integer_value(count) < 1 ||
        json_integer_value(count) > (json_int_t)max || !json_is_string(cat) ||
        (acc != NULL && !json_is_boolean(acc)))
        goto out;
    a->count = (uint32_t)json_integer_value(count);
    if (strlen(json_string_value(cat)) < sizeof(a->category))
        snprintf(a->category, sizeof(a->category), "%s", json_string_value(cat));
    a->accessible = json_is_true(acc);
    ok = true;
out:
    json_decref(o);
    return ok;
}

static void assert_same(const net_reserve_args *f, const net_reserve_args *o, const char *body,
                        uint64_t seed)
{
    cr_assert_eq(f->showtime_id, o->showtime_id, "seed %" PRIu64 ": showtime_id of %s", seed, body);
    cr_assert_eq(f->nseats, o->nseats, "seed %" PRIu64 ": seat count of %s", seed, body);
    for (uint32_t i = 0; i < f->nseats; i++)
        cr_assert_str_eq(f->seats[i], o->seats[i], "seed %" PRIu64 ": seat %u of %s", seed, i,
                         body);
    if (f->nseats == 0) {
        cr_assert_eq(f->count, o->count, "seed %" PRIu64 ": count of %s", seed, body);
        cr_assert_str_eq(f->category, o->category, "seed %" PRIu64 ": category of %s", seed, body);
        cr_assert_eq(f->accessible, o->accessible, "seed %" PRIu64 ": accessible of %s", seed,
                     body);
    }
}

/* ---- Generated bodies ------------------------------------------------------------- */

typedef struct text {
    char buf[2048];
    size_t n;
} text;

static void put(text *t, const char *s)
{
    size_t len = strlen(s);
    if (t->n + len < sizeof(t->buf)) {
        memcpy(t->buf + t->n, s, len);
        t->n += len;
    }
    t->buf[t->n] = '\0';
}

static void ws(text *t, bool plain)
{
    static const char *const spaces[] = {"", "", "", " ", "\n", "\t", "\r\n  "};
    put(t, spaces[below(plain ? 4 : 7)]);
}

/* A string value; `plain` keeps to what clients send (letters and digits). */
static void str_value(text *t, bool plain, uint32_t maxlen)
{
    static const char *const odd[] = {"\\\"", "\\\\", "\\u0041", "\\n", "é", "\\u0000", "\x01"};
    char one[2] = {0, 0};
    uint32_t len = below(maxlen + 1);
    put(t, "\"");
    for (uint32_t i = 0; i < len; i++) {
        if (!plain && below(8) == 0) {
            put(t, odd[below(7)]);
        } else {
            one[0] = (char)("ABCDEFGHJKabcdefgh0123456789 -_"[below(31)]);
            put(t, one);
        }
    }
    put(t, "\"");
}

static void int_value(text *t, bool plain, uint64_t max)
{
    char b[48];
    if (plain || below(3) != 0) {
        snprintf(b, sizeof(b), "%" PRIu64, 1 + rnd() % max);
    } else {
        static const char *const odd[] = {"0",
                                          "-1",
                                          "1.5",
                                          "1e3",
                                          "01",
                                          "1E2",
                                          "-0",
                                          "9223372036854775807",
                                          "null",
                                          "\"7\"",
                                          "999999999999999999",
                                          "1000000000000000000"};
        snprintf(b, sizeof(b), "%s", odd[below(12)]);
    }
    put(t, b);
}

/* Any JSON value, for fields given the wrong type. */
static void any_value(text *t)
{
    switch (below(7)) {
    case 0:
        int_value(t, false, 100);
        break;
    case 1:
        str_value(t, false, 6);
        break;
    case 2:
        put(t, below(2) ? "true" : "false");
        break;
    case 3:
        put(t, "null");
        break;
    case 4:
        put(t, "[]");
        break;
    case 5:
        put(t, "{\"a\":1}");
        break;
    default:
        put(t, "[1,2]");
        break;
    }
}

/* A body; with `plain` one that the API accepts and clients would send. */
static void gen_body(text *t, bool plain)
{
    t->n = 0;
    t->buf[0] = '\0';
    const char *names[8];
    int nf = 0;
    bool listed = below(2) == 0;
    names[nf++] = "showtime_id";
    if (listed) {
        names[nf++] = "seats";
    } else {
        names[nf++] = "count";
        names[nf++] = "category";
        if (below(2))
            names[nf++] = "accessible";
    }
    if (!plain) {
        static const char *const extra[] = {"seats",       "count", "category", "accessible",
                                            "showtime_id", "other", "Seats"};
        uint32_t k = below(3);
        for (uint32_t i = 0; i < k; i++)
            names[nf++] = extra[below(7)];
        if (below(6) == 0 && nf > 1)
            names[--nf] = NULL; /* a required field missing */
    }
    for (int i = nf - 1; i > 0; i--) { /* any order */
        int j = (int)below((uint32_t)i + 1);
        const char *x = names[i];
        names[i] = names[j];
        names[j] = x;
    }
    ws(t, plain);
    put(t, "{");
    for (int i = 0; i < nf; i++) {
        if (i > 0)
            put(t, ",");
        ws(t, plain);
        put(t, "\"");
        put(t, names[i]);
        put(t, "\"");
        ws(t, plain);
        put(t, ":");
        ws(t, plain);
        bool wrong = !plain && below(8) == 0;
        if (wrong) {
            any_value(t);
        } else if (strcmp(names[i], "showtime_id") == 0) {
            int_value(t, plain, 1000000000000ull);
        } else if (strcmp(names[i], "count") == 0) {
            int_value(t, plain, plain ? MAX_SEATS : MAX_SEATS + 2);
        } else if (strcmp(names[i], "category") == 0) {
            str_value(t, plain, plain ? 10 : 30);
        } else if (strcmp(names[i], "accessible") == 0) {
            put(t, below(2) ? "true" : "false");
        } else if (strcmp(names[i], "seats") == 0) {
            uint32_t n = 1 + below(plain ? MAX_SEATS : MAX_SEATS + 2);
            if (!plain && below(10) == 0)
                n = 0;
            put(t, "[");
            for (uint32_t s = 0; s < n; s++) {
                if (s > 0)
                    put(t, ",");
                ws(t, plain);
                if (plain) {
                    char label[8];
                    snprintf(label, sizeof(label), "\"%c%u\"", 'A' + (int)below(26), 1 + below(40));
                    put(t, label);
                } else {
                    str_value(t, false, 17);
                }
                ws(t, plain);
            }
            put(t, "]");
        } else {
            any_value(t);
        }
        ws(t, plain);
    }
    put(t, "}");
    ws(t, plain);
}

/* Byte-level damage: deletions, insertions and replacements. */
static void mutate(text *t)
{
    static const char alphabet[] = "{}[],:\" \\0123456789-.eE+truefalsnl\x01\xff";
    uint32_t k = 1 + below(3);
    for (uint32_t i = 0; i < k && t->n > 0; i++) {
        size_t at = below((uint32_t)t->n);
        char c = alphabet[below(sizeof(alphabet) - 1)];
        switch (below(3)) {
        case 0:
            memmove(t->buf + at, t->buf + at + 1, t->n - at);
            t->n--;
            break;
        case 1:
            if (t->n + 1 < sizeof(t->buf)) {
                memmove(t->buf + at + 1, t->buf + at, t->n - at + 1);
                t->buf[at] = c;
                t->n++;
            }
            break;
        default:
            t->buf[at] = c;
            break;
        }
    }
}

/* ---- Tests ------------------------------------------------------------------------- */

Test(body, accepts_what_clients_send)
{
    for (uint64_t seed = 1; seed <= 20000; seed++) {
        rng_state = seed * 0x9E3779B97F4A7C15ull;
        text t;
        gen_body(&t, true);
        net_reserve_args f, o;
        cr_assert(oracle(t.buf, t.n, MAX_SEATS, &o),
                  "seed %" PRIu64 ": generator made an "
                  "invalid body: %s",
                  seed, t.buf);
        cr_assert(net_reserve_body_fast(t.buf, t.n, MAX_SEATS, &f),
                  "seed %" PRIu64 ": fast path refused a plain body: %s", seed, t.buf);
        assert_same(&f, &o, t.buf, seed);
    }
}

Test(body, never_accepts_what_the_api_refuses)
{
    uint64_t accepted = 0, refused_by_oracle = 0;
    for (uint64_t seed = 1; seed <= 300000; seed++) {
        rng_state = seed * 0x9E3779B97F4A7C15ull + 1;
        text t;
        gen_body(&t, below(4) == 0);
        if (below(2) == 0)
            mutate(&t);
        net_reserve_args f, o;
        bool fast = net_reserve_body_fast(t.buf, t.n, MAX_SEATS, &f);
        bool ok = oracle(t.buf, t.n, MAX_SEATS, &o);
        refused_by_oracle += !ok;
        if (!fast)
            continue;
        accepted++;
        cr_assert(ok, "seed %" PRIu64 ": fast path accepted a body the API refuses: %s", seed,
                  t.buf);
        assert_same(&f, &o, t.buf, seed);
    }
    /* The generator must exercise both sides, or the property says nothing. */
    cr_assert_gt(accepted, 30000, "only %" PRIu64 " bodies accepted", accepted);
    cr_assert_gt(refused_by_oracle, 100000, "only %" PRIu64 " bodies refused", refused_by_oracle);
}

Test(body, edges)
{
    net_reserve_args a;
    static const struct {
        const char *body;
        bool fast;
    } cases[] = {
        {"{\"showtime_id\":7,\"seats\":[\"A1\"]}", true},
        {"{\"showtime_id\":7,\"count\":2,\"category\":\"Gold\"}", true},
        {"{\"showtime_id\":7,\"count\":2,\"category\":\"Gold\",\"accessible\":true}", true},
        {"{\"showtime_id\":999999999999999999,\"seats\":[\"A1\"]}", true},
        /* valid, but for the careful path */
        {"{\"showtime_id\":1000000000000000000,\"seats\":[\"A1\"]}", false},
        {"{\"showtime_id\":7,\"seats\":[\"A\\u0031\"]}", false},
        /* invalid */
        {"{\"showtime_id\":0,\"seats\":[\"A1\"]}", false},
        {"{\"showtime_id\":7,\"seats\":[]}", false},
        {"{\"showtime_id\":7,\"seats\":[\"A1\"],\"count\":1}", false},
        {"{\"showtime_id\":7,\"seats\":[\"A1\"],\"category\":\"Gold\"}", false},
        {"{\"showtime_id\":7,\"count\":2}", false},
        {"{\"showtime_id\":7,\"count\":9,\"category\":\"Gold\"}", false},
        {"{\"showtime_id\":7,\"seats\":[\"A1\"]} x", false},
        {"{\"showtime_id\":7,\"showtime_id\":8,\"seats\":[\"A1\"]}", false},
        {"{\"showtime_id\":7,\"seats\":[\"A1\",]}", false},
        {"{\"showtime_id\":7,\"seats\":[\"0123456789abcdef\"]}", false},
        {"{\"showtime_id\":7,\"seats\":[\"A1\"],}", false},
        {"", false},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *b = cases[i].body;
        cr_assert_eq(net_reserve_body_fast(b, strlen(b), MAX_SEATS, &a), cases[i].fast, "%s", b);
    }
    /* A category longer than any name is kept as "" (it matches none). */
    const char *long_cat =
        "{\"showtime_id\":7,\"count\":1,\"category\":\"abcdefghijklmnopqrstuvwxyz\"}";
    cr_assert(net_reserve_body_fast(long_cat, strlen(long_cat), MAX_SEATS, &a));
    cr_assert_str_eq(a.category, "");
    /* Every seat up to the bound, and one more. */
    cr_assert(net_reserve_body_fast("{\"showtime_id\":1,\"seats\":[\"a\",\"b\"]}", 35, 2, &a));
    cr_assert_not(net_reserve_body_fast("{\"showtime_id\":1,\"seats\":[\"a\",\"b\"]}", 35, 1, &a));
}
