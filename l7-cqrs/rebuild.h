/*
 * Layer 7: `l7-projector --rebuild`, the read model replayed from the outbox. Empties the read
 * model and replays every outbox row, in position order, through the projector's own statement
 * (CQRS_SQL_PROJECT), a page per transaction; the result equals the incremental projection
 * (tested), which is what makes the read model disposable: it can always be rebuilt from the
 * commands. Read counts are not events: they are kept aside and put back at the end.
 */
#ifndef L7_REBUILD_H
#define L7_REBUILD_H

#include "pool.h"
#include "process.h"

struct rebuild;

/* Starts the rebuild: READ_POOL is the read model, WRITE_POOL the outbox's database (both stay
 * the caller's), PAGE_SIZE outbox rows per transaction. It ends the process itself with
 * process_exit(): 0 when done, 1 when a step failed (running it again is safe). */
struct rebuild *rebuild_start(struct process *process, struct pool *read_pool,
                              struct pool *write_pool, long page_size);

/* A stop signal: stop after the page in hand (exit 1: the read model is incomplete). */
void rebuild_stop(struct rebuild *rebuild);

/* After the pools are freed (their callbacks may still run until then). NULL is ignored. */
void rebuild_free(struct rebuild *rebuild);

#endif
