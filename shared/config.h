/*
 * config: configuration as a table of environment variables.
 *
 * Each server lists its settings as rows {name, type, default, help, target}. The table is read
 * once at start-up, every value is validated (a bad value stops the server with a message that
 * names the variable and says what is allowed), the result is printed (passwords in URLs masked),
 * and `--help` prints the same table. A later layer's diff of its rows is the list of what it adds.
 */
#ifndef LAYERS_CONFIG_H
#define LAYERS_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

enum config_type {
    CONFIG_STRING, /* any text; target is `char **` (owned by the caller after config_load) */
    CONFIG_URL,    /* a connection URL; printed with its password masked; target `char **` */
    CONFIG_INT,    /* an integer within [min, max]; target is `long *` */
};

struct config_row {
    const char *name;          /* environment variable, e.g. "DB_POOL_MAX_SIZE" */
    enum config_type type;     /* how the text is parsed and printed */
    const char *default_value; /* used when the variable is unset; NULL = required */
    long min, max;             /* bounds, for CONFIG_INT only */
    const char *help;          /* one line for --help */
    void *target;              /* where the parsed value is stored */
};

/* Looks a variable up; returns NULL when unset. getenv() in production, a table in tests. */
typedef const char *(*config_lookup_fn)(const char *name, void *arg);

/*
 * Reads every row from lookup (or the environment when lookup is NULL) into its target. On the
 * first invalid value returns false with a message naming the variable in err. Strings stored
 * in targets are heap copies: release them with config_release().
 */
bool config_load(const struct config_row *rows, size_t count, config_lookup_fn lookup, void *arg,
                 char *err, size_t errlen) __attribute__((warn_unused_result));

void config_release(const struct config_row *rows, size_t count);

/* Prints "NAME=value" lines of the loaded configuration, passwords masked. */
void config_print(const struct config_row *rows, size_t count, FILE *out);

/* Prints the --help table: name, default, help. */
void config_usage(const struct config_row *rows, size_t count, FILE *out);

/* Copies url into out with the password (if any) replaced by "****". */
void config_mask_url(const char *url, char *out, size_t outlen);

#endif
