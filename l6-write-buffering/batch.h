/*
 * batch: one batch of the worker's stream entries, as plain data: the entries as read (parsed
 * from an XREADGROUP or XAUTOCLAIM reply, the malformed ones dead at once), the rows to write
 * (each key's newest entry, sorted by key), the stack of slices still to write (a refused slice
 * is split in halves to find its bad entries), and the commit delays counted for the finish.
 *
 * Apart from the worker (worker.c) because it is pure logic on a reply: no socket, no loop, so
 * the planning rules (newest entry per key, key order, what counts as malformed) can be read,
 * and tested, on their own. The structs are open: the worker's pipeline walks a batch's entries
 * and rows and moves it through its stages; this module only builds, plans and frees it.
 */
#ifndef L6_BATCH_H
#define L6_BATCH_H

#include "write_queue.h"

#include <hiredis/hiredis.h>
#include <stddef.h>

enum entry_state {
    ENTRY_NEW,        /* to be written */
    ENTRY_SUPERSEDED, /* a newer entry of its key is in the same batch */
    ENTRY_COMMITTED,  /* in PostgreSQL */
    ENTRY_DEAD,       /* to the dead-letter stream */
};

/* One stream entry of a batch. */
struct entry {
    char *id;               /* stream id "ms-seq" */
    struct wq_id sid;       /* parsed */
    char *key, *value;      /* the write (NULL when missing) */
    size_t key_len;         /* bytes */
    size_t value_len;       /* bytes */
    long long created_ms;   /* created_at for a new row (epoch ms) */
    enum entry_state state; /* where it stands */
    int failures;           /* refusals of this entry alone */
    char *error;            /* why it is dead (owned) */
};

/* A slice of a batch's rows to write in one statement. */
struct range {
    size_t start, count;
};

/* Where a batch stands; batches go through these in stream order, one INSERT at a time. */
enum batch_stage {
    BATCH_READ,      /* read, waiting for the INSERT of the batch before it */
    BATCH_WRITING,   /* its INSERT in flight, or backing off before one */
    BATCH_WRITTEN,   /* committed, waiting for the finish of the batch before it */
    BATCH_FINISHING, /* FINISH_SCRIPT in flight, or backing off before it */
};

/* One batch of stream entries, from its read to its finish. */
struct batch {
    enum batch_stage stage;  /* see enum */
    struct entry *entries;   /* as read, in stream order */
    size_t n_entries;        /* count */
    struct entry **rows;     /* the entries to write, sorted by key */
    size_t n_rows;           /* count */
    struct range *todo;      /* a stack of slices of rows still to write */
    size_t n_todo, cap_todo; /* its size */
    long long commit_ms;     /* Redis's clock at the batch's last COMMIT (-1: unknown) */
    struct wq_delay delay;   /* the batch's commit delays, for the finish script */
};

/* A batch of the entries of an XREADGROUP or XAUTOCLAIM reply (an array of [id, fields]), its
 * rows planned and its whole row range pushed as the first slice to write. */
struct batch *batch_create(const redisReply *list);
/* batch_free(NULL) is a no-op. */
void batch_free(struct batch *b);
/* Marks e dead (for the dead-letter stream) with why (copied). */
void batch_kill_entry(struct entry *e, const char *why);
/* Pushes a slice of rows to write (written before the slices under it). */
void batch_push_range(struct batch *b, size_t start, size_t count);
/* Fills b->delay: every entry committed, or superseded by a newer one of its key in the same
 * commit, delayed by b->commit_ms minus its append; none when commit_ms < 0 (not dated). */
void batch_count_delays(struct batch *b);
/* The newest id of the entries not dead (the ones the finish script acknowledges), as "ms-seq"
 * in out (48 bytes); "" when there is none. */
void batch_newest_id(const struct batch *b, char *out, size_t size);

#endif
