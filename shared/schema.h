/*
 * schema: creates a database's tables at start-up, retrying until the database answers.
 *
 * A server that starts before its database (a common race under docker-compose or systemd)
 * must not crash or serve errors: it keeps trying, once a second, logging why, and starts
 * listening only when the schema exists. The SQL itself takes an advisory lock, so several
 * instances starting at once do not trip over each other's CREATE TABLE.
 */
#ifndef LAYERS_SCHEMA_H
#define LAYERS_SCHEMA_H

#include "pgconn.h"

struct event_base;
struct schema_task;

/* Called once, when the SQL has run. */
typedef void (*schema_done_cb)(void *arg);

struct schema_task *schema_ensure(struct event_base *base, const struct pgconn_settings *pg,
                                  const char *sql, schema_done_cb done, void *arg);

/* Cancels a task that has not finished (no callback), or frees a finished one. NULL is fine. */
void schema_task_free(struct schema_task *task);

#endif
