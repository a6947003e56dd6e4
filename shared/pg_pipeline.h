/*
 * pg_pipeline: the calls in flight on one pipelined PostgreSQL connection (DB_POOL_MODE=pipeline).
 *
 * In libpq's pipeline mode a connection sends a query without waiting for the previous answer;
 * the server answers in order. So the calls of many requests can share one connection, and one
 * round trip and one backend wake-up serve several of them. What keeps their answers apart is
 * this FIFO: a call enters it when sent and leaves it, oldest first, when its answer is whole.
 *
 * Each call is followed by its own sync point (PQpipelineSync), not one sync for many: an error
 * in a pipeline makes the server skip everything up to the next sync (PGRES_PIPELINE_ABORTED),
 * so a shared sync would fail the neighbours of a bad statement, and their requests are not
 * related to it. A sync per call also makes the server answer (and commit) each call at once,
 * so no answer is held back behind later calls; the cost is one small Sync message per call.
 * (Savepoints would keep neighbours alive too, but need a transaction spanning unrelated
 * requests: one slow request would then hold locks for all.)
 *
 * A call's answer, as libpq hands it out: [PREPARE's result, NULL,] its results, NULL, then
 * PGRES_PIPELINE_SYNC. The call's result is its first error, else its last result (so a failed
 * PREPARE's error wins over the PGRES_PIPELINE_ABORTED of the query it stopped). Two NULLs in a
 * row mean libpq has nothing more to give: the connection is gone.
 *
 * Pure logic over PGresults, so it is unit-tested without a socket (check_pg_pipeline.c);
 * pgconn.c drives it from the socket.
 */
#ifndef LAYERS_PG_PIPELINE_H
#define LAYERS_PG_PIPELINE_H

#include "pgconn.h"

#include <stdbool.h>

struct pg_pipeline;

enum pg_pipeline_step {
    PG_PIPELINE_MORE,     /* the oldest call's answer is not whole yet */
    PG_PIPELINE_ANSWERED, /* the oldest call's answer is whole: take it with pg_pipeline_pop */
    PG_PIPELINE_LOST,     /* libpq has nothing more: the connection failed */
};

/* A FIFO of at most depth calls (depth >= 1). */
struct pg_pipeline *pg_pipeline_create(int depth);

/* Frees the FIFO and the results it holds; its calls' callbacks are NOT called. NULL: no-op. */
void pg_pipeline_free(struct pg_pipeline *p);

/* Appends a call sent at sent_ms (monotonic); false when depth calls are already in flight. */
bool pg_pipeline_push(struct pg_pipeline *p, const struct pg_call *call, long long sent_ms)
    __attribute__((warn_unused_result));

int pg_pipeline_count(const struct pg_pipeline *p);
int pg_pipeline_depth(const struct pg_pipeline *p);

/* The call i places behind the oldest (0: the oldest); i < pg_pipeline_count. */
const struct pg_call *pg_pipeline_at(const struct pg_pipeline *p, int i);

/* When the oldest call was sent (the one whose deadline comes first); the FIFO is not empty. */
long long pg_pipeline_oldest_ms(const struct pg_pipeline *p);

/* Feeds what PQgetResult returned (NULL too) to the oldest call; takes ownership of res. */
enum pg_pipeline_step pg_pipeline_step(struct pg_pipeline *p, PGresult *res)
    __attribute__((warn_unused_result));

/*
 * Removes the oldest call: *call is it, *res its result (the caller's to PQclear; NULL when
 * nothing arrived). The FIFO is not empty.
 */
void pg_pipeline_pop(struct pg_pipeline *p, struct pg_call *call, PGresult **res);

#endif
