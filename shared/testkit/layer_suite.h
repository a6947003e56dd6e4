/*
 * layer_suite: a layer's black-box test program in one call. It runs the HTTP contract
 * (contract_tests.h), the resilience cases (resilience_tests.h), the agreement of the layer's
 * OpenAPI document with its server (openapi_tests.h) and the layer's own test case against the
 * layer's server, so that every layer is held to the same promises before its own.
 */
#ifndef LAYERS_LAYER_SUITE_H
#define LAYERS_LAYER_SUITE_H

#include "contract_tests.h"

/* A layer test program's whole main(): runs the three cases and the hung-database case
 * (hung_database_tcase) against `target`, then destroys its PostgreSQL. Returns the exit code. */
int layer_suite_run(const struct contract_target *target, TCase *layer_tests);

/* The same without the shared tests named in the two lists (NULL-terminated, or NULL), for a
 * layer that tests its own version of them (contract_tcase_without); the resilience list also
 * names hung-database tests to leave out. */
int layer_suite_run_without(const struct contract_target *target, TCase *layer_tests,
                            const char *const *contract_skip,
                            const char *const *resilience_skip);

#endif
