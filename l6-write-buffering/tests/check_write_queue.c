/*
 * Unit tests of write_queue's encodings: stream ids as versions, timestamps, PostgreSQL array
 * literals (the worker's whole batch travels in them: one escaping mistake and a value arrives
 * changed, or a batch is refused), and the API's readings of Redis replies (a queued write, the
 * append's outcome, the queue's numbers), on replies built here, without a Redis; and the
 * newest id of a batch, which the worker hands the finish script for its XTRIM.
 */
#include "write_queue.h"

#include "batch.h"
#include "check_run.h"
#include "record.h"
#include "validate.h"
#include "write_body.h"

#include <check.h>
#include <event2/buffer.h>
#include <stdlib.h>
#include <string.h>

START_TEST(ids_parse_into_ordered_versions)
{
    struct wq_id a, b;
    ck_assert(wq_parse_id("1700000000123-0", 15, &a));
    ck_assert_int_eq(a.ms, 1700000000123LL);
    ck_assert_int_eq(a.seq, 0);
    ck_assert(wq_parse_id("1700000000123-999999", 20, &b));
    ck_assert_int_eq(wq_version(a), 1700000000123000000LL);
    ck_assert(wq_version(b) < wq_version((struct wq_id){1700000000124LL, 0}));
    ck_assert(!wq_parse_id("1700000000123-1000000", 21, &a)); /* would collide */
    ck_assert(!wq_parse_id("", 0, &a));
    ck_assert(!wq_parse_id("-1", 2, &a));
    ck_assert(!wq_parse_id("12-", 3, &a));
    ck_assert(!wq_parse_id("12", 2, &a));
    ck_assert(!wq_parse_id("1x-2", 4, &a));
    ck_assert(!wq_parse_id("1-2-3", 5, &a));
}
END_TEST

START_TEST(a_batch_s_newest_id_skips_dead_entries)
{
    struct entry entries[4] = {
        {.sid = {1700000000005, 3}, .state = ENTRY_COMMITTED},
        {.sid = {1700000000007, 1}, .state = ENTRY_COMMITTED},
        {.sid = {1700000000007, 0}, .state = ENTRY_COMMITTED}, /* claimed: not in id order */
        {.sid = {1700000000009, 0}, .state = ENTRY_DEAD},      /* not acknowledged as committed */
    };
    struct batch b = {.entries = entries, .n_entries = 4};
    char top[48];
    batch_newest_id(&b, top, sizeof top);
    ck_assert_str_eq(top, "1700000000007-1");
    b.n_entries = 0;
    batch_newest_id(&b, top, sizeof top);
    ck_assert_str_eq(top, "");
}
END_TEST

START_TEST(milliseconds_format_like_postgresql)
{
    char out[32];
    wq_format_ms(1700000000123LL, out, sizeof out);
    ck_assert_str_eq(out, "2023-11-14T22:13:20.123000Z");
    wq_format_ms(5, out, sizeof out);
    ck_assert_str_eq(out, "1970-01-01T00:00:00.005000Z");
}
END_TEST

static const char *literal(const char *const *texts, size_t n, struct wq_array *a)
{
    wq_array_start(a);
    for (size_t i = 0; i < n; i++)
        wq_array_add_text(a, texts[i], strlen(texts[i]));
    return wq_array_finish(a);
}

START_TEST(text_arrays_quote_and_escape_everything)
{
    struct wq_array a;
    ck_assert_str_eq(literal(NULL, 0, &a), "{}");
    wq_array_cleanup(&a);
    const char *plain[] = {"a", ""};
    ck_assert_str_eq(literal(plain, 2, &a), "{\"a\",\"\"}");
    wq_array_cleanup(&a);
    /* Quotes and backslashes escaped; braces, commas, spaces and NULL as themselves. */
    const char *hard[] = {"say \"hi\"", "back\\slash", "{a,b}", " NULL ", "\\\""};
    ck_assert_str_eq(literal(hard, 5, &a),
                     "{\"say \\\"hi\\\"\",\"back\\\\slash\",\"{a,b}\",\" NULL \",\"\\\\\\\"\"}");
    wq_array_cleanup(&a);
    const char *utf8[] = {"测试", "ключ"};
    ck_assert_str_eq(literal(utf8, 2, &a), "{\"测试\",\"ключ\"}");
    wq_array_cleanup(&a);
}
END_TEST

START_TEST(int_arrays_and_growth)
{
    struct wq_array a;
    wq_array_start(&a);
    wq_array_add_int(&a, 1700000000123000000LL);
    wq_array_add_int(&a, -5);
    ck_assert_str_eq(wq_array_finish(&a), "{1700000000123000000,-5}");
    wq_array_cleanup(&a);
    /* Thousands of elements and long values: the buffer grows. */
    char *big = malloc(100001);
    memset(big, '"', 100000);
    big[100000] = '\0';
    wq_array_start(&a);
    for (int i = 0; i < 3; i++)
        wq_array_add_text(&a, big, 100000);
    const char *out = wq_array_finish(&a);
    ck_assert_uint_eq(strlen(out), 2 + 3 * (200000 + 2) + 2);
    wq_array_cleanup(&a);
    free(big);
}
END_TEST

static redisReply text_reply(int type, const char *text)
{
    return (redisReply){.type = type, .str = (char *)text, .len = strlen(text)};
}

START_TEST(a_queued_write_reads_as_a_record)
{
    redisReply r = text_reply(REDIS_REPLY_STRING, "{\"id\":\"1700000000123-4\",\"created\":"
                                                  "\"1700000000005\",\"value\":\"v \\\"q\\\"\"}");
    struct record *rec = wq_queued_record(&r, "k", 1);
    ck_assert_ptr_nonnull(rec);
    size_t len;
    ck_assert_str_eq(record_value(rec, &len), "v \"q\"");
    ck_assert_str_eq(record_updated_at(rec), "2023-11-14T22:13:20.123000Z"); /* the append */
    ck_assert_str_eq(record_created_at(rec), "2023-11-14T22:13:20.005000Z"); /* the first */
    record_free(rec);
    redisReply nil = {.type = REDIS_REPLY_NIL};
    ck_assert_ptr_null(wq_queued_record(&nil, "k", 1)); /* nothing queued */
    redisReply bad = text_reply(REDIS_REPLY_STRING, "{\"id\":\"x\",\"value\":\"v\"}");
    ck_assert_ptr_null(wq_queued_record(&bad, "k", 1)); /* malformed: as if nothing queued */
    bad = text_reply(REDIS_REPLY_STRING, "not json");
    ck_assert_ptr_null(wq_queued_record(&bad, "k", 1));
}
END_TEST

START_TEST(append_outcomes)
{
    redisReply id = text_reply(REDIS_REPLY_STRING, "1700000000123-0");
    redisReply full = text_reply(REDIS_REPLY_ERROR, WQ_FULL " length");
    redisReply oom = text_reply(REDIS_REPLY_ERROR, "OOM command not allowed");
    ck_assert_int_eq(wq_append_result(&id), WQ_APPEND_OK);
    ck_assert_int_eq(wq_append_result(&full), WQ_APPEND_FULL);
    ck_assert_int_eq(wq_append_result(&oom), WQ_APPEND_UNAVAILABLE);
    ck_assert_int_eq(wq_append_result(NULL), WQ_APPEND_UNAVAILABLE);
}
END_TEST

/* One script call carries the writes of a loop turn: its reply holds each write's id, or 0 for
 * a write the length bound refused; a failed call (error, no reply, a reply of the wrong shape)
 * fails every write it carried, none acknowledged. */
START_TEST(coalesced_append_outcomes)
{
    redisReply a = text_reply(REDIS_REPLY_STRING, "1700000000123-0");
    redisReply b = text_reply(REDIS_REPLY_STRING, "1700000000123-1");
    redisReply zero = {.type = REDIS_REPLY_INTEGER, .integer = 0};
    redisReply *elements[] = {&a, &b, &zero};
    redisReply ids = {.type = REDIS_REPLY_ARRAY, .elements = 3, .element = elements};
    const char *id = "unset";
    ck_assert_int_eq(wq_append_result_of(&ids, 0, 3, &id), WQ_APPEND_OK);
    ck_assert_str_eq(id, "1700000000123-0");
    ck_assert_int_eq(wq_append_result_of(&ids, 1, 3, &id), WQ_APPEND_OK);
    ck_assert_str_eq(id, "1700000000123-1");
    ck_assert_int_eq(wq_append_result_of(&ids, 2, 3, &id), WQ_APPEND_FULL);
    ck_assert_ptr_null(id);
    ck_assert_int_eq(wq_append_result_of(&ids, 0, 4, &id), WQ_APPEND_UNAVAILABLE); /* shape */
    ck_assert_ptr_null(id);
    redisReply full = text_reply(REDIS_REPLY_ERROR, WQ_FULL " length");
    redisReply wrong = text_reply(REDIS_REPLY_ERROR, "WRONGTYPE Operation against a key");
    for (size_t i = 0; i < 3; i++) {
        ck_assert_int_eq(wq_append_result_of(&full, i, 3, &id), WQ_APPEND_FULL);
        ck_assert_int_eq(wq_append_result_of(&wrong, i, 3, &id), WQ_APPEND_UNAVAILABLE);
        ck_assert_int_eq(wq_append_result_of(NULL, i, 3, &id), WQ_APPEND_UNAVAILABLE);
        ck_assert_ptr_null(id);
    }
}
END_TEST

START_TEST(delay_buckets_are_exact_then_within_an_eighth)
{
    for (long long ms = 0; ms < WQ_DELAY_EXACT; ms++) {
        ck_assert_int_eq(wq_delay_bucket(ms), ms);
        ck_assert_int_eq(wq_delay_upper((int)ms), ms);
    }
    ck_assert_int_eq(wq_delay_bucket(-5), 0); /* a clock stepped back */
    ck_assert_int_eq(wq_delay_bucket(16), 16);
    ck_assert_int_eq(wq_delay_bucket(17), 16);
    ck_assert_int_eq(wq_delay_upper(16), 17);
    ck_assert_int_eq(wq_delay_bucket(18), 17);
    ck_assert_int_eq(wq_delay_bucket(31), 23);
    ck_assert_int_eq(wq_delay_bucket(32), 24);
    /* every delay lies in its bucket, the buckets are in order and a bucket is within 12.5% */
    long long previous_upper = -1;
    for (int b = 0; b < WQ_DELAY_BUCKETS; b++) {
        long long upper = wq_delay_upper(b), lower = previous_upper + 1;
        ck_assert_int_eq(wq_delay_bucket(lower), b);
        ck_assert_int_eq(wq_delay_bucket(upper), b);
        ck_assert(upper - lower <= lower / 8);
        previous_upper = upper;
    }
    ck_assert_int_eq(previous_upper, (1LL << 40) - 1);
    ck_assert_int_eq(wq_delay_bucket(1LL << 50), WQ_DELAY_BUCKETS - 1); /* capped */
}
END_TEST

START_TEST(delay_percentiles)
{
    struct wq_delay h = {0};
    ck_assert_int_eq(wq_delay_percentile(&h, 0.5), -1); /* none: no number */
    wq_delay_add(&h, 3, 98);
    wq_delay_add(&h, 40, 1);
    wq_delay_add(&h, 1000, 1);
    ck_assert_int_eq(h.count, 100);
    ck_assert_int_eq(h.max_ms, 1000);
    ck_assert_int_eq(wq_delay_percentile(&h, 0.50), 3);
    ck_assert_int_eq(wq_delay_percentile(&h, 0.98), 3);
    ck_assert_int_eq(wq_delay_percentile(&h, 0.99), 43);  /* 40's bucket is 40-43 */
    ck_assert_int_eq(wq_delay_percentile(&h, 1.0), 1000); /* 1000's bucket ends at 1023 */
    wq_delay_add(&h, 7, 0);
    ck_assert_int_eq(h.count, 100);
}
END_TEST

/* An HGETALL reply of n field/value pairs. */
static redisReply hash_reply(redisReply *items, redisReply **elements, const char *const *pairs,
                             size_t n)
{
    for (size_t i = 0; i < 2 * n; i++) {
        items[i] = text_reply(REDIS_REPLY_STRING, pairs[i]);
        elements[i] = &items[i];
    }
    return (redisReply){.type = REDIS_REPLY_ARRAY, .elements = 2 * n, .element = elements};
}

START_TEST(delay_histogram_from_redis)
{
    const char *pairs[] = {"3", "98", "43", "1", "1023", "1", "max", "1000", "42", "5", "x", "1"};
    redisReply items[12], *elements[12];
    redisReply hash = hash_reply(items, elements, pairs, 6);
    struct wq_delay h;
    wq_delay_parse(&hash, &h);
    ck_assert_int_eq(h.count, 100); /* 42 is no bucket's upper bound, x no number: skipped */
    ck_assert_int_eq(h.max_ms, 1000);
    ck_assert_int_eq(wq_delay_percentile(&h, 0.99), 43);
    ck_assert_int_eq(wq_delay_percentile(&h, 1.0), 1000);
    wq_delay_parse(NULL, &h);
    ck_assert_int_eq(h.count, 0);
}
END_TEST

START_TEST(queue_numbers_and_limits)
{
    redisReply n[8], *elements[9];
    const long long values[8] = {5, 10, 5, 2, 1, 0, 1200, 2};
    for (int i = 0; i < 8; i++) {
        n[i] = (redisReply){.type = REDIS_REPLY_INTEGER, .integer = values[i]};
        elements[i] = &n[i];
    }
    const char *pairs[] = {"2", "3", "17", "1", "max", "16"};
    redisReply items[6], *hash_elements[6];
    redisReply hash = hash_reply(items, hash_elements, pairs, 3);
    elements[8] = &hash;
    redisReply array = {.type = REDIS_REPLY_ARRAY, .elements = 9, .element = elements};
    struct wq_stats s;
    wq_parse_stats(&array, &s);
    ck_assert(s.available);
    ck_assert_int_eq(s.length, 5);
    ck_assert_int_eq(s.oldest_age_ms, 1200);
    ck_assert(wq_accepting(&s, &(struct wq_limits){6, 2000}));
    ck_assert(!wq_accepting(&s, &(struct wq_limits){5, 2000})); /* at the length bound */
    ck_assert(!wq_accepting(&s, &(struct wq_limits){6, 1000})); /* too old */
    json_t *o = wq_stats_json(&s, &(struct wq_limits){6, 2000});
    ck_assert_int_eq(json_integer_value(json_object_get(o, "writes_processed")), 5);
    ck_assert(json_real_value(json_object_get(o, "mean_batch_size")) == 2.5);
    json_t *delay = json_object_get(o, "commit_delay_ms");
    ck_assert_int_eq(json_integer_value(json_object_get(delay, "count")), 4);
    ck_assert_int_eq(json_integer_value(json_object_get(delay, "p50")), 2);
    ck_assert_int_eq(json_integer_value(json_object_get(delay, "p99")), 16); /* the max, not 17 */
    ck_assert_int_eq(json_integer_value(json_object_get(delay, "max")), 16);
    json_decref(o);

    hash.elements = 0; /* no commit counted yet: null numbers, count 0 */
    wq_parse_stats(&array, &s);
    o = wq_stats_json(&s, &(struct wq_limits){6, 2000});
    delay = json_object_get(o, "commit_delay_ms");
    ck_assert(json_is_null(json_object_get(delay, "p50")));
    ck_assert(json_is_null(json_object_get(delay, "max")));
    ck_assert_int_eq(json_integer_value(json_object_get(delay, "count")), 0);
    json_decref(o);

    wq_parse_stats(NULL, &s); /* Redis down: no numbers, never made-up ones */
    ck_assert(!s.available);
    ck_assert(!wq_accepting(&s, &(struct wq_limits){6, 2000}));
    o = wq_stats_json(&s, &(struct wq_limits){6, 2000});
    ck_assert(json_is_null(json_object_get(o, "queue_length")));
    ck_assert(json_is_false(json_object_get(o, "queue_available")));
    ck_assert(json_is_null(json_object_get(o, "commit_delay_ms")));
    json_decref(o);
}
END_TEST

/* ---- write_body: the usual body without jansson, against the core's validation ---- */

/*
 * The rule write_body.h promises: where the scan accepts a body, the core's validation accepts
 * it with the same key and value. Returns whether the scan accepted.
 */
static bool plain_agrees_with_core(const char *body, size_t len, size_t max_value)
{
    struct write_body fast;
    bool plain = write_body_plain(body, len, max_value, &fast);
    struct write_request core;
    json_t *errors = json_array();
    bool core_ok = validate_write_request(body, len, max_value, &core, errors);
    if (plain) {
        ck_assert_msg(core_ok, "the scan accepted a body the core refuses: %.*s", (int)len, body);
        ck_assert_mem_eq(fast.key, core.key, core.key_len);
        ck_assert_uint_eq(fast.key_len, core.key_len);
        ck_assert_uint_eq(fast.value_len, core.value_len);
        if (core.value_len > 0)
            ck_assert_mem_eq(fast.value, core.value, core.value_len);
        ck_assert(fast.key >= body && fast.key + fast.key_len <= body + len);
        ck_assert(fast.value >= body && fast.value + fast.value_len <= body + len);
    }
    if (core_ok)
        write_request_cleanup(&core);
    json_decref(errors);
    return plain;
}

static bool plain(const char *body)
{
    return plain_agrees_with_core(body, strlen(body), 100);
}

START_TEST(usual_bodies_are_read_by_the_scan)
{
    ck_assert(plain("{\"key\":\"bench:1\",\"value\":\"bench:1=vvvv\"}"));
    ck_assert(plain("{\"value\":\"v\",\"key\":\"k\"}"));
    ck_assert(plain(" \r\n\t{ \"key\" : \"a b\" ,\n\"value\" :\"\" } \n"));
    ck_assert(plain("{\"key\":\"~!#$%&'()*+,-./:;<=>?@[]^_`{|}\",\"value\":\"x\"}"));
    struct write_body b;
    const char *body = "{\"key\":\"user:1\",\"value\":\"Ada\"}";
    ck_assert(write_body_plain(body, strlen(body), 100, &b));
    ck_assert_uint_eq(b.key_len, 6);
    ck_assert_mem_eq(b.key, "user:1", 6);
    ck_assert_uint_eq(b.value_len, 3);
    ck_assert_mem_eq(b.value, "Ada", 3);
}
END_TEST

START_TEST(other_bodies_are_left_to_the_core)
{
    const char *declined[] = {
        "",
        "   ",
        "{}",
        "[]",
        "{\"key\":\"k\"}",
        "{\"value\":\"v\"}",
        "{\"key\":\"\",\"value\":\"v\"}",                /* too short: the core's 422 */
        "{\"key\":\"k\",\"value\":\"v\",\"x\":1}",       /* another member */
        "{\"key\":\"k\",\"key\":\"j\",\"value\":\"v\"}", /* twice */
        "{\"key\":\"k\",\"value\":\"v\"",                /* unclosed */
        "{\"key\":\"k\",\"value\":\"v\"}}",              /* trailing bytes */
        "{\"key\":\"k\",\"value\":\"v\"} x",
        "{\"key\":\"k\" \"value\":\"v\"}",  /* no comma */
        "{\"key\":\"k\",,\"value\":\"v\"}", /* two */
        "{\"key\" \"k\",\"value\":\"v\"}",  /* no colon */
        "{\"key\":1,\"value\":\"v\"}",      /* not a string */
        "{\"key\":\"k\",\"value\":null}",
        "{\"key\":\"k\",\"value\":\"a\\\"b\"}",      /* an escape */
        "{\"key\":\"k\\u0041\",\"value\":\"v\"}",    /* an escape */
        "{\"key\":\"k\",\"value\":\"caf\xc3\xa9\"}", /* UTF-8: the core checks it */
        "{\"key\":\"k\",\"value\":\"\xff\"}",        /* invalid UTF-8 */
        "{\"key\":\"k\",\"value\":\"a\tb\"}",        /* a control byte: invalid JSON */
        "{\"key\":\"k\",\"value\":\"a\x7f\"}",       /* DEL: left to the core */
        "{\"ke\":\"k\",\"value\":\"v\"}",
        "{\"keys\":\"k\",\"value\":\"v\"}",
        "\xef\xbb\xbf{\"key\":\"k\",\"value\":\"v\"}", /* a byte-order mark */
        "{\"key\":\"k\",\"value\":\"v\"\f}",           /* not JSON whitespace */
    };
    for (size_t i = 0; i < sizeof declined / sizeof *declined; i++)
        ck_assert_msg(!plain(declined[i]), "accepted: %s", declined[i]);
    /* A NUL byte inside the body. */
    static const char nul[] = "{\"key\":\"k\",\"value\":\"a\0b\"}";
    ck_assert(!plain_agrees_with_core(nul, sizeof nul - 1, 100));
}
END_TEST

START_TEST(lengths_at_their_bounds)
{
    char body[600], key[KEY_MAX_BYTES + 2];
    memset(key, 'k', sizeof key);
    snprintf(body, sizeof body, "{\"key\":\"%.*s\",\"value\":\"v\"}", KEY_MAX_BYTES, key);
    ck_assert(plain(body));
    snprintf(body, sizeof body, "{\"key\":\"%.*s\",\"value\":\"v\"}", KEY_MAX_BYTES + 1, key);
    ck_assert(!plain(body)); /* the core's string_too_long */
    ck_assert(plain_agrees_with_core("{\"key\":\"k\",\"value\":\"12345\"}", 27, 5));
    ck_assert(!plain_agrees_with_core("{\"key\":\"k\",\"value\":\"123456\"}", 28, 5));
    ck_assert(plain_agrees_with_core("{\"key\":\"k\",\"value\":\"\"}", 22, 0));
}
END_TEST

/* Every cut and every one-byte change of a few bodies: the scan never accepts what the core
 * would refuse or read differently. */
START_TEST(mutated_bodies_never_disagree)
{
    const char *seeds[] = {"{\"key\":\"bench:17\",\"value\":\"bench:17=vv\"}",
                           " { \"value\" : \"x y\" , \"key\" : \"a\" } "};
    const char alphabet[] = "{}[]:,\" \\\t\nkeyvalu0\x01\x7f\xc3\xff";
    size_t accepted = 0;
    for (size_t s = 0; s < sizeof seeds / sizeof *seeds; s++) {
        size_t len = strlen(seeds[s]);
        char body[64];
        for (size_t cut = 0; cut <= len; cut++) {
            memcpy(body, seeds[s], cut);
            accepted += plain_agrees_with_core(body, cut, 100);
        }
        for (size_t at = 0; at < len; at++)
            for (size_t c = 0; c < sizeof alphabet - 1; c++) {
                memcpy(body, seeds[s], len);
                body[at] = alphabet[c];
                accepted += plain_agrees_with_core(body, len, 100);
            }
    }
    ck_assert_uint_gt(accepted, 0); /* the seeds themselves, and harmless changes */
}
END_TEST

/* The reply written directly is, byte for byte, the jansson object it replaces. */
START_TEST(the_direct_reply_is_the_jansson_reply)
{
    const char *keys[] = {"k", "bench:1", "a b/c", "~!#$%&'()*+,-./:;<=>?@[]^_`{|}"};
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) {
        size_t len = strlen(keys[i]);
        json_t *ok = record_write_reply(keys[i], len);
        json_object_set_new(ok, "queued", json_true());
        json_object_set_new(ok, "message", json_string("Write queued successfully"));
        char *expected = json_dumps(ok, JSON_COMPACT | JSON_REAL_PRECISION(15));
        json_decref(ok);
        struct evbuffer *buf = evbuffer_new();
        write_body_queued_reply(buf, keys[i], len);
        size_t got_len = evbuffer_get_length(buf);
        ck_assert_uint_eq(got_len, strlen(expected));
        ck_assert_mem_eq(evbuffer_pullup(buf, -1), expected, got_len);
        evbuffer_free(buf);
        free(expected);
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("write_queue");
    suite_add_tcase(s, check_tcase("encodings", NULL, NULL, 60,
                                   (const TTest *const[]){ids_parse_into_ordered_versions,
                                                          a_batch_s_newest_id_skips_dead_entries,
                                                          milliseconds_format_like_postgresql,
                                                          text_arrays_quote_and_escape_everything,
                                                          int_arrays_and_growth, NULL}));
    suite_add_tcase(s, check_tcase("commit delay", NULL, NULL, 60,
                                   (const TTest *const[]){
                                       delay_buckets_are_exact_then_within_an_eighth,
                                       delay_percentiles, delay_histogram_from_redis, NULL}));
    suite_add_tcase(s, check_tcase("replies", NULL, NULL, 60,
                                   (const TTest *const[]){
                                       a_queued_write_reads_as_a_record, append_outcomes,
                                       coalesced_append_outcomes, queue_numbers_and_limits, NULL}));
    suite_add_tcase(
        s, check_tcase("write bodies", NULL, NULL, 60,
                       (const TTest *const[]){
                           usual_bodies_are_read_by_the_scan, other_bodies_are_left_to_the_core,
                           lengths_at_their_bounds, mutated_bodies_never_disagree,
                           the_direct_reply_is_the_jansson_reply, NULL}));
    return check_run(s, CK_FORK_GETENV) ? EXIT_FAILURE : EXIT_SUCCESS;
}
