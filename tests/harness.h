/*
 * harness.h - end-to-end test harness for the usherd binary: start the real
 * server ($USHERD) on 127.0.0.1:0 with a fresh data directory, talk to it
 * with hand-written HTTP/1.1 over raw sockets, stop it with SIGTERM (clean
 * exit checked) or SIGKILL, and remove everything afterwards, even when a
 * test fails.
 *
 * One server per test: Criterion runs every test in its own process, so the
 * server is the global h_srv. Call h_suite_init() from the suite's .init and
 * h_suite_fini() from its .fini (the server is also killed at exit and by
 * PR_SET_PDEATHSIG if the test process dies).
 *
 * Two clients:
 *   - raw: h_client / h_response, fixed buffers, thread-safe functions
 *     (those without Criterion asserts are marked), for protocol tests;
 *   - JSON: h_send() / h_api() return an h_reply with the status, the head
 *     and the body parsed with jansson. Replies are owned by the harness
 *     (freed by h_replies_free(), at h_done() and at exit), so a test never
 *     frees one and an assertion that ends a test leaks nothing.
 */
#ifndef USHER_TESTS_HARNESS_H
#define USHER_TESTS_HARNESS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* ---- Time ------------------------------------------------------------------------ */

/** Monotonic milliseconds. */
int64_t h_now_ms(void);
/** Sleeps `ms` milliseconds (restarted after signals). */
void h_sleep_ms(int ms);

/* ---- Files ----------------------------------------------------------------------- */

/** Removes a directory tree (no-op for ""). */
void h_rm_tree(const char *path);
/** A file's contents in a static buffer (up to 1 MiB; "" when missing). Not thread-safe. */
const char *h_slurp(const char *path);
/** The last `n` bytes of `s`, for messages. */
const char *h_tail(const char *s, size_t n);

/* ---- The server process ---------------------------------------------------------- */

typedef struct h_server {
    pid_t pid;
    int out_fd;     /* its stdout (kept open so a late write cannot SIGPIPE it) */
    char root[64];  /* mkdtemp: data/, stderr.log */
    char data[128]; /* --data-dir */
    char errlog[128];
    uint16_t port;
    uint32_t shards; /* from --shards (2 unless an argument says otherwise) */
} h_server;

/** The test's server. */
extern h_server h_srv;

/** Suite .init / .fini: SIGPIPE ignored, cleanup at exit. */
void h_suite_init(void);
void h_suite_fini(void);

/**
 * Starts usherd with `--listen 127.0.0.1:0 --data-dir ROOT/data --shards 2
 * --rate-limit off` followed by `args` (so "--rate-limit", "reserve-user=3/10"
 * turns on that limit alone) (NULL-terminated, may be NULL; a later flag wins, so
 * "--shards", "4" overrides), with the environment plus `env` ("NAME=value",
 * NULL-terminated, may be NULL). The data directory is made on the first
 * start and reused by later starts (restart). Waits (20 s at most) for
 * "listening on http://127.0.0.1:PORT" and sets h_srv.port.
 */
void h_start_env(const char *const *args, const char *const *env);
#define h_start(...)                                       \
    do {                                                   \
        const char *const h_args_[] = {__VA_ARGS__, NULL}; \
        h_start_env(h_args_, NULL);                        \
    } while (0)

/**
 * SIGTERM, then: exits 0 within `within_ms`, logged a final snapshot for
 * every shard and "usherd: stopped", no sanitizer report, no assertion.
 */
void h_stop_within(int within_ms);

/** A clean stop (5 s), the replies freed, and the directory removed. */
void h_done(void);

/**
 * SIGKILL: the server must still be running (it did not crash before);
 * waits for it. The data directory stays for a restart.
 */
void h_kill(void);

/**
 * Runs usherd to completion (not a server): `--data-dir ROOT/data --shards
 * N` then `args`, with `env` added, stdin from /dev/null. Its stdout goes to
 * `out` (NUL-terminated, cut to `cap`), its stderr to ROOT/run.log. Returns
 * the wait status.
 */
int h_run(const char *const *args, const char *const *env, char *out, size_t cap);

/** Asserts the server is still running (did not crash); names its stderr otherwise. */
void h_assert_alive(void);

/** Kills the server if it runs and removes its directory; idempotent. */
void h_cleanup(void);

/* ---- Raw client ------------------------------------------------------------------ */

enum {
    H_RR_OK = 0,
    H_RR_EOF = -1,
    H_RR_RESET = -2,
    H_RR_TIMEOUT = -3,
    H_RR_BAD = -4,
    H_RR_DATA = 1
};

/** "a response", "EOF (connection closed)", ... */
const char *h_rr_name(int rc);

enum { H_CLIENT_BUF = 64 * 1024, H_BODY_MAX = 64 * 1024 };

/* Fixed buffers only: an assertion that ends a test leaks nothing. */
typedef struct h_client {
    int fd;
    size_t len;
    char buf[H_CLIENT_BUF]; /* received, not yet consumed */
} h_client;

typedef struct h_response {
    int status;
    char head[8192]; /* status line and headers, NUL-terminated */
    size_t body_len;
    char body[H_BODY_MAX + 1]; /* body_len bytes, NUL-terminated */
} h_response;

/** Thread-safe, no asserts: a connected fd to 127.0.0.1:port, or -1. */
int h_tcp_connect(uint16_t port, int rcvbuf);
void h_cli_init(h_client *c, int fd);
/** Connects to h_srv (asserts). `rcvbuf` > 0 sets SO_RCVBUF. */
h_client h_cli_open_rcvbuf(int rcvbuf);
h_client h_cli_open(void);
void h_cli_close(h_client *c);

/** Thread-safe, no asserts: sends everything (false on failure). */
bool h_cli_send_raw(h_client *c, const char *data, size_t len);
void h_cli_send(h_client *c, const char *data, size_t len);
void h_cli_sends(h_client *c, const char *s);

/** Thread-safe: receives more bytes: >0 appended, 0 EOF, H_RR_RESET, H_RR_TIMEOUT, H_RR_BAD. */
int h_cli_fill(h_client *c, int timeout_ms);

/** Thread-safe: value of header `name` in a response head (case-insensitive name). */
bool h_header_get(const char *head, const char *name, char *out, size_t cap);
bool h_has_header(const h_response *r, const char *name);

/**
 * Thread-safe: reads one response (head, then a Content-Length body unless
 * `no_body`); 1xx answers are skipped. H_RR_OK, H_RR_EOF (closed before any
 * byte), H_RR_RESET, H_RR_TIMEOUT or H_RR_BAD.
 */
int h_read_response_opt(h_client *c, h_response *r, int timeout_ms, bool no_body);
int h_read_response(h_client *c, h_response *r, int timeout_ms);

/**
 * After the last response: H_RR_EOF if the server closed, H_RR_RESET,
 * H_RR_TIMEOUT if it stayed open, H_RR_DATA if more bytes came.
 */
int h_wait_close(h_client *c, int timeout_ms);

/** Asserts a response arrives. */
h_response h_expect_response(h_client *c, int timeout_ms, const char *what);
/** Asserts the server closes the connection (recv 0). */
void h_expect_closed(h_client *c, int timeout_ms, const char *what);
/** GET `path`, asserting an answer. */
h_response h_get(h_client *c, const char *path);

/** A problem+json body (RFC 9457 members) with `status` and type .../problems/`slug`. */
void h_assert_problem(const h_response *r, int status, const char *slug);
/** The response says Connection: close. */
void h_assert_closing(const h_response *r);
/** Occurrences of `needle` in `s`. */
size_t h_count_of(const char *s, const char *needle);

/* ---- JSON client ------------------------------------------------------------------- */

typedef struct h_reply {
    int status;
    char head[8192]; /* status line and headers */
    char *body;      /* body_len bytes, NUL-terminated (owned by the harness) */
    size_t body_len;
    json_t *json; /* the body parsed, or NULL (empty or not JSON) */
} h_reply;

/**
 * Sends one request on `c` and reads its answer (asserts one comes within
 * 20 s; any body size). `token` adds "Authorization: Bearer TOKEN" (NULL:
 * none); `headers` are extra header lines, each ending in "\r\n" (NULL:
 * none); `body` is sent as application/json (unless `headers` name another
 * Content-Type) when not NULL. Thread-safe
 * version: h_send_raw (no asserts; NULL on failure).
 */
h_reply *h_send(h_client *c, const char *method, const char *path, const char *token,
                const char *headers, const char *body);
h_reply *h_send_raw(h_client *c, const char *method, const char *path, const char *token,
                    const char *headers, const char *body, int *rc);

/**
 * As h_send, on the test's shared connection to h_srv (opened on first use,
 * and again after the server closed it or restarted). The body is built with
 * jansson's json_pack format `fmt` and the arguments after it (NULL: no
 * body). h_apih also takes extra header lines.
 */
h_reply *h_api(const char *method, const char *path, const char *token, const char *fmt, ...);
h_reply *h_apih(const char *method, const char *path, const char *token, const char *headers,
                const char *fmt, ...);
/** As h_api with the body given as text (sent as is, may be invalid JSON). */
h_reply *h_api_text(const char *method, const char *path, const char *token, const char *headers,
                    const char *body);
/** Closes the shared connection (the next h_api opens another). */
void h_api_close(void);

/** Frees every reply so far (their pointers become invalid). */
void h_replies_free(void);

/** Value of a header of a reply, or false. */
bool h_reply_header(const h_reply *r, const char *name, char *out, size_t cap);

/**
 * Asserts a problem+json answer: `status`, Content-Type
 * application/problem+json, "type" https://usher.dev/problems/`slug`,
 * "title", "detail", "status" equal to the HTTP status, and, when `field` is
 * not NULL, "field" equal to it.
 */
void h_assert_problem_json(const h_reply *r, int status, const char *slug, const char *field);

/** Asserts the reply's status, naming the request and the body otherwise. */
#define h_assert_status(r, want, what)                                                         \
    cr_assert_eq((r)->status, (want), "%s: expected HTTP %d, got %d: %s", (what), (int)(want), \
                 (r)->status, (r)->body)

/** Members of a JSON object, asserted present and of the right type. */
json_t *h_jget(const json_t *o, const char *key);
json_int_t h_jint(const json_t *o, const char *key);
const char *h_jstr(const json_t *o, const char *key);
/** Element i of array member `key` of `o` (asserted). */
json_t *h_jat(const json_t *o, const char *key, size_t i);
/** Size of array member `key` (asserted an array). */
size_t h_jlen(const json_t *o, const char *key);

#endif /* USHER_TESTS_HARNESS_H */
