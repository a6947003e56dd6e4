/*
 * pg_pipeline without a socket: libpq's answers to pipelined calls are made with
 * PQmakeEmptyPGresult and fed in the order libpq hands them out, so the FIFO's promises are
 * checked alone: answers go to their calls in order, a failing call keeps its own error and its
 * neighbours their results, a failed PREPARE's error wins over the aborted query behind it, two
 * NULLs in a row mean the connection is gone, and the FIFO is bounded.
 */
#include "pg_pipeline.h"

#include "check_run.h"

#include <check.h>
#include <stdlib.h>

static PGresult *result(ExecStatusType status)
{
    PGresult *res = PQmakeEmptyPGresult(NULL, status);
    ck_assert_ptr_nonnull(res);
    return res;
}

static void no_cb(PGresult *res, enum pg_status status, void *arg)
{
    (void)res, (void)status, (void)arg;
}

static struct pg_call call_no(intptr_t n)
{
    return (struct pg_call){{"SELECT 1", 0, {NULL}}, no_cb, (void *)n};
}

/* Pushes call n, sent at ms. */
static bool push(struct pg_pipeline *p, intptr_t n, long long ms)
{
    struct pg_call call = call_no(n);
    return pg_pipeline_push(p, &call, ms);
}

/* Feeds one call's answer: its results (each followed by NULL), then its sync. */
static enum pg_pipeline_step answer(struct pg_pipeline *p, ExecStatusType a, ExecStatusType b)
{
    ck_assert_int_eq(pg_pipeline_step(p, result(a)), PG_PIPELINE_MORE);
    ck_assert_int_eq(pg_pipeline_step(p, NULL), PG_PIPELINE_MORE);
    if (b != PGRES_EMPTY_QUERY) {
        ck_assert_int_eq(pg_pipeline_step(p, result(b)), PG_PIPELINE_MORE);
        ck_assert_int_eq(pg_pipeline_step(p, NULL), PG_PIPELINE_MORE);
    }
    return pg_pipeline_step(p, result(PGRES_PIPELINE_SYNC));
}

/* Pops the oldest call: checks it is call n with a result of status want. */
static void expect_pop(struct pg_pipeline *p, intptr_t n, ExecStatusType want)
{
    struct pg_call call;
    PGresult *res;
    pg_pipeline_pop(p, &call, &res);
    ck_assert_ptr_eq(call.arg, (void *)n);
    ck_assert_ptr_nonnull(res);
    ck_assert_int_eq(PQresultStatus(res), want);
    PQclear(res);
}

START_TEST(answers_go_to_their_calls_in_order)
{
    struct pg_pipeline *p = pg_pipeline_create(4);
    for (intptr_t i = 1; i <= 3; i++)
        ck_assert(push(p, i, 100 + i));
    ck_assert_int_eq(pg_pipeline_count(p), 3);
    ck_assert_int_eq(pg_pipeline_oldest_ms(p), 101);
    ck_assert_int_eq(answer(p, PGRES_TUPLES_OK, PGRES_EMPTY_QUERY), PG_PIPELINE_ANSWERED);
    expect_pop(p, 1, PGRES_TUPLES_OK);
    ck_assert_int_eq(pg_pipeline_oldest_ms(p), 102);
    /* the middle one fails: only it */
    ck_assert_int_eq(answer(p, PGRES_FATAL_ERROR, PGRES_EMPTY_QUERY), PG_PIPELINE_ANSWERED);
    expect_pop(p, 2, PGRES_FATAL_ERROR);
    ck_assert_int_eq(answer(p, PGRES_COMMAND_OK, PGRES_EMPTY_QUERY), PG_PIPELINE_ANSWERED);
    expect_pop(p, 3, PGRES_COMMAND_OK);
    ck_assert_int_eq(pg_pipeline_count(p), 0);
    pg_pipeline_free(p);
}
END_TEST

START_TEST(prepare_then_query_keeps_the_query_result)
{
    struct pg_pipeline *p = pg_pipeline_create(2);
    ck_assert(push(p, 1, 0));
    ck_assert(push(p, 2, 0));
    ck_assert_int_eq(answer(p, PGRES_COMMAND_OK, PGRES_TUPLES_OK), PG_PIPELINE_ANSWERED);
    expect_pop(p, 1, PGRES_TUPLES_OK);
    /* a failed PREPARE aborts its query (up to its own sync): the PREPARE's error is kept */
    ck_assert_int_eq(answer(p, PGRES_FATAL_ERROR, PGRES_PIPELINE_ABORTED), PG_PIPELINE_ANSWERED);
    expect_pop(p, 2, PGRES_FATAL_ERROR);
    pg_pipeline_free(p);
}
END_TEST

START_TEST(two_nulls_in_a_row_mean_the_connection_is_lost)
{
    struct pg_pipeline *p = pg_pipeline_create(2);
    ck_assert(push(p, 1, 0));
    ck_assert_int_eq(pg_pipeline_step(p, result(PGRES_FATAL_ERROR)), PG_PIPELINE_MORE);
    ck_assert_int_eq(pg_pipeline_step(p, NULL), PG_PIPELINE_MORE);
    ck_assert_int_eq(pg_pipeline_step(p, NULL), PG_PIPELINE_LOST);
    pg_pipeline_free(p); /* frees the result it still holds (ASan checks) */
}
END_TEST

START_TEST(an_answer_nobody_asked_for_is_a_lost_connection)
{
    struct pg_pipeline *p = pg_pipeline_create(1);
    ck_assert_int_eq(pg_pipeline_step(p, result(PGRES_TUPLES_OK)), PG_PIPELINE_LOST);
    pg_pipeline_free(p);
}
END_TEST

START_TEST(the_fifo_is_bounded_and_wraps)
{
    struct pg_pipeline *p = pg_pipeline_create(2);
    ck_assert_int_eq(pg_pipeline_depth(p), 2);
    for (intptr_t round = 0; round < 3; round++) {
        ck_assert(push(p, 2 * round, 0));
        ck_assert(push(p, 2 * round + 1, 0));
        ck_assert(!push(p, 99, 0));
        /* the calls not yet sent are found from the oldest, across the wrap */
        ck_assert_ptr_eq(pg_pipeline_at(p, 0)->arg, (void *)(2 * round));
        ck_assert_ptr_eq(pg_pipeline_at(p, 1)->arg, (void *)(2 * round + 1));
        ck_assert_int_eq(answer(p, PGRES_TUPLES_OK, PGRES_EMPTY_QUERY), PG_PIPELINE_ANSWERED);
        expect_pop(p, 2 * round, PGRES_TUPLES_OK);
        ck_assert_int_eq(answer(p, PGRES_TUPLES_OK, PGRES_EMPTY_QUERY), PG_PIPELINE_ANSWERED);
        expect_pop(p, 2 * round + 1, PGRES_TUPLES_OK);
    }
    pg_pipeline_free(p);
    pg_pipeline_free(NULL);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("pg_pipeline");
    TCase *tc = tcase_create("fifo");
    tcase_add_test(tc, answers_go_to_their_calls_in_order);
    tcase_add_test(tc, prepare_then_query_keeps_the_query_result);
    tcase_add_test(tc, two_nulls_in_a_row_mean_the_connection_is_lost);
    tcase_add_test(tc, an_answer_nobody_asked_for_is_a_lost_connection);
    tcase_add_test(tc, the_fifo_is_bounded_and_wraps);
    suite_add_tcase(s, tc);
    return check_run(s, CK_FORK_GETENV) ? EXIT_FAILURE : EXIT_SUCCESS;
}
