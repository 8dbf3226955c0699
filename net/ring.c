/*
 * ring.c - bounded single-producer/single-consumer ring (see ring.h).
 *
 * Indices. `head` counts elements ever popped, `tail` elements ever pushed,
 * both modulo 2^32; the ring holds tail - head elements (unsigned arithmetic,
 * always 0 .. capacity), element i lives in slot i & mask. Only the consumer
 * stores `head`, only the producer stores `tail`.
 *
 * Memory ordering. Two things cross threads: the bytes of an element (from
 * producer to consumer) and the right to reuse a slot (from consumer back to
 * producer). Each is one release/acquire pair and nothing else needs ordering:
 *
 *   1. push: memcpy into slot, then store `tail` with RELEASE.
 *      pop:  load `tail` with ACQUIRE, then memcpy out of the slot.
 *      The consumer that sees the new tail also sees the bytes written before
 *      it (release sequenced after the copy, acquire sequenced before the
 *      read): it never reads a half-written element.
 *
 *   2. pop:  memcpy out of the slot, then store `head` with RELEASE.
 *      push: load `head` with ACQUIRE, then memcpy into the freed slot.
 *      The consumer's reads of a slot happen before the producer overwrites
 *      it: the producer never clobbers an element still being copied out.
 *
 * A side's own index is loaded RELAXED: it is the only writer, so it always
 * reads its latest value, and nothing is published by reading it. The cached
 * copy of the other side's index (head_cache, tail_cache) is plain memory
 * owned by one thread. A stale cache is always conservative (the real head is
 * >= head_cache, the real tail >= tail_cache): it can make the ring look
 * fuller or emptier than it is, never the other way round, and the slow path
 * refreshes it with the acquire load of rule 1 or 2. Elements covered by a
 * cached value were already acquired when the cache was filled, so using the
 * cache needs no new fence.
 *
 * No seq_cst anywhere: SPSC needs no total order between the two indices. On
 * x86-64 acquire loads and release stores are plain moves; the cost is the
 * cache-line transfer when a side refreshes its cache, which the caches limit
 * to once per "looked full" or "looked empty" episode instead of once per
 * element.
 */
#include "ring.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdnoreturn.h>
#include <string.h>

/* Always on, release builds included (design brief §7): a ring whose indices
 * drifted would hand one shard's command to the wrong request or lose it. */
static noreturn void ring_assert_fail(const char *expr, const char *file, int line)
{
    fprintf(stderr, "usher net: assertion failed: %s (%s:%d)\n", expr, file, line);
    abort();
}
#define RING_ASSERT(c) ((c) ? (void)0 : ring_assert_fail(#c, __FILE__, __LINE__))

static bool is_power_of_two(uint32_t x)
{
    return x != 0 && (x & (x - 1)) == 0;
}

static unsigned char *slot_at(const net__ring *ring, uint32_t index)
{
    return ring->slots + (size_t)(index & ring->mask) * ring->elem_size;
}

int net__ring_init_at(net__ring *ring, uint32_t capacity, size_t elem_size, uint32_t first_index)
{
    RING_ASSERT(ring != NULL);
    RING_ASSERT(is_power_of_two(capacity));
    RING_ASSERT(capacity <= (uint32_t)NET__RING_CAPACITY_MAX);
    RING_ASSERT(elem_size >= 1 && elem_size <= NET__RING_ELEM_SIZE_MAX);

    ring->slots = NULL;
    ring->elem_size = elem_size;
    ring->capacity = capacity;
    ring->mask = capacity - 1;
    atomic_init(&ring->head, first_index);
    atomic_init(&ring->tail, first_index);
    ring->tail_cache = first_index;
    ring->head_cache = first_index;

    /* aligned_alloc wants a size that is a multiple of the alignment. The
     * product cannot overflow on 64-bit size_t (2^30 * 2^16); check anyway
     * for 32-bit targets. */
    if (elem_size > (SIZE_MAX - NET__RING_CACHE_LINE) / capacity)
        return -ENOMEM;
    size_t bytes = (size_t)capacity * elem_size;
    bytes = (bytes + NET__RING_CACHE_LINE - 1) & ~(size_t)(NET__RING_CACHE_LINE - 1);
    ring->slots = aligned_alloc(NET__RING_CACHE_LINE, bytes);
    if (ring->slots == NULL)
        return -ENOMEM;
    return 0;
}

int net__ring_init(net__ring *ring, uint32_t capacity, size_t elem_size)
{
    return net__ring_init_at(ring, capacity, elem_size, 0);
}

void net__ring_free(net__ring *ring)
{
    RING_ASSERT(ring != NULL);
    free(ring->slots);
    ring->slots = NULL;
}

bool net__ring_push(net__ring *ring, const void *elem)
{
    RING_ASSERT(ring->slots != NULL);
    RING_ASSERT(elem != NULL);
    uint32_t tail = atomic_load_explicit(&ring->tail, memory_order_relaxed);

    uint32_t used = tail - ring->head_cache;
    if (used >= ring->capacity) {
        /* Looks full: refresh. ACQUIRE pairs with pop's release of `head`, so
         * the consumer is done reading any slot we are about to reuse. */
        ring->head_cache = atomic_load_explicit(&ring->head, memory_order_acquire);
        used = tail - ring->head_cache;
    }
    /* head <= tail and at most capacity apart, in wrap-around arithmetic. */
    RING_ASSERT(used <= ring->capacity);
    if (used == ring->capacity)
        return false;

    memcpy(slot_at(ring, tail), elem, ring->elem_size);
    /* RELEASE: the element's bytes are visible before the new tail is. */
    atomic_store_explicit(&ring->tail, tail + 1, memory_order_release);
    return true;
}

/* Consumer side: how many elements are ready, refreshing the cached tail only
 * when the cache says none (or fewer than wanted) are. */
static uint32_t consumer_available(net__ring *ring, uint32_t head, uint32_t wanted)
{
    uint32_t avail = ring->tail_cache - head;
    RING_ASSERT(avail <= ring->capacity);
    if (avail < wanted) {
        /* ACQUIRE pairs with push's release of `tail`: the bytes of every
         * element below the tail we read are visible to our memcpy. */
        ring->tail_cache = atomic_load_explicit(&ring->tail, memory_order_acquire);
        avail = ring->tail_cache - head;
        RING_ASSERT(avail <= ring->capacity);
    }
    return avail;
}

bool net__ring_pop(net__ring *ring, void *out)
{
    RING_ASSERT(ring->slots != NULL);
    RING_ASSERT(out != NULL);
    uint32_t head = atomic_load_explicit(&ring->head, memory_order_relaxed);

    if (consumer_available(ring, head, 1) == 0)
        return false;
    memcpy(out, slot_at(ring, head), ring->elem_size);
    /* RELEASE: our read of the slot completes before the producer can see it
     * free and overwrite it. */
    atomic_store_explicit(&ring->head, head + 1, memory_order_release);
    return true;
}

size_t net__ring_pop_batch(net__ring *ring, void *out, size_t max)
{
    RING_ASSERT(ring->slots != NULL);
    RING_ASSERT(out != NULL || max == 0);
    if (max == 0)
        return 0;
    uint32_t head = atomic_load_explicit(&ring->head, memory_order_relaxed);
    uint32_t wanted = max < ring->capacity ? (uint32_t)max : ring->capacity;

    uint32_t n = consumer_available(ring, head, wanted);
    if (n == 0)
        return 0;
    if (n > wanted)
        n = wanted;

    /* The run may wrap past the end of the slot array: at most two copies. */
    uint32_t first = head & ring->mask;
    uint32_t run = ring->capacity - first;
    if (run > n)
        run = n;
    unsigned char *dst = out;
    memcpy(dst, slot_at(ring, head), (size_t)run * ring->elem_size);
    if (n > run)
        memcpy(dst + (size_t)run * ring->elem_size, ring->slots,
               (size_t)(n - run) * ring->elem_size);

    /* RELEASE: as in net__ring_pop, for all n slots at once. */
    atomic_store_explicit(&ring->head, head + n, memory_order_release);
    return n;
}

uint32_t net__ring_size_approx(const net__ring *ring)
{
    /* Load head first, with ACQUIRE: the consumer read a tail >= this head
     * before releasing it, so by read-read coherence the tail we load next is
     * never below the head (no "negative" count from a third thread). That
     * tail load needs no ordering of its own: no slot is read. The tail may
     * have moved on meanwhile, by more than the capacity relative to our
     * stale head, hence the clamp. */
    uint32_t head = atomic_load_explicit(&ring->head, memory_order_acquire);
    uint32_t tail = atomic_load_explicit(&ring->tail, memory_order_relaxed);
    uint32_t size = tail - head;
    return size > ring->capacity ? ring->capacity : size;
}

uint32_t net__ring_capacity(const net__ring *ring)
{
    return ring->capacity;
}
