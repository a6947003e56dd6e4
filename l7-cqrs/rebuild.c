/*
 * Layer 7: the rebuild of the read model from the outbox (`l7-projector --rebuild`).
 *
 *   lock; keep read counts aside (rebuild_read_counts); TRUNCATE records; checkpoint to 0
 *   -> page by page, in position order: read PAGE rows of the outbox, apply them with
 *      CQRS_SQL_PROJECT in one transaction (the same statement as the incremental projector)
 *   -> no row left: put the read counts back, drop the table aside -> exit 0
 *
 * Every step takes the projection lock (CQRS_SQL_PROJECT_LOCK), so a running projector waits
 * instead of interleaving; still, stop it first, as the README says. A failed step ends the
 * program with status 1: the counts kept aside survive it (CREATE TABLE IF NOT EXISTS), and a
 * second run starts over from an empty read model.
 */
#include "rebuild.h"

#include "cqrs.h"
#include "log.h"
#include "xalloc.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

struct rebuild {
    struct process *process; /* ended by the rebuild */
    struct pool *read_pool;  /* the read model */
    struct pool *write_pool; /* the outbox */
    long page_size;          /* outbox rows per transaction */
    bool stopping;           /* a stop signal: exit after the page in hand */
    long long after;         /* the last position replayed */
    unsigned long long rows; /* events replayed */
    char after_text[24];     /* `after`, as the page query's $1 */
    char limit_text[24];     /* `page_size`, as its $2 */
};

/* One page's statement parameter, alive until its reply. */
struct page_call {
    struct rebuild *rebuild; /* whose */
    char *json;              /* the page's events, CQRS_SQL_PROJECT's $1 */
};

static void next_page(struct rebuild *r);

static void failed(struct rebuild *r, const char *what, enum pg_status status)
{
    LOG_ERROR("projector: rebuild: %s failed (status %d); run it again", what, (int)status);
    process_exit(r->process, 1);
}

static void on_done(const struct pg_reply *replies, int count, enum pg_status status, void *arg)
{
    struct rebuild *r = arg;
    (void)replies, (void)count;
    if (status != PG_OK) {
        failed(r, "restoring the read counts", status);
        return;
    }
    LOG_INFO("projector: rebuild done: %llu events replayed, up to position %lld", r->rows,
             r->after);
    process_exit(r->process, 0);
}

static void on_page_applied(const struct pg_reply *replies, int count, enum pg_status status,
                            void *arg)
{
    struct page_call *call = arg;
    struct rebuild *r = call->rebuild;
    (void)replies, (void)count;
    free(call->json);
    free(call);
    if (status != PG_OK) {
        failed(r, "applying a page", status);
        return;
    }
    next_page(r);
}

/* The last page is in: the read counts go back. */
static void finish(struct rebuild *r)
{
    struct pg_batch batch = {.mode = PG_BATCH_TRANSACTION,
                             .count = 3,
                             .statements = {{CQRS_SQL_PROJECT_LOCK, 0, {NULL}},
                                            {"UPDATE records r SET read_count = s.read_count "
                                             "FROM rebuild_read_counts s WHERE r.key = s.key",
                                             0,
                                             {NULL}},
                                            {"DROP TABLE rebuild_read_counts", 0, {NULL}}},
                             .cb = on_done,
                             .arg = r};
    pool_batch(r->read_pool, &batch);
}

static void on_page(PGresult *res, enum pg_status status, void *arg)
{
    struct rebuild *r = arg;
    if (status != PG_OK) {
        failed(r, "reading the outbox", status);
        return;
    }
    int rows = PQntuples(res);
    if (rows == 0) {
        finish(r);
        return;
    }
    json_t *list = json_array();
    for (int i = 0; i < rows; i++) {
        json_t *e = json_pack("{s:I, s:s%, s:s%, s:s}", "position",
                              (json_int_t)strtoll(PQgetvalue(res, i, 0), NULL, 10), "key",
                              PQgetvalue(res, i, 2), (size_t)PQgetlength(res, i, 2), "value",
                              PQgetvalue(res, i, 3), (size_t)PQgetlength(res, i, 3), "at",
                              PQgetvalue(res, i, 4));
        if (e != NULL)
            json_array_append_new(list, e);
    }
    r->after = strtoll(PQgetvalue(res, rows - 1, 0), NULL, 10);
    r->rows += (unsigned long long)rows;
    struct page_call *call = xcalloc(1, sizeof *call);
    call->rebuild = r;
    call->json = json_dumps(list, JSON_COMPACT);
    json_decref(list);
    struct pg_batch batch = {.mode = PG_BATCH_TRANSACTION,
                             .count = 2,
                             .statements = {{CQRS_SQL_PROJECT_LOCK, 0, {NULL}},
                                            {CQRS_SQL_PROJECT, 2, {call->json, NULL}}},
                             .cb = on_page_applied,
                             .arg = call};
    pool_batch(r->read_pool, &batch);
}

static void next_page(struct rebuild *r)
{
    if (r->stopping) {
        LOG_WARN("projector: rebuild stopped at position %lld; run it again", r->after);
        process_exit(r->process, 1);
        return;
    }
    snprintf(r->after_text, sizeof r->after_text, "%lld", r->after);
    snprintf(r->limit_text, sizeof r->limit_text, "%ld", r->page_size);
    struct pg_call page = {{CQRS_SQL_OUTBOX_PAGE, 2, {r->after_text, r->limit_text}}, on_page, r};
    pool_query(r->write_pool, &page);
}

static void on_emptied(const struct pg_reply *replies, int count, enum pg_status status, void *arg)
{
    struct rebuild *r = arg;
    (void)replies, (void)count;
    if (status != PG_OK) {
        failed(r, "emptying the read model", status);
        return;
    }
    LOG_INFO("projector: rebuild: read model emptied; replaying the outbox");
    next_page(r);
}

/* Read counts are not events: they are kept aside (a rebuild that failed before putting them
 * back left them there, and they are kept again) and restored at the end. */
struct rebuild *rebuild_start(struct process *process, struct pool *read_pool,
                              struct pool *write_pool, long page_size)
{
    struct rebuild *r = xcalloc(1, sizeof *r);
    r->process = process;
    r->read_pool = read_pool;
    r->write_pool = write_pool;
    r->page_size = page_size;
    struct pg_batch empty = {
        .mode = PG_BATCH_TRANSACTION,
        .count = 4,
        .statements = {{CQRS_SQL_PROJECT_LOCK, 0, {NULL}},
                       {"CREATE TABLE IF NOT EXISTS rebuild_read_counts AS "
                        "SELECT key, read_count FROM records",
                        0,
                        {NULL}},
                       {"TRUNCATE records", 0, {NULL}},
                       {"UPDATE projector_checkpoint SET position = 0, events_projected = 0, "
                        "updated_at = now()",
                        0,
                        {NULL}}},
        .cb = on_emptied,
        .arg = r};
    pool_batch(read_pool, &empty);
    return r;
}

void rebuild_stop(struct rebuild *rebuild)
{
    rebuild->stopping = true;
}

void rebuild_free(struct rebuild *rebuild)
{
    free(rebuild);
}
