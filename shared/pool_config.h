/*
 * pool_config: the PostgreSQL and pool settings every pooled layer shares (layer 1 on), as
 * settings sets (config.h), so that each layer lists them in one line and its own settings
 * stand out: `POOL_CONFIG_SET(&layer.db, "postgresql://...")`. Layers whose pools get their
 * URLs elsewhere (the primary and replicas of layer 3, the shards of layer 4) list
 * POOL_EACH_CONFIG_SET instead, which has no DATABASE_URL: --help never offers a setting the
 * layer ignores. Layer 0 (no pool) lists PG_CONFIG_SET.
 */
#ifndef LAYERS_POOL_CONFIG_H
#define LAYERS_POOL_CONFIG_H

#include "config.h"
#include "pool.h"

struct pool_config {
    char *database_url;        /* DATABASE_URL (NULL in POOL_EACH_CONFIG_SET) */
    long connect_timeout_ms;   /* DB_CONNECT_TIMEOUT_MS */
    long query_timeout_ms;     /* DB_QUERY_TIMEOUT_MS */
    long min_size, max_size;   /* DB_POOL_MIN_SIZE, DB_POOL_MAX_SIZE */
    long acquire_timeout_ms;   /* DB_POOL_ACQUIRE_TIMEOUT_MS */
    long max_waiting;          /* DB_POOL_MAX_WAITING */
    long max_lifetime_s;       /* DB_POOL_MAX_LIFETIME_S */
    long idle_timeout_s;       /* DB_POOL_IDLE_TIMEOUT_S */
    char *pool_mode;           /* DB_POOL_MODE: "exclusive" or "pipeline" (pool.h) */
    long pipeline_depth;       /* DB_PIPELINE_DEPTH: calls in flight per connection (pipeline) */
    char *pipeline_sync;       /* DB_PIPELINE_SYNC: "call" or "turn" (pipeline, pg_pipeline.h) */
    struct resolver *resolver; /* not a setting: the program's (process_resolver), or NULL */
    const char *options;       /* not a setting: more server settings per session (pgconn.h) */
};

/* "exclusive", "pipeline", NULL: the values of DB_POOL_MODE (a CONFIG_ENUM row). */
extern const char *const pool_mode_names[];

/* "call", "turn", NULL: the values of DB_PIPELINE_SYNC. */
extern const char *const pipeline_sync_names[];

/* DATABASE_URL, into a `char **`; default_url is the local stack's. */
#define DATABASE_URL_ROW(target, default_url)                                                      \
    {                                                                                              \
        "DATABASE_URL", CONFIG_URL, (default_url), 0, 0, "PostgreSQL connection URL", (target),    \
            NULL                                                                                   \
    }

/* The deadlines of one PostgreSQL connection, into two `long *`. */
#define PG_TIMEOUT_ROWS(connect_target, query_target)                                              \
    {"DB_CONNECT_TIMEOUT_MS", CONFIG_INT, "2000", 100, 60000, "deadline for opening a connection", \
     (connect_target),        NULL},                                                               \
    {                                                                                              \
        "DB_QUERY_TIMEOUT_MS", CONFIG_INT, "5000", 100, 600000,                                    \
            "statement_timeout; the client gives up 1 s later", (query_target), NULL               \
    }

/* The pool's own rows, for a struct pool_config *c. */
#define POOL_SIZE_ROWS(c)                                                                          \
    {"DB_POOL_MIN_SIZE", CONFIG_INT, "2", 0, 1000, "connections kept open when idle",              \
     &(c)->min_size,     NULL},                                                                    \
        {"DB_POOL_MAX_SIZE", CONFIG_INT, "10", 1, 1000, "most connections the pool opens",         \
         &(c)->max_size,     NULL},                                                                \
        {"DB_POOL_ACQUIRE_TIMEOUT_MS",                                                             \
         CONFIG_INT,                                                                               \
         "2000",                                                                                   \
         1,                                                                                        \
         600000,                                                                                   \
         "longest wait for a free connection (then 503)",                                          \
         &(c)->acquire_timeout_ms,                                                                 \
         NULL},                                                                                    \
        {"DB_POOL_MAX_WAITING",                                                                    \
         CONFIG_INT,                                                                               \
         "1000",                                                                                   \
         1,                                                                                        \
         1000000,                                                                                  \
         "requests allowed to wait for a connection (more get 503 at once)",                       \
         &(c)->max_waiting,                                                                        \
         NULL},                                                                                    \
        {"DB_POOL_MAX_LIFETIME_S",                                                                 \
         CONFIG_INT,                                                                               \
         "1800",                                                                                   \
         1,                                                                                        \
         86400,                                                                                    \
         "connections older than this are replaced",                                               \
         &(c)->max_lifetime_s,                                                                     \
         NULL},                                                                                    \
        {"DB_POOL_IDLE_TIMEOUT_S",                                                                 \
         CONFIG_INT,                                                                               \
         "300",                                                                                    \
         1,                                                                                        \
         86400,                                                                                    \
         "idle connections above the minimum are closed after this",                               \
         &(c)->idle_timeout_s,                                                                     \
         NULL},                                                                                    \
        {"DB_POOL_MODE",                                                                           \
         CONFIG_ENUM,                                                                              \
         "exclusive",                                                                              \
         0,                                                                                        \
         0,                                                                                        \
         "exclusive: a query has a connection to itself; pipeline: queries share connections",     \
         &(c)->pool_mode,                                                                          \
         pool_mode_names},                                                                         \
        {"DB_PIPELINE_DEPTH",                                                                      \
         CONFIG_INT,                                                                               \
         "32",                                                                                     \
         2,                                                                                        \
         1000,                                                                                     \
         "pipeline mode: most queries in flight on one connection",                                \
         &(c)->pipeline_depth,                                                                     \
         NULL},                                                                                    \
    {                                                                                              \
        "DB_PIPELINE_SYNC", CONFIG_ENUM, "turn", 0, 0,                                             \
            "pipeline mode: a sync (a transaction) per query (call) or per loop turn's queries "   \
            "(turn)",                                                                              \
            &(c)->pipeline_sync, pipeline_sync_names                                               \
    }

/* Every row of one pooled database, for a struct pool_config *c. */
#define POOL_CONFIG_ROWS(c, default_url)                                                           \
    DATABASE_URL_ROW(&(c)->database_url, default_url),                                             \
        PG_TIMEOUT_ROWS(&(c)->connect_timeout_ms, &(c)->query_timeout_ms), POOL_SIZE_ROWS(c)

/* The sets a layer lists (config.h): one pooled database ... */
#define POOL_CONFIG_SET(c, default_url)                                                            \
    CONFIG_ROWS_SET("PostgreSQL pool", POOL_CONFIG_ROWS(c, default_url))
/* ... a pool per database named by other settings (replicas, shards), the same rows each ... */
#define POOL_EACH_CONFIG_SET(c)                                                                    \
    CONFIG_ROWS_SET("PostgreSQL pools (the same settings for each)",                               \
                    PG_TIMEOUT_ROWS(&(c)->connect_timeout_ms, &(c)->query_timeout_ms),             \
                    POOL_SIZE_ROWS(c))
/* ... or one connection at a time, no pool (layer 0). */
#define PG_CONFIG_SET(url_target, connect_target, query_target, default_url)                       \
    CONFIG_ROWS_SET("PostgreSQL", DATABASE_URL_ROW(url_target, default_url),                       \
                    PG_TIMEOUT_ROWS(connect_target, query_target))

/* The pgconn settings for these values (pooled: statements are prepared). */
struct pgconn_settings pool_config_pg(const struct pool_config *c, const char *application);

/* Whether DB_POOL_MODE is pipeline. */
bool pool_config_pipelined(const struct pool_config *c);

/* Checks the values together (min <= max); false with a logged message. */
bool pool_config_check(const struct pool_config *c) __attribute__((warn_unused_result));

/* Creates the pool these values describe. */
struct pool *pool_config_create(const struct pool_config *c, struct event_base *base,
                                const char *application, struct metrics *metrics);

#endif
