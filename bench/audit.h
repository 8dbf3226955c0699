/*
 * audit.h - usher-bench's sales audit: what clients were told against what the
 * server says, after a run. Pure logic (no I/O), so it is unit-tested on its own.
 *
 * Inputs, all about the showtimes the run created (numbered 0..nshowtimes-1,
 * every one with the same `nseats` seats, numbered as in the layout):
 *   - sold[]: the seat maps read back (GET /api/seats/:id): sold[s * nseats + i] != 0
 *     when seat i of showtime s is "sold";
 *   - claims[]: what each client was told. AC_CONFIRMED: a 201 to a confirm (booking id,
 *     seats of that answer); AC_CANCELLED: that booking, then a 200 to its cancel;
 *     AC_CONFIRM_UNKNOWN: a confirm of hold_id whose outcome the client never learned
 *     (timeout, closed connection, gave up after 503s); AC_CANCEL_UNKNOWN: a confirmed
 *     booking whose cancel had no definite answer;
 *   - server[]: every booking the server lists for the run's users
 *     (GET /api/bookings/my-bookings, and GET /api/bookings/:id for any claim not listed).
 *
 * Checks (each failure is a violation, described in `details`):
 *   - double_sold: a seat held by two bookings that clients were told are confirmed (or by
 *     two confirmed bookings in the server's lists);
 *   - lost_confirmations: an acknowledged booking that the server does not have, has with
 *     other seats or showtime, has cancelled though no client cancelled it, or whose seats
 *     the seat map does not show as sold;
 *   - lost_cancellations: an acknowledged cancel the server does not show;
 *   - unexplained_bookings: a confirmed booking on the server that no client was told about
 *     and that no unacknowledged confirm (same hold id) explains;
 *   - sold count: the seats sold in the maps must equal the seats of the acknowledged,
 *     uncancelled bookings plus those of the unacknowledged operations that the server
 *     shows took effect; seats sold with no booking behind them are `unexplained_sold`.
 */
#ifndef USHER_BENCH_AUDIT_H
#define USHER_BENCH_AUDIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

enum { AUDIT_SEATS_MAX = 16 };

enum audit_kind { AC_CONFIRMED, AC_CANCELLED, AC_CONFIRM_UNKNOWN, AC_CANCEL_UNKNOWN };

typedef struct audit_claim {
    uint64_t booking_id; /* 0 for AC_CONFIRM_UNKNOWN */
    uint64_t hold_id;
    uint32_t user;     /* index of the run's user */
    uint32_t showtime; /* index of the run's showtime */
    uint8_t kind;      /* enum audit_kind */
    uint8_t nseats;
    uint32_t seats[AUDIT_SEATS_MAX]; /* seat indexes; UINT32_MAX = a label not in the layout */
} audit_claim;

typedef struct audit_booking {
    uint64_t booking_id, hold_id;
    uint32_t user;
    uint32_t showtime;
    bool cancelled; /* status "cancelled" (else "confirmed") */
    uint8_t nseats;
    uint32_t seats[AUDIT_SEATS_MAX];
} audit_booking;

typedef struct audit_input {
    uint32_t nshowtimes, nseats;
    const uint8_t *sold; /* nshowtimes * nseats */
    const audit_claim *claims;
    size_t nclaims;
    const audit_booking *server;
    size_t nserver;
    const char *const *showtime_names; /* for messages ("showtime 123"); may be NULL */
    const char *const *seat_labels;    /* nseats labels for messages; may be NULL */
} audit_input;

typedef struct audit_result {
    bool ok;
    uint64_t seats_sold;                 /* in the seat maps */
    uint64_t seats_confirmed_by_clients; /* acknowledged bookings, minus acknowledged cancels */
    uint64_t seats_in_doubt_sold;        /* of unacknowledged operations that took effect */
    uint64_t bookings_acknowledged;      /* AC_CONFIRMED + AC_CANCELLED claims */
    uint64_t in_doubt;                   /* AC_*_UNKNOWN claims */
    uint64_t double_sold;                /* seats */
    uint64_t lost_confirmations;         /* bookings */
    uint64_t lost_cancellations;         /* bookings */
    uint64_t unexplained_bookings;       /* bookings */
    uint64_t unexplained_sold;           /* seats sold with no confirmed booking behind them */
    uint64_t violations;                 /* all of the above, counted once each */
} audit_result;

/**
 * Runs the checks. Every violation is described on `details` (one line each, at most
 * `max_lines`; may be NULL). Returns 0, or -1 when out of memory.
 */
int audit_run(const audit_input *in, audit_result *out, FILE *details, size_t max_lines);

#endif /* USHER_BENCH_AUDIT_H */
