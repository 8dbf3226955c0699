/*
 * http.h - usher-pgexport's analytics HTTP server (--http ADDR).
 *
 * Serves GET /api/analytics/... (analytics.c) to usherd's admins: a Bearer token
 * that usherd signed, with the admin role. CORS for the listed origins only.
 * Runs on a thread and a libuv loop of its own with a PostgreSQL session of its
 * own, so nothing it does can hold up the exporter's threads.
 * docs/analytics.md, "HTTP analytics API", is the reference.
 */
#ifndef USHER_PGEXPORT_HTTP_H
#define USHER_PGEXPORT_HTTP_H

#include "analytics.h"
#include "auth.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum {
    PGX_ORIGINS_MAX = 16, /* --http-allow-origin values at most */
    PGX_ORIGIN_MAX = 256, /* longest origin, with its NUL */
};

typedef struct pgx_http_config {
    const char *listen;            /* HOST:PORT, [IPv6]:PORT; port 0 picks a free one */
    const char *pg;                /* libpq connection string of the server's own session */
    auth_jwt_key jwt;              /* usherd's token key (iss "usher", aud "usher-api") */
    const char *tz;                /* requests' default time zone */
    uint32_t statement_timeout_ms; /* per SQL statement */
    char origins[PGX_ORIGINS_MAX][PGX_ORIGIN_MAX]; /* allowed CORS origins */
    size_t norigins;
    pgx_log_fn log;
} pgx_http_config;

/*
 * Adds the comma-separated origins in `list` (scheme://host[:port], http or https;
 * a trailing '/' is dropped, letters are lowercased). False, with the reason in
 * `err`, for one that is not such an origin or one too many.
 */
bool pgx_http_add_origins(pgx_http_config *cfg, const char *list, char *err, size_t cap);

typedef struct pgx_http pgx_http;

/*
 * Binds cfg->listen (logging the address it got), opens the PostgreSQL session and
 * starts the server's thread. The default time zone is checked against the database
 * when it can be reached. NULL, with the reason in `err`, when the address cannot be
 * bound, the time zone is unknown, or a thread cannot be made.
 */
pgx_http *pgx_http_start(const pgx_http_config *cfg, char *err, size_t cap);

/* Closes every connection, cancels a running query, joins the thread and frees. */
void pgx_http_stop(pgx_http *h);

#endif /* USHER_PGEXPORT_HTTP_H */
