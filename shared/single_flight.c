/*
 * single_flight: coalescing concurrent misses (see single_flight.h). A small chained hash
 * table from key to the flights for it: at most one open flight per key (the one newcomers
 * join), plus the forgotten ones whose leaders have not answered yet.
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
    void *leader;        /* the request running the query */
    bool open;           /* newcomers may join (false once forgotten) */
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

/* The link to the flight for key that is open (leader NULL) or led by leader; or to the end. */
static struct flight **find(struct single_flight *sf, const char *key, size_t len, void *leader)
{
    struct flight **link = &sf->buckets[bucket_of(key, len)];
    for (; *link != NULL; link = &(*link)->next) {
        struct flight *f = *link;
        if (f->key_len == len && memcmp(f->key, key, len) == 0 &&
            (leader != NULL ? f->leader == leader : f->open))
            break;
    }
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
    struct flight **link = find(sf, key, key_len, NULL);
    if (*link == NULL) {
        struct flight *f = xcalloc(1, sizeof *f);
        f->key = xstrndup(key, key_len);
        f->key_len = key_len;
        f->leader = waiter;
        f->open = true;
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

void single_flight_forget(struct single_flight *sf, const char *key, size_t key_len)
{
    struct flight *f = *find(sf, key, key_len, NULL);
    if (f != NULL)
        f->open = false;
}

void **single_flight_finish(struct single_flight *sf, const char *key, size_t key_len, void *leader,
                            size_t *count)
{
    struct flight **link = find(sf, key, key_len, leader);
    struct flight *f = *link;
    if (f == NULL) { /* the leader went alone (it never joined, or its flight is over) */
        void **alone = xmalloc(sizeof *alone);
        alone[0] = leader;
        *count = 1;
        return alone;
    }
    *link = f->next;
    void **flows = xrealloc(f->waiters, (f->count + 1) * sizeof *flows);
    memmove(flows + 1, flows, f->count * sizeof *flows);
    flows[0] = leader;
    *count = f->count + 1;
    free(f->key);
    free(f);
    return flows;
}
