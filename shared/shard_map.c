/*
 * shard_map: the key -> shard function (see shard_map.h). MD5 comes from OpenSSL's libcrypto.
 */
#include "shard_map.h"

#include "xalloc.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum shard_strategy { SHARD_MODULO, SHARD_JUMP, SHARD_RANGE };

struct shard_map {
    enum shard_strategy strategy; /* how keys are placed */
    int count;                    /* N */
    char **bounds;                /* range: the N-1 ascending boundaries */
    size_t *bound_lens;           /* their lengths */
    char *description;            /* "modulo/3" ... */
};

static const char *const strategy_names[] = {"modulo", "jump", "range"};

static void md5(const char *key, size_t len, unsigned char digest[16])
{
    unsigned int n = 0;
    if (!EVP_Digest(key, len, digest, &n, EVP_md5(), NULL) || n != 16)
        abort(); /* only fails when libcrypto cannot allocate: as out-of-memory */
}

int shard_md5_mod(const char *key, size_t len, int n)
{
    unsigned char digest[16];
    md5(key, len, digest);
    /* The digest as a 128-bit big-endian integer, mod n, one byte at a time. */
    unsigned long r = 0;
    for (int i = 0; i < 16; i++)
        r = (r * 256 + digest[i]) % (unsigned long)n;
    return (int)r;
}

uint64_t shard_md5_u64(const char *key, size_t len)
{
    unsigned char digest[16];
    md5(key, len, digest);
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | digest[i];
    return v;
}

/* Lamping & Veach, "A Fast, Minimal Memory, Consistent Hash Algorithm" (2014). The key jumps
 * forward through the buckets; with N+1 buckets it lands on the new one with chance 1/(N+1),
 * and otherwise where it landed with N. */
int shard_jump_hash(uint64_t key, int num_buckets)
{
    int64_t b = -1, j = 0;
    while (j < num_buckets) {
        b = j;
        key = key * 2862933555777941757ULL + 1;
        j = (int64_t)((double)(b + 1) * ((double)(1LL << 31) / (double)((key >> 33) + 1)));
    }
    return (int)b;
}

/* memcmp order, a prefix before its extensions. */
static int compare_bytes(const char *a, size_t alen, const char *b, size_t blen)
{
    int c = memcmp(a, b, alen < blen ? alen : blen);
    if (c != 0)
        return c;
    return alen < blen ? -1 : alen > blen;
}

static int range_lookup(const struct shard_map *map, const char *key, size_t len)
{
    /* The first boundary above the key: binary search over N-1 sorted boundaries. */
    int lo = 0, hi = map->count - 1;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (compare_bytes(key, len, map->bounds[mid], map->bound_lens[mid]) < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

int shard_map_lookup(const struct shard_map *map, const char *key, size_t len)
{
    switch (map->strategy) {
    case SHARD_MODULO:
        return shard_md5_mod(key, len, map->count);
    case SHARD_JUMP:
        return shard_jump_hash(shard_md5_u64(key, len), map->count);
    case SHARD_RANGE:
        return range_lookup(map, key, len);
    }
    return 0;
}

int shard_split_list(const char *text, char **items, int max)
{
    int n = 0;
    const char *p = text;
    for (;;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        while (len > 0 && (*p == ' ' || *p == '\t'))
            p++, len--;
        while (len > 0 && (p[len - 1] == ' ' || p[len - 1] == '\t'))
            len--;
        if (len == 0 || n == max)
            goto fail;
        items[n++] = xstrndup(p, len);
        if (end == NULL)
            return n;
        p = end + 1;
    }
fail:
    while (n > 0) {
        free(items[--n]);
        items[n] = NULL;
    }
    return -1;
}

struct shard_map *shard_map_create(const char *strategy, int num_shards, const char *ranges,
                                   char *err, size_t errlen)
{
    if (num_shards < 1 || num_shards > SHARD_MAX) {
        snprintf(err, errlen, "%d shards: expected 1 to %d", num_shards, SHARD_MAX);
        return NULL;
    }
    int s = -1;
    for (int i = 0; i < 3; i++)
        if (strcmp(strategy, strategy_names[i]) == 0)
            s = i;
    if (s < 0) {
        snprintf(err, errlen, "unknown strategy \"%s\": expected modulo, jump or range", strategy);
        return NULL;
    }
    struct shard_map *map = xcalloc(1, sizeof *map);
    map->strategy = (enum shard_strategy)s;
    map->count = num_shards;
    bool has_ranges = ranges != NULL && ranges[0] != '\0';
    if (map->strategy != SHARD_RANGE) {
        if (has_ranges) {
            snprintf(err, errlen, "range boundaries given for strategy \"%s\"", strategy);
            goto fail;
        }
        size_t len = strlen(strategy) + 16;
        map->description = xmalloc(len);
        snprintf(map->description, len, "%s/%d", strategy, num_shards);
        return map;
    }
    /* range: exactly N-1 boundaries, strictly ascending. */
    map->bounds = xcalloc((size_t)num_shards, sizeof *map->bounds);
    map->bound_lens = xcalloc((size_t)num_shards, sizeof *map->bound_lens);
    int n = 0;
    if (has_ranges && (n = shard_split_list(ranges, map->bounds, num_shards - 1)) < 0) {
        snprintf(err, errlen, "range boundaries \"%s\": expected %d non-empty items", ranges,
                 num_shards - 1);
        goto fail;
    }
    if (n != num_shards - 1) {
        snprintf(err, errlen, "%d shards by range need %d boundaries, got %d", num_shards,
                 num_shards - 1, n);
        goto fail;
    }
    for (int i = 0; i < n; i++) {
        map->bound_lens[i] = strlen(map->bounds[i]);
        if (i > 0 && compare_bytes(map->bounds[i - 1], map->bound_lens[i - 1], map->bounds[i],
                                   map->bound_lens[i]) >= 0) {
            snprintf(err, errlen, "range boundaries must ascend: \"%s\" then \"%s\"",
                     map->bounds[i - 1], map->bounds[i]);
            goto fail;
        }
    }
    size_t len = 32;
    for (int i = 0; i < n; i++)
        len += map->bound_lens[i] + 1;
    map->description = xmalloc(len);
    int at = snprintf(map->description, len, "range/%d/", num_shards);
    for (int i = 0; i < n; i++)
        at +=
            snprintf(map->description + at, len - (size_t)at, "%s%s", i ? "," : "", map->bounds[i]);
    return map;
fail:
    shard_map_free(map);
    return NULL;
}

void shard_map_free(struct shard_map *map)
{
    if (map == NULL)
        return;
    for (int i = 0; map->bounds != NULL && i < map->count; i++)
        free(map->bounds[i]);
    free(map->bounds);
    free(map->bound_lens);
    free(map->description);
    free(map);
}

int shard_map_count(const struct shard_map *map)
{
    return map->count;
}

const char *shard_map_strategy(const struct shard_map *map)
{
    return strategy_names[map->strategy];
}

const char *shard_map_describe(const struct shard_map *map)
{
    return map->description;
}
