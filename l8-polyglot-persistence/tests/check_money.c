/*
 * Unit tests for layer 8's pure parts, without sockets: money (amounts as exact decimals, the
 * transaction types) and the core's JSON <-> BSON conversion (shared/mongo.c) that documents go
 * through.
 */
#include "check_run.h"
#include "money.h"
#include "mongo.h"

#include <stdlib.h>
#include <string.h>

/* Validates {"amount": <literal>} parsed as validate.c parses bodies; returns the error type
 * ("" when accepted) and the amount's text. */
static const char *amount(const char *literal, char text[MONEY_TEXT_MAX])
{
    static char type[64];
    char body[128];
    snprintf(body, sizeof body, "{\"amount\":%s}", literal);
    json_t *obj = json_loads(body, JSON_DECODE_ANY | JSON_DECODE_INT_AS_REAL, NULL);
    ck_assert_msg(obj != NULL, "%s is not JSON", literal);
    json_t *errors = json_array();
    bool ok = money_validate_amount(obj, errors, text);
    ck_assert_int_eq(ok, json_array_size(errors) == 0);
    snprintf(type, sizeof type, "%s",
             ok ? "" : json_string_value(json_object_get(json_array_get(errors, 0), "type")));
    json_decref(errors);
    json_decref(obj);
    return type;
}

START_TEST(exact_amounts_are_accepted_as_their_decimal)
{
    char text[MONEY_TEXT_MAX];
    ck_assert_str_eq(amount("12.3", text), "");
    ck_assert_str_eq(text, "12.30");
    ck_assert_str_eq(amount("0.1", text), "");
    ck_assert_str_eq(text, "0.10");
    ck_assert_str_eq(amount("0.01", text), "");
    ck_assert_str_eq(text, "0.01");
    ck_assert_str_eq(amount("7", text), "");
    ck_assert_str_eq(text, "7.00");
    ck_assert_str_eq(amount("9999999999.99", text), "");
    ck_assert_str_eq(text, "9999999999.99");
    ck_assert_str_eq(amount("1.10", text), "");
    ck_assert_str_eq(text, "1.10");
}
END_TEST

START_TEST(inexact_out_of_range_and_non_numbers_are_refused)
{
    char text[MONEY_TEXT_MAX];
    ck_assert_str_eq(amount("1.005", text), "decimal_max_places");
    ck_assert_str_eq(amount("0.001", text), "decimal_max_places");
    ck_assert_str_eq(amount("9999999999.999", text), "decimal_max_places");
    ck_assert_str_eq(amount("123.456", text), "decimal_max_places");
    ck_assert_str_eq(amount("10000000000", text), "decimal_whole_digits");
    ck_assert_str_eq(amount("1e300", text), "decimal_whole_digits");
    ck_assert_str_eq(amount("0", text), "greater_than");
    ck_assert_str_eq(amount("-1.5", text), "greater_than");
    ck_assert_str_eq(amount("\"12.50\"", text), "decimal_type");
    ck_assert_str_eq(amount("true", text), "decimal_type");
    ck_assert_str_eq(amount("null", text), "decimal_type");
    ck_assert_str_eq(amount("[1]", text), "decimal_type");
    /* NaN and Infinity never get here: they are not JSON. */
    ck_assert(json_loads("{\"amount\":NaN}", JSON_DECODE_ANY, NULL) == NULL);
    ck_assert(json_loads("{\"amount\":Infinity}", JSON_DECODE_ANY, NULL) == NULL);
    ck_assert(json_loads("{\"amount\":1e400}", JSON_DECODE_ANY, NULL) == NULL);
}
END_TEST

START_TEST(types_are_one_of_five)
{
    json_t *errors = json_array();
    json_t *ok = json_pack("{s:s}", "transaction_type", "refund");
    json_t *bad = json_pack("{s:s}", "transaction_type", "Refund");
    json_t *none = json_object();
    ck_assert_str_eq(money_validate_type(ok, errors), "refund");
    ck_assert_ptr_null(money_validate_type(bad, errors));
    ck_assert_ptr_null(money_validate_type(none, errors));
    ck_assert_int_eq(json_array_size(errors), 2);
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(errors, 1), "type")),
                     "missing");
    json_decref(ok), json_decref(bad), json_decref(none), json_decref(errors);
}
END_TEST

static bool to_bson(const char *text, char *err, size_t len)
{
    json_t *obj = json_loads(text, 0, NULL);
    ck_assert(obj != NULL);
    bson_t out = BSON_INITIALIZER;
    bool ok = mongo_bson_from_json(obj, &out, err, len);
    bson_destroy(&out);
    json_decref(obj);
    return ok;
}

START_TEST(json_documents_round_trip_through_bson)
{
    const char *text = "{\"s\":\"x\",\"i\":7,\"r\":2.5,\"t\":true,\"n\":null,"
                       "\"a\":[1,\"two\",{\"three\":3}],\"o\":{\"$date\":false}}";
    /* "$date" inside is refused below; without it, everything comes back as it went in. */
    const char *plain = "{\"s\":\"x\",\"i\":7,\"r\":2.5,\"t\":true,\"n\":null,"
                        "\"a\":[1,\"two\",{\"three\":3}],\"o\":{\"date\":false}}";
    json_t *in = json_loads(plain, 0, NULL);
    bson_t bson = BSON_INITIALIZER;
    char err[128];
    ck_assert(mongo_bson_from_json(in, &bson, err, sizeof err));
    json_t *out = mongo_json_from_bson(&bson);
    ck_assert_msg(json_equal(in, out), "%s", json_dumps(out, JSON_COMPACT));
    json_decref(in), json_decref(out);
    bson_destroy(&bson);
    ck_assert(!to_bson(text, err, sizeof err)); /* never read as Extended JSON */
}
END_TEST

START_TEST(field_names_mongodb_gives_meaning_are_refused)
{
    char err[128];
    ck_assert(!to_bson("{\"$set\":1}", err, sizeof err));
    ck_assert(!to_bson("{\"a.b\":1}", err, sizeof err));
    ck_assert(!to_bson("{\"\":1}", err, sizeof err));
    ck_assert(!to_bson("{\"a\":[{\"$x\":1}]}", err, sizeof err));
    ck_assert(to_bson("{\"a$\":1,\"b c\":2}", err, sizeof err));
    /* Nesting is bounded. */
    char deep[400] = "";
    for (int i = 0; i < MONGO_MAX_DEPTH + 1; i++)
        strcat(deep, "[");
    for (int i = 0; i < MONGO_MAX_DEPTH + 1; i++)
        strcat(deep, "]");
    char doc[460];
    snprintf(doc, sizeof doc, "{\"d\":%s}", deep);
    ck_assert(!to_bson(doc, err, sizeof err));
    ck_assert(strstr(err, "Nesting") != NULL);
}
END_TEST

START_TEST(times_have_microseconds)
{
    char buf[32];
    mongo_format_time(1764590400123LL, buf, sizeof buf);
    ck_assert_str_eq(buf, "2025-12-01T12:00:00.123000Z");
}
END_TEST

int main(void)
{
    Suite *suite = suite_create("l8-units");
    suite_add_tcase(suite,
                     check_tcase("units", NULL, NULL, 30,
                                 (const TTest *const[]){
                                     exact_amounts_are_accepted_as_their_decimal,
                                     inexact_out_of_range_and_non_numbers_are_refused,
                                     types_are_one_of_five, json_documents_round_trip_through_bson,
                                     field_names_mongodb_gives_meaning_are_refused,
                                     times_have_microseconds, NULL}));
    return check_run(suite, CK_FORK_GETENV) ? EXIT_FAILURE : EXIT_SUCCESS;
}
