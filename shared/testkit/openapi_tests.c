/*
 * openapi_tests: the document and the server agree (see openapi_tests.h).
 */
#include "openapi_tests.h"

#include "check_run.h"
#include "contract_tests.h"
#include "json_schema.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SMALL_BODY_LIMIT 1024 /* MAX_BODY_BYTES for these tests: 413 is cheap to provoke */

static struct tk_server server; /* the server of the running test (one per forked test) */

static void stop_server(void)
{
    tk_server_stop(&server, SIGKILL, 5000);
}

static void start_with(const char *const *more)
{
    ck_assert_msg(contract_start_server(&server, more), "server did not start");
}

/* The document, as the server serves it. */
static json_t *fetch_document(void)
{
    struct tk_response res;
    tk_get(server.port, "/openapi.json", &res);
    ck_assert_msg(res.status == 200, "GET /openapi.json: %ld", res.status);
    ck_assert_str_eq(res.content_type, "application/json");
    ck_assert_msg(res.json != NULL, "GET /openapi.json is not JSON");
    json_t *doc = json_incref(res.json);
    tk_response_free(&res);
    ck_assert_str_eq(json_string_value(json_object_get(doc, "openapi")), "3.1.0");
    ck_assert(json_object_size(json_object_get(doc, "paths")) > 0);
    return doc;
}

/* ---- what the document says ---- */

static const char *const operations[] = {"get", "post", "put", "delete", "patch", NULL};

/* The documented response of `op` for `status` (resolved), or NULL. */
static const json_t *documented_response(const json_t *doc, const json_t *op, long status)
{
    char code[8];
    snprintf(code, sizeof code, "%ld", status);
    const json_t *responses = json_object_get(op, "responses");
    const json_t *response = json_object_get(responses, code);
    return json_schema_deref(doc, response != NULL ? response : json_object_get(responses, "default"));
}

/* The media type of `content` that the reply's Content-Type is ("text/css; charset=utf-8" is
 * text/css), or NULL. */
static const json_t *documented_media(const json_t *content, const char *content_type,
                                      const char **name_out)
{
    const char *name;
    json_t *media;
    size_t len = strcspn(content_type, ";");
    json_object_foreach((json_t *)content, name, media) {
        if (strlen(name) == len && strncmp(name, content_type, len) == 0) {
            *name_out = name;
            return media;
        }
    }
    return NULL;
}

/* The reply has a documented status (`expected` when not 0), content type, headers and a body
 * that validates against the documented schema. */
static void assert_documented(const json_t *doc, const json_t *op, const char *what,
                              const struct tk_response *res, long expected)
{
    if (expected != 0)
        ck_assert_msg(res->status == expected, "%s: status %ld, the document says %ld (body %s)",
                      what, res->status, expected, res->body);
    const json_t *response = documented_response(doc, op, res->status);
    ck_assert_msg(response != NULL, "%s: status %ld is not documented (body %s)", what,
                  res->status, res->body);
    const json_t *headers = json_object_get(response, "headers");
    if (json_object_get(headers, "X-Request-ID") != NULL)
        ck_assert_msg(res->request_id[0] != '\0', "%s: no X-Request-ID", what);
    if (json_object_get(headers, "Allow") != NULL)
        ck_assert_msg(res->allow[0] != '\0', "%s: no Allow header", what);
    const json_t *content = json_object_get(response, "content");
    if (content == NULL)
        return;
    const char *media_name = NULL;
    const json_t *media = documented_media(content, res->content_type, &media_name);
    ck_assert_msg(media != NULL, "%s: Content-Type %s is not documented for %ld", what,
                  res->content_type, res->status);
    if (strcmp(media_name, "application/json") != 0)
        return;
    ck_assert_msg(res->json != NULL, "%s: the body is not JSON: %s", what, res->body);
    char err[512];
    ck_assert_msg(json_schema_validate(doc, json_object_get(media, "schema"), res->json, err,
                                       sizeof err),
                  "%s: %ld reply does not match the document: %s\nbody: %s", what, res->status,
                  err, res->body);
}

/* The status whose documented reply has an example named `name`, or 0. */
static long status_of_example(const json_t *doc, const json_t *op, const char *name)
{
    const char *code;
    json_t *response;
    json_object_foreach(json_object_get(op, "responses"), code, response) {
        const json_t *content = json_object_get(json_schema_deref(doc, response), "content");
        const char *type;
        json_t *media;
        json_object_foreach((json_t *)content, type, media) {
            if (json_object_get(json_object_get(media, "examples"), name) != NULL)
                return atol(code);
        }
    }
    return 0;
}

/* The path with its `{param}` replaced by `value`, percent-encoded as a client would. */
static void fill_path(const char *path, const char *value, char *out, size_t outlen)
{
    size_t o = 0;
    const char *open = strchr(path, '{'), *close = open ? strchr(open, '}') : NULL;
    size_t prefix = open && close ? (size_t)(open - path) : strlen(path);
    o = (size_t)snprintf(out, outlen, "%.*s", (int)prefix, path);
    if (open == NULL || close == NULL)
        return;
    for (const unsigned char *v = (const unsigned char *)value; *v != '\0' && o + 4 < outlen; v++) {
        bool plain = (*v >= 'a' && *v <= 'z') || (*v >= 'A' && *v <= 'Z') ||
                     (*v >= '0' && *v <= '9') || strchr("-._~:", *v) != NULL;
        o += (size_t)snprintf(out + o, outlen - o, plain ? "%c" : "%%%02X", *v);
    }
    snprintf(out + o, outlen - o, "%s", close + 1);
}

/* The operation's path parameter (resolved), or NULL. */
static const json_t *path_parameter(const json_t *doc, const json_t *op)
{
    size_t i;
    json_t *p;
    json_array_foreach(json_object_get(op, "parameters"), i, p) {
        const json_t *param = json_schema_deref(doc, p);
        if (json_is_string(json_object_get(param, "in")) &&
            strcmp(json_string_value(json_object_get(param, "in")), "path") == 0)
            return param;
    }
    return NULL;
}

static void upper(const char *in, char *out, size_t outlen)
{
    size_t i = 0;
    for (; in[i] != '\0' && i + 1 < outlen; i++)
        out[i] = (char)(in[i] >= 'a' && in[i] <= 'z' ? in[i] - 32 : in[i]);
    out[i] = '\0';
}

/* One request of an operation, checked against the document. */
static void call(const json_t *doc, const json_t *op, const char *method, const char *path,
                 const char *body, long expected)
{
    char verb[16], what[1200];
    upper(method, verb, sizeof verb);
    snprintf(what, sizeof what, "%s %s%s%s", verb, path, body ? " " : "", body ? body : "");
    struct tk_response res;
    tk_http(server.port, &(struct tk_request){verb, path, body, 0, NULL}, &res);
    assert_documented(doc, op, what, &res, expected);
    tk_response_free(&res);
}

/* Every example of the operation (its body's, or its path parameter's), else one plain call. */
static void drive_operation(const json_t *doc, const char *path, const char *method,
                            const json_t *op)
{
    char url[512];
    const json_t *param = path_parameter(doc, op);
    const json_t *media = json_object_get(
        json_object_get(json_schema_deref(doc, json_object_get(op, "requestBody")), "content"),
        "application/json");
    const json_t *examples = json_object_get(media != NULL ? media : param, "examples");
    if (param != NULL && media == NULL && json_object_size(examples) > 0) {
        const char *name;
        json_t *example;
        json_object_foreach((json_t *)examples, name, example) {
            fill_path(path, json_string_value(json_object_get(example, "value")), url, sizeof url);
            call(doc, op, method, url, NULL, status_of_example(doc, op, name));
        }
        return;
    }
    const json_t *fixed = json_object_get(json_object_get(param, "schema"), "enum");
    fill_path(path, param ? json_string_value(json_array_get(fixed, 0)) : "", url, sizeof url);
    if (media == NULL) {
        call(doc, op, method, url, NULL, 0);
        return;
    }
    ck_assert_msg(json_object_size(examples) > 0, "%s %s: its body has no examples", method,
                  path);
    const char *name;
    json_t *example;
    json_object_foreach((json_t *)examples, name, example) {
        char *body = json_dumps(json_object_get(example, "value"), JSON_COMPACT);
        call(doc, op, method, url, body, status_of_example(doc, op, name));
        free(body);
    }
}

/* ---- tests ---- */

static void start_small_body_server(void)
{
    static const char *const more[] = {"MAX_BODY_BYTES=1024", NULL};
    start_with(more);
}

/* Every example in the document validates against the schema next to it. */
START_TEST(examples_match_their_schemas)
{
    json_t *doc = fetch_document();
    const char *path;
    json_t *item;
    json_object_foreach(json_object_get(doc, "paths"), path, item) {
        for (const char *const *m = operations; *m != NULL; m++) {
            const char *code;
            json_t *response;
            json_object_foreach(json_object_get(json_object_get(item, *m), "responses"), code,
                                response) {
                const json_t *media = json_object_get(
                    json_object_get(json_schema_deref(doc, response), "content"),
                    "application/json");
                const json_t *schema = json_object_get(media, "schema");
                const char *name;
                json_t *example;
                char err[512];
                json_object_foreach(json_object_get(media, "examples"), name, example) {
                    ck_assert_msg(json_schema_validate(doc, schema,
                                                       json_object_get(example, "value"), err,
                                                       sizeof err),
                                  "%s %s %s example '%s': %s", *m, path, code, name, err);
                }
                const json_t *one = json_object_get(media, "example");
                if (one != NULL)
                    ck_assert_msg(json_schema_validate(doc, schema, one, err, sizeof err),
                                  "%s %s %s example: %s", *m, path, code, err);
            }
        }
    }
    json_decref(doc);
}
END_TEST

/* Each documented operation, with each documented example, answers as documented. */
START_TEST(operations_answer_as_documented)
{
    json_t *doc = fetch_document();
    const char *path;
    json_t *item;
    json_object_foreach(json_object_get(doc, "paths"), path, item) {
        for (const char *const *m = operations; *m != NULL; m++) {
            const json_t *op = json_object_get(item, *m);
            if (op != NULL)
                drive_operation(doc, path, *m, op);
        }
    }
    json_decref(doc);
}
END_TEST

/* 404, 405 (with exactly the documented methods in Allow) and 413, as documented. */
START_TEST(errors_answer_as_documented)
{
    json_t *doc = fetch_document();
    const json_t *components = json_object_get(json_object_get(doc, "components"), "responses");
    json_t *unknown = json_pack("{s:{s:O}}", "responses", "404",
                                json_object_get(components, "NotFound"));
    call(doc, unknown, "get", "/no/such/path", NULL, 404);
    json_decref(unknown);

    char big[SMALL_BODY_LIMIT * 2];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    const char *path;
    json_t *item;
    json_object_foreach(json_object_get(doc, "paths"), path, item) {
        char url[512], allow[128] = "", verb[16];
        fill_path(path, "x", url, sizeof url);
        const char *absent = NULL;
        /* Allow lists methods in the server's order: GET, HEAD, POST, PUT, DELETE, PATCH. */
        for (const char *const *m = operations; *m != NULL; m++) {
            const json_t *op = json_object_get(item, *m);
            if (op == NULL) {
                absent = absent ? absent : *m;
                continue;
            }
            upper(*m, verb, sizeof verb);
            snprintf(allow + strlen(allow), sizeof allow - strlen(allow), "%s%s",
                     allow[0] ? ", " : "", verb);
            ck_assert_msg(documented_response(doc, op, 405) != NULL,
                          "%s %s does not document its 405", verb, path);
            if (json_object_get(op, "requestBody") != NULL)
                call(doc, op, *m, url, big, 413);
        }
        ck_assert_msg(absent != NULL, "%s: every method is documented", path);
        const json_t *op = json_object_get(item, "get") ? json_object_get(item, "get")
                                                        : json_object_get(item, "post");
        upper(absent, verb, sizeof verb);
        struct tk_response res;
        tk_http(server.port, &(struct tk_request){verb, url, NULL, 0, NULL}, &res);
        char what[600];
        snprintf(what, sizeof what, "%s %s", verb, url);
        assert_documented(doc, op, what, &res, 405);
        ck_assert_msg(strcmp(res.allow, allow) == 0,
                      "%s: Allow is '%s', the document has '%s' (a method served and not "
                      "documented, or documented and not served)",
                      what, res.allow, allow);
        tk_response_free(&res);
    }
    json_decref(doc);
}
END_TEST

/* A directory with a fake Swagger UI, and a secret beside it that /docs must never serve. */
static void make_fake_assets(char *dir, size_t len)
{
    snprintf(dir, len, "/tmp/layers-docs-XXXXXX");
    ck_assert(mkdtemp(dir) != NULL);
    char path[512];
    snprintf(path, sizeof path, "%s/ui", dir);
    ck_assert_int_eq(mkdir(path, 0700), 0);
    const char *files[][2] = {{"secret.txt", "SECRET"},
                              {"ui/swagger-ui.css", "body { color: black }"},
                              {"ui/swagger-ui-bundle.js", "window.SwaggerUIBundle = 1;"},
                              {"ui/package.json", "SECRET"}};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[i][0]);
        FILE *f = fopen(path, "w");
        ck_assert(f != NULL);
        fputs(files[i][1], f);
        fclose(f);
    }
}

static void remove_fake_assets(const char *dir)
{
    const char *files[] = {"secret.txt", "ui/swagger-ui.css", "ui/swagger-ui-bundle.js",
                           "ui/package.json", "ui", ""};
    char path[512];
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        remove(path);
    }
}

/* A raw request (curl would squash "/../"); true when the answer is a 404 without SECRET. */
static bool raw_not_found(const char *request_line)
{
    char request[512], answer[8192];
    snprintf(request, sizeof request, "%s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
             request_line);
    int fd = tk_raw_send(server.port, request, strlen(request));
    ck_assert(fd >= 0);
    size_t used = 0;
    ssize_t n;
    while (used < sizeof answer - 1 && (n = read(fd, answer + used, sizeof answer - 1 - used)) > 0)
        used += (size_t)n;
    close(fd);
    answer[used] = '\0';
    return strncmp(answer, "HTTP/1.1 404", 12) == 0 && strstr(answer, "SECRET") == NULL;
}

START_TEST(docs_serve_swagger_ui_and_nothing_else)
{
    char dir[64], env[128];
    make_fake_assets(dir, sizeof dir);
    snprintf(env, sizeof env, "DOCS_DIR=%s/ui", dir);
    const char *const more[] = {env, NULL};
    start_with(more);
    struct tk_response res;
    tk_get(server.port, "/docs", &res);
    ck_assert_int_eq(res.status, 200);
    ck_assert_str_eq(res.content_type, "text/html; charset=utf-8");
    ck_assert(strstr(res.body, "url: \"/openapi.json\"") != NULL);
    ck_assert(strstr(res.body, "/docs/swagger-ui-bundle.js") != NULL);
    tk_response_free(&res);
    tk_get(server.port, "/docs/swagger-ui.css", &res);
    ck_assert_int_eq(res.status, 200);
    ck_assert_str_eq(res.content_type, "text/css; charset=utf-8");
    ck_assert_str_eq(res.body, "body { color: black }");
    tk_response_free(&res);
    tk_get(server.port, "/docs/swagger-ui-bundle.js", &res);
    ck_assert_int_eq(res.status, 200);
    ck_assert_str_eq(res.content_type, "text/javascript; charset=utf-8");
    tk_response_free(&res);

    /* Out of the directory, or a file in it that is not on the list: 404, never the file. */
    const char *escapes[] = {"/docs/..%2Fsecret.txt", "/docs/%2e%2e%2fsecret.txt",
                             "/docs/package.json", "/docs/favicon-16x16.png", "/docs/"};
    for (size_t i = 0; i < sizeof escapes / sizeof escapes[0]; i++) {
        tk_get(server.port, escapes[i], &res);
        ck_assert_msg(res.status == 404, "%s: %ld", escapes[i], res.status);
        ck_assert_msg(strstr(res.body, "SECRET") == NULL, "%s served a file", escapes[i]);
        tk_response_free(&res);
    }
    ck_assert(raw_not_found("GET /docs/../secret.txt"));
    ck_assert(raw_not_found("GET /docs/../../secret.txt"));
    ck_assert(raw_not_found("GET /docs/ui/../../secret.txt"));

    /* The metrics label is the template, whatever the name asked for. */
    ck_assert(tk_metric(server.port, "http_requests_total{method=\"GET\",route=\"/docs/{asset}\","
                                     "status=\"404\"}") >= 4);
    tk_get(server.port, "/metrics", &res);
    ck_assert(strstr(res.body, "secret") == NULL);
    tk_response_free(&res);
    remove_fake_assets(dir);
}
END_TEST

START_TEST(docs_not_installed_says_how)
{
    static const char *const more[] = {"DOCS_DIR=/nonexistent/swagger-ui-dist", NULL};
    start_with(more);
    const char *paths[] = {"/docs", "/docs/swagger-ui.css"};
    for (size_t i = 0; i < 2; i++) {
        struct tk_response res;
        tk_get(server.port, paths[i], &res);
        ck_assert_int_eq(res.status, 404);
        ck_assert_str_eq(json_string_value(json_object_get(res.json, "detail")),
                         "API docs not installed: run ./layers deps");
        tk_response_free(&res);
    }
    struct tk_response res;
    tk_get(server.port, "/openapi.json", &res); /* compiled in: there regardless */
    ck_assert_int_eq(res.status, 200);
    tk_response_free(&res);
}
END_TEST

TCase *openapi_tcase(void)
{
    return check_tcase("openapi", start_small_body_server, stop_server, 120,
                       (const TTest *const[]){examples_match_their_schemas,
                                              operations_answer_as_documented,
                                              errors_answer_as_documented, NULL});
}

TCase *api_docs_tcase(void)
{
    /* Each test starts its server itself, with its own DOCS_DIR. */
    return check_tcase("api-docs", NULL, stop_server, 60,
                       (const TTest *const[]){docs_serve_swagger_ui_and_nothing_else,
                                              docs_not_installed_says_how, NULL});
}
