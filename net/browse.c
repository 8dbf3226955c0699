/*
 * browse.c - each shard's in-memory copy of what GET /api/showtimes filters
 * on: its showtime rows, every theater's city and every movie's genre.
 *
 * Browsing used to walk LMDB and parse every theater's and movie's JSON for
 * each request: with 10,000 showtimes and 500 movies that was about 2.5 ms
 * of CPU per shard per browse, most of it jansson, and the steady scenario
 * spent the machine on it. The copy is rebuilt only when the catalog's
 * version (catalog_read_version) differs from the one it was built at; seat
 * counts are not in it (they come from the engine at each browse). One per
 * shard, touched by that shard's thread only.
 */
#include "net_internal.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

void net__browse_index_free(net_browse_index *ix)
{
    for (size_t i = 0; i < ix->ntheaters; i++)
        free(ix->theaters[i].key);
    for (size_t i = 0; i < ix->nmovies; i++)
        free(ix->movies[i].key);
    free(ix->theaters);
    free(ix->movies);
    free(ix->rows);
    memset(ix, 0, sizeof(*ix));
}

typedef struct entity_walk {
    const char *field; /* "city" or "genre" */
    net_browse_entity *v;
    size_t n, cap;
    int rc;
} entity_walk;

static int add_entity(void *arg, uint64_t id, const char *json, size_t len)
{
    entity_walk *w = arg;
    json_t *o = json_loadb(json, len, 0, NULL);
    const char *key = json_string_value(json_object_get(o, w->field));
    if (w->n == w->cap) {
        size_t cap = w->cap ? w->cap * 2 : 64;
        net_browse_entity *v = realloc(w->v, cap * sizeof(*v));
        if (v == NULL) {
            json_decref(o);
            w->rc = -ENOMEM;
            return 1;
        }
        w->v = v;
        w->cap = cap;
    }
    char *copy = key != NULL ? strdup(key) : NULL; /* NULL: none, matches no filter */
    json_decref(o);
    if (key != NULL && copy == NULL) {
        w->rc = -ENOMEM;
        return 1;
    }
    w->v[w->n++] = (net_browse_entity){.id = id, .key = copy};
    return 0;
}

typedef struct row_walk {
    catalog_showtime_row *v;
    size_t n, cap;
    int rc;
} row_walk;

static int add_row(void *arg, const catalog_showtime_row *row)
{
    row_walk *w = arg;
    if (w->n == w->cap) {
        size_t cap = w->cap ? w->cap * 2 : 256;
        catalog_showtime_row *v = realloc(w->v, cap * sizeof(*v));
        if (v == NULL) {
            w->rc = -ENOMEM;
            return 1;
        }
        w->v = v;
        w->cap = cap;
    }
    w->v[w->n++] = *row;
    return 0;
}

static void free_entities(net_browse_entity *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i].key);
    free(v);
}

int net__browse_index_refresh(net_shard *sh, catalog_read *rd)
{
    net_browse_index *ix = &sh->browse;
    uint64_t version = catalog_read_version(rd);
    if (ix->built && ix->version == version)
        return 0;
    entity_walk th = {.field = "city"}, mv = {.field = "genre"};
    row_walk rows = {0};
    int rc = catalog_each(rd, CATALOG_THEATER, add_entity, &th);
    if (rc == 0 && th.rc == 0)
        rc = catalog_each(rd, CATALOG_MOVIE, add_entity, &mv);
    if (rc == 0 && th.rc == 0 && mv.rc == 0)
        rc = catalog_showtime_rows(rd, sh->id, add_row, &rows);
    if (rc == 0)
        rc = th.rc != 0 ? th.rc : mv.rc != 0 ? mv.rc : rows.rc;
    if (rc != 0) {
        free_entities(th.v, th.n);
        free_entities(mv.v, mv.n);
        free(rows.v);
        return rc < 0 ? rc : -EIO;
    }
    net__browse_index_free(ix);
    ix->theaters = th.v;
    ix->ntheaters = th.n;
    ix->movies = mv.v;
    ix->nmovies = mv.n;
    ix->rows = rows.v;
    ix->nrows = rows.n;
    ix->version = version;
    ix->built = true;
    /* catalog_each walks in id order: the lookups below rely on it. */
    for (size_t i = 1; i < ix->ntheaters; i++)
        NET_ASSERT(ix->theaters[i - 1].id < ix->theaters[i].id);
    for (size_t i = 1; i < ix->nmovies; i++)
        NET_ASSERT(ix->movies[i - 1].id < ix->movies[i].id);
    return 0;
}

size_t net__browse_ids(const net_browse_entity *v, size_t n, const char *key, uint64_t **out)
{
    uint64_t *ids = NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (v[i].key == NULL || strcasecmp(v[i].key, key) != 0)
            continue;
        if ((k & (k - 1)) == 0) { /* k is 0 or a power of two: grow */
            uint64_t *grown = realloc(ids, (k ? 2 * k : 1) * sizeof(*ids));
            NET_ASSERT(grown != NULL);
            ids = grown;
        }
        ids[k++] = v[i].id;
    }
    *out = ids;
    return k;
}

bool net__browse_ids_has(const uint64_t *ids, size_t n, uint64_t id)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (ids[mid] == id)
            return true;
        if (ids[mid] < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return false;
}
