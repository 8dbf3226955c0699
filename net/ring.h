/*
 * ring.h - net's internal bounded single-producer/single-consumer ring.
 *
 * Internal to net/: shard threads use one ring per (sender shard, owner shard)
 * direction to hand a small command (a request for a showtime the sender does
 * not own, or the reply to one) to the owning shard's thread. The sender pushes
 * and then wakes the owner with uv_async_send(); the owner's async callback
 * drains the ring with net__ring_pop_batch() until it is empty. libuv promises
 * a callback after every uv_async_send() that returns, so nothing pushed before
 * the wake-up is left behind. The ring itself knows nothing of libuv.
 *
 * Design:
 *   - Bounded: the capacity (a power of two) and the element size are fixed at
 *     net__ring_init(), which allocates the slot array once. A full ring makes
 *     net__ring_push() return false, and the caller answers 503 with
 *     Retry-After: memory never grows under load.
 *   - Slots hold a copy of a caller-chosen, fixed-size element (the command
 *     struct itself, say 64 bytes), not a pointer to it. A command crosses
 *     threads with two memcpy calls and no allocation, and no pool has to be
 *     shared between threads to own the command while it travels. With a
 *     64-byte element every slot is exactly one cache line (the slot array is
 *     64-byte aligned). Rings of pointers are the special case
 *     elem_size == sizeof(void *).
 *   - Lock-free for exactly one producer thread and one consumer thread, with
 *     C11 atomics. The two indices live on separate cache lines, and each side
 *     keeps a private cache of the other side's index, so it reads the shared
 *     one only when the cache says the ring is full (producer) or empty
 *     (consumer). See ring.c for the memory-ordering argument.
 *   - Indices are free-running 32-bit counters (slot = index & mask), compared
 *     with unsigned wrap-around arithmetic; capacities up to 2^30 keep
 *     "tail - head" unambiguous across the 2^32 wrap.
 *
 * Threading: init and free run while no other thread uses the ring (before the
 * threads start, after they joined). net__ring_push() is called by the producer
 * thread only; net__ring_pop() and net__ring_pop_batch() by the consumer thread
 * only; net__ring_size_approx() and net__ring_capacity() by any thread.
 *
 * A ring is over-aligned (64 bytes): embed it in a static or automatic object,
 * or in memory from aligned_alloc(), not in plain malloc() memory.
 */
#ifndef USHER_NET_RING_H
#define USHER_NET_RING_H

#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum {
    NET__RING_CACHE_LINE = 64,                /* x86-64 and most arm64 cores */
    NET__RING_CAPACITY_MAX = (int)(1u << 30), /* keeps tail - head unambiguous */
    NET__RING_ELEM_SIZE_MAX = 64 * 1024,      /* a command, not a payload */
};

/* The fields are visible so that a ring can be embedded by value; only ring.c
 * touches them (and tests that deliberately corrupt one). */
typedef struct net__ring {
    /* Consumer's cache line: written by the consumer only. */
    alignas(NET__RING_CACHE_LINE) _Atomic uint32_t head; /* next index to pop */
    uint32_t tail_cache; /* consumer's last view of tail (<= the real tail) */

    /* Producer's cache line: written by the producer only. */
    alignas(NET__RING_CACHE_LINE) _Atomic uint32_t tail; /* next index to push */
    uint32_t head_cache; /* producer's last view of head (<= the real head) */

    /* Read-only after init, on a line of its own so that index stores never
     * invalidate it. */
    alignas(NET__RING_CACHE_LINE) unsigned char *slots;
    size_t elem_size;
    uint32_t mask; /* capacity - 1 */
    uint32_t capacity;
} net__ring;

/**
 * Initializes an empty ring of `capacity` slots of `elem_size` bytes each and
 * allocates its slot array (the ring's only allocation).
 *
 * @param ring      caller-allocated handle (see the alignment note above).
 * @param capacity  a power of two, 1 .. NET__RING_CAPACITY_MAX; a ring holds
 *                  exactly `capacity` elements when full. Asserted.
 * @param elem_size bytes per element, 1 .. NET__RING_ELEM_SIZE_MAX. Asserted.
 * @return 0, or -ENOMEM when the slot array cannot be allocated (the ring is
 *         then left freed: net__ring_free() on it is harmless).
 */
int net__ring_init(net__ring *ring, uint32_t capacity, size_t elem_size);

/**
 * Like net__ring_init(), but both indices start at `first_index` instead of 0.
 * Behaviour is identical; this exists so tests can start a ring just below
 * the 2^32 wrap of the indices.
 */
int net__ring_init_at(net__ring *ring, uint32_t capacity, size_t elem_size, uint32_t first_index);

/**
 * Releases the slot array. The ring must be idle (no thread using it). Safe
 * on a ring whose init failed, and idempotent.
 */
void net__ring_free(net__ring *ring);

/**
 * Producer only. Copies `elem_size` bytes from `elem` into the next free slot
 * and publishes it to the consumer.
 *
 * @param elem the element to copy; borrowed for the duration of the call.
 * @return true when pushed, false when the ring is full (nothing is copied;
 *         the caller applies backpressure).
 */
bool net__ring_push(net__ring *ring, const void *elem);

/**
 * Consumer only. Copies the oldest element into `out` (`elem_size` bytes) and
 * frees its slot for the producer.
 *
 * @return true when an element was popped, false when the ring is empty
 *         (`out` is untouched).
 */
bool net__ring_pop(net__ring *ring, void *out);

/**
 * Consumer only. Pops up to `max` elements, oldest first, into the array
 * `out` (room for `max` elements of `elem_size` bytes). Costs one look at the
 * producer's index and one release of the slots, whatever the count.
 *
 * @return how many elements were popped (0 when the ring is empty or `max` is 0).
 */
size_t net__ring_pop_batch(net__ring *ring, void *out, size_t max);

/**
 * Any thread. An approximate element count for metrics: exact when called by
 * the producer or the consumer with the other side idle; otherwise a value
 * the count had at some moment during the call or shortly before, clamped to
 * 0 .. capacity.
 */
uint32_t net__ring_size_approx(const net__ring *ring);

/** Any thread. The capacity given at init. */
uint32_t net__ring_capacity(const net__ring *ring);

#endif /* USHER_NET_RING_H */
