/*
 * fuzz_l7_event: layer 7's event decoder (cqrs.c): the bytes are Redis protocol (RESP), read by
 * hiredis's reader as the projector's connection would, and each reply goes to
 * cqrs_event_parse (an XREADGROUP entry [id, [field, value, ...]]) and each string to
 * cqrs_stream_id_parse. A stream holding garbage must not crash the projector.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cqrs.h"
#include "fuzz_input.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void decode(const redisReply *reply, int depth)
{
    if (reply->type == REDIS_REPLY_STRING || reply->type == REDIS_REPLY_STATUS) {
        struct cqrs_stream_id id;
        if (cqrs_stream_id_parse(reply->str, &id) && cqrs_stream_id_cmp(&id, &id) != 0)
            abort();
    }
    struct cqrs_event event;
    const char *why = NULL;
    if (cqrs_event_parse(reply, &event, &why)) {
        if (event.key == NULL || event.value == NULL)
            abort();
        volatile size_t touch = strlen(event.id) + event.key_len + event.value_len;
        (void)touch;
    } else if (why == NULL) {
        abort(); /* a refusal without a reason */
    }
    if (reply->type == REDIS_REPLY_ARRAY && depth < 8)
        for (size_t i = 0; i < reply->elements; i++)
            if (reply->element[i] != NULL)
                decode(reply->element[i], depth + 1);
}

static void decode_top(const redisReply *reply)
{
    decode(reply, 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_each_reply(data, size, decode_top);
    return 0;
}
