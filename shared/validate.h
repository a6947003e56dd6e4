/*
 * validate: request validation with the contract's FastAPI-shaped 422 errors.
 *
 * Each check appends entries like {"type":"missing","loc":["body","key"],"msg":"Field required"}
 * to an errors array; the handler replies 422 {"detail": errors} when the array is not empty, so
 * one reply lists every problem at once, as FastAPI does. Handlers call validate_write_body and
 * validate_key_param, which send that 422 themselves, so each handler opens in two lines. Lengths
 * are counted in bytes, and text must be valid UTF-8 without NUL characters (`string_unicode`):
 * PostgreSQL's text type cannot hold NUL, and invalid UTF-8 would be refused by the database later
 * instead of here.
 */
#ifndef LAYERS_VALIDATE_H
#define LAYERS_VALIDATE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#define KEY_MAX_BYTES 255

/* A validated POST /write body. Strings point into `document` and live as long as it does. */
struct write_request {
    json_t *document;  /* the parsed body; release with write_request_cleanup */
    const char *key;   /* 1..255 bytes of UTF-8, no NUL */
    size_t key_len;    /* bytes */
    const char *value; /* 0..max_value_bytes of UTF-8, no NUL */
    size_t value_len;  /* bytes */
};

/* True when s[0..len) is well-formed UTF-8 (no overlongs, no surrogates, <= U+10FFFF). */
bool utf8_valid(const char *s, size_t len);

/* Appends one error entry; loc is "body"/"path" followed by a field name (or NULL for none). */
void validation_error_add(json_t *errors, const char *type, const char *loc_place,
                          const char *loc_field, const char *msg);

/*
 * Parses a request body that must be a JSON object. On success returns the object (caller
 * owns it). On failure returns NULL and appends `missing` (empty body) or `json_invalid`
 * (malformed, or not an object) to errors. Invalid UTF-8 inside strings does not make the
 * document invalid: the string fails later with `string_unicode`, naming its field.
 */
json_t *validate_json_object(const char *body, size_t len, json_t *errors);

/*
 * Checks member `field` of object `obj`: present, a string, min..max bytes, valid UTF-8
 * without NUL. Appends the problem to errors and returns false, or stores the string.
 */
bool validate_string_member(json_t *obj, const char *field, size_t min_bytes, size_t max_bytes,
                            json_t *errors, const char **out, size_t *out_len);

/* Validates a POST /write body. Returns true, or false with errors appended. */
bool validate_write_request(const char *body, size_t len, size_t max_value_bytes,
                            struct write_request *out, json_t *errors)
    __attribute__((warn_unused_result));
void write_request_cleanup(struct write_request *req);

/*
 * Decodes and checks the raw `{key}` path segment. On success returns a heap string (caller
 * frees) and its length; on failure NULL with an error (loc ["path","key"]) appended.
 */
char *validate_path_key(const char *raw, size_t raw_len, size_t *key_len, json_t *errors);

/* ---- for handlers: check a request and answer its 422 ---- */

struct http_request;

/* Validates req's POST /write body. Returns true, or false after replying 422 (req is then
 * answered and freed: return at once). */
bool validate_write_body(struct http_request *req, size_t max_value_bytes,
                         struct write_request *out) __attribute__((warn_unused_result));

/* Decodes and checks req's `{key}` segment (the route's first). Returns the key (caller frees)
 * and its length, or NULL after replying 422 (req is then answered and freed: return at once). */
char *validate_key_param(struct http_request *req, size_t *key_len)
    __attribute__((warn_unused_result));

#endif
