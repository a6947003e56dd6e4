/*
 * backends: see backends.h. The Redis half is in backends_redis.c, so that a layer without
 * Redis (layer 1) links no hiredis.
 */
#include "backends.h"

#include "metrics.h"
#include "server.h"

struct pool *backends_start_pool(struct server *server, struct pool_config *db,
                                 const char *application, struct pgconn_settings *pg)
{
    if (!pool_config_check(db))
        return NULL;
    db->resolver = server_resolver(server); /* host names off the event loop */
    *pg = pool_config_pg(db, application);
    struct pool *pool =
        pool_config_create(db, server_base(server), application, server_metrics(server));
    metrics_add_gauges(server_metrics(server), pool_render_gauges, pool);
    return pool;
}
