/*
 * analytics.c - the SQL and JSON of usher-pgexport's /api/analytics/... answers.
 *
 * Each endpoint is one parameterized statement (PQexecParams: user input never
 * becomes SQL text) run in a read-only transaction whose TimeZone is the
 * request's `tz` (set_config(..., true): for that transaction only):
 *
 *   BEGIN READ ONLY; SELECT set_config('TimeZone', $tz, true);
 *   [SELECT current_date]  -- only when from or to is left to its default
 *   <the endpoint's statement>; COMMIT
 *
 * The statements read `bookings` (and the catalog tables) with the definitions of
 * the views of 003_analytics.sql (a sale is a booking confirmed or cancelled, counted
 * on the day of confirmed_at, ...), not the views themselves: the views group all
 * time before a filter applies, while these filter first on confirmed_at or
 * reserved_at, which the indexes bookings_confirmed_at_idx and
 * bookings_reserved_at_idx serve. Every statement takes the same parameters:
 * $1 from and $2 to (text, YYYY-MM-DD, an inclusive range of days in the session's
 * time zone), $3 the most rows to return (one more than may be shown, so that a
 * cut is visible), $4 the endpoint's own choice (revenue's granularity).
 */
#include "analytics.h"

#include <ctype.h>
#include <inttypes.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

enum {
    PARAMS_MAX = 8,
    PARAM_NAME_MAX = 24,
    PARAM_VALUE_MAX = 128,
    TZ_CACHE = 16,
    CONNECT_TIMEOUT_S = 3,
    BACKOFF_MIN_MS = 100,
    BACKOFF_MAX_MS = 5000,
    DEFAULT_DAYS = 30, /* from/to left out: the 30 days up to today */
};

/* PostgreSQL type OIDs (pg_type.dat; stable across versions). */
enum {
    OID_BOOL = 16,
    OID_INT8 = 20,
    OID_INT2 = 21,
    OID_INT4 = 23,
    OID_TEXT = 25,
    OID_FLOAT4 = 700,
    OID_FLOAT8 = 701,
    OID_NUMERIC = 1700,
};

/* ---- The statements ----------------------------------------------------------------------- */

/* A sale whose confirmed_at falls in the days $1..$2 of the session's time zone. A date
 * compared with a timestamptz is its midnight in that zone. */
#define SALE_IN_RANGE                              \
    " b.status IN ('confirmed', 'cancelled')"      \
    " AND b.confirmed_at >= $1::date::timestamptz" \
    " AND b.confirmed_at < ($2::date + 1)::timestamptz "

#define MONEY_COLUMNS                                                      \
    " count(*) AS bookings, sum(cardinality(b.seats))::bigint AS tickets," \
    " sum(b.amount)::bigint AS gross, sum(b.refund)::bigint AS refunds,"   \
    " sum(b.amount - b.refund)::bigint AS net "

/* Every bucket of the range, empty ones with zeros: a line chart needs no gap filling.
 * A week starts on Monday (ISO); the first bucket may start before `from` and the last
 * end after `to`, but only sales within from..to count. */
static const char sql_revenue[] =
    "WITH s AS ("
    " SELECT date_trunc($4, b.confirmed_at) AS bucket, count(*) AS bookings,"
    "        sum(cardinality(b.seats)) AS tickets, sum(b.amount) AS gross,"
    "        sum(b.refund) AS refunds"
    "   FROM bookings b WHERE" SALE_IN_RANGE "GROUP BY 1)"
    " SELECT to_char(g.bucket, 'YYYY-MM-DD') AS bucket,"
    "        coalesce(s.bookings, 0)::bigint AS bookings, coalesce(s.tickets, 0)::bigint AS "
    "tickets,"
    "        coalesce(s.gross, 0)::bigint AS gross, coalesce(s.refunds, 0)::bigint AS refunds,"
    "        coalesce(s.gross - s.refunds, 0)::bigint AS net"
    "   FROM generate_series(date_trunc($4, $1::date::timestamptz), $2::date::timestamptz,"
    "                        ('1 ' || $4)::interval) AS g(bucket)"
    "   LEFT JOIN s ON s.bucket = g.bucket"
    "  ORDER BY g.bucket LIMIT $3";

/* Sales whose showtime (or its movie, theater) is not known yet: key and label NULL. */
static const char sql_revenue_by_movie[] =
    "SELECT s.movie_id AS key, m.title AS label," MONEY_COLUMNS "  FROM bookings b"
    "  LEFT JOIN showtimes s ON s.id = b.showtime_id"
    "  LEFT JOIN movies m ON m.id = s.movie_id"
    " WHERE" SALE_IN_RANGE " GROUP BY s.movie_id, m.title"
    " ORDER BY net DESC, key NULLS LAST LIMIT $3";

static const char sql_revenue_by_theater[] =
    "SELECT s.theater_id AS key, t.name AS label, t.city," MONEY_COLUMNS "  FROM bookings b"
    "  LEFT JOIN showtimes s ON s.id = b.showtime_id"
    "  LEFT JOIN theaters t ON t.id = s.theater_id"
    " WHERE" SALE_IN_RANGE " GROUP BY s.theater_id, t.name, t.city"
    " ORDER BY net DESC, key NULLS LAST LIMIT $3";

static const char sql_revenue_by_genre[] =
    "SELECT m.genre AS key, m.genre AS label," MONEY_COLUMNS "  FROM bookings b"
    "  LEFT JOIN showtimes s ON s.id = b.showtime_id"
    "  LEFT JOIN movies m ON m.id = s.movie_id"
    " WHERE" SALE_IN_RANGE " GROUP BY m.genre"
    " ORDER BY net DESC, key NULLS LAST LIMIT $3";

/* The whole week: 7 x 24 cells, ISO day of week (1 = Monday) and hour of confirmed_at. */
static const char sql_peak_hours[] =
    "WITH s AS ("
    " SELECT extract(isodow FROM b.confirmed_at)::integer AS isodow,"
    "        extract(hour FROM b.confirmed_at)::integer AS hour,"
    "        count(*) AS bookings, sum(cardinality(b.seats)) AS tickets"
    "   FROM bookings b WHERE" SALE_IN_RANGE "GROUP BY 1, 2)"
    " SELECT d.d AS isodow, h.h AS hour, coalesce(s.bookings, 0)::bigint AS bookings,"
    "        coalesce(s.tickets, 0)::bigint AS tickets"
    "   FROM generate_series(1, 7) AS d(d) CROSS JOIN generate_series(0, 23) AS h(h)"
    "   LEFT JOIN s ON s.isodow = d.d AND s.hour = h.h"
    "  ORDER BY 1, 2 LIMIT $3";

/* Holds placed each day (reserved_at; holds a snapshot brought have none) and what they
 * became, whenever that happened: confirmed (a sale, cancelled later or not), expired,
 * released; the rest are still held or lapsed. rate = confirmed / holds. */
static const char sql_conversion[] =
    "WITH s AS ("
    " SELECT date_trunc('day', b.reserved_at) AS day, count(*) AS holds,"
    "        count(*) FILTER (WHERE b.status IN ('confirmed', 'cancelled')) AS confirmed,"
    "        count(*) FILTER (WHERE b.status = 'expired') AS expired,"
    "        count(*) FILTER (WHERE b.status = 'released') AS released"
    "   FROM bookings b"
    "  WHERE b.reserved_at >= $1::date::timestamptz AND b.reserved_at < ($2::date + 1)::timestamptz"
    "  GROUP BY 1)"
    " SELECT to_char(g.day, 'YYYY-MM-DD') AS day, coalesce(s.holds, 0)::bigint AS holds,"
    "        coalesce(s.confirmed, 0)::bigint AS confirmed,"
    "        coalesce(s.expired, 0)::bigint AS expired,"
    "        coalesce(s.released, 0)::bigint AS released,"
    "        round(s.confirmed::numeric / nullif(s.holds, 0), 4) AS rate"
    "   FROM generate_series($1::date::timestamptz, $2::date::timestamptz, '1 day') AS g(day)"
    "   LEFT JOIN s ON s.day = g.day"
    "  ORDER BY g.day LIMIT $3";

#define CANCEL_COLUMNS                                                                         \
    " count(*) AS bookings, count(*) FILTER (WHERE b.status = 'cancelled') AS cancelled,"      \
    " round((count(*) FILTER (WHERE b.status = 'cancelled'))::numeric / count(*), 4) AS rate," \
    " sum(b.refund)::bigint AS refunds "

/* Of the sales confirmed in the range, those cancelled since (a cancellation counts with
 * the sale it undoes, as in the views). */
static const char sql_cancellations_by_day[] =
    "WITH s AS ("
    " SELECT date_trunc('day', b.confirmed_at) AS day," CANCEL_COLUMNS
    "   FROM bookings b WHERE" SALE_IN_RANGE "GROUP BY 1)"
    " SELECT to_char(g.day, 'YYYY-MM-DD') AS day, coalesce(s.bookings, 0)::bigint AS bookings,"
    "        coalesce(s.cancelled, 0)::bigint AS cancelled, s.rate,"
    "        coalesce(s.refunds, 0)::bigint AS refunds"
    "   FROM generate_series($1::date::timestamptz, $2::date::timestamptz, '1 day') AS g(day)"
    "   LEFT JOIN s ON s.day = g.day"
    "  ORDER BY g.day LIMIT $3";

static const char sql_cancellations_by_movie[] =
    "SELECT s.movie_id AS key, m.title AS label," CANCEL_COLUMNS "  FROM bookings b"
    "  LEFT JOIN showtimes s ON s.id = b.showtime_id"
    "  LEFT JOIN movies m ON m.id = s.movie_id"
    " WHERE" SALE_IN_RANGE " GROUP BY s.movie_id, m.title"
    " ORDER BY rate DESC, bookings DESC, key NULLS LAST LIMIT $3";

static const char sql_cancellations_by_theater[] =
    "SELECT s.theater_id AS key, t.name AS label, t.city," CANCEL_COLUMNS "  FROM bookings b"
    "  LEFT JOIN showtimes s ON s.id = b.showtime_id"
    "  LEFT JOIN theaters t ON t.id = s.theater_id"
    " WHERE" SALE_IN_RANGE " GROUP BY s.theater_id, t.name, t.city"
    " ORDER BY rate DESC, bookings DESC, key NULLS LAST LIMIT $3";

static const char sql_top_users[] =
    "SELECT b.user_id, u.name, u.email," MONEY_COLUMNS "  FROM bookings b"
    "  LEFT JOIN users u ON u.id = b.user_id"
    " WHERE" SALE_IN_RANGE " GROUP BY b.user_id, u.name, u.email"
    " ORDER BY net DESC, b.user_id LIMIT $3";

/* Showtimes starting in the range (not deleted: a showtime with sales cannot be deleted).
 * sold: seats of confirmed bookings; held: of holds live now. */
static const char sql_occupancy[] =
    "SELECT s.id AS showtime_id,"
    "       to_char(s.starts_at, 'YYYY-MM-DD\"T\"HH24:MI:SSTZH:TZM') AS starts_at,"
    "       s.movie_id, m.title, s.theater_id, t.name AS theater, t.city, s.seat_count,"
    "       coalesce(x.sold, 0)::bigint AS sold, coalesce(x.held, 0)::bigint AS held,"
    "       round(coalesce(x.sold, 0)::numeric / nullif(s.seat_count, 0), 4) AS occupancy"
    "  FROM showtimes s"
    "  LEFT JOIN movies m ON m.id = s.movie_id"
    "  LEFT JOIN theaters t ON t.id = s.theater_id"
    "  LEFT JOIN LATERAL ("
    "       SELECT sum(cardinality(b.seats)) FILTER (WHERE b.status = 'confirmed') AS sold,"
    "              sum(cardinality(b.seats)) FILTER (WHERE b.status = 'held'"
    "                                                  AND b.expires_at > now()) AS held"
    "         FROM bookings b WHERE b.showtime_id = s.id) x ON true"
    " WHERE s.deleted_at IS NULL"
    "   AND s.starts_at >= $1::date::timestamptz AND s.starts_at < ($2::date + 1)::timestamptz"
    " ORDER BY s.starts_at, s.id LIMIT $3";

static const char sql_health[] =
    "SELECT shard, lsn, events,"
    "       to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"
    "           AS updated_at"
    "  FROM export_state ORDER BY shard";

/* ---- Endpoints ---------------------------------------------------------------------------- */

typedef struct variant {
    const char *value; /* the parameter's value that selects it */
    const char *sql;
} variant;

struct pgx_endpoint {
    const char *name;
    bool is_public;         /* no token needed (health) */
    const char *param;      /* its own parameter, or NULL */
    variant variants[3];    /* the values of param (the first is the default), or one */
    uint32_t limit_default; /* param "limit": 1..limit_max, default limit_default */
    uint32_t limit_max;     /* 0: no limit parameter (PGX_ROWS_MAX rows at most) */
};

static const pgx_endpoint endpoints[] = {
    {"health", true, NULL, {{NULL, sql_health}}, 0, 0},
    {"revenue",
     false,
     "granularity",
     {{"day", sql_revenue}, {"week", sql_revenue}, {"month", sql_revenue}},
     0,
     0},
    {"revenue-by",
     false,
     "dim",
     {{"movie", sql_revenue_by_movie},
      {"theater", sql_revenue_by_theater},
      {"genre", sql_revenue_by_genre}},
     0,
     0},
    {"peak-hours", false, NULL, {{NULL, sql_peak_hours}}, 0, 0},
    {"conversion", false, NULL, {{NULL, sql_conversion}}, 0, 0},
    {"cancellations",
     false,
     "by",
     {{"day", sql_cancellations_by_day},
      {"movie", sql_cancellations_by_movie},
      {"theater", sql_cancellations_by_theater}},
     0,
     0},
    {"top-users", false, "limit", {{NULL, sql_top_users}}, 10, 100},
    {"occupancy", false, "limit", {{NULL, sql_occupancy}}, 100, PGX_ROWS_MAX},
};

const pgx_endpoint *pgx_endpoint_find(const char *name)
{
    for (size_t i = 0; i < sizeof(endpoints) / sizeof(endpoints[0]); i++)
        if (strcmp(endpoints[i].name, name) == 0)
            return &endpoints[i];
    return NULL;
}

bool pgx_endpoint_public(const pgx_endpoint *e)
{
    return e->is_public;
}

/* ---- Replies ------------------------------------------------------------------------------ */

static void problem(pgx_reply *out, int status, const char *type, const char *title,
                    const char *field, const char *fmt, ...) __attribute__((format(printf, 6, 7)));
static void problem(pgx_reply *out, int status, const char *type, const char *title,
                    const char *field, const char *fmt, ...)
{
    out->status = status;
    out->type = type;
    out->title = title;
    snprintf(out->field, sizeof(out->field), "%s", field != NULL ? field : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(out->detail, sizeof(out->detail), fmt, ap);
    va_end(ap);
}

static void invalid(pgx_reply *out, const char *field, const char *detail)
{
    problem(out, 400, "invalid-field", "Invalid request field", field, "%s", detail);
}

static void unavailable(pgx_reply *out)
{
    problem(out, 503, "database-unavailable", "Database unavailable", NULL,
            "PostgreSQL cannot be reached now; retry shortly");
    out->retry_after_s = 1;
}

/* ---- Query strings ------------------------------------------------------------------------ */

typedef struct param {
    char name[PARAM_NAME_MAX];
    char value[PARAM_VALUE_MAX + 1];
} param;

typedef struct params {
    param p[PARAMS_MAX];
    int n;
} params;

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = (char)tolower((unsigned char)c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Percent-decodes [s, s + n) into out ('+' is a space, as in a form); false when it is
 * not valid encoding, holds a NUL or a control byte, or does not fit in cap - 1. */
static bool url_decode(const char *s, size_t n, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        int ch = (unsigned char)s[i];
        if (ch == '%') {
            if (i + 2 >= n)
                return false;
            int hi = hexval(s[i + 1]), lo = hexval(s[i + 2]);
            if (hi < 0 || lo < 0)
                return false;
            ch = hi * 16 + lo;
            i += 2;
        } else if (ch == '+') {
            ch = ' ';
        }
        if (ch < 0x20 || ch == 0x7f || o + 1 >= cap)
            return false;
        out[o++] = (char)ch;
    }
    out[o] = '\0';
    return true;
}

/* Splits the query string; only the names in `allowed` (NULL-terminated), each once. */
static bool parse_query(const char *q, const char *const *allowed, params *ps, pgx_reply *out)
{
    ps->n = 0;
    while (q != NULL && *q != '\0') {
        size_t len = strcspn(q, "&");
        const char *eq = memchr(q, '=', len);
        size_t nlen = eq != NULL ? (size_t)(eq - q) : len;
        if (len > 0) {
            char name[PARAM_NAME_MAX];
            if (!url_decode(q, nlen, name, sizeof(name))) {
                snprintf(name, sizeof(name), "%.*s", (int)(nlen < 20 ? nlen : 20), q);
                invalid(out, name, "unknown parameter");
                return false;
            }
            bool known = false;
            for (int i = 0; allowed[i] != NULL; i++)
                known = known || strcmp(allowed[i], name) == 0;
            if (!known) {
                invalid(out, name, "unknown parameter");
                return false;
            }
            for (int i = 0; i < ps->n; i++) {
                if (strcmp(ps->p[i].name, name) == 0) {
                    invalid(out, name, "given more than once");
                    return false;
                }
            }
            if (ps->n == PARAMS_MAX) {
                invalid(out, name, "too many parameters");
                return false;
            }
            param *p = &ps->p[ps->n];
            const char *v = eq != NULL ? eq + 1 : q + len;
            if (!url_decode(v, (size_t)(q + len - v), p->value, sizeof(p->value))) {
                invalid(out, name,
                        "not a valid value (percent-encoding, control bytes or "
                        "longer than 128 bytes)");
                return false;
            }
            snprintf(p->name, sizeof(p->name), "%s", name);
            ps->n++;
        }
        q += len;
        if (*q == '&')
            q++;
    }
    return true;
}

static const char *param_get(const params *ps, const char *name)
{
    for (int i = 0; i < ps->n; i++)
        if (strcmp(ps->p[i].name, name) == 0)
            return ps->p[i].value;
    return NULL;
}

/* ---- Days --------------------------------------------------------------------------------- */

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static void civil_from_days(int64_t z, char out[11])
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t y = yoe + era * 400;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    int64_t d = doy - (153 * mp + 2) / 5 + 1;
    int64_t m = mp < 10 ? mp + 3 : mp - 9;
    y += m <= 2;
    snprintf(out, 11, "%04d-%02d-%02d", (int)(y < 0 ? 0 : y > 9999 ? 9999 : y), (int)m, (int)d);
}

/* YYYY-MM-DD, a real day of the years 1970..9999, to days since 1970-01-01. */
static bool parse_day(const char *s, int64_t *days)
{
    if (strlen(s) != 10 || s[4] != '-' || s[7] != '-')
        return false;
    for (int i = 0; i < 10; i++)
        if (i != 4 && i != 7 && !isdigit((unsigned char)s[i]))
            return false;
    int y = atoi(s), m = atoi(s + 5), d = atoi(s + 8);
    static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (y < 1970 || m < 1 || m > 12 || d < 1 || d > mdays[m - 1] + (m == 2 && leap))
        return false;
    *days = days_from_civil(y, m, d);
    return true;
}

/* ---- The session -------------------------------------------------------------------------- */

struct pgx_db {
    char *conninfo;
    PGconn *c;
    uv_mutex_t cancel_mu; /* guards cancel: pgx_db_cancel may come from another thread */
    PGcancel *cancel;
    atomic_bool stopping; /* pgx_db_cancel was called: no more statements */
    uint32_t statement_timeout_ms;
    char tz[PGX_TZ_MAX + 1];
    pgx_log_fn log;
    uint64_t retry_at_ms; /* no connection attempt before (monotonic ms) */
    uint32_t backoff_ms;
    char tz_known[TZ_CACHE][PGX_TZ_MAX + 1]; /* names pg_timezone_names had */
    unsigned tz_n, tz_next;
};

static uint64_t now_ms(void)
{
    return uv_hrtime() / 1000000;
}

static const char *first_line(const char *m, char *buf, size_t cap)
{
    snprintf(buf, cap, "%.*s", (int)strcspn(m, "\n"), m);
    return buf[0] != '\0' ? buf : "unknown error";
}

static void db_drop(pgx_db *db)
{
    uv_mutex_lock(&db->cancel_mu);
    if (db->cancel != NULL)
        PQfreeCancel(db->cancel);
    db->cancel = NULL;
    uv_mutex_unlock(&db->cancel_mu);
    if (db->c != NULL)
        PQfinish(db->c);
    db->c = NULL;
}

/* Connects (blocking, at most CONNECT_TIMEOUT_S) and sets the session up. */
static bool db_connect(pgx_db *db)
{
    /* The conninfo is expanded in place of dbname: what it sets wins over these. */
    char timeout[16];
    snprintf(timeout, sizeof(timeout), "%d", CONNECT_TIMEOUT_S);
    const char *const keys[] = {"connect_timeout", "application_name", "dbname", NULL};
    const char *const vals[] = {timeout, "usher-pgexport-http", db->conninfo, NULL};
    db->c = PQconnectdbParams(keys, vals, 1);
    char e[256];
    if (PQstatus(db->c) != CONNECTION_OK) {
        db->log("warn", "http: cannot connect to PostgreSQL", "error=\"%s\"",
                first_line(PQerrorMessage(db->c), e, sizeof(e)));
        db_drop(db);
        return false;
    }
    /* Nothing here can write, a statement cannot run for long, and values come back
     * as the JSON wants them (UTF-8, ISO dates). */
    char setup[256];
    snprintf(setup, sizeof(setup),
             "SET default_transaction_read_only = on; SET statement_timeout = %" PRIu32 "; "
             "SET client_encoding = 'UTF8'; SET DateStyle = 'ISO, YMD'; "
             "SET extra_float_digits = 0",
             db->statement_timeout_ms);
    PGresult *r = PQexec(db->c, setup);
    bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    if (!ok)
        db->log("warn", "http: cannot set the session up", "error=\"%s\"",
                first_line(PQerrorMessage(db->c), e, sizeof(e)));
    PQclear(r);
    if (!ok) {
        db_drop(db);
        return false;
    }
    uv_mutex_lock(&db->cancel_mu);
    db->cancel = PQgetCancel(db->c);
    uv_mutex_unlock(&db->cancel_mu);
    db->log("info", "http: connected to PostgreSQL", "application_name=usher-pgexport-http");
    return true;
}

/* A connection, now or after the backoff: false means answer 503. */
static bool db_ensure(pgx_db *db)
{
    if (atomic_load(&db->stopping))
        return false;
    if (db->c != NULL && PQstatus(db->c) == CONNECTION_OK)
        return true;
    db_drop(db);
    if (now_ms() < db->retry_at_ms)
        return false;
    if (db_connect(db)) {
        db->backoff_ms = BACKOFF_MIN_MS;
        return true;
    }
    db->retry_at_ms = now_ms() + db->backoff_ms;
    db->backoff_ms = db->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : db->backoff_ms * 2;
    return false;
}

pgx_db *pgx_db_open(const char *conninfo, uint32_t statement_timeout_ms, const char *default_tz,
                    pgx_log_fn log)
{
    pgx_db *db = calloc(1, sizeof(*db));
    if (db == NULL)
        return NULL;
    db->conninfo = strdup(conninfo);
    if (db->conninfo == NULL) {
        free(db);
        return NULL;
    }
    uv_mutex_init(&db->cancel_mu);
    db->statement_timeout_ms = statement_timeout_ms;
    snprintf(db->tz, sizeof(db->tz), "%s", default_tz);
    db->log = log;
    db->backoff_ms = BACKOFF_MIN_MS;
    db_ensure(db);
    return db;
}

void pgx_db_cancel(pgx_db *db)
{
    char e[256];
    atomic_store(&db->stopping, true);
    uv_mutex_lock(&db->cancel_mu);
    if (db->cancel != NULL)
        PQcancel(db->cancel, e, sizeof(e));
    uv_mutex_unlock(&db->cancel_mu);
}

void pgx_db_close(pgx_db *db)
{
    if (db == NULL)
        return;
    db_drop(db);
    uv_mutex_destroy(&db->cancel_mu);
    free(db->conninfo);
    free(db);
}

/* How a statement failed. */
typedef enum { RUN_OK, RUN_LOST, RUN_TIMEOUT, RUN_ERROR } run_result;

static run_result run_check(pgx_db *db, PGresult *r, const char *what)
{
    ExecStatusType s = PQresultStatus(r);
    if (s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK)
        return RUN_OK;
    const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    if (state == NULL)
        state = "";
    char e[256];
    const char *msg = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
    if (msg == NULL)
        msg = first_line(PQerrorMessage(db->c), e, sizeof(e));
    if (PQstatus(db->c) != CONNECTION_OK || strncmp(state, "08", 2) == 0 ||
        strncmp(state, "57P", 3) == 0) {
        db->log("warn", "http: lost the PostgreSQL connection", "what=%s error=\"%s\"", what, msg);
        return RUN_LOST;
    }
    if (strcmp(state, "57014") == 0) /* query_canceled: statement_timeout, or pgx_db_cancel */
        return RUN_TIMEOUT;
    db->log("warn", "http: query failed", "what=%s sqlstate=%s error=\"%s\"", what, state, msg);
    return RUN_ERROR;
}

static run_result run_command(pgx_db *db, const char *sql)
{
    PGresult *r = PQexec(db->c, sql);
    run_result rr = run_check(db, r, sql);
    PQclear(r);
    return rr;
}

/* 1 / 0 / -1 as pgx_db_tz_known, on a connection that is up. */
static int tz_lookup(pgx_db *db, const char *tz, run_result *rr)
{
    for (unsigned i = 0; i < db->tz_n; i++)
        if (strcmp(db->tz_known[i], tz) == 0)
            return 1;
    const char *params[1] = {tz};
    PGresult *r = PQexecParams(db->c, "SELECT 1 FROM pg_timezone_names WHERE name = $1", 1, NULL,
                               params, NULL, NULL, 0);
    *rr = run_check(db, r, "pg_timezone_names");
    int known = *rr != RUN_OK ? -1 : PQntuples(r) > 0;
    PQclear(r);
    if (known == 1) {
        snprintf(db->tz_known[db->tz_next], sizeof(db->tz_known[0]), "%s", tz);
        db->tz_next = (db->tz_next + 1) % TZ_CACHE;
        if (db->tz_n < TZ_CACHE)
            db->tz_n++;
    }
    return known;
}

/* What a time zone name may look like (Area/City, Etc/GMT+5, UTC): checked before the
 * database sees it. */
static bool tz_shaped(const char *tz)
{
    size_t n = strlen(tz);
    if (n == 0 || n > PGX_TZ_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = tz[i];
        if (!isalnum((unsigned char)c) && c != '/' && c != '_' && c != '-' && c != '+')
            return false;
    }
    return true;
}

int pgx_db_tz_known(pgx_db *db, const char *tz)
{
    if (!tz_shaped(tz))
        return 0;
    if (!db_ensure(db))
        return -1;
    run_result rr;
    int k = tz_lookup(db, tz, &rr);
    if (rr == RUN_LOST)
        db_drop(db);
    return k;
}

/* ---- JSON --------------------------------------------------------------------------------- */

/* One value of a result as JSON, by the column's type: integers and numerics are numbers. */
static json_t *cell_json(const PGresult *r, int row, int col)
{
    if (PQgetisnull(r, row, col))
        return json_null();
    const char *v = PQgetvalue(r, row, col);
    switch (PQftype(r, col)) {
    case OID_INT2:
    case OID_INT4:
    case OID_INT8:
        return json_integer((json_int_t)strtoll(v, NULL, 10));
    case OID_NUMERIC:
    case OID_FLOAT4:
    case OID_FLOAT8:
        return json_real(strtod(v, NULL));
    case OID_BOOL:
        return json_boolean(v[0] == 't');
    default: {
        json_t *s = json_stringn(v, (size_t)PQgetlength(r, row, col));
        return s != NULL ? s : json_null(); /* not UTF-8 (a SQL_ASCII database) */
    }
    }
}

/* "columns" and up to `max` of the result's rows into `o`; true when rows were left out. */
static bool rows_json(json_t *o, const PGresult *r, int max)
{
    int nf = PQnfields(r), nt = PQntuples(r);
    json_t *cols = json_array();
    for (int f = 0; f < nf; f++)
        json_array_append_new(cols, json_string(PQfname(r, f)));
    json_object_set_new(o, "columns", cols);
    json_t *rows = json_array();
    for (int t = 0; t < nt && t < max; t++) {
        json_t *row = json_object();
        for (int f = 0; f < nf; f++)
            json_object_set_new(row, PQfname(r, f), cell_json(r, t, f));
        json_array_append_new(rows, row);
    }
    json_object_set_new(o, "rows", rows);
    return nt > max;
}

static void reply_json(pgx_reply *out, json_t *o)
{
    /* Ratios are rounded to 4 decimals in SQL; 15 digits print them as they are. */
    char *s = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(15));
    json_decref(o);
    if (s == NULL) {
        problem(out, 500, "internal", "Internal error", NULL, "cannot build the answer");
        return;
    }
    out->status = 200;
    out->body = s;
    out->body_len = strlen(s);
}

/* ---- Serving ------------------------------------------------------------------------------ */

typedef struct request {
    const pgx_endpoint *e;
    const variant *v;
    const char *tz;
    const char *from, *to; /* as given, or NULL */
    uint32_t limit;        /* rows to show at most */
} request;

static run_result fail_from(pgx_db *db, run_result rr, pgx_reply *out)
{
    if (rr != RUN_LOST)
        run_command(db, "ROLLBACK");
    if (rr == RUN_TIMEOUT)
        problem(out, 504, "query-timeout", "Query timeout", NULL,
                "the query ran longer than the statement timeout (%" PRIu32 " ms)",
                db->statement_timeout_ms);
    else if (rr == RUN_LOST)
        unavailable(out);
    else
        problem(out, 500, "internal", "Internal error", NULL, "the query failed");
    return rr;
}

static run_result serve_health(pgx_db *db, pgx_reply *out)
{
    PGresult *r = PQexec(db->c, sql_health);
    run_result rr = run_check(db, r, "health");
    if (rr == RUN_OK) {
        json_t *o = json_object();
        json_object_set_new(o, "ok", json_true());
        json_t *shards = json_object();
        rows_json(shards, r, PGX_ROWS_MAX);
        json_object_set(o, "shards", json_object_get(shards, "rows"));
        json_decref(shards);
        reply_json(out, o);
    }
    PQclear(r);
    return rr == RUN_OK ? rr : fail_from(db, rr, out);
}

/* One transaction: the time zone, the range, the statement. */
static run_result serve_range(pgx_db *db, const request *q, pgx_reply *out)
{
    run_result rr;
    int known = tz_lookup(db, q->tz, &rr);
    if (known < 0)
        return fail_from(db, rr, out);
    if (known == 0) {
        invalid(out, "tz",
                "not a time zone PostgreSQL knows (pg_timezone_names), e.g. "
                "Asia/Kolkata or UTC");
        return RUN_OK;
    }
    if ((rr = run_command(db, "BEGIN READ ONLY")) != RUN_OK)
        return fail_from(db, rr, out);
    const char *tzp[1] = {q->tz};
    PGresult *r =
        PQexecParams(db->c, "SELECT set_config('TimeZone', $1, true)", 1, NULL, tzp, NULL, NULL, 0);
    rr = run_check(db, r, "set_config");
    PQclear(r);
    if (rr != RUN_OK)
        return fail_from(db, rr, out);

    /* The range: what was given, else the DEFAULT_DAYS days up to today (in tz). */
    int64_t from = 0, to = 0;
    if (q->from != NULL)
        parse_day(q->from, &from);
    if (q->to != NULL)
        parse_day(q->to, &to);
    if (q->to == NULL || q->from == NULL) {
        int64_t today = 0;
        if (q->to == NULL) {
            r = PQexec(db->c, "SELECT to_char(current_date, 'YYYY-MM-DD')");
            rr = run_check(db, r, "current_date");
            if (rr == RUN_OK && (PQntuples(r) != 1 || !parse_day(PQgetvalue(r, 0, 0), &today)))
                rr = RUN_ERROR;
            PQclear(r);
            if (rr != RUN_OK)
                return fail_from(db, rr, out);
            to = today;
        }
        if (q->from == NULL)
            from = to - (DEFAULT_DAYS - 1);
    }
    if (from > to) {
        run_command(db, "ROLLBACK");
        invalid(out, "from", "is after to");
        return RUN_OK;
    }
    if (to - from + 1 > PGX_RANGE_DAYS_MAX) {
        run_command(db, "ROLLBACK");
        invalid(out, "from", "the range from..to is longer than 3700 days");
        return RUN_OK;
    }
    if (atomic_load(&db->stopping))
        return fail_from(db, RUN_LOST, out); /* shutting down: 503 */
    char fs[11], ts[11], cap[16];
    civil_from_days(from, fs);
    civil_from_days(to, ts);
    snprintf(cap, sizeof(cap), "%" PRIu32, q->limit + 1);
    const char *params[4] = {fs, ts, cap, q->v->value != NULL ? q->v->value : ""};
    const Oid types[4] = {OID_TEXT, OID_TEXT, OID_INT8, OID_TEXT};
    r = PQexecParams(db->c, q->v->sql, 4, types, params, NULL, NULL, 0);
    rr = run_check(db, r, q->e->name);
    if (rr != RUN_OK) {
        PQclear(r);
        return fail_from(db, rr, out);
    }
    json_t *o = json_object();
    json_object_set_new(o, "from", json_string(fs));
    json_object_set_new(o, "to", json_string(ts));
    json_object_set_new(o, "tz", json_string(q->tz));
    if (q->e->param != NULL && q->e->limit_max == 0)
        json_object_set_new(o, q->e->param, json_string(q->v->value));
    if (q->e->limit_max > 0)
        json_object_set_new(o, "limit", json_integer(q->limit));
    bool cut = rows_json(o, r, (int)q->limit);
    json_object_set_new(o, "truncated", json_boolean(cut));
    PQclear(r);
    rr = run_command(db, "COMMIT");
    if (rr != RUN_OK) {
        json_decref(o);
        return fail_from(db, rr, out);
    }
    reply_json(out, o);
    return RUN_OK;
}

/* The parameters: 400 for anything out of shape, before the database is asked. */
static bool parse_request(const pgx_endpoint *e, const char *query, const char *default_tz,
                          request *q, params *ps, pgx_reply *out)
{
    const char *ranged[] = {"from", "to", "tz", e->param, NULL};
    const char *none[] = {NULL};
    if (!parse_query(query, e->is_public ? none : ranged, ps, out))
        return false;
    *q = (request){.e = e, .v = &e->variants[0], .limit = PGX_ROWS_MAX};
    if (e->is_public)
        return true;
    int64_t day;
    q->from = param_get(ps, "from");
    q->to = param_get(ps, "to");
    if (q->from != NULL && !parse_day(q->from, &day)) {
        invalid(out, "from", "must be a date YYYY-MM-DD");
        return false;
    }
    if (q->to != NULL && !parse_day(q->to, &day)) {
        invalid(out, "to", "must be a date YYYY-MM-DD");
        return false;
    }
    q->tz = param_get(ps, "tz");
    if (q->tz == NULL)
        q->tz = default_tz;
    if (!tz_shaped(q->tz)) {
        invalid(out, "tz", "must be a time zone name such as Asia/Kolkata or UTC");
        return false;
    }
    const char *pv = e->param != NULL ? param_get(ps, e->param) : NULL;
    if (e->limit_max > 0) {
        q->limit = e->limit_default;
        if (pv != NULL) {
            char *end;
            unsigned long n = strtoul(pv, &end, 10);
            if (!isdigit((unsigned char)pv[0]) || *end != '\0' || n < 1 || n > e->limit_max) {
                char d[64];
                snprintf(d, sizeof(d), "must be an integer from 1 to %" PRIu32, e->limit_max);
                invalid(out, e->param, d);
                return false;
            }
            q->limit = (uint32_t)n;
        }
    } else if (pv != NULL) {
        q->v = NULL;
        for (size_t i = 0; i < 3 && e->variants[i].value != NULL; i++)
            if (strcmp(e->variants[i].value, pv) == 0)
                q->v = &e->variants[i];
        if (q->v == NULL) {
            char d[96];
            snprintf(d, sizeof(d), "must be one of %s, %s, %s", e->variants[0].value,
                     e->variants[1].value, e->variants[2].value);
            invalid(out, e->param, d);
            return false;
        }
    }
    return true;
}

void pgx_endpoint_serve(pgx_db *db, const pgx_endpoint *e, const char *query, pgx_reply *out)
{
    memset(out, 0, sizeof(*out));
    request q;
    params ps;
    if (!parse_request(e, query, db->tz, &q, &ps, out))
        return;
    /* A connection found broken by the first statement is replaced once at once: after a
     * PostgreSQL restart the first request need not fail. */
    for (int attempt = 0; attempt < 2; attempt++) {
        if (!db_ensure(db)) {
            unavailable(out);
            return;
        }
        memset(out, 0, sizeof(*out));
        run_result rr = e->is_public ? serve_health(db, out) : serve_range(db, &q, out);
        if (rr != RUN_LOST)
            return;
        db_drop(db);
        free(out->body);
        out->body = NULL;
    }
}
