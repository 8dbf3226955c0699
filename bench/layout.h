/*
 * layout.h - generated seat layouts for load tools: the JSON that
 * POST /api/screens takes, and the seats it describes (labels, rows,
 * categories, blocked seats) with a label -> seat index lookup.
 *
 * Rows are labelled A..Z, AA..ZZ, AAA.. (letters only, so "row label + seat
 * number" never collides), front row first, `width` seats each (the last row
 * takes the remainder). Categories by row band: the front 30 % "silver", the
 * next 50 % "gold", the back 20 % "platinum". Every tenth row has an
 * accessible seat (1) and a companion seat (2). Aisles: a row 25 wide or less
 * has them after seats 5 and 20; wider rows after seats 10 and 40 of every 50
 * and between blocks of 50. A stadium blocks the two middle seats of the first
 * row (a camera platform). best_row is the server's default (two thirds back).
 */
#ifndef USHER_BENCH_LAYOUT_H
#define USHER_BENCH_LAYOUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum { LAYOUT_NCATS = 3, LAYOUT_LABEL_MAX = 12 };
extern const char *const layout_cat_names[LAYOUT_NCATS]; /* silver, gold, platinum */
extern const uint32_t layout_cat_prices[LAYOUT_NCATS];   /* suggested prices (paise) */

typedef struct bench_layout {
    uint32_t nseats, nrows, width;
    char (*labels)[LAYOUT_LABEL_MAX]; /* "A1", ... in seat order (row by row) */
    const char **label_ptrs;          /* labels[i], as an array of strings */
    uint8_t *cat;                     /* category index per seat */
    uint8_t *blocked;                 /* 1: not for sale */
    uint32_t *row_of;                 /* row index per seat */
    uint32_t *row_start;              /* first seat of each row; [nrows] = nseats */
    uint32_t best_row;
    uint32_t hot_row_lo, hot_row_hi; /* a hot region: rows [lo, hi) around the best row, */
    uint32_t hot_col_lo, hot_col_hi; /* seats [lo, hi) (0-based) of the central blocks */
    char *json;                      /* the layout member of POST /api/screens */
    uint32_t *hash;                  /* private: label -> 1 + seat index */
    size_t hmask;
} bench_layout;

/**
 * Builds a layout of `nseats` (1 to 100,000) seats in rows `width` wide (1 to 1,000),
 * widening the rows (by 50) while there would be more than 2,048 rows or the JSON would
 * exceed `max_json` bytes (usherd takes 64 KiB bodies by default). Returns 0, or -1 when
 * out of memory or when no width fits.
 */
int layout_build(bench_layout *l, uint32_t nseats, uint32_t width, bool stadium, size_t max_json);

/** Frees what layout_build() allocated. */
void layout_free(bench_layout *l);

/** The seat index of a label (not NUL-terminated, `n` bytes), or UINT32_MAX. */
uint32_t layout_find(const bench_layout *l, const char *label, size_t n);

#endif /* USHER_BENCH_LAYOUT_H */
