/*
 * api_keys: API keys as SHA-256 digests with scopes, checked in constant time (api_keys.h).
 */
#include "api_keys.h"

#include "xalloc.h"

#include <ctype.h>
#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_KEYS 1024 /* bound on configured keys (each check compares with all of them) */

/* One configured key: its digest and what it may do. */
struct api_key {
    unsigned char digest[32]; /* SHA-256 of the key */
    unsigned scopes;          /* API_SCOPE_* bits */
};

struct api_keys {
    struct api_key *keys; /* the configured keys */
    size_t count;         /* entries used */
    EVP_MD *sha256;       /* fetched once: EVP_sha256() looks it up again on every digest */
    EVP_MD_CTX *ctx;      /* reused by every digest (one event loop: never two at once) */
};

/* SHA-256 of data with the digest fetched at creation and the one context, re-initialised:
 * a check then costs the hash itself, not a provider lookup and a context's allocation. */
static void sha256(const struct api_keys *keys, const char *data, size_t len,
                   unsigned char out[32])
{
    unsigned int n = 32;
    if (!EVP_DigestInit_ex2(keys->ctx, keys->sha256, NULL) ||
        !EVP_DigestUpdate(keys->ctx, data, len) || !EVP_DigestFinal_ex(keys->ctx, out, &n))
        abort(); /* only fails without memory */
}

bool api_scopes_parse(const char *text, size_t len, unsigned *scopes)
{
    static const struct {
        const char *name;
        unsigned bit;
    } names[] = {{"read", API_SCOPE_READ}, {"write", API_SCOPE_WRITE}, {"admin", API_SCOPE_ADMIN}};
    *scopes = 0;
    const char *end = text + len;
    while (text < end) {
        const char *plus = memchr(text, '+', (size_t)(end - text));
        size_t n = (size_t)((plus ? plus : end) - text);
        unsigned bit = 0;
        for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
            if (strlen(names[i].name) == n && memcmp(names[i].name, text, n) == 0)
                bit = names[i].bit;
        if (bit == 0)
            return false;
        *scopes |= bit;
        text += n + (plus != NULL);
    }
    return *scopes != 0;
}

/* Adds "KEY:scopes" (len bytes, trimmed by the caller). */
static bool add_entry(struct api_keys *keys, const char *entry, size_t len, const char *where,
                      char *err, size_t errlen)
{
    const char *colon = memchr(entry, ':', len);
    unsigned scopes;
    if (colon == NULL || colon == entry) {
        snprintf(err, errlen, "%s: an entry is not KEY:scopes (e.g. \"k3y:read+write\")", where);
        return false;
    }
    if (!api_scopes_parse(colon + 1, len - (size_t)(colon + 1 - entry), &scopes)) {
        snprintf(err, errlen, "%s: scopes must be read, write and/or admin joined by '+'", where);
        return false;
    }
    if (keys->count == MAX_KEYS) {
        snprintf(err, errlen, "%s: more than %d keys", where, MAX_KEYS);
        return false;
    }
    struct api_key *k = &keys->keys[keys->count++];
    sha256(keys, entry, (size_t)(colon - entry), k->digest);
    k->scopes = scopes;
    return true;
}

static void trim(const char **s, size_t *len)
{
    while (*len > 0 && isspace((unsigned char)**s))
        (*s)++, (*len)--;
    while (*len > 0 && isspace((unsigned char)(*s)[*len - 1]))
        (*len)--;
}

static bool parse_list(struct api_keys *keys, const char *spec, char sep, const char *where,
                       char *err, size_t errlen)
{
    while (*spec) {
        const char *end = strchr(spec, sep);
        size_t len = end ? (size_t)(end - spec) : strlen(spec);
        const char *entry = spec;
        trim(&entry, &len);
        if (len > 0 && entry[0] != '#' && !add_entry(keys, entry, len, where, err, errlen))
            return false;
        spec += (end ? (size_t)(end - spec) + 1 : strlen(spec));
    }
    return true;
}

/* Reads the whole file (start-up only, before the event loop serves anyone). */
static char *read_file(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        snprintf(err, errlen, "API_KEYS_FILE %s: %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 4096, len = 0;
    char *text = xmalloc(cap);
    size_t n;
    while ((n = fread(text + len, 1, cap - len - 1, f)) > 0) {
        len += n;
        if (len + 1 == cap)
            text = xrealloc(text, cap *= 2);
    }
    text[len] = '\0';
    fclose(f);
    return text;
}

struct api_keys *api_keys_create(const char *spec, const char *file, char *err, size_t errlen)
{
    struct api_keys *keys = xcalloc(1, sizeof *keys);
    keys->keys = xcalloc(MAX_KEYS, sizeof *keys->keys);
    keys->sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
    keys->ctx = EVP_MD_CTX_new();
    if (keys->sha256 == NULL || keys->ctx == NULL) {
        snprintf(err, errlen, "libcrypto has no SHA-256");
        goto fail;
    }
    if (spec != NULL && !parse_list(keys, spec, ',', "API_KEYS", err, errlen))
        goto fail;
    if (file != NULL && *file) {
        char *text = read_file(file, err, errlen);
        bool ok = text != NULL && parse_list(keys, text, '\n', "API_KEYS_FILE", err, errlen);
        free(text);
        if (!ok)
            goto fail;
    }
    if (keys->count == 0) {
        snprintf(err, errlen,
                 "no API key configured: set API_KEYS (\"KEY:read+write+admin\") "
                 "or API_KEYS_FILE");
        goto fail;
    }
    return keys;
fail:
    api_keys_free(keys);
    return NULL;
}

void api_keys_free(struct api_keys *keys)
{
    if (keys == NULL)
        return;
    OPENSSL_cleanse(keys->keys, MAX_KEYS * sizeof *keys->keys);
    free(keys->keys);
    EVP_MD_CTX_free(keys->ctx);
    EVP_MD_free(keys->sha256);
    free(keys);
}

size_t api_keys_count(const struct api_keys *keys)
{
    return keys->count;
}

enum api_key_result api_keys_check(const struct api_keys *keys, const char *presented,
                                   unsigned need, char id[API_KEY_ID_LEN + 1])
{
    if (presented == NULL || *presented == '\0')
        return API_KEY_MISSING;
    unsigned char digest[32];
    sha256(keys, presented, strlen(presented), digest);
    unsigned scopes = 0;
    bool found = false;
    for (size_t i = 0; i < keys->count; i++) { /* all of them: no early exit */
        bool same = CRYPTO_memcmp(digest, keys->keys[i].digest, sizeof digest) == 0;
        found |= same;
        scopes |= same ? keys->keys[i].scopes : 0;
    }
    if (!found)
        return API_KEY_UNKNOWN;
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < API_KEY_ID_LEN / 2; i++) { /* 8 snprintf calls cost more than the hash */
        id[2 * i] = hex[digest[i] >> 4];
        id[2 * i + 1] = hex[digest[i] & 15];
    }
    id[API_KEY_ID_LEN] = '\0';
    return (scopes & need) == need ? API_KEY_OK : API_KEY_FORBIDDEN;
}
