/*
 * catalog.h - theaters, screens (seat layouts), movies, showtimes and users:
 * validation, the WAL records that carry changes, and the LMDB store every
 * shard thread reads.
 *
 * The WAL is the source of truth (docs/architecture.md). A catalog change is
 * one WAL record (type CATALOG_REC_PUT or CATALOG_REC_DELETE): showtimes in
 * the WAL of the shard that owns them (XXH3_64bits of the id's 8 little-endian
 * bytes, modulo the shard count), everything else in shard 0's. Once a
 * record is durable the server applies it to the LMDB environment in
 * DATA_DIR/catalog together with that shard's applied LSN, in one write
 * transaction, so recovery re-applies exactly what LMDB missed. Applying is
 * idempotent (a put overwrites, a delete of a missing entity is a no-op).
 *
 * Entities are stored as their canonical JSON object (the API's
 * representation; users additionally carry "password_hash", which
 * catalog_user_public() strips). Ids are unsigned 64-bit integers, unique
 * across every kind, handed out by the server from one counter.
 *
 * Threads: a catalog handle is shared by every thread. Read transactions
 * (catalog_read_begin/end) may run on any thread, many at once, and never
 * block writers (LMDB MVCC). catalog_apply() runs a write transaction:
 * call it off the event loops (threadpool); LMDB serializes writers.
 */
#ifndef USHER_CATALOG_H
#define USHER_CATALOG_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine.h"

/* ---- Errors ----------------------------------------------------------------- */
enum {
    CATALOG_ELMDB = -40001,    /* LMDB failed (see catalog_last_error) */
    CATALOG_ESHARDS = -40002,  /* the data dir was created with another shard count */
    CATALOG_EDECODE = -40003,  /* a change record's payload is malformed */
    CATALOG_ENOTFOUND = -40004 /* no entity with that id (reads) */
};

/** Describes a catalog error (or -errno). Never NULL. */
const char *catalog_strerror(int err);

/* ---- Kinds and records ----------------------------------------------------------- */

typedef enum catalog_kind {
    CATALOG_THEATER = 1,
    CATALOG_SCREEN = 2,
    CATALOG_MOVIE = 3,
    CATALOG_SHOWTIME = 4,
    CATALOG_USER = 5,
    CATALOG_KIND_MAX_ = 5
} catalog_kind;

/** "theater", "screen", "movie", "showtime", "user"; NULL otherwise. */
const char *catalog_kind_name(catalog_kind k);

/** WAL record types (engine records use 1..99). */
enum {
    CATALOG_REC_PUT = 100,   /* payload: u8 kind | u64 id (LE) | canonical JSON bytes */
    CATALOG_REC_DELETE = 101 /* payload: u8 kind | u64 id (LE) */
};

enum {
    CATALOG_JSON_MAX = 2 * 1024 * 1024 /* canonical JSON of one entity (a stadium layout fits) */
};

/** One change, decoded. `json` borrows the payload it was decoded from. */
typedef struct catalog_change {
    bool put; /* false: delete */
    catalog_kind kind;
    uint64_t id;
    const char *json; /* put only: canonical JSON, json_len bytes, not NUL-terminated */
    size_t json_len;
} catalog_change;

/**
 * Encodes a change as a WAL payload into `buf`. Returns the payload length,
 * or -ENOSPC if `cap` is too small.
 */
int catalog_change_encode(const catalog_change *ch, uint8_t *buf, size_t cap);

/**
 * Decodes a WAL record of `type` (CATALOG_REC_*). A put's JSON must parse as
 * an object whose "id" is the record's. Returns 0, CATALOG_EDECODE, or
 * -ENOMEM (parsing ran out of memory: the record may be fine).
 */
int catalog_change_decode(uint16_t type, const uint8_t *payload, size_t len, catalog_change *ch);

/** The shard that owns showtime `id` among `shards` shards. */
uint32_t catalog_showtime_shard(uint64_t showtime_id, uint32_t shards);

/* ---- Validation (pure: no LMDB) -------------------------------------------------------
 * Turns a request body into the canonical object stored and served. Fields:
 *
 *   theater:  name (1..200 bytes), city (1..100), address (0..500)
 *   screen:   theater_id (integer > 0), name (1..100), layout (object, below)
 *   movie:    title (1..200), description (0..4000), duration_min (1..1000),
 *             genre (1..50), language (1..50), rating (0..20, e.g. "UA"),
 *             poster_url (0..2000, http:// or https:// when not empty)
 *   showtime: movie_id, screen_id (integers > 0), start_time (RFC 3339 UTC,
 *             "2026-11-21T18:30:00Z"), prices (object: category name ->
 *             integer minor units 0..100,000,000, exactly the screen's
 *             categories). The canonical object adds "start_ms" and
 *             "theater_id" (caller-supplied via `ctx`).
 *   user:     email (3..254, one '@', lowercased), name (1..200),
 *             role ("customer" | "admin"), password_hash (1..255),
 *             created_at (UTC like start_time; a fraction of a second,
 *             ".123", is allowed). password_hash and created_at are the
 *             server's: it puts them into the body it validates.
 *
 * Fields that may be empty (address, description, rating, poster_url) are
 * optional and default to ""; role defaults to "customer"; every other field
 * is required on create. "id" (and a showtime's "start_ms", "theater_id") are
 * refused in a body: the server sets them.
 *
 * A layout:
 *   {"categories": ["silver", "gold", "platinum"],      1..8 unique names, 1..23 bytes
 *    "best_row": "H",                                    optional, a row label
 *    "rows": [{"label": "A", "category": "silver", "seats": 20,
 *              "aisles_after": [4, 16],                  aisle after these seat numbers
 *              "accessible": [1, 2], "companion": [3],   seat numbers (1-based)
 *              "blocked": [10]}, ...]}                   1..2048 rows, total 1..100,000 seats
 * Row labels are 1..7 letters or digits, unique; a row has 1..1000 seats;
 * aisles_after holds 1..seats-1, increasing; accessible, companion and blocked
 * hold 1..seats and share no seat. Row 0 is nearest the screen. Seat n of row
 * "A" is labelled "A<n>" (labels must not clash: row "A" seat 11 and row "A1"
 * seat 1 are both "A11", and refused); its physical column is n plus the
 * aisles before it, so adjacency stops at an aisle. best_row defaults to the
 * row at two thirds of the way back (index rows * 2 / 3). The canonical
 * layout always has best_row and all four lists of every row, sorted.
 *
 * Unknown fields are refused, strings must be valid UTF-8 without control
 * characters. For an update (`existing` not NULL) the body may hold any
 * subset of the fields; the result is `existing` with them replaced.
 */

/** Where a body went wrong: field is a JSON pointer-ish path ("layout.rows[3].seats"). */
typedef struct catalog_problem {
    char field[128];
    char reason[256];
} catalog_problem;

/** Extra facts validation needs for showtimes. */
typedef struct catalog_ctx {
    uint64_t theater_id;                                         /* of the showtime's screen */
    uint32_t category_count;                                     /* the screen's categories ... */
    char category_names[ENGINE_CATEGORIES_MAX][ENGINE_NAME_MAX]; /* ... in layout order */
} catalog_ctx;

/**
 * Validates `body` (a JSON object) for `kind` and returns a new canonical
 * object in *out (caller decrefs) with "id" set to `id`. `existing` is the
 * stored object for an update, NULL for a create. `ctx` is required for
 * showtimes (NULL otherwise). Returns 0, or 1 with *problem filled (nothing
 * allocated), or -ENOMEM.
 */
int catalog_validate(catalog_kind kind, uint64_t id, const json_t *body, const json_t *existing,
                     const catalog_ctx *ctx, json_t **out, catalog_problem *problem);

/** A screen layout converted for the engine; owns its arrays (spec points into them). */
typedef struct catalog_layout {
    engine_layout_spec spec;
    engine_seat_spec *seats;
    char (*row_labels)[ENGINE_LABEL_MAX];
} catalog_layout;

/**
 * Builds the engine layout spec from a canonical screen object's "layout"
 * (as produced by catalog_validate). Returns 0, 1 with *problem, or -ENOMEM.
 * catalog_layout_free() releases it (a zeroed or freed one too). The
 * engine's own checks (engine_layout_validate) have passed when it returns 0.
 */
int catalog_layout_build(const json_t *layout, catalog_layout *out, catalog_problem *problem);
void catalog_layout_free(catalog_layout *l);

/**
 * Fills `ctx` from a canonical screen object: its theater_id and its layout's
 * category names. Returns 0 or -EINVAL (not a canonical screen).
 */
int catalog_layout_categories(const json_t *screen, catalog_ctx *ctx);

/**
 * Prices from a canonical showtime object, in the order of ctx's categories.
 * Returns 0, or -EINVAL when its prices are not exactly ctx's categories
 * (e.g. the screen's layout changed since).
 */
int catalog_showtime_prices(const json_t *showtime, const catalog_ctx *ctx,
                            uint32_t prices[ENGINE_CATEGORIES_MAX]);

/** A copy of a canonical user object without "password_hash" (caller decrefs). */
json_t *catalog_user_public(const json_t *user);

/* ---- The store -------------------------------------------------------------------------- */

typedef struct catalog catalog;

/**
 * Opens (creating if needed) the LMDB environment in directory `dir`
 * (created 0755 if missing). The first open records `shards`; a later open
 * with another count fails with CATALOG_ESHARDS (showtime ownership depends
 * on it). `map_bytes` 0 means 4 GiB. Returns 0, CATALOG_ESHARDS,
 * CATALOG_ELMDB or -errno.
 */
int catalog_open(const char *dir, uint32_t shards, uint64_t map_bytes, catalog **out);
void catalog_close(catalog *c);

/** Text of the last LMDB failure on this thread (or ""). */
const char *catalog_last_error(void);

/** LSN of `shard`'s WAL up to which changes are applied (0: none). */
uint64_t catalog_applied_lsn(catalog *c, uint32_t shard);

/**
 * Largest entity id ever applied, deleted ones included, so a counter seeded
 * from it never hands out an id twice (0 when nothing was applied).
 */
uint64_t catalog_max_id(catalog *c);

/**
 * Applies `n` changes of `shard`'s WAL and records `applied_lsn` for that
 * shard, all in one write transaction (all or nothing). Maintains the
 * indexes (user email -> id; showtime rows by owning shard). Call off the
 * event loop. The applied LSN never moves backwards (re-applying an older
 * batch keeps the larger one). Returns 0, CATALOG_ELMDB, -ENOMEM, or
 * CATALOG_EDECODE when a put's JSON is not an object with the change's id or
 * lacks what an index needs (a user's email; a showtime's movie_id,
 * screen_id, theater_id, start_ms, prices; a screen's theater_id): never for
 * objects from catalog_validate(). On any error nothing is applied.
 */
int catalog_apply(catalog *c, uint32_t shard, uint64_t applied_lsn, const catalog_change *changes,
                  size_t n);

/* ---- Reads ------------------------------------------------------------------------------ */

typedef struct catalog_read catalog_read;

/** Starts a read-only snapshot view (cheap; any thread). Returns 0 or CATALOG_ELMDB. */
int catalog_read_begin(catalog *c, catalog_read **out);
void catalog_read_end(catalog_read *r);
/** The catalog version a read sees (LMDB's transaction id): it changes with
 * every catalog write, so a copy made under one version is current while
 * reads keep seeing it. */
uint64_t catalog_read_version(const catalog_read *r);

/**
 * The canonical JSON bytes of an entity, borrowed until catalog_read_end().
 * Returns 0 or CATALOG_ENOTFOUND (or CATALOG_ELMDB).
 */
int catalog_get(catalog_read *r, catalog_kind kind, uint64_t id, const char **json, size_t *len);

/** As catalog_get, parsed (caller decrefs). NULL when missing or on error. */
json_t *catalog_get_json(catalog_read *r, catalog_kind kind, uint64_t id);

/** The user id registered with `email` (compared lowercased). 0 or CATALOG_ENOTFOUND. */
int catalog_user_find(catalog_read *r, const char *email, uint64_t *id);

/**
 * Calls `cb` for every entity of `kind` in id order; a non-zero return
 * stops the walk and is returned. `json` is borrowed for the call.
 */
typedef int (*catalog_each_cb)(void *arg, uint64_t id, const char *json, size_t len);
int catalog_each(catalog_read *r, catalog_kind kind, catalog_each_cb cb, void *arg);

/** What browse needs of a showtime without parsing JSON. */
typedef struct catalog_showtime_row {
    uint64_t id, movie_id, screen_id, theater_id;
    int64_t start_ms;
    uint32_t price_min, price_max; /* over the categories */
} catalog_showtime_row;

/** Calls `cb` for every showtime owned by `shard`, in id order. */
typedef int (*catalog_row_cb)(void *arg, const catalog_showtime_row *row);
int catalog_showtime_rows(catalog_read *r, uint32_t shard, catalog_row_cb cb, void *arg);

/**
 * How many entities refer to `id`: screens of a theater, showtimes of a
 * screen or of a movie (kind = the referenced entity's kind). Used to refuse
 * deletes that would orphan something.
 */
int catalog_refs_count(catalog_read *r, catalog_kind kind, uint64_t id, uint64_t *count);

/**
 * Parses a UTC time "YYYY-MM-DDTHH:MM:SSZ" (as showtimes' start_time) into
 * milliseconds since the epoch. Returns 0, or 1 with *why (a static sentence
 * an API can give as the reason).
 */
int catalog_time_parse(const char *s, size_t n, int64_t *ms, const char **why);

#endif /* USHER_CATALOG_H */
