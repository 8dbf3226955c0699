/*
 * engine_internal.h - structures and helpers shared by the engine's sources.
 * Not part of the public API: nothing outside engine/ includes this file.
 */
#ifndef USHER_ENGINE_INTERNAL_H
#define USHER_ENGINE_INTERNAL_H

#include "engine.h"

#include <stdnoreturn.h>

/* Assertions stay on in release builds: a broken invariant in a box office
 * must stop the process, not sell a seat twice. */
noreturn void engine__assert_fail(const char *expr, const char *file, int line);
#define ENGINE_ASSERT(c) ((c) ? (void)0 : engine__assert_fail(#c, __FILE__, __LINE__))

#define ENGINE_BITS_WORDS(n) (((size_t)(n) + 63) / 64)

static inline bool engine__bit_get(const uint64_t *bm, uint32_t i)
{
    return (bm[i >> 6] >> (i & 63)) & 1u;
}
static inline void engine__bit_set(uint64_t *bm, uint32_t i)
{
    bm[i >> 6] |= (uint64_t)1 << (i & 63);
}
static inline void engine__bit_clear(uint64_t *bm, uint32_t i)
{
    bm[i >> 6] &= ~((uint64_t)1 << (i & 63));
}

/* ---- u64 -> u32 hash map (index.c) ---------------------------------------
 * Open addressing with linear probing and backward-shift deletion, sized once
 * at init to at least twice the maximum entry count, so it never grows and
 * probes stay short. A stored value of 0 marks an empty slot; values are kept
 * as v + 1 internally. */
typedef struct engine__map {
    uint64_t *keys;
    uint32_t *vals; /* value + 1; 0 = empty */
    uint32_t mask;
    uint32_t count;
    uint32_t max;
} engine__map;

#define ENGINE_MAP_NONE UINT32_MAX

int engine__map_init(engine__map *m, uint32_t max_entries);
void engine__map_free(engine__map *m);
uint32_t engine__map_get(const engine__map *m, uint64_t key);
void engine__map_put(engine__map *m, uint64_t key, uint32_t val); /* key must be absent */
bool engine__map_del(engine__map *m, uint64_t key);
uint64_t engine__mix64(uint64_t x);

/* ---- Layouts (layout.c) --------------------------------------------------- */
typedef struct engine__layout {
    uint64_t id;
    uint32_t seat_count, row_count, category_count, best_row;
    uint32_t words;     /* 64-bit words in a seat bitmap */
    int32_t centre2;    /* min_col + max_col over all seats (twice the centre) */
    uint32_t showtimes; /* showtimes using this layout */
    engine_seat_spec *seats;
    uint8_t *seat_cat;  /* compact copy of seats[i].category: hot path */
    uint16_t *seat_row; /* compact copy of seats[i].row */
    char (*row_labels)[ENGINE_LABEL_MAX];
    char category_names[ENGINE_CATEGORIES_MAX][ENGINE_NAME_MAX];
    uint32_t *row_first;   /* row_count + 1 entries: row r is [row_first[r], row_first[r+1]) */
    uint32_t *row_order;   /* rows in best-available preference order */
    uint8_t *row_cats;     /* per row: bit c set when the row has a seat of category c */
    uint32_t *label_slots; /* label hash table: seat index + 1, 0 = empty */
    uint32_t label_mask;
    uint64_t *cat_mask; /* category_count bitmaps of `words` words each */
    uint64_t *access;   /* accessible or companion seats */
    uint64_t *blocked;  /* never for sale */
    uint64_t *brk;      /* bit i: seat i is not adjacent to seat i + 1 */
    uint32_t blocked_per_cat[ENGINE_CATEGORIES_MAX];
    uint8_t *blob; /* canonical encoding, the LAYOUT_CREATE payload */
    uint32_t blob_len;
} engine__layout;

/* Encodes a spec into its canonical blob (malloc'd). Returns 0, ENGINE_BAD_LAYOUT
 * with *problem filled for structural problems found while encoding, or
 * ENGINE_ENOMEM. */
int engine__layout_encode(const engine_layout_spec *spec, uint8_t **blob, uint32_t *blob_len,
                          engine_problem *problem);

/* Builds a layout from a canonical blob, validating everything. Takes
 * ownership of `blob` on success. Returns 0, ENGINE_BAD_LAYOUT (problem
 * filled), or ENGINE_ENOMEM. */
int engine__layout_build(uint64_t id, uint8_t *blob, uint32_t blob_len, engine__layout *out,
                         engine_problem *problem);
void engine__layout_free(engine__layout *l);
int32_t engine__layout_find(const engine__layout *l, const char *label);

/* ---- Little-endian codec helpers (record.c and layout.c) ------------------ */
typedef struct engine__wbuf {
    uint8_t *p;
    size_t len, cap;
    bool overflow;
} engine__wbuf;

typedef struct engine__rbuf {
    const uint8_t *p;
    size_t len, pos;
    bool bad;
} engine__rbuf;

void engine__put_u8(engine__wbuf *w, uint8_t v);
void engine__put_u16(engine__wbuf *w, uint16_t v);
void engine__put_u32(engine__wbuf *w, uint32_t v);
void engine__put_u64(engine__wbuf *w, uint64_t v);
void engine__put_bytes(engine__wbuf *w, const void *b, size_t n);
uint8_t engine__get_u8(engine__rbuf *r);
uint16_t engine__get_u16(engine__rbuf *r);
uint32_t engine__get_u32(engine__rbuf *r);
uint64_t engine__get_u64(engine__rbuf *r);
const uint8_t *engine__get_bytes(engine__rbuf *r, size_t n);

/* ---- On-sale state (onsale.c) ------------------------------------------------ */
typedef struct engine__waiter {
    uint64_t user_id;
    int64_t joined_ms;
    uint8_t count, category;
} engine__waiter;

/* Place states in a queue (engine__queue.state). */
enum { QPLACE_WAITING = 0, QPLACE_LEFT = UINT32_MAX };

typedef struct engine__queue {
    uint32_t rate_per_s;
    int64_t start_ms;
    bool started;
    uint32_t n, cap;       /* places taken, allocated */
    uint32_t pre_n;        /* places taken before the start (shuffled at it) */
    uint32_t cursor;       /* places [0, cursor) are admitted or left */
    uint32_t waiting;      /* places in state QPLACE_WAITING */
    uint32_t admitted;     /* places ever admitted */
    uint64_t credit_milli; /* admission credit at credit_ms, thousandths of a user */
    int64_t credit_ms;     /* when credit_milli was last settled (0: the start) */
    uint64_t *users;       /* per place: the user */
    uint32_t *state;       /* per place: QPLACE_WAITING, QPLACE_LEFT, or 1 + seconds from the
                              start to the admission */
    uint32_t *fen;         /* Fenwick tree (1-based, cap entries) over "waiting" */
    uint32_t *index;       /* user -> place + 1, open addressing keyed by users[place] */
    uint32_t index_mask;   /* index has index_mask + 1 slots (0: none yet) */
} engine__queue;

typedef struct engine__onsale {
    engine__waiter *w; /* the waiting list, first in line first */
    uint32_t wn, wcap;
    engine__queue *q; /* NULL: no virtual queue */
} engine__onsale;

/* ---- Engine state (engine.c, state.c) -------------------------------------- */
#define ID_SEQ_BITS 48
#define ID_SEQ_MASK ((UINT64_C(1) << ID_SEQ_BITS) - 1)
#define SLOT_NONE   UINT32_MAX
#define HINT_NONE   0xff

typedef struct showtime {
    bool used;
    uint64_t id, layout_id;
    uint32_t layout_slot;
    int64_t start_ms;
    uint32_t prices[ENGINE_CATEGORIES_MAX];
    uint64_t *held, *sold; /* one allocation: held, then sold */
    uint32_t *row_free;    /* per row: seats neither held, sold nor blocked */
    /* Best-available cache, per row: an upper bound on the longest eligible
     * run for query class row_hint_cls (category * 2 + allow_accessible),
     * from the row's last scan. Taking seats keeps it an upper bound;
     * freeing one invalidates it. Not logical state: never digested. */
    uint32_t *row_hint;
    uint8_t *row_hint_cls;
    engine_category_counts counts[ENGINE_CATEGORIES_MAX];
    uint32_t live_holds, confirmed;
    bool dirty;             /* seats changed since the last snapshot */
    uint64_t *restore_held; /* during a restore: the stored held bitmap */
    engine__onsale *os;     /* waiting list and queue, NULL while it has neither */
    bool os_dirty;          /* on-sale state changed since the last snapshot */
    bool offer_pending;     /* seats came free while it had waiters (not logical state) */
    bool watched;           /* seat changes go to the engine's watch function (not logical state) */
} showtime;

typedef struct hold {
    uint64_t id, showtime_id, user_id;
    int64_t created_ms, expires_ms;
    uint64_t amount;
    bool offer; /* offered from the waiting list */
    uint32_t showtime_slot;
    uint32_t heap_pos;
    uint32_t user_prev, user_next; /* circular list of the user's live holds, by id */
    uint32_t seat_count;
    uint32_t seats[ENGINE_HOLD_SEATS_MAX];
} hold;

typedef struct booking {
    engine_booking_info info;
    uint32_t next_by_user; /* older booking of the same user, or SLOT_NONE */
} booking;

struct engine {
    engine_config cfg;
    int64_t now_ms;

    engine__layout *layouts;
    bool *layout_used;
    engine__map layout_ids;

    showtime *showtimes;
    engine__map showtime_ids;

    hold *holds;
    uint32_t *hold_free; /* stack of free hold slots */
    uint32_t hold_free_n;
    engine__map hold_ids;
    engine__map user_holds; /* user -> slot of their oldest live hold */
    uint32_t *heap;         /* live hold slots, min-heap on (expires_ms, id) */
    uint32_t heap_n;
    uint64_t hold_seq; /* next hold sequence number */

    booking *bookings; /* slot = booking sequence number - 1 */
    uint32_t booking_n;
    engine__map user_bookings; /* user -> slot of their newest booking */
    uint32_t *idem_slots;      /* booking slot + 1, by (user, key) hash */
    uint32_t idem_mask;

    /* On-sale work (onsale.c): showtimes where seats came free while they had
     * waiters (a stack; showtime.offer_pending marks members), and showtimes
     * with a virtual queue. Neither is logical state. */
    uint32_t *offer_pending;
    uint32_t offer_pending_n;
    uint32_t *queued;
    uint32_t queued_n;

    /* Seat watching (engine_seat_watch_set): told of every seat transition
     * of a showtime marked watched. Not logical state. */
    engine_seat_watch_fn watch;
    void *watch_arg;

    /* Snapshot dirty tracking: what changed since the last engine_snapshot_take. */
    uint64_t *booking_dirty; /* bookings_max bits: created or cancelled */
    bool *layout_dirty;      /* layouts_max flags: created */

    struct {
        bool meta;          /* META item seen */
        int64_t now_ms;     /* clock to set when the restore finishes */
        uint64_t hold_seq;  /* next hold sequence to set when it finishes */
        uint64_t last_hold; /* holds must arrive in ascending id order */
    } restore;
};

/* Helpers engine.c lends state.c. */
uint64_t engine__id_make(const engine *e, uint64_t seq);
uint32_t engine__hold_insert(engine *e, int64_t now_ms, showtime *st, uint64_t hold_id,
                             uint64_t user_id, int64_t expires_ms, uint64_t amount,
                             const uint32_t *seats, uint32_t n);
showtime *engine__showtime_find(const engine *e, uint64_t id);
int engine__layout_install(engine *e, int64_t now_ms, uint64_t layout_id, uint8_t *blob,
                           uint32_t blob_len, engine_problem *problem);
void engine__booking_index(engine *e, uint32_t slot);
bool engine__idem_exists(const engine *e, uint64_t user_id, const char *key, uint32_t len);
int64_t engine__add_ms(int64_t t, uint64_t d);
uint64_t engine__seats_amount(const engine *e, const showtime *st, const uint32_t *seats,
                              uint32_t n);
bool engine__holds_full(const engine *e);
/* Replay: a HOLD_PLACE-shaped record (hold_place fields) fits `st` now: the
 * next hold id, before the start, room in the pools, seats that exist, are
 * free and distinct, and an amount equal to their prices. */
bool engine__hold_record_fits(const engine *e, const showtime *st, const engine_record *rec);
/* The first checks of a request for `count` seats of a showtime, in the
 * documented order: TIME_BACKWARDS, UNKNOWN_SHOWTIME, SHOW_STARTED,
 * BAD_COUNT; ENGINE_OK with the showtime in *st_out. */
engine_result engine__hold_precheck(const engine *e, int64_t now_ms, uint64_t showtime_id,
                                    uint32_t count, showtime **st_out);
const engine__layout *engine__showtime_layout(const engine *e, const showtime *st);
/* Best-available search (engine_hold_best's rules) without placing a hold:
 * true with the block's first seat in *first. Updates the row hints. */
bool engine__best_find(engine *e, showtime *st, uint32_t count, uint32_t category,
                       bool allow_access, uint32_t *first);

/* onsale.c */
void engine__onsale_seats_freed(engine *e, showtime *st); /* marks it for offers */
bool engine__onsale_busy(const showtime *st);             /* has waiters or a queue */
void engine__onsale_free(engine *e, showtime *st);
int engine__onsale_apply(engine *e, const engine_record *rec);
uint64_t engine__onsale_digest(const showtime *st);
void engine__onsale_check(const engine *e, const showtime *st);
/* Snapshot item of a showtime's on-sale state: size, encode, restore. */
size_t engine__onsale_item_size(const showtime *st);
void engine__onsale_item_encode(engine__wbuf *w, const showtime *st);
int engine__onsale_item_restore(engine *e, showtime *st, const uint8_t *value, uint32_t len);

#endif /* USHER_ENGINE_INTERNAL_H */
