/*
 * contract_tests: the HTTP contract (../README.md, "The API every layer serves") as Check test
 * cases that any layer's test program can run against its own server, plus the resilience
 * behaviours every layer must have (500 concurrent clients, a client that hangs up mid-query,
 * PostgreSQL going away and coming back, graceful shutdown with requests in flight).
 *
 * A layer's test program starts a PostgreSQL (tk_pg_start), describes its server with
 * contract_set_target, and adds contract_tcase() (and resilience_tcase(), resilience_tests.h) to
 * its suite, or lets layer_suite_run (layer_suite.h) do all of it. Each test starts a fresh
 * server (in Check's forked child, so a crash fails only that test).
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

/* The other databases holding records besides the target's (layer 4's other shards),
 * NULL-terminated: the resilience tests that hold requests in flight lock them all. */
void contract_set_other_pgs(struct tk_pg *const *pgs);
struct tk_pg *const *contract_other_pgs(void);

/* Called by those tests right after they have locked `records`, until the lock holds for the
 * layer's reads too (layer 3: until the replicas have replayed it); NULL: nothing to wait for. */
void contract_set_after_lock(void (*after_lock)(void));
void contract_after_lock(void);

/* Starts the target's server with DATABASE_URL and the extra settings plus `more`. */
bool contract_start_server(struct tk_server *server, const char *const *more);

TCase *contract_tcase(void);

/*
 * The contract case without the tests named in `skip` (NULL-terminated, by function name), for a
 * layer whose contract row departs on purpose from what a test checks (layer 6 answers writes
 * with "Write queued successfully"); the layer tests its own version of each test it skips.
 * contract_tcase() is contract_tcase_without(NULL).
 */
TCase *contract_tcase_without(const char *const *skip);

#endif
