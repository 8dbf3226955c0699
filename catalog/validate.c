/*
 * validate.c - request bodies to canonical catalog objects, and screen
 * layouts to engine layout specs; see catalog.h.
 *
 * Every refusal names the field (a path like "layout.rows[3].seats") and says
 * what would be accepted: these strings reach API users unchanged in HTTP 400
 * answers. Validation reads the body and the stored object, never changes
 * them, and builds the canonical object from scratch, so a canonical object
 * is always valid input again (updates re-validate the merged whole).
 */
#include "catalog_internal.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
    ROW_SEATS_MAX = 1000,    /* seats in one row */
    ROW_LABEL_MAX = 7,       /* bytes of a row label: label + 4 digits fits ENGINE_LABEL_MAX */
    PRICE_MAX = 100000000,   /* minor units */
    PASSWORD_HASH_MAX = 255, /* bytes; argon2id strings are about 100 */
    EMAIL_LOCAL_MAX = 64,    /* RFC 5321 */
    FIELD_MAX = sizeof(((catalog_problem *)0)->field),
    SCRATCH = 512 /* formatting room before a path or reason is cut to fit */
};

_Static_assert(ROW_LABEL_MAX + 4 < ENGINE_LABEL_MAX, "row label + seat number fits a seat label");
_Static_assert(ROW_SEATS_MAX <= 9999, "seat numbers have at most 4 digits");

/* ---- Problems ------------------------------------------------------------- */

/* Copies `src` into `dst`, cut to fit on a UTF-8 character boundary: problem
 * strings go into JSON, and half a character would make them invalid. */
static void copy_cut(char *dst, size_t cap, const char *src)
{
    size_t n = strlen(src);
    if (n >= cap) {
        n = cap - 1;
        while (n > 0 && ((unsigned char)src[n] & 0xC0) == 0x80)
            n--;
    }
    memcpy(dst, src, n);
    dst[n] = '\0';
}

/* Fills the problem and returns 1, the "refused" result of every check. */
__attribute__((format(printf, 3, 4))) static int fail(catalog_problem *p, const char *field,
                                                      const char *fmt, ...)
{
    if (p == NULL)
        return 1;
    char buf[SCRATCH];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    CATALOG_ASSERT(n >= 0);
    copy_cut(p->field, sizeof p->field, field);
    copy_cut(p->reason, sizeof p->reason, buf);
    return 1;
}

/* A field path, formatted into `buf` (FIELD_MAX bytes), cut to fit. */
typedef struct path {
    char s[FIELD_MAX];
} path;

__attribute__((format(printf, 2, 3))) static const char *pathf(path *out, const char *fmt, ...)
{
    char buf[SCRATCH];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    CATALOG_ASSERT(n >= 0);
    copy_cut(out->s, sizeof out->s, buf);
    return out->s;
}

/* ---- Text ----------------------------------------------------------------- */

static bool utf8_valid(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t len;
        uint32_t cp, min;
        if ((c & 0xE0) == 0xC0) {
            len = 2, cp = c & 0x1F, min = 0x80;
        } else if ((c & 0xF0) == 0xE0) {
            len = 3, cp = c & 0x0F, min = 0x800;
        } else if ((c & 0xF8) == 0xF0) {
            len = 4, cp = c & 0x07, min = 0x10000;
        } else {
            return false;
        }
        if (n - i < len)
            return false;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return false;
            cp = cp << 6 | (s[i + k] & 0x3Fu);
        }
        /* Overlong forms, surrogates and beyond Unicode are not UTF-8. */
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += len;
    }
    return true;
}

/* C0 controls, DEL and C1 controls (U+0080..U+009F, 0xC2 0x80..0x9F in UTF-8). */
static bool has_control(const unsigned char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (s[i] < 0x20 || s[i] == 0x7F)
            return true;
        if (s[i] == 0xC2 && i + 1 < n && s[i + 1] >= 0x80 && s[i + 1] <= 0x9F)
            return true;
    }
    return false;
}

static bool is_blank(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (s[i] != ' ')
            return false;
    }
    return true;
}

static bool is_alnum(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

static char lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

/* A string of min..max bytes of UTF-8 without control characters; blank
 * (spaces only) counts as empty when min > 0. */
static int check_text(const json_t *v, const char *field, size_t min, size_t max,
                      catalog_problem *p)
{
    if (!json_is_string(v))
        return fail(p, field, "must be a string");
    const char *s = json_string_value(v);
    size_t n = json_string_length(v);
    if (!utf8_valid((const unsigned char *)s, n))
        return fail(p, field, "must be valid UTF-8");
    if (has_control((const unsigned char *)s, n))
        return fail(p, field, "must not contain control characters (such as newlines or tabs)");
    if (n < min || n > max || (min > 0 && is_blank(s, n))) {
        if (min == 0)
            return fail(p, field, "must be at most %zu bytes long (UTF-8)", max);
        if (n == 0 || is_blank(s, n))
            return fail(p, field, "must not be empty");
        return fail(p, field, "must be %zu to %zu bytes long (UTF-8)", min, max);
    }
    return 0;
}

/* ---- Numbers -------------------------------------------------------------- */

static bool int_in(const json_t *v, json_int_t min, json_int_t max, json_int_t *out)
{
    if (!json_is_integer(v))
        return false;
    json_int_t x = json_integer_value(v);
    if (x < min || x > max)
        return false;
    *out = x;
    return true;
}

/* ---- Time ----------------------------------------------------------------- */

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
 * days_from_civil): timegm() is not POSIX, and the result must not depend on
 * the process time zone. */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    const int64_t era = (y >= 0 ? y : y - 399) / 400;
    const unsigned yoe = (unsigned)(y - era * 400);
    const unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static bool leap(unsigned y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static unsigned days_in_month(unsigned y, unsigned m)
{
    static const unsigned d[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return m == 2 && leap(y) ? 29 : d[m - 1];
}

static bool digits(const char *s, size_t n, unsigned *out)
{
    unsigned v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    *out = v;
    return true;
}

/* "YYYY-MM-DDTHH:MM:SSZ" (RFC 3339, UTC, no offset, no leap second); with
 * `fraction`, ".d" up to ".ddddddddd" may come before the Z (dropped below a
 * millisecond). Returns 0 with *ms, or 1 with *why (a static sentence). */
static int parse_utc(const char *s, size_t n, bool fraction, int64_t *ms, const char **why);

int catalog_time_parse(const char *s, size_t n, int64_t *ms, const char **why)
{
    return parse_utc(s, n, false, ms, why);
}

static int parse_utc(const char *s, size_t n, bool fraction, int64_t *ms, const char **why)
{
    static const char *const format =
        "must be a UTC time written as YYYY-MM-DDTHH:MM:SSZ, e.g. \"2026-11-21T18:30:00Z\"";
    unsigned y, mo, d, h, mi, se, frac_ms = 0;
    *why = format;
    if (n < 20 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':' ||
        s[n - 1] != 'Z' || !digits(s, 4, &y) || !digits(s + 5, 2, &mo) || !digits(s + 8, 2, &d) ||
        !digits(s + 11, 2, &h) || !digits(s + 14, 2, &mi) || !digits(s + 17, 2, &se))
        return 1;
    if (n > 20) {
        /* Only a fraction may sit between the seconds and the Z. */
        size_t fd = n - 21; /* fraction digits */
        unsigned f;
        if (!fraction || s[19] != '.' || fd < 1 || fd > 9 || !digits(s + 20, fd, &f))
            return 1;
        unsigned scale = 1;
        for (size_t i = 0; i < fd; i++)
            scale *= 10;
        frac_ms = (unsigned)((uint64_t)f * 1000 / scale);
    }
    if (y < 1970) {
        *why = "must be in 1970 or later";
        return 1;
    }
    if (mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo)) {
        *why = "names a date that does not exist";
        return 1;
    }
    if (h > 23 || mi > 59 || se > 59) {
        *why = "has a time of day outside 00:00:00 to 23:59:59";
        return 1;
    }
    int64_t days = days_from_civil(y, mo, d);
    *ms = ((days * 24 + h) * 60 + mi) * INT64_C(60000) + (int64_t)se * 1000 + frac_ms;
    return 0;
}

/* ---- Layouts -------------------------------------------------------------- */

/* One row of a layout, checked. Seat numbers are 1-based. */
typedef struct row_info {
    char label[ROW_LABEL_MAX + 1];
    uint32_t category;
    uint32_t seats;
    uint8_t flags[ROW_SEATS_MAX + 1];    /* ENGINE_SEAT_FLAG_* of seat n */
    bool aisle_after[ROW_SEATS_MAX + 1]; /* an aisle right after seat n */
} row_info;

static const char *const row_fields[] = {"accessible", "aisles_after", "blocked", "category",
                                         "companion",  "label",        "seats"};

static const char *flag_list(uint8_t flag)
{
    switch (flag) {
    case ENGINE_SEAT_FLAG_ACCESSIBLE:
        return "accessible";
    case ENGINE_SEAT_FLAG_COMPANION:
        return "companion";
    default:
        CATALOG_ASSERT(flag == ENGINE_SEAT_FLAG_BLOCKED);
        return "blocked";
    }
}

/* Returns the lexicographically smallest key of `obj` not in `known` (so
 * the refusal does not depend on key order), or NULL. */
static const char *unknown_key(const json_t *obj, const char *const *known, size_t nknown)
{
    const char *worst = NULL;
    const char *key;
    json_t *val;
    /* jansson's iteration takes a non-const object; nothing is modified. */
    json_object_foreach((json_t *)obj, key, val)
    {
        bool found = false;
        for (size_t i = 0; i < nknown && !found; i++)
            found = strcmp(key, known[i]) == 0;
        if (!found && (worst == NULL || strcmp(key, worst) < 0))
            worst = key;
    }
    return worst;
}

/* Marks the seats listed in row[name] with `flag`. */
static int seat_list(const json_t *row, uint32_t r, uint8_t flag, row_info *ri, catalog_problem *p)
{
    const char *name = flag_list(flag);
    const json_t *a = json_object_get(row, name);
    path f;
    if (a == NULL)
        return 0;
    if (!json_is_array(a))
        return fail(p, pathf(&f, "layout.rows[%u].%s", r, name),
                    "must be an array of seat numbers (1 to %u)", ri->seats);
    for (size_t i = 0; i < json_array_size(a); i++) {
        json_int_t n;
        if (!int_in(json_array_get(a, i), 1, ri->seats, &n))
            return fail(p, pathf(&f, "layout.rows[%u].%s[%zu]", r, name, i),
                        "must be a seat number from 1 to %u (the row has %u seats)", ri->seats,
                        ri->seats);
        uint8_t *fl = &ri->flags[n];
        if (*fl == flag)
            return fail(p, pathf(&f, "layout.rows[%u].%s[%zu]", r, name, i),
                        "lists seat %u a second time", (unsigned)n);
        if (*fl != 0)
            return fail(p, pathf(&f, "layout.rows[%u].%s[%zu]", r, name, i),
                        "seat %u is already listed in %s; a seat can be only one of accessible, "
                        "companion or blocked",
                        (unsigned)n, flag_list(*fl));
        *fl = flag;
    }
    return 0;
}

static int row_check(const json_t *row, uint32_t r, const engine_layout_spec *spec, row_info *ri,
                     catalog_problem *p)
{
    const uint32_t ncat = spec->category_count;
    path f;
    memset(ri, 0, sizeof(*ri));
    if (!json_is_object(row))
        return fail(p, pathf(&f, "layout.rows[%u]", r),
                    "must be an object with label, category and seats");
    const char *bad = unknown_key(row, row_fields, sizeof row_fields / sizeof row_fields[0]);
    if (bad != NULL)
        return fail(p, pathf(&f, "layout.rows[%u].%s", r, bad),
                    "is not a field of a row (known: label, category, seats, aisles_after, "
                    "accessible, companion, blocked)");

    const json_t *v = json_object_get(row, "label");
    pathf(&f, "layout.rows[%u].label", r);
    if (v == NULL)
        return fail(p, f.s, "is required");
    if (!json_is_string(v))
        return fail(p, f.s, "must be a string of 1 to %d letters or digits", ROW_LABEL_MAX);
    const char *s = json_string_value(v);
    size_t n = json_string_length(v);
    bool ok = n >= 1 && n <= ROW_LABEL_MAX;
    for (size_t i = 0; ok && i < n; i++)
        ok = is_alnum(s[i]);
    if (!ok)
        return fail(p, f.s, "must be 1 to %d letters or digits (A-Z, a-z, 0-9)", ROW_LABEL_MAX);
    memcpy(ri->label, s, n);

    v = json_object_get(row, "category");
    pathf(&f, "layout.rows[%u].category", r);
    if (v == NULL)
        return fail(p, f.s, "is required");
    ri->category = ncat;
    for (uint32_t c = 0; json_is_string(v) && c < ncat; c++) {
        if (strcmp(json_string_value(v), spec->category_names[c]) == 0 &&
            strlen(spec->category_names[c]) == json_string_length(v))
            ri->category = c;
    }
    if (ri->category == ncat)
        return fail(p, f.s, "must name one of the layout's categories");

    v = json_object_get(row, "seats");
    pathf(&f, "layout.rows[%u].seats", r);
    json_int_t seats;
    if (v == NULL)
        return fail(p, f.s, "is required");
    if (!int_in(v, 1, ROW_SEATS_MAX, &seats))
        return fail(p, f.s, "must be an integer from 1 to %d", ROW_SEATS_MAX);
    ri->seats = (uint32_t)seats;

    v = json_object_get(row, "aisles_after");
    if (v != NULL) {
        pathf(&f, "layout.rows[%u].aisles_after", r);
        if (!json_is_array(v))
            return fail(p, f.s, "must be an array of seat numbers, each followed by an aisle");
        json_int_t prev = 0;
        for (size_t i = 0; i < json_array_size(v); i++) {
            json_int_t a;
            pathf(&f, "layout.rows[%u].aisles_after[%zu]", r, i);
            if (ri->seats == 1)
                return fail(p, f.s, "a row of one seat has no room for an aisle");
            if (!int_in(json_array_get(v, i), 1, ri->seats - 1, &a))
                return fail(p, f.s,
                            "must be a seat number from 1 to %u (an aisle lies between two seats "
                            "of the row)",
                            ri->seats - 1);
            if (a <= prev)
                return fail(p, f.s,
                            "must be greater than the entry before it (list each aisle once, in "
                            "increasing order)");
            ri->aisle_after[a] = true;
            prev = a;
        }
    }
    int rc = seat_list(row, r, ENGINE_SEAT_FLAG_ACCESSIBLE, ri, p);
    if (rc == 0)
        rc = seat_list(row, r, ENGINE_SEAT_FLAG_COMPANION, ri, p);
    if (rc == 0)
        rc = seat_list(row, r, ENGINE_SEAT_FLAG_BLOCKED, ri, p);
    return rc;
}

/* Row labels seen so far: an open-addressing table of row index + 1 over
 * labels packed into 64 bits (at most 7 bytes, NUL-padded: packing is
 * one-to-one). Linear in the rows, where comparing all pairs is not. */
typedef struct label_set {
    uint64_t *keys;
    uint32_t *slots;
    uint32_t mask;
} label_set;

static uint64_t label_pack(const char *label)
{
    uint64_t v = 0;
    for (size_t i = 0; i < ROW_LABEL_MAX && label[i] != '\0'; i++)
        v |= (uint64_t)(unsigned char)label[i] << (8 * i);
    return v;
}

static int label_set_init(label_set *s, uint32_t rows)
{
    uint32_t n = 16;
    while (n < rows * 2)
        n <<= 1;
    s->slots = calloc(n, sizeof(*s->slots));
    s->keys = calloc(rows, sizeof(*s->keys));
    s->mask = n - 1;
    return s->slots == NULL || s->keys == NULL ? -ENOMEM : 0;
}

/* Adds row `r`'s label; returns the row that had it first (`r` when new). */
static uint32_t label_set_add(label_set *s, const char *label, uint32_t r)
{
    uint64_t key = label_pack(label);
    uint32_t i = (uint32_t)((key * UINT64_C(0x9E3779B97F4A7C15)) >> 40) & s->mask;
    while (s->slots[i] != 0) {
        uint32_t other = s->slots[i] - 1;
        if (s->keys[other] == key)
            return other;
        i = (i + 1) & s->mask;
    }
    s->keys[r] = key;
    s->slots[i] = r + 1;
    return r;
}

/* Appends the seat numbers of `ri` that carry `flag` (ascending) as row[name]. */
static int canon_list(json_t *row, const char *name, const row_info *ri, uint8_t flag, bool aisles)
{
    json_t *a = json_array();
    if (json_object_set_new(row, name, a) != 0)
        return -ENOMEM;
    for (uint32_t n = 1; n <= ri->seats; n++) {
        bool in = aisles ? ri->aisle_after[n] : ri->flags[n] == flag;
        if (in && json_array_append_new(a, json_integer(n)) != 0)
            return -ENOMEM;
    }
    return 0;
}

static json_t *canon_row(const row_info *ri, const char *category)
{
    json_t *row = json_object();
    if (row == NULL || json_object_set_new(row, "label", json_string(ri->label)) != 0 ||
        json_object_set_new(row, "category", json_string(category)) != 0 ||
        json_object_set_new(row, "seats", json_integer(ri->seats)) != 0 ||
        canon_list(row, "aisles_after", ri, 0, true) != 0 ||
        canon_list(row, "accessible", ri, ENGINE_SEAT_FLAG_ACCESSIBLE, false) != 0 ||
        canon_list(row, "companion", ri, ENGINE_SEAT_FLAG_COMPANION, false) != 0 ||
        canon_list(row, "blocked", ri, ENGINE_SEAT_FLAG_BLOCKED, false) != 0) {
        json_decref(row);
        return NULL;
    }
    return row;
}

void catalog_layout_free(catalog_layout *l)
{
    if (l == NULL)
        return;
    free(l->seats);
    free(l->row_labels);
    memset(l, 0, sizeof(*l));
}

/* The engine's refusal of a spec we built, said in terms of the layout JSON.
 * Our own checks leave the engine only cross-row label clashes to find; the
 * fallbacks keep any other refusal precise enough to act on. */
static int engine_problem_map(const engine_problem *ep, const catalog_layout *l,
                              const uint32_t *row_first, catalog_problem *p)
{
    path f;
    const char *reason = ep->reason != NULL ? ep->reason : "invalid";
    const char *field = ep->field != NULL ? ep->field : "";
    if (strcmp(field, "seats") == 0 && ep->index < l->spec.seat_count) {
        uint32_t r = l->seats[ep->index].row;
        uint32_t n = ep->index - row_first[r] + 1;
        pathf(&f, "layout.rows[%u].label", r);
        if (strcmp(reason, "duplicate seat label") == 0)
            return fail(p, f.s,
                        "seat %u of this row would be labelled \"%s\", like a seat of an earlier "
                        "row (a seat's label is its row label followed by its number)",
                        n, l->seats[ep->index].label);
        return fail(p, f.s, "seat %u: %s", n, reason);
    }
    if (strcmp(field, "row_labels") == 0 && ep->index < l->spec.row_count) {
        pathf(&f, "layout.rows[%u].label", ep->index);
        if (strcmp(reason, "duplicate row label") == 0)
            return fail(p, f.s, "must differ from the labels of the other rows");
        return fail(p, f.s, "%s", reason);
    }
    if (strcmp(field, "category_names") == 0)
        return fail(p, pathf(&f, "layout.categories[%u]", ep->index), "%s", reason);
    if (strcmp(field, "best_row") == 0)
        return fail(p, "layout.best_row", "%s", reason);
    return fail(p, "layout", "%s: %s", field, reason);
}

/*
 * Checks a layout object and builds the engine spec (always: the engine's own
 * validation runs on it) and, when `canon` is not NULL, its canonical JSON.
 * On success *out owns the spec's arrays (freed when `out` is NULL).
 */
static int layout_parse(const json_t *layout, catalog_layout *out, json_t **canon,
                        catalog_problem *p)
{
    static const char *const layout_fields[] = {"best_row", "categories", "rows"};
    catalog_layout l;
    memset(&l, 0, sizeof(l));
    path f;
    if (!json_is_object(layout))
        return fail(p, "layout", "must be an object with categories and rows");
    const char *bad = unknown_key(layout, layout_fields, 3);
    if (bad != NULL)
        return fail(p, pathf(&f, "layout.%s", bad),
                    "is not a field of a layout (known: categories, rows, best_row)");

    /* Categories: names the engine can store and prices can be keyed by. */
    const json_t *cats = json_object_get(layout, "categories");
    if (cats == NULL)
        return fail(p, "layout.categories", "is required");
    if (!json_is_array(cats) || json_array_size(cats) < 1 ||
        json_array_size(cats) > ENGINE_CATEGORIES_MAX)
        return fail(p, "layout.categories", "must be an array of 1 to %d category names",
                    ENGINE_CATEGORIES_MAX);
    l.spec.category_count = (uint32_t)json_array_size(cats);
    for (uint32_t c = 0; c < l.spec.category_count; c++) {
        const json_t *v = json_array_get(cats, c);
        pathf(&f, "layout.categories[%u]", c);
        if (!json_is_string(v))
            return fail(p, f.s, "must be a string");
        const char *s = json_string_value(v);
        size_t n = json_string_length(v);
        bool ok = n >= 1 && n < ENGINE_NAME_MAX;
        for (size_t i = 0; ok && i < n; i++)
            ok = s[i] >= 0x20 && s[i] <= 0x7e;
        if (!ok)
            return fail(p, f.s, "must be 1 to %d printable ASCII characters", ENGINE_NAME_MAX - 1);
        if (s[0] == ' ' || s[n - 1] == ' ')
            return fail(p, f.s, "must not begin or end with a space");
        for (uint32_t d = 0; d < c; d++) {
            if (strcmp(l.spec.category_names[d], s) == 0)
                return fail(p, f.s, "repeats category \"%s\" (categories[%u])", s, d);
        }
        memcpy(l.spec.category_names[c], s, n + 1);
    }

    const json_t *rows = json_object_get(layout, "rows");
    if (rows == NULL)
        return fail(p, "layout.rows", "is required");
    if (!json_is_array(rows) || json_array_size(rows) < 1 ||
        json_array_size(rows) > ENGINE_ROWS_MAX)
        return fail(p, "layout.rows", "must be an array of 1 to %d rows", ENGINE_ROWS_MAX);
    l.spec.row_count = (uint32_t)json_array_size(rows);

    int rc = -ENOMEM;
    json_t *crows = NULL, *clayout = NULL;
    uint32_t *row_first = calloc(l.spec.row_count + 1, sizeof(*row_first));
    row_info *ri = malloc(sizeof(*ri));
    label_set seen = {0};
    if (row_first == NULL || ri == NULL || label_set_init(&seen, l.spec.row_count) != 0)
        goto out;
    if (canon != NULL && (crows = json_array()) == NULL)
        goto out;

    /* Pass 1: check every row and count seats before allocating for them. */
    for (uint32_t r = 0; r < l.spec.row_count; r++) {
        rc = row_check(json_array_get(rows, r), r, &l.spec, ri, p);
        if (rc != 0)
            goto out;
        /* The engine would find this too, but only as clashing seat labels. */
        uint32_t first = label_set_add(&seen, ri->label, r);
        if (first != r) {
            rc = fail(p, pathf(&f, "layout.rows[%u].label", r),
                      "repeats the label of rows[%u]; every row needs its own label", first);
            goto out;
        }
        row_first[r + 1] = row_first[r] + ri->seats; /* <= 2048 * 1000: no overflow */
        if (crows != NULL &&
            json_array_append_new(crows, canon_row(ri, l.spec.category_names[ri->category])) != 0) {
            rc = -ENOMEM;
            goto out;
        }
    }
    l.spec.seat_count = row_first[l.spec.row_count];
    if (l.spec.seat_count > ENGINE_SEATS_MAX) {
        rc = fail(p, "layout.rows", "hold %u seats in all; a layout has at most %d",
                  l.spec.seat_count, ENGINE_SEATS_MAX);
        goto out;
    }

    /* Best row: a label, or the row two thirds of the way back. */
    const json_t *best = json_object_get(layout, "best_row");
    if (best != NULL) {
        uint32_t r = l.spec.row_count;
        for (uint32_t i = 0; json_is_string(best) && i < l.spec.row_count && r == l.spec.row_count;
             i++) {
            const json_t *lab = json_object_get(json_array_get(rows, i), "label");
            if (json_string_length(lab) == json_string_length(best) &&
                strcmp(json_string_value(lab), json_string_value(best)) == 0)
                r = i;
        }
        if (r == l.spec.row_count) {
            rc = fail(p, "layout.best_row", "must be the label of one of the rows");
            goto out;
        }
        l.spec.best_row = r;
    } else {
        l.spec.best_row = l.spec.row_count * 2 / 3;
        if (l.spec.best_row >= l.spec.row_count)
            l.spec.best_row = l.spec.row_count - 1;
    }

    /* Pass 2: the engine spec. Rows were checked, so nothing can fail now. */
    rc = -ENOMEM;
    l.seats = calloc(l.spec.seat_count, sizeof(*l.seats));
    l.row_labels = calloc(l.spec.row_count, sizeof(*l.row_labels));
    if (l.seats == NULL || l.row_labels == NULL)
        goto out;
    l.spec.seats = l.seats;
    l.spec.row_labels = (const char(*)[ENGINE_LABEL_MAX])l.row_labels;
    for (uint32_t r = 0; r < l.spec.row_count; r++) {
        CATALOG_ASSERT(row_check(json_array_get(rows, r), r, &l.spec, ri, NULL) == 0);
        memcpy(l.row_labels[r], ri->label, sizeof(ri->label));
        uint32_t col = 0;
        for (uint32_t n = 1; n <= ri->seats; n++) {
            engine_seat_spec *s = &l.seats[row_first[r] + n - 1];
            /* The column skips one place per aisle, so adjacency stops there. */
            col += 1 + (n > 1 && ri->aisle_after[n - 1]);
            int len = snprintf(s->label, sizeof s->label, "%s%u", ri->label, n);
            CATALOG_ASSERT(len > 0 && (size_t)len < sizeof s->label);
            s->row = (uint16_t)r;
            s->col = (uint16_t)col;
            s->category = (uint8_t)ri->category;
            s->flags = ri->flags[n];
        }
    }

    engine_problem ep = {0};
    int erc = engine_layout_validate(&l.spec, &ep);
    if (erc == ENGINE_BAD_LAYOUT) {
        rc = engine_problem_map(&ep, &l, row_first, p);
        goto out;
    }
    if (erc != 0) {
        CATALOG_ASSERT(erc == ENGINE_ENOMEM);
        rc = -ENOMEM;
        goto out;
    }

    if (canon != NULL) {
        json_t *ccats = json_array();
        clayout = json_object();
        if (clayout == NULL || json_object_set_new(clayout, "categories", ccats) != 0)
            goto out;
        for (uint32_t c = 0; c < l.spec.category_count; c++) {
            if (json_array_append_new(ccats, json_string(l.spec.category_names[c])) != 0)
                goto out;
        }
        if (json_object_set_new(clayout, "best_row", json_string(l.row_labels[l.spec.best_row])) !=
                0 ||
            json_object_set(clayout, "rows", crows) != 0)
            goto out;
        *canon = clayout;
        clayout = NULL;
    }
    if (out != NULL) {
        *out = l;
        memset(&l, 0, sizeof(l));
    }
    rc = 0;
out:
    json_decref(clayout);
    json_decref(crows);
    catalog_layout_free(&l);
    free(ri);
    free(row_first);
    free(seen.slots);
    free(seen.keys);
    return rc;
}

int catalog_layout_build(const json_t *layout, catalog_layout *out, catalog_problem *problem)
{
    CATALOG_ASSERT(out != NULL);
    memset(out, 0, sizeof(*out));
    return layout_parse(layout, out, NULL, problem);
}

int catalog_layout_categories(const json_t *screen, catalog_ctx *ctx)
{
    memset(ctx, 0, sizeof(*ctx));
    const json_t *tid = json_object_get(screen, "theater_id");
    const json_t *cats = json_object_get(json_object_get(screen, "layout"), "categories");
    if (!json_is_integer(tid) || json_integer_value(tid) <= 0 || !json_is_array(cats) ||
        json_array_size(cats) < 1 || json_array_size(cats) > ENGINE_CATEGORIES_MAX)
        return -EINVAL;
    ctx->theater_id = (uint64_t)json_integer_value(tid);
    ctx->category_count = (uint32_t)json_array_size(cats);
    for (uint32_t c = 0; c < ctx->category_count; c++) {
        const json_t *v = json_array_get(cats, c);
        if (!json_is_string(v) || json_string_length(v) < 1 ||
            json_string_length(v) >= ENGINE_NAME_MAX) {
            memset(ctx, 0, sizeof(*ctx));
            return -EINVAL;
        }
        memcpy(ctx->category_names[c], json_string_value(v), json_string_length(v) + 1);
    }
    return 0;
}

int catalog_showtime_prices(const json_t *showtime, const catalog_ctx *ctx,
                            uint32_t prices[ENGINE_CATEGORIES_MAX])
{
    const json_t *obj = json_object_get(showtime, "prices");
    if (!json_is_object(obj) || json_object_size(obj) != ctx->category_count)
        return -EINVAL;
    for (uint32_t c = 0; c < ctx->category_count; c++) {
        json_int_t v;
        if (!int_in(json_object_get(obj, ctx->category_names[c]), 0, PRICE_MAX, &v))
            return -EINVAL;
        prices[c] = (uint32_t)v;
    }
    return 0;
}

json_t *catalog_user_public(const json_t *user)
{
    json_t *copy = json_deep_copy(user);
    if (copy != NULL)
        json_object_del(copy, "password_hash"); /* absent is fine */
    return copy;
}

/* ---- Entities ------------------------------------------------------------- */

typedef enum ftype {
    F_TEXT,    /* min..max bytes */
    F_ID,      /* integer > 0 */
    F_INT,     /* integer min..max */
    F_URL,     /* text; http(s) URL when not empty */
    F_LAYOUT,  /* a screen layout */
    F_START,   /* showtime start, adds start_ms */
    F_PRICES,  /* one price per screen category */
    F_EMAIL,   /* lowercased */
    F_ROLE,    /* "customer" | "admin" */
    F_CREATED, /* UTC time, fraction allowed */
} ftype;

typedef struct fdef {
    const char *name;
    ftype type;
    bool required;     /* on create; others default ("" or "customer") */
    uint32_t min, max; /* bytes (text) or value (F_INT) */
} fdef;

#define FIELD(n, t, req, lo, hi)                                    \
    {                                                               \
        .name = n, .type = t, .required = req, .min = lo, .max = hi \
    }

static const fdef theater_fields[] = {
    FIELD("name", F_TEXT, true, 1, 200),
    FIELD("city", F_TEXT, true, 1, 100),
    FIELD("address", F_TEXT, false, 0, 500),
};
static const fdef screen_fields[] = {
    FIELD("theater_id", F_ID, true, 0, 0),
    FIELD("name", F_TEXT, true, 1, 100),
    FIELD("layout", F_LAYOUT, true, 0, 0),
};
static const fdef movie_fields[] = {
    FIELD("title", F_TEXT, true, 1, 200),        FIELD("description", F_TEXT, false, 0, 4000),
    FIELD("duration_min", F_INT, true, 1, 1000), FIELD("genre", F_TEXT, true, 1, 50),
    FIELD("language", F_TEXT, true, 1, 50),      FIELD("rating", F_TEXT, false, 0, 20),
    FIELD("poster_url", F_URL, false, 0, 2000),
};
static const fdef showtime_fields[] = {
    FIELD("movie_id", F_ID, true, 0, 0),
    FIELD("screen_id", F_ID, true, 0, 0),
    FIELD("start_time", F_START, true, 0, 0),
    FIELD("prices", F_PRICES, true, 0, 0),
};
static const fdef user_fields[] = {
    FIELD("email", F_EMAIL, true, 3, 254),
    FIELD("name", F_TEXT, true, 1, 200),
    FIELD("role", F_ROLE, false, 0, 0),
    FIELD("password_hash", F_TEXT, true, 1, PASSWORD_HASH_MAX),
    FIELD("created_at", F_CREATED, true, 0, 0),
};

typedef struct kind_def {
    const fdef *fields;
    size_t count;
    const char *const *derived; /* set by the server or derived: refused in bodies */
    size_t nderived;
} kind_def;

static const char *const derived_plain[] = {"id"};
static const char *const derived_showtime[] = {"id", "start_ms", "theater_id"};

#define KIND(f, d)                                               \
    {                                                            \
        f, sizeof(f) / sizeof(f[0]), d, sizeof(d) / sizeof(d[0]) \
    }
static const kind_def kinds[CATALOG_KIND_MAX_ + 1] = {
    [CATALOG_THEATER] = KIND(theater_fields, derived_plain),
    [CATALOG_SCREEN] = KIND(screen_fields, derived_plain),
    [CATALOG_MOVIE] = KIND(movie_fields, derived_plain),
    [CATALOG_SHOWTIME] = KIND(showtime_fields, derived_showtime),
    [CATALOG_USER] = KIND(user_fields, derived_plain),
};

static const char *derived_reason(const char *name)
{
    if (strcmp(name, "id") == 0)
        return "is assigned by the server; leave it out";
    if (strcmp(name, "start_ms") == 0)
        return "is computed from start_time; leave it out";
    return "is taken from the screen; leave it out";
}

static int check_url(const json_t *v, const fdef *d, catalog_problem *p)
{
    int rc = check_text(v, d->name, d->min, d->max, p);
    if (rc != 0)
        return rc;
    const char *s = json_string_value(v);
    size_t n = json_string_length(v);
    if (n == 0)
        return 0;
    size_t scheme = 0;
    if (n > 7 && strncmp(s, "http://", 7) == 0)
        scheme = 7;
    else if (n > 8 && strncmp(s, "https://", 8) == 0)
        scheme = 8;
    if (scheme == 0 || s[scheme] == '/')
        return fail(p, d->name, "must be an http:// or https:// URL (or empty)");
    if (memchr(s, ' ', n) != NULL)
        return fail(p, d->name, "must not contain spaces (write them as %%20)");
    return 0;
}

static int check_email(const json_t *v, const fdef *d, json_t **canon, catalog_problem *p)
{
    int rc = check_text(v, d->name, d->min, d->max, p);
    if (rc != 0)
        return rc;
    const char *s = json_string_value(v);
    size_t n = json_string_length(v);
    const char *at = memchr(s, '@', n);
    if (memchr(s, ' ', n) != NULL)
        return fail(p, d->name, "must not contain spaces");
    if (at == NULL || memchr(at + 1, '@', n - (size_t)(at - s) - 1) != NULL)
        return fail(p, d->name, "must contain exactly one @");
    size_t local = (size_t)(at - s), domain = n - local - 1;
    if (local == 0 || domain == 0)
        return fail(p, d->name, "must have a name before the @ and a domain after it");
    if (local > EMAIL_LOCAL_MAX)
        return fail(p, d->name, "must have at most %d bytes before the @", EMAIL_LOCAL_MAX);
    if (at[1] == '.' || s[n - 1] == '.' || strstr(at, "..") != NULL)
        return fail(p, d->name, "must have a valid domain after the @");
    char *low = malloc(n + 1);
    if (low == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++)
        low[i] = lower(s[i]); /* ASCII only: other bytes are left as they are */
    low[n] = '\0';
    *canon = json_stringn(low, n);
    free(low);
    return *canon == NULL ? -ENOMEM : 0;
}

static int check_prices(const json_t *v, const catalog_ctx *ctx, json_t **canon, catalog_problem *p)
{
    char names[SCRATCH] = "";
    size_t used = 0;
    for (uint32_t c = 0; c < ctx->category_count; c++) {
        int w = snprintf(names + used, sizeof names - used, "%s%s", c ? ", " : "",
                         ctx->category_names[c]);
        CATALOG_ASSERT(w >= 0 && (size_t)w < sizeof names - used); /* 8 x 25 bytes at most */
        used += (size_t)w;
    }
    if (!json_is_object(v))
        return fail(p, "prices",
                    "must be an object giving a price in minor units for each seat category of "
                    "the screen (%s)",
                    names);
    path f;
    const char *bad = NULL;
    const char *key;
    json_t *val;
    json_object_foreach((json_t *)v, key, val)
    {
        bool known = false;
        for (uint32_t c = 0; c < ctx->category_count && !known; c++)
            known = strcmp(key, ctx->category_names[c]) == 0;
        if (!known && (bad == NULL || strcmp(key, bad) < 0))
            bad = key;
    }
    if (bad != NULL)
        return fail(p, pathf(&f, "prices.%s", bad),
                    "is not a seat category of the screen (its categories: %s)", names);
    json_t *out = json_object();
    if (out == NULL)
        return -ENOMEM;
    for (uint32_t c = 0; c < ctx->category_count; c++) {
        const char *name = ctx->category_names[c];
        const json_t *pv = json_object_get(v, name);
        json_int_t price;
        pathf(&f, "prices.%s", name);
        int rc = 0;
        if (pv == NULL)
            rc = fail(p, f.s, "is required: every seat category of the screen needs a price");
        else if (!int_in(pv, 0, PRICE_MAX, &price))
            rc = fail(p, f.s, "must be an integer from 0 to %d (minor units, e.g. cents)",
                      PRICE_MAX);
        else if (json_object_set_new(out, name, json_integer(price)) != 0)
            rc = -ENOMEM;
        if (rc != 0) {
            json_decref(out);
            return rc;
        }
    }
    *canon = out;
    return 0;
}

/* Checks one field's value and sets its canonical form(s) in `out`. */
static int check_field(const fdef *d, const json_t *v, const catalog_ctx *ctx, json_t *out,
                       catalog_problem *p)
{
    json_t *canon = NULL;
    json_int_t x;
    int rc = 0;
    switch (d->type) {
    case F_TEXT:
        rc = check_text(v, d->name, d->min, d->max, p);
        break;
    case F_URL:
        rc = check_url(v, d, p);
        break;
    case F_ID:
        if (!int_in(v, 1, (json_int_t)CATALOG_ID_MAX, &x))
            rc = fail(p, d->name, "must be a positive integer (an id)");
        break;
    case F_INT:
        if (!int_in(v, d->min, d->max, &x))
            rc = fail(p, d->name, "must be an integer from %u to %u", d->min, d->max);
        break;
    case F_LAYOUT:
        rc = layout_parse(v, NULL, &canon, p);
        break;
    case F_START:
    case F_CREATED: {
        const char *why = NULL;
        int64_t ms = 0;
        if (!json_is_string(v)) {
            rc = fail(p, d->name, "must be a string: a UTC time like \"2026-11-21T18:30:00Z\"");
            break;
        }
        if (parse_utc(json_string_value(v), json_string_length(v), d->type == F_CREATED, &ms,
                      &why) != 0) {
            rc = fail(p, d->name, "%s", why);
            break;
        }
        if (d->type == F_START && json_object_set_new(out, "start_ms", json_integer(ms)) != 0)
            rc = -ENOMEM;
        break;
    }
    case F_PRICES:
        rc = check_prices(v, ctx, &canon, p);
        break;
    case F_EMAIL:
        rc = check_email(v, d, &canon, p);
        break;
    case F_ROLE:
        if (!json_is_string(v) || (strcmp(json_string_value(v), "customer") != 0 &&
                                   strcmp(json_string_value(v), "admin") != 0))
            rc = fail(p, d->name, "must be \"customer\" or \"admin\"");
        break;
    }
    if (rc != 0)
        return rc;
    if (canon == NULL) {
        /* Scalars are immutable for us: a fresh copy keeps `out` independent
         * of the caller's body. */
        canon = json_copy((json_t *)v);
        if (canon == NULL)
            return -ENOMEM;
    }
    return json_object_set_new(out, d->name, canon) != 0 ? -ENOMEM : 0;
}

int catalog_validate(catalog_kind kind, uint64_t id, const json_t *body, const json_t *existing,
                     const catalog_ctx *ctx, json_t **out, catalog_problem *problem)
{
    CATALOG_ASSERT(kind >= CATALOG_THEATER && kind <= CATALOG_KIND_MAX_);
    CATALOG_ASSERT(id > 0 && id <= CATALOG_ID_MAX);
    CATALOG_ASSERT(kind != CATALOG_SHOWTIME ||
                   (ctx != NULL && ctx->theater_id > 0 && ctx->theater_id <= CATALOG_ID_MAX &&
                    ctx->category_count <= ENGINE_CATEGORIES_MAX));
    CATALOG_ASSERT(out != NULL && problem != NULL);
    *out = NULL;
    const kind_def *k = &kinds[kind];
    const char *kname = catalog_kind_name(kind);
    path f;

    if (!json_is_object(body))
        return fail(problem, "", "the request body must be a JSON object");
    const char *worst = NULL;
    bool derived = false;
    const char *key;
    json_t *val;
    json_object_foreach((json_t *)body, key, val)
    {
        bool known = false, der = false;
        for (size_t i = 0; i < k->count && !known; i++)
            known = strcmp(key, k->fields[i].name) == 0;
        for (size_t i = 0; i < k->nderived && !known && !der; i++)
            der = strcmp(key, k->derived[i]) == 0;
        if (!known && (worst == NULL || strcmp(key, worst) < 0)) {
            worst = key;
            derived = der;
        }
    }
    if (worst != NULL && derived)
        return fail(problem, worst, "%s", derived_reason(worst));
    if (worst != NULL) {
        char list[SCRATCH] = "";
        size_t used = 0;
        for (size_t i = 0; i < k->count; i++) {
            int w =
                snprintf(list + used, sizeof list - used, "%s%s", i ? ", " : "", k->fields[i].name);
            CATALOG_ASSERT(w >= 0 && (size_t)w < sizeof list - used);
            used += (size_t)w;
        }
        return fail(problem, pathf(&f, "%s", worst), "is not a field of a %s (known: %s)", kname,
                    list);
    }

    json_t *obj = json_object();
    if (obj == NULL || json_object_set_new(obj, "id", json_integer((json_int_t)id)) != 0) {
        json_decref(obj);
        return -ENOMEM;
    }
    int rc = 0;
    for (size_t i = 0; i < k->count && rc == 0; i++) {
        const fdef *d = &k->fields[i];
        /* An update is the stored object with the body's fields replaced. */
        const json_t *v = json_object_get(body, d->name);
        if (v == NULL && existing != NULL)
            v = json_object_get(existing, d->name);
        if (v != NULL) {
            rc = check_field(d, v, ctx, obj, problem);
        } else if (d->required) {
            rc = fail(problem, d->name, "is required");
        } else {
            const char *dflt = d->type == F_ROLE ? "customer" : "";
            if (json_object_set_new(obj, d->name, json_string(dflt)) != 0)
                rc = -ENOMEM;
        }
    }
    if (rc == 0 && kind == CATALOG_SHOWTIME &&
        json_object_set_new(obj, "theater_id", json_integer((json_int_t)ctx->theater_id)) != 0)
        rc = -ENOMEM;
    if (rc == 0 && json_dumpb(obj, NULL, 0, CATALOG_DUMP_FLAGS) > CATALOG_JSON_MAX)
        rc = fail(problem, "", "the %s is too large: at most %d bytes once encoded", kname,
                  CATALOG_JSON_MAX);
    if (rc != 0) {
        json_decref(obj);
        return rc;
    }
    *out = obj;
    return 0;
}
