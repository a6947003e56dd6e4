/*
 * contract_tests: the HTTP contract (../README.md, "The API every layer serves") as Check test
 * cases that any layer's test program can run against its own server, plus the resilience
 * behaviours every layer must have (500 concurrent clients, a client that hangs up mid-query,
 * PostgreSQL going away and coming back, graceful shutdown with requests in flight).
 *
 * A layer's test program starts a PostgreSQL (tk_pg_start), describes its server with
 * contract_set_target, and adds contract_tcase() and resilience_tcase() to its suite. Each test
 * starts a fresh server (in Check's forked child, so a crash fails only that test).
 */
#ifndef LAYERS_CONTRACT_TESTS_H
#define LAYERS_CONTRACT_TESTS_H

#include "testkit.h"

#include <check.h>

struct contract_target {
    const char *binary;     /* path of the server executable */
    const char *layer;      /* "1-connection-pooling", as /health reports it */
    int port;               /* where the server listens during tests */
    struct tk_pg *pg;       /* its PostgreSQL (stopped and restarted by some tests) */
    const char *const *env; /* extra "NAME=value" settings, NULL-terminated, or NULL */
    bool sheds_load;        /* may answer a burst with the contract's 503 (layer 0: a new
                               connection per request runs into PostgreSQL's limits) */
};

void contract_set_target(const struct contract_target *target);
const struct contract_target *contract_target(void);

/* Starts the target's server with DATABASE_URL and the extra settings plus `more`. */
bool contract_start_server(struct tk_server *server, const char *const *more);

TCase *contract_tcase(void);
TCase *resilience_tcase(void);

/*
 * A layer test program's whole main(): runs the contract, the resilience cases and the layer's
 * own test case against `target`, then destroys its PostgreSQL. Returns the exit code.
 */
int contract_run_suite(const struct contract_target *target, TCase *layer_tests);

/*
 * The two cases without the tests named in `skip` (NULL-terminated, by function name), for a
 * layer whose contract row departs from what a test checks; it tests its own version instead.
 */
TCase *contract_tcase_without(const char *const *skip);
TCase *resilience_tcase_without(const char *const *skip);

#endif
