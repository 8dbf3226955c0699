/*
 * ratelimit_api_test.c - usherd's rate limits end to end (the real binary
 * over real sockets, tests/harness.c), each test with small limits of its
 * own (--rate-limit; the harness turns every other limit off):
 *   - 429 rate-limited with Retry-After, RateLimit-Policy and RateLimit
 *     (draft-ietf-httpapi-ratelimit-headers-11 syntax), and the headers on
 *     successful answers (the tighter bucket);
 *   - one user's limit does not limit another; the per-IP limit does;
 *   - after Retry-After seconds the request passes;
 *   - a refused reserve holds no seat and leaves its Idempotency-Key unused,
 *     a refused confirm leaves the hold live;
 *   - login by email (case-insensitive) and by address, before hashing;
 *   - the defaults, /metrics, and bad flags refused at start.
 */
#define _GNU_SOURCE

#include "harness.h"

#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

TestSuite(ratelimit_api, .init = h_suite_init, .fini = h_suite_fini, .timeout = 120);

#define SECRET         "usher-ratelimit-test-secret-0123456789abcdef"
#define ADMIN_EMAIL    "root@usher.test"
#define ADMIN_PASSWORD "admin-password-1"
#define PASSWORD       "password123"

#define ARGS(...) ((const char *const[]){__VA_ARGS__, NULL})

static const char *const server_env[] = {"USHER_JWT_SECRET=" SECRET, NULL};

static void start(const char *const *args)
{
    const char *argv[32];
    int n = 0;
    argv[n++] = "--password-cost";
    argv[n++] = "min";
    for (int i = 0; args != NULL && args[i] != NULL && n < 31; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    h_start_env(argv, server_env);
}

typedef struct user {
    char token[1200];
    uint64_t id;
} user;

static user user_register(const char *email)
{
    user u;
    h_reply *r = h_api("POST", "/api/auth/register", NULL, "{s:s, s:s, s:s}", "email", email,
                       "password", PASSWORD, "name", "Test User");
    h_assert_status(r, 201, "register");
    snprintf(u.token, sizeof(u.token), "%s", h_jstr(r->json, "token"));
    u.id = (uint64_t)h_jint(h_jget(r->json, "user"), "id");
    return u;
}

static h_reply *login(const char *email, const char *password)
{
    return h_api("POST", "/api/auth/login", NULL, "{s:s, s:s}", "email", email, "password",
                 password);
}

/* An administrator (usherd --create-admin before the start), then the
 * server with `args`, and a showtime of 3 rows of 10 silver seats. */
static char g_admin[1200]; /* the admin's token, once start_with_showtime ran */

static uint64_t start_with_showtime(const char *const *args)
{
    const char *env[] = {"USHER_JWT_SECRET=" SECRET, "USHER_ADMIN_PASSWORD=" ADMIN_PASSWORD, NULL};
    char out[4096];
    int st =
        h_run(ARGS("--create-admin", ADMIN_EMAIL, "--password-cost", "min"), env, out, sizeof(out));
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "--create-admin failed: %s", out);
    start(args);
    h_reply *r = login(ADMIN_EMAIL, ADMIN_PASSWORD);
    h_assert_status(r, 200, "admin login");
    char *admin = g_admin;
    snprintf(g_admin, sizeof(g_admin), "%s", h_jstr(r->json, "token"));
    r = h_api("POST", "/api/theaters", admin, "{s:s, s:s}", "name", "Usher Andheri", "city",
              "Mumbai");
    h_assert_status(r, 201, "theater");
    json_int_t theater = h_jint(r->json, "id");
    json_t *layout = json_pack("{s:[s], s:[{s:s,s:s,s:i}, {s:s,s:s,s:i}, {s:s,s:s,s:i}]}",
                               "categories", "silver", "rows", "label", "A", "category", "silver",
                               "seats", 10, "label", "B", "category", "silver", "seats", 10,
                               "label", "C", "category", "silver", "seats", 10);
    r = h_api("POST", "/api/screens", admin, "{s:I, s:s, s:o}", "theater_id", theater, "name",
              "Screen 1", "layout", layout);
    h_assert_status(r, 201, "screen");
    json_int_t screen = h_jint(r->json, "id");
    r = h_api("POST", "/api/movies", admin, "{s:s, s:s, s:i, s:s, s:s, s:s}", "title", "Ushers",
              "description", "A film.", "duration_min", 120, "genre", "drama", "language", "hindi",
              "rating", "UA");
    h_assert_status(r, 201, "movie");
    json_int_t movie = h_jint(r->json, "id");
    char when[32];
    time_t t = time(NULL) + 2 * 86400;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
    r = h_api("POST", "/api/showtimes", admin, "{s:I, s:I, s:s, s:{s:i}}", "movie_id", movie,
              "screen_id", screen, "start_time", when, "prices", "silver", 20000);
    h_assert_status(r, 201, "showtime");
    return (uint64_t)h_jint(r->json, "id");
}

static h_reply *reserve_h(const user *u, uint64_t showtime, const char *seat, const char *headers)
{
    return h_apih("POST", "/api/bookings/reserve", u->token, headers, "{s:I, s:[s]}", "showtime_id",
                  (json_int_t)showtime, "seats", seat);
}

static h_reply *reserve(const user *u, uint64_t showtime, const char *seat)
{
    return reserve_h(u, showtime, seat, NULL);
}

static h_reply *confirm(const user *u, uint64_t hold)
{
    return h_api("POST", "/api/bookings/confirm", u->token, "{s:I, s:{s:s}}", "hold_id",
                 (json_int_t)hold, "payment", "method", "upi");
}

static const char *seat_state(uint64_t showtime, const char *label)
{
    char path[64];
    snprintf(path, sizeof(path), "/api/seats/%" PRIu64, showtime);
    h_reply *r = h_api("GET", path, NULL, NULL);
    h_assert_status(r, 200, "seat map");
    json_t *seats = h_jget(r->json, "seats");
    for (size_t i = 0; i < json_array_size(seats); i++) {
        json_t *s = json_array_get(seats, i);
        if (strcmp(h_jstr(s, "label"), label) == 0)
            return h_jstr(s, "state");
    }
    cr_assert_fail("no seat %s", label);
    return NULL;
}

/* A header's value, asserted present (static buffer per call site is not
 * needed: the caller gives one). */
static const char *header(const h_reply *r, const char *name, char *buf, size_t cap)
{
    cr_assert(h_reply_header(r, name, buf, cap), "no %s header in: %s", name, r->head);
    return buf;
}

/* Asserts RateLimit-Policy `"name";q=Q;w=W` and RateLimit `"name";r=R;t=T`
 * with T in [t_min, t_max]; returns T. */
static long assert_rate_headers(const h_reply *r, const char *name, int q, int w, int remaining,
                                long t_min, long t_max)
{
    char buf[256], want[128];
    snprintf(want, sizeof(want), "\"%s\";q=%d;w=%d", name, q, w);
    cr_assert_str_eq(header(r, "RateLimit-Policy", buf, sizeof(buf)), want, "%s", r->head);
    header(r, "RateLimit", buf, sizeof(buf));
    snprintf(want, sizeof(want), "\"%s\";r=%d;t=", name, remaining);
    cr_assert(strncmp(buf, want, strlen(want)) == 0, "RateLimit: %s, expected %s...", buf, want);
    char *end;
    long t = strtol(buf + strlen(want), &end, 10);
    cr_assert(*end == '\0' && t >= t_min && t <= t_max, "RateLimit t=%s not in [%ld, %ld]",
              buf + strlen(want), t_min, t_max);
    return t;
}

/* A 429 rate-limited answer for `name`; returns its Retry-After (which
 * equals RateLimit's t). */
static long assert_limited(const h_reply *r, const char *name, int q, int w, long t_min, long t_max)
{
    h_assert_problem_json(r, 429, "rate-limited", NULL);
    cr_assert_str_eq(h_jstr(r->json, "limit"), name);
    cr_assert(strstr(h_jstr(r->json, "detail"), name) != NULL, "detail: %s",
              h_jstr(r->json, "detail"));
    char buf[64];
    long retry = strtol(header(r, "Retry-After", buf, sizeof(buf)), NULL, 10);
    long t = assert_rate_headers(r, name, q, w, 0, t_min, t_max);
    cr_assert_eq(retry, t, "Retry-After %ld, RateLimit t=%ld", retry, t);
    return retry;
}

static uint64_t metric(const char *series)
{
    h_reply *r = h_api("GET", "/metrics", NULL, NULL);
    h_assert_status(r, 200, "metrics");
    const char *p = strstr(r->body, series);
    cr_assert_not_null(p, "no %s in /metrics", series);
    return strtoull(p + strlen(series), NULL, 10);
}

Test(ratelimit_api, reserve_user_limit_answers_429_with_headers)
{
    uint64_t show = start_with_showtime(ARGS("--rate-limit", "reserve-user=3/30"));
    user u = user_register("asha@example.com");
    /* 3 per 30 s: a token every 10 s. */
    const char *seats[] = {"A1", "A2", "A3"};
    for (int i = 0; i < 3; i++) {
        h_reply *r = reserve(&u, show, seats[i]);
        h_assert_status(r, 201, "reserve");
        assert_rate_headers(r, "reserve-user", 3, 30, 2 - i, 9, 10);
    }
    h_reply *r = reserve(&u, show, "A4");
    assert_limited(r, "reserve-user", 3, 30, 8, 10);
    /* Nothing was held. */
    cr_assert_str_eq(seat_state(show, "A4"), "free");
    cr_assert_str_eq(seat_state(show, "A3"), "held");
    cr_assert_eq(metric("usher_rate_limited_total{limit=\"reserve-user\"} "), 1);
    cr_assert_eq(metric("usher_rate_limited_total{limit=\"reserve-ip\"} "), 0);
    /* Other routes carry no RateLimit header. */
    r = h_api("GET", "/api/me", u.token, NULL);
    h_assert_status(r, 200, "me");
    cr_assert(!h_reply_header(r, "RateLimit", (char[8]){0}, 8), "%s", r->head);
    h_done();
}

Test(ratelimit_api, one_user_does_not_limit_another)
{
    uint64_t show = start_with_showtime(ARGS("--rate-limit", "reserve-user=1/60"));
    user a = user_register("a@example.com"), b = user_register("b@example.com");
    h_assert_status(reserve(&a, show, "A1"), 201, "a's reserve");
    assert_limited(reserve(&a, show, "A2"), "reserve-user", 1, 60, 58, 60);
    h_reply *r = reserve(&b, show, "A2");
    h_assert_status(r, 201, "b's reserve (a's limit is a's)");
    assert_rate_headers(r, "reserve-user", 1, 60, 0, 59, 60);
    assert_limited(reserve(&a, show, "A3"), "reserve-user", 1, 60, 58, 60);
    h_done();
}

Test(ratelimit_api, ip_limit_covers_every_user_of_the_address)
{
    uint64_t show = start_with_showtime(ARGS("--rate-limit", "reserve-ip=2/60"));
    user a = user_register("a@example.com"), b = user_register("b@example.com");
    h_reply *r = reserve(&a, show, "A1");
    h_assert_status(r, 201, "a");
    assert_rate_headers(r, "reserve-ip", 2, 60, 1, 29, 30);
    h_assert_status(reserve(&b, show, "A2"), 201, "b");
    assert_limited(reserve(&b, show, "A3"), "reserve-ip", 2, 60, 28, 30);
    assert_limited(reserve(&a, show, "A3"), "reserve-ip", 2, 60, 28, 30);
    cr_assert_str_eq(seat_state(show, "A3"), "free");
    cr_assert_eq(metric("usher_rate_limited_total{limit=\"reserve-ip\"} "), 2);
    h_done();
}

Test(ratelimit_api, tighter_bucket_is_reported)
{
    /* The user may 5 per 10 s, the address 3 per 60 s. */
    uint64_t show = start_with_showtime(ARGS("--rate-limit", "reserve-user=5/10,reserve-ip=3/60"));
    user a = user_register("a@example.com"), b = user_register("b@example.com");
    h_reply *r = reserve(&a, show, "A1");
    h_assert_status(r, 201, "a");
    assert_rate_headers(r, "reserve-ip", 3, 60, 2, 19, 20);
    h_assert_status(reserve(&a, show, "A2"), 201, "a");
    h_assert_status(reserve(&a, show, "A3"), 201, "a");
    assert_limited(reserve(&a, show, "A4"), "reserve-ip", 3, 60, 18, 20);
    assert_limited(reserve(&b, show, "A4"), "reserve-ip", 3, 60, 18, 20);
    h_done();
}

Test(ratelimit_api, a_refusal_takes_nothing_from_the_other_bucket)
{
    /* The user may 2 per 10 minutes, the address 1 per second. */
    uint64_t show = start_with_showtime(ARGS("--rate-limit", "reserve-user=2/600,reserve-ip=1/1"));
    user a = user_register("a@example.com");
    h_assert_status(reserve(&a, show, "A1"), 201, "first");
    /* The user's bucket gives its last token, the address refuses: the
     * token goes back to the user's bucket. */
    long retry = assert_limited(reserve(&a, show, "A2"), "reserve-ip", 1, 1, 1, 1);
    h_sleep_ms((int)retry * 1000);
    h_reply *r = reserve(&a, show, "A2");
    h_assert_status(r, 201, "the user still had a token");
    assert_rate_headers(r, "reserve-user", 2, 600, 0, 299, 300);
    h_sleep_ms(1000);
    assert_limited(reserve(&a, show, "A3"), "reserve-user", 2, 600, 297, 300);
    h_done();
}

Test(ratelimit_api, passes_after_retry_after_and_the_key_was_not_used)
{
    uint64_t show = start_with_showtime(ARGS("--rate-limit", "reserve-user=1/2"));
    user u = user_register("asha@example.com");
    h_assert_status(reserve(&u, show, "A1"), 201, "first");
    const char *key = "Idempotency-Key: rl-test-key-1\r\n";
    long retry = assert_limited(reserve_h(&u, show, "B1", key), "reserve-user", 1, 2, 1, 2);
    cr_assert_str_eq(seat_state(show, "B1"), "free");
    h_sleep_ms((int)retry * 1000);
    /* The refused request left no trace under its key: this one executes. */
    h_reply *r = reserve_h(&u, show, "B1", key);
    h_assert_status(r, 201, "after Retry-After");
    cr_assert(!h_reply_header(r, "Idempotent-Replayed", (char[8]){0}, 8), "%s", r->head);
    cr_assert_str_eq(seat_state(show, "B1"), "held");
    h_done();
}

Test(ratelimit_api, refused_confirm_leaves_the_hold)
{
    uint64_t show = start_with_showtime(ARGS("--rate-limit", "confirm-user=1/60"));
    user u = user_register("asha@example.com");
    h_reply *r = reserve(&u, show, "A1");
    h_assert_status(r, 201, "reserve");
    cr_assert(!h_reply_header(r, "RateLimit", (char[8]){0}, 8), "reserve is not limited here");
    uint64_t h1 = (uint64_t)h_jint(r->json, "hold_id");
    r = reserve(&u, show, "A2");
    h_assert_status(r, 201, "reserve");
    uint64_t h2 = (uint64_t)h_jint(r->json, "hold_id");
    r = confirm(&u, h1);
    h_assert_status(r, 201, "confirm");
    assert_rate_headers(r, "confirm-user", 1, 60, 0, 59, 60);
    assert_limited(confirm(&u, h2), "confirm-user", 1, 60, 58, 60);
    char path[64];
    snprintf(path, sizeof(path), "/api/holds/%" PRIu64, h2);
    h_assert_status(h_api("GET", path, u.token, NULL), 200, "the hold is still live");
    cr_assert_str_eq(seat_state(show, "A2"), "held");
    cr_assert_str_eq(seat_state(show, "A1"), "sold");
    h_done();
}

Test(ratelimit_api, onsale_lines_are_limited_per_user)
{
    uint64_t show = start_with_showtime(ARGS("--rate-limit", "onsale-user=3/60"));
    char path[96];
    snprintf(path, sizeof(path), "/api/showtimes/%" PRIu64 "/queue", show);
    h_reply *r = h_api("PUT", path, g_admin, "{s:i}", "rate_per_second", 5);
    h_assert_status(r, 200, "queue on");
    user a = user_register("a@example.com"), b = user_register("b@example.com");
    char join[96], me[96];
    snprintf(join, sizeof(join), "/api/showtimes/%" PRIu64 "/queue/join", show);
    snprintf(me, sizeof(me), "/api/showtimes/%" PRIu64 "/queue/me", show);
    /* Join, leave, join: three places taken; the fourth change is refused. */
    h_assert_status(h_api("POST", join, a.token, NULL), 201, "join");
    h_assert_status(h_api("DELETE", me, a.token, NULL), 204, "leave");
    r = h_api("POST", join, a.token, NULL);
    h_assert_status(r, 201, "join again");
    assert_rate_headers(r, "onsale-user", 3, 60, 0, 19, 20);
    /* Reading one's place is not limited. */
    h_assert_status(h_api("GET", me, a.token, NULL), 200, "queue/me");
    assert_limited(h_api("DELETE", me, a.token, NULL), "onsale-user", 3, 60, 18, 20);
    r = h_api("GET", me, a.token, NULL);
    h_assert_status(r, 200, "still in line after the refused leave");
    /* The same limit covers waiting lists; another user is not limited. */
    snprintf(path, sizeof(path), "/api/showtimes/%" PRIu64 "/waitlist", show);
    assert_limited(h_api("POST", path, a.token, "{s:i}", "count", 1), "onsale-user", 3, 60, 18, 20);
    h_assert_status(h_api("POST", join, b.token, NULL), 201, "b joins");
    cr_assert_eq(metric("usher_rate_limited_total{limit=\"onsale-user\"} "), 2);
    h_done();
}

Test(ratelimit_api, login_limited_by_email_ignoring_case)
{
    start(ARGS("--rate-limit", "login-email=2/60"));
    user_register("asha@example.com");
    h_reply *r = login("asha@example.com", PASSWORD);
    h_assert_status(r, 200, "login");
    assert_rate_headers(r, "login-email", 2, 60, 1, 29, 30);
    h_assert_status(login("ASHA@example.com", "wrong password"), 401, "wrong password");
    assert_limited(login("Asha@Example.com", PASSWORD), "login-email", 2, 60, 28, 30);
    /* Another email from the same address is not limited (login-ip is off). */
    h_assert_status(login("nobody@example.com", PASSWORD), 401, "another email");
    cr_assert_eq(metric("usher_rate_limited_total{limit=\"login-email\"} "), 1);
    h_done();
}

Test(ratelimit_api, login_limited_by_address)
{
    start(ARGS("--rate-limit", "login-ip=2/60"));
    h_assert_status(login("a@example.com", PASSWORD), 401, "first");
    h_assert_status(login("b@example.com", PASSWORD), 401, "second");
    assert_limited(login("c@example.com", PASSWORD), "login-ip", 2, 60, 28, 30);
    /* Register is not limited. */
    user_register("d@example.com");
    h_done();
}

Test(ratelimit_api, defaults_apply_when_asked)
{
    uint64_t show = start_with_showtime(ARGS("--rate-limit", "defaults"));
    user u = user_register("asha@example.com");
    h_reply *r = reserve(&u, show, "A1");
    h_assert_status(r, 201, "reserve");
    /* 20 per 10 s by the user is tighter than 200 per 10 s by the address. */
    assert_rate_headers(r, "reserve-user", 20, 10, 19, 1, 1);
    h_done();
}

Test(ratelimit_api, bad_flags_are_refused)
{
    const char *bad[] = {"reserve-user=0/10",   "reserve-user=5",       "nope=1/1",
                         "reserve-user=1/0",    "reserve-user=1/86401", "login-ip=x/1",
                         "off,reserve-ip=1/1/1"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char out[256];
        int st = h_run(ARGS("--rate-limit", bad[i]), NULL, out, sizeof(out));
        cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 2, "--rate-limit %s: status 0x%x", bad[i],
                  st);
    }
    char out[256];
    int st = h_run(ARGS("--rate-limit-keys", "10"), NULL, out, sizeof(out));
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 2, "--rate-limit-keys 10: status 0x%x", st);
    h_cleanup();
}
