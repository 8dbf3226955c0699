/*
 * ratelimit.h - token buckets per (policy, key), shared by threads.
 *
 * A policy allows `count` requests per `window_s` seconds for each key: a
 * key starts with a full bucket of `count` tokens, a request takes one, and
 * the bucket refills continuously at count / window_s tokens per second
 * (never beyond `count`). Keys are opaque byte strings (a user id, an email,
 * an IP address); the table stores a keyed 64-bit SipHash of (policy, key),
 * never the key itself, so an entry has a fixed size whatever the key.
 *
 * The state of one bucket is a single time (GCRA, the "generic cell rate
 * algorithm"): `tat`, when the bucket will be full again. Times are
 * integers in units of 1/count ms, so the refill math is exact: no
 * rounding, no floating point.
 *
 * Pure data structure: time is an argument (`now_ms`, any monotonic
 * millisecond clock, 0 <= now_ms < 2^43), no I/O, no clock, no threads of
 * its own. Every function may be called from any thread at the same time.
 *
 * Concurrency: the table is split into stripes (64 by default) by key hash,
 * each with its own mutex and its own hash table, entry array and LRU list.
 * A take locks one stripe for a lookup and a few arithmetic operations.
 *
 * Memory and the bound: an entry is created the first time a key is taken
 * and is *dead* once its bucket has refilled completely (tat <= now): a
 * dead entry means exactly what a missing one does, so it is reused. A
 * stripe's arrays start small and double as it needs more live entries, up
 * to `max_keys / stripes` entries per stripe (so never more than `max_keys`
 * in all). A new key needs an entry; the stripe takes, in this order:
 *   1. its least recently used entry, if that one is dead;
 *   2. a fresh entry, while the stripe is below its bound (growing the
 *      arrays when full; if that allocation fails, as at the bound);
 *   3. at the bound: its least recently used entry, even if live. That key
 *      loses its history (its next request finds a full bucket): the table
 *      fails open for the oldest key rather than refuse new keys, and
 *      counts it (ratelimit_stats: evicted_live).
 * So a take is O(1) (amortised over the doublings) and memory follows the
 * peak number of live keys, never beyond the bound. RATELIMIT_ENTRY_BYTES
 * is the cost of one entry; with the doubling slack a live key costs
 * between 1 and 2 times that.
 */
#ifndef USHER_RATELIMIT_H
#define USHER_RATELIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum {
    RATELIMIT_POLICIES_MAX = 16,
    RATELIMIT_STRIPES_MAX = 64,
    RATELIMIT_COUNT_MAX = 1000000,  /* requests per window */
    RATELIMIT_WINDOW_MAX_S = 86400, /* one day */
    RATELIMIT_KEYS_MIN = 1,         /* ... per stripe: max_keys >= stripes */
    RATELIMIT_KEYS_MAX = 1 << 28,   /* entries in all */
    RATELIMIT_ENTRY_BYTES = 32 + 4, /* an entry and its hash-bucket head */
    RATELIMIT_EINVAL = -33001,      /* a configuration value is out of range */
    RATELIMIT_ENOMEM = -33002       /* allocation failed at creation */
};

/** Describes a ratelimit error. Never NULL. */
const char *ratelimit_strerror(int err);

typedef struct ratelimit_policy {
    uint32_t count;    /* 1..RATELIMIT_COUNT_MAX requests ... */
    uint32_t window_s; /* ... per 1..RATELIMIT_WINDOW_MAX_S seconds */
} ratelimit_policy;

typedef struct ratelimit_config {
    uint32_t npolicies; /* 1..RATELIMIT_POLICIES_MAX; policies are numbered 0..n-1 */
    ratelimit_policy policies[RATELIMIT_POLICIES_MAX];
    uint32_t max_keys;  /* entries in all (RATELIMIT_KEYS_MAX at most) */
    uint32_t stripes;   /* 0 = 64; else a power of two <= 64 and <= max_keys */
    uint8_t secret[16]; /* the SipHash key: random in production (all zero is allowed) */
} ratelimit_config;

typedef struct ratelimit ratelimit;

/** Creates a table. Returns 0, RATELIMIT_EINVAL or RATELIMIT_ENOMEM. */
int ratelimit_create(const ratelimit_config *c, ratelimit **out);

/** Frees the table (NULL is allowed). No take may run at the same time. */
void ratelimit_destroy(ratelimit *rl);

typedef struct ratelimit_result {
    bool allowed;
    uint32_t remaining; /* whole tokens left after this take (0 when refused) */
    /* allowed: ms until one more whole token is there (>= 1);
     * refused: ms until a take would be allowed (>= 1). Rounded up. */
    uint64_t wait_ms;
} ratelimit_result;

/**
 * Takes one token from the bucket of (`policy`, `key`) at `now_ms`. When
 * the bucket has no whole token the take is refused and nothing changes
 * (a refused request costs the key nothing). Returns res->allowed.
 * `key` may be any bytes (key_len may be 0).
 */
bool ratelimit_take(ratelimit *rl, uint32_t policy, const void *key, size_t key_len, int64_t now_ms,
                    ratelimit_result *res);

/**
 * Gives back the token an allowed take of (`policy`, `key`) took, e.g.
 * because another limit refused the same request. Harmless when the entry
 * is gone (evicted) or already full.
 */
void ratelimit_give_back(ratelimit *rl, uint32_t policy, const void *key, size_t key_len,
                         int64_t now_ms);

typedef struct ratelimit_stats {
    uint64_t entries;  /* entries in use, dead ones included */
    uint64_t live;     /* ... of which live at `now_ms` (counted, O(entries); 0 if now_ms < 0) */
    uint64_t capacity; /* entries allocated */
    uint64_t bytes;    /* memory of the arrays (entries and buckets) */
    uint64_t evicted_live; /* live entries reused at the bound, since creation */
} ratelimit_stats;

/** Fills `st` (locks each stripe in turn; for metrics and tests). */
void ratelimit_stats_get(ratelimit *rl, int64_t now_ms, ratelimit_stats *st);

/** SipHash-2-4 of `data` under `secret` (what keys are stored as; exposed for tests). */
uint64_t ratelimit_siphash(const uint8_t secret[16], const void *data, size_t len);

#endif /* USHER_RATELIMIT_H */
