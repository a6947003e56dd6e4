/*
 * pg_pipeline: the calls in flight on one pipelined PostgreSQL connection (DB_POOL_MODE=pipeline).
 *
 * In libpq's pipeline mode a connection sends a query without waiting for the previous answer;
 * the server answers in order. So the calls of many requests can share one connection, and one
 * round trip and one backend wake-up serve several of them. What keeps their answers apart is
 * this FIFO: a call enters it when sent and leaves it, oldest first, when its answer is whole.
 *
 * Sync points (PQpipelineSync) come in two placements (DB_PIPELINE_SYNC):
 *
 * - call: a sync after each call. An error in a pipeline makes the server skip everything up to
 *   the next sync (PGRES_PIPELINE_ABORTED), so a shared sync would fail the neighbours of a bad
 *   statement; with its own sync each call also commits, and is answered, at once. The cost:
 *   one transaction per call, and PostgreSQL's per-transaction work (a commit record, a WAL
 *   flush) is most of a write's CPU.
 * - turn: one sync after the calls sent in one loop turn (a group). The statements between two
 *   syncs are one implicit transaction: one commit, one WAL flush, one flush of the socket for
 *   the group. Their answers are held until the sync confirms the commit. If any of them failed,
 *   nothing of the group committed (the rest are PGRES_PIPELINE_ABORTED), so the group falls
 *   back: each of its calls is requeued, to be sent again alone with a sync of its own
 *   (pg_pipeline_requeue), so an error still fails only its call (except a call the server gave
 *   up on, e.g. at statement_timeout: it gets its error at once rather than wait again).
 *   A group is as slow as its slowest member, and holds its writes' row locks until its end.
 * (Savepoints would keep neighbours alive too, but cost a round of messages per call.)
 *
 * A call's answer, as libpq hands it out: [PREPARE's result, NULL,] its results, NULL; after the
 * last call of a group, PGRES_PIPELINE_SYNC. The call's result is its first error, else its last
 * result (so a failed PREPARE's error wins over the PGRES_PIPELINE_ABORTED of the query it
 * stopped). Two NULLs in a row mean libpq has nothing more to give: the connection is gone.
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
    PG_PIPELINE_ANSWERED, /* a group's answers are whole: take its pg_pipeline_ready calls with
                             pg_pipeline_pop */
    PG_PIPELINE_RETRY,    /* a group of several failed and committed nothing: requeue it
                             (pg_pipeline_requeue) */
    PG_PIPELINE_LOST,     /* libpq has nothing more: the connection failed */
};

/* A FIFO of at most depth calls (depth >= 1), on the wire and held together. */
struct pg_pipeline *pg_pipeline_create(int depth);

/* Frees the FIFO and the results it holds; its calls' callbacks are NOT called. NULL: no-op. */
void pg_pipeline_free(struct pg_pipeline *p);

/*
 * Appends a call sent at sent_ms (monotonic); false when depth calls are already in flight.
 * Until pg_pipeline_sent says otherwise, its answer is everything up to the next sync.
 */
bool pg_pipeline_push(struct pg_pipeline *p, const struct pg_call *call, long long sent_ms)
    __attribute__((warn_unused_result));

/* Call i went out as `statements` statements (a PREPARE and its query: 2), followed by a sync
 * point or not (more calls of its group follow). */
void pg_pipeline_sent(struct pg_pipeline *p, int i, int statements, bool sync_follows);

/*
 * Orders the calls [from, pg_pipeline_count) on the wire (not yet sent) by their first parameter,
 * then statement; they are still handed back in the order they were pushed. With a sync per loop
 * turn, a group's single-row writes then take their row locks in key order, as every other
 * group's do: two groups on two connections cannot deadlock by writing the same keys in
 * opposite orders (PostgreSQL would find it only after deadlock_timeout, 1 s).
 */
void pg_pipeline_sort(struct pg_pipeline *p, int from);

/* Whether call i must be sent with a sync of its own (it was requeued). */
bool pg_pipeline_alone(const struct pg_pipeline *p, int i);

/* 1 when the next call in push order is answered (pop it), else 0. Check after
 * PG_PIPELINE_ANSWERED and pg_pipeline_requeue, popping until 0. */
int pg_pipeline_ready(const struct pg_pipeline *p);

/*
 * After PG_PIPELINE_RETRY: the failed group's calls that the server gave up on (statement_timeout,
 * an operator, resources: PG_UNAVAILABLE by pg_classify_sqlstate; sent again they would wait as
 * long again, past their deadline) are answered with their errors; every other one, its error
 * included (it may have been caused by the group: a deadlock, a serialization failure), moves
 * behind all calls on the wire, unsent, to go alone (pg_pipeline_alone), keeping its first
 * send's time (its deadline) and its place in the order calls are handed back. Returns how
 * many moved: the caller sends them.
 */
int pg_pipeline_requeue(struct pg_pipeline *p) __attribute__((warn_unused_result));
/* Calls on the wire (sent or to send), in the order they go out; and calls answered but held,
 * waiting for an earlier-pushed call that was requeued. */
int pg_pipeline_count(const struct pg_pipeline *p);
int pg_pipeline_held(const struct pg_pipeline *p);
int pg_pipeline_depth(const struct pg_pipeline *p);

/* The call i places behind the oldest on the wire (0: the oldest); i < pg_pipeline_count. */
const struct pg_call *pg_pipeline_at(const struct pg_pipeline *p, int i);

/* The call whose PREPARE the next result answers (it was sent as 2 statements, and the
 * PREPARE's end has not been fed yet), or NULL. */
const struct pg_call *pg_pipeline_preparing(const struct pg_pipeline *p);

/* When the oldest call on the wire was first sent (the one whose deadline comes first);
 * pg_pipeline_count > 0. */
long long pg_pipeline_oldest_ms(const struct pg_pipeline *p);

/* Feeds what PQgetResult returned (NULL too) to the oldest call; takes ownership of res. */
enum pg_pipeline_step pg_pipeline_step(struct pg_pipeline *p, PGresult *res)
    __attribute__((warn_unused_result));

/*
 * Removes the next call: the answered one whose turn it is (pg_pipeline_ready), else (draining a
 * failed connection) the oldest held one, else the oldest on the wire. *call is it, *res its
 * result (the caller's to PQclear; NULL when nothing arrived). Returns whether its answer was
 * whole. There is a call (pg_pipeline_count + pg_pipeline_held > 0).
 */
bool pg_pipeline_pop(struct pg_pipeline *p, struct pg_call *call, PGresult **res);

#endif
