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
 * test fails (suite fini, atexit, and PR_SET_PDEATHSIG in the child).
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

/* ---- Time ------------------------------------------------------------------ */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

/* ---- The server process ------------------------------------------------------ */

typedef struct usherd {
    pid_t pid;
    int out_fd;     /* its stdout (kept open so a late write cannot SIGPIPE it) */
    char root[64];  /* mkdtemp: data/ and stderr.log */
    char data[128]; /* --data-dir */
    char errlog[128];
    uint16_t port;
} usherd;

/* One server per test: Criterion runs every test in its own process. */
static usherd srv = {.pid = 0, .out_fd = -1};

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void rm_tree(const char *path)
{
    if (path[0] != '\0')
        nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* Kills the server if it still runs and removes its directory. Idempotent;
 * used by the suite's fini and atexit, so a failed test leaves nothing. */
static void srv_cleanup(void)
{
    if (srv.pid > 0) {
        kill(srv.pid, SIGKILL);
        waitpid(srv.pid, NULL, 0);
        srv.pid = 0;
    }
    if (srv.out_fd >= 0) {
        close(srv.out_fd);
        srv.out_fd = -1;
    }
    if (srv.root[0] != '\0') {
        rm_tree(srv.root);
        srv.root[0] = '\0';
    }
}

/* Reads a (log) file into a static buffer: nothing to free when an
 * assertion ends the test. */
static const char *slurp(const char *path)
{
    static char buf[1 << 20];
    size_t len = 0;
    FILE *f = fopen(path, "rb");
    if (f != NULL) {
        size_t n;
        while (len < sizeof(buf) - 1 && (n = fread(buf + len, 1, sizeof(buf) - 1 - len, f)) > 0)
            len += n;
        fclose(f);
    }
    buf[len] = '\0';
    return buf;
}

/* The last `n` bytes of s, for messages. */
static const char *tail_of(const char *s, size_t n)
{
    size_t len = strlen(s);
    return len > n ? s + len - n : s;
}

/* Starts usherd with the common flags and `extra` (NULL-terminated), on
 * srv.root's data directory (made on first start, reused on restart). */
static void srv_start_argv(const char *const *extra)
{
    const char *bin = getenv("USHERD");
    cr_assert(bin != NULL && bin[0] != '\0', "USHERD must name the usherd binary");
    if (srv.root[0] == '\0') {
        strcpy(srv.root, "/tmp/usher-http-XXXXXX");
        cr_assert_not_null(mkdtemp(srv.root), "mkdtemp: %s", strerror(errno));
        snprintf(srv.data, sizeof(srv.data), "%s/data", srv.root);
        snprintf(srv.errlog, sizeof(srv.errlog), "%s/stderr.log", srv.root);
    }
    const char *argv[64];
    int argc = 0;
    argv[argc++] = bin;
    argv[argc++] = "--listen";
    argv[argc++] = "127.0.0.1:0";
    argv[argc++] = "--data-dir";
    argv[argc++] = srv.data;
    argv[argc++] = "--shards";
    argv[argc++] = "2";
    for (int i = 0; extra != NULL && extra[i] != NULL && argc < 62; i++)
        argv[argc++] = extra[i];
    argv[argc] = NULL;

    int pfd[2];
    cr_assert_eq(pipe2(pfd, O_CLOEXEC), 0, "pipe2: %s", strerror(errno));
    pid_t parent = getpid();
    pid_t pid = fork();
    cr_assert_geq(pid, 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        /* The server dies with the test process, whatever happens to it. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(126);
        int err = open(srv.errlog, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        int in = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (err < 0 || in < 0 || dup2(pfd[1], 1) < 0 || dup2(err, 2) < 0 || dup2(in, 0) < 0)
            _exit(125);
        signal(SIGPIPE, SIG_DFL);
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    close(pfd[1]);
    srv.pid = pid;
    srv.out_fd = pfd[0];
    srv.port = 0;

    /* Wait for "listening on http://127.0.0.1:PORT". */
    char line[512];
    size_t len = 0;
    int64_t deadline = now_ms() + 20000;
    while (srv.port == 0) {
        int64_t left = deadline - now_ms();
        if (left <= 0)
            break;
        struct pollfd p = {.fd = srv.out_fd, .events = POLLIN};
        int pr = poll(&p, 1, (int)left);
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr <= 0)
            break;
        ssize_t n = read(srv.out_fd, line + len, sizeof(line) - 1 - len);
        if (n <= 0)
            break;
        len += (size_t)n;
        line[len] = '\0';
        const char *at = strstr(line, "listening on http://127.0.0.1:");
        if (at != NULL && strchr(at, '\n') != NULL)
            srv.port = (uint16_t)atoi(at + strlen("listening on http://127.0.0.1:"));
        if (len == sizeof(line) - 1)
            break;
    }
    if (srv.port == 0) {
        const char *log = slurp(srv.errlog);
        cr_assert_fail("usherd did not report its port (it exited, or 20 s passed); stdout: "
                       "'%.*s'; stderr: %s",
                       (int)len, line, tail_of(log, 1500));
    }
}

#define srv_start(...)                                    \
    do {                                                  \
        const char *const extra_[] = {__VA_ARGS__, NULL}; \
        srv_start_argv(extra_);                           \
    } while (0)

/* SIGTERM, then: exits 0 within `within_ms`, logged a final snapshot for
 * both shards and "usherd: stopped", no sanitizer report. */
static void srv_stop_within(int within_ms)
{
    cr_assert_gt(srv.pid, 0, "no server to stop");
    cr_assert_eq(kill(srv.pid, SIGTERM), 0, "kill: %s", strerror(errno));
    int64_t start = now_ms(), deadline = start + within_ms;
    int st = 0;
    pid_t r;
    while ((r = waitpid(srv.pid, &st, WNOHANG)) == 0 && now_ms() < deadline)
        sleep_ms(10);
    if (r == 0) {
        kill(srv.pid, SIGKILL);
        waitpid(srv.pid, NULL, 0);
        srv.pid = 0;
        const char *log = slurp(srv.errlog);
        cr_assert_fail("usherd still running %d ms after SIGTERM (killed); stderr: %s", within_ms,
                       tail_of(log, 1500));
    }
    srv.pid = 0;
    close(srv.out_fd);
    srv.out_fd = -1;
    const char *log = slurp(srv.errlog);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0,
              "usherd did not exit 0 after SIGTERM (status 0x%x, signal %d); stderr: %s", st,
              WIFSIGNALED(st) ? WTERMSIG(st) : 0, tail_of(log, 3000));
    cr_assert_not_null(strstr(log, "msg=\"final snapshot\" shard=0"),
                       "no final snapshot for shard 0; stderr: %s", tail_of(log, 1500));
    cr_assert_not_null(strstr(log, "msg=\"final snapshot\" shard=1"),
                       "no final snapshot for shard 1; stderr: %s", tail_of(log, 1500));
    cr_assert_not_null(strstr(log, "usherd: stopped"), "no 'usherd: stopped'; stderr: %s",
                       tail_of(log, 1500));
    cr_assert_null(strstr(log, "Sanitizer"), "sanitizer report: %s", tail_of(log, 3000));
    cr_assert_null(strstr(log, "runtime error"), "UBSan report: %s", tail_of(log, 3000));
    cr_assert_null(strstr(log, "assertion failed"), "assertion: %s", tail_of(log, 3000));
}

/* The end of every test: a clean stop, and nothing left on disk. */
static void srv_done(void)
{
    srv_stop_within(5000);
    char root[sizeof(srv.root)];
    memcpy(root, srv.root, sizeof(root));
    rm_tree(srv.root);
    srv.root[0] = '\0';
    struct stat st;
    cr_assert(stat(root, &st) < 0 && errno == ENOENT, "%s still exists", root);
}

static void suite_init(void)
{
    signal(SIGPIPE, SIG_IGN);
    atexit(srv_cleanup);
}

static void suite_fini(void)
{
    srv_cleanup();
}

TestSuite(http, .init = suite_init, .fini = suite_fini, .timeout = 60);

/* ---- The client ------------------------------------------------------------- */

enum { RR_OK = 0, RR_EOF = -1, RR_RESET = -2, RR_TIMEOUT = -3, RR_BAD = -4, RR_DATA = 1 };

static const char *rr_name(int rc)
{
    switch (rc) {
    case RR_OK:
        return "a response";
    case RR_EOF:
        return "EOF (connection closed)";
    case RR_RESET:
        return "connection reset";
    case RR_TIMEOUT:
        return "timeout";
    case RR_BAD:
        return "malformed or truncated response";
    case RR_DATA:
        return "more data";
    default:
        return "?";
    }
}

enum { CLIENT_BUF = 64 * 1024, BODY_MAX = 64 * 1024 };

/* Fixed buffers only: an assertion that ends a test leaks nothing. */
typedef struct client {
    int fd;
    size_t len;
    char buf[CLIENT_BUF]; /* received, not yet consumed */
} client;

typedef struct response {
    int status;
    char head[8192]; /* status line and headers, NUL-terminated */
    size_t body_len;
    char body[BODY_MAX + 1]; /* body_len bytes, NUL-terminated */
} response;

/* Thread-safe (no Criterion asserts): returns a connected fd or -1. */
static int tcp_connect(uint16_t port, int rcvbuf)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (rcvbuf > 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static void cli_init(client *c, int fd)
{
    c->fd = fd;
    c->len = 0;
}

static client cli_open_rcvbuf(int rcvbuf)
{
    client c;
    int fd = tcp_connect(srv.port, rcvbuf);
    cr_assert_geq(fd, 0, "connect to 127.0.0.1:%u: %s", srv.port, strerror(errno));
    cli_init(&c, fd);
    return c;
}

static client cli_open(void)
{
    return cli_open_rcvbuf(0);
}

static void cli_close(client *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
}

/* Sends everything or fails (false); thread-safe. */
static bool cli_send_raw(client *c, const char *data, size_t len)
{
    while (len > 0) {
        struct pollfd p = {.fd = c->fd, .events = POLLOUT};
        int pr = poll(&p, 1, 10000);
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr <= 0)
            return false;
        ssize_t n = send(c->fd, data, len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            continue;
        if (n <= 0)
            return false;
        data += n;
        len -= (size_t)n;
    }
    return true;
}

static void cli_send(client *c, const char *data, size_t len)
{
    cr_assert(cli_send_raw(c, data, len), "send: %s", strerror(errno));
}

static void cli_sends(client *c, const char *s)
{
    cli_send(c, s, strlen(s));
}

/* Receives more bytes: >0 appended, 0 EOF, RR_RESET, RR_TIMEOUT. */
static int cli_fill(client *c, int timeout_ms)
{
    if (c->len + 1 >= sizeof(c->buf))
        return RR_BAD; /* a response larger than any usherd sends */
    int64_t deadline = now_ms() + timeout_ms;
    for (;;) {
        int64_t left = deadline - now_ms();
        struct pollfd p = {.fd = c->fd, .events = POLLIN};
        int pr = poll(&p, 1, left > 0 ? (int)left : 0);
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr <= 0)
            return RR_TIMEOUT;
        ssize_t n = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len - 1, MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            continue;
        if (n < 0)
            return errno == ECONNRESET ? RR_RESET : RR_BAD;
        c->len += (size_t)n;
        return (int)(n > 0 ? 1 : 0);
    }
}

/* Value of header `name` in a response head, or false. */
static bool header_get(const char *head, const char *name, char *out, size_t cap)
{
    size_t nlen = strlen(name);
    const char *line = strstr(head, "\r\n");
    while (line != NULL) {
        line += 2;
        const char *end = strstr(line, "\r\n");
        if (end == NULL || end == line)
            return false;
        const char *colon = memchr(line, ':', (size_t)(end - line));
        if (colon != NULL && (size_t)(colon - line) == nlen && strncasecmp(line, name, nlen) == 0) {
            const char *v = colon + 1;
            while (v < end && (*v == ' ' || *v == '\t'))
                v++;
            size_t vlen = (size_t)(end - v);
            if (vlen >= cap)
                vlen = cap - 1;
            memcpy(out, v, vlen);
            out[vlen] = '\0';
            return true;
        }
        line = end;
    }
    return false;
}

static bool has_header(const response *r, const char *name)
{
    char v[256];
    return header_get(r->head, name, v, sizeof(v));
}

/* Reads one response (head, then Content-Length body unless no_body).
 * Thread-safe. RR_OK, RR_EOF (closed before any byte), RR_RESET,
 * RR_TIMEOUT or RR_BAD. */
static int cli_read_response_opt(client *c, response *r, int timeout_ms, bool no_body)
{
    r->status = 0;
    r->head[0] = '\0';
    r->body[0] = '\0';
    r->body_len = 0;
    int64_t deadline = now_ms() + timeout_ms;
    size_t head_len = 0, need = 0;
    for (;;) {
        if (head_len == 0) {
            const char *e = c->len >= 4 ? memmem(c->buf, c->len, "\r\n\r\n", 4) : NULL;
            if (e != NULL) {
                head_len = (size_t)(e - c->buf) + 4;
                if (head_len >= sizeof(r->head))
                    return RR_BAD;
                memcpy(r->head, c->buf, head_len);
                r->head[head_len] = '\0';
                if (strncmp(r->head, "HTTP/1.1 ", 9) != 0)
                    return RR_BAD;
                r->status = atoi(r->head + 9);
                if (r->status >= 100 && r->status < 200) {
                    need = head_len; /* interim answers (1xx) have no content */
                    continue;
                }
                char cl[64];
                if (!header_get(r->head, "Content-Length", cl, sizeof(cl)))
                    return RR_BAD;
                char *end;
                unsigned long long n = strtoull(cl, &end, 10);
                if (*end != '\0' || n > BODY_MAX)
                    return RR_BAD;
                r->body_len = no_body ? 0 : (size_t)n;
                need = head_len + r->body_len;
            } else if (c->len >= sizeof(r->head)) {
                return RR_BAD;
            }
        }
        if (head_len > 0 && c->len >= need) {
            memcpy(r->body, c->buf + head_len, r->body_len);
            r->body[r->body_len] = '\0';
            memmove(c->buf, c->buf + need, c->len - need);
            c->len -= need;
            return RR_OK;
        }
        int64_t left = deadline - now_ms();
        if (left <= 0)
            return RR_TIMEOUT;
        int got = cli_fill(c, (int)left);
        if (got == 0)
            return c->len == 0 ? RR_EOF : RR_BAD;
        if (got < 0)
            return got;
    }
}

static int cli_read_response(client *c, response *r, int timeout_ms)
{
    return cli_read_response_opt(c, r, timeout_ms, false);
}

/* After the last response: RR_EOF if the server closed (recv returned 0),
 * RR_RESET, RR_TIMEOUT if the connection stayed open, RR_DATA if more bytes
 * came (the unexpected bytes stay in c->buf). */
static int cli_wait_close(client *c, int timeout_ms)
{
    if (c->len > 0)
        return RR_DATA;
    int got = cli_fill(c, timeout_ms);
    if (got > 0)
        return RR_DATA;
    return got == 0 ? RR_EOF : got;
}

/* Asserts a response arrives. */
static response expect_response(client *c, int timeout_ms, const char *what)
{
    response r;
    int rc = cli_read_response(c, &r, timeout_ms);
    cr_assert_eq(rc, RR_OK, "%s: expected a response, got %s (buffered: '%.*s')", what, rr_name(rc),
                 (int)(c->len < 300 ? c->len : 300), c->buf);
    return r;
}

static void expect_closed(client *c, int timeout_ms, const char *what)
{
    int rc = cli_wait_close(c, timeout_ms);
    cr_assert_eq(
        rc, RR_EOF, "%s: expected the server to close the connection (recv 0), got %s%s%.*s", what,
        rr_name(rc), rc == RR_DATA ? ": " : "", (int)(c->len < 400 ? c->len : 400), c->buf);
}

static response get(client *c, const char *path)
{
    char req[2600];
    snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", path);
    cli_sends(c, req);
    return expect_response(c, 5000, path);
}

/* A problem+json body with the RFC 9457 members and the given status. */
static void assert_problem(const response *r, int status, const char *type_slug)
{
    char ct[128] = "";
    cr_assert_eq(r->status, status, "expected status %d, got %d: %s%s", status, r->status, r->head,
                 r->body);
    cr_assert(header_get(r->head, "Content-Type", ct, sizeof(ct)), "no Content-Type: %s", r->head);
    cr_assert_str_eq(ct, "application/problem+json");
    char want[160];
    snprintf(want, sizeof(want), "\"type\":\"https://usher.dev/problems/%s\"", type_slug);
    cr_assert_not_null(strstr(r->body, want), "problem type %s missing: %s", type_slug, r->body);
    cr_assert_not_null(strstr(r->body, "\"title\":\""), "no title: %s", r->body);
    snprintf(want, sizeof(want), "\"status\":%d", status);
    cr_assert_not_null(strstr(r->body, want), "no %s: %s", want, r->body);
    cr_assert_not_null(strstr(r->body, "\"detail\":\""), "no detail: %s", r->body);
    cr_assert(r->body_len > 0 && r->body[0] == '{' && r->body[r->body_len - 1] == '}',
              "not a JSON object: %s", r->body);
}

static void assert_closing(const response *r)
{
    char v[64] = "";
    cr_assert(header_get(r->head, "Connection", v, sizeof(v)) && strcasecmp(v, "close") == 0,
              "expected 'Connection: close' on a response after which the server closes: %s",
              r->head);
}

static size_t count_of(const char *s, const char *needle)
{
    size_t n = 0;
    for (const char *p = strstr(s, needle); p != NULL; p = strstr(p + 1, needle))
        n++;
    return n;
}

/* Sends `req` on a fresh connection and expects exactly one error response
 * with `status` (problem type `slug`), Connection: close, then recv 0. */
static void expect_refused(const char *req, size_t len, int status, const char *slug,
                           const char *what)
{
    client c = cli_open();
    cli_send(&c, req, len);
    response r = expect_response(&c, 5000, what);
    cr_assert_eq(r.status, status, "%s: expected %d, got %d: %s%s", what, status, r.status, r.head,
                 r.body);
    assert_problem(&r, status, slug);
    assert_closing(&r);
    expect_closed(&c, 3000, what);
    cli_close(&c);
}

/* ---- Health endpoints and errors -------------------------------------------- */

Test(http, livez)
{
    srv_start("--max-connections", "8");
    client c = cli_open();
    response r = get(&c, "/livez");
    cr_assert_eq(r.status, 200, "%s", r.head);
    char ct[128] = "";
    cr_assert(header_get(r.head, "Content-Type", ct, sizeof(ct)));
    cr_assert_str_eq(ct, "application/json");
    cr_assert_str_eq(r.body, "{\"status\":\"ok\"}");
    r = get(&c, "/livez?probe=1"); /* a query string is the same resource */
    cr_assert_eq(r.status, 200, "%s", r.head);
    cli_close(&c);
    srv_done();
}

Test(http, readyz)
{
    srv_start("--max-connections", "8");
    client c = cli_open();
    response r = get(&c, "/readyz");
    cr_assert_eq(r.status, 200, "%s%s", r.head, r.body);
    char ct[128] = "";
    cr_assert(header_get(r.head, "Content-Type", ct, sizeof(ct)));
    cr_assert_str_eq(ct, "application/json");
    cr_assert_not_null(strstr(r.body, "\"status\":\"ready\""), "%s", r.body);
    cr_assert_eq(count_of(r.body, "\"shard\":"), 2, "two shards expected: %s", r.body);
    cr_assert_not_null(strstr(r.body, "\"shard\":0,\"ready\":true"), "%s", r.body);
    cr_assert_not_null(strstr(r.body, "\"shard\":1,\"ready\":true"), "%s", r.body);
    cli_close(&c);
    srv_done();
}

Test(http, metrics)
{
    srv_start("--max-connections", "8");
    client c = cli_open();
    response r = get(&c, "/nope"); /* something to count */
    r = get(&c, "/metrics");
    cr_assert_eq(r.status, 200, "%s", r.head);
    char ct[128] = "";
    cr_assert(header_get(r.head, "Content-Type", ct, sizeof(ct)));
    cr_assert_eq(strncmp(ct, "text/plain", 10), 0, "Content-Type %s", ct);
    cr_assert_not_null(strstr(r.body, "# TYPE usher_connections gauge\n"), "%s", r.body);
    const char *line = strstr(r.body, "\nusher_connections ");
    cr_assert_not_null(line, "no usher_connections sample: %s", r.body);
    cr_assert_geq(atoi(line + strlen("\nusher_connections ")), 1, "this connection is open");
    cr_assert_geq(count_of(r.body, "# TYPE "), 5, "%s", r.body);
    /* Every sample's family has a TYPE line; the 404 above was counted. */
    cr_assert_not_null(strstr(r.body, "# TYPE usher_http_requests_total counter"), "%s", r.body);
    cr_assert_not_null(strstr(r.body, "code=\"4xx\"} 1\n"), "the 404 is counted: %s", r.body);
    cr_assert_eq(r.body[r.body_len - 1], '\n', "text format ends with a newline");
    cli_close(&c);
    srv_done();
}

Test(http, unknown_path_is_404_problem_json)
{
    srv_start("--max-connections", "8");
    client c = cli_open();
    const char *paths[] = {"/nope", "/", "/livez/", "/livezz", "/api/v1/showtimes"};
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        response r = get(&c, paths[i]);
        assert_problem(&r, 404, "not-found");
        cr_assert(!has_header(&r, "Connection"), "a 404 keeps the connection: %s", r.head);
    }
    /* Still open and usable. */
    response r = get(&c, "/livez");
    cr_assert_eq(r.status, 200);
    cli_close(&c);
    srv_done();
}

Test(http, wrong_method_is_405_with_allow)
{
    srv_start("--max-connections", "8");
    client c = cli_open();
    const char *reqs[] = {
        "POST /livez HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n",
        "POST /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2\r\n\r\n{}",
        "DELETE /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        "PUT /livez HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n"
        "2\r\n{}\r\n0\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof(reqs) / sizeof(reqs[0]); i++) {
        cli_sends(&c, reqs[i]);
        response r = expect_response(&c, 5000, reqs[i]);
        assert_problem(&r, 405, "method-not-allowed");
        char allow[64] = "";
        cr_assert(header_get(r.head, "Allow", allow, sizeof(allow)), "no Allow: %s", r.head);
        cr_assert_str_eq(allow, "GET, HEAD"); /* HEAD is supported wherever GET is (RFC 9110) */
    }
    cli_close(&c);
    srv_done();
}

/* HEAD responses carry no body (RFC 9110 9.3.2); a body would be read by the
 * client as the start of the next response. */
Test(http, head_response_has_no_body)
{
    srv_start("--max-connections", "8");
    client c = cli_open();
    cli_sends(&c, "HEAD /livez HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
                  "GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    response r;
    int rc = cli_read_response_opt(&c, &r, 5000, true);
    cr_assert_eq(rc, RR_OK, "HEAD: %s", rr_name(rc));
    cr_assert_eq(r.status, 200, "HEAD /livez: %d", r.status);
    rc = cli_read_response(&c, &r, 5000);
    cr_assert(rc == RR_OK && r.status == 200,
              "the response after a HEAD response must start right after its head; found "
              "'%.60s' (the HEAD response carried a body)",
              rc == RR_BAD ? c.buf : r.head);
    cr_assert_str_eq(r.body, "{\"status\":\"ok\"}");
    cli_close(&c);
    srv_done();
}

/* ---- Keep-alive and connection close ------------------------------------------ */

Test(http, keep_alive_100_requests)
{
    srv_start("--max-connections", "8", "--idle-timeout", "500");
    client c = cli_open();
    for (int i = 0; i < 100; i++) {
        const char *path = i % 3 == 0 ? "/livez" : i % 3 == 1 ? "/readyz" : "/nope";
        response r = get(&c, path);
        int want = i % 3 == 2 ? 404 : 200;
        cr_assert_eq(r.status, want, "request %d (%s): %d", i, path, r.status);
        cr_assert(!has_header(&r, "Connection"), "request %d: %s", i, r.head);
    }
    cr_assert_eq(cli_wait_close(&c, 100), RR_TIMEOUT, "the connection stays open");
    cli_close(&c);
    srv_done();
}

Test(http, http10_without_keep_alive_closes)
{
    srv_start("--max-connections", "8");
    client c = cli_open();
    cli_sends(&c, "GET /livez HTTP/1.0\r\n\r\n");
    response r = expect_response(&c, 5000, "HTTP/1.0");
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(r.body, "{\"status\":\"ok\"}");
    assert_closing(&r);
    expect_closed(&c, 3000, "HTTP/1.0 without keep-alive");
    cli_close(&c);

    /* HTTP/1.0 asking for keep-alive keeps the connection. */
    c = cli_open();
    for (int i = 0; i < 3; i++) {
        cli_sends(&c, "GET /livez HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        r = expect_response(&c, 5000, "HTTP/1.0 keep-alive");
        cr_assert_eq(r.status, 200);
    }
    cli_close(&c);
    srv_done();
}

Test(http, connection_close_closes)
{
    srv_start("--max-connections", "8");
    client c = cli_open();
    response r = get(&c, "/livez");
    cli_sends(&c, "GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    r = expect_response(&c, 5000, "Connection: close");
    cr_assert_eq(r.status, 200);
    assert_closing(&r);
    expect_closed(&c, 3000, "Connection: close");
    cli_close(&c);

    /* Nothing after the closing request is answered. */
    c = cli_open();
    cli_sends(&c, "GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
                  "GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    r = expect_response(&c, 5000, "Connection: close then more");
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(r.body, "{\"status\":\"ok\"}");
    expect_closed(&c, 3000, "after a Connection: close response");
    cli_close(&c);
    srv_done();
}

/* A client that shuts its sending side after a request still gets the answer. */
Test(http, half_close_still_answered)
{
    srv_start("--max-connections", "8");
    client c = cli_open();
    cli_sends(&c, "GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
                  "GET /nope HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    cr_assert_eq(shutdown(c.fd, SHUT_WR), 0);
    response r = expect_response(&c, 5000, "half-close 1");
    cr_assert_eq(r.status, 200);
    r = expect_response(&c, 5000, "half-close 2");
    cr_assert_eq(r.status, 404);
    expect_closed(&c, 3000, "after the client's FIN");
    cli_close(&c);
    srv_done();
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

static void expect_pipeline_answers(client *c, int n)
{
    for (int i = 0; i < n; i++) {
        response r;
        int rc = cli_read_response(c, &r, 10000);
        cr_assert_eq(rc, RR_OK, "pipelined response %d of %d: %s", i, n, rr_name(rc));
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
    srv_start("--max-connections", "8");
    client c = cli_open();
    char req[8192];
    size_t len = build_pipeline(req, sizeof(req), 20);
    cli_send(&c, req, len); /* one send() */
    expect_pipeline_answers(&c, 20);
    cr_assert_eq(cli_wait_close(&c, 100), RR_TIMEOUT, "no extra bytes, still open");
    cli_close(&c);
    srv_done();
}

Test(http, pipelining_with_pipeline_4)
{
    srv_start("--max-connections", "8", "--pipeline", "4");
    client c = cli_open();
    char req[8192];
    size_t len = build_pipeline(req, sizeof(req), 20);
    cli_send(&c, req, len);
    expect_pipeline_answers(&c, 20);

    /* Far more than the hard cap of 64 queued answers, in one go. */
    static char big[200 * 64];
    len = build_pipeline(big, sizeof(big), 200);
    cli_send(&c, big, len);
    expect_pipeline_answers(&c, 200);
    cr_assert_eq(cli_wait_close(&c, 100), RR_TIMEOUT, "no extra bytes, still open");
    cli_close(&c);
    srv_done();
}

/* Requests with bodies (Content-Length and chunked) then more requests, in one
 * send(): the bodies are framed correctly. */
Test(http, pipelining_with_bodies)
{
    srv_start("--max-connections", "8", "--pipeline", "4");
    client c = cli_open();
    /* The first body looks like a request; it is only a body. */
    const char *body = "GET /livez HTTP/1.1\r\n\r\nXX";
    char req[1024];
    int n = snprintf(req, sizeof(req),
                     "POST /nope HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %zu\r\n\r\n%s"
                     "POST /livez HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                     "5\r\nGET /\r\n0\r\n\r\n"
                     "GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
                     strlen(body), body);
    cli_send(&c, req, (size_t)n);
    response r = expect_response(&c, 5000, "POST with Content-Length");
    cr_assert_eq(r.status, 404, "the body is not a request: %d", r.status);
    r = expect_response(&c, 5000, "chunked POST");
    cr_assert_eq(r.status, 405, "%d", r.status);
    r = expect_response(&c, 5000, "GET after bodies");
    cr_assert_eq(r.status, 200, "%d", r.status);
    cr_assert_eq(cli_wait_close(&c, 200), RR_TIMEOUT, "exactly three answers");
    cli_close(&c);
    srv_done();
}

/* Sum of usher_http_requests_total{code="4xx"} over the shards. */
static unsigned long long answers_4xx(client *m)
{
    response r = get(m, "/metrics");
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
Test(http, pipeline_backpressure_when_client_does_not_read)
{
    srv_start("--max-connections", "8", "--pipeline", "4", "--idle-timeout", "3000");
    client c = cli_open_rcvbuf(4096);
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
    client m = cli_open();
    unsigned long long answered = 0, before;
    int64_t deadline = now_ms() + 8000;
    do {
        before = answered;
        sleep_ms(300);
        answered = answers_4xx(&m);
    } while (answered != before && now_ms() < deadline);
    cli_close(&m);
    cli_close(&c);
    /* Kernel buffers (<= 4 MiB of answers here, ~200 bytes each) hold fewer
     * than 22000; the rest must wait unread in the server's socket. */
    cr_assert_lt(answered, 30000,
                 "the server produced %llu answers for a client that read none (%zu requests "
                 "sent): with --pipeline 4 reading should pause; answers are queued in memory "
                 "without bound",
                 answered, sent / rlen);
    srv_done();
}

/* ---- Split reads ------------------------------------------------------------------ */

Test(http, request_split_one_byte_at_a_time)
{
    srv_start("--max-connections", "8", "--request-timeout", "5000");
    client c = cli_open();
    const char *reqs[] = {
        "GET /readyz?x=1 HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: */*\r\n"
        "Content-Type: application/json\r\n\r\n",
        "POST /nope HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\n\r\nhello",
        "PUT /livez HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    };
    const int want[] = {200, 404, 405};
    for (size_t k = 0; k < 3; k++) {
        for (const char *p = reqs[k]; *p != '\0'; p++) {
            cli_send(&c, p, 1);
            sleep_ms(1);
        }
        response r = expect_response(&c, 5000, reqs[k]);
        cr_assert_eq(r.status, want[k], "split request %zu: %d", k, r.status);
    }
    cli_close(&c);
    srv_done();
}

/* ---- Bounds --------------------------------------------------------------------------- */

Test(http, headers_over_limit_431)
{
    srv_start("--max-connections", "8", "--max-header-bytes", "2048");
    char req[4096];
    int n = snprintf(req, sizeof(req),
                     "GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: %03000d\r\n\r\n", 7);
    expect_refused(req, (size_t)n, 431, "headers-too-large", "one 3000-byte header");

    /* Just under the limit is fine. */
    client c = cli_open();
    n = snprintf(req, sizeof(req), "GET /livez HTTP/1.1\r\nX-Big: %01900d\r\n\r\n", 7);
    cli_send(&c, req, (size_t)n);
    response r = expect_response(&c, 5000, "1900-byte header");
    cr_assert_eq(r.status, 200);
    cli_close(&c);
    srv_done();
}

/* The limit is on the request line and headers as sent: 1500 tiny header
 * lines are 6 KB of header section against a 2 KB limit. */
Test(http, headers_over_limit_many_small_fields_431)
{
    srv_start("--max-connections", "8", "--max-header-bytes", "2048");
    static char req[8192];
    size_t len = (size_t)sprintf(req, "GET /livez HTTP/1.1\r\n");
    for (int i = 0; i < 1500; i++)
        len += (size_t)sprintf(req + len, "X:\r\n");
    len += (size_t)sprintf(req + len, "\r\n");
    client c = cli_open();
    cli_send(&c, req, len);
    response r = expect_response(&c, 5000, "1500 header lines");
    cr_assert_eq(r.status, 431,
                 "a %zu-byte header section (1500 fields) against --max-header-bytes 2048 got %d: "
                 "only name and value bytes are counted, not the ':' and CRLF of each line",
                 len, r.status);
    cli_close(&c);
    srv_done();
}

Test(http, url_over_2048_414)
{
    srv_start("--max-connections", "8", "--max-header-bytes", "8192");
    char req[4096];
    int n = snprintf(req, sizeof(req), "GET /%02100d HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 1);
    expect_refused(req, (size_t)n, 414, "uri-too-long", "2101-byte URL");
    srv_done();
}

Test(http, content_length_over_limit_413_before_body)
{
    srv_start("--max-connections", "8", "--max-body-bytes", "4096");
    const char *req = "POST /livez HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5000\r\n\r\n";
    expect_refused(req, strlen(req), 413, "body-too-large", "Content-Length 5000, no body sent");

    /* A body at the limit is read. */
    client c = cli_open();
    static char ok[8192];
    int n = sprintf(ok, "POST /nope HTTP/1.1\r\nContent-Length: 4096\r\n\r\n");
    memset(ok + n, 'b', 4096);
    cli_send(&c, ok, (size_t)n + 4096);
    response r = expect_response(&c, 5000, "4096-byte body");
    cr_assert_eq(r.status, 404);
    cli_close(&c);
    srv_done();
}

Test(http, chunked_body_over_limit_413)
{
    srv_start("--max-connections", "8", "--max-body-bytes", "4096");
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
    client c = cli_open();
    cli_send(&c, req, len);
    response r = expect_response(&c, 5000, "3000-byte chunked body");
    cr_assert_eq(r.status, 404);
    cli_close(&c);

    /* Five: the body grows past 4096 and is refused. */
    len = (size_t)sprintf(req, "POST /nope HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
    for (int i = 0; i < 5; i++) {
        len += (size_t)sprintf(req + len, "3e8\r\n");
        memset(req + len, 'c', 1000);
        len += 1000;
        len += (size_t)sprintf(req + len, "\r\n");
    }
    expect_refused(req, len, 413, "body-too-large", "5000-byte chunked body");
    srv_done();
}

/* A client that sends its (too large) body without waiting still reads the
 * 413 and then an orderly close: the server must not reset the connection
 * with the unread body in its buffer (RFC 9112 9.6, staged close). */
Test(http, body_too_large_sent_anyway_gets_413_and_orderly_close)
{
    srv_start("--max-connections", "8", "--max-body-bytes", "4096");
    enum { BODY = 200000 };
    static char req[BODY + 256];
    int n =
        sprintf(req, "POST /nope HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %d\r\n\r\n", BODY);
    memset(req + n, 'x', BODY);
    client c = cli_open();
    /* The server may stop reading part way; what cannot be sent is dropped. */
    size_t off = 0, len = (size_t)n + BODY;
    int64_t deadline = now_ms() + 2000;
    while (off < len && now_ms() < deadline) {
        ssize_t w = send(c.fd, req + off, len - off, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w > 0)
            off += (size_t)w;
        else if (w < 0 && errno != EAGAIN && errno != EINTR)
            break;
        else
            sleep_ms(5);
    }
    response r = expect_response(&c, 5000, "413 with the body in flight");
    assert_problem(&r, 413, "body-too-large");
    int rc = cli_wait_close(&c, 3000);
    cr_assert_eq(rc, RR_EOF,
                 "after the 413 the connection should close with a FIN, got %s (the server "
                 "closed with %zu unread request bytes, which resets the connection; a client "
                 "still sending can lose the 413)",
                 rr_name(rc), off);
    cli_close(&c);
    srv_done();
}

Test(http, content_length_and_transfer_encoding_400)
{
    srv_start("--max-connections", "8");
    const char *req = "POST /nope HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\n"
                      "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    expect_refused(req, strlen(req), 400, "malformed-request", "CL + TE");
    srv_done();
}

Test(http, garbage_request_line_400)
{
    srv_start("--max-connections", "8");
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
    srv_done();
}

Test(http, invalid_header_characters_400)
{
    srv_start("--max-connections", "8");
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
    srv_done();
}

/* Forms only a lenient parser takes. Field names are tokens (RFC 9110 5.1):
 * not empty, no whitespace; "A server MUST reject, with 400, any received
 * request message that contains whitespace between a header field name and
 * colon" (RFC 9112 5.1); no whitespace inside the request target (RFC 9112
 * 3.2). A front end that reads such a header differently is a smuggling
 * vector. */
Test(http, lenient_header_and_url_forms_400)
{
    srv_start("--max-connections", "8");
    const char *reqs[] = {
        "GET /livez HTTP/1.1\r\nX-Forwarded-For : 10.0.0.1\r\n\r\n",
        "GET /livez HTTP/1.1\r\nX A: b\r\n\r\n",
        "GET /livez\t HTTP/1.1\r\n\r\n",
        "GET /livez HTTP/1.1\r\n: empty-name\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof(reqs) / sizeof(reqs[0]); i++) {
        /* Each form is reported on its own (cr_expect), then the next is tried. */
        client c = cli_open();
        cli_sends(&c, reqs[i]);
        response r = expect_response(&c, 5000, reqs[i]);
        cr_expect_eq(r.status, 400, "%s=> expected 400, got %d %s", reqs[i], r.status, r.body);
        cli_close(&c);
    }
    srv_done();
}

/* CL.TE, TE.CL and obfuscated framing: one 400, then close; the smuggled
 * request is never answered. */
Test(http, request_smuggling_refused)
{
    srv_start("--max-connections", "8");
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
    srv_done();
}

/* An Upgrade the server does not take is ignored (RFC 9110 7.8): one answer
 * per request, and the connection goes on as HTTP/1.1. A CONNECT gets one
 * answer too. */
Test(http, upgrade_and_connect_get_exactly_one_answer)
{
    srv_start("--max-connections", "8");
    client c = cli_open();
    cli_sends(&c, "GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\n"
                  "Upgrade: websocket\r\n\r\n"
                  "GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    response r = expect_response(&c, 5000, "GET with Upgrade");
    cr_assert_eq(r.status, 200, "%s", r.head);
    r = expect_response(&c, 5000, "the request after it");
    cr_expect(r.status == 200 && strstr(r.body, "\"shards\"") != NULL,
              "the second answer on the connection should be /readyz's 200, got %d: %s", r.status,
              r.body);
    cli_close(&c);

    c = cli_open();
    cli_sends(&c, "CONNECT 127.0.0.1:443 HTTP/1.1\r\nHost: 127.0.0.1:443\r\n\r\n");
    r = expect_response(&c, 5000, "CONNECT");
    cr_assert(r.status >= 400 && r.status < 500, "CONNECT: %d", r.status);
    int rc = cli_wait_close(&c, 300);
    c.buf[c.len] = '\0';
    cr_expect(rc == RR_EOF || rc == RR_TIMEOUT, "a second answer to one CONNECT: %.300s", c.buf);
    cli_close(&c);
    srv_done();
}

/* ---- Timeouts ------------------------------------------------------------------------- */

Test(http, slow_request_408_then_close)
{
    srv_start("--max-connections", "8", "--request-timeout", "300", "--idle-timeout", "5000");
    client c = cli_open();
    int64_t t0 = now_ms();
    cli_sends(&c, "GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\n"); /* no blank line */
    response r = expect_response(&c, 5000, "slow request");
    int64_t took = now_ms() - t0;
    assert_problem(&r, 408, "request-timeout");
    assert_closing(&r);
    cr_assert_geq(took, 250, "408 after %" PRId64 " ms, before --request-timeout 300", took);
    cr_assert_leq(took, 3000, "408 after %" PRId64 " ms", took);
    expect_closed(&c, 3000, "after the 408");
    cli_close(&c);

    /* A body that stops coming is timed out the same way. */
    c = cli_open();
    cli_sends(&c, "POST /nope HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc");
    r = expect_response(&c, 5000, "slow body");
    assert_problem(&r, 408, "request-timeout");
    expect_closed(&c, 3000, "after the 408");
    cli_close(&c);
    srv_done();
}

Test(http, idle_keep_alive_closed_after_idle_timeout)
{
    srv_start("--max-connections", "8", "--request-timeout", "300", "--idle-timeout", "500");
    client c = cli_open();
    response r = get(&c, "/livez");
    cr_assert_eq(r.status, 200);
    int64_t t0 = now_ms();
    int rc = cli_wait_close(&c, 5000);
    int64_t took = now_ms() - t0;
    cr_assert_eq(rc, RR_EOF, "idle connection: %s (silent close expected)", rr_name(rc));
    cr_assert_geq(took, 400, "closed after %" PRId64 " ms, before --idle-timeout 500", took);
    cli_close(&c);

    /* A connection that never sends anything is closed too. */
    c = cli_open();
    rc = cli_wait_close(&c, 5000);
    cr_assert_eq(rc, RR_EOF, "silent connection: %s", rr_name(rc));
    cli_close(&c);
    srv_done();
}

/* ---- Connection limit -------------------------------------------------------------------- */

Test(http, connection_limit_503_then_recovers)
{
    srv_start("--max-connections", "8", "--idle-timeout", "20000");
    client cs[8];
    for (int i = 0; i < 8; i++) {
        cs[i] = cli_open();
        response r = get(&cs[i], "/livez"); /* accepted and counted */
        cr_assert_eq(r.status, 200, "connection %d", i);
    }
    /* The 9th: its head, then its body is everything up to the close (checked
     * against Content-Length without stopping the test, so the rest runs). */
    client x = cli_open();
    response r;
    int rc = cli_read_response_opt(&x, &r, 5000, true);
    cr_assert_eq(rc, RR_OK, "9th connection: expected a 503, got %s", rr_name(rc));
    cr_assert_eq(r.status, 503, "%s", r.head);
    char v[64] = "";
    cr_assert(header_get(r.head, "Retry-After", v, sizeof(v)), "no Retry-After: %s", r.head);
    cr_assert_gt(atoi(v), 0, "Retry-After %s", v);
    cr_assert(header_get(r.head, "Date", v, sizeof(v)), "no Date on the 503: %s", r.head);
    cr_assert(header_get(r.head, "Content-Type", v, sizeof(v)));
    cr_assert_str_eq(v, "application/problem+json");
    assert_closing(&r);
    cr_assert(header_get(r.head, "Content-Length", v, sizeof(v)));
    while ((rc = cli_fill(&x, 3000)) > 0)
        ;
    cr_assert_eq(rc, 0, "the refused connection should be closed: %s", rr_name(rc));
    x.buf[x.len] = '\0';
    cr_expect_eq(x.len, (size_t)atoi(v),
                 "the 503 says Content-Length: %s but its body is %zu bytes: %s (a client waits "
                 "for the missing bytes, then sees a truncated response)",
                 v, x.len, x.buf);
    cr_expect_not_null(
        strstr(x.buf, "\"type\":\"https://usher.dev/problems/too-many-connections\""), "%s", x.buf);
    cr_expect_not_null(strstr(x.buf, "\"status\":503"), "%s", x.buf);
    cli_close(&x);

    /* The eight still work. */
    for (int i = 0; i < 8; i++) {
        r = get(&cs[i], "/readyz");
        cr_assert_eq(r.status, 200);
    }
    /* Close three; new connections are served again (the server notices the
     * closes asynchronously, so allow it a moment). */
    for (int i = 0; i < 3; i++)
        cli_close(&cs[i]);
    int64_t deadline = now_ms() + 3000;
    bool served = false;
    while (!served && now_ms() < deadline) {
        sleep_ms(50);
        client y = cli_open();
        cli_sends(&y, "GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
        rc = cli_read_response(&y, &r, 3000);
        served = rc == RR_OK && r.status == 200;
        cli_close(&y);
    }
    cr_assert(served, "no new connection served after closing three of eight");
    client more[3];
    for (int i = 0; i < 3; i++) {
        more[i] = cli_open();
        r = get(&more[i], "/livez");
        cr_assert_eq(r.status, 200, "new connection %d after closing three", i);
    }
    for (int i = 0; i < 3; i++)
        cli_close(&more[i]);
    for (int i = 3; i < 8; i++)
        cli_close(&cs[i]);
    srv_done();
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
    client cs[CONNS_PER_WORKER];
    int open = 0;
    for (; open < CONNS_PER_WORKER; open++) {
        int fd = tcp_connect(w->port, 0);
        if (fd < 0) {
            snprintf(w->err, sizeof(w->err), "connect: %s", strerror(errno));
            goto out;
        }
        cli_init(&cs[open], fd);
    }
    for (int round = 0; round < REQS_PER_CONN; round++) {
        const char *path = round % 10 == 9 ? "/readyz" : "/livez";
        char req[128];
        int n = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", path);
        for (int i = 0; i < CONNS_PER_WORKER; i++) {
            if (!cli_send_raw(&cs[i], req, (size_t)n)) {
                snprintf(w->err, sizeof(w->err), "send round %d conn %d: %s", round, i,
                         strerror(errno));
                goto out;
            }
        }
        for (int i = 0; i < CONNS_PER_WORKER; i++) {
            response r;
            int rc = cli_read_response(&cs[i], &r, 20000);
            if (rc != RR_OK) {
                snprintf(w->err, sizeof(w->err), "round %d conn %d: %s", round, i, rr_name(rc));
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
        cli_close(&cs[i]);
    return NULL;
}

Test(http, concurrency_200_connections_x_50_requests)
{
    srv_start("--max-connections", "1000", "--idle-timeout", "30000");
    worker ws[WORKERS];
    memset(ws, 0, sizeof(ws));
    for (int i = 0; i < WORKERS; i++) {
        ws[i].port = srv.port;
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
    client c = cli_open();
    response r = get(&c, "/metrics");
    cr_assert_null(strstr(r.body, "usher_connections_accepted_total{shard=\"0\"} 0\n"), "%s",
                   r.body);
    cr_assert_null(strstr(r.body, "usher_connections_accepted_total{shard=\"1\"} 0\n"), "%s",
                   r.body);
    cli_close(&c);
    srv_done();
}

/* ---- Shutdown and restart --------------------------------------------------------------- */

Test(http, sigterm_with_idle_connections_exits_promptly)
{
    /* Idle limit far beyond the stop deadline: the server must close them. */
    srv_start("--max-connections", "8", "--idle-timeout", "60000");
    client used = cli_open();
    response r = get(&used, "/livez");
    cr_assert_eq(r.status, 200);
    client silent = cli_open();
    sleep_ms(100);
    int64_t t0 = now_ms();
    srv_stop_within(3000);
    int64_t took = now_ms() - t0;
    expect_closed(&used, 1000, "idle keep-alive connection at shutdown");
    expect_closed(&silent, 1000, "silent connection at shutdown");
    cr_assert_lt(took, 3000);
    cli_close(&used);
    cli_close(&silent);
    rm_tree(srv.root);
    srv.root[0] = '\0';
}

Test(http, sigterm_with_partial_request_exits)
{
    srv_start("--max-connections", "8", "--request-timeout", "300", "--idle-timeout", "60000");
    client c = cli_open();
    cli_sends(&c, "GET /livez HTTP/1.1\r\nHost: 1");
    sleep_ms(50);
    srv_stop_within(4000);
    /* Whatever it said (a 408 or nothing), the connection is closed. */
    response r;
    int rc = cli_read_response(&c, &r, 1000);
    if (rc == RR_OK) {
        assert_problem(&r, 408, "request-timeout");
        rc = cli_wait_close(&c, 1000);
    }
    cr_assert_eq(rc, RR_EOF, "%s", rr_name(rc));
    cli_close(&c);
    rm_tree(srv.root);
    srv.root[0] = '\0';
}

/* A client that stopped reading (its answers stuck in the kernel) must not
 * hold the shutdown for the idle timeout (60 s by default). */
Test(http, sigterm_with_stalled_reader_exits_promptly)
{
    srv_start("--max-connections", "8");
    client c = cli_open_rcvbuf(4096);
    static char req[2000 * 32];
    size_t len = 0;
    for (int i = 0; i < 2000; i++)
        len += (size_t)sprintf(req + len, "GET /metrics HTTP/1.1\r\n\r\n");
    cli_send(&c, req, len); /* ~10 MB of answers, never read */
    sleep_ms(300);
    srv_stop_within(5000);
    cli_close(&c);
    rm_tree(srv.root);
    srv.root[0] = '\0';
}

Test(http, restart_on_same_data_dir_recovers)
{
    srv_start("--max-connections", "8");
    client c = cli_open();
    response r = get(&c, "/readyz");
    cr_assert_eq(r.status, 200);
    cli_close(&c);
    srv_stop_within(5000);
    uint16_t first = srv.port;

    srv_start("--max-connections", "8"); /* same srv.root, same data dir */
    const char *log = slurp(srv.errlog);
    cr_assert_not_null(strstr(log, "msg=\"shard recovered\" shard=0"), "%s", log);
    cr_assert_not_null(strstr(log, "msg=\"shard recovered\" shard=1"), "%s", log);
    c = cli_open();
    r = get(&c, "/readyz");
    cr_assert_eq(r.status, 200, "after restart (port %u, was %u): %s", srv.port, first, r.body);
    cr_assert_not_null(strstr(r.body, "\"status\":\"ready\""));
    r = get(&c, "/livez");
    cr_assert_eq(r.status, 200);
    cli_close(&c);
    srv_done();
}

/* ---- Date, Expect, header count ------------------------------------------------------ */

Test(http, every_answer_carries_a_date)
{
    srv_start("--max-connections", "8");
    client c = cli_open();
    const char *paths[] = {"/livez", "/nope"};
    for (size_t i = 0; i < 2; i++) {
        response r = get(&c, paths[i]);
        char date[64] = "";
        cr_assert(header_get(r.head, "Date", date, sizeof(date)), "no Date: %s", r.head);
        /* IMF-fixdate, e.g. "Sat, 21 Nov 2026 07:20:00 GMT" (RFC 9110 5.6.7). */
        struct tm tm;
        memset(&tm, 0, sizeof(tm));
        const char *end = strptime(date, "%a, %d %b %Y %H:%M:%S GMT", &tm);
        cr_assert(end != NULL && *end == '\0', "not an IMF-fixdate: '%s'", date);
        time_t when = timegm(&tm), now = time(NULL);
        cr_assert(when >= now - 5 && when <= now + 5, "Date '%s' is not now", date);
    }
    cli_close(&c);
    srv_done();
}

Test(http, expect_100_continue_gets_the_go_ahead_then_the_answer)
{
    srv_start("--max-connections", "8");
    client c = cli_open();
    cli_sends(&c, "POST /nope HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\n"
                  "Expect: 100-continue\r\n\r\n");
    static response r;                                  /* large: keep it off the stack */
    int rc = cli_read_response_opt(&c, &r, 5000, true); /* an interim answer has no body */
    cr_assert_eq(rc, RR_OK, "the interim answer: %s", rr_name(rc));
    cr_assert_eq(r.status, 100, "expected 100 Continue before the body, got %d", r.status);
    cli_sends(&c, "hello");
    r = expect_response(&c, 5000, "the final answer");
    assert_problem(&r, 404, "not-found");
    /* The connection is still good. */
    r = get(&c, "/livez");
    cr_assert_eq(r.status, 200);
    cli_close(&c);
    srv_done();
}

Test(http, unknown_expectation_is_417_and_close)
{
    srv_start("--max-connections", "8");
    client c = cli_open();
    cli_sends(&c, "POST /livez HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2\r\n"
                  "Expect: magic\r\n\r\n{}");
    response r = expect_response(&c, 5000, "Expect: magic");
    assert_problem(&r, 417, "expectation-failed");
    assert_closing(&r);
    expect_closed(&c, 5000, "after 417");
    cli_close(&c);
    srv_done();
}

Test(http, more_than_100_header_fields_is_431)
{
    srv_start("--max-connections", "8", "--max-header-bytes", "65536");
    static char req[16384];
    size_t len = (size_t)sprintf(req, "GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    for (int i = 0; i < 99; i++) /* with Host: exactly 100 fields */
        len += (size_t)sprintf(req + len, "X-F%d: v\r\n", i);
    len += (size_t)sprintf(req + len, "\r\n");
    client c = cli_open();
    cli_send(&c, req, len);
    response r = expect_response(&c, 5000, "100 header fields");
    cr_assert_eq(r.status, 200, "100 fields are allowed: got %d", r.status);
    len -= 2;
    len += (size_t)sprintf(req + len, "X-One-Too-Many: v\r\n\r\n");
    cli_send(&c, req, len);
    r = expect_response(&c, 5000, "101 header fields");
    assert_problem(&r, 431, "headers-too-large");
    assert_closing(&r);
    cli_close(&c);
    srv_done();
}
