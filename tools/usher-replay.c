/*
 * usher-replay - inspect, verify and rewind a usher data directory.
 *
 *   usher-replay --data-dir DIR verify  [--shard N]
 *   usher-replay --data-dir DIR dump    [--shard N] [--from-lsn A] [--to-lsn B]
 *                                       [--type NAME] [--format ndjson|table]
 *   usher-replay --data-dir DIR stats   [--shard N]
 *   usher-replay --data-dir DIR recover (--to-lsn N --shard S | --to-time ISO8601) --out DIR
 *
 * A data directory holds one folder per shard, shard-0, shard-1, ..., each
 * with wal/ (segments) and snapshot/ (LMDB). See docs/usher-replay.md.
 */
#include "catalog.h"
#include "engine.h"
#include "snapshot.h"
#include "wal.h"

#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define SHARDS_MAX 1024
#define PATH_LEN   (WAL_PATH_MAX + 64)

typedef struct opts {
    const char *data_dir, *out_dir, *type_name, *format;
    int shard; /* -1 = all */
    uint64_t from_lsn, to_lsn;
    int64_t to_time_ms;
    bool have_to_time;
    engine_config cfg;
} opts;

static const char *prog = "usher-replay";
static char partial_dir[PATH_LEN]; /* removed if recover fails half way */

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void fail(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", prog);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    if (partial_dir[0] != '\0') {
        nftw(partial_dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
        fprintf(stderr, "%s: nothing written (removed %s)\n", prog, partial_dir);
    }
    exit(code);
}

static const char *usage_text =
    "usage: usher-replay --data-dir DIR COMMAND [options]\n"
    "\n"
    "Inspect, verify and rewind a usher data directory (DIR/shard-N/{wal,snapshot}).\n"
    "\n"
    "commands:\n"
    "  verify    check every shard: segment headers, record checksums, LSN continuity,\n"
    "            the snapshot's consistency, and that replaying the WAL on top of the\n"
    "            snapshot works (and, when the WAL reaches back to LSN 1, that it gives\n"
    "            the same state as the snapshot). Exit 0 only if all is good; a torn\n"
    "            tail (an unacknowledged batch cut by a crash) is reported, not an error.\n"
    "  dump      print records: --format ndjson (default) or table; filters --shard N,\n"
    "            --from-lsn A, --to-lsn B, --type NAME (e.g. hold_place).\n"
    "  stats     records, bytes, time span and counts by type, per shard.\n"
    "  recover   rebuild the state at a point in time into a new data directory that\n"
    "            usherd can start from: --to-time ISO8601 (every shard), or --to-lsn N\n"
    "            with --shard S (that shard only); --out DIR must not exist.\n"
    "\n"
    "options:\n"
    "  --data-dir DIR     the data directory (required)\n"
    "  --shard N          only shard N\n"
    "  --from-lsn A       dump: first LSN (default 1)\n"
    "  --to-lsn B         dump: last LSN; recover: the LSN to stop at\n"
    "  --to-time T        recover: stop after the last record at or before T,\n"
    "                     e.g. 2026-11-21T18:30:00Z or 2026-11-21T18:30:00+05:30\n"
    "  --type NAME        dump: only records of this type\n"
    "  --format F         dump: ndjson or table\n"
    "  --out DIR          recover: the new data directory\n"
    "  -h, --help         this text\n"
    "\n"
    "exit status: 0 ok, 1 verification failed or corruption found, 2 usage error.\n";

/* ---- Time ------------------------------------------------------------------ */

/* Days since 1970-01-01 of a civil date (proleptic Gregorian). */
static int64_t days_from_civil(int64_t y, int64_t m, int64_t d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* Parses YYYY-MM-DDTHH:MM:SS[.fff](Z|+HH:MM|-HH:MM) to ms since the epoch. */
static bool parse_iso8601(const char *s, int64_t *ms)
{
    int y, mo, d, h, mi, sec, n = 0;
    if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &sec, &n) != 6 || n != 19)
        return false;
    static const int mdays[12] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] || (mo == 2 && d == 29 && !leap) ||
        h > 23 || mi > 59 || sec > 59)
        return false;
    const char *p = s + n;
    int64_t frac = 0;
    if (*p == '.') {
        int digits = 0;
        for (p++; *p >= '0' && *p <= '9'; p++, digits++) {
            if (digits < 3)
                frac = frac * 10 + (*p - '0');
        }
        if (digits == 0)
            return false;
        for (; digits < 3; digits++)
            frac *= 10;
    }
    int64_t offset_min = 0;
    if (*p == 'Z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int oh, om, m = 0;
        if (sscanf(p + 1, "%2d:%2d%n", &oh, &om, &m) != 2 || m != 5 || oh > 23 || om > 59)
            return false;
        offset_min = (*p == '+' ? 1 : -1) * (oh * 60 + om);
        p += 6;
    } else {
        return false;
    }
    if (*p != '\0')
        return false;
    int64_t secs = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec - offset_min * 60;
    *ms = secs * 1000 + frac;
    return true;
}

static void format_time(int64_t ms, char *out, size_t len)
{
    time_t secs = (time_t)(ms / 1000);
    struct tm tm;
    if (ms < 0 || gmtime_r(&secs, &tm) == NULL) {
        snprintf(out, len, "%" PRId64 "ms", ms);
        return;
    }
    char base[32];
    strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, len, "%s.%03dZ", base, (int)(ms % 1000));
}

/* ---- Shards ------------------------------------------------------------------- */

static int list_shards(const char *data_dir, int only, int *ids)
{
    DIR *d = opendir(data_dir);
    if (d == NULL)
        fail(1, "cannot open data directory %s: %s", data_dir, strerror(errno));
    int n = 0;
    struct dirent *ent;
    while ((ent = readdir(d)) != NULL) {
        int id;
        char tail;
        if (sscanf(ent->d_name, "shard-%d%c", &id, &tail) != 1 || id < 0 || id >= SHARDS_MAX)
            continue;
        if (only >= 0 && id != only)
            continue;
        ids[n++] = id;
    }
    closedir(d);
    for (int i = 1; i < n; i++) { /* insertion sort: few shards */
        for (int j = i; j > 0 && ids[j - 1] > ids[j]; j--) {
            int t = ids[j];
            ids[j] = ids[j - 1];
            ids[j - 1] = t;
        }
    }
    if (n == 0) {
        if (only >= 0)
            fail(1, "%s has no shard-%d", data_dir, only);
        fail(1, "%s holds no shard-N directories: not a usher data directory", data_dir);
    }
    return n;
}

static void shard_path(const char *data_dir, int shard, const char *sub, char *out)
{
    int n = snprintf(out, PATH_LEN, "%s/shard-%d%s%s", data_dir, shard, sub[0] ? "/" : "", sub);
    if (n < 0 || n >= PATH_LEN)
        fail(2, "path too long under %s", data_dir);
}

/* ---- JSON output ---------------------------------------------------------------------- */

static void json_quote(FILE *f, const char *s, size_t n)
{
    fputc('"', f);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20 || c >= 0x7f)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

static void json_seats(FILE *f, const uint32_t *seats, uint32_t n)
{
    fputc('[', f);
    for (uint32_t i = 0; i < n; i++)
        fprintf(f, "%s%" PRIu32, i ? "," : "", seats[i]);
    fputc(']', f);
}

static const char *payment_name(engine_payment p)
{
    return p == ENGINE_PAY_UPI ? "upi" : p == ENGINE_PAY_CARD ? "card" : "wallet";
}

/* The type-specific fields of an engine record, as JSON members. */
static void json_fields(FILE *f, const engine_record *r)
{
    switch (r->type) {
    case ENGINE_REC_LAYOUT_CREATE:
        fprintf(f, ",\"layout_id\":%" PRIu64 ",\"layout_bytes\":%" PRIu32,
                r->u.layout_create.layout_id, r->u.layout_create.blob_len);
        break;
    case ENGINE_REC_LAYOUT_DELETE:
        fprintf(f, ",\"layout_id\":%" PRIu64, r->u.layout_delete.layout_id);
        break;
    case ENGINE_REC_SHOWTIME_CREATE:
        fprintf(f,
                ",\"showtime_id\":%" PRIu64 ",\"layout_id\":%" PRIu64 ",\"start_ms\":%" PRId64
                ",\"prices\":",
                r->u.showtime_create.showtime_id, r->u.showtime_create.layout_id,
                r->u.showtime_create.start_ms);
        json_seats(f, r->u.showtime_create.prices, r->u.showtime_create.price_count);
        break;
    case ENGINE_REC_SHOWTIME_DELETE:
        fprintf(f, ",\"showtime_id\":%" PRIu64, r->u.showtime_delete.showtime_id);
        break;
    case ENGINE_REC_HOLD_PLACE:
        fprintf(f,
                ",\"hold_id\":%" PRIu64 ",\"showtime_id\":%" PRIu64 ",\"user_id\":%" PRIu64
                ",\"expires_ms\":%" PRId64 ",\"amount\":%" PRIu64 ",\"seats\":",
                r->u.hold_place.hold_id, r->u.hold_place.showtime_id, r->u.hold_place.user_id,
                r->u.hold_place.expires_ms, r->u.hold_place.amount);
        json_seats(f, r->u.hold_place.seats, r->u.hold_place.seat_count);
        break;
    case ENGINE_REC_HOLD_EXTEND:
        fprintf(f, ",\"hold_id\":%" PRIu64 ",\"expires_ms\":%" PRId64, r->u.hold_extend.hold_id,
                r->u.hold_extend.expires_ms);
        break;
    case ENGINE_REC_HOLD_RELEASE:
    case ENGINE_REC_HOLD_EXPIRE:
        fprintf(f, ",\"hold_id\":%" PRIu64, r->u.hold_end.hold_id);
        break;
    case ENGINE_REC_BOOKING_CONFIRM:
        fprintf(f, ",\"booking_id\":%" PRIu64 ",\"hold_id\":%" PRIu64 ",\"payment\":\"%s\"",
                r->u.booking_confirm.booking_id, r->u.booking_confirm.hold_id,
                payment_name(r->u.booking_confirm.payment));
        if (r->u.booking_confirm.idem_key_len > 0) {
            fprintf(f, ",\"idempotency_key\":");
            json_quote(f, r->u.booking_confirm.idem_key, r->u.booking_confirm.idem_key_len);
        }
        break;
    case ENGINE_REC_BOOKING_CANCEL:
        fprintf(f, ",\"booking_id\":%" PRIu64 ",\"refund\":%" PRIu64,
                r->u.booking_cancel.booking_id, r->u.booking_cancel.refund);
        break;
    case ENGINE_REC_SHOWTIME_PRICE:
        fprintf(f, ",\"showtime_id\":%" PRIu64 ",\"prices\":", r->u.showtime_price.showtime_id);
        json_seats(f, r->u.showtime_price.prices, r->u.showtime_price.price_count);
        break;
    case ENGINE_REC_WAITLIST_JOIN:
        fprintf(f,
                ",\"showtime_id\":%" PRIu64 ",\"user_id\":%" PRIu64 ",\"count\":%" PRIu32
                ",\"category\":%" PRIu32,
                r->u.waitlist_join.showtime_id, r->u.waitlist_join.user_id,
                r->u.waitlist_join.count, r->u.waitlist_join.category);
        break;
    case ENGINE_REC_WAITLIST_OFFER:
        fprintf(f,
                ",\"hold_id\":%" PRIu64 ",\"showtime_id\":%" PRIu64 ",\"user_id\":%" PRIu64
                ",\"expires_ms\":%" PRId64 ",\"amount\":%" PRIu64 ",\"seats\":",
                r->u.hold_place.hold_id, r->u.hold_place.showtime_id, r->u.hold_place.user_id,
                r->u.hold_place.expires_ms, r->u.hold_place.amount);
        json_seats(f, r->u.hold_place.seats, r->u.hold_place.seat_count);
        break;
    case ENGINE_REC_WAITLIST_LEAVE:
    case ENGINE_REC_QUEUE_JOIN:
    case ENGINE_REC_QUEUE_LEAVE:
        fprintf(f, ",\"showtime_id\":%" PRIu64 ",\"user_id\":%" PRIu64,
                r->u.onsale_user.showtime_id, r->u.onsale_user.user_id);
        break;
    case ENGINE_REC_QUEUE_SET:
        fprintf(f, ",\"showtime_id\":%" PRIu64 ",\"rate_per_s\":%" PRIu32 ",\"start_ms\":%" PRId64,
                r->u.queue_set.showtime_id, r->u.queue_set.rate_per_s, r->u.queue_set.start_ms);
        break;
    case ENGINE_REC_QUEUE_START:
        fprintf(f, ",\"showtime_id\":%" PRIu64 ",\"seed\":%" PRIu64, r->u.queue_start.showtime_id,
                r->u.queue_start.seed);
        break;
    case ENGINE_REC_QUEUE_ADMIT:
        fprintf(f, ",\"showtime_id\":%" PRIu64 ",\"cursor\":%" PRIu32 ",\"credit_milli\":%" PRIu64,
                r->u.queue_admit.showtime_id, r->u.queue_admit.cursor,
                r->u.queue_admit.credit_milli);
        break;
    }
}

static const char *record_type_name(uint16_t type)
{
    if (type == CATALOG_REC_PUT)
        return "catalog_put";
    if (type == CATALOG_REC_DELETE)
        return "catalog_delete";
    return type < 100 ? engine_record_type_name((engine_record_type)type) : "other";
}

/* Engine replay skips catalog records (usherd applies them to the catalog). */
static int skip_catalog(void *arg, const wal_record *rec)
{
    (void)arg;
    return rec->type == CATALOG_REC_PUT || rec->type == CATALOG_REC_DELETE ? 0 : -1;
}

/* ---- Commands ------------------------------------------------------------------------- */

typedef struct shard_scan {
    uint64_t records, bytes, first_lsn, last_lsn;
    int64_t first_ms, last_ms;
    uint64_t by_type[128], bytes_by_type[128];
    uint64_t torn_bytes;
    const char *torn_reason;
    char error[2 * PATH_LEN];
} shard_scan;

/* Scans a shard's WAL from its oldest record; returns 0 or a WAL error. */
static int scan_wal(const char *wal_dir, shard_scan *s, bool (*each)(const wal_record *, void *),
                    void *arg)
{
    memset(s, 0, sizeof(*s));
    wal_reader *r;
    int rc = wal_reader_open(wal_dir, 1, NULL, &r);
    if (rc == WAL_ENOTFOUND) {
        /* The oldest segments were dropped after a snapshot: start where the log starts. */
        DIR *d = opendir(wal_dir);
        uint64_t oldest = UINT64_MAX;
        struct dirent *ent;
        while (d != NULL && (ent = readdir(d)) != NULL) {
            uint64_t v;
            if (sscanf(ent->d_name, "%16" SCNx64 ".wal", &v) == 1 && v < oldest)
                oldest = v;
        }
        if (d != NULL)
            closedir(d);
        rc = wal_reader_open(wal_dir, oldest, NULL, &r);
    }
    if (rc != 0) {
        snprintf(s->error, sizeof(s->error), "%s: %s", wal_dir, wal_strerror(rc));
        return rc;
    }
    wal_record rec;
    while ((rc = wal_reader_next(r, &rec)) == 1) {
        if (s->records == 0) {
            s->first_lsn = rec.lsn;
            s->first_ms = rec.time_ms;
        }
        s->records++;
        s->bytes += wal_frame_size(rec.payload_len);
        s->last_lsn = rec.lsn;
        s->last_ms = rec.time_ms;
        s->by_type[rec.type < 128 ? rec.type : 127]++;
        s->bytes_by_type[rec.type < 128 ? rec.type : 127] += wal_frame_size(rec.payload_len);
        if (each != NULL && !each(&rec, arg))
            break;
    }
    if (rc < 0)
        snprintf(s->error, sizeof(s->error), "%s", wal_reader_error(r));
    else {
        s->torn_bytes = wal_reader_tail(r)->torn_bytes;
        s->torn_reason = wal_reader_tail(r)->torn_reason;
    }
    wal_reader_close(r);
    return rc < 0 ? rc : 0;
}

static snapshot_recover_opts recover_opts(const opts *o, const char *shard_dir, int shard)
{
    snapshot_recover_opts ro = {
        .shard_dir = shard_dir,
        .shard = (uint32_t)shard,
        .cfg = o->cfg,
        .use_snapshot = true,
        .repair = false,
        .other_cb = skip_catalog,
    };
    ro.cfg.id_prefix = (uint16_t)shard;
    return ro;
}

static int cmd_verify(const opts *o)
{
    int ids[SHARDS_MAX], n = list_shards(o->data_dir, o->shard, ids), bad = 0;
    for (int i = 0; i < n; i++) {
        char dir[PATH_LEN], wal_dir[PATH_LEN];
        shard_path(o->data_dir, ids[i], "", dir);
        shard_path(o->data_dir, ids[i], "wal", wal_dir);
        shard_scan s;
        if (scan_wal(wal_dir, &s, NULL, NULL) != 0) {
            printf("shard %d: FAIL wal: %s\n", ids[i], s.error);
            bad++;
            continue;
        }
        printf("shard %d: wal ok: %" PRIu64 " records, LSN %" PRIu64 "..%" PRIu64 "\n", ids[i],
               s.records, s.first_lsn, s.last_lsn);
        if (s.torn_bytes > 0)
            printf("shard %d: note: torn tail of %" PRIu64 " bytes after LSN %" PRIu64
                   " (%s); usherd cuts it at start\n",
                   ids[i], s.torn_bytes, s.last_lsn, s.torn_reason);

        snapshot_recover_opts ro = recover_opts(o, dir, ids[i]);
        snapshot_recovery rep;
        engine *e = NULL;
        int rc = snapshot_recover(&ro, &e, &rep);
        if (rc != 0) {
            printf("shard %d: FAIL recovery: %s\n", ids[i],
                   rep.error[0] ? rep.error : snapshot_strerror(rc));
            bad++;
            continue;
        }
        printf("shard %d: recovery ok: snapshot LSN %" PRIu64 " + %" PRIu64
               " records = LSN %" PRIu64 ", digest %016" PRIx64 "\n",
               ids[i], rep.snapshot_lsn, rep.replayed, rep.last_lsn, engine_digest(e));
        /* Cross-check: the WAL alone, when it still starts at LSN 1, must
         * rebuild exactly the state the snapshot + tail did. */
        if (rep.had_snapshot && s.first_lsn == 1) {
            ro.use_snapshot = false;
            snapshot_recovery rep2;
            engine *e2 = NULL;
            rc = snapshot_recover(&ro, &e2, &rep2);
            if (rc != 0 || engine_digest(e2) != engine_digest(e)) {
                printf("shard %d: FAIL snapshot disagrees with a full WAL replay%s%s\n", ids[i],
                       rc != 0 ? ": " : "", rc != 0 ? rep2.error : "");
                bad++;
            } else {
                printf("shard %d: snapshot matches a full WAL replay\n", ids[i]);
            }
            engine_destroy(e2);
        }
        engine_destroy(e);
    }
    printf("%s\n", bad == 0 ? "verify: ok" : "verify: FAILED");
    return bad == 0 ? 0 : 1;
}

typedef struct dump_ctx {
    const opts *o;
    int shard;
    int type; /* -1 = any */
    bool table;
    uint64_t printed;
} dump_ctx;

static bool dump_one(const wal_record *rec, void *arg)
{
    dump_ctx *d = arg;
    if (rec->lsn < d->o->from_lsn)
        return true;
    if (d->o->to_lsn != 0 && rec->lsn > d->o->to_lsn)
        return false;
    if (d->type >= 0 && rec->type != d->type)
        return true;
    char when[40];
    format_time(rec->time_ms, when, sizeof(when));
    engine_record er;
    bool decoded =
        rec->type < 100 && engine_record_decode(rec->payload, rec->payload_len, &er) == 0;
    if (d->table) {
        printf("%5d %12" PRIu64 "  %-24s %-16s %6" PRIu32 " B\n", d->shard, rec->lsn, when,
               record_type_name(rec->type), rec->payload_len);
    } else {
        printf("{\"shard\":%d,\"lsn\":%" PRIu64 ",\"time_ms\":%" PRId64
               ",\"time\":\"%s\",\"type\":\"%s\"",
               d->shard, rec->lsn, rec->time_ms, when, record_type_name(rec->type));
        if (decoded)
            json_fields(stdout, &er);
        else
            printf(",\"type_code\":%u,\"payload_bytes\":%" PRIu32, rec->type, rec->payload_len);
        printf("}\n");
    }
    d->printed++;
    return true;
}

static int type_from_name(const char *name)
{
    for (int t = 1; t < 100; t++) {
        if (strcmp(engine_record_type_name((engine_record_type)t), name) == 0)
            return t;
    }
    if (strcmp(name, "catalog_put") == 0)
        return CATALOG_REC_PUT;
    if (strcmp(name, "catalog_delete") == 0)
        return CATALOG_REC_DELETE;
    fail(2, "unknown record type '%s' (e.g. hold_place, booking_confirm)", name);
    return -1;
}

static int cmd_dump(const opts *o)
{
    int ids[SHARDS_MAX], n = list_shards(o->data_dir, o->shard, ids), bad = 0;
    dump_ctx d = {.o = o, .type = o->type_name ? type_from_name(o->type_name) : -1};
    if (o->format != NULL && strcmp(o->format, "table") != 0 && strcmp(o->format, "ndjson") != 0)
        fail(2, "--format must be ndjson or table, not '%s'", o->format);
    d.table = o->format != NULL && strcmp(o->format, "table") == 0;
    if (d.table)
        printf("%5s %12s  %-24s %-16s %8s\n", "shard", "lsn", "time", "type", "payload");
    for (int i = 0; i < n; i++) {
        char wal_dir[PATH_LEN];
        shard_path(o->data_dir, ids[i], "wal", wal_dir);
        d.shard = ids[i];
        shard_scan s;
        if (scan_wal(wal_dir, &s, dump_one, &d) != 0) {
            fprintf(stderr, "%s: shard %d: %s\n", prog, ids[i], s.error);
            bad++;
        }
    }
    return bad == 0 ? 0 : 1;
}

static int cmd_stats(const opts *o)
{
    int ids[SHARDS_MAX], n = list_shards(o->data_dir, o->shard, ids), bad = 0;
    for (int i = 0; i < n; i++) {
        char wal_dir[PATH_LEN], snap_dir[PATH_LEN], a[40], b[40];
        shard_path(o->data_dir, ids[i], "wal", wal_dir);
        shard_path(o->data_dir, ids[i], "snapshot", snap_dir);
        shard_scan s;
        if (scan_wal(wal_dir, &s, NULL, NULL) != 0) {
            printf("shard %d: error: %s\n", ids[i], s.error);
            bad++;
            continue;
        }
        uint64_t snap_lsn = 0;
        struct stat st;
        snapshot_store *ss;
        if (stat(snap_dir, &st) == 0 &&
            snapshot_store_open(snap_dir, (uint32_t)ids[i], 0, &ss) == 0) {
            snapshot_store_lsn(ss, &snap_lsn);
            snapshot_store_close(ss);
        }
        format_time(s.first_ms, a, sizeof(a));
        format_time(s.last_ms, b, sizeof(b));
        printf("shard %d\n  records   %" PRIu64 " (LSN %" PRIu64 "..%" PRIu64
               ")\n  bytes     %" PRIu64 "\n  span      %s .. %s (%.1f s)\n  snapshot  LSN %" PRIu64
               "\n",
               ids[i], s.records, s.first_lsn, s.last_lsn, s.bytes, s.records ? a : "-",
               s.records ? b : "-", (double)(s.last_ms - s.first_ms) / 1000.0, snap_lsn);
        if (s.torn_bytes > 0)
            printf("  torn tail %" PRIu64 " bytes (%s)\n", s.torn_bytes, s.torn_reason);
        printf("  %-18s %10s %12s\n", "type", "records", "bytes");
        for (int t = 0; t < 128; t++) {
            if (s.by_type[t] > 0)
                printf("  %-18s %10" PRIu64 " %12" PRIu64 "\n", record_type_name((uint16_t)t),
                       s.by_type[t], s.bytes_by_type[t]);
        }
    }
    return bad == 0 ? 0 : 1;
}

/* Copies the catalog (theaters, screens, movies, showtimes, users) into the
 * recovered directory, marking every recovered shard's WAL as applied up to
 * its recovered LSN. The catalog is copied as it is now, not rolled back:
 * LMDB keeps no history (docs/usher-replay.md). */
typedef struct cat_copy {
    catalog_change *ch;
    char **texts;
    size_t n, cap;
    catalog_kind kind;
} cat_copy;

static int cat_copy_each(void *arg, uint64_t id, const char *json, size_t len)
{
    cat_copy *c = arg;
    if (c->n == c->cap) {
        c->cap = c->cap ? c->cap * 2 : 256;
        c->ch = realloc(c->ch, c->cap * sizeof(*c->ch));
        c->texts = realloc(c->texts, c->cap * sizeof(*c->texts));
        if (c->ch == NULL || c->texts == NULL)
            fail(1, "out of memory");
    }
    char *t = malloc(len ? len : 1);
    if (t == NULL)
        fail(1, "out of memory");
    memcpy(t, json, len);
    c->texts[c->n] = t;
    c->ch[c->n++] =
        (catalog_change){.put = true, .kind = c->kind, .id = id, .json = t, .json_len = len};
    return 0;
}

static void catalog_copy(const char *src_dir, const char *dst_dir, int shards, const int *ids,
                         const uint64_t *lsns, int n)
{
    char src[PATH_LEN], dst[PATH_LEN];
    int a = snprintf(src, sizeof(src), "%s/catalog", src_dir);
    int b = snprintf(dst, sizeof(dst), "%s/catalog", dst_dir);
    if (a < 0 || a >= (int)sizeof(src) || b < 0 || b >= (int)sizeof(dst))
        fail(2, "data directory path too long");
    struct stat st;
    if (stat(src, &st) != 0) {
        printf("no catalog in %s: none copied\n", src_dir);
        return;
    }
    catalog *from, *to;
    int rc = catalog_open(src, (uint32_t)shards, 0, &from);
    if (rc != 0)
        fail(1, "cannot open %s: %s %s", src, catalog_strerror(rc), catalog_last_error());
    rc = catalog_open(dst, (uint32_t)shards, 0, &to);
    if (rc != 0)
        fail(1, "cannot create %s: %s %s", dst, catalog_strerror(rc), catalog_last_error());
    catalog_read *rd;
    if (catalog_read_begin(from, &rd) != 0)
        fail(1, "cannot read %s: %s", src, catalog_last_error());
    cat_copy c = {0};
    for (int k = CATALOG_THEATER; k <= CATALOG_KIND_MAX_; k++) {
        c.kind = (catalog_kind)k;
        catalog_each(rd, c.kind, cat_copy_each, &c);
    }
    catalog_read_end(rd);
    for (int i = 0; i < n; i++) {
        /* Everything in one shard's transaction (the first); the others only
         * record their applied LSN. */
        rc = catalog_apply(to, (uint32_t)ids[i], lsns[i], i == 0 ? c.ch : NULL, i == 0 ? c.n : 0);
        if (rc != 0)
            fail(1, "writing %s: %s %s", dst, catalog_strerror(rc), catalog_last_error());
    }
    for (size_t i = 0; i < c.n; i++)
        free(c.texts[i]);
    free(c.texts);
    free(c.ch);
    catalog_close(from);
    catalog_close(to);
    printf("catalog copied: %zu entities (as of now, not rolled back)\n", c.n);
}

static int cmd_recover(const opts *o)
{
    if (o->out_dir == NULL)
        fail(2, "recover needs --out DIR (a new directory)");
    if ((o->to_lsn == 0) == !o->have_to_time)
        fail(2, "recover needs exactly one of --to-lsn N or --to-time ISO8601");
    if (o->to_lsn != 0 && o->shard < 0)
        fail(2, "--to-lsn names one shard's LSN: add --shard N");
    struct stat st;
    if (stat(o->out_dir, &st) == 0)
        fail(2, "%s exists; recover writes a new directory", o->out_dir);
    int ids[SHARDS_MAX], n = list_shards(o->data_dir, o->shard, ids);
    /* Build into OUT.partial and rename at the end: a failure leaves nothing. */
    char building[PATH_LEN];
    int blen = snprintf(building, sizeof(building), "%s.partial", o->out_dir);
    if (blen < 0 || blen >= (int)sizeof(building))
        fail(2, "--out path too long");
    if (mkdir(building, 0755) < 0)
        fail(1, "cannot create %s: %s", building, strerror(errno));
    snprintf(partial_dir, sizeof(partial_dir), "%s", building);
    uint64_t lsns[SHARDS_MAX];
    for (int i = 0; i < n; i++) {
        char dir[PATH_LEN], out_shard[PATH_LEN], out_snap[PATH_LEN];
        shard_path(o->data_dir, ids[i], "", dir);
        shard_path(building, ids[i], "", out_shard);
        shard_path(building, ids[i], "snapshot", out_snap);
        snapshot_recover_opts ro = recover_opts(o, dir, ids[i]);
        ro.stop_lsn = o->to_lsn;
        ro.stop_time_ms = o->have_to_time ? o->to_time_ms : 0;
        snapshot_recovery rep;
        engine *e = NULL;
        int rc = snapshot_recover(&ro, &e, &rep);
        if (rc != 0)
            fail(1, "shard %d: %s", ids[i], rep.error[0] ? rep.error : snapshot_strerror(rc));
        if (o->to_lsn != 0 && rep.last_lsn < o->to_lsn)
            fail(1, "shard %d: the log ends at LSN %" PRIu64 ", before %" PRIu64, ids[i],
                 rep.last_lsn, o->to_lsn);
        if (rep.last_lsn == 0)
            fail(1, "shard %d: no record at or before that time: nothing to recover", ids[i]);
        /* The new shard: a full snapshot at the recovered LSN and an empty
         * WAL; usherd continues with LSN last + 1. */
        if (mkdir(out_shard, 0755) < 0)
            fail(1, "cannot create %s: %s", out_shard, strerror(errno));
        engine_snapshot *snap;
        snapshot_store *ss;
        if (engine_snapshot_take(e, true, &snap) != 0)
            fail(1, "out of memory");
        rc = snapshot_store_open(out_snap, (uint32_t)ids[i], 0, &ss);
        if (rc == 0)
            rc = snapshot_store_write(ss, snap, rep.last_lsn);
        if (rc != 0)
            fail(1, "writing %s: %s", out_snap, snapshot_strerror(rc));
        snapshot_store_close(ss);
        engine_snapshot_free(snap);
        char when[40];
        format_time(engine_now_ms(e), when, sizeof(when));
        printf("shard %d: recovered to LSN %" PRIu64 " (engine clock %s), digest %016" PRIx64 "\n",
               ids[i], rep.last_lsn, when, engine_digest(e));
        lsns[i] = rep.last_lsn;
        engine_destroy(e);
    }
    int all[SHARDS_MAX], total = list_shards(o->data_dir, -1, all);
    catalog_copy(o->data_dir, building, total, ids, lsns, n);
    if (rename(building, o->out_dir) < 0)
        fail(1, "cannot rename %s to %s: %s", building, o->out_dir, strerror(errno));
    partial_dir[0] = '\0';
    printf("recovered data directory: %s\n", o->out_dir);
    return 0;
}

/* ---- Arguments ------------------------------------------------------------------------ */

static uint64_t parse_u64(const char *flag, const char *v)
{
    char *end;
    errno = 0;
    unsigned long long x = strtoull(v, &end, 10);
    if (errno != 0 || end == v || *end != '\0' || v[0] == '-')
        fail(2, "%s needs a non-negative integer, not '%s'", flag, v);
    return x;
}

int main(int argc, char **argv)
{
    opts o = {.shard = -1, .from_lsn = 1};
    engine_config_default(&o.cfg);
    /* Pools sized above the server's defaults, so any shard it wrote fits.
     * Pages are only touched as bookings are loaded. */
    o.cfg.bookings_max = 1u << 22;
    o.cfg.holds_max = 1u << 18;
    const char *cmd = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define VALUE() \
    (v != NULL ? (i++, v) : (fail(2, "%s needs a value (see --help)", a), (const char *)NULL))
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            fputs(usage_text, stdout);
            return 0;
        } else if (strcmp(a, "--data-dir") == 0) {
            o.data_dir = VALUE();
        } else if (strcmp(a, "--out") == 0) {
            static char out[PATH_LEN];
            int n = snprintf(out, sizeof(out), "%s", VALUE());
            if (n <= 0 || n >= (int)sizeof(out))
                fail(2, "--out needs a path shorter than %d bytes", PATH_LEN);
            while (n > 1 && out[n - 1] == '/') /* "new/" means "new" */
                out[--n] = '\0';
            o.out_dir = out;
        } else if (strcmp(a, "--shard") == 0) {
            uint64_t s = parse_u64(a, VALUE());
            if (s >= SHARDS_MAX)
                fail(2, "--shard must be below %d", SHARDS_MAX);
            o.shard = (int)s;
        } else if (strcmp(a, "--from-lsn") == 0) {
            o.from_lsn = parse_u64(a, VALUE());
        } else if (strcmp(a, "--to-lsn") == 0) {
            o.to_lsn = parse_u64(a, VALUE());
            if (o.to_lsn == 0)
                fail(2, "--to-lsn must be at least 1");
        } else if (strcmp(a, "--to-time") == 0) {
            const char *t = VALUE();
            if (!parse_iso8601(t, &o.to_time_ms))
                fail(2, "--to-time wants ISO 8601 like 2026-11-21T18:30:00Z, not '%s'", t);
            o.have_to_time = true;
        } else if (strcmp(a, "--type") == 0) {
            o.type_name = VALUE();
        } else if (strcmp(a, "--format") == 0) {
            o.format = VALUE();
        } else if (a[0] == '-') {
            fail(2, "unknown option '%s' (see --help)", a);
        } else if (cmd == NULL) {
            cmd = a;
        } else {
            fail(2, "unexpected argument '%s' (see --help)", a);
        }
#undef VALUE
    }
    if (cmd == NULL)
        fail(2, "no command given: verify, dump, stats or recover (see --help)");
    if (o.data_dir == NULL)
        fail(2, "--data-dir DIR is required (see --help)");
    if (strcmp(cmd, "verify") == 0)
        return cmd_verify(&o);
    if (strcmp(cmd, "dump") == 0)
        return cmd_dump(&o);
    if (strcmp(cmd, "stats") == 0)
        return cmd_stats(&o);
    if (strcmp(cmd, "recover") == 0)
        return cmd_recover(&o);
    fail(2, "unknown command '%s': verify, dump, stats or recover (see --help)", cmd);
    return 2;
}
