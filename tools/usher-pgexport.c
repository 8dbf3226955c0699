/*
 * usher-pgexport - follows usherd's replication streams into PostgreSQL.
 *
 * One thread per shard. Each keeps one HTTP connection to usherd
 * (GET /api/replication?shard=N&from_lsn=L, NDJSON over chunked transfer)
 * and one libpq connection. Events are applied in batches: a batch is one
 * call of usher_apply(shard, events) (tools/pgexport/migrations/002_apply.sql),
 * which in one transaction applies the events and moves export_state(shard)
 * to the batch's last LSN, after checking that the batch starts right after
 * the stored LSN. A crash at any moment leaves PostgreSQL at a batch
 * boundary; a restart asks for stored LSN + 1: nothing twice, nothing
 * skipped. A stream that answers 410 (the WAL is gone) is bootstrapped
 * from GET /api/replication/snapshot in one transaction.
 *
 * docs/analytics.md describes the schema and the analytics views.
 */
#include "auth.h"
#include "http.h"
#include "pgexport_migrations.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <llhttp.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

static const char *usage_text =
    "usage: usher-pgexport --source http://HOST:PORT --pg CONNINFO [options]\n"
    "\n"
    "Follows every shard's replication stream of a usherd and applies the events to\n"
    "PostgreSQL, exactly once: each batch is one transaction that also advances\n"
    "export_state(shard, lsn). Creates and migrates its own schema (schema_migrations).\n"
    "Runs until SIGINT or SIGTERM; reconnects to both sides with backoff.\n"
    "\n"
    "  --source URL         usherd, http://HOST:PORT (or USHER_EXPORT_SOURCE)\n"
    "  --pg CONNINFO        libpq connection string or URI, e.g.\n"
    "                       'postgresql:///usher?host=/tmp' (or USHER_EXPORT_PG)\n"
    "  --token T            admin login token or usherd's replication token\n"
    "                       (or USHER_EXPORT_TOKEN)\n"
    "  --token-file FILE    ... read from the first line of FILE\n"
    "  --batch N            events per transaction at most (default 1000)\n"
    "  --stats-interval S   a stats line every S seconds on stderr (default 10; 0: never)\n"
    "  --migrate-only       create or migrate the schema, then exit\n"
    "  -h, --help           this text\n"
    "\n"
    "Analytics over HTTP (GET /api/analytics/*, JSON, for usherd's admins):\n"
    "  --http HOST:PORT     serve them there, e.g. 127.0.0.1:8081 (or USHER_EXPORT_HTTP);\n"
    "                       needs usherd's JWT signing secret:\n"
    "  --jwt-secret-file F  usherd's DATA_DIR/jwt.secret (USHER_JWT_SECRET, the secret\n"
    "                       itself, wins when set, as in usherd)\n"
    "  --http-allow-origin O  a browser origin allowed by CORS, e.g.\n"
    "                       http://127.0.0.1:8080; repeatable or comma-separated\n"
    "                       (or USHER_EXPORT_HTTP_ALLOW_ORIGIN)\n"
    "  --http-tz TZ         the requests' default time zone (default UTC; or\n"
    "                       USHER_EXPORT_HTTP_TZ), e.g. Asia/Kolkata\n"
    "  --http-statement-timeout MS  per SQL statement (default 5000)\n"
    "\n"
    "Logs are logfmt lines on stderr. On exit it prints one summary line with events,\n"
    "batches and the lag between an event's time and its commit (p50, p99, max, in ms).\n";

enum {
    LINE_MAX_BYTES = 16 * 1024 * 1024, /* one event line at most (a stadium layout fits) */
    BATCH_BYTES_MAX = 8 * 1024 * 1024, /* JSON per transaction at most */
    READ_BYTES = 64 * 1024,
    STREAM_SILENCE_MS = 5000, /* no line (heartbeats come each second): the stream is dead */
    BACKOFF_MIN_MS = 100,
    BACKOFF_MAX_MS = 5000,
    LAG_BUCKETS = 10001, /* per ms up to 10 s; the last: longer */
    SHARDS_MAX = 32
};

/* ---- Configuration and shared state ------------------------------------------------------ */

static struct {
    char host[256], port[16];
    const char *pg;
    char token[600];
    uint32_t batch_max;
    uint32_t stats_interval_s;
    bool migrate_only;
} cfg = {.batch_max = 1000, .stats_interval_s = 10};

static atomic_bool stopping;

typedef struct shard_stats {
    atomic_uint_fast64_t events, batches, bootstraps, reconnects, lsn, durable_lsn;
    uv_mutex_t mu; /* lag histograms: since the start, and since the last stats line */
    uint64_t lag[LAG_BUCKETS], lag_iv[LAG_BUCKETS];
    uint64_t lag_max, lag_iv_max;
} shard_stats;

typedef struct shard_ctx {
    uint32_t shard;
    uv_thread_t thread;
    PGconn *pg;
    uint64_t applied; /* export_state.lsn as last read or committed */
    shard_stats st;
} shard_ctx;

static shard_ctx shards[SHARDS_MAX];
static uint32_t nshards;

static void logf_(const char *level, const char *msg, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void logf_(const char *level, const char *msg, const char *fmt, ...)
{
    char ts[32];
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    struct tm tm;
    gmtime_r(&now.tv_sec, &tm);
    strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
    char line[2048];
    int n = snprintf(line, sizeof(line), "ts=%s.%03ldZ level=%s msg=\"%s\"", ts,
                     now.tv_nsec / 1000000, level, msg);
    if (fmt != NULL && n > 0 && (size_t)n < sizeof(line)) {
        line[n++] = ' ';
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
        va_end(ap);
    }
    fprintf(stderr, "%s\n", line);
}

static int64_t wall_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static uint64_t mono_ms(void)
{
    return uv_hrtime() / 1000000;
}

/* Sleeps up to `ms`, waking early when stopping. */
static void nap(uint32_t ms)
{
    for (uint32_t slept = 0; slept < ms && !atomic_load(&stopping); slept += 50)
        usleep(50 * 1000);
}

static uint32_t backoff_next(uint32_t *b)
{
    uint32_t cur = *b;
    *b = *b * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : *b * 2;
    return cur;
}

/* ---- HTTP: one request, a response read incrementally ----------------------------------- */

typedef struct http {
    int fd;
    llhttp_t parser;
    llhttp_settings_t settings;
    int status;
    bool headers_done, complete;
    char *body; /* decoded body bytes not consumed yet */
    size_t body_len, body_cap;
    bool overflow;
} http;

static int on_body(llhttp_t *p, const char *at, size_t n)
{
    http *h = p->data;
    if (h->body_len + n > LINE_MAX_BYTES + (size_t)READ_BYTES) {
        h->overflow = true;
        return HPE_USER;
    }
    if (h->body_len + n > h->body_cap) {
        size_t cap = h->body_cap ? h->body_cap : 65536;
        while (cap < h->body_len + n)
            cap *= 2;
        char *b = realloc(h->body, cap);
        if (b == NULL) {
            h->overflow = true;
            return HPE_USER;
        }
        h->body = b;
        h->body_cap = cap;
    }
    memcpy(h->body + h->body_len, at, n);
    h->body_len += n;
    return 0;
}

static int on_headers_complete(llhttp_t *p)
{
    http *h = p->data;
    h->status = p->status_code;
    h->headers_done = true;
    return 0;
}

static int on_message_complete(llhttp_t *p)
{
    ((http *)p->data)->complete = true;
    return 0;
}

static void http_close(http *h)
{
    if (h->fd >= 0)
        close(h->fd);
    h->fd = -1;
    free(h->body);
    h->body = NULL;
    h->body_len = h->body_cap = 0;
}

/* Connects and sends GET `path`. 0 or -1 (logged). */
static int http_get(http *h, const char *path)
{
    memset(h, 0, sizeof(*h));
    h->fd = -1;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res;
    int g = getaddrinfo(cfg.host, cfg.port, &hints, &res);
    if (g != 0) {
        logf_("warn", "cannot resolve the source", "host=%s error=\"%s\"", cfg.host,
              gai_strerror(g));
        return -1;
    }
    for (struct addrinfo *a = res; a != NULL && h->fd < 0; a = a->ai_next) {
        int fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0)
            continue;
        if (connect(fd, a->ai_addr, a->ai_addrlen) == 0)
            h->fd = fd;
        else
            close(fd);
    }
    freeaddrinfo(res);
    if (h->fd < 0) {
        logf_("warn", "cannot connect to the source", "host=%s port=%s error=\"%s\"", cfg.host,
              cfg.port, strerror(errno));
        return -1;
    }
    char req[2048];
    bool v6 = strchr(cfg.host, ':') != NULL; /* an IPv6 literal goes in brackets */
    int n = snprintf(req, sizeof(req),
                     "GET %s HTTP/1.1\r\nHost: %s%s%s:%s\r\nAccept: application/x-ndjson\r\n"
                     "User-Agent: usher-pgexport\r\n%s%s%s\r\n",
                     path, v6 ? "[" : "", cfg.host, v6 ? "]" : "", cfg.port,
                     cfg.token[0] ? "Authorization: Bearer " : "", cfg.token,
                     cfg.token[0] ? "\r\n" : "");
    if (n < 0 || (size_t)n >= sizeof(req))
        return -1;
    for (int off = 0; off < n;) {
        ssize_t w = send(h->fd, req + off, (size_t)(n - off), MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            logf_("warn", "cannot send to the source", "error=\"%s\"", strerror(errno));
            http_close(h);
            return -1;
        }
        off += (int)w;
    }
    llhttp_settings_init(&h->settings);
    h->settings.on_body = on_body;
    h->settings.on_headers_complete = on_headers_complete;
    h->settings.on_message_complete = on_message_complete;
    llhttp_init(&h->parser, HTTP_RESPONSE, &h->settings);
    h->parser.data = h;
    return 0;
}

/* Reads what is there (waiting up to `wait_ms`). 1: bytes parsed, 0: nothing
 * within the wait, -1: closed or failed (logged unless a clean end). */
static int http_read(http *h, int wait_ms)
{
    struct pollfd p = {.fd = h->fd, .events = POLLIN};
    int r = poll(&p, 1, wait_ms);
    if (r < 0 && errno == EINTR)
        return 0;
    if (r <= 0)
        return r == 0 ? 0 : -1;
    char buf[READ_BYTES];
    ssize_t n = recv(h->fd, buf, sizeof(buf), 0);
    if (n < 0 && (errno == EINTR || errno == EAGAIN))
        return 0;
    if (n <= 0) {
        if (!h->complete)
            llhttp_finish(&h->parser);
        return -1;
    }
    llhttp_errno_t e = llhttp_execute(&h->parser, buf, (size_t)n);
    if (e != HPE_OK) {
        logf_("warn", "bad HTTP from the source", "error=\"%s\"",
              h->overflow ? "a line longer than 16 MiB" : llhttp_errno_name(e));
        return -1;
    }
    return 1;
}

/* The next complete line of the body (NUL-terminated, without '\n'), or NULL. */
static char *http_line(http *h, size_t *consumed)
{
    if (h->body_len == *consumed)
        return NULL;
    char *nl = memchr(h->body + *consumed, '\n', h->body_len - *consumed);
    if (nl == NULL)
        return NULL;
    *nl = '\0';
    char *line = h->body + *consumed;
    *consumed = (size_t)(nl - h->body) + 1;
    return line;
}

/* Drops consumed bytes from the body buffer. */
static void http_compact(http *h, size_t *consumed)
{
    if (*consumed == 0)
        return;
    memmove(h->body, h->body + *consumed, h->body_len - *consumed);
    h->body_len -= *consumed;
    *consumed = 0;
}

/* Reads a whole (small) response body: for error answers and /status. */
static int http_read_all(http *h, int timeout_ms)
{
    uint64_t until = mono_ms() + (uint64_t)timeout_ms;
    while (!h->complete) {
        if (mono_ms() > until || atomic_load(&stopping))
            return -1;
        int r = http_read(h, 200);
        if (r < 0)
            return h->complete ? 0 : -1;
    }
    return 0;
}

/* ---- PostgreSQL -------------------------------------------------------------------------- */

/* The first line of libpq's error text (thread-safe: a copy). */
static const char *pg_error(PGconn *c, char *buf, size_t cap)
{
    const char *m = PQerrorMessage(c);
    snprintf(buf, cap, "%.*s", (int)strcspn(m, "\n"), m);
    return buf[0] != '\0' ? buf : "unknown error";
}

static PGconn *pg_connect(void)
{
    /* --pg is expanded as a connection string or URI; these apply unless it sets them. */
    const char *const keys[] = {"connect_timeout", "application_name", "dbname", NULL};
    const char *const vals[] = {"10", "usher-pgexport", cfg.pg, NULL};
    PGconn *c = PQconnectdbParams(keys, vals, 1);
    if (PQstatus(c) != CONNECTION_OK) {
        char e[256];
        logf_("warn", "cannot connect to PostgreSQL", "error=\"%s\"", pg_error(c, e, sizeof(e)));
        PQfinish(c);
        return NULL;
    }
    return c;
}

/* Runs a command; logs and returns false on failure. */
static bool pg_ok(PGconn *c, PGresult *r, const char *what)
{
    ExecStatusType s = PQresultStatus(r);
    if (s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK)
        return true;
    const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    const char *msg = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
    char e[256];
    logf_("warn", "PostgreSQL command failed", "what=%s sqlstate=%s error=\"%s\"", what,
          state != NULL ? state : "-", msg != NULL ? msg : pg_error(c, e, sizeof(e)));
    return false;
}

static bool pg_exec(PGconn *c, const char *sql, const char *what)
{
    PGresult *r = PQexec(c, sql);
    bool ok = pg_ok(c, r, what);
    PQclear(r);
    return ok;
}

/* Creates schema_migrations and applies the missing migrations, each in its
 * own transaction, under an advisory lock (two exporters starting together
 * migrate once). */
static bool migrate(PGconn *c)
{
    if (!pg_exec(c,
                 "CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, "
                 "name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())",
                 "schema_migrations"))
        return false;
    for (int i = 0; i < pgexport_migration_count; i++) {
        const pgexport_migration *m = &pgexport_migrations[i];
        if (!pg_exec(c, "BEGIN", "begin") ||
            !pg_exec(c, "SELECT pg_advisory_xact_lock(7312001)", "migration lock")) {
            pg_exec(c, "ROLLBACK", "rollback");
            return false;
        }
        char v[16];
        snprintf(v, sizeof(v), "%d", m->version);
        const char *params[2] = {v, m->name};
        PGresult *r = PQexecParams(c, "SELECT 1 FROM schema_migrations WHERE version = $1", 1, NULL,
                                   params, NULL, NULL, 0);
        bool ok = pg_ok(c, r, "schema_migrations");
        bool done = ok && PQntuples(r) > 0;
        PQclear(r);
        if (ok && !done) {
            ok = pg_exec(c, m->sql, m->name);
            if (ok) {
                r = PQexecParams(c, "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                                 2, NULL, params, NULL, NULL, 0);
                ok = pg_ok(c, r, "schema_migrations");
                PQclear(r);
            }
            if (ok)
                logf_("info", "migration applied", "version=%d name=%s", m->version, m->name);
        }
        if (!ok || !pg_exec(c, "COMMIT", "commit")) {
            pg_exec(c, "ROLLBACK", "rollback");
            return false;
        }
    }
    return true;
}

/* export_state's LSN for the shard (creating its row). */
static bool read_state(shard_ctx *s)
{
    char sh[16];
    snprintf(sh, sizeof(sh), "%" PRIu32, s->shard);
    const char *params[1] = {sh};
    PGresult *r =
        PQexecParams(s->pg, "INSERT INTO export_state (shard) VALUES ($1) ON CONFLICT DO NOTHING",
                     1, NULL, params, NULL, NULL, 0);
    bool ok = pg_ok(s->pg, r, "export_state");
    PQclear(r);
    if (!ok)
        return false;
    r = PQexecParams(s->pg, "SELECT lsn FROM export_state WHERE shard = $1", 1, NULL, params, NULL,
                     NULL, 0);
    ok = pg_ok(s->pg, r, "export_state") && PQntuples(r) == 1;
    if (ok)
        s->applied = strtoull(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    return ok;
}

/* ---- Batches -------------------------------------------------------------------------------- */

typedef struct batch {
    char *json; /* "[e1,e2,...]" being built */
    size_t len, cap;
    uint32_t n;
    uint64_t first_lsn, last_lsn;
    int64_t *times; /* each event's time (ms), for the lag */
    uint32_t times_cap;
} batch;

static bool batch_add(batch *b, const char *line, size_t len, uint64_t lsn, int64_t ts)
{
    /* Room for the separator, the line, and the closing "]\0". */
    if (b->len + len + 3 > b->cap) {
        size_t cap = b->cap ? b->cap : 65536;
        while (cap < b->len + len + 3)
            cap *= 2;
        char *p = realloc(b->json, cap);
        if (p == NULL)
            return false;
        b->json = p;
        b->cap = cap;
    }
    if (b->n == b->times_cap) {
        uint32_t cap = b->times_cap ? b->times_cap * 2 : 1024;
        int64_t *t = realloc(b->times, cap * sizeof(*t));
        if (t == NULL)
            return false;
        b->times = t;
        b->times_cap = cap;
    }
    b->json[b->len++] = b->n == 0 ? '[' : ',';
    memcpy(b->json + b->len, line, len);
    b->len += len;
    if (b->n == 0)
        b->first_lsn = lsn;
    b->last_lsn = lsn;
    b->times[b->n++] = ts;
    return true;
}

static void batch_reset(batch *b)
{
    b->len = 0;
    b->n = 0;
}

static void lag_record(shard_ctx *s, int64_t commit_ms, const int64_t *times, uint32_t n)
{
    uv_mutex_lock(&s->st.mu);
    for (uint32_t i = 0; i < n; i++) {
        int64_t lag = commit_ms - times[i];
        uint64_t l = lag < 0 ? 0 : (uint64_t)lag;
        uint64_t b = l < LAG_BUCKETS - 1 ? l : LAG_BUCKETS - 1;
        s->st.lag[b]++;
        s->st.lag_iv[b]++;
        if (l > s->st.lag_max)
            s->st.lag_max = l;
        if (l > s->st.lag_iv_max)
            s->st.lag_iv_max = l;
    }
    uv_mutex_unlock(&s->st.mu);
}

/* Applies the batch in one transaction (usher_apply). False on failure: the
 * caller re-reads export_state and reconnects. */
static bool batch_apply(shard_ctx *s, batch *b)
{
    if (b->n == 0)
        return true;
    b->json[b->len] = ']';
    char sh[16];
    snprintf(sh, sizeof(sh), "%" PRIu32, s->shard);
    char *json = b->json;
    json[b->len + 1] = '\0';
    const char *params[2] = {sh, json};
    PGresult *r = PQexecParams(s->pg, "SELECT usher_apply($1::integer, $2::jsonb)", 2, NULL, params,
                               NULL, NULL, 0);
    bool ok = pg_ok(s->pg, r, "usher_apply");
    if (ok) {
        uint64_t lsn = strtoull(PQgetvalue(r, 0, 0), NULL, 10);
        if (lsn != b->last_lsn) {
            logf_("error", "usher_apply returned an unexpected LSN",
                  "shard=%" PRIu32 " expected=%" PRIu64 " got=%" PRIu64, s->shard, b->last_lsn,
                  lsn);
            ok = false;
        } else {
            s->applied = lsn;
            atomic_store(&s->st.lsn, lsn);
            atomic_fetch_add(&s->st.events, b->n);
            atomic_fetch_add(&s->st.batches, 1);
            lag_record(s, wall_ms(), b->times, b->n);
        }
    }
    PQclear(r);
    batch_reset(b);
    return ok;
}

/* ---- Lines ------------------------------------------------------------------------------------
 */

/* Parses "2026-11-21T09:30:00.250Z" (the stream's own format) to ms. */
static int64_t parse_ts(const char *s)
{
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    int ms = 0;
    if (s == NULL || sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d.%3dZ", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
                            &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &ms) < 6)
        return 0;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return (int64_t)timegm(&tm) * 1000 + ms;
}

typedef enum { LINE_EVENT, LINE_HEARTBEAT, LINE_ERROR, LINE_BAD } line_kind;

typedef struct line_info {
    line_kind kind;
    uint64_t lsn;
    int64_t ts_ms;
    uint64_t durable_lsn;
    char detail[256];
} line_info;

static line_info classify(uint32_t shard, const char *line, size_t len)
{
    line_info li = {.kind = LINE_BAD};
    json_error_t err;
    json_t *o = json_loadb(line, len, 0, &err);
    if (!json_is_object(o)) {
        snprintf(li.detail, sizeof(li.detail), "not a JSON object: %s", err.text);
        json_decref(o);
        return li;
    }
    json_int_t v = json_integer_value(json_object_get(o, "v"));
    json_int_t sh = json_integer_value(json_object_get(o, "shard"));
    const char *type = json_string_value(json_object_get(o, "type"));
    if (v != 1 || sh != (json_int_t)shard || type == NULL) {
        snprintf(li.detail, sizeof(li.detail), "version %lld, shard %lld, type %s: not for us",
                 (long long)v, (long long)sh, type != NULL ? type : "missing");
    } else if (strcmp(type, "heartbeat") == 0) {
        li.kind = LINE_HEARTBEAT;
        li.durable_lsn = (uint64_t)json_integer_value(json_object_get(o, "durable_lsn"));
    } else if (strcmp(type, "error") == 0) {
        li.kind = LINE_ERROR;
        snprintf(li.detail, sizeof(li.detail), "%s: %s",
                 json_string_value(json_object_get(o, "title")),
                 json_string_value(json_object_get(o, "detail")));
    } else {
        li.kind = LINE_EVENT;
        li.lsn = (uint64_t)json_integer_value(json_object_get(o, "lsn"));
        li.ts_ms = parse_ts(json_string_value(json_object_get(o, "ts")));
        if (li.lsn == 0) {
            li.kind = LINE_BAD;
            snprintf(li.detail, sizeof(li.detail), "an event without an lsn");
        }
    }
    json_decref(o);
    return li;
}

/* ---- Bootstrap from a snapshot --------------------------------------------------------------- */

/* Reads GET /api/replication/snapshot and applies it in one transaction. */
static bool bootstrap(shard_ctx *s)
{
    char path[128];
    snprintf(path, sizeof(path), "/api/replication/snapshot?shard=%" PRIu32, s->shard);
    http h;
    if (http_get(&h, path) != 0)
        return false;
    bool ok = pg_exec(s->pg, "BEGIN", "begin");
    char sh[16];
    snprintf(sh, sizeof(sh), "%" PRIu32, s->shard);
    if (ok) {
        const char *params[1] = {sh};
        PGresult *r = PQexecParams(s->pg, "SELECT usher_snapshot_begin($1::integer)", 1, NULL,
                                   params, NULL, NULL, 0);
        ok = pg_ok(s->pg, r, "usher_snapshot_begin");
        PQclear(r);
    }
    batch b = {0};
    uint64_t rows = 0, end_lsn = 0;
    bool ended = false;
    size_t used = 0;
    uint64_t last_data = mono_ms();
    while (ok && !ended && !atomic_load(&stopping)) {
        int rd = http_read(&h, 1000);
        if (rd < 0) {
            ok = false;
            break;
        }
        if (rd == 0) {
            /* The server builds the whole snapshot before its first byte. */
            if (mono_ms() - last_data > 600000) {
                logf_("warn", "snapshot stalled (10 minutes without a byte)", "shard=%" PRIu32,
                      s->shard);
                ok = false;
            }
            continue;
        }
        last_data = mono_ms();
        if (h.headers_done && h.status != 200) {
            http_read_all(&h, 5000);
            logf_("warn", "snapshot refused", "shard=%" PRIu32 " status=%d body=%.*s", s->shard,
                  h.status, (int)(h.body_len < 300 ? h.body_len : 300), h.body ? h.body : "");
            ok = false;
            break;
        }
        char *line;
        while (ok && (line = http_line(&h, &used)) != NULL) {
            size_t len = strlen(line);
            json_t *o = json_loads(line, 0, NULL);
            const char *type = json_string_value(json_object_get(o, "type"));
            if (type == NULL) {
                logf_("error", "unusable snapshot line", "shard=%" PRIu32 " line=%.200s", s->shard,
                      line);
                ok = false;
            } else if (strcmp(type, "snapshot.end") == 0) {
                end_lsn = (uint64_t)json_integer_value(json_object_get(o, "lsn"));
                uint64_t want = (uint64_t)json_integer_value(json_object_get(o, "rows"));
                ended = true;
                if (want != rows) {
                    logf_("error", "snapshot incomplete",
                          "shard=%" PRIu32 " rows=%" PRIu64 " announced=%" PRIu64, s->shard, rows,
                          want);
                    ok = false;
                }
            } else if (strcmp(type, "snapshot.begin") != 0) {
                ok = batch_add(&b, line, len, 1, 0);
                rows++;
            }
            json_decref(o);
            if (ok && (b.n >= cfg.batch_max || b.len >= BATCH_BYTES_MAX || ended) && b.n > 0) {
                b.json[b.len] = ']';
                b.json[b.len + 1] = '\0';
                const char *params[2] = {sh, b.json};
                PGresult *r =
                    PQexecParams(s->pg, "SELECT usher_snapshot_rows($1::integer, $2::jsonb)", 2,
                                 NULL, params, NULL, NULL, 0);
                ok = pg_ok(s->pg, r, "usher_snapshot_rows");
                PQclear(r);
                batch_reset(&b);
            }
        }
        http_compact(&h, &used);
    }
    if (ok && ended) {
        char lsn[24];
        snprintf(lsn, sizeof(lsn), "%" PRIu64, end_lsn);
        const char *params[2] = {sh, lsn};
        PGresult *r = PQexecParams(s->pg, "SELECT usher_snapshot_end($1::integer, $2::bigint)", 2,
                                   NULL, params, NULL, NULL, 0);
        ok = pg_ok(s->pg, r, "usher_snapshot_end") && pg_exec(s->pg, "COMMIT", "commit");
        PQclear(r);
    } else {
        ok = false;
    }
    if (!ok)
        pg_exec(s->pg, "ROLLBACK", "rollback");
    free(b.json);
    free(b.times);
    http_close(&h);
    if (ok) {
        s->applied = end_lsn;
        atomic_store(&s->st.lsn, end_lsn);
        atomic_fetch_add(&s->st.bootstraps, 1);
        logf_("info", "bootstrapped from a snapshot",
              "shard=%" PRIu32 " lsn=%" PRIu64 " rows=%" PRIu64, s->shard, end_lsn, rows);
    }
    return ok;
}

/* ---- Following a stream ------------------------------------------------------------------------
 */

typedef enum { FOLLOW_RETRY, FOLLOW_GONE, FOLLOW_FATAL } follow_end;

/* Streams from applied + 1 until something breaks. */
static follow_end follow(shard_ctx *s)
{
    char path[160];
    snprintf(path, sizeof(path), "/api/replication?shard=%" PRIu32 "&from_lsn=%" PRIu64, s->shard,
             s->applied + 1);
    http h;
    if (http_get(&h, path) != 0)
        return FOLLOW_RETRY;
    follow_end end = FOLLOW_RETRY;
    batch b = {0};
    size_t used = 0;
    uint64_t last_line = mono_ms();
    bool logged = false;
    while (!atomic_load(&stopping)) {
        int rd = http_read(&h, 200);
        if (rd < 0) {
            logf_("warn", "stream closed", "shard=%" PRIu32 " next_lsn=%" PRIu64, s->shard,
                  s->applied + 1);
            break;
        }
        if (h.headers_done && h.status != 200) {
            http_read_all(&h, 5000);
            if (h.status == 410) {
                logf_("info", "WAL no longer has our LSN: bootstrapping",
                      "shard=%" PRIu32 " from_lsn=%" PRIu64, s->shard, s->applied + 1);
                end = FOLLOW_GONE;
            } else {
                logf_("warn", "stream refused", "shard=%" PRIu32 " status=%d body=%.*s", s->shard,
                      h.status, (int)(h.body_len < 300 ? h.body_len : 300), h.body ? h.body : "");
                end = h.status == 416 || h.status == 401 || h.status == 403 ? FOLLOW_FATAL
                                                                            : FOLLOW_RETRY;
            }
            break;
        }
        if (h.headers_done && !logged) {
            logged = true;
            logf_("info", "streaming", "shard=%" PRIu32 " from_lsn=%" PRIu64, s->shard,
                  s->applied + 1);
        }
        if (rd == 0 && mono_ms() - last_line > STREAM_SILENCE_MS) {
            logf_("warn", "stream silent (no heartbeat): reconnecting", "shard=%" PRIu32, s->shard);
            break;
        }
        bool bad = false;
        char *line;
        while (!bad && (line = http_line(&h, &used)) != NULL) {
            last_line = mono_ms();
            size_t len = strlen(line);
            line_info li = classify(s->shard, line, len);
            switch (li.kind) {
            case LINE_HEARTBEAT:
                atomic_store(&s->st.durable_lsn, li.durable_lsn);
                break;
            case LINE_ERROR:
                logf_("warn", "the stream ended with an error", "shard=%" PRIu32 " detail=\"%s\"",
                      s->shard, li.detail);
                bad = true;
                break;
            case LINE_BAD:
                logf_("error", "unusable line in the stream", "shard=%" PRIu32 " detail=\"%s\"",
                      s->shard, li.detail);
                bad = true;
                break;
            case LINE_EVENT: {
                uint64_t want = s->applied + b.n + 1;
                if (li.lsn != want) {
                    logf_("error", "LSN out of sequence",
                          "shard=%" PRIu32 " expected=%" PRIu64 " got=%" PRIu64, s->shard, want,
                          li.lsn);
                    bad = true;
                    break;
                }
                if (li.lsn > atomic_load(&s->st.durable_lsn))
                    atomic_store(&s->st.durable_lsn, li.lsn);
                if (!batch_add(&b, line, len, li.lsn, li.ts_ms)) {
                    bad = true;
                    break;
                }
                if ((b.n >= cfg.batch_max || b.len >= BATCH_BYTES_MAX) && !batch_apply(s, &b))
                    bad = true;
                break;
            }
            }
        }
        http_compact(&h, &used);
        if (bad)
            break;
        /* Nothing more waiting on the socket: commit what we have (low load
         * means small batches and low lag; high load fills them). */
        if (b.n > 0) {
            struct pollfd p = {.fd = h.fd, .events = POLLIN};
            if (poll(&p, 1, 0) == 0 && !batch_apply(s, &b))
                break;
        }
    }
    if (b.n > 0 && !atomic_load(&stopping))
        batch_apply(s, &b); /* what arrived before the break is good */
    free(b.json);
    free(b.times);
    http_close(&h);
    return end;
}

static void shard_main(void *arg)
{
    shard_ctx *s = arg;
    uint32_t backoff = BACKOFF_MIN_MS;
    while (!atomic_load(&stopping)) {
        if (s->pg == NULL || PQstatus(s->pg) != CONNECTION_OK) {
            if (s->pg != NULL)
                PQfinish(s->pg);
            s->pg = pg_connect();
            if (s->pg == NULL) {
                nap(backoff_next(&backoff));
                continue;
            }
        }
        /* The stored position decides where to go on, after any failure. */
        if (!read_state(s)) {
            PQfinish(s->pg);
            s->pg = NULL;
            nap(backoff_next(&backoff));
            continue;
        }
        atomic_store(&s->st.lsn, s->applied);
        uint64_t before = s->applied;
        follow_end e = follow(s);
        if (atomic_load(&stopping))
            break;
        if (e == FOLLOW_GONE) {
            if (bootstrap(s)) {
                backoff = BACKOFF_MIN_MS;
                continue;
            }
        } else if (e == FOLLOW_FATAL) {
            backoff = BACKOFF_MAX_MS; /* a configuration problem: retry slowly, loudly */
        }
        if (s->applied > before)
            backoff = BACKOFF_MIN_MS; /* it made progress: reconnect quickly */
        atomic_fetch_add(&s->st.reconnects, 1);
        nap(backoff_next(&backoff));
    }
    if (s->pg != NULL)
        PQfinish(s->pg);
    s->pg = NULL;
}

/* ---- Startup: the shard count from /api/replication/status -------------------------------- */

static int fetch_shard_count(void)
{
    http h;
    if (http_get(&h, "/api/replication/status") != 0)
        return -1;
    int n = -1;
    if (http_read_all(&h, 10000) == 0 && h.status == 200) {
        json_t *o = json_loadb(h.body, h.body_len, 0, NULL);
        json_t *arr = json_object_get(o, "shards");
        if (json_is_array(arr))
            n = (int)json_array_size(arr);
        json_decref(o);
    } else {
        logf_("warn", "status refused", "status=%d body=%.*s", h.status,
              (int)(h.body_len < 300 ? h.body_len : 300), h.body ? h.body : "");
        if (h.status == 401 || h.status == 403)
            n = -2;
    }
    http_close(&h);
    return n;
}

/* ---- Stats ------------------------------------------------------------------------------------
 */

static uint64_t lag_quantile(const uint64_t *hist, uint64_t total, double q)
{
    if (total == 0)
        return 0;
    uint64_t rank = (uint64_t)(q * (double)(total - 1)), seen = 0;
    for (uint64_t i = 0; i < LAG_BUCKETS; i++) {
        seen += hist[i];
        if (seen > rank)
            return i;
    }
    return LAG_BUCKETS - 1;
}

/* One line for all shards: lag since the last line, or (`final`) since the start. */
static void stats_line(bool final)
{
    static uint64_t hist[LAG_BUCKETS];
    memset(hist, 0, sizeof(hist));
    uint64_t events = 0, batches = 0, total = 0, lag_lsn = 0, max = 0, boots = 0, reconn = 0;
    for (uint32_t i = 0; i < nshards; i++) {
        shard_ctx *s = &shards[i];
        events += atomic_load(&s->st.events);
        batches += atomic_load(&s->st.batches);
        boots += atomic_load(&s->st.bootstraps);
        reconn += atomic_load(&s->st.reconnects);
        uint64_t d = atomic_load(&s->st.durable_lsn), l = atomic_load(&s->st.lsn);
        lag_lsn += d > l ? d - l : 0;
        uv_mutex_lock(&s->st.mu);
        uint64_t *h = final ? s->st.lag : s->st.lag_iv;
        for (int b = 0; b < LAG_BUCKETS; b++) {
            hist[b] += h[b];
            total += h[b];
        }
        uint64_t m = final ? s->st.lag_max : s->st.lag_iv_max;
        if (m > max)
            max = m;
        memset(s->st.lag_iv, 0, sizeof(s->st.lag_iv));
        s->st.lag_iv_max = 0;
        uv_mutex_unlock(&s->st.mu);
    }
    logf_("info", final ? "summary" : "stats",
          "events=%" PRIu64 " batches=%" PRIu64 " bootstraps=%" PRIu64 " reconnects=%" PRIu64
          " lag_lsn=%" PRIu64 " lag_ms_p50=%" PRIu64 " lag_ms_p99=%" PRIu64 " lag_ms_max=%" PRIu64,
          events, batches, boots, reconn, lag_lsn, lag_quantile(hist, total, 0.50),
          lag_quantile(hist, total, 0.99), max);
}

/* ---- main --------------------------------------------------------------------------------------
 */

static void on_signal(int sig)
{
    (void)sig;
    atomic_store(&stopping, true);
}

static bool parse_source(const char *url)
{
    if (strncmp(url, "http://", 7) != 0)
        return false;
    const char *h = url + 7;
    const char *end = h + strcspn(h, "/");
    const char *colon = NULL;
    if (*h == '[') {
        const char *rb = memchr(h, ']', (size_t)(end - h));
        if (rb == NULL)
            return false;
        snprintf(cfg.host, sizeof(cfg.host), "%.*s", (int)(rb - h - 1), h + 1);
        colon = rb + 1 < end && rb[1] == ':' ? rb + 1 : NULL;
    } else {
        colon = memchr(h, ':', (size_t)(end - h));
        size_t hl = (size_t)((colon != NULL ? colon : end) - h);
        if (hl == 0 || hl >= sizeof(cfg.host))
            return false;
        snprintf(cfg.host, sizeof(cfg.host), "%.*s", (int)hl, h);
    }
    if (colon != NULL)
        snprintf(cfg.port, sizeof(cfg.port), "%.*s", (int)(end - colon - 1), colon + 1);
    else
        snprintf(cfg.port, sizeof(cfg.port), "80");
    return cfg.port[0] != '\0' && strspn(cfg.port, "0123456789") == strlen(cfg.port);
}

static void usage_fail(const char *msg, const char *arg)
{
    fprintf(stderr, "usher-pgexport: %s%s\n(see --help)\n", msg, arg != NULL ? arg : "");
    exit(2);
}

/* usherd's token key, for --http: USHER_JWT_SECRET when set, else the secret file, as
 * usherd resolves it. Unlike usherd, a missing file is an error: a new secret would
 * match no token. Exits 2 on failure. */
static void http_jwt_key(const char *file, auth_jwt_key *key)
{
    const char *env = getenv(AUTH_SECRET_ENV);
    if (env == NULL && file == NULL)
        usage_fail("--http needs usherd's JWT signing secret: --jwt-secret-file "
                   "DATA_DIR/jwt.secret (usherd's) or USHER_JWT_SECRET",
                   NULL);
    struct stat st;
    if (env == NULL && lstat(file, &st) != 0) {
        fprintf(stderr,
                "usher-pgexport: --jwt-secret-file %s: %s (it is usherd's "
                "DATA_DIR/jwt.secret, made at usherd's first start)\n",
                file, strerror(errno));
        exit(2);
    }
    if (auth_init() != 0)
        usage_fail("cannot initialise libsodium", NULL);
    uint8_t secret[AUTH_SECRET_MAX];
    size_t len = 0;
    int rc = auth_secret_resolve(env, file, secret, &len);
    if (rc == 0)
        rc = auth_jwt_key_init(key, secret, len, "usher", "usher-api", 30);
    memset(secret, 0, sizeof(secret));
    if (rc != 0) {
        fprintf(stderr, "usher-pgexport: the JWT secret (%s) is unusable: %s\n",
                env != NULL ? AUTH_SECRET_ENV : file, auth_strerror(rc));
        exit(2);
    }
}

int main(int argc, char **argv)
{
    const char *source = getenv("USHER_EXPORT_SOURCE");
    const char *token = getenv("USHER_EXPORT_TOKEN");
    const char *token_file = NULL;
    cfg.pg = getenv("USHER_EXPORT_PG");
    static pgx_http_config hc = {.tz = "UTC", .statement_timeout_ms = 5000, .log = logf_};
    const char *secret_file = NULL;
    char err[512];
    hc.listen = getenv("USHER_EXPORT_HTTP");
    if (getenv("USHER_EXPORT_HTTP_TZ") != NULL)
        hc.tz = getenv("USHER_EXPORT_HTTP_TZ");
    if (getenv("USHER_EXPORT_HTTP_ALLOW_ORIGIN") != NULL &&
        !pgx_http_add_origins(&hc, getenv("USHER_EXPORT_HTTP_ALLOW_ORIGIN"), err, sizeof(err)))
        usage_fail("USHER_EXPORT_HTTP_ALLOW_ORIGIN: ", err);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            fputs(usage_text, stdout);
            return 0;
        }
        if (strcmp(a, "--migrate-only") == 0) {
            cfg.migrate_only = true;
            continue;
        }
        if (i + 1 >= argc)
            usage_fail("missing value for ", a);
        const char *v = argv[++i];
        if (strcmp(a, "--source") == 0) {
            source = v;
        } else if (strcmp(a, "--pg") == 0) {
            cfg.pg = v;
        } else if (strcmp(a, "--token") == 0) {
            token = v;
        } else if (strcmp(a, "--token-file") == 0) {
            token_file = v;
        } else if (strcmp(a, "--http") == 0) {
            hc.listen = v;
        } else if (strcmp(a, "--jwt-secret-file") == 0) {
            secret_file = v;
        } else if (strcmp(a, "--http-allow-origin") == 0) {
            if (!pgx_http_add_origins(&hc, v, err, sizeof(err)))
                usage_fail("--http-allow-origin: ", err);
        } else if (strcmp(a, "--http-tz") == 0) {
            hc.tz = v;
        } else if (strcmp(a, "--http-statement-timeout") == 0) {
            char *end;
            unsigned long n = strtoul(v, &end, 10);
            if (*end != '\0' || v[0] == '-' || n < 10 || n > 600000)
                usage_fail("--http-statement-timeout must be 10..600000 ms, not ", v);
            hc.statement_timeout_ms = (uint32_t)n;
        } else if (strcmp(a, "--batch") == 0 || strcmp(a, "--stats-interval") == 0) {
            char *end;
            unsigned long n = strtoul(v, &end, 10);
            bool batch = strcmp(a, "--batch") == 0;
            if (*end != '\0' || v[0] == '-' || (batch ? n < 1 || n > 100000 : n > 86400))
                usage_fail(batch ? "--batch must be 1..100000, not "
                                 : "--stats-interval must "
                                   "be 0..86400, not ",
                           v);
            if (batch)
                cfg.batch_max = (uint32_t)n;
            else
                cfg.stats_interval_s = (uint32_t)n;
        } else {
            usage_fail("unknown option ", a);
        }
    }
    if (cfg.pg == NULL)
        usage_fail("--pg is required", NULL);
    if (hc.listen != NULL && hc.listen[0] == '\0')
        hc.listen = NULL;
    if (hc.listen != NULL) {
        http_jwt_key(secret_file, &hc.jwt);
        if (strlen(hc.tz) == 0 || strlen(hc.tz) > PGX_TZ_MAX)
            usage_fail("--http-tz must be a time zone name such as Asia/Kolkata, not ", hc.tz);
        hc.pg = cfg.pg;
    }
    if (token_file != NULL) {
        FILE *f = fopen(token_file, "r");
        if (f == NULL || fgets(cfg.token, sizeof(cfg.token), f) == NULL)
            usage_fail("cannot read --token-file ", token_file);
        fclose(f);
        cfg.token[strcspn(cfg.token, "\r\n")] = '\0';
    } else if (token != NULL) {
        if (strlen(token) >= sizeof(cfg.token))
            usage_fail("the token is too long", NULL);
        snprintf(cfg.token, sizeof(cfg.token), "%s", token);
    }
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    /* Schema first: nothing is streamed into tables that do not exist. */
    uint32_t backoff = BACKOFF_MIN_MS;
    for (;;) {
        PGconn *c = pg_connect();
        bool ok = c != NULL && migrate(c);
        if (c != NULL)
            PQfinish(c);
        if (ok)
            break;
        if (atomic_load(&stopping))
            return 1;
        nap(backoff_next(&backoff));
    }
    logf_("info", "schema ready", "migrations=%d", pgexport_migration_count);
    if (cfg.migrate_only)
        return 0;
    if (source == NULL || !parse_source(source))
        usage_fail("--source must be http://HOST:PORT, not ", source != NULL ? source : "(none)");
    /* Before the source is asked anything: the dashboard works while usherd is away. */
    pgx_http *http = NULL;
    if (hc.listen != NULL) {
        http = pgx_http_start(&hc, err, sizeof(err));
        memset(&hc.jwt, 0, sizeof(hc.jwt)); /* the server has its copy */
        if (http == NULL) {
            logf_("error", "cannot serve analytics over HTTP", "error=\"%s\"", err);
            return 1;
        }
    }

    backoff = BACKOFF_MIN_MS;
    int n;
    while ((n = fetch_shard_count()) < 0) {
        if (n == -2)
            logf_("error", "the source refused our token", "hint=\"%s\"",
                  "--token must be an admin login token or usherd's replication token");
        if (atomic_load(&stopping)) {
            pgx_http_stop(http);
            return 1;
        }
        nap(backoff_next(&backoff));
    }
    if (n < 1 || n > SHARDS_MAX) {
        logf_("error", "the source reports an impossible shard count", "shards=%d", n);
        pgx_http_stop(http);
        return 1;
    }
    nshards = (uint32_t)n;
    logf_("info", "following", "source=http://%s:%s shards=%" PRIu32 " batch=%" PRIu32, cfg.host,
          cfg.port, nshards, cfg.batch_max);
    for (uint32_t i = 0; i < nshards; i++) {
        shards[i].shard = i;
        uv_mutex_init(&shards[i].st.mu);
        if (uv_thread_create(&shards[i].thread, shard_main, &shards[i]) != 0) {
            logf_("error", "cannot start a thread", "shard=%" PRIu32, i);
            atomic_store(&stopping, true);
            for (uint32_t j = 0; j < i; j++)
                uv_thread_join(&shards[j].thread);
            pgx_http_stop(http);
            return 1;
        }
    }
    uint64_t next_stats = mono_ms() + cfg.stats_interval_s * 1000ull;
    while (!atomic_load(&stopping)) {
        usleep(100 * 1000);
        if (cfg.stats_interval_s > 0 && mono_ms() >= next_stats) {
            stats_line(false);
            next_stats += cfg.stats_interval_s * 1000ull;
        }
    }
    pgx_http_stop(http);
    for (uint32_t i = 0; i < nshards; i++)
        uv_thread_join(&shards[i].thread);
    stats_line(true);
    return 0;
}
