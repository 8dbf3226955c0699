/*
 * demo.h - usherd --demo: a small catalog and two accounts on first start.
 */
#ifndef USHER_DEMO_H
#define USHER_DEMO_H

#include "net.h"

/**
 * Creates the demo catalog through the API (net_server_call) unless the
 * catalog already has theaters: 2 cities, 3 theaters, 6 screens of 150 to
 * 600 seats in three categories, 6 movies, showtimes over the next 7 days,
 * and the accounts admin@usher.local and demo@usher.local, whose random
 * passwords are printed once on stdout. Returns 0, or -1 after printing
 * what failed.
 */
int usherd_demo(net_server *s);

#endif /* USHER_DEMO_H */
