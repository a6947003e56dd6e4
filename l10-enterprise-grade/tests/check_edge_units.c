/*
 * Unit tests for layer 10's protections, without sockets: API keys and scopes, GCRA, the slices
 * of a shared budget (a simulated Redis and two instances), the local limiter, and every
 * transition of the circuit breaker (time is passed in).
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

START_TEST(gcra_reserves_a_slice_at_once)
{
    long long tat = 0, now = 1000000;
    struct rate_decision d;
    ck_assert_int_eq(gcra_reserve(&tat, now, 10, 10000, 4, &d), 4);
    ck_assert(d.allowed);
    ck_assert_int_eq(d.remaining, 6);
    ck_assert_int_eq(d.reset_ms, 4000);
    ck_assert_int_eq(gcra_reserve(&tat, now, 10, 10000, 100, &d), 6); /* what is left */
    ck_assert_int_eq(d.remaining, 0);
    ck_assert_int_eq(gcra_reserve(&tat, now, 10, 10000, 5, &d), 0);
    ck_assert(!d.allowed);
    ck_assert_int_eq(d.retry_ms, 1000);
    ck_assert_int_eq(gcra_reserve(&tat, now + 2500, 10, 10000, 5, &d), 2); /* refilled two */
    /* One at a time, it is gcra_apply. */
    long long a = 0, b = 0;
    struct rate_decision da, db;
    for (int i = 0; i < 30; i++) {
        gcra_apply(&a, now + i * 300, 7, 6000, &da);
        ck_assert_int_eq(gcra_reserve(&b, now + i * 300, 7, 6000, 1, &db), da.allowed);
        ck_assert_int_eq(da.remaining, db.remaining);
        ck_assert_int_eq(da.retry_ms, db.retry_ms);
    }
}
END_TEST

START_TEST(a_slice_is_capped_by_the_refill_of_one_lease)
{
    ck_assert_int_eq(rate_slice_cap(100, 60000, 100, 100), 1); /* the default limit: exact */
    ck_assert_int_eq(rate_slice_cap(1199, 60000, 100, 100), 1);
    ck_assert_int_eq(rate_slice_cap(6000, 60000, 100, 100), 10);
    ck_assert_int_eq(rate_slice_cap(100000000, 60000, 100, 100), 100); /* RATE_LIMIT_SLICE */
    ck_assert_int_eq(rate_slice_cap(100000000, 60000, 100, 1), 1);
    /* The defaults (RATE_LIMIT_SLICE 1,000, a 100 ms lease): the bound per instance is the
     * lease's refill, 0.17% of the budget, up to 1,000 from 600,000 a minute. */
    ck_assert_int_eq(rate_slice_cap(100000, 60000, 100, 1000), 166);
    ck_assert_int_eq(rate_slice_cap(600000, 60000, 100, 1000), 1000);
    ck_assert_int_eq(rate_slice_cap(100000000, 60000, 100, 1000), 1000);
}
END_TEST

START_TEST(an_allowance_grows_while_busy_and_drops_what_outlives_its_lease)
{
    struct allowance a = {0};
    struct rate_decision d;
    long long tat = 0, t = 5000;
    const long limit = 1000, cap = 8, lease = 100;
    struct rate_decision r;
    /* A new key: asks for one, its own. */
    ck_assert_int_eq(allowance_take(&a, t, limit, &d), ALLOWANCE_ASK);
    long want = allowance_want(&a, t, cap, 1);
    ck_assert_int_eq(want, 1);
    ck_assert(a.pending);
    long g = gcra_reserve(&tat, t, limit, 1000, want, &r);
    allowance_settled(&a, t, t + 1, lease, limit, g, r.remaining, r.reset_ms, r.retry_ms, true,
                      false, &d);
    ck_assert(d.allowed);
    ck_assert(!a.pending);
    ck_assert_int_eq(a.tokens, 0);
    /* Busy (spent within the lease): the slice doubles up to the cap, and is spent here. */
    long asked = 0;
    int spent_here = 0;
    for (int i = 0; i < 60; i++) {
        enum allowance_step step = allowance_take(&a, t + 2, limit, &d);
        if (step == ALLOWANCE_SPENT) {
            spent_here++;
            ck_assert(d.allowed);
            ck_assert_int_eq(d.remaining, a.shared_remaining + a.tokens);
            long ahead = allowance_prefetch(&a, t + 2, cap);
            if (ahead > 0) {
                ck_assert_int_le(a.tokens + ahead, cap); /* never more than one slice held */
                g = gcra_reserve(&tat, t + 2, limit, 1000, ahead, &r);
                asked += ahead;
                allowance_settled(&a, t + 2, t + 2, lease, limit, g, r.remaining, r.reset_ms,
                                  r.retry_ms, false, false, &d);
            }
            continue;
        }
        ck_assert_int_eq(step, ALLOWANCE_ASK);
        want = allowance_want(&a, t + 2, cap, 1);
        ck_assert_int_le(want, cap);
        asked += want;
        g = gcra_reserve(&tat, t + 2, limit, 1000, want, &r);
        allowance_settled(&a, t + 2, t + 2, lease, limit, g, r.remaining, r.reset_ms, r.retry_ms,
                          true, false, &d);
        ck_assert(d.allowed);
        ck_assert_int_le(a.tokens, cap);
    }
    ck_assert_int_eq(a.next_want, cap);
    ck_assert_int_ge(spent_here, 40);               /* most requests asked no one */
    ck_assert_int_eq(asked + 1, 60 + 1 + a.tokens); /* Redis counted what was spent or held */
    /* Quiet: what outlives the lease is dropped, not spent late; the slice shrinks. */
    ck_assert_int_gt(a.tokens, 0);
    ck_assert_int_eq(allowance_take(&a, t + 2 + lease, limit, &d), ALLOWANCE_ASK);
    ck_assert_int_eq(a.tokens, 0);
    ck_assert_int_eq(a.next_want, cap / 2);
}
END_TEST

/*
 * A slice larger than a lease's requests: a spend in the second half of the lease asks ahead for
 * what was spent, which renews the lease, so the requests after it find tokens instead of the
 * slice dropped and a round trip to wait for. A slice nobody spends is still dropped.
 */
START_TEST(a_slice_still_spent_is_renewed_before_its_lease_ends)
{
    struct allowance a = {0};
    struct rate_decision d;
    const long cap = 8, lease = 100;
    ck_assert_int_eq(allowance_want(&a, 0, cap, 8), 8);
    allowance_settled(&a, 0, 1, lease, 1000, 8, 900, 1000, 0, false, false, &d);
    ck_assert_int_eq(allowance_take(&a, 10, 1000, &d), ALLOWANCE_SPENT);
    ck_assert_int_eq(allowance_prefetch(&a, 10, cap), 0); /* early in the lease, 7 of 8 held */
    ck_assert_int_eq(allowance_take(&a, 60, 1000, &d), ALLOWANCE_SPENT);
    long ahead = allowance_prefetch(&a, 60, cap); /* half the lease gone: the 2 spent */
    ck_assert_int_eq(ahead, 2);
    ck_assert_int_eq(a.next_want, cap); /* not doubled: the key is not spending it that fast */
    ck_assert_int_eq(allowance_prefetch(&a, 61, cap), 0); /* one settle at a time */
    allowance_settled(&a, 60, 61, lease, 1000, 2, 890, 1000, 0, false, false, &d);
    ck_assert_int_eq(a.tokens, 8); /* one slice held, never more */
    ck_assert_int_eq(allowance_take(&a, 130, 1000, &d), ALLOWANCE_SPENT); /* renewed: no wait */
    ck_assert_int_eq(allowance_take(&a, 160, 1000, &d), ALLOWANCE_ASK);   /* quiet: dropped */
    ck_assert_int_eq(a.tokens, 0);
}
END_TEST

START_TEST(a_settle_covers_the_requests_waiting_for_it)
{
    struct allowance a = {0};
    struct rate_decision d, r;
    long long tat = 0;
    /* 40 requests arrive at once: one settle is asked for all of them (up to the cap). */
    ck_assert_int_eq(allowance_take(&a, 0, 1000, &d), ALLOWANCE_ASK);
    long want = allowance_want(&a, 0, 100, 40);
    ck_assert_int_eq(want, 40);
    long g = gcra_reserve(&tat, 0, 1000, 1000, want, &r);
    allowance_settled(&a, 0, 1, 100, 1000, g, r.remaining, r.reset_ms, r.retry_ms, false, false,
                      &d);
    for (int i = 0; i < 40; i++)
        ck_assert_int_eq(allowance_take(&a, 1, 1000, &d), ALLOWANCE_SPENT);
    ck_assert_int_eq(d.remaining, 960);
    ck_assert_int_eq(allowance_take(&a, 1, 1000, &d), ALLOWANCE_ASK);
    ck_assert_int_eq(allowance_want(&a, 1, 100, 500), 100); /* the cap holds */
}
END_TEST

START_TEST(a_refused_settle_is_not_asked_again_ahead_until_retry_after)
{
    struct allowance a = {0};
    struct rate_decision d;
    /* A slice of 8, 6 spent: the next is asked for ahead, and Redis has none left. */
    ck_assert_int_eq(allowance_want(&a, 0, 8, 8), 8);
    allowance_settled(&a, 0, 1, 1000, 100, 8, 0, 60000, 0, false, false, &d);
    for (int i = 0; i < 6; i++)
        ck_assert_int_eq(allowance_take(&a, 2, 100, &d), ALLOWANCE_SPENT);
    long ahead = allowance_prefetch(&a, 2, 8);
    ck_assert_int_gt(ahead, 0);
    allowance_settled(&a, 2, 3, 1000, 100, 0, 0, 60000, 600, false, false, &d);
    ck_assert_int_eq(allowance_prefetch(&a, 4, 8), 0); /* not again at once: no loop */
    ck_assert_int_eq(allowance_take(&a, 4, 100, &d), ALLOWANCE_SPENT); /* the held ones serve */
    ck_assert_int_eq(allowance_prefetch(&a, 603, 8), 8 - 1);           /* after Retry-After */
}
END_TEST

START_TEST(a_refusal_is_remembered_for_at_most_a_lease)
{
    struct allowance a = {0};
    struct rate_decision d;
    ck_assert_int_eq(allowance_take(&a, 0, 5, &d), ALLOWANCE_ASK);
    ck_assert_int_eq(allowance_want(&a, 0, 1, 3), 1); /* never over the cap */
    allowance_settled(&a, 0, 1, 100, 5, 0, 0, 60000, 12000, true, false, &d);
    ck_assert(!d.allowed);
    ck_assert_int_eq(d.retry_ms, 12000);
    ck_assert_int_eq(allowance_take(&a, 50, 5, &d), ALLOWANCE_REFUSED); /* no round trip */
    ck_assert(!d.allowed);
    ck_assert_int_eq(d.remaining, 0);
    ck_assert_int_eq(d.retry_ms, 11951);
    ck_assert_int_eq(allowance_take(&a, 101, 5, &d), ALLOWANCE_ASK); /* the lease is over */
    allowance_failed(&a, false);
    ck_assert(!a.pending);
}
END_TEST

/*
 * Two instances take slices of one budget in a simulated Redis (gcra_reserve, as the script)
 * under bursts over the limit: in every window, what they admitted together is at most what
 * GCRA alone admits in that window (the whole budget plus its refill) plus the documented bound,
 * instances x slice; and Redis counted everything admitted.
 */
START_TEST(a_burst_across_two_instances_stays_within_the_bound)
{
    enum { INSTANCES = 2, MS = 3000 };
    /* A long lease: slices held through a pause in which the budget refills completely, then
     * spent in the burst after it, on top of the whole budget: the worst case of the bound. */
    const long limit = 1000, lease = 1000;
    const long long period = 1000; /* one request per ms */
    const long cap = rate_slice_cap(limit, period, lease, 100);
    ck_assert_int_eq(cap, 100);
    struct allowance a[INSTANCES] = {{0}};
    static int admitted[MS];
    long long tat = 0, counted = 0, total = 0;
    unsigned seed = 12345;
    for (long long t = 0; t < MS; t++) {
        for (int i = 0; i < INSTANCES; i++) {
            seed = seed * 1103515245u + 12345u;
            int burst = (int)((seed >> 16) % 8); /* 3.5 per ms each: 7 times the rate */
            if (t < 300)
                burst = (int)((seed >> 16) % 4); /* busy, within the budget: slices grow */
            if (t >= 300 && t < 1100)
                burst = 0; /* a pause: the budget refills, the slices are still held */
            if (t >= 2000 && t < 2700)
                burst = t == 2500 ? 1 : 0; /* a longer one: the slices outlive their lease */
            for (int k = 0; k < burst; k++) {
                struct rate_decision d, r;
                enum allowance_step step = allowance_take(&a[i], t, limit, &d);
                if (step == ALLOWANCE_ASK) {
                    long want = allowance_want(&a[i], t, cap, 1);
                    long g = gcra_reserve(&tat, t, limit, period, want, &r);
                    counted += g;
                    allowance_settled(&a[i], t, t, lease, limit, g, r.remaining, r.reset_ms,
                                      r.retry_ms, true, false, &d);
                } else if (step == ALLOWANCE_SPENT) {
                    long ahead = allowance_prefetch(&a[i], t, cap);
                    if (ahead > 0) {
                        long g = gcra_reserve(&tat, t, limit, period, ahead, &r);
                        counted += g;
                        struct rate_decision unused;
                        allowance_settled(&a[i], t, t, lease, limit, g, r.remaining, r.reset_ms,
                                          r.retry_ms, false, false, &unused);
                    }
                }
                ck_assert_int_le(a[i].tokens, cap);
                admitted[t] += d.allowed;
                total += d.allowed;
            }
        }
    }
    ck_assert_int_le(total, counted);
    /* Not stingy either: the budget (1,000 at the start) and its refill, less what outlived its
     * lease (at most a slice per instance per pause). */
    ck_assert_int_ge(total, limit + MS - 2 * INSTANCES * cap - 2);
    long long worst = 0;
    for (long long from = 0; from < MS; from += 7) {
        long long sum = 0;
        for (long long to = from; to < MS && to < from + 2 * period; to++) {
            sum += admitted[to];
            long long gcra_max = limit + (to - from) * limit / period; /* burst + refill */
            ck_assert_msg(sum <= gcra_max + INSTANCES * cap,
                          "[%lld, %lld]: %lld admitted, GCRA allows %lld + %ld", from, to, sum,
                          gcra_max, INSTANCES * cap);
            if (sum - gcra_max > worst)
                worst = sum - gcra_max;
        }
    }
    ck_assert_int_gt(worst, cap); /* the case the bound is for did happen, on both instances */
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

START_TEST(a_backend_seen_answering_ends_the_open_time_early)
{
    struct breaker_settings s = {1000, 2, 50, 5000};
    struct breaker *b = breaker_create("shard1", &s);
    long long t = 10000;
    breaker_backend_answered(b, t); /* closed: nothing to end */
    ck_assert_int_eq(breaker_state(b), BREAKER_CLOSED);
    breaker_record(b, false, t);
    breaker_record(b, false, t + 1);
    ck_assert_int_eq(breaker_state(b), BREAKER_OPEN);
    ck_assert(!breaker_allow(b, t + 300));
    ck_assert_int_eq(breaker_retry_after_s(b, t + 300), 5);
    breaker_backend_answered(b, t + 400);             /* the health probe's SELECT 1 answered */
    ck_assert_int_eq(breaker_state(b), BREAKER_OPEN); /* a real call closes it, not the probe */
    ck_assert_int_eq(breaker_retry_after_s(b, t + 400), 1);
    ck_assert(breaker_allow(b, t + 401)); /* the half-open call, 4.6 s early */
    ck_assert_int_eq(breaker_state(b), BREAKER_HALF_OPEN);
    ck_assert(!breaker_allow(b, t + 402));
    breaker_backend_answered(b, t + 403); /* half-open: no-op */
    ck_assert(!breaker_allow(b, t + 404));
    breaker_record(b, true, t + 410);
    ck_assert_int_eq(breaker_state(b), BREAKER_CLOSED);
    breaker_free(b);
}
END_TEST

int main(void)
{
    Suite *suite = suite_create("l10-units");
    suite_add_tcase(
        suite,
        check_tcase("units", NULL, NULL, 30,
                    (const TTest *const[]){
                        keys_are_checked_with_their_scopes, the_id_is_the_digest_prefix,
                        bad_key_settings_are_refused, keys_are_read_from_a_file,
                        gcra_allows_the_limit_then_refills_smoothly, gcra_reserves_a_slice_at_once,
                        a_slice_is_capped_by_the_refill_of_one_lease,
                        an_allowance_grows_while_busy_and_drops_what_outlives_its_lease,
                        a_slice_still_spent_is_renewed_before_its_lease_ends,
                        a_settle_covers_the_requests_waiting_for_it,
                        a_refused_settle_is_not_asked_again_ahead_until_retry_after,
                        a_refusal_is_remembered_for_at_most_a_lease,
                        a_burst_across_two_instances_stays_within_the_bound,
                        the_local_limiter_keeps_keys_apart_and_bounded,
                        a_breaker_opens_on_the_failure_rate_after_enough_calls,
                        a_breaker_stays_closed_under_the_rate_and_forgets_old_failures,
                        a_breaker_half_opens_with_one_probe_and_closes_on_success,
                        a_backend_seen_answering_ends_the_open_time_early, NULL}));
    return check_run(suite, CK_FORK_GETENV) ? EXIT_FAILURE : EXIT_SUCCESS;
}
