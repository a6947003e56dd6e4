/*
 * write_body: the usual POST /write body and its reply without a JSON library (write_body.h).
 */
#include "write_body.h"

#include "validate.h"

#include <event2/buffer.h>
#include <string.h>

static bool plain_byte(unsigned char c)
{
    return c >= 0x20 && c <= 0x7E && c != '"' && c != '\\';
}

/* A cursor over the body. */
struct scan {
    const char *p;   /* the next byte */
    const char *end; /* one past the last */
};

static void skip_space(struct scan *s)
{
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
        s->p++;
}

static bool expect(struct scan *s, char c)
{
    skip_space(s);
    if (s->p == s->end || *s->p != c)
        return false;
    s->p++;
    return true;
}

/* A string of plain bytes, its quotes consumed; false at anything else. */
static bool plain_string(struct scan *s, const char **text, size_t *len)
{
    if (!expect(s, '"'))
        return false;
    const char *start = s->p;
    while (s->p < s->end && plain_byte((unsigned char)*s->p))
        s->p++;
    if (s->p == s->end || *s->p != '"')
        return false; /* an escape, a control or non-ASCII byte, or the end: the core decides */
    *text = start;
    *len = (size_t)(s->p - start);
    s->p++;
    return true;
}

bool write_body_plain(const char *body, size_t len, size_t max_value_bytes, struct write_body *out)
{
    struct scan s = {body, body + len};
    bool have_key = false, have_value = false;
    struct write_body got = {0};
    if (!expect(&s, '{'))
        return false;
    for (int member = 0; member < 2; member++) {
        const char *name;
        size_t name_len;
        if (member == 1 && !expect(&s, ','))
            return false;
        if (!plain_string(&s, &name, &name_len) || !expect(&s, ':'))
            return false;
        if (name_len == 3 && memcmp(name, "key", 3) == 0 && !have_key) {
            have_key = plain_string(&s, &got.key, &got.key_len);
            if (!have_key)
                return false;
        } else if (name_len == 5 && memcmp(name, "value", 5) == 0 && !have_value) {
            have_value = plain_string(&s, &got.value, &got.value_len);
            if (!have_value)
                return false;
        } else {
            return false; /* another member, or one twice */
        }
    }
    if (!expect(&s, '}'))
        return false;
    skip_space(&s);
    if (s.p != s.end)
        return false;
    if (got.key_len < 1 || got.key_len > KEY_MAX_BYTES || got.value_len > max_value_bytes)
        return false; /* the core's 422 */
    *out = got;
    return true;
}

void write_body_queued_reply(struct evbuffer *out, const char *key, size_t key_len)
{
    static const char head[] = "{\"success\":true,\"key\":\"";
    static const char tail[] = "\",\"message\":\"Write queued successfully\",\"queued\":true}";
    evbuffer_add(out, head, sizeof head - 1);
    evbuffer_add(out, key, key_len);
    evbuffer_add(out, tail, sizeof tail - 1);
}
