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

/* pg_pipeline_preparing names the call whose PREPARE the next result answers, and only then
 * (pgconn forgets a name whose PREPARE failed by it). */
START_TEST(preparing_names_the_call_while_its_prepare_is_answered)
{
    struct pg_pipeline *p = pg_pipeline_create(2);
    ck_assert(push(p, 1, 0));
    ck_assert(push(p, 2, 0));
    pg_pipeline_sent(p, 0, 2, true); /* a PREPARE and its query */
    pg_pipeline_sent(p, 1, 1, true); /* by name */
    ck_assert_ptr_eq(pg_pipeline_preparing(p)->arg, (void *)1);
    ck_assert_int_eq(pg_pipeline_step(p, result(PGRES_COMMAND_OK)), PG_PIPELINE_MORE);
    ck_assert_ptr_eq(pg_pipeline_preparing(p)->arg, (void *)1); /* its end not fed yet */
    ck_assert_int_eq(pg_pipeline_step(p, NULL), PG_PIPELINE_MORE);
    ck_assert_ptr_null(pg_pipeline_preparing(p)); /* the query's own results come next */
    ck_assert_int_eq(pg_pipeline_step(p, result(PGRES_TUPLES_OK)), PG_PIPELINE_MORE);
    ck_assert_int_eq(pg_pipeline_step(p, NULL), PG_PIPELINE_MORE);
    ck_assert_ptr_null(pg_pipeline_preparing(p)); /* call 2 prepares nothing */
    ck_assert_int_eq(pg_pipeline_step(p, result(PGRES_PIPELINE_SYNC)), PG_PIPELINE_ANSWERED);
    expect_pop(p, 1, PGRES_TUPLES_OK);
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

/* Feeds one call's answer inside a group: one result and its NULL, no sync. */
static void one_result(struct pg_pipeline *p, PGresult *res)
{
    ck_assert_int_eq(pg_pipeline_step(p, res), PG_PIPELINE_MORE);
    ck_assert_int_eq(pg_pipeline_step(p, NULL), PG_PIPELINE_MORE);
}

START_TEST(a_group_is_answered_at_its_sync_and_handed_back_in_order)
{
    struct pg_pipeline *p = pg_pipeline_create(8);
    for (intptr_t i = 1; i <= 3; i++)
        ck_assert(push(p, i, 100));
    for (int i = 0; i < 3; i++)
        pg_pipeline_sent(p, i, 1, i == 2); /* one group: a sync after the third */
    one_result(p, result(PGRES_COMMAND_OK));
    one_result(p, result(PGRES_TUPLES_OK));
    ck_assert_int_eq(pg_pipeline_ready(p), 0); /* held until the sync confirms the commit */
    one_result(p, result(PGRES_COMMAND_OK));
    ck_assert_int_eq(pg_pipeline_step(p, result(PGRES_PIPELINE_SYNC)), PG_PIPELINE_ANSWERED);
    expect_pop(p, 1, PGRES_COMMAND_OK);
    expect_pop(p, 2, PGRES_TUPLES_OK);
    ck_assert_int_eq(pg_pipeline_ready(p), 1);
    expect_pop(p, 3, PGRES_COMMAND_OK);
    ck_assert_int_eq(pg_pipeline_ready(p), 0);
    ck_assert_int_eq(pg_pipeline_count(p) + pg_pipeline_held(p), 0);
    pg_pipeline_free(p);
}
END_TEST

START_TEST(a_failed_group_goes_again_alone_and_later_calls_wait_their_turn)
{
    struct pg_pipeline *p = pg_pipeline_create(8);
    for (intptr_t i = 1; i <= 4; i++)
        ck_assert(push(p, i, 100 + i));
    pg_pipeline_sent(p, 0, 1, false); /* group: calls 1 and 2 */
    pg_pipeline_sent(p, 1, 1, true);
    pg_pipeline_sent(p, 2, 1, false); /* group: calls 3 and 4 */
    pg_pipeline_sent(p, 3, 1, true);
    one_result(p, result(PGRES_COMMAND_OK));
    one_result(p, result(PGRES_FATAL_ERROR)); /* call 2 fails: call 1 rolled back too */
    ck_assert_int_eq(pg_pipeline_step(p, result(PGRES_PIPELINE_SYNC)), PG_PIPELINE_RETRY);
    ck_assert_int_eq(pg_pipeline_requeue(p), 2);
    ck_assert_int_eq(pg_pipeline_ready(p), 0);
    /* calls 1 and 2 are behind 3 and 4 on the wire, unsent, to go alone */
    ck_assert_int_eq(pg_pipeline_count(p), 4);
    ck_assert_ptr_eq(pg_pipeline_at(p, 2)->arg, (void *)1);
    ck_assert_ptr_eq(pg_pipeline_at(p, 3)->arg, (void *)2);
    ck_assert(pg_pipeline_alone(p, 2) && pg_pipeline_alone(p, 3));
    ck_assert(!pg_pipeline_alone(p, 0));
    ck_assert_int_eq(pg_pipeline_oldest_ms(p), 103);
    pg_pipeline_sent(p, 2, 1, true);
    pg_pipeline_sent(p, 3, 1, true);
    /* 3 and 4 commit, but wait for 1 and 2 to be handed back first */
    one_result(p, result(PGRES_TUPLES_OK));
    one_result(p, result(PGRES_TUPLES_OK));
    ck_assert_int_eq(pg_pipeline_step(p, result(PGRES_PIPELINE_SYNC)), PG_PIPELINE_ANSWERED);
    ck_assert_int_eq(pg_pipeline_ready(p), 0);
    ck_assert_int_eq(pg_pipeline_held(p), 2);
    ck_assert_int_eq(answer(p, PGRES_COMMAND_OK, PGRES_EMPTY_QUERY), PG_PIPELINE_ANSWERED);
    expect_pop(p, 1, PGRES_COMMAND_OK);
    ck_assert_int_eq(pg_pipeline_ready(p), 0);
    /* alone, call 2 fails by itself: its own error (one call, no retry) */
    ck_assert_int_eq(answer(p, PGRES_FATAL_ERROR, PGRES_EMPTY_QUERY), PG_PIPELINE_ANSWERED);
    expect_pop(p, 2, PGRES_FATAL_ERROR);
    expect_pop(p, 3, PGRES_TUPLES_OK);
    expect_pop(p, 4, PGRES_TUPLES_OK);
    ck_assert_int_eq(pg_pipeline_count(p) + pg_pipeline_held(p), 0);
    pg_pipeline_free(p);
}
END_TEST

START_TEST(held_calls_count_against_the_depth_and_drain_after_a_failure)
{
    struct pg_pipeline *p = pg_pipeline_create(3);
    for (intptr_t i = 1; i <= 3; i++)
        ck_assert(push(p, i, 0));
    pg_pipeline_sent(p, 0, 1, false);
    pg_pipeline_sent(p, 1, 1, true);
    pg_pipeline_sent(p, 2, 1, true);
    one_result(p, result(PGRES_PIPELINE_ABORTED));
    one_result(p, result(PGRES_PIPELINE_ABORTED));
    ck_assert_int_eq(pg_pipeline_step(p, result(PGRES_PIPELINE_SYNC)), PG_PIPELINE_RETRY);
    ck_assert_int_eq(pg_pipeline_requeue(p), 2);
    ck_assert_int_eq(answer(p, PGRES_TUPLES_OK, PGRES_EMPTY_QUERY), PG_PIPELINE_ANSWERED);
    ck_assert_int_eq(pg_pipeline_held(p), 1); /* call 3, behind 1 and 2 */
    ck_assert(!push(p, 4, 0));                /* the depth counts it */
    /* the connection fails: the held call first, answered, then the others, unanswered */
    struct pg_call call;
    PGresult *res;
    ck_assert(pg_pipeline_pop(p, &call, &res));
    ck_assert_ptr_eq(call.arg, (void *)3);
    PQclear(res);
    ck_assert(!pg_pipeline_pop(p, &call, &res));
    ck_assert_ptr_eq(call.arg, (void *)1);
    ck_assert(!pg_pipeline_pop(p, &call, &res));
    ck_assert_ptr_eq(call.arg, (void *)2);
    ck_assert_int_eq(pg_pipeline_count(p) + pg_pipeline_held(p), 0);
    pg_pipeline_free(p);
}
END_TEST

START_TEST(a_group_goes_out_in_key_order)
{
    struct pg_pipeline *p = pg_pipeline_create(8);
    static const char *const keys[] = {"k3", "k1", "k2", NULL};
    for (intptr_t i = 0; i < 4; i++) {
        struct pg_call call = {{"UPDATE t SET v = 1 WHERE k = $1", 1, {keys[i]}}, no_cb, (void *)i};
        ck_assert(pg_pipeline_push(p, &call, 0));
    }
    pg_pipeline_sort(p, 1); /* the first is sent already: it stays */
    ck_assert_ptr_eq(pg_pipeline_at(p, 0)->arg, (void *)0);
    ck_assert_ptr_eq(pg_pipeline_at(p, 1)->arg, (void *)3); /* NULL first */
    ck_assert_ptr_eq(pg_pipeline_at(p, 2)->arg, (void *)1);
    ck_assert_ptr_eq(pg_pipeline_at(p, 3)->arg, (void *)2);
    pg_pipeline_free(p);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("pg_pipeline");
    TCase *tc = tcase_create("fifo");
    tcase_add_test(tc, answers_go_to_their_calls_in_order);
    tcase_add_test(tc, prepare_then_query_keeps_the_query_result);
    tcase_add_test(tc, preparing_names_the_call_while_its_prepare_is_answered);
    tcase_add_test(tc, two_nulls_in_a_row_mean_the_connection_is_lost);
    tcase_add_test(tc, an_answer_nobody_asked_for_is_a_lost_connection);
    tcase_add_test(tc, the_fifo_is_bounded_and_wraps);
    tcase_add_test(tc, a_group_is_answered_at_its_sync_and_handed_back_in_order);
    tcase_add_test(tc, a_failed_group_goes_again_alone_and_later_calls_wait_their_turn);
    tcase_add_test(tc, held_calls_count_against_the_depth_and_drain_after_a_failure);
    tcase_add_test(tc, a_group_goes_out_in_key_order);
    suite_add_tcase(s, tc);
    return check_run(s, CK_FORK_GETENV) ? EXIT_FAILURE : EXIT_SUCCESS;
}
