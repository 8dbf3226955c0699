/*
 * catalog_test.c - the catalog against catalog.h: validation of every kind
 * (good bodies become the documented canonical objects, bad ones are refused
 * with the field that is wrong), screen layouts as the engine sees them, the
 * change record codec, and the LMDB store (apply, indexes, idempotence,
 * persistence, shard ownership, references).
 */
#include "catalog.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

/* ---- JSON helpers ----------------------------------------------------------- */

/* Parses JSON written with single quotes (readable in C strings). */
static json_t *J(const char *text)
{
    char *s = strdup(text);
    cr_assert_not_null(s);
    for (char *p = s; *p; p++) {
        if (*p == '\'')
            *p = '"';
    }
    json_error_t err;
    json_t *v = json_loads(s, JSON_DECODE_ANY, &err);
    cr_assert_not_null(v, "bad test JSON: %s (%s)", err.text, s);
    free(s);
    return v;
}

static char *dump(const json_t *v)
{
    char *s = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS);
    cr_assert_not_null(s);
    return s;
}

/* The context of a screen with categories silver and gold, in theater 7. */
static catalog_ctx ctx2(void)
{
    catalog_ctx c;
    memset(&c, 0, sizeof c);
    c.theater_id = 7;
    c.category_count = 2;
    strcpy(c.category_names[0], "silver");
    strcpy(c.category_names[1], "gold");
    return c;
}

static json_t *valid(catalog_kind kind, uint64_t id, const json_t *body, const json_t *existing)
{
    catalog_ctx ctx = ctx2();
    catalog_problem p;
    memset(&p, 0, sizeof p);
    json_t *out = NULL;
    int rc = catalog_validate(kind, id, body, existing, kind == CATALOG_SHOWTIME ? &ctx : NULL,
                              &out, &p);
    cr_assert_eq(rc, 0, "refused: %s: %s", p.field, p.reason);
    cr_assert_not_null(out);
    return out;
}

/* Expects `body` (consumed) to be accepted. */
static void accepted(catalog_kind kind, json_t *body)
{
    json_decref(valid(kind, 1, body, NULL));
    json_decref(body);
}

/* Validates a single-quoted body and returns the canonical bytes (free()). */
static char *canon(catalog_kind kind, uint64_t id, const char *body)
{
    json_t *b = J(body);
    json_t *out = valid(kind, id, b, NULL);
    char *s = dump(out);
    json_decref(out);
    json_decref(b);
    return s;
}

/* Expects `body` (a json_t, consumed) to be refused at `field` with a reason
 * containing `part`. */
static void refused_json(catalog_kind kind, json_t *body, const json_t *existing, const char *field,
                         const char *part)
{
    catalog_ctx ctx = ctx2();
    catalog_problem p;
    memset(&p, 0, sizeof p);
    json_t *out = (json_t *)&p; /* must become NULL */
    char *text = json_dumps(body, JSON_COMPACT | JSON_ENCODE_ANY);
    int rc =
        catalog_validate(kind, 9, body, existing, kind == CATALOG_SHOWTIME ? &ctx : NULL, &out, &p);
    cr_assert_eq(rc, 1, "accepted (rc %d): %.300s", rc, text ? text : "?");
    cr_assert_null(out);
    cr_assert_str_eq(p.field, field, "field \"%s\" (%s), want \"%s\" for %.300s", p.field, p.reason,
                     field, text ? text : "?");
    cr_assert(part == NULL || strstr(p.reason, part) != NULL,
              "reason \"%s\" lacks \"%s\" for %.300s", p.reason, part, text ? text : "?");
    free(text);
    json_decref(body);
}

static void refused(catalog_kind kind, const char *body, const char *field, const char *part)
{
    refused_json(kind, J(body), NULL, field, part);
}

/* A JSON string of `n` copies of `unit`. */
static json_t *str_rep(const char *unit, size_t n)
{
    size_t u = strlen(unit);
    char *s = malloc(u * n + 1);
    cr_assert_not_null(s);
    for (size_t i = 0; i < n; i++)
        memcpy(s + i * u, unit, u);
    s[u * n] = '\0';
    json_t *v = json_string(s);
    free(s);
    cr_assert_not_null(v);
    return v;
}

/* `body` with member `key` set to `v` (consumed). */
static json_t *with(const char *body, const char *key, json_t *v)
{
    json_t *b = J(body);
    cr_assert_eq(json_object_set_new(b, key, v), 0);
    return b;
}

/* ---- Kinds, errors, codec --------------------------------------------------- */

Test(catalog, kind_names_and_error_strings_are_stable)
{
    cr_assert_str_eq(catalog_kind_name(CATALOG_THEATER), "theater");
    cr_assert_str_eq(catalog_kind_name(CATALOG_SCREEN), "screen");
    cr_assert_str_eq(catalog_kind_name(CATALOG_MOVIE), "movie");
    cr_assert_str_eq(catalog_kind_name(CATALOG_SHOWTIME), "showtime");
    cr_assert_str_eq(catalog_kind_name(CATALOG_USER), "user");
    cr_assert_null(catalog_kind_name((catalog_kind)0));
    cr_assert_null(catalog_kind_name((catalog_kind)6));
    int codes[] = {0,       CATALOG_ELMDB, CATALOG_ESHARDS, CATALOG_EDECODE, CATALOG_ENOTFOUND,
                   -ENOSPC, 12345};
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        cr_assert_not_null(catalog_strerror(codes[i]));
        cr_assert_gt(strlen(catalog_strerror(codes[i])), 0);
    }
    cr_assert_str_eq(catalog_strerror(-ENOSPC), strerror(ENOSPC));
    cr_assert_str_eq(catalog_last_error(), "");
}

Test(catalog, change_put_and_delete_round_trip_through_the_codec)
{
    const char *json = "{\"id\":77,\"name\":\"x\"}";
    catalog_change put = {
        .put = true, .kind = CATALOG_MOVIE, .id = 77, .json = json, .json_len = strlen(json)};
    uint8_t buf[128];
    int n = catalog_change_encode(&put, buf, sizeof buf);
    cr_assert_eq(n, 9 + (int)strlen(json));
    cr_assert_eq(buf[0], CATALOG_MOVIE);
    cr_assert_eq(buf[1], 77); /* id little-endian */
    cr_assert_eq(buf[8], 0);
    cr_assert_eq(memcmp(buf + 9, json, strlen(json)), 0);
    catalog_change d;
    cr_assert_eq(catalog_change_decode(CATALOG_REC_PUT, buf, (size_t)n, &d), 0);
    cr_assert(d.put);
    cr_assert_eq(d.kind, CATALOG_MOVIE);
    cr_assert_eq(d.id, 77);
    cr_assert_eq(d.json_len, strlen(json));
    cr_assert_eq((const uint8_t *)d.json, buf + 9, "json borrows the payload");

    catalog_change del = {.put = false, .kind = CATALOG_USER, .id = UINT64_C(0x0102030405060708)};
    n = catalog_change_encode(&del, buf, sizeof buf);
    cr_assert_eq(n, 9);
    cr_assert_eq(buf[1], 0x08);
    cr_assert_eq(buf[8], 0x01);
    cr_assert_eq(catalog_change_decode(CATALOG_REC_DELETE, buf, 9, &d), 0);
    cr_assert_not(d.put);
    cr_assert_eq(d.kind, CATALOG_USER);
    cr_assert_eq(d.id, UINT64_C(0x0102030405060708));
}

Test(catalog, change_encode_wants_room_for_the_whole_payload)
{
    const char *json = "{\"id\":5}";
    catalog_change put = {
        .put = true, .kind = CATALOG_THEATER, .id = 5, .json = json, .json_len = 8};
    uint8_t buf[17];
    cr_assert_eq(catalog_change_encode(&put, buf, 16), -ENOSPC);
    cr_assert_eq(catalog_change_encode(&put, buf, 17), 17);
    catalog_change del = {.put = false, .kind = CATALOG_THEATER, .id = 5};
    cr_assert_eq(catalog_change_encode(&del, buf, 8), -ENOSPC);
}

static void bad_decode(uint16_t type, const void *p, size_t len, const char *why)
{
    catalog_change d;
    memset(&d, 0xAB, sizeof d);
    catalog_change before = d;
    cr_assert_eq(catalog_change_decode(type, p, len, &d), CATALOG_EDECODE, "accepted: %s", why);
    cr_assert_eq(memcmp(&d, &before, sizeof d), 0, "output touched: %s", why);
}

/* A put payload of kind/id with `json`. */
static size_t payload(uint8_t *buf, uint8_t kind, uint64_t id, const char *json)
{
    buf[0] = kind;
    for (int i = 0; i < 8; i++)
        buf[1 + i] = (uint8_t)(id >> (8 * i));
    memcpy(buf + 9, json, strlen(json));
    return 9 + strlen(json);
}

Test(catalog, change_decode_refuses_truncated_and_garbage_payloads)
{
    uint8_t buf[256];
    size_t n = payload(buf, CATALOG_THEATER, 5, "{\"id\":5,\"name\":\"a\"}");
    catalog_change d;
    cr_assert_eq(catalog_change_decode(CATALOG_REC_PUT, buf, n, &d), 0);

    bad_decode(1, buf, n, "an engine record type");
    bad_decode(102, buf, n, "an unknown catalog type");
    for (size_t cut = 0; cut < n; cut++)
        bad_decode(CATALOG_REC_PUT, buf, cut, "truncated put");
    bad_decode(CATALOG_REC_DELETE, buf, 8, "truncated delete");
    bad_decode(CATALOG_REC_DELETE, buf, 10, "delete with trailing bytes");
    bad_decode(CATALOG_REC_PUT, NULL, 0, "no payload");

    n = payload(buf, 0, 5, "{\"id\":5}");
    bad_decode(CATALOG_REC_PUT, buf, n, "kind 0");
    n = payload(buf, 6, 5, "{\"id\":5}");
    bad_decode(CATALOG_REC_PUT, buf, n, "kind 6");
    n = payload(buf, CATALOG_MOVIE, 0, "{\"id\":0}");
    bad_decode(CATALOG_REC_PUT, buf, n, "id 0");
    bad_decode(CATALOG_REC_DELETE, buf, 9, "delete of id 0");
    n = payload(buf, CATALOG_MOVIE, UINT64_MAX, "{\"id\":1}");
    bad_decode(CATALOG_REC_DELETE, buf, 9, "id beyond JSON integers");
    n = payload(buf, CATALOG_MOVIE, 5, "[5]");
    bad_decode(CATALOG_REC_PUT, buf, n, "JSON array");
    n = payload(buf, CATALOG_MOVIE, 5, "{\"id\":6}");
    bad_decode(CATALOG_REC_PUT, buf, n, "id differs from the record's");
    n = payload(buf, CATALOG_MOVIE, 5, "{\"name\":\"x\"}");
    bad_decode(CATALOG_REC_PUT, buf, n, "no id");
    n = payload(buf, CATALOG_MOVIE, 5, "{\"id\":5,\"id\":5}");
    bad_decode(CATALOG_REC_PUT, buf, n, "duplicate keys");
    n = payload(buf, CATALOG_MOVIE, 5, "{\"id\":5} x");
    bad_decode(CATALOG_REC_PUT, buf, n, "trailing garbage");
    n = payload(buf, CATALOG_MOVIE, 5, "{\"id\":5,\"t\":\"\xff\"}");
    bad_decode(CATALOG_REC_PUT, buf, n, "invalid UTF-8");

    /* Random bytes: never accepted as a put (not JSON), never a crash. */
    uint64_t x = 88172645463325252u;
    for (int round = 0; round < 2000; round++) {
        size_t len = 9 + (size_t)(round % 64);
        for (size_t i = 0; i < len; i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            buf[i] = (uint8_t)x;
        }
        if (buf[9] == '{')
            buf[9] = '[';
        bad_decode(CATALOG_REC_PUT, buf, len, "random bytes");
    }
}

Test(catalog, showtime_shard_is_xxh3_of_the_little_endian_id_modulo_shards)
{
    uint32_t seen[5] = {0};
    for (uint64_t id = 1; id <= 1000; id++) {
        uint8_t le[8];
        for (int i = 0; i < 8; i++)
            le[i] = (uint8_t)(id >> (8 * i));
        uint32_t want = (uint32_t)(XXH3_64bits(le, 8) % 5);
        cr_assert_eq(catalog_showtime_shard(id, 5), want);
        cr_assert_eq(catalog_showtime_shard(id, 1), 0);
        seen[want]++;
    }
    for (int s = 0; s < 5; s++)
        cr_assert_gt(seen[s], 150, "shard %d owns only %u of 1000", s, seen[s]);
}

/* ---- Validation: theaters and common rules ----------------------------------- */

Test(catalog, theater_becomes_canonical_with_id_and_defaults)
{
    char *s = canon(CATALOG_THEATER, 1, "{'name':'Regal','city':'Pune'}");
    cr_assert_str_eq(s, "{\"address\":\"\",\"city\":\"Pune\",\"id\":1,\"name\":\"Regal\"}");
    free(s);
    s = canon(CATALOG_THEATER, 2, "{'city':'Pune','address':'MG Road 1','name':'Régal ☃'}");
    cr_assert_str_eq(s, "{\"address\":\"MG Road 1\",\"city\":\"Pune\",\"id\":2,\"name\":\"Régal "
                        "☃\"}");
    free(s);
}

Test(catalog, canonical_bytes_do_not_depend_on_key_order)
{
    char *a = canon(CATALOG_MOVIE, 3,
                    "{'title':'T','duration_min':90,'genre':'g','language':'l','rating':'U'}");
    char *b = canon(CATALOG_MOVIE, 3,
                    "{'rating':'U','language':'l','genre':'g','duration_min':90,'title':'T'}");
    cr_assert_str_eq(a, b);
    free(a);
    free(b);
}

Test(catalog, text_fields_refuse_missing_wrong_type_empty_long_and_control_characters)
{
    refused(CATALOG_THEATER, "{'city':'Pune'}", "name", "is required");
    refused(CATALOG_THEATER, "{'name':'Regal'}", "city", "is required");
    refused(CATALOG_THEATER, "{'name':5,'city':'Pune'}", "name", "must be a string");
    refused(CATALOG_THEATER, "{'name':null,'city':'Pune'}", "name", "must be a string");
    refused(CATALOG_THEATER, "{'name':['x'],'city':'Pune'}", "name", "must be a string");
    refused(CATALOG_THEATER, "{'name':'','city':'Pune'}", "name", "must not be empty");
    refused(CATALOG_THEATER, "{'name':'   ','city':'Pune'}", "name", "must not be empty");
    refused(CATALOG_THEATER, "{'name':'a\\nb','city':'Pune'}", "name", "control characters");
    refused(CATALOG_THEATER, "{'name':'a\\tb','city':'Pune'}", "name", "control characters");
    refused(CATALOG_THEATER, "{'name':'a\\u007fb','city':'Pune'}", "name", "control characters");
    refused(CATALOG_THEATER, "{'name':'a\\u0085b','city':'Pune'}", "name", "control characters");
    refused_json(CATALOG_THEATER, with("{'name':'R'}", "city", json_stringn("a\0b", 3)), NULL,
                 "city", "control characters");

    /* Lengths are bytes of UTF-8: 200 fit, 201 do not, also in two-byte characters. */
    accepted(CATALOG_THEATER, with("{'city':'P'}", "name", str_rep("x", 200)));
    accepted(CATALOG_THEATER, with("{'city':'P'}", "name", str_rep("é", 100)));
    refused_json(CATALOG_THEATER, with("{'city':'P'}", "name", str_rep("x", 201)), NULL, "name",
                 "1 to 200 bytes");
    refused_json(CATALOG_THEATER, with("{'city':'P'}", "name", str_rep("é", 101)), NULL, "name",
                 "1 to 200 bytes");
    refused_json(CATALOG_THEATER, with("{'name':'R'}", "city", str_rep("c", 101)), NULL, "city",
                 "1 to 100 bytes");
    refused_json(CATALOG_THEATER, with("{'name':'R','city':'P'}", "address", str_rep("a", 501)),
                 NULL, "address", "at most 500 bytes");

    /* A string built without jansson's UTF-8 check is still refused. */
    refused_json(CATALOG_THEATER,
                 with("{'name':'R'}", "city", json_stringn_nocheck("a\xc0\xaf", 3)), NULL, "city",
                 "UTF-8");
    refused_json(CATALOG_THEATER,
                 with("{'name':'R'}", "city", json_stringn_nocheck("\xed\xa0\x80", 3)), NULL,
                 "city", "UTF-8");
}

Test(catalog, bodies_refuse_unknown_and_server_owned_fields)
{
    refused(CATALOG_THEATER, "[]", "", "JSON object");
    refused(CATALOG_THEATER, "'x'", "", "JSON object");
    refused(CATALOG_THEATER, "{'name':'R','city':'P','colour':'red'}", "colour",
            "not a field of a theater");
    /* Several unknown fields: the first in byte order, whatever the body's order. */
    refused(CATALOG_THEATER, "{'zeta':1,'name':'R','city':'P','beta':2}", "beta", NULL);
    refused(CATALOG_THEATER, "{'id':4,'name':'R','city':'P'}", "id", "assigned by the server");
    refused(CATALOG_SHOWTIME,
            "{'movie_id':1,'screen_id':2,'start_time':'2026-11-21T18:30:00Z','prices':{'silver':"
            "1,'gold':2},'start_ms':5}",
            "start_ms", "computed from start_time");
    refused(CATALOG_SHOWTIME,
            "{'movie_id':1,'screen_id':2,'start_time':'2026-11-21T18:30:00Z','prices':{'silver':"
            "1,'gold':2},'theater_id':5}",
            "theater_id", "taken from the screen");
    /* Fields of other kinds are unknown here. */
    refused(CATALOG_USER,
            "{'email':'a@b.c','name':'A','password_hash':'h','created_at':'2026-01-01T00:00:00Z',"
            "'city':'P'}",
            "city", "not a field of a user");
}

Test(catalog, problem_strings_are_cut_on_a_character_boundary)
{
    /* An unknown key longer than the field buffer, made of 3-byte characters. */
    json_t *key = str_rep("☃", 100);
    json_t *b = J("{'name':'R','city':'P'}");
    cr_assert_eq(json_object_set_new(b, json_string_value(key), json_integer(1)), 0);
    json_decref(key);
    catalog_problem p;
    json_t *out;
    cr_assert_eq(catalog_validate(CATALOG_THEATER, 1, b, NULL, NULL, &out, &p), 1);
    size_t n = strlen(p.field);
    cr_assert_lt(n, sizeof p.field);
    cr_assert_eq(n % 3, 0, "cut inside a character: %zu bytes", n);
    json_t *s = json_string(p.field); /* NULL if not valid UTF-8 */
    cr_assert_not_null(s);
    json_decref(s);
    json_decref(b);
}

/* ---- Movies --------------------------------------------------------------------- */

#define MOVIE "{'title':'Dune','duration_min':166,'genre':'Sci-fi','language':'English'}"

Test(catalog, movie_accepts_all_fields_and_defaults_the_optional_ones)
{
    char *s = canon(CATALOG_MOVIE, 10, MOVIE);
    cr_assert_str_eq(s, "{\"description\":\"\",\"duration_min\":166,\"genre\":\"Sci-fi\",\"id\":10,"
                        "\"language\":\"English\",\"poster_url\":\"\",\"rating\":\"\",\"title\":"
                        "\"Dune\"}");
    free(s);
    s = canon(CATALOG_MOVIE, 11,
              "{'title':'Dune','duration_min':1,'genre':'Sci-fi','language':'English',"
              "'description':'Spice.','rating':'UA 13+','poster_url':'https://img.example/d.jpg'}");
    cr_assert(strstr(s, "\"poster_url\":\"https://img.example/d.jpg\"") != NULL);
    cr_assert(strstr(s, "\"rating\":\"UA 13+\"") != NULL);
    free(s);
    free(canon(CATALOG_MOVIE, 12,
               "{'title':'D','duration_min':1000,'genre':'g','language':'l','poster_url':'http://"
               "x'}"));
}

Test(catalog, movie_refuses_bad_duration_rating_poster_and_description)
{
    const char *base = "{'title':'D','genre':'g','language':'l'}";
    refused(CATALOG_MOVIE, base, "duration_min", "is required");
    refused_json(CATALOG_MOVIE, with(base, "duration_min", json_integer(0)), NULL, "duration_min",
                 "integer from 1 to 1000");
    refused_json(CATALOG_MOVIE, with(base, "duration_min", json_integer(1001)), NULL,
                 "duration_min", "integer from 1 to 1000");
    refused_json(CATALOG_MOVIE, with(base, "duration_min", json_real(90.0)), NULL, "duration_min",
                 "integer");
    refused_json(CATALOG_MOVIE, with(base, "duration_min", json_string("90")), NULL, "duration_min",
                 "integer");
    refused_json(CATALOG_MOVIE, with(base, "duration_min", json_true()), NULL, "duration_min",
                 "integer");
    refused(CATALOG_MOVIE, "{'title':'D','duration_min':9,'language':'l'}", "genre", "is required");
    refused_json(CATALOG_MOVIE, with(MOVIE, "rating", str_rep("R", 21)), NULL, "rating",
                 "at most 20 bytes");
    refused_json(CATALOG_MOVIE, with(MOVIE, "description", str_rep("d", 4001)), NULL, "description",
                 "at most 4000 bytes");
    refused_json(CATALOG_MOVIE, with(MOVIE, "language", str_rep("l", 51)), NULL, "language",
                 "1 to 50 bytes");
    const char *bad_urls[] = {"ftp://x/y",  "https://",  "http://",
                              "https:///x", "www.x.com", "javascript:alert(1)",
                              "https://a b"};
    for (size_t i = 0; i < sizeof bad_urls / sizeof bad_urls[0]; i++)
        refused_json(CATALOG_MOVIE, with(MOVIE, "poster_url", json_string(bad_urls[i])), NULL,
                     "poster_url", NULL);
    accepted(CATALOG_MOVIE, with(MOVIE, "poster_url", json_string("")));
    char big[2002];
    memset(big, 'a', sizeof big - 1);
    memcpy(big, "https://", 8);
    big[2001] = '\0';
    refused_json(CATALOG_MOVIE, with(MOVIE, "poster_url", json_string(big)), NULL, "poster_url",
                 "at most 2000 bytes");
    big[2000] = '\0';
    accepted(CATALOG_MOVIE, with(MOVIE, "poster_url", json_string(big)));
}

/* ---- Screens and layouts ----------------------------------------------------------- */

/* Row A: 6 silver seats, aisles after 2 and 4, 1 accessible, 2 companion, 6
 * blocked; row B: 3 gold seats. */
#define LAYOUT_AB                                                                       \
    "{'categories':['silver','gold'],'rows':["                                          \
    "{'label':'A','category':'silver','seats':6,'aisles_after':[2,4],'accessible':[1]," \
    "'companion':[2],'blocked':[6]},"                                                   \
    "{'label':'B','category':'gold','seats':3}]}"

static json_t *screen_body(const char *layout)
{
    json_t *b = J("{'theater_id':7,'name':'Screen 1'}");
    cr_assert_eq(json_object_set_new(b, "layout", J(layout)), 0);
    return b;
}

static void layout_refused(const char *layout, const char *field, const char *part)
{
    refused_json(CATALOG_SCREEN, screen_body(layout), NULL, field, part);
}

Test(catalog, screen_layout_becomes_canonical_with_sorted_lists_and_a_best_row)
{
    json_t *b = screen_body("{'categories':['silver','gold'],'rows':["
                            "{'label':'A','category':'silver','seats':6,'aisles_after':[2,4],"
                            "'accessible':[3,1],'blocked':[6]},"
                            "{'label':'B','category':'gold','seats':3}]}");
    json_t *out = valid(CATALOG_SCREEN, 3, b, NULL);
    char *s = dump(out);
    cr_assert_str_eq(
        s, "{\"id\":3,\"layout\":{\"best_row\":\"B\",\"categories\":[\"silver\",\"gold\"],"
           "\"rows\":[{\"accessible\":[1,3],\"aisles_after\":[2,4],\"blocked\":[6],\"category\":"
           "\"silver\",\"companion\":[],\"label\":\"A\",\"seats\":6},{\"accessible\":[],"
           "\"aisles_after\":[],\"blocked\":[],\"category\":\"gold\",\"companion\":[],\"label\":"
           "\"B\",\"seats\":3}]},\"name\":\"Screen 1\",\"theater_id\":7}");
    free(s);
    json_decref(out);
    json_decref(b);
}

Test(catalog, screen_refuses_bad_theater_id_and_name)
{
    refused_json(CATALOG_SCREEN,
                 with("{'name':'S','layout':" LAYOUT_AB "}", "theater_id", json_integer(0)), NULL,
                 "theater_id", "positive integer");
    refused_json(CATALOG_SCREEN,
                 with("{'name':'S','layout':" LAYOUT_AB "}", "theater_id", json_integer(-3)), NULL,
                 "theater_id", "positive integer");
    refused_json(CATALOG_SCREEN,
                 with("{'name':'S','layout':" LAYOUT_AB "}", "theater_id", json_string("7")), NULL,
                 "theater_id", "positive integer");
    refused(CATALOG_SCREEN, "{'name':'S','layout':" LAYOUT_AB "}", "theater_id", "is required");
    refused(CATALOG_SCREEN, "{'theater_id':7,'layout':" LAYOUT_AB "}", "name", "is required");
    refused(CATALOG_SCREEN, "{'theater_id':7,'name':'S'}", "layout", "is required");
}

#define ROW1 "{'label':'A','category':'a','seats':10}"

Test(catalog, layout_refuses_bad_categories)
{
    layout_refused("[]", "layout", "must be an object");
    layout_refused("{'categories':['a'],'rows':[" ROW1 "],'shape':'oval'}", "layout.shape",
                   "not a field of a layout");
    layout_refused("{'rows':[" ROW1 "]}", "layout.categories", "is required");
    layout_refused("{'categories':[],'rows':[" ROW1 "]}", "layout.categories", "1 to 8");
    layout_refused("{'categories':'a','rows':[" ROW1 "]}", "layout.categories", "1 to 8");
    layout_refused("{'categories':['a','b','c','d','e','f','g','h','i'],'rows':[" ROW1 "]}",
                   "layout.categories", "1 to 8");
    layout_refused("{'categories':['a',2],'rows':[" ROW1 "]}", "layout.categories[1]",
                   "must be a string");
    layout_refused("{'categories':['a','b','a'],'rows':[" ROW1 "]}", "layout.categories[2]",
                   "repeats category");
    layout_refused("{'categories':['a',''],'rows':[" ROW1 "]}", "layout.categories[1]",
                   "1 to 23 printable ASCII");
    layout_refused("{'categories':['a','abcdefghijklmnopqrstuvwx'],'rows':[" ROW1 "]}",
                   "layout.categories[1]", "1 to 23 printable ASCII");
    layout_refused("{'categories':['a','dé'],'rows':[" ROW1 "]}", "layout.categories[1]",
                   "printable ASCII");
    layout_refused("{'categories':['a',' b'],'rows':[" ROW1 "]}", "layout.categories[1]", "space");
    /* 23 bytes and inner spaces are fine. */
    accepted(CATALOG_SCREEN,
             screen_body("{'categories':['abcdefghijklmnopqrstuvw','Gold Plus'],"
                         "'rows':[{'label':'A','category':'Gold Plus','seats':2}]}"));
}

Test(catalog, layout_refuses_bad_rows)
{
    const char *h = "{'categories':['a','b'],'rows':";
    char l[512];
#define ROWS(rows) (snprintf(l, sizeof l, "%s%s}", h, rows), l)
    layout_refused("{'categories':['a']}", "layout.rows", "is required");
    layout_refused(ROWS("[]"), "layout.rows", "1 to 2048 rows");
    layout_refused(ROWS("{}"), "layout.rows", "1 to 2048 rows");
    layout_refused(ROWS("[" ROW1 ",5]"), "layout.rows[1]", "must be an object");
    layout_refused(ROWS("[{'label':'A','category':'a','seats':1,'color':1}]"),
                   "layout.rows[0].color", "not a field of a row");
    layout_refused(ROWS("[{'category':'a','seats':1}]"), "layout.rows[0].label", "is required");
    layout_refused(ROWS("[{'label':'','category':'a','seats':1}]"), "layout.rows[0].label",
                   "1 to 7 letters or digits");
    layout_refused(ROWS("[{'label':'ABCDEFGH','category':'a','seats':1}]"), "layout.rows[0].label",
                   "1 to 7 letters or digits");
    layout_refused(ROWS("[{'label':'A-1','category':'a','seats':1}]"), "layout.rows[0].label",
                   "letters or digits");
    layout_refused(ROWS("[{'label':'A 1','category':'a','seats':1}]"), "layout.rows[0].label",
                   "letters or digits");
    layout_refused(ROWS("[{'label':1,'category':'a','seats':1}]"), "layout.rows[0].label",
                   "must be a string");
    layout_refused(ROWS("[" ROW1 ",{'label':'B','seats':1}]"), "layout.rows[1].category",
                   "is required");
    layout_refused(ROWS("[" ROW1 ",{'label':'B','category':'c','seats':1}]"),
                   "layout.rows[1].category", "one of the layout's categories");
    layout_refused(ROWS("[" ROW1 ",{'label':'B','category':0,'seats':1}]"),
                   "layout.rows[1].category", "one of the layout's categories");
    layout_refused(ROWS("[{'label':'A','category':'a'}]"), "layout.rows[0].seats", "is required");
    const char *bad_seats[] = {"0", "1001", "-1", "10.0", "'10'", "null"};
    for (size_t i = 0; i < sizeof bad_seats / sizeof bad_seats[0]; i++) {
        char r[256];
        snprintf(r, sizeof r,
                 "[{'label':'A','category':'a','seats':1},{'label':'B','category':'a','seats':1},"
                 "{'label':'C','category':'b','seats':1},{'label':'D','category':'b','seats':%s}]",
                 bad_seats[i]);
        layout_refused(ROWS(r), "layout.rows[3].seats", "must be an integer from 1 to 1000");
    }
    /* Labels are case-sensitive and digits are fine. */
    accepted(CATALOG_SCREEN, screen_body("{'categories':['a'],'rows':[{'label':'a','category':'a',"
                                         "'seats':1000},{'label':'A','category':'a','seats':1},"
                                         "{'label':'Row12','category':'a','seats':1}]}"));
#undef ROWS
}

Test(catalog, layout_refuses_bad_aisles_and_seat_lists)
{
    char l[512];
#define ROW(extra)                                                                               \
    (snprintf(l, sizeof l,                                                                       \
              "{'categories':['a'],'rows':[{'label':'A','category':'a','seats':20%s}]}", extra), \
     l)
    layout_refused(ROW(",'aisles_after':4"), "layout.rows[0].aisles_after", "array");
    layout_refused(ROW(",'aisles_after':[0]"), "layout.rows[0].aisles_after[0]", "1 to 19");
    layout_refused(ROW(",'aisles_after':[4,20]"), "layout.rows[0].aisles_after[1]", "1 to 19");
    layout_refused(ROW(",'aisles_after':[4,'5']"), "layout.rows[0].aisles_after[1]", "1 to 19");
    layout_refused(ROW(",'aisles_after':[4,4]"), "layout.rows[0].aisles_after[1]",
                   "increasing order");
    layout_refused(ROW(",'aisles_after':[6,3]"), "layout.rows[0].aisles_after[1]",
                   "increasing order");
    layout_refused("{'categories':['a'],'rows':[{'label':'A','category':'a','seats':1,'aisles_"
                   "after':[1]}]}",
                   "layout.rows[0].aisles_after[0]", "no room for an aisle");
    layout_refused(ROW(",'accessible':{}"), "layout.rows[0].accessible", "array of seat numbers");
    layout_refused(ROW(",'accessible':[21]"), "layout.rows[0].accessible[0]", "from 1 to 20");
    layout_refused(ROW(",'accessible':[0]"), "layout.rows[0].accessible[0]", "from 1 to 20");
    layout_refused(ROW(",'companion':[2,'3']"), "layout.rows[0].companion[1]", "from 1 to 20");
    layout_refused(ROW(",'blocked':[5,2,5]"), "layout.rows[0].blocked[2]",
                   "lists seat 5 a second time");
    layout_refused(ROW(",'accessible':[1],'companion':[2,1]"), "layout.rows[0].companion[1]",
                   "already listed in accessible");
    layout_refused(ROW(",'companion':[7],'blocked':[7]"), "layout.rows[0].blocked[0]",
                   "already listed in companion");
    layout_refused(ROW(",'accessible':[20],'blocked':[20]"), "layout.rows[0].blocked[0]",
                   "already listed in accessible");
    accepted(CATALOG_SCREEN, screen_body(ROW(",'aisles_after':[1,19],'accessible':[20],"
                                             "'companion':[19],'blocked':[1]")));
#undef ROW
}

Test(catalog, layout_refuses_label_clashes_best_row_and_size_limits)
{
    layout_refused("{'categories':['a'],'rows':[" ROW1 ",{'label':'B','category':'a','seats':1},"
                   "{'label':'A','category':'a','seats':2}]}",
                   "layout.rows[2].label", "repeats the label of rows[0]");
    /* Row "A" seat 11 and row "A1" seat 1 would both be "A11". */
    layout_refused("{'categories':['a'],'rows':[{'label':'A','category':'a','seats':11},"
                   "{'label':'A1','category':'a','seats':1}]}",
                   "layout.rows[1].label", "\"A11\"");
    layout_refused("{'categories':['a'],'best_row':'Z','rows':[" ROW1 "]}", "layout.best_row",
                   "label of one of the rows");
    layout_refused("{'categories':['a'],'best_row':0,'rows':[" ROW1 "]}", "layout.best_row",
                   "label of one of the rows");

    /* 2,049 rows, and 101 rows of 1,000 seats. */
    json_t *rows = json_array();
    for (int r = 0; r < 2049; r++) {
        char row[96];
        snprintf(row, sizeof row, "{'label':'R%d','category':'a','seats':1}", r);
        json_array_append_new(rows, J(row));
    }
    json_t *layout = J("{'categories':['a']}");
    json_object_set_new(layout, "rows", rows);
    json_t *b = J("{'theater_id':7,'name':'S'}");
    json_object_set(b, "layout", layout);
    refused_json(CATALOG_SCREEN, json_deep_copy(b), NULL, "layout.rows", "1 to 2048 rows");
    cr_assert_eq(json_array_remove(rows, 2048), 0);
    json_decref(valid(CATALOG_SCREEN, 1, b, NULL)); /* 2,048 rows are fine */
    json_array_clear(rows);
    for (int r = 0; r < 101; r++) {
        char row[96];
        snprintf(row, sizeof row, "{'label':'R%dX','category':'a','seats':1000}", r);
        json_array_append_new(rows, J(row));
    }
    refused_json(CATALOG_SCREEN, json_deep_copy(b), NULL, "layout.rows", "101000 seats");
    cr_assert_eq(json_array_remove(rows, 100), 0);
    json_t *ok = valid(CATALOG_SCREEN, 1, b, NULL); /* exactly 100,000 */
    catalog_layout cl;
    catalog_problem p;
    cr_assert_eq(catalog_layout_build(json_object_get(ok, "layout"), &cl, &p), 0);
    cr_assert_eq(cl.spec.seat_count, 100000);
    cr_assert_eq(cl.spec.best_row, 66); /* 100 * 2 / 3 */
    cr_assert_str_eq(cl.seats[99999].label, "R99X1000");
    catalog_layout_free(&cl);
    json_decref(ok);
    json_decref(layout);
    json_decref(b);
}

Test(catalog, layout_build_gives_the_engine_seats_columns_flags_and_labels)
{
    json_t *b = screen_body(LAYOUT_AB);
    json_t *screen = valid(CATALOG_SCREEN, 3, b, NULL);
    catalog_layout l;
    catalog_problem p;
    cr_assert_eq(catalog_layout_build(json_object_get(screen, "layout"), &l, &p), 0, "%s: %s",
                 p.field, p.reason);
    cr_assert_eq(l.spec.seat_count, 9);
    cr_assert_eq(l.spec.row_count, 2);
    cr_assert_eq(l.spec.category_count, 2);
    cr_assert_str_eq(l.spec.category_names[0], "silver");
    cr_assert_str_eq(l.spec.category_names[1], "gold");
    cr_assert_str_eq(l.spec.row_labels[0], "A");
    cr_assert_str_eq(l.spec.row_labels[1], "B");
    cr_assert_eq(l.spec.best_row, 1); /* 2 rows * 2 / 3 */
    cr_assert_eq(l.spec.seats, l.seats);
    static const struct {
        const char *label;
        uint16_t row, col;
        uint8_t cat, flags;
    } want[9] = {
        {"A1", 0, 1, 0, ENGINE_SEAT_FLAG_ACCESSIBLE},
        {"A2", 0, 2, 0, ENGINE_SEAT_FLAG_COMPANION},
        {"A3", 0, 4, 0, 0}, /* an aisle after seat 2: column 3 is empty */
        {"A4", 0, 5, 0, 0},
        {"A5", 0, 7, 0, 0}, /* and after seat 4 */
        {"A6", 0, 8, 0, ENGINE_SEAT_FLAG_BLOCKED},
        {"B1", 1, 1, 1, 0},
        {"B2", 1, 2, 1, 0},
        {"B3", 1, 3, 1, 0},
    };
    for (int i = 0; i < 9; i++) {
        cr_assert_str_eq(l.seats[i].label, want[i].label);
        cr_assert_eq(l.seats[i].row, want[i].row, "seat %s", want[i].label);
        cr_assert_eq(l.seats[i].col, want[i].col, "seat %s", want[i].label);
        cr_assert_eq(l.seats[i].category, want[i].cat, "seat %s", want[i].label);
        cr_assert_eq(l.seats[i].flags, want[i].flags, "seat %s", want[i].label);
    }

    /* The engine takes it, and the aisles break adjacency. */
    engine_config cfg;
    engine_config_default(&cfg);
    engine *e;
    cr_assert_eq(engine_create(&cfg, &e), 0);
    engine_record rec;
    engine_problem ep;
    cr_assert_eq(engine_layout_create(e, 1000, 3, &l.spec, &ep, &rec), 0);
    cr_assert_eq(engine_layout_seat_count(e, 3), 9);
    cr_assert_eq(engine_layout_seat_find(e, 3, "A5"), 4);
    cr_assert_eq(engine_layout_seat(e, 3, 4)->col, 7);
    catalog_ctx ctx;
    cr_assert_eq(catalog_layout_categories(screen, &ctx), 0);
    cr_assert_eq(ctx.theater_id, 7);
    cr_assert_eq(ctx.category_count, 2);
    uint32_t prices[2] = {1000, 2000};
    cr_assert_eq(engine_showtime_create(e, 1000, 50, 3, 999999999, prices, 2, &rec), 0);
    /* Silver row A: A1-A2 are accessible/companion, A3-A4 a pair, A5 alone, A6 blocked. */
    cr_assert_eq(engine_hold_best(e, 1000, 50, 1, 3, 0, 0, &rec), ENGINE_NOT_AVAILABLE);
    cr_assert_eq(engine_hold_best(e, 1000, 50, 1, 2, 0, 0, &rec), ENGINE_OK);
    cr_assert_eq(rec.u.hold_place.seats[0], 2);
    cr_assert_eq(rec.u.hold_place.seats[1], 3);
    engine_destroy(e);
    catalog_layout_free(&l);
    catalog_layout_free(&l); /* freeing twice is harmless: the struct is zeroed */
    json_decref(screen);
    json_decref(b);
}

Test(catalog, layout_best_row_defaults_to_two_thirds_back)
{
    static const struct {
        int rows;
        const char *best;
    } cases[] = {{1, "R0"}, {2, "R1"}, {3, "R2"}, {4, "R2"}, {10, "R6"}, {30, "R20"}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        json_t *rows = json_array();
        for (int r = 0; r < cases[c].rows; r++) {
            char row[96];
            snprintf(row, sizeof row, "{'label':'R%d','category':'a','seats':4}", r);
            json_array_append_new(rows, J(row));
        }
        json_t *layout = J("{'categories':['a']}");
        json_object_set_new(layout, "rows", rows);
        json_t *b = J("{'theater_id':7,'name':'S'}");
        json_object_set_new(b, "layout", layout);
        json_t *out = valid(CATALOG_SCREEN, 1, b, NULL);
        cr_assert_str_eq(
            json_string_value(json_object_get(json_object_get(out, "layout"), "best_row")),
            cases[c].best, "%d rows", cases[c].rows);
        json_decref(out);
        /* An explicit best row wins. */
        json_object_set_new(layout, "best_row", json_string("R0"));
        out = valid(CATALOG_SCREEN, 1, b, NULL);
        catalog_layout l;
        catalog_problem p;
        cr_assert_eq(catalog_layout_build(json_object_get(out, "layout"), &l, &p), 0);
        cr_assert_eq(l.spec.best_row, 0);
        catalog_layout_free(&l);
        json_decref(out);
        json_decref(b);
    }
}

Test(catalog, layout_build_refuses_a_bad_layout_and_leaves_nothing)
{
    json_t *layout = J("{'categories':['a'],'rows':[{'label':'A','category':'b','seats':3}]}");
    catalog_layout l;
    memset(&l, 0x5A, sizeof l);
    catalog_problem p;
    cr_assert_eq(catalog_layout_build(layout, &l, &p), 1);
    cr_assert_str_eq(p.field, "layout.rows[0].category");
    cr_assert_null(l.seats);
    cr_assert_null(l.row_labels);
    cr_assert_eq(l.spec.seat_count, 0);
    catalog_layout_free(&l);
    json_decref(layout);
}

Test(catalog, categories_and_prices_read_back_from_canonical_objects)
{
    json_t *b = screen_body(LAYOUT_AB);
    json_t *screen = valid(CATALOG_SCREEN, 3, b, NULL);
    catalog_ctx ctx;
    cr_assert_eq(catalog_layout_categories(screen, &ctx), 0);
    cr_assert_str_eq(ctx.category_names[0], "silver");
    cr_assert_str_eq(ctx.category_names[1], "gold");
    json_t *sb = J("{'movie_id':1,'screen_id':3,'start_time':'2026-11-21T18:30:00Z',"
                   "'prices':{'gold':2500,'silver':1000}}");
    json_t *st = valid(CATALOG_SHOWTIME, 4, sb, NULL);
    uint32_t prices[ENGINE_CATEGORIES_MAX];
    cr_assert_eq(catalog_showtime_prices(st, &ctx, prices), 0);
    cr_assert_eq(prices[0], 1000);
    cr_assert_eq(prices[1], 2500);
    /* A screen whose categories changed no longer fits the showtime. */
    catalog_ctx other = ctx;
    strcpy(other.category_names[1], "platinum");
    cr_assert_eq(catalog_showtime_prices(st, &other, prices), -EINVAL);
    other.category_count = 1;
    cr_assert_eq(catalog_showtime_prices(st, &other, prices), -EINVAL);
    json_t *notscreen = J("{'theater_id':7}");
    cr_assert_eq(catalog_layout_categories(notscreen, &ctx), -EINVAL);
    json_decref(notscreen);
    json_decref(st);
    json_decref(sb);
    json_decref(screen);
    json_decref(b);
}

/* ---- Showtimes ---------------------------------------------------------------------- */

static json_t *showtime_with_start(const char *start)
{
    json_t *b = J("{'movie_id':1,'screen_id':3,'prices':{'silver':1000,'gold':2500}}");
    json_object_set_new(b, "start_time", json_string(start));
    return b;
}

Test(catalog, showtime_adds_start_ms_and_the_screens_theater)
{
    json_t *b = showtime_with_start("2026-11-21T18:30:00Z");
    json_t *out = valid(CATALOG_SHOWTIME, 40, b, NULL);
    char *s = dump(out);
    cr_assert_str_eq(s, "{\"id\":40,\"movie_id\":1,\"prices\":{\"gold\":2500,\"silver\":1000},"
                        "\"screen_id\":3,\"start_ms\":1795285800000,\"start_time\":\"2026-11-21T18:"
                        "30:00Z\",\"theater_id\":7}");
    free(s);
    json_decref(out);
    json_decref(b);
}

Test(catalog, start_time_is_strict_rfc3339_utc_with_real_calendar_dates)
{
    static const struct {
        const char *t;
        int64_t ms;
    } good[] = {
        {"1970-01-01T00:00:00Z", 0},
        {"1970-01-01T00:00:01Z", 1000},
        {"2000-02-29T00:00:00Z", INT64_C(951782400000)},
        {"2024-02-29T12:34:56Z", INT64_C(1709210096000)},
        {"2026-11-21T18:30:00Z", INT64_C(1795285800000)},
        {"9999-12-31T23:59:59Z", INT64_C(253402300799000)},
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        json_t *b = showtime_with_start(good[i].t);
        json_t *out = valid(CATALOG_SHOWTIME, 40, b, NULL);
        cr_assert_eq(json_integer_value(json_object_get(out, "start_ms")), good[i].ms, "%s",
                     good[i].t);
        json_decref(out);
        json_decref(b);
    }
    static const struct {
        const char *t, *why;
    } bad[] = {
        {"2026-11-21 18:30:00Z", "YYYY-MM-DDTHH:MM:SSZ"},
        {"2026-11-21t18:30:00z", "YYYY-MM-DDTHH:MM:SSZ"},
        {"2026-11-21T18:30:00", "YYYY-MM-DDTHH:MM:SSZ"},
        {"2026-11-21T18:30:00+00:00", "YYYY-MM-DDTHH:MM:SSZ"},
        {"2026-11-21T18:30Z", "YYYY-MM-DDTHH:MM:SSZ"},
        {"2026-11-21T18:30:00.5Z", "YYYY-MM-DDTHH:MM:SSZ"},
        {"26-11-21T18:30:00Z", "YYYY-MM-DDTHH:MM:SSZ"},
        {"2026-1-21T18:30:00ZZ", "YYYY-MM-DDTHH:MM:SSZ"},
        {"+026-11-21T18:30:00Z", "YYYY-MM-DDTHH:MM:SSZ"},
        {"", "YYYY-MM-DDTHH:MM:SSZ"},
        {"1969-12-31T23:59:59Z", "1970 or later"},
        {"2026-02-29T10:00:00Z", "date that does not exist"},
        {"2100-02-29T10:00:00Z", "date that does not exist"},
        {"2026-04-31T10:00:00Z", "date that does not exist"},
        {"2026-13-01T10:00:00Z", "date that does not exist"},
        {"2026-00-10T10:00:00Z", "date that does not exist"},
        {"2026-01-00T10:00:00Z", "date that does not exist"},
        {"2026-01-01T24:00:00Z", "time of day"},
        {"2026-01-01T23:60:00Z", "time of day"},
        {"2026-12-31T23:59:60Z", "time of day"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        refused_json(CATALOG_SHOWTIME, showtime_with_start(bad[i].t), NULL, "start_time",
                     bad[i].why);
    json_t *b = J("{'movie_id':1,'screen_id':3,'prices':{'silver':1,'gold':2},'start_time':5}");
    refused_json(CATALOG_SHOWTIME, b, NULL, "start_time", "must be a string");
}

Test(catalog, showtime_prices_must_be_exactly_the_screens_categories)
{
    const char *h = "{'movie_id':1,'screen_id':3,'start_time':'2026-11-21T18:30:00Z',";
    char b[256];
#define P(prices) (snprintf(b, sizeof b, "%s'prices':%s}", h, prices), b)
    refused(CATALOG_SHOWTIME, P("{'silver':1000}"), "prices.gold", "needs a price");
    refused(CATALOG_SHOWTIME, P("{'silver':1,'gold':2,'vip':3}"), "prices.vip",
            "not a seat category of the screen (its categories: silver, gold)");
    refused(CATALOG_SHOWTIME, P("{'silver':-1,'gold':2}"), "prices.silver",
            "integer from 0 to 100000000");
    refused(CATALOG_SHOWTIME, P("{'silver':1,'gold':100000001}"), "prices.gold",
            "integer from 0 to 100000000");
    refused(CATALOG_SHOWTIME, P("{'silver':1.5,'gold':2}"), "prices.silver", "integer");
    refused(CATALOG_SHOWTIME, P("{'silver':'1','gold':2}"), "prices.silver", "integer");
    refused(CATALOG_SHOWTIME, P("[1,2]"), "prices", "each seat category of the screen");
    refused(CATALOG_SHOWTIME, P("{'silver':0,'gold':100000000},'movie_id':0"), "movie_id",
            "positive integer");
    accepted(CATALOG_SHOWTIME, J(P("{'silver':0,'gold':100000000}")));
    refused(CATALOG_SHOWTIME, "{'screen_id':3,'start_time':'2026-11-21T18:30:00Z','prices':{}}",
            "movie_id", "is required");
#undef P
}

/* ---- Users ------------------------------------------------------------------------- */

#define USER_REST \
    "'name':'Ada','password_hash':'$argon2id$v=19$x','created_at':'2026-01-02T03:04:05Z'"

Test(catalog, user_email_is_lowercased_and_role_defaults_to_customer)
{
    char *s = canon(CATALOG_USER, 20, "{'email':'Ada.L@Example.COM'," USER_REST "}");
    cr_assert_str_eq(s, "{\"created_at\":\"2026-01-02T03:04:05Z\",\"email\":\"ada.l@example.com\","
                        "\"id\":20,\"name\":\"Ada\",\"password_hash\":\"$argon2id$v=19$x\","
                        "\"role\":\"customer\"}");
    free(s);
    s = canon(CATALOG_USER, 21,
              "{'email':'a@b','role':'admin','name':'A','password_hash':'h','created_at':'2026-01-"
              "02T03:04:05.123Z'}");
    cr_assert(strstr(s, "\"role\":\"admin\"") != NULL);
    cr_assert(strstr(s, "\"created_at\":\"2026-01-02T03:04:05.123Z\"") != NULL);
    free(s);
}

Test(catalog, user_refuses_bad_email_role_and_server_fields)
{
    static const struct {
        const char *email, *why;
    } bad[] = {
        {"adaexample.com", "exactly one @"},
        {"a@b@c", "exactly one @"},
        {"@example.com", "before the @"},
        {"ada@", "after it"},
        {"a d@x.y", "spaces"},
        {"a@", "3 to 254 bytes"},
        {"ada@.example.com", "valid domain"},
        {"ada@example.com.", "valid domain"},
        {"ada@example..com", "valid domain"},
        {"a\tb@x.y", "control characters"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        json_t *b = with("{" USER_REST "}", "email", json_string(bad[i].email));
        refused_json(CATALOG_USER, b, NULL, "email", bad[i].why);
    }
    /* 254 bytes fit, 255 do not; 64 bytes before the @ fit, 65 do not. */
    char e[300];
    memset(e, 'a', sizeof e);
    memcpy(e + 64, "@", 1);
    e[254] = '\0';
    accepted(CATALOG_USER, with("{" USER_REST "}", "email", json_string(e)));
    e[254] = 'a';
    e[255] = '\0';
    refused_json(CATALOG_USER, with("{" USER_REST "}", "email", json_string(e)), NULL, "email",
                 "3 to 254 bytes");
    memset(e, 'a', sizeof e);
    memcpy(e + 65, "@x.y", 5);
    refused_json(CATALOG_USER, with("{" USER_REST "}", "email", json_string(e)), NULL, "email",
                 "at most 64 bytes before the @");

    refused(CATALOG_USER, "{" USER_REST "}", "email", "is required");
    refused(CATALOG_USER, "{'email':'a@b.c','role':'root'," USER_REST "}", "role",
            "\"customer\" or \"admin\"");
    refused(CATALOG_USER, "{'email':'a@b.c','name':'A','created_at':'2026-01-02T03:04:05Z'}",
            "password_hash", "is required");
    refused(CATALOG_USER, "{'email':'a@b.c','name':'A','password_hash':'h'}", "created_at",
            "is required");
    refused(CATALOG_USER,
            "{'email':'a@b.c','name':'A','password_hash':'h','created_at':'yesterday'}",
            "created_at", "YYYY-MM-DDTHH:MM:SSZ");
    refused(CATALOG_USER,
            "{'email':'a@b.c','name':'A','password_hash':'h','created_at':'2026-01-02T03:04:05."
            "1234567890Z'}",
            "created_at", "YYYY-MM-DDTHH:MM:SSZ");
}

Test(catalog, user_public_copy_has_no_password_hash)
{
    json_t *b = J("{'email':'a@b.c'," USER_REST "}");
    json_t *u = valid(CATALOG_USER, 5, b, NULL);
    json_t *pub = catalog_user_public(u);
    cr_assert_not_null(pub);
    cr_assert_null(json_object_get(pub, "password_hash"));
    cr_assert_str_eq(json_string_value(json_object_get(pub, "email")), "a@b.c");
    cr_assert_eq(json_integer_value(json_object_get(pub, "id")), 5);
    cr_assert_not_null(json_object_get(u, "password_hash"), "the original is untouched");
    json_decref(pub);
    json_decref(u);
    json_decref(b);
}

/* ---- Updates ---------------------------------------------------------------------- */

Test(catalog, update_replaces_only_the_fields_in_the_body)
{
    json_t *b = J("{'name':'Regal','city':'Pune','address':'MG Road'}");
    json_t *old = valid(CATALOG_THEATER, 1, b, NULL);
    json_t *patch = J("{'city':'Mumbai'}");
    json_t *upd = valid(CATALOG_THEATER, 1, patch, old);
    char *s = dump(upd);
    cr_assert_str_eq(s,
                     "{\"address\":\"MG Road\",\"city\":\"Mumbai\",\"id\":1,\"name\":\"Regal\"}");
    free(s);
    /* An empty body changes nothing; the update is checked as a whole. */
    json_t *empty = J("{}");
    json_t *same = valid(CATALOG_THEATER, 1, empty, old);
    cr_assert(json_equal(same, old));
    refused_json(CATALOG_THEATER, J("{'name':''}"), old, "name", "must not be empty");
    refused_json(CATALOG_THEATER, J("{'id':2}"), old, "id", "assigned by the server");
    refused_json(CATALOG_THEATER, J("{'zip':'411001'}"), old, "zip", "not a field");
    json_decref(same);
    json_decref(empty);
    json_decref(upd);
    json_decref(patch);
    json_decref(old);
    json_decref(b);

    /* Showtimes: a new start recomputes start_ms; the theater comes from ctx. */
    b = showtime_with_start("2026-11-21T18:30:00Z");
    old = valid(CATALOG_SHOWTIME, 40, b, NULL);
    patch = J("{'start_time':'2026-11-21T21:30:00Z'}");
    upd = valid(CATALOG_SHOWTIME, 40, patch, old);
    cr_assert_eq(json_integer_value(json_object_get(upd, "start_ms")),
                 INT64_C(1795285800000) + 3 * 3600 * 1000);
    cr_assert_eq(json_integer_value(json_object_get(upd, "movie_id")), 1);
    cr_assert_eq(json_integer_value(json_object_get(upd, "theater_id")), 7);
    cr_assert_eq(json_integer_value(json_object_get(json_object_get(upd, "prices"), "gold")), 2500);
    json_decref(upd);
    json_decref(patch);
    json_decref(old);
    json_decref(b);

    /* Users keep the server-set fields through an update. */
    b = J("{'email':'a@b.c'," USER_REST "}");
    old = valid(CATALOG_USER, 5, b, NULL);
    patch = J("{'name':'Ada Lovelace','email':'ADA@B.C'}");
    upd = valid(CATALOG_USER, 5, patch, old);
    cr_assert_str_eq(json_string_value(json_object_get(upd, "email")), "ada@b.c");
    cr_assert_str_eq(json_string_value(json_object_get(upd, "name")), "Ada Lovelace");
    cr_assert_str_eq(json_string_value(json_object_get(upd, "password_hash")), "$argon2id$v=19$x");
    cr_assert_str_eq(json_string_value(json_object_get(upd, "created_at")), "2026-01-02T03:04:05Z");
    json_decref(upd);
    json_decref(patch);
    json_decref(old);
    json_decref(b);
}

Test(catalog, update_of_a_screen_replaces_the_layout_whole)
{
    json_t *b = screen_body(LAYOUT_AB);
    json_t *old = valid(CATALOG_SCREEN, 3, b, NULL);
    json_t *patch = J("{'layout':{'categories':['x'],'rows':[{'label':'Z','category':'x','seats':"
                      "2}]}}");
    json_t *upd = valid(CATALOG_SCREEN, 3, patch, old);
    json_t *layout = json_object_get(upd, "layout");
    cr_assert_eq(json_array_size(json_object_get(layout, "rows")), 1);
    cr_assert_str_eq(json_string_value(json_object_get(layout, "best_row")), "Z");
    cr_assert_str_eq(json_string_value(json_object_get(upd, "name")), "Screen 1");
    json_t *rename = J("{'name':'IMAX'}");
    json_t *renamed = valid(CATALOG_SCREEN, 3, rename, old);
    cr_assert(json_equal(json_object_get(renamed, "layout"), json_object_get(old, "layout")));
    json_decref(renamed);
    json_decref(rename);
    json_decref(upd);
    json_decref(patch);
    json_decref(old);
    json_decref(b);
}

/* ---- The store ------------------------------------------------------------------- */

typedef struct tdir {
    char root[64];
    char dir[96];
} tdir;

static void tdir_make(tdir *t)
{
    strcpy(t->root, "/tmp/usher-catalog-test-XXXXXX");
    cr_assert_not_null(mkdtemp(t->root));
    int n = snprintf(t->dir, sizeof t->dir, "%s/catalog", t->root);
    cr_assert(n > 0 && (size_t)n < sizeof t->dir);
}

static void tdir_remove(tdir *t)
{
    char f[128];
    static const char *const files[] = {"data.mdb", "lock.mdb"};
    for (int i = 0; i < 2; i++) {
        int n = snprintf(f, sizeof f, "%s/%s", t->dir, files[i]);
        cr_assert(n > 0 && (size_t)n < sizeof f);
        unlink(f);
    }
    rmdir(t->dir);
    cr_assert_eq(rmdir(t->root), 0, "%s left behind: %s", t->root, strerror(errno));
}

static catalog *open_ok(const tdir *t, uint32_t shards)
{
    catalog *c = NULL;
    int rc = catalog_open(t->dir, shards, 64 << 20, &c);
    cr_assert_eq(rc, 0, "catalog_open: %s (%s)", catalog_strerror(rc), catalog_last_error());
    return c;
}

/* Canonical JSON of each kind, kept for the batch that writes it. */
typedef struct batch {
    catalog_change ch[32];
    char *json[32];
    size_t n;
} batch;

static void batch_put(batch *b, catalog_kind kind, uint64_t id, const char *body)
{
    cr_assert_lt(b->n, 32);
    b->json[b->n] = canon(kind, id, body);
    b->ch[b->n] = (catalog_change){.put = true,
                                   .kind = kind,
                                   .id = id,
                                   .json = b->json[b->n],
                                   .json_len = strlen(b->json[b->n])};
    b->n++;
}

static void batch_del(batch *b, catalog_kind kind, uint64_t id)
{
    cr_assert_lt(b->n, 32);
    b->json[b->n] = NULL;
    b->ch[b->n] = (catalog_change){.put = false, .kind = kind, .id = id};
    b->n++;
}

static void batch_free(batch *b)
{
    for (size_t i = 0; i < b->n; i++)
        free(b->json[i]);
    b->n = 0;
}

static void apply_ok(catalog *c, uint32_t shard, uint64_t lsn, batch *b)
{
    int rc = catalog_apply(c, shard, lsn, b->ch, b->n);
    cr_assert_eq(rc, 0, "catalog_apply: %s (%s)", catalog_strerror(rc), catalog_last_error());
}

/* Applies one put (or delete when body is NULL) as its own batch. */
static void apply1(catalog *c, uint32_t shard, uint64_t lsn, catalog_kind kind, uint64_t id,
                   const char *body)
{
    batch b = {.n = 0};
    if (body != NULL)
        batch_put(&b, kind, id, body);
    else
        batch_del(&b, kind, id);
    apply_ok(c, shard, lsn, &b);
    batch_free(&b);
}

static char *showtime_body(uint64_t movie, uint64_t screen, uint32_t silver, uint32_t gold)
{
    char *s = malloc(256);
    cr_assert_not_null(s);
    snprintf(s, 256,
             "{'movie_id':%llu,'screen_id':%llu,'start_time':'2026-11-21T18:30:00Z',"
             "'prices':{'silver':%u,'gold':%u}}",
             (unsigned long long)movie, (unsigned long long)screen, silver, gold);
    return s;
}

static void apply_showtime(catalog *c, uint64_t lsn, uint64_t id, uint64_t movie, uint64_t screen)
{
    char *body = showtime_body(movie, screen, 1000, 2500);
    apply1(c, catalog_showtime_shard(id, 4) % 4, lsn, CATALOG_SHOWTIME, id, body);
    free(body);
}

static bool has(catalog *c, catalog_kind kind, uint64_t id)
{
    catalog_read *r;
    cr_assert_eq(catalog_read_begin(c, &r), 0);
    const char *j;
    size_t n;
    int rc = catalog_get(r, kind, id, &j, &n);
    catalog_read_end(r);
    cr_assert(rc == 0 || rc == CATALOG_ENOTFOUND);
    return rc == 0;
}

static uint64_t user_by_email(catalog *c, const char *email)
{
    catalog_read *r;
    cr_assert_eq(catalog_read_begin(c, &r), 0);
    uint64_t id = 0;
    int rc = catalog_user_find(r, email, &id);
    catalog_read_end(r);
    cr_assert(rc == 0 || rc == CATALOG_ENOTFOUND);
    return rc == 0 ? id : 0;
}

static uint64_t refs(catalog *c, catalog_kind kind, uint64_t id)
{
    catalog_read *r;
    cr_assert_eq(catalog_read_begin(c, &r), 0);
    uint64_t n = 99;
    cr_assert_eq(catalog_refs_count(r, kind, id, &n), 0);
    catalog_read_end(r);
    return n;
}

typedef struct rows_seen {
    catalog_showtime_row row[64];
    size_t n;
} rows_seen;

static int collect_row(void *arg, const catalog_showtime_row *row)
{
    rows_seen *s = arg;
    cr_assert_lt(s->n, 64);
    s->row[s->n++] = *row;
    return 0;
}

static rows_seen rows_of(catalog *c, uint32_t shard)
{
    rows_seen s = {.n = 0};
    catalog_read *r;
    cr_assert_eq(catalog_read_begin(c, &r), 0);
    cr_assert_eq(catalog_showtime_rows(r, shard, collect_row, &s), 0);
    catalog_read_end(r);
    return s;
}

/* Everything observable through the API, hashed. */
static int hash_entity(void *arg, uint64_t id, const char *json, size_t len)
{
    XXH3_64bits_update(arg, &id, sizeof id);
    XXH3_64bits_update(arg, json, len);
    return 0;
}

static int hash_row(void *arg, const catalog_showtime_row *row)
{
    XXH3_64bits_update(arg, row, sizeof *row);
    return 0;
}

static uint64_t state_hash(catalog *c, uint32_t shards, const char *const *emails)
{
    XXH3_state_t *h = XXH3_createState();
    cr_assert_not_null(h);
    XXH3_64bits_reset(h);
    catalog_read *r;
    cr_assert_eq(catalog_read_begin(c, &r), 0);
    for (int k = CATALOG_THEATER; k <= CATALOG_KIND_MAX_; k++)
        cr_assert_eq(catalog_each(r, (catalog_kind)k, hash_entity, h), 0);
    for (uint32_t s = 0; s < shards; s++) {
        cr_assert_eq(catalog_showtime_rows(r, s, hash_row, h), 0);
        uint64_t lsn = catalog_applied_lsn(c, s);
        XXH3_64bits_update(h, &lsn, sizeof lsn);
    }
    for (size_t i = 0; emails[i] != NULL; i++) {
        uint64_t id = 0;
        int rc = catalog_user_find(r, emails[i], &id);
        XXH3_64bits_update(h, &rc, sizeof rc);
        XXH3_64bits_update(h, &id, sizeof id);
    }
    catalog_read_end(r);
    uint64_t max = catalog_max_id(c);
    XXH3_64bits_update(h, &max, sizeof max);
    uint64_t d = XXH3_64bits_digest(h);
    XXH3_freeState(h);
    return d;
}

#define SCREEN_BODY(theater) "{'theater_id':" #theater ",'name':'S','layout':" LAYOUT_AB "}"

Test(catalog, open_creates_the_directory_and_applied_entities_read_back)
{
    tdir t;
    tdir_make(&t);
    catalog *c = open_ok(&t, 4);
    cr_assert_eq(catalog_applied_lsn(c, 0), 0);
    cr_assert_eq(catalog_max_id(c), 0);

    batch b = {.n = 0};
    batch_put(&b, CATALOG_THEATER, 1, "{'name':'Regal','city':'Pune'}");
    batch_put(&b, CATALOG_SCREEN, 2, SCREEN_BODY(1));
    batch_put(&b, CATALOG_MOVIE, 3, MOVIE);
    batch_put(&b, CATALOG_USER, 5, "{'email':'Ada@Example.com'," USER_REST "}");
    batch_put(&b, CATALOG_THEATER, 6, "{'name':'PVR','city':'Delhi'}");
    apply_ok(c, 0, 17, &b);
    cr_assert_eq(catalog_applied_lsn(c, 0), 17);
    cr_assert_eq(catalog_applied_lsn(c, 1), 0);

    catalog_read *r;
    cr_assert_eq(catalog_read_begin(c, &r), 0);
    for (size_t i = 0; i < b.n; i++) {
        const char *j;
        size_t n;
        cr_assert_eq(catalog_get(r, b.ch[i].kind, b.ch[i].id, &j, &n), 0);
        cr_assert_eq(n, b.ch[i].json_len);
        cr_assert_eq(memcmp(j, b.ch[i].json, n), 0, "stored bytes are the canonical bytes");
    }
    const char *j;
    size_t n;
    cr_assert_eq(catalog_get(r, CATALOG_MOVIE, 1, &j, &n), CATALOG_ENOTFOUND, "wrong kind");
    cr_assert_eq(catalog_get(r, CATALOG_MOVIE, 4, &j, &n), CATALOG_ENOTFOUND);
    json_t *m = catalog_get_json(r, CATALOG_MOVIE, 3);
    cr_assert_str_eq(json_string_value(json_object_get(m, "title")), "Dune");
    json_decref(m);
    cr_assert_null(catalog_get_json(r, CATALOG_MOVIE, 99));
    uint64_t id = 0;
    cr_assert_eq(catalog_user_find(r, "ada@example.com", &id), 0);
    cr_assert_eq(id, 5);
    cr_assert_eq(catalog_user_find(r, "ADA@EXAMPLE.COM", &id), 0, "compared lowercased");
    cr_assert_eq(catalog_user_find(r, "bob@example.com", &id), CATALOG_ENOTFOUND);
    cr_assert_eq(catalog_user_find(r, "", &id), CATALOG_ENOTFOUND);
    catalog_read_end(r);
    batch_free(&b);
    catalog_close(c);
    tdir_remove(&t);
}

typedef struct ids_seen {
    uint64_t id[64];
    size_t n;
    size_t stop_after;
} ids_seen;

static int collect_id(void *arg, uint64_t id, const char *json, size_t len)
{
    ids_seen *s = arg;
    json_t *v = json_loadb(json, len, 0, NULL);
    cr_assert_eq(json_integer_value(json_object_get(v, "id")), (json_int_t)id);
    json_decref(v);
    s->id[s->n++] = id;
    return s->n == s->stop_after ? 42 : 0;
}

Test(catalog, each_walks_a_kind_in_id_order_and_stops_on_request)
{
    tdir t;
    tdir_make(&t);
    catalog *c = open_ok(&t, 1);
    const uint64_t order[] = {300, 2, 70000, 256, 1};
    for (size_t i = 0; i < 5; i++)
        apply1(c, 0, i + 1, CATALOG_THEATER, order[i], "{'name':'T','city':'C'}");
    apply1(c, 0, 6, CATALOG_MOVIE, 3, MOVIE);
    catalog_read *r;
    cr_assert_eq(catalog_read_begin(c, &r), 0);
    ids_seen s = {.n = 0, .stop_after = 0};
    cr_assert_eq(catalog_each(r, CATALOG_THEATER, collect_id, &s), 0);
    cr_assert_eq(s.n, 5);
    const uint64_t want[] = {1, 2, 256, 300, 70000}; /* big-endian keys: numeric order */
    for (size_t i = 0; i < 5; i++)
        cr_assert_eq(s.id[i], want[i]);
    ids_seen stop = {.n = 0, .stop_after = 2};
    cr_assert_eq(catalog_each(r, CATALOG_THEATER, collect_id, &stop), 42);
    cr_assert_eq(stop.n, 2);
    ids_seen none = {.n = 0, .stop_after = 0};
    cr_assert_eq(catalog_each(r, CATALOG_USER, collect_id, &none), 0);
    cr_assert_eq(none.n, 0);
    catalog_read_end(r);
    catalog_close(c);
    tdir_remove(&t);
}

Test(catalog, applying_the_same_batch_twice_leaves_the_same_state)
{
    tdir t;
    tdir_make(&t);
    catalog *c = open_ok(&t, 4);
    static const char *const emails[] = {"a@x.io", "b@x.io", "c@x.io", NULL};
    batch b = {.n = 0};
    batch_put(&b, CATALOG_THEATER, 1, "{'name':'Regal','city':'Pune'}");
    batch_put(&b, CATALOG_SCREEN, 2, SCREEN_BODY(1));
    batch_put(&b, CATALOG_MOVIE, 3, MOVIE);
    char *st = showtime_body(3, 2, 900, 1900);
    batch_put(&b, CATALOG_SHOWTIME, 4, st);
    batch_put(&b, CATALOG_SHOWTIME, 5, st);
    batch_put(&b, CATALOG_USER, 6, "{'email':'a@x.io'," USER_REST "}");
    batch_put(&b, CATALOG_USER, 6, "{'email':'b@x.io'," USER_REST "}"); /* email changes */
    batch_put(&b, CATALOG_USER, 7, "{'email':'c@x.io'," USER_REST "}");
    batch_del(&b, CATALOG_USER, 7);
    batch_del(&b, CATALOG_SHOWTIME, 5);
    batch_del(&b, CATALOG_MOVIE, 99); /* never existed */
    free(st);
    apply_ok(c, 0, 10, &b);
    uint64_t once = state_hash(c, 4, emails);
    apply_ok(c, 0, 10, &b);
    cr_assert_eq(state_hash(c, 4, emails), once);
    cr_assert_eq(user_by_email(c, "a@x.io"), 0);
    cr_assert_eq(user_by_email(c, "b@x.io"), 6);
    cr_assert_eq(user_by_email(c, "c@x.io"), 0);
    cr_assert(has(c, CATALOG_SHOWTIME, 4));
    cr_assert_not(has(c, CATALOG_SHOWTIME, 5));
    /* The same again after a reopen, as recovery would do it. */
    catalog_close(c);
    c = open_ok(&t, 4);
    apply_ok(c, 0, 10, &b);
    cr_assert_eq(state_hash(c, 4, emails), once);
    batch_free(&b);
    catalog_close(c);
    tdir_remove(&t);
}

Test(catalog, email_index_follows_email_changes_and_deletes)
{
    tdir t;
    tdir_make(&t);
    catalog *c = open_ok(&t, 2);
    apply1(c, 0, 1, CATALOG_USER, 10, "{'email':'old@x.io'," USER_REST "}");
    cr_assert_eq(user_by_email(c, "old@x.io"), 10);
    apply1(c, 0, 2, CATALOG_USER, 10, "{'email':'New@X.io'," USER_REST "}");
    cr_assert_eq(user_by_email(c, "old@x.io"), 0, "the old address is free again");
    cr_assert_eq(user_by_email(c, "new@x.io"), 10);
    apply1(c, 0, 3, CATALOG_USER, 10,
           "{'email':'new@x.io','name':'Renamed','password_hash':'h',"
           "'created_at':'2026-01-02T03:04:05Z'}");
    cr_assert_eq(user_by_email(c, "new@x.io"), 10, "same address kept");
    /* The address moves to user 11 (the server checks uniqueness first; if
     * it did not, the index must still not lose user 11's entry). */
    apply1(c, 0, 4, CATALOG_USER, 11, "{'email':'new@x.io'," USER_REST "}");
    apply1(c, 0, 5, CATALOG_USER, 10, "{'email':'other@x.io'," USER_REST "}");
    cr_assert_eq(user_by_email(c, "new@x.io"), 11);
    cr_assert_eq(user_by_email(c, "other@x.io"), 10);
    apply1(c, 0, 6, CATALOG_USER, 10, NULL);
    cr_assert_eq(user_by_email(c, "other@x.io"), 0);
    cr_assert_not(has(c, CATALOG_USER, 10));
    cr_assert_eq(user_by_email(c, "new@x.io"), 11);
    apply1(c, 0, 7, CATALOG_USER, 10, NULL); /* deleting again: a no-op */
    cr_assert_eq(catalog_applied_lsn(c, 0), 7);
    catalog_close(c);
    tdir_remove(&t);
}

Test(catalog, showtime_rows_follow_moves_and_deletes)
{
    tdir t;
    tdir_make(&t);
    catalog *c = open_ok(&t, 4);
    const uint64_t id = 100;
    const uint32_t owner = catalog_showtime_shard(id, 4);
    char *body = showtime_body(10, 20, 700, 1200);
    apply1(c, owner, 1, CATALOG_SHOWTIME, id, body);
    free(body);
    rows_seen s = rows_of(c, owner);
    cr_assert_eq(s.n, 1);
    cr_assert_eq(s.row[0].id, id);
    cr_assert_eq(s.row[0].movie_id, 10);
    cr_assert_eq(s.row[0].screen_id, 20);
    cr_assert_eq(s.row[0].theater_id, 7);
    cr_assert_eq(s.row[0].start_ms, INT64_C(1795285800000));
    cr_assert_eq(s.row[0].price_min, 700);
    cr_assert_eq(s.row[0].price_max, 1200);
    cr_assert_eq(refs(c, CATALOG_MOVIE, 10), 1);
    cr_assert_eq(refs(c, CATALOG_SCREEN, 20), 1);

    /* Moved to movie 11 on screen 21, new prices: one row, rewritten. */
    body = showtime_body(11, 21, 5000, 300);
    apply1(c, owner, 2, CATALOG_SHOWTIME, id, body);
    free(body);
    s = rows_of(c, owner);
    cr_assert_eq(s.n, 1);
    cr_assert_eq(s.row[0].movie_id, 11);
    cr_assert_eq(s.row[0].screen_id, 21);
    cr_assert_eq(s.row[0].price_min, 300);
    cr_assert_eq(s.row[0].price_max, 5000);
    cr_assert_eq(refs(c, CATALOG_MOVIE, 10), 0);
    cr_assert_eq(refs(c, CATALOG_MOVIE, 11), 1);
    cr_assert_eq(refs(c, CATALOG_SCREEN, 20), 0);
    cr_assert_eq(refs(c, CATALOG_SCREEN, 21), 1);

    apply1(c, owner, 3, CATALOG_SHOWTIME, id, NULL);
    cr_assert_eq(rows_of(c, owner).n, 0);
    cr_assert_eq(refs(c, CATALOG_MOVIE, 11), 0);
    cr_assert_eq(refs(c, CATALOG_SCREEN, 21), 0);
    cr_assert_not(has(c, CATALOG_SHOWTIME, id));
    catalog_close(c);
    tdir_remove(&t);
}

Test(catalog, showtime_rows_are_listed_only_under_their_owning_shard)
{
    tdir t;
    tdir_make(&t);
    catalog *c = open_ok(&t, 4);
    /* All applied through shard 0's WAL: ownership follows the id, not the WAL. */
    batch b = {.n = 0};
    char *body = showtime_body(1, 2, 100, 200);
    for (uint64_t id = 1000; id < 1030; id++)
        batch_put(&b, CATALOG_SHOWTIME, id, body);
    free(body);
    apply_ok(c, 0, 1, &b);
    size_t total = 0;
    for (uint32_t s = 0; s < 4; s++) {
        rows_seen rs = rows_of(c, s);
        for (size_t i = 0; i < rs.n; i++) {
            cr_assert_eq(catalog_showtime_shard(rs.row[i].id, 4), s, "showtime %llu",
                         (unsigned long long)rs.row[i].id);
            if (i > 0)
                cr_assert_gt(rs.row[i].id, rs.row[i - 1].id, "id order");
        }
        total += rs.n;
    }
    cr_assert_eq(total, 30);
    cr_assert_eq(rows_of(c, 4).n, 0);
    cr_assert_eq(rows_of(c, 99).n, 0);
    batch_free(&b);
    catalog_close(c);
    tdir_remove(&t);
}

Test(catalog, applied_lsn_persists_per_shard_across_reopen_and_never_decreases)
{
    tdir t;
    tdir_make(&t);
    catalog *c = open_ok(&t, 3);
    apply1(c, 0, 5, CATALOG_THEATER, 1, "{'name':'T','city':'C'}");
    batch empty = {.n = 0};
    apply_ok(c, 2, 9, &empty); /* no changes, just the mark */
    catalog_close(c);
    c = open_ok(&t, 3);
    cr_assert_eq(catalog_applied_lsn(c, 0), 5);
    cr_assert_eq(catalog_applied_lsn(c, 1), 0);
    cr_assert_eq(catalog_applied_lsn(c, 2), 9);
    cr_assert(has(c, CATALOG_THEATER, 1));
    apply_ok(c, 0, 3, &empty);
    cr_assert_eq(catalog_applied_lsn(c, 0), 5);
    apply_ok(c, 0, UINT64_C(1) << 40, &empty);
    cr_assert_eq(catalog_applied_lsn(c, 0), UINT64_C(1) << 40);
    catalog_close(c);
    tdir_remove(&t);
}

Test(catalog, reopening_with_another_shard_count_fails)
{
    tdir t;
    tdir_make(&t);
    catalog *c = open_ok(&t, 4);
    apply1(c, 0, 1, CATALOG_THEATER, 1, "{'name':'T','city':'C'}");
    catalog_close(c);
    catalog *d = (catalog *)&t;
    cr_assert_eq(catalog_open(t.dir, 8, 0, &d), CATALOG_ESHARDS);
    cr_assert_eq(d, (catalog *)&t, "*out untouched on failure");
    cr_assert_eq(catalog_open(t.dir, 1, 0, &d), CATALOG_ESHARDS);
    c = open_ok(&t, 4);
    cr_assert(has(c, CATALOG_THEATER, 1));
    catalog_close(c);
    tdir_remove(&t);
}

Test(catalog, open_reports_system_and_lmdb_failures)
{
    catalog *c = NULL;
    cr_assert_eq(catalog_open("/nonexistent-usher-dir/catalog", 1, 0, &c), -ENOENT);
    cr_assert_null(c);
    tdir t;
    tdir_make(&t);
    /* A regular file where the directory should be. */
    FILE *f = fopen(t.dir, "w");
    cr_assert_not_null(f);
    fclose(f);
    cr_assert_eq(catalog_open(t.dir, 1, 0, &c), CATALOG_ELMDB);
    cr_assert_gt(strlen(catalog_last_error()), 0);
    unlink(t.dir);
    tdir_remove(&t);
}

Test(catalog, refs_count_screens_of_a_theater_and_showtimes_of_a_screen_or_movie)
{
    tdir t;
    tdir_make(&t);
    catalog *c = open_ok(&t, 4);
    apply1(c, 0, 1, CATALOG_THEATER, 1, "{'name':'T','city':'C'}");
    apply1(c, 0, 2, CATALOG_THEATER, 2, "{'name':'U','city':'C'}");
    apply1(c, 0, 3, CATALOG_SCREEN, 10, SCREEN_BODY(1));
    apply1(c, 0, 4, CATALOG_SCREEN, 11, SCREEN_BODY(1));
    apply1(c, 0, 5, CATALOG_SCREEN, 12, SCREEN_BODY(2));
    apply1(c, 0, 6, CATALOG_MOVIE, 20, MOVIE);
    apply1(c, 0, 7, CATALOG_MOVIE, 21, MOVIE);
    apply_showtime(c, 8, 30, 20, 10);
    apply_showtime(c, 9, 31, 20, 10);
    apply_showtime(c, 10, 32, 21, 10);
    apply_showtime(c, 11, 33, 20, 12);
    cr_assert_eq(refs(c, CATALOG_THEATER, 1), 2);
    cr_assert_eq(refs(c, CATALOG_THEATER, 2), 1);
    cr_assert_eq(refs(c, CATALOG_SCREEN, 10), 3);
    cr_assert_eq(refs(c, CATALOG_SCREEN, 11), 0);
    cr_assert_eq(refs(c, CATALOG_SCREEN, 12), 1);
    cr_assert_eq(refs(c, CATALOG_MOVIE, 20), 3);
    cr_assert_eq(refs(c, CATALOG_MOVIE, 21), 1);
    cr_assert_eq(refs(c, CATALOG_MOVIE, 99), 0);
    cr_assert_eq(refs(c, CATALOG_SHOWTIME, 30), 0);
    cr_assert_eq(refs(c, CATALOG_USER, 30), 0);
    /* A screen moved to the other theater, then deleted. */
    apply1(c, 0, 12, CATALOG_SCREEN, 11, SCREEN_BODY(2));
    cr_assert_eq(refs(c, CATALOG_THEATER, 1), 1);
    cr_assert_eq(refs(c, CATALOG_THEATER, 2), 2);
    apply1(c, 0, 13, CATALOG_SCREEN, 11, NULL);
    cr_assert_eq(refs(c, CATALOG_THEATER, 2), 1);
    apply1(c, 0, 14, CATALOG_SCREEN, 11, NULL);
    cr_assert_eq(refs(c, CATALOG_THEATER, 2), 1);
    catalog_close(c);
    tdir_remove(&t);
}

Test(catalog, max_id_covers_every_kind_and_survives_deletes_and_reopen)
{
    tdir t;
    tdir_make(&t);
    catalog *c = open_ok(&t, 2);
    cr_assert_eq(catalog_max_id(c), 0);
    apply1(c, 0, 1, CATALOG_THEATER, 4, "{'name':'T','city':'C'}");
    cr_assert_eq(catalog_max_id(c), 4);
    apply1(c, 0, 2, CATALOG_USER, 90, "{'email':'a@b.c'," USER_REST "}");
    apply1(c, 0, 3, CATALOG_MOVIE, 12, MOVIE);
    cr_assert_eq(catalog_max_id(c), 90);
    /* Ids are never handed out twice: a deleted maximum still counts. */
    apply1(c, 0, 4, CATALOG_USER, 90, NULL);
    cr_assert_eq(catalog_max_id(c), 90);
    catalog_close(c);
    c = open_ok(&t, 2);
    cr_assert_eq(catalog_max_id(c), 90);
    catalog_close(c);
    tdir_remove(&t);
}

Test(catalog, apply_is_all_or_nothing_and_refuses_json_the_indexes_cannot_use)
{
    tdir t;
    tdir_make(&t);
    catalog *c = open_ok(&t, 1);
    apply1(c, 0, 1, CATALOG_THEATER, 1, "{'name':'T','city':'C'}");
    static const char *const bad[] = {
        "not json", "[1]", "{\"id\":3}", /* a user without an email */
        "{\"id\":4}",                    /* id differs from the change's */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        catalog_change ch[2] = {
            {.put = false, .kind = CATALOG_THEATER, .id = 1},
            {.put = true,
             .kind = CATALOG_USER,
             .id = 3,
             .json = bad[i],
             .json_len = strlen(bad[i])},
        };
        cr_assert_eq(catalog_apply(c, 0, 2, ch, 2), CATALOG_EDECODE, "%s", bad[i]);
        cr_assert(has(c, CATALOG_THEATER, 1), "the delete before it was rolled back");
        cr_assert_eq(catalog_applied_lsn(c, 0), 1);
    }
    const char *st = "{\"id\":5,\"movie_id\":1}"; /* a showtime without what its row needs */
    catalog_change ch = {
        .put = true, .kind = CATALOG_SHOWTIME, .id = 5, .json = st, .json_len = strlen(st)};
    cr_assert_eq(catalog_apply(c, 0, 2, &ch, 1), CATALOG_EDECODE);
    const char *sc = "{\"id\":6,\"name\":\"S\"}"; /* a screen without its theater */
    ch = (catalog_change){
        .put = true, .kind = CATALOG_SCREEN, .id = 6, .json = sc, .json_len = strlen(sc)};
    cr_assert_eq(catalog_apply(c, 0, 2, &ch, 1), CATALOG_EDECODE);
    cr_assert_eq(catalog_max_id(c), 1);
    catalog_close(c);
    tdir_remove(&t);
}

Test(catalog, a_read_view_is_a_snapshot_that_writes_do_not_change)
{
    tdir t;
    tdir_make(&t);
    catalog *c = open_ok(&t, 1);
    apply1(c, 0, 1, CATALOG_THEATER, 1, "{'name':'Old','city':'C'}");
    catalog_read *before;
    cr_assert_eq(catalog_read_begin(c, &before), 0);
    apply1(c, 0, 2, CATALOG_THEATER, 1,
           "{'name':'New','city':'C'}"); /* not blocked by the reader */
    apply1(c, 0, 3, CATALOG_THEATER, 2, "{'name':'Two','city':'C'}");
    json_t *v = catalog_get_json(before, CATALOG_THEATER, 1);
    cr_assert_str_eq(json_string_value(json_object_get(v, "name")), "Old");
    json_decref(v);
    cr_assert_null(catalog_get_json(before, CATALOG_THEATER, 2));
    catalog_read_end(before);
    catalog_read *after;
    cr_assert_eq(catalog_read_begin(c, &after), 0);
    v = catalog_get_json(after, CATALOG_THEATER, 1);
    cr_assert_str_eq(json_string_value(json_object_get(v, "name")), "New");
    json_decref(v);
    catalog_read_end(after);
    catalog_close(c);
    tdir_remove(&t);
}

typedef struct reader_arg {
    catalog_read *r;
    char name[32];
} reader_arg;

static void *reader_thread(void *p)
{
    reader_arg *a = p;
    json_t *v = catalog_get_json(a->r, CATALOG_THEATER, 1);
    if (v != NULL)
        snprintf(a->name, sizeof a->name, "%s", json_string_value(json_object_get(v, "name")));
    json_decref(v);
    return NULL;
}

Test(catalog, a_read_view_may_move_between_threads)
{
    tdir t;
    tdir_make(&t);
    catalog *c = open_ok(&t, 1);
    apply1(c, 0, 1, CATALOG_THEATER, 1, "{'name':'Regal','city':'C'}");
    /* Begun here, used on a worker (as a libuv threadpool job does), ended here. */
    reader_arg a = {.r = NULL, .name = ""};
    cr_assert_eq(catalog_read_begin(c, &a.r), 0);
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, reader_thread, &a), 0);
    cr_assert_eq(pthread_join(th, NULL), 0);
    cr_assert_str_eq(a.name, "Regal");
    catalog_read_end(a.r);
    catalog_close(c);
    tdir_remove(&t);
}
