/*
 * usher-bench - the load harness for usherd (issue #5).
 *
 * Creates its own catalog (theater, screen with a generated layout, movie,
 * showtimes) and users through the API, then runs a scenario over many
 * keep-alive connections (bench/client.h, one libuv loop per thread), records
 * per-operation latency in log-linear histograms (bench/hist.h), and finally
 * audits the sales (bench/audit.h): what every client was told it bought
 * against the seat maps and bookings the server reports. `usher-bench --help`
 * documents the flags, the scenarios and the output.
 */
#define _DEFAULT_SOURCE /* timegm (glibc; also in POSIX 2024) */

#include "audit.h"
#include "batch.h"
#include "client.h"
#include "hist.h"
#include "layout.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

static const char *const usage_text[] = {
    "usage: usher-bench --target http://HOST:PORT [options]\n"
    "\n"
    "Load harness for usherd. It creates its own theater, screen, movie, showtimes and users\n"
    "through the API (admin credentials needed for every scenario but http), runs a scenario\n"
    "over many keep-alive connections, prints per-operation throughput and latency, and\n"
    "audits the sales: no seat sold twice, every acknowledged booking on the server, the\n"
    "sold seats equal to what clients were told they bought.\n"
    "\n"
    "  --target URL          the server, http://HOST:PORT (required)\n"
    "  --scenario NAME       flash (default), steady, reserve or http (see below)\n"
    "  --connections N       concurrent keep-alive connections, one simulated client each\n"
    "                        (default 1000); opened in ramp steps (--ramp)\n"
    "  --threads T           event-loop threads sharing the connections (default: CPUs)\n"
    "  --duration S          run for S seconds (default 10; fractions allowed)\n"
    "  --requests N          or stop after N requests in all (no time limit unless\n"
    "                        --duration is also given)\n"
    "  --seats N             seats of the showtime(s): flash 5000 (up to 100000), steady and\n"
    "                        reserve 500\n"
    "  --showtimes N         showtimes for steady and reserve (default 100)\n"
    "  --confirm-ratio F     share of holds that are paid for (default 0.5)\n"
    "  --abandon-ratio F     flash: share of unpaid holds left to expire instead of\n"
    "                        released (default 0.1)\n"
    "  --users N             accounts registered; connections share them round-robin\n"
    "                        (default min(connections, 200)); each registration hashes a\n"
    "                        password on the server, about 45 ms on 2 cores\n"
    "  --admin-email E       administrator account (or USHER_BENCH_ADMIN_EMAIL)\n"
    "  --admin-password P    its password (or USHER_BENCH_ADMIN_PASSWORD)\n"
    "  --path P              http scenario: the path to GET (default /)\n"
    "  --pipeline N          http scenario: requests in flight per connection (default 1)\n"
    "  --timeout MS          a request without an answer after MS fails (default 30000)\n"
    "  --ramp N              connections opened per 10 ms while ramping up (default 500)\n"
    "  --seed N              random seed of the simulated clients (default 1)\n"
    "  --json                print one JSON object on stdout instead of the table\n"
    "  --quiet               no progress line on stderr\n"
    "  -h, --help            this text\n"
    "\n",
    "flash --queue (the on-sale through usherd's virtual queue; see below):\n"
    "  --queue               put the flash showtime behind a virtual queue\n"
    "  --queue-rate N        users admitted per second (default 500; 1 to 1000000)\n"
    "  --queue-start-delay-ms MS  the queue starts MS after setup, rounded up to a whole\n"
    "                        second (start_time has whole seconds); clients that join\n"
    "                        before it are shuffled at the start (default 2000)\n"
    "  --queue-poll-min-ms MS, --queue-poll-max-ms MS  bounds of the queue/me polling\n"
    "                        interval (default 100 and 1000)\n"
    "  --queue-tries N       reserves an admitted client makes before it gives up its\n"
    "                        admission when they answer 409/410 (default 3)\n"
    "\n",
    "Scenarios (a connection is one client looping as fast as answers come back):\n"
    "  flash    one showtime (a stadium: rows of 50 seats with aisles after seats 10 and 40,\n"
    "           three categories by row band; rows get wider when the layout would not fit\n"
    "           a 64 KiB request: 100000 seats are 500 rows of 200). Each client reserves\n"
    "           1-4 seats: half the time listed adjacent seats in a hot region (the\n"
    "           central block around the best row), half the time best-available\n"
    "           {count, category}. With probability --confirm-ratio it confirms\n"
    "           (upi/card/wallet, with an Idempotency-Key, retried with the same key\n"
    "           after a lost answer); otherwise it releases the hold, or with\n"
    "           probability --abandon-ratio lets it expire.\n"
    "  (steady and reserve screens: rows of 25 seats, aisles after seats 5 and 20)\n"
    "  reserve  durable reserve of 4 listed seats on a random showtime of --showtimes,\n"
    "           then release: raw write throughput. Each connection owns its own seats\n"
    "           (every C-th block of 4 over all showtimes), so collisions are rare. No\n"
    "           audit (nothing is sold).\n"
    "  steady   sessions over --showtimes showtimes (popularity skewed): per session a\n"
    "           browse (GET /api/showtimes with random city/genre/date/price/availability\n"
    "           filters and sort), a seat map (If-None-Match when polling the same\n"
    "           showtime again), then with probability 0.5 a reserve (free seats picked\n"
    "           from the map, else best-available) followed by confirm (--confirm-ratio)\n"
    "           or release; my-bookings with probability 0.3; cancel of one of the\n"
    "           client's bookings with probability 0.1. Per 100 sessions: 100 browse,\n"
    "           100 seatmap, 50 reserve, 25 confirm, 25 release, 30 my_bookings, <= 10\n"
    "           cancel (at the default ratio).\n"
    "  http     GET --path only, no setup and no audit: the HTTP ceiling of a server\n"
    "           (e.g. nginx 'return 204') measured the same way.\n"
    "  flash --queue  the same sale behind a virtual queue (PUT /api/showtimes/:id/queue,\n"
    "           --queue-rate, start --queue-start-delay-ms after setup). One account per\n"
    "           connection (--users must equal --connections). Each client joins\n"
    "           (POST .../queue/join: prequeue before the start, waiting after), polls GET\n"
    "           .../queue/me every position/rate/2 seconds (estimated_wait_s/2 in the\n"
    "           prequeue), bounded by --queue-poll-min-ms/--queue-poll-max-ms, +-20 %\n"
    "           jitter; once admitted it reserves with the Admission-Token header (up to\n"
    "           --queue-tries reserves), confirms, releases or abandons as in flash, then\n"
    "           leaves (DELETE .../queue/me) and joins again at the back: a new buyer. One\n"
    "           extra connection samples GET .../queue every 250 ms for the admission rate.\n"
    "\n",
    "Answers: 2xx and 304 are ok; 409 and 410 are outcomes (seats taken, sold out, hold\n"
    "ended: normal in a sale); anything else is an error, as are timeouts and closed\n"
    "connections. A 503 is backpressure: the client waits Retry-After (default 1 s).\n"
    "Latency is measured per request, from the write to the last byte of the answer,\n"
    "for every answer (ok, outcome or error); percentiles come from a log-linear\n"
    "histogram (< 1 % error). Closed loop: a slow server lowers the request rate.\n"
    "\n"
    "Output: a table per operation (count, rps, ok, outcomes, errors, p50/p90/p99/p99.9/max\n"
    "in ms, then errors and outcomes by status) and the audit; with --json one object:\n"
    "  {\"scenario\", \"target\", \"connections\", \"threads\", \"duration_s\", \"seed\",\n"
    "   \"ops\": {\"reserve\": {\"count\", \"ok\", \"rps\", \"p50_ms\", \"p90_ms\", \"p99_ms\",\n"
    "   \"p999_ms\", \"max_ms\", \"mean_ms\", \"outcomes\": {\"409\": n}, \"errors\": {\"503\": "
    "n,\n"
    "   \"timeout\": n}}, ...}, \"total\": {\"count\", \"rps\", \"errors\"}, \"client\": {...},\n"
    "   \"audit\": {\"ok\", \"seats_sold\", \"seats_confirmed_by_clients\", \"double_sold\",\n"
    "   \"lost_confirmations\", ...}}\n"
    "flash also reports the sale (\"sale\"): when the seats confirmed to clients reached\n"
    "half, 95 % and all of their number, in seconds from the run's start (with --queue\n"
    "from the queue's start).\n"
    "Progress: one line per second on stderr (requests/s, errors, 503s, open connections).\n"
    "\n",
    "Audit (flash and steady): every client remembers each booking it was told it bought\n"
    "(booking id, showtime, seats of the 201 answer) and each cancel it was told happened.\n"
    "Afterwards the seat maps (GET /api/seats/:id) and every user's bookings\n"
    "(GET /api/bookings/my-bookings, GET /api/bookings/:id) are read back and checked: no\n"
    "seat confirmed to two bookings (double_sold), every acknowledged booking exists with\n"
    "its seats and sold in the map (lost_confirmations), no booking or sold seat that no\n"
    "client was told about, and seats sold = seats confirmed to clients (+ seats of\n"
    "operations whose answer was lost and that the server shows took effect). Violations\n"
    "are listed on stderr. reserve and http report the audit as skipped (ok).\n"
    "\n"
    "flash --queue adds to the table (\"queue\" in the JSON): joins (prequeue / after the\n"
    "start), admissions seen by clients and counted by the server, the admission rate\n"
    "while users were waiting (server counts sampled every 250 ms) against --queue-rate,\n"
    "the time from the queue's start to each admission and from a join after the start\n"
    "to its admission (client clocks: when the poll that said admitted was answered;\n"
    "percentiles over every admission), polls per admission, reserves refused with 403\n"
    "admission-required, and FIFO violations: a client admitted while a client known to\n"
    "be ahead of it (its join was answered before this one's join was sent, after the\n"
    "start) was still waiting, or was admitted in a later second (admitted_at).\n"
    "\n"
    "Exit status: 0 ok, 1 audit violation (or the audit could not read the server back, or\n"
    "no request was answered at all; with --queue also a 403 admission-required, no\n"
    "admission, or a FIFO violation), 2 usage or setup error.\n"
    "\n"
    "Open files: the soft limit is raised to the hard one; more connections than it allows\n"
    "are refused at start. Against one server address, about 28,000 connections fit in the\n"
    "default ephemeral port range.\n"};

/* ---- Options ------------------------------------------------------------------------ */

enum scenario { SC_FLASH, SC_STEADY, SC_RESERVE, SC_HTTP };
static const char *const scenario_names[] = {"flash", "steady", "reserve", "http"};

static struct {
    const char *target_url;
    hc_target target;
    enum scenario sc;
    const char *path;
    uint32_t connections, threads, pipeline, timeout_ms, ramp;
    double duration_s;
    bool duration_given;
    uint64_t requests;
    uint32_t seats, showtimes, users;
    bool seats_given, users_given;
    double confirm_ratio, abandon_ratio;
    const char *admin_email, *admin_password;
    uint64_t seed;
    bool json, quiet;
    bool queue; /* flash --queue */
    uint32_t queue_rate, queue_delay_ms, queue_poll_min_ms, queue_poll_max_ms, queue_tries;
} opt;

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("usher-bench: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(2);
}

static void note(const char *fmt, ...)
{
    if (opt.quiet)
        return;
    va_list ap;
    va_start(ap, fmt);
    fputs("usher-bench: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* snprintf that reports truncation (false) instead of hiding it. */
static bool bprintf(char *buf, size_t len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, len, fmt, ap);
    va_end(ap);
    return n >= 0 && (size_t)n < len;
}

static uint64_t parse_u64(const char *flag, const char *v, uint64_t min, uint64_t max)
{
    char *end;
    errno = 0;
    unsigned long long x = strtoull(v, &end, 10);
    if (errno != 0 || end == v || *end != '\0' || v[0] == '-' || x < min || x > max)
        die("%s must be an integer from %" PRIu64 " to %" PRIu64 ", not '%s'", flag, min, max, v);
    return x;
}

static double parse_double(const char *flag, const char *v, double min, double max)
{
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (errno != 0 || end == v || *end != '\0' || !(x >= min && x <= max))
        die("%s must be a number from %g to %g, not '%s'", flag, min, max, v);
    return x;
}

static void parse_args(int argc, char **argv)
{
    opt.sc = SC_FLASH;
    opt.path = "/";
    opt.connections = 1000;
    opt.threads = (uint32_t)uv_available_parallelism();
    opt.pipeline = 1;
    opt.timeout_ms = 30000;
    opt.ramp = 500;
    opt.duration_s = 10;
    opt.showtimes = 100;
    opt.confirm_ratio = 0.5;
    opt.abandon_ratio = 0.1;
    opt.seed = 1;
    opt.queue_rate = 500;
    opt.queue_delay_ms = 2000;
    opt.queue_poll_min_ms = 100;
    opt.queue_poll_max_ms = 1000;
    opt.queue_tries = 3;
    opt.admin_email = getenv("USHER_BENCH_ADMIN_EMAIL");
    opt.admin_password = getenv("USHER_BENCH_ADMIN_PASSWORD");
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            for (size_t k = 0; k < sizeof(usage_text) / sizeof(usage_text[0]); k++)
                fputs(usage_text[k], stdout);
            exit(0);
        }
        if (strcmp(a, "--json") == 0) {
            opt.json = true;
            continue;
        }
        if (strcmp(a, "--quiet") == 0) {
            opt.quiet = true;
            continue;
        }
        if (strcmp(a, "--queue") == 0) {
            opt.queue = true;
            continue;
        }
        if (i + 1 >= argc)
            die("%s needs a value (see --help)", a);
        const char *v = argv[++i];
        if (strcmp(a, "--target") == 0) {
            opt.target_url = v;
        } else if (strcmp(a, "--scenario") == 0) {
            int found = -1;
            for (int s = 0; s < 4; s++)
                if (strcmp(v, scenario_names[s]) == 0)
                    found = s;
            if (found < 0)
                die("--scenario must be flash, steady, reserve or http, not '%s'", v);
            opt.sc = (enum scenario)found;
        } else if (strcmp(a, "--path") == 0) {
            if (v[0] != '/' || strlen(v) > 2000)
                die("--path must start with '/' (and be shorter than 2000 bytes)");
            opt.path = v;
        } else if (strcmp(a, "--connections") == 0) {
            opt.connections = (uint32_t)parse_u64(a, v, 1, 1000000);
        } else if (strcmp(a, "--threads") == 0) {
            opt.threads = (uint32_t)parse_u64(a, v, 1, 256);
        } else if (strcmp(a, "--duration") == 0) {
            opt.duration_s = parse_double(a, v, 0.1, 86400);
            opt.duration_given = true;
        } else if (strcmp(a, "--requests") == 0) {
            opt.requests = parse_u64(a, v, 1, UINT64_C(1) << 50);
        } else if (strcmp(a, "--seats") == 0) {
            opt.seats = (uint32_t)parse_u64(a, v, 4, 100000);
            opt.seats_given = true;
        } else if (strcmp(a, "--showtimes") == 0) {
            opt.showtimes = (uint32_t)parse_u64(a, v, 1, 100000);
        } else if (strcmp(a, "--confirm-ratio") == 0) {
            opt.confirm_ratio = parse_double(a, v, 0, 1);
        } else if (strcmp(a, "--abandon-ratio") == 0) {
            opt.abandon_ratio = parse_double(a, v, 0, 1);
        } else if (strcmp(a, "--users") == 0) {
            opt.users = (uint32_t)parse_u64(a, v, 1, 1000000);
            opt.users_given = true;
        } else if (strcmp(a, "--admin-email") == 0) {
            opt.admin_email = v;
        } else if (strcmp(a, "--admin-password") == 0) {
            opt.admin_password = v;
        } else if (strcmp(a, "--pipeline") == 0) {
            opt.pipeline = (uint32_t)parse_u64(a, v, 1, HC_PIPELINE_MAX);
        } else if (strcmp(a, "--timeout") == 0) {
            opt.timeout_ms = (uint32_t)parse_u64(a, v, 100, 3600000);
        } else if (strcmp(a, "--ramp") == 0) {
            opt.ramp = (uint32_t)parse_u64(a, v, 1, 1000000);
        } else if (strcmp(a, "--seed") == 0) {
            opt.seed = parse_u64(a, v, 0, UINT64_MAX);
        } else if (strcmp(a, "--queue-rate") == 0) {
            opt.queue_rate = (uint32_t)parse_u64(a, v, 1, 1000000);
        } else if (strcmp(a, "--queue-start-delay-ms") == 0) {
            opt.queue_delay_ms = (uint32_t)parse_u64(a, v, 0, 3600000);
        } else if (strcmp(a, "--queue-poll-min-ms") == 0) {
            opt.queue_poll_min_ms = (uint32_t)parse_u64(a, v, 10, 60000);
        } else if (strcmp(a, "--queue-poll-max-ms") == 0) {
            opt.queue_poll_max_ms = (uint32_t)parse_u64(a, v, 10, 60000);
        } else if (strcmp(a, "--queue-tries") == 0) {
            opt.queue_tries = (uint32_t)parse_u64(a, v, 1, 100);
        } else {
            die("unknown option '%s' (see --help)", a);
        }
    }
    if (opt.target_url == NULL)
        die("--target http://HOST:PORT is required (see --help)");
    char err[512];
    if (hc_target_parse(opt.target_url, &opt.target, err, sizeof(err)) != 0)
        die("--target: %s", err);
    if (opt.requests != 0 && !opt.duration_given)
        opt.duration_s = 0; /* no time limit */
    if (!opt.seats_given)
        opt.seats = opt.sc == SC_FLASH ? 5000 : 500;
    if (opt.sc != SC_FLASH && opt.seats > 50000)
        die("--seats: steady and reserve screens have at most 50000 seats");
    if (opt.queue && opt.sc != SC_FLASH)
        die("--queue applies to the flash scenario only");
    if (opt.queue && opt.queue_poll_min_ms > opt.queue_poll_max_ms)
        die("--queue-poll-min-ms must not exceed --queue-poll-max-ms");
    if (opt.queue && opt.users_given && opt.users != opt.connections)
        die("--queue: every connection is one buyer with its own place in the queue, so "
            "--users must equal --connections (or be left out)");
    if (!opt.users_given)
        opt.users = opt.queue ? opt.connections : opt.connections < 200 ? opt.connections : 200;
    if (opt.threads > opt.connections)
        opt.threads = opt.connections;
    if (opt.pipeline > 1 && opt.sc != SC_HTTP)
        die("--pipeline applies to the http scenario only");
    if (opt.sc != SC_HTTP && (opt.admin_email == NULL || opt.admin_password == NULL))
        die("the %s scenario creates showtimes: give --admin-email and --admin-password (or "
            "USHER_BENCH_ADMIN_EMAIL and USHER_BENCH_ADMIN_PASSWORD)",
            scenario_names[opt.sc]);
}

/* ---- Randomness --------------------------------------------------------------------- */

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

/* Uniform in [0, 1). */
static double unit(uint64_t *s)
{
    return (double)(splitmix(s) >> 11) / 9007199254740992.0;
}

static uint32_t below(uint64_t *s, uint32_t n)
{
    return n ? (uint32_t)(splitmix(s) % n) : 0;
}

/* ---- A growable string ------------------------------------------------------------- */

typedef struct sbuf {
    char *s;
    size_t len, cap;
} sbuf;

static void sb_add(sbuf *b, const char *fmt, ...)
{
    for (;;) {
        size_t room = b->cap - b->len;
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->s ? b->s + b->len : NULL, b->s ? room : 0, fmt, ap);
        va_end(ap);
        if (n < 0)
            die("formatting failed");
        if (b->s != NULL && (size_t)n < room) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = b->cap ? b->cap * 2 : 4096;
        while (cap < b->len + (size_t)n + 1)
            cap *= 2;
        char *s = realloc(b->s, cap);
        if (s == NULL)
            die("out of memory");
        b->s = s;
        b->cap = cap;
    }
}

/* ---- The seat layout ---------------------------------------------------------------- */

static bench_layout L; /* of every showtime the run creates */

/* ---- Talking to the server from the main thread (setup and audit) -------------------- */

static uv_loop_t main_loop;
static hc_pool *sync_pool; /* a few connections on main_loop */
enum { SYNC_CONNECTIONS = 32 };

static void sync_pool_open(void)
{
    hc_config cfg;
    hc_config_default(&cfg);
    cfg.target = &opt.target;
    cfg.connections = SYNC_CONNECTIONS;
    cfg.request_timeout_ms = opt.timeout_ms > 60000 ? opt.timeout_ms : 60000;
    cfg.max_body_bytes = 256u << 20;
    cfg.fail_queued_on_connect_error = true; /* the batch retries after a pause */
    if (hc_pool_create(&main_loop, &cfg, &sync_pool) != 0)
        die("out of memory");
    hc_pool_start(sync_pool);
}

static void sync_pool_stopped(hc_pool *p, void *arg)
{
    (void)p;
    *(bool *)arg = true;
}

static void sync_pool_close(void)
{
    bool done = false;
    hc_pool_stop(sync_pool, sync_pool_stopped, &done);
    while (!done)
        uv_run(&main_loop, UV_RUN_ONCE);
    hc_pool_destroy(sync_pool);
    sync_pool = NULL;
}

static void batch_progress(hb_batch *b)
{
    note("%s: %zu/%zu", b->what, b->finished, b->n);
}

/* Runs a batch over sync_pool. */
static size_t batch_run(hb_batch *b)
{
    if (b->progress == NULL)
        b->progress = batch_progress;
    return hb_run(sync_pool, b);
}

/* One request, retried on 503 and lost answers; the answer's JSON in *out (may be NULL). */
typedef struct one_ctx {
    const char *method, *path, *auth, *body;
    int status;
    json_t *json;
    char text[600];
} one_ctx;

static void one_build(hb_batch *b, size_t job, uint32_t step, hb_request *rq)
{
    (void)job;
    (void)step;
    one_ctx *o = b->ctx;
    rq->method = o->method;
    if (!bprintf(rq->path, sizeof(rq->path), "%s", o->path))
        die("path too long: %s", o->path);
    rq->headers = o->auth;
    rq->big_body = o->body;
}

static hb_step one_handle(hb_batch *b, size_t job, uint32_t *step, int err, const hc_response *r)
{
    (void)job;
    (void)step;
    one_ctx *o = b->ctx;
    if (err != 0 || r->status == 503)
        return HB_RETRY;
    o->status = r->status;
    if (!bprintf(o->text, sizeof(o->text), "%.500s", r->body))
        o->text[sizeof(o->text) - 1] = '\0';
    o->json = json_loadb(r->body, r->body_len, 0, NULL);
    return HB_DONE;
}

/* Returns the status; dies if no answer came. */
static int api_call(const char *method, const char *path, const char *auth, const char *body,
                    json_t **out, char *text, size_t textlen)
{
    one_ctx o = {.method = method, .path = path, .auth = auth, .body = body};
    hb_batch b = {.what = path,
                  .n = 1,
                  .ctx = &o,
                  .build = one_build,
                  .handle = one_handle,
                  .max_attempts = 10};
    if (batch_run(&b) != 0) {
        hc_stats st = {0};
        hc_pool_stats(sync_pool, &st);
        if (st.connects == 0)
            die("cannot connect to %s (%" PRIu64 " attempts failed)", opt.target_url,
                st.connect_failures);
        die("%s", b.error);
    }
    if (text != NULL && !bprintf(text, textlen, "%s", o.text))
        text[textlen - 1] = '\0';
    if (out != NULL)
        *out = o.json;
    else
        json_decref(o.json);
    return o.status;
}

static uint64_t json_id(json_t *j, const char *key)
{
    json_t *v = j ? json_object_get(j, key) : NULL;
    return json_is_integer(v) ? (uint64_t)json_integer_value(v) : 0;
}

/* POST that must answer 201 with an id. */
static uint64_t api_create(const char *path, const char *auth, const char *body)
{
    json_t *j = NULL;
    char text[600];
    int st = api_call("POST", path, auth, body, &j, text, sizeof(text));
    uint64_t id = json_id(j, "id");
    json_decref(j);
    if (st != 201 || id == 0)
        die("setup: POST %s answered %d: %s", path, st, text);
    return id;
}

/* ---- flash --queue: what the clients keep ------------------------------------------------ */

/* The states of GET /api/showtimes/:id/queue/me, and where a client is in its loop. */
enum q_state { QS_NONE, QS_PREQUEUE, QS_WAITING, QS_ADMITTED, QS_LAPSED, QS_UNKNOWN };
enum q_phase { QP_JOIN, QP_WAIT, QP_BUY, QP_LEAVE };

/* One place a client took in the queue (one join) and what became of it. Times are
 * uv_hrtime() of this process, taken by the client pool: `*_sent` just before the request
 * was written (the server saw it later), `*_done` when the answer was read (the server had
 * answered earlier). That makes "A's join was answered before B's was sent" a proof that A
 * stands ahead of B. */
typedef struct q_ticket {
    uint64_t join_sent;      /* the join that was answered was written */
    uint64_t join_done;      /* its answer was read (0: no place known) */
    uint64_t admitted_done;  /* the first answer saying admitted was read (0: never) */
    uint64_t last_wait_sent; /* the last poll answered "waiting" was written (0: none) */
    int64_t admitted_ms;     /* the server's admitted_at, ms since the epoch (0: not seen) */
    uint32_t polls;          /* GET queue/me sent for this place */
    uint8_t joined_as;       /* q_state the join answered */
    bool fresh;              /* one join attempt, answered 201: a new place */
} q_ticket;

static struct {
    int64_t start_ms;  /* the queue's start_time, server clock (ms since the epoch) */
    uint64_t start_ns; /* the same instant on uv_hrtime() (same machine, same clock) */
    int64_t delay_ms;  /* start_time - the moment it was set */
    uint32_t window_s; /* admission_window_s */
    char path_info[64], path_join[64], path_me[64];
} Q;

/* ---- Setup: catalog and users -------------------------------------------------------- */

typedef struct user {
    uint64_t id;
    char *auth; /* "Authorization: Bearer TOKEN\r\n" */
} user;

static user *users;
static char admin_auth[1200];
static char run_id[32]; /* makes this run's names and emails unique */
static uint64_t *showtime_ids;
static char **showtime_names; /* "showtime id" texts for the audit */
static uint32_t nshowtimes;
static const char *const cities[2] = {"Benchpur", "Loadnagar"};
static const char *const genres[4] = {"drama", "thriller", "comedy", "action"};
static uint64_t movie_ids[4], screen_ids[2];
static int64_t first_start_s; /* of the showtimes, for the browse date filter */

static void format_time(int64_t t, char out[32])
{
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    if (strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        die("cannot format a time");
}

static void admin_login(void)
{
    json_t *body =
        json_pack("{s:s, s:s}", "email", opt.admin_email, "password", opt.admin_password);
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    json_t *j = NULL;
    char ans[600];
    int st = api_call("POST", "/api/auth/login", NULL, text, &j, ans, sizeof(ans));
    free(text);
    json_t *tok = j ? json_object_get(j, "token") : NULL;
    json_t *user = j ? json_object_get(j, "user") : NULL;
    json_t *role = user ? json_object_get(user, "role") : NULL;
    if (st != 200 || !json_is_string(tok))
        die("admin login as %s failed (HTTP %d): %s", opt.admin_email, st, ans);
    if (!json_is_string(role) || strcmp(json_string_value(role), "admin") != 0)
        die("%s is not an administrator", opt.admin_email);
    if (!bprintf(admin_auth, sizeof(admin_auth), "Authorization: Bearer %s\r\n",
                 json_string_value(tok)))
        die("the admin token is too long");
    json_decref(j);
}

typedef struct showtime_ctx {
    int64_t base;
} showtime_ctx;

static void showtime_build(hb_batch *b, size_t i, uint32_t step, hb_request *rq)
{
    (void)step;
    showtime_ctx *c = b->ctx;
    /* Spread over a week, one every few minutes per screen, far enough ahead that sales
     * stay open and cancels refund. */
    int64_t start = c->base + (int64_t)i * (7 * 86400) / (int64_t)(nshowtimes ? nshowtimes : 1);
    start -= start % 60;
    char when[32];
    format_time(start, when);
    rq->method = "POST";
    bprintf(rq->path, sizeof(rq->path), "/api/showtimes");
    rq->headers = admin_auth;
    if (!bprintf(rq->body, sizeof(rq->body),
                 "{\"movie_id\":%" PRIu64 ",\"screen_id\":%" PRIu64 ",\"start_time\":\"%s\","
                 "\"prices\":{\"%s\":%u,\"%s\":%u,\"%s\":%u}}",
                 movie_ids[i % (opt.sc == SC_FLASH ? 1 : 4)],
                 screen_ids[i % (opt.sc == SC_FLASH ? 1 : 2)], when, layout_cat_names[0],
                 layout_cat_prices[0], layout_cat_names[1], layout_cat_prices[1],
                 layout_cat_names[2], layout_cat_prices[2]))
        die("showtime body too long");
}

static hb_step showtime_handle(hb_batch *b, size_t i, uint32_t *step, int err, const hc_response *r)
{
    (void)b;
    (void)step;
    if (err != 0 || r->status == 503)
        return HB_RETRY; /* a retried create may make a duplicate: harmless here */
    if (r->status == 409 && r->retry_after_s >= 0)
        return HB_RETRY; /* in-use, in flight */
    if (r->status != 201)
        return HB_FAIL;
    json_t *j = json_loadb(r->body, r->body_len, 0, NULL);
    showtime_ids[i] = json_id(j, "id");
    json_decref(j);
    return showtime_ids[i] ? HB_DONE : HB_FAIL;
}

static void register_build(hb_batch *b, size_t i, uint32_t step, hb_request *rq)
{
    (void)b;
    rq->method = "POST";
    bool ok;
    if (step == 0) {
        bprintf(rq->path, sizeof(rq->path), "/api/auth/register");
        ok = bprintf(rq->body, sizeof(rq->body),
                     "{\"email\":\"ub%s-%zu@bench.usher.dev\",\"password\":\"usher-bench-%s\","
                     "\"name\":\"Bench User %zu\"}",
                     run_id, i, run_id, i);
    } else { /* the account exists (a retried registration got through): log in */
        bprintf(rq->path, sizeof(rq->path), "/api/auth/login");
        ok = bprintf(rq->body, sizeof(rq->body),
                     "{\"email\":\"ub%s-%zu@bench.usher.dev\",\"password\":\"usher-bench-%s\"}",
                     run_id, i, run_id);
    }
    if (!ok)
        die("register body too long");
}

static hb_step register_handle(hb_batch *b, size_t i, uint32_t *step, int err, const hc_response *r)
{
    (void)b;
    if (err != 0 || r->status == 503)
        return HB_RETRY; /* the server bounds concurrent password hashing: Retry-After */
    if (*step == 0 && r->status == 409) {
        *step = 1; /* email-taken: an earlier attempt whose answer was lost got through */
        return HB_NEXT;
    }
    if (r->status != (*step == 0 ? 201 : 200))
        return HB_FAIL;
    json_t *j = json_loadb(r->body, r->body_len, 0, NULL);
    json_t *tok = j ? json_object_get(j, "token") : NULL;
    json_t *u = j ? json_object_get(j, "user") : NULL;
    users[i].id = json_id(u, "id");
    char auth[1200];
    bool ok = json_is_string(tok) &&
              bprintf(auth, sizeof(auth), "Authorization: Bearer %s\r\n", json_string_value(tok));
    json_decref(j);
    if (!ok || users[i].id == 0)
        return HB_FAIL;
    users[i].auth = strdup(auth);
    if (users[i].auth == NULL)
        die("out of memory");
    return HB_DONE;
}

static void setup(void)
{
    uint64_t t0 = uv_hrtime();
    admin_login();
    bool flash = opt.sc == SC_FLASH;
    if (layout_build(&L, opt.seats, flash ? 50 : 25, flash, 60000) != 0)
        die("cannot make a layout of %u seats", opt.seats);
    nshowtimes = flash ? 1 : opt.showtimes;
    char body[1024];
    uint64_t theater_ids[2];
    uint32_t ntheaters = flash ? 1 : 2;
    for (uint32_t t = 0; t < ntheaters; t++) {
        if (!bprintf(body, sizeof(body),
                     "{\"name\":\"usher-bench %s %s\",\"city\":\"%s\",\"address\":\"load test\"}",
                     run_id, cities[t], cities[t]))
            die("theater body too long");
        theater_ids[t] = api_create("/api/theaters", admin_auth, body);
    }
    for (uint32_t t = 0; t < ntheaters; t++) {
        sbuf s = {0};
        sb_add(&s, "{\"theater_id\":%" PRIu64 ",\"name\":\"%s %s\",\"layout\":%s}", theater_ids[t],
               flash ? "Stadium" : "Screen", run_id, L.json);
        screen_ids[t] = api_create("/api/screens", admin_auth, s.s);
        free(s.s);
    }
    uint32_t nmovies = flash ? 1 : 4;
    for (uint32_t m = 0; m < nmovies; m++) {
        if (!bprintf(body, sizeof(body),
                     "{\"title\":\"%s %s %u\",\"duration_min\":%u,\"genre\":\"%s\","
                     "\"language\":\"english\",\"rating\":\"UA\","
                     "\"description\":\"created by usher-bench\"}",
                     flash ? "Flash Sale" : "Bench Movie", run_id, m, 100 + 10 * m,
                     flash ? "sports" : genres[m]))
            die("movie body too long");
        movie_ids[m] = api_create("/api/movies", admin_auth, body);
    }
    showtime_ids = calloc(nshowtimes, sizeof(uint64_t));
    showtime_names = calloc(nshowtimes, sizeof(char *));
    if (showtime_ids == NULL || showtime_names == NULL)
        die("out of memory");
    /* Tomorrow, on the hour (plus two days for the flash sale's event). */
    int64_t now = (int64_t)time(NULL);
    showtime_ctx sc = {.base = now - now % 3600 + (flash ? 3 : 1) * 86400};
    first_start_s = sc.base;
    hb_batch bs = {.what = "creating showtimes",
                   .n = nshowtimes,
                   .ctx = &sc,
                   .build = showtime_build,
                   .handle = showtime_handle};
    if (batch_run(&bs) != 0)
        die("setup: %s", bs.error);
    for (uint32_t i = 0; i < nshowtimes; i++) {
        char name[32];
        bprintf(name, sizeof(name), "%" PRIu64, showtime_ids[i]);
        showtime_names[i] = strdup(name);
        if (showtime_names[i] == NULL)
            die("out of memory");
    }
    users = calloc(opt.users, sizeof(*users));
    if (users == NULL)
        die("out of memory");
    uint64_t tu = uv_hrtime();
    hb_batch bu = {.what = "registering users",
                   .n = opt.users,
                   .build = register_build,
                   .handle = register_handle,
                   .max_attempts = 200};
    if (batch_run(&bu) != 0)
        die("setup: %s", bu.error);
    note("setup: %u showtime(s) of %u seats (%u rows), %u users registered in %.1f s; "
         "setup took %.1f s",
         nshowtimes, L.nseats, L.nrows, opt.users, (double)(uv_hrtime() - tu) / 1e9,
         (double)(uv_hrtime() - t0) / 1e9);
}

/* flash --queue: puts the showtime behind a queue that starts --queue-start-delay-ms from
 * now, rounded up to a whole second (start_time has whole seconds). */
static void queue_setup(void)
{
    uint64_t id = showtime_ids[0];
    if (!bprintf(Q.path_info, sizeof(Q.path_info), "/api/showtimes/%" PRIu64 "/queue", id) ||
        !bprintf(Q.path_join, sizeof(Q.path_join), "/api/showtimes/%" PRIu64 "/queue/join", id) ||
        !bprintf(Q.path_me, sizeof(Q.path_me), "/api/showtimes/%" PRIu64 "/queue/me", id))
        die("queue path too long");
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t now_ns = uv_hrtime();
    int64_t now_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    int64_t start_s = (now_ms + (int64_t)opt.queue_delay_ms + 999) / 1000;
    Q.start_ms = start_s * 1000;
    Q.delay_ms = Q.start_ms - now_ms;
    /* The server's clock is this machine's (a remote server's skew would shift every
     * "since the start" figure by as much). */
    Q.start_ns = now_ns + (uint64_t)Q.delay_ms * 1000000;
    char when[32], body[128], text[600];
    format_time(start_s, when);
    if (!bprintf(body, sizeof(body), "{\"rate_per_second\":%u,\"start_time\":\"%s\"}",
                 opt.queue_rate, when))
        die("queue body too long");
    json_t *j = NULL;
    int st = api_call("PUT", Q.path_info, admin_auth, body, &j, text, sizeof(text));
    Q.window_s = (uint32_t)json_id(j, "admission_window_s");
    json_decref(j);
    if (st != 200)
        die("setup: PUT %s answered %d: %s", Q.path_info, st, text);
    note("queue: %u admissions/s from %s (in %.1f s), admission window %u s", opt.queue_rate, when,
         (double)Q.delay_ms / 1e3, Q.window_s);
}

/* ---- Operations and their statistics --------------------------------------------------- */

enum op {
    OP_RESERVE,
    OP_CONFIRM,
    OP_RELEASE,
    OP_CANCEL,
    OP_BROWSE,
    OP_SEATMAP,
    OP_MYBOOKINGS,
    OP_QJOIN,
    OP_QPOLL,
    OP_QLEAVE,
    OP_HTTP,
    OP_N
};
static const char *const op_names[OP_N] = {"reserve",  "confirm",     "release",     "cancel",
                                           "browse",   "seatmap",     "my_bookings", "queue_join",
                                           "queue_me", "queue_leave", "http"};

enum { STATUS_MAX = 600, TR_N = 4 };
static const char *const tr_names[TR_N] = {"timeout", "closed", "protocol", "stopped"};

typedef struct op_stats {
    hist h;                      /* latency of every answer */
    uint64_t count;              /* answers + transport failures */
    uint64_t status[STATUS_MAX]; /* answers by status */
    uint64_t transport[TR_N];    /* failures without an answer */
    uint64_t bad_answer;         /* a 2xx whose body could not be understood */
} op_stats;

static int tr_index(int err)
{
    switch (err) {
    case HC_ETIMEDOUT:
        return 0;
    case HC_ECLOSED:
        return 1;
    case HC_EPROTO:
        return 2;
    default:
        return 3;
    }
}

static bool status_ok(int s)
{
    return (s >= 200 && s < 300) || s == 304;
}

static bool status_outcome(int s)
{
    return s == 409 || s == 410;
}

/* ---- Simulated clients ------------------------------------------------------------------ */

/* A confirmation a client was told of: when its answer was read, and its seats. */
typedef struct sale_ev {
    uint64_t t_ns;
    uint32_t seats;
} sale_ev;

typedef struct worker worker;

typedef struct vuser {
    worker *w;
    hc_conn *conn;
    const user *u;
    uint32_t gidx, uidx;
    uint64_t rng;
    uv_timer_t timer;
    void (*resume)(struct vuser *); /* what the timer runs */
    bool started, active, waiting;
    uint8_t op;        /* the operation in flight */
    uint8_t step;      /* steady: where in the session */
    uint32_t tries;    /* of the current confirm or release */
    uint32_t inflight; /* http: requests in flight */
    /* the hold in hand */
    uint64_t hold_id;
    uint32_t st; /* showtime index */
    uint8_t nseats;
    uint32_t seats[AUDIT_SEATS_MAX];
    char key[64];
    uint64_t seq;
    /* steady */
    uint32_t etag_st; /* 1 + the showtime whose seat map ETag is kept */
    char etag[64];
    uint32_t pick_st; /* 1 + the showtime the picked seats belong to */
    uint8_t npick;
    uint32_t pick[4];
    uint32_t mine[8]; /* claim indexes (in the worker) of this client's confirmed bookings */
    uint8_t nmine;
    uint32_t cancel_k; /* the claim being cancelled */
    /* flash --queue */
    uint8_t qphase; /* enum q_phase */
    uint8_t qtries; /* reserves made in this admission */
    uint8_t jtries; /* failed attempts of the current join or leave */
    uint32_t tk;    /* the current place: index in the worker's tickets */
    char token[80]; /* Admission-Token of the current admission ("" none) */
} vuser;

struct worker {
    uint32_t id;
    uv_thread_t th;
    uv_loop_t loop;
    uv_async_t wake;
    uv_timer_t grace;
    hc_pool *pool;
    vuser *vu;
    uint32_t nvu, first;
    uint32_t active;
    bool stopping, finishing;
    _Atomic int stop_req;
    op_stats *ops;
    audit_claim *claims;
    size_t nclaims, capclaims;
    uint8_t *freebits; /* steady: scratch for a seat map */
    uint32_t *freelist;
    _Atomic uint64_t p_done, p_err, p_503; /* read by the progress line */
    sale_ev *sales; /* flash: every confirmation, for how fast the seats sold */
    size_t nsales, capsales;
    q_ticket *tickets; /* flash --queue: every join */
    size_t ntickets, captickets;
    uint64_t q_refused; /* reserves answered 403 admission-required */
    uint64_t q_lapsed;  /* polls that found an admission lapsed */
    uint64_t t_finish;
    uint32_t handles; /* closing at the end */
    hc_stats stats;
};

static worker *workers;
static bool budgeted;
static _Atomic int64_t budget;
static _Atomic uint32_t workers_finished;
static uv_async_t main_done;

static void (*scenario_next)(vuser *v);
static void (*after_hold)(vuser *v);

static void worker_finish(worker *w);

static void worker_check(worker *w)
{
    if (!w->finishing && w->active == 0 &&
        (w->stopping || (budgeted && atomic_load_explicit(&budget, memory_order_relaxed) <= 0)))
        worker_finish(w);
}

static void v_idle(vuser *v)
{
    if (v->active) {
        v->active = false;
        v->w->active--;
    }
    worker_check(v->w);
}

/* May this client send one more request? (Not when stopping or the budget is spent.) */
static bool v_may_start(vuser *v)
{
    if (v->w->stopping)
        return false;
    if (budgeted && atomic_fetch_sub_explicit(&budget, 1, memory_order_relaxed) <= 0)
        return false;
    return true;
}

static void v_answer(hc_conn *c, void *arg, int err, const hc_response *r);

static void v_send(vuser *v, uint8_t op, const char *method, const char *path, const char *headers,
                   const char *body)
{
    hc_request rq = {.method = method,
                     .path = path,
                     .headers = headers,
                     .body = body,
                     .body_len = body ? strlen(body) : 0};
    v->op = op;
    if (hc_send(v->conn, &rq, v_answer, v) != 0)
        v_idle(v);
}

static void v_timer_cb(uv_timer_t *t)
{
    vuser *v = t->data;
    v->waiting = false;
    v->resume(v);
}

static void claim_in_doubt(vuser *v);
static void confirm_send(vuser *v);

/* Pause, then run fn; when stopping, give up at once (a confirm becomes in doubt). */
static void v_wait(vuser *v, uint64_t ms, void (*fn)(vuser *))
{
    if (v->w->stopping) {
        if (fn == confirm_send)
            claim_in_doubt(v);
        v_idle(v);
        return;
    }
    v->waiting = true;
    v->resume = fn;
    uv_timer_start(&v->timer, v_timer_cb, ms, 0);
}

/* Back-off after a 503 (Retry-After, 1 s without it) or a lost answer, with jitter. */
static uint64_t backoff_ms(vuser *v, const hc_response *r)
{
    uint64_t ms = 200;
    if (r != NULL)
        ms = r->retry_after_s > 0 ? (uint64_t)r->retry_after_s * 1000 : 1000;
    return ms * 8 / 10 + below(&v->rng, (uint32_t)(ms * 4 / 10 + 1));
}

/* ---- Reading the answers we need (the server's compact JSON) ---------------------------- */

static bool scan_u64(const char *body, const char *key, uint64_t *out)
{
    const char *p = strstr(body, key);
    if (p == NULL)
        return false;
    p += strlen(key);
    if (*p < '0' || *p > '9')
        return false;
    uint64_t x = 0;
    while (*p >= '0' && *p <= '9')
        x = x * 10 + (uint64_t)(*p++ - '0');
    *out = x;
    return true;
}

/* "seats":["A1","A2"] -> seat indexes; -1 when absent or malformed. */
static int scan_seats(const char *body, uint32_t *out, int max)
{
    const char *p = strstr(body, "\"seats\":[");
    if (p == NULL)
        return -1;
    p += 9;
    int n = 0;
    while (*p == '"') {
        const char *e = strchr(p + 1, '"');
        if (e == NULL || n == max)
            return -1;
        out[n++] = layout_find(&L, p + 1, (size_t)(e - p - 1));
        p = e + 1;
        if (*p == ',')
            p++;
    }
    return *p == ']' ? n : -1;
}

/* ---- The audit's memory: what clients were told ------------------------------------------ */

static size_t add_claim(worker *w, uint8_t kind, uint64_t booking, const vuser *v,
                        const uint32_t *seats, int nseats)
{
    if (w->nclaims == w->capclaims) {
        size_t cap = w->capclaims ? w->capclaims * 2 : 1024;
        audit_claim *c = realloc(w->claims, cap * sizeof(*c));
        if (c == NULL)
            die("out of memory");
        w->claims = c;
        w->capclaims = cap;
    }
    audit_claim *c = &w->claims[w->nclaims];
    memset(c, 0, sizeof(*c));
    c->kind = kind;
    c->booking_id = booking;
    c->hold_id = v->hold_id;
    c->user = v->uidx;
    c->showtime = v->st;
    c->nseats = (uint8_t)nseats;
    memcpy(c->seats, seats, (size_t)nseats * sizeof(uint32_t));
    return w->nclaims++;
}

static void claim_in_doubt(vuser *v)
{
    add_claim(v->w, AC_CONFIRM_UNKNOWN, 0, v, v->seats, v->nseats);
}

/* ---- Requests shared by the scenarios ------------------------------------------------------ */

/* A reserve's headers: the user's token, and with --queue the admission token. */
static const char *reserve_headers(const vuser *v, char *buf, size_t len)
{
    if (!opt.queue)
        return v->u->auth;
    if (!bprintf(buf, len, "%sAdmission-Token: %s\r\n", v->u->auth, v->token))
        die("reserve headers too long");
    return buf;
}

static void reserve_listed(vuser *v, const uint32_t *seats, int n)
{
    char body[512];
    int off = 0;
    int w = snprintf(body, sizeof(body), "{\"showtime_id\":%" PRIu64 ",\"seats\":[",
                     showtime_ids[v->st]);
    if (w < 0 || (size_t)w >= sizeof(body))
        die("reserve body too long");
    off = w;
    for (int i = 0; i < n; i++) {
        w = snprintf(body + off, sizeof(body) - (size_t)off, "%s\"%s\"", i ? "," : "",
                     L.labels[seats[i]]);
        if (w < 0 || (size_t)w >= sizeof(body) - (size_t)off)
            die("reserve body too long");
        off += w;
    }
    if (!bprintf(body + off, sizeof(body) - (size_t)off, "]}"))
        die("reserve body too long");
    char hdr[1400];
    v_send(v, OP_RESERVE, "POST", "/api/bookings/reserve", reserve_headers(v, hdr, sizeof(hdr)),
           body);
}

static void reserve_best(vuser *v, uint32_t count, const char *category)
{
    char body[256];
    if (!bprintf(body, sizeof(body),
                 "{\"showtime_id\":%" PRIu64 ",\"count\":%u,\"category\":\"%s\"}",
                 showtime_ids[v->st], count, category))
        die("reserve body too long");
    char hdr[1400];
    v_send(v, OP_RESERVE, "POST", "/api/bookings/reserve", reserve_headers(v, hdr, sizeof(hdr)),
           body);
}

static void on_reserve(vuser *v, int err, const hc_response *r)
{
    if (err != 0) { /* the hold, if placed, expires on its own */
        scenario_next(v);
        return;
    }
    if (r->status == 201) {
        uint64_t id;
        int n = scan_seats(r->body, v->seats, AUDIT_SEATS_MAX);
        if (!scan_u64(r->body, "\"hold_id\":", &id) || n <= 0) {
            v->w->ops[OP_RESERVE].bad_answer++;
            scenario_next(v);
            return;
        }
        v->hold_id = id;
        v->nseats = (uint8_t)n;
        if (opt.queue)
            v->qphase = QP_LEAVE; /* this admission bought its hold: a new buyer comes next */
        after_hold(v);
    } else if (r->status == 503) {
        v_wait(v, backoff_ms(v, r), scenario_next);
    } else if (status_outcome(r->status)) {
        scenario_next(v);
    } else {
        if (opt.queue && r->status == 403) {
            /* The admission was refused: a failure of the run (an error, and counted);
             * this client starts over in the queue. */
            if (strstr(r->body, "admission-required") != NULL)
                v->w->q_refused++;
            v->qphase = QP_LEAVE;
        }
        v_wait(v, 100, scenario_next); /* unexpected: do not spin on it */
    }
}

static const char *const pay_methods[3] = {"upi", "card", "wallet"};

static void confirm_send(vuser *v)
{
    if (!v_may_start(v)) {
        if (v->tries > 0)
            claim_in_doubt(v); /* an earlier attempt's outcome is unknown */
        v_idle(v);
        return;
    }
    char hdr[1400], body[256];
    if (!bprintf(hdr, sizeof(hdr), "%sIdempotency-Key: %s\r\n", v->u->auth, v->key) ||
        !bprintf(body, sizeof(body), "{\"hold_id\":%" PRIu64 ",\"payment\":{\"method\":\"%s\"}}",
                 v->hold_id, pay_methods[v->seq % 3]))
        die("confirm request too long");
    v_send(v, OP_CONFIRM, "POST", "/api/bookings/confirm", hdr, body);
}

static void confirm_start(vuser *v)
{
    v->tries = 0;
    v->seq++;
    if (!bprintf(v->key, sizeof(v->key), "ub%s-%u-%" PRIu64, run_id, v->gidx, v->seq))
        die("idempotency key too long");
    confirm_send(v);
}

static void on_confirm(vuser *v, int err, const hc_response *r)
{
    worker *w = v->w;
    bool in_flight = r != NULL && r->status == 409 && strstr(r->body, "idempotency-in-flight");
    if (err != 0 || r->status >= 500 || in_flight) {
        /* Not known to have failed: retry with the same key (the server replays the
         * booking if the first attempt went through). */
        if (++v->tries < 6) {
            v_wait(v, backoff_ms(v, r), confirm_send);
        } else {
            claim_in_doubt(v);
            scenario_next(v);
        }
        return;
    }
    if (r->status == 201) {
        uint64_t id;
        uint32_t seats[AUDIT_SEATS_MAX];
        int n = scan_seats(r->body, seats, AUDIT_SEATS_MAX);
        if (!scan_u64(r->body, "\"booking_id\":", &id) || n <= 0) {
            w->ops[OP_CONFIRM].bad_answer++;
            claim_in_doubt(v);
        } else {
            size_t k = add_claim(w, AC_CONFIRMED, id, v, seats, n);
            if (opt.sc == SC_FLASH) {
                if (w->nsales == w->capsales) {
                    size_t cap = w->capsales ? w->capsales * 2 : 1024;
                    sale_ev *e = realloc(w->sales, cap * sizeof(*e));
                    if (e == NULL)
                        die("out of memory");
                    w->sales = e;
                    w->capsales = cap;
                }
                w->sales[w->nsales++] = (sale_ev){r->sent_ns + r->latency_ns, (uint32_t)n};
            }
            if (opt.sc == SC_STEADY) {
                if (v->nmine == 8) { /* forget the oldest */
                    memmove(v->mine, v->mine + 1, 7 * sizeof(v->mine[0]));
                    v->nmine--;
                }
                v->mine[v->nmine++] = (uint32_t)k;
            }
        }
    }
    /* 409 sales-closed, 410 hold-expired/ended, 4xx: not bought */
    scenario_next(v);
}

static void release_send(vuser *v)
{
    if (!v_may_start(v)) {
        v_idle(v);
        return;
    }
    char path[64];
    if (!bprintf(path, sizeof(path), "/api/holds/%" PRIu64, v->hold_id))
        die("path too long");
    v_send(v, OP_RELEASE, "DELETE", path, v->u->auth, NULL);
}

static void release_start(vuser *v)
{
    v->tries = 0;
    release_send(v);
}

static void on_release(vuser *v, int err, const hc_response *r)
{
    if ((err != 0 || r->status == 503) && ++v->tries < 4) {
        v_wait(v, backoff_ms(v, r), release_send);
        return;
    }
    scenario_next(v); /* 204; 410 already ended; else the hold expires */
}

/* ---- flash ---------------------------------------------------------------------------- */

/* k adjacent sellable seats in the hot region, or false. */
static bool pick_hot(vuser *v, uint32_t k, uint32_t *out)
{
    for (int attempt = 0; attempt < 4; attempt++) {
        uint32_t r = L.hot_row_lo + below(&v->rng, L.hot_row_hi - L.hot_row_lo);
        uint32_t rowlen = L.row_start[r + 1] - L.row_start[r];
        if (rowlen < k)
            continue;
        uint32_t lo = L.hot_col_lo < rowlen ? L.hot_col_lo : 0;
        uint32_t hi = L.hot_col_hi < rowlen ? L.hot_col_hi : rowlen;
        uint32_t c = lo + below(&v->rng, hi - lo);
        if (c + k > rowlen)
            c = rowlen - k;
        bool ok = true;
        for (uint32_t i = 0; i < k && ok; i++) {
            out[i] = L.row_start[r] + c + i;
            ok = !L.blocked[out[i]];
        }
        if (ok)
            return true;
    }
    return false;
}

static const char *random_category(vuser *v)
{
    double u = unit(&v->rng);
    return layout_cat_names[u < 0.2 ? 0 : u < 0.6 ? 1 : 2];
}

static void flash_next(vuser *v)
{
    if (!v_may_start(v)) {
        v_idle(v);
        return;
    }
    v->st = 0;
    uint32_t k = 1 + below(&v->rng, 4);
    uint32_t seats[4];
    if ((splitmix(&v->rng) & 1) && pick_hot(v, k, seats))
        reserve_listed(v, seats, (int)k);
    else
        reserve_best(v, k, random_category(v));
}

static void flash_after_hold(vuser *v)
{
    if (unit(&v->rng) < opt.confirm_ratio)
        confirm_start(v);
    else if (unit(&v->rng) < opt.abandon_ratio)
        scenario_next(v); /* let it expire */
    else
        release_start(v);
}

/* ---- flash --queue ------------------------------------------------------------------------ */

static enum q_state q_scan_state(const char *body)
{
    static const char *const names[] = {"none", "prequeue", "waiting", "admitted", "lapsed"};
    const char *p = strstr(body, "\"state\":\"");
    if (p == NULL)
        return QS_UNKNOWN;
    p += 9;
    for (int i = 0; i < 5; i++) {
        size_t n = strlen(names[i]);
        if (strncmp(p, names[i], n) == 0 && p[n] == '"')
            return (enum q_state)i;
    }
    return QS_UNKNOWN;
}

/* "key":"value" -> value (no escapes expected); false when absent or too long. */
static bool scan_str(const char *body, const char *key, char *out, size_t len)
{
    const char *p = strstr(body, key);
    if (p == NULL)
        return false;
    p += strlen(key);
    const char *e = strchr(p, '"');
    if (e == NULL || (size_t)(e - p) >= len || e == p)
        return false;
    memcpy(out, p, (size_t)(e - p));
    out[e - p] = '\0';
    return true;
}

/* "2026-11-21T13:02:35.000Z" (the server's times; the fraction is optional) -> ms since
 * the epoch. */
static bool parse_utc_ms(const char *s, int64_t *ms)
{
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    int n = 0;
    if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
               &tm.tm_min, &tm.tm_sec, &n) != 6 ||
        n != 19 || tm.tm_mon < 1 || tm.tm_mon > 12)
        return false;
    const char *p = s + n;
    int64_t frac = 0;
    if (*p == '.') {
        int64_t scale = 1000;
        for (p++; *p >= '0' && *p <= '9'; p++)
            if (scale > 1) {
                scale /= 10;
                frac += (*p - '0') * scale;
            }
    }
    if (*p != 'Z')
        return false;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    time_t t = timegm(&tm);
    if (t == (time_t)-1)
        return false;
    *ms = (int64_t)t * 1000 + frac;
    return true;
}

static uint32_t q_new_ticket(worker *w)
{
    if (w->ntickets == w->captickets) {
        size_t cap = w->captickets ? w->captickets * 2 : 256;
        q_ticket *t = realloc(w->tickets, cap * sizeof(*t));
        if (t == NULL)
            die("out of memory");
        w->tickets = t;
        w->captickets = cap;
    }
    memset(&w->tickets[w->ntickets], 0, sizeof(q_ticket));
    return (uint32_t)w->ntickets++;
}

/* When to ask again: half the expected wait (position / rate while waiting, the server's
 * estimated_wait_s in the prequeue), bounded by the poll flags, then +-20 % jitter so that
 * clients that joined together do not poll together. */
static uint64_t q_poll_interval_ms(vuser *v, const char *body, enum q_state st)
{
    uint64_t pos, rate, est, wait_ms = 2 * (uint64_t)opt.queue_poll_max_ms;
    if (st == QS_WAITING && scan_u64(body, "\"position\":", &pos) &&
        scan_u64(body, "\"rate_per_second\":", &rate) && rate > 0)
        wait_ms = pos * 1000 / rate;
    else if (scan_u64(body, "\"estimated_wait_s\":", &est))
        wait_ms = est * 1000;
    uint64_t base = wait_ms / 2;
    if (base < opt.queue_poll_min_ms)
        base = opt.queue_poll_min_ms;
    if (base > opt.queue_poll_max_ms)
        base = opt.queue_poll_max_ms;
    return base - base / 5 + below(&v->rng, (uint32_t)(2 * base / 5 + 1));
}

static void q_join_send(vuser *v);
static void q_poll_send(vuser *v);

/* What a join or a poll answered (200/201): wait, buy or start over. */
static void q_on_state(vuser *v, const hc_response *r, enum q_state st)
{
    worker *w = v->w;
    q_ticket *t = &w->tickets[v->tk];
    switch (st) {
    case QS_PREQUEUE:
    case QS_WAITING:
        if (st == QS_WAITING)
            t->last_wait_sent = r->sent_ns;
        v->qphase = QP_WAIT;
        v_wait(v, q_poll_interval_ms(v, r->body, st), q_poll_send);
        return;
    case QS_ADMITTED:
        if (!scan_str(r->body, "\"admission_token\":\"", v->token, sizeof(v->token))) {
            w->ops[v->op].bad_answer++;
            v->qphase = QP_WAIT;
            v_wait(v, 100, q_poll_send);
            return;
        }
        if (t->admitted_done == 0) {
            char at[40];
            t->admitted_done = r->sent_ns + r->latency_ns;
            if (!scan_str(r->body, "\"admitted_at\":\"", at, sizeof(at)) ||
                !parse_utc_ms(at, &t->admitted_ms))
                t->admitted_ms = 0;
        }
        v->qphase = QP_BUY;
        v->qtries = 0;
        scenario_next(v);
        return;
    case QS_LAPSED: /* the admission window passed unused: join again */
        w->q_lapsed++;
        v->qphase = QP_LEAVE;
        scenario_next(v);
        return;
    default: /* "none" in a 200, or no state: not an answer we understand */
        w->ops[v->op].bad_answer++;
        v->qphase = QP_LEAVE;
        v_wait(v, 100, scenario_next);
        return;
    }
}

static void q_join_send(vuser *v)
{
    if (!v_may_start(v)) {
        v_idle(v);
        return;
    }
    v->qphase = QP_JOIN;
    v->token[0] = '\0';
    if (v->jtries == 0)
        v->tk = q_new_ticket(v->w);
    v_send(v, OP_QJOIN, "POST", Q.path_join, v->u->auth, NULL);
}

static void on_qjoin(vuser *v, int err, const hc_response *r)
{
    if (err != 0 || r->status == 503) {
        v->jtries++; /* the place may have been taken: a retry answers 200 with it */
        v_wait(v, backoff_ms(v, r), q_join_send);
        return;
    }
    if (r->status != 200 && r->status != 201) { /* an error (counted): try again, slowly */
        v->jtries++;
        v_wait(v, 1000, q_join_send);
        return;
    }
    q_ticket *t = &v->w->tickets[v->tk];
    enum q_state st = q_scan_state(r->body);
    t->join_sent = r->sent_ns;
    t->join_done = r->sent_ns + r->latency_ns;
    t->joined_as = (uint8_t)st;
    t->fresh = v->jtries == 0 && r->status == 201;
    v->jtries = 0;
    q_on_state(v, r, st);
}

static void q_poll_send(vuser *v)
{
    if (!v_may_start(v)) {
        v_idle(v);
        return;
    }
    v->w->tickets[v->tk].polls++;
    v_send(v, OP_QPOLL, "GET", Q.path_me, v->u->auth, NULL);
}

static void on_qpoll(vuser *v, int err, const hc_response *r)
{
    if (err != 0 || r->status == 503) {
        v_wait(v, backoff_ms(v, r), q_poll_send);
    } else if (r->status == 200) {
        q_on_state(v, r, q_scan_state(r->body));
    } else if (r->status == 404) { /* the place is gone (an error, counted): join again */
        v->qphase = QP_JOIN;
        v_wait(v, 100, q_join_send);
    } else {
        v_wait(v, 100, q_poll_send);
    }
}

static void q_leave_send(vuser *v)
{
    if (!v_may_start(v)) {
        v_idle(v);
        return;
    }
    v->qphase = QP_LEAVE;
    v->token[0] = '\0';
    v_send(v, OP_QLEAVE, "DELETE", Q.path_me, v->u->auth, NULL);
}

static void on_qleave(vuser *v, int err, const hc_response *r)
{
    if ((err != 0 || r->status == 503) && ++v->jtries < 4) {
        v_wait(v, backoff_ms(v, r), q_leave_send);
        return;
    }
    /* 204, or 404 (no place any more): join again at the back, a new buyer. After failed
     * leaves the join finds the old place (200) and the ticket is not fresh. */
    v->jtries = 0;
    q_join_send(v);
}

/* The loop of a client with --queue: join, wait, buy (up to --queue-tries reserves), leave. */
static void queue_next(vuser *v)
{
    switch (v->qphase) {
    case QP_JOIN:
        q_join_send(v);
        return;
    case QP_WAIT:
        q_poll_send(v);
        return;
    case QP_BUY:
        if (v->qtries < opt.queue_tries) {
            v->qtries++;
            flash_next(v);
            return;
        }
        q_leave_send(v); /* nothing held in --queue-tries reserves: give the admission up */
        return;
    default:
        q_leave_send(v);
        return;
    }
}

/* ---- reserve ---------------------------------------------------------------------------- */

static void reserve_next(vuser *v)
{
    if (!v_may_start(v)) {
        v_idle(v);
        return;
    }
    /* Blocks of 4 seats over all showtimes; connection g owns blocks g, g + C, g + 2C, ... */
    uint64_t quads = L.nseats / 4, slots = quads * nshowtimes, C = opt.connections;
    uint64_t j;
    if (v->gidx < slots) {
        uint64_t owned = (slots - 1 - v->gidx) / C + 1;
        j = v->gidx + (owned > 1 ? splitmix(&v->rng) % owned : 0) * C;
    } else {
        j = v->gidx % slots;
    }
    v->st = (uint32_t)(j / quads);
    uint32_t q = (uint32_t)(j % quads), seats[4];
    for (uint32_t i = 0; i < 4; i++)
        seats[i] = 4 * q + i;
    reserve_listed(v, seats, 4);
}

/* ---- steady ---------------------------------------------------------------------------- */

enum { P_RESERVE_PCT = 50, P_MYBOOKINGS_PCT = 30, P_CANCEL_PCT = 10, P_REPOLL_PCT = 30 };

static void steady_browse(vuser *v)
{
    char path[512];
    int off = snprintf(path, sizeof(path), "/api/showtimes?limit=20");
#define ADD(...)                                                                \
    do {                                                                        \
        int n_ = snprintf(path + off, sizeof(path) - (size_t)off, __VA_ARGS__); \
        if (n_ < 0 || (size_t)n_ >= sizeof(path) - (size_t)off)                 \
            die("browse path too long");                                        \
        off += n_;                                                              \
    } while (0)
    double u = unit(&v->rng);
    if (u >= 0.5)
        ADD("&sort=%s", u < 0.8 ? "price" : "popularity");
    u = unit(&v->rng);
    if (u < 0.5)
        ADD("&city=%s", cities[below(&v->rng, 2)]);
    else if (u < 0.6)
        ADD("&city=Mumbai");
    if (unit(&v->rng) < 0.3)
        ADD("&genre=%s", genres[below(&v->rng, 4)]);
    if (unit(&v->rng) < 0.2) {
        char day[32];
        format_time(first_start_s + (int64_t)below(&v->rng, 7) * 86400, day);
        day[10] = '\0';
        ADD("&date=%s", day);
    }
    if (unit(&v->rng) < 0.5)
        ADD("&available=true");
    if (unit(&v->rng) < 0.1)
        ADD("&max_price=30000");
    if (unit(&v->rng) >= 0.7)
        ADD("&page=%u", 2 + below(&v->rng, 4));
#undef ADD
    v_send(v, OP_BROWSE, "GET", path, NULL, NULL);
}

static void steady_next(vuser *v)
{
    char path[128], hdr[1400];
    for (;;) {
        switch (v->step) {
        case 0: /* a new session: browse, then one showtime (popular ones more often) */
            if (!v_may_start(v)) {
                v_idle(v);
                return;
            }
            v->step = 1;
            if (v->etag_st == 0 || below(&v->rng, 100) >= P_REPOLL_PCT) {
                double u = unit(&v->rng);
                v->st = (uint32_t)(u * u * nshowtimes);
            }
            steady_browse(v);
            return;
        case 1: /* its seat map, conditional when we saw it before */
            if (!v_may_start(v)) {
                v_idle(v);
                return;
            }
            v->step = 2;
            if (!bprintf(path, sizeof(path), "/api/seats/%" PRIu64, showtime_ids[v->st]))
                die("path too long");
            if (v->etag_st == v->st + 1) {
                if (!bprintf(hdr, sizeof(hdr), "If-None-Match: %s\r\n", v->etag))
                    die("header too long");
                v_send(v, OP_SEATMAP, "GET", path, hdr, NULL);
            } else {
                v_send(v, OP_SEATMAP, "GET", path, NULL, NULL);
            }
            return;
        case 2: /* maybe buy */
            v->step = 3;
            if (below(&v->rng, 100) < P_RESERVE_PCT) {
                if (!v_may_start(v)) {
                    v_idle(v);
                    return;
                }
                if (v->pick_st == v->st + 1 && v->npick > 0)
                    reserve_listed(v, v->pick, v->npick);
                else
                    reserve_best(v, 1 + below(&v->rng, 4), random_category(v));
                return;
            }
            break;
        case 3:
            v->step = 4;
            if (below(&v->rng, 100) < P_MYBOOKINGS_PCT) {
                if (!v_may_start(v)) {
                    v_idle(v);
                    return;
                }
                v_send(v, OP_MYBOOKINGS, "GET", "/api/bookings/my-bookings?limit=10", v->u->auth,
                       NULL);
                return;
            }
            break;
        case 4:
            v->step = 0;
            if (v->nmine > 0 && below(&v->rng, 100) < P_CANCEL_PCT) {
                if (!v_may_start(v)) {
                    v_idle(v);
                    return;
                }
                uint32_t i = below(&v->rng, v->nmine);
                uint32_t k = v->mine[i];
                v->mine[i] = v->mine[--v->nmine];
                v->cancel_k = k;
                if (!bprintf(path, sizeof(path), "/api/bookings/%" PRIu64 "/cancel",
                             v->w->claims[k].booking_id))
                    die("path too long");
                v_send(v, OP_CANCEL, "POST", path, v->u->auth, NULL);
                return;
            }
            break;
        }
    }
}

static void steady_after_hold(vuser *v)
{
    if (unit(&v->rng) < opt.confirm_ratio)
        confirm_start(v);
    else
        release_start(v);
}

/* Free seats from a seat map answer; picks 1-4 adjacent ones in a row for the reserve. */
static void pick_from_map(vuser *v, const char *body)
{
    worker *w = v->w;
    memset(w->freebits, 0, L.nseats);
    uint32_t nfree = 0;
    const char *p = body;
    while ((p = strstr(p, "\"label\":\"")) != NULL) {
        p += 9;
        const char *e = strchr(p, '"');
        if (e == NULL)
            break;
        uint32_t idx = layout_find(&L, p, (size_t)(e - p));
        const char *s = strstr(e, "\"state\":\"");
        if (s == NULL)
            break;
        if (idx != UINT32_MAX && strncmp(s + 9, "free\"", 5) == 0 && !w->freebits[idx]) {
            w->freebits[idx] = 1;
            w->freelist[nfree++] = idx;
        }
        p = s + 9;
    }
    v->pick_st = v->st + 1;
    v->npick = 0;
    if (nfree == 0)
        return;
    uint32_t first = w->freelist[below(&v->rng, nfree)], want = 1 + below(&v->rng, 4);
    uint32_t row = L.row_of[first];
    for (uint32_t s = first; s < L.row_start[row + 1] && v->npick < want && w->freebits[s]; s++)
        v->pick[v->npick++] = s;
}

static void on_seatmap(vuser *v, const hc_response *r)
{
    if (r->status == 200) {
        pick_from_map(v, r->body);
        if (r->etag[0] != '\0' && bprintf(v->etag, sizeof(v->etag), "%s", r->etag))
            v->etag_st = v->st + 1;
    }
    /* 304: the map did not change; keep the seats picked from it */
}

static void on_cancel(vuser *v, int err, const hc_response *r)
{
    audit_claim *c = &v->w->claims[v->cancel_k];
    if (err != 0 || r->status >= 500)
        c->kind = AC_CANCEL_UNKNOWN;
    else if (r->status == 200)
        c->kind = AC_CANCELLED;
    /* 409 (sales closed, already cancelled): it stays confirmed as far as we know */
    scenario_next(v);
}

/* ---- http ------------------------------------------------------------------------------ */

static void http_next(vuser *v)
{
    while (v->inflight < opt.pipeline && v_may_start(v)) {
        v->inflight++;
        hc_request rq = {.method = "GET", .path = opt.path};
        v->op = OP_HTTP;
        if (hc_send(v->conn, &rq, v_answer, v) != 0) {
            v->inflight--;
            break;
        }
    }
    if (v->inflight == 0)
        v_idle(v);
}

/* ---- Dispatch ---------------------------------------------------------------------------- */

static void v_answer(hc_conn *c, void *arg, int err, const hc_response *r)
{
    (void)c;
    vuser *v = arg;
    worker *w = v->w;
    op_stats *s = &w->ops[v->op];
    s->count++;
    atomic_fetch_add_explicit(&w->p_done, 1, memory_order_relaxed);
    if (err != 0) {
        s->transport[tr_index(err)]++;
        atomic_fetch_add_explicit(&w->p_err, 1, memory_order_relaxed);
    } else {
        hist_record(&s->h, r->latency_ns);
        s->status[r->status > 0 && r->status < STATUS_MAX ? r->status : 0]++;
        if (!status_ok(r->status) && !status_outcome(r->status)) {
            atomic_fetch_add_explicit(&w->p_err, 1, memory_order_relaxed);
            if (r->status == 503)
                atomic_fetch_add_explicit(&w->p_503, 1, memory_order_relaxed);
        }
    }
    switch (v->op) {
    case OP_RESERVE:
        on_reserve(v, err, r);
        break;
    case OP_CONFIRM:
        on_confirm(v, err, r);
        break;
    case OP_RELEASE:
        on_release(v, err, r);
        break;
    case OP_CANCEL:
        on_cancel(v, err, r);
        break;
    case OP_SEATMAP:
        if (err == 0)
            on_seatmap(v, r);
        scenario_next(v);
        break;
    case OP_QJOIN:
        on_qjoin(v, err, r);
        break;
    case OP_QPOLL:
        on_qpoll(v, err, r);
        break;
    case OP_QLEAVE:
        on_qleave(v, err, r);
        break;
    case OP_HTTP:
        v->inflight--;
        if (err == 0 && r->status == 503 && !w->stopping)
            v_wait(v, backoff_ms(v, r), http_next);
        else
            http_next(v);
        break;
    default: /* browse, my-bookings */
        if (err == 0 && r->status == 503)
            v_wait(v, backoff_ms(v, r), scenario_next);
        else
            scenario_next(v);
        break;
    }
}

static void v_on_open(hc_conn *c, void *data)
{
    (void)data;
    vuser *v = hc_conn_data(c);
    if (v->started)
        return; /* a reconnect: queued requests go out by themselves */
    v->started = true;
    v->active = true;
    v->w->active++;
    scenario_next(v);
}

/* ---- Worker threads ----------------------------------------------------------------------- */

static void worker_handle_closed(uv_handle_t *h)
{
    worker *w = h->loop->data;
    w->handles--;
}

static void worker_pool_stopped(hc_pool *p, void *arg)
{
    (void)p;
    worker *w = arg;
    w->handles = w->nvu + 2;
    for (uint32_t i = 0; i < w->nvu; i++)
        uv_close((uv_handle_t *)&w->vu[i].timer, worker_handle_closed);
    uv_close((uv_handle_t *)&w->wake, worker_handle_closed);
    uv_close((uv_handle_t *)&w->grace, worker_handle_closed);
}

static void worker_finish(worker *w)
{
    if (w->finishing)
        return;
    w->finishing = true;
    w->t_finish = uv_hrtime();
    hc_pool_stop(w->pool, worker_pool_stopped, w);
}

static void worker_grace(uv_timer_t *t)
{
    worker_finish(t->data); /* answers still missing fail as "stopped" */
}

static void worker_begin_stop(worker *w)
{
    if (w->stopping)
        return;
    w->stopping = true;
    for (uint32_t i = 0; i < w->nvu; i++) {
        vuser *v = &w->vu[i];
        if (v->waiting) {
            uv_timer_stop(&v->timer);
            v->waiting = false;
            if (v->resume == confirm_send)
                claim_in_doubt(v);
            if (v->inflight == 0)
                v_idle(v);
        }
    }
    /* In-flight requests may finish; past the grace period they are abandoned. */
    uint64_t grace = opt.timeout_ms < 5000 ? opt.timeout_ms + 1000 : 5000;
    uv_timer_start(&w->grace, worker_grace, grace, 0);
    worker_check(w);
}

static void worker_wake(uv_async_t *a)
{
    worker *w = a->data;
    if (atomic_load(&w->stop_req))
        worker_begin_stop(w);
}

static void worker_main(void *arg)
{
    worker *w = arg;
    hc_pool_start(w->pool);
    uv_run(&w->loop, UV_RUN_DEFAULT);
    hc_pool_stats(w->pool, &w->stats);
    atomic_fetch_add(&workers_finished, 1);
    uv_async_send(&main_done);
}

/* Everything a worker needs, made on the main thread before its loop runs. */
static void worker_init(worker *w, uint32_t id, uint32_t first, uint32_t n)
{
    memset(w, 0, sizeof(*w));
    w->id = id;
    w->first = first;
    w->nvu = n;
    if (uv_loop_init(&w->loop) != 0)
        die("cannot create an event loop");
    w->loop.data = w;
    uv_async_init(&w->loop, &w->wake, worker_wake);
    w->wake.data = w;
    uv_timer_init(&w->loop, &w->grace);
    w->grace.data = w;
    w->ops = calloc(OP_N, sizeof(op_stats));
    w->vu = calloc(n, sizeof(vuser));
    if (w->ops == NULL || w->vu == NULL)
        die("out of memory");
    for (int o = 0; o < OP_N; o++)
        hist_init(&w->ops[o].h);
    if (opt.sc == SC_STEADY) {
        w->freebits = calloc(L.nseats, 1);
        w->freelist = calloc(L.nseats, sizeof(uint32_t));
        if (w->freebits == NULL || w->freelist == NULL)
            die("out of memory");
    }
    hc_config cfg;
    hc_config_default(&cfg);
    cfg.target = &opt.target;
    cfg.connections = n;
    cfg.pipeline = opt.pipeline;
    cfg.ramp_batch = opt.ramp / opt.threads ? opt.ramp / opt.threads : 1;
    cfg.ramp_interval_ms = 10;
    cfg.request_timeout_ms = opt.timeout_ms;
    cfg.first_index = first;
    cfg.on_open = v_on_open;
    cfg.data = w;
    if (hc_pool_create(&w->loop, &cfg, &w->pool) != 0)
        die("out of memory");
    for (uint32_t i = 0; i < n; i++) {
        vuser *v = &w->vu[i];
        v->w = w;
        v->conn = hc_pool_conn(w->pool, i);
        hc_conn_set_data(v->conn, v);
        v->gidx = first + i;
        v->uidx = opt.sc == SC_HTTP ? 0 : v->gidx % opt.users;
        v->u = opt.sc == SC_HTTP ? NULL : &users[v->uidx];
        v->rng = opt.seed * UINT64_C(0x100000001b3) + v->gidx;
        splitmix(&v->rng);
        uv_timer_init(&w->loop, &v->timer);
        v->timer.data = v;
    }
}

static void worker_free(worker *w)
{
    hc_pool_destroy(w->pool);
    uv_loop_close(&w->loop);
    free(w->ops);
    free(w->vu);
    free(w->claims);
    free(w->freebits);
    free(w->freelist);
    free(w->tickets);
    free(w->sales);
}

/* flash --queue: one connection on the main loop samples GET /api/showtimes/:id/queue every
 * 250 ms (the server's own counts), for the admission rate. */
typedef struct q_sample {
    uint64_t t_ns; /* the middle of the request */
    uint32_t waiting, admitted;
    bool started;
} q_sample;

enum { MONITOR_MS = 250 };
static q_sample *qsamples;
static size_t nqsamples, capqsamples;
static hc_pool *mon_pool;
static uv_timer_t mon_timer;
static bool mon_busy;
static uint64_t mon_failures;

static void mon_answer(hc_conn *c, void *arg, int err, const hc_response *r)
{
    (void)c;
    (void)arg;
    mon_busy = false;
    uint64_t waiting, admitted;
    if (err == HC_ESTOPPED)
        return; /* the run is over */
    if (err != 0 || r->status != 200 || !scan_u64(r->body, "\"waiting\":", &waiting) ||
        !scan_u64(r->body, "\"admitted\":", &admitted)) {
        mon_failures++;
        return;
    }
    if (nqsamples == capqsamples) {
        size_t cap = capqsamples ? capqsamples * 2 : 256;
        q_sample *n = realloc(qsamples, cap * sizeof(*n));
        if (n == NULL)
            die("out of memory");
        qsamples = n;
        capqsamples = cap;
    }
    qsamples[nqsamples++] = (q_sample){.t_ns = r->sent_ns + r->latency_ns / 2,
                                       .waiting = (uint32_t)waiting,
                                       .admitted = (uint32_t)admitted,
                                       .started = strstr(r->body, "\"started\":true") != NULL};
}

static void mon_tick(uv_timer_t *t)
{
    (void)t;
    if (mon_busy)
        return;
    hc_request rq = {.method = "GET", .path = Q.path_info};
    if (hc_send(hc_pool_conn(mon_pool, 0), &rq, mon_answer, NULL) == 0)
        mon_busy = true;
}

static void mon_start(void)
{
    hc_config cfg;
    hc_config_default(&cfg);
    cfg.target = &opt.target;
    cfg.connections = 1;
    cfg.request_timeout_ms = opt.timeout_ms;
    if (hc_pool_create(&main_loop, &cfg, &mon_pool) != 0)
        die("out of memory");
    hc_pool_start(mon_pool);
    uv_timer_init(&main_loop, &mon_timer);
    uv_timer_start(&mon_timer, mon_tick, 0, MONITOR_MS);
}

/* ---- The run, seen from the main thread ------------------------------------------------- */

static uv_timer_t progress_timer, duration_timer;
static uv_signal_t sigint_handle;
static uint64_t t_start, t_stop;
static bool stop_requested, run_over;
static uint64_t last_done;
static double last_progress_s;

static void stop_all(void)
{
    if (stop_requested)
        return;
    stop_requested = true;
    t_stop = uv_hrtime();
    for (uint32_t i = 0; i < opt.threads; i++) {
        atomic_store(&workers[i].stop_req, 1);
        uv_async_send(&workers[i].wake);
    }
}

static void on_duration(uv_timer_t *t)
{
    (void)t;
    stop_all();
}

static void on_sigint(uv_signal_t *s, int signum)
{
    (void)s;
    (void)signum;
    if (!opt.quiet)
        fprintf(stderr, "usher-bench: interrupted: stopping, then the audit\n");
    stop_all();
}

static void on_progress(uv_timer_t *t)
{
    (void)t;
    uint64_t done = 0, errs = 0, e503 = 0;
    hc_stats st = {0};
    for (uint32_t i = 0; i < opt.threads; i++) {
        done += atomic_load_explicit(&workers[i].p_done, memory_order_relaxed);
        errs += atomic_load_explicit(&workers[i].p_err, memory_order_relaxed);
        e503 += atomic_load_explicit(&workers[i].p_503, memory_order_relaxed);
        hc_pool_stats(workers[i].pool, &st);
    }
    double now = (double)(uv_hrtime() - t_start) / 1e9;
    double rate = now > last_progress_s ? (double)(done - last_done) / (now - last_progress_s) : 0;
    last_done = done;
    last_progress_s = now;
    char qline[96] = "";
    if (opt.queue && nqsamples > 0)
        bprintf(qline, sizeof(qline), "  queue: %u admitted, %u waiting%s",
                qsamples[nqsamples - 1].admitted, qsamples[nqsamples - 1].waiting,
                qsamples[nqsamples - 1].started ? "" : " (not started)");
    if (!opt.quiet)
        fprintf(stderr,
                "usher-bench: %5.1f s  %9.0f req/s  %10" PRIu64 " requests  errors %" PRIu64
                " (503: %" PRIu64 ", timeouts %" PRIu64 ")  open %" PRIu64 "/%u%s\n",
                now, rate, done, errs, e503, st.timeouts, st.open, opt.connections, qline);
}

static void main_handle_closed(uv_handle_t *h)
{
    (void)h;
}

/* Every worker has finished: leave the loop (the handles close after the joins, when no
 * thread can signal main_done any more). */
static void on_main_done(uv_async_t *a)
{
    (void)a;
    if (atomic_load(&workers_finished) < opt.threads || run_over)
        return;
    run_over = true;
    uv_stop(&main_loop);
}

static double run(void)
{
    static void (*const nexts[4])(vuser *) = {flash_next, steady_next, reserve_next, http_next};
    static void (*const afters[4])(vuser *) = {flash_after_hold, steady_after_hold, release_start,
                                               NULL};
    scenario_next = opt.queue ? queue_next : nexts[opt.sc];
    after_hold = afters[opt.sc];
    budgeted = opt.requests > 0;
    atomic_store(&budget, budgeted ? (int64_t)opt.requests : 0);
    workers = calloc(opt.threads, sizeof(worker));
    if (workers == NULL)
        die("out of memory");
    uint32_t first = 0;
    for (uint32_t i = 0; i < opt.threads; i++) {
        uint32_t n = opt.connections / opt.threads + (i < opt.connections % opt.threads);
        worker_init(&workers[i], i, first, n);
        first += n;
    }
    uv_async_init(&main_loop, &main_done, on_main_done);
    uv_timer_init(&main_loop, &progress_timer);
    uv_timer_init(&main_loop, &duration_timer);
    uv_signal_init(&main_loop, &sigint_handle);
    uv_signal_start(&sigint_handle, on_sigint, SIGINT);
    note("%s: %u connections over %u threads, %s%.1f s%s", scenario_names[opt.sc], opt.connections,
         opt.threads, opt.duration_s > 0 ? "" : "no time limit (", opt.duration_s,
         opt.duration_s > 0 ? "" : ")");
    t_start = uv_hrtime();
    for (uint32_t i = 0; i < opt.threads; i++)
        if (uv_thread_create(&workers[i].th, worker_main, &workers[i]) != 0)
            die("cannot start a thread");
    uv_timer_start(&progress_timer, on_progress, 1000, 1000);
    if (opt.queue)
        mon_start();
    if (opt.duration_s > 0)
        uv_timer_start(&duration_timer, on_duration, (uint64_t)(opt.duration_s * 1000), 0);
    uv_run(&main_loop, UV_RUN_DEFAULT);
    uint64_t t_end = 0;
    for (uint32_t i = 0; i < opt.threads; i++) {
        uv_thread_join(&workers[i].th);
        if (workers[i].t_finish > t_end)
            t_end = workers[i].t_finish;
    }
    uv_close((uv_handle_t *)&progress_timer, main_handle_closed);
    uv_close((uv_handle_t *)&duration_timer, main_handle_closed);
    uv_close((uv_handle_t *)&sigint_handle, main_handle_closed);
    uv_close((uv_handle_t *)&main_done, main_handle_closed);
    if (opt.queue) {
        uv_close((uv_handle_t *)&mon_timer, main_handle_closed);
        hc_pool_stop(mon_pool, NULL, NULL);
    }
    uv_run(&main_loop, UV_RUN_DEFAULT);
    if (opt.queue)
        hc_pool_destroy(mon_pool);
    if (stop_requested)
        t_end = t_stop;
    return (double)(t_end - t_start) / 1e9;
}

/* ---- Audit: read the server back, compare ------------------------------------------------- */

typedef struct st_index {
    uint64_t id;
    uint32_t idx;
} st_index;

static st_index *st_sorted;

static int st_cmp(const void *a, const void *b)
{
    uint64_t x = ((const st_index *)a)->id, y = ((const st_index *)b)->id;
    return x < y ? -1 : x > y;
}

static bool showtime_index(uint64_t id, uint32_t *idx)
{
    st_index key = {.id = id};
    st_index *f = bsearch(&key, st_sorted, nshowtimes, sizeof(*st_sorted), st_cmp);
    if (f == NULL)
        return false;
    *idx = f->idx;
    return true;
}

static uint8_t *sold;
static audit_booking *server_bk;
static size_t nserver_bk, capserver_bk;
static uint64_t audit_unknown_labels;

static void seatmap_build(hb_batch *b, size_t i, uint32_t step, hb_request *rq)
{
    (void)b;
    (void)step;
    bprintf(rq->path, sizeof(rq->path), "/api/seats/%" PRIu64, showtime_ids[i]);
}

static hb_step seatmap_handle(hb_batch *b, size_t i, uint32_t *step, int err, const hc_response *r)
{
    (void)b;
    (void)step;
    if (err != 0 || r->status == 503)
        return HB_RETRY;
    if (r->status != 200)
        return HB_FAIL;
    json_t *j = json_loadb(r->body, r->body_len, 0, NULL);
    json_t *seats = j ? json_object_get(j, "seats") : NULL;
    if (!json_is_array(seats)) {
        json_decref(j);
        return HB_FAIL;
    }
    size_t k;
    json_t *s;
    json_array_foreach(seats, k, s)
    {
        const char *label = json_string_value(json_object_get(s, "label"));
        const char *state = json_string_value(json_object_get(s, "state"));
        if (label == NULL || state == NULL)
            continue;
        uint32_t idx = layout_find(&L, label, strlen(label));
        if (idx == UINT32_MAX) {
            audit_unknown_labels++;
            continue;
        }
        sold[(size_t)i * L.nseats + idx] = strcmp(state, "sold") == 0;
    }
    json_decref(j);
    return HB_DONE;
}

static void add_server_booking(json_t *it, uint32_t user_idx)
{
    uint32_t st;
    if (!showtime_index(json_id(it, "showtime_id"), &st))
        return; /* not one of this run's showtimes */
    if (nserver_bk == capserver_bk) {
        size_t cap = capserver_bk ? capserver_bk * 2 : 1024;
        audit_booking *n = realloc(server_bk, cap * sizeof(*n));
        if (n == NULL)
            die("out of memory");
        server_bk = n;
        capserver_bk = cap;
    }
    audit_booking *b = &server_bk[nserver_bk++];
    memset(b, 0, sizeof(*b));
    b->booking_id = json_id(it, "booking_id");
    b->hold_id = json_id(it, "hold_id");
    b->user = user_idx;
    b->showtime = st;
    const char *status = json_string_value(json_object_get(it, "status"));
    b->cancelled = status != NULL && strcmp(status, "cancelled") == 0;
    json_t *seats = json_object_get(it, "seats");
    size_t k;
    json_t *s;
    json_array_foreach(seats, k, s)
    {
        const char *label = json_string_value(s);
        if (b->nseats < AUDIT_SEATS_MAX)
            b->seats[b->nseats++] = label ? layout_find(&L, label, strlen(label)) : UINT32_MAX;
    }
}

static void mybookings_build(hb_batch *b, size_t i, uint32_t step, hb_request *rq)
{
    (void)b;
    bprintf(rq->path, sizeof(rq->path), "/api/bookings/my-bookings?limit=100&page=%u", step + 1);
    rq->headers = users[i].auth;
}

static hb_step mybookings_handle(hb_batch *b, size_t i, uint32_t *step, int err,
                                 const hc_response *r)
{
    (void)b;
    if (err != 0 || r->status == 503)
        return HB_RETRY;
    if (r->status != 200)
        return HB_FAIL;
    json_t *j = json_loadb(r->body, r->body_len, 0, NULL);
    json_t *items = j ? json_object_get(j, "items") : NULL;
    if (!json_is_array(items)) {
        json_decref(j);
        return HB_FAIL;
    }
    size_t k;
    json_t *it;
    json_array_foreach(items, k, it)
    {
        add_server_booking(it, (uint32_t)i);
    }
    uint64_t total = json_id(j, "total");
    json_decref(j);
    /* At most 10,000 can be paged through; the rest are fetched one by one below. */
    if ((uint64_t)(*step + 1) * 100 < total && *step + 1 < 100) {
        (*step)++;
        return HB_NEXT;
    }
    return HB_DONE;
}

typedef struct byid_ctx {
    const audit_claim *claims;
    size_t *todo; /* claim indexes */
} byid_ctx;

static void byid_build(hb_batch *b, size_t i, uint32_t step, hb_request *rq)
{
    (void)step;
    byid_ctx *c = b->ctx;
    const audit_claim *cl = &c->claims[c->todo[i]];
    bprintf(rq->path, sizeof(rq->path), "/api/bookings/%" PRIu64, cl->booking_id);
    rq->headers = users[cl->user].auth;
}

static hb_step byid_handle(hb_batch *b, size_t i, uint32_t *step, int err, const hc_response *r)
{
    (void)step;
    byid_ctx *c = b->ctx;
    if (err != 0 || r->status == 503)
        return HB_RETRY;
    if (r->status == 404)
        return HB_DONE; /* not there: the audit says lost */
    if (r->status != 200)
        return HB_FAIL;
    json_t *j = json_loadb(r->body, r->body_len, 0, NULL);
    if (j != NULL)
        add_server_booking(j, c->claims[c->todo[i]].user);
    json_decref(j);
    return HB_DONE;
}

static int u64_cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

typedef struct audit_out {
    bool skipped;
    const char *error; /* the audit could not read the server back */
    audit_result r;
    char *details; /* violation lines */
    size_t details_len;
} audit_out;

static void do_audit(const audit_claim *claims, size_t nclaims, audit_out *out)
{
    memset(out, 0, sizeof(*out));
    if (opt.sc == SC_RESERVE || opt.sc == SC_HTTP) {
        out->skipped = true;
        out->r.ok = true;
        return;
    }
    uint64_t t0 = uv_hrtime();
    st_sorted = calloc(nshowtimes, sizeof(*st_sorted));
    sold = calloc((size_t)nshowtimes * L.nseats, 1);
    if (st_sorted == NULL || sold == NULL)
        die("out of memory");
    for (uint32_t i = 0; i < nshowtimes; i++)
        st_sorted[i] = (st_index){showtime_ids[i], i};
    qsort(st_sorted, nshowtimes, sizeof(*st_sorted), st_cmp);
    sync_pool_open();
    static char error[900];
    hb_batch bm = {.what = "audit: reading seat maps",
                   .n = nshowtimes,
                   .build = seatmap_build,
                   .handle = seatmap_handle};
    hb_batch bb = {.what = "audit: reading bookings",
                   .n = opt.users,
                   .build = mybookings_build,
                   .handle = mybookings_handle};
    if (batch_run(&bm) != 0) {
        bprintf(error, sizeof(error), "%s", bm.error);
        out->error = error;
    } else if (batch_run(&bb) != 0) {
        bprintf(error, sizeof(error), "%s", bb.error);
        out->error = error;
    }
    if (out->error == NULL) {
        /* Acknowledged bookings the lists did not show: ask for each one. */
        uint64_t *seen = malloc((nserver_bk ? nserver_bk : 1) * sizeof(uint64_t));
        size_t *todo = malloc((nclaims ? nclaims : 1) * sizeof(size_t)), ntodo = 0;
        if (seen == NULL || todo == NULL)
            die("out of memory");
        for (size_t i = 0; i < nserver_bk; i++)
            seen[i] = server_bk[i].booking_id;
        qsort(seen, nserver_bk, sizeof(uint64_t), u64_cmp);
        for (size_t i = 0; i < nclaims; i++) {
            if (claims[i].kind == AC_CONFIRM_UNKNOWN)
                continue;
            if (bsearch(&claims[i].booking_id, seen, nserver_bk, sizeof(uint64_t), u64_cmp) == NULL)
                todo[ntodo++] = i;
        }
        byid_ctx bc = {.claims = claims, .todo = todo};
        hb_batch bi = {.what = "audit: reading bookings by id",
                       .n = ntodo,
                       .ctx = &bc,
                       .build = byid_build,
                       .handle = byid_handle};
        if (ntodo > 0 && batch_run(&bi) != 0) {
            bprintf(error, sizeof(error), "%s", bi.error);
            out->error = error;
        }
        free(seen);
        free(todo);
    }
    sync_pool_close();
    if (out->error != NULL)
        return;
    FILE *mem = open_memstream(&out->details, &out->details_len);
    audit_input in = {.nshowtimes = nshowtimes,
                      .nseats = L.nseats,
                      .sold = sold,
                      .claims = claims,
                      .nclaims = nclaims,
                      .server = server_bk,
                      .nserver = nserver_bk,
                      .showtime_names = (const char *const *)showtime_names,
                      .seat_labels = L.label_ptrs};
    if (audit_run(&in, &out->r, mem, 50) != 0)
        die("out of memory");
    if (mem != NULL)
        fclose(mem);
    if (audit_unknown_labels > 0)
        note("audit: %" PRIu64 " seat labels in the seat maps are not in the layout",
             audit_unknown_labels);
    note("audit: %zu bookings read back, %u seat maps, in %.1f s", nserver_bk, nshowtimes,
         (double)(uv_hrtime() - t0) / 1e9);
}

/* ---- flash: how fast the seats sold -------------------------------------------------------- */

/* From the sale's start (the run's start, or with --queue the queue's start) to the moments
 * the confirmations clients were told of reached half, 95 % and all of their seats. */
static struct {
    bool have;
    uint64_t seats;
    double half_s, p95_s, all_s;
} sale;

static int sale_cmp(const void *a, const void *b)
{
    uint64_t x = ((const sale_ev *)a)->t_ns, y = ((const sale_ev *)b)->t_ns;
    return x < y ? -1 : x > y;
}

static void sale_summarize(sale_ev *ev, size_t n, uint64_t start_ns)
{
    if (opt.sc != SC_FLASH || n == 0)
        return;
    qsort(ev, n, sizeof(*ev), sale_cmp);
    for (size_t i = 0; i < n; i++)
        sale.seats += ev[i].seats;
    uint64_t sum = 0;
    double *outs[3] = {&sale.half_s, &sale.p95_s, &sale.all_s};
    const double share[3] = {0.5, 0.95, 1.0};
    int k = 0;
    for (size_t i = 0; i < n && k < 3; i++) {
        sum += ev[i].seats;
        double at = ev[i].t_ns > start_ns ? (double)(ev[i].t_ns - start_ns) / 1e9 : 0;
        while (k < 3 && (double)sum >= share[k] * (double)sale.seats)
            *outs[k++] = at;
    }
    sale.have = true;
}

static json_t *sale_json(void)
{
    json_t *o = json_object();
    json_object_set_new(o, "from", json_string(opt.queue ? "queue start" : "run start"));
    json_object_set_new(o, "seats_confirmed", json_integer((json_int_t)sale.seats));
    json_object_set_new(o, "half_s", json_real(round(sale.half_s * 1000) / 1000));
    json_object_set_new(o, "p95_s", json_real(round(sale.p95_s * 1000) / 1000));
    json_object_set_new(o, "all_s", json_real(round(sale.all_s * 1000) / 1000));
    return o;
}

/* ---- Report --------------------------------------------------------------------------------- */

static double ms(uint64_t ns)
{
    return (double)ns / 1e6;
}

static json_t *jms(uint64_t ns)
{
    return json_real(round(ms(ns) * 1000.0) / 1000.0);
}

static uint64_t op_ok(const op_stats *s)
{
    uint64_t n = 0;
    for (int st = 0; st < STATUS_MAX; st++)
        if (status_ok(st))
            n += s->status[st];
    return n - s->bad_answer;
}

static uint64_t op_outcomes(const op_stats *s)
{
    return s->status[409] + s->status[410];
}

static uint64_t op_errors(const op_stats *s)
{
    return s->count - op_ok(s) - op_outcomes(s);
}

/* "409 x 12, 410 x 3" (outcomes) or "503 x 2, timeout x 1" (errors). */
static void op_breakdown(const op_stats *s, bool outcomes, char *buf, size_t len)
{
    size_t off = 0;
    buf[0] = '\0';
#define APPEND(...)                                           \
    do {                                                      \
        int n_ = snprintf(buf + off, len - off, __VA_ARGS__); \
        if (n_ < 0 || (size_t)n_ >= len - off)                \
            return;                                           \
        off += (size_t)n_;                                    \
    } while (0)
    for (int st = 0; st < STATUS_MAX; st++) {
        if (s->status[st] == 0 || status_ok(st) || status_outcome(st) != outcomes)
            continue;
        APPEND("%s%d x %" PRIu64, off ? ", " : "", st, s->status[st]);
    }
    if (!outcomes) {
        for (int t = 0; t < TR_N; t++)
            if (s->transport[t] != 0)
                APPEND("%s%s x %" PRIu64, off ? ", " : "", tr_names[t], s->transport[t]);
        if (s->bad_answer != 0)
            APPEND("%sunreadable 2xx x %" PRIu64, off ? ", " : "", s->bad_answer);
    }
#undef APPEND
}

static json_t *op_json(const op_stats *s, double secs)
{
    json_t *o = json_object();
    json_object_set_new(o, "count", json_integer((json_int_t)s->count));
    json_object_set_new(o, "ok", json_integer((json_int_t)op_ok(s)));
    json_object_set_new(o, "rps", json_real(round((double)s->count / secs * 10) / 10));
    json_object_set_new(o, "p50_ms", jms(hist_percentile(&s->h, 50)));
    json_object_set_new(o, "p90_ms", jms(hist_percentile(&s->h, 90)));
    json_object_set_new(o, "p99_ms", jms(hist_percentile(&s->h, 99)));
    json_object_set_new(o, "p999_ms", jms(hist_percentile(&s->h, 99.9)));
    json_object_set_new(o, "max_ms", jms(hist_max(&s->h)));
    json_object_set_new(o, "mean_ms", json_real(round(hist_mean(&s->h) / 1e3) / 1e3));
    json_t *outc = json_object(), *errs = json_object();
    for (int st = 0; st < STATUS_MAX; st++) {
        if (s->status[st] == 0 || status_ok(st))
            continue;
        char key[16];
        bprintf(key, sizeof(key), "%d", st);
        json_object_set_new(status_outcome(st) ? outc : errs, key,
                            json_integer((json_int_t)s->status[st]));
    }
    for (int t = 0; t < TR_N; t++)
        if (s->transport[t] != 0)
            json_object_set_new(errs, tr_names[t], json_integer((json_int_t)s->transport[t]));
    if (s->bad_answer != 0)
        json_object_set_new(errs, "unreadable", json_integer((json_int_t)s->bad_answer));
    json_object_set_new(o, "outcomes", outc);
    json_object_set_new(o, "errors", errs);
    return o;
}

static json_t *audit_json(const audit_out *a)
{
    json_t *o = json_object();
    json_object_set_new(o, "ok", json_boolean(a->error == NULL && a->r.ok));
    if (a->skipped)
        json_object_set_new(o, "skipped",
                            json_string(opt.sc == SC_RESERVE
                                            ? "reserve places and releases holds: nothing is sold"
                                            : "http scenario: nothing is sold"));
    if (a->error != NULL)
        json_object_set_new(o, "error", json_string(a->error));
    const audit_result *r = &a->r;
    json_object_set_new(o, "seats_sold", json_integer((json_int_t)r->seats_sold));
    json_object_set_new(o, "seats_confirmed_by_clients",
                        json_integer((json_int_t)r->seats_confirmed_by_clients));
    json_object_set_new(o, "double_sold", json_integer((json_int_t)r->double_sold));
    json_object_set_new(o, "lost_confirmations", json_integer((json_int_t)r->lost_confirmations));
    json_object_set_new(o, "lost_cancellations", json_integer((json_int_t)r->lost_cancellations));
    json_object_set_new(o, "unexplained_bookings",
                        json_integer((json_int_t)r->unexplained_bookings));
    json_object_set_new(o, "unexplained_sold", json_integer((json_int_t)r->unexplained_sold));
    json_object_set_new(o, "bookings_acknowledged",
                        json_integer((json_int_t)r->bookings_acknowledged));
    json_object_set_new(o, "in_doubt", json_integer((json_int_t)r->in_doubt));
    json_object_set_new(o, "seats_in_doubt_sold", json_integer((json_int_t)r->seats_in_doubt_sold));
    json_t *lines = json_array();
    if (a->details != NULL) {
        char *save = NULL;
        for (char *l = strtok_r(a->details, "\n", &save); l != NULL;
             l = strtok_r(NULL, "\n", &save))
            json_array_append_new(lines, json_string(l));
    }
    json_object_set_new(o, "violations", lines);
    return o;
}

typedef struct q_report q_report;
static json_t *q_json(const q_report *qr);
static void q_print(const q_report *qr);

static void report(const op_stats *ops, double secs, const hc_stats *cs, audit_out *a,
                   const q_report *qr)
{
    uint64_t total = 0, total_err = 0;
    for (int o = 0; o < OP_N; o++) {
        total += ops[o].count;
        total_err += op_errors(&ops[o]);
    }
    if (a->details != NULL && a->details_len > 0)
        fputs(a->details, stderr); /* the violations, whatever the output format */
    if (opt.json) {
        json_t *j = json_object();
        json_object_set_new(j, "scenario", json_string(scenario_names[opt.sc]));
        json_object_set_new(j, "queue_mode", json_boolean(opt.queue));
        json_object_set_new(j, "target", json_string(opt.target_url));
        json_object_set_new(j, "connections", json_integer(opt.connections));
        json_object_set_new(j, "threads", json_integer(opt.threads));
        json_object_set_new(j, "duration_s", json_real(round(secs * 1000) / 1000));
        json_object_set_new(j, "seed", json_integer((json_int_t)opt.seed));
        if (opt.sc != SC_HTTP) {
            json_object_set_new(j, "seats", json_integer(L.nseats));
            json_object_set_new(j, "showtimes", json_integer(nshowtimes));
            json_object_set_new(j, "users", json_integer(opt.users));
        }
        json_t *jo = json_object();
        for (int o = 0; o < OP_N; o++)
            if (ops[o].count > 0)
                json_object_set_new(jo, op_names[o], op_json(&ops[o], secs));
        json_object_set_new(j, "ops", jo);
        json_t *jt = json_object();
        json_object_set_new(jt, "count", json_integer((json_int_t)total));
        json_object_set_new(jt, "rps", json_real(round((double)total / secs * 10) / 10));
        json_object_set_new(jt, "errors", json_integer((json_int_t)total_err));
        json_object_set_new(j, "total", jt);
        json_t *jc = json_object();
        json_object_set_new(jc, "connects", json_integer((json_int_t)cs->connects));
        json_object_set_new(jc, "connect_failures", json_integer((json_int_t)cs->connect_failures));
        json_object_set_new(jc, "disconnects", json_integer((json_int_t)cs->disconnects));
        json_object_set_new(jc, "timeouts", json_integer((json_int_t)cs->timeouts));
        json_object_set_new(jc, "bytes_out", json_integer((json_int_t)cs->bytes_out));
        json_object_set_new(jc, "bytes_in", json_integer((json_int_t)cs->bytes_in));
        json_object_set_new(j, "client", jc);
        json_object_set_new(j, "audit", audit_json(a));
        if (qr != NULL)
            json_object_set_new(j, "queue", q_json(qr));
        if (sale.have)
            json_object_set_new(j, "sale", sale_json());
        json_dumpf(j, stdout, JSON_COMPACT | JSON_REAL_PRECISION(12));
        fputc('\n', stdout);
        json_decref(j);
        return;
    }
    printf("usher-bench %s%s: %u connections, %u threads, %.2f s, %s\n", scenario_names[opt.sc],
           opt.queue ? " --queue" : "", opt.connections, opt.threads, secs, opt.target_url);
    printf("%-12s %10s %10s %10s %9s %8s %8s %8s %8s %8s %9s\n", "operation", "count", "rps", "ok",
           "outcomes", "errors", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms");
    for (int o = 0; o < OP_N; o++) {
        const op_stats *s = &ops[o];
        if (s->count == 0)
            continue;
        printf("%-12s %10" PRIu64 " %10.1f %10" PRIu64 " %9" PRIu64 " %8" PRIu64
               " %8.2f %8.2f %8.2f %8.2f %9.2f\n",
               op_names[o], s->count, (double)s->count / secs, op_ok(s), op_outcomes(s),
               op_errors(s), ms(hist_percentile(&s->h, 50)), ms(hist_percentile(&s->h, 90)),
               ms(hist_percentile(&s->h, 99)), ms(hist_percentile(&s->h, 99.9)),
               ms(hist_max(&s->h)));
    }
    printf("%-12s %10" PRIu64 " %10.1f %10s %9s %8" PRIu64 "\n", "total", total,
           (double)total / secs, "", "", total_err);
    for (int o = 0; o < OP_N; o++) {
        char outc[512], errs[512];
        op_breakdown(&ops[o], true, outc, sizeof(outc));
        op_breakdown(&ops[o], false, errs, sizeof(errs));
        if (outc[0] != '\0')
            printf("  %s outcomes: %s\n", op_names[o], outc);
        if (errs[0] != '\0')
            printf("  %s errors: %s\n", op_names[o], errs);
    }
    printf("client: %" PRIu64 " connects, %" PRIu64 " connect failures, %" PRIu64
           " disconnects, %" PRIu64 " timeouts\n",
           cs->connects, cs->connect_failures, cs->disconnects, cs->timeouts);
    if (qr != NULL)
        q_print(qr);
    if (sale.have)
        printf("sale: %" PRIu64 " seats confirmed to clients; half of them by %.2f s, 95 %% by "
               "%.2f s, the last at %.2f s after the %s\n",
               sale.seats, sale.half_s, sale.p95_s, sale.all_s,
               opt.queue ? "queue's start" : "run's start");
    const audit_result *r = &a->r;
    if (a->skipped)
        printf("audit: skipped (%s: nothing is sold)\n", scenario_names[opt.sc]);
    else if (a->error != NULL)
        printf("audit: FAILED: could not read the server back: %s\n", a->error);
    else
        printf("audit: %s: %" PRIu64 " seats sold, %" PRIu64 " confirmed to clients (+%" PRIu64
               " of %" PRIu64 " unacknowledged operations); %" PRIu64 " double-sold, %" PRIu64
               " lost confirmations, %" PRIu64 " lost cancellations, %" PRIu64
               " unexplained bookings, %" PRIu64 " unexplained sold seats (%" PRIu64
               " bookings checked)\n",
               r->ok ? "ok" : "VIOLATIONS", r->seats_sold, r->seats_confirmed_by_clients,
               r->seats_in_doubt_sold, r->in_doubt, r->double_sold, r->lost_confirmations,
               r->lost_cancellations, r->unexplained_bookings, r->unexplained_sold,
               r->bookings_acknowledged);
}

/* ---- flash --queue: the summary ------------------------------------------------------------ */

typedef struct q_dist {
    uint64_t n, p50, p90, p99, max;
    double mean;
} q_dist;

static int u64_cmp(const void *a, const void *b);

/* Nearest-rank percentiles of v[0..n) (sorted here). */
static q_dist dist_of(uint64_t *v, size_t n)
{
    q_dist d = {.n = n};
    if (n == 0)
        return d;
    qsort(v, n, sizeof(*v), u64_cmp);
    double sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += (double)v[i];
    d.mean = sum / (double)n;
    const double ps[3] = {50, 90, 99};
    uint64_t *outs[3] = {&d.p50, &d.p90, &d.p99};
    for (int k = 0; k < 3; k++) {
        size_t rank = (size_t)ceil(ps[k] / 100.0 * (double)n);
        *outs[k] = v[rank > 0 ? rank - 1 : 0];
    }
    d.max = v[n - 1];
    return d;
}

typedef struct q_report {
    uint64_t joins, joins_pre, joins_post, admitted, refused, lapsed, polls;
    q_dist since_start; /* queue start -> admission seen, every admission */
    q_dist first_wave;  /* the same, places taken before the start */
    q_dist wait_post;   /* join answered -> admission seen, fresh places taken after the start */
    q_dist polls_per;   /* polls per admission (counts) */
    uint64_t fifo_checked, fifo_violations;
    bool server_ok; /* the final GET of the queue answered */
    uint64_t server_admitted, server_places, server_waiting;
    double rate_backlogged, backlogged_s; /* admissions/s while users waited, over how long */
    uint32_t *per_second;                 /* admissions in each second since the start */
    size_t nper;
} q_report;

typedef struct fifo_a {
    uint64_t join_done, last_wait_sent;
    int64_t sec; /* second of the admission since the start, -1 unknown */
} fifo_a;

typedef struct fifo_b {
    uint64_t join_sent, admitted_done;
    int64_t sec;
} fifo_b;

static int fifo_a_cmp(const void *a, const void *b)
{
    uint64_t x = ((const fifo_a *)a)->join_done, y = ((const fifo_a *)b)->join_done;
    return x < y ? -1 : x > y;
}

static int fifo_b_cmp(const void *a, const void *b)
{
    uint64_t x = ((const fifo_b *)a)->join_sent, y = ((const fifo_b *)b)->join_sent;
    return x < y ? -1 : x > y;
}

/* FIFO: a place whose join was answered before another's join was sent is ahead of it
 * (the queue's shard served the one before the other). A fresh place taken after the start
 * (B) must not be admitted while one ahead of it (A) still waits: A polled "waiting" with a
 * request written after B's "admitted" was read, or A's admitted_at is a later second than
 * B's. Places taken before the start are shuffled at the start, but all of them stand ahead
 * of every later place, so they count as A. Sound (no false alarm) with the clocks of one
 * process; a violation it misses is one no client looked at in time. */
static void q_fifo(const q_ticket *t, size_t n, q_report *qr)
{
    fifo_a *a = malloc((n ? n : 1) * sizeof(*a));
    fifo_b *b = malloc((n ? n : 1) * sizeof(*b));
    if (a == NULL || b == NULL)
        die("out of memory");
    size_t na = 0, nb = 0;
    for (size_t i = 0; i < n; i++) {
        int64_t sec = t[i].admitted_ms >= Q.start_ms ? (t[i].admitted_ms - Q.start_ms) / 1000 : -1;
        if (t[i].join_done != 0)
            a[na++] = (fifo_a){t[i].join_done, t[i].last_wait_sent, sec};
        if (t[i].fresh && t[i].joined_as == QS_WAITING && t[i].admitted_done != 0 && sec >= 0)
            b[nb++] = (fifo_b){t[i].join_sent, t[i].admitted_done, sec};
    }
    qsort(a, na, sizeof(*a), fifo_a_cmp);
    qsort(b, nb, sizeof(*b), fifo_b_cmp);
    size_t j = 0;
    int64_t max_sec = -1;
    uint64_t max_wait = 0;
    for (size_t i = 0; i < nb; i++) {
        for (; j < na && a[j].join_done < b[i].join_sent; j++) {
            if (a[j].sec > max_sec)
                max_sec = a[j].sec;
            if (a[j].last_wait_sent > max_wait)
                max_wait = a[j].last_wait_sent;
        }
        qr->fifo_checked++;
        if (max_sec > b[i].sec || max_wait > b[i].admitted_done)
            qr->fifo_violations++;
    }
    free(a);
    free(b);
}

/* Admissions per second since the start, from the server's counts (linear between
 * samples), and the rate over the sampled intervals in which users waited throughout. */
static void q_rate(q_report *qr)
{
    double adm = 0, secs = 0;
    for (size_t i = 1; i < nqsamples; i++) {
        const q_sample *p = &qsamples[i - 1], *c = &qsamples[i];
        if (!p->started || !c->started || p->waiting == 0 || c->waiting == 0)
            continue;
        adm += (double)c->admitted - (double)p->admitted;
        secs += (double)(c->t_ns - p->t_ns) / 1e9;
    }
    qr->backlogged_s = secs;
    qr->rate_backlogged = secs > 0 ? adm / secs : 0;
    if (nqsamples < 2 || qsamples[nqsamples - 1].t_ns <= Q.start_ns)
        return;
    size_t whole = (size_t)((qsamples[nqsamples - 1].t_ns - Q.start_ns) / 1000000000u);
    qr->per_second = calloc(whole ? whole : 1, sizeof(uint32_t));
    if (qr->per_second == NULL)
        die("out of memory");
    double prev = 0; /* admitted at the start: none */
    size_t i = 0;
    for (size_t k = 1; k <= whole; k++) {
        uint64_t at = Q.start_ns + (uint64_t)k * 1000000000u;
        while (i + 1 < nqsamples && qsamples[i + 1].t_ns < at)
            i++;
        const q_sample *p = &qsamples[i], *c = &qsamples[i + 1 < nqsamples ? i + 1 : i];
        double a = p->admitted;
        if (c->t_ns > p->t_ns && at > p->t_ns)
            a += ((double)c->admitted - (double)p->admitted) * (double)(at - p->t_ns) /
                 (double)(c->t_ns - p->t_ns);
        qr->per_second[k - 1] = (uint32_t)llround(a - prev > 0 ? a - prev : 0);
        prev = a > prev ? a : prev;
    }
    qr->nper = whole;
}

static void q_summarize(const q_ticket *t, size_t n, q_report *qr)
{
    uint64_t *all = malloc((n ? n : 1) * sizeof(uint64_t));
    uint64_t *pre = malloc((n ? n : 1) * sizeof(uint64_t));
    uint64_t *post = malloc((n ? n : 1) * sizeof(uint64_t));
    uint64_t *polls = malloc((n ? n : 1) * sizeof(uint64_t));
    if (all == NULL || pre == NULL || post == NULL || polls == NULL)
        die("out of memory");
    size_t nall = 0, npre = 0, npost = 0;
    for (size_t i = 0; i < n; i++) {
        qr->polls += t[i].polls;
        if (t[i].join_done == 0)
            continue;
        qr->joins++;
        qr->joins_pre += t[i].joined_as == QS_PREQUEUE;
        qr->joins_post += t[i].joined_as == QS_WAITING;
        if (t[i].admitted_done == 0)
            continue;
        uint64_t since = t[i].admitted_done > Q.start_ns ? t[i].admitted_done - Q.start_ns : 0;
        polls[nall] = t[i].polls;
        all[nall++] = since;
        if (t[i].joined_as == QS_PREQUEUE)
            pre[npre++] = since;
        if (t[i].joined_as == QS_WAITING && t[i].fresh)
            post[npost++] = t[i].admitted_done - t[i].join_done;
    }
    qr->admitted = nall;
    qr->since_start = dist_of(all, nall);
    qr->first_wave = dist_of(pre, npre);
    qr->wait_post = dist_of(post, npost);
    qr->polls_per = dist_of(polls, nall);
    free(all);
    free(pre);
    free(post);
    free(polls);
    q_fifo(t, n, qr);
    q_rate(qr);
}

/* After the run: the server's own counts. */
static void q_final(q_report *qr)
{
    sync_pool_open();
    json_t *j = NULL;
    int st = api_call("GET", Q.path_info, NULL, NULL, &j, NULL, 0);
    if (st == 200 && j != NULL) {
        qr->server_ok = true;
        qr->server_admitted = json_id(j, "admitted");
        qr->server_places = json_id(j, "places_taken");
        qr->server_waiting = json_id(j, "waiting");
    }
    json_decref(j);
    sync_pool_close();
}

/* Whether the queued run failed: a 403 admission-required, no admission, or FIFO broken. */
static bool q_failed(const q_report *qr)
{
    return qr->refused > 0 || qr->admitted == 0 || qr->fifo_violations > 0;
}

static json_t *dist_json(const q_dist *d, bool ns)
{
    json_t *o = json_object();
    json_object_set_new(o, "count", json_integer((json_int_t)d->n));
    if (ns) {
        json_object_set_new(o, "p50_ms", jms(d->p50));
        json_object_set_new(o, "p90_ms", jms(d->p90));
        json_object_set_new(o, "p99_ms", jms(d->p99));
        json_object_set_new(o, "max_ms", jms(d->max));
        json_object_set_new(o, "mean_ms", json_real(round(d->mean / 1e3) / 1e3));
    } else {
        json_object_set_new(o, "p50", json_integer((json_int_t)d->p50));
        json_object_set_new(o, "p90", json_integer((json_int_t)d->p90));
        json_object_set_new(o, "p99", json_integer((json_int_t)d->p99));
        json_object_set_new(o, "max", json_integer((json_int_t)d->max));
        json_object_set_new(o, "mean", json_real(round(d->mean * 100) / 100));
    }
    return o;
}

static json_t *q_json(const q_report *qr)
{
    json_t *o = json_object();
    json_object_set_new(o, "ok", json_boolean(!q_failed(qr)));
    json_object_set_new(o, "rate_per_s", json_integer(opt.queue_rate));
    json_object_set_new(o, "start_delay_ms", json_integer(Q.delay_ms));
    json_object_set_new(o, "admission_window_s", json_integer(Q.window_s));
    json_object_set_new(o, "joins", json_integer((json_int_t)qr->joins));
    json_object_set_new(o, "joins_prequeue", json_integer((json_int_t)qr->joins_pre));
    json_object_set_new(o, "joins_after_start", json_integer((json_int_t)qr->joins_post));
    json_object_set_new(o, "admitted", json_integer((json_int_t)qr->admitted));
    json_t *srv = json_object();
    if (qr->server_ok) {
        json_object_set_new(srv, "admitted", json_integer((json_int_t)qr->server_admitted));
        json_object_set_new(srv, "places_taken", json_integer((json_int_t)qr->server_places));
        json_object_set_new(srv, "waiting", json_integer((json_int_t)qr->server_waiting));
    }
    json_object_set_new(o, "server", srv);
    json_t *rate = json_object();
    json_object_set_new(rate, "configured", json_integer(opt.queue_rate));
    json_object_set_new(rate, "observed", json_real(round(qr->rate_backlogged * 10) / 10));
    json_object_set_new(rate, "observed_over_s", json_real(round(qr->backlogged_s * 100) / 100));
    json_object_set_new(rate, "ratio",
                        json_real(round(qr->rate_backlogged / opt.queue_rate * 1000) / 1000));
    json_t *ps = json_array();
    for (size_t k = 0; k < qr->nper; k++)
        json_array_append_new(ps, json_integer(qr->per_second[k]));
    json_object_set_new(rate, "per_second", ps);
    json_object_set_new(o, "admission_rate", rate);
    json_object_set_new(o, "start_to_admission", dist_json(&qr->since_start, true));
    json_object_set_new(o, "start_to_admission_prequeue", dist_json(&qr->first_wave, true));
    json_object_set_new(o, "join_to_admission_after_start", dist_json(&qr->wait_post, true));
    json_object_set_new(o, "polls", json_integer((json_int_t)qr->polls));
    json_object_set_new(o, "polls_per_admission", dist_json(&qr->polls_per, false));
    json_t *f = json_object();
    json_object_set_new(f, "checked", json_integer((json_int_t)qr->fifo_checked));
    json_object_set_new(f, "violations", json_integer((json_int_t)qr->fifo_violations));
    json_object_set_new(o, "fifo", f);
    json_object_set_new(o, "admission_refused", json_integer((json_int_t)qr->refused));
    json_object_set_new(o, "lapsed", json_integer((json_int_t)qr->lapsed));
    json_object_set_new(o, "monitor_failures", json_integer((json_int_t)mon_failures));
    return o;
}

static void dist_print(const char *what, const q_dist *d)
{
    if (d->n == 0) {
        printf("  %s: none\n", what);
        return;
    }
    printf("  %s: p50 %.1f, p90 %.1f, p99 %.1f, max %.1f ms (%" PRIu64 ")\n", what,
           (double)d->p50 / 1e6, (double)d->p90 / 1e6, (double)d->p99 / 1e6, (double)d->max / 1e6,
           d->n);
}

static void q_print(const q_report *qr)
{
    printf("queue: %s: %u admissions/s configured, started %.1f s after setup, admission "
           "window %u s\n",
           q_failed(qr) ? "FAILED" : "ok", opt.queue_rate, (double)Q.delay_ms / 1e3, Q.window_s);
    printf("  joins %" PRIu64 " (%" PRIu64 " before the start, %" PRIu64
           " after); admitted %" PRIu64 " seen by clients",
           qr->joins, qr->joins_pre, qr->joins_post, qr->admitted);
    if (qr->server_ok)
        printf(", %" PRIu64 " counted by the server (%" PRIu64 " places, %" PRIu64
               " waiting at the end)",
               qr->server_admitted, qr->server_places, qr->server_waiting);
    printf("; %" PRIu64 " lapsed\n", qr->lapsed);
    printf("  admission rate while users waited: %.1f/s over %.1f s (%.3fx --queue-rate)\n",
           qr->rate_backlogged, qr->backlogged_s, qr->rate_backlogged / opt.queue_rate);
    dist_print("queue start -> admission", &qr->since_start);
    dist_print("  of places taken before the start", &qr->first_wave);
    dist_print("join -> admission, places taken after the start", &qr->wait_post);
    printf("  polls per admission: mean %.2f, p50 %" PRIu64 ", p90 %" PRIu64 ", p99 %" PRIu64
           ", max %" PRIu64 " (%" PRIu64 " polls in all)\n",
           qr->polls_per.mean, qr->polls_per.p50, qr->polls_per.p90, qr->polls_per.p99,
           qr->polls_per.max, qr->polls);
    printf("  FIFO: %" PRIu64 " admissions of places taken after the start checked, %" PRIu64
           " violations\n",
           qr->fifo_checked, qr->fifo_violations);
    printf("  reserves refused with 403 admission-required: %" PRIu64 "\n", qr->refused);
}

/* ---- main ------------------------------------------------------------------------------------ */

int main(int argc, char **argv)
{
    parse_args(argc, argv);
    signal(SIGPIPE, SIG_IGN);
    /* Every connection is a descriptor: raise the soft limit, refuse what cannot fit. */
    uint64_t limit = hc_raise_nofile();
    uint64_t need = (uint64_t)opt.connections + SYNC_CONNECTIONS + 64;
    if (limit != UINT64_MAX && limit < need)
        die("%u connections need about %" PRIu64 " open files, but the limit is %" PRIu64
            " (the hard limit; raise it with ulimit -Hn / limits.conf, or use fewer "
            "connections)",
            opt.connections, need, limit);
    if (uv_loop_init(&main_loop) != 0)
        die("cannot create the event loop");
    uint64_t nonce = (uint64_t)time(NULL) * 1000003u ^ (uint64_t)getpid() ^ uv_hrtime();
    bprintf(run_id, sizeof(run_id), "%" PRIx64, splitmix(&nonce) & UINT64_C(0xffffffffff));
    if (opt.sc != SC_HTTP) {
        sync_pool_open();
        setup();
        if (opt.queue)
            queue_setup();
        sync_pool_close();
    }

    double secs = run();
    if (secs <= 0)
        secs = 1e-9;

    /* Merge the threads. */
    op_stats *ops = calloc(OP_N, sizeof(op_stats));
    if (ops == NULL)
        die("out of memory");
    for (int o = 0; o < OP_N; o++)
        hist_init(&ops[o].h);
    hc_stats cs = {0};
    size_t nclaims = 0;
    for (uint32_t i = 0; i < opt.threads; i++)
        nclaims += workers[i].nclaims;
    audit_claim *claims = malloc((nclaims ? nclaims : 1) * sizeof(*claims));
    if (claims == NULL)
        die("out of memory");
    nclaims = 0;
    size_t ntickets = 0;
    for (uint32_t i = 0; i < opt.threads; i++)
        ntickets += workers[i].ntickets;
    q_ticket *tickets = malloc((ntickets ? ntickets : 1) * sizeof(*tickets));
    if (tickets == NULL)
        die("out of memory");
    ntickets = 0;
    size_t nsales = 0;
    for (uint32_t i = 0; i < opt.threads; i++)
        nsales += workers[i].nsales;
    sale_ev *sales = malloc((nsales ? nsales : 1) * sizeof(*sales));
    if (sales == NULL)
        die("out of memory");
    nsales = 0;
    q_report qr = {0};
    for (uint32_t i = 0; i < opt.threads; i++) {
        worker *w = &workers[i];
        if (w->ntickets > 0)
            memcpy(tickets + ntickets, w->tickets, w->ntickets * sizeof(*tickets));
        ntickets += w->ntickets;
        if (w->nsales > 0)
            memcpy(sales + nsales, w->sales, w->nsales * sizeof(*sales));
        nsales += w->nsales;
        qr.refused += w->q_refused;
        qr.lapsed += w->q_lapsed;
        for (int o = 0; o < OP_N; o++) {
            hist_merge(&ops[o].h, &w->ops[o].h);
            ops[o].count += w->ops[o].count;
            ops[o].bad_answer += w->ops[o].bad_answer;
            for (int s = 0; s < STATUS_MAX; s++)
                ops[o].status[s] += w->ops[o].status[s];
            for (int t = 0; t < TR_N; t++)
                ops[o].transport[t] += w->ops[o].transport[t];
        }
        cs.connects += w->stats.connects;
        cs.connect_failures += w->stats.connect_failures;
        cs.disconnects += w->stats.disconnects;
        cs.timeouts += w->stats.timeouts;
        cs.bytes_in += w->stats.bytes_in;
        cs.bytes_out += w->stats.bytes_out;
        if (w->nclaims > 0)
            memcpy(claims + nclaims, w->claims, w->nclaims * sizeof(*claims));
        nclaims += w->nclaims;
        worker_free(w);
    }

    if (opt.queue) {
        q_summarize(tickets, ntickets, &qr);
        q_final(&qr);
    }
    sale_summarize(sales, nsales, opt.queue ? Q.start_ns : t_start);
    audit_out a;
    do_audit(claims, nclaims, &a);
    report(ops, secs, &cs, &a, opt.queue ? &qr : NULL);
    bool ok = a.error == NULL && a.r.ok;
    if (opt.queue && q_failed(&qr)) {
        fprintf(stderr,
                "usher-bench: the queued sale failed: %" PRIu64
                " reserves refused with 403 admission-required, %" PRIu64 " admissions, %" PRIu64
                " FIFO violations\n",
                qr.refused, qr.admitted, qr.fifo_violations);
        ok = false;
    }
    uint64_t answered = 0;
    for (int o = 0; o < OP_N; o++)
        answered += hist_count(&ops[o].h);
    if (answered == 0) {
        fprintf(stderr,
                "usher-bench: no request was answered (%" PRIu64 " connects, %" PRIu64
                " connect failures)\n",
                cs.connects, cs.connect_failures);
        ok = false;
    }

    free(a.details);
    free(claims);
    free(tickets);
    free(sales);
    free(qr.per_second);
    free(qsamples);
    free(ops);
    free(workers);
    free(sold);
    free(st_sorted);
    free(server_bk);
    for (uint32_t i = 0; i < nshowtimes; i++)
        free(showtime_names[i]);
    free(showtime_names);
    free(showtime_ids);
    if (users != NULL)
        for (uint32_t i = 0; i < opt.users; i++)
            free(users[i].auth);
    free(users);
    layout_free(&L);
    uv_run(&main_loop, UV_RUN_DEFAULT);
    uv_loop_close(&main_loop);
    return ok ? 0 : 1;
}
