/*
 * shard_set: N databases, a pool each, a shard map, and fan-out (see shard_set.h).
 */
#include "shard_set.h"

#include "log.h"
#include "metrics.h"
#include "pool.h"
#include "schema.h"
#include "shard_map.h"
#include "xalloc.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct fanout;

/* One database: a shard of the current layout, of the previous one, or of both. */
struct shard_db {
    char *url;                   /* its connection URL */
    char name[40];               /* "shard_0", or "previous_shard_2" if only in the previous one */
    struct pool *pool;           /* its connections */
    struct schema_task *schema;  /* start-up table creation */
    unsigned long long queries;  /* sent through shard_set_query / fan-out */
    unsigned long long failures; /* of those, the ones that failed */
    struct shard_set *set;       /* back-pointer, for schema callbacks */
};

struct shard_set {
    struct event_base *base;     /* the server's loop */
    struct metrics *metrics;     /* counters */
    struct shard_map *map;       /* current layout */
    struct shard_map *previous;  /* previous layout while resharding, else NULL */
    int *home;                   /* current shard -> database index */
    int *home_previous;          /* previous shard -> database index */
    struct shard_db *dbs;        /* every distinct database */
    int db_count;                /* entries in dbs */
    int schema_pending;          /* databases still creating their schema */
    void (*schema_done)(void *); /* called when every database has its schema */
    void *schema_arg;            /* and its argument */
    struct fanout *fanouts;      /* fan-outs whose queries are still running */
};

/* Finds or adds the database with this URL. */
static int db_index(struct shard_set *set, const char *url, const char *name)
{
    for (int i = 0; i < set->db_count; i++)
        if (strcmp(set->dbs[i].url, url) == 0)
            return i;
    struct shard_db *db = &set->dbs[set->db_count];
    db->url = xstrdup(url);
    db->set = set;
    snprintf(db->name, sizeof db->name, "%s", name);
    return set->db_count++;
}

/* Parses one layout's URLs and map; fills `homes` with database indices. */
static struct shard_map *parse_layout(struct shard_set *set, const char *urls, const char *strategy,
                                      const char *ranges, bool previous, int **homes, char *err,
                                      size_t errlen)
{
    const char *what = previous ? "SHARD_PREVIOUS_URLS" : "SHARD_URLS";
    char *items[SHARD_MAX];
    int n = shard_split_list(urls, items, SHARD_MAX);
    if (n < 0) {
        snprintf(err, errlen, "%s: expected 1 to %d comma-separated URLs, none empty", what,
                 SHARD_MAX);
        return NULL;
    }
    char merr[200];
    struct shard_map *map = shard_map_create(strategy, n, ranges, merr, sizeof merr);
    if (map == NULL)
        snprintf(err, errlen, "%s: %s",
                 previous ? "SHARD_PREVIOUS_STRATEGY/RANGES" : "SHARD_STRATEGY/RANGES", merr);
    *homes = xcalloc((size_t)n, sizeof **homes);
    for (int i = 0; i < n; i++) {
        int before = set->db_count;
        char name[40];
        snprintf(name, sizeof name, "%sshard_%d", previous ? "previous_" : "", i);
        (*homes)[i] = db_index(set, items[i], name);
        if (!previous && map != NULL && set->db_count == before) {
            snprintf(err, errlen, "SHARD_URLS lists %s twice", items[i]);
            shard_map_free(map);
            map = NULL;
        }
        free(items[i]);
    }
    return map;
}

struct shard_set *shard_set_create(struct event_base *base, const struct shard_settings *settings,
                                   const struct pool_config *db, const char *application,
                                   struct metrics *metrics, char *err, size_t errlen)
{
    struct shard_set *set = xcalloc(1, sizeof *set);
    set->base = base;
    set->metrics = metrics;
    set->dbs = xcalloc(2 * SHARD_MAX, sizeof *set->dbs);
    set->map = parse_layout(set, settings->urls, settings->strategy, settings->ranges, false,
                            &set->home, err, errlen);
    if (set->map == NULL)
        goto fail;
    if (settings->previous_urls != NULL && settings->previous_urls[0] != '\0') {
        set->previous =
            parse_layout(set, settings->previous_urls, settings->previous_strategy,
                         settings->previous_ranges, true, &set->home_previous, err, errlen);
        if (set->previous == NULL)
            goto fail;
    }
    for (int i = 0; i < set->db_count; i++) {
        struct pool_config c = *db;
        c.database_url = set->dbs[i].url;
        set->dbs[i].pool = pool_config_create(&c, base, application, metrics);
    }
    return set;
fail:
    shard_set_free(set);
    return NULL;
}

static void fanout_free_all(struct shard_set *set);

void shard_set_free(struct shard_set *set)
{
    if (set == NULL)
        return;
    for (int i = 0; i < set->db_count; i++) {
        schema_task_free(set->dbs[i].schema);
        pool_free(set->dbs[i].pool);
        free(set->dbs[i].url);
    }
    fanout_free_all(set); /* after the pools: their callbacks can no longer come */
    free(set->dbs);
    free(set->home);
    free(set->home_previous);
    shard_map_free(set->map);
    shard_map_free(set->previous);
    free(set);
}

int shard_set_count(const struct shard_set *set)
{
    return shard_map_count(set->map);
}

const struct shard_map *shard_set_map(const struct shard_set *set)
{
    return set->map;
}

const struct shard_map *shard_set_previous_map(const struct shard_set *set)
{
    return set->previous;
}

int shard_set_lookup(const struct shard_set *set, const char *key, size_t len)
{
    return shard_map_lookup(set->map, key, len);
}

int shard_set_previous_lookup(const struct shard_set *set, const char *key, size_t len)
{
    if (set->previous == NULL)
        return -1;
    int was = shard_map_lookup(set->previous, key, len);
    int is = shard_map_lookup(set->map, key, len);
    return set->home_previous[was] == set->home[is] ? -1 : was;
}

bool shard_set_was_previous_shard(const struct shard_set *set, int shard, int previous_shard)
{
    if (set->previous == NULL || shard < 0 || shard >= shard_map_count(set->map) ||
        previous_shard < 0 || previous_shard >= shard_map_count(set->previous))
        return false;
    return set->home[shard] == set->home_previous[previous_shard];
}

/* ---- queries, counted per database ---- */

struct shard_call {
    struct shard_db *db;   /* where it runs */
    struct pg_call caller; /* the caller's call, as it came */
};

static void on_call_done(PGresult *res, enum pg_status status, void *arg)
{
    struct shard_call call = *(struct shard_call *)arg;
    free(arg);
    if (status != PG_OK)
        call.db->failures++;
    call.caller.cb(res, status, call.caller.arg);
}

static struct shard_db *db_of(struct shard_set *set, enum shard_layout layout, int shard)
{
    return &set->dbs[layout == SHARD_CURRENT ? set->home[shard] : set->home_previous[shard]];
}

void shard_set_query(struct shard_set *set, enum shard_layout layout, int shard,
                     const struct pg_call *call)
{
    struct shard_call *sc = xmalloc(sizeof *sc);
    *sc = (struct shard_call){db_of(set, layout, shard), *call};
    sc->db->queries++;
    pool_query(sc->db->pool, &(struct pg_call){call->statement, on_call_done, sc});
}

/* ---- schema on every database ---- */

static void on_db_schema(void *arg)
{
    struct shard_db *db = arg;
    struct shard_set *set = db->set;
    LOG_INFO("schema ready on %s", db->name);
    if (--set->schema_pending == 0)
        set->schema_done(set->schema_arg);
}

void shard_set_ensure_schema(struct shard_set *set, const char *sql, void (*done)(void *arg),
                             void *arg)
{
    set->schema_done = done;
    set->schema_arg = arg;
    set->schema_pending = set->db_count + 1; /* +1 until every task is started */
    for (int i = 0; i < set->db_count; i++) {
        struct pgconn_settings pg = {.url = set->dbs[i].url,
                                     .application = "shard_set schema",
                                     .connect_timeout_ms = 2000,
                                     .query_timeout_ms = 10000};
        set->dbs[i].schema = schema_ensure(set->base, &pg, sql, on_db_schema, &set->dbs[i]);
    }
    if (--set->schema_pending == 0)
        done(arg);
}

void shard_set_maintain(struct shard_set *set)
{
    for (int i = 0; i < set->db_count; i++)
        pool_maintain(set->dbs[i].pool);
}

/* ---- fan-out ---- */

/* One shard's part of a fan-out (the query's callback argument). */
struct fanout_part {
    struct fanout *fanout; /* the whole */
    int shard;             /* which answer this fills */
};

struct fanout {
    struct shard_set *set;        /* whose shards */
    struct shard_answer *answers; /* one per shard */
    struct fanout_part *parts;    /* one per shard */
    int count;                    /* shards */
    int pending;                  /* queries not returned yet (+1 while dispatching) */
    bool answered;                /* the caller's callback has run */
    struct event *timer;          /* the deadline */
    shard_fanout_cb cb;           /* the caller's callback */
    void *arg;                    /* and its argument */
    struct fanout *prev, *next;   /* in set->fanouts */
};

static void fanout_release(struct fanout *f)
{
    for (int i = 0; i < f->count; i++)
        free(f->answers[i].value);
    free(f->answers);
    free(f->parts);
    event_free(f->timer);
    free(f);
}

static void fanout_unlink(struct fanout *f)
{
    if (f->prev)
        f->prev->next = f->next;
    else
        f->set->fanouts = f->next;
    if (f->next)
        f->next->prev = f->prev;
}

static void fanout_free_all(struct shard_set *set)
{
    while (set->fanouts != NULL) {
        struct fanout *f = set->fanouts;
        fanout_unlink(f);
        fanout_release(f);
    }
}

/* Answers the caller once: when the last shard replied, or at the deadline. */
static void fanout_answer(struct fanout *f)
{
    if (f->answered)
        return;
    f->answered = true;
    event_del(f->timer);
    f->cb(f->answers, f->count, f->arg);
}

static void fanout_part_done(struct fanout *f)
{
    if (--f->pending > 0)
        return;
    fanout_answer(f);
    fanout_unlink(f);
    fanout_release(f);
}

static void on_fanout_part(PGresult *res, enum pg_status status, void *arg)
{
    struct fanout_part *part = arg;
    struct fanout *f = part->fanout;
    if (!f->answered) {
        struct shard_answer *a = &f->answers[part->shard];
        a->status = status;
        a->timed_out = false;
        if (status == PG_OK && PQntuples(res) > 0 && PQnfields(res) > 0)
            a->value = xstrdup(PQgetvalue(res, 0, 0));
    }
    fanout_part_done(f);
}

static void on_fanout_deadline(evutil_socket_t fd, short what, void *arg)
{
    struct fanout *f = arg;
    (void)fd, (void)what;
    for (int i = 0; i < f->count; i++)
        if (f->answers[i].timed_out)
            metrics_inc(f->set->metrics, METRIC_SHARD_FANOUT_TIMEOUTS);
    fanout_answer(f); /* the late queries still hold f until they return */
}

void shard_set_fanout(struct shard_set *set, const char *sql, long timeout_ms, shard_fanout_cb cb,
                      void *arg)
{
    struct fanout *f = xcalloc(1, sizeof *f);
    f->set = set;
    f->count = shard_set_count(set);
    f->answers = xcalloc((size_t)f->count, sizeof *f->answers);
    f->parts = xcalloc((size_t)f->count, sizeof *f->parts);
    f->cb = cb;
    f->arg = arg;
    f->pending = f->count + 1;
    f->timer = evtimer_new(set->base, on_fanout_deadline, f);
    f->next = set->fanouts;
    if (f->next)
        f->next->prev = f;
    set->fanouts = f;
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    event_add(f->timer, &tv);
    for (int i = 0; i < f->count; i++) {
        /* Until its answer comes, a shard counts as timed out. */
        f->answers[i] = (struct shard_answer){PG_UNAVAILABLE, true, NULL};
        f->parts[i] = (struct fanout_part){f, i};
        shard_set_query(set, SHARD_CURRENT, i,
                        &(struct pg_call){
                            .statement = {.sql = sql}, .cb = on_fanout_part, .arg = &f->parts[i]});
    }
    fanout_part_done(f);
}

/* ---- statistics ---- */

json_t *shard_set_pool_sizes_json(const struct shard_set *set)
{
    json_t *sizes = json_object();
    for (int i = 0; i < shard_set_count(set); i++) {
        struct pool_stats s;
        pool_get_stats(set->dbs[set->home[i]].pool, &s);
        json_object_set_new(sizes, set->dbs[set->home[i]].name, json_integer(s.size));
    }
    return sizes;
}

void shard_set_render_gauges(struct evbuffer *out, void *arg)
{
    struct shard_set *set = arg;
    evbuffer_add_printf(out, "# HELP shard_pool_size Open connections to each shard.\n"
                             "# TYPE shard_pool_size gauge\n");
    for (int i = 0; i < set->db_count; i++) {
        struct pool_stats s;
        pool_get_stats(set->dbs[i].pool, &s);
        evbuffer_add_printf(out, "shard_pool_size{shard=\"%s\"} %d\n", set->dbs[i].name, s.size);
    }
    evbuffer_add_printf(out, "# HELP shard_queries_total Queries sent to each shard.\n"
                             "# TYPE shard_queries_total counter\n");
    for (int i = 0; i < set->db_count; i++)
        evbuffer_add_printf(out, "shard_queries_total{shard=\"%s\"} %llu\n", set->dbs[i].name,
                            set->dbs[i].queries);
    evbuffer_add_printf(out, "# HELP shard_query_failures_total Queries that failed, by shard.\n"
                             "# TYPE shard_query_failures_total counter\n");
    for (int i = 0; i < set->db_count; i++)
        evbuffer_add_printf(out, "shard_query_failures_total{shard=\"%s\"} %llu\n",
                            set->dbs[i].name, set->dbs[i].failures);
}
