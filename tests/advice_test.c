/*
 * advice_test.c - GET /api/pricing/suggest and GET /api/recommendations end
 * to end: the real usherd ($USHERD) over sockets (tests/harness.c), a small
 * catalog made through the API, seats held, sold and cancelled through the
 * API, and the answers checked against the rule tables of docs/api.md.
 *
 * The server's clock is real time, and a showtime can only be created in
 * the future: a "past" showtime is created a few seconds ahead, sold, and
 * waited for (start_soon / wait_started).
 *
 * Every screen here has two rows of four seats: row A silver (A1..A4), row
 * B gold (B1..B4), so occupancy steps by 25 % and one hold of eight seats
 * sells a showtime out.
 *
 * Last, both routes under concurrent load on four shards, with clients that
 * hang up before the answer (the gathers then free an orphaned request).
 */
#define _GNU_SOURCE

#include "harness.h"

#include <criterion/criterion.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>

TestSuite(advice, .init = h_suite_init, .fini = h_suite_fini, .timeout = 90);

#define SECRET         "usher-advice-test-secret-0123456789abcdefghij"
#define ADMIN_EMAIL    "root@usher.test"
#define ADMIN_PASSWORD "admin-password-1"
#define PASSWORD       "password123"
#define DAY            86400
#define ALL_SEATS      "A1,A2,A3,A4,B1,B2,B3,B4"

enum { SILVER = 15000, GOLD = 25000 };

#define ARGS(...) ((const char *const[]){__VA_ARGS__, NULL})

static char *fmt_path(char *buf, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static char *fmt_path(char *buf, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, cap, fmt, ap);
    va_end(ap);
    return buf;
}
#define P(...) fmt_path((char[512]){0}, 512, __VA_ARGS__)

/* ---- Server and users --------------------------------------------------------------- */

typedef struct user {
    char token[1200];
    uint64_t id;
} user;

static user login(const char *email, const char *password)
{
    h_reply *r =
        h_api("POST", "/api/auth/login", NULL, "{s:s, s:s}", "email", email, "password", password);
    h_assert_status(r, 200, "login");
    user u;
    snprintf(u.token, sizeof(u.token), "%s", h_jstr(r->json, "token"));
    u.id = (uint64_t)h_jint(h_jget(r->json, "user"), "id");
    return u;
}

static user register_user(const char *email)
{
    h_reply *r = h_api("POST", "/api/auth/register", NULL, "{s:s, s:s, s:s}", "email", email,
                       "password", PASSWORD, "name", "Advice Tester");
    h_assert_status(r, 201, "register");
    user u;
    snprintf(u.token, sizeof(u.token), "%s", h_jstr(r->json, "token"));
    u.id = (uint64_t)h_jint(h_jget(r->json, "user"), "id");
    return u;
}

/* An administrator made with `usherd --create-admin`, then the server
 * (fast password hashing, a known secret, `extra` arguments or NULL). */
static user start_with_admin(const char *const *extra)
{
    const char *argv[16] = {"--create-admin", ADMIN_EMAIL, "--password-cost", "min"};
    int n = 4;
    for (int i = 0; extra != NULL && extra[i] != NULL && n < 15; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    const char *env[] = {"USHER_JWT_SECRET=" SECRET, "USHER_ADMIN_PASSWORD=" ADMIN_PASSWORD, NULL};
    char out[4096];
    int st = h_run(argv, env, out, sizeof(out));
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "usherd --create-admin failed: %s", out);
    const char *sargv[16] = {"--password-cost", "min"};
    n = 2;
    for (int i = 0; extra != NULL && extra[i] != NULL && n < 15; i++)
        sargv[n++] = extra[i];
    sargv[n] = NULL;
    const char *senv[] = {"USHER_JWT_SECRET=" SECRET, NULL};
    h_start_env(sargv, senv);
    return login(ADMIN_EMAIL, ADMIN_PASSWORD);
}

/* ---- Catalog -------------------------------------------------------------------------- */

static uint64_t theater_new(const user *admin, const char *name, const char *city)
{
    h_reply *r =
        h_api("POST", "/api/theaters", admin->token, "{s:s, s:s}", "name", name, "city", city);
    h_assert_status(r, 201, "create theater");
    return (uint64_t)h_jint(r->json, "id");
}

static uint64_t screen_new(const user *admin, uint64_t theater)
{
    h_reply *r = h_api("POST", "/api/screens", admin->token,
                       "{s:I, s:s, s:{s:[s,s], s:[{s:s,s:s,s:i}, {s:s,s:s,s:i}]}}", "theater_id",
                       (json_int_t)theater, "name", "Screen", "layout", "categories", "silver",
                       "gold", "rows", "label", "A", "category", "silver", "seats", 4, "label", "B",
                       "category", "gold", "seats", 4);
    h_assert_status(r, 201, "create screen");
    return (uint64_t)h_jint(r->json, "id");
}

static uint64_t movie_new(const user *admin, const char *title, const char *genre,
                          const char *language)
{
    h_reply *r = h_api("POST", "/api/movies", admin->token, "{s:s, s:i, s:s, s:s}", "title", title,
                       "duration_min", 120, "genre", genre, "language", language);
    h_assert_status(r, 201, "create movie");
    return (uint64_t)h_jint(r->json, "id");
}

/* A showtime starting at `epoch_s` (UTC, whole seconds). */
static uint64_t showtime_priced(const user *admin, uint64_t movie, uint64_t screen, int64_t epoch_s,
                                json_int_t silver, json_int_t gold)
{
    char when[32];
    time_t t = (time_t)epoch_s;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
    h_reply *r = h_api("POST", "/api/showtimes", admin->token, "{s:I, s:I, s:s, s:{s:I, s:I}}",
                       "movie_id", (json_int_t)movie, "screen_id", (json_int_t)screen, "start_time",
                       when, "prices", "silver", silver, "gold", gold);
    h_assert_status(r, 201, "create showtime");
    return (uint64_t)h_jint(r->json, "id");
}

static uint64_t showtime_at(const user *admin, uint64_t movie, uint64_t screen, int64_t epoch_s)
{
    return showtime_priced(admin, movie, screen, epoch_s, SILVER, GOLD);
}

/* A showtime `in_s` seconds from now. */
static uint64_t showtime_in(const user *admin, uint64_t movie, uint64_t screen, int64_t in_s)
{
    return showtime_at(admin, movie, screen, (int64_t)time(NULL) + in_s);
}

/* Sleeps until the wall clock is past `epoch_s` (plus a little). */
static void wait_started(int64_t epoch_s)
{
    while ((int64_t)time(NULL) <= epoch_s)
        h_sleep_ms(100);
    h_sleep_ms(200);
}

/* ---- Seats ---------------------------------------------------------------------------- */

static json_t *labels(const char *csv)
{
    json_t *a = json_array();
    char buf[256];
    snprintf(buf, sizeof(buf), "%s", csv);
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t != NULL;
         t = strtok_r(NULL, ",", &save))
        json_array_append_new(a, json_string(t));
    return a;
}

static uint64_t hold(const user *u, uint64_t showtime, const char *csv)
{
    h_reply *r = h_api("POST", "/api/bookings/reserve", u->token, "{s:I, s:o}", "showtime_id",
                       (json_int_t)showtime, "seats", labels(csv));
    h_assert_status(r, 201, "reserve");
    return (uint64_t)h_jint(r->json, "hold_id");
}

static uint64_t book(const user *u, uint64_t showtime, const char *csv)
{
    uint64_t h = hold(u, showtime, csv);
    h_reply *r = h_api("POST", "/api/bookings/confirm", u->token, "{s:I, s:{s:s}}", "hold_id",
                       (json_int_t)h, "payment", "method", "upi");
    h_assert_status(r, 201, "confirm");
    return (uint64_t)h_jint(r->json, "booking_id");
}

/* ---- Pricing answers ------------------------------------------------------------------- */

static json_t *suggest(const user *admin, uint64_t showtime)
{
    h_reply *r =
        h_api("GET", P("/api/pricing/suggest?showtime_id=%" PRIu64, showtime), admin->token, NULL);
    h_assert_status(r, 200, "pricing suggestion");
    cr_assert_eq((uint64_t)h_jint(r->json, "showtime_id"), showtime);
    cr_assert_str_eq(h_jstr(r->json, "currency"), "INR");
    h_jstr(r->json, "generated_at");
    return r->json;
}

static json_t *category(const json_t *answer, const char *name)
{
    json_t *cats = h_jget(answer, "categories");
    for (size_t i = 0; i < json_array_size(cats); i++) {
        json_t *c = json_array_get(cats, i);
        if (strcmp(h_jstr(c, "name"), name) == 0)
            return c;
    }
    cr_assert_fail("no category %s in %s", name, json_dumps(answer, JSON_COMPACT));
    return NULL;
}

static json_t *factor_of(const json_t *cat, const char *name)
{
    json_t *f = h_jget(cat, "factors");
    for (size_t i = 0; i < json_array_size(f); i++) {
        json_t *x = json_array_get(f, i);
        if (strcmp(h_jstr(x, "name"), name) == 0)
            return x;
    }
    cr_assert_fail("no factor %s", name);
    return NULL;
}

static json_int_t effect(const json_t *cat, const char *name)
{
    return h_jint(factor_of(cat, name), "effect_percent");
}

static double value_of(const json_t *cat, const char *name)
{
    json_t *v = h_jget(factor_of(cat, name), "value");
    cr_assert(json_is_number(v), "factor %s: value is not a number", name);
    return json_number_value(v);
}

static const char *reason_of(const json_t *cat, const char *name)
{
    return h_jstr(factor_of(cat, name), "reason");
}

/* The price the docs' rounding rule gives: toward the current price, to a
 * multiple of 500, within 0..100,000,000. */
static json_int_t rounded(json_int_t current, json_int_t change)
{
    if (change == 0 || current == 0)
        return current;
    json_int_t scaled = current * (100 + change), p;
    if (change > 0) {
        p = scaled / 50000 * 500;
        p = p < current ? current : p > 100000000 ? 100000000 : p;
    } else {
        p = (scaled + 49999) / 50000 * 500;
        p = p > current ? current : p;
    }
    return p;
}

/* Checks what every category answer must satisfy: three factors, the
 * change is their sum clamped to -30..+50, the price follows from it, the
 * occupancy value is the seat counts' ratio. */
static void category_consistent(const json_t *cat)
{
    cr_assert_eq(h_jlen(cat, "factors"), 3, "three factors");
    json_int_t sum = effect(cat, "occupancy") + effect(cat, "time_to_start") +
                     effect(cat, "comparable_sell_through");
    json_int_t want = sum < -30 ? -30 : sum > 50 ? 50 : sum;
    cr_assert_eq(h_jint(cat, "change_percent"), want, "%s: change %d, factors sum %d",
                 h_jstr(cat, "name"), (int)h_jint(cat, "change_percent"), (int)sum);
    cr_assert_eq(h_jint(cat, "suggested_price"),
                 rounded(h_jint(cat, "current_price"), h_jint(cat, "change_percent")),
                 "%s: suggested %d from %d at %d%%", h_jstr(cat, "name"),
                 (int)h_jint(cat, "suggested_price"), (int)h_jint(cat, "current_price"),
                 (int)h_jint(cat, "change_percent"));
    json_int_t sale = h_jint(cat, "seats_for_sale");
    json_int_t taken = h_jint(cat, "seats_held") + h_jint(cat, "seats_sold");
    double occ = sale > 0 ? (double)(taken * 1000 / sale) / 1000.0 : 0.0;
    cr_assert(fabs(value_of(cat, "occupancy") - occ) < 1e-9, "%s: occupancy %g, seats say %g",
              h_jstr(cat, "name"), value_of(cat, "occupancy"), occ);
    for (size_t i = 0; i < 3; i++)
        cr_assert(strlen(h_jstr(json_array_get(h_jget(cat, "factors"), i), "reason")) > 10);
}

/* ===================================================================================== */
/* Pricing                                                                               */
/* ===================================================================================== */

/* Occupancy (held + sold over seats for sale) raises the price by its band:
 * 50 % +5, 75 % +15, 90 % +25; far from the start and with no comparable
 * showtime, nothing else moves it. */
Test(advice, occupancy_raises_the_suggestion)
{
    user admin = start_with_admin(NULL);
    uint64_t th = theater_new(&admin, "Usher Andheri", "Mumbai");
    uint64_t sc = screen_new(&admin, th);
    uint64_t mv = movie_new(&admin, "Night Train", "thriller", "hindi");
    uint64_t st = showtime_in(&admin, mv, sc, 5 * DAY);
    user u = register_user("asha@example.com");

    json_t *a = suggest(&admin, st);
    json_t *gold = category(a, "gold");
    cr_assert_eq(h_jint(gold, "change_percent"), 0, "an empty showtime 5 days out: no change");
    cr_assert_eq(h_jint(gold, "suggested_price"), GOLD);
    cr_assert_eq(h_jint(factor_of(gold, "comparable_sell_through"), "sample"), 0);
    cr_assert_str_eq(h_jstr(factor_of(gold, "comparable_sell_through"), "scope"), "none");
    category_consistent(gold);

    /* gold: 2 held + 1 sold of 4 = 75 % -> +15; silver: 2 sold of 4 = 50 % -> +5 */
    hold(&u, st, "B1,B2");
    book(&u, st, "B3");
    book(&u, st, "A1,A2");
    a = suggest(&admin, st);
    gold = category(a, "gold");
    json_t *silver = category(a, "silver");
    cr_assert_eq(h_jint(gold, "seats_held"), 2);
    cr_assert_eq(h_jint(gold, "seats_sold"), 1);
    cr_assert_eq(h_jint(gold, "seats_for_sale"), 4);
    cr_assert_eq(effect(gold, "occupancy"), 15, "75 %% occupancy: %s",
                 reason_of(gold, "occupancy"));
    cr_assert(fabs(value_of(gold, "occupancy") - 0.75) < 1e-9);
    cr_assert(strstr(reason_of(gold, "occupancy"), "75% of gold seats") != NULL, "%s",
              reason_of(gold, "occupancy"));
    cr_assert_eq(effect(gold, "time_to_start"), 0);
    cr_assert_eq(h_jint(gold, "change_percent"), 15);
    cr_assert_eq(h_jint(gold, "suggested_price"), 28500); /* 25000 * 1.15 = 28750, down to 500s */
    cr_assert_eq(effect(silver, "occupancy"), 5);
    cr_assert_eq(h_jint(silver, "suggested_price"), 15500); /* 15750 */
    category_consistent(gold);
    category_consistent(silver);

    /* the last gold seat: 100 % -> +25 */
    book(&u, st, "B4");
    gold = category(suggest(&admin, st), "gold");
    cr_assert_eq(effect(gold, "occupancy"), 25);
    cr_assert_eq(h_jint(gold, "suggested_price"), 31000); /* 31250 */
    category_consistent(gold);
    h_done();
}

/* Comparable past showtimes: the same movie's that sold out raise the
 * price, poor sell-through cuts it, fewer than three halve the effect, and
 * without any of the same movie the same theater's, then all, are used. */
Test(advice, comparable_sell_through_raises_and_cuts)
{
    user admin = start_with_admin(NULL);
    uint64_t th = theater_new(&admin, "Usher Andheri", "Mumbai");
    uint64_t th2 = theater_new(&admin, "Usher Koramangala", "Bengaluru");
    uint64_t sc = screen_new(&admin, th), sc2 = screen_new(&admin, th2);
    uint64_t hit = movie_new(&admin, "Hit", "thriller", "hindi");
    uint64_t flop = movie_new(&admin, "Flop", "drama", "hindi");
    uint64_t pair = movie_new(&admin, "Pair", "comedy", "tamil");
    uint64_t fresh = movie_new(&admin, "Fresh", "comedy", "tamil");
    user u = register_user("ravi@example.com");

    /* Past showtimes (started by the time we ask): Hit 3 sold out, Flop 3
     * with 1, 0, 0 of 8 sold, Pair 1 sold out. */
    int64_t start = (int64_t)time(NULL) + 6;
    uint64_t past[7];
    for (int i = 0; i < 3; i++)
        past[i] = showtime_at(&admin, hit, sc, start);
    for (int i = 3; i < 6; i++)
        past[i] = showtime_at(&admin, flop, sc, start);
    past[6] = showtime_at(&admin, pair, sc, start);
    for (int i = 0; i < 3; i++)
        book(&u, past[i], ALL_SEATS);
    book(&u, past[3], "A1");
    book(&u, past[6], ALL_SEATS);
    uint64_t t_hit = showtime_in(&admin, hit, sc, 5 * DAY);
    uint64_t t_flop = showtime_in(&admin, flop, sc, 5 * DAY);
    uint64_t t_pair = showtime_in(&admin, pair, sc, 5 * DAY);
    uint64_t t_theater = showtime_in(&admin, fresh, sc, 5 * DAY); /* no past Fresh showtime */
    uint64_t t_all = showtime_in(&admin, fresh, sc2, 5 * DAY);    /* nor one at Koramangala */
    wait_started(start);

    json_t *gold = category(suggest(&admin, t_hit), "gold");
    json_t *f = factor_of(gold, "comparable_sell_through");
    cr_assert_eq(h_jint(f, "sample"), 3);
    cr_assert_str_eq(h_jstr(f, "scope"), "same_movie");
    cr_assert(fabs(value_of(gold, "comparable_sell_through") - 1.0) < 1e-9);
    cr_assert_eq(effect(gold, "comparable_sell_through"), 25, "sold out: %s",
                 reason_of(gold, "comparable_sell_through"));
    cr_assert(strstr(reason_of(gold, "comparable_sell_through"), "3 comparable") != NULL);
    cr_assert(strstr(reason_of(gold, "comparable_sell_through"), "100%") != NULL);
    cr_assert_eq(h_jint(gold, "suggested_price"), 31000);
    category_consistent(gold);
    category_consistent(category(suggest(&admin, t_hit), "silver"));

    /* Flop: (125 + 0 + 0) / 3 = 41 per mille sold -> -20 */
    gold = category(suggest(&admin, t_flop), "gold");
    cr_assert_eq(h_jint(factor_of(gold, "comparable_sell_through"), "sample"), 3);
    cr_assert(fabs(value_of(gold, "comparable_sell_through") - 0.041) < 1e-9, "value %g",
              value_of(gold, "comparable_sell_through"));
    cr_assert_eq(effect(gold, "comparable_sell_through"), -20);
    cr_assert_eq(h_jint(gold, "change_percent"), -20);
    cr_assert_eq(h_jint(gold, "suggested_price"), 20000);
    category_consistent(gold);

    /* Pair: one sold-out showtime: +25 halved toward zero = +12 */
    gold = category(suggest(&admin, t_pair), "gold");
    cr_assert_eq(h_jint(factor_of(gold, "comparable_sell_through"), "sample"), 1);
    cr_assert_eq(effect(gold, "comparable_sell_through"), 12);
    cr_assert(strstr(reason_of(gold, "comparable_sell_through"), "half") != NULL);
    cr_assert_eq(h_jint(gold, "suggested_price"), 28000);
    category_consistent(gold);

    /* Fresh at Andheri: the theater's 7 past showtimes, (3000 + 125 + 1000) / 7 = 589 -> 0 */
    gold = category(suggest(&admin, t_theater), "gold");
    f = factor_of(gold, "comparable_sell_through");
    cr_assert_str_eq(h_jstr(f, "scope"), "same_theater");
    cr_assert_eq(h_jint(f, "sample"), 7);
    cr_assert(fabs(value_of(gold, "comparable_sell_through") - 0.589) < 1e-9);
    cr_assert_eq(effect(gold, "comparable_sell_through"), 0);
    /* Fresh at Koramangala: nothing of the movie or the theater: all 7 */
    f = factor_of(category(suggest(&admin, t_all), "gold"), "comparable_sell_through");
    cr_assert_str_eq(h_jstr(f, "scope"), "all");
    cr_assert_eq(h_jint(f, "sample"), 7);

    /* A started showtime has nothing to price. */
    h_reply *r =
        h_api("GET", P("/api/pricing/suggest?showtime_id=%" PRIu64, past[0]), admin.token, NULL);
    h_assert_problem_json(r, 409, "sales-closed", "showtime_id");
    h_done();
}

/* The total is clamped to -30 %..+50 %, and the price to 100,000,000. */
Test(advice, suggestions_are_clamped)
{
    user admin = start_with_admin(NULL);
    uint64_t th = theater_new(&admin, "Usher Andheri", "Mumbai");
    uint64_t sc = screen_new(&admin, th);
    uint64_t hit = movie_new(&admin, "Hit", "thriller", "hindi");
    uint64_t flop = movie_new(&admin, "Flop", "drama", "hindi");
    user u = register_user("meera@example.com");
    int64_t start = (int64_t)time(NULL) + 5;
    for (int i = 0; i < 3; i++)
        book(&u, showtime_at(&admin, hit, sc, start), ALL_SEATS);
    for (int i = 0; i < 3; i++)
        showtime_at(&admin, flop, sc, start); /* nothing sold */
    /* Both targets start within 24 h. */
    int64_t soon = (int64_t)time(NULL) + 3 * 3600;
    uint64_t t_hit = showtime_priced(&admin, hit, sc, soon, SILVER, 99000000);
    uint64_t t_flop = showtime_at(&admin, flop, sc, soon);
    book(&u, t_hit, "B1,B2,B3,B4");
    wait_started(start);

    /* Hit gold: occupancy 100 % +25, within 24 h at 75 %+ +10, sold-out
     * comparables +25 = +60 -> +50; 99,000,000 * 1.5 -> 100,000,000. */
    json_t *a = suggest(&admin, t_hit);
    json_t *gold = category(a, "gold");
    cr_assert_eq(effect(gold, "occupancy"), 25);
    cr_assert_eq(effect(gold, "time_to_start"), 10, "%s", reason_of(gold, "time_to_start"));
    cr_assert_eq(effect(gold, "comparable_sell_through"), 25);
    cr_assert_eq(h_jint(gold, "change_percent"), 50);
    cr_assert_eq(h_jint(gold, "suggested_price"), 100000000);
    double hours = value_of(gold, "time_to_start");
    cr_assert(hours > 2.5 && hours <= 3.0, "3 h ahead, said %g", hours);
    category_consistent(gold);
    /* Hit silver: 0 % within 24 h -15, comparables +25 = +10 */
    json_t *silver = category(a, "silver");
    cr_assert_eq(effect(silver, "time_to_start"), -15);
    cr_assert_eq(h_jint(silver, "change_percent"), 10);
    cr_assert_eq(h_jint(silver, "suggested_price"), 16500);
    category_consistent(silver);

    /* Flop: 0 % within 24 h -15, nothing sold before -20 = -35 -> -30 */
    a = suggest(&admin, t_flop);
    for (int i = 0; i < 2; i++) {
        json_t *c = category(a, i == 0 ? "silver" : "gold");
        cr_assert_eq(effect(c, "time_to_start"), -15);
        cr_assert_eq(effect(c, "comparable_sell_through"), -20);
        cr_assert_eq(h_jint(c, "change_percent"), -30);
        category_consistent(c);
    }
    cr_assert_eq(h_jint(category(a, "silver"), "suggested_price"), 10500);
    cr_assert_eq(h_jint(category(a, "gold"), "suggested_price"), 17500);
    h_done();
}

Test(advice, pricing_errors)
{
    user admin = start_with_admin(NULL);
    user u = register_user("nobody@example.com");
    h_reply *r = h_api("GET", "/api/pricing/suggest", admin.token, NULL);
    h_assert_problem_json(r, 400, "invalid-field", "showtime_id");
    const char *bad[] = {"abc", "0", "-1", "1x", "99999999999999999999"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        r = h_api("GET", P("/api/pricing/suggest?showtime_id=%s", bad[i]), admin.token, NULL);
        h_assert_problem_json(r, 400, "invalid-field", "showtime_id");
    }
    r = h_api("GET", "/api/pricing/suggest?showtime_id=424242", admin.token, NULL);
    h_assert_problem_json(r, 404, "not-found", "showtime_id");
    r = h_api("GET", "/api/pricing/suggest?showtime_id=1", u.token, NULL);
    h_assert_problem_json(r, 403, "forbidden", NULL);
    r = h_api("GET", "/api/pricing/suggest?showtime_id=1", NULL, NULL);
    h_assert_problem_json(r, 401, "unauthorized", NULL);
    r = h_api("POST", "/api/pricing/suggest?showtime_id=1", admin.token, NULL);
    h_assert_problem_json(r, 405, "method-not-allowed", NULL);
    h_done();
}

/* ===================================================================================== */
/* Recommendations                                                                       */
/* ===================================================================================== */

static json_t *recommend(const user *u, const char *query)
{
    h_reply *r = h_api("GET", P("/api/recommendations%s", query), u->token, NULL);
    h_assert_status(r, 200, "recommendations");
    h_jint(r->json, "limit");
    h_jget(r->json, "based_on");
    return r->json;
}

/* The item recommending `movie`, or NULL; its rank in *rank. */
static json_t *item_of(const json_t *answer, uint64_t movie, size_t *rank)
{
    json_t *items = h_jget(answer, "items");
    for (size_t i = 0; i < json_array_size(items); i++) {
        json_t *it = json_array_get(items, i);
        if ((uint64_t)h_jint(h_jget(it, "movie"), "id") == movie) {
            if (rank != NULL)
                *rank = i;
            return it;
        }
    }
    return NULL;
}

static json_t *item_must(const json_t *answer, uint64_t movie, size_t *rank)
{
    json_t *it = item_of(answer, movie, rank);
    cr_assert_not_null(it, "movie %" PRIu64 " not recommended: %s", movie,
                       json_dumps(answer, JSON_COMPACT));
    return it;
}

static const char *reason(const json_t *item)
{
    return h_jstr(item, "reason");
}

/* Every item: a showtime in the future with a free seat, a score equal to
 * its parts, and a reason. */
static void items_sane(const json_t *answer)
{
    json_t *items = h_jget(answer, "items");
    char now[32];
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(now, sizeof(now), "%Y-%m-%dT%H:%M:%SZ", &tm);
    for (size_t i = 0; i < json_array_size(items); i++) {
        json_t *it = json_array_get(items, i);
        json_t *show = h_jget(it, "showtime");
        cr_assert(strcmp(h_jstr(show, "start_time"), now) > 0, "a showtime not in the future: %s",
                  json_dumps(it, JSON_COMPACT));
        cr_assert(h_jint(show, "seats_available") > 0);
        json_t *p = h_jget(it, "score_parts");
        cr_assert_eq(h_jint(it, "score"), h_jint(p, "genre") + h_jint(p, "language") +
                                              h_jint(p, "theater") + h_jint(p, "popularity"));
        cr_assert(strlen(reason(it)) > 5);
    }
}

/* A customer who booked a thriller in English at Andheri (Mumbai) gets the
 * other English thriller first, then what plays at Andheri, then the rest
 * of Mumbai; the movie already booked comes last; nothing from Bengaluru. */
Test(advice, recommendations_follow_genre_language_and_theater)
{
    user admin = start_with_admin(ARGS("--shards", "3"));
    uint64_t andheri = theater_new(&admin, "Usher Andheri", "Mumbai");
    uint64_t colaba = theater_new(&admin, "Usher Colaba", "Mumbai");
    uint64_t kora = theater_new(&admin, "Usher Koramangala", "Bengaluru");
    uint64_t s_and = screen_new(&admin, andheri), s_col = screen_new(&admin, colaba);
    uint64_t s_kor = screen_new(&admin, kora);
    uint64_t booked = movie_new(&admin, "Booked", "thriller", "english");
    uint64_t thriller = movie_new(&admin, "Thriller Two", "Thriller", "English");
    uint64_t comedy = movie_new(&admin, "Comedy", "comedy", "hindi");
    uint64_t drama = movie_new(&admin, "Drama", "drama", "hindi");
    uint64_t faraway = movie_new(&admin, "Far Away", "romance", "tamil");
    uint64_t st_booked = showtime_in(&admin, booked, s_and, 2 * DAY);
    showtime_in(&admin, booked, s_and, 4 * DAY);
    uint64_t st_thr = showtime_in(&admin, thriller, s_col, 3 * DAY);
    showtime_in(&admin, thriller, s_kor, 1 * DAY); /* sooner, but in Bengaluru */
    uint64_t st_com = showtime_in(&admin, comedy, s_and, 3 * DAY);
    showtime_in(&admin, drama, s_col, 3 * DAY);
    showtime_in(&admin, faraway, s_kor, 1 * DAY);
    user u = register_user("kiran@example.com");
    book(&u, st_booked, "A1");

    json_t *a = recommend(&u, "");
    items_sane(a);
    json_t *basis = h_jget(a, "based_on");
    cr_assert_eq(h_jint(basis, "bookings"), 1);
    cr_assert_eq(h_jlen(basis, "cities"), 1);
    cr_assert_str_eq(json_string_value(json_array_get(h_jget(basis, "cities"), 0)), "Mumbai");
    cr_assert_eq(h_jlen(a, "items"), 4, "four movies play in Mumbai: %s",
                 json_dumps(a, JSON_COMPACT));
    size_t r_thr, r_com, r_dra, r_boo;
    json_t *thr = item_must(a, thriller, &r_thr);
    json_t *com = item_must(a, comedy, &r_com);
    json_t *dra = item_must(a, drama, &r_dra);
    json_t *boo = item_must(a, booked, &r_boo);
    cr_assert_null(item_of(a, faraway, NULL), "Bengaluru only: not near this customer");
    cr_assert(r_thr == 0 && r_com == 1 && r_dra == 2 && r_boo == 3, "order %zu %zu %zu %zu", r_thr,
              r_com, r_dra, r_boo);
    /* Thriller Two: genre +3 and language +2 (case-insensitive), at Colaba */
    cr_assert_eq(h_jint(thr, "score"), 5);
    cr_assert_eq(h_jint(h_jget(thr, "score_parts"), "genre"), 3);
    cr_assert_eq(h_jint(h_jget(thr, "score_parts"), "language"), 2);
    cr_assert_eq((uint64_t)h_jint(h_jget(thr, "showtime"), "id"), st_thr,
                 "the Mumbai showtime, not the sooner one in Bengaluru");
    cr_assert(strstr(reason(thr), "Thriller") != NULL && strstr(reason(thr), "English") != NULL,
              "reason: %s", reason(thr));
    /* Comedy: at Andheri, where the customer booked: theater +2 */
    cr_assert_eq(h_jint(com, "score"), 2);
    cr_assert_eq((uint64_t)h_jint(h_jget(com, "showtime"), "id"), st_com);
    cr_assert(strstr(reason(com), "Usher Andheri") != NULL, "reason: %s", reason(com));
    cr_assert_eq(h_jint(dra, "score"), 0);
    cr_assert_str_eq(reason(dra), "showing soon near you");
    /* The movie already booked: last, another showtime with free seats */
    cr_assert(json_is_true(h_jget(boo, "booked_before")));
    cr_assert(strstr(reason(boo), "already booked") != NULL, "reason: %s", reason(boo));

    /* limit */
    a = recommend(&u, "?limit=2");
    cr_assert_eq(h_jlen(a, "items"), 2);
    cr_assert_eq(h_jint(a, "limit"), 2);
    /* city= replaces the cities of the history */
    a = recommend(&u, "?city=bengaluru");
    items_sane(a);
    cr_assert_eq(h_jlen(a, "items"), 2, "%s", json_dumps(a, JSON_COMPACT));
    thr = item_must(a, thriller, &r_thr);
    cr_assert_eq(r_thr, 0);
    cr_assert_eq((uint64_t)h_jint(h_jget(thr, "showtime"), "theater_id"), kora);
    item_must(a, faraway, NULL);
    a = recommend(&u, "?city=Atlantis");
    cr_assert_eq(h_jlen(a, "items"), 0);

    /* Five more bookings of the thriller at Andheri: points count five
     * bookings per signal at most, the reason tells the real number. */
    const char *more[] = {"A2", "A3", "A4", "B1", "B2"};
    for (int i = 0; i < 5; i++)
        book(&u, st_booked, more[i]);
    a = recommend(&u, "");
    items_sane(a);
    cr_assert_eq(h_jint(h_jget(a, "based_on"), "bookings"), 6);
    thr = item_must(a, thriller, NULL);
    cr_assert_eq(h_jint(h_jget(thr, "score_parts"), "genre"), 15);
    cr_assert_eq(h_jint(h_jget(thr, "score_parts"), "language"), 10);
    com = item_must(a, comedy, NULL);
    cr_assert_eq(h_jint(h_jget(com, "score_parts"), "theater"), 10);
    cr_assert(strstr(reason(com), "where you booked 6 times before") != NULL, "reason: %s",
              reason(com));
    h_done();
}

/* A cancelled booking is no history: the customer is a newcomer again. */
Test(advice, cancelled_bookings_do_not_count)
{
    user admin = start_with_admin(NULL);
    uint64_t th = theater_new(&admin, "Usher Andheri", "Mumbai");
    uint64_t sc = screen_new(&admin, th);
    uint64_t one = movie_new(&admin, "One", "thriller", "english");
    uint64_t two = movie_new(&admin, "Two", "thriller", "english");
    uint64_t st1 = showtime_in(&admin, one, sc, 3 * DAY);
    showtime_in(&admin, two, sc, 3 * DAY);
    user u = register_user("lata@example.com");
    uint64_t b = book(&u, st1, "A1");
    json_t *a = recommend(&u, "");
    cr_assert_eq(h_jint(h_jget(a, "based_on"), "bookings"), 1);
    cr_assert_eq(h_jint(item_must(a, two, NULL), "score"), 7, "genre, language, theater");

    h_reply *r = h_api("POST", P("/api/bookings/%" PRIu64 "/cancel", b), u.token, NULL);
    h_assert_status(r, 200, "cancel");
    a = recommend(&u, "");
    items_sane(a);
    cr_assert_eq(h_jint(h_jget(a, "based_on"), "bookings"), 0);
    cr_assert_eq(h_jlen(h_jget(a, "based_on"), "cities"), 0);
    json_t *it = item_must(a, two, NULL);
    cr_assert_eq(h_jint(it, "score"), 0);
    cr_assert(strstr(reason(it), "thriller") == NULL, "reason: %s", reason(it));
    it = item_must(a, one, NULL);
    cr_assert(json_is_false(h_jget(it, "booked_before")), "a cancelled booking is not a booking");
    cr_assert_str_eq(reason(it), "showing soon");
    h_done();
}

/* Someone with no history gets what sells: by seats sold, each movie with
 * its soonest showtime that still has a free seat. */
Test(advice, newcomers_get_popular_showtimes)
{
    user admin = start_with_admin(NULL);
    uint64_t th = theater_new(&admin, "Usher Andheri", "Mumbai");
    uint64_t th2 = theater_new(&admin, "Usher Koramangala", "Bengaluru");
    uint64_t sc = screen_new(&admin, th), sc2 = screen_new(&admin, th2);
    uint64_t big = movie_new(&admin, "Big", "action", "hindi");
    uint64_t some = movie_new(&admin, "Some", "drama", "hindi");
    uint64_t none = movie_new(&admin, "None", "drama", "tamil");
    uint64_t big_full = showtime_in(&admin, big, sc, 1 * DAY);
    uint64_t big_next = showtime_in(&admin, big, sc, 2 * DAY);
    uint64_t some_st = showtime_in(&admin, some, sc2, 2 * DAY);
    showtime_in(&admin, none, sc, 2 * DAY);
    user fan = register_user("fan@example.com");
    book(&fan, big_full, ALL_SEATS);
    book(&fan, big_next, "A1,A2,A3,A4");
    book(&fan, some_st, "A1");

    user n = register_user("new@example.com");
    json_t *a = recommend(&n, "");
    items_sane(a);
    cr_assert_eq(h_jint(h_jget(a, "based_on"), "bookings"), 0);
    size_t rb, rs, rn;
    json_t *b = item_must(a, big, &rb), *s = item_must(a, some, &rs), *x = item_must(a, none, &rn);
    cr_assert(rb == 0 && rs == 1 && rn == 2, "by seats sold: %zu %zu %zu", rb, rs, rn);
    cr_assert_eq(h_jint(b, "seats_sold"), 12);
    cr_assert_eq(h_jint(h_jget(b, "score_parts"), "popularity"), 1, "12 seats sold: one point");
    cr_assert_eq((uint64_t)h_jint(h_jget(b, "showtime"), "id"), big_next,
                 "the sold-out showtime is not offered");
    cr_assert_str_eq(reason(b), "popular now: 12 seats sold");
    cr_assert_str_eq(reason(s), "popular now");
    cr_assert_str_eq(reason(x), "showing soon");

    a = recommend(&n, "?city=Mumbai");
    cr_assert_eq(h_jlen(a, "items"), 2);
    cr_assert_str_eq(reason(item_must(a, big, NULL)), "popular near you: 12 seats sold");
    cr_assert_null(item_of(a, some, NULL));
    h_done();
}

/* A showtime that has started is never recommended, however popular. */
Test(advice, past_showtimes_are_never_recommended)
{
    user admin = start_with_admin(NULL);
    uint64_t th = theater_new(&admin, "Usher Andheri", "Mumbai");
    uint64_t sc = screen_new(&admin, th);
    uint64_t gone = movie_new(&admin, "Gone", "action", "hindi");
    uint64_t again = movie_new(&admin, "Again", "action", "hindi");
    int64_t start = (int64_t)time(NULL) + 4;
    uint64_t gone_st = showtime_at(&admin, gone, sc, start);
    uint64_t again_past = showtime_at(&admin, again, sc, start);
    uint64_t again_next = showtime_in(&admin, again, sc, 2 * DAY);
    user fan = register_user("fan@example.com");
    book(&fan, gone_st, "A1,A2,A3");
    book(&fan, again_past, "A1");
    user u = register_user("late@example.com");
    json_t *a = recommend(&u, "");
    cr_assert_not_null(item_of(a, gone, NULL), "before the start it is offered");
    wait_started(start);

    a = recommend(&u, "");
    items_sane(a);
    cr_assert_null(item_of(a, gone, NULL), "a started showtime was recommended: %s",
                   json_dumps(a, JSON_COMPACT));
    json_t *it = item_must(a, again, NULL);
    cr_assert_eq((uint64_t)h_jint(h_jget(it, "showtime"), "id"), again_next);
    cr_assert_eq(h_jint(it, "seats_sold"), 0, "only upcoming showtimes count as popular");
    h_done();
}

Test(advice, recommendation_errors)
{
    start_with_admin(NULL);
    user u = register_user("err@example.com");
    const char *bad_limit[] = {"0", "51", "abc", "-1", "10x", ""};
    for (size_t i = 0; i < sizeof(bad_limit) / sizeof(bad_limit[0]); i++) {
        h_reply *r = h_api("GET", P("/api/recommendations?limit=%s", bad_limit[i]), u.token, NULL);
        h_assert_problem_json(r, 400, "invalid-field", "limit");
    }
    char longcity[300];
    memset(longcity, 'x', 200);
    longcity[200] = '\0';
    const char *bad_city[] = {"", "%20%20", "%zz", "a%00b", longcity};
    for (size_t i = 0; i < sizeof(bad_city) / sizeof(bad_city[0]); i++) {
        h_reply *r = h_api("GET", P("/api/recommendations?city=%s", bad_city[i]), u.token, NULL);
        h_assert_problem_json(r, 400, "invalid-field", "city");
    }
    h_reply *r = h_api("GET", "/api/recommendations", NULL, NULL);
    h_assert_problem_json(r, 401, "unauthorized", NULL);
    r = h_api("GET", "/api/recommendations", "not.a.token", NULL);
    h_assert_problem_json(r, 401, "invalid-token", "authorization");
    /* an empty catalog: nothing to recommend, not an error */
    json_t *a = recommend(&u, "?limit=50");
    cr_assert_eq(h_jlen(a, "items"), 0);
    cr_assert_eq(h_jint(a, "limit"), 50);
    h_done();
}

/* ===================================================================================== */
/* Concurrency                                                                           */
/* ===================================================================================== */

typedef struct storm {
    const char *admin_token, *user_token;
    uint64_t showtime;
    int id, ok, bad;
} storm;

enum { STORM_THREADS = 6, STORM_REQUESTS = 40 };

/* Each thread: a fresh connection per request, pricing and recommendations
 * in turn; every third connection sends six and resets at once. */
static void *storm_run(void *arg)
{
    storm *s = arg;
    h_client *c = malloc(sizeof(*c));
    if (c == NULL)
        return NULL;
    for (int i = 0; i < STORM_REQUESTS; i++) {
        int fd = h_tcp_connect(h_srv.port, 0);
        if (fd < 0) {
            s->bad++;
            continue;
        }
        h_cli_init(c, fd);
        bool pricing = (i + s->id) % 2 == 0;
        char path[128];
        if (pricing)
            snprintf(path, sizeof(path), "/api/pricing/suggest?showtime_id=%" PRIu64, s->showtime);
        else
            snprintf(path, sizeof(path), "/api/recommendations?limit=5");
        const char *token = pricing ? s->admin_token : s->user_token;
        if (i % 3 == 2) {
            /* Six requests pipelined, then a reset: the first answers fail
             * to be written, the connection closes while the others are
             * still away at the shards (orphaned: freed when they return). */
            char req[2048], all[6 * 2048];
            snprintf(req, sizeof(req),
                     "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer %s\r\n\r\n", path,
                     token);
            all[0] = '\0';
            for (int k = 0; k < 6; k++)
                strcat(all, req);
            h_cli_send_raw(c, all, strlen(all));
            h_sleep_ms(2);
            struct linger lg = {.l_onoff = 1, .l_linger = 0};
            setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
        } else {
            int rc;
            h_reply *r = h_send_raw(c, "GET", path, token, NULL, NULL, &rc);
            if (r != NULL && r->status == 200 && r->json != NULL &&
                json_is_array(json_object_get(r->json, pricing ? "categories" : "items")))
                s->ok++;
            else
                s->bad++;
        }
        h_cli_close(c);
    }
    free(c);
    return NULL;
}

Test(advice, concurrent_requests_and_hang_ups_on_four_shards)
{
    user admin = start_with_admin(ARGS("--shards", "4"));
    uint64_t th = theater_new(&admin, "Usher Andheri", "Mumbai");
    uint64_t sc = screen_new(&admin, th);
    uint64_t mv = movie_new(&admin, "Crowd", "action", "hindi");
    uint64_t target = 0;
    user u = register_user("crowd@example.com");
    for (int i = 0; i < 8; i++) { /* spread over the shards */
        uint64_t st = showtime_in(&admin, mv, sc, (i + 1) * DAY);
        book(&u, st, "A1");
        target = st;
    }
    storm s[STORM_THREADS];
    pthread_t t[STORM_THREADS];
    for (int i = 0; i < STORM_THREADS; i++) {
        s[i] =
            (storm){.admin_token = admin.token, .user_token = u.token, .showtime = target, .id = i};
        cr_assert_eq(pthread_create(&t[i], NULL, storm_run, &s[i]), 0);
    }
    int ok = 0, bad = 0;
    for (int i = 0; i < STORM_THREADS; i++) {
        pthread_join(t[i], NULL);
        ok += s[i].ok;
        bad += s[i].bad;
    }
    cr_assert_eq(bad, 0, "%d requests failed (%d ok)", bad, ok);
    cr_assert_gt(ok, STORM_THREADS * STORM_REQUESTS / 2);
    h_assert_alive();
    json_t *a = recommend(&u, "");
    cr_assert_eq(h_jint(h_jget(a, "based_on"), "bookings"), 8);
    h_done(); /* a clean stop: no sanitizer report, nothing leaked */
}
