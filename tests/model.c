/*
 * model.c - the naive reference model (see model.h).
 *
 * Style rule for this file: if a smarter data structure would make a line
 * shorter but the reader has to think about whether it is right, use the
 * dumb one. Speed only matters as far as the model test has a time budget,
 * and the places that pay for it say so.
 */
#include "model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SEQ_BITS 48
#define SEQ_MASK ((UINT64_C(1) << SEQ_BITS) - 1)

typedef struct m_layout {
    uint64_t id;
    uint32_t seat_count, row_count, category_count, best_row;
    engine_seat_spec *seats;
    char (*row_labels)[ENGINE_LABEL_MAX];
    char category_names[ENGINE_CATEGORIES_MAX][ENGINE_NAME_MAX];
    uint32_t min_col, max_col; /* over every seat, blocked ones included */
} m_layout;

typedef struct m_showtime {
    uint64_t id;
    m_layout *layout;
    int64_t start_ms;
    uint32_t prices[ENGINE_CATEGORIES_MAX];
    uint8_t *state; /* engine_seat_state, one byte per seat */
} m_showtime;

typedef struct m_hold {
    engine_hold_info info;
    bool live;
} m_hold;

typedef struct m_user {
    uint64_t id;
    uint64_t *bookings; /* booking seqs, ascending */
    size_t count, cap;
} m_user;

struct model {
    engine_config cfg;
    int64_t now;

    m_layout **layouts; /* existing layouts, unordered */
    size_t layout_count, layout_cap;
    m_showtime **showtimes; /* existing showtimes, unordered */
    size_t showtime_count, showtime_cap;

    m_hold *holds; /* every hold ever placed; holds[seq - 1] */
    size_t hold_count, hold_cap;
    uint64_t *live; /* seqs of live holds, unordered */
    size_t live_count, live_cap;

    engine_booking_info *bookings; /* every booking ever made; bookings[seq - 1] */
    size_t booking_count, booking_cap;

    m_user *users;
    size_t user_count, user_cap;

    uint8_t *eligible; /* hold_best scratch: one flag per seat */
    size_t eligible_cap;
};

/* The model is test code: running out of memory is not a case it models. */
static void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q) {
        fprintf(stderr, "model: out of memory\n");
        abort();
    }
    return q;
}

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size);
    if (!p) {
        fprintf(stderr, "model: out of memory\n");
        abort();
    }
    return p;
}

static void grow(void **arr, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return;
    size_t n = *cap ? *cap : 8;
    while (n < need)
        n *= 2;
    *arr = xrealloc(*arr, n * elem);
    *cap = n;
}

model *model_create(const engine_config *cfg)
{
    model *m = xcalloc(1, sizeof *m);
    m->cfg = *cfg;
    return m;
}

static void layout_free(m_layout *l)
{
    if (!l)
        return;
    free(l->seats);
    free(l->row_labels);
    free(l);
}

static void showtime_free(m_showtime *s)
{
    if (!s)
        return;
    free(s->state);
    free(s);
}

void model_destroy(model *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->layout_count; i++)
        layout_free(m->layouts[i]);
    for (size_t i = 0; i < m->showtime_count; i++)
        showtime_free(m->showtimes[i]);
    for (size_t i = 0; i < m->user_count; i++)
        free(m->users[i].bookings);
    free(m->layouts);
    free(m->showtimes);
    free(m->holds);
    free(m->live);
    free(m->bookings);
    free(m->users);
    free(m->eligible);
    free(m);
}

const engine_config *model_config(const model *m)
{
    return &m->cfg;
}

int64_t model_now_ms(const model *m)
{
    return m->now;
}

/* ---- Lookups: linear scans ---------------------------------------------- */

static m_layout *find_layout(const model *m, uint64_t id)
{
    for (size_t i = 0; i < m->layout_count; i++)
        if (m->layouts[i]->id == id)
            return m->layouts[i];
    return NULL;
}

static m_showtime *find_showtime(const model *m, uint64_t id)
{
    for (size_t i = 0; i < m->showtime_count; i++)
        if (m->showtimes[i]->id == id)
            return m->showtimes[i];
    return NULL;
}

static m_user *find_user(const model *m, uint64_t id)
{
    for (size_t i = 0; i < m->user_count; i++)
        if (m->users[i].id == id)
            return &m->users[i];
    return NULL;
}

static m_user *get_user(model *m, uint64_t id)
{
    m_user *u = find_user(m, id);
    if (u)
        return u;
    grow((void **)&m->users, &m->user_cap, m->user_count + 1, sizeof *m->users);
    u = &m->users[m->user_count++];
    memset(u, 0, sizeof *u);
    u->id = id;
    return u;
}

static uint64_t make_id(const model *m, uint64_t seq)
{
    return ((uint64_t)m->cfg.id_prefix << SEQ_BITS) | seq;
}

/* The seq of an id this model issued, or 0 if it never issued it. */
static uint64_t issued_seq(const model *m, uint64_t id, size_t issued)
{
    if ((id >> SEQ_BITS) != m->cfg.id_prefix)
        return 0;
    uint64_t seq = id & SEQ_MASK;
    if (seq == 0 || seq > issued)
        return 0;
    return seq;
}

static void live_remove(model *m, uint64_t seq)
{
    for (size_t i = 0; i < m->live_count; i++) {
        if (m->live[i] == seq) {
            m->live[i] = m->live[--m->live_count];
            m->holds[seq - 1].live = false;
            return;
        }
    }
    fprintf(stderr, "model: hold seq %llu is not live\n", (unsigned long long)seq);
    abort();
}

static void set_seats(m_showtime *s, const uint32_t *seats, uint32_t n, uint8_t state)
{
    for (uint32_t i = 0; i < n; i++)
        s->state[seats[i]] = state;
}

static void clear_rec(engine_record *rec, engine_record_type type, int64_t now)
{
    memset(rec, 0, sizeof *rec);
    rec->type = type;
    rec->time_ms = now;
}

/* ---- Layouts --------------------------------------------------------------- */

static bool label_ok(const char *s, size_t max)
{
    size_t n = strnlen(s, max);
    return n >= 1 && n < max;
}

static int cmp_str_ptr(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* True if the n strings are pairwise different. Sorting is the one place
 * the model is not quadratic: a 100,000-seat layout would take minutes. */
static bool all_unique(const char **strs, size_t n)
{
    qsort(strs, n, sizeof *strs, cmp_str_ptr);
    for (size_t i = 1; i < n; i++)
        if (strcmp(strs[i - 1], strs[i]) == 0)
            return false;
    return true;
}

static bool spec_valid(const engine_layout_spec *spec)
{
    if (spec->seat_count < 1 || spec->seat_count > ENGINE_SEATS_MAX || !spec->seats)
        return false;
    if (spec->row_count < 1 || spec->row_count > ENGINE_ROWS_MAX || !spec->row_labels)
        return false;
    if (spec->category_count < 1 || spec->category_count > ENGINE_CATEGORIES_MAX)
        return false;
    if (spec->best_row >= spec->row_count)
        return false;
    for (uint32_t c = 0; c < spec->category_count; c++)
        if (!label_ok(spec->category_names[c], ENGINE_NAME_MAX))
            return false;
    for (uint32_t c = 0; c < spec->category_count; c++)
        for (uint32_t d = c + 1; d < spec->category_count; d++)
            if (strcmp(spec->category_names[c], spec->category_names[d]) == 0)
                return false;
    for (uint32_t r = 0; r < spec->row_count; r++)
        if (!label_ok(spec->row_labels[r], ENGINE_LABEL_MAX))
            return false;

    bool *row_used = xcalloc(spec->row_count, sizeof *row_used);
    bool ok = true;
    for (uint32_t i = 0; i < spec->seat_count && ok; i++) {
        const engine_seat_spec *s = &spec->seats[i];
        if (!label_ok(s->label, ENGINE_LABEL_MAX) || s->row >= spec->row_count ||
            s->category >= spec->category_count || (s->flags & ~ENGINE_SEAT_FLAG_ALL) != 0)
            ok = false;
        else if (i > 0) {
            const engine_seat_spec *p = &spec->seats[i - 1];
            if (s->row < p->row || (s->row == p->row && s->col <= p->col))
                ok = false;
        }
        if (ok)
            row_used[s->row] = true;
    }
    for (uint32_t r = 0; r < spec->row_count && ok; r++)
        if (!row_used[r])
            ok = false;
    free(row_used);
    if (!ok)
        return false;

    size_t n = spec->seat_count > spec->row_count ? spec->seat_count : spec->row_count;
    const char **strs = xcalloc(n, sizeof *strs);
    for (uint32_t i = 0; i < spec->seat_count; i++)
        strs[i] = spec->seats[i].label;
    ok = all_unique(strs, spec->seat_count);
    for (uint32_t r = 0; r < spec->row_count; r++)
        strs[r] = spec->row_labels[r];
    ok = ok && all_unique(strs, spec->row_count);
    free(strs);
    return ok;
}

/*
 * Refusal order (the header lists no order for layouts; the model test never
 * combines two refusals other than TIME_BACKWARDS): TIME_BACKWARDS, EXISTS,
 * BAD_LAYOUT, CAPACITY.
 */
engine_result model_layout_create(model *m, int64_t now_ms, uint64_t layout_id,
                                  const engine_layout_spec *spec, engine_record *rec)
{
    if (now_ms < m->now)
        return ENGINE_TIME_BACKWARDS;
    if (find_layout(m, layout_id))
        return ENGINE_EXISTS;
    if (!spec_valid(spec))
        return ENGINE_BAD_LAYOUT;
    if (m->layout_count >= m->cfg.layouts_max)
        return ENGINE_CAPACITY;

    m_layout *l = xcalloc(1, sizeof *l);
    l->id = layout_id;
    l->seat_count = spec->seat_count;
    l->row_count = spec->row_count;
    l->category_count = spec->category_count;
    l->best_row = spec->best_row;
    l->seats = xcalloc(spec->seat_count, sizeof *l->seats);
    memcpy(l->seats, spec->seats, spec->seat_count * sizeof *l->seats);
    l->row_labels = xcalloc(spec->row_count, sizeof *l->row_labels);
    memcpy(l->row_labels, spec->row_labels, spec->row_count * sizeof *l->row_labels);
    memcpy(l->category_names, spec->category_names, sizeof l->category_names);
    l->min_col = UINT32_MAX;
    l->max_col = 0;
    for (uint32_t i = 0; i < l->seat_count; i++) {
        if (l->seats[i].col < l->min_col)
            l->min_col = l->seats[i].col;
        if (l->seats[i].col > l->max_col)
            l->max_col = l->seats[i].col;
    }
    grow((void **)&m->layouts, &m->layout_cap, m->layout_count + 1, sizeof *m->layouts);
    m->layouts[m->layout_count++] = l;

    m->now = now_ms;
    clear_rec(rec, ENGINE_REC_LAYOUT_CREATE, now_ms);
    rec->u.layout_create.layout_id = layout_id;
    return ENGINE_OK;
}

engine_result model_layout_delete(model *m, int64_t now_ms, uint64_t layout_id, engine_record *rec)
{
    if (now_ms < m->now)
        return ENGINE_TIME_BACKWARDS;
    m_layout *l = find_layout(m, layout_id);
    if (!l)
        return ENGINE_UNKNOWN_LAYOUT;
    for (size_t i = 0; i < m->showtime_count; i++)
        if (m->showtimes[i]->layout == l)
            return ENGINE_LAYOUT_IN_USE;
    for (size_t i = 0; i < m->layout_count; i++) {
        if (m->layouts[i] == l) {
            m->layouts[i] = m->layouts[--m->layout_count];
            break;
        }
    }
    layout_free(l);
    m->now = now_ms;
    clear_rec(rec, ENGINE_REC_LAYOUT_DELETE, now_ms);
    rec->u.layout_delete.layout_id = layout_id;
    return ENGINE_OK;
}

/* ---- Showtimes ---------------------------------------------------------------- */

engine_result model_showtime_create(model *m, int64_t now_ms, uint64_t showtime_id,
                                    uint64_t layout_id, int64_t start_ms, const uint32_t *prices,
                                    uint32_t price_count, engine_record *rec)
{
    if (now_ms < m->now)
        return ENGINE_TIME_BACKWARDS;
    if (find_showtime(m, showtime_id))
        return ENGINE_EXISTS;
    m_layout *l = find_layout(m, layout_id);
    if (!l)
        return ENGINE_UNKNOWN_LAYOUT;
    if (price_count != l->category_count)
        return ENGINE_BAD_PRICES;
    if (m->showtime_count >= m->cfg.showtimes_max)
        return ENGINE_CAPACITY;

    m_showtime *s = xcalloc(1, sizeof *s);
    s->id = showtime_id;
    s->layout = l;
    s->start_ms = start_ms;
    memcpy(s->prices, prices, price_count * sizeof *prices);
    s->state = xcalloc(l->seat_count, 1);
    for (uint32_t i = 0; i < l->seat_count; i++)
        s->state[i] = (l->seats[i].flags & ENGINE_SEAT_FLAG_BLOCKED) ? ENGINE_SEAT_UNSELLABLE
                                                                     : ENGINE_SEAT_FREE;
    grow((void **)&m->showtimes, &m->showtime_cap, m->showtime_count + 1, sizeof *m->showtimes);
    m->showtimes[m->showtime_count++] = s;

    m->now = now_ms;
    clear_rec(rec, ENGINE_REC_SHOWTIME_CREATE, now_ms);
    rec->u.showtime_create.showtime_id = showtime_id;
    rec->u.showtime_create.layout_id = layout_id;
    rec->u.showtime_create.start_ms = start_ms;
    rec->u.showtime_create.price_count = price_count;
    memcpy(rec->u.showtime_create.prices, prices, price_count * sizeof *prices);
    return ENGINE_OK;
}

engine_result model_showtime_delete(model *m, int64_t now_ms, uint64_t showtime_id,
                                    engine_record *rec)
{
    if (now_ms < m->now)
        return ENGINE_TIME_BACKWARDS;
    m_showtime *s = find_showtime(m, showtime_id);
    if (!s)
        return ENGINE_UNKNOWN_SHOWTIME;
    for (size_t i = 0; i < m->live_count; i++)
        if (m->holds[m->live[i] - 1].info.showtime_id == showtime_id)
            return ENGINE_SHOWTIME_IN_USE;
    /* Every booking ever made: cancelled ones of an earlier showtime with the
     * same id do not count, confirmed ones of this showtime do. */
    for (size_t i = 0; i < m->booking_count; i++)
        if (m->bookings[i].showtime_id == showtime_id &&
            m->bookings[i].status == ENGINE_BOOKING_STATUS_CONFIRMED)
            return ENGINE_SHOWTIME_IN_USE;
    for (size_t i = 0; i < m->showtime_count; i++) {
        if (m->showtimes[i] == s) {
            m->showtimes[i] = m->showtimes[--m->showtime_count];
            break;
        }
    }
    showtime_free(s);
    m->now = now_ms;
    clear_rec(rec, ENGINE_REC_SHOWTIME_DELETE, now_ms);
    rec->u.showtime_delete.showtime_id = showtime_id;
    return ENGINE_OK;
}

/* ---- Holds ----------------------------------------------------------------------- */

static bool pools_full(const model *m)
{
    return m->live_count >= m->cfg.holds_max ||
           m->live_count + m->booking_count >= m->cfg.bookings_max;
}

/* Creates the hold; seats must be free. Fills the HOLD_PLACE record. */
static void hold_create(model *m, int64_t now_ms, m_showtime *s, uint64_t user_id,
                        const uint32_t *seats, uint32_t n, engine_record *rec)
{
    grow((void **)&m->holds, &m->hold_cap, m->hold_count + 1, sizeof *m->holds);
    uint64_t seq = ++m->hold_count;
    m_hold *h = &m->holds[seq - 1];
    memset(h, 0, sizeof *h);
    h->live = true;
    h->info.id = make_id(m, seq);
    h->info.showtime_id = s->id;
    h->info.user_id = user_id;
    h->info.created_ms = now_ms;
    h->info.expires_ms = now_ms + (int64_t)m->cfg.hold_ttl_ms;
    h->info.amount = 0;
    for (uint32_t i = 0; i < n; i++)
        h->info.amount += s->prices[s->layout->seats[seats[i]].category];
    h->info.seat_count = n;
    memcpy(h->info.seats, seats, n * sizeof *seats);
    set_seats(s, seats, n, ENGINE_SEAT_HELD);

    grow((void **)&m->live, &m->live_cap, m->live_count + 1, sizeof *m->live);
    m->live[m->live_count++] = seq;

    m->now = now_ms;
    clear_rec(rec, ENGINE_REC_HOLD_PLACE, now_ms);
    rec->u.hold_place.hold_id = h->info.id;
    rec->u.hold_place.showtime_id = s->id;
    rec->u.hold_place.user_id = user_id;
    rec->u.hold_place.expires_ms = h->info.expires_ms;
    rec->u.hold_place.amount = h->info.amount;
    rec->u.hold_place.seat_count = n;
    memcpy(rec->u.hold_place.seats, seats, n * sizeof *seats);
}

engine_result model_hold_place(model *m, int64_t now_ms, uint64_t showtime_id, uint64_t user_id,
                               const uint32_t *seats, uint32_t seat_count, uint32_t *conflicts,
                               uint32_t *conflict_count, engine_record *rec)
{
    if (conflict_count)
        *conflict_count = 0;
    if (now_ms < m->now)
        return ENGINE_TIME_BACKWARDS;
    m_showtime *s = find_showtime(m, showtime_id);
    if (!s)
        return ENGINE_UNKNOWN_SHOWTIME;
    if (now_ms >= s->start_ms)
        return ENGINE_SHOW_STARTED;
    if (seat_count == 0 || seat_count > m->cfg.max_seats_per_hold)
        return ENGINE_BAD_COUNT;
    for (uint32_t i = 0; i < seat_count; i++)
        if (seats[i] >= s->layout->seat_count)
            return ENGINE_UNKNOWN_SEAT;
    for (uint32_t i = 0; i < seat_count; i++)
        for (uint32_t j = i + 1; j < seat_count; j++)
            if (seats[i] == seats[j])
                return ENGINE_DUPLICATE_SEAT;

    uint32_t n = 0;
    for (uint32_t i = 0; i < seat_count; i++) {
        if (s->state[seats[i]] == ENGINE_SEAT_UNSELLABLE) {
            if (conflicts)
                conflicts[n] = seats[i];
            n++;
        }
    }
    if (n > 0) {
        if (conflict_count)
            *conflict_count = n;
        return ENGINE_SEAT_BLOCKED;
    }
    for (uint32_t i = 0; i < seat_count; i++) {
        if (s->state[seats[i]] == ENGINE_SEAT_HELD || s->state[seats[i]] == ENGINE_SEAT_SOLD) {
            if (conflicts)
                conflicts[n] = seats[i];
            n++;
        }
    }
    if (n > 0) {
        if (conflict_count)
            *conflict_count = n;
        return ENGINE_SEAT_TAKEN;
    }
    if (pools_full(m))
        return ENGINE_CAPACITY;

    hold_create(m, now_ms, s, user_id, seats, seat_count, rec);
    return ENGINE_OK;
}

static bool seat_eligible(const m_showtime *s, uint32_t i, uint32_t category, uint32_t options)
{
    const engine_seat_spec *sp = &s->layout->seats[i];
    if (s->state[i] != ENGINE_SEAT_FREE)
        return false;
    if (sp->category != category)
        return false;
    if (sp->flags & ENGINE_SEAT_FLAG_BLOCKED)
        return false;
    if (!(options & ENGINE_BEST_ALLOW_ACCESSIBLE) &&
        (sp->flags & (ENGINE_SEAT_FLAG_ACCESSIBLE | ENGINE_SEAT_FLAG_COMPANION)))
        return false;
    return true;
}

/* The best-available priority key, compared lexicographically: smaller wins. */
typedef struct best_key {
    uint64_t k[5];
} best_key;

static bool key_less(const best_key *a, const best_key *b)
{
    for (int i = 0; i < 5; i++)
        if (a->k[i] != b->k[i])
            return a->k[i] < b->k[i];
    return false;
}

engine_result model_hold_best(model *m, int64_t now_ms, uint64_t showtime_id, uint64_t user_id,
                              uint32_t count, uint32_t category, uint32_t options,
                              engine_record *rec)
{
    if (now_ms < m->now)
        return ENGINE_TIME_BACKWARDS;
    m_showtime *s = find_showtime(m, showtime_id);
    if (!s)
        return ENGINE_UNKNOWN_SHOWTIME;
    if (now_ms >= s->start_ms)
        return ENGINE_SHOW_STARTED;
    if (count == 0 || count > m->cfg.max_seats_per_hold)
        return ENGINE_BAD_COUNT;
    const m_layout *l = s->layout;
    if (category >= l->category_count)
        return ENGINE_UNKNOWN_CATEGORY;

    grow((void **)&m->eligible, &m->eligible_cap, l->seat_count, 1);
    uint8_t *ok = m->eligible;
    for (uint32_t i = 0; i < l->seat_count; i++)
        ok[i] = seat_eligible(s, i, category, options);

    /* Walk every run of eligible seats (same row, columns one apart) and
     * score every block of `count` seats inside it: O(seats) per call, and
     * the 100,000-seat showtime pays for it, so the loop stays plain. */
    bool found = false;
    best_key best = {{0}};
    uint32_t best_first = 0;
    uint64_t centre2 = (uint64_t)l->min_col + l->max_col;
    uint32_t i = 0;
    while (i < l->seat_count) {
        if (!ok[i]) {
            i++;
            continue;
        }
        uint32_t run_first = i, run_last = i;
        while (run_last + 1 < l->seat_count && ok[run_last + 1] &&
               l->seats[run_last + 1].row == l->seats[run_last].row &&
               l->seats[run_last + 1].col == l->seats[run_last].col + 1)
            run_last++;
        i = run_last + 1;
        if (run_last - run_first + 1 < count)
            continue;
        uint32_t row = l->seats[run_first].row;
        for (uint32_t b = run_first; b + count - 1 <= run_last; b++) {
            uint32_t e = b + count - 1;
            uint32_t left = b - run_first, right = run_last - e;
            uint64_t span2 = (uint64_t)l->seats[b].col + l->seats[e].col;
            best_key k;
            k.k[0] = (left == 1 || right == 1) ? 1 : 0;
            k.k[1] = row > l->best_row ? row - l->best_row : l->best_row - row;
            k.k[2] = row > l->best_row ? 0 : 1;
            k.k[3] = span2 > centre2 ? span2 - centre2 : centre2 - span2;
            k.k[4] = b;
            if (!found || key_less(&k, &best)) {
                best = k;
                best_first = b;
                found = true;
            }
        }
    }
    if (!found)
        return ENGINE_NOT_AVAILABLE;
    if (pools_full(m))
        return ENGINE_CAPACITY;

    uint32_t seats[ENGINE_HOLD_SEATS_MAX];
    for (uint32_t k = 0; k < count; k++)
        seats[k] = best_first + k;
    hold_create(m, now_ms, s, user_id, seats, count, rec);
    return ENGINE_OK;
}

/* UNKNOWN_HOLD, HOLD_ENDED or OK with *out the hold. */
static engine_result hold_lookup(model *m, uint64_t hold_id, m_hold **out)
{
    uint64_t seq = issued_seq(m, hold_id, m->hold_count);
    if (seq == 0)
        return ENGINE_UNKNOWN_HOLD;
    if (!m->holds[seq - 1].live)
        return ENGINE_HOLD_ENDED;
    *out = &m->holds[seq - 1];
    return ENGINE_OK;
}

engine_result model_hold_extend(model *m, int64_t now_ms, uint64_t hold_id, uint64_t user_id,
                                engine_record *rec)
{
    if (now_ms < m->now)
        return ENGINE_TIME_BACKWARDS;
    m_hold *h = NULL;
    engine_result r = hold_lookup(m, hold_id, &h);
    if (r != ENGINE_OK)
        return r;
    if (h->info.user_id != user_id)
        return ENGINE_NOT_OWNER;
    if (now_ms >= h->info.expires_ms)
        return ENGINE_HOLD_EXPIRED;
    int64_t want = now_ms + (int64_t)m->cfg.hold_ttl_ms;
    int64_t cap = h->info.created_ms + (int64_t)m->cfg.hold_max_lifetime_ms;
    int64_t next = want < cap ? want : cap;
    if (next <= h->info.expires_ms)
        return ENGINE_HOLD_EXTEND_LIMIT;
    h->info.expires_ms = next;
    m->now = now_ms;
    clear_rec(rec, ENGINE_REC_HOLD_EXTEND, now_ms);
    rec->u.hold_extend.hold_id = hold_id;
    rec->u.hold_extend.expires_ms = next;
    return ENGINE_OK;
}

/* Ends a live hold (release or expiry): its seats go back to free. */
static void hold_end(model *m, m_hold *h)
{
    m_showtime *s = find_showtime(m, h->info.showtime_id);
    if (!s) {
        fprintf(stderr, "model: live hold on a missing showtime\n");
        abort();
    }
    set_seats(s, h->info.seats, h->info.seat_count, ENGINE_SEAT_FREE);
    live_remove(m, h->info.id & SEQ_MASK);
}

engine_result model_hold_release(model *m, int64_t now_ms, uint64_t hold_id, uint64_t user_id,
                                 engine_record *rec)
{
    if (now_ms < m->now)
        return ENGINE_TIME_BACKWARDS;
    m_hold *h = NULL;
    engine_result r = hold_lookup(m, hold_id, &h);
    if (r != ENGINE_OK)
        return r;
    if (h->info.user_id != user_id)
        return ENGINE_NOT_OWNER;
    hold_end(m, h);
    m->now = now_ms;
    clear_rec(rec, ENGINE_REC_HOLD_RELEASE, now_ms);
    rec->u.hold_end.hold_id = hold_id;
    return ENGINE_OK;
}

size_t model_holds_expire(model *m, int64_t now_ms, engine_record *recs, engine_hold_info *expired,
                          size_t cap)
{
    if (now_ms < m->now)
        return 0;
    size_t n = 0;
    while (n < cap) {
        /* The smallest (expires_ms, id) among live holds due by now. */
        m_hold *pick = NULL;
        for (size_t i = 0; i < m->live_count; i++) {
            m_hold *h = &m->holds[m->live[i] - 1];
            if (h->info.expires_ms > now_ms)
                continue;
            if (!pick || h->info.expires_ms < pick->info.expires_ms ||
                (h->info.expires_ms == pick->info.expires_ms && h->info.id < pick->info.id))
                pick = h;
        }
        if (!pick)
            break;
        if (expired)
            expired[n] = pick->info;
        clear_rec(&recs[n], ENGINE_REC_HOLD_EXPIRE, now_ms);
        recs[n].u.hold_end.hold_id = pick->info.id;
        hold_end(m, pick);
        n++;
    }
    if (n > 0)
        m->now = now_ms;
    return n;
}

/* ---- Bookings --------------------------------------------------------------------- */

engine_result model_booking_confirm(model *m, int64_t now_ms, uint64_t hold_id, uint64_t user_id,
                                    engine_payment payment, const char *idem_key,
                                    uint32_t idem_key_len, uint64_t *booking_id, bool *replayed,
                                    engine_record *rec)
{
    if (replayed)
        *replayed = false;
    if (now_ms < m->now)
        return ENGINE_TIME_BACKWARDS;
    if (payment != ENGINE_PAY_UPI && payment != ENGINE_PAY_CARD && payment != ENGINE_PAY_WALLET)
        return ENGINE_BAD_PAYMENT;
    if (idem_key_len > ENGINE_IDEM_KEY_MAX)
        return ENGINE_BAD_IDEM_KEY;
    if (idem_key_len > 0) {
        /* Every booking the user ever made, cancelled ones included. */
        const m_user *u = find_user(m, user_id);
        for (size_t i = 0; u && i < u->count; i++) {
            const engine_booking_info *b = &m->bookings[u->bookings[i] - 1];
            if (b->idem_key_len != idem_key_len || memcmp(b->idem_key, idem_key, idem_key_len))
                continue;
            if (b->hold_id != hold_id)
                return ENGINE_IDEM_KEY_REUSED;
            if (booking_id)
                *booking_id = b->id;
            if (replayed)
                *replayed = true;
            return ENGINE_OK;
        }
    }
    m_hold *h = NULL;
    engine_result r = hold_lookup(m, hold_id, &h);
    if (r != ENGINE_OK)
        return r;
    if (h->info.user_id != user_id)
        return ENGINE_NOT_OWNER;
    if (now_ms >= h->info.expires_ms)
        return ENGINE_HOLD_EXPIRED;
    if (m->booking_count >= m->cfg.bookings_max)
        return ENGINE_CAPACITY;

    m_showtime *s = find_showtime(m, h->info.showtime_id);
    if (!s) {
        fprintf(stderr, "model: live hold on a missing showtime\n");
        abort();
    }
    grow((void **)&m->bookings, &m->booking_cap, m->booking_count + 1, sizeof *m->bookings);
    uint64_t seq = ++m->booking_count;
    engine_booking_info *b = &m->bookings[seq - 1];
    memset(b, 0, sizeof *b);
    b->id = make_id(m, seq);
    b->showtime_id = h->info.showtime_id;
    b->user_id = user_id;
    b->hold_id = hold_id;
    b->confirmed_ms = now_ms;
    b->cancelled_ms = 0;
    b->amount = h->info.amount;
    b->refund = 0;
    b->payment = payment;
    b->status = ENGINE_BOOKING_STATUS_CONFIRMED;
    b->seat_count = h->info.seat_count;
    memcpy(b->seats, h->info.seats, h->info.seat_count * sizeof *b->seats);
    b->idem_key_len = idem_key_len;
    if (idem_key_len)
        memcpy(b->idem_key, idem_key, idem_key_len);

    m_user *u = get_user(m, user_id);
    grow((void **)&u->bookings, &u->cap, u->count + 1, sizeof *u->bookings);
    u->bookings[u->count++] = seq;

    set_seats(s, h->info.seats, h->info.seat_count, ENGINE_SEAT_SOLD);
    live_remove(m, hold_id & SEQ_MASK);

    m->now = now_ms;
    if (booking_id)
        *booking_id = b->id;
    clear_rec(rec, ENGINE_REC_BOOKING_CONFIRM, now_ms);
    rec->u.booking_confirm.booking_id = b->id;
    rec->u.booking_confirm.hold_id = hold_id;
    rec->u.booking_confirm.payment = payment;
    rec->u.booking_confirm.idem_key_len = idem_key_len;
    if (idem_key_len)
        memcpy(rec->u.booking_confirm.idem_key, idem_key, idem_key_len);
    return ENGINE_OK;
}

uint64_t model_refund(const engine_config *cfg, uint64_t amount, int64_t before_start_ms)
{
    for (uint32_t i = 0; i < cfg->refund_tier_count; i++)
        if (before_start_ms >= cfg->refund_tiers[i].min_before_start_ms)
            return amount * cfg->refund_tiers[i].percent / 100;
    return 0;
}

engine_result model_booking_cancel(model *m, int64_t now_ms, uint64_t booking_id, uint64_t user_id,
                                   uint64_t *refund, engine_record *rec)
{
    if (now_ms < m->now)
        return ENGINE_TIME_BACKWARDS;
    uint64_t seq = issued_seq(m, booking_id, m->booking_count);
    if (seq == 0)
        return ENGINE_UNKNOWN_BOOKING;
    engine_booking_info *b = &m->bookings[seq - 1];
    if (b->user_id != user_id)
        return ENGINE_NOT_OWNER;
    if (b->status == ENGINE_BOOKING_STATUS_CANCELLED)
        return ENGINE_BOOKING_CANCELLED;
    m_showtime *s = find_showtime(m, b->showtime_id);
    if (!s) {
        fprintf(stderr, "model: confirmed booking on a missing showtime\n");
        abort();
    }
    if (now_ms >= s->start_ms)
        return ENGINE_SHOW_STARTED;
    uint64_t amount_back = model_refund(&m->cfg, b->amount, s->start_ms - now_ms);
    b->status = ENGINE_BOOKING_STATUS_CANCELLED;
    b->cancelled_ms = now_ms;
    b->refund = amount_back;
    set_seats(s, b->seats, b->seat_count, ENGINE_SEAT_FREE);
    m->now = now_ms;
    if (refund)
        *refund = amount_back;
    clear_rec(rec, ENGINE_REC_BOOKING_CANCEL, now_ms);
    rec->u.booking_cancel.booking_id = booking_id;
    rec->u.booking_cancel.refund = amount_back;
    return ENGINE_OK;
}

/* ---- Queries ------------------------------------------------------------------------ */

uint32_t model_layout_seat_count(const model *m, uint64_t layout_id)
{
    const m_layout *l = find_layout(m, layout_id);
    return l ? l->seat_count : 0;
}

int32_t model_layout_seat_find(const model *m, uint64_t layout_id, const char *label)
{
    const m_layout *l = find_layout(m, layout_id);
    for (uint32_t i = 0; l && i < l->seat_count; i++)
        if (strcmp(l->seats[i].label, label) == 0)
            return (int32_t)i;
    return -1;
}

const engine_seat_spec *model_layout_seat(const model *m, uint64_t layout_id, uint32_t seat)
{
    const m_layout *l = find_layout(m, layout_id);
    return l && seat < l->seat_count ? &l->seats[seat] : NULL;
}

const char *model_layout_row_label(const model *m, uint64_t layout_id, uint32_t row)
{
    const m_layout *l = find_layout(m, layout_id);
    return l && row < l->row_count ? l->row_labels[row] : NULL;
}

uint32_t model_layout_row_count(const model *m, uint64_t layout_id)
{
    const m_layout *l = find_layout(m, layout_id);
    return l ? l->row_count : 0;
}

uint32_t model_layout_category_count(const model *m, uint64_t layout_id)
{
    const m_layout *l = find_layout(m, layout_id);
    return l ? l->category_count : 0;
}

const char *model_layout_category_name(const model *m, uint64_t layout_id, uint32_t cat)
{
    const m_layout *l = find_layout(m, layout_id);
    return l && cat < l->category_count ? l->category_names[cat] : NULL;
}

bool model_showtime_get(const model *m, uint64_t showtime_id, uint64_t *layout_id,
                        int64_t *start_ms, uint32_t *prices)
{
    const m_showtime *s = find_showtime(m, showtime_id);
    if (!s)
        return false;
    if (layout_id)
        *layout_id = s->layout->id;
    if (start_ms)
        *start_ms = s->start_ms;
    if (prices)
        memcpy(prices, s->prices, sizeof s->prices);
    return true;
}

int model_seat_state_get(const model *m, uint64_t showtime_id, uint32_t seat)
{
    const m_showtime *s = find_showtime(m, showtime_id);
    if (!s || seat >= s->layout->seat_count)
        return -1;
    return s->state[seat];
}

const uint8_t *model_seatmap(const model *m, uint64_t showtime_id, uint32_t *seat_count)
{
    const m_showtime *s = find_showtime(m, showtime_id);
    if (!s)
        return NULL;
    *seat_count = s->layout->seat_count;
    return s->state;
}

int32_t model_availability_get(const model *m, uint64_t showtime_id, engine_category_counts *counts)
{
    const m_showtime *s = find_showtime(m, showtime_id);
    if (!s)
        return -1;
    const m_layout *l = s->layout;
    memset(counts, 0, ENGINE_CATEGORIES_MAX * sizeof *counts);
    for (uint32_t i = 0; i < l->seat_count; i++) {
        engine_category_counts *c = &counts[l->seats[i].category];
        switch (s->state[i]) {
        case ENGINE_SEAT_FREE:
            c->free++;
            break;
        case ENGINE_SEAT_HELD:
            c->held++;
            break;
        case ENGINE_SEAT_SOLD:
            c->sold++;
            break;
        default:
            c->blocked++;
            break;
        }
    }
    return (int32_t)l->category_count;
}

int64_t model_holds_next_expiry_ms(const model *m)
{
    int64_t next = INT64_MAX;
    for (size_t i = 0; i < m->live_count; i++)
        if (m->holds[m->live[i] - 1].info.expires_ms < next)
            next = m->holds[m->live[i] - 1].info.expires_ms;
    return next;
}

uint32_t model_holds_live(const model *m)
{
    return (uint32_t)m->live_count;
}

bool model_hold_get(const model *m, uint64_t hold_id, engine_hold_info *out)
{
    uint64_t seq = issued_seq(m, hold_id, m->hold_count);
    if (seq == 0 || !m->holds[seq - 1].live)
        return false;
    *out = m->holds[seq - 1].info;
    return true;
}

bool model_booking_get(const model *m, uint64_t booking_id, engine_booking_info *out)
{
    uint64_t seq = issued_seq(m, booking_id, m->booking_count);
    if (seq == 0)
        return false;
    *out = m->bookings[seq - 1];
    return true;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

uint32_t model_user_holds(const model *m, uint64_t user_id, uint32_t offset, uint64_t *ids,
                          uint32_t cap)
{
    uint64_t *all = xcalloc(m->live_count, sizeof *all);
    uint32_t total = 0;
    for (size_t i = 0; i < m->live_count; i++)
        if (m->holds[m->live[i] - 1].info.user_id == user_id)
            all[total++] = m->holds[m->live[i] - 1].info.id;
    qsort(all, total, sizeof *all, cmp_u64);
    for (uint32_t i = offset, k = 0; i < total && k < cap; i++, k++)
        ids[k] = all[i];
    free(all);
    return total;
}

uint32_t model_user_bookings(const model *m, uint64_t user_id, uint32_t offset, uint64_t *ids,
                             uint32_t cap)
{
    const m_user *u = find_user(m, user_id);
    if (!u)
        return 0;
    uint32_t total = (uint32_t)u->count;
    /* Newest first: the user's list is in booking order, so walk it backwards. */
    for (uint32_t i = offset, k = 0; i < total && k < cap; i++, k++)
        ids[k] = make_id(m, u->bookings[total - 1 - i]);
    return total;
}

/* ---- Enumeration -------------------------------------------------------------------- */

size_t model_layout_count(const model *m)
{
    return m->layout_count;
}

uint64_t model_layout_id_at(const model *m, size_t i)
{
    return m->layouts[i]->id;
}

size_t model_showtime_count(const model *m)
{
    return m->showtime_count;
}

uint64_t model_showtime_id_at(const model *m, size_t i)
{
    return m->showtimes[i]->id;
}

uint64_t model_live_hold_at(const model *m, size_t i)
{
    return m->holds[m->live[i] - 1].info.id;
}

uint64_t model_holds_issued(const model *m)
{
    return m->hold_count;
}

uint64_t model_bookings_issued(const model *m)
{
    return m->booking_count;
}

uint64_t model_hold_id(const model *m, uint64_t seq)
{
    return make_id(m, seq);
}

uint64_t model_booking_id(const model *m, uint64_t seq)
{
    return make_id(m, seq);
}

uint64_t model_hold_user(const model *m, uint64_t seq)
{
    return m->holds[seq - 1].info.user_id;
}

const engine_booking_info *model_booking_at(const model *m, uint64_t seq)
{
    return &m->bookings[seq - 1];
}
