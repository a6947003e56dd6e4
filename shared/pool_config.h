/*
 * pool_config: the PostgreSQL and pool settings every pooled layer shares (layer 1 on), as
 * configuration rows, so that each layer's table lists them in one line and its own settings
 * stand out: `POOL_CONFIG_ROWS(&layer.db, 15410)`.
 */
#ifndef LAYERS_POOL_CONFIG_H
#define LAYERS_POOL_CONFIG_H

#include "config.h"
#include "pool.h"

struct pool_config {
    char *database_url;      /* DATABASE_URL */
    long connect_timeout_ms; /* DB_CONNECT_TIMEOUT_MS */
    long query_timeout_ms;   /* DB_QUERY_TIMEOUT_MS */
    long min_size, max_size; /* DB_POOL_MIN_SIZE, DB_POOL_MAX_SIZE */
    long acquire_timeout_ms; /* DB_POOL_ACQUIRE_TIMEOUT_MS */
    long max_waiting;        /* DB_POOL_MAX_WAITING */
    long max_lifetime_s;     /* DB_POOL_MAX_LIFETIME_S */
    long idle_timeout_s;     /* DB_POOL_IDLE_TIMEOUT_S */
};

/* The rows, for a struct pool_config *c; default_url is the local stack's. */
#define POOL_CONFIG_ROWS(c, default_url)                                                           \
    {"DATABASE_URL",    CONFIG_URL, default_url, 0, 0, "PostgreSQL connection URL",                \
     &(c)->database_url},                                                                          \
        {"DB_CONNECT_TIMEOUT_MS",                                                                  \
         CONFIG_INT,                                                                               \
         "2000",                                                                                   \
         100,                                                                                      \
         60000,                                                                                    \
         "deadline for opening a connection",                                                      \
         &(c)->connect_timeout_ms},                                                                \
        {"DB_QUERY_TIMEOUT_MS",                                                                    \
         CONFIG_INT,                                                                               \
         "5000",                                                                                   \
         100,                                                                                      \
         600000,                                                                                   \
         "statement_timeout; the client gives up 1 s later",                                       \
         &(c)->query_timeout_ms},                                                                  \
        {"DB_POOL_MIN_SIZE", CONFIG_INT, "2", 0, 1000, "connections kept open when idle",          \
         &(c)->min_size},                                                                          \
        {"DB_POOL_MAX_SIZE", CONFIG_INT, "10", 1, 1000, "most connections the pool opens",         \
         &(c)->max_size},                                                                          \
        {"DB_POOL_ACQUIRE_TIMEOUT_MS",                                                             \
         CONFIG_INT,                                                                               \
         "2000",                                                                                   \
         1,                                                                                        \
         600000,                                                                                   \
         "longest wait for a free connection (then 503)",                                          \
         &(c)->acquire_timeout_ms},                                                                \
        {"DB_POOL_MAX_WAITING",                                                                    \
         CONFIG_INT,                                                                               \
         "1000",                                                                                   \
         1,                                                                                        \
         1000000,                                                                                  \
         "requests allowed to wait for a connection (more get 503 at once)",                       \
         &(c)->max_waiting},                                                                       \
        {"DB_POOL_MAX_LIFETIME_S",                                                                 \
         CONFIG_INT,                                                                               \
         "1800",                                                                                   \
         1,                                                                                        \
         86400,                                                                                    \
         "connections older than this are replaced",                                               \
         &(c)->max_lifetime_s},                                                                    \
    {                                                                                              \
        "DB_POOL_IDLE_TIMEOUT_S", CONFIG_INT, "300", 1, 86400,                                     \
            "idle connections above the minimum are closed after this", &(c)->idle_timeout_s       \
    }

/* The pgconn settings for these values (pooled: statements are prepared). */
struct pgconn_settings pool_config_pg(const struct pool_config *c, const char *application);

/* Checks the values together (min <= max); false with a logged message. */
bool pool_config_check(const struct pool_config *c) __attribute__((warn_unused_result));

/* Creates the pool these values describe. */
struct pool *pool_config_create(const struct pool_config *c, struct event_base *base,
                                const char *application, struct metrics *metrics);

#endif
