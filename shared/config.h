/*
 * config: configuration as a table of environment variables.
 *
 * Each server lists its settings as rows {name, type, default, help, target}. The table is read
 * once at start-up, every value is validated (a bad value stops the server with a message that
 * names the variable and says what is allowed), the result is printed (passwords in URLs masked),
 * and `--help` prints the same table. A later layer's diff of its rows is the list of what it adds.
 *
 * Settings compose: each module that needs settings (the pool, Redis, the cache, the shards...)
 * has its own rows, and a program lists the SETS it uses (struct config_set), so a new
 * dependency is one new line in a layer's list and `--help` prints only settings the program
 * reads. A setting with a fixed set of values (LOG_LEVEL, SHARD_STRATEGY) is a CONFIG_ENUM row:
 * the table itself refuses any other value, naming the variable and the values it allows.
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
    CONFIG_ENUM,   /* one of `choices`; target is `char **`, like CONFIG_STRING */
    CONFIG_SECRET, /* text like CONFIG_STRING, never printed (API keys): target `char **` */
};

struct config_row {
    const char *name;           /* environment variable, e.g. "DB_POOL_MAX_SIZE" */
    enum config_type type;      /* how the text is parsed and printed */
    const char *default_value;  /* used when the variable is unset; NULL = required */
    long min, max;              /* bounds, for CONFIG_INT only */
    const char *help;           /* one line for --help */
    void *target;               /* where the parsed value is stored */
    const char *const *choices; /* CONFIG_ENUM only: the allowed values, NULL-terminated */
};

/* One module's rows, as a program lists it among the sets it uses. */
struct config_set {
    const char *title;             /* heading in --help: "PostgreSQL pool", "Redis"... */
    const struct config_row *rows; /* the module's rows (targets in the program's context) */
    size_t count;                  /* entries in rows */
};

/* A set made of a static array of rows: CONFIG_SET("layer 2", layer_rows). */
#define CONFIG_SET(title, rows)                                                                    \
    {                                                                                              \
        (title), (rows), sizeof(rows) / sizeof((rows)[0])                                          \
    }

/* A set from rows written in place (a module's row macros): CONFIG_ROWS_SET("Redis", ROWS...). At
 * file scope the compound literal is static, so a static table of sets may hold it. */
#define CONFIG_ROWS_SET(title, ...)                                                                \
    {                                                                                              \
        (title), (const struct config_row[]){__VA_ARGS__},                                         \
            sizeof((const struct config_row[]){__VA_ARGS__}) / sizeof(struct config_row)           \
    }

/* A program's spec lists its sets from a static array: `CONFIG_SETS(layer_sets),`. */
#define CONFIG_SETS(array) .sets = (array), .set_count = sizeof(array) / sizeof((array)[0])

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

/*
 * The same for a program's list of sets, in order. config_sets_load also refuses a variable
 * listed by two sets (two modules would disagree on what it means).
 */
bool config_sets_load(const struct config_set *sets, size_t count, config_lookup_fn lookup,
                      void *arg, char *err, size_t errlen) __attribute__((warn_unused_result));
void config_sets_release(const struct config_set *sets, size_t count);
void config_sets_print(const struct config_set *sets, size_t count, FILE *out);
/* The --help table, one heading per set. */
void config_sets_usage(const struct config_set *sets, size_t count, FILE *out);

/* Copies url into out with the password (if any) replaced by "****". */
void config_mask_url(const char *url, char *out, size_t outlen);

#endif
