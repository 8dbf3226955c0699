/*
 * advice.c - advice computed by fixed rules from the engine's seat counts and
 * the catalog, without any external service (issue #7):
 *
 *   GET /api/pricing/suggest?showtime_id=X   admin: a suggested price for each
 *       seat category of a showtime, with the factors that produced it;
 *   GET /api/recommendations                  user: movies for the caller, each
 *       with its soonest upcoming showtime that has a free seat, and why.
 *
 * The rules are the tables of docs/api.md ("Pricing suggestions",
 * "Recommendations"); the constants below are those tables and nothing else
 * decides. Both routes scatter one job per shard (api.c): each shard reads
 * its own engine and its browse copy of the catalog (browse.c) and sends
 * back a bounded summary; the origin merges, reads the few catalog entities
 * the answer names, and answers. Nothing here blocks the loop: every walk is
 * over one shard's showtimes in memory, every catalog read an LMDB read.
 */
#include "net_internal.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define CURRENCY "INR"
#define HOUR_MS  3600000LL

/* ---- Shared helpers ---------------------------------------------------------------- */

static void bad_field(net_request *r, const char *field, const char *reason)
{
    net__problem(r, 400, "invalid-field", "Invalid request field", reason, field, NULL, NULL);
}

static void saturated(net_request *r)
{
    net__problem(r, 503, "overloaded", "Service overloaded", "a shard is saturated; retry shortly",
                 NULL, NULL, "Retry-After: 1\r\n");
}

/* Fractions (0.82) are printed with 4 significant digits, not 17. */
static void respond(net_request *r, json_t *obj)
{
    char *text = json_dumps(obj, JSON_COMPACT | JSON_REAL_PRECISION(4));
    NET_ASSERT(text != NULL);
    net__respond(r, 200, "application/json", NULL, text, strlen(text));
    free(text);
    json_decref(obj);
}

static json_t *time_json(int64_t ms)
{
    char buf[32];
    repl_time_format(ms, ms % 1000 != 0, buf);
    return json_string(buf);
}

/* Brings this shard's browse copy of the catalog up to date. */
static bool browse_fresh(net_shard *sh)
{
    catalog_read *rd = NULL;
    bool ok =
        catalog_read_begin(sh->server->cat, &rd) == 0 && net__browse_index_refresh(sh, rd) == 0;
    catalog_read_end(rd);
    return ok;
}

/* The browse row of showtime `id` on this shard (rows are in id order), or NULL. */
static const catalog_showtime_row *browse_row(const net_browse_index *ix, uint64_t id)
{
    size_t lo = 0, hi = ix->nrows;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (ix->rows[mid].id == id)
            return &ix->rows[mid];
        if (ix->rows[mid].id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* A theater's city in the browse copy (theaters are in id order), or NULL. */
static const char *browse_city(const net_browse_index *ix, uint64_t theater)
{
    size_t lo = 0, hi = ix->ntheaters;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (ix->theaters[mid].id == theater)
            return ix->theaters[mid].key;
        if (ix->theaters[mid].id < theater)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* Seats for sale (not blocked), held and sold over every category. */
static void seats_sum(const engine_category_counts *k, int32_t n, uint32_t *sellable,
                      uint32_t *held, uint32_t *sold)
{
    *sellable = *held = *sold = 0;
    for (int32_t i = 0; i < n; i++) {
        *sellable += k[i].free + k[i].held + k[i].sold;
        *held += k[i].held;
        *sold += k[i].sold;
    }
}

/* ===================================================================================== *
 * GET /api/pricing/suggest                                                              *
 * ===================================================================================== */

enum {
    PS_SAMPLE_MAX = 50,       /* comparable showtimes used, most recent first */
    PS_SMALL_SAMPLE = 3,      /* fewer comparable showtimes: half the effect */
    PS_UNIT = 500,            /* prices move in steps of 500 minor units (₹5) */
    PS_PRICE_MAX = 100000000, /* the API's largest price */
    PS_CHANGE_MIN = -30,      /* the total change is clamped to this ... */
    PS_CHANGE_MAX = 50        /* ... and this, in percent */
};

/* Where comparable showtimes come from, in order of preference. */
enum { SCOPE_MOVIE, SCOPE_THEATER, SCOPE_ALL, SCOPE_COUNT };
static const char *const scope_name[SCOPE_COUNT] = {"same_movie", "same_theater", "all"};
static const char *const scope_text[SCOPE_COUNT] = {"of the same movie", "at the same theater",
                                                    "anywhere"};

typedef struct ps_ctx { /* the request, read by every part */
    uint64_t showtime_id, movie_id, theater_id;
    int64_t now; /* the origin's clock: "started" means start_ms <= now */
} ps_ctx;

typedef struct ps_comp { /* a comparable showtime that has started */
    uint64_t id;
    int64_t start_ms;
    uint32_t sold, sellable;
} ps_comp;

typedef struct ps_out { /* one shard's answer */
    bool owner;         /* this shard's engine has the showtime: the fields below */
    int64_t start_ms;
    uint32_t ncat;
    char names[ENGINE_CATEGORIES_MAX][ENGINE_NAME_MAX];
    uint32_t prices[ENGINE_CATEGORIES_MAX];
    engine_category_counts counts[ENGINE_CATEGORIES_MAX];
    uint32_t ncomp[SCOPE_COUNT];
    ps_comp comp[SCOPE_COUNT][PS_SAMPLE_MAX]; /* each scope's most recent, newest first */
} ps_out;

static bool comp_newer(const ps_comp *a, const ps_comp *b)
{
    return a->start_ms != b->start_ms ? a->start_ms > b->start_ms : a->id > b->id;
}

static int comp_cmp(const void *a, const void *b)
{
    const ps_comp *x = a, *y = b;
    return comp_newer(x, y) ? -1 : comp_newer(y, x) ? 1 : 0;
}

/* Keeps the PS_SAMPLE_MAX newest of what it is given, newest first. */
static void comp_keep(ps_comp *v, uint32_t *n, const ps_comp *c)
{
    uint32_t i;
    if (*n < PS_SAMPLE_MAX) {
        i = (*n)++;
    } else {
        if (!comp_newer(c, &v[PS_SAMPLE_MAX - 1]))
            return;
        i = PS_SAMPLE_MAX - 1;
    }
    while (i > 0 && comp_newer(c, &v[i - 1])) {
        v[i] = v[i - 1];
        i--;
    }
    v[i] = *c;
}

static void ps_part_run(net_shard *sh, net_job *j)
{
    const ps_ctx *c = (const ps_ctx *)j->parent->text;
    ps_out *o = calloc(1, sizeof(*o));
    NET_ASSERT(o != NULL);
    j->out = o;
    j->out_len = 1;
    if (!browse_fresh(sh)) {
        j->failed = true;
        net__read_done(sh, j);
        return;
    }
    uint64_t layout;
    if (engine_showtime_get(sh->e, c->showtime_id, &layout, &o->start_ms, o->prices)) {
        if (atomic_load(&sh->wal_error) == 0)
            net__holds_sweep(sh, net__now_ms(sh)); /* expired holds are not occupancy */
        int32_t n = engine_availability_get(sh->e, c->showtime_id, o->counts);
        NET_ASSERT(n > 0);
        o->owner = true;
        o->ncat = (uint32_t)n;
        for (int32_t i = 0; i < n; i++)
            snprintf(o->names[i], sizeof(o->names[i]), "%s",
                     engine_layout_category_name(sh->e, layout, (uint32_t)i));
    }
    const net_browse_index *ix = &sh->browse;
    for (size_t i = 0; i < ix->nrows; i++) {
        const catalog_showtime_row *row = &ix->rows[i];
        if (row->id == c->showtime_id || row->start_ms > c->now)
            continue;
        engine_category_counts k[ENGINE_CATEGORIES_MAX];
        int32_t nc = engine_availability_get(sh->e, row->id, k);
        if (nc < 0)
            continue; /* catalog ahead of the engine */
        ps_comp cp = {.id = row->id, .start_ms = row->start_ms};
        uint32_t held;
        seats_sum(k, nc, &cp.sellable, &held, &cp.sold);
        if (cp.sellable == 0)
            continue;
        int scope = row->movie_id == c->movie_id       ? SCOPE_MOVIE
                    : row->theater_id == c->theater_id ? SCOPE_THEATER
                                                       : SCOPE_ALL;
        comp_keep(o->comp[scope], &o->ncomp[scope], &cp);
    }
    net__read_done(sh, j);
}

/* ---- The rules (docs/api.md, "Pricing suggestions"). Ratios are in per
 * mille, rounded down, so every threshold is an exact integer comparison. */

static int rule_occupancy(uint32_t pm)
{
    return pm >= 900 ? 25 : pm >= 750 ? 15 : pm >= 500 ? 5 : 0;
}

static int rule_time(int64_t left_ms, uint32_t pm)
{
    if (left_ms > 72 * HOUR_MS)
        return 0;
    if (left_ms > 24 * HOUR_MS)
        return pm < 300 ? -5 : 0;
    return pm < 300 ? -15 : pm >= 750 ? 10 : 0;
}

static int rule_comparable(uint32_t pm, uint32_t sample)
{
    if (sample == 0)
        return 0;
    int e = pm >= 900 ? 25 : pm >= 700 ? 10 : pm >= 400 ? 0 : pm >= 200 ? -10 : -20;
    return sample < PS_SMALL_SAMPLE ? e / 2 : e; /* C division: toward zero */
}

/* The price after a change of `change` percent, moved toward the current
 * price to a multiple of PS_UNIT: never past the rule's percentage, never
 * in the other direction, within 0..PS_PRICE_MAX. */
static uint32_t price_suggest(uint32_t current, int change)
{
    if (change == 0 || current == 0)
        return current;
    uint64_t scaled = (uint64_t)current * (uint64_t)(100 + change); /* price * 100 */
    uint64_t unit = (uint64_t)PS_UNIT * 100, p;
    if (change > 0) {
        p = scaled / unit * PS_UNIT;
        p = p < current ? current : p > PS_PRICE_MAX ? PS_PRICE_MAX : p;
    } else {
        p = (scaled + unit - 1) / unit * PS_UNIT;
        p = p > current ? current : p;
    }
    return (uint32_t)p;
}

static const char *signed_pct(int e, char buf[16])
{
    if (e == 0)
        snprintf(buf, 16, "no change");
    else
        snprintf(buf, 16, "%+d%%", e);
    return buf;
}

static json_t *factor(const char *name, json_t *value, int effect, const char *reason)
{
    json_t *f = json_object();
    json_object_set_new(f, "name", json_string(name));
    json_object_set_new(f, "value", value);
    json_object_set_new(f, "effect_percent", json_integer(effect));
    json_object_set_new(f, "reason", json_string(reason));
    return f;
}

/* The comparable showtimes chosen: the first scope that has any. */
typedef struct ps_sample {
    int scope;
    uint32_t n;
    uint32_t pm; /* mean sell-through, per mille */
    ps_comp v[PS_SAMPLE_MAX];
} ps_sample;

static void ps_sample_pick(net_job *parent, uint32_t nshards, ps_sample *s)
{
    memset(s, 0, sizeof(*s));
    s->scope = SCOPE_ALL;
    ps_comp *all = malloc((size_t)nshards * PS_SAMPLE_MAX * sizeof(*all));
    NET_ASSERT(all != NULL);
    for (int scope = 0; scope < SCOPE_COUNT; scope++) {
        size_t n = 0;
        for (uint32_t i = 0; i < nshards; i++) {
            const ps_out *o = parent->parts[i]->out;
            memcpy(all + n, o->comp[scope], o->ncomp[scope] * sizeof(*all));
            n += o->ncomp[scope];
        }
        if (n == 0)
            continue;
        qsort(all, n, sizeof(*all), comp_cmp);
        s->scope = scope;
        s->n = n < PS_SAMPLE_MAX ? (uint32_t)n : PS_SAMPLE_MAX;
        memcpy(s->v, all, s->n * sizeof(*all));
        break;
    }
    free(all);
    uint64_t sum = 0;
    for (uint32_t i = 0; i < s->n; i++)
        sum += (uint64_t)s->v[i].sold * 1000 / s->v[i].sellable;
    s->pm = s->n > 0 ? (uint32_t)(sum / s->n) : 0;
}

static json_t *ps_category(const ps_out *own, uint32_t c, int64_t left_ms, const ps_sample *s)
{
    const engine_category_counts *k = &own->counts[c];
    const char *name = own->names[c];
    uint32_t sellable = k->free + k->held + k->sold, taken = k->held + k->sold;
    uint32_t pm = sellable > 0 ? (uint32_t)((uint64_t)taken * 1000 / sellable) : 0;
    char reason[256], e1[16], e2[16];

    /* occupancy */
    int occ = sellable > 0 ? rule_occupancy(pm) : 0;
    if (sellable == 0)
        snprintf(reason, sizeof(reason), "no %s seats are for sale", name);
    else
        snprintf(reason, sizeof(reason),
                 "%u%% of %s seats are held or sold (%u held, %u sold, %u for sale): %s", pm / 10,
                 name, k->held, k->sold, sellable, signed_pct(occ, e1));
    json_t *factors = json_array();
    json_array_append_new(factors, factor("occupancy", json_real(pm / 1000.0), occ, reason));

    /* time to start */
    int tim = sellable > 0 ? rule_time(left_ms, pm) : 0;
    int64_t tenths = left_ms / (HOUR_MS / 10);
    const char *band = left_ms > 72 * HOUR_MS   ? "more than 72 h ahead"
                       : left_ms > 24 * HOUR_MS ? "24 to 72 h ahead"
                                                : "within 24 h";
    const char *taken_band = pm < 300 ? "under 30%" : pm >= 750 ? "75% or more" : "30% to 75%";
    snprintf(reason, sizeof(reason),
             "starts in %" PRId64 ".%" PRId64 " h (%s, %s of %s seats taken): %s", tenths / 10,
             tenths % 10, band, taken_band, name, signed_pct(tim, e1));
    json_array_append_new(factors,
                          factor("time_to_start", json_real((double)tenths / 10.0), tim, reason));

    /* comparable sell-through */
    int cmp = sellable > 0 ? rule_comparable(s->pm, s->n) : 0;
    if (sellable == 0)
        snprintf(reason, sizeof(reason), "no %s seats are for sale", name);
    else if (s->n == 0)
        snprintf(reason, sizeof(reason), "no comparable showtime has started yet: %s",
                 signed_pct(0, e1));
    else
        snprintf(reason, sizeof(reason),
                 "%u comparable past showtime%s %s sold %u%% of their seats on average: %s%s", s->n,
                 s->n == 1 ? "" : "s", scope_text[s->scope], s->pm / 10, signed_pct(cmp, e2),
                 s->n < PS_SMALL_SAMPLE ? " (half the rule's effect: fewer than 3 showtimes)" : "");
    json_t *f = factor("comparable_sell_through", json_real(s->pm / 1000.0), cmp, reason);
    json_object_set_new(f, "sample", json_integer(s->n));
    json_object_set_new(f, "scope", json_string(s->n > 0 ? scope_name[s->scope] : "none"));
    json_array_append_new(factors, f);

    int total = occ + tim + cmp;
    total = total < PS_CHANGE_MIN ? PS_CHANGE_MIN : total > PS_CHANGE_MAX ? PS_CHANGE_MAX : total;
    json_t *o = json_object();
    json_object_set_new(o, "name", json_string(name));
    json_object_set_new(o, "current_price", json_integer(own->prices[c]));
    json_object_set_new(o, "suggested_price", json_integer(price_suggest(own->prices[c], total)));
    json_object_set_new(o, "change_percent", json_integer(total));
    json_object_set_new(o, "seats_for_sale", json_integer(sellable));
    json_object_set_new(o, "seats_held", json_integer(k->held));
    json_object_set_new(o, "seats_sold", json_integer(k->sold));
    json_object_set_new(o, "factors", factors);
    return o;
}

static void ps_gather(net_shard *sh, net_job *parent)
{
    (void)sh;
    net_request *r = net__gather_begin(parent);
    if (r == NULL)
        return; /* its connection closed meanwhile */
    net_server *s = r->shard->server;
    const ps_ctx *c = (const ps_ctx *)parent->text;
    const ps_out *own = parent->parts[catalog_showtime_shard(c->showtime_id, s->nshards)]->out;
    if (net__scatter_failed(r)) {
        saturated(r);
    } else if (!own->owner) { /* deleted meanwhile, or not yet in the engine */
        net__problem(r, 404, "not-found", "Not found", "no showtime with this id", "showtime_id",
                     NULL, NULL);
    } else if (own->start_ms <= c->now) {
        net__problem(r, 409, "sales-closed", "Sales closed",
                     "the showtime has started: its prices no longer matter", "showtime_id", NULL,
                     NULL);
    } else {
        ps_sample *smp = malloc(sizeof(*smp));
        NET_ASSERT(smp != NULL);
        ps_sample_pick(parent, s->nshards, smp);
        json_t *cats = json_array();
        for (uint32_t i = 0; i < own->ncat; i++)
            json_array_append_new(cats, ps_category(own, i, own->start_ms - c->now, smp));
        free(smp);
        json_t *o = json_object();
        json_object_set_new(o, "showtime_id", json_integer((json_int_t)c->showtime_id));
        json_object_set_new(o, "start_time", time_json(own->start_ms));
        json_object_set_new(o, "currency", json_string(CURRENCY));
        json_object_set_new(o, "categories", cats);
        json_object_set_new(o, "generated_at", time_json(c->now));
        respond(r, o);
    }
    net__scatter_free(r);
    net__request_finish(r);
}

void net__route_pricing_suggest(net_request *r)
{
    uint64_t id = 0;
    int q = net__query_u64(r, "showtime_id", 1, (UINT64_C(1) << 53) - 1, &id);
    if (q < 0)
        return;
    if (q == 0) {
        bad_field(r, "showtime_id", "is required: the id of the showtime to price");
        return;
    }
    catalog_read *rd;
    if (catalog_read_begin(r->shard->server->cat, &rd) != 0) {
        saturated(r);
        return;
    }
    json_t *st = catalog_get_json(rd, CATALOG_SHOWTIME, id);
    catalog_read_end(rd);
    if (st == NULL) {
        net__problem(r, 404, "not-found", "Not found", "no showtime with this id", "showtime_id",
                     NULL, NULL);
        return;
    }
    ps_ctx *c = calloc(1, sizeof(*c));
    NET_ASSERT(c != NULL);
    c->showtime_id = id;
    c->movie_id = (uint64_t)json_integer_value(json_object_get(st, "movie_id"));
    c->theater_id = (uint64_t)json_integer_value(json_object_get(st, "theater_id"));
    c->now = net__now_ms(r->shard);
    json_decref(st);
    r->job.text = (char *)c; /* freed with the request */
    net__scatter(r, ps_part_run, ps_gather);
}

/* ===================================================================================== *
 * GET /api/recommendations                                                              *
 * ===================================================================================== */

enum {
    RC_LIMIT_DEFAULT = 10,
    RC_LIMIT_MAX = 50,
    RC_HISTORY_MAX = 200,   /* the caller's newest bookings read per shard, and kept in all */
    RC_MOVIES_MAX = 200,    /* candidate movies per shard and in all (the most seats sold) */
    RC_COUNTED_MAX = 5,     /* past bookings counted per signal */
    RC_CITIES_MAX = 8,      /* cities "near you": those of the newest bookings */
    RC_GENRE_POINTS = 3,    /* per past booking of the movie's genre */
    RC_LANG_POINTS = 2,     /* per past booking in the movie's language */
    RC_THEATER_POINTS = 2,  /* per past booking at the showtime's theater */
    RC_SOLD_PER_POINT = 10, /* popularity: a point per this many seats sold ... */
    RC_POPULAR_MAX = 5      /* ... up to this many points */
};

typedef struct rc_booking {
    int64_t confirmed_ms;
    uint64_t id, movie_id, theater_id;
} rc_booking;

typedef struct rc_ctx {
    int64_t now;
    uint32_t limit;
    bool has_city;
    char city[128];
    uint32_t nhist; /* the caller's confirmed bookings, newest first */
    rc_booking hist[RC_HISTORY_MAX];
    uint32_t ncities; /* the area's cities (for the answer) */
    char cities[RC_CITIES_MAX][128];
    bool area_all; /* no city known: every theater */
    uint32_t narea;
    uint64_t area[]; /* else the theaters in those cities, ascending */
} rc_ctx;

/* Round 1, on every shard: the caller's confirmed bookings there. */
static void rc_hist_run(net_shard *sh, net_job *j)
{
    rc_booking *out = calloc(RC_HISTORY_MAX, sizeof(*out));
    uint64_t *ids = malloc(RC_HISTORY_MAX * sizeof(*ids));
    NET_ASSERT(out != NULL && ids != NULL);
    j->out = out;
    if (!browse_fresh(sh)) {
        free(ids);
        j->failed = true;
        net__read_done(sh, j);
        return;
    }
    uint32_t total = engine_user_bookings(sh->e, j->user_id, 0, ids, RC_HISTORY_MAX);
    uint32_t n = total < RC_HISTORY_MAX ? total : RC_HISTORY_MAX, k = 0;
    for (uint32_t i = 0; i < n; i++) {
        engine_booking_info b;
        if (!engine_booking_get(sh->e, ids[i], &b) || b.status != ENGINE_BOOKING_STATUS_CONFIRMED)
            continue;
        const catalog_showtime_row *row = browse_row(&sh->browse, b.showtime_id);
        if (row == NULL)
            continue; /* its showtime is gone from the catalog */
        out[k++] = (rc_booking){.confirmed_ms = b.confirmed_ms,
                                .id = b.id,
                                .movie_id = row->movie_id,
                                .theater_id = row->theater_id};
    }
    free(ids);
    j->out_len = k;
    net__read_done(sh, j);
}

static int hist_cmp(const void *a, const void *b)
{
    const rc_booking *x = a, *y = b;
    if (x->confirmed_ms != y->confirmed_ms)
        return x->confirmed_ms > y->confirmed_ms ? -1 : 1;
    return x->id > y->id ? -1 : x->id < y->id;
}

static int u64_cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* A candidate: one movie's upcoming showtimes in the area. */
typedef struct rc_movie {
    uint64_t movie_id;
    uint64_t sold; /* seats sold over them */
    bool has_best; /* one has a free seat: the soonest such */
    uint64_t best_id, best_theater;
    int64_t best_start;
    uint32_t best_free, best_price_from;
} rc_movie;

static void rc_cand_run(net_shard *sh, net_job *j);
static void rc_cand_gather(net_shard *sh, net_job *parent);

static void rc_finish_busy(net_request *r)
{
    net__scatter_free(r);
    saturated(r);
    net__request_finish(r);
}

/* Round 1 gathered: the history, then the area (the `city` asked for, or
 * the cities of the theaters booked at), then round 2. */
static void rc_hist_gather(net_shard *sh, net_job *parent)
{
    net_request *r = net__gather_begin(parent);
    if (r == NULL)
        return; /* its connection closed meanwhile */
    if (net__scatter_failed(r) || !browse_fresh(sh)) {
        rc_finish_busy(r);
        return;
    }
    net_server *s = sh->server;
    rc_ctx *c = (rc_ctx *)parent->text;
    size_t n = 0;
    for (uint32_t i = 0; i < s->nshards; i++)
        n += parent->parts[i]->out_len;
    rc_booking *all = malloc((n ? n : 1) * sizeof(*all));
    NET_ASSERT(all != NULL);
    n = 0;
    for (uint32_t i = 0; i < s->nshards; i++) {
        memcpy(all + n, parent->parts[i]->out, parent->parts[i]->out_len * sizeof(*all));
        n += parent->parts[i]->out_len;
    }
    net__scatter_free(r);
    qsort(all, n, sizeof(*all), hist_cmp);
    c->nhist = n < RC_HISTORY_MAX ? (uint32_t)n : RC_HISTORY_MAX;
    memcpy(c->hist, all, c->nhist * sizeof(*all));
    free(all);

    const net_browse_index *ix = &sh->browse;
    if (c->has_city) {
        snprintf(c->cities[0], sizeof(c->cities[0]), "%s", c->city);
        c->ncities = 1;
    }
    for (uint32_t i = 0; i < c->nhist && !c->has_city && c->ncities < RC_CITIES_MAX; i++) {
        const char *city = browse_city(ix, c->hist[i].theater_id);
        bool seen = city == NULL;
        for (uint32_t k = 0; k < c->ncities && !seen; k++)
            seen = strcasecmp(c->cities[k], city) == 0;
        if (!seen)
            snprintf(c->cities[c->ncities++], sizeof(c->cities[0]), "%s", city);
    }
    uint64_t *area = NULL;
    size_t narea = 0;
    for (uint32_t k = 0; k < c->ncities; k++) {
        uint64_t *ids;
        size_t m = net__browse_ids(ix->theaters, ix->ntheaters, c->cities[k], &ids);
        uint64_t *grown = realloc(area, (narea + m + 1) * sizeof(*area));
        NET_ASSERT(grown != NULL);
        area = grown;
        if (m > 0)
            memcpy(area + narea, ids, m * sizeof(*ids));
        narea += m;
        free(ids);
    }
    if (narea > 1)
        qsort(area, narea, sizeof(*area), u64_cmp); /* cities share no theater: no duplicates */
    rc_ctx *c2 = malloc(sizeof(*c2) + narea * sizeof(uint64_t));
    NET_ASSERT(c2 != NULL);
    memcpy(c2, c, sizeof(*c2));
    c2->area_all = c->ncities == 0;
    c2->narea = (uint32_t)narea;
    if (narea > 0)
        memcpy(c2->area, area, narea * sizeof(*area));
    free(area);
    free(r->job.text); /* no part is away: nobody reads it */
    r->job.text = (char *)c2;
    net__scatter(r, rc_cand_run, rc_cand_gather);
}

typedef struct rc_show {
    uint64_t movie_id, id, theater_id;
    int64_t start_ms;
    uint32_t free, sold, price_from;
} rc_show;

static int show_cmp(const void *a, const void *b)
{
    const rc_show *x = a, *y = b;
    if (x->movie_id != y->movie_id)
        return x->movie_id < y->movie_id ? -1 : 1;
    if (x->start_ms != y->start_ms)
        return x->start_ms < y->start_ms ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

static int movie_id_cmp(const void *a, const void *b)
{
    const rc_movie *x = a, *y = b;
    return x->movie_id < y->movie_id ? -1 : x->movie_id > y->movie_id;
}

static int movie_sold_cmp(const void *a, const void *b)
{
    const rc_movie *x = a, *y = b;
    if (x->sold != y->sold)
        return x->sold > y->sold ? -1 : 1;
    return x->movie_id < y->movie_id ? -1 : x->movie_id > y->movie_id;
}

/* `b`'s showtime is sooner than `a`'s (or `a` has none). */
static bool best_sooner(const rc_movie *a, const rc_movie *b)
{
    if (!b->has_best)
        return false;
    if (!a->has_best)
        return true;
    return b->best_start != a->best_start ? b->best_start < a->best_start : b->best_id < a->best_id;
}

/* Merges entries of the same movie (sorted by movie id) in place; returns the count. */
static size_t movies_merge(rc_movie *v, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (k > 0 && v[k - 1].movie_id == v[i].movie_id) {
            v[k - 1].sold += v[i].sold;
            if (best_sooner(&v[k - 1], &v[i])) {
                uint64_t sold = v[k - 1].sold;
                v[k - 1] = v[i];
                v[k - 1].sold = sold;
            }
        } else {
            v[k++] = v[i];
        }
    }
    return k;
}

/* Round 2, on every shard: its upcoming showtimes in the area, by movie. */
static void rc_cand_run(net_shard *sh, net_job *j)
{
    const rc_ctx *c = (const rc_ctx *)j->parent->text;
    if (!browse_fresh(sh)) {
        j->failed = true;
        net__read_done(sh, j);
        return;
    }
    const net_browse_index *ix = &sh->browse;
    rc_show *shows = malloc((ix->nrows ? ix->nrows : 1) * sizeof(*shows));
    NET_ASSERT(shows != NULL);
    size_t n = 0;
    for (size_t i = 0; i < ix->nrows; i++) {
        const catalog_showtime_row *row = &ix->rows[i];
        if (row->start_ms <= c->now)
            continue; /* started: never recommended */
        if (!c->area_all && !net__browse_ids_has(c->area, c->narea, row->theater_id))
            continue;
        engine_category_counts k[ENGINE_CATEGORIES_MAX];
        int32_t nc = engine_availability_get(sh->e, row->id, k);
        if (nc < 0)
            continue;
        rc_show v = {.movie_id = row->movie_id,
                     .id = row->id,
                     .theater_id = row->theater_id,
                     .start_ms = row->start_ms,
                     .price_from = row->price_min};
        for (int32_t x = 0; x < nc; x++) {
            v.free += k[x].free;
            v.sold += k[x].sold;
        }
        shows[n++] = v;
    }
    qsort(shows, n, sizeof(*shows), show_cmp);
    rc_movie *movies = calloc(n ? n : 1, sizeof(*movies));
    NET_ASSERT(movies != NULL);
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        const rc_show *v = &shows[i];
        if (m == 0 || movies[m - 1].movie_id != v->movie_id)
            movies[m++] = (rc_movie){.movie_id = v->movie_id};
        rc_movie *mv = &movies[m - 1];
        mv->sold += v->sold;
        if (!mv->has_best && v->free > 0) /* sorted by start: the first is the soonest */
            *mv = (rc_movie){.movie_id = mv->movie_id,
                             .sold = mv->sold,
                             .has_best = true,
                             .best_id = v->id,
                             .best_theater = v->theater_id,
                             .best_start = v->start_ms,
                             .best_free = v->free,
                             .best_price_from = v->price_from};
    }
    free(shows);
    if (m > RC_MOVIES_MAX) {
        qsort(movies, m, sizeof(*movies), movie_sold_cmp);
        m = RC_MOVIES_MAX;
    }
    j->out = movies;
    j->out_len = m;
    net__read_done(sh, j);
}

/* What the caller's history says, counted per genre, language and theater. */
typedef struct rc_count {
    char key[64]; /* genre or language (theater: unused) */
    uint64_t id;  /* theater (genre, language: unused) */
    uint32_t n;
} rc_count;

typedef struct rc_profile {
    rc_count genres[RC_HISTORY_MAX], langs[RC_HISTORY_MAX], theaters[RC_HISTORY_MAX];
    uint32_t ngenres, nlangs, ntheaters;
    uint64_t booked[RC_HISTORY_MAX]; /* movies booked, ascending */
    uint32_t nbooked;
} rc_profile;

static void count_key(rc_count *v, uint32_t *n, const char *key)
{
    if (key == NULL)
        return;
    for (uint32_t i = 0; i < *n; i++) {
        if (strcasecmp(v[i].key, key) == 0) {
            v[i].n++;
            return;
        }
    }
    snprintf(v[*n].key, sizeof(v[*n].key), "%s", key);
    v[(*n)++].n = 1;
}

static uint32_t count_of_key(const rc_count *v, uint32_t n, const char *key)
{
    for (uint32_t i = 0; key != NULL && i < n; i++) {
        if (strcasecmp(v[i].key, key) == 0)
            return v[i].n;
    }
    return 0;
}

static uint32_t count_of_id(const rc_count *v, uint32_t n, uint64_t id)
{
    for (uint32_t i = 0; i < n; i++) {
        if (v[i].id == id)
            return v[i].n;
    }
    return 0;
}

static void profile_build(catalog_read *rd, const rc_ctx *c, rc_profile *p)
{
    memset(p, 0, sizeof(*p));
    for (uint32_t i = 0; i < c->nhist; i++) {
        const rc_booking *b = &c->hist[i];
        uint32_t t = 0;
        while (t < p->ntheaters && p->theaters[t].id != b->theater_id)
            t++;
        if (t == p->ntheaters)
            p->theaters[p->ntheaters++] = (rc_count){.id = b->theater_id};
        p->theaters[t].n++;
        json_t *m = rd != NULL ? catalog_get_json(rd, CATALOG_MOVIE, b->movie_id) : NULL;
        count_key(p->genres, &p->ngenres, json_string_value(json_object_get(m, "genre")));
        count_key(p->langs, &p->nlangs, json_string_value(json_object_get(m, "language")));
        json_decref(m);
        p->booked[p->nbooked++] = b->movie_id;
    }
    qsort(p->booked, p->nbooked, sizeof(p->booked[0]), u64_cmp);
}

/* A candidate scored. */
typedef struct rc_scored {
    const rc_movie *mv;
    json_t *movie;                          /* the catalog's movie (owned) */
    uint32_t genre_n, lang_n, theater_n;    /* past bookings that match (said in the reason) */
    uint32_t genre, lang, theater, popular; /* points */
    uint32_t score;
    bool booked;
} rc_scored;

/* Points for `n` matching past bookings: RC_COUNTED_MAX of them count. */
static uint32_t points(uint32_t n, uint32_t each)
{
    return (n < RC_COUNTED_MAX ? n : RC_COUNTED_MAX) * each;
}

static int scored_cmp(const void *a, const void *b)
{
    const rc_scored *x = a, *y = b;
    if (x->booked != y->booked)
        return x->booked ? 1 : -1; /* movies already booked come last */
    if (x->score != y->score)
        return x->score > y->score ? -1 : 1;
    if (x->mv->sold != y->mv->sold)
        return x->mv->sold > y->mv->sold ? -1 : 1;
    if (x->mv->best_start != y->mv->best_start)
        return x->mv->best_start < y->mv->best_start ? -1 : 1;
    return x->mv->movie_id < y->mv->movie_id ? -1 : x->mv->movie_id > y->mv->movie_id;
}

/* Appends "; " (past the first) and one formatted clause to `out` (`*o`
 * bytes used of `cap`); stops quietly at the end of the buffer. */
__attribute__((format(printf, 4, 5))) static void reason_add(char *out, size_t cap, size_t *o,
                                                             const char *fmt, ...)
{
    if (*o > 0 && *o + 2 < cap) {
        memcpy(out + *o, "; ", 3);
        *o += 2;
    }
    va_list ap;
    va_start(ap, fmt);
    int w = vsnprintf(out + *o, cap - *o, fmt, ap);
    va_end(ap);
    *o = w > 0 && (size_t)w < cap - *o ? *o + (size_t)w : cap - 1;
}

/* The reason, in words, from the signals that scored. */
static void rc_reason(const rc_scored *sc, const rc_ctx *c, const char *theater_name, char *out,
                      size_t cap)
{
    const char *genre = json_string_value(json_object_get(sc->movie, "genre"));
    const char *lang = json_string_value(json_object_get(sc->movie, "language"));
    const char *near = c->area_all ? "now" : "near you";
    size_t o = 0;
    out[0] = '\0';
    if (sc->booked)
        reason_add(out, cap, &o, "you already booked this movie: another showtime");
    if (sc->genre_n > 0)
        reason_add(out, cap, &o, "%s, like %u of your past bookings", genre, sc->genre_n);
    if (sc->lang_n > 0)
        reason_add(out, cap, &o, "in %s, like %u of your past bookings", lang, sc->lang_n);
    if (sc->theater_n > 0)
        reason_add(out, cap, &o, "at %s, where you booked %u time%s before", theater_name,
                   sc->theater_n, sc->theater_n == 1 ? "" : "s");
    if (sc->popular > 0)
        reason_add(out, cap, &o, "popular %s: %" PRIu64 " seats sold", near, sc->mv->sold);
    if (o == 0 && sc->mv->sold > 0)
        reason_add(out, cap, &o, "popular %s", near);
    else if (o == 0)
        reason_add(out, cap, &o, "showing soon%s", c->area_all ? "" : " near you");
}

static json_t *rc_item(catalog_read *rd, const rc_scored *sc, const rc_ctx *c)
{
    const rc_movie *mv = sc->mv;
    json_t *t = rd != NULL ? catalog_get_json(rd, CATALOG_THEATER, mv->best_theater) : NULL;
    const char *tname = json_string_value(json_object_get(t, "name"));
    char reason[512];
    rc_reason(sc, c, tname != NULL ? tname : "a theater", reason, sizeof(reason));
    json_t *movie = json_object();
    json_object_set_new(movie, "id", json_integer((json_int_t)mv->movie_id));
    static const char *const keep[] = {"title", "genre", "language", "rating", "duration_min"};
    for (size_t i = 0; i < sizeof(keep) / sizeof(keep[0]); i++)
        json_object_set(movie, keep[i], json_object_get(sc->movie, keep[i]));
    json_t *show = json_object();
    json_object_set_new(show, "id", json_integer((json_int_t)mv->best_id));
    json_object_set_new(show, "start_time", time_json(mv->best_start));
    json_object_set_new(show, "theater_id", json_integer((json_int_t)mv->best_theater));
    json_object_set(show, "theater_name", json_object_get(t, "name"));
    json_object_set(show, "city", json_object_get(t, "city"));
    json_object_set_new(show, "price_from", json_integer(mv->best_price_from));
    json_object_set_new(show, "seats_available", json_integer(mv->best_free));
    json_decref(t);
    json_t *parts = json_object();
    json_object_set_new(parts, "genre", json_integer(sc->genre));
    json_object_set_new(parts, "language", json_integer(sc->lang));
    json_object_set_new(parts, "theater", json_integer(sc->theater));
    json_object_set_new(parts, "popularity", json_integer(sc->popular));
    json_t *o = json_object();
    json_object_set_new(o, "movie", movie);
    json_object_set_new(o, "showtime", show);
    json_object_set_new(o, "seats_sold", json_integer((json_int_t)mv->sold));
    json_object_set_new(o, "booked_before", json_boolean(sc->booked));
    json_object_set_new(o, "score", json_integer(sc->score));
    json_object_set_new(o, "score_parts", parts);
    json_object_set_new(o, "reason", json_string(reason));
    return o;
}

static void rc_cand_gather(net_shard *sh, net_job *parent)
{
    (void)sh;
    net_request *r = net__gather_begin(parent);
    if (r == NULL)
        return; /* its connection closed meanwhile */
    if (net__scatter_failed(r)) {
        rc_finish_busy(r);
        return;
    }
    net_server *s = r->shard->server;
    const rc_ctx *c = (const rc_ctx *)parent->text;
    size_t n = 0;
    for (uint32_t i = 0; i < s->nshards; i++)
        n += parent->parts[i]->out_len;
    rc_movie *mv = malloc((n ? n : 1) * sizeof(*mv));
    NET_ASSERT(mv != NULL);
    n = 0;
    for (uint32_t i = 0; i < s->nshards; i++) {
        memcpy(mv + n, parent->parts[i]->out, parent->parts[i]->out_len * sizeof(*mv));
        n += parent->parts[i]->out_len;
    }
    net__scatter_free(r);
    qsort(mv, n, sizeof(*mv), movie_id_cmp);
    n = movies_merge(mv, n);
    size_t k = 0; /* only movies with a showtime that has a free seat */
    for (size_t i = 0; i < n; i++) {
        if (mv[i].has_best)
            mv[k++] = mv[i];
    }
    n = k;
    if (n > RC_MOVIES_MAX) {
        qsort(mv, n, sizeof(*mv), movie_sold_cmp);
        n = RC_MOVIES_MAX;
    }
    catalog_read *rd = NULL;
    if (catalog_read_begin(s->cat, &rd) != 0)
        rd = NULL; /* answered with what the shards said; names missing */
    rc_profile *p = malloc(sizeof(*p));
    rc_scored *sc = calloc(n ? n : 1, sizeof(*sc));
    NET_ASSERT(p != NULL && sc != NULL);
    profile_build(rd, c, p);
    for (size_t i = 0; i < n; i++) {
        rc_scored *x = &sc[i];
        x->mv = &mv[i];
        x->movie = rd != NULL ? catalog_get_json(rd, CATALOG_MOVIE, mv[i].movie_id) : NULL;
        x->genre_n = count_of_key(p->genres, p->ngenres,
                                  json_string_value(json_object_get(x->movie, "genre")));
        x->lang_n = count_of_key(p->langs, p->nlangs,
                                 json_string_value(json_object_get(x->movie, "language")));
        x->theater_n = count_of_id(p->theaters, p->ntheaters, mv[i].best_theater);
        uint64_t pop = mv[i].sold / RC_SOLD_PER_POINT;
        x->popular = pop < RC_POPULAR_MAX ? (uint32_t)pop : RC_POPULAR_MAX;
        x->genre = points(x->genre_n, RC_GENRE_POINTS);
        x->lang = points(x->lang_n, RC_LANG_POINTS);
        x->theater = points(x->theater_n, RC_THEATER_POINTS);
        x->score = x->genre + x->lang + x->theater + x->popular;
        x->booked = net__browse_ids_has(p->booked, p->nbooked, mv[i].movie_id);
    }
    qsort(sc, n, sizeof(*sc), scored_cmp);
    json_t *items = json_array();
    for (size_t i = 0; i < n && i < c->limit; i++)
        json_array_append_new(items, rc_item(rd, &sc[i], c));
    for (size_t i = 0; i < n; i++)
        json_decref(sc[i].movie);
    catalog_read_end(rd);
    free(sc);
    free(p);
    free(mv);
    json_t *cities = json_array();
    for (uint32_t i = 0; i < c->ncities; i++)
        json_array_append_new(cities, json_string(c->cities[i]));
    json_t *basis = json_object();
    json_object_set_new(basis, "bookings", json_integer(c->nhist));
    json_object_set_new(basis, "cities", cities);
    json_t *o = json_object();
    json_object_set_new(o, "items", items);
    json_object_set_new(o, "limit", json_integer(c->limit));
    json_object_set_new(o, "based_on", basis);
    json_object_set_new(o, "generated_at", time_json(c->now));
    respond(r, o);
    net__request_finish(r);
}

void net__route_recommendations(net_request *r)
{
    uint64_t limit = RC_LIMIT_DEFAULT;
    if (net__query_u64(r, "limit", 1, RC_LIMIT_MAX, &limit) < 0)
        return;
    rc_ctx *c = calloc(1, sizeof(*c));
    NET_ASSERT(c != NULL);
    r->job.text = (char *)c; /* freed with the request */
    int q = net__query_get(r, "city", c->city, sizeof(c->city));
    if (q < 0) {
        bad_field(r, "city", "malformed or longer than 127 bytes");
        return;
    }
    if (q > 0 && c->city[strspn(c->city, " ")] == '\0') {
        bad_field(r, "city", "must not be empty");
        return;
    }
    c->has_city = q > 0;
    c->limit = (uint32_t)limit;
    c->now = net__now_ms(r->shard);
    net__scatter(r, rc_hist_run, rc_hist_gather);
}
