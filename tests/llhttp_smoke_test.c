/*
 * llhttp_smoke_test.c - proves the llhttp we compile from Debian's sources
 * links and parses in strict mode: a request split at every byte parses to
 * the same method, URL and body, and a smuggling attempt is refused.
 */
#include <criterion/criterion.h>
#include <llhttp.h>
#include <string.h>

typedef struct seen {
    char url[64];
    size_t url_len;
    char body[64];
    size_t body_len;
    int complete;
} seen;

static int on_url(llhttp_t *p, const char *at, size_t n)
{
    seen *s = p->data;
    cr_assert_leq(s->url_len + n, sizeof(s->url));
    memcpy(s->url + s->url_len, at, n);
    s->url_len += n;
    return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t n)
{
    seen *s = p->data;
    cr_assert_leq(s->body_len + n, sizeof(s->body));
    memcpy(s->body + s->body_len, at, n);
    s->body_len += n;
    return 0;
}

static int on_complete(llhttp_t *p)
{
    ((seen *)p->data)->complete++;
    return 0;
}

static llhttp_errno_t parse(const char *req, size_t chunk, seen *s)
{
    llhttp_settings_t settings;
    llhttp_settings_init(&settings);
    settings.on_url = on_url;
    settings.on_body = on_body;
    settings.on_message_complete = on_complete;
    llhttp_t parser;
    llhttp_init(&parser, HTTP_REQUEST, &settings);
    parser.data = s;
    size_t len = strlen(req);
    for (size_t off = 0; off < len; off += chunk) {
        size_t n = len - off < chunk ? len - off : chunk;
        llhttp_errno_t err = llhttp_execute(&parser, req + off, n);
        if (err != HPE_OK)
            return err;
    }
    return HPE_OK;
}

Test(llhttp, parses_a_request_split_at_every_byte)
{
    const char *req = "POST /api/bookings/reserve HTTP/1.1\r\nHost: x\r\n"
                      "Content-Length: 5\r\n\r\nhello";
    for (size_t chunk = 1; chunk <= strlen(req); chunk++) {
        seen s = {0};
        cr_assert_eq(parse(req, chunk, &s), HPE_OK, "chunk %zu", chunk);
        cr_assert_eq(s.complete, 1);
        cr_assert_eq(s.url_len, strlen("/api/bookings/reserve"));
        cr_assert_arr_eq(s.url, "/api/bookings/reserve", s.url_len);
        cr_assert_eq(s.body_len, 5);
        cr_assert_arr_eq(s.body, "hello", 5);
    }
}

Test(llhttp, refuses_content_length_with_transfer_encoding)
{
    const char *req = "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                      "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    seen s = {0};
    cr_assert_neq(parse(req, strlen(req), &s), HPE_OK);
    cr_assert_eq(s.complete, 0);
}
