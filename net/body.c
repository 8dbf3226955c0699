/*
 * body.c - the reserve body's fast path (see body.h): a reader for one small
 * JSON shape that refuses, rather than reports, whatever it does not expect.
 */
#include "body.h"

#include <string.h>

typedef struct reader {
    const char *p, *end;
} reader;

static void skip_ws(reader *r)
{
    while (r->p < r->end && (*r->p == ' ' || *r->p == '\t' || *r->p == '\n' || *r->p == '\r'))
        r->p++;
}

static bool take(reader *r, char c)
{
    skip_ws(r);
    if (r->p >= r->end || *r->p != c)
        return false;
    r->p++;
    return true;
}

/* A string of printable ASCII without escapes; *s and *len point into the
 * body. Anything else (escapes, UTF-8, control bytes) is for jansson. */
static bool string_plain(reader *r, const char **s, size_t *len)
{
    if (!take(r, '"'))
        return false;
    const char *start = r->p;
    while (r->p < r->end && *r->p != '"') {
        unsigned char c = (unsigned char)*r->p;
        if (c < 0x20 || c > 0x7e || c == '\\')
            return false;
        r->p++;
    }
    if (r->p >= r->end)
        return false;
    *s = start;
    *len = (size_t)(r->p - start);
    r->p++; /* the closing quote */
    return true;
}

/* A positive integer without sign, fraction, exponent or leading zero, of at
 * most 18 digits (below 2^63: what jansson reads as an integer). */
static bool positive_int(reader *r, uint64_t *out)
{
    skip_ws(r);
    if (r->p >= r->end || *r->p < '1' || *r->p > '9')
        return false;
    uint64_t v = 0;
    int digits = 0;
    while (r->p < r->end && *r->p >= '0' && *r->p <= '9') {
        if (++digits > 18)
            return false;
        v = v * 10 + (uint64_t)(*r->p - '0');
        r->p++;
    }
    /* A number must end here: 1.5, 1e3 and 12abc are not ours. */
    if (r->p < r->end && *r->p != ',' && *r->p != '}' && *r->p != ']' && *r->p != ' ' &&
        *r->p != '\t' && *r->p != '\n' && *r->p != '\r')
        return false;
    *out = v;
    return true;
}

static bool literal(reader *r, const char *word)
{
    skip_ws(r);
    size_t n = strlen(word);
    if ((size_t)(r->end - r->p) < n || memcmp(r->p, word, n) != 0)
        return false;
    r->p += n;
    return true;
}

enum { F_SHOWTIME = 1, F_SEATS = 2, F_COUNT = 4, F_CATEGORY = 8, F_ACCESSIBLE = 16 };

static int field_of(const char *k, size_t n)
{
    static const struct {
        const char *name;
        int flag;
    } fields[] = {{"showtime_id", F_SHOWTIME},
                  {"seats", F_SEATS},
                  {"count", F_COUNT},
                  {"category", F_CATEGORY},
                  {"accessible", F_ACCESSIBLE}};
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
        if (strlen(fields[i].name) == n && memcmp(fields[i].name, k, n) == 0)
            return fields[i].flag;
    return 0;
}

static bool seats_list(reader *r, uint32_t max_seats, net_reserve_args *out)
{
    if (!take(r, '['))
        return false;
    out->nseats = 0;
    do {
        const char *s;
        size_t len;
        if (out->nseats == max_seats || !string_plain(r, &s, &len) || len == 0 ||
            len >= ENGINE_LABEL_MAX)
            return false;
        memcpy(out->seats[out->nseats], s, len);
        out->seats[out->nseats][len] = '\0';
        out->nseats++;
    } while (take(r, ','));
    return take(r, ']');
}

bool net_reserve_body_fast(const char *body, size_t n, uint32_t max_seats, net_reserve_args *out)
{
    if (max_seats < 1 || max_seats > ENGINE_HOLD_SEATS_MAX)
        return false;
    reader r = {body, body + n};
    memset(out, 0, offsetof(net_reserve_args, seats));
    int seen = 0;
    if (!take(&r, '{'))
        return false;
    do {
        const char *k;
        size_t klen;
        if (!string_plain(&r, &k, &klen) || !take(&r, ':'))
            return false;
        int f = field_of(k, klen);
        if (f == 0 || (seen & f))
            return false; /* unknown or repeated: jansson says which */
        seen |= f;
        bool ok = true;
        uint64_t v = 0;
        const char *s;
        size_t len;
        switch (f) {
        case F_SHOWTIME:
            ok = positive_int(&r, &out->showtime_id);
            break;
        case F_SEATS:
            ok = seats_list(&r, max_seats, out);
            break;
        case F_COUNT:
            ok = positive_int(&r, &v) && v <= max_seats;
            out->count = (uint32_t)v;
            break;
        case F_CATEGORY:
            ok = string_plain(&r, &s, &len);
            if (ok && len < sizeof(out->category)) {
                memcpy(out->category, s, len);
                out->category[len] = '\0';
            }
            break;
        default: /* F_ACCESSIBLE */
            out->accessible = literal(&r, "true");
            ok = out->accessible || literal(&r, "false");
            break;
        }
        if (!ok)
            return false;
    } while (take(&r, ','));
    if (!take(&r, '}'))
        return false;
    skip_ws(&r);
    if (r.p != r.end)
        return false;
    /* The combinations the API accepts; any other goes the careful way. */
    if (!(seen & F_SHOWTIME))
        return false;
    if (seen & F_SEATS)
        return (seen & (F_COUNT | F_CATEGORY | F_ACCESSIBLE)) == 0;
    return (seen & F_COUNT) && (seen & F_CATEGORY);
}
