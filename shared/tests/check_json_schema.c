/*
 * Unit tests for testkit/json_schema.c, the validator the agreement test (openapi_tests.c)
 * checks every reply with: if it let a wrong reply through, the agreement test would prove
 * nothing. Each keyword the documents use is tested to refuse what it must, and then layer 1's
 * real document (build/l1-connection-pooling/openapi.json) is given doctored replies: a read
 * reply without `created_at`, with an extra member, with a wrong type, a 422 entry without
 * `msg` must all fail, and the genuine ones pass. No sockets.
 */
#include "json_schema.h"

#include "check_run.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>

static char err[512];

static bool valid(const char *schema_text, const char *value_text)
{
    json_error_t e;
    json_t *schema = json_loads(schema_text, 0, &e);
    json_t *value = json_loads(value_text, JSON_DECODE_ANY, &e);
    ck_assert_msg(schema != NULL && value != NULL, "bad test JSON");
    json_t *root = json_pack("{s:{s:{s:O}}}", "components", "schemas", "S", schema);
    bool ok = json_schema_validate(root, schema, value, err, sizeof err);
    json_decref(root);
    json_decref(schema);
    json_decref(value);
    return ok;
}

START_TEST(types)
{
    ck_assert(valid("{\"type\":\"string\"}", "\"a\""));
    ck_assert(!valid("{\"type\":\"string\"}", "1"));
    ck_assert(valid("{\"type\":\"integer\"}", "1"));
    ck_assert(!valid("{\"type\":\"integer\"}", "1.5"));
    ck_assert(valid("{\"type\":\"number\"}", "1"));
    ck_assert(valid("{\"type\":[\"string\",\"null\"]}", "null"));
    ck_assert(!valid("{\"type\":[\"string\",\"null\"]}", "false"));
    ck_assert(!valid("{\"type\":\"object\"}", "[]"));
    ck_assert(valid("{\"type\":\"boolean\"}", "true"));
}
END_TEST

START_TEST(objects)
{
    const char *s = "{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"string\"}},"
                    "\"required\":[\"a\"],\"additionalProperties\":false}";
    ck_assert(valid(s, "{\"a\":\"x\"}"));
    ck_assert(!valid(s, "{}"));
    ck_assert_msg(strstr(err, "$.a") != NULL, "%s", err);
    ck_assert(!valid(s, "{\"a\":\"x\",\"b\":1}"));
    ck_assert(!valid(s, "{\"a\":1}"));
    const char *open = "{\"type\":\"object\",\"additionalProperties\":{\"type\":\"integer\"}}";
    ck_assert(valid(open, "{\"shard_0\":1}"));
    ck_assert(!valid(open, "{\"shard_0\":\"1\"}"));
}
END_TEST

START_TEST(enums_strings_arrays_refs)
{
    ck_assert(valid("{\"enum\":[null,\"x\"]}", "null"));
    ck_assert(!valid("{\"enum\":[true]}", "false"));
    ck_assert(!valid("{\"minLength\":2}", "\"a\""));
    ck_assert(!valid("{\"maxLength\":1}", "\"ab\""));
    ck_assert(valid("{\"pattern\":\"^shard [0-9]+$\"}", "\"shard 12\""));
    ck_assert(!valid("{\"pattern\":\"^shard [0-9]+$\"}", "\"shard x\""));
    ck_assert(valid("{\"items\":{\"type\":\"integer\"}}", "[1,2]"));
    ck_assert(!valid("{\"items\":{\"type\":\"integer\"}}", "[1,\"2\"]"));
    ck_assert_msg(strstr(err, "$[1]") != NULL, "%s", err);
    ck_assert(!valid("{\"minItems\":1}", "[]"));
    ck_assert(valid("{\"items\":{\"$ref\":\"#/components/schemas/S\"}}", "[[[]]]"));
    ck_assert(!valid("{\"$ref\":\"#/components/schemas/Nothing\"}", "1"));
}
END_TEST

/* ---- layer 1's document and doctored replies ---- */

static json_t *l1_document(void)
{
    json_error_t e;
    json_t *doc = json_load_file(L1_OPENAPI, 0, &e);
    ck_assert_msg(doc != NULL, "%s: %s", L1_OPENAPI, e.text);
    return doc;
}

static bool reply_valid(json_t *doc, const char *schema_name, const char *reply_text)
{
    char ref[128];
    snprintf(ref, sizeof ref, "#/components/schemas/%s", schema_name);
    const json_t *schema = json_schema_resolve(doc, ref);
    ck_assert_msg(schema != NULL, "%s is not in the document", ref);
    json_error_t e;
    json_t *reply = json_loads(reply_text, 0, &e);
    ck_assert(reply != NULL);
    bool ok = json_schema_validate(doc, schema, reply, err, sizeof err);
    json_decref(reply);
    return ok;
}

START_TEST(doctored_replies_fail_against_layer_1s_document)
{
    json_t *doc = l1_document();
    const char *found = "{\"success\":true,\"key\":\"k\",\"value\":\"v\",\"created_at\":"
                        "\"2026-11-22T09:09:18.386354Z\",\"updated_at\":"
                        "\"2026-11-22T09:09:18.386354Z\",\"message\":null}";
    ck_assert_msg(reply_valid(doc, "ReadReply", found), "%s", err);
    ck_assert(!reply_valid(doc, "ReadReply",
                           "{\"success\":true,\"key\":\"k\",\"value\":\"v\",\"updated_at\":"
                           "\"2026-11-22T09:09:18.386354Z\",\"message\":null}"));
    ck_assert_msg(strstr(err, "created_at") != NULL, "%s", err);
    ck_assert(!reply_valid(doc, "ReadReply",
                           "{\"success\":true,\"key\":\"k\",\"value\":\"v\",\"created_at\":null,"
                           "\"updated_at\":null,\"message\":null,\"from_cache\":true}"));
    ck_assert(!reply_valid(doc, "ReadReply",
                           "{\"success\":\"yes\",\"key\":\"k\",\"value\":null,\"created_at\":null,"
                           "\"updated_at\":null,\"message\":\"Key not found\"}"));
    ck_assert(reply_valid(doc, "WriteReply",
                          "{\"success\":true,\"key\":\"k\",\"message\":\"Data written successfully\"}"));
    ck_assert(!reply_valid(doc, "WriteReply", "{\"success\":true,\"key\":\"k\"}"));
    ck_assert(reply_valid(doc, "ValidationError",
                          "{\"detail\":[{\"type\":\"missing\",\"loc\":[\"body\",\"key\"],"
                          "\"msg\":\"Field required\"}]}"));
    ck_assert(!reply_valid(doc, "ValidationError",
                           "{\"detail\":[{\"type\":\"missing\",\"loc\":[\"body\",\"key\"]}]}"));
    ck_assert(!reply_valid(doc, "PoolStats", "{\"pool_size\":2}"));
    ck_assert(!reply_valid(doc, "Health",
                           "{\"status\":\"healthy\",\"layer\":\"2-read-cache\",\"database\":"
                           "\"healthy\"}"));
    json_decref(doc);
}
END_TEST

int main(void)
{
    Suite *suite = suite_create("json_schema");
    TCase *keywords = tcase_create("keywords");
    tcase_add_test(keywords, types);
    tcase_add_test(keywords, objects);
    tcase_add_test(keywords, enums_strings_arrays_refs);
    suite_add_tcase(suite, keywords);
    TCase *documents = tcase_create("documents");
    tcase_add_test(documents, doctored_replies_fail_against_layer_1s_document);
    suite_add_tcase(suite, documents);
    return check_run(suite, CK_FORK_GETENV) ? EXIT_FAILURE : EXIT_SUCCESS;
}
