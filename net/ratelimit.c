/*
 * ratelimit.c - token buckets per (policy, key); see ratelimit.h.
 */
#include "ratelimit.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RL_ASSERT(c) ((c) ? (void)0 : rl_assert_fail(#c, __FILE__, __LINE__))

_Noreturn static void rl_assert_fail(const char *expr, const char *file, int line)
{
    fprintf(stderr, "usher ratelimit: assertion failed: %s (%s:%d)\n", expr, file, line);
    abort();
}

enum {
    NIL = UINT32_MAX,      /* no entry */
    STRIPE_START = 16,     /* entries a stripe starts with */
    NOW_MS_LIMIT_LOG2 = 43 /* now_ms < 2^43: now_ms * count stays below 2^63 */
};

const char *ratelimit_strerror(int err)
{
    switch (err) {
    case 0:
        return "success";
    case RATELIMIT_EINVAL:
        return "rate limit configuration out of range";
    case RATELIMIT_ENOMEM:
        return "out of memory";
    default:
        return "unknown error";
    }
}

/* ---- SipHash-2-4 (Aumasson and Bernstein, 2012): a keyed 64-bit PRF, so
 * nobody without the secret can make keys collide on purpose. ---------- */

static uint64_t rotl(uint64_t x, int b)
{
    return (x << b) | (x >> (64 - b));
}

static uint64_t load_le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

#define SIP_ROUND(v0, v1, v2, v3) \
    do {                          \
        v0 += v1;                 \
        v1 = rotl(v1, 13) ^ v0;   \
        v0 = rotl(v0, 32);        \
        v2 += v3;                 \
        v3 = rotl(v3, 16) ^ v2;   \
        v0 += v3;                 \
        v3 = rotl(v3, 21) ^ v0;   \
        v2 += v1;                 \
        v1 = rotl(v1, 17) ^ v2;   \
        v2 = rotl(v2, 32);        \
    } while (0)

uint64_t ratelimit_siphash(const uint8_t secret[16], const void *data, size_t len)
{
    uint64_t k0 = load_le64(secret), k1 = load_le64(secret + 8);
    uint64_t v0 = k0 ^ 0x736f6d6570736575ull, v1 = k1 ^ 0x646f72616e646f6dull;
    uint64_t v2 = k0 ^ 0x6c7967656e657261ull, v3 = k1 ^ 0x7465646279746573ull;
    const uint8_t *p = data;
    size_t whole = len - len % 8;
    for (size_t i = 0; i < whole; i += 8) {
        uint64_t m = load_le64(p + i);
        v3 ^= m;
        SIP_ROUND(v0, v1, v2, v3);
        SIP_ROUND(v0, v1, v2, v3);
        v0 ^= m;
    }
    /* The last block: the remaining bytes, and the length's low byte on top. */
    uint64_t last = (uint64_t)(len & 0xff) << 56;
    for (size_t i = 0; i < len % 8; i++)
        last |= (uint64_t)p[whole + i] << (8 * i);
    v3 ^= last;
    SIP_ROUND(v0, v1, v2, v3);
    SIP_ROUND(v0, v1, v2, v3);
    v0 ^= last;
    v2 ^= 0xff;
    for (int i = 0; i < 4; i++)
        SIP_ROUND(v0, v1, v2, v3);
    return v0 ^ v1 ^ v2 ^ v3;
}

/* ---- The table ------------------------------------------------------------------------ */

typedef struct entry {
    uint64_t hash;         /* SipHash of the key under its policy's secret */
    int64_t tat;           /* when the bucket is full again, in 1/count ms */
    uint32_t chain;        /* next entry in the hash bucket, or NIL */
    uint32_t newer, older; /* LRU list neighbours, or NIL */
    uint8_t policy;
} entry;

_Static_assert(sizeof(entry) + sizeof(uint32_t) == RATELIMIT_ENTRY_BYTES,
               "RATELIMIT_ENTRY_BYTES is the size of an entry and its bucket head");

typedef struct stripe {
    _Alignas(64) pthread_mutex_t mu; /* one cache line or more per stripe */
    entry *e;                        /* `cap` entries; [0, used) are in the table */
    uint32_t *heads;                 /* `cap` hash buckets (cap is a power of two) */
    uint32_t cap, used, bound;
    uint32_t newest, oldest; /* the LRU list, most recently used first */
    uint64_t evicted_live;
} stripe;

struct ratelimit {
    uint32_t npolicies, nstripes, stripe_shift;
    int64_t count[RATELIMIT_POLICIES_MAX];  /* tokens per window (also the time scale) */
    int64_t window[RATELIMIT_POLICIES_MAX]; /* window in ms = one token's cost in 1/count ms */
    uint8_t secret[RATELIMIT_POLICIES_MAX][16];
    stripe *stripes;
};

static uint32_t pow2_at_least(uint32_t n)
{
    uint32_t p = 1;
    while (p < n)
        p <<= 1;
    return p;
}

int ratelimit_create(const ratelimit_config *c, ratelimit **out)
{
    *out = NULL;
    uint32_t ns = c->stripes == 0 ? RATELIMIT_STRIPES_MAX : c->stripes;
    if (c->npolicies < 1 || c->npolicies > RATELIMIT_POLICIES_MAX || ns > RATELIMIT_STRIPES_MAX ||
        (ns & (ns - 1)) != 0 || c->max_keys < ns || c->max_keys > RATELIMIT_KEYS_MAX)
        return RATELIMIT_EINVAL;
    for (uint32_t i = 0; i < c->npolicies; i++) {
        const ratelimit_policy *p = &c->policies[i];
        if (p->count < 1 || p->count > RATELIMIT_COUNT_MAX || p->window_s < 1 ||
            p->window_s > RATELIMIT_WINDOW_MAX_S)
            return RATELIMIT_EINVAL;
    }
    ratelimit *rl = calloc(1, sizeof(*rl));
    if (rl == NULL)
        return RATELIMIT_ENOMEM;
    rl->npolicies = c->npolicies;
    rl->nstripes = ns;
    uint32_t bits = 0;
    while ((1u << bits) < ns)
        bits++;
    rl->stripe_shift = 64 - bits; /* the top bits pick the stripe, the low ones the bucket */
    for (uint32_t i = 0; i < c->npolicies; i++) {
        rl->count[i] = c->policies[i].count;
        rl->window[i] = (int64_t)c->policies[i].window_s * 1000;
        /* One SipHash key per policy: a key's entries under two policies
         * are unrelated. */
        memcpy(rl->secret[i], c->secret, 16);
        rl->secret[i][15] ^= (uint8_t)(i + 1);
    }
    rl->stripes = aligned_alloc(_Alignof(stripe), sizeof(stripe) * ns);
    if (rl->stripes == NULL) {
        free(rl);
        return RATELIMIT_ENOMEM;
    }
    memset(rl->stripes, 0, sizeof(stripe) * ns);
    uint32_t bound = c->max_keys / ns;
    for (uint32_t i = 0; i < ns; i++) {
        stripe *s = &rl->stripes[i];
        pthread_mutex_init(&s->mu, NULL);
        s->bound = bound;
        s->cap = pow2_at_least(bound < STRIPE_START ? bound : STRIPE_START);
        s->newest = s->oldest = NIL;
        s->e = malloc(sizeof(entry) * s->cap);
        s->heads = malloc(sizeof(uint32_t) * s->cap);
        if (s->e == NULL || s->heads == NULL) {
            rl->nstripes = i + 1;
            ratelimit_destroy(rl);
            return RATELIMIT_ENOMEM;
        }
        memset(s->heads, 0xff, sizeof(uint32_t) * s->cap); /* every bucket NIL */
    }
    *out = rl;
    return 0;
}

void ratelimit_destroy(ratelimit *rl)
{
    if (rl == NULL)
        return;
    for (uint32_t i = 0; i < rl->nstripes; i++) {
        pthread_mutex_destroy(&rl->stripes[i].mu);
        free(rl->stripes[i].e);
        free(rl->stripes[i].heads);
    }
    free(rl->stripes);
    free(rl);
}

/* ---- One stripe (its mutex held) ---- */

static void lru_unlink(stripe *s, uint32_t i)
{
    entry *e = &s->e[i];
    if (e->newer != NIL)
        s->e[e->newer].older = e->older;
    else
        s->newest = e->older;
    if (e->older != NIL)
        s->e[e->older].newer = e->newer;
    else
        s->oldest = e->newer;
}

static void lru_push_newest(stripe *s, uint32_t i)
{
    entry *e = &s->e[i];
    e->newer = NIL;
    e->older = s->newest;
    if (s->newest != NIL)
        s->e[s->newest].newer = i;
    s->newest = i;
    if (s->oldest == NIL)
        s->oldest = i;
}

static void lru_touch(stripe *s, uint32_t i)
{
    if (s->newest != i) {
        lru_unlink(s, i);
        lru_push_newest(s, i);
    }
}

static uint32_t find(const stripe *s, uint64_t hash, uint32_t policy)
{
    for (uint32_t i = s->heads[hash & (s->cap - 1)]; i != NIL; i = s->e[i].chain) {
        if (s->e[i].hash == hash && s->e[i].policy == policy)
            return i;
    }
    return NIL;
}

static void chain_unlink(stripe *s, uint32_t i)
{
    uint32_t *p = &s->heads[s->e[i].hash & (s->cap - 1)];
    while (*p != i) {
        RL_ASSERT(*p != NIL); /* an entry in use is in its bucket's chain */
        p = &s->e[*p].chain;
    }
    *p = s->e[i].chain;
}

static void chain_link(stripe *s, uint32_t i)
{
    uint32_t *h = &s->heads[s->e[i].hash & (s->cap - 1)];
    s->e[i].chain = *h;
    *h = i;
}

/* Doubles the stripe's arrays (and rehashes). False when memory is short:
 * the stripe stays as it was. */
static bool grow(stripe *s)
{
    uint32_t cap = s->cap * 2;
    entry *e = realloc(s->e, sizeof(entry) * cap);
    if (e == NULL)
        return false;
    s->e = e; /* bigger than cap says until the heads exist too: harmless */
    uint32_t *heads = malloc(sizeof(uint32_t) * cap);
    if (heads == NULL)
        return false;
    free(s->heads);
    s->heads = heads;
    s->cap = cap;
    memset(heads, 0xff, sizeof(uint32_t) * cap);
    for (uint32_t i = 0; i < s->used; i++)
        chain_link(s, i);
    return true;
}

static bool is_dead(const ratelimit *rl, const entry *e, int64_t now_ms)
{
    return e->tat <= now_ms * rl->count[e->policy];
}

/* An entry for a new key (see ratelimit.h for the order). */
static uint32_t claim(ratelimit *rl, stripe *s, int64_t now_ms)
{
    uint32_t i = s->oldest;
    if (i != NIL && is_dead(rl, &s->e[i], now_ms)) {
        /* reuse the oldest: it is dead */
    } else if (s->used < s->bound && (s->used < s->cap || grow(s))) {
        i = s->used++;
        lru_push_newest(s, i);
        return i;
    } else {
        RL_ASSERT(i != NIL); /* at the bound (>= 1) or out of memory with used > 0 */
        s->evicted_live++;
    }
    chain_unlink(s, i);
    lru_touch(s, i);
    return i;
}

static stripe *stripe_of(ratelimit *rl, uint64_t hash)
{
    return &rl->stripes[rl->nstripes == 1 ? 0 : hash >> rl->stripe_shift];
}

static void check_args(const ratelimit *rl, uint32_t policy, int64_t now_ms)
{
    RL_ASSERT(policy < rl->npolicies);
    RL_ASSERT(now_ms >= 0 && now_ms < (int64_t)1 << NOW_MS_LIMIT_LOG2);
}

static uint64_t ceil_div(int64_t a, int64_t b)
{
    RL_ASSERT(a >= 0 && b > 0);
    return (uint64_t)((a + b - 1) / b);
}

bool ratelimit_take(ratelimit *rl, uint32_t policy, const void *key, size_t key_len, int64_t now_ms,
                    ratelimit_result *res)
{
    check_args(rl, policy, now_ms);
    uint64_t hash = ratelimit_siphash(rl->secret[policy], key, key_len);
    int64_t q = rl->count[policy], cost = rl->window[policy], span = cost * q;
    int64_t now = now_ms * q; /* in 1/q ms: one token costs `cost`, a full bucket `span` */
    stripe *s = stripe_of(rl, hash);
    pthread_mutex_lock(&s->mu);
    uint32_t i = find(s, hash, policy);
    int64_t tat = i != NIL && s->e[i].tat > now ? s->e[i].tat : now;
    int64_t debt = tat + cost - now; /* how far the bucket would be from full */
    RL_ASSERT(debt >= cost);
    if (debt > span) {
        /* Refused: no whole token. Only the LRU order changes (a key being
         * refused is a key in use). */
        RL_ASSERT(i != NIL); /* a missing key has a full bucket */
        lru_touch(s, i);
        pthread_mutex_unlock(&s->mu);
        res->allowed = false;
        res->remaining = 0;
        res->wait_ms = ceil_div(debt - span, q);
        return false;
    }
    if (i == NIL) {
        i = claim(rl, s, now_ms);
        s->e[i].hash = hash;
        s->e[i].policy = (uint8_t)policy;
        chain_link(s, i);
    } else {
        lru_touch(s, i);
    }
    s->e[i].tat = tat + cost;
    pthread_mutex_unlock(&s->mu);
    /* Whole tokens left, and when the next one is whole. */
    int64_t left = (span - debt) / cost;
    RL_ASSERT(left >= 0 && left < q);
    res->allowed = true;
    res->remaining = (uint32_t)left;
    res->wait_ms = ceil_div(debt - (span - (left + 1) * cost), q);
    return true;
}

void ratelimit_give_back(ratelimit *rl, uint32_t policy, const void *key, size_t key_len,
                         int64_t now_ms)
{
    check_args(rl, policy, now_ms);
    uint64_t hash = ratelimit_siphash(rl->secret[policy], key, key_len);
    int64_t q = rl->count[policy], now = now_ms * q;
    stripe *s = stripe_of(rl, hash);
    pthread_mutex_lock(&s->mu);
    uint32_t i = find(s, hash, policy);
    if (i != NIL && s->e[i].tat > now) {
        int64_t tat = s->e[i].tat - rl->window[policy];
        s->e[i].tat = tat > now ? tat : now;
    }
    pthread_mutex_unlock(&s->mu);
}

void ratelimit_stats_get(ratelimit *rl, int64_t now_ms, ratelimit_stats *st)
{
    memset(st, 0, sizeof(*st));
    for (uint32_t k = 0; k < rl->nstripes; k++) {
        stripe *s = &rl->stripes[k];
        pthread_mutex_lock(&s->mu);
        st->entries += s->used;
        st->capacity += s->cap;
        st->bytes += (uint64_t)s->cap * (sizeof(entry) + sizeof(uint32_t));
        st->evicted_live += s->evicted_live;
        for (uint32_t i = 0; now_ms >= 0 && i < s->used; i++)
            st->live += !is_dead(rl, &s->e[i], now_ms);
        pthread_mutex_unlock(&s->mu);
    }
}
