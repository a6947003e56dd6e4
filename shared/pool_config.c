/*
 * pool_config: shared database and pool settings (see pool_config.h).
 */
#include "pool_config.h"

#include "log.h"

#include <string.h>

const char *const pool_mode_names[] = {"exclusive", "pipeline", NULL};
const char *const pipeline_sync_names[] = {"call", "turn", NULL};

struct pgconn_settings pool_config_pg(const struct pool_config *c, const char *application)
{
    /* Pooled connections live long: each prepares its statements once (pgconn.h). */
    return (struct pgconn_settings){c->database_url,     application, c->connect_timeout_ms,
                                    c->query_timeout_ms, true,        c->resolver,
                                    c->options};
}

bool pool_config_pipelined(const struct pool_config *c)
{
    return c->pool_mode != NULL && strcmp(c->pool_mode, "pipeline") == 0;
}

bool pool_config_check(const struct pool_config *c)
{
    if (c->min_size > c->max_size) {
        LOG_ERROR("DB_POOL_MIN_SIZE (%ld) must not exceed DB_POOL_MAX_SIZE (%ld)", c->min_size,
                  c->max_size);
        return false;
    }
    return true;
}

struct pool *pool_config_create(const struct pool_config *c, struct event_base *base,
                                const char *application, struct metrics *metrics)
{
    struct pgconn_settings pg = pool_config_pg(c, application);
    struct pool_settings ps = {(int)c->min_size,
                               (int)c->max_size,
                               c->acquire_timeout_ms,
                               (int)c->max_waiting,
                               c->max_lifetime_s * 1000,
                               c->idle_timeout_s * 1000,
                               pool_config_pipelined(c) ? (int)c->pipeline_depth : 1,
                               c->pipeline_sync != NULL && strcmp(c->pipeline_sync, "turn") == 0};
    return pool_create_pg(base, &ps, &pg, metrics);
}
