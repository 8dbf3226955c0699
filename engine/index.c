/*
 * index.c - the engine's fixed-size hash map, byte codec and assertion hook.
 */
#include "engine_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

noreturn void engine__assert_fail(const char *expr, const char *file, int line)
{
    fprintf(stderr, "usher engine: assertion failed: %s (%s:%d)\n", expr, file, line);
    abort();
}

/* Stafford's mix13 (the splitmix64 finalizer): ids are often sequential, and
 * linear probing needs their low bits spread. */
uint64_t engine__mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    x ^= x >> 31;
    return x;
}

int engine__map_init(engine__map *m, uint32_t max_entries)
{
    ENGINE_ASSERT(max_entries > 0 && max_entries <= (1u << 30));
    uint64_t slots = 16;
    while (slots < (uint64_t)max_entries * 2)
        slots <<= 1;
    memset(m, 0, sizeof(*m));
    m->keys = calloc(slots, sizeof(*m->keys));
    m->vals = calloc(slots, sizeof(*m->vals));
    if (m->keys == NULL || m->vals == NULL) {
        engine__map_free(m);
        return ENGINE_ENOMEM;
    }
    m->mask = (uint32_t)(slots - 1);
    m->max = max_entries;
    return 0;
}

void engine__map_free(engine__map *m)
{
    free(m->keys);
    free(m->vals);
    memset(m, 0, sizeof(*m));
}

uint32_t engine__map_get(const engine__map *m, uint64_t key)
{
    uint32_t i = (uint32_t)engine__mix64(key) & m->mask;
    for (;;) {
        uint32_t v = m->vals[i];
        if (v == 0)
            return ENGINE_MAP_NONE;
        if (m->keys[i] == key)
            return v - 1;
        i = (i + 1) & m->mask;
    }
}

void engine__map_put(engine__map *m, uint64_t key, uint32_t val)
{
    ENGINE_ASSERT(m->count < m->max);
    ENGINE_ASSERT(val != ENGINE_MAP_NONE);
    uint32_t i = (uint32_t)engine__mix64(key) & m->mask;
    while (m->vals[i] != 0) {
        ENGINE_ASSERT(m->keys[i] != key);
        i = (i + 1) & m->mask;
    }
    m->keys[i] = key;
    m->vals[i] = val + 1;
    m->count++;
}

bool engine__map_del(engine__map *m, uint64_t key)
{
    uint32_t i = (uint32_t)engine__mix64(key) & m->mask;
    for (;;) {
        if (m->vals[i] == 0)
            return false;
        if (m->keys[i] == key)
            break;
        i = (i + 1) & m->mask;
    }
    /* Backward-shift deletion: pull later entries of the probe run into the
     * hole when their home slot allows it, so no tombstones accumulate. */
    uint32_t hole = i;
    for (;;) {
        i = (i + 1) & m->mask;
        if (m->vals[i] == 0)
            break;
        uint32_t home = (uint32_t)engine__mix64(m->keys[i]) & m->mask;
        /* The entry at i may move to `hole` unless its home lies cyclically in (hole, i]. */
        bool home_between = hole <= i ? (home > hole && home <= i) : (home > hole || home <= i);
        if (!home_between) {
            m->keys[hole] = m->keys[i];
            m->vals[hole] = m->vals[i];
            hole = i;
        }
    }
    m->keys[hole] = 0;
    m->vals[hole] = 0;
    m->count--;
    return true;
}

/* ---- Little-endian codec ------------------------------------------------- */

static void put_le(engine__wbuf *w, uint64_t v, size_t n)
{
    if (w->overflow || w->cap - w->len < n) {
        w->overflow = true;
        return;
    }
    for (size_t i = 0; i < n; i++)
        w->p[w->len + i] = (uint8_t)(v >> (8 * i));
    w->len += n;
}

void engine__put_u8(engine__wbuf *w, uint8_t v)
{
    put_le(w, v, 1);
}
void engine__put_u16(engine__wbuf *w, uint16_t v)
{
    put_le(w, v, 2);
}
void engine__put_u32(engine__wbuf *w, uint32_t v)
{
    put_le(w, v, 4);
}
void engine__put_u64(engine__wbuf *w, uint64_t v)
{
    put_le(w, v, 8);
}

void engine__put_bytes(engine__wbuf *w, const void *b, size_t n)
{
    if (w->overflow || w->cap - w->len < n) {
        w->overflow = true;
        return;
    }
    if (n > 0)
        memcpy(w->p + w->len, b, n);
    w->len += n;
}

static uint64_t get_le(engine__rbuf *r, size_t n)
{
    if (r->bad || r->len - r->pos < n) {
        r->bad = true;
        return 0;
    }
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v |= (uint64_t)r->p[r->pos + i] << (8 * i);
    r->pos += n;
    return v;
}

uint8_t engine__get_u8(engine__rbuf *r)
{
    return (uint8_t)get_le(r, 1);
}
uint16_t engine__get_u16(engine__rbuf *r)
{
    return (uint16_t)get_le(r, 2);
}
uint32_t engine__get_u32(engine__rbuf *r)
{
    return (uint32_t)get_le(r, 4);
}
uint64_t engine__get_u64(engine__rbuf *r)
{
    return get_le(r, 8);
}

const uint8_t *engine__get_bytes(engine__rbuf *r, size_t n)
{
    if (r->bad || r->len - r->pos < n) {
        r->bad = true;
        return NULL;
    }
    const uint8_t *p = r->p + r->pos;
    r->pos += n;
    return p;
}
