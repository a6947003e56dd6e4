/*
 * Layer 9: three regions. The layer's context and its request handlers (writes.c, reads.c,
 * status.c), the regions' state and heartbeats (heartbeats.c); what they share is requests.h.
 */
#ifndef L9_HANDLERS_H
#define L9_HANDLERS_H

#include "hlc.h"
#include "pool_config.h"
#include "regions.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event;
struct http_request;
struct pool;
struct server;

/* A round-trip probe of one pool (embedded: nothing to free when the server stops). */
struct region_probe {
    struct layer *layer; /* the layer */
    int from, to;        /* the pool: region from's clients to region to */
    long long start_us;  /* when it was sent (monotonic) */
    bool in_flight;      /* under way */
};

/* One region as this server sees it. */
struct region {
    struct layer *layer;          /* the layer (a heartbeat's callback argument is the region) */
    int index;                    /* its place in the region table */
    /* pools[t]: connections for this region's clients to region t's PostgreSQL: pools[self]
     * directly, the others through the WAN link self -> t (a remote call pays its delay). */
    struct pool *pools[REGION_COUNT];
    struct region_cache *cache;   /* its Redis, in front of its own PostgreSQL (local reads) */
    char *write_sql;              /* the UPSERT into this region's own table (it writes no other) */
    char *heartbeat_sql;          /* the UPSERT of its heartbeat row */
    struct hlc clock;             /* stamps this region's writes */
    bool healthy;                 /* its PostgreSQL answered the last heartbeat in time */
    bool beat_in_flight;          /* a heartbeat is under way */
    bool beaten;                  /* its first heartbeat has come back (health is known) */
    long long beat_sent_ms;       /* when it was sent (monotonic): a hung database shows */
    double lag_ms[REGION_COUNT];  /* from region p: commit there to apply here, of p's newest
                                     heartbeat seen here (-1: none yet) */
    double stale_ms[REGION_COUNT]; /* from region p: the age of p's newest heartbeat here: what
                                      this region may miss of p's writes (-1: unknown) */
    long long stale_at_us[REGION_COUNT]; /* when stale_ms[p] was measured (monotonic): it grows
                                            by the time since */
    double rtt_ms[REGION_COUNT];  /* measured round trip of pools[t] (SELECT 1; -1: unknown) */
    struct region_probe probes[REGION_COUNT]; /* probes[t] measures rtt_ms[t] */
    uint64_t reads, writes;       /* requests of this region's clients */
    uint64_t served_elsewhere;    /* of those, served by another region (failover) */
    uint64_t strong_writes;       /* writes with consistency=strong */
    uint64_t strong_timeouts;     /* of those, not applied everywhere by the deadline */
    uint64_t cache_hits;          /* local reads answered by its Redis */
    uint64_t cache_misses;        /* local reads its Redis did not answer (or was not asked) */
};

struct layer {
    struct server *server;         /* the core's server (loop, HTTP, metrics) */
    struct pool_config db;         /* DB_* and DB_POOL_* settings, for every pool */
    char *database_urls;           /* REGION_DATABASE_URLS: us-east, eu-west, asia-pac */
    char *link_urls;               /* REGION_LINK_URLS: the six WAN links (regions.h's order) */
    char *redis_urls;              /* REGION_REDIS_URLS: us-east, eu-west, asia-pac */
    long redis_timeout_ms;         /* REDIS_TIMEOUT_MS */
    long cache_ttl_s;              /* CACHE_TTL */
    char *latency;                 /* REGION_LATENCY_MS: overrides of the matrix */
    char *clock_offsets;           /* REGION_CLOCK_OFFSET_MS: skewed clocks */
    char *default_region;          /* DEFAULT_REGION */
    long strong_timeout_ms;        /* STRONG_TIMEOUT_MS: how long a strong write waits */
    long strong_poll_ms;           /* STRONG_POLL_MS: how often it asks */
    long heartbeat_ms;             /* HEARTBEAT_MS: the lag and health probe */
    size_t max_value_bytes;        /* MAX_VALUE_BYTES */
    int default_index;             /* DEFAULT_REGION's index */
    struct region_matrix matrix;   /* one-way delays between regions */
    struct region regions[REGION_COUNT]; /* the three regions */
    struct event *beat;            /* the heartbeat timer */
    bool ready;                    /* listening: every region's health is known */
};

void handle_write(struct http_request *req, void *arg);
void handle_read(struct http_request *req, void *arg);
void handle_health(struct http_request *req, void *arg);
void handle_stats(struct http_request *req, void *arg);
void handle_regions(struct http_request *req, void *arg);

/* The UPSERT of a write into region's own table (caller frees). */
char *region_write_sql(int region);

/* Sets up region index's state (no pools yet: the caller opens them) / frees it and its pools. */
void region_init(struct region *r, struct layer *layer, int index, long long clock_offset_ms);
void region_cleanup(struct region *r);

/* The heartbeat of every region (health, lag, staleness): every HEARTBEAT_MS. */
void regions_beat(struct layer *layer);
/* Round trips of every link (keeps the remote pools open): once a second. */
void regions_probe(struct layer *layer);

#endif
