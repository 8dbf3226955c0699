/*
 * repl.c - WAL records and snapshot items as NDJSON event lines.
 *
 * The writer below appends to a repl_buf and remembers an allocation
 * failure instead of checking every call: an encoder starts a line, writes
 * it, and either ends it (0) or rolls the buffer back to where the line
 * began (-ENOMEM, REPL_EDECODE).
 */
#include "repl.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const char *repl_strerror(int err)
{
    switch (err) {
    case 0:
        return "ok";
    case REPL_EDECODE:
        return "record or item does not decode";
    case REPL_ETYPE:
        return "unknown WAL record type";
    case -ENOMEM:
        return "out of memory";
    default:
        return err < 0 ? strerror(-err) : "unknown error";
    }
}

void repl_buf_free(repl_buf *b)
{
    free(b->p);
    memset(b, 0, sizeof(*b));
}

void repl_buf_clear(repl_buf *b)
{
    b->len = 0;
}

/* ---- Writer ------------------------------------------------------------------------ */

typedef struct writer {
    repl_buf *b;
    size_t start; /* where the line began */
    bool oom;
} writer;

static bool reserve(writer *w, size_t n)
{
    if (w->oom)
        return false;
    repl_buf *b = w->b;
    if (b->len + n <= b->cap)
        return true;
    size_t cap = b->cap != 0 ? b->cap : 256;
    while (cap < b->len + n)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (p == NULL) {
        w->oom = true;
        return false;
    }
    b->p = p;
    b->cap = cap;
    return true;
}

static void put(writer *w, const char *s, size_t n)
{
    if (!reserve(w, n))
        return;
    memcpy(w->b->p + w->b->len, s, n);
    w->b->len += n;
}

static void puts_(writer *w, const char *s)
{
    put(w, s, strlen(s));
}

static void putf(writer *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void putf(writer *w, const char *fmt, ...)
{
    char tmp[128];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(tmp)) {
        w->oom = true; /* every format here is short: this is a bug, reported as a failure */
        return;
    }
    put(w, tmp, (size_t)n);
}

static void put_u64(writer *w, uint64_t v)
{
    char tmp[24];
    size_t n = 0;
    do {
        tmp[sizeof(tmp) - 1 - n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    put(w, tmp + sizeof(tmp) - n, n);
}

/* A JSON string: quotes, escapes for '"', '\\' and control bytes. */
static void put_str(writer *w, const char *s, size_t n)
{
    put(w, "\"", 1);
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        put(w, s + run, i - run);
        run = i + 1;
        if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            put(w, e, 2);
        } else {
            putf(w, "\\u%04x", c);
        }
    }
    put(w, s + run, n - run);
    put(w, "\"", 1);
}

static void put_time(writer *w, int64_t ms)
{
    char t[32];
    repl_time_format(ms, true, t);
    put_str(w, t, strlen(t));
}

static void put_seats(writer *w, const uint32_t *seats, uint32_t n)
{
    put(w, "[", 1);
    for (uint32_t i = 0; i < n; i++) {
        if (i > 0)
            put(w, ",", 1);
        put_u64(w, seats[i]);
    }
    put(w, "]", 1);
}

static writer line_begin(repl_buf *b)
{
    writer w = {.b = b, .start = b->len};
    return w;
}

/* `{"v":1,"shard":S[,"lsn":L],"ts":T,"type":"X"` */
static void head(writer *w, uint32_t shard, uint64_t lsn, int64_t ts_ms, const char *type)
{
    putf(w, "{\"v\":%d,\"shard\":%" PRIu32, REPL_FORMAT_VERSION, shard);
    if (lsn > 0) {
        puts_(w, ",\"lsn\":");
        put_u64(w, lsn);
    }
    if (ts_ms != INT64_MIN) {
        puts_(w, ",\"ts\":");
        put_time(w, ts_ms);
    }
    puts_(w, ",\"type\":");
    put_str(w, type, strlen(type));
}

static int line_end(writer *w, int rc)
{
    if (rc == 0 && !w->oom) {
        put(w, "\n", 1);
        if (!w->oom)
            return 0;
    }
    w->b->len = w->start;
    return rc != 0 ? rc : -ENOMEM;
}

/* ---- Times --------------------------------------------------------------------------- */

/* Days since 1970-01-01 to a proleptic Gregorian date (H. Hinnant's algorithm). */
static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

void repl_time_format(int64_t ms, bool millis, char out[32])
{
    /* Floor division without negating (-INT64_MIN overflows). */
    int64_t secs = ms / 1000 - (ms % 1000 < 0);
    int64_t days = secs / 86400 - (secs % 86400 < 0);
    int64_t sod = secs - days * 86400, y;
    unsigned mo, d;
    civil_from_days(days, &y, &mo, &d);
    if (y < 0 || y > 9999) {
        time_t t = (time_t)secs;
        struct tm tm;
        gmtime_r(&t, &tm);
        size_t n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
        snprintf(out + n, 32 - n, millis ? ".%03dZ" : "Z", (int)(ms - secs * 1000));
        return;
    }
    unsigned v[7] = {(unsigned)y / 100,         (unsigned)y % 100,   mo, d, (unsigned)(sod / 3600),
                     (unsigned)(sod / 60 % 60), (unsigned)(sod % 60)};
    static const char sep[7] = {0, 0, '-', '-', 'T', ':', ':'};
    char *o = out;
    for (int i = 0; i < 7; i++) {
        if (sep[i] != 0)
            *o++ = sep[i];
        *o++ = (char)('0' + v[i] / 10);
        *o++ = (char)('0' + v[i] % 10);
    }
    if (millis) {
        unsigned frac = (unsigned)(ms - secs * 1000);
        *o++ = '.';
        *o++ = (char)('0' + frac / 100);
        *o++ = (char)('0' + frac / 10 % 10);
        *o++ = (char)('0' + frac % 10);
    }
    *o++ = 'Z';
    *o = '\0';
}

const char *repl_payment_name(engine_payment p)
{
    switch (p) {
    case ENGINE_PAY_UPI:
        return "upi";
    case ENGINE_PAY_CARD:
        return "card";
    case ENGINE_PAY_WALLET:
        return "wallet";
    }
    return NULL;
}

/* ---- Shared payloads ------------------------------------------------------------------ */

/* `"layout_id":…,"categories":[…],"seat_labels":[…],"seat_categories":[…]` */
static int put_layout(writer *w, uint64_t layout_id, const uint8_t *blob, uint32_t len)
{
    engine_layout_spec spec;
    int rc = engine_layout_blob_decode(blob, len, &spec);
    if (rc != 0)
        return rc == ENGINE_ENOMEM ? -ENOMEM : REPL_EDECODE;
    puts_(w, "\"layout_id\":");
    put_u64(w, layout_id);
    puts_(w, ",\"categories\":[");
    for (uint32_t c = 0; c < spec.category_count; c++) {
        if (c > 0)
            put(w, ",", 1);
        put_str(w, spec.category_names[c], strlen(spec.category_names[c]));
    }
    puts_(w, "],\"seat_labels\":[");
    for (uint32_t i = 0; i < spec.seat_count; i++) {
        if (i > 0)
            put(w, ",", 1);
        put_str(w, spec.seats[i].label, strlen(spec.seats[i].label));
    }
    puts_(w, "],\"seat_categories\":[");
    for (uint32_t i = 0; i < spec.seat_count; i++) {
        if (i > 0)
            put(w, ",", 1);
        put_u64(w, spec.seats[i].category);
    }
    put(w, "]", 1);
    engine_layout_spec_free(&spec);
    return 0;
}

static void put_prices(writer *w, const uint32_t *prices, uint32_t n)
{
    put_seats(w, prices, n); /* the same shape: an array of integers */
}

/* `"kind":"…","id":…,"entity":{…}`: the canonical JSON as stored, except a
 * user's password hash. */
static int put_entity(writer *w, catalog_kind kind, uint64_t id, const char *json, size_t len)
{
    const char *name = catalog_kind_name(kind);
    if (name == NULL)
        return REPL_EDECODE;
    puts_(w, "\"kind\":");
    put_str(w, name, strlen(name));
    puts_(w, ",\"id\":");
    put_u64(w, id);
    puts_(w, ",\"entity\":");
    /* Stored entities are compact JSON; one with a line break (a hand-made
     * record) is re-serialised so that it cannot split the line. */
    if (kind != CATALOG_USER && memchr(json, '\n', len) == NULL &&
        memchr(json, '\r', len) == NULL) {
        put(w, json, len);
        return 0;
    }
    json_error_t err;
    json_t *o = json_loadb(json, len, JSON_REJECT_DUPLICATES, &err);
    if (!json_is_object(o)) {
        json_decref(o);
        return REPL_EDECODE;
    }
    if (kind == CATALOG_USER)
        json_object_del(o, "password_hash");
    char *text = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(o);
    if (text == NULL)
        return -ENOMEM;
    puts_(w, text);
    free(text);
    return 0;
}

/* ---- Events ----------------------------------------------------------------------------- */

static const char *event_type(engine_record_type t)
{
    switch (t) {
    case ENGINE_REC_LAYOUT_CREATE:
        return "layout.created";
    case ENGINE_REC_LAYOUT_DELETE:
        return "layout.deleted";
    case ENGINE_REC_SHOWTIME_CREATE:
        return "showtime.opened";
    case ENGINE_REC_SHOWTIME_DELETE:
        return "showtime.closed";
    case ENGINE_REC_HOLD_PLACE:
        return "booking.reserved";
    case ENGINE_REC_HOLD_EXTEND:
        return "hold.extended";
    case ENGINE_REC_HOLD_RELEASE:
        return "hold.released";
    case ENGINE_REC_HOLD_EXPIRE:
        return "hold.expired";
    case ENGINE_REC_BOOKING_CONFIRM:
        return "booking.confirmed";
    case ENGINE_REC_BOOKING_CANCEL:
        return "booking.cancelled";
    case ENGINE_REC_SHOWTIME_PRICE:
        return "showtime.repriced";
    case ENGINE_REC_WAITLIST_JOIN:
        return "waitlist.joined";
    case ENGINE_REC_WAITLIST_LEAVE:
        return "waitlist.left";
    case ENGINE_REC_WAITLIST_OFFER:
        return "waitlist.offered";
    case ENGINE_REC_QUEUE_SET:
        return "queue.configured";
    case ENGINE_REC_QUEUE_JOIN:
        return "queue.joined";
    case ENGINE_REC_QUEUE_LEAVE:
        return "queue.left";
    case ENGINE_REC_QUEUE_START:
        return "queue.started";
    case ENGINE_REC_QUEUE_ADMIT:
        return "queue.admitted";
    }
    return NULL;
}

static int engine_data(writer *w, const engine_record *r)
{
    switch (r->type) {
    case ENGINE_REC_LAYOUT_CREATE:
        return put_layout(w, r->u.layout_create.layout_id, r->u.layout_create.blob,
                          r->u.layout_create.blob_len);
    case ENGINE_REC_LAYOUT_DELETE:
        puts_(w, "\"layout_id\":");
        put_u64(w, r->u.layout_delete.layout_id);
        return 0;
    case ENGINE_REC_SHOWTIME_CREATE:
        puts_(w, "\"showtime_id\":");
        put_u64(w, r->u.showtime_create.showtime_id);
        puts_(w, ",\"layout_id\":");
        put_u64(w, r->u.showtime_create.layout_id);
        puts_(w, ",\"starts_at\":");
        put_time(w, r->u.showtime_create.start_ms);
        puts_(w, ",\"prices\":");
        put_prices(w, r->u.showtime_create.prices, r->u.showtime_create.price_count);
        return 0;
    case ENGINE_REC_SHOWTIME_DELETE:
        puts_(w, "\"showtime_id\":");
        put_u64(w, r->u.showtime_delete.showtime_id);
        return 0;
    case ENGINE_REC_HOLD_PLACE:
    case ENGINE_REC_WAITLIST_OFFER:
        puts_(w, "\"hold_id\":");
        put_u64(w, r->u.hold_place.hold_id);
        puts_(w, ",\"showtime_id\":");
        put_u64(w, r->u.hold_place.showtime_id);
        puts_(w, ",\"user_id\":");
        put_u64(w, r->u.hold_place.user_id);
        puts_(w, ",\"seats\":");
        put_seats(w, r->u.hold_place.seats, r->u.hold_place.seat_count);
        puts_(w, ",\"amount\":");
        put_u64(w, r->u.hold_place.amount);
        puts_(w, ",\"currency\":\"INR\",\"expires_at\":");
        put_time(w, r->u.hold_place.expires_ms);
        return 0;
    case ENGINE_REC_HOLD_EXTEND:
        puts_(w, "\"hold_id\":");
        put_u64(w, r->u.hold_extend.hold_id);
        puts_(w, ",\"expires_at\":");
        put_time(w, r->u.hold_extend.expires_ms);
        return 0;
    case ENGINE_REC_HOLD_RELEASE:
    case ENGINE_REC_HOLD_EXPIRE:
        puts_(w, "\"hold_id\":");
        put_u64(w, r->u.hold_end.hold_id);
        return 0;
    case ENGINE_REC_BOOKING_CONFIRM: {
        const char *m = repl_payment_name(r->u.booking_confirm.payment);
        if (m == NULL)
            return REPL_EDECODE;
        puts_(w, "\"booking_id\":");
        put_u64(w, r->u.booking_confirm.booking_id);
        puts_(w, ",\"hold_id\":");
        put_u64(w, r->u.booking_confirm.hold_id);
        puts_(w, ",\"method\":");
        put_str(w, m, strlen(m));
        return 0;
    }
    case ENGINE_REC_BOOKING_CANCEL:
        puts_(w, "\"booking_id\":");
        put_u64(w, r->u.booking_cancel.booking_id);
        puts_(w, ",\"refund\":");
        put_u64(w, r->u.booking_cancel.refund);
        return 0;
    case ENGINE_REC_SHOWTIME_PRICE:
        puts_(w, "\"showtime_id\":");
        put_u64(w, r->u.showtime_price.showtime_id);
        puts_(w, ",\"prices\":");
        put_prices(w, r->u.showtime_price.prices, r->u.showtime_price.price_count);
        return 0;
    case ENGINE_REC_WAITLIST_JOIN:
        puts_(w, "\"showtime_id\":");
        put_u64(w, r->u.waitlist_join.showtime_id);
        puts_(w, ",\"user_id\":");
        put_u64(w, r->u.waitlist_join.user_id);
        puts_(w, ",\"count\":");
        put_u64(w, r->u.waitlist_join.count);
        puts_(w, ",\"category\":"); /* an index into the layout's categories, or null: any */
        if (r->u.waitlist_join.category == ENGINE_CATEGORY_ANY)
            puts_(w, "null");
        else
            put_u64(w, r->u.waitlist_join.category);
        return 0;
    case ENGINE_REC_WAITLIST_LEAVE:
    case ENGINE_REC_QUEUE_JOIN:
    case ENGINE_REC_QUEUE_LEAVE:
        puts_(w, "\"showtime_id\":");
        put_u64(w, r->u.onsale_user.showtime_id);
        puts_(w, ",\"user_id\":");
        put_u64(w, r->u.onsale_user.user_id);
        return 0;
    case ENGINE_REC_QUEUE_SET:
        puts_(w, "\"showtime_id\":");
        put_u64(w, r->u.queue_set.showtime_id);
        puts_(w, ",\"rate_per_second\":");
        put_u64(w, r->u.queue_set.rate_per_s);
        puts_(w, ",\"starts_at\":");
        if (r->u.queue_set.rate_per_s == 0)
            puts_(w, "null");
        else
            put_time(w, r->u.queue_set.start_ms);
        return 0;
    case ENGINE_REC_QUEUE_START:
        puts_(w, "\"showtime_id\":");
        put_u64(w, r->u.queue_start.showtime_id);
        return 0;
    case ENGINE_REC_QUEUE_ADMIT:
        puts_(w, "\"showtime_id\":");
        put_u64(w, r->u.queue_admit.showtime_id);
        puts_(w, ",\"admitted_through\":");
        put_u64(w, r->u.queue_admit.cursor);
        return 0;
    }
    return REPL_ETYPE;
}

int repl_event_encode(repl_buf *b, uint32_t shard, const wal_record *rec)
{
    writer w = line_begin(b);
    int rc;
    if (rec->type == CATALOG_REC_PUT || rec->type == CATALOG_REC_DELETE) {
        catalog_change ch;
        rc = catalog_change_decode(rec->type, rec->payload, rec->payload_len, &ch);
        if (rc != 0)
            return rc == -ENOMEM ? rc : REPL_EDECODE;
        head(&w, shard, rec->lsn, rec->time_ms, ch.put ? "catalog.upsert" : "catalog.delete");
        puts_(&w, ",\"data\":{");
        if (ch.put) {
            rc = put_entity(&w, ch.kind, ch.id, ch.json, ch.json_len);
        } else {
            const char *name = catalog_kind_name(ch.kind);
            rc = name != NULL ? 0 : REPL_EDECODE;
            if (rc == 0) {
                puts_(&w, "\"kind\":");
                put_str(&w, name, strlen(name));
                puts_(&w, ",\"id\":");
                put_u64(&w, ch.id);
            }
        }
        puts_(&w, "}}");
        return line_end(&w, rc);
    }
    if (rec->type < ENGINE_REC_LAYOUT_CREATE || rec->type > ENGINE_REC_QUEUE_ADMIT)
        return REPL_ETYPE;
    engine_record er;
    if (engine_record_decode(rec->payload, rec->payload_len, &er) != 0)
        return REPL_EDECODE;
    const char *type = event_type(er.type);
    if (type == NULL || (uint16_t)er.type != rec->type)
        return REPL_EDECODE;
    head(&w, shard, rec->lsn, rec->time_ms, type);
    puts_(&w, ",\"data\":{");
    rc = engine_data(&w, &er);
    puts_(&w, "}}");
    return line_end(&w, rc);
}

int repl_heartbeat_encode(repl_buf *b, uint32_t shard, int64_t now_ms, uint64_t durable_lsn,
                          uint64_t next_lsn)
{
    writer w = line_begin(b);
    head(&w, shard, 0, now_ms, "heartbeat");
    puts_(&w, ",\"durable_lsn\":");
    put_u64(&w, durable_lsn);
    puts_(&w, ",\"next_lsn\":");
    put_u64(&w, next_lsn);
    put(&w, "}", 1);
    return line_end(&w, 0);
}

int repl_error_encode(repl_buf *b, uint32_t shard, int64_t now_ms, const char *title,
                      const char *detail, uint64_t next_lsn)
{
    writer w = line_begin(b);
    head(&w, shard, 0, now_ms, "error");
    puts_(&w, ",\"title\":");
    put_str(&w, title, strlen(title));
    puts_(&w, ",\"detail\":");
    put_str(&w, detail, strlen(detail));
    puts_(&w, ",\"next_lsn\":");
    put_u64(&w, next_lsn);
    put(&w, "}", 1);
    return line_end(&w, 0);
}

/* ---- Snapshot lines ----------------------------------------------------------------------- */

int repl_snapshot_begin_encode(repl_buf *b, uint32_t shard, uint64_t lsn, int64_t written_ms)
{
    writer w = line_begin(b);
    head(&w, shard, 0, written_ms > 0 ? written_ms : INT64_MIN, "snapshot.begin");
    puts_(&w, ",\"lsn\":");
    put_u64(&w, lsn);
    put(&w, "}", 1);
    return line_end(&w, 0);
}

int repl_snapshot_end_encode(repl_buf *b, uint32_t shard, uint64_t lsn, uint64_t rows)
{
    writer w = line_begin(b);
    head(&w, shard, 0, INT64_MIN, "snapshot.end");
    puts_(&w, ",\"lsn\":");
    put_u64(&w, lsn);
    puts_(&w, ",\"rows\":");
    put_u64(&w, rows);
    put(&w, "}", 1);
    return line_end(&w, 0);
}

int repl_snapshot_catalog_encode(repl_buf *b, uint32_t shard, catalog_kind kind, uint64_t id,
                                 const char *json, size_t len)
{
    writer w = line_begin(b);
    head(&w, shard, 0, INT64_MIN, "snapshot.catalog");
    puts_(&w, ",\"data\":{");
    int rc = put_entity(&w, kind, id, json, len);
    puts_(&w, "}}");
    return line_end(&w, rc);
}

static int put_hold_item(writer *w, uint64_t key, const uint8_t *value, uint32_t len)
{
    engine_hold_info h;
    if (engine_item_hold_decode(key, value, len, &h) != 0)
        return REPL_EDECODE;
    puts_(w, "\"hold_id\":");
    put_u64(w, h.id);
    puts_(w, ",\"showtime_id\":");
    put_u64(w, h.showtime_id);
    puts_(w, ",\"user_id\":");
    put_u64(w, h.user_id);
    puts_(w, ",\"seats\":");
    put_seats(w, h.seats, h.seat_count);
    puts_(w, ",\"amount\":");
    put_u64(w, h.amount);
    puts_(w, ",\"currency\":\"INR\",\"reserved_at\":");
    put_time(w, h.created_ms);
    puts_(w, ",\"expires_at\":");
    put_time(w, h.expires_ms);
    puts_(w, h.offer ? ",\"offer\":true" : ",\"offer\":false");
    return 0;
}

static int put_booking_item(writer *w, uint64_t key, const uint8_t *value, uint32_t len)
{
    engine_booking_info bk;
    if (engine_item_booking_decode(key, value, len, &bk) != 0)
        return REPL_EDECODE;
    const char *m = repl_payment_name(bk.payment);
    puts_(w, "\"booking_id\":");
    put_u64(w, bk.id);
    puts_(w, ",\"hold_id\":");
    put_u64(w, bk.hold_id);
    puts_(w, ",\"showtime_id\":");
    put_u64(w, bk.showtime_id);
    puts_(w, ",\"user_id\":");
    put_u64(w, bk.user_id);
    puts_(w, ",\"seats\":");
    put_seats(w, bk.seats, bk.seat_count);
    puts_(w, ",\"amount\":");
    put_u64(w, bk.amount);
    puts_(w, ",\"refund\":");
    put_u64(w, bk.refund);
    puts_(w, ",\"currency\":\"INR\",\"method\":");
    put_str(w, m, strlen(m));
    puts_(w, bk.status == ENGINE_BOOKING_STATUS_CANCELLED ? ",\"status\":\"cancelled\""
                                                          : ",\"status\":\"confirmed\"");
    puts_(w, ",\"confirmed_at\":");
    put_time(w, bk.confirmed_ms);
    puts_(w, ",\"cancelled_at\":");
    if (bk.status == ENGINE_BOOKING_STATUS_CANCELLED)
        put_time(w, bk.cancelled_ms);
    else
        puts_(w, "null");
    return 0;
}

int repl_snapshot_item_encode(repl_buf *b, uint32_t shard, engine_item_kind kind, uint64_t key,
                              const uint8_t *value, uint32_t len)
{
    writer w = line_begin(b);
    int rc = 0;
    switch (kind) {
    case ENGINE_ITEM_LAYOUT:
        head(&w, shard, 0, INT64_MIN, "snapshot.layout");
        puts_(&w, ",\"data\":{");
        rc = put_layout(&w, key, value, len);
        break;
    case ENGINE_ITEM_SHOWTIME: {
        engine_showtime_item st;
        if (engine_item_showtime_decode(value, len, &st) != 0)
            return REPL_EDECODE;
        head(&w, shard, 0, INT64_MIN, "snapshot.showtime");
        puts_(&w, ",\"data\":{\"showtime_id\":");
        put_u64(&w, key);
        puts_(&w, ",\"layout_id\":");
        put_u64(&w, st.layout_id);
        puts_(&w, ",\"starts_at\":");
        put_time(&w, st.start_ms);
        puts_(&w, ",\"prices\":");
        put_prices(&w, st.prices, st.price_count);
        puts_(&w, ",\"seat_count\":");
        put_u64(&w, st.seat_count);
        puts_(&w, ",\"held\":");
        put_u64(&w, st.held);
        puts_(&w, ",\"sold\":");
        put_u64(&w, st.sold);
        break;
    }
    case ENGINE_ITEM_HOLD:
        head(&w, shard, 0, INT64_MIN, "snapshot.hold");
        puts_(&w, ",\"data\":{");
        rc = put_hold_item(&w, key, value, len);
        break;
    case ENGINE_ITEM_BOOKING:
        head(&w, shard, 0, INT64_MIN, "snapshot.booking");
        puts_(&w, ",\"data\":{");
        rc = put_booking_item(&w, key, value, len);
        break;
    default:
        return REPL_ETYPE;
    }
    puts_(&w, "}}");
    return line_end(&w, rc);
}
