/*
 * jtext.c - JSON text built in place (net_jtext, net_internal.h): the seat
 * path's answers, seat maps and event streams.
 */
#include "net_internal.h"

#include <stdlib.h>
#include <string.h>

void net__jt_init(net_jtext *t)
{
    t->buf = t->small;
    t->n = 0;
    t->cap = sizeof(t->small);
}

void net__jt_free(net_jtext *t)
{
    if (t->buf != t->small)
        free(t->buf);
    net__jt_init(t);
}

void net__jt_put(net_jtext *t, const char *s, size_t n)
{
    if (t->n + n > t->cap) {
        size_t cap = t->cap * 2;
        while (cap < t->n + n)
            cap *= 2;
        char *b = malloc(cap);
        NET_ASSERT(b != NULL);
        memcpy(b, t->buf, t->n);
        if (t->buf != t->small)
            free(t->buf);
        t->buf = b;
        t->cap = cap;
    }
    memcpy(t->buf + t->n, s, n);
    t->n += n;
}

void net__jt_lit(net_jtext *t, const char *s)
{
    net__jt_put(t, s, strlen(s));
}

void net__jt_u64(net_jtext *t, uint64_t v)
{
    char d[24];
    size_t i = sizeof(d);
    do {
        d[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    net__jt_put(t, d + i, sizeof(d) - i);
}

void net__jt_i64(net_jtext *t, int64_t v)
{
    if (v < 0) {
        net__jt_lit(t, "-");
        net__jt_u64(t, (uint64_t)0 - (uint64_t)v);
    } else {
        net__jt_u64(t, (uint64_t)v);
    }
}

/* A JSON string literal: quotes, backslashes and control bytes escaped. */
void net__jt_str(net_jtext *t, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    net__jt_put(t, "\"", 1);
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            net__jt_put(t, e, 2);
        } else if (c < 0x20) {
            char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            net__jt_put(t, e, 6);
        } else {
            net__jt_put(t, (const char *)&c, 1);
        }
    }
    net__jt_put(t, "\"", 1);
}

char *net__jt_take(net_jtext *t, size_t *len)
{
    char *out;
    if (t->buf == t->small) {
        out = malloc(t->n > 0 ? t->n : 1);
        NET_ASSERT(out != NULL);
        memcpy(out, t->buf, t->n);
    } else {
        out = t->buf;
    }
    *len = t->n;
    net__jt_init(t);
    return out;
}
