/*
 * audit_test.c - bench/audit.c: a consistent run passes; each kind of
 * violation (double sale, lost confirmation, lost cancellation, unexplained
 * booking or sold seat) is found and counted; unacknowledged operations are
 * resolved from the server's bookings.
 */
#include "audit.h"

#include <criterion/criterion.h>
#include <string.h>

enum { ST = 2, SEATS = 10 };

typedef struct fixture {
    uint8_t sold[ST * SEATS];
    audit_claim claims[16];
    size_t nclaims;
    audit_booking server[16];
    size_t nserver;
} fixture;

static void sell(fixture *f, uint32_t st, uint32_t seat)
{
    f->sold[st * SEATS + seat] = 1;
}

static audit_claim *claim(fixture *f, uint8_t kind, uint64_t booking, uint64_t hold, uint32_t user,
                          uint32_t st, uint32_t s0, uint32_t s1)
{
    audit_claim *c = &f->claims[f->nclaims++];
    memset(c, 0, sizeof(*c));
    c->kind = kind;
    c->booking_id = booking;
    c->hold_id = hold;
    c->user = user;
    c->showtime = st;
    c->seats[c->nseats++] = s0;
    if (s1 != UINT32_MAX)
        c->seats[c->nseats++] = s1;
    return c;
}

static audit_booking *booking(fixture *f, uint64_t id, uint64_t hold, uint32_t user, uint32_t st,
                              bool cancelled, uint32_t s0, uint32_t s1)
{
    audit_booking *b = &f->server[f->nserver++];
    memset(b, 0, sizeof(*b));
    b->booking_id = id;
    b->hold_id = hold;
    b->user = user;
    b->showtime = st;
    b->cancelled = cancelled;
    b->seats[b->nseats++] = s0;
    if (s1 != UINT32_MAX)
        b->seats[b->nseats++] = s1;
    return b;
}

static audit_result check(fixture *f, char *text, size_t len)
{
    audit_input in = {.nshowtimes = ST,
                      .nseats = SEATS,
                      .sold = f->sold,
                      .claims = f->claims,
                      .nclaims = f->nclaims,
                      .server = f->server,
                      .nserver = f->nserver};
    audit_result r;
    FILE *mem = fmemopen(text, len, "w");
    cr_assert_not_null(mem);
    cr_assert_eq(audit_run(&in, &r, mem, 20), 0);
    fclose(mem);
    return r;
}

#define NONE UINT32_MAX

/* A run where everything adds up, with both kinds of unacknowledged operations. */
static void consistent(fixture *f)
{
    memset(f, 0, sizeof(*f));
    claim(f, AC_CONFIRMED, 1, 11, 0, 0, 0, 1); /* sold: showtime 0, seats 0 and 1 */
    booking(f, 1, 11, 0, 0, false, 1, 0);      /* (order of seats does not matter) */
    sell(f, 0, 0);
    sell(f, 0, 1);
    claim(f, AC_CANCELLED, 2, 12, 1, 1, 5, NONE); /* bought, then cancelled */
    booking(f, 2, 12, 1, 1, true, 5, NONE);
    claim(f, AC_CONFIRM_UNKNOWN, 0, 30, 1, 0, 7, NONE); /* answer lost; it went through */
    booking(f, 3, 30, 1, 0, false, 7, NONE);
    sell(f, 0, 7);
    claim(f, AC_CONFIRM_UNKNOWN, 0, 31, 0, 1, 2, NONE); /* answer lost; it did not */
    claim(f, AC_CANCEL_UNKNOWN, 4, 14, 0, 1, 8, 9);     /* cancel's answer lost; it did */
    booking(f, 4, 14, 0, 1, true, 8, 9);
    claim(f, AC_CANCEL_UNKNOWN, 5, 15, 1, 1, 0, NONE); /* cancel's answer lost; it did not */
    booking(f, 5, 15, 1, 1, false, 0, NONE);
    sell(f, 1, 0);
}

Test(audit, consistent_run_passes)
{
    fixture f;
    consistent(&f);
    char text[4096] = "";
    audit_result r = check(&f, text, sizeof(text));
    cr_assert(r.ok, "violations: %s", text);
    cr_assert_eq(r.violations, 0);
    cr_assert_eq(r.seats_sold, 4);
    cr_assert_eq(r.seats_confirmed_by_clients, 2);
    cr_assert_eq(r.seats_in_doubt_sold, 2, "seat 7 (confirm) and seat 0 of showtime 1 (cancel)");
    cr_assert_eq(r.in_doubt, 4);
    cr_assert_eq(r.bookings_acknowledged, 4);
    cr_assert_str_empty(text);
}

Test(audit, empty_run_passes)
{
    fixture f;
    memset(&f, 0, sizeof(f));
    char text[256] = "";
    audit_result r = check(&f, text, sizeof(text));
    cr_assert(r.ok);
    cr_assert_eq(r.seats_sold, 0);
}

Test(audit, double_sale_is_found)
{
    fixture f;
    consistent(&f);
    /* Two clients were told they bought seat 3 of showtime 0. */
    claim(&f, AC_CONFIRMED, 20, 40, 0, 0, 3, NONE);
    claim(&f, AC_CONFIRMED, 21, 41, 1, 0, 3, 4);
    booking(&f, 20, 40, 0, 0, false, 3, NONE);
    booking(&f, 21, 41, 1, 0, false, 3, 4);
    sell(&f, 0, 3);
    sell(&f, 0, 4);
    char text[4096] = "";
    audit_result r = check(&f, text, sizeof(text));
    cr_assert_not(r.ok);
    cr_assert_eq(r.double_sold, 1, "%s", text);
    cr_assert_eq(r.lost_confirmations, 0, "%s", text);
    cr_assert(strstr(text, "DOUBLE SOLD") != NULL, "%s", text);
}

Test(audit, lost_confirmation_is_found)
{
    fixture f;
    consistent(&f);
    claim(&f, AC_CONFIRMED, 50, 60, 0, 1, 6, NONE); /* the server has no booking 50 */
    char text[4096] = "";
    audit_result r = check(&f, text, sizeof(text));
    cr_assert_not(r.ok);
    cr_assert_eq(r.lost_confirmations, 1, "%s", text);
    cr_assert(strstr(text, "booking 50") != NULL, "%s", text);
}

Test(audit, booking_with_other_seats_is_lost)
{
    fixture f;
    consistent(&f);
    claim(&f, AC_CONFIRMED, 50, 60, 0, 1, 6, NONE);
    booking(&f, 50, 60, 0, 1, false, 7, NONE); /* the server sold seat 7, not 6 */
    sell(&f, 1, 7);
    char text[4096] = "";
    audit_result r = check(&f, text, sizeof(text));
    cr_assert_not(r.ok);
    cr_assert_eq(r.lost_confirmations, 1, "%s", text);
    cr_assert_eq(r.unexplained_sold, 1, "seat 7 is sold but nobody was told: %s", text);
}

Test(audit, booking_not_sold_in_the_map_is_lost)
{
    fixture f;
    consistent(&f);
    f.sold[0 * SEATS + 1] = 0; /* booking 1's seat 1 shows free */
    char text[4096] = "";
    audit_result r = check(&f, text, sizeof(text));
    cr_assert_not(r.ok);
    cr_assert_eq(r.lost_confirmations, 1, "%s", text);
}

Test(audit, booking_cancelled_behind_the_clients_back_is_lost)
{
    fixture f;
    consistent(&f);
    f.server[0].cancelled = true; /* booking 1 */
    f.sold[0] = f.sold[1] = 0;
    char text[4096] = "";
    audit_result r = check(&f, text, sizeof(text));
    cr_assert_not(r.ok);
    cr_assert_eq(r.lost_confirmations, 1, "%s", text);
}

Test(audit, lost_cancellation_is_found)
{
    fixture f;
    consistent(&f);
    f.server[1].cancelled = false; /* booking 2 was cancelled for the client */
    sell(&f, 1, 5);
    char text[4096] = "";
    audit_result r = check(&f, text, sizeof(text));
    cr_assert_not(r.ok);
    cr_assert_eq(r.lost_cancellations, 1, "%s", text);
}

Test(audit, unexplained_booking_and_sold_seat_are_found)
{
    fixture f;
    consistent(&f);
    booking(&f, 70, 80, 1, 1, false, 3, NONE); /* nobody was told, no lost answer explains it */
    sell(&f, 1, 3);
    sell(&f, 1, 4); /* sold with no booking at all */
    char text[4096] = "";
    audit_result r = check(&f, text, sizeof(text));
    cr_assert_not(r.ok);
    cr_assert_eq(r.unexplained_bookings, 1, "%s", text);
    cr_assert_eq(r.unexplained_sold, 2, "%s", text);
}

Test(audit, server_side_double_sale_is_found)
{
    fixture f;
    consistent(&f);
    /* The server lists two confirmed bookings for seat 9 of showtime 0; one client heard
     * of its booking, the other confirm's answer was lost. */
    claim(&f, AC_CONFIRMED, 90, 91, 0, 0, 9, NONE);
    booking(&f, 90, 91, 0, 0, false, 9, NONE);
    claim(&f, AC_CONFIRM_UNKNOWN, 0, 93, 1, 0, 9, NONE);
    booking(&f, 92, 93, 1, 0, false, 9, NONE);
    sell(&f, 0, 9);
    char text[4096] = "";
    audit_result r = check(&f, text, sizeof(text));
    cr_assert_not(r.ok);
    cr_assert_eq(r.double_sold, 1, "%s", text);
}

Test(audit, detail_lines_are_bounded)
{
    fixture f;
    memset(&f, 0, sizeof(f));
    for (uint32_t i = 0; i < SEATS; i++)
        sell(&f, 0, i); /* ten unexplained sold seats */
    audit_input in = {.nshowtimes = ST, .nseats = SEATS, .sold = f.sold};
    audit_result r;
    char text[4096] = "";
    FILE *mem = fmemopen(text, sizeof(text), "w");
    cr_assert_eq(audit_run(&in, &r, mem, 3), 0);
    fclose(mem);
    cr_assert_eq(r.unexplained_sold, 10);
    size_t lines = 0;
    for (const char *p = text; *p; p++)
        lines += *p == '\n';
    cr_assert_eq(lines, 4, "3 lines and a '...' line: %s", text);
}
