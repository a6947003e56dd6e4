/*
 * l1_cache: bounded in-process cache with SIEVE eviction (see l1_cache.h).
 *
 * A chained hash table finds entries; a doubly linked FIFO (newest at head) orders them for the
 * SIEVE hand, which walks from the tail (oldest) towards the head and wraps around.
 */
#include "l1_cache.h"

#include "xalloc.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct entry {
    struct entry *hash_next;     /* bucket chain */
    struct entry *newer, *older; /* FIFO neighbours */
    bool visited;                /* hit since the hand last passed */
    long long expires_ms;        /* monotonic expiry */
    size_t key_len, len;         /* sizes */
    char *key;                   /* owned */
    char *data;                  /* owned */
};

struct l1_cache {
    struct entry **buckets;                    /* hash table */
    size_t nbuckets;                           /* a power of two */
    struct entry *head, *tail;                 /* newest, oldest */
    struct entry *hand;                        /* SIEVE's hand, or NULL (start from the tail) */
    size_t entries, bytes;                     /* held */
    size_t max_entries, max_bytes;             /* bounds */
    long long ttl_ms;                          /* lifetime of an entry */
    unsigned long long evictions, expirations; /* counts */
};

static size_t hash(const char *key, size_t len)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)key[i]) * 1099511628211ULL;
    return (size_t)h;
}

static struct entry **slot(struct l1_cache *c, const char *key, size_t len)
{
    struct entry **link = &c->buckets[hash(key, len) & (c->nbuckets - 1)];
    while (*link && ((*link)->key_len != len || memcmp((*link)->key, key, len) != 0))
        link = &(*link)->hash_next;
    return link;
}

struct l1_cache *l1_cache_create(size_t max_entries, size_t max_bytes, long long ttl_ms)
{
    struct l1_cache *c = xcalloc(1, sizeof *c);
    c->nbuckets = 16;
    while (c->nbuckets < max_entries * 2 && c->nbuckets < ((size_t)1 << 24))
        c->nbuckets *= 2;
    c->buckets = xcalloc(c->nbuckets, sizeof *c->buckets);
    c->max_entries = max_entries ? max_entries : 1;
    c->max_bytes = max_bytes;
    c->ttl_ms = ttl_ms;
    return c;
}

/* Unlinks and frees the entry that *link points to. */
static void drop(struct l1_cache *c, struct entry **link)
{
    struct entry *e = *link;
    *link = e->hash_next;
    if (c->hand == e)
        c->hand = e->newer;
    if (e->newer)
        e->newer->older = e->older;
    else
        c->head = e->older;
    if (e->older)
        e->older->newer = e->newer;
    else
        c->tail = e->newer;
    c->entries--;
    c->bytes -= e->key_len + e->len;
    free(e->key);
    free(e->data);
    free(e);
}

/* SIEVE: evicts the oldest entry not visited since the hand last passed it. */
static void evict_one(struct l1_cache *c)
{
    struct entry *e = c->hand ? c->hand : c->tail;
    while (e->visited) {
        e->visited = false;
        e = e->newer ? e->newer : c->tail; /* wrap around */
    }
    c->hand = e->newer;
    c->evictions++;
    drop(c, slot(c, e->key, e->key_len));
}

bool l1_cache_get(struct l1_cache *c, const char *key, size_t key_len, long long now_ms,
                  const char **data, size_t *len)
{
    struct entry **link = slot(c, key, key_len);
    struct entry *e = *link;
    if (e == NULL)
        return false;
    if (now_ms >= e->expires_ms) {
        c->expirations++;
        drop(c, link);
        return false;
    }
    e->visited = true;
    *data = e->data;
    *len = e->len;
    return true;
}

void l1_cache_put(struct l1_cache *c, const char *key, size_t key_len, const char *data, size_t len,
                  long long now_ms)
{
    l1_cache_remove(c, key, key_len);
    if (key_len + len > c->max_bytes)
        return;
    while (c->entries >= c->max_entries || c->bytes + key_len + len > c->max_bytes)
        evict_one(c);
    struct entry *e = xcalloc(1, sizeof *e);
    e->key = xstrndup(key, key_len);
    e->key_len = key_len;
    e->data = xmalloc(len + 1);
    memcpy(e->data, data, len);
    e->data[len] = '\0';
    e->len = len;
    e->expires_ms = now_ms + c->ttl_ms;
    struct entry **link = slot(c, key, key_len);
    e->hash_next = *link;
    *link = e;
    e->older = c->head; /* newest at the head */
    if (c->head)
        c->head->newer = e;
    else
        c->tail = e;
    c->head = e;
    c->entries++;
    c->bytes += key_len + len;
}

void l1_cache_remove(struct l1_cache *c, const char *key, size_t key_len)
{
    struct entry **link = slot(c, key, key_len);
    if (*link)
        drop(c, link);
}

void l1_cache_clear(struct l1_cache *c)
{
    while (c->tail)
        drop(c, slot(c, c->tail->key, c->tail->key_len));
}

void l1_cache_free(struct l1_cache *c)
{
    if (c == NULL)
        return;
    l1_cache_clear(c);
    free(c->buckets);
    free(c);
}

void l1_cache_get_stats(const struct l1_cache *c, struct l1_cache_stats *out)
{
    *out = (struct l1_cache_stats){c->entries,   c->bytes,     c->max_entries,
                                   c->max_bytes, c->evictions, c->expirations};
}

void l1_cache_stats_into(const struct l1_cache *c, json_t *stats)
{
    json_object_set_new(stats, "l1_cache_size", json_integer((json_int_t)c->entries));
    json_object_set_new(stats, "l1_cache_max_size", json_integer((json_int_t)c->max_entries));
    json_object_set_new(stats, "l1_cache_bytes", json_integer((json_int_t)c->bytes));
    json_object_set_new(stats, "l1_cache_max_bytes", json_integer((json_int_t)c->max_bytes));
    json_object_set_new(stats, "l1_cache_evictions", json_integer((json_int_t)c->evictions));
}
