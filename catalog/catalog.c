/*
 * catalog.c - change records and the LMDB store of the catalog; see catalog.h.
 *
 * Named databases (keys big-endian so LMDB's byte order is id order):
 *   meta           "shards" -> u32, "applied/<shard>" -> u64, "max_id" -> u64 (LE values)
 *   theater, screen, movie, showtime, user
 *                  u64 id -> canonical JSON
 *   user_email     lowercased email -> u64 id (BE)
 *   showtime_rows  (u32 owner shard, u64 id) -> packed catalog_showtime_row (LE)
 *   screen_theater u64 screen id -> u64 theater id (BE): counts a theater's
 *                  screens without parsing screen objects, which carry whole
 *                  seat layouts
 *
 * Every index is derived from the objects, in the same write transaction as
 * the objects, so it can never disagree with them once committed.
 */
#include "catalog_internal.h"

#include <errno.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <xxhash.h>

#define MAP_DEFAULT (UINT64_C(4) << 30)

/* With MDB_NOTLS every open read view holds a reader slot of its own, not one
 * per thread; LMDB's default of 126 is too few for many shards and threadpool
 * jobs reading at once. A slot costs 64 bytes of lock file. */
#define MAX_READERS 1024

enum {
    DB_META,
    DB_THEATER, /* DB_THEATER + kind - 1 is the kind's database */
    DB_SCREEN,
    DB_MOVIE,
    DB_SHOWTIME,
    DB_USER,
    DB_USER_EMAIL,
    DB_SHOWTIME_ROWS,
    DB_SCREEN_THEATER,
    DB_COUNT
};
static const char *const db_names[DB_COUNT] = {"meta",       "theater",       "screen",
                                               "movie",      "showtime",      "user",
                                               "user_email", "showtime_rows", "screen_theater"};

enum {
    ROW_KEY = 12,   /* u32 shard | u64 id */
    ROW_VALUE = 48, /* id, movie, screen, theater, start_ms (u64 each), price_min, price_max */
    EMAIL_MAX = 254 /* as validated: longer keys cannot exist */
};

struct catalog {
    MDB_env *env;
    MDB_dbi dbi[DB_COUNT];
    uint32_t shards;
};

struct catalog_read {
    catalog *c;
    MDB_txn *txn;
};

_Noreturn void catalog__assert_fail(const char *expr, const char *file, int line)
{
    fprintf(stderr, "usher catalog: assertion failed: %s (%s:%d)\n", expr, file, line);
    abort();
}

/* ---- Errors ---------------------------------------------------------------- */

static _Thread_local char last_error[256];

const char *catalog_last_error(void)
{
    return last_error;
}

/* Records an LMDB failure for catalog_last_error() and returns CATALOG_ELMDB. */
static int lmdb_fail(const char *what, int rc)
{
    /* mdb_strerror() knows LMDB's codes and errno values alike. */
    int n = snprintf(last_error, sizeof last_error, "%s: %s", what, mdb_strerror(rc));
    if (n < 0 || (size_t)n >= sizeof last_error)
        last_error[sizeof last_error - 1] = '\0'; /* cut; still a string */
    return CATALOG_ELMDB;
}

/* A stored value that cannot be ours (wrong size): as good as an I/O error. */
static int corrupt(const char *what)
{
    int n = snprintf(last_error, sizeof last_error, "corrupt catalog: %s", what);
    if (n < 0 || (size_t)n >= sizeof last_error)
        last_error[sizeof last_error - 1] = '\0';
    return CATALOG_ELMDB;
}

const char *catalog_strerror(int err)
{
    switch (err) {
    case 0:
        return "success";
    case CATALOG_ELMDB:
        return "catalog storage (LMDB) failed";
    case CATALOG_ESHARDS:
        return "the catalog was created with another shard count";
    case CATALOG_EDECODE:
        return "a catalog change record is malformed";
    case CATALOG_ENOTFOUND:
        return "no such catalog entity";
    default:
        if (err < 0 && err > -4096)
            return strerror(-err);
        return "unknown catalog error";
    }
}

const char *catalog_kind_name(catalog_kind k)
{
    switch (k) {
    case CATALOG_THEATER:
        return "theater";
    case CATALOG_SCREEN:
        return "screen";
    case CATALOG_MOVIE:
        return "movie";
    case CATALOG_SHOWTIME:
        return "showtime";
    case CATALOG_USER:
        return "user";
    }
    return NULL;
}

static bool kind_ok(int k)
{
    return k >= CATALOG_THEATER && k <= CATALOG_KIND_MAX_;
}

/* ---- Byte orders ------------------------------------------------------------- */

static void be_put(uint8_t *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * (n - 1 - i)));
}

static uint64_t be_get(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
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

/* ---- Change records ------------------------------------------------------------ */

enum { CHANGE_HEAD = 9 /* u8 kind | u64 id */ };

int catalog_change_encode(const catalog_change *ch, uint8_t *buf, size_t cap)
{
    CATALOG_ASSERT(kind_ok((int)ch->kind) && ch->id != 0);
    /* Validation bounds canonical JSON; a larger put could never be decoded. */
    CATALOG_ASSERT(!ch->put ||
                   (ch->json != NULL && ch->json_len > 0 && ch->json_len <= CATALOG_JSON_MAX));
    size_t len = CHANGE_HEAD + (ch->put ? ch->json_len : 0);
    if (cap < len)
        return -ENOSPC;
    buf[0] = (uint8_t)ch->kind;
    le_put(buf + 1, ch->id, 8);
    if (ch->put)
        memcpy(buf + CHANGE_HEAD, ch->json, ch->json_len);
    return (int)len;
}

/* The id member of a parsed entity, or 0 when it has none. */
static uint64_t json_id(const json_t *obj, const char *name)
{
    const json_t *v = json_object_get(obj, name);
    if (!json_is_integer(v) || json_integer_value(v) <= 0)
        return 0;
    return (uint64_t)json_integer_value(v);
}

/* Parses a put's JSON: an object whose "id" is the change's. NULL with *rc
 * CATALOG_EDECODE or -ENOMEM. */
static json_t *change_parse(const char *json, size_t len, uint64_t id, int *rc)
{
    json_error_t err;
    json_t *obj = json_loadb(json, len, JSON_REJECT_DUPLICATES, &err);
    if (obj == NULL) {
        *rc = json_error_code(&err) == json_error_out_of_memory ? -ENOMEM : CATALOG_EDECODE;
        return NULL;
    }
    if (!json_is_object(obj) || json_id(obj, "id") != id) {
        json_decref(obj);
        *rc = CATALOG_EDECODE;
        return NULL;
    }
    *rc = 0;
    return obj;
}

int catalog_change_decode(uint16_t type, const uint8_t *payload, size_t len, catalog_change *ch)
{
    if ((type != CATALOG_REC_PUT && type != CATALOG_REC_DELETE) || payload == NULL ||
        len < CHANGE_HEAD || !kind_ok(payload[0]))
        return CATALOG_EDECODE;
    catalog_change d = {
        .put = type == CATALOG_REC_PUT,
        .kind = (catalog_kind)payload[0],
        .id = le_get(payload + 1, 8),
    };
    if (d.id == 0 || d.id > CATALOG_ID_MAX)
        return CATALOG_EDECODE;
    if (!d.put) {
        if (len != CHANGE_HEAD)
            return CATALOG_EDECODE;
    } else {
        d.json = (const char *)payload + CHANGE_HEAD;
        d.json_len = len - CHANGE_HEAD;
        if (d.json_len == 0 || d.json_len > CATALOG_JSON_MAX)
            return CATALOG_EDECODE;
        /* A record is applied long after it was written (recovery): catch a
         * bad one here, where the caller can still name its LSN. */
        int rc;
        json_t *obj = change_parse(d.json, d.json_len, d.id, &rc);
        if (obj == NULL)
            return rc == -ENOMEM ? -ENOMEM : CATALOG_EDECODE;
        json_decref(obj);
    }
    *ch = d;
    return 0;
}

uint32_t catalog_showtime_shard(uint64_t showtime_id, uint32_t shards)
{
    CATALOG_ASSERT(shards > 0);
    uint8_t b[8];
    le_put(b, showtime_id, 8);
    return (uint32_t)(XXH3_64bits(b, sizeof b) % shards);
}

/* ---- Opening ------------------------------------------------------------------ */

static int meta_get(MDB_txn *txn, MDB_dbi dbi, const char *key, int width, uint64_t *out,
                    bool *found)
{
    MDB_val k = {.mv_size = strlen(key), .mv_data = (void *)key}, v;
    int rc = mdb_get(txn, dbi, &k, &v);
    *found = false;
    *out = 0;
    if (rc == MDB_NOTFOUND)
        return 0;
    if (rc != 0)
        return lmdb_fail("reading catalog meta", rc);
    if (v.mv_size != (size_t)width)
        return corrupt("a meta value has the wrong size");
    *found = true;
    *out = le_get(v.mv_data, width);
    return 0;
}

static int meta_put(MDB_txn *txn, MDB_dbi dbi, const char *key, int width, uint64_t value)
{
    uint8_t buf[8];
    le_put(buf, value, width);
    MDB_val k = {.mv_size = strlen(key), .mv_data = (void *)key};
    MDB_val v = {.mv_size = (size_t)width, .mv_data = buf};
    int rc = mdb_put(txn, dbi, &k, &v, 0);
    return rc == 0 ? 0 : lmdb_fail("writing catalog meta", rc);
}

static void applied_key(char buf[32], uint32_t shard)
{
    int n = snprintf(buf, 32, "applied/%u", shard);
    CATALOG_ASSERT(n > 0 && n < 32);
}

int catalog_open(const char *dir, uint32_t shards, uint64_t map_bytes, catalog **out)
{
    CATALOG_ASSERT(shards > 0 && out != NULL);
    if (map_bytes == 0)
        map_bytes = MAP_DEFAULT;
    if (map_bytes > SIZE_MAX)
        return -EINVAL;
    if (mkdir(dir, 0755) < 0 && errno != EEXIST)
        return -errno;
    catalog *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return -ENOMEM;
    c->shards = shards;
    MDB_txn *txn = NULL;
    int rc = mdb_env_create(&c->env);
    if (rc != 0) {
        c->env = NULL;
        rc = lmdb_fail("creating the catalog environment", rc);
        goto fail;
    }
    if ((rc = mdb_env_set_maxdbs(c->env, DB_COUNT)) != 0 ||
        (rc = mdb_env_set_maxreaders(c->env, MAX_READERS)) != 0 ||
        (rc = mdb_env_set_mapsize(c->env, (size_t)map_bytes)) != 0) {
        rc = lmdb_fail("configuring the catalog environment", rc);
        goto fail;
    }
    /* NOTLS: read transactions run on libuv threadpool threads, and a
     * transaction may end on another thread than the one that began it. */
    if ((rc = mdb_env_open(c->env, dir, MDB_NOTLS, 0644)) != 0) {
        rc = lmdb_fail("opening the catalog", rc);
        goto fail;
    }
    if ((rc = mdb_txn_begin(c->env, NULL, 0, &txn)) != 0) {
        txn = NULL;
        rc = lmdb_fail("beginning a catalog write", rc);
        goto fail;
    }
    for (int i = 0; i < DB_COUNT; i++) {
        if ((rc = mdb_dbi_open(txn, db_names[i], MDB_CREATE, &c->dbi[i])) != 0) {
            rc = lmdb_fail("opening a catalog database", rc);
            goto fail;
        }
    }
    /* Showtime ownership is a function of the shard count: the first open
     * fixes it for the life of the data directory. */
    uint64_t stored;
    bool found;
    if ((rc = meta_get(txn, c->dbi[DB_META], "shards", 4, &stored, &found)) != 0)
        goto fail;
    if (found && stored != shards) {
        rc = CATALOG_ESHARDS;
        goto fail;
    }
    if (!found && (rc = meta_put(txn, c->dbi[DB_META], "shards", 4, shards)) != 0)
        goto fail;
    rc = mdb_txn_commit(txn);
    txn = NULL;
    if (rc != 0) {
        rc = lmdb_fail("committing the catalog setup", rc);
        goto fail;
    }
    *out = c;
    return 0;
fail:
    if (txn != NULL)
        mdb_txn_abort(txn);
    if (c->env != NULL)
        mdb_env_close(c->env);
    free(c);
    return rc;
}

void catalog_close(catalog *c)
{
    if (c == NULL)
        return;
    mdb_env_close(c->env);
    free(c);
}

/* ---- Applying changes --------------------------------------------------------- */

static MDB_dbi kind_dbi(const catalog *c, catalog_kind kind)
{
    CATALOG_ASSERT(kind_ok((int)kind));
    return c->dbi[DB_THEATER + (int)kind - 1];
}

/* Deletes key `k` from `dbi`; a missing key is fine (deletes are idempotent). */
static int del_quiet(MDB_txn *txn, MDB_dbi dbi, MDB_val *k, const char *what)
{
    int rc = mdb_del(txn, dbi, k, NULL);
    if (rc == MDB_NOTFOUND)
        return 0;
    return rc == 0 ? 0 : lmdb_fail(what, rc);
}

/* The lowercased email of a user object into buf; false if it has none that
 * could be indexed. Lowercasing again here keeps the index right even for
 * objects that did not come through catalog_validate(). */
static bool email_key(const json_t *user, char buf[EMAIL_MAX + 1], size_t *len)
{
    const json_t *v = json_object_get(user, "email");
    if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) > EMAIL_MAX)
        return false;
    const char *s = json_string_value(v);
    *len = json_string_length(v);
    for (size_t i = 0; i < *len; i++)
        buf[i] = s[i] >= 'A' && s[i] <= 'Z' ? (char)(s[i] - 'A' + 'a') : s[i];
    buf[*len] = '\0';
    return true;
}

/* Removes the email index entry of the stored user `id`, if it points at `id`
 * (another user may have taken the address since). `keep` is the email the
 * user keeps (NULL: none): its entry stays. */
static int user_unindex(catalog *c, MDB_txn *txn, uint64_t id, const char *keep)
{
    uint8_t kb[8];
    be_put(kb, id, 8);
    MDB_val k = {.mv_size = 8, .mv_data = kb}, v;
    int rc = mdb_get(txn, c->dbi[DB_USER], &k, &v);
    if (rc == MDB_NOTFOUND)
        return 0;
    if (rc != 0)
        return lmdb_fail("reading a user", rc);
    json_t *old = change_parse(v.mv_data, v.mv_size, id, &rc);
    if (old == NULL)
        return rc == -ENOMEM ? rc : corrupt("a stored user is not a JSON object with its id");
    char email[EMAIL_MAX + 1];
    size_t len;
    bool has = email_key(old, email, &len);
    json_decref(old);
    if (!has || (keep != NULL && strcmp(keep, email) == 0))
        return 0;
    MDB_val ek = {.mv_size = len, .mv_data = email}, ev;
    rc = mdb_get(txn, c->dbi[DB_USER_EMAIL], &ek, &ev);
    if (rc == MDB_NOTFOUND)
        return 0;
    if (rc != 0)
        return lmdb_fail("reading the email index", rc);
    if (ev.mv_size != 8 || be_get(ev.mv_data, 8) != id)
        return 0;
    return del_quiet(txn, c->dbi[DB_USER_EMAIL], &ek, "updating the email index");
}

static int user_index(catalog *c, MDB_txn *txn, uint64_t id, const json_t *user)
{
    char email[EMAIL_MAX + 1];
    size_t len;
    if (!email_key(user, email, &len))
        return CATALOG_EDECODE;
    int rc = user_unindex(c, txn, id, email);
    if (rc != 0)
        return rc;
    uint8_t vb[8];
    be_put(vb, id, 8);
    MDB_val ek = {.mv_size = len, .mv_data = email}, ev = {.mv_size = 8, .mv_data = vb};
    rc = mdb_put(txn, c->dbi[DB_USER_EMAIL], &ek, &ev, 0);
    return rc == 0 ? 0 : lmdb_fail("updating the email index", rc);
}

static void row_key(uint8_t key[ROW_KEY], uint32_t shard, uint64_t id)
{
    be_put(key, shard, 4);
    be_put(key + 4, id, 8);
}

static int showtime_index(catalog *c, MDB_txn *txn, uint64_t id, const json_t *st)
{
    catalog_showtime_row row = {
        .id = id,
        .movie_id = json_id(st, "movie_id"),
        .screen_id = json_id(st, "screen_id"),
        .theater_id = json_id(st, "theater_id"),
    };
    const json_t *start = json_object_get(st, "start_ms");
    const json_t *prices = json_object_get(st, "prices");
    if (row.movie_id == 0 || row.screen_id == 0 || row.theater_id == 0 || !json_is_integer(start) ||
        !json_is_object(prices))
        return CATALOG_EDECODE;
    row.start_ms = json_integer_value(start);
    bool first = true;
    const char *name;
    json_t *pv;
    json_object_foreach((json_t *)prices, name, pv)
    {
        if (!json_is_integer(pv) || json_integer_value(pv) < 0 ||
            json_integer_value(pv) > UINT32_MAX)
            return CATALOG_EDECODE;
        uint32_t p = (uint32_t)json_integer_value(pv);
        if (first || p < row.price_min)
            row.price_min = p;
        if (first || p > row.price_max)
            row.price_max = p;
        first = false;
    }
    uint8_t kb[ROW_KEY], vb[ROW_VALUE];
    row_key(kb, catalog_showtime_shard(id, c->shards), id);
    le_put(vb, row.id, 8);
    le_put(vb + 8, row.movie_id, 8);
    le_put(vb + 16, row.screen_id, 8);
    le_put(vb + 24, row.theater_id, 8);
    le_put(vb + 32, (uint64_t)row.start_ms, 8);
    le_put(vb + 40, row.price_min, 4);
    le_put(vb + 44, row.price_max, 4);
    MDB_val k = {.mv_size = sizeof kb, .mv_data = kb}, v = {.mv_size = sizeof vb, .mv_data = vb};
    int rc = mdb_put(txn, c->dbi[DB_SHOWTIME_ROWS], &k, &v, 0);
    return rc == 0 ? 0 : lmdb_fail("updating the showtime rows", rc);
}

static int screen_index(catalog *c, MDB_txn *txn, uint64_t id, const json_t *screen)
{
    uint64_t theater = json_id(screen, "theater_id");
    if (theater == 0)
        return CATALOG_EDECODE;
    uint8_t kb[8], vb[8];
    be_put(kb, id, 8);
    be_put(vb, theater, 8);
    MDB_val k = {.mv_size = 8, .mv_data = kb}, v = {.mv_size = 8, .mv_data = vb};
    int rc = mdb_put(txn, c->dbi[DB_SCREEN_THEATER], &k, &v, 0);
    return rc == 0 ? 0 : lmdb_fail("updating the screen index", rc);
}

static int apply_one(catalog *c, MDB_txn *txn, const catalog_change *ch)
{
    CATALOG_ASSERT(kind_ok((int)ch->kind) && ch->id != 0);
    uint8_t kb[8];
    be_put(kb, ch->id, 8);
    MDB_val k = {.mv_size = 8, .mv_data = kb};
    int rc = 0;
    if (!ch->put) {
        /* Indexes first: the user index needs the stored object. */
        if (ch->kind == CATALOG_USER) {
            rc = user_unindex(c, txn, ch->id, NULL);
        } else if (ch->kind == CATALOG_SHOWTIME) {
            uint8_t rk[ROW_KEY];
            row_key(rk, catalog_showtime_shard(ch->id, c->shards), ch->id);
            MDB_val r = {.mv_size = sizeof rk, .mv_data = rk};
            rc = del_quiet(txn, c->dbi[DB_SHOWTIME_ROWS], &r, "deleting a showtime row");
        } else if (ch->kind == CATALOG_SCREEN) {
            rc = del_quiet(txn, c->dbi[DB_SCREEN_THEATER], &k, "updating the screen index");
        }
        if (rc == 0)
            rc = del_quiet(txn, kind_dbi(c, ch->kind), &k, "deleting a catalog entity");
        return rc;
    }

    if (ch->json == NULL || ch->json_len == 0 || ch->json_len > CATALOG_JSON_MAX)
        return CATALOG_EDECODE;
    json_t *obj = change_parse(ch->json, ch->json_len, ch->id, &rc);
    if (obj == NULL)
        return rc;
    /* The owner of a showtime row depends only on the id, so an overwrite
     * replaces the row in place; users and screens may move between keys. */
    if (ch->kind == CATALOG_USER)
        rc = user_index(c, txn, ch->id, obj);
    else if (ch->kind == CATALOG_SHOWTIME)
        rc = showtime_index(c, txn, ch->id, obj);
    else if (ch->kind == CATALOG_SCREEN)
        rc = screen_index(c, txn, ch->id, obj);
    json_decref(obj);
    if (rc != 0)
        return rc;
    MDB_val v = {.mv_size = ch->json_len, .mv_data = (void *)ch->json};
    rc = mdb_put(txn, kind_dbi(c, ch->kind), &k, &v, 0);
    return rc == 0 ? 0 : lmdb_fail("writing a catalog entity", rc);
}

int catalog_apply(catalog *c, uint32_t shard, uint64_t applied_lsn, const catalog_change *changes,
                  size_t n)
{
    CATALOG_ASSERT(shard < c->shards && (n == 0 || changes != NULL));
    MDB_txn *txn;
    int rc = mdb_txn_begin(c->env, NULL, 0, &txn);
    if (rc != 0)
        return lmdb_fail("beginning a catalog write", rc);
    uint64_t max_id = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        rc = apply_one(c, txn, &changes[i]);
        if (changes[i].id > max_id)
            max_id = changes[i].id;
    }
    /* Neither mark moves backwards: re-applying an old batch (idempotent by
     * construction) must not make recovery think less is applied, and ids,
     * deleted ones included, are never handed out twice. */
    char key[32];
    applied_key(key, shard);
    uint64_t old;
    bool found;
    if (rc == 0)
        rc = meta_get(txn, c->dbi[DB_META], key, 8, &old, &found);
    if (rc == 0 && applied_lsn > old)
        rc = meta_put(txn, c->dbi[DB_META], key, 8, applied_lsn);
    if (rc == 0)
        rc = meta_get(txn, c->dbi[DB_META], "max_id", 8, &old, &found);
    if (rc == 0 && max_id > old)
        rc = meta_put(txn, c->dbi[DB_META], "max_id", 8, max_id);
    if (rc != 0) {
        mdb_txn_abort(txn);
        return rc;
    }
    rc = mdb_txn_commit(txn);
    return rc == 0 ? 0 : lmdb_fail("committing catalog changes", rc);
}

/* ---- Reads -------------------------------------------------------------------- */

int catalog_read_begin(catalog *c, catalog_read **out)
{
    catalog_read *r = malloc(sizeof(*r));
    if (r == NULL)
        return -ENOMEM;
    r->c = c;
    int rc = mdb_txn_begin(c->env, NULL, MDB_RDONLY, &r->txn);
    if (rc != 0) {
        free(r);
        return lmdb_fail("beginning a catalog read", rc);
    }
    *out = r;
    return 0;
}

uint64_t catalog_read_version(const catalog_read *r)
{
    return (uint64_t)mdb_txn_id(r->txn);
}

void catalog_read_end(catalog_read *r)
{
    if (r == NULL)
        return;
    mdb_txn_abort(r->txn);
    free(r);
}

uint64_t catalog_applied_lsn(catalog *c, uint32_t shard)
{
    catalog_read *r;
    if (catalog_read_begin(c, &r) != 0)
        return 0;
    char key[32];
    applied_key(key, shard);
    uint64_t lsn = 0;
    bool found;
    if (meta_get(r->txn, c->dbi[DB_META], key, 8, &lsn, &found) != 0)
        lsn = 0;
    catalog_read_end(r);
    return lsn;
}

uint64_t catalog_max_id(catalog *c)
{
    catalog_read *r;
    if (catalog_read_begin(c, &r) != 0)
        return 0;
    uint64_t max = 0;
    bool found;
    if (meta_get(r->txn, c->dbi[DB_META], "max_id", 8, &max, &found) != 0)
        max = 0;
    /* The mark covers everything applied; the last keys are a cross-check
     * that costs one page each. */
    for (int k = CATALOG_THEATER; k <= CATALOG_KIND_MAX_; k++) {
        MDB_cursor *cur;
        MDB_val key, val;
        if (mdb_cursor_open(r->txn, kind_dbi(c, (catalog_kind)k), &cur) != 0)
            continue;
        if (mdb_cursor_get(cur, &key, &val, MDB_LAST) == 0 && key.mv_size == 8 &&
            be_get(key.mv_data, 8) > max)
            max = be_get(key.mv_data, 8);
        mdb_cursor_close(cur);
    }
    catalog_read_end(r);
    return max;
}

int catalog_get(catalog_read *r, catalog_kind kind, uint64_t id, const char **json, size_t *len)
{
    uint8_t kb[8];
    be_put(kb, id, 8);
    MDB_val k = {.mv_size = 8, .mv_data = kb}, v;
    int rc = mdb_get(r->txn, kind_dbi(r->c, kind), &k, &v);
    if (rc == MDB_NOTFOUND)
        return CATALOG_ENOTFOUND;
    if (rc != 0)
        return lmdb_fail("reading a catalog entity", rc);
    *json = v.mv_data;
    *len = v.mv_size;
    return 0;
}

json_t *catalog_get_json(catalog_read *r, catalog_kind kind, uint64_t id)
{
    const char *json;
    size_t len;
    if (catalog_get(r, kind, id, &json, &len) != 0)
        return NULL;
    return json_loadb(json, len, 0, NULL);
}

int catalog_user_find(catalog_read *r, const char *email, uint64_t *id)
{
    size_t n = strnlen(email, EMAIL_MAX + 1);
    if (n == 0 || n > EMAIL_MAX)
        return CATALOG_ENOTFOUND;
    char low[EMAIL_MAX + 1];
    for (size_t i = 0; i < n; i++)
        low[i] = email[i] >= 'A' && email[i] <= 'Z' ? (char)(email[i] - 'A' + 'a') : email[i];
    MDB_val k = {.mv_size = n, .mv_data = low}, v;
    int rc = mdb_get(r->txn, r->c->dbi[DB_USER_EMAIL], &k, &v);
    if (rc == MDB_NOTFOUND)
        return CATALOG_ENOTFOUND;
    if (rc != 0)
        return lmdb_fail("reading the email index", rc);
    if (v.mv_size != 8)
        return corrupt("an email index value has the wrong size");
    *id = be_get(v.mv_data, 8);
    return 0;
}

/* Walks `dbi` from `start` (NULL: the first key) calling `fn` on each entry,
 * until the end, an error, or `fn` sets *stop or returns non-zero. */
typedef int (*walk_fn)(void *arg, const MDB_val *k, const MDB_val *v, bool *stop);

static int walk(catalog_read *r, MDB_dbi dbi, MDB_val *start, walk_fn fn, void *arg)
{
    MDB_cursor *cur;
    int rc = mdb_cursor_open(r->txn, dbi, &cur);
    if (rc != 0)
        return lmdb_fail("opening a catalog cursor", rc);
    MDB_val k = start != NULL ? *start : (MDB_val){0}, v;
    MDB_cursor_op op = start != NULL ? MDB_SET_RANGE : MDB_FIRST;
    for (;;) {
        int g = mdb_cursor_get(cur, &k, &v, op);
        op = MDB_NEXT;
        if (g == MDB_NOTFOUND) {
            rc = 0;
            break;
        }
        if (g != 0) {
            rc = lmdb_fail("reading a catalog cursor", g);
            break;
        }
        bool stop = false;
        rc = fn(arg, &k, &v, &stop);
        if (rc != 0 || stop)
            break;
    }
    mdb_cursor_close(cur);
    return rc;
}

typedef struct each_ctx {
    catalog_each_cb cb;
    void *arg;
} each_ctx;

static int each_fn(void *arg, const MDB_val *k, const MDB_val *v, bool *stop)
{
    (void)stop;
    each_ctx *e = arg;
    if (k->mv_size != 8)
        return corrupt("an entity key is not 8 bytes");
    return e->cb(e->arg, be_get(k->mv_data, 8), v->mv_data, v->mv_size);
}

int catalog_each(catalog_read *r, catalog_kind kind, catalog_each_cb cb, void *arg)
{
    each_ctx e = {.cb = cb, .arg = arg};
    return walk(r, kind_dbi(r->c, kind), NULL, each_fn, &e);
}

static int row_unpack(const MDB_val *k, const MDB_val *v, uint32_t *shard,
                      catalog_showtime_row *row)
{
    if (k->mv_size != ROW_KEY || v->mv_size != ROW_VALUE)
        return corrupt("a showtime row has the wrong size");
    const uint8_t *p = v->mv_data;
    *shard = (uint32_t)be_get(k->mv_data, 4);
    row->id = le_get(p, 8);
    row->movie_id = le_get(p + 8, 8);
    row->screen_id = le_get(p + 16, 8);
    row->theater_id = le_get(p + 24, 8);
    row->start_ms = (int64_t)le_get(p + 32, 8);
    row->price_min = (uint32_t)le_get(p + 40, 4);
    row->price_max = (uint32_t)le_get(p + 44, 4);
    return 0;
}

typedef struct rows_ctx {
    uint32_t shard;
    catalog_row_cb cb;
    void *arg;
} rows_ctx;

static int rows_fn(void *arg, const MDB_val *k, const MDB_val *v, bool *stop)
{
    rows_ctx *x = arg;
    uint32_t shard;
    catalog_showtime_row row;
    int rc = row_unpack(k, v, &shard, &row);
    if (rc != 0)
        return rc;
    if (shard != x->shard) {
        *stop = true; /* past this shard's key range */
        return 0;
    }
    return x->cb(x->arg, &row);
}

int catalog_showtime_rows(catalog_read *r, uint32_t shard, catalog_row_cb cb, void *arg)
{
    uint8_t kb[ROW_KEY];
    row_key(kb, shard, 0);
    MDB_val start = {.mv_size = sizeof kb, .mv_data = kb};
    rows_ctx x = {.shard = shard, .cb = cb, .arg = arg};
    return walk(r, r->c->dbi[DB_SHOWTIME_ROWS], &start, rows_fn, &x);
}

typedef struct refs_ctx {
    catalog_kind kind;
    uint64_t id, count;
} refs_ctx;

static int refs_fn(void *arg, const MDB_val *k, const MDB_val *v, bool *stop)
{
    (void)stop;
    refs_ctx *x = arg;
    if (x->kind == CATALOG_THEATER) {
        if (v->mv_size != 8)
            return corrupt("a screen index value is not 8 bytes");
        x->count += be_get(v->mv_data, 8) == x->id;
        return 0;
    }
    uint32_t shard;
    catalog_showtime_row row;
    int rc = row_unpack(k, v, &shard, &row);
    if (rc != 0)
        return rc;
    x->count += (x->kind == CATALOG_SCREEN ? row.screen_id : row.movie_id) == x->id;
    return 0;
}

int catalog_refs_count(catalog_read *r, catalog_kind kind, uint64_t id, uint64_t *count)
{
    CATALOG_ASSERT(kind_ok((int)kind));
    *count = 0;
    /* Only theaters (by screens) and screens and movies (by showtimes) are
     * referred to within the catalog. */
    if (kind != CATALOG_THEATER && kind != CATALOG_SCREEN && kind != CATALOG_MOVIE)
        return 0;
    refs_ctx x = {.kind = kind, .id = id};
    MDB_dbi dbi =
        kind == CATALOG_THEATER ? r->c->dbi[DB_SCREEN_THEATER] : r->c->dbi[DB_SHOWTIME_ROWS];
    int rc = walk(r, dbi, NULL, refs_fn, &x);
    if (rc == 0)
        *count = x.count;
    return rc;
}
