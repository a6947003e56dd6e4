/*
 * workload: which request comes next, drawn per request as bench/lua/workload.lua does.
 *
 * Every request draws its own key from its connection's thread's random generator, so a cache
 * sees the key space the workload describes, not one key over and over:
 *   read-hit   GET /read/bench:K, K uniform over 1..keys (every one preloaded)
 *   read-zipf  the same, K by popularity rank from a Zipf distribution (s = 0.99, as YCSB), the
 *              ranks scattered over the key space (rank r is key (r * scatter) mod keys + 1, with
 *              scatter coprime to keys) so that the hot keys are not neighbours in a B-tree page
 *              or on one shard
 *   read-miss  GET /read/miss:R, R uniform up to 10^9: keys that do not exist
 *   write      POST /write of a uniform existing key, with that key's value
 *   mixed      90% read-zipf, 10% writes of Zipf-drawn keys
 *   ping       GET /ping (the HTTP layer alone: the http-only ceiling)
 *   txn-write  layer 8: POST /write/transaction for user bench-user:U, U uniform over
 *              1..TXN_USERS, amount 12.34, a deposit (PostgreSQL, exact money)
 *   txn-read   layer 8: GET /read/transaction/bench-user:U (a user's list, through the cache)
 *   polyglot   layer 8: 40% GET /read/{key} of an existing key (a MongoDB document through the
 *              cache), 30% txn-read, 10% POST /write (a document), 15% txn-write, 5% GET
 *              /users/bench-user:U/summary (both stores, joined)
 *   preload    POST /write of every key 1..keys once, in order (the data set)
 *   verify     GET /read/bench:K of every key, or of an evenly spaced sample (the preload check)
 *
 * Every key K has one value, value_for_key(): writes during the run rewrite the same value, so
 * any read of bench:K, at any time, must return exactly it. That is what the reply checks
 * (expect.h) hold the servers to.
 */
#ifndef LAYERS_BENCH_WORKLOAD_H
#define LAYERS_BENCH_WORKLOAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum workload_kind {
    WORKLOAD_READ_HIT,
    WORKLOAD_READ_ZIPF,
    WORKLOAD_READ_MISS,
    WORKLOAD_WRITE,
    WORKLOAD_MIXED,
    WORKLOAD_PING,
    WORKLOAD_PRELOAD,
    WORKLOAD_VERIFY,
    WORKLOAD_TXN_WRITE,
    WORKLOAD_TXN_READ,
    WORKLOAD_POLYGLOT,
};

#define TXN_USERS 1000 /* the users layer 8's transaction workloads spread over */

/* What one request is, and so what its reply must be. */
enum request_kind {
    REQUEST_READ_HIT,  /* GET /read/bench:K: 200, success, K's value */
    REQUEST_READ_MISS, /* GET /read/miss:R: 200, "success":false, value null */
    REQUEST_WRITE,     /* POST /write bench:K: 200, success, key K */
    REQUEST_PING,      /* GET /ping: 200 */
    REQUEST_TXN_WRITE, /* POST /write/transaction bench-user:K: 200, success, stored_in */
    REQUEST_TXN_READ,  /* GET /read/transaction/bench-user:K: 200, key, a list or null */
    REQUEST_SUMMARY,   /* GET /users/bench-user:K/summary: 200, success, user_id */
};

struct request {
    enum request_kind kind; /* what is asked, and so what is expected */
    uint64_t key;           /* K of bench:K, or R of miss:R; 0 for a ping */
};

/* A xorshift64* generator: fast, and each thread's own (no shared state, no locks). */
struct rng {
    uint64_t state; /* never 0 */
};

void rng_init(struct rng *rng, uint64_t seed);
uint64_t rng_next(struct rng *rng);
double rng_uniform(struct rng *rng);                /* in [0, 1) */
uint64_t rng_below(struct rng *rng, uint64_t n);    /* in [0, n), n > 0 */

/* The Zipf table: a cumulative distribution over ranks 1..n, searched per draw. */
struct zipf;

struct zipf *zipf_create(uint64_t n, double s);
void zipf_free(struct zipf *z);
uint64_t zipf_rank(const struct zipf *z, double u); /* the rank (1..n) of uniform u in [0, 1) */
uint64_t zipf_key(const struct zipf *z, uint64_t rank); /* the key (1..n) of a rank */
double zipf_probability(const struct zipf *z, uint64_t rank);

/* Parses a workload name; false if unknown. */
__attribute__((warn_unused_result)) bool workload_parse(const char *name, enum workload_kind *kind);
const char *workload_name(enum workload_kind kind);

/* The next request of a running workload (not preload or verify, which go over the keys in
 * order: workload_sequence()). `zipf` may be NULL unless the workload draws from it. */
struct request workload_next(enum workload_kind kind, uint64_t keys, const struct zipf *zipf,
                             struct rng *rng);

/* The i-th request (0-based) of preload or verify; `count` is how many verify reads (0: every
 * key). Returns false once i is past the end. */
__attribute__((warn_unused_result)) bool
workload_sequence(enum workload_kind kind, uint64_t keys, uint64_t count, uint64_t i,
                  struct request *req);

/* The number of requests of preload or verify. */
uint64_t workload_sequence_length(enum workload_kind kind, uint64_t keys, uint64_t count);

/* Writes the value of bench:K, exactly `bytes` long ("bench:K=" then 'v's; cut if shorter), NUL
 * terminated: out must hold bytes + 1. */
void value_for_key(uint64_t key, size_t bytes, char *out);

#endif
