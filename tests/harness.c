/*
 * harness.c - the end-to-end test harness; see harness.h.
 */
#define _GNU_SOURCE

#include "harness.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
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

extern char **environ;

/* ---- Time ------------------------------------------------------------------------ */

int64_t h_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void h_sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

/* ---- Files ----------------------------------------------------------------------- */

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

void h_rm_tree(const char *path)
{
    if (path[0] != '\0')
        nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* Into a static buffer: nothing to free when an assertion ends the test. */
const char *h_slurp(const char *path)
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

const char *h_tail(const char *s, size_t n)
{
    size_t len = strlen(s);
    return len > n ? s + len - n : s;
}

/* ---- The server process ---------------------------------------------------------- */

h_server h_srv = {.pid = 0, .out_fd = -1, .shards = 2};

void h_cleanup(void)
{
    if (h_srv.pid > 0) {
        kill(h_srv.pid, SIGKILL);
        waitpid(h_srv.pid, NULL, 0);
        h_srv.pid = 0;
    }
    if (h_srv.out_fd >= 0) {
        close(h_srv.out_fd);
        h_srv.out_fd = -1;
    }
    if (h_srv.root[0] != '\0') {
        h_rm_tree(h_srv.root);
        h_srv.root[0] = '\0';
    }
}

void h_suite_init(void)
{
    signal(SIGPIPE, SIG_IGN);
    atexit(h_cleanup);
    atexit(h_replies_free);
}

void h_suite_fini(void)
{
    h_cleanup();
    h_replies_free();
}

static void ensure_root(void)
{
    if (h_srv.root[0] != '\0')
        return;
    strcpy(h_srv.root, "/tmp/usher-test-XXXXXX");
    cr_assert_not_null(mkdtemp(h_srv.root), "mkdtemp: %s", strerror(errno));
    snprintf(h_srv.data, sizeof(h_srv.data), "%s/data", h_srv.root);
    snprintf(h_srv.errlog, sizeof(h_srv.errlog), "%s/stderr.log", h_srv.root);
}

/* The environment plus `extra` (a NAME= in extra replaces the inherited
 * one), built before fork: the child only execs. */
static char **env_build(const char *const *extra)
{
    size_t n = 0, k = 0;
    while (environ[n] != NULL)
        n++;
    while (extra != NULL && extra[k] != NULL)
        k++;
    char **out = calloc(n + k + 1, sizeof(char *));
    cr_assert_not_null(out);
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        bool replaced = false;
        for (size_t j = 0; j < k && !replaced; j++) {
            const char *eq = strchr(extra[j], '=');
            size_t nl = eq != NULL ? (size_t)(eq - extra[j]) + 1 : strlen(extra[j]);
            replaced = strncmp(environ[i], extra[j], nl) == 0;
        }
        if (!replaced)
            out[m++] = environ[i];
    }
    for (size_t j = 0; j < k; j++)
        out[m++] = (char *)extra[j];
    out[m] = NULL;
    return out;
}

/* Forks and execs usherd with `argv` and `envp`; stdout to `out_fd`
 * (or /dev/null when < 0), stderr to `errpath` (truncated). */
static pid_t spawn(const char *bin, const char *const *argv, char **envp, int out_fd,
                   const char *errpath)
{
    pid_t parent = getpid();
    pid_t pid = fork();
    cr_assert_geq(pid, 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        /* The server dies with the test process, whatever happens to it. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(126);
        int err = open(errpath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        int in = open("/dev/null", O_RDONLY | O_CLOEXEC);
        int out = out_fd >= 0 ? out_fd : open("/dev/null", O_WRONLY | O_CLOEXEC);
        if (err < 0 || in < 0 || out < 0 || dup2(out, 1) < 0 || dup2(err, 2) < 0 || dup2(in, 0) < 0)
            _exit(125);
        signal(SIGPIPE, SIG_DFL);
        execve(bin, (char *const *)argv, envp);
        _exit(127);
    }
    return pid;
}

static const char *usherd_bin(void)
{
    const char *bin = getenv("USHERD");
    cr_assert(bin != NULL && bin[0] != '\0', "USHERD must name the usherd binary");
    return bin;
}

static void note_shards(const char *const *args)
{
    for (int i = 0; args != NULL && args[i] != NULL; i++) {
        if (strcmp(args[i], "--shards") == 0 && args[i + 1] != NULL)
            h_srv.shards = (uint32_t)atoi(args[i + 1]);
    }
}

void h_start_env(const char *const *args, const char *const *env)
{
    const char *bin = usherd_bin();
    ensure_root();
    h_srv.shards = 2;
    note_shards(args);
    const char *argv[64];
    int argc = 0;
    argv[argc++] = bin;
    argv[argc++] = "--listen";
    argv[argc++] = "127.0.0.1:0";
    argv[argc++] = "--data-dir";
    argv[argc++] = h_srv.data;
    argv[argc++] = "--shards";
    argv[argc++] = "2";
    /* Tests send many requests from 127.0.0.1: no rate limits unless the
     * test's own --rate-limit turns some on (the flags apply in order). */
    argv[argc++] = "--rate-limit";
    argv[argc++] = "off";
    for (int i = 0; args != NULL && args[i] != NULL && argc < 62; i++)
        argv[argc++] = args[i];
    argv[argc] = NULL;

    int pfd[2];
    cr_assert_eq(pipe2(pfd, O_CLOEXEC), 0, "pipe2: %s", strerror(errno));
    char **envp = env_build(env);
    pid_t pid = spawn(bin, argv, envp, pfd[1], h_srv.errlog);
    free(envp);
    close(pfd[1]);
    h_srv.pid = pid;
    h_srv.out_fd = pfd[0];
    h_srv.port = 0;

    /* Wait for "listening on http://127.0.0.1:PORT". */
    char line[4096];
    size_t len = 0;
    int64_t deadline = h_now_ms() + 20000;
    static const char prefix[] = "listening on http://127.0.0.1:";
    while (h_srv.port == 0) {
        int64_t left = deadline - h_now_ms();
        if (left <= 0)
            break;
        struct pollfd p = {.fd = h_srv.out_fd, .events = POLLIN};
        int pr = poll(&p, 1, (int)left);
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr <= 0)
            break;
        ssize_t n = read(h_srv.out_fd, line + len, sizeof(line) - 1 - len);
        if (n <= 0)
            break;
        len += (size_t)n;
        line[len] = '\0';
        const char *at = strstr(line, prefix);
        if (at != NULL && strchr(at, '\n') != NULL)
            h_srv.port = (uint16_t)atoi(at + strlen(prefix));
        if (len == sizeof(line) - 1)
            break;
    }
    if (h_srv.port == 0) {
        const char *log = h_slurp(h_srv.errlog);
        cr_assert_fail("usherd did not report its port (it exited, or 20 s passed); stdout: "
                       "'%.*s'; stderr: %s",
                       (int)len, line, h_tail(log, 1500));
    }
}

static void assert_clean_log(const char *log)
{
    cr_assert_null(strstr(log, "Sanitizer"), "sanitizer report: %s", h_tail(log, 3000));
    cr_assert_null(strstr(log, "runtime error"), "UBSan report: %s", h_tail(log, 3000));
    cr_assert_null(strstr(log, "assertion failed"), "assertion: %s", h_tail(log, 3000));
}

void h_assert_alive(void)
{
    cr_assert_gt(h_srv.pid, 0, "no server");
    int st = 0;
    pid_t r = waitpid(h_srv.pid, &st, WNOHANG);
    if (r == h_srv.pid) {
        h_srv.pid = 0;
        const char *log = h_slurp(h_srv.errlog);
        cr_assert_fail("usherd is no longer running (status 0x%x, signal %d); stderr: %s", st,
                       WIFSIGNALED(st) ? WTERMSIG(st) : 0, h_tail(log, 3000));
    }
}

void h_stop_within(int within_ms)
{
    cr_assert_gt(h_srv.pid, 0, "no server to stop");
    h_assert_alive();
    cr_assert_eq(kill(h_srv.pid, SIGTERM), 0, "kill: %s", strerror(errno));
    int64_t start = h_now_ms(), deadline = start + within_ms;
    int st = 0;
    pid_t r;
    while ((r = waitpid(h_srv.pid, &st, WNOHANG)) == 0 && h_now_ms() < deadline)
        h_sleep_ms(10);
    if (r == 0) {
        kill(h_srv.pid, SIGKILL);
        waitpid(h_srv.pid, NULL, 0);
        h_srv.pid = 0;
        const char *log = h_slurp(h_srv.errlog);
        cr_assert_fail("usherd still running %d ms after SIGTERM (killed); stderr: %s", within_ms,
                       h_tail(log, 1500));
    }
    h_srv.pid = 0;
    close(h_srv.out_fd);
    h_srv.out_fd = -1;
    h_api_close();
    const char *log = h_slurp(h_srv.errlog);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0,
              "usherd did not exit 0 after SIGTERM (status 0x%x, signal %d); stderr: %s", st,
              WIFSIGNALED(st) ? WTERMSIG(st) : 0, h_tail(log, 3000));
    for (uint32_t i = 0; i < h_srv.shards; i++) {
        char want[64];
        snprintf(want, sizeof(want), "msg=\"final snapshot\" shard=%u", i);
        cr_assert_not_null(strstr(log, want), "no final snapshot for shard %u; stderr: %s", i,
                           h_tail(log, 1500));
    }
    cr_assert_not_null(strstr(log, "usherd: stopped"), "no 'usherd: stopped'; stderr: %s",
                       h_tail(log, 1500));
    assert_clean_log(log);
}

void h_done(void)
{
    h_stop_within(5000);
    h_replies_free();
    char root[sizeof(h_srv.root)];
    memcpy(root, h_srv.root, sizeof(root));
    h_rm_tree(h_srv.root);
    h_srv.root[0] = '\0';
    struct stat st;
    cr_assert(stat(root, &st) < 0 && errno == ENOENT, "%s still exists", root);
}

void h_kill(void)
{
    h_assert_alive();
    cr_assert_eq(kill(h_srv.pid, SIGKILL), 0, "kill: %s", strerror(errno));
    int st = 0;
    cr_assert_eq(waitpid(h_srv.pid, &st, 0), h_srv.pid);
    h_srv.pid = 0;
    close(h_srv.out_fd);
    h_srv.out_fd = -1;
    h_api_close();
    cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "usherd ended by itself (0x%x)", st);
    assert_clean_log(h_slurp(h_srv.errlog));
}

int h_run(const char *const *args, const char *const *env, char *out, size_t cap)
{
    const char *bin = usherd_bin();
    ensure_root();
    note_shards(args);
    char shards[16];
    snprintf(shards, sizeof(shards), "%u", h_srv.shards);
    const char *argv[64];
    int argc = 0;
    argv[argc++] = bin;
    argv[argc++] = "--data-dir";
    argv[argc++] = h_srv.data;
    argv[argc++] = "--shards";
    argv[argc++] = shards;
    for (int i = 0; args != NULL && args[i] != NULL && argc < 62; i++)
        argv[argc++] = args[i];
    argv[argc] = NULL;
    int pfd[2];
    cr_assert_eq(pipe2(pfd, O_CLOEXEC), 0, "pipe2: %s", strerror(errno));
    char runlog[160];
    snprintf(runlog, sizeof(runlog), "%s/run.log", h_srv.root);
    char **envp = env_build(env);
    pid_t pid = spawn(bin, argv, envp, pfd[1], runlog);
    free(envp);
    close(pfd[1]);
    size_t len = 0;
    int64_t deadline = h_now_ms() + 60000;
    for (;;) {
        int64_t left = deadline - h_now_ms();
        struct pollfd p = {.fd = pfd[0], .events = POLLIN};
        int pr = poll(&p, 1, left > 0 ? (int)left : 0);
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr <= 0) {
            kill(pid, SIGKILL);
            break;
        }
        char tmp[1024];
        ssize_t n = read(pfd[0], tmp, sizeof(tmp));
        if (n <= 0)
            break;
        size_t take = cap > 0 && len + (size_t)n >= cap ? cap - 1 - len : (size_t)n;
        if (cap > 0) {
            memcpy(out + len, tmp, take);
            len += take;
        }
    }
    close(pfd[0]);
    if (cap > 0)
        out[len] = '\0';
    int st = 0;
    waitpid(pid, &st, 0);
    assert_clean_log(h_slurp(runlog));
    return st;
}

/* ---- Raw client ------------------------------------------------------------------ */

const char *h_rr_name(int rc)
{
    switch (rc) {
    case H_RR_OK:
        return "a response";
    case H_RR_EOF:
        return "EOF (connection closed)";
    case H_RR_RESET:
        return "connection reset";
    case H_RR_TIMEOUT:
        return "timeout";
    case H_RR_BAD:
        return "malformed or truncated response";
    case H_RR_DATA:
        return "more data";
    default:
        return "?";
    }
}

int h_tcp_connect(uint16_t port, int rcvbuf)
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

void h_cli_init(h_client *c, int fd)
{
    c->fd = fd;
    c->len = 0;
}

h_client h_cli_open_rcvbuf(int rcvbuf)
{
    h_client c;
    int fd = h_tcp_connect(h_srv.port, rcvbuf);
    cr_assert_geq(fd, 0, "connect to 127.0.0.1:%u: %s", h_srv.port, strerror(errno));
    h_cli_init(&c, fd);
    return c;
}

h_client h_cli_open(void)
{
    return h_cli_open_rcvbuf(0);
}

void h_cli_close(h_client *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
}

bool h_cli_send_raw(h_client *c, const char *data, size_t len)
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

void h_cli_send(h_client *c, const char *data, size_t len)
{
    cr_assert(h_cli_send_raw(c, data, len), "send: %s", strerror(errno));
}

void h_cli_sends(h_client *c, const char *s)
{
    h_cli_send(c, s, strlen(s));
}

int h_cli_fill(h_client *c, int timeout_ms)
{
    if (c->len + 1 >= sizeof(c->buf))
        return H_RR_BAD; /* a response head larger than any usherd sends */
    int64_t deadline = h_now_ms() + timeout_ms;
    for (;;) {
        int64_t left = deadline - h_now_ms();
        struct pollfd p = {.fd = c->fd, .events = POLLIN};
        int pr = poll(&p, 1, left > 0 ? (int)left : 0);
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr <= 0)
            return H_RR_TIMEOUT;
        ssize_t n = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len - 1, MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            continue;
        if (n < 0)
            return errno == ECONNRESET ? H_RR_RESET : H_RR_BAD;
        c->len += (size_t)n;
        return (int)(n > 0 ? 1 : 0);
    }
}

bool h_header_get(const char *head, const char *name, char *out, size_t cap)
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

bool h_has_header(const h_response *r, const char *name)
{
    char v[256];
    return h_header_get(r->head, name, v, sizeof(v));
}

/* Reads a head into `head` (cap bytes): returns its length (> 0), or an
 * H_RR_* code. With `skip_interim`, 1xx answers are consumed and skipped;
 * otherwise one is returned like any answer (it has no content). */
static int read_head(h_client *c, char *head, size_t cap, int64_t deadline, int *status,
                     bool skip_interim)
{
    for (;;) {
        const char *e = c->len >= 4 ? memmem(c->buf, c->len, "\r\n\r\n", 4) : NULL;
        if (e != NULL) {
            size_t head_len = (size_t)(e - c->buf) + 4;
            if (head_len >= cap)
                return H_RR_BAD;
            memcpy(head, c->buf, head_len);
            head[head_len] = '\0';
            if (strncmp(head, "HTTP/1.1 ", 9) != 0)
                return H_RR_BAD;
            *status = atoi(head + 9);
            if (*status >= 100 && *status < 200 && skip_interim) {
                /* Interim answers (1xx) have no content. */
                memmove(c->buf, c->buf + head_len, c->len - head_len);
                c->len -= head_len;
                continue;
            }
            return (int)head_len;
        }
        if (c->len >= cap)
            return H_RR_BAD;
        int64_t left = deadline - h_now_ms();
        if (left <= 0)
            return H_RR_TIMEOUT;
        int got = h_cli_fill(c, (int)left);
        if (got == 0)
            return c->len == 0 ? H_RR_EOF : H_RR_BAD;
        if (got < 0)
            return got;
    }
}

int h_read_response_opt(h_client *c, h_response *r, int timeout_ms, bool no_body)
{
    r->status = 0;
    r->head[0] = '\0';
    r->body[0] = '\0';
    r->body_len = 0;
    int64_t deadline = h_now_ms() + timeout_ms;
    int head_len = read_head(c, r->head, sizeof(r->head), deadline, &r->status, false);
    if (head_len < 0)
        return head_len;
    if (r->status >= 100 && r->status < 200) {
        memmove(c->buf, c->buf + head_len, c->len - (size_t)head_len);
        c->len -= (size_t)head_len;
        return H_RR_OK;
    }
    char cl[64];
    if (!h_header_get(r->head, "Content-Length", cl, sizeof(cl)))
        return H_RR_BAD;
    char *end;
    unsigned long long n = strtoull(cl, &end, 10);
    if (*end != '\0' || n > H_BODY_MAX)
        return H_RR_BAD;
    r->body_len = no_body ? 0 : (size_t)n;
    size_t need = (size_t)head_len + r->body_len;
    while (c->len < need) {
        int64_t left = deadline - h_now_ms();
        if (left <= 0)
            return H_RR_TIMEOUT;
        int got = h_cli_fill(c, (int)left);
        if (got == 0)
            return H_RR_BAD;
        if (got < 0)
            return got;
    }
    memcpy(r->body, c->buf + head_len, r->body_len);
    r->body[r->body_len] = '\0';
    memmove(c->buf, c->buf + need, c->len - need);
    c->len -= need;
    return H_RR_OK;
}

int h_read_response(h_client *c, h_response *r, int timeout_ms)
{
    return h_read_response_opt(c, r, timeout_ms, false);
}

int h_wait_close(h_client *c, int timeout_ms)
{
    if (c->len > 0)
        return H_RR_DATA;
    int got = h_cli_fill(c, timeout_ms);
    if (got > 0)
        return H_RR_DATA;
    return got == 0 ? H_RR_EOF : got;
}

h_response h_expect_response(h_client *c, int timeout_ms, const char *what)
{
    h_response r;
    int rc = h_read_response(c, &r, timeout_ms);
    cr_assert_eq(rc, H_RR_OK, "%s: expected a response, got %s (buffered: '%.*s')", what,
                 h_rr_name(rc), (int)(c->len < 300 ? c->len : 300), c->buf);
    return r;
}

void h_expect_closed(h_client *c, int timeout_ms, const char *what)
{
    int rc = h_wait_close(c, timeout_ms);
    cr_assert_eq(rc, H_RR_EOF,
                 "%s: expected the server to close the connection (recv 0), got %s%s%.*s", what,
                 h_rr_name(rc), rc == H_RR_DATA ? ": " : "", (int)(c->len < 400 ? c->len : 400),
                 c->buf);
}

h_response h_get(h_client *c, const char *path)
{
    char req[2600];
    snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", path);
    h_cli_sends(c, req);
    return h_expect_response(c, 5000, path);
}

void h_assert_problem(const h_response *r, int status, const char *slug)
{
    char ct[128] = "";
    cr_assert_eq(r->status, status, "expected status %d, got %d: %s%s", status, r->status, r->head,
                 r->body);
    cr_assert(h_header_get(r->head, "Content-Type", ct, sizeof(ct)), "no Content-Type: %s",
              r->head);
    cr_assert_str_eq(ct, "application/problem+json");
    char want[160];
    snprintf(want, sizeof(want), "\"type\":\"https://usher.dev/problems/%s\"", slug);
    cr_assert_not_null(strstr(r->body, want), "problem type %s missing: %s", slug, r->body);
    cr_assert_not_null(strstr(r->body, "\"title\":\""), "no title: %s", r->body);
    snprintf(want, sizeof(want), "\"status\":%d", status);
    cr_assert_not_null(strstr(r->body, want), "no %s: %s", want, r->body);
    cr_assert_not_null(strstr(r->body, "\"detail\":\""), "no detail: %s", r->body);
    cr_assert(r->body_len > 0 && r->body[0] == '{' && r->body[r->body_len - 1] == '}',
              "not a JSON object: %s", r->body);
}

void h_assert_closing(const h_response *r)
{
    char v[64] = "";
    cr_assert(h_header_get(r->head, "Connection", v, sizeof(v)) && strcasecmp(v, "close") == 0,
              "expected 'Connection: close' on a response after which the server closes: %s",
              r->head);
}

size_t h_count_of(const char *s, const char *needle)
{
    size_t n = 0;
    for (const char *p = strstr(s, needle); p != NULL; p = strstr(p + 1, needle))
        n++;
    return n;
}

/* ---- JSON client ------------------------------------------------------------------- */

/* Every reply, reachable from here until h_replies_free(). */
typedef struct reply_node {
    struct reply_node *next;
    h_reply r;
} reply_node;

static pthread_mutex_t replies_mu = PTHREAD_MUTEX_INITIALIZER;
static reply_node *replies;

void h_replies_free(void)
{
    pthread_mutex_lock(&replies_mu);
    reply_node *n = replies;
    replies = NULL;
    pthread_mutex_unlock(&replies_mu);
    while (n != NULL) {
        reply_node *next = n->next;
        free(n->r.body);
        json_decref(n->r.json);
        free(n);
        n = next;
    }
}

static h_reply *reply_new(void)
{
    reply_node *n = calloc(1, sizeof(*n));
    if (n == NULL)
        return NULL;
    pthread_mutex_lock(&replies_mu);
    n->next = replies;
    replies = n;
    pthread_mutex_unlock(&replies_mu);
    return &n->r;
}

/* Reads one answer of any size (thread-safe, no asserts). */
static int read_reply(h_client *c, h_reply *r, bool head_only, int timeout_ms)
{
    int64_t deadline = h_now_ms() + timeout_ms;
    int head_len = read_head(c, r->head, sizeof(r->head), deadline, &r->status, true);
    if (head_len < 0)
        return head_len;
    char cl[64];
    size_t n = 0;
    if (h_header_get(r->head, "Content-Length", cl, sizeof(cl))) {
        char *end;
        unsigned long long v = strtoull(cl, &end, 10);
        if (*end != '\0' || cl[0] == '\0' || v > (64u << 20))
            return H_RR_BAD;
        n = (size_t)v;
    } else if (r->status != 204 && r->status != 304 && !head_only) {
        return H_RR_BAD; /* usherd always frames with Content-Length */
    }
    if (head_only || r->status == 204 || r->status == 304)
        n = 0;
    r->body = malloc(n + 1);
    if (r->body == NULL)
        return H_RR_BAD;
    r->body_len = n;
    size_t have = c->len - (size_t)head_len;
    size_t take = have < n ? have : n;
    memcpy(r->body, c->buf + head_len, take);
    memmove(c->buf, c->buf + head_len + take, c->len - (size_t)head_len - take);
    c->len -= (size_t)head_len + take;
    while (take < n) {
        int64_t left = deadline - h_now_ms();
        if (left <= 0)
            return H_RR_TIMEOUT;
        struct pollfd p = {.fd = c->fd, .events = POLLIN};
        int pr = poll(&p, 1, (int)left);
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr <= 0)
            return H_RR_TIMEOUT;
        ssize_t got = recv(c->fd, r->body + take, n - take, MSG_DONTWAIT);
        if (got < 0 && (errno == EAGAIN || errno == EINTR))
            continue;
        if (got <= 0)
            return got == 0 ? H_RR_BAD : (errno == ECONNRESET ? H_RR_RESET : H_RR_BAD);
        take += (size_t)got;
    }
    r->body[n] = '\0';
    r->json = n > 0 ? json_loadb(r->body, n, 0, NULL) : NULL;
    return H_RR_OK;
}

h_reply *h_send_raw(h_client *c, const char *method, const char *path, const char *token,
                    const char *headers, const char *body, int *rc)
{
    *rc = H_RR_BAD;
    size_t blen = body != NULL ? strlen(body) : 0;
    size_t cap = strlen(method) + strlen(path) + (token ? strlen(token) : 0) +
                 (headers ? strlen(headers) : 0) + blen + 256;
    char *req = malloc(cap);
    if (req == NULL)
        return NULL;
    bool framed = body != NULL || strcmp(method, "POST") == 0 || strcmp(method, "PATCH") == 0 ||
                  strcmp(method, "PUT") == 0;
    int n = snprintf(req, cap, "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%s%s%s%s", method, path,
                     token != NULL ? "Authorization: Bearer " : "", token != NULL ? token : "",
                     token != NULL ? "\r\n" : "", headers != NULL ? headers : "");
    if (body != NULL && (headers == NULL || strcasestr(headers, "Content-Type:") == NULL))
        n += snprintf(req + n, cap - (size_t)n, "Content-Type: application/json\r\n");
    if (framed)
        n += snprintf(req + n, cap - (size_t)n, "Content-Length: %zu\r\n", blen);
    n += snprintf(req + n, cap - (size_t)n, "\r\n");
    if (blen > 0)
        memcpy(req + n, body, blen);
    bool sent = h_cli_send_raw(c, req, (size_t)n + blen);
    free(req);
    if (!sent) {
        *rc = H_RR_RESET;
        return NULL;
    }
    h_reply *r = reply_new();
    if (r == NULL)
        return NULL;
    *rc = read_reply(c, r, strcmp(method, "HEAD") == 0, 20000);
    return *rc == H_RR_OK ? r : NULL;
}

h_reply *h_send(h_client *c, const char *method, const char *path, const char *token,
                const char *headers, const char *body)
{
    int rc;
    h_reply *r = h_send_raw(c, method, path, token, headers, body, &rc);
    if (r == NULL) {
        const char *log = h_slurp(h_srv.errlog);
        cr_assert_fail("%s %s: no answer (%s); server stderr: %s", method, path, h_rr_name(rc),
                       h_tail(log, 2000));
    }
    return r;
}

static h_client *shared;
static uint16_t shared_port;

void h_api_close(void)
{
    if (shared != NULL) {
        h_cli_close(shared);
        free(shared);
        shared = NULL;
    }
}

/* The shared connection, reopened when the server closed it. */
static h_client *shared_conn(void)
{
    if (shared != NULL && (shared_port != h_srv.port || shared->fd < 0))
        h_api_close();
    if (shared != NULL) {
        struct pollfd p = {.fd = shared->fd, .events = POLLIN};
        if (poll(&p, 1, 0) > 0) {
            char b;
            if (recv(shared->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT) <= 0)
                h_api_close(); /* closed (idle timeout, Connection: close) */
        }
    }
    if (shared == NULL) {
        shared = malloc(sizeof(*shared));
        cr_assert_not_null(shared);
        *shared = h_cli_open();
        shared_port = h_srv.port;
    }
    return shared;
}

h_reply *h_api_text(const char *method, const char *path, const char *token, const char *headers,
                    const char *body)
{
    h_reply *r = h_send(shared_conn(), method, path, token, headers, body);
    char v[32];
    if (h_reply_header(r, "Connection", v, sizeof(v)) && strcasecmp(v, "close") == 0)
        h_api_close();
    return r;
}

static h_reply *api_v(const char *method, const char *path, const char *token, const char *headers,
                      const char *fmt, va_list ap)
{
    char *text = NULL;
    if (fmt != NULL) {
        json_error_t err;
        json_t *b = json_vpack_ex(&err, 0, fmt, ap);
        cr_assert_not_null(b, "json_pack(\"%s\"): %s", fmt, err.text);
        text = json_dumps(b, JSON_COMPACT);
        json_decref(b);
        cr_assert_not_null(text);
    }
    h_client *c = shared_conn();
    int rc;
    h_reply *r = h_send_raw(c, method, path, token, headers, text, &rc);
    free(text);
    if (r == NULL) {
        const char *log = h_slurp(h_srv.errlog);
        cr_assert_fail("%s %s: no answer (%s); server stderr: %s", method, path, h_rr_name(rc),
                       h_tail(log, 2000));
    }
    char v[32];
    if (h_reply_header(r, "Connection", v, sizeof(v)) && strcasecmp(v, "close") == 0)
        h_api_close();
    return r;
}

h_reply *h_api(const char *method, const char *path, const char *token, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    h_reply *r = api_v(method, path, token, NULL, fmt, ap);
    va_end(ap);
    return r;
}

h_reply *h_apih(const char *method, const char *path, const char *token, const char *headers,
                const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    h_reply *r = api_v(method, path, token, headers, fmt, ap);
    va_end(ap);
    return r;
}

bool h_reply_header(const h_reply *r, const char *name, char *out, size_t cap)
{
    return h_header_get(r->head, name, out, cap);
}

void h_assert_problem_json(const h_reply *r, int status, const char *slug, const char *field)
{
    cr_assert_eq(r->status, status, "expected HTTP %d (%s), got %d: %s", status, slug, r->status,
                 r->body);
    char ct[128] = "";
    cr_assert(h_reply_header(r, "Content-Type", ct, sizeof(ct)), "no Content-Type: %s", r->head);
    cr_assert_str_eq(ct, "application/problem+json", "problem %s: Content-Type %s", slug, ct);
    cr_assert(json_is_object(r->json), "problem %s: the body is not a JSON object: %s", slug,
              r->body);
    char want[160];
    snprintf(want, sizeof(want), "https://usher.dev/problems/%s", slug);
    const char *type = json_string_value(json_object_get(r->json, "type"));
    cr_assert(type != NULL && strcmp(type, want) == 0, "expected problem type %s: %s", want,
              r->body);
    cr_assert(json_is_string(json_object_get(r->json, "title")), "no title: %s", r->body);
    cr_assert(json_is_string(json_object_get(r->json, "detail")), "no detail: %s", r->body);
    cr_assert_eq(json_integer_value(json_object_get(r->json, "status")), status,
                 "\"status\" member differs from HTTP %d: %s", status, r->body);
    if (field != NULL) {
        const char *f = json_string_value(json_object_get(r->json, "field"));
        cr_assert(f != NULL && strcmp(f, field) == 0, "expected field \"%s\": %s", field, r->body);
    }
}

json_t *h_jget(const json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    char *text = v == NULL ? json_dumps(o, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    cr_assert_not_null(v, "no member \"%s\" in %s", key, text != NULL ? text : "(null)");
    return v;
}

json_int_t h_jint(const json_t *o, const char *key)
{
    json_t *v = h_jget(o, key);
    cr_assert(json_is_integer(v), "member \"%s\" is not an integer", key);
    return json_integer_value(v);
}

const char *h_jstr(const json_t *o, const char *key)
{
    json_t *v = h_jget(o, key);
    cr_assert(json_is_string(v), "member \"%s\" is not a string", key);
    return json_string_value(v);
}

json_t *h_jat(const json_t *o, const char *key, size_t i)
{
    json_t *a = h_jget(o, key);
    cr_assert(json_is_array(a), "member \"%s\" is not an array", key);
    cr_assert_lt(i, json_array_size(a), "member \"%s\" has %zu elements, not %zu", key,
                 json_array_size(a), i + 1);
    return json_array_get(a, i);
}

size_t h_jlen(const json_t *o, const char *key)
{
    json_t *a = h_jget(o, key);
    cr_assert(json_is_array(a), "member \"%s\" is not an array", key);
    return json_array_size(a);
}
