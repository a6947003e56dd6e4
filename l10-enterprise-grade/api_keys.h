/*
 * api_keys: who may call, and what for.
 *
 * Keys come from the API_KEYS setting ("KEY:read+write,OTHER:read+write+admin") and/or a file
 * (API_KEYS_FILE: one "KEY:scopes" per line, # comments), read once at start-up. Only their
 * SHA-256 digests are kept: a memory dump or a debugger shows no key. A presented key is hashed
 * the same way and compared with every stored digest in constant time (CRYPTO_memcmp, all of
 * them, no early exit), so the time of a refusal says nothing about how close a guess was.
 *
 * A key is named in logs and in the rate limiter by the first 16 hex digits of its digest
 * (its id): enough to tell keys apart, useless to call with. The key itself is never logged
 * and never echoed in a reply.
 *
 * Scopes: read (GET /read), write (POST /write), admin (/stats, /clear-cache); none implies
 * another. No key or an unknown one: 401; a known key without the route's scope: 403.
 */
#ifndef L10_API_KEYS_H
#define L10_API_KEYS_H

#include <stdbool.h>
#include <stddef.h>

enum api_scope { API_SCOPE_READ = 1, API_SCOPE_WRITE = 2, API_SCOPE_ADMIN = 4 };

enum api_key_result {
    API_KEY_OK,        /* known, with the scope */
    API_KEY_MISSING,   /* no key presented: 401 */
    API_KEY_UNKNOWN,   /* not one of ours: 401 */
    API_KEY_FORBIDDEN, /* ours, without the scope: 403 */
};

#define API_KEY_ID_LEN 16 /* hex digits of a key's id */

struct api_keys;

/* Parses the setting and the file (either may be "" ); NULL with a message in err when one is
 * malformed, names an unknown scope, or no key is configured at all. */
struct api_keys *api_keys_create(const char *spec, const char *file, char *err, size_t errlen);
/* NULL is a no-op. */
void api_keys_free(struct api_keys *keys);

size_t api_keys_count(const struct api_keys *keys);

/* Checks a presented key (NULL: none) against the scope it needs; writes the key's id (hex,
 * NUL-terminated) into id when the key is known (OK or FORBIDDEN). */
enum api_key_result api_keys_check(const struct api_keys *keys, const char *presented,
                                   unsigned need, char id[API_KEY_ID_LEN + 1])
    __attribute__((warn_unused_result));

/* Parses "read+write" into scope bits; false on an unknown word or an empty list. */
bool api_scopes_parse(const char *text, size_t len, unsigned *scopes)
    __attribute__((warn_unused_result));

#endif
