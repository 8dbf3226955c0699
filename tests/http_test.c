/*
 * http_test.c - usherd end to end over raw TCP: the real binary ($USHERD) is
 * started per test on 127.0.0.1:0 with a fresh data directory and two shards,
 * spoken to with hand-written HTTP/1.1 (no client library), and stopped with
 * SIGTERM: it must exit 0 promptly, log a final snapshot for every shard and
 * "usherd: stopped", and the data directory is removed afterwards.
 *
 * Covers the health endpoints, problem+json errors, keep-alive, pipelining
 * (in order, with and without reading pauses), split reads, every bound
 * (431, 414, 413, 400, 408, idle close, 503 at the connection limit),
 * request smuggling, concurrency, shutdown with open connections and
 * restart on the same data directory.
 *
 * Every server process is killed and every directory removed even when a
 * test fails (suite fini, atexit, and PR_SET_PDEATHSIG in the child). The
 * server process and the raw client are tests/harness.c.
 */
#define _GNU_SOURCE

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

TestSuite(http, .init = h_suite_init, .fini = h_suite_fini, .timeout = 60);

/* Sends `req` on a fresh connection and expects exactly one error response
 * with `status` (problem type `slug`), Connection: close, then recv 0. */
static void expect_refused(const char *req, size_t len, int status, const char *slug,
                           const char *what)
{
    h_client c = h_cli_open();
    h_cli_send(&c, req, len);
    h_response r = h_expect_response(&c, 5000, what);
    cr_assert_eq(r.status, status, "%s: expected %d, got %d: %s%s", what, status, r.status, r.head,
                 r.body);
    h_assert_problem(&r, status, slug);
    h_assert_closing(&r);
    h_expect_closed(&c, 3000, what);
    h_cli_close(&c);
}

/* ---- Health endpoints and errors -------------------------------------------- */

Test(http, livez)
{
    h_start("--max-connections", "8");
    h_client c = h_cli_open();
    h_response r = h_get(&c, "/livez");
    cr_assert_eq(r.status, 200, "%s", r.head);
    char ct[128] = "";
    cr_assert(h_header_get(r.head, "Content-Type", ct, sizeof(ct)));
    cr_assert_str_eq(ct, "application/json");
    cr_assert_str_eq(r.body, "{\"status\":\"ok\"}");
    r = h_get(&c, "/livez?probe=1"); /* a query string is the same resource */
    cr_assert_eq(r.status, 200, "%s", r.head);
    h_cli_close(&c);
    h_done();
}

Test(http, readyz)
{
    h_start("--max-connections", "8");
    h_client c = h_cli_open();
    h_response r = h_get(&c, "/readyz");
    cr_assert_eq(r.status, 200, "%s%s", r.head, r.body);
    char ct[128] = "";
    cr_assert(h_header_get(r.head, "Content-Type", ct, sizeof(ct)));
    cr_assert_str_eq(ct, "application/json");
    cr_assert_not_null(strstr(r.body, "\"status\":\"ready\""), "%s", r.body);
    cr_assert_eq(h_count_of(r.body, "\"shard\":"), 2, "two shards expected: %s", r.body);
    cr_assert_not_null(strstr(r.body, "\"shard\":0,\"ready\":true"), "%s", r.body);
    cr_assert_not_null(strstr(r.body, "\"shard\":1,\"ready\":true"), "%s", r.body);
    h_cli_close(&c);
    h_done();
}

Test(http, metrics)
{
    h_start("--max-connections", "8");
    h_client c = h_cli_open();
    h_response r = h_get(&c, "/nope"); /* something to count */
    r = h_get(&c, "/metrics");
    cr_assert_eq(r.status, 200, "%s", r.head);
    char ct[128] = "";
    cr_assert(h_header_get(r.head, "Content-Type", ct, sizeof(ct)));
    cr_assert_eq(strncmp(ct, "text/plain", 10), 0, "Content-Type %s", ct);
    cr_assert_not_null(strstr(r.body, "# TYPE usher_connections gauge\n"), "%s", r.body);
    const char *line = strstr(r.body, "\nusher_connections ");
    cr_assert_not_null(line, "no usher_connections sample: %s", r.body);
    cr_assert_geq(atoi(line + strlen("\nusher_connections ")), 1, "this connection is open");
    cr_assert_geq(h_count_of(r.body, "# TYPE "), 5, "%s", r.body);
    /* Every sample's family has a TYPE line; the 404 above was counted. */
    cr_assert_not_null(strstr(r.body, "# TYPE usher_http_requests_total counter"), "%s", r.body);
    cr_assert_not_null(strstr(r.body, "code=\"4xx\"} 1\n"), "the 404 is counted: %s", r.body);
    cr_assert_eq(r.body[r.body_len - 1], '\n', "text format ends with a newline");
    h_cli_close(&c);
    h_done();
}

Test(http, unknown_path_is_404_problem_json)
{
    h_start("--max-connections", "8");
    h_client c = h_cli_open();
    const char *paths[] = {"/nope", "/", "/livez/", "/livezz", "/api/v1/showtimes"};
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        h_response r = h_get(&c, paths[i]);
        h_assert_problem(&r, 404, "not-found");
        cr_assert(!h_has_header(&r, "Connection"), "a 404 keeps the connection: %s", r.head);
    }
    /* Still open and usable. */
    h_response r = h_get(&c, "/livez");
    cr_assert_eq(r.status, 200);
    h_cli_close(&c);
    h_done();
}

Test(http, wrong_method_is_405_with_allow)
{
    h_start("--max-connections", "8");
    h_client c = h_cli_open();
    const char *reqs[] = {
        "POST /livez HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n",
        "POST /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2\r\n\r\n{}",
        "DELETE /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        "PUT /livez HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n"
        "2\r\n{}\r\n0\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof(reqs) / sizeof(reqs[0]); i++) {
        h_cli_sends(&c, reqs[i]);
        h_response r = h_expect_response(&c, 5000, reqs[i]);
        h_assert_problem(&r, 405, "method-not-allowed");
        char allow[64] = "";
        cr_assert(h_header_get(r.head, "Allow", allow, sizeof(allow)), "no Allow: %s", r.head);
        cr_assert_str_eq(allow, "GET, HEAD"); /* HEAD is supported wherever GET is (RFC 9110) */
    }
    h_cli_close(&c);
    h_done();
}

/* HEAD responses carry no body (RFC 9110 9.3.2); a body would be read by the
 * client as the start of the next response. */
Test(http, head_response_has_no_body)
{
    h_start("--max-connections", "8");
    h_client c = h_cli_open();
    h_cli_sends(&c, "HEAD /livez HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
                    "GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    h_response r;
    int rc = h_read_response_opt(&c, &r, 5000, true);
    cr_assert_eq(rc, H_RR_OK, "HEAD: %s", h_rr_name(rc));
    cr_assert_eq(r.status, 200, "HEAD /livez: %d", r.status);
    rc = h_read_response(&c, &r, 5000);
    cr_assert(rc == H_RR_OK && r.status == 200,
              "the response after a HEAD response must start right after its head; found "
              "'%.60s' (the HEAD response carried a body)",
              rc == H_RR_BAD ? c.buf : r.head);
    cr_assert_str_eq(r.body, "{\"status\":\"ok\"}");
    h_cli_close(&c);
    h_done();
}

/* ---- Keep-alive and connection close ------------------------------------------ */

Test(http, keep_alive_100_requests)
{
    h_start("--max-connections", "8", "--idle-timeout", "500");
    h_client c = h_cli_open();
    for (int i = 0; i < 100; i++) {
        const char *path = i % 3 == 0 ? "/livez" : i % 3 == 1 ? "/readyz" : "/nope";
        h_response r = h_get(&c, path);
        int want = i % 3 == 2 ? 404 : 200;
        cr_assert_eq(r.status, want, "request %d (%s): %d", i, path, r.status);
        cr_assert(!h_has_header(&r, "Connection"), "request %d: %s", i, r.head);
    }
    cr_assert_eq(h_wait_close(&c, 100), H_RR_TIMEOUT, "the connection stays open");
    h_cli_close(&c);
    h_done();
}

Test(http, http10_without_keep_alive_closes)
{
    h_start("--max-connections", "8");
    h_client c = h_cli_open();
    h_cli_sends(&c, "GET /livez HTTP/1.0\r\n\r\n");
    h_response r = h_expect_response(&c, 5000, "HTTP/1.0");
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(r.body, "{\"status\":\"ok\"}");
    h_assert_closing(&r);
    h_expect_closed(&c, 3000, "HTTP/1.0 without keep-alive");
    h_cli_close(&c);

    /* HTTP/1.0 asking for keep-alive keeps the connection. */
    c = h_cli_open();
    for (int i = 0; i < 3; i++) {
        h_cli_sends(&c, "GET /livez HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        r = h_expect_response(&c, 5000, "HTTP/1.0 keep-alive");
        cr_assert_eq(r.status, 200);
    }
    h_cli_close(&c);
    h_done();
}

Test(http, connection_close_closes)
{
    h_start("--max-connections", "8");
    h_client c = h_cli_open();
    h_response r = h_get(&c, "/livez");
    h_cli_sends(&c, "GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    r = h_expect_response(&c, 5000, "Connection: close");
    cr_assert_eq(r.status, 200);
    h_assert_closing(&r);
    h_expect_closed(&c, 3000, "Connection: close");
    h_cli_close(&c);

    /* Nothing after the closing request is answered. */
    c = h_cli_open();
    h_cli_sends(&c, "GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
                    "GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    r = h_expect_response(&c, 5000, "Connection: close then more");
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(r.body, "{\"status\":\"ok\"}");
    h_expect_closed(&c, 3000, "after a Connection: close response");
    h_cli_close(&c);
    h_done();
}

/* A client that shuts its sending side after a request still gets the answer. */
Test(http, half_close_still_answered)
{
    h_start("--max-connections", "8");
    h_client c = h_cli_open();
    h_cli_sends(&c, "GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
                    "GET /nope HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    cr_assert_eq(shutdown(c.fd, SHUT_WR), 0);
    h_response r = h_expect_response(&c, 5000, "half-close 1");
    cr_assert_eq(r.status, 200);
    r = h_expect_response(&c, 5000, "half-close 2");
    cr_assert_eq(r.status, 404);
    h_expect_closed(&c, 3000, "after the client's FIN");
    h_cli_close(&c);
    h_done();
}

/* ---- Pipelining ---------------------------------------------------------------- */

/* Request i asks for kinds[pattern(i)]; the answers tell them apart. */
static int pipe_kind(int i)
{
    static const int pattern[] = {0, 2, 1, 1, 0, 2, 2, 0, 1, 2, 0, 0, 1};
    return pattern[(i * 7 + i / 13) % 13];
}

static size_t build_pipeline(char *out, size_t cap, int n)
{
    static const char *paths[] = {"/livez", "/readyz", "/nope"};
    size_t len = 0;
    for (int i = 0; i < n; i++) {
        int w = snprintf(out + len, cap - len, "GET %s?i=%d HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
                         paths[pipe_kind(i)], i);
        cr_assert(w > 0 && (size_t)w < cap - len);
        len += (size_t)w;
    }
    return len;
}

static void expect_pipeline_answers(h_client *c, int n)
{
    for (int i = 0; i < n; i++) {
        h_response r;
        int rc = h_read_response(c, &r, 10000);
        cr_assert_eq(rc, H_RR_OK, "pipelined response %d of %d: %s", i, n, h_rr_name(rc));
        switch (pipe_kind(i)) {
        case 0:
            cr_assert(r.status == 200 && strcmp(r.body, "{\"status\":\"ok\"}") == 0,
                      "response %d should answer /livez: %d %s", i, r.status, r.body);
            break;
        case 1:
            cr_assert(r.status == 200 && strstr(r.body, "\"shards\":") != NULL,
                      "response %d should answer /readyz: %d %s", i, r.status, r.body);
            break;
        default:
            cr_assert(r.status == 404, "response %d should answer /nope: %d %s", i, r.status,
                      r.body);
        }
    }
}

Test(http, pipelining_20_in_order)
{
    h_start("--max-connections", "8");
    h_client c = h_cli_open();
    char req[8192];
    size_t len = build_pipeline(req, sizeof(req), 20);
    h_cli_send(&c, req, len); /* one send() */
    expect_pipeline_answers(&c, 20);
    cr_assert_eq(h_wait_close(&c, 100), H_RR_TIMEOUT, "no extra bytes, still open");
    h_cli_close(&c);
    h_done();
}

Test(http, pipelining_with_pipeline_4)
{
    h_start("--max-connections", "8", "--pipeline", "4");
    h_client c = h_cli_open();
    char req[8192];
    size_t len = build_pipeline(req, sizeof(req), 20);
    h_cli_send(&c, req, len);
    expect_pipeline_answers(&c, 20);

    /* Far more than the hard cap of 64 queued answers, in one go. */
    static char big[200 * 64];
    len = build_pipeline(big, sizeof(big), 200);
    h_cli_send(&c, big, len);
    expect_pipeline_answers(&c, 200);
    cr_assert_eq(h_wait_close(&c, 100), H_RR_TIMEOUT, "no extra bytes, still open");
    h_cli_close(&c);
    h_done();
}

/* Requests with bodies (Content-Length and chunked) then more requests, in one
 * send(): the bodies are framed correctly. */
Test(http, pipelining_with_bodies)
{
    h_start("--max-connections", "8", "--pipeline", "4");
    h_client c = h_cli_open();
    /* The first body looks like a request; it is only a body. */
    const char *body = "GET /livez HTTP/1.1\r\n\r\nXX";
    char req[1024];
    int n = snprintf(req, sizeof(req),
                     "POST /nope HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %zu\r\n\r\n%s"
                     "POST /livez HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                     "5\r\nGET /\r\n0\r\n\r\n"
                     "GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
                     strlen(body), body);
    h_cli_send(&c, req, (size_t)n);
    h_response r = h_expect_response(&c, 5000, "POST with Content-Length");
    cr_assert_eq(r.status, 404, "the body is not a request: %d", r.status);
    r = h_expect_response(&c, 5000, "chunked POST");
    cr_assert_eq(r.status, 405, "%d", r.status);
    r = h_expect_response(&c, 5000, "GET after bodies");
    cr_assert_eq(r.status, 200, "%d", r.status);
    cr_assert_eq(h_wait_close(&c, 200), H_RR_TIMEOUT, "exactly three answers");
    h_cli_close(&c);
    h_done();
}

/* Sum of usher_http_requests_total{code="4xx"} over the shards. */
static unsigned long long answers_4xx(h_client *m)
{
    h_response r = h_get(m, "/metrics");
    cr_assert_eq(r.status, 200);
    unsigned long long sum = 0;
    for (const char *p = strstr(r.body, "code=\"4xx\"} "); p != NULL;
         p = strstr(p + 1, "code=\"4xx\"} "))
        sum += strtoull(p + strlen("code=\"4xx\"} "), NULL, 10);
    return sum;
}

/* A client that never reads must not make the server queue answers without
 * bound: once --pipeline answers are owed, reading pauses (and the kernel
 * buffers fill). Counted with the server's own metric, from another
 * connection. */
/* A client that stops reading is closed at the idle timeout even while
 * answers to it wait unsent: otherwise it would hold a connection and the
 * queued answers forever. */
Test(http, client_that_stops_reading_is_closed_at_the_idle_timeout)
{
    h_start("--max-connections", "8", "--pipeline", "4", "--idle-timeout", "1500");
    h_client c = h_cli_open_rcvbuf(4096);
    static const char one[] = "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    size_t rlen = sizeof(one) - 1;
    for (int i = 0; i < 2000; i++) {
        struct pollfd p = {.fd = c.fd, .events = POLLOUT};
        if (poll(&p, 1, 500) <= 0)
            break; /* the server stopped reading */
        ssize_t n = send(c.fd, one, rlen, MSG_NOSIGNAL);
        cr_assert_eq((size_t)n, rlen, "send: %s", strerror(errno));
    }
    h_sleep_ms(3000); /* past the idle timeout, reading nothing */
    /* Now read: the server has closed, so what its kernel still held
     * arrives, then the end (or a reset). Without the close the answers
     * would keep coming for seconds. */
    int64_t deadline = h_now_ms() + 1000;
    char buf[65536];
    for (;;) {
        struct pollfd p = {.fd = c.fd, .events = POLLIN};
        int left = (int)(deadline - h_now_ms());
        cr_assert_gt(left, 0,
                     "the connection is still open 4 s after the client stopped reading "
                     "(--idle-timeout 1500)");
        if (poll(&p, 1, left) <= 0)
            continue;
        ssize_t n = recv(c.fd, buf, sizeof(buf), 0);
        if (n == 0 || (n < 0 && errno == ECONNRESET))
            break;
        cr_assert_gt(n, 0, "recv: %s", strerror(errno));
    }
    h_cli_close(&c);
    h_done();
}

/* A 408 queued behind answers still owed: when those leave, reading must
 * not start again, since the parser is stuck mid-request (it crashed the
 * server on the next header bytes). Password checks on a one-thread pool
 * make the owed answers slow. */
Test(http, no_reading_after_a_408_queued_behind_owed_answers)
{
    static const char *const args[] = {"--max-connections", "32", "--request-timeout", "100", NULL};
    static const char *const env[] = {"UV_THREADPOOL_SIZE=1", NULL};
    h_start_env(args, env);
    static const char login[] =
        "POST /api/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        "Content-Length: 52\r\n\r\n{\"email\":\"nobody@x.example\",\"password\":\"whatever12\"}";
    cr_assert_eq(strlen(strstr(login, "{")), 52, "Content-Length must match the body");
    h_client busy[6];
    for (int i = 0; i < 6; i++) { /* fill the pool */
        busy[i] = h_cli_open();
        h_cli_sends(&busy[i], login);
    }
    h_client c = h_cli_open();
    char two[1024];
    snprintf(two, sizeof(two), "%s%s", login, login);
    h_cli_sends(&c, two);
    h_cli_sends(&c, "GET /livez HTTP/1.1\r\nHost: x\r\n"); /* never finished: 408 */
    h_response a = h_expect_response(&c, 10000, "first login");
    cr_assert_eq(a.status, 401);
    h_sleep_ms(50);
    /* The rest of the unfinished request; the server must ignore it. */
    h_cli_send_raw(&c, "X-After: 1\r\n\r\n", 15);
    h_response b = h_expect_response(&c, 10000, "second login");
    cr_assert_eq(b.status, 401);
    h_response t = h_expect_response(&c, 10000, "the 408");
    cr_assert_eq(t.status, 408);
    h_cli_close(&c);
    for (int i = 0; i < 6; i++)
        h_cli_close(&busy[i]);
    h_client m = h_cli_open();
    h_response live = h_get(&m, "/livez");
    cr_assert_eq(live.status, 200, "the server must still serve");
    h_cli_close(&m);
    h_done();
}

Test(http, pipeline_backpressure_when_client_does_not_read)
{
    h_start("--max-connections", "8", "--pipeline", "4", "--idle-timeout", "3000");
    h_client c = h_cli_open_rcvbuf(4096);
    static const char one[] = "GET /nope HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    enum { BATCH = 1000, LIMIT = 4 << 20 };
    size_t rlen = sizeof(one) - 1;
    static char batch[(sizeof(one) - 1) * BATCH];
    for (int i = 0; i < BATCH; i++)
        memcpy(batch + (size_t)i * rlen, one, rlen);
    size_t sent = 0, off = 0;
    while (sent < LIMIT) {
        struct pollfd p = {.fd = c.fd, .events = POLLOUT};
        if (poll(&p, 1, 1000) <= 0)
            break; /* the server stopped reading: the pressure reached us */
        ssize_t n = send(c.fd, batch + off, rlen * BATCH - off, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            continue;
        cr_assert_gt(n, 0, "send: %s", strerror(errno));
        sent += (size_t)n;
        off = (off + (size_t)n) % (rlen * BATCH);
    }
    /* Let the server take in what it will: until its count stops moving. */
    h_client m = h_cli_open();
    unsigned long long answered = 0, before;
    int64_t deadline = h_now_ms() + 8000;
    do {
        before = answered;
        h_sleep_ms(300);
        answered = answers_4xx(&m);
    } while (answered != before && h_now_ms() < deadline);
    h_cli_close(&m);
    h_cli_close(&c);
    /* Kernel buffers (<= 4 MiB of answers here, ~200 bytes each) hold fewer
     * than 22000; the rest must wait unread in the server's socket. */
    cr_assert_lt(answered, 30000,
                 "the server produced %llu answers for a client that read none (%zu requests "
                 "sent): with --pipeline 4 reading should pause; answers are queued in memory "
                 "without bound",
                 answered, sent / rlen);
    h_done();
}

/* ---- Split reads ------------------------------------------------------------------ */

Test(http, request_split_one_byte_at_a_time)
{
    h_start("--max-connections", "8", "--request-timeout", "5000");
    h_client c = h_cli_open();
    const char *reqs[] = {
        "GET /readyz?x=1 HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: */*\r\n"
        "Content-Type: application/json\r\n\r\n",
        "POST /nope HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\n\r\nhello",
        "PUT /livez HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    };
    const int want[] = {200, 404, 405};
    for (size_t k = 0; k < 3; k++) {
        for (const char *p = reqs[k]; *p != '\0'; p++) {
            h_cli_send(&c, p, 1);
            h_sleep_ms(1);
        }
        h_response r = h_expect_response(&c, 5000, reqs[k]);
        cr_assert_eq(r.status, want[k], "split request %zu: %d", k, r.status);
    }
    h_cli_close(&c);
    h_done();
}

/* ---- Bounds --------------------------------------------------------------------------- */

Test(http, headers_over_limit_431)
{
    h_start("--max-connections", "8", "--max-header-bytes", "2048");
    char req[4096];
    int n = snprintf(req, sizeof(req),
                     "GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: %03000d\r\n\r\n", 7);
    expect_refused(req, (size_t)n, 431, "headers-too-large", "one 3000-byte header");

    /* Just under the limit is fine. */
    h_client c = h_cli_open();
    n = snprintf(req, sizeof(req), "GET /livez HTTP/1.1\r\nX-Big: %01900d\r\n\r\n", 7);
    h_cli_send(&c, req, (size_t)n);
    h_response r = h_expect_response(&c, 5000, "1900-byte header");
    cr_assert_eq(r.status, 200);
    h_cli_close(&c);
    h_done();
}

/* The limit is on the request line and headers as sent: 1500 tiny header
 * lines are 6 KB of header section against a 2 KB limit. */
Test(http, headers_over_limit_many_small_fields_431)
{
    h_start("--max-connections", "8", "--max-header-bytes", "2048");
    static char req[8192];
    size_t len = (size_t)sprintf(req, "GET /livez HTTP/1.1\r\n");
    for (int i = 0; i < 1500; i++)
        len += (size_t)sprintf(req + len, "X:\r\n");
    len += (size_t)sprintf(req + len, "\r\n");
    h_client c = h_cli_open();
    h_cli_send(&c, req, len);
    h_response r = h_expect_response(&c, 5000, "1500 header lines");
    cr_assert_eq(r.status, 431,
                 "a %zu-byte header section (1500 fields) against --max-header-bytes 2048 got %d: "
                 "only name and value bytes are counted, not the ':' and CRLF of each line",
                 len, r.status);
    h_cli_close(&c);
    h_done();
}

Test(http, url_over_2048_414)
{
    h_start("--max-connections", "8", "--max-header-bytes", "8192");
    char req[4096];
    int n = snprintf(req, sizeof(req), "GET /%02100d HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 1);
    expect_refused(req, (size_t)n, 414, "uri-too-long", "2101-byte URL");
    h_done();
}

Test(http, content_length_over_limit_413_before_body)
{
    h_start("--max-connections", "8", "--max-body-bytes", "4096");
    const char *req = "POST /livez HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5000\r\n\r\n";
    expect_refused(req, strlen(req), 413, "body-too-large", "Content-Length 5000, no body sent");

    /* A body at the limit is read. */
    h_client c = h_cli_open();
    static char ok[8192];
    int n = sprintf(ok, "POST /nope HTTP/1.1\r\nContent-Length: 4096\r\n\r\n");
    memset(ok + n, 'b', 4096);
    h_cli_send(&c, ok, (size_t)n + 4096);
    h_response r = h_expect_response(&c, 5000, "4096-byte body");
    cr_assert_eq(r.status, 404);
    h_cli_close(&c);
    h_done();
}

Test(http, chunked_body_over_limit_413)
{
    h_start("--max-connections", "8", "--max-body-bytes", "4096");
    static char req[16384];
    /* Three 1000-byte chunks: fine. */
    size_t len = (size_t)sprintf(req, "POST /nope HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
    for (int i = 0; i < 3; i++) {
        len += (size_t)sprintf(req + len, "3e8\r\n");
        memset(req + len, 'c', 1000);
        len += 1000;
        len += (size_t)sprintf(req + len, "\r\n");
    }
    len += (size_t)sprintf(req + len, "0\r\n\r\n");
    h_client c = h_cli_open();
    h_cli_send(&c, req, len);
    h_response r = h_expect_response(&c, 5000, "3000-byte chunked body");
    cr_assert_eq(r.status, 404);
    h_cli_close(&c);

    /* Five: the body grows past 4096 and is refused. */
    len = (size_t)sprintf(req, "POST /nope HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
    for (int i = 0; i < 5; i++) {
        len += (size_t)sprintf(req + len, "3e8\r\n");
        memset(req + len, 'c', 1000);
        len += 1000;
        len += (size_t)sprintf(req + len, "\r\n");
    }
    expect_refused(req, len, 413, "body-too-large", "5000-byte chunked body");
    h_done();
}

/* A client that sends its (too large) body without waiting still reads the
 * 413 and then an orderly close: the server must not reset the connection
 * with the unread body in its buffer (RFC 9112 9.6, staged close). */
Test(http, body_too_large_sent_anyway_gets_413_and_orderly_close)
{
    h_start("--max-connections", "8", "--max-body-bytes", "4096");
    enum { BODY = 200000 };
    static char req[BODY + 256];
    int n =
        sprintf(req, "POST /nope HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %d\r\n\r\n", BODY);
    memset(req + n, 'x', BODY);
    h_client c = h_cli_open();
    /* The server may stop reading part way; what cannot be sent is dropped. */
    size_t off = 0, len = (size_t)n + BODY;
    int64_t deadline = h_now_ms() + 2000;
    while (off < len && h_now_ms() < deadline) {
        ssize_t w = send(c.fd, req + off, len - off, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w > 0)
            off += (size_t)w;
        else if (w < 0 && errno != EAGAIN && errno != EINTR)
            break;
        else
            h_sleep_ms(5);
    }
    h_response r = h_expect_response(&c, 5000, "413 with the body in flight");
    h_assert_problem(&r, 413, "body-too-large");
    int rc = h_wait_close(&c, 3000);
    cr_assert_eq(rc, H_RR_EOF,
                 "after the 413 the connection should close with a FIN, got %s (the server "
                 "closed with %zu unread request bytes, which resets the connection; a client "
                 "still sending can lose the 413)",
                 h_rr_name(rc), off);
    h_cli_close(&c);
    h_done();
}

Test(http, content_length_and_transfer_encoding_400)
{
    h_start("--max-connections", "8");
    const char *req = "POST /nope HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\n"
                      "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    expect_refused(req, strlen(req), 400, "malformed-request", "CL + TE");
    h_done();
}

Test(http, garbage_request_line_400)
{
    h_start("--max-connections", "8");
    const char *reqs[] = {
        "HELLO WORLD\r\n\r\n",
        "GET\r\n\r\n",
        "GET /livez HTTP/1.1 extra\r\n\r\n",
        "GET /livez HTTP/9.9\r\n\r\n",
        "get /livez HTTP/1.1\r\n\r\n",
        "GET /li vez HTTP/1.1\r\n\r\n",
        "\x16\x03\x01\x02\x01\x01\x01\x01\xfc\x03\x03\r\n\r\n", /* TLS ClientHello */
    };
    for (size_t i = 0; i < sizeof(reqs) / sizeof(reqs[0]); i++)
        expect_refused(reqs[i], strlen(reqs[i]), 400, "malformed-request", reqs[i]);
    /* NUL in the URL. */
    static const char nul[] = "GET /li\0vez HTTP/1.1\r\n\r\n";
    expect_refused(nul, sizeof(nul) - 1, 400, "malformed-request", "NUL in URL");
    h_done();
}

Test(http, invalid_header_characters_400)
{
    h_start("--max-connections", "8");
    const char *reqs[] = {
        "GET /livez HTTP/1.1\r\nX-A: a\x01z\r\n\r\n",
        "GET /livez HTTP/1.1\r\nX-A: a\x7fz\r\n\r\n",
        "GET /livez HTTP/1.1\r\nX-A: a\rz\r\n\r\n",
        "GET /livez HTTP/1.1\r\nX\x01: z\r\n\r\n",
        "GET /livez HTTP/1.1\r\nX(A): z\r\n\r\n",
        "GET /livez HTTP/1.1\r\nX-A: z\r\n\x01\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof(reqs) / sizeof(reqs[0]); i++)
        expect_refused(reqs[i], strlen(reqs[i]), 400, "malformed-request", reqs[i]);
    static const char nul[] = "GET /livez HTTP/1.1\r\nX-A: a\0z\r\n\r\n";
    expect_refused(nul, sizeof(nul) - 1, 400, "malformed-request", "NUL in a header value");
    h_done();
}

/* Forms only a lenient parser takes. Field names are tokens (RFC 9110 5.1):
 * not empty, no whitespace; "A server MUST reject, with 400, any received
 * request message that contains whitespace between a header field name and
 * colon" (RFC 9112 5.1); no whitespace inside the request target (RFC 9112
 * 3.2). A front end that reads such a header differently is a smuggling
 * vector. */
Test(http, lenient_header_and_url_forms_400)
{
    h_start("--max-connections", "8");
    const char *reqs[] = {
        "GET /livez HTTP/1.1\r\nX-Forwarded-For : 10.0.0.1\r\n\r\n",
        "GET /livez HTTP/1.1\r\nX A: b\r\n\r\n",
        "GET /livez\t HTTP/1.1\r\n\r\n",
        "GET /livez HTTP/1.1\r\n: empty-name\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof(reqs) / sizeof(reqs[0]); i++) {
        /* Each form is reported on its own (cr_expect), then the next is tried. */
        h_client c = h_cli_open();
        h_cli_sends(&c, reqs[i]);
        h_response r = h_expect_response(&c, 5000, reqs[i]);
        cr_expect_eq(r.status, 400, "%s=> expected 400, got %d %s", reqs[i], r.status, r.body);
        h_cli_close(&c);
    }
    h_done();
}

/* CL.TE, TE.CL and obfuscated framing: one 400, then close; the smuggled
 * request is never answered. */
Test(http, request_smuggling_refused)
{
    h_start("--max-connections", "8");
    const char *smuggled = "GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    const char *framings[] = {
        "Content-Length: 44\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", /* CL.TE */
        "Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n",  /* TE.CL */
        "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n",
        "Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
        "Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
        "Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
        "Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        "Content-Length: 3, 3\r\n\r\nabc",
        "Content-Length: +3\r\n\r\nabc",
        "Transfer-Encoding: chunked\r\n\r\n3\nabc\n0\n\n",
        "Transfer-Encoding: chunked\r\n\r\nfffffffffffffffffff\r\n",
    };
    for (size_t i = 0; i < sizeof(framings) / sizeof(framings[0]); i++) {
        char req[1024];
        int n = snprintf(req, sizeof(req), "POST /nope HTTP/1.1\r\nHost: 127.0.0.1\r\n%s%s",
                         framings[i], smuggled);
        expect_refused(req, (size_t)n, 400, "malformed-request", framings[i]);
    }
    h_done();
}

/* An Upgrade the server does not take is ignored (RFC 9110 7.8): one answer
 * per request, and the connection goes on as HTTP/1.1. A CONNECT gets one
 * answer too. */
Test(http, upgrade_and_connect_get_exactly_one_answer)
{
    h_start("--max-connections", "8");
    h_client c = h_cli_open();
    h_cli_sends(&c, "GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\n"
                    "Upgrade: websocket\r\n\r\n"
                    "GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    h_response r = h_expect_response(&c, 5000, "GET with Upgrade");
    cr_assert_eq(r.status, 200, "%s", r.head);
    r = h_expect_response(&c, 5000, "the request after it");
    cr_expect(r.status == 200 && strstr(r.body, "\"shards\"") != NULL,
              "the second answer on the connection should be /readyz's 200, got %d: %s", r.status,
              r.body);
    h_cli_close(&c);

    c = h_cli_open();
    h_cli_sends(&c, "CONNECT 127.0.0.1:443 HTTP/1.1\r\nHost: 127.0.0.1:443\r\n\r\n");
    r = h_expect_response(&c, 5000, "CONNECT");
    cr_assert(r.status >= 400 && r.status < 500, "CONNECT: %d", r.status);
    int rc = h_wait_close(&c, 300);
    c.buf[c.len] = '\0';
    cr_expect(rc == H_RR_EOF || rc == H_RR_TIMEOUT, "a second answer to one CONNECT: %.300s",
              c.buf);
    h_cli_close(&c);
    h_done();
}

/* ---- Timeouts ------------------------------------------------------------------------- */

Test(http, slow_request_408_then_close)
{
    h_start("--max-connections", "8", "--request-timeout", "300", "--idle-timeout", "5000");
    h_client c = h_cli_open();
    int64_t t0 = h_now_ms();
    h_cli_sends(&c, "GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\n"); /* no blank line */
    h_response r = h_expect_response(&c, 5000, "slow request");
    int64_t took = h_now_ms() - t0;
    h_assert_problem(&r, 408, "request-timeout");
    h_assert_closing(&r);
    cr_assert_geq(took, 250, "408 after %" PRId64 " ms, before --request-timeout 300", took);
    cr_assert_leq(took, 3000, "408 after %" PRId64 " ms", took);
    h_expect_closed(&c, 3000, "after the 408");
    h_cli_close(&c);

    /* A body that stops coming is timed out the same way. */
    c = h_cli_open();
    h_cli_sends(&c, "POST /nope HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc");
    r = h_expect_response(&c, 5000, "slow body");
    h_assert_problem(&r, 408, "request-timeout");
    h_expect_closed(&c, 3000, "after the 408");
    h_cli_close(&c);
    h_done();
}

Test(http, idle_keep_alive_closed_after_idle_timeout)
{
    h_start("--max-connections", "8", "--request-timeout", "300", "--idle-timeout", "500");
    h_client c = h_cli_open();
    h_response r = h_get(&c, "/livez");
    cr_assert_eq(r.status, 200);
    int64_t t0 = h_now_ms();
    int rc = h_wait_close(&c, 5000);
    int64_t took = h_now_ms() - t0;
    cr_assert_eq(rc, H_RR_EOF, "idle connection: %s (silent close expected)", h_rr_name(rc));
    cr_assert_geq(took, 400, "closed after %" PRId64 " ms, before --idle-timeout 500", took);
    h_cli_close(&c);

    /* A connection that never sends anything is closed too. */
    c = h_cli_open();
    rc = h_wait_close(&c, 5000);
    cr_assert_eq(rc, H_RR_EOF, "silent connection: %s", h_rr_name(rc));
    h_cli_close(&c);
    h_done();
}

/* ---- Connection limit -------------------------------------------------------------------- */

Test(http, connection_limit_503_then_recovers)
{
    h_start("--max-connections", "8", "--idle-timeout", "20000");
    h_client cs[8];
    for (int i = 0; i < 8; i++) {
        cs[i] = h_cli_open();
        h_response r = h_get(&cs[i], "/livez"); /* accepted and counted */
        cr_assert_eq(r.status, 200, "connection %d", i);
    }
    /* The 9th: its head, then its body is everything up to the close (checked
     * against Content-Length without stopping the test, so the rest runs). */
    h_client x = h_cli_open();
    h_response r;
    int rc = h_read_response_opt(&x, &r, 5000, true);
    cr_assert_eq(rc, H_RR_OK, "9th connection: expected a 503, got %s", h_rr_name(rc));
    cr_assert_eq(r.status, 503, "%s", r.head);
    char v[64] = "";
    cr_assert(h_header_get(r.head, "Retry-After", v, sizeof(v)), "no Retry-After: %s", r.head);
    cr_assert_gt(atoi(v), 0, "Retry-After %s", v);
    cr_assert(h_header_get(r.head, "Date", v, sizeof(v)), "no Date on the 503: %s", r.head);
    cr_assert(h_header_get(r.head, "Content-Type", v, sizeof(v)));
    cr_assert_str_eq(v, "application/problem+json");
    h_assert_closing(&r);
    cr_assert(h_header_get(r.head, "Content-Length", v, sizeof(v)));
    while ((rc = h_cli_fill(&x, 3000)) > 0)
        ;
    cr_assert_eq(rc, 0, "the refused connection should be closed: %s", h_rr_name(rc));
    x.buf[x.len] = '\0';
    cr_expect_eq(x.len, (size_t)atoi(v),
                 "the 503 says Content-Length: %s but its body is %zu bytes: %s (a client waits "
                 "for the missing bytes, then sees a truncated response)",
                 v, x.len, x.buf);
    cr_expect_not_null(
        strstr(x.buf, "\"type\":\"https://usher.dev/problems/too-many-connections\""), "%s", x.buf);
    cr_expect_not_null(strstr(x.buf, "\"status\":503"), "%s", x.buf);
    h_cli_close(&x);

    /* The eight still work. */
    for (int i = 0; i < 8; i++) {
        r = h_get(&cs[i], "/readyz");
        cr_assert_eq(r.status, 200);
    }
    /* Close three; new connections are served again (the server notices the
     * closes asynchronously, so allow it a moment). */
    for (int i = 0; i < 3; i++)
        h_cli_close(&cs[i]);
    int64_t deadline = h_now_ms() + 3000;
    bool served = false;
    while (!served && h_now_ms() < deadline) {
        h_sleep_ms(50);
        h_client y = h_cli_open();
        h_cli_sends(&y, "GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
        rc = h_read_response(&y, &r, 3000);
        served = rc == H_RR_OK && r.status == 200;
        h_cli_close(&y);
    }
    cr_assert(served, "no new connection served after closing three of eight");
    h_client more[3];
    for (int i = 0; i < 3; i++) {
        more[i] = h_cli_open();
        r = h_get(&more[i], "/livez");
        cr_assert_eq(r.status, 200, "new connection %d after closing three", i);
    }
    for (int i = 0; i < 3; i++)
        h_cli_close(&more[i]);
    for (int i = 3; i < 8; i++)
        h_cli_close(&cs[i]);
    h_done();
}

/* ---- Concurrency -------------------------------------------------------------------------- */

enum { WORKERS = 8, CONNS_PER_WORKER = 25, REQS_PER_CONN = 50 };

typedef struct worker {
    pthread_t thread;
    uint16_t port;
    int ok;
    char err[256];
} worker;

static void *worker_main(void *arg)
{
    worker *w = arg;
    h_client cs[CONNS_PER_WORKER];
    int open = 0;
    for (; open < CONNS_PER_WORKER; open++) {
        int fd = h_tcp_connect(w->port, 0);
        if (fd < 0) {
            snprintf(w->err, sizeof(w->err), "connect: %s", strerror(errno));
            goto out;
        }
        h_cli_init(&cs[open], fd);
    }
    for (int round = 0; round < REQS_PER_CONN; round++) {
        const char *path = round % 10 == 9 ? "/readyz" : "/livez";
        char req[128];
        int n = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", path);
        for (int i = 0; i < CONNS_PER_WORKER; i++) {
            if (!h_cli_send_raw(&cs[i], req, (size_t)n)) {
                snprintf(w->err, sizeof(w->err), "send round %d conn %d: %s", round, i,
                         strerror(errno));
                goto out;
            }
        }
        for (int i = 0; i < CONNS_PER_WORKER; i++) {
            h_response r;
            int rc = h_read_response(&cs[i], &r, 20000);
            if (rc != H_RR_OK) {
                snprintf(w->err, sizeof(w->err), "round %d conn %d: %s", round, i, h_rr_name(rc));
                goto out;
            }
            int status = r.status;
            bool good =
                status == 200 && (round % 10 == 9 ? strstr(r.body, "\"ready\"") != NULL
                                                  : strcmp(r.body, "{\"status\":\"ok\"}") == 0);
            if (!good) {
                snprintf(w->err, sizeof(w->err), "round %d conn %d: status %d", round, i, status);
                goto out;
            }
            w->ok++;
        }
    }
out:
    for (int i = 0; i < open; i++)
        h_cli_close(&cs[i]);
    return NULL;
}

Test(http, concurrency_200_connections_x_50_requests)
{
    h_start("--max-connections", "1000", "--idle-timeout", "30000");
    worker ws[WORKERS];
    memset(ws, 0, sizeof(ws));
    for (int i = 0; i < WORKERS; i++) {
        ws[i].port = h_srv.port;
        cr_assert_eq(pthread_create(&ws[i].thread, NULL, worker_main, &ws[i]), 0);
    }
    int ok = 0;
    for (int i = 0; i < WORKERS; i++) {
        pthread_join(ws[i].thread, NULL);
        ok += ws[i].ok;
    }
    for (int i = 0; i < WORKERS; i++)
        cr_assert_eq(ws[i].err[0], '\0', "worker %d: %s", i, ws[i].err);
    cr_assert_eq(ok, WORKERS * CONNS_PER_WORKER * REQS_PER_CONN, "%d of %d answered 200", ok,
                 WORKERS * CONNS_PER_WORKER * REQS_PER_CONN);
    /* Both shards took connections (SO_REUSEPORT spreads them). */
    h_client c = h_cli_open();
    h_response r = h_get(&c, "/metrics");
    cr_assert_null(strstr(r.body, "usher_connections_accepted_total{shard=\"0\"} 0\n"), "%s",
                   r.body);
    cr_assert_null(strstr(r.body, "usher_connections_accepted_total{shard=\"1\"} 0\n"), "%s",
                   r.body);
    h_cli_close(&c);
    h_done();
}

/* ---- Shutdown and restart --------------------------------------------------------------- */

Test(http, sigterm_with_idle_connections_exits_promptly)
{
    /* Idle limit far beyond the stop deadline: the server must close them. */
    h_start("--max-connections", "8", "--idle-timeout", "60000");
    h_client used = h_cli_open();
    h_response r = h_get(&used, "/livez");
    cr_assert_eq(r.status, 200);
    h_client silent = h_cli_open();
    h_sleep_ms(100);
    int64_t t0 = h_now_ms();
    h_stop_within(3000);
    int64_t took = h_now_ms() - t0;
    h_expect_closed(&used, 1000, "idle keep-alive connection at shutdown");
    h_expect_closed(&silent, 1000, "silent connection at shutdown");
    cr_assert_lt(took, 3000);
    h_cli_close(&used);
    h_cli_close(&silent);
    h_rm_tree(h_srv.root);
    h_srv.root[0] = '\0';
}

Test(http, sigterm_with_partial_request_exits)
{
    h_start("--max-connections", "8", "--request-timeout", "300", "--idle-timeout", "60000");
    h_client c = h_cli_open();
    h_cli_sends(&c, "GET /livez HTTP/1.1\r\nHost: 1");
    h_sleep_ms(50);
    h_stop_within(4000);
    /* Whatever it said (a 408 or nothing), the connection is closed. */
    h_response r;
    int rc = h_read_response(&c, &r, 1000);
    if (rc == H_RR_OK) {
        h_assert_problem(&r, 408, "request-timeout");
        rc = h_wait_close(&c, 1000);
    }
    cr_assert_eq(rc, H_RR_EOF, "%s", h_rr_name(rc));
    h_cli_close(&c);
    h_rm_tree(h_srv.root);
    h_srv.root[0] = '\0';
}

/* A client that stopped reading (its answers stuck in the kernel) must not
 * hold the shutdown for the idle timeout (60 s by default). */
Test(http, sigterm_with_stalled_reader_exits_promptly)
{
    h_start("--max-connections", "8");
    h_client c = h_cli_open_rcvbuf(4096);
    static char req[2000 * 32];
    size_t len = 0;
    for (int i = 0; i < 2000; i++)
        len += (size_t)sprintf(req + len, "GET /metrics HTTP/1.1\r\n\r\n");
    h_cli_send(&c, req, len); /* ~10 MB of answers, never read */
    h_sleep_ms(300);
    h_stop_within(5000);
    h_cli_close(&c);
    h_rm_tree(h_srv.root);
    h_srv.root[0] = '\0';
}

Test(http, restart_on_same_data_dir_recovers)
{
    h_start("--max-connections", "8");
    h_client c = h_cli_open();
    h_response r = h_get(&c, "/readyz");
    cr_assert_eq(r.status, 200);
    h_cli_close(&c);
    h_stop_within(5000);
    uint16_t first = h_srv.port;

    h_start("--max-connections", "8"); /* same h_srv.root, same data dir */
    const char *log = h_slurp(h_srv.errlog);
    cr_assert_not_null(strstr(log, "msg=\"shard recovered\" shard=0"), "%s", log);
    cr_assert_not_null(strstr(log, "msg=\"shard recovered\" shard=1"), "%s", log);
    c = h_cli_open();
    r = h_get(&c, "/readyz");
    cr_assert_eq(r.status, 200, "after restart (port %u, was %u): %s", h_srv.port, first, r.body);
    cr_assert_not_null(strstr(r.body, "\"status\":\"ready\""));
    r = h_get(&c, "/livez");
    cr_assert_eq(r.status, 200);
    h_cli_close(&c);
    h_done();
}

/* ---- Date, Expect, header count ------------------------------------------------------ */

Test(http, every_answer_carries_a_date)
{
    h_start("--max-connections", "8");
    h_client c = h_cli_open();
    const char *paths[] = {"/livez", "/nope"};
    for (size_t i = 0; i < 2; i++) {
        h_response r = h_get(&c, paths[i]);
        char date[64] = "";
        cr_assert(h_header_get(r.head, "Date", date, sizeof(date)), "no Date: %s", r.head);
        /* IMF-fixdate, e.g. "Sat, 21 Nov 2026 07:20:00 GMT" (RFC 9110 5.6.7). */
        struct tm tm;
        memset(&tm, 0, sizeof(tm));
        const char *end = strptime(date, "%a, %d %b %Y %H:%M:%S GMT", &tm);
        cr_assert(end != NULL && *end == '\0', "not an IMF-fixdate: '%s'", date);
        time_t when = timegm(&tm), now = time(NULL);
        cr_assert(when >= now - 5 && when <= now + 5, "Date '%s' is not now", date);
    }
    h_cli_close(&c);
    h_done();
}

Test(http, expect_100_continue_gets_the_go_ahead_then_the_answer)
{
    h_start("--max-connections", "8");
    h_client c = h_cli_open();
    h_cli_sends(&c, "POST /nope HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\n"
                    "Expect: 100-continue\r\n\r\n");
    static h_response r;                              /* large: keep it off the stack */
    int rc = h_read_response_opt(&c, &r, 5000, true); /* an interim answer has no body */
    cr_assert_eq(rc, H_RR_OK, "the interim answer: %s", h_rr_name(rc));
    cr_assert_eq(r.status, 100, "expected 100 Continue before the body, got %d", r.status);
    h_cli_sends(&c, "hello");
    r = h_expect_response(&c, 5000, "the final answer");
    h_assert_problem(&r, 404, "not-found");
    /* The connection is still good. */
    r = h_get(&c, "/livez");
    cr_assert_eq(r.status, 200);
    h_cli_close(&c);
    h_done();
}

Test(http, unknown_expectation_is_417_and_close)
{
    h_start("--max-connections", "8");
    h_client c = h_cli_open();
    h_cli_sends(&c, "POST /livez HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2\r\n"
                    "Expect: magic\r\n\r\n{}");
    h_response r = h_expect_response(&c, 5000, "Expect: magic");
    h_assert_problem(&r, 417, "expectation-failed");
    h_assert_closing(&r);
    h_expect_closed(&c, 5000, "after 417");
    h_cli_close(&c);
    h_done();
}

Test(http, more_than_100_header_fields_is_431)
{
    h_start("--max-connections", "8", "--max-header-bytes", "65536");
    static char req[16384];
    size_t len = (size_t)sprintf(req, "GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    for (int i = 0; i < 99; i++) /* with Host: exactly 100 fields */
        len += (size_t)sprintf(req + len, "X-F%d: v\r\n", i);
    len += (size_t)sprintf(req + len, "\r\n");
    h_client c = h_cli_open();
    h_cli_send(&c, req, len);
    h_response r = h_expect_response(&c, 5000, "100 header fields");
    cr_assert_eq(r.status, 200, "100 fields are allowed: got %d", r.status);
    len -= 2;
    len += (size_t)sprintf(req + len, "X-One-Too-Many: v\r\n\r\n");
    h_cli_send(&c, req, len);
    r = h_expect_response(&c, 5000, "101 header fields");
    h_assert_problem(&r, 431, "headers-too-large");
    h_assert_closing(&r);
    h_cli_close(&c);
    h_done();
}
