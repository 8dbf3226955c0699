/*
 * ratelimit_test.c - net/ratelimit.c: the refill arithmetic (exact wait
 * times), keys and policies kept apart, refusals that change nothing,
 * give-back, dead entries reused, the hard bound (LRU eviction), growth, and
 * concurrent takes from several threads never exceeding the quota.
 */
#include "ratelimit.h"

#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

static ratelimit *make(uint32_t count, uint32_t window_s, uint32_t max_keys, uint32_t stripes)
{
    ratelimit_config c = {.npolicies = 1, .max_keys = max_keys, .stripes = stripes};
    c.policies[0] = (ratelimit_policy){count, window_s};
    ratelimit *rl;
    int rc = ratelimit_create(&c, &rl);
    cr_assert_eq(rc, 0, "ratelimit_create: %s", ratelimit_strerror(rc));
    return rl;
}

static ratelimit_result take_s(ratelimit *rl, uint32_t policy, const char *key, int64_t now)
{
    ratelimit_result r;
    bool ok = ratelimit_take(rl, policy, key, strlen(key), now, &r);
    cr_assert_eq(ok, r.allowed);
    return r;
}

static ratelimit_result take_n(ratelimit *rl, uint64_t key, int64_t now)
{
    ratelimit_result r;
    ratelimit_take(rl, 0, &key, sizeof(key), now, &r);
    return r;
}

Test(ratelimit, siphash_reference_vector)
{
    /* The SipHash paper's test vector: key 00..0f, message 00..0e. */
    uint8_t key[16], msg[15];
    for (int i = 0; i < 16; i++)
        key[i] = (uint8_t)i;
    for (int i = 0; i < 15; i++)
        msg[i] = (uint8_t)i;
    cr_assert_eq(ratelimit_siphash(key, msg, 15), 0xa129ca6149be45e5ull);
    cr_assert_eq(ratelimit_siphash(key, msg, 0), 0x726fdb47dd0e0e31ull);
}

Test(ratelimit, config_checked)
{
    ratelimit *rl = (ratelimit *)1;
    ratelimit_config c = {.npolicies = 1, .max_keys = 64};
    c.policies[0] = (ratelimit_policy){0, 10};
    cr_assert_eq(ratelimit_create(&c, &rl), RATELIMIT_EINVAL);
    cr_assert_null(rl);
    c.policies[0] = (ratelimit_policy){10, 0};
    cr_assert_eq(ratelimit_create(&c, &rl), RATELIMIT_EINVAL);
    c.policies[0] = (ratelimit_policy){10, 10};
    c.stripes = 3;
    cr_assert_eq(ratelimit_create(&c, &rl), RATELIMIT_EINVAL);
    c.stripes = 0;
    c.max_keys = 63; /* fewer than the 64 stripes */
    cr_assert_eq(ratelimit_create(&c, &rl), RATELIMIT_EINVAL);
    c.max_keys = 64;
    c.npolicies = 0;
    cr_assert_eq(ratelimit_create(&c, &rl), RATELIMIT_EINVAL);
    cr_assert_str_eq(ratelimit_strerror(RATELIMIT_EINVAL), "rate limit configuration out of range");
    ratelimit_destroy(NULL);
}

Test(ratelimit, refill_math_and_exact_waits)
{
    /* 20 per 10 s: one token every 500 ms. */
    ratelimit *rl = make(20, 10, 1024, 0);
    for (uint32_t i = 0; i < 20; i++) {
        ratelimit_result r = take_s(rl, 0, "u1", 1000);
        cr_assert(r.allowed, "take %u", i);
        cr_assert_eq(r.remaining, 19 - i);
        cr_assert_eq(r.wait_ms, 500, "take %u: next token in 500 ms, got %lu", i,
                     (unsigned long)r.wait_ms);
    }
    ratelimit_result r = take_s(rl, 0, "u1", 1000);
    cr_assert(!r.allowed);
    cr_assert_eq(r.remaining, 0);
    cr_assert_eq(r.wait_ms, 500);
    r = take_s(rl, 0, "u1", 1499);
    cr_assert(!r.allowed);
    cr_assert_eq(r.wait_ms, 1);
    r = take_s(rl, 0, "u1", 1500); /* exactly when one token is back */
    cr_assert(r.allowed);
    cr_assert_eq(r.remaining, 0);
    cr_assert_eq(r.wait_ms, 500);
    /* 2.6 s later: five whole tokens back (and 100 ms towards the sixth). */
    r = take_s(rl, 0, "u1", 4100);
    cr_assert(r.allowed);
    cr_assert_eq(r.remaining, 4);
    cr_assert_eq(r.wait_ms, 400);
    /* Never more than a full bucket, however long the pause. */
    r = take_s(rl, 0, "u1", 1000000);
    cr_assert_eq(r.remaining, 19);
    ratelimit_destroy(rl);
}

Test(ratelimit, fractional_rate_rounds_waits_up)
{
    /* 3 per 10 s: a token every 3333.33 ms. */
    ratelimit *rl = make(3, 10, 1024, 0);
    for (int i = 0; i < 3; i++)
        cr_assert(take_s(rl, 0, "k", 0).allowed);
    ratelimit_result r = take_s(rl, 0, "k", 0);
    cr_assert(!r.allowed);
    cr_assert_eq(r.wait_ms, 3334); /* 3333.33 rounded up */
    r = take_s(rl, 0, "k", 3333);
    cr_assert(!r.allowed, "3333 ms is 0.33 ms too early");
    cr_assert_eq(r.wait_ms, 1);
    r = take_s(rl, 0, "k", 3334);
    cr_assert(r.allowed);
    cr_assert_eq(r.remaining, 0);
    /* The second token is whole at 6666.67 ms. */
    cr_assert_eq(r.wait_ms, 3333);
    cr_assert(!take_s(rl, 0, "k", 6666).allowed);
    cr_assert(take_s(rl, 0, "k", 6667).allowed);
    ratelimit_destroy(rl);
}

Test(ratelimit, refusals_change_nothing)
{
    ratelimit *rl = make(2, 1, 1024, 0);
    cr_assert(take_s(rl, 0, "k", 0).allowed);
    cr_assert(take_s(rl, 0, "k", 0).allowed);
    for (int t = 0; t < 500; t++)
        cr_assert(!take_s(rl, 0, "k", t).allowed, "t=%d", t);
    /* As if none of the 500 refusals had happened. */
    ratelimit_result r = take_s(rl, 0, "k", 500);
    cr_assert(r.allowed);
    cr_assert_eq(r.remaining, 0);
    ratelimit_destroy(rl);
}

Test(ratelimit, keys_and_policies_are_separate)
{
    ratelimit_config c = {.npolicies = 2, .max_keys = 1024};
    c.policies[0] = (ratelimit_policy){1, 60};
    c.policies[1] = (ratelimit_policy){2, 60};
    ratelimit *rl;
    cr_assert_eq(ratelimit_create(&c, &rl), 0);
    cr_assert(take_s(rl, 0, "alice", 0).allowed);
    cr_assert(!take_s(rl, 0, "alice", 0).allowed);
    cr_assert(take_s(rl, 0, "bob", 0).allowed, "another key has its own bucket");
    cr_assert(take_s(rl, 0, "alicf", 0).allowed);
    cr_assert(take_s(rl, 0, "", 0).allowed, "the empty key is a key");
    ratelimit_result r = take_s(rl, 1, "alice", 0);
    cr_assert(r.allowed, "the same key under another policy has its own bucket");
    cr_assert_eq(r.remaining, 1);
    ratelimit_destroy(rl);
}

Test(ratelimit, give_back_returns_the_token)
{
    ratelimit *rl = make(1, 60, 1024, 0);
    cr_assert(take_s(rl, 0, "k", 0).allowed);
    cr_assert(!take_s(rl, 0, "k", 10).allowed);
    ratelimit_give_back(rl, 0, "k", 1, 10);
    ratelimit_result r = take_s(rl, 0, "k", 10);
    cr_assert(r.allowed);
    cr_assert_eq(r.remaining, 0);
    /* A give-back never fills beyond a full bucket, nor invents a key. */
    ratelimit_give_back(rl, 0, "other", 5, 10);
    ratelimit_give_back(rl, 0, "k", 1, 10);
    ratelimit_give_back(rl, 0, "k", 1, 10);
    r = take_s(rl, 0, "k", 10);
    cr_assert(r.allowed);
    cr_assert(!take_s(rl, 0, "k", 10).allowed);
    ratelimit_destroy(rl);
}

Test(ratelimit, dead_entries_are_reused)
{
    /* One stripe of 4 entries; 1 per second, so an entry is dead 1 s after its take. */
    ratelimit *rl = make(1, 1, 4, 1);
    for (uint64_t k = 0; k < 4; k++)
        cr_assert(take_n(rl, k, 0).allowed);
    ratelimit_stats st;
    ratelimit_stats_get(rl, 0, &st);
    cr_assert_eq(st.entries, 4);
    cr_assert_eq(st.live, 4);
    for (uint64_t k = 4; k < 1000; k++)
        cr_assert(take_n(rl, k, (int64_t)(k / 4) * 1000).allowed, "key %lu", (unsigned long)k);
    ratelimit_stats_get(rl, 249000, &st);
    cr_assert_eq(st.entries, 4, "dead entries are reused: %lu", (unsigned long)st.entries);
    cr_assert_eq(st.evicted_live, 0, "only dead entries were reused");
    cr_assert_eq(st.live, 4);
    ratelimit_stats_get(rl, 250000, &st);
    cr_assert_eq(st.live, 0, "all refilled");
    cr_assert_eq(st.bytes, 4 * RATELIMIT_ENTRY_BYTES);
    ratelimit_destroy(rl);
}

Test(ratelimit, bound_evicts_the_least_recently_used)
{
    ratelimit *rl = make(1, 60, 4, 1);
    for (uint64_t k = 0; k < 4; k++)
        cr_assert(take_n(rl, k, 0).allowed);
    /* Full of live keys: a fifth key takes the oldest's entry. */
    cr_assert(take_n(rl, 4, 1).allowed);
    ratelimit_stats st;
    ratelimit_stats_get(rl, 1, &st);
    cr_assert_eq(st.entries, 4);
    cr_assert_eq(st.evicted_live, 1);
    /* Key 3 is still limited (and is now the most recently used) ... */
    cr_assert(!take_n(rl, 3, 2).allowed);
    /* ... key 0 lost its history (fails open), evicting key 1, the oldest now. */
    cr_assert(take_n(rl, 0, 3).allowed);
    cr_assert(take_n(rl, 1, 4).allowed, "key 1 was evicted");
    cr_assert(!take_n(rl, 3, 5).allowed);
    cr_assert(!take_n(rl, 0, 6).allowed);
    ratelimit_stats_get(rl, 6, &st);
    cr_assert_eq(st.entries, 4);
    cr_assert_eq(st.evicted_live, 3);
    ratelimit_destroy(rl);
}

Test(ratelimit, bound_holds_across_stripes)
{
    ratelimit *rl = make(5, 3600, 1000, 0);
    for (uint64_t k = 0; k < 100000; k++)
        cr_assert(take_n(rl, k, 0).allowed);
    ratelimit_stats st;
    ratelimit_stats_get(rl, 0, &st);
    cr_assert_leq(st.entries, 1000, "entries %lu", (unsigned long)st.entries);
    cr_assert_geq(st.entries, 1000 - 64);
    cr_assert_leq(st.capacity, 64 * 16, "capacity %lu", (unsigned long)st.capacity);
    cr_assert_eq(st.evicted_live, 100000 - st.entries);
    ratelimit_destroy(rl);
}

Test(ratelimit, growth_keeps_every_key)
{
    /* One stripe growing from 16 to 16384 entries: every key must still be found. */
    ratelimit *rl = make(1, 60, 100000, 1);
    for (uint64_t k = 0; k < 10000; k++)
        cr_assert(take_n(rl, k * 7919, 0).allowed);
    for (uint64_t k = 0; k < 10000; k++)
        cr_assert(!take_n(rl, k * 7919, 0).allowed, "key %lu was lost", (unsigned long)k);
    ratelimit_stats st;
    ratelimit_stats_get(rl, 0, &st);
    cr_assert_eq(st.entries, 10000);
    cr_assert_eq(st.capacity, 16384);
    cr_assert_eq(st.evicted_live, 0);
    ratelimit_destroy(rl);
}

/* ---- Threads ---- */

enum { THREADS = 8, TAKES = 20000 };

typedef struct worker {
    ratelimit *rl;
    int id;
    bool moving_time;
    uint64_t allowed;
} worker;

static void *work(void *arg)
{
    worker *w = arg;
    for (int i = 0; i < TAKES; i++) {
        ratelimit_result r;
        int64_t now = w->moving_time ? i : 1000;
        if (ratelimit_take(w->rl, 0, "shared", 6, now, &r))
            w->allowed++;
        /* Other keys in the same table at the same time (growth, eviction). */
        uint64_t k = (uint64_t)w->id << 32 | (uint64_t)i;
        ratelimit_take(w->rl, 0, &k, sizeof(k), now, &r);
    }
    return NULL;
}

static uint64_t run_threads(ratelimit *rl, bool moving_time)
{
    pthread_t t[THREADS];
    worker w[THREADS];
    for (int i = 0; i < THREADS; i++) {
        w[i] = (worker){.rl = rl, .id = i + 1, .moving_time = moving_time};
        cr_assert_eq(pthread_create(&t[i], NULL, work, &w[i]), 0);
    }
    uint64_t allowed = 0;
    for (int i = 0; i < THREADS; i++) {
        pthread_join(t[i], NULL);
        allowed += w[i].allowed;
    }
    return allowed;
}

Test(ratelimit, concurrent_takes_never_exceed_the_quota)
{
    /* Time stands still: exactly the bucket, never one more. */
    ratelimit *rl = make(100, 3600, 4096, 0);
    cr_assert_eq(run_threads(rl, false), 100);
    ratelimit_destroy(rl);
}

Test(ratelimit, concurrent_takes_with_time_moving)
{
    /* 10 per second over 20 s (each thread's clock runs 0..19999 ms, not in
     * step with the others): at most the bucket plus what 19,999 ms refill. */
    ratelimit *rl = make(10, 1, 4096, 0);
    uint64_t allowed = run_threads(rl, true);
    cr_assert_leq(allowed, 10 + 19999 * 10 / 1000, "allowed %lu", (unsigned long)allowed);
    cr_assert_geq(allowed, 1);
    ratelimit_destroy(rl);
}
