/*
 * expect: is a reply the right answer to its request?
 *
 * A benchmark that counts every 200 as a success measures how fast a server can be wrong: a
 * read answering "success":false, another key's value or an empty body would all count. Each
 * reply is held to the contract (shared/CONTRACT.md) and to the data set (every bench:K holds
 * value_for_key(K), workload.h):
 *   read of bench:K   200, a JSON object, "success":true, "key":"bench:K", "value" exactly K's
 *                     value, "created_at" and "updated_at" strings
 *   read of miss:R    200, "success":false, "key":"miss:R", "value":null
 *   write of bench:K  200, "success":true, "key":"bench:K"
 *   ping              200
 *   layer 8's transaction write: 200, "success":true, "stored_in":"PostgreSQL", an integer
 *                     "transaction_id"; its list of bench-user:K: 200, "key":"bench-user:K",
 *                     "success" true with a list or false with null; its summary: 200,
 *                     "success":true, "user_id":"bench-user:K", a "transactions" object
 * A failed check is an error of the run, counted and reported like a failed request.
 */
#ifndef LAYERS_BENCH_EXPECT_H
#define LAYERS_BENCH_EXPECT_H

#include <stdbool.h>
#include <stddef.h>

#include "workload.h"

enum expect_result {
    EXPECT_OK,
    EXPECT_BAD_STATUS, /* a status other than 200 */
    EXPECT_BAD_BODY,   /* 200, but the body is not the expected answer */
};

/*
 * Checks one reply: `status` and the body's `len` bytes, against `req`. `value_bytes` is the
 * length of the values the data set was written with. On a failure, says why in `why` (a
 * caller's buffer of `why_size` bytes, always NUL terminated).
 */
__attribute__((warn_unused_result)) enum expect_result
expect_reply(const struct request *req, size_t value_bytes, int status, const char *body,
             size_t len, char *why, size_t why_size);

#endif
