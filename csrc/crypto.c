/* crypto: digests, HMAC, hex/base64, constant-time compare, random bytes, uuid4 (OpenSSL 3).
 *
 * Misuse (wrong argument type, unknown algorithm or encoding) raises with luaL_argerror;
 * runtime failures return nil, message, code. All inputs are taken with their Lua length, so
 * binary data with NUL bytes is handled everywhere. No mutable C state. */
#include <limits.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "paykit.h"

/* Largest random_bytes/random_hex request: random values are keys, nonces and ids, never bulk data. */
#define RANDOM_MAX_BYTES (1024 * 1024)

static const char *const alg_names[] = {"md5", "sha1", "sha256", "sha512", NULL};
static const char *const enc_names[] = {"raw", "hex", "base64", NULL};
enum { ENC_RAW, ENC_HEX, ENC_BASE64 };

static const char hex_digits[] = "0123456789abcdef";
static const char b64_std[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char b64_url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static const EVP_MD *alg_md(int alg)
{
    switch (alg) {
    case 0: return EVP_md5();
    case 1: return EVP_sha1();
    case 2: return EVP_sha256();
    default: return EVP_sha512();
    }
}

/* Reports the first queued OpenSSL error (and clears the queue) as nil, message, "openssl". */
static int push_openssl_error(lua_State *L, const char *what)
{
    char reason[256];
    unsigned long e = ERR_get_error();
    if (e != 0)
        ERR_error_string_n(e, reason, sizeof reason);
    else
        memcpy(reason, "no OpenSSL error queued", sizeof "no OpenSSL error queued");
    ERR_clear_error();
    return paykit_fail(L, "openssl", "%s failed: %s", what, reason);
}

/* ---- encoders, writing into a luaL_Buffer in chunks ---- */

static void add_hex(luaL_Buffer *b, const unsigned char *s, size_t n)
{
    while (n > 0) {
        size_t i, chunk = LUAL_BUFFERSIZE / 2;
        char *p = luaL_prepbuffer(b);
        if (chunk > n) chunk = n;
        for (i = 0; i < chunk; i++) {
            p[2 * i] = hex_digits[s[i] >> 4];
            p[2 * i + 1] = hex_digits[s[i] & 15];
        }
        luaL_addsize(b, 2 * chunk);
        s += chunk;
        n -= chunk;
    }
}

static void add_b64(luaL_Buffer *b, const unsigned char *s, size_t n, int urlsafe)
{
    const char *abc = urlsafe ? b64_url : b64_std;
    while (n >= 3) {
        size_t groups = n / 3, g, max = LUAL_BUFFERSIZE / 4;
        char *p = luaL_prepbuffer(b);
        if (groups > max) groups = max;
        for (g = 0; g < groups; g++, s += 3, p += 4) {
            unsigned long v = ((unsigned long)s[0] << 16) | ((unsigned long)s[1] << 8) | s[2];
            p[0] = abc[(v >> 18) & 63];
            p[1] = abc[(v >> 12) & 63];
            p[2] = abc[(v >> 6) & 63];
            p[3] = abc[v & 63];
        }
        luaL_addsize(b, 4 * groups);
        n -= 3 * groups;
    }
    if (n > 0) {
        unsigned long v = (unsigned long)s[0] << 16;
        if (n == 2) v |= (unsigned long)s[1] << 8;
        luaL_addchar(b, abc[(v >> 18) & 63]);
        luaL_addchar(b, abc[(v >> 12) & 63]);
        if (n == 2)
            luaL_addchar(b, abc[(v >> 6) & 63]);
        if (!urlsafe) {
            if (n == 1) luaL_addchar(b, '=');
            luaL_addchar(b, '=');
        }
    }
}

static void push_encoded(lua_State *L, const unsigned char *s, size_t n, int enc)
{
    luaL_Buffer b;
    if (enc == ENC_RAW) {
        lua_pushlstring(L, (const char *)s, n);
        return;
    }
    luaL_buffinit(L, &b);
    if (enc == ENC_HEX)
        add_hex(&b, s, n);
    else
        add_b64(&b, s, n, 0);
    luaL_pushresult(&b);
}

/* ---- digest / hmac ---- */

/* digest(alg, data[, enc]) */
static int l_digest(lua_State *L)
{
    int alg = luaL_checkoption(L, 1, NULL, alg_names);
    size_t len;
    const char *data = luaL_checklstring(L, 2, &len);
    int enc = luaL_checkoption(L, 3, "raw", enc_names);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    int ok;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (ctx == NULL)
        return push_openssl_error(L, "digest");
    ok = EVP_DigestInit_ex(ctx, alg_md(alg), NULL) == 1
        && EVP_DigestUpdate(ctx, data, len) == 1
        && EVP_DigestFinal_ex(ctx, md, &mdlen) == 1;
    EVP_MD_CTX_free(ctx);
    if (!ok)
        return push_openssl_error(L, "digest");
    push_encoded(L, md, mdlen, enc);
    return 1;
}

/* hmac(alg, key, data[, enc]) */
static int l_hmac(lua_State *L)
{
    int alg = luaL_checkoption(L, 1, NULL, alg_names);
    size_t keylen, len;
    const char *key = luaL_checklstring(L, 2, &keylen);
    const char *data = luaL_checklstring(L, 3, &len);
    int enc = luaL_checkoption(L, 4, "raw", enc_names);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    luaL_argcheck(L, keylen <= INT_MAX, 2, "key too long");
    if (HMAC(alg_md(alg), key, (int)keylen, (const unsigned char *)data, len, md, &mdlen) == NULL)
        return push_openssl_error(L, "hmac");
    push_encoded(L, md, mdlen, enc);
    return 1;
}

/* ---- hex ---- */

static int l_hex_encode(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    push_encoded(L, (const unsigned char *)s, len, ENC_HEX);
    return 1;
}

/* hex_decode(s): either case; bytes or nil, msg, "invalid_hex" */
static int l_hex_decode(lua_State *L)
{
    size_t len, i;
    const unsigned char *s = (const unsigned char *)luaL_checklstring(L, 1, &len);
    luaL_Buffer b;
    if (len % 2 != 0)
        return paykit_fail(L, "invalid_hex", "invalid hex: odd length (%d characters)", (int)len);
    for (i = 0; i < len; i++)
        if (paykit_hexval(s[i]) < 0)
            return paykit_fail(L, "invalid_hex", "invalid hex: not a hex digit at position %d", (int)(i + 1));
    luaL_buffinit(L, &b);
    while (len > 0) {
        size_t k, chunk = LUAL_BUFFERSIZE;
        char *p = luaL_prepbuffer(&b);
        if (chunk > len / 2) chunk = len / 2;
        for (k = 0; k < chunk; k++)
            p[k] = (char)((paykit_hexval(s[2 * k]) << 4) | paykit_hexval(s[2 * k + 1]));
        luaL_addsize(&b, chunk);
        s += 2 * chunk;
        len -= 2 * chunk;
    }
    luaL_pushresult(&b);
    return 1;
}

/* ---- base64 ---- */

static int b64_value(unsigned char c, int urlsafe)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == (urlsafe ? '-' : '+')) return 62;
    if (c == (urlsafe ? '_' : '/')) return 63;
    return -1;
}

/* b64_encode(s[, urlsafe]) */
static int l_b64_encode(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    int urlsafe = lua_toboolean(L, 2);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    add_b64(&b, (const unsigned char *)s, len, urlsafe);
    luaL_pushresult(&b);
    return 1;
}

/* b64_decode(s[, urlsafe]): standard alphabet needs its padding; the URL-safe alphabet takes
 * it or not. Canonical input only: no whitespace, unused trailing bits must be zero.
 * Bytes or nil, msg, "invalid_base64". */
static int l_b64_decode(lua_State *L)
{
    size_t len, body, pads = 0, rem, i;
    const unsigned char *s = (const unsigned char *)luaL_checklstring(L, 1, &len);
    int urlsafe = lua_toboolean(L, 2);
    luaL_Buffer b;

    while (pads < 2 && pads < len && s[len - 1 - pads] == '=')
        pads++;
    if ((pads > 0 || !urlsafe) && len % 4 != 0)
        return paykit_fail(L, "invalid_base64", "invalid base64: padded length %d is not a multiple of 4", (int)len);
    body = len - pads;
    rem = body % 4;
    for (i = 0; i < body; i++)
        if (b64_value(s[i], urlsafe) < 0)
            return paykit_fail(L, "invalid_base64", "invalid base64: %s at position %d",
                               s[i] == '=' ? "misplaced padding" : "character outside the alphabet", (int)(i + 1));
    if (rem == 1)
        return paykit_fail(L, "invalid_base64", "invalid base64: truncated (one character left over)");
    if ((rem == 2 && (b64_value(s[body - 1], urlsafe) & 15) != 0)
        || (rem == 3 && (b64_value(s[body - 1], urlsafe) & 3) != 0))
        return paykit_fail(L, "invalid_base64",
                           "invalid base64: non-zero unused bits in the last character at position %d", (int)body);

    luaL_buffinit(L, &b);
    while (body >= 4) {
        size_t groups = body / 4, g, max = LUAL_BUFFERSIZE / 3;
        char *p = luaL_prepbuffer(&b);
        if (groups > max) groups = max;
        for (g = 0; g < groups; g++, s += 4, p += 3) {
            unsigned long v = ((unsigned long)b64_value(s[0], urlsafe) << 18)
                | ((unsigned long)b64_value(s[1], urlsafe) << 12)
                | ((unsigned long)b64_value(s[2], urlsafe) << 6)
                | (unsigned long)b64_value(s[3], urlsafe);
            p[0] = (char)(v >> 16);
            p[1] = (char)((v >> 8) & 255);
            p[2] = (char)(v & 255);
        }
        luaL_addsize(&b, 3 * groups);
        body -= 4 * groups;
    }
    if (body >= 2) {
        unsigned long v = ((unsigned long)b64_value(s[0], urlsafe) << 18)
            | ((unsigned long)b64_value(s[1], urlsafe) << 12);
        if (body == 3) v |= (unsigned long)b64_value(s[2], urlsafe) << 6;
        luaL_addchar(&b, (char)(v >> 16));
        if (body == 3) luaL_addchar(&b, (char)((v >> 8) & 255));
    }
    luaL_pushresult(&b);
    return 1;
}

/* ---- constant-time compare ---- */

/* consteq(a, b): different lengths are unequal at once (time depends only on the lengths). */
static int l_consteq(lua_State *L)
{
    size_t la, lb;
    const char *a = luaL_checklstring(L, 1, &la);
    const char *b = luaL_checklstring(L, 2, &lb);
    lua_pushboolean(L, la == lb && CRYPTO_memcmp(a, b, la) == 0);
    return 1;
}

/* ---- random ---- */

static size_t check_count(lua_State *L, int arg)
{
    long long n = 0;
    if (!paykit_tosafeint(L, arg, &n) || n < 0 || n > RANDOM_MAX_BYTES)
        luaL_argerror(L, arg, lua_pushfstring(L, "whole number of bytes from 0 to %d expected",
                                              RANDOM_MAX_BYTES));
    return (size_t)n;
}

/* random_bytes(n) */
static int l_random_bytes(lua_State *L)
{
    size_t n = check_count(L, 1);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    while (n > 0) {
        size_t chunk = LUAL_BUFFERSIZE;
        char *p = luaL_prepbuffer(&b);
        if (chunk > n) chunk = n;
        if (RAND_bytes((unsigned char *)p, (int)chunk) != 1)
            return push_openssl_error(L, "RAND_bytes");
        luaL_addsize(&b, chunk);
        n -= chunk;
    }
    luaL_pushresult(&b);
    return 1;
}

/* random_hex(nbytes): 2 * nbytes lowercase hex digits */
static int l_random_hex(lua_State *L)
{
    size_t n = check_count(L, 1);
    unsigned char tmp[256];
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    while (n > 0) {
        size_t chunk = sizeof tmp;
        if (chunk > n) chunk = n;
        if (RAND_bytes(tmp, (int)chunk) != 1) {
            OPENSSL_cleanse(tmp, sizeof tmp);
            return push_openssl_error(L, "RAND_bytes");
        }
        add_hex(&b, tmp, chunk);
        n -= chunk;
    }
    OPENSSL_cleanse(tmp, sizeof tmp);
    luaL_pushresult(&b);
    return 1;
}

/* uuid4(): RFC 4122 version 4, lowercase, 8-4-4-4-12 */
static int l_uuid4(lua_State *L)
{
    unsigned char r[16];
    char out[36];
    size_t i, o = 0;
    if (RAND_bytes(r, sizeof r) != 1)
        return push_openssl_error(L, "RAND_bytes");
    r[6] = (unsigned char)((r[6] & 0x0f) | 0x40); /* version 4 */
    r[8] = (unsigned char)((r[8] & 0x3f) | 0x80); /* variant 10xx */
    for (i = 0; i < sizeof r; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[o++] = '-';
        out[o++] = hex_digits[r[i] >> 4];
        out[o++] = hex_digits[r[i] & 15];
    }
    lua_pushlstring(L, out, sizeof out);
    return 1;
}

static const luaL_Reg crypto_funcs[] = {
    {"digest", l_digest},
    {"hmac", l_hmac},
    {"hex_encode", l_hex_encode},
    {"hex_decode", l_hex_decode},
    {"b64_encode", l_b64_encode},
    {"b64_decode", l_b64_decode},
    {"consteq", l_consteq},
    {"random_bytes", l_random_bytes},
    {"random_hex", l_random_hex},
    {"uuid4", l_uuid4},
    {NULL, NULL},
};

void paykit_crypto_register(lua_State *L)
{
    luaL_setfuncs(L, crypto_funcs, 0);
}
