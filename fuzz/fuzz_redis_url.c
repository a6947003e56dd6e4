/*
 * fuzz_redis_url: REDIS_URL as a user may write it, through redis_link_parse_url
 * (redis_link.c) and config_mask_url (config.c, which prints it with the password hidden).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "fuzz_input.h"
#include "redis_link.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *url = fuzz_cstring(data, size);
    char host[256];
    int port = 0;
    if (redis_link_parse_url(url, host, sizeof host, &port)) {
        if (port < 0 || port > 65535 || strlen(host) >= sizeof host)
            abort();
    }
    char masked[512];
    config_mask_url(url, masked, sizeof masked);
    if (strlen(masked) >= sizeof masked)
        abort();
    free(url);
    return 0;
}
