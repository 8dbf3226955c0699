/*
 * engine_model_test.c - model-based test: the engine against a naive model.
 *
 * A seeded generator drives a long random sequence of operations against the
 * engine and tests/model.c side by side and compares, after every operation,
 * the result code, the record, the conflicts and the touched seats; every
 * `full_every` operations (and at the end) it compares the whole observable
 * state, except that the 100,000-seat showtime's seats and engine_check(),
 * both O(seats), run every `big_full_every`. Every record the engine produces
 * is encoded into a byte log, decoded back, compared, and applied to a
 * follower engine whose digest must track the original's; at the midpoint and
 * at the end the whole log is replayed onto a fresh engine as well.
 *
 * The generator reads only the model, so a run is a pure function of the
 * seed up to the first disagreement, which fails the test at once.
 *
 * Environment:
 *   USHER_MODEL_SEED   seed (decimal or 0x hex); default: time based, printed
 *   USHER_MODEL_OPS    operations of the main run (default MODEL_OPS_DEFAULT)
 *   USHER_MODEL_TRACE  if set, print every operation and its result
 */
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine.h"
#include "model.h"

#ifndef MODEL_OPS_DEFAULT
#define MODEL_OPS_DEFAULT 1000000
#endif

/* ---- PRNG: xoshiro256** seeded through splitmix64 ----------------------- */

typedef struct rng {
    uint64_t s[4];
} rng;

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += UINT64_C(0x9E3779B97F4A7C15));
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

static void rng_seed(rng *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&seed);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static uint64_t rng_next(rng *r)
{
    uint64_t *s = r->s;
    uint64_t out = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return out;
}

/* Uniform in [0, n); n > 0. The modulo bias is irrelevant here. */
static uint64_t rng_below(rng *r, uint64_t n)
{
    return rng_next(r) % n;
}

/* Uniform in [lo, hi]. */
static int64_t rng_range(rng *r, int64_t lo, int64_t hi)
{
    return lo + (int64_t)rng_below(r, (uint64_t)(hi - lo) + 1);
}

/* True with probability permille / 1000. */
static bool rng_pm(rng *r, unsigned permille)
{
    return rng_below(r, 1000) < permille;
}

/* ---- Harness ------------------------------------------------------------- */

enum op_kind {
    OP_PLACE,
    OP_BEST,
    OP_EXTEND,
    OP_RELEASE,
    OP_EXPIRE,
    OP_CONFIRM,
    OP_CANCEL,
    OP_ST_CREATE,
    OP_ST_DELETE,
    OP_LAYOUT_CREATE,
    OP_LAYOUT_DELETE,
    OP_QUERY,
    OP_TEARDOWN,
    OP_KINDS
};

static const char *const op_names[OP_KINDS] = {
    "hold_place",    "hold_best", "hold_extend",     "hold_release",    "holds_expire",
    "confirm",       "cancel",    "showtime_create", "showtime_delete", "layout_create",
    "layout_delete", "query",     "teardown",
};

/* Relative weights of the operation kinds (teardown is a sequence of ops). */
static const unsigned op_weights[OP_KINDS] = {
    [OP_PLACE] = 2600,   [OP_BEST] = 1300,        [OP_EXTEND] = 800,       [OP_RELEASE] = 700,
    [OP_EXPIRE] = 600,   [OP_CONFIRM] = 1700,     [OP_CANCEL] = 800,       [OP_ST_CREATE] = 40,
    [OP_ST_DELETE] = 50, [OP_LAYOUT_CREATE] = 25, [OP_LAYOUT_DELETE] = 25, [OP_QUERY] = 400,
    [OP_TEARDOWN] = 6,
};

enum {
    BIG_LAYOUT = 1,
    TINY_LAYOUT = 2,
    SMALL_LAYOUT = 3,
    MED_LAYOUT = 4,
    CHURN_LAYOUT_FIRST = 100, /* ids 100..107: created and deleted at random */
    CHURN_LAYOUT_IDS = 8,
    BIG_SHOWTIME = 1,
    FIRST_SHOWTIME = 1000,
    EXPIRE_CAP_MAX = 64,
    KEY_BUF = 96,
};

static const uint64_t users[] = {
    1,          2,          3,          4,  5,
    6,          7,          8,          9,  10,
    11,         12,         13,         14, UINT64_C(0x8000000000000000),
    UINT64_MAX, 4242424242, 0x5a5a0001, 77, UINT64_C(0x0001000000000001),
};
#define USER_COUNT (sizeof users / sizeof users[0])

typedef struct params {
    const char *name;
    engine_config cfg;
    size_t ops;
    bool big;              /* include the 100,000-seat layout and its showtime */
    size_t full_every;     /* full-state compare cadence, in ops */
    size_t big_full_every; /* ... for the 100,000-seat showtime and engine_check() */
    size_t bookings_every; /* ... for every booking ever made */
    uint32_t future_min;   /* keep at least this many small showtimes ahead */
    uint32_t future_max;   /* ... and create no more than this many */
    int64_t start_min_ms;  /* new showtimes start this far ahead ... */
    int64_t start_max_ms;  /* ... up to this far */
    uint32_t live_half;    /* live holds at which half the hold ops aim at one */
    bool check_coverage;   /* demand that the generator hit every outcome */
    uint64_t seed_tweak;   /* xored into the seed so the tests differ */
    size_t snap_every;     /* snapshot (and store) cadence, in ops */
    size_t restore_every;  /* restore-from-store cadence, in ops (a multiple of snap_every) */
    size_t swap_every;     /* every this many restores, the run goes on on the restored engine */
    size_t negative_every; /* ... and the restore refusals are probed */
} params;

/* The current operation's arguments, kept to describe a failure. */
typedef struct op_args {
    int kind;
    int64_t now;
    uint64_t showtime, user, hold, booking, layout;
    uint32_t count, category, options;
    uint32_t seats[ENGINE_HOLD_SEATS_MAX + 2];
    uint32_t nseats;
    int payment;
    uint32_t key_len;
    char key[KEY_BUF];
    size_t cap;
    int64_t start;
    uint32_t price_count;
    int defect; /* layout_create: which defect the spec has, -1 none */
} op_args;

typedef struct st_entry {
    uint64_t id, layout;
    int64_t start;
} st_entry;

/*
 * The snapshot store: what snapshot/snapshot.c keeps in LMDB, in memory. One
 * map per kind, sorted by key (LMDB's order: keys are big-endian ids), whose
 * values are copies; plus the META value.
 */
typedef struct store_ent {
    uint64_t key;
    uint8_t *val;
    uint32_t len;
} store_ent;

typedef struct store_map {
    store_ent *e;
    size_t n, cap;
} store_map;

enum { MAP_LAYOUTS, MAP_SHOWTIMES, MAP_HOLDS, MAP_BOOKINGS, MAPS };

typedef struct store {
    store_map map[MAPS];
    uint8_t *meta;
    uint32_t meta_len;
} store;

typedef struct harness {
    const params *p;
    uint64_t seed;
    rng r;
    engine *e; /* under test */
    engine *f; /* follower: applies every record the engine produces */
    model *m;
    size_t op;
    int step;
    op_args a;
    bool trace;

    uint8_t *log; /* [u32 length][encoded record] ... */
    size_t log_len, log_cap, log_count;

    st_entry *st; /* showtimes that exist, as the harness created them */
    size_t st_count, st_cap;
    uint64_t next_st_id;
    uint64_t deleted_st[16]; /* recently deleted showtime ids, for reuse */
    size_t deleted_count;
    uint64_t key_counter;

    uint8_t *seatbuf;
    size_t seatbuf_cap;
    uint64_t *ids_e, *ids_m;
    size_t ids_cap;

    uint64_t stats[OP_KINDS][ENGINE_RESULT_COUNT_];
    uint64_t idem_replays, expired_total, tier_hits[ENGINE_REFUND_TIERS_MAX + 1];
    uint32_t max_live;

    /* Snapshots: see "Snapshots" below. */
    rng sr;           /* their own stream, so that they leave the ops alone */
    store st_e;       /* written by the engine's snapshots */
    store st_f;       /* written by the follower's, which must write the same */
    store st_t;       /* what t->tail was restored from, for its own snapshot */
    engine *tail;     /* restored at the last restore; the log since goes on it */
    size_t tail_from; /* log offset and record count at that restore */
    size_t tail_count;
    engine *scratch;       /* an engine being restored or replayed */
    engine *parked;        /* the engine, while a restored one stands in for it */
    engine_snapshot *snap; /* a snapshot being checked */
    uint8_t *tweak_val;    /* a damaged value being restored */
    const char *phase;     /* what the run is doing beyond the op, for failures */
    size_t snaps, snaps_full, restores, tails, tail_records, swaps, negatives;
    size_t snap_items, snap_bytes, store_items_max;
    double snap_secs, restore_secs;
} harness;

static uint64_t env_u64(const char *name, uint64_t dflt)
{
    const char *s = getenv(name);
    if (!s || !*s)
        return dflt;
    char *end;
    uint64_t v = strtoull(s, &end, 0);
    cr_assert(*end == '\0', "%s=%s is not a number", name, s);
    return v;
}

/* The main run's op count; the other runs derive theirs from it. */
static size_t main_ops(void)
{
    return (size_t)env_u64("USHER_MODEL_OPS", MODEL_OPS_DEFAULT);
}

static void describe(const harness *t, char *buf, size_t n)
{
    const op_args *a = &t->a;
    int k = snprintf(buf, n,
                     "%s now=%" PRId64 " (clock %" PRId64 ") showtime=%" PRIu64 " user=%" PRIu64
                     " hold=0x%" PRIx64 " booking=0x%" PRIx64 " layout=%" PRIu64
                     " count=%u category=%u options=%u payment=%d key_len=%u cap=%zu start=%" PRId64
                     " price_count=%u defect=%d seats=[",
                     a->kind >= 0 && a->kind < OP_KINDS ? op_names[a->kind] : "?", a->now,
                     model_now_ms(t->m), a->showtime, a->user, a->hold, a->booking, a->layout,
                     a->count, a->category, a->options, a->payment, a->key_len, a->cap, a->start,
                     a->price_count, a->defect);
    for (uint32_t i = 0; i < a->nseats && k > 0 && (size_t)k < n; i++)
        k += snprintf(buf + k, n - (size_t)k, "%s%u", i ? "," : "", a->seats[i]);
    if (k > 0 && (size_t)k < n)
        snprintf(buf + k, n - (size_t)k, "]");
}

static void fail(harness *t, int line, const char *fmt, ...)
{
    char msg[1024], desc[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    describe(t, desc, sizeof desc);
    const char *phase = t->phase ? t->phase : "the op";
    fprintf(stderr,
            "engine_model[%s] FAILED at line %d\n  USHER_MODEL_SEED=%" PRIu64
            " USHER_MODEL_OPS=%zu --filter engine_model/%s, op %zu step %d, in %s\n  op: %s\n"
            "  %s\n",
            t->p->name, line, t->seed ^ t->p->seed_tweak, main_ops(), t->p->name, t->op, t->step,
            phase, desc, msg);
    cr_assert_fail("engine_model[%s] USHER_MODEL_SEED=%" PRIu64
                   " op=%zu step=%d in %s: %s | op: %s",
                   t->p->name, t->seed ^ t->p->seed_tweak, t->op, t->step, phase, msg, desc);
}

#define CHECK(t, cond, ...)                   \
    do {                                      \
        if (!(cond))                          \
            fail((t), __LINE__, __VA_ARGS__); \
    } while (0)

static const char *rname(engine_result r)
{
    return (unsigned)r < ENGINE_RESULT_COUNT_ ? engine_result_name(r) : "(out of range)";
}

static void expect_result(harness *t, engine_result got, engine_result want)
{
    CHECK(t, got == want, "result: engine %s (%d), model %s (%d)", rname(got), (int)got,
          rname(want), (int)want);
    t->stats[t->a.kind][want]++;
    if (t->trace)
        fprintf(stderr, "op %zu.%d %s now=%" PRId64 " -> %s\n", t->op, t->step, op_names[t->a.kind],
                t->a.now, rname(want));
}

static void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n);
    cr_assert(q != NULL, "out of memory");
    return q;
}

static void ensure_ids(harness *t, size_t n)
{
    if (n <= t->ids_cap)
        return;
    t->ids_cap = n + 64;
    t->ids_e = xrealloc(t->ids_e, t->ids_cap * sizeof *t->ids_e);
    t->ids_m = xrealloc(t->ids_m, t->ids_cap * sizeof *t->ids_m);
}

/* ---- Comparing records and infos ------------------------------------------- */

/* Field-by-field equality; `blobs` compares layout blob bytes too (the model
 * has none). Writes the first difference to why. */
static bool rec_eq(const engine_record *a, const engine_record *b, bool blobs, char *why, size_t n)
{
#define DIFF(...)                      \
    do {                               \
        snprintf(why, n, __VA_ARGS__); \
        return false;                  \
    } while (0)
    if (a->type != b->type)
        DIFF("type %d vs %d", (int)a->type, (int)b->type);
    if (a->time_ms != b->time_ms)
        DIFF("time_ms %" PRId64 " vs %" PRId64, a->time_ms, b->time_ms);
    switch (a->type) {
    case ENGINE_REC_LAYOUT_CREATE:
        if (a->u.layout_create.layout_id != b->u.layout_create.layout_id)
            DIFF("layout_id %" PRIu64 " vs %" PRIu64, a->u.layout_create.layout_id,
                 b->u.layout_create.layout_id);
        if (blobs && (a->u.layout_create.blob_len != b->u.layout_create.blob_len ||
                      memcmp(a->u.layout_create.blob, b->u.layout_create.blob,
                             a->u.layout_create.blob_len) != 0))
            DIFF("layout blob differs (%u vs %u bytes)", a->u.layout_create.blob_len,
                 b->u.layout_create.blob_len);
        break;
    case ENGINE_REC_LAYOUT_DELETE:
        if (a->u.layout_delete.layout_id != b->u.layout_delete.layout_id)
            DIFF("layout_id %" PRIu64 " vs %" PRIu64, a->u.layout_delete.layout_id,
                 b->u.layout_delete.layout_id);
        break;
    case ENGINE_REC_SHOWTIME_CREATE: {
/* The union's members are anonymous structs: RA and RB name both sides. */
#define RA (&a->u.showtime_create)
#define RB (&b->u.showtime_create)
        if (RA->showtime_id != RB->showtime_id || RA->layout_id != RB->layout_id ||
            RA->start_ms != RB->start_ms || RA->price_count != RB->price_count)
            DIFF("showtime_create id %" PRIu64 "/%" PRIu64 " layout %" PRIu64 "/%" PRIu64
                 " start %" PRId64 "/%" PRId64 " price_count %u/%u",
                 RA->showtime_id, RB->showtime_id, RA->layout_id, RB->layout_id, RA->start_ms,
                 RB->start_ms, RA->price_count, RB->price_count);
        for (uint32_t i = 0; i < RA->price_count && i < ENGINE_CATEGORIES_MAX; i++)
            if (RA->prices[i] != RB->prices[i])
                DIFF("price[%u] %u vs %u", i, RA->prices[i], RB->prices[i]);
#undef RA
#undef RB
        break;
    }
    case ENGINE_REC_SHOWTIME_DELETE:
        if (a->u.showtime_delete.showtime_id != b->u.showtime_delete.showtime_id)
            DIFF("showtime_id %" PRIu64 " vs %" PRIu64, a->u.showtime_delete.showtime_id,
                 b->u.showtime_delete.showtime_id);
        break;
    case ENGINE_REC_HOLD_PLACE: {
#define RA (&a->u.hold_place)
#define RB (&b->u.hold_place)
        if (RA->hold_id != RB->hold_id || RA->showtime_id != RB->showtime_id ||
            RA->user_id != RB->user_id || RA->expires_ms != RB->expires_ms ||
            RA->amount != RB->amount || RA->seat_count != RB->seat_count)
            DIFF("hold_place hold 0x%" PRIx64 "/0x%" PRIx64 " showtime %" PRIu64 "/%" PRIu64
                 " user %" PRIu64 "/%" PRIu64 " expires %" PRId64 "/%" PRId64 " amount %" PRIu64
                 "/%" PRIu64 " seat_count %u/%u",
                 RA->hold_id, RB->hold_id, RA->showtime_id, RB->showtime_id, RA->user_id,
                 RB->user_id, RA->expires_ms, RB->expires_ms, RA->amount, RB->amount,
                 RA->seat_count, RB->seat_count);
        for (uint32_t i = 0; i < RA->seat_count && i < ENGINE_HOLD_SEATS_MAX; i++)
            if (RA->seats[i] != RB->seats[i])
                DIFF("hold_place seats[%u] %u vs %u", i, RA->seats[i], RB->seats[i]);
#undef RA
#undef RB
        break;
    }
    case ENGINE_REC_HOLD_EXTEND:
        if (a->u.hold_extend.hold_id != b->u.hold_extend.hold_id ||
            a->u.hold_extend.expires_ms != b->u.hold_extend.expires_ms)
            DIFF("hold_extend hold 0x%" PRIx64 "/0x%" PRIx64 " expires %" PRId64 "/%" PRId64,
                 a->u.hold_extend.hold_id, b->u.hold_extend.hold_id, a->u.hold_extend.expires_ms,
                 b->u.hold_extend.expires_ms);
        break;
    case ENGINE_REC_HOLD_RELEASE:
    case ENGINE_REC_HOLD_EXPIRE:
        if (a->u.hold_end.hold_id != b->u.hold_end.hold_id)
            DIFF("hold_end hold 0x%" PRIx64 " vs 0x%" PRIx64, a->u.hold_end.hold_id,
                 b->u.hold_end.hold_id);
        break;
    case ENGINE_REC_BOOKING_CONFIRM: {
#define RA (&a->u.booking_confirm)
#define RB (&b->u.booking_confirm)
        if (RA->booking_id != RB->booking_id || RA->hold_id != RB->hold_id ||
            RA->payment != RB->payment || RA->idem_key_len != RB->idem_key_len)
            DIFF("booking_confirm booking 0x%" PRIx64 "/0x%" PRIx64 " hold 0x%" PRIx64 "/0x%" PRIx64
                 " payment %d/%d key_len %u/%u",
                 RA->booking_id, RB->booking_id, RA->hold_id, RB->hold_id, (int)RA->payment,
                 (int)RB->payment, RA->idem_key_len, RB->idem_key_len);
        if (RA->idem_key_len <= ENGINE_IDEM_KEY_MAX &&
            memcmp(RA->idem_key, RB->idem_key, RA->idem_key_len) != 0)
            DIFF("booking_confirm idem_key differs");
#undef RA
#undef RB
        break;
    }
    case ENGINE_REC_BOOKING_CANCEL:
        if (a->u.booking_cancel.booking_id != b->u.booking_cancel.booking_id ||
            a->u.booking_cancel.refund != b->u.booking_cancel.refund)
            DIFF("booking_cancel booking 0x%" PRIx64 "/0x%" PRIx64 " refund %" PRIu64 "/%" PRIu64,
                 a->u.booking_cancel.booking_id, b->u.booking_cancel.booking_id,
                 a->u.booking_cancel.refund, b->u.booking_cancel.refund);
        break;
    default:
        DIFF("unknown record type %d", (int)a->type);
    }
    return true;
#undef DIFF
}

static void expect_hold_info(harness *t, const engine_hold_info *x, const engine_hold_info *y,
                             const char *what)
{
    bool same = x->id == y->id && x->showtime_id == y->showtime_id && x->user_id == y->user_id &&
                x->created_ms == y->created_ms && x->expires_ms == y->expires_ms &&
                x->amount == y->amount && x->seat_count == y->seat_count &&
                x->seat_count <= ENGINE_HOLD_SEATS_MAX &&
                memcmp(x->seats, y->seats, x->seat_count * sizeof x->seats[0]) == 0;
    CHECK(t, same,
          "%s: hold info differs: engine id=0x%" PRIx64 " st=%" PRIu64 " user=%" PRIu64
          " created=%" PRId64 " expires=%" PRId64 " amount=%" PRIu64 " n=%u; model id=0x%" PRIx64
          " st=%" PRIu64 " user=%" PRIu64 " created=%" PRId64 " expires=%" PRId64 " amount=%" PRIu64
          " n=%u",
          what, x->id, x->showtime_id, x->user_id, x->created_ms, x->expires_ms, x->amount,
          x->seat_count, y->id, y->showtime_id, y->user_id, y->created_ms, y->expires_ms, y->amount,
          y->seat_count);
}

/* engine_hold_get must agree with the model for this id (live or not). */
static void expect_hold(harness *t, uint64_t id)
{
    engine_hold_info he, hm;
    memset(&he, 0, sizeof he);
    memset(&hm, 0, sizeof hm);
    bool ge = engine_hold_get(t->e, id, &he);
    bool gm = model_hold_get(t->m, id, &hm);
    CHECK(t, ge == gm, "engine_hold_get(0x%" PRIx64 "): engine %d, model %d", id, ge, gm);
    if (gm)
        expect_hold_info(t, &he, &hm, "engine_hold_get");
}

static void expect_booking(harness *t, uint64_t id)
{
    engine_booking_info x, y;
    memset(&x, 0, sizeof x);
    memset(&y, 0, sizeof y);
    bool ge = engine_booking_get(t->e, id, &x);
    bool gm = model_booking_get(t->m, id, &y);
    CHECK(t, ge == gm, "engine_booking_get(0x%" PRIx64 "): engine %d, model %d", id, ge, gm);
    if (!gm)
        return;
    bool same = x.id == y.id && x.showtime_id == y.showtime_id && x.user_id == y.user_id &&
                x.hold_id == y.hold_id && x.confirmed_ms == y.confirmed_ms &&
                x.cancelled_ms == y.cancelled_ms && x.amount == y.amount && x.refund == y.refund &&
                x.payment == y.payment && x.status == y.status && x.seat_count == y.seat_count &&
                x.seat_count <= ENGINE_HOLD_SEATS_MAX &&
                memcmp(x.seats, y.seats, x.seat_count * sizeof x.seats[0]) == 0 &&
                x.idem_key_len == y.idem_key_len && x.idem_key_len <= ENGINE_IDEM_KEY_MAX &&
                memcmp(x.idem_key, y.idem_key, x.idem_key_len) == 0;
    CHECK(t, same,
          "booking 0x%" PRIx64 " differs: engine st=%" PRIu64 " user=%" PRIu64 " hold=0x%" PRIx64
          " confirmed=%" PRId64 " cancelled=%" PRId64 " amount=%" PRIu64 " refund=%" PRIu64
          " pay=%d status=%d n=%u key_len=%u; model st=%" PRIu64 " user=%" PRIu64 " hold=0x%" PRIx64
          " confirmed=%" PRId64 " cancelled=%" PRId64 " amount=%" PRIu64 " refund=%" PRIu64
          " pay=%d status=%d n=%u key_len=%u",
          id, x.showtime_id, x.user_id, x.hold_id, x.confirmed_ms, x.cancelled_ms, x.amount,
          x.refund, (int)x.payment, (int)x.status, x.seat_count, x.idem_key_len, y.showtime_id,
          y.user_id, y.hold_id, y.confirmed_ms, y.cancelled_ms, y.amount, y.refund, (int)y.payment,
          (int)y.status, y.seat_count, y.idem_key_len);
}

static void expect_seat(harness *t, uint64_t showtime, uint32_t seat)
{
    int se = engine_seat_state_get(t->e, showtime, seat);
    int sm = model_seat_state_get(t->m, showtime, seat);
    CHECK(t, se == sm, "seat state of showtime %" PRIu64 " seat %u: engine %d, model %d", showtime,
          seat, se, sm);
}

static void expect_seats(harness *t, uint64_t showtime, const uint32_t *seats, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++)
        expect_seat(t, showtime, seats[i]);
}

static void expect_availability(harness *t, uint64_t showtime)
{
    engine_category_counts ce[ENGINE_CATEGORIES_MAX], cm[ENGINE_CATEGORIES_MAX];
    memset(ce, 0, sizeof ce);
    memset(cm, 0, sizeof cm);
    int32_t ne = engine_availability_get(t->e, showtime, ce);
    int32_t nm = model_availability_get(t->m, showtime, cm);
    CHECK(t, ne == nm, "availability(%" PRIu64 ") returned %d, model %d", showtime, ne, nm);
    for (int32_t c = 0; c < nm; c++)
        CHECK(t,
              ce[c].free == cm[c].free && ce[c].held == cm[c].held && ce[c].sold == cm[c].sold &&
                  ce[c].blocked == cm[c].blocked,
              "availability(%" PRIu64 ") category %d: engine free=%u held=%u sold=%u blocked=%u,"
              " model free=%u held=%u sold=%u blocked=%u",
              showtime, c, ce[c].free, ce[c].held, ce[c].sold, ce[c].blocked, cm[c].free,
              cm[c].held, cm[c].sold, cm[c].blocked);
}

/* Clock, live-hold count and next expiry: cheap, checked after every op. */
static void expect_clock(harness *t)
{
    CHECK(t, engine_now_ms(t->e) == model_now_ms(t->m), "engine_now_ms %" PRId64 ", model %" PRId64,
          engine_now_ms(t->e), model_now_ms(t->m));
    CHECK(t, engine_holds_live(t->e) == model_holds_live(t->m), "holds_live %u, model %u",
          engine_holds_live(t->e), model_holds_live(t->m));
    CHECK(t, engine_holds_next_expiry_ms(t->e) == model_holds_next_expiry_ms(t->m),
          "next_expiry %" PRId64 ", model %" PRId64, engine_holds_next_expiry_ms(t->e),
          model_holds_next_expiry_ms(t->m));
    if (model_holds_live(t->m) > t->max_live)
        t->max_live = model_holds_live(t->m);
}

/* ---- The record log and the follower --------------------------------------- */

static void log_reserve(harness *t, size_t need)
{
    if (t->log_len + need <= t->log_cap)
        return;
    size_t cap = t->log_cap ? t->log_cap : (1u << 20);
    while (cap < t->log_len + need)
        cap *= 2;
    t->log = xrealloc(t->log, cap);
    t->log_cap = cap;
}

/*
 * Appends the engine's record to the log (copying: a LAYOUT_CREATE borrows
 * engine memory), decodes it back, compares, and applies it to the follower.
 * Every so often it also probes the codec's and apply's refusals.
 */
static void log_record(harness *t, const engine_record *rec)
{
    char why[512];
    size_t room = ENGINE_RECORD_SMALL_MAX;
    if (rec->type == ENGINE_REC_LAYOUT_CREATE)
        room += rec->u.layout_create.blob_len;
    log_reserve(t, 4 + room + 1);
    uint8_t *p = t->log + t->log_len + 4;
    int n = engine_record_encode(rec, p, room);
    CHECK(t, n > 0, "engine_record_encode(%s) failed: %d", engine_record_type_name(rec->type), n);
    CHECK(t, rec->type == ENGINE_REC_LAYOUT_CREATE || n <= ENGINE_RECORD_SMALL_MAX,
          "encoded %s is %d bytes, over ENGINE_RECORD_SMALL_MAX",
          engine_record_type_name(rec->type), n);
    uint32_t len = (uint32_t)n;
    memcpy(t->log + t->log_len, &len, 4);

    bool probe = t->log_count % 101 == 0;
    if (probe) {
        /* A buffer one byte short, a truncated and an overlong input. */
        uint8_t tmp[ENGINE_RECORD_SMALL_MAX];
        if (rec->type != ENGINE_REC_LAYOUT_CREATE) {
            int r = engine_record_encode(rec, tmp, len - 1);
            CHECK(t, r == ENGINE_EBUFSIZE, "encode into %u bytes returned %d, want EBUFSIZE",
                  len - 1, r);
        }
        engine_record junk;
        int r = engine_record_decode(p, len - 1, &junk);
        CHECK(t, r == ENGINE_EDECODE, "decode of truncated %s returned %d",
              engine_record_type_name(rec->type), r);
        p[len] = 0;
        r = engine_record_decode(p, len + 1, &junk);
        CHECK(t, r == ENGINE_EDECODE, "decode of %s with a trailing byte returned %d",
              engine_record_type_name(rec->type), r);
    }

    engine_record d;
    memset(&d, 0, sizeof d);
    int rc = engine_record_decode(p, len, &d);
    CHECK(t, rc == 0, "engine_record_decode(%s) failed: %d", engine_record_type_name(rec->type),
          rc);
    CHECK(t, rec_eq(&d, rec, true, why, sizeof why), "decoded record differs: %s", why);
    rc = engine_record_apply(t->f, &d);
    CHECK(t, rc == 0, "follower engine_record_apply(%s) failed: %d",
          engine_record_type_name(rec->type), rc);

    /* Applying the same record again must not fit the state. HOLD_EXTEND is
     * left out: whether extending to the same expiry fits is not specified. */
    if (probe && rec->type != ENGINE_REC_HOLD_EXTEND) {
        rc = engine_record_apply(t->f, &d);
        CHECK(t, rc == ENGINE_EREPLAY, "re-applying %s returned %d, want EREPLAY",
              engine_record_type_name(rec->type), rc);
    }
    t->log_len += 4 + len;
    t->log_count++;
}

/* Succeeded: compare the engine's record to the model's and log it. */
static void expect_record(harness *t, const engine_record *re, const engine_record *rm)
{
    char why[512];
    CHECK(t, rec_eq(re, rm, false, why, sizeof why), "record differs (engine vs model): %s", why);
    if (re->type == ENGINE_REC_LAYOUT_CREATE)
        CHECK(t, re->u.layout_create.blob != NULL && re->u.layout_create.blob_len > 0,
              "LAYOUT_CREATE record without a blob");
    log_record(t, re);
}

/* Applies the logged records from offset `off` on to `r`; returns how many. */
static size_t log_apply(harness *t, engine *r, size_t off, const char *when)
{
    size_t k = 0;
    while (off < t->log_len) {
        uint32_t len;
        memcpy(&len, t->log + off, 4);
        engine_record d;
        int rc = engine_record_decode(t->log + off + 4, len, &d);
        CHECK(t, rc == 0, "%s: decode of record %zu failed: %d", when, k, rc);
        rc = engine_record_apply(r, &d);
        CHECK(t, rc == 0, "%s: apply of record %zu (%s) failed: %d", when, k,
              engine_record_type_name(d.type), rc);
        off += 4 + len;
        k++;
    }
    return k;
}

/* Replays the whole log onto a fresh engine; its digest must match. */
static void replay_check(harness *t, const char *when)
{
    CHECK(t, t->scratch == NULL, "%s replay: the last scratch engine was not dropped", when);
    int rc = engine_create(&t->p->cfg, &t->scratch);
    CHECK(t, rc == 0, "%s replay: engine_create failed: %d", when, rc);
    engine *r = t->scratch;
    char what[64];
    snprintf(what, sizeof what, "%s replay", when);
    size_t k = log_apply(t, r, 0, what);
    CHECK(t, k == t->log_count, "%s replay: %zu records, logged %zu", when, k, t->log_count);
    CHECK(t, engine_digest(r) == engine_digest(t->e),
          "%s replay of %zu records: digest 0x%016" PRIx64 ", engine 0x%016" PRIx64, when, k,
          engine_digest(r), engine_digest(t->e));
    CHECK(t, engine_now_ms(r) == engine_now_ms(t->e), "%s replay: clock %" PRId64 " vs %" PRId64,
          when, engine_now_ms(r), engine_now_ms(t->e));
    engine_check(r);
    engine_destroy(r);
    t->scratch = NULL;
}

/* ---- Layouts ----------------------------------------------------------------- */

typedef struct spec_buf {
    engine_layout_spec spec;
    engine_seat_spec *seats;
    char (*rows)[ENGINE_LABEL_MAX];
} spec_buf;

static void spec_alloc(spec_buf *b, uint32_t seats, uint32_t rows)
{
    memset(b, 0, sizeof *b);
    b->seats = calloc(seats ? seats : 1, sizeof *b->seats);
    b->rows = calloc(rows + 1, sizeof *b->rows); /* +1: room for a "missing row" defect */
    cr_assert(b->seats && b->rows, "out of memory");
    b->spec.seats = b->seats;
    b->spec.row_labels = (const char(*)[ENGINE_LABEL_MAX])b->rows;
}

static void spec_free(spec_buf *b)
{
    free(b->seats);
    free(b->rows);
}

static void seat_set(engine_seat_spec *s, uint16_t row, uint16_t col, uint8_t cat, uint8_t flags)
{
    memset(s, 0, sizeof *s);
    snprintf(s->label, sizeof s->label, "%u-%u", (unsigned)row, (unsigned)col);
    s->row = row;
    s->col = col;
    s->category = cat;
    s->flags = flags;
}

static void names_set(spec_buf *b, uint32_t cats, uint32_t rows)
{
    static const char *const cat_names[] = {"standard", "premium", "recliner", "front",
                                            "balcony",  "box",     "lounge",   "vip"};
    b->spec.category_count = cats;
    for (uint32_t c = 0; c < cats && c < ENGINE_CATEGORIES_MAX; c++)
        snprintf(b->spec.category_names[c], ENGINE_NAME_MAX, "%s", cat_names[c]);
    b->spec.row_count = rows;
    for (uint32_t r = 0; r < rows; r++)
        snprintf(b->rows[r], ENGINE_LABEL_MAX, "R%u", r);
}

/*
 * 200 rows x 500 seats = ENGINE_SEATS_MAX: four sections (100, 150, 150, 100)
 * with two-column aisles, odd rows staggered by a column so the centre
 * column is not every row's centre. Three categories, accessible and
 * companion seats in rows 100-101, scattered blocked seats and a blocked
 * camera platform in row 120.
 */
static void build_big(spec_buf *b)
{
    spec_alloc(b, ENGINE_SEATS_MAX, 200);
    static const uint16_t section_len[4] = {100, 150, 150, 100};
    uint32_t n = 0;
    for (uint16_t row = 0; row < 200; row++) {
        uint16_t col = row % 2;
        for (int sec = 0; sec < 4; sec++) {
            for (uint16_t k = 0; k < section_len[sec]; k++, col++) {
                uint8_t cat = row < 40 ? 0 : row >= 160 ? 2 : (sec == 0 || sec == 3) ? 0 : 1;
                uint8_t flags = 0;
                if ((row == 100 || row == 101) && k < 2)
                    flags |= ENGINE_SEAT_FLAG_ACCESSIBLE;
                if ((row == 100 || row == 101) && k == 2)
                    flags |= ENGINE_SEAT_FLAG_COMPANION;
                if ((row * 31u + col * 17u) % 211u == 0 || (row == 120 && col >= 240 && col <= 260))
                    flags |= ENGINE_SEAT_FLAG_BLOCKED;
                seat_set(&b->seats[n++], row, col, cat, flags);
            }
            col += 2;
        }
    }
    b->spec.seat_count = n;
    names_set(b, 3, 200);
    b->spec.best_row = 130;
}

/* One row of 11 seats, an aisle after the sixth; accessible, companion, blocked. */
static void build_tiny(spec_buf *b)
{
    spec_alloc(b, 11, 1);
    uint32_t n = 0;
    for (uint16_t col = 1; col <= 12; col++) {
        if (col == 7)
            continue;
        uint8_t flags = n == 2   ? ENGINE_SEAT_FLAG_ACCESSIBLE
                        : n == 3 ? ENGINE_SEAT_FLAG_COMPANION
                        : n == 9 ? ENGINE_SEAT_FLAG_BLOCKED
                                 : 0;
        seat_set(&b->seats[n++], 0, col, 0, flags);
    }
    b->spec.seat_count = n;
    names_set(b, 1, 1);
    b->spec.best_row = 0;
}

/* 5 rows of 10 with a centre aisle; the back row is premium; best row 2. */
static void build_small(spec_buf *b)
{
    spec_alloc(b, 50, 5);
    uint32_t n = 0;
    for (uint16_t row = 0; row < 5; row++) {
        for (uint16_t col = 0; col <= 10; col++) {
            if (col == 5)
                continue;
            uint8_t flags = 0;
            if (row == 0 && col == 0)
                flags = ENGINE_SEAT_FLAG_ACCESSIBLE;
            if (row == 0 && col == 1)
                flags = ENGINE_SEAT_FLAG_COMPANION;
            if (row == 2 && col == 7)
                flags = ENGINE_SEAT_FLAG_BLOCKED;
            seat_set(&b->seats[n++], row, col, row == 4 ? 1 : 0, flags);
        }
    }
    b->spec.seat_count = n;
    names_set(b, 2, 5);
    b->spec.best_row = 2;
}

/* 12 rows widening towards the back, aisle at column 11 from row 3. */
static void build_medium(spec_buf *b)
{
    spec_alloc(b, 12 * 40, 12);
    uint32_t n = 0;
    for (uint16_t row = 0; row < 12; row++) {
        for (uint16_t col = 6 - row / 2; col <= 17 + row / 2; col++) {
            if (row >= 3 && col == 11)
                continue;
            uint8_t cat = row < 3 ? 0 : row < 9 ? 1 : 2;
            uint8_t flags = 0;
            if (row == 11 && (col == 6 - row / 2 || col == 17 + row / 2))
                flags = ENGINE_SEAT_FLAG_ACCESSIBLE;
            if (row == 11 && (col == 7 - row / 2 || col == 16 + row / 2))
                flags = ENGINE_SEAT_FLAG_COMPANION;
            if ((row == 5 && col == 14) || (row == 8 && (col == 9 || col == 10)))
                flags = ENGINE_SEAT_FLAG_BLOCKED;
            seat_set(&b->seats[n++], row, col, cat, flags);
        }
    }
    b->spec.seat_count = n;
    names_set(b, 3, 12);
    b->spec.best_row = 8;
}

/* A random valid little layout. */
static void build_random(harness *t, spec_buf *b)
{
    uint32_t rows = (uint32_t)rng_range(&t->r, 1, 6);
    uint32_t cats = (uint32_t)rng_range(&t->r, 1, 4);
    spec_alloc(b, rows * 16, rows);
    uint32_t n = 0;
    for (uint16_t row = 0; row < rows; row++) {
        uint32_t len = (uint32_t)rng_range(&t->r, 1, 16);
        uint16_t col = (uint16_t)rng_range(&t->r, 0, 3);
        uint8_t row_cat = (uint8_t)rng_below(&t->r, cats);
        for (uint32_t k = 0; k < len; k++) {
            uint8_t flags = (uint8_t)(rng_pm(&t->r, 80) ? ENGINE_SEAT_FLAG_ACCESSIBLE : 0);
            flags |= rng_pm(&t->r, 50) ? ENGINE_SEAT_FLAG_COMPANION : 0;
            flags |= rng_pm(&t->r, 60) ? ENGINE_SEAT_FLAG_BLOCKED : 0;
            uint8_t cat = rng_pm(&t->r, 200) ? (uint8_t)rng_below(&t->r, cats) : row_cat;
            seat_set(&b->seats[n++], row, col, cat, flags);
            col += rng_pm(&t->r, 100) ? (uint16_t)rng_range(&t->r, 2, 4) : 1;
        }
    }
    b->spec.seat_count = n;
    names_set(b, cats, rows);
    b->spec.best_row = (uint32_t)rng_below(&t->r, rows);
}

enum { DEFECTS = 15 };

/* Breaks a valid spec in one way that makes it invalid whatever else holds. */
static void add_defect(harness *t, spec_buf *b, int d)
{
    engine_layout_spec *s = &b->spec;
    uint32_t n = s->seat_count;
    uint32_t i = (uint32_t)rng_below(&t->r, n);
    switch (d) {
    case 0: /* duplicate seat label */
        if (n >= 2) {
            memcpy(b->seats[i == 0 ? 1 : 0].label, b->seats[i].label, ENGINE_LABEL_MAX);
            break;
        }
        /* fall through */
    case 1: /* seat beyond the last row */
        b->seats[n - 1].row = (uint16_t)s->row_count;
        break;
    case 2: /* out of order / duplicate position */
        if (n >= 2) {
            uint32_t k = i == 0 ? 1 : i;
            b->seats[k].row = b->seats[k - 1].row;
            b->seats[k].col = b->seats[k - 1].col;
            break;
        }
        s->best_row = s->row_count;
        break;
    case 3: /* unknown category */
        b->seats[i].category = (uint8_t)s->category_count;
        break;
    case 4: /* unknown flag bits */
        b->seats[i].flags |= rng_pm(&t->r, 500) ? 0x08 : 0x80;
        break;
    case 5: /* a row without seats */
        snprintf(b->rows[s->row_count], ENGINE_LABEL_MAX, "EXTRA");
        s->row_count++;
        break;
    case 6:
        s->best_row = s->row_count + (uint32_t)rng_below(&t->r, 3);
        break;
    case 7:
        s->category_count = rng_pm(&t->r, 500) ? 0 : ENGINE_CATEGORIES_MAX + 1;
        break;
    case 8: /* duplicate category name */
        if (s->category_count < ENGINE_CATEGORIES_MAX) {
            memcpy(s->category_names[s->category_count], s->category_names[0], ENGINE_NAME_MAX);
            s->category_count++;
        } else {
            s->category_names[1][0] = '\0';
        }
        break;
    case 9: /* empty category name */
        s->category_names[rng_below(&t->r, s->category_count)][0] = '\0';
        break;
    case 10: /* duplicate row label */
        if (s->row_count >= 2) {
            memcpy(b->rows[1], b->rows[0], ENGINE_LABEL_MAX);
            break;
        }
        s->category_count = 0;
        break;
    case 11:
        s->seat_count = 0;
        break;
    case 12: /* empty seat label */
        memset(b->seats[i].label, 0, ENGINE_LABEL_MAX);
        break;
    case 13: /* a label with no room for its NUL */
        memset(b->seats[i].label, 'x', ENGINE_LABEL_MAX);
        break;
    default: /* no rows at all */
        s->row_count = 0;
        break;
    }
}

static void expect_layout(harness *t, uint64_t id)
{
    uint32_t n = model_layout_seat_count(t->m, id);
    CHECK(t, engine_layout_seat_count(t->e, id) == n, "layout %" PRIu64 " seat_count %u, model %u",
          id, engine_layout_seat_count(t->e, id), n);
    for (uint32_t i = 0; i < n; i++) {
        const engine_seat_spec *x = engine_layout_seat(t->e, id, i);
        const engine_seat_spec *y = model_layout_seat(t->m, id, i);
        CHECK(t,
              x && strcmp(x->label, y->label) == 0 && x->row == y->row && x->col == y->col &&
                  x->category == y->category && x->flags == y->flags,
              "layout %" PRIu64 " seat %u differs", id, i);
        /* Labels are unique (the model validated the spec), so seat i. */
        int32_t found = engine_layout_seat_find(t->e, id, y->label);
        CHECK(t, found == (int32_t)i, "layout %" PRIu64 " seat_find(%s) = %d, want %u", id,
              y->label, found, i);
    }
    CHECK(t, engine_layout_seat(t->e, id, n) == NULL, "layout %" PRIu64 " seat %u exists", id, n);
    uint32_t rows = model_layout_row_count(t->m, id);
    for (uint32_t r = 0; r < rows; r++) {
        const char *x = engine_layout_row_label(t->e, id, r);
        CHECK(t, x && strcmp(x, model_layout_row_label(t->m, id, r)) == 0,
              "layout %" PRIu64 " row label %u differs", id, r);
    }
    CHECK(t, engine_layout_row_label(t->e, id, rows) == NULL,
          "layout %" PRIu64 " row label %u exists", id, rows);
    uint32_t cats = model_layout_category_count(t->m, id);
    CHECK(t, engine_layout_category_count(t->e, id) == cats,
          "layout %" PRIu64 " category_count %u, model %u", id,
          engine_layout_category_count(t->e, id), cats);
    for (uint32_t c = 0; c < cats; c++) {
        const char *x = engine_layout_category_name(t->e, id, c);
        CHECK(t, x && strcmp(x, model_layout_category_name(t->m, id, c)) == 0,
              "layout %" PRIu64 " category name %u differs", id, c);
    }
    CHECK(t, engine_layout_category_name(t->e, id, cats) == NULL,
          "layout %" PRIu64 " category %u exists", id, cats);
}

static void layout_create(harness *t, uint64_t id, const engine_layout_spec *spec)
{
    engine_record re, rm;
    engine_problem prob;
    memset(&re, 0, sizeof re);
    memset(&prob, 0, sizeof prob);
    engine_result want = model_layout_create(t->m, t->a.now, id, spec, &rm);
    bool with_problem = rng_pm(&t->r, 800); /* NULL is allowed */
    int got = engine_layout_create(t->e, t->a.now, id, spec, with_problem ? &prob : NULL, &re);
    CHECK(t, got >= 0, "engine_layout_create failed: %d", got);
    expect_result(t, (engine_result)got, want);
    if (want == ENGINE_BAD_LAYOUT && with_problem)
        CHECK(t, prob.field != NULL && prob.reason != NULL, "BAD_LAYOUT without a problem");
    if (want == ENGINE_OK) {
        expect_record(t, &re, &rm);
        expect_layout(t, id);
    }
}

/* ---- Showtimes and time ---------------------------------------------------------- */

/* Edges further ahead are ignored: jumping there would fast-forward the run. */
#define EDGE_AHEAD_MAX_MS (15 * 60000)

/* `edge` plus -1, 0 or +1 ms if that lies between the clock and
 * EDGE_AHEAD_MAX_MS ahead, else `now`. */
static int64_t near(harness *t, int64_t edge, int64_t now)
{
    int64_t c = model_now_ms(t->m);
    edge += rng_range(&t->r, -1, 1);
    return edge >= c && edge - c <= EDGE_AHEAD_MAX_MS ? edge : now;
}

/*
 * A time on one of the contract's edges, or the clock if there is none
 * ahead: a live hold's expiry, a showtime's start, or the start minus a
 * refund tier's threshold, each exact or one millisecond either side.
 */
static int64_t boundary_now(harness *t)
{
    int64_t c = model_now_ms(t->m);
    int64_t edge = c;
    uint32_t live = model_holds_live(t->m);
    uint64_t x = rng_below(&t->r, 3);
    if (x == 0 && live > 0) {
        engine_hold_info h;
        model_hold_get(t->m, model_live_hold_at(t->m, rng_below(&t->r, live)), &h);
        edge = h.expires_ms;
    } else if (t->st_count > 0) {
        edge = t->st[rng_below(&t->r, t->st_count)].start;
        const engine_config *cfg = &t->p->cfg;
        if (x == 2 && cfg->refund_tier_count > 0)
            edge -= cfg->refund_tiers[rng_below(&t->r, cfg->refund_tier_count)].min_before_start_ms;
    }
    return near(t, edge, c);
}

static int64_t pick_now(harness *t)
{
    int64_t c = model_now_ms(t->m);
    uint64_t x = rng_below(&t->r, 1000);
    if (x < 25)
        return boundary_now(t);
    if (x < 40)
        return c - rng_range(&t->r, 1, 5000); /* backwards (negative at the start) */
    if (x < 120)
        return c;
    if (x < 920)
        return c + rng_range(&t->r, 1, 300);
    if (x < 999)
        return c + rng_range(&t->r, 301, 5000);
    return c + rng_range(&t->r, 5001, 900000); /* expires about every hold */
}

static uint64_t user_pick(harness *t)
{
    return users[rng_below(&t->r, USER_COUNT)];
}

/* The owner most of the time, someone else now and then. */
static uint64_t user_or_owner(harness *t, uint64_t owner)
{
    return rng_pm(&t->r, 900) ? owner : user_pick(t);
}

static const st_entry *st_find(const harness *t, uint64_t id)
{
    for (size_t i = 0; i < t->st_count; i++)
        if (t->st[i].id == id)
            return &t->st[i];
    return NULL;
}

static uint64_t unknown_showtime(harness *t)
{
    if (t->deleted_count > 0 && rng_pm(&t->r, 500))
        return t->deleted_st[rng_below(&t->r, t->deleted_count)];
    return rng_pm(&t->r, 100) ? UINT64_MAX : 900000 + rng_below(&t->r, 1000);
}

/* A small showtime that has not started, or 0. */
static uint64_t future_showtime(harness *t)
{
    uint64_t pick = 0;
    uint64_t seen = 0;
    for (size_t i = 0; i < t->st_count; i++) {
        if (t->st[i].id == BIG_SHOWTIME || t->st[i].start <= model_now_ms(t->m))
            continue;
        if (rng_below(&t->r, ++seen) == 0) /* reservoir sampling: uniform */
            pick = t->st[i].id;
    }
    return pick;
}

static uint32_t future_count(const harness *t)
{
    uint32_t n = 0;
    for (size_t i = 0; i < t->st_count; i++)
        if (t->st[i].id != BIG_SHOWTIME && t->st[i].start > model_now_ms(t->m))
            n++;
    return n;
}

/* A showtime for a hold: mostly a future small one, sometimes the big one, a
 * started one, or one that does not exist. */
static uint64_t pick_showtime(harness *t, unsigned big_permille)
{
    uint64_t x = rng_below(&t->r, 1000);
    if (x < 15)
        return unknown_showtime(t);
    if (t->p->big && x < 15 + big_permille && st_find(t, BIG_SHOWTIME))
        return BIG_SHOWTIME;
    if (x < 120 + big_permille && t->st_count > 0)
        return t->st[rng_below(&t->r, t->st_count)].id;
    uint64_t id = future_showtime(t);
    if (id == 0 && t->st_count > 0)
        id = t->st[rng_below(&t->r, t->st_count)].id;
    return id ? id : unknown_showtime(t);
}

static void showtime_create(harness *t, uint64_t id, uint64_t layout, int64_t start,
                            const uint32_t *prices, uint32_t price_count)
{
    engine_record re, rm;
    memset(&re, 0, sizeof re);
    t->a.kind = OP_ST_CREATE;
    t->a.showtime = id;
    t->a.layout = layout;
    t->a.start = start;
    t->a.price_count = price_count;
    engine_result want =
        model_showtime_create(t->m, t->a.now, id, layout, start, prices, price_count, &rm);
    int got = engine_showtime_create(t->e, t->a.now, id, layout, start, prices, price_count, &re);
    CHECK(t, got >= 0, "engine_showtime_create failed: %d", got);
    expect_result(t, (engine_result)got, want);
    if (want == ENGINE_OK) {
        expect_record(t, &re, &rm);
        if (t->st_count == t->st_cap) {
            t->st_cap = t->st_cap ? 2 * t->st_cap : 64;
            t->st = xrealloc(t->st, t->st_cap * sizeof *t->st);
        }
        t->st[t->st_count++] = (st_entry){id, layout, start};
        expect_availability(t, id);
    }
}

static void op_showtime_create(harness *t)
{
    t->a.now = pick_now(t);
    uint64_t id;
    uint64_t x = rng_below(&t->r, 1000);
    if (x < 80 && t->st_count > 0)
        id = t->st[rng_below(&t->r, t->st_count)].id; /* EXISTS */
    else if (x < 130 && t->deleted_count > 0)
        id = t->deleted_st[rng_below(&t->r, t->deleted_count)]; /* ids can come back */
    else
        id = t->next_st_id++;

    uint64_t layout;
    x = rng_below(&t->r, 1000);
    if (x < 40)
        layout = 999 + rng_below(&t->r, 3); /* unknown */
    else if (x < 200)
        layout = CHURN_LAYOUT_FIRST + rng_below(&t->r, CHURN_LAYOUT_IDS);
    else
        layout = TINY_LAYOUT + rng_below(&t->r, 3);

    uint32_t cats = model_layout_category_count(t->m, layout);
    uint32_t price_count = cats ? cats : 3;
    if (rng_pm(&t->r, 40))
        price_count = (uint32_t)rng_range(&t->r, 0, ENGINE_CATEGORIES_MAX);
    uint32_t prices[ENGINE_CATEGORIES_MAX];
    for (int i = 0; i < ENGINE_CATEGORIES_MAX; i++)
        prices[i] = (uint32_t)rng_range(&t->r, 0, 50000);
    if (rng_pm(&t->r, 50))
        prices[0] = UINT32_MAX; /* amounts are 64-bit: a full hold must not wrap */

    int64_t start = t->a.now + rng_range(&t->r, t->p->start_min_ms, t->p->start_max_ms);
    if (rng_pm(&t->r, 30))
        start = t->a.now - rng_range(&t->r, 0, 3600000); /* already started */
    showtime_create(t, id, layout, start, prices, price_count);
}

static void showtime_delete(harness *t, uint64_t id)
{
    engine_record re, rm;
    memset(&re, 0, sizeof re);
    t->a.kind = OP_ST_DELETE;
    t->a.showtime = id;
    engine_result want = model_showtime_delete(t->m, t->a.now, id, &rm);
    engine_result got = engine_showtime_delete(t->e, t->a.now, id, &re);
    expect_result(t, got, want);
    if (want != ENGINE_OK)
        return;
    expect_record(t, &re, &rm);
    for (size_t i = 0; i < t->st_count; i++) {
        if (t->st[i].id == id) {
            t->st[i] = t->st[--t->st_count];
            break;
        }
    }
    t->deleted_st[t->deleted_count < 16 ? t->deleted_count++ : rng_below(&t->r, 16)] = id;
    CHECK(t, !engine_showtime_get(t->e, id, NULL, NULL, NULL), "deleted showtime still there");
}

static void op_showtime_delete(harness *t)
{
    t->a.now = pick_now(t);
    uint64_t id;
    uint64_t x = rng_below(&t->r, 1000);
    if (x < 100 || t->st_count == 0)
        id = unknown_showtime(t);
    else
        id = t->st[rng_below(&t->r, t->st_count)].id;
    showtime_delete(t, id);
}

/* ---- Holds ------------------------------------------------------------------------- */

static uint32_t showtime_seats(const harness *t, uint64_t showtime)
{
    const st_entry *s = st_find(t, showtime);
    return s ? model_layout_seat_count(t->m, s->layout) : 20;
}

static void op_place(harness *t)
{
    op_args *a = &t->a;
    a->now = pick_now(t);
    a->showtime = pick_showtime(t, 80);
    const st_entry *se = st_find(t, a->showtime);
    if (se && rng_pm(&t->r, 20))
        a->now = near(t, se->start, a->now);
    a->user = user_pick(t);
    uint32_t max = t->p->cfg.max_seats_per_hold;
    uint32_t nseats = showtime_seats(t, a->showtime);
    uint64_t x = rng_below(&t->r, 1000);
    if (x < 15)
        a->nseats = 0;
    else if (x < 35)
        a->nseats = (uint32_t)rng_range(&t->r, max + 1, ENGINE_HOLD_SEATS_MAX + 2);
    else if (x < 60)
        a->nseats = max;
    else
        a->nseats = (uint32_t)rng_range(&t->r, 1, max < 5 ? max : 5);
    if (a->nseats > nseats && x >= 35)
        a->nseats = nseats;

    if (rng_pm(&t->r, 450)) {
        /* A block of neighbours, the way people pick. */
        uint32_t first = (uint32_t)rng_below(&t->r, nseats);
        for (uint32_t i = 0; i < a->nseats; i++)
            a->seats[i] = (first + i) % nseats;
    } else {
        for (uint32_t i = 0; i < a->nseats; i++) {
            /* Distinct seats unless the layout is too small to bother. */
            for (int tries = 0; tries < 8; tries++) {
                a->seats[i] = (uint32_t)rng_below(&t->r, nseats);
                bool dup = false;
                for (uint32_t j = 0; j < i; j++)
                    dup |= a->seats[j] == a->seats[i];
                if (!dup)
                    break;
            }
        }
    }
    if (a->nseats > 0 && rng_pm(&t->r, 20))
        a->seats[rng_below(&t->r, a->nseats)] =
            rng_pm(&t->r, 200) ? UINT32_MAX : nseats + (uint32_t)rng_below(&t->r, 4);
    if (a->nseats > 1 && rng_pm(&t->r, 20))
        a->seats[rng_below(&t->r, a->nseats)] = a->seats[rng_below(&t->r, a->nseats)];

    uint32_t ce[ENGINE_HOLD_SEATS_MAX + 2], cm[ENGINE_HOLD_SEATS_MAX + 2];
    uint32_t nce = 0, ncm = 0;
    engine_record re, rm;
    memset(&re, 0, sizeof re);
    engine_result want =
        model_hold_place(t->m, a->now, a->showtime, a->user, a->seats, a->nseats, cm, &ncm, &rm);
    bool with_conflicts = rng_pm(&t->r, 900); /* NULL is allowed */
    engine_result got = engine_hold_place(t->e, a->now, a->showtime, a->user, a->seats, a->nseats,
                                          with_conflicts ? ce : NULL, &nce, &re);
    expect_result(t, got, want);
    if (with_conflicts && (want == ENGINE_SEAT_TAKEN || want == ENGINE_SEAT_BLOCKED)) {
        CHECK(t, nce == ncm, "conflict_count %u, model %u", nce, ncm);
        for (uint32_t i = 0; i < ncm; i++)
            CHECK(t, ce[i] == cm[i], "conflicts[%u] = %u, model %u", i, ce[i], cm[i]);
    }
    if (want == ENGINE_OK) {
        expect_record(t, &re, &rm);
        expect_hold(t, rm.u.hold_place.hold_id);
    }
    for (uint32_t i = 0; i < a->nseats; i++)
        if (a->seats[i] < nseats)
            expect_seat(t, a->showtime, a->seats[i]);
    if (a->showtime != BIG_SHOWTIME)
        expect_availability(t, a->showtime);
}

static void op_best(harness *t)
{
    op_args *a = &t->a;
    a->now = pick_now(t);
    /* The model scans every seat: the 100,000-seat showtime is picked rarely. */
    a->showtime = pick_showtime(t, 15);
    a->user = user_pick(t);
    uint32_t max = t->p->cfg.max_seats_per_hold;
    uint64_t x = rng_below(&t->r, 1000);
    if (x < 15)
        a->count = 0;
    else if (x < 30)
        a->count = max + (uint32_t)rng_below(&t->r, 3);
    else if (x < 100)
        a->count = (uint32_t)rng_range(&t->r, 1, max);
    else
        a->count = (uint32_t)rng_range(&t->r, 1, max < 4 ? max : 4);
    const st_entry *s = st_find(t, a->showtime);
    uint32_t cats = s ? model_layout_category_count(t->m, s->layout) : 3;
    a->category = (uint32_t)rng_below(&t->r, cats ? cats : 1);
    if (rng_pm(&t->r, 30))
        a->category = cats + (uint32_t)rng_below(&t->r, 300);
    a->options = rng_pm(&t->r, 300) ? ENGINE_BEST_ALLOW_ACCESSIBLE : 0;

    engine_record re, rm;
    memset(&re, 0, sizeof re);
    engine_result want =
        model_hold_best(t->m, a->now, a->showtime, a->user, a->count, a->category, a->options, &rm);
    engine_result got = engine_hold_best(t->e, a->now, a->showtime, a->user, a->count, a->category,
                                         a->options, &re);
    expect_result(t, got, want);
    if (want == ENGINE_OK) {
        expect_record(t, &re, &rm);
        expect_hold(t, rm.u.hold_place.hold_id);
        expect_seats(t, a->showtime, rm.u.hold_place.seats, rm.u.hold_place.seat_count);
    }
    if (a->showtime != BIG_SHOWTIME)
        expect_availability(t, a->showtime);
}

/* A hold id: mostly live, else ended, else never issued. Sets a->hold. */
static void pick_hold(harness *t)
{
    op_args *a = &t->a;
    uint32_t live = model_holds_live(t->m);
    uint64_t issued = model_holds_issued(t->m);
    uint64_t x = rng_below(&t->r, 1000);
    /* Aim at live holds less often while there are few, so that holds pile
     * up until expiry and the holds pool, not the ending ops, limits them. */
    uint64_t live_pm = 650 * (uint64_t)live / (live + t->p->live_half);
    if (x < live_pm) {
        a->hold = model_live_hold_at(t->m, rng_below(&t->r, live));
    } else if (x < 900 && issued > 0) {
        uint64_t back = issued < 300 ? issued : 300;
        a->hold = model_hold_id(t->m, issued - rng_below(&t->r, back));
    } else if (x < 940 && issued > 0) {
        a->hold = model_hold_id(t->m, 1 + rng_below(&t->r, issued));
    } else {
        switch (rng_below(&t->r, 4)) {
        case 0:
            a->hold = model_hold_id(t->m, 0);
            break;
        case 1:
            a->hold = model_hold_id(t->m, issued + 1 + rng_below(&t->r, 3));
            break;
        case 2: /* an issued seq under another prefix */
            a->hold = model_hold_id(t->m, issued ? issued : 1) ^ (UINT64_C(1) << 60);
            break;
        default:
            a->hold = rng_next(&t->r);
            break;
        }
    }
    engine_hold_info h;
    if (model_hold_get(t->m, a->hold, &h))
        a->user = user_or_owner(t, h.user_id);
    else if ((a->hold & ((UINT64_C(1) << 48) - 1)) - 1 < issued &&
             (a->hold >> 48) == t->p->cfg.id_prefix)
        a->user = user_or_owner(t, model_hold_user(t->m, a->hold & ((UINT64_C(1) << 48) - 1)));
    else
        a->user = user_pick(t);
}

static void op_extend(harness *t)
{
    op_args *a = &t->a;
    a->now = pick_now(t);
    pick_hold(t);
    engine_hold_info h;
    if (rng_pm(&t->r, 60) && model_hold_get(t->m, a->hold, &h)) {
        /* At the expiry, or where an extension starts hitting the lifetime cap. */
        int64_t cap_at =
            h.created_ms + (int64_t)t->p->cfg.hold_max_lifetime_ms - (int64_t)t->p->cfg.hold_ttl_ms;
        a->now = near(t, rng_pm(&t->r, 500) ? h.expires_ms : cap_at, a->now);
    }
    engine_record re, rm;
    memset(&re, 0, sizeof re);
    engine_result want = model_hold_extend(t->m, a->now, a->hold, a->user, &rm);
    engine_result got = engine_hold_extend(t->e, a->now, a->hold, a->user, &re);
    expect_result(t, got, want);
    if (want == ENGINE_OK)
        expect_record(t, &re, &rm);
    expect_hold(t, a->hold);
}

static void hold_release(harness *t, uint64_t hold, uint64_t user)
{
    op_args *a = &t->a;
    a->hold = hold;
    a->user = user;
    engine_hold_info before;
    bool was_live = model_hold_get(t->m, hold, &before);
    engine_record re, rm;
    memset(&re, 0, sizeof re);
    engine_result want = model_hold_release(t->m, a->now, hold, user, &rm);
    engine_result got = engine_hold_release(t->e, a->now, hold, user, &re);
    expect_result(t, got, want);
    if (want == ENGINE_OK)
        expect_record(t, &re, &rm);
    expect_hold(t, hold);
    if (was_live) {
        expect_seats(t, before.showtime_id, before.seats, before.seat_count);
        if (before.showtime_id != BIG_SHOWTIME)
            expect_availability(t, before.showtime_id);
    }
}

static void op_release(harness *t)
{
    t->a.now = pick_now(t);
    pick_hold(t);
    hold_release(t, t->a.hold, t->a.user);
}

static void op_expire(harness *t)
{
    op_args *a = &t->a;
    a->now = pick_now(t);
    uint64_t x = rng_below(&t->r, 1000);
    a->cap = x < 30 ? 0 : x < 650 ? (size_t)rng_range(&t->r, 1, 3) : x < 900 ? 16 : EXPIRE_CAP_MAX;
    engine_record re[EXPIRE_CAP_MAX], rm[EXPIRE_CAP_MAX];
    engine_hold_info he[EXPIRE_CAP_MAX], hm[EXPIRE_CAP_MAX];
    memset(re, 0, sizeof re);
    memset(he, 0, sizeof he);
    size_t want = model_holds_expire(t->m, a->now, rm, hm, a->cap);
    /* Half the sweeps pass no hold buffer: NULL is allowed. */
    bool infos = rng_pm(&t->r, 500);
    size_t got = engine_holds_expire(t->e, a->now, re, infos ? he : NULL, a->cap);
    CHECK(t, got == want, "holds_expire(cap %zu) expired %zu, model %zu", a->cap, got, want);
    /* Statistics only: "not_available" counts the sweeps that found nothing. */
    t->stats[OP_EXPIRE][want > 0 ? ENGINE_OK : ENGINE_NOT_AVAILABLE]++;
    t->expired_total += want;
    if (t->trace)
        fprintf(stderr, "op %zu expire now=%" PRId64 " cap=%zu -> %zu\n", t->op, a->now, a->cap,
                want);
    for (size_t i = 0; i < want; i++) {
        expect_record(t, &re[i], &rm[i]);
        if (infos)
            expect_hold_info(t, &he[i], &hm[i], "holds_expire info");
        expect_hold(t, hm[i].id);
        expect_seats(t, hm[i].showtime_id, hm[i].seats, hm[i].seat_count);
    }
}

/* ---- Bookings ------------------------------------------------------------------------ */

static void fresh_key(harness *t, op_args *a)
{
    uint32_t len = (uint32_t)rng_range(&t->r, 1, ENGINE_IDEM_KEY_MAX);
    char tmp[32];
    int k = snprintf(tmp, sizeof tmp, "%" PRIx64 "-", ++t->key_counter);
    for (uint32_t i = 0; i < len; i++)
        a->key[i] = i < (uint32_t)k ? tmp[i] : (char)('a' + rng_below(&t->r, 26));
    a->key_len = len;
}

static void confirm(harness *t)
{
    op_args *a = &t->a;
    uint64_t be = UINT64_C(0xdeadbeef), bm = 0;
    bool rpm = false;
    engine_record re, rm;
    memset(&re, 0, sizeof re);
    const char *key = a->key_len || rng_pm(&t->r, 500) ? a->key : NULL;
    engine_result want =
        model_booking_confirm(t->m, a->now, a->hold, a->user, (engine_payment)a->payment, key,
                              a->key_len, &bm, &rpm, &rm);
    bool rpe = !rpm; /* must be overwritten on success */
    engine_result got =
        engine_booking_confirm(t->e, a->now, a->hold, a->user, (engine_payment)a->payment, key,
                               a->key_len, &be, &rpe, &re);
    expect_result(t, got, want);
    if (want != ENGINE_OK) {
        expect_hold(t, a->hold);
        return;
    }
    CHECK(t, be == bm, "confirm booking_id 0x%" PRIx64 ", model 0x%" PRIx64, be, bm);
    CHECK(t, rpe == rpm, "confirm replayed %d, model %d", rpe, rpm);
    if (rpm) {
        t->idem_replays++;
    } else {
        expect_record(t, &re, &rm);
        engine_booking_info b;
        model_booking_get(t->m, bm, &b);
        expect_seats(t, b.showtime_id, b.seats, b.seat_count);
        if (b.showtime_id != BIG_SHOWTIME)
            expect_availability(t, b.showtime_id);
    }
    expect_hold(t, a->hold);
    expect_booking(t, bm);
}

static void op_confirm(harness *t)
{
    op_args *a = &t->a;
    a->now = pick_now(t);
    pick_hold(t);
    a->payment = (int)rng_range(&t->r, ENGINE_PAY_UPI, ENGINE_PAY_WALLET);
    if (rng_pm(&t->r, 25))
        a->payment = rng_pm(&t->r, 500) ? 0 : (int)rng_range(&t->r, 4, 300);
    a->key_len = 0;
    uint64_t x = rng_below(&t->r, 1000);
    uint64_t nb = model_bookings_issued(t->m);
    if (x < 350) {
        /* no key */
    } else if (x < 800 || nb == 0) {
        fresh_key(t, a);
    } else if (x < 960) {
        /* A key some booking used: replay it (same user and hold), or try it
         * on another hold, or with another user. */
        const engine_booking_info *b =
            model_booking_at(t->m, nb - rng_below(&t->r, nb < 50 ? nb : 50));
        if (b->idem_key_len == 0) {
            fresh_key(t, a);
        } else {
            memcpy(a->key, b->idem_key, b->idem_key_len);
            a->key_len = b->idem_key_len;
            uint64_t y = rng_below(&t->r, 1000);
            if (y < 500) {
                a->hold = b->hold_id;
                a->user = b->user_id;
            } else if (y < 800) {
                a->user = b->user_id;
            }
            if (rng_pm(&t->r, 150) && a->key_len > 1)
                a->key_len--; /* a prefix is a different key */
        }
    } else if (x < 985) {
        a->key_len = (uint32_t)rng_range(&t->r, ENGINE_IDEM_KEY_MAX + 1, KEY_BUF);
        memset(a->key, 'k', a->key_len);
    } else {
        fresh_key(t, a);
        memset(a->key + a->key_len, 'z', ENGINE_IDEM_KEY_MAX - a->key_len);
        a->key_len = ENGINE_IDEM_KEY_MAX;
    }
    engine_hold_info h;
    if (rng_pm(&t->r, 60) && model_hold_get(t->m, a->hold, &h))
        a->now = near(t, h.expires_ms, a->now);
    confirm(t);
}

static void booking_cancel(harness *t, uint64_t booking, uint64_t user)
{
    op_args *a = &t->a;
    a->booking = booking;
    a->user = user;
    uint64_t fe = UINT64_C(0xdeadbeef), fm = 0;
    engine_record re, rm;
    memset(&re, 0, sizeof re);
    engine_booking_info b;
    bool known = model_booking_get(t->m, booking, &b);
    int64_t start = 0;
    if (known)
        model_showtime_get(t->m, b.showtime_id, NULL, &start, NULL);
    engine_result want = model_booking_cancel(t->m, a->now, booking, user, &fm, &rm);
    engine_result got = engine_booking_cancel(t->e, a->now, booking, user, &fe, &re);
    expect_result(t, got, want);
    if (want == ENGINE_OK) {
        CHECK(t, fe == fm, "refund %" PRIu64 ", model %" PRIu64, fe, fm);
        expect_record(t, &re, &rm);
        expect_seats(t, b.showtime_id, b.seats, b.seat_count);
        if (b.showtime_id != BIG_SHOWTIME)
            expect_availability(t, b.showtime_id);
        /* Which tier paid: coverage bookkeeping only. */
        const engine_config *cfg = &t->p->cfg;
        uint32_t tier = cfg->refund_tier_count;
        for (uint32_t i = 0; i < cfg->refund_tier_count && tier == cfg->refund_tier_count; i++)
            if (start - a->now >= cfg->refund_tiers[i].min_before_start_ms)
                tier = i;
        t->tier_hits[tier]++;
    }
    expect_booking(t, booking);
}

static void op_cancel(harness *t)
{
    op_args *a = &t->a;
    a->now = pick_now(t);
    uint64_t nb = model_bookings_issued(t->m);
    uint64_t x = rng_below(&t->r, 1000);
    uint64_t id;
    if (x < 780 && nb > 0)
        id = model_booking_id(t->m, nb - rng_below(&t->r, nb < 150 ? nb : 150));
    else if (x < 920 && nb > 0)
        id = model_booking_id(t->m, 1 + rng_below(&t->r, nb));
    else if (x < 940)
        id = model_booking_id(t->m, 0);
    else if (x < 970)
        id = model_booking_id(t->m, nb + 1 + rng_below(&t->r, 3));
    else
        id = rng_next(&t->r);
    engine_booking_info b;
    bool known = model_booking_get(t->m, id, &b);
    uint64_t user = known ? user_or_owner(t, b.user_id) : user_pick(t);
    int64_t start;
    const engine_config *cfg = &t->p->cfg;
    if (known && rng_pm(&t->r, 80) && model_showtime_get(t->m, b.showtime_id, NULL, &start, NULL)) {
        /* On a refund tier's edge, or at the start. */
        uint32_t tier = (uint32_t)rng_below(&t->r, cfg->refund_tier_count + 1);
        int64_t edge = tier == cfg->refund_tier_count
                           ? start
                           : start - cfg->refund_tiers[tier].min_before_start_ms;
        a->now = near(t, edge, a->now);
    }
    booking_cancel(t, id, user);
}

/* ---- Layout churn -------------------------------------------------------------------- */

static void build_fixed(uint64_t id, spec_buf *b)
{
    if (id == TINY_LAYOUT)
        build_tiny(b);
    else if (id == SMALL_LAYOUT)
        build_small(b);
    else
        build_medium(b);
}

static void op_layout_create(harness *t)
{
    op_args *a = &t->a;
    a->now = pick_now(t);
    if (rng_pm(&t->r, 250)) {
        /* The fixed little layouts can be deleted while unused: bring them
         * back (or get EXISTS). */
        a->layout = TINY_LAYOUT + rng_below(&t->r, 3);
        spec_buf b;
        build_fixed(a->layout, &b);
        layout_create(t, a->layout, &b.spec);
        spec_free(&b);
        return;
    }
    a->layout = CHURN_LAYOUT_FIRST + rng_below(&t->r, CHURN_LAYOUT_IDS);
    a->defect = -1;
    spec_buf b;
    build_random(t, &b);
    /* Only one refusal at a time besides TIME_BACKWARDS: the contract gives
     * no order between EXISTS, BAD_LAYOUT and CAPACITY. */
    bool exists = model_layout_seat_count(t->m, a->layout) > 0;
    bool full = model_layout_count(t->m) >= t->p->cfg.layouts_max;
    if (!exists && !full && rng_pm(&t->r, 350)) {
        a->defect = (int)rng_below(&t->r, DEFECTS);
        add_defect(t, &b, a->defect);
    }
    layout_create(t, a->layout, &b.spec);
    spec_free(&b);
}

static void op_layout_delete(harness *t)
{
    op_args *a = &t->a;
    a->now = pick_now(t);
    uint64_t x = rng_below(&t->r, 1000);
    a->layout = x < 100   ? 990 + rng_below(&t->r, 5)
                : x < 250 ? BIG_LAYOUT + rng_below(&t->r, 4)
                          : CHURN_LAYOUT_FIRST + rng_below(&t->r, CHURN_LAYOUT_IDS);
    engine_record re, rm;
    memset(&re, 0, sizeof re);
    engine_result want = model_layout_delete(t->m, a->now, a->layout, &rm);
    engine_result got = engine_layout_delete(t->e, a->now, a->layout, &re);
    expect_result(t, got, want);
    if (want == ENGINE_OK) {
        expect_record(t, &re, &rm);
        CHECK(t, engine_layout_seat_count(t->e, a->layout) == 0, "deleted layout has seats");
    }
}

/* Cancels every confirmed booking and releases every hold of a future
 * showtime, then deletes it: the only way a showtime with sales goes away. */
static void op_teardown(harness *t)
{
    op_args *a = &t->a;
    uint64_t id = future_showtime(t);
    if (id == 0)
        return;
    t->stats[OP_TEARDOWN][ENGINE_OK]++;
    /* At the current time: the showtime is still ahead, so cancels go through. */
    a->now = model_now_ms(t->m);
    uint64_t nb = model_bookings_issued(t->m);
    for (uint64_t seq = 1; seq <= nb; seq++) {
        const engine_booking_info *b = model_booking_at(t->m, seq);
        if (b->showtime_id == id && b->status == ENGINE_BOOKING_STATUS_CONFIRMED) {
            t->step++;
            a->kind = OP_CANCEL;
            booking_cancel(t, b->id, b->user_id);
        }
    }
    uint32_t live = model_holds_live(t->m);
    uint64_t *holds = calloc(live + 1, sizeof *holds);
    cr_assert(holds != NULL, "out of memory");
    uint32_t n = 0;
    for (uint32_t i = 0; i < live; i++) {
        engine_hold_info h;
        model_hold_get(t->m, model_live_hold_at(t->m, i), &h);
        if (h.showtime_id == id)
            holds[n++] = h.id;
    }
    for (uint32_t i = 0; i < n; i++) {
        engine_hold_info h;
        model_hold_get(t->m, holds[i], &h);
        t->step++;
        a->kind = OP_RELEASE;
        hold_release(t, h.id, h.user_id);
    }
    free(holds);
    t->step++;
    showtime_delete(t, id);
    CHECK(t, !st_find(t, id), "teardown left showtime %" PRIu64, id);
}

/* ---- Queries ----------------------------------------------------------------------------- */

static void expect_list(harness *t, bool bookings, uint64_t user, uint32_t offset, uint32_t cap)
{
    ensure_ids(t, (size_t)cap + 4);
    for (uint32_t i = 0; i < cap + 4; i++)
        t->ids_e[i] = t->ids_m[i] = UINT64_C(0xfeedface);
    uint32_t te = bookings ? engine_user_bookings(t->e, user, offset, t->ids_e, cap)
                           : engine_user_holds(t->e, user, offset, t->ids_e, cap);
    uint32_t tm = bookings ? model_user_bookings(t->m, user, offset, t->ids_m, cap)
                           : model_user_holds(t->m, user, offset, t->ids_m, cap);
    const char *what = bookings ? "user_bookings" : "user_holds";
    CHECK(t, te == tm, "%s(%" PRIu64 ") total %u, model %u", what, user, te, tm);
    uint32_t n = offset < tm ? tm - offset : 0;
    if (n > cap)
        n = cap;
    for (uint32_t i = 0; i < n; i++)
        CHECK(t, t->ids_e[i] == t->ids_m[i],
              "%s(%" PRIu64 ", offset %u)[%u] = 0x%" PRIx64 ", model 0x%" PRIx64, what, user,
              offset, i, t->ids_e[i], t->ids_m[i]);
    for (uint32_t i = n; i < cap + 4; i++)
        CHECK(t, t->ids_e[i] == UINT64_C(0xfeedface), "%s(%" PRIu64 ") wrote past its count", what,
              user);
}

static void op_query(harness *t)
{
    op_args *a = &t->a;
    a->kind = OP_QUERY;
    t->stats[OP_QUERY][ENGINE_OK]++;
    switch (rng_below(&t->r, 9)) {
    case 0: {
        a->showtime = pick_showtime(t, 50);
        uint32_t n = showtime_seats(t, a->showtime);
        a->count =
            rng_pm(&t->r, 100) ? n + (uint32_t)rng_below(&t->r, 3) : (uint32_t)rng_below(&t->r, n);
        expect_seat(t, a->showtime, a->count);
        break;
    }
    case 1: {
        size_t nl = model_layout_count(t->m);
        if (nl == 0)
            break;
        a->layout = model_layout_id_at(t->m, rng_below(&t->r, nl));
        uint32_t n = model_layout_seat_count(t->m, a->layout);
        uint32_t i = (uint32_t)rng_below(&t->r, n);
        const char *label = model_layout_seat(t->m, a->layout, i)->label;
        CHECK(t, engine_layout_seat_find(t->e, a->layout, label) == (int32_t)i,
              "seat_find(%s) in layout %" PRIu64, label, a->layout);
        if (n < 1000) /* the model's scan is linear */
            CHECK(t, model_layout_seat_find(t->m, a->layout, label) == (int32_t)i,
                  "model seat_find broken");
        CHECK(t, engine_layout_seat_find(t->e, a->layout, "no-such") == -1, "seat_find(no-such)");
        CHECK(t, engine_layout_seat_find(t->e, 999, label) == -1, "seat_find, unknown layout");
        CHECK(t, engine_layout_seat(t->e, 999, 0) == NULL, "seat of an unknown layout");
        CHECK(t, engine_layout_seat_count(t->e, 999) == 0, "seat count of an unknown layout");
        break;
    }
    case 2: {
        /* Amounts up to 2^40 keep amount * percent inside 64 bits. */
        uint64_t amount = rng_below(&t->r, UINT64_C(1) << 40);
        int64_t before = rng_range(&t->r, -3600000, 12 * 3600000);
        if (rng_pm(&t->r, 300) && t->p->cfg.refund_tier_count > 0)
            before = t->p->cfg.refund_tiers[rng_below(&t->r, t->p->cfg.refund_tier_count)]
                         .min_before_start_ms -
                     rng_range(&t->r, 0, 1);
        uint64_t x = engine_refund_compute(&t->p->cfg, amount, before);
        uint64_t y = model_refund(&t->p->cfg, amount, before);
        CHECK(t, x == y, "refund_compute(%" PRIu64 ", %" PRId64 ") = %" PRIu64 ", model %" PRIu64,
              amount, before, x, y);
        break;
    }
    case 3:
    case 4: {
        uint64_t user = user_pick(t);
        bool bookings = rng_pm(&t->r, 500);
        uint32_t total = bookings ? model_user_bookings(t->m, user, 0, NULL, 0)
                                  : model_user_holds(t->m, user, 0, NULL, 0);
        uint32_t offset = (uint32_t)rng_below(&t->r, total + 3);
        expect_list(t, bookings, user, offset, (uint32_t)rng_below(&t->r, 8));
        break;
    }
    case 5:
        pick_hold(t);
        expect_hold(t, a->hold);
        break;
    case 6: {
        uint64_t nb = model_bookings_issued(t->m);
        a->booking = rng_pm(&t->r, 800) && nb ? model_booking_id(t->m, 1 + rng_below(&t->r, nb))
                                              : model_booking_id(t->m, nb + 1);
        expect_booking(t, a->booking);
        break;
    }
    case 7: {
        a->showtime = pick_showtime(t, 0);
        uint64_t le = 0, lm = 0;
        int64_t se = 0, sm = 0;
        uint32_t pe[ENGINE_CATEGORIES_MAX] = {0}, pm[ENGINE_CATEGORIES_MAX] = {0};
        bool ge = engine_showtime_get(t->e, a->showtime, &le, &se, pe);
        bool gm = model_showtime_get(t->m, a->showtime, &lm, &sm, pm);
        CHECK(t, ge == gm && le == lm && se == sm, "showtime_get(%" PRIu64 ") differs",
              a->showtime);
        if (a->showtime != BIG_SHOWTIME)
            expect_availability(t, a->showtime);
        break;
    }
    default: {
        size_t nl = model_layout_count(t->m);
        if (nl == 0)
            break;
        a->layout = model_layout_id_at(t->m, rng_below(&t->r, nl));
        uint32_t cats = model_layout_category_count(t->m, a->layout);
        uint32_t c = (uint32_t)rng_below(&t->r, cats + 2);
        const char *x = engine_layout_category_name(t->e, a->layout, c);
        const char *y = model_layout_category_name(t->m, a->layout, c);
        CHECK(t, (x == NULL) == (y == NULL) && (!x || strcmp(x, y) == 0),
              "category_name(%" PRIu64 ", %u)", a->layout, c);
        uint32_t rows = model_layout_row_count(t->m, a->layout);
        uint32_t r = (uint32_t)rng_below(&t->r, rows + 2);
        x = engine_layout_row_label(t->e, a->layout, r);
        y = model_layout_row_label(t->m, a->layout, r);
        CHECK(t, (x == NULL) == (y == NULL) && (!x || strcmp(x, y) == 0),
              "row_label(%" PRIu64 ", %u)", a->layout, r);
        break;
    }
    }
}

/* ---- Full state compare -------------------------------------------------------------------- */

static void full_compare(harness *t, bool everything)
{
    expect_clock(t);
    bool big = everything || t->op % t->p->big_full_every == 0;

    for (size_t i = 0; i < model_showtime_count(t->m); i++) {
        uint64_t id = model_showtime_id_at(t->m, i);
        uint64_t le = 0, lm = 0;
        int64_t se = 0, sm = 0;
        uint32_t pe[ENGINE_CATEGORIES_MAX] = {0}, pm[ENGINE_CATEGORIES_MAX] = {0};
        bool ge = engine_showtime_get(t->e, id, &le, &se, pe);
        model_showtime_get(t->m, id, &lm, &sm, pm);
        CHECK(t, ge && le == lm && se == sm,
              "showtime %" PRIu64 ": engine get=%d layout=%" PRIu64 " start=%" PRId64, id, ge, le,
              se);
        uint32_t cats = model_layout_category_count(t->m, lm);
        CHECK(t, memcmp(pe, pm, cats * sizeof pe[0]) == 0, "showtime %" PRIu64 " prices", id);
        if (id == BIG_SHOWTIME && !big)
            continue;
        expect_availability(t, id);
        uint32_t n = 0;
        const uint8_t *ms = model_seatmap(t->m, id, &n);
        if (t->seatbuf_cap < n) {
            t->seatbuf = xrealloc(t->seatbuf, n);
            t->seatbuf_cap = n;
        }
        int32_t got = engine_seatmap_get(t->e, id, t->seatbuf, t->seatbuf_cap);
        CHECK(t, got == (int32_t)n, "seatmap(%" PRIu64 ") returned %d, want %u", id, got, n);
        if (memcmp(t->seatbuf, ms, n) != 0) {
            uint32_t k = 0;
            while (t->seatbuf[k] == ms[k])
                k++;
            CHECK(t, false, "seatmap(%" PRIu64 ") seat %u: engine %u, model %u", id, k,
                  t->seatbuf[k], ms[k]);
        }
        if (n > 1) {
            got = engine_seatmap_get(t->e, id, t->seatbuf, n - 1);
            CHECK(t, got == ENGINE_EBUFSIZE, "seatmap into %u bytes returned %d", n - 1, got);
        }
    }
    /* Showtimes that do not exist. */
    uint64_t gone = unknown_showtime(t);
    if (!st_find(t, gone)) {
        CHECK(t, !engine_showtime_get(t->e, gone, NULL, NULL, NULL), "showtime %" PRIu64, gone);
        CHECK(t, engine_seatmap_get(t->e, gone, t->seatbuf, t->seatbuf_cap) == -1,
              "seatmap of unknown showtime %" PRIu64, gone);
        engine_category_counts c[ENGINE_CATEGORIES_MAX];
        CHECK(t, engine_availability_get(t->e, gone, c) == -1, "availability of %" PRIu64, gone);
    }

    uint32_t live = model_holds_live(t->m);
    for (uint32_t i = 0; i < live; i++)
        expect_hold(t, model_live_hold_at(t->m, i));
    uint64_t issued = model_holds_issued(t->m);
    for (int i = 0; i < 64 && issued > 0; i++)
        expect_hold(t, model_hold_id(t->m, 1 + rng_below(&t->r, issued)));
    expect_hold(t, model_hold_id(t->m, issued + 1));
    expect_hold(t, model_hold_id(t->m, 0));

    uint64_t nb = model_bookings_issued(t->m);
    if (everything || t->op % t->p->bookings_every == 0) {
        for (uint64_t seq = 1; seq <= nb; seq++)
            expect_booking(t, model_booking_id(t->m, seq));
    } else {
        for (int i = 0; i < 256 && nb > 0; i++)
            expect_booking(t, model_booking_id(t->m, 1 + rng_below(&t->r, nb)));
    }
    expect_booking(t, model_booking_id(t->m, nb + 1));

    for (size_t u = 0; u < USER_COUNT; u++) {
        for (int bookings = 0; bookings < 2; bookings++) {
            uint32_t total = bookings ? model_user_bookings(t->m, users[u], 0, NULL, 0)
                                      : model_user_holds(t->m, users[u], 0, NULL, 0);
            expect_list(t, bookings, users[u], 0, total + 1);
        }
    }

    if (big)
        engine_check(t->e); /* O(state): the 100,000-seat showtime dominates */
    CHECK(t, engine_digest(t->f) == engine_digest(t->e),
          "follower digest 0x%016" PRIx64 ", engine 0x%016" PRIx64 " after %zu records",
          engine_digest(t->f), engine_digest(t->e), t->log_count);
    if (everything) {
        engine_check(t->f);
        for (size_t i = 0; i < model_layout_count(t->m); i++)
            expect_layout(t, model_layout_id_at(t->m, i));
    }
}

/* ---- The run ----------------------------------------------------------------------------------
 */

static uint64_t default_seed(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t x = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
    return splitmix64(&x);
}

static double elapsed_s(const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) + (double)(t1.tv_nsec - t0->tv_nsec) / 1e9;
}

/* ---- Snapshots --------------------------------------------------------------------------------
 *
 * Every `snap_every` ops the engine takes a snapshot (the first and about one
 * in ten full, the others incremental), checked against the model, and the
 * harness writes it into its store with the semantics of snapshot.c's
 * store_write_txn(). Every `restore_every` ops (and at the end) the follower
 * does the same into a second store (it snapshots only then), and:
 *   - the two stores must be equal byte for byte: the follower is built by
 *     replay alone, so this checks that replay marks for the next snapshot
 *     everything it changes (recovery replays, then snapshots incrementally);
 *   - the engine restored at the previous restore, with every record logged
 *     since applied to it, must have the engine's digest (snapshot + tail),
 *     and its first snapshot, incremental, written on top of the store it was
 *     restored from, must give the engine's store (recovery, then snapshots);
 *   - a fresh engine restored from the store as snapshot_store_load() does
 *     must finish, have the engine's digest and agree with the model on what
 *     the digest leaves out (counters, per-user lists, lookups, expiry order);
 *     every `swap_every` restores the run goes on on the restored engine, so
 *     that the model checks everything the restore rebuilt, and its later
 *     incremental snapshots must fit the store;
 *   - every `negative_every` restores, damaged stores must be refused.
 */

static const char *kind_name(engine_item_kind k)
{
    switch (k) {
    case ENGINE_ITEM_META:
        return "META";
    case ENGINE_ITEM_LAYOUT:
        return "LAYOUT";
    case ENGINE_ITEM_SHOWTIME:
        return "SHOWTIME";
    case ENGINE_ITEM_HOLD:
        return "HOLD";
    case ENGINE_ITEM_BOOKING:
        return "BOOKING";
    case ENGINE_ITEM_ONSALE:
        return "ONSALE";
    }
    return "?";
}

static int map_of(engine_item_kind k)
{
    switch (k) {
    case ENGINE_ITEM_LAYOUT:
        return MAP_LAYOUTS;
    case ENGINE_ITEM_SHOWTIME:
        return MAP_SHOWTIMES;
    case ENGINE_ITEM_HOLD:
        return MAP_HOLDS;
    case ENGINE_ITEM_BOOKING:
        return MAP_BOOKINGS;
    default:
        return -1;
    }
}

/* The order snapshot_store_load() restores the maps in (META comes first). */
static const engine_item_kind load_order[MAPS] = {ENGINE_ITEM_LAYOUT, ENGINE_ITEM_SHOWTIME,
                                                  ENGINE_ITEM_BOOKING, ENGINE_ITEM_HOLD};

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* Index of the first entry whose key is >= `key`. */
static size_t map_lower(const store_map *m, uint64_t key)
{
    size_t lo = 0, hi = m->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (m->e[mid].key < key)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* mdb_put: inserts or overwrites, copying the value. */
static void map_put(store_map *m, uint64_t key, const uint8_t *val, uint32_t len)
{
    size_t i = map_lower(m, key);
    if (i == m->n || m->e[i].key != key) {
        if (m->n == m->cap) {
            m->cap = m->cap ? 2 * m->cap : 64;
            m->e = xrealloc(m->e, m->cap * sizeof *m->e);
        }
        memmove(&m->e[i + 1], &m->e[i], (m->n - i) * sizeof *m->e);
        m->n++;
        m->e[i] = (store_ent){.key = key};
    }
    m->e[i].val = xrealloc(m->e[i].val, len > 0 ? len : 1);
    if (len > 0)
        memcpy(m->e[i].val, val, len);
    m->e[i].len = len;
}

/* mdb_drop(..., 0): empties the map. */
static void map_clear(store_map *m)
{
    for (size_t i = 0; i < m->n; i++)
        free(m->e[i].val);
    m->n = 0;
}

/* snapshot.c's prune(): deletes every key that is not in ids[0..n). */
static void map_prune(store_map *m, const uint64_t *ids, size_t n)
{
    uint64_t *sorted = xrealloc(NULL, (n > 0 ? n : 1) * sizeof *sorted);
    if (n > 0)
        memcpy(sorted, ids, n * sizeof *sorted);
    qsort(sorted, n, sizeof *sorted, cmp_u64);
    size_t k = 0;
    for (size_t i = 0; i < m->n; i++) {
        if (bsearch(&m->e[i].key, sorted, n, sizeof *sorted, cmp_u64) != NULL)
            m->e[k++] = m->e[i];
        else
            free(m->e[i].val);
    }
    m->n = k;
    free(sorted);
}

static void store_free(store *s)
{
    for (int i = 0; i < MAPS; i++) {
        map_clear(&s->map[i]);
        free(s->map[i].e);
    }
    free(s->meta);
    memset(s, 0, sizeof *s);
}

/* Writes a snapshot into the store exactly as store_write_txn() does. */
static void store_apply(store *s, const engine_snapshot *snap)
{
    if (engine_snapshot_full(snap)) {
        for (int i = 0; i < MAPS; i++)
            map_clear(&s->map[i]);
    } else {
        /* Holds are few and all included: replace them wholesale. */
        map_clear(&s->map[MAP_HOLDS]);
        size_t n;
        const uint64_t *ids = engine_snapshot_ids(snap, ENGINE_ITEM_LAYOUT, &n);
        map_prune(&s->map[MAP_LAYOUTS], ids, n);
        ids = engine_snapshot_ids(snap, ENGINE_ITEM_SHOWTIME, &n);
        map_prune(&s->map[MAP_SHOWTIMES], ids, n);
    }
    for (size_t i = 0; i < engine_snapshot_count(snap); i++) {
        const engine_item *it = engine_snapshot_item(snap, i);
        if (it->kind == ENGINE_ITEM_META) {
            s->meta = xrealloc(s->meta, it->len > 0 ? it->len : 1);
            memcpy(s->meta, it->value, it->len);
            s->meta_len = it->len;
        } else {
            map_put(&s->map[map_of(it->kind)], it->key, it->value, it->len);
        }
    }
}

static void store_copy(store *dst, const store *src)
{
    store_free(dst);
    for (int i = 0; i < MAPS; i++) {
        const store_map *m = &src->map[i];
        for (size_t k = 0; k < m->n; k++)
            map_put(&dst->map[i], m->e[k].key, m->e[k].val, m->e[k].len);
    }
    dst->meta = xrealloc(NULL, src->meta_len > 0 ? src->meta_len : 1);
    memcpy(dst->meta, src->meta, src->meta_len);
    dst->meta_len = src->meta_len;
}

static size_t store_items(const store *s)
{
    size_t n = s->meta != NULL;
    for (int i = 0; i < MAPS; i++)
        n += s->map[i].n;
    return n;
}

/* Two stores must be equal byte for byte; `who` names the second. */
static void expect_stores_equal(harness *t, const store *a, const store *b, const char *who)
{
    CHECK(t, a->meta_len == b->meta_len && memcmp(a->meta, b->meta, a->meta_len) == 0,
          "META: engine's store has %u bytes, %s %u, or they differ", a->meta_len, who,
          b->meta_len);
    for (int o = 0; o < MAPS; o++) {
        engine_item_kind kind = load_order[o];
        const store_map *x = &a->map[map_of(kind)], *y = &b->map[map_of(kind)];
        for (size_t i = 0; i < x->n || i < y->n; i++) {
            CHECK(t, i < x->n && i < y->n && x->e[i].key == y->e[i].key,
                  "%s keys: engine's store has %zu (#%zu is 0x%" PRIx64 "), %s %zu"
                  " (#%zu is 0x%" PRIx64 ")",
                  kind_name(kind), x->n, i, i < x->n ? x->e[i].key : 0, who, y->n, i,
                  i < y->n ? y->e[i].key : 0);
            CHECK(t,
                  x->e[i].len == y->e[i].len && memcmp(x->e[i].val, y->e[i].val, x->e[i].len) == 0,
                  "%s 0x%" PRIx64 ": engine's stored value (%u bytes) differs from %s"
                  " (%u bytes)",
                  kind_name(kind), x->e[i].key, x->e[i].len, who, y->e[i].len);
        }
    }
}

/* The ids of the model's layouts or showtimes, sorted, in t->ids_m. */
static size_t model_ids_sorted(harness *t, engine_item_kind kind)
{
    bool layouts = kind == ENGINE_ITEM_LAYOUT;
    size_t n = layouts ? model_layout_count(t->m) : model_showtime_count(t->m);
    ensure_ids(t, n + 1);
    for (size_t i = 0; i < n; i++)
        t->ids_m[i] = layouts ? model_layout_id_at(t->m, i) : model_showtime_id_at(t->m, i);
    qsort(t->ids_m, n, sizeof *t->ids_m, cmp_u64);
    return n;
}

/* engine_snapshot_ids() must list exactly the model's layouts / showtimes. */
static void expect_snapshot_ids(harness *t, const engine_snapshot *snap, engine_item_kind kind,
                                const char *who)
{
    size_t want = model_ids_sorted(t, kind), n = 0;
    const uint64_t *ids = engine_snapshot_ids(snap, kind, &n);
    CHECK(t, n == want && (n == 0 || ids != NULL), "%s snapshot: %zu %s ids, the model has %zu",
          who, n, kind_name(kind), want);
    if (n > 0)
        memcpy(t->ids_e, ids, n * sizeof *ids);
    qsort(t->ids_e, n, sizeof *t->ids_e, cmp_u64);
    for (size_t i = 0; i < n; i++)
        CHECK(t, t->ids_e[i] == t->ids_m[i],
              "%s snapshot: %s ids (sorted) #%zu is %" PRIu64 ", the model's %" PRIu64, who,
              kind_name(kind), i, t->ids_e[i], t->ids_m[i]);
}

/* After a write, the store holds exactly the model's objects. */
static void expect_store_keys(harness *t, const store *s)
{
    for (int k = 0; k < 2; k++) {
        engine_item_kind kind = k ? ENGINE_ITEM_SHOWTIME : ENGINE_ITEM_LAYOUT;
        const store_map *m = &s->map[map_of(kind)];
        size_t n = model_ids_sorted(t, kind);
        CHECK(t, m->n == n, "store: %zu %s keys, the model has %zu", m->n, kind_name(kind), n);
        for (size_t i = 0; i < n; i++)
            CHECK(t, m->e[i].key == t->ids_m[i], "store: %s key #%zu is %" PRIu64 ", want %" PRIu64,
                  kind_name(kind), i, m->e[i].key, t->ids_m[i]);
    }
    const store_map *h = &s->map[MAP_HOLDS];
    uint32_t live = model_holds_live(t->m);
    CHECK(t, h->n == live, "store: %zu holds, the model has %u live", h->n, live);
    for (uint32_t i = 0; i < live; i++) {
        uint64_t id = model_live_hold_at(t->m, i);
        size_t at = map_lower(h, id);
        CHECK(t, at < h->n && h->e[at].key == id, "store: live hold 0x%" PRIx64 " missing", id);
    }
    /* Sorted distinct keys from the first id to the last: exactly 1..n. */
    const store_map *b = &s->map[MAP_BOOKINGS];
    uint64_t nb = model_bookings_issued(t->m);
    CHECK(t,
          b->n == nb && (nb == 0 || (b->e[0].key == model_booking_id(t->m, 1) &&
                                     b->e[nb - 1].key == model_booking_id(t->m, nb))),
          "store: %zu bookings, the model has %" PRIu64 " (first 0x%" PRIx64 ", last 0x%" PRIx64
          ")",
          b->n, nb, b->n ? b->e[0].key : 0, b->n ? b->e[b->n - 1].key : 0);
}

/* Takes a snapshot of `e`, checks it against the model and writes it into `s`. */
static void snapshot_into(harness *t, engine *e, bool full, store *s, const char *who)
{
    engine_snapshot *snap = NULL;
    int rc = engine_snapshot_take(e, full, &snap);
    CHECK(t, rc == 0 && snap != NULL, "%s: engine_snapshot_take(full=%d) returned %d", who, full,
          rc);
    t->snap = snap;
    CHECK(t, engine_snapshot_full(snap) == full, "%s: engine_snapshot_full() is %d, took %d", who,
          engine_snapshot_full(snap), full);
    size_t count[ENGINE_ITEM_BOOKING + 1] = {0}, n = engine_snapshot_count(snap);
    for (size_t i = 0; i < n; i++) {
        const engine_item *it = engine_snapshot_item(snap, i);
        CHECK(t,
              it != NULL && it->kind >= ENGINE_ITEM_META && it->kind <= ENGINE_ITEM_BOOKING &&
                  it->value != NULL && it->len > 0,
              "%s snapshot item %zu of %zu: NULL, kind %d or no value", who, i, n,
              it ? (int)it->kind : -1);
        CHECK(t, it->kind != ENGINE_ITEM_META || it->key == 0, "%s snapshot: META key %" PRIu64,
              who, it->key);
        count[it->kind]++;
        t->snap_bytes += it->len;
    }
    t->snap_items += n;
    CHECK(t, engine_snapshot_item(snap, n) == NULL, "%s: engine_snapshot_item(count) not NULL",
          who);
    CHECK(t, count[ENGINE_ITEM_META] == 1, "%s snapshot: %zu META items", who,
          count[ENGINE_ITEM_META]);
    CHECK(t, count[ENGINE_ITEM_HOLD] == model_holds_live(t->m),
          "%s snapshot: %zu HOLD items, the model has %u live holds", who, count[ENGINE_ITEM_HOLD],
          model_holds_live(t->m));
    CHECK(t,
          !full || (count[ENGINE_ITEM_LAYOUT] == model_layout_count(t->m) &&
                    count[ENGINE_ITEM_SHOWTIME] == model_showtime_count(t->m) &&
                    count[ENGINE_ITEM_BOOKING] == model_bookings_issued(t->m)),
          "%s full snapshot: %zu layouts, %zu showtimes, %zu bookings; the model has %zu, %zu, "
          "%" PRIu64,
          who, count[ENGINE_ITEM_LAYOUT], count[ENGINE_ITEM_SHOWTIME], count[ENGINE_ITEM_BOOKING],
          model_layout_count(t->m), model_showtime_count(t->m), model_bookings_issued(t->m));
    expect_snapshot_ids(t, snap, ENGINE_ITEM_LAYOUT, who);
    expect_snapshot_ids(t, snap, ENGINE_ITEM_SHOWTIME, who);
    store_apply(s, snap);
    t->snap = NULL;
    engine_snapshot_free(snap);
}

/* A change to one item of the store, for the refusals. */
typedef struct tweak {
    engine_item_kind kind; /* 0: none */
    uint64_t key;
    const uint8_t *val; /* the item's value instead, or NULL: leave the item out */
    uint32_t len;
} tweak;

static void scratch_drop(harness *t)
{
    engine_destroy(t->scratch);
    t->scratch = NULL;
}

/*
 * Restores the store into a fresh engine, t->scratch, the way
 * snapshot_store_load() does: META, then layouts, showtimes, bookings and
 * holds, each in ascending key order. Every item must restore. Returns
 * engine_restore_finish()'s verdict.
 */
static int store_restore_cfg(harness *t, const engine_config *cfg, const store *s, const tweak *tw)
{
    CHECK(t, t->scratch == NULL, "restore: the last scratch engine was not dropped");
    int rc = engine_create(cfg, &t->scratch);
    CHECK(t, rc == 0, "restore: engine_create failed: %d", rc);
    CHECK(t, s->meta != NULL, "restore: the store has no META");
    rc = engine_restore_item(t->scratch, ENGINE_ITEM_META, 0, s->meta, s->meta_len);
    CHECK(t, rc == 0, "restore of META (%u bytes) failed: %d (%s)", s->meta_len, rc,
          engine_strerror(rc));
    for (int o = 0; o < MAPS; o++) {
        engine_item_kind kind = load_order[o];
        const store_map *m = &s->map[map_of(kind)];
        for (size_t i = 0; i < m->n; i++) {
            const uint8_t *val = m->e[i].val;
            uint32_t len = m->e[i].len;
            if (tw != NULL && tw->kind == kind && tw->key == m->e[i].key) {
                if (tw->val == NULL)
                    continue;
                val = tw->val;
                len = tw->len;
            }
            rc = engine_restore_item(t->scratch, kind, m->e[i].key, val, len);
            /* Refusing the damaged item itself is as good as refusing at the end. */
            if (rc == ENGINE_EREPLAY && tw != NULL && tw->val != NULL && tw->kind == kind &&
                tw->key == m->e[i].key)
                return rc;
            CHECK(t, rc == 0, "restore of %s 0x%" PRIx64 " (%u bytes) failed: %d (%s)",
                  kind_name(kind), m->e[i].key, len, rc, engine_strerror(rc));
        }
    }
    return engine_restore_finish(t->scratch);
}

static int store_restore(harness *t, const store *s, const tweak *tw)
{
    return store_restore_cfg(t, &t->p->cfg, s, tw);
}

/*
 * The restored engine against the model, on what the digest leaves out:
 * counters, live holds and the expiry order, lookups and per-user lists.
 * (The main engine is parked meanwhile, so the expect_* helpers apply.)
 */
static void expect_restored(harness *t, engine *r)
{
    t->parked = t->e;
    t->e = r;
    expect_clock(t);
    for (size_t i = 0; i < model_showtime_count(t->m); i++)
        expect_availability(t, model_showtime_id_at(t->m, i));
    uint32_t live = model_holds_live(t->m);
    for (uint32_t i = 0; i < live; i++)
        expect_hold(t, model_live_hold_at(t->m, i));
    expect_hold(t, model_hold_id(t->m, model_holds_issued(t->m) + 1));
    uint64_t nb = model_bookings_issued(t->m);
    for (int i = 0; i < 64 && nb > 0; i++)
        expect_booking(t, model_booking_id(t->m, 1 + rng_below(&t->sr, nb)));
    if (nb > 0)
        expect_booking(t, model_booking_id(t->m, nb));
    expect_booking(t, model_booking_id(t->m, nb + 1));
    for (size_t u = 0; u < USER_COUNT; u++) {
        for (int bookings = 0; bookings < 2; bookings++) {
            uint32_t total = bookings ? model_user_bookings(t->m, users[u], 0, NULL, 0)
                                      : model_user_holds(t->m, users[u], 0, NULL, 0);
            expect_list(t, bookings, users[u], 0, total + 1);
        }
    }
    t->e = t->parked;
    t->parked = NULL;
}

/*
 * Recovery: the engine restored at the last restore, plus the records logged
 * since, is the engine; and its first snapshot, incremental, written on top
 * of the store it was restored from, gives the store the engine wrote.
 */
static void tail_check(harness *t)
{
    size_t k = log_apply(t, t->tail, t->tail_from, "snapshot + tail");
    CHECK(t, k == t->log_count - t->tail_count, "snapshot + tail: applied %zu records, logged %zu",
          k, t->log_count - t->tail_count);
    CHECK(t, engine_digest(t->tail) == engine_digest(t->e),
          "snapshot + %zu records: digest 0x%016" PRIx64 ", engine 0x%016" PRIx64, k,
          engine_digest(t->tail), engine_digest(t->e));
    snapshot_into(t, t->tail, false, &t->st_t, "restored + tail");
    expect_stores_equal(t, &t->st_e, &t->st_t, "the restored + tail engine's");
    t->tails++;
    t->tail_records += k;
    engine_destroy(t->tail);
    t->tail = NULL;
}

/* Restores with one item changed or left out: finishing must refuse. */
static void expect_refused(harness *t, const tweak *tw, const char *what)
{
    int rc = store_restore(t, &t->st_e, tw);
    CHECK(t, rc == ENGINE_EREPLAY, "restore with %s (%s 0x%" PRIx64 "): returned %d, want %d", what,
          kind_name(tw->kind), tw->key, rc, ENGINE_EREPLAY);
    scratch_drop(t);
}

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/*
 * Offset of the held (or sold) bitmap in a SHOWTIME value (state.c, version 1):
 * u8 version | u64 layout | i64 start | u8 n | u32 prices[n] | u32 seat_count |
 * u64 held[words] | u64 sold[words], little-endian. Seat s is bit s % 8 of
 * byte s / 8 of a bitmap.
 */
static size_t bitmap_at(harness *t, const store_ent *st, bool sold)
{
    CHECK(t, st->len >= 18 && st->val[0] == 1, "SHOWTIME 0x%" PRIx64 ": %u bytes, version %u",
          st->key, st->len, st->len ? st->val[0] : 0);
    size_t at = 18 + 4 * (size_t)st->val[17];
    CHECK(t, st->len >= at + 4, "SHOWTIME 0x%" PRIx64 ": %u bytes", st->key, st->len);
    size_t words = ((size_t)le32(st->val + at) + 63) / 64;
    at += 4;
    CHECK(t, st->len == at + 16 * words, "SHOWTIME 0x%" PRIx64 ": %u bytes, want %zu", st->key,
          st->len, at + 16 * words);
    return at + (sold ? 8 * words : 0);
}

/*
 * Flips, in a copy of a stored showtime, the held or sold bit of a seat the
 * engine has in state `from` (FREE or SOLD); restoring must be refused.
 * Skipped when no showtime has such a seat.
 */
static void expect_flip_refused(harness *t, int from, bool sold, const char *what)
{
    const store_map *m = &t->st_e.map[MAP_SHOWTIMES];
    size_t first = m->n ? rng_below(&t->sr, m->n) : 0;
    for (size_t k = 0; k < m->n; k++) {
        const store_ent *st = &m->e[(first + k) % m->n];
        int32_t n = engine_seatmap_get(t->e, st->key, t->seatbuf, t->seatbuf_cap);
        if (n == ENGINE_EBUFSIZE) {
            t->seatbuf_cap = ENGINE_SEATS_MAX;
            t->seatbuf = xrealloc(t->seatbuf, t->seatbuf_cap);
            n = engine_seatmap_get(t->e, st->key, t->seatbuf, t->seatbuf_cap);
        }
        CHECK(t, n > 0, "seatmap of stored showtime %" PRIu64 ": %d", st->key, n);
        uint32_t seat = (uint32_t)rng_below(&t->sr, (uint64_t)n), tries = 0;
        while (t->seatbuf[seat] != from && tries++ < (uint32_t)n)
            seat = (seat + 1) % (uint32_t)n;
        if (t->seatbuf[seat] != from)
            continue;
        uint8_t *val = xrealloc(NULL, st->len);
        memcpy(val, st->val, st->len);
        val[bitmap_at(t, st, sold) + seat / 8] ^= (uint8_t)(1u << (seat % 8));
        t->tweak_val = val;
        tweak tw = {.kind = ENGINE_ITEM_SHOWTIME, .key = st->key, .val = val, .len = st->len};
        char buf[128];
        snprintf(buf, sizeof buf, "%s (seat %u)", what, seat);
        expect_refused(t, &tw, buf);
        t->tweak_val = NULL;
        free(val);
        return;
    }
}

/* A truncated value of each kind gives ENGINE_EDECODE. */
static void truncation_probes(harness *t)
{
    const store *s = &t->st_e;
    CHECK(t, t->scratch == NULL, "probe: the last scratch engine was not dropped");
    int rc = engine_create(&t->p->cfg, &t->scratch);
    CHECK(t, rc == 0, "probe: engine_create failed: %d", rc);
    engine *r = t->scratch;

    /* META comes first, and once. */
    const store_map *ml = &s->map[MAP_LAYOUTS];
    if (ml->n > 0) {
        rc = engine_restore_item(r, ENGINE_ITEM_LAYOUT, ml->e[0].key, ml->e[0].val, ml->e[0].len);
        CHECK(t, rc == ENGINE_EREPLAY, "LAYOUT before META: %d, want EREPLAY", rc);
    }
    rc = engine_restore_finish(r);
    CHECK(t, rc == ENGINE_EREPLAY, "engine_restore_finish without META: %d, want EREPLAY", rc);

    uint32_t cuts[2] = {s->meta_len - 1, (uint32_t)rng_below(&t->sr, s->meta_len)};
    for (int c = 0; c < 2; c++) {
        rc = engine_restore_item(r, ENGINE_ITEM_META, 0, s->meta, cuts[c]);
        CHECK(t, rc == ENGINE_EDECODE, "META cut to %u of %u bytes: %d, want EDECODE", cuts[c],
              s->meta_len, rc);
    }
    rc = engine_restore_item(r, ENGINE_ITEM_META, 0, s->meta, s->meta_len);
    CHECK(t, rc == 0, "META after refused ones: %d", rc);
    rc = engine_restore_item(r, ENGINE_ITEM_META, 0, s->meta, s->meta_len);
    CHECK(t, rc == ENGINE_EREPLAY, "META twice: %d, want EREPLAY", rc);

    /* Each needs only META to get as far as decoding. */
    static const engine_item_kind kinds[] = {ENGINE_ITEM_BOOKING, ENGINE_ITEM_HOLD,
                                             ENGINE_ITEM_LAYOUT};
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
        const store_map *m = &s->map[map_of(kinds[k])];
        if (m->n == 0)
            continue;
        const store_ent *it = &m->e[rng_below(&t->sr, m->n)];
        uint32_t cut[2] = {it->len - 1, (uint32_t)rng_below(&t->sr, it->len)};
        for (int c = 0; c < 2; c++) {
            rc = engine_restore_item(r, kinds[k], it->key, it->val, cut[c]);
            CHECK(t, rc == ENGINE_EDECODE,
                  "%s 0x%" PRIx64 " cut to %u of %u bytes: %d, want EDECODE", kind_name(kinds[k]),
                  it->key, cut[c], it->len, rc);
        }
    }

    /* A showtime needs its layout; a refused one is the last item here. */
    const store_map *ms = &s->map[MAP_SHOWTIMES];
    if (ms->n > 0) {
        for (size_t i = 0; i < ml->n; i++) {
            rc = engine_restore_item(r, ENGINE_ITEM_LAYOUT, ml->e[i].key, ml->e[i].val,
                                     ml->e[i].len);
            CHECK(t, rc == 0, "LAYOUT 0x%" PRIx64 " after refused ones: %d", ml->e[i].key, rc);
        }
        const store_ent *it = &ms->e[rng_below(&t->sr, ms->n)];
        rc = engine_restore_item(r, ENGINE_ITEM_SHOWTIME, it->key, it->val, it->len - 1);
        CHECK(t, rc == ENGINE_EDECODE, "SHOWTIME 0x%" PRIx64 " cut to %u bytes: %d, want EDECODE",
              it->key, it->len - 1, rc);
    }
    scratch_drop(t);
}

/* A META whose id prefix is not the configuration's gives ENGINE_EREPLAY. */
static void prefix_probes(harness *t)
{
    const store *s = &t->st_e;
    engine_config cfg = t->p->cfg;
    cfg.id_prefix ^= 1;
    int rc = engine_create(&cfg, &t->scratch);
    CHECK(t, rc == 0, "probe: engine_create failed: %d", rc);
    rc = engine_restore_item(t->scratch, ENGINE_ITEM_META, 0, s->meta, s->meta_len);
    CHECK(t, rc == ENGINE_EREPLAY,
          "META of prefix 0x%04x into an engine of prefix 0x%04x: %d,"
          " want EREPLAY",
          t->p->cfg.id_prefix, cfg.id_prefix, rc);
    scratch_drop(t);

    /* The same, the other way round: META ends with the u16 prefix. */
    rc = engine_create(&t->p->cfg, &t->scratch);
    CHECK(t, rc == 0, "probe: engine_create failed: %d", rc);
    CHECK(t, s->meta_len >= 2, "META of %u bytes", s->meta_len);
    uint8_t meta[64];
    CHECK(t, s->meta_len <= sizeof meta, "META of %u bytes", s->meta_len);
    memcpy(meta, s->meta, s->meta_len);
    meta[s->meta_len - 2] ^= 0x80;
    rc = engine_restore_item(t->scratch, ENGINE_ITEM_META, 0, meta, s->meta_len);
    CHECK(t, rc == ENGINE_EREPLAY, "META with prefix bits flipped: %d, want EREPLAY", rc);
    scratch_drop(t);
}

/* Restores with a copy of `ent` patched at `at`: finishing must refuse. */
static void expect_patch_refused(harness *t, engine_item_kind kind, const store_ent *ent, size_t at,
                                 const void *bytes, size_t n, const char *what)
{
    CHECK(t, at + n <= ent->len, "%s: %s 0x%" PRIx64 " has %u bytes", what, kind_name(kind),
          ent->key, ent->len);
    t->tweak_val = xrealloc(NULL, ent->len);
    memcpy(t->tweak_val, ent->val, ent->len);
    memcpy(t->tweak_val + at, bytes, n);
    tweak tw = {.kind = kind, .key = ent->key, .val = t->tweak_val, .len = ent->len};
    expect_refused(t, &tw, what);
    free(t->tweak_val);
    t->tweak_val = NULL;
}

/*
 * Damage only a cross-item check can see (a seat owned twice, a hold of a
 * showtime that is not there, an idempotency key used twice): restore
 * must refuse it with ENGINE_EREPLAY rather than abort in engine_check().
 * Offsets: BOOKING u8 1 | u64 showtime | u64 user | u64 hold | i64 confirmed |
 * i64 cancelled | u64 amount | u64 refund | u8 payment | u8 status | u8 n |
 * u32 seats[n] | u8 key_len | key; HOLD u8 1 | u64 showtime | u64 user |
 * i64 created | i64 expires | u64 amount | ...
 */
static void cross_item_probes(harness *t)
{
    enum { B_USER = 9, B_STATUS = 58, B_N = 59, B_SEATS = 60, H_SHOWTIME = 1, H_AMOUNT = 33 };
    const store_map *mb = &t->st_e.map[MAP_BOOKINGS], *mh = &t->st_e.map[MAP_HOLDS];
    for (size_t i = 0; i < mb->n; i++) {
        const store_ent *b = &mb->e[i];
        if (b->len > B_SEATS + 8 && b->val[B_STATUS] == ENGINE_BOOKING_STATUS_CONFIRMED &&
            b->val[B_N] >= 2) {
            expect_patch_refused(t, ENGINE_ITEM_BOOKING, b, B_SEATS + 4, b->val + B_SEATS, 4,
                                 "a confirmed booking naming a seat twice");
            break;
        }
    }
    if (mh->n > 0) {
        const store_ent *h = &mh->e[rng_below(&t->sr, mh->n)];
        /* (A hold's amount is not checked: it is the prices when the hold
         * was placed, and prices may have changed since.) */
        CHECK(t, h->len > H_AMOUNT + 8, "HOLD 0x%" PRIx64 " has %u bytes", h->key, h->len);
        uint8_t top = 0x7f; /* the showtime id's top byte: a showtime that does not exist */
        expect_patch_refused(t, ENGINE_ITEM_HOLD, h, H_SHOWTIME + 7, &top, 1,
                             "a hold of a showtime that does not exist");
    }
    /* Two bookings of one user with one idempotency key. */
    for (size_t j = 0; j < mb->n; j++) {
        const store_ent *b = &mb->e[j];
        size_t klen_at = B_SEATS + 4 * (size_t)b->val[B_N];
        if (b->len <= klen_at + 1)
            continue;
        for (size_t i = 0; i < j; i++) {
            const store_ent *a = &mb->e[i];
            size_t a_at = B_SEATS + 4 * (size_t)a->val[B_N];
            if (memcmp(a->val + B_USER, b->val + B_USER, 8) != 0 || a->len <= a_at + 1 ||
                a->val[a_at] != b->val[klen_at])
                continue;
            expect_patch_refused(t, ENGINE_ITEM_BOOKING, b, klen_at + 1, a->val + a_at + 1,
                                 a->val[a_at], "two bookings of a user with one idempotency key");
            return;
        }
    }
}

/* Damaged stores: a restore must refuse them (not crash, not accept). */
static void negative_checks(harness *t)
{
    t->phase = "restore refusals";
    t->negatives++;
    const store_map *mb = &t->st_e.map[MAP_BOOKINGS], *mh = &t->st_e.map[MAP_HOLDS];
    if (mb->n > 0) {
        /* Any booking, and the newest (only META's count says it exists). */
        tweak tw = {.kind = ENGINE_ITEM_BOOKING, .key = mb->e[rng_below(&t->sr, mb->n)].key};
        expect_refused(t, &tw, "a booking left out");
        tw.key = mb->e[mb->n - 1].key;
        expect_refused(t, &tw, "the newest booking left out");
    }
    if (mh->n > 0) {
        tweak tw = {.kind = ENGINE_ITEM_HOLD, .key = mh->e[rng_below(&t->sr, mh->n)].key};
        expect_refused(t, &tw, "a hold left out");
    }
    expect_flip_refused(t, ENGINE_SEAT_FREE, true, "a sold seat no booking owns");
    expect_flip_refused(t, ENGINE_SEAT_SOLD, true, "a booked seat not sold");
    expect_flip_refused(t, ENGINE_SEAT_FREE, false, "a held seat no hold has");
    truncation_probes(t);
    prefix_probes(t);
    cross_item_probes(t);

    /* Not a refusal: larger pools and other policy settings are fine. */
    t->phase = "restore into larger pools";
    engine_config cfg = t->p->cfg;
    cfg.holds_max *= 2;
    cfg.bookings_max *= 2;
    cfg.showtimes_max *= 2;
    cfg.layouts_max *= 2;
    cfg.hold_ttl_ms /= 2;
    cfg.max_seats_per_hold = 1;
    cfg.refund_tier_count = 0;
    int rc = store_restore_cfg(t, &cfg, &t->st_e, NULL);
    CHECK(t, rc == 0, "restore into larger pools: finish returned %d (%s)", rc,
          engine_strerror(rc));
    CHECK(t, engine_digest(t->scratch) == engine_digest(t->e),
          "restored into larger pools: digest 0x%016" PRIx64 ", engine 0x%016" PRIx64,
          engine_digest(t->scratch), engine_digest(t->e));
    scratch_drop(t);
}

/* Every snap_every ops, and at the end (`last`): see the top of this section. */
static void snapshot_checkpoint(harness *t, bool last)
{
    const params *p = t->p;
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    t->phase = "snapshot";
    bool full = t->snaps == 0 || rng_pm(&t->sr, 100);
    snapshot_into(t, t->e, full, &t->st_e, "engine");
    t->snaps++;
    t->snaps_full += full;
    expect_store_keys(t, &t->st_e);
    if (store_items(&t->st_e) > t->store_items_max)
        t->store_items_max = store_items(&t->st_e);
    t->snap_secs += elapsed_s(&t0);
    if (!last && t->op % p->restore_every != 0) {
        t->phase = NULL;
        return;
    }

    /* The follower snapshots at restores only (any cadence must do). */
    clock_gettime(CLOCK_MONOTONIC, &t0);
    t->phase = "follower snapshot";
    snapshot_into(t, t->f, t->restores == 0 || rng_pm(&t->sr, 100), &t->st_f, "follower");
    t->phase = "store compare";
    expect_stores_equal(t, &t->st_e, &t->st_f, "the follower's");
    if (t->tail != NULL) {
        t->phase = "snapshot + tail";
        tail_check(t);
    }
    t->phase = "restore";
    int rc = store_restore(t, &t->st_e, NULL);
    CHECK(t, rc == 0, "engine_restore_finish returned %d (%s)", rc, engine_strerror(rc));
    CHECK(t, engine_digest(t->scratch) == engine_digest(t->e),
          "restored (%zu items): digest 0x%016" PRIx64 ", engine 0x%016" PRIx64,
          store_items(&t->st_e), engine_digest(t->scratch), engine_digest(t->e));
    expect_restored(t, t->scratch);
    t->restores++;
    engine *r = t->scratch;
    t->scratch = NULL;
    if (t->restores % p->swap_every == 0) {
        /* The run goes on on the restored engine. */
        engine_destroy(t->e);
        t->e = r;
        t->swaps++;
    } else {
        t->tail = r;
        t->tail_from = t->log_len;
        t->tail_count = t->log_count;
        store_copy(&t->st_t, &t->st_e);
    }
    if (last || (t->restores - 1) % p->negative_every == 0)
        negative_checks(t);
    t->restore_secs += elapsed_s(&t0);
    t->phase = NULL;
}

/* Creates a layout and deletes it again at once (if it was created), so
 * that no other refusal can mix with its verdict. */
static void create_and_delete(harness *t, uint64_t id, const engine_layout_spec *spec)
{
    t->a.kind = OP_LAYOUT_CREATE;
    t->a.layout = id;
    layout_create(t, id, spec);
    engine_record re, rm;
    memset(&re, 0, sizeof re);
    t->a.kind = OP_LAYOUT_DELETE;
    engine_result want = model_layout_delete(t->m, t->a.now, id, &rm);
    engine_result got = engine_layout_delete(t->e, t->a.now, id, &re);
    expect_result(t, got, want);
    if (want == ENGINE_OK)
        expect_record(t, &re, &rm);
}

/*
 * Layouts on the limits: 2,048 rows with seats in column 65,535, one row too
 * many, one seat too many, eight categories with the longest names and a
 * name with no room for its NUL.
 */
static void edge_layouts(harness *t)
{
    enum { EDGE_ID = 50 };
    spec_buf b;
    for (uint32_t extra = 0; extra < 2; extra++) {
        uint32_t rows = ENGINE_ROWS_MAX + extra;
        spec_alloc(&b, rows, rows);
        for (uint32_t r = 0; r < rows; r++)
            seat_set(&b.seats[r], (uint16_t)r, r % 2 ? ENGINE_COL_MAX : 0, 0, 0);
        names_set(&b, 1, rows);
        b.spec.seat_count = rows;
        b.spec.best_row = rows - 1;
        create_and_delete(t, EDGE_ID + extra, &b.spec);
        spec_free(&b);
    }

    spec_alloc(&b, ENGINE_SEATS_MAX + 1, 201);
    for (uint32_t i = 0; i <= ENGINE_SEATS_MAX; i++)
        seat_set(&b.seats[i], (uint16_t)(i / 500), (uint16_t)(i % 500), 0, 0);
    names_set(&b, 1, 201);
    b.spec.seat_count = ENGINE_SEATS_MAX + 1;
    create_and_delete(t, EDGE_ID + 2, &b.spec);
    spec_free(&b);

    for (int unterminated = 0; unterminated < 2; unterminated++) {
        spec_alloc(&b, ENGINE_CATEGORIES_MAX, 1);
        names_set(&b, ENGINE_CATEGORIES_MAX, 1);
        for (uint32_t c = 0; c < ENGINE_CATEGORIES_MAX; c++) {
            memset(b.spec.category_names[c], 'a' + (int)c, ENGINE_NAME_MAX - 1);
            b.spec.category_names[c][ENGINE_NAME_MAX - 1] = '\0';
            seat_set(&b.seats[c], 0, (uint16_t)c, (uint8_t)c, 0);
        }
        if (unterminated)
            b.spec.category_names[3][ENGINE_NAME_MAX - 1] = 'x';
        b.spec.seat_count = ENGINE_CATEGORIES_MAX;
        create_and_delete(t, EDGE_ID + 3 + (uint64_t)unterminated, &b.spec);
        spec_free(&b);
    }

    /* Every kind of defect once, whatever the random layout ops pick later. */
    for (int d = 0; d < DEFECTS; d++) {
        build_random(t, &b);
        t->a.defect = d;
        add_defect(t, &b, d);
        create_and_delete(t, EDGE_ID + 5, &b.spec);
        spec_free(&b);
    }
    t->a.defect = -1;
}

static void setup(harness *t)
{
    t->a.now = 0;
    t->a.kind = OP_LAYOUT_CREATE;
    spec_buf b;
    if (t->p->big) {
        build_big(&b);
        layout_create(t, BIG_LAYOUT, &b.spec);
        spec_free(&b);
    }
    for (uint64_t id = TINY_LAYOUT; id <= MED_LAYOUT; id++) {
        build_fixed(id, &b);
        layout_create(t, id, &b.spec);
        spec_free(&b);
    }
    edge_layouts(t);
    if (t->p->big) {
        /* Starts long after any run ends: its sales never close. */
        uint32_t prices[3] = {1250, 999, 1777};
        showtime_create(t, BIG_SHOWTIME, BIG_LAYOUT, INT64_C(1) << 50, prices, 3);
        CHECK(t, st_find(t, BIG_SHOWTIME) != NULL, "could not create the big showtime");
    }
}

static void check_coverage(harness *t)
{
    static const struct {
        int kind;
        engine_result r;
    } need[] = {
        {OP_PLACE, ENGINE_OK},
        {OP_PLACE, ENGINE_TIME_BACKWARDS},
        {OP_PLACE, ENGINE_UNKNOWN_SHOWTIME},
        {OP_PLACE, ENGINE_SHOW_STARTED},
        {OP_PLACE, ENGINE_BAD_COUNT},
        {OP_PLACE, ENGINE_UNKNOWN_SEAT},
        {OP_PLACE, ENGINE_DUPLICATE_SEAT},
        {OP_PLACE, ENGINE_SEAT_BLOCKED},
        {OP_PLACE, ENGINE_SEAT_TAKEN},
        {OP_PLACE, ENGINE_CAPACITY},
        {OP_BEST, ENGINE_OK},
        {OP_BEST, ENGINE_NOT_AVAILABLE},
        {OP_BEST, ENGINE_UNKNOWN_CATEGORY},
        {OP_BEST, ENGINE_BAD_COUNT},
        {OP_BEST, ENGINE_SHOW_STARTED},
        {OP_EXTEND, ENGINE_OK},
        {OP_EXTEND, ENGINE_UNKNOWN_HOLD},
        {OP_EXTEND, ENGINE_HOLD_ENDED},
        {OP_EXTEND, ENGINE_NOT_OWNER},
        {OP_EXTEND, ENGINE_HOLD_EXPIRED},
        {OP_EXTEND, ENGINE_HOLD_EXTEND_LIMIT},
        {OP_RELEASE, ENGINE_OK},
        {OP_RELEASE, ENGINE_UNKNOWN_HOLD},
        {OP_RELEASE, ENGINE_HOLD_ENDED},
        {OP_RELEASE, ENGINE_NOT_OWNER},
        {OP_EXPIRE, ENGINE_OK},
        {OP_CONFIRM, ENGINE_OK},
        {OP_CONFIRM, ENGINE_BAD_PAYMENT},
        {OP_CONFIRM, ENGINE_BAD_IDEM_KEY},
        {OP_CONFIRM, ENGINE_IDEM_KEY_REUSED},
        {OP_CONFIRM, ENGINE_UNKNOWN_HOLD},
        {OP_CONFIRM, ENGINE_HOLD_ENDED},
        {OP_CONFIRM, ENGINE_NOT_OWNER},
        {OP_CONFIRM, ENGINE_HOLD_EXPIRED},
        {OP_CANCEL, ENGINE_OK},
        {OP_CANCEL, ENGINE_UNKNOWN_BOOKING},
        {OP_CANCEL, ENGINE_NOT_OWNER},
        {OP_CANCEL, ENGINE_BOOKING_CANCELLED},
        {OP_CANCEL, ENGINE_SHOW_STARTED},
        {OP_ST_CREATE, ENGINE_OK},
        {OP_ST_CREATE, ENGINE_EXISTS},
        {OP_ST_CREATE, ENGINE_UNKNOWN_LAYOUT},
        {OP_ST_CREATE, ENGINE_BAD_PRICES},
        {OP_ST_DELETE, ENGINE_OK},
        {OP_ST_DELETE, ENGINE_UNKNOWN_SHOWTIME},
        {OP_ST_DELETE, ENGINE_SHOWTIME_IN_USE},
        {OP_LAYOUT_CREATE, ENGINE_OK},
        {OP_LAYOUT_CREATE, ENGINE_EXISTS},
        {OP_LAYOUT_CREATE, ENGINE_BAD_LAYOUT},
        {OP_LAYOUT_CREATE, ENGINE_CAPACITY},
        {OP_LAYOUT_DELETE, ENGINE_OK},
        {OP_LAYOUT_DELETE, ENGINE_UNKNOWN_LAYOUT},
        {OP_LAYOUT_DELETE, ENGINE_LAYOUT_IN_USE},
    };
    for (size_t i = 0; i < sizeof need / sizeof need[0]; i++)
        CHECK(t, t->stats[need[i].kind][need[i].r] > 0,
              "coverage: %s never returned %s: the generator has rotted", op_names[need[i].kind],
              engine_result_name(need[i].r));
    CHECK(t, t->idem_replays > 0, "coverage: no idempotent replay");
    for (uint32_t i = 0; i <= t->p->cfg.refund_tier_count; i++)
        CHECK(t, t->tier_hits[i] > 0, "coverage: refund tier %u never paid", i);
}

static void report(harness *t, double secs)
{
    fprintf(stderr,
            "engine_model[%s]: %zu ops, %zu records, %.1f s; max live holds %u,"
            " %" PRIu64 " expired, %" PRIu64 " idempotent replays, refund tiers:",
            t->p->name, t->op, t->log_count, secs, t->max_live, t->expired_total, t->idem_replays);
    for (uint32_t i = 0; i <= t->p->cfg.refund_tier_count; i++)
        fprintf(stderr, " %" PRIu64, t->tier_hits[i]);
    fprintf(stderr,
            "\n  snapshots: %zu of the engine (%zu full), %zu items in all, %.1f MB, %.1f s;"
            " at most %zu items stored\n  restores: %zu (%zu swapped in for the engine),"
            " %zu snapshot + tail checks over %zu records, %zu rounds of refusals, %.1f s\n",
            t->snaps, t->snaps_full, t->snap_items, (double)t->snap_bytes / 1e6, t->snap_secs,
            t->store_items_max, t->restores, t->swaps, t->tails, t->tail_records, t->negatives,
            t->restore_secs);
    for (int k = 0; k < OP_KINDS; k++) {
        fprintf(stderr, "  %-16s", op_names[k]);
        for (int r = 0; r < ENGINE_RESULT_COUNT_; r++)
            if (t->stats[k][r])
                fprintf(stderr, " %s=%" PRIu64, engine_result_name((engine_result)r),
                        t->stats[k][r]);
        fprintf(stderr, "\n");
    }
}

/* The running harness, so that a failed assertion (which leaves run() by a
 * long jump) does not leave LeakSanitizer a pile of leaks to report. */
static harness *current;

static void harness_free(void)
{
    harness *t = current;
    current = NULL;
    if (!t)
        return;
    if (t->parked != NULL) {
        t->e = t->parked; /* t->e was a restored engine: t->scratch */
        t->parked = NULL;
    }
    engine_destroy(t->e);
    engine_destroy(t->f);
    engine_destroy(t->tail);
    if (t->scratch != t->e)
        engine_destroy(t->scratch);
    engine_snapshot_free(t->snap);
    free(t->tweak_val);
    store_free(&t->st_e);
    store_free(&t->st_f);
    store_free(&t->st_t);
    model_destroy(t->m);
    free(t->log);
    free(t->st);
    free(t->seatbuf);
    free(t->ids_e);
    free(t->ids_m);
    free(t);
}

static void run(const params *p)
{
    harness *t = calloc(1, sizeof *t);
    cr_assert(t != NULL, "out of memory");
    current = t;
    t->p = p;
    uint64_t seed = env_u64("USHER_MODEL_SEED", 0);
    if (!getenv("USHER_MODEL_SEED"))
        seed = default_seed();
    t->seed = seed ^ p->seed_tweak;
    t->trace = getenv("USHER_MODEL_TRACE") != NULL;
    rng_seed(&t->r, t->seed);
    rng_seed(&t->sr, t->seed ^ UINT64_C(0x536e617073686f74));
    t->next_st_id = FIRST_SHOWTIME;
    t->a.defect = -1;
    t->seatbuf_cap = 16;
    t->seatbuf = xrealloc(NULL, t->seatbuf_cap);
    cr_log_info("engine_model[%s]: %zu ops; reproduce with USHER_MODEL_SEED=%" PRIu64
                " USHER_MODEL_OPS=%zu engine_model_test --filter engine_model/%s",
                p->name, p->ops, seed, main_ops(), p->name);
    /* Criterion hides info logs unless --verbose: say it on stderr too. */
    fprintf(stderr,
            "engine_model[%s]: %zu ops; reproduce with USHER_MODEL_SEED=%" PRIu64
            " USHER_MODEL_OPS=%zu engine_model_test --filter engine_model/%s\n",
            p->name, p->ops, seed, main_ops(), p->name);

    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int rc = engine_create(&p->cfg, &t->e);
    cr_assert(rc == 0, "engine_create: %d", rc);
    rc = engine_create(&p->cfg, &t->f);
    cr_assert(rc == 0, "engine_create (follower): %d", rc);
    t->m = model_create(&p->cfg);
    cr_assert(t->m != NULL, "model_create");
    const engine_config *cfg = engine_config_get(t->e);
    CHECK(t,
          cfg->hold_ttl_ms == p->cfg.hold_ttl_ms &&
              cfg->hold_max_lifetime_ms == p->cfg.hold_max_lifetime_ms &&
              cfg->max_seats_per_hold == p->cfg.max_seats_per_hold &&
              cfg->holds_max == p->cfg.holds_max && cfg->bookings_max == p->cfg.bookings_max &&
              cfg->showtimes_max == p->cfg.showtimes_max &&
              cfg->layouts_max == p->cfg.layouts_max && cfg->id_prefix == p->cfg.id_prefix &&
              cfg->refund_tier_count == p->cfg.refund_tier_count,
          "engine_config_get differs from the configuration given");

    setup(t);
    full_compare(t, true);

    unsigned weight_sum = 0;
    for (int k = 0; k < OP_KINDS; k++)
        weight_sum += op_weights[k];

    for (t->op = 1; t->op <= p->ops; t->op++) {
        t->step = 0;
        memset(&t->a, 0, sizeof t->a);
        t->a.defect = -1;
        int kind;
        if (future_count(t) < p->future_min && model_showtime_count(t->m) < p->cfg.showtimes_max &&
            rng_pm(&t->r, 300)) {
            kind = OP_ST_CREATE;
        } else {
            unsigned x = (unsigned)rng_below(&t->r, weight_sum);
            for (kind = 0; x >= op_weights[kind]; kind++)
                x -= op_weights[kind];
            if (kind == OP_ST_CREATE && future_count(t) >= p->future_max)
                kind = OP_PLACE;
        }
        t->a.kind = kind;
        switch (kind) {
        case OP_PLACE:
            op_place(t);
            break;
        case OP_BEST:
            op_best(t);
            break;
        case OP_EXTEND:
            op_extend(t);
            break;
        case OP_RELEASE:
            op_release(t);
            break;
        case OP_EXPIRE:
            op_expire(t);
            break;
        case OP_CONFIRM:
            op_confirm(t);
            break;
        case OP_CANCEL:
            op_cancel(t);
            break;
        case OP_ST_CREATE:
            op_showtime_create(t);
            break;
        case OP_ST_DELETE:
            op_showtime_delete(t);
            break;
        case OP_LAYOUT_CREATE:
            op_layout_create(t);
            break;
        case OP_LAYOUT_DELETE:
            op_layout_delete(t);
            break;
        case OP_QUERY:
            op_query(t);
            break;
        default:
            op_teardown(t);
            break;
        }
        expect_clock(t);
        if (t->op % p->full_every == 0)
            full_compare(t, false);
        if (t->op == p->ops / 2)
            replay_check(t, "midpoint");
        if (t->op % p->snap_every == 0)
            snapshot_checkpoint(t, false);
    }
    t->op = p->ops;
    full_compare(t, true);
    replay_check(t, "final");
    snapshot_checkpoint(t, true);
    double secs = elapsed_s(&t0);
    report(t, secs);
    if (p->check_coverage && p->ops >= 200000)
        check_coverage(t);

    harness_free();
}

Test(engine_model, random_ops, .fini = harness_free)
{
    params p = {
        .name = "random_ops",
        .ops = main_ops(),
        .big = true,
        .full_every = 1000,
        .big_full_every = 5000,
        .bookings_every = 10000,
        .future_min = 3,
        .future_max = 6,
        .start_min_ms = 15 * 60000,
        .start_max_ms = 8 * 3600000,
        .live_half = 60,
        .check_coverage = true,
        .seed_tweak = 0,
        .snap_every = 1000,
        .restore_every = 20000,
        .swap_every = 3,
        .negative_every = 25,
    };
    engine_config_default(&p.cfg);
    p.cfg.hold_ttl_ms = 300000;
    p.cfg.hold_max_lifetime_ms = 900000;
    p.cfg.max_seats_per_hold = 10;
    p.cfg.holds_max = 72;
    p.cfg.bookings_max = 1u << 18;
    p.cfg.showtimes_max = 1024;
    p.cfg.layouts_max = 8;
    p.cfg.id_prefix = 0x5a5a;
    p.cfg.refund_tier_count = 3;
    p.cfg.refund_tiers[0] = (engine_refund_tier){6 * 3600000, 100};
    p.cfg.refund_tiers[1] = (engine_refund_tier){3600000, 33};
    p.cfg.refund_tiers[2] = (engine_refund_tier){600000, 10};
    run(&p);
}

/*
 * Tiny pools: every pool runs full (holds, bookings, showtimes, layouts), the
 * id prefix is all ones, and holds live a minute, so CAPACITY and the
 * expiry paths are exercised hard.
 */
Test(engine_model, small_pools, .fini = harness_free)
{
    size_t ops = main_ops() / 20;
    params p = {
        .name = "small_pools",
        .ops = ops < 1000 ? 1000 : ops,
        .big = false,
        .full_every = 500,
        .big_full_every = 500,
        .bookings_every = 500,
        .future_min = 2,
        .future_max = 3,
        .start_min_ms = INT64_C(20) * 3600000,
        .start_max_ms = INT64_C(40) * 3600000,
        .live_half = 3,
        .check_coverage = false,
        .seed_tweak = UINT64_C(0x5eed5eed5eed5eed),
        .snap_every = 100,
        .restore_every = 500,
        .swap_every = 5,
        .negative_every = 20,
    };
    engine_config_default(&p.cfg);
    p.cfg.hold_ttl_ms = 60000;
    p.cfg.hold_max_lifetime_ms = 150000;
    p.cfg.max_seats_per_hold = 4;
    p.cfg.holds_max = 6;
    p.cfg.bookings_max = 250;
    p.cfg.showtimes_max = 4;
    p.cfg.layouts_max = 5;
    p.cfg.id_prefix = 0xffff;
    p.cfg.refund_tier_count = 2;
    p.cfg.refund_tiers[0] = (engine_refund_tier){3600000, 90};
    p.cfg.refund_tiers[1] = (engine_refund_tier){60000, 45};
    run(&p);
}
