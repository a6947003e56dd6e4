/*
 * validate: request validation with FastAPI-shaped 422 errors (see validate.h).
 */
#include "validate.h"

#include "http.h"
#include "router.h"
#include "xalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Length of the well-formed UTF-8 sequence at s, or 0 if it is not one. */
static size_t utf8_sequence_length(const unsigned char *s, size_t remaining)
{
    unsigned char c = s[0];
    if (c < 0x80)
        return 1;
    size_t len;
    unsigned min;
    unsigned cp;
    if ((c & 0xE0) == 0xC0) {
        len = 2, min = 0x80, cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
        len = 3, min = 0x800, cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
        len = 4, min = 0x10000, cp = c & 0x07;
    } else {
        return 0;
    }
    if (len > remaining)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return len;
}

bool utf8_valid(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < len;) {
        size_t n = utf8_sequence_length(p + i, len - i);
        if (n == 0)
            return false;
        i += n;
    }
    return true;
}

void validation_error_add(json_t *errors, const char *type, const char *loc_place,
                          const char *loc_field, const char *msg)
{
    json_t *loc = json_pack("[s]", loc_place);
    if (loc_field != NULL)
        json_array_append_new(loc, json_string(loc_field));
    json_array_append_new(errors,
                          json_pack("{s:s, s:o, s:s}", "type", type, "loc", loc, "msg", msg));
}

/*
 * Copies body, replacing each byte that is not part of well-formed UTF-8 by the JSON escape
 * \u0000. Inside a string this turns into a NUL character, which the member check reports as
 * `string_unicode` for that field; outside a string it makes the JSON malformed, as it was.
 */
static char *escape_invalid_utf8(const char *body, size_t len, size_t *out_len)
{
    const unsigned char *p = (const unsigned char *)body;
    char *copy = xmalloc(len * 6 + 1);
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        size_t n = utf8_sequence_length(p + i, len - i);
        if (n == 0) {
            /* After an odd run of backslashes the escape has begun: complete it as \u0000. */
            size_t run = 0;
            while (run < o && copy[o - 1 - run] == '\\')
                run++;
            const char *nul = run % 2 ? "u0000" : "\\u0000";
            memcpy(copy + o, nul, strlen(nul));
            o += strlen(nul);
            i += 1;
        } else {
            memcpy(copy + o, body + i, n);
            o += n;
            i += n;
        }
    }
    *out_len = o;
    return copy;
}

static bool only_whitespace(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n')
            return false;
    return true;
}

/* jansson's error text quotes the input where parsing stopped, cut at a fixed length, possibly
 * in the middle of a character (or at a byte that was never UTF-8): such bytes become '?', or
 * jansson would refuse to make a string of it and the 422 would lose its entry. */
static void add_json_invalid(json_t *errors, int position, const char *reason)
{
    char text[JSON_ERROR_TEXT_LENGTH];
    size_t len = strnlen(reason, sizeof text - 1), o = 0;
    for (size_t i = 0; i < len;) {
        size_t n = utf8_sequence_length((const unsigned char *)reason + i, len - i);
        if (n == 0) {
            text[o++] = '?';
            i++;
        } else {
            memcpy(text + o, reason + i, n);
            o += n;
            i += n;
        }
    }
    text[o] = '\0';
    json_t *entry = json_pack("{s:s, s:[s,i], s:s, s:{s:s}}", "type", "json_invalid", "loc", "body",
                              position, "msg", "JSON decode error", "ctx", "error", text);
    json_array_append_new(errors, entry);
}

json_t *validate_json_object(const char *body, size_t len, json_t *errors)
{
    if (len == 0 || only_whitespace(body, len)) {
        validation_error_add(errors, "missing", "body", NULL, "Field required");
        return NULL;
    }
    char *escaped = NULL;
    size_t parse_len = len;
    const char *parse_from = body;
    if (!utf8_valid(body, len))
        parse_from = escaped = escape_invalid_utf8(body, len, &parse_len);

    json_error_t error;
    json_t *doc = json_loadb(parse_from, parse_len,
                             JSON_ALLOW_NUL | JSON_DECODE_ANY | JSON_DECODE_INT_AS_REAL, &error);
    free(escaped);
    if (doc == NULL) {
        add_json_invalid(errors, error.position, error.text);
        return NULL;
    }
    if (!json_is_object(doc)) {
        json_decref(doc);
        add_json_invalid(errors, 0, "Input should be a JSON object");
        return NULL;
    }
    return doc;
}

/* The length problem of a string of len bytes, or NULL when it fits. */
static const char *length_problem(size_t len, size_t min_bytes, size_t max_bytes, char *msg,
                                  size_t msglen)
{
    if (len < min_bytes) {
        snprintf(msg, msglen, "String should have at least %zu character%s", min_bytes,
                 min_bytes == 1 ? "" : "s");
        return "string_too_short";
    }
    if (len > max_bytes) {
        snprintf(msg, msglen, "String should have at most %zu bytes", max_bytes);
        return "string_too_long";
    }
    return NULL;
}

static const char *const unicode_msg =
    "Input should be a valid string, unable to parse raw data as a unicode string";

bool validate_string_member(json_t *obj, const char *field, size_t min_bytes, size_t max_bytes,
                            json_t *errors, const char **out, size_t *out_len)
{
    json_t *member = json_object_get(obj, field);
    if (member == NULL) {
        validation_error_add(errors, "missing", "body", field, "Field required");
        return false;
    }
    if (!json_is_string(member)) {
        validation_error_add(errors, "string_type", "body", field,
                             "Input should be a valid string");
        return false;
    }
    const char *text = json_string_value(member);
    size_t len = json_string_length(member);
    if (memchr(text, '\0', len) != NULL) {
        validation_error_add(errors, "string_unicode", "body", field, unicode_msg);
        return false;
    }
    char msg[96];
    const char *problem = length_problem(len, min_bytes, max_bytes, msg, sizeof msg);
    if (problem != NULL) {
        validation_error_add(errors, problem, "body", field, msg);
        return false;
    }
    *out = text;
    *out_len = len;
    return true;
}

bool validate_write_request(const char *body, size_t len, size_t max_value_bytes,
                            struct write_request *out, json_t *errors)
{
    memset(out, 0, sizeof *out);
    out->document = validate_json_object(body, len, errors);
    if (out->document == NULL)
        return false;
    bool key_ok = validate_string_member(out->document, "key", 1, KEY_MAX_BYTES, errors, &out->key,
                                         &out->key_len);
    bool value_ok = validate_string_member(out->document, "value", 0, max_value_bytes, errors,
                                           &out->value, &out->value_len);
    if (key_ok && value_ok)
        return true;
    write_request_cleanup(out);
    return false;
}

void write_request_cleanup(struct write_request *req)
{
    json_decref(req->document);
    memset(req, 0, sizeof *req);
}

char *validate_path_key(const char *raw, size_t raw_len, size_t *key_len, json_t *errors)
{
    char *key = xmalloc(raw_len + 1);
    size_t len;
    if (!percent_decode(raw, raw_len, key, &len) || !utf8_valid(key, len) ||
        memchr(key, '\0', len) != NULL) {
        validation_error_add(errors, "string_unicode", "path", "key", unicode_msg);
        free(key);
        return NULL;
    }
    char msg[96];
    const char *problem = length_problem(len, 1, KEY_MAX_BYTES, msg, sizeof msg);
    if (problem != NULL) {
        validation_error_add(errors, problem, "path", "key", msg);
        free(key);
        return NULL;
    }
    *key_len = len;
    return key;
}

bool validate_write_body(struct http_request *req, size_t max_value_bytes,
                         struct write_request *out)
{
    json_t *errors = json_array();
    size_t len;
    const char *body = http_request_body(req, &len);
    if (!validate_write_request(body, len, max_value_bytes, out, errors)) {
        http_reply_validation(req, errors);
        return false;
    }
    json_decref(errors);
    return true;
}

char *validate_key_param(struct http_request *req, size_t *key_len)
{
    struct route_param raw = http_request_param(req, 0);
    json_t *errors = json_array();
    char *key = validate_path_key(raw.raw, raw.len, key_len, errors);
    if (key == NULL) {
        http_reply_validation(req, errors);
        return NULL;
    }
    json_decref(errors);
    return key;
}
