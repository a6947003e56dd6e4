/*
 * single_flight: coalescing concurrent misses on the same key.
 *
 * When a popular key is missing from the cache (it expired, or was just invalidated), every
 * request for it misses at once and, naively, each one queries the database: a stampede. With
 * single-flight, the first miss becomes the leader and queries; the others join it and are
 * answered with the leader's result. The table is bounded by the requests in flight; each entry
 * lives from the leader's query to its answer.
 *
 * Joining is only safe while the leader's answer is still current. Once a write to the key has
 * committed, a query already under way may have read the row before it, and a reader that
 * arrives after the write was acknowledged must not be handed that result: the writer calls
 * single_flight_forget(), and later misses start a new flight (as Go's singleflight.Forget).
 */
#ifndef LAYERS_SINGLE_FLIGHT_H
#define LAYERS_SINGLE_FLIGHT_H

#include <stdbool.h>
#include <stddef.h>

struct single_flight;

struct single_flight *single_flight_create(void);
void single_flight_free(struct single_flight *sf);

/*
 * Joins the open flight for key. Returns true when there was none: the caller (`waiter`) is now
 * the leader of a new flight and must run the query and then call single_flight_finish. Returns
 * false when `waiter` was added to a flight already under way.
 */
bool single_flight_join(struct single_flight *sf, const char *key, size_t key_len, void *waiter);

/*
 * Closes the open flight for key, if any, to newcomers: it still ends with its leader's
 * single_flight_finish, but the next join starts a new flight. Call it when key was written.
 */
void single_flight_forget(struct single_flight *sf, const char *key, size_t key_len);

/*
 * Ends the flight that `leader` leads for key and returns every request it answers, the leader
 * first, then its waiters in arrival order, and how many (at least 1): the caller answers them
 * all in one loop. A leader that leads no flight (it never joined, or its flight already ended)
 * gets itself back alone. The caller frees the returned array.
 */
void **single_flight_finish(struct single_flight *sf, const char *key, size_t key_len, void *leader,
                            size_t *count);

#endif
