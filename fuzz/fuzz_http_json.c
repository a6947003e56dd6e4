/*
 * fuzz_http_json: the core's own JSON writer (http_json_dump, http.c) against jansson's
 * json_dumpb, which it stands in for on every reply: any document jansson reads from the input
 * must come out of both byte for byte, and a buffer too small must be reported as such by both.
 */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define ROOM 65536

static size_t dump_jansson(const json_t *body, char *buf, size_t size)
{
    return json_dumpb(body, buf, size, JSON_COMPACT | JSON_REAL_PRECISION(15));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *body = json_loadb((const char *)data, size, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
    if (body == NULL)
        return 0;
    static char ours[ROOM], theirs[ROOM];
    size_t ours_len = http_json_dump(body, ours, sizeof ours);
    size_t theirs_len = dump_jansson(body, theirs, sizeof theirs);
    if (ours_len != theirs_len)
        abort(); /* another length than jansson's */
    if (theirs_len <= sizeof theirs && memcmp(ours, theirs, theirs_len) != 0)
        abort(); /* other bytes than jansson's */
    if (theirs_len > 1) { /* one byte short: both must say it did not fit */
        size_t small = theirs_len - 1 < sizeof ours ? theirs_len - 1 : sizeof ours;
        if (http_json_dump(body, ours, small) <= small)
            abort();
    }
    json_decref(body);
    return 0;
}
