/*
 * testkit: throwaway PostgreSQL, server processes and an HTTP client for black-box tests
 * (see testkit.h).
 */
#include "testkit.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* tk_set_default_header's header, "" for none (set before the tests fork). */
static char default_header[512];

#ifndef LAYERS_SOURCE_DIR
#error "LAYERS_SOURCE_DIR must point at the repository (set by CMake)"
#endif

long long tk_now_ms(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (long long)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ---- PostgreSQL through scripts/stack.sh ---- */

static bool stack(const char *verb, const struct tk_pg *pg, const char *extra)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "bash '%s/scripts/stack.sh' %s '%s' %d %s", LAYERS_SOURCE_DIR, verb,
             pg->dir, pg->port, extra ? extra : "");
    if (strcmp(verb, "pg-stop") == 0)
        snprintf(cmd, sizeof cmd, "bash '%s/scripts/stack.sh' pg-stop '%s'", LAYERS_SOURCE_DIR,
                 pg->dir);
    int rc = system(cmd);
    if (rc != 0)
        fprintf(stderr, "testkit: '%s' failed (%d)\n", cmd, rc);
    return rc == 0;
}

static char saved_extra[512]; /* options to start with again after tk_pg_stop */

bool tk_pg_start(struct tk_pg *pg, int port, const char *extra)
{
    snprintf(pg->dir, sizeof pg->dir, "/tmp/layers-test-pg-%d-XXXXXX", port);
    if (mkdtemp(pg->dir) == NULL) {
        perror("testkit: mkdtemp");
        return false;
    }
    chmod(pg->dir, 0755); /* the server runs as user postgres when we are root */
    pg->port = port;
    snprintf(pg->url, sizeof pg->url, "postgresql://layers@127.0.0.1:%d/layers", port);
    snprintf(saved_extra, sizeof saved_extra, "-c fsync=off -c full_page_writes=off %s",
             extra ? extra : "");
    /* The script creates the cluster in a fresh directory of its own inside ours. */
    strncat(pg->dir, "/data", sizeof pg->dir - strlen(pg->dir) - 1);
    return stack("pg-start", pg, saved_extra);
}

bool tk_pg_stop(struct tk_pg *pg)
{
    return stack("pg-stop", pg, NULL);
}

bool tk_pg_restart(struct tk_pg *pg)
{
    return stack("pg-start", pg, saved_extra);
}

void tk_pg_destroy(struct tk_pg *pg)
{
    if (pg->dir[0] == '\0')
        return;
    tk_pg_stop(pg);
    char cmd[600];
    char *slash = strrchr(pg->dir, '/');
    *slash = '\0'; /* the temp dir above data/ */
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", pg->dir);
    if (system(cmd) != 0)
        fprintf(stderr, "testkit: could not remove %s\n", pg->dir);
    pg->dir[0] = '\0';
}

PGconn *tk_pg_connect(const struct tk_pg *pg, const char *user)
{
    char conninfo[256];
    snprintf(conninfo, sizeof conninfo,
             "host=127.0.0.1 port=%d user=%s dbname=layers connect_timeout=5", pg->port, user);
    PGconn *conn = PQconnectdb(conninfo);
    if (PQstatus(conn) != CONNECTION_OK) {
        fprintf(stderr, "testkit: connect as %s: %s", user, PQerrorMessage(conn));
        PQfinish(conn);
        return NULL;
    }
    return conn;
}

bool tk_pg_exec(const struct tk_pg *pg, const char *user, const char *sql)
{
    PGconn *conn = tk_pg_connect(pg, user);
    if (conn == NULL)
        return false;
    PGresult *res = PQexec(conn, sql);
    ExecStatusType st = PQresultStatus(res);
    bool ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
    if (!ok)
        fprintf(stderr, "testkit: %s: %s", sql, PQerrorMessage(conn));
    PQclear(res);
    PQfinish(conn);
    return ok;
}

bool tk_pg_pause(const struct tk_pg *pg, bool pause)
{
    char path[300], cmd[160];
    snprintf(path, sizeof path, "%s/postmaster.pid", pg->dir); /* dir is the data directory */
    FILE *f = fopen(path, "r");
    int pid = 0;
    if (f == NULL || fscanf(f, "%d", &pid) != 1 || pid <= 0) {
        if (f != NULL)
            fclose(f);
        fprintf(stderr, "testkit: no postmaster.pid in %s\n", pg->dir);
        return false;
    }
    fclose(f);
    const char *sig = pause ? "STOP" : "CONT";
    /* children first when stopping (none can start meanwhile: the postmaster forks them) */
    snprintf(cmd, sizeof cmd,
             pause ? "pkill -%s -P %d; kill -%s %d" : "kill -%s %d; pkill -%s -P %d", sig, pid, sig,
             pid);
    return system(cmd) == 0 || !pause;
}

PGconn *tk_pg_lock_records(const struct tk_pg *pg)
{
    PGconn *conn = tk_pg_connect(pg, "layers");
    if (conn == NULL)
        return NULL;
    PGresult *res = PQexec(conn, "BEGIN; LOCK TABLE records IN ACCESS EXCLUSIVE MODE");
    bool ok = PQresultStatus(res) == PGRES_COMMAND_OK;
    PQclear(res);
    if (!ok) {
        fprintf(stderr, "testkit: lock records: %s", PQerrorMessage(conn));
        PQfinish(conn);
        return NULL;
    }
    return conn;
}

void tk_pg_unlock(PGconn *conn)
{
    PQclear(PQexec(conn, "COMMIT"));
    PQfinish(conn);
}

/* ---- Redis through scripts/stack.sh ---- */

static bool redis_stack(const char *verb, const struct tk_redis *redis)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "bash '%s/scripts/stack.sh' %s '%s' %d", LAYERS_SOURCE_DIR, verb,
             redis->dir, redis->port);
    if (strcmp(verb, "redis-stop") == 0)
        snprintf(cmd, sizeof cmd, "bash '%s/scripts/stack.sh' redis-stop '%s'", LAYERS_SOURCE_DIR,
                 redis->dir);
    int rc = system(cmd);
    if (rc != 0)
        fprintf(stderr, "testkit: '%s' failed (%d)\n", cmd, rc);
    return rc == 0;
}

bool tk_redis_start(struct tk_redis *redis, int port)
{
    return tk_redis_start_mode(redis, port, "cache");
}

/* stack.sh starts Redis in the mode its directory remembers, so restarts keep it too. */
bool tk_redis_start_mode(struct tk_redis *redis, int port, const char *mode)
{
    snprintf(redis->dir, sizeof redis->dir, "/tmp/layers-test-redis-%d-XXXXXX", port);
    if (mkdtemp(redis->dir) == NULL) {
        perror("testkit: mkdtemp");
        return false;
    }
    redis->port = port;
    snprintf(redis->url, sizeof redis->url, "redis://127.0.0.1:%d/0", port);
    char path[300];
    snprintf(path, sizeof path, "%s/mode", redis->dir);
    FILE *f = fopen(path, "w");
    bool written = f != NULL && fprintf(f, "%s\n", mode) > 0;
    if (f == NULL || fclose(f) != 0 || !written) {
        perror("testkit: writing the Redis mode");
        return false;
    }
    return redis_stack("redis-start", redis);
}

bool tk_redis_stop(struct tk_redis *redis)
{
    return redis_stack("redis-stop", redis);
}

bool tk_redis_restart(struct tk_redis *redis)
{
    return redis_stack("redis-start", redis);
}

bool tk_redis_flush(const struct tk_redis *redis)
{
    char cmd[96];
    snprintf(cmd, sizeof cmd, "redis-cli -p %d flushall >/dev/null", redis->port);
    return system(cmd) == 0;
}

void tk_redis_destroy(struct tk_redis *redis)
{
    if (redis->dir[0] == '\0')
        return;
    tk_redis_stop(redis);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", redis->dir);
    if (system(cmd) != 0)
        fprintf(stderr, "testkit: could not remove %s\n", redis->dir);
    redis->dir[0] = '\0';
}

/* ---- MongoDB through scripts/stack.sh ---- */

static bool mongo_stack(const char *verb, const struct tk_mongo *mongo)
{
    char cmd[600];
    if (strcmp(verb, "mongo-stop") == 0)
        snprintf(cmd, sizeof cmd, "bash '%s/scripts/stack.sh' mongo-stop '%s'", LAYERS_SOURCE_DIR,
                 mongo->dir);
    else
        snprintf(cmd, sizeof cmd, "bash '%s/scripts/stack.sh' %s '%s' %d", LAYERS_SOURCE_DIR, verb,
                 mongo->dir, mongo->port);
    int rc = system(cmd);
    if (rc != 0)
        fprintf(stderr, "testkit: '%s' failed (%d)\n", cmd, rc);
    return rc == 0;
}

bool tk_mongo_start(struct tk_mongo *mongo, int port)
{
    snprintf(mongo->dir, sizeof mongo->dir, "/tmp/layers-test-mongo-%d-XXXXXX", port);
    if (mkdtemp(mongo->dir) == NULL) {
        perror("testkit: mkdtemp");
        return false;
    }
    mongo->port = port;
    snprintf(mongo->url, sizeof mongo->url, "mongodb://127.0.0.1:%d/layers", port);
    return mongo_stack("mongo-start", mongo);
}

bool tk_mongo_stop(struct tk_mongo *mongo)
{
    return mongo_stack("mongo-stop", mongo);
}

bool tk_mongo_restart(struct tk_mongo *mongo)
{
    return mongo_stack("mongo-start", mongo);
}

void tk_mongo_destroy(struct tk_mongo *mongo)
{
    if (mongo->dir[0] == '\0')
        return;
    tk_mongo_stop(mongo);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", mongo->dir);
    if (system(cmd) != 0)
        fprintf(stderr, "testkit: could not remove %s\n", mongo->dir);
    mongo->dir[0] = '\0';
}

/* ---- server processes ---- */

bool tk_server_spawn(struct tk_server *server, const char *binary, int port, const char *const *env)
{
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0)
        return false;
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive the test */
        if (getppid() != parent)
            _exit(127);
        char port_text[16];
        snprintf(port_text, sizeof port_text, "%d", port);
        setenv("PORT", port_text, 1);
        setenv("LOG_LEVEL", "warn", 1);
        for (int i = 0; env != NULL && env[i] != NULL; i++)
            putenv((char *)env[i]);
        execl(binary, binary, (char *)NULL);
        perror("testkit: exec");
        _exit(127);
    }
    server->pid = pid;
    server->port = port;
    return true;
}

bool tk_wait_status(int port, const char *path, long status, long timeout_ms)
{
    long long deadline = tk_now_ms() + timeout_ms;
    do {
        struct tk_response res;
        tk_get(port, path, &res);
        bool ok = res.status == status;
        tk_response_free(&res);
        if (ok)
            return true;
        sleep_ms(25);
    } while (tk_now_ms() < deadline);
    return false;
}

double tk_metric(int port, const char *series)
{
    struct tk_response res;
    tk_get(port, "/metrics", &res);
    double value = 0;
    size_t len = strlen(series);
    for (const char *line = res.body; line != NULL && *line != '\0';) {
        if (strncmp(line, series, len) == 0 && line[len] == ' ')
            value = strtod(line + len + 1, NULL);
        line = strchr(line, '\n');
        if (line != NULL)
            line++;
    }
    tk_response_free(&res);
    return value;
}

long tk_in_flight(int port)
{
    struct tk_response res;
    tk_get(port, "/metrics", &res);
    const char *line = res.body ? strstr(res.body, "\nhttp_requests_in_flight ") : NULL;
    long n = line ? strtol(line + 25, NULL, 10) - 1 : -1; /* minus this /metrics request */
    tk_response_free(&res);
    return n;
}

bool tk_wait_in_flight(int port, long n, bool at_least, long timeout_ms)
{
    long long deadline = tk_now_ms() + timeout_ms;
    for (;;) {
        long now = tk_in_flight(port);
        if (now >= 0 && (at_least ? now >= n : now <= n))
            return true;
        if (tk_now_ms() >= deadline)
            return false;
        sleep_ms(20);
    }
}

bool tk_server_start(struct tk_server *server, const char *binary, int port, const char *const *env)
{
    if (!tk_server_spawn(server, binary, port, env))
        return false;
    if (tk_wait_status(port, "/health", 200, 15000))
        return true;
    fprintf(stderr, "testkit: %s on port %d did not become healthy\n", binary, port);
    tk_server_stop(server, SIGKILL, 2000);
    return false;
}

int tk_server_stop(struct tk_server *server, int sig, long timeout_ms)
{
    if (server->pid <= 0)
        return -1;
    kill(server->pid, sig);
    long long deadline = tk_now_ms() + timeout_ms;
    int status;
    for (;;) {
        pid_t done = waitpid(server->pid, &status, WNOHANG);
        if (done == server->pid)
            break;
        if (tk_now_ms() >= deadline) {
            kill(server->pid, SIGKILL);
            waitpid(server->pid, &status, 0);
            server->pid = 0;
            return -1;
        }
        sleep_ms(10);
    }
    server->pid = 0;
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    return 128 + WTERMSIG(status);
}

/* ---- HTTP ---- */

struct collected {
    struct tk_response *res; /* where headers go */
    char *body;              /* growing body */
    size_t len, cap;         /* its size */
};

static size_t on_body(char *data, size_t size, size_t n, void *arg)
{
    struct collected *c = arg;
    size_t add = size * n;
    if (c->len + add + 1 > c->cap) {
        c->cap = (c->len + add + 1) * 2;
        c->body = realloc(c->body, c->cap);
    }
    memcpy(c->body + c->len, data, add);
    c->len += add;
    c->body[c->len] = '\0';
    return add;
}

static void copy_header_value(char *dst, size_t dstlen, const char *line, size_t len)
{
    const char *colon = memchr(line, ':', len);
    const char *v = colon + 1;
    while (v < line + len && (*v == ' ' || *v == '\t'))
        v++;
    size_t vlen = (size_t)(line + len - v);
    while (vlen > 0 && (v[vlen - 1] == '\r' || v[vlen - 1] == '\n'))
        vlen--;
    snprintf(dst, dstlen, "%.*s", (int)vlen, v);
}

static size_t on_header(char *data, size_t size, size_t n, void *arg)
{
    struct collected *c = arg;
    size_t len = size * n;
    if (len > 13 && strncasecmp(data, "Content-Type:", 13) == 0)
        copy_header_value(c->res->content_type, sizeof c->res->content_type, data, len);
    else if (len > 13 && strncasecmp(data, "X-Request-ID:", 13) == 0)
        copy_header_value(c->res->request_id, sizeof c->res->request_id, data, len);
    else if (len > 6 && strncasecmp(data, "Allow:", 6) == 0)
        copy_header_value(c->res->allow, sizeof c->res->allow, data, len);
    else if (len > 12 && strncasecmp(data, "Retry-After:", 12) == 0)
        copy_header_value(c->res->retry_after, sizeof c->res->retry_after, data, len);
    else if (len > 22 && strncasecmp(data, "X-RateLimit-Remaining:", 22) == 0)
        copy_header_value(c->res->rate_remaining, sizeof c->res->rate_remaining, data, len);
    return len;
}

void tk_set_default_header(const char *header)
{
    snprintf(default_header, sizeof default_header, "%s", header ? header : "");
}

const char *tk_default_header(void)
{
    return default_header;
}

/* Whether the request sets the default header's field itself (then its value wins). */
static bool overrides_default(const char *header)
{
    const char *colon = strchr(default_header, ':');
    return header != NULL && colon != NULL &&
           strncasecmp(header, default_header, (size_t)(colon - default_header + 1)) == 0;
}

static CURL *make_handle(int port, const struct tk_request *req, struct collected *c,
                         struct curl_slist **headers, long timeout_ms)
{
    char url[2048];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", port, req->path);
    CURL *h = curl_easy_init();
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, req->method);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, c);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, c);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_PATH_AS_IS, 1L);
    curl_easy_setopt(h, CURLOPT_FORBID_REUSE, 1L);
    *headers = curl_slist_append(NULL, "Expect:"); /* no 100-continue round trip */
    *headers = curl_slist_append(*headers, "Content-Type: application/json");
    if (default_header[0] && !overrides_default(req->header))
        *headers = curl_slist_append(*headers, default_header);
    if (req->header)
        *headers = curl_slist_append(*headers, req->header);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, *headers);
    if (req->body != NULL) {
        size_t len = req->body_len ? req->body_len : strlen(req->body);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, req->body);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    }
    return h;
}

static void finish_response(CURL *h, CURLcode rc, struct collected *c)
{
    struct tk_response *res = c->res;
    if (rc == CURLE_OK)
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &res->status);
    curl_easy_getinfo(h, CURLINFO_TOTAL_TIME, &res->seconds);
    if (rc != CURLE_OK && c->body == NULL) { /* say why there is no answer, for the message */
        char why[128];
        int len = snprintf(why, sizeof why, "(no response: curl: %s)", curl_easy_strerror(rc));
        c->body = strdup(why);
        c->len = (size_t)len;
    }
    res->body = c->body ? c->body : calloc(1, 1);
    res->body_len = c->len;
    res->json = json_loadb(res->body, res->body_len, JSON_ALLOW_NUL, NULL);
}

void tk_http(int port, const struct tk_request *req, struct tk_response *out)
{
    tk_http_many(port, req, out, 1, 25000);
}

void tk_get(int port, const char *path, struct tk_response *out)
{
    struct tk_request req = {"GET", path, NULL, 0, NULL};
    tk_http(port, &req, out);
}

void tk_post(int port, const char *path, const char *body, struct tk_response *out)
{
    struct tk_request req = {"POST", path, body, 0, NULL};
    tk_http(port, &req, out);
}

void tk_http_many(int port, const struct tk_request *reqs, struct tk_response *out, int n,
                  long timeout_ms)
{
    CURLM *multi = curl_multi_init();
    CURL **handles = calloc((size_t)n, sizeof *handles);
    struct collected *cs = calloc((size_t)n, sizeof *cs);
    struct curl_slist **headers = calloc((size_t)n, sizeof *headers);
    curl_multi_setopt(multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, 0L);
    for (int i = 0; i < n; i++) {
        memset(&out[i], 0, sizeof out[i]);
        cs[i].res = &out[i];
        /* Each request may take the whole batch's time: in a burst on a loaded machine the
         * last answers come late (the client itself gets a small share of the CPU). */
        handles[i] = make_handle(port, &reqs[i], &cs[i], &headers[i], timeout_ms);
        curl_easy_setopt(handles[i], CURLOPT_PRIVATE, &cs[i]);
        curl_multi_add_handle(multi, handles[i]);
    }
    long long deadline = tk_now_ms() + timeout_ms;
    int running = n;
    while (running > 0 && tk_now_ms() < deadline) {
        curl_multi_perform(multi, &running);
        curl_multi_poll(multi, NULL, 0, 50, NULL);
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(multi, &left)) != NULL) {
            if (msg->msg != CURLMSG_DONE)
                continue;
            struct collected *c;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&c);
            finish_response(msg->easy_handle, msg->data.result, c);
        }
    }
    for (int i = 0; i < n; i++) {
        if (out[i].body == NULL) /* never finished: transport failure */
            finish_response(handles[i], CURLE_OPERATION_TIMEDOUT, &cs[i]);
        curl_multi_remove_handle(multi, handles[i]);
        curl_easy_cleanup(handles[i]);
        curl_slist_free_all(headers[i]);
    }
    curl_multi_cleanup(multi);
    free(handles);
    free(cs);
    free(headers);
}

/* The body of a chunked upload, handed to libcurl's read callback a chunk at a time. */
struct upload {
    const char *next;   /* bytes not sent yet */
    size_t left;        /* how many */
    size_t chunk_bytes; /* at most this many a call: libcurl sends each call's bytes as a chunk */
};

static size_t on_upload(char *buffer, size_t size, size_t n, void *arg)
{
    struct upload *up = arg;
    size_t take = size * n;
    if (take > up->chunk_bytes)
        take = up->chunk_bytes;
    if (take > up->left)
        take = up->left;
    memcpy(buffer, up->next, take);
    up->next += take;
    up->left -= take;
    return take; /* 0 once everything is sent: libcurl then sends the last chunk */
}

void tk_post_chunked(int port, const char *path, const char *body, size_t len, size_t chunk_bytes,
                     struct tk_response *out)
{
    /* A POST with a read callback and no size is chunked once the header asks for it. */
    struct tk_request req = {"POST", path, NULL, 0, "Transfer-Encoding: chunked"};
    struct upload up = {body, len, chunk_bytes > 0 ? chunk_bytes : 1};
    struct collected c = {out, NULL, 0, 0};
    struct curl_slist *headers;
    memset(out, 0, sizeof *out);
    CURL *h = make_handle(port, &req, &c, &headers, 20000L);
    curl_easy_setopt(h, CURLOPT_POST, 1L);
    curl_easy_setopt(h, CURLOPT_READFUNCTION, on_upload);
    curl_easy_setopt(h, CURLOPT_READDATA, &up);
    finish_response(h, curl_easy_perform(h), &c);
    curl_easy_cleanup(h);
    curl_slist_free_all(headers);
}

void tk_response_free(struct tk_response *res)
{
    free(res->body);
    json_decref(res->json);
    memset(res, 0, sizeof *res);
}

struct tk_batch {
    int port;                /* where to send */
    int n;                   /* how many requests */
    struct tk_request *reqs; /* the requests */
    struct tk_response *res; /* their answers */
    char (*paths)[128];      /* their paths */
    pthread_t thread;        /* sends them */
};

static void *send_batch(void *arg)
{
    struct tk_batch *b = arg;
    tk_http_many(b->port, b->reqs, b->res, b->n, 30000);
    return NULL;
}

struct tk_batch *tk_batch_start(int port, const char *path_prefix, int n)
{
    struct tk_batch *b = calloc(1, sizeof *b);
    b->port = port;
    b->n = n;
    b->reqs = calloc((size_t)n, sizeof *b->reqs);
    b->res = calloc((size_t)n, sizeof *b->res);
    b->paths = calloc((size_t)n, sizeof *b->paths);
    for (int i = 0; i < n; i++) {
        snprintf(b->paths[i], sizeof b->paths[i], "%s%d", path_prefix, i);
        b->reqs[i] = (struct tk_request){"GET", b->paths[i], NULL, 0, NULL};
    }
    if (pthread_create(&b->thread, NULL, send_batch, b) != 0)
        abort();
    return b;
}

struct tk_response *tk_batch_wait(struct tk_batch *b)
{
    pthread_join(b->thread, NULL);
    return b->res;
}

void tk_batch_free(struct tk_batch *b)
{
    for (int i = 0; i < b->n; i++)
        tk_response_free(&b->res[i]);
    free(b->reqs);
    free(b->res);
    free(b->paths);
    free(b);
}

/* The default header (tk_set_default_header) goes after the request line of a raw request too,
 * when data holds a whole one; the rest is sent as it is. Returns the bytes to send (the caller
 * frees *copy). */
static const char *with_default_header(const char *data, size_t *len, char **copy)
{
    *copy = NULL;
    const char *eol = default_header[0] ? memchr(data, '\n', *len) : NULL;
    if (eol == NULL || eol - data < 11 || eol[-1] != '\r' || strncmp(eol - 10, " HTTP/1.", 8) != 0)
        return data;
    size_t head = (size_t)(eol + 1 - data), extra = strlen(default_header) + 2;
    *copy = malloc(*len + extra);
    memcpy(*copy, data, head);
    memcpy(*copy + head, default_header, extra - 2);
    memcpy(*copy + head + extra - 2, "\r\n", 2);
    memcpy(*copy + head + extra, data + head, *len - head);
    *len += extra;
    return *copy;
}

int tk_raw_send(int port, const char *data, size_t len)
{
    char *copy;
    data = with_default_header(data, &len, &copy);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0 ||
        write(fd, data, len) != (ssize_t)len) {
        if (fd >= 0)
            close(fd);
        free(copy);
        return -1;
    }
    free(copy);
    return fd;
}

long tk_raw_exchange(int port, const char *data, char *out, size_t size, long timeout_ms,
                     bool *closed)
{
    int fd = tk_raw_send(port, data, strlen(data));
    if (fd < 0)
        return -1;
    size_t got = 0;
    long long deadline = tk_now_ms() + timeout_ms;
    *closed = false;
    while (got + 1 < size) {
        long long left = deadline - tk_now_ms();
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (left <= 0 || poll(&p, 1, (int)left) <= 0)
            break;
        ssize_t n = read(fd, out + got, size - 1 - got);
        if (n <= 0) {
            *closed = true; /* EOF, or a reset: either way the server closed it */
            break;
        }
        got += (size_t)n;
    }
    out[got] = '\0';
    close(fd);
    return (long)got;
}

char *tk_write_body(const char *key, const char *value)
{
    json_t *doc = json_pack("{s:s, s:s}", "key", key, "value", value);
    char *text = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    return text;
}
