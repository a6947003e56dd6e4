/*
 * write_queue: the names, scripts, SQL and encodings layer 6's API and worker share (see
 * write_queue.h).
 *
 * Every Redis step that must not be torn is one Lua script, so it is atomic and costs one
 * round trip: accepting a write (the backpressure check, the append, the pending value and the
 * counter) and finishing a batch (dead letters, acknowledgements, deletions, counters).
 */
#include "write_queue.h"

#include "log.h"
#include "record.h"
#include "redis.h"
#include "xalloc.h"

#include <event2/buffer.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/*
 * Accepting writes: the writes of one loop turn of the API (appender.c), in one call, appended
 * in the order given. Each is refused (0 in its place in the reply) while the stream holds
 * max_length entries not yet committed: the workers are not keeping up, and an unbounded stream
 * would only move the failure to Redis's memory. The stream is counted as it grows, so the
 * bound is exact per write, as with one call per write. The age bound is not checked here:
 * reading the oldest entry and the clock on every write cost a third of the script (README,
 * "Where the time goes"); the API checks it against its last reading of the queue (wq_too_old).
 * The pending value is written as JSON with a fixed member order, so that its id can be
 * compared as a prefix (FINISH_SCRIPT) and its created time carried over to the next write of
 * the key (also a write earlier in the same call, through `created`): until the row exists,
 * every read reports the created_at the row will get. The accepted writes' old pending values
 * are read with one HMGET and their new ones written with one HSET (a repeated key's last value
 * wins, as it would with one HSET each), and counted with one HINCRBY: a command called from a
 * script costs beyond its own work (its arguments copied in, its reply encoded and decoded back
 * into Lua), so three calls a write became one, XADD (README, "Where the time goes").
 */
const char WQ_WRITE_SCRIPT[] =
    "local len, max = redis.call('XLEN', KEYS[1]), tonumber(ARGV[1]) "
    "local n = (#ARGV - 1) / 2 "
    "local take = math.max(0, math.min(n, max - len)) "
    "local ids = {} "
    "if take > 0 then "
    "  local keys, fields, created = {}, {}, {} "
    "  for j = 1, take do keys[j] = ARGV[2 * j] end "
    "  local old = redis.call('HMGET', KEYS[2], unpack(keys)) "
    "  for j = 1, take do "
    "    local key, value = keys[j], ARGV[2 * j + 1] "
    "    local c = created[key] "
    "    if c == nil then "
    "      c = old[j] and string.match(old[j], '^{\"id\":\"[^\"]*\",\"created\":\"(%d+)\"') "
    "    end "
    "    local id "
    "    if c then "
    "      id = redis.call('XADD', KEYS[1], '*', 'key', key, 'value', value, 'created', c) "
    "    else "
    "      id = redis.call('XADD', KEYS[1], '*', 'key', key, 'value', value) "
    "      c = string.match(id, '^(%d+)') "
    "    end "
    "    created[key] = c "
    "    fields[2 * j - 1] = key "
    "    fields[2 * j] = '{\"id\":\"' .. id .. '\",\"created\":\"' .. c .. '\",\"value\":' "
    "      .. cjson.encode(value) .. '}' "
    "    ids[j] = id "
    "  end "
    "  redis.call('HSET', KEYS[2], unpack(fields)) "
    "  redis.call('HINCRBY', KEYS[3], 'writes_queued', take) "
    "end "
    "for j = take + 1, n do ids[j] = 0 end "
    "return ids";

/*
 * Finishing a batch, after its COMMIT. Dead letters are acknowledged one by one and filed only
 * if this call acknowledged them; the committed ids are acknowledged with one XACK per 1,000
 * (Lua's unpack has a bounded stack), whose count is what this call acknowledged itself: a
 * retry after a lost reply, or a batch another worker claimed and finished first, counts
 * nothing twice and files no dead letter twice.
 * Removing the acknowledged entries keeps XLEN equal to the entries not yet committed. When no
 * entry up to the batch's newest is still pending (the usual case: batches finish in stream
 * order), every entry up to it has been delivered (XREADGROUP delivers in id order) and
 * acknowledged, so one XTRIM MINID past it removes them all, whole stream nodes at a time. Only
 * when this call acknowledged every id of the batch itself: a retried call, or a batch another
 * worker finished first, or a group created anew after the stream was deleted, is not sure of
 * that. Otherwise (an older entry pending with another worker) the batch's ids are deleted
 * (XDEL, several times the cost per entry, measured: README). The batch's newest id comes
 * from the worker, which has parsed every id of its batch already (ARGV[6], "" for none):
 * finding it here cost a pattern match and a table a write.
 * A pending value is removed only while it is still the one this batch committed (HMGET, then
 * one HDEL): a newer write of the key keeps its own. The batch's commit delays (the worker's
 * histogram) are added with the counters, under the rule above; the reply carries Redis's
 * clock, which the worker dates its next commits by.
 */
const char WQ_FINISH_SCRIPT[] =
    "local group, npairs, ndead = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]) "
    "local nbuckets, maxdelay = tonumber(ARGV[4]), tonumber(ARGV[5]) "
    "local first_pair = 7 + 2 * nbuckets "
    "local i = first_pair + 2 * npairs "
    "local dead, done = 0, 0 "
    "local function parse(id) "
    "  local ms, seq = string.match(id, '^(%d+)-(%d+)$') "
    "  if not ms or #ms > 15 or #seq > 15 then return nil end "
    "  return {tonumber(ms), tonumber(seq)} "
    "end "
    "local top = parse(ARGV[6]) "
    "for d = 1, ndead do "
    "  if redis.call('XACK', KEYS[1], group, ARGV[i]) == 1 then "
    "    redis.call('XADD', KEYS[2], '*', 'id', ARGV[i], 'key', ARGV[i + 1], 'value', ARGV[i + 2], "
    "               'error', ARGV[i + 3]) "
    "    dead = dead + 1 "
    "  end "
    "  redis.call('XDEL', KEYS[1], ARGV[i]) "
    "  i = i + 4 "
    "end "
    "for c = i, #ARGV, 1000 do "
    "  local last = math.min(c + 999, #ARGV) "
    "  done = done + redis.call('XACK', KEYS[1], group, unpack(ARGV, c, last)) "
    "end "
    "if i <= #ARGV then "
    "  local p = redis.call('XPENDING', KEYS[1], group) "
    "  local oldest = p[1] > 0 and parse(p[2]) or nil "
    "  if done == #ARGV - i + 1 and top and (p[1] == 0 or (oldest and "
    "      (oldest[1] > top[1] or "
    "      oldest[1] == top[1] and oldest[2] > top[2]))) then "
    "    redis.call('XTRIM', KEYS[1], 'MINID', string.format('%d-%d', top[1], top[2] + 1)) "
    "  else "
    "    for c = i, #ARGV, 1000 do "
    "      redis.call('XDEL', KEYS[1], unpack(ARGV, c, math.min(c + 999, #ARGV))) "
    "    end "
    "  end "
    "end "
    "for c = first_pair, first_pair + 2 * npairs - 1, 2000 do "
    "  local fields = {} "
    "  local last = math.min(c + 1999, first_pair + 2 * npairs - 1) "
    "  for p = c, last, 2 do fields[#fields + 1] = ARGV[p] end "
    "  local cur = redis.call('HMGET', KEYS[3], unpack(fields)) "
    "  local gone = {} "
    "  for k = 1, #fields do "
    "    local mine = '{\"id\":\"' .. ARGV[c + 2 * k - 1] .. '\"' "
    "    if cur[k] and string.sub(cur[k], 1, #mine) == mine then gone[#gone + 1] = fields[k] end "
    "  end "
    "  if #gone > 0 then redis.call('HDEL', KEYS[3], unpack(gone)) end "
    "end "
    "if done + dead > 0 then "
    "  redis.call('HINCRBY', KEYS[4], 'writes_processed', done) "
    "  redis.call('HINCRBY', KEYS[4], 'batches', 1) "
    "  for b = 7, 6 + 2 * nbuckets, 2 do "
    "    redis.call('HINCRBY', KEYS[5], ARGV[b], ARGV[b + 1]) "
    "  end "
    "  if nbuckets > 0 and maxdelay > tonumber(redis.call('HGET', KEYS[5], 'max') or -1) then "
    "    redis.call('HSET', KEYS[5], 'max', ARGV[5]) "
    "  end "
    "end "
    "local t = redis.call('TIME') "
    "return {done, tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)}";

/*
 * A worker's heartbeat, and the clean-up of the consumers of workers that are gone: a consumer
 * whose heartbeat is older than ARGV[2] ms and that holds no pending entry (its entries were
 * claimed, or it had none) is deleted from the group (XGROUP DELCONSUMER) and from the
 * heartbeats. One holding entries is left until they are claimed: deleting it would drop them
 * from the pending list, and they would never be committed. A worker that was only stalled
 * that long comes back as a new consumer on its next read (XREADGROUP creates it).
 */
const char WQ_HEARTBEAT_SCRIPT[] =
    "local t = redis.call('TIME') "
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) "
    "redis.call('HSET', KEYS[1], ARGV[1], now) "
    "local seen = redis.call('HGETALL', KEYS[1]) "
    "for i = 1, #seen, 2 do "
    "  if now - tonumber(seen[i + 1]) > tonumber(ARGV[2]) then "
    "    local p = redis.pcall('XPENDING', KEYS[2], ARGV[3], '-', '+', 1, seen[i]) "
    "    if type(p) == 'table' and not p.err and #p == 0 then "
    "      redis.call('XGROUP', 'DELCONSUMER', KEYS[2], ARGV[3], seen[i]) "
    "      redis.call('HDEL', KEYS[1], seen[i]) "
    "    end "
    "  end "
    "end "
    "return 1";

const char WQ_STATS_SCRIPT[] =
    "local t = redis.call('TIME') "
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) "
    "local s = redis.call('HMGET', KEYS[2], 'writes_queued', 'writes_processed', 'batches') "
    "local pending = 0 "
    "local p = redis.pcall('XPENDING', KEYS[1], ARGV[1]) "
    "if type(p) == 'table' and p[1] then pending = p[1] end "
    "local age = -1 "
    "local first = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1) "
    "if first[1] then age = math.max(0, now - tonumber(string.match(first[1][1], '^(%d+)'))) end "
    "local workers = 0 "
    "local seen = redis.call('HGETALL', KEYS[4]) "
    "for i = 2, #seen, 2 do "
    "  if now - tonumber(seen[i]) < 5000 then workers = workers + 1 end "
    "end "
    "return {redis.call('XLEN', KEYS[1]), tonumber(s[1] or 0), tonumber(s[2] or 0), "
    "        tonumber(s[3] or 0), pending, redis.call('XLEN', KEYS[3]), age, workers, "
    "        redis.call('HGETALL', KEYS[5])}";

/* 327579063634: the schema lock every layer takes (records.c). */
const char WQ_SQL_SCHEMA[] =
    "BEGIN;"
    "SELECT pg_advisory_xact_lock(327579063634);"
    "ALTER TABLE records ADD COLUMN IF NOT EXISTS version bigint NOT NULL DEFAULT 0;"
    "COMMIT;";

const char WQ_SQL_UPSERT[] =
    "INSERT INTO records (key, value, version, created_at, updated_at) "
    "SELECT k, v, ver, timestamptz 'epoch' + c * interval '1 millisecond', "
    "       timestamptz 'epoch' + (ver / 1000000) * interval '1 millisecond' "
    "FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[]) AS t(k, v, ver, c) "
    "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, version = EXCLUDED.version, "
    "updated_at = EXCLUDED.updated_at WHERE records.version < EXCLUDED.version";

bool wq_parse_id(const char *text, size_t len, struct wq_id *out)
{
    long long part[2] = {0, 0};
    int n = 0;
    size_t digits = 0;
    for (size_t i = 0; i < len; i++) {
        if (text[i] == '-' && n == 0 && digits > 0) {
            n = 1;
            digits = 0;
        } else if (text[i] >= '0' && text[i] <= '9' && digits < 15) {
            part[n] = part[n] * 10 + (text[i] - '0');
            digits++;
        } else {
            return false;
        }
    }
    if (n != 1 || digits == 0 || part[1] >= 1000000)
        return false;
    out->ms = part[0];
    out->seq = part[1];
    return true;
}

long long wq_version(struct wq_id id)
{
    return id.ms * 1000000 + id.seq;
}

void wq_format_ms(long long ms, char *out, size_t outlen)
{
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&s, &tm);
    snprintf(out, outlen, "%04d-%02d-%02dT%02d:%02d:%02d.%03d000Z", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ms % 1000));
}

static void array_reserve(struct wq_array *a, size_t more)
{
    if (a->len + more + 2 <= a->cap)
        return;
    while (a->len + more + 2 > a->cap)
        a->cap = a->cap ? a->cap * 2 : 256;
    a->data = xrealloc(a->data, a->cap);
}

void wq_array_start(struct wq_array *a)
{
    *a = (struct wq_array){0};
    array_reserve(a, 1);
    a->data[a->len++] = '{';
    a->data[a->len] = '\0';
}

static void array_separate(struct wq_array *a)
{
    if (a->count++ > 0)
        a->data[a->len++] = ',';
}

void wq_array_add_text(struct wq_array *a, const char *text, size_t len)
{
    array_reserve(a, 2 * len + 3); /* every byte escaped, quotes, comma */
    array_separate(a);
    a->data[a->len++] = '"';
    for (size_t i = 0; i < len; i++) {
        if (text[i] == '"' || text[i] == '\\')
            a->data[a->len++] = '\\';
        a->data[a->len++] = text[i];
    }
    a->data[a->len++] = '"';
    a->data[a->len] = '\0';
}

void wq_array_add_int(struct wq_array *a, long long n)
{
    array_reserve(a, 24);
    array_separate(a);
    a->len += (size_t)snprintf(a->data + a->len, 22, "%lld", n);
}

const char *wq_array_finish(struct wq_array *a)
{
    array_reserve(a, 1);
    a->data[a->len++] = '}';
    a->data[a->len] = '\0';
    return a->data;
}

void wq_array_cleanup(struct wq_array *a)
{
    free(a->data);
    *a = (struct wq_array){0};
}

/* ---- the commit delay's histogram ---- */

int wq_delay_bucket(long long ms)
{
    if (ms < WQ_DELAY_EXACT)
        return ms < 0 ? 0 : (int)ms;
    int power = 63 - __builtin_clzll((unsigned long long)ms); /* 2^power <= ms */
    int bucket =
        WQ_DELAY_EXACT + (power - 4) * WQ_DELAY_SUB + (int)(ms >> (power - 3)) - WQ_DELAY_SUB;
    return bucket < WQ_DELAY_BUCKETS ? bucket : WQ_DELAY_BUCKETS - 1;
}

long long wq_delay_upper(int bucket)
{
    if (bucket < WQ_DELAY_EXACT)
        return bucket;
    int power = 4 + (bucket - WQ_DELAY_EXACT) / WQ_DELAY_SUB;
    long long sub = (bucket - WQ_DELAY_EXACT) % WQ_DELAY_SUB;
    return ((WQ_DELAY_SUB + sub + 1) << (power - 3)) - 1;
}

void wq_delay_add(struct wq_delay *h, long long ms, long long n)
{
    if (n <= 0)
        return;
    h->counts[wq_delay_bucket(ms)] += n;
    h->count += n;
    if (ms > h->max_ms)
        h->max_ms = ms;
}

long long wq_delay_percentile(const struct wq_delay *h, double p)
{
    if (h->count <= 0)
        return -1;
    long long rank = (long long)ceil(p * (double)h->count), seen = 0; /* the rank-th smallest */
    if (rank < 1)
        rank = 1;
    for (int b = 0; b < WQ_DELAY_BUCKETS; b++) {
        seen += h->counts[b];
        if (seen >= rank) {
            long long upper = wq_delay_upper(b);
            return upper < h->max_ms ? upper : h->max_ms;
        }
    }
    return h->max_ms;
}

void wq_delay_parse(const redisReply *reply, struct wq_delay *h)
{
    memset(h, 0, sizeof *h);
    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY)
        return;
    long long max_ms = -1;
    for (size_t i = 0; i + 1 < reply->elements; i += 2) {
        const redisReply *f = reply->element[i], *v = reply->element[i + 1];
        if (f->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING)
            continue;
        char *end;
        long long field = strtoll(f->str, &end, 10), n = strtoll(v->str, NULL, 10);
        if (strcmp(f->str, "max") == 0)
            max_ms = n;
        else if (end != f->str && *end == '\0' && field >= 0 &&
                 wq_delay_upper(wq_delay_bucket(field)) == field)
            wq_delay_add(h, field, n); /* a bucket's upper bound counts in that bucket */
    }
    if (h->count > 0 && max_ms >= 0)
        h->max_ms = max_ms; /* exact; the buckets alone would say only its bucket's bound */
}

/* ---- the API's calls on the queue ---- */

void wq_command(struct redis *redis, redis_reply_cb cb, void *arg, int argc, const char **argv)
{
    size_t lens[16];
    for (int i = 0; i < argc && i < 16; i++)
        lens[i] = strlen(argv[i]);
    redis_command(redis, cb, arg, argc < 16 ? argc : 16, argv, lens);
}

/* ---- scripts by their SHA1 ---- */

struct wq_script {
    struct redis *redis; /* where it runs */
    const char *body;    /* the Lua text (static) */
    size_t body_len;     /* its length */
    char sha[41];        /* its SHA1 as Redis reported it ("" until known) */
    bool loading;        /* a SCRIPT LOAD is in flight */
};

struct wq_script *wq_script_create(struct redis *redis, const char *body)
{
    struct wq_script *s = xcalloc(1, sizeof *s);
    s->redis = redis;
    s->body = body;
    s->body_len = strlen(body);
    return s;
}

void wq_script_free(struct wq_script *s)
{
    free(s);
}

static void on_script_loaded(redisReply *reply, void *arg)
{
    struct wq_script *s = arg;
    s->loading = false;
    if (reply != NULL && reply->type == REDIS_REPLY_STRING && reply->len == 40)
        memcpy(s->sha, reply->str, 41);
}

/* One run in flight: enough to send it again as EVAL if Redis no longer knows the SHA1. */
struct script_call {
    struct wq_script *script; /* what runs */
    redis_reply_cb cb;        /* the caller's */
    void *arg;                /* its argument */
    int argc;                 /* arguments after the script: numkeys, keys, args */
    const char **argv;        /* [0], [1]: EVAL/EVALSHA and the script; copies of the caller's */
    size_t *lens;             /* their lengths */
    char *copies;             /* the caller's arguments, one after the other */
};

static void on_script_run(redisReply *reply, void *arg)
{
    struct script_call *call = arg;
    if (reply != NULL && reply->type == REDIS_REPLY_ERROR &&
        strncmp(reply->str, "NOSCRIPT", 8) == 0) { /* Redis restarted, or SCRIPT FLUSH */
        call->script->sha[0] = '\0';
        call->argv[0] = "EVAL", call->lens[0] = 4;
        call->argv[1] = call->script->body, call->lens[1] = call->script->body_len;
        redis_command(call->script->redis, on_script_run, call, call->argc + 2, call->argv,
                      call->lens);
        return;
    }
    call->cb(reply, call->arg);
    free(call->argv);
    free(call->lens);
    free(call->copies);
    free(call);
}

/*
 * EVALSHA when the SHA1 is known (Redis then neither receives nor hashes the text), else EVAL,
 * and a SCRIPT LOAD to learn the SHA1 for the next calls. A NOSCRIPT answer (Redis restarted,
 * its script cache empty) is retried once as EVAL, which caches the script again.
 */
void wq_script_run(struct wq_script *s, redis_reply_cb cb, void *arg, int argc, const char **argv,
                   const size_t *lens)
{
    struct script_call *call = xmalloc(sizeof *call);
    *call = (struct script_call){s,
                                 cb,
                                 arg,
                                 argc,
                                 xcalloc((size_t)argc + 2, sizeof(char *)),
                                 xcalloc((size_t)argc + 2, sizeof(size_t)),
                                 NULL};
    bool known = s->sha[0] != '\0';
    call->argv[0] = known ? "EVALSHA" : "EVAL", call->lens[0] = known ? 7 : 4;
    call->argv[1] = known ? s->sha : s->body, call->lens[1] = known ? 40 : s->body_len;
    size_t total = 0;
    for (int i = 0; i < argc; i++)
        total += lens[i];
    call->copies = xmalloc(total ? total : 1);
    for (size_t i = 0, at = 0; i < (size_t)argc; at += lens[i++]) {
        memcpy(call->copies + at, argv[i], lens[i]);
        call->argv[i + 2] = call->copies + at, call->lens[i + 2] = lens[i];
    }
    if (!known && !s->loading) {
        s->loading = true;
        const char *load[] = {"SCRIPT", "LOAD", s->body};
        const size_t load_lens[] = {6, 4, s->body_len};
        redis_command(s->redis, on_script_loaded, s, 3, load, load_lens);
    }
    redis_command(s->redis, on_script_run, call, argc + 2, call->argv, call->lens);
}

bool wq_too_old(const struct wq_stats *reading, const struct wq_limits *limits)
{
    return reading->available && reading->oldest_age_ms > limits->max_age_ms;
}

enum wq_append_result wq_append_result(const redisReply *reply)
{
    if (reply == NULL)
        return WQ_APPEND_UNAVAILABLE;
    if (reply->type != REDIS_REPLY_ERROR)
        return WQ_APPEND_OK;
    if (strncmp(reply->str, WQ_FULL, strlen(WQ_FULL)) == 0)
        return WQ_APPEND_FULL;
    LOG_WARN("the queue refused a write: %s", reply->str); /* e.g. OOM: Redis is full */
    return WQ_APPEND_UNAVAILABLE;
}

enum wq_append_result wq_append_result_of(const redisReply *reply, size_t i, size_t n,
                                          const char **id)
{
    *id = NULL;
    if (reply == NULL || reply->type == REDIS_REPLY_ERROR)
        return wq_append_result(reply); /* the whole call failed: every write with it */
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != n) {
        LOG_WARN("the write script answered %zu ids for %zu writes", reply->elements, n);
        return WQ_APPEND_UNAVAILABLE; /* unexpected: acknowledge nothing */
    }
    const redisReply *e = reply->element[i];
    if (e->type == REDIS_REPLY_STRING) {
        *id = e->str;
        return WQ_APPEND_OK;
    }
    return e->type == REDIS_REPLY_INTEGER && e->integer == 0 ? WQ_APPEND_FULL
                                                             : WQ_APPEND_UNAVAILABLE;
}

void wq_lookup(struct redis *redis, const char *key, size_t key_len, redis_reply_cb cb, void *arg)
{
    const char *argv[] = {"HGET", WQ_PENDING, key};
    const size_t lens[] = {4, strlen(WQ_PENDING), key_len};
    redis_command(redis, cb, arg, 3, argv, lens);
}

struct record *wq_queued_record(const redisReply *reply, const char *key, size_t key_len)
{
    if (reply == NULL || reply->type != REDIS_REPLY_STRING)
        return NULL; /* nil: nothing queued */
    json_t *pending = json_loadb(reply->str, reply->len, 0, NULL);
    const char *id_text = json_string_value(json_object_get(pending, "id"));
    const char *created = json_string_value(json_object_get(pending, "created"));
    json_t *value = json_object_get(pending, "value");
    struct wq_id id;
    struct record *rec = NULL;
    if (id_text != NULL && json_is_string(value) && wq_parse_id(id_text, strlen(id_text), &id)) {
        char created_at[32], updated_at[32];
        wq_format_ms(created ? atoll(created) : id.ms, created_at, sizeof created_at);
        wq_format_ms(id.ms, updated_at, sizeof updated_at);
        rec = record_create(key, key_len, json_string_value(value), json_string_length(value),
                            created_at, updated_at);
    } else {
        LOG_WARN("ignoring a malformed pending value (%zu bytes)", reply->len);
    }
    json_decref(pending);
    return rec;
}

void wq_read_stats(struct redis *redis, redis_reply_cb cb, void *arg)
{
    const char *argv[] = {"EVAL",  WQ_STATS_SCRIPT, "5",      WQ_STREAM, WQ_STATS,
                          WQ_DEAD, WQ_WORKERS,      WQ_DELAY, WQ_GROUP};
    wq_command(redis, cb, arg, 9, argv);
}

void wq_parse_stats(const redisReply *reply, struct wq_stats *out)
{
    *out = (struct wq_stats){0};
    out->delay_p50_ms = out->delay_p99_ms = out->delay_max_ms = -1;
    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements != 9)
        return;
    long long *fields[] = {&out->length,  &out->queued, &out->processed,     &out->batches,
                           &out->pending, &out->dead,   &out->oldest_age_ms, &out->workers};
    for (size_t i = 0; i < 8; i++) {
        if (reply->element[i]->type != REDIS_REPLY_INTEGER)
            return;
        *fields[i] = reply->element[i]->integer;
    }
    struct wq_delay *h = xmalloc(sizeof *h); /* 2.4 kB: not on a callback's stack */
    wq_delay_parse(reply->element[8], h);
    out->delays = h->count;
    out->delay_p50_ms = wq_delay_percentile(h, 0.50);
    out->delay_p99_ms = wq_delay_percentile(h, 0.99);
    out->delay_max_ms = h->count > 0 ? h->max_ms : -1;
    free(h);
    out->available = true;
}

bool wq_accepting(const struct wq_stats *s, const struct wq_limits *limits)
{
    return s->available && s->length < limits->max_length && s->oldest_age_ms <= limits->max_age_ms;
}

static json_t *count_or_null(bool available, long long n)
{
    return available ? json_integer(n) : json_null();
}

json_t *wq_stats_json(const struct wq_stats *s, const struct wq_limits *limits)
{
    bool ok = s->available;
    double mean =
        s->batches ? round(100.0 * (double)s->processed / (double)s->batches) / 100.0 : 0.0;
    json_t *o = json_object();
    json_object_set_new(o, "queue_available", json_boolean(ok));
    json_object_set_new(o, "queue_length", count_or_null(ok, s->length));
    json_object_set_new(o, "writes_queued", count_or_null(ok, s->queued));
    json_object_set_new(o, "writes_processed", count_or_null(ok, s->processed));
    json_object_set_new(o, "pending", count_or_null(ok, s->pending));
    json_object_set_new(o, "dead_letters", count_or_null(ok, s->dead));
    json_object_set_new(o, "oldest_pending_age_ms",
                        count_or_null(ok, s->oldest_age_ms < 0 ? 0 : s->oldest_age_ms));
    json_object_set_new(o, "batches", count_or_null(ok, s->batches));
    json_object_set_new(o, "mean_batch_size", ok ? json_real(mean) : json_null());
    json_object_set_new(o, "workers", count_or_null(ok, s->workers));
    json_t *delay = json_null();
    if (ok) {
        bool any = s->delays > 0;
        delay = json_object();
        json_object_set_new(delay, "p50", count_or_null(any, s->delay_p50_ms));
        json_object_set_new(delay, "p99", count_or_null(any, s->delay_p99_ms));
        json_object_set_new(delay, "max", count_or_null(any, s->delay_max_ms));
        json_object_set_new(delay, "count", json_integer(s->delays));
    }
    json_object_set_new(o, "commit_delay_ms", delay);
    json_object_set_new(o, "queue_max_length", json_integer(limits->max_length));
    json_object_set_new(o, "queue_max_age_ms", json_integer(limits->max_age_ms));
    return o;
}

void wq_render_gauges(struct evbuffer *out, void *arg)
{
    const struct wq_stats *s = arg;
    if (!s->available)
        return; /* no reading: no numbers, rather than stale or invented ones */
    evbuffer_add_printf(out,
                        "# HELP queue_length Writes acknowledged and not yet committed.\n"
                        "# TYPE queue_length gauge\nqueue_length %lld\n"
                        "# HELP queue_pending Entries delivered to a worker, not yet "
                        "acknowledged.\n"
                        "# TYPE queue_pending gauge\nqueue_pending %lld\n"
                        "# HELP queue_dead_letters Entries in the dead-letter stream.\n"
                        "# TYPE queue_dead_letters gauge\nqueue_dead_letters %lld\n",
                        s->length, s->pending, s->dead);
}
