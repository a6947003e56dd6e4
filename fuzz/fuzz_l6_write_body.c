/*
 * fuzz_l6_write_body: layer 6's fast path for a POST /write body (write_body_plain, a byte scan
 * without jansson) against the core's validation it stands in front of (validate_write_request).
 * The scan may decline any body (the core then decides), but a body it accepts must be one the
 * core accepts with the same key and value: otherwise layer 6 would queue a write another layer
 * refuses, or queue different bytes. Also, the reply it writes for that key must be valid JSON.
 */
#include <event2/buffer.h>
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "validate.h"
#include "write_body.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_VALUE_BYTES 64

static bool same_bytes(const char *a, size_t a_len, const char *b, size_t b_len)
{
    return a_len == b_len && (a_len == 0 || memcmp(a, b, a_len) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct write_body fast;
    if (!write_body_plain((const char *)data, size, MAX_VALUE_BYTES, &fast))
        return 0; /* declined: the core answers, as fuzz_validate checks */
    json_t *errors = json_array();
    struct write_request core;
    if (!validate_write_request((const char *)data, size, MAX_VALUE_BYTES, &core, errors))
        abort(); /* the scan accepted what the core refuses */
    if (!same_bytes(fast.key, fast.key_len, core.key, core.key_len) ||
        !same_bytes(fast.value, fast.value_len, core.value, core.value_len))
        abort(); /* the scan read other bytes than the core */
    write_request_cleanup(&core);
    json_decref(errors);

    struct evbuffer *reply = evbuffer_new();
    write_body_queued_reply(reply, fast.key, fast.key_len);
    size_t len = evbuffer_get_length(reply);
    json_t *parsed = json_loadb((const char *)evbuffer_pullup(reply, -1), len, 0, NULL);
    json_t *key = json_object_get(parsed, "key");
    if (!json_is_string(key) || !same_bytes(json_string_value(key), json_string_length(key),
                                            fast.key, fast.key_len))
        abort(); /* the direct reply is not the JSON it stands for */
    json_decref(parsed);
    evbuffer_free(reply);
    return 0;
}
