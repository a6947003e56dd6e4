/*
 * histogram: log-spaced latency buckets (see histogram.h).
 *
 * Bucket index of a value v: below 128, v itself. Above, with m the position of v's highest set
 * bit and shift = m - 6, v >> shift lies in [64, 128): the bucket is 64 * shift + (v >> shift).
 * Each power of two [2^m, 2^(m+1)) then gets 64 buckets of width 2^shift, so a bucket is never
 * wider than 1/64 of the values in it. The last power (m = 63) ends at index 64 * 57 + 127.
 */
#include "histogram.h"

#include <math.h>
#include <stdlib.h>

#include "xalloc.h"

#define SUB_BUCKETS 64                          /* buckets per power of two, above 127 */
#define BUCKETS     (SUB_BUCKETS * 57 + 128)    /* enough for any uint64_t value */

struct histogram {
    uint64_t counts[BUCKETS]; /* recorded values per bucket */
    uint64_t total;           /* values recorded */
    uint64_t max;             /* the largest value, exactly */
    long double sum;          /* of all values, for the mean */
};

unsigned histogram_bucket_of(uint64_t value)
{
    if (value < 2 * SUB_BUCKETS)
        return (unsigned)value;
    unsigned shift = (unsigned)(63 - __builtin_clzll(value)) - 6;
    return SUB_BUCKETS * shift + (unsigned)(value >> shift);
}

uint64_t histogram_bucket_low(unsigned bucket)
{
    if (bucket < 2 * SUB_BUCKETS)
        return bucket;
    unsigned shift = bucket / SUB_BUCKETS - 1;
    return (uint64_t)(bucket - SUB_BUCKETS * shift) << shift;
}

uint64_t histogram_bucket_high(unsigned bucket)
{
    if (bucket < 2 * SUB_BUCKETS)
        return bucket;
    unsigned shift = bucket / SUB_BUCKETS - 1;
    return histogram_bucket_low(bucket) + (((uint64_t)1 << shift) - 1);
}

struct histogram *histogram_create(void)
{
    return xcalloc(1, sizeof(struct histogram));
}

void histogram_free(struct histogram *h)
{
    free(h);
}

void histogram_record(struct histogram *h, uint64_t value)
{
    h->counts[histogram_bucket_of(value)]++;
    h->total++;
    h->sum += (long double)value;
    if (value > h->max)
        h->max = value;
}

void histogram_merge(struct histogram *into, const struct histogram *from)
{
    for (unsigned i = 0; i < BUCKETS; i++)
        into->counts[i] += from->counts[i];
    into->total += from->total;
    into->sum += from->sum;
    if (from->max > into->max)
        into->max = from->max;
}

void histogram_reset(struct histogram *h)
{
    *h = (struct histogram){0};
}

uint64_t histogram_count(const struct histogram *h)
{
    return h->total;
}

uint64_t histogram_max(const struct histogram *h)
{
    return h->max;
}

double histogram_mean(const struct histogram *h)
{
    return h->total ? (double)(h->sum / (long double)h->total) : 0.0;
}

uint64_t histogram_percentile(const struct histogram *h, double percent)
{
    if (h->total == 0)
        return 0;
    if (percent >= 100.0)
        return h->max;
    if (percent < 0.0)
        percent = 0.0;
    /* The rank of the value sought, 1-based: at least the first value. */
    uint64_t rank = (uint64_t)ceill((long double)percent / 100.0L * (long double)h->total - 1e-9L);
    if (rank < 1)
        rank = 1;
    uint64_t seen = 0;
    for (unsigned i = 0; i < BUCKETS; i++) {
        seen += h->counts[i];
        if (seen >= rank) {
            uint64_t high = histogram_bucket_high(i);
            return high < h->max ? high : h->max;
        }
    }
    return h->max;
}
