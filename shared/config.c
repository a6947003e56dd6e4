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

/* Appends the allowed values of an enumerated row to out ("modulo, jump, range"). */
static void append_choices(const struct config_row *row, char *out, size_t outlen,
                           const char *separator)
{
    for (size_t i = 0; row->choices != NULL && row->choices[i] != NULL; i++) {
        size_t used = strlen(out);
        if (used + 1 >= outlen)
            return;
        snprintf(out + used, outlen - used, "%s%s", i > 0 ? separator : "", row->choices[i]);
    }
}

static bool load_row(const struct config_row *row, const char *text, char *err, size_t errlen)
{
    switch (row->type) {
    case CONFIG_STRING:
    case CONFIG_URL:
    case CONFIG_SECRET:
        *(char **)row->target = xstrdup(text);
        return true;
    case CONFIG_ENUM:
        for (size_t i = 0; row->choices != NULL && row->choices[i] != NULL; i++) {
            if (strcmp(text, row->choices[i]) == 0) {
                *(char **)row->target = xstrdup(text);
                return true;
            }
        }
        snprintf(err, errlen, "%s=\"%s\" is invalid: expected one of ", row->name, text);
        append_choices(row, err, errlen, ", ");
        return false;
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
        if (rows[i].type != CONFIG_INT) {
            char **target = rows[i].target;
            free(*target);
            *target = NULL;
        }
    }
}

/* Appends text[0..len) to out, keeping it NUL-terminated and never overrunning it. */
static void append(char *out, size_t outlen, size_t *used, const char *text, size_t len)
{
    if (*used + 1 >= outlen)
        return;
    if (len > outlen - 1 - *used)
        len = outlen - 1 - *used;
    memcpy(out + *used, text, len);
    *used += len;
    out[*used] = '\0';
}

/* Length of the `password=` setting's value at s (conninfo: up to a space; query: up to &). */
static size_t password_value_length(const char *s)
{
    if (*s == '\'') { /* conninfo quoting: 'a b\'c' */
        size_t i = 1;
        while (s[i] != '\0' && s[i] != '\'')
            i += s[i] == '\\' && s[i + 1] != '\0' ? 2 : 1;
        return s[i] == '\'' ? i + 1 : i;
    }
    return strcspn(s, " \t\n&#");
}

/* If p starts a URL's "://", the length of its "://user:" when a password follows, else 0. */
static size_t userinfo_prefix_length(const char *p)
{
    if (strncmp(p, "://", 3) != 0)
        return 0;
    /* libpq: the userinfo ends at the first @ before the first / */
    const char *authority = p + 3;
    size_t authority_len = strcspn(authority, "/");
    const char *at = memchr(authority, '@', authority_len);
    const char *colon = at ? memchr(authority, ':', (size_t)(at - authority)) : NULL;
    return colon ? (size_t)(colon + 1 - p) : 0;
}

/* Masks every password: one URL, a comma-separated list of them (REPLICA_DATABASE_URLS,
 * SHARD_URLS), or conninfo keywords. */
void config_mask_url(const char *url, char *out, size_t outlen)
{
    size_t used = 0;
    if (outlen == 0)
        return;
    out[0] = '\0';
    const char *p = url;
    while (*p != '\0') {
        /* scheme://user:password@host... -> scheme://user:****@host... */
        size_t prefix = userinfo_prefix_length(p);
        if (prefix > 0) {
            append(out, outlen, &used, p, prefix);
            append(out, outlen, &used, "****", 4);
            p = strchr(p + prefix, '@');
            continue;
        }
        /* password=... as a conninfo keyword or a URL query parameter. */
        bool word_start = p == url || strchr(" \t?&", p[-1]) != NULL;
        if (word_start && strncmp(p, "password", 8) == 0) {
            const char *eq = p + 8 + strspn(p + 8, " \t");
            if (*eq == '=') {
                const char *value = eq + 1 + strspn(eq + 1, " \t");
                append(out, outlen, &used, p, (size_t)(value - p));
                append(out, outlen, &used, "****", 4);
                p = value + password_value_length(value);
                continue;
            }
        }
        append(out, outlen, &used, p, 1);
        p++;
    }
}

void config_print(const struct config_row *rows, size_t count, FILE *out)
{
    for (size_t i = 0; i < count; i++) {
        const struct config_row *row = &rows[i];
        char masked[1024];
        switch (row->type) {
        case CONFIG_STRING:
        case CONFIG_ENUM:
            fprintf(out, "  %s=%s\n", row->name, *(char **)row->target);
            break;
        case CONFIG_URL:
            config_mask_url(*(char **)row->target, masked, sizeof masked);
            fprintf(out, "  %s=%s\n", row->name, masked);
            break;
        case CONFIG_INT:
            fprintf(out, "  %s=%ld\n", row->name, *(long *)row->target);
            break;
        case CONFIG_SECRET:
            fprintf(out, "  %s=%s\n", row->name, **(char **)row->target ? "(hidden)" : "");
            break;
        }
    }
}

static void usage_rows(const struct config_row *rows, size_t count, FILE *out)
{
    for (size_t i = 0; i < count; i++) {
        const struct config_row *row = &rows[i];
        fprintf(out, "  %-28s %s\n", row->name, row->help);
        if (row->type == CONFIG_INT) {
            fprintf(out, "  %-28s default %s, range %ld..%ld\n", "", row->default_value, row->min,
                    row->max);
        } else if (row->type == CONFIG_ENUM) {
            char choices[256] = "";
            append_choices(row, choices, sizeof choices, " | ");
            fprintf(out, "  %-28s default %s, one of: %s\n", "", row->default_value, choices);
        } else
            fprintf(out, "  %-28s default %s\n", "",
                    row->default_value ? row->default_value : "(required)");
    }
}

void config_usage(const struct config_row *rows, size_t count, FILE *out)
{
    fprintf(out, "Settings (environment variables):\n");
    usage_rows(rows, count, out);
}

static bool has_name(const struct config_row *rows, size_t count, const char *name)
{
    for (size_t i = 0; i < count; i++)
        if (strcmp(rows[i].name, name) == 0)
            return true;
    return false;
}

/* A variable listed twice (by two sets, or twice in one) would be read twice, maybe with two
 * different meanings: a program that composes its sets that way is refused at start-up. */
static bool listed_twice(const struct config_set *sets, size_t s, size_t i)
{
    const char *name = sets[s].rows[i].name;
    for (size_t t = 0; t < s; t++)
        if (has_name(sets[t].rows, sets[t].count, name))
            return true;
    return has_name(sets[s].rows, i, name);
}

bool config_sets_load(const struct config_set *sets, size_t count, config_lookup_fn lookup,
                      void *arg, char *err, size_t errlen)
{
    for (size_t s = 0; s < count; s++) {
        for (size_t i = 0; i < sets[s].count; i++) {
            if (listed_twice(sets, s, i)) {
                snprintf(err, errlen, "%s is listed twice (again in \"%s\")", sets[s].rows[i].name,
                         sets[s].title);
                return false;
            }
        }
    }
    for (size_t s = 0; s < count; s++)
        if (!config_load(sets[s].rows, sets[s].count, lookup, arg, err, errlen))
            return false;
    return true;
}

void config_sets_release(const struct config_set *sets, size_t count)
{
    for (size_t s = 0; s < count; s++)
        config_release(sets[s].rows, sets[s].count);
}

void config_sets_print(const struct config_set *sets, size_t count, FILE *out)
{
    for (size_t s = 0; s < count; s++)
        config_print(sets[s].rows, sets[s].count, out);
}

void config_sets_usage(const struct config_set *sets, size_t count, FILE *out)
{
    fprintf(out, "Settings (environment variables):\n");
    for (size_t s = 0; s < count; s++) {
        fprintf(out, "\n %s:\n", sets[s].title);
        usage_rows(sets[s].rows, sets[s].count, out);
    }
}
