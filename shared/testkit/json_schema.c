/*
 * json_schema: a JSON Schema subset validator (see json_schema.h).
 */
#include "json_schema.h"

#include <regex.h>
#include <stdio.h>
#include <string.h>

#define REF_DEPTH_MAX 16 /* a $ref chain longer than this is a loop */

const json_t *json_schema_resolve(const json_t *root, const char *ref)
{
    if (ref == NULL || strncmp(ref, "#/", 2) != 0)
        return NULL;
    const json_t *node = root;
    const char *p = ref + 2;
    while (node != NULL && *p != '\0') {
        char name[256];
        size_t n = 0;
        for (; *p != '\0' && *p != '/' && n < sizeof name - 1; p++) {
            if (p[0] == '~' && p[1] == '1') /* RFC 6901: ~1 is '/', ~0 is '~' */
                name[n++] = '/', p++;
            else if (p[0] == '~' && p[1] == '0')
                name[n++] = '~', p++;
            else
                name[n++] = *p;
        }
        name[n] = '\0';
        node = json_object_get(node, name);
        if (*p == '/')
            p++;
    }
    return node;
}

const json_t *json_schema_deref(const json_t *root, const json_t *node)
{
    for (int depth = 0; node != NULL && depth < REF_DEPTH_MAX; depth++) {
        const json_t *ref = json_object_get(node, "$ref");
        if (!json_is_string(ref))
            return node;
        node = json_schema_resolve(root, json_string_value(ref));
    }
    return NULL;
}

static bool fail(char *err, size_t errlen, const char *where, const char *what)
{
    snprintf(err, errlen, "%s: %s", where, what);
    return false;
}

static bool type_matches(const char *type, const json_t *value)
{
    if (strcmp(type, "object") == 0)
        return json_is_object(value);
    if (strcmp(type, "array") == 0)
        return json_is_array(value);
    if (strcmp(type, "string") == 0)
        return json_is_string(value);
    if (strcmp(type, "integer") == 0)
        return json_is_integer(value);
    if (strcmp(type, "number") == 0)
        return json_is_number(value);
    if (strcmp(type, "boolean") == 0)
        return json_is_boolean(value);
    if (strcmp(type, "null") == 0)
        return json_is_null(value);
    return false;
}

static bool check_type(const json_t *type, const json_t *value)
{
    if (json_is_string(type))
        return type_matches(json_string_value(type), value);
    size_t i;
    const json_t *one;
    json_array_foreach(type, i, one) {
        if (json_is_string(one) && type_matches(json_string_value(one), value))
            return true;
    }
    return false;
}

static bool check_enum(const json_t *choices, const json_t *value)
{
    size_t i;
    const json_t *one;
    json_array_foreach(choices, i, one) {
        if (json_equal((json_t *)one, (json_t *)value))
            return true;
    }
    return false;
}

static bool check_pattern(const char *pattern, const char *text)
{
    regex_t re;
    if (regcomp(&re, pattern, REG_EXTENDED | REG_NOSUB) != 0)
        return false;
    bool ok = regexec(&re, text, 0, NULL, 0) == 0;
    regfree(&re);
    return ok;
}

static bool validate_at(const json_t *root, const json_t *schema, const json_t *value,
                        const char *where, char *err, size_t errlen);

static bool validate_object(const json_t *root, const json_t *schema, const json_t *value,
                            const char *where, char *err, size_t errlen)
{
    char path[512];
    const json_t *required = json_object_get(schema, "required");
    size_t i;
    const json_t *name;
    json_array_foreach(required, i, name) {
        if (json_is_string(name) && json_object_get(value, json_string_value(name)) == NULL) {
            snprintf(path, sizeof path, "%s.%s", where, json_string_value(name));
            return fail(err, errlen, path, "required member missing");
        }
    }
    const json_t *properties = json_object_get(schema, "properties");
    const json_t *additional = json_object_get(schema, "additionalProperties");
    const char *key;
    json_t *member;
    json_object_foreach((json_t *)value, key, member) {
        snprintf(path, sizeof path, "%s.%s", where, key);
        const json_t *sub = json_object_get(properties, key);
        if (sub == NULL && json_is_false(additional))
            return fail(err, errlen, path, "member not in the schema (additionalProperties false)");
        if (sub == NULL && json_is_object(additional))
            sub = additional;
        if (sub != NULL && !validate_at(root, sub, member, path, err, errlen))
            return false;
    }
    return true;
}

static bool validate_at(const json_t *root, const json_t *schema, const json_t *value,
                        const char *where, char *err, size_t errlen)
{
    schema = json_schema_deref(root, schema);
    if (schema == NULL)
        return fail(err, errlen, where, "the schema has a $ref that does not resolve");
    if (json_is_true(schema))
        return true;
    const json_t *type = json_object_get(schema, "type");
    if (type != NULL && !check_type(type, value))
        return fail(err, errlen, where, "wrong type");
    const json_t *choices = json_object_get(schema, "enum");
    if (choices != NULL && !check_enum(choices, value))
        return fail(err, errlen, where, "not one of the enum's values");
    if (json_is_string(value)) {
        size_t len = json_string_length(value);
        const json_t *min = json_object_get(schema, "minLength");
        const json_t *max = json_object_get(schema, "maxLength");
        const json_t *pattern = json_object_get(schema, "pattern");
        if (json_is_integer(min) && (json_int_t)len < json_integer_value(min))
            return fail(err, errlen, where, "shorter than minLength");
        if (json_is_integer(max) && (json_int_t)len > json_integer_value(max))
            return fail(err, errlen, where, "longer than maxLength");
        if (json_is_string(pattern) &&
            !check_pattern(json_string_value(pattern), json_string_value(value)))
            return fail(err, errlen, where, "does not match the pattern");
    }
    if (json_is_object(value))
        return validate_object(root, schema, value, where, err, errlen);
    if (json_is_array(value)) {
        const json_t *min = json_object_get(schema, "minItems");
        if (json_is_integer(min) && (json_int_t)json_array_size(value) < json_integer_value(min))
            return fail(err, errlen, where, "fewer items than minItems");
        const json_t *items = json_object_get(schema, "items");
        size_t i;
        const json_t *item;
        json_array_foreach(value, i, item) {
            char path[512];
            snprintf(path, sizeof path, "%s[%zu]", where, i);
            if (items != NULL && !validate_at(root, items, item, path, err, errlen))
                return false;
        }
    }
    return true;
}

bool json_schema_validate(const json_t *root, const json_t *schema, const json_t *value,
                          char *err, size_t errlen)
{
    return validate_at(root, schema, value, "$", err, errlen);
}
