/*
 * write_body: the usual POST /write body read without a JSON library, and the 200 reply of a
 * queued write written without one. Pattern: a fast path in front of the general one, which
 * keeps every decision it does not take.
 *
 * Why: profiled under a 64-client write load (README, "Where the time goes"), the API spent
 * about a fifth of its instructions per accepted write parsing the body with jansson
 * (`validate_write_body`: a document, a hash table, a copy of each string) and about a sixth
 * building the reply as a jansson object and dumping it, for a body and a reply that are, in
 * nearly every request, `{"key":"...","value":"..."}` of plain ASCII and one fixed sentence.
 *
 * The rule that keeps the contract: write_body_plain accepts only bodies on which the core's
 * validation (`validate_write_request`) accepts the same key and value: exactly the members
 * "key" and "value", once each, strings of printable ASCII without a quote or a backslash (so
 * their bytes are their values), JSON whitespace between tokens, the key 1..KEY_MAX_BYTES bytes
 * and the value at most max_value_bytes. Everything else is declined, and the handler asks the
 * core, which answers every 422 as before. `tests/check_write_queue.c` compares the two on
 * every body it tries.
 */
#ifndef L6_WRITE_BODY_H
#define L6_WRITE_BODY_H

#include <stdbool.h>
#include <stddef.h>

struct evbuffer;

/* A plain write body's strings: they point into the body (valid while the body is). */
struct write_body {
    const char *key;   /* 1..KEY_MAX_BYTES bytes of printable ASCII, no '"' or '\' */
    size_t key_len;    /* bytes */
    const char *value; /* 0..max_value_bytes bytes, the same alphabet */
    size_t value_len;  /* bytes */
};

/* True, with out set, when body[0..len) is a plain write body (above); false: ask the core. */
bool write_body_plain(const char *body, size_t len, size_t max_value_bytes, struct write_body *out)
    __attribute__((warn_unused_result));

/*
 * Appends the 200 reply of a queued write of a key write_body_plain read, as the
 * jansson object it replaces dumped compactly: {"success":true,"key":K,"message":"Write queued
 * successfully","queued":true}.
 */
void write_body_queued_reply(struct evbuffer *out, const char *key, size_t key_len);

#endif
