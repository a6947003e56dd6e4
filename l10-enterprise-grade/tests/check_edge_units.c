/*
 * Unit tests for layer 10's protections, without sockets: API keys and scopes, GCRA and the
 * local limiter, and every transition of the circuit breaker (time is passed in).
 */
#include "api_keys.h"
#include "breaker.h"
#include "check_run.h"
#include "rate_limit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

START_TEST(keys_are_checked_with_their_scopes)
{
    char err[256], id[API_KEY_ID_LEN + 1] = "";
    struct api_keys *keys = api_keys_create("alpha:read+write, beta:admin", "", err, sizeof err);
    ck_assert_msg(keys != NULL, "%s", err);
    ck_assert_uint_eq(api_keys_count(keys), 2);
    ck_assert_int_eq(api_keys_check(keys, NULL, API_SCOPE_READ, id), API_KEY_MISSING);
    ck_assert_int_eq(api_keys_check(keys, "", API_SCOPE_READ, id), API_KEY_MISSING);
    ck_assert_int_eq(api_keys_check(keys, "alph", API_SCOPE_READ, id), API_KEY_UNKNOWN);
    ck_assert_int_eq(api_keys_check(keys, "alpha ", API_SCOPE_READ, id), API_KEY_UNKNOWN);
    ck_assert_int_eq(api_keys_check(keys, "alpha", API_SCOPE_READ, id), API_KEY_OK);
    char alpha[API_KEY_ID_LEN + 1];
    memcpy(alpha, id, sizeof alpha);
    ck_assert_uint_eq(strlen(alpha), API_KEY_ID_LEN);
    ck_assert_ptr_null(strstr(alpha, "alpha"));
    ck_assert_int_eq(api_keys_check(keys, "alpha", API_SCOPE_WRITE, id), API_KEY_OK);
    ck_assert_int_eq(api_keys_check(keys, "alpha", API_SCOPE_ADMIN, id), API_KEY_FORBIDDEN);
    ck_assert_int_eq(api_keys_check(keys, "beta", API_SCOPE_ADMIN, id), API_KEY_OK);
    ck_assert_str_ne(id, alpha); /* another key, another id */
    ck_assert_int_eq(api_keys_check(keys, "beta", API_SCOPE_READ, id), API_KEY_FORBIDDEN);
    api_keys_free(keys);
}
END_TEST

START_TEST(the_id_is_the_digest_prefix)
{
    char err[256], id[API_KEY_ID_LEN + 1];
    struct api_keys *keys = api_keys_create("abc:read", NULL, err, sizeof err);
    ck_assert(keys != NULL);
    ck_assert_int_eq(api_keys_check(keys, "abc", API_SCOPE_READ, id), API_KEY_OK);
    ck_assert_str_eq(id, "ba7816bf8f01cfea"); /* SHA-256("abc") */
    api_keys_free(keys);
}
END_TEST

START_TEST(bad_key_settings_are_refused)
{
    char err[256];
    ck_assert_ptr_null(api_keys_create("", "", err, sizeof err));
    ck_assert_ptr_nonnull(strstr(err, "no API key"));
    ck_assert_ptr_null(api_keys_create("k:read+root", "", err, sizeof err));
    ck_assert_ptr_null(api_keys_create("k", "", err, sizeof err));
    ck_assert_ptr_null(api_keys_create(":read", "", err, sizeof err));
    ck_assert_ptr_null(api_keys_create("k:", "", err, sizeof err));
    ck_assert_ptr_null(api_keys_create("k:read", "/nonexistent/keys", err, sizeof err));
    unsigned scopes;
    ck_assert(api_scopes_parse("admin+read", 10, &scopes));
    ck_assert_uint_eq(scopes, API_SCOPE_ADMIN | API_SCOPE_READ);
    ck_assert(!api_scopes_parse("", 0, &scopes));
}
END_TEST

START_TEST(keys_are_read_from_a_file)
{
    char path[] = "/tmp/l10-keys-XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    const char text[] = "# keys\n  one:read  \n\ntwo:write+admin\n";
    ck_assert_int_eq(write(fd, text, sizeof text - 1), (ssize_t)(sizeof text - 1));
    close(fd);
    char err[256], id[API_KEY_ID_LEN + 1];
    struct api_keys *keys = api_keys_create("", path, err, sizeof err);
    unlink(path);
    ck_assert_msg(keys != NULL, "%s", err);
    ck_assert_uint_eq(api_keys_count(keys), 2);
    ck_assert_int_eq(api_keys_check(keys, "one", API_SCOPE_READ, id), API_KEY_OK);
    ck_assert_int_eq(api_keys_check(keys, "two", API_SCOPE_ADMIN, id), API_KEY_OK);
    ck_assert_int_eq(api_keys_check(keys, "# keys", API_SCOPE_READ, id), API_KEY_UNKNOWN);
    api_keys_free(keys);
}
END_TEST

START_TEST(gcra_allows_the_limit_then_refills_smoothly)
{
    long long tat = 0, now = 1000000;
    struct rate_decision d;
    for (int i = 0; i < 10; i++) { /* a burst of the whole budget */
        gcra_apply(&tat, now, 10, 10000, &d);
        ck_assert_msg(d.allowed, "request %d", i);
        ck_assert_int_eq(d.remaining, 9 - i);
        ck_assert_int_eq(d.limit, 10);
    }
    gcra_apply(&tat, now, 10, 10000, &d);
    ck_assert(!d.allowed);
    ck_assert_int_eq(d.remaining, 0);
    ck_assert_int_eq(d.retry_ms, 1000); /* one request per second comes back */
    ck_assert_int_eq(d.reset_ms, 10000);
    gcra_apply(&tat, now + 999, 10, 10000, &d);
    ck_assert(!d.allowed);
    gcra_apply(&tat, now + 1000, 10, 10000, &d);
    ck_assert(d.allowed);
    ck_assert_int_eq(d.remaining, 0);
    /* Idle for a whole period: the whole budget is back, no more. */
    gcra_apply(&tat, now + 100000, 10, 10000, &d);
    ck_assert(d.allowed);
    ck_assert_int_eq(d.remaining, 9);
}
END_TEST

START_TEST(the_local_limiter_keeps_keys_apart_and_bounded)
{
    struct local_limiter *local = local_limiter_create(4);
    struct rate_decision d;
    for (int i = 0; i < 3; i++) {
        local_limiter_check(local, "aaaa000000000001", 0, 3, 60000, &d);
        ck_assert(d.allowed);
    }
    local_limiter_check(local, "aaaa000000000001", 0, 3, 60000, &d);
    ck_assert(!d.allowed);
    local_limiter_check(local, "bbbb000000000002", 0, 3, 60000, &d);
    ck_assert(d.allowed); /* another key, its own budget */
    ck_assert_int_eq(d.remaining, 2);
    char id[24];
    for (int i = 0; i < 100; i++) { /* more keys than slots: bounded, still answers */
        snprintf(id, sizeof id, "%016x", i * 7919);
        local_limiter_check(local, id, 0, 3, 60000, &d);
        ck_assert(d.allowed);
    }
    local_limiter_free(local);
}
END_TEST

static const struct breaker_settings settings = {
    .window_ms = 1000, .min_calls = 4, .failure_percent = 50, .open_ms = 500};

START_TEST(a_breaker_opens_on_the_failure_rate_after_enough_calls)
{
    struct breaker *b = breaker_create("shard1", &settings);
    ck_assert_str_eq(breaker_name(b), "shard1");
    long long t = 10000;
    for (int i = 0; i < 3; i++) { /* three failures: too few calls to judge */
        ck_assert(breaker_allow(b, t));
        breaker_record(b, false, t);
    }
    ck_assert_int_eq(breaker_state(b), BREAKER_CLOSED);
    ck_assert(breaker_allow(b, t));
    breaker_record(b, false, t);
    ck_assert_int_eq(breaker_state(b), BREAKER_OPEN);
    ck_assert_str_eq(breaker_state_name(breaker_state(b)), "open");
    ck_assert(!breaker_allow(b, t + 1));
    ck_assert_int_eq(breaker_retry_after_s(b, t + 1), 1);
    ck_assert_uint_eq(breaker_refused(b), 1);
    ck_assert_uint_eq(breaker_transitions(b, BREAKER_OPEN), 1);
    breaker_free(b);
}
END_TEST

START_TEST(a_breaker_stays_closed_under_the_rate_and_forgets_old_failures)
{
    struct breaker *b = breaker_create("shard2", &settings);
    long long t = 10000;
    for (int i = 0; i < 10; i++) { /* 30% failures */
        ck_assert(breaker_allow(b, t));
        breaker_record(b, i < 7, t);
    }
    ck_assert_int_eq(breaker_state(b), BREAKER_CLOSED);
    for (int i = 0; i < 3; i++)
        breaker_record(b, false, t + 100);
    ck_assert_int_eq(breaker_state(b), BREAKER_CLOSED);
    /* Later, the old calls have left the window: three failures are too few to judge. */
    for (int i = 0; i < 3; i++)
        breaker_record(b, false, t + 5000);
    ck_assert_int_eq(breaker_state(b), BREAKER_CLOSED);
    breaker_record(b, false, t + 5000);
    ck_assert_int_eq(breaker_state(b), BREAKER_OPEN);
    breaker_free(b);
}
END_TEST

START_TEST(a_breaker_half_opens_with_one_probe_and_closes_on_success)
{
    struct breaker *b = breaker_create("redis", &settings);
    long long t = 10000;
    for (int i = 0; i < 4; i++)
        breaker_record(b, false, t);
    ck_assert_int_eq(breaker_state(b), BREAKER_OPEN);
    ck_assert(!breaker_allow(b, t + 499));
    ck_assert(breaker_allow(b, t + 500)); /* the probe */
    ck_assert_int_eq(breaker_state(b), BREAKER_HALF_OPEN);
    ck_assert(!breaker_allow(b, t + 501)); /* only one */
    breaker_record(b, false, t + 600);     /* the probe failed: open again */
    ck_assert_int_eq(breaker_state(b), BREAKER_OPEN);
    ck_assert(!breaker_allow(b, t + 1000));
    ck_assert(breaker_allow(b, t + 1100));
    breaker_record(b, true, t + 1150);
    ck_assert_int_eq(breaker_state(b), BREAKER_CLOSED);
    ck_assert(breaker_allow(b, t + 1151));
    /* Closed afresh: the failures before are forgotten. */
    breaker_record(b, false, t + 1200);
    ck_assert_int_eq(breaker_state(b), BREAKER_CLOSED);
    ck_assert_uint_eq(breaker_transitions(b, BREAKER_OPEN), 2);
    ck_assert_uint_eq(breaker_transitions(b, BREAKER_HALF_OPEN), 2);
    ck_assert_uint_eq(breaker_transitions(b, BREAKER_CLOSED), 1);
    breaker_record(b, true, t); /* a late outcome while closed is just counted */
    breaker_free(NULL);
    breaker_free(b);
}
END_TEST

int main(void)
{
    Suite *suite = suite_create("l10-units");
    suite_add_tcase(
        suite, check_tcase("units", NULL, NULL, 30,
                           (const TTest *const[]){
                               keys_are_checked_with_their_scopes, the_id_is_the_digest_prefix,
                               bad_key_settings_are_refused, keys_are_read_from_a_file,
                               gcra_allows_the_limit_then_refills_smoothly,
                               the_local_limiter_keeps_keys_apart_and_bounded,
                               a_breaker_opens_on_the_failure_rate_after_enough_calls,
                               a_breaker_stays_closed_under_the_rate_and_forgets_old_failures,
                               a_breaker_half_opens_with_one_probe_and_closes_on_success, NULL}));
    return check_run(suite, CK_FORK_GETENV) ? EXIT_FAILURE : EXIT_SUCCESS;
}
