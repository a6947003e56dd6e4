/*
 * fuzz_l6_entry: layer 6's decoders of what Redis returns (write_queue.c): the bytes are Redis
 * protocol (RESP), read by hiredis's own reader as the connection would, and each reply goes
 * to the stream id parser (wq_parse_id), the delay histogram (wq_delay_parse) and the /stats
 * reply (wq_parse_stats). A Redis that answers garbage must not crash the worker or the API.
 */
#include <stdint.h>
#include <stdlib.h>

#include "write_queue.h"
#include "fuzz_input.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void decode(const redisReply *reply)
{
    struct wq_id id;
    if (reply->type == REDIS_REPLY_STRING || reply->type == REDIS_REPLY_STATUS) {
        if (wq_parse_id(reply->str, reply->len, &id) && (id.ms < 0 || id.seq < 0 ||
                                                         id.seq >= 1000000))
            abort();
    }
    struct wq_delay delay = {0};
    wq_delay_parse(reply, &delay);
    (void)wq_delay_percentile(&delay, 0.99);
    struct wq_stats stats;
    wq_parse_stats(reply, &stats);
    if (reply->type == REDIS_REPLY_ARRAY)
        for (size_t i = 0; i < reply->elements; i++)
            if (reply->element[i] != NULL)
                decode(reply->element[i]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_each_reply(data, size, decode);
    return 0;
}
