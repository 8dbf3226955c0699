/*
 * auth.h - usher's authentication: HS256 JSON Web Tokens, the signing
 * secret, and argon2id password hashes.
 *
 * Tokens (RFC 7519, compact JWS of RFC 7515) are issued and consumed by
 * usher alone, so verification accepts exactly what auth_jwt_sign() makes
 * and nothing looser:
 *
 *   base64url({"alg":"HS256","typ":"JWT"}) "." base64url(payload) "." base64url(HMAC-SHA256)
 *
 * with the payload {"iss","sub","aud","exp","iat","jti","role"} in that
 * order, compact (no spaces). base64url is unpadded and canonical. The
 * header may hold only "alg" (must be "HS256") and "typ" (must be "JWT");
 * every other algorithm, "none" above all, is refused, so a token cannot
 * choose how it is checked. The signature is checked before the payload is
 * parsed, so unauthenticated bytes never reach the claim logic.
 *
 * Passwords are hashed with libsodium's crypto_pwhash_str (argon2id). Hashing
 * and verifying take tens of milliseconds and 64 MiB of memory on purpose:
 * run them on a threadpool (uv_queue_work), never on an event loop thread.
 *
 * Call auth_init() once before anything that needs randomness or password
 * hashing (it initialises libsodium). Everything else is reentrant and
 * thread-safe except an auth_cache, which belongs to one thread.
 */
#ifndef USHER_AUTH_H
#define USHER_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum {
    AUTH_SECRET_MIN = 32,        /* HMAC-SHA256 key: at least the hash's output length */
    AUTH_SECRET_MAX = 64,        /* ... and at most its block size (longer keys get hashed) */
    AUTH_SECRET_FILE_BYTES = 32, /* what auth_secret_load_or_create() writes */
    AUTH_SECRET_ENV_MAX = 1024,  /* longest secret string accepted from the environment */
    AUTH_TOKEN_MAX = 4096,       /* longest token accepted (bytes, without a NUL) */
    AUTH_CACHE_TOKEN_MAX = 512,  /* longest token the verified-token cache keeps */
    AUTH_NAME_MAX = 255,         /* longest iss / aud string */
    AUTH_LEEWAY_MAX_S = 300,     /* largest clock-skew allowance */
    AUTH_JTI_HEX = 32,           /* jti: 128 random bits as lowercase hex */
    AUTH_HASH_MAX = 128,         /* room for a password hash string and its NUL */
    AUTH_PASSWORD_MIN = 8,       /* password length bounds, in bytes */
    AUTH_PASSWORD_MAX = 128,
};

/** The environment variable a deployment may put the signing secret in. */
#define AUTH_SECRET_ENV "USHER_JWT_SECRET"

/* ---- Errors: negative; OS errors are -errno ------------------------------------ */
enum {
    AUTH_ETOOLONG = -32001,    /* token longer than AUTH_TOKEN_MAX */
    AUTH_ESEGMENTS = -32002,   /* token is not three '.'-separated segments */
    AUTH_EBASE64 = -32003,     /* a segment is not canonical unpadded base64url */
    AUTH_EJSON = -32004,       /* header or payload is not well-formed JSON */
    AUTH_ENOTOBJECT = -32005,  /* header or payload JSON is not an object */
    AUTH_EALGNONE = -32006,    /* header says "alg":"none" (an unsigned token) */
    AUTH_EALG = -32007,        /* header names an algorithm other than HS256 */
    AUTH_EHEADER = -32008,     /* header lacks "alg", or has a member other than alg/typ */
    AUTH_ETYP = -32009,        /* header "typ" is present and not "JWT" */
    AUTH_ESIGNATURE = -32010,  /* signature does not match (tampered, or another key) */
    AUTH_EMISSING = -32011,    /* a required claim is missing */
    AUTH_ECLAIM = -32012,      /* a claim has the wrong type or an invalid value */
    AUTH_EISS = -32013,        /* "iss" is not the configured issuer */
    AUTH_EAUD = -32014,        /* "aud" is not the configured audience */
    AUTH_EEXPIRED = -32015,    /* now >= exp + leeway */
    AUTH_EIAT = -32016,        /* iat is later than now + leeway */
    AUTH_ENOTYET = -32017,     /* nbf (if present) is later than now + leeway */
    AUTH_EBUFSIZE = -32018,    /* output buffer too small */
    AUTH_ESECRETLEN = -32019,  /* secret shorter than AUTH_SECRET_MIN (or too long) */
    AUTH_ESECRETPERM = -32020, /* secret file readable by others, or not ours */
    AUTH_ESECRETFILE = -32021, /* secret file is not a regular file of 32..64 bytes */
    AUTH_EPASSWORD = -32022,   /* password does not match the hash */
    AUTH_EHASH = -32023,       /* stored hash is not an argon2id hash string */
    AUTH_EPW_SHORT = -32024,   /* password shorter than AUTH_PASSWORD_MIN bytes */
    AUTH_EPW_LONG = -32025,    /* password longer than AUTH_PASSWORD_MAX bytes */
    AUTH_EPW_UTF8 = -32026,    /* password is not valid UTF-8 */
    AUTH_EPW_BLANK = -32027,   /* password is only whitespace */
    AUTH_ECRYPTO = -32028,     /* libcrypto or libsodium failed (not the input's fault) */
    AUTH_EINVAL = -32029,      /* invalid argument (configuration, claims to sign) */
};

/** Describes an auth error code (or -errno). Never NULL. */
const char *auth_strerror(int err);

/**
 * Initialises libsodium (idempotent, thread-safe). Must be called before
 * auth_claims_init(), auth_secret_load_or_create(), the password functions
 * and the cache. Returns 0 or AUTH_ECRYPTO.
 */
int auth_init(void);

/* ---- base64url (RFC 4648 §5, no padding) ----------------------------------------- */

/** Characters base64url needs for `len` bytes (no NUL). */
static inline size_t auth_base64url_len(size_t len)
{
    return len / 3 * 4 + (len % 3 == 0 ? 0 : len % 3 + 1);
}

/**
 * Encodes `len` bytes into `out` as unpadded base64url and NUL-terminates
 * it; `cap` must be at least auth_base64url_len(len) + 1. Sets *out_len to
 * the characters written (without the NUL). Returns 0 or AUTH_EBUFSIZE.
 */
int auth_base64url_encode(const uint8_t *in, size_t len, char *out, size_t cap, size_t *out_len);

/**
 * Decodes `len` characters of unpadded base64url. Strict: refuses '=',
 * characters outside [A-Za-z0-9_-], a length of 1 mod 4, and encodings
 * whose unused trailing bits are not zero (so every byte string has exactly
 * one accepted encoding and a token cannot be altered without changing its
 * signed text). Sets *out_len. Returns 0, AUTH_EBASE64 or AUTH_EBUFSIZE.
 */
int auth_base64url_decode(const char *in, size_t len, uint8_t *out, size_t cap, size_t *out_len);

/* ---- Keys and secrets --------------------------------------------------------------- */

/**
 * What signs and checks tokens: the HMAC secret, the issuer and audience
 * every token must carry, and the clock-skew allowance. Caller-allocated;
 * fill it with auth_jwt_key_init() and wipe it with auth_jwt_key_close().
 * Read-only once initialised, so threads may share one.
 */
typedef struct auth_jwt_key {
    uint8_t secret[AUTH_SECRET_MAX];
    size_t secret_len;
    char iss[AUTH_NAME_MAX + 1];
    char aud[AUTH_NAME_MAX + 1];
    int64_t leeway_s;
} auth_jwt_key;

/**
 * Fills `key`. `secret` (copied) must be AUTH_SECRET_MIN..AUTH_SECRET_MAX
 * bytes; `iss` and `aud` 1..AUTH_NAME_MAX printable ASCII characters;
 * `leeway_s` 0..AUTH_LEEWAY_MAX_S. Returns 0, AUTH_ESECRETLEN or AUTH_EINVAL.
 */
int auth_jwt_key_init(auth_jwt_key *key, const uint8_t *secret, size_t secret_len, const char *iss,
                      const char *aud, int64_t leeway_s);

/** Wipes the secret from `key` (the memory stays the caller's). */
void auth_jwt_key_close(auth_jwt_key *key);

/**
 * Reads the signing secret from the file at `path`, or, if there is no file,
 * creates it with AUTH_SECRET_FILE_BYTES random bytes, mode 0600. The new
 * file is written and fsynced under a temporary name (open with O_CREAT |
 * O_EXCL, 0600) and then linked into place, so a crash never leaves a
 * half-written secret at `path`, and two processes racing to create it end
 * up with the same secret. An existing file is refused when it is not a
 * regular file (a symlink included), has any permission bit beyond 0600 or
 * is owned by another user (AUTH_ESECRETPERM), or is not
 * AUTH_SECRET_MIN..AUTH_SECRET_MAX bytes long (AUTH_ESECRETFILE). `secret`
 * must have room for AUTH_SECRET_MAX bytes; *len gets the secret's length.
 * Blocking (file I/O and fsync): call at startup. Returns 0, one of those
 * codes, or -errno.
 */
int auth_secret_load_or_create(const char *path, uint8_t secret[AUTH_SECRET_MAX], size_t *len);

/**
 * Takes the signing secret from a string, normally getenv(AUTH_SECRET_ENV).
 * Its bytes are the secret: it must be at least AUTH_SECRET_MIN and at most
 * AUTH_SECRET_ENV_MAX bytes (NULL counts as empty), else AUTH_ESECRETLEN.
 * A string longer than AUTH_SECRET_MAX is replaced by its SHA-256, which is
 * exactly what HMAC does with a key longer than its block size (RFC 2104
 * §2), so tokens are the same as if the whole string were the key. Sets
 * *len. Returns 0, AUTH_ESECRETLEN or AUTH_ECRYPTO.
 */
int auth_secret_from_string(const char *value, uint8_t secret[AUTH_SECRET_MAX], size_t *len);

/**
 * The deployment rule for where the secret comes from: `env_value` (from
 * getenv(AUTH_SECRET_ENV)) when it is set, even if it is then refused for
 * being too short, because an operator who set it means it; otherwise the
 * file at `path` (auth_secret_load_or_create()). Returns what the chosen
 * source returns.
 */
int auth_secret_resolve(const char *env_value, const char *path, uint8_t secret[AUTH_SECRET_MAX],
                        size_t *len);

/* ---- Claims and tokens ----------------------------------------------------------------- */

typedef enum auth_role {
    AUTH_ROLE_CUSTOMER = 1, /* "customer" */
    AUTH_ROLE_ADMIN = 2,    /* "admin" */
} auth_role;

/** "customer" or "admin"; NULL for a value that is not a role. */
const char *auth_role_name(auth_role role);

/* Whether `origin` is a bare web origin as CSP and CORS name one: http:// or https://, a host of
 * ASCII letters, digits, '.' and '-' or a bracketed IPv6 address, an optional port 1 to 65535,
 * and nothing after it (no path, slash, quote, space or ';'). usherd's --analytics-url and
 * usher-pgexport's --http-allow-origin take only such values, since they are written into
 * response headers. */
bool auth_origin_valid(const char *origin);

/**
 * The claims usher puts in a token. "iss" and "aud" are not here: they come
 * from the auth_jwt_key, when signing and when checking.
 */
typedef struct auth_claims {
    uint64_t sub;               /* user id; a decimal string in the token */
    auth_role role;             /* "role" */
    int64_t iat_s;              /* issued at, seconds since the epoch */
    int64_t exp_s;              /* expires at, seconds since the epoch */
    char jti[AUTH_JTI_HEX + 1]; /* token id: 32 lowercase hex digits and a NUL */
} auth_claims;

/**
 * Fills `c` for a token issued at `now_s` that lives `ttl_s` (> 0) seconds,
 * with a fresh random jti. Returns 0 or AUTH_EINVAL (bad role, ttl or time).
 */
int auth_claims_init(auth_claims *c, uint64_t sub, auth_role role, int64_t now_s, int64_t ttl_s);

/**
 * Signs `c` with `key` into `out` (NUL-terminated; AUTH_TOKEN_MAX + 1 bytes
 * always suffice). The output depends only on the key and the claims, so a
 * fixed jti gives a fixed token. Returns the token length (> 0),
 * AUTH_EINVAL (claims that auth_jwt_verify() would refuse: unknown role, a
 * jti that is not 32 lowercase hex digits, negative times or exp <= iat),
 * AUTH_EBUFSIZE, AUTH_ECRYPTO or -ENOMEM.
 */
int auth_jwt_sign(const auth_jwt_key *key, const auth_claims *c, char *out, size_t cap);

/**
 * Verifies the `len`-byte token at `token` (need not be NUL-terminated) at
 * time `now_s` and fills `out` (untouched on failure). Checks, in order:
 * length (AUTH_ETOOLONG), three segments (AUTH_ESEGMENTS), base64url of all
 * three (AUTH_EBASE64), the header (AUTH_EJSON, AUTH_ENOTOBJECT,
 * AUTH_EALGNONE, AUTH_EALG, AUTH_EHEADER, AUTH_ETYP), the signature in
 * constant time (AUTH_ESIGNATURE), then the payload: AUTH_EJSON,
 * AUTH_ENOTOBJECT, AUTH_EMISSING (iss, sub, aud, exp, iat, jti and role are
 * all required), AUTH_ECLAIM (wrong type or value: sub not a canonical
 * decimal uint64, unknown role, jti not 32 lowercase hex, times not
 * non-negative integers, aud an array), AUTH_EISS, AUTH_EAUD, AUTH_EEXPIRED
 * (now_s >= exp + leeway, RFC 7519 §4.1.4), AUTH_EIAT (iat > now_s +
 * leeway), AUTH_ENOTYET (nbf > now_s + leeway). Duplicate JSON keys are
 * malformed JSON. Claims other than these are ignored. Returns 0 or the
 * code, or -ENOMEM.
 */
int auth_jwt_verify(const auth_jwt_key *key, const char *token, size_t len, int64_t now_s,
                    auth_claims *out);

/* ---- Verified-token cache ---------------------------------------------------------------- */

typedef struct auth_cache_entry auth_cache_entry;

/**
 * A fixed-size, direct-mapped map from verified tokens to their claims, so
 * the hot path checks a token with one XXH3 hash and two constant-time
 * comparisons instead of HMAC plus JSON parsing. An entry holds the whole
 * token and the secret it verified under, and a hit compares both exactly,
 * so a hit proves the token was verified under that same secret. The slot
 * is XXH3 seeded from the secret (nobody without it can aim tokens at one
 * slot). Tokens longer than AUTH_CACHE_TOKEN_MAX are verified every time.
 * An entry is used only while now_s < exp + leeway, and expired ones are
 * dropped when met. One cache per thread (no locking). Caller-allocated:
 * auth_cache_init() / auth_cache_close().
 */
typedef struct auth_cache {
    auth_cache_entry *entries;
    uint32_t mask;         /* entries - 1 (a power of two) */
    uint64_t hits, misses; /* lookups answered from the cache, and not */
} auth_cache;

/**
 * Allocates `entries` slots (rounded up to a power of two, 1..2^20).
 * Returns 0, AUTH_EINVAL or -ENOMEM.
 */
int auth_cache_init(auth_cache *c, uint32_t entries);

/** Frees the slots (wiping them first). */
void auth_cache_close(auth_cache *c);

/** Forgets every entry, e.g. after the key's iss, aud or leeway changed. */
void auth_cache_clear(auth_cache *c);

/**
 * auth_jwt_verify() with the cache in front: a hit that has not expired
 * returns the stored claims; a miss verifies and, on success, stores the
 * result (evicting whatever shared its slot). Returns as auth_jwt_verify().
 */
int auth_jwt_verify_cached(auth_cache *c, const auth_jwt_key *key, const char *token, size_t len,
                           int64_t now_s, auth_claims *out);

/* ---- Passwords ----------------------------------------------------------------------------- */

/** argon2id cost parameters (libsodium's opslimit and memlimit). */
typedef struct auth_password_opts {
    unsigned long long opslimit;
    size_t memlimit_bytes;
} auth_password_opts;

/** libsodium's INTERACTIVE limits (2 passes, 64 MiB): the default. */
auth_password_opts auth_password_opts_interactive(void);

/** libsodium's MIN limits: fast and weak, for tests only. */
auth_password_opts auth_password_opts_min(void);

/**
 * The password policy for new passwords: AUTH_PASSWORD_MIN..AUTH_PASSWORD_MAX
 * bytes (AUTH_EPW_SHORT, AUTH_EPW_LONG), valid UTF-8 without overlong forms
 * or surrogates (AUTH_EPW_UTF8), and not only whitespace, Unicode spaces
 * included (AUTH_EPW_BLANK). Checked in that order. Returns 0 or the code.
 */
int auth_password_check(const char *pw, size_t len);

/**
 * Hashes the `len`-byte password into `out` as a NUL-terminated argon2id
 * string ("$argon2id$v=19$m=...,t=...,p=1$salt$hash") with a random salt.
 * `opts` NULL means auth_password_opts_interactive(). Slow on purpose: call
 * from a threadpool job. Returns 0, AUTH_EPW_LONG (len > AUTH_PASSWORD_MAX),
 * AUTH_EINVAL (limits out of libsodium's range) or -ENOMEM.
 */
int auth_password_hash(const auth_password_opts *opts, const char *pw, size_t len,
                       char out[AUTH_HASH_MAX]);

/**
 * Checks the `len`-byte password against `hash` (a string from
 * auth_password_hash(), with whatever limits it was made with). Slow on
 * purpose: call from a threadpool job. Returns 0 on a match, AUTH_EPASSWORD
 * on a mismatch (also for a password longer than AUTH_PASSWORD_MAX, which
 * could never have been set), AUTH_EHASH when `hash` is not an argon2id hash
 * string.
 */
int auth_password_verify(const char *hash, const char *pw, size_t len);

/**
 * True when `hash` was made with limits other than `opts` (NULL:
 * interactive) or is not an argon2id string: after a successful login, the
 * caller may rehash the password it just checked.
 */
bool auth_password_needs_rehash(const char *hash, const auth_password_opts *opts);

#endif /* USHER_AUTH_H */
