/*
 * net.h - usherd's server: shard threads, HTTP/1.1, durability wiring.
 *
 * N shard threads each run a libuv loop with their own SO_REUSEPORT listener
 * on the same address, their own engine (recovered from the shard's
 * snapshot and WAL at start), WAL writer and snapshot scheduler. A request is
 * parsed on the shard that accepted its connection.
 *
 * Status of this module (issue #4, built in steps): HTTP/1.1 core (strict
 * llhttp, keep-alive, pipelining with in-order responses, bounded headers,
 * bodies, pipelines and connections, header and idle timeouts), shard
 * recovery and clean shutdown (final snapshot, WAL sync), /livez, /readyz
 * and /metrics. The booking API, auth and cross-shard forwarding are next.
 */
#ifndef USHER_NET_H
#define USHER_NET_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "engine.h"

enum {
    NET_SHARDS_MAX = 32,   /* hold and booking ids (shard << 48 | n) stay below 2^53 for JSON */
    NET_EADDR = -32001,    /* --listen is not ADDR:PORT with a numeric address */
    NET_ECONFIG = -32002,  /* a configuration value is out of range */
    NET_ERECOVER = -32003, /* a shard could not be recovered (see the log) */
    NET_ELOCKED = -32004,  /* another usherd holds the data directory */
    NET_ESECRET = -32005   /* the JWT secret is unusable (see the log) */
};

/** Describes a net error (or -errno). Never NULL. */
const char *net_strerror(int err);

/* Rate limits (docs/api.md, "Rate limits"): token buckets on login, reserve,
 * confirm and on-sale lines (waiting lists, queues), per user (per email tried, for login) and per
 * client IP. */
enum {
    NET_RL_LOGIN_IP,     /* "login-ip" */
    NET_RL_LOGIN_EMAIL,  /* "login-email": the email tried, lowercased */
    NET_RL_RESERVE_USER, /* "reserve-user" */
    NET_RL_RESERVE_IP,   /* "reserve-ip" */
    NET_RL_CONFIRM_USER, /* "confirm-user" */
    NET_RL_CONFIRM_IP,   /* "confirm-ip" */
    NET_RL_ONSALE_USER,  /* "onsale-user": waiting-list and queue joins and leaves */
    NET_RL_ONSALE_IP,    /* "onsale-ip" */
    NET_RL_COUNT
};

typedef struct net_rate_limit {
    uint32_t count;    /* requests per window; 0 = this limit is off */
    uint32_t window_s; /* 1..86400 */
} net_rate_limit;

/** The limit's name ("reserve-user"), or NULL past the last. */
const char *net_rate_limit_name(int limit);

typedef struct net_config {
    const char *listen;          /* "127.0.0.1:8080", "[::1]:0"; port 0 picks a free port */
    const char *data_dir;        /* holds shard-N/{wal,snapshot} */
    uint32_t shards;             /* 1..NET_SHARDS_MAX; 0 = number of CPUs (capped) */
    uint32_t connections_max;    /* open connections across shards; past it: 503 and close */
    uint32_t header_bytes_max;   /* request line + headers; past it: 431 and close */
    uint32_t body_bytes_max;     /* request body; past it: 413 and close */
    uint32_t pipeline_max;       /* requests queued on one connection before reading pauses */
    uint32_t request_timeout_ms; /* a started request (headers and body) must arrive within this */
    uint32_t idle_timeout_ms;    /* a keep-alive connection may idle this long */
    uint32_t backlog;            /* listen(2) backlog per shard */
    uint64_t wal_segment_bytes;  /* 0 = 64 MiB */
    uint64_t snapshot_wal_bytes; /* 0 = 64 MiB */
    uint64_t snapshot_interval_ms;    /* 0 = 60 s */
    engine_config engine;             /* per shard; id_prefix is set to the shard number */
    uint32_t idempotency_keys;        /* Idempotency-Key answers kept per shard (oldest go first) */
    uint32_t token_ttl_s;             /* lifetime of a login token */
    bool password_cost_min;           /* argon2id at libsodium's MIN limits: tests only */
    bool no_listen;                   /* serve no socket (usherd --create-admin) */
    const char *replication_token;    /* opens the replication routes (>= 32 bytes), or NULL */
    const char *web_root;             /* static files served from memory (web.c), or NULL */
    const char *analytics_url;        /* origin of usher-pgexport --http, told to the pages */
    uint32_t replication_streams_max; /* open replication streams; beyond: 503 */
    net_rate_limit rate_limits[NET_RL_COUNT]; /* by NET_RL_*; all off: no table */
    uint32_t rate_limit_keys;                 /* bound on rate-limit entries (server-wide) */
} net_config;

/** Fills the defaults documented in `usherd --help`. */
void net_config_default(net_config *c);

/**
 * Applies a --rate-limit value to c->rate_limits: a comma-separated list of
 * "off" (every limit off), "defaults" (every limit at its default),
 * "NAME=COUNT/SECONDS" or "NAME=off", in order (a later item wins). Returns 0
 * or NET_ECONFIG (nothing is changed then); `err` gets a sentence.
 */
int net_rate_limit_apply(net_config *c, const char *spec, char *err, size_t err_cap);

typedef struct net_server net_server;

/**
 * Recovers every shard (in parallel), binds the listeners and starts the
 * shard threads. On success *port is the bound port and the server is
 * serving. Returns 0, NET_EADDR, NET_ECONFIG, NET_ERECOVER, or -errno
 * (bind, listen, thread creation). Logs (logfmt on stderr) what it does.
 */
int net_server_start(const net_config *c, net_server **out, uint16_t *port);

/**
 * Asks the server to stop (any thread; async-signal-safe): listeners close,
 * connections finish their in-flight requests, every shard takes a final
 * snapshot and closes its WAL.
 */
void net_server_stop(net_server *s);

/**
 * Runs one API request inside the server, as an administrator, from a thread
 * that is not a shard thread (usherd's main thread: --demo, --create-admin),
 * and waits for its answer. `body` may be NULL. On return *status is the
 * HTTP status and *resp a malloc'd NUL-terminated body (caller frees).
 * Returns 0, or -ENOMEM. One call at a time.
 */
int net_server_call(net_server *s, const char *method, const char *path, const char *body,
                    int *status, char **resp);

/** Writes one logfmt line on stderr: ts=... level=LEVEL msg="MSG". */
void net_log(const char *level, const char *msg);

/** Prints "METHOD /path/:id" for every API route, one per line (docs checks). */
void net_routes_print(FILE *out);

/** Waits for every shard thread to finish, then frees the server. Returns 0 or the first error. */
int net_server_wait(net_server *s);

#endif /* USHER_NET_H */
