/*
 * onsale.c - waiting lists and virtual queues (engine.h, "Waiting lists",
 * "Virtual queues", "On-sale steps").
 *
 * A showtime's on-sale state hangs off showtime.os, allocated when the
 * first waiter joins or a queue is set and freed when both are gone. Unlike
 * the seat path these structures grow (a queue may take a million places),
 * so joins may allocate; they stay bounded by waitlist_max and
 * queue_slots_max.
 *
 * Queue places live in parallel arrays indexed by place number (users,
 * state) with a Fenwick tree over "still waiting", so a user's position is
 * a prefix sum, and an open-addressing index from user to place. Places
 * before the admission cursor are never waiting, so position = waiting
 * places before yours + 1.
 */
#include "engine_internal.h"

#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#define ONSALE_ITEM_VERSION 1

/* ---- Shared helpers ------------------------------------------------------------- */

static engine__onsale *os_ensure(showtime *st)
{
    if (st->os == NULL)
        st->os = calloc(1, sizeof(*st->os));
    return st->os;
}

static void queue_free(engine__queue *q)
{
    if (q == NULL)
        return;
    free(q->users);
    free(q->state);
    free(q->fen);
    free(q->index);
    free(q);
}

/* Frees the on-sale state once it holds nothing. */
static void os_trim(showtime *st)
{
    engine__onsale *os = st->os;
    if (os != NULL && os->wn == 0 && os->q == NULL) {
        free(os->w);
        free(os);
        st->os = NULL;
    }
}

bool engine__onsale_busy(const showtime *st)
{
    return st->os != NULL && (st->os->wn > 0 || st->os->q != NULL);
}

static void list_remove(uint32_t *v, uint32_t *n, uint32_t x)
{
    for (uint32_t i = 0; i < *n; i++) {
        if (v[i] == x) {
            v[i] = v[--*n];
            return;
        }
    }
}

void engine__onsale_free(engine *e, showtime *st)
{
    uint32_t slot = (uint32_t)(st - e->showtimes);
    if (st->offer_pending) {
        list_remove(e->offer_pending, &e->offer_pending_n, slot);
        st->offer_pending = false;
    }
    if (st->os != NULL) {
        if (st->os->q != NULL)
            list_remove(e->queued, &e->queued_n, slot);
        queue_free(st->os->q);
        free(st->os->w);
        free(st->os);
        st->os = NULL;
    }
}

void engine__onsale_seats_freed(engine *e, showtime *st)
{
    if (st->os == NULL || st->os->wn == 0 || st->offer_pending)
        return;
    ENGINE_ASSERT(e->offer_pending_n < e->cfg.showtimes_max);
    st->offer_pending = true;
    e->offer_pending[e->offer_pending_n++] = (uint32_t)(st - e->showtimes);
}

/* ---- Prices ---------------------------------------------------------------------- */

engine_result engine_showtime_price_set(engine *e, int64_t now_ms, uint64_t showtime_id,
                                        const uint32_t *prices, uint32_t price_count,
                                        engine_record *rec)
{
    if (now_ms < e->now_ms)
        return ENGINE_TIME_BACKWARDS;
    showtime *st = engine__showtime_find(e, showtime_id);
    if (st == NULL)
        return ENGINE_UNKNOWN_SHOWTIME;
    if (prices == NULL || price_count != engine__showtime_layout(e, st)->category_count)
        return ENGINE_BAD_PRICES;
    memcpy(st->prices, prices, price_count * sizeof(*prices));
    st->dirty = true;
    e->now_ms = now_ms;
    memset(rec, 0, sizeof(*rec));
    rec->type = ENGINE_REC_SHOWTIME_PRICE;
    rec->time_ms = now_ms;
    rec->u.showtime_price.showtime_id = showtime_id;
    rec->u.showtime_price.price_count = price_count;
    memcpy(rec->u.showtime_price.prices, prices, price_count * sizeof(*prices));
    return ENGINE_OK;
}

/* ---- Waiting lists ------------------------------------------------------------------ */

static int32_t waiter_find(const engine__onsale *os, uint64_t user_id)
{
    for (uint32_t i = 0; os != NULL && i < os->wn; i++) {
        if (os->w[i].user_id == user_id)
            return (int32_t)i;
    }
    return -1;
}

/* Free seats an offer may use in seat word w: free, sellable, not accessible
 * or companion, of category `cat` (every category for ENGINE_CATEGORY_ANY). */
static uint64_t offer_word(const engine__layout *l, const showtime *st, uint32_t cat, uint32_t w)
{
    uint64_t x = ~(st->held[w] | st->sold[w] | l->blocked[w] | l->access[w]);
    if (cat != ENGINE_CATEGORY_ANY)
        x &= l->cat_mask[(size_t)cat * l->words + w];
    return x;
}

/* Chooses the seats of an offer (the rules in engine.h). Fills `seats` in
 * ascending order within a block, or in row preference order otherwise. */
static bool offer_seats(engine *e, showtime *st, uint32_t count, uint32_t cat, uint32_t *seats)
{
    const engine__layout *l = engine__showtime_layout(e, st);
    uint32_t avail = 0;
    for (uint32_t c = 0; c < l->category_count; c++) {
        if (cat == ENGINE_CATEGORY_ANY || c == cat)
            avail += st->counts[c].free;
    }
    if (avail < count)
        return false;
    for (uint32_t c = 0; c < l->category_count; c++) {
        if (cat != ENGINE_CATEGORY_ANY && c != cat)
            continue;
        uint32_t first;
        if (engine__best_find(e, st, count, c, false, &first)) {
            for (uint32_t i = 0; i < count; i++)
                seats[i] = first + i;
            return true;
        }
    }
    uint32_t k = 0;
    for (uint32_t i = 0; i < l->row_count && k < count; i++) {
        uint32_t r = l->row_order[i];
        for (uint32_t s = l->row_first[r]; s < l->row_first[r + 1] && k < count; s++) {
            if ((offer_word(l, st, cat, s >> 6) >> (s & 63)) & 1u)
                seats[k++] = s;
        }
    }
    return k == count;
}

int engine_waitlist_join(engine *e, int64_t now_ms, uint64_t showtime_id, uint64_t user_id,
                         uint32_t count, uint32_t category, engine_record *rec)
{
    showtime *st;
    engine_result r = engine__hold_precheck(e, now_ms, showtime_id, count, &st);
    if (r != ENGINE_OK)
        return r;
    if (category != ENGINE_CATEGORY_ANY &&
        category >= engine__showtime_layout(e, st)->category_count)
        return ENGINE_UNKNOWN_CATEGORY;
    if (waiter_find(st->os, user_id) >= 0)
        return ENGINE_ALREADY_WAITING;
    uint32_t scratch[ENGINE_HOLD_SEATS_MAX];
    if (offer_seats(e, st, count, category, scratch))
        return ENGINE_SEATS_AVAILABLE;
    if (st->os != NULL && st->os->wn >= e->cfg.waitlist_max)
        return ENGINE_CAPACITY;
    memset(rec, 0, sizeof(*rec));
    rec->type = ENGINE_REC_WAITLIST_JOIN;
    rec->time_ms = now_ms;
    rec->u.waitlist_join.showtime_id = showtime_id;
    rec->u.waitlist_join.user_id = user_id;
    rec->u.waitlist_join.count = count;
    rec->u.waitlist_join.category = category;
    int rc = engine__onsale_apply(e, rec);
    return rc == ENGINE_EREPLAY ? ENGINE_CAPACITY : rc;
}

static int waitlist_join_apply(engine *e, showtime *st, const engine_record *rec)
{
    const uint32_t count = rec->u.waitlist_join.count, cat = rec->u.waitlist_join.category;
    if (rec->time_ms >= st->start_ms || count == 0 || count > ENGINE_HOLD_SEATS_MAX ||
        (cat != ENGINE_CATEGORY_ANY && cat >= engine__showtime_layout(e, st)->category_count) ||
        waiter_find(st->os, rec->u.waitlist_join.user_id) >= 0)
        return ENGINE_EREPLAY;
    engine__onsale *os = os_ensure(st);
    if (os == NULL)
        return ENGINE_ENOMEM;
    if (os->wn == os->wcap) {
        uint32_t cap = os->wcap ? os->wcap * 2 : 16;
        engine__waiter *w = realloc(os->w, cap * sizeof(*w));
        if (w == NULL) {
            os_trim(st);
            return ENGINE_ENOMEM;
        }
        os->w = w;
        os->wcap = cap;
    }
    os->w[os->wn++] = (engine__waiter){.user_id = rec->u.waitlist_join.user_id,
                                       .joined_ms = rec->time_ms,
                                       .count = (uint8_t)count,
                                       .category = (uint8_t)cat};
    st->os_dirty = true;
    e->now_ms = rec->time_ms;
    return 0;
}

static void waiter_remove(showtime *st, uint32_t i)
{
    engine__onsale *os = st->os;
    memmove(&os->w[i], &os->w[i + 1], (os->wn - i - 1) * sizeof(os->w[0]));
    os->wn--;
    st->os_dirty = true;
    os_trim(st);
}

engine_result engine_waitlist_leave(engine *e, int64_t now_ms, uint64_t showtime_id,
                                    uint64_t user_id, engine_record *rec)
{
    if (now_ms < e->now_ms)
        return ENGINE_TIME_BACKWARDS;
    showtime *st = engine__showtime_find(e, showtime_id);
    if (st == NULL)
        return ENGINE_UNKNOWN_SHOWTIME;
    int32_t i = waiter_find(st->os, user_id);
    if (i < 0)
        return ENGINE_NOT_WAITING;
    waiter_remove(st, (uint32_t)i);
    e->now_ms = now_ms;
    memset(rec, 0, sizeof(*rec));
    rec->type = ENGINE_REC_WAITLIST_LEAVE;
    rec->time_ms = now_ms;
    rec->u.onsale_user.showtime_id = showtime_id;
    rec->u.onsale_user.user_id = user_id;
    return ENGINE_OK;
}

bool engine_waitlist_get(const engine *e, uint64_t showtime_id, uint64_t user_id,
                         engine_waiter_info *out)
{
    const showtime *st = engine__showtime_find(e, showtime_id);
    int32_t i = st != NULL ? waiter_find(st->os, user_id) : -1;
    if (i < 0)
        return false;
    const engine__waiter *w = &st->os->w[i];
    *out = (engine_waiter_info){.position = (uint32_t)i + 1,
                                .count = w->count,
                                .category = w->category,
                                .joined_ms = w->joined_ms};
    return true;
}

uint32_t engine_waitlist_length(const engine *e, uint64_t showtime_id)
{
    const showtime *st = engine__showtime_find(e, showtime_id);
    return st != NULL && st->os != NULL ? st->os->wn : 0;
}

/* Makes the first offer that fits on `st`: true with *rec filled. */
static engine_result offer_make(engine *e, int64_t now_ms, showtime *st, engine_record *rec)
{
    engine__onsale *os = st->os;
    for (uint32_t i = 0; i < os->wn; i++) {
        uint32_t seats[ENGINE_HOLD_SEATS_MAX];
        if (!offer_seats(e, st, os->w[i].count, os->w[i].category, seats))
            continue;
        if (engine__holds_full(e))
            return ENGINE_CAPACITY;
        memset(rec, 0, sizeof(*rec));
        rec->type = ENGINE_REC_WAITLIST_OFFER;
        rec->time_ms = now_ms;
        rec->u.hold_place.hold_id = engine__id_make(e, e->hold_seq);
        rec->u.hold_place.showtime_id = st->id;
        rec->u.hold_place.user_id = os->w[i].user_id;
        rec->u.hold_place.expires_ms = engine__add_ms(now_ms, e->cfg.offer_ttl_ms);
        rec->u.hold_place.amount = engine__seats_amount(e, st, seats, os->w[i].count);
        rec->u.hold_place.seat_count = os->w[i].count;
        memcpy(rec->u.hold_place.seats, seats, os->w[i].count * sizeof(seats[0]));
        ENGINE_ASSERT(engine__onsale_apply(e, rec) == 0);
        return ENGINE_OK;
    }
    return ENGINE_NOT_AVAILABLE;
}

static int offer_apply(engine *e, showtime *st, const engine_record *rec)
{
    const uint32_t n = rec->u.hold_place.seat_count;
    int32_t wi = waiter_find(st->os, rec->u.hold_place.user_id);
    if (wi < 0 || st->os->w[wi].count != n || !engine__hold_record_fits(e, st, rec))
        return ENGINE_EREPLAY;
    const engine__layout *l = engine__showtime_layout(e, st);
    const uint32_t cat = st->os->w[wi].category;
    for (uint32_t i = 0; i < n && cat != ENGINE_CATEGORY_ANY; i++) {
        if (l->seat_cat[rec->u.hold_place.seats[i]] != cat)
            return ENGINE_EREPLAY;
    }
    uint32_t slot = engine__hold_insert(e, rec->time_ms, st, rec->u.hold_place.hold_id,
                                        rec->u.hold_place.user_id, rec->u.hold_place.expires_ms,
                                        rec->u.hold_place.amount, rec->u.hold_place.seats, n);
    e->holds[slot].offer = true;
    waiter_remove(st, (uint32_t)wi);
    return 0;
}

/* ---- Virtual queues: places, index, Fenwick tree ------------------------------------ */

static void fen_add(engine__queue *q, uint32_t place, int32_t d)
{
    for (uint32_t i = place + 1; i <= q->cap; i += i & (0u - i))
        q->fen[i - 1] += (uint32_t)d;
}

/* Waiting places among [0, k). */
static uint32_t fen_prefix(const engine__queue *q, uint32_t k)
{
    uint32_t s = 0;
    for (uint32_t i = k; i > 0; i -= i & (0u - i))
        s += q->fen[i - 1];
    return s;
}

static void fen_rebuild(engine__queue *q)
{
    memset(q->fen, 0, q->cap * sizeof(q->fen[0]));
    for (uint32_t i = 1; i <= q->cap; i++) {
        if (i <= q->n && q->state[i - 1] == QPLACE_WAITING)
            q->fen[i - 1]++;
        uint32_t j = i + (i & (0u - i));
        if (j <= q->cap)
            q->fen[j - 1] += q->fen[i - 1];
    }
}

static uint32_t index_home(const engine__queue *q, uint64_t user)
{
    return (uint32_t)engine__mix64(user) & q->index_mask;
}

/* The place of the user's live (not left) place, or UINT32_MAX. */
static uint32_t index_get(const engine__queue *q, uint64_t user)
{
    if (q->index == NULL)
        return UINT32_MAX;
    for (uint32_t i = index_home(q, user);; i = (i + 1) & q->index_mask) {
        uint32_t v = q->index[i];
        if (v == 0)
            return UINT32_MAX;
        if (q->users[v - 1] == user)
            return v - 1;
    }
}

static void index_put(engine__queue *q, uint32_t place)
{
    uint32_t i = index_home(q, q->users[place]);
    while (q->index[i] != 0)
        i = (i + 1) & q->index_mask;
    q->index[i] = place + 1;
}

static void index_del(engine__queue *q, uint64_t user)
{
    uint32_t i = index_home(q, user);
    while (q->users[q->index[i] - 1] != user)
        i = (i + 1) & q->index_mask; /* present: the caller found it */
    /* Backward-shift deletion keeps every probe sequence unbroken. */
    for (uint32_t j = (i + 1) & q->index_mask;; j = (j + 1) & q->index_mask) {
        uint32_t v = q->index[j];
        if (v == 0)
            break;
        uint32_t home = index_home(q, q->users[v - 1]);
        if (((j - home) & q->index_mask) >= ((j - i) & q->index_mask)) {
            q->index[i] = v;
            i = j;
        }
    }
    q->index[i] = 0;
}

/* Rebuilds the index with room for twice `places` entries. */
static int index_rebuild(engine__queue *q, uint32_t places)
{
    uint64_t slots = 16;
    while (slots < (uint64_t)places * 2)
        slots <<= 1;
    uint32_t *ix = calloc(slots, sizeof(*ix));
    if (ix == NULL)
        return ENGINE_ENOMEM;
    free(q->index);
    q->index = ix;
    q->index_mask = (uint32_t)(slots - 1);
    for (uint32_t p = 0; p < q->n; p++) {
        if (q->state[p] != QPLACE_LEFT)
            index_put(q, p);
    }
    return 0;
}

/* Room for one more place. */
static int queue_grow(engine__queue *q)
{
    if (q->n == q->cap) {
        uint32_t cap = q->cap ? q->cap * 2 : 16;
        uint64_t *u = realloc(q->users, (size_t)cap * sizeof(*u));
        if (u != NULL)
            q->users = u;
        uint32_t *s = realloc(q->state, (size_t)cap * sizeof(*s));
        if (s != NULL)
            q->state = s;
        uint32_t *f = realloc(q->fen, (size_t)cap * sizeof(*f));
        if (f != NULL)
            q->fen = f;
        if (u == NULL || s == NULL || f == NULL)
            return ENGINE_ENOMEM;
        /* New Fenwick nodes (cap/2, cap) cover only new, empty places; the
         * last covers everything. */
        memset(q->fen + q->cap, 0, (size_t)(cap - q->cap) * sizeof(*f));
        q->fen[cap - 1] = fen_prefix(q, q->cap);
        q->cap = cap;
    }
    if ((uint64_t)(q->n + 1) * 2 > (uint64_t)q->index_mask + 1 || q->index == NULL)
        return index_rebuild(q, q->n + 1);
    return 0;
}

static engine_queue_state place_state(const engine *e, const engine__queue *q, uint32_t place,
                                      int64_t now_ms, int64_t *admitted_ms)
{
    uint32_t s = q->state[place];
    if (s == QPLACE_LEFT)
        return ENGINE_QUEUE_NONE;
    if (s == QPLACE_WAITING)
        return q->started ? ENGINE_QUEUE_WAITING : ENGINE_QUEUE_PREQUEUE;
    *admitted_ms = q->start_ms + (int64_t)(s - 1) * 1000;
    return now_ms < engine__add_ms(*admitted_ms, e->cfg.queue_admit_window_ms)
               ? ENGINE_QUEUE_ADMITTED
               : ENGINE_QUEUE_LAPSED;
}

static int queue_set_apply(engine *e, showtime *st, const engine_record *rec)
{
    engine__queue *q = st->os != NULL ? st->os->q : NULL;
    uint32_t slot = (uint32_t)(st - e->showtimes);
    if (rec->u.queue_set.rate_per_s == 0) {
        if (q == NULL)
            return ENGINE_EREPLAY;
        list_remove(e->queued, &e->queued_n, slot);
        queue_free(q);
        st->os->q = NULL;
        os_trim(st);
    } else if (q == NULL) {
        engine__onsale *os = os_ensure(st);
        if (os == NULL)
            return ENGINE_ENOMEM;
        q = calloc(1, sizeof(*q));
        if (q == NULL) {
            os_trim(st);
            return ENGINE_ENOMEM;
        }
        q->rate_per_s = rec->u.queue_set.rate_per_s;
        q->start_ms = rec->u.queue_set.start_ms;
        os->q = q;
        ENGINE_ASSERT(e->queued_n < e->cfg.showtimes_max);
        e->queued[e->queued_n++] = slot;
    } else {
        if (q->started && rec->u.queue_set.start_ms != q->start_ms)
            return ENGINE_EREPLAY;
        q->rate_per_s = rec->u.queue_set.rate_per_s;
        q->start_ms = rec->u.queue_set.start_ms;
    }
    st->os_dirty = true;
    e->now_ms = rec->time_ms;
    return 0;
}

int engine_queue_set(engine *e, int64_t now_ms, uint64_t showtime_id, uint32_t rate_per_s,
                     int64_t start_ms, engine_record *rec)
{
    if (now_ms < e->now_ms)
        return ENGINE_TIME_BACKWARDS;
    showtime *st = engine__showtime_find(e, showtime_id);
    if (st == NULL)
        return ENGINE_UNKNOWN_SHOWTIME;
    engine__queue *q = st->os != NULL ? st->os->q : NULL;
    if (rate_per_s == 0 && q == NULL)
        return ENGINE_NO_QUEUE;
    if (q != NULL && q->started && rate_per_s != 0 && start_ms != q->start_ms)
        return ENGINE_QUEUE_STARTED;
    memset(rec, 0, sizeof(*rec));
    rec->type = ENGINE_REC_QUEUE_SET;
    rec->time_ms = now_ms;
    rec->u.queue_set.showtime_id = showtime_id;
    rec->u.queue_set.rate_per_s = rate_per_s;
    rec->u.queue_set.start_ms = rate_per_s == 0 ? 0 : start_ms;
    return engine__onsale_apply(e, rec);
}

static int queue_join_apply(engine *e, showtime *st, const engine_record *rec)
{
    engine__queue *q = st->os != NULL ? st->os->q : NULL;
    if (q == NULL || rec->time_ms >= st->start_ms)
        return ENGINE_EREPLAY;
    uint64_t user = rec->u.onsale_user.user_id;
    uint32_t old = index_get(q, user);
    int64_t adm = 0;
    if (old != UINT32_MAX && place_state(e, q, old, rec->time_ms, &adm) != ENGINE_QUEUE_LAPSED)
        return ENGINE_EREPLAY; /* in line or admitted: the place stands */
    int rc = queue_grow(q);
    if (rc != 0)
        return rc;
    if (old != UINT32_MAX) { /* lapsed: the old place goes */
        index_del(q, user);
        q->state[old] = QPLACE_LEFT;
    }
    uint32_t p = q->n++;
    q->users[p] = user;
    q->state[p] = QPLACE_WAITING;
    fen_add(q, p, 1);
    index_put(q, p);
    q->waiting++;
    if (!q->started)
        q->pre_n = q->n;
    st->os_dirty = true;
    e->now_ms = rec->time_ms;
    return 0;
}

int engine_queue_join(engine *e, int64_t now_ms, uint64_t showtime_id, uint64_t user_id,
                      bool *joined, engine_record *rec)
{
    *joined = false;
    if (now_ms < e->now_ms)
        return ENGINE_TIME_BACKWARDS;
    showtime *st = engine__showtime_find(e, showtime_id);
    if (st == NULL)
        return ENGINE_UNKNOWN_SHOWTIME;
    engine__queue *q = st->os != NULL ? st->os->q : NULL;
    if (q == NULL)
        return ENGINE_NO_QUEUE;
    if (now_ms >= st->start_ms)
        return ENGINE_SHOW_STARTED;
    uint32_t old = index_get(q, user_id);
    int64_t adm = 0;
    if (old != UINT32_MAX && place_state(e, q, old, now_ms, &adm) != ENGINE_QUEUE_LAPSED)
        return ENGINE_OK;
    if (q->n >= e->cfg.queue_slots_max)
        return ENGINE_CAPACITY;
    memset(rec, 0, sizeof(*rec));
    rec->type = ENGINE_REC_QUEUE_JOIN;
    rec->time_ms = now_ms;
    rec->u.onsale_user.showtime_id = showtime_id;
    rec->u.onsale_user.user_id = user_id;
    int rc = engine__onsale_apply(e, rec);
    *joined = rc == 0;
    return rc;
}

static int queue_leave_apply(engine *e, showtime *st, const engine_record *rec)
{
    engine__queue *q = st->os != NULL ? st->os->q : NULL;
    uint32_t p = q != NULL ? index_get(q, rec->u.onsale_user.user_id) : UINT32_MAX;
    if (p == UINT32_MAX)
        return ENGINE_EREPLAY;
    if (q->state[p] == QPLACE_WAITING) {
        fen_add(q, p, -1);
        q->waiting--;
    }
    index_del(q, rec->u.onsale_user.user_id);
    q->state[p] = QPLACE_LEFT;
    st->os_dirty = true;
    e->now_ms = rec->time_ms;
    return 0;
}

engine_result engine_queue_leave(engine *e, int64_t now_ms, uint64_t showtime_id, uint64_t user_id,
                                 engine_record *rec)
{
    if (now_ms < e->now_ms)
        return ENGINE_TIME_BACKWARDS;
    showtime *st = engine__showtime_find(e, showtime_id);
    if (st == NULL)
        return ENGINE_UNKNOWN_SHOWTIME;
    engine__queue *q = st->os != NULL ? st->os->q : NULL;
    if (q == NULL)
        return ENGINE_NO_QUEUE;
    if (index_get(q, user_id) == UINT32_MAX)
        return ENGINE_NOT_WAITING;
    memset(rec, 0, sizeof(*rec));
    rec->type = ENGINE_REC_QUEUE_LEAVE;
    rec->time_ms = now_ms;
    rec->u.onsale_user.showtime_id = showtime_id;
    rec->u.onsale_user.user_id = user_id;
    ENGINE_ASSERT(engine__onsale_apply(e, rec) == 0);
    return ENGINE_OK;
}

bool engine_queue_get(const engine *e, uint64_t showtime_id, engine_queue_info *out)
{
    const showtime *st = engine__showtime_find(e, showtime_id);
    const engine__queue *q = st != NULL && st->os != NULL ? st->os->q : NULL;
    if (q == NULL)
        return false;
    *out = (engine_queue_info){.rate_per_s = q->rate_per_s,
                               .start_ms = q->start_ms,
                               .started = q->started,
                               .places = q->n,
                               .waiting = q->waiting,
                               .admitted = q->admitted};
    return true;
}

void engine_onsale_totals_get(const engine *e, engine_onsale_totals *out)
{
    memset(out, 0, sizeof(*out));
    for (uint32_t i = 0; i < e->cfg.showtimes_max; i++) {
        const showtime *st = &e->showtimes[i];
        if (!st->used || st->os == NULL)
            continue;
        out->waiters += st->os->wn;
        if (st->os->q != NULL) {
            out->queues++;
            out->queue_waiting += st->os->q->waiting;
            out->queue_admitted += st->os->q->admitted;
        }
    }
}

engine_queue_user engine_queue_user_get(const engine *e, uint64_t showtime_id, uint64_t user_id,
                                        int64_t now_ms)
{
    engine_queue_user u = {.state = ENGINE_QUEUE_NONE};
    const showtime *st = engine__showtime_find(e, showtime_id);
    const engine__queue *q = st != NULL && st->os != NULL ? st->os->q : NULL;
    uint32_t p = q != NULL ? index_get(q, user_id) : UINT32_MAX;
    if (p == UINT32_MAX)
        return u;
    u.state = place_state(e, q, p, now_ms, &u.admitted_ms);
    if (u.state == ENGINE_QUEUE_WAITING)
        u.position = fen_prefix(q, p) + 1;
    if (u.state == ENGINE_QUEUE_ADMITTED || u.state == ENGINE_QUEUE_LAPSED)
        u.until_ms = engine__add_ms(u.admitted_ms, e->cfg.queue_admit_window_ms);
    return u;
}

size_t engine_queue_bytes(const engine *e, uint64_t showtime_id)
{
    const showtime *st = engine__showtime_find(e, showtime_id);
    const engine__queue *q = st != NULL && st->os != NULL ? st->os->q : NULL;
    if (q == NULL)
        return 0;
    return sizeof(*q) + (size_t)q->cap * (sizeof(uint64_t) + 2 * sizeof(uint32_t)) +
           (q->index != NULL ? ((size_t)q->index_mask + 1) * sizeof(uint32_t) : 0);
}

/* splitmix64: the shuffle's generator (seeded by the record, so replay
 * shuffles the same way). */
static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static int queue_start_apply(engine *e, showtime *st, const engine_record *rec)
{
    engine__queue *q = st->os != NULL ? st->os->q : NULL;
    if (q == NULL || q->started || rec->time_ms < q->start_ms)
        return ENGINE_EREPLAY;
    /* Fisher-Yates over the early places; before the start nobody is
     * admitted, so every place is waiting or left. */
    uint64_t s = rec->u.queue_start.seed;
    for (uint32_t i = q->pre_n; i > 1; i--) {
        uint32_t j = (uint32_t)(splitmix(&s) % i);
        uint64_t u = q->users[i - 1];
        uint32_t x = q->state[i - 1];
        q->users[i - 1] = q->users[j];
        q->state[i - 1] = q->state[j];
        q->users[j] = u;
        q->state[j] = x;
    }
    q->started = true;
    q->credit_milli = 0;
    q->credit_ms = q->start_ms;
    if (q->n > 0) { /* same users, new places: refill the index in place */
        fen_rebuild(q);
        memset(q->index, 0, ((size_t)q->index_mask + 1) * sizeof(q->index[0]));
        for (uint32_t p = 0; p < q->n; p++) {
            if (q->state[p] != QPLACE_LEFT)
                index_put(q, p);
        }
    }
    st->os_dirty = true;
    e->now_ms = rec->time_ms;
    return 0;
}

/* Credit at now_ms: at most one second's worth accrues. */
static uint64_t queue_credit(const engine__queue *q, int64_t now_ms)
{
    int64_t dt = now_ms - q->credit_ms;
    if (dt > 1000)
        dt = 1000;
    uint64_t cap = (uint64_t)q->rate_per_s * 1000,
             c = q->credit_milli + (uint64_t)dt * q->rate_per_s;
    return c < cap ? c : cap;
}

static int queue_admit_apply(engine *e, showtime *st, const engine_record *rec)
{
    engine__queue *q = st->os != NULL ? st->os->q : NULL;
    uint32_t to = rec->u.queue_admit.cursor;
    if (q == NULL || !q->started || to < q->cursor || to > q->n || rec->time_ms < q->start_ms)
        return ENGINE_EREPLAY;
    uint32_t secs = (uint32_t)((rec->time_ms - q->start_ms) / 1000);
    if (secs >= QPLACE_LEFT - 1)
        secs = QPLACE_LEFT - 2;
    for (uint32_t p = q->cursor; p < to; p++) {
        if (q->state[p] != QPLACE_WAITING)
            continue;
        q->state[p] = 1 + secs;
        fen_add(q, p, -1);
        q->waiting--;
        q->admitted++;
    }
    q->cursor = to;
    q->credit_milli = rec->u.queue_admit.credit_milli;
    q->credit_ms = rec->time_ms;
    st->os_dirty = true;
    e->now_ms = rec->time_ms;
    return 0;
}

/* The queue step due on `st`, if any. */
static bool queue_step(int64_t now_ms, showtime *st, uint64_t seed, engine_record *rec)
{
    engine__queue *q = st->os->q;
    if (now_ms >= st->start_ms)
        return false;
    memset(rec, 0, sizeof(*rec));
    rec->time_ms = now_ms;
    if (!q->started) {
        if (now_ms < q->start_ms)
            return false;
        rec->type = ENGINE_REC_QUEUE_START;
        rec->u.queue_start.showtime_id = st->id;
        rec->u.queue_start.seed = seed;
        return true;
    }
    uint64_t credit = queue_credit(q, now_ms);
    uint64_t k = credit / 1000;
    if (k == 0 || q->waiting == 0)
        return false;
    uint32_t p = q->cursor;
    while (k > 0 && p < q->n) {
        if (q->state[p] == QPLACE_WAITING) {
            k--;
            credit -= 1000;
        }
        p++;
    }
    rec->type = ENGINE_REC_QUEUE_ADMIT;
    rec->u.queue_admit.showtime_id = st->id;
    rec->u.queue_admit.cursor = p;
    rec->u.queue_admit.credit_milli = credit;
    return true;
}

engine_result engine_onsale_next(engine *e, int64_t now_ms, uint64_t seed, engine_record *rec)
{
    if (now_ms < e->now_ms)
        return ENGINE_NOT_AVAILABLE;
    while (e->offer_pending_n > 0) {
        showtime *st = &e->showtimes[e->offer_pending[e->offer_pending_n - 1]];
        ENGINE_ASSERT(st->used && st->offer_pending);
        if (st->os != NULL && st->os->wn > 0 && now_ms < st->start_ms) {
            engine_result r = offer_make(e, now_ms, st, rec);
            if (r != ENGINE_NOT_AVAILABLE)
                return r; /* more may fit: it stays marked */
        }
        st->offer_pending = false;
        e->offer_pending_n--;
    }
    for (uint32_t i = 0; i < e->queued_n; i++) {
        showtime *st = &e->showtimes[e->queued[i]];
        ENGINE_ASSERT(st->used && st->os != NULL && st->os->q != NULL);
        if (queue_step(now_ms, st, seed, rec)) {
            ENGINE_ASSERT(engine__onsale_apply(e, rec) == 0); /* neither step allocates */
            return ENGINE_OK;
        }
    }
    return ENGINE_NOT_AVAILABLE;
}

/* ---- Replay ---------------------------------------------------------------------- */

int engine__onsale_apply(engine *e, const engine_record *rec)
{
    uint64_t id;
    switch (rec->type) {
    case ENGINE_REC_SHOWTIME_PRICE:
        id = rec->u.showtime_price.showtime_id;
        break;
    case ENGINE_REC_WAITLIST_JOIN:
        id = rec->u.waitlist_join.showtime_id;
        break;
    case ENGINE_REC_WAITLIST_OFFER:
        id = rec->u.hold_place.showtime_id;
        break;
    case ENGINE_REC_WAITLIST_LEAVE:
    case ENGINE_REC_QUEUE_JOIN:
    case ENGINE_REC_QUEUE_LEAVE:
        id = rec->u.onsale_user.showtime_id;
        break;
    case ENGINE_REC_QUEUE_SET:
        id = rec->u.queue_set.showtime_id;
        break;
    case ENGINE_REC_QUEUE_START:
        id = rec->u.queue_start.showtime_id;
        break;
    case ENGINE_REC_QUEUE_ADMIT:
        id = rec->u.queue_admit.showtime_id;
        break;
    default:
        return ENGINE_EREPLAY;
    }
    showtime *st = engine__showtime_find(e, id);
    if (st == NULL || rec->time_ms < e->now_ms)
        return ENGINE_EREPLAY;
    engine_record scratch;
    int32_t wi;
    switch (rec->type) {
    case ENGINE_REC_SHOWTIME_PRICE:
        return engine_showtime_price_set(e, rec->time_ms, id, rec->u.showtime_price.prices,
                                         rec->u.showtime_price.price_count, &scratch) == ENGINE_OK
                   ? 0
                   : ENGINE_EREPLAY;
    case ENGINE_REC_WAITLIST_JOIN:
        return waitlist_join_apply(e, st, rec);
    case ENGINE_REC_WAITLIST_LEAVE:
        wi = waiter_find(st->os, rec->u.onsale_user.user_id);
        if (wi < 0)
            return ENGINE_EREPLAY;
        waiter_remove(st, (uint32_t)wi);
        e->now_ms = rec->time_ms;
        return 0;
    case ENGINE_REC_WAITLIST_OFFER:
        return offer_apply(e, st, rec);
    case ENGINE_REC_QUEUE_SET:
        return queue_set_apply(e, st, rec);
    case ENGINE_REC_QUEUE_JOIN:
        return queue_join_apply(e, st, rec);
    case ENGINE_REC_QUEUE_LEAVE:
        return queue_leave_apply(e, st, rec);
    case ENGINE_REC_QUEUE_START:
        return queue_start_apply(e, st, rec);
    case ENGINE_REC_QUEUE_ADMIT:
        return queue_admit_apply(e, st, rec);
    default:
        return ENGINE_EREPLAY;
    }
}

/* ---- Digest and invariants ---------------------------------------------------------- */

uint64_t engine__onsale_digest(const showtime *st)
{
    const engine__onsale *os = st->os;
    if (os == NULL)
        return 0;
    uint64_t h = XXH3_64bits_withSeed(&st->id, sizeof(st->id), 0x4f4e53414c45ull);
    for (uint32_t i = 0; i < os->wn; i++) {
        uint64_t v[4] = {os->w[i].user_id, (uint64_t)os->w[i].joined_ms, os->w[i].count,
                         os->w[i].category};
        h = XXH3_64bits_withSeed(v, sizeof(v), h);
    }
    const engine__queue *q = os->q;
    if (q != NULL) {
        uint64_t v[10] = {q->rate_per_s,   (uint64_t)q->start_ms,
                          q->started,      q->n,
                          q->pre_n,        q->cursor,
                          q->waiting,      q->admitted,
                          q->credit_milli, (uint64_t)q->credit_ms};
        h = XXH3_64bits_withSeed(v, sizeof(v), h);
        h = XXH3_64bits_withSeed(q->users, (size_t)q->n * sizeof(q->users[0]), h);
        h = XXH3_64bits_withSeed(q->state, (size_t)q->n * sizeof(q->state[0]), h);
    }
    return h;
}

#define OS_CHECK(c, what) ENGINE_ASSERT((c) && what)

void engine__onsale_check(const engine *e, const showtime *st)
{
    uint32_t slot = (uint32_t)(st - e->showtimes);
    bool pending_listed = false;
    for (uint32_t i = 0; i < e->offer_pending_n; i++)
        pending_listed |= e->offer_pending[i] == slot;
    OS_CHECK(pending_listed == st->offer_pending, "offer-pending stack matches the marks");
    const engine__onsale *os = st->os;
    bool queued = false;
    for (uint32_t i = 0; i < e->queued_n; i++)
        queued |= e->queued[i] == slot;
    OS_CHECK(queued == (os != NULL && os->q != NULL), "queue list = showtimes with a queue");
    if (os == NULL)
        return;
    OS_CHECK(os->wn > 0 || os->q != NULL, "empty on-sale state is freed");
    const engine__layout *l = engine__showtime_layout(e, st);
    for (uint32_t i = 0; i < os->wn; i++) {
        const engine__waiter *w = &os->w[i];
        OS_CHECK(w->count >= 1 && w->count <= ENGINE_HOLD_SEATS_MAX, "waiter count");
        OS_CHECK(w->category == ENGINE_CATEGORY_ANY || w->category < l->category_count,
                 "waiter category");
        OS_CHECK(i == 0 || os->w[i - 1].joined_ms <= w->joined_ms, "waiting list in join order");
        for (uint32_t j = 0; j < i; j++)
            OS_CHECK(os->w[j].user_id != w->user_id, "one place per user on a waiting list");
    }
    const engine__queue *q = os->q;
    if (q == NULL)
        return;
    OS_CHECK(q->n <= q->cap && q->cursor <= q->n && q->pre_n <= q->n, "queue bounds");
    OS_CHECK(q->started || q->cursor == 0, "nobody admitted before the start");
    uint32_t waiting = 0, live = 0;
    for (uint32_t p = 0; p < q->n; p++) {
        bool w = q->state[p] == QPLACE_WAITING;
        waiting += w;
        OS_CHECK(!w || p >= q->cursor, "places before the cursor are not waiting");
        OS_CHECK(fen_prefix(q, p + 1) - fen_prefix(q, p) == (uint32_t)w,
                 "Fenwick tree = waiting places");
        if (q->state[p] != QPLACE_LEFT) {
            live++;
            OS_CHECK(index_get(q, q->users[p]) == p, "index maps every live place");
        }
    }
    OS_CHECK(waiting == q->waiting, "waiting count = waiting places");
    uint32_t indexed = 0;
    for (uint32_t i = 0; q->index != NULL && i <= q->index_mask; i++)
        indexed += q->index[i] != 0;
    OS_CHECK(indexed == live, "index holds exactly the live places");
}

/* ---- Snapshot items ---------------------------------------------------------------- */
/* ONSALE u8 1 | u32 waiters | waiters x (u64 user | i64 joined_ms | u8 count | u8 category) |
 *        u8 has_queue | [u32 rate | i64 start_ms | u8 started | u32 places | u32 pre_n |
 *        u32 cursor | u32 admitted | u64 credit_milli | i64 credit_ms |
 *        places x (u64 user | u32 state)] */

size_t engine__onsale_item_size(const showtime *st)
{
    const engine__onsale *os = st->os;
    size_t n = 1 + 4 + 1;
    if (os == NULL)
        return n;
    n += (size_t)os->wn * 18;
    if (os->q != NULL)
        n += 4 + 8 + 1 + 4 * 4 + 8 + 8 + (size_t)os->q->n * 12;
    return n;
}

void engine__onsale_item_encode(engine__wbuf *w, const showtime *st)
{
    const engine__onsale *os = st->os;
    engine__put_u8(w, ONSALE_ITEM_VERSION);
    engine__put_u32(w, os != NULL ? os->wn : 0);
    for (uint32_t i = 0; os != NULL && i < os->wn; i++) {
        engine__put_u64(w, os->w[i].user_id);
        engine__put_u64(w, (uint64_t)os->w[i].joined_ms);
        engine__put_u8(w, os->w[i].count);
        engine__put_u8(w, os->w[i].category);
    }
    const engine__queue *q = os != NULL ? os->q : NULL;
    engine__put_u8(w, q != NULL);
    if (q == NULL)
        return;
    engine__put_u32(w, q->rate_per_s);
    engine__put_u64(w, (uint64_t)q->start_ms);
    engine__put_u8(w, q->started);
    engine__put_u32(w, q->n);
    engine__put_u32(w, q->pre_n);
    engine__put_u32(w, q->cursor);
    engine__put_u32(w, q->admitted);
    engine__put_u64(w, q->credit_milli);
    engine__put_u64(w, (uint64_t)q->credit_ms);
    for (uint32_t p = 0; p < q->n; p++) {
        engine__put_u64(w, q->users[p]);
        engine__put_u32(w, q->state[p]);
    }
}

int engine__onsale_item_restore(engine *e, showtime *st, const uint8_t *value, uint32_t len)
{
    engine__rbuf r = {.p = value, .len = len};
    if (st->os != NULL || engine__get_u8(&r) != ONSALE_ITEM_VERSION)
        return ENGINE_EDECODE;
    const engine__layout *l = engine__showtime_layout(e, st);
    uint32_t wn = engine__get_u32(&r);
    if (r.bad || wn > e->cfg.waitlist_max || (size_t)wn * 18 > len)
        return ENGINE_EDECODE;
    engine__onsale *os = calloc(1, sizeof(*os));
    if (os == NULL)
        return ENGINE_ENOMEM;
    st->os = os;
    int rc = 0;
    if (wn > 0) {
        os->w = calloc(wn, sizeof(*os->w));
        if (os->w == NULL)
            rc = ENGINE_ENOMEM;
        os->wcap = wn;
    }
    for (uint32_t i = 0; rc == 0 && i < wn; i++) {
        engine__waiter *w = &os->w[i];
        w->user_id = engine__get_u64(&r);
        w->joined_ms = (int64_t)engine__get_u64(&r);
        w->count = engine__get_u8(&r);
        w->category = engine__get_u8(&r);
        if (w->count < 1 || w->count > ENGINE_HOLD_SEATS_MAX ||
            (w->category != ENGINE_CATEGORY_ANY && w->category >= l->category_count) ||
            waiter_find(os, w->user_id) >= 0)
            rc = ENGINE_EDECODE;
        else
            os->wn++;
    }
    uint8_t has_q = engine__get_u8(&r);
    if (rc == 0 && has_q == 1) {
        engine__queue *q = calloc(1, sizeof(*q));
        if (q == NULL) {
            rc = ENGINE_ENOMEM;
        } else {
            os->q = q;
            q->rate_per_s = engine__get_u32(&r);
            q->start_ms = (int64_t)engine__get_u64(&r);
            q->started = engine__get_u8(&r) != 0;
            uint32_t n = engine__get_u32(&r);
            q->pre_n = engine__get_u32(&r);
            q->cursor = engine__get_u32(&r);
            q->admitted = engine__get_u32(&r);
            q->credit_milli = engine__get_u64(&r);
            q->credit_ms = (int64_t)engine__get_u64(&r);
            if (r.bad || q->rate_per_s == 0 || n > e->cfg.queue_slots_max ||
                (size_t)n * 12 != r.len - r.pos || q->pre_n > n || q->cursor > n ||
                (!q->started && q->cursor != 0))
                rc = ENGINE_EDECODE;
            while (rc == 0 && q->n < n) {
                rc = queue_grow(q);
                if (rc != 0)
                    break;
                uint32_t p = q->n++;
                q->users[p] = engine__get_u64(&r);
                q->state[p] = engine__get_u32(&r);
                if (q->state[p] == QPLACE_WAITING) {
                    if (p < q->cursor)
                        rc = ENGINE_EDECODE;
                    q->waiting++;
                }
                if (q->state[p] != QPLACE_LEFT) {
                    if (index_get(q, q->users[p]) != UINT32_MAX)
                        rc = ENGINE_EDECODE;
                    else
                        index_put(q, p);
                }
            }
            if (rc == 0) {
                fen_rebuild(q);
                e->queued[e->queued_n++] = (uint32_t)(st - e->showtimes);
            }
        }
    } else if (rc == 0 && has_q != 0) {
        rc = ENGINE_EDECODE;
    }
    if (rc == 0 && (r.bad || r.pos != r.len))
        rc = ENGINE_EDECODE;
    if (rc == 0 && os->wn == 0 && os->q == NULL) {
        free(os->w);
        free(os);
        st->os = NULL;
        return 0;
    }
    if (rc != 0) {
        if (os->q != NULL && e->queued_n > 0 &&
            e->queued[e->queued_n - 1] == (uint32_t)(st - e->showtimes))
            e->queued_n--;
        queue_free(os->q);
        free(os->w);
        free(os);
        st->os = NULL;
        return rc;
    }
    /* Seats may be free that a waiter wants: look at the next step. */
    engine__onsale_seats_freed(e, st);
    return 0;
}
