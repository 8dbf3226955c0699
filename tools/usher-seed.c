/*
 * usher-seed - fills a usher server with a realistic catalog and booking
 * history through its public API, so it works against any usherd.
 *
 * Phases, each run with every connection kept busy (bench/client.h):
 *   theaters (in --cities cities), screens (2 per theater, 216..720 seats),
 *   movies, showtimes (over the next --days days), users (register: each
 *   answer carries the user's token), bookings (reserve best available
 *   1..4 seats, then confirm; --cancel-ratio of them cancelled).
 * What is generated is a function of --seed (names, sizes, which showtime
 * and user each booking tries); which seats a booking gets depends on the
 * order the server sees requests in.
 *
 * A full showtime (409 not-available) moves the booking to another
 * showtime; 503 is retried after Retry-After. Any other failure is counted,
 * and the run stops when failures pass 1% of a phase.
 */
#include "client.h"
#include "layout.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

static const char *usage_text =
    "usage: usher-seed --target http://HOST:PORT [options]\n"
    "\n"
    "Creates a catalog and a booking history through the API of a running usherd.\n"
    "Needs an administrator (usherd --create-admin). Registering users hashes their\n"
    "passwords on the server: start it with --password-cost min for seeding, or the\n"
    "users phase takes minutes per 10,000 users.\n"
    "\n"
    "  --target URL            the server (required)\n"
    "  --admin-email E         administrator (or USHER_BENCH_ADMIN_EMAIL)\n"
    "  --admin-password P      its password (or USHER_BENCH_ADMIN_PASSWORD)\n"
    "  --seed N                what to generate (default 1)\n"
    "  --cities N              (10)\n"
    "  --theaters N            spread over the cities, 2 screens each (100)\n"
    "  --movies N              (500)\n"
    "  --showtimes N           (10000)\n"
    "  --days N                showtimes start over the next N days (30)\n"
    "  --users N               (50000)\n"
    "  --bookings N            confirmed bookings to make (1000000)\n"
    "  --cancel-ratio F        share of bookings then cancelled (0.05)\n"
    "  --connections N         concurrent connections (256)\n"
    "  --quiet                 no progress line\n"
    "  -h, --help              this text\n"
    "\n"
    "Exit status: 0 when every phase completed, 1 when one failed (the reason is\n"
    "printed), 2 for bad usage.\n";

/* ---- Configuration -------------------------------------------------------------- */

static struct {
    const char *target, *admin_email, *admin_password;
    uint64_t seed;
    uint32_t cities, theaters, movies, showtimes, days, users, connections;
    uint64_t bookings;
    double cancel_ratio;
    bool quiet;
} opt = {.seed = 1,
         .cities = 10,
         .theaters = 100,
         .movies = 500,
         .showtimes = 10000,
         .days = 30,
         .users = 50000,
         .bookings = 1000000,
         .cancel_ratio = 0.05,
         .connections = 256};

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("usher-seed: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

static uint64_t parse_num(const char *flag, const char *v, uint64_t min, uint64_t max)
{
    char *end;
    errno = 0;
    unsigned long long x = strtoull(v, &end, 10);
    if (errno != 0 || end == v || *end != '\0' || v[0] == '-' || x < min || x > max) {
        fprintf(stderr, "usher-seed: %s must be an integer from %" PRIu64 " to %" PRIu64 "\n", flag,
                min, max);
        exit(2);
    }
    return x;
}

/* ---- Deterministic randomness (splitmix64) ------------------------------------------ */

static uint64_t mix(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

/* The k-th random number of item i in a phase: independent of order. */
static uint64_t rnd(uint32_t phase, uint64_t i, uint32_t k)
{
    return mix(opt.seed ^ mix(((uint64_t)phase << 56) ^ (i << 8) ^ k));
}

static uint32_t rnd_below(uint32_t phase, uint64_t i, uint32_t k, uint32_t n)
{
    return (uint32_t)(rnd(phase, i, k) % n);
}

/* ---- What to create ------------------------------------------------------------------- */

enum { PH_THEATERS = 1, PH_SCREENS, PH_MOVIES, PH_SHOWTIMES, PH_USERS, PH_BOOKINGS, PH_COUNT_ };
static const char *phase_names[] = {"",          "theaters", "screens", "movies",
                                    "showtimes", "users",    "bookings"};

static const char *cities[] = {"Mumbai",  "Delhi",  "Bengaluru", "Chennai",   "Kolkata",
                               "Pune",    "Jaipur", "Kochi",     "Hyderabad", "Ahmedabad",
                               "Lucknow", "Indore", "Goa",       "Mysuru",    "Nagpur"};
static const char *genres[] = {"action",  "drama",     "comedy",    "thriller", "romance",
                               "horror",  "sci-fi",    "animation", "family",   "documentary",
                               "musical", "adventure", "crime",     "fantasy"};
static const char *languages[] = {"hindi",   "english", "tamil",   "telugu",
                                  "kannada", "bengali", "marathi", "malayalam"};
static const char *words[] = {"Midnight", "River",  "Storm",  "Empire",  "Garden",  "Echo",
                              "Crimson",  "Silent", "Golden", "Last",    "Journey", "Monsoon",
                              "Shadow",   "Paper",  "Iron",   "Wild",    "City",    "Heart",
                              "Orbit",    "Kings",  "Tide",   "Lantern", "Dream",   "Fire"};

typedef struct seed_state seed_state;

/* One phase: `total` items; make() builds request i; done() takes its answer
 * (returns false for a failure to count). */
typedef struct phase {
    int id;
    uint64_t total, next, done, failed, skipped, retries;
    uint64_t started_ms, finished_ms;
} phase;

struct seed_state {
    uv_loop_t loop;
    hc_target target;
    hc_pool *pool;
    char admin_auth[1400]; /* "Authorization: Bearer ...\r\n" */
    phase ph;
    uint64_t *theater_ids, *screen_ids, *movie_ids, *showtime_ids;
    uint32_t *screen_seats;
    char **user_auth; /* per user: "Authorization: ...\r\n" */
    uint64_t bookings_confirmed, bookings_cancelled, showtime_full;

    uv_timer_t progress;
    bool failed;
    char fail_reason[512];
};

static seed_state S;

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- Work items -------------------------------------------------------------------------- */

/* One request in flight: which item, its attempt, and the step of a
 * multi-request item (a booking is reserve, confirm, maybe cancel). */
typedef struct item {
    uint64_t i;
    uint32_t attempt;
    int step; /* bookings: 0 reserve, 1 confirm, 2 cancel */
    uint64_t showtime_pick;
    uint64_t hold_id, booking_id;
    uint32_t user;
} item;

static void conn_next(hc_conn *c);
static void item_send(hc_conn *c, item *it);

/* Ends the phase's loop run: the pool closes, the progress timer stops. */
static void phase_stop(void)
{
    uv_timer_stop(&S.progress);
    hc_pool_stop(S.pool, NULL, NULL);
}

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void fail(const char *fmt, ...)
{
    if (S.failed)
        return;
    S.failed = true;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(S.fail_reason, sizeof(S.fail_reason), fmt, ap);
    va_end(ap);
    phase_stop();
}

static uint64_t json_id(const hc_response *r, const char *member)
{
    json_t *o = json_loadb(r->body, r->body_len, 0, NULL);
    uint64_t id = (uint64_t)json_integer_value(json_object_get(o, member));
    json_decref(o);
    return id;
}

/* Screen i's layout (bench/layout.h): 216..720 seats in rows 18..30 wide. */
static char *layout_json(uint64_t i, uint32_t *seats)
{
    uint32_t rows = 12 + rnd_below(PH_SCREENS, i, 1, 13);  /* 12..24 */
    uint32_t width = 18 + rnd_below(PH_SCREENS, i, 2, 13); /* 18..30 */
    bench_layout l;
    if (layout_build(&l, rows * width, width, false, 60000) != 0)
        die("out of memory");
    *seats = l.nseats;
    char *text = strdup(l.json);
    layout_free(&l);
    if (text == NULL)
        die("out of memory");
    return text;
}

/* Builds item i's request of the current phase into *rq; returns the body to free. */
static char *item_request(item *it, hc_request *rq, char *path, size_t path_cap, const char **auth)
{
    uint64_t i = it->i;
    json_t *o = NULL;
    char *text = NULL;
    *auth = S.admin_auth;
    rq->method = "POST";
    switch (S.ph.id) {
    case PH_THEATERS: {
        char name[96];
        snprintf(name, sizeof(name), "%s %s Cinema %" PRIu64, words[rnd_below(1, i, 1, 24)],
                 words[rnd_below(1, i, 2, 24)], i + 1);
        o = json_pack("{s:s, s:s, s:s}", "name", name, "city", cities[i % opt.cities], "address",
                      "Main Road");
        snprintf(path, path_cap, "/api/theaters");
        break;
    }
    case PH_SCREENS: {
        uint32_t seats;
        char *lay = layout_json(i, &seats);
        S.screen_seats[i] = seats;
        json_t *l = json_loads(lay, 0, NULL);
        free(lay);
        char name[32];
        snprintf(name, sizeof(name), "Screen %" PRIu64, i % 2 + 1);
        o = json_pack("{s:I, s:s, s:o}", "theater_id", (json_int_t)S.theater_ids[i / 2], "name",
                      name, "layout", l);
        snprintf(path, path_cap, "/api/screens");
        break;
    }
    case PH_MOVIES: {
        char title[96];
        snprintf(title, sizeof(title), "%s %s %" PRIu64, words[rnd_below(3, i, 1, 24)],
                 words[rnd_below(3, i, 2, 24)], i + 1);
        o = json_pack("{s:s, s:s, s:i, s:s, s:s, s:s, s:s}", "title", title, "description",
                      "Generated by usher-seed.", "duration_min", 90 + (int)rnd_below(3, i, 3, 90),
                      "genre", genres[rnd_below(3, i, 4, sizeof(genres) / sizeof(genres[0]))],
                      "language",
                      languages[rnd_below(3, i, 5, sizeof(languages) / sizeof(languages[0]))],
                      "rating", rnd_below(3, i, 6, 3) == 0 ? "A" : "UA", "poster_url", "");
        snprintf(path, path_cap, "/api/movies");
        break;
    }
    case PH_SHOWTIMES: {
        /* Popular movies get more showtimes (a squared uniform skews low ids). */
        uint64_t u = rnd(4, i, 1) % 1000000;
        uint32_t movie = (uint32_t)((u * u / 1000000) * opt.movies / 1000000);
        uint32_t screen = rnd_below(4, i, 2, opt.theaters * 2);
        int64_t start = (int64_t)time(NULL) + 3600 + (int64_t)rnd_below(4, i, 3, opt.days) * 86400 +
                        (int64_t)(rnd_below(4, i, 4, 28)) * 1800;
        start -= start % 300;
        char when[32];
        time_t t = (time_t)start;
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
        int base = 10000 + 2500 * (int)rnd_below(4, i, 5, 8);
        o = json_pack("{s:I, s:I, s:s, s:{s:i, s:i, s:i}}", "movie_id",
                      (json_int_t)S.movie_ids[movie], "screen_id", (json_int_t)S.screen_ids[screen],
                      "start_time", when, "prices", "silver", base, "gold", base + 10000,
                      "platinum", base + 25000);
        snprintf(path, path_cap, "/api/showtimes");
        break;
    }
    case PH_USERS: {
        char email[64], name[64], pw[48];
        snprintf(email, sizeof(email), "user%" PRIu64 "@seed.usher", i + 1);
        snprintf(name, sizeof(name), "Seed User %" PRIu64, i + 1);
        snprintf(pw, sizeof(pw), "seed-pw-%016" PRIx64, rnd(5, i, 1));
        o = json_pack("{s:s, s:s, s:s}", "email", email, "password", pw, "name", name);
        snprintf(path, path_cap, "/api/auth/register");
        *auth = NULL;
        break;
    }
    case PH_BOOKINGS: {
        *auth = S.user_auth[it->user];
        if (it->step == 0) {
            uint64_t st = S.showtime_ids[it->showtime_pick % opt.showtimes];
            static const char *cats[] = {"silver", "gold", "gold", "platinum"};
            o = json_pack("{s:I, s:i, s:s}", "showtime_id", (json_int_t)st, "count",
                          1 + (int)rnd_below(6, i, 2, 4), "category", cats[rnd_below(6, i, 3, 4)]);
            snprintf(path, path_cap, "/api/bookings/reserve");
        } else if (it->step == 1) {
            static const char *pays[] = {"upi", "card", "wallet"};
            o = json_pack("{s:I, s:{s:s}}", "hold_id", (json_int_t)it->hold_id, "payment", "method",
                          pays[rnd_below(6, i, 4, 3)]);
            snprintf(path, path_cap, "/api/bookings/confirm");
        } else {
            snprintf(path, path_cap, "/api/bookings/%" PRIu64 "/cancel", it->booking_id);
        }
        break;
    }
    default:
        break;
    }
    if (o != NULL) {
        text = json_dumps(o, JSON_COMPACT);
        json_decref(o);
    }
    return text;
}

static void on_answer(hc_conn *c, void *arg, int err, const hc_response *r);

static void item_send(hc_conn *c, item *it)
{
    char path[128];
    const char *auth;
    hc_request rq = {0};
    char *body = item_request(it, &rq, path, sizeof(path), &auth);
    rq.path = path;
    rq.headers = auth;
    rq.body = body;
    rq.body_len = body != NULL ? strlen(body) : 0;
    int rc = hc_send(c, &rq, on_answer, it);
    free(body);
    if (rc != 0) {
        free(it);
        if (rc != HC_ESTOPPED)
            fail("cannot send: %s", hc_strerror(rc));
    }
}

/* A retry of the same step after `delay_ms` (503 backpressure). */
typedef struct retry {
    uv_timer_t t;
    hc_conn *c;
    item *it;
} retry;

static void retry_fire(uv_timer_t *t)
{
    retry *rt = t->data;
    if (S.failed)
        free(rt->it);
    else
        item_send(rt->c, rt->it);
    uv_close((uv_handle_t *)t, (uv_close_cb)free);
}

static void item_retry(hc_conn *c, item *it, int delay_ms)
{
    S.ph.retries++;
    retry *rt = calloc(1, sizeof(*rt));
    if (rt == NULL)
        die("out of memory");
    rt->c = c;
    rt->it = it;
    uv_timer_init(&S.loop, &rt->t);
    rt->t.data = rt;
    uv_timer_start(&rt->t, retry_fire, (uint64_t)delay_ms, 0);
}

static void item_failed(const item *it, const hc_response *r, int err)
{
    S.ph.failed++;
    if (S.ph.failed <= 3) {
        if (r != NULL)
            fprintf(stderr, "usher-seed: %s item %" PRIu64 ": HTTP %d %.300s\n",
                    phase_names[S.ph.id], it->i, r->status, r->body);
        else
            fprintf(stderr, "usher-seed: %s item %" PRIu64 ": %s\n", phase_names[S.ph.id], it->i,
                    hc_strerror(err));
    }
    if (S.ph.failed * 100 > S.ph.total + 100)
        fail("%s: more than 1%% of the requests failed (%" PRIu64 ")", phase_names[S.ph.id],
             S.ph.failed);
}

static void on_answer(hc_conn *c, void *arg, int err, const hc_response *r)
{
    item *it = arg;
    if (err == HC_ESTOPPED || S.failed) {
        free(it);
        return;
    }
    if (err == 0 && r->status == 503) {
        item_retry(c, it, r->retry_after_s > 0 ? r->retry_after_s * 1000 : 200);
        return;
    }
    if (err != 0 && err != HC_ECLOSED) {
        item_failed(it, NULL, err);
        free(it);
        conn_next(c);
        return;
    }
    if (err == HC_ECLOSED) {
        /* May or may not have run: creates could duplicate, so count it. */
        item_failed(it, NULL, err);
        free(it);
        conn_next(c);
        return;
    }
    bool ok = r->status == 200 || r->status == 201;
    switch (S.ph.id) {
    case PH_THEATERS:
        if (ok)
            S.theater_ids[it->i] = json_id(r, "id");
        break;
    case PH_SCREENS:
        if (ok)
            S.screen_ids[it->i] = json_id(r, "id");
        break;
    case PH_MOVIES:
        if (ok)
            S.movie_ids[it->i] = json_id(r, "id");
        break;
    case PH_SHOWTIMES:
        if (ok)
            S.showtime_ids[it->i] = json_id(r, "id");
        break;
    case PH_USERS:
        if (ok) {
            json_t *o = json_loadb(r->body, r->body_len, 0, NULL);
            const char *tok = json_string_value(json_object_get(o, "token"));
            size_t n = strlen("Authorization: Bearer \r\n") + (tok ? strlen(tok) : 0) + 1;
            S.user_auth[it->i] = malloc(n);
            if (S.user_auth[it->i] == NULL)
                die("out of memory");
            snprintf(S.user_auth[it->i], n, "Authorization: Bearer %s\r\n", tok ? tok : "");
            json_decref(o);
        }
        break;
    case PH_BOOKINGS:
        if (it->step == 0 && r->status == 409) {
            /* That showtime has no such block left: try another. */
            S.showtime_full++;
            if (++it->attempt > 50) {
                S.ph.skipped++; /* not a failure: the catalog is full there */
                ok = true;
                break;
            }
            it->showtime_pick = rnd(6, it->i, 100 + it->attempt);
            item_send(c, it);
            return;
        }
        if (it->step == 0 && ok) {
            it->hold_id = json_id(r, "hold_id");
            it->step = 1;
            item_send(c, it);
            return;
        }
        if (it->step == 1 && ok) {
            S.bookings_confirmed++;
            it->booking_id = json_id(r, "booking_id");
            if ((double)(rnd(6, it->i, 7) % 10000) < opt.cancel_ratio * 10000) {
                it->step = 2;
                item_send(c, it);
                return;
            }
            break;
        }
        if (it->step == 2 && ok) {
            S.bookings_cancelled++;
            break;
        }
        ok = false;
        break;
    default:
        break;
    }
    if (!ok)
        item_failed(it, r, 0);
    S.ph.done++;
    free(it);
    conn_next(c);
}

/* Gives connection c the next item of the phase, if any. */
static void conn_next(hc_conn *c)
{
    if (S.failed)
        return;
    if (S.ph.next >= S.ph.total) {
        /* Every item counts as done once, after its last request. */
        if (S.ph.done >= S.ph.total)
            phase_stop();
        return;
    }
    item *it = calloc(1, sizeof(*it));
    if (it == NULL)
        die("out of memory");
    it->i = S.ph.next++;
    if (S.ph.id == PH_BOOKINGS) {
        it->user = (uint32_t)(rnd(6, it->i, 1) % opt.users);
        /* Popular showtimes are booked more (squared uniform over the list). */
        uint64_t u = rnd(6, it->i, 5) % 1000000;
        it->showtime_pick = (u * u / 1000000) * opt.showtimes / 1000000;
    }
    item_send(c, it);
}

static void on_open(hc_conn *c, void *data)
{
    (void)data;
    if (hc_conn_data(c) == NULL) {
        hc_conn_set_data(c, c); /* started: reconnects do not start it again */
        conn_next(c);
    }
}

static void on_progress(uv_timer_t *t)
{
    (void)t;
    if (opt.quiet)
        return;
    double secs = (double)(now_ms() - (int64_t)S.ph.started_ms) / 1000.0;
    fprintf(stderr,
            "\r%-9s %10" PRIu64 " / %-10" PRIu64 " %8.0f/s  failed %" PRIu64 "  retries %" PRIu64
            "   ",
            phase_names[S.ph.id], S.ph.done, S.ph.total, secs > 0 ? (double)S.ph.done / secs : 0,
            S.ph.failed, S.ph.retries);
}

/* Runs one phase to completion. Returns its seconds. */
static double run_phase(int id, uint64_t total, uint32_t connections)
{
    memset(&S.ph, 0, sizeof(S.ph));
    S.ph.id = id;
    S.ph.total = total;
    S.ph.started_ms = (uint64_t)now_ms();
    if (total == 0)
        return 0;
    hc_config cfg;
    hc_config_default(&cfg);
    cfg.target = &S.target;
    cfg.connections = connections < total ? connections : (uint32_t)total;
    cfg.on_open = on_open;
    if (hc_pool_create(&S.loop, &cfg, &S.pool) != 0)
        die("cannot create the connection pool");
    uv_timer_start(&S.progress, on_progress, 1000, 1000);
    hc_pool_start(S.pool);
    uv_run(&S.loop, UV_RUN_DEFAULT);
    uv_timer_stop(&S.progress);
    hc_pool_destroy(S.pool);
    S.pool = NULL;
    double secs = (double)(now_ms() - (int64_t)S.ph.started_ms) / 1000.0;
    if (!opt.quiet)
        fprintf(stderr,
                "\r%-9s %10" PRIu64 " in %7.1f s (%.0f/s), failed %" PRIu64 ", retries %" PRIu64
                "          \n",
                phase_names[id], S.ph.done, secs, secs > 0 ? (double)S.ph.done / secs : 0,
                S.ph.failed, S.ph.retries);
    if (S.failed)
        die("%s", S.fail_reason);
    return secs;
}

/* ---- Admin login (one blocking-style exchange on the loop) ------------------------------- */

static void on_login(hc_conn *c, void *arg, int err, const hc_response *r)
{
    (void)c;
    (void)arg;
    if (err != 0 || r->status != 200)
        fail("admin login failed: %s %.300s", err != 0 ? hc_strerror(err) : "HTTP",
             r != NULL ? r->body : "");
    else {
        json_t *o = json_loadb(r->body, r->body_len, 0, NULL);
        const char *tok = json_string_value(json_object_get(o, "token"));
        json_t *role = json_object_get(json_object_get(o, "user"), "role");
        if (tok == NULL || !json_is_string(role) || strcmp(json_string_value(role), "admin") != 0)
            fail("%s is not an administrator", opt.admin_email);
        else
            snprintf(S.admin_auth, sizeof(S.admin_auth), "Authorization: Bearer %s\r\n", tok);
        json_decref(o);
        hc_pool_stop(S.pool, NULL, NULL);
    }
}

static void login_open(hc_conn *c, void *data)
{
    (void)data;
    if (hc_conn_data(c) != NULL)
        return;
    hc_conn_set_data(c, c);
    json_t *o = json_pack("{s:s, s:s}", "email", opt.admin_email, "password", opt.admin_password);
    char *body = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    hc_request rq = {
        .method = "POST", .path = "/api/auth/login", .body = body, .body_len = strlen(body)};
    hc_send(c, &rq, on_login, NULL);
    free(body);
}

static void admin_login(void)
{
    hc_config cfg;
    hc_config_default(&cfg);
    cfg.target = &S.target;
    cfg.connections = 1;
    cfg.on_open = login_open;
    if (hc_pool_create(&S.loop, &cfg, &S.pool) != 0)
        die("cannot create the connection pool");
    hc_pool_start(S.pool);
    uv_run(&S.loop, UV_RUN_DEFAULT);
    hc_pool_destroy(S.pool);
    S.pool = NULL;
    if (S.failed)
        die("%s", S.fail_reason);
}

/* ---- main ----------------------------------------------------------------------------------- */

int main(int argc, char **argv)
{
    opt.admin_email = getenv("USHER_BENCH_ADMIN_EMAIL");
    opt.admin_password = getenv("USHER_BENCH_ADMIN_PASSWORD");
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            fputs(usage_text, stdout);
            return 0;
        }
        if (strcmp(a, "--quiet") == 0) {
            opt.quiet = true;
            continue;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "usher-seed: unknown option or missing value: %s (see --help)\n", a);
            return 2;
        }
        const char *v = argv[++i];
        if (strcmp(a, "--target") == 0)
            opt.target = v;
        else if (strcmp(a, "--admin-email") == 0)
            opt.admin_email = v;
        else if (strcmp(a, "--admin-password") == 0)
            opt.admin_password = v;
        else if (strcmp(a, "--seed") == 0)
            opt.seed = parse_num(a, v, 0, UINT64_MAX);
        else if (strcmp(a, "--cities") == 0)
            opt.cities = (uint32_t)parse_num(a, v, 1, sizeof(cities) / sizeof(cities[0]));
        else if (strcmp(a, "--theaters") == 0)
            opt.theaters = (uint32_t)parse_num(a, v, 1, 10000);
        else if (strcmp(a, "--movies") == 0)
            opt.movies = (uint32_t)parse_num(a, v, 1, 100000);
        else if (strcmp(a, "--showtimes") == 0)
            opt.showtimes = (uint32_t)parse_num(a, v, 1, 500000);
        else if (strcmp(a, "--days") == 0)
            opt.days = (uint32_t)parse_num(a, v, 1, 365);
        else if (strcmp(a, "--users") == 0)
            opt.users = (uint32_t)parse_num(a, v, 1, 10000000);
        else if (strcmp(a, "--bookings") == 0)
            opt.bookings = parse_num(a, v, 0, 100000000);
        else if (strcmp(a, "--connections") == 0)
            opt.connections = (uint32_t)parse_num(a, v, 1, 10000);
        else if (strcmp(a, "--cancel-ratio") == 0) {
            char *end;
            opt.cancel_ratio = strtod(v, &end);
            if (*end != '\0' || opt.cancel_ratio < 0 || opt.cancel_ratio > 1) {
                fprintf(stderr, "usher-seed: --cancel-ratio must be from 0 to 1\n");
                return 2;
            }
        } else {
            fprintf(stderr, "usher-seed: unknown option %s (see --help)\n", a);
            return 2;
        }
    }
    if (opt.target == NULL || opt.admin_email == NULL || opt.admin_password == NULL) {
        fprintf(stderr, "usher-seed: --target, --admin-email and --admin-password are required "
                        "(see --help)\n");
        return 2;
    }
    char err[256];
    if (hc_target_parse(opt.target, &S.target, err, sizeof(err)) != 0) {
        fprintf(stderr, "usher-seed: --target: %s\n", err);
        return 2;
    }
    uint64_t nofile = hc_raise_nofile();
    if (nofile != UINT64_MAX && nofile < (uint64_t)opt.connections + 64)
        die("open files limit %" PRIu64 " is too low for %u connections (ulimit -n)", nofile,
            opt.connections);

    S.theater_ids = calloc(opt.theaters, sizeof(uint64_t));
    S.screen_ids = calloc((size_t)opt.theaters * 2, sizeof(uint64_t));
    S.screen_seats = calloc((size_t)opt.theaters * 2, sizeof(uint32_t));
    S.movie_ids = calloc(opt.movies, sizeof(uint64_t));
    S.showtime_ids = calloc(opt.showtimes, sizeof(uint64_t));
    S.user_auth = calloc(opt.users, sizeof(char *));
    if (S.theater_ids == NULL || S.screen_ids == NULL || S.screen_seats == NULL ||
        S.movie_ids == NULL || S.showtime_ids == NULL || S.user_auth == NULL)
        die("out of memory");
    uv_loop_init(&S.loop);
    uv_timer_init(&S.loop, &S.progress);

    int64_t t0 = now_ms();
    admin_login();
    double secs[PH_COUNT_] = {0};
    secs[PH_THEATERS] = run_phase(PH_THEATERS, opt.theaters, opt.connections);
    secs[PH_SCREENS] = run_phase(PH_SCREENS, (uint64_t)opt.theaters * 2, opt.connections);
    secs[PH_MOVIES] = run_phase(PH_MOVIES, opt.movies, opt.connections);
    secs[PH_SHOWTIMES] = run_phase(PH_SHOWTIMES, opt.showtimes, opt.connections);
    secs[PH_USERS] = run_phase(PH_USERS, opt.users, opt.connections);
    /* Bookings need every user's token and every showtime's id. */
    for (uint32_t u = 0; u < opt.users; u++) {
        if (S.user_auth[u] == NULL)
            die("user %u was not created; cannot book for it", u + 1);
    }
    for (uint32_t s = 0; s < opt.showtimes; s++) {
        if (S.showtime_ids[s] == 0)
            die("showtime %u was not created", s + 1);
    }
    secs[PH_BOOKINGS] = run_phase(PH_BOOKINGS, opt.bookings, opt.connections);
    double total = (double)(now_ms() - t0) / 1000.0;
    printf("seeded %s (seed %" PRIu64 ") in %.1f s:\n", opt.target, opt.seed, total);
    uint64_t seats = 0;
    for (uint32_t i = 0; i < opt.theaters * 2; i++)
        seats += S.screen_seats[i];
    printf("  %u theaters in %u cities, %u screens (%" PRIu64 " seats), %u movies, %u showtimes "
           "over %u days, %u users\n",
           opt.theaters, opt.cities, opt.theaters * 2, seats, opt.movies, opt.showtimes, opt.days,
           opt.users);
    printf("  bookings: %" PRIu64 " confirmed, %" PRIu64 " then cancelled, %" PRIu64
           " not placed (no showtime with room after 50 tries), %" PRIu64
           " moves to another showtime\n",
           S.bookings_confirmed, S.bookings_cancelled, S.ph.skipped, S.showtime_full);
    printf("  seconds per phase:");
    for (int p = PH_THEATERS; p < PH_COUNT_; p++)
        printf(" %s %.1f", phase_names[p], secs[p]);
    printf("\n");
    uv_close((uv_handle_t *)&S.progress, NULL);
    uv_run(&S.loop, UV_RUN_DEFAULT);
    uv_loop_close(&S.loop);
    for (uint32_t u = 0; u < opt.users; u++)
        free(S.user_auth[u]);
    free(S.user_auth);
    free(S.theater_ids);
    free(S.screen_ids);
    free(S.screen_seats);
    free(S.movie_ids);
    free(S.showtime_ids);
    return 0;
}
