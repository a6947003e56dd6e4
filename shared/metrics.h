/*
 * metrics: Prometheus counters and request-latency histograms for /metrics.
 *
 * Every counter of every module is listed once, in METRIC_COUNTERS below (an X-macro, as in
 * twemproxy's nc_stats.h): the list yields the enum, the metric names, the help text and the
 * exposition output, so adding a counter is one line. A server shows only the modules it uses.
 * Request latency is a histogram per route template (never a raw path) and status, so the label
 * set is bounded by the route table. Counters are atomic: worker threads of later layers may
 * count too. Gauges (pool size, cache size...) come from callbacks that print their own lines.
 */
#ifndef LAYERS_METRICS_H
#define LAYERS_METRICS_H

#include <stdbool.h>
#include <stdint.h>

struct evbuffer;

enum metric_module {
    METRIC_MODULE_PG = 1 << 0,      /* the PostgreSQL connection */
    METRIC_MODULE_POOL = 1 << 1,    /* the connection pool */
    METRIC_MODULE_REDIS = 1 << 2,   /* the Redis client */
    METRIC_MODULE_CACHE = 1 << 3,   /* cache-aside */
    METRIC_MODULE_SHARD = 1 << 4,   /* sharding */
    METRIC_MODULE_REPLICA = 1 << 5, /* read replicas */
};

/* X(ID, module, name, help) */
#define METRIC_COUNTERS(X)                                                                         \
    X(PG_CONNECTS, METRIC_MODULE_PG, "pg_connects_total", "PostgreSQL connections established")    \
    X(PG_CONNECT_FAILURES, METRIC_MODULE_PG, "pg_connect_failures_total",                          \
      "PostgreSQL connection attempts that failed or timed out")                                   \
    X(PG_QUERIES, METRIC_MODULE_PG, "pg_queries_total", "Queries sent to PostgreSQL")              \
    X(PG_QUERY_ERRORS, METRIC_MODULE_PG, "pg_query_errors_total",                                  \
      "Queries that failed (error, timeout or broken connection)")                                 \
    X(PG_QUERY_TIMEOUTS, METRIC_MODULE_PG, "pg_query_timeouts_total",                              \
      "Queries abandoned at the client-side deadline")                                             \
    X(POOL_ACQUIRES, METRIC_MODULE_POOL, "pool_acquires_total",                                    \
      "Connections handed out by the pool")                                                        \
    X(POOL_WAITS, METRIC_MODULE_POOL, "pool_waits_total",                                          \
      "Acquisitions that had to queue for a connection")                                           \
    X(POOL_TIMEOUTS, METRIC_MODULE_POOL, "pool_acquire_timeouts_total",                            \
      "Acquisitions that gave up after the acquire timeout")                                       \
    X(POOL_REJECTED, METRIC_MODULE_POOL, "pool_rejected_total",                                    \
      "Acquisitions refused because the wait queue was full")                                      \
    X(POOL_UNAVAILABLE, METRIC_MODULE_POOL, "pool_unavailable_total",                              \
      "Acquisitions failed because the database could not be reached")                             \
    X(POOL_BROKEN, METRIC_MODULE_POOL, "pool_connections_broken_total",                            \
      "Connections discarded because they broke")                                                  \
    X(POOL_RETIRED, METRIC_MODULE_POOL, "pool_connections_retired_total",                          \
      "Connections closed for age or idleness")                                                    \
    X(REDIS_COMMANDS, METRIC_MODULE_REDIS, "redis_commands_total", "Commands sent to Redis")       \
    X(REDIS_FAILURES, METRIC_MODULE_REDIS, "redis_failures_total",                                 \
      "Redis commands that failed (unavailable, timed out, disconnected)")                         \
    X(CACHE_HITS, METRIC_MODULE_CACHE, "cache_hits_total", "Reads answered from the cache")        \
    X(CACHE_MISSES, METRIC_MODULE_CACHE, "cache_misses_total", "Reads that went to the database")  \
    X(CACHE_COALESCED, METRIC_MODULE_CACHE, "cache_coalesced_total",                               \
      "Misses that joined a database read already in flight (single-flight)")                      \
    X(CACHE_FILLS_SKIPPED, METRIC_MODULE_CACHE, "cache_fills_skipped_total",                       \
      "Cache fills refused because a write happened meanwhile (stale-set race)")                   \
    X(CACHE_INVALIDATIONS_OWED, METRIC_MODULE_CACHE, "cache_invalidations_owed_total",             \
      "Invalidations that could not be sent (Redis unavailable) and are owed until it answers")    \
    X(CACHE_INVALIDATIONS_DELIVERED_LATE, METRIC_MODULE_CACHE,                                     \
      "cache_invalidations_delivered_late_total",                                                  \
      "Owed invalidations sent once Redis answered again")                                         \
    X(L1_HITS, METRIC_MODULE_CACHE, "l1_cache_hits_total",                                         \
      "Reads answered from the in-process tier")                                                   \
    X(L1_MISSES, METRIC_MODULE_CACHE, "l1_cache_misses_total",                                     \
      "Reads the in-process tier could not answer")                                                \
    X(L1_INVALIDATIONS, METRIC_MODULE_CACHE, "l1_invalidations_total",                             \
      "Invalidation messages applied to the in-process tier")                                      \
    X(SHARD_PREVIOUS_READS, METRIC_MODULE_SHARD, "shard_previous_layout_reads_total",              \
      "Reads answered from the previous layout while resharding (key not moved yet)")              \
    X(SHARD_FANOUT_TIMEOUTS, METRIC_MODULE_SHARD, "shard_fanout_timeouts_total",                   \
      "Shards that did not answer a cross-shard query within its deadline")                        \
    X(REPLICA_READS, METRIC_MODULE_REPLICA, "replica_reads_total", "Reads answered by a replica")  \
    X(REPLICA_PRIMARY_READS, METRIC_MODULE_REPLICA, "replica_primary_reads_total",                 \
      "Reads answered by the primary (no usable replica, or none had replayed the write to see)")  \
    X(REPLICA_RETRIES, METRIC_MODULE_REPLICA, "replica_read_retries_total",                        \
      "Reads sent to another copy after a replica failed them")

enum metric_counter {
#define METRIC_ENUM(id, module, name, help) METRIC_##id,
    METRIC_COUNTERS(METRIC_ENUM)
#undef METRIC_ENUM
        METRIC_COUNTER_COUNT
};

struct metrics;

/* Appends gauge lines (with their # HELP and # TYPE) to out. */
typedef void (*metrics_gauge_fn)(struct evbuffer *out, void *arg);

struct metrics *metrics_create(unsigned modules);
void metrics_free(struct metrics *m);

/* Safe with m == NULL (unit tests run modules without metrics). Thread-safe. */
void metrics_add(struct metrics *m, enum metric_counter counter, uint64_t amount);
static inline void metrics_inc(struct metrics *m, enum metric_counter counter)
{
    metrics_add(m, counter, 1);
}

/* Registers a route label ("GET /read/{key}") and returns its index for metrics_observe. */
int metrics_route_register(struct metrics *m, const char *method, const char *route);

/* Records one answered request. route is an index from metrics_route_register or -1 (no route). */
void metrics_observe(struct metrics *m, int route, int status, double seconds);

/* Adds a gauge source printed after the counters (at most a few per server). */
void metrics_add_gauges(struct metrics *m, metrics_gauge_fn fn, void *arg);

/* Writes the whole exposition (text format 0.0.4). */
void metrics_render(struct metrics *m, struct evbuffer *out);

uint64_t metrics_get(const struct metrics *m, enum metric_counter counter);

#endif
