/*
 * Layer 3 black-box tests: the shared contract against l3-read-replicas on a real primary with
 * two streaming replicas (pg_basebackup, replication slots) and a Redis, and the replicas' own
 * promises: a write becomes visible through a replica; a read with the write's token always
 * sees it, even with replay paused everywhere; the token is at or past the write's commit
 * record; a write whose statement fails is reported failed (500 refused, 503 timed out or
 * primary down) and writes work again after it; a stopped replica costs nothing but a retry and
 * is used again when it comes back; a replica whose replay is paused past MAX_REPLICA_LAG_MS is
 * skipped; a lagging replica never puts an old row in the cache; and the lag checks keep
 * measuring while the replicas' pools are saturated with reads that cannot finish.
 *
 * The shared resilience case runs without its outage test: that one stops "the" database and
 * expects reads to fail, which is what replicas avoid; the outage tests here are its replicated
 * counterparts. (Its lock on the primary's `records` holds replica reads too: an ACCESS
 * EXCLUSIVE lock is written to the WAL and taken by the standbys' replay.)
 */
#include "contract_tests.h"
#include "check_run.h"
#include "openapi_tests.h"
#include "resilience_tests.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define PG_PORT     28000 /* the primary; replicas on 28001 and 28002 */
#define REDIS_PORT  28050
#define SERVER_PORT 28100
#define REPLICAS    2

static struct tk_pg primary, replica[REPLICAS];
static struct tk_redis redis;
static struct tk_server server;
static char primary_env[160], replicas_env[400], redis_env[96];

/* A hot standby of the primary, in a fresh temp dir, through scripts/stack.sh. */
static bool start_replica(struct tk_pg *pg, int port, const char *slot)
{
    snprintf(pg->dir, sizeof pg->dir, "/tmp/layers-test-pg-%d-XXXXXX", port);
    if (mkdtemp(pg->dir) == NULL)
        return false;
    chmod(pg->dir, 0755);
    pg->port = port;
    snprintf(pg->url, sizeof pg->url, "postgresql://layers@127.0.0.1:%d/layers", port);
    strncat(pg->dir, "/data", sizeof pg->dir - strlen(pg->dir) - 1);
    char cmd[1200];
    snprintf(cmd, sizeof cmd,
             "bash '%s/scripts/stack.sh' pg-standby-start '%s' %d '%s' %d %s -c fsync=off",
             LAYERS_SOURCE_DIR, primary.dir, primary.port, pg->dir, port, slot);
    return system(cmd) == 0;
}

static void replay(int i, bool on)
{
    ck_assert(tk_pg_exec(&replica[i], "postgres",
                         on ? "SELECT pg_wal_replay_resume()" : "SELECT pg_wal_replay_pause()"));
}

static void clean(void)
{
    tk_pg_restart(&primary);
    for (int i = 0; i < REPLICAS; i++) {
        tk_pg_restart(&replica[i]);
        tk_pg_exec(&replica[i], "postgres", "SELECT pg_wal_replay_resume()");
    }
    tk_pg_exec(&primary, "layers",
               "DO $$ BEGIN TRUNCATE records; EXCEPTION WHEN undefined_table THEN NULL; END $$");
    ck_assert(tk_redis_flush(&redis));
}

static void stop_server(void)
{
    tk_server_stop(&server, SIGKILL, 5000);
}

static void start(const char *const *more)
{
    const char *env[16] = {primary_env, replicas_env, redis_env,
                           "DB_POOL_ACQUIRE_TIMEOUT_MS=20000"};
    int k = 4;
    for (int i = 0; more != NULL && more[i] != NULL && k < 15; i++)
        env[k++] = more[i];
    env[k] = NULL;
    ck_assert_msg(tk_server_start(&server, SERVER_BIN, SERVER_PORT, env), "server did not start");
}

/* Writes key=value; returns the HTTP status. */
static long post_write(const char *key, const char *value)
{
    char *body = tk_write_body(key, value);
    struct tk_response res;
    tk_post(SERVER_PORT, "/write", body, &res);
    long status = res.status;
    tk_response_free(&res);
    free(body);
    return status;
}

/* The one value a query returns on the primary, run as the superuser (static storage). */
static const char *primary_value(const char *sql)
{
    static char value[128];
    PGconn *conn = tk_pg_connect(&primary, "postgres");
    ck_assert(conn != NULL);
    PGresult *res = PQexec(conn, sql);
    ck_assert_msg(PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1, "%s: %s", sql,
                  PQerrorMessage(conn));
    snprintf(value, sizeof value, "%s", PQgetvalue(res, 0, 0));
    PQclear(res);
    PQfinish(conn);
    return value;
}

/* Writes key=value; returns the consistency token (static storage). */
static const char *write_key(const char *key, const char *value)
{
    static char token[64];
    char *body = tk_write_body(key, value);
    struct tk_response res;
    tk_post(SERVER_PORT, "/write", body, &res);
    ck_assert_msg(res.status == 200, "write %s: %ld %s", key, res.status, res.body);
    ck_assert_str_eq(json_string_value(json_object_get(res.json, "message")),
                     "Data written successfully to primary");
    const char *lsn = json_string_value(json_object_get(res.json, "lsn"));
    ck_assert_msg(lsn != NULL && strchr(lsn, '/') != NULL, "no lsn: %s", res.body);
    snprintf(token, sizeof token, "%s", lsn);
    tk_response_free(&res);
    free(body);
    return token;
}

/* Reads key (with a token if not NULL); returns its value or "" (static), and where from. */
static const char *read_key(const char *key, const char *token, bool *from_replica,
                            bool *from_cache)
{
    static char value[256];
    char path[128], header[96];
    snprintf(path, sizeof path, "/read/%s", key);
    snprintf(header, sizeof header, "X-Consistency-Token: %s", token ? token : "");
    struct tk_request req = {"GET", path, NULL, 0, token ? header : NULL};
    struct tk_response res;
    tk_http(SERVER_PORT, &req, &res);
    ck_assert_msg(res.status == 200, "read %s: %ld %s", key, res.status, res.body);
    ck_assert(json_is_boolean(json_object_get(res.json, "from_replica")));
    ck_assert(json_is_boolean(json_object_get(res.json, "from_cache")));
    if (from_replica)
        *from_replica = json_is_true(json_object_get(res.json, "from_replica"));
    if (from_cache)
        *from_cache = json_is_true(json_object_get(res.json, "from_cache"));
    const char *v = json_string_value(json_object_get(res.json, "value"));
    snprintf(value, sizeof value, "%s", v ? v : "");
    tk_response_free(&res);
    return value;
}

/* One member of /stats; replica i (0-based) when i >= 0. */
static json_t *stats_get(int i, const char *name)
{
    static json_t *last;
    json_decref(last);
    struct tk_response res;
    tk_get(SERVER_PORT, "/stats", &res);
    ck_assert_int_eq(res.status, 200);
    last = json_incref(res.json);
    tk_response_free(&res);
    json_t *obj = last;
    if (i >= 0) {
        char rname[16];
        snprintf(rname, sizeof rname, "replica_%d", i + 1);
        obj = json_object_get(json_object_get(last, "replicas"), rname);
        ck_assert_msg(obj != NULL, "no %s in /stats", rname);
    }
    return json_object_get(obj, name);
}

static long long replica_reads(int i)
{
    return (long long)json_integer_value(stats_get(i, "reads"));
}

/* Waits until replica i's member `name` is the boolean `want`. */
static void wait_replica(int i, const char *name, bool want, long timeout_ms)
{
    long long deadline = tk_now_ms() + timeout_ms;
    while (json_is_true(stats_get(i, name)) != want) {
        ck_assert_msg(tk_now_ms() < deadline, "replica_%d never became %s=%d", i + 1, name, want);
        usleep(50000);
    }
}

START_TEST(stats_shape_and_writes_reach_the_replicas)
{
    start(NULL);
    write_key("rep:1", "v1");
    /* Once the replicas have replayed it (a second's check), misses are served by them. */
    long long deadline = tk_now_ms() + 10000;
    bool from_replica = false;
    char cmd[96];
    snprintf(cmd, sizeof cmd, "redis-cli -p %d del l3:v:rep:1 >/dev/null", REDIS_PORT);
    while (!from_replica) {
        ck_assert(system(cmd) == 0);
        ck_assert_str_eq(read_key("rep:1", NULL, &from_replica, NULL), "v1");
        ck_assert_msg(tk_now_ms() < deadline, "never served by a replica");
        usleep(100000);
    }
    bool from_cache;
    ck_assert_str_eq(read_key("rep:1", NULL, &from_replica, &from_cache), "v1");
    ck_assert(from_cache && !from_replica);
    ck_assert(json_is_true(stats_get(-1, "cache_available")));
    ck_assert(json_is_integer(stats_get(-1, "cache_hits")));
    ck_assert(json_is_integer(stats_get(-1, "cache_misses")));
    ck_assert(json_is_integer(stats_get(-1, "cache_keys")));
    ck_assert(json_is_number(stats_get(-1, "cache_hit_rate")));
    ck_assert_int_ge(json_integer_value(stats_get(-1, "primary_pool_size")), 1);
    ck_assert_int_ge(json_integer_value(stats_get(-1, "replica_pool_size")), 2);
    for (int i = 0; i < REPLICAS; i++) {
        ck_assert(json_is_true(stats_get(i, "healthy")));
        ck_assert(json_is_integer(stats_get(i, "lag_ms")));
        ck_assert(json_is_integer(stats_get(i, "lag_bytes")));
        ck_assert(json_is_integer(stats_get(i, "reads")));
    }
    ck_assert_int_ge(replica_reads(0) + replica_reads(1), 1);
    struct tk_response res;
    tk_get(SERVER_PORT, "/health", &res);
    ck_assert_str_eq(json_string_value(json_object_get(res.json, "status")), "healthy");
    ck_assert_str_eq(json_string_value(json_object_get(res.json, "primary")), "healthy");
    ck_assert_str_eq(json_string_value(json_object_get(res.json, "replica_1")), "healthy");
    ck_assert_str_eq(json_string_value(json_object_get(res.json, "replica_2")), "healthy");
    /* The Python version's members: its clients read "replica" and "cache" */
    ck_assert_str_eq(json_string_value(json_object_get(res.json, "replica")), "healthy");
    ck_assert_str_eq(json_string_value(json_object_get(res.json, "cache")), "healthy");
    tk_response_free(&res);
    ck_assert_int_ge(tk_metric(SERVER_PORT, "replica_reads_total"), 1);
}
END_TEST

/* A PostgreSQL LSN as a number (0 when absent or malformed). */
static unsigned long long lsn_value(const char *text)
{
    unsigned hi, lo;
    if (text == NULL || sscanf(text, "%X/%X", &hi, &lo) != 2)
        return 0;
    return ((unsigned long long)hi << 32) | lo;
}

/* Waits until the server knows that every replica has replayed `token`. */
static void wait_replayed(const char *token, long timeout_ms)
{
    long long deadline = tk_now_ms() + timeout_ms;
    for (int i = 0; i < REPLICAS; i++)
        while (lsn_value(json_string_value(stats_get(i, "replayed_lsn"))) < lsn_value(token)) {
            ck_assert_msg(tk_now_ms() < deadline, "replica_%d never replayed %s", i + 1, token);
            usleep(50000);
        }
}

/* The shared resilience tests lock `records` on the primary to hold requests in flight; reads
 * go to the replicas, which take the lock when they replay its WAL record. A commit flushes
 * that record (txid_current() commits a transaction with an xid); then wait for the replay. */
static void replicas_take_the_lock(void)
{
    ck_assert(tk_pg_exec(&primary, "layers", "SELECT txid_current()"));
    wait_replayed(primary_value("SELECT pg_current_wal_lsn()::text"), 5000);
}

START_TEST(a_token_read_always_sees_its_write)
{
    /* Without Redis floors (a cache that is down), only the token protects the reader. */
    const char *more[] = {"REDIS_URL=redis://127.0.0.1:1/0", NULL};
    const char *env[16] = {primary_env, replicas_env, more[0], NULL};
    ck_assert(tk_server_spawn(&server, SERVER_BIN, SERVER_PORT, env));
    ck_assert(tk_wait_status(SERVER_PORT, "/read/warm", 200, 15000));
    wait_replayed(primary_value("SELECT pg_current_wal_lsn()::text"), 5000); /* positions known */
    char key[32], value[32];
    for (int round = 0; round < 2; round++) {
        if (round == 1)
            for (int i = 0; i < REPLICAS; i++)
                replay(i, false); /* now no replica can have any new write */
        for (int n = 0; n < 30; n++) {
            snprintf(key, sizeof key, "ryw:%d", n % 5);
            snprintf(value, sizeof value, "r%d:%d", round, n);
            const char *token = write_key(key, value);
            bool from_replica;
            /* Round 0, every 10th write: once the replicas are known to have replayed it,
             * the token lets a replica serve it (tokens do not just send reads to the primary). */
            bool caught_up = round == 0 && n % 10 == 0;
            if (caught_up)
                wait_replayed(token, 5000);
            ck_assert_str_eq(read_key(key, token, &from_replica, NULL), value);
            if (caught_up)
                ck_assert_msg(from_replica, "%s: a replica had replayed it, the primary served it",
                              key);
            if (round == 1)
                ck_assert(!from_replica);
        }
    }
    /* A malformed token is a 422. */
    struct tk_request req = {"GET", "/read/ryw:0", NULL, 0, "X-Consistency-Token: banana"};
    struct tk_response res;
    tk_http(SERVER_PORT, &req, &res);
    ck_assert_int_eq(res.status, 422);
    tk_response_free(&res);
}
END_TEST

/* Whether the commit record of the transaction that last wrote key ends at or before `lsn`
 * (so that a copy replayed to lsn shows the write), looking at WAL records since `since`. */
static bool commit_within(const char *key, const char *since, const char *lsn)
{
    char sql[640];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM pg_get_wal_records_info('%s', pg_current_wal_flush_lsn())"
             " WHERE resource_manager = 'Transaction' AND record_type = 'COMMIT'"
             " AND xid = (SELECT xmin FROM records WHERE key = '%s') AND end_lsn <= '%s'",
             since, key, lsn);
    return strcmp(primary_value(sql), "1") == 0;
}

START_TEST(a_token_is_at_or_after_its_commit)
{
    /* The write and its position travel in one pipeline, each in its own transaction: the
     * position is read after the commit. pg_walinspect shows where each commit record ends. */
    start(NULL);
    ck_assert(tk_pg_exec(&primary, "postgres", "CREATE EXTENSION IF NOT EXISTS pg_walinspect"));
    char key[32], since[64], sql[160];
    for (int n = 0; n < 10; n++) {
        snprintf(since, sizeof since, "%s", primary_value("SELECT pg_current_wal_lsn()"));
        snprintf(key, sizeof key, "commit:%d", n % 3);
        const char *token = write_key(key, "v");
        ck_assert_msg(commit_within(key, since, token), "%s: token %s before its commit", key,
                      token);
        snprintf(sql, sizeof sql, "SELECT pg_current_wal_lsn() >= '%s'", token);
        ck_assert_str_eq(primary_value(sql), "t");
    }
    /* The check can tell: a position read inside the write's own transaction predates it. */
    snprintf(since, sizeof since, "%s", primary_value("SELECT pg_current_wal_lsn()"));
    PGconn *conn = tk_pg_connect(&primary, "layers");
    ck_assert(conn != NULL);
    PGresult *res = PQexec(conn, "INSERT INTO records (key, value) VALUES ('commit:inside', 'v');"
                                 " SELECT pg_current_wal_lsn()");
    ck_assert_int_eq(PQresultStatus(res), PGRES_TUPLES_OK);
    char inside[64];
    snprintf(inside, sizeof inside, "%s", PQgetvalue(res, 0, 0));
    PQclear(res);
    PQfinish(conn);
    ck_assert(!commit_within("commit:inside", since, inside));
}
END_TEST

START_TEST(a_refused_write_is_a_500_and_its_connection_is_reused)
{
    /* One connection per node, so the write after a refused one reuses the primary's: the pair
     * must have left pipeline mode cleanly (a broken connection would be replaced, a connect
     * counted). The position query still ran after the refusal, in its own transaction. */
    const char *more[] = {"DB_POOL_MIN_SIZE=1", "DB_POOL_MAX_SIZE=1", NULL};
    start(more);
    write_key("accepted", "v");
    sleep(2); /* every pool has its connection (the lag check has used them) */
    ck_assert(
        tk_pg_exec(&primary, "postgres",
                   "CREATE OR REPLACE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql"
                   " AS $$ BEGIN RAISE EXCEPTION 'refused'; END $$;"
                   " CREATE OR REPLACE TRIGGER refuse BEFORE INSERT OR UPDATE ON records"
                   " FOR EACH ROW WHEN (NEW.key LIKE 'refused:%') EXECUTE FUNCTION refuse()"));
    double errors = tk_metric(SERVER_PORT, "pg_query_errors_total");
    double connects = tk_metric(SERVER_PORT, "pg_connects_total");
    char key[32];
    for (int n = 0; n < 5; n++) {
        snprintf(key, sizeof key, "refused:%d", n);
        ck_assert_int_eq(post_write(key, "v"), 500);
        snprintf(key, sizeof key, "accepted:%d", n);
        write_key(key, "v");
        ck_assert_str_eq(read_key(key, NULL, NULL, NULL), "v");
    }
    ck_assert(tk_metric(SERVER_PORT, "pg_query_errors_total") >= errors + 5);
    ck_assert(tk_metric(SERVER_PORT, "pg_connects_total") == connects);
    ck_assert(tk_pg_exec(&primary, "postgres", "DROP TRIGGER refuse ON records"));
}
END_TEST

START_TEST(a_failed_write_is_a_503_and_writes_come_back)
{
    const char *more[] = {"DB_QUERY_TIMEOUT_MS=300", NULL};
    start(more);
    write_key("failed:1", "v1");
    /* The statement waits for a lock until statement_timeout cancels it; its position query
     * runs, but the write is reported failed. */
    PGconn *lock = tk_pg_lock_records(&primary);
    ck_assert(lock != NULL);
    ck_assert_int_eq(post_write("failed:1", "v2"), 503);
    tk_pg_unlock(lock);
    ck_assert_str_eq(read_key("failed:1", NULL, NULL, NULL), "v1");
    write_key("failed:2", "v");
    /* The primary down: a 503, and writes work again when it is back, with no restart. */
    ck_assert(tk_pg_stop(&primary));
    ck_assert_int_eq(post_write("failed:3", "v"), 503);
    ck_assert(tk_pg_restart(&primary));
    long long deadline = tk_now_ms() + 15000;
    while (post_write("failed:3", "v") != 200) {
        ck_assert_msg(tk_now_ms() < deadline, "writes never came back");
        usleep(100000);
    }
    write_key("failed:4", "v");
}
END_TEST

START_TEST(a_stopped_replica_costs_a_retry_and_comes_back)
{
    start(NULL);
    char key[32];
    for (int n = 0; n < 20; n++) {
        snprintf(key, sizeof key, "down:%d", n);
        write_key(key, "v");
    }
    wait_replayed(primary_value("SELECT pg_current_wal_lsn()::text"), 5000);
    /* The stopped replica is noticed by a read that fails on it (retried elsewhere: the reader
     * still gets 200) or by the once-a-second lag check, whichever comes first. A retry is what
     * this test is about, so it stops the replica until a read has been retried, at most three
     * times (the check wins such a race about one time in five). */
    for (int attempt = 0; json_integer_value(stats_get(-1, "read_retries")) == 0; attempt++) {
        ck_assert_msg(attempt < 3, "no read was retried in three stops of replica_1");
        if (attempt > 0) {
            ck_assert(tk_pg_restart(&replica[0]));
            wait_replica(0, "healthy", true, 15000);
        }
        ck_assert(tk_redis_flush(&redis));
        ck_assert(tk_pg_stop(&replica[0]));
        for (int n = 0; n < 20; n++) {
            snprintf(key, sizeof key, "down:%d", n);
            ck_assert_str_eq(read_key(key, NULL, NULL, NULL), "v");
        }
    }
    wait_replica(0, "healthy", false, 5000);
    ck_assert_int_ge(json_integer_value(stats_get(0, "failures")), 1);
    struct tk_response res;
    tk_get(SERVER_PORT, "/health", &res);
    ck_assert_int_eq(res.status, 200);
    ck_assert_str_eq(json_string_value(json_object_get(res.json, "status")), "degraded");
    ck_assert_str_eq(json_string_value(json_object_get(res.json, "replica_1")), "unavailable");
    ck_assert_str_eq(json_string_value(json_object_get(res.json, "replica")), "unavailable");
    ck_assert_str_eq(json_string_value(json_object_get(res.json, "primary")), "healthy");
    tk_response_free(&res);

    ck_assert(tk_pg_restart(&replica[0]));
    wait_replica(0, "healthy", true, 15000);
    /* Used again once its position has been read anew (a restarted standby is not trusted
     * before): rounds of uncached reads until one of them goes to it, for at most 10 s. */
    long long before = replica_reads(0), deadline = tk_now_ms() + 10000;
    while (replica_reads(0) == before) {
        ck_assert_msg(tk_now_ms() < deadline, "replica_1 is not used again");
        ck_assert(tk_redis_flush(&redis));
        for (int n = 0; n < 20; n++) {
            snprintf(key, sizeof key, "down:%d", n);
            ck_assert_str_eq(read_key(key, NULL, NULL, NULL), "v");
        }
        usleep(200000);
    }
}
END_TEST

START_TEST(a_lagging_replica_is_skipped)
{
    const char *more[] = {"MAX_REPLICA_LAG_MS=300", NULL};
    start(more);
    wait_replayed(write_key("lag:seed", "v"), 5000);
    replay(0, false);
    write_key("lag:moved", "v");
    wait_replica(0, "used", false, 5000);
    ck_assert_int_gt(json_integer_value(stats_get(0, "lag_bytes")), 0);
    ck_assert_int_gt(json_integer_value(stats_get(0, "lag_ms")), 300);
    long long before = replica_reads(0), other = replica_reads(1);
    char key[32];
    for (int n = 0; n < 20; n++) {
        snprintf(key, sizeof key, "lag:absent:%d", n);
        read_key(key, NULL, NULL, NULL);
    }
    ck_assert_int_eq(replica_reads(0), before);
    ck_assert_int_ge(replica_reads(1), other + 20);
    replay(0, true);
    wait_replica(0, "used", true, 5000);
}
END_TEST

START_TEST(a_lagging_replica_never_fills_the_cache)
{
    /* Lag is tolerated (a huge MAX_REPLICA_LAG_MS), so the lagging replicas stay in use. */
    const char *more[] = {"MAX_REPLICA_LAG_MS=3600000", NULL};
    start(more);
    wait_replayed(write_key("race", "old"), 5000);
    bool from_cache;
    ck_assert_str_eq(read_key("race", NULL, NULL, NULL), "old");
    ck_assert_str_eq(read_key("race", NULL, NULL, &from_cache), "old");
    ck_assert(from_cache);
    for (int i = 0; i < REPLICAS; i++)
        replay(i, false);
    write_key("race", "new");
    /* The naive version reads "old" from a replica here and caches it for the whole TTL. */
    for (int n = 0; n < 10; n++) {
        bool from_replica;
        ck_assert_str_eq(read_key("race", NULL, &from_replica, NULL), "new");
        ck_assert(!from_replica);
    }
    for (int i = 0; i < REPLICAS; i++)
        replay(i, true);
    ck_assert_str_eq(read_key("race", NULL, NULL, &from_cache), "new");
    ck_assert(from_cache);
}
END_TEST

START_TEST(lag_checks_run_while_the_replica_pools_are_saturated)
{
    /* Small pools and queues, and reads that cannot finish: the lock below is replayed on the
     * standbys, so every read of `records` there waits. */
    const char *more[] = {"DB_POOL_MAX_SIZE=2", "DB_POOL_MIN_SIZE=1", "DB_POOL_MAX_WAITING=2",
                          "DB_QUERY_TIMEOUT_MS=20000", NULL};
    start(more);
    wait_replayed(write_key("sat:seed", "v"), 5000);
    PGconn *lock = tk_pg_lock_records(&primary);
    ck_assert(lock != NULL);
    /* A commit elsewhere flushes the WAL, the lock's record with it; the standbys replay it. */
    ck_assert(tk_pg_exec(&primary, "layers", "CREATE TABLE IF NOT EXISTS sat_wal (x int)"));
    wait_replayed(primary_value("SELECT pg_current_wal_lsn()::text"), 5000);
    struct tk_batch *reads = tk_batch_start(SERVER_PORT, "/read/sat:absent:", 16);
    ck_assert(tk_wait_in_flight(SERVER_PORT, 8, true, 5000));
    /* The primary moves on (WAL that does not touch `records`); the standbys replay it. */
    ck_assert(tk_pg_exec(&primary, "layers", "INSERT INTO sat_wal VALUES (1)"));
    unsigned long long target = lsn_value(primary_value("SELECT pg_current_wal_lsn()::text"));
    ck_assert(target > 0);
    /* The checks read each replica's new position on their own connections: read through a
     * saturated pool they would be refused (queue full) or wait behind the stuck reads. */
    long long deadline = tk_now_ms() + 5000;
    for (int i = 0; i < REPLICAS; i++)
        while (lsn_value(json_string_value(stats_get(i, "replayed_lsn"))) < target) {
            ck_assert_msg(tk_now_ms() < deadline, "replica_%d's position is not checked", i + 1);
            usleep(50000);
        }
    for (int i = 0; i < REPLICAS; i++)
        ck_assert(json_is_true(stats_get(i, "healthy")));
    tk_pg_unlock(lock);
    struct tk_response *answers = tk_batch_wait(reads);
    for (int n = 0; n < 16; n++)
        ck_assert_msg(answers[n].status == 200 || answers[n].status == 503, "read %d: %ld", n,
                      answers[n].status);
    tk_batch_free(reads);
}
END_TEST

int main(void)
{
    if (!tk_pg_start(&primary, PG_PORT, NULL))
        return 1;
    for (int i = 0; i < REPLICAS; i++) {
        char slot[16];
        snprintf(slot, sizeof slot, "replica_%d", i + 1);
        if (!start_replica(&replica[i], PG_PORT + 1 + i, slot))
            return 1;
    }
    if (!tk_redis_start(&redis, REDIS_PORT))
        return 1;
    snprintf(primary_env, sizeof primary_env, "PRIMARY_DATABASE_URL=%s", primary.url);
    snprintf(replicas_env, sizeof replicas_env, "REPLICA_DATABASE_URLS=%s,%s", replica[0].url,
             replica[1].url);
    snprintf(redis_env, sizeof redis_env, "REDIS_URL=%s", redis.url);
    static const char *env[] = {primary_env, replicas_env, redis_env,
                                "DB_POOL_ACQUIRE_TIMEOUT_MS=20000", NULL};
    struct contract_target target = {SERVER_BIN, "3-read-replicas", SERVER_PORT, &primary, env,
                                     false};
    contract_set_target(&target);
    contract_set_after_lock(replicas_take_the_lock);

    Suite *suite = suite_create("3-read-replicas");
    suite_add_tcase(suite, contract_tcase());
    suite_add_tcase(suite, resilience_tcase_without(
                               (const char *const[]){"database_stops_and_comes_back", NULL}));
    suite_add_tcase(suite, hung_database_tcase());
    suite_add_tcase(suite, openapi_tcase());
    suite_add_tcase(suite, api_docs_tcase());
    TCase *own =
        check_tcase("replicas", clean, stop_server, 120,
                    (const TTest *const[]){
                        stats_shape_and_writes_reach_the_replicas,
                        a_token_read_always_sees_its_write, a_token_is_at_or_after_its_commit,
                        a_refused_write_is_a_500_and_its_connection_is_reused,
                        a_failed_write_is_a_503_and_writes_come_back,
                        a_stopped_replica_costs_a_retry_and_comes_back,
                        a_lagging_replica_is_skipped, a_lagging_replica_never_fills_the_cache,
                        lag_checks_run_while_the_replica_pools_are_saturated, NULL});
    suite_add_tcase(suite, own);
    int failed = check_run(suite, CK_FORK_GETENV);
    for (int i = 0; i < REPLICAS; i++)
        tk_pg_destroy(&replica[i]);
    tk_pg_destroy(&primary);
    tk_redis_destroy(&redis);
    return failed == 0 ? 0 : 1;
}
