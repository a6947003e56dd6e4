/*
 * Unit tests for single_flight.c: the first miss leads and the others join it, in order; keys
 * are independent (binary-safe, including colliding buckets); a forgotten flight takes no
 * newcomers but still ends with its own leader's answer.
 */
#include "single_flight.h"

#include "check_run.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool join(struct single_flight *sf, const char *key, void *waiter)
{
    return single_flight_join(sf, key, strlen(key), waiter);
}

static void **finish(struct single_flight *sf, const char *key, void *leader, size_t *count)
{
    return single_flight_finish(sf, key, strlen(key), leader, count);
}

START_TEST(first_leads_others_join_in_order)
{
    struct single_flight *sf = single_flight_create();
    int a, b, c;
    ck_assert(join(sf, "k", &a));
    ck_assert(!join(sf, "k", &b));
    ck_assert(!join(sf, "k", &c));
    size_t n;
    void **w = finish(sf, "k", &a, &n);
    ck_assert_uint_eq(n, 3); /* the leader first, then its waiters */
    ck_assert_ptr_eq(w[0], &a);
    ck_assert_ptr_eq(w[1], &b);
    ck_assert_ptr_eq(w[2], &c);
    free(w);
    ck_assert(join(sf, "k", &b)); /* the flight is over: a new one starts */
    w = finish(sf, "k", &b, &n);
    ck_assert_uint_eq(n, 1);
    ck_assert_ptr_eq(w[0], &b);
    free(w);
    single_flight_free(sf);
}
END_TEST

START_TEST(keys_are_independent)
{
    struct single_flight *sf = single_flight_create();
    int w[2000];
    char key[32];
    for (int i = 0; i < 1000; i++) { /* more keys than buckets: chains are shared */
        snprintf(key, sizeof key, "key:%d", i);
        ck_assert(join(sf, key, &w[i]));
    }
    ck_assert(single_flight_join(sf, "a\0b", 3, &w[1000])); /* binary-safe: not "a" */
    ck_assert(join(sf, "a", &w[1001]));
    for (int i = 0; i < 1000; i++) {
        snprintf(key, sizeof key, "key:%d", i);
        ck_assert(!join(sf, key, &w[1002]));
        size_t n;
        void **out = finish(sf, key, &w[i], &n);
        ck_assert_uint_eq(n, 2);
        ck_assert_ptr_eq(out[0], &w[i]);
        ck_assert_ptr_eq(out[1], &w[1002]);
        free(out);
    }
    single_flight_free(sf); /* frees the flights still open */
}
END_TEST

START_TEST(a_forgotten_flight_takes_no_newcomers)
{
    struct single_flight *sf = single_flight_create();
    int old_leader, early, late_leader, late;
    ck_assert(join(sf, "k", &old_leader));
    ck_assert(!join(sf, "k", &early));
    single_flight_forget(sf, "k", 1);       /* a write to k committed */
    ck_assert(join(sf, "k", &late_leader)); /* after the write: a new query */
    ck_assert(!join(sf, "k", &late));
    single_flight_forget(sf, "other", 5); /* nothing to forget: no effect */

    size_t n;
    void **w = finish(sf, "k", &late_leader, &n); /* answers may come in any order */
    ck_assert_uint_eq(n, 2);
    ck_assert_ptr_eq(w[0], &late_leader);
    ck_assert_ptr_eq(w[1], &late);
    free(w);
    w = finish(sf, "k", &old_leader, &n);
    ck_assert_uint_eq(n, 2);
    ck_assert_ptr_eq(w[0], &old_leader);
    ck_assert_ptr_eq(w[1], &early);
    free(w);
    w = finish(sf, "k", &old_leader, &n); /* already ended: the leader alone */
    ck_assert_uint_eq(n, 1);
    ck_assert_ptr_eq(w[0], &old_leader);
    free(w);
    single_flight_free(sf);
}
END_TEST

START_TEST(a_leader_without_a_flight_answers_alone)
{
    struct single_flight *sf = single_flight_create();
    int leader, alone, waiter;
    ck_assert(join(sf, "k", &leader));
    ck_assert(!join(sf, "k", &waiter));
    size_t n;
    void **w = finish(sf, "k", &alone, &n); /* never joined: leaves the open flight alone */
    ck_assert_uint_eq(n, 1);
    ck_assert_ptr_eq(w[0], &alone);
    free(w);
    w = finish(sf, "k", &leader, &n);
    ck_assert_uint_eq(n, 2);
    ck_assert_ptr_eq(w[1], &waiter);
    free(w);
    single_flight_free(sf);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("single_flight");
    TCase *tc = tcase_create("single_flight");
    tcase_add_test(tc, first_leads_others_join_in_order);
    tcase_add_test(tc, keys_are_independent);
    tcase_add_test(tc, a_forgotten_flight_takes_no_newcomers);
    tcase_add_test(tc, a_leader_without_a_flight_answers_alone);
    suite_add_tcase(s, tc);
    return check_run(s, CK_FORK_GETENV) ? EXIT_FAILURE : EXIT_SUCCESS;
}
