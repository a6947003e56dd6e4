/*
 * Layer 4: each shard remembers the layout it was filled under, and a server whose settings
 * disagree refuses to start.
 *
 * Which shard holds a key follows from two settings, SHARD_URLS (their order too) and
 * SHARD_STRATEGY. Start a server with other values over the same databases and every key is
 * looked for on the wrong shard: reads say "not found", writes put second copies elsewhere, and
 * nothing says why. So each shard records, in a one-row table `shard_layout`, the layout and its
 * own place in it ("modulo/3", shard 1) the first time a server uses it, and every server checks
 * that record against its settings before it listens. A mismatch is fatal (exit 1, with a
 * message that says which setting to fix). While resharding, a database may still carry the
 * previous layout, as the shard it was there (SHARD_PREVIOUS_*); l4-reshard records the new
 * layout on every shard when it has moved every key.
 *
 * A shard that does not answer at start-up is checked when it does (the maintenance timer);
 * until then its keys are served unchecked, as the rest of this layer serves the other shards'
 * keys while one is down.
 */
#ifndef L4_LAYOUT_H
#define L4_LAYOUT_H

#include <stdbool.h>

struct shard_set;
struct layout_check;

/* Creates `shard_layout` (with records' schema, in one transaction of its own). */
extern const char LAYOUT_SQL_SCHEMA[];
/* $1 layout, $2 shard: records them as this database's layout (l4-reshard, when done). */
extern const char LAYOUT_SQL_RECORD[];

/* Called once every shard of the current layout has been checked and agrees. */
typedef void (*layout_agreed_cb)(void *arg);
/* Called (at most once) when a shard disagrees; `why` says which and what to do. */
typedef void (*layout_refused_cb)(const char *why, void *arg);

/* Checks every shard of the current layout now, and those that did not answer on each
 * layout_check_retry(). */
struct layout_check *layout_check_start(struct shard_set *shards, layout_agreed_cb agreed,
                                        layout_refused_cb refused, void *arg);
/* Checks again the shards that have not answered (the maintenance timer). NULL is a no-op. */
void layout_check_retry(struct layout_check *check);
/* NULL is a no-op. Checks still running finish without calling back. */
void layout_check_free(struct layout_check *check);

#endif
