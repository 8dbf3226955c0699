/*
 * snapshot.c - LMDB snapshot store, recovery, and the snapshot scheduler.
 */
#include "snapshot.h"

#include <errno.h>
#include <inttypes.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define STORE_FORMAT   1
#define MAP_DEFAULT    (UINT64_C(16) << 30)
#define MAP_GROW_LIMIT (UINT64_C(1) << 40)

enum { DB_META, DB_LAYOUTS, DB_SHOWTIMES, DB_HOLDS, DB_BOOKINGS, DB_ONSALE, DB_COUNT };
static const char *const db_names[DB_COUNT] = {"meta",  "layouts",  "showtimes",
                                               "holds", "bookings", "onsale"};

struct snapshot_store {
    MDB_env *env;
    MDB_dbi dbi[DB_COUNT];
    uint32_t shard;
    uint64_t map_bytes;
    /* Readers from other threads (snapshot_store_each) hold it shared; growing
     * the map, which needs no transaction open in the process, exclusive. */
    uv_rwlock_t map_lock;
};

const char *snapshot_strerror(int err)
{
    switch (err) {
    case 0:
        return "success";
    case SNAPSHOT_EFORMAT:
        return "not a usher snapshot environment, or an unknown format version";
    case SNAPSHOT_ESHARD:
        return "snapshot belongs to another shard";
    case SNAPSHOT_ECORRUPT:
        return "snapshot is corrupt";
    case SNAPSHOT_EREPLAY:
        return "a write-ahead log record does not apply to the recovered state";
    case SNAPSHOT_EWAL:
        return "write-ahead log is corrupt or incomplete";
    case SNAPSHOT_ETOOOLD:
        return "the kept write-ahead log does not reach back to that point";
    case SNAPSHOT_EBUSY:
        return "a snapshot is already in progress";
    default:
        if (err >= MDB_KEYEXIST && err <= MDB_LAST_ERRCODE)
            return mdb_strerror(err);
        if (err < 0 && err > -4096)
            return strerror(-err);
        if (err <= -30000 && err > -31000)
            return wal_strerror(err);
        return "unknown snapshot error";
    }
}

/* LMDB returns errno values positive and its own codes negative. */
static int lmdb_err(int rc)
{
    return rc > 0 ? -rc : rc;
}

static void key_be(uint64_t id, uint8_t out[8])
{
    for (int i = 0; i < 8; i++)
        out[i] = (uint8_t)(id >> (56 - 8 * i));
}

static uint64_t key_from_be(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

static void le_put(uint8_t *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t le_get(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static int meta_get_u(MDB_txn *txn, MDB_dbi dbi, const char *key, int width, uint64_t *out,
                      bool *found)
{
    MDB_val k = {.mv_size = strlen(key), .mv_data = (void *)key}, v;
    int rc = mdb_get(txn, dbi, &k, &v);
    if (rc == MDB_NOTFOUND) {
        *found = false;
        return 0;
    }
    if (rc != 0)
        return lmdb_err(rc);
    if (v.mv_size != (size_t)width)
        return SNAPSHOT_EFORMAT;
    *found = true;
    *out = le_get(v.mv_data, width);
    return 0;
}

static int meta_put_u(MDB_txn *txn, MDB_dbi dbi, const char *key, int width, uint64_t value)
{
    uint8_t buf[8];
    le_put(buf, value, width);
    MDB_val k = {.mv_size = strlen(key), .mv_data = (void *)key};
    MDB_val v = {.mv_size = (size_t)width, .mv_data = buf};
    return lmdb_err(mdb_put(txn, dbi, &k, &v, 0));
}

int snapshot_store_open(const char *dir, uint32_t shard, uint64_t map_bytes, snapshot_store **out)
{
    if (mkdir(dir, 0755) < 0 && errno != EEXIST)
        return -errno;
    snapshot_store *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return -ENOMEM;
    s->shard = shard;
    s->map_bytes = map_bytes ? map_bytes : MAP_DEFAULT;
    if (uv_rwlock_init(&s->map_lock) != 0) {
        free(s);
        return -ENOMEM;
    }
    int rc = lmdb_err(mdb_env_create(&s->env));
    if (rc == 0)
        rc = lmdb_err(mdb_env_set_maxdbs(s->env, DB_COUNT));
    if (rc == 0)
        rc = lmdb_err(mdb_env_set_mapsize(s->env, (size_t)s->map_bytes));
    /* NOTLS: read transactions may be used from threadpool threads. */
    if (rc == 0)
        rc = lmdb_err(mdb_env_open(s->env, dir, MDB_NOTLS, 0644));
    MDB_txn *txn = NULL;
    if (rc == 0)
        rc = lmdb_err(mdb_txn_begin(s->env, NULL, 0, &txn));
    for (int i = 0; rc == 0 && i < DB_COUNT; i++)
        rc = lmdb_err(mdb_dbi_open(txn, db_names[i], MDB_CREATE, &s->dbi[i]));
    /* A new environment is stamped with format and shard; an old one must match. */
    uint64_t format = 0, owner = 0;
    bool has_format = false, has_shard = false;
    if (rc == 0)
        rc = meta_get_u(txn, s->dbi[DB_META], "format", 4, &format, &has_format);
    if (rc == 0)
        rc = meta_get_u(txn, s->dbi[DB_META], "shard", 4, &owner, &has_shard);
    if (rc == 0 && has_format && format != STORE_FORMAT)
        rc = SNAPSHOT_EFORMAT;
    /* No format stamp: only an environment we just created may be stamped,
     * never one that already holds someone else's data. */
    MDB_stat meta_stat;
    if (rc == 0 && !has_format && mdb_stat(txn, s->dbi[DB_META], &meta_stat) == 0 &&
        meta_stat.ms_entries > 0)
        rc = SNAPSHOT_EFORMAT;
    if (rc == 0 && has_shard && owner != shard)
        rc = SNAPSHOT_ESHARD;
    if (rc == 0 && !has_format)
        rc = meta_put_u(txn, s->dbi[DB_META], "format", 4, STORE_FORMAT);
    if (rc == 0 && !has_shard)
        rc = meta_put_u(txn, s->dbi[DB_META], "shard", 4, shard);
    if (rc == 0)
        rc = lmdb_err(mdb_txn_commit(txn));
    else if (txn != NULL)
        mdb_txn_abort(txn);
    if (rc != 0) {
        if (s->env != NULL)
            mdb_env_close(s->env);
        uv_rwlock_destroy(&s->map_lock);
        free(s);
        return rc;
    }
    *out = s;
    return 0;
}

void snapshot_store_close(snapshot_store *s)
{
    if (s == NULL)
        return;
    mdb_env_close(s->env);
    uv_rwlock_destroy(&s->map_lock);
    free(s);
}

int snapshot_store_lsn(snapshot_store *s, uint64_t *lsn)
{
    MDB_txn *txn;
    int rc = lmdb_err(mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn));
    if (rc != 0)
        return rc;
    bool found = false;
    *lsn = 0;
    rc = meta_get_u(txn, s->dbi[DB_META], "lsn", 8, lsn, &found);
    mdb_txn_abort(txn);
    return rc;
}

static int db_of(engine_item_kind kind)
{
    switch (kind) {
    case ENGINE_ITEM_LAYOUT:
        return DB_LAYOUTS;
    case ENGINE_ITEM_SHOWTIME:
        return DB_SHOWTIMES;
    case ENGINE_ITEM_HOLD:
        return DB_HOLDS;
    case ENGINE_ITEM_BOOKING:
        return DB_BOOKINGS;
    case ENGINE_ITEM_ONSALE:
        return DB_ONSALE;
    case ENGINE_ITEM_META:
        break;
    }
    return DB_META;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* Deletes keys of `dbi` whose id is not in `ids` (an incremental snapshot
 * lists every live id, so anything else was deleted since). */
static int prune(MDB_txn *txn, MDB_dbi dbi, const uint64_t *ids, size_t n)
{
    uint64_t *sorted = malloc((n > 0 ? n : 1) * sizeof(*sorted));
    if (sorted == NULL)
        return -ENOMEM;
    memcpy(sorted, ids, n * sizeof(*ids));
    qsort(sorted, n, sizeof(*sorted), cmp_u64);
    MDB_cursor *c;
    int rc = lmdb_err(mdb_cursor_open(txn, dbi, &c));
    if (rc != 0) {
        free(sorted);
        return rc;
    }
    MDB_val k, v;
    int op = MDB_FIRST;
    while (rc == 0) {
        int g = mdb_cursor_get(c, &k, &v, op);
        op = MDB_NEXT;
        if (g == MDB_NOTFOUND)
            break;
        if (g != 0 || k.mv_size != 8) {
            rc = g != 0 ? lmdb_err(g) : SNAPSHOT_ECORRUPT;
            break;
        }
        uint64_t id = key_from_be(k.mv_data);
        if (bsearch(&id, sorted, n, sizeof(*sorted), cmp_u64) == NULL)
            rc = lmdb_err(mdb_cursor_del(c, 0));
    }
    mdb_cursor_close(c);
    free(sorted);
    return rc;
}

static int store_write_txn(snapshot_store *s, const engine_snapshot *snap, uint64_t lsn)
{
    MDB_txn *txn;
    int rc = lmdb_err(mdb_txn_begin(s->env, NULL, 0, &txn));
    if (rc != 0)
        return rc;
    if (engine_snapshot_full(snap)) {
        for (int i = DB_LAYOUTS; rc == 0 && i < DB_COUNT; i++)
            rc = lmdb_err(mdb_drop(txn, s->dbi[i], 0));
    } else {
        /* Holds are few and all included: replace them wholesale. */
        rc = lmdb_err(mdb_drop(txn, s->dbi[DB_HOLDS], 0));
        size_t n;
        const uint64_t *ids = engine_snapshot_ids(snap, ENGINE_ITEM_LAYOUT, &n);
        if (rc == 0)
            rc = prune(txn, s->dbi[DB_LAYOUTS], ids, n);
        ids = engine_snapshot_ids(snap, ENGINE_ITEM_SHOWTIME, &n);
        if (rc == 0)
            rc = prune(txn, s->dbi[DB_SHOWTIMES], ids, n);
        if (rc == 0) /* keyed by showtime too */
            rc = prune(txn, s->dbi[DB_ONSALE], ids, n);
    }
    for (size_t i = 0; rc == 0 && i < engine_snapshot_count(snap); i++) {
        const engine_item *it = engine_snapshot_item(snap, i);
        uint8_t key[8];
        MDB_val k, v = {.mv_size = it->len, .mv_data = (void *)it->value};
        if (it->kind == ENGINE_ITEM_META) {
            k = (MDB_val){.mv_size = 6, .mv_data = "engine"};
        } else {
            key_be(it->key, key);
            k = (MDB_val){.mv_size = 8, .mv_data = key};
        }
        rc = lmdb_err(mdb_put(txn, s->dbi[db_of(it->kind)], &k, &v, 0));
    }
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    if (rc == 0)
        rc = meta_put_u(txn, s->dbi[DB_META], "lsn", 8, lsn);
    if (rc == 0)
        rc = meta_put_u(txn, s->dbi[DB_META], "written_at_ms", 8,
                        (uint64_t)now.tv_sec * 1000u + (uint64_t)now.tv_nsec / 1000000u);
    if (rc != 0) {
        mdb_txn_abort(txn);
        return rc;
    }
    return lmdb_err(mdb_txn_commit(txn)); /* LMDB syncs on commit */
}

int snapshot_store_write(snapshot_store *s, const engine_snapshot *snap, uint64_t lsn)
{
    for (;;) {
        int rc = store_write_txn(s, snap, lsn);
        if (rc != MDB_MAP_FULL || s->map_bytes >= MAP_GROW_LIMIT)
            return rc;
        /* No transaction is open in this process now: the map may grow. */
        s->map_bytes *= 2;
        uv_rwlock_wrlock(&s->map_lock);
        rc = lmdb_err(mdb_env_set_mapsize(s->env, (size_t)s->map_bytes));
        uv_rwlock_wrunlock(&s->map_lock);
        if (rc != 0)
            return rc;
    }
}

static int restore_cb(void *arg, engine_item_kind kind, uint64_t key, const uint8_t *value,
                      uint32_t len)
{
    int r = engine_restore_item(arg, kind, key, value, len);
    return r == 0 ? 0 : r == ENGINE_ENOMEM ? -ENOMEM : SNAPSHOT_ECORRUPT;
}

/* Calls `cb` for every item of one database, in key order. */
static int each_db(snapshot_store *s, MDB_txn *txn, int db, engine_item_kind kind,
                   snapshot_item_cb cb, void *arg)
{
    MDB_cursor *c;
    int rc = lmdb_err(mdb_cursor_open(txn, s->dbi[db], &c));
    if (rc != 0)
        return rc;
    MDB_val k, v;
    int op = MDB_FIRST;
    for (;;) {
        int g = mdb_cursor_get(c, &k, &v, op);
        op = MDB_NEXT;
        if (g == MDB_NOTFOUND)
            break;
        if (g != 0) {
            rc = lmdb_err(g);
            break;
        }
        if (k.mv_size != 8 || v.mv_size > UINT32_MAX) {
            rc = SNAPSHOT_ECORRUPT;
            break;
        }
        rc = cb(arg, kind, key_from_be(k.mv_data), v.mv_data, (uint32_t)v.mv_size);
        if (rc != 0)
            break;
    }
    mdb_cursor_close(c);
    return rc;
}

static int load_db(snapshot_store *s, MDB_txn *txn, int db, engine_item_kind kind, engine *e)
{
    return each_db(s, txn, db, kind, restore_cb, e);
}

int snapshot_store_each(snapshot_store *s, uint64_t *lsn, int64_t *written_ms, snapshot_item_cb cb,
                        void *arg)
{
    MDB_txn *txn;
    uv_rwlock_rdlock(&s->map_lock);
    int rc = lmdb_err(mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn));
    if (rc != 0) {
        uv_rwlock_rdunlock(&s->map_lock);
        return rc;
    }
    bool found = false, found_at = false;
    uint64_t at = 0;
    *lsn = 0;
    *written_ms = 0;
    rc = meta_get_u(txn, s->dbi[DB_META], "lsn", 8, lsn, &found);
    if (rc == 0 && found)
        rc = meta_get_u(txn, s->dbi[DB_META], "written_at_ms", 8, &at, &found_at);
    if (rc == 0 && found) {
        *written_ms = (int64_t)at;
        static const struct {
            int db;
            engine_item_kind kind;
        } order[] = {{DB_LAYOUTS, ENGINE_ITEM_LAYOUT},
                     {DB_SHOWTIMES, ENGINE_ITEM_SHOWTIME},
                     {DB_HOLDS, ENGINE_ITEM_HOLD},
                     {DB_BOOKINGS, ENGINE_ITEM_BOOKING}};
        for (size_t i = 0; rc == 0 && i < sizeof(order) / sizeof(order[0]); i++)
            rc = each_db(s, txn, order[i].db, order[i].kind, cb, arg);
    }
    mdb_txn_abort(txn);
    uv_rwlock_rdunlock(&s->map_lock);
    return rc;
}

int snapshot_store_load(snapshot_store *s, engine *e, uint64_t *lsn, int64_t *clock_ms)
{
    MDB_txn *txn;
    int rc = lmdb_err(mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn));
    if (rc != 0)
        return rc;
    bool found = false;
    *lsn = 0;
    *clock_ms = 0;
    rc = meta_get_u(txn, s->dbi[DB_META], "lsn", 8, lsn, &found);
    if (rc != 0 || !found) {
        mdb_txn_abort(txn);
        return rc;
    }
    MDB_val k = {.mv_size = 6, .mv_data = "engine"}, v;
    rc = mdb_get(txn, s->dbi[DB_META], &k, &v);
    rc = rc == MDB_NOTFOUND ? SNAPSHOT_ECORRUPT : lmdb_err(rc); /* an LSN without state */
    if (rc == 0) {
        int r = engine_restore_item(e, ENGINE_ITEM_META, 0, v.mv_data, (uint32_t)v.mv_size);
        rc = r == 0 ? 0 : SNAPSHOT_ECORRUPT;
        if (rc == 0 && v.mv_size >= 9)
            *clock_ms = (int64_t)le_get((const uint8_t *)v.mv_data + 1, 8);
    }
    if (rc == 0)
        rc = load_db(s, txn, DB_LAYOUTS, ENGINE_ITEM_LAYOUT, e);
    if (rc == 0)
        rc = load_db(s, txn, DB_SHOWTIMES, ENGINE_ITEM_SHOWTIME, e);
    if (rc == 0)
        rc = load_db(s, txn, DB_BOOKINGS, ENGINE_ITEM_BOOKING, e);
    if (rc == 0)
        rc = load_db(s, txn, DB_HOLDS, ENGINE_ITEM_HOLD, e);
    if (rc == 0) /* after the holds: waiting lists look at the seats left */
        rc = load_db(s, txn, DB_ONSALE, ENGINE_ITEM_ONSALE, e);
    mdb_txn_abort(txn);
    if (rc == 0 && engine_restore_finish(e) != 0)
        rc = SNAPSHOT_ECORRUPT;
    return rc;
}

/* ---- Journaling ---------------------------------------------------------------------- */

int64_t snapshot_record_append(wal_writer *w, const engine_record *rec)
{
    uint8_t small[ENGINE_RECORD_SMALL_MAX];
    uint8_t *buf = small;
    size_t cap = sizeof(small);
    if (rec->type == ENGINE_REC_LAYOUT_CREATE) {
        cap = (size_t)rec->u.layout_create.blob_len + 64;
        buf = malloc(cap);
        if (buf == NULL)
            return -ENOMEM;
    }
    int len = engine_record_encode(rec, buf, cap);
    int64_t lsn =
        len < 0 ? len : wal_writer_append(w, (uint16_t)rec->type, rec->time_ms, buf, (uint32_t)len);
    if (buf != small)
        free(buf);
    return lsn;
}

/* ---- Recovery ---------------------------------------------------------------------- */

static double elapsed_s(const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) + (double)(t1.tv_nsec - t0->tv_nsec) / 1e9;
}

/* Loads the stored snapshot into *e if policy and stop point allow. */
static int recover_snapshot(const snapshot_recover_opts *o, engine **e, snapshot_recovery *rep)
{
    char dir[WAL_PATH_MAX + 32];
    snprintf(dir, sizeof(dir), "%s/snapshot", o->shard_dir);
    struct stat st;
    if (!o->use_snapshot || stat(dir, &st) < 0)
        return 0;
    snapshot_store *s;
    int rc = snapshot_store_open(dir, o->shard, 0, &s);
    if (rc != 0) {
        snprintf(rep->error, sizeof(rep->error), "snapshot %s: %s", dir, snapshot_strerror(rc));
        return rc;
    }
    uint64_t lsn = 0;
    rc = snapshot_store_lsn(s, &lsn);
    rep->stored_snapshot_lsn = lsn;
    /* A snapshot past the stop point cannot be rewound: start from scratch. */
    bool usable = rc == 0 && lsn > 0 && (o->stop_lsn == 0 || lsn <= o->stop_lsn);
    if (usable) {
        int64_t clock_ms = 0;
        engine *fresh;
        rc = engine_create(&o->cfg, &fresh);
        if (rc != 0) {
            snapshot_store_close(s);
            return rc == ENGINE_ENOMEM ? -ENOMEM : -EINVAL;
        }
        rc = snapshot_store_load(s, fresh, &lsn, &clock_ms);
        if (rc == 0 && o->stop_time_ms != 0 && clock_ms > o->stop_time_ms) {
            engine_destroy(fresh); /* too new for the requested time */
        } else if (rc == 0) {
            engine_destroy(*e);
            *e = fresh;
            rep->had_snapshot = true;
            rep->snapshot_lsn = lsn;
            rep->last_lsn = lsn;
        } else {
            engine_destroy(fresh);
        }
    }
    if (rc != 0)
        snprintf(rep->error, sizeof(rep->error), "snapshot %s: %s", dir, snapshot_strerror(rc));
    snapshot_store_close(s);
    return rc;
}

static int apply_wal_record(const snapshot_recover_opts *o, engine *e, const wal_record *rec,
                            snapshot_recovery *rep)
{
    if (rec->type >= 100) {
        if (o->other_cb == NULL) {
            snprintf(rep->error, sizeof(rep->error),
                     "WAL record LSN %" PRIu64 " has type %u, which this build does not know",
                     rec->lsn, rec->type);
            return SNAPSHOT_EREPLAY;
        }
        int rc = o->other_cb(o->arg, rec);
        if (rc != 0) {
            snprintf(rep->error, sizeof(rep->error),
                     "WAL record LSN %" PRIu64 " (type %u) was refused: %d", rec->lsn, rec->type,
                     rc);
            /* Any refusal stops recovery; only negative codes pass through, so a
             * positive return cannot be mistaken for "got a record". */
            return rc < 0 ? rc : SNAPSHOT_EREPLAY;
        }
        return 0;
    }
    engine_record er;
    int rc = engine_record_decode(rec->payload, rec->payload_len, &er);
    if (rc == 0 && ((uint16_t)er.type != rec->type || er.time_ms != rec->time_ms))
        rc = ENGINE_EDECODE;
    if (rc == 0)
        rc = engine_record_apply(e, &er);
    if (rc != 0) {
        snprintf(rep->error, sizeof(rep->error),
                 "WAL record LSN %" PRIu64 " (%s, time %" PRId64 ") does not apply: %s", rec->lsn,
                 engine_record_type_name((engine_record_type)rec->type), rec->time_ms,
                 engine_strerror(rc));
        return rc == ENGINE_ENOMEM ? -ENOMEM : SNAPSHOT_EREPLAY;
    }
    return 0;
}

int snapshot_recover(const snapshot_recover_opts *o, engine **out, snapshot_recovery *rep)
{
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    memset(rep, 0, sizeof(*rep));
    engine *e;
    int rc = engine_create(&o->cfg, &e);
    if (rc != 0)
        return rc == ENGINE_ENOMEM ? -ENOMEM : -EINVAL;
    rc = recover_snapshot(o, &e, rep);
    if (rc != 0) {
        engine_destroy(e);
        return rc;
    }

    char dir[WAL_PATH_MAX + 32];
    snprintf(dir, sizeof(dir), "%s/wal", o->shard_dir);
    wal_reader *r;
    rc = wal_reader_open(dir, rep->last_lsn + 1, NULL, &r);
    if (rc != 0) {
        if (rc == WAL_ENOTFOUND) {
            uint64_t oldest = 0;
            wal_oldest_lsn(dir, &oldest);
            snprintf(rep->error, sizeof(rep->error),
                     "%s no longer holds LSN %" PRIu64 " (it starts at LSN %" PRIu64
                     "; segments below a snapshot are dropped). The stored snapshot is at LSN "
                     "%" PRIu64 ": points from there on are reachable",
                     dir, rep->last_lsn + 1, oldest, rep->stored_snapshot_lsn);
        } else
            snprintf(rep->error, sizeof(rep->error), "%s: %s", dir, wal_strerror(rc));
        engine_destroy(e);
        return rc == WAL_ENOTFOUND ? SNAPSHOT_ETOOOLD : rc;
    }
    bool stopped = false;
    wal_record rec;
    while ((rc = wal_reader_next(r, &rec)) == 1) {
        if ((o->stop_lsn != 0 && rec.lsn > o->stop_lsn) ||
            (o->stop_time_ms != 0 && rec.time_ms > o->stop_time_ms)) {
            stopped = true;
            break;
        }
        rc = apply_wal_record(o, e, &rec, rep);
        if (rc != 0)
            break;
        rep->replayed++;
        rep->last_lsn = rec.lsn;
        if (o->stop_lsn != 0 && rec.lsn == o->stop_lsn) {
            stopped = true; /* do not even read past the stop point */
            break;
        }
    }
    if (rc < 0 && rc >= -31000 && rc <= -30000) {
        snprintf(rep->error, sizeof(rep->error), "%s", wal_reader_error(r));
        rc = SNAPSHOT_EWAL;
    }
    if (rc == 0 && !stopped) {
        const wal_tail *t = wal_reader_tail(r);
        rep->torn_bytes = t->torn_bytes;
        rep->torn_reason = t->torn_reason;
        snprintf(rep->torn_segment, sizeof(rep->torn_segment), "%s", t->last_segment);
        /* Repair also removes a last segment whose header never made it
         * (an empty file after a crash right after rotation). */
        if (o->repair && (t->torn_bytes > 0 ||
                          (t->last_segment[0] != '\0' && t->good_bytes < WAL_SEGMENT_HEADER))) {
            rc = wal_tail_repair(dir, t, NULL);
            if (rc != 0)
                snprintf(rep->error, sizeof(rep->error), "cutting the torn tail of %s: %s",
                         t->last_segment, wal_strerror(rc));
        }
    }
    wal_reader_close(r);
    if (rc == 1)
        rc = 0;
    if (rc != 0) {
        engine_destroy(e);
        return rc;
    }
    rep->seconds = elapsed_s(&t0);
    *out = e;
    return 0;
}

/* ---- Scheduler --------------------------------------------------------------------------- */

struct snapshot_scheduler {
    uv_loop_t *loop;
    engine *e;
    wal_writer *w;
    snapshot_store *store;
    snapshot_policy policy;
    uv_work_t work;

    engine_snapshot *pending; /* copied, waiting for durability or being written */
    uint64_t pending_lsn;
    bool writing;
    bool need_full; /* the last write failed: the next snapshot must be full */
    int write_rc;
    uint64_t last_mono_ms, last_wal_bytes;
    uint64_t write_t0;
    snapshot_sched_stats stats;
};

int snapshot_scheduler_open(uv_loop_t *loop, engine *e, wal_writer *w, snapshot_store *s,
                            const snapshot_policy *p, snapshot_scheduler **out)
{
    snapshot_scheduler *sc = calloc(1, sizeof(*sc));
    if (sc == NULL)
        return -ENOMEM;
    sc->loop = loop;
    sc->e = e;
    sc->w = w;
    sc->store = s;
    sc->policy.wal_bytes = p != NULL && p->wal_bytes ? p->wal_bytes : UINT64_C(64) << 20;
    sc->policy.interval_ms = p != NULL && p->interval_ms ? p->interval_ms : 60000;
    /* The first snapshot of a process is full: LMDB may hold an older one
     * than the engine's dirty marks assume. */
    sc->need_full = true;
    sc->work.data = sc;
    *out = sc;
    return 0;
}

static void write_work(uv_work_t *req)
{
    snapshot_scheduler *sc = req->data;
    sc->write_rc = snapshot_store_write(sc->store, sc->pending, sc->pending_lsn);
}

static void write_done(uv_work_t *req, int status)
{
    snapshot_scheduler *sc = req->data;
    int rc = status != 0 ? status : sc->write_rc;
    sc->stats.last_write_ns = uv_hrtime() - sc->write_t0;
    if (rc == 0) {
        sc->stats.written++;
        sc->stats.last_lsn = sc->pending_lsn;
        wal_writer_drop_before(sc->w, sc->pending_lsn);
    } else {
        sc->stats.failed++;
        sc->need_full = true;
        fprintf(stderr, "level=error msg=\"snapshot write failed\" lsn=%" PRIu64 " error=\"%s\"\n",
                sc->pending_lsn, snapshot_strerror(rc));
    }
    engine_snapshot_free(sc->pending);
    sc->pending = NULL;
    sc->writing = false;
}

static void start_write(snapshot_scheduler *sc)
{
    sc->writing = true;
    sc->write_t0 = uv_hrtime();
    int rc = uv_queue_work(sc->loop, &sc->work, write_work, write_done);
    if (rc != 0) {
        sc->write_rc = rc;
        write_done(&sc->work, rc);
    }
}

void snapshot_scheduler_durable(snapshot_scheduler *sc, uint64_t durable_lsn)
{
    if (sc->pending != NULL && !sc->writing && durable_lsn >= sc->pending_lsn)
        start_write(sc);
}

int snapshot_scheduler_take(snapshot_scheduler *sc)
{
    if (sc->pending != NULL)
        return SNAPSHOT_EBUSY;
    uint64_t t0 = uv_hrtime();
    int rc = engine_snapshot_take(sc->e, sc->need_full, &sc->pending);
    if (rc != 0)
        return -ENOMEM;
    sc->need_full = false;
    sc->pending_lsn = wal_writer_last_lsn(sc->w);
    sc->stats.taken++;
    sc->stats.last_items = engine_snapshot_count(sc->pending);
    sc->stats.last_copy_ns = uv_hrtime() - t0;
    sc->last_wal_bytes = wal_writer_bytes(sc->w);
    /* Only what is durable may be snapshotted: wait for the WAL if needed. */
    snapshot_scheduler_durable(sc, wal_writer_durable_lsn(sc->w));
    return 0;
}

int snapshot_scheduler_tick(snapshot_scheduler *sc, uint64_t mono_ms)
{
    if (sc->last_mono_ms == 0)
        sc->last_mono_ms = mono_ms;
    bool by_bytes = wal_writer_bytes(sc->w) - sc->last_wal_bytes >= sc->policy.wal_bytes;
    bool by_time = mono_ms - sc->last_mono_ms >= sc->policy.interval_ms;
    if (sc->pending != NULL || !(by_bytes || by_time))
        return 0;
    if (wal_writer_last_lsn(sc->w) == sc->stats.last_lsn && sc->stats.written > 0) {
        sc->last_mono_ms = mono_ms; /* nothing new since the last one */
        return 0;
    }
    int rc = snapshot_scheduler_take(sc);
    if (rc != 0)
        return rc;
    sc->last_mono_ms = mono_ms;
    return 1;
}

bool snapshot_scheduler_busy(const snapshot_scheduler *sc)
{
    return sc->pending != NULL;
}

void snapshot_scheduler_stats(const snapshot_scheduler *sc, snapshot_sched_stats *out)
{
    *out = sc->stats;
}

void snapshot_scheduler_close(snapshot_scheduler *sc)
{
    if (sc == NULL)
        return;
    if (sc->writing) {
        /* write_done would use the scheduler, and the WAL writer, after this. */
        fprintf(stderr, "usher snapshot: scheduler closed while a write is in progress\n");
        abort();
    }
    if (sc->pending != NULL)
        engine_snapshot_free(sc->pending); /* still waiting for durability: the WAL has it all */
    free(sc);
}
