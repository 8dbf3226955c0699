/*
 * auth_test.c - JWT signing and verification, base64url, the signing
 * secret, password hashing and policy, the verified-token cache.
 *
 * Refusal tests build their tokens by hand (header and payload JSON as
 * strings, this file's own base64url, HMAC straight from OpenSSL), so each
 * one tests exactly the defect it names and the verifier is checked against
 * an implementation it does not share code with.
 */
#include "auth.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SECRET "usher-test-secret-0123456789abcdef"
#define ISS    "usher"
#define AUD    "usher-api"
#define LEEWAY 30
#define NOW    1700000100
#define JTI    "00112233445566778899aabbccddeeff"
#define HDR    "{\"alg\":\"HS256\",\"typ\":\"JWT\"}"
#define TOKEN_KA                                                                                   \
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."                                                        \
    "eyJpc3MiOiJ1c2hlciIsInN1YiI6IjQyIiwiYXVkIjoidXNoZXItYXBpIiwiZXhwIjoxNzAwMDAwOTAwLCJpYXQiOjE3" \
    "MDAwMDAwMDAsImp0aSI6IjAwMTEyMjMzNDQ1NTY2Nzc4ODk5YWFiYmNjZGRlZWZmIiwicm9sZSI6ImN1c3RvbWVyIn0." \
    "Gve14fQFy70cmgubBBTgEWztWd9BZBpFbeTqlaoKyK8"

static void setup(void)
{
    cr_assert_eq(auth_init(), 0);
}

TestSuite(auth, .init = setup);

static auth_jwt_key test_key(void)
{
    auth_jwt_key k;
    cr_assert_eq(auth_jwt_key_init(&k, (const uint8_t *)SECRET, strlen(SECRET), ISS, AUD, LEEWAY),
                 0);
    return k;
}

/* base64url written independently of auth.c: a bit accumulator. */
static void b64(const void *data, size_t len, char *out)
{
    static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    const unsigned char *p = data;
    unsigned acc = 0;
    int bits = 0;
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        acc = (acc << 8) | p[i];
        bits += 8;
        while (bits >= 6) {
            out[o++] = a[(acc >> (bits - 6)) & 63];
            bits -= 6;
        }
    }
    if (bits > 0)
        out[o++] = a[(acc << (6 - bits)) & 63];
    out[o] = '\0';
}

/* "b64(header).b64(payload)." + b64(HMAC-SHA256 of what precedes the last
 * dot, keyed with `secret`). */
static void craft_key(const char *secret, size_t secret_len, const char *header,
                      const char *payload, char *out)
{
    b64(header, strlen(header), out);
    strcat(out, ".");
    b64(payload, strlen(payload), out + strlen(out));
    unsigned char mac[32];
    unsigned mac_len = 0;
    cr_assert_not_null(HMAC(EVP_sha256(), secret, (int)secret_len, (unsigned char *)out,
                            strlen(out), mac, &mac_len));
    cr_assert_eq(mac_len, 32);
    strcat(out, ".");
    b64(mac, sizeof mac, out + strlen(out));
}

static void craft(const char *header, const char *payload, char *out)
{
    craft_key(SECRET, strlen(SECRET), header, payload, out);
}

/* A payload with every claim, the given times, and `extra` (",..." or ""). */
static void payload_at(char *out, size_t cap, long long iat, long long exp, const char *extra)
{
    snprintf(out, cap,
             "{\"iss\":\"" ISS "\",\"sub\":\"42\",\"aud\":\"" AUD "\",\"exp\":%lld,\"iat\":%lld,"
             "\"jti\":\"" JTI "\",\"role\":\"customer\"%s}",
             exp, iat, extra);
}

static int verify_str(const char *tok, auth_claims *c)
{
    auth_jwt_key k = test_key();
    int rc = auth_jwt_verify(&k, tok, strlen(tok), NOW, c);
    auth_jwt_key_close(&k);
    return rc;
}

/* Verifies header + payload signed with the right key; returns the code. */
static int verify_crafted(const char *header, const char *payload)
{
    char tok[8192];
    craft(header, payload, tok);
    auth_claims c;
    return verify_str(tok, &c);
}

static int verify_payload(const char *payload)
{
    return verify_crafted(HDR, payload);
}

/* ---- Round trip and known answers ---------------------------------------------------- */

Test(auth, sign_then_verify_round_trips_every_claim)
{
    auth_jwt_key k = test_key();
    auth_claims c;
    cr_assert_eq(auth_claims_init(&c, 18446744073709551615ull, AUTH_ROLE_ADMIN, NOW, 900), 0);
    cr_assert_eq(c.iat_s, NOW);
    cr_assert_eq(c.exp_s, NOW + 900);
    char tok[AUTH_TOKEN_MAX + 1];
    int n = auth_jwt_sign(&k, &c, tok, sizeof tok);
    cr_assert_gt(n, 0);
    cr_assert_eq((size_t)n, strlen(tok));
    auth_claims got;
    memset(&got, 0xab, sizeof got);
    cr_assert_eq(auth_jwt_verify(&k, tok, (size_t)n, NOW + 10, &got), 0);
    cr_assert_eq(got.sub, 18446744073709551615ull);
    cr_assert_eq(got.role, AUTH_ROLE_ADMIN);
    cr_assert_eq(got.iat_s, NOW);
    cr_assert_eq(got.exp_s, NOW + 900);
    cr_assert_str_eq(got.jti, c.jti);
    auth_jwt_key_close(&k);
}

Test(auth, verify_does_not_need_a_nul_terminated_token)
{
    char buf[sizeof TOKEN_KA + 8];
    memcpy(buf, TOKEN_KA, sizeof TOKEN_KA - 1);
    memcpy(buf + sizeof TOKEN_KA - 1, "garbage", 8);
    auth_jwt_key k = test_key();
    auth_claims c;
    cr_assert_eq(auth_jwt_verify(&k, buf, sizeof TOKEN_KA - 1, NOW, &c), 0);
    cr_assert_eq(auth_jwt_verify(&k, buf, sizeof TOKEN_KA, NOW, &c), AUTH_ESIGNATURE);
}

Test(auth, hand_built_token_verifies)
{
    char payload[512], tok[1024];
    payload_at(payload, sizeof payload, 1700000000, 1700000900, "");
    craft(HDR, payload, tok);
    cr_assert_str_eq(tok, TOKEN_KA);
    auth_claims c;
    cr_assert_eq(verify_str(tok, &c), 0);
    cr_assert_eq(c.sub, 42);
    cr_assert_eq(c.role, AUTH_ROLE_CUSTOMER);
    cr_assert_eq(c.iat_s, 1700000000);
    cr_assert_eq(c.exp_s, 1700000900);
    cr_assert_str_eq(c.jti, JTI);
}

Test(auth, sign_produces_the_pinned_token_for_fixed_claims)
{
    auth_jwt_key k = test_key();
    auth_claims c = {
        .sub = 42, .role = AUTH_ROLE_CUSTOMER, .iat_s = 1700000000, .exp_s = 1700000900};
    memcpy(c.jti, JTI, sizeof c.jti);
    char tok[AUTH_TOKEN_MAX + 1];
    cr_assert_eq(auth_jwt_sign(&k, &c, tok, sizeof tok), (int)strlen(TOKEN_KA));
    cr_assert_str_eq(tok, TOKEN_KA);
}

Test(auth, sign_refuses_claims_verify_would_refuse)
{
    auth_jwt_key k = test_key();
    auth_claims ok = {.sub = 1, .role = AUTH_ROLE_CUSTOMER, .iat_s = 10, .exp_s = 20};
    memcpy(ok.jti, JTI, sizeof ok.jti);
    char tok[AUTH_TOKEN_MAX + 1];
    auth_claims c = ok;
    c.role = (auth_role)7;
    cr_assert_eq(auth_jwt_sign(&k, &c, tok, sizeof tok), AUTH_EINVAL);
    c = ok;
    memcpy(c.jti, "00112233445566778899AABBCCDDEEFF", sizeof c.jti);
    cr_assert_eq(auth_jwt_sign(&k, &c, tok, sizeof tok), AUTH_EINVAL);
    c = ok;
    c.jti[5] = '\0';
    cr_assert_eq(auth_jwt_sign(&k, &c, tok, sizeof tok), AUTH_EINVAL);
    c = ok;
    c.exp_s = c.iat_s;
    cr_assert_eq(auth_jwt_sign(&k, &c, tok, sizeof tok), AUTH_EINVAL);
    c = ok;
    c.iat_s = -1;
    cr_assert_eq(auth_jwt_sign(&k, &c, tok, sizeof tok), AUTH_EINVAL);
    int n = auth_jwt_sign(&k, &ok, tok, sizeof tok);
    cr_assert_gt(n, 0);
    cr_assert_eq(auth_jwt_sign(&k, &ok, tok, (size_t)n), AUTH_EBUFSIZE);
    cr_assert_eq(auth_jwt_sign(&k, &ok, tok, (size_t)n + 1), n);
}

Test(auth, claims_init_makes_a_random_hex_jti)
{
    auth_claims a, b;
    cr_assert_eq(auth_claims_init(&a, 5, AUTH_ROLE_CUSTOMER, NOW, 60), 0);
    cr_assert_eq(auth_claims_init(&b, 5, AUTH_ROLE_CUSTOMER, NOW, 60), 0);
    cr_assert_eq(strlen(a.jti), AUTH_JTI_HEX);
    cr_assert_eq(strspn(a.jti, "0123456789abcdef"), AUTH_JTI_HEX);
    cr_assert_str_neq(a.jti, b.jti);
    cr_assert_eq(auth_claims_init(&a, 5, (auth_role)0, NOW, 60), AUTH_EINVAL);
    cr_assert_eq(auth_claims_init(&a, 5, AUTH_ROLE_ADMIN, NOW, 0), AUTH_EINVAL);
    cr_assert_eq(auth_claims_init(&a, 5, AUTH_ROLE_ADMIN, -1, 60), AUTH_EINVAL);
    cr_assert_eq(auth_claims_init(&a, 5, AUTH_ROLE_ADMIN, INT64_MAX - 10, 60), AUTH_EINVAL);
}

Test(auth, key_init_checks_secret_names_and_leeway)
{
    auth_jwt_key k;
    const uint8_t s[65] = {0};
    cr_assert_eq(auth_jwt_key_init(&k, s, 31, ISS, AUD, 0), AUTH_ESECRETLEN);
    cr_assert_eq(auth_jwt_key_init(&k, s, 65, ISS, AUD, 0), AUTH_ESECRETLEN);
    cr_assert_eq(auth_jwt_key_init(&k, NULL, 32, ISS, AUD, 0), AUTH_ESECRETLEN);
    cr_assert_eq(auth_jwt_key_init(&k, s, 32, ISS, AUD, 0), 0);
    cr_assert_eq(auth_jwt_key_init(&k, s, 64, ISS, AUD, AUTH_LEEWAY_MAX_S), 0);
    cr_assert_eq(auth_jwt_key_init(&k, s, 32, "", AUD, 0), AUTH_EINVAL);
    cr_assert_eq(auth_jwt_key_init(&k, s, 32, ISS, NULL, 0), AUTH_EINVAL);
    cr_assert_eq(auth_jwt_key_init(&k, s, 32, "a\nb", AUD, 0), AUTH_EINVAL);
    cr_assert_eq(auth_jwt_key_init(&k, s, 32, ISS, "caf\xc3\xa9", 0), AUTH_EINVAL);
    cr_assert_eq(auth_jwt_key_init(&k, s, 32, ISS, AUD, -1), AUTH_EINVAL);
    cr_assert_eq(auth_jwt_key_init(&k, s, 32, ISS, AUD, AUTH_LEEWAY_MAX_S + 1), AUTH_EINVAL);
    char long_name[AUTH_NAME_MAX + 2];
    memset(long_name, 'x', sizeof long_name - 1);
    long_name[AUTH_NAME_MAX + 1] = '\0';
    cr_assert_eq(auth_jwt_key_init(&k, s, 32, long_name, AUD, 0), AUTH_EINVAL);
    long_name[AUTH_NAME_MAX] = '\0';
    cr_assert_eq(auth_jwt_key_init(&k, s, 32, long_name, long_name, 0), 0);
    /* Names with quotes and backslashes survive JSON escaping both ways. */
    cr_assert_eq(auth_jwt_key_init(&k, s, 32, "a\"b\\c", "d/e", 0), 0);
    auth_claims c;
    cr_assert_eq(auth_claims_init(&c, 9, AUTH_ROLE_CUSTOMER, NOW, 60), 0);
    char tok[AUTH_TOKEN_MAX + 1];
    int n = auth_jwt_sign(&k, &c, tok, sizeof tok);
    cr_assert_gt(n, 0);
    auth_claims got;
    cr_assert_eq(auth_jwt_verify(&k, tok, (size_t)n, NOW, &got), 0);
    /* The longest names still give a token well under the bound. */
    cr_assert_eq(auth_jwt_key_init(&k, s, 32, long_name, long_name, 0), 0);
    n = auth_jwt_sign(&k, &c, tok, sizeof tok);
    cr_assert_gt(n, 0);
    cr_assert_lt(n, AUTH_TOKEN_MAX);
    auth_jwt_key_close(&k);
    cr_assert_eq(k.secret_len, 0);
}

/* ---- Header refusals ------------------------------------------------------------------- */

Test(auth, alg_none_is_refused_in_any_spelling)
{
    char payload[512], tok[1024], h[64];
    payload_at(payload, sizeof payload, NOW, NOW + 60, "");
    /* The classic unsigned token: empty signature segment. */
    b64("{\"alg\":\"none\",\"typ\":\"JWT\"}", 26, tok);
    strcat(tok, ".");
    b64(payload, strlen(payload), tok + strlen(tok));
    strcat(tok, ".");
    auth_claims c;
    cr_assert_eq(verify_str(tok, &c), AUTH_EALGNONE);
    /* With a correct HMAC it is still refused: the header alone decides. */
    cr_assert_eq(verify_crafted("{\"alg\":\"none\",\"typ\":\"JWT\"}", payload), AUTH_EALGNONE);
    cr_assert_eq(verify_crafted("{\"alg\":\"None\"}", payload), AUTH_EALGNONE);
    cr_assert_eq(verify_crafted("{\"alg\":\"NONE\"}", payload), AUTH_EALGNONE);
    cr_assert_eq(verify_crafted("{\"alg\":\"nOnE\"}", payload), AUTH_EALGNONE);
    snprintf(h, sizeof h, "{\"typ\":\"JWT\",\"alg\":\"none\"}");
    cr_assert_eq(verify_crafted(h, payload), AUTH_EALGNONE);
}

Test(auth, other_algorithms_are_refused)
{
    char payload[512];
    payload_at(payload, sizeof payload, NOW, NOW + 60, "");
    const char *algs[] = {"HS512", "HS384", "RS256",  "ES256", "PS256",
                          "EdDSA", "hs256", "HS256 ", ""};
    for (size_t i = 0; i < sizeof algs / sizeof algs[0]; i++) {
        char h[128];
        snprintf(h, sizeof h, "{\"alg\":\"%s\",\"typ\":\"JWT\"}", algs[i]);
        cr_assert_eq(verify_crafted(h, payload), AUTH_EALG, "alg %s", algs[i]);
    }
}

Test(auth, missing_or_odd_alg_and_extra_header_members_are_refused)
{
    char payload[512];
    payload_at(payload, sizeof payload, NOW, NOW + 60, "");
    cr_assert_eq(verify_crafted("{\"typ\":\"JWT\"}", payload), AUTH_EHEADER);
    cr_assert_eq(verify_crafted("{}", payload), AUTH_EHEADER);
    cr_assert_eq(verify_crafted("{\"alg\":null}", payload), AUTH_EHEADER);
    cr_assert_eq(verify_crafted("{\"alg\":256}", payload), AUTH_EHEADER);
    cr_assert_eq(verify_crafted("{\"alg\":\"HS256\",\"typ\":\"JWT\",\"kid\":\"1\"}", payload),
                 AUTH_EHEADER);
    cr_assert_eq(verify_crafted("{\"alg\":\"HS256\",\"crit\":[\"exp\"]}", payload), AUTH_EHEADER);
    cr_assert_eq(verify_crafted("{\"alg\":\"HS256\",\"typ\":null}", payload), AUTH_EHEADER);
    /* A second alg must not shadow the first. */
    cr_assert_eq(verify_crafted("{\"alg\":\"HS256\",\"alg\":\"none\"}", payload), AUTH_EJSON);
    cr_assert_eq(verify_crafted("[\"HS256\"]", payload), AUTH_ENOTOBJECT);
    cr_assert_eq(verify_crafted("{\"alg\":\"HS256\"", payload), AUTH_EJSON);
    /* typ may be left out; the members may come in any order. */
    cr_assert_eq(verify_crafted("{\"alg\":\"HS256\"}", payload), 0);
    cr_assert_eq(verify_crafted("{\"typ\":\"JWT\",\"alg\":\"HS256\"}", payload), 0);
    cr_assert_eq(verify_crafted("{ \"alg\" : \"HS256\" }", payload), 0);
}

Test(auth, typ_other_than_jwt_is_refused)
{
    char payload[512];
    payload_at(payload, sizeof payload, NOW, NOW + 60, "");
    cr_assert_eq(verify_crafted("{\"alg\":\"HS256\",\"typ\":\"JWS\"}", payload), AUTH_ETYP);
    cr_assert_eq(verify_crafted("{\"alg\":\"HS256\",\"typ\":\"jwt\"}", payload), AUTH_ETYP);
    cr_assert_eq(verify_crafted("{\"alg\":\"HS256\",\"typ\":\"\"}", payload), AUTH_ETYP);
}

/* ---- Signature refusals ------------------------------------------------------------------- */

Test(auth, tampered_payload_is_refused)
{
    /* Re-encode the payload with another sub but keep the old signature. */
    char payload[512], tok[1024], evil[1024];
    payload_at(payload, sizeof payload, NOW, NOW + 60, "");
    craft(HDR, payload, tok);
    const char *sig = strrchr(tok, '.');
    char *p = strstr(payload, "\"42\"");
    cr_assert_not_null(p);
    p[2] = '3';
    b64(HDR, strlen(HDR), evil);
    strcat(evil, ".");
    b64(payload, strlen(payload), evil + strlen(evil));
    strcat(evil, sig);
    auth_claims c;
    cr_assert_eq(verify_str(evil, &c), AUTH_ESIGNATURE);
    cr_assert_eq(verify_str(tok, &c), 0);
}

Test(auth, tampered_signature_is_refused)
{
    char tok[] = TOKEN_KA;
    char *sig = strrchr(tok, '.') + 1;
    auth_claims c;
    cr_assert_eq(verify_str(tok, &c), 0);
    for (size_t i = 0; i + 1 < strlen(sig); i++) { /* the last char carries unused bits */
        char saved = sig[i];
        sig[i] = saved == 'A' ? 'B' : 'A';
        cr_assert_eq(verify_str(tok, &c), AUTH_ESIGNATURE, "flipped char %zu", i);
        sig[i] = saved;
    }
    /* Truncated or extended signatures are the wrong length. */
    char shorter[sizeof TOKEN_KA];
    memcpy(shorter, TOKEN_KA, sizeof TOKEN_KA - 4); /* 40 characters: 30 bytes */
    shorter[sizeof TOKEN_KA - 4] = '\0';
    cr_assert_eq(verify_str(shorter, &c), AUTH_ESIGNATURE);
    char longer[sizeof TOKEN_KA + 4];
    snprintf(longer, sizeof longer, "%sAAAA", TOKEN_KA);
    cr_assert_eq(verify_str(longer, &c), AUTH_ESIGNATURE);
    char empty[sizeof TOKEN_KA];
    memcpy(empty, TOKEN_KA, (size_t)(strrchr(TOKEN_KA, '.') - TOKEN_KA) + 1);
    empty[strrchr(TOKEN_KA, '.') - TOKEN_KA + 1] = '\0';
    cr_assert_eq(verify_str(empty, &c), AUTH_ESIGNATURE);
}

Test(auth, signature_of_another_key_is_refused)
{
    char payload[512], tok[1024];
    payload_at(payload, sizeof payload, NOW, NOW + 60, "");
    const char other[] = "another-secret-0123456789abcdefgh";
    craft_key(other, strlen(other), HDR, payload, tok);
    auth_claims c;
    cr_assert_eq(verify_str(tok, &c), AUTH_ESIGNATURE);
    /* A key differing only in its last byte. */
    char near[] = SECRET;
    near[sizeof near - 2] ^= 1;
    craft_key(near, strlen(near), HDR, payload, tok);
    cr_assert_eq(verify_str(tok, &c), AUTH_ESIGNATURE);
}

/* ---- Time ------------------------------------------------------------------------------------ */

Test(auth, expired_token_is_refused)
{
    char payload[512];
    payload_at(payload, sizeof payload, NOW - 1000, NOW - LEEWAY - 1, "");
    cr_assert_eq(verify_payload(payload), AUTH_EEXPIRED);
    payload_at(payload, sizeof payload, 0, 1, "");
    cr_assert_eq(verify_payload(payload), AUTH_EEXPIRED);
}

Test(auth, exp_edge_follows_rfc_7519_now_must_be_before_exp_plus_leeway)
{
    char payload[512];
    payload_at(payload, sizeof payload, NOW - 1000, NOW - LEEWAY, "");
    cr_assert_eq(verify_payload(payload), AUTH_EEXPIRED);
    payload_at(payload, sizeof payload, NOW - 1000, NOW - LEEWAY + 1, "");
    cr_assert_eq(verify_payload(payload), 0);
}

Test(auth, iat_in_the_future_is_refused_beyond_leeway)
{
    char payload[512];
    payload_at(payload, sizeof payload, NOW + LEEWAY + 1, NOW + 1000, "");
    cr_assert_eq(verify_payload(payload), AUTH_EIAT);
    payload_at(payload, sizeof payload, NOW + LEEWAY, NOW + 1000, "");
    cr_assert_eq(verify_payload(payload), 0);
}

Test(auth, nbf_when_present_is_honoured)
{
    char payload[512];
    payload_at(payload, sizeof payload, NOW, NOW + 1000, ",\"nbf\":1700000131");
    cr_assert_eq(verify_payload(payload), AUTH_ENOTYET);
    payload_at(payload, sizeof payload, NOW, NOW + 1000, ",\"nbf\":1700000130");
    cr_assert_eq(verify_payload(payload), 0);
    payload_at(payload, sizeof payload, NOW, NOW + 1000, ",\"nbf\":\"soon\"");
    cr_assert_eq(verify_payload(payload), AUTH_ECLAIM);
}

/* ---- Claims ------------------------------------------------------------------------------------
 */

Test(auth, wrong_iss_and_aud_are_refused)
{
    char payload[512];
    snprintf(payload, sizeof payload,
             "{\"iss\":\"evil\",\"sub\":\"42\",\"aud\":\"" AUD "\",\"exp\":%d,\"iat\":%d,"
             "\"jti\":\"" JTI "\",\"role\":\"customer\"}",
             NOW + 60, NOW);
    cr_assert_eq(verify_payload(payload), AUTH_EISS);
    snprintf(payload, sizeof payload,
             "{\"iss\":\"" ISS "x\",\"sub\":\"42\",\"aud\":\"" AUD "\",\"exp\":%d,\"iat\":%d,"
             "\"jti\":\"" JTI "\",\"role\":\"customer\"}",
             NOW + 60, NOW);
    cr_assert_eq(verify_payload(payload), AUTH_EISS);
    snprintf(payload, sizeof payload,
             "{\"iss\":\"" ISS "\",\"sub\":\"42\",\"aud\":\"other\",\"exp\":%d,\"iat\":%d,"
             "\"jti\":\"" JTI "\",\"role\":\"customer\"}",
             NOW + 60, NOW);
    cr_assert_eq(verify_payload(payload), AUTH_EAUD);
    snprintf(payload, sizeof payload,
             "{\"iss\":\"" ISS "\",\"sub\":\"42\",\"aud\":\"usher-ap\",\"exp\":%d,\"iat\":%d,"
             "\"jti\":\"" JTI "\",\"role\":\"customer\"}",
             NOW + 60, NOW);
    cr_assert_eq(verify_payload(payload), AUTH_EAUD);
    /* An audience array is allowed by RFC 7519 but never issued by usher. */
    snprintf(payload, sizeof payload,
             "{\"iss\":\"" ISS "\",\"sub\":\"42\",\"aud\":[\"" AUD "\"],\"exp\":%d,\"iat\":%d,"
             "\"jti\":\"" JTI "\",\"role\":\"customer\"}",
             NOW + 60, NOW);
    cr_assert_eq(verify_payload(payload), AUTH_ECLAIM);
}

Test(auth, missing_claims_are_refused)
{
    const char *claims[] = {"\"iss\":\"" ISS "\"",  "\"sub\":\"42\"",     "\"aud\":\"" AUD "\"",
                            "\"exp\":1700000900",   "\"iat\":1700000000", "\"jti\":\"" JTI "\"",
                            "\"role\":\"customer\""};
    const size_t n = sizeof claims / sizeof claims[0];
    for (size_t skip = 0; skip < n; skip++) {
        char payload[512] = "{";
        for (size_t i = 0; i < n; i++) {
            if (i == skip)
                continue;
            if (strlen(payload) > 1)
                strcat(payload, ",");
            strcat(payload, claims[i]);
        }
        strcat(payload, "}");
        cr_assert_eq(verify_payload(payload), AUTH_EMISSING, "without %s", claims[skip]);
    }
    cr_assert_eq(verify_payload("{}"), AUTH_EMISSING);
}

static void payload_with(char *out, size_t cap, const char *sub, const char *role, const char *jti,
                         const char *exp)
{
    snprintf(out, cap,
             "{\"iss\":\"" ISS "\",\"sub\":%s,\"aud\":\"" AUD "\",\"exp\":%s,\"iat\":%d,"
             "\"jti\":%s,\"role\":%s}",
             sub, exp, NOW, jti, role);
}

Test(auth, claims_of_the_wrong_type_or_value_are_refused)
{
    char p[512];
    const char *jti = "\"" JTI "\"", *exp = "1700000900", *role = "\"customer\"";
    const char *bad_subs[] = {"42",     "\"042\"", "\"\"",     "\"-1\"",
                              "\"+1\"", "\"4 2\"", "\"0x10\"", "\"18446744073709551616\"",
                              "null"};
    for (size_t i = 0; i < sizeof bad_subs / sizeof bad_subs[0]; i++) {
        payload_with(p, sizeof p, bad_subs[i], role, jti, exp);
        cr_assert_eq(verify_payload(p), AUTH_ECLAIM, "sub %s", bad_subs[i]);
    }
    payload_with(p, sizeof p, "\"18446744073709551615\"", role, jti, exp);
    cr_assert_eq(verify_payload(p), 0);
    payload_with(p, sizeof p, "\"0\"", role, jti, exp);
    cr_assert_eq(verify_payload(p), 0);

    const char *bad_roles[] = {"\"root\"", "\"Admin\"", "\"\"", "1", "[\"admin\"]"};
    for (size_t i = 0; i < sizeof bad_roles / sizeof bad_roles[0]; i++) {
        payload_with(p, sizeof p, "\"42\"", bad_roles[i], jti, exp);
        cr_assert_eq(verify_payload(p), AUTH_ECLAIM, "role %s", bad_roles[i]);
    }
    payload_with(p, sizeof p, "\"42\"", "\"admin\"", jti, exp);
    cr_assert_eq(verify_payload(p), 0);

    const char *bad_jtis[] = {
        "\"00112233445566778899AABBCCDDEEFF\"", "\"00112233445566778899aabbccddeef\"",
        "\"00112233445566778899aabbccddeeff0\"", "\"00112233445566778899aabbccddeefg\"", "7"};
    for (size_t i = 0; i < sizeof bad_jtis / sizeof bad_jtis[0]; i++) {
        payload_with(p, sizeof p, "\"42\"", role, bad_jtis[i], exp);
        cr_assert_eq(verify_payload(p), AUTH_ECLAIM, "jti %s", bad_jtis[i]);
    }

    const char *bad_exps[] = {"1700000900.5", "\"1700000900\"", "-5", "true", "1.7e9"};
    for (size_t i = 0; i < sizeof bad_exps / sizeof bad_exps[0]; i++) {
        payload_with(p, sizeof p, "\"42\"", role, jti, bad_exps[i]);
        cr_assert_eq(verify_payload(p), AUTH_ECLAIM, "exp %s", bad_exps[i]);
    }
    /* Unknown claims are ignored. */
    payload_at(p, sizeof p, NOW, NOW + 60, ",\"scope\":[\"x\"],\"name\":\"Ada\"");
    cr_assert_eq(verify_payload(p), 0);
}

Test(auth, payload_that_is_not_an_object_is_refused)
{
    cr_assert_eq(verify_payload("[1,2]"), AUTH_ENOTOBJECT);
    cr_assert_eq(verify_payload("\"claims\""), AUTH_ENOTOBJECT);
    cr_assert_eq(verify_payload("42"), AUTH_ENOTOBJECT);
    cr_assert_eq(verify_payload("null"), AUTH_ENOTOBJECT);
    cr_assert_eq(verify_payload(""), AUTH_EJSON);
    cr_assert_eq(verify_payload("{\"sub\":"), AUTH_EJSON);
    cr_assert_eq(verify_payload("{} {}"), AUTH_EJSON);
    cr_assert_eq(verify_payload("{\"sub\":\"1\",\"sub\":\"2\"}"), AUTH_EJSON);
    cr_assert_eq(verify_payload("{\"sub\":\"\\u0000\"}"), AUTH_EJSON);
    cr_assert_eq(verify_payload("{\"sub\":\"\xff\"}"), AUTH_EJSON);
}

/* ---- Structure
 * ------------------------------------------------------------------------------------ */

Test(auth, wrong_segment_counts_are_refused)
{
    auth_claims c;
    char tok[1024];
    cr_assert_eq(verify_str("", &c), AUTH_ESEGMENTS);
    cr_assert_eq(verify_str("abc", &c), AUTH_ESEGMENTS);
    /* Two segments: the known token without its signature. */
    size_t cut = (size_t)(strrchr(TOKEN_KA, '.') - TOKEN_KA);
    memcpy(tok, TOKEN_KA, cut);
    tok[cut] = '\0';
    cr_assert_eq(verify_str(tok, &c), AUTH_ESEGMENTS);
    /* Four segments: a valid token with a fourth appended. */
    snprintf(tok, sizeof tok, "%s.AAAA", TOKEN_KA);
    cr_assert_eq(verify_str(tok, &c), AUTH_ESEGMENTS);
    snprintf(tok, sizeof tok, "%s.", TOKEN_KA);
    cr_assert_eq(verify_str(tok, &c), AUTH_ESEGMENTS);
    cr_assert_eq(verify_str("..", &c), AUTH_EJSON);
    cr_assert_eq(verify_str("...", &c), AUTH_ESEGMENTS);
}

Test(auth, padding_in_a_segment_is_refused)
{
    /* The payload's encoding needs padding to a multiple of 4 in padded
     * base64; add it to each segment in turn. */
    auth_claims c;
    char tok[1024];
    const char *d1 = strchr(TOKEN_KA, '.'), *d2 = strrchr(TOKEN_KA, '.');
    snprintf(tok, sizeof tok, "%.*s=%s", (int)(d2 - TOKEN_KA), TOKEN_KA, d2);
    cr_assert_eq(verify_str(tok, &c), AUTH_EBASE64);
    snprintf(tok, sizeof tok, "%s=", TOKEN_KA);
    cr_assert_eq(verify_str(tok, &c), AUTH_EBASE64);
    snprintf(tok, sizeof tok, "%.*s==%s", (int)(d1 - TOKEN_KA), TOKEN_KA, d1);
    cr_assert_eq(verify_str(tok, &c), AUTH_EBASE64);
}

Test(auth, invalid_base64url_characters_are_refused)
{
    auth_claims c;
    const char bad[] = {'+', '/', ' ', '*', '\n', '\0', '\x80', '~'};
    for (size_t b = 0; b < sizeof bad; b++) {
        for (size_t where = 0; where < 3; where++) {
            char tok[sizeof TOKEN_KA];
            memcpy(tok, TOKEN_KA, sizeof tok);
            size_t pos = where == 0   ? 3
                         : where == 1 ? (size_t)(strchr(TOKEN_KA, '.') - TOKEN_KA) + 5
                                      : sizeof TOKEN_KA - 6;
            tok[pos] = bad[b];
            auth_jwt_key k = test_key();
            cr_assert_eq(auth_jwt_verify(&k, tok, sizeof TOKEN_KA - 1, NOW, &c), AUTH_EBASE64,
                         "char %#x in segment %zu", (unsigned char)bad[b], where);
        }
    }
}

Test(auth, oversized_token_is_refused_and_the_bound_is_inclusive)
{
    /* Pad an extra claim until the token is exactly AUTH_TOKEN_MAX long. */
    static char payload[8192], tok[16384], pad[4096];
    size_t len = 0;
    for (size_t n = 0; n < sizeof pad - 1; n++) {
        memset(pad, 'x', n);
        pad[n] = '\0';
        char extra[4200];
        snprintf(extra, sizeof extra, ",\"pad\":\"%s\"", pad);
        payload_at(payload, sizeof payload, NOW, NOW + 60, extra);
        craft(HDR, payload, tok);
        len = strlen(tok);
        if (len >= AUTH_TOKEN_MAX)
            break;
    }
    cr_assert_eq(len, AUTH_TOKEN_MAX);
    auth_claims c;
    cr_assert_eq(verify_str(tok, &c), 0);
    strcat(tok, "A");
    cr_assert_eq(verify_str(tok, &c), AUTH_ETOOLONG);
    static char huge[1 << 16];
    memset(huge, 'A', sizeof huge - 1);
    cr_assert_eq(verify_str(huge, &c), AUTH_ETOOLONG);
}

/* ---- base64url
 * ------------------------------------------------------------------------------------- */

Test(auth, base64url_round_trips_every_length_to_64)
{
    uint8_t data[64], back[64];
    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (uint8_t)(i * 37 + 11) ^ (uint8_t)(i >> 1) ^ 0xa5;
    for (size_t len = 0; len <= 64; len++) {
        char enc[128], ref[128];
        size_t n = 99, m = 99;
        cr_assert_eq(auth_base64url_encode(data, len, enc, sizeof enc, &n), 0);
        cr_assert_eq(n, auth_base64url_len(len));
        cr_assert_eq(strlen(enc), n);
        b64(data, len, ref);
        cr_assert_str_eq(enc, ref, "length %zu", len);
        cr_assert_eq(auth_base64url_decode(enc, n, back, sizeof back, &m), 0);
        cr_assert_eq(m, len);
        cr_assert_eq(memcmp(back, data, len), 0);
        /* Exact-size buffers are enough; one less is not. */
        cr_assert_eq(auth_base64url_encode(data, len, enc, n + 1, &n), 0);
        cr_assert_eq(auth_base64url_encode(data, len, enc, n, &m), AUTH_EBUFSIZE);
        cr_assert_eq(auth_base64url_decode(enc, n, back, len, &m), 0);
        if (len > 0)
            cr_assert_eq(auth_base64url_decode(enc, n, back, len - 1, &m), AUTH_EBUFSIZE);
    }
    /* All 256 byte values and the whole alphabet. */
    uint8_t all[256], all_back[256];
    for (int i = 0; i < 256; i++)
        all[i] = (uint8_t)i;
    char enc[400];
    size_t n = 0, m = 0;
    cr_assert_eq(auth_base64url_encode(all, 256, enc, sizeof enc, &n), 0);
    cr_assert_eq(auth_base64url_decode(enc, n, all_back, sizeof all_back, &m), 0);
    cr_assert_eq(m, 256);
    cr_assert_eq(memcmp(all, all_back, 256), 0);
    cr_assert_eq(auth_base64url_decode("-_-_", 4, all_back, 3, &m), 0);
    cr_assert_eq(all_back[0], 0xfb);
    cr_assert_eq(all_back[1], 0xff);
    cr_assert_eq(all_back[2], 0xbf);
}

Test(auth, base64url_refuses_non_canonical_encodings)
{
    uint8_t out[16];
    size_t n = 0;
    /* "QQ" is the encoding of "A" (0x41); "QR".."QV" set unused bits. */
    cr_assert_eq(auth_base64url_decode("QQ", 2, out, sizeof out, &n), 0);
    cr_assert_eq(n, 1);
    cr_assert_eq(out[0], 0x41);
    const char *two[] = {"QR", "QS", "QT", "QU", "QV", "Qf", "Q_"};
    for (size_t i = 0; i < sizeof two / sizeof two[0]; i++)
        cr_assert_eq(auth_base64url_decode(two[i], 2, out, sizeof out, &n), AUTH_EBASE64, "%s",
                     two[i]);
    /* "QUI" is "AB"; "QUJ", "QUK", "QUL" set unused bits. */
    cr_assert_eq(auth_base64url_decode("QUI", 3, out, sizeof out, &n), 0);
    cr_assert_eq(n, 2);
    cr_assert_eq(auth_base64url_decode("QUJ", 3, out, sizeof out, &n), AUTH_EBASE64);
    cr_assert_eq(auth_base64url_decode("QUK", 3, out, sizeof out, &n), AUTH_EBASE64);
    cr_assert_eq(auth_base64url_decode("QUL", 3, out, sizeof out, &n), AUTH_EBASE64);
    /* Every 1-byte value has exactly one accepted 2-character encoding. */
    int accepted = 0;
    const char *alpha = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    for (int a = 0; a < 64; a++)
        for (int b = 0; b < 64; b++) {
            char s[2] = {alpha[a], alpha[b]};
            accepted += auth_base64url_decode(s, 2, out, sizeof out, &n) == 0;
        }
    cr_assert_eq(accepted, 256);
    /* Length 1 mod 4, padding, foreign characters. */
    cr_assert_eq(auth_base64url_decode("Q", 1, out, sizeof out, &n), AUTH_EBASE64);
    cr_assert_eq(auth_base64url_decode("QUJDR", 5, out, sizeof out, &n), AUTH_EBASE64);
    cr_assert_eq(auth_base64url_decode("QQ==", 4, out, sizeof out, &n), AUTH_EBASE64);
    cr_assert_eq(auth_base64url_decode("QUI=", 4, out, sizeof out, &n), AUTH_EBASE64);
    cr_assert_eq(auth_base64url_decode("Q+I", 3, out, sizeof out, &n), AUTH_EBASE64);
    cr_assert_eq(auth_base64url_decode("Q/I", 3, out, sizeof out, &n), AUTH_EBASE64);
    cr_assert_eq(auth_base64url_decode("", 0, out, sizeof out, &n), 0);
    cr_assert_eq(n, 0);
}

/* ---- Secrets
 * ---------------------------------------------------------------------------------------- */

static char *temp_dir(void)
{
    static char dir[64];
    snprintf(dir, sizeof dir, "/tmp/usher-auth-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    return dir;
}

static void write_file(const char *path, const void *data, size_t len, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
    cr_assert_geq(fd, 0);
    cr_assert_eq(write(fd, data, len), (ssize_t)len);
    cr_assert_eq(fchmod(fd, mode), 0);
    close(fd);
}

Test(auth, secret_file_is_created_0600_and_read_back_equal)
{
    char path[128];
    const char *dir = temp_dir();
    snprintf(path, sizeof path, "%s/jwt.secret", dir);
    uint8_t a[AUTH_SECRET_MAX], b[AUTH_SECRET_MAX];
    size_t an = 0, bn = 0;
    mode_t old = umask(0); /* the file is 0600 even with no umask to help */
    cr_assert_eq(auth_secret_load_or_create(path, a, &an), 0);
    umask(old);
    cr_assert_eq(an, AUTH_SECRET_FILE_BYTES);
    struct stat st;
    cr_assert_eq(stat(path, &st), 0);
    cr_assert_eq(st.st_mode & 07777, 0600);
    cr_assert_eq(st.st_size, AUTH_SECRET_FILE_BYTES);
    cr_assert_eq(auth_secret_load_or_create(path, b, &bn), 0);
    cr_assert_eq(bn, an);
    cr_assert_eq(memcmp(a, b, an), 0);
    static const uint8_t zero[AUTH_SECRET_FILE_BYTES];
    cr_assert_neq(memcmp(a, zero, an), 0);
    /* No temporary file is left beside it. */
    char cmd[256];
    snprintf(cmd, sizeof cmd, "test $(ls -A %s | wc -l) -eq 1", dir);
    cr_assert_eq(system(cmd), 0);
    /* Another path gets another secret. */
    snprintf(path, sizeof path, "%s/other.secret", dir);
    cr_assert_eq(auth_secret_load_or_create(path, b, &bn), 0);
    cr_assert_neq(memcmp(a, b, an), 0);
    /* Stricter than 0600 is fine. */
    cr_assert_eq(chmod(path, 0400), 0);
    cr_assert_eq(auth_secret_load_or_create(path, b, &bn), 0);
}

Test(auth, secret_file_with_loose_permissions_is_refused)
{
    char path[128];
    snprintf(path, sizeof path, "%s/jwt.secret", temp_dir());
    uint8_t s[AUTH_SECRET_MAX];
    size_t n = 0;
    write_file(path, SECRET, 32, 0644);
    cr_assert_eq(auth_secret_load_or_create(path, s, &n), AUTH_ESECRETPERM);
    const mode_t loose[] = {0640, 0604, 0610, 0601, 0700, 0602, 01600, 0660};
    for (size_t i = 0; i < sizeof loose / sizeof loose[0]; i++) {
        cr_assert_eq(chmod(path, loose[i]), 0);
        cr_assert_eq(auth_secret_load_or_create(path, s, &n), AUTH_ESECRETPERM, "mode %o",
                     (unsigned)loose[i]);
    }
    cr_assert_eq(chmod(path, 0600), 0);
    cr_assert_eq(auth_secret_load_or_create(path, s, &n), 0);
    cr_assert_eq(n, 32);
    cr_assert_eq(memcmp(s, SECRET, 32), 0);
}

Test(auth, secret_file_of_the_wrong_size_or_kind_is_refused)
{
    char path[128], link_path[128];
    const char *dir = temp_dir();
    snprintf(path, sizeof path, "%s/jwt.secret", dir);
    uint8_t s[AUTH_SECRET_MAX];
    size_t n = 0;
    uint8_t bytes[100];
    memset(bytes, 0x5a, sizeof bytes);
    const size_t bad[] = {0, 1, 16, 31, 65, 100};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        write_file(path, bytes, bad[i], 0600);
        cr_assert_eq(auth_secret_load_or_create(path, s, &n), AUTH_ESECRETFILE, "size %zu", bad[i]);
        /* A refused file is left alone, never replaced. */
        struct stat st;
        cr_assert_eq(stat(path, &st), 0);
        cr_assert_eq((size_t)st.st_size, bad[i]);
    }
    write_file(path, bytes, 64, 0600);
    cr_assert_eq(auth_secret_load_or_create(path, s, &n), 0);
    cr_assert_eq(n, 64);
    /* A symlink, even to a good file, and a directory. */
    snprintf(link_path, sizeof link_path, "%s/link.secret", dir);
    cr_assert_eq(symlink(path, link_path), 0);
    cr_assert_eq(auth_secret_load_or_create(link_path, s, &n), AUTH_ESECRETFILE);
    cr_assert_eq(auth_secret_load_or_create(dir, s, &n), AUTH_ESECRETFILE);
    /* A missing directory is the OS's error. */
    snprintf(path, sizeof path, "%s/no/such/dir/jwt.secret", dir);
    cr_assert_eq(auth_secret_load_or_create(path, s, &n), -ENOENT);
}

Test(auth, env_secret_must_be_long_enough)
{
    uint8_t s[AUTH_SECRET_MAX];
    size_t n = 0;
    cr_assert_eq(auth_secret_from_string(NULL, s, &n), AUTH_ESECRETLEN);
    cr_assert_eq(auth_secret_from_string("", s, &n), AUTH_ESECRETLEN);
    cr_assert_eq(auth_secret_from_string("0123456789abcdef0123456789abcde", s, &n),
                 AUTH_ESECRETLEN);
    cr_assert_eq(auth_secret_from_string("0123456789abcdef0123456789abcdef", s, &n), 0);
    cr_assert_eq(n, 32);
    cr_assert_eq(memcmp(s, "0123456789abcdef0123456789abcdef", 32), 0);
    static char huge[AUTH_SECRET_ENV_MAX + 2];
    memset(huge, 'k', AUTH_SECRET_ENV_MAX + 1);
    cr_assert_eq(auth_secret_from_string(huge, s, &n), AUTH_ESECRETLEN);
    huge[AUTH_SECRET_ENV_MAX] = '\0';
    cr_assert_eq(auth_secret_from_string(huge, s, &n), 0);
    cr_assert_eq(n, 32);
}

Test(auth, long_env_secret_signs_as_hmac_with_the_whole_string)
{
    /* 128 hex characters, as `openssl rand -hex 64` prints. */
    char env[129];
    for (int i = 0; i < 128; i++)
        env[i] = "0123456789abcdef"[(i * 7) % 16];
    env[128] = '\0';
    uint8_t s[AUTH_SECRET_MAX];
    size_t n = 0;
    cr_assert_eq(auth_secret_from_string(env, s, &n), 0);
    cr_assert_eq(n, 32);
    auth_jwt_key k;
    cr_assert_eq(auth_jwt_key_init(&k, s, n, ISS, AUD, LEEWAY), 0);
    char payload[512], tok[1024];
    payload_at(payload, sizeof payload, NOW, NOW + 60, "");
    craft_key(env, strlen(env), HDR, payload, tok);
    auth_claims c;
    cr_assert_eq(auth_jwt_verify(&k, tok, strlen(tok), NOW, &c), 0);
}

Test(auth, secret_resolve_prefers_a_set_environment_variable)
{
    char path[128];
    snprintf(path, sizeof path, "%s/jwt.secret", temp_dir());
    uint8_t s[AUTH_SECRET_MAX];
    size_t n = 0;
    cr_assert_eq(auth_secret_resolve("too-short", path, s, &n), AUTH_ESECRETLEN);
    cr_assert_eq(access(path, F_OK), -1); /* not silently replaced by a file */
    cr_assert_eq(auth_secret_resolve(SECRET, path, s, &n), 0);
    cr_assert_eq(n, strlen(SECRET));
    cr_assert_eq(auth_secret_resolve(NULL, path, s, &n), 0);
    cr_assert_eq(n, AUTH_SECRET_FILE_BYTES);
    cr_assert_eq(access(path, F_OK), 0);
}

/* ---- Passwords
 * ---------------------------------------------------------------------------------------- */

Test(auth, password_hash_verifies_and_mismatch_is_refused)
{
    auth_password_opts o = auth_password_opts_min();
    char h1[AUTH_HASH_MAX], h2[AUTH_HASH_MAX];
    const char pw[] = "correct horse battery staple";
    cr_assert_eq(auth_password_hash(&o, pw, strlen(pw), h1), 0);
    cr_assert_eq(strncmp(h1, "$argon2id$", 10), 0);
    cr_assert_eq(auth_password_verify(h1, pw, strlen(pw)), 0);
    cr_assert_eq(auth_password_verify(h1, "correct horse battery stapl", strlen(pw) - 1),
                 AUTH_EPASSWORD);
    cr_assert_eq(auth_password_verify(h1, "Correct horse battery staple", strlen(pw)),
                 AUTH_EPASSWORD);
    cr_assert_eq(auth_password_verify(h1, "", 0), AUTH_EPASSWORD);
    /* The length is honoured: bytes after it are not part of the password. */
    cr_assert_eq(auth_password_verify(h1, "correct horse battery staple!", strlen(pw)), 0);
    /* Salted: the same password hashes differently and both verify. */
    cr_assert_eq(auth_password_hash(&o, pw, strlen(pw), h2), 0);
    cr_assert_str_neq(h1, h2);
    cr_assert_eq(auth_password_verify(h2, pw, strlen(pw)), 0);
    /* Embedded NUL bytes are part of the password. */
    cr_assert_eq(auth_password_hash(&o, "ab\0cdefgh", 9, h2), 0);
    cr_assert_eq(auth_password_verify(h2, "ab\0cdefgh", 9), 0);
    cr_assert_eq(auth_password_verify(h2, "ab\0cdefgX", 9), AUTH_EPASSWORD);
    cr_assert_eq(auth_password_verify(h2, "ab", 2), AUTH_EPASSWORD);
}

Test(auth, password_hash_bounds_and_bad_hashes)
{
    auth_password_opts o = auth_password_opts_min();
    char h[AUTH_HASH_MAX];
    static char big[AUTH_PASSWORD_MAX + 1];
    memset(big, 'p', sizeof big);
    cr_assert_eq(auth_password_hash(&o, big, sizeof big, h), AUTH_EPW_LONG);
    cr_assert_eq(auth_password_hash(&o, big, AUTH_PASSWORD_MAX, h), 0);
    cr_assert_eq(auth_password_verify(h, big, AUTH_PASSWORD_MAX), 0);
    cr_assert_eq(auth_password_verify(h, big, sizeof big), AUTH_EPASSWORD);
    auth_password_opts weak = {.opslimit = 0, .memlimit_bytes = o.memlimit_bytes};
    cr_assert_eq(auth_password_hash(&weak, "password", 8, h), AUTH_EINVAL);
    weak = (auth_password_opts){.opslimit = o.opslimit, .memlimit_bytes = 1024};
    cr_assert_eq(auth_password_hash(&weak, "password", 8, h), AUTH_EINVAL);
    cr_assert_eq(auth_password_verify("", "password", 8), AUTH_EHASH);
    cr_assert_eq(auth_password_verify("password", "password", 8), AUTH_EHASH);
    cr_assert_eq(
        auth_password_verify("$argon2i$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaA", "password", 8),
        AUTH_EHASH);
    cr_assert_eq(auth_password_verify("$argon2id$", "password", 8), AUTH_EHASH);
    cr_assert_eq(auth_password_verify("$argon2id$garbage", "password", 8), AUTH_EPASSWORD);
    char unterminated[AUTH_HASH_MAX + 10];
    memset(unterminated, 'x', sizeof unterminated - 1);
    memcpy(unterminated, "$argon2id$", 10);
    unterminated[sizeof unterminated - 1] = '\0';
    cr_assert_eq(auth_password_verify(unterminated, "password", 8), AUTH_EHASH);
}

Test(auth, password_rehash_is_needed_when_limits_change)
{
    auth_password_opts min = auth_password_opts_min();
    auth_password_opts inter = auth_password_opts_interactive();
    cr_assert_eq(inter.opslimit, 2);
    cr_assert_eq(inter.memlimit_bytes, 64u << 20);
    char h[AUTH_HASH_MAX];
    cr_assert_eq(auth_password_hash(&min, "password", 8, h), 0);
    cr_assert_not(auth_password_needs_rehash(h, &min));
    cr_assert(auth_password_needs_rehash(h, &inter));
    cr_assert(auth_password_needs_rehash(h, NULL));
    cr_assert(auth_password_needs_rehash("nonsense", &min));
}

Test(auth, password_policy)
{
    cr_assert_eq(auth_password_check("", 0), AUTH_EPW_SHORT);
    cr_assert_eq(auth_password_check("1234567", 7), AUTH_EPW_SHORT);
    cr_assert_eq(auth_password_check("12345678", 8), 0);
    static char big[AUTH_PASSWORD_MAX + 1];
    memset(big, 'a', sizeof big);
    cr_assert_eq(auth_password_check(big, AUTH_PASSWORD_MAX), 0);
    cr_assert_eq(auth_password_check(big, AUTH_PASSWORD_MAX + 1), AUTH_EPW_LONG);
    /* Bytes, not characters: 4 two-byte characters are 8 bytes. */
    cr_assert_eq(auth_password_check("\xc3\xa4\xc3\xb6\xc3\xbc\xc3\x9f", 8), 0);
    cr_assert_eq(auth_password_check("p\xc3\xa4sswort", 9), 0);
    cr_assert_eq(auth_password_check("\xf0\x9f\x94\x91\xf0\x9f\x94\x91", 8), 0); /* U+1F511 */
    cr_assert_eq(auth_password_check("\xf4\x8f\xbf\xbf"
                                     "abcd",
                                     8),
                 0); /* U+10FFFF */
    const char *bad[] = {
        "abcdefg\xff",          /* never valid */
        "abcdef\xc0\xaf",       /* overlong '/' */
        "abcde\xe0\x80\xaf",    /* overlong, 3 bytes */
        "abcd\xf0\x80\x80\xaf", /* overlong, 4 bytes */
        "abcde\xed\xa0\x80",    /* surrogate U+D800 */
        "abcd\xf4\x90\x80\x80", /* U+110000 */
        "abcdef\xe2\x82",       /* truncated */
        "abcdefg\x80",          /* lone continuation */
        "abcdef\xc3\x28",       /* bad continuation */
        "abcd\xf5\x80\x80\x80", /* lead byte past F4 */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_assert_eq(auth_password_check(bad[i], strlen(bad[i])), AUTH_EPW_UTF8, "case %zu", i);
    cr_assert_eq(auth_password_check("        ", 8), AUTH_EPW_BLANK);
    cr_assert_eq(auth_password_check("\t\n\r \v\f  ", 8), AUTH_EPW_BLANK);
    /* U+3000 ideographic space x2, U+00A0: 8 bytes of nothing visible. */
    cr_assert_eq(auth_password_check("\xe3\x80\x80\xe3\x80\x80\xc2\xa0", 8), AUTH_EPW_BLANK);
    cr_assert_eq(auth_password_check("       x", 8), 0);
    cr_assert_eq(auth_password_check("pass word", 9), 0);
    /* The order of the checks: length before encoding before content. */
    cr_assert_eq(auth_password_check("\xff\xff", 2), AUTH_EPW_SHORT);
}

/* ---- Cache
 * ---------------------------------------------------------------------------------------------- */

Test(auth, cache_hits_after_a_verified_token_and_respects_expiry)
{
    auth_jwt_key k = test_key();
    auth_cache cache;
    cr_assert_eq(auth_cache_init(&cache, 100), 0);
    cr_assert_eq(cache.mask, 127);
    auth_claims c, got;
    cr_assert_eq(auth_claims_init(&c, 7, AUTH_ROLE_CUSTOMER, NOW, 60), 0);
    char tok[AUTH_TOKEN_MAX + 1];
    int n = auth_jwt_sign(&k, &c, tok, sizeof tok);
    cr_assert_gt(n, 0);
    cr_assert_eq(auth_jwt_verify_cached(&cache, &k, tok, (size_t)n, NOW, &got), 0);
    cr_assert_eq(cache.misses, 1);
    cr_assert_eq(cache.hits, 0);
    cr_assert_eq(auth_jwt_verify_cached(&cache, &k, tok, (size_t)n, NOW + 1, &got), 0);
    cr_assert_eq(cache.hits, 1);
    cr_assert_eq(got.sub, 7);
    cr_assert_str_eq(got.jti, c.jti);
    /* Expiry is the same rule as verification's, hit or not. */
    cr_assert_eq(auth_jwt_verify_cached(&cache, &k, tok, (size_t)n, NOW + 60 + LEEWAY - 1, &got),
                 0);
    cr_assert_eq(cache.hits, 2);
    cr_assert_eq(auth_jwt_verify_cached(&cache, &k, tok, (size_t)n, NOW + 60 + LEEWAY, &got),
                 AUTH_EEXPIRED);
    cr_assert_eq(auth_jwt_verify_cached(&cache, &k, tok, (size_t)n, NOW + 60 + LEEWAY, &got),
                 AUTH_EEXPIRED);
    cr_assert_eq(cache.hits, 2);
    auth_cache_close(&cache);
}

/* Tokens past what the cache keeps are verified every time, never stored. */
Test(auth, cache_verifies_long_tokens_every_time)
{
    auth_jwt_key k = test_key();
    auth_cache cache;
    cr_assert_eq(auth_cache_init(&cache, 4), 0);
    char tok[AUTH_CACHE_TOKEN_MAX + 64];
    size_t n = strlen(TOKEN_KA);
    memcpy(tok, TOKEN_KA, n);
    /* The valid token with padding in its signature part: longer than the
     * cache keeps, and no longer valid. */
    while (n < sizeof tok - 1)
        tok[n++] = 'A';
    tok[n] = '\0';
    auth_claims got;
    for (int i = 0; i < 3; i++)
        cr_assert_neq(auth_jwt_verify_cached(&cache, &k, tok, n, NOW, &got), 0);
    cr_assert_eq(cache.hits, 0);
    cr_assert_eq(cache.misses, 3);
    auth_cache_close(&cache);
}

Test(auth, cache_never_stores_refusals_nor_crosses_keys)
{
    auth_jwt_key k = test_key(), other;
    const uint8_t s2[32] = {1, 2, 3};
    cr_assert_eq(auth_jwt_key_init(&other, s2, sizeof s2, ISS, AUD, LEEWAY), 0);
    auth_cache cache;
    cr_assert_eq(auth_cache_init(&cache, 1), 0); /* one slot: everything collides */
    cr_assert_eq(cache.mask, 0);
    auth_claims got;
    char tok[] = TOKEN_KA;
    size_t n = strlen(tok);
    cr_assert_eq(auth_jwt_verify_cached(&cache, &other, tok, n, NOW, &got), AUTH_ESIGNATURE);
    cr_assert_eq(auth_jwt_verify_cached(&cache, &other, tok, n, NOW, &got), AUTH_ESIGNATURE);
    cr_assert_eq(cache.hits, 0);
    cr_assert_eq(auth_jwt_verify_cached(&cache, &k, tok, n, NOW, &got), 0);
    cr_assert_eq(auth_jwt_verify_cached(&cache, &k, tok, n, NOW, &got), 0);
    cr_assert_eq(cache.hits, 1);
    /* The entry is keyed by the secret: another key does not hit it. */
    cr_assert_eq(auth_jwt_verify_cached(&cache, &other, tok, n, NOW, &got), AUTH_ESIGNATURE);
    cr_assert_eq(cache.hits, 1);
    /* A tampered token misses and is refused. */
    tok[n - 3] = tok[n - 3] == 'A' ? 'B' : 'A';
    cr_assert_eq(auth_jwt_verify_cached(&cache, &k, tok, n, NOW, &got), AUTH_ESIGNATURE);
    tok[n - 3] = TOKEN_KA[n - 3];
    cr_assert_eq(auth_jwt_verify_cached(&cache, &k, tok, n, NOW, &got), 0);
    cr_assert_eq(cache.hits, 2);
    /* Evicted by a second token in the same slot, then cleared. */
    auth_claims c;
    cr_assert_eq(auth_claims_init(&c, 8, AUTH_ROLE_ADMIN, NOW, 60), 0);
    char tok2[AUTH_TOKEN_MAX + 1];
    int n2 = auth_jwt_sign(&k, &c, tok2, sizeof tok2);
    cr_assert_eq(auth_jwt_verify_cached(&cache, &k, tok2, (size_t)n2, NOW, &got), 0);
    cr_assert_eq(got.role, AUTH_ROLE_ADMIN);
    cr_assert_eq(auth_jwt_verify_cached(&cache, &k, tok, n, NOW, &got), 0);
    cr_assert_eq(cache.hits, 2);
    cr_assert_eq(got.sub, 42);
    auth_cache_clear(&cache);
    cr_assert_eq(auth_jwt_verify_cached(&cache, &k, tok, n, NOW, &got), 0);
    cr_assert_eq(cache.hits, 2);
    auth_cache_close(&cache);
    cr_assert_eq(auth_cache_init(&cache, 0), AUTH_EINVAL);
    cr_assert_eq(auth_cache_init(&cache, (1u << 20) + 1), AUTH_EINVAL);
    auth_cache_close(&cache);
}

/* ---- Errors
 * --------------------------------------------------------------------------------------------- */

Test(auth, every_code_has_its_own_description)
{
    for (int a = AUTH_EINVAL; a <= AUTH_ETOOLONG; a++) {
        const char *sa = auth_strerror(a);
        cr_assert_not_null(sa);
        cr_assert_str_neq(sa, "unknown auth error", "code %d", a);
        for (int b = a + 1; b <= AUTH_ETOOLONG; b++)
            cr_assert_str_neq(sa, auth_strerror(b), "codes %d and %d", a, b);
    }
    cr_assert_str_eq(auth_strerror(0), "success");
    cr_assert_str_eq(auth_strerror(-ENOENT), strerror(ENOENT));
    cr_assert_str_eq(auth_strerror(-32000), "unknown auth error");
    cr_assert_str_eq(auth_strerror(AUTH_EINVAL - 1), "unknown auth error");
}

/* The origins usherd's --analytics-url and usher-pgexport's --http-allow-origin accept: a bare
 * scheme://host[:port]; anything that could carry more into a header is refused. */
Test(auth, origin_valid_takes_bare_origins_only)
{
    const char *good[] = {"http://127.0.0.1:8081", "https://usher.example", "http://localhost",
                          "http://[::1]:8080",     "https://a-b.c:1",       "http://h:65535"};
    const char *bad[] = {"",
                         "127.0.0.1:8081",
                         "ftp://host",
                         "http://",
                         "http://host/",
                         "http://host:8081/api",
                         "http://a;b",
                         "http://ho st",
                         "http://h'x",
                         "http://h\"x",
                         "http://host:",
                         "http://host:0",
                         "http://host:65536",
                         "http://host:0000080",
                         "https://[::1",
                         "https://[]",
                         "https://[::1]x",
                         "http://host\r\nX-Evil: 1"};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        cr_expect(auth_origin_valid(good[i]), "refused %s", good[i]);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_expect_not(auth_origin_valid(bad[i]), "took %s", bad[i]);
}
