/*
 * json_schema: the small part of JSON Schema that the API documents use, to check a server's
 * replies against its own OpenAPI document (openapi_tests.h).
 *
 * Supported keywords: $ref (to "#/..." inside the document), type (one name or a list), enum,
 * required, properties, additionalProperties (false or a schema), items, minItems, minLength,
 * maxLength (in bytes: the contract counts keys in bytes), pattern (POSIX extended). Anything
 * else (description, format, example...) is ignored: the validator never fails a reply for a
 * keyword it does not know, so a document may say more than this file checks.
 */
#ifndef LAYERS_JSON_SCHEMA_H
#define LAYERS_JSON_SCHEMA_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

/* The value at a JSON pointer such as "#/components/schemas/ReadReply", or NULL. */
const json_t *json_schema_resolve(const json_t *root, const char *ref);

/* Follows $ref (several in a row) from `node`; NULL when one does not resolve. */
const json_t *json_schema_deref(const json_t *root, const json_t *node);

/* Whether `value` validates against `schema` ($refs resolved in `root`). On failure err says
 * where and why, e.g. "$.created_at: required member missing". */
bool json_schema_validate(const json_t *root, const json_t *schema, const json_t *value,
                          char *err, size_t errlen);

#endif
