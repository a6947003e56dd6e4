/*
 * fuzz_path: a request path's `{key}` segment, as GET /read/{key} gets it from a client:
 * percent_decode (router.c), then validate_path_key (validate.c), which decodes again and
 * builds the 422 entry for a malformed or invalid key. The two must agree on what decodes.
 */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "router.h"
#include "validate.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *out = malloc(size + 1);
    size_t out_len = 0;
    bool decoded = percent_decode((const char *)data, size, out, &out_len);
    if (decoded && out_len > size)
        abort(); /* decoding never lengthens */

    json_t *errors = json_array();
    size_t key_len = 0;
    char *key = validate_path_key((const char *)data, size, &key_len, errors);
    if (key != NULL && (!decoded || key_len != out_len || memcmp(key, out, key_len) != 0))
        abort(); /* a valid key is exactly what percent_decode made of it */
    if ((key == NULL) != (json_array_size(errors) > 0))
        abort(); /* refused if and only if an error says why */
    char *text = json_dumps(errors, JSON_COMPACT);
    free(text);
    json_decref(errors);
    free(key);
    free(out);
    return 0;
}
