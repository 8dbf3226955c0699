/*
 * layout.c - generated seat layouts (see layout.h).
 */
#include "layout.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const layout_cat_names[LAYOUT_NCATS] = {"silver", "gold", "platinum"};
const uint32_t layout_cat_prices[LAYOUT_NCATS] = {15000, 25000, 40000};

typedef struct sbuf {
    char *s;
    size_t len, cap;
    bool failed;
} sbuf;

static void sb_add(sbuf *b, const char *fmt, ...)
{
    while (!b->failed) {
        size_t room = b->cap - b->len;
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->s ? b->s + b->len : NULL, b->s ? room : 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->failed = true;
            return;
        }
        if (b->s != NULL && (size_t)n < room) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = b->cap ? b->cap * 2 : 4096;
        while (cap < b->len + (size_t)n + 1)
            cap *= 2;
        char *s = realloc(b->s, cap);
        if (s == NULL) {
            b->failed = true;
            return;
        }
        b->s = s;
        b->cap = cap;
    }
}

static void row_label(uint32_t r, char out[8])
{
    char tmp[8];
    int n = 0;
    r++;
    while (r > 0 && n < 7) { /* bijective base 26: A..Z, AA..ZZ, AAA.. */
        r--;
        tmp[n++] = (char)('A' + r % 26);
        r /= 26;
    }
    for (int i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    out[n] = '\0';
}

static uint64_t label_hash(const char *s, size_t n)
{
    uint64_t h = UINT64_C(1469598103934665603);
    for (size_t i = 0; i < n; i++)
        h = (h ^ (uint8_t)s[i]) * UINT64_C(1099511628211);
    return h;
}

uint32_t layout_find(const bench_layout *l, const char *s, size_t n)
{
    if (n >= LAYOUT_LABEL_MAX)
        return UINT32_MAX;
    size_t i = (size_t)label_hash(s, n) & l->hmask;
    while (l->hash[i] != 0) {
        uint32_t idx = l->hash[i] - 1;
        if (strncmp(l->labels[idx], s, n) == 0 && l->labels[idx][n] == '\0')
            return idx;
        i = (i + 1) & l->hmask;
    }
    return UINT32_MAX;
}

/* An aisle after seat number n (1-based) of a row in a layout `width` wide. */
static bool aisle_after(uint32_t width, uint32_t n)
{
    if (width <= 25)
        return n == 5 || n == 20;
    return n % 50 == 10 || n % 50 == 40 || n % 50 == 0;
}

void layout_free(bench_layout *l)
{
    free(l->labels);
    free(l->label_ptrs);
    free(l->cat);
    free(l->blocked);
    free(l->row_of);
    free(l->row_start);
    free(l->hash);
    free(l->json);
    memset(l, 0, sizeof(*l));
}

/* One attempt at a width; 1 = the JSON is too large, -1 = out of memory. */
static int build_width(bench_layout *l, uint32_t nseats, uint32_t width, bool stadium,
                       size_t max_json)
{
    memset(l, 0, sizeof(*l));
    l->nseats = nseats;
    l->width = width;
    l->nrows = (nseats + width - 1) / width;
    if (l->nrows > 2048)
        return 1;
    l->labels = calloc(nseats, sizeof(*l->labels));
    l->label_ptrs = calloc(nseats, sizeof(*l->label_ptrs));
    l->cat = calloc(nseats, 1);
    l->blocked = calloc(nseats, 1);
    l->row_of = calloc(nseats, sizeof(uint32_t));
    l->row_start = calloc(l->nrows + 1, sizeof(uint32_t));
    size_t hcap = 16;
    while (hcap < 2 * (size_t)nseats)
        hcap *= 2;
    l->hash = calloc(hcap, sizeof(uint32_t));
    l->hmask = hcap - 1;
    if (!l->labels || !l->label_ptrs || !l->cat || !l->blocked || !l->row_of || !l->row_start ||
        !l->hash)
        return -1;
    l->best_row = l->nrows * 2 / 3;
    sbuf j = {0};
    sb_add(&j, "{\"categories\":[\"%s\",\"%s\",\"%s\"],\"rows\":[", layout_cat_names[0],
           layout_cat_names[1], layout_cat_names[2]);
    uint32_t seat = 0;
    for (uint32_t r = 0; r < l->nrows; r++) {
        char rl[8];
        row_label(r, rl);
        uint32_t n = r + 1 < l->nrows ? width : nseats - seat;
        uint8_t c = r < l->nrows * 3 / 10 ? 0 : r < l->nrows * 8 / 10 ? 1 : 2;
        l->row_start[r] = seat;
        sb_add(&j, "%s{\"label\":\"%s\",\"category\":\"%s\",\"seats\":%u", r ? "," : "", rl,
               layout_cat_names[c], n);
        bool first = true;
        for (uint32_t k = 1; k < n; k++) {
            if (aisle_after(width, k)) {
                sb_add(&j, "%s%u", first ? ",\"aisles_after\":[" : ",", k);
                first = false;
            }
        }
        if (!first)
            sb_add(&j, "]");
        if (r % 10 == 0 && n >= 4)
            sb_add(&j, ",\"accessible\":[1],\"companion\":[2]");
        bool camera = stadium && r == 0 && n >= 8;
        if (camera)
            sb_add(&j, ",\"blocked\":[%u,%u]", n / 2, n / 2 + 1);
        sb_add(&j, "}");
        for (uint32_t k = 1; k <= n; k++, seat++) {
            int w = snprintf(l->labels[seat], LAYOUT_LABEL_MAX, "%s%u", rl, k);
            if (w < 0 || w >= LAYOUT_LABEL_MAX) { /* cannot happen: 7 letters + 4 digits */
                free(j.s);
                return -1;
            }
            l->label_ptrs[seat] = l->labels[seat];
            l->cat[seat] = c;
            l->row_of[seat] = r;
            l->blocked[seat] = camera && (k == n / 2 || k == n / 2 + 1);
            size_t h = (size_t)label_hash(l->labels[seat], (size_t)w) & l->hmask;
            while (l->hash[h] != 0)
                h = (h + 1) & l->hmask;
            l->hash[h] = seat + 1;
        }
    }
    l->row_start[l->nrows] = seat;
    sb_add(&j, "]}");
    if (j.failed) {
        free(j.s);
        return -1;
    }
    l->json = j.s;
    if (j.len > max_json)
        return 1;
    /* Hot region: rows within a tenth of the layout of the best row, the central seats. */
    uint32_t span = l->nrows / 10 > 1 ? l->nrows / 10 : 1;
    l->hot_row_lo = l->best_row > span ? l->best_row - span : 0;
    l->hot_row_hi = l->best_row + span + 1 < l->nrows ? l->best_row + span + 1 : l->nrows;
    l->hot_col_lo = width >= 50 ? width / 5 : 0;
    l->hot_col_hi = width >= 50 ? width - width / 5 : width;
    return 0;
}

int layout_build(bench_layout *l, uint32_t nseats, uint32_t width, bool stadium, size_t max_json)
{
    if (nseats == 0 || nseats > 100000 || width == 0)
        return -1;
    for (; width <= 1000; width += 50) {
        int rc = build_width(l, nseats, width, stadium, max_json);
        if (rc == 0)
            return 0;
        layout_free(l);
        if (rc < 0)
            return -1;
    }
    return -1;
}
