/*
 * engine.h - usher's seat engine: a pure, deterministic state machine.
 *
 * The engine owns seat layouts, showtimes (a layout plus prices and a start
 * time), the seat state of every showtime, holds and bookings. It does no I/O,
 * starts no threads, never reads a clock (time is the `now_ms` argument of
 * every mutation) and never allocates on the seat path: all pools are sized
 * at engine_init(); only layout and showtime creation allocate.
 *
 * Every mutation that succeeds fills one engine_record describing it. Feeding
 * those records, in order, to engine_record_apply() on a fresh engine with the
 * same configuration rebuilds the same state bit for bit (engine_digest()
 * proves it). The write-ahead log journals exactly these records.
 *
 * Return conventions:
 *   - Operations return an engine_result (>= 0): ENGINE_OK or the business
 *     reason for a refusal. A refusal changes nothing.
 *   - Functions that can fail for system reasons (allocation, corrupt input)
 *     return int: 0 on success, a negative ENGINE_E* code (engine_strerror()),
 *     or, where documented, a positive engine_result for a business refusal.
 *
 * Threading: an engine is touched by one thread at a time. Nothing is global.
 */
#ifndef USHER_ENGINE_H
#define USHER_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- Limits ------------------------------------------------------------ */

enum {
    ENGINE_SEATS_MAX = 100000,    /* seats in one layout */
    ENGINE_ROWS_MAX = 2048,       /* rows in one layout */
    ENGINE_COL_MAX = 65535,       /* highest physical column number */
    ENGINE_CATEGORIES_MAX = 8,    /* seat categories in one layout */
    ENGINE_HOLD_SEATS_MAX = 16,   /* hard cap on seats in one hold */
    ENGINE_LABEL_MAX = 16,        /* bytes for a seat/row label, NUL included */
    ENGINE_NAME_MAX = 24,         /* bytes for a category name, NUL included */
    ENGINE_IDEM_KEY_MAX = 64,     /* bytes of an idempotency key (no NUL) */
    ENGINE_REFUND_TIERS_MAX = 4,  /* tiers in a refund policy */
    ENGINE_RECORD_SMALL_MAX = 256 /* encoded size bound of every record but a layout */
};

/* ---- Errors (negative) ------------------------------------------------- */

enum {
    ENGINE_ENOMEM = -12,      /* allocation failed (matches -ENOMEM) */
    ENGINE_EINVAL = -22,      /* invalid argument (e.g. configuration) */
    ENGINE_EDECODE = -20001,  /* record bytes malformed */
    ENGINE_EREPLAY = -20002,  /* record does not apply to the current state */
    ENGINE_EBUFSIZE = -20003, /* output buffer too small */
};

/** Describes a negative engine error code. Never returns NULL. */
const char *engine_strerror(int err);

/* ---- Business results (non-negative) ----------------------------------- */

typedef enum engine_result {
    ENGINE_OK = 0,
    ENGINE_SEAT_TAKEN,        /* a listed seat is held or sold (see `conflicts`) */
    ENGINE_SEAT_BLOCKED,      /* a listed seat is blocked (not for sale) */
    ENGINE_NOT_AVAILABLE,     /* best-available: no block of N adjacent seats */
    ENGINE_UNKNOWN_SEAT,      /* a seat index is outside the layout */
    ENGINE_DUPLICATE_SEAT,    /* the same seat twice in one request */
    ENGINE_BAD_COUNT,         /* zero seats, or more than max_seats_per_hold */
    ENGINE_UNKNOWN_CATEGORY,  /* category index outside the layout */
    ENGINE_UNKNOWN_SHOWTIME,  /* no showtime with that id */
    ENGINE_UNKNOWN_LAYOUT,    /* no layout with that id */
    ENGINE_UNKNOWN_HOLD,      /* no hold with that id was ever placed */
    ENGINE_HOLD_EXPIRED,      /* the hold's time ran out (confirm, extend) */
    ENGINE_HOLD_ENDED,        /* the hold was released, expired or confirmed */
    ENGINE_HOLD_EXTEND_LIMIT, /* the hold already lives as long as allowed */
    ENGINE_UNKNOWN_BOOKING,   /* no booking with that id */
    ENGINE_BOOKING_CANCELLED, /* the booking is already cancelled */
    ENGINE_NOT_OWNER,         /* the hold or booking belongs to another user */
    ENGINE_SHOW_STARTED,      /* sales and cancellations close at the start */
    ENGINE_BAD_PAYMENT,       /* unknown payment method */
    ENGINE_BAD_IDEM_KEY,      /* idempotency key longer than ENGINE_IDEM_KEY_MAX */
    ENGINE_IDEM_KEY_REUSED,   /* key already used by this user for another hold */
    ENGINE_TIME_BACKWARDS,    /* now_ms is before the last mutation's time */
    ENGINE_EXISTS,            /* a layout or showtime with that id exists */
    ENGINE_BAD_LAYOUT,        /* layout spec invalid (see engine_problem) */
    ENGINE_BAD_PRICES,        /* price count differs from the layout's categories */
    ENGINE_LAYOUT_IN_USE,     /* layout still referenced by a showtime */
    ENGINE_SHOWTIME_IN_USE,   /* showtime has live holds or confirmed bookings */
    ENGINE_CAPACITY,          /* a configured pool (holds, bookings, ...) is full */
    ENGINE_SEATS_AVAILABLE,   /* waiting list: the request fits the free seats now */
    ENGINE_ALREADY_WAITING,   /* waiting list: the user is on it already */
    ENGINE_NOT_WAITING,       /* waiting list / queue: the user is not on it */
    ENGINE_NO_QUEUE,          /* no virtual queue on this showtime */
    ENGINE_QUEUE_STARTED,     /* the queue's start time passed: it cannot move */
    ENGINE_RESULT_COUNT_
} engine_result;

/** Stable snake_case name of a result ("seat_taken"), for APIs and logs. */
const char *engine_result_name(engine_result r);

/* ---- Configuration ----------------------------------------------------- */

typedef struct engine_refund_tier {
    int64_t min_before_start_ms; /* applies when cancelled at least this long before start */
    uint32_t percent;            /* 0..100 of the amount paid */
} engine_refund_tier;

typedef struct engine_config {
    uint64_t hold_ttl_ms;          /* lifetime of a new hold and of each extension */
    uint64_t hold_max_lifetime_ms; /* extensions never push expiry past created + this */
    uint32_t max_seats_per_hold;   /* 1..ENGINE_HOLD_SEATS_MAX */
    uint32_t holds_max;            /* live holds at once */
    uint32_t bookings_max;         /* bookings ever kept (confirmed or cancelled) */
    uint32_t showtimes_max;        /* showtimes at once */
    uint32_t layouts_max;          /* layouts at once */
    uint16_t id_prefix;            /* stored in the top 16 bits of hold and booking ids */
    uint32_t refund_tier_count;    /* tiers, ordered by min_before_start_ms descending */
    engine_refund_tier refund_tiers[ENGINE_REFUND_TIERS_MAX];
    /* On-sale features. 0 in any of these means its default. */
    uint32_t waitlist_max;          /* waiters on one showtime's waiting list */
    uint64_t offer_ttl_ms;          /* lifetime of a hold offered to a waiter */
    uint32_t queue_slots_max;       /* places ever taken in one showtime's queue */
    uint64_t queue_admit_window_ms; /* an admitted user may reserve this long */
} engine_config;

/**
 * Fills `cfg` with the defaults: 300 s holds, 900 s maximum hold lifetime,
 * 10 seats per hold, 65,536 live holds, 1,048,576 bookings, 16,384 showtimes,
 * 1,024 layouts, id prefix 0, refunds of 100 % at >= 24 h before the start,
 * 50 % at >= 2 h, none after; 4,096 waiters per waiting list, 600 s offers,
 * 1,000,000 places per queue, a 600 s admission window.
 */
void engine_config_default(engine_config *cfg);

/* ---- Layouts ----------------------------------------------------------- */

enum {
    ENGINE_SEAT_FLAG_ACCESSIBLE = 1u << 0, /* wheelchair space */
    ENGINE_SEAT_FLAG_COMPANION = 1u << 1,  /* companion seat next to an accessible one */
    ENGINE_SEAT_FLAG_BLOCKED = 1u << 2,    /* never for sale (camera platform, broken seat) */
    ENGINE_SEAT_FLAG_ALL = 0x7u
};

typedef struct engine_seat_spec {
    char label[ENGINE_LABEL_MAX]; /* unique in the layout, 1..15 bytes, e.g. "A12" */
    uint16_t row;                 /* row index: 0 is nearest the screen */
    uint16_t col;                 /* physical column; a missing column is an aisle */
    uint8_t category;             /* index into the layout's categories */
    uint8_t flags;                /* ENGINE_SEAT_FLAG_* */
} engine_seat_spec;

typedef struct engine_layout_spec {
    uint32_t seat_count;                        /* 1..ENGINE_SEATS_MAX */
    const engine_seat_spec *seats;              /* ordered by (row, col), strictly increasing */
    uint32_t row_count;                         /* 1..ENGINE_ROWS_MAX; every row has a seat */
    const char (*row_labels)[ENGINE_LABEL_MAX]; /* row_count labels, unique */
    uint32_t category_count;                    /* 1..ENGINE_CATEGORIES_MAX */
    char category_names[ENGINE_CATEGORIES_MAX][ENGINE_NAME_MAX]; /* unique, non-empty */
    uint32_t best_row; /* the row best-available prefers; the others by distance to it */
} engine_layout_spec;

/** Where a layout spec went wrong: filled when creation returns ENGINE_BAD_LAYOUT. */
typedef struct engine_problem {
    const char *field;  /* "seats", "row_labels", "category_names", "best_row", ... */
    uint32_t index;     /* element of that field, when it is an array */
    const char *reason; /* a sentence, static storage */
} engine_problem;

/* ---- Showtime state queries -------------------------------------------- */

typedef enum engine_seat_state {
    ENGINE_SEAT_FREE = 0,
    ENGINE_SEAT_HELD = 1,
    ENGINE_SEAT_SOLD = 2,
    ENGINE_SEAT_UNSELLABLE = 3 /* blocked in the layout */
} engine_seat_state;

typedef struct engine_category_counts {
    uint32_t free, held, sold, blocked;
} engine_category_counts;

/* ---- Holds and bookings ------------------------------------------------ */

typedef enum engine_payment {
    ENGINE_PAY_UPI = 1,
    ENGINE_PAY_CARD = 2,
    ENGINE_PAY_WALLET = 3
} engine_payment;

typedef struct engine_hold_info {
    uint64_t id, showtime_id, user_id;
    int64_t created_ms, expires_ms;
    uint64_t amount; /* sum of the seats' prices when the hold was placed */
    bool offer;      /* offered to a waiter from the showtime's waiting list */
    uint32_t seat_count;
    uint32_t seats[ENGINE_HOLD_SEATS_MAX]; /* seat indices, in request order */
} engine_hold_info;

typedef enum engine_booking_status {
    ENGINE_BOOKING_STATUS_CONFIRMED = 1,
    ENGINE_BOOKING_STATUS_CANCELLED = 2
} engine_booking_status;

typedef struct engine_booking_info {
    uint64_t id, showtime_id, user_id, hold_id;
    int64_t confirmed_ms, cancelled_ms; /* cancelled_ms is 0 while confirmed */
    uint64_t amount, refund;
    engine_payment payment;
    engine_booking_status status;
    uint32_t seat_count;
    uint32_t seats[ENGINE_HOLD_SEATS_MAX];
    uint32_t idem_key_len; /* 0 when confirmed without a key */
    char idem_key[ENGINE_IDEM_KEY_MAX];
} engine_booking_info;

/* ---- Records ------------------------------------------------------------ */

typedef enum engine_record_type {
    ENGINE_REC_LAYOUT_CREATE = 1,
    ENGINE_REC_LAYOUT_DELETE = 2,
    ENGINE_REC_SHOWTIME_CREATE = 3,
    ENGINE_REC_SHOWTIME_DELETE = 4,
    ENGINE_REC_HOLD_PLACE = 5,
    ENGINE_REC_HOLD_EXTEND = 6,
    ENGINE_REC_HOLD_RELEASE = 7,
    ENGINE_REC_HOLD_EXPIRE = 8,
    ENGINE_REC_BOOKING_CONFIRM = 9,
    ENGINE_REC_BOOKING_CANCEL = 10,
    ENGINE_REC_SHOWTIME_PRICE = 11, /* new prices for new holds */
    ENGINE_REC_WAITLIST_JOIN = 12,  /* a user joins a showtime's waiting list */
    ENGINE_REC_WAITLIST_LEAVE = 13, /* ... leaves it */
    ENGINE_REC_WAITLIST_OFFER = 14, /* a waiter leaves it with a hold (hold_place fields) */
    ENGINE_REC_QUEUE_SET = 15,      /* a virtual queue is enabled, changed or removed */
    ENGINE_REC_QUEUE_JOIN = 16,     /* a user takes a place in the queue */
    ENGINE_REC_QUEUE_LEAVE = 17,    /* ... gives it up */
    ENGINE_REC_QUEUE_START = 18,    /* the start time came: the early joiners are shuffled */
    ENGINE_REC_QUEUE_ADMIT = 19,    /* the next waiting users are admitted */
} engine_record_type;

enum { ENGINE_CATEGORY_ANY = 255 /* a waiting-list request for seats of any category */ };

/**
 * One state change. Small records are self-contained. A LAYOUT_CREATE record
 * borrows the layout's canonical encoding (`layout.blob`): it lives as long as
 * the layout does in the engine that produced the record, or as long as the
 * buffer it was decoded from.
 */
typedef struct engine_record {
    engine_record_type type;
    int64_t time_ms;
    union {
        struct {
            uint64_t layout_id;
            const uint8_t *blob;
            uint32_t blob_len;
        } layout_create;
        struct {
            uint64_t layout_id;
        } layout_delete;
        struct {
            uint64_t showtime_id, layout_id;
            int64_t start_ms;
            uint32_t price_count;
            uint32_t prices[ENGINE_CATEGORIES_MAX]; /* minor units, per category */
        } showtime_create;
        struct {
            uint64_t showtime_id;
        } showtime_delete;
        struct {
            uint64_t hold_id, showtime_id, user_id;
            int64_t expires_ms;
            uint64_t amount;
            uint32_t seat_count;
            uint32_t seats[ENGINE_HOLD_SEATS_MAX];
        } hold_place; /* HOLD_PLACE and WAITLIST_OFFER */
        struct {
            uint64_t hold_id;
            int64_t expires_ms;
        } hold_extend;
        struct {
            uint64_t hold_id; /* HOLD_RELEASE and HOLD_EXPIRE */
        } hold_end;
        struct {
            uint64_t booking_id, hold_id;
            engine_payment payment;
            uint32_t idem_key_len;
            char idem_key[ENGINE_IDEM_KEY_MAX];
        } booking_confirm;
        struct {
            uint64_t booking_id;
            uint64_t refund;
        } booking_cancel;
        struct {
            uint64_t showtime_id;
            uint32_t price_count;
            uint32_t prices[ENGINE_CATEGORIES_MAX];
        } showtime_price;
        struct {
            uint64_t showtime_id, user_id;
            uint32_t count;    /* seats wanted, 1..max_seats_per_hold */
            uint32_t category; /* category index, or ENGINE_CATEGORY_ANY */
        } waitlist_join;
        struct {
            uint64_t showtime_id, user_id; /* WAITLIST_LEAVE, QUEUE_JOIN, QUEUE_LEAVE */
        } onsale_user;
        struct {
            uint64_t showtime_id;
            uint32_t rate_per_s; /* users admitted per second; 0 removes the queue */
            int64_t start_ms;    /* when admission starts */
        } queue_set;
        struct {
            uint64_t showtime_id;
            uint64_t seed; /* of the shuffle of the places taken before the start */
        } queue_start;
        struct {
            uint64_t showtime_id;
            uint32_t cursor;       /* places [0, cursor) are admitted or left */
            uint64_t credit_milli; /* admission credit left, thousandths of a user */
        } queue_admit;
    } u;
} engine_record;

/** Stable name of a record type ("hold_place"), or "unknown". */
const char *engine_record_type_name(engine_record_type t);

/**
 * Encodes `rec` into `buf` (little-endian, versioned, stable across releases).
 * Returns the encoded length, or ENGINE_EBUFSIZE if `cap` is too small (every
 * record but LAYOUT_CREATE fits in ENGINE_RECORD_SMALL_MAX bytes), or
 * ENGINE_EINVAL for a record that cannot be encoded.
 */
int engine_record_encode(const engine_record *rec, uint8_t *buf, size_t cap);

/**
 * Decodes `len` bytes into `rec`. A LAYOUT_CREATE record points into `buf`.
 * Returns 0 or ENGINE_EDECODE (truncated, trailing bytes, bad field values).
 */
int engine_record_decode(const uint8_t *buf, size_t len, engine_record *rec);

/* ---- The engine ---------------------------------------------------------- */

typedef struct engine engine;

/**
 * Creates an engine; `cfg` is copied. Returns 0, ENGINE_EINVAL for a config
 * out of range (a zero pool, max_seats_per_hold outside 1..16, refund tiers not
 * descending or percent > 100), or ENGINE_ENOMEM. On error *out is untouched.
 */
int engine_create(const engine_config *cfg, engine **out);

/** Frees the engine and everything it owns. NULL is fine. */
void engine_destroy(engine *e);

/** The configuration the engine was created with. */
const engine_config *engine_config_get(const engine *e);

/** Time of the last successful mutation (0 before the first). */
int64_t engine_now_ms(const engine *e);

/**
 * Creates layout `layout_id` from `spec` (validated; copied). Returns 0 with
 * `*rec` filled, ENGINE_EXISTS, ENGINE_BAD_LAYOUT (with `*problem` filled when
 * non-NULL), ENGINE_CAPACITY, ENGINE_TIME_BACKWARDS, or ENGINE_ENOMEM (< 0).
 */
int engine_layout_create(engine *e, int64_t now_ms, uint64_t layout_id,
                         const engine_layout_spec *spec, engine_problem *problem,
                         engine_record *rec);

/**
 * Checks `spec` exactly as engine_layout_create() does, without an engine:
 * the catalog refuses a bad screen layout before it is journaled. Returns 0,
 * ENGINE_BAD_LAYOUT (with `*problem` filled when non-NULL), or ENGINE_ENOMEM.
 */
int engine_layout_validate(const engine_layout_spec *spec, engine_problem *problem);

/** Deletes a layout no showtime uses. ENGINE_UNKNOWN_LAYOUT, ENGINE_LAYOUT_IN_USE. */
engine_result engine_layout_delete(engine *e, int64_t now_ms, uint64_t layout_id,
                                   engine_record *rec);

/** Number of seats in a layout, or 0 if unknown. */
uint32_t engine_layout_seat_count(const engine *e, uint64_t layout_id);

/** Seat index for `label` in the layout, or -1 (unknown layout or label). */
int32_t engine_layout_seat_find(const engine *e, uint64_t layout_id, const char *label);

/** The seat spec of seat `seat` (label, row, col, category, flags), or NULL. */
const engine_seat_spec *engine_layout_seat(const engine *e, uint64_t layout_id, uint32_t seat);

/** Row label of `row`, or NULL. */
const char *engine_layout_row_label(const engine *e, uint64_t layout_id, uint32_t row);

/** Number of categories, and the name of category `cat` (NULL if out of range). */
uint32_t engine_layout_category_count(const engine *e, uint64_t layout_id);
const char *engine_layout_category_name(const engine *e, uint64_t layout_id, uint32_t cat);

/**
 * Creates a showtime of `layout_id` starting at `start_ms`, with one price
 * (minor units) per layout category. Every seat starts free except the
 * layout's blocked ones. Returns 0 or a positive result: ENGINE_EXISTS,
 * ENGINE_UNKNOWN_LAYOUT, ENGINE_BAD_PRICES, ENGINE_CAPACITY,
 * ENGINE_TIME_BACKWARDS; or ENGINE_ENOMEM.
 */
int engine_showtime_create(engine *e, int64_t now_ms, uint64_t showtime_id, uint64_t layout_id,
                           int64_t start_ms, const uint32_t *prices, uint32_t price_count,
                           engine_record *rec);

/**
 * Deletes a showtime that has no live hold and no confirmed booking
 * (ENGINE_SHOWTIME_IN_USE otherwise). Its cancelled bookings stay readable.
 */
engine_result engine_showtime_delete(engine *e, int64_t now_ms, uint64_t showtime_id,
                                     engine_record *rec);

/** Showtime facts; false if unknown. Any out pointer may be NULL. */
bool engine_showtime_get(const engine *e, uint64_t showtime_id, uint64_t *layout_id,
                         int64_t *start_ms, uint32_t *prices /* ENGINE_CATEGORIES_MAX */);

/**
 * Seat watching, for live seat maps. The watch function is called, after
 * the fact and synchronously, for every seat transition of a showtime marked
 * with engine_showtime_watch: `seats` (indices) went to `to` (FREE, HELD or
 * SOLD). A transition happens inside the call that makes it (hold, release,
 * expiry, confirm, cancel, offer, and their replays); the function must not
 * call back into the engine. Watching is not logical state: it is neither
 * journaled, snapshotted nor digested. `fn` NULL stops all watching.
 */
typedef void (*engine_seat_watch_fn)(void *arg, uint64_t showtime_id, const uint32_t *seats,
                                     uint32_t n, engine_seat_state to);
void engine_seat_watch_set(engine *e, engine_seat_watch_fn fn, void *arg);
/** Marks a showtime watched or not; false if unknown. Deleting it unmarks it. */
bool engine_showtime_watch(engine *e, uint64_t showtime_id, bool on);

/** State of one seat, or -1 for an unknown showtime or seat. */
int engine_seat_state_get(const engine *e, uint64_t showtime_id, uint32_t seat);

/**
 * Writes every seat's engine_seat_state (one byte each) into `states`.
 * Returns the seat count, ENGINE_EBUFSIZE if `cap` is smaller, or -1 if the
 * showtime is unknown.
 */
int32_t engine_seatmap_get(const engine *e, uint64_t showtime_id, uint8_t *states, size_t cap);

/**
 * Per-category counts (free, held, sold, blocked) for a showtime, `counts`
 * sized ENGINE_CATEGORIES_MAX. Returns the category count, or -1 if unknown.
 */
int32_t engine_availability_get(const engine *e, uint64_t showtime_id,
                                engine_category_counts *counts);

/**
 * Holds the listed seats (indices) of a showtime for `user_id`, all or none,
 * until now_ms + hold_ttl_ms. Returns ENGINE_OK with `*rec` filled (its
 * hold_place.hold_id is the new hold), or a refusal. On ENGINE_SEAT_TAKEN and
 * ENGINE_SEAT_BLOCKED, the refused seats are written to `conflicts` (may be
 * NULL; room for `seat_count` entries) and their number to `*conflict_count`.
 *
 * Refusals, checked in this order: ENGINE_TIME_BACKWARDS,
 * ENGINE_UNKNOWN_SHOWTIME, ENGINE_SHOW_STARTED (now_ms >= start),
 * ENGINE_BAD_COUNT, ENGINE_UNKNOWN_SEAT, ENGINE_DUPLICATE_SEAT,
 * ENGINE_SEAT_BLOCKED, ENGINE_SEAT_TAKEN, ENGINE_CAPACITY.
 *
 * A hold past its expiry keeps its seats until engine_holds_expire() sweeps
 * it: callers sweep first with the same now_ms (the server does each turn).
 */
engine_result engine_hold_place(engine *e, int64_t now_ms, uint64_t showtime_id, uint64_t user_id,
                                const uint32_t *seats, uint32_t seat_count, uint32_t *conflicts,
                                uint32_t *conflict_count, engine_record *rec);

/** Options for engine_hold_best(). */
enum {
    ENGINE_BEST_ALLOW_ACCESSIBLE = 1u << 0 /* may use accessible and companion seats */
};

/**
 * Holds the best block of `count` adjacent seats of `category`: one row,
 * physically contiguous (no aisle inside), free, not blocked, and unless
 * ENGINE_BEST_ALLOW_ACCESSIBLE not accessible or companion seats.
 * Among all such blocks it picks, in order of priority:
 *   1. one that leaves no single free seat stranded beside it, if any does;
 *   2. the row nearest the layout's best row (ties: the row further back);
 *   3. the block whose centre is nearest the layout's centre column;
 *   4. the lowest seat index.
 * Refusals: as engine_hold_place() plus ENGINE_UNKNOWN_CATEGORY and
 * ENGINE_NOT_AVAILABLE. The chosen seats are in rec->u.hold_place.seats,
 * in ascending order.
 */
engine_result engine_hold_best(engine *e, int64_t now_ms, uint64_t showtime_id, uint64_t user_id,
                               uint32_t count, uint32_t category, uint32_t options,
                               engine_record *rec);

/**
 * Extends a live hold to min(now_ms + hold_ttl_ms, created + hold_max_lifetime_ms).
 * Refusals: ENGINE_TIME_BACKWARDS, ENGINE_UNKNOWN_HOLD, ENGINE_HOLD_ENDED,
 * ENGINE_NOT_OWNER, ENGINE_HOLD_EXPIRED (now_ms >= expiry),
 * ENGINE_HOLD_EXTEND_LIMIT (the new expiry would not be later).
 */
engine_result engine_hold_extend(engine *e, int64_t now_ms, uint64_t hold_id, uint64_t user_id,
                                 engine_record *rec);

/**
 * Releases a live hold; its seats become free. Works on a hold past its
 * expiry that has not been swept. Refusals: ENGINE_TIME_BACKWARDS,
 * ENGINE_UNKNOWN_HOLD, ENGINE_HOLD_ENDED, ENGINE_NOT_OWNER.
 */
engine_result engine_hold_release(engine *e, int64_t now_ms, uint64_t hold_id, uint64_t user_id,
                                  engine_record *rec);

/**
 * Expires holds whose expiry is <= now_ms, oldest expiry first (ties: lower
 * id first), at most `cap` of them, writing one HOLD_EXPIRE record each to
 * `recs` and, when `expired` is not NULL, each hold as it was (seats
 * included). Returns how many expired; call again while it returns `cap`.
 * Returns 0 if now_ms is before the engine's time (nothing changes).
 */
size_t engine_holds_expire(engine *e, int64_t now_ms, engine_record *recs,
                           engine_hold_info *expired, size_t cap);

/** Earliest expiry among live holds, or INT64_MAX when there is none. */
int64_t engine_holds_next_expiry_ms(const engine *e);

/** Number of live holds (including expired ones not yet swept). */
uint32_t engine_holds_live(const engine *e);

/**
 * Seats held and sold across every showtime, and the number of showtimes
 * (for metrics). O(showtimes_max): call now and then, not per request.
 */
void engine_seat_totals(const engine *e, uint64_t *held, uint64_t *sold, uint32_t *showtimes);

/**
 * Confirms a live hold into a booking paid with `payment`, for the hold's
 * amount. `idem_key` (may be NULL when idem_key_len is 0) makes the call
 * idempotent per user: a key the user already confirmed *this hold* with
 * returns ENGINE_OK with `*booking_id` of that booking, `*replayed` true and no
 * record; a key the user used for another hold gives ENGINE_IDEM_KEY_REUSED.
 * Refusals: ENGINE_TIME_BACKWARDS, ENGINE_BAD_PAYMENT, ENGINE_BAD_IDEM_KEY,
 * (idempotent replay here), ENGINE_UNKNOWN_HOLD, ENGINE_HOLD_ENDED,
 * ENGINE_NOT_OWNER, ENGINE_HOLD_EXPIRED, ENGINE_CAPACITY (defensive only:
 * placing a hold already reserves its booking slot).
 */
engine_result engine_booking_confirm(engine *e, int64_t now_ms, uint64_t hold_id, uint64_t user_id,
                                     engine_payment payment, const char *idem_key,
                                     uint32_t idem_key_len, uint64_t *booking_id, bool *replayed,
                                     engine_record *rec);

/**
 * Cancels a confirmed booking before its showtime starts; the seats become
 * free and the refund follows the configured policy (`*refund`, minor units).
 * Refusals: ENGINE_TIME_BACKWARDS, ENGINE_UNKNOWN_BOOKING, ENGINE_NOT_OWNER,
 * ENGINE_BOOKING_CANCELLED, ENGINE_SHOW_STARTED.
 */
engine_result engine_booking_cancel(engine *e, int64_t now_ms, uint64_t booking_id,
                                    uint64_t user_id, uint64_t *refund, engine_record *rec);

/** Refund for `amount` cancelled `before_start_ms` before the start, per policy. */
uint64_t engine_refund_compute(const engine_config *cfg, uint64_t amount, int64_t before_start_ms);

/** Copies a live hold. false if no live hold has that id. */
bool engine_hold_get(const engine *e, uint64_t hold_id, engine_hold_info *out);

/** Copies a booking. false if unknown. */
bool engine_booking_get(const engine *e, uint64_t booking_id, engine_booking_info *out);

/**
 * Lists a user's live hold ids (ascending) / booking ids (newest first),
 * skipping the first `offset`, at most `cap`. Return the total number the
 * user has, so callers can paginate.
 */
uint32_t engine_user_holds(const engine *e, uint64_t user_id, uint32_t offset, uint64_t *ids,
                           uint32_t cap);
uint32_t engine_user_bookings(const engine *e, uint64_t user_id, uint32_t offset, uint64_t *ids,
                              uint32_t cap);

/* ---- Prices ---------------------------------------------------------------- */

/**
 * Sets a showtime's prices (one per layout category, minor units) for holds
 * placed from now on; live holds and bookings keep the amount they have.
 * Refusals: ENGINE_TIME_BACKWARDS, ENGINE_UNKNOWN_SHOWTIME, ENGINE_BAD_PRICES.
 */
engine_result engine_showtime_price_set(engine *e, int64_t now_ms, uint64_t showtime_id,
                                        const uint32_t *prices, uint32_t price_count,
                                        engine_record *rec);

/* ---- Waiting lists ------------------------------------------------------------
 * A sold-out showtime keeps a FIFO of waiters, each wanting `count` seats of
 * one category (or of any). When seats come free (a hold released or
 * expired, a booking cancelled) engine_onsale_next() offers them: it walks
 * the waiters in order and gives the first whose request fits a hold (an
 * offer, offer_ttl_ms long) and takes them off the list; a waiter whose
 * request does not fit keeps their place and the walk goes on (so two freed
 * seats go to the first waiter wanting two or fewer). The seats of an offer:
 * the best adjacent block as engine_hold_best() picks it (categories in
 * layout order for "any"); if no block fits, the free seats nearest the best
 * row, rows in best-available order. Offers never use accessible or
 * companion seats. An offer that expires frees its seats, so they pass on
 * to the next waiter that fits. */

typedef struct engine_waiter_info {
    uint32_t position; /* 1 = first in line */
    uint32_t count, category;
    int64_t joined_ms;
} engine_waiter_info;

/**
 * Puts `user_id` at the end of a showtime's waiting list for `count` seats of
 * `category` (or ENGINE_CATEGORY_ANY). Refusals, in order:
 * ENGINE_TIME_BACKWARDS, ENGINE_UNKNOWN_SHOWTIME, ENGINE_SHOW_STARTED,
 * ENGINE_BAD_COUNT, ENGINE_UNKNOWN_CATEGORY, ENGINE_ALREADY_WAITING,
 * ENGINE_SEATS_AVAILABLE (an offer could be made now: reserve instead),
 * ENGINE_CAPACITY (waitlist_max waiters). Returns ENGINE_ENOMEM (< 0) when
 * the list cannot grow.
 */
int engine_waitlist_join(engine *e, int64_t now_ms, uint64_t showtime_id, uint64_t user_id,
                         uint32_t count, uint32_t category, engine_record *rec);

/** Takes a user off a waiting list. ENGINE_TIME_BACKWARDS, ENGINE_UNKNOWN_SHOWTIME,
 * ENGINE_NOT_WAITING. */
engine_result engine_waitlist_leave(engine *e, int64_t now_ms, uint64_t showtime_id,
                                    uint64_t user_id, engine_record *rec);

/** A user's place on a waiting list; false if they are not on it. O(waiters). */
bool engine_waitlist_get(const engine *e, uint64_t showtime_id, uint64_t user_id,
                         engine_waiter_info *out);

/** Waiters on a showtime's waiting list (0 for an unknown showtime). */
uint32_t engine_waitlist_length(const engine *e, uint64_t showtime_id);

/* ---- Virtual queues -------------------------------------------------------------
 * A queue admits users to a flash sale at a fixed rate. Places taken before
 * the start time are shuffled when it comes (one QUEUE_START record carries
 * the seed), places taken later are first come, first served. From the
 * start, admission credit accrues at rate_per_s (at most one second's worth
 * is kept), and each admission step admits as many waiting users, in queue
 * order, as the credit allows: O(1) per admitted user. An admitted user may
 * reserve for queue_admit_window_ms; the engine only keeps the queue, the
 * server checks admission when it sells. Leaving frees the place; joining
 * again takes a new one at the end. Memory: 24 bytes per place taken, plus
 * the index (8 to 16 bytes per place). */

typedef enum engine_queue_state {
    ENGINE_QUEUE_NONE = 0,     /* not in the queue */
    ENGINE_QUEUE_PREQUEUE = 1, /* joined before the start: placed at random at the start */
    ENGINE_QUEUE_WAITING = 2,  /* in line (position counts who is ahead) */
    ENGINE_QUEUE_ADMITTED = 3, /* may reserve until admitted_ms + queue_admit_window_ms */
    ENGINE_QUEUE_LAPSED = 4    /* was admitted, the window passed: join again */
} engine_queue_state;

typedef struct engine_queue_info {
    uint32_t rate_per_s;
    int64_t start_ms;
    bool started;
    uint32_t places;   /* places ever taken */
    uint32_t waiting;  /* users in line (prequeue included) */
    uint32_t admitted; /* users admitted so far (left or not) */
} engine_queue_info;

typedef struct engine_queue_user {
    engine_queue_state state;
    uint32_t position;   /* WAITING: 1 = next to be admitted; PREQUEUE: 0 */
    int64_t admitted_ms; /* ADMITTED and LAPSED */
    int64_t until_ms;    /* ADMITTED and LAPSED: admitted_ms + window */
} engine_queue_user;

/**
 * Enables a virtual queue on a showtime, or changes its rate, or (rate 0)
 * removes it. The start may move only while it has not come. Refusals:
 * ENGINE_TIME_BACKWARDS, ENGINE_UNKNOWN_SHOWTIME, ENGINE_NO_QUEUE (rate 0 on
 * none), ENGINE_QUEUE_STARTED (a new start for a started queue);
 * ENGINE_ENOMEM (< 0).
 */
int engine_queue_set(engine *e, int64_t now_ms, uint64_t showtime_id, uint32_t rate_per_s,
                     int64_t start_ms, engine_record *rec);

/**
 * Takes a place for `user_id`. A user who is in line or admitted (and not
 * lapsed) keeps their place: ENGINE_OK with no record (`*joined` false).
 * Refusals: ENGINE_TIME_BACKWARDS, ENGINE_UNKNOWN_SHOWTIME, ENGINE_NO_QUEUE,
 * ENGINE_SHOW_STARTED, ENGINE_CAPACITY (queue_slots_max places);
 * ENGINE_ENOMEM (< 0).
 */
int engine_queue_join(engine *e, int64_t now_ms, uint64_t showtime_id, uint64_t user_id,
                      bool *joined, engine_record *rec);

/** Gives up a place. ENGINE_TIME_BACKWARDS, ENGINE_UNKNOWN_SHOWTIME, ENGINE_NO_QUEUE,
 * ENGINE_NOT_WAITING. */
engine_result engine_queue_leave(engine *e, int64_t now_ms, uint64_t showtime_id, uint64_t user_id,
                                 engine_record *rec);

/** The queue of a showtime; false if it has none. */
bool engine_queue_get(const engine *e, uint64_t showtime_id, engine_queue_info *out);

/**
 * Where `user_id` stands at `now_ms` (ENGINE_QUEUE_NONE when not in the
 * queue or no queue). O(log places).
 */
engine_queue_user engine_queue_user_get(const engine *e, uint64_t showtime_id, uint64_t user_id,
                                        int64_t now_ms);

/** Bytes a showtime's queue uses (capacity planning, the memory report). */
size_t engine_queue_bytes(const engine *e, uint64_t showtime_id);

/** On-sale state summed over every showtime (metrics). O(showtimes). */
typedef struct engine_onsale_totals {
    uint64_t waiters;        /* users on waiting lists */
    uint32_t queues;         /* showtimes with a virtual queue */
    uint64_t queue_waiting;  /* users in those queues' lines (prequeue included) */
    uint64_t queue_admitted; /* users those queues admitted so far */
} engine_onsale_totals;
void engine_onsale_totals_get(const engine *e, engine_onsale_totals *out);

/* ---- On-sale steps --------------------------------------------------------------- */

/**
 * Makes the next on-sale step that is due at `now_ms`, if any: a waiting-list
 * offer where seats came free (WAITLIST_OFFER), a queue whose start came
 * (QUEUE_START, shuffled with `seed`), or a queue admission (QUEUE_ADMIT).
 * Returns ENGINE_OK with `*rec` filled, or ENGINE_NOT_AVAILABLE when nothing
 * is due (or ENGINE_CAPACITY when an offer is due but the hold pool is full).
 * Call it in a loop after a change that frees seats and on a timer; pass a
 * fresh random seed each call (only a start uses it). Steps are journaled like
 * any record; replaying them needs no seed.
 */
engine_result engine_onsale_next(engine *e, int64_t now_ms, uint64_t seed, engine_record *rec);

/* ---- Snapshots ---------------------------------------------------------------
 * A snapshot is a deep copy of engine state as (kind, key, value) items with
 * stable little-endian encodings (docs/storage.md). Taking one is a memory
 * copy on the engine's thread; the copy is self-contained, so another thread
 * can write it out while the engine goes on. Restoring feeds the items back
 * into a fresh engine. The engine never does the I/O. */

typedef enum engine_item_kind {
    ENGINE_ITEM_META = 1,     /* key 0: clock, id counters, id prefix */
    ENGINE_ITEM_LAYOUT = 2,   /* key layout id: the layout's canonical blob */
    ENGINE_ITEM_SHOWTIME = 3, /* key showtime id: layout, start, prices, held and sold bitmaps */
    ENGINE_ITEM_HOLD = 4,     /* key hold id: a live hold */
    ENGINE_ITEM_BOOKING = 5,  /* key booking id: a booking, confirmed or cancelled */
    ENGINE_ITEM_ONSALE = 6,   /* key showtime id: its waiting list and virtual queue */
} engine_item_kind;

typedef struct engine_item {
    engine_item_kind kind;
    uint64_t key;
    const uint8_t *value; /* owned by the snapshot */
    uint32_t len;
} engine_item;

typedef struct engine_snapshot engine_snapshot;

/**
 * Copies the engine's state. With `full`, every object. Otherwise
 * (incremental) only what changed since the previous take: new layouts,
 * showtimes whose seats changed or that are new, bookings created or
 * cancelled, on-sale state (waiting list and queue) that changed, written
 * whole (empty when it is gone); plus, always, the META item, every live hold, and the complete
 * id lists of layouts and showtimes, so a writer can delete what no longer
 * exists. An incremental snapshot is only correct on top of the previous one
 * having been stored: if storing fails, take a full one next. Returns 0 or
 * ENGINE_ENOMEM (then nothing is marked clean).
 */
int engine_snapshot_take(engine *e, bool full, engine_snapshot **out);

bool engine_snapshot_full(const engine_snapshot *s);
size_t engine_snapshot_count(const engine_snapshot *s);
const engine_item *engine_snapshot_item(const engine_snapshot *s, size_t i);
/** Ids of every live layout (ENGINE_ITEM_LAYOUT) or showtime (ENGINE_ITEM_SHOWTIME). */
const uint64_t *engine_snapshot_ids(const engine_snapshot *s, engine_item_kind kind, size_t *n);
void engine_snapshot_free(engine_snapshot *s);

/* Reading items without an engine (exports: the replication snapshot). Each
 * decodes one stored value (docs/storage.md) and checks its structure, not
 * its fit with other items. Return 0 or ENGINE_EDECODE. */

typedef struct engine_showtime_item {
    uint64_t layout_id;
    int64_t start_ms;
    uint32_t price_count;
    uint32_t prices[ENGINE_CATEGORIES_MAX];
    uint32_t seat_count;
    uint32_t held, sold; /* seats held and sold (popcounts of the stored bitmaps) */
} engine_showtime_item;

int engine_item_showtime_decode(const uint8_t *value, uint32_t len, engine_showtime_item *out);
/** `key` is the item's key (the hold or booking id), copied into out->id. */
int engine_item_hold_decode(uint64_t key, const uint8_t *value, uint32_t len,
                            engine_hold_info *out);
int engine_item_booking_decode(uint64_t key, const uint8_t *value, uint32_t len,
                               engine_booking_info *out);

/**
 * Decodes a layout blob (a LAYOUT_CREATE record's, a layout item's) into
 * `spec`, whose seat and row-label arrays are allocated: free them with
 * engine_layout_spec_free. Returns 0, ENGINE_EDECODE or ENGINE_ENOMEM.
 */
int engine_layout_blob_decode(const uint8_t *blob, uint32_t len, engine_layout_spec *spec);
void engine_layout_spec_free(engine_layout_spec *spec);

/**
 * Restores one item into `e`, a fresh engine with the configuration the
 * snapshot was taken under (id prefix and pool sizes large enough). Order:
 * META first, then layouts, showtimes, bookings, holds, on-sale state. Returns 0,
 * ENGINE_EDECODE (bad value), ENGINE_EREPLAY (does not fit: unknown layout,
 * duplicate, pool full, wrong prefix), or ENGINE_ENOMEM.
 */
int engine_restore_item(engine *e, engine_item_kind kind, uint64_t key, const uint8_t *value,
                        uint32_t len);

/**
 * Ends a restore: checks that bookings are complete (ids 1..n), recomputes
 * counters and indexes, and runs engine_check(). Returns 0 or ENGINE_EREPLAY.
 */
int engine_restore_finish(engine *e);

/* ---- Replay, digest, invariants ----------------------------------------- */

/**
 * Applies a record (replay). Records carry decisions, not requests: a
 * HOLD_PLACE names its seats, id, expiry and amount; a BOOKING_CANCEL its
 * refund. Replay re-checks that the record fits the state structurally
 * (the id is the next one, the seats exist and are free, the amount equals
 * the prices, the hold is live and not past its expiry at the record's time,
 * a refund is at most the amount, time does not go backwards, pools have
 * room) but does not re-apply policy that configuration may have changed
 * since the record was written (TTL, maximum lifetime, seats per hold,
 * refund tiers): yesterday's journal must replay under today's settings.
 * Returns 0, ENGINE_EREPLAY (the record does not fit; nothing changed), or
 * ENGINE_ENOMEM.
 */
int engine_record_apply(engine *e, const engine_record *rec);

/**
 * XXH3-64 digest of the complete logical state: layouts, showtimes and their
 * seat bitmaps, live holds, bookings, id counters and the clock. Equal
 * digests mean equal states.
 */
uint64_t engine_digest(const engine *e);

/**
 * Checks every invariant in O(state): each seat in exactly one state, held
 * seats = union of live holds, sold seats = union of confirmed bookings,
 * counters = popcounts, indexes consistent. Returns 0 or aborts with a
 * message naming the broken invariant.
 */
int engine_check(const engine *e);

/** Bytes of per-showtime seat state beyond the layout (for capacity planning). */
size_t engine_showtime_state_bytes(const engine *e, uint64_t showtime_id);

#endif /* USHER_ENGINE_H */
