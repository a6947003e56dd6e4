/*
 * single_flight: coalescing concurrent misses (see single_flight.h). A small chained hash
 * table from key to the list of waiting requests.
 */
#include "single_flight.h"

#include "xalloc.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define BUCKETS 1024

struct flight {
    struct flight *next; /* bucket chain */
    char *key;           /* owned copy */
    size_t key_len;      /* its length */
    void **waiters;      /* joined requests */
    size_t count, cap;   /* fill and capacity of waiters */
};

struct single_flight {
    struct flight *buckets[BUCKETS]; /* chains by key hash */
};

static size_t bucket_of(const char *key, size_t len)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)key[i]) * 1099511628211ULL;
    return (size_t)(h % BUCKETS);
}

static struct flight **find(struct single_flight *sf, const char *key, size_t len)
{
    struct flight **link = &sf->buckets[bucket_of(key, len)];
    while (*link && ((*link)->key_len != len || memcmp((*link)->key, key, len) != 0))
        link = &(*link)->next;
    return link;
}

struct single_flight *single_flight_create(void)
{
    return xcalloc(1, sizeof(struct single_flight));
}

void single_flight_free(struct single_flight *sf)
{
    if (sf == NULL)
        return;
    for (size_t b = 0; b < BUCKETS; b++) {
        while (sf->buckets[b]) {
            struct flight *f = sf->buckets[b];
            sf->buckets[b] = f->next;
            free(f->key);
            free(f->waiters);
            free(f);
        }
    }
    free(sf);
}

bool single_flight_join(struct single_flight *sf, const char *key, size_t key_len, void *waiter)
{
    struct flight **link = find(sf, key, key_len);
    if (*link == NULL) {
        struct flight *f = xcalloc(1, sizeof *f);
        f->key = xstrndup(key, key_len);
        f->key_len = key_len;
        *link = f;
        return true;
    }
    struct flight *f = *link;
    if (f->count == f->cap) {
        f->cap = f->cap ? f->cap * 2 : 4;
        f->waiters = xrealloc(f->waiters, f->cap * sizeof *f->waiters);
    }
    f->waiters[f->count++] = waiter;
    return false;
}

void **single_flight_finish(struct single_flight *sf, const char *key, size_t key_len,
                            size_t *count)
{
    struct flight **link = find(sf, key, key_len);
    struct flight *f = *link;
    *count = 0;
    if (f == NULL)
        return NULL;
    *link = f->next;
    void **waiters = f->waiters;
    *count = f->count;
    free(f->key);
    free(f);
    return waiters;
}
