/*
 * body.h - the reserve request's body, read without building a JSON tree.
 *
 * POST /api/bookings/reserve is the hottest write of an on-sale, and its body
 * is small and regular: {"showtime_id": 42, "seats": ["F7", "F8"]} or
 * {"showtime_id": 42, "count": 2, "category": "Gold", "accessible": false}.
 * net_reserve_body_fast() reads exactly the bodies that are plainly valid
 * (ASCII strings without escapes, plain integers, each field once, the field
 * combinations the API allows) and refuses everything else, however valid:
 * the caller then parses with jansson, which answers every error with its
 * field and reason. So the fast path changes no answer; it only skips the
 * allocation of a tree for the common case. tests/body_test.c checks it
 * against a jansson oracle.
 *
 * Stands alone (no libuv, no jansson) so that the test can link it by itself.
 */
#ifndef USHER_NET_BODY_H
#define USHER_NET_BODY_H

#include "engine.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* What a reserve asks for, however the body was read. */
typedef struct net_reserve_args {
    uint64_t showtime_id;
    uint32_t nseats; /* listed seats, or 0: best available `count` in `category` */
    uint32_t count;
    bool accessible;
    /* The category as sent; "" when longer than any category name can be
     * (so it matches none, as the longer string would not). */
    char category[ENGINE_NAME_MAX];
    char seats[ENGINE_HOLD_SEATS_MAX][ENGINE_LABEL_MAX];
} net_reserve_args;

/* True when `body` (n bytes) is a plainly valid reserve body with at most
 * `max_seats` seats (1..ENGINE_HOLD_SEATS_MAX): *out is then filled. False
 * for anything else, `*out` then undefined: parse it the careful way. */
bool net_reserve_body_fast(const char *body, size_t n, uint32_t max_seats, net_reserve_args *out);

#endif /* USHER_NET_BODY_H */
