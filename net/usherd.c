/*
 * usherd - the usher server.
 */
#include "demo.h"
#include "net.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <uv.h>

static const char *usage_text =
    "usage: usherd [options]\n"
    "\n"
    "The usher seat-inventory server: N shard threads, each with its own event loop,\n"
    "listener (SO_REUSEPORT), engine, write-ahead log and snapshots under\n"
    "DATA_DIR/shard-N. At start every shard recovers (snapshot + WAL tail); on SIGINT or\n"
    "SIGTERM the server stops accepting, answers what is in flight, takes a final\n"
    "snapshot per shard and syncs the WAL. Logs are logfmt lines on stderr; once ready it\n"
    "prints 'listening on http://ADDR:PORT' on stdout.\n"
    "\n"
    "Every option has an environment variable; a flag given on the command line wins.\n"
    "\n"
    "  --listen ADDR:PORT        USHER_LISTEN           address (default 127.0.0.1:8080;\n"
    "                                                   [::1]:8080 for IPv6; port 0 = any free)\n"
    "  --data-dir DIR            USHER_DATA_DIR         data directory (default ./data)\n"
    "  --shards N                USHER_SHARDS           shard threads (default: CPUs, max 32);\n"
    "                                                   fixed when the data dir is created\n"
    "  --hold-ttl SECONDS        USHER_HOLD_TTL         seat hold lifetime (default 300)\n"
    "  --offer-ttl SECONDS       USHER_OFFER_TTL        lifetime of a hold offered to a waiter\n"
    "                                                   on a waiting list (default 600)\n"
    "  --admission-window SECONDS USHER_ADMISSION_WINDOW a virtual queue's admitted user may\n"
    "                                                   reserve this long (default 600)\n"
    "  --max-connections N       USHER_MAX_CONNECTIONS  open connections; beyond: 503 (20000)\n"
    "  --max-header-bytes N      USHER_MAX_HEADER_BYTES request line + headers; beyond: 431 "
    "(8192)\n"
    "  --max-body-bytes N        USHER_MAX_BODY_BYTES   request body; beyond: 413 (65536)\n"
    "  --pipeline N              USHER_PIPELINE         requests owed per connection before\n"
    "                                                   reading pauses (16, max 64)\n"
    "  --request-timeout MS      USHER_REQUEST_TIMEOUT  a started request must complete\n"
    "                                                   within this, else 408 (10000)\n"
    "  --idle-timeout MS         USHER_IDLE_TIMEOUT     keep-alive idle limit (60000)\n"
    "  --snapshot-interval S     USHER_SNAPSHOT_INTERVAL   snapshot at least every S s (60)\n"
    "  --snapshot-wal-mb MB      USHER_SNAPSHOT_WAL_MB     ... or every MB of WAL (64)\n"
    "  --wal-segment-mb MB       USHER_WAL_SEGMENT_MB      WAL segment size (64)\n"
    "  --max-seats-per-hold N    USHER_MAX_SEATS_PER_HOLD  seats in one hold (10, max 16)\n"
    "  --idempotency-keys N      USHER_IDEMPOTENCY_KEYS    Idempotency-Key answers kept per\n"
    "                                                   shard, oldest dropped first (65536)\n"
    "  --token-ttl SECONDS       USHER_TOKEN_TTL        login token lifetime (86400)\n"
    "  --password-cost COST      USHER_PASSWORD_COST    argon2id limits for new passwords:\n"
    "                                                   interactive (default) or min (tests)\n"
    "  --replication-token-file FILE  USHER_REPLICATION_TOKEN_FILE  a token (first line, 32 to\n"
    "                            512 printable characters) that opens GET /api/replication*;\n"
    "                            USHER_REPLICATION_TOKEN may hold the token itself. Admin\n"
    "                            login tokens open those routes too (docs/replication.md)\n"
    "  --replication-streams N   USHER_REPLICATION_STREAMS  open replication streams;\n"
    "                                                   beyond: 503 (16)\n";

/* The rest of --help (one string may not exceed 4095 bytes in ISO C). */
static const char *usage_text2 =
    "  --rate-limit SPEC         USHER_RATE_LIMIT       rate limits (429 beyond), repeatable;\n"
    "                            SPEC is a comma-separated list of NAME=COUNT/SECONDS,\n"
    "                            NAME=off, off (all off) or defaults (all on), applied in\n"
    "                            order after the environment's. NAME and default:\n"
    "                              login-ip 30/60      login-email 5/60 (the email tried)\n"
    "                              reserve-user 20/10  reserve-ip 200/10\n"
    "                              confirm-user 10/10  confirm-ip 100/10\n"
    "                              onsale-user 10/60   onsale-ip 300/60 (waiting-list\n"
    "                              and queue joins and leaves)\n"
    "                            (-ip limits: by client address; behind a proxy every\n"
    "                            client shares one, so turn them off there)\n"
    "  --rate-limit-keys N       USHER_RATE_LIMIT_KEYS  rate-limit entries kept (1048576);\n"
    "                                                   at the bound the least recently used\n"
    "                                                   entry is reused (docs/api.md)\n"
    "  --web-root DIR            USHER_WEB_ROOT         serve the files under DIR (read into\n"
    "                                                   memory at start; / is index.html)\n"
    "  --analytics-url ORIGIN    USHER_ANALYTICS_URL    where the admin pages find\n"
    "                            usher-pgexport --http, e.g. http://127.0.0.1:8081 (allowed\n"
    "                            in the pages' Content-Security-Policy; docs/web.md)\n"
    "  --demo                    USHER_DEMO=1           on first start, create a demo catalog\n"
    "                                                   and two accounts (passwords printed)\n"
    "  --create-admin EMAIL      create an admin account and exit; the password comes from\n"
    "                            USHER_ADMIN_PASSWORD or the first line of stdin\n"
    "  --routes                  print the API routes and exit\n"
    "  -h, --help                this text\n"
    "  --version                 the version\n"
    "\n"
    "The JWT signing secret is USHER_JWT_SECRET if set, else DATA_DIR/jwt.secret (created\n"
    "once, mode 0600). The API is described in docs/api.md and docs/openapi.yaml; health\n"
    "and metrics at GET /livez, /readyz and /metrics.\n";

static void fail(const char *fmt, const char *a, const char *b)
{
    fprintf(stderr, "usherd: ");
    fprintf(stderr, fmt, a, b);
    fputc('\n', stderr);
    exit(2);
}

static uint64_t parse_u64(const char *name, const char *v, uint64_t min, uint64_t max)
{
    char *end;
    errno = 0;
    unsigned long long x = strtoull(v, &end, 10);
    if (errno != 0 || end == v || *end != '\0' || v[0] == '-' || x < min || x > max) {
        char range[64];
        snprintf(range, sizeof(range), "%" PRIu64 "..%" PRIu64, min, max);
        fprintf(stderr, "usherd: %s must be an integer in %s, not '%s'\n", name, range, v);
        exit(2);
    }
    return x;
}

typedef struct option {
    const char *flag, *env;
    char kind; /* s: string, u: unsigned */
    uint64_t min, max;
    const char *value; /* the value given, or NULL */
} option;

static option opts[] = {
    {"--listen", "USHER_LISTEN", 's', 0, 0, NULL},
    {"--data-dir", "USHER_DATA_DIR", 's', 0, 0, NULL},
    {"--shards", "USHER_SHARDS", 'u', 1, 32, NULL},
    {"--hold-ttl", "USHER_HOLD_TTL", 'u', 10, 86400, NULL},
    {"--offer-ttl", "USHER_OFFER_TTL", 'u', 5, 86400, NULL},
    {"--admission-window", "USHER_ADMISSION_WINDOW", 'u', 10, 86400, NULL},
    {"--max-connections", "USHER_MAX_CONNECTIONS", 'u', 1, 1000000, NULL},
    {"--max-header-bytes", "USHER_MAX_HEADER_BYTES", 'u', 1024, 1048576, NULL},
    {"--max-body-bytes", "USHER_MAX_BODY_BYTES", 'u', 1024, 16777216, NULL},
    {"--pipeline", "USHER_PIPELINE", 'u', 1, 64, NULL},
    {"--request-timeout", "USHER_REQUEST_TIMEOUT", 'u', 10, 3600000, NULL},
    {"--idle-timeout", "USHER_IDLE_TIMEOUT", 'u', 10, 86400000, NULL},
    {"--snapshot-interval", "USHER_SNAPSHOT_INTERVAL", 'u', 1, 86400, NULL},
    {"--snapshot-wal-mb", "USHER_SNAPSHOT_WAL_MB", 'u', 1, 65536, NULL},
    {"--wal-segment-mb", "USHER_WAL_SEGMENT_MB", 'u', 1, 4096, NULL},
    {"--max-seats-per-hold", "USHER_MAX_SEATS_PER_HOLD", 'u', 1, 16, NULL},
    {"--idempotency-keys", "USHER_IDEMPOTENCY_KEYS", 'u', 16, 16777216, NULL},
    {"--token-ttl", "USHER_TOKEN_TTL", 'u', 60, 31536000, NULL},
    {"--password-cost", "USHER_PASSWORD_COST", 's', 0, 0, NULL},
    {"--replication-token-file", "USHER_REPLICATION_TOKEN_FILE", 's', 0, 0, NULL},
    {"--web-root", "USHER_WEB_ROOT", 's', 0, 0, NULL},
    {"--analytics-url", "USHER_ANALYTICS_URL", 's', 0, 0, NULL},
    {"--replication-streams", "USHER_REPLICATION_STREAMS", 'u', 1, 1024, NULL},
    {"--rate-limit-keys", "USHER_RATE_LIMIT_KEYS", 'u', 64, 1 << 28, NULL},
    {"--create-admin", NULL, 's', 0, 0, NULL},
};
enum { OPT_COUNT = sizeof(opts) / sizeof(opts[0]) };

static option *opt_find(const char *flag)
{
    for (int i = 0; i < OPT_COUNT; i++) {
        if (strcmp(opts[i].flag, flag) == 0)
            return &opts[i];
    }
    return NULL;
}

static bool opt_u(const char *flag, uint64_t *out)
{
    option *o = opt_find(flag);
    if (o->value == NULL)
        return false;
    *out = parse_u64(o->flag, o->value, o->min, o->max);
    return true;
}

static net_server *server;
static bool demo;

/* The replication token: the first line of `file`, else USHER_REPLICATION_TOKEN,
 * else none. Exits on a token that is unreadable, too short or not printable. */
static const char *replication_token(const char *file)
{
    static char tok[520];
    const char *src = file;
    if (file != NULL) {
        FILE *f = fopen(file, "r");
        if (f == NULL)
            fail("cannot read --replication-token-file %s: %s", file, strerror(errno));
        if (fgets(tok, sizeof(tok), f) == NULL)
            tok[0] = '\0';
        fclose(f);
        tok[strcspn(tok, "\r\n")] = '\0';
    } else {
        const char *env = getenv("USHER_REPLICATION_TOKEN");
        if (env == NULL || env[0] == '\0')
            return NULL;
        src = "USHER_REPLICATION_TOKEN";
        snprintf(tok, sizeof(tok), "%s", env);
    }
    size_t n = strlen(tok);
    bool printable = n >= 32 && n <= 512;
    for (size_t i = 0; printable && i < n; i++)
        printable = tok[i] > 0x20 && tok[i] < 0x7f;
    if (!printable)
        fail("the replication token (%s) must be 32 to 512 printable characters without "
             "spaces%s",
             src, "");
    return tok;
}

/* Each connection is a descriptor: raise the soft limit to the hard one
 * (as Redis and nginx do) and say so when it still cannot hold
 * --max-connections plus the WAL, snapshot and catalog files. */
static void raise_fd_limit(uint32_t connections_max)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < (rlim_t)connections_max + 256)
        fprintf(stderr,
                "usherd: warning: open files limit %llu is below --max-connections %u + 256; "
                "connections past it fail to be accepted (raise ulimit -n)\n",
                (unsigned long long)rl.rlim_cur, connections_max);
}

/* usherd --create-admin EMAIL: recover the data dir, register the account
 * through the API with the admin role, stop. */
static int create_admin(net_config *c, const char *email)
{
    char pw[256];
    const char *env = getenv("USHER_ADMIN_PASSWORD");
    if (env != NULL) {
        snprintf(pw, sizeof(pw), "%s", env);
    } else {
        fprintf(stderr, "usherd: password for %s (one line on stdin): ", email);
        if (fgets(pw, sizeof(pw), stdin) == NULL) {
            fprintf(stderr, "\nusherd: no password given\n");
            return 2;
        }
        pw[strcspn(pw, "\r\n")] = '\0';
    }
    c->no_listen = true;
    uint16_t port;
    int rc = net_server_start(c, &server, &port);
    if (rc != 0) {
        fprintf(stderr, "usherd: cannot start: %s\n", net_strerror(rc));
        return 1;
    }
    json_t *body = json_pack("{s:s, s:s, s:s, s:s}", "email", email, "password", pw, "name",
                             "Administrator", "role", "admin");
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    memset(pw, 0, sizeof(pw));
    int status = 0;
    char *resp = NULL;
    rc = net_server_call(server, "POST", "/api/auth/register", text, &status, &resp);
    free(text);
    int exit_code = 0;
    if (rc != 0 || status != 201) {
        fprintf(stderr, "usherd: admin not created (HTTP %d): %s\n", status, resp ? resp : "");
        exit_code = 1;
    } else {
        printf("created admin %s\n", email);
    }
    free(resp);
    net_server_stop(server);
    net_server_wait(server);
    return exit_code;
}
static bool stop_requested;

static void on_signal(uv_signal_t *s, int signum)
{
    stop_requested = true;
    net_log("info", signum == SIGINT ? "usherd: SIGINT: stopping (final snapshots, WAL sync)"
                                     : "usherd: SIGTERM: stopping (final snapshots, WAL sync)");
    net_server_stop(server);
    uv_signal_stop(s);
}

/* --rate-limit may be given many times: its values, in order. */
enum { RATE_SPECS_MAX = 32 };
static const char *rate_specs[RATE_SPECS_MAX];
static int nrate_specs;

static void rate_limit_apply(net_config *c, const char *from, const char *spec)
{
    char err[256];
    if (net_rate_limit_apply(c, spec, err, sizeof(err)) != 0)
        fail("%s: %s", from, err);
}

int main(int argc, char **argv)
{
    /* Environment first, then flags over it. */
    for (int i = 0; i < OPT_COUNT; i++)
        opts[i].value = opts[i].env != NULL ? getenv(opts[i].env) : NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--rate-limit") == 0) {
            if (i + 1 >= argc)
                fail("%s needs a value%s (see --help)", a, "");
            if (nrate_specs == RATE_SPECS_MAX)
                fail("--rate-limit given more than %s times%s", "32", "");
            rate_specs[nrate_specs++] = argv[++i];
            continue;
        }
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            fputs(usage_text, stdout);
            fputs(usage_text2, stdout);
            return 0;
        }
        if (strcmp(a, "--version") == 0) {
            puts("usherd 0.1.0");
            return 0;
        }
        if (strcmp(a, "--routes") == 0) {
            net_routes_print(stdout);
            return 0;
        }
        if (strcmp(a, "--demo") == 0) {
            demo = true;
            continue;
        }
        option *o = opt_find(a);
        if (o == NULL)
            fail("unknown option '%s'%s (see --help)", a, "");
        if (i + 1 >= argc)
            fail("%s needs a value%s (see --help)", a, "");
        o->value = argv[++i];
    }

    net_config c;
    net_config_default(&c);
    if (opt_find("--listen")->value != NULL)
        c.listen = opt_find("--listen")->value;
    if (opt_find("--data-dir")->value != NULL)
        c.data_dir = opt_find("--data-dir")->value;
    uint64_t v;
    if (opt_u("--shards", &v))
        c.shards = (uint32_t)v;
    if (opt_u("--hold-ttl", &v)) {
        c.engine.hold_ttl_ms = v * 1000;
        if (c.engine.hold_max_lifetime_ms < c.engine.hold_ttl_ms)
            c.engine.hold_max_lifetime_ms = 3 * c.engine.hold_ttl_ms;
    }
    if (opt_u("--offer-ttl", &v))
        c.engine.offer_ttl_ms = v * 1000;
    if (opt_u("--admission-window", &v))
        c.engine.queue_admit_window_ms = v * 1000;
    if (opt_u("--max-connections", &v))
        c.connections_max = (uint32_t)v;
    if (opt_u("--max-header-bytes", &v))
        c.header_bytes_max = (uint32_t)v;
    if (opt_u("--max-body-bytes", &v))
        c.body_bytes_max = (uint32_t)v;
    if (opt_u("--pipeline", &v))
        c.pipeline_max = (uint32_t)v;
    if (opt_u("--request-timeout", &v))
        c.request_timeout_ms = (uint32_t)v;
    if (opt_u("--idle-timeout", &v))
        c.idle_timeout_ms = (uint32_t)v;
    if (opt_u("--snapshot-interval", &v))
        c.snapshot_interval_ms = v * 1000;
    if (opt_u("--snapshot-wal-mb", &v))
        c.snapshot_wal_bytes = v << 20;
    if (opt_u("--wal-segment-mb", &v))
        c.wal_segment_bytes = v << 20;
    if (opt_u("--max-seats-per-hold", &v))
        c.engine.max_seats_per_hold = (uint32_t)v;
    if (opt_u("--idempotency-keys", &v))
        c.idempotency_keys = (uint32_t)v;
    if (opt_u("--token-ttl", &v))
        c.token_ttl_s = (uint32_t)v;
    const char *cost = opt_find("--password-cost")->value;
    if (cost != NULL && strcmp(cost, "min") != 0 && strcmp(cost, "interactive") != 0)
        fail("--password-cost must be interactive or min, not '%s'%s", cost, "");
    c.password_cost_min = cost != NULL && strcmp(cost, "min") == 0;
    if (opt_u("--replication-streams", &v))
        c.replication_streams_max = (uint32_t)v;
    c.replication_token = replication_token(opt_find("--replication-token-file")->value);
    c.web_root = opt_find("--web-root")->value;
    c.analytics_url = opt_find("--analytics-url")->value;
    if (c.analytics_url != NULL && c.web_root == NULL)
        fail("--analytics-url%s needs --web-root%s: it is told to the pages", "", "");
    const char *rate_env = getenv("USHER_RATE_LIMIT");
    if (rate_env != NULL && rate_env[0] != '\0')
        rate_limit_apply(&c, "USHER_RATE_LIMIT", rate_env);
    for (int i = 0; i < nrate_specs; i++)
        rate_limit_apply(&c, "--rate-limit", rate_specs[i]);
    if (opt_u("--rate-limit-keys", &v))
        c.rate_limit_keys = (uint32_t)v;
    const char *demo_env = getenv("USHER_DEMO");
    if (demo_env != NULL && strcmp(demo_env, "1") == 0)
        demo = true;
    const char *admin_email = opt_find("--create-admin")->value;
    if (admin_email != NULL)
        return create_admin(&c, admin_email);

    /* Signal handlers go in before the server starts: a SIGTERM that comes
     * right after "listening on" must stop the server cleanly, not kill it.
     * libuv keeps a signal that arrives before the loop runs. */
    uv_loop_t loop;
    uv_loop_init(&loop);
    uv_signal_t sigint, sigterm;
    uv_signal_init(&loop, &sigint);
    uv_signal_init(&loop, &sigterm);
    uv_signal_start(&sigint, on_signal, SIGINT);
    uv_signal_start(&sigterm, on_signal, SIGTERM);

    raise_fd_limit(c.connections_max);
    uint16_t port = 0;
    int rc = net_server_start(&c, &server, &port);
    if (rc != 0) {
        fprintf(stderr, "usherd: cannot start: %s\n", net_strerror(rc));
        uv_close((uv_handle_t *)&sigint, NULL);
        uv_close((uv_handle_t *)&sigterm, NULL);
        uv_run(&loop, UV_RUN_DEFAULT);
        uv_loop_close(&loop);
        return 1;
    }
    const char *host = c.listen;
    char shown[128];
    snprintf(shown, sizeof(shown), "%s", host);
    char *colon = strrchr(shown, ':');
    if (colon != NULL)
        *colon = '\0';
    if (demo && usherd_demo(server) != 0) {
        net_server_stop(server);
        net_server_wait(server);
        uv_close((uv_handle_t *)&sigint, NULL);
        uv_close((uv_handle_t *)&sigterm, NULL);
        uv_run(&loop, UV_RUN_DEFAULT);
        uv_loop_close(&loop);
        return 1;
    }
    printf("listening on http://%s:%u\n", shown, port);
    fflush(stdout);

    /* Until the first signal (a loop turn may end without one). */
    while (!stop_requested)
        uv_run(&loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&sigint, NULL);
    uv_close((uv_handle_t *)&sigterm, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    rc = net_server_wait(server);
    net_log(rc == 0 ? "info" : "error", "usherd: stopped");
    return rc == 0 ? 0 : 1;
}
