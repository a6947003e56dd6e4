/*
 * pg_pipeline: the FIFO of calls in flight on one pipelined connection (see pg_pipeline.h).
 *
 * A ring buffer of depth entries in the order the calls go out on the wire; the oldest is at
 * head. Answers are collected in their entries (`reading` is the one whose results come now)
 * until a sync point arrives; it answers the group that ends at the first entry marked
 * sync_follows, whose calls move to `held`. Calls are handed back in the order they were pushed
 * (seq): a requeued call goes out again behind calls pushed after it, so those wait in `held`
 * until it is answered.
 */
#include "pg_pipeline.h"

#include "pg_sqlstate.h"
#include "xalloc.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct pg_pipeline_entry {
    struct pg_call call; /* the caller's call, as sent */
    long long sent_ms;   /* when it was first sent (its deadline counts from here) */
    PGresult *result;    /* its first error, else its last result so far */
    int statements;      /* statements sent for it (a PREPARE and its query: 2); 0: unknown,
                            its answer is everything up to the sync */
    bool sync_follows;   /* a sync point was sent after it: it ends its group */
    bool alone;          /* it must be sent with a sync of its own (requeued) */
    unsigned long seq;   /* the order it was pushed in, and is handed back in */
};

struct pg_pipeline {
    struct pg_pipeline_entry *ring; /* depth entries */
    struct pg_pipeline_entry *held; /* depth entries: answered, handed back in seq order */
    int held_count;                 /* used entries of held */
    int depth;                      /* most calls in flight (ring and held together) */
    int head, count;                /* the oldest call's position in ring, and how many */
    unsigned long next_seq;         /* the next pushed call's seq */
    unsigned long deliver_seq;      /* the seq handed back next */
    int reading;                    /* the call whose results come next, counted from head */
    int ended;                      /* statements of that call whose end (NULL) was fed */
    int failed;                     /* calls of a failed group at head, to requeue */
    bool after_null;                /* the last thing fed was a NULL (a statement's end) */
};

static bool is_success(const PGresult *res)
{
    ExecStatusType s = PQresultStatus(res);
    return s == PGRES_TUPLES_OK || s == PGRES_COMMAND_OK || s == PGRES_EMPTY_QUERY;
}

struct pg_pipeline *pg_pipeline_create(int depth)
{
    struct pg_pipeline *p = xcalloc(1, sizeof *p);
    p->depth = depth < 1 ? 1 : depth;
    p->ring = xcalloc((size_t)p->depth, sizeof *p->ring);
    p->held = xcalloc((size_t)p->depth, sizeof *p->held);
    return p;
}

void pg_pipeline_free(struct pg_pipeline *p)
{
    if (p == NULL)
        return;
    for (int i = 0; i < p->count; i++)
        PQclear(p->ring[(p->head + i) % p->depth].result);
    for (int i = 0; i < p->held_count; i++)
        PQclear(p->held[i].result);
    free(p->ring);
    free(p->held);
    free(p);
}

bool pg_pipeline_push(struct pg_pipeline *p, const struct pg_call *call, long long sent_ms)
{
    if (p->count + p->held_count == p->depth)
        return false;
    int tail = (p->head + p->count) % p->depth;
    p->ring[tail] =
        (struct pg_pipeline_entry){*call, sent_ms, NULL, 0, true, false, p->next_seq++};
    p->count++;
    return true;
}

void pg_pipeline_sent(struct pg_pipeline *p, int i, int statements, bool sync_follows)
{
    struct pg_pipeline_entry *e = &p->ring[(p->head + i) % p->depth];
    e->statements = statements;
    e->sync_follows = sync_follows;
}

bool pg_pipeline_alone(const struct pg_pipeline *p, int i)
{
    return p->ring[(p->head + i) % p->depth].alone;
}

/* The held entry handed back next, or -1. */
static int next_held(const struct pg_pipeline *p)
{
    for (int i = 0; i < p->held_count; i++)
        if (p->held[i].seq == p->deliver_seq)
            return i;
    return -1;
}

int pg_pipeline_ready(const struct pg_pipeline *p)
{
    return next_held(p) >= 0 ? 1 : 0;
}

int pg_pipeline_held(const struct pg_pipeline *p)
{
    return p->held_count;
}

/* Moves the entry at head of ring to held. */
static void hold_head(struct pg_pipeline *p)
{
    p->held[p->held_count++] = p->ring[p->head];
    p->head = (p->head + 1) % p->depth;
    p->count--;
}

/* A call whose error sending it again would only repeat at length: the server gave up on it
 * (statement_timeout, an operator, resources: pg_classify_sqlstate's PG_UNAVAILABLE), so it would
 * wait as long again, past its deadline, and its neighbours behind it. */
static bool failed_for_good(const PGresult *res)
{
    if (res == NULL || is_success(res) || PQresultStatus(res) == PGRES_PIPELINE_ABORTED)
        return false;
    const char *sqlstate = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    return sqlstate != NULL && pg_classify_sqlstate(sqlstate) == PG_UNAVAILABLE;
}

int pg_pipeline_requeue(struct pg_pipeline *p)
{
    int n = p->failed, again = 0;
    p->failed = 0;
    p->reading = 0;
    for (int i = 0; i < n; i++) {
        struct pg_pipeline_entry *e = &p->ring[p->head];
        if (failed_for_good(e->result)) {
            hold_head(p);
            continue;
        }
        /* behind every call in flight: the ring has room, since this one leaves head */
        struct pg_pipeline_entry moved = {e->call, e->sent_ms, NULL, 0, true, true, e->seq};
        PQclear(e->result);
        p->head = (p->head + 1) % p->depth;
        p->ring[(p->head + p->count - 1) % p->depth] = moved;
        again++;
    }
    return again;
}

/* The order of a group's calls on the wire: by first parameter, then statement. */
static int wire_order(const struct pg_pipeline_entry *a, const struct pg_pipeline_entry *b)
{
    const char *x = a->call.statement.nparams > 0 ? a->call.statement.values[0] : NULL;
    const char *y = b->call.statement.nparams > 0 ? b->call.statement.values[0] : NULL;
    int c = x == NULL || y == NULL ? (x != NULL) - (y != NULL) : strcmp(x, y);
    if (c != 0)
        return c;
    uintptr_t u = (uintptr_t)a->call.statement.sql, v = (uintptr_t)b->call.statement.sql;
    return (u > v) - (u < v);
}

void pg_pipeline_sort(struct pg_pipeline *p, int from)
{
    for (int i = from + 1; i < p->count; i++) { /* insertion sort: a loop turn's few calls */
        struct pg_pipeline_entry e = p->ring[(p->head + i) % p->depth];
        int j = i;
        for (; j > from && wire_order(&p->ring[(p->head + j - 1) % p->depth], &e) > 0; j--)
            p->ring[(p->head + j) % p->depth] = p->ring[(p->head + j - 1) % p->depth];
        p->ring[(p->head + j) % p->depth] = e;
    }
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

const struct pg_call *pg_pipeline_preparing(const struct pg_pipeline *p)
{
    if (p->reading >= p->count || p->failed > 0)
        return NULL;
    const struct pg_pipeline_entry *e = &p->ring[(p->head + p->reading) % p->depth];
    return e->statements == 2 && p->ended == 0 ? &e->call : NULL;
}

long long pg_pipeline_oldest_ms(const struct pg_pipeline *p)
{
    return p->ring[p->head].sent_ms;
}

/* A sync arrived: the group from head to the first call it follows is answered. */
static enum pg_pipeline_step group_answered(struct pg_pipeline *p)
{
    int last = 0;
    while (last < p->count && !p->ring[(p->head + last) % p->depth].sync_follows)
        last++;
    if (last == p->count)
        return PG_PIPELINE_LOST; /* a sync nobody sent: the protocol is out of step */
    bool ok = true;
    for (int i = 0; i <= last && last > 0; i++) { /* one call alone: its error is its own */
        const PGresult *res = p->ring[(p->head + i) % p->depth].result;
        ok = ok && res != NULL && is_success(res);
    }
    p->ended = 0;
    if (!ok) { /* the group's transaction rolled back */
        p->failed = last + 1;
        p->reading = last + 1;
        return PG_PIPELINE_RETRY;
    }
    for (int i = 0; i <= last; i++)
        hold_head(p);
    p->reading = 0;
    return PG_PIPELINE_ANSWERED;
}

enum pg_pipeline_step pg_pipeline_step(struct pg_pipeline *p, PGresult *res)
{
    if (res == NULL) { /* one statement's results are complete */
        bool twice = p->after_null;
        p->after_null = true;
        if (p->reading < p->count) {
            const struct pg_pipeline_entry *e = &p->ring[(p->head + p->reading) % p->depth];
            if (e->statements > 0 && ++p->ended == e->statements) {
                p->reading++; /* that call's answer is whole: the next one's come next */
                p->ended = 0;
            }
        }
        return twice ? PG_PIPELINE_LOST : PG_PIPELINE_MORE;
    }
    p->after_null = false;
    if (p->count == 0 || p->failed > 0) { /* nobody asked for it, or the caller did not requeue:
                                             the protocol is out of step */
        PQclear(res);
        return PG_PIPELINE_LOST;
    }
    if (PQresultStatus(res) == PGRES_PIPELINE_SYNC) {
        PQclear(res);
        return group_answered(p);
    }
    if (p->reading >= p->count) { /* more results than calls sent */
        PQclear(res);
        return PG_PIPELINE_LOST;
    }
    PGresult **kept = &p->ring[(p->head + p->reading) % p->depth].result;
    if (*kept != NULL && !is_success(*kept)) {
        PQclear(res); /* the first error wins */
    } else {
        PQclear(*kept);
        *kept = res;
    }
    return PG_PIPELINE_MORE;
}

bool pg_pipeline_pop(struct pg_pipeline *p, struct pg_call *call, PGresult **res)
{
    int i = next_held(p);
    if (i < 0 && p->held_count > 0) { /* draining after a failure: the oldest held */
        i = 0;
        for (int j = 1; j < p->held_count; j++)
            if (p->held[j].seq < p->held[i].seq)
                i = j;
    }
    if (i < 0) { /* unanswered: the oldest on the wire */
        struct pg_pipeline_entry *e = &p->ring[p->head];
        *call = e->call;
        *res = e->result;
        e->result = NULL;
        p->head = (p->head + 1) % p->depth;
        p->count--;
        p->failed = 0;
        p->reading = 0;
        p->ended = 0;
        return false;
    }
    *call = p->held[i].call;
    *res = p->held[i].result;
    if (p->held[i].seq == p->deliver_seq)
        p->deliver_seq++;
    p->held[i] = p->held[--p->held_count];
    return true;
}
