/*
 * regions: layer 9's three regions, the latency between them, and which region serves whom.
 *
 * The region table is fixed (us-east, eu-west, asia-pac: the Python version's): a name, its
 * upper-case form for replies ("US-EAST"), the suffix of its tables (records_us_east). The
 * latency matrix holds the one-way delay of each pair (symmetric; defaults us-east<->eu-west
 * 40 ms, us-east<->asia-pac 90 ms, eu-west<->asia-pac 80 ms; REGION_LATENCY_MS overrides
 * pairs), and decides failover: a region whose database is down is served by the nearest
 * healthy one. The six directed links (from -> to) are numbered from * 2 + (to > from ? to - 1
 * : to), the order of REGION_LINK_URLS (l9-links.sh and replication.sh number them alike).
 *
 * Pure: parsing and choosing, tested without sockets (tests/check_regions.c).
 */
#ifndef L9_REGIONS_H
#define L9_REGIONS_H

#include <stdbool.h>
#include <stddef.h>

#define REGION_COUNT 3
#define LINK_COUNT   (REGION_COUNT * (REGION_COUNT - 1))

/* The one-way delay between each pair of regions, in milliseconds (0 on the diagonal). */
struct region_matrix {
    double ms[REGION_COUNT][REGION_COUNT]; /* symmetric */
};

/* "us-east", "eu-west", "asia-pac" for 0, 1, 2. */
const char *region_name(int region);
/* "US-EAST", ... */
const char *region_upper(int region);
/* "us_east", ...: the suffix of the region's tables. */
const char *region_suffix(int region);

/* The region called name (len bytes, case-sensitive), or -1. */
int region_find(const char *name, size_t len);

/* "us-east, eu-west, asia-pac": for the 422 that names the valid ones. */
const char *region_list(void);

/* The index of link from -> to (from != to), 0 to LINK_COUNT - 1. */
int region_link(int from, int to);

/* The defaults, then the overrides in text ("us-east:eu-west=40,eu-west:asia-pac=5"; NULL or ""
 * for none). False with a message in err for a malformed entry or an unknown region. */
bool region_matrix_parse(const char *text, struct region_matrix *m, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/* Clock offsets per region ("eu-west=-5000"; NULL or "" for none), in milliseconds. */
bool region_offsets_parse(const char *text, long long offsets[REGION_COUNT], char *err,
                          size_t errlen) __attribute__((warn_unused_result));

/* Who serves region `from`: itself when healthy, else the healthy region nearest to it (the
 * name breaks ties), or -1 when none is healthy. */
int region_serving(const struct region_matrix *m, int from, const bool healthy[REGION_COUNT]);

#endif
