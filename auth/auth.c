/*
 * auth.c - JWT HS256, the signing secret, password hashing; see auth.h.
 */
#include "auth.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#define AUTH_ASSERT(c) ((c) ? (void)0 : auth_assert_fail(#c, __FILE__, __LINE__))

static void auth_assert_fail(const char *expr, const char *file, int line)
{
    fprintf(stderr, "usher auth: assertion failed: %s (%s:%d)\n", expr, file, line);
    abort();
}

_Static_assert(AUTH_HASH_MAX == crypto_pwhash_STRBYTES, "hash buffer matches libsodium");
_Static_assert(SHA256_DIGEST_LENGTH <= AUTH_SECRET_MAX, "a hashed secret fits");

/* The only header auth_jwt_sign() writes. Its encoding is fixed, so signing
 * never encodes it again. */
static const char jwt_header[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";

enum {
    SIG_BYTES = 32,                        /* HMAC-SHA256 */
    SIG_CHARS = 43,                        /* its base64url */
    SEG_BYTES_MAX = AUTH_TOKEN_MAX / 4 * 3 /* decoded size of the largest segment */
};

const char *auth_strerror(int err)
{
    switch (err) {
    case 0:
        return "success";
    case AUTH_ETOOLONG:
        return "token is too long";
    case AUTH_ESEGMENTS:
        return "token is not three dot-separated segments";
    case AUTH_EBASE64:
        return "token segment is not canonical unpadded base64url";
    case AUTH_EJSON:
        return "token header or payload is not well-formed JSON";
    case AUTH_ENOTOBJECT:
        return "token header or payload is not a JSON object";
    case AUTH_EALGNONE:
        return "token is unsigned (alg none)";
    case AUTH_EALG:
        return "token algorithm is not HS256";
    case AUTH_EHEADER:
        return "token header lacks alg or has members other than alg and typ";
    case AUTH_ETYP:
        return "token type is not JWT";
    case AUTH_ESIGNATURE:
        return "token signature does not match";
    case AUTH_EMISSING:
        return "token lacks a required claim";
    case AUTH_ECLAIM:
        return "token claim has the wrong type or an invalid value";
    case AUTH_EISS:
        return "token issuer is not accepted";
    case AUTH_EAUD:
        return "token audience is not accepted";
    case AUTH_EEXPIRED:
        return "token has expired";
    case AUTH_EIAT:
        return "token is issued in the future";
    case AUTH_ENOTYET:
        return "token is not valid yet";
    case AUTH_EBUFSIZE:
        return "output buffer too small";
    case AUTH_ESECRETLEN:
        return "signing secret is too short or too long";
    case AUTH_ESECRETPERM:
        return "secret file is accessible to others or owned by another user";
    case AUTH_ESECRETFILE:
        return "secret file is not a regular file of 32 to 64 bytes";
    case AUTH_EPASSWORD:
        return "password does not match";
    case AUTH_EHASH:
        return "stored password hash is not an argon2id hash";
    case AUTH_EPW_SHORT:
        return "password is too short";
    case AUTH_EPW_LONG:
        return "password is too long";
    case AUTH_EPW_UTF8:
        return "password is not valid UTF-8";
    case AUTH_EPW_BLANK:
        return "password is only whitespace";
    case AUTH_ECRYPTO:
        return "cryptographic library failure";
    case AUTH_EINVAL:
        return "invalid argument";
    default:
        return err < 0 && err > -4096 ? strerror(-err) : "unknown auth error";
    }
}

static atomic_bool auth_ready;

int auth_init(void)
{
    /* sodium_init() is itself idempotent and thread-safe; the flag only lets
     * the functions that need it assert that it ran. */
    if (sodium_init() < 0)
        return AUTH_ECRYPTO;
    atomic_store(&auth_ready, true);
    return 0;
}

static void require_init(void)
{
    AUTH_ASSERT(atomic_load(&auth_ready) && "auth_init() not called");
}

/* ---- base64url ------------------------------------------------------------------- */

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* Character value, or -1 for anything outside the alphabet ('=' included). */
static int b64_value(unsigned char ch)
{
    if (ch >= 'A' && ch <= 'Z')
        return ch - 'A';
    if (ch >= 'a' && ch <= 'z')
        return ch - 'a' + 26;
    if (ch >= '0' && ch <= '9')
        return ch - '0' + 52;
    if (ch == '-')
        return 62;
    if (ch == '_')
        return 63;
    return -1;
}

int auth_base64url_encode(const uint8_t *in, size_t len, char *out, size_t cap, size_t *out_len)
{
    AUTH_ASSERT((in != NULL || len == 0) && out != NULL && out_len != NULL);
    if (len > SIZE_MAX / 2 || cap < auth_base64url_len(len) + 1)
        return AUTH_EBUFSIZE;
    size_t need = auth_base64url_len(len);
    size_t o = 0, i = 0;
    for (; i + 3 <= len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = b64_alphabet[v >> 18];
        out[o++] = b64_alphabet[(v >> 12) & 63];
        out[o++] = b64_alphabet[(v >> 6) & 63];
        out[o++] = b64_alphabet[v & 63];
    }
    if (len - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        out[o++] = b64_alphabet[v >> 18];
        out[o++] = b64_alphabet[(v >> 12) & 63];
    } else if (len - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        out[o++] = b64_alphabet[v >> 18];
        out[o++] = b64_alphabet[(v >> 12) & 63];
        out[o++] = b64_alphabet[(v >> 6) & 63];
    }
    AUTH_ASSERT(o == need);
    out[o] = '\0';
    *out_len = o;
    return 0;
}

int auth_base64url_decode(const char *in, size_t len, uint8_t *out, size_t cap, size_t *out_len)
{
    AUTH_ASSERT((in != NULL || len == 0) && (out != NULL || cap == 0) && out_len != NULL);
    size_t rem = len % 4;
    if (rem == 1)
        return AUTH_EBASE64;
    size_t need = len / 4 * 3 + (rem == 0 ? 0 : rem - 1);
    /* Validate every character before writing anything, so that a bad
     * character is reported as such even when the buffer is small. */
    for (size_t i = 0; i < len; i++)
        if (b64_value((unsigned char)in[i]) < 0)
            return AUTH_EBASE64;
    /* The last character of a 2- or 3-character group carries 4 or 2 bits
     * that no byte uses; they must be zero or two strings decode alike. */
    if (rem == 2 && (b64_value((unsigned char)in[len - 1]) & 0x0f) != 0)
        return AUTH_EBASE64;
    if (rem == 3 && (b64_value((unsigned char)in[len - 1]) & 0x03) != 0)
        return AUTH_EBASE64;
    if (cap < need)
        return AUTH_EBUFSIZE;
    size_t o = 0, i = 0;
    for (; i + 4 <= len; i += 4) {
        uint32_t v = (uint32_t)b64_value((unsigned char)in[i]) << 18 |
                     (uint32_t)b64_value((unsigned char)in[i + 1]) << 12 |
                     (uint32_t)b64_value((unsigned char)in[i + 2]) << 6 |
                     (uint32_t)b64_value((unsigned char)in[i + 3]);
        out[o++] = (uint8_t)(v >> 16);
        out[o++] = (uint8_t)(v >> 8);
        out[o++] = (uint8_t)v;
    }
    if (rem >= 2) {
        uint32_t v = (uint32_t)b64_value((unsigned char)in[i]) << 18 |
                     (uint32_t)b64_value((unsigned char)in[i + 1]) << 12;
        if (rem == 3)
            v |= (uint32_t)b64_value((unsigned char)in[i + 2]) << 6;
        out[o++] = (uint8_t)(v >> 16);
        if (rem == 3)
            out[o++] = (uint8_t)(v >> 8);
    }
    AUTH_ASSERT(o == need);
    *out_len = o;
    return 0;
}

/* ---- Keys and secrets ------------------------------------------------------------- */

/* Printable ASCII only: iss and aud are compared byte for byte and written
 * into JSON, so no escapes, controls or Unicode normalisation questions. */
static bool name_ok(const char *s)
{
    if (s == NULL)
        return false;
    size_t n = strnlen(s, AUTH_NAME_MAX + 1);
    if (n == 0 || n > AUTH_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e)
            return false;
    return true;
}

int auth_jwt_key_init(auth_jwt_key *key, const uint8_t *secret, size_t secret_len, const char *iss,
                      const char *aud, int64_t leeway_s)
{
    AUTH_ASSERT(key != NULL);
    memset(key, 0, sizeof *key);
    if (secret == NULL || secret_len < AUTH_SECRET_MIN || secret_len > AUTH_SECRET_MAX)
        return AUTH_ESECRETLEN;
    if (!name_ok(iss) || !name_ok(aud) || leeway_s < 0 || leeway_s > AUTH_LEEWAY_MAX_S)
        return AUTH_EINVAL;
    memcpy(key->secret, secret, secret_len);
    key->secret_len = secret_len;
    memcpy(key->iss, iss, strlen(iss) + 1);
    memcpy(key->aud, aud, strlen(aud) + 1);
    key->leeway_s = leeway_s;
    return 0;
}

void auth_jwt_key_close(auth_jwt_key *key)
{
    if (key != NULL)
        sodium_memzero(key, sizeof *key);
}

int auth_secret_from_string(const char *value, uint8_t secret[AUTH_SECRET_MAX], size_t *len)
{
    AUTH_ASSERT(secret != NULL && len != NULL);
    size_t n = value == NULL ? 0 : strnlen(value, AUTH_SECRET_ENV_MAX + 1);
    if (n < AUTH_SECRET_MIN || n > AUTH_SECRET_ENV_MAX)
        return AUTH_ESECRETLEN;
    if (n <= AUTH_SECRET_MAX) {
        memcpy(secret, value, n);
        *len = n;
        return 0;
    }
    /* HMAC replaces a key longer than its block size by the key's hash
     * (RFC 2104 §2); doing it here keeps the key struct fixed-size and
     * signs exactly as the long key would. */
    if (SHA256((const unsigned char *)value, n, secret) == NULL)
        return AUTH_ECRYPTO;
    *len = SHA256_DIGEST_LENGTH;
    return 0;
}

/* Reads an existing secret file; -ENOENT when there is none. */
static int secret_load(const char *path, uint8_t *secret, size_t *len)
{
    /* O_NOFOLLOW: a symlink at `path` could point the secret anywhere (or
     * at a file another user controls); refuse it rather than follow it. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return errno == ELOOP ? AUTH_ESECRETFILE : -errno;
    struct stat st;
    int rc = 0;
    if (fstat(fd, &st) != 0) {
        rc = -errno;
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        rc = AUTH_ESECRETFILE;
        goto out;
    }
    /* Checked on the open descriptor, so the file cannot be swapped between
     * the check and the read. Any bit beyond rw for the owner is looser. */
    if ((st.st_mode & 07777 & ~(mode_t)0600) != 0 || st.st_uid != geteuid()) {
        rc = AUTH_ESECRETPERM;
        goto out;
    }
    if (st.st_size < AUTH_SECRET_MIN || st.st_size > AUTH_SECRET_MAX) {
        rc = AUTH_ESECRETFILE;
        goto out;
    }
    /* Read one byte more than fstat promised, to notice a file that grew. */
    uint8_t buf[AUTH_SECRET_MAX + 1];
    size_t got = 0;
    for (;;) {
        ssize_t n = read(fd, buf + got, sizeof buf - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = -errno;
            break;
        }
        if (n == 0 || (got += (size_t)n) == sizeof buf)
            break;
    }
    if (rc == 0 && got != (size_t)st.st_size)
        rc = AUTH_ESECRETFILE;
    if (rc == 0) {
        memcpy(secret, buf, got);
        *len = got;
    }
    sodium_memzero(buf, sizeof buf);
out:
    close(fd);
    return rc;
}

static int write_all(int fd, const uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -errno;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Makes a new directory entry in the directory holding `path` durable. */
static int fsync_parent(const char *path)
{
    char dir[4096];
    const char *slash = strrchr(path, '/');
    if (slash == NULL) {
        memcpy(dir, ".", 2);
    } else if (slash == path) {
        memcpy(dir, "/", 2);
    } else {
        size_t n = (size_t)(slash - path);
        if (n >= sizeof dir)
            return -ENAMETOOLONG;
        memcpy(dir, path, n);
        dir[n] = '\0';
    }
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rc = fsync(fd) == 0 ? 0 : -errno;
    close(fd);
    return rc;
}

/* Creates `path` with a new random secret. Returns 0, -EEXIST if another
 * process created it first, or another error. */
static int secret_create(const char *path, uint8_t *secret, size_t *len)
{
    char tmp[4096];
    uint8_t nonce[8];
    randombytes_buf(nonce, sizeof nonce);
    int n = snprintf(tmp, sizeof tmp, "%s.tmp-%02x%02x%02x%02x%02x%02x%02x%02x", path, nonce[0],
                     nonce[1], nonce[2], nonce[3], nonce[4], nonce[5], nonce[6], nonce[7]);
    if (n < 0 || (size_t)n >= sizeof tmp)
        return -ENAMETOOLONG;

    /* 0600 from the first instant: the secret is never readable by others,
     * whatever the umask (which can only remove bits). */
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return -errno;
    uint8_t fresh[AUTH_SECRET_FILE_BYTES];
    randombytes_buf(fresh, sizeof fresh);
    int rc = write_all(fd, fresh, sizeof fresh);
    if (rc == 0 && fsync(fd) != 0)
        rc = -errno;
    if (close(fd) != 0 && rc == 0)
        rc = -errno;
    /* link() rather than rename(): it fails if `path` appeared meanwhile,
     * so a racing creator's secret is never replaced under its feet. */
    if (rc == 0 && link(tmp, path) != 0)
        rc = -errno;
    unlink(tmp);
    if (rc == 0)
        rc = fsync_parent(path);
    if (rc == 0) {
        memcpy(secret, fresh, sizeof fresh);
        *len = sizeof fresh;
    }
    sodium_memzero(fresh, sizeof fresh);
    return rc;
}

int auth_secret_load_or_create(const char *path, uint8_t secret[AUTH_SECRET_MAX], size_t *len)
{
    AUTH_ASSERT(path != NULL && secret != NULL && len != NULL);
    require_init();
    if (path[0] == '\0')
        return -ENOENT;
    int rc = secret_load(path, secret, len);
    if (rc != -ENOENT)
        return rc;
    rc = secret_create(path, secret, len);
    if (rc == -EEXIST)
        rc = secret_load(path, secret, len); /* lost a race: use the winner's */
    return rc;
}

int auth_secret_resolve(const char *env_value, const char *path, uint8_t secret[AUTH_SECRET_MAX],
                        size_t *len)
{
    if (env_value != NULL)
        return auth_secret_from_string(env_value, secret, len);
    return auth_secret_load_or_create(path, secret, len);
}

/* ---- Claims ------------------------------------------------------------------------ */

const char *auth_role_name(auth_role role)
{
    switch (role) {
    case AUTH_ROLE_CUSTOMER:
        return "customer";
    case AUTH_ROLE_ADMIN:
        return "admin";
    }
    return NULL;
}

static bool jti_ok(const char *s, size_t n)
{
    if (n != AUTH_JTI_HEX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return true;
}

int auth_claims_init(auth_claims *c, uint64_t sub, auth_role role, int64_t now_s, int64_t ttl_s)
{
    AUTH_ASSERT(c != NULL);
    require_init();
    if (auth_role_name(role) == NULL || now_s < 0 || ttl_s <= 0 || now_s > INT64_MAX - ttl_s)
        return AUTH_EINVAL;
    memset(c, 0, sizeof *c);
    c->sub = sub;
    c->role = role;
    c->iat_s = now_s;
    c->exp_s = now_s + ttl_s;
    uint8_t id[AUTH_JTI_HEX / 2];
    randombytes_buf(id, sizeof id);
    sodium_bin2hex(c->jti, sizeof c->jti, id, sizeof id);
    return 0;
}

/* ---- Signing ------------------------------------------------------------------------ */

static int hmac_sha256(const auth_jwt_key *key, const char *data, size_t len,
                       uint8_t mac[SIG_BYTES])
{
    unsigned int mac_len = 0;
    if (HMAC(EVP_sha256(), key->secret, (int)key->secret_len, (const unsigned char *)data, len, mac,
             &mac_len) == NULL ||
        mac_len != SIG_BYTES)
        return AUTH_ECRYPTO;
    return 0;
}

static json_t *claims_to_json(const auth_jwt_key *key, const auth_claims *c)
{
    char sub[24];
    snprintf(sub, sizeof sub, "%llu", (unsigned long long)c->sub);
    /* The order of these calls is the order in the token (jansson keeps
     * insertion order), which the known-answer test pins. */
    json_t *o = json_object();
    if (o == NULL || json_object_set_new(o, "iss", json_string(key->iss)) != 0 ||
        json_object_set_new(o, "sub", json_string(sub)) != 0 ||
        json_object_set_new(o, "aud", json_string(key->aud)) != 0 ||
        json_object_set_new(o, "exp", json_integer(c->exp_s)) != 0 ||
        json_object_set_new(o, "iat", json_integer(c->iat_s)) != 0 ||
        json_object_set_new(o, "jti", json_string(c->jti)) != 0 ||
        json_object_set_new(o, "role", json_string(auth_role_name(c->role))) != 0) {
        json_decref(o);
        return NULL;
    }
    return o;
}

int auth_jwt_sign(const auth_jwt_key *key, const auth_claims *c, char *out, size_t cap)
{
    AUTH_ASSERT(key != NULL && key->secret_len >= AUTH_SECRET_MIN && c != NULL && out != NULL);
    size_t jti_len = strnlen(c->jti, sizeof c->jti);
    if (auth_role_name(c->role) == NULL || !jti_ok(c->jti, jti_len) || c->iat_s < 0 ||
        c->exp_s <= c->iat_s)
        return AUTH_EINVAL;

    json_t *o = claims_to_json(key, c);
    if (o == NULL)
        return -ENOMEM;
    /* Bounded by the key's name limits: two AUTH_NAME_MAX names, escaped at
     * most twofold, plus fixed-width fields, stay well below this. */
    char payload[2048];
    size_t plen = json_dumpb(o, payload, sizeof payload, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
    if (plen == 0)
        return -ENOMEM;
    AUTH_ASSERT(plen <= sizeof payload);

    char tok[AUTH_TOKEN_MAX + 1];
    size_t n = 0, w = 0;
    int rc = auth_base64url_encode((const uint8_t *)jwt_header, sizeof jwt_header - 1, tok,
                                   sizeof tok, &w);
    AUTH_ASSERT(rc == 0);
    n = w;
    tok[n++] = '.';
    rc = auth_base64url_encode((const uint8_t *)payload, plen, tok + n, sizeof tok - n, &w);
    AUTH_ASSERT(rc == 0);
    n += w;
    uint8_t mac[SIG_BYTES];
    rc = hmac_sha256(key, tok, n, mac);
    if (rc != 0)
        return rc;
    tok[n++] = '.';
    rc = auth_base64url_encode(mac, sizeof mac, tok + n, sizeof tok - n, &w);
    AUTH_ASSERT(rc == 0);
    n += w;
    AUTH_ASSERT(n <= AUTH_TOKEN_MAX);
    if (cap < n + 1)
        return AUTH_EBUFSIZE;
    memcpy(out, tok, n + 1);
    return (int)n;
}

/* ---- Verifying ---------------------------------------------------------------------- */

/* Parses a decoded header or payload: an object, with no duplicate keys (a
 * second "alg" must not be able to shadow the first). Any JSON value is
 * parsed, so that valid JSON which is not an object gets its own code. */
static int parse_object(const uint8_t *buf, size_t len, json_t **out)
{
    json_error_t jerr;
    json_t *j = json_loadb((const char *)buf, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
    if (j == NULL)
        return json_error_code(&jerr) == json_error_out_of_memory ? -ENOMEM : AUTH_EJSON;
    if (!json_is_object(j)) {
        json_decref(j);
        return AUTH_ENOTOBJECT;
    }
    *out = j;
    return 0;
}

static int check_header(const uint8_t *buf, size_t len)
{
    json_t *h = NULL;
    int rc = parse_object(buf, len, &h);
    if (rc != 0)
        return rc;
    json_t *alg = json_object_get(h, "alg");
    json_t *typ = json_object_get(h, "typ");
    if (alg == NULL || !json_is_string(alg)) {
        rc = AUTH_EHEADER;
    } else if (strcasecmp(json_string_value(alg), "none") == 0) {
        /* Any spelling: "None" and "NONE" are the classic bypass attempts. */
        rc = AUTH_EALGNONE;
    } else if (json_string_length(alg) != 5 || memcmp(json_string_value(alg), "HS256", 5) != 0) {
        rc = AUTH_EALG;
    } else if (typ != NULL && !json_is_string(typ)) {
        rc = AUTH_EHEADER;
    } else if (typ != NULL &&
               (json_string_length(typ) != 3 || memcmp(json_string_value(typ), "JWT", 3) != 0)) {
        rc = AUTH_ETYP;
    } else if (json_object_size(h) != 1u + (typ != NULL)) {
        /* kid, jku, jwk, x5u, crit, ...: we never issue them, and a header
         * that asks to be handled differently is not one of ours. */
        rc = AUTH_EHEADER;
    }
    json_decref(h);
    return rc;
}

/* A claim as a string: 0 with *s and *n, AUTH_EMISSING or AUTH_ECLAIM. */
static int claim_string(json_t *p, const char *name, const char **s, size_t *n)
{
    json_t *v = json_object_get(p, name);
    if (v == NULL)
        return AUTH_EMISSING;
    if (!json_is_string(v))
        return AUTH_ECLAIM;
    *s = json_string_value(v);
    *n = json_string_length(v);
    return 0;
}

/* A NumericDate claim: a non-negative JSON integer (usher never issues
 * fractions, so a real is not one of ours). */
static int claim_time(json_t *p, const char *name, bool required, int64_t *t)
{
    json_t *v = json_object_get(p, name);
    if (v == NULL)
        return required ? AUTH_EMISSING : 1;
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return AUTH_ECLAIM;
    *t = (int64_t)json_integer_value(v);
    return 0;
}

/* Canonical decimal uint64: digits only, no sign, no leading zero. */
static bool parse_u64(const char *s, size_t n, uint64_t *v)
{
    if (n == 0 || n > 20 || (n > 1 && s[0] == '0'))
        return false;
    uint64_t x = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        unsigned d = (unsigned)(s[i] - '0');
        if (x > (UINT64_MAX - d) / 10)
            return false;
        x = x * 10 + d;
    }
    *v = x;
    return true;
}

static bool str_eq(const char *s, size_t n, const char *want)
{
    return n == strlen(want) && memcmp(s, want, n) == 0;
}

static int check_payload(const auth_jwt_key *key, const uint8_t *buf, size_t len, int64_t now_s,
                         auth_claims *out)
{
    json_t *p = NULL;
    int rc = parse_object(buf, len, &p);
    if (rc != 0)
        return rc;
    const char *iss = NULL, *sub = NULL, *aud = NULL, *jti = NULL, *role = NULL;
    size_t iss_n = 0, sub_n = 0, aud_n = 0, jti_n = 0, role_n = 0;
    int64_t exp = 0, iat = 0, nbf = 0;
    auth_claims c;
    memset(&c, 0, sizeof c);
    /* Presence and types first, for every claim, so that a token missing
     * one claim reports that whatever else is wrong with it. */
    const char *names[] = {"iss", "sub", "aud", "exp", "iat", "jti", "role"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (json_object_get(p, names[i]) == NULL) {
            rc = AUTH_EMISSING;
            goto out;
        }
    if ((rc = claim_string(p, "iss", &iss, &iss_n)) != 0 ||
        (rc = claim_string(p, "sub", &sub, &sub_n)) != 0 ||
        (rc = claim_string(p, "aud", &aud, &aud_n)) != 0 ||
        (rc = claim_string(p, "jti", &jti, &jti_n)) != 0 ||
        (rc = claim_string(p, "role", &role, &role_n)) != 0 ||
        (rc = claim_time(p, "exp", true, &exp)) != 0 ||
        (rc = claim_time(p, "iat", true, &iat)) != 0)
        goto out;
    int has_nbf = claim_time(p, "nbf", false, &nbf);
    if (has_nbf < 0) {
        rc = has_nbf;
        goto out;
    }
    if (!parse_u64(sub, sub_n, &c.sub) || !jti_ok(jti, jti_n)) {
        rc = AUTH_ECLAIM;
        goto out;
    }
    if (str_eq(role, role_n, "customer")) {
        c.role = AUTH_ROLE_CUSTOMER;
    } else if (str_eq(role, role_n, "admin")) {
        c.role = AUTH_ROLE_ADMIN;
    } else {
        rc = AUTH_ECLAIM;
        goto out;
    }
    if (!str_eq(iss, iss_n, key->iss)) {
        rc = AUTH_EISS;
        goto out;
    }
    if (!str_eq(aud, aud_n, key->aud)) {
        rc = AUTH_EAUD;
        goto out;
    }
    /* now_s >= 0 and leeway_s <= AUTH_LEEWAY_MAX_S, so none of these
     * subtractions can overflow, whatever the token says. */
    if (now_s - key->leeway_s >= exp) {
        rc = AUTH_EEXPIRED;
        goto out;
    }
    if (iat - key->leeway_s > now_s) {
        rc = AUTH_EIAT;
        goto out;
    }
    if (has_nbf == 0 && nbf - key->leeway_s > now_s) {
        rc = AUTH_ENOTYET;
        goto out;
    }
    c.exp_s = exp;
    c.iat_s = iat;
    memcpy(c.jti, jti, AUTH_JTI_HEX);
    c.jti[AUTH_JTI_HEX] = '\0';
    *out = c;
out:
    json_decref(p);
    return rc;
}

int auth_jwt_verify(const auth_jwt_key *key, const char *token, size_t len, int64_t now_s,
                    auth_claims *out)
{
    AUTH_ASSERT(key != NULL && key->secret_len >= AUTH_SECRET_MIN && out != NULL && now_s >= 0);
    AUTH_ASSERT(key->leeway_s >= 0 && key->leeway_s <= AUTH_LEEWAY_MAX_S);
    if (len > AUTH_TOKEN_MAX)
        return AUTH_ETOOLONG;
    AUTH_ASSERT(token != NULL || len == 0);

    const char *d1 = len == 0 ? NULL : memchr(token, '.', len);
    if (d1 == NULL)
        return AUTH_ESEGMENTS;
    const char *end = token + len;
    const char *d2 = memchr(d1 + 1, '.', (size_t)(end - d1 - 1));
    if (d2 == NULL || memchr(d2 + 1, '.', (size_t)(end - d2 - 1)) != NULL)
        return AUTH_ESEGMENTS;

    /* Decoding is only syntax; it is done for all three segments before
     * anything is interpreted, so a malformed token is malformed whatever
     * its signature. */
    _Static_assert(SEG_BYTES_MAX >= SIG_BYTES, "segment buffers hold a signature");
    uint8_t hdr[SEG_BYTES_MAX], pay[SEG_BYTES_MAX], sig[SEG_BYTES_MAX];
    size_t hdr_n = 0, pay_n = 0, sig_n = 0;
    int rc = auth_base64url_decode(token, (size_t)(d1 - token), hdr, sizeof hdr, &hdr_n);
    if (rc == 0)
        rc = auth_base64url_decode(d1 + 1, (size_t)(d2 - d1 - 1), pay, sizeof pay, &pay_n);
    if (rc == 0)
        rc = auth_base64url_decode(d2 + 1, (size_t)(end - d2 - 1), sig, sizeof sig, &sig_n);
    if (rc != 0)
        return rc;

    rc = check_header(hdr, hdr_n);
    if (rc != 0)
        return rc;

    uint8_t mac[SIG_BYTES];
    rc = hmac_sha256(key, token, (size_t)(d2 - token), mac);
    if (rc != 0)
        return rc;
    /* The length is public (always 32 for HS256); the bytes are compared in
     * constant time so timing does not reveal how much of a guess matched. */
    if (sig_n != SIG_BYTES || CRYPTO_memcmp(sig, mac, SIG_BYTES) != 0)
        return AUTH_ESIGNATURE;

    return check_payload(key, pay, pay_n, now_s, out);
}

/* ---- Cache ------------------------------------------------------------------------------ */

enum { CACHE_MAX_ENTRIES = 1u << 20 };

/* A verified token, stored whole with the secret it verified under: a hit
 * is an exact comparison of both, not a hash match. */
struct auth_cache_entry {
    uint16_t token_len; /* 0: empty */
    uint16_t secret_len;
    uint8_t secret[AUTH_SECRET_MAX];
    char token[AUTH_CACHE_TOKEN_MAX];
    auth_claims claims;
};

int auth_cache_init(auth_cache *c, uint32_t entries)
{
    AUTH_ASSERT(c != NULL);
    require_init();
    memset(c, 0, sizeof *c);
    if (entries == 0 || entries > CACHE_MAX_ENTRIES)
        return AUTH_EINVAL;
    uint32_t n = 1;
    while (n < entries)
        n <<= 1;
    c->entries = calloc(n, sizeof *c->entries);
    if (c->entries == NULL)
        return -ENOMEM;
    c->mask = n - 1;
    return 0;
}

void auth_cache_close(auth_cache *c)
{
    if (c == NULL || c->entries == NULL)
        return;
    sodium_memzero(c->entries, (size_t)(c->mask + 1) * sizeof *c->entries);
    free(c->entries);
    memset(c, 0, sizeof *c);
}

void auth_cache_clear(auth_cache *c)
{
    AUTH_ASSERT(c != NULL && c->entries != NULL);
    sodium_memzero(c->entries, (size_t)(c->mask + 1) * sizeof *c->entries);
}

/* The slot of a token: XXH3 seeded from the secret, so that nobody without
 * it can aim tokens at one slot to evict another user's entry. */
static uint32_t cache_slot(const auth_cache *c, const auth_jwt_key *key, const char *token,
                           size_t len)
{
    XXH64_hash_t seed = XXH3_64bits(key->secret, key->secret_len);
    return (uint32_t)XXH3_64bits_withSeed(token, len, seed) & c->mask;
}

/* Whether n bytes differ, in time that depends on n only: eight bytes at a
 * time, every byte read (sodium_memcmp goes a byte at a time through a
 * volatile pointer, which showed as 4 % of usherd's CPU on 300-byte tokens). */
static bool differ_ct(const void *a, const void *b, size_t n)
{
    const unsigned char *pa = a, *pb = b;
    uint64_t d = 0;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t x, y;
        memcpy(&x, pa + i, 8);
        memcpy(&y, pb + i, 8);
        d |= x ^ y;
    }
    for (; i < n; i++)
        d |= (uint64_t)(pa[i] ^ pb[i]);
    return d != 0;
}

int auth_jwt_verify_cached(auth_cache *c, const auth_jwt_key *key, const char *token, size_t len,
                           int64_t now_s, auth_claims *out)
{
    AUTH_ASSERT(c != NULL && c->entries != NULL && key != NULL && out != NULL && now_s >= 0);
    if (len > AUTH_TOKEN_MAX)
        return AUTH_ETOOLONG;
    AUTH_ASSERT(token != NULL || len == 0);
    if (len == 0 || len > AUTH_CACHE_TOKEN_MAX) {
        c->misses++;
        return auth_jwt_verify(key, token, len, now_s, out); /* not cached */
    }
    auth_cache_entry *e = &c->entries[cache_slot(c, key, token, len)];
    /* A hit means this exact token verified under this exact secret
     * (constant-time comparisons: no timing tells how much matched). */
    if (e->token_len == len && e->secret_len == key->secret_len &&
        !differ_ct(e->secret, key->secret, key->secret_len) && !differ_ct(e->token, token, len)) {
        /* Only exp can change its verdict as time passes: iat and nbf only
         * become more acceptable, and the rest does not depend on time. */
        if (now_s - key->leeway_s < e->claims.exp_s) {
            c->hits++;
            *out = e->claims;
            return 0;
        }
        sodium_memzero(e, sizeof *e);
        c->misses++;
        return AUTH_EEXPIRED;
    }
    c->misses++;
    auth_claims claims;
    int rc = auth_jwt_verify(key, token, len, now_s, &claims);
    if (rc != 0)
        return rc;
    e->token_len = (uint16_t)len;
    memcpy(e->token, token, len);
    e->secret_len = (uint16_t)key->secret_len;
    memcpy(e->secret, key->secret, key->secret_len);
    e->claims = claims;
    *out = claims;
    return 0;
}

/* ---- Passwords ------------------------------------------------------------------------- */

auth_password_opts auth_password_opts_interactive(void)
{
    return (auth_password_opts){crypto_pwhash_OPSLIMIT_INTERACTIVE,
                                crypto_pwhash_MEMLIMIT_INTERACTIVE};
}

auth_password_opts auth_password_opts_min(void)
{
    return (auth_password_opts){crypto_pwhash_OPSLIMIT_MIN, crypto_pwhash_MEMLIMIT_MIN};
}

/* Decodes one UTF-8 sequence at s[0..n) into *cp; returns its length, or 0
 * for an invalid one (Unicode 15 Table 3-7: no overlong forms, no
 * surrogates, nothing past U+10FFFF). */
static size_t utf8_next(const unsigned char *s, size_t n, uint32_t *cp)
{
    unsigned char b = s[0];
    if (b < 0x80) {
        *cp = b;
        return 1;
    }
    size_t need;
    uint32_t v;
    unsigned char lo = 0x80, hi = 0xbf;
    if (b >= 0xc2 && b <= 0xdf) {
        need = 2;
        v = b & 0x1f;
    } else if (b >= 0xe0 && b <= 0xef) {
        need = 3;
        v = b & 0x0f;
        if (b == 0xe0)
            lo = 0xa0; /* overlong */
        if (b == 0xed)
            hi = 0x9f; /* surrogates */
    } else if (b >= 0xf0 && b <= 0xf4) {
        need = 4;
        v = b & 0x07;
        if (b == 0xf0)
            lo = 0x90; /* overlong */
        if (b == 0xf4)
            hi = 0x8f; /* past U+10FFFF */
    } else {
        return 0;
    }
    if (n < need)
        return 0;
    for (size_t i = 1; i < need; i++) {
        unsigned char c = s[i];
        if (c < (i == 1 ? lo : 0x80) || c > (i == 1 ? hi : 0xbf))
            return 0;
        v = v << 6 | (c & 0x3f);
    }
    *cp = v;
    return need;
}

/* White_Space in Unicode's PropList: what a user cannot see in a password
 * field either. */
static bool is_space(uint32_t cp)
{
    return (cp >= 0x09 && cp <= 0x0d) || cp == 0x20 || cp == 0x85 || cp == 0xa0 || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200a) || cp == 0x2028 || cp == 0x2029 || cp == 0x202f ||
           cp == 0x205f || cp == 0x3000;
}

int auth_password_check(const char *pw, size_t len)
{
    AUTH_ASSERT(pw != NULL || len == 0);
    if (len < AUTH_PASSWORD_MIN)
        return AUTH_EPW_SHORT;
    if (len > AUTH_PASSWORD_MAX)
        return AUTH_EPW_LONG;
    const unsigned char *s = (const unsigned char *)pw;
    bool blank = true;
    for (size_t i = 0; i < len;) {
        uint32_t cp = 0;
        size_t k = utf8_next(s + i, len - i, &cp);
        if (k == 0)
            return AUTH_EPW_UTF8;
        if (!is_space(cp))
            blank = false;
        i += k;
    }
    return blank ? AUTH_EPW_BLANK : 0;
}

static bool opts_ok(const auth_password_opts *o)
{
    return o->opslimit >= crypto_pwhash_OPSLIMIT_MIN && o->opslimit <= crypto_pwhash_OPSLIMIT_MAX &&
           o->memlimit_bytes >= crypto_pwhash_MEMLIMIT_MIN &&
           o->memlimit_bytes <= crypto_pwhash_MEMLIMIT_MAX;
}

/* A NUL-terminated argon2id hash string that fits AUTH_HASH_MAX. libsodium
 * returns -1 alike for a mismatch and for garbage; this tells them apart. */
static bool hash_ok(const char *hash)
{
    static const char prefix[] = "$argon2id$";
    size_t n = strnlen(hash, AUTH_HASH_MAX);
    return n < AUTH_HASH_MAX && n > sizeof prefix - 1 &&
           memcmp(hash, prefix, sizeof prefix - 1) == 0;
}

int auth_password_hash(const auth_password_opts *opts, const char *pw, size_t len,
                       char out[AUTH_HASH_MAX])
{
    AUTH_ASSERT((pw != NULL || len == 0) && out != NULL);
    require_init();
    auth_password_opts o = opts != NULL ? *opts : auth_password_opts_interactive();
    if (len > AUTH_PASSWORD_MAX)
        return AUTH_EPW_LONG;
    if (!opts_ok(&o))
        return AUTH_EINVAL;
    /* crypto_pwhash_str fails only when it cannot allocate memlimit bytes. */
    if (crypto_pwhash_str_alg(out, pw == NULL ? "" : pw, len, o.opslimit, o.memlimit_bytes,
                              crypto_pwhash_ALG_ARGON2ID13) != 0)
        return -ENOMEM;
    AUTH_ASSERT(hash_ok(out));
    return 0;
}

int auth_password_verify(const char *hash, const char *pw, size_t len)
{
    AUTH_ASSERT(hash != NULL && (pw != NULL || len == 0));
    require_init();
    if (!hash_ok(hash))
        return AUTH_EHASH;
    if (len > AUTH_PASSWORD_MAX)
        return AUTH_EPASSWORD;
    return crypto_pwhash_str_verify(hash, pw == NULL ? "" : pw, len) == 0 ? 0 : AUTH_EPASSWORD;
}

bool auth_password_needs_rehash(const char *hash, const auth_password_opts *opts)
{
    AUTH_ASSERT(hash != NULL);
    require_init();
    auth_password_opts o = opts != NULL ? *opts : auth_password_opts_interactive();
    if (!hash_ok(hash))
        return true;
    return crypto_pwhash_str_needs_rehash(hash, o.opslimit, o.memlimit_bytes) != 0;
}

bool auth_origin_valid(const char *origin)
{
    const char *h = strncmp(origin, "http://", 7) == 0    ? origin + 7
                    : strncmp(origin, "https://", 8) == 0 ? origin + 8
                                                          : NULL;
    if (h == NULL)
        return false;
    const char *p = h;
    if (*p == '[') {
        for (p++; *p != ']'; p++)
            if (!(isxdigit((unsigned char)*p) || *p == ':' || *p == '.'))
                return false; /* also the end of the string */
        if (p == h + 1)
            return false;
        p++;
    } else {
        while (isalnum((unsigned char)*p) || *p == '.' || *p == '-')
            p++;
        if (p == h)
            return false;
    }
    if (*p == ':') {
        const char *d = ++p;
        long port = 0;
        while (isdigit((unsigned char)*p) && p - d < 6)
            port = port * 10 + (*p++ - '0');
        if (p == d || port < 1 || port > 65535)
            return false;
    }
    return *p == '\0';
}
