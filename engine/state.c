/*
 * state.c - snapshots of engine state: take (copy out) and restore (feed back).
 *
 * Item values, version 1, little-endian (docs/storage.md is the reference):
 *   META      u8 1 | i64 now_ms | u64 next_hold_seq | u32 bookings | u16 id_prefix
 *   LAYOUT    the layout's canonical blob (layout.c)
 *   SHOWTIME  u8 1 | u64 layout_id | i64 start_ms | u8 n | u32 prices[n] |
 *             u32 seat_count | u64 held[words] | u64 sold[words]
 *   HOLD      u8 1 | u64 showtime_id | u64 user_id | i64 created_ms | i64 expires_ms |
 *             u64 amount | u8 n | u32 seats[n]; version 2 (a waiting-list offer) adds
 *             u8 flags (1: offer)
 *   BOOKING   u8 1 | u64 showtime_id | u64 user_id | u64 hold_id | i64 confirmed_ms |
 *             i64 cancelled_ms | u64 amount | u64 refund | u8 payment | u8 status |
 *             u8 n | u32 seats[n] | u8 key_len | key[key_len]
 *   ONSALE    a showtime's waiting list and queue (onsale.c)
 */
#include "engine_internal.h"

#include <stdlib.h>
#include <string.h>

#define ITEM_VERSION 1

struct engine_snapshot {
    bool full;
    engine_item *items;
    size_t n, cap;
    uint8_t *arena;
    size_t arena_len, arena_cap;
    uint64_t *layout_ids, *showtime_ids;
    size_t nlayouts, nshowtimes;
};

/* ---- Encoders ------------------------------------------------------------- */

static size_t showtime_value_size(const engine__layout *l)
{
    return 1 + 8 + 8 + 1 + 4 * (size_t)l->category_count + 4 + 16 * (size_t)l->words;
}

static void showtime_encode(engine__wbuf *w, const showtime *st, const engine__layout *l)
{
    engine__put_u8(w, ITEM_VERSION);
    engine__put_u64(w, st->layout_id);
    engine__put_u64(w, (uint64_t)st->start_ms);
    engine__put_u8(w, (uint8_t)l->category_count);
    for (uint32_t c = 0; c < l->category_count; c++)
        engine__put_u32(w, st->prices[c]);
    engine__put_u32(w, l->seat_count);
    for (uint32_t i = 0; i < l->words; i++)
        engine__put_u64(w, st->held[i]);
    for (uint32_t i = 0; i < l->words; i++)
        engine__put_u64(w, st->sold[i]);
}

enum { HOLD_VALUE_MAX = 1 + 5 * 8 + 1 + 4 * ENGINE_HOLD_SEATS_MAX + 1 };
enum { BOOKING_VALUE_MAX = 1 + 8 * 7 + 3 + 4 * ENGINE_HOLD_SEATS_MAX + 1 + ENGINE_IDEM_KEY_MAX };
enum { META_VALUE_SIZE = 1 + 8 + 8 + 4 + 2 };

static void hold_encode(engine__wbuf *w, const hold *h)
{
    engine__put_u8(w, h->offer ? 2 : ITEM_VERSION);
    engine__put_u64(w, h->showtime_id);
    engine__put_u64(w, h->user_id);
    engine__put_u64(w, (uint64_t)h->created_ms);
    engine__put_u64(w, (uint64_t)h->expires_ms);
    engine__put_u64(w, h->amount);
    engine__put_u8(w, (uint8_t)h->seat_count);
    for (uint32_t i = 0; i < h->seat_count; i++)
        engine__put_u32(w, h->seats[i]);
    if (h->offer)
        engine__put_u8(w, 1);
}

static void booking_encode(engine__wbuf *w, const engine_booking_info *b)
{
    engine__put_u8(w, ITEM_VERSION);
    engine__put_u64(w, b->showtime_id);
    engine__put_u64(w, b->user_id);
    engine__put_u64(w, b->hold_id);
    engine__put_u64(w, (uint64_t)b->confirmed_ms);
    engine__put_u64(w, (uint64_t)b->cancelled_ms);
    engine__put_u64(w, b->amount);
    engine__put_u64(w, b->refund);
    engine__put_u8(w, (uint8_t)b->payment);
    engine__put_u8(w, (uint8_t)b->status);
    engine__put_u8(w, (uint8_t)b->seat_count);
    for (uint32_t i = 0; i < b->seat_count; i++)
        engine__put_u32(w, b->seats[i]);
    engine__put_u8(w, (uint8_t)b->idem_key_len);
    engine__put_bytes(w, b->idem_key, b->idem_key_len);
}

/* ---- Take ----------------------------------------------------------------------- */

static bool booking_wanted(const engine *e, uint32_t slot, bool full)
{
    return full || engine__bit_get(e->booking_dirty, slot);
}

/* Appends an item whose value is the next `len` arena bytes (already sized). */
static void item_add(engine_snapshot *s, engine_item_kind kind, uint64_t key, size_t start)
{
    ENGINE_ASSERT(s->n < s->cap);
    s->items[s->n++] = (engine_item){.kind = kind,
                                     .key = key,
                                     .value = (const uint8_t *)(uintptr_t)start,
                                     .len = (uint32_t)(s->arena_len - start)};
}

int engine_snapshot_take(engine *e, bool full, engine_snapshot **out)
{
    /* Pass 1: count items and bytes, so one allocation each suffices. */
    size_t items = 1, bytes = META_VALUE_SIZE, nl = 0, ns = 0;
    for (uint32_t i = 0; i < e->cfg.layouts_max; i++) {
        if (!e->layout_used[i])
            continue;
        nl++;
        if (full || e->layout_dirty[i]) {
            items++;
            bytes += e->layouts[i].blob_len;
        }
    }
    for (uint32_t i = 0; i < e->cfg.showtimes_max; i++) {
        const showtime *st = &e->showtimes[i];
        if (!st->used)
            continue;
        ns++;
        if (full || st->dirty) {
            items++;
            bytes += showtime_value_size(&e->layouts[st->layout_slot]);
        }
        if (st->os_dirty || (full && st->os != NULL)) {
            items++;
            bytes += engine__onsale_item_size(st);
        }
    }
    items += e->heap_n;
    bytes += (size_t)e->heap_n * HOLD_VALUE_MAX;
    for (uint32_t i = 0; i < e->booking_n; i++) {
        if (booking_wanted(e, i, full)) {
            items++;
            bytes += BOOKING_VALUE_MAX;
        }
    }

    engine_snapshot *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return ENGINE_ENOMEM;
    s->full = full;
    s->cap = items;
    s->items = calloc(items, sizeof(*s->items));
    s->arena_cap = bytes;
    s->arena = malloc(bytes > 0 ? bytes : 1);
    s->layout_ids = malloc((nl > 0 ? nl : 1) * sizeof(uint64_t));
    s->showtime_ids = malloc((ns > 0 ? ns : 1) * sizeof(uint64_t));
    if (s->items == NULL || s->arena == NULL || s->layout_ids == NULL || s->showtime_ids == NULL) {
        engine_snapshot_free(s);
        return ENGINE_ENOMEM;
    }

    /* Pass 2: encode. Values are recorded as arena offsets, then turned into
     * pointers at the end. */
    engine__wbuf w = {.p = s->arena, .cap = s->arena_cap};
    size_t start = w.len;
    engine__put_u8(&w, ITEM_VERSION);
    engine__put_u64(&w, (uint64_t)e->now_ms);
    engine__put_u64(&w, e->hold_seq);
    engine__put_u32(&w, e->booking_n);
    engine__put_u16(&w, e->cfg.id_prefix);
    s->arena_len = w.len;
    item_add(s, ENGINE_ITEM_META, 0, start);

    for (uint32_t i = 0; i < e->cfg.layouts_max; i++) {
        if (!e->layout_used[i])
            continue;
        const engine__layout *l = &e->layouts[i];
        s->layout_ids[s->nlayouts++] = l->id;
        if (full || e->layout_dirty[i]) {
            start = w.len;
            engine__put_bytes(&w, l->blob, l->blob_len);
            s->arena_len = w.len;
            item_add(s, ENGINE_ITEM_LAYOUT, l->id, start);
        }
    }
    for (uint32_t i = 0; i < e->cfg.showtimes_max; i++) {
        const showtime *st = &e->showtimes[i];
        if (!st->used)
            continue;
        s->showtime_ids[s->nshowtimes++] = st->id;
        if (full || st->dirty) {
            start = w.len;
            showtime_encode(&w, st, &e->layouts[st->layout_slot]);
            s->arena_len = w.len;
            item_add(s, ENGINE_ITEM_SHOWTIME, st->id, start);
        }
        if (st->os_dirty || (full && st->os != NULL)) {
            start = w.len;
            engine__onsale_item_encode(&w, st);
            s->arena_len = w.len;
            item_add(s, ENGINE_ITEM_ONSALE, st->id, start);
        }
    }
    for (uint32_t i = 0; i < e->heap_n; i++) {
        const hold *h = &e->holds[e->heap[i]];
        start = w.len;
        hold_encode(&w, h);
        s->arena_len = w.len;
        item_add(s, ENGINE_ITEM_HOLD, h->id, start);
    }
    for (uint32_t i = 0; i < e->booking_n; i++) {
        if (!booking_wanted(e, i, full))
            continue;
        start = w.len;
        booking_encode(&w, &e->bookings[i].info);
        s->arena_len = w.len;
        item_add(s, ENGINE_ITEM_BOOKING, e->bookings[i].info.id, start);
    }
    ENGINE_ASSERT(!w.overflow && s->n == s->cap);
    for (size_t i = 0; i < s->n; i++)
        s->items[i].value = s->arena + (uintptr_t)s->items[i].value;

    /* The copy is complete: everything is clean relative to it. */
    for (uint32_t i = 0; i < e->cfg.layouts_max; i++)
        e->layout_dirty[i] = false;
    for (uint32_t i = 0; i < e->cfg.showtimes_max; i++) {
        e->showtimes[i].dirty = false;
        e->showtimes[i].os_dirty = false;
    }
    memset(e->booking_dirty, 0, ENGINE_BITS_WORDS(e->cfg.bookings_max) * sizeof(uint64_t));
    *out = s;
    return 0;
}

bool engine_snapshot_full(const engine_snapshot *s)
{
    return s->full;
}

size_t engine_snapshot_count(const engine_snapshot *s)
{
    return s->n;
}

const engine_item *engine_snapshot_item(const engine_snapshot *s, size_t i)
{
    return i < s->n ? &s->items[i] : NULL;
}

const uint64_t *engine_snapshot_ids(const engine_snapshot *s, engine_item_kind kind, size_t *n)
{
    if (kind == ENGINE_ITEM_LAYOUT) {
        *n = s->nlayouts;
        return s->layout_ids;
    }
    if (kind == ENGINE_ITEM_SHOWTIME) {
        *n = s->nshowtimes;
        return s->showtime_ids;
    }
    *n = 0;
    return NULL;
}

void engine_snapshot_free(engine_snapshot *s)
{
    if (s == NULL)
        return;
    free(s->items);
    free(s->arena);
    free(s->layout_ids);
    free(s->showtime_ids);
    free(s);
}

/* ---- Restore ------------------------------------------------------------------------- */

static bool id_ours(const engine *e, uint64_t id, uint64_t *seq)
{
    *seq = id & ID_SEQ_MASK;
    return (id >> ID_SEQ_BITS) == e->cfg.id_prefix && *seq >= 1;
}

static int restore_meta(engine *e, engine__rbuf *r)
{
    if (engine__get_u8(r) != ITEM_VERSION)
        return ENGINE_EDECODE;
    int64_t now = (int64_t)engine__get_u64(r);
    uint64_t hold_seq = engine__get_u64(r);
    uint32_t bookings = engine__get_u32(r);
    uint16_t prefix = engine__get_u16(r);
    if (r->bad || r->pos != r->len || hold_seq < 1)
        return ENGINE_EDECODE;
    if (e->restore.meta || prefix != e->cfg.id_prefix || bookings > e->cfg.bookings_max ||
        e->layout_ids.count > 0 || e->booking_n > 0)
        return ENGINE_EREPLAY;
    e->restore.meta = true;
    e->restore.now_ms = now;
    e->restore.hold_seq = hold_seq;
    e->now_ms = now;
    e->booking_n = bookings; /* slots fill as BOOKING items arrive */
    return 0;
}

static int restore_showtime(engine *e, uint64_t id, engine__rbuf *r)
{
    if (engine__get_u8(r) != ITEM_VERSION)
        return ENGINE_EDECODE;
    uint64_t layout_id = engine__get_u64(r);
    int64_t start = (int64_t)engine__get_u64(r);
    uint32_t n = engine__get_u8(r);
    if (r->bad || n > ENGINE_CATEGORIES_MAX)
        return ENGINE_EDECODE;
    uint32_t prices[ENGINE_CATEGORIES_MAX] = {0};
    for (uint32_t i = 0; i < n; i++)
        prices[i] = engine__get_u32(r);
    uint32_t seats = engine__get_u32(r);
    if (r->bad)
        return ENGINE_EDECODE;
    engine_record scratch;
    int rc = engine_showtime_create(e, e->now_ms, id, layout_id, start, prices, n, &scratch);
    if (rc != 0)
        return rc < 0 ? rc : ENGINE_EREPLAY;
    showtime *st = engine__showtime_find(e, id);
    const engine__layout *l = &e->layouts[st->layout_slot];
    if (seats != l->seat_count || r->len - r->pos != 16 * (size_t)l->words)
        return ENGINE_EDECODE;
    /* Held seats come back with their holds; the stored held bitmap is
     * kept aside and compared once they have. Sold seats come back here. */
    st->restore_held = calloc(l->words, sizeof(uint64_t));
    if (st->restore_held == NULL)
        return ENGINE_ENOMEM;
    for (uint32_t w = 0; w < l->words; w++)
        st->restore_held[w] = engine__get_u64(r);
    for (uint32_t w = 0; w < l->words; w++) {
        uint64_t sold = engine__get_u64(r);
        uint64_t valid =
            w + 1 < l->words || seats % 64 == 0 ? ~(uint64_t)0 : ((uint64_t)1 << (seats % 64)) - 1;
        if ((sold & ~valid) || (st->restore_held[w] & ~valid) || (sold & l->blocked[w]) ||
            (sold & st->restore_held[w]))
            return ENGINE_EREPLAY;
        for (uint64_t bits = sold; bits != 0; bits &= bits - 1) {
            uint32_t s = w * 64 + (uint32_t)__builtin_ctzll(bits);
            engine__bit_set(st->sold, s);
            st->counts[l->seat_cat[s]].free--;
            st->counts[l->seat_cat[s]].sold++;
            st->row_free[l->seat_row[s]]--;
        }
    }
    return 0;
}

int engine_item_booking_decode(uint64_t key, const uint8_t *value, uint32_t len,
                               engine_booking_info *out)
{
    engine__rbuf rb = {.p = value, .len = len}, *r = &rb;
    engine_booking_info *b = out;
    memset(b, 0, sizeof(*b));
    if (engine__get_u8(r) != ITEM_VERSION)
        return ENGINE_EDECODE;
    b->id = key;
    b->showtime_id = engine__get_u64(r);
    b->user_id = engine__get_u64(r);
    b->hold_id = engine__get_u64(r);
    b->confirmed_ms = (int64_t)engine__get_u64(r);
    b->cancelled_ms = (int64_t)engine__get_u64(r);
    b->amount = engine__get_u64(r);
    b->refund = engine__get_u64(r);
    b->payment = (engine_payment)engine__get_u8(r);
    b->status = (engine_booking_status)engine__get_u8(r);
    b->seat_count = engine__get_u8(r);
    if (r->bad || b->seat_count < 1 || b->seat_count > ENGINE_HOLD_SEATS_MAX)
        return ENGINE_EDECODE;
    for (uint32_t i = 0; i < b->seat_count; i++)
        b->seats[i] = engine__get_u32(r);
    b->idem_key_len = engine__get_u8(r);
    if (r->bad || b->idem_key_len > ENGINE_IDEM_KEY_MAX)
        return ENGINE_EDECODE;
    const uint8_t *k = engine__get_bytes(r, b->idem_key_len);
    if (r->bad || r->pos != r->len)
        return ENGINE_EDECODE;
    if (b->idem_key_len > 0)
        memcpy(b->idem_key, k, b->idem_key_len);
    if (b->payment < ENGINE_PAY_UPI || b->payment > ENGINE_PAY_WALLET ||
        (b->status != ENGINE_BOOKING_STATUS_CONFIRMED &&
         b->status != ENGINE_BOOKING_STATUS_CANCELLED) ||
        b->refund > b->amount)
        return ENGINE_EDECODE;
    return 0;
}

static int restore_booking(engine *e, uint64_t id, const uint8_t *value, uint32_t len)
{
    uint64_t seq;
    if (!id_ours(e, id, &seq) || seq > e->booking_n || e->bookings[seq - 1].info.id != 0)
        return ENGINE_EREPLAY;
    engine_booking_info b;
    int rc = engine_item_booking_decode(id, value, len, &b);
    if (rc != 0)
        return rc;
    e->bookings[seq - 1].info = b;
    return 0;
}

int engine_item_hold_decode(uint64_t key, const uint8_t *value, uint32_t len, engine_hold_info *out)
{
    engine__rbuf rb = {.p = value, .len = len}, *r = &rb;
    memset(out, 0, sizeof(*out));
    uint8_t version = engine__get_u8(r);
    if (version != ITEM_VERSION && version != 2)
        return ENGINE_EDECODE;
    out->id = key;
    out->showtime_id = engine__get_u64(r);
    out->user_id = engine__get_u64(r);
    out->created_ms = (int64_t)engine__get_u64(r);
    out->expires_ms = (int64_t)engine__get_u64(r);
    out->amount = engine__get_u64(r);
    out->seat_count = engine__get_u8(r);
    if (r->bad || out->seat_count < 1 || out->seat_count > ENGINE_HOLD_SEATS_MAX)
        return ENGINE_EDECODE;
    for (uint32_t i = 0; i < out->seat_count; i++)
        out->seats[i] = engine__get_u32(r);
    if (version == 2) {
        uint8_t flags = engine__get_u8(r);
        if (flags != 1)
            return ENGINE_EDECODE;
        out->offer = true;
    }
    if (r->bad || r->pos != r->len)
        return ENGINE_EDECODE;
    return 0;
}

int engine_item_showtime_decode(const uint8_t *value, uint32_t len, engine_showtime_item *out)
{
    engine__rbuf rb = {.p = value, .len = len}, *r = &rb;
    memset(out, 0, sizeof(*out));
    if (engine__get_u8(r) != ITEM_VERSION)
        return ENGINE_EDECODE;
    out->layout_id = engine__get_u64(r);
    out->start_ms = (int64_t)engine__get_u64(r);
    out->price_count = engine__get_u8(r);
    if (r->bad || out->price_count > ENGINE_CATEGORIES_MAX)
        return ENGINE_EDECODE;
    for (uint32_t i = 0; i < out->price_count; i++)
        out->prices[i] = engine__get_u32(r);
    out->seat_count = engine__get_u32(r);
    if (r->bad || out->seat_count < 1 || out->seat_count > ENGINE_SEATS_MAX)
        return ENGINE_EDECODE;
    size_t words = (out->seat_count + 63) / 64;
    if (r->len - r->pos != 16 * words)
        return ENGINE_EDECODE;
    for (size_t w = 0; w < 2 * words; w++) {
        uint32_t n = (uint32_t)__builtin_popcountll(engine__get_u64(r));
        if (w < words)
            out->held += n;
        else
            out->sold += n;
    }
    return 0;
}

static int restore_hold(engine *e, uint64_t id, const uint8_t *value, uint32_t len)
{
    uint64_t seq;
    if (!id_ours(e, id, &seq) || id <= e->restore.last_hold || seq >= e->restore.hold_seq ||
        e->heap_n >= e->cfg.holds_max)
        return ENGINE_EREPLAY;
    engine_hold_info h;
    int rc = engine_item_hold_decode(id, value, len, &h);
    if (rc != 0)
        return rc;
    uint64_t showtime_id = h.showtime_id, user = h.user_id, amount = h.amount;
    int64_t created = h.created_ms, expires = h.expires_ms;
    uint32_t n = h.seat_count;
    const uint32_t *seats = h.seats;
    showtime *st = engine__showtime_find(e, showtime_id);
    if (st == NULL || expires <= created || created > e->restore.now_ms)
        return ENGINE_EREPLAY;
    /* The amount is the prices when the hold was placed: prices may have
     * changed since (engine_showtime_price_set), so it is not re-derived. */
    const engine__layout *l = &e->layouts[st->layout_slot];
    for (uint32_t i = 0; i < n; i++) {
        if (seats[i] >= l->seat_count || engine__bit_get(l->blocked, seats[i]) ||
            engine__bit_get(st->held, seats[i]) || engine__bit_get(st->sold, seats[i]))
            return ENGINE_EREPLAY;
        for (uint32_t j = 0; j < i; j++) {
            if (seats[j] == seats[i])
                return ENGINE_EREPLAY;
        }
    }
    uint32_t slot = engine__hold_insert(e, created, st, id, user, expires, amount, seats, n);
    e->holds[slot].offer = h.offer;
    e->restore.last_hold = id;
    return 0;
}

int engine_restore_item(engine *e, engine_item_kind kind, uint64_t key, const uint8_t *value,
                        uint32_t len)
{
    engine__rbuf r = {.p = value, .len = len};
    if (kind != ENGINE_ITEM_META && !e->restore.meta)
        return ENGINE_EREPLAY;
    switch (kind) {
    case ENGINE_ITEM_META:
        return restore_meta(e, &r);
    case ENGINE_ITEM_LAYOUT: {
        uint8_t *blob = malloc(len > 0 ? len : 1);
        if (blob == NULL)
            return ENGINE_ENOMEM;
        memcpy(blob, value, len);
        if (engine_layout_seat_count(e, key) != 0) {
            free(blob);
            return ENGINE_EREPLAY;
        }
        int rc = engine__layout_install(e, e->now_ms, key, blob, len, NULL);
        if (rc != 0) {
            free(blob);
            return rc < 0 ? rc : rc == ENGINE_BAD_LAYOUT ? ENGINE_EDECODE : ENGINE_EREPLAY;
        }
        return 0;
    }
    case ENGINE_ITEM_SHOWTIME:
        return restore_showtime(e, key, &r);
    case ENGINE_ITEM_BOOKING:
        return restore_booking(e, key, value, len);
    case ENGINE_ITEM_HOLD:
        return restore_hold(e, key, value, len);
    case ENGINE_ITEM_ONSALE: {
        showtime *st = engine__showtime_find(e, key);
        if (st == NULL)
            return ENGINE_EREPLAY;
        return engine__onsale_item_restore(e, st, value, len);
    }
    }
    return ENGINE_EDECODE;
}

/* Every confirmed booking's seats must be sold, every sold seat must belong
 * to exactly one confirmed booking. Claiming a seat clears its sold bit, so
 * a second claim finds it clear; afterwards no sold bit may be left; then
 * the bits are put back. */
static int restore_bookings_check(engine *e)
{
    for (uint32_t i = 0; i < e->booking_n; i++) {
        engine_booking_info *b = &e->bookings[i].info;
        if (b->id == 0)
            return ENGINE_EREPLAY;
        if (b->status != ENGINE_BOOKING_STATUS_CONFIRMED)
            continue;
        showtime *st = engine__showtime_find(e, b->showtime_id);
        if (st == NULL)
            return ENGINE_EREPLAY;
        const engine__layout *l = &e->layouts[st->layout_slot];
        for (uint32_t k = 0; k < b->seat_count; k++) {
            if (b->seats[k] >= l->seat_count || !engine__bit_get(st->sold, b->seats[k]))
                return ENGINE_EREPLAY;
            engine__bit_clear(st->sold, b->seats[k]);
        }
        st->confirmed++;
    }
    for (uint32_t s = 0; s < e->cfg.showtimes_max; s++) {
        const showtime *st = &e->showtimes[s];
        for (uint32_t w = 0; st->used && w < e->layouts[st->layout_slot].words; w++) {
            if (st->sold[w] != 0)
                return ENGINE_EREPLAY; /* sold, but no confirmed booking owns it */
        }
    }
    for (uint32_t i = 0; i < e->booking_n; i++) {
        const engine_booking_info *b = &e->bookings[i].info;
        if (b->status != ENGINE_BOOKING_STATUS_CONFIRMED)
            continue;
        showtime *st = engine__showtime_find(e, b->showtime_id);
        for (uint32_t k = 0; k < b->seat_count; k++)
            engine__bit_set(st->sold, b->seats[k]);
    }
    return 0;
}

int engine_restore_finish(engine *e)
{
    if (!e->restore.meta)
        return ENGINE_EREPLAY;
    /* Bookings: every id 1..n present, every sold seat owned once; then
     * indexed in ascending order so each user's list comes out newest first,
     * refusing a (user, key) pair that appears twice. */
    int rc = restore_bookings_check(e);
    if (rc != 0)
        return rc;
    for (uint32_t i = 0; i < e->booking_n; i++) {
        const engine_booking_info *b = &e->bookings[i].info;
        if (b->idem_key_len > 0 && engine__idem_exists(e, b->user_id, b->idem_key, b->idem_key_len))
            return ENGINE_EREPLAY;
        engine__booking_index(e, i);
    }

    /* Showtimes: stored held bitmaps must equal what the holds rebuilt, and
     * sold seats must all belong to confirmed bookings (engine_check). */
    for (uint32_t s = 0; s < e->cfg.showtimes_max; s++) {
        showtime *st = &e->showtimes[s];
        if (!st->used)
            continue;
        const engine__layout *l = &e->layouts[st->layout_slot];
        bool same = st->restore_held == NULL ||
                    memcmp(st->restore_held, st->held, l->words * sizeof(uint64_t)) == 0;
        free(st->restore_held);
        st->restore_held = NULL;
        if (!same)
            return ENGINE_EREPLAY;
        st->dirty = false;
        st->os_dirty = false;
    }
    e->now_ms = e->restore.now_ms;
    e->hold_seq = e->restore.hold_seq;
    for (uint32_t i = 0; i < e->cfg.layouts_max; i++)
        e->layout_dirty[i] = false;
    memset(e->booking_dirty, 0, ENGINE_BITS_WORDS(e->cfg.bookings_max) * sizeof(uint64_t));
    memset(&e->restore, 0, sizeof(e->restore));
    return engine_check(e);
}
