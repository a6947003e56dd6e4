/*
 * l1_coherence: keeps the in-process caches (l1_cache.h) of several server instances coherent
 * with the writes made through any of them (layers 5 and 10).
 *
 * An in-process tier is only safe with invalidations: several instances each hold their own L1,
 * and a write through one must reach all. Writers publish the key on a Redis channel (in the
 * same script that invalidates L2, cache_aside.h); every instance subscribes (this module owns
 * the subscription) and drops the key from its L1, and forgets any database read of it already
 * under way (single_flight_forget: a read that starts after the write must not join a query
 * that may have read the row before it). "" on the channel clears every L1.
 *
 * While the subscription is down, or silent (this instance's own once-a-second heartbeat has
 * not come back for heartbeat_timeout_ms: a Redis that hangs without closing connections looks
 * "subscribed" but delivers nothing), messages may be missed, so L1 is emptied and must be
 * bypassed (l1_coherence_trusted) until they flow again. Heartbeats start with a NUL byte, which
 * no key can contain, and carry a random id, so each instance knows its own.
 *
 * A fill (into L1) that raced with an invalidation of its key is refused, like L2's versioned
 * fills: the module counts invalidations (an epoch) and remembers the latest keys' hashes; a
 * read remembers the epoch it started at (l1_coherence_epoch) and asks before filling.
 */
#ifndef LAYERS_L1_COHERENCE_H
#define LAYERS_L1_COHERENCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct l1_cache;
struct l1_coherence;
struct metrics;
struct redis;
struct resolver;
struct single_flight;

#define L1_COHERENCE_RECENT 1024 /* how far back a fill can check for a racing write */

struct l1_coherence_settings {
    const char *redis_url;     /* the Redis whose channel carries the invalidations */
    long timeout_ms;           /* connecting to it */
    const char *channel;       /* "l5:invalidations" */
    long heartbeat_timeout_ms; /* L1 is bypassed when our heartbeat is this late */
};

/* Subscribes to the channel; NULL when the URL is malformed. l1, flights and redis (which
 * publishes the heartbeat) are the caller's and must outlive it. */
struct l1_coherence *l1_coherence_create(struct event_base *base, struct resolver *resolver,
                                         const struct l1_coherence_settings *settings,
                                         struct l1_cache *l1, struct single_flight *flights,
                                         struct redis *redis, struct metrics *metrics);
/* NULL is a no-op. */
void l1_coherence_free(struct l1_coherence *c);

/* Applies an invalidation of key (every key when key is NULL) to this instance's L1. */
void l1_coherence_invalidate(struct l1_coherence *c, const char *key, size_t key_len);

/* Publishes "" on the channel: every instance (this one too) clears its L1. */
void l1_coherence_publish_clear(struct l1_coherence *c);

/* Once a second (the maintenance timer): publishes this instance's heartbeat. */
void l1_coherence_heartbeat(struct l1_coherence *c);

/* Whether invalidations are heard now: L1 may be read and filled. */
bool l1_coherence_trusted(const struct l1_coherence *c);

/* Invalidations applied so far (a read's starting point for l1_coherence_fill_allowed). */
uint64_t l1_coherence_epoch(const struct l1_coherence *c);

/* May a value read since `epoch` go into L1? Not if its key (or everything) was invalidated
 * since, nor while invalidations cannot be heard. */
bool l1_coherence_fill_allowed(const struct l1_coherence *c, const char *key, size_t key_len,
                               uint64_t epoch);

#endif
