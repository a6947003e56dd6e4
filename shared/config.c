/*
 * config: configuration as a table of environment variables (see config.h).
 */
#include "config.h"

#include "xalloc.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static const char *env_lookup(const char *name, void *arg)
{
    (void)arg;
    return getenv(name);
}

static bool parse_long(const char *text, long *out)
{
    char *end;
    errno = 0;
    long value = strtol(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0')
        return false;
    *out = value;
    return true;
}

static bool load_row(const struct config_row *row, const char *text, char *err, size_t errlen)
{
    switch (row->type) {
    case CONFIG_STRING:
    case CONFIG_URL:
        *(char **)row->target = xstrdup(text);
        return true;
    case CONFIG_INT: {
        long value;
        if (!parse_long(text, &value) || value < row->min || value > row->max) {
            snprintf(err, errlen, "%s=\"%s\" is invalid: expected an integer from %ld to %ld",
                     row->name, text, row->min, row->max);
            return false;
        }
        *(long *)row->target = value;
        return true;
    }
    }
    snprintf(err, errlen, "%s: unknown setting type", row->name);
    return false;
}

bool config_load(const struct config_row *rows, size_t count, config_lookup_fn lookup, void *arg,
                 char *err, size_t errlen)
{
    if (lookup == NULL)
        lookup = env_lookup;
    for (size_t i = 0; i < count; i++) {
        const char *text = lookup(rows[i].name, arg);
        if (text == NULL)
            text = rows[i].default_value;
        if (text == NULL) {
            snprintf(err, errlen, "%s is required: %s", rows[i].name, rows[i].help);
            return false;
        }
        if (!load_row(&rows[i], text, err, errlen))
            return false;
    }
    return true;
}

void config_release(const struct config_row *rows, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        if (rows[i].type == CONFIG_STRING || rows[i].type == CONFIG_URL) {
            char **target = rows[i].target;
            free(*target);
            *target = NULL;
        }
    }
}

void config_mask_url(const char *url, char *out, size_t outlen)
{
    /* scheme://user:password@host... -> scheme://user:****@host... */
    const char *scheme_end = strstr(url, "://");
    const char *userinfo = scheme_end ? scheme_end + 3 : url;
    const char *at = strchr(userinfo, '@');
    const char *colon = memchr(userinfo, ':', at ? (size_t)(at - userinfo) : 0);
    if (at == NULL || colon == NULL) {
        snprintf(out, outlen, "%s", url);
        return;
    }
    snprintf(out, outlen, "%.*s****%s", (int)(colon + 1 - url), url, at);
}

void config_print(const struct config_row *rows, size_t count, FILE *out)
{
    for (size_t i = 0; i < count; i++) {
        const struct config_row *row = &rows[i];
        char masked[1024];
        switch (row->type) {
        case CONFIG_STRING:
            fprintf(out, "  %s=%s\n", row->name, *(char **)row->target);
            break;
        case CONFIG_URL:
            config_mask_url(*(char **)row->target, masked, sizeof masked);
            fprintf(out, "  %s=%s\n", row->name, masked);
            break;
        case CONFIG_INT:
            fprintf(out, "  %s=%ld\n", row->name, *(long *)row->target);
            break;
        }
    }
}

void config_usage(const struct config_row *rows, size_t count, FILE *out)
{
    fprintf(out, "Settings (environment variables):\n");
    for (size_t i = 0; i < count; i++) {
        const struct config_row *row = &rows[i];
        fprintf(out, "  %-28s %s\n", row->name, row->help);
        if (row->type == CONFIG_INT)
            fprintf(out, "  %-28s default %s, range %ld..%ld\n", "", row->default_value, row->min,
                    row->max);
        else
            fprintf(out, "  %-28s default %s\n", "",
                    row->default_value ? row->default_value : "(required)");
    }
}
