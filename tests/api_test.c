/*
 * api_test.c - the JSON API of usherd end to end: the real binary ($USHERD),
 * started per test (two shards unless a test says otherwise) with
 * `--password-cost min` and a known USHER_JWT_SECRET, spoken to over raw
 * sockets with tests/harness.c, answers parsed with jansson.
 *
 * Covers auth (register, login, /api/me, tokens crafted with the known
 * secret: expired, foreign audience or issuer, alg none, HS512, forged
 * signatures; roles; usherd --create-admin), the catalog (create, validate,
 * references, lists, merge-patch, delete guards, 404 and 405), browsing
 * (showtime filters, sorting, paging; seat maps with ETags), booking (reserve
 * listed or best-available seats, release, confirm, expiry, cancel and
 * refunds, ownership, my-bookings across shards, Idempotency-Key, sales
 * closing at the start), concurrency (1,000 clients reserving overlapping
 * seats at once, 300 concurrent best-available requests, a retry storm with
 * one Idempotency-Key, racing registrations of one email), SIGKILL and
 * restart on the same data directory (and a restart with another shard
 * count refused), and four shards reached from any connection.
 *
 * Every test ends with a clean SIGTERM stop (exit 0, no sanitizer report),
 * so a server that crashed along the way fails the test that crashed it.
 */
#define _GNU_SOURCE

#include "harness.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

TestSuite(api, .init = h_suite_init, .fini = h_suite_fini, .timeout = 120);

/* The signing secret every test server gets (USHER_JWT_SECRET): tokens can
 * be crafted here exactly as the server signs them. */
#define SECRET         "usher-api-test-secret-0123456789abcdefghij"
#define OTHER_SECRET   "another-secret-that-is-long-enough-0123456789"
#define ADMIN_EMAIL    "root@usher.test"
#define ADMIN_PASSWORD "admin-password-1"
#define PASSWORD       "password123"

enum { SILVER = 15000, GOLD = 25000 };

/* ---- Starting the server --------------------------------------------------------- */

static const char *const server_env[] = {"USHER_JWT_SECRET=" SECRET, NULL};

/* usherd with fast password hashing, the known secret and `args`
 * (NULL-terminated, may be NULL). */
static void api_start(const char *const *args)
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

/* A NULL-terminated argument list: ARGS("--shards", "4"). */
#define ARGS(...) ((const char *const[]){__VA_ARGS__, NULL})

/* ---- Users and tokens ------------------------------------------------------------ */

typedef struct user {
    char token[1200];
    uint64_t id;
    char email[128];
} user;

static user user_register(const char *email)
{
    user u;
    memset(&u, 0, sizeof(u));
    h_reply *r = h_api("POST", "/api/auth/register", NULL, "{s:s, s:s, s:s}", "email", email,
                       "password", PASSWORD, "name", "Test User");
    h_assert_status(r, 201, "register");
    snprintf(u.token, sizeof(u.token), "%s", h_jstr(r->json, "token"));
    u.id = (uint64_t)h_jint(h_jget(r->json, "user"), "id");
    snprintf(u.email, sizeof(u.email), "%s", email);
    return u;
}

static user user_login(const char *email, const char *password)
{
    user u;
    memset(&u, 0, sizeof(u));
    h_reply *r =
        h_api("POST", "/api/auth/login", NULL, "{s:s, s:s}", "email", email, "password", password);
    h_assert_status(r, 200, "login");
    snprintf(u.token, sizeof(u.token), "%s", h_jstr(r->json, "token"));
    u.id = (uint64_t)h_jint(h_jget(r->json, "user"), "id");
    snprintf(u.email, sizeof(u.email), "%s", email);
    return u;
}

/* `usherd --create-admin` on the (stopped) data directory, then start the
 * server with `args` and log in as that admin. */
static user api_start_admin(const char *const *args)
{
    const char *argv[32];
    int n = 0;
    argv[n++] = "--create-admin";
    argv[n++] = ADMIN_EMAIL;
    argv[n++] = "--password-cost";
    argv[n++] = "min";
    for (int i = 0; args != NULL && args[i] != NULL && n < 31; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    const char *env[] = {"USHER_JWT_SECRET=" SECRET, "USHER_ADMIN_PASSWORD=" ADMIN_PASSWORD, NULL};
    char out[4096];
    int st = h_run(argv, env, out, sizeof(out));
    char runlog[200];
    snprintf(runlog, sizeof(runlog), "%s/run.log", h_srv.root);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0,
              "usherd --create-admin failed (0x%x): stdout '%s' stderr %s", st, out,
              h_tail(h_slurp(runlog), 1500));
    api_start(args);
    return user_login(ADMIN_EMAIL, ADMIN_PASSWORD);
}

/* base64url without padding. */
static void b64url(const unsigned char *in, size_t n, char *out)
{
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t o = 0, i = 0;
    for (; i + 2 < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = tbl[v >> 18 & 63];
        out[o++] = tbl[v >> 12 & 63];
        out[o++] = tbl[v >> 6 & 63];
        out[o++] = tbl[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        out[o++] = tbl[v >> 18 & 63];
        out[o++] = tbl[v >> 12 & 63];
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        out[o++] = tbl[v >> 18 & 63];
        out[o++] = tbl[v >> 12 & 63];
        out[o++] = tbl[v >> 6 & 63];
    }
    out[o] = '\0';
}

/* A compact JWS of `header` and `payload`, signed with HMAC (`alg` "HS256"
 * or "HS512") under `secret`, or with an empty signature (alg NULL). */
static void jwt_make(char *out, size_t cap, const char *header, const char *payload,
                     const char *alg, const char *secret)
{
    char h[512], p[2048];
    b64url((const unsigned char *)header, strlen(header), h);
    b64url((const unsigned char *)payload, strlen(payload), p);
    int n = snprintf(out, cap, "%s.%s", h, p);
    cr_assert(n > 0 && (size_t)n < cap);
    if (alg == NULL) {
        snprintf(out + n, cap - (size_t)n, ".");
        return;
    }
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int maclen = 0;
    const EVP_MD *md = strcmp(alg, "HS512") == 0 ? EVP_sha512() : EVP_sha256();
    cr_assert_not_null(
        HMAC(md, secret, (int)strlen(secret), (const unsigned char *)out, (size_t)n, mac, &maclen));
    char sig[256];
    b64url(mac, maclen, sig);
    snprintf(out + n, cap - (size_t)n, ".%s", sig);
}

/* The claims usherd puts in its tokens (iss "usher", aud "usher-api"). */
static void jwt_claims(char *out, size_t cap, uint64_t sub, const char *role, const char *iss,
                       const char *aud, int64_t iat, int64_t exp)
{
    static unsigned counter;
    snprintf(out, cap,
             "{\"iss\":\"%s\",\"sub\":\"%" PRIu64 "\",\"aud\":\"%s\",\"exp\":%" PRId64
             ",\"iat\":%" PRId64 ",\"jti\":\"%032x\",\"role\":\"%s\"}",
             iss, sub, aud, exp, iat, ++counter, role);
}

#define HS256_HEADER "{\"alg\":\"HS256\",\"typ\":\"JWT\"}"

/* A token the server must accept: signed with the server's secret. */
static void token_for(char *out, size_t cap, uint64_t sub, const char *role)
{
    char claims[1024];
    int64_t now = (int64_t)time(NULL);
    jwt_claims(claims, sizeof(claims), sub, role, "usher", "usher-api", now, now + 3600);
    jwt_make(out, cap, HS256_HEADER, claims, "HS256", SECRET);
}

/* ---- JSON helpers -------------------------------------------------------------------- */

static void utc(int64_t epoch_s, char out[32])
{
    time_t t = (time_t)epoch_s;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static void utc_date(int64_t epoch_s, char out[16])
{
    time_t t = (time_t)epoch_s;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, 16, "%Y-%m-%d", &tm);
}

/* "2026-11-21T07:52:11Z" or "...11.123Z" to epoch milliseconds. */
static int64_t time_ms(const char *s)
{
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    const char *end = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
    cr_assert_not_null(end, "not a time: %s", s);
    int64_t ms = (int64_t)timegm(&tm) * 1000;
    if (*end == '.') {
        ms += strtol(end + 1, (char **)&end, 10);
    }
    cr_assert_str_eq(end, "Z", "not a UTC time: %s", s);
    return ms;
}

/* A JSON array of the labels in `csv` ("A1,A2"). */
static json_t *labels(const char *csv)
{
    json_t *a = json_array();
    char buf[512];
    snprintf(buf, sizeof(buf), "%s", csv);
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t != NULL;
         t = strtok_r(NULL, ",", &save))
        json_array_append_new(a, json_string(t));
    return a;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The strings of array `a`, sorted and joined by ",", in a static buffer. */
static const char *sorted_csv(const json_t *a)
{
    static char out[4096];
    const char *v[512];
    size_t n = json_array_size(a);
    cr_assert(json_is_array(a) && n <= 512);
    for (size_t i = 0; i < n; i++) {
        v[i] = json_string_value(json_array_get(a, i));
        cr_assert_not_null(v[i]);
    }
    qsort(v, n, sizeof(v[0]), cmp_str);
    size_t o = 0;
    out[0] = '\0';
    for (size_t i = 0; i < n; i++)
        o += (size_t)snprintf(out + o, sizeof(out) - o, "%s%s", i ? "," : "", v[i]);
    return out;
}

/* `csv` sorted the same way. */
static const char *sorted(const char *csv)
{
    static char out[4096];
    json_t *a = labels(csv);
    snprintf(out, sizeof(out), "%s", sorted_csv(a));
    json_decref(a);
    return out;
}

/* `v` equals the JSON `text`. */
static bool jeq(const json_t *v, const char *text)
{
    json_t *w = json_loads(text, JSON_DECODE_ANY, NULL);
    cr_assert_not_null(w, "bad JSON in the test: %s", text);
    bool eq = json_equal((json_t *)v, w);
    json_decref(w);
    return eq;
}

static char *path_of(char *buf, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static char *path_of(char *buf, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, cap, fmt, ap);
    va_end(ap);
    return buf;
}

#define P(...) path_of((char[256]){0}, 256, __VA_ARGS__)

/* ---- The catalog ---------------------------------------------------------------------- */

/* Three rows of ten: A and B silver with an aisle after seat 5; C gold with
 * a wheelchair space (C1), its companion seat (C2) and C10 blocked. */
static json_t *layout_std(void)
{
    return json_pack("{s:[s,s], s:[{s:s,s:s,s:i,s:[i]}, {s:s,s:s,s:i,s:[i]},"
                     " {s:s,s:s,s:i,s:[i],s:[i],s:[i]}]}",
                     "categories", "silver", "gold", "rows", "label", "A", "category", "silver",
                     "seats", 10, "aisles_after", 5, "label", "B", "category", "silver", "seats",
                     10, "aisles_after", 5, "label", "C", "category", "gold", "seats", 10,
                     "accessible", 1, "companion", 2, "blocked", 10);
}

static uint64_t theater_new(const user *admin, const char *name, const char *city)
{
    h_reply *r = h_api("POST", "/api/theaters", admin->token, "{s:s, s:s, s:s}", "name", name,
                       "city", city, "address", "1 Main Road");
    h_assert_status(r, 201, "create theater");
    return (uint64_t)h_jint(r->json, "id");
}

/* `layout` is stolen. */
static uint64_t screen_new(const user *admin, uint64_t theater, const char *name, json_t *layout)
{
    h_reply *r = h_api("POST", "/api/screens", admin->token, "{s:I, s:s, s:o}", "theater_id",
                       (json_int_t)theater, "name", name, "layout", layout);
    h_assert_status(r, 201, "create screen");
    return (uint64_t)h_jint(r->json, "id");
}

static uint64_t movie_new(const user *admin, const char *title, const char *genre,
                          const char *language)
{
    h_reply *r = h_api("POST", "/api/movies", admin->token, "{s:s, s:s, s:i, s:s, s:s, s:s}",
                       "title", title, "description", "A film.", "duration_min", 120, "genre",
                       genre, "language", language, "rating", "UA");
    h_assert_status(r, 201, "create movie");
    return (uint64_t)h_jint(r->json, "id");
}

/* A showtime at `epoch_s` with silver/gold prices. */
static h_reply *showtime_post_at(const user *admin, uint64_t movie, uint64_t screen,
                                 int64_t epoch_s, int silver, int gold)
{
    char when[32];
    utc(epoch_s, when);
    return h_api("POST", "/api/showtimes", admin->token, "{s:I, s:I, s:s, s:{s:i, s:i}}",
                 "movie_id", (json_int_t)movie, "screen_id", (json_int_t)screen, "start_time", when,
                 "prices", "silver", silver, "gold", gold);
}

/* A showtime `in_s` seconds from now (whole seconds). */
static h_reply *showtime_post(const user *admin, uint64_t movie, uint64_t screen, int64_t in_s,
                              int silver, int gold)
{
    return showtime_post_at(admin, movie, screen, (int64_t)time(NULL) + in_s, silver, gold);
}

static uint64_t showtime_at(const user *admin, uint64_t movie, uint64_t screen, int64_t epoch_s,
                            int silver, int gold)
{
    h_reply *r = showtime_post_at(admin, movie, screen, epoch_s, silver, gold);
    h_assert_status(r, 201, "create showtime");
    return (uint64_t)h_jint(r->json, "id");
}

static uint64_t showtime_new(const user *admin, uint64_t movie, uint64_t screen, int64_t in_s,
                             int silver, int gold)
{
    h_reply *r = showtime_post(admin, movie, screen, in_s, silver, gold);
    h_assert_status(r, 201, "create showtime");
    return (uint64_t)h_jint(r->json, "id");
}

/* One theater, a layout_std screen, a movie and a showtime two days ahead. */
typedef struct world {
    user admin;
    uint64_t theater, screen, movie, showtime;
} world;

static world world_make(const user *admin)
{
    world w;
    w.admin = *admin;
    w.theater = theater_new(admin, "Usher Andheri", "Mumbai");
    w.screen = screen_new(admin, w.theater, "Screen 1", layout_std());
    w.movie = movie_new(admin, "The Last Usher", "thriller", "english");
    w.showtime = showtime_new(admin, w.movie, w.screen, 2 * 86400, SILVER, GOLD);
    return w;
}

/* ---- Seats, holds and bookings -------------------------------------------------------- */

static h_reply *reserve(const user *u, uint64_t showtime, const char *csv)
{
    return h_api("POST", "/api/bookings/reserve", u->token, "{s:I, s:o}", "showtime_id",
                 (json_int_t)showtime, "seats", labels(csv));
}

static uint64_t reserve_ok(const user *u, uint64_t showtime, const char *csv)
{
    h_reply *r = reserve(u, showtime, csv);
    h_assert_status(r, 201, "reserve");
    return (uint64_t)h_jint(r->json, "hold_id");
}

static h_reply *confirm(const user *u, uint64_t hold)
{
    return h_api("POST", "/api/bookings/confirm", u->token, "{s:I, s:{s:s}}", "hold_id",
                 (json_int_t)hold, "payment", "method", "upi");
}

static uint64_t confirm_ok(const user *u, uint64_t hold)
{
    h_reply *r = confirm(u, hold);
    h_assert_status(r, 201, "confirm");
    cr_assert_str_eq(h_jstr(r->json, "status"), "confirmed");
    return (uint64_t)h_jint(r->json, "booking_id");
}

static uint64_t book(const user *u, uint64_t showtime, const char *csv)
{
    return confirm_ok(u, reserve_ok(u, showtime, csv));
}

static json_t *seatmap(uint64_t showtime)
{
    h_reply *r = h_api("GET", P("/api/seats/%" PRIu64, showtime), NULL, NULL);
    h_assert_status(r, 200, "seat map");
    return r->json;
}

static const char *seat_state(const json_t *map, const char *label)
{
    json_t *seats = h_jget(map, "seats");
    for (size_t i = 0; i < json_array_size(seats); i++) {
        json_t *s = json_array_get(seats, i);
        if (strcmp(h_jstr(s, "label"), label) == 0)
            return h_jstr(s, "state");
    }
    cr_assert_fail("no seat %s in the seat map", label);
    return NULL;
}

/* The labels of the seats in `state`, sorted, comma-separated (static buffer). */
static const char *seats_in_state(const json_t *map, const char *state)
{
    json_t *a = json_array();
    json_t *seats = h_jget(map, "seats");
    for (size_t i = 0; i < json_array_size(seats); i++) {
        json_t *s = json_array_get(seats, i);
        if (strcmp(h_jstr(s, "state"), state) == 0)
            json_array_append(a, h_jget(s, "label"));
    }
    const char *out = sorted_csv(a);
    json_decref(a);
    return out;
}

static size_t count_state(const json_t *map, const char *state)
{
    size_t n = 0;
    json_t *seats = h_jget(map, "seats");
    for (size_t i = 0; i < json_array_size(seats); i++)
        n += strcmp(h_jstr(json_array_get(seats, i), "state"), state) == 0;
    return n;
}

/* The shard that owns a hold or booking: the top 16 bits of its id. */
static unsigned shard_of(uint64_t id)
{
    return (unsigned)(id >> 48);
}

/* ---- Auth ------------------------------------------------------------------------------- */

Test(api, register_returns_token_and_user_without_password_hash)
{
    api_start(NULL);
    h_reply *r = h_api("POST", "/api/auth/register", NULL, "{s:s, s:s, s:s}", "email",
                       "Alice@Example.COM", "password", PASSWORD, "name", "Alice");
    h_assert_status(r, 201, "register");
    cr_assert_null(strstr(r->body, "password"), "the answer mentions a password: %s", r->body);
    cr_assert_null(strstr(r->body, "$argon2"), "the answer carries a hash: %s", r->body);
    cr_assert_str_eq(h_jstr(r->json, "token_type"), "Bearer");
    cr_assert_eq(h_jint(r->json, "expires_in"), 86400);
    const char *token = h_jstr(r->json, "token");
    cr_assert_eq(h_count_of(token, "."), 2, "not a compact JWS: %s", token);
    json_t *u = h_jget(r->json, "user");
    json_int_t id = h_jint(u, "id");
    cr_assert_gt(id, 0);
    cr_assert_str_eq(h_jstr(u, "email"), "alice@example.com", "emails are stored lowercased");
    cr_assert_str_eq(h_jstr(u, "name"), "Alice");
    cr_assert_str_eq(h_jstr(u, "role"), "customer");
    int64_t created = time_ms(h_jstr(u, "created_at"));
    cr_assert(llabs(created / 1000 - (int64_t)time(NULL)) < 60, "created_at is not now");

    /* The token works, /api/me is the same user (without the hash either). */
    h_reply *me = h_api("GET", "/api/me", token, NULL);
    h_assert_status(me, 200, "/api/me");
    cr_assert(json_equal(me->json, u), "/api/me %s differs from %s", me->body, r->body);
    cr_assert_null(strstr(me->body, "password"), "%s", me->body);

    /* Login is case-insensitive on the email and gives the same user. */
    h_reply *l = h_api("POST", "/api/auth/login", NULL, "{s:s, s:s}", "email", "ALICE@example.com",
                       "password", PASSWORD);
    h_assert_status(l, 200, "login");
    cr_assert(json_equal(h_jget(l->json, "user"), u), "%s", l->body);
    cr_assert_null(strstr(l->body, "password"), "%s", l->body);
    h_done();
}

Test(api, register_duplicate_email_is_409)
{
    api_start(NULL);
    user_register("bob@example.com");
    h_reply *r = h_api("POST", "/api/auth/register", NULL, "{s:s, s:s, s:s}", "email",
                       "bob@example.com", "password", "other-password", "name", "Bob 2");
    h_assert_problem_json(r, 409, "email-taken", "email");
    r = h_api("POST", "/api/auth/register", NULL, "{s:s, s:s, s:s}", "email", "BOB@Example.com",
              "password", "other-password", "name", "Bob 3");
    h_assert_problem_json(r, 409, "email-taken", "email");
    /* The first password still logs in; the second does not. */
    user_login("bob@example.com", PASSWORD);
    r = h_api("POST", "/api/auth/login", NULL, "{s:s, s:s}", "email", "bob@example.com", "password",
              "other-password");
    h_assert_problem_json(r, 401, "invalid-credentials", NULL);
    h_done();
}

Test(api, register_invalid_fields_are_400_with_field)
{
    api_start(NULL);
    static const struct {
        const char *email, *password, *name, *field;
    } bad[] = {
        {"no-at-sign.example.com", PASSWORD, "N", "email"},
        {"a@@example.com", PASSWORD, "N", "email"},
        {"a b@example.com", PASSWORD, "N", "email"},
        {"@example.com", PASSWORD, "N", "email"},
        {"a@", PASSWORD, "N", "email"},
        {"c@example.com", "short", "N", "password"},
        {"c@example.com", "        ", "N", "password"},
        {"c@example.com", PASSWORD, "", "name"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        h_reply *r = h_api("POST", "/api/auth/register", NULL, "{s:s, s:s, s:s}", "email",
                           bad[i].email, "password", bad[i].password, "name", bad[i].name);
        h_assert_problem_json(r, 400, "invalid-field", bad[i].field);
    }
    h_reply *r = h_api("POST", "/api/auth/register", NULL, "{s:s, s:s}", "email", "d@example.com",
                       "password", PASSWORD);
    h_assert_problem_json(r, 400, "invalid-field", "name");
    r = h_api("POST", "/api/auth/register", NULL, "{s:s, s:s}", "email", "d@example.com", "name",
              "D");
    h_assert_problem_json(r, 400, "invalid-field", "password");
    /* A customer cannot make itself an admin. */
    r = h_api("POST", "/api/auth/register", NULL, "{s:s, s:s, s:s, s:s}", "email", "e@example.com",
              "password", PASSWORD, "name", "E", "role", "admin");
    h_assert_problem_json(r, 400, "invalid-field", "role");
    /* Not JSON, not an object, not application/json. */
    r = h_api_text("POST", "/api/auth/register", NULL, NULL, "{\"email\":");
    h_assert_problem_json(r, 400, "invalid-json", NULL);
    r = h_api_text("POST", "/api/auth/register", NULL, NULL, "[1,2]");
    h_assert_problem_json(r, 400, "invalid-json", NULL);
    r = h_api_text("POST", "/api/auth/register", NULL, "Content-Type: text/plain\r\n", NULL);
    h_assert_problem_json(r, 415, "unsupported-media-type", "content-type");
    /* None of them created an account. */
    r = h_api("POST", "/api/auth/login", NULL, "{s:s, s:s}", "email", "e@example.com", "password",
              PASSWORD);
    h_assert_problem_json(r, 401, "invalid-credentials", NULL);
    h_done();
}

Test(api, login_ok_wrong_password_and_unknown_email)
{
    api_start(NULL);
    user reg = user_register("carol@example.com");
    user u = user_login("carol@example.com", PASSWORD);
    cr_assert_eq(u.id, reg.id);
    h_reply *me = h_api("GET", "/api/me", u.token, NULL);
    h_assert_status(me, 200, "/api/me with the login token");
    cr_assert_str_eq(h_jstr(me->json, "email"), "carol@example.com");
    h_reply *r = h_api("POST", "/api/auth/login", NULL, "{s:s, s:s}", "email", "carol@example.com",
                       "password", "wrong-password");
    h_assert_problem_json(r, 401, "invalid-credentials", NULL);
    cr_assert_null(json_object_get(r->json, "token"));
    r = h_api("POST", "/api/auth/login", NULL, "{s:s, s:s}", "email", "nobody@example.com",
              "password", PASSWORD);
    h_assert_problem_json(r, 401, "invalid-credentials", NULL);
    r = h_api("POST", "/api/auth/login", NULL, "{s:s}", "email", "carol@example.com");
    h_assert_problem_json(r, 400, "invalid-field", "password");
    h_done();
}

Test(api, me_requires_a_valid_bearer_token)
{
    api_start(NULL);
    user u = user_register("dave@example.com");
    h_reply *r = h_api("GET", "/api/me", NULL, NULL);
    h_assert_problem_json(r, 401, "unauthorized", NULL);
    char v[256];
    cr_assert(h_reply_header(r, "WWW-Authenticate", v, sizeof(v)), "no WWW-Authenticate: %s",
              r->head);
    cr_assert_not_null(strstr(v, "Bearer"), "%s", v);
    char hdr[1400];
    snprintf(hdr, sizeof(hdr), "Authorization: Basic %s\r\n", "ZGF2ZTpwYXNzd29yZDEyMw==");
    r = h_api_text("GET", "/api/me", NULL, hdr, NULL);
    h_assert_problem_json(r, 401, "unauthorized", NULL);
    r = h_api("GET", "/api/me", "not.a.token", NULL);
    h_assert_problem_json(r, 401, "invalid-token", "authorization");
    /* One changed character in the signature. */
    char bad[1200];
    snprintf(bad, sizeof(bad), "%s", u.token);
    size_t n = strlen(bad);
    bad[n - 2] = bad[n - 2] == 'A' ? 'B' : 'A';
    r = h_api("GET", "/api/me", bad, NULL);
    h_assert_problem_json(r, 401, "invalid-token", "authorization");
    r = h_api("GET", "/api/me", u.token, NULL);
    h_assert_status(r, 200, "the real token still works");
    h_done();
}

/* 401 invalid-token with WWW-Authenticate error="invalid_token". */
static void assert_token_refused(const char *token, const char *what)
{
    h_reply *r = h_api("GET", "/api/me", token, NULL);
    cr_assert_eq(r->status, 401, "%s: expected 401, got %d: %s", what, r->status, r->body);
    h_assert_problem_json(r, 401, "invalid-token", "authorization");
    char v[256] = "";
    cr_assert(h_reply_header(r, "WWW-Authenticate", v, sizeof(v)) &&
                  strstr(v, "invalid_token") != NULL,
              "%s: WWW-Authenticate: %s", what, v);
}

Test(api, crafted_tokens_expired_foreign_unsigned_or_forged_are_401)
{
    api_start(NULL);
    user u = user_register("eve@example.com");
    int64_t now = (int64_t)time(NULL);
    char claims[1024], tok[2048];

    /* Control: a token made here with the server's secret is accepted, so
     * the refusals below are about the one thing each one changes. */
    jwt_claims(claims, sizeof(claims), u.id, "customer", "usher", "usher-api", now, now + 600);
    jwt_make(tok, sizeof(tok), HS256_HEADER, claims, "HS256", SECRET);
    h_reply *r = h_api("GET", "/api/me", tok, NULL);
    h_assert_status(r, 200, "a correctly crafted token");
    cr_assert_eq((uint64_t)h_jint(r->json, "id"), u.id);

    jwt_claims(claims, sizeof(claims), u.id, "customer", "usher", "usher-api", now - 7200,
               now - 3600);
    jwt_make(tok, sizeof(tok), HS256_HEADER, claims, "HS256", SECRET);
    assert_token_refused(tok, "expired an hour ago");

    jwt_claims(claims, sizeof(claims), u.id, "customer", "usher", "other-api", now, now + 600);
    jwt_make(tok, sizeof(tok), HS256_HEADER, claims, "HS256", SECRET);
    assert_token_refused(tok, "another audience");

    jwt_claims(claims, sizeof(claims), u.id, "customer", "mallory", "usher-api", now, now + 600);
    jwt_make(tok, sizeof(tok), HS256_HEADER, claims, "HS256", SECRET);
    assert_token_refused(tok, "another issuer");

    jwt_claims(claims, sizeof(claims), u.id, "customer", "usher", "usher-api", now + 3600,
               now + 7200);
    jwt_make(tok, sizeof(tok), HS256_HEADER, claims, "HS256", SECRET);
    assert_token_refused(tok, "issued an hour in the future");

    jwt_claims(claims, sizeof(claims), u.id, "customer", "usher", "usher-api", now, now + 600);
    jwt_make(tok, sizeof(tok), "{\"alg\":\"none\",\"typ\":\"JWT\"}", claims, NULL, NULL);
    assert_token_refused(tok, "alg none, no signature");
    jwt_make(tok, sizeof(tok), "{\"alg\":\"none\",\"typ\":\"JWT\"}", claims, "HS256", SECRET);
    assert_token_refused(tok, "alg none with a signature");
    jwt_make(tok, sizeof(tok), "{\"alg\":\"HS512\",\"typ\":\"JWT\"}", claims, "HS512", SECRET);
    assert_token_refused(tok, "alg HS512 signed with the secret");
    jwt_make(tok, sizeof(tok), HS256_HEADER, claims, "HS256", OTHER_SECRET);
    assert_token_refused(tok, "signed with another secret");
    jwt_make(tok, sizeof(tok), "{\"alg\":\"HS256\",\"typ\":\"JWT\",\"kid\":\"1\"}", claims, "HS256",
             SECRET);
    assert_token_refused(tok, "a header member usher never issues");

    /* The user's own token with its payload swapped for an admin one. */
    char admin_claims[1024], admin_tok[2048];
    jwt_claims(admin_claims, sizeof(admin_claims), u.id, "admin", "usher", "usher-api", now,
               now + 600);
    jwt_make(admin_tok, sizeof(admin_tok), HS256_HEADER, admin_claims, "HS256", SECRET);
    const char *d1 = strchr(u.token, '.'), *d2 = strrchr(u.token, '.');
    const char *a1 = strchr(admin_tok, '.'), *a2 = strrchr(admin_tok, '.');
    snprintf(tok, sizeof(tok), "%.*s%.*s%s", (int)(d1 - u.token), u.token, (int)(a2 - a1), a1, d2);
    assert_token_refused(tok, "payload swapped, signature kept");
    r = h_api("POST", "/api/theaters", tok, "{s:s, s:s}", "name", "T", "city", "C");
    h_assert_problem_json(r, 401, "invalid-token", "authorization");
    /* An admin token signed with another secret cannot create anything. */
    jwt_make(tok, sizeof(tok), HS256_HEADER, admin_claims, "HS256", OTHER_SECRET);
    r = h_api("POST", "/api/theaters", tok, "{s:s, s:s}", "name", "T", "city", "C");
    h_assert_problem_json(r, 401, "invalid-token", "authorization");
    r = h_api("GET", "/api/theaters", NULL, NULL);
    h_assert_status(r, 200, "list theaters");
    cr_assert_eq(h_jint(r->json, "total"), 0, "a refused token created something: %s", r->body);
    h_done();
}

Test(api, customer_on_admin_routes_is_403)
{
    user admin = api_start_admin(NULL);
    world w = world_make(&admin);
    user c = user_register("frank@example.com");
    struct {
        const char *method, *path;
    } routes[] = {
        {"POST", "/api/theaters"},
        {"POST", "/api/screens"},
        {"POST", "/api/movies"},
        {"POST", "/api/showtimes"},
        {"PATCH", P("/api/theaters/%" PRIu64, w.theater)},
        {"DELETE", P("/api/theaters/%" PRIu64, w.theater)},
        {"PATCH", P("/api/screens/%" PRIu64, w.screen)},
        {"DELETE", P("/api/screens/%" PRIu64, w.screen)},
        {"PATCH", P("/api/movies/%" PRIu64, w.movie)},
        {"DELETE", P("/api/movies/%" PRIu64, w.movie)},
        {"PATCH", P("/api/showtimes/%" PRIu64, w.showtime)},
        {"DELETE", P("/api/showtimes/%" PRIu64, w.showtime)},
    };
    char paths[12][64];
    for (size_t i = 0; i < 12; i++) {
        snprintf(paths[i], sizeof(paths[i]), "%s", routes[i].path);
        routes[i].path = paths[i];
    }
    for (size_t i = 0; i < 12; i++) {
        h_reply *r = h_api_text(routes[i].method, routes[i].path, c.token, NULL,
                                "{\"name\":\"Hacked\",\"city\":\"X\"}");
        h_assert_problem_json(r, 403, "forbidden", NULL);
        r = h_api_text(routes[i].method, routes[i].path, NULL, NULL,
                       "{\"name\":\"Hacked\",\"city\":\"X\"}");
        h_assert_problem_json(r, 401, "unauthorized", NULL);
    }
    /* Nothing changed. */
    h_reply *r = h_api("GET", P("/api/theaters/%" PRIu64, w.theater), NULL, NULL);
    h_assert_status(r, 200, "theater");
    cr_assert_str_eq(h_jstr(r->json, "name"), "Usher Andheri");
    r = h_api("GET", "/api/theaters", NULL, NULL);
    cr_assert_eq(h_jint(r->json, "total"), 1, "%s", r->body);
    r = h_api("GET", P("/api/showtimes/%" PRIu64, w.showtime), NULL, NULL);
    h_assert_status(r, 200, "showtime still there");
    h_done();
}

Test(api, create_admin_then_login_as_admin)
{
    /* On a fresh data directory, with no server running. */
    const char *args[] = {"--create-admin", "Boss@Usher.test", "--password-cost", "min", NULL};
    const char *env[] = {"USHER_JWT_SECRET=" SECRET, "USHER_ADMIN_PASSWORD=boss-password-1", NULL};
    char out[4096];
    int st = h_run(args, env, out, sizeof(out));
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "--create-admin: status 0x%x, stdout %s", st,
              out);
    cr_assert_not_null(strstr(out, "created admin Boss@Usher.test"), "stdout: %s", out);
    /* A second time: the email is taken, and it says so. */
    st = h_run(args, env, out, sizeof(out));
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) != 0,
              "--create-admin of an existing email succeeded: %s", out);

    api_start(NULL);
    h_reply *r = h_api("POST", "/api/auth/login", NULL, "{s:s, s:s}", "email", "boss@usher.test",
                       "password", "boss-password-1");
    h_assert_status(r, 200, "admin login");
    cr_assert_str_eq(h_jstr(h_jget(r->json, "user"), "role"), "admin");
    cr_assert_null(strstr(r->body, "password_hash"), "%s", r->body);
    user admin;
    snprintf(admin.token, sizeof(admin.token), "%s", h_jstr(r->json, "token"));
    r = h_api("POST", "/api/theaters", admin.token, "{s:s, s:s}", "name", "Boss Hall", "city",
              "Pune");
    h_assert_status(r, 201, "an admin creates a theater");
    /* An admin may register another admin; a customer could not (above). */
    r = h_api("POST", "/api/auth/register", admin.token, "{s:s, s:s, s:s, s:s}", "email",
              "second@usher.test", "password", PASSWORD, "name", "Second", "role", "admin");
    h_assert_status(r, 201, "admin registers an admin");
    cr_assert_str_eq(h_jstr(h_jget(r->json, "user"), "role"), "admin");
    r = h_api("POST", "/api/movies", h_jstr(r->json, "token"), "{s:s, s:i, s:s, s:s}", "title", "M",
              "duration_min", 90, "genre", "drama", "language", "hindi");
    h_assert_status(r, 201, "the second admin creates a movie");
    h_done();
}

/* ---- Catalog ------------------------------------------------------------------------- */

Test(api, catalog_create_and_read_back)
{
    user admin = api_start_admin(NULL);
    h_reply *t = h_api("POST", "/api/theaters", admin.token, "{s:s, s:s}", "name", "Usher Colaba",
                       "city", "Mumbai");
    h_assert_status(t, 201, "theater");
    cr_assert_gt(h_jint(t->json, "id"), 0);
    cr_assert_str_eq(h_jstr(t->json, "name"), "Usher Colaba");
    cr_assert_str_eq(h_jstr(t->json, "city"), "Mumbai");
    cr_assert_str_eq(h_jstr(t->json, "address"), "", "address defaults to empty");
    uint64_t tid = (uint64_t)h_jint(t->json, "id");

    h_reply *s = h_api("POST", "/api/screens", admin.token, "{s:I, s:s, s:o}", "theater_id",
                       (json_int_t)tid, "name", "Audi 1", "layout", layout_std());
    h_assert_status(s, 201, "screen");
    uint64_t sid = (uint64_t)h_jint(s->json, "id");
    cr_assert_neq(sid, tid, "ids are unique across kinds");
    cr_assert_eq((uint64_t)h_jint(s->json, "theater_id"), tid);
    json_t *lay = h_jget(s->json, "layout");
    const char *best = h_jstr(lay, "best_row");
    cr_assert(strcmp(best, "A") == 0 || strcmp(best, "B") == 0 || strcmp(best, "C") == 0,
              "best_row defaults to a row of the layout: %s", best);
    json_t *rowc = json_array_get(h_jget(lay, "rows"), 2);
    cr_assert(jeq(h_jget(rowc, "accessible"), "[1]"));
    cr_assert(jeq(h_jget(rowc, "companion"), "[2]"));
    cr_assert(jeq(h_jget(rowc, "blocked"), "[10]"));
    cr_assert(jeq(h_jget(json_array_get(h_jget(lay, "rows"), 0), "aisles_after"), "[5]"));
    cr_assert(jeq(h_jget(json_array_get(h_jget(lay, "rows"), 1), "accessible"), "[]"));

    h_reply *m = h_api("POST", "/api/movies", admin.token, "{s:s, s:i, s:s, s:s, s:s}", "title",
                       "Orbit of Ash", "duration_min", 151, "genre", "sci-fi", "language",
                       "english", "poster_url", "https://img.example.com/orbit.jpg");
    h_assert_status(m, 201, "movie");
    uint64_t mid = (uint64_t)h_jint(m->json, "id");
    cr_assert_str_eq(h_jstr(m->json, "description"), "");
    cr_assert_str_eq(h_jstr(m->json, "rating"), "");

    int64_t start = ((int64_t)time(NULL) / 60 + 3 * 24 * 60) * 60;
    char when[32];
    utc(start, when);
    h_reply *st = h_api("POST", "/api/showtimes", admin.token, "{s:I, s:I, s:s, s:{s:i, s:i}}",
                        "movie_id", (json_int_t)mid, "screen_id", (json_int_t)sid, "start_time",
                        when, "prices", "silver", SILVER, "gold", GOLD);
    h_assert_status(st, 201, "showtime");
    uint64_t stid = (uint64_t)h_jint(st->json, "id");
    cr_assert_eq(h_jint(st->json, "start_ms"), start * 1000);
    cr_assert_eq((uint64_t)h_jint(st->json, "theater_id"), tid, "theater_id comes from the screen");
    cr_assert_str_eq(h_jstr(st->json, "start_time"), when);

    /* Read back: GET by id answers exactly what the create answered. */
    struct {
        const char *kind;
        uint64_t id;
        h_reply *created;
    } all[] = {
        {"theaters", tid, t}, {"screens", sid, s}, {"movies", mid, m}, {"showtimes", stid, st}};
    for (size_t i = 0; i < 4; i++) {
        h_reply *g = h_api("GET", P("/api/%s/%" PRIu64, all[i].kind, all[i].id), NULL, NULL);
        h_assert_status(g, 200, all[i].kind);
        cr_assert(json_equal(g->json, all[i].created->json), "GET %s: %s, created as %s",
                  all[i].kind, g->body, all[i].created->body);
    }
    /* The showtime is on sale with the screen's seats and its prices. */
    json_t *map = seatmap(stid);
    cr_assert_eq(h_jlen(map, "seats"), 30);
    cr_assert_str_eq(seat_state(map, "C10"), "unavailable", "a blocked seat is not for sale");
    cr_assert_eq(count_state(map, "free"), 29);
    h_done();
}

typedef struct bad_body {
    const char *json, *field;
} bad_body;

static void expect_400s(const user *admin, const char *path, const bad_body *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        h_reply *r = h_api_text("POST", path, admin->token, NULL, b[i].json);
        cr_assert_eq(r->status, 400, "POST %s %s: expected 400 (field %s), got %d: %s", path,
                     b[i].json, b[i].field, r->status, r->body);
        h_assert_problem_json(r, 400, "invalid-field", b[i].field);
    }
}

Test(api, catalog_validation_errors_are_400_with_field)
{
    user admin = api_start_admin(NULL);
    world w = world_make(&admin);
    static const bad_body theaters[] = {
        {"{}", "name"},
        {"{\"name\":\"T\"}", "city"},
        {"{\"city\":\"Pune\"}", "name"},
        {"{\"name\":\"\",\"city\":\"Pune\"}", "name"},
        {"{\"name\":\"   \",\"city\":\"Pune\"}", "name"},
        {"{\"name\":\"T\",\"city\":\"Pune\",\"capacity\":10}", "capacity"},
        {"{\"name\":\"T\",\"city\":\"Pune\",\"id\":5}", "id"},
        {"{\"name\":\"T\\nX\",\"city\":\"Pune\"}", "name"},
        {"{\"name\":42,\"city\":\"Pune\"}", "name"},
    };
    expect_400s(&admin, "/api/theaters", theaters, sizeof(theaters) / sizeof(theaters[0]));

    char body[1024];
    char tid[32];
    snprintf(tid, sizeof(tid), "%" PRIu64, w.theater);
    const char *rows_fmt = "{\"theater_id\":%s,\"name\":\"S\",\"layout\":%s}";
    static const struct {
        const char *layout, *field;
    } layouts[] = {
        {"{\"categories\":[\"s\"],\"rows\":[{\"label\":\"A\",\"category\":\"s\",\"seats\":0}]}",
         "layout.rows[0].seats"},
        {"{\"categories\":[\"s\"],\"rows\":[{\"label\":\"A\",\"category\":\"x\",\"seats\":5}]}",
         "layout.rows[0].category"},
        {"{\"categories\":[\"s\"],\"rows\":[{\"label\":\"A\",\"category\":\"s\",\"seats\":5},"
         "{\"label\":\"A\",\"category\":\"s\",\"seats\":5}]}",
         "layout.rows[1].label"},
        {"{\"categories\":[\"s\"],\"rows\":[{\"label\":\"A\",\"category\":\"s\",\"seats\":5,"
         "\"aisles_after\":[5]}]}",
         "layout.rows[0].aisles_after[0]"},
        {"{\"categories\":[\"s\"],\"rows\":[{\"label\":\"A\",\"category\":\"s\",\"seats\":5,"
         "\"accessible\":[6]}]}",
         "layout.rows[0].accessible[0]"},
        {"{\"categories\":[\"s\"],\"rows\":[{\"label\":\"A\",\"category\":\"s\",\"seats\":5,"
         "\"accessible\":[1],\"blocked\":[1]}]}",
         "layout.rows[0].blocked[0]"},
        {"{\"categories\":[],\"rows\":[]}", "layout.categories"},
        {"{\"categories\":[\"s\"],\"rows\":[{\"label\":\"A-1\",\"category\":\"s\",\"seats\":5}]}",
         "layout.rows[0].label"},
        {"{\"categories\":[\"s\"],\"rows\":[],\"stage\":\"north\"}", "layout.stage"},
        {"[]", "layout"},
    };
    for (size_t i = 0; i < sizeof(layouts) / sizeof(layouts[0]); i++) {
        snprintf(body, sizeof(body), rows_fmt, tid, layouts[i].layout);
        bad_body b = {body, layouts[i].field};
        expect_400s(&admin, "/api/screens", &b, 1);
    }
    snprintf(body, sizeof(body), rows_fmt, "\"seven\"", "{}");
    bad_body bt = {body, "theater_id"};
    expect_400s(&admin, "/api/screens", &bt, 1);

    static const bad_body movies[] = {
        {"{\"title\":\"M\",\"duration_min\":0,\"genre\":\"g\",\"language\":\"l\"}", "duration_min"},
        {"{\"title\":\"M\",\"duration_min\":1001,\"genre\":\"g\",\"language\":\"l\"}",
         "duration_min"},
        {"{\"title\":\"M\",\"duration_min\":90,\"language\":\"l\"}", "genre"},
        {"{\"title\":\"M\",\"duration_min\":90,\"genre\":\"g\",\"language\":\"l\","
         "\"poster_url\":\"ftp://example.com/p.jpg\"}",
         "poster_url"},
        {"{\"title\":\"M\",\"duration_min\":\"90\",\"genre\":\"g\",\"language\":\"l\"}",
         "duration_min"},
    };
    expect_400s(&admin, "/api/movies", movies, sizeof(movies) / sizeof(movies[0]));

    char mid[32], sid[32];
    snprintf(mid, sizeof(mid), "%" PRIu64, w.movie);
    snprintf(sid, sizeof(sid), "%" PRIu64, w.screen);
    char future[32], past[32];
    utc((int64_t)time(NULL) + 86400, future);
    utc((int64_t)time(NULL) - 3600, past);
    static const struct {
        const char *start, *prices, *field;
    } shows[] = {
        {"2030-13-01T10:00:00Z", "{\"silver\":1,\"gold\":2}", "start_time"},
        {"2030-02-30T10:00:00Z", "{\"silver\":1,\"gold\":2}", "start_time"},
        {"2030-01-01 10:00:00", "{\"silver\":1,\"gold\":2}", "start_time"},
        {"2030-01-01T10:00:00+05:30", "{\"silver\":1,\"gold\":2}", "start_time"},
        {NULL, "{\"silver\":1}", "prices.gold"},
        {NULL, "{\"silver\":1,\"gold\":2,\"vip\":3}", "prices.vip"},
        {NULL, "{\"silver\":-1,\"gold\":2}", "prices.silver"},
        {NULL, "{\"silver\":1.5,\"gold\":2}", "prices.silver"},
        {NULL, "[1,2]", "prices"},
        {"PAST", "{\"silver\":1,\"gold\":2}", "start_time"},
    };
    for (size_t i = 0; i < sizeof(shows) / sizeof(shows[0]); i++) {
        const char *start = shows[i].start == NULL                ? future
                            : strcmp(shows[i].start, "PAST") == 0 ? past
                                                                  : shows[i].start;
        snprintf(body, sizeof(body),
                 "{\"movie_id\":%s,\"screen_id\":%s,\"start_time\":\"%s\",\"prices\":%s}", mid, sid,
                 start, shows[i].prices);
        bad_body b = {body, shows[i].field};
        expect_400s(&admin, "/api/showtimes", &b, 1);
    }
    snprintf(body, sizeof(body),
             "{\"screen_id\":%s,\"start_time\":\"%s\",\"prices\":{\"silver\":1,\"gold\":2}}", sid,
             future);
    bad_body nm = {body, "movie_id"};
    expect_400s(&admin, "/api/showtimes", &nm, 1);
    snprintf(body, sizeof(body),
             "{\"movie_id\":%s,\"screen_id\":%s,\"start_time\":\"%s\",\"prices\":{\"silver\":1,"
             "\"gold\":2},\"theater_id\":1}",
             mid, sid, future);
    bad_body der = {body, "theater_id"};
    expect_400s(&admin, "/api/showtimes", &der, 1);

    /* PATCH validates the merged object and stores nothing on refusal. */
    h_reply *r =
        h_api("PATCH", P("/api/theaters/%" PRIu64, w.theater), admin.token, "{s:s}", "name", "");
    h_assert_problem_json(r, 400, "invalid-field", "name");
    r = h_api("PATCH", P("/api/movies/%" PRIu64, w.movie), admin.token, "{s:i}", "duration_min",
              -5);
    h_assert_problem_json(r, 400, "invalid-field", "duration_min");
    r = h_api("PATCH", P("/api/theaters/%" PRIu64, w.theater), admin.token, "{s:I}", "id",
              (json_int_t)12345);
    h_assert_problem_json(r, 400, "invalid-field", "id");
    r = h_api("GET", P("/api/theaters/%" PRIu64, w.theater), NULL, NULL);
    cr_assert_str_eq(h_jstr(r->json, "name"), "Usher Andheri");
    r = h_api("GET", P("/api/movies/%" PRIu64, w.movie), NULL, NULL);
    cr_assert_eq(h_jint(r->json, "duration_min"), 120);
    /* Nothing was created by any of the refused bodies. */
    r = h_api("GET", "/api/theaters", NULL, NULL);
    cr_assert_eq(h_jint(r->json, "total"), 1, "%s", r->body);
    r = h_api("GET", "/api/screens", NULL, NULL);
    cr_assert_eq(h_jint(r->json, "total"), 1, "%s", r->body);
    r = h_api("GET", "/api/movies", NULL, NULL);
    cr_assert_eq(h_jint(r->json, "total"), 1, "%s", r->body);
    r = h_api("GET", "/api/showtimes", NULL, NULL);
    cr_assert_eq(h_jint(r->json, "total"), 1, "%s", r->body);
    h_done();
}

/* A showtime body without a usable screen_id is a 400 naming screen_id,
 * like every other invalid field; the server must keep running. */
Test(api, showtime_create_without_screen_id_is_400_not_a_crash)
{
    user admin = api_start_admin(NULL);
    world w = world_make(&admin);
    char future[32];
    utc((int64_t)time(NULL) + 86400, future);
    h_reply *r =
        h_api("POST", "/api/showtimes", admin.token, "{s:I, s:s, s:{s:i, s:i}}", "movie_id",
              (json_int_t)w.movie, "start_time", future, "prices", "silver", 1, "gold", 2);
    h_assert_problem_json(r, 400, "invalid-field", "screen_id");
    r = h_api("POST", "/api/showtimes", admin.token, "{s:I, s:s, s:s, s:{s:i, s:i}}", "movie_id",
              (json_int_t)w.movie, "screen_id", "seven", "start_time", future, "prices", "silver",
              1, "gold", 2);
    h_assert_problem_json(r, 400, "invalid-field", "screen_id");
    r = h_api("POST", "/api/showtimes", admin.token, "{s:I, s:i, s:s, s:{s:i, s:i}}", "movie_id",
              (json_int_t)w.movie, "screen_id", 0, "start_time", future, "prices", "silver", 1,
              "gold", 2);
    h_assert_problem_json(r, 400, "invalid-field", "screen_id");
    h_assert_alive();
    h_done();
}

Test(api, showtime_patch_with_invalid_screen_id_is_400_not_a_crash)
{
    user admin = api_start_admin(NULL);
    world w = world_make(&admin);
    h_reply *r = h_api("PATCH", P("/api/showtimes/%" PRIu64, w.showtime), admin.token, "{s:s}",
                       "screen_id", "seven");
    h_assert_problem_json(r, 400, "invalid-field", "screen_id");
    r = h_api("PATCH", P("/api/showtimes/%" PRIu64, w.showtime), admin.token, "{s:i}", "screen_id",
              -3);
    h_assert_problem_json(r, 400, "invalid-field", "screen_id");
    h_assert_alive();
    r = h_api("GET", P("/api/showtimes/%" PRIu64, w.showtime), NULL, NULL);
    h_assert_status(r, 200, "the showtime is unchanged");
    cr_assert_eq((uint64_t)h_jint(r->json, "screen_id"), w.screen);
    h_done();
}

/* Creating a showtime in the past is refused (400 start_time); moving one
 * there with PATCH must be refused the same way. */
Test(api, showtime_patch_into_the_past_is_400)
{
    user admin = api_start_admin(NULL);
    world w = world_make(&admin);
    char past[32];
    utc((int64_t)time(NULL) - 3600, past);
    h_reply *r = h_api("PATCH", P("/api/showtimes/%" PRIu64, w.showtime), admin.token, "{s:s}",
                       "start_time", past);
    h_assert_problem_json(r, 400, "invalid-field", "start_time");
    h_done();
}

Test(api, catalog_unknown_references_are_422)
{
    user admin = api_start_admin(NULL);
    world w = world_make(&admin);
    h_reply *r = h_api("POST", "/api/screens", admin.token, "{s:I, s:s, s:o}", "theater_id",
                       (json_int_t)999999, "name", "S", "layout", layout_std());
    h_assert_problem_json(r, 422, "unknown-reference", "theater_id");
    r = showtime_post(&admin, 999999, w.screen, 86400, 1, 2);
    h_assert_problem_json(r, 422, "unknown-reference", "movie_id");
    r = showtime_post(&admin, w.movie, 999999, 86400, 1, 2);
    h_assert_problem_json(r, 422, "unknown-reference", "screen_id");
    /* A theater id is not a screen id: ids are typed by kind. */
    r = showtime_post(&admin, w.movie, w.theater, 86400, 1, 2);
    h_assert_problem_json(r, 422, "unknown-reference", "screen_id");
    r = h_api("PATCH", P("/api/screens/%" PRIu64, w.screen), admin.token, "{s:I}", "theater_id",
              (json_int_t)999999);
    h_assert_problem_json(r, 422, "unknown-reference", "theater_id");
    r = h_api("PATCH", P("/api/showtimes/%" PRIu64, w.showtime), admin.token, "{s:I}", "movie_id",
              (json_int_t)999999);
    h_assert_problem_json(r, 422, "unknown-reference", "movie_id");
    r = h_api("PATCH", P("/api/showtimes/%" PRIu64, w.showtime), admin.token, "{s:I}", "screen_id",
              (json_int_t)999999);
    h_assert_problem_json(r, 422, "unknown-reference", "screen_id");
    r = h_api("GET", P("/api/showtimes/%" PRIu64, w.showtime), NULL, NULL);
    cr_assert_eq((uint64_t)h_jint(r->json, "movie_id"), w.movie);
    cr_assert_eq((uint64_t)h_jint(r->json, "screen_id"), w.screen);
    r = h_api("GET", "/api/screens", NULL, NULL);
    cr_assert_eq(h_jint(r->json, "total"), 1, "%s", r->body);
    h_done();
}

/* The ids of a list answer's items, comma-separated (static buffer). */
static const char *item_ids(const h_reply *r)
{
    static char out[4096];
    size_t o = 0;
    out[0] = '\0';
    json_t *items = h_jget(r->json, "items");
    for (size_t i = 0; i < json_array_size(items); i++)
        o += (size_t)snprintf(out + o, sizeof(out) - o, "%s%" PRId64, i ? "," : "",
                              (int64_t)h_jint(json_array_get(items, i), "id"));
    return out;
}

static const char *ids_csv(const uint64_t *ids, size_t n)
{
    static char out[4096];
    size_t o = 0;
    out[0] = '\0';
    for (size_t i = 0; i < n; i++)
        o += (size_t)snprintf(out + o, sizeof(out) - o, "%s%" PRIu64, i ? "," : "", ids[i]);
    return out;
}

static void assert_list(const char *path, const uint64_t *ids, size_t n, json_int_t total)
{
    h_reply *r = h_api("GET", path, NULL, NULL);
    h_assert_status(r, 200, path);
    cr_assert_eq(h_jint(r->json, "total"), total,
                 "GET %s: total %" PRId64 ", expected %" PRId64 ": %s", path,
                 (int64_t)h_jint(r->json, "total"), (int64_t)total, r->body);
    char want[4096];
    snprintf(want, sizeof(want), "%s", ids_csv(ids, n));
    cr_assert_str_eq(item_ids(r), want, "GET %s: items", path);
}

Test(api, catalog_lists_filter_and_paginate)
{
    user admin = api_start_admin(NULL);
    uint64_t t1 = theater_new(&admin, "Andheri", "Mumbai");
    uint64_t t2 = theater_new(&admin, "Indiranagar", "Bengaluru");
    uint64_t t3 = theater_new(&admin, "Colaba", "mumbai");
    uint64_t s1 = screen_new(&admin, t1, "One", layout_std());
    uint64_t s2 = screen_new(&admin, t2, "Two", layout_std());
    uint64_t s3 = screen_new(&admin, t1, "Three", layout_std());
    uint64_t m1 = movie_new(&admin, "The Last Usher", "thriller", "english");
    uint64_t m2 = movie_new(&admin, "Monsoon Wedding", "drama", "hindi");
    uint64_t m3 = movie_new(&admin, "Usher Returns", "drama", "english");
    showtime_new(&admin, m2, s2, 86400, 100, 200); /* m2 shows in Bengaluru */
    showtime_new(&admin, m1, s1, 86400, 100, 200); /* m1 in Mumbai */

    assert_list("/api/theaters", (uint64_t[]){t1, t2, t3}, 3, 3);
    assert_list("/api/theaters?city=Mumbai", (uint64_t[]){t1, t3}, 2, 2);
    assert_list("/api/theaters?city=MUMBAI&limit=1", (uint64_t[]){t1}, 1, 2);
    assert_list("/api/theaters?city=mumbai&limit=1&page=2", (uint64_t[]){t3}, 1, 2);
    assert_list("/api/theaters?city=mumbai&limit=1&page=3", NULL, 0, 2);
    assert_list("/api/theaters?city=Pune", NULL, 0, 0);
    assert_list("/api/theaters?limit=2&page=2", (uint64_t[]){t3}, 1, 3);
    h_reply *r = h_api("GET", "/api/theaters?limit=2&page=2", NULL, NULL);
    cr_assert_eq(h_jint(r->json, "page"), 2);
    cr_assert_eq(h_jint(r->json, "limit"), 2);

    assert_list(P("/api/screens?theater_id=%" PRIu64, t1), (uint64_t[]){s1, s3}, 2, 2);
    assert_list(P("/api/screens?theater_id=%" PRIu64, t3), NULL, 0, 0);
    r = h_api("GET", "/api/screens", NULL, NULL);
    cr_assert_eq(h_jint(r->json, "total"), 3);
    cr_assert_null(json_object_get(json_array_get(h_jget(r->json, "items"), 0), "layout"),
                   "screen lists leave the layout out: %s", r->body);

    assert_list("/api/movies?q=usher", (uint64_t[]){m1, m3}, 2, 2);
    assert_list("/api/movies?q=USHER%20RET", (uint64_t[]){m3}, 1, 1);
    assert_list("/api/movies?genre=Drama", (uint64_t[]){m2, m3}, 2, 2);
    assert_list("/api/movies?language=english", (uint64_t[]){m1, m3}, 2, 2);
    assert_list("/api/movies?genre=drama&language=english", (uint64_t[]){m3}, 1, 1);
    assert_list("/api/movies?city=Bengaluru", (uint64_t[]){m2}, 1, 1);
    assert_list("/api/movies?city=mumbai", (uint64_t[]){m1}, 1, 1);
    assert_list("/api/movies?limit=1&page=3", (uint64_t[]){m3}, 1, 3);

    static const struct {
        const char *path, *field;
    } bad[] = {
        {"/api/theaters?limit=0", "limit"},  {"/api/theaters?limit=101", "limit"},
        {"/api/theaters?page=0", "page"},    {"/api/theaters?page=abc", "page"},
        {"/api/theaters?limit=-1", "limit"}, {"/api/screens?theater_id=x", "theater_id"},
        {"/api/movies?q=%zz", "q"},          {"/api/theaters?page=200&limit=100", "page"},
        {"/api/movies?genre=%00", "genre"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        r = h_api("GET", bad[i].path, NULL, NULL);
        cr_assert_eq(r->status, 400, "GET %s: expected 400, got %d %s", bad[i].path, r->status,
                     r->body);
        h_assert_problem_json(r, 400, "invalid-field", bad[i].field);
    }
    h_done();
}

Test(api, catalog_patch_merges_and_delete_removes)
{
    user admin = api_start_admin(NULL);
    world w = world_make(&admin);
    h_reply *r = h_api("PATCH", P("/api/theaters/%" PRIu64, w.theater), admin.token, "{s:s}",
                       "address", "2 New Road");
    h_assert_status(r, 200, "patch theater");
    cr_assert_str_eq(h_jstr(r->json, "address"), "2 New Road");
    cr_assert_str_eq(h_jstr(r->json, "name"), "Usher Andheri", "PATCH keeps what it omits");
    cr_assert_str_eq(h_jstr(r->json, "city"), "Mumbai");
    h_reply *g = h_api("GET", P("/api/theaters/%" PRIu64, w.theater), NULL, NULL);
    cr_assert(json_equal(g->json, r->json), "GET %s after PATCH %s", g->body, r->body);

    r = h_api("PATCH", P("/api/movies/%" PRIu64, w.movie), admin.token, "{s:s, s:i}", "genre",
              "comedy", "duration_min", 99);
    h_assert_status(r, 200, "patch movie");
    cr_assert_str_eq(h_jstr(r->json, "genre"), "comedy");
    cr_assert_eq(h_jint(r->json, "duration_min"), 99);
    cr_assert_str_eq(h_jstr(r->json, "title"), "The Last Usher");
    r = h_api("GET", "/api/movies?genre=comedy", NULL, NULL);
    cr_assert_eq(h_jint(r->json, "total"), 1, "the list sees the change: %s", r->body);

    /* Renaming a screen is fine while it has showtimes. */
    r = h_api("PATCH", P("/api/screens/%" PRIu64, w.screen), admin.token, "{s:s}", "name",
              "Gold Class");
    h_assert_status(r, 200, "rename screen");
    cr_assert_str_eq(h_jstr(r->json, "name"), "Gold Class");
    cr_assert_eq(h_jlen(h_jget(r->json, "layout"), "rows"), 3);

    /* A showtime's prices change while it has no holds; the seat map follows. */
    r = h_api("PATCH", P("/api/showtimes/%" PRIu64, w.showtime), admin.token, "{s:{s:i, s:i}}",
              "prices", "silver", 11000, "gold", 22000);
    h_assert_status(r, 200, "patch showtime prices");
    json_t *map = seatmap(w.showtime);
    json_t *a1 = json_array_get(h_jget(map, "seats"), 0);
    cr_assert_str_eq(h_jstr(a1, "label"), "A1");
    cr_assert_eq(h_jint(a1, "price"), 11000, "the seat map has the new price");
    /* ... also while someone holds seats (issue #7): the hold keeps its price. */
    user c = user_register("gina@example.com");
    uint64_t held = reserve_ok(&c, w.showtime, "A1");
    r = h_api("PATCH", P("/api/showtimes/%" PRIu64, w.showtime), admin.token, "{s:{s:i, s:i}}",
              "prices", "silver", 1, "gold", 2);
    h_assert_status(r, 200, "patch prices under a live hold");
    map = seatmap(w.showtime);
    cr_assert_eq(h_jint(json_array_get(h_jget(map, "seats"), 1), "price"), 1);
    r = h_api("GET", P("/api/showtimes/%" PRIu64, w.showtime), NULL, NULL);
    cr_assert_eq(h_jint(h_jget(r->json, "prices"), "silver"), 1, "%s", r->body);
    r = h_api("GET", P("/api/holds/%" PRIu64, held), c.token, NULL);
    h_assert_status(r, 200, "the hold");
    cr_assert_eq(h_jint(r->json, "amount"), 11000, "a live hold keeps its price: %s", r->body);

    /* An unreferenced movie is deleted: 204, then 404. */
    uint64_t spare = movie_new(&admin, "Spare", "drama", "hindi");
    r = h_api("DELETE", P("/api/movies/%" PRIu64, spare), admin.token, NULL);
    h_assert_status(r, 204, "delete movie");
    cr_assert_eq(r->body_len, 0);
    r = h_api("GET", P("/api/movies/%" PRIu64, spare), NULL, NULL);
    h_assert_problem_json(r, 404, "not-found", NULL);
    r = h_api("DELETE", P("/api/movies/%" PRIu64, spare), admin.token, NULL);
    h_assert_problem_json(r, 404, "not-found", NULL);
    r = h_api("PATCH", P("/api/movies/%" PRIu64, spare), admin.token, "{s:s}", "genre", "x");
    h_assert_problem_json(r, 404, "not-found", NULL);
    r = h_api("GET", "/api/movies", NULL, NULL);
    cr_assert_eq(h_jint(r->json, "total"), 1, "%s", r->body);
    h_done();
}

Test(api, catalog_delete_refused_while_referenced)
{
    user admin = api_start_admin(NULL);
    world w = world_make(&admin);
    user c = user_register("hank@example.com");
    h_reply *r = h_api("DELETE", P("/api/theaters/%" PRIu64, w.theater), admin.token, NULL);
    h_assert_problem_json(r, 409, "in-use", NULL);
    r = h_api("DELETE", P("/api/screens/%" PRIu64, w.screen), admin.token, NULL);
    h_assert_problem_json(r, 409, "in-use", NULL);
    r = h_api("DELETE", P("/api/movies/%" PRIu64, w.movie), admin.token, NULL);
    h_assert_problem_json(r, 409, "in-use", NULL);

    /* A showtime with a live hold, then with a confirmed booking, stays. */
    uint64_t hold = reserve_ok(&c, w.showtime, "B4,B5");
    r = h_api("DELETE", P("/api/showtimes/%" PRIu64, w.showtime), admin.token, NULL);
    h_assert_problem_json(r, 409, "showtime-in-use", NULL);
    uint64_t booking = confirm_ok(&c, hold);
    r = h_api("DELETE", P("/api/showtimes/%" PRIu64, w.showtime), admin.token, NULL);
    h_assert_problem_json(r, 409, "showtime-in-use", NULL);
    r = h_api("GET", P("/api/showtimes/%" PRIu64, w.showtime), NULL, NULL);
    h_assert_status(r, 200, "the showtime is still there");
    cr_assert_str_eq(seat_state(seatmap(w.showtime), "B4"), "sold");

    /* Cancelled, the booking no longer pins it. */
    r = h_api("POST", P("/api/bookings/%" PRIu64 "/cancel", booking), c.token, NULL);
    h_assert_status(r, 200, "cancel");
    r = h_api("DELETE", P("/api/showtimes/%" PRIu64, w.showtime), admin.token, NULL);
    h_assert_status(r, 204, "delete the showtime after the cancellation");
    r = h_api("GET", P("/api/showtimes/%" PRIu64, w.showtime), NULL, NULL);
    h_assert_problem_json(r, 404, "not-found", NULL);
    r = h_api("GET", P("/api/seats/%" PRIu64, w.showtime), NULL, NULL);
    h_assert_problem_json(r, 404, "not-found", NULL);
    r = reserve(&c, w.showtime, "A1");
    h_assert_problem_json(r, 404, "not-found", NULL);
    /* The cancelled booking stays readable. */
    r = h_api("GET", P("/api/bookings/%" PRIu64, booking), c.token, NULL);
    h_assert_status(r, 200, "a cancelled booking of a deleted showtime");
    cr_assert_str_eq(h_jstr(r->json, "status"), "cancelled");

    /* Now the chain comes apart in order. */
    r = h_api("DELETE", P("/api/screens/%" PRIu64, w.screen), admin.token, NULL);
    h_assert_status(r, 204, "delete screen");
    r = h_api("DELETE", P("/api/movies/%" PRIu64, w.movie), admin.token, NULL);
    h_assert_status(r, 204, "delete movie");
    r = h_api("DELETE", P("/api/theaters/%" PRIu64, w.theater), admin.token, NULL);
    h_assert_status(r, 204, "delete theater");
    const char *kinds[] = {"theaters", "screens", "movies"};
    uint64_t ids[] = {w.theater, w.screen, w.movie};
    for (int i = 0; i < 3; i++) {
        r = h_api("GET", P("/api/%s/%" PRIu64, kinds[i], ids[i]), NULL, NULL);
        h_assert_problem_json(r, 404, "not-found", NULL);
        r = h_api("GET", P("/api/%s", kinds[i]), NULL, NULL);
        cr_assert_eq(h_jint(r->json, "total"), 0, "%s: %s", kinds[i], r->body);
    }
    h_done();
}

Test(api, screen_layout_patch_refused_while_showtimes_use_it)
{
    user admin = api_start_admin(NULL);
    world w = world_make(&admin);
    json_t *bigger = json_pack("{s:[s,s], s:[{s:s,s:s,s:i}, {s:s,s:s,s:i}]}", "categories",
                               "silver", "gold", "rows", "label", "A", "category", "silver",
                               "seats", 20, "label", "B", "category", "gold", "seats", 20);
    h_reply *r = h_api("PATCH", P("/api/screens/%" PRIu64, w.screen), admin.token, "{s:O}",
                       "layout", bigger);
    h_assert_problem_json(r, 409, "in-use", "layout");
    r = h_api("GET", P("/api/screens/%" PRIu64, w.screen), NULL, NULL);
    cr_assert_eq(h_jlen(h_jget(r->json, "layout"), "rows"), 3, "the layout is unchanged");
    cr_assert_eq(h_jlen(seatmap(w.showtime), "seats"), 30);

    /* Once its showtimes are gone, the layout can change, and a new
     * showtime sells the new seats. */
    r = h_api("DELETE", P("/api/showtimes/%" PRIu64, w.showtime), admin.token, NULL);
    h_assert_status(r, 204, "delete showtime");
    r = h_api("PATCH", P("/api/screens/%" PRIu64, w.screen), admin.token, "{s:O}", "layout",
              bigger);
    h_assert_status(r, 200, "patch the layout");
    cr_assert_eq(h_jlen(h_jget(r->json, "layout"), "rows"), 2);
    uint64_t st = showtime_new(&admin, w.movie, w.screen, 86400, 500, 900);
    json_t *map = seatmap(st);
    cr_assert_eq(h_jlen(map, "seats"), 40, "the new showtime has the new layout");
    cr_assert_str_eq(seat_state(map, "B20"), "free");
    user c = user_register("ivy@example.com");
    r = reserve(&c, st, "A20,B20");
    h_assert_status(r, 201, "reserve on the new layout");
    cr_assert_eq(h_jint(r->json, "amount"), 500 + 900);
    json_decref(bigger);
    h_done();
}

/* A screen with showtimes moved to another theater: either refused like a
 * layout change (409), or its showtimes follow (their theater_id and the
 * browse filters see the new theater). Never showtimes that name a theater
 * the screen is no longer in. */
Test(api, moving_a_screen_keeps_its_showtimes_consistent)
{
    user admin = api_start_admin(NULL);
    world w = world_make(&admin);
    uint64_t pune = theater_new(&admin, "Usher Pune", "Pune");
    h_reply *r = h_api("PATCH", P("/api/screens/%" PRIu64, w.screen), admin.token, "{s:I}",
                       "theater_id", (json_int_t)pune);
    if (r->status == 409) {
        h_assert_problem_json(r, 409, "in-use", "theater_id");
    } else {
        h_assert_status(r, 200, "move the screen");
        r = h_api("GET", P("/api/showtimes/%" PRIu64, w.showtime), NULL, NULL);
        cr_assert_eq((uint64_t)h_jint(r->json, "theater_id"), pune,
                     "the screen moved to theater %" PRIu64 " but its showtime still says %" PRId64
                     ": %s",
                     pune, (int64_t)h_jint(r->json, "theater_id"), r->body);
        r = h_api("GET", "/api/showtimes?city=Pune", NULL, NULL);
        cr_assert_eq(h_jint(r->json, "total"), 1, "browse by the new city: %s", r->body);
        /* The old theater has no screens left: deleting it must not orphan
         * the showtime. */
        r = h_api("DELETE", P("/api/theaters/%" PRIu64, w.theater), admin.token, NULL);
        h_assert_status(r, 204, "delete the emptied theater");
        r = h_api("GET", "/api/showtimes", NULL, NULL);
        json_t *it = h_jat(r->json, "items", 0);
        cr_assert_str_eq(h_jstr(it, "city"), "Pune", "%s", r->body);
    }
    h_done();
}

Test(api, unknown_ids_404_and_wrong_methods_405_with_allow)
{
    user admin = api_start_admin(NULL);
    world w = world_make(&admin);
    user c = user_register("jack@example.com");
    const char *gets[] = {"/api/theaters/999999", "/api/screens/999999", "/api/movies/999999",
                          "/api/showtimes/999999", "/api/seats/999999"};
    for (size_t i = 0; i < 5; i++) {
        h_reply *r = h_api("GET", gets[i], NULL, NULL);
        h_assert_problem_json(r, 404, "not-found", NULL);
    }
    h_reply *r = h_api("DELETE", "/api/theaters/999999", admin.token, NULL);
    h_assert_problem_json(r, 404, "not-found", NULL);
    r = h_api("PATCH", "/api/screens/999999", admin.token, "{s:s}", "name", "x");
    h_assert_problem_json(r, 404, "not-found", NULL);
    r = h_api("DELETE", "/api/showtimes/999999", admin.token, NULL);
    h_assert_problem_json(r, 404, "not-found", NULL);
    r = h_api("GET", "/api/bookings/999999", c.token, NULL);
    h_assert_problem_json(r, 404, "not-found", NULL);
    r = h_api("POST", "/api/bookings/999999/cancel", c.token, NULL);
    h_assert_problem_json(r, 404, "not-found", NULL);
    r = h_api("GET", "/api/holds/999999", c.token, NULL);
    h_assert_problem_json(r, 404, "not-found", NULL);
    r = h_api("DELETE", "/api/holds/999999", c.token, NULL);
    h_assert_problem_json(r, 404, "not-found", NULL);
    /* Ids of a shard that does not exist (top 16 bits = 7 of 2 shards). */
    r = h_api("GET", P("/api/bookings/%" PRIu64, (uint64_t)7 << 48 | 1), c.token, NULL);
    h_assert_problem_json(r, 404, "not-found", NULL);
    r = confirm(&c, (uint64_t)7 << 48 | 1);
    h_assert_problem_json(r, 404, "not-found", NULL);
    /* Not ids at all: no such resource. */
    const char *odd[] = {"/api/theaters/0", "/api/theaters/01", "/api/theaters/abc",
                         "/api/theaters/1/2", "/api/theaters/99999999999999999999999"};
    for (size_t i = 0; i < 5; i++) {
        r = h_api("GET", odd[i], NULL, NULL);
        h_assert_problem_json(r, 404, "not-found", NULL);
    }
    static const struct {
        const char *method, *path, *allow;
    } m405[] = {
        {"PUT", "/api/theaters/ID", "GET, PATCH, DELETE, HEAD"},
        {"POST", "/api/theaters/ID", "GET, PATCH, DELETE, HEAD"},
        {"DELETE", "/api/theaters", "GET, POST, HEAD"},
        {"PATCH", "/api/showtimes", "GET, POST, HEAD"},
        {"POST", "/api/seats/ID", "GET, HEAD"},
        {"GET", "/api/bookings/reserve", "POST"},
        {"GET", "/api/bookings/confirm", "POST"},
        {"DELETE", "/api/bookings/ID", "GET, HEAD"},
        {"GET", "/api/bookings/ID/cancel", "POST"},
        {"POST", "/api/holds/ID", "GET, DELETE, HEAD"},
        {"GET", "/api/auth/login", "POST"},
        {"DELETE", "/api/me", "GET, HEAD"},
    };
    for (size_t i = 0; i < sizeof(m405) / sizeof(m405[0]); i++) {
        char path[128];
        const char *id = strstr(m405[i].path, "ID");
        if (id != NULL)
            snprintf(path, sizeof(path), "%.*s%" PRIu64 "%s", (int)(id - m405[i].path),
                     m405[i].path, w.theater, id + 2);
        else
            snprintf(path, sizeof(path), "%s", m405[i].path);
        r = h_api_text(m405[i].method, path, admin.token, NULL, NULL);
        cr_assert_eq(r->status, 405, "%s %s: expected 405, got %d %s", m405[i].method, path,
                     r->status, r->body);
        h_assert_problem_json(r, 405, "method-not-allowed", NULL);
        char allow[128] = "";
        cr_assert(h_reply_header(r, "Allow", allow, sizeof(allow)), "%s %s: no Allow",
                  m405[i].method, path);
        cr_assert_str_eq(allow, m405[i].allow, "%s %s: Allow", m405[i].method, path);
    }
    /* The theater survived the PUT/POST attempts. */
    r = h_api("GET", P("/api/theaters/%" PRIu64, w.theater), NULL, NULL);
    h_assert_status(r, 200, "theater");
    h_done();
}

/* 204 and 304 answers carry no content, and RFC 9110 8.6: "A server MUST
 * NOT send a Content-Length header field in any response with a status
 * code of 1xx (Informational) or 204 (No Content)"; a 304 may only repeat
 * the Content-Length the 200 would have had (RFC 9110 8.6, 15.4.5). */
Test(api, no_content_answers_carry_no_content_length)
{
    user admin = api_start_admin(NULL);
    world w = world_make(&admin);
    user c = user_register("kate@example.com");
    uint64_t hold = reserve_ok(&c, w.showtime, "A1");
    h_reply *r = h_api("DELETE", P("/api/holds/%" PRIu64, hold), c.token, NULL);
    h_assert_status(r, 204, "release");
    char v[64];
    cr_assert(!h_reply_header(r, "Content-Length", v, sizeof(v)),
              "a 204 carries Content-Length: %s", v);
    h_reply *full = h_api("GET", P("/api/seats/%" PRIu64, w.showtime), NULL, NULL);
    char etag[64], hdr[128];
    cr_assert(h_reply_header(full, "ETag", etag, sizeof(etag)));
    snprintf(hdr, sizeof(hdr), "If-None-Match: %s\r\n", etag);
    r = h_api_text("GET", P("/api/seats/%" PRIu64, w.showtime), NULL, hdr, NULL);
    h_assert_status(r, 304, "conditional GET");
    if (h_reply_header(r, "Content-Length", v, sizeof(v)))
        cr_assert_eq((size_t)atoll(v), full->body_len,
                     "a 304 says Content-Length: %s, the 200 has %zu bytes", v, full->body_len);
    h_done();
}

/* ---- Browse ------------------------------------------------------------------------------ */

/* The ids of a showtime list, in order (static buffer). */
static const char *show_ids(const char *path, json_int_t *total)
{
    h_reply *r = h_api("GET", path, NULL, NULL);
    h_assert_status(r, 200, path);
    *total = h_jint(r->json, "total");
    return item_ids(r);
}

static void assert_shows(const char *path, const uint64_t *ids, size_t n, json_int_t want_total)
{
    json_int_t total;
    char got[4096];
    snprintf(got, sizeof(got), "%s", show_ids(path, &total));
    cr_assert_str_eq(got, ids_csv(ids, n), "GET %s", path);
    cr_assert_eq(total, want_total, "GET %s: total", path);
}

Test(api, browse_showtimes_filters_sort_and_paginate)
{
    user admin = api_start_admin(NULL);
    uint64_t mum = theater_new(&admin, "Andheri", "Mumbai");
    uint64_t blr = theater_new(&admin, "Indiranagar", "Bengaluru");
    uint64_t sm = screen_new(&admin, mum, "M1", layout_std());
    /* A two-seat screen, to sell out. */
    uint64_t sb = screen_new(&admin, blr, "B1",
                             json_pack("{s:[s,s], s:[{s:s,s:s,s:i}, {s:s,s:s,s:i}]}", "categories",
                                       "silver", "gold", "rows", "label", "A", "category", "silver",
                                       "seats", 1, "label", "B", "category", "gold", "seats", 1));
    uint64_t drama = movie_new(&admin, "Monsoon", "drama", "hindi");
    uint64_t scifi = movie_new(&admin, "Orbit", "sci-fi", "english");
    /* Day D+2 and D+3 (UTC), at fixed hours so the date filter is exact. */
    int64_t day = ((int64_t)time(NULL) / 86400 + 2) * 86400;
    uint64_t a = showtime_at(&admin, drama, sm, day + 10 * 3600, 20000, 30000);
    uint64_t b = showtime_at(&admin, scifi, sm, day + 14 * 3600, 10000, 40000);
    uint64_t c = showtime_at(&admin, drama, sb, day + 12 * 3600, 30000, 35000);
    uint64_t d = showtime_at(&admin, scifi, sb, day + 86400 + 9 * 3600, 15000, 15000);
    uint64_t e = showtime_at(&admin, drama, sm, day + 86400 + 18 * 3600, 25000, 26000);
    /* By time: a(10h) c(12h) b(14h) d(D+3 9h) e(D+3 18h). */
    assert_shows("/api/showtimes", (uint64_t[]){a, c, b, d, e}, 5, 5);
    assert_shows("/api/showtimes?sort=time", (uint64_t[]){a, c, b, d, e}, 5, 5);
    h_reply *r = h_api("GET", "/api/showtimes", NULL, NULL);
    json_t *it = h_jat(r->json, "items", 0);
    cr_assert_eq((uint64_t)h_jint(it, "id"), a);
    cr_assert_str_eq(h_jstr(it, "movie_title"), "Monsoon");
    cr_assert_str_eq(h_jstr(it, "genre"), "drama");
    cr_assert_str_eq(h_jstr(it, "language"), "hindi");
    cr_assert_str_eq(h_jstr(it, "theater_name"), "Andheri");
    cr_assert_str_eq(h_jstr(it, "city"), "Mumbai");
    cr_assert_eq(h_jint(it, "price_from"), 20000);
    cr_assert_eq(h_jint(it, "seats_total"), 29, "seats for sale: C10 is blocked");
    cr_assert_eq(h_jint(it, "seats_available"), 29);
    cr_assert_eq(h_jint(it, "seats_sold"), 0);

    assert_shows(P("/api/showtimes?movie_id=%" PRIu64, drama), (uint64_t[]){a, c, e}, 3, 3);
    assert_shows(P("/api/showtimes?theater_id=%" PRIu64, blr), (uint64_t[]){c, d}, 2, 2);
    assert_shows("/api/showtimes?city=mumbai", (uint64_t[]){a, b, e}, 3, 3);
    assert_shows("/api/showtimes?genre=SCI-FI", (uint64_t[]){b, d}, 2, 2);
    char date[16];
    utc_date(day, date);
    assert_shows(P("/api/showtimes?date=%s", date), (uint64_t[]){a, c, b}, 3, 3);
    utc_date(day + 86400, date);
    assert_shows(P("/api/showtimes?date=%s", date), (uint64_t[]){d, e}, 2, 2);
    utc_date(day + 5 * 86400, date);
    assert_shows(P("/api/showtimes?date=%s", date), NULL, 0, 0);
    /* price_from is the cheapest category: a 20000, b 10000, c 30000, d 15000, e 25000. */
    assert_shows("/api/showtimes?min_price=20000", (uint64_t[]){a, c, e}, 3, 3);
    assert_shows("/api/showtimes?max_price=15000", (uint64_t[]){b, d}, 2, 2);
    assert_shows("/api/showtimes?min_price=15000&max_price=25000", (uint64_t[]){a, d, e}, 3, 3);
    assert_shows("/api/showtimes?sort=price", (uint64_t[]){b, d, a, e, c}, 5, 5);
    assert_shows(P("/api/showtimes?city=Mumbai&movie_id=%" PRIu64 "&sort=price", drama),
                 (uint64_t[]){a, e}, 2, 2);
    /* Pages of two, by time. */
    assert_shows("/api/showtimes?limit=2", (uint64_t[]){a, c}, 2, 5);
    assert_shows("/api/showtimes?limit=2&page=2", (uint64_t[]){b, d}, 2, 5);
    assert_shows("/api/showtimes?limit=2&page=3", (uint64_t[]){e}, 1, 5);
    assert_shows("/api/showtimes?limit=2&page=4", NULL, 0, 5);

    /* Sell c out (two seats) and two seats of e: available and popularity. */
    user u = user_register("liam@example.com");
    book(&u, c, "A1,B1");
    book(&u, e, "A1,A2");
    book(&u, b, "A3");
    assert_shows("/api/showtimes?available=true", (uint64_t[]){a, b, d, e}, 4, 4);
    assert_shows("/api/showtimes?available=false", (uint64_t[]){a, c, b, d, e}, 5, 5);
    assert_shows("/api/showtimes?sort=popularity", (uint64_t[]){c, e, b, a, d}, 5, 5);
    r = h_api("GET", P("/api/showtimes?theater_id=%" PRIu64, blr), NULL, NULL);
    it = h_jat(r->json, "items", 0);
    cr_assert_eq((uint64_t)h_jint(it, "id"), c);
    cr_assert_eq(h_jint(it, "seats_available"), 0);
    cr_assert_eq(h_jint(it, "seats_sold"), 2);
    cr_assert_eq(h_jint(it, "seats_total"), 2);
    h_done();
}

/* Each shard browses a copy of the catalog (net/browse.c) and sends only
 * its first page * limit matches: every page in every order must still be
 * the model's, and a catalog change must show at once. */
typedef struct model_show {
    uint64_t id;
    int64_t start;
    int price;
} model_show;

static int model_sort_price;
static int model_cmp(const void *a, const void *b)
{
    const model_show *x = a, *y = b;
    if (model_sort_price && x->price != y->price)
        return x->price < y->price ? -1 : 1;
    if (x->start != y->start)
        return x->start < y->start ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

Test(api, browse_pages_match_a_model_and_follow_catalog_changes)
{
    user admin = api_start_admin(ARGS("--shards", "3"));
    uint64_t th = theater_new(&admin, "Koramangala", "Bengaluru");
    uint64_t sc = screen_new(&admin, th, "K1", layout_std());
    uint64_t mv = movie_new(&admin, "Tides", "drama", "tamil");
    enum { N = 31 };
    model_show m[N];
    uint64_t seed = 0x5eed;
    int64_t day = ((int64_t)time(NULL) / 86400 + 2) * 86400;
    for (int i = 0; i < N; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        /* Few distinct prices and start times: ties must fall back in order. */
        m[i].price = 10000 + (int)(seed >> 60) % 4 * 500;
        m[i].start = day + (int64_t)((seed >> 40) % 6) * 3600;
        m[i].id = showtime_at(&admin, mv, sc, m[i].start, m[i].price, m[i].price + 100);
    }
    uint64_t want[N];
    for (int sort = 0; sort < 2; sort++) {
        model_sort_price = sort;
        qsort(m, N, sizeof(m[0]), model_cmp);
        for (int i = 0; i < N; i++)
            want[i] = m[i].id;
        for (uint64_t limit = 1; limit <= 8; limit += 3) {
            for (uint64_t page = 1; (page - 1) * limit <= N; page++) {
                size_t from = (size_t)((page - 1) * limit);
                size_t n = from + limit <= N ? limit : N - from;
                assert_shows(P("/api/showtimes?sort=%s&limit=%" PRIu64 "&page=%" PRIu64,
                               sort ? "price" : "time", limit, page),
                             want + from, n, N);
            }
        }
    }
    /* Catalog changes are seen by the next browse. */
    assert_shows("/api/showtimes?city=Chennai&limit=1", NULL, 0, 0);
    h_reply *r =
        h_api("PATCH", P("/api/theaters/%" PRIu64, th), admin.token, "{s:s}", "city", "Chennai");
    cr_assert_eq(r->status, 200, "%s", r->body);
    assert_shows("/api/showtimes?city=Bengaluru&limit=1", NULL, 0, 0);
    json_int_t total;
    show_ids("/api/showtimes?city=chennai&limit=1", &total);
    cr_assert_eq(total, N);
    r = h_api("PATCH", P("/api/movies/%" PRIu64, mv), admin.token, "{s:s}", "genre", "thriller");
    cr_assert_eq(r->status, 200, "%s", r->body);
    show_ids("/api/showtimes?genre=drama&limit=1", &total);
    cr_assert_eq(total, 0);
    show_ids("/api/showtimes?genre=Thriller&limit=1", &total);
    cr_assert_eq(total, N);
    model_sort_price = 0;
    qsort(m, N, sizeof(m[0]), model_cmp);
    r = h_api("DELETE", P("/api/showtimes/%" PRIu64, m[0].id), admin.token, NULL);
    cr_assert_eq(r->status, 204, "%s", r->body);
    uint64_t early = showtime_at(&admin, mv, sc, day - 3600, 9000, 9100);
    assert_shows("/api/showtimes?limit=2", (uint64_t[]){early, m[1].id}, 2, N);
    h_done();
}

Test(api, browse_bad_query_values_are_400_with_field)
{
    api_start(NULL);
    static const struct {
        const char *query, *field;
    } bad[] = {
        {"movie_id=abc", "movie_id"},
        {"movie_id=0", "movie_id"},
        {"theater_id=-1", "theater_id"},
        {"min_price=cheap", "min_price"},
        {"max_price=1.5", "max_price"},
        {"min_price=99999999999", "min_price"},
        {"date=2026-13-01", "date"},
        {"date=tomorrow", "date"},
        {"date=2026-1-1", "date"},
        {"date=20261101", "date"},
        {"available=yes", "available"},
        {"available=", "available"},
        {"sort=cheapest", "sort"},
        {"sort=", "sort"},
        {"page=0", "page"},
        {"limit=1000", "limit"},
        {"include_past=maybe", "include_past"},
        {"city=%4", "city"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char path[256];
        snprintf(path, sizeof(path), "/api/showtimes?%s", bad[i].query);
        h_reply *r = h_api("GET", path, NULL, NULL);
        cr_assert_eq(r->status, 400, "GET %s: expected 400, got %d %s", path, r->status, r->body);
        h_assert_problem_json(r, 400, "invalid-field", bad[i].field);
    }
    h_reply *r =
        h_api("GET", "/api/showtimes?date=2030-01-31&sort=price&available=true", NULL, NULL);
    h_assert_status(r, 200, "valid values");
    h_done();
}

/* The catalog refuses dates that do not exist ("2030-02-30T10:00:00Z" is a
 * 400, above); the browse filter must too, not read it as March 2nd. */
Test(api, browse_date_that_does_not_exist_is_400)
{
    api_start(NULL);
    const char *dates[] = {"2030-02-30", "2030-04-31", "2029-02-29"};
    for (size_t i = 0; i < 3; i++) {
        h_reply *r = h_api("GET", P("/api/showtimes?date=%s", dates[i]), NULL, NULL);
        cr_assert_eq(r->status, 400, "date=%s: expected 400, got %d %s", dates[i], r->status,
                     r->body);
        h_assert_problem_json(r, 400, "invalid-field", "date");
    }
    h_done();
}

Test(api, seat_map_lists_every_seat_and_revalidates_with_etag)
{
    user admin = api_start_admin(NULL);
    world w = world_make(&admin);
    h_reply *r = h_api("GET", P("/api/seats/%" PRIu64, w.showtime), NULL, NULL);
    h_assert_status(r, 200, "seat map");
    json_t *map = r->json;
    cr_assert_eq((uint64_t)h_jint(map, "showtime_id"), w.showtime);
    cr_assert_eq((uint64_t)h_jint(map, "screen_id"), w.screen);
    cr_assert_str_eq(h_jstr(map, "currency"), "INR");
    h_jstr(map, "start_time");
    cr_assert_eq(h_jlen(map, "seats"), 30);
    static const char rows[] = "ABC";
    for (size_t i = 0; i < 30; i++) {
        json_t *s = h_jat(map, "seats", i);
        char label[8];
        snprintf(label, sizeof(label), "%c%zu", rows[i / 10], i % 10 + 1);
        cr_assert_str_eq(h_jstr(s, "label"), label, "seat %zu", i);
        char row[2] = {rows[i / 10], 0};
        cr_assert_str_eq(h_jstr(s, "row"), row);
        bool gold = i >= 20;
        cr_assert_str_eq(h_jstr(s, "category"), gold ? "gold" : "silver", "%s", label);
        cr_assert_eq(h_jint(s, "price"), gold ? GOLD : SILVER, "%s", label);
        cr_assert_str_eq(h_jstr(s, "state"), i == 29 ? "unavailable" : "free", "%s", label);
        cr_assert_eq(json_is_true(json_object_get(s, "accessible")), i == 20, "%s", label);
        cr_assert_eq(json_is_true(json_object_get(s, "companion")), i == 21, "%s", label);
    }
    /* Columns skip the aisle after seat 5. */
    cr_assert_eq(h_jint(h_jat(map, "seats", 5), "col") - h_jint(h_jat(map, "seats", 4), "col"), 2,
                 "A5 and A6 are separated by an aisle");
    cr_assert_eq(h_jint(h_jat(map, "seats", 4), "col") - h_jint(h_jat(map, "seats", 3), "col"), 1);
    json_t *cats = h_jget(map, "categories");
    cr_assert_eq(json_array_size(cats), 2);
    json_t *silver = json_array_get(cats, 0), *gold = json_array_get(cats, 1);
    cr_assert_str_eq(h_jstr(silver, "name"), "silver");
    cr_assert_eq(h_jint(silver, "price"), SILVER);
    cr_assert_eq(h_jint(silver, "free"), 20);
    cr_assert_eq(h_jint(gold, "free"), 9);
    cr_assert_eq(h_jint(gold, "unavailable"), 1);

    char etag[64], cc[64], hdr[128];
    cr_assert(h_reply_header(r, "ETag", etag, sizeof(etag)), "no ETag: %s", r->head);
    cr_assert(etag[0] == '"' && etag[strlen(etag) - 1] == '"', "ETag not quoted: %s", etag);
    cr_assert(h_reply_header(r, "Cache-Control", cc, sizeof(cc)) && strcmp(cc, "no-cache") == 0,
              "Cache-Control: %s", cc);
    snprintf(hdr, sizeof(hdr), "If-None-Match: %s\r\n", etag);
    h_reply *nm = h_api_text("GET", P("/api/seats/%" PRIu64, w.showtime), NULL, hdr, NULL);
    h_assert_status(nm, 304, "unchanged seat map");
    cr_assert_eq(nm->body_len, 0);
    char etag304[64];
    cr_assert(h_reply_header(nm, "ETag", etag304, sizeof(etag304)));
    cr_assert_str_eq(etag304, etag);
    h_reply *other = h_api_text("GET", P("/api/seats/%" PRIu64, w.showtime), NULL,
                                "If-None-Match: \"0000000000000000\"\r\n", NULL);
    h_assert_status(other, 200, "another ETag");

    /* A reserve changes the map and its ETag; the old tag gets the full map. */
    user u = user_register("mia@example.com");
    uint64_t hold = reserve_ok(&u, w.showtime, "B3,B4");
    h_reply *after = h_api_text("GET", P("/api/seats/%" PRIu64, w.showtime), NULL, hdr, NULL);
    h_assert_status(after, 200, "the seat map after a reserve, with the old ETag");
    char etag2[64];
    cr_assert(h_reply_header(after, "ETag", etag2, sizeof(etag2)));
    cr_assert_str_neq(etag2, etag, "the ETag did not change after a reserve");
    cr_assert_str_eq(seats_in_state(after->json, "held"), "B3,B4");
    cr_assert_eq(h_jint(json_array_get(h_jget(after->json, "categories"), 0), "held"), 2);
    confirm_ok(&u, hold);
    map = seatmap(w.showtime);
    cr_assert_str_eq(seats_in_state(map, "sold"), "B3,B4");
    cr_assert_str_eq(seats_in_state(map, "held"), "");
    h_done();
}

/* ---- Booking ------------------------------------------------------------------------------- */

Test(api, reserve_listed_seats)
{
    user admin = api_start_admin(NULL);
    world w = world_make(&admin);
    user u = user_register("noah@example.com");
    h_reply *r = reserve(&u, w.showtime, "A1,C5,A2");
    h_assert_status(r, 201, "reserve");
    uint64_t hold = (uint64_t)h_jint(r->json, "hold_id");
    cr_assert_gt(hold, 0);
    cr_assert_eq((uint64_t)h_jint(r->json, "showtime_id"), w.showtime);
    cr_assert_eq(h_jint(r->json, "amount"), 2 * SILVER + GOLD, "amount = sum of the prices");
    cr_assert_str_eq(h_jstr(r->json, "currency"), "INR");
    cr_assert_str_eq(sorted_csv(h_jget(r->json, "seats")), sorted("A1,A2,C5"));
    json_int_t left = h_jint(r->json, "expires_in_s");
    cr_assert(left > 290 && left <= 300, "expires_in_s %" PRId64, (int64_t)left);
    int64_t created = time_ms(h_jstr(r->json, "created_at"));
    int64_t expires = time_ms(h_jstr(r->json, "expires_at"));
    cr_assert_eq(expires - created, 300000, "a 300 s hold");
    cr_assert(llabs(created / 1000 - (int64_t)time(NULL)) < 30);

    h_reply *g = h_api("GET", P("/api/holds/%" PRIu64, hold), u.token, NULL);
    h_assert_status(g, 200, "GET hold");
    cr_assert_eq((uint64_t)h_jint(g->json, "hold_id"), hold);
    cr_assert_eq(h_jint(g->json, "amount"), 2 * SILVER + GOLD);
    cr_assert_str_eq(sorted_csv(h_jget(g->json, "seats")), sorted("A1,A2,C5"));
    /* Another customer cannot see it. */
    user other = user_register("olga@example.com");
    g = h_api("GET", P("/api/holds/%" PRIu64, hold), other.token, NULL);
    h_assert_problem_json(g, 404, "not-found", NULL);

    json_t *map = seatmap(w.showtime);
    cr_assert_str_eq(seats_in_state(map, "held"), sorted("A1,A2,C5"));
    cr_assert_eq(count_state(map, "free"), 26);
    /* Accessible and companion seats can be chosen by label. */
    r = reserve(&other, w.showtime, "C1,C2");
    h_assert_status(r, 201, "reserve the accessible pair by label");
    h_done();
}

Test(api, reserve_taken_seats_is_409_listing_exactly_the_taken_ones)
{
    user admin = api_start_admin(NULL);
    world w = world_make(&admin);
    user u1 = user_register("pat@example.com"), u2 = user_register("quinn@example.com");
    uint64_t hold = reserve_ok(&u1, w.showtime, "A2,A3");
    h_reply *r = reserve(&u2, w.showtime, "A1,A2,A4,A3,A5");
    h_assert_problem_json(r, 409, "seats-taken", "seats");
    cr_assert_str_eq(sorted_csv(h_jget(r->json, "seats")), "A2,A3", "%s", r->body);
    /* The refusal took nothing. */
    json_t *map = seatmap(w.showtime);
    cr_assert_str_eq(seats_in_state(map, "held"), "A2,A3");
    cr_assert_str_eq(seat_state(map, "A1"), "free");
    cr_assert_str_eq(seat_state(map, "A4"), "free");
    /* The same user cannot hold a seat twice either. */
    r = reserve(&u1, w.showtime, "A3,A4");
    h_assert_problem_json(r, 409, "seats-taken", "seats");
    cr_assert_str_eq(sorted_csv(h_jget(r->json, "seats")), "A3");
    /* Sold seats are taken too. */
    confirm_ok(&u1, hold);
    r = reserve(&u2, w.showtime, "B1,A2");
    h_assert_problem_json(r, 409, "seats-taken", "seats");
    cr_assert_str_eq(sorted_csv(h_jget(r->json, "seats")), "A2");
    /* A blocked seat is not for sale: its own problem, naming it. */
    r = reserve(&u2, w.showtime, "C9,C10");
    h_assert_problem_json(r, 409, "seats-unavailable", "seats");
    cr_assert_str_eq(sorted_csv(h_jget(r->json, "seats")), "C10");
    r = reserve(&u2, w.showtime, "A1,A4");
    h_assert_status(r, 201, "the free neighbours");
    h_done();
}

/* Seat numbers of an array of labels of one row ("A3"): all in `row`, sorted. */
static void seat_numbers(const json_t *a, char *row, int *nums, size_t *n)
{
    *n = json_array_size(a);
    for (size_t i = 0; i < *n; i++) {
        const char *l = json_string_value(json_array_get(a, i));
        cr_assert_not_null(l);
        if (i == 0)
            *row = l[0];
        cr_assert_eq(l[0], *row, "seats in more than one row: %s", sorted_csv(a));
        nums[i] = atoi(l + 1);
    }
    for (size_t i = 1; i < *n; i++) {
        for (size_t j = i; j > 0 && nums[j - 1] > nums[j]; j--) {
            int t = nums[j];
            nums[j] = nums[j - 1];
            nums[j - 1] = t;
        }
    }
}

Test(api, reserve_best_available_adjacent_in_one_row)
{
    user admin = api_start_admin(NULL);
    world w = world_make(&admin);
    user u = user_register("rita@example.com");
    for (int round = 0; round < 3; round++) {
        h_reply *r = h_api("POST", "/api/bookings/reserve", u.token, "{s:I, s:i, s:s}",
                           "showtime_id", (json_int_t)w.showtime, "count", 3, "category", "silver");
        h_assert_status(r, 201, "best available, 3 silver");
        cr_assert_eq(h_jint(r->json, "amount"), 3 * SILVER);
        char row;
        int nums[16];
        size_t n;
        seat_numbers(h_jget(r->json, "seats"), &row, nums, &n);
        cr_assert_eq(n, 3);
        cr_assert(row == 'A' || row == 'B', "silver is rows A and B, got %c", row);
        cr_assert(nums[1] == nums[0] + 1 && nums[2] == nums[1] + 1, "not adjacent: %s",
                  sorted_csv(h_jget(r->json, "seats")));
        cr_assert(nums[2] <= 5 || nums[0] >= 6, "across the aisle after seat 5: %s",
                  sorted_csv(h_jget(r->json, "seats")));
        json_t *map = seatmap(w.showtime);
        for (size_t i = 0; i < n; i++) {
            char label[8];
            snprintf(label, sizeof(label), "%c%d", row, nums[i]);
            cr_assert_str_eq(seat_state(map, label), "held");
        }
    }
    /* Gold is row C: C1 (wheelchair) and C2 (companion) only when asked
     * for, C10 never (blocked): seven seats, C3 to C9. */
    h_reply *r = h_api("POST", "/api/bookings/reserve", u.token, "{s:I, s:i, s:s}", "showtime_id",
                       (json_int_t)w.showtime, "count", 8, "category", "gold");
    h_assert_problem_json(r, 409, "not-available", "count");
    r = h_api("POST", "/api/bookings/reserve", u.token, "{s:I, s:i, s:s}", "showtime_id",
              (json_int_t)w.showtime, "count", 7, "category", "GOLD");
    h_assert_status(r, 201, "seven gold");
    cr_assert_str_eq(sorted_csv(h_jget(r->json, "seats")), sorted("C3,C4,C5,C6,C7,C8,C9"),
                     "seven gold seats without the accessible pair and the blocked C10");
    cr_assert_eq(h_jint(r->json, "amount"), 7 * GOLD);
    r = h_api("POST", "/api/bookings/reserve", u.token, "{s:I, s:i, s:s, s:b}", "showtime_id",
              (json_int_t)w.showtime, "count", 2, "category", "gold", "accessible", 1);
    h_assert_status(r, 201, "the accessible pair on request");
    cr_assert_str_eq(sorted_csv(h_jget(r->json, "seats")), "C1,C2");
    /* Six silver never fit between the aisles. */
    r = h_api("POST", "/api/bookings/reserve", u.token, "{s:I, s:i, s:s}", "showtime_id",
              (json_int_t)w.showtime, "count", 6, "category", "silver");
    h_assert_problem_json(r, 409, "not-available", "count");
    r = h_api("POST", "/api/bookings/reserve", u.token, "{s:I, s:i, s:s}", "showtime_id",
              (json_int_t)w.showtime, "count", 1, "category", "platinum");
    h_assert_problem_json(r, 400, "invalid-field", "category");
    h_done();
}

Test(api, reserve_bad_requests)
{
    user admin = api_start_admin(NULL);
    world w = world_make(&admin);
    user u = user_register("sam@example.com");
    h_reply *r = reserve(&u, w.showtime, "A1,Z99");
    h_assert_problem_json(r, 400, "invalid-field", "seats[1]");
    r = reserve(&u, w.showtime, "A11");
    h_assert_problem_json(r, 400, "invalid-field", "seats[0]");
    r = reserve(&u, 999999, "A1");
    h_assert_problem_json(r, 404, "not-found", NULL);
    r = h_api("POST", "/api/bookings/reserve", u.token, "{s:I, s:o, s:i, s:s}", "showtime_id",
              (json_int_t)w.showtime, "seats", labels("A1"), "count", 1, "category", "silver");
    cr_assert_eq(r->status, 400, "seats and count: %d %s", r->status, r->body);
    h_assert_problem_json(r, 400, "invalid-field", NULL);
    r = h_api("POST", "/api/bookings/reserve", u.token, "{s:I}", "showtime_id",
              (json_int_t)w.showtime);
    h_assert_problem_json(r, 400, "invalid-field", NULL);
    r = h_api("POST", "/api/bookings/reserve", u.token, "{s:o}", "seats", labels("A1"));
    h_assert_problem_json(r, 400, "invalid-field", "showtime_id");
    r = h_api("POST", "/api/bookings/reserve", u.token, "{s:I, s:[]}", "showtime_id",
              (json_int_t)w.showtime, "seats");
    h_assert_problem_json(r, 400, "invalid-field", "seats");
    r = reserve(&u, w.showtime, "A1,A2,A3,A4,A5,A6,A7,A8,A9,A10,B1");
    h_assert_problem_json(r, 400, "invalid-field", "seats");
    r = reserve(&u, w.showtime, "A1,A1");
    h_assert_problem_json(r, 400, "invalid-field", "seats");
    r = h_api("POST", "/api/bookings/reserve", u.token, "{s:I, s:[i]}", "showtime_id",
              (json_int_t)w.showtime, "seats", 1);
    h_assert_problem_json(r, 400, "invalid-field", "seats[0]");
    r = h_api("POST", "/api/bookings/reserve", u.token, "{s:I, s:i, s:s}", "showtime_id",
              (json_int_t)w.showtime, "count", 0, "category", "silver");
    h_assert_problem_json(r, 400, "invalid-field", "count");
    r = h_api("POST", "/api/bookings/reserve", u.token, "{s:I, s:i, s:s}", "showtime_id",
              (json_int_t)w.showtime, "count", 11, "category", "silver");
    h_assert_problem_json(r, 400, "invalid-field", "count");
    r = h_api("POST", "/api/bookings/reserve", u.token, "{s:I, s:i}", "showtime_id",
              (json_int_t)w.showtime, "count", 2);
    h_assert_problem_json(r, 400, "invalid-field", "category");
    r = h_api("POST", "/api/bookings/reserve", u.token, "{s:I, s:o, s:s}", "showtime_id",
              (json_int_t)w.showtime, "seats", labels("A1"), "category", "silver");
    h_assert_problem_json(r, 400, "invalid-field", "category");
    r = h_api("POST", "/api/bookings/reserve", u.token, "{s:s, s:o}", "showtime_id", "1", "seats",
              labels("A1"));
    h_assert_problem_json(r, 400, "invalid-field", "showtime_id");
    r = h_api("POST", "/api/bookings/reserve", u.token, "{s:I, s:o, s:b}", "showtime_id",
              (json_int_t)w.showtime, "seats", labels("A1"), "vip", 1);
    h_assert_problem_json(r, 400, "invalid-field", "vip");
    r = h_api("POST", "/api/bookings/reserve", NULL, "{s:I, s:o}", "showtime_id",
              (json_int_t)w.showtime, "seats", labels("A1"));
    h_assert_problem_json(r, 401, "unauthorized", NULL);
    /* Nothing is held after all that. */
    json_t *map = seatmap(w.showtime);
    cr_assert_eq(count_state(map, "held"), 0, "%s", seats_in_state(map, "held"));
    h_done();
}

Test(api, release_hold_frees_seats_and_second_release_is_410)
{
    user admin = api_start_admin(NULL);
    world w = world_make(&admin);
    user u = user_register("tara@example.com"), other = user_register("uma@example.com");
    uint64_t hold = reserve_ok(&u, w.showtime, "B1,B2");
    h_reply *r = h_api("DELETE", P("/api/holds/%" PRIu64, hold), other.token, NULL);
    h_assert_problem_json(r, 404, "not-found", NULL);
    cr_assert_str_eq(seats_in_state(seatmap(w.showtime), "held"), "B1,B2");
    r = h_api("DELETE", P("/api/holds/%" PRIu64, hold), u.token, NULL);
    h_assert_status(r, 204, "release");
    cr_assert_eq(r->body_len, 0);
    json_t *map = seatmap(w.showtime);
    cr_assert_str_eq(seat_state(map, "B1"), "free");
    cr_assert_str_eq(seat_state(map, "B2"), "free");
    r = h_api("GET", P("/api/holds/%" PRIu64, hold), u.token, NULL);
    h_assert_problem_json(r, 404, "not-found", NULL);
    r = h_api("DELETE", P("/api/holds/%" PRIu64, hold), u.token, NULL);
    h_assert_problem_json(r, 410, "hold-ended", NULL);
    r = confirm(&u, hold);
    h_assert_problem_json(r, 410, "hold-ended", "hold_id");
    /* The seats are free for anyone. */
    r = reserve(&other, w.showtime, "B2,B3");
    h_assert_status(r, 201, "reserve the released seats");
    h_done();
}

Test(api, confirm_creates_a_booking)
{
    user admin = api_start_admin(NULL);
    world w = world_make(&admin);
    user u = user_register("vera@example.com");
    uint64_t hold = reserve_ok(&u, w.showtime, "C4,C5");
    h_reply *r =
        h_api("POST", "/api/bookings/confirm", u.token, "{s:I}", "hold_id", (json_int_t)hold);
    h_assert_problem_json(r, 400, "invalid-field", "payment");
    r = h_api("POST", "/api/bookings/confirm", u.token, "{s:I, s:{s:s}}", "hold_id",
              (json_int_t)hold, "payment", "method", "cash");
    h_assert_problem_json(r, 400, "invalid-field", "payment.method");
    r = h_api("POST", "/api/bookings/confirm", u.token, "{s:I, s:{s:s, s:s}}", "hold_id",
              (json_int_t)hold, "payment", "method", "card", "number", "4111111111111111");
    h_assert_problem_json(r, 400, "invalid-field", "payment");
    r = h_api("POST", "/api/bookings/confirm", u.token, "{s:{s:s}}", "payment", "method", "upi");
    h_assert_problem_json(r, 400, "invalid-field", "hold_id");

    r = h_api("POST", "/api/bookings/confirm", u.token, "{s:I, s:{s:s}}", "hold_id",
              (json_int_t)hold, "payment", "method", "card");
    h_assert_status(r, 201, "confirm");
    json_t *b = r->json;
    uint64_t id = (uint64_t)h_jint(b, "booking_id");
    cr_assert_gt(id, 0);
    cr_assert_eq(shard_of(id), shard_of(hold), "a booking lives on its hold's shard");
    cr_assert_eq((uint64_t)h_jint(b, "hold_id"), hold);
    cr_assert_eq((uint64_t)h_jint(b, "showtime_id"), w.showtime);
    cr_assert_eq((uint64_t)h_jint(b, "user_id"), u.id);
    cr_assert_str_eq(h_jstr(b, "status"), "confirmed");
    cr_assert_str_eq(h_jstr(b, "payment_method"), "card");
    cr_assert_eq(h_jint(b, "amount"), 2 * GOLD);
    cr_assert_str_eq(sorted_csv(h_jget(b, "seats")), "C4,C5");
    cr_assert(llabs(time_ms(h_jstr(b, "confirmed_at")) / 1000 - (int64_t)time(NULL)) < 30);
    h_reply *st = h_api("GET", P("/api/showtimes/%" PRIu64, w.showtime), NULL, NULL);
    cr_assert_eq(time_ms(h_jstr(b, "start_time")), h_jint(st->json, "start_ms"));
    cr_assert_null(json_object_get(b, "refund"));

    h_reply *g = h_api("GET", P("/api/bookings/%" PRIu64, id), u.token, NULL);
    h_assert_status(g, 200, "GET booking");
    cr_assert(json_equal(g->json, b), "GET %s vs confirm %s", g->body, r->body);
    json_t *map = seatmap(w.showtime);
    cr_assert_str_eq(seats_in_state(map, "sold"), "C4,C5");
    cr_assert_str_eq(seats_in_state(map, "held"), "");
    r = h_api("GET", P("/api/holds/%" PRIu64, hold), u.token, NULL);
    h_assert_problem_json(r, 404, "not-found", NULL);
    r = confirm(&u, hold);
    h_assert_problem_json(r, 410, "hold-ended", "hold_id");
    /* An admin may read any booking. */
    g = h_api("GET", P("/api/bookings/%" PRIu64, id), admin.token, NULL);
    h_assert_status(g, 200, "admin reads the booking");
    h_done();
}

Test(api, confirm_someone_elses_hold_is_404)
{
    user admin = api_start_admin(NULL);
    world w = world_make(&admin);
    user u = user_register("walt@example.com"), thief = user_register("xena@example.com");
    uint64_t hold = reserve_ok(&u, w.showtime, "A7");
    h_reply *r = confirm(&thief, hold);
    h_assert_problem_json(r, 404, "not-found", NULL);
    r = h_api("GET", "/api/bookings/my-bookings", thief.token, NULL);
    cr_assert_eq(h_jint(r->json, "total"), 0, "%s", r->body);
    cr_assert_str_eq(seat_state(seatmap(w.showtime), "A7"), "held");
    confirm_ok(&u, hold);
    h_done();
}

Test(api, confirm_expired_hold_is_410, .timeout = 60)
{
    user admin = api_start_admin(ARGS("--hold-ttl", "10"));
    world w = world_make(&admin);
    user u = user_register("yuri@example.com");
    h_reply *r = reserve(&u, w.showtime, "B9,B10");
    h_assert_status(r, 201, "reserve");
    uint64_t hold = (uint64_t)h_jint(r->json, "hold_id");
    cr_assert_leq(h_jint(r->json, "expires_in_s"), 10);
    int64_t expires = time_ms(h_jstr(r->json, "expires_at"));
    /* Poll the seat map until the sweep frees the seats (10 s + a tick). */
    int64_t deadline = h_now_ms() + 20000;
    json_t *map = NULL;
    do {
        h_sleep_ms(250);
        map = seatmap(w.showtime);
    } while (strcmp(seat_state(map, "B9"), "held") == 0 && h_now_ms() < deadline);
    cr_assert_str_eq(seat_state(map, "B9"), "free", "the hold did not expire within 20 s");
    cr_assert_str_eq(seat_state(map, "B10"), "free");
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    cr_assert_geq((int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000, expires - 1000,
                  "seats freed before the hold's expiry");
    r = confirm(&u, hold);
    h_assert_problem_json(r, 410, "hold-expired", "hold_id");
    r = h_api("GET", "/api/bookings/my-bookings", u.token, NULL);
    cr_assert_eq(h_jint(r->json, "total"), 0, "%s", r->body);
    h_done();
}

Test(api, cancel_refunds_per_policy)
{
    user admin = api_start_admin(NULL);
    world w = world_make(&admin); /* w.showtime: in two days */
    uint64_t soon = showtime_new(&admin, w.movie, w.screen, 3 * 3600, SILVER, GOLD);
    uint64_t now_ish = showtime_new(&admin, w.movie, w.screen, 3600, SILVER, GOLD);
    user u = user_register("zoe@example.com");

    uint64_t b1 = book(&u, w.showtime, "A1,C3");
    h_reply *r = h_api("POST", P("/api/bookings/%" PRIu64 "/cancel", b1), u.token, NULL);
    h_assert_status(r, 200, "cancel 2 days ahead");
    cr_assert_str_eq(h_jstr(r->json, "status"), "cancelled");
    cr_assert_eq(h_jint(r->json, "refund"), SILVER + GOLD, "100 %% at >= 24 h");
    cr_assert_eq(h_jint(r->json, "amount"), SILVER + GOLD);
    cr_assert(llabs(time_ms(h_jstr(r->json, "cancelled_at")) / 1000 - (int64_t)time(NULL)) < 30);
    h_reply *g = h_api("GET", P("/api/bookings/%" PRIu64, b1), u.token, NULL);
    cr_assert(json_equal(g->json, r->json), "GET %s vs cancel %s", g->body, r->body);
    json_t *map = seatmap(w.showtime);
    cr_assert_str_eq(seat_state(map, "A1"), "free", "a cancelled seat is for sale again");
    cr_assert_str_eq(seat_state(map, "C3"), "free");
    r = h_api("POST", P("/api/bookings/%" PRIu64 "/cancel", b1), u.token, NULL);
    h_assert_problem_json(r, 409, "already-cancelled", NULL);

    uint64_t b2 = book(&u, soon, "A1,A2");
    r = h_api("POST", P("/api/bookings/%" PRIu64 "/cancel", b2), u.token, NULL);
    h_assert_status(r, 200, "cancel 3 h ahead");
    cr_assert_eq(h_jint(r->json, "refund"), SILVER, "50 %% at >= 2 h: %s", r->body);

    uint64_t b3 = book(&u, now_ish, "B1");
    r = h_api("POST", P("/api/bookings/%" PRIu64 "/cancel", b3), u.token, NULL);
    h_assert_status(r, 200, "cancel 1 h ahead");
    cr_assert_eq(h_jint(r->json, "refund"), 0, "nothing under 2 h: %s", r->body);
    cr_assert_str_eq(h_jstr(r->json, "status"), "cancelled");
    h_done();
}

Test(api, bookings_of_another_user_are_404)
{
    user admin = api_start_admin(NULL);
    world w = world_make(&admin);
    user u = user_register("amy@example.com"), other = user_register("ben@example.com");
    uint64_t b = book(&u, w.showtime, "A5");
    h_reply *r = h_api("GET", P("/api/bookings/%" PRIu64, b), other.token, NULL);
    h_assert_problem_json(r, 404, "not-found", NULL);
    r = h_api("POST", P("/api/bookings/%" PRIu64 "/cancel", b), other.token, NULL);
    h_assert_problem_json(r, 404, "not-found", NULL);
    r = h_api("GET", P("/api/bookings/%" PRIu64, b), NULL, NULL);
    h_assert_problem_json(r, 401, "unauthorized", NULL);
    r = h_api("GET", P("/api/bookings/%" PRIu64, b), u.token, NULL);
    h_assert_status(r, 200, "the owner");
    cr_assert_str_eq(h_jstr(r->json, "status"), "confirmed", "another user's cancel changed it");
    cr_assert_str_eq(seat_state(seatmap(w.showtime), "A5"), "sold");
    h_done();
}

typedef struct made {
    uint64_t id;
    int64_t confirmed_ms;
} made;

static int made_newest_first(const void *a, const void *b)
{
    const made *x = a, *y = b;
    if (x->confirmed_ms != y->confirmed_ms)
        return x->confirmed_ms > y->confirmed_ms ? -1 : 1;
    return x->id > y->id ? -1 : x->id < y->id;
}

/* Showtimes until both shards (of two) own one: [0] on shard 0, [1] on 1. */
static void showtimes_on_every_shard(const world *w, const user *probe, uint64_t *by_shard,
                                     unsigned shards)
{
    unsigned have = 0;
    for (unsigned i = 0; i < shards; i++)
        by_shard[i] = 0;
    by_shard[shard_of(reserve_ok(probe, w->showtime, "A10"))] = w->showtime;
    have = 1;
    for (int tries = 0; tries < 64 && have < shards; tries++) {
        uint64_t st =
            showtime_new(&w->admin, w->movie, w->screen, 86400 * 3 + tries * 3600, SILVER, GOLD);
        unsigned s = shard_of(reserve_ok(probe, st, "A10"));
        cr_assert_lt(s, shards, "hold id of shard %u with %u shards", s, shards);
        if (by_shard[s] == 0) {
            by_shard[s] = st;
            have++;
        }
    }
    cr_assert_eq(have, shards, "64 showtimes did not cover %u shards", shards);
}

Test(api, my_bookings_newest_first_across_shards_paginated)
{
    user admin = api_start_admin(NULL);
    world w = world_make(&admin);
    user u = user_register("cleo@example.com"), other = user_register("dan@example.com");
    uint64_t st[2];
    showtimes_on_every_shard(&w, &other, st, 2);
    made m[7];
    const char *seats[] = {"A1", "A2", "B1", "B2,B3", "C3", "C4", "C5,C6"};
    for (int i = 0; i < 7; i++) {
        h_reply *r = confirm(&u, reserve_ok(&u, st[i % 2], seats[i]));
        h_assert_status(r, 201, "confirm");
        m[i].id = (uint64_t)h_jint(r->json, "booking_id");
        m[i].confirmed_ms = time_ms(h_jstr(r->json, "confirmed_at"));
        cr_assert_eq(shard_of(m[i].id), (unsigned)(i % 2));
    }
    /* One is cancelled: still listed. Another user's booking is not. */
    h_reply *r = h_api("POST", P("/api/bookings/%" PRIu64 "/cancel", m[2].id), u.token, NULL);
    h_assert_status(r, 200, "cancel");
    book(&other, st[0], "B9");
    qsort(m, 7, sizeof(m[0]), made_newest_first);
    uint64_t want[7];
    for (int i = 0; i < 7; i++)
        want[i] = m[i].id;

    r = h_api("GET", "/api/bookings/my-bookings", u.token, NULL);
    h_assert_status(r, 200, "my-bookings");
    cr_assert_eq(h_jint(r->json, "total"), 7, "%s", r->body);
    cr_assert_eq(h_jlen(r->json, "items"), 7);
    char got[512] = "";
    size_t o = 0;
    for (size_t i = 0; i < 7; i++) {
        json_t *it = h_jat(r->json, "items", i);
        cr_assert_eq((uint64_t)h_jint(it, "user_id"), u.id);
        o += (size_t)snprintf(got + o, sizeof(got) - o, "%s%" PRId64, i ? "," : "",
                              (int64_t)h_jint(it, "booking_id"));
    }
    char expect[512];
    snprintf(expect, sizeof(expect), "%s", ids_csv(want, 7));
    cr_assert_str_eq(got, expect, "newest first across both shards");

    /* Pages of three. */
    for (int page = 1; page <= 3; page++) {
        r = h_api("GET", P("/api/bookings/my-bookings?limit=3&page=%d", page), u.token, NULL);
        h_assert_status(r, 200, "a page");
        cr_assert_eq(h_jint(r->json, "total"), 7);
        cr_assert_eq(h_jint(r->json, "page"), page);
        cr_assert_eq(h_jint(r->json, "limit"), 3);
        size_t n = page < 3 ? 3 : 1;
        cr_assert_eq(h_jlen(r->json, "items"), n, "page %d: %s", page, r->body);
        for (size_t i = 0; i < n; i++)
            cr_assert_eq((uint64_t)h_jint(h_jat(r->json, "items", i), "booking_id"),
                         want[(size_t)(page - 1) * 3 + i], "page %d item %zu", page, i);
    }
    r = h_api("GET", "/api/bookings/my-bookings?limit=3&page=4", u.token, NULL);
    cr_assert_eq(h_jlen(r->json, "items"), 0);
    cr_assert_eq(h_jint(r->json, "total"), 7);
    r = h_api("GET", "/api/bookings/my-bookings?limit=0", u.token, NULL);
    h_assert_problem_json(r, 400, "invalid-field", "limit");
    r = h_api("GET", "/api/bookings/my-bookings", NULL, NULL);
    h_assert_problem_json(r, 401, "unauthorized", NULL);
    h_done();
}

Test(api, idempotency_key_replays_reserve_and_confirm)
{
    user admin = api_start_admin(NULL);
    world w = world_make(&admin);
    user u = user_register("eli@example.com"), v = user_register("fay@example.com");
    const char *key = "Idempotency-Key: reserve-1\r\n";
    h_reply *r1 = h_apih("POST", "/api/bookings/reserve", u.token, key, "{s:I, s:o}", "showtime_id",
                         (json_int_t)w.showtime, "seats", labels("A3,A4"));
    h_assert_status(r1, 201, "first reserve with a key");
    char v1[32];
    cr_assert(!h_reply_header(r1, "Idempotent-Replayed", v1, sizeof(v1)),
              "the first answer is not a replay");
    h_reply *r2 = h_apih("POST", "/api/bookings/reserve", u.token, key, "{s:I, s:o}", "showtime_id",
                         (json_int_t)w.showtime, "seats", labels("A3,A4"));
    h_assert_status(r2, 201, "the same reserve again");
    cr_assert(json_equal(r1->json, r2->json), "replay %s differs from %s", r2->body, r1->body);
    cr_assert(h_reply_header(r2, "Idempotent-Replayed", v1, sizeof(v1)) && strcmp(v1, "true") == 0,
              "no Idempotent-Replayed: true: %s", r2->head);
    json_t *map = seatmap(w.showtime);
    cr_assert_str_eq(seats_in_state(map, "held"), "A3,A4", "one hold, not two");
    h_reply *other = h_apih("POST", "/api/bookings/reserve", u.token, key, "{s:I, s:o}",
                            "showtime_id", (json_int_t)w.showtime, "seats", labels("A5"));
    h_assert_problem_json(other, 422, "idempotency-key-reused", "idempotency-key");
    cr_assert_str_eq(seat_state(seatmap(w.showtime), "A5"), "free");
    /* Keys are per user. */
    h_reply *rv = h_apih("POST", "/api/bookings/reserve", v.token, key, "{s:I, s:o}", "showtime_id",
                         (json_int_t)w.showtime, "seats", labels("A5"));
    h_assert_status(rv, 201, "another user with the same key");

    uint64_t hold = (uint64_t)h_jint(r1->json, "hold_id");
    const char *ckey = "Idempotency-Key: confirm-1\r\n";
    h_reply *c1 = h_apih("POST", "/api/bookings/confirm", u.token, ckey, "{s:I, s:{s:s}}",
                         "hold_id", (json_int_t)hold, "payment", "method", "upi");
    h_assert_status(c1, 201, "confirm with a key");
    h_reply *c2 = h_apih("POST", "/api/bookings/confirm", u.token, ckey, "{s:I, s:{s:s}}",
                         "hold_id", (json_int_t)hold, "payment", "method", "upi");
    cr_assert(c2->status == 201 || c2->status == 200, "confirm replay: %d %s", c2->status,
              c2->body);
    cr_assert_eq(h_jint(c2->json, "booking_id"), h_jint(c1->json, "booking_id"));
    cr_assert(json_equal(c1->json, c2->json), "replay %s differs from %s", c2->body, c1->body);
    cr_assert(h_reply_header(c2, "Idempotent-Replayed", v1, sizeof(v1)) && strcmp(v1, "true") == 0,
              "no Idempotent-Replayed: true: %s", c2->head);
    h_reply *mb = h_api("GET", "/api/bookings/my-bookings", u.token, NULL);
    cr_assert_eq(h_jint(mb->json, "total"), 1, "one booking, not two: %s", mb->body);
    uint64_t hold2 = reserve_ok(&u, w.showtime, "B7");
    h_reply *c3 = h_apih("POST", "/api/bookings/confirm", u.token, ckey, "{s:I, s:{s:s}}",
                         "hold_id", (json_int_t)hold2, "payment", "method", "upi");
    h_assert_problem_json(c3, 422, "idempotency-key-reused", "idempotency-key");
    cr_assert_str_eq(seat_state(seatmap(w.showtime), "B7"), "held");

    char longkey[128];
    snprintf(longkey, sizeof(longkey), "Idempotency-Key: %065d\r\n", 7);
    h_reply *bad = h_apih("POST", "/api/bookings/reserve", u.token, longkey, "{s:I, s:o}",
                          "showtime_id", (json_int_t)w.showtime, "seats", labels("B8"));
    h_assert_problem_json(bad, 400, "invalid-field", "idempotency-key");
    h_done();
}

/* An Idempotency-Key belongs to the user, whichever shard owns the showtime
 * the request names: reusing it with another body is 422 there too, not a
 * second hold. */
Test(api, idempotency_key_reused_on_another_shard_is_422)
{
    user admin = api_start_admin(NULL);
    world w = world_make(&admin);
    user u = user_register("gil@example.com"), probe = user_register("hal@example.com");
    uint64_t st[2];
    showtimes_on_every_shard(&w, &probe, st, 2);
    const char *key = "Idempotency-Key: cross-shard-1\r\n";
    h_reply *r = h_apih("POST", "/api/bookings/reserve", u.token, key, "{s:I, s:o}", "showtime_id",
                        (json_int_t)st[0], "seats", labels("B1"));
    h_assert_status(r, 201, "reserve on shard 0 with a key");
    r = h_apih("POST", "/api/bookings/reserve", u.token, key, "{s:I, s:o}", "showtime_id",
               (json_int_t)st[1], "seats", labels("B1"));
    cr_assert_eq(r->status, 422,
                 "the key was used for another request (a showtime on shard 0), yet the reserve "
                 "on shard 1 answered %d: %s",
                 r->status, r->body);
    h_assert_problem_json(r, 422, "idempotency-key-reused", "idempotency-key");
    h_done();
}

/* Two registrations of one email at the same moment: exactly one account. */
typedef struct shot {
    int fd;
    char *req;
    size_t req_len, sent;
    char *buf;
    size_t len, cap;
    bool done;
    int status;
    json_t *json;
} shot;

static void shot_init(shot *s, const char *method, const char *path, const char *token,
                      const char *headers, const char *body)
{
    memset(s, 0, sizeof(*s));
    s->fd = -1;
    size_t cap = strlen(path) + (token ? strlen(token) : 0) + (headers ? strlen(headers) : 0) +
                 (body ? strlen(body) : 0) + 256;
    s->req = malloc(cap);
    cr_assert_not_null(s->req);
    int n = snprintf(s->req, cap,
                     "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%s%s%s%sContent-Type: "
                     "application/json\r\nContent-Length: %zu\r\n\r\n%s",
                     method, path, token ? "Authorization: Bearer " : "", token ? token : "",
                     token ? "\r\n" : "", headers ? headers : "", body ? strlen(body) : 0,
                     body ? body : "");
    s->req_len = (size_t)n;
    s->cap = 4096;
    s->buf = malloc(s->cap + 1);
    cr_assert_not_null(s->buf);
}

static void shot_free(shot *s)
{
    if (s->fd >= 0)
        close(s->fd);
    free(s->req);
    free(s->buf);
    json_decref(s->json);
}

/* A complete answer in s->buf? Parses it. */
static bool shot_parse(shot *s)
{
    s->buf[s->len] = '\0';
    char *e = strstr(s->buf, "\r\n\r\n");
    if (e == NULL)
        return false;
    size_t head = (size_t)(e - s->buf) + 4;
    char cl[32];
    char save = s->buf[head];
    s->buf[head] = '\0';
    bool has = h_header_get(s->buf, "Content-Length", cl, sizeof(cl));
    s->buf[head] = save;
    int status = atoi(s->buf + 9);
    /* 204 and 304 carry no body and no Content-Length (RFC 9110). */
    cr_assert(has || status == 204 || status == 304, "an answer without Content-Length: %s",
              s->buf);
    size_t n = has ? (size_t)atoll(cl) : 0;
    if (s->len < head + n)
        return false;
    s->status = atoi(s->buf + 9);
    s->json = json_loadb(s->buf + head, n, 0, NULL);
    return true;
}

/* Connects every shot, then sends every request back to back, then reads
 * every answer (one thread, poll). Asserts all answered within timeout_ms. */
static void fire(shot *s, size_t n, int timeout_ms)
{
    for (size_t i = 0; i < n; i++) {
        s[i].fd = h_tcp_connect(h_srv.port, 0);
        cr_assert_geq(s[i].fd, 0, "connect %zu: %s", i, strerror(errno));
        fcntl(s[i].fd, F_SETFL, fcntl(s[i].fd, F_GETFL) | O_NONBLOCK);
    }
    struct pollfd *p = calloc(n, sizeof(*p));
    cr_assert_not_null(p);
    size_t left = n;
    int64_t deadline = h_now_ms() + timeout_ms;
    while (left > 0) {
        for (size_t i = 0; i < n; i++) {
            p[i].fd = s[i].done ? -1 : s[i].fd;
            p[i].events = s[i].sent < s[i].req_len ? POLLOUT : POLLIN;
            p[i].revents = 0;
        }
        int64_t wait = deadline - h_now_ms();
        cr_assert_gt(wait, 0, "%zu of %zu answers missing after %d ms", left, n, timeout_ms);
        int pr = poll(p, (nfds_t)n, (int)wait);
        if (pr < 0 && errno == EINTR)
            continue;
        cr_assert_geq(pr, 0, "poll: %s", strerror(errno));
        for (size_t i = 0; i < n; i++) {
            if (p[i].revents == 0 || s[i].done)
                continue;
            if (s[i].sent < s[i].req_len) {
                ssize_t w =
                    send(s[i].fd, s[i].req + s[i].sent, s[i].req_len - s[i].sent, MSG_NOSIGNAL);
                cr_assert(w > 0 || errno == EAGAIN, "send %zu: %s", i, strerror(errno));
                if (w > 0)
                    s[i].sent += (size_t)w;
                continue;
            }
            if (s[i].len == s[i].cap) {
                s[i].cap *= 2;
                s[i].buf = realloc(s[i].buf, s[i].cap + 1);
                cr_assert_not_null(s[i].buf);
            }
            ssize_t got = recv(s[i].fd, s[i].buf + s[i].len, s[i].cap - s[i].len, 0);
            if (got < 0 && errno == EAGAIN)
                continue;
            cr_assert_gt(got, 0, "connection %zu closed before its answer (%s); stderr: %s", i,
                         got < 0 ? strerror(errno) : "EOF", h_tail(h_slurp(h_srv.errlog), 1500));
            s[i].len += (size_t)got;
            if (shot_parse(&s[i])) {
                s[i].done = true;
                left--;
            }
        }
    }
    free(p);
}

Test(api, concurrent_registrations_of_one_email_make_one_account)
{
    api_start(NULL);
    enum { N = 16 };
    shot s[N];
    for (int i = 0; i < N; i++) {
        char body[256];
        snprintf(body, sizeof(body),
                 "{\"email\":\"race@example.com\",\"password\":\"password-%02d\",\"name\":\"R\"}",
                 i);
        shot_init(&s[i], "POST", "/api/auth/register", NULL, NULL, body);
    }
    fire(s, N, 30000);
    int created = 0, winner = -1;
    for (int i = 0; i < N; i++) {
        if (s[i].status == 201) {
            created++;
            winner = i;
        } else {
            cr_assert_eq(s[i].status, 409, "registration %d: %d", i, s[i].status);
            cr_assert_str_eq(json_string_value(json_object_get(s[i].json, "type")),
                             "https://usher.dev/problems/email-taken");
        }
    }
    cr_assert_eq(created, 1, "%d accounts for one email", created);
    char pw[32];
    snprintf(pw, sizeof(pw), "password-%02d", winner);
    user_login("race@example.com", pw);
    for (int i = 0; i < N; i++)
        shot_free(&s[i]);
    h_done();
}

/* ---- Concurrency ----------------------------------------------------------------------------- */

enum { CLIENTS = 1000, C_ROWS = 5, C_SEATS = 40 };

/* A five-row, forty-seat silver house (no aisles) with one showtime. */
static uint64_t arena_showtime(const user *admin)
{
    uint64_t t = theater_new(admin, "Arena", "Mumbai");
    json_t *rows = json_array();
    for (int r = 0; r < C_ROWS; r++) {
        char label[2] = {"ABCDE"[r], 0};
        json_array_append_new(rows, json_pack("{s:s, s:s, s:i}", "label", label, "category",
                                              "silver", "seats", C_SEATS));
    }
    uint64_t screen = screen_new(
        admin, t, "Big", json_pack("{s:[s,s], s:o}", "categories", "silver", "gold", "rows", rows));
    uint64_t movie = movie_new(admin, "Rush", "action", "english");
    return showtime_new(admin, movie, screen, 86400, 100, 200);
}

Test(api, thousand_concurrent_reserves_one_winner_per_seat, .timeout = 120)
{
    user admin = api_start_admin(ARGS("--max-connections", "2000"));
    uint64_t st = arena_showtime(&admin);

    /* Client i wants seats (p, p+1) of row i % 5, p = (i / 5) % 39 + 1:
     * about five clients per pair, and each seat is in two pairs. Each
     * client is its own user (tokens made with the server's secret). */
    static shot s[CLIENTS];
    char want[CLIENTS][2][8];
    for (int i = 0; i < CLIENTS; i++) {
        char row = "ABCDE"[i % C_ROWS];
        int p = (i / C_ROWS) % (C_SEATS - 1) + 1;
        snprintf(want[i][0], 8, "%c%d", row, p);
        snprintf(want[i][1], 8, "%c%d", row, p + 1);
        char tok[1200], body[128];
        token_for(tok, sizeof(tok), 1000000 + (uint64_t)i, "customer");
        snprintf(body, sizeof(body), "{\"showtime_id\":%" PRIu64 ",\"seats\":[\"%.7s\",\"%.7s\"]}",
                 st, want[i][0], want[i][1]);
        shot_init(&s[i], "POST", "/api/bookings/reserve", tok, NULL, body);
    }
    int64_t t0 = h_now_ms();
    fire(s, CLIENTS, 60000);
    int64_t took = h_now_ms() - t0;

    /* Winners: disjoint pairs. Losers: 409 naming only seats a winner has. */
    static char owner[C_ROWS][C_SEATS + 2]; /* 1: won by owner_of */
    static int owner_of[C_ROWS][C_SEATS + 2];
    memset(owner, 0, sizeof(owner));
    int winners = 0;
    int64_t hold_shard = -1;
    for (int i = 0; i < CLIENTS; i++) {
        cr_assert(s[i].status == 201 || s[i].status == 409,
                  "client %d: expected 201 or 409, got %d", i, s[i].status);
        if (s[i].status != 201)
            continue;
        winners++;
        json_t *seats = json_object_get(s[i].json, "seats");
        char pair[32];
        snprintf(pair, sizeof(pair), "%.7s,%.7s", want[i][0], want[i][1]);
        cr_assert_str_eq(sorted_csv(seats), sorted(pair), "client %d asked for %s", i, pair);
        unsigned sh = shard_of((uint64_t)json_integer_value(json_object_get(s[i].json, "hold_id")));
        if (hold_shard < 0)
            hold_shard = sh;
        cr_assert_eq(sh, (unsigned)hold_shard, "holds of one showtime on two shards");
        for (int k = 0; k < 2; k++) {
            int r = want[i][k][0] - 'A', n = atoi(want[i][k] + 1);
            cr_assert_eq(owner[r][n], 0, "seat %s won by client %d and client %d", want[i][k],
                         owner_of[r][n], i);
            owner[r][n] = 1;
            owner_of[r][n] = i;
        }
        cr_assert_eq(h_jint(s[i].json, "amount"), 200);
    }
    for (int i = 0; i < CLIENTS; i++) {
        if (s[i].status != 409)
            continue;
        const char *type = json_string_value(json_object_get(s[i].json, "type"));
        cr_assert(type != NULL && strcmp(type, "https://usher.dev/problems/seats-taken") == 0,
                  "client %d: 409 of type %s", i, type ? type : "(none)");
        json_t *taken = json_object_get(s[i].json, "seats");
        cr_assert(json_array_size(taken) >= 1 && json_array_size(taken) <= 2,
                  "client %d: 409 lists %zu seats", i, json_array_size(taken));
        for (size_t k = 0; k < json_array_size(taken); k++) {
            const char *l = json_string_value(json_array_get(taken, k));
            cr_assert(l != NULL && (strcmp(l, want[i][0]) == 0 || strcmp(l, want[i][1]) == 0),
                      "client %d asked for %s,%s; 409 names %s", i, want[i][0], want[i][1], l);
            cr_assert_eq(owner[l[0] - 'A'][atoi(l + 1)], 1,
                         "client %d was refused %s, which no winner holds", i, l);
        }
    }
    cr_assert_gt(winners, 0);
    /* The seat map agrees: held = exactly the winners' seats. */
    json_t *map = seatmap(st);
    cr_assert_eq(count_state(map, "held"), (size_t)(2 * winners), "held %zu, won %d seats",
                 count_state(map, "held"), 2 * winners);
    json_t *all = h_jget(map, "seats");
    for (size_t i = 0; i < json_array_size(all); i++) {
        json_t *seat = json_array_get(all, i);
        const char *l = h_jstr(seat, "label");
        bool won = owner[l[0] - 'A'][atoi(l + 1)] == 1;
        cr_assert_str_eq(h_jstr(seat, "state"), won ? "held" : "free", "seat %s", l);
    }
    cr_assert_eq(h_jint(json_array_get(h_jget(map, "categories"), 0), "held"), 2 * winners);
    cr_log_info("1000 concurrent reserves: %d winners in %" PRId64 " ms", winners, took);
    for (int i = 0; i < CLIENTS; i++)
        shot_free(&s[i]);
    h_done();
}

/* ---- Restart ------------------------------------------------------------------------------------
 */

Test(api, sigkill_restart_keeps_bookings_catalog_and_users, .timeout = 120)
{
    user admin = api_start_admin(NULL);
    world w = world_make(&admin);
    user u = user_register("ike@example.com"), probe = user_register("jo@example.com");
    uint64_t st[2];
    showtimes_on_every_shard(&w, &probe, st, 2);
    uint64_t b[4];
    b[0] = book(&u, st[0], "B1,B2");
    b[1] = book(&u, st[1], "B1");
    b[2] = book(&u, st[0], "C3");
    b[3] = book(&u, st[1], "C4,C5");
    h_reply *r = h_api("POST", P("/api/bookings/%" PRIu64 "/cancel", b[2]), u.token, NULL);
    h_assert_status(r, 200, "cancel");
    uint64_t hold = reserve_ok(&u, st[1], "A3");
    h_reply *before[4];
    for (int i = 0; i < 4; i++) {
        before[i] = h_api("GET", P("/api/bookings/%" PRIu64, b[i]), u.token, NULL);
        h_assert_status(before[i], 200, "booking before the kill");
    }
    h_reply *mine = h_api("GET", "/api/bookings/my-bookings", u.token, NULL);
    h_reply *cat[4] = {
        h_api("GET", P("/api/theaters/%" PRIu64, w.theater), NULL, NULL),
        h_api("GET", P("/api/screens/%" PRIu64, w.screen), NULL, NULL),
        h_api("GET", P("/api/movies/%" PRIu64, w.movie), NULL, NULL),
        h_api("GET", P("/api/showtimes/%" PRIu64, st[1]), NULL, NULL),
    };
    h_reply *shows = h_api("GET", "/api/showtimes", NULL, NULL);
    json_t *maps[2] = {seatmap(st[0]), seatmap(st[1])};

    h_kill();
    api_start(NULL); /* same data directory */
    const char *log = h_slurp(h_srv.errlog);
    cr_assert_not_null(strstr(log, "msg=\"shard recovered\" shard=0"), "%s", h_tail(log, 2000));
    cr_assert_not_null(strstr(log, "msg=\"shard recovered\" shard=1"), "%s", h_tail(log, 2000));

    /* Users: the old tokens still verify, logins still work. */
    user u2 = user_login("ike@example.com", PASSWORD);
    cr_assert_eq(u2.id, u.id);
    user admin2 = user_login(ADMIN_EMAIL, ADMIN_PASSWORD);
    cr_assert_eq(admin2.id, admin.id);
    r = h_api("GET", "/api/me", u.token, NULL);
    h_assert_status(r, 200, "an old token after the restart");

    for (int i = 0; i < 4; i++) {
        r = h_api("GET", P("/api/bookings/%" PRIu64, b[i]), u2.token, NULL);
        h_assert_status(r, 200, "booking after the restart");
        cr_assert(json_equal(r->json, before[i]->json), "booking %" PRIu64 ": %s, was %s", b[i],
                  r->body, before[i]->body);
    }
    r = h_api("GET", "/api/bookings/my-bookings", u2.token, NULL);
    cr_assert(json_equal(r->json, mine->json), "my-bookings: %s, was %s", r->body, mine->body);
    cr_assert_eq(h_jint(r->json, "total"), 4);
    const char *paths[4] = {"theaters", "screens", "movies", "showtimes"};
    uint64_t ids[4] = {w.theater, w.screen, w.movie, st[1]};
    for (int i = 0; i < 4; i++) {
        r = h_api("GET", P("/api/%s/%" PRIu64, paths[i], ids[i]), NULL, NULL);
        h_assert_status(r, 200, paths[i]);
        cr_assert(json_equal(r->json, cat[i]->json), "%s: %s, was %s", paths[i], r->body,
                  cat[i]->body);
    }
    r = h_api("GET", "/api/showtimes", NULL, NULL);
    cr_assert(json_equal(r->json, shows->json), "browse: %s, was %s", r->body, shows->body);
    for (int i = 0; i < 2; i++) {
        json_t *map = seatmap(st[i]);
        cr_assert(json_equal(h_jget(map, "seats"), h_jget(maps[i], "seats")),
                  "seat map of showtime %d changed across the restart", i);
    }
    cr_assert_str_eq(seat_state(seatmap(st[0]), "B1"), "sold");
    cr_assert_str_eq(seat_state(seatmap(st[0]), "C3"), "free", "the cancellation survived");
    /* The live hold survived too, and can still be confirmed. */
    r = h_api("GET", P("/api/holds/%" PRIu64, hold), u2.token, NULL);
    h_assert_status(r, 200, "the hold after the restart");
    uint64_t b5 = confirm_ok(&u2, hold);
    /* New ids do not reuse old ones. */
    for (int i = 0; i < 4; i++)
        cr_assert_neq(b5, b[i], "booking id %" PRIu64 " reused after the restart", b5);
    user fresh = user_register("kai@example.com");
    cr_assert_gt(fresh.id, probe.id);
    uint64_t t2 = theater_new(&admin2, "After", "Pune");
    cr_assert(t2 != w.theater && t2 != w.screen && t2 != w.movie && t2 != st[0] && t2 != st[1] &&
                  t2 != u.id && t2 != fresh.id,
              "entity id %" PRIu64 " reused after the restart", t2);
    h_done();
}

/* ---- Cross-shard --------------------------------------------------------------------------------
 */

/* The sum over shards of a per-shard counter in /metrics, and the shards
 * where it is zero (bit mask). */
static unsigned long long metric_sum(const char *text, const char *name, unsigned *zero_mask,
                                     unsigned shards)
{
    unsigned long long sum = 0;
    *zero_mask = 0;
    for (unsigned i = 0; i < shards; i++) {
        char key[128];
        snprintf(key, sizeof(key), "\n%s{shard=\"%u\"} ", name, i);
        const char *at = strstr(text, key);
        cr_assert_not_null(at, "no %s for shard %u", name, i);
        unsigned long long v = strtoull(at + strlen(key), NULL, 10);
        if (v == 0)
            *zero_mask |= 1u << i;
        sum += v;
    }
    return sum;
}

Test(api, four_shards_every_connection_reaches_every_showtime, .timeout = 120)
{
    user admin = api_start_admin(ARGS("--shards", "4"));
    world w = world_make(&admin);
    user probe = user_register("lou@example.com");
    uint64_t st[4];
    showtimes_on_every_shard(&w, &probe, st, 4);
    user u = user_register("max@example.com");
    enum { CONNS = 40 };
    h_client *cs = calloc(CONNS, sizeof(h_client));
    cr_assert_not_null(cs);
    for (int k = 0; k < CONNS; k++)
        cs[k] = h_cli_open();
    static const char *seat[CONNS] = {
        "A1", "A2", "A3", "A4", "A5", "A6",  "A7", "A8", "A9", "B1", "B2", "B3", "B4",
        "B5", "B6", "B7", "B8", "B9", "B10", "C3", "C4", "C5", "C6", "C7", "C8", "C9",
    };
    int booked = 0;
    for (int k = 0; k < CONNS; k++) {
        for (unsigned s = 0; s < 4; s++) {
            h_client *c = &cs[k];
            char body[128];
            if (k < 26) {
                snprintf(body, sizeof(body), "{\"showtime_id\":%" PRIu64 ",\"seats\":[\"%s\"]}",
                         st[s], seat[k]);
                h_reply *r = h_send(c, "POST", "/api/bookings/reserve", u.token, NULL, body);
                h_assert_status(r, 201, "reserve");
                uint64_t hold = (uint64_t)h_jint(r->json, "hold_id");
                cr_assert_eq(shard_of(hold), s, "hold of showtime on shard %u made on %u", s,
                             shard_of(hold));
                r = h_send(c, "GET", P("/api/holds/%" PRIu64, hold), u.token, NULL, NULL);
                h_assert_status(r, 200, "GET hold");
                snprintf(body, sizeof(body),
                         "{\"hold_id\":%" PRIu64 ",\"payment\":{\"method\":\"wallet\"}}", hold);
                r = h_send(c, "POST", "/api/bookings/confirm", u.token, NULL, body);
                h_assert_status(r, 201, "confirm");
                uint64_t b = (uint64_t)h_jint(r->json, "booking_id");
                cr_assert_eq(shard_of(b), s);
                r = h_send(c, "GET", P("/api/bookings/%" PRIu64, b), u.token, NULL, NULL);
                h_assert_status(r, 200, "GET booking");
                cr_assert_str_eq(h_jstr(r->json, "payment_method"), "wallet");
                booked++;
            } else {
                /* The rest read: seat maps and catalog entries of every shard. */
                h_reply *r = h_send(c, "GET", P("/api/seats/%" PRIu64, st[s]), NULL, NULL, NULL);
                h_assert_status(r, 200, "seat map");
                r = h_send(c, "GET", P("/api/showtimes/%" PRIu64, st[s]), NULL, NULL, NULL);
                h_assert_status(r, 200, "showtime");
            }
        }
        h_reply *r =
            h_send(&cs[k], "GET", "/api/bookings/my-bookings?limit=1", u.token, NULL, NULL);
        h_assert_status(r, 200, "my-bookings");
        cr_assert_eq(h_jint(r->json, "total"), booked);
    }
    for (unsigned s = 0; s < 4; s++) {
        json_t *map = seatmap(st[s]);
        cr_assert_eq(count_state(map, "sold"), 26, "showtime on shard %u", s);
    }
    h_reply *r = h_api("GET", "/api/showtimes", NULL, NULL);
    for (size_t i = 0; i < h_jlen(r->json, "items"); i++) {
        json_t *it = h_jat(r->json, "items", i);
        for (unsigned s = 0; s < 4; s++)
            if ((uint64_t)h_jint(it, "id") == st[s])
                cr_assert_eq(h_jint(it, "seats_sold"), 26);
    }
    /* Every shard took some of the connections and sent work to the others. */
    r = h_api("GET", "/metrics", NULL, NULL);
    unsigned zero;
    metric_sum(r->body, "usher_connections_accepted_total", &zero, 4);
    cr_assert_eq(zero, 0, "shards that accepted no connection: mask 0x%x", zero);
    unsigned long long fwd = metric_sum(r->body, "usher_cross_shard_jobs_total", &zero, 4);
    cr_assert_eq(zero, 0, "shards that forwarded nothing: mask 0x%x", zero);
    cr_assert_gt(fwd, 0);
    metric_sum(r->body, "usher_cross_shard_refused_total", &zero, 4);
    cr_assert_eq(zero, 0xf, "a cross-shard job was refused");
    for (int k = 0; k < CONNS; k++)
        h_cli_close(&cs[k]);
    free(cs);
    h_done();
}

/* ---- More concurrency, sales closing, restarts, HEAD, bodies ------------------------------ */

Test(api, concurrent_best_available_never_double_books_and_leaves_no_pair, .timeout = 120)
{
    user admin = api_start_admin(ARGS("--max-connections", "2000"));
    uint64_t st = arena_showtime(&admin);
    enum { N = 300 }; /* 600 seats asked for, 200 exist */
    static shot s[N];
    static char tok[N][1200];
    for (int i = 0; i < N; i++) {
        token_for(tok[i], sizeof(tok[i]), 2000000 + (uint64_t)i, "customer");
        char body[128];
        snprintf(body, sizeof(body),
                 "{\"showtime_id\":%" PRIu64 ",\"count\":2,\"category\":\"silver\"}", st);
        shot_init(&s[i], "POST", "/api/bookings/reserve", tok[i], NULL, body);
    }
    fire(s, N, 60000);
    static bool taken[C_ROWS][C_SEATS + 2];
    memset(taken, 0, sizeof(taken));
    int winners = 0, losers = 0;
    for (int i = 0; i < N; i++) {
        if (s[i].status == 409) {
            const char *type = json_string_value(json_object_get(s[i].json, "type"));
            cr_assert(type != NULL && strcmp(type, "https://usher.dev/problems/not-available") == 0,
                      "client %d: 409 %s", i, type ? type : "(none)");
            losers++;
            continue;
        }
        cr_assert_eq(s[i].status, 201, "client %d: %d", i, s[i].status);
        winners++;
        char row;
        int nums[16];
        size_t n;
        seat_numbers(json_object_get(s[i].json, "seats"), &row, nums, &n);
        cr_assert_eq(n, 2, "client %d got %zu seats", i, n);
        cr_assert_eq(nums[1], nums[0] + 1, "client %d: %c%d and %c%d are not adjacent", i, row,
                     nums[0], row, nums[1]);
        for (size_t k = 0; k < 2; k++) {
            cr_assert(!taken[row - 'A'][nums[k]], "seat %c%d given to two clients", row, nums[k]);
            taken[row - 'A'][nums[k]] = true;
        }
    }
    cr_assert_eq(winners + losers, N);
    cr_assert_gt(losers, 0, "600 seats asked of 200");
    json_t *map = seatmap(st);
    cr_assert_eq(count_state(map, "held"), (size_t)(2 * winners));
    /* A refusal means no two adjacent seats were free; nothing was freed
     * since, so none are now. */
    for (int r = 0; r < C_ROWS; r++) {
        for (int n = 1; n < C_SEATS; n++) {
            char a[8], b[8];
            snprintf(a, sizeof(a), "%c%d", 'A' + r, n);
            snprintf(b, sizeof(b), "%c%d", 'A' + r, n + 1);
            cr_assert(!(strcmp(seat_state(map, a), "free") == 0 &&
                        strcmp(seat_state(map, b), "free") == 0),
                      "%s and %s are both free, yet %d clients were told no pair was left", a, b,
                      losers);
            cr_assert_eq(strcmp(seat_state(map, a), "held") == 0, taken[r][n], "seat %s", a);
        }
    }
    /* Every winner pays at once: every confirm succeeds. */
    static shot c[N];
    int k = 0;
    for (int i = 0; i < N; i++) {
        if (s[i].status != 201)
            continue;
        char body[128];
        snprintf(body, sizeof(body), "{\"hold_id\":%" PRId64 ",\"payment\":{\"method\":\"card\"}}",
                 (int64_t)json_integer_value(json_object_get(s[i].json, "hold_id")));
        shot_init(&c[k++], "POST", "/api/bookings/confirm", tok[i], NULL, body);
    }
    fire(c, (size_t)k, 60000);
    for (int i = 0; i < k; i++)
        cr_assert_eq(c[i].status, 201, "confirm %d: %d", i, c[i].status);
    map = seatmap(st);
    cr_assert_eq(count_state(map, "sold"), (size_t)(2 * winners));
    cr_assert_eq(count_state(map, "held"), 0);
    for (int i = 0; i < N; i++)
        shot_free(&s[i]);
    for (int i = 0; i < k; i++)
        shot_free(&c[i]);
    h_done();
}

/* A client retrying one reserve on many connections at once, with one
 * Idempotency-Key: one hold, and every answer is that hold (or "in flight"). */
Test(api, concurrent_retries_with_one_idempotency_key_make_one_hold)
{
    user admin = api_start_admin(NULL);
    world w = world_make(&admin);
    user u = user_register("nia@example.com");
    enum { N = 50 };
    static shot s[N];
    char body[128];
    snprintf(body, sizeof(body), "{\"showtime_id\":%" PRIu64 ",\"seats\":[\"B5\",\"B6\"]}",
             w.showtime);
    for (int i = 0; i < N; i++)
        shot_init(&s[i], "POST", "/api/bookings/reserve", u.token,
                  "Idempotency-Key: retry-storm-1\r\n", body);
    fire(s, N, 30000);
    json_int_t hold = 0;
    int ok = 0;
    for (int i = 0; i < N; i++) {
        if (s[i].status == 409) {
            const char *type = json_string_value(json_object_get(s[i].json, "type"));
            cr_assert(type != NULL &&
                          strcmp(type, "https://usher.dev/problems/idempotency-in-flight") == 0,
                      "retry %d: 409 %s", i, type ? type : "(none)");
            continue;
        }
        cr_assert_eq(s[i].status, 201, "retry %d: %d", i, s[i].status);
        json_int_t h = json_integer_value(json_object_get(s[i].json, "hold_id"));
        if (hold == 0)
            hold = h;
        cr_assert_eq(h, hold, "retry %d got another hold", i);
        ok++;
    }
    cr_assert_gt(ok, 0);
    json_t *map = seatmap(w.showtime);
    cr_assert_str_eq(seats_in_state(map, "held"), "B5,B6");
    h_reply *r = h_api("GET", P("/api/holds/%" PRId64, (int64_t)hold), u.token, NULL);
    h_assert_status(r, 200, "the one hold");
    for (int i = 0; i < N; i++)
        shot_free(&s[i]);
    h_done();
}

/* Sales and cancellations close when the showtime starts (docs: "sales and
 * cancellations close at the start"); browse stops listing it. */
Test(api, sales_close_when_the_showtime_starts, .timeout = 60)
{
    user admin = api_start_admin(NULL);
    world w = world_make(&admin);
    user u = user_register("otto@example.com");
    uint64_t st = showtime_new(&admin, w.movie, w.screen, 4, SILVER, GOLD);
    uint64_t booking = book(&u, st, "A1");
    uint64_t hold = reserve_ok(&u, st, "A2");
    h_reply *r = h_api("GET", P("/api/showtimes?movie_id=%" PRIu64, w.movie), NULL, NULL);
    cr_assert_eq(h_jint(r->json, "total"), 2, "before the start: %s", r->body);
    /* Poll browse until the start passes (at most 10 s). */
    int64_t deadline = h_now_ms() + 10000;
    json_int_t total;
    do {
        h_sleep_ms(200);
        r = h_api("GET", P("/api/showtimes?movie_id=%" PRIu64, w.movie), NULL, NULL);
        total = h_jint(r->json, "total");
    } while (total == 2 && h_now_ms() < deadline);
    cr_assert_eq(total, 1, "the started showtime is still listed: %s", r->body);
    r = h_api("GET", P("/api/showtimes?movie_id=%" PRIu64 "&include_past=true", w.movie), NULL,
              NULL);
    cr_assert_eq(h_jint(r->json, "total"), 2, "include_past lists it: %s", r->body);
    r = reserve(&u, st, "A3");
    h_assert_problem_json(r, 409, "sales-closed", NULL);
    r = h_api("POST", "/api/bookings/reserve", u.token, "{s:I, s:i, s:s}", "showtime_id",
              (json_int_t)st, "count", 1, "category", "silver");
    h_assert_problem_json(r, 409, "sales-closed", NULL);
    r = h_api("POST", P("/api/bookings/%" PRIu64 "/cancel", booking), u.token, NULL);
    h_assert_problem_json(r, 409, "sales-closed", NULL);
    r = h_api("GET", P("/api/bookings/%" PRIu64, booking), u.token, NULL);
    cr_assert_str_eq(h_jstr(r->json, "status"), "confirmed");
    /* A hold placed before the start is not a sale: paying for it after the
     * start would sell a seat once sales closed. */
    r = confirm(&u, hold);
    cr_assert_eq(r->status, 409,
                 "a hold was confirmed into a booking after the showtime started: %d %s", r->status,
                 r->body);
    h_assert_problem_json(r, 409, "sales-closed", NULL);
    h_done();
}

/* Showtime ownership depends on the shard count the data directory was
 * made with: another count is refused at start, and the right one works. */
Test(api, restart_with_another_shard_count_is_refused, .timeout = 90)
{
    user admin = api_start_admin(NULL);
    world w = world_make(&admin);
    user u = user_register("pia@example.com");
    uint64_t b = book(&u, w.showtime, "A4");
    h_stop_within(5000);
    char out[1024];
    const char *args[] = {"--listen", "127.0.0.1:0", "--shards", "3", NULL};
    int st = h_run(args, server_env, out, sizeof(out));
    char runlog[200];
    snprintf(runlog, sizeof(runlog), "%s/run.log", h_srv.root);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) != 0,
              "usherd started on a 2-shard data directory with --shards 3 (status 0x%x): %s", st,
              out);
    cr_assert_null(strstr(out, "listening on"), "%s", out);
    const char *log = h_slurp(runlog);
    cr_assert_not_null(strstr(log, "shard"), "the refusal does not explain itself: %s",
                       h_tail(log, 1000));
    api_start(NULL);
    h_reply *r = h_api("GET", P("/api/bookings/%" PRIu64, b), u.token, NULL);
    h_assert_status(r, 200, "the booking after the refused start");
    h_done();
}

Test(api, head_on_api_routes_has_headers_and_no_body)
{
    user admin = api_start_admin(NULL);
    world w = world_make(&admin);
    const char *paths[] = {"/api/theaters", "/api/showtimes", "/api/movies/ID", "/api/seats/ST"};
    for (size_t i = 0; i < 4; i++) {
        char path[64];
        if (strstr(paths[i], "ID") != NULL)
            snprintf(path, sizeof(path), "/api/movies/%" PRIu64, w.movie);
        else if (strstr(paths[i], "ST") != NULL)
            snprintf(path, sizeof(path), "/api/seats/%" PRIu64, w.showtime);
        else
            snprintf(path, sizeof(path), "%s", paths[i]);
        h_reply *g = h_api("GET", path, NULL, NULL);
        h_assert_status(g, 200, path);
        h_reply *h = h_api("HEAD", path, NULL, NULL);
        h_assert_status(h, 200, path);
        char cl[32] = "";
        cr_assert(h_reply_header(h, "Content-Length", cl, sizeof(cl)), "HEAD %s: %s", path,
                  h->head);
        cr_assert_eq((size_t)atoll(cl), g->body_len, "HEAD %s: Content-Length %s, GET has %zu",
                     path, cl, g->body_len);
        /* The next answer on the connection starts right after the head. */
        h_reply *again = h_api("GET", "/livez", NULL, NULL);
        h_assert_status(again, 200, "the request after a HEAD");
    }
    h_done();
}

Test(api, request_bodies_must_be_one_json_object)
{
    user admin = api_start_admin(NULL);
    world w = world_make(&admin);
    user u = user_register("quin@example.com");
    char body[256];
    snprintf(body, sizeof(body),
             "{\"showtime_id\":%" PRIu64 ",\"showtime_id\":1,\"seats\":[\"A1\"]}", w.showtime);
    h_reply *r = h_api_text("POST", "/api/bookings/reserve", u.token, NULL, body);
    h_assert_problem_json(r, 400, "invalid-json", NULL);
    snprintf(body, sizeof(body), "{\"showtime_id\":%" PRIu64 ",\"seats\":[\"A1\"]} {}", w.showtime);
    r = h_api_text("POST", "/api/bookings/reserve", u.token, NULL, body);
    h_assert_problem_json(r, 400, "invalid-json", NULL);
    r = h_api_text("POST", "/api/bookings/reserve", u.token, NULL, "");
    h_assert_problem_json(r, 400, "invalid-json", NULL);
    r = h_api_text("POST", "/api/bookings/reserve", u.token, NULL, "null");
    h_assert_problem_json(r, 400, "invalid-json", NULL);
    snprintf(body, sizeof(body), "{\"showtime_id\":%" PRIu64 ",\"seats\":[\"A1\"]}", w.showtime);
    r = h_api_text("POST", "/api/bookings/reserve", u.token, "Content-Type: text/plain\r\n", body);
    h_assert_problem_json(r, 415, "unsupported-media-type", "content-type");
    cr_assert_eq(count_state(seatmap(w.showtime), "held"), 0);
    r = h_api_text("POST", "/api/bookings/reserve", u.token,
                   "Content-Type: application/json; charset=utf-8\r\n", body);
    h_assert_status(r, 201, "application/json with a charset");
    /* A token of a user that does not exist reads no profile. */
    char tok[1200];
    token_for(tok, sizeof(tok), 987654321, "customer");
    r = h_api("GET", "/api/me", tok, NULL);
    h_assert_problem_json(r, 404, "not-found", NULL);
    h_done();
}

/* A client that pipelines slow requests (logins hash on the threadpool) and
 * then resets its connection: the answers are written to a dead socket.
 * That must be an error the server handles, not a SIGPIPE that kills it. */
Test(api, peer_reset_during_slow_answers_does_not_kill_the_server)
{
    api_start(NULL);
    user_register("reset@usher.test");
    for (int round = 0; round < 5; round++) {
        h_client c = h_cli_open();
        char req[512];
        int n = snprintf(req, sizeof(req),
                         "POST /api/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: "
                         "application/json\r\nContent-Length: 53\r\n\r\n"
                         "{\"email\":\"reset@usher.test\",\"password\":\"password123\"}");
        cr_assert(n > 0 && (size_t)n < sizeof(req));
        for (int i = 0; i < 4; i++)
            h_cli_send(&c, req, (size_t)n);
        struct linger lg = {.l_onoff = 1, .l_linger = 0};
        cr_assert_eq(setsockopt(c.fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
        h_cli_close(&c); /* RST */
    }
    h_sleep_ms(500);
    h_assert_alive();
    h_reply *r = h_api("GET", "/livez", NULL, NULL);
    h_assert_status(r, 200, "livez after resets");
    h_done();
}

/* A screen delete racing a showtime create on that screen (they run on
 * different shards): never both succeed, so no showtime is left on a
 * deleted screen. Same for a theater delete racing a screen create. */
Test(api, deletes_racing_creates_never_orphan, .timeout = 120)
{
    user admin = api_start_admin(NULL);
    uint64_t movie = movie_new(&admin, "Race", "drama", "english");
    int both = 0, rounds = 40;
    for (int i = 0; i < rounds; i++) {
        char tname[32];
        snprintf(tname, sizeof(tname), "T%d", i);
        uint64_t theater = theater_new(&admin, tname, "Pune");
        uint64_t screen = screen_new(&admin, theater, "S", layout_std());
        char when[32], body[256], body2[2048], path[64], path2[64];
        snprintf(path, sizeof(path), "/api/screens/%" PRIu64, screen);
        /* Several creates (showtimes land on every shard), the delete last. */
        enum { CREATES = 6 };
        shot s[CREATES + 1];
        for (int k = 0; k < CREATES; k++) {
            utc((int64_t)time(NULL) + 86400 + (i * CREATES + k) * 60, when);
            snprintf(body, sizeof(body),
                     "{\"movie_id\":%" PRIu64 ",\"screen_id\":%" PRIu64
                     ",\"start_time\":\"%s\",\"prices\":{\"silver\":100,\"gold\":200}}",
                     movie, screen, when);
            shot_init(&s[k], "POST", "/api/showtimes", admin.token, NULL, body);
        }
        shot_init(&s[CREATES], "DELETE", path, admin.token, NULL, NULL);
        fire(s, CREATES + 1, 10000);
        bool created = false;
        for (int k = 0; k < CREATES; k++) {
            cr_assert(s[k].status == 201 || s[k].status == 409 || s[k].status == 422,
                      "showtime create: %d", s[k].status);
            created = created || s[k].status == 201;
            shot_free(&s[k]);
        }
        cr_assert(s[CREATES].status == 204 || s[CREATES].status == 409, "screen delete: %d",
                  s[CREATES].status);
        both += created && s[CREATES].status == 204;
        shot_free(&s[CREATES]);
        /* An empty theater races a screen create on it. */
        uint64_t empty = theater_new(&admin, "Empty", "Pune");
        json_t *lay = layout_std();
        char *lay_text = json_dumps(lay, JSON_COMPACT);
        snprintf(body2, sizeof(body2), "{\"theater_id\":%" PRIu64 ",\"name\":\"S2\",\"layout\":%s}",
                 empty, lay_text);
        free(lay_text);
        json_decref(lay);
        snprintf(path2, sizeof(path2), "/api/theaters/%" PRIu64, empty);
        shot t[2];
        shot_init(&t[0], "POST", "/api/screens", admin.token, NULL, body2);
        shot_init(&t[1], "DELETE", path2, admin.token, NULL, NULL);
        fire(t, 2, 10000);
        cr_assert(t[0].status == 201 || t[0].status == 409 || t[0].status == 422,
                  "screen create: %d", t[0].status);
        cr_assert(t[1].status == 204 || t[1].status == 409, "theater delete: %d", t[1].status);
        both += t[0].status == 201 && t[1].status == 204;
        shot_free(&t[0]);
        shot_free(&t[1]);
    }
    cr_assert_eq(both, 0, "%d races left an orphan", both);
    h_done();
}
