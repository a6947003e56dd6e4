/*
 * batch: building, planning and freeing one batch of the worker's stream entries (batch.h).
 */
#include "batch.h"

#include "xalloc.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void batch_free(struct batch *b)
{
    if (b == NULL)
        return;
    for (size_t i = 0; i < b->n_entries; i++) {
        free(b->entries[i].id);
        free(b->entries[i].key);
        free(b->entries[i].value);
        free(b->entries[i].error);
    }
    free(b->entries);
    free(b->rows);
    free(b->todo);
    free(b);
}

void batch_kill_entry(struct entry *e, const char *why)
{
    e->state = ENTRY_DEAD;
    free(e->error);
    e->error = xstrdup(why);
}

static bool has_nul(const char *s, size_t len)
{
    return s != NULL && memchr(s, '\0', len) != NULL;
}

/* Copies one [id, [field, value, ...]] element into e. */
static void read_entry(const redisReply *r, struct entry *e)
{
    *e = (struct entry){0};
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 1 ||
        r->element[0]->type != REDIS_REPLY_STRING) {
        e->id = xstrdup("");
        batch_kill_entry(e, "malformed entry");
        return;
    }
    e->id = xstrndup(r->element[0]->str, r->element[0]->len);
    const char *created = NULL;
    const redisReply *fields = r->elements > 1 ? r->element[1] : NULL;
    for (size_t i = 0; fields && fields->type == REDIS_REPLY_ARRAY && i + 1 < fields->elements;
         i += 2) {
        const redisReply *f = fields->element[i], *v = fields->element[i + 1];
        if (f->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING)
            continue;
        if (strcmp(f->str, "key") == 0 && e->key == NULL) {
            e->key = xstrndup(v->str, v->len);
            e->key_len = v->len;
        } else if (strcmp(f->str, "value") == 0 && e->value == NULL) {
            e->value = xstrndup(v->str, v->len);
            e->value_len = v->len;
        } else if (strcmp(f->str, "created") == 0) {
            created = v->str;
        }
    }
    if (!wq_parse_id(e->id, strlen(e->id), &e->sid))
        batch_kill_entry(e, "malformed entry: stream id out of range");
    else if (e->key == NULL || e->value == NULL || e->key_len == 0)
        batch_kill_entry(e, "malformed entry: missing key or value");
    else if (has_nul(e->key, e->key_len) || has_nul(e->value, e->value_len))
        batch_kill_entry(e, "malformed entry: NUL byte in key or value");
    else
        e->created_ms = created ? atoll(created) : e->sid.ms;
}

static bool same_key(const struct entry *x, const struct entry *y)
{
    return x->key_len == y->key_len && memcmp(x->key, y->key, x->key_len) == 0;
}

/* qsort order of rows: by key, then by version. */
static int compare_rows(const void *a, const void *b)
{
    const struct entry *x = *(struct entry *const *)a, *y = *(struct entry *const *)b;
    int c = memcmp(x->key, y->key, x->key_len < y->key_len ? x->key_len : y->key_len);
    if (c != 0)
        return c;
    if (x->key_len != y->key_len)
        return x->key_len < y->key_len ? -1 : 1;
    long long vx = wq_version(x->sid), vy = wq_version(y->sid);
    return vx < vy ? -1 : vx > vy;
}

/*
 * Keeps each key's newest entry: PostgreSQL refuses a statement that updates one row twice,
 * and the older values would be overwritten anyway. Sorted by key, so that two workers whose
 * batches share keys lock their rows in the same order (no deadlock). Across batches, the
 * newest entry wins because the batches of one worker are written one after the other, in
 * stream order (advance), and the version guard refuses an older value whoever writes it.
 */
static void plan_rows(struct batch *b)
{
    b->rows = xcalloc(b->n_entries ? b->n_entries : 1, sizeof *b->rows);
    size_t n = 0;
    for (size_t i = 0; i < b->n_entries; i++)
        if (b->entries[i].state == ENTRY_NEW)
            b->rows[n++] = &b->entries[i];
    qsort(b->rows, n, sizeof *b->rows, compare_rows);
    b->n_rows = 0;
    for (size_t i = 0; i < n; i++) {
        struct entry *e = b->rows[i];
        if (i + 1 < n && same_key(e, b->rows[i + 1]))
            e->state = ENTRY_SUPERSEDED;
        else
            b->rows[b->n_rows++] = b->rows[i];
    }
}

void batch_push_range(struct batch *b, size_t start, size_t count)
{
    if (b->n_todo == b->cap_todo) {
        b->cap_todo = b->cap_todo ? b->cap_todo * 2 : 16;
        b->todo = xrealloc(b->todo, b->cap_todo * sizeof *b->todo);
    }
    b->todo[b->n_todo++] = (struct range){start, count};
}

/* A batch of the entries of an XREADGROUP or XAUTOCLAIM reply, its rows planned. */
struct batch *batch_create(const redisReply *list)
{
    struct batch *b = xcalloc(1, sizeof *b);
    b->stage = BATCH_READ;
    b->commit_ms = -1;
    b->n_entries = list->elements;
    b->entries = xcalloc(b->n_entries, sizeof *b->entries);
    for (size_t i = 0; i < b->n_entries; i++)
        read_entry(list->element[i], &b->entries[i]);
    plan_rows(b);
    if (b->n_rows > 0)
        batch_push_range(b, 0, b->n_rows);
    return b;
}

/* The batch's commit delays: every entry written, or superseded by a newer one of its key in
 * the same commit. None when the commit could not be dated (Redis's clock not read yet). */
void batch_count_delays(struct batch *b)
{
    memset(&b->delay, 0, sizeof b->delay);
    if (b->commit_ms < 0)
        return;
    for (size_t i = 0; i < b->n_entries; i++) {
        const struct entry *e = &b->entries[i];
        if (e->state == ENTRY_COMMITTED || e->state == ENTRY_SUPERSEDED)
            wq_delay_add(&b->delay, b->commit_ms - e->sid.ms, 1);
    }
}

void batch_newest_id(const struct batch *b, char *out, size_t size)
{
    const struct wq_id *newest = NULL;
    for (size_t i = 0; i < b->n_entries; i++) {
        const struct wq_id *id = &b->entries[i].sid;
        if (b->entries[i].state != ENTRY_DEAD && (newest == NULL || id->ms > newest->ms ||
                                                  (id->ms == newest->ms && id->seq > newest->seq)))
            newest = id;
    }
    if (newest == NULL)
        snprintf(out, size, "%s", "");
    else
        snprintf(out, size, "%lld-%lld", newest->ms, newest->seq);
}
