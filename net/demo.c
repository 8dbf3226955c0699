/*
 * demo.c - usherd --demo: builds the demo catalog with the same API calls an
 * administrator would make, so it is validated and journaled like any other.
 */
#include "demo.h"

#include <inttypes.h>
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Runs one call; returns the parsed answer on `want`, else prints and NULL. */
static json_t *call(net_server *s, const char *method, const char *path, json_t *body, int want)
{
    char *text = body != NULL ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    int status = 0;
    char *resp = NULL;
    int rc = net_server_call(s, method, path, text, &status, &resp);
    free(text);
    if (rc != 0 || status != want) {
        fprintf(stderr, "usherd: demo: %s %s answered %d: %s\n", method, path, status,
                resp != NULL ? resp : "");
        free(resp);
        return NULL;
    }
    json_t *o = json_loads(resp, 0, NULL);
    free(resp);
    return o;
}

static uint64_t id_of(json_t *o)
{
    uint64_t id = (uint64_t)json_integer_value(json_object_get(o, "id"));
    json_decref(o);
    return id;
}

/* A rectangular layout: `rows` rows of `cols` seats with an aisle after
 * every `aisle` seats; the front rows silver, the middle gold, the back
 * platinum; two wheelchair spaces and their companions in the last row. */
static json_t *layout(int rows, int cols, int aisle)
{
    json_t *rs = json_array();
    for (int i = 0; i < rows; i++) {
        char label[8];
        snprintf(label, sizeof(label), "%c", 'A' + i);
        const char *cat = i < rows / 3 ? "silver" : i < rows - 2 ? "gold" : "platinum";
        json_t *row = json_pack("{s:s, s:s, s:i}", "label", label, "category", cat, "seats", cols);
        json_t *aisles = json_array();
        for (int c = aisle; c < cols; c += aisle)
            json_array_append_new(aisles, json_integer(c));
        json_object_set_new(row, "aisles_after", aisles);
        if (i == rows - 1) {
            json_object_set_new(row, "accessible", json_pack("[i, i]", 1, cols));
            json_object_set_new(row, "companion", json_pack("[i, i]", 2, cols - 1));
        }
        json_array_append_new(rs, row);
    }
    return json_pack("{s:[s, s, s], s:o}", "categories", "silver", "gold", "platinum", "rows", rs);
}

static void random_password(char out[17])
{
    static const char alphabet[] = "abcdefghijkmnpqrstuvwxyzACDEFGHJKLMNPQRSTUVWXYZ23456789";
    for (int i = 0; i < 16; i++)
        out[i] = alphabet[randombytes_uniform(sizeof(alphabet) - 1)];
    out[16] = '\0';
}

int usherd_demo(net_server *s)
{
    json_t *list = call(s, "GET", "/api/theaters", NULL, 200);
    if (list == NULL)
        return -1;
    json_int_t existing = json_integer_value(json_object_get(list, "total"));
    json_decref(list);
    if (existing > 0)
        return 0; /* not the first start */

    static const struct {
        const char *name, *city, *address;
    } theaters[] = {
        {"Usher Cinemas Andheri", "Mumbai", "Link Road, Andheri West"},
        {"Usher Cinemas Colaba", "Mumbai", "Shahid Bhagat Singh Road, Colaba"},
        {"Usher Cinemas Indiranagar", "Bengaluru", "100 Feet Road, Indiranagar"},
    };
    static const struct {
        const char *title, *genre, *language, *rating;
        int minutes;
    } movies[] = {
        {"The Last Usher", "thriller", "english", "UA", 128},
        {"Monsoon Wedding Redux", "drama", "hindi", "U", 142},
        {"Orbit of Ash", "sci-fi", "english", "UA", 151},
        {"Kitchen Kings", "comedy", "hindi", "U", 117},
        {"Silent Tide", "horror", "tamil", "A", 109},
        {"Paper Lanterns", "animation", "english", "U", 96},
    };
    /* Screens per theater: {rows, seats per row, aisle every}. */
    static const int screens[2][3] = {{10, 15, 5}, {24, 25, 5}}; /* 150 and 600 seats */

    uint64_t movie_ids[6];
    for (int i = 0; i < 6; i++) {
        json_t *m = json_pack("{s:s, s:s, s:i, s:s, s:s, s:s, s:s}", "title", movies[i].title,
                              "description", "A demo film.", "duration_min", movies[i].minutes,
                              "genre", movies[i].genre, "language", movies[i].language, "rating",
                              movies[i].rating, "poster_url", "");
        json_t *o = call(s, "POST", "/api/movies", m, 201);
        if (o == NULL)
            return -1;
        movie_ids[i] = id_of(o);
    }
    time_t now = time(NULL);
    int64_t day0 = ((int64_t)now / 86400) * 86400;
    int shows = 0;
    for (int t = 0; t < 3; t++) {
        json_t *th = json_pack("{s:s, s:s, s:s}", "name", theaters[t].name, "city",
                               theaters[t].city, "address", theaters[t].address);
        json_t *o = call(s, "POST", "/api/theaters", th, 201);
        if (o == NULL)
            return -1;
        uint64_t theater_id = id_of(o);
        for (int k = 0; k < 2; k++) {
            /* The third theater's big screen is smaller: 300 seats. */
            int rows = t == 2 && k == 1 ? 12 : screens[k][0];
            char name[16];
            snprintf(name, sizeof(name), "Screen %d", k + 1);
            json_t *sc = json_pack("{s:I, s:s, s:o}", "theater_id", (json_int_t)theater_id, "name",
                                   name, "layout", layout(rows, screens[k][1], screens[k][2]));
            o = call(s, "POST", "/api/screens", sc, 201);
            if (o == NULL)
                return -1;
            uint64_t screen_id = id_of(o);
            /* Two shows a day for 7 days (08:00 and 14:30 UTC). */
            for (int d = 0; d < 7; d++) {
                for (int slot = 0; slot < 2; slot++) {
                    int64_t start = (day0 + d * 86400LL + (slot ? 52200 : 28800));
                    if (start <= (int64_t)now + 600)
                        continue;
                    char when[32];
                    time_t st = (time_t)start;
                    struct tm tm;
                    gmtime_r(&st, &tm);
                    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
                    int movie = (t * 2 + k + d + slot) % 6;
                    int base = 15000 + 5000 * k;
                    json_t *sh =
                        json_pack("{s:I, s:I, s:s, s:{s:i, s:i, s:i}}", "movie_id",
                                  (json_int_t)movie_ids[movie], "screen_id", (json_int_t)screen_id,
                                  "start_time", when, "prices", "silver", base, "gold",
                                  base + 10000, "platinum", base + 25000);
                    o = call(s, "POST", "/api/showtimes", sh, 201);
                    if (o == NULL)
                        return -1;
                    json_decref(o);
                    shows++;
                }
            }
        }
    }
    char admin_pw[17], demo_pw[17];
    random_password(admin_pw);
    random_password(demo_pw);
    json_t *o = call(s, "POST", "/api/auth/register",
                     json_pack("{s:s, s:s, s:s, s:s}", "email", "admin@usher.local", "password",
                               admin_pw, "name", "Demo Admin", "role", "admin"),
                     201);
    if (o == NULL)
        return -1;
    json_decref(o);
    o = call(s, "POST", "/api/auth/register",
             json_pack("{s:s, s:s, s:s}", "email", "demo@usher.local", "password", demo_pw, "name",
                       "Demo Customer"),
             201);
    if (o == NULL)
        return -1;
    json_decref(o);
    printf("demo catalog created: 3 theaters in 2 cities, 6 screens, 6 movies, %d showtimes\n"
           "demo accounts (shown once; keep them):\n"
           "  admin@usher.local  %s   (admin)\n"
           "  demo@usher.local   %s   (customer)\n",
           shows, admin_pw, demo_pw);
    fflush(stdout);
    return 0;
}
