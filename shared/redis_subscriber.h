/*
 * redis_subscriber: one Redis pub/sub subscription that survives Redis restarts.
 *
 * A subscribed connection can do nothing but receive, so it is separate from the command
 * client (redis.h). Its connection is a redis_link (reconnects with backoff, connect deadline,
 * optional non-blocking name lookups); on every new connection it subscribes again (with the
 * connect deadline for the confirmation), and tells its owner whenever it
 * goes up or down: while it is down, messages may be missed, and a cache fed by invalidation
 * messages must not trust itself (layer 5 empties and bypasses its in-process tier).
 */
#ifndef LAYERS_REDIS_SUBSCRIBER_H
#define LAYERS_REDIS_SUBSCRIBER_H

#include <stdbool.h>
#include <stddef.h>

struct event_base;
struct redis_subscriber;
struct resolver;

/* A message on the channel; data is valid during the call. From the event loop. */
typedef void (*redis_message_cb)(const char *data, size_t len, void *arg);
/*
 * The subscription became active (true) or was lost (false), from the event loop: true once per
 * confirmed SUBSCRIBE, then false once when that subscription is lost. Never called by
 * redis_subscriber_free.
 */
typedef void (*redis_subscription_cb)(bool active, void *arg);

/* NULL when the URL is malformed. Hosts are resolved by hiredis (blocking getaddrinfo). */
/* Host names in url are resolved by resolver (resolve.h) on every (re)connect; NULL: by hiredis. */
struct redis_subscriber *redis_subscriber_create(struct event_base *base, struct resolver *resolver,
                                                 const char *url, long connect_timeout_ms,
                                                 const char *channel, redis_message_cb on_message,
                                                 redis_subscription_cb on_state, void *arg);
/* NULL is a no-op. */
void redis_subscriber_free(struct redis_subscriber *sub);

bool redis_subscriber_active(const struct redis_subscriber *sub);

#endif
