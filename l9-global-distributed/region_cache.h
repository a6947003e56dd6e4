/*
 * region_cache: one region's Redis cache-aside, kept coherent with the rows replication applies.
 *
 * Each region has its own Redis in front of its own PostgreSQL, and the cache holds what that
 * PostgreSQL's merge says (the core's cache_aside: versioned fills, owed invalidations). A write
 * the server commits in the region is invalidated by the server, as in layer 2. A row that
 * logical replication applies there is not the server's doing: a trigger on every region's
 * table, enabled only for replication's apply workers (`ENABLE REPLICA TRIGGER`,
 * replication.sh), runs `pg_notify('l9_records', key)`; PostgreSQL delivers it when the apply
 * transaction commits, to a LISTEN this module holds on the region's PostgreSQL
 * (shared/pg_listener), which invalidates the key. So the cache is as fresh as its region's
 * tables, plus the notification's delivery and one Redis call.
 *
 * The race the core's lease/version rule settles: a reader misses (gets a version), reads the
 * old row; the replicated row commits; its notification bumps the version; the reader's fill
 * is refused (the version moved). If the fill lands before the notification arrives, the
 * notification deletes it. What the rule cannot settle is a lost notification (PostgreSQL
 * sends none to a listener that is not connected), so the cache is trusted only while the
 * LISTEN is in force since the last clear: when the listener reconnects (pg_listener_sessions
 * grows), every key of the region is cleared before the cache is used again, and a fill from a
 * lookup made before that (an older epoch) is dropped. Untrusted, or Redis down: lookups report
 * CACHE_UNAVAILABLE and reads go to PostgreSQL.
 */
#ifndef L9_REGION_CACHE_H
#define L9_REGION_CACHE_H

#include "cache_aside.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

struct region_cache;
struct server;

/* The cache of the region called name: Redis at redis_url (keys "l9:<name>:..."), invalidated
 * by the NOTIFYs of the PostgreSQL at pg_url. NULL for a malformed Redis URL (logged). */
struct region_cache *region_cache_create(struct server *server, const char *name,
                                         const char *redis_url, long redis_timeout_ms,
                                         const char *pg_url, long pg_connect_timeout_ms, long ttl_s)
    __attribute__((warn_unused_result));
void region_cache_free(struct region_cache *cache);

/* cache_aside_get when the cache is trusted, else cb(CACHE_UNAVAILABLE) at once. *epoch gets the
 * epoch to pass to region_cache_fill. */
void region_cache_get(struct region_cache *cache, const char *key, size_t key_len,
                      unsigned long long *epoch, cache_get_cb cb, void *arg);

/* cache_aside_fill, unless trust was lost (or regained) since the lookup of that epoch. */
void region_cache_fill(struct region_cache *cache, unsigned long long epoch, const char *key,
                       size_t key_len, const char *token, const char *data, size_t len);

/* After a write the server committed in this region. */
void region_cache_invalidate(struct region_cache *cache, const char *key, size_t key_len);

/* Redis reconnects, owed invalidations, a clear that failed: call it once a second. */
void region_cache_maintain(struct region_cache *cache);

/* Redis answers and no invalidation is owed (for /health). */
bool region_cache_available(const struct region_cache *cache);

/* {"available","trusted","replicated_invalidations","resets"} (the caller adds its hits). */
json_t *region_cache_stats_json(const struct region_cache *cache);

#endif
