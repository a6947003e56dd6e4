/*
 * resp_input: for the targets that read their input as Redis protocol (RESP) through hiredis's
 * reader. hiredis 0.14 allocates an array's element table from the count in its header
 * (`*466666666`), before any element arrives: a 4 GB calloc from 12 bytes. That is hiredis's
 * trust in its server, not this project's code, so such inputs are skipped: a count or length
 * larger than the whole input cannot describe a real reply.
 */
#ifndef FUZZ_RESP_INPUT_H
#define FUZZ_RESP_INPUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

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

#endif
