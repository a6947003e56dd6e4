/*
 * pg_pipeline: the FIFO of calls in flight on one pipelined connection (see pg_pipeline.h).
 *
 * A ring buffer of depth entries; the oldest call is at head. Its answer is collected in its
 * entry until the call's sync point arrives.
 */
#include "pg_pipeline.h"

#include "xalloc.h"

#include <stdlib.h>

struct pg_pipeline_entry {
    struct pg_call call; /* the caller's call, as sent */
    long long sent_ms;   /* when it was sent (its deadline counts from here) */
    PGresult *result;    /* its first error, else its last result so far */
};

struct pg_pipeline {
    struct pg_pipeline_entry *ring; /* depth entries */
    int depth;                      /* most calls in flight */
    int head, count;                /* the oldest call's position, and how many */
    bool after_null;                /* the last thing fed was a NULL (a statement's end) */
};

struct pg_pipeline *pg_pipeline_create(int depth)
{
    struct pg_pipeline *p = xcalloc(1, sizeof *p);
    p->depth = depth < 1 ? 1 : depth;
    p->ring = xcalloc((size_t)p->depth, sizeof *p->ring);
    return p;
}

void pg_pipeline_free(struct pg_pipeline *p)
{
    if (p == NULL)
        return;
    for (int i = 0; i < p->count; i++)
        PQclear(p->ring[(p->head + i) % p->depth].result);
    free(p->ring);
    free(p);
}

bool pg_pipeline_push(struct pg_pipeline *p, const struct pg_call *call, long long sent_ms)
{
    if (p->count == p->depth)
        return false;
    int tail = (p->head + p->count) % p->depth;
    p->ring[tail] = (struct pg_pipeline_entry){*call, sent_ms, NULL};
    p->count++;
    return true;
}

int pg_pipeline_count(const struct pg_pipeline *p)
{
    return p->count;
}

int pg_pipeline_depth(const struct pg_pipeline *p)
{
    return p->depth;
}

const struct pg_call *pg_pipeline_at(const struct pg_pipeline *p, int i)
{
    return &p->ring[(p->head + i) % p->depth].call;
}

long long pg_pipeline_oldest_ms(const struct pg_pipeline *p)
{
    return p->ring[p->head].sent_ms;
}

static bool is_success(const PGresult *res)
{
    ExecStatusType s = PQresultStatus(res);
    return s == PGRES_TUPLES_OK || s == PGRES_COMMAND_OK || s == PGRES_EMPTY_QUERY;
}

enum pg_pipeline_step pg_pipeline_step(struct pg_pipeline *p, PGresult *res)
{
    if (res == NULL) { /* one statement's results are complete */
        bool twice = p->after_null;
        p->after_null = true;
        return twice ? PG_PIPELINE_LOST : PG_PIPELINE_MORE;
    }
    p->after_null = false;
    if (p->count == 0) { /* an answer nobody asked for: the protocol is out of step */
        PQclear(res);
        return PG_PIPELINE_LOST;
    }
    if (PQresultStatus(res) == PGRES_PIPELINE_SYNC) {
        PQclear(res);
        return PG_PIPELINE_ANSWERED;
    }
    PGresult **kept = &p->ring[p->head].result;
    if (*kept != NULL && !is_success(*kept)) {
        PQclear(res); /* the first error wins */
    } else {
        PQclear(*kept);
        *kept = res;
    }
    return PG_PIPELINE_MORE;
}

void pg_pipeline_pop(struct pg_pipeline *p, struct pg_call *call, PGresult **res)
{
    struct pg_pipeline_entry *e = &p->ring[p->head];
    *call = e->call;
    *res = e->result;
    e->result = NULL;
    p->head = (p->head + 1) % p->depth;
    p->count--;
}
