/*
 * Layer 8: polyglot persistence. The layer's context and its request handlers.
 */
#ifndef L8_HANDLERS_H
#define L8_HANDLERS_H

#include "mongo.h"
#include "pool.h"
#include "pool_config.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

struct cache_aside;
struct http_request;
struct redis;
struct schema_task;
struct server;

/* The reads that go through the cache, each counted on its own in /stats. */
enum cached_route { ROUTE_RECORD, ROUTE_DOCUMENT, ROUTE_TRANSACTIONS, ROUTE_COUNT };

/* Cache lookups of one route (loop thread only). */
struct route_counts {
    unsigned long long hits;   /* answered from Redis */
    unsigned long long misses; /* went to the store (Redis down included) */
};

struct layer {
    struct server *server;                   /* the core's server (loop, HTTP, metrics) */
    struct pool_config db;                   /* DATABASE_URL, DB_* and DB_POOL_* settings */
    char *mongo_url;                         /* MONGODB_URL */
    struct mongo_settings mongo_settings;    /* MONGO_TIMEOUT_MS, MONGO_THREADS, ... */
    char *redis_url;                         /* REDIS_URL */
    long cache_ttl_s;                        /* CACHE_TTL */
    long redis_timeout_ms;                   /* REDIS_TIMEOUT_MS */
    size_t max_value_bytes;                  /* MAX_VALUE_BYTES */
    struct pool *pool;                       /* PostgreSQL connections (transactions) */
    struct mongo *mongo;                     /* MongoDB workers (documents, records) */
    struct redis *redis;                     /* the Redis connection */
    struct cache_aside *cache;               /* cache-aside on it, for both stores */
    struct schema_task *schema;              /* start-up table creation in PostgreSQL */
    int stores_pending;                      /* start-up: stores not ready yet (2, then 0) */
    struct route_counts counts[ROUTE_COUNT]; /* cache hits and misses per route */
};

/* MongoDB collections. */
#define COLLECTION_DOCUMENTS "documents" /* POST /write/document */
#define COLLECTION_RECORDS   "records"   /* the common POST /write */

/* The PostgreSQL schema (transactions). */
extern const char TRANSACTIONS_SQL_SCHEMA[];

/* Shared by handlers.c and joined.c: 503 for a MongoDB that is down or busy, else 500. */
void reply_mongo_failure(struct http_request *req, enum mongo_status status);

/* A JSON number from PostgreSQL's exact text of a NUMERIC(12,2): printed back with 15
 * significant digits (http.c), it is the same decimal. */
json_t *amount_json(const char *text);

/* handlers.c: one store per route. */
void handle_write(struct http_request *req, void *arg);
void handle_read(struct http_request *req, void *arg);
void handle_write_document(struct http_request *req, void *arg);
void handle_read_document(struct http_request *req, void *arg);
void handle_write_transaction(struct http_request *req, void *arg);
void handle_read_transactions(struct http_request *req, void *arg);

/* joined.c: several stores at once. */
void handle_user_summary(struct http_request *req, void *arg);
void handle_health(struct http_request *req, void *arg);
void handle_stats(struct http_request *req, void *arg);

#endif
