/*
 * requests: what layer 9's request handlers share: the client's region (X-Region, the body's
 * "region", DEFAULT_REGION), who serves it, how stale that region may be, query parameters,
 * clocks, and the SQL every region's tables are read with.
 *
 * The handlers are split by concern: writes.c (eventual and strong writes), reads.c (the cache,
 * the merge, failover), heartbeats.c (each region's health, lag and staleness; the round trips),
 * status.c (/health, /stats, /regions). This module is what they have in common.
 */
#ifndef L9_REQUESTS_H
#define L9_REQUESTS_H

#include "handlers.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

struct http_request;

#define REGION_HEADER      "X-Region"
#define CONSISTENCY_HEADER "X-Consistency"

#define TIMESTAMP_UTC(column)                                                                      \
    "to_char(" column " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"

/* The three tables as one: a read merges them, a write reads its key's highest stamp in them. */
#define ALL_REGIONS(columns)                                                                       \
    "SELECT " columns " FROM records_us_east WHERE key = $1 UNION ALL "                            \
    "SELECT " columns " FROM records_eu_west WHERE key = $1 UNION ALL "                            \
    "SELECT " columns " FROM records_asia_pac WHERE key = $1"

/* format (one %s) with region's table suffix ("us_east"); the caller frees it. */
char *region_sql(const char *format, int region);

/* Wall clock (ms since the epoch) and the monotonic one (us); ms since start_us. */
long long wall_ms(void);
long long monotonic_us(void);
double elapsed_ms(long long start_us);
/* x rounded to 2 decimals (replies). */
double round2(double x);

/* Each region's health into healthy; true when any is healthy. */
bool healthy_set(const struct layer *layer, bool healthy[REGION_COUNT]);
/* Who serves the clients of region client now (regions.h's rule), or -1 when none can. */
int serving_region(const struct layer *layer, int client);

/* The client's region: X-Region, else the body's "region" (body may be NULL), else the default.
 * -1 with an error in errors for a name that is no region. */
int client_region(struct http_request *req, const json_t *body, json_t *errors);

/* The value of query parameter name in req's query string, or NULL (copied into out). */
const char *query_param(struct http_request *req, const char *name, char *out, size_t outlen);

/* How far behind region r may be, in ms, now (-1: unknown). */
double region_staleness(const struct layer *layer, int r);

#endif
