/*
 * testkit: what the black-box tests need to drive a real server against a real database.
 *
 * - a throwaway PostgreSQL (initdb'd by scripts/stack.sh in a temp directory, on a port of the
 *   test's choosing), which the test can stop and start again mid-test;
 * - server processes started with a given environment, killed automatically if the test process
 *   dies (PR_SET_PDEATHSIG), stopped with a signal and reaped with a deadline;
 * - an HTTP client on libcurl (one request, or many at once through curl's multi interface),
 *   and a raw socket for clients that misbehave.
 * Every wait here has a deadline; nothing can hang a test run.
 *
 * Ports: each test program owns a block below 32768 (layer N's tests near 2N000, the core's in
 * 16xxx and 24xxx). Never above: 32768-60999 is Linux's ephemeral range, where any outgoing
 * connection of a parallel test may hold the port for a moment ("Address already in use").
 */
#ifndef LAYERS_TESTKIT_H
#define LAYERS_TESTKIT_H

#include <jansson.h>
#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* ---- PostgreSQL ---- */

struct tk_pg {
    char dir[256]; /* data directory (a fresh temp dir) */
    int port;      /* 127.0.0.1 port */
    char url[128]; /* postgresql://layers@127.0.0.1:PORT/layers */
};

/* Creates and starts a cluster. extra: more postgres options ("-c max_connections=700"). */
bool tk_pg_start(struct tk_pg *pg, int port, const char *extra);
/* Stops it (the data stays) / starts it again. */
bool tk_pg_stop(struct tk_pg *pg);
bool tk_pg_restart(struct tk_pg *pg);
/* Hangs it (SIGSTOP to the postmaster and every backend: it stops answering, connections stay
 * open) or lets it go on (SIGCONT). */
bool tk_pg_pause(const struct tk_pg *pg, bool pause);
/* Stops it and removes the directory. */
void tk_pg_destroy(struct tk_pg *pg);
/* A blocking admin connection (user: "postgres" superuser or "layers"). NULL on failure. */
PGconn *tk_pg_connect(const struct tk_pg *pg, const char *user);
/* Runs SQL on a new connection as `user`; true on success. */
bool tk_pg_exec(const struct tk_pg *pg, const char *user, const char *sql);

/*
 * Holds ACCESS EXCLUSIVE on `records` in an open transaction, so every query on the table
 * waits: the tests' way of making requests slow on purpose. NULL on failure.
 */
PGconn *tk_pg_lock_records(const struct tk_pg *pg);
/* Commits (releasing the lock) and closes the connection. */
void tk_pg_unlock(PGconn *conn);

/* ---- Redis ---- */

struct tk_redis {
    char dir[256]; /* its directory (a fresh temp dir) */
    int port;      /* 127.0.0.1 port */
    char url[64];  /* redis://127.0.0.1:PORT/0 */
};

bool tk_redis_start(struct tk_redis *redis, int port);
/* A Redis in one of scripts/stack.sh's modes: "cache" (tk_redis_start: no persistence, any key
 * evicted), "queue" (AOF, appendfsync everysec, only keys with a TTL evicted) or "queue-always"
 * (appendfsync always). tk_redis_restart keeps the mode. */
bool tk_redis_start_mode(struct tk_redis *redis, int port, const char *mode);
bool tk_redis_stop(struct tk_redis *redis);
bool tk_redis_restart(struct tk_redis *redis);
void tk_redis_destroy(struct tk_redis *redis);
/* Empties it (FLUSHALL): each cache test starts from a known state. True on success. */
bool tk_redis_flush(const struct tk_redis *redis);

/* ---- MongoDB (layer 8: the stand-in, scripts/stack.sh mongo-start; in memory) ---- */

struct tk_mongo {
    char dir[256]; /* its directory (a fresh temp dir: pid and log) */
    int port;      /* 127.0.0.1 port */
    char url[64];  /* mongodb://127.0.0.1:PORT/layers */
};

bool tk_mongo_start(struct tk_mongo *mongo, int port);
/* Stops it / starts it again (the stand-in keeps its data in memory: it comes back empty). */
bool tk_mongo_stop(struct tk_mongo *mongo);
bool tk_mongo_restart(struct tk_mongo *mongo);
void tk_mongo_destroy(struct tk_mongo *mongo);

/* ---- server processes ---- */

struct tk_server {
    pid_t pid; /* 0 when not running */
    int port;  /* its PORT */
};

/*
 * Starts `binary` with PORT=port, LOG_LEVEL=warn and the given "NAME=value" settings (NULL-
 * terminated, may be NULL), then waits up to 15 s for GET /health to answer 200.
 * Its stderr goes to the test's stderr (shown by ctest on failure).
 */
bool tk_server_start(struct tk_server *server, const char *binary, int port,
                     const char *const *env);
/* Like tk_server_start without waiting for health (for servers expected to be unhealthy). */
bool tk_server_spawn(struct tk_server *server, const char *binary, int port,
                     const char *const *env);
/* Polls GET path until it answers `status` or timeout_ms passes. */
bool tk_wait_status(int port, const char *path, long status, long timeout_ms);
/* The value of one series in the server's /metrics (the whole line up to the value, e.g.
 * `http_requests_total{method="GET",route="/read/{key}",status="503"}`), or 0 if absent. */
double tk_metric(int port, const char *series);
/* Requests the server on port has received and not answered (from its /metrics), or -1. */
long tk_in_flight(int port);
/* Polls until tk_in_flight is >= n (at_least) or <= n (!at_least), or timeout_ms passes. */
bool tk_wait_in_flight(int port, long n, bool at_least, long timeout_ms);
/* Sends sig and waits up to timeout_ms: returns the exit code, 128+signal, or -1 on timeout
 * (the process is then killed). */
int tk_server_stop(struct tk_server *server, int sig, long timeout_ms);

/* ---- HTTP ---- */

struct tk_response {
    long status;            /* 0 when the request failed at the transport level */
    char *body;             /* NUL-terminated */
    size_t body_len;        /* bytes */
    json_t *json;           /* parsed body, or NULL */
    char content_type[128]; /* header values, "" when absent */
    char request_id[128];
    char allow[128];
    char retry_after[32];    /* Retry-After */
    char rate_remaining[32]; /* X-RateLimit-Remaining (layer 10) */
    double seconds;          /* total time */
};

struct tk_request {
    const char *method; /* "GET", "POST", ... */
    const char *path;   /* already percent-encoded */
    const char *body;   /* NULL for none */
    size_t body_len;    /* bytes of body (strlen when 0 and body != NULL) */
    const char *header; /* one extra "Name: value" header, or NULL */
};

/* A header every request of this test program sends from now on ("X-API-Key: k", NULL for
 * none), unless a request sets that field itself; raw requests (tk_raw_send) get it after their
 * request line when they hold a whole one. Layer 10's contract tests go through its API key
 * check this way. Call it before the tests fork (or inside one test, for that test). */
void tk_set_default_header(const char *header);
/* That header, "" for none. */
const char *tk_default_header(void);

/* One request on a new connection, with a 20 s deadline. */
void tk_http(int port, const struct tk_request *req, struct tk_response *out);
void tk_get(int port, const char *path, struct tk_response *out);
void tk_post(int port, const char *path, const char *body, struct tk_response *out);
void tk_response_free(struct tk_response *res);

/*
 * POST with `Transfer-Encoding: chunked`: body (len bytes) goes out in chunks of at most
 * chunk_bytes each, on a new connection, with a 20 s deadline.
 */
void tk_post_chunked(int port, const char *path, const char *body, size_t len, size_t chunk_bytes,
                     struct tk_response *out);

/* n requests at once (each on its own connection), all within timeout_ms. */
void tk_http_many(int port, const struct tk_request *reqs, struct tk_response *out, int n,
                  long timeout_ms);

/*
 * n GET requests to "<path_prefix><i>" sent at once from a background thread, so that the test
 * can act (stop the server, release a lock) while they are in flight.
 */
struct tk_batch;
struct tk_batch *tk_batch_start(int port, const char *path_prefix, int n);
/* Waits for every answer (each has its 30 s deadline); the array belongs to the batch. */
struct tk_response *tk_batch_wait(struct tk_batch *batch);
void tk_batch_free(struct tk_batch *batch);

/* Opens a TCP connection to 127.0.0.1:port and sends data; returns the socket or -1. */
int tk_raw_send(int port, const char *data, size_t len);

/* Sends data on a new connection and reads what comes back (NUL-terminated, at most size - 1
 * bytes) until the server closes it or timeout_ms passes; *closed says which. Returns the
 * bytes read, or -1 when it could not connect. */
long tk_raw_exchange(int port, const char *data, char *out, size_t size, long timeout_ms,
                     bool *closed);

/* Writes a POST /write body {"key":key,"value":value} (JSON-escaped) into a new string. */
char *tk_write_body(const char *key, const char *value);

/* Monotonic milliseconds. */
long long tk_now_ms(void);

#endif
