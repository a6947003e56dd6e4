/*
 * requests: what layer 9's request handlers share (requests.h).
 */
#include "requests.h"

#include "http.h"
#include "validate.h"
#include "xalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

char *region_sql(const char *format, int region)
{
    size_t len = strlen(format) + 16;
    char *sql = xmalloc(len);
    snprintf(sql, len, format, region_suffix(region));
    return sql;
}

long long wall_ms(void)
{
    struct timeval now;
    gettimeofday(&now, NULL);
    return (long long)now.tv_sec * 1000 + now.tv_usec / 1000;
}

long long monotonic_us(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (long long)now.tv_sec * 1000000 + now.tv_nsec / 1000;
}

double elapsed_ms(long long start_us)
{
    return (double)(monotonic_us() - start_us) / 1000.0;
}

double round2(double x)
{
    return (double)(long long)(x * 100 + (x >= 0 ? 0.5 : -0.5)) / 100;
}

bool healthy_set(const struct layer *layer, bool healthy[REGION_COUNT])
{
    bool any = false;
    for (int i = 0; i < REGION_COUNT; i++) {
        healthy[i] = layer->regions[i].healthy;
        any = any || healthy[i];
    }
    return any;
}

int serving_region(const struct layer *layer, int client)
{
    bool healthy[REGION_COUNT];
    healthy_set(layer, healthy);
    return region_serving(&layer->matrix, client, healthy);
}

static void add_region_error(json_t *errors, const char *place, const char *field,
                             const char *value, size_t len)
{
    char msg[256];
    snprintf(msg, sizeof msg, "Value error, unknown region '%.*s': valid regions are %s",
             (int)(len > 64 ? 64 : len), value, region_list());
    validation_error_add(errors, "value_error", place, field, msg);
}

/* The client's region: X-Region, else the body's "region" (body may be NULL), else the default.
 * -1 with an error in errors for a name that is no region. */
int client_region(struct http_request *req, const json_t *body, json_t *errors)
{
    struct layer *layer = http_request_arg(req);
    const char *name = http_request_header(req, REGION_HEADER);
    if (name != NULL) {
        int region = region_find(name, strlen(name));
        if (region < 0)
            add_region_error(errors, "header", "x-region", name, strlen(name));
        return region;
    }
    json_t *member = body != NULL ? json_object_get(body, "region") : NULL;
    if (member == NULL || json_is_null(member))
        return layer->default_index;
    if (!json_is_string(member)) {
        validation_error_add(errors, "string_type", "body", "region",
                             "Input should be a valid string");
        return -1;
    }
    int region = region_find(json_string_value(member), json_string_length(member));
    if (region < 0)
        add_region_error(errors, "body", "region", json_string_value(member),
                         json_string_length(member));
    return region;
}

/* The value of query parameter name in req's query string, or NULL (copied into out). */
const char *query_param(struct http_request *req, const char *name, char *out, size_t outlen)
{
    const char *query = http_request_query(req);
    size_t name_len = strlen(name);
    for (const char *p = query; p != NULL && *p != '\0';) {
        const char *end = strchr(p, '&');
        size_t len = end != NULL ? (size_t)(end - p) : strlen(p);
        if (len > name_len && strncmp(p, name, name_len) == 0 && p[name_len] == '=') {
            size_t vlen = len - name_len - 1;
            if (vlen >= outlen)
                vlen = outlen - 1;
            memcpy(out, p + name_len + 1, vlen);
            out[vlen] = '\0';
            return out;
        }
        p = end != NULL ? end + 1 : NULL;
    }
    return NULL;
}

/* How far behind region r may be: the largest age of another healthy region's heartbeat, now
 * (its age when the last heartbeat read it, plus the time since). A value from r's cache is as
 * stale as r's tables: a row applied there invalidates it (region_cache.h). */
double region_staleness(const struct layer *layer, int r)
{
    double worst = 0;
    for (int p = 0; p < REGION_COUNT; p++) {
        if (p == r || !layer->regions[p].healthy)
            continue;
        double stale = layer->regions[r].stale_ms[p];
        if (stale < 0)
            return -1;
        stale += elapsed_ms(layer->regions[r].stale_at_us[p]); /* older by now */
        if (stale > worst)
            worst = stale;
    }
    return worst;
}
