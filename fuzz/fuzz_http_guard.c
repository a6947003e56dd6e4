/*
 * fuzz_http_guard: the request framing filter (http_guard.c) on any bytes, in any split, as a
 * client's connection delivers them. The first byte picks the size of the pieces; the filter
 * runs after each piece, as on each read. What it keeps back must stay bounded.
 */
#include <event2/buffer.h>
#include <stdint.h>
#include <stdlib.h>

#include "http_guard.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_BODY 256

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    size_t piece = (size_t)data[0] % 64 + 1;
    data++;
    size--;
    struct http_guard *guard = http_guard_create(MAX_BODY);
    struct evbuffer *src = evbuffer_new();
    struct evbuffer *dst = evbuffer_new();
    for (size_t at = 0; at < size; at += piece) {
        size_t n = size - at < piece ? size - at : piece;
        evbuffer_add(src, data + at, n);
        http_guard_filter(guard, src, dst);
        evbuffer_drain(dst, evbuffer_get_length(dst)); /* evhttp reads what was passed on */
        (void)http_guard_wants_close(guard);
        (void)http_guard_idle(guard);
    }
    http_guard_refuse_busy(guard);
    http_guard_filter(guard, src, dst);
    evbuffer_free(src);
    evbuffer_free(dst);
    http_guard_free(guard);
    return 0;
}
