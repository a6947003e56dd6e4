/*
 * api_docs: the layer's API described and tried in a browser, served by the core.
 *
 *   GET /openapi.json   the layer's OpenAPI 3.1 document (merged at build time, see openapi/)
 *   GET /docs           a page that runs Swagger UI on /openapi.json
 *   GET /docs/{asset}   Swagger UI's files (the npm package swagger-ui-dist, pinned in
 *                       openapi/package.json, installed by `./layers deps` into the state
 *                       directory; DOCS_DIR names it)
 *
 * The assets are read once at start-up, a fixed list of file names with a size limit each, and
 * served from memory: a request never touches the disk (no blocking call on the event loop) and
 * a path cannot reach any other file (`/docs/..%2F..%2Fetc%2Fpasswd` is just a name not on the
 * list: 404). Without the assets, /docs answers 404 saying how to install them; /openapi.json
 * works regardless, being compiled into the server.
 *
 * The document also keeps the server honest: api_docs_check_routes, run at start-up, refuses a
 * route table that differs from the document's operations (a route added without its document,
 * or a documented one that is not served), so that the two cannot drift apart unnoticed.
 */
#ifndef LAYERS_API_DOCS_H
#define LAYERS_API_DOCS_H

#include <stdbool.h>
#include <stddef.h>

struct api_docs;
struct http_server;
struct router;

/* document: the layer's OpenAPI document as JSON text (NULL: the layer has none). assets_dir:
 * swagger-ui-dist's directory ("" or NULL: not installed). Never fails: what is missing is
 * answered with 404 and logged once here. */
struct api_docs *api_docs_create(const char *document, const char *assets_dir);
void api_docs_free(struct api_docs *docs);

/* Whether the Swagger UI assets were loaded. */
bool api_docs_installed(const struct api_docs *docs);

/* Adds GET /openapi.json, GET /docs and GET /docs/{asset} to the server. */
void api_docs_routes(struct api_docs *docs, struct http_server *http);

/* Every route in `router` is an operation of the document, and every operation is a route.
 * Writes the first difference into err. True when the layer has no document (nothing to
 * compare) and when they agree. */
bool api_docs_check_routes(const struct api_docs *docs, const struct router *router, char *err,
                           size_t errlen) __attribute__((warn_unused_result));

#endif
