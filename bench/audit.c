/*
 * audit.c - the sales audit (see audit.h).
 */
#include "audit.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* u64 -> index, open addressing; key 0 is never stored (ids are positive). */
typedef struct idmap {
    uint64_t *keys;
    uint32_t *vals;
    size_t mask;
} idmap;

static int idmap_init(idmap *m, size_t n)
{
    size_t cap = 16;
    while (cap < 2 * n + 1)
        cap *= 2;
    m->keys = calloc(cap, sizeof(*m->keys));
    m->vals = calloc(cap, sizeof(*m->vals));
    m->mask = cap - 1;
    return m->keys && m->vals ? 0 : -1;
}

static void idmap_free(idmap *m)
{
    free(m->keys);
    free(m->vals);
}

static size_t idmap_slot(const idmap *m, uint64_t key)
{
    uint64_t h = key * UINT64_C(0x9e3779b97f4a7c15);
    size_t i = (size_t)(h >> 17) & m->mask;
    while (m->keys[i] != 0 && m->keys[i] != key)
        i = (i + 1) & m->mask;
    return i;
}

/* Keeps the first value stored for a key. */
static void idmap_put(idmap *m, uint64_t key, uint32_t val)
{
    if (key == 0)
        return;
    size_t i = idmap_slot(m, key);
    if (m->keys[i] == 0) {
        m->keys[i] = key;
        m->vals[i] = val;
    }
}

static bool idmap_get(const idmap *m, uint64_t key, uint32_t *val)
{
    if (key == 0)
        return false;
    size_t i = idmap_slot(m, key);
    if (m->keys[i] == 0)
        return false;
    *val = m->vals[i];
    return true;
}

typedef struct ctx {
    const audit_input *in;
    FILE *out;
    size_t lines, max_lines;
} ctx;

static void report(ctx *c, const char *fmt, ...)
{
    if (c->out == NULL)
        return;
    if (c->lines == c->max_lines) {
        fprintf(c->out, "audit: ... (more violations not shown)\n");
        c->lines++;
    }
    if (c->lines >= c->max_lines)
        return;
    c->lines++;
    va_list ap;
    va_start(ap, fmt);
    fputs("audit: ", c->out);
    vfprintf(c->out, fmt, ap);
    fputc('\n', c->out);
    va_end(ap);
}

static const char *st_name(ctx *c, uint32_t s, char *buf, size_t len)
{
    if (c->in->showtime_names != NULL && s < c->in->nshowtimes)
        return c->in->showtime_names[s];
    snprintf(buf, len, "#%" PRIu32, s);
    return buf;
}

static const char *seat_name(ctx *c, uint32_t i, char *buf, size_t len)
{
    if (c->in->seat_labels != NULL && i < c->in->nseats)
        return c->in->seat_labels[i];
    if (i == UINT32_MAX)
        return "(unknown label)";
    snprintf(buf, len, "seat#%" PRIu32, i);
    return buf;
}

/* Seats as "A1 A2 A3" for messages. */
static void seats_text(ctx *c, const uint32_t *seats, uint8_t n, char *buf, size_t len)
{
    size_t off = 0;
    buf[0] = '\0';
    for (uint8_t k = 0; k < n && off < len; k++) {
        char tmp[32];
        int w = snprintf(buf + off, len - off, "%s%s", k ? " " : "",
                         seat_name(c, seats[k], tmp, sizeof(tmp)));
        if (w < 0 || (size_t)w >= len - off)
            break;
        off += (size_t)w;
    }
}

static bool same_seats(const uint32_t *a, uint8_t na, const uint32_t *b, uint8_t nb)
{
    if (na != nb)
        return false;
    for (uint8_t i = 0; i < na; i++) {
        bool found = false;
        for (uint8_t j = 0; j < nb && !found; j++)
            found = a[i] == b[j];
        if (!found)
            return false;
    }
    return true;
}

int audit_run(const audit_input *in, audit_result *r, FILE *details, size_t max_lines)
{
    memset(r, 0, sizeof(*r));
    ctx c = {.in = in, .out = details, .max_lines = max_lines};
    size_t cells = (size_t)in->nshowtimes * in->nseats;
    /* owner: 1 + index of the claim (or, above nclaims, the server booking) that sold the
     * seat; dbl: the seat was already counted as double-sold. */
    uint32_t *owner = calloc(cells ? cells : 1, sizeof(*owner));
    uint32_t *sowner = calloc(cells ? cells : 1, sizeof(*sowner));
    uint8_t *dbl = calloc(cells ? cells : 1, 1);
    uint8_t *explained = calloc(in->nserver ? in->nserver : 1, 1);
    idmap by_id = {0}, by_hold = {0};
    int rc = -1;
    if (owner == NULL || sowner == NULL || dbl == NULL || explained == NULL ||
        idmap_init(&by_id, in->nserver) != 0 || idmap_init(&by_hold, in->nserver) != 0)
        goto out;
    for (size_t i = 0; i < in->nserver; i++) {
        idmap_put(&by_id, in->server[i].booking_id, (uint32_t)i);
        idmap_put(&by_hold, in->server[i].hold_id, (uint32_t)i);
    }
    for (size_t i = 0; i < cells; i++)
        r->seats_sold += in->sold[i] != 0;

    char b1[64], b2[256], b3[256], b4[64];
    for (size_t k = 0; k < in->nclaims; k++) {
        const audit_claim *cl = &in->claims[k];
        const audit_booking *sb = NULL;
        uint32_t si;
        bool active = false; /* the seats must be sold now */
        const uint32_t *seats = cl->seats;
        uint8_t nseats = cl->nseats;
        if (cl->showtime >= in->nshowtimes) {
            report(&c, "claim of an unknown showtime index %" PRIu32, cl->showtime);
            r->lost_confirmations++;
            continue;
        }
        const char *stn = st_name(&c, cl->showtime, b1, sizeof(b1));
        if (cl->kind == AC_CONFIRM_UNKNOWN) {
            r->in_doubt++;
            if (idmap_get(&by_hold, cl->hold_id, &si) && in->server[si].user == cl->user) {
                sb = &in->server[si];
                explained[si] = 1;
                if (!sb->cancelled) {
                    active = true;
                    seats = sb->seats;
                    nseats = sb->nseats;
                    r->seats_in_doubt_sold += nseats;
                }
            }
        } else {
            if (cl->kind == AC_CANCEL_UNKNOWN)
                r->in_doubt++;
            r->bookings_acknowledged++;
            seats_text(&c, cl->seats, cl->nseats, b2, sizeof(b2));
            if (!idmap_get(&by_id, cl->booking_id, &si)) {
                report(&c,
                       "LOST: booking %" PRIu64 " (showtime %s, seats %s) was confirmed to "
                       "user %" PRIu32 " but the server does not have it",
                       cl->booking_id, stn, b2, cl->user);
                r->lost_confirmations++;
                continue;
            }
            sb = &in->server[si];
            explained[si] = 1;
            if (sb->showtime != cl->showtime || sb->user != cl->user ||
                !same_seats(sb->seats, sb->nseats, cl->seats, cl->nseats)) {
                seats_text(&c, sb->seats, sb->nseats, b3, sizeof(b3));
                report(&c,
                       "LOST: booking %" PRIu64 " was confirmed to user %" PRIu32
                       " as showtime %s seats %s, the server has user %" PRIu32
                       " showtime %s seats %s",
                       cl->booking_id, cl->user, stn, b2, sb->user,
                       st_name(&c, sb->showtime, b4, sizeof(b4)), b3);
                r->lost_confirmations++;
                continue;
            }
            if (cl->kind == AC_CONFIRMED) {
                active = true;
                r->seats_confirmed_by_clients += cl->nseats;
                if (sb->cancelled) {
                    report(&c,
                           "LOST: booking %" PRIu64 " (showtime %s, seats %s) is cancelled on "
                           "the server but no client cancelled it",
                           cl->booking_id, stn, b2);
                    r->lost_confirmations++;
                    continue;
                }
            } else if (cl->kind == AC_CANCELLED) {
                if (!sb->cancelled) {
                    report(&c,
                           "LOST CANCEL: booking %" PRIu64 " (showtime %s, seats %s) was "
                           "cancelled for a client but the server has it confirmed",
                           cl->booking_id, stn, b2);
                    r->lost_cancellations++;
                }
            } else { /* AC_CANCEL_UNKNOWN */
                if (!sb->cancelled) {
                    active = true;
                    r->seats_in_doubt_sold += cl->nseats;
                }
            }
        }
        if (!active)
            continue;
        bool missing = false;
        for (uint8_t j = 0; j < nseats; j++) {
            uint32_t s = seats[j];
            if (s >= in->nseats) {
                missing = true;
                continue;
            }
            size_t cell = (size_t)cl->showtime * in->nseats + s;
            if (owner[cell] != 0) {
                const audit_claim *o =
                    owner[cell] <= in->nclaims ? &in->claims[owner[cell] - 1] : NULL;
                report(&c,
                       "DOUBLE SOLD: seat %s of showtime %s is in booking %" PRIu64
                       " (user %" PRIu32 ") and booking %" PRIu64 " (user %" PRIu32 ")",
                       seat_name(&c, s, b4, sizeof(b4)), stn, o ? o->booking_id : 0,
                       o ? o->user : 0, cl->booking_id ? cl->booking_id : sb->booking_id, cl->user);
                if (!dbl[cell]) {
                    dbl[cell] = 1;
                    r->double_sold++;
                }
            } else {
                owner[cell] = (uint32_t)k + 1;
            }
            if (!in->sold[cell])
                missing = true;
        }
        if (missing) {
            seats_text(&c, seats, nseats, b2, sizeof(b2));
            report(&c,
                   "LOST: booking %" PRIu64 " (showtime %s, seats %s) is confirmed but the "
                   "seat map does not show all its seats sold",
                   cl->booking_id ? cl->booking_id : (sb ? sb->booking_id : 0), stn, b2);
            r->lost_confirmations++;
        }
    }

    /* The server's own bookings: none unexplained, no seat in two confirmed ones. */
    for (size_t i = 0; i < in->nserver; i++) {
        const audit_booking *sb = &in->server[i];
        if (sb->showtime >= in->nshowtimes)
            continue;
        const char *stn = st_name(&c, sb->showtime, b1, sizeof(b1));
        if (!explained[i]) {
            seats_text(&c, sb->seats, sb->nseats, b2, sizeof(b2));
            report(&c,
                   "UNEXPLAINED: the server has booking %" PRIu64 " (hold %" PRIu64
                   ", user %" PRIu32 ", showtime %s, seats %s, %s) that no client was told about",
                   sb->booking_id, sb->hold_id, sb->user, stn, b2,
                   sb->cancelled ? "cancelled" : "confirmed");
            r->unexplained_bookings++;
        }
        if (sb->cancelled)
            continue;
        for (uint8_t j = 0; j < sb->nseats; j++) {
            if (sb->seats[j] >= in->nseats)
                continue;
            size_t cell = (size_t)sb->showtime * in->nseats + sb->seats[j];
            if (sowner[cell] != 0) {
                report(&c,
                       "DOUBLE SOLD: seat %s of showtime %s is in the server's confirmed "
                       "bookings %" PRIu64 " and %" PRIu64,
                       seat_name(&c, sb->seats[j], b4, sizeof(b4)), stn,
                       in->server[sowner[cell] - 1].booking_id, sb->booking_id);
                if (!dbl[cell]) {
                    dbl[cell] = 1;
                    r->double_sold++;
                }
            } else {
                sowner[cell] = (uint32_t)i + 1;
            }
        }
    }

    /* Every sold seat belongs to a booking some client was told about (or an
     * unacknowledged operation the server shows took effect). */
    for (size_t cell = 0; cell < cells; cell++) {
        if (in->sold[cell] && owner[cell] == 0) {
            uint32_t s = (uint32_t)(cell / in->nseats), i = (uint32_t)(cell % in->nseats);
            report(&c,
                   "UNEXPLAINED SOLD: seat %s of showtime %s is sold but no client was told "
                   "it bought it%s",
                   seat_name(&c, i, b4, sizeof(b4)), st_name(&c, s, b1, sizeof(b1)),
                   sowner[cell] ? " (the server lists a booking for it)" : "");
            r->unexplained_sold++;
        }
    }
    r->violations = r->double_sold + r->lost_confirmations + r->lost_cancellations +
                    r->unexplained_bookings + r->unexplained_sold;
    if (r->violations == 0 &&
        r->seats_sold != r->seats_confirmed_by_clients + r->seats_in_doubt_sold) {
        report(&c,
               "COUNT: %" PRIu64 " seats sold in the seat maps, but clients confirmed %" PRIu64
               " (+%" PRIu64 " unacknowledged that took effect)",
               r->seats_sold, r->seats_confirmed_by_clients, r->seats_in_doubt_sold);
        r->violations++;
    }
    r->ok = r->violations == 0;
    rc = 0;
out:
    free(owner);
    free(sowner);
    free(dbl);
    free(explained);
    idmap_free(&by_id);
    idmap_free(&by_hold);
    return rc;
}
