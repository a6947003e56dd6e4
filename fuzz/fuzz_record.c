/*
 * fuzz_record: a cache entry as Redis (or another writer of the same key) returns it, through
 * record_from_cache (record.c). An entry it accepts must encode again (record_to_cache) into one
 * it accepts with the same value, and must make a read reply.
 */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "record.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char key[] = "fuzz:key";
    struct record *rec = record_from_cache(key, sizeof key - 1, (const char *)data, size);
    if (rec == NULL)
        return 0;
    size_t len = 0;
    char *entry = record_to_cache(rec, &len);
    struct record *again = record_from_cache(key, sizeof key - 1, entry, len);
    if (again == NULL)
        abort(); /* what the record module writes, it must read */
    size_t a_len, b_len;
    const char *a = record_value(rec, &a_len);
    const char *b = record_value(again, &b_len);
    if (a_len != b_len || memcmp(a, b, a_len) != 0 ||
        strcmp(record_updated_at(rec), record_updated_at(again)) != 0)
        abort();
    json_t *reply = record_read_reply(again, key, sizeof key - 1);
    char *text = json_dumps(reply, JSON_COMPACT);
    free(text);
    json_decref(reply);
    record_free(again);
    free(entry);
    record_free(rec);
    return 0;
}
