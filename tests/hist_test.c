/*
 * hist_test.c - bench/hist.c against known distributions: every percentile
 * must be within 1 % of the exact answer from a sorted array of the same
 * values; merging per-thread histograms must equal recording into one; the
 * bounds (0, 100 s, beyond) and the empty histogram behave as documented.
 */
#include "hist.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>

static uint64_t rng_state;

static uint64_t rng_next(void)
{
    uint64_t z = (rng_state += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

/* Uniform in [0, 1). */
static double rng_unit(void)
{
    return (double)(rng_next() >> 11) / 9007199254740992.0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Percentiles in thousandths of a percent, so the exact rank is integer math:
 * rank = ceil(p * n / 100). */
static const uint64_t pct_milli[] = {1000,  10000, 25000, 50000, 75000, 90000,
                                     99000, 99500, 99900, 99990, 99999};

static uint64_t exact_percentile(const uint64_t *sorted, size_t n, uint64_t p_milli)
{
    uint64_t rank = (p_milli * n + 99999) / 100000;
    if (rank < 1)
        rank = 1;
    return sorted[rank - 1];
}

/* Records `vals` and checks every percentile against the sorted array. */
static void check_against_exact(uint64_t *vals, size_t n, const char *what)
{
    hist *h = malloc(sizeof(*h));
    cr_assert_not_null(h);
    hist_init(h);
    double sum = 0;
    for (size_t i = 0; i < n; i++) {
        hist_record(h, vals[i]);
        sum += (double)vals[i];
    }
    qsort(vals, n, sizeof(vals[0]), cmp_u64);
    cr_assert_eq(hist_count(h), n);
    cr_assert_eq(hist_min(h), vals[0], "%s: min", what);
    cr_assert_eq(hist_max(h), vals[n - 1], "%s: max", what);
    cr_assert_eq(hist_percentile(h, 0.0), vals[0]);
    cr_assert_eq(hist_percentile(h, 100.0), vals[n - 1], "%s: p100 is the exact max", what);
    cr_assert(fabs(hist_mean(h) - sum / (double)n) <= 1e-9 * (sum / (double)n), "%s: mean", what);
    for (size_t i = 0; i < sizeof(pct_milli) / sizeof(pct_milli[0]); i++) {
        double p = (double)pct_milli[i] / 1000.0;
        uint64_t exact = exact_percentile(vals, n, pct_milli[i]);
        uint64_t got = hist_percentile(h, p);
        double err = fabs((double)got - (double)exact) / (double)exact;
        cr_assert(err <= 0.01, "%s: p%.3f = %llu, exact %llu (error %.4f %%)", what, p,
                  (unsigned long long)got, (unsigned long long)exact, err * 100);
    }
    free(h);
}

enum { N = 200000 };

Test(hist, uniform_distribution)
{
    rng_state = 1;
    uint64_t *v = malloc(N * sizeof(*v));
    cr_assert_not_null(v);
    for (size_t i = 0; i < N; i++) /* 1 µs .. 100 ms */
        v[i] = 1000 + (uint64_t)(rng_unit() * 99999000.0);
    check_against_exact(v, N, "uniform");
    free(v);
}

Test(hist, exponential_distribution)
{
    rng_state = 2;
    uint64_t *v = malloc(N * sizeof(*v));
    cr_assert_not_null(v);
    for (size_t i = 0; i < N; i++) /* 1 µs + Exp(mean 2 ms): a long tail */
        v[i] = 1000 + (uint64_t)(-log(1.0 - rng_unit()) * 2e6);
    check_against_exact(v, N, "exponential");
    free(v);
}

Test(hist, bimodal_distribution)
{
    rng_state = 3;
    uint64_t *v = malloc(N * sizeof(*v));
    cr_assert_not_null(v);
    for (size_t i = 0; i < N; i++) {
        if (rng_unit() < 0.95) /* fast path: 200-400 µs */
            v[i] = 200000 + (uint64_t)(rng_unit() * 200000.0);
        else /* slow path (a sync, a GC): 40-60 ms */
            v[i] = 40000000 + (uint64_t)(rng_unit() * 20000000.0);
    }
    check_against_exact(v, N, "bimodal");
    free(v);
}

Test(hist, wide_range_log_uniform)
{
    rng_state = 4;
    uint64_t *v = malloc(N * sizeof(*v));
    cr_assert_not_null(v);
    for (size_t i = 0; i < N; i++) /* 1 µs .. 100 s, uniform in log */
        v[i] = (uint64_t)(1000.0 * pow(1e8, rng_unit()));
    check_against_exact(v, N, "log-uniform");
    free(v);
}

Test(hist, merge_equals_one_histogram)
{
    rng_state = 5;
    hist *one = malloc(sizeof(hist)), *parts = malloc(4 * sizeof(hist)),
         *merged = malloc(sizeof(hist));
    cr_assert(one && parts && merged);
    hist_init(one);
    hist_init(merged);
    for (int t = 0; t < 4; t++)
        hist_init(&parts[t]);
    for (size_t i = 0; i < N; i++) {
        uint64_t x = 1000 + (uint64_t)(-log(1.0 - rng_unit()) * 5e5);
        hist_record(one, x);
        hist_record(&parts[rng_next() % 4], x);
    }
    hist empty;
    hist_init(&empty);
    hist_merge(merged, &empty);
    for (int t = 0; t < 4; t++)
        hist_merge(merged, &parts[t]);
    hist_merge(merged, &empty);
    cr_assert_eq(hist_count(merged), hist_count(one));
    cr_assert_eq(hist_min(merged), hist_min(one));
    cr_assert_eq(hist_max(merged), hist_max(one));
    cr_assert_eq(merged->overflow, one->overflow);
    cr_assert_arr_eq(merged->buckets, one->buckets, sizeof(one->buckets));
    cr_assert(fabs(hist_mean(merged) - hist_mean(one)) <= 1e-9 * hist_mean(one));
    for (double p = 0; p <= 100.0; p += 0.5)
        cr_assert_eq(hist_percentile(merged, p), hist_percentile(one, p), "p%.1f", p);
    free(one);
    free(parts);
    free(merged);
}

Test(hist, buckets_tile_the_range_within_one_percent)
{
    cr_assert_eq(hist_bucket_of(0), 0);
    cr_assert_eq(hist_bucket_of(HIST_HIGHEST_NS), HIST_BUCKETS - 1);
    for (uint32_t b = 0; b < HIST_BUCKETS; b++) {
        uint64_t lo = hist_bucket_low(b), hi = hist_bucket_high(b);
        cr_assert_leq(lo, hi);
        cr_assert_eq(hist_bucket_of(lo), b, "bucket %u low %llu", b, (unsigned long long)lo);
        if (hi <= HIST_HIGHEST_NS)
            cr_assert_eq(hist_bucket_of(hi), b, "bucket %u high", b);
        if (b + 1 < HIST_BUCKETS)
            cr_assert_eq(hist_bucket_low(b + 1), hi + 1, "bucket %u and the next touch", b);
        /* Width relative to the smallest value in the bucket: at most 1/128 (buckets of
         * width 1 are exact). */
        if (hi > lo)
            cr_assert_leq((double)(hi - lo + 1) / (double)lo, 1.0 / 128 + 1e-12, "bucket %u", b);
    }
    cr_assert_geq(hist_bucket_high(HIST_BUCKETS - 1), HIST_HIGHEST_NS);
}

Test(hist, bounds_and_overflow)
{
    hist h;
    hist_init(&h);
    hist_record(&h, 0);
    hist_record(&h, 1);
    hist_record(&h, HIST_LOWEST_NS);
    hist_record(&h, HIST_HIGHEST_NS);
    cr_assert_eq(h.overflow, 0);
    hist_record(&h, HIST_HIGHEST_NS + 1);
    hist_record(&h, UINT64_MAX);
    cr_assert_eq(hist_count(&h), 6);
    cr_assert_eq(h.overflow, 2, "values above 100 s are counted as overflow");
    cr_assert_eq(hist_min(&h), 0);
    cr_assert_eq(hist_max(&h), UINT64_MAX, "max stays exact beyond the range");
    cr_assert_eq(hist_percentile(&h, 100), UINT64_MAX);
    cr_assert_eq(hist_percentile(&h, 0), 0);
    /* Ranks 1..3 are exact small values; ranks 4..6 fall in the top bucket. */
    cr_assert_eq(hist_percentile(&h, 100.0 / 6), 0);
    cr_assert_eq(hist_percentile(&h, 200.0 / 6), 1);
    cr_assert(fabs((double)hist_percentile(&h, 50) - 1000.0) <= 10.0);
    uint64_t top = hist_percentile(&h, 60);
    cr_assert(fabs((double)top - 1e11) <= 1e9, "clamped values report about 100 s: %llu",
              (unsigned long long)top);
    /* Small values are exact. */
    hist_init(&h);
    for (uint64_t x = 0; x < 256; x++)
        hist_record(&h, x);
    for (uint64_t x = 1; x <= 256; x++)
        cr_assert_eq(hist_percentile(&h, (double)x * 100.0 / 256), x - 1);
}

Test(hist, single_value_is_exact)
{
    hist h;
    hist_init(&h);
    hist_record(&h, 123456789);
    cr_assert_eq(hist_percentile(&h, 50), 123456789, "clamped to the exact min and max");
    cr_assert_eq(hist_percentile(&h, 99.9), 123456789);
    cr_assert(hist_mean(&h) == 123456789.0);
}

Test(hist, empty_histogram)
{
    hist h, other;
    hist_init(&h);
    hist_init(&other);
    cr_assert_eq(hist_count(&h), 0);
    cr_assert_eq(hist_percentile(&h, 50), 0);
    cr_assert_eq(hist_percentile(&h, 99.9), 0);
    cr_assert_eq(hist_percentile(&h, 100), 0);
    cr_assert_eq(hist_max(&h), 0);
    cr_assert_eq(hist_min(&h), 0);
    cr_assert(hist_mean(&h) == 0.0);
    hist_merge(&h, &other);
    cr_assert_eq(hist_count(&h), 0);
    cr_assert_eq(hist_min(&h), 0);
    hist_record(&other, 5000);
    hist_merge(&h, &other);
    cr_assert_eq(hist_min(&h), 5000, "merging into an empty histogram keeps the min");
    cr_assert_eq(hist_percentile(&h, 50), 5000);
}
