/*
 * replica_router: one primary for writes, N streaming replicas for reads (layer 3 on).
 *
 * A replica is a copy that is always a little behind: it replays the primary's write-ahead log
 * (WAL) as it arrives. The router decides, for each read, which copy may answer it:
 * - it keeps per-replica health and replication lag, measured on the maintenance timer: the
 *   primary's WAL position (pg_current_wal_lsn) against each replica's replay position
 *   (pg_last_wal_replay_lsn); lag_bytes is the difference, lag_ms the age of the last
 *   transaction the replica replayed while it is behind (0 when it has replayed everything);
 * - a replica that is down, or whose lag exceeds max_lag_ms, is skipped; when none is usable,
 *   the primary answers. A read that fails on a replica is retried on the next usable copy, and
 *   a replica that could not be reached is marked down at once (the next check may revive it);
 * - balancing is least-outstanding: the usable replica with the fewest reads in flight, ties
 *   taken in turn. A replica that slows down (a long replay, a busy disk) keeps its reads in
 *   flight longer and so gets fewer new ones, where round-robin would keep sending it 1/N;
 * - read-your-writes: a write returns its commit's WAL position (an LSN). A read given an LSN
 *   is sent only to a replica known to have replayed at least that far (known from a check
 *   made before the read was sent: replay positions only move forward), else to the primary.
 *
 * - a replica whose check connection closes (it stopped or restarted) is not trusted with token
 *   reads until a check has read its position again.
 *
 * Positions are known once a second, so for about a second after a write, reads that must see
 * it go to the primary; the others may read a replica that is up to max_lag_ms (plus the check
 * interval) behind.
 */
#ifndef LAYERS_REPLICA_ROUTER_H
#define LAYERS_REPLICA_ROUTER_H

#include "config.h"
#include "pgconn.h"
#include "pool_config.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct evbuffer;
struct event_base;
struct metrics;
struct replica_router;

#define REPLICA_MAX  16 /* replicas one router handles */
#define LSN_TEXT_MAX 24 /* "FFFFFFFF/FFFFFFFF" and its NUL */

struct replica_settings {
    const char *primary_url;  /* PRIMARY_DATABASE_URL */
    const char *replica_urls; /* comma-separated replica URLs (at least one) */
    long max_lag_ms;          /* MAX_REPLICA_LAG_MS: replicas further behind are skipped */
};

/* Parses a PostgreSQL LSN ("16/B374D848"); false when malformed. */
bool lsn_parse(const char *text, uint64_t *out) __attribute__((warn_unused_result));
/* Formats one as PostgreSQL does ("16/B374D848"). */
void lsn_format(uint64_t lsn, char out[LSN_TEXT_MAX]);

/* What a replica looks like to the choice (the router's state, or a unit test's). */
struct replica_view {
    bool healthy;      /* answered its last check and its reads */
    long lag_ms;       /* measured lag */
    uint64_t replayed; /* replay position known from a check (0: unknown) */
    int outstanding;   /* reads in flight */
};

/*
 * The choice itself, pure: the usable replica (healthy, lag_ms <= max_lag_ms, replayed >= must,
 * not in `tried`, a bit per replica) with the fewest reads in flight; ties go to the first at
 * or after `start` (a rotating index). Returns its index, or -1: the primary must answer.
 */
int replica_choose(const struct replica_view *replicas, int count, long max_lag_ms, uint64_t must,
                   unsigned tried, unsigned start);

/* Who answered a read. */
struct replica_source {
    int replica;       /* index of the replica, or -1 for the primary */
    uint64_t replayed; /* how far that copy was known to have replayed before the read was sent
                          (UINT64_MAX for the primary, which has everything) */
};

/*
 * Called exactly once per read, from the event loop or before replica_router_read returns.
 * `res` as for pgconn_result_cb; a failure is the primary's (replica failures are retried).
 */
typedef void (*replica_read_cb)(PGresult *res, enum pg_status status,
                                const struct replica_source *source, void *arg);

/* Called exactly once per write. On PG_OK, lsn is the commit's WAL position (valid during the
 * call). On a failure, committed says the write may have committed (its connection failed or
 * timed out after sending it, or its position could not be read; lsn is NULL): the caller must
 * treat the key as changed. */
typedef void (*replica_write_cb)(enum pg_status status, bool committed, const char *lsn, void *arg);

/* Creates the primary's pool and one per replica (each with the settings in db). NULL with a
 * message in err when the URLs are malformed. */
struct replica_router *replica_router_create(struct event_base *base,
                                             const struct replica_settings *settings,
                                             const struct pool_config *db, const char *application,
                                             struct metrics *metrics, char *err, size_t errlen);
/* Closes every connection (call when nothing is in flight). NULL is a no-op. */
void replica_router_free(struct replica_router *router);

/* Runs the statement (copied; its strings must stay valid until the callback) on a replica or
 * the primary. must: an LSN the answer must include (0: none). */
void replica_router_read(struct replica_router *router, uint64_t must,
                         const struct pg_statement *statement, replica_read_cb cb, void *arg);

/* Runs the statement on the primary, then reads the WAL position in a transaction of its own
 * (inside the statement's, the commit record is not written yet), both in one round trip (a
 * pool_batch, each on its own). */
void replica_router_write(struct replica_router *router, const struct pg_statement *statement,
                          replica_write_cb cb, void *arg);

/* Runs a call on the primary, e.g. a health check. */
void replica_router_primary_query(struct replica_router *router, const struct pg_call *call);

/* Checks positions and health (once per call at most one check is under way), each node on a
 * connection of its own (never one of the read pools, which may be saturated); pool upkeep.
 * Call it from the maintenance timer. */
void replica_router_maintain(struct replica_router *router);

/* Creates the schema on the primary (replicas get it by replication); done is called once. */
void replica_router_ensure_schema(struct replica_router *router, const char *sql,
                                  void (*done)(void *arg), void *arg);

int replica_router_count(const struct replica_router *router);
/* The replica's name ("replica_1", counting from 1) and whether its last check succeeded. */
const char *replica_router_name(const struct replica_router *router, int i);
bool replica_router_healthy(const struct replica_router *router, int i);

/* For /stats: {"replica_1": {"healthy", "lag_ms", "lag_bytes", "replayed_lsn", "reads", ...}}. */
json_t *replica_router_replicas_json(const struct replica_router *router);
/* Open connections to the primary / to all replicas together. */
int replica_router_primary_pool_size(const struct replica_router *router);
int replica_router_replica_pool_size(const struct replica_router *router);
/* Reads answered by the primary (no usable replica, or one that must include a recent LSN). */
unsigned long long replica_router_primary_reads(const struct replica_router *router);

/* A metrics_gauge_fn (arg: the router): per-replica health, lag and reads. */
void replica_router_render_gauges(struct evbuffer *out, void *router);

/* Its settings, as a set for a program's table (config.h). */
/* The replica router: a primary, its streaming replicas (a list, or one), the lag bound. */
#define REPLICA_CONFIG_SET(primary_target, replicas_target, replica_target, lag_target,            \
                           default_primary, default_replicas)                                      \
    CONFIG_ROWS_SET(                                                                               \
        "replicas",                                                                                \
        {"PRIMARY_DATABASE_URL", CONFIG_URL, (default_primary), 0, 0,                              \
         "the primary: every write, and reads no replica can serve", (primary_target), NULL},      \
        {"REPLICA_DATABASE_URLS", CONFIG_URL, (default_replicas), 0, 0,                            \
         "comma-separated replica URLs (streaming replicas of the primary)", (replicas_target),    \
         NULL},                                                                                    \
        {"REPLICA_DATABASE_URL", CONFIG_URL, "", 0, 0,                                             \
         "one replica, when REPLICA_DATABASE_URLS is set empty", (replica_target), NULL},          \
        {"MAX_REPLICA_LAG_MS", CONFIG_INT, "1000", 0, 3600000,                                     \
         "replicas further behind the primary are skipped", (lag_target), NULL})

#endif
