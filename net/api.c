/*
 * api.c - the JSON API: routing, authentication, and every handler.
 *
 * Where work runs (docs/architecture.md, "Requests"):
 *   - Parsing, authentication, body validation and catalog reads run on the
 *     shard that accepted the connection (the origin).
 *   - Seat state, holds and bookings run on the shard that owns them: the
 *     showtime's owner (XXH3 of its id), or for a hold or booking the shard in
 *     its id's top 16 bits. The request travels there as a job (mail.c).
 *   - Catalog changes are journaled by shard 0 (theaters, screens, movies,
 *     users) or by the showtime's owner, and answered once LMDB has them.
 *   - Password hashing runs on the libuv threadpool, never on a loop.
 * Every answer that depends on a WAL record leaves only when the record is
 * durable; a read that saw state not yet durable waits for the same sync.
 */
#include "net_internal.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <xxhash.h>

#define CURRENCY        "INR"
#define PAGE_LIMIT_MAX  100
#define PAGE_WINDOW_MAX 10000 /* page * limit: deeper pages are refused */
#define WAITQ_MAX       65536 /* writes waiting for a sync, per shard; beyond: 503 */

/* ---- Small helpers ------------------------------------------------------------------- */

static net_server *srv(net_request *r)
{
    return r->shard->server;
}

/* RFC 3339 UTC ("2026-11-21T18:30:00Z", with millis ".250" when asked). On
 * the seat path: digits by hand for years 0 to 9999, gmtime/strftime else. */
static void format_time(int64_t ms, bool millis, char out[32])
{
    repl_time_format(ms, millis, out);
}

static json_t *json_time(int64_t ms)
{
    char buf[32];
    format_time(ms, ms % 1000 != 0, buf);
    return json_string(buf);
}

/* Sends `obj` (reference stolen) as the answer. */
static void respond_json(net_request *r, int status, json_t *obj, const char *extra)
{
    char *text = json_dumps(obj, JSON_COMPACT);
    NET_ASSERT(text != NULL);
    net__respond(r, status, "application/json", extra, text, strlen(text));
    free(text);
    json_decref(obj);
}

/* RFC 9457 problem with optional extension members (`ext`, stolen). */
static void problem(net_request *r, int status, const char *type, const char *title,
                    const char *detail, const char *field, json_t *ext, const char *extra)
{
    json_t *o = ext != NULL ? ext : json_object();
    char t[160];
    snprintf(t, sizeof(t), "https://usher.dev/problems/%s", type);
    json_object_set_new(o, "type", json_string(t));
    json_object_set_new(o, "title", json_string(title));
    json_object_set_new(o, "status", json_integer(status));
    json_object_set_new(o, "detail", json_string(detail));
    if (field != NULL)
        json_object_set_new(o, "field", json_string(field));
    char *text = json_dumps(o, JSON_COMPACT);
    NET_ASSERT(text != NULL);
    net__respond(r, status, "application/problem+json", extra, text, strlen(text));
    free(text);
    json_decref(o);
}

static void bad_field(net_request *r, const char *field, const char *reason)
{
    problem(r, 400, "invalid-field", "Invalid request field", reason, field, NULL, NULL);
}

static void not_found(net_request *r, const char *what)
{
    char d[128];
    snprintf(d, sizeof(d), "no %s with this id", what);
    problem(r, 404, "not-found", "Not found", d, NULL, NULL, NULL);
}

static void busy(net_request *r, const char *detail)
{
    problem(r, 503, "overloaded", "Service overloaded", detail, NULL, NULL, "Retry-After: 1\r\n");
}

/* Strict decimal uint64 (no sign, no leading zero, at most 20 digits). */
static bool parse_id(const char *s, size_t n, uint64_t *out)
{
    if (n == 0 || n > 20 || (s[0] == '0' && n > 1))
        return false;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        uint64_t d = (uint64_t)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *out = v;
    return v != 0;
}

static int hexval(int c)
{
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

/* Finds query parameter `name`; percent-decodes it into `out`. Returns 1
 * when present, 0 when absent, -1 when malformed or longer than `cap`. */
static int query_get(const net_request *r, const char *name, char *out, size_t cap)
{
    const char *q = strchr(r->url, '?');
    if (q == NULL)
        return 0;
    size_t nl = strlen(name);
    for (const char *p = q + 1; *p != '\0';) {
        const char *amp = strchr(p, '&');
        const char *end = amp != NULL ? amp : p + strlen(p);
        const char *eq = memchr(p, '=', (size_t)(end - p));
        const char *kend = eq != NULL ? eq : end;
        if ((size_t)(kend - p) == nl && memcmp(p, name, nl) == 0) {
            size_t o = 0;
            for (const char *v = eq != NULL ? eq + 1 : end; v < end; v++) {
                int c = (unsigned char)*v;
                if (c == '+') {
                    c = ' ';
                } else if (c == '%') {
                    if (end - v < 3)
                        return -1;
                    int hi = hexval(v[1]), lo = hexval(v[2]);
                    if (hi < 0 || lo < 0)
                        return -1;
                    c = hi * 16 + lo;
                    v += 2;
                }
                if (o + 1 >= cap || c == 0)
                    return -1;
                out[o++] = (char)c;
            }
            out[o] = '\0';
            return 1;
        }
        p = amp != NULL ? amp + 1 : end;
    }
    return 0;
}

/* A query parameter that must be an unsigned integer within [min, max].
 * Returns 1 (set), 0 (absent) or -1 (answered 400). */
static int query_u64(net_request *r, const char *name, uint64_t min, uint64_t max, uint64_t *out)
{
    char buf[32];
    int q = query_get(r, name, buf, sizeof(buf));
    if (q == 0)
        return 0;
    char *end;
    errno = 0; /* strtoull saturates past 2^64 - 1 and says so only in errno */
    unsigned long long v = q > 0 && buf[0] >= '0' && buf[0] <= '9' ? strtoull(buf, &end, 10) : 0;
    if (q < 0 || buf[0] < '0' || buf[0] > '9' || *end != '\0' || errno == ERANGE || v < min ||
        v > max) {
        char reason[128];
        snprintf(reason, sizeof(reason), "must be an integer from %" PRIu64 " to %" PRIu64, min,
                 max);
        bad_field(r, name, reason);
        return -1;
    }
    *out = v;
    return 1;
}

/* A query parameter that must be true or false. Returns 1 (set), 0
 * (absent; *out untouched) or -1 (answered 400). */
static int query_bool(net_request *r, const char *name, bool *out)
{
    char v[8];
    int q = query_get(r, name, v, sizeof(v));
    if (q == 0)
        return 0;
    if (q < 0 || (strcmp(v, "true") != 0 && strcmp(v, "false") != 0)) {
        bad_field(r, name, "must be true or false");
        return -1;
    }
    *out = strcmp(v, "true") == 0;
    return 1;
}

void net__problem(net_request *r, int status, const char *type, const char *title,
                  const char *detail, const char *field, json_t *ext, const char *extra)
{
    problem(r, status, type, title, detail, field, ext, extra);
}

int net__query_u64(net_request *r, const char *name, uint64_t min, uint64_t max, uint64_t *out)
{
    return query_u64(r, name, min, max, out);
}

int net__query_get(const net_request *r, const char *name, char *out, size_t cap)
{
    return query_get(r, name, out, cap);
}

/* page and limit; answers 400 and returns false when invalid. */
static bool query_page(net_request *r, uint64_t *page, uint64_t *limit)
{
    *page = 1;
    *limit = 20;
    if (query_u64(r, "page", 1, PAGE_WINDOW_MAX, page) < 0 ||
        query_u64(r, "limit", 1, PAGE_LIMIT_MAX, limit) < 0)
        return false;
    if (*page * *limit > PAGE_WINDOW_MAX) {
        bad_field(r, "page", "page * limit may not exceed 10000; narrow the filters instead");
        return false;
    }
    return true;
}

static bool str_ieq(const char *a, const char *b)
{
    return a != NULL && b != NULL && strcasecmp(a, b) == 0;
}

/* Case-insensitive ASCII substring. */
static bool str_icontains(const char *hay, const char *needle)
{
    size_t n = strlen(needle);
    for (const char *p = hay; *p != '\0'; p++) {
        if (strncasecmp(p, needle, n) == 0)
            return true;
    }
    return n == 0;
}

static uint32_t shard_of_showtime(net_request *r, uint64_t id)
{
    return catalog_showtime_shard(id, srv(r)->nshards);
}

/* Holds and bookings carry their shard in the top 16 bits. */
static bool shard_of_engine_id(net_request *r, uint64_t id, uint32_t *shard)
{
    uint64_t s = id >> 48;
    if (s >= srv(r)->nshards)
        return false;
    *shard = (uint32_t)s;
    return true;
}

/* Sends the request's job to `target`; answers 503 (and returns false) if
 * the ring is full: the caller then finishes the request. */
static bool send_job(net_request *r, uint32_t target, net_job_fn run)
{
    r->job.req = r;
    r->job.run = run;
    r->busy = true;
    if (!net__job_send(r->shard, &r->job, target)) {
        r->busy = false;
        busy(r, "the shard that owns this resource is saturated; retry shortly");
        return false;
    }
    return true;
}

/* On the target: the answer is built; wait for `lsn` (0: nothing to wait
 * for) and for the catalog when asked. */
static void job_done(net_shard *sh, net_job *j, uint64_t lsn, bool catalog)
{
    j->wait_lsn = lsn;
    j->wait_catalog = catalog;
    net__job_complete(sh, j);
}

/* A read that looked at engine state waits until what it saw is durable. */
static uint64_t observed_lsn(net_shard *sh)
{
    uint64_t last = atomic_load(&sh->last_lsn);
    return last > atomic_load(&sh->durable_lsn) ? last : 0;
}

/* Writes refuse when the WAL failed or too much waits for a sync. */
static bool write_refused(net_shard *sh, net_request *r)
{
    if (atomic_load(&sh->wal_error) != 0) {
        problem(r, 503, "wal-failed", "Write-ahead log failed",
                "this shard's write-ahead log failed; it refuses writes until restarted", NULL,
                NULL, "Retry-After: 30\r\n");
        return true;
    }
    if (sh->waitq_len >= WAITQ_MAX) {
        atomic_fetch_add(&sh->m.backlog_refused, 1);
        busy(r, "too many changes are waiting for the disk; retry shortly");
        return true;
    }
    return false;
}

static void wal_append_failed(net_request *r, int64_t rc)
{
    (void)rc;
    problem(r, 503, "wal-failed", "Write-ahead log failed",
            "the change could not be journaled; nothing was changed", NULL, NULL,
            "Retry-After: 30\r\n");
}

/* Journals `rec` for job `j`; when the WAL refuses, answers 503 and
 * completes the job (returns < 0). */
static int64_t journal_or_answer(net_shard *sh, net_job *j, const engine_record *rec)
{
    int64_t lsn = net__journal(sh, rec);
    if (lsn < 0) {
        wal_append_failed(j->req, lsn);
        job_done(sh, j, 0, false);
    }
    return lsn;
}

/* Expires due holds before an operation that depends on seat state (the
 * tick also does, every 100 ms). */
void net__holds_sweep(net_shard *sh, int64_t now)
{
    if (engine_holds_next_expiry_ms(sh->e) > now)
        return;
    engine_record recs[64];
    size_t n;
    do {
        n = engine_holds_expire(sh->e, now, recs, NULL, 64);
        for (size_t i = 0; i < n; i++) {
            net__journal(sh, &recs[i]);
            uint64_t id = recs[i].u.hold_end.hold_id;
            sh->expired_recent[XXH3_64bits(&id, sizeof(id)) & (NET_EXPIRED_RECENT - 1)] = id;
        }
        atomic_fetch_add(&sh->m.expiries, n);
    } while (n == 64);
    net__onsale_steps(sh, now); /* freed seats go to waiters first */
}

static bool hold_expired_recently(net_shard *sh, uint64_t id)
{
    return sh->expired_recent[XXH3_64bits(&id, sizeof(id)) & (NET_EXPIRED_RECENT - 1)] == id;
}

/* ---- Rate limits ---------------------------------------------------------------------
 * Token buckets (ratelimit.h) on login, reserve and confirm: one by the user
 * (for login, the email tried) and one by the client's address, both in the
 * server-wide table. Checked on the origin before any work: a refused
 * request sends no job, hashes no password and changes nothing (the token
 * the first bucket gave is given back when the second refuses). Internal
 * calls (usherd --demo, --create-admin) are not limited.
 *
 * The answer carries RateLimit-Policy and RateLimit in the syntax of
 * draft-ietf-httpapi-ratelimit-headers-11 (May 2026): a 429 for the limit
 * that refused, with Retry-After; any other answer for the tighter of the
 * two (fewer requests left; then the longer wait). "t" is the whole seconds
 * until the bucket holds one more request than "r" (so, on a 429, when a
 * retry can pass). */

static const char *const rate_what[NET_RL_COUNT] = {
    [NET_RL_LOGIN_IP] = "login attempts from this address",
    [NET_RL_LOGIN_EMAIL] = "login attempts for this email",
    [NET_RL_RESERVE_USER] = "reservations by this user",
    [NET_RL_RESERVE_IP] = "reservations from this address",
    [NET_RL_CONFIRM_USER] = "confirmations by this user",
    [NET_RL_CONFIRM_IP] = "confirmations from this address",
    [NET_RL_ONSALE_USER] = "waiting-list and queue joins and leaves by this user",
    [NET_RL_ONSALE_IP] = "waiting-list and queue joins and leaves from this address",
};

static void rate_headers_set(net_request *r, int limit, uint32_t remaining, uint64_t wait_ms)
{
    const net_rate_limit *l = &srv(r)->cfg.rate_limits[limit];
    const char *name = net_rate_limit_name(limit);
    int n = snprintf(r->rate_headers, sizeof(r->rate_headers),
                     "RateLimit-Policy: \"%s\";q=%" PRIu32 ";w=%" PRIu32
                     "\r\nRateLimit: \"%s\";r=%" PRIu32 ";t=%" PRIu64 "\r\n",
                     name, l->count, l->window_s, name, remaining, (wait_ms + 999) / 1000);
    NET_ASSERT(n > 0 && (size_t)n < sizeof(r->rate_headers));
}

typedef struct rate_bucket {
    int limit; /* NET_RL_* */
    const void *key;
    size_t len;
    ratelimit_result res;
} rate_bucket;

/* Takes a token from `key_limit`'s bucket of `key` and from `ip_limit`'s
 * bucket of the client's address. True when a limit refused: then the
 * request is answered (429) and nothing was taken. */
static bool rate_refused(net_request *r, int key_limit, const void *key, size_t key_len,
                         int ip_limit)
{
    net_server *s = srv(r);
    if (s->rl == NULL || r->conn == NULL)
        return false;
    rate_bucket b[2];
    int n = 0;
    if (s->rl_policy[key_limit] >= 0)
        b[n++] = (rate_bucket){.limit = key_limit, .key = key, .len = key_len};
    if (s->rl_policy[ip_limit] >= 0 && r->conn->peer_known)
        b[n++] = (rate_bucket){
            .limit = ip_limit, .key = r->conn->peer_key, .len = sizeof(r->conn->peer_key)};
    int64_t now = net__mono_ms();
    int tight = -1;
    for (int i = 0; i < n; i++) {
        uint32_t policy = (uint32_t)s->rl_policy[b[i].limit];
        if (ratelimit_take(s->rl, policy, b[i].key, b[i].len, now, &b[i].res)) {
            if (tight < 0 || b[i].res.remaining < b[tight].res.remaining ||
                (b[i].res.remaining == b[tight].res.remaining &&
                 b[i].res.wait_ms > b[tight].res.wait_ms))
                tight = i;
            continue;
        }
        for (int k = 0; k < i; k++)
            ratelimit_give_back(s->rl, (uint32_t)s->rl_policy[b[k].limit], b[k].key, b[k].len, now);
        atomic_fetch_add(&s->rate_limited[b[i].limit], 1);
        NET_ASSERT(b[i].res.wait_ms >= 1);
        uint64_t secs = (b[i].res.wait_ms + 999) / 1000;
        rate_headers_set(r, b[i].limit, 0, b[i].res.wait_ms);
        const net_rate_limit *l = &s->cfg.rate_limits[b[i].limit];
        const char *name = net_rate_limit_name(b[i].limit);
        char detail[200], retry[48];
        snprintf(detail, sizeof(detail),
                 "too many %s: the %s limit is %" PRIu32 " per %" PRIu32 " s; retry in %" PRIu64
                 " s",
                 rate_what[b[i].limit], name, l->count, l->window_s, secs);
        snprintf(retry, sizeof(retry), "Retry-After: %" PRIu64 "\r\n", secs);
        problem(r, 429, "rate-limited", "Too many requests", detail, NULL,
                json_pack("{s:s}", "limit", name), retry);
        return true;
    }
    if (tight >= 0)
        rate_headers_set(r, b[tight].limit, b[tight].res.remaining, b[tight].res.wait_ms);
    return false;
}

/* Gives back what rate_refused took for a request that then could not run
 * at all (a 503 before any work: a saturated shard, too many hashes). */
static void rate_undo(net_request *r, int key_limit, const void *key, size_t key_len, int ip_limit)
{
    net_server *s = srv(r);
    if (s->rl == NULL || r->conn == NULL)
        return;
    int64_t now = net__mono_ms();
    if (s->rl_policy[key_limit] >= 0)
        ratelimit_give_back(s->rl, (uint32_t)s->rl_policy[key_limit], key, key_len, now);
    if (s->rl_policy[ip_limit] >= 0 && r->conn->peer_known)
        ratelimit_give_back(s->rl, (uint32_t)s->rl_policy[ip_limit], r->conn->peer_key,
                            sizeof(r->conn->peer_key), now);
}

/* ---- Request bodies ----------------------------------------------------------------- */

/* Parses the body as a JSON object. Answers 400/415 and returns NULL on failure. */
/* A body is read as JSON when Content-Type says so or says nothing. */
static bool body_is_json(const net_request *r)
{
    return r->content_type[0] == '\0' || strncasecmp(r->content_type, "application/json", 16) == 0;
}

static json_t *body_object(net_request *r)
{
    if (!body_is_json(r)) {
        problem(r, 415, "unsupported-media-type", "Unsupported media type",
                "send the body as JSON with Content-Type: application/json (curl: --json)",
                "content-type", NULL, NULL);
        return NULL;
    }
    if (r->body_len == 0) {
        problem(r, 400, "invalid-json", "Invalid JSON body", "a JSON object body is required", NULL,
                NULL, NULL);
        return NULL;
    }
    json_error_t err;
    json_t *o = json_loadb(r->body, r->body_len, JSON_REJECT_DUPLICATES, &err);
    if (o == NULL || !json_is_object(o)) {
        char d[300];
        if (o == NULL)
            snprintf(d, sizeof(d), "line %d, column %d: %s", err.line, err.column, err.text);
        else
            snprintf(d, sizeof(d), "the body must be a JSON object");
        json_decref(o);
        problem(r, 400, "invalid-json", "Invalid JSON body", d, NULL, NULL, NULL);
        return NULL;
    }
    return o;
}

/* Refuses members of `o` not in `allowed` (NULL-terminated). */
static bool only_fields(net_request *r, json_t *o, const char *const *allowed)
{
    const char *k;
    json_t *v;
    json_object_foreach(o, k, v)
    {
        bool ok = false;
        for (const char *const *a = allowed; *a != NULL; a++)
            ok = ok || strcmp(k, *a) == 0;
        if (!ok) {
            bad_field(r, k, "unknown field");
            return false;
        }
    }
    return true;
}

/* The request's JSON object body, owned by its job from now on, with no
 * member outside `allowed`; NULL when it answered 415 or 400. */
static json_t *body_fields(net_request *r, const char *const *allowed)
{
    json_t *b = body_object(r);
    if (b == NULL)
        return NULL;
    r->job.body = b;
    return only_fields(r, b, allowed) ? b : NULL;
}

/* A positive integer id member. */
static bool body_id(net_request *r, json_t *o, const char *name, uint64_t *out)
{
    json_t *v = json_object_get(o, name);
    if (v == NULL) {
        bad_field(r, name, "is required");
        return false;
    }
    if (!json_is_integer(v) || json_integer_value(v) <= 0) {
        bad_field(r, name, "must be a positive integer id");
        return false;
    }
    *out = (uint64_t)json_integer_value(v);
    return true;
}

/* ---- Idempotency-Key ----------------------------------------------------------------
 * Reserve and confirm accept an Idempotency-Key. Answers are kept per shard
 * (the shard that executes the operation) for 24 hours or until `cap` newer
 * keys pushed them out, keyed by (user, key), with a fingerprint of method,
 * path and body: same key and body replays the answer, another body is 422,
 * and while the first is in flight 409. The table is memory only; after a
 * restart a confirm retried with its key is still answered once by the
 * engine's own idempotency (the key is journaled with the booking). */

#define IDEM_TTL_MS (24LL * 3600 * 1000)

struct net_idem_entry {
    uint64_t user, keyh, fp;
    int64_t created_ms;
    uint32_t next; /* bucket chain: index + 1, 0 ends */
    uint32_t gen;  /* changes when the slot is reused */
    uint8_t state; /* 0 free, 1 in flight, 2 answered */
    int status;
    char *body; /* the answer's JSON (owned) */
    char *ctype;
};

int net__idem_init(net_idem *t, uint32_t cap)
{
    memset(t, 0, sizeof(*t));
    uint32_t c = 1;
    while (c < cap)
        c <<= 1;
    t->entries = calloc(c, sizeof(*t->entries));
    t->buckets = calloc(c, sizeof(*t->buckets));
    if (t->entries == NULL || t->buckets == NULL)
        return -ENOMEM;
    t->cap = c;
    t->mask = c - 1;
    return 0;
}

void net__idem_free(net_idem *t)
{
    for (uint32_t i = 0; t->entries != NULL && i < t->cap; i++)
        free(t->entries[i].body);
    free(t->entries);
    free(t->buckets);
    memset(t, 0, sizeof(*t));
}

static uint32_t idem_bucket(const net_idem *t, uint64_t user, uint64_t keyh)
{
    return (uint32_t)((keyh ^ (user * 0x9E3779B97F4A7C15ull)) & t->mask);
}

static void idem_unlink(net_idem *t, uint32_t idx)
{
    net_idem_entry *e = &t->entries[idx];
    uint32_t *p = &t->buckets[idem_bucket(t, e->user, e->keyh)];
    while (*p != 0 && *p != idx + 1)
        p = &t->entries[*p - 1].next;
    NET_ASSERT(*p == idx + 1);
    *p = e->next;
    free(e->body);
    e->body = NULL;
    e->state = 0;
}

static net_idem_entry *idem_find(net_idem *t, uint64_t user, uint64_t keyh, int64_t now)
{
    for (uint32_t i = t->buckets[idem_bucket(t, user, keyh)]; i != 0; i = t->entries[i - 1].next) {
        net_idem_entry *e = &t->entries[i - 1];
        if (e->user == user && e->keyh == keyh)
            return now - e->created_ms < IDEM_TTL_MS ? e : NULL;
    }
    return NULL;
}

/* Claims a slot for a new key: the oldest one is recycled when full. */
static uint32_t idem_insert(net_idem *t, uint64_t user, uint64_t keyh, uint64_t fp, int64_t now)
{
    uint32_t idx;
    if (t->count < t->cap) {
        idx = (t->head + t->count) & t->mask;
        t->count++;
    } else {
        idx = t->head;
        t->head = (t->head + 1) & t->mask;
        idem_unlink(t, idx);
    }
    net_idem_entry *e = &t->entries[idx];
    *e = (net_idem_entry){
        .user = user, .keyh = keyh, .fp = fp, .created_ms = now, .state = 1, .gen = ++t->gen};
    uint32_t *b = &t->buckets[idem_bucket(t, user, keyh)];
    e->next = *b;
    *b = idx + 1;
    return idx;
}

/* Before running an idempotent operation on its shard. Returns true when
 * the request was answered from the table (replay, 409 or 422). */
static bool idem_begin(net_shard *sh, net_job *j)
{
    net_request *r = j->req;
    if (r->idempotency_key[0] == '\0')
        return false;
    int64_t now = net__now_ms(sh);
    uint64_t keyh = XXH3_64bits(r->idempotency_key, strlen(r->idempotency_key));
    net_idem_entry *e = idem_find(&sh->idem, j->user_id, keyh, now);
    if (e != NULL) {
        if (e->fp != j->idem_fp) {
            problem(r, 422, "idempotency-key-reused", "Idempotency-Key reused",
                    "this Idempotency-Key was used with a different request", "idempotency-key",
                    NULL, NULL);
        } else if (e->state == 1) {
            problem(r, 409, "idempotency-in-flight", "Request in progress",
                    "a request with this Idempotency-Key is still being processed; retry shortly",
                    "idempotency-key", NULL, "Retry-After: 1\r\n");
        } else {
            net__respond(r, e->status,
                         e->status >= 400 ? "application/problem+json" : "application/json",
                         "Idempotent-Replayed: true\r\n", e->body, strlen(e->body));
        }
        job_done(sh, j, observed_lsn(sh), false);
        return true;
    }
    j->idem = true;
    j->idem_slot = idem_insert(&sh->idem, j->user_id, keyh, j->idem_fp, now);
    j->idem_gen = sh->idem.entries[j->idem_slot].gen;
    return false;
}

/* After the operation built its answer: remember it (2xx and 4xx business
 * outcomes; a 5xx is not final, so the key is released for a retry). */
static void idem_end(net_shard *sh, net_job *j)
{
    if (!j->idem)
        return;
    net_idem_entry *e = &sh->idem.entries[j->idem_slot];
    if (e->gen != j->idem_gen || e->state != 1)
        return; /* recycled meanwhile */
    net_request *r = j->req;
    if (r->status >= 500) {
        e->fp = 0;
        e->created_ms = INT64_MIN / 2; /* expired: the next try runs afresh */
        e->state = 2;
        e->body = strdup("{}");
        return;
    }
    size_t len = r->resp_len - r->resp_body_off;
    e->body = malloc(len + 1);
    NET_ASSERT(e->body != NULL);
    memcpy(e->body, r->resp + r->resp_body_off, len);
    e->body[len] = '\0';
    e->status = r->status;
    e->state = 2;
}

static bool idem_header_ok(net_request *r)
{
    size_t n = strlen(r->idempotency_key);
    if (n > ENGINE_IDEM_KEY_MAX) {
        bad_field(r, "idempotency-key", "must be at most 64 characters");
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)r->idempotency_key[i];
        if (c < 0x21 || c > 0x7e) {
            bad_field(r, "idempotency-key", "must be printable ASCII without spaces");
            return false;
        }
    }
    r->job.idem_fp = XXH3_64bits_withSeed(r->body != NULL ? r->body : "", r->body_len,
                                          XXH3_64bits(r->url, r->url_len) ^ r->method);
    return true;
}

/* ---- Users ------------------------------------------------------------------------------- */

/* `sh` is the shard running this (its clock is read). */
static json_t *token_answer(net_shard *sh, net_request *r, uint64_t user_id, auth_role role,
                            json_t *user)
{
    auth_claims c;
    int64_t now_s = net__now_ms(sh) / 1000;
    int rc = auth_claims_init(&c, user_id, role, now_s, srv(r)->cfg.token_ttl_s);
    NET_ASSERT(rc == 0);
    char tok[AUTH_TOKEN_MAX + 1];
    rc = auth_jwt_sign(&srv(r)->jwt, &c, tok, sizeof(tok));
    NET_ASSERT(rc > 0);
    json_t *o = json_object();
    json_object_set_new(o, "token", json_string(tok));
    json_object_set_new(o, "token_type", json_string("Bearer"));
    json_object_set_new(o, "expires_in", json_integer(srv(r)->cfg.token_ttl_s));
    json_object_set_new(o, "user", user);
    return o;
}

static auth_role role_of(const json_t *user)
{
    return str_ieq(json_string_value(json_object_get(user, "role")), "admin") ? AUTH_ROLE_ADMIN
                                                                              : AUTH_ROLE_CUSTOMER;
}

/* Emails registered but not yet in LMDB (shard 0 only): checked together
 * with LMDB so two registrations of one address cannot both succeed. */
enum { PENDING_EMAILS_MAX = 4096 };
static struct {
    uint64_t hash, lsn;
} pending_emails[PENDING_EMAILS_MAX];
static uint32_t pending_emails_n;

/* The LSN of a registration of this email not yet in LMDB, or 0. */
static uint64_t pending_email_lsn(net_shard *sh, uint64_t h)
{
    for (uint32_t i = 0; i < pending_emails_n;) {
        if (pending_emails[i].lsn <= sh->cat_applied_lsn) {
            pending_emails[i] = pending_emails[--pending_emails_n];
            continue;
        }
        if (pending_emails[i].hash == h)
            return pending_emails[i].lsn;
        i++;
    }
    return 0;
}

static uint64_t email_hash(const char *email)
{
    char low[256];
    size_t n = 0;
    for (; email[n] != '\0' && n + 1 < sizeof(low); n++)
        low[n] = (char)tolower((unsigned char)email[n]);
    return XXH3_64bits(low, n);
}

static json_t *catalog_read_json(net_shard *sh, catalog_kind kind, uint64_t id)
{
    catalog_read *rd;
    if (catalog_read_begin(sh->server->cat, &rd) != 0)
        return NULL;
    json_t *o = catalog_get_json(rd, kind, id);
    catalog_read_end(rd);
    return o;
}

static bool email_taken(net_shard *sh, const char *email)
{
    catalog_read *rd;
    if (catalog_read_begin(sh->server->cat, &rd) != 0)
        return false;
    uint64_t id;
    bool taken = catalog_user_find(rd, email, &id) == 0;
    catalog_read_end(rd);
    return taken;
}

static void answer_problem_from_catalog(net_request *r, const catalog_problem *p)
{
    bad_field(r, p->field, p->reason);
}

/* shard 0: journal the new user. */
static void run_register(net_shard *sh, net_job *j)
{
    net_request *r = j->req;
    json_t *user = j->body;
    const char *email = json_string_value(json_object_get(user, "email"));
    uint64_t h = email_hash(email);
    uint64_t pending = pending_email_lsn(sh, h);
    if (pending != 0 || email_taken(sh, email)) {
        /* Taken by a registration not yet durable: the refusal waits for it
         * (a crash could still undo it). */
        problem(r, 409, "email-taken", "Email already registered",
                "an account with this email exists; log in instead", "email", NULL, NULL);
        job_done(sh, j, pending, false);
        return;
    }
    if (pending_emails_n >= PENDING_EMAILS_MAX || write_refused(sh, r)) {
        if (r->resp == NULL)
            busy(r, "too many registrations in flight; retry shortly");
        job_done(sh, j, 0, false);
        return;
    }
    uint64_t id = atomic_fetch_add(&sh->server->next_id, 1);
    json_object_set_new(user, "id", json_integer((json_int_t)id));
    char *text = json_dumps(user, JSON_COMPACT | JSON_SORT_KEYS);
    NET_ASSERT(text != NULL);
    catalog_change ch = {
        .put = true, .kind = CATALOG_USER, .id = id, .json = text, .json_len = strlen(text)};
    int64_t lsn = net__catalog_journal(sh, &ch);
    free(text);
    if (lsn < 0) {
        wal_append_failed(r, lsn);
        job_done(sh, j, 0, false);
        return;
    }
    pending_emails[pending_emails_n].hash = h;
    pending_emails[pending_emails_n++].lsn = (uint64_t)lsn;
    respond_json(r, 201, token_answer(sh, r, id, role_of(user), catalog_user_public(user)), NULL);
    job_done(sh, j, (uint64_t)lsn, true);
}

/* argon2id runs on the threadpool, at most NET_HASHING_MAX per shard: a
 * flood of logins must neither queue without bound nor starve the pool
 * (the catalog applier and snapshots use it too). */
static bool hashing_begin(net_request *r)
{
    if (r->shard->hashing >= NET_HASHING_MAX) {
        busy(r, "too many logins and registrations in progress; retry shortly");
        return false;
    }
    r->shard->hashing++;
    r->shard->local_busy++;
    r->work.data = r;
    r->busy = true;
    return true;
}

static void hashing_end(net_request *r)
{
    r->shard->hashing--;
    r->shard->local_busy--;
    r->busy = false;
}

static void hash_work(uv_work_t *w)
{
    net_request *r = w->data;
    char hash[AUTH_HASH_MAX];
    const char *pw = json_string_value(json_object_get(r->job.body, "password"));
    int rc = auth_password_hash(&srv(r)->pw_opts, pw, strlen(pw), hash);
    r->job.text = rc == 0 ? strdup(hash) : NULL;
}

static void hash_after(uv_work_t *w, int status)
{
    net_request *r = w->data;
    hashing_end(r);
    if (status != 0 || r->job.text == NULL) {
        problem(r, 500, "internal", "Internal error", "password hashing failed", NULL, NULL, NULL);
        net__request_finish(r);
        return;
    }
    if (r->orphan) {
        net__request_free(r);
        return;
    }
    /* Replace the password by its hash: only the hash travels on. */
    json_t *b = r->job.body;
    json_object_del(b, "password");
    json_object_set_new(b, "password_hash", json_string(r->job.text));
    if (!send_job(r, 0, run_register))
        net__request_finish(r);
}

static void h_register(net_request *r)
{
    bool admin = r->job.role == AUTH_ROLE_ADMIN;
    static const char *const fields[] = {"email", "password", "name", NULL};
    static const char *const admin_fields[] = {"email", "password", "name", "role", NULL};
    json_t *b = body_fields(r, admin ? admin_fields : fields);
    if (b == NULL)
        return;
    json_t *pw = json_object_get(b, "password");
    if (!json_is_string(pw)) {
        bad_field(r, "password", pw == NULL ? "is required" : "must be a string");
        return;
    }
    int rc = auth_password_check(json_string_value(pw), json_string_length(pw));
    if (rc != 0) {
        bad_field(r, "password", auth_strerror(rc));
        return;
    }
    /* Validate the user as it will be stored (the hash is a placeholder). */
    json_t *in = json_object();
    json_object_set(in, "email", json_object_get(b, "email"));
    json_object_set(in, "name", json_object_get(b, "name"));
    json_t *role = json_object_get(b, "role");
    json_object_set_new(in, "role", role != NULL ? json_incref(role) : json_string("customer"));
    json_object_set_new(in, "password_hash", json_string("-"));
    char now[32];
    format_time(net__now_ms(r->shard), false, now);
    json_object_set_new(in, "created_at", json_string(now));
    json_t *user = NULL;
    catalog_problem p;
    rc = catalog_validate(CATALOG_USER, 1, in, NULL, NULL, &user, &p);
    json_decref(in);
    if (rc != 0) {
        answer_problem_from_catalog(r, &p);
        return;
    }
    json_object_set(user, "password", pw);
    json_object_del(user, "id");
    json_decref(b);
    r->job.body = user;
    if (email_taken(r->shard, json_string_value(json_object_get(user, "email")))) {
        problem(r, 409, "email-taken", "Email already registered",
                "an account with this email exists; log in instead", "email", NULL, NULL);
        return;
    }
    if (!hashing_begin(r))
        return;
    NET_ASSERT(uv_queue_work(&r->shard->loop, &r->work, hash_work, hash_after) == 0);
}

static uv_once_t dummy_once = UV_ONCE_INIT;
static char dummy_hash[AUTH_HASH_MAX];
static auth_password_opts dummy_opts; /* the server's (net__api_init) */
static void dummy_hash_make(void)
{
    /* Unknown emails are checked against this, so a login takes as long
     * whether or not the account exists. */
    NET_ASSERT(auth_password_hash(&dummy_opts, "not a real password", 19, dummy_hash) == 0);
}

void net__api_init(net_server *s)
{
    dummy_opts = s->pw_opts;
}

static void verify_work(uv_work_t *w)
{
    net_request *r = w->data;
    const char *pw = json_string_value(json_object_get(r->job.body, "password"));
    const char *hash = r->job.text;
    if (hash == NULL) {
        uv_once(&dummy_once, dummy_hash_make);
        auth_password_verify(dummy_hash, pw, strlen(pw));
        r->job.pw_ok = false;
        return;
    }
    r->job.pw_ok = auth_password_verify(hash, pw, strlen(pw)) == 0;
}

static void verify_after(uv_work_t *w, int status)
{
    net_request *r = w->data;
    hashing_end(r);
    if (r->orphan) {
        net__request_free(r);
        return;
    }
    if (status != 0 || !r->job.pw_ok) {
        problem(r, 401, "invalid-credentials", "Invalid credentials",
                "the email or password is wrong", NULL, NULL, NULL);
        net__request_finish(r);
        return;
    }
    json_t *user = catalog_read_json(r->shard, CATALOG_USER, r->job.id);
    if (user == NULL) {
        problem(r, 401, "invalid-credentials", "Invalid credentials",
                "the email or password is wrong", NULL, NULL, NULL);
        net__request_finish(r);
        return;
    }
    respond_json(r, 200,
                 token_answer(r->shard, r, r->job.id, role_of(user), catalog_user_public(user)),
                 NULL);
    json_decref(user);
    net__request_finish(r);
}

static void h_login(net_request *r)
{
    static const char *const fields[] = {"email", "password", NULL};
    json_t *b = body_fields(r, fields);
    if (b == NULL)
        return;
    json_t *email = json_object_get(b, "email"), *pw = json_object_get(b, "password");
    if (!json_is_string(email) || json_string_length(email) > 254) {
        bad_field(r, "email", email == NULL ? "is required" : "must be an email address");
        return;
    }
    if (!json_is_string(pw) || json_string_length(pw) > AUTH_PASSWORD_MAX) {
        bad_field(r, "password", pw == NULL ? "is required" : "must be a string");
        return;
    }
    /* Limited by the email as stored (ASCII lowercase), before any lookup or hashing. */
    char key[256];
    size_t key_len = json_string_length(email);
    NET_ASSERT(key_len < sizeof(key)); /* at most 254, checked above */
    for (size_t i = 0; i < key_len; i++)
        key[i] = (char)tolower((unsigned char)json_string_value(email)[i]);
    if (rate_refused(r, NET_RL_LOGIN_EMAIL, key, key_len, NET_RL_LOGIN_IP))
        return;
    catalog_read *rd;
    if (catalog_read_begin(srv(r)->cat, &rd) != 0) {
        busy(r, "catalog unavailable");
        rate_undo(r, NET_RL_LOGIN_EMAIL, key, key_len, NET_RL_LOGIN_IP);
        return;
    }
    uint64_t id = 0;
    if (catalog_user_find(rd, json_string_value(email), &id) == 0) {
        json_t *u = catalog_get_json(rd, CATALOG_USER, id);
        const char *h = json_string_value(json_object_get(u, "password_hash"));
        r->job.text = h != NULL ? strdup(h) : NULL;
        json_decref(u);
    }
    catalog_read_end(rd);
    r->job.id = id;
    if (!hashing_begin(r)) {
        rate_undo(r, NET_RL_LOGIN_EMAIL, key, key_len, NET_RL_LOGIN_IP);
        return;
    }
    NET_ASSERT(uv_queue_work(&r->shard->loop, &r->work, verify_work, verify_after) == 0);
}

static void h_me(net_request *r)
{
    json_t *u = catalog_read_json(r->shard, CATALOG_USER, r->job.user_id);
    if (u == NULL) {
        not_found(r, "user");
        return;
    }
    respond_json(r, 200, catalog_user_public(u), NULL);
    json_decref(u);
}

/* ---- Catalog ------------------------------------------------------------------------------- */

/* ---- References in flight (see net_server.refs) ---- */

static struct net_ref *ref_find(net_server *s, uint64_t id)
{
    for (uint32_t i = 0; i < s->nrefs; i++) {
        if (s->refs[i].id == id)
            return &s->refs[i];
    }
    return NULL;
}

static void ref_gc(net_server *s, struct net_ref *e)
{
    if (e->pending == 0 && !e->changing)
        *e = s->refs[--s->nrefs];
}

/* A create referring to `ids` starts: refused (false, answered 409/503)
 * while one of them is being deleted or edited. */
static bool refs_take(net_request *r, net_job *j, const uint64_t *ids, uint32_t n)
{
    net_server *s = srv(r);
    uv_mutex_lock(&s->refs_mu);
    bool ok = s->nrefs + n <= NET_REFS_MAX;
    for (uint32_t i = 0; ok && i < n; i++) {
        struct net_ref *e = ref_find(s, ids[i]);
        ok = e == NULL || !e->changing;
    }
    for (uint32_t i = 0; ok && i < n; i++) {
        struct net_ref *e = ref_find(s, ids[i]);
        if (e == NULL) {
            e = &s->refs[s->nrefs++];
            *e = (struct net_ref){.id = ids[i]};
        }
        e->pending++;
        j->refs[j->nrefs++] = ids[i];
    }
    bool full = s->nrefs + n > NET_REFS_MAX;
    uv_mutex_unlock(&s->refs_mu);
    if (!ok && full)
        busy(r, "too many catalog changes in flight; retry shortly");
    else if (!ok)
        problem(r, 409, "in-use", "In use",
                "an entity this refers to is being deleted or changed right now; retry", NULL, NULL,
                "Retry-After: 1\r\n");
    return ok;
}

/* A delete or edit of `id` starts: refused (false, answered 409) while a
 * create that refers to it, or another change of it, is in flight. */
static bool ref_change_begin(net_request *r, net_job *j, uint64_t id)
{
    net_server *s = srv(r);
    uv_mutex_lock(&s->refs_mu);
    struct net_ref *e = ref_find(s, id);
    bool ok = (e == NULL || (e->pending == 0 && !e->changing)) && s->nrefs < NET_REFS_MAX;
    if (ok) {
        if (e == NULL) {
            e = &s->refs[s->nrefs++];
            *e = (struct net_ref){.id = id};
        }
        e->changing = true;
        j->changing = id;
    }
    uv_mutex_unlock(&s->refs_mu);
    if (!ok)
        problem(r, 409, "in-use", "In use",
                "a change that refers to this entity is in flight; retry shortly", NULL, NULL,
                "Retry-After: 1\r\n");
    return ok;
}

/* When the write's job returns (its change is in LMDB, or it failed). */
static void refs_release(net_server *s, net_job *j)
{
    uv_mutex_lock(&s->refs_mu);
    for (uint32_t i = 0; i < j->nrefs; i++) {
        struct net_ref *e = ref_find(s, j->refs[i]);
        NET_ASSERT(e != NULL && e->pending > 0);
        e->pending--;
        ref_gc(s, e);
    }
    if (j->changing != 0) {
        struct net_ref *e = ref_find(s, j->changing);
        NET_ASSERT(e != NULL && e->changing);
        e->changing = false;
        ref_gc(s, e);
    }
    j->nrefs = 0;
    j->changing = 0;
    uv_mutex_unlock(&s->refs_mu);
}

/* Origin: a catalog write came back. */
static void catalog_write_back(net_shard *sh, net_job *j)
{
    (void)sh;
    net_request *r = j->req;
    refs_release(srv(r), j);
    r->busy = false;
    net__request_finish(r);
}

/* Facts for validating a showtime on `screen_id`. Answers 422 and returns
 * false when the screen (or the movie) does not exist. */
static bool showtime_ctx(net_request *r, catalog_read *rd, const json_t *body,
                         const json_t *existing, catalog_ctx *ctx)
{
    memset(ctx, 0, sizeof(*ctx));
    const json_t *src = json_object_get(body, "screen_id") ? body : existing;
    json_t *sid = src != NULL ? json_object_get(src, "screen_id") : NULL;
    json_t *mid = json_object_get(body, "movie_id");
    if (mid != NULL && json_is_integer(mid) && json_integer_value(mid) > 0) {
        const char *j;
        size_t n;
        if (catalog_get(rd, CATALOG_MOVIE, (uint64_t)json_integer_value(mid), &j, &n) != 0) {
            problem(r, 422, "unknown-reference", "Unknown reference", "no movie with this id",
                    "movie_id", NULL, NULL);
            return false;
        }
    }
    if (sid == NULL || !json_is_integer(sid) || json_integer_value(sid) <= 0) {
        bad_field(r, "screen_id", sid == NULL ? "is required" : "must be a positive integer id");
        return false;
    }
    json_t *screen = catalog_get_json(rd, CATALOG_SCREEN, (uint64_t)json_integer_value(sid));
    if (screen == NULL) {
        problem(r, 422, "unknown-reference", "Unknown reference", "no screen with this id",
                "screen_id", NULL, NULL);
        return false;
    }
    catalog_layout_categories(screen, ctx);
    ctx->theater_id = (uint64_t)json_integer_value(json_object_get(screen, "theater_id"));
    json_decref(screen);
    return true;
}

/* Checks the entity a screen refers to exists (422 otherwise). */
static bool screen_refs_ok(net_request *r, catalog_read *rd, const json_t *body)
{
    json_t *tid = json_object_get(body, "theater_id");
    if (tid == NULL || !json_is_integer(tid) || json_integer_value(tid) <= 0)
        return true;
    const char *j;
    size_t n;
    if (catalog_get(rd, CATALOG_THEATER, (uint64_t)json_integer_value(tid), &j, &n) != 0) {
        problem(r, 422, "unknown-reference", "Unknown reference", "no theater with this id",
                "theater_id", NULL, NULL);
        return false;
    }
    return true;
}

/* Makes sure this shard's engine has the current layout of `screen_id`,
 * journaling what it changes. Returns 0, or answers and returns -1. */
static int layout_ensure(net_shard *sh, net_request *r, catalog_read *rd, uint64_t screen_id,
                         int64_t now)
{
    engine_record rec;
    if (engine_layout_seat_count(sh->e, screen_id) > 0) {
        /* An unused copy may be stale (the screen's layout was edited since):
         * replace it. One in use cannot be stale: layouts of screens with
         * showtimes cannot change. */
        if (engine_layout_delete(sh->e, now, screen_id, &rec) != ENGINE_OK)
            return 0;
        if (net__journal(sh, &rec) < 0) {
            wal_append_failed(r, -1);
            return -1;
        }
    }
    json_t *screen = catalog_get_json(rd, CATALOG_SCREEN, screen_id);
    if (screen == NULL) {
        problem(r, 422, "unknown-reference", "Unknown reference", "no screen with this id",
                "screen_id", NULL, NULL);
        return -1;
    }
    catalog_layout lay;
    catalog_problem p;
    int rc = catalog_layout_build(json_object_get(screen, "layout"), &lay, &p);
    json_decref(screen);
    if (rc != 0) {
        problem(r, 500, "internal", "Internal error", "stored layout unusable", NULL, NULL, NULL);
        return -1;
    }
    engine_problem ep;
    rc = engine_layout_create(sh->e, now, screen_id, &lay.spec, &ep, &rec);
    if (rc == 0 && net__journal(sh, &rec) < 0)
        rc = -1;
    catalog_layout_free(&lay);
    if (rc != 0) {
        if (rc == ENGINE_CAPACITY)
            busy(r, "this shard holds as many seat layouts as it may");
        else
            wal_append_failed(r, -1);
        return -1;
    }
    return 0;
}

/* Frees this shard's copy of a layout once no showtime here uses it (the
 * engine has a bounded number of layouts). A journal failure fail-stops
 * the shard (net__journal). */
static void layout_release(net_shard *sh, uint64_t layout, int64_t now)
{
    engine_record rec;
    if (engine_layout_delete(sh->e, now, layout, &rec) == ENGINE_OK)
        net__journal(sh, &rec);
}

/* Creates or replaces the engine side of a showtime. Returns 0, or answers
 * and returns -1. */
static int showtime_engine_put(net_shard *sh, net_request *r, catalog_read *rd, json_t *st,
                               int64_t now)
{
    uint64_t id = (uint64_t)json_integer_value(json_object_get(st, "id"));
    uint64_t screen_id = (uint64_t)json_integer_value(json_object_get(st, "screen_id"));
    engine_record rec;
    /* The new layout first: if it cannot be had, nothing has changed yet. */
    if (layout_ensure(sh, r, rd, screen_id, now) != 0)
        return -1;
    json_t *screen = catalog_get_json(rd, CATALOG_SCREEN, screen_id);
    catalog_ctx ctx;
    memset(&ctx, 0, sizeof(ctx));
    catalog_layout_categories(screen, &ctx);
    json_decref(screen);
    uint32_t prices[ENGINE_CATEGORIES_MAX], old_prices[ENGINE_CATEGORIES_MAX];
    catalog_showtime_prices(st, &ctx, prices);
    int64_t start = (int64_t)json_integer_value(json_object_get(st, "start_ms")), old_start = 0;
    uint64_t old_layout = 0;
    bool exists = engine_showtime_get(sh->e, id, &old_layout, &old_start, old_prices);
    if (exists && old_layout == screen_id && old_start == start) {
        /* Same screen and start: only the prices may change, and a price
         * change keeps the showtime's holds, bookings, waiting list and queue
         * (a live hold keeps the amount it was placed at). */
        if (memcmp(prices, old_prices, ctx.category_count * sizeof(prices[0])) == 0)
            return 0;
        if (engine_showtime_price_set(sh->e, now, id, prices, ctx.category_count, &rec) !=
            ENGINE_OK) {
            problem(r, 500, "internal", "Internal error", "the engine refused the prices", NULL,
                    NULL, NULL);
            return -1;
        }
        if (net__journal(sh, &rec) < 0) {
            wal_append_failed(r, -1);
            return -1;
        }
        return 0;
    }
    /* On create the engine may still have this id: a crash can cut a batch
     * after the engine record and before the catalog record (neither was
     * acknowledged). Such a leftover has no holds; it is replaced. */
    if (exists) {
        engine_result er = engine_showtime_delete(sh->e, now, id, &rec);
        if (er == ENGINE_SHOWTIME_IN_USE) {
            problem(r, 409, "showtime-in-use", "Showtime in use",
                    "the showtime has live holds, confirmed bookings, a waiting list or a "
                    "virtual queue; its screen and start cannot change (its prices can)",
                    NULL, NULL, NULL);
            return -1;
        }
        if (er == ENGINE_OK && net__journal(sh, &rec) < 0) {
            wal_append_failed(r, -1);
            return -1;
        }
        if (er == ENGINE_OK)
            net__sse_showtime_gone(sh, id, false);
    }
    int rc =
        engine_showtime_create(sh->e, now, id, screen_id, start, prices, ctx.category_count, &rec);
    if (rc != 0) {
        if (rc == ENGINE_CAPACITY)
            busy(r, "this shard holds as many showtimes as it may");
        else
            problem(r, 500, "internal", "Internal error", engine_result_name((engine_result)rc),
                    NULL, NULL, NULL);
        return -1;
    }
    if (net__journal(sh, &rec) < 0) {
        wal_append_failed(r, -1);
        return -1;
    }
    if (old_layout != 0 && old_layout != screen_id)
        layout_release(sh, old_layout, now);
    return 0;
}

/* Runs on the entity's journaling shard: create, update or delete. The
 * request's body was validated at the origin for creates; updates validate
 * here against the stored object (read-modify-write, serialized per shard
 * by waiting for earlier changes to reach LMDB). */
enum { CAT_CREATE = 1, CAT_UPDATE, CAT_DELETE };

static void run_catalog_write(net_shard *sh, net_job *j)
{
    net_request *r = j->req;
    catalog_kind kind = j->cat_kind;
    int op = j->cat_op;
    if (op != CAT_CREATE && (sh->cat_pending != NULL || sh->cat_applying) &&
        atomic_load(&sh->wal_error) == 0) {
        /* Let earlier changes land first, so the read below sees them. */
        j->next = NULL;
        if (sh->cat_writes_tail != NULL)
            sh->cat_writes_tail->next = j;
        else
            sh->cat_writes = j;
        sh->cat_writes_tail = j;
        net__catalog_kick(sh);
        return;
    }
    if (write_refused(sh, r)) {
        job_done(sh, j, 0, false);
        return;
    }
    /* Claim the references first and read the catalog after, so no create
     * or delete in flight elsewhere can slip between the check and the
     * change (refs_take). The origin releases them when the job returns. */
    bool claimed = true;
    if (op == CAT_DELETE && kind != CATALOG_SHOWTIME) {
        claimed = ref_change_begin(r, j, j->id);
    } else if (op == CAT_UPDATE) {
        const json_t *b = j->body;
        if (kind == CATALOG_SCREEN &&
            (json_object_get(b, "layout") != NULL || json_object_get(b, "theater_id") != NULL))
            claimed = ref_change_begin(r, j, j->id);
        uint64_t ids[2];
        uint32_t nids = 0;
        const char *names[2] = {kind == CATALOG_SCREEN ? "theater_id" : "screen_id",
                                kind == CATALOG_SHOWTIME ? "movie_id" : NULL};
        for (int f = 0; f < 2 && names[f] != NULL; f++) {
            json_t *v = json_object_get(b, names[f]);
            if ((kind == CATALOG_SCREEN || kind == CATALOG_SHOWTIME) && json_is_integer(v) &&
                json_integer_value(v) > 0)
                ids[nids++] = (uint64_t)json_integer_value(v);
        }
        claimed = claimed && refs_take(r, j, ids, nids);
    }
    if (!claimed) {
        job_done(sh, j, 0, false);
        return;
    }
    catalog_read *rd;
    if (catalog_read_begin(sh->server->cat, &rd) != 0) {
        busy(r, "catalog unavailable");
        job_done(sh, j, 0, false);
        return;
    }
    int64_t now = net__now_ms(sh);
    json_t *obj = NULL, *existing = NULL;
    catalog_change ch = {.kind = kind, .id = j->id};
    int status = 200;
    if (op != CAT_CREATE) {
        existing = catalog_get_json(rd, kind, j->id);
        if (existing == NULL) {
            not_found(r, catalog_kind_name(kind));
            goto out;
        }
    }
    if (op == CAT_DELETE) {
        uint64_t refs = 0;
        if (kind != CATALOG_SHOWTIME && catalog_refs_count(rd, kind, j->id, &refs) != 0) {
            busy(r, "catalog unavailable");
            goto out;
        }
        if (refs > 0) {
            char d[200];
            snprintf(d, sizeof(d), "%" PRIu64 " %s still refer to this %s; delete them first", refs,
                     kind == CATALOG_THEATER ? "screens" : "showtimes", catalog_kind_name(kind));
            problem(r, 409, "in-use", "In use", d, NULL, NULL, NULL);
            goto out;
        }
        if (kind == CATALOG_SHOWTIME) {
            engine_record rec;
            uint64_t layout = 0;
            engine_showtime_get(sh->e, j->id, &layout, NULL, NULL);
            engine_result er = engine_showtime_delete(sh->e, now, j->id, &rec);
            if (er == ENGINE_SHOWTIME_IN_USE) {
                problem(r, 409, "showtime-in-use", "Showtime in use",
                        "the showtime has live holds or confirmed bookings; deleting it would "
                        "orphan them",
                        NULL, NULL, NULL);
                goto out;
            }
            if (er == ENGINE_OK && net__journal(sh, &rec) < 0) {
                wal_append_failed(r, -1);
                goto out;
            }
            if (er == ENGINE_OK) {
                layout_release(sh, layout, now);
                net__sse_showtime_gone(sh, j->id, true);
            }
        }
        ch.put = false;
        status = 204;
    } else {
        if (op == CAT_CREATE) {
            obj = json_incref(j->body);
            status = 201;
        } else {
            catalog_ctx ctx;
            if (kind == CATALOG_SHOWTIME && !showtime_ctx(r, rd, j->body, existing, &ctx))
                goto out;
            if (kind == CATALOG_SCREEN && !screen_refs_ok(r, rd, j->body))
                goto out;
            catalog_problem p;
            int rc = catalog_validate(kind, j->id, j->body, existing,
                                      kind == CATALOG_SHOWTIME ? &ctx : NULL, &obj, &p);
            if (rc != 0) {
                answer_problem_from_catalog(r, &p);
                goto out;
            }
            bool moved = !json_equal(json_object_get(obj, "theater_id"),
                                     json_object_get(existing, "theater_id"));
            if (kind == CATALOG_SCREEN &&
                (moved || !json_equal(json_object_get(obj, "layout"),
                                      json_object_get(existing, "layout")))) {
                uint64_t refs = 0;
                if (catalog_refs_count(rd, CATALOG_SCREEN, j->id, &refs) != 0) {
                    busy(r, "catalog unavailable");
                    goto out;
                }
                if (refs > 0) {
                    problem(r, 409, "in-use", "In use",
                            "showtimes use this screen; its layout and theater cannot change "
                            "until they are deleted",
                            moved ? "theater_id" : "layout", NULL, NULL);
                    goto out;
                }
            }
            if (kind == CATALOG_SHOWTIME &&
                !json_equal(json_object_get(obj, "start_ms"),
                            json_object_get(existing, "start_ms")) &&
                json_integer_value(json_object_get(obj, "start_ms")) <= now) {
                bad_field(r, "start_time", "must be in the future");
                goto out;
            }
        }
        if (kind == CATALOG_SHOWTIME) {
            bool engine_change =
                op == CAT_CREATE ||
                !json_equal(json_object_get(obj, "screen_id"),
                            json_object_get(existing, "screen_id")) ||
                !json_equal(json_object_get(obj, "start_ms"),
                            json_object_get(existing, "start_ms")) ||
                !json_equal(json_object_get(obj, "prices"), json_object_get(existing, "prices"));
            if (engine_change && showtime_engine_put(sh, r, rd, obj, now) != 0)
                goto out;
        }
        ch.put = true;
    }
    char *text = obj != NULL ? json_dumps(obj, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    ch.json = text;
    ch.json_len = text != NULL ? strlen(text) : 0;
    int64_t lsn = net__catalog_journal(sh, &ch);
    free(text);
    if (lsn < 0) {
        wal_append_failed(r, lsn);
        goto out;
    }
    if (status == 204) {
        net__respond(r, 204, "application/json", NULL, NULL, 0);
    } else {
        char *out = json_dumps(obj, JSON_COMPACT | JSON_SORT_KEYS); /* as GET shows it */
        NET_ASSERT(out != NULL);
        net__respond(r, status, "application/json", NULL, out, strlen(out));
        free(out);
    }
    catalog_read_end(rd);
    json_decref(obj);
    json_decref(existing);
    job_done(sh, j, (uint64_t)lsn, true);
    return;
out:
    catalog_read_end(rd);
    json_decref(obj);
    json_decref(existing);
    job_done(sh, j, observed_lsn(sh), false);
}

static catalog_kind kind_of_path(const net_request *r)
{
    if (strncmp(r->url, "/api/theaters", 13) == 0)
        return CATALOG_THEATER;
    if (strncmp(r->url, "/api/screens", 12) == 0)
        return CATALOG_SCREEN;
    if (strncmp(r->url, "/api/movies", 11) == 0)
        return CATALOG_MOVIE;
    return CATALOG_SHOWTIME;
}

static uint32_t journal_shard(net_request *r, catalog_kind kind, uint64_t id)
{
    return kind == CATALOG_SHOWTIME ? shard_of_showtime(r, id) : 0;
}

static void h_catalog_create(net_request *r)
{
    catalog_kind kind = kind_of_path(r);
    json_t *b = body_object(r);
    if (b == NULL)
        return;
    /* Hold what it refers to before checking that it exists, so a delete
     * cannot slip in between (see refs_take). */
    uint64_t ids[2];
    uint32_t nids = 0;
    static const char *const ref_fields[3][2] = {
        {"theater_id", NULL}, {"screen_id", "movie_id"}, {NULL, NULL}};
    int which = kind == CATALOG_SCREEN ? 0 : kind == CATALOG_SHOWTIME ? 1 : 2;
    for (int f = 0; f < 2 && ref_fields[which][f] != NULL; f++) {
        json_t *v = json_object_get(b, ref_fields[which][f]);
        if (json_is_integer(v) && json_integer_value(v) > 0)
            ids[nids++] = (uint64_t)json_integer_value(v);
    }
    if (!refs_take(r, &r->job, ids, nids)) {
        json_decref(b);
        return;
    }
    catalog_read *rd;
    if (catalog_read_begin(srv(r)->cat, &rd) != 0) {
        json_decref(b);
        refs_release(srv(r), &r->job);
        busy(r, "catalog unavailable");
        return;
    }
    catalog_ctx ctx;
    bool ok = true;
    if (kind == CATALOG_SHOWTIME)
        ok = showtime_ctx(r, rd, b, NULL, &ctx);
    else if (kind == CATALOG_SCREEN)
        ok = screen_refs_ok(r, rd, b);
    if (ok && kind == CATALOG_SHOWTIME && json_object_get(b, "movie_id") == NULL) {
        bad_field(r, "movie_id", "is required");
        ok = false;
    }
    catalog_read_end(rd);
    if (!ok) {
        json_decref(b);
        refs_release(srv(r), &r->job);
        return;
    }
    uint64_t id = atomic_fetch_add(&srv(r)->next_id, 1);
    json_t *obj;
    catalog_problem p;
    int rc = catalog_validate(kind, id, b, NULL, kind == CATALOG_SHOWTIME ? &ctx : NULL, &obj, &p);
    json_decref(b);
    if (rc != 0) {
        refs_release(srv(r), &r->job);
        answer_problem_from_catalog(r, &p);
        return;
    }
    if (kind == CATALOG_SHOWTIME &&
        json_integer_value(json_object_get(obj, "start_ms")) <= net__now_ms(r->shard)) {
        json_decref(obj);
        refs_release(srv(r), &r->job);
        bad_field(r, "start_time", "must be in the future");
        return;
    }
    r->job.body = obj;
    r->job.id = id;
    r->job.cat_kind = kind;
    r->job.cat_op = CAT_CREATE;
    r->job.back = catalog_write_back;
    if (!send_job(r, journal_shard(r, kind, id), run_catalog_write))
        refs_release(srv(r), &r->job);
}

static void h_catalog_update(net_request *r)
{
    catalog_kind kind = kind_of_path(r);
    json_t *b = body_object(r);
    if (b == NULL)
        return;
    r->job.body = b;
    r->job.cat_kind = kind;
    r->job.cat_op = CAT_UPDATE;
    r->job.back = catalog_write_back;
    send_job(r, journal_shard(r, kind, r->job.id), run_catalog_write);
}

static void h_catalog_delete(net_request *r)
{
    catalog_kind kind = kind_of_path(r);
    r->job.cat_kind = kind;
    r->job.cat_op = CAT_DELETE;
    r->job.back = catalog_write_back;
    send_job(r, journal_shard(r, kind, r->job.id), run_catalog_write);
}

static void h_catalog_get(net_request *r)
{
    catalog_kind kind = kind_of_path(r);
    catalog_read *rd;
    if (catalog_read_begin(srv(r)->cat, &rd) != 0) {
        busy(r, "catalog unavailable");
        return;
    }
    const char *j;
    size_t n;
    if (catalog_get(rd, kind, r->job.id, &j, &n) == 0)
        net__respond(r, 200, "application/json", NULL, j, n);
    else
        not_found(r, catalog_kind_name(kind));
    catalog_read_end(rd);
}

/* Lists theaters (?city=), screens (?theater_id=) and movies (?q= &genre=
 * &language= &city=), paginated, in id order. */
typedef struct list_ctx {
    net_request *r;
    catalog_kind kind;
    char city[128], q[128], genre[64], language[64];
    bool has_city, has_q, has_genre, has_language;
    uint64_t theater_id;
    uint64_t page, limit, total;
    json_t *items;
    uint64_t *movie_ids; /* city filter for movies: movies showing there */
    size_t movie_n, movie_cap;
    uint64_t *theater_ids; /* ... theaters in that city */
    size_t theater_n, theater_cap;
} list_ctx;

static bool ids_has(const uint64_t *ids, size_t n, uint64_t id)
{
    for (size_t i = 0; i < n; i++) {
        if (ids[i] == id)
            return true;
    }
    return false;
}

static void ids_add(uint64_t **ids, size_t *n, size_t *cap, uint64_t id)
{
    if (ids_has(*ids, *n, id))
        return;
    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 64;
        *ids = realloc(*ids, *cap * sizeof(**ids));
        NET_ASSERT(*ids != NULL);
    }
    (*ids)[(*n)++] = id;
}

static int list_theaters_in_city(void *arg, uint64_t id, const char *json, size_t len)
{
    list_ctx *c = arg;
    json_t *o = json_loadb(json, len, 0, NULL);
    if (str_ieq(json_string_value(json_object_get(o, "city")), c->city))
        ids_add(&c->theater_ids, &c->theater_n, &c->theater_cap, id);
    json_decref(o);
    return 0;
}

static int list_movies_showing(void *arg, const catalog_showtime_row *row)
{
    list_ctx *c = arg;
    if (ids_has(c->theater_ids, c->theater_n, row->theater_id))
        ids_add(&c->movie_ids, &c->movie_n, &c->movie_cap, row->movie_id);
    return 0;
}

static int list_each(void *arg, uint64_t id, const char *json, size_t len)
{
    list_ctx *c = arg;
    json_t *o = json_loadb(json, len, 0, NULL);
    if (o == NULL)
        return 0;
    bool keep = true;
    if (c->kind == CATALOG_THEATER && c->has_city)
        keep = str_ieq(json_string_value(json_object_get(o, "city")), c->city);
    if (c->kind == CATALOG_SCREEN && c->theater_id != 0)
        keep = (uint64_t)json_integer_value(json_object_get(o, "theater_id")) == c->theater_id;
    if (c->kind == CATALOG_MOVIE) {
        if (c->has_q)
            keep = keep && str_icontains(json_string_value(json_object_get(o, "title")), c->q);
        if (c->has_genre)
            keep = keep && str_ieq(json_string_value(json_object_get(o, "genre")), c->genre);
        if (c->has_language)
            keep = keep && str_ieq(json_string_value(json_object_get(o, "language")), c->language);
        if (c->has_city)
            keep = keep && ids_has(c->movie_ids, c->movie_n, id);
    }
    if (keep) {
        c->total++;
        if (c->total > (c->page - 1) * c->limit && c->total <= c->page * c->limit) {
            if (c->kind == CATALOG_SCREEN)
                json_object_del(o, "layout"); /* big: GET /api/screens/:id has it */
            json_array_append(c->items, o);
        }
    }
    json_decref(o);
    return 0;
}

static void h_catalog_list(net_request *r)
{
    list_ctx c = {.r = r, .kind = kind_of_path(r)};
    if (!query_page(r, &c.page, &c.limit))
        return;
    int q1 = query_get(r, "city", c.city, sizeof(c.city));
    int q2 = query_get(r, "q", c.q, sizeof(c.q));
    int q3 = query_get(r, "genre", c.genre, sizeof(c.genre));
    int q4 = query_get(r, "language", c.language, sizeof(c.language));
    if (q1 < 0 || q2 < 0 || q3 < 0 || q4 < 0) {
        bad_field(r,
                  q1 < 0   ? "city"
                  : q2 < 0 ? "q"
                  : q3 < 0 ? "genre"
                           : "language",
                  "malformed or too long");
        return;
    }
    c.has_city = q1 > 0;
    c.has_q = q2 > 0;
    c.has_genre = q3 > 0;
    c.has_language = q4 > 0;
    if (query_u64(r, "theater_id", 1, UINT64_MAX, &c.theater_id) < 0)
        return;
    catalog_read *rd;
    if (catalog_read_begin(srv(r)->cat, &rd) != 0) {
        busy(r, "catalog unavailable");
        return;
    }
    if (c.kind == CATALOG_MOVIE && c.has_city) {
        catalog_each(rd, CATALOG_THEATER, list_theaters_in_city, &c);
        for (uint32_t s = 0; s < srv(r)->nshards; s++)
            catalog_showtime_rows(rd, s, list_movies_showing, &c);
    }
    c.items = json_array();
    catalog_each(rd, c.kind, list_each, &c);
    catalog_read_end(rd);
    free(c.movie_ids);
    free(c.theater_ids);
    json_t *o = json_object();
    json_object_set_new(o, "items", c.items);
    json_object_set_new(o, "total", json_integer((json_int_t)c.total));
    json_object_set_new(o, "page", json_integer((json_int_t)c.page));
    json_object_set_new(o, "limit", json_integer((json_int_t)c.limit));
    respond_json(r, 200, o, NULL);
}

/* ---- Scatter-gather ----------------------------------------------------------------
 * One part per shard runs there and returns results; the origin gathers. */

static void part_back(net_shard *sh, net_job *part);

static void scatter(net_request *r, net_job_fn part_run, net_job_fn gather)
{
    net_server *s = srv(r);
    net_job *parent = &r->job;
    parent->req = r;
    parent->run = gather;
    parent->parts = calloc(s->nshards, sizeof(net_job *));
    NET_ASSERT(parent->parts != NULL);
    r->busy = true;
    /* One extra count while sending, so a part that completes at once (this
     * shard's) cannot gather before the others left. */
    parent->parts_pending = s->nshards + 1;
    for (uint32_t i = 0; i < s->nshards; i++) {
        net_job *p = calloc(1, sizeof(*p));
        NET_ASSERT(p != NULL);
        p->parent = parent;
        p->part = true;
        p->req = r;
        p->run = part_run;
        p->back = part_back;
        p->user_id = parent->user_id;
        p->role = parent->role;
        parent->parts[i] = p;
        if (!net__job_send(r->shard, p, i)) {
            p->failed = true;
            parent->parts_pending--;
        }
    }
    if (--parent->parts_pending == 0)
        parent->run(r->shard, parent);
}

static void part_back(net_shard *sh, net_job *part)
{
    net_job *parent = part->parent;
    if (--parent->parts_pending == 0)
        parent->run(sh, parent);
}

static void scatter_free(net_request *r)
{
    for (uint32_t i = 0; i < srv(r)->nshards; i++) {
        if (r->job.parts[i] != NULL) {
            free(r->job.parts[i]->out);
            free(r->job.parts[i]);
        }
    }
    free(r->job.parts);
    r->job.parts = NULL;
}

static bool scatter_failed(net_request *r)
{
    for (uint32_t i = 0; i < srv(r)->nshards; i++) {
        if (r->job.parts[i]->failed)
            return true;
    }
    return false;
}

void net__scatter(net_request *r, net_job_fn part_run, net_job_fn gather)
{
    scatter(r, part_run, gather);
}

void net__scatter_free(net_request *r)
{
    scatter_free(r);
}

bool net__scatter_failed(net_request *r)
{
    return scatter_failed(r);
}

net_request *net__gather_begin(net_job *parent)
{
    net_request *r = parent->req;
    r->busy = false;
    if (r->orphan) {
        scatter_free(r);
        net__request_free(r);
        return NULL;
    }
    return r;
}

void net__read_done(net_shard *sh, net_job *j)
{
    job_done(sh, j, observed_lsn(sh), false);
}

/* --- GET /api/showtimes --------------------------------------------------------------- */

typedef struct st_filter {
    uint64_t movie_id, theater_id;
    char city[128], genre[64], date[16];
    bool has_city, has_genre, has_date;
    int64_t day_start, day_end;
    uint64_t min_price, max_price;
    bool has_min, has_max, available, include_past;
    int sort; /* 0 time, 1 price, 2 popularity */
} st_filter;

typedef struct st_item {
    uint64_t id, movie_id, theater_id, screen_id;
    int64_t start_ms;
    uint32_t price_min, price_max;
    uint32_t seats_total, seats_free, seats_sold;
} st_item;

typedef struct st_part {
    const st_filter *f;
    net_shard *sh;
    uint64_t *theaters; /* allowed theater ids, ascending (city filter) */
    size_t theater_n;
    uint64_t *movies; /* allowed movie ids, ascending (genre filter) */
    size_t movie_n;
    st_item *items; /* the best `keep` so far, a heap with the worst on top */
    size_t n, keep;
    uint64_t matched; /* every showtime that passed the filter */
    int64_t now;
} st_part;

static _Thread_local int st_sort_mode; /* qsort has no context argument */
static int st_cmp(const void *a, const void *b)
{
    const st_item *x = a, *y = b;
    if (st_sort_mode == 1 && x->price_min != y->price_min)
        return x->price_min < y->price_min ? -1 : 1;
    if (st_sort_mode == 2 && x->seats_sold != y->seats_sold)
        return x->seats_sold > y->seats_sold ? -1 : 1;
    if (x->start_ms != y->start_ms)
        return x->start_ms < y->start_ms ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

/* Keeps the `keep` first items in sort order (a page needs no more): a
 * heap whose top is the last of them, so a browse costs O(n log keep), not
 * a sort of every match. */
static void st_keep(st_part *p, const st_item *it)
{
    st_item *h = p->items;
    size_t i;
    if (p->n < p->keep) {
        i = p->n++;
        while (i > 0 && st_cmp(&h[(i - 1) / 2], it) < 0) { /* sift up */
            h[i] = h[(i - 1) / 2];
            i = (i - 1) / 2;
        }
        h[i] = *it;
        return;
    }
    if (p->keep == 0 || st_cmp(it, &h[0]) >= 0)
        return; /* after the last one kept */
    i = 0;
    for (;;) { /* replace the top, sift down */
        size_t c = 2 * i + 1;
        if (c >= p->n)
            break;
        if (c + 1 < p->n && st_cmp(&h[c + 1], &h[c]) > 0)
            c++;
        if (st_cmp(&h[c], it) <= 0)
            break;
        h[i] = h[c];
        i = c;
    }
    h[i] = *it;
}

static void st_part_row(st_part *p, const catalog_showtime_row *row)
{
    const st_filter *f = p->f;
    if (f->movie_id != 0 && row->movie_id != f->movie_id)
        return;
    if (f->theater_id != 0 && row->theater_id != f->theater_id)
        return;
    if (f->has_date && (row->start_ms < f->day_start || row->start_ms >= f->day_end))
        return;
    if (!f->include_past && !f->has_date && row->start_ms <= p->now)
        return;
    if (f->has_min && row->price_min < f->min_price)
        return;
    if (f->has_max && row->price_min > f->max_price)
        return;
    if (f->has_city && !net__browse_ids_has(p->theaters, p->theater_n, row->theater_id))
        return;
    if (f->has_genre && !net__browse_ids_has(p->movies, p->movie_n, row->movie_id))
        return;
    engine_category_counts counts[ENGINE_CATEGORIES_MAX];
    int32_t nc = engine_availability_get(p->sh->e, row->id, counts);
    if (nc < 0)
        return; /* catalog ahead of the engine: not sellable yet */
    st_item it = {.id = row->id,
                  .movie_id = row->movie_id,
                  .theater_id = row->theater_id,
                  .screen_id = row->screen_id,
                  .start_ms = row->start_ms,
                  .price_min = row->price_min,
                  .price_max = row->price_max};
    for (int32_t i = 0; i < nc; i++) {
        it.seats_free += counts[i].free;
        it.seats_sold += counts[i].sold;
        it.seats_total += counts[i].free + counts[i].held + counts[i].sold;
    }
    if (f->available && it.seats_free == 0)
        return;
    p->matched++;
    st_keep(p, &it);
}

static void st_part_run(net_shard *sh, net_job *j)
{
    uint64_t page = j->parent->id >> 32, limit = j->parent->id & 0xffffffffu;
    st_part p = {.f = (const st_filter *)j->parent->text,
                 .sh = sh,
                 .now = net__now_ms(sh),
                 .keep = (size_t)(page * limit)};
    catalog_read *rd = NULL;
    if (catalog_read_begin(sh->server->cat, &rd) != 0 || net__browse_index_refresh(sh, rd) != 0) {
        catalog_read_end(rd);
        j->failed = true;
        job_done(sh, j, observed_lsn(sh), false);
        return;
    }
    catalog_read_end(rd); /* the index is a copy: no transaction held while filtering */
    const net_browse_index *ix = &sh->browse;
    if (p.f->has_city)
        p.theater_n = net__browse_ids(ix->theaters, ix->ntheaters, p.f->city, &p.theaters);
    if (p.f->has_genre)
        p.movie_n = net__browse_ids(ix->movies, ix->nmovies, p.f->genre, &p.movies);
    p.items = malloc((p.keep ? p.keep : 1) * sizeof(*p.items));
    NET_ASSERT(p.items != NULL);
    st_sort_mode = p.f->sort;
    for (size_t i = 0; i < ix->nrows; i++)
        st_part_row(&p, &ix->rows[i]);
    free(p.theaters);
    free(p.movies);
    j->out = p.items;
    j->out_len = p.n;
    j->total = p.matched;
    job_done(sh, j, observed_lsn(sh), false);
}

static void st_gather(net_shard *sh, net_job *parent)
{
    (void)sh;
    net_request *r = net__gather_begin(parent);
    if (r == NULL)
        return;
    if (scatter_failed(r)) {
        scatter_free(r);
        busy(r, "a shard is saturated; retry shortly");
        net__request_finish(r);
        return;
    }
    const st_filter *f = (const st_filter *)parent->text;
    /* Each part sent its first page * limit matches (in sort order) and
     * how many matched in all: the page is among the first of the merge. */
    size_t kept = 0;
    uint64_t total = 0;
    for (uint32_t i = 0; i < srv(r)->nshards; i++) {
        kept += parent->parts[i]->out_len;
        total += parent->parts[i]->total;
    }
    st_item *all = malloc((kept ? kept : 1) * sizeof(*all));
    NET_ASSERT(all != NULL);
    size_t k = 0;
    for (uint32_t i = 0; i < srv(r)->nshards; i++) {
        if (parent->parts[i]->out_len > 0)
            memcpy(all + k, parent->parts[i]->out, parent->parts[i]->out_len * sizeof(*all));
        k += parent->parts[i]->out_len;
    }
    scatter_free(r);
    /* Single-threaded: each shard sorts only on its own thread, one at a time. */
    st_sort_mode = f->sort;
    qsort(all, kept, sizeof(*all), st_cmp);
    uint64_t page = parent->id >> 32, limit = parent->id & 0xffffffffu;
    json_t *items = json_array();
    catalog_read *rd = NULL;
    catalog_read_begin(srv(r)->cat, &rd);
    for (size_t i = (size_t)((page - 1) * limit); i < kept && i < (size_t)(page * limit); i++) {
        st_item *it = &all[i];
        json_t *o = rd != NULL ? catalog_get_json(rd, CATALOG_SHOWTIME, it->id) : NULL;
        if (o == NULL)
            o = json_object();
        json_t *m = rd != NULL ? catalog_get_json(rd, CATALOG_MOVIE, it->movie_id) : NULL;
        json_t *t = rd != NULL ? catalog_get_json(rd, CATALOG_THEATER, it->theater_id) : NULL;
        json_object_set(o, "movie_title", json_object_get(m, "title"));
        json_object_set(o, "genre", json_object_get(m, "genre"));
        json_object_set(o, "language", json_object_get(m, "language"));
        json_object_set(o, "theater_name", json_object_get(t, "name"));
        json_object_set(o, "city", json_object_get(t, "city"));
        json_object_set_new(o, "price_from", json_integer(it->price_min));
        json_object_set_new(o, "seats_total", json_integer(it->seats_total));
        json_object_set_new(o, "seats_available", json_integer(it->seats_free));
        json_object_set_new(o, "seats_sold", json_integer(it->seats_sold));
        json_decref(m);
        json_decref(t);
        json_array_append_new(items, o);
    }
    if (rd != NULL)
        catalog_read_end(rd);
    free(all);
    json_t *o = json_object();
    json_object_set_new(o, "items", items);
    json_object_set_new(o, "total", json_integer((json_int_t)total));
    json_object_set_new(o, "page", json_integer((json_int_t)page));
    json_object_set_new(o, "limit", json_integer((json_int_t)limit));
    respond_json(r, 200, o, NULL);
    net__request_finish(r);
}

/* Days since 1970-01-01 of a civil date (proleptic Gregorian). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m + (m > 2 ? (unsigned)-3 : 9)) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

/* The civil date of a day number (inverse of days_from_civil). */
static void h_showtimes_list(net_request *r)
{
    st_filter *f = calloc(1, sizeof(*f));
    NET_ASSERT(f != NULL);
    r->job.text = (char *)f; /* freed with the request */
    uint64_t page, limit;
    if (!query_page(r, &page, &limit))
        return;
    if (query_u64(r, "movie_id", 1, UINT64_MAX, &f->movie_id) < 0 ||
        query_u64(r, "theater_id", 1, UINT64_MAX, &f->theater_id) < 0)
        return;
    int q = query_u64(r, "min_price", 0, UINT32_MAX, &f->min_price);
    if (q < 0)
        return;
    f->has_min = q > 0;
    q = query_u64(r, "max_price", 0, UINT32_MAX, &f->max_price);
    if (q < 0)
        return;
    f->has_max = q > 0;
    int qc = query_get(r, "city", f->city, sizeof(f->city));
    int qg = query_get(r, "genre", f->genre, sizeof(f->genre));
    int qd = query_get(r, "date", f->date, sizeof(f->date));
    if (qc < 0 || qg < 0) {
        bad_field(r, qc < 0 ? "city" : "genre", "malformed or too long");
        return;
    }
    f->has_city = qc > 0;
    f->has_genre = qg > 0;
    if (qd != 0) {
        int y, m, d;
        char tail;
        if (qd < 0 || strlen(f->date) != 10 ||
            sscanf(f->date, "%4d-%2d-%2d%c", &y, &m, &d, &tail) != 3 || m < 1 || m > 12 || d < 1 ||
            d > 31 || y < 1970 || y > 9999) {
            bad_field(r, "date", "must be a date YYYY-MM-DD (UTC)");
            return;
        }
        static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
        bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
        if (d > mdays[m - 1] || (m == 2 && d == 29 && !leap)) {
            bad_field(r, "date", "no such day");
            return;
        }
        f->has_date = true;
        f->day_start = days_from_civil(y, (unsigned)m, (unsigned)d) * 86400000LL;
        f->day_end = f->day_start + 86400000LL;
    }
    if (query_bool(r, "available", &f->available) < 0 ||
        query_bool(r, "include_past", &f->include_past) < 0)
        return;
    char v[16];
    q = query_get(r, "sort", v, sizeof(v));
    if (q != 0) {
        if (q > 0 && strcmp(v, "time") == 0)
            f->sort = 0;
        else if (q > 0 && strcmp(v, "price") == 0)
            f->sort = 1;
        else if (q > 0 && strcmp(v, "popularity") == 0)
            f->sort = 2;
        else {
            bad_field(r, "sort", "must be one of time, price, popularity");
            return;
        }
    }
    r->job.id = page << 32 | limit;
    scatter(r, st_part_run, st_gather);
}

/* ---- Seat maps ------------------------------------------------------------------------------ */

static void jt_time(net_jtext *t, int64_t ms)
{
    char b[32];
    format_time(ms, ms % 1000 != 0, b);
    net__jt_str(t, b);
}

static void respond_text(net_request *r, int status, const net_jtext *t, const char *extra)
{
    net__respond(r, status, "application/json", extra, t->buf, t->n);
}

static const char *state_name(int s)
{
    switch (s) {
    case ENGINE_SEAT_FREE:
        return "free";
    case ENGINE_SEAT_HELD:
        return "held";
    case ENGINE_SEAT_SOLD:
        return "sold";
    default:
        return "unavailable";
    }
}

static json_t *seat_labels(net_shard *sh, uint64_t layout, const uint32_t *seats, uint32_t n)
{
    json_t *a = json_array();
    for (uint32_t i = 0; i < n; i++) {
        const engine_seat_spec *s = engine_layout_seat(sh->e, layout, seats[i]);
        json_array_append_new(a, json_string(s != NULL ? s->label : "?"));
    }
    return a;
}

/* The seat map's JSON (GET /api/seats/:id) into `t` (jt_init'd here). */
static void seatmap_write(net_shard *sh, uint64_t id, uint64_t layout, int64_t start,
                          const uint32_t *prices, const uint8_t *states, uint32_t n, net_jtext *tp)
{
    engine_category_counts counts[ENGINE_CATEGORIES_MAX];
    engine_availability_get(sh->e, id, counts);
    uint32_t ncat = engine_layout_category_count(sh->e, layout);
    net__jt_init(tp);
    net__jt_lit(tp, "{\"showtime_id\":");
    net__jt_u64(tp, id);
    net__jt_lit(tp, ",\"screen_id\":");
    net__jt_u64(tp, layout);
    net__jt_lit(tp, ",\"start_time\":");
    jt_time(tp, start);
    net__jt_lit(tp, ",\"currency\":\"" CURRENCY "\",\"categories\":[");
    for (uint32_t c = 0; c < ncat; c++) {
        net__jt_lit(tp, c > 0 ? ",{\"name\":" : "{\"name\":");
        net__jt_str(tp, engine_layout_category_name(sh->e, layout, c));
        net__jt_lit(tp, ",\"price\":");
        net__jt_u64(tp, prices[c]);
        net__jt_lit(tp, ",\"free\":");
        net__jt_u64(tp, counts[c].free);
        net__jt_lit(tp, ",\"held\":");
        net__jt_u64(tp, counts[c].held);
        net__jt_lit(tp, ",\"sold\":");
        net__jt_u64(tp, counts[c].sold);
        net__jt_lit(tp, ",\"unavailable\":");
        net__jt_u64(tp, counts[c].blocked);
        net__jt_lit(tp, "}");
    }
    net__jt_lit(tp, "],\"seats\":[");
    for (uint32_t i = 0; i < n; i++) {
        const engine_seat_spec *st = engine_layout_seat(sh->e, layout, i);
        net__jt_lit(tp, i > 0 ? ",{\"label\":" : "{\"label\":");
        net__jt_str(tp, st->label);
        net__jt_lit(tp, ",\"row\":");
        net__jt_str(tp, engine_layout_row_label(sh->e, layout, st->row));
        net__jt_lit(tp, ",\"col\":");
        net__jt_u64(tp, st->col);
        net__jt_lit(tp, ",\"category\":");
        net__jt_str(tp, engine_layout_category_name(sh->e, layout, st->category));
        net__jt_lit(tp, ",\"price\":");
        net__jt_u64(tp, prices[st->category]);
        net__jt_lit(tp, ",\"state\":\"");
        net__jt_lit(tp, state_name(states[i]));
        net__jt_lit(tp, "\"");
        if (st->flags & ENGINE_SEAT_FLAG_ACCESSIBLE)
            net__jt_lit(tp, ",\"accessible\":true");
        if (st->flags & ENGINE_SEAT_FLAG_COMPANION)
            net__jt_lit(tp, ",\"companion\":true");
        net__jt_lit(tp, "}");
    }
    net__jt_lit(tp, "]}");
}

char *net__seatmap_json(net_shard *sh, uint64_t showtime_id, size_t *len)
{
    uint64_t layout;
    int64_t start;
    uint32_t prices[ENGINE_CATEGORIES_MAX];
    if (!engine_showtime_get(sh->e, showtime_id, &layout, &start, prices))
        return NULL;
    uint32_t n = engine_layout_seat_count(sh->e, layout);
    uint8_t *states = malloc(n > 0 ? n : 1);
    NET_ASSERT(states != NULL);
    NET_ASSERT(engine_seatmap_get(sh->e, showtime_id, states, n) == (int32_t)n);
    net_jtext t;
    seatmap_write(sh, showtime_id, layout, start, prices, states, n, &t);
    free(states);
    return net__jt_take(&t, len);
}

static void run_seatmap(net_shard *sh, net_job *j)
{
    net_request *r = j->req;
    uint64_t layout;
    int64_t start;
    uint32_t prices[ENGINE_CATEGORIES_MAX];
    if (!engine_showtime_get(sh->e, j->id, &layout, &start, prices)) {
        not_found(r, "showtime");
        job_done(sh, j, observed_lsn(sh), false); /* a delete may not be durable yet */
        return;
    }
    if (atomic_load(&sh->wal_error) == 0)
        net__holds_sweep(sh, net__now_ms(sh));
    uint32_t n = engine_layout_seat_count(sh->e, layout);
    uint8_t *states = malloc(n);
    NET_ASSERT(states != NULL);
    NET_ASSERT(engine_seatmap_get(sh->e, j->id, states, n) == (int32_t)n);
    uint32_t ncat = engine_layout_category_count(sh->e, layout);
    /* The ETag covers everything the answer shows. */
    XXH3_state_t *hs = XXH3_createState();
    XXH3_64bits_reset_withSeed(hs, j->id);
    XXH3_64bits_update(hs, states, n);
    XXH3_64bits_update(hs, prices, sizeof(prices[0]) * ncat);
    XXH3_64bits_update(hs, &layout, sizeof(layout));
    char etag[40];
    snprintf(etag, sizeof(etag), "\"%016llx\"", (unsigned long long)XXH3_64bits_digest(hs));
    XXH3_freeState(hs);
    char hdr[80];
    snprintf(hdr, sizeof(hdr), "ETag: %s\r\nCache-Control: no-cache\r\n", etag);
    if (r->if_none_match[0] != '\0' &&
        (strstr(r->if_none_match, etag) != NULL || strcmp(r->if_none_match, "*") == 0)) {
        net__respond(r, 304, "application/json", hdr, NULL, 0);
        free(states);
        job_done(sh, j, observed_lsn(sh), false);
        return;
    }
    net_jtext t;
    seatmap_write(sh, j->id, layout, start, prices, states, n, &t);
    free(states);
    respond_text(r, 200, &t, hdr);
    net__jt_free(&t);
    job_done(sh, j, observed_lsn(sh), false);
}

static void h_seats(net_request *r)
{
    send_job(r, shard_of_showtime(r, r->job.id), run_seatmap);
}

/* ---- Holds and bookings ---------------------------------------------------------------------- */

/* A hold as JSON (the answer of reserve and GET /api/holds/:id). */
static void hold_text(net_shard *sh, const engine_hold_info *h, net_jtext *t)
{
    uint64_t layout = 0;
    engine_showtime_get(sh->e, h->showtime_id, &layout, NULL, NULL);
    net__jt_init(t);
    net__jt_lit(t, "{\"hold_id\":");
    net__jt_u64(t, h->id);
    net__jt_lit(t, ",\"showtime_id\":");
    net__jt_u64(t, h->showtime_id);
    net__jt_lit(t, ",\"seats\":[");
    for (uint32_t i = 0; i < h->seat_count; i++) {
        const engine_seat_spec *s = engine_layout_seat(sh->e, layout, h->seats[i]);
        if (i > 0)
            net__jt_lit(t, ",");
        net__jt_str(t, s != NULL ? s->label : "?");
    }
    net__jt_lit(t, "],\"amount\":");
    net__jt_u64(t, h->amount);
    net__jt_lit(t, ",\"currency\":\"" CURRENCY "\",\"created_at\":");
    jt_time(t, h->created_ms);
    net__jt_lit(t, ",\"expires_at\":");
    jt_time(t, h->expires_ms);
    int64_t left = h->expires_ms - net__now_ms(sh);
    net__jt_lit(t, ",\"expires_in_s\":");
    net__jt_i64(t, left > 0 ? (left + 999) / 1000 : 0);
    net__jt_lit(t, h->offer ? ",\"source\":\"waitlist\"}" : ",\"source\":\"reserve\"}");
}

static const char *payment_name(engine_payment p)
{
    return p == ENGINE_PAY_UPI ? "upi" : p == ENGINE_PAY_CARD ? "card" : "wallet";
}

static json_t *booking_json(net_shard *sh, const engine_booking_info *b)
{
    uint64_t layout = 0;
    int64_t start = 0;
    engine_showtime_get(sh->e, b->showtime_id, &layout, &start, NULL);
    json_t *o = json_object();
    json_object_set_new(o, "booking_id", json_integer((json_int_t)b->id));
    json_object_set_new(o, "showtime_id", json_integer((json_int_t)b->showtime_id));
    json_object_set_new(o, "hold_id", json_integer((json_int_t)b->hold_id));
    json_object_set_new(o, "user_id", json_integer((json_int_t)b->user_id));
    json_object_set_new(
        o, "status",
        json_string(b->status == ENGINE_BOOKING_STATUS_CONFIRMED ? "confirmed" : "cancelled"));
    json_object_set_new(
        o, "seats", layout != 0 ? seat_labels(sh, layout, b->seats, b->seat_count) : json_array());
    json_object_set_new(o, "amount", json_integer((json_int_t)b->amount));
    json_object_set_new(o, "currency", json_string(CURRENCY));
    json_object_set_new(o, "payment_method", json_string(payment_name(b->payment)));
    json_object_set_new(o, "confirmed_at", json_time(b->confirmed_ms));
    if (start != 0)
        json_object_set_new(o, "start_time", json_time(start));
    if (b->status == ENGINE_BOOKING_STATUS_CANCELLED) {
        json_object_set_new(o, "cancelled_at", json_time(b->cancelled_ms));
        json_object_set_new(o, "refund", json_integer((json_int_t)b->refund));
    }
    return o;
}

/* Sends the engine's refusal as the right problem. */
static void refusal(net_shard *sh, net_request *r, engine_result er, uint64_t layout,
                    const uint32_t *conflicts, uint32_t nconf)
{
    switch (er) {
    case ENGINE_UNKNOWN_SHOWTIME:
        problem(r, 404, "not-found", "Not found", "no showtime with this id", "showtime_id", NULL,
                NULL);
        break;
    case ENGINE_SHOW_STARTED:
        problem(r, 409, "sales-closed", "Sales closed",
                "the showtime has started; sales and cancellations are closed", NULL, NULL, NULL);
        break;
    case ENGINE_BAD_COUNT:
        bad_field(r, "seats", "between 1 and the per-hold maximum of seats");
        break;
    case ENGINE_DUPLICATE_SEAT:
        bad_field(r, "seats", "a seat is listed twice");
        break;
    case ENGINE_SEAT_BLOCKED:
    case ENGINE_SEAT_TAKEN: {
        json_t *ext = json_object();
        json_object_set_new(ext, "seats", seat_labels(sh, layout, conflicts, nconf));
        problem(r, 409, er == ENGINE_SEAT_TAKEN ? "seats-taken" : "seats-unavailable",
                er == ENGINE_SEAT_TAKEN ? "Seats taken" : "Seats not for sale",
                er == ENGINE_SEAT_TAKEN
                    ? "some of the seats are held or sold; the seats member lists them"
                    : "some of the seats are not for sale; the seats member lists them",
                "seats", ext, NULL);
        break;
    }
    case ENGINE_NOT_AVAILABLE:
        problem(r, 409, "not-available", "Not available",
                "no block of that many adjacent free seats in this category", "count", NULL, NULL);
        break;
    case ENGINE_UNKNOWN_HOLD:
    case ENGINE_NOT_OWNER:
        problem(r, 404, "not-found", "Not found", "no hold or booking of yours with this id", NULL,
                NULL, NULL);
        break;
    case ENGINE_UNKNOWN_BOOKING:
        problem(r, 404, "not-found", "Not found", "no booking of yours with this id", NULL, NULL,
                NULL);
        break;
    case ENGINE_HOLD_EXPIRED:
        problem(r, 410, "hold-expired", "Hold expired",
                "the hold's time ran out and its seats were released; reserve again", "hold_id",
                NULL, NULL);
        break;
    case ENGINE_HOLD_ENDED:
        problem(r, 410, "hold-ended", "Hold ended",
                "the hold was released, expired or already confirmed", "hold_id", NULL, NULL);
        break;
    case ENGINE_BOOKING_CANCELLED:
        problem(r, 409, "already-cancelled", "Already cancelled", "the booking is cancelled", NULL,
                NULL, NULL);
        break;
    case ENGINE_IDEM_KEY_REUSED:
        problem(r, 422, "idempotency-key-reused", "Idempotency-Key reused",
                "this Idempotency-Key confirmed another hold", "idempotency-key", NULL, NULL);
        break;
    case ENGINE_CAPACITY:
        busy(r, "the shard holds as many holds or bookings as it may");
        break;
    default:
        problem(r, 500, "internal", "Internal error", engine_result_name(er), NULL, NULL, NULL);
        break;
    }
}

static bool admission_ok(net_shard *sh, net_request *r, uint64_t user, uint64_t showtime,
                         int64_t now);

/* The index of the layout's category called `name` (ASCII case ignored), or UINT32_MAX. */
static uint32_t category_find(net_shard *sh, uint64_t layout, const char *name)
{
    uint32_t n = engine_layout_category_count(sh->e, layout);
    for (uint32_t c = 0; c < n; c++) {
        if (str_ieq(engine_layout_category_name(sh->e, layout, c), name))
            return c;
    }
    return UINT32_MAX;
}

static void run_reserve(net_shard *sh, net_job *j)
{
    net_request *r = j->req;
    if (write_refused(sh, r)) {
        job_done(sh, j, 0, false);
        return;
    }
    int64_t now = net__now_ms(sh);
    net__holds_sweep(sh, now);
    uint64_t layout;
    engine_record rec;
    engine_result er;
    uint32_t conflicts[ENGINE_HOLD_SEATS_MAX], nconf = 0;
    if (!engine_showtime_get(sh->e, j->id, &layout, NULL, NULL)) {
        refusal(sh, r, ENGINE_UNKNOWN_SHOWTIME, 0, NULL, 0);
        goto refused;
    }
    if (!admission_ok(sh, r, j->user_id, j->id, now))
        goto refused;
    const net_reserve_args *a = &r->reserve;
    if (a->nseats > 0) {
        uint32_t idx[ENGINE_HOLD_SEATS_MAX];
        for (uint32_t i = 0; i < a->nseats; i++) {
            int32_t s = engine_layout_seat_find(sh->e, layout, a->seats[i]);
            if (s < 0) {
                char field[32];
                snprintf(field, sizeof(field), "seats[%" PRIu32 "]", i);
                problem(r, 400, "invalid-field", "Invalid request field",
                        "no seat with this label in the showtime's layout", field, NULL, NULL);
                goto refused;
            }
            idx[i] = (uint32_t)s;
        }
        er = engine_hold_place(sh->e, now, j->id, j->user_id, idx, a->nseats, conflicts, &nconf,
                               &rec);
    } else {
        uint32_t c = category_find(sh, layout, a->category);
        if (c == UINT32_MAX) {
            bad_field(r, "category", "no such seat category in this showtime");
            goto refused;
        }
        uint32_t opts = a->accessible ? ENGINE_BEST_ALLOW_ACCESSIBLE : 0;
        er = engine_hold_best(sh->e, now, j->id, j->user_id, a->count, c, opts, &rec);
    }
    if (er != ENGINE_OK) {
        refusal(sh, r, er, layout, conflicts, nconf);
        goto refused;
    }
    int64_t lsn = net__journal(sh, &rec);
    if (lsn < 0) {
        /* Fail-stop: the hold exists in memory but is not acknowledged; the
         * shard refuses writes from now on and recovery will not have it. */
        wal_append_failed(r, lsn);
        goto refused;
    }
    atomic_fetch_add(&sh->m.holds, 1);
    engine_hold_info h;
    NET_ASSERT(engine_hold_get(sh->e, rec.u.hold_place.hold_id, &h));
    net_jtext t;
    hold_text(sh, &h, &t);
    respond_text(r, 201, &t, NULL);
    net__jt_free(&t);
    job_done(sh, j, (uint64_t)lsn, false);
    return;
refused:
    job_done(sh, j, observed_lsn(sh), false);
}

/* Idempotent requests go first to the key's home shard (a hash of user and
 * key), which owns that key's entry whatever the request names: so a key
 * reused for a showtime on another shard is still caught. The home runs the
 * check, sends the operation on to the shard that owns the showtime or hold,
 * and stores the answer when it comes back (durable by then). */
static void idem_sub_back(net_shard *sh, net_job *sub)
{
    net_job *j = sub->parent;
    free(sub);
    idem_end(sh, j);
    job_done(sh, j, 0, false);
}

static void run_idem_home(net_shard *sh, net_job *j)
{
    if (idem_begin(sh, j))
        return;
    net_job *sub = calloc(1, sizeof(*sub));
    NET_ASSERT(sub != NULL);
    sub->parent = j;
    sub->req = j->req;
    sub->run = j->exec;
    sub->back = idem_sub_back;
    sub->user_id = j->user_id;
    sub->role = j->role;
    sub->id = j->id;
    sub->body = j->body; /* borrowed: the request owns it */
    if (!net__job_send(sh, sub, j->exec_shard)) {
        free(sub);
        busy(j->req, "the shard that owns this resource is saturated; retry shortly");
        idem_end(sh, j);
        job_done(sh, j, 0, false);
    }
}

/* Sends an operation to `owner`, through the key's home shard when the
 * request has an Idempotency-Key. */
static bool send_idempotent(net_request *r, uint32_t owner, net_job_fn run)
{
    if (r->idempotency_key[0] == '\0')
        return send_job(r, owner, run);
    r->job.exec = run;
    r->job.exec_shard = owner;
    uint64_t h =
        XXH3_64bits_withSeed(r->idempotency_key, strlen(r->idempotency_key), r->job.user_id);
    return send_job(r, (uint32_t)(h % srv(r)->nshards), run_idem_home);
}

/* The careful read of a reserve body (jansson): every error answered with
 * its field and reason. False when it answered one. */
static bool reserve_body_careful(net_request *r, net_reserve_args *a)
{
    static const char *const fields[] = {"showtime_id", "seats",      "count",
                                         "category",    "accessible", NULL};
    json_t *b = body_fields(r, fields);
    if (b == NULL || !body_id(r, b, "showtime_id", &a->showtime_id))
        return false;
    json_t *seats = json_object_get(b, "seats"), *count = json_object_get(b, "count");
    uint32_t max = srv(r)->cfg.engine.max_seats_per_hold;
    char reason[96];
    if ((seats == NULL) == (count == NULL)) {
        bad_field(r, seats ? "count" : "seats",
                  seats ? "give either seats (a list of labels) or count and category, not both"
                        : "give seats (a list of labels) or count and category");
        return false;
    }
    a->nseats = 0;
    a->count = 0;
    a->accessible = false;
    a->category[0] = '\0';
    if (seats != NULL) {
        snprintf(reason, sizeof(reason), "must be a list of 1 to %" PRIu32 " seat labels", max);
        if (!json_is_array(seats) || json_array_size(seats) < 1 || json_array_size(seats) > max) {
            bad_field(r, "seats", reason);
            return false;
        }
        for (size_t i = 0; i < json_array_size(seats); i++) {
            json_t *s = json_array_get(seats, i);
            if (!json_is_string(s) || json_string_length(s) == 0 ||
                json_string_length(s) >= ENGINE_LABEL_MAX) {
                char field[32];
                snprintf(field, sizeof(field), "seats[%zu]", i);
                bad_field(r, field, "must be a seat label such as \"A12\"");
                return false;
            }
            snprintf(a->seats[i], sizeof(a->seats[i]), "%s", json_string_value(s));
        }
        a->nseats = (uint32_t)json_array_size(seats);
        if (json_object_get(b, "category") || json_object_get(b, "accessible")) {
            bad_field(r, json_object_get(b, "category") ? "category" : "accessible",
                      "only with count (best available)");
            return false;
        }
        return true;
    }
    snprintf(reason, sizeof(reason), "must be an integer from 1 to %" PRIu32, max);
    if (!json_is_integer(count) || json_integer_value(count) < 1 ||
        json_integer_value(count) > max) {
        bad_field(r, "count", reason);
        return false;
    }
    a->count = (uint32_t)json_integer_value(count);
    json_t *cat = json_object_get(b, "category");
    if (!json_is_string(cat)) {
        bad_field(r, "category", cat == NULL ? "is required with count" : "must be a string");
        return false;
    }
    /* Longer than any category name: kept as "", which matches none either. */
    if (strlen(json_string_value(cat)) < sizeof(a->category))
        snprintf(a->category, sizeof(a->category), "%s", json_string_value(cat));
    json_t *acc = json_object_get(b, "accessible");
    if (acc != NULL && !json_is_boolean(acc)) {
        bad_field(r, "accessible", "must be true or false");
        return false;
    }
    a->accessible = json_is_true(acc);
    return true;
}

static void h_reserve(net_request *r)
{
    net_reserve_args *a = &r->reserve;
    uint32_t max = srv(r)->cfg.engine.max_seats_per_hold;
    /* Plain bodies skip the JSON tree (body.h); the rest, errors included,
     * are read carefully. Either way `a` says what is asked. */
    bool fast = body_is_json(r) && net_reserve_body_fast(r->body, r->body_len, max, a);
    if (!fast && !reserve_body_careful(r, a))
        return;
    r->job.id = a->showtime_id;
    if (!idem_header_ok(r))
        return;
    uint64_t user = r->job.user_id;
    if (rate_refused(r, NET_RL_RESERVE_USER, &user, sizeof(user), NET_RL_RESERVE_IP))
        return;
    if (!send_idempotent(r, shard_of_showtime(r, r->job.id), run_reserve))
        rate_undo(r, NET_RL_RESERVE_USER, &user, sizeof(user), NET_RL_RESERVE_IP);
}

static void run_release(net_shard *sh, net_job *j)
{
    net_request *r = j->req;
    if (write_refused(sh, r)) {
        job_done(sh, j, 0, false);
        return;
    }
    engine_record rec;
    engine_result er = engine_hold_release(sh->e, net__now_ms(sh), j->id, j->user_id, &rec);
    if (er == ENGINE_HOLD_ENDED && hold_expired_recently(sh, j->id))
        er = ENGINE_HOLD_EXPIRED; /* ended by expiry: say so */
    if (er != ENGINE_OK) {
        refusal(sh, r, er, 0, NULL, 0);
        job_done(sh, j, observed_lsn(sh), false);
        return;
    }
    int64_t lsn = journal_or_answer(sh, j, &rec);
    if (lsn < 0)
        return;
    atomic_fetch_add(&sh->m.releases, 1);
    net__onsale_steps(sh, rec.time_ms);
    net__respond(r, 204, "application/json", NULL, NULL, 0);
    job_done(sh, j, (uint64_t)lsn, false);
}

static void run_hold_get(net_shard *sh, net_job *j)
{
    net_request *r = j->req;
    engine_hold_info h;
    if (!engine_hold_get(sh->e, j->id, &h) ||
        (h.user_id != j->user_id && j->role != AUTH_ROLE_ADMIN)) {
        problem(r, 404, "not-found", "Not found",
                "no live hold of yours with this id (it may have ended)", NULL, NULL, NULL);
    } else {
        net_jtext t;
        hold_text(sh, &h, &t);
        respond_text(r, 200, &t, NULL);
        net__jt_free(&t);
    }
    job_done(sh, j, observed_lsn(sh), false);
}

static void h_hold(net_request *r)
{
    uint32_t shard;
    if (!shard_of_engine_id(r, r->job.id, &shard)) {
        not_found(r, "hold");
        return;
    }
    send_job(r, shard, r->method == HTTP_DELETE ? run_release : run_hold_get);
}

static void run_confirm(net_shard *sh, net_job *j)
{
    net_request *r = j->req;
    if (write_refused(sh, r)) {
        job_done(sh, j, 0, false);
        return;
    }
    const char *m =
        json_string_value(json_object_get(json_object_get(j->body, "payment"), "method"));
    engine_payment pay = strcmp(m, "upi") == 0    ? ENGINE_PAY_UPI
                         : strcmp(m, "card") == 0 ? ENGINE_PAY_CARD
                                                  : ENGINE_PAY_WALLET;
    uint64_t booking_id = 0;
    bool replayed = false;
    engine_record rec;
    /* Sales close at the start: a hold placed before it cannot be paid
     * after it (the hold then simply expires). */
    engine_hold_info h;
    int64_t start = 0, now = net__now_ms(sh);
    if (engine_hold_get(sh->e, j->id, &h) && h.user_id == j->user_id &&
        engine_showtime_get(sh->e, h.showtime_id, NULL, &start, NULL) && now >= start) {
        refusal(sh, r, ENGINE_SHOW_STARTED, 0, NULL, 0);
        job_done(sh, j, observed_lsn(sh), false);
        return;
    }
    engine_result er =
        engine_booking_confirm(sh->e, now, j->id, j->user_id, pay, r->idempotency_key,
                               (uint32_t)strlen(r->idempotency_key), &booking_id, &replayed, &rec);
    if (er == ENGINE_HOLD_ENDED && hold_expired_recently(sh, j->id))
        er = ENGINE_HOLD_EXPIRED; /* ended by expiry: say so */
    if (er != ENGINE_OK) {
        refusal(sh, r, er, 0, NULL, 0);
        job_done(sh, j, observed_lsn(sh), false);
        return;
    }
    uint64_t lsn = observed_lsn(sh);
    if (!replayed) {
        int64_t l = net__journal(sh, &rec);
        if (l < 0) {
            wal_append_failed(r, l);
            job_done(sh, j, 0, false);
            return;
        }
        lsn = (uint64_t)l;
        atomic_fetch_add(&sh->m.confirms, 1);
    }
    engine_booking_info b;
    NET_ASSERT(engine_booking_get(sh->e, booking_id, &b));
    /* A replay (the engine remembers the key across restarts) answers like
     * the original, as the Idempotency-Key table does. */
    respond_json(r, 201, booking_json(sh, &b), replayed ? "Idempotent-Replayed: true\r\n" : NULL);
    job_done(sh, j, lsn, false);
}

static void h_confirm(net_request *r)
{
    static const char *const fields[] = {"hold_id", "payment", NULL};
    json_t *b = body_fields(r, fields);
    if (b == NULL || !body_id(r, b, "hold_id", &r->job.id))
        return;
    json_t *pay = json_object_get(b, "payment");
    if (!json_is_object(pay)) {
        bad_field(r, "payment", pay == NULL ? "is required" : "must be an object with a method");
        return;
    }
    const char *m = json_string_value(json_object_get(pay, "method"));
    if (m == NULL ||
        (strcmp(m, "upi") != 0 && strcmp(m, "card") != 0 && strcmp(m, "wallet") != 0)) {
        bad_field(r, "payment.method", "must be one of upi, card, wallet");
        return;
    }
    if (json_object_size(pay) != 1) {
        bad_field(r, "payment", "only method is accepted (payment is simulated)");
        return;
    }
    if (!idem_header_ok(r))
        return;
    uint32_t shard;
    if (!shard_of_engine_id(r, r->job.id, &shard)) {
        problem(r, 404, "not-found", "Not found", "no hold of yours with this id", "hold_id", NULL,
                NULL);
        return;
    }
    uint64_t user = r->job.user_id;
    if (rate_refused(r, NET_RL_CONFIRM_USER, &user, sizeof(user), NET_RL_CONFIRM_IP))
        return;
    if (!send_idempotent(r, shard, run_confirm))
        rate_undo(r, NET_RL_CONFIRM_USER, &user, sizeof(user), NET_RL_CONFIRM_IP);
}

static void run_cancel(net_shard *sh, net_job *j)
{
    net_request *r = j->req;
    if (write_refused(sh, r)) {
        job_done(sh, j, 0, false);
        return;
    }
    uint64_t refund = 0;
    engine_record rec;
    engine_result er =
        engine_booking_cancel(sh->e, net__now_ms(sh), j->id, j->user_id, &refund, &rec);
    if (er != ENGINE_OK) {
        refusal(sh, r, er == ENGINE_NOT_OWNER ? ENGINE_UNKNOWN_BOOKING : er, 0, NULL, 0);
        job_done(sh, j, observed_lsn(sh), false);
        return;
    }
    int64_t lsn = journal_or_answer(sh, j, &rec);
    if (lsn < 0)
        return;
    atomic_fetch_add(&sh->m.cancels, 1);
    net__onsale_steps(sh, rec.time_ms);
    engine_booking_info b;
    NET_ASSERT(engine_booking_get(sh->e, j->id, &b));
    respond_json(r, 200, booking_json(sh, &b), NULL);
    job_done(sh, j, (uint64_t)lsn, false);
}

static void run_booking_get(net_shard *sh, net_job *j)
{
    net_request *r = j->req;
    engine_booking_info b;
    if (!engine_booking_get(sh->e, j->id, &b) ||
        (b.user_id != j->user_id && j->role != AUTH_ROLE_ADMIN))
        refusal(sh, r, ENGINE_UNKNOWN_BOOKING, 0, NULL, 0);
    else
        respond_json(r, 200, booking_json(sh, &b), NULL);
    job_done(sh, j, observed_lsn(sh), false);
}

static void h_booking(net_request *r)
{
    uint32_t shard;
    if (!shard_of_engine_id(r, r->job.id, &shard)) {
        refusal(r->shard, r, ENGINE_UNKNOWN_BOOKING, 0, NULL, 0);
        return;
    }
    send_job(r, shard, r->method == HTTP_POST ? run_cancel : run_booking_get);
}

/* --- GET /api/bookings/my-bookings: every shard's bookings of the user --- */

typedef struct mb_item {
    int64_t confirmed_ms;
    uint64_t id;
    char *json;
} mb_item;

static void mb_part_run(net_shard *sh, net_job *j)
{
    net_request *r = j->req;
    uint64_t page = r->job.id >> 32, limit = r->job.id & 0xffffffffu;
    uint32_t want = (uint32_t)(page * limit);
    uint64_t *ids = malloc(want * sizeof(*ids));
    NET_ASSERT(ids != NULL);
    bool holds = r->route_id >= 0 && strcmp(r->route, "/api/bookings/my-holds") == 0;
    if (holds && atomic_load(&sh->wal_error) == 0)
        net__holds_sweep(sh, net__now_ms(sh));
    uint32_t total = holds ? engine_user_holds(sh->e, j->user_id, 0, ids, want)
                           : engine_user_bookings(sh->e, j->user_id, 0, ids, want);
    uint32_t n = total < want ? total : want;
    mb_item *items = calloc(n ? n : 1, sizeof(*items));
    NET_ASSERT(items != NULL);
    for (uint32_t i = 0; i < n; i++) {
        if (holds) { /* newest first, as bookings */
            engine_hold_info h;
            NET_ASSERT(engine_hold_get(sh->e, ids[i], &h));
            net_jtext t;
            hold_text(sh, &h, &t);
            items[i] =
                (mb_item){.confirmed_ms = h.created_ms, .id = h.id, .json = strndup(t.buf, t.n)};
            net__jt_free(&t);
            continue;
        }
        engine_booking_info b;
        NET_ASSERT(engine_booking_get(sh->e, ids[i], &b));
        json_t *o = booking_json(sh, &b);
        items[i] = (mb_item){
            .confirmed_ms = b.confirmed_ms, .id = b.id, .json = json_dumps(o, JSON_COMPACT)};
        json_decref(o);
    }
    free(ids);
    j->out = items;
    j->out_len = n;
    j->total = total;
    job_done(sh, j, observed_lsn(sh), false);
}

static int mb_cmp(const void *a, const void *b)
{
    const mb_item *x = a, *y = b;
    if (x->confirmed_ms != y->confirmed_ms)
        return x->confirmed_ms > y->confirmed_ms ? -1 : 1;
    return x->id > y->id ? -1 : x->id < y->id;
}

static void mb_gather(net_shard *sh, net_job *parent)
{
    (void)sh;
    net_request *r = parent->req;
    r->busy = false;
    size_t n = 0;
    uint64_t total = 0;
    for (uint32_t i = 0; i < srv(r)->nshards; i++) {
        n += parent->parts[i]->out_len;
        total += parent->parts[i]->total;
    }
    mb_item *all = calloc(n ? n : 1, sizeof(*all));
    NET_ASSERT(all != NULL);
    size_t k = 0;
    for (uint32_t i = 0; i < srv(r)->nshards; i++) {
        net_job *p = parent->parts[i];
        if (p->out_len > 0)
            memcpy(all + k, p->out, p->out_len * sizeof(*all));
        k += p->out_len;
    }
    bool failed = scatter_failed(r);
    scatter_free(r);
    qsort(all, n, sizeof(*all), mb_cmp);
    uint64_t page = parent->id >> 32, limit = parent->id & 0xffffffffu;
    if (!r->orphan && !failed) {
        json_t *items = json_array();
        for (size_t i = (size_t)((page - 1) * limit); i < n && i < (size_t)(page * limit); i++)
            json_array_append_new(items, json_loads(all[i].json, 0, NULL));
        json_t *o = json_object();
        json_object_set_new(o, "items", items);
        json_object_set_new(o, "total", json_integer((json_int_t)total));
        json_object_set_new(o, "page", json_integer((json_int_t)page));
        json_object_set_new(o, "limit", json_integer((json_int_t)limit));
        respond_json(r, 200, o, NULL);
    }
    for (size_t i = 0; i < n; i++)
        free(all[i].json);
    free(all);
    if (r->orphan) {
        net__request_free(r);
        return;
    }
    if (failed)
        busy(r, "a shard is saturated; retry shortly");
    net__request_finish(r);
}

static void h_my_bookings(net_request *r)
{
    uint64_t page, limit;
    if (!query_page(r, &page, &limit))
        return;
    r->job.id = page << 32 | limit;
    scatter(r, mb_part_run, mb_gather);
}

/* ---- On-sale: waiting lists and virtual queues ---------------------------------------------- */

enum {
    ONSALE_STEPS_MAX = 512,     /* on-sale steps per call; the rest on the next tick */
    QUEUE_RATE_MAX = 1000000,   /* admissions per second a queue may be set to */
    ADMISSION_TOKEN_TTL_S = 120 /* an admission token lives at most this long */
};

void net__onsale_steps(net_shard *sh, int64_t now)
{
    if (atomic_load(&sh->wal_error) != 0)
        return;
    engine_record rec;
    for (int i = 0; i < ONSALE_STEPS_MAX; i++) {
        /* Only a queue start uses the seed (the shuffle must be unpredictable):
         * a fresh one is drawn once one was used, not on every call (this runs
         * after every release, cancellation and tick). */
        if (!sh->onsale_seeded) {
            randombytes_buf(&sh->onsale_seed, sizeof(sh->onsale_seed));
            sh->onsale_seeded = true;
        }
        if (engine_onsale_next(sh->e, now, sh->onsale_seed, &rec) != ENGINE_OK)
            return; /* nothing due, or the hold pool is full: the next tick retries */
        if (rec.type == ENGINE_REC_QUEUE_START)
            sh->onsale_seeded = false;
        if (net__journal(sh, &rec) < 0)
            return; /* the shard fail-stops (server.c) */
        if (rec.type == ENGINE_REC_WAITLIST_OFFER) {
            atomic_fetch_add(&sh->m.holds, 1);
            atomic_fetch_add(&sh->m.offers, 1);
        }
    }
}

/* The admission token: "a1.<expiry, unix seconds>.<base64url of the first 16
 * bytes of HMAC-SHA256(jwt secret, "usher-admit|user|showtime|expiry")>". */
static void admission_mac(net_server *s, uint64_t user, uint64_t showtime, int64_t exp_s,
                          uint8_t mac[32])
{
    char msg[96];
    int n = snprintf(msg, sizeof(msg), "usher-admit|%" PRIu64 "|%" PRIu64 "|%" PRId64, user,
                     showtime, exp_s);
    unsigned int len = 32;
    NET_ASSERT(n > 0 && (size_t)n < sizeof(msg) &&
               HMAC(EVP_sha256(), s->jwt.secret, (int)s->jwt.secret_len, (const uint8_t *)msg,
                    (size_t)n, mac, &len) != NULL);
}

static void admission_token(net_server *s, uint64_t user, uint64_t showtime, int64_t exp_s,
                            char out[64])
{
    uint8_t mac[32];
    admission_mac(s, user, showtime, exp_s, mac);
    int n = snprintf(out, 64, "a1.%" PRId64 ".", exp_s);
    size_t m = 0;
    NET_ASSERT(n > 0 && auth_base64url_encode(mac, 16, out + n, 64 - (size_t)n, &m) == 0);
}

/* Reserve on a showtime with a virtual queue needs a valid admission token
 * for this user and showtime, and the user still admitted (leaving the
 * queue or the window passing ends it, whatever tokens are out). False
 * when it answered 403. */
static bool admission_ok(net_shard *sh, net_request *r, uint64_t user, uint64_t showtime,
                         int64_t now)
{
    engine_queue_info qi;
    if (!engine_queue_get(sh->e, showtime, &qi))
        return true;
    const char *t = r->admission_token, *why = NULL;
    char *end = NULL;
    int64_t exp_s = 0;
    if (t[0] == '\0') {
        why = "this showtime sells through a virtual queue: join it (POST "
              "/api/showtimes/{id}/queue/join) and send the admission token GET "
              "/api/showtimes/{id}/queue/me gives once admitted, in the Admission-Token header";
    } else if (strncmp(t, "a1.", 3) != 0 || (exp_s = strtoll(t + 3, &end, 10)) <= 0 ||
               *end != '.') {
        why = "the admission token is malformed";
    } else if (exp_s * 1000 <= now) {
        why = "the admission token expired: GET /api/showtimes/{id}/queue/me gives a new one "
              "while the admission lasts";
    } else {
        char want[64];
        admission_token(srv(r), user, showtime, exp_s, want);
        size_t n = strlen(want);
        if (strlen(t) != n || CRYPTO_memcmp(want, t, n) != 0)
            why = "the admission token is not valid for this user and showtime";
        else if (engine_queue_user_get(sh->e, showtime, user, now).state != ENGINE_QUEUE_ADMITTED)
            why = "your admission has ended (you left the queue, or its window passed): join "
                  "the queue again";
    }
    if (why == NULL)
        return true;
    problem(r, 403, "admission-required", "Admission required", why, "admission-token", NULL, NULL);
    return false;
}

static json_t *category_json(net_shard *sh, uint64_t showtime, uint32_t cat)
{
    uint64_t layout = 0;
    engine_showtime_get(sh->e, showtime, &layout, NULL, NULL);
    const char *name =
        cat == ENGINE_CATEGORY_ANY ? NULL : engine_layout_category_name(sh->e, layout, cat);
    return name != NULL ? json_string(name) : json_null();
}

static json_t *waiter_json(net_shard *sh, uint64_t showtime, const engine_waiter_info *w)
{
    json_t *o = json_object();
    json_object_set_new(o, "showtime_id", json_integer((json_int_t)showtime));
    json_object_set_new(o, "position", json_integer(w->position));
    json_object_set_new(o, "waiting", json_integer(engine_waitlist_length(sh->e, showtime)));
    json_object_set_new(o, "count", json_integer(w->count));
    json_object_set_new(o, "category", category_json(sh, showtime, w->category));
    json_object_set_new(o, "joined_at", json_time(w->joined_ms));
    return o;
}

void net__onsale_refusal(net_shard *sh, net_request *r, int rc)
{
    switch (rc) {
    case ENGINE_SEATS_AVAILABLE:
        problem(r, 409, "seats-available", "Seats available",
                "seats that fit this request are free: reserve them instead", "count", NULL, NULL);
        break;
    case ENGINE_ALREADY_WAITING:
        problem(r, 409, "already-waiting", "Already waiting",
                "you are on this showtime's waiting list already (GET it for your position)", NULL,
                NULL, NULL);
        break;
    case ENGINE_NOT_WAITING:
        problem(r, 404, "not-waiting", "Not waiting", "you are not in this line", NULL, NULL, NULL);
        break;
    case ENGINE_NO_QUEUE:
        problem(r, 404, "no-queue", "No queue", "this showtime has no virtual queue", NULL, NULL,
                NULL);
        break;
    case ENGINE_QUEUE_STARTED:
        problem(r, 409, "queue-started", "Queue started",
                "the queue's start time has passed: it cannot move (the rate can change)",
                "start_time", NULL, NULL);
        break;
    case ENGINE_UNKNOWN_CATEGORY:
        bad_field(r, "category", "no such seat category in this showtime");
        break;
    case ENGINE_BAD_COUNT:
        bad_field(r, "count", "between 1 and the per-hold maximum of seats");
        break;
    case ENGINE_CAPACITY:
        busy(r, "this line is as long as it may be");
        break;
    case ENGINE_ENOMEM:
        busy(r, "out of memory");
        break;
    default:
        refusal(sh, r, (engine_result)rc, 0, NULL, 0);
        break;
    }
}

static void run_waitlist(net_shard *sh, net_job *j)
{
    net_request *r = j->req;
    engine_record rec;
    engine_waiter_info w;
    int64_t now = net__now_ms(sh);
    if (r->method == HTTP_GET) {
        if (!engine_showtime_get(sh->e, j->id, NULL, NULL, NULL))
            refusal(sh, r, ENGINE_UNKNOWN_SHOWTIME, 0, NULL, 0);
        else if (!engine_waitlist_get(sh->e, j->id, j->user_id, &w))
            net__onsale_refusal(sh, r, ENGINE_NOT_WAITING);
        else
            respond_json(r, 200, waiter_json(sh, j->id, &w), NULL);
        job_done(sh, j, observed_lsn(sh), false);
        return;
    }
    if (write_refused(sh, r)) {
        job_done(sh, j, 0, false);
        return;
    }
    net__holds_sweep(sh, now);
    int rc;
    if (r->method == HTTP_DELETE) {
        rc = engine_waitlist_leave(sh->e, now, j->id, j->user_id, &rec);
    } else {
        uint64_t layout = 0;
        uint32_t cat = ENGINE_CATEGORY_ANY;
        const char *name = json_string_value(json_object_get(j->body, "category"));
        rc = engine_showtime_get(sh->e, j->id, &layout, NULL, NULL) ? ENGINE_OK
                                                                    : ENGINE_UNKNOWN_SHOWTIME;
        if (rc == ENGINE_OK && name != NULL &&
            (cat = category_find(sh, layout, name)) == UINT32_MAX)
            rc = ENGINE_UNKNOWN_CATEGORY;
        if (rc == ENGINE_OK)
            rc = engine_waitlist_join(
                sh->e, now, j->id, j->user_id,
                (uint32_t)json_integer_value(json_object_get(j->body, "count")), cat, &rec);
    }
    if (rc != ENGINE_OK) {
        net__onsale_refusal(sh, r, rc);
        job_done(sh, j, observed_lsn(sh), false);
        return;
    }
    int64_t lsn = journal_or_answer(sh, j, &rec);
    if (lsn < 0)
        return;
    if (r->method == HTTP_DELETE) {
        net__respond(r, 204, "application/json", NULL, NULL, 0);
    } else {
        NET_ASSERT(engine_waitlist_get(sh->e, j->id, j->user_id, &w));
        respond_json(r, 201, waiter_json(sh, j->id, &w), NULL);
    }
    job_done(sh, j, (uint64_t)lsn, false);
}

/* Joins and leaves of a waiting list or a queue take a place in a line for
 * good (a queue's places are not reused): rate limited like reserve. */
static void send_onsale_change(net_request *r, net_job_fn run)
{
    uint64_t user = r->job.user_id;
    if (r->method != HTTP_GET &&
        rate_refused(r, NET_RL_ONSALE_USER, &user, sizeof(user), NET_RL_ONSALE_IP))
        return;
    if (!send_job(r, shard_of_showtime(r, r->job.id), run) && r->method != HTTP_GET)
        rate_undo(r, NET_RL_ONSALE_USER, &user, sizeof(user), NET_RL_ONSALE_IP);
}

static void h_waitlist(net_request *r)
{
    if (r->method == HTTP_POST) {
        static const char *const fields[] = {"count", "category", NULL};
        json_t *b = body_fields(r, fields);
        if (b == NULL)
            return;
        json_t *count = json_object_get(b, "count"), *cat = json_object_get(b, "category");
        uint32_t max = srv(r)->cfg.engine.max_seats_per_hold;
        if (!json_is_integer(count) || json_integer_value(count) < 1 ||
            json_integer_value(count) > max) {
            char reason[64];
            snprintf(reason, sizeof(reason), "must be an integer from 1 to %" PRIu32, max);
            bad_field(r, "count", reason);
            return;
        }
        if (cat != NULL && (!json_is_string(cat) || json_string_length(cat) == 0 ||
                            json_string_length(cat) >= ENGINE_NAME_MAX)) {
            bad_field(r, "category", "must be a seat category name; leave it out for any");
            return;
        }
    }
    send_onsale_change(r, run_waitlist);
}

static json_t *queue_json(net_shard *sh, uint64_t showtime, const engine_queue_info *q)
{
    json_t *o = json_object();
    json_object_set_new(o, "showtime_id", json_integer((json_int_t)showtime));
    json_object_set_new(o, "rate_per_second", json_integer(q->rate_per_s));
    json_object_set_new(o, "start_time", json_time(q->start_ms));
    json_object_set_new(o, "started", json_boolean(q->started));
    json_object_set_new(o, "waiting", json_integer(q->waiting));
    json_object_set_new(o, "admitted", json_integer(q->admitted));
    json_object_set_new(o, "places_taken", json_integer(q->places));
    json_object_set_new(
        o, "admission_window_s",
        json_integer((json_int_t)(sh->server->cfg.engine.queue_admit_window_ms / 1000)));
    return o;
}

/* GET (anyone), PUT and DELETE (admin) /api/showtimes/:id/queue */
static void run_queue(net_shard *sh, net_job *j)
{
    net_request *r = j->req;
    engine_queue_info q;
    int64_t now = net__now_ms(sh);
    if (r->method == HTTP_GET) {
        if (!engine_showtime_get(sh->e, j->id, NULL, NULL, NULL))
            refusal(sh, r, ENGINE_UNKNOWN_SHOWTIME, 0, NULL, 0);
        else if (!engine_queue_get(sh->e, j->id, &q))
            net__onsale_refusal(sh, r, ENGINE_NO_QUEUE);
        else
            respond_json(r, 200, queue_json(sh, j->id, &q), NULL);
        job_done(sh, j, observed_lsn(sh), false);
        return;
    }
    if (write_refused(sh, r)) {
        job_done(sh, j, 0, false);
        return;
    }
    engine_record rec;
    uint32_t rate = 0;
    int64_t start = 0;
    if (r->method == HTTP_PUT) {
        rate = (uint32_t)json_integer_value(json_object_get(j->body, "rate_per_second"));
        json_t *st = json_object_get(j->body, "start_time");
        start = now;
        const char *why;
        if (st != NULL)
            NET_ASSERT(catalog_time_parse(json_string_value(st), json_string_length(st), &start,
                                          &why) == 0); /* checked at the origin */
        else if (engine_queue_get(sh->e, j->id, &q))
            start = q.start_ms; /* only the rate changes */
    }
    int rc = engine_queue_set(sh->e, now, j->id, rate, start, &rec);
    if (rc != ENGINE_OK) {
        net__onsale_refusal(sh, r, rc);
        job_done(sh, j, observed_lsn(sh), false);
        return;
    }
    int64_t lsn = journal_or_answer(sh, j, &rec);
    if (lsn < 0)
        return;
    if (rate == 0) {
        net__respond(r, 204, "application/json", NULL, NULL, 0);
    } else {
        NET_ASSERT(engine_queue_get(sh->e, j->id, &q));
        respond_json(r, 200, queue_json(sh, j->id, &q), NULL);
    }
    job_done(sh, j, (uint64_t)lsn, false);
}

static void h_queue(net_request *r)
{
    if (r->method == HTTP_PUT) {
        static const char *const fields[] = {"rate_per_second", "start_time", NULL};
        json_t *b = body_fields(r, fields);
        if (b == NULL)
            return;
        json_t *rate = json_object_get(b, "rate_per_second"),
               *st = json_object_get(b, "start_time");
        if (!json_is_integer(rate) || json_integer_value(rate) < 1 ||
            json_integer_value(rate) > QUEUE_RATE_MAX) {
            bad_field(r, "rate_per_second",
                      "must be an integer from 1 to 1000000 (users admitted a second)");
            return;
        }
        int64_t ms;
        const char *why = "must be a string: a UTC time like \"2026-11-21T18:30:00Z\"";
        if (st != NULL &&
            (!json_is_string(st) ||
             catalog_time_parse(json_string_value(st), json_string_length(st), &ms, &why) != 0)) {
            bad_field(r, "start_time", why);
            return;
        }
    }
    send_job(r, shard_of_showtime(r, r->job.id), run_queue);
}

/* POST /queue/join, GET and DELETE /queue/me */
json_t *net__queue_me_json(net_shard *sh, uint64_t showtime_id, uint64_t user_id, int64_t now,
                           const engine_queue_user *up)
{
    engine_queue_info q;
    NET_ASSERT(engine_queue_get(sh->e, showtime_id, &q));
    engine_queue_user u = *up;
    static const char *const states[] = {"none", "prequeue", "waiting", "admitted", "lapsed"};
    json_t *o = json_object();
    json_object_set_new(o, "showtime_id", json_integer((json_int_t)showtime_id));
    json_object_set_new(o, "state", json_string(states[u.state]));
    json_object_set_new(o, "start_time", json_time(q.start_ms));
    json_object_set_new(o, "rate_per_second", json_integer(q.rate_per_s));
    if (u.state == ENGINE_QUEUE_WAITING) {
        json_object_set_new(o, "position", json_integer(u.position));
        json_object_set_new(o, "estimated_wait_s",
                            json_integer((u.position + q.rate_per_s - 1) / q.rate_per_s));
    } else if (u.state == ENGINE_QUEUE_PREQUEUE) {
        /* Places are drawn at random at the start: on average half the early joiners are ahead. */
        int64_t to_start = q.start_ms > now ? (q.start_ms - now + 999) / 1000 : 0;
        json_object_set_new(o, "position", json_null());
        json_object_set_new(o, "early_joiners", json_integer(q.waiting));
        json_object_set_new(
            o, "estimated_wait_s",
            json_integer(to_start + (q.waiting / 2 + q.rate_per_s - 1) / q.rate_per_s));
    } else if (u.state == ENGINE_QUEUE_ADMITTED) {
        int64_t exp_s = now / 1000 + ADMISSION_TOKEN_TTL_S;
        if (exp_s > u.until_ms / 1000)
            exp_s = u.until_ms / 1000;
        char tok[64];
        admission_token(sh->server, user_id, showtime_id, exp_s, tok);
        json_object_set_new(o, "admitted_at", json_time(u.admitted_ms));
        json_object_set_new(o, "admitted_until", json_time(u.until_ms));
        json_object_set_new(o, "admission_token", json_string(tok));
        json_object_set_new(o, "admission_token_expires_at", json_time(exp_s * 1000));
    } else if (u.state == ENGINE_QUEUE_LAPSED) {
        json_object_set_new(o, "admitted_at", json_time(u.admitted_ms));
        json_object_set_new(o, "admitted_until", json_time(u.until_ms));
    }
    return o;
}

static void run_queue_me(net_shard *sh, net_job *j)
{
    net_request *r = j->req;
    int64_t now = net__now_ms(sh);
    engine_record rec;
    engine_queue_info q;
    uint64_t lsn = observed_lsn(sh);
    int rc = ENGINE_OK;
    bool joined = false;
    if (!engine_showtime_get(sh->e, j->id, NULL, NULL, NULL))
        rc = ENGINE_UNKNOWN_SHOWTIME;
    else if (!engine_queue_get(sh->e, j->id, &q))
        rc = ENGINE_NO_QUEUE;
    if (rc == ENGINE_OK && r->method != HTTP_GET) {
        if (write_refused(sh, r)) {
            job_done(sh, j, 0, false);
            return;
        }
        net__onsale_steps(sh, now); /* an admission due now counts */
        if (r->method == HTTP_DELETE)
            rc = (int)engine_queue_leave(sh->e, now, j->id, j->user_id, &rec);
        else
            rc = engine_queue_join(sh->e, now, j->id, j->user_id, &joined, &rec);
        if (rc == ENGINE_OK && (r->method == HTTP_DELETE || joined)) {
            int64_t l = journal_or_answer(sh, j, &rec);
            if (l < 0)
                return;
            lsn = (uint64_t)l;
        }
    }
    engine_queue_user u = engine_queue_user_get(sh->e, j->id, j->user_id, now);
    if (rc == ENGINE_OK && r->method == HTTP_GET && u.state == ENGINE_QUEUE_NONE)
        rc = ENGINE_NOT_WAITING;
    if (rc != ENGINE_OK) {
        net__onsale_refusal(sh, r, rc);
        job_done(sh, j, lsn, false);
        return;
    }
    if (r->method == HTTP_DELETE) {
        net__respond(r, 204, "application/json", NULL, NULL, 0);
        job_done(sh, j, lsn, false);
        return;
    }
    json_t *o = net__queue_me_json(sh, j->id, j->user_id, now, &u);
    respond_json(r, joined ? 201 : 200, o, NULL);
    job_done(sh, j, lsn, false);
}

static void h_queue_me(net_request *r)
{
    send_onsale_change(r, run_queue_me);
}

static void h_my_holds(net_request *r)
{
    h_my_bookings(r);
}

/* ---- Routing ------------------------------------------------------------------------------------
 */

/* AUTH_REPL: an admin, or the replication token (net_config). */
enum { AUTH_NONE = 0, AUTH_USER = 1, AUTH_ADMIN = 2, AUTH_REPL = 3 };

/* ROUTE_LAST: a stream, the last request its connection is read for.
 * ROUTE_OWNER: an event stream about the :id showtime; it runs on the shard
 * that owns the showtime, the connection moving there (net__conn_handoff),
 * and takes its token from ?access_token= too (browsers' EventSource cannot
 * send an Authorization header). */
enum { ROUTE_LAST = 1, ROUTE_OWNER = 2 };

typedef struct route {
    llhttp_method_t method;
    const char *pattern; /* ":id" matches a positive integer segment */
    void (*fn)(net_request *);
    int auth;
    int flags; /* ROUTE_* */
} route;

static const route routes[] = {
    /* The seat path first: a request is matched against the table in order. */
    {HTTP_GET, "/api/seats/:id", h_seats, AUTH_NONE, 0},
    {HTTP_GET, "/api/seats/:id/events", net__route_seat_events, AUTH_NONE,
     ROUTE_LAST | ROUTE_OWNER},
    {HTTP_POST, "/api/bookings/reserve", h_reserve, AUTH_USER, 0},
    {HTTP_POST, "/api/bookings/confirm", h_confirm, AUTH_USER, 0},
    {HTTP_GET, "/api/bookings/my-bookings", h_my_bookings, AUTH_USER, 0},
    {HTTP_GET, "/api/bookings/my-holds", h_my_holds, AUTH_USER, 0},
    {HTTP_GET, "/api/bookings/:id", h_booking, AUTH_USER, 0},
    {HTTP_POST, "/api/bookings/:id/cancel", h_booking, AUTH_USER, 0},
    {HTTP_GET, "/api/holds/:id", h_hold, AUTH_USER, 0},
    {HTTP_DELETE, "/api/holds/:id", h_hold, AUTH_USER, 0},
    {HTTP_GET, "/livez", net__route_livez, AUTH_NONE, 0},
    {HTTP_GET, "/readyz", net__route_readyz, AUTH_NONE, 0},
    {HTTP_GET, "/metrics", net__route_metrics, AUTH_NONE, 0},
    {HTTP_POST, "/api/auth/register", h_register, AUTH_NONE, 0},
    {HTTP_POST, "/api/auth/login", h_login, AUTH_NONE, 0},
    {HTTP_GET, "/api/me", h_me, AUTH_USER, 0},
    {HTTP_GET, "/api/theaters", h_catalog_list, AUTH_NONE, 0},
    {HTTP_POST, "/api/theaters", h_catalog_create, AUTH_ADMIN, 0},
    {HTTP_GET, "/api/theaters/:id", h_catalog_get, AUTH_NONE, 0},
    {HTTP_PATCH, "/api/theaters/:id", h_catalog_update, AUTH_ADMIN, 0},
    {HTTP_DELETE, "/api/theaters/:id", h_catalog_delete, AUTH_ADMIN, 0},
    {HTTP_GET, "/api/screens", h_catalog_list, AUTH_NONE, 0},
    {HTTP_POST, "/api/screens", h_catalog_create, AUTH_ADMIN, 0},
    {HTTP_GET, "/api/screens/:id", h_catalog_get, AUTH_NONE, 0},
    {HTTP_PATCH, "/api/screens/:id", h_catalog_update, AUTH_ADMIN, 0},
    {HTTP_DELETE, "/api/screens/:id", h_catalog_delete, AUTH_ADMIN, 0},
    {HTTP_GET, "/api/movies", h_catalog_list, AUTH_NONE, 0},
    {HTTP_POST, "/api/movies", h_catalog_create, AUTH_ADMIN, 0},
    {HTTP_GET, "/api/movies/:id", h_catalog_get, AUTH_NONE, 0},
    {HTTP_PATCH, "/api/movies/:id", h_catalog_update, AUTH_ADMIN, 0},
    {HTTP_DELETE, "/api/movies/:id", h_catalog_delete, AUTH_ADMIN, 0},
    {HTTP_GET, "/api/showtimes", h_showtimes_list, AUTH_NONE, 0},
    {HTTP_POST, "/api/showtimes", h_catalog_create, AUTH_ADMIN, 0},
    {HTTP_GET, "/api/showtimes/:id", h_catalog_get, AUTH_NONE, 0},
    {HTTP_PATCH, "/api/showtimes/:id", h_catalog_update, AUTH_ADMIN, 0},
    {HTTP_DELETE, "/api/showtimes/:id", h_catalog_delete, AUTH_ADMIN, 0},
    {HTTP_POST, "/api/showtimes/:id/waitlist", h_waitlist, AUTH_USER, 0},
    {HTTP_GET, "/api/showtimes/:id/waitlist", h_waitlist, AUTH_USER, 0},
    {HTTP_DELETE, "/api/showtimes/:id/waitlist", h_waitlist, AUTH_USER, 0},
    {HTTP_GET, "/api/showtimes/:id/queue", h_queue, AUTH_NONE, 0},
    {HTTP_PUT, "/api/showtimes/:id/queue", h_queue, AUTH_ADMIN, 0},
    {HTTP_DELETE, "/api/showtimes/:id/queue", h_queue, AUTH_ADMIN, 0},
    {HTTP_POST, "/api/showtimes/:id/queue/join", h_queue_me, AUTH_USER, 0},
    {HTTP_GET, "/api/showtimes/:id/queue/me", h_queue_me, AUTH_USER, 0},
    {HTTP_DELETE, "/api/showtimes/:id/queue/me", h_queue_me, AUTH_USER, 0},
    {HTTP_GET, "/api/showtimes/:id/queue/events", net__route_queue_events, AUTH_USER,
     ROUTE_LAST | ROUTE_OWNER},
    {HTTP_GET, "/api/pricing/suggest", net__route_pricing_suggest, AUTH_ADMIN, 0},
    {HTTP_GET, "/api/recommendations", net__route_recommendations, AUTH_USER, 0},
    {HTTP_GET, "/api/replication", net__route_replication, AUTH_REPL, ROUTE_LAST},
    {HTTP_GET, "/api/replication/snapshot", net__route_replication_snapshot, AUTH_REPL, ROUTE_LAST},
    {HTTP_GET, "/api/replication/status", net__route_replication_status, AUTH_REPL, 0},
};
enum { ROUTE_COUNT = sizeof(routes) / sizeof(routes[0]) };

_Static_assert((int)ROUTE_COUNT < (int)NET_ROUTE_SLOTS, "room for every route and 'other'");

const char *net__route_label(int id, char *buf, size_t cap)
{
    if (id < 0 || id >= ROUTE_COUNT)
        return NULL;
    snprintf(buf, cap, "%s %s", llhttp_method_name(routes[id].method), routes[id].pattern);
    return buf;
}

void net_routes_print(FILE *out)
{
    for (int i = 0; i < ROUTE_COUNT; i++)
        fprintf(out, "%s %s\n", llhttp_method_name(routes[i].method), routes[i].pattern);
}

/* Matches the path (up to '?') against a pattern; stores :id. */
static bool route_match(const char *pattern, const char *path, size_t path_len, uint64_t *id)
{
    const char *p = pattern, *s = path, *end = path + path_len;
    while (*p != '\0') {
        if (p[0] == ':' && p[1] == 'i' && p[2] == 'd') {
            const char *seg = s;
            while (s < end && *s != '/')
                s++;
            if (!parse_id(seg, (size_t)(s - seg), id))
                return false;
            p += 3;
            continue;
        }
        if (s >= end || *s != *p)
            return false;
        p++;
        s++;
    }
    return s == end;
}

/* The replication token, compared in constant time. */
static bool repl_token_ok(net_server *s, const char *tok)
{
    const char *want = s->cfg.replication_token;
    if (want == NULL)
        return false;
    size_t n = strlen(want), m = strlen(tok);
    unsigned char diff = (unsigned char)(n != m);
    for (size_t i = 0; i < n; i++)
        diff |= (unsigned char)(want[i] ^ (i < m ? tok[i] : 0));
    return diff == 0;
}

static bool authenticate(net_request *r, int need)
{
    if (r->internal) {
        r->job.role = AUTH_ROLE_ADMIN;
        return true;
    }
    const char *h = r->authorization;
    if (strncasecmp(h, "Bearer ", 7) != 0) {
        if (need == AUTH_NONE)
            return true;
        problem(r, 401, "unauthorized", "Unauthorized",
                "send Authorization: Bearer <token> (POST /api/auth/login gives one)", NULL, NULL,
                "WWW-Authenticate: Bearer realm=\"usher\"\r\n");
        return false;
    }
    const char *tok = h + 7;
    while (*tok == ' ')
        tok++;
    if (need == AUTH_REPL && repl_token_ok(srv(r), tok)) {
        r->job.role = AUTH_ROLE_ADMIN; /* for these routes only */
        return true;
    }
    auth_claims c;
    int rc = auth_jwt_verify_cached(&r->shard->tokens, &srv(r)->jwt, tok, strlen(tok),
                                    net__now_ms(r->shard) / 1000, &c);
    if (rc != 0) {
        if (need == AUTH_NONE)
            return true; /* a public route ignores a bad token */
        problem(r, 401, "invalid-token", "Invalid token", auth_strerror(rc), "authorization", NULL,
                "WWW-Authenticate: Bearer realm=\"usher\", error=\"invalid_token\"\r\n");
        return false;
    }
    r->job.user_id = c.sub;
    r->job.role = c.role;
    if ((need == AUTH_ADMIN || need == AUTH_REPL) && c.role != AUTH_ROLE_ADMIN) {
        problem(r, 403, "forbidden", "Forbidden", "this operation needs the admin role", NULL, NULL,
                NULL);
        return false;
    }
    return true;
}

/* An event stream's ?access_token= stands for the Authorization header
 * when there is none. False when answered (400). */
static bool token_from_query(net_request *r)
{
    char tok[AUTH_TOKEN_MAX + 1];
    int got = net__query_get(r, "access_token", tok, sizeof(tok));
    if (got < 0) {
        bad_field(r, "access_token", "a token of at most the maximum token length");
        return false;
    }
    if (got > 0 && r->authorization[0] == '\0')
        snprintf(r->authorization, sizeof(r->authorization), "Bearer %s", tok);
    return true;
}

void net__dispatch(net_request *r)
{
    const char *q = strchr(r->url, '?');
    size_t path_len = q != NULL ? (size_t)(q - r->url) : r->url_len;
    char allow[128] = "";
    size_t allow_n = 0;
    for (int i = 0; i < ROUTE_COUNT; i++) {
        uint64_t id = 0;
        if (!route_match(routes[i].pattern, r->url, path_len, &id))
            continue;
        llhttp_method_t m = r->method == HTTP_HEAD ? HTTP_GET : r->method;
        if (m != routes[i].method) {
            int n = snprintf(allow + allow_n, sizeof(allow) - allow_n, "%s%s", allow_n ? ", " : "",
                             llhttp_method_name(routes[i].method));
            if (n > 0 && (size_t)n < sizeof(allow) - allow_n)
                allow_n += (size_t)n;
            continue;
        }
        r->route = routes[i].pattern;
        r->route_id = i;
        r->job.id = id;
        if (routes[i].flags & ROUTE_LAST)
            net__conn_last_request(r);
        if ((routes[i].flags & ROUTE_OWNER) && !token_from_query(r)) {
            net__request_finish(r);
            return;
        }
        /* A handler may complete at once (a job for this very shard): its
         * finish waits until the handler has returned. */
        r->dispatching = true;
        bool ok = authenticate(r, routes[i].auth);
        if (ok && (routes[i].flags & ROUTE_OWNER) && r->conn != NULL) {
            uint32_t target = shard_of_showtime(r, id);
            if (target != r->shard->id) {
                r->dispatching = false;
                net__conn_handoff(r, target, routes[i].fn); /* r is not ours after this */
                return;
            }
        }
        if (ok)
            routes[i].fn(r);
        r->dispatching = false;
        if (r->finish_pending || !r->busy) {
            r->finish_pending = false;
            net__request_finish(r);
        }
        return;
    }
    if (allow_n == 0 && net__web_serve(r, srv(r)->web, r->url, path_len)) {
        net__request_finish(r);
        return;
    }
    if (allow_n > 0) {
        r->route = "method_not_allowed";
        char hdr[160];
        snprintf(hdr, sizeof(hdr), "Allow: %s%s\r\n", allow,
                 strstr(allow, "GET") != NULL ? ", HEAD" : "");
        problem(r, 405, "method-not-allowed", "Method not allowed",
                "this resource does not support that method; see the Allow header", NULL, NULL,
                hdr);
    } else {
        r->route = "not_found";
        problem(r, 404, "not-found", "Not found", "no such resource", NULL, NULL, NULL);
    }
    net__request_finish(r);
}

/* ---- Internal calls -------------------------------------------------------------------------- */

int net_server_call(net_server *s, const char *method, const char *path, const char *body,
                    int *status, char **resp)
{
    net_request *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return -ENOMEM;
    r->shard = &s->shards[0];
    r->internal = true;
    r->keep_alive = true;
    r->route_id = -1;
    r->start_ns = uv_hrtime();
    r->method = strcmp(method, "POST") == 0     ? HTTP_POST
                : strcmp(method, "PATCH") == 0  ? HTTP_PATCH
                : strcmp(method, "DELETE") == 0 ? HTTP_DELETE
                                                : HTTP_GET;
    snprintf(r->url, sizeof(r->url), "%s", path);
    r->url_len = strlen(r->url);
    if (body != NULL) {
        r->body = strdup(body);
        if (r->body == NULL) {
            free(r);
            return -ENOMEM;
        }
        r->body_len = strlen(body);
    }
    uv_mutex_lock(&s->call_mu);
    s->call_done = false;
    s->call_inbox = r;
    uv_mutex_unlock(&s->call_mu);
    uv_async_send(&s->shards[0].mail);
    uv_mutex_lock(&s->call_mu);
    while (!s->call_done)
        uv_cond_wait(&s->call_cond, &s->call_mu);
    uv_mutex_unlock(&s->call_mu);
    *status = r->status;
    size_t len = r->resp_len - r->resp_body_off;
    *resp = malloc(len + 1);
    if (*resp != NULL) {
        memcpy(*resp, r->resp + r->resp_body_off, len);
        (*resp)[len] = '\0';
    }
    r->internal = false;
    r->busy = false;
    json_decref(r->job.body);
    free(r->job.text);
    free(r->body);
    free(r->resp);
    free(r);
    return *resp != NULL ? 0 : -ENOMEM;
}
