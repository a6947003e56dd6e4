/*
 * resilience_tests: what every layer must survive, as one Check test case (see
 * resilience_tests.c): 500 concurrent clients, a client that hangs up mid-query, PostgreSQL going
 * away and coming back, graceful shutdown with requests in flight. Runs against the server that
 * contract_set_target (contract_tests.h) describes.
 */
#ifndef LAYERS_RESILIENCE_TESTS_H
#define LAYERS_RESILIENCE_TESTS_H

#include <check.h>

TCase *resilience_tcase(void);
/* The database hangs (SIGSTOP): /health says 503 within its own deadline, and recovers after
 * SIGCONT. For the layers whose /health needs their target's database. */
TCase *hung_database_tcase(void);
/* Without the tests named in skip (see contract_tcase_without). */
TCase *hung_database_tcase_without(const char *const *skip);
/* Without the tests named in skip (see contract_tcase_without). */
TCase *resilience_tcase_without(const char *const *skip);

#endif
