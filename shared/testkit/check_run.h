/*
 * check_run: how every test program of this repository runs its Check suite.
 *
 * One place for the runner's set-up, so that a test program's main() lists its cases and
 * nothing else. CK_FORK_GETENV runs each test in a child (a crash fails only that test) unless
 * the environment says CK_FORK=no (for a debugger); CK_NOFORK is for tests that share state in
 * order (one Redis, their own child processes).
 */
#ifndef LAYERS_CHECK_RUN_H
#define LAYERS_CHECK_RUN_H

#include <check.h>
#include <stdbool.h>
#include <string.h>

/* Runs the suite (and frees it); returns how many tests failed. */
static inline int check_run(Suite *suite, enum fork_status fork)
{
    SRunner *runner = srunner_create(suite);
    srunner_set_fork_status(runner, fork);
    srunner_run_all(runner, CK_NORMAL);
    int failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    return failed;
}

/*
 * A test case: its name, its fixture (run around each test, in the test's child process; NULL for
 * none), its timeout in seconds, and its tests, NULL-terminated:
 *   check_tcase("cache-aside", empty_redis, stop_server, 60, (const TTest *const[]){a, b, NULL})
 */
static inline TCase *check_tcase(const char *name, SFun setup, SFun teardown, double timeout_s,
                                 const TTest *const *tests)
{
    TCase *tc = tcase_create(name);
    if (setup != NULL || teardown != NULL)
        tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, timeout_s);
    for (const TTest *const *t = tests; *t != NULL; t++)
        tcase_add_test(tc, *t);
    return tc;
}

/* Removes the tests named in skip (by function name, NULL-terminated; NULL: none) from tests,
 * in place, for a shared case a layer runs without the tests it replaces. Returns tests. */
static inline const TTest **check_tests_without(const TTest **tests, const char *const *skip)
{
    const TTest **kept = tests;
    for (const TTest **t = tests; *t != NULL; t++) {
        bool skipped = false;
        for (const char *const *name = skip; name != NULL && *name != NULL; name++)
            skipped = skipped || strcmp((*t)->name, *name) == 0;
        if (!skipped)
            *kept++ = *t;
    }
    *kept = NULL;
    return tests;
}

#endif
