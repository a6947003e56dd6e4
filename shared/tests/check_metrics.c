/*
 * Unit tests for metrics.c: the Prometheus exposition behind /metrics.
 *
 * A scraper trusts the text format blindly, so the tests render into an evbuffer and read the
 * lines back: every counter of a shown module has its # HELP and # TYPE lines and its value,
 * modules a server does not use stay out, histogram buckets are cumulative with +Inf equal to
 * the count, requests that matched no route share one `unmatched` label, and the label set
 * stays bounded however many routes or status codes show up. No sockets.
 */
#include "metrics.h"

#include "check_run.h"

#include <check.h>
#include <event2/buffer.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Every counter's name, from the same X-macro list the module uses. */
static const struct {
    enum metric_counter id;
    unsigned module;
    const char *name;
    const char *help;
} counters[] = {
#define COUNTER_ROW(id, module, name, help) {METRIC_##id, module, name, help},
    METRIC_COUNTERS(COUNTER_ROW)
#undef COUNTER_ROW
};
#define COUNTER_ROWS (sizeof counters / sizeof counters[0])

/* Renders m as a NUL-terminated string (caller frees). */
static char *render(struct metrics *m)
{
    struct evbuffer *out = evbuffer_new();
    metrics_render(m, out);
    size_t len = evbuffer_get_length(out);
    char *text = malloc(len + 1);
    evbuffer_remove(out, text, len);
    text[len] = '\0';
    evbuffer_free(out);
    return text;
}

/* How many lines of text start with prefix. */
static int lines_starting(const char *text, const char *prefix)
{
    int n = 0;
    size_t len = strlen(prefix);
    for (const char *line = text; *line != '\0';) {
        if (strncmp(line, prefix, len) == 0)
            n++;
        const char *end = strchr(line, '\n');
        if (end == NULL)
            break;
        line = end + 1;
    }
    return n;
}

/* The value of the one sample line that starts with series (name and labels), or -1. */
static double sample(const char *text, const char *series)
{
    char prefix[512];
    snprintf(prefix, sizeof prefix, "%s ", series);
    ck_assert_msg(lines_starting(text, prefix) <= 1, "%s appears twice", series);
    for (const char *line = text; line != NULL && *line != '\0';) {
        if (strncmp(line, prefix, strlen(prefix)) == 0)
            return strtod(line + strlen(prefix), NULL);
        line = strchr(line, '\n');
        if (line != NULL)
            line++;
    }
    return -1;
}

static void expect_sample(const char *text, const char *series, double expected)
{
    double got = sample(text, series);
    ck_assert_msg(got == expected, "%s is %g, expected %g", series, got, expected);
}

/* ---- counters ---- */

START_TEST(counters_render_with_help_and_type)
{
    struct metrics *m = metrics_create(~0u); /* every module */
    metrics_add(m, METRIC_PG_QUERIES, 3);
    metrics_inc(m, METRIC_PG_QUERIES);
    metrics_inc(m, METRIC_POOL_TIMEOUTS);
    ck_assert_uint_eq(metrics_get(m, METRIC_PG_QUERIES), 4);
    char *text = render(m);

    ck_assert(strstr(text, "# HELP pg_queries_total Queries sent to PostgreSQL\n"
                           "# TYPE pg_queries_total counter\n"
                           "pg_queries_total 4\n") != NULL);
    expect_sample(text, "pool_acquire_timeouts_total", 1);
    for (size_t i = 0; i < COUNTER_ROWS; i++) {
        char line[256];
        snprintf(line, sizeof line, "# HELP %s %s\n# TYPE %s counter\n%s ", counters[i].name,
                 counters[i].help, counters[i].name, counters[i].name);
        ck_assert_msg(strstr(text, line) != NULL, "%s not rendered", counters[i].name);
        snprintf(line, sizeof line, "# TYPE %s ", counters[i].name);
        ck_assert_int_eq(lines_starting(text, line), 1);
    }
    expect_sample(text, "pg_connects_total", 0); /* untouched counters show 0 */
    free(text);
    metrics_free(m);
}
END_TEST

START_TEST(modules_filter_the_counters)
{
    struct metrics *m = metrics_create(METRIC_MODULE_PG);
    metrics_inc(m, METRIC_POOL_ACQUIRES); /* counted, but not shown */
    char *text = render(m);
    for (size_t i = 0; i < COUNTER_ROWS; i++) {
        bool shown = strstr(text, counters[i].name) != NULL;
        ck_assert_msg(shown == (counters[i].module == METRIC_MODULE_PG), "%s shown: %d",
                      counters[i].name, shown);
    }
    ck_assert_uint_eq(metrics_get(m, METRIC_POOL_ACQUIRES), 1);
    free(text);
    metrics_free(m);

    m = metrics_create(0);
    text = render(m);
    ck_assert_int_eq(lines_starting(text, "pg_"), 0);
    ck_assert_int_eq(lines_starting(text, "pool_"), 0);
    ck_assert(strstr(text, "# TYPE http_requests_total counter\n") != NULL);
    ck_assert(strstr(text, "# TYPE http_request_duration_seconds histogram\n") != NULL);
    free(text);
    metrics_free(m);
}
END_TEST

START_TEST(null_metrics_are_ignored)
{
    metrics_add(NULL, METRIC_PG_QUERIES, 5);
    metrics_inc(NULL, METRIC_PG_QUERIES);
    metrics_observe(NULL, 0, 200, 0.1);
    metrics_add_gauges(NULL, NULL, NULL);
    ck_assert_int_eq(metrics_route_register(NULL, "GET", "/x"), -1);
    ck_assert_uint_eq(metrics_get(NULL, METRIC_PG_QUERIES), 0);
    metrics_free(NULL);
}
END_TEST

#define THREADS 4
#define ADDS    20000

static void *add_many(void *arg)
{
    for (int i = 0; i < ADDS; i++)
        metrics_inc(arg, METRIC_PG_QUERIES);
    return NULL;
}

START_TEST(counters_are_thread_safe)
{
    struct metrics *m = metrics_create(METRIC_MODULE_PG);
    pthread_t threads[THREADS];
    for (int i = 0; i < THREADS; i++)
        ck_assert_int_eq(pthread_create(&threads[i], NULL, add_many, m), 0);
    for (int i = 0; i < THREADS; i++)
        pthread_join(threads[i], NULL);
    ck_assert_uint_eq(metrics_get(m, METRIC_PG_QUERIES), THREADS * ADDS);
    metrics_free(m);
}
END_TEST

/* ---- request histograms ---- */

#define READ_LABELS     "method=\"GET\",route=\"/read/{key}\",status=\"200\""
#define READ_BUCKET(le) "http_request_duration_seconds_bucket{" READ_LABELS ",le=\"" le "\"}"
#define REQUESTS(method, route, status)                                                            \
    "http_requests_total{method=\"" method "\",route=\"" route "\",status=\"" status "\"}"

START_TEST(histogram_buckets_are_cumulative)
{
    struct metrics *m = metrics_create(0);
    int route = metrics_route_register(m, "GET", "/read/{key}");
    ck_assert_int_eq(route, 0);
    const double seconds[] = {0.0004, 0.001, 0.003, 0.2, 20.0};
    for (size_t i = 0; i < 5; i++)
        metrics_observe(m, route, 200, seconds[i]);
    char *text = render(m);

    expect_sample(text, "http_requests_total{" READ_LABELS "}", 5);
    const char *bucket = "http_request_duration_seconds_bucket{" READ_LABELS;
    expect_sample(text, READ_BUCKET("0.0005"), 1);
    /* A bound is inclusive (le): 0.001 counts in the 0.001 bucket. */
    expect_sample(text, READ_BUCKET("0.001"), 2);
    expect_sample(text, READ_BUCKET("0.0025"), 2);
    expect_sample(text, READ_BUCKET("0.005"), 3);
    expect_sample(text, READ_BUCKET("0.25"), 4);
    expect_sample(text, READ_BUCKET("10"), 4);
    expect_sample(text, READ_BUCKET("+Inf"), 5);
    expect_sample(text, "http_request_duration_seconds_count{" READ_LABELS "}", 5);
    double sum = sample(text, "http_request_duration_seconds_sum{" READ_LABELS "}");
    ck_assert(sum > 20.2043 && sum < 20.2045);

    /* Every bucket line, in order, never decreases; the last is +Inf. */
    int buckets = 0;
    double previous = 0;
    const char *last = NULL;
    for (const char *line = strstr(text, bucket); line != NULL; line = strstr(line + 1, bucket)) {
        double value = strtod(strchr(line, '}') + 2, NULL);
        ck_assert(value >= previous);
        previous = value;
        last = line;
        buckets++;
    }
    ck_assert_int_eq(buckets, 15); /* 14 bounds and +Inf */
    ck_assert(strncmp(last + strlen(bucket), ",le=\"+Inf\"}", 11) == 0);
    free(text);
    metrics_free(m);
}
END_TEST

START_TEST(series_are_per_route_and_status)
{
    struct metrics *m = metrics_create(0);
    int read = metrics_route_register(m, "GET", "/read/{key}");
    int write = metrics_route_register(m, "POST", "/write");
    int health = metrics_route_register(m, "GET", "/health");
    metrics_observe(m, read, 200, 0.01);
    metrics_observe(m, read, 200, 0.01);
    metrics_observe(m, read, 503, 0.01);
    metrics_observe(m, write, 422, 0.01);
    char *text = render(m);
    expect_sample(text, "http_requests_total{" READ_LABELS "}", 2);
    expect_sample(text, REQUESTS("GET", "/read/{key}", "503"), 1);
    expect_sample(text, REQUESTS("POST", "/write", "422"), 1);
    /* Only series with observations are printed: /health is registered, never observed. */
    ck_assert_int_ne(health, read);
    ck_assert_int_ne(health, write);
    ck_assert(strstr(text, "/health") == NULL);
    ck_assert_int_eq(lines_starting(text, "http_requests_total{"), 3);
    ck_assert_int_eq(lines_starting(text, "http_request_duration_seconds_count{"), 3);
    free(text);
    metrics_free(m);
}
END_TEST

START_TEST(unmatched_requests_share_one_label)
{
    struct metrics *m = metrics_create(0);
    int read = metrics_route_register(m, "GET", "/read/{key}");
    metrics_observe(m, -1, 404, 0.001);
    metrics_observe(m, -1, 404, 0.001);
    metrics_observe(m, read + 5, 404, 0.001); /* an index never registered */
    metrics_observe(m, -1, 405, 0.001);
    char *text = render(m);
    expect_sample(text, REQUESTS("*", "unmatched", "404"), 3);
    expect_sample(text, REQUESTS("*", "unmatched", "405"), 1);
    ck_assert_int_eq(lines_starting(text, "http_requests_total{"), 2);
    free(text);
    metrics_free(m);
}
END_TEST

START_TEST(label_set_is_bounded)
{
    struct metrics *m = metrics_create(0);
    int last = -1, refused = 0;
    char path[32];
    for (int i = 0; i < 40; i++) {
        snprintf(path, sizeof path, "/r%d", i);
        int route = metrics_route_register(m, "GET", path);
        if (route < 0)
            refused++;
        else
            last = route;
    }
    ck_assert_int_eq(last, 31); /* room for 32 routes */
    ck_assert_int_eq(refused, 8);

    /* Any status code: the untracked ones all share status="other". */
    for (int status = 100; status < 600; status++)
        metrics_observe(m, 0, status, 0.001);
    char *text = render(m);
    ck_assert_int_eq(lines_starting(text, "http_requests_total{method=\"GET\",route=\"/r0\","), 12);
    expect_sample(text, REQUESTS("GET", "/r0", "200"), 1);
    expect_sample(text, REQUESTS("GET", "/r0", "other"), 500 - 11);
    free(text);
    metrics_free(m);
}
END_TEST

START_TEST(long_route_labels_are_truncated_not_overflowed)
{
    struct metrics *m = metrics_create(0);
    char route[200];
    memset(route, 'x', sizeof route - 1);
    route[0] = '/';
    route[sizeof route - 1] = '\0';
    int r = metrics_route_register(m, "PROPFIND-LONG", route);
    metrics_observe(m, r, 200, 0.001);
    char *text = render(m);
    ck_assert_int_eq(lines_starting(text, "http_requests_total{method=\""), 1);
    ck_assert(strstr(text, route) == NULL);
    free(text);
    metrics_free(m);
}
END_TEST

/* ---- gauges ---- */

static void test_gauge(struct evbuffer *out, void *arg)
{
    evbuffer_add_printf(out, "# HELP test_gauge A gauge.\n# TYPE test_gauge gauge\ntest_gauge %d\n",
                        *(int *)arg);
}

START_TEST(gauges_follow_the_counters)
{
    struct metrics *m = metrics_create(METRIC_MODULE_POOL);
    int value = 7;
    metrics_add_gauges(m, test_gauge, &value);
    char *text = render(m);
    const char *gauge = strstr(text, "# TYPE test_gauge gauge\ntest_gauge 7\n");
    ck_assert_ptr_nonnull(gauge);
    ck_assert(gauge > strstr(text, "pool_connections_retired_total"));
    free(text);

    value = 8; /* read at each render, not copied */
    text = render(m);
    expect_sample(text, "test_gauge", 8);
    free(text);
    metrics_free(m);
}
END_TEST

int main(void)
{
    Suite *suite = suite_create("metrics");
    TCase *tc = tcase_create("metrics");
    tcase_add_test(tc, counters_render_with_help_and_type);
    tcase_add_test(tc, modules_filter_the_counters);
    tcase_add_test(tc, null_metrics_are_ignored);
    tcase_add_test(tc, counters_are_thread_safe);
    tcase_add_test(tc, histogram_buckets_are_cumulative);
    tcase_add_test(tc, series_are_per_route_and_status);
    tcase_add_test(tc, unmatched_requests_share_one_label);
    tcase_add_test(tc, label_set_is_bounded);
    tcase_add_test(tc, long_route_labels_are_truncated_not_overflowed);
    tcase_add_test(tc, gauges_follow_the_counters);
    suite_add_tcase(suite, tc);

    return check_run(suite, CK_FORK_GETENV) ? EXIT_FAILURE : EXIT_SUCCESS;
}
