/*
 * workload: keys drawn per request (see workload.h).
 */
#include "workload.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xalloc.h"

struct zipf {
    uint64_t n;       /* ranks 1..n */
    uint64_t scatter; /* coprime with n: rank -> key is a permutation */
    double *cdf;      /* cdf[r - 1]: probability of a rank <= r */
};

void rng_init(struct rng *rng, uint64_t seed)
{
    /* splitmix64 of the seed, so that seeds 1, 2, 3 give unrelated streams; never 0 */
    uint64_t z = seed + 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    rng->state = (z ^ (z >> 31)) | 1;
}

uint64_t rng_next(struct rng *rng)
{
    uint64_t x = rng->state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    rng->state = x;
    return x * 0x2545f4914f6cdd1dULL;
}

double rng_uniform(struct rng *rng)
{
    return (double)(rng_next(rng) >> 11) * 0x1.0p-53;
}

uint64_t rng_below(struct rng *rng, uint64_t n)
{
    return (uint64_t)(rng_uniform(rng) * (double)n) % n;
}

static uint64_t gcd(uint64_t a, uint64_t b)
{
    while (b != 0) {
        uint64_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}

struct zipf *zipf_create(uint64_t n, double s)
{
    struct zipf *z = xcalloc(1, sizeof(*z));
    z->n = n;
    z->cdf = xmalloc(n * sizeof(double));
    double sum = 0;
    for (uint64_t i = 1; i <= n; i++) {
        sum += 1.0 / pow((double)i, s);
        z->cdf[i - 1] = sum;
    }
    for (uint64_t i = 0; i < n; i++)
        z->cdf[i] /= sum;
    z->cdf[n - 1] = 1.0; /* no draw may fall past the last rank by rounding */
    z->scatter = 7919;   /* as workload.lua */
    while (gcd(z->scatter, n) != 1)
        z->scatter += 2;
    return z;
}

void zipf_free(struct zipf *z)
{
    if (z == NULL)
        return;
    free(z->cdf);
    free(z);
}

uint64_t zipf_rank(const struct zipf *z, double u)
{
    uint64_t lo = 1, hi = z->n;
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        if (z->cdf[mid - 1] < u)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

uint64_t zipf_key(const struct zipf *z, uint64_t rank)
{
    return (rank * z->scatter) % z->n + 1;
}

double zipf_probability(const struct zipf *z, uint64_t rank)
{
    return z->cdf[rank - 1] - (rank > 1 ? z->cdf[rank - 2] : 0.0);
}

static const char *const NAMES[] = {
    [WORKLOAD_READ_HIT] = "read-hit", [WORKLOAD_READ_ZIPF] = "read-zipf",
    [WORKLOAD_READ_MISS] = "read-miss", [WORKLOAD_WRITE] = "write",
    [WORKLOAD_MIXED] = "mixed",       [WORKLOAD_PING] = "ping",
    [WORKLOAD_PRELOAD] = "preload",   [WORKLOAD_VERIFY] = "verify",
    [WORKLOAD_TXN_WRITE] = "txn-write", [WORKLOAD_TXN_READ] = "txn-read",
    [WORKLOAD_POLYGLOT] = "polyglot",
};

bool workload_parse(const char *name, enum workload_kind *kind)
{
    for (size_t i = 0; i < sizeof(NAMES) / sizeof(NAMES[0]); i++) {
        if (strcmp(name, NAMES[i]) == 0) {
            *kind = (enum workload_kind)i;
            return true;
        }
    }
    return false;
}

const char *workload_name(enum workload_kind kind)
{
    return NAMES[kind];
}

static uint64_t zipf_draw(const struct zipf *z, struct rng *rng)
{
    return zipf_key(z, zipf_rank(z, rng_uniform(rng)));
}

struct request workload_next(enum workload_kind kind, uint64_t keys, const struct zipf *zipf,
                             struct rng *rng)
{
    switch (kind) {
    case WORKLOAD_READ_HIT:
        return (struct request){REQUEST_READ_HIT, rng_below(rng, keys) + 1};
    case WORKLOAD_READ_ZIPF:
        return (struct request){REQUEST_READ_HIT, zipf_draw(zipf, rng)};
    case WORKLOAD_READ_MISS:
        return (struct request){REQUEST_READ_MISS, rng_below(rng, 1000000000) + 1};
    case WORKLOAD_WRITE:
        return (struct request){REQUEST_WRITE, rng_below(rng, keys) + 1};
    case WORKLOAD_MIXED:
        if (rng_uniform(rng) < 0.1)
            return (struct request){REQUEST_WRITE, zipf_draw(zipf, rng)};
        return (struct request){REQUEST_READ_HIT, zipf_draw(zipf, rng)};
    case WORKLOAD_TXN_WRITE:
        return (struct request){REQUEST_TXN_WRITE, rng_below(rng, TXN_USERS) + 1};
    case WORKLOAD_TXN_READ:
        return (struct request){REQUEST_TXN_READ, rng_below(rng, TXN_USERS) + 1};
    case WORKLOAD_POLYGLOT: {
        double u = rng_uniform(rng);
        if (u < 0.40)
            return (struct request){REQUEST_READ_HIT, rng_below(rng, keys) + 1};
        if (u < 0.70)
            return (struct request){REQUEST_TXN_READ, rng_below(rng, TXN_USERS) + 1};
        if (u < 0.80)
            return (struct request){REQUEST_WRITE, rng_below(rng, keys) + 1};
        if (u < 0.95)
            return (struct request){REQUEST_TXN_WRITE, rng_below(rng, TXN_USERS) + 1};
        return (struct request){REQUEST_SUMMARY, rng_below(rng, TXN_USERS) + 1};
    }
    case WORKLOAD_PING:
    case WORKLOAD_PRELOAD:
    case WORKLOAD_VERIFY:
        break;
    }
    return (struct request){REQUEST_PING, 0};
}

uint64_t workload_sequence_length(enum workload_kind kind, uint64_t keys, uint64_t count)
{
    if (kind == WORKLOAD_PRELOAD)
        return keys;
    if (kind == WORKLOAD_VERIFY)
        return count == 0 || count > keys ? keys : count;
    return 0;
}

bool workload_sequence(enum workload_kind kind, uint64_t keys, uint64_t count, uint64_t i,
                       struct request *req)
{
    uint64_t length = workload_sequence_length(kind, keys, count);
    if (i >= length)
        return false;
    if (kind == WORKLOAD_PRELOAD) {
        *req = (struct request){REQUEST_WRITE, i + 1};
        return true;
    }
    /* Evenly spaced over 1..keys, first and last included when length > 1. */
    uint64_t key = length == 1 ? 1 : 1 + i * (keys - 1) / (length - 1);
    *req = (struct request){REQUEST_READ_HIT, key};
    return true;
}

void value_for_key(uint64_t key, size_t bytes, char *out)
{
    char head[32];
    size_t n = (size_t)snprintf(head, sizeof(head), "bench:%llu=", (unsigned long long)key);
    if (n > bytes)
        n = bytes;
    memcpy(out, head, n);
    memset(out + n, 'v', bytes - n);
    out[bytes] = '\0';
}
