/*
 * health: the GET /health reply, built the same way by every layer (see health.h).
 */
#include "health.h"

#include "http.h"
#include "xalloc.h"

#include <event2/event.h>
#include <stdlib.h>

void health_begin(struct health *health, const char *layer)
{
    /* "status" first, for the reader; its value is decided by health_reply() */
    *health = (struct health){.body = json_pack("{s:s, s:s}", "status", "", "layer", layer)};
}

void health_set(json_t *object, const char *name, bool up)
{
    json_object_set_new(object, name, json_string(up ? "healthy" : "unavailable"));
}

void health_note(struct health *health, bool up, enum health_need need)
{
    if (up)
        return;
    if (need == HEALTH_REQUIRED)
        health->required_down = true;
    else
        health->optional_down = true;
}

void health_member(struct health *health, const char *name, bool up, enum health_need need)
{
    health_set(health->body, name, up);
    health_note(health, up, need);
}

json_t *health_group(struct health *health, const char *name)
{
    json_t *group = json_object_get(health->body, name);
    if (!group) {
        group = json_object();
        json_object_set_new(health->body, name, group);
    }
    return group;
}

void health_reply(struct http_request *req, struct health *health)
{
    const char *status = health->required_down  ? "unhealthy"
                         : health->optional_down ? "degraded"
                                                 : "healthy";
    json_object_set_new(health->body, "status", json_string(status));
    http_reply_json(req, health->required_down ? 503 : 200, health->body);
    health->body = NULL;
}

/* A query under way with its own deadline (pg_call_within). */
struct deadline_call {
    struct pg_call inner;         /* the caller's call: its callback is told once */
    struct event *timer;          /* the deadline */
    bool expired;                 /* the deadline told it: the answer, when it comes, is dropped */
    char *values[PG_MAX_PARAMS];  /* copies of the parameters: the query outlives an expired
                                     caller, which frees its own strings when told */
};

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
    struct deadline_call *d = arg;
    (void)fd, (void)what;
    d->expired = true;
    d->inner.cb(NULL, PG_UNAVAILABLE, d->inner.arg); /* the query's answer frees d */
}

static void on_answer(PGresult *res, enum pg_status status, void *arg)
{
    struct deadline_call *d = arg;
    if (!d->expired)
        d->inner.cb(res, status, d->inner.arg);
    event_free(d->timer);
    for (int i = 0; i < d->inner.statement.nparams; i++)
        free(d->values[i]);
    free(d);
}

struct pg_call pg_call_within(struct event_base *base, const struct pg_call *call,
                              long timeout_ms)
{
    struct deadline_call *d = xcalloc(1, sizeof *d);
    d->inner = *call;
    d->timer = evtimer_new(base, on_deadline, d);
    struct timeval t = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    event_add(d->timer, &t);
    struct pg_call wrapped = *call;
    for (int i = 0; i < call->statement.nparams; i++) {
        d->values[i] = call->statement.values[i] ? xstrdup(call->statement.values[i]) : NULL;
        wrapped.statement.values[i] = d->values[i];
    }
    wrapped.cb = on_answer;
    wrapped.arg = d;
    return wrapped;
}

struct pg_call health_call_within(struct event_base *base, const struct pg_call *call)
{
    return pg_call_within(base, call, HEALTH_TIMEOUT_MS);
}
