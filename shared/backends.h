/*
 * backends: a layer server's PostgreSQL pool and Redis link, started the one way every layer
 * starts them.
 *
 * Each pooled layer needs the same few steps before it can serve: check the pool settings,
 * resolve host names off the event loop (the server's resolver), count queries in /metrics and
 * show the pool's gauges; each Redis layer connects with one deadline for connecting and for
 * each reply. Written once here, a layer's start() says only what is its own.
 */
#ifndef LAYERS_BACKENDS_H
#define LAYERS_BACKENDS_H

#include "pool_config.h"
#include "redis.h"

struct server;

/*
 * The pool `db` describes, on the server's loop, named `application` in PostgreSQL. NULL when
 * the settings do not fit together (logged). *pg gets the settings that start-up steps (the
 * schema) connect with.
 */
struct pool *backends_start_pool(struct server *server, struct pool_config *db,
                                 const char *application, struct pgconn_settings *pg)
    __attribute__((warn_unused_result));

/* A Redis link to `url` (REDIS_CONFIG_SET's values) on the server's loop; NULL for a bad URL. */
struct redis *backends_start_redis(struct server *server, const char *url, long timeout_ms)
    __attribute__((warn_unused_result));

#endif
