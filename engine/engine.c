/*
 * engine.c - showtimes, holds, bookings: the seat state machine.
 *
 * Memory: every pool (layouts, showtimes, holds, bookings) and every index is
 * allocated at engine_create() with the configured capacity, so the seat path
 * (hold, best, extend, release, expire, confirm, cancel) never allocates.
 * Only layout and showtime creation allocate their own arrays.
 *
 * Seat state of a showtime is two bitmaps (`held`, `sold`) plus the layout's
 * immutable `blocked` bitmap; a seat is free when it is in none. Per-category
 * counters and per-row free counts are kept in step with the bitmaps and
 * engine_check() recomputes them from scratch.
 */
#include "engine_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

/* ---- Configuration --------------------------------------------------------- */

void engine_config_default(engine_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->hold_ttl_ms = 300 * 1000;
    cfg->hold_max_lifetime_ms = 900 * 1000;
    cfg->max_seats_per_hold = 10;
    cfg->holds_max = 65536;
    cfg->bookings_max = 1u << 20;
    cfg->showtimes_max = 16384;
    cfg->layouts_max = 1024;
    cfg->id_prefix = 0;
    cfg->refund_tier_count = 2;
    cfg->refund_tiers[0] =
        (engine_refund_tier){.min_before_start_ms = 24 * 3600 * 1000LL, .percent = 100};
    cfg->refund_tiers[1] =
        (engine_refund_tier){.min_before_start_ms = 2 * 3600 * 1000LL, .percent = 50};
    cfg->waitlist_max = 4096;
    cfg->offer_ttl_ms = 600 * 1000;
    cfg->queue_slots_max = 1000000;
    cfg->queue_admit_window_ms = 600 * 1000;
}

/* On-sale settings left 0 take their defaults. */
static void config_fill(engine_config *c)
{
    engine_config d;
    engine_config_default(&d);
    if (c->waitlist_max == 0)
        c->waitlist_max = d.waitlist_max;
    if (c->offer_ttl_ms == 0)
        c->offer_ttl_ms = d.offer_ttl_ms;
    if (c->queue_slots_max == 0)
        c->queue_slots_max = d.queue_slots_max;
    if (c->queue_admit_window_ms == 0)
        c->queue_admit_window_ms = d.queue_admit_window_ms;
}

static bool config_valid(const engine_config *c)
{
    /* Pools are bounded so that every index fits in 32 bits with room. */
    const uint32_t pool_max = 1u << 26;
    if (c->hold_ttl_ms == 0 || c->hold_ttl_ms > (uint64_t)INT64_MAX / 4)
        return false;
    if (c->hold_max_lifetime_ms < c->hold_ttl_ms ||
        c->hold_max_lifetime_ms > (uint64_t)INT64_MAX / 4)
        return false;
    if (c->max_seats_per_hold < 1 || c->max_seats_per_hold > ENGINE_HOLD_SEATS_MAX)
        return false;
    if (c->holds_max == 0 || c->holds_max > pool_max || c->bookings_max == 0 ||
        c->bookings_max > pool_max || c->showtimes_max == 0 || c->showtimes_max > pool_max ||
        c->layouts_max == 0 || c->layouts_max > pool_max)
        return false;
    if (c->refund_tier_count > ENGINE_REFUND_TIERS_MAX)
        return false;
    if (c->waitlist_max > pool_max || c->queue_slots_max > (1u << 30) ||
        c->offer_ttl_ms > (uint64_t)INT64_MAX / 4 ||
        c->queue_admit_window_ms > (uint64_t)INT64_MAX / 4)
        return false;
    for (uint32_t i = 0; i < c->refund_tier_count; i++) {
        if (c->refund_tiers[i].percent > 100 || c->refund_tiers[i].min_before_start_ms < 0)
            return false;
        if (i > 0 &&
            c->refund_tiers[i].min_before_start_ms >= c->refund_tiers[i - 1].min_before_start_ms)
            return false;
    }
    return true;
}

uint64_t engine_refund_compute(const engine_config *cfg, uint64_t amount, int64_t before_start_ms)
{
    for (uint32_t i = 0; i < cfg->refund_tier_count; i++) {
        if (before_start_ms >= cfg->refund_tiers[i].min_before_start_ms)
            return amount / 100 * cfg->refund_tiers[i].percent +
                   amount % 100 * cfg->refund_tiers[i].percent / 100;
    }
    return 0;
}

/* ---- Lifecycle ------------------------------------------------------------- */

int engine_create(const engine_config *cfg, engine **out)
{
    if (cfg == NULL || out == NULL || !config_valid(cfg))
        return ENGINE_EINVAL;
    engine *e = calloc(1, sizeof(*e));
    if (e == NULL)
        return ENGINE_ENOMEM;
    e->cfg = *cfg;
    config_fill(&e->cfg);
    e->hold_seq = 1;

    uint64_t idem_slots = 16;
    while (idem_slots < (uint64_t)cfg->bookings_max * 2)
        idem_slots <<= 1;
    e->layouts = calloc(cfg->layouts_max, sizeof(*e->layouts));
    e->layout_used = calloc(cfg->layouts_max, sizeof(*e->layout_used));
    e->showtimes = calloc(cfg->showtimes_max, sizeof(*e->showtimes));
    e->holds = calloc(cfg->holds_max, sizeof(*e->holds));
    e->hold_free = calloc(cfg->holds_max, sizeof(*e->hold_free));
    e->heap = calloc(cfg->holds_max, sizeof(*e->heap));
    e->bookings = calloc(cfg->bookings_max, sizeof(*e->bookings));
    e->idem_slots = calloc(idem_slots, sizeof(*e->idem_slots));
    e->idem_mask = (uint32_t)(idem_slots - 1);
    e->booking_dirty = calloc(ENGINE_BITS_WORDS(cfg->bookings_max), sizeof(uint64_t));
    e->layout_dirty = calloc(cfg->layouts_max, sizeof(bool));
    e->offer_pending = calloc(cfg->showtimes_max, sizeof(uint32_t));
    e->queued = calloc(cfg->showtimes_max, sizeof(uint32_t));
    int rc = 0;
    if (e->layouts == NULL || e->layout_used == NULL || e->showtimes == NULL || e->holds == NULL ||
        e->hold_free == NULL || e->heap == NULL || e->bookings == NULL || e->idem_slots == NULL ||
        e->booking_dirty == NULL || e->layout_dirty == NULL || e->offer_pending == NULL ||
        e->queued == NULL)
        rc = ENGINE_ENOMEM;
    if (rc == 0)
        rc = engine__map_init(&e->layout_ids, cfg->layouts_max);
    if (rc == 0)
        rc = engine__map_init(&e->showtime_ids, cfg->showtimes_max);
    if (rc == 0)
        rc = engine__map_init(&e->hold_ids, cfg->holds_max);
    if (rc == 0)
        rc = engine__map_init(&e->user_holds, cfg->holds_max);
    if (rc == 0)
        rc = engine__map_init(&e->user_bookings, cfg->bookings_max);
    if (rc != 0) {
        engine_destroy(e);
        return rc;
    }
    /* Free hold slots pop in ascending order: deterministic slot reuse. */
    for (uint32_t i = 0; i < cfg->holds_max; i++)
        e->hold_free[i] = cfg->holds_max - 1 - i;
    e->hold_free_n = cfg->holds_max;
    *out = e;
    return 0;
}

void engine_destroy(engine *e)
{
    if (e == NULL)
        return;
    if (e->layouts != NULL && e->layout_used != NULL) {
        for (uint32_t i = 0; i < e->cfg.layouts_max; i++) {
            if (e->layout_used[i])
                engine__layout_free(&e->layouts[i]);
        }
    }
    if (e->showtimes != NULL) {
        for (uint32_t i = 0; i < e->cfg.showtimes_max; i++) {
            free(e->showtimes[i].held);
            free(e->showtimes[i].row_free);
            free(e->showtimes[i].restore_held);
            if (e->showtimes[i].used && e->offer_pending != NULL && e->queued != NULL)
                engine__onsale_free(e, &e->showtimes[i]);
        }
    }
    free(e->offer_pending);
    free(e->queued);
    free(e->layouts);
    free(e->layout_used);
    free(e->showtimes);
    free(e->holds);
    free(e->hold_free);
    free(e->heap);
    free(e->bookings);
    free(e->idem_slots);
    free(e->booking_dirty);
    free(e->layout_dirty);
    engine__map_free(&e->layout_ids);
    engine__map_free(&e->showtime_ids);
    engine__map_free(&e->hold_ids);
    engine__map_free(&e->user_holds);
    engine__map_free(&e->user_bookings);
    free(e);
}

const engine_config *engine_config_get(const engine *e)
{
    return &e->cfg;
}

int64_t engine_now_ms(const engine *e)
{
    return e->now_ms;
}

/* ---- Lookups --------------------------------------------------------------- */

static const engine__layout *layout_find(const engine *e, uint64_t id)
{
    uint32_t slot = engine__map_get(&e->layout_ids, id);
    return slot == ENGINE_MAP_NONE ? NULL : &e->layouts[slot];
}

showtime *engine__showtime_find(const engine *e, uint64_t id)
{
    uint32_t slot = engine__map_get(&e->showtime_ids, id);
    return slot == ENGINE_MAP_NONE ? NULL : &e->showtimes[slot];
}

const engine__layout *engine__showtime_layout(const engine *e, const showtime *st)
{
    return &e->layouts[st->layout_slot];
}

uint64_t engine__id_make(const engine *e, uint64_t seq)
{
    return ((uint64_t)e->cfg.id_prefix << ID_SEQ_BITS) | seq;
}

/* Finds a live hold; otherwise says whether the id was ever issued. */
static engine_result hold_find(const engine *e, uint64_t id, hold **out)
{
    uint32_t slot = engine__map_get(&e->hold_ids, id);
    if (slot != ENGINE_MAP_NONE) {
        *out = &e->holds[slot];
        return ENGINE_OK;
    }
    uint64_t seq = id & ID_SEQ_MASK;
    if ((id >> ID_SEQ_BITS) == e->cfg.id_prefix && seq >= 1 && seq < e->hold_seq)
        return ENGINE_HOLD_ENDED;
    return ENGINE_UNKNOWN_HOLD;
}

static booking *booking_find(const engine *e, uint64_t id)
{
    uint64_t seq = id & ID_SEQ_MASK;
    if ((id >> ID_SEQ_BITS) != e->cfg.id_prefix || seq < 1 || seq > e->booking_n)
        return NULL;
    return &e->bookings[seq - 1];
}

/* ---- Seat transitions --------------------------------------------------------
 * Each moves seats between states and keeps counters and row counts in step. */

/* Tells the watch function of a watched showtime's transition. */
static void seats_told(const engine *e, const showtime *st, const uint32_t *seats, uint32_t n,
                       engine_seat_state to)
{
    if (st->watched && e->watch != NULL && n > 0)
        e->watch(e->watch_arg, st->id, seats, n, to);
}

static void seats_hold(const engine *e, showtime *st, const uint32_t *seats, uint32_t n)
{
    const engine__layout *l = engine__showtime_layout(e, st);
    for (uint32_t i = 0; i < n; i++) {
        uint32_t s = seats[i];
        ENGINE_ASSERT(!engine__bit_get(st->held, s) && !engine__bit_get(st->sold, s) &&
                      !engine__bit_get(l->blocked, s));
        engine__bit_set(st->held, s);
        st->dirty = true;
        engine_category_counts *c = &st->counts[l->seat_cat[s]];
        c->free--;
        c->held++;
        st->row_free[l->seat_row[s]]--;
    }
    seats_told(e, st, seats, n, ENGINE_SEAT_HELD);
}

static void seats_unhold(const engine *e, showtime *st, const uint32_t *seats, uint32_t n)
{
    const engine__layout *l = engine__showtime_layout(e, st);
    for (uint32_t i = 0; i < n; i++) {
        uint32_t s = seats[i];
        ENGINE_ASSERT(engine__bit_get(st->held, s));
        engine__bit_clear(st->held, s);
        st->dirty = true;
        engine_category_counts *c = &st->counts[l->seat_cat[s]];
        c->held--;
        c->free++;
        st->row_free[l->seat_row[s]]++;
        st->row_hint_cls[l->seat_row[s]] = HINT_NONE;
    }
    seats_told(e, st, seats, n, ENGINE_SEAT_FREE);
}

static void seats_sell(const engine *e, showtime *st, const uint32_t *seats, uint32_t n)
{
    const engine__layout *l = engine__showtime_layout(e, st);
    for (uint32_t i = 0; i < n; i++) {
        uint32_t s = seats[i];
        ENGINE_ASSERT(engine__bit_get(st->held, s) && !engine__bit_get(st->sold, s));
        engine__bit_clear(st->held, s);
        engine__bit_set(st->sold, s);
        st->dirty = true;
        engine_category_counts *c = &st->counts[l->seat_cat[s]];
        c->held--;
        c->sold++;
    }
    seats_told(e, st, seats, n, ENGINE_SEAT_SOLD);
}

static void seats_unsell(const engine *e, showtime *st, const uint32_t *seats, uint32_t n)
{
    const engine__layout *l = engine__showtime_layout(e, st);
    for (uint32_t i = 0; i < n; i++) {
        uint32_t s = seats[i];
        ENGINE_ASSERT(engine__bit_get(st->sold, s));
        engine__bit_clear(st->sold, s);
        st->dirty = true;
        engine_category_counts *c = &st->counts[l->seat_cat[s]];
        c->sold--;
        c->free++;
        st->row_free[l->seat_row[s]]++;
        st->row_hint_cls[l->seat_row[s]] = HINT_NONE;
    }
    seats_told(e, st, seats, n, ENGINE_SEAT_FREE);
}

/* ---- Expiry heap ------------------------------------------------------------ */

static bool heap_less(const engine *e, uint32_t a, uint32_t b)
{
    const hold *x = &e->holds[a], *y = &e->holds[b];
    return x->expires_ms != y->expires_ms ? x->expires_ms < y->expires_ms : x->id < y->id;
}

static void heap_place(engine *e, uint32_t pos, uint32_t slot)
{
    e->heap[pos] = slot;
    e->holds[slot].heap_pos = pos;
}

static void heap_up(engine *e, uint32_t pos)
{
    uint32_t slot = e->heap[pos];
    while (pos > 0) {
        uint32_t parent = (pos - 1) / 2;
        if (!heap_less(e, slot, e->heap[parent]))
            break;
        heap_place(e, pos, e->heap[parent]);
        pos = parent;
    }
    heap_place(e, pos, slot);
}

static void heap_down(engine *e, uint32_t pos)
{
    uint32_t slot = e->heap[pos];
    for (;;) {
        uint32_t child = 2 * pos + 1;
        if (child >= e->heap_n)
            break;
        if (child + 1 < e->heap_n && heap_less(e, e->heap[child + 1], e->heap[child]))
            child++;
        if (!heap_less(e, e->heap[child], slot))
            break;
        heap_place(e, pos, e->heap[child]);
        pos = child;
    }
    heap_place(e, pos, slot);
}

static void heap_remove(engine *e, uint32_t pos)
{
    ENGINE_ASSERT(pos < e->heap_n);
    uint32_t last = e->heap[--e->heap_n];
    if (pos == e->heap_n)
        return;
    heap_place(e, pos, last);
    heap_up(e, pos);
    heap_down(e, e->holds[last].heap_pos);
}

/* ---- Hold lifecycle ----------------------------------------------------------- */

uint32_t engine__hold_insert(engine *e, int64_t now_ms, showtime *st, uint64_t hold_id,
                             uint64_t user_id, int64_t expires_ms, uint64_t amount,
                             const uint32_t *seats, uint32_t n)
{
    ENGINE_ASSERT(e->hold_free_n > 0 && n >= 1 && n <= ENGINE_HOLD_SEATS_MAX);
    /* 2^48 holds per shard is centuries of on-sales; wrapping would reuse ids. */
    ENGINE_ASSERT((hold_id & ID_SEQ_MASK) < ID_SEQ_MASK);
    uint32_t slot = e->hold_free[--e->hold_free_n];
    hold *h = &e->holds[slot];
    h->id = hold_id;
    h->showtime_id = st->id;
    h->user_id = user_id;
    h->created_ms = now_ms;
    h->expires_ms = expires_ms;
    h->amount = amount;
    h->offer = false;
    h->showtime_slot = (uint32_t)(st - e->showtimes);
    h->seat_count = n;
    memcpy(h->seats, seats, n * sizeof(*seats));
    seats_hold(e, st, seats, n);
    st->live_holds++;
    engine__map_put(&e->hold_ids, hold_id, slot);

    /* Append to the user's circular list: ids only grow, so it stays sorted. */
    uint32_t head = engine__map_get(&e->user_holds, user_id);
    if (head == ENGINE_MAP_NONE) {
        h->user_prev = h->user_next = slot;
        engine__map_put(&e->user_holds, user_id, slot);
    } else {
        uint32_t tail = e->holds[head].user_prev;
        h->user_prev = tail;
        h->user_next = head;
        e->holds[tail].user_next = slot;
        e->holds[head].user_prev = slot;
    }

    heap_place(e, e->heap_n++, slot);
    heap_up(e, e->heap_n - 1);
    e->hold_seq = (hold_id & ID_SEQ_MASK) + 1;
    e->now_ms = now_ms;
    return slot;
}

/* Removes a live hold from every index. The caller moves its seats. */
static void hold_unlink(engine *e, hold *h)
{
    uint32_t slot = (uint32_t)(h - e->holds);
    showtime *st = &e->showtimes[h->showtime_slot];
    ENGINE_ASSERT(st->used && st->live_holds > 0);
    st->live_holds--;
    heap_remove(e, h->heap_pos);
    ENGINE_ASSERT(engine__map_del(&e->hold_ids, h->id));
    if (h->user_next == slot) {
        ENGINE_ASSERT(engine__map_del(&e->user_holds, h->user_id));
    } else {
        e->holds[h->user_prev].user_next = h->user_next;
        e->holds[h->user_next].user_prev = h->user_prev;
        uint32_t head = engine__map_get(&e->user_holds, h->user_id);
        if (head == slot) {
            ENGINE_ASSERT(engine__map_del(&e->user_holds, h->user_id));
            engine__map_put(&e->user_holds, h->user_id, h->user_next);
        }
    }
    e->hold_free[e->hold_free_n++] = slot;
}

static void hold_end(engine *e, hold *h)
{
    showtime *st = &e->showtimes[h->showtime_slot];
    seats_unhold(e, st, h->seats, h->seat_count);
    hold_unlink(e, h);
    engine__onsale_seats_freed(e, st);
}

static void hold_info_fill(const hold *h, engine_hold_info *out)
{
    memset(out, 0, sizeof(*out));
    out->id = h->id;
    out->showtime_id = h->showtime_id;
    out->user_id = h->user_id;
    out->created_ms = h->created_ms;
    out->expires_ms = h->expires_ms;
    out->amount = h->amount;
    out->offer = h->offer;
    out->seat_count = h->seat_count;
    memcpy(out->seats, h->seats, h->seat_count * sizeof(h->seats[0]));
}

bool engine__holds_full(const engine *e)
{
    return e->heap_n >= e->cfg.holds_max ||
           (uint64_t)e->heap_n + e->booking_n >= e->cfg.bookings_max;
}

static void record_hold_place(engine_record *rec, int64_t now_ms, const hold *h)
{
    memset(rec, 0, sizeof(*rec));
    rec->type = ENGINE_REC_HOLD_PLACE;
    rec->time_ms = now_ms;
    rec->u.hold_place.hold_id = h->id;
    rec->u.hold_place.showtime_id = h->showtime_id;
    rec->u.hold_place.user_id = h->user_id;
    rec->u.hold_place.expires_ms = h->expires_ms;
    rec->u.hold_place.amount = h->amount;
    rec->u.hold_place.seat_count = h->seat_count;
    memcpy(rec->u.hold_place.seats, h->seats, h->seat_count * sizeof(h->seats[0]));
}

uint64_t engine__seats_amount(const engine *e, const showtime *st, const uint32_t *seats,
                              uint32_t n)
{
    const engine__layout *l = engine__showtime_layout(e, st);
    uint64_t amount = 0;
    for (uint32_t i = 0; i < n; i++)
        amount += st->prices[l->seat_cat[seats[i]]];
    return amount;
}

/* Checks shared by hold_place, hold_best and waitlist_join, in the documented order. */
engine_result engine__hold_precheck(const engine *e, int64_t now_ms, uint64_t showtime_id,
                                    uint32_t count, showtime **st_out)
{
    if (now_ms < e->now_ms)
        return ENGINE_TIME_BACKWARDS;
    showtime *st = engine__showtime_find(e, showtime_id);
    if (st == NULL)
        return ENGINE_UNKNOWN_SHOWTIME;
    if (now_ms >= st->start_ms)
        return ENGINE_SHOW_STARTED;
    if (count == 0 || count > e->cfg.max_seats_per_hold)
        return ENGINE_BAD_COUNT;
    *st_out = st;
    return ENGINE_OK;
}

int64_t engine__add_ms(int64_t t, uint64_t d)
{
    /* Configured durations are capped at INT64_MAX / 4 and times are
     * ms since the epoch; saturate anyway rather than wrap. */
    return t > INT64_MAX - (int64_t)d ? INT64_MAX : t + (int64_t)d;
}

engine_result engine_hold_place(engine *e, int64_t now_ms, uint64_t showtime_id, uint64_t user_id,
                                const uint32_t *seats, uint32_t seat_count, uint32_t *conflicts,
                                uint32_t *conflict_count, engine_record *rec)
{
    if (conflict_count != NULL)
        *conflict_count = 0;
    showtime *st = NULL;
    engine_result r = engine__hold_precheck(e, now_ms, showtime_id, seat_count, &st);
    if (r != ENGINE_OK)
        return r;
    ENGINE_ASSERT(seats != NULL && rec != NULL);
    const engine__layout *l = engine__showtime_layout(e, st);
    for (uint32_t i = 0; i < seat_count; i++) {
        if (seats[i] >= l->seat_count)
            return ENGINE_UNKNOWN_SEAT;
    }
    for (uint32_t i = 1; i < seat_count; i++) {
        for (uint32_t j = 0; j < i; j++) {
            if (seats[i] == seats[j])
                return ENGINE_DUPLICATE_SEAT;
        }
    }
    uint32_t nblocked = 0, ntaken = 0;
    for (uint32_t i = 0; i < seat_count; i++) {
        if (engine__bit_get(l->blocked, seats[i]))
            nblocked++;
        else if (engine__bit_get(st->held, seats[i]) || engine__bit_get(st->sold, seats[i]))
            ntaken++;
    }
    if (nblocked > 0 || ntaken > 0) {
        /* Report the seats of the winning reason, in request order. */
        uint32_t k = 0;
        for (uint32_t i = 0; i < seat_count; i++) {
            bool blocked = engine__bit_get(l->blocked, seats[i]);
            bool taken = !blocked && (engine__bit_get(st->held, seats[i]) ||
                                      engine__bit_get(st->sold, seats[i]));
            if (nblocked > 0 ? blocked : taken) {
                if (conflicts != NULL)
                    conflicts[k] = seats[i];
                k++;
            }
        }
        if (conflict_count != NULL)
            *conflict_count = k;
        return nblocked > 0 ? ENGINE_SEAT_BLOCKED : ENGINE_SEAT_TAKEN;
    }
    if (engine__holds_full(e))
        return ENGINE_CAPACITY;

    uint32_t slot =
        engine__hold_insert(e, now_ms, st, engine__id_make(e, e->hold_seq), user_id,
                            engine__add_ms(now_ms, e->cfg.hold_ttl_ms),
                            engine__seats_amount(e, st, seats, seat_count), seats, seat_count);
    record_hold_place(rec, now_ms, &e->holds[slot]);
    return ENGINE_OK;
}

/* ---- Best available ------------------------------------------------------------ */

typedef struct best_pick {
    bool found;
    uint32_t orphan; /* 1 when the block strands a single seat */
    uint32_t row_rank;
    uint32_t dist; /* |block centre - layout centre|, doubled */
    uint32_t first;
} best_pick;

static bool pick_better(const best_pick *a, const best_pick *b)
{
    if (!b->found)
        return true;
    if (a->orphan != b->orphan)
        return a->orphan < b->orphan;
    if (a->row_rank != b->row_rank)
        return a->row_rank < b->row_rank;
    if (a->dist != b->dist)
        return a->dist < b->dist;
    return a->first < b->first;
}

/* Evaluates the candidate blocks of one run [s, e] (seat indices, consecutive
 * columns) for `n` seats, folding the best into *best. Only a handful of
 * starts can be optimal: the run's ends, the starts that strand one seat, and
 * the starts nearest the centre on either side (|distance| is convex in the
 * start, so the best allowed start is one of those). */
static void run_consider(const engine__layout *l, uint32_t row_rank, uint32_t s, uint32_t e,
                         uint32_t n, best_pick *best)
{
    const int64_t a = s, b = (int64_t)e - n + 1;
    /* Centre distance of start x: |2*(x - s) + k|, k = 2*col[s] + n - 1 - centre2. */
    const int64_t k = 2 * (int64_t)l->seats[s].col + (int64_t)n - 1 - l->centre2;
    /* Real optimum x = s - k/2: take floor and ceil. */
    int64_t lo = s + ((-k) >= 0 ? (-k) / 2 : -((k + 1) / 2));
    int64_t cand[8] = {a, b, a + 1, b - 1, lo - 1, lo, lo + 1, lo + 2};
    for (int i = 0; i < 8; i++) {
        int64_t x = cand[i];
        if (x < a || x > b)
            continue;
        int64_t d = 2 * (x - s) + k;
        best_pick p = {
            .found = true,
            .orphan = (x - a == 1 || b - x == 1) ? 1u : 0u,
            .row_rank = row_rank,
            .dist = (uint32_t)(d < 0 ? -d : d),
            .first = (uint32_t)x,
        };
        if (pick_better(&p, best))
            *best = p;
    }
}

/* Eligible seats of word w: right category, free, sellable, not accessible
 * unless allowed. */
static inline uint64_t eligible_word(const engine__layout *l, const showtime *st,
                                     const uint64_t *cat, bool allow_access, uint32_t w)
{
    uint64_t x = cat[w] & ~(st->held[w] | st->sold[w] | l->blocked[w]);
    if (!allow_access)
        x &= ~l->access[w];
    return x;
}

/* Scans row `r` for runs of eligible seats of length >= n; returns the
 * longest eligible run in the row. */
static uint32_t row_scan(const engine__layout *l, const showtime *st, const uint64_t *cat,
                         bool allow_access, uint32_t r, uint32_t row_rank, uint32_t n,
                         best_pick *best)
{
    const uint32_t first = l->row_first[r], end = l->row_first[r + 1]; /* [first, end) */
    const uint32_t w0 = first >> 6, w1 = (end - 1) >> 6;
    uint64_t prev_elig = 0; /* eligibility of the seat before the current word */
    uint64_t prev_brk = 1;  /* the seat before the row counts as a break */
    uint32_t run_start = UINT32_MAX, longest = 0;
    for (uint32_t w = w0; w <= w1; w++) {
        uint64_t in_row = ~(uint64_t)0;
        if (w == w0)
            in_row &= ~(uint64_t)0 << (first & 63);
        if (w == w1 && (end & 63) != 0)
            in_row &= ~(uint64_t)0 >> (64 - (end & 63));
        uint64_t el = eligible_word(l, st, cat, allow_access, w) & in_row;
        uint64_t brk = l->brk[w];
        /* A run starts at i when i is eligible and i-1 is not, or i-1 ends an
         * adjacency group; it ends at i when i is eligible and i is a break or
         * i+1 is not eligible. */
        uint64_t el_prev = (el << 1) | prev_elig;
        uint64_t brk_prev = (brk << 1) | prev_brk;
        uint64_t starts = el & (~el_prev | brk_prev);
        uint64_t el_next = el >> 1;
        if (w < w1)
            el_next |= (eligible_word(l, st, cat, allow_access, w + 1) & 1) << 63;
        uint64_t ends = el & (brk | ~el_next);
        while (starts | ends) {
            uint32_t si = starts ? (uint32_t)__builtin_ctzll(starts) : 64;
            uint32_t ei = ends ? (uint32_t)__builtin_ctzll(ends) : 64;
            if (run_start == UINT32_MAX) {
                ENGINE_ASSERT(si <= ei && si < 64);
                run_start = w * 64 + si;
                starts &= starts - 1;
                continue;
            }
            ENGINE_ASSERT(ei < 64);
            uint32_t run_end = w * 64 + ei;
            ends &= ends - 1;
            uint32_t len = run_end - run_start + 1;
            if (len > longest)
                longest = len;
            if (len >= n)
                run_consider(l, row_rank, run_start, run_end, n, best);
            run_start = UINT32_MAX;
        }
        prev_elig = el >> 63;
        prev_brk = brk >> 63;
    }
    ENGINE_ASSERT(run_start == UINT32_MAX);
    return longest;
}

bool engine__best_find(engine *e, showtime *st, uint32_t count, uint32_t category,
                       bool allow_access, uint32_t *first)
{
    (void)e;
    const engine__layout *l = engine__showtime_layout(e, st);
    best_pick best = {.found = false};
    if (st->counts[category].free >= count) {
        const uint64_t *cat = l->cat_mask + (size_t)category * l->words;
        uint8_t cls = (uint8_t)(category * 2 + allow_access);
        for (uint32_t i = 0; i < l->row_count; i++) {
            uint32_t row = l->row_order[i];
            if (st->row_free[row] < count || !(l->row_cats[row] & (1u << category)) ||
                (st->row_hint_cls[row] == cls && st->row_hint[row] < count))
                continue;
            st->row_hint[row] = row_scan(l, st, cat, allow_access, row, i, count, &best);
            st->row_hint_cls[row] = cls;
            /* Rows come in rank order and ranks are unique: the first row
             * with a block that strands nobody cannot be beaten. */
            if (best.found && best.orphan == 0)
                break;
        }
    }
    *first = best.first;
    return best.found;
}

engine_result engine_hold_best(engine *e, int64_t now_ms, uint64_t showtime_id, uint64_t user_id,
                               uint32_t count, uint32_t category, uint32_t options,
                               engine_record *rec)
{
    showtime *st = NULL;
    engine_result r = engine__hold_precheck(e, now_ms, showtime_id, count, &st);
    if (r != ENGINE_OK)
        return r;
    const engine__layout *l = engine__showtime_layout(e, st);
    if (category >= l->category_count)
        return ENGINE_UNKNOWN_CATEGORY;
    ENGINE_ASSERT(rec != NULL);

    uint32_t first = 0;
    if (!engine__best_find(e, st, count, category, (options & ENGINE_BEST_ALLOW_ACCESSIBLE) != 0,
                           &first))
        return ENGINE_NOT_AVAILABLE;
    if (engine__holds_full(e))
        return ENGINE_CAPACITY;

    uint32_t seats[ENGINE_HOLD_SEATS_MAX];
    for (uint32_t i = 0; i < count; i++)
        seats[i] = first + i;
    uint32_t slot = engine__hold_insert(e, now_ms, st, engine__id_make(e, e->hold_seq), user_id,
                                        engine__add_ms(now_ms, e->cfg.hold_ttl_ms),
                                        engine__seats_amount(e, st, seats, count), seats, count);
    record_hold_place(rec, now_ms, &e->holds[slot]);
    return ENGINE_OK;
}

/* Finds a live hold owned by `user_id`, in the documented refusal order. */
static engine_result hold_owned(engine *e, int64_t now_ms, uint64_t hold_id, uint64_t user_id,
                                hold **out)
{
    if (now_ms < e->now_ms)
        return ENGINE_TIME_BACKWARDS;
    engine_result r = hold_find(e, hold_id, out);
    if (r != ENGINE_OK)
        return r;
    if ((*out)->user_id != user_id)
        return ENGINE_NOT_OWNER;
    return ENGINE_OK;
}

static int64_t extend_target(const engine *e, int64_t now_ms, const hold *h)
{
    int64_t by_ttl = engine__add_ms(now_ms, e->cfg.hold_ttl_ms);
    int64_t cap = engine__add_ms(h->created_ms, e->cfg.hold_max_lifetime_ms);
    return by_ttl < cap ? by_ttl : cap;
}

static void hold_set_expiry(engine *e, hold *h, int64_t now_ms, int64_t expires_ms)
{
    ENGINE_ASSERT(expires_ms > h->expires_ms);
    h->expires_ms = expires_ms;
    heap_down(e, h->heap_pos); /* later expiry: it can only sink */
    e->now_ms = now_ms;
}

engine_result engine_hold_extend(engine *e, int64_t now_ms, uint64_t hold_id, uint64_t user_id,
                                 engine_record *rec)
{
    hold *h = NULL;
    engine_result r = hold_owned(e, now_ms, hold_id, user_id, &h);
    if (r != ENGINE_OK)
        return r;
    if (now_ms >= h->expires_ms)
        return ENGINE_HOLD_EXPIRED;
    int64_t target = extend_target(e, now_ms, h);
    if (target <= h->expires_ms)
        return ENGINE_HOLD_EXTEND_LIMIT;
    hold_set_expiry(e, h, now_ms, target);
    memset(rec, 0, sizeof(*rec));
    rec->type = ENGINE_REC_HOLD_EXTEND;
    rec->time_ms = now_ms;
    rec->u.hold_extend.hold_id = hold_id;
    rec->u.hold_extend.expires_ms = target;
    return ENGINE_OK;
}

static void record_hold_end(engine_record *rec, engine_record_type type, int64_t now_ms,
                            uint64_t hold_id)
{
    memset(rec, 0, sizeof(*rec));
    rec->type = type;
    rec->time_ms = now_ms;
    rec->u.hold_end.hold_id = hold_id;
}

engine_result engine_hold_release(engine *e, int64_t now_ms, uint64_t hold_id, uint64_t user_id,
                                  engine_record *rec)
{
    hold *h = NULL;
    engine_result r = hold_owned(e, now_ms, hold_id, user_id, &h);
    if (r != ENGINE_OK)
        return r;
    hold_end(e, h);
    e->now_ms = now_ms;
    record_hold_end(rec, ENGINE_REC_HOLD_RELEASE, now_ms, hold_id);
    return ENGINE_OK;
}

size_t engine_holds_expire(engine *e, int64_t now_ms, engine_record *recs,
                           engine_hold_info *expired, size_t cap)
{
    if (now_ms < e->now_ms)
        return 0;
    size_t n = 0;
    while (n < cap && e->heap_n > 0) {
        hold *h = &e->holds[e->heap[0]];
        if (h->expires_ms > now_ms)
            break;
        if (expired != NULL)
            hold_info_fill(h, &expired[n]);
        record_hold_end(&recs[n], ENGINE_REC_HOLD_EXPIRE, now_ms, h->id);
        hold_end(e, h);
        n++;
    }
    if (n > 0)
        e->now_ms = now_ms;
    return n;
}

int64_t engine_holds_next_expiry_ms(const engine *e)
{
    return e->heap_n == 0 ? INT64_MAX : e->holds[e->heap[0]].expires_ms;
}

uint32_t engine_holds_live(const engine *e)
{
    return e->heap_n;
}

void engine_seat_totals(const engine *e, uint64_t *held, uint64_t *sold, uint32_t *showtimes)
{
    uint64_t h = 0, s = 0;
    uint32_t n = 0;
    for (uint32_t i = 0; i < e->cfg.showtimes_max; i++) {
        const showtime *st = &e->showtimes[i];
        if (!st->used)
            continue;
        n++;
        for (uint32_t c = 0; c < ENGINE_CATEGORIES_MAX; c++) {
            h += st->counts[c].held;
            s += st->counts[c].sold;
        }
    }
    *held = h;
    *sold = s;
    *showtimes = n;
}

bool engine_hold_get(const engine *e, uint64_t hold_id, engine_hold_info *out)
{
    hold *h = NULL;
    if (hold_find(e, hold_id, &h) != ENGINE_OK)
        return false;
    hold_info_fill(h, out);
    return true;
}

/* ---- Bookings ------------------------------------------------------------------- */

/* Finds the booking a user confirmed with `key`, or NULL. With `insert_slot`
 * it also returns the empty table slot where the key would go. */
static booking *idem_find(const engine *e, uint64_t user_id, const char *key, uint32_t len,
                          uint32_t *insert_slot)
{
    uint32_t i = (uint32_t)XXH3_64bits_withSeed(key, len, user_id) & e->idem_mask;
    for (;;) {
        uint32_t v = e->idem_slots[i];
        if (v == 0) {
            if (insert_slot != NULL)
                *insert_slot = i;
            return NULL;
        }
        booking *b = &e->bookings[v - 1];
        if (b->info.user_id == user_id && b->info.idem_key_len == len &&
            memcmp(b->info.idem_key, key, len) == 0)
            return b;
        i = (i + 1) & e->idem_mask;
    }
}

bool engine__idem_exists(const engine *e, uint64_t user_id, const char *key, uint32_t len)
{
    return idem_find(e, user_id, key, len, NULL) != NULL;
}

/* Indexes booking `slot` by user (newest first) and by idempotency key, and
 * marks it for the next snapshot. */
void engine__booking_index(engine *e, uint32_t slot)
{
    booking *b = &e->bookings[slot];
    const engine_booking_info *i = &b->info;
    if (i->idem_key_len > 0) {
        uint32_t at = 0;
        ENGINE_ASSERT(idem_find(e, i->user_id, i->idem_key, i->idem_key_len, &at) == NULL);
        e->idem_slots[at] = slot + 1;
    }
    uint32_t head = engine__map_get(&e->user_bookings, i->user_id);
    b->next_by_user = head == ENGINE_MAP_NONE ? SLOT_NONE : head;
    if (head != ENGINE_MAP_NONE)
        engine__map_del(&e->user_bookings, i->user_id);
    engine__map_put(&e->user_bookings, i->user_id, slot);
    engine__bit_set(e->booking_dirty, slot);
}

static booking *booking_insert(engine *e, int64_t now_ms, hold *h, engine_payment payment,
                               const char *key, uint32_t key_len)
{
    ENGINE_ASSERT(e->booking_n < e->cfg.bookings_max);
    uint32_t slot = e->booking_n++;
    booking *b = &e->bookings[slot];
    memset(b, 0, sizeof(*b));
    engine_booking_info *i = &b->info;
    i->id = engine__id_make(e, (uint64_t)slot + 1);
    i->showtime_id = h->showtime_id;
    i->user_id = h->user_id;
    i->hold_id = h->id;
    i->confirmed_ms = now_ms;
    i->amount = h->amount;
    i->payment = payment;
    i->status = ENGINE_BOOKING_STATUS_CONFIRMED;
    i->seat_count = h->seat_count;
    memcpy(i->seats, h->seats, h->seat_count * sizeof(h->seats[0]));
    i->idem_key_len = key_len;
    if (key_len > 0)
        memcpy(i->idem_key, key, key_len);
    engine__booking_index(e, slot);

    showtime *st = &e->showtimes[h->showtime_slot];
    seats_sell(e, st, h->seats, h->seat_count);
    st->confirmed++;
    hold_unlink(e, h);
    e->now_ms = now_ms;
    return b;
}

static void record_confirm(engine_record *rec, int64_t now_ms, const engine_booking_info *i)
{
    memset(rec, 0, sizeof(*rec));
    rec->type = ENGINE_REC_BOOKING_CONFIRM;
    rec->time_ms = now_ms;
    rec->u.booking_confirm.booking_id = i->id;
    rec->u.booking_confirm.hold_id = i->hold_id;
    rec->u.booking_confirm.payment = i->payment;
    rec->u.booking_confirm.idem_key_len = i->idem_key_len;
    memcpy(rec->u.booking_confirm.idem_key, i->idem_key, i->idem_key_len);
}

static bool payment_valid(engine_payment p)
{
    return p == ENGINE_PAY_UPI || p == ENGINE_PAY_CARD || p == ENGINE_PAY_WALLET;
}

engine_result engine_booking_confirm(engine *e, int64_t now_ms, uint64_t hold_id, uint64_t user_id,
                                     engine_payment payment, const char *idem_key,
                                     uint32_t idem_key_len, uint64_t *booking_id, bool *replayed,
                                     engine_record *rec)
{
    if (replayed != NULL)
        *replayed = false;
    if (now_ms < e->now_ms)
        return ENGINE_TIME_BACKWARDS;
    if (!payment_valid(payment))
        return ENGINE_BAD_PAYMENT;
    if (idem_key_len > ENGINE_IDEM_KEY_MAX)
        return ENGINE_BAD_IDEM_KEY;
    if (idem_key_len > 0) {
        ENGINE_ASSERT(idem_key != NULL);
        booking *prior = idem_find(e, user_id, idem_key, idem_key_len, NULL);
        if (prior != NULL) {
            if (prior->info.hold_id != hold_id)
                return ENGINE_IDEM_KEY_REUSED;
            if (booking_id != NULL)
                *booking_id = prior->info.id;
            if (replayed != NULL)
                *replayed = true;
            return ENGINE_OK;
        }
    }
    hold *h = NULL;
    engine_result r = hold_find(e, hold_id, &h);
    if (r != ENGINE_OK)
        return r;
    if (h->user_id != user_id)
        return ENGINE_NOT_OWNER;
    if (now_ms >= h->expires_ms)
        return ENGINE_HOLD_EXPIRED;
    if (e->booking_n >= e->cfg.bookings_max)
        return ENGINE_CAPACITY;
    booking *b = booking_insert(e, now_ms, h, payment, idem_key, idem_key_len);
    if (booking_id != NULL)
        *booking_id = b->info.id;
    record_confirm(rec, now_ms, &b->info);
    return ENGINE_OK;
}

static void booking_cancel_apply(engine *e, int64_t now_ms, booking *b, uint64_t refund)
{
    showtime *st = engine__showtime_find(e, b->info.showtime_id);
    ENGINE_ASSERT(st != NULL && st->confirmed > 0);
    seats_unsell(e, st, b->info.seats, b->info.seat_count);
    st->confirmed--;
    engine__onsale_seats_freed(e, st);
    b->info.status = ENGINE_BOOKING_STATUS_CANCELLED;
    b->info.cancelled_ms = now_ms;
    engine__bit_set(e->booking_dirty, (uint32_t)(b - e->bookings));
    b->info.refund = refund;
    e->now_ms = now_ms;
}

engine_result engine_booking_cancel(engine *e, int64_t now_ms, uint64_t booking_id,
                                    uint64_t user_id, uint64_t *refund, engine_record *rec)
{
    if (now_ms < e->now_ms)
        return ENGINE_TIME_BACKWARDS;
    booking *b = booking_find(e, booking_id);
    if (b == NULL)
        return ENGINE_UNKNOWN_BOOKING;
    if (b->info.user_id != user_id)
        return ENGINE_NOT_OWNER;
    if (b->info.status == ENGINE_BOOKING_STATUS_CANCELLED)
        return ENGINE_BOOKING_CANCELLED;
    const showtime *st = engine__showtime_find(e, b->info.showtime_id);
    ENGINE_ASSERT(st != NULL); /* a showtime with confirmed bookings cannot be deleted */
    if (now_ms >= st->start_ms)
        return ENGINE_SHOW_STARTED;
    uint64_t money = engine_refund_compute(&e->cfg, b->info.amount, st->start_ms - now_ms);
    booking_cancel_apply(e, now_ms, b, money);
    if (refund != NULL)
        *refund = money;
    memset(rec, 0, sizeof(*rec));
    rec->type = ENGINE_REC_BOOKING_CANCEL;
    rec->time_ms = now_ms;
    rec->u.booking_cancel.booking_id = booking_id;
    rec->u.booking_cancel.refund = money;
    return ENGINE_OK;
}

bool engine_booking_get(const engine *e, uint64_t booking_id, engine_booking_info *out)
{
    const booking *b = booking_find(e, booking_id);
    if (b == NULL)
        return false;
    *out = b->info;
    return true;
}

uint32_t engine_user_holds(const engine *e, uint64_t user_id, uint32_t offset, uint64_t *ids,
                           uint32_t cap)
{
    uint32_t head = engine__map_get(&e->user_holds, user_id);
    if (head == ENGINE_MAP_NONE)
        return 0;
    uint32_t total = 0, slot = head;
    do {
        if (total >= offset && total - offset < cap)
            ids[total - offset] = e->holds[slot].id;
        total++;
        slot = e->holds[slot].user_next;
    } while (slot != head);
    return total;
}

uint32_t engine_user_bookings(const engine *e, uint64_t user_id, uint32_t offset, uint64_t *ids,
                              uint32_t cap)
{
    uint32_t total = 0;
    /* ENGINE_MAP_NONE and SLOT_NONE are both UINT32_MAX: one test ends the list. */
    for (uint32_t slot = engine__map_get(&e->user_bookings, user_id); slot != SLOT_NONE;
         slot = e->bookings[slot].next_by_user) {
        if (total >= offset && total - offset < cap)
            ids[total - offset] = e->bookings[slot].info.id;
        total++;
    }
    return total;
}

/* ---- Layouts and showtimes ---------------------------------------------------------- */

static uint32_t layout_slot_free(const engine *e)
{
    for (uint32_t i = 0; i < e->cfg.layouts_max; i++) {
        if (!e->layout_used[i])
            return i;
    }
    return SLOT_NONE;
}

/* Builds and installs a layout from its blob (ownership passes on success). */
int engine__layout_install(engine *e, int64_t now_ms, uint64_t layout_id, uint8_t *blob,
                           uint32_t blob_len, engine_problem *problem)
{
    engine__layout l;
    int rc = engine__layout_build(layout_id, blob, blob_len, &l, problem);
    if (rc != 0)
        return rc;
    uint32_t slot = layout_slot_free(e);
    if (slot == SLOT_NONE) {
        l.blob = NULL; /* still the caller's */
        engine__layout_free(&l);
        return ENGINE_CAPACITY;
    }
    e->layouts[slot] = l;
    e->layout_used[slot] = true;
    e->layout_dirty[slot] = true;
    engine__map_put(&e->layout_ids, layout_id, slot);
    e->now_ms = now_ms;
    return 0;
}

static void record_layout_create(engine_record *rec, int64_t now_ms, const engine__layout *l)
{
    memset(rec, 0, sizeof(*rec));
    rec->type = ENGINE_REC_LAYOUT_CREATE;
    rec->time_ms = now_ms;
    rec->u.layout_create.layout_id = l->id;
    rec->u.layout_create.blob = l->blob;
    rec->u.layout_create.blob_len = l->blob_len;
}

int engine_layout_create(engine *e, int64_t now_ms, uint64_t layout_id,
                         const engine_layout_spec *spec, engine_problem *problem,
                         engine_record *rec)
{
    if (now_ms < e->now_ms)
        return ENGINE_TIME_BACKWARDS;
    if (layout_find(e, layout_id) != NULL)
        return ENGINE_EXISTS;
    ENGINE_ASSERT(spec != NULL && rec != NULL);
    uint8_t *blob = NULL;
    uint32_t blob_len = 0;
    int rc = engine__layout_encode(spec, &blob, &blob_len, problem);
    if (rc != 0)
        return rc;
    rc = engine__layout_install(e, now_ms, layout_id, blob, blob_len, problem);
    if (rc != 0) {
        free(blob);
        return rc;
    }
    record_layout_create(rec, now_ms, layout_find(e, layout_id));
    return 0;
}

engine_result engine_layout_delete(engine *e, int64_t now_ms, uint64_t layout_id,
                                   engine_record *rec)
{
    if (now_ms < e->now_ms)
        return ENGINE_TIME_BACKWARDS;
    uint32_t slot = engine__map_get(&e->layout_ids, layout_id);
    if (slot == ENGINE_MAP_NONE)
        return ENGINE_UNKNOWN_LAYOUT;
    if (e->layouts[slot].showtimes > 0)
        return ENGINE_LAYOUT_IN_USE;
    engine__layout_free(&e->layouts[slot]);
    e->layout_used[slot] = false;
    ENGINE_ASSERT(engine__map_del(&e->layout_ids, layout_id));
    e->now_ms = now_ms;
    memset(rec, 0, sizeof(*rec));
    rec->type = ENGINE_REC_LAYOUT_DELETE;
    rec->time_ms = now_ms;
    rec->u.layout_delete.layout_id = layout_id;
    return ENGINE_OK;
}

static const engine__layout *layout_get(const engine *e, uint64_t layout_id)
{
    return layout_find(e, layout_id);
}

uint32_t engine_layout_seat_count(const engine *e, uint64_t layout_id)
{
    const engine__layout *l = layout_get(e, layout_id);
    return l == NULL ? 0 : l->seat_count;
}

int32_t engine_layout_seat_find(const engine *e, uint64_t layout_id, const char *label)
{
    const engine__layout *l = layout_get(e, layout_id);
    return l == NULL ? -1 : engine__layout_find(l, label);
}

const engine_seat_spec *engine_layout_seat(const engine *e, uint64_t layout_id, uint32_t seat)
{
    const engine__layout *l = layout_get(e, layout_id);
    return l == NULL || seat >= l->seat_count ? NULL : &l->seats[seat];
}

const char *engine_layout_row_label(const engine *e, uint64_t layout_id, uint32_t row)
{
    const engine__layout *l = layout_get(e, layout_id);
    return l == NULL || row >= l->row_count ? NULL : l->row_labels[row];
}

uint32_t engine_layout_category_count(const engine *e, uint64_t layout_id)
{
    const engine__layout *l = layout_get(e, layout_id);
    return l == NULL ? 0 : l->category_count;
}

const char *engine_layout_category_name(const engine *e, uint64_t layout_id, uint32_t cat)
{
    const engine__layout *l = layout_get(e, layout_id);
    return l == NULL || cat >= l->category_count ? NULL : l->category_names[cat];
}

static uint32_t showtime_slot_free(const engine *e)
{
    /* Creation is rare and not on the seat path: a scan is fine. */
    for (uint32_t i = 0; i < e->cfg.showtimes_max; i++) {
        if (!e->showtimes[i].used)
            return i;
    }
    return SLOT_NONE;
}

int engine_showtime_create(engine *e, int64_t now_ms, uint64_t showtime_id, uint64_t layout_id,
                           int64_t start_ms, const uint32_t *prices, uint32_t price_count,
                           engine_record *rec)
{
    if (now_ms < e->now_ms)
        return ENGINE_TIME_BACKWARDS;
    if (engine__showtime_find(e, showtime_id) != NULL)
        return ENGINE_EXISTS;
    uint32_t lslot = engine__map_get(&e->layout_ids, layout_id);
    if (lslot == ENGINE_MAP_NONE)
        return ENGINE_UNKNOWN_LAYOUT;
    engine__layout *l = &e->layouts[lslot];
    if (price_count != l->category_count || prices == NULL)
        return ENGINE_BAD_PRICES;
    uint32_t slot = showtime_slot_free(e);
    if (slot == SLOT_NONE)
        return ENGINE_CAPACITY;

    showtime *st = &e->showtimes[slot];
    uint64_t *bits = calloc((size_t)l->words * 2, sizeof(uint64_t));
    /* row_free, row_hint, then row_hint_cls: one allocation. */
    uint32_t *row_free = calloc(l->row_count, 2 * sizeof(uint32_t) + 1);
    if (bits == NULL || row_free == NULL) {
        free(bits);
        free(row_free);
        return ENGINE_ENOMEM;
    }
    memset(st, 0, sizeof(*st));
    st->used = true;
    st->dirty = true;
    st->id = showtime_id;
    st->layout_id = layout_id;
    st->layout_slot = lslot;
    st->start_ms = start_ms;
    memcpy(st->prices, prices, price_count * sizeof(*prices));
    st->held = bits;
    st->sold = bits + l->words;
    st->row_free = row_free;
    st->row_hint = row_free + l->row_count;
    st->row_hint_cls = (uint8_t *)(row_free + 2 * (size_t)l->row_count);
    memset(st->row_hint_cls, HINT_NONE, l->row_count);
    for (uint32_t r = 0; r < l->row_count; r++)
        row_free[r] = l->row_first[r + 1] - l->row_first[r];
    for (uint32_t i = 0; i < l->seat_count; i++) {
        if (engine__bit_get(l->blocked, i))
            row_free[l->seat_row[i]]--;
    }
    for (uint32_t c = 0; c < l->category_count; c++) {
        uint32_t total = 0;
        for (uint32_t w = 0; w < l->words; w++)
            total += (uint32_t)__builtin_popcountll(l->cat_mask[(size_t)c * l->words + w]);
        st->counts[c].blocked = l->blocked_per_cat[c];
        st->counts[c].free = total - l->blocked_per_cat[c];
    }
    l->showtimes++;
    engine__map_put(&e->showtime_ids, showtime_id, slot);
    e->now_ms = now_ms;

    memset(rec, 0, sizeof(*rec));
    rec->type = ENGINE_REC_SHOWTIME_CREATE;
    rec->time_ms = now_ms;
    rec->u.showtime_create.showtime_id = showtime_id;
    rec->u.showtime_create.layout_id = layout_id;
    rec->u.showtime_create.start_ms = start_ms;
    rec->u.showtime_create.price_count = price_count;
    memcpy(rec->u.showtime_create.prices, prices, price_count * sizeof(*prices));
    return 0;
}

engine_result engine_showtime_delete(engine *e, int64_t now_ms, uint64_t showtime_id,
                                     engine_record *rec)
{
    if (now_ms < e->now_ms)
        return ENGINE_TIME_BACKWARDS;
    showtime *st = engine__showtime_find(e, showtime_id);
    if (st == NULL)
        return ENGINE_UNKNOWN_SHOWTIME;
    if (st->live_holds > 0 || st->confirmed > 0 || engine__onsale_busy(st))
        return ENGINE_SHOWTIME_IN_USE;
    engine__onsale_free(e, st);
    e->layouts[st->layout_slot].showtimes--;
    free(st->held);
    free(st->row_free);
    memset(st, 0, sizeof(*st));
    ENGINE_ASSERT(engine__map_del(&e->showtime_ids, showtime_id));
    e->now_ms = now_ms;
    memset(rec, 0, sizeof(*rec));
    rec->type = ENGINE_REC_SHOWTIME_DELETE;
    rec->time_ms = now_ms;
    rec->u.showtime_delete.showtime_id = showtime_id;
    return ENGINE_OK;
}

void engine_seat_watch_set(engine *e, engine_seat_watch_fn fn, void *arg)
{
    e->watch = fn;
    e->watch_arg = arg;
}

bool engine_showtime_watch(engine *e, uint64_t showtime_id, bool on)
{
    showtime *st = engine__showtime_find(e, showtime_id);
    if (st == NULL)
        return false;
    st->watched = on;
    return true;
}

bool engine_showtime_get(const engine *e, uint64_t showtime_id, uint64_t *layout_id,
                         int64_t *start_ms, uint32_t *prices)
{
    const showtime *st = engine__showtime_find(e, showtime_id);
    if (st == NULL)
        return false;
    if (layout_id != NULL)
        *layout_id = st->layout_id;
    if (start_ms != NULL)
        *start_ms = st->start_ms;
    if (prices != NULL)
        memcpy(prices, st->prices, sizeof(st->prices));
    return true;
}

static engine_seat_state seat_state(const engine__layout *l, const showtime *st, uint32_t s)
{
    if (engine__bit_get(l->blocked, s))
        return ENGINE_SEAT_UNSELLABLE;
    if (engine__bit_get(st->sold, s))
        return ENGINE_SEAT_SOLD;
    if (engine__bit_get(st->held, s))
        return ENGINE_SEAT_HELD;
    return ENGINE_SEAT_FREE;
}

int engine_seat_state_get(const engine *e, uint64_t showtime_id, uint32_t seat)
{
    const showtime *st = engine__showtime_find(e, showtime_id);
    if (st == NULL)
        return -1;
    const engine__layout *l = engine__showtime_layout(e, st);
    if (seat >= l->seat_count)
        return -1;
    return (int)seat_state(l, st, seat);
}

int32_t engine_seatmap_get(const engine *e, uint64_t showtime_id, uint8_t *states, size_t cap)
{
    const showtime *st = engine__showtime_find(e, showtime_id);
    if (st == NULL)
        return -1;
    const engine__layout *l = engine__showtime_layout(e, st);
    if (cap < l->seat_count)
        return ENGINE_EBUFSIZE;
    for (uint32_t i = 0; i < l->seat_count; i++)
        states[i] = (uint8_t)seat_state(l, st, i);
    return (int32_t)l->seat_count;
}

int32_t engine_availability_get(const engine *e, uint64_t showtime_id,
                                engine_category_counts *counts)
{
    const showtime *st = engine__showtime_find(e, showtime_id);
    if (st == NULL)
        return -1;
    const engine__layout *l = engine__showtime_layout(e, st);
    memcpy(counts, st->counts, sizeof(st->counts[0]) * ENGINE_CATEGORIES_MAX);
    return (int32_t)l->category_count;
}

size_t engine_showtime_state_bytes(const engine *e, uint64_t showtime_id)
{
    const showtime *st = engine__showtime_find(e, showtime_id);
    if (st == NULL)
        return 0;
    const engine__layout *l = engine__showtime_layout(e, st);
    return sizeof(*st) + (size_t)l->words * 2 * sizeof(uint64_t) +
           (size_t)l->row_count * (2 * sizeof(uint32_t) + 1);
}

/* ---- Replay ----------------------------------------------------------------------- */

static bool seq_is_next(const engine *e, uint64_t id, uint64_t next_seq)
{
    return (id >> ID_SEQ_BITS) == e->cfg.id_prefix && (id & ID_SEQ_MASK) == next_seq;
}

bool engine__hold_record_fits(const engine *e, const showtime *st, const engine_record *rec)
{
    const uint32_t n = rec->u.hold_place.seat_count;
    if (rec->time_ms >= st->start_ms || !seq_is_next(e, rec->u.hold_place.hold_id, e->hold_seq) ||
        n < 1 || n > ENGINE_HOLD_SEATS_MAX || engine__holds_full(e) ||
        rec->u.hold_place.expires_ms <= rec->time_ms)
        return false;
    const engine__layout *l = engine__showtime_layout(e, st);
    for (uint32_t i = 0; i < n; i++) {
        uint32_t s = rec->u.hold_place.seats[i];
        if (s >= l->seat_count || engine__bit_get(l->blocked, s) || engine__bit_get(st->held, s) ||
            engine__bit_get(st->sold, s))
            return false;
        for (uint32_t j = 0; j < i; j++) {
            if (rec->u.hold_place.seats[j] == s)
                return false;
        }
    }
    return engine__seats_amount(e, st, rec->u.hold_place.seats, n) == rec->u.hold_place.amount;
}

static int apply_hold_place(engine *e, const engine_record *rec)
{
    showtime *st = engine__showtime_find(e, rec->u.hold_place.showtime_id);
    if (st == NULL || !engine__hold_record_fits(e, st, rec))
        return ENGINE_EREPLAY;
    engine__hold_insert(e, rec->time_ms, st, rec->u.hold_place.hold_id, rec->u.hold_place.user_id,
                        rec->u.hold_place.expires_ms, rec->u.hold_place.amount,
                        rec->u.hold_place.seats, rec->u.hold_place.seat_count);
    return 0;
}

static int apply_booking_confirm(engine *e, const engine_record *rec)
{
    hold *h = NULL;
    if (hold_find(e, rec->u.booking_confirm.hold_id, &h) != ENGINE_OK ||
        rec->time_ms >= h->expires_ms || !payment_valid(rec->u.booking_confirm.payment) ||
        rec->u.booking_confirm.idem_key_len > ENGINE_IDEM_KEY_MAX ||
        e->booking_n >= e->cfg.bookings_max ||
        !seq_is_next(e, rec->u.booking_confirm.booking_id, e->booking_n + 1u))
        return ENGINE_EREPLAY;
    if (rec->u.booking_confirm.idem_key_len > 0 &&
        idem_find(e, h->user_id, rec->u.booking_confirm.idem_key,
                  rec->u.booking_confirm.idem_key_len, NULL))
        return ENGINE_EREPLAY;
    booking_insert(e, rec->time_ms, h, rec->u.booking_confirm.payment,
                   rec->u.booking_confirm.idem_key, rec->u.booking_confirm.idem_key_len);
    return 0;
}

static int apply_booking_cancel(engine *e, const engine_record *rec)
{
    booking *b = booking_find(e, rec->u.booking_cancel.booking_id);
    if (b == NULL || b->info.status != ENGINE_BOOKING_STATUS_CONFIRMED ||
        rec->u.booking_cancel.refund > b->info.amount)
        return ENGINE_EREPLAY;
    const showtime *st = engine__showtime_find(e, b->info.showtime_id);
    if (st == NULL || rec->time_ms >= st->start_ms)
        return ENGINE_EREPLAY;
    booking_cancel_apply(e, rec->time_ms, b, rec->u.booking_cancel.refund);
    return 0;
}

int engine_record_apply(engine *e, const engine_record *rec)
{
    if (rec->time_ms < e->now_ms)
        return ENGINE_EREPLAY;
    engine_record scratch;
    hold *h = NULL;
    switch (rec->type) {
    case ENGINE_REC_LAYOUT_CREATE: {
        if (layout_find(e, rec->u.layout_create.layout_id) != NULL ||
            rec->u.layout_create.blob == NULL)
            return ENGINE_EREPLAY;
        uint8_t *blob = malloc(rec->u.layout_create.blob_len ? rec->u.layout_create.blob_len : 1);
        if (blob == NULL)
            return ENGINE_ENOMEM;
        memcpy(blob, rec->u.layout_create.blob, rec->u.layout_create.blob_len);
        int rc = engine__layout_install(e, rec->time_ms, rec->u.layout_create.layout_id, blob,
                                        rec->u.layout_create.blob_len, NULL);
        if (rc != 0) {
            free(blob);
            return rc < 0 ? rc : ENGINE_EREPLAY;
        }
        return 0;
    }
    case ENGINE_REC_LAYOUT_DELETE:
        return engine_layout_delete(e, rec->time_ms, rec->u.layout_delete.layout_id, &scratch) ==
                       ENGINE_OK
                   ? 0
                   : ENGINE_EREPLAY;
    case ENGINE_REC_SHOWTIME_CREATE: {
        int rc = engine_showtime_create(
            e, rec->time_ms, rec->u.showtime_create.showtime_id, rec->u.showtime_create.layout_id,
            rec->u.showtime_create.start_ms, rec->u.showtime_create.prices,
            rec->u.showtime_create.price_count, &scratch);
        return rc < 0 ? rc : rc == ENGINE_OK ? 0 : ENGINE_EREPLAY;
    }
    case ENGINE_REC_SHOWTIME_DELETE:
        return engine_showtime_delete(e, rec->time_ms, rec->u.showtime_delete.showtime_id,
                                      &scratch) == ENGINE_OK
                   ? 0
                   : ENGINE_EREPLAY;
    case ENGINE_REC_HOLD_PLACE:
        return apply_hold_place(e, rec);
    case ENGINE_REC_HOLD_EXTEND:
        if (hold_find(e, rec->u.hold_extend.hold_id, &h) != ENGINE_OK ||
            rec->time_ms >= h->expires_ms || rec->u.hold_extend.expires_ms <= h->expires_ms)
            return ENGINE_EREPLAY;
        hold_set_expiry(e, h, rec->time_ms, rec->u.hold_extend.expires_ms);
        return 0;
    case ENGINE_REC_HOLD_RELEASE:
    case ENGINE_REC_HOLD_EXPIRE:
        if (hold_find(e, rec->u.hold_end.hold_id, &h) != ENGINE_OK ||
            (rec->type == ENGINE_REC_HOLD_EXPIRE && rec->time_ms < h->expires_ms))
            return ENGINE_EREPLAY;
        hold_end(e, h);
        e->now_ms = rec->time_ms;
        return 0;
    case ENGINE_REC_BOOKING_CONFIRM:
        return apply_booking_confirm(e, rec);
    case ENGINE_REC_BOOKING_CANCEL:
        return apply_booking_cancel(e, rec);
    case ENGINE_REC_SHOWTIME_PRICE:
    case ENGINE_REC_WAITLIST_JOIN:
    case ENGINE_REC_WAITLIST_LEAVE:
    case ENGINE_REC_WAITLIST_OFFER:
    case ENGINE_REC_QUEUE_SET:
    case ENGINE_REC_QUEUE_JOIN:
    case ENGINE_REC_QUEUE_LEAVE:
    case ENGINE_REC_QUEUE_START:
    case ENGINE_REC_QUEUE_ADMIT:
        return engine__onsale_apply(e, rec);
    }
    return ENGINE_EREPLAY;
}

/* ---- Digest --------------------------------------------------------------------------
 * Each object is hashed on its own and the hashes are summed, so the digest
 * depends on what the state is, not on which slot an object happens to use. */

static uint64_t h64(const void *p, size_t n, uint64_t seed)
{
    return XXH3_64bits_withSeed(p, n, seed);
}

uint64_t engine_digest(const engine *e)
{
    uint64_t sum = 0;
    for (uint32_t i = 0; i < e->cfg.layouts_max; i++) {
        if (!e->layout_used[i])
            continue;
        const engine__layout *l = &e->layouts[i];
        sum += h64(l->blob, l->blob_len, l->id ^ 0x4c41594f5554ull);
    }
    for (uint32_t i = 0; i < e->cfg.showtimes_max; i++) {
        const showtime *st = &e->showtimes[i];
        if (!st->used)
            continue;
        const engine__layout *l = engine__showtime_layout(e, st);
        uint64_t head[3 + ENGINE_CATEGORIES_MAX] = {st->id, st->layout_id, (uint64_t)st->start_ms};
        for (uint32_t c = 0; c < ENGINE_CATEGORIES_MAX; c++)
            head[3 + c] = st->prices[c];
        uint64_t h = h64(head, sizeof(head), 1);
        h = h64(st->held, (size_t)l->words * 8, h);
        h = h64(st->sold, (size_t)l->words * 8, h);
        sum += h + engine__onsale_digest(st);
    }
    for (uint32_t i = 0; i < e->heap_n; i++) {
        const hold *hd = &e->holds[e->heap[i]];
        uint64_t v[7 + ENGINE_HOLD_SEATS_MAX] = {hd->id,
                                                 hd->showtime_id,
                                                 hd->user_id,
                                                 (uint64_t)hd->created_ms,
                                                 (uint64_t)hd->expires_ms,
                                                 hd->amount,
                                                 hd->seat_count | (uint64_t)hd->offer << 32};
        for (uint32_t s = 0; s < hd->seat_count; s++)
            v[7 + s] = hd->seats[s];
        sum += h64(v, sizeof(v), 2);
    }
    for (uint32_t i = 0; i < e->booking_n; i++) {
        const engine_booking_info *b = &e->bookings[i].info;
        uint64_t v[12 + ENGINE_HOLD_SEATS_MAX] = {b->id,
                                                  b->showtime_id,
                                                  b->user_id,
                                                  b->hold_id,
                                                  (uint64_t)b->confirmed_ms,
                                                  (uint64_t)b->cancelled_ms,
                                                  b->amount,
                                                  b->refund,
                                                  (uint64_t)b->payment,
                                                  (uint64_t)b->status,
                                                  b->seat_count,
                                                  b->idem_key_len};
        for (uint32_t s = 0; s < b->seat_count; s++)
            v[12 + s] = b->seats[s];
        sum += h64(b->idem_key, b->idem_key_len, h64(v, sizeof(v), 3));
    }
    uint64_t tail[4] = {(uint64_t)e->now_ms, e->hold_seq, e->booking_n, e->cfg.id_prefix};
    return h64(tail, sizeof(tail), sum);
}

/* ---- Invariants ------------------------------------------------------------------------ */

#define CHECK(cond, what)                                                              \
    do {                                                                               \
        if (!(cond)) {                                                                 \
            fprintf(stderr, "usher engine: invariant broken: %s (%s)\n", what, #cond); \
            abort();                                                                   \
        }                                                                              \
    } while (0)

static void check_showtime(const engine *e, const showtime *st, const uint64_t *exp_held,
                           const uint64_t *exp_sold, uint32_t holds, uint32_t confirmed)
{
    const engine__layout *l = engine__showtime_layout(e, st);
    CHECK(st->live_holds == holds, "showtime live hold count matches holds");
    CHECK(st->confirmed == confirmed, "showtime confirmed count matches bookings");
    for (uint32_t w = 0; w < l->words; w++) {
        CHECK(st->held[w] == exp_held[w], "held bitmap = union of live holds");
        CHECK(st->sold[w] == exp_sold[w], "sold bitmap = union of confirmed bookings");
        CHECK((st->held[w] & st->sold[w]) == 0, "no seat both held and sold");
        CHECK(((st->held[w] | st->sold[w]) & l->blocked[w]) == 0, "blocked seats never sold");
    }
    for (uint32_t c = 0; c < l->category_count; c++) {
        engine_category_counts n = {0, 0, 0, 0};
        for (uint32_t w = 0; w < l->words; w++) {
            uint64_t m = l->cat_mask[(size_t)c * l->words + w];
            n.held += (uint32_t)__builtin_popcountll(m & st->held[w]);
            n.sold += (uint32_t)__builtin_popcountll(m & st->sold[w]);
            n.blocked += (uint32_t)__builtin_popcountll(m & l->blocked[w]);
            n.free +=
                (uint32_t)__builtin_popcountll(m & ~(st->held[w] | st->sold[w] | l->blocked[w]));
        }
        CHECK(memcmp(&n, &st->counts[c], sizeof(n)) == 0, "category counters = popcounts");
    }
    for (uint32_t r = 0; r < l->row_count; r++) {
        uint32_t free_n = 0;
        for (uint32_t s = l->row_first[r]; s < l->row_first[r + 1]; s++)
            free_n += seat_state(l, st, s) == ENGINE_SEAT_FREE;
        CHECK(st->row_free[r] == free_n, "row free count = free seats in the row");
        uint8_t cls = st->row_hint_cls[r];
        if (cls != HINT_NONE && cls / 2u < l->category_count) {
            best_pick ignored = {.found = false};
            uint32_t longest = row_scan(l, st, l->cat_mask + (size_t)(cls / 2u) * l->words,
                                        cls & 1u, r, 0, UINT32_MAX, &ignored);
            CHECK(longest <= st->row_hint[r], "row hint bounds the longest eligible run");
        }
    }
}

int engine_check(const engine *e)
{
    uint32_t layouts = 0, showtimes = 0;
    for (uint32_t i = 0; i < e->cfg.layouts_max; i++) {
        if (!e->layout_used[i])
            continue;
        layouts++;
        uint32_t users = 0;
        for (uint32_t s = 0; s < e->cfg.showtimes_max; s++)
            users += e->showtimes[s].used && e->showtimes[s].layout_slot == i;
        CHECK(users == e->layouts[i].showtimes, "layout use count = showtimes using it");
        CHECK(engine__map_get(&e->layout_ids, e->layouts[i].id) == i, "layout index");
    }
    CHECK(layouts == e->layout_ids.count, "layout index size");

    /* Heap: every live hold once, heap-ordered, indexed. */
    CHECK(e->heap_n + e->hold_free_n == e->cfg.holds_max, "hold slots = live + free");
    CHECK(e->hold_ids.count == e->heap_n, "hold index size = live holds");
    for (uint32_t i = 0; i < e->heap_n; i++) {
        const hold *h = &e->holds[e->heap[i]];
        CHECK(h->heap_pos == i, "hold heap position");
        CHECK(i == 0 || !heap_less(e, e->heap[i], e->heap[(i - 1) / 2]), "heap order");
        CHECK(engine__map_get(&e->hold_ids, h->id) == e->heap[i], "hold id index");
        CHECK((h->id & ID_SEQ_MASK) < e->hold_seq, "hold id issued");
        CHECK(h->created_ms <= e->now_ms && h->expires_ms > h->created_ms, "hold times");
    }

    for (uint32_t s = 0; s < e->cfg.showtimes_max; s++) {
        const showtime *st = &e->showtimes[s];
        if (!st->used)
            continue;
        showtimes++;
        CHECK(engine__map_get(&e->showtime_ids, st->id) == s, "showtime index");
        const engine__layout *l = engine__showtime_layout(e, st);
        uint64_t *exp = calloc((size_t)l->words * 2, sizeof(uint64_t));
        CHECK(exp != NULL, "memory for the check");
        uint32_t holds = 0, confirmed = 0;
        for (uint32_t i = 0; i < e->heap_n; i++) {
            const hold *h = &e->holds[e->heap[i]];
            if (h->showtime_slot != s)
                continue;
            holds++;
            CHECK(h->showtime_id == st->id, "hold showtime id");
            for (uint32_t k = 0; k < h->seat_count; k++) {
                CHECK(h->seats[k] < l->seat_count, "hold seat in layout");
                CHECK(!engine__bit_get(exp, h->seats[k]), "seat in at most one hold");
                engine__bit_set(exp, h->seats[k]);
            }
        }
        for (uint32_t i = 0; i < e->booking_n; i++) {
            const engine_booking_info *b = &e->bookings[i].info;
            if (b->showtime_id != st->id || b->status != ENGINE_BOOKING_STATUS_CONFIRMED)
                continue;
            confirmed++;
            for (uint32_t k = 0; k < b->seat_count; k++) {
                CHECK(!engine__bit_get(exp + l->words, b->seats[k]),
                      "seat in at most one confirmed booking");
                engine__bit_set(exp + l->words, b->seats[k]);
            }
        }
        check_showtime(e, st, exp, exp + l->words, holds, confirmed);
        engine__onsale_check(e, st);
        free(exp);
    }
    CHECK(showtimes == e->showtime_ids.count, "showtime index size");

    /* Per-user hold lists hold exactly the live holds, ascending by id. */
    uint32_t listed = 0;
    for (uint32_t i = 0; i < e->heap_n; i++) {
        const hold *h = &e->holds[e->heap[i]];
        uint32_t head = engine__map_get(&e->user_holds, h->user_id);
        CHECK(head != ENGINE_MAP_NONE, "user of a live hold is indexed");
        if (head != e->heap[i])
            continue;
        uint32_t slot = head;
        uint64_t last = 0;
        do {
            CHECK(e->holds[slot].user_id == h->user_id && e->holds[slot].id > last,
                  "user hold list sorted and homogeneous");
            last = e->holds[slot].id;
            listed++;
            slot = e->holds[slot].user_next;
        } while (slot != head);
    }
    CHECK(listed == e->heap_n, "user hold lists cover every live hold once");

    uint32_t in_lists = 0;
    for (uint32_t i = 0; i < e->booking_n; i++) {
        const engine_booking_info *b = &e->bookings[i].info;
        CHECK(b->id == engine__id_make(e, i + 1u), "booking id = slot + 1");
        if (b->idem_key_len > 0)
            CHECK(idem_find(e, b->user_id, b->idem_key, b->idem_key_len, NULL) == &e->bookings[i],
                  "idempotency key indexed");
        if (engine__map_get(&e->user_bookings, b->user_id) == i) {
            uint64_t last = UINT64_MAX;
            for (uint32_t s = i; s != SLOT_NONE; s = e->bookings[s].next_by_user) {
                CHECK(e->bookings[s].info.user_id == b->user_id && e->bookings[s].info.id < last,
                      "user booking list newest first");
                last = e->bookings[s].info.id;
                in_lists++;
            }
        }
    }
    CHECK(in_lists == e->booking_n, "user booking lists cover every booking once");
    return 0;
}
