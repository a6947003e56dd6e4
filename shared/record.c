/*
 * record: one key/value row and its conversions (see record.h).
 */
#include "record.h"

#include "xalloc.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

struct record {
    char *key;        /* the key, NUL-terminated copy */
    size_t key_len;   /* its length in bytes */
    char *value;      /* the value, NUL-terminated copy */
    size_t value_len; /* its length in bytes */
    char *created_at; /* RFC 3339 UTC text, as the source formatted it */
    char *updated_at; /* likewise */
    json_t *extras;   /* optional members a layer adds (an object), or NULL */
};

struct record *record_create(const char *key, size_t key_len, const char *value, size_t value_len,
                             const char *created_at, const char *updated_at)
{
    struct record *rec = xcalloc(1, sizeof *rec);
    rec->key = xstrndup(key, key_len);
    rec->key_len = key_len;
    rec->value = xmalloc(value_len + 1); /* a value is binary-safe here, as in jansson */
    memcpy(rec->value, value, value_len);
    rec->value[value_len] = '\0';
    rec->value_len = value_len;
    rec->created_at = xstrdup(created_at);
    rec->updated_at = xstrdup(updated_at);
    return rec;
}

void record_free(struct record *rec)
{
    if (rec == NULL)
        return;
    free(rec->key);
    free(rec->value);
    free(rec->created_at);
    free(rec->updated_at);
    json_decref(rec->extras);
    free(rec);
}

const char *record_key(const struct record *rec, size_t *len)
{
    *len = rec->key_len;
    return rec->key;
}

const char *record_value(const struct record *rec, size_t *len)
{
    *len = rec->value_len;
    return rec->value;
}

const char *record_created_at(const struct record *rec)
{
    return rec->created_at;
}

const char *record_updated_at(const struct record *rec)
{
    return rec->updated_at;
}

static bool is_contract_member(const char *name)
{
    static const char *const members[] = {"key",        "value",   "created_at",
                                          "updated_at", "success", "message"};
    for (size_t i = 0; i < sizeof members / sizeof members[0]; i++)
        if (strcmp(name, members[i]) == 0)
            return true;
    return false;
}

void record_set_extra(struct record *rec, const char *name, json_t *value)
{
    if (value == NULL)
        return;
    if (is_contract_member(name)) {
        json_decref(value);
        return;
    }
    if (rec->extras == NULL)
        rec->extras = json_object();
    json_object_set_new(rec->extras, name, value);
}

json_t *record_extra(const struct record *rec, const char *name)
{
    return rec->extras ? json_object_get(rec->extras, name) : NULL;
}

char *record_to_cache(const struct record *rec, size_t *len)
{
    json_t *entry = json_pack("{s:s%, s:s, s:s}", "value", rec->value, rec->value_len, "created_at",
                              rec->created_at, "updated_at", rec->updated_at);
    if (rec->extras != NULL)
        json_object_update(entry, rec->extras);
    char *text = json_dumps(entry, JSON_COMPACT);
    json_decref(entry);
    *len = strlen(text);
    return text;
}

struct record *record_from_cache(const char *key, size_t key_len, const char *data, size_t len)
{
    json_t *entry = json_loadb(data, len, JSON_ALLOW_NUL, NULL); /* as it was written */
    json_t *value = json_object_get(entry, "value");
    json_t *created = json_object_get(entry, "created_at");
    json_t *updated = json_object_get(entry, "updated_at");
    struct record *rec = NULL;
    if (json_is_string(value) && json_is_string(created) && json_is_string(updated)) {
        rec = record_create(key, key_len, json_string_value(value), json_string_length(value),
                            json_string_value(created), json_string_value(updated));
        const char *name;
        json_t *member;
        json_object_foreach(entry, name, member)
        {
            if (!is_contract_member(name))
                record_set_extra(rec, name, json_incref(member));
        }
    }
    json_decref(entry);
    return rec;
}

/* Sets the member name (a constant, so not checked again) to value, whose reference it takes;
 * false when value is NULL (a string jansson refused) or obj is. */
static bool put(json_t *obj, const char *name, json_t *value)
{
    return value != NULL && json_object_set_new_nocheck(obj, name, value) == 0;
}

json_t *record_read_reply(const struct record *rec, const char *key, size_t key_len)
{
    if (rec == NULL)
        return json_pack("{s:b, s:s%, s:n, s:n, s:n, s:s}", "success", 0, "key", key, key_len,
                         "value", "created_at", "updated_at", "message", "Key not found");
    /* Built member by member: json_pack's parsing of its format and of every member name cost
     * half as much again as the object itself, on every read (callgrind). The strings are
     * checked as json_pack checks them (UTF-8): a value jansson refuses makes no reply (NULL). */
    json_t *reply = json_object();
    bool ok = put(reply, "success", json_true()) &&
              put(reply, "key", json_stringn(rec->key, rec->key_len)) &&
              put(reply, "value", json_stringn(rec->value, rec->value_len)) &&
              put(reply, "created_at", json_string(rec->created_at)) &&
              put(reply, "updated_at", json_string(rec->updated_at)) &&
              put(reply, "message", json_null());
    if (!ok) {
        json_decref(reply);
        return NULL;
    }
    if (rec->extras != NULL)
        json_object_update_missing(reply, rec->extras);
    return reply;
}

json_t *record_write_reply(const char *key, size_t key_len)
{
    return json_pack("{s:b, s:s%, s:s}", "success", 1, "key", key, key_len, "message",
                     "Data written successfully");
}
