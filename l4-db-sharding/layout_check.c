/*
 * Layer 4: the server's check of the shards' recorded layouts against its settings (see
 * layout.h), one query per shard through its pool.
 */
#include "layout.h"

#include "pgconn.h"
#include "shard_map.h"
#include "shard_set.h"
#include "xalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The first server to use a database records its layout; every server reads what is there. */
static const char LAYOUT_SQL_CLAIM[] =
    "WITH claimed AS (INSERT INTO shard_layout (layout, shard) VALUES ($1, $2::integer) "
    "ON CONFLICT DO NOTHING RETURNING layout, shard) "
    "SELECT layout, shard FROM claimed UNION ALL SELECT layout, shard FROM shard_layout LIMIT 1";

/* One shard's check (the query's callback argument). */
struct shard_check {
    struct layout_check *check; /* the whole */
    int shard;                  /* which shard of the current layout */
    char index[16];             /* its number, as the query's text parameter */
    bool asked;                 /* a query is under way */
    bool agreed;                /* its record matches */
};

struct layout_check {
    struct shard_set *shards;  /* whose shards */
    layout_agreed_cb agreed;   /* every shard agrees */
    layout_refused_cb refused; /* one does not */
    void *arg;                 /* their argument */
    int count;                 /* shards in the current layout */
    int agreeing;              /* how many have agreed */
    int asked;                 /* queries under way */
    bool decided;              /* agreed or refused was called */
    bool freed;                /* layout_check_free ran while queries were under way */
    struct shard_check *parts; /* one per shard */
};

/* Whether shard s (of the current layout) may hold a database recorded as (layout, shard). */
static bool record_fits(const struct shard_set *shards, int s, const char *layout, int recorded)
{
    if (strcmp(layout, shard_map_describe(shard_set_map(shards))) == 0 && recorded == s)
        return true;
    const struct shard_map *previous = shard_set_previous_map(shards);
    return previous != NULL && strcmp(layout, shard_map_describe(previous)) == 0 &&
           shard_set_was_previous_shard(shards, s, recorded);
}

static void refuse(struct layout_check *check, int s, const char *layout, int recorded)
{
    char why[640];
    snprintf(why, sizeof why,
             "shard_%d was filled as shard %d of the layout %s, but SHARD_URLS and "
             "SHARD_STRATEGY make it shard %d of %s: keys would be looked for on the wrong "
             "shards. Start with the settings it was filled with, move the keys to the new "
             "layout with l4-reshard (README: resharding), or start from empty databases "
             "(./layers reset l4)",
             s, recorded, layout, s, shard_map_describe(shard_set_map(check->shards)));
    check->decided = true;
    check->refused(why, check->arg);
}

static void on_record(PGresult *res, enum pg_status status, void *arg)
{
    struct shard_check *part = arg;
    struct layout_check *check = part->check;
    part->asked = false;
    check->asked--;
    if (check->freed) {
        if (check->asked == 0)
            free(check->parts), free(check);
        return;
    }
    /* Not answered (or, when two servers record at once, the other's row not visible yet):
     * asked again on the next retry. */
    if (status != PG_OK || check->decided || PQntuples(res) != 1)
        return;
    const char *layout = PQgetvalue(res, 0, 0);
    int recorded = atoi(PQgetvalue(res, 0, 1));
    if (!record_fits(check->shards, part->shard, layout, recorded)) {
        refuse(check, part->shard, layout, recorded);
        return;
    }
    part->agreed = true;
    if (++check->agreeing == check->count) {
        check->decided = true;
        check->agreed(check->arg);
    }
}

static void ask(struct layout_check *check, struct shard_check *part)
{
    part->asked = true;
    check->asked++;
    struct pg_call call = {
        {LAYOUT_SQL_CLAIM, 2, {shard_map_describe(shard_set_map(check->shards)), part->index}},
        on_record,
        part};
    shard_set_query(check->shards, SHARD_CURRENT, part->shard, &call);
}

struct layout_check *layout_check_start(struct shard_set *shards, layout_agreed_cb agreed,
                                        layout_refused_cb refused, void *arg)
{
    struct layout_check *check = xcalloc(1, sizeof *check);
    *check = (struct layout_check){.shards = shards,
                                   .agreed = agreed,
                                   .refused = refused,
                                   .arg = arg,
                                   .count = shard_set_count(shards)};
    check->parts = xcalloc((size_t)check->count, sizeof *check->parts);
    for (int s = 0; s < check->count; s++) {
        check->parts[s] = (struct shard_check){.check = check, .shard = s};
        snprintf(check->parts[s].index, sizeof check->parts[s].index, "%d", s);
    }
    layout_check_retry(check);
    return check;
}

void layout_check_retry(struct layout_check *check)
{
    if (check == NULL)
        return;
    for (int s = 0; s < check->count && !check->decided; s++)
        if (!check->parts[s].agreed && !check->parts[s].asked)
            ask(check, &check->parts[s]);
}

void layout_check_free(struct layout_check *check)
{
    if (check == NULL)
        return;
    if (check->asked > 0) { /* the last answer frees it */
        check->freed = true;
        return;
    }
    free(check->parts);
    free(check);
}
