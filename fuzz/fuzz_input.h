/*
 * fuzz_input: what several targets do with their input bytes, once.
 *
 * fuzz_cstring: a NUL-terminated copy (for the parsers of settings, which take C strings).
 *
 * fuzz_each_reply: the bytes read as Redis protocol (RESP) by hiredis's own reader, as a
 * connection would, each complete reply handed to fn. hiredis 0.14 allocates an array's element
 * table from the count in its header (`*466666666`) before any element arrives: a 4 GB calloc
 * from 12 bytes. That is hiredis trusting its server, not this project's code, so such inputs
 * are skipped: a count or length larger than the whole input cannot describe a real reply.
 */
#ifndef FUZZ_INPUT_H
#define FUZZ_INPUT_H

#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static inline char *fuzz_cstring(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    memcpy(s, data, size);
    s[size] = '\0';
    return s;
}

static inline bool resp_input_plausible(const uint8_t *data, size_t size)
{
    for (size_t i = 0; i < size; i++) {
        if (data[i] != '*' && data[i] != '$')
            continue;
        size_t n = 0;
        for (size_t j = i + 1; j < size && data[j] >= '0' && data[j] <= '9'; j++) {
            n = n * 10 + (size_t)(data[j] - '0');
            if (n > size)
                return false;
        }
    }
    return true;
}

static inline void fuzz_each_reply(const uint8_t *data, size_t size,
                                   void (*fn)(const redisReply *reply))
{
    if (!resp_input_plausible(data, size))
        return;
    redisReader *reader = redisReaderCreate();
    if (redisReaderFeed(reader, (const char *)data, size) == REDIS_OK) {
        void *reply = NULL;
        while (redisReaderGetReply(reader, &reply) == REDIS_OK && reply != NULL) {
            fn(reply);
            freeReplyObject(reply);
            reply = NULL;
        }
    }
    redisReaderFree(reader);
}

#endif
