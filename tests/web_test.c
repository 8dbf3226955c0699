/*
 * web_test.c - usherd --web-root over real sockets (net/web.c): content
 * types and headers, 304 revalidation, HEAD, index.html for directories,
 * 405 for writes, and no way out of the root (dot segments, encoded
 * slashes and dots, NUL, hidden files, a symbolic link to a file outside);
 * the API keeps its own 404s; a root that cannot be read stops the start.
 */
#include "harness.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

TestSuite(web, .init = h_suite_init, .fini = h_suite_fini, .timeout = 60);

static char base[64], root[512], outside[512];

static void base_remove(void)
{
    if (base[0] != '\0')
        h_rm_tree(base);
}

static void put(const char *rel, const char *text)
{
    char p[1024];
    snprintf(p, sizeof(p), "%s/%s", root, rel);
    FILE *f = fopen(p, "w");
    cr_assert_not_null(f, "%s", p);
    fputs(text, f);
    fclose(f);
}

/* A root with index.html, js/app.js, css/site.css, docs/index.html, a
 * hidden file, and a link to a secret next to (outside) the root. */
static void make_root(void)
{
    strcpy(base, "/tmp/usher-web-XXXXXX");
    cr_assert_not_null(mkdtemp(base));
    atexit(base_remove);
    snprintf(root, sizeof(root), "%s/www", base);
    snprintf(outside, sizeof(outside), "%s/secret.txt", base);
    cr_assert_eq(mkdir(root, 0755), 0);
    char d[600];
    snprintf(d, sizeof(d), "%s/js", root);
    cr_assert_eq(mkdir(d, 0755), 0);
    snprintf(d, sizeof(d), "%s/css", root);
    cr_assert_eq(mkdir(d, 0755), 0);
    snprintf(d, sizeof(d), "%s/docs", root);
    cr_assert_eq(mkdir(d, 0755), 0);
    put("index.html", "<!doctype html><title>usher</title>");
    put("js/app.js", "export const x = 1;\n");
    put("css/site.css", "body{color:red}\n");
    put("docs/index.html", "<p>docs</p>");
    put(".env", "SECRET=1\n");
    FILE *f = fopen(outside, "w");
    cr_assert_not_null(f);
    fputs("top secret\n", f);
    fclose(f);
    char link[600];
    snprintf(link, sizeof(link), "%s/leak.txt", root);
    cr_assert_eq(symlink(outside, link), 0);
}

static void start_web(void)
{
    make_root();
    h_start_env((const char *const[]){"--web-root", root, NULL}, NULL);
}

/* One request on a new connection; `no_body`: the answer has none to read
 * (HEAD, 304). */
static h_response get_nb(const char *path, const char *headers, const char *method, bool no_body)
{
    h_client c = h_cli_open();
    char req[1024];
    snprintf(req, sizeof(req), "%s %s HTTP/1.1\r\nHost: x\r\n%s\r\n", method, path,
             headers != NULL ? headers : "");
    h_cli_sends(&c, req);
    h_response r;
    int rc = h_read_response_opt(&c, &r, 5000, no_body);
    cr_assert_eq(rc, H_RR_OK, "%s %s: %s", method, path, h_rr_name(rc));
    h_cli_close(&c);
    return r;
}

static h_response get_h(const char *path, const char *headers, const char *method)
{
    return get_nb(path, headers, method, strcmp(method, "HEAD") == 0);
}

static void header_is(const h_response *r, const char *name, const char *want)
{
    char v[512];
    cr_assert(h_header_get(r->head, name, v, sizeof(v)), "no %s in\n%s", name, r->head);
    cr_assert_str_eq(v, want, "%s", name);
}

Test(web, serves_files_with_their_types_and_headers)
{
    start_web();
    h_response r = get_h("/", NULL, "GET");
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(r.body, "<!doctype html><title>usher</title>");
    header_is(&r, "Content-Type", "text/html; charset=utf-8");
    header_is(&r, "Cache-Control", "no-cache");
    header_is(&r, "X-Content-Type-Options", "nosniff");
    header_is(&r, "Content-Security-Policy",
              "default-src 'self'; connect-src 'self'; img-src 'self' data:; style-src 'self' "
              "'unsafe-inline'; frame-ancestors 'none'");
    cr_assert(h_has_header(&r, "ETag"), "%s", r.head);
    r = get_h("/usher-config.json", NULL, "GET");
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(r.body, "{\"analytics_url\":null}\n");
    header_is(&r, "Content-Type", "application/json");
    r = get_h("/index.html", NULL, "GET");
    cr_assert_eq(r.status, 200);
    r = get_h("/js/app.js", NULL, "GET");
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(r.body, "export const x = 1;\n");
    header_is(&r, "Content-Type", "text/javascript; charset=utf-8");
    cr_assert_not(h_has_header(&r, "Content-Security-Policy"), "only HTML carries the CSP");
    r = get_h("/css/site.css?v=3", NULL, "GET");
    cr_assert_eq(r.status, 200);
    header_is(&r, "Content-Type", "text/css; charset=utf-8");
    r = get_h("/docs/", NULL, "GET");
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(r.body, "<p>docs</p>");
    r = get_h("/j%73/app.js", NULL, "GET");
    cr_assert_eq(r.status, 200, "a percent-encoded name is decoded");
    h_done();
}

Test(web, revalidates_with_etag_and_answers_head)
{
    start_web();
    h_response r = get_h("/js/app.js", NULL, "GET");
    char etag[64], hdr[128];
    cr_assert(h_header_get(r.head, "ETag", etag, sizeof(etag)));
    snprintf(hdr, sizeof(hdr), "If-None-Match: %s\r\n", etag);
    /* A 304 carries no Content-Length (RFC 9110 15.4.5): read its head by hand. */
    h_client c = h_cli_open();
    char req[256];
    snprintf(req, sizeof(req), "GET /js/app.js HTTP/1.1\r\nHost: x\r\n%s\r\n", hdr);
    h_cli_sends(&c, req);
    c.buf[c.len] = '\0';
    while (strstr(c.buf, "\r\n\r\n") == NULL) {
        cr_assert_gt(h_cli_fill(&c, 5000), 0, "no answer to the revalidation");
        c.buf[c.len] = '\0';
    }
    cr_assert(strncmp(c.buf, "HTTP/1.1 304 ", 13) == 0, "%s", c.buf);
    char got[64];
    cr_assert(h_header_get(c.buf, "ETag", got, sizeof(got)) && strcmp(got, etag) == 0, "%s", c.buf);
    cr_assert(strstr(c.buf, "\r\n\r\n")[4] == '\0', "a 304 has no body: %s", c.buf);
    h_cli_close(&c);
    r = get_h("/js/app.js", "If-None-Match: \"0000000000000000\"\r\n", "GET");
    cr_assert_eq(r.status, 200, "another ETag gets the file");
    r = get_h("/js/app.js", NULL, "HEAD");
    cr_assert_eq(r.status, 200);
    header_is(&r, "Content-Length", "20");
    h_done();
}

Test(web, nothing_outside_the_root_and_no_hidden_files)
{
    start_web();
    static const char *const paths[] = {
        "/leak.txt", /* a symbolic link out of the root */
        "/../secret.txt",
        "/js/../../secret.txt",
        "/%2e%2e/secret.txt",
        "/js%2f..%2f..%2fsecret.txt",
        "/..%2fsecret.txt",
        "/.env",
        "/%2eenv",
        "/index.html%00.js",
        "/js/app.js/",
        "/nope.html",
    };
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        h_response r = get_h(paths[i], NULL, "GET");
        cr_assert(r.status == 404 || r.status == 400, "%s answered %d:\n%s", paths[i], r.status,
                  r.body);
        cr_assert_null(strstr(r.body, "secret"), "%s leaked: %s", paths[i], r.body);
    }
    h_done();
}

Test(web, writes_are_refused_and_the_api_keeps_its_answers)
{
    start_web();
    h_response r = get_h("/index.html", "Content-Length: 0\r\n", "POST");
    h_assert_problem(&r, 405, "method-not-allowed");
    header_is(&r, "Allow", "GET, HEAD");
    r = get_h("/api/nope", NULL, "GET");
    h_assert_problem(&r, 404, "not-found");
    r = get_h("/livez", NULL, "GET");
    cr_assert_eq(r.status, 200);
    h_done();
}

Test(web, an_unreadable_root_stops_the_start)
{
    char out[4096];
    int st = h_run((const char *const[]){"--listen", "127.0.0.1:0", "--web-root",
                                         "/nonexistent/usher-web-root", NULL},
                   NULL, out, sizeof(out));
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) != 0, "usherd started without its web root: %s",
              out);
    char log[256];
    snprintf(log, sizeof(log), "%s/run.log", h_srv.root);
    const char *err = h_slurp(log);
    cr_assert_not_null(strstr(err, "--web-root"), "the error names the flag: %s", err);
}

Test(web, the_analytics_origin_reaches_the_csp_and_the_pages)
{
    make_root();
    h_start_env(
        (const char *const[]){"--web-root", root, "--analytics-url", "http://127.0.0.1:8081", NULL},
        NULL);
    h_response r = get_h("/", NULL, "GET");
    cr_assert_eq(r.status, 200);
    header_is(&r, "Content-Security-Policy",
              "default-src 'self'; connect-src 'self' http://127.0.0.1:8081; img-src 'self' "
              "data:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'");
    r = get_h("/usher-config.json", NULL, "GET");
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(r.body, "{\"analytics_url\":\"http://127.0.0.1:8081\"}\n");
    h_done();
}

/* Anything but a bare origin would let the flag write into the CSP header or point the pages
 * at a path: refused at start, naming the flag. So is a usher-config.json of one's own. */
Test(web, a_bad_analytics_origin_or_a_config_file_stops_the_start)
{
    make_root();
    const char *bad[] = {
        "http://a;b",        "http://127.0.0.1:8081/", "ftp://host", "http://",
        "http://host:99999", "http://ho st",           "http://h'x", "https://[::1",
        "127.0.0.1:8081",    "http://host:8081/api"};
    char log[256];
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char out[4096];
        int st = h_run((const char *const[]){"--listen", "127.0.0.1:0", "--web-root", root,
                                             "--analytics-url", bad[i], NULL},
                       NULL, out, sizeof(out));
        cr_assert(WIFEXITED(st) && WEXITSTATUS(st) != 0, "started with --analytics-url %s", bad[i]);
        snprintf(log, sizeof(log), "%s/run.log", h_srv.root);
        const char *err = h_slurp(log);
        cr_assert_not_null(strstr(err, "--analytics-url"), "%s: the error names the flag: %s",
                           bad[i], err);
    }
    put("usher-config.json", "{}");
    char out[4096];
    int st = h_run((const char *const[]){"--listen", "127.0.0.1:0", "--web-root", root, NULL}, NULL,
                   out, sizeof(out));
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) != 0, "started with its own usher-config.json");
    snprintf(log, sizeof(log), "%s/run.log", h_srv.root);
    cr_assert_not_null(strstr(h_slurp(log), "usher-config.json"), "%s", h_slurp(log));
}
