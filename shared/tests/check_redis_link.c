/*
 * Tests of redis_link and its users (redis.c, redis_subscriber.c) against a real Redis, started
 * by the testkit on a loopback port.
 *
 * A blocking command runs on a connection of its own, whose deadline is its block time plus the
 * command timeout: an XREADGROUP ... BLOCK 1500 on a link whose command timeout is 200 ms waits,
 * and returns the entry added after 1 s, while the shared command connection refuses to carry
 * it. Redis stopped and restarted under a command connection, a blocking connection and a
 * subscription: each comes back by itself. A host name is resolved through the resolver
 * (resolve.h, /etc/hosts) instead of hiredis's blocking lookup.
 */
#include "cache_aside.h"
#include "metrics.h"
#include "redis.h"
#include "redis_link.h"
#include "redis_subscriber.h"
#include "resolve.h"
#include "testkit.h"

#include "check_run.h"

#include <check.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REDIS_PORT      16397
#define COMMAND_TIMEOUT 200 /* ms: what a cache's command deadline looks like */

static struct tk_redis server;
static struct event_base *base;

struct outcome {
    bool answered;         /* the callback ran */
    bool failed;           /* with a NULL reply */
    int type;              /* the reply's type */
    char text[256];        /* a string reply, or the first entry's field of an XREADGROUP */
    long long answered_ms; /* when */
};

static void on_reply(redisReply *reply, void *arg)
{
    struct outcome *o = arg;
    o->answered = true;
    o->answered_ms = tk_now_ms();
    o->failed = reply == NULL;
    if (reply == NULL)
        return;
    o->type = reply->type;
    if (reply->type == REDIS_REPLY_STRING || reply->type == REDIS_REPLY_STATUS ||
        reply->type == REDIS_REPLY_ERROR) {
        snprintf(o->text, sizeof o->text, "%s", reply->str);
    } else if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 1) {
        /* XREADGROUP: [[stream, [[id, [field, value]]]]] */
        redisReply *stream = reply->element[0];
        if (stream->elements == 2 && stream->element[1]->elements == 1) {
            redisReply *entry = stream->element[1]->element[0];
            if (entry->elements == 2 && entry->element[1]->elements == 2)
                snprintf(o->text, sizeof o->text, "%s=%s", entry->element[1]->element[0]->str,
                         entry->element[1]->element[1]->str);
        }
    }
}

/* Runs the loop until *done or timeout_ms; true when done. */
static bool run_until(const bool *done, long timeout_ms)
{
    long long deadline = tk_now_ms() + timeout_ms;
    while (!*done && tk_now_ms() < deadline)
        event_base_loop(base, EVLOOP_ONCE); /* the links' 50 ms ticks wake it */
    return *done;
}

static bool wait_available(struct redis *r, long timeout_ms)
{
    long long deadline = tk_now_ms() + timeout_ms;
    while (!redis_available(r) && tk_now_ms() < deadline)
        event_base_loop(base, EVLOOP_ONCE);
    return redis_available(r);
}

static void command(struct redis *r, struct outcome *o, int argc, const char **argv)
{
    memset(o, 0, sizeof *o);
    redis_command(r, on_reply, o, argc, argv, NULL);
    ck_assert(run_until(&o->answered, 3000));
}

static struct redis *connect_redis(bool blocking, struct resolver *resolver, const char *url)
{
    struct redis_settings settings = {url, COMMAND_TIMEOUT, COMMAND_TIMEOUT, resolver, blocking};
    struct redis *r = redis_create(base, &settings, NULL);
    ck_assert_ptr_nonnull(r);
    ck_assert_msg(wait_available(r, 5000), "never connected to %s", url);
    return r;
}

/* Makes group g on stream s (MKSTREAM), so XREADGROUP ... > waits for new entries. */
static void make_group(struct redis *r)
{
    struct outcome o;
    const char *del[] = {"DEL", "s"};
    command(r, &o, 2, del);
    const char *create[] = {"XGROUP", "CREATE", "s", "g", "$", "MKSTREAM"};
    command(r, &o, 6, create);
    ck_assert_msg(!o.failed && o.type == REDIS_REPLY_STATUS, "XGROUP CREATE: %s", o.text);
}

static const char *xreadgroup[] = {"XREADGROUP", "GROUP", "g",       "c", "COUNT", "1",
                                   "BLOCK",      "1500",  "STREAMS", "s", ">"};

static struct redis *adder; /* for the timer below */
static struct outcome added;

static void add_entry(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what, (void)arg;
    static const char *xadd[] = {"XADD", "s", "*", "field", "late"};
    redis_command(adder, on_reply, &added, 5, xadd, NULL);
}

/* XREADGROUP BLOCK 1500 on `blocking`; an entry is added after 1 s through `commands`. */
static void blocking_read_gets_the_late_entry(struct redis *blocking, struct redis *commands)
{
    make_group(commands);
    struct outcome read = {0};
    long long sent = tk_now_ms();
    ck_assert(redis_command_blocking(blocking, 1500, on_reply, &read, 11, xreadgroup, NULL));
    /* One at a time, and never on the shared connection. */
    struct outcome other = {0};
    ck_assert(!redis_command_blocking(blocking, 1500, on_reply, &other, 11, xreadgroup, NULL));
    ck_assert(!redis_command_blocking(commands, 1500, on_reply, &other, 11, xreadgroup, NULL));
    ck_assert(!other.answered);

    adder = commands;
    memset(&added, 0, sizeof added);
    struct event *timer = evtimer_new(base, add_entry, NULL);
    struct timeval one_second = {1, 0};
    evtimer_add(timer, &one_second);
    ck_assert(run_until(&read.answered, 4000));
    event_free(timer);
    ck_assert_msg(!read.failed, "the blocking read failed after %lld ms", read.answered_ms - sent);
    ck_assert_str_eq(read.text, "field=late");
    ck_assert_int_ge(read.answered_ms - sent, 900); /* it waited well past the 200 ms timeout */
    ck_assert(run_until(&added.answered, 1000));    /* its reply may come after the read's */
    ck_assert(!added.failed);
    ck_assert(redis_available(blocking));
}

static void setup(void)
{
    base = event_base_new();
    ck_assert(tk_redis_restart(&server)); /* in case a test stopped it and then failed */
}

static void teardown(void)
{
    event_base_free(base);
}

START_TEST(a_blocking_read_outlives_the_command_timeout)
{
    struct redis *commands = connect_redis(false, NULL, server.url);
    struct redis *blocking = connect_redis(true, NULL, server.url);
    blocking_read_gets_the_late_entry(blocking, commands);
    /* The shared connection still times out a command that waits. */
    struct outcome o;
    const char *blpop[] = {"BLPOP", "nothing", "1"};
    command(commands, &o, 3, blpop);
    ck_assert(o.failed);
    ck_assert_int_ge(o.answered_ms, 0);
    redis_free(blocking);
    redis_free(commands);
}
END_TEST

static int subscription_changes;
static void on_message(const char *data, size_t len, void *arg)
{
    (void)data, (void)len, (void)arg;
}
static void on_subscription(bool active, void *arg)
{
    (void)arg;
    subscription_changes += active ? 1 : 100;
}

START_TEST(every_kind_of_link_survives_a_restart)
{
    struct redis *commands = connect_redis(false, NULL, server.url);
    struct redis *blocking = connect_redis(true, NULL, server.url);
    subscription_changes = 0;
    struct redis_subscriber *sub = redis_subscriber_create(
        base, NULL, server.url, COMMAND_TIMEOUT, "chan", on_message, on_subscription, NULL);
    ck_assert_ptr_nonnull(sub);
    long long deadline = tk_now_ms() + 5000;
    while (!redis_subscriber_active(sub) && tk_now_ms() < deadline)
        event_base_loop(base, EVLOOP_ONCE);
    ck_assert(redis_subscriber_active(sub));

    /* A blocking read in flight when Redis goes away fails (once), it does not hang. */
    make_group(commands);
    struct outcome read = {0};
    ck_assert(redis_command_blocking(blocking, 1500, on_reply, &read, 11, xreadgroup, NULL));
    ck_assert(tk_redis_stop(&server));
    ck_assert(run_until(&read.answered, 3000));
    ck_assert(read.failed);
    deadline = tk_now_ms() + 2000;
    while ((redis_available(commands) || redis_subscriber_active(sub)) && tk_now_ms() < deadline)
        event_base_loop(base, EVLOOP_ONCE);
    ck_assert(!redis_available(commands));
    ck_assert(!redis_subscriber_active(sub));
    struct outcome down;
    const char *ping[] = {"PING"};
    command(commands, &down, 1, ping);
    ck_assert(down.failed);

    ck_assert(tk_redis_restart(&server));
    ck_assert(wait_available(commands, 5000));
    ck_assert(wait_available(blocking, 5000));
    deadline = tk_now_ms() + 5000;
    while (!redis_subscriber_active(sub) && tk_now_ms() < deadline)
        event_base_loop(base, EVLOOP_ONCE);
    ck_assert(redis_subscriber_active(sub));
    ck_assert_int_eq(subscription_changes, 1 + 100 + 1); /* up, down, up again */

    struct outcome up;
    command(commands, &up, 1, ping);
    ck_assert(!up.failed);
    ck_assert_str_eq(up.text, "PONG");
    blocking_read_gets_the_late_entry(blocking, commands);
    redis_subscriber_free(sub);
    redis_free(blocking);
    redis_free(commands);
}
END_TEST

START_TEST(a_host_name_is_resolved_by_the_resolver)
{
    struct resolver *resolver = resolver_create(base);
    char url[96];
    snprintf(url, sizeof url, "redis://localhost:%d/0", REDIS_PORT);
    struct redis *r = connect_redis(false, resolver, url);
    struct outcome o;
    const char *ping[] = {"PING"};
    command(r, &o, 1, ping);
    ck_assert_str_eq(o.text, "PONG");
    redis_free(r);
    resolver_free(resolver);
}
END_TEST

START_TEST(redis_urls_are_parsed_or_refused)
{
    char host[64];
    int port = 0;
    ck_assert(redis_link_parse_url("redis://127.0.0.1:16440/0", host, sizeof host, &port));
    ck_assert_str_eq(host, "127.0.0.1");
    ck_assert_int_eq(port, 16440);
    ck_assert(redis_link_parse_url("redis://l2-redis", host, sizeof host, &port));
    ck_assert_str_eq(host, "l2-redis");
    ck_assert_int_eq(port, 6379); /* the default port */
    ck_assert(redis_link_parse_url("redis://user:secret@cache:6380/1", host, sizeof host, &port));
    ck_assert_str_eq(host, "cache"); /* credentials are skipped, not taken for the host */
    ck_assert_int_eq(port, 6380);
    ck_assert(redis_link_parse_url("cache:7000", host, sizeof host, &port)); /* no scheme */
    ck_assert_int_eq(port, 7000);
    const char *malformed[] = {"redis://",           "redis://:6379",  "redis://h:",
                               "redis://h:0",        "redis://h:65536", "redis://h:12x",
                               "redis://h:-1/0",     ""};
    for (size_t i = 0; i < sizeof malformed / sizeof *malformed; i++)
        ck_assert_msg(!redis_link_parse_url(malformed[i], host, sizeof host, &port), "'%s'",
                      malformed[i]);
    char small[4]; /* a host longer than the buffer is refused, never cut */
    ck_assert(!redis_link_parse_url("redis://longhost:1", small, sizeof small, &port));
}
END_TEST

/* The loop, turned for ms, with the cache's maintenance between turns (as a server's timer). */
static void maintain_for(struct cache_aside *cache, struct redis *r, long ms)
{
    long long until = tk_now_ms() + ms;
    while (tk_now_ms() < until) {
        event_base_loop(base, EVLOOP_ONCE);
        redis_maintain(r);
        cache_aside_maintain(cache);
    }
}

START_TEST(a_lost_invalidation_is_owed_then_delivered)
{
    /* cache_aside's owed invalidations (cache_aside.h): an invalidation that cannot reach
     * Redis is remembered, the cache distrusts itself until it is delivered, and it is delivered
     * when Redis answers again; past CACHE_OWED_MAX keys the cache owes a clear of all its keys. */
    struct metrics *m = metrics_create(METRIC_MODULE_REDIS | METRIC_MODULE_CACHE);
    struct redis *r = connect_redis(false, NULL, server.url);
    struct cache_settings settings = {"t", 60, NULL};
    struct cache_aside *cache = cache_aside_create(r, &settings, m);
    maintain_for(cache, r, 100);
    ck_assert(cache_aside_available(cache));

    ck_assert(tk_redis_stop(&server));
    maintain_for(cache, r, 500); /* the link notices */
    cache_aside_invalidate(cache, "k", 1);
    maintain_for(cache, r, 100);
    ck_assert_uint_eq(metrics_get(m, METRIC_CACHE_INVALIDATIONS_OWED), 1);
    ck_assert(!cache_aside_available(cache)); /* owing: not to be trusted */
    ck_assert(tk_redis_restart(&server));
    long long deadline = tk_now_ms() + 5000;
    while (!cache_aside_available(cache) && tk_now_ms() < deadline)
        maintain_for(cache, r, 50);
    ck_assert_msg(cache_aside_available(cache), "the owed invalidation was never delivered");
    ck_assert_uint_eq(metrics_get(m, METRIC_CACHE_INVALIDATIONS_DELIVERED_LATE), 1);

    /* More than it can remember: it owes a clear of every key of its prefix instead. */
    ck_assert(tk_redis_stop(&server));
    maintain_for(cache, r, 500);
    char key[32];
    for (int i = 0; i <= CACHE_OWED_MAX; i++) {
        snprintf(key, sizeof key, "k%d", i);
        cache_aside_invalidate(cache, key, strlen(key));
    }
    ck_assert_uint_eq(metrics_get(m, METRIC_CACHE_INVALIDATIONS_OWED), 2 + CACHE_OWED_MAX);
    ck_assert(!cache_aside_available(cache));
    ck_assert(tk_redis_restart(&server));
    deadline = tk_now_ms() + 5000;
    while (!cache_aside_available(cache) && tk_now_ms() < deadline)
        maintain_for(cache, r, 50);
    ck_assert_msg(cache_aside_available(cache), "the owed clear never finished");
    cache_aside_free(cache);
    redis_free(r);
    metrics_free(m);
}
END_TEST

int main(void)
{
    if (!tk_redis_start(&server, REDIS_PORT))
        return 1;
    Suite *s = suite_create("redis_link");
    suite_add_tcase(s, check_tcase("pure", NULL, NULL, 10,
                                   (const TTest *const[]){redis_urls_are_parsed_or_refused, NULL}));
    TCase *tc = check_tcase("real redis", setup, teardown, 60,
                            (const TTest *const[]){a_blocking_read_outlives_the_command_timeout,
                                                   every_kind_of_link_survives_a_restart,
                                                   a_host_name_is_resolved_by_the_resolver,
                                                   a_lost_invalidation_is_owed_then_delivered,
                                                   NULL});
    suite_add_tcase(s, tc);
    int failed = check_run(s, CK_NOFORK); /* one Redis, tests in order */
    tk_redis_destroy(&server);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
