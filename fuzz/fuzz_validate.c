/*
 * fuzz_validate: a POST /write body through validate_write_request (validate.c), which parses
 * the JSON and builds the contract's 422 error list. Accepted bodies must hold a key of 1-255
 * bytes and a value within the limit; refused ones must say why; the errors must serialise.
 */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>

#include "validate.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_VALUE_BYTES 64

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *errors = json_array();
    struct write_request req;
    if (validate_write_request((const char *)data, size, MAX_VALUE_BYTES, &req, errors)) {
        if (req.key_len < 1 || req.key_len > KEY_MAX_BYTES || req.value_len > MAX_VALUE_BYTES ||
            !utf8_valid(req.key, req.key_len) || !utf8_valid(req.value, req.value_len) ||
            json_array_size(errors) != 0)
            abort();
        write_request_cleanup(&req);
    } else if (json_array_size(errors) == 0) {
        abort(); /* a refusal without a reason */
    }
    json_t *reply = json_pack("{s:o}", "detail", errors);
    char *text = json_dumps(reply, JSON_COMPACT);
    if (text == NULL)
        abort(); /* the 422 body could not be written */
    free(text);
    json_decref(reply);
    return 0;
}
