/*
 * analytics.h - the queries behind usher-pgexport's /api/analytics/... answers.
 *
 * One pgx_db is one PostgreSQL session of its own (never an exporter's): read-only
 * transactions, a statement timeout, reconnected with backoff when it drops. Its
 * functions block on libpq and belong to one thread, the HTTP thread (http.c).
 * docs/analytics.md, "HTTP analytics API", documents every endpoint.
 */
#ifndef USHER_PGEXPORT_ANALYTICS_H
#define USHER_PGEXPORT_ANALYTICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* logfmt logging, as usher-pgexport.c's: level, message, then "key=value ..." */
typedef void (*pgx_log_fn)(const char *level, const char *msg, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

enum {
    PGX_ROWS_MAX = 1000, /* rows per answer at most; more: "truncated": true */
    PGX_RANGE_DAYS_MAX = 3700,
    PGX_TZ_MAX = 64, /* longest time zone name accepted */
};

/* An answer: 200 with a JSON body, or a problem (RFC 9457) described by its members. */
typedef struct pgx_reply {
    int status;
    char *body; /* 200: the JSON document (malloc'd, the caller frees it) */
    size_t body_len;
    const char *type; /* problem slug, e.g. "invalid-field" */
    const char *title;
    char detail[256];
    char field[32];         /* the parameter to blame, or "" */
    unsigned retry_after_s; /* > 0: the answer carries Retry-After */
} pgx_reply;

typedef struct pgx_endpoint pgx_endpoint;

typedef struct pgx_db pgx_db;

/* The endpoint /api/analytics/<name>, or NULL. */
const pgx_endpoint *pgx_endpoint_find(const char *name);

/* Whether it answers without a token (only health). */
bool pgx_endpoint_public(const pgx_endpoint *e);

/*
 * A session on `conninfo` (libpq connection string or URI; copied). Tries to connect
 * now; a failure is logged and retried when a request comes, with backoff. Every
 * statement gets `statement_timeout_ms`; `default_tz` is the requests' time zone when
 * they name none. Returns NULL only when out of memory.
 */
pgx_db *pgx_db_open(const char *conninfo, uint32_t statement_timeout_ms, const char *default_tz,
                    pgx_log_fn log);

/*
 * Checks that `tz` is a time zone PostgreSQL knows (pg_timezone_names). 1: yes, 0: no,
 * -1: the database cannot say now.
 */
int pgx_db_tz_known(pgx_db *db, const char *tz);

/* For shutting down: asks the server to cancel the statement running now, if any, and
 * makes every later request fail (503) without a statement. Any thread may call it. */
void pgx_db_cancel(pgx_db *db);

void pgx_db_close(pgx_db *db);

/* Answers endpoint `e` for the raw query string `query` (after '?', may be NULL). */
void pgx_endpoint_serve(pgx_db *db, const pgx_endpoint *e, const char *query, pgx_reply *out);

#endif /* USHER_PGEXPORT_ANALYTICS_H */
