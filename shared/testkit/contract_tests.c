/*
 * contract_tests: the shared HTTP contract, as Check test cases (see contract_tests.h).
 */
#include "contract_tests.h"
#include "check_run.h"

#include <errno.h>
#include <regex.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

static struct contract_target target;
static struct tk_pg *const *other_pgs; /* see contract_set_other_pgs */
static void (*after_lock)(void);       /* see contract_set_after_lock */
static struct tk_server server;        /* the server of the running test (one per forked test) */

void contract_set_target(const struct contract_target *t)
{
    target = *t;
}

const struct contract_target *contract_target(void)
{
    return &target;
}

void contract_set_other_pgs(struct tk_pg *const *pgs)
{
    other_pgs = pgs;
}

struct tk_pg *const *contract_other_pgs(void)
{
    return other_pgs;
}

void contract_set_after_lock(void (*fn)(void))
{
    after_lock = fn;
}

void contract_after_lock(void)
{
    if (after_lock)
        after_lock();
}

bool contract_start_server(struct tk_server *s, const char *const *more)
{
    static char url[160];
    const char *env[32];
    int n = 0;
    snprintf(url, sizeof url, "DATABASE_URL=%s", target.pg->url);
    env[n++] = url;
    for (int i = 0; target.env != NULL && target.env[i] != NULL && n < 24; i++)
        env[n++] = target.env[i];
    for (int i = 0; more != NULL && more[i] != NULL && n < 31; i++)
        env[n++] = more[i];
    env[n] = NULL;
    return tk_server_start(s, target.binary, target.port, env);
}

static void start_server(void)
{
    ck_assert_msg(contract_start_server(&server, NULL), "server did not start");
}

static void stop_server(void)
{
    tk_server_stop(&server, SIGKILL, 5000);
}

/* ---- helpers ---- */

static const char *member_string(json_t *obj, const char *name)
{
    json_t *v = json_object_get(obj, name);
    ck_assert_msg(v != NULL, "member '%s' missing", name);
    ck_assert_msg(json_is_string(v), "member '%s' is not a string", name);
    return json_string_value(v);
}

static void assert_null_member(json_t *obj, const char *name)
{
    json_t *v = json_object_get(obj, name);
    ck_assert_msg(v != NULL, "member '%s' missing (must be present, null)", name);
    ck_assert_msg(json_is_null(v), "member '%s' should be null", name);
}

static void assert_timestamp(const char *text)
{
    regex_t re;
    ck_assert_int_eq(regcomp(&re,
                             "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{6}Z$",
                             REG_EXTENDED | REG_NOSUB),
                     0);
    int rc = regexec(&re, text, 0, NULL, 0);
    regfree(&re);
    ck_assert_msg(rc == 0, "'%s' is not RFC 3339 UTC with microseconds", text);
}

static void write_ok(const char *key, const char *value)
{
    char *body = tk_write_body(key, value);
    struct tk_response res;
    tk_post(target.port, "/write", body, &res);
    ck_assert_msg(res.status == 200, "write of '%s': status %ld, body %s", key, res.status,
                  res.body);
    ck_assert(json_is_true(json_object_get(res.json, "success")));
    ck_assert_str_eq(member_string(res.json, "key"), key);
    tk_response_free(&res);
    free(body);
}

/* Reads path and checks it finds `value` under `key`. */
static void read_finds(const char *path, const char *key, const char *value)
{
    struct tk_response res;
    tk_get(target.port, path, &res);
    ck_assert_msg(res.status == 200, "read %s: status %ld", path, res.status);
    ck_assert_msg(json_is_true(json_object_get(res.json, "success")), "read %s: %s", path,
                  res.body);
    ck_assert_str_eq(member_string(res.json, "key"), key);
    json_t *v = json_object_get(res.json, "value");
    ck_assert(json_is_string(v));
    ck_assert_uint_eq(json_string_length(v), strlen(value));
    ck_assert(memcmp(json_string_value(v), value, strlen(value)) == 0);
    tk_response_free(&res);
}

/* Expects a 422 whose first error has this type and loc. */
static void expect_422(const struct tk_request *req, const char *type, const char *loc0,
                       const char *loc1)
{
    struct tk_response res;
    tk_http(target.port, req, &res);
    ck_assert_msg(res.status == 422, "%s %s: status %ld (%s)", req->method, req->path, res.status,
                  res.body);
    json_t *detail = json_object_get(res.json, "detail");
    ck_assert_msg(json_is_array(detail) && json_array_size(detail) >= 1, "detail: %s", res.body);
    bool found = false;
    for (size_t i = 0; i < json_array_size(detail); i++) {
        json_t *e = json_array_get(detail, i);
        const char *t = json_string_value(json_object_get(e, "type"));
        json_t *loc = json_object_get(e, "loc");
        ck_assert(json_is_string(json_object_get(e, "msg")));
        if (t == NULL || strcmp(t, type) != 0 || !json_is_array(loc))
            continue;
        if (strcmp(json_string_value(json_array_get(loc, 0)), loc0) != 0)
            continue;
        if (loc1 != NULL && (json_array_size(loc) < 2 || !json_is_string(json_array_get(loc, 1)) ||
                             strcmp(json_string_value(json_array_get(loc, 1)), loc1) != 0))
            continue;
        found = true;
    }
    ck_assert_msg(found, "no %s error at [%s, %s] in %s", type, loc0, loc1 ? loc1 : "-", res.body);
    tk_response_free(&res);
}

static void expect_422_body(const char *body, size_t len, const char *type, const char *loc1)
{
    struct tk_request req = {"POST", "/write", body, len, NULL};
    expect_422(&req, type, "body", loc1);
}

/* ---- tests ---- */

START_TEST(write_and_read_shapes)
{
    struct tk_response res;
    tk_post(target.port, "/write", "{\"key\":\"shape:1\",\"value\":\"hello\",\"extra\":1}", &res);
    ck_assert_int_eq(res.status, 200);
    ck_assert_str_eq(res.content_type, "application/json");
    ck_assert(json_is_true(json_object_get(res.json, "success")));
    ck_assert_str_eq(member_string(res.json, "key"), "shape:1");
    ck_assert(strncmp(member_string(res.json, "message"), "Data written successfully", 25) == 0);
    tk_response_free(&res);

    tk_get(target.port, "/read/shape:1", &res);
    ck_assert_int_eq(res.status, 200);
    ck_assert_str_eq(res.content_type, "application/json");
    ck_assert(json_is_true(json_object_get(res.json, "success")));
    ck_assert_str_eq(member_string(res.json, "key"), "shape:1");
    ck_assert_str_eq(member_string(res.json, "value"), "hello");
    assert_timestamp(member_string(res.json, "created_at"));
    assert_timestamp(member_string(res.json, "updated_at"));
    assert_null_member(res.json, "message");
    tk_response_free(&res);
}
END_TEST

START_TEST(read_not_found_shape)
{
    struct tk_response res;
    tk_get(target.port, "/read/never-written-key", &res);
    ck_assert_int_eq(res.status, 200);
    ck_assert(json_is_false(json_object_get(res.json, "success")));
    ck_assert_str_eq(member_string(res.json, "key"), "never-written-key");
    assert_null_member(res.json, "value");
    assert_null_member(res.json, "created_at");
    assert_null_member(res.json, "updated_at");
    ck_assert(strncmp(member_string(res.json, "message"), "Key not found", 13) == 0);
    tk_response_free(&res);
}
END_TEST

START_TEST(request_ids)
{
    struct tk_response res;
    tk_get(target.port, "/read/x", &res);
    ck_assert_msg(strlen(res.request_id) >= 8, "generated X-Request-ID missing");
    char first[128];
    snprintf(first, sizeof first, "%s", res.request_id);
    tk_response_free(&res);
    tk_get(target.port, "/read/x", &res);
    ck_assert_str_ne(res.request_id, first); /* a new one per request */
    tk_response_free(&res);

    struct tk_request sane = {"GET", "/read/x", NULL, 0, "X-Request-ID: trace-42.abc_DEF"};
    tk_http(target.port, &sane, &res);
    ck_assert_str_eq(res.request_id, "trace-42.abc_DEF");
    tk_response_free(&res);

    struct tk_request insane = {"GET", "/read/x", NULL, 0, "X-Request-ID: has spaces <script>"};
    tk_http(target.port, &insane, &res);
    ck_assert(strlen(res.request_id) >= 8);
    ck_assert(strstr(res.request_id, "script") == NULL);
    tk_response_free(&res);

    /* Errors carry the id in the body too. */
    tk_get(target.port, "/no/such/path", &res);
    ck_assert(strlen(res.request_id) >= 8);
    tk_response_free(&res);
}
END_TEST

START_TEST(validation_errors)
{
    expect_422_body("{\"value\":\"v\"}", 0, "missing", "key");
    expect_422_body("{\"key\":\"k\"}", 0, "missing", "value");
    struct tk_request empty = {"POST", "/write", "", 0, NULL};
    expect_422(&empty, "missing", "body", NULL);
    expect_422_body("   ", 0, "missing", NULL);
    expect_422_body("{\"key\":5,\"value\":\"v\"}", 0, "string_type", "key");
    expect_422_body("{\"key\":null,\"value\":\"v\"}", 0, "string_type", "key");
    expect_422_body("{\"key\":{\"a\":1},\"value\":\"v\"}", 0, "string_type", "key");
    expect_422_body("{\"key\":\"k\",\"value\":[1]}", 0, "string_type", "value");
    expect_422_body("{\"key\": \"k\", \"value\": ", 0, "json_invalid", NULL);
    expect_422_body("{\"key\":\"k\",\"value\":\"v\"} trailing", 0, "json_invalid", NULL);
    expect_422_body("[1]", 0, "json_invalid", NULL);
    expect_422_body("\"just a string\"", 0, "json_invalid", NULL);
    expect_422_body("{\"key\":\"\",\"value\":\"v\"}", 0, "string_too_short", "key");

    char key256[300];
    memset(key256, 'k', 256);
    key256[256] = '\0';
    char *body = tk_write_body(key256, "v");
    expect_422_body(body, 0, "string_too_long", "key");
    free(body);

    /* Raw invalid UTF-8 inside the key string; a NUL character in the value. */
    expect_422_body("{\"key\":\"bad\xff\xfe\",\"value\":\"v\"}", 0, "string_unicode", "key");
    expect_422_body("{\"key\":\"k\",\"value\":\"a\\u0000b\"}", 0, "string_unicode", "value");

    /* Several problems at once are all listed. */
    struct tk_response res;
    tk_post(target.port, "/write", "{\"key\":\"\",\"value\":7}", &res);
    ck_assert_int_eq(res.status, 422);
    ck_assert_uint_eq(json_array_size(json_object_get(res.json, "detail")), 2);
    tk_response_free(&res);
}
END_TEST

START_TEST(value_length_limit)
{
    /* MAX_VALUE_BYTES defaults to 512 KiB: one byte more is refused. */
    size_t max = 512 * 1024;
    char *value = malloc(max + 2);
    memset(value, 'v', max + 1);
    value[max + 1] = '\0';
    char *body = tk_write_body("too-long-value", value);
    expect_422_body(body, 0, "string_too_long", "value");
    free(body);
    free(value);
}
END_TEST

START_TEST(not_found_method_not_allowed_too_large)
{
    struct tk_response res;
    tk_get(target.port, "/nope", &res);
    ck_assert_int_eq(res.status, 404);
    ck_assert_str_eq(member_string(res.json, "detail"), "Not Found");
    ck_assert_str_eq(res.content_type, "application/json");
    tk_response_free(&res);

    tk_get(target.port, "/read/a/b", &res); /* a key is one segment */
    ck_assert_int_eq(res.status, 404);
    tk_response_free(&res);

    tk_get(target.port, "/write", &res);
    ck_assert_int_eq(res.status, 405);
    ck_assert_str_eq(member_string(res.json, "detail"), "Method Not Allowed");
    ck_assert_str_eq(res.allow, "POST");
    tk_response_free(&res);

    struct tk_request del = {"DELETE", "/read/x", NULL, 0, NULL};
    tk_http(target.port, &del, &res);
    ck_assert_int_eq(res.status, 405);
    ck_assert(strstr(res.allow, "GET") != NULL);
    tk_response_free(&res);

    /* Over MAX_BODY_BYTES (1 MiB): refused from the Content-Length, as JSON. */
    size_t big = 1024 * 1024 + 1;
    char *body = malloc(big);
    memset(body, ' ', big);
    struct tk_request large = {"POST", "/write", body, big, NULL};
    tk_http(target.port, &large, &res);
    ck_assert_int_eq(res.status, 413);
    ck_assert_str_eq(member_string(res.json, "detail"), "Request body too large");
    tk_response_free(&res);
    free(body);
}
END_TEST

/* Sends a raw request; expects one 400 whose detail is `detail`, and nothing after it. */
static void expect_raw_400(const char *request, const char *detail, bool must_close)
{
    char reply[4096];
    bool closed;
    long n = tk_raw_exchange(target.port, request, reply, sizeof reply, 3000, &closed);
    ck_assert_msg(n > 0, "no answer to %s", request);
    ck_assert_msg(strncmp(reply, "HTTP/1.1 400", 12) == 0, "%s -> %s", request, reply);
    ck_assert_msg(strstr(reply, detail) != NULL, "%s -> %s", request, reply);
    ck_assert_msg(strstr(reply + 12, "HTTP/1.1 ") == NULL, "a second answer: %s", reply);
    if (must_close)
        ck_assert_msg(closed, "the connection stayed open after: %s", request);
}

START_TEST(ambiguous_framing_and_a_missing_host_are_refused)
{
    /* Request smuggling: a request hidden in a body whose length could be read two ways is
     * never executed; the connection closes (nobody knows where its next request starts). */
    const char *smuggled[] = {
        "POST /write HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nContent-Length: 40\r\n\r\n"
        "helloGET /ping HTTP/1.1\r\nHost: t\r\n\r\n",
        "POST /write HTTP/1.1\r\nHost: t\r\nContent-Length: +5\r\n\r\nhello",
        "POST /write HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n"
        "\r\n0\r\n\r\nGET /ping HTTP/1.1\r\nHost: t\r\n\r\n",
        /* the guard's own marker, sent by a client */
        "GET /ping HTTP/1.1\r\nHost: t\r\nX-Layers-Body-Too-Large: 1\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof smuggled / sizeof *smuggled; i++)
        expect_raw_400(smuggled[i], "Malformed request framing", true);
    /* HTTP/1.1 requires Host; HTTP/1.0 does not. */
    expect_raw_400("GET /ping HTTP/1.1\r\n\r\n", "Missing Host header", false);
    char reply[4096];
    bool closed;
    ck_assert(tk_raw_exchange(target.port, "GET /ping HTTP/1.0\r\n\r\n", reply, sizeof reply, 3000,
                              &closed) > 0);
    ck_assert_msg(strncmp(reply, "HTTP/1.1 200", 12) == 0 ||
                      strncmp(reply, "HTTP/1.0 200", 12) == 0,
                  "%s", reply);
    /* A HEAD reply (here a 405: the routes are GET) has headers only, its length announced. */
    ck_assert(tk_raw_exchange(target.port,
                              "HEAD /read/x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
                              reply, sizeof reply, 3000, &closed) > 0);
    const char *end = strstr(reply, "\r\n\r\n");
    ck_assert_msg(end != NULL && end[4] == '\0', "a HEAD reply with a body: %s", reply);
    ck_assert_msg(strstr(reply, "Content-Length: ") != NULL, "%s", reply);
}
END_TEST

START_TEST(an_upload_that_goes_on_after_its_413_is_cut_off)
{
    /* Content-Length 10^18: refused at once; the client keeps sending without reading. The
     * server drops up to 4 MiB (4 x MAX_BODY_BYTES) and then closes, instead of reading
     * gigabytes. */
    const char head[] =
        "POST /write HTTP/1.1\r\nHost: t\r\nContent-Length: 1000000000000000000\r\n\r\n";
    int fd = tk_raw_send(target.port, head, sizeof head - 1);
    ck_assert(fd >= 0);
    struct timeval two_s = {2, 0};
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &two_s, sizeof two_s);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &two_s, sizeof two_s);
    enum { CHUNK = 64 * 1024 };
    char *chunk = calloc(1, CHUNK);
    size_t sent = 0;
    long long deadline = tk_now_ms() + 20000;
    while (sent < 64u * 1024 * 1024 && tk_now_ms() < deadline) {
        ssize_t n = send(fd, chunk, CHUNK, MSG_NOSIGNAL);
        if (n < 0)
            break; /* reset or broken pipe: the server closed it */
        sent += (size_t)n;
    }
    ck_assert_msg(sent < 32u * 1024 * 1024, "still accepting after %zu bytes", sent);
    /* The 413 may be read (or lost to the reset); then the connection is closed, not idle. */
    ssize_t n;
    while ((n = recv(fd, chunk, CHUNK, 0)) > 0)
        continue;
    ck_assert_msg(n == 0 || errno == ECONNRESET, "the connection was left open (%s)",
                  strerror(errno));
    free(chunk);
    close(fd);
    /* and the server serves on */
    ck_assert(tk_wait_status(target.port, "/ping", 200, 5000));
}
END_TEST

/* Whether the server has closed fd within timeout_ms (EOF or reset on read). */
static bool closed_within(int fd, long timeout_ms)
{
    struct timeval t = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &t, sizeof t);
    char buf[512];
    ssize_t n;
    while ((n = recv(fd, buf, sizeof buf, 0)) > 0)
        continue;
    return n == 0 || errno == ECONNRESET;
}

START_TEST(slow_and_surplus_clients_are_closed)
{
    tk_server_stop(&server, SIGKILL, 5000);
    const char *more[] = {"HTTP_READ_TIMEOUT_S=1", "HTTP_MAX_CONNECTIONS=8", NULL};
    ck_assert(contract_start_server(&server, more));
    /* Slowloris: a request whose header block never ends is closed after its read timeout,
     * while other clients are served. */
    const char slow[] = "GET /ping HTTP/1.1\r\nHost: t\r\nX-Slow: ";
    int fd = tk_raw_send(target.port, slow, sizeof slow - 1);
    ck_assert(fd >= 0);
    ck_assert(tk_wait_status(target.port, "/ping", 200, 2000));
    long long started = tk_now_ms();
    ck_assert_msg(closed_within(fd, 5000), "a request still arriving after 5 s was not closed");
    ck_assert_msg(tk_now_ms() - started < 4000, "closed only after %lld ms", tk_now_ms() - started);
    close(fd);
    /* Eight idle connections fill HTTP_MAX_CONNECTIONS: the ninth is answered 503 and closed;
     * once they are gone, requests are served again. */
    int idle[8];
    for (int i = 0; i < 8; i++)
        ck_assert((idle[i] = tk_raw_send(target.port, "", 0)) >= 0);
    usleep(200000);
    char reply[2048];
    bool closed;
    ck_assert(tk_raw_exchange(target.port, "GET /ping HTTP/1.1\r\nHost: t\r\n\r\n", reply,
                              sizeof reply, 3000, &closed) > 0);
    ck_assert_msg(strncmp(reply, "HTTP/1.1 503", 12) == 0, "%s", reply);
    ck_assert_msg(strstr(reply, "Too many connections") != NULL, "%s", reply);
    ck_assert_msg(strstr(reply, "Retry-After: 1") != NULL, "%s", reply);
    ck_assert(closed);
    for (int i = 0; i < 8; i++)
        close(idle[i]);
    ck_assert(tk_wait_status(target.port, "/ping", 200, 3000));
}
END_TEST

/* The server process's resident memory, in kB (/proc), or -1. */
static long server_rss_kb(void)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)server.pid);
    FILE *f = fopen(path, "r");
    long kb = -1;
    while (f != NULL && fgets(line, sizeof line, f) != NULL)
        if (sscanf(line, "VmRSS: %ld", &kb) == 1)
            break;
    if (f != NULL)
        fclose(f);
    return kb;
}

START_TEST(a_client_that_never_reads_its_answers_is_bounded)
{
    /* A client pipelines requests and never reads an answer. The answers cannot leave, and
     * while evhttp waits for one to leave it keeps reading the socket (to notice a close):
     * unbounded, what the client sends piles up in the server. It must stop reading instead,
     * so the client's sends block, and the server's memory stays put. Under AddressSanitizer
     * freed memory is held in a quarantine (256 MB) and counts in RSS: the server runs without
     * it here, so that RSS measures what is live. */
    tk_server_stop(&server, SIGKILL, 5000);
    static char asan[512];
    const char *inherited = getenv("ASAN_OPTIONS");
    snprintf(asan, sizeof asan, "ASAN_OPTIONS=%s%squarantine_size_mb=0",
             inherited != NULL ? inherited : "", inherited != NULL && *inherited ? ":" : "");
    const char *more[] = {asan, NULL};
    ck_assert(contract_start_server(&server, more));
    ck_assert(tk_wait_status(target.port, "/ping", 200, 5000));
    long before = server_rss_kb();
    ck_assert(before > 0);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert(fd >= 0);
    int small = 4096; /* a small receive window: the answers stop at once */
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)target.port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert(connect(fd, (struct sockaddr *)&addr, sizeof addr) == 0);
    struct timeval one_s = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &one_s, sizeof one_s);
    static const char request[] = "GET /ping HTTP/1.1\r\nHost: t\r\n\r\n";
    enum { CHUNK = 64 * 1024 };
    char *chunk = malloc(CHUNK);
    size_t per = sizeof request - 1;
    for (size_t at = 0; at + per <= CHUNK; at += per)
        memcpy(chunk + at, request, per);
    size_t sent = 0;
    long long deadline = tk_now_ms() + 20000;
    while (sent < 96u * 1024 * 1024 && tk_now_ms() < deadline) {
        ssize_t n = send(fd, chunk, CHUNK - CHUNK % per, MSG_NOSIGNAL);
        if (n <= 0)
            break; /* blocked for a second (the server stopped reading), or closed */
        sent += (size_t)n;
    }
    long after = server_rss_kb();
    ck_assert_msg(after - before < 24 * 1024,
                  "the server grew by %ld kB while a client sent %zu bytes without reading",
                  after - before, sent);
    ck_assert_msg(sent < 64u * 1024 * 1024, "the server read %zu bytes without being read", sent);
    /* and it serves others meanwhile */
    ck_assert(tk_wait_status(target.port, "/ping", 200, 5000));
    free(chunk);
    close(fd);
}
END_TEST

/*
 * Four reads sent in one packet, the last asking to close: four answers, in the order asked, then
 * the close. Each answer leaves from a store's callback, written at once (http_reply_buffer),
 * and evhttp then reads the next request from what it has already buffered. The keys were never
 * written, so the answers do not depend on when a write becomes readable (layer 7).
 */
START_TEST(pipelined_requests_are_answered_in_order)
{
    /* tk_raw_send adds the default header (layer 10's key) to the first request only */
    char key[600] = "";
    if (tk_default_header()[0] != '\0')
        snprintf(key, sizeof key, "%s\r\n", tk_default_header());
    char request[4096];
    snprintf(request, sizeof request,
             "GET /read/pipelined:1 HTTP/1.1\r\nHost: t\r\n\r\n"
             "GET /read/pipelined:2 HTTP/1.1\r\nHost: t\r\n%s\r\n"
             "GET /read/pipelined:3 HTTP/1.1\r\nHost: t\r\n%s\r\n"
             "GET /read/pipelined:4 HTTP/1.1\r\nHost: t\r\n%sConnection: close\r\n\r\n",
             key, key, key);
    char reply[16384];
    bool closed;
    ck_assert_msg(tk_raw_exchange(target.port, request, reply, sizeof reply, 10000, &closed) > 0,
                  "no answer");
    const char *at = reply;
    for (int i = 1; i <= 4; i++) {
        char want[32];
        snprintf(want, sizeof want, "\"pipelined:%d\"", i);
        const char *status = strstr(at, "HTTP/1.1 200");
        ck_assert_msg(status == at, "answer %d is not the next 200: %s", i, reply);
        const char *next = strstr(status + 12, "HTTP/1.1 ");
        const char *found = strstr(status, want);
        ck_assert_msg(found != NULL && (next == NULL || found < next), "answer %d is not %s's: %s",
                      i, want, reply);
        at = next != NULL ? next : status + strlen(status);
    }
    ck_assert_msg(*at == '\0', "more than four answers: %s", reply);
    ck_assert_msg(closed, "the connection stayed open after Connection: close");
}
END_TEST

START_TEST(chunked_uploads)
{
    /* Transfer-Encoding: chunked carries no length up front; within the limit it is a write like
     * any other, in whatever chunks the client sends it. */
    char *body = tk_write_body("chunked:1", "sent in chunks");
    struct tk_response res;
    tk_post_chunked(target.port, "/write", body, strlen(body), 7, &res);
    ck_assert_msg(res.status == 200, "chunked write: status %ld, body %s", res.status, res.body);
    tk_response_free(&res);
    free(body);
    read_finds("/read/chunked:1", "chunked:1", "sent in chunks");

    body = tk_write_body("chunked:tiny", "one byte a chunk");
    tk_post_chunked(target.port, "/write", body, strlen(body), 1, &res);
    ck_assert_msg(res.status == 200, "1-byte chunks: status %ld, body %s", res.status, res.body);
    tk_response_free(&res);
    free(body);
    read_finds("/read/chunked:tiny", "chunked:tiny", "one byte a chunk");

    /* Over MAX_BODY_BYTES (1 MiB) only as the chunks add up: still the contract's JSON 413. */
    size_t big = 1024 * 1024 + 1;
    body = malloc(big);
    memset(body, ' ', big);
    tk_post_chunked(target.port, "/write", body, big, 16 * 1024, &res);
    ck_assert_int_eq(res.status, 413);
    ck_assert_str_eq(res.content_type, "application/json");
    ck_assert_str_eq(member_string(res.json, "detail"), "Request body too large");
    tk_response_free(&res);
    free(body);
}
END_TEST

START_TEST(keys_in_paths)
{
    write_ok("a/b", "slash");
    read_finds("/read/a%2Fb", "a/b", "slash");
    write_ok("key with space", "space");
    read_finds("/read/key%20with%20space", "key with space", "space");
    write_ok("unicode_测试_ключ", "utf8");
    read_finds("/read/unicode_%E6%B5%8B%E8%AF%95_%D0%BA%D0%BB%D1%8E%D1%87", "unicode_测试_ключ",
               "utf8");
    write_ok("plus+sign", "plus");
    read_finds("/read/plus+sign", "plus+sign", "plus");

    char key255[256];
    memset(key255, 'x', 255);
    key255[255] = '\0';
    write_ok(key255, "longest");
    char path[300];
    snprintf(path, sizeof path, "/read/%s", key255);
    read_finds(path, key255, "longest");

    struct tk_request bad = {"GET", "/read/%zz", NULL, 0, NULL};
    expect_422(&bad, "string_unicode", "path", "key");
    struct tk_request badutf = {"GET", "/read/%FF%FE", NULL, 0, NULL};
    expect_422(&badutf, "string_unicode", "path", "key");
    struct tk_request empty = {"GET", "/read/", NULL, 0, NULL};
    expect_422(&empty, "string_too_short", "path", "key");
    char long_path[400];
    memset(key255, 'y', 255);
    snprintf(long_path, sizeof long_path, "/read/%sy", key255);
    struct tk_request too_long = {"GET", long_path, NULL, 0, NULL};
    expect_422(&too_long, "string_too_long", "path", "key");
}
END_TEST

START_TEST(large_value_round_trip)
{
    size_t len = 500 * 1024;
    char *value = malloc(len + 1);
    for (size_t i = 0; i < len; i++)
        value[i] = (char)('a' + (i * 7) % 26);
    value[len] = '\0';
    write_ok("big-value", value);
    read_finds("/read/big-value", "big-value", value);
    free(value);
}
END_TEST

START_TEST(upsert_keeps_created_moves_updated)
{
    write_ok("upsert:1", "first");
    struct tk_response a, b;
    tk_get(target.port, "/read/upsert:1", &a);
    usleep(20000);
    write_ok("upsert:1", "second");
    tk_get(target.port, "/read/upsert:1", &b);
    ck_assert_str_eq(member_string(b.json, "value"), "second");
    ck_assert_str_eq(member_string(a.json, "created_at"), member_string(b.json, "created_at"));
    ck_assert_msg(strcmp(member_string(b.json, "updated_at"), member_string(a.json, "updated_at")) >
                      0,
                  "updated_at did not move forward");
    tk_response_free(&a);
    tk_response_free(&b);
}
END_TEST

START_TEST(health_and_metrics)
{
    struct tk_response res;
    tk_get(target.port, "/health", &res);
    ck_assert_int_eq(res.status, 200);
    ck_assert_str_eq(member_string(res.json, "status"), "healthy");
    ck_assert_str_eq(member_string(res.json, "layer"), target.layer);
    ck_assert_str_eq(member_string(res.json, "database"), "healthy");
    tk_response_free(&res);

    tk_get(target.port, "/read/metrics-probe", &res);
    tk_response_free(&res);
    tk_get(target.port, "/metrics", &res);
    ck_assert_int_eq(res.status, 200);
    ck_assert(strncmp(res.content_type, "text/plain", 10) == 0);
    ck_assert(strstr(res.body, "# TYPE http_requests_total counter") != NULL);
    ck_assert(strstr(res.body, "route=\"/read/{key}\",status=\"200\"") != NULL);
    ck_assert(strstr(res.body, "metrics-probe") == NULL); /* never raw paths */
    ck_assert(strstr(res.body, "http_request_duration_seconds_bucket") != NULL);
    tk_response_free(&res);

    tk_get(target.port, "/ping", &res);
    ck_assert_int_eq(res.status, 200);
    tk_response_free(&res);
}
END_TEST

TCase *contract_tcase_without(const char *const *skip)
{
    const TTest *tests[] = {write_and_read_shapes,
                            ambiguous_framing_and_a_missing_host_are_refused,
                            an_upload_that_goes_on_after_its_413_is_cut_off,
                            slow_and_surplus_clients_are_closed,
                            a_client_that_never_reads_its_answers_is_bounded,
                            read_not_found_shape,
                            request_ids,
                            validation_errors,
                            value_length_limit,
                            not_found_method_not_allowed_too_large,
                            pipelined_requests_are_answered_in_order,
                            chunked_uploads,
                            keys_in_paths,
                            large_value_round_trip,
                            upsert_keeps_created_moves_updated,
                            health_and_metrics,
                            NULL};
    return check_tcase("contract", start_server, stop_server, 60, check_tests_without(tests, skip));
}

TCase *contract_tcase(void)
{
    return contract_tcase_without(NULL);
}
