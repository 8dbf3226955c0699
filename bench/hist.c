/*
 * hist.c - log-linear latency histogram (see hist.h for the bucket layout).
 */
#include "hist.h"

#include <string.h>

/* Index of the highest set bit of v (v > 0). */
static unsigned top_bit(uint64_t v)
{
    return 63u - (unsigned)__builtin_clzll(v);
}

uint32_t hist_bucket_of(uint64_t ns)
{
    if (ns > HIST_HIGHEST_NS)
        ns = HIST_HIGHEST_NS;
    if (ns < 2 * HIST_SUB)
        return (uint32_t)ns;
    unsigned k = top_bit(ns); /* >= 8 */
    uint64_t sub = (ns >> (k - HIST_SUB_BITS)) - HIST_SUB;
    return (uint32_t)(2 * HIST_SUB + (k - HIST_SUB_BITS - 1) * HIST_SUB + sub);
}

uint64_t hist_bucket_low(uint32_t b)
{
    if (b < 2 * HIST_SUB)
        return b;
    uint32_t r = b - 2 * HIST_SUB;
    unsigned k = HIST_SUB_BITS + 1 + r / HIST_SUB;
    uint64_t sub = r % HIST_SUB;
    return (HIST_SUB + sub) << (k - HIST_SUB_BITS);
}

uint64_t hist_bucket_high(uint32_t b)
{
    if (b < 2 * HIST_SUB)
        return b;
    uint32_t r = b - 2 * HIST_SUB;
    unsigned k = HIST_SUB_BITS + 1 + r / HIST_SUB;
    return hist_bucket_low(b) + (UINT64_C(1) << (k - HIST_SUB_BITS)) - 1;
}

void hist_init(hist *h)
{
    memset(h, 0, sizeof(*h));
    h->min = UINT64_MAX;
}

void hist_record(hist *h, uint64_t ns)
{
    h->buckets[hist_bucket_of(ns)]++;
    h->count++;
    if (ns > HIST_HIGHEST_NS)
        h->overflow++;
    if (ns < h->min)
        h->min = ns;
    if (ns > h->max)
        h->max = ns;
    h->sum += (double)ns;
}

void hist_merge(hist *dst, const hist *src)
{
    if (src->count == 0)
        return;
    for (uint32_t i = 0; i < HIST_BUCKETS; i++)
        dst->buckets[i] += src->buckets[i];
    dst->count += src->count;
    dst->overflow += src->overflow;
    dst->sum += src->sum;
    if (src->min < dst->min)
        dst->min = src->min;
    if (src->max > dst->max)
        dst->max = src->max;
}

uint64_t hist_percentile(const hist *h, double p)
{
    if (h->count == 0)
        return 0;
    if (p <= 0.0)
        return h->min;
    if (p >= 100.0)
        return h->max;
    /* rank = ceil(p/100 * count), tolerant of the rounding in p/100 * count
     * (99.9 % of 100000 must be rank 99900, not 99901). */
    double r = p / 100.0 * (double)h->count;
    uint64_t rank = (uint64_t)r;
    if ((double)rank + 1e-9 * r < r)
        rank++;
    if (rank < 1)
        rank = 1;
    if (rank > h->count)
        rank = h->count;
    uint64_t seen = 0;
    for (uint32_t b = 0; b < HIST_BUCKETS; b++) {
        seen += h->buckets[b];
        if (seen >= rank) {
            uint64_t lo = hist_bucket_low(b), hi = hist_bucket_high(b);
            uint64_t v = lo + (hi - lo) / 2;
            if (v < h->min)
                v = h->min;
            if (v > h->max)
                v = h->max;
            return v;
        }
    }
    return h->max; /* not reached: the buckets sum to count */
}

uint64_t hist_count(const hist *h)
{
    return h->count;
}

uint64_t hist_max(const hist *h)
{
    return h->count ? h->max : 0;
}

uint64_t hist_min(const hist *h)
{
    return h->count ? h->min : 0;
}

double hist_mean(const hist *h)
{
    return h->count ? h->sum / (double)h->count : 0.0;
}
