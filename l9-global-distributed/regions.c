/*
 * regions: the region table, the latency matrix, the choice of a serving region (regions.h).
 */
#include "regions.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const names[REGION_COUNT] = {"us-east", "eu-west", "asia-pac"};
static const char *const uppers[REGION_COUNT] = {"US-EAST", "EU-WEST", "ASIA-PAC"};
static const char *const suffixes[REGION_COUNT] = {"us_east", "eu_west", "asia_pac"};

const char *region_name(int region)
{
    return names[region];
}

const char *region_upper(int region)
{
    return uppers[region];
}

const char *region_suffix(int region)
{
    return suffixes[region];
}

int region_find(const char *name, size_t len)
{
    for (int i = 0; i < REGION_COUNT; i++)
        if (strlen(names[i]) == len && memcmp(names[i], name, len) == 0)
            return i;
    return -1;
}

const char *region_list(void)
{
    return "us-east, eu-west, asia-pac";
}

int region_link(int from, int to)
{
    return from * (REGION_COUNT - 1) + (to > from ? to - 1 : to);
}

static void set_pair(struct region_matrix *m, int a, int b, double ms)
{
    m->ms[a][b] = ms;
    m->ms[b][a] = ms;
}

/* Parses "NAME=NUMBER" from [s, end) into the region and the number. */
static bool parse_assignment(const char *s, const char *end, const char **name_end, double *value)
{
    const char *eq = memchr(s, '=', (size_t)(end - s));
    if (eq == NULL || eq == s || eq + 1 == end)
        return false;
    char number[32];
    size_t len = (size_t)(end - eq - 1);
    if (len >= sizeof number)
        return false;
    memcpy(number, eq + 1, len);
    number[len] = '\0';
    char *stop;
    *value = strtod(number, &stop);
    if (*stop != '\0')
        return false;
    *name_end = eq;
    return true;
}

bool region_matrix_parse(const char *text, struct region_matrix *m, char *err, size_t errlen)
{
    memset(m, 0, sizeof *m);
    set_pair(m, 0, 1, 40);
    set_pair(m, 0, 2, 90);
    set_pair(m, 1, 2, 80);
    for (const char *s = text; s != NULL && *s != '\0';) {
        const char *end = strchr(s, ',');
        if (end == NULL)
            end = s + strlen(s);
        const char *name_end, *colon = memchr(s, ':', (size_t)(end - s));
        double ms;
        int a = -1, b = -1;
        if (colon != NULL && parse_assignment(colon + 1, end, &name_end, &ms) && ms >= 0) {
            a = region_find(s, (size_t)(colon - s));
            b = region_find(colon + 1, (size_t)(name_end - colon - 1));
        }
        if (a < 0 || b < 0 || a == b) {
            snprintf(err, errlen,
                     "REGION_LATENCY_MS: '%.*s' is not REGION:REGION=MS with two of %s",
                     (int)(end - s), s, region_list());
            return false;
        }
        set_pair(m, a, b, ms);
        s = *end == ',' ? end + 1 : end;
    }
    return true;
}

bool region_offsets_parse(const char *text, long long offsets[REGION_COUNT], char *err,
                          size_t errlen)
{
    for (int i = 0; i < REGION_COUNT; i++)
        offsets[i] = 0;
    for (const char *s = text; s != NULL && *s != '\0';) {
        const char *end = strchr(s, ',');
        if (end == NULL)
            end = s + strlen(s);
        const char *name_end;
        double ms;
        int region = -1;
        if (parse_assignment(s, end, &name_end, &ms))
            region = region_find(s, (size_t)(name_end - s));
        if (region < 0) {
            snprintf(err, errlen, "REGION_CLOCK_OFFSET_MS: '%.*s' is not REGION=MS with one of %s",
                     (int)(end - s), s, region_list());
            return false;
        }
        offsets[region] = (long long)ms;
        s = *end == ',' ? end + 1 : end;
    }
    return true;
}

int region_serving(const struct region_matrix *m, int from, const bool healthy[REGION_COUNT])
{
    if (healthy[from])
        return from;
    int best = -1;
    for (int i = 0; i < REGION_COUNT; i++) {
        if (i == from || !healthy[i])
            continue;
        if (best < 0 || m->ms[from][i] < m->ms[from][best] ||
            (m->ms[from][i] == m->ms[from][best] && strcmp(names[i], names[best]) < 0))
            best = i;
    }
    return best;
}
