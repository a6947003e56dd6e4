/*
 * l4-reshard: moves the keys whose shard changes from the previous layout to the current one,
 * while the servers keep serving.
 *
 * Changing the number of shards (or the strategy) changes where keys belong. Servers never
 * remap silently: they are told both layouts, and until the keys are moved they read a key from
 * its new shard first and, if it is not there, from its old one, and write only to the new one
 * (handlers.c). This tool does the moving, with the same settings as the servers:
 *
 *   1. restart every server with the new SHARD_URLS/SHARD_STRATEGY and the old layout in
 *      SHARD_PREVIOUS_URLS/SHARD_PREVIOUS_STRATEGY (no server may still write the old way);
 *   2. run l4-reshard with the same environment;
 *   3. restart the servers without SHARD_PREVIOUS_*.
 *
 * For each database of the previous layout it walks the keys in order (in batches), and moves
 * each key whose new shard is another database: in a transaction on the old shard it locks the
 * row, copies it to the new shard unless the key is already there (then a server wrote it
 * during the move, and that value is newer: only its created_at is set back to the old row's),
 * and deletes it from the old shard. The copy
 * commits before the delete, so a reader that misses on both shards finds the key on its new
 * shard when it looks again. Running it twice is safe: a key copied but not deleted (a crash
 * between the two) is deleted the second time.
 *
 * This is a tool, not a server: it lives like every program of the layers (process.h: --help,
 * settings, logging, signals) but serves no HTTP. The moves use libpq's blocking calls, so they
 * run on one worker thread (the mover) and the event loop only waits for it: SIGTERM asks the
 * mover to stop after the batch in progress (its transaction commits), and the tool exits 0;
 * running it again carries on where it stopped.
 */
#include "config.h"
#include "layout.h"
#include "log.h"
#include "process.h"
#include "shard_map.h"
#include "shard_set.h"
#include "xalloc.h"

#include <event2/event.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct reshard {
    struct shard_settings layouts; /* SHARD_* (the new layout), SHARD_PREVIOUS_* (the old) */
    long batch;                    /* RESHARD_BATCH */
    struct process *process;       /* the loop the mover reports to */
    struct event *finished;        /* activated by the mover when it is done */
    pthread_t mover;               /* the thread doing the moves */
    bool mover_started;            /* mover must be joined */
    atomic_bool stop;              /* a stop signal: end after the current batch */
    int status;                    /* the mover's exit code */
};

static struct reshard reshard;

static const struct config_row reshard_rows[] = {
    {"RESHARD_BATCH", CONFIG_INT, "500", 1, 100000, "keys read per step, and moved per transaction",
     &reshard.batch, NULL},
};

static const struct config_set reshard_sets[] = {
    SHARD_CONFIG_SET(&reshard.layouts, NULL, NULL),
    CONFIG_SET("l4-reshard", reshard_rows),
};

/* One layout: its map and its URLs. */
struct layout {
    struct shard_map *map; /* key -> shard */
    char *urls[SHARD_MAX]; /* shard -> URL */
    int count;             /* N */
};

struct totals {
    long long scanned;    /* keys looked at */
    long long moved;      /* copied to their new shard and deleted from the old one */
    long long superseded; /* already written on the new shard during the move: only deleted */
};

static bool layout_parse(struct layout *l, const char *urls, const char *strategy,
                         const char *ranges, const char *what)
{
    char err[256];
    l->count = shard_split_list(urls, l->urls, SHARD_MAX);
    if (l->count < 0) {
        fprintf(stderr, "l4-reshard: %s: expected comma-separated URLs\n", what);
        return false;
    }
    l->map = shard_map_create(strategy, l->count, ranges, err, sizeof err);
    if (l->map == NULL) {
        fprintf(stderr, "l4-reshard: %s: %s\n", what, err);
        return false;
    }
    return true;
}

static void layout_cleanup(struct layout *l)
{
    for (int i = 0; i < l->count; i++)
        free(l->urls[i]);
    shard_map_free(l->map);
}

static bool command_ok(PGresult *res, PGconn *conn, const char *what)
{
    ExecStatusType st = PQresultStatus(res);
    bool ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
    if (!ok)
        fprintf(stderr, "l4-reshard: %s: %s", what, PQerrorMessage(conn));
    PQclear(res);
    return ok;
}

static PGconn *connect_to(const char *url)
{
    /* The URL's own settings, plus a connect timeout unless it names one (later wins). */
    const char *keys[] = {"connect_timeout", "dbname", NULL};
    const char *values[] = {"10", url, NULL};
    PGconn *conn = PQconnectdbParams(keys, values, 1);
    if (PQstatus(conn) != CONNECTION_OK) {
        fprintf(stderr, "l4-reshard: cannot connect: %s", PQerrorMessage(conn));
        PQfinish(conn);
        return NULL;
    }
    /* A row lock held for long (by a stuck writer, or by this tool itself when one database is
     * named by two different URLs) fails the run instead of hanging it. Timestamps are copied
     * as text, so both ends read and write them in one format. */
    if (!command_ok(PQexec(conn, "SET lock_timeout = '10s'; SET DateStyle = ISO"), conn,
                    "set lock_timeout and DateStyle")) {
        PQfinish(conn);
        return NULL;
    }
    return conn;
}

/* Moves one key from `from` to `to`, inside the transaction open on `from`. */
static bool move_key(PGconn *from, PGconn *to, const char *key, struct totals *t)
{
    const char *k[] = {key};
    PGresult *row = PQexecParams(from,
                                 "SELECT value, created_at::text, updated_at::text FROM records "
                                 "WHERE key = $1 FOR UPDATE",
                                 1, NULL, k, NULL, NULL, 0);
    if (PQresultStatus(row) != PGRES_TUPLES_OK)
        return command_ok(row, from, "lock");
    if (PQntuples(row) == 0) { /* gone meanwhile (another run of this tool) */
        PQclear(row);
        return true;
    }
    const char *values[] = {key, PQgetvalue(row, 0, 0), PQgetvalue(row, 0, 1),
                            PQgetvalue(row, 0, 2)};
    /* A row already on the new shard was written there during the move: its value is newer,
     * but the key was created before, on the old shard: keep the older created_at (the
     * contract's upsert keeps it). RETURNING says whether the row was inserted (xmax = 0). */
    PGresult *ins = PQexecParams(to,
                                 "INSERT INTO records (key, value, created_at, updated_at) "
                                 "VALUES ($1, $2, $3::timestamptz, $4::timestamptz) "
                                 "ON CONFLICT (key) DO UPDATE SET created_at = excluded.created_at "
                                 "WHERE records.created_at > excluded.created_at "
                                 "RETURNING xmax = 0",
                                 4, NULL, values, NULL, NULL, 0);
    PQclear(row);
    bool copied = PQresultStatus(ins) == PGRES_TUPLES_OK && PQntuples(ins) == 1 &&
                  strcmp(PQgetvalue(ins, 0, 0), "t") == 0;
    if (!command_ok(ins, to, "copy"))
        return false;
    if (!command_ok(
            PQexecParams(from, "DELETE FROM records WHERE key = $1", 1, NULL, k, NULL, NULL, 0),
            from, "delete"))
        return false;
    if (copied)
        t->moved++;
    else
        t->superseded++;
    return true;
}

/* Walks one old database's keys and moves those that belong elsewhere now. */
static bool drain(struct reshard *r, const char *old_url, const struct layout *now, PGconn **conns,
                  struct totals *t)
{
    PGconn *from = connect_to(old_url);
    if (from == NULL)
        return false;
    char *after = xstrdup("");
    char limit[32];
    snprintf(limit, sizeof limit, "%ld", r->batch);
    bool ok = true;
    for (;;) {
        const char *params[] = {after, limit};
        PGresult *keys =
            PQexecParams(from, "SELECT key FROM records WHERE key > $1 ORDER BY key LIMIT $2::int",
                         2, NULL, params, NULL, NULL, 0);
        if (PQresultStatus(keys) != PGRES_TUPLES_OK) {
            ok = command_ok(keys, from, "scan");
            break;
        }
        int n = PQntuples(keys);
        if (n == 0) {
            PQclear(keys);
            break;
        }
        ok = command_ok(PQexec(from, "BEGIN"), from, "begin");
        for (int i = 0; ok && i < n; i++) {
            const char *key = PQgetvalue(keys, i, 0);
            int to = shard_map_lookup(now->map, key, (size_t)PQgetlength(keys, i, 0));
            t->scanned++;
            if (strcmp(now->urls[to], old_url) != 0)
                ok = move_key(from, conns[to], key, t);
        }
        ok = command_ok(PQexec(from, ok ? "COMMIT" : "ROLLBACK"), from, "commit") && ok;
        free(after);
        after = xstrdup(PQgetvalue(keys, n - 1, 0));
        PQclear(keys);
        if (!ok)
            break;
        if (atomic_load(&r->stop)) /* a stop signal: this batch is committed, end here */
            break;
    }
    free(after);
    PQfinish(from);
    return ok;
}

/* Every key has moved: each shard of the new layout records it (layout.h), so that servers
 * started with only the new settings accept the shards. */
static bool record_layout(const struct layout *now, PGconn **conns)
{
    for (int i = 0; i < now->count; i++) {
        char index[16];
        snprintf(index, sizeof index, "%d", i);
        const char *params[] = {shard_map_describe(now->map), index};
        if (!command_ok(PQexec(conns[i], LAYOUT_SQL_SCHEMA), conns[i], "shard_layout") ||
            !command_ok(PQexecParams(conns[i], LAYOUT_SQL_RECORD, 2, NULL, params, NULL, NULL, 0),
                        conns[i], "recording the layout"))
            return false;
    }
    printf("recorded %s on every shard\n", shard_map_describe(now->map));
    return true;
}

/* The mover: every move, on its own thread (blocking libpq); reports to the loop when done. */
static void *move_keys(void *arg)
{
    struct reshard *r = arg;
    const struct shard_settings *cfg = &r->layouts;
    int rc = 1;
    struct layout now = {0}, before = {0};
    PGconn *conns[SHARD_MAX] = {0};
    struct totals t = {0, 0, 0};
    if (!layout_parse(&now, cfg->urls, cfg->strategy, cfg->ranges, "SHARD_*") ||
        !layout_parse(&before, cfg->previous_urls, cfg->previous_strategy, cfg->previous_ranges,
                      "SHARD_PREVIOUS_*"))
        goto done;
    printf("moving keys from %s to %s\n", shard_map_describe(before.map),
           shard_map_describe(now.map));
    for (int i = 0; i < now.count; i++)
        if ((conns[i] = connect_to(now.urls[i])) == NULL)
            goto done;
    for (int i = 0; i < before.count; i++) {
        bool seen = false; /* a URL listed twice is drained once */
        for (int j = 0; j < i; j++)
            seen |= strcmp(before.urls[j], before.urls[i]) == 0;
        if (seen)
            continue;
        if (atomic_load(&r->stop))
            break;
        struct totals shard = {0, 0, 0};
        if (!drain(r, before.urls[i], &now, conns, &shard))
            goto done;
        printf("previous shard %d: %lld keys scanned, %lld moved, %lld already rewritten\n", i,
               shard.scanned, shard.moved, shard.superseded);
        t.scanned += shard.scanned, t.moved += shard.moved, t.superseded += shard.superseded;
    }
    printf("%s: %lld keys scanned, %lld moved, %lld already rewritten on their new shard\n",
           atomic_load(&r->stop) ? "stopped by a signal (run again to move the rest)" : "done",
           t.scanned, t.moved, t.superseded);
    if (!atomic_load(&r->stop) && !record_layout(&now, conns))
        goto done;
    rc = 0;
done:
    for (int i = 0; i < SHARD_MAX; i++)
        if (conns[i] != NULL)
            PQfinish(conns[i]);
    layout_cleanup(&now);
    layout_cleanup(&before);
    fflush(stdout);
    r->status = rc;
    event_active(r->finished, 0, 0); /* safe from this thread: process.c enabled evthread */
    return NULL;
}

static void on_finished(evutil_socket_t fd, short what, void *arg)
{
    struct reshard *r = arg;
    (void)fd, (void)what;
    process_exit(r->process, r->status);
}

static bool start(struct process *process, void *arg)
{
    struct reshard *r = arg;
    r->process = process;
    r->finished = event_new(process_base(process), -1, 0, on_finished, r);
    if (pthread_create(&r->mover, NULL, move_keys, r) != 0) {
        LOG_ERROR("cannot start the mover thread");
        return false;
    }
    r->mover_started = true;
    return true;
}

static void finish_batch(void *arg)
{
    struct reshard *r = arg;
    LOG_INFO("finishing the batch in progress, then stopping");
    atomic_store(&r->stop, true);
}

static void stop(void *arg)
{
    struct reshard *r = arg;
    atomic_store(&r->stop, true);
    if (r->mover_started)
        pthread_join(r->mover, NULL); /* after SHUTDOWN_TIMEOUT_MS: still ends at a batch */
    if (r->finished)
        event_free(r->finished);
}

int main(int argc, char **argv)
{
    static const struct process_spec spec = {
        .program = "l4-reshard",
        .summary = "moves keys from SHARD_PREVIOUS_* to SHARD_* while servers run",
        CONFIG_SETS(reshard_sets),
        .start = start,
        .maintain = NULL,
        .drain = finish_batch,
        .stop = stop,
    };
    return process_main(argc, argv, &spec, &reshard);
}
