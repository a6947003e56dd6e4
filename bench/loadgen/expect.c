/*
 * expect: reply checks (see expect.h). The body is parsed with jansson: a substring test would
 * accept "success":true inside a value, or a key that only begins with the one asked for.
 */
#include "expect.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xalloc.h"

static enum expect_result fail(enum expect_result result, char *why, size_t why_size,
                               const char *format, ...) __attribute__((format(printf, 4, 5)));

static enum expect_result fail(enum expect_result result, char *why, size_t why_size,
                               const char *format, ...)
{
    va_list args;
    va_start(args, format);
    vsnprintf(why, why_size, format, args);
    va_end(args);
    return result;
}

static bool is_string(json_t *object, const char *member, const char *expected)
{
    json_t *value = json_object_get(object, member);
    return json_is_string(value) && strcmp(json_string_value(value), expected) == 0;
}

/* Layer 8's transaction and summary replies (CONTRACT.md, l8). */
static enum expect_result check_polyglot(const struct request *req, json_t *root, char *why,
                                         size_t why_size)
{
    char user[48];
    snprintf(user, sizeof(user), "bench-user:%llu", (unsigned long long)req->key);
    json_t *success = json_object_get(root, "success");
    switch (req->kind) {
    case REQUEST_TXN_WRITE:
        if (!json_is_true(success) || !is_string(root, "stored_in", "PostgreSQL") ||
            !json_is_integer(json_object_get(root, "transaction_id")))
            return fail(EXPECT_BAD_BODY, why, why_size,
                        "not a stored transaction (success, stored_in, transaction_id)");
        return EXPECT_OK;
    case REQUEST_TXN_READ: {
        json_t *value = json_object_get(root, "value");
        if (!json_is_boolean(success) || !is_string(root, "key", user) ||
            !(json_is_array(value) || json_is_null(value)) ||
            json_is_true(success) != json_is_array(value))
            return fail(EXPECT_BAD_BODY, why, why_size,
                        "not %s's transaction list (success, key, value)", user);
        return EXPECT_OK;
    }
    default:
        if (!json_is_true(success) || !is_string(root, "user_id", user) ||
            !json_is_object(json_object_get(root, "transactions")))
            return fail(EXPECT_BAD_BODY, why, why_size, "not %s's summary", user);
        return EXPECT_OK;
    }
}

static enum expect_result check_object(const struct request *req, size_t value_bytes,
                                       json_t *root, char *why, size_t why_size)
{
    if (req->kind == REQUEST_TXN_WRITE || req->kind == REQUEST_TXN_READ ||
        req->kind == REQUEST_SUMMARY)
        return check_polyglot(req, root, why, why_size);
    char key[48];
    snprintf(key, sizeof(key), "%s:%llu", req->kind == REQUEST_READ_MISS ? "miss" : "bench",
             (unsigned long long)req->key);
    json_t *success = json_object_get(root, "success");
    bool want_success = req->kind != REQUEST_READ_MISS;
    if (!json_is_boolean(success) || json_is_true(success) != want_success)
        return fail(EXPECT_BAD_BODY, why, why_size, "\"success\" is not %s",
                    want_success ? "true" : "false");
    if (!is_string(root, "key", key))
        return fail(EXPECT_BAD_BODY, why, why_size, "\"key\" is not \"%s\"", key);
    if (req->kind == REQUEST_READ_MISS) {
        if (!json_is_null(json_object_get(root, "value")))
            return fail(EXPECT_BAD_BODY, why, why_size, "a missing key has a non-null \"value\"");
        return EXPECT_OK;
    }
    if (req->kind == REQUEST_WRITE)
        return EXPECT_OK;
    char *value = xmalloc(value_bytes + 1);
    value_for_key(req->key, value_bytes, value);
    bool same = is_string(root, "value", value);
    free(value);
    if (!same)
        return fail(EXPECT_BAD_BODY, why, why_size, "\"value\" is not %s's %zu-byte value", key,
                    value_bytes);
    if (!json_is_string(json_object_get(root, "created_at")) ||
        !json_is_string(json_object_get(root, "updated_at")))
        return fail(EXPECT_BAD_BODY, why, why_size, "\"created_at\" or \"updated_at\" missing");
    return EXPECT_OK;
}

enum expect_result expect_reply(const struct request *req, size_t value_bytes, int status,
                                const char *body, size_t len, char *why, size_t why_size)
{
    if (why_size > 0)
        why[0] = '\0';
    if (status != 200)
        return fail(EXPECT_BAD_STATUS, why, why_size, "status %d", status);
    if (req->kind == REQUEST_PING)
        return EXPECT_OK;
    json_error_t error;
    json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &error);
    if (!json_is_object(root)) {
        json_decref(root);
        return fail(EXPECT_BAD_BODY, why, why_size, "the body is not a JSON object");
    }
    enum expect_result result = check_object(req, value_bytes, root, why, why_size);
    json_decref(root);
    return result;
}
