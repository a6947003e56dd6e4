/*
 * openapi_tests: the layer's OpenAPI document and its server agree, as one Check test case that
 * every layer's black-box suite runs (layer_suite.h), against the target of contract_tests.h.
 *
 * The server is driven from its own document, fetched from GET /openapi.json: every documented
 * operation is called with each of its documented examples (a request example and the response
 * example of the same name say which status to expect: "missing_key" -> 422), and every reply
 * must have a documented status, a documented content type and a body that validates against
 * the documented schema (json_schema.h). Then the error cases the contract makes provokable
 * without stopping a backend: 404 (unknown path), 405 with the documented methods in Allow (on
 * every path), 413 (on every operation with a body). Every example in the document must
 * validate against its own schema. That every route the server answers is documented is
 * checked by the server itself at start-up (api_docs_check_routes), and here again through 405's
 * Allow header. Also /docs: Swagger UI's files served from DOCS_DIR with their content types, no
 * way out of that directory, and the 404 that says how to install them.
 */
#ifndef LAYERS_OPENAPI_TESTS_H
#define LAYERS_OPENAPI_TESTS_H

#include <check.h>

/* The document against the server (one server, MAX_BODY_BYTES=1024, for all its tests). */
TCase *openapi_tcase(void);
/* /docs and its files (each test starts a server with its own DOCS_DIR). */
TCase *api_docs_tcase(void);

#endif
