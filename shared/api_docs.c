/*
 * api_docs: /openapi.json, /docs and Swagger UI's assets from memory (see api_docs.h).
 */
#include "api_docs.h"

#include "http.h"
#include "log.h"
#include "router.h"
#include "xalloc.h"

#include <event2/buffer.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ASSET_MAX_BYTES (8L << 20) /* swagger-ui-bundle.js is 1.7 MB in 5.35 */

/* The files /docs needs, and all /docs/{asset} will ever serve. */
static const struct asset_kind {
    const char *name;         /* file name in swagger-ui-dist, and the URL's last segment */
    const char *content_type; /* its Content-Type */
    bool required;            /* /docs cannot work without it */
} asset_kinds[] = {
    {"swagger-ui.css", "text/css; charset=utf-8", true},
    {"swagger-ui-bundle.js", "text/javascript; charset=utf-8", true},
    {"favicon-32x32.png", "image/png", false},
    {"favicon-16x16.png", "image/png", false},
};
#define ASSET_COUNT (sizeof asset_kinds / sizeof asset_kinds[0])

/* Swagger UI pointed at this server's document; the assets it loads are on the list above. */
static const char docs_page[] =
    "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
    "<title>API docs</title>\n"
    "<link rel=\"stylesheet\" href=\"/docs/swagger-ui.css\">\n"
    "<link rel=\"icon\" type=\"image/png\" href=\"/docs/favicon-32x32.png\" sizes=\"32x32\">\n"
    "</head>\n<body>\n<div id=\"swagger-ui\"></div>\n"
    "<script src=\"/docs/swagger-ui-bundle.js\"></script>\n"
    "<script>\nwindow.ui = SwaggerUIBundle({url: \"/openapi.json\", dom_id: \"#swagger-ui\",\n"
    "  deepLinking: true});\n</script>\n</body>\n</html>\n";

static const char not_installed[] = "API docs not installed: run ./layers deps";

struct asset {
    char *data; /* the file's bytes, NULL when absent */
    size_t len; /* their count */
};

struct api_docs {
    char *document;                /* compact JSON text, NULL when the layer has none */
    json_t *parsed;                /* the same, parsed (for the route check) */
    struct asset assets[ASSET_COUNT]; /* in asset_kinds order */
    bool installed;                /* every required asset was loaded */
};

/* Reads a whole file of at most ASSET_MAX_BYTES (start-up only: this blocks). */
static bool read_file(const char *path, struct asset *out)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return false;
    bool ok = false;
    if (fseek(f, 0, SEEK_END) == 0) {
        long size = ftell(f);
        if (size >= 0 && size <= ASSET_MAX_BYTES && fseek(f, 0, SEEK_SET) == 0) {
            out->data = xmalloc((size_t)size + 1);
            out->len = fread(out->data, 1, (size_t)size, f);
            ok = out->len == (size_t)size;
        } else if (size > ASSET_MAX_BYTES) {
            LOG_WARN("api docs: %s is larger than %ld bytes; not served", path, ASSET_MAX_BYTES);
        }
    }
    fclose(f);
    if (!ok) {
        free(out->data);
        *out = (struct asset){NULL, 0};
    }
    return ok;
}

static void load_assets(struct api_docs *docs, const char *dir)
{
    docs->installed = dir != NULL && dir[0] != '\0';
    for (size_t i = 0; docs->installed && i < ASSET_COUNT; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, asset_kinds[i].name);
        if (!read_file(path, &docs->assets[i]) && asset_kinds[i].required) {
            LOG_WARN("api docs: cannot read %s: /docs answers 404 (run ./layers deps)", path);
            docs->installed = false;
        }
    }
    if (dir == NULL || dir[0] == '\0')
        LOG_INFO("api docs: DOCS_DIR is not set: /docs answers 404 (./layers env sets it)");
}

struct api_docs *api_docs_create(const char *document, const char *assets_dir)
{
    struct api_docs *docs = xcalloc(1, sizeof *docs);
    if (document != NULL) {
        json_error_t error;
        docs->parsed = json_loads(document, 0, &error);
        if (docs->parsed == NULL)
            LOG_ERROR("api docs: the OpenAPI document is not JSON: %s", error.text);
        else
            docs->document = xstrdup(document);
    }
    load_assets(docs, assets_dir);
    return docs;
}

void api_docs_free(struct api_docs *docs)
{
    if (docs == NULL)
        return;
    for (size_t i = 0; i < ASSET_COUNT; i++)
        free(docs->assets[i].data);
    json_decref(docs->parsed);
    free(docs->document);
    free(docs);
}

bool api_docs_installed(const struct api_docs *docs)
{
    return docs->installed;
}

/* ---- handlers ---- */

/* Static bytes that outlive every reply (the docs are freed after the HTTP server). */
static void reply_static(struct http_request *req, const char *type, const char *data,
                         size_t len)
{
    struct evbuffer *buf = evbuffer_new();
    evbuffer_add_reference(buf, data, len, NULL, NULL);
    http_reply_buffer(req, 200, type, buf);
    evbuffer_free(buf);
}

static void reply_not_found(struct http_request *req, const char *detail)
{
    http_reply_json(req, 404, json_pack("{s:s}", "detail", detail));
}

static void handle_document(struct http_request *req, void *arg)
{
    struct api_docs *docs = arg;
    if (docs->document == NULL) {
        reply_not_found(req, "This layer has no API document");
        return;
    }
    reply_static(req, "application/json", docs->document, strlen(docs->document));
}

static void handle_page(struct http_request *req, void *arg)
{
    struct api_docs *docs = arg;
    if (!docs->installed) {
        reply_not_found(req, not_installed);
        return;
    }
    reply_static(req, "text/html; charset=utf-8", docs_page, sizeof docs_page - 1);
}

static void handle_asset(struct http_request *req, void *arg)
{
    struct api_docs *docs = arg;
    if (!docs->installed) {
        reply_not_found(req, not_installed);
        return;
    }
    /* Compared as sent: a name on the list has nothing to percent-decode, and anything else
     * (an escaped slash or dot included) is simply not on the list. */
    struct route_param name = http_request_param(req, 0);
    for (size_t i = 0; i < ASSET_COUNT; i++) {
        if (strlen(asset_kinds[i].name) != name.len ||
            memcmp(asset_kinds[i].name, name.raw, name.len) != 0 || docs->assets[i].data == NULL)
            continue;
        http_request_set_header(req, "Cache-Control", "public, max-age=3600");
        reply_static(req, asset_kinds[i].content_type, docs->assets[i].data, docs->assets[i].len);
        return;
    }
    reply_not_found(req, "Not Found");
}

void api_docs_routes(struct api_docs *docs, struct http_server *http)
{
    http_route(http, HTTP_GET, "/openapi.json", handle_document, docs);
    http_route(http, HTTP_GET, "/docs", handle_page, docs);
    http_route(http, HTTP_GET, "/docs/{asset}", handle_asset, docs);
}

/* ---- the route table against the document ---- */

static const char *operation_name(enum http_method method)
{
    switch (method) {
    case HTTP_GET:
        return "get";
    case HTTP_HEAD:
        return "head";
    case HTTP_POST:
        return "post";
    case HTTP_PUT:
        return "put";
    case HTTP_DELETE:
        return "delete";
    case HTTP_PATCH:
        return "patch";
    case HTTP_OPTIONS:
        return "options";
    case HTTP_OTHER:
        break;
    }
    return "trace";
}

/* Whether the router has a route for this method name ("get") and template. */
static bool router_has(const struct router *router, const char *operation, const char *path)
{
    for (int i = 0; i < router_count(router); i++)
        if (strcmp(router_template(router, i), path) == 0 &&
            strcmp(operation_name(router_method(router, i)), operation) == 0)
            return true;
    return false;
}

bool api_docs_check_routes(const struct api_docs *docs, const struct router *router, char *err,
                           size_t errlen)
{
    if (docs->parsed == NULL)
        return true;
    json_t *paths = json_object_get(docs->parsed, "paths");
    for (int i = 0; i < router_count(router); i++) {
        const char *operation = operation_name(router_method(router, i));
        const char *path = router_template(router, i);
        if (json_object_get(json_object_get(paths, path), operation) == NULL) {
            snprintf(err, errlen,
                     "route %s %s is not in the layer's OpenAPI document (its openapi.json)",
                     http_method_name(router_method(router, i)), path);
            return false;
        }
    }
    static const char *const operations[] = {"get",     "head",  "post",  "put",
                                             "delete",  "patch", "options", "trace"};
    const char *path;
    json_t *item;
    json_object_foreach(paths, path, item) {
        for (size_t o = 0; o < sizeof operations / sizeof operations[0]; o++) {
            if (json_object_get(item, operations[o]) != NULL &&
                !router_has(router, operations[o], path)) {
                snprintf(err, errlen, "the OpenAPI document has %s %s, which is not a route",
                         operations[o], path);
                return false;
            }
        }
    }
    return true;
}
