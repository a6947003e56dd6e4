/*
 * Unit tests for config.c: defaults, required settings, integer bounds, error messages that name
 * the variable, and password masking in printed URLs.
 */
#include "config.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>

/* A fake environment: "NAME=value" strings. */
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
static long size;
static const struct config_row rows[] = {
    {"DATABASE_URL", CONFIG_URL, NULL, 0, 0, "where the database is", &url},
    {"POOL_SIZE", CONFIG_INT, "10", 1, 100, "connections", &size},
};

static bool load(const char *const *env, char *err, size_t errlen)
{
    return config_load(rows, 2, lookup, (void *)env, err, errlen);
}

START_TEST(defaults_and_values)
{
    char err[256];
    const char *env[] = {"DATABASE_URL=postgresql://u:secret@h/db", NULL};
    ck_assert(load(env, err, sizeof err));
    ck_assert_str_eq(url, "postgresql://u:secret@h/db");
    ck_assert_int_eq(size, 10);
    config_release(rows, 2);
    const char *env2[] = {"DATABASE_URL=x", "POOL_SIZE=42", NULL};
    ck_assert(load(env2, err, sizeof err));
    ck_assert_int_eq(size, 42);
    config_release(rows, 2);
}
END_TEST

START_TEST(errors_name_the_variable)
{
    char err[256];
    const char *none[] = {NULL};
    ck_assert(!load(none, err, sizeof err));
    ck_assert(strstr(err, "DATABASE_URL") != NULL);
    config_release(rows, 2);
    const char *bad[] = {"DATABASE_URL=x", "POOL_SIZE=many", NULL};
    ck_assert(!load(bad, err, sizeof err));
    ck_assert(strstr(err, "POOL_SIZE") != NULL && strstr(err, "1 to 100") != NULL);
    config_release(rows, 2);
    const char *big[] = {"DATABASE_URL=x", "POOL_SIZE=101", NULL};
    ck_assert(!load(big, err, sizeof err));
    config_release(rows, 2);
    const char *trailing[] = {"DATABASE_URL=x", "POOL_SIZE=5x", NULL};
    ck_assert(!load(trailing, err, sizeof err));
    config_release(rows, 2);
}
END_TEST

START_TEST(masks_passwords)
{
    char out[128];
    config_mask_url("postgresql://user:secret@host:5432/db", out, sizeof out);
    ck_assert_str_eq(out, "postgresql://user:****@host:5432/db");
    config_mask_url("postgresql://user@host/db", out, sizeof out);
    ck_assert_str_eq(out, "postgresql://user@host/db");
    config_mask_url("redis://host:6379/0", out, sizeof out);
    ck_assert_str_eq(out, "redis://host:6379/0");
    config_mask_url("host=h dbname=d", out, sizeof out);
    ck_assert_str_eq(out, "host=h dbname=d");
}
END_TEST

int main(void)
{
    Suite *s = suite_create("config");
    TCase *tc = tcase_create("config");
    tcase_add_test(tc, defaults_and_values);
    tcase_add_test(tc, errors_name_the_variable);
    tcase_add_test(tc, masks_passwords);
    suite_add_tcase(s, tc);
    SRunner *r = srunner_create(s);
    srunner_run_all(r, CK_NORMAL);
    int failed = srunner_ntests_failed(r);
    srunner_free(r);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
