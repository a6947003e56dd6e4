/*
 * Layer 7: the read counts' flush, from Redis to the read model, once per generation.
 *
 * The API counts each read in the Redis hash l7:reads (HINCRBY: no row lock per read). A flush
 * renames the hash to l7:reads:flushing as generation g (FLUSH_SCRIPT: unless an unfinished
 * flush is still there, which is then flushed again), adds its counts to records.read_count in
 * one statement that also moves read_flush.generation to g (FLUSH_SQL: a generation is added
 * once, so a flush retried after a crash between the commit and the DEL adds nothing), and then
 * deletes the flushed hash. The API reads read_flush.generation to know which counts are stored.
 */
#include "read_counts.h"

#include "cqrs.h"
#include "xalloc.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Moves l7:reads aside as the next generation (unless a flush is unfinished), returns
 * {generation, [key, count, ...]}. ARGV[1]: the generation the database has stored, a floor
 * for Redis's counter (a Redis that lost its data must not reuse a stored generation). */
static const char FLUSH_SCRIPT[] =
    "local g = tonumber(redis.call('GET', KEYS[3]) or '0') "
    "local floor = tonumber(ARGV[1]) "
    "if g < floor then g = floor redis.call('SET', KEYS[3], g) end "
    "if redis.call('EXISTS', KEYS[2]) == 0 then "
    "  if redis.call('EXISTS', KEYS[1]) == 0 then return {g, {}} end "
    "  g = redis.call('INCR', KEYS[3]) "
    "  redis.call('RENAME', KEYS[1], KEYS[2]) "
    "end "
    "return {g, redis.call('HGETALL', KEYS[2])}";

/* $1 generation, $2 [{key, n}]: added once per generation. */
static const char FLUSH_SQL[] =
    "WITH g AS (UPDATE read_flush SET generation = $1::bigint WHERE generation < $1::bigint "
    " RETURNING 1) "
    "UPDATE records r SET read_count = r.read_count + c.n "
    "FROM json_to_recordset($2::json) AS c(key text, n bigint), g WHERE r.key = c.key";

struct read_counts {
    struct redis *redis;  /* FLUSH_SCRIPT, the DEL after the commit */
    struct pool *pool;    /* the read database */
    long long generation; /* read_flush.generation as last known (-1: unknown) */
    bool flushing;        /* a flush is under way */
};

/* One flush's statement parameters, alive until its reply. */
struct flush_call {
    struct read_counts *counts; /* whose */
    long long generation;       /* what it flushes */
    char generation_text[24];   /* the same, as the statement's $1 */
    char *json;                 /* [{key, n}], the statement's $2 */
};

static void on_generation(PGresult *res, enum pg_status status, void *arg)
{
    struct read_counts *counts = arg;
    if (status == PG_OK && PQntuples(res) == 1)
        counts->generation = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
}

struct read_counts *read_counts_create(struct redis *redis, struct pool *read_pool)
{
    struct read_counts *counts = xcalloc(1, sizeof *counts);
    counts->redis = redis;
    counts->pool = read_pool;
    counts->generation = -1;
    struct pg_call gen = {{"SELECT generation FROM read_flush", 0, {NULL}}, on_generation, counts};
    pool_query(read_pool, &gen);
    return counts;
}

static void on_flush_deleted(redisReply *reply, void *arg)
{
    struct read_counts *counts = arg;
    (void)reply; /* left in place, it is flushed again and refused by its generation */
    counts->flushing = false;
}

static void on_flushed(PGresult *res, enum pg_status status, void *arg)
{
    struct flush_call *call = arg;
    struct read_counts *counts = call->counts;
    (void)res;
    if (status == PG_OK) {
        counts->generation = call->generation;
        const char *argv[] = {"DEL", CQRS_READS_FLUSHING};
        size_t lens[] = {3, strlen(CQRS_READS_FLUSHING)};
        redis_command(counts->redis, on_flush_deleted, counts, 2, argv, lens);
    } else {
        counts->flushing = false; /* next second */
    }
    free(call->json);
    free(call);
}

static void on_flush_taken(redisReply *reply, void *arg)
{
    struct read_counts *counts = arg;
    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
        reply->element[1]->type != REDIS_REPLY_ARRAY || reply->element[1]->elements == 0) {
        counts->flushing = false;
        return;
    }
    const redisReply *pairs = reply->element[1];
    json_t *list = json_array();
    for (size_t i = 0; i + 1 < pairs->elements; i += 2) {
        json_t *row =
            json_pack("{s:s%, s:I}", "key", pairs->element[i]->str, pairs->element[i]->len, "n",
                      (json_int_t)strtoll(pairs->element[i + 1]->str, NULL, 10));
        if (row != NULL)
            json_array_append_new(list, row);
    }
    struct flush_call *call = xcalloc(1, sizeof *call);
    call->counts = counts;
    call->generation = reply->element[0]->integer;
    snprintf(call->generation_text, sizeof call->generation_text, "%lld", call->generation);
    call->json = json_dumps(list, JSON_COMPACT);
    json_decref(list);
    struct pg_call flush = {{FLUSH_SQL, 2, {call->generation_text, call->json}}, on_flushed, call};
    pool_query(counts->pool, &flush);
}

void read_counts_flush(struct read_counts *counts)
{
    if (counts->flushing || counts->generation < 0)
        return;
    counts->flushing = true;
    char floor[24];
    snprintf(floor, sizeof floor, "%lld", counts->generation);
    const char *argv[] = {"EVAL",         FLUSH_SCRIPT, "3", CQRS_READS, CQRS_READS_FLUSHING,
                          CQRS_READS_GEN, floor};
    size_t lens[7];
    for (int i = 0; i < 7; i++)
        lens[i] = strlen(argv[i]);
    redis_command(counts->redis, on_flush_taken, counts, 7, argv, lens);
}

void read_counts_free(struct read_counts *counts)
{
    free(counts);
}
