/*
 * Layer 7 black-box tests: the shared contract and resilience cases that fit a read model fed
 * asynchronously, and CQRS's own promises, with the real relay and projector running:
 * - a read with the write's consistency token sees the write, every time; without it, the value
 *   arrives within the lag; PUT on a never-written key; read_count grows by exactly one per
 *   read under concurrent readers;
 * - kill -9 of the relay and the projector, again and again, under writes: the read model ends
 *   equal to a rebuild from the outbox, and every key's write_count equals its commands;
 * - Redis down: writes succeed, and the read model converges when it is back; the read database
 *   down: reads 503, writes 200; the write database down: writes 503, reads 200; a poison event
 *   goes to the dead-letter stream and the others proceed; a token the projector cannot reach in
 *   time: 503 with Retry-After.
 * The contract cases that read right after a write without a token (shapes, keys in paths,
 * large values, upserts, chunked uploads, 500 clients, clients hanging up mid-request, the
 * database stopping) are skipped: here a read may lag, by design, and the write side stays up
 * when the read side is down; this file tests each of them with a token instead.
 */
#include "check_run.h"
#include "cqrs.h"
#include "layer_suite.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define WRITE_PG_PORT 30000
#define READ_PG_PORT  30001
#define REDIS_PORT    30050
#define SERVER_PORT   30100
#define HELPER_PORT   30110 /* the relay and projector get a PORT they do not use */

static struct tk_pg write_pg, read_pg;
static struct tk_redis redis;
static struct tk_server server, relay, projector;
static char write_url[160], read_url[160], redis_url[96];

static const char *const *helper_env(void)
{
    static const char *env[8];
    env[0] = write_url, env[1] = read_url, env[2] = redis_url;
    env[3] = "PROJECTOR_MAX_RETRIES=1", env[4] = "RELAY_POLL_MS=200", env[5] = NULL;
    return env;
}

static void start_relay(void)
{
    ck_assert(tk_server_spawn(&relay, RELAY_BIN, HELPER_PORT, helper_env()));
}

static void start_projector(void)
{
    ck_assert(tk_server_spawn(&projector, PROJECTOR_BIN, HELPER_PORT + 1, helper_env()));
}

static void start_all(const char *const *more)
{
    ck_assert_msg(contract_start_server(&server, more), "server did not start");
    start_relay();
    start_projector();
}

static void start_default(void)
{
    start_all(NULL);
}

static void stop_all(void)
{
    tk_server_stop(&server, SIGKILL, 5000);
    tk_server_stop(&relay, SIGKILL, 5000);
    tk_server_stop(&projector, SIGKILL, 5000);
    tk_redis_restart(&redis); /* in case a test stopped them and then failed */
    tk_pg_restart(&write_pg);
    tk_pg_restart(&read_pg);
}

/* ---- helpers ---- */

/* POST or PUT /write; returns the event id (a string in the reply) as a number. */
static long long send_write(const char *method, const char *key, const char *value,
                            const char *message)
{
    char *body = tk_write_body(key, value);
    struct tk_request req = {method, "/write", body, 0, NULL};
    struct tk_response res;
    tk_http(SERVER_PORT, &req, &res);
    ck_assert_msg(res.status == 200, "%s %s: %ld %s", method, key, res.status, res.body);
    ck_assert(json_is_true(json_object_get(res.json, "success")));
    ck_assert_str_eq(json_string_value(json_object_get(res.json, "key")), key);
    ck_assert_str_eq(json_string_value(json_object_get(res.json, "message")), message);
    json_t *id = json_object_get(res.json, "event_id");
    ck_assert_msg(json_is_string(id), "event_id is not a string: %s", res.body);
    long long position = atoll(json_string_value(id));
    ck_assert(position > 0);
    tk_response_free(&res);
    free(body);
    return position;
}

static long long post(const char *key, const char *value)
{
    return send_write("POST", key, value, "Command written and event published");
}

static long long put(const char *key, const char *value)
{
    return send_write("PUT", key, value, "Command updated and event published");
}

/* GET /read/<encoded> with a token in the header (token > 0); the caller frees res. */
static void read_with(const char *encoded, long long token, struct tk_response *res)
{
    char path[700], header[64];
    snprintf(path, sizeof path, "/read/%s", encoded);
    snprintf(header, sizeof header, "X-Consistency-Token: %lld", token);
    struct tk_request req = {"GET", path, NULL, 0, token > 0 ? header : NULL};
    tk_http(SERVER_PORT, &req, res);
}

static const char *member(const struct tk_response *res, const char *name)
{
    json_t *v = json_object_get(res->json, name);
    ck_assert_msg(json_is_string(v), "member %s: %s", name, res->body);
    return json_string_value(v);
}

static long long number(const struct tk_response *res, const char *name)
{
    json_t *v = json_object_get(res->json, name);
    ck_assert_msg(json_is_integer(v), "member %s: %s", name, res->body);
    return (long long)json_integer_value(v);
}

/* A token read finds value; returns its read_count. */
static long long read_finds(const char *encoded, long long token, const char *value)
{
    struct tk_response res;
    read_with(encoded, token, &res);
    ck_assert_msg(res.status == 200, "read %s after %lld: %ld %s", encoded, token, res.status,
                  res.body);
    ck_assert_msg(json_is_true(json_object_get(res.json, "success")), "read %s: %s", encoded,
                  res.body);
    json_t *v = json_object_get(res.json, "value");
    ck_assert(json_is_string(v));
    ck_assert_uint_eq(json_string_length(v), strlen(value));
    ck_assert(memcmp(json_string_value(v), value, strlen(value)) == 0);
    ck_assert(json_is_true(json_object_get(res.json, "from_read_db")));
    long long count = number(&res, "read_count");
    tk_response_free(&res);
    return count;
}

static long long stats_number(const char *name)
{
    struct tk_response res;
    tk_get(SERVER_PORT, "/stats", &res);
    json_t *v = json_object_get(res.json, name);
    long long n = json_is_integer(v) ? (long long)json_integer_value(v) : -1;
    tk_response_free(&res);
    return n;
}

static void redis_cli(const char *args)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "redis-cli -p %d %s >/dev/null", REDIS_PORT, args);
    ck_assert_int_eq(system(cmd), 0);
}

/* Waits until the projector has applied everything the outbox holds: positions alone would let
 * an event that committed late (published after a higher position the checkpoint already holds)
 * go unapplied, so the counts must agree too (as bench/lag.py's caught-up). */
static void wait_projected(long timeout_ms)
{
    long long deadline = tk_now_ms() + timeout_ms;
    for (;;) {
        long long outbox = stats_number("outbox_position"),
                  projected = stats_number("projector_position");
        if (outbox > 0 && projected >= outbox && stats_number("outbox_backlog") == 0 &&
            stats_number("events_projected") + stats_number("dead_letters") >=
                stats_number("events_published"))
            return;
        ck_assert_msg(tk_now_ms() < deadline, "projection did not catch up: %lld of %lld",
                      projected, outbox);
        usleep(50000);
    }
}

/* The read model as text (every column an event decides), ordered by key. */
static char *dump_read_model(void)
{
    PGconn *c = tk_pg_connect(&read_pg, "layers");
    ck_assert(c != NULL);
    PGresult *r = PQexec(c, "SELECT string_agg(concat_ws('|', key, value, created_at, updated_at, "
                            "write_count, last_position), E'\\n' ORDER BY key) FROM records");
    ck_assert_int_eq(PQresultStatus(r), PGRES_TUPLES_OK);
    char *text = strdup(PQgetvalue(r, 0, 0));
    PQclear(r);
    PQfinish(c);
    return text;
}

/* ---- the contract's write-then-read cases, with tokens ---- */

START_TEST(write_and_read_shapes_with_token)
{
    long long id = post("shape:1", "hello");
    struct tk_response res;
    read_with("shape:1", id, &res);
    ck_assert_int_eq(res.status, 200);
    ck_assert_str_eq(res.content_type, "application/json");
    ck_assert_str_eq(member(&res, "value"), "hello");
    ck_assert(json_is_null(json_object_get(res.json, "message")));
    ck_assert_int_eq(number(&res, "read_count"), 1);
    ck_assert_int_eq(number(&res, "write_count"), 1);
    ck_assert(json_is_true(json_object_get(res.json, "from_read_db")));
    char created[64];
    snprintf(created, sizeof created, "%s", member(&res, "created_at"));
    char updated[64];
    snprintf(updated, sizeof updated, "%s", member(&res, "updated_at"));
    tk_response_free(&res);

    usleep(20000);
    long long id2 = post("shape:1", "again"); /* upsert: created_at kept, updated_at moves */
    ck_assert(id2 > id);
    read_with("shape:1?x=1", 0, &res); /* a query string is not part of the key */
    tk_response_free(&res);
    char path[64];
    snprintf(path, sizeof path, "/read/shape:1?after=%lld", id2);
    tk_get(SERVER_PORT, path, &res);
    ck_assert_int_eq(res.status, 200);
    ck_assert_str_eq(member(&res, "value"), "again");
    ck_assert_str_eq(member(&res, "created_at"), created);
    ck_assert(strcmp(member(&res, "updated_at"), updated) > 0);
    ck_assert_int_eq(number(&res, "write_count"), 2);
    tk_response_free(&res);

    /* Not found: the layer's message, every member present. */
    tk_get(SERVER_PORT, "/read/never:there", &res);
    ck_assert_int_eq(res.status, 200);
    ck_assert(json_is_false(json_object_get(res.json, "success")));
    ck_assert_str_eq(member(&res, "message"),
                     "Key not found in read database (may not be projected yet)");
    ck_assert(json_is_null(json_object_get(res.json, "value")));
    ck_assert(json_is_null(json_object_get(res.json, "read_count")));
    tk_response_free(&res);

    /* /write takes POST and PUT: a GET is a 405 naming both. */
    tk_get(SERVER_PORT, "/write", &res);
    ck_assert_int_eq(res.status, 405);
    ck_assert_str_eq(res.allow, "POST, PUT");
    ck_assert_str_eq(member(&res, "detail"), "Method Not Allowed");
    tk_response_free(&res);
    tk_get(SERVER_PORT, "/nope", &res);
    ck_assert_int_eq(res.status, 404);
    tk_response_free(&res);

    /* A token that is not a number: 422. */
    struct tk_request bad = {"GET", "/read/shape:1", NULL, 0, "X-Consistency-Token: abc"};
    tk_http(SERVER_PORT, &bad, &res);
    ck_assert_int_eq(res.status, 422);
    tk_response_free(&res);
}
END_TEST

START_TEST(keys_values_and_chunks_with_tokens)
{
    long long id = post("a/b", "slash");
    read_finds("a%2Fb", id, "slash");
    id = post("key with space", "space");
    read_finds("key%20with%20space", id, "space");
    id = post("unicode_测试_ключ", "utf8");
    read_finds("unicode_%E6%B5%8B%E8%AF%95_%D0%BA%D0%BB%D1%8E%D1%87", id, "utf8");

    size_t len = 500 * 1024;
    char *value = malloc(len + 1);
    for (size_t i = 0; i < len; i++)
        value[i] = (char)('a' + (i * 7) % 26);
    value[len] = '\0';
    id = post("big-value", value);
    read_finds("big-value", id, value);
    free(value);

    char *body = tk_write_body("chunked:1", "sent in chunks");
    struct tk_response res;
    tk_post_chunked(SERVER_PORT, "/write", body, strlen(body), 7, &res);
    ck_assert_int_eq(res.status, 200);
    id = atoll(json_string_value(json_object_get(res.json, "event_id")));
    tk_response_free(&res);
    free(body);
    read_finds("chunked:1", id, "sent in chunks");
}
END_TEST

/* Writes warm ("before") through the API and reads it with its token (the relay and the API
 * are past their schema, whose ALTER TABLEs would wait for an open transaction on the outbox),
 * then opens a transaction on the write database and runs the API's command in it, by hand:
 * the command's position in *position, its transaction left open (commit_command ends it). */
static PGconn *begin_command(const char *warm, const char *key, const char *value, const char *kind,
                             long long *position)
{
    long long first = post(warm, "before");
    read_finds(warm, first, "before");
    PGconn *c = tk_pg_connect(&write_pg, "layers");
    ck_assert(c != NULL);
    PGresult *r = PQexec(c, "BEGIN");
    ck_assert_int_eq(PQresultStatus(r), PGRES_COMMAND_OK);
    PQclear(r);
    const char *params[] = {key, value, kind};
    r = PQexecParams(c, CQRS_SQL_COMMAND, 3, NULL, params, NULL, NULL, 0);
    ck_assert_msg(PQresultStatus(r) == PGRES_TUPLES_OK, "%s", PQerrorMessage(c));
    *position = atoll(PQgetvalue(r, 0, 0));
    PQclear(r);
    return c;
}

/* Commits what begin_command left open (no NOTIFY: the relay's poll or settle wait finds it). */
static void commit_command(PGconn *c)
{
    PGresult *r = PQexec(c, "COMMIT");
    ck_assert_int_eq(PQresultStatus(r), PGRES_COMMAND_OK);
    PQclear(r);
    PQfinish(c);
}

/* Commits in another order than positions: B takes position M in a transaction opened by hand
 * (the API's own statement), A writes through the API (N > M) and is projected, then M
 * commits. A read with token M must see M's value (or 503), never the value before it. */
START_TEST(a_token_waits_for_its_own_event_when_positions_commit_out_of_order)
{
    long long m;
    PGconn *c = begin_command("order:b", "order:b", "after", "put", &m);
    long long n = post("order:a", "later");
    ck_assert(n > m);
    read_finds("order:a", n, "later"); /* N is projected: the highest position is past M */
    commit_command(c);
    struct tk_response res;
    read_with("order:b", m, &res);
    ck_assert_msg(res.status == 200 || res.status == 503, "%ld %s", res.status, res.body);
    if (res.status == 200)
        ck_assert_str_eq(member(&res, "value"), "after");
    tk_response_free(&res);
    read_finds("order:b", m, "after"); /* and within READ_WAIT_MS it is there */
}
END_TEST

/* The relay's watermark W may not pass a position whose transaction is still in progress: a
 * command held open by hand (position M) while later commands commit, are published and read
 * with their tokens; then M commits. Its event must still be published (a relay that moved W to
 * the highest position it had published would never read M again), and /stats must count every
 * row once: events_published equals the outbox's rows, the backlog 0. */
START_TEST(a_command_committing_after_later_ones_were_published_is_published)
{
    long long m;
    PGconn *c = begin_command("held:first", "held:late", "committed last", "post", &m);
    char key[32];
    long long n = 0;
    for (int i = 0; i < 20; i++) { /* later positions, published and projected meanwhile */
        snprintf(key, sizeof key, "held:other%d", i);
        n = post(key, "meanwhile");
        ck_assert(n > m);
        read_finds(key, n, "meanwhile");
    }
    usleep(300000); /* more relay steps (and its safety poll) while M is still open */
    commit_command(c);
    read_finds("held:late", m, "committed last");
    wait_projected(10000);
    c = tk_pg_connect(&write_pg, "layers");
    ck_assert(c != NULL);
    PGresult *r = PQexec(c, "SELECT count(*) FROM outbox");
    ck_assert_int_eq(PQresultStatus(r), PGRES_TUPLES_OK);
    long long rows = atoll(PQgetvalue(r, 0, 0));
    PQclear(r);
    PQfinish(c);
    ck_assert_int_eq(stats_number("events_published"), rows);
    ck_assert_int_eq(stats_number("outbox_backlog"), 0);
}
END_TEST

/* Runs sql on c; asserts it succeeded; the first value of its first row, or "" (static). */
static const char *exec_c(PGconn *c, const char *sql, int nparams, const char *const *params)
{
    static char first[64];
    PGresult *r = PQexecParams(c, sql, nparams, NULL, params, NULL, NULL, 0);
    ck_assert_msg(PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK,
                  "%s: %s", sql, PQerrorMessage(c));
    snprintf(first, sizeof first, "%s", PQntuples(r) > 0 ? PQgetvalue(r, 0, 0) : "");
    PQclear(r);
    return first;
}

/* Transaction ids and outbox positions come in different orders: T2 takes its id after T1 but
 * its position before T1's. Once T1 commits, a snapshot's xmax is T1's id + 1 (PostgreSQL 14
 * and later: the latest completed id + 1), so T2, still open, is not in the snapshot's list of
 * transactions in progress: its id is at or above xmax. The relay took such a snapshot for
 * "nothing in progress", moved W past T2's position, and never published it (the benchmark's
 * "the projector did not catch up": one key of 1,000 missing from the read model, about one
 * run in ten). This test makes that order by hand; it failed before the fix. */
START_TEST(a_position_taken_by_a_transaction_above_the_snapshots_xmax_is_published)
{
    long long warm = post("xmax:warm", "before"); /* the programs are past their schema */
    read_finds("xmax:warm", warm, "before");
    PGconn *t1 = tk_pg_connect(&write_pg, "layers"), *t2 = tk_pg_connect(&write_pg, "layers");
    ck_assert(t1 != NULL && t2 != NULL);
    exec_c(t1, "BEGIN", 0, NULL);
    long long x1 = atoll(exec_c(t1, "SELECT pg_current_xact_id()::text", 0, NULL));
    exec_c(t2, "BEGIN", 0, NULL);
    long long x2 = atoll(exec_c(t2, "SELECT pg_current_xact_id()::text", 0, NULL));
    ck_assert(x2 > x1);
    long long p2 = atoll(
        exec_c(t2, CQRS_SQL_COMMAND, 3, (const char *const[]){"xmax:late", "second id", "post"}));
    long long p1 = atoll(
        exec_c(t1, CQRS_SQL_COMMAND, 3, (const char *const[]){"xmax:early", "first id", "post"}));
    ck_assert(p1 > p2);
    exec_c(t1, "COMMIT", 0, NULL); /* no NOTIFY (it would take an id): the relay's poll */
    PQfinish(t1);
    read_finds("xmax:early", p1, "first id");
    usleep(300000); /* more relay steps while T2 is open */
    exec_c(t2, "COMMIT", 0, NULL);
    PQfinish(t2);
    read_finds("xmax:late", p2, "second id");
}
END_TEST

/* A command that committed and whose NOTIFY never came (the API crashed in between): the
 * relay's safety poll (RELAY_POLL_MS, 200 ms here) publishes it. */
START_TEST(an_event_without_notify_is_published_by_the_poll)
{
    PGconn *c = tk_pg_connect(&write_pg, "layers");
    ck_assert(c != NULL);
    const char *params[] = {"silent:1", "no notify", "post"};
    PGresult *r = PQexecParams(c, CQRS_SQL_COMMAND, 3, NULL, params, NULL, NULL, 0);
    ck_assert_msg(PQresultStatus(r) == PGRES_TUPLES_OK, "%s", PQerrorMessage(c));
    long long m = atoll(PQgetvalue(r, 0, 0));
    PQclear(r);
    PQfinish(c);
    long long start = tk_now_ms();
    read_finds("silent:1", m, "no notify");
    ck_assert_msg(tk_now_ms() - start < 1500, "published after %lld ms", tk_now_ms() - start);
}
END_TEST

/* The shared case "five_hundred_concurrent_clients", with tokens: 500 writes at once, then
 * 500 reads at once, each with its write's token: every one answered, every 200 the value. */
START_TEST(five_hundred_concurrent_clients_with_tokens)
{
    enum { N = 500 };
    struct tk_request *reqs = calloc(N, sizeof *reqs);
    struct tk_response *res = calloc(N, sizeof *res);
    char(*keys)[32] = calloc(N, sizeof *keys);
    char **bodies = calloc(N, sizeof *bodies);
    char(*paths)[64] = calloc(N, sizeof *paths);
    char(*headers)[64] = calloc(N, sizeof *headers);
    long long *tokens = calloc(N, sizeof *tokens);
    for (int i = 0; i < N; i++) {
        snprintf(keys[i], sizeof keys[i], "concurrent:%d", i);
        bodies[i] = tk_write_body(keys[i], keys[i]);
        reqs[i] = (struct tk_request){"POST", "/write", bodies[i], 0, NULL};
    }
    tk_http_many(SERVER_PORT, reqs, res, N, 60000);
    int written = 0;
    for (int i = 0; i < N; i++) {
        ck_assert_msg(res[i].status == 200 || res[i].status == 503, "write %d: %ld %s", i,
                      res[i].status, res[i].body);
        if (res[i].status == 200) {
            tokens[i] = atoll(json_string_value(json_object_get(res[i].json, "event_id")));
            written++;
        }
        tk_response_free(&res[i]);
    }
    ck_assert_int_gt(written, 0);
    for (int i = 0; i < N; i++) {
        snprintf(paths[i], sizeof paths[i], "/read/%s", keys[i]);
        snprintf(headers[i], sizeof headers[i], "X-Consistency-Token: %lld", tokens[i]);
        reqs[i] = (struct tk_request){"GET", paths[i], NULL, 0, tokens[i] ? headers[i] : NULL};
    }
    tk_http_many(SERVER_PORT, reqs, res, N, 60000);
    int seen = 0;
    for (int i = 0; i < N; i++) {
        ck_assert_msg(res[i].status == 200 || res[i].status == 503, "read %d: %ld %s", i,
                      res[i].status, res[i].body);
        if (tokens[i] > 0 && res[i].status == 200) {
            ck_assert_str_eq(json_string_value(json_object_get(res[i].json, "value")), keys[i]);
            seen++;
        }
        tk_response_free(&res[i]);
        free(bodies[i]);
    }
    ck_assert_int_gt(seen, 0);
    long long id = post("concurrent:after", "calm"); /* after the burst, it serves normally */
    read_finds("concurrent:after", id, "calm");
    free(reqs), free(res), free(keys), free(bodies), free(paths), free(headers), free(tokens);
}
END_TEST

/* The shared case "client_disconnects_mid_query": a read (records locked), a write
 * (command_keys locked) and a token read waiting for the projector, each client gone before
 * its answer. The server answers into closed sockets and serves on. */
START_TEST(clients_hanging_up_mid_request)
{
    PGconn *read_lock = tk_pg_lock_records(&read_pg);
    ck_assert(read_lock != NULL);
    PGconn *write_lock = tk_pg_connect(&write_pg, "layers");
    ck_assert(write_lock != NULL);
    PGresult *r = PQexec(write_lock, "BEGIN; LOCK TABLE command_keys IN ACCESS EXCLUSIVE MODE");
    ck_assert_int_eq(PQresultStatus(r), PGRES_COMMAND_OK);
    PQclear(r);
    const char get[] = "GET /read/gone HTTP/1.1\r\nHost: t\r\n\r\n";
    const char wait[] = "GET /read/gone HTTP/1.1\r\nHost: t\r\n"
                        "X-Consistency-Token: 99999999\r\n\r\n";
    const char body[] = "{\"key\":\"gone\",\"value\":\"v\"}";
    char post_req[256];
    int len = snprintf(post_req, sizeof post_req,
                       "POST /write HTTP/1.1\r\nHost: t\r\nContent-Length: %zu\r\n\r\n%s",
                       sizeof body - 1, body);
    int a = tk_raw_send(SERVER_PORT, get, sizeof get - 1);
    int b = tk_raw_send(SERVER_PORT, post_req, (size_t)len);
    int w = tk_raw_send(SERVER_PORT, wait, sizeof wait - 1);
    ck_assert(a >= 0 && b >= 0 && w >= 0);
    ck_assert_msg(tk_wait_in_flight(SERVER_PORT, 3, true, 10000), "never saw 3 in flight");
    close(a);
    close(b);
    close(w);
    usleep(100000);
    tk_pg_unlock(read_lock);
    tk_pg_unlock(write_lock);
    /* Every request finished (the token read after READ_WAIT_MS), none crashed the server. */
    ck_assert(tk_wait_in_flight(SERVER_PORT, 0, false, 10000));
    ck_assert_int_eq(kill(server.pid, 0), 0);
    long long id = post("gone", "after");
    read_finds("gone", id, "after");
}
END_TEST

/* ---- CQRS's own promises ---- */

START_TEST(token_reads_always_see_the_write)
{
    char value[32];
    for (int i = 0; i < 40; i++) {
        snprintf(value, sizeof value, "v%d", i);
        long long id = i % 2 ? put("token:1", value) : post("token:1", value);
        read_finds("token:1", id, value);
    }
    ck_assert_int_ge(stats_number("events_projected"), 40);
}
END_TEST

START_TEST(without_a_token_the_value_arrives_within_the_lag)
{
    post("lag:1", "eventually");
    long long start = tk_now_ms();
    for (;;) {
        struct tk_response res;
        read_with("lag:1", 0, &res);
        ck_assert_int_eq(res.status, 200);
        bool found = json_is_true(json_object_get(res.json, "success"));
        ck_assert(json_is_integer(json_object_get(res.json, "projected_position")));
        tk_response_free(&res);
        if (found)
            break;
        ck_assert_msg(tk_now_ms() - start < 2000, "not projected within 2 s");
        usleep(2000);
    }
    ck_assert_int_ge(stats_number("events_published"), 1);
    ck_assert_int_eq(stats_number("projection_lag_events") >= 0, 1);
}
END_TEST

START_TEST(put_on_a_never_written_key_creates_it)
{
    long long id = put("put:new", "from put");
    read_finds("put:new", id, "from put");
    struct tk_response res;
    read_with("put:new", id, &res);
    ck_assert_int_eq(number(&res, "write_count"), 1);
    tk_response_free(&res);
    PGconn *c = tk_pg_connect(&write_pg, "layers");
    PGresult *r = PQexec(c, "SELECT event_type FROM outbox WHERE key = 'put:new'");
    ck_assert_str_eq(PQgetvalue(r, 0, 0), "RecordUpdated");
    PQclear(r);
    PQfinish(c);
}
END_TEST

START_TEST(read_count_grows_by_one_per_read)
{
    enum { N = 60 };
    long long id = post("counted:1", "v");
    long long before = read_finds("counted:1", id, "v");
    struct tk_request reqs[N];
    struct tk_response res[N];
    for (int round = 0; round < 3; round++) { /* flushes (once a second) happen in between */
        for (int i = 0; i < N; i++)
            reqs[i] = (struct tk_request){"GET", "/read/counted:1", NULL, 0, NULL};
        tk_http_many(SERVER_PORT, reqs, res, N, 30000);
        for (int i = 0; i < N; i++) { /* each includes its own read, none counts more */
            ck_assert_int_eq(res[i].status, 200);
            long long n = number(&res[i], "read_count");
            ck_assert_msg(n > before && n <= before + N, "read_count %lld, not in (%lld, %lld]", n,
                          before, before + N);
            tk_response_free(&res[i]);
        }
        before += N;
        usleep(600000);
    }
    usleep(1500000); /* flushed into the read model */
    ck_assert_int_eq(read_finds("counted:1", 0, "v"), before + 1);
    PGconn *c = tk_pg_connect(&read_pg, "layers");
    PGresult *r = PQexec(c, "SELECT read_count FROM records WHERE key = 'counted:1'");
    ck_assert_int_ge(atoll(PQgetvalue(r, 0, 0)), before - 1); /* most are stored, not in Redis */
    PQclear(r);
    PQfinish(c);
}
END_TEST

START_TEST(a_token_the_projector_cannot_reach_is_a_503)
{
    const char *env[] = {"READ_WAIT_MS=300", NULL};
    tk_server_stop(&server, SIGKILL, 5000);
    ck_assert(contract_start_server(&server, env));
    ck_assert(tk_server_stop(&projector, SIGKILL, 5000) >= 0);
    long long id = post("late:1", "v");
    struct tk_response res;
    read_with("late:1", id, &res);
    ck_assert_int_eq(res.status, 503);
    ck_assert(res.seconds >= 0.25 && res.seconds < 3);
    ck_assert(json_is_string(json_object_get(res.json, "detail")));
    tk_response_free(&res);
    start_projector();
    long long deadline = tk_now_ms() + 10000;
    for (;;) {
        read_with("late:1", id, &res);
        long status = res.status;
        tk_response_free(&res);
        if (status == 200)
            break;
        ck_assert(tk_now_ms() < deadline);
    }
}
END_TEST

/* Stops the projector, and checks that the read model equals a replay of the outbox into an
 * empty one (l7-projector --rebuild): the first line that differs, if any. */
static void assert_model_equals_a_rebuild(void)
{
    char *incremental = dump_read_model();
    tk_server_stop(&projector, SIGTERM, 5000);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "env %s %s %s LOG_LEVEL=warn %s --rebuild", write_url, read_url,
             redis_url, PROJECTOR_BIN);
    int rc = system(cmd);
    ck_assert_msg(WIFEXITED(rc) && WEXITSTATUS(rc) == 0, "the rebuild failed: %d", rc);
    char *rebuilt = dump_read_model();
    const char *a = incremental, *b = rebuilt;
    while (*a != '\0' && *a == *b)
        a++, b++;
    bool same = *a == *b;
    while (a > incremental && a[-1] != '\n')
        a--, b--;
    ck_assert_msg(same, "incremental: %.300s\nrebuilt:     %.300s", a, b);
    free(incremental);
    free(rebuilt);
}

START_TEST(kill_9_under_writes_ends_equal_to_a_rebuild)
{
    enum { N = 40 };
    struct tk_request reqs[N];
    struct tk_response res[N];
    char *bodies[N];
    for (int round = 0; round < 8; round++) {
        for (int i = 0; i < N; i++) {
            char key[32], value[32];
            snprintf(key, sizeof key, "kill:%d", (i * 7 + round) % 13);
            snprintf(value, sizeof value, "r%d-%d", round, i);
            bodies[i] = tk_write_body(key, value);
            reqs[i] = (struct tk_request){i % 3 ? "POST" : "PUT", "/write", bodies[i], 0, NULL};
        }
        tk_http_many(SERVER_PORT, reqs, res, N, 30000);
        for (int i = 0; i < N; i++) {
            ck_assert_int_eq(res[i].status, 200);
            tk_response_free(&res[i]);
            free(bodies[i]);
        }
        struct tk_server *victim = round % 2 ? &projector : &relay;
        kill(victim->pid, SIGKILL);
        tk_server_stop(victim, SIGKILL, 5000);
        usleep(20000 * (round % 4));
        if (victim == &relay)
            start_relay();
        else
            start_projector();
    }
    wait_projected(20000);

    /* Every key's write_count is its number of commands. */
    PGconn *w = tk_pg_connect(&write_pg, "layers");
    PGresult *counts = PQexec(w, "SELECT string_agg(key || '=' || n, ',' ORDER BY key) FROM "
                                 "(SELECT key, count(*) n FROM commands GROUP BY key) c");
    PGconn *r = tk_pg_connect(&read_pg, "layers");
    PGresult *model = PQexec(r, "SELECT string_agg(key || '=' || write_count, ',' ORDER BY key) "
                                "FROM records");
    ck_assert_str_eq(PQgetvalue(model, 0, 0), PQgetvalue(counts, 0, 0));
    PQclear(counts);
    PQclear(model);
    PQfinish(w);
    PQfinish(r);

    assert_model_equals_a_rebuild();
}
END_TEST

START_TEST(redis_down_writes_succeed_and_projection_converges)
{
    post("outage:r", "before");
    ck_assert(tk_redis_stop(&redis));
    long long id = 0;
    for (int i = 0; i < 5; i++)
        id = post("outage:r", "during");
    struct tk_response res;
    tk_get(SERVER_PORT, "/health", &res);
    ck_assert_int_eq(res.status, 200);
    ck_assert_str_eq(member(&res, "status"), "degraded");
    ck_assert_str_eq(member(&res, "redis"), "unavailable");
    tk_response_free(&res);
    ck_assert(tk_redis_restart(&redis));
    long long deadline = tk_now_ms() + 15000;
    for (;;) {
        read_with("outage:r", id, &res);
        long status = res.status;
        bool done = status == 200 && strcmp(member(&res, "value"), "during") == 0;
        tk_response_free(&res);
        if (done)
            break;
        ck_assert_msg(tk_now_ms() < deadline, "the read model did not converge");
        usleep(100000);
    }
}
END_TEST

START_TEST(read_database_down_reads_503_writes_200)
{
    long long id = post("outage:read", "v1");
    read_finds("outage:read", id, "v1");
    ck_assert(tk_pg_stop(&read_pg));
    struct tk_response res;
    tk_get(SERVER_PORT, "/read/outage:read", &res);
    ck_assert_int_eq(res.status, 503);
    ck_assert_str_eq(member(&res, "detail"), "Database unavailable");
    tk_response_free(&res);
    id = post("outage:read", "v2"); /* commands go on */
    tk_get(SERVER_PORT, "/health", &res);
    ck_assert_int_eq(res.status, 503);
    ck_assert_str_eq(member(&res, "read_database"), "unavailable");
    ck_assert_str_eq(member(&res, "write_database"), "healthy");
    tk_response_free(&res);
    ck_assert(tk_pg_restart(&read_pg));
    ck_assert(tk_wait_status(SERVER_PORT, "/health", 200, 15000));
    long long deadline = tk_now_ms() + 15000;
    for (;;) {
        read_with("outage:read", id, &res);
        long status = res.status;
        tk_response_free(&res);
        if (status == 200)
            break;
        ck_assert(tk_now_ms() < deadline);
        usleep(100000);
    }
    read_finds("outage:read", id, "v2");
}
END_TEST

START_TEST(write_database_down_writes_503_reads_200)
{
    long long id = post("outage:write", "kept");
    read_finds("outage:write", id, "kept");
    ck_assert(tk_pg_stop(&write_pg));
    char *body = tk_write_body("outage:write", "lost");
    struct tk_response res;
    tk_post(SERVER_PORT, "/write", body, &res);
    ck_assert_int_eq(res.status, 503);
    ck_assert_str_eq(member(&res, "detail"), "Database unavailable");
    tk_response_free(&res);
    free(body);
    read_finds("outage:write", 0, "kept"); /* the read side is up */
    ck_assert(tk_pg_restart(&write_pg));
    ck_assert(tk_wait_status(SERVER_PORT, "/health", 200, 15000));
    id = post("outage:write", "back");
    read_finds("outage:write", id, "back");
}
END_TEST

START_TEST(a_poison_event_goes_to_the_dead_letters)
{
    char args[600], key[301];
    memset(key, 'p', 300);
    key[300] = '\0';
    /* A key longer than the read model's column: PostgreSQL refuses it. */
    snprintf(args, sizeof args,
             "XADD l7:events '*' position 99999999 type RecordCreated key %s value v "
             "at 2026-01-01T00:00:00.000000Z command_id 0",
             key);
    long long before = stats_number("dead_letters");
    redis_cli(args);
    redis_cli("XADD l7:events '*' not an-event"); /* no fields of an event at all */
    long long id = post("after:poison", "fine");
    read_finds("after:poison", id, "fine");
    long long deadline = tk_now_ms() + 10000;
    while (stats_number("dead_letters") < before + 2) {
        ck_assert_msg(tk_now_ms() < deadline, "no dead letters");
        usleep(100000);
    }
    ck_assert_int_eq(stats_number("projector_position") < 99999999, 1);
}
END_TEST

/* A read whose answer was lost: Redis ran the projector's XREADGROUP, so its entries are in the
 * projector's pending list, but the answer never arrived (a timeout, a dropped connection).
 * Simulated by a MULTI that adds an event and reads it as the projector's consumer (a blocked
 * read is served only after the EXEC, so the projector does not get it), then the projector's
 * connections are killed: its waiting XREADGROUP fails. It must then read its own pending
 * entries before new ones; ">" never delivers these again, and a later batch's XTRIM would
 * remove them from the stream. Position 1: a fresh key's first, below the checkpoint. */
START_TEST(entries_a_lost_read_delivered_are_applied)
{
    long long id = post("lost:before", "running");
    read_finds("lost:before", id, "running");
    char cmd[800];
    snprintf(
        cmd, sizeof cmd,
        "printf 'MULTI\\nXADD " CQRS_STREAM " * position 1 type RecordCreated key lost:read "
        "value delivered at 2026-01-01T00:00:00.000000Z command_id 0\\nXREADGROUP GROUP " CQRS_GROUP
        " projector-1 COUNT 10 STREAMS " CQRS_STREAM " >\\nEXEC\\n' | "
        "redis-cli -p %d | grep -q delivered",
        REDIS_PORT);
    ck_assert_msg(system(cmd) == 0, "the MULTI did not read the entry as projector-1");
    redis_cli("CLIENT KILL TYPE normal SKIPME yes");
    long long start = tk_now_ms();
    for (;;) {
        struct tk_response res;
        read_with("lost:read", 0, &res);
        bool found = res.status == 200 && json_is_true(json_object_get(res.json, "success"));
        if (found)
            ck_assert_str_eq(member(&res, "value"), "delivered");
        tk_response_free(&res);
        if (found)
            break;
        ck_assert_msg(tk_now_ms() - start < 10000, "the lost read's entry was never applied");
        usleep(50000);
    }
}
END_TEST

/* Runs sql on a new connection to pg; asserts it succeeded; its first value, as exec_c. */
static const char *exec_on(struct tk_pg *pg, const char *sql)
{
    PGconn *c = tk_pg_connect(pg, "layers");
    ck_assert(c != NULL);
    const char *first = exec_c(c, sql, 0, NULL);
    PQfinish(c);
    return first;
}

static long long outbox_seq_scans(void)
{
    return atoll(exec_on(&write_pg, "SELECT coalesce(sum(seq_scan), -1) FROM pg_stat_user_tables "
                                    "WHERE relname = 'outbox'"));
}

/* The relay reads the outbox by position, its key. On a fresh database (an outbox without
 * statistics yet) the planner preferred a scan of the whole outbox to those index scans, at
 * every step, and kept that plan as the outbox grew: each step cost more than the last. The
 * relay's session forbids sequential scans (relay.c). This test starts from fresh databases,
 * writes 300 commands one by one (a relay step for about each) and counts the outbox's
 * sequential scans meanwhile: none. It failed before that fix (a scan per step). */
START_TEST(the_relay_never_scans_the_whole_outbox)
{
    tk_server_stop(&server, SIGKILL, 5000);
    tk_server_stop(&relay, SIGKILL, 5000);
    tk_server_stop(&projector, SIGKILL, 5000);
    exec_on(&write_pg, "DROP TABLE outbox, commands, command_keys, relay_state");
    exec_on(&read_pg, "DROP TABLE records, projector_checkpoint, read_flush");
    redis_cli("FLUSHALL");
    start_default();
    read_finds("fresh:first", post("fresh:first", "v"), "v"); /* the relay has started */
    usleep(1500000); /* its backend reports its counters after a second idle at most */
    long long before = outbox_seq_scans();
    long long id = 0;
    char key[32];
    for (int i = 0; i < 300; i++) {
        snprintf(key, sizeof key, "fresh:%d", i);
        id = post(key, "v");
    }
    read_finds(key, id, "v");
    usleep(1500000);
    long long scans = outbox_seq_scans() - before;
    ck_assert_msg(scans == 0, "the outbox was scanned whole %lld times during 300 commands", scans);
}
END_TEST

/* A command's event time (`at`) is its transaction's start, so a key's later command can carry
 * an earlier time than its first: T opens, a write of K is projected, then T writes K and
 * commits. created_at must not depend on how events fall into batches: the incremental
 * projector applied K's two events in two batches (created_at: the first's time), the rebuild
 * in one (created_at was the batch's earliest time, T's), and the two models differed (the
 * kill -9 test's rare "incremental / rebuilt" failure). created_at is the time of the key's
 * first event by position. This test failed before. */
START_TEST(created_at_does_not_depend_on_batches)
{
    long long warm = post("batched:warm", "v"); /* past the schema (its ALTER TABLEs) */
    read_finds("batched:warm", warm, "v");
    PGconn *t = tk_pg_connect(&write_pg, "layers");
    ck_assert(t != NULL);
    exec_c(t, "BEGIN", 0, NULL);
    exec_c(t, "SELECT now()", 0, NULL); /* T's start: its command's event time */
    usleep(20000);
    long long first = post("batched:k", "first");
    read_finds("batched:k", first, "first");
    long long second =
        atoll(exec_c(t, CQRS_SQL_COMMAND, 3, (const char *const[]){"batched:k", "second", "put"}));
    ck_assert(second > first);
    exec_c(t, "COMMIT", 0, NULL);
    PQfinish(t);
    read_finds("batched:k", second, "second");
    assert_model_equals_a_rebuild();
}
END_TEST

int main(void)
{
    if (!tk_pg_start(&write_pg, WRITE_PG_PORT, NULL) ||
        !tk_pg_start(&read_pg, READ_PG_PORT, NULL) ||
        !tk_redis_start_mode(&redis, REDIS_PORT, "queue"))
        return 1;
    snprintf(write_url, sizeof write_url, "WRITE_DB_URL=%s", write_pg.url);
    snprintf(read_url, sizeof read_url, "READ_DB_URL=%s", read_pg.url);
    snprintf(redis_url, sizeof redis_url, "REDIS_URL=%s", redis.url);
    static const char *env[] = {write_url, read_url, redis_url, "DB_POOL_ACQUIRE_TIMEOUT_MS=20000",
                                NULL};
    /* The shared cases' `records` (locked to make requests slow) is the read model's. */
    struct contract_target target = {SERVER_BIN, "7-cqrs", SERVER_PORT, &read_pg, env, false};
    static const char *const contract_skip[] = {"write_and_read_shapes",
                                                "chunked_uploads",
                                                "keys_in_paths",
                                                "large_value_round_trip",
                                                "upsert_keeps_created_moves_updated",
                                                "not_found_method_not_allowed_too_large",
                                                NULL};
    static const char *const resilience_skip[] = {"five_hundred_concurrent_clients",
                                                  "client_disconnects_mid_query",
                                                  "database_stops_and_comes_back", NULL};
    TCase *own =
        check_tcase("cqrs", start_default, stop_all, 120,
                    (const TTest *const[]){
                        write_and_read_shapes_with_token,
                        keys_values_and_chunks_with_tokens,
                        token_reads_always_see_the_write,
                        without_a_token_the_value_arrives_within_the_lag,
                        put_on_a_never_written_key_creates_it,
                        read_count_grows_by_one_per_read,
                        a_token_the_projector_cannot_reach_is_a_503,
                        kill_9_under_writes_ends_equal_to_a_rebuild,
                        redis_down_writes_succeed_and_projection_converges,
                        read_database_down_reads_503_writes_200,
                        write_database_down_writes_503_reads_200,
                        a_poison_event_goes_to_the_dead_letters,
                        a_token_waits_for_its_own_event_when_positions_commit_out_of_order,
                        an_event_without_notify_is_published_by_the_poll,
                        a_command_committing_after_later_ones_were_published_is_published,
                        five_hundred_concurrent_clients_with_tokens,
                        clients_hanging_up_mid_request,
                        entries_a_lost_read_delivered_are_applied,
                        the_relay_never_scans_the_whole_outbox,
                        a_position_taken_by_a_transaction_above_the_snapshots_xmax_is_published,
                        created_at_does_not_depend_on_batches,
                        NULL});
    int rc = layer_suite_run_without(&target, own, contract_skip, resilience_skip);
    tk_pg_destroy(&write_pg);
    tk_redis_destroy(&redis);
    return rc;
}
