/*
 * layer_suite: the contract, the resilience cases and a layer's own case, run as one suite
 * (see layer_suite.h).
 */
#include "layer_suite.h"

#include "check_run.h"
#include "openapi_tests.h"
#include "resilience_tests.h"

static int run(const struct contract_target *t, TCase *layer_tests,
               const char *const *contract_skip, const char *const *resilience_skip)
{
    contract_set_target(t);
    Suite *suite = suite_create(t->layer);
    suite_add_tcase(suite, contract_tcase_without(contract_skip));
    suite_add_tcase(suite, resilience_tcase_without(resilience_skip));
    suite_add_tcase(suite, hung_database_tcase_without(resilience_skip));
    suite_add_tcase(suite, openapi_tcase());
    suite_add_tcase(suite, api_docs_tcase());
    suite_add_tcase(suite, layer_tests);
    int failed = check_run(suite, CK_FORK_GETENV);
    tk_pg_destroy(t->pg);
    return failed == 0 ? 0 : 1;
}

int layer_suite_run(const struct contract_target *t, TCase *layer_tests)
{
    return run(t, layer_tests, NULL, NULL);
}

int layer_suite_run_without(const struct contract_target *t, TCase *layer_tests,
                            const char *const *contract_skip, const char *const *resilience_skip)
{
    return run(t, layer_tests, contract_skip, resilience_skip);
}
