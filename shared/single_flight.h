/*
 * single_flight: coalescing concurrent misses on the same key.
 *
 * When a popular key is missing from the cache (it expired, or was just invalidated), every
 * request for it misses at once and, naively, each one queries the database: a stampede. With
 * single-flight, the first miss becomes the leader and queries; the others join it and are
 * answered with the leader's result. The table is bounded by the requests in flight; each entry
 * lives from the leader's query to its answer.
 */
#ifndef LAYERS_SINGLE_FLIGHT_H
#define LAYERS_SINGLE_FLIGHT_H

#include <stdbool.h>
#include <stddef.h>

struct single_flight;

struct single_flight *single_flight_create(void);
void single_flight_free(struct single_flight *sf);

/*
 * Joins the flight for key. Returns true when the caller is the leader (it must run the query
 * and then call single_flight_finish); false when a flight was already under way and `waiter`
 * was added to it.
 */
bool single_flight_join(struct single_flight *sf, const char *key, size_t key_len, void *waiter);

/* Ends the flight for key: returns its waiters (not the leader), in arrival order, and how many.
 * The caller frees the returned array. */
void **single_flight_finish(struct single_flight *sf, const char *key, size_t key_len,
                            size_t *count);

#endif
