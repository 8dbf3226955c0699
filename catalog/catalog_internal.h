/*
 * catalog_internal.h - shared by the catalog's own sources and nothing else.
 */
#ifndef USHER_CATALOG_INTERNAL_H
#define USHER_CATALOG_INTERNAL_H

#include "catalog.h"

/* Invariants stay checked in release builds: a catalog that breaks one would
 * serve or journal wrong data, which is worse than stopping. */
#define CATALOG_ASSERT(c) ((c) ? (void)0 : catalog__assert_fail(#c, __FILE__, __LINE__))

/* Ids travel as JSON integers (json_int_t, signed 64-bit). */
#define CATALOG_ID_MAX ((uint64_t)INT64_MAX)
_Static_assert(sizeof(json_int_t) == 8, "json_int_t holds every id");

_Noreturn void catalog__assert_fail(const char *expr, const char *file, int line);

/* The one dump of canonical JSON (sorted keys, compact): the same object
 * always gives the same bytes. */
#define CATALOG_DUMP_FLAGS (JSON_COMPACT | JSON_SORT_KEYS)

#endif /* USHER_CATALOG_INTERNAL_H */
