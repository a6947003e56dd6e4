/*
 * health: the GET /health reply, built the same way by every layer.
 *
 * A layer's health is the state of its dependencies, each one either required (without it
 * nothing useful is served: the primary database) or optional (without it requests are still
 * served, with less headroom: a cache, a replica, one shard of several). The verdict follows
 * from those two kinds and nothing else:
 *   every dependency answers            -> 200 {"status":"healthy"}
 *   an optional one does not            -> 200 {"status":"degraded"}
 *   a required one does not             -> 503 {"status":"unhealthy"}
 * Members are named as the Python version names them, so its clients and tests work unchanged
 * (CONTRACT.md lists them per layer), each "healthy" or "unavailable"; a layer may add a group
 * (an object of members, such as layer 4's "shards") and detail of its own.
 *
 * The checks themselves (a SELECT 1, a cache's last answer) stay with the layer: they differ per
 * layer and run asynchronously; this module only turns their answers into the reply.
 */
#ifndef LAYERS_HEALTH_H
#define LAYERS_HEALTH_H

#include <jansson.h>
#include <stdbool.h>

#include "pgconn.h"

struct event_base;
struct http_request;

enum health_need {
    HEALTH_REQUIRED, /* down: 503 unhealthy */
    HEALTH_OPTIONAL, /* down: 200 degraded */
};

struct health {
    json_t *body;        /* the reply being built: status, layer, members */
    bool required_down;  /* a required dependency did not answer */
    bool optional_down;  /* an optional dependency did not answer */
};

/* Starts a reply for the layer named as /health reports it ("2-read-cache"). */
void health_begin(struct health *health, const char *layer);

/* Adds member NAME ("healthy" or "unavailable") and counts it in the verdict. */
void health_member(struct health *health, const char *name, bool up, enum health_need need);

/* Counts a dependency in the verdict without a member of its own (its members are in a group). */
void health_note(struct health *health, bool up, enum health_need need);

/* Adds (once) and returns an object member NAME, e.g. "shards": fill it with health_set(). */
json_t *health_group(struct health *health, const char *name);

/* Sets member NAME of OBJECT to "healthy" or "unavailable" (no effect on the verdict). */
void health_set(json_t *object, const char *name, bool up);

/* Adds the verdict and answers: 200 healthy or degraded, 503 unhealthy. Consumes the body. */
void health_reply(struct http_request *req, struct health *health);

/*
 * A health check has a deadline of its own, shorter than a query's: a database that hangs must
 * make /health say so at once (a load balancer is asking), not after DB_QUERY_TIMEOUT_MS.
 * Returns a call to run instead of `call`: its callback gets the answer, or (NULL, PG_UNAVAILABLE)
 * when HEALTH_TIMEOUT_MS passes first; a late answer is then dropped.
 */
#define HEALTH_TIMEOUT_MS 1000
struct pg_call health_call_within(struct event_base *base, const struct pg_call *call);

/* The same with any deadline (layer 10: what is left of a request's budget). The parameters
 * are copied: the caller may free its strings once told, even while the query still runs. */
struct pg_call pg_call_within(struct event_base *base, const struct pg_call *call,
                              long timeout_ms);

#endif
