/*
 * fuzz_pg_url: DATABASE_URL as a user may write it, a postgres:// URL or a key=value conninfo
 * string, through pgconn_host_to_resolve (pgconn.c: the host name to look up before libpq
 * connects) and config_mask_url (config.c).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "fuzz_input.h"
#include "pgconn.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *url = fuzz_cstring(data, size);
    char host[256];
    if (pgconn_host_to_resolve(url, host, sizeof host) && strlen(host) >= sizeof host)
        abort();
    char masked[512];
    config_mask_url(url, masked, sizeof masked);
    free(url);
    return 0;
}
