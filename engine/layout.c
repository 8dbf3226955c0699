/*
 * layout.c - seat layouts: canonical encoding, validation, derived indexes.
 *
 * A layout is always built from its canonical blob, whether it comes from an
 * engine_layout_spec (engine_layout_create encodes first) or from a replayed
 * LAYOUT_CREATE record. One parser, one validator: a layout that replays is
 * exactly the layout that was created.
 *
 * Blob, version 1, little-endian:
 *   u8 version | u32 seat_count | u32 row_count | u8 category_count | u32 best_row
 *   category_count x (u8 len, bytes)        category names
 *   row_count x (u8 len, bytes)             row labels
 *   seat_count x (u16 row, u16 col, u8 category, u8 flags, u8 len, bytes)
 */
#include "engine_internal.h"

#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#define LAYOUT_BLOB_VERSION 1

static int problem_set(engine_problem *p, const char *field, uint32_t index, const char *reason)
{
    if (p != NULL) {
        p->field = field;
        p->index = index;
        p->reason = reason;
    }
    return ENGINE_BAD_LAYOUT;
}

/* Labels and names end up in JSON, URLs and logs: printable ASCII only.
 * Labels have no spaces; category names may ("Gold Plus"). */
static bool text_ok(const uint8_t *s, size_t n, bool allow_space)
{
    for (size_t i = 0; i < n; i++) {
        if (s[i] < 0x20 || s[i] > 0x7e || (s[i] == ' ' && !allow_space))
            return false;
    }
    return true;
}

static void put_text(engine__wbuf *w, const char *s, size_t n)
{
    engine__put_u8(w, (uint8_t)n);
    engine__put_bytes(w, s, n);
}

int engine__layout_encode(const engine_layout_spec *spec, uint8_t **blob, uint32_t *blob_len,
                          engine_problem *problem)
{
    if (spec->seat_count < 1 || spec->seat_count > ENGINE_SEATS_MAX)
        return problem_set(problem, "seat_count", 0, "must be between 1 and 100000");
    if (spec->seats == NULL)
        return problem_set(problem, "seats", 0, "missing");
    if (spec->row_count < 1 || spec->row_count > ENGINE_ROWS_MAX)
        return problem_set(problem, "row_count", 0, "must be between 1 and 2048");
    if (spec->row_labels == NULL)
        return problem_set(problem, "row_labels", 0, "missing");
    if (spec->category_count < 1 || spec->category_count > ENGINE_CATEGORIES_MAX)
        return problem_set(problem, "category_count", 0, "must be between 1 and 8");

    size_t cap = 1 + 4 + 4 + 1 + 4;
    for (uint32_t c = 0; c < spec->category_count; c++) {
        size_t n = strnlen(spec->category_names[c], ENGINE_NAME_MAX);
        if (n == ENGINE_NAME_MAX)
            return problem_set(problem, "category_names", c, "longer than 23 bytes");
        cap += 1 + n;
    }
    for (uint32_t r = 0; r < spec->row_count; r++) {
        size_t n = strnlen(spec->row_labels[r], ENGINE_LABEL_MAX);
        if (n == ENGINE_LABEL_MAX)
            return problem_set(problem, "row_labels", r, "longer than 15 bytes");
        cap += 1 + n;
    }
    for (uint32_t i = 0; i < spec->seat_count; i++) {
        size_t n = strnlen(spec->seats[i].label, ENGINE_LABEL_MAX);
        if (n == ENGINE_LABEL_MAX)
            return problem_set(problem, "seats", i, "label longer than 15 bytes");
        cap += 7 + n;
    }

    uint8_t *buf = malloc(cap);
    if (buf == NULL)
        return ENGINE_ENOMEM;
    engine__wbuf w = {.p = buf, .cap = cap};
    engine__put_u8(&w, LAYOUT_BLOB_VERSION);
    engine__put_u32(&w, spec->seat_count);
    engine__put_u32(&w, spec->row_count);
    engine__put_u8(&w, (uint8_t)spec->category_count);
    engine__put_u32(&w, spec->best_row);
    for (uint32_t c = 0; c < spec->category_count; c++)
        put_text(&w, spec->category_names[c], strlen(spec->category_names[c]));
    for (uint32_t r = 0; r < spec->row_count; r++)
        put_text(&w, spec->row_labels[r], strlen(spec->row_labels[r]));
    for (uint32_t i = 0; i < spec->seat_count; i++) {
        const engine_seat_spec *s = &spec->seats[i];
        engine__put_u16(&w, s->row);
        engine__put_u16(&w, s->col);
        engine__put_u8(&w, s->category);
        engine__put_u8(&w, s->flags);
        put_text(&w, s->label, strlen(s->label));
    }
    ENGINE_ASSERT(!w.overflow && w.len == cap);
    *blob = buf;
    *blob_len = (uint32_t)cap;
    return 0;
}

/* Reads a length-prefixed text into `dst` (NUL-terminated). False if the
 * length is 0 or does not fit, or the bytes are not printable. */
static bool get_text(engine__rbuf *r, char *dst, size_t dst_size, bool allow_space)
{
    uint8_t n = engine__get_u8(r);
    const uint8_t *b = engine__get_bytes(r, n);
    if (b == NULL || n == 0 || n >= dst_size || !text_ok(b, n, allow_space))
        return false;
    memcpy(dst, b, n);
    dst[n] = '\0';
    return true;
}

void engine__layout_free(engine__layout *l)
{
    free(l->seats);
    free(l->seat_cat);
    free(l->seat_row);
    free(l->row_labels);
    free(l->row_first);
    free(l->row_order);
    free(l->row_cats);
    free(l->label_slots);
    free(l->cat_mask);
    free(l->access);
    free(l->blocked);
    free(l->brk);
    free(l->blob);
    memset(l, 0, sizeof(*l));
}

static uint32_t label_hash(const char *s)
{
    return (uint32_t)XXH3_64bits(s, strlen(s));
}

int32_t engine__layout_find(const engine__layout *l, const char *label)
{
    if (label == NULL)
        return -1;
    uint32_t i = label_hash(label) & l->label_mask;
    for (;;) {
        uint32_t v = l->label_slots[i];
        if (v == 0)
            return -1;
        if (strcmp(l->seats[v - 1].label, label) == 0)
            return (int32_t)(v - 1);
        i = (i + 1) & l->label_mask;
    }
}

/* Inserts seat `seat` into the label table; false if the label is taken. */
static bool label_insert(engine__layout *l, uint32_t seat)
{
    uint32_t i = label_hash(l->seats[seat].label) & l->label_mask;
    while (l->label_slots[i] != 0) {
        if (strcmp(l->seats[l->label_slots[i] - 1].label, l->seats[seat].label) == 0)
            return false;
        i = (i + 1) & l->label_mask;
    }
    l->label_slots[i] = seat + 1;
    return true;
}

/* Row labels are few (<= 2048): a small temporary table finds duplicates.
 * Returns 0, ENGINE_BAD_LAYOUT with *dup set, or ENGINE_ENOMEM. */
static int row_labels_check(const engine__layout *l, uint32_t *dup)
{
    uint32_t slots = 16;
    while (slots < l->row_count * 2)
        slots <<= 1;
    uint32_t *t = calloc(slots, sizeof(*t));
    if (t == NULL)
        return ENGINE_ENOMEM;
    bool ok = true;
    for (uint32_t r = 0; r < l->row_count && ok; r++) {
        uint32_t i = label_hash(l->row_labels[r]) & (slots - 1);
        while (t[i] != 0) {
            if (strcmp(l->row_labels[t[i] - 1], l->row_labels[r]) == 0) {
                ok = false;
                *dup = r;
                break;
            }
            i = (i + 1) & (slots - 1);
        }
        t[i] = r + 1;
    }
    free(t);
    return ok ? 0 : ENGINE_BAD_LAYOUT;
}

/* Parses the blob header and arrays into `l`. */
static int layout_parse(engine__layout *l, const uint8_t *blob, uint32_t blob_len,
                        engine_problem *problem)
{
    engine__rbuf r = {.p = blob, .len = blob_len};
    if (engine__get_u8(&r) != LAYOUT_BLOB_VERSION)
        return problem_set(problem, "blob", 0, "unknown layout encoding version");
    l->seat_count = engine__get_u32(&r);
    l->row_count = engine__get_u32(&r);
    l->category_count = engine__get_u8(&r);
    l->best_row = engine__get_u32(&r);
    if (r.bad)
        return problem_set(problem, "blob", 0, "truncated");
    if (l->seat_count < 1 || l->seat_count > ENGINE_SEATS_MAX)
        return problem_set(problem, "seat_count", 0, "must be between 1 and 100000");
    if (l->row_count < 1 || l->row_count > ENGINE_ROWS_MAX)
        return problem_set(problem, "row_count", 0, "must be between 1 and 2048");
    if (l->category_count < 1 || l->category_count > ENGINE_CATEGORIES_MAX)
        return problem_set(problem, "category_count", 0, "must be between 1 and 8");
    if (l->best_row >= l->row_count)
        return problem_set(problem, "best_row", 0, "must name an existing row");

    for (uint32_t c = 0; c < l->category_count; c++) {
        if (!get_text(&r, l->category_names[c], ENGINE_NAME_MAX, true))
            return problem_set(problem, "category_names", c,
                               r.bad ? "truncated" : "must be 1 to 23 printable ASCII bytes");
        for (uint32_t d = 0; d < c; d++) {
            if (strcmp(l->category_names[c], l->category_names[d]) == 0)
                return problem_set(problem, "category_names", c, "duplicate category name");
        }
    }

    l->row_labels = calloc(l->row_count, sizeof(*l->row_labels));
    l->seats = calloc(l->seat_count, sizeof(*l->seats));
    if (l->row_labels == NULL || l->seats == NULL)
        return ENGINE_ENOMEM;
    for (uint32_t i = 0; i < l->row_count; i++) {
        if (!get_text(&r, l->row_labels[i], ENGINE_LABEL_MAX, false))
            return problem_set(problem, "row_labels", i,
                               r.bad ? "truncated"
                                     : "must be 1 to 15 printable ASCII bytes without spaces");
    }
    for (uint32_t i = 0; i < l->seat_count; i++) {
        engine_seat_spec *s = &l->seats[i];
        s->row = engine__get_u16(&r);
        s->col = engine__get_u16(&r);
        s->category = engine__get_u8(&r);
        s->flags = engine__get_u8(&r);
        if (!get_text(&r, s->label, ENGINE_LABEL_MAX, false))
            return problem_set(
                problem, "seats", i,
                r.bad ? "truncated" : "label must be 1 to 15 printable ASCII bytes without spaces");
        if (s->row >= l->row_count)
            return problem_set(problem, "seats", i, "row out of range");
        if (s->category >= l->category_count)
            return problem_set(problem, "seats", i, "category out of range");
        if (s->flags & ~ENGINE_SEAT_FLAG_ALL)
            return problem_set(problem, "seats", i, "unknown flag bits");
        if (i > 0) {
            const engine_seat_spec *p = &l->seats[i - 1];
            if (s->row < p->row || (s->row == p->row && s->col <= p->col))
                return problem_set(problem, "seats", i,
                                   "seats must be ordered by row, then by increasing column");
        }
    }
    if (r.pos != r.len)
        return problem_set(problem, "blob", 0, "trailing bytes");
    return 0;
}

/* Computes every derived index from the parsed seats. */
static int layout_derive(engine__layout *l, engine_problem *problem)
{
    const uint32_t n = l->seat_count;
    l->words = (uint32_t)ENGINE_BITS_WORDS(n);
    l->seat_cat = malloc(n);
    l->seat_row = malloc(n * sizeof(*l->seat_row));
    l->row_first = calloc(l->row_count + 1, sizeof(*l->row_first));
    l->row_order = malloc(l->row_count * sizeof(*l->row_order));
    l->row_cats = calloc(l->row_count, 1);
    l->cat_mask = calloc((size_t)l->words * l->category_count, sizeof(uint64_t));
    l->access = calloc(l->words, sizeof(uint64_t));
    l->blocked = calloc(l->words, sizeof(uint64_t));
    l->brk = calloc(l->words, sizeof(uint64_t));
    uint32_t slots = 16;
    while (slots < n * 2)
        slots <<= 1;
    l->label_slots = calloc(slots, sizeof(*l->label_slots));
    l->label_mask = slots - 1;
    if (l->seat_cat == NULL || l->seat_row == NULL || l->row_first == NULL ||
        l->row_order == NULL || l->row_cats == NULL || l->cat_mask == NULL || l->access == NULL ||
        l->blocked == NULL || l->brk == NULL || l->label_slots == NULL)
        return ENGINE_ENOMEM;

    int32_t min_col = INT32_MAX, max_col = -1;
    for (uint32_t i = 0; i < n; i++) {
        const engine_seat_spec *s = &l->seats[i];
        if (!label_insert(l, i))
            return problem_set(problem, "seats", i, "duplicate seat label");
        l->seat_cat[i] = s->category;
        l->seat_row[i] = s->row;
        l->row_first[s->row + 1]++;
        l->row_cats[s->row] |= (uint8_t)(1u << s->category);
        engine__bit_set(l->cat_mask + (size_t)s->category * l->words, i);
        if (s->flags & (ENGINE_SEAT_FLAG_ACCESSIBLE | ENGINE_SEAT_FLAG_COMPANION))
            engine__bit_set(l->access, i);
        if (s->flags & ENGINE_SEAT_FLAG_BLOCKED) {
            engine__bit_set(l->blocked, i);
            l->blocked_per_cat[s->category]++;
        }
        bool last = i + 1 == n || l->seats[i + 1].row != s->row ||
                    l->seats[i + 1].col != (uint32_t)s->col + 1;
        if (last)
            engine__bit_set(l->brk, i);
        if (s->col < min_col)
            min_col = s->col;
        if (s->col > max_col)
            max_col = s->col;
    }
    for (uint32_t r = 0; r < l->row_count; r++) {
        if (l->row_first[r + 1] == 0)
            return problem_set(problem, "row_labels", r, "row has no seats");
        l->row_first[r + 1] += l->row_first[r];
    }
    ENGINE_ASSERT(l->row_first[l->row_count] == n);
    uint32_t dup = 0;
    int rc = row_labels_check(l, &dup);
    if (rc == ENGINE_BAD_LAYOUT)
        return problem_set(problem, "row_labels", dup, "duplicate row label");
    if (rc != 0)
        return rc;
    l->centre2 = min_col + max_col;

    /* Preference: the best row, then outward; on equal distance the row
     * further from the screen (higher index) first. */
    uint32_t k = 0;
    l->row_order[k++] = l->best_row;
    for (uint32_t d = 1; k < l->row_count; d++) {
        if (l->best_row + d < l->row_count)
            l->row_order[k++] = l->best_row + d;
        if (d <= l->best_row)
            l->row_order[k++] = l->best_row - d;
    }
    return 0;
}

int engine_layout_validate(const engine_layout_spec *spec, engine_problem *problem)
{
    ENGINE_ASSERT(spec != NULL);
    uint8_t *blob = NULL;
    uint32_t blob_len = 0;
    int rc = engine__layout_encode(spec, &blob, &blob_len, problem);
    if (rc != 0)
        return rc;
    /* The same parse and derivation as an install, so the verdict is the
     * same; the layout built is thrown away (and its blob with it). */
    engine__layout l;
    rc = engine__layout_build(0, blob, blob_len, &l, problem);
    if (rc != 0) {
        free(blob); /* on failure the blob stays ours */
        return rc;
    }
    engine__layout_free(&l);
    return 0;
}

int engine_layout_blob_decode(const uint8_t *blob, uint32_t len, engine_layout_spec *spec)
{
    memset(spec, 0, sizeof(*spec));
    engine__layout l;
    memset(&l, 0, sizeof(l));
    engine_problem problem;
    int rc = layout_parse(&l, blob, len, &problem);
    if (rc != 0) {
        engine__layout_free(&l);
        return rc == ENGINE_ENOMEM ? rc : ENGINE_EDECODE;
    }
    spec->seat_count = l.seat_count;
    spec->seats = l.seats;
    spec->row_count = l.row_count;
    spec->row_labels = (const char(*)[ENGINE_LABEL_MAX])l.row_labels;
    spec->category_count = l.category_count;
    memcpy(spec->category_names, l.category_names, sizeof(spec->category_names));
    spec->best_row = l.best_row;
    l.seats = NULL; /* now the spec's */
    l.row_labels = NULL;
    engine__layout_free(&l);
    return 0;
}

void engine_layout_spec_free(engine_layout_spec *spec)
{
    free((void *)spec->seats);
    free((void *)spec->row_labels);
    memset(spec, 0, sizeof(*spec));
}

int engine__layout_build(uint64_t id, uint8_t *blob, uint32_t blob_len, engine__layout *out,
                         engine_problem *problem)
{
    engine__layout l;
    memset(&l, 0, sizeof(l));
    l.id = id;
    int rc = layout_parse(&l, blob, blob_len, problem);
    if (rc == 0)
        rc = layout_derive(&l, problem);
    if (rc != 0) {
        engine__layout_free(&l); /* blob stays the caller's */
        return rc;
    }
    l.blob = blob;
    l.blob_len = blob_len;
    *out = l;
    return 0;
}
