/*
 * openapi_document: the layer's OpenAPI document, merged at build time from openapi/common.json
 * and the layer's own openapi.json (openapi/merge.c; the CMake function layers_openapi). A
 * layer's main() hands it to the core (server_spec.openapi_json), which serves it at
 * GET /openapi.json and checks at start-up that every route the layer registers is in it.
 */
#ifndef LAYERS_OPENAPI_DOCUMENT_H
#define LAYERS_OPENAPI_DOCUMENT_H

extern const char layer_openapi_json[]; /* compact JSON, NUL-terminated */

#endif
