/*
 * Layer 7: moving the read counts the API gathers in Redis into the read model (part of
 * l7-projector). Reads never write to PostgreSQL: the API counts them with HINCRBY in the hash
 * l7:reads, and once a second the projector calls read_counts_flush(), which moves the hash
 * aside as the next generation and adds it to records.read_count in one transaction that also
 * records the generation, so a flush retried after a crash is never added twice.
 */
#ifndef L7_READ_COUNTS_H
#define L7_READ_COUNTS_H

#include "pool.h"
#include "redis.h"

struct read_counts;

/* Flushes through REDIS into the read database of READ_POOL (both stay the caller's, and must
 * outlive the returned object); reads the stored generation first. */
struct read_counts *read_counts_create(struct redis *redis, struct pool *read_pool);

/* One flush, unless one is under way or the stored generation is not known yet. */
void read_counts_flush(struct read_counts *counts);

/* After the redis and the pool it uses are freed (their callbacks may still run until then). */
void read_counts_free(struct read_counts *counts);

#endif
