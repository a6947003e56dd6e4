/*
 * shard_set: a sharded database as a server sees it (layer 4 on): N PostgreSQL databases, one
 * connection pool each, and the shard map that says which one holds a key.
 *
 * The list of databases is one setting (SHARD_URLS, any N), and the map's strategy another
 * (SHARD_STRATEGY, shard_map.h), so a change of N is a visible change of configuration, never
 * a silent remap. While keys are being moved to a new layout (resharding), the set also knows
 * the previous layout (SHARD_PREVIOUS_URLS and its strategy): the caller reads a key from its
 * shard in the current layout first and, when it is not there yet, from its shard in the
 * previous one; it writes only to the current one. A database that appears in both layouts
 * has one pool.
 *
 * Each shard fails alone: its pool backs off and reconnects by itself, and requests for other
 * shards never wait for it. Work that needs every shard (counting rows) is a fan-out: the same
 * query on all shards at once, each with its own deadline, and an answer that says which shards
 * did not reply rather than counting them as empty.
 */
#ifndef LAYERS_SHARD_SET_H
#define LAYERS_SHARD_SET_H

#include "config.h"
#include "pgconn.h"
#include "pool_config.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

struct evbuffer;
struct event_base;
struct metrics;
struct shard_map;
struct shard_set;

struct shard_settings {
    const char *urls;              /* SHARD_URLS: comma-separated PostgreSQL URLs, shard 0 first */
    const char *strategy;          /* SHARD_STRATEGY: modulo, jump or range */
    const char *ranges;            /* SHARD_RANGES: N-1 boundaries (range only) */
    const char *previous_urls;     /* SHARD_PREVIOUS_URLS: "" unless resharding */
    const char *previous_strategy; /* SHARD_PREVIOUS_STRATEGY */
    const char *previous_ranges;   /* SHARD_PREVIOUS_RANGES */
};

enum shard_layout {
    SHARD_CURRENT,  /* where keys belong (and are written) */
    SHARD_PREVIOUS, /* where keys not moved yet still are, while resharding */
};

/*
 * Parses the settings and creates one pool per distinct database (each with `db`'s pool
 * settings). NULL with a message in err when a setting is invalid.
 */
struct shard_set *shard_set_create(struct event_base *base, const struct shard_settings *settings,
                                   const struct pool_config *db, const char *application,
                                   struct metrics *metrics, char *err, size_t errlen);
/* Closes every pool. NULL is a no-op. */
void shard_set_free(struct shard_set *set);

/* N, in the current layout. */
int shard_set_count(const struct shard_set *set);
const struct shard_map *shard_set_map(const struct shard_set *set);
/* The previous layout's map, or NULL when not resharding. */
const struct shard_map *shard_set_previous_map(const struct shard_set *set);

/* The key's shard in the current layout. */
int shard_set_lookup(const struct shard_set *set, const char *key, size_t len);

/* While resharding: the key's shard in the previous layout when that is another database (the
 * key may still be there), else -1. */
int shard_set_previous_lookup(const struct shard_set *set, const char *key, size_t len);

/* Whether shard `shard` of the current layout is the database that was shard `previous_shard`
 * of the previous layout (false when not resharding or out of range). */
bool shard_set_was_previous_shard(const struct shard_set *set, int shard, int previous_shard);

/* Runs one query on shard `shard` of `layout` through its pool (pool_query's contract). */
void shard_set_query(struct shard_set *set, enum shard_layout layout, int shard,
                     const struct pg_call *call);

/* Creates the schema on every database (retrying each until it answers); calls done once, when
 * all have it. */
void shard_set_ensure_schema(struct shard_set *set, const char *sql, void (*done)(void *arg),
                             void *arg);

/* Pool upkeep for every database (the maintenance timer). */
void shard_set_maintain(struct shard_set *set);

/* One shard's answer to a fan-out. */
struct shard_answer {
    enum pg_status status; /* PG_OK, or why it failed */
    bool timed_out;        /* no answer within the fan-out's deadline */
    char *value;           /* first column of the first row (PG_OK), or NULL */
};

/* Called exactly once per fan-out with one answer per shard of the current layout, possibly
 * before shard_set_fanout returns. The answers are valid during the call. */
typedef void (*shard_fanout_cb)(const struct shard_answer *answers, int count, void *arg);

/* Runs `sql` (no parameters) on every shard of the current layout at once; a shard that has not
 * answered after timeout_ms is reported as timed out (its query finishes in the background). */
void shard_set_fanout(struct shard_set *set, const char *sql, long timeout_ms, shard_fanout_cb cb,
                      void *arg);

/* {"shard_0": open connections, ...} for the current layout. */
json_t *shard_set_pool_sizes_json(const struct shard_set *set);

/* A metrics_gauge_fn (arg: the set): per-shard pool size, queries and failures. */
void shard_set_render_gauges(struct evbuffer *out, void *set);

/* SHARD_STRATEGY's values (shard_map.h). */
#define SHARD_STRATEGY_CHOICES ((const char *const[]){"modulo", "jump", "range", NULL})

/* Its settings, as a set for a program's table (config.h): the shard layouts, into a struct
 * shard_settings *s: the current one and, while
 * resharding, the previous one. A default of NULL makes the setting required (l4-reshard). */
#define SHARD_CONFIG_SET(s, default_urls, default_previous_urls)                                   \
    CONFIG_ROWS_SET(                                                                               \
        "shards",                                                                                  \
        {"SHARD_URLS", CONFIG_URL, (default_urls), 0, 0,                                           \
         "comma-separated PostgreSQL URLs, one per shard, shard 0 first", &(s)->urls, NULL},       \
        {"SHARD_STRATEGY", CONFIG_ENUM, "modulo", 0, 0,                                            \
         "modulo (MD5 mod N), jump (jump consistent hash) or range", &(s)->strategy,               \
         SHARD_STRATEGY_CHOICES},                                                                  \
        {"SHARD_RANGES", CONFIG_STRING, "", 0, 0,                                                  \
         "range: the N-1 ascending boundaries, comma-separated (\"g,n\")", &(s)->ranges, NULL},    \
        {"SHARD_PREVIOUS_URLS", CONFIG_URL, (default_previous_urls), 0, 0,                         \
         "while resharding: the previous layout's URLs (reads fall back to it)",                   \
         &(s)->previous_urls, NULL},                                                               \
        {"SHARD_PREVIOUS_STRATEGY", CONFIG_ENUM, "modulo", 0, 0,                                   \
         "while resharding: the previous layout's strategy", &(s)->previous_strategy,              \
         SHARD_STRATEGY_CHOICES},                                                                  \
        {"SHARD_PREVIOUS_RANGES", CONFIG_STRING, "", 0, 0,                                         \
         "while resharding: the previous layout's range boundaries", &(s)->previous_ranges, NULL})

#endif
