/*
 * Unit tests for config.c: settings read from a table of environment variables.
 *
 * A server that starts with a wrong setting must stop with a message an operator can act on,
 * and must never print a password. So the tests load a small table through a fake lookup (no
 * real environment needed): defaults apply when a variable is unset, a required one that is
 * missing is an error, integers are checked for syntax and bounds, the message names the
 * variable, and config_mask_url / config_print hide passwords in every spelling libpq accepts.
 */
#include "config.h"

#include "check_run.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A fake environment: a NULL-terminated list of "NAME=value" strings. */
static const char *lookup(const char *name, void *arg)
{
    const char *const *env = arg;
    size_t len = strlen(name);
    for (int i = 0; env[i] != NULL; i++)
        if (strncmp(env[i], name, len) == 0 && env[i][len] == '=')
            return env[i] + len + 1;
    return NULL;
}

static char *url;
static char *label;
static long size;
static long offset;

static const struct config_row rows[] = {
    {"DATABASE_URL", CONFIG_URL, NULL, 0, 0, "where the database is", &url, NULL},
    {"LABEL", CONFIG_STRING, "plain", 0, 0, "a name", &label, NULL},
    {"POOL_SIZE", CONFIG_INT, "10", 1, 100, "connections", &size, NULL},
    {"OFFSET", CONFIG_INT, "0", -5, 5, "a signed setting", &offset, NULL},
};
#define ROW_COUNT (sizeof rows / sizeof rows[0])

static bool load(const char *const *env, char *err, size_t errlen)
{
    return config_load(rows, ROW_COUNT, lookup, (void *)env, err, errlen);
}

static void teardown(void)
{
    config_release(rows, ROW_COUNT);
}

/* Loads env and expects a failure whose message contains every given fragment. */
static void expect_error(const char *const *env, const char *fragment1, const char *fragment2)
{
    char err[256] = "";
    ck_assert_msg(!load(env, err, sizeof err), "accepted (expected an error about %s)", fragment1);
    ck_assert_msg(strstr(err, fragment1) != NULL, "'%s' not in '%s'", fragment1, err);
    if (fragment2 != NULL)
        ck_assert_msg(strstr(err, fragment2) != NULL, "'%s' not in '%s'", fragment2, err);
    config_release(rows, ROW_COUNT);
}

/* ---- config_load ---- */

START_TEST(defaults_apply_when_unset)
{
    char err[256];
    const char *env[] = {"DATABASE_URL=postgresql://u:secret@h/db", NULL};
    ck_assert(load(env, err, sizeof err));
    ck_assert_str_eq(url, "postgresql://u:secret@h/db");
    ck_assert_str_eq(label, "plain");
    ck_assert_int_eq(size, 10);
    ck_assert_int_eq(offset, 0);
}
END_TEST

START_TEST(set_values_override_defaults)
{
    char err[256];
    const char *env[] = {"DATABASE_URL=x", "LABEL=", "POOL_SIZE=42", "OFFSET=-3", NULL};
    ck_assert(load(env, err, sizeof err));
    ck_assert_str_eq(label, ""); /* set but empty is a value, not "unset" */
    ck_assert_int_eq(size, 42);
    ck_assert_int_eq(offset, -3);
}
END_TEST

START_TEST(strings_are_the_callers_copies)
{
    char err[256];
    char text[] = "LABEL=mine";
    const char *env[] = {"DATABASE_URL=x", text, NULL};
    ck_assert(load(env, err, sizeof err));
    text[6] = 'X'; /* the lookup's storage changes or goes away */
    ck_assert_str_eq(label, "mine");
    config_release(rows, ROW_COUNT);
    ck_assert_ptr_null(url);
    ck_assert_ptr_null(label);
}
END_TEST

START_TEST(bounds_are_inclusive)
{
    char err[256];
    const char *low[] = {"DATABASE_URL=x", "POOL_SIZE=1", "OFFSET=-5", NULL};
    ck_assert(load(low, err, sizeof err));
    ck_assert_int_eq(size, 1);
    ck_assert_int_eq(offset, -5);
    config_release(rows, ROW_COUNT);
    const char *high[] = {"DATABASE_URL=x", "POOL_SIZE=100", "OFFSET=5", NULL};
    ck_assert(load(high, err, sizeof err));
    ck_assert_int_eq(size, 100);
    ck_assert_int_eq(offset, 5);
}
END_TEST

START_TEST(required_setting_missing)
{
    const char *none[] = {NULL};
    expect_error(none, "DATABASE_URL", "required");
}
END_TEST

START_TEST(int_out_of_range)
{
    const char *zero[] = {"DATABASE_URL=x", "POOL_SIZE=0", NULL};
    expect_error(zero, "POOL_SIZE", "1 to 100");
    const char *big[] = {"DATABASE_URL=x", "POOL_SIZE=101", NULL};
    expect_error(big, "POOL_SIZE", "1 to 100");
    const char *negative[] = {"DATABASE_URL=x", "OFFSET=-6", NULL};
    expect_error(negative, "OFFSET", "-5 to 5");
    const char *huge[] = {"DATABASE_URL=x", "POOL_SIZE=99999999999999999999999", NULL};
    expect_error(huge, "POOL_SIZE", "1 to 100");
}
END_TEST

START_TEST(int_not_a_number)
{
    const char *texts[] = {"POOL_SIZE=many", "POOL_SIZE=",     "POOL_SIZE=5x",
                           "POOL_SIZE=1.5",  "POOL_SIZE=0x10", "POOL_SIZE=5 "};
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        const char *env[] = {"DATABASE_URL=x", texts[i], NULL};
        expect_error(env, "POOL_SIZE", "integer");
    }
}
END_TEST

START_TEST(message_quotes_the_bad_value)
{
    char err[256];
    const char *env[] = {"DATABASE_URL=x", "POOL_SIZE=lots", NULL};
    ck_assert(!load(env, err, sizeof err));
    ck_assert_str_eq(err, "POOL_SIZE=\"lots\" is invalid: expected an integer from 1 to 100");
}
END_TEST

START_TEST(first_bad_setting_is_named)
{
    /* Both are wrong; the message is about the first row, and only about it. */
    char err[256];
    const char *env[] = {"DATABASE_URL=x", "POOL_SIZE=0", "OFFSET=9", NULL};
    ck_assert(!load(env, err, sizeof err));
    ck_assert(strstr(err, "POOL_SIZE") != NULL);
    ck_assert(strstr(err, "OFFSET") == NULL);
}
END_TEST

START_TEST(message_fits_a_small_buffer)
{
    char err[16];
    memset(err, 'z', sizeof err);
    const char *env[] = {"DATABASE_URL=x", "POOL_SIZE=0", NULL};
    ck_assert(!load(env, err, sizeof err));
    ck_assert_uint_eq(strlen(err), sizeof err - 1);
    ck_assert(strncmp(err, "POOL_SIZE", 9) == 0);
}
END_TEST

START_TEST(null_lookup_reads_the_environment)
{
    char err[256];
    static char *value;
    static long number;
    const struct config_row env_rows[] = {
        {"LAYERS_CHECK_CONFIG_TEXT", CONFIG_STRING, NULL, 0, 0, "text", &value, NULL},
        {"LAYERS_CHECK_CONFIG_NUMBER", CONFIG_INT, "1", 0, 9, "number", &number, NULL},
    };
    ck_assert_int_eq(setenv("LAYERS_CHECK_CONFIG_TEXT", "from-env", 1), 0);
    ck_assert_int_eq(setenv("LAYERS_CHECK_CONFIG_NUMBER", "7", 1), 0);
    ck_assert(config_load(env_rows, 2, NULL, NULL, err, sizeof err));
    ck_assert_str_eq(value, "from-env");
    ck_assert_int_eq(number, 7);
    config_release(env_rows, 2);
    unsetenv("LAYERS_CHECK_CONFIG_TEXT");
    ck_assert(!config_load(env_rows, 2, NULL, NULL, err, sizeof err));
    ck_assert(strstr(err, "LAYERS_CHECK_CONFIG_TEXT") != NULL);
    config_release(env_rows, 2);
}
END_TEST

/* ---- masking and printing ---- */

static const char *masked(const char *url_text)
{
    static char out[256];
    config_mask_url(url_text, out, sizeof out);
    return out;
}

START_TEST(mask_url_with_password)
{
    ck_assert_str_eq(masked("postgresql://user:secret@host:5432/db"),
                     "postgresql://user:****@host:5432/db");
    ck_assert_str_eq(masked("postgres://u:p@h/d?sslmode=disable"),
                     "postgres://u:****@h/d?sslmode=disable");
    ck_assert_str_eq(masked("redis://:secret@host:6379/0"), "redis://:****@host:6379/0");
    ck_assert_str_eq(masked("postgresql://user:@host/db"), "postgresql://user:****@host/db");
}
END_TEST

/* REPLICA_DATABASE_URLS, SHARD_URLS: every URL of a list, with or without a path. */
START_TEST(mask_every_url_of_a_list)
{
    ck_assert_str_eq(masked("postgresql://a:s1@h1/db,postgresql://b:s2@h2/db"),
                     "postgresql://a:****@h1/db,postgresql://b:****@h2/db");
    ck_assert_str_eq(masked("postgresql://a:s1@h1,postgresql://b:s2@h2,postgresql://h3/db"),
                     "postgresql://a:****@h1,postgresql://b:****@h2,postgresql://h3/db");
    ck_assert_str_eq(masked("postgresql://a:p,w@h1,h2/db"), "postgresql://a:****@h1,h2/db");
}
END_TEST

START_TEST(mask_url_without_password)
{
    ck_assert_str_eq(masked("postgresql://user@host/db"), "postgresql://user@host/db");
    ck_assert_str_eq(masked("postgresql://host:5432/db"), "postgresql://host:5432/db");
    ck_assert_str_eq(masked("redis://host:6379/0"), "redis://host:6379/0");
    ck_assert_str_eq(masked("postgresql:///db"), "postgresql:///db");
    ck_assert_str_eq(masked(""), "");
}
END_TEST

START_TEST(mask_conninfo_without_password)
{
    ck_assert_str_eq(masked("host=h dbname=d user=u"), "host=h dbname=d user=u");
    ck_assert_str_eq(masked("dbname=d"), "dbname=d");
}
END_TEST

START_TEST(mask_conninfo_password)
{
    /* DATABASE_URL may be a conninfo string (pgconn.h); its password is printed at start-up. */
    const char *out = masked("host=h password=secret dbname=d");
    ck_assert_msg(strstr(out, "secret") == NULL, "password shown: %s", out);
    ck_assert_msg(strstr(out, "host=h") != NULL && strstr(out, "dbname=d") != NULL,
                  "other settings lost: %s", out);
}
END_TEST

START_TEST(mask_password_in_url_query)
{
    /* libpq takes every connection parameter in the URL's query as well. */
    const char *out = masked("postgresql://u@h/db?password=secret&sslmode=disable");
    ck_assert_msg(strstr(out, "secret") == NULL, "password shown: %s", out);
    ck_assert_msg(strstr(out, "sslmode=disable") != NULL, "other settings lost: %s", out);
}
END_TEST

START_TEST(mask_leaves_at_signs_after_the_host_alone)
{
    /* No userinfo: an `@` in the query (Azure-style user names) is not a password's end. */
    ck_assert_str_eq(masked("postgresql://host:5432/db?user=admin@server"),
                     "postgresql://host:5432/db?user=admin@server");
}
END_TEST

START_TEST(mask_never_overflows)
{
    char *small = malloc(20);
    config_mask_url("postgresql://user:secret@host:5432/db", small, 20);
    ck_assert_str_eq(small, "postgresql://user:*");
    free(small);
}
END_TEST

START_TEST(print_masks_and_usage_lists_defaults)
{
    char err[256];
    const char *env[] = {"DATABASE_URL=postgresql://u:secret@h/db", "POOL_SIZE=7", NULL};
    ck_assert(load(env, err, sizeof err));

    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    config_print(rows, ROW_COUNT, out);
    fclose(out);
    ck_assert(strstr(text, "DATABASE_URL=postgresql://u:****@h/db\n") != NULL);
    ck_assert(strstr(text, "secret") == NULL);
    ck_assert(strstr(text, "LABEL=plain\n") != NULL);
    ck_assert(strstr(text, "POOL_SIZE=7\n") != NULL);
    ck_assert(strstr(text, "OFFSET=0\n") != NULL);
    free(text);

    out = open_memstream(&text, &len);
    config_usage(rows, ROW_COUNT, out);
    fclose(out);
    ck_assert(strstr(text, "DATABASE_URL") != NULL);
    ck_assert(strstr(text, "where the database is") != NULL);
    ck_assert(strstr(text, "(required)") != NULL);
    ck_assert(strstr(text, "default 10, range 1..100") != NULL);
    ck_assert(strstr(text, "default 0, range -5..5") != NULL);
    free(text);
}
END_TEST

/* ---- enumerated settings and sets ---- */

static char *strategy;
static long batch;
static char *pool_url;

static const char *const strategies[] = {"modulo", "jump", "range", NULL};

static const struct config_row enum_rows[] = {
    {"STRATEGY", CONFIG_ENUM, "modulo", 0, 0, "how keys map", &strategy, strategies},
};
static const struct config_row batch_rows[] = {
    {"BATCH", CONFIG_INT, "5", 1, 10, "keys per step", &batch, NULL},
};
static const struct config_row pool_rows[] = {
    {"POOL_URL", CONFIG_URL, "postgresql://h/db", 0, 0, "the database", &pool_url, NULL},
};
static const struct config_set sets[] = {
    CONFIG_SET("strategy", enum_rows),
    CONFIG_SET("batch", batch_rows),
    CONFIG_SET("pool", pool_rows),
};
#define SET_COUNT (sizeof sets / sizeof sets[0])

static void sets_teardown(void)
{
    config_sets_release(sets, SET_COUNT);
}

START_TEST(enum_takes_an_allowed_value)
{
    const char *env[] = {"STRATEGY=jump", NULL};
    char err[256] = "";
    ck_assert_msg(config_sets_load(sets, SET_COUNT, lookup, env, err, sizeof err), "%s", err);
    ck_assert_str_eq(strategy, "jump");
    ck_assert_int_eq(batch, 5);
    ck_assert_str_eq(pool_url, "postgresql://h/db");
}
END_TEST

START_TEST(enum_default_applies)
{
    const char *env[] = {NULL};
    char err[256] = "";
    ck_assert_msg(config_sets_load(sets, SET_COUNT, lookup, env, err, sizeof err), "%s", err);
    ck_assert_str_eq(strategy, "modulo");
}
END_TEST

START_TEST(enum_refuses_other_values_naming_the_allowed_ones)
{
    /* Case matters and prefixes do not count: only the listed spellings. */
    const char *bad[] = {"ring", "Jump", "jum", "jumpy", "", NULL};
    for (int i = 0; bad[i] != NULL; i++) {
        char assignment[64];
        snprintf(assignment, sizeof assignment, "STRATEGY=%s", bad[i]);
        const char *env[] = {assignment, NULL};
        char err[256] = "";
        ck_assert_msg(!config_sets_load(sets, SET_COUNT, lookup, env, err, sizeof err),
                      "accepted STRATEGY=%s", bad[i]);
        ck_assert_msg(strstr(err, "STRATEGY") != NULL, "variable not named: %s", err);
        ck_assert_msg(strstr(err, "modulo, jump, range") != NULL, "values not listed: %s", err);
        config_sets_release(sets, SET_COUNT);
    }
}
END_TEST

START_TEST(sets_stop_at_the_first_bad_value_in_any_set)
{
    const char *env[] = {"BATCH=11", NULL};
    char err[256] = "";
    ck_assert(!config_sets_load(sets, SET_COUNT, lookup, env, err, sizeof err));
    ck_assert_msg(strstr(err, "BATCH") != NULL, "%s", err);
}
END_TEST

START_TEST(a_variable_listed_by_two_sets_is_refused)
{
    const struct config_set twice[] = {
        CONFIG_SET("pool", pool_rows),
        CONFIG_SET("batch", batch_rows),
        CONFIG_SET("pool again", pool_rows),
    };
    const char *env[] = {NULL};
    char err[256] = "";
    ck_assert(!config_sets_load(twice, 3, lookup, env, err, sizeof err));
    ck_assert_msg(strstr(err, "POOL_URL") != NULL && strstr(err, "pool again") != NULL, "%s", err);
    config_sets_release(twice, 3);
}
END_TEST

START_TEST(usage_lists_only_the_sets_given_with_enum_values)
{
    char out[4096] = "";
    FILE *f = fmemopen(out, sizeof out - 1, "w");
    config_sets_usage(sets, 2, f); /* without the pool set */
    fclose(f);
    ck_assert_msg(strstr(out, "STRATEGY") != NULL && strstr(out, "BATCH") != NULL, "%s", out);
    ck_assert_msg(strstr(out, "modulo | jump | range") != NULL, "values not listed: %s", out);
    ck_assert_msg(strstr(out, " strategy:") != NULL && strstr(out, " batch:") != NULL,
                  "set headings missing: %s", out);
    ck_assert_msg(strstr(out, "POOL_URL") == NULL, "a set not listed was printed: %s", out);
}
END_TEST

START_TEST(print_shows_enum_values)
{
    const char *env[] = {"STRATEGY=range", NULL};
    char err[256] = "", out[1024] = "";
    ck_assert(config_sets_load(sets, SET_COUNT, lookup, env, err, sizeof err));
    FILE *f = fmemopen(out, sizeof out - 1, "w");
    config_sets_print(sets, SET_COUNT, f);
    fclose(f);
    ck_assert_msg(strstr(out, "STRATEGY=range") != NULL && strstr(out, "BATCH=5") != NULL, "%s",
                  out);
}
END_TEST

int main(void)
{
    Suite *suite = suite_create("config");
    TCase *loading = tcase_create("config_load");
    tcase_add_checked_fixture(loading, NULL, teardown);
    tcase_add_test(loading, defaults_apply_when_unset);
    tcase_add_test(loading, set_values_override_defaults);
    tcase_add_test(loading, strings_are_the_callers_copies);
    tcase_add_test(loading, bounds_are_inclusive);
    tcase_add_test(loading, required_setting_missing);
    tcase_add_test(loading, int_out_of_range);
    tcase_add_test(loading, int_not_a_number);
    tcase_add_test(loading, message_quotes_the_bad_value);
    tcase_add_test(loading, first_bad_setting_is_named);
    tcase_add_test(loading, message_fits_a_small_buffer);
    tcase_add_test(loading, null_lookup_reads_the_environment);
    suite_add_tcase(suite, loading);

    TCase *masking = tcase_create("masking");
    tcase_add_checked_fixture(masking, NULL, teardown);
    tcase_add_test(masking, mask_url_with_password);
    tcase_add_test(masking, mask_every_url_of_a_list);
    tcase_add_test(masking, mask_url_without_password);
    tcase_add_test(masking, mask_conninfo_without_password);
    tcase_add_test(masking, mask_conninfo_password);
    tcase_add_test(masking, mask_password_in_url_query);
    tcase_add_test(masking, mask_leaves_at_signs_after_the_host_alone);
    tcase_add_test(masking, mask_never_overflows);
    tcase_add_test(masking, print_masks_and_usage_lists_defaults);
    suite_add_tcase(suite, masking);

    TCase *composing = tcase_create("sets");
    tcase_add_checked_fixture(composing, NULL, sets_teardown);
    tcase_add_test(composing, enum_takes_an_allowed_value);
    tcase_add_test(composing, enum_default_applies);
    tcase_add_test(composing, enum_refuses_other_values_naming_the_allowed_ones);
    tcase_add_test(composing, sets_stop_at_the_first_bad_value_in_any_set);
    tcase_add_test(composing, a_variable_listed_by_two_sets_is_refused);
    tcase_add_test(composing, usage_lists_only_the_sets_given_with_enum_values);
    tcase_add_test(composing, print_shows_enum_values);
    suite_add_tcase(suite, composing);

    return check_run(suite, CK_FORK_GETENV) ? EXIT_FAILURE : EXIT_SUCCESS;
}
