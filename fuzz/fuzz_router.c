/*
 * fuzz_router: router_match over the contract's route table with any method and path. The
 * first byte picks the method; the rest is the path (NUL-terminated, as evhttp hands it over).
 * A match must point inside the path and carry no more parameters than the template has.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "router.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct router *contract_router(void)
{
    static struct router *router; /* built once: the table is fixed at start-up, as a server's */
    if (router != NULL)
        return router;
    router = router_create();
    (void)router_add(router, HTTP_GET, "/read/{key}", NULL);
    (void)router_add(router, HTTP_HEAD, "/read/{key}", NULL);
    (void)router_add(router, HTTP_POST, "/write", NULL);
    (void)router_add(router, HTTP_GET, "/health", NULL);
    (void)router_add(router, HTTP_GET, "/metrics", NULL);
    (void)router_add(router, HTTP_GET, "/stats", NULL);
    (void)router_add(router, HTTP_GET, "/docs", NULL);
    (void)router_add(router, HTTP_GET, "/openapi.json", NULL);
    (void)router_add(router, HTTP_DELETE, "/cache/{key}", NULL);
    (void)router_add(router, HTTP_GET, "/a/{x}/b/{y}", NULL);
    return router;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    enum http_method method = (enum http_method)(1u << (data[0] % 8));
    char *path = malloc(size);
    memcpy(path, data + 1, size - 1);
    path[size - 1] = '\0';
    size_t path_len = strlen(path);

    struct route_match match;
    enum router_result result = router_match(contract_router(), method, path, &match);
    if (result == ROUTER_MATCH) {
        if (match.param_count < 0 || match.param_count > ROUTER_MAX_PARAMS)
            abort();
        for (int i = 0; i < match.param_count; i++) {
            const struct route_param *p = &match.params[i];
            if (p->raw < path || p->raw + p->len > path + path_len)
                abort();
        }
    } else if (result == ROUTER_METHOD_NOT_ALLOWED) {
        char allow[128];
        router_format_allow(match.allowed, allow, sizeof allow);
    }
    free(path);
    return 0;
}
