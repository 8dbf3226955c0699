/*
 * usherd - the usher server.
 */
#include "net.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
    "  --shards N                USHER_SHARDS           shard threads (default: CPUs, max 64)\n"
    "  --hold-ttl SECONDS        USHER_HOLD_TTL         seat hold lifetime (default 300)\n"
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
    "  -h, --help                this text\n"
    "  --version                 the version\n"
    "\n"
    "Endpoints served now: GET /livez, GET /readyz (503 while a shard is not ready or its\n"
    "WAL failed), GET /metrics (Prometheus text). The booking API is being built\n"
    "(issue #4); see README.md for what exists.\n";

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
    {"--shards", "USHER_SHARDS", 'u', 1, 64, NULL},
    {"--hold-ttl", "USHER_HOLD_TTL", 'u', 10, 86400, NULL},
    {"--max-connections", "USHER_MAX_CONNECTIONS", 'u', 1, 1000000, NULL},
    {"--max-header-bytes", "USHER_MAX_HEADER_BYTES", 'u', 1024, 1048576, NULL},
    {"--max-body-bytes", "USHER_MAX_BODY_BYTES", 'u', 1024, 16777216, NULL},
    {"--pipeline", "USHER_PIPELINE", 'u', 1, 64, NULL},
    {"--request-timeout", "USHER_REQUEST_TIMEOUT", 'u', 10, 3600000, NULL},
    {"--idle-timeout", "USHER_IDLE_TIMEOUT", 'u', 10, 86400000, NULL},
    {"--snapshot-interval", "USHER_SNAPSHOT_INTERVAL", 'u', 1, 86400, NULL},
    {"--snapshot-wal-mb", "USHER_SNAPSHOT_WAL_MB", 'u', 1, 65536, NULL},
    {"--wal-segment-mb", "USHER_WAL_SEGMENT_MB", 'u', 1, 4096, NULL},
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

static void on_signal(uv_signal_t *s, int signum)
{
    fprintf(stderr, "usherd: %s: stopping (final snapshots, WAL sync)\n",
            signum == SIGINT ? "SIGINT" : "SIGTERM");
    net_server_stop(server);
    uv_signal_stop(s);
}

int main(int argc, char **argv)
{
    /* Environment first, then flags over it. */
    for (int i = 0; i < OPT_COUNT; i++)
        opts[i].value = getenv(opts[i].env);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            fputs(usage_text, stdout);
            return 0;
        }
        if (strcmp(a, "--version") == 0) {
            puts("usherd 0.1.0");
            return 0;
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

    uint16_t port = 0;
    int rc = net_server_start(&c, &server, &port);
    if (rc != 0) {
        fprintf(stderr, "usherd: cannot start: %s\n", net_strerror(rc));
        return 1;
    }
    const char *host = c.listen;
    char shown[128];
    snprintf(shown, sizeof(shown), "%s", host);
    char *colon = strrchr(shown, ':');
    if (colon != NULL)
        *colon = '\0';
    printf("listening on http://%s:%u\n", shown, port);
    fflush(stdout);

    uv_run(&loop, UV_RUN_ONCE); /* until the first signal */
    uv_close((uv_handle_t *)&sigint, NULL);
    uv_close((uv_handle_t *)&sigterm, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    rc = net_server_wait(server);
    fprintf(stderr, "usherd: stopped\n");
    return rc == 0 ? 0 : 1;
}
