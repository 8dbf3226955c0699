/*
 * server.c - shard threads: recovery, listeners, the durability loop,
 * routing, health and metrics, clean shutdown.
 */
#include "net_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <sodium.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
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
    case NET_ELOCKED:
        return "another usherd is using this data directory";
    case NET_ESECRET:
        return "the JWT secret is unusable";
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

void net_log(const char *level, const char *msg)
{
    net__log(level, msg, NULL);
}

static const char *const rate_limit_names[NET_RL_COUNT] = {
    "login-ip",     "login-email", "reserve-user", "reserve-ip",
    "confirm-user", "confirm-ip",  "onsale-user",  "onsale-ip"};

/* Defaults (docs/api.md, "Rate limits"): logins are slow on purpose
 * (argon2id) and a person types a password a few times a minute; an
 * address may be a NAT of many people, so its limits are higher. */
static const net_rate_limit rate_limit_defaults[NET_RL_COUNT] = {
    [NET_RL_LOGIN_IP] = {30, 60},     [NET_RL_LOGIN_EMAIL] = {5, 60},
    [NET_RL_RESERVE_USER] = {20, 10}, [NET_RL_RESERVE_IP] = {200, 10},
    [NET_RL_CONFIRM_USER] = {10, 10}, [NET_RL_CONFIRM_IP] = {100, 10},
    [NET_RL_ONSALE_USER] = {10, 60},  [NET_RL_ONSALE_IP] = {300, 60},
};

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
    c->idempotency_keys = 65536;
    c->token_ttl_s = 86400;
    c->replication_streams_max = 16;
    for (int i = 0; i < NET_RL_COUNT; i++)
        c->rate_limits[i] = rate_limit_defaults[i];
    c->rate_limit_keys = 1 << 20;
    engine_config_default(&c->engine);
}

const char *net_rate_limit_name(int limit)
{
    return limit >= 0 && limit < NET_RL_COUNT ? rate_limit_names[limit] : NULL;
}

/* One "NAME=COUNT/SECONDS", "NAME=off", "off" or "defaults" (len bytes). */
static int rate_limit_item(net_rate_limit *out, const char *item, size_t len, char *err,
                           size_t err_cap)
{
    char buf[64];
    if (len >= sizeof(buf)) {
        snprintf(err, err_cap, "'%.*s...' is not a rate limit", 32, item);
        return NET_ECONFIG;
    }
    memcpy(buf, item, len);
    buf[len] = '\0';
    if (strcmp(buf, "off") == 0 || strcmp(buf, "defaults") == 0) {
        for (int i = 0; i < NET_RL_COUNT; i++)
            out[i] = buf[0] == 'o' ? (net_rate_limit){0, 0} : rate_limit_defaults[i];
        return 0;
    }
    char *eq = strchr(buf, '=');
    int limit = -1;
    for (int i = 0; eq != NULL && i < NET_RL_COUNT; i++) {
        if ((size_t)(eq - buf) == strlen(rate_limit_names[i]) &&
            memcmp(buf, rate_limit_names[i], (size_t)(eq - buf)) == 0)
            limit = i;
    }
    if (limit < 0) {
        snprintf(err, err_cap,
                 "'%s' is not off, defaults or NAME=COUNT/SECONDS with NAME one of login-ip, "
                 "login-email, reserve-user, reserve-ip, confirm-user, confirm-ip, onsale-user, "
                 "onsale-ip",
                 buf);
        return NET_ECONFIG;
    }
    const char *v = eq + 1;
    if (strcmp(v, "off") == 0) {
        out[limit] = (net_rate_limit){0, 0};
        return 0;
    }
    unsigned long long count = 0, secs = 0;
    int used = 0;
    if (v[0] < '0' || v[0] > '9' || sscanf(v, "%llu/%llu%n", &count, &secs, &used) != 2 ||
        v[used] != '\0' || strchr(v, '/') == NULL || strchr(v, '/')[1] < '0' ||
        strchr(v, '/')[1] > '9' || count < 1 || count > RATELIMIT_COUNT_MAX || secs < 1 ||
        secs > RATELIMIT_WINDOW_MAX_S) {
        snprintf(err, err_cap, "%s: '%s' must be COUNT/SECONDS (COUNT 1..%d, SECONDS 1..%d) or off",
                 rate_limit_names[limit], v, RATELIMIT_COUNT_MAX, RATELIMIT_WINDOW_MAX_S);
        return NET_ECONFIG;
    }
    out[limit] = (net_rate_limit){(uint32_t)count, (uint32_t)secs};
    return 0;
}

int net_rate_limit_apply(net_config *c, const char *spec, char *err, size_t err_cap)
{
    net_rate_limit next[NET_RL_COUNT];
    memcpy(next, c->rate_limits, sizeof(next));
    for (const char *p = spec;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma != NULL ? (size_t)(comma - p) : strlen(p);
        int rc = rate_limit_item(next, p, len, err, err_cap);
        if (rc != 0)
            return rc;
        if (comma == NULL)
            break;
        p = comma + 1;
    }
    memcpy(c->rate_limits, next, sizeof(next));
    return 0;
}

/* ---- Time ------------------------------------------------------------------- */

/* Engine time: wall-clock ms, never going backwards on a shard (an NTP step
 * back must not make the engine refuse every request). */
int64_t net__mono_ms(void)
{
    return (int64_t)(uv_hrtime() / 1000000);
}

int64_t net__now_ms(net_shard *sh)
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
static void shard_fail_stop(net_shard *sh, int err, const char *why)
{
    if (atomic_load(&sh->wal_error) != 0)
        return;
    atomic_store(&sh->wal_error, err);
    atomic_store(&sh->ready, 0);
    net__log("error", why, "shard=%" PRIu32 " error=\"%s\"", sh->id, wal_strerror(err));
    net__jobs_wal_failed(sh);
}

int64_t net__journal(net_shard *sh, const engine_record *rec)
{
    int64_t lsn = snapshot_record_append(sh->wal, rec);
    if (lsn > 0) {
        atomic_store(&sh->last_lsn, (uint64_t)lsn);
    } else {
        /* The engine already changed and its record is not in the WAL:
         * memory is ahead of the log. Nothing more may be acknowledged
         * from this shard (a later record could build on the lost one and
         * make recovery fail); it refuses writes until restarted. */
        shard_fail_stop(sh, (int)lsn,
                        "a change could not be journaled; shard refuses writes until "
                        "restarted");
    }
    return lsn;
}

static void on_durable(wal_writer *w, uint64_t lsn, void *arg)
{
    (void)w;
    net_shard *sh = arg;
    atomic_store(&sh->durable_lsn, lsn);
    if (sh->sched != NULL)
        snapshot_scheduler_durable(sh->sched, lsn);
    net__jobs_durable(sh, lsn);
    net__sse_durable(sh, lsn);
}

static void on_wal_failed(wal_writer *w, int err, void *arg)
{
    (void)w;
    shard_fail_stop(arg, err, "write-ahead log failed; shard refuses writes until restarted");
}

/* ---- Recovery ------------------------------------------------------------------ */

/* The engine pass of recovery skips catalog records: catalog_recover reads
 * them separately, from the catalog's own applied LSN. */
static int skip_catalog_record(void *arg, const wal_record *rec)
{
    (void)arg;
    return rec->type == CATALOG_REC_PUT || rec->type == CATALOG_REC_DELETE ? 0 : -1;
}

/* Applies the catalog changes in the shard's WAL after what LMDB has. */
static int catalog_recover(net_shard *sh)
{
    net_server *s = sh->server;
    uint64_t from = catalog_applied_lsn(s->cat, sh->id) + 1;
    uint64_t last = atomic_load(&sh->last_lsn);
    if (from > last) {
        sh->cat_applied_lsn = last;
        return 0;
    }
    char wal_dir[4300];
    snprintf(wal_dir, sizeof(wal_dir), "%s/wal", sh->dir);
    wal_reader *rd;
    int rc = wal_reader_open(wal_dir, from, NULL, &rd);
    if (rc != 0) {
        net__log("error", "catalog recovery: cannot read the WAL",
                 "shard=%" PRIu32 " from_lsn=%" PRIu64 " error=\"%s\"", sh->id, from,
                 wal_strerror(rc));
        return NET_ERECOVER;
    }
    enum { CHUNK = 256 };
    catalog_change chs[CHUNK];
    uint8_t *bufs[CHUNK];
    size_t n = 0;
    uint64_t applied = 0, lsn = from - 1;
    wal_record rec;
    for (;;) {
        rc = wal_reader_next(rd, &rec);
        if (rc < 0) {
            net__log("error", "catalog recovery: WAL unreadable", "shard=%" PRIu32 " error=\"%s\"",
                     sh->id, wal_reader_error(rd));
            break;
        }
        bool end = rc == 0 || rec.lsn > last;
        if (!end && (rec.type == CATALOG_REC_PUT || rec.type == CATALOG_REC_DELETE)) {
            /* The reader's buffer is reused: keep a copy until applied. */
            bufs[n] = malloc(rec.payload_len ? rec.payload_len : 1);
            NET_ASSERT(bufs[n] != NULL);
            memcpy(bufs[n], rec.payload, rec.payload_len);
            if (catalog_change_decode(rec.type, bufs[n], rec.payload_len, &chs[n]) != 0) {
                net__log("error", "catalog recovery: malformed catalog record",
                         "shard=%" PRIu32 " lsn=%" PRIu64, sh->id, rec.lsn);
                free(bufs[n]);
                rc = -1;
                break;
            }
            n++;
        }
        if (!end)
            lsn = rec.lsn;
        if (n == CHUNK || (end && lsn >= from)) {
            rc = catalog_apply(s->cat, sh->id, end ? last : lsn, chs, n);
            for (size_t i = 0; i < n; i++)
                free(bufs[i]);
            applied += n;
            n = 0;
            if (rc != 0) {
                net__log("error", "catalog recovery: apply failed",
                         "shard=%" PRIu32 " error=\"%s\" detail=\"%s\"", sh->id,
                         catalog_strerror(rc), catalog_last_error());
                break;
            }
        }
        if (end) {
            rc = 0;
            break;
        }
    }
    for (size_t i = 0; i < n; i++)
        free(bufs[i]);
    wal_reader_close(rd);
    if (rc != 0)
        return NET_ERECOVER;
    sh->cat_applied_lsn = last;
    net__log("info", "catalog recovered",
             "shard=%" PRIu32 " from_lsn=%" PRIu64 " changes=%" PRIu64 " applied_lsn=%" PRIu64,
             sh->id, from, applied, last);
    return 0;
}

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
                               .repair = true,
                               .other_cb = skip_catalog_record};
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
    if (j->rc == 0)
        j->rc = catalog_recover(j->sh);
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
        int64_t now = net__now_ms(sh);
        net__holds_sweep(sh, now);
        net__onsale_steps(sh, now); /* queue starts and admissions come due with time */
        snapshot_scheduler_tick(sh->sched, uv_now(&sh->loop));
    }
    net__sse_tick(sh, net__now_ms(sh));
    net__catalog_kick(sh);
    atomic_store(&sh->live_holds, engine_holds_live(sh->e));
    uint64_t held, sold;
    uint32_t shows;
    engine_seat_totals(sh->e, &held, &sold, &shows);
    atomic_store(&sh->m.seats_held, held);
    atomic_store(&sh->m.seats_sold, sold);
    atomic_store(&sh->m.showtimes, shows);
    engine_onsale_totals ot;
    engine_onsale_totals_get(sh->e, &ot);
    atomic_store(&sh->m.waiters, ot.waiters);
    atomic_store(&sh->m.queues, ot.queues);
    atomic_store(&sh->m.queue_waiting, ot.queue_waiting);
    atomic_store(&sh->m.queue_admitted, ot.queue_admitted);
    atomic_store(&sh->m.waitq_len, sh->waitq_len);
    wal_stats ws;
    wal_writer_stats(sh->wal, &ws);
    atomic_store(&sh->m.wal_records, ws.records);
    atomic_store(&sh->m.wal_batches, ws.batches);
    atomic_store(&sh->m.wal_syncs, ws.syncs);
    atomic_store(&sh->m.wal_sync_ns, ws.sync_ns_total);
    atomic_store(&sh->m.wal_bytes, ws.durable_bytes);
    atomic_store(&sh->m.wal_batch_max, ws.max_batch_records);
    for (int i = 0; i < 24; i++)
        atomic_store(&sh->m.wal_sync_hist[i], ws.sync_ns_hist[i]);
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
    net__sse_close(sh);
    uv_close((uv_handle_t *)&sh->wake, NULL);
    uv_close((uv_handle_t *)&sh->mail, NULL);
}

enum { STOP_DRAIN = 1, STOP_SNAPSHOT, STOP_WAL, STOP_DONE };

/* Shutdown, one step per tick: drain connections, final snapshot (written
 * while the WAL is still open, see snapshot.h), close the scheduler, close
 * the WAL, close the loop's handles. */
static void shard_stop_step(net_shard *sh)
{
    int phase = sh->stop_phase == 0 ? STOP_DRAIN : sh->stop_phase;
    net__catalog_kick(sh); /* catalog waiters must not hold the drain back */
    if (phase == STOP_DRAIN) {
        sh->stop_phase = STOP_DRAIN;
        /* Clients get DRAIN_MS to take their answers; a stalled reader must
         * not hold back the final snapshot past a supervisor's kill. */
        if (sh->nconns > 0 && uv_now(&sh->loop) - sh->stop_started_ms >= DRAIN_MS)
            net__conn_close_all(sh, true);
        if (sh->nconns > 0)
            return;
        /* No connection is left, so this shard sends no new job; it still
         * runs jobs from shards that are draining, until every shard is done
         * (a shard that closed its WAL could not answer them). */
        if (!net__jobs_idle(sh) && atomic_load(&sh->wal_error) == 0)
            return;
        if (!sh->drained) {
            sh->drained = true;
            atomic_fetch_add(&sh->server->drained, 1);
        }
        if (atomic_load(&sh->server->drained) < sh->server->nshards)
            return;
        net__catalog_kick(sh);
        if (sh->cat_applying)
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
    if (!sh->server->cfg.no_listen)
        uv_close((uv_handle_t *)&sh->listener, on_listener_closed);
    sh->stop_started_ms = uv_now(&sh->loop);
    net__sse_stop(sh); /* a final event to every stream before it closes */
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
    net__sse_free(sh);
    engine_destroy(sh->e);
    snapshot_store_close(sh->store);
    auth_cache_close(&sh->tokens);
    net__idem_free(&sh->idem);
    net__request_spares_free(sh);
    net__browse_index_free(&sh->browse);
    while (sh->cat_pending != NULL) {
        net_cat_pending *p = sh->cat_pending;
        sh->cat_pending = p->next;
        free(p->buf);
        free(p);
    }
}

static void server_free(net_server *s)
{
    for (uint32_t i = 0; s->shards != NULL && i < s->nshards; i++)
        shard_free(&s->shards[i]);
    net__mail_free(s);
    catalog_close(s->cat);
    auth_jwt_key_close(&s->jwt);
    if (s->lock_fd >= 0)
        close(s->lock_fd);
    uv_mutex_destroy(&s->call_mu);
    uv_cond_destroy(&s->call_cond);
    uv_mutex_destroy(&s->refs_mu);
    ratelimit_destroy(s->rl);
    net__web_free(s->web);
    free(s->shards);
    free(s);
}

/* The rate-limit table, when a limit is on (after auth_init: the SipHash
 * key is random). 0 or NET_ECONFIG / -ENOMEM. */
static int rate_limits_setup(net_server *s)
{
    ratelimit_config rc = {.max_keys = s->cfg.rate_limit_keys};
    for (int i = 0; i < NET_RL_COUNT; i++) {
        s->rl_policy[i] = -1;
        const net_rate_limit *l = &s->cfg.rate_limits[i];
        if (l->count == 0)
            continue;
        s->rl_policy[i] = (int)rc.npolicies;
        rc.policies[rc.npolicies++] = (ratelimit_policy){l->count, l->window_s};
    }
    if (rc.npolicies == 0)
        return 0;
    randombytes_buf(rc.secret, sizeof(rc.secret));
    int rc_ = ratelimit_create(&rc, &s->rl);
    sodium_memzero(rc.secret, sizeof(rc.secret));
    if (rc_ != 0)
        net__log("error", "cannot create the rate-limit table", "error=\"%s\"",
                 ratelimit_strerror(rc_));
    return rc_ == 0 ? 0 : rc_ == RATELIMIT_ENOMEM ? -ENOMEM : NET_ECONFIG;
}

/* One server per data directory: a second one would interleave WAL writes. */
static int data_dir_lock(net_server *s)
{
    char path[4200];
    snprintf(path, sizeof(path), "%s/LOCK", s->cfg.data_dir);
    s->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (s->lock_fd < 0)
        return -errno;
    if (flock(s->lock_fd, LOCK_EX | LOCK_NB) < 0) {
        int rc = errno == EWOULDBLOCK ? NET_ELOCKED : -errno;
        return rc;
    }
    return 0;
}

/* The JWT signing key: USHER_JWT_SECRET, else DATA_DIR/jwt.secret (created
 * once, mode 0600). */
static int jwt_setup(net_server *s)
{
    char path[4200];
    snprintf(path, sizeof(path), "%s/jwt.secret", s->cfg.data_dir);
    uint8_t secret[AUTH_SECRET_MAX];
    size_t len = 0;
    int rc = auth_secret_resolve(getenv("USHER_JWT_SECRET"), path, secret, &len);
    if (rc == 0)
        rc = auth_jwt_key_init(&s->jwt, secret, len, "usher", "usher-api", 30);
    memset(secret, 0, sizeof(secret));
    if (rc != 0)
        net__log("error", "JWT secret unusable", "path=\"%s\" error=\"%s\"", path,
                 auth_strerror(rc));
    return rc == 0 ? 0 : NET_ESECRET;
}

int net_server_start(const net_config *cfg, net_server **out, uint16_t *port)
{
    net_server *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return -ENOMEM;
    s->cfg = *cfg;
    s->lock_fd = -1;
    uv_mutex_init(&s->call_mu);
    uv_cond_init(&s->call_cond);
    uv_mutex_init(&s->refs_mu);
    s->pw_opts =
        cfg->password_cost_min ? auth_password_opts_min() : auth_password_opts_interactive();
    net__api_init(s);
    /* A peer that resets its connection makes a write raise SIGPIPE, which
     * would kill the process: errors come back from write() instead. */
    signal(SIGPIPE, SIG_IGN);
    if (s->cfg.shards == 0) {
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        s->cfg.shards = cpus < 1 ? 1 : cpus > NET_SHARDS_MAX ? NET_SHARDS_MAX : (uint32_t)cpus;
    }
    if (s->cfg.shards > NET_SHARDS_MAX || s->cfg.pipeline_max < 1 ||
        s->cfg.pipeline_max > NET_PIPELINE_HARD_MAX || s->cfg.header_bytes_max < 256 ||
        s->cfg.connections_max < 1 || s->cfg.request_timeout_ms < 1 || s->cfg.idle_timeout_ms < 1 ||
        s->cfg.replication_streams_max < 1 || s->cfg.rate_limit_keys < RATELIMIT_STRIPES_MAX ||
        s->cfg.rate_limit_keys > RATELIMIT_KEYS_MAX ||
        (s->cfg.replication_token != NULL && strlen(s->cfg.replication_token) < 32)) {
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
        server_free(s);
        return rc;
    }
    s->nshards = s->cfg.shards;
    s->shards = calloc(s->nshards, sizeof(*s->shards));
    if (s->shards == NULL) {
        server_free(s);
        return -ENOMEM;
    }
    rc = data_dir_lock(s);
    if (rc == 0)
        rc = auth_init() == 0 ? jwt_setup(s) : NET_ESECRET;
    if (rc == 0) {
        char cat_dir[4200];
        snprintf(cat_dir, sizeof(cat_dir), "%s/catalog", s->cfg.data_dir);
        rc = catalog_open(cat_dir, s->nshards, 0, &s->cat);
        if (rc == CATALOG_ESHARDS)
            net__log("error", "the data directory was created with another shard count",
                     "dir=\"%s\" shards=%" PRIu32
                     " hint=\"start with the --shards it was created with\"",
                     s->cfg.data_dir, s->nshards);
        else if (rc != 0)
            net__log("error", "cannot open the catalog", "dir=\"%s\" error=\"%s\" detail=\"%s\"",
                     cat_dir, catalog_strerror(rc), catalog_last_error());
        if (rc != 0)
            rc = NET_ERECOVER;
    }
    if (rc == 0)
        rc = rate_limits_setup(s);
    if (rc == 0 && s->cfg.web_root != NULL) {
        char err[600] = "";
        rc = net__web_load(s->cfg.web_root, s->cfg.analytics_url, &s->web, err, sizeof(err));
        size_t bytes, files = net__web_count(s->web, &bytes);
        if (rc != 0)
            net__log("error", "cannot load --web-root", "dir=\"%s\" error=\"%s\"", s->cfg.web_root,
                     err);
        else
            net__log("info", "web files loaded", "dir=\"%s\" files=%zu bytes=%zu", s->cfg.web_root,
                     files, bytes);
        if (rc != 0)
            rc = NET_ECONFIG;
    }
    if (rc == 0)
        rc = net__mail_init(s);
    for (uint32_t i = 0; rc == 0 && i < s->nshards; i++) {
        rc = auth_cache_init(&s->shards[i].tokens, 4096);
        if (rc == 0)
            rc = net__idem_init(&s->shards[i].idem, s->cfg.idempotency_keys);
    }
    if (rc != 0) {
        if (rc == NET_ELOCKED)
            net__log("error", "another usherd uses this data directory", "dir=\"%s\"",
                     s->cfg.data_dir);
        server_free(s);
        return rc;
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
    atomic_store(&s->next_id, catalog_max_id(s->cat) + 1);

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
            wal_writer_keep_after(sh->wal, sh->cat_applied_lsn);
        if (rc == 0)
            rc = snapshot_store_open(snap_dir, i, 0, &sh->store);
        snapshot_policy pol = {.wal_bytes = s->cfg.snapshot_wal_bytes,
                               .interval_ms = s->cfg.snapshot_interval_ms};
        if (rc == 0)
            rc = snapshot_scheduler_open(&sh->loop, sh->e, sh->wal, sh->store, &pol, &sh->sched);
        if (rc == 0 && !s->cfg.no_listen)
            rc = shard_listen(sh, (struct sockaddr *)&addr,
                              addr.ss_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                                         : sizeof(struct sockaddr_in));
        if (rc != 0) {
            net__log("error", "shard start failed", "shard=%" PRIu32 " error=\"%s\"", i,
                     rc <= -30000 ? snapshot_strerror(rc) : uv_strerror(rc));
            break;
        }
        if (i == 0 && !s->cfg.no_listen) {
            int len = sizeof(addr);
            uv_tcp_getsockname(&sh->listener, (struct sockaddr *)&addr, &len);
            s->port = ntohs(addr.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&addr)->sin6_port
                                                       : ((struct sockaddr_in *)&addr)->sin_port);
        }
        uv_async_init(&sh->loop, &sh->wake, on_wake);
        sh->wake.data = sh;
        uv_async_init(&sh->loop, &sh->mail, net__on_mail);
        sh->mail.data = sh;
        uv_timer_init(&sh->loop, &sh->tick);
        sh->tick.data = sh;
        uv_timer_start(&sh->tick, on_tick, TICK_MS, TICK_MS);
        rc = net__sse_init(sh);
        if (rc != 0)
            break;
    }
    if (rc != 0) {
        /* Startup failed part way: nothing was served; release what exists.
         * Loops with open handles are abandoned (the process is exiting). */
        server_free(s);
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
    }
    server_free(s);
    return rc;
}

/* ---- Routes ---------------------------------------------------------------------------- */

void net__route_livez(net_request *r)
{
    static const char body[] = "{\"status\":\"ok\"}";
    net__respond(r, 200, "application/json", NULL, body, sizeof(body) - 1);
}

void net__route_readyz(net_request *r)
{
    net_server *s = r->shard->server;
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
    {"usher_replication_streams", "gauge", "Open replication streams of this shard's WAL.",
     offsetof(net_shard, m.repl_streams)},
    {"usher_replication_events_total", "counter", "Events sent on replication streams.",
     offsetof(net_shard, m.repl_events)},
    {"usher_replication_bytes_total", "counter", "Event bytes sent on replication streams.",
     offsetof(net_shard, m.repl_bytes)},
    {"usher_waitlist_waiters", "gauge", "Users on waiting lists.", offsetof(net_shard, m.waiters)},
    {"usher_waitlist_offers_total", "counter", "Waiting-list offers made (holds for a waiter).",
     offsetof(net_shard, m.offers)},
    {"usher_queues", "gauge", "Showtimes with a virtual queue.", offsetof(net_shard, m.queues)},
    {"usher_queue_waiting", "gauge", "Users in virtual queue lines (prequeue included).",
     offsetof(net_shard, m.queue_waiting)},
    {"usher_queue_admitted", "gauge", "Users admitted so far by the virtual queues that exist.",
     offsetof(net_shard, m.queue_admitted)},
    {"usher_sse_streams", "gauge", "Open event streams (seat maps and queue places).",
     offsetof(net_shard, m.sse_streams)},
    {"usher_sse_feeds", "gauge", "Watched showtimes and queues (with or without watchers).",
     offsetof(net_shard, m.sse_feeds)},
    {"usher_sse_events_total", "counter", "Seat change events encoded (once each).",
     offsetof(net_shard, m.sse_events)},
    {"usher_sse_bytes_total", "counter", "Bytes written to event streams.",
     offsetof(net_shard, m.sse_bytes)},
    {"usher_sse_dropped_slow_total", "counter",
     "Seat streams ended because they fell behind the kept changes.",
     offsetof(net_shard, m.sse_dropped_slow)},
    {"usher_sse_stalled_total", "counter", "Event streams closed after a write stalled 30 s.",
     offsetof(net_shard, m.sse_stalled)},
    {"usher_holds_total", "counter", "Holds placed.", offsetof(net_shard, m.holds)},
    {"usher_confirms_total", "counter", "Holds confirmed into bookings.",
     offsetof(net_shard, m.confirms)},
    {"usher_cancels_total", "counter", "Bookings cancelled.", offsetof(net_shard, m.cancels)},
    {"usher_releases_total", "counter", "Holds released by their owner.",
     offsetof(net_shard, m.releases)},
    {"usher_expiries_total", "counter", "Holds expired.", offsetof(net_shard, m.expiries)},
    {"usher_seats_held", "gauge", "Seats held now.", offsetof(net_shard, m.seats_held)},
    {"usher_seats_sold", "gauge", "Seats sold now.", offsetof(net_shard, m.seats_sold)},
    {"usher_showtimes", "gauge", "Showtimes on the shard.", offsetof(net_shard, m.showtimes)},
    {"usher_cross_shard_jobs_total", "counter", "Requests sent to another shard over the rings.",
     offsetof(net_shard, m.forwarded)},
    {"usher_cross_shard_refused_total", "counter",
     "Requests refused with 503 because the ring to another shard was full.",
     offsetof(net_shard, m.forward_refused)},
    {"usher_durability_backlog_refused_total", "counter",
     "Writes refused with 503 because too many waited for a sync.",
     offsetof(net_shard, m.backlog_refused)},
    {"usher_durability_waiting", "gauge", "Answers waiting for a WAL sync.",
     offsetof(net_shard, m.waitq_len)},
    {"usher_catalog_applied_lsn", "gauge", "WAL LSN up to which catalog changes are in LMDB.",
     offsetof(net_shard, m.catalog_applied_lsn)},
    {"usher_wal_records_total", "counter", "WAL records appended.",
     offsetof(net_shard, m.wal_records)},
    {"usher_wal_batches_total", "counter", "WAL group-commit batches written.",
     offsetof(net_shard, m.wal_batches)},
    {"usher_wal_bytes_total", "counter", "WAL bytes written and synced.",
     offsetof(net_shard, m.wal_bytes)},
    {"usher_wal_batch_records_max", "gauge",
     "Most records one group-commit batch has held (mean: records_total / batches_total).",
     offsetof(net_shard, m.wal_batch_max)},
};

static uint64_t shard_load(net_shard *sh, size_t off)
{
    return atomic_load((_Atomic uint64_t *)((char *)sh + off));
}

/* Prometheus text format 0.0.4. */
/* One Prometheus histogram per shard from `buckets` counters at `hist_off`
 * (bucket k counts values below first_le_us << k microseconds; the last one
 * the rest) and a nanosecond sum at `sum_off`. Appends to b[n..cap). */
static size_t out_histogram(char *b, size_t n, size_t cap, net_server *s, const char *name,
                            const char *help, size_t hist_off, int buckets, uint64_t first_le_us,
                            size_t sum_off)
{
#define OUT(...) (n += (size_t)snprintf(b + n, cap - n, __VA_ARGS__))
    OUT("# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    for (uint32_t i = 0; i < s->nshards; i++) {
        uint64_t cum = 0;
        for (int k = 0; k < buckets; k++) {
            cum += shard_load(&s->shards[i], hist_off + (size_t)k * sizeof(_Atomic uint64_t));
            if (k < buckets - 1)
                OUT("%s_bucket{shard=\"%" PRIu32 "\",le=\"%g\"} %" PRIu64 "\n", name, i,
                    (double)(first_le_us << k) / 1e6, cum);
        }
        OUT("%s_bucket{shard=\"%" PRIu32 "\",le=\"+Inf\"} %" PRIu64 "\n", name, i, cum);
        OUT("%s_sum{shard=\"%" PRIu32 "\"} %.9f\n", name, i,
            (double)shard_load(&s->shards[i], sum_off) / 1e9);
        OUT("%s_count{shard=\"%" PRIu32 "\"} %" PRIu64 "\n", name, i, cum);
    }
#undef OUT
    NET_ASSERT(n < cap);
    return n;
}

void net__route_metrics(net_request *r)
{
    net_server *s = r->shard->server;
    size_t cap = 16384 + (size_t)s->nshards * (16384 + NET_ROUTE_SLOTS * 5 * 128), n = 0;
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
    OUT("# HELP usher_http_requests_total HTTP requests answered, by route and status class.\n"
        "# TYPE usher_http_requests_total counter\n");
    for (uint32_t i = 0; i < s->nshards; i++) {
        for (int k = 0; k < NET_ROUTE_SLOTS; k++) {
            char label[160];
            const char *route = net__route_label(k, label, sizeof(label));
            if (route == NULL && k != NET_ROUTE_SLOTS - 1)
                continue;
            for (int c = 1; c <= 5; c++) {
                uint64_t v = atomic_load(&s->shards[i].m.route_status[k][c]);
                if (v == 0)
                    continue;
                OUT("usher_http_requests_total{shard=\"%" PRIu32 "\",route=\"%s\",code=\"%dxx\"} "
                    "%" PRIu64 "\n",
                    i, route != NULL ? route : "other", c, v);
            }
        }
    }
    n = out_histogram(b, n, cap, s, "usher_wal_fsync_duration_seconds",
                      "Time per group-commit sync.", offsetof(net_shard, m.wal_sync_hist), 24, 1,
                      offsetof(net_shard, m.wal_sync_ns));
    n = out_histogram(b, n, cap, s, "usher_http_request_duration_seconds",
                      "Time from first byte to response.", offsetof(net_shard, m.latency_hist), 16,
                      16, offsetof(net_shard, m.latency_sum_ns));
    OUT("# HELP usher_rate_limited_total Requests refused with 429 by a rate limit, by limit.\n"
        "# TYPE usher_rate_limited_total counter\n");
    for (int i = 0; i < NET_RL_COUNT; i++)
        OUT("usher_rate_limited_total{limit=\"%s\"} %" PRIu64 "\n", net_rate_limit_name(i),
            atomic_load(&s->rate_limited[i]));
    if (s->rl != NULL) {
        ratelimit_stats st;
        ratelimit_stats_get(s->rl, -1, &st);
        OUT("# HELP usher_rate_limit_keys Rate-limit table entries in use (live or dead).\n"
            "# TYPE usher_rate_limit_keys gauge\nusher_rate_limit_keys %" PRIu64 "\n"
            "# HELP usher_rate_limit_bytes Memory of the rate-limit table.\n"
            "# TYPE usher_rate_limit_bytes gauge\nusher_rate_limit_bytes %" PRIu64 "\n"
            "# HELP usher_rate_limit_evictions_total Live rate-limit entries reused because the "
            "table was at its bound (--rate-limit-keys).\n"
            "# TYPE usher_rate_limit_evictions_total counter\n"
            "usher_rate_limit_evictions_total %" PRIu64 "\n",
            st.entries, st.bytes, st.evicted_live);
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
