/*
 * hist.h - a log-linear latency histogram (HdrHistogram-like) over nanoseconds.
 *
 * Values 0..255 ns have a bucket each. From 256 ns up, every power-of-two range
 * [2^k, 2^(k+1)) is split into 128 equal sub-buckets of width 2^k / 128, so a
 * bucket is at most 1/128 (0.78 %) of any value in it wide. A percentile is
 * reported as the middle of its bucket, clamped to the exact minimum and
 * maximum recorded, so it is within 0.4 % of the exact value of that rank
 * (always within 1 %). The covered range is 0 to HIST_HIGHEST_NS (100 s);
 * larger values are counted in the top bucket and in `overflow` (their exact
 * value still sets `max`).
 *
 * Recording is O(1) (a bit scan, a shift, an increment); a histogram is a
 * fixed ~31 KiB struct with no allocation, meant to be kept per thread and
 * merged at the end with hist_merge(). Not thread-safe: one writer at a time.
 *
 *   hist h;
 *   hist_init(&h);
 *   hist_record(&h, 1234567);                  // 1.23 ms
 *   uint64_t p99 = hist_percentile(&h, 99.0);  // ns
 */
#ifndef USHER_BENCH_HIST_H
#define USHER_BENCH_HIST_H

#include <stdint.h>

#define HIST_LOWEST_NS  UINT64_C(1000)         /* 1 µs: the documented lower end (finer works) */
#define HIST_HIGHEST_NS UINT64_C(100000000000) /* 100 s: larger values are clamped */

enum {
    HIST_SUB_BITS = 7,             /* 128 linear sub-buckets per power of two */
    HIST_SUB = 1 << HIST_SUB_BITS, /* 128 */
    HIST_TOP_BIT = 36,             /* 2^36 <= HIST_HIGHEST_NS < 2^37 */
    /* 0..255 one each, then 128 per power of two up to the one holding HIST_HIGHEST_NS */
    HIST_BUCKETS = 2 * HIST_SUB + (HIST_TOP_BIT - HIST_SUB_BITS - 1) * HIST_SUB +
                   (int)(HIST_HIGHEST_NS >> (HIST_TOP_BIT - HIST_SUB_BITS)) - HIST_SUB + 1
};

typedef struct hist {
    uint64_t count;    /* values recorded */
    uint64_t overflow; /* values above HIST_HIGHEST_NS (counted in the top bucket) */
    uint64_t min, max; /* exact; min is UINT64_MAX while empty */
    double sum;        /* of the exact values, for the mean */
    uint64_t buckets[HIST_BUCKETS];
} hist;

/** Makes `h` empty. */
void hist_init(hist *h);

/** Records one value (nanoseconds). */
void hist_record(hist *h, uint64_t ns);

/** Adds every value of `src` to `dst` (as if each had been recorded there). */
void hist_merge(hist *dst, const hist *src);

/**
 * The value at percentile `p` (0 to 100): the smallest recorded value v such that at least
 * p % of the values are <= v, to within one bucket (reported as the bucket's middle, clamped
 * to [min, max]). p <= 0 gives the exact min, p >= 100 the exact max. 0 when empty.
 */
uint64_t hist_percentile(const hist *h, double p);

/** Values recorded. */
uint64_t hist_count(const hist *h);

/** Exact largest value recorded (0 when empty). */
uint64_t hist_max(const hist *h);

/** Exact smallest value recorded (0 when empty). */
uint64_t hist_min(const hist *h);

/** Mean of the exact values (0 when empty). */
double hist_mean(const hist *h);

/** Bucket index of a value, and the lowest and highest value of a bucket (tests). */
uint32_t hist_bucket_of(uint64_t ns);
uint64_t hist_bucket_low(uint32_t b);
uint64_t hist_bucket_high(uint32_t b);

#endif /* USHER_BENCH_HIST_H */
