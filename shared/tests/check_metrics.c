/*
 * Unit tests for metrics.c: counters filtered by module, route labels from templates,
 * cumulative histogram buckets whose +Inf bucket equals the count.
 */
#include "metrics.h"

#include <check.h>
#include <event2/buffer.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *render(struct metrics *m)
{
    struct evbuffer *buf = evbuffer_new();
    metrics_render(m, buf);
    size_t len = evbuffer_get_length(buf);
    char *text = malloc(len + 1);
    evbuffer_remove(buf, text, len);
    text[len] = '\0';
    evbuffer_free(buf);
    return text;
}

START_TEST(counters_and_modules)
{
    struct metrics *m = metrics_create(METRIC_MODULE_POOL);
    metrics_inc(m, METRIC_POOL_ACQUIRES);
    metrics_add(m, METRIC_POOL_ACQUIRES, 2);
    metrics_inc(m, METRIC_PG_QUERIES);
    char *text = render(m);
    ck_assert(strstr(text, "# TYPE pool_acquires_total counter\npool_acquires_total 3\n") != NULL);
    ck_assert(strstr(text, "pg_queries_total") == NULL); /* module not shown */
    ck_assert_uint_eq(metrics_get(m, METRIC_PG_QUERIES), 1);
    free(text);
    metrics_free(m);
    metrics_inc(NULL, METRIC_PG_QUERIES); /* no metrics: a no-op */
}
END_TEST

START_TEST(histograms_by_route_and_status)
{
    struct metrics *m = metrics_create(0);
    int read = metrics_route_register(m, "GET", "/read/{key}");
    metrics_observe(m, read, 200, 0.0002);
    metrics_observe(m, read, 200, 0.003);
    metrics_observe(m, read, 200, 20.0);
    metrics_observe(m, -1, 404, 0.001);
    metrics_observe(m, read, 299, 0.001); /* an untracked status is "other" */
    char *text = render(m);
    const char *labels = "method=\"GET\",route=\"/read/{key}\",status=\"200\"";
    char line[256];
    snprintf(line, sizeof line, "http_requests_total{%s} 3\n", labels);
    ck_assert(strstr(text, line) != NULL);
    snprintf(line, sizeof line, "http_request_duration_seconds_bucket{%s,le=\"0.0005\"} 1\n",
             labels);
    ck_assert(strstr(text, line) != NULL);
    snprintf(line, sizeof line, "http_request_duration_seconds_bucket{%s,le=\"0.005\"} 2\n",
             labels);
    ck_assert(strstr(text, line) != NULL);
    snprintf(line, sizeof line, "http_request_duration_seconds_bucket{%s,le=\"10\"} 2\n", labels);
    ck_assert(strstr(text, line) != NULL);
    snprintf(line, sizeof line, "http_request_duration_seconds_bucket{%s,le=\"+Inf\"} 3\n", labels);
    ck_assert(strstr(text, line) != NULL);
    ck_assert(strstr(text, "route=\"unmatched\",status=\"404\"} 1") != NULL);
    ck_assert(strstr(text, "status=\"other\"} 1") != NULL);
    free(text);
    metrics_free(m);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("metrics");
    TCase *tc = tcase_create("metrics");
    tcase_add_test(tc, counters_and_modules);
    tcase_add_test(tc, histograms_by_route_and_status);
    suite_add_tcase(s, tc);
    SRunner *r = srunner_create(s);
    srunner_run_all(r, CK_NORMAL);
    int failed = srunner_ntests_failed(r);
    srunner_free(r);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
