/*
 * backends: the Redis half (see backends.h and backends.c).
 */
#include "backends.h"

#include "server.h"

struct redis *backends_start_redis(struct server *server, const char *url, long timeout_ms)
{
    struct redis_settings rs = redis_settings_of(url, timeout_ms, server_resolver(server));
    return redis_create(server_base(server), &rs, server_metrics(server));
}
