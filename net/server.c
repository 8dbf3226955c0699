/*
 * server.c - shard threads: recovery, listeners, the durability loop,
 * routing, health and metrics, clean shutdown.
 */
#include "net_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define TICK_MS  100
#define DRAIN_MS 5000

_Noreturn void net__assert_fail(const char *expr, const char *file, int line)
{
    fprintf(stderr, "usher net: assertion failed: %s (%s:%d)\n", expr, file, line);
    abort();
}

const char *net_strerror(int err)
{
    switch (err) {
    case 0:
        return "success";
    case NET_EADDR:
        return "listen address must be IPv4:PORT or [IPv6]:PORT with a numeric address";
    case NET_ECONFIG:
        return "configuration value out of range";
    case NET_ERECOVER:
        return "a shard could not be recovered";
    default:
        return err < 0 && err > -4096 ? uv_strerror(err) : "unknown error";
    }
}

void net__log(const char *level, const char *msg, const char *fmt, ...)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    time_t secs = ts.tv_sec;
    gmtime_r(&secs, &tm);
    char line[2048];
    int n =
        snprintf(line, sizeof(line), "ts=%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ level=%s msg=\"%s\"",
                 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                 ts.tv_nsec / 1000000, level, msg);
    if (fmt != NULL && n > 0 && (size_t)n < sizeof(line) - 2) {
        line[n++] = ' ';
        va_list ap;
        va_start(ap, fmt);
        int m = vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
        va_end(ap);
        if (m > 0)
            n += m < (int)(sizeof(line) - (size_t)n) ? m : (int)(sizeof(line) - (size_t)n) - 1;
    }
    /* One write per line so lines from shard threads do not interleave. */
    fprintf(stderr, "%.*s\n", n, line);
}

void net_config_default(net_config *c)
{
    memset(c, 0, sizeof(*c));
    c->listen = "127.0.0.1:8080";
    c->data_dir = "./data";
    c->shards = 0;
    c->connections_max = 20000;
    c->header_bytes_max = 8192;
    c->body_bytes_max = 65536;
    c->pipeline_max = 16;
    c->request_timeout_ms = 10000;
    c->idle_timeout_ms = 60000;
    c->backlog = 4096;
    engine_config_default(&c->engine);
}

/* ---- Time ------------------------------------------------------------------- */

/* Engine time: wall-clock ms, never going backwards on a shard (an NTP step
 * back must not make the engine refuse every request). */
static int64_t shard_now_ms(net_shard *sh)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t now = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    int64_t floor = engine_now_ms(sh->e);
    return now > floor ? now : floor;
}

/* ---- Journal ------------------------------------------------------------------ */

/* Appends an engine record to the shard's WAL; returns its LSN or a negative
 * WAL error. The state change it describes is already applied. */
static int64_t shard_journal(net_shard *sh, const engine_record *rec)
{
    int64_t lsn = snapshot_record_append(sh->wal, rec);
    if (lsn > 0)
        atomic_store(&sh->last_lsn, (uint64_t)lsn);
    return lsn;
}

static void on_durable(wal_writer *w, uint64_t lsn, void *arg)
{
    (void)w;
    net_shard *sh = arg;
    atomic_store(&sh->durable_lsn, lsn);
    if (sh->sched != NULL)
        snapshot_scheduler_durable(sh->sched, lsn);
}

static void on_wal_failed(wal_writer *w, int err, void *arg)
{
    (void)w;
    net_shard *sh = arg;
    atomic_store(&sh->wal_error, err);
    atomic_store(&sh->ready, 0);
    net__log("error", "write-ahead log failed; shard refuses writes until restarted",
             "shard=%" PRIu32 " error=\"%s\"", sh->id, wal_strerror(err));
}

/* ---- Recovery ------------------------------------------------------------------ */

static int shard_recover(net_shard *sh)
{
    const net_config *c = &sh->server->cfg;
    snprintf(sh->dir, sizeof(sh->dir), "%s/shard-%" PRIu32, c->data_dir, sh->id);
    if (mkdir(sh->dir, 0755) < 0 && errno != EEXIST) {
        net__log("error", "cannot create shard directory",
                 "shard=%" PRIu32 " dir=\"%s\" error=\"%s\"", sh->id, sh->dir, strerror(errno));
        return -errno;
    }
    snapshot_recover_opts o = {.shard_dir = sh->dir,
                               .shard = sh->id,
                               .cfg = c->engine,
                               .use_snapshot = true,
                               .repair = true};
    o.cfg.id_prefix = (uint16_t)sh->id;
    snapshot_recovery rep;
    int rc = snapshot_recover(&o, &sh->e, &rep);
    if (rc != 0) {
        net__log("error", "recovery failed", "shard=%" PRIu32 " error=\"%s\" detail=\"%s\"", sh->id,
                 snapshot_strerror(rc), rep.error);
        return NET_ERECOVER;
    }
    if (rep.torn_bytes > 0)
        net__log("warn", "cut a torn WAL tail (an unacknowledged batch interrupted by a crash)",
                 "shard=%" PRIu32 " segment=\"%s\" bytes=%" PRIu64
                 " reason=\"%s\" last_lsn=%" PRIu64,
                 sh->id, rep.torn_segment, rep.torn_bytes, rep.torn_reason, rep.last_lsn);
    net__log("info", "shard recovered",
             "shard=%" PRIu32 " snapshot_lsn=%" PRIu64 " replayed=%" PRIu64 " last_lsn=%" PRIu64
             " seconds=%.3f",
             sh->id, rep.snapshot_lsn, rep.replayed, rep.last_lsn, rep.seconds);
    atomic_store(&sh->last_lsn, rep.last_lsn);
    atomic_store(&sh->durable_lsn, rep.last_lsn);
    atomic_store(&sh->snapshot_lsn, rep.snapshot_lsn);
    return 0;
}

typedef struct recover_job {
    net_shard *sh;
    int rc;
} recover_job;

static void recover_thread(void *arg)
{
    recover_job *j = arg;
    j->rc = shard_recover(j->sh);
}

/* ---- The shard loop ----------------------------------------------------------------- */

static void shard_stop_step(net_shard *sh);

static void on_tick(uv_timer_t *t)
{
    net_shard *sh = t->data;
    if (sh->stopping) {
        shard_stop_step(sh);
        return;
    }
    if (atomic_load(&sh->wal_error) == 0) {
        /* Expired holds give their seats back; each expiry is journaled. */
        engine_record recs[256];
        size_t n;
        do {
            n = engine_holds_expire(sh->e, shard_now_ms(sh), recs, NULL, 256);
            for (size_t i = 0; i < n; i++)
                shard_journal(sh, &recs[i]);
        } while (n == 256);
        snapshot_scheduler_tick(sh->sched, uv_now(&sh->loop));
    }
    atomic_store(&sh->live_holds, engine_holds_live(sh->e));
    snapshot_sched_stats st;
    snapshot_scheduler_stats(sh->sched, &st);
    atomic_store(&sh->snapshots, st.written);
    if (st.last_lsn > 0)
        atomic_store(&sh->snapshot_lsn, st.last_lsn);
}

static void on_listener_closed(uv_handle_t *h)
{
    (void)h;
}

static void on_wal_closed(wal_writer *w, void *arg)
{
    (void)w;
    net_shard *sh = arg;
    sh->wal = NULL;
    net__log("info", "shard stopped", "shard=%" PRIu32 " durable_lsn=%" PRIu64, sh->id,
             atomic_load(&sh->durable_lsn));
    uv_close((uv_handle_t *)&sh->tick, NULL);
    uv_close((uv_handle_t *)&sh->wake, NULL);
}

enum { STOP_DRAIN = 1, STOP_SNAPSHOT, STOP_WAL, STOP_DONE };

/* Shutdown, one step per tick: drain connections, final snapshot (written
 * while the WAL is still open, see snapshot.h), close the scheduler, close
 * the WAL, close the loop's handles. */
static void shard_stop_step(net_shard *sh)
{
    int phase = sh->stop_phase == 0 ? STOP_DRAIN : sh->stop_phase;
    if (phase == STOP_DRAIN) {
        sh->stop_phase = STOP_DRAIN;
        /* Clients get DRAIN_MS to take their answers; a stalled reader must
         * not hold back the final snapshot past a supervisor's kill. */
        if (sh->nconns > 0 && uv_now(&sh->loop) - sh->stop_started_ms >= DRAIN_MS)
            net__conn_close_all(sh, true);
        if (sh->nconns > 0)
            return;
        if (atomic_load(&sh->wal_error) == 0 &&
            atomic_load(&sh->last_lsn) != atomic_load(&sh->snapshot_lsn)) {
            int rc = snapshot_scheduler_take(sh->sched);
            if (rc != 0 && rc != SNAPSHOT_EBUSY)
                net__log("error", "final snapshot not taken", "shard=%" PRIu32 " error=\"%s\"",
                         sh->id, snapshot_strerror(rc));
        }
        phase = sh->stop_phase = STOP_SNAPSHOT;
    }
    if (phase == STOP_SNAPSHOT) {
        if (snapshot_scheduler_busy(sh->sched) && atomic_load(&sh->wal_error) == 0)
            return;
        snapshot_sched_stats st;
        snapshot_scheduler_stats(sh->sched, &st);
        net__log("info", "final snapshot", "shard=%" PRIu32 " lsn=%" PRIu64 " written=%" PRIu64,
                 sh->id, st.last_lsn, st.written);
        snapshot_scheduler_close(sh->sched);
        sh->sched = NULL;
        sh->stop_phase = STOP_WAL;
        uv_timer_stop(&sh->tick);
        wal_writer_close(sh->wal, on_wal_closed, sh);
    }
}

static void on_wake(uv_async_t *a)
{
    net_shard *sh = a->data;
    if (!atomic_load(&sh->server->stop) || sh->stopping)
        return;
    sh->stopping = true;
    atomic_store(&sh->ready, 0);
    uv_close((uv_handle_t *)&sh->listener, on_listener_closed);
    sh->stop_started_ms = uv_now(&sh->loop);
    net__conn_close_all(sh, false);
    uv_timer_start(&sh->tick, on_tick, 0, TICK_MS);
}

static void on_connection(uv_stream_t *listener, int status)
{
    net_shard *sh = listener->data;
    if (status < 0) {
        net__log("warn", "accept failed", "shard=%" PRIu32 " error=\"%s\"", sh->id,
                 uv_strerror(status));
        return;
    }
    net__conn_accept(sh, listener);
}

static void shard_thread(void *arg)
{
    net_shard *sh = arg;
    uv_run(&sh->loop, UV_RUN_DEFAULT);
    sh->exit_rc = uv_loop_close(&sh->loop);
}

/* A listening socket made by hand: libuv 1.44 has no SO_REUSEPORT flag. */
static int shard_listen(net_shard *sh, const struct sockaddr *addr, socklen_t len)
{
    int fd = socket(addr->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0 ||
        bind(fd, addr, len) < 0) {
        int rc = -errno;
        close(fd);
        return rc;
    }
    uv_tcp_init(&sh->loop, &sh->listener);
    sh->listener.data = sh;
    int rc = uv_tcp_open(&sh->listener, fd);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&sh->listener, (int)sh->server->cfg.backlog, on_connection);
    return rc;
}

static int parse_listen(const char *s, struct sockaddr_storage *ss, char *host, size_t host_len)
{
    char buf[128];
    if (strlen(s) >= sizeof(buf))
        return NET_EADDR;
    strcpy(buf, s);
    char *port_s;
    bool v6 = buf[0] == '[';
    if (v6) {
        char *end = strchr(buf, ']');
        if (end == NULL || end[1] != ':')
            return NET_EADDR;
        *end = '\0';
        port_s = end + 2;
        int n = snprintf(host, host_len, "%s", buf + 1);
        if (n < 0 || (size_t)n >= host_len)
            return NET_EADDR;
    } else {
        char *colon = strrchr(buf, ':');
        if (colon == NULL)
            return NET_EADDR;
        *colon = '\0';
        port_s = colon + 1;
        int n = snprintf(host, host_len, "%s", buf);
        if (n < 0 || (size_t)n >= host_len)
            return NET_EADDR;
    }
    char *end;
    long port = strtol(port_s, &end, 10);
    if (*port_s == '\0' || *end != '\0' || port < 0 || port > 65535)
        return NET_EADDR;
    int rc = v6 ? uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)ss)
                : uv_ip4_addr(host, (int)port, (struct sockaddr_in *)ss);
    return rc == 0 ? 0 : NET_EADDR;
}

static void shard_free(net_shard *sh)
{
    engine_destroy(sh->e);
    snapshot_store_close(sh->store);
}

int net_server_start(const net_config *cfg, net_server **out, uint16_t *port)
{
    net_server *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return -ENOMEM;
    s->cfg = *cfg;
    if (s->cfg.shards == 0) {
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        s->cfg.shards = cpus < 1 ? 1 : cpus > NET_SHARDS_MAX ? NET_SHARDS_MAX : (uint32_t)cpus;
    }
    if (s->cfg.shards > NET_SHARDS_MAX || s->cfg.pipeline_max < 1 ||
        s->cfg.pipeline_max > NET_PIPELINE_HARD_MAX || s->cfg.header_bytes_max < 256 ||
        s->cfg.connections_max < 1 || s->cfg.request_timeout_ms < 1 || s->cfg.idle_timeout_ms < 1) {
        free(s);
        return NET_ECONFIG;
    }
    struct sockaddr_storage addr;
    int rc = parse_listen(s->cfg.listen, &addr, s->listen_host, sizeof(s->listen_host));
    if (rc != 0) {
        free(s);
        return rc;
    }
    if (mkdir(s->cfg.data_dir, 0755) < 0 && errno != EEXIST) {
        rc = -errno;
        net__log("error", "cannot create data directory", "dir=\"%s\" error=\"%s\"",
                 s->cfg.data_dir, strerror(errno));
        free(s);
        return rc;
    }
    s->nshards = s->cfg.shards;
    s->shards = calloc(s->nshards, sizeof(*s->shards));
    if (s->shards == NULL) {
        free(s);
        return -ENOMEM;
    }

    /* Recover every shard in parallel: each is independent. */
    recover_job jobs[NET_SHARDS_MAX];
    uv_thread_t threads[NET_SHARDS_MAX];
    for (uint32_t i = 0; i < s->nshards; i++) {
        s->shards[i].id = i;
        s->shards[i].server = s;
        jobs[i] = (recover_job){.sh = &s->shards[i]};
        uv_thread_create(&threads[i], recover_thread, &jobs[i]);
    }
    for (uint32_t i = 0; i < s->nshards; i++) {
        uv_thread_join(&threads[i]);
        if (jobs[i].rc != 0 && rc == 0)
            rc = jobs[i].rc;
    }

    /* Loops, WAL writers, snapshot stores, listeners. Shard 0 binds first so
     * that port 0 becomes a real port the others share. */
    for (uint32_t i = 0; rc == 0 && i < s->nshards; i++) {
        net_shard *sh = &s->shards[i];
        uv_loop_init(&sh->loop);
        char wal_dir[4300], snap_dir[4300];
        snprintf(wal_dir, sizeof(wal_dir), "%s/wal", sh->dir);
        snprintf(snap_dir, sizeof(snap_dir), "%s/snapshot", sh->dir);
        wal_writer_config wc = {.dir = wal_dir,
                                .shard = i,
                                .next_lsn = atomic_load(&sh->last_lsn) + 1,
                                .segment_bytes = s->cfg.wal_segment_bytes,
                                .durable_cb = on_durable,
                                .failed_cb = on_wal_failed,
                                .arg = sh};
        rc = wal_writer_open(&sh->loop, &wc, &sh->wal);
        if (rc == 0)
            rc = snapshot_store_open(snap_dir, i, 0, &sh->store);
        snapshot_policy pol = {.wal_bytes = s->cfg.snapshot_wal_bytes,
                               .interval_ms = s->cfg.snapshot_interval_ms};
        if (rc == 0)
            rc = snapshot_scheduler_open(&sh->loop, sh->e, sh->wal, sh->store, &pol, &sh->sched);
        if (rc == 0)
            rc = shard_listen(sh, (struct sockaddr *)&addr,
                              addr.ss_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                                         : sizeof(struct sockaddr_in));
        if (rc != 0) {
            net__log("error", "shard start failed", "shard=%" PRIu32 " error=\"%s\"", i,
                     rc <= -30000 ? snapshot_strerror(rc) : uv_strerror(rc));
            break;
        }
        if (i == 0) {
            int len = sizeof(addr);
            uv_tcp_getsockname(&sh->listener, (struct sockaddr *)&addr, &len);
            s->port = ntohs(addr.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&addr)->sin6_port
                                                       : ((struct sockaddr_in *)&addr)->sin_port);
        }
        uv_async_init(&sh->loop, &sh->wake, on_wake);
        sh->wake.data = sh;
        uv_timer_init(&sh->loop, &sh->tick);
        sh->tick.data = sh;
        uv_timer_start(&sh->tick, on_tick, TICK_MS, TICK_MS);
    }
    if (rc != 0) {
        /* Startup failed part way: nothing was served; release what exists.
         * Loops with open handles are abandoned (the process is exiting). */
        for (uint32_t i = 0; i < s->nshards; i++)
            shard_free(&s->shards[i]);
        return rc;
    }
    for (uint32_t i = 0; i < s->nshards; i++) {
        net_shard *sh = &s->shards[i];
        atomic_store(&sh->ready, 1);
        rc = uv_thread_create(&sh->thread, shard_thread, sh);
        NET_ASSERT(rc == 0);
    }
    net__log("info", "serving", "listen=\"%s\" port=%u shards=%" PRIu32 " data_dir=\"%s\"",
             s->listen_host, s->port, s->nshards, s->cfg.data_dir);
    *port = s->port;
    *out = s;
    return 0;
}

void net_server_stop(net_server *s)
{
    atomic_store(&s->stop, 1);
    for (uint32_t i = 0; i < s->nshards; i++)
        uv_async_send(&s->shards[i].wake);
}

int net_server_wait(net_server *s)
{
    int rc = 0;
    for (uint32_t i = 0; i < s->nshards; i++) {
        uv_thread_join(&s->shards[i].thread);
        if (s->shards[i].exit_rc != 0 && rc == 0)
            rc = s->shards[i].exit_rc;
        shard_free(&s->shards[i]);
    }
    free(s->shards);
    free(s);
    return rc;
}

/* ---- Routes ---------------------------------------------------------------------------- */

static bool path_is(const net_request *r, const char *path)
{
    size_t n = strlen(path);
    return strncmp(r->url, path, n) == 0 && (r->url[n] == '\0' || r->url[n] == '?');
}

static void route_livez(net_request *r)
{
    static const char body[] = "{\"status\":\"ok\"}";
    net__respond(r, 200, "application/json", NULL, body, sizeof(body) - 1);
}

static void route_readyz(net_request *r)
{
    net_server *s = r->conn->shard->server;
    char body[8192];
    size_t n = 0;
    bool all = true;
    n += (size_t)snprintf(body + n, sizeof(body) - n, "{\"shards\":[");
    for (uint32_t i = 0; i < s->nshards; i++) {
        net_shard *sh = &s->shards[i];
        int err = atomic_load(&sh->wal_error);
        bool ready = atomic_load(&sh->ready) && err == 0;
        all = all && ready;
        n += (size_t)snprintf(
            body + n, sizeof(body) - n,
            "%s{\"shard\":%" PRIu32 ",\"ready\":%s,\"durable_lsn\":%" PRIu64 "%s%s%s}",
            i ? "," : "", i, ready ? "true" : "false", atomic_load(&sh->durable_lsn),
            err ? ",\"error\":\"" : "", err ? wal_strerror(err) : "", err ? "\"" : "");
    }
    n += (size_t)snprintf(body + n, sizeof(body) - n, "],\"status\":\"%s\"}",
                          all ? "ready" : "not_ready");
    net__respond(r, all ? 200 : 503, "application/json", all ? NULL : "Retry-After: 1\r\n", body,
                 n);
}

/* Per-shard series that are one _Atomic uint64_t each: one table, one loop. */
static const struct shard_series {
    const char *name, *type, *help;
    size_t off; /* of the _Atomic uint64_t in net_shard */
} shard_series[] = {
    {"usher_connections_accepted_total", "counter", "Connections accepted.",
     offsetof(net_shard, m.connections_accepted)},
    {"usher_connections_refused_total", "counter", "Connections refused at the connection limit.",
     offsetof(net_shard, m.connections_refused)},
    {"usher_http_bad_requests_total", "counter", "Requests refused by the parser or its limits.",
     offsetof(net_shard, m.bad_requests)},
    {"usher_http_timeouts_total", "counter", "Connections timed out (slow request or idle).",
     offsetof(net_shard, m.timeouts)},
    {"usher_wal_durable_lsn", "gauge", "Highest LSN synced to disk.",
     offsetof(net_shard, durable_lsn)},
    {"usher_holds_live", "gauge", "Live holds (including expired ones not yet swept).",
     offsetof(net_shard, live_holds)},
    {"usher_snapshots_total", "counter", "Snapshots written.", offsetof(net_shard, snapshots)},
};

static uint64_t shard_load(net_shard *sh, size_t off)
{
    return atomic_load((_Atomic uint64_t *)((char *)sh + off));
}

/* Prometheus text format 0.0.4. */
static void route_metrics(net_request *r)
{
    net_server *s = r->conn->shard->server;
    size_t cap = 16384 + (size_t)s->nshards * 4096, n = 0;
    char *b = malloc(cap);
    NET_ASSERT(b != NULL);
#define OUT(...) (n += (size_t)snprintf(b + n, cap - n, __VA_ARGS__))
    OUT("# HELP usher_connections Open client connections.\n# TYPE usher_connections gauge\n"
        "usher_connections %" PRIu32 "\n",
        atomic_load(&s->connections));
    for (size_t k = 0; k < sizeof(shard_series) / sizeof(shard_series[0]); k++) {
        const struct shard_series *m = &shard_series[k];
        OUT("# HELP %s %s\n# TYPE %s %s\n", m->name, m->help, m->name, m->type);
        for (uint32_t i = 0; i < s->nshards; i++)
            OUT("%s{shard=\"%" PRIu32 "\"} %" PRIu64 "\n", m->name, i,
                shard_load(&s->shards[i], m->off));
    }
    OUT("# HELP usher_http_requests_total HTTP requests answered, by status class.\n"
        "# TYPE usher_http_requests_total counter\n");
    for (uint32_t i = 0; i < s->nshards; i++)
        for (int c = 1; c <= 5; c++)
            OUT("usher_http_requests_total{shard=\"%" PRIu32 "\",code=\"%dxx\"} %" PRIu64 "\n", i,
                c, atomic_load(&s->shards[i].m.status_class[c]));
    OUT("# HELP usher_http_request_duration_seconds Time from first byte to response.\n"
        "# TYPE usher_http_request_duration_seconds histogram\n");
    for (uint32_t i = 0; i < s->nshards; i++) {
        net_metrics *m = &s->shards[i].m;
        uint64_t cum = 0;
        for (int k = 0; k < 15; k++) {
            cum += atomic_load(&m->latency_hist[k]);
            OUT("usher_http_request_duration_seconds_bucket{shard=\"%" PRIu32
                "\",le=\"%g\"} %" PRIu64 "\n",
                i, (double)(16u << k) / 1e6, cum);
        }
        cum += atomic_load(&m->latency_hist[15]);
        OUT("usher_http_request_duration_seconds_bucket{shard=\"%" PRIu32 "\",le=\"+Inf\"} %" PRIu64
            "\n",
            i, cum);
        OUT("usher_http_request_duration_seconds_sum{shard=\"%" PRIu32 "\"} %.9f\n", i,
            (double)atomic_load(&m->latency_sum_ns) / 1e9);
        OUT("usher_http_request_duration_seconds_count{shard=\"%" PRIu32 "\"} %" PRIu64 "\n", i,
            cum);
    }
    OUT("# HELP usher_shard_ready 1 when the shard serves, 0 while recovering or after a WAL "
        "failure.\n# TYPE usher_shard_ready gauge\n");
    for (uint32_t i = 0; i < s->nshards; i++)
        OUT("usher_shard_ready{shard=\"%" PRIu32 "\"} %d\n", i,
            atomic_load(&s->shards[i].ready) && !atomic_load(&s->shards[i].wal_error));
#undef OUT
    NET_ASSERT(n < cap);
    net__respond(r, 200, "text/plain; version=0.0.4; charset=utf-8", NULL, b, n);
    free(b);
}

void net__dispatch(net_request *r)
{
    static const struct {
        const char *path;
        void (*fn)(net_request *);
        const char *name;
    } gets[] = {
        {"/livez", route_livez, "livez"},
        {"/readyz", route_readyz, "readyz"},
        {"/metrics", route_metrics, "metrics"},
    };
    for (size_t i = 0; i < sizeof(gets) / sizeof(gets[0]); i++) {
        if (!path_is(r, gets[i].path))
            continue;
        r->route = gets[i].name;
        if (r->method != HTTP_GET && r->method != HTTP_HEAD) {
            net__respond_problem(r, 405, "method-not-allowed", "Method not allowed",
                                 "this resource supports GET and HEAD only", NULL,
                                 "Allow: GET, HEAD\r\n");
        } else {
            gets[i].fn(r);
        }
        net__request_finish(r);
        return;
    }
    r->route = "not_found";
    net__respond_problem(r, 404, "not-found", "Not found", "no such resource", NULL, NULL);
    net__request_finish(r);
}
