/*
 * ring_test.c - the net/ SPSC ring: single-thread behaviour, index wrap-around
 * past 2^32, invariant asserts, and a two-thread stress run that checks strict
 * order, no loss and no duplication of 64-byte commands.
 *
 * RING_STRESS_ITEMS overrides the number of commands per stress run (default
 * STRESS_ITEMS_DEFAULT, about 3 s per run in the ASan debug build).
 *
 * ThreadSanitizer is the real judge of the memory ordering, but Criterion 2.4
 * cannot start under TSan ("Could not initialize inheritable arena",
 * Snaipe/Criterion#274). To check, compile this file and net/ring.c with
 * -fsanitize=thread -O1 against a small stand-in criterion/criterion.h that
 * maps Test() and cr_assert*() onto a fork-per-test main(); weakening any one
 * of the four acquire/release operations in ring.c makes it report a race.
 */
#include "ring.h"

#include <criterion/criterion.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum { STRESS_ITEMS_DEFAULT = 10000000 };

/* A command the size of one cache line, like the shard-to-shard requests. */
typedef struct cmd {
    uint64_t seq;
    uint64_t words[7];
} cmd;

_Static_assert(sizeof(cmd) == 64, "a command is one cache line");

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    x ^= x >> 31;
    return x;
}

static cmd cmd_make(uint64_t seq)
{
    cmd c;
    c.seq = seq;
    for (int i = 0; i < 7; i++)
        c.words[i] = mix64(seq * 8 + (uint64_t)i);
    return c;
}

/* True when every word of the command matches its sequence number: a torn or
 * stale copy (a slot read before its bytes were published, or overwritten
 * while being read) fails here. */
static bool cmd_intact(const cmd *c)
{
    for (int i = 0; i < 7; i++)
        if (c->words[i] != mix64(c->seq * 8 + (uint64_t)i))
            return false;
    return true;
}

static void push_seq(net__ring *r, uint64_t seq)
{
    cmd c = cmd_make(seq);
    cr_assert(net__ring_push(r, &c), "push of %llu failed", (unsigned long long)seq);
}

static void pop_expect(net__ring *r, uint64_t seq)
{
    cmd c;
    memset(&c, 0, sizeof c);
    cr_assert(net__ring_pop(r, &c), "pop failed, expected %llu", (unsigned long long)seq);
    cr_assert_eq(c.seq, seq);
    cr_assert(cmd_intact(&c));
}

/* ---- Single thread --------------------------------------------------------- */

Test(ring, starts_empty_with_the_given_capacity)
{
    net__ring r;
    cr_assert_eq(net__ring_init(&r, 16, sizeof(cmd)), 0);
    cr_assert_eq(net__ring_capacity(&r), 16u);
    cr_assert_eq(net__ring_size_approx(&r), 0u);
    cmd c = cmd_make(99);
    cr_assert_not(net__ring_pop(&r, &c));
    cr_assert_eq(c.seq, 99u, "a failed pop leaves the output untouched");
    cr_assert(cmd_intact(&c));
    cr_assert_eq(net__ring_pop_batch(&r, &c, 1), 0u);
    net__ring_free(&r);
    net__ring_free(&r); /* idempotent */
}

Test(ring, fills_to_capacity_and_refuses_the_next_push)
{
    net__ring r;
    cr_assert_eq(net__ring_init(&r, 8, sizeof(cmd)), 0);
    for (uint64_t i = 0; i < 8; i++) {
        push_seq(&r, i);
        cr_assert_eq(net__ring_size_approx(&r), (uint32_t)i + 1);
    }
    cmd extra = cmd_make(8);
    cr_assert_not(net__ring_push(&r, &extra));
    cr_assert_not(net__ring_push(&r, &extra));
    cr_assert_eq(net__ring_size_approx(&r), 8u);

    /* One pop makes room for exactly one push. */
    pop_expect(&r, 0);
    cr_assert_eq(net__ring_size_approx(&r), 7u);
    cr_assert(net__ring_push(&r, &extra));
    cr_assert_not(net__ring_push(&r, &extra));
    for (uint64_t i = 1; i <= 8; i++)
        pop_expect(&r, i);
    cr_assert_eq(net__ring_size_approx(&r), 0u);
    cmd c;
    cr_assert_not(net__ring_pop(&r, &c));
    net__ring_free(&r);
}

Test(ring, pops_in_fifo_order)
{
    net__ring r;
    cr_assert_eq(net__ring_init(&r, 64, sizeof(cmd)), 0);
    for (uint64_t i = 0; i < 40; i++)
        push_seq(&r, 1000 + i);
    for (uint64_t i = 0; i < 20; i++)
        pop_expect(&r, 1000 + i);
    for (uint64_t i = 40; i < 64; i++)
        push_seq(&r, 1000 + i);
    for (uint64_t i = 20; i < 64; i++)
        pop_expect(&r, 1000 + i);
    cr_assert_eq(net__ring_size_approx(&r), 0u);
    net__ring_free(&r);
}

Test(ring, wraps_around_over_many_cycles)
{
    net__ring r;
    cr_assert_eq(net__ring_init(&r, 8, sizeof(cmd)), 0);
    uint64_t pushed = 0, popped = 0;
    /* Uneven push and pop counts walk the indices through every slot offset. */
    for (int cycle = 0; cycle < 100000; cycle++) {
        uint32_t in = 1 + (uint32_t)(mix64((uint64_t)cycle) % 8);
        for (uint32_t k = 0; k < in; k++) {
            cmd c = cmd_make(pushed);
            if (!net__ring_push(&r, &c)) {
                cr_assert_eq(pushed - popped, 8u, "push refused before the ring was full");
                break;
            }
            pushed++;
        }
        cr_assert_eq(net__ring_size_approx(&r), (uint32_t)(pushed - popped));
        uint32_t out = 1 + (uint32_t)(mix64((uint64_t)cycle + 7) % 8);
        for (uint32_t k = 0; k < out && popped < pushed; k++)
            pop_expect(&r, popped++);
        cr_assert_eq(net__ring_size_approx(&r), (uint32_t)(pushed - popped));
    }
    while (popped < pushed)
        pop_expect(&r, popped++);
    cr_assert_eq(net__ring_size_approx(&r), 0u);
    cr_assert_gt(pushed, 8u * 10000);
    net__ring_free(&r);
}

Test(ring, indices_cross_the_2_32_wrap)
{
    net__ring r;
    /* Start 5 below 2^32: the first fill straddles the wrap. */
    cr_assert_eq(net__ring_init_at(&r, 8, sizeof(cmd), UINT32_MAX - 4), 0);
    for (uint64_t i = 0; i < 8; i++)
        push_seq(&r, i);
    cr_assert_eq(atomic_load(&r.tail), 3u, "tail wrapped past 2^32");
    cr_assert_eq(net__ring_size_approx(&r), 8u);
    cmd c = cmd_make(8);
    cr_assert_not(net__ring_push(&r, &c), "full across the wrap");

    for (uint64_t i = 0; i < 3; i++)
        pop_expect(&r, i);
    cr_assert_eq(net__ring_size_approx(&r), 5u);
    cmd batch[8];
    cr_assert_eq(net__ring_pop_batch(&r, batch, 8), 5u, "batch across the wrap");
    for (uint64_t i = 0; i < 5; i++) {
        cr_assert_eq(batch[i].seq, 3 + i);
        cr_assert(cmd_intact(&batch[i]));
    }
    cr_assert_eq(atomic_load(&r.head), 3u, "head wrapped past 2^32");

    /* Keep cycling for a while on the far side of the wrap. */
    uint64_t seq = 100;
    for (int k = 0; k < 1000; k++) {
        push_seq(&r, seq);
        push_seq(&r, seq + 1);
        pop_expect(&r, seq);
        pop_expect(&r, seq + 1);
        seq += 2;
    }
    cr_assert_eq(net__ring_size_approx(&r), 0u);
    net__ring_free(&r);
}

Test(ring, pop_batch_takes_up_to_n_in_order)
{
    net__ring r;
    cr_assert_eq(net__ring_init(&r, 8, sizeof(cmd)), 0);
    cmd out[16];
    cr_assert_eq(net__ring_pop_batch(&r, out, 16), 0u, "empty");

    for (uint64_t i = 0; i < 5; i++)
        push_seq(&r, i);
    cr_assert_eq(net__ring_pop_batch(&r, out, 0), 0u, "max 0 pops nothing");
    cr_assert_eq(net__ring_size_approx(&r), 5u);
    cr_assert_eq(net__ring_pop_batch(&r, out, 3), 3u);
    for (uint64_t i = 0; i < 3; i++)
        cr_assert_eq(out[i].seq, i);
    cr_assert_eq(net__ring_size_approx(&r), 2u);
    cr_assert_eq(net__ring_pop_batch(&r, out, 16), 2u);
    cr_assert_eq(out[0].seq, 3u);
    cr_assert_eq(out[1].seq, 4u);
    cr_assert_eq(net__ring_size_approx(&r), 0u);

    /* head is at slot 5: a full ring now runs 5,6,7,0,1,2,3,4 and the batch
     * must copy it in two pieces. */
    for (uint64_t i = 10; i < 18; i++)
        push_seq(&r, i);
    cr_assert_eq(net__ring_pop_batch(&r, out, 16), 8u, "a batch is capped by the content");
    for (uint64_t i = 0; i < 8; i++) {
        cr_assert_eq(out[i].seq, 10 + i);
        cr_assert(cmd_intact(&out[i]));
    }
    /* max larger than the capacity, after the cache said empty. */
    for (uint64_t i = 20; i < 28; i++)
        push_seq(&r, i);
    cr_assert_eq(net__ring_pop_batch(&r, out, 5), 5u);
    pop_expect(&r, 25);
    cr_assert_eq(net__ring_pop_batch(&r, out, 16), 2u);
    cr_assert_eq(out[0].seq, 26u);
    cr_assert_eq(out[1].seq, 27u);
    net__ring_free(&r);
}

Test(ring, copies_elements_of_any_size)
{
    /* 3 bytes: slots are packed, unaligned, and straddle nothing we care about. */
    net__ring r;
    cr_assert_eq(net__ring_init(&r, 4, 3), 0);
    for (int round = 0; round < 10; round++) {
        for (unsigned char i = 0; i < 4; i++) {
            unsigned char e[3] = {i, (unsigned char)(i + round), 0xA5};
            cr_assert(net__ring_push(&r, e));
        }
        unsigned char full[3] = {0};
        cr_assert_not(net__ring_push(&r, full));
        unsigned char out[4][3];
        cr_assert_eq(net__ring_pop_batch(&r, out, 4), 4u);
        for (unsigned char i = 0; i < 4; i++) {
            cr_assert_eq(out[i][0], i);
            cr_assert_eq(out[i][1], (unsigned char)(i + round));
            cr_assert_eq(out[i][2], 0xA5);
        }
    }
    net__ring_free(&r);

    /* A ring of pointers is the elem_size == sizeof(void *) case. */
    int values[3] = {7, 8, 9};
    cr_assert_eq(net__ring_init(&r, 2, sizeof(int *)), 0);
    int *p = &values[0];
    cr_assert(net__ring_push(&r, &p));
    p = &values[2];
    cr_assert(net__ring_push(&r, &p));
    cr_assert_not(net__ring_push(&r, &p));
    int *q = NULL;
    cr_assert(net__ring_pop(&r, &q));
    cr_assert_eq(q, &values[0]);
    cr_assert(net__ring_pop(&r, &q));
    cr_assert_eq(*q, 9);
    net__ring_free(&r);
}

Test(ring, capacity_one_alternates_full_and_empty)
{
    net__ring r;
    cr_assert_eq(net__ring_init(&r, 1, sizeof(cmd)), 0);
    for (uint64_t i = 0; i < 1000; i++) {
        push_seq(&r, i);
        cr_assert_eq(net__ring_size_approx(&r), 1u);
        cmd c = cmd_make(0);
        cr_assert_not(net__ring_push(&r, &c));
        pop_expect(&r, i);
        cr_assert_eq(net__ring_size_approx(&r), 0u);
        cr_assert_not(net__ring_pop(&r, &c));
    }
    net__ring_free(&r);
}

Test(ring, slot_array_is_cache_line_aligned)
{
    net__ring r;
    cr_assert_eq(net__ring_init(&r, 4, sizeof(cmd)), 0);
    cr_assert_eq((uintptr_t)r.slots % NET__RING_CACHE_LINE, 0u);
    /* The indices sit on different cache lines, the read-only part on a third. */
    cr_assert_geq((uintptr_t)&r.tail - (uintptr_t)&r.head, (uintptr_t)NET__RING_CACHE_LINE);
    cr_assert_geq((uintptr_t)&r.slots - (uintptr_t)&r.tail, (uintptr_t)NET__RING_CACHE_LINE);
    net__ring_free(&r);
}

/* ---- Asserted invariants ---------------------------------------------------- */

Test(ring, init_aborts_on_a_capacity_not_a_power_of_two, .signal = SIGABRT)
{
    net__ring r;
    (void)net__ring_init(&r, 12, sizeof(cmd));
}

Test(ring, init_aborts_on_capacity_zero, .signal = SIGABRT)
{
    net__ring r;
    (void)net__ring_init(&r, 0, sizeof(cmd));
}

Test(ring, push_aborts_when_indices_drift_apart, .signal = SIGABRT)
{
    net__ring r;
    cr_assert_eq(net__ring_init(&r, 8, sizeof(cmd)), 0);
    /* Corrupt: tail more than the capacity ahead of head. */
    atomic_store(&r.tail, 9u);
    cmd c = cmd_make(0);
    (void)net__ring_push(&r, &c);
}

Test(ring, pop_aborts_when_indices_drift_apart, .signal = SIGABRT)
{
    net__ring r;
    cr_assert_eq(net__ring_init(&r, 8, sizeof(cmd)), 0);
    /* Corrupt: head ahead of tail. */
    atomic_store(&r.head, 1u);
    cmd c;
    (void)net__ring_pop(&r, &c);
}

/* ---- Two threads ------------------------------------------------------------ */

typedef struct stress {
    net__ring ring;
    uint64_t items;
    uint64_t producer_sum; /* written by the producer, read after join */
    atomic_bool producer_done;
} stress;

/* Spin a little, then give the core away: the test may share two cores with
 * other test processes, and a spinning thread must not starve its partner. */
static void backoff(unsigned *spins)
{
    if (++*spins >= 64) {
        sched_yield();
        *spins = 0;
    }
}

static void *stress_producer(void *arg)
{
    stress *s = arg;
    uint64_t sum = 0;
    for (uint64_t seq = 0; seq < s->items; seq++) {
        cmd c = cmd_make(seq);
        unsigned spins = 0;
        while (!net__ring_push(&s->ring, &c))
            backoff(&spins);
        sum += mix64(seq);
    }
    s->producer_sum = sum;
    /* Release: the consumer that sees done sees every push before it. */
    atomic_store_explicit(&s->producer_done, true, memory_order_release);
    return NULL;
}

static uint64_t stress_items(void)
{
    const char *env = getenv("RING_STRESS_ITEMS");
    if (env != NULL && *env != '\0')
        return strtoull(env, NULL, 10);
    return STRESS_ITEMS_DEFAULT;
}

/* The calling thread consumes, alternating single pops and batch pops of
 * varying size, and checks strict sequence, integrity of every command, the
 * count and a checksum against the producer's. */
static void run_stress(uint32_t capacity)
{
    static stress s; /* static: over-aligned, and large for a test stack */
    memset(&s, 0, sizeof s);
    s.items = stress_items();
    atomic_init(&s.producer_done, false);
    cr_assert_eq(net__ring_init(&s.ring, capacity, sizeof(cmd)), 0);

    pthread_t producer;
    cr_assert_eq(pthread_create(&producer, NULL, stress_producer, &s), 0);

    enum { BATCH = 37 };
    cmd batch[BATCH];
    uint64_t expect = 0, received = 0, sum = 0, out_of_order = 0, torn = 0;
    uint32_t max_size = 0;
    unsigned spins = 0;
    for (uint64_t turn = 0;; turn++) {
        size_t n;
        if (turn % 3 == 0)
            n = net__ring_pop(&s.ring, &batch[0]) ? 1 : 0;
        else
            n = net__ring_pop_batch(&s.ring, batch, 1 + turn % BATCH);
        if (n == 0) {
            /* Acquire pairs with the producer's release of done: if it is
             * done, every push is visible, and one more empty pop means the
             * ring is drained for good. */
            if (atomic_load_explicit(&s.producer_done, memory_order_acquire) &&
                net__ring_pop_batch(&s.ring, batch, BATCH) == 0)
                break;
            backoff(&spins);
            continue;
        }
        spins = 0;
        for (size_t i = 0; i < n; i++) {
            if (batch[i].seq != expect)
                out_of_order++;
            if (!cmd_intact(&batch[i]))
                torn++;
            expect = batch[i].seq + 1;
            sum += mix64(batch[i].seq);
            received++;
        }
        if ((turn & 1023) == 0) {
            uint32_t size = net__ring_size_approx(&s.ring);
            if (size > max_size)
                max_size = size;
        }
    }
    cr_assert_eq(pthread_join(producer, NULL), 0);

    cr_assert_eq(out_of_order, 0u, "%llu commands out of sequence",
                 (unsigned long long)out_of_order);
    cr_assert_eq(torn, 0u, "%llu commands corrupted in transit", (unsigned long long)torn);
    cr_assert_eq(received, s.items, "received %llu of %llu", (unsigned long long)received,
                 (unsigned long long)s.items);
    cr_assert_eq(expect, s.items);
    cr_assert_eq(sum, s.producer_sum, "checksum");
    cr_assert_leq(max_size, capacity);
    cr_assert_eq(net__ring_size_approx(&s.ring), 0u);
    net__ring_free(&s.ring);
}

Test(ring, two_threads_capacity_2_keep_order_without_loss, .timeout = 110)
{
    run_stress(2);
}

Test(ring, two_threads_capacity_1024_keep_order_without_loss, .timeout = 110)
{
    run_stress(1024);
}
