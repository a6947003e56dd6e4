/*
 * schema: create tables at start-up, retrying once a second (see schema.h).
 */
#include "schema.h"

#include "clock.h"
#include "log.h"
#include "xalloc.h"

#include <event2/event.h>
#include <event2/event_struct.h> /* events embedded in our structs */
#include <stdlib.h>

#define RETRY_MS 1000

struct schema_task {
    struct event_base *base;   /* the server's loop */
    struct pgconn_settings pg; /* where (strings owned) */
    const char *sql;           /* what to run (static) */
    struct pgconn *conn;       /* the current attempt, or NULL */
    struct event retry;        /* next attempt */
    schema_done_cb done;       /* caller's callback */
    void *arg;                 /* its argument */
    int attempts;              /* for the log */
};

static void attempt(struct schema_task *task);

static void retry_later(struct schema_task *task)
{
    pgconn_free(task->conn);
    task->conn = NULL;
    if (task->attempts == 1 || task->attempts % 10 == 0)
        LOG_WARN("schema: database not ready (attempt %d); retrying every %d ms", task->attempts,
                 RETRY_MS);
    struct timeval tv = ms_to_timeval(RETRY_MS);
    event_add(&task->retry, &tv);
}

static void on_schema_result(PGresult *res, enum pg_status status, void *arg)
{
    struct schema_task *task = arg;
    (void)res;
    if (status != PG_OK) {
        retry_later(task);
        return;
    }
    pgconn_free(task->conn);
    task->conn = NULL;
    LOG_INFO("schema: ready");
    task->done(task->arg);
}

static void on_connected(struct pgconn *conn, bool ok, void *arg)
{
    struct schema_task *task = arg;
    if (!ok) {
        retry_later(task);
        return;
    }
    pgconn_query(conn, &(struct pg_call){
                           .statement = {.sql = task->sql}, .cb = on_schema_result, .arg = task});
}

static void attempt(struct schema_task *task)
{
    task->attempts++;
    task->conn = pgconn_create(task->base, &task->pg, NULL);
    pgconn_connect(task->conn, on_connected, task);
}

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    attempt(arg);
}

struct schema_task *schema_ensure(struct event_base *base, const struct pgconn_settings *pg,
                                  const char *sql, schema_done_cb done, void *arg)
{
    struct schema_task *task = xcalloc(1, sizeof *task);
    task->base = base;
    task->pg = *pg;
    task->pg.url = xstrdup(pg->url);
    task->pg.application = xstrdup(pg->application ? pg->application : "layers");
    task->sql = sql;
    task->done = done;
    task->arg = arg;
    evtimer_assign(&task->retry, base, on_retry, task);
    attempt(task);
    return task;
}

void schema_task_free(struct schema_task *task)
{
    if (task == NULL)
        return;
    event_del(&task->retry);
    pgconn_free(task->conn);
    free((char *)task->pg.url);
    free((char *)task->pg.application);
    free(task);
}
