/*
 * histogram: latencies counted in log-spaced buckets, like HdrHistogram.
 *
 * A benchmark must report the percentiles of the requests it measured, all of them, not of a
 * sample and not of synthetic ones. Keeping every latency costs memory in proportion to the
 * run; a histogram with fixed buckets costs 30 KB whatever the run. Buckets are exact below 128
 * (microseconds) and then 64 to every power of two, so any recorded value is known within 1/64
 * (1.6%) of itself, over the whole 64-bit range: the precision of HdrHistogram with two
 * significant digits, in one flat array. Histograms of several threads add up exactly
 * (histogram_merge), which sampled percentiles would not.
 *
 * Percentiles are reported as the highest value of the bucket they fall in ("highest
 * equivalent value", as HdrHistogram does), never above the true maximum, which is kept exactly:
 * a reported p99 is never better than the requests were.
 */
#ifndef LAYERS_BENCH_HISTOGRAM_H
#define LAYERS_BENCH_HISTOGRAM_H

#include <stdint.h>

struct histogram;

struct histogram *histogram_create(void);
void histogram_free(struct histogram *h);

void histogram_record(struct histogram *h, uint64_t value);
void histogram_merge(struct histogram *into, const struct histogram *from);
void histogram_reset(struct histogram *h);

uint64_t histogram_count(const struct histogram *h);
uint64_t histogram_max(const struct histogram *h); /* exact; 0 when empty */
double histogram_mean(const struct histogram *h);  /* exact; 0 when empty */

/* The smallest recorded value (to bucket precision) that `percent` percent of the recorded
 * values do not exceed; 0 when empty. percent in [0, 100]; 100 gives the exact maximum. */
uint64_t histogram_percentile(const struct histogram *h, double percent);

/* Bucket arithmetic, exposed for the unit tests: the bucket of a value, and the lowest and
 * highest value a bucket holds. */
unsigned histogram_bucket_of(uint64_t value);
uint64_t histogram_bucket_low(unsigned bucket);
uint64_t histogram_bucket_high(unsigned bucket);

#endif
