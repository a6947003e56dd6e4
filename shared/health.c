/*
 * health: the GET /health reply, built the same way by every layer (see health.h).
 */
#include "health.h"

#include "http.h"

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
