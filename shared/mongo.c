/*
 * mongo: libmongoc on offload's worker threads, results back on the loop (see mongo.h).
 *
 * One job per operation: the loop fills it (what to run, on which collection, with which BSON),
 * a worker runs it with its own client and writes the outcome into it, and the loop calls the
 * caller back and frees it. The loop and the workers share only the job (handed over through
 * offload's queue) and the count of operations running (an atomic, for /stats).
 */
#include "mongo.h"

#include "log.h"
#include "offload.h"
#include "xalloc.h"

#include <event2/event.h>
#include <mongoc/mongoc.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct mongo {
    struct event_base *base;       /* the loop (retry timer) */
    mongoc_client_pool_t *pool;    /* thread-safe; each worker pops one client */
    struct offload *offload;       /* the workers and their bounded queue */
    char *database;                /* from the URL, or "layers" */
    long timeout_ms;               /* MONGO_TIMEOUT_MS */
    long delay_ms;                 /* test hook: each operation sleeps this long first */
    int threads;                   /* = the pool's size */
    atomic_int in_use;             /* operations running on workers now */
    struct index_task *index_task; /* start-up index creation, until it is done */
};

enum op { OP_UPSERT, OP_FIND_ONE, OP_COUNT, OP_PING, OP_COMMAND };

/* One operation, from the loop to a worker and back. */
struct mongo_job {
    struct mongo *mongo;        /* whose pool */
    enum op op;                 /* what to run */
    char *collection;           /* on which collection (NULL for OP_PING) */
    char *key;                  /* the document's key (OP_UPSERT, OP_FIND_ONE) */
    bson_t *fields;             /* OP_UPSERT: what to $set; OP_COMMAND: the command */
    bson_t *doc;                /* OP_FIND_ONE's document, set by the worker, or NULL */
    struct mongo_result result; /* set by the worker */
    char error[640];            /* the driver's message, logged on the loop */
    mongo_cb cb;                /* called once, on the loop */
    void *arg;                  /* its argument */
};

/* ---- the workers ---- */

static void *worker_init(void *arg)
{
    return mongoc_client_pool_pop(((struct mongo *)arg)->pool);
}

static void worker_cleanup(void *state, void *arg)
{
    mongoc_client_pool_push(((struct mongo *)arg)->pool, state);
}

static enum mongo_status status_of(const bson_error_t *error)
{
    switch (error->domain) {
    case MONGOC_ERROR_STREAM:
    case MONGOC_ERROR_SERVER_SELECTION:
    case MONGOC_ERROR_CLIENT:
        return MONGO_UNAVAILABLE;
    default:
        return MONGO_ERROR;
    }
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static bool run_upsert(struct mongo_job *job, mongoc_collection_t *coll, bson_error_t *error)
{
    int64_t now = now_ms();
    bson_t filter = BSON_INITIALIZER, update = BSON_INITIALIZER, set, insert;
    BSON_APPEND_UTF8(&filter, "key", job->key);
    BSON_APPEND_DOCUMENT_BEGIN(&update, "$set", &set);
    bson_concat(&set, job->fields);
    BSON_APPEND_DATE_TIME(&set, "updated_at", now);
    bson_append_document_end(&update, &set);
    BSON_APPEND_DOCUMENT_BEGIN(&update, "$setOnInsert", &insert);
    BSON_APPEND_DATE_TIME(&insert, "created_at", now);
    bson_append_document_end(&update, &insert);
    bson_t *opts = BCON_NEW("upsert", BCON_BOOL(true));
    bool ok = mongoc_collection_update_one(coll, &filter, &update, opts, NULL, error);
    if (!ok && error->code == 11000) /* lost a race of first upserts on the unique index */
        ok = mongoc_collection_update_one(coll, &filter, &update, opts, NULL, error);
    bson_destroy(opts);
    bson_destroy(&filter);
    bson_destroy(&update);
    return ok;
}

static int64_t date_member(const bson_t *doc, const char *name)
{
    bson_iter_t it;
    return bson_iter_init_find(&it, doc, name) && BSON_ITER_HOLDS_DATE_TIME(&it)
               ? bson_iter_date_time(&it)
               : 0;
}

static bool run_find_one(struct mongo_job *job, mongoc_collection_t *coll, bson_error_t *error)
{
    bson_t filter = BSON_INITIALIZER;
    BSON_APPEND_UTF8(&filter, "key", job->key);
    bson_t *opts = BCON_NEW("limit", BCON_INT64(1), "projection", "{", "_id", BCON_INT32(0), "}");
    mongoc_cursor_t *cursor = mongoc_collection_find_with_opts(coll, &filter, opts, NULL);
    const bson_t *doc;
    if (mongoc_cursor_next(cursor, &doc)) {
        job->doc = bson_copy(doc);
        job->result.created_ms = date_member(doc, "created_at");
        job->result.updated_ms = date_member(doc, "updated_at");
    }
    bool ok = !mongoc_cursor_error(cursor, error);
    mongoc_cursor_destroy(cursor);
    bson_destroy(opts);
    bson_destroy(&filter);
    return ok;
}

static void run(void *state, void *arg)
{
    mongoc_client_t *client = state;
    struct mongo_job *job = arg;
    struct mongo *m = job->mongo;
    atomic_fetch_add(&m->in_use, 1);
    if (m->delay_ms > 0)
        usleep((useconds_t)m->delay_ms * 1000);
    bson_error_t error = {0};
    bool ok = false;
    mongoc_collection_t *coll =
        job->collection ? mongoc_client_get_collection(client, m->database, job->collection)
                        : NULL;
    switch (job->op) {
    case OP_UPSERT:
        ok = run_upsert(job, coll, &error);
        break;
    case OP_FIND_ONE:
        ok = run_find_one(job, coll, &error);
        break;
    case OP_COUNT:
        job->result.count = mongoc_collection_estimated_document_count(coll, NULL, NULL, NULL,
                                                                       &error);
        ok = job->result.count >= 0;
        break;
    case OP_PING: {
        bson_t *ping = BCON_NEW("ping", BCON_INT32(1));
        ok = mongoc_client_command_simple(client, "admin", ping, NULL, NULL, &error);
        bson_destroy(ping);
        break;
    }
    case OP_COMMAND:
        ok = mongoc_client_command_simple(client, m->database, job->fields, NULL, NULL, &error);
        break;
    }
    mongoc_collection_destroy(coll);
    job->result.status = ok ? MONGO_OK : status_of(&error);
    if (!ok)
        snprintf(job->error, sizeof job->error, "%s (domain %u, code %u)", error.message,
                 error.domain, error.code);
    atomic_fetch_sub(&m->in_use, 1);
}

/* ---- on the loop ---- */

static void free_job(struct mongo_job *job)
{
    free(job->collection);
    free(job->key);
    if (job->fields)
        bson_destroy(job->fields);
    if (job->doc)
        bson_destroy(job->doc);
    free(job);
}

static void done(enum offload_status status, void *arg)
{
    struct mongo_job *job = arg;
    if (status != OFFLOAD_DONE) {
        job->result.status = MONGO_UNAVAILABLE;
        snprintf(job->error, sizeof job->error, "waited past MONGO_TIMEOUT_MS for a worker");
    }
    if (job->result.status != MONGO_OK)
        LOG_WARN("mongo: %s", job->error);
    job->result.doc = job->doc;
    job->cb(&job->result, job->arg);
    free_job(job);
}

static struct mongo_job *new_job(struct mongo *m, enum op op, const char *collection,
                                 mongo_cb cb, void *arg)
{
    struct mongo_job *job = xcalloc(1, sizeof *job);
    job->mongo = m;
    job->op = op;
    job->collection = collection ? xstrdup(collection) : NULL;
    job->cb = cb;
    job->arg = arg;
    return job;
}

static void submit(struct mongo_job *job)
{
    struct mongo *m = job->mongo;
    if (!offload_submit(m->offload, m->timeout_ms, run, done, job)) {
        job->result.status = MONGO_UNAVAILABLE;
        snprintf(job->error, sizeof job->error, "the queue is full (MONGO_QUEUE_MAX)");
        done(OFFLOAD_DONE, job);
    }
}

static char *key_copy(const char *key, size_t len)
{
    char *copy = xmalloc(len + 1);
    memcpy(copy, key, len);
    copy[len] = '\0';
    return copy;
}

void mongo_upsert(struct mongo *m, const char *collection, const char *key, size_t key_len,
                  const bson_t *fields, mongo_cb cb, void *arg)
{
    struct mongo_job *job = new_job(m, OP_UPSERT, collection, cb, arg);
    job->key = key_copy(key, key_len);
    job->fields = bson_copy(fields);
    submit(job);
}

void mongo_find_one(struct mongo *m, const char *collection, const char *key, size_t key_len,
                    mongo_cb cb, void *arg)
{
    struct mongo_job *job = new_job(m, OP_FIND_ONE, collection, cb, arg);
    job->key = key_copy(key, key_len);
    submit(job);
}

void mongo_count(struct mongo *m, const char *collection, mongo_cb cb, void *arg)
{
    submit(new_job(m, OP_COUNT, collection, cb, arg));
}

void mongo_ping(struct mongo *m, mongo_cb cb, void *arg)
{
    submit(new_job(m, OP_PING, NULL, cb, arg));
}

/* ---- the unique indexes, retried until MongoDB answers ---- */

struct index_task {
    struct mongo *mongo;           /* whose */
    char **collections;            /* still to index */
    size_t count, next;            /* how many, and the one in hand */
    struct event *retry;           /* a second after a failure */
    mongo_ready_cb ready;          /* called once, at the end */
    void *arg;                     /* its argument */
};

static void index_next(struct index_task *task);

static void free_index_task(struct index_task *task)
{
    if (task == NULL)
        return;
    for (size_t i = 0; i < task->count; i++)
        free(task->collections[i]);
    free(task->collections);
    if (task->retry)
        event_free(task->retry);
    free(task);
}

static void on_index(const struct mongo_result *result, void *arg)
{
    struct index_task *task = arg;
    if (task->mongo->index_task != task)
        return; /* cancelled by mongo_free (offload completes queued jobs there) */
    if (result->status != MONGO_OK) {
        LOG_WARN("mongo: cannot create the unique index on %s.key yet; retrying in 1 s",
                 task->collections[task->next]);
        struct timeval second = {1, 0};
        event_add(task->retry, &second);
        return;
    }
    if (++task->next < task->count) {
        index_next(task);
        return;
    }
    task->mongo->index_task = NULL;
    mongo_ready_cb ready = task->ready;
    void *ready_arg = task->arg;
    free_index_task(task);
    ready(ready_arg);
}

static void index_next(struct index_task *task)
{
    const char *coll = task->collections[task->next];
    struct mongo_job *job = new_job(task->mongo, OP_COMMAND, NULL, on_index, task);
    job->fields = BCON_NEW("createIndexes", BCON_UTF8(coll), "indexes", "[", "{", "key", "{",
                           "key", BCON_INT32(1), "}", "name", BCON_UTF8("key_unique"), "unique",
                           BCON_BOOL(true), "}", "]");
    submit(job);
}

static void index_retry(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    index_next(arg);
}

void mongo_ensure_unique_keys(struct mongo *m, const char *const *collections,
                              mongo_ready_cb ready, void *arg)
{
    struct index_task *task = xcalloc(1, sizeof *task);
    task->mongo = m;
    while (collections[task->count] != NULL)
        task->count++;
    task->collections = xcalloc(task->count, sizeof *task->collections);
    for (size_t i = 0; i < task->count; i++)
        task->collections[i] = xstrdup(collections[i]);
    task->retry = evtimer_new(m->base, index_retry, task);
    task->ready = ready;
    task->arg = arg;
    free_index_task(m->index_task);
    m->index_task = task;
    if (task->count == 0) {
        on_index(&(struct mongo_result){.status = MONGO_OK}, task);
        return;
    }
    index_next(task);
}

/* ---- life cycle ---- */

/* libmongoc's own log lines (its default handler prints even DEBUG to stderr) go through ours:
 * its warnings and errors as such, the rest only at debug level. */
static void on_driver_log(mongoc_log_level_t level, const char *domain, const char *message,
                          void *arg)
{
    (void)arg;
    if (level <= MONGOC_LOG_LEVEL_CRITICAL)
        LOG_ERROR("libmongoc %s: %s", domain, message);
    else if (level == MONGOC_LOG_LEVEL_WARNING)
        LOG_WARN("libmongoc %s: %s", domain, message);
    else if (level <= MONGOC_LOG_LEVEL_INFO)
        LOG_DEBUG("libmongoc %s: %s", domain, message);
}

struct mongo *mongo_create(struct event_base *base, const struct mongo_settings *s)
{
    mongoc_log_set_handler(on_driver_log, NULL);
    mongoc_init();
    bson_error_t error;
    mongoc_uri_t *uri = mongoc_uri_new_with_error(s->url, &error);
    if (uri == NULL) {
        LOG_ERROR("MONGODB_URL: %s", error.message);
        mongoc_cleanup();
        return NULL;
    }
    int32_t t = (int32_t)s->timeout_ms;
    mongoc_uri_set_option_as_int32(uri, MONGOC_URI_SERVERSELECTIONTIMEOUTMS, t);
    mongoc_uri_set_option_as_int32(uri, MONGOC_URI_SOCKETTIMEOUTMS, t);
    mongoc_uri_set_option_as_int32(uri, MONGOC_URI_CONNECTTIMEOUTMS, t);
    mongoc_uri_set_option_as_int32(uri, MONGOC_URI_HEARTBEATFREQUENCYMS, 1000);
    mongoc_uri_set_option_as_int32(uri, MONGOC_URI_MAXPOOLSIZE, (int32_t)s->threads);
    struct mongo *m = xcalloc(1, sizeof *m);
    m->base = base;
    const char *db = mongoc_uri_get_database(uri);
    m->database = xstrdup(db && *db ? db : "layers");
    m->timeout_ms = s->timeout_ms;
    m->delay_ms = s->delay_ms;
    m->threads = (int)s->threads;
    m->pool = mongoc_client_pool_new(uri);
    mongoc_uri_destroy(uri);
    if (m->pool == NULL) {
        LOG_ERROR("MONGODB_URL: libmongoc refused it");
        mongo_free(m);
        return NULL;
    }
    mongoc_client_pool_set_error_api(m->pool, MONGOC_ERROR_API_VERSION_2);
    struct offload_settings os = {.threads = m->threads,
                                  .queue_max = (size_t)s->queue_max,
                                  .shutdown_timeout_ms = 2 * s->timeout_ms + s->delay_ms,
                                  .thread_init = worker_init,
                                  .thread_cleanup = worker_cleanup,
                                  .arg = m};
    m->offload = offload_create(base, &os);
    if (m->offload == NULL) {
        mongo_free(m);
        return NULL;
    }
    return m;
}

void mongo_free(struct mongo *m)
{
    if (m == NULL)
        return;
    struct index_task *task = m->index_task;
    m->index_task = NULL; /* its queued job completes below and must not retry */
    offload_free(m->offload);
    free_index_task(task);
    if (m->pool)
        mongoc_client_pool_destroy(m->pool);
    free(m->database);
    free(m);
    mongoc_cleanup();
}

int mongo_in_use(const struct mongo *m)
{
    return atomic_load(&m->in_use);
}

int mongo_pool_size(const struct mongo *m)
{
    return m->threads;
}

size_t mongo_queued(struct mongo *m)
{
    return offload_queued(m->offload);
}

/* ---- JSON <-> BSON ---- */

static bool append_value(bson_t *out, const char *name, int name_len, const json_t *v, int depth,
                         char *err, size_t errlen);

static bool field_name_ok(const char *name, size_t len, char *err, size_t errlen)
{
    if (len == 0 || name[0] == '$' || memchr(name, '.', len) || strlen(name) != len) {
        snprintf(err, errlen,
                 "Field names must not be empty, start with '$', or contain '.' or NUL");
        return false;
    }
    return true;
}

static bool append_object(bson_t *out, const json_t *obj, int depth, char *err, size_t errlen)
{
    const char *name;
    size_t len;
    json_t *v;
    json_object_keylen_foreach((json_t *)obj, name, len, v)
    {
        if (!field_name_ok(name, len, err, errlen) ||
            !append_value(out, name, (int)len, v, depth, err, errlen))
            return false;
    }
    return true;
}

static bool append_value(bson_t *out, const char *name, int name_len, const json_t *v, int depth,
                         char *err, size_t errlen)
{
    switch (json_typeof(v)) {
    case JSON_STRING:
        return bson_append_utf8(out, name, name_len, json_string_value(v),
                                (int)json_string_length(v));
    case JSON_INTEGER:
        return bson_append_int64(out, name, name_len, json_integer_value(v));
    case JSON_REAL:
        return bson_append_double(out, name, name_len, json_real_value(v));
    case JSON_TRUE:
    case JSON_FALSE:
        return bson_append_bool(out, name, name_len, json_is_true(v));
    case JSON_NULL:
        return bson_append_null(out, name, name_len);
    case JSON_OBJECT:
    case JSON_ARRAY:
        break;
    }
    if (depth >= MONGO_MAX_DEPTH) {
        snprintf(err, errlen, "Nesting deeper than %d levels", MONGO_MAX_DEPTH);
        return false;
    }
    bson_t child;
    bool ok;
    if (json_is_object(v)) {
        bson_append_document_begin(out, name, name_len, &child);
        ok = append_object(&child, v, depth + 1, err, errlen);
        bson_append_document_end(out, &child);
        return ok;
    }
    bson_append_array_begin(out, name, name_len, &child);
    ok = true;
    for (size_t i = 0; ok && i < json_array_size(v); i++) {
        char index[24];
        const char *key;
        size_t len = bson_uint32_to_string((uint32_t)i, &key, index, sizeof index);
        ok = append_value(&child, key, (int)len, json_array_get(v, i), depth + 1, err, errlen);
    }
    bson_append_array_end(out, &child);
    return ok;
}

bool mongo_bson_from_json(const json_t *obj, bson_t *out, char *err, size_t errlen)
{
    if (!json_is_object(obj)) {
        snprintf(err, errlen, "Input should be a valid dictionary");
        return false;
    }
    return append_object(out, obj, 1, err, errlen);
}

static json_t *json_of(bson_iter_t *it)
{
    bson_iter_t child;
    switch (bson_iter_type(it)) {
    case BSON_TYPE_UTF8: {
        uint32_t len;
        const char *s = bson_iter_utf8(it, &len);
        return json_stringn(s, len);
    }
    case BSON_TYPE_INT32:
        return json_integer(bson_iter_int32(it));
    case BSON_TYPE_INT64:
        return json_integer(bson_iter_int64(it));
    case BSON_TYPE_DOUBLE:
        return json_real(bson_iter_double(it));
    case BSON_TYPE_BOOL:
        return json_boolean(bson_iter_bool(it));
    case BSON_TYPE_NULL:
        return json_null();
    case BSON_TYPE_DOCUMENT: {
        json_t *obj = json_object();
        if (bson_iter_recurse(it, &child))
            while (bson_iter_next(&child))
                json_object_set_new(obj, bson_iter_key(&child), json_of(&child));
        return obj;
    }
    case BSON_TYPE_ARRAY: {
        json_t *arr = json_array();
        if (bson_iter_recurse(it, &child))
            while (bson_iter_next(&child))
                json_array_append_new(arr, json_of(&child));
        return arr;
    }
    default: {
        /* A type JSON lacks: its relaxed Extended JSON, as a string. */
        bson_t wrap = BSON_INITIALIZER;
        bson_append_value(&wrap, "v", 1, bson_iter_value(it));
        char *text = bson_as_relaxed_extended_json(&wrap, NULL);
        json_t *s = json_string(text ? text : "");
        bson_free(text);
        bson_destroy(&wrap);
        return s;
    }
    }
}

json_t *mongo_json_from_bson(const bson_t *doc)
{
    json_t *obj = json_object();
    bson_iter_t it;
    if (bson_iter_init(&it, doc))
        while (bson_iter_next(&it))
            json_object_set_new(obj, bson_iter_key(&it), json_of(&it));
    return obj;
}

void mongo_format_time(int64_t ms, char *buf, size_t len)
{
    time_t secs = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    char date[24];
    strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf, len, "%s.%03d000Z", date, (int)(ms % 1000));
}
