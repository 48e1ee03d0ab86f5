/* crypto: digests, HMAC, hex/base64, constant-time compare, random bytes, uuid4 (OpenSSL 3).
 *
 * Misuse (wrong argument type, unknown algorithm or encoding) raises with luaL_argerror;
 * runtime failures return nil, message, code. All inputs are taken with their Lua length, so
 * binary data with NUL bytes is handled everywhere.
 *
 * C state: the digest and MAC algorithms are fetched from OpenSSL once per Lua state (OpenSSL 3
 * fetches them again on every call of its convenience functions: HMAC() is EVP_Q_mac, a fetch,
 * a context and a parameter parse each time); random bytes are served from a buffer filled
 * with RAND_bytes in RAND_CHUNK blocks and thrown away in a forked child (see rand_take). */
/* The request signers (oauth_signer, mocopay_signer) keep a digest state made once per
 * instance and copy it per call: OpenSSL's low-level MD5/SHA1 contexts are plain structs (the
 * EVP ones are allocated, fetched and re-initialised per use), deprecated in 3.0, not removed. */
#define OPENSSL_SUPPRESS_DEPRECATED 1
#include <limits.h>
#include <pthread.h>
#include <stddef.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/core_names.h>
#include <openssl/params.h>
#include <openssl/rand.h>
#include <openssl/md5.h>
#include <openssl/sha.h>

#include "paykit.h"

/* Largest random_bytes/random_hex request: random values are keys, nonces and ids, never bulk data. */
#define RANDOM_MAX_BYTES (1024 * 1024)

static const char *const alg_names[] = {"md5", "sha1", "sha256", "sha512", NULL};
static const char *const enc_names[] = {"raw", "hex", "base64", NULL};
enum { ENC_RAW, ENC_HEX, ENC_BASE64 };

static const char hex_digits[] = "0123456789abcdef";
static const char b64_std[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char b64_url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static const char *const alg_ossl[] = {"MD5", "SHA1", "SHA256", "SHA512"};

/* The algorithms, fetched once per Lua state when the module is loaded: a userdata every
 * crypto function holds as its upvalue, freed by its __gc when the state closes (before the
 * module's code is unloaded). */
#define ALGS_MT "paykit.crypto_algorithms"

typedef struct {
    EVP_MD *md[4];
    EVP_MAC *hmac;
} algs_t;

#define ALGS(L) ((algs_t *)lua_touserdata((L), lua_upvalueindex(1)))

static int algs_gc(lua_State *L)
{
    algs_t *a = (algs_t *)lua_touserdata(L, 1);
    int i;
    for (i = 0; i < 4; i++) {
        EVP_MD_free(a->md[i]);
        a->md[i] = NULL;
    }
    EVP_MAC_free(a->hmac);
    a->hmac = NULL;
    return 0;
}

/* Pushes the fetched algorithms' userdata. */
static void push_algorithms(lua_State *L)
{
    int i;
    algs_t *a = (algs_t *)lua_newuserdata(L, sizeof *a);
    memset(a, 0, sizeof *a);
    if (luaL_newmetatable(L, ALGS_MT)) {
        lua_pushcfunction(L, algs_gc);
        lua_setfield(L, -2, "__gc");
        lua_pushliteral(L, ALGS_MT);
        lua_setfield(L, -2, "__metatable");
    }
    lua_setmetatable(L, -2);
    for (i = 0; i < 4; i++)
        a->md[i] = EVP_MD_fetch(NULL, alg_ossl[i], NULL);
    a->hmac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    ERR_clear_error(); /* an algorithm a provider lacks is reported when it is used */
}

/* The digest for alg: the fetched one, or OpenSSL's implicit lookup when the fetch failed
 * (e.g. md5 outside a FIPS provider's list: then the call reports OpenSSL's error). */
static const EVP_MD *alg_md(const algs_t *a, int alg)
{
    if (a != NULL && a->md[alg] != NULL)
        return a->md[alg];
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
    if (EVP_Digest(data, len, md, &mdlen, alg_md(ALGS(L), alg), NULL) != 1)
        return push_openssl_error(L, "digest");
    push_encoded(L, md, mdlen, enc);
    return 1;
}

/* An HMAC context for alg and key (EVP_MAC with the fetched HMAC and digest), or NULL with
 * OpenSSL's error queued. */
static EVP_MAC_CTX *hmac_new(const algs_t *a, int alg, const char *key, size_t keylen)
{
    OSSL_PARAM params[2];
    EVP_MAC_CTX *ctx;
    if (a == NULL || a->hmac == NULL)
        return NULL;
    ctx = EVP_MAC_CTX_new(a->hmac); /* holds its own reference to the algorithm */
    if (ctx == NULL)
        return NULL;
    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)alg_ossl[alg], 0);
    params[1] = OSSL_PARAM_construct_end();
    /* an empty key is a valid HMAC key: OpenSSL wants a non-NULL pointer for it */
    if (EVP_MAC_init(ctx, (const unsigned char *)(keylen ? key : ""), keylen, params) != 1) {
        EVP_MAC_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

/* The MAC of data with ctx (already keyed) into md; 1 or 0 (OpenSSL's error queued). */
static int hmac_run(EVP_MAC_CTX *ctx, const char *data, size_t len, unsigned char *md, size_t *mdlen)
{
    return EVP_MAC_update(ctx, (const unsigned char *)data, len) == 1
        && EVP_MAC_final(ctx, md, mdlen, EVP_MAX_MD_SIZE) == 1;
}

/* hmac(alg, key, data[, enc]) */
static int l_hmac(lua_State *L)
{
    int alg = luaL_checkoption(L, 1, NULL, alg_names);
    size_t keylen, len, mdlen = 0;
    const char *key = luaL_checklstring(L, 2, &keylen);
    const char *data = luaL_checklstring(L, 3, &len);
    int enc = luaL_checkoption(L, 4, "raw", enc_names);
    unsigned char md[EVP_MAX_MD_SIZE];
    int ok;
    EVP_MAC_CTX *ctx;
    luaL_argcheck(L, keylen <= INT_MAX, 2, "key too long");
    ctx = hmac_new(ALGS(L), alg, key, keylen);
    if (ctx == NULL)
        return push_openssl_error(L, "hmac");
    ok = hmac_run(ctx, data, len, md, &mdlen);
    EVP_MAC_CTX_free(ctx);
    if (!ok)
        return push_openssl_error(L, "hmac");
    push_encoded(L, md, mdlen, enc);
    OPENSSL_cleanse(md, sizeof md);
    return 1;
}

/* ---- a prepared HMAC key: core.hmac_key(alg, key) -> object with :mac(data[, enc]) ---- */

#define HMAC_KEY_MT "paykit.hmac_key"

typedef struct {
    EVP_MAC_CTX *ctx; /* keyed once; re-initialised (same key) before each MAC */
    int alg;
} hmac_key_t;

/* hmac_key(alg, key): the key is copied into OpenSSL's context and nowhere else */
static int l_hmac_key(lua_State *L)
{
    int alg = luaL_checkoption(L, 1, NULL, alg_names);
    size_t keylen;
    const char *key = luaL_checklstring(L, 2, &keylen);
    hmac_key_t *k;
    luaL_argcheck(L, keylen <= INT_MAX, 2, "key too long");
    k = (hmac_key_t *)lua_newuserdata(L, sizeof *k);
    k->ctx = NULL;
    k->alg = alg;
    luaL_getmetatable(L, HMAC_KEY_MT);
    lua_setmetatable(L, -2);
    k->ctx = hmac_new(ALGS(L), alg, key, keylen);
    if (k->ctx == NULL)
        return push_openssl_error(L, "hmac_key");
    return 1;
}

/* key:mac(data[, enc]): the same bytes as core.hmac(alg, key, data, enc) */
static int l_hmac_key_mac(lua_State *L)
{
    hmac_key_t *k = (hmac_key_t *)luaL_checkudata(L, 1, HMAC_KEY_MT);
    size_t len, mdlen = 0;
    const char *data = luaL_checklstring(L, 2, &len);
    int enc = luaL_checkoption(L, 3, "raw", enc_names);
    unsigned char md[EVP_MAX_MD_SIZE];
    if (k->ctx == NULL)
        return luaL_error(L, "hmac_key: this key was not made");
    /* NULL key: OpenSSL restarts the MAC with the key it holds */
    if (EVP_MAC_init(k->ctx, NULL, 0, NULL) != 1 || !hmac_run(k->ctx, data, len, md, &mdlen))
        return push_openssl_error(L, "hmac");
    push_encoded(L, md, mdlen, enc);
    OPENSSL_cleanse(md, sizeof md);
    return 1;
}

static int l_hmac_key_gc(lua_State *L)
{
    hmac_key_t *k = (hmac_key_t *)luaL_checkudata(L, 1, HMAC_KEY_MT);
    if (k->ctx != NULL) {
        EVP_MAC_CTX_free(k->ctx); /* OpenSSL cleanses the key it held */
        k->ctx = NULL;
    }
    return 0;
}

/* never the key: "paykit.hmac_key (sha1)" */
static int l_hmac_key_tostring(lua_State *L)
{
    hmac_key_t *k = (hmac_key_t *)luaL_checkudata(L, 1, HMAC_KEY_MT);
    lua_pushfstring(L, "paykit.hmac_key (%s)", alg_names[k->alg]);
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

/* Random bytes come from one buffer per process, filled with RAND_bytes RAND_CHUNK bytes at a
 * time (one RAND_bytes call costs about as much for 16 bytes as for 4 KB) and taken under a
 * mutex; bytes handed out are wiped from it at once. Requests larger than RAND_DIRECT go to
 * RAND_bytes directly.
 *
 * A forked child never serves its parent's bytes. The buffer lives in its own pages marked
 * MADV_WIPEONFORK: the kernel hands a child those pages zeroed, whatever made the child (the C
 * library's fork or a raw system call), so its `filled` mark reads 0 and the child draws
 * afresh. Where the kernel does not wipe (before Linux 4.14, or mmap/madvise refused), the
 * buffer is kept in static memory and remembers the pid it was filled in, checked on every
 * draw (a getpid system call each time). In both cases a fork handler also bumps
 * fork_generation in the child (and takes the mutex around fork, so a child never inherits it
 * held). */
#define RAND_CHUNK 4096
#define RAND_DIRECT 1024

typedef struct {
    unsigned long filled;  /* RAND_FILLED once bytes were drawn in this process; 0 in a wiped child */
    unsigned long gen;     /* fork_generation when it was filled */
    pid_t pid;             /* the process that filled it (checked when the pages are not wiped) */
    size_t pos;            /* next unserved byte; RAND_CHUNK: empty */
    unsigned char bytes[RAND_CHUNK];
} rand_buf_t;

#define RAND_FILLED 0x5eedf11edUL

static pthread_mutex_t rand_mutex = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t rand_once = PTHREAD_ONCE_INIT;
static rand_buf_t rand_static;       /* the buffer when the kernel cannot wipe pages on fork */
static rand_buf_t *rand_buf;         /* the buffer in use */
static int rand_wiped;               /* 1: rand_buf is in MADV_WIPEONFORK pages */
static volatile unsigned long fork_generation;

static void fork_prepare(void) { pthread_mutex_lock(&rand_mutex); }
static void fork_parent(void) { pthread_mutex_unlock(&rand_mutex); }
static void fork_child(void)
{
    fork_generation++;
    pthread_mutex_unlock(&rand_mutex);
}

static void rand_setup(void)
{
    rand_buf = &rand_static;
#if defined(MADV_WIPEONFORK)
    /* PAYKIT_RANDOM_PID_CHECK=1 keeps the pid-checked static buffer even where the kernel
     * could wipe (for spec/core_random_fork_spec.lua, which forks under both) */
    if (getenv("PAYKIT_RANDOM_PID_CHECK") == NULL || strcmp(getenv("PAYKIT_RANDOM_PID_CHECK"), "1") != 0) {
        void *p = mmap(NULL, sizeof(rand_buf_t), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p != MAP_FAILED) {
            if (madvise(p, sizeof(rand_buf_t), MADV_WIPEONFORK) == 0) {
                rand_buf = (rand_buf_t *)p; /* kept for the life of the process */
                rand_wiped = 1;
            } else {
                munmap(p, sizeof(rand_buf_t));
            }
        }
    }
#endif
    rand_buf->pos = RAND_CHUNK;
    pthread_atfork(fork_prepare, fork_parent, fork_child);
}

static void rand_discard(rand_buf_t *r)
{
    OPENSSL_cleanse(r->bytes, sizeof r->bytes);
    r->pos = RAND_CHUNK;
}

/* n fresh random bytes into out: 1, or 0 with OpenSSL's error queued. */
static int rand_take(unsigned char *out, size_t n)
{
    rand_buf_t *r;
    int ok = 1;
    if (n == 0)
        return 1;
    if (n > RAND_DIRECT)
        return RAND_bytes(out, (int)n) == 1;
    pthread_once(&rand_once, rand_setup);
    pthread_mutex_lock(&rand_mutex);
    r = rand_buf;
    if (r->filled != RAND_FILLED || r->gen != fork_generation || (!rand_wiped && r->pid != getpid())) {
        rand_discard(r); /* another process's bytes, or none yet */
        r->filled = RAND_FILLED;
        r->gen = fork_generation;
        r->pid = rand_wiped ? 0 : getpid();
    }
    if (RAND_CHUNK - r->pos < n) {
        if (RAND_bytes(r->bytes, RAND_CHUNK) == 1) {
            r->pos = 0;
        } else {
            rand_discard(r);
            ok = 0;
        }
    }
    if (ok) {
        memcpy(out, r->bytes + r->pos, n);
        OPENSSL_cleanse(r->bytes + r->pos, n);
        r->pos += n;
    }
    pthread_mutex_unlock(&rand_mutex);
    return ok;
}

/* random_wiped_on_fork(): whether the random buffer is in pages the kernel wipes in a forked
 * child (false: the pid check serves instead). For the specs. */
static int l_random_wiped_on_fork(lua_State *L)
{
    pthread_once(&rand_once, rand_setup);
    lua_pushboolean(L, rand_wiped);
    return 1;
}

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
        if (!rand_take((unsigned char *)p, chunk))
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
    size_t n = check_count(L, 1), i;
    unsigned char tmp[256];
    char small[2 * 64];
    luaL_Buffer b;
    if (n <= 64) { /* ids and nonces: one string made, no buffer */
        if (!rand_take(tmp, n))
            return push_openssl_error(L, "RAND_bytes");
        for (i = 0; i < n; i++) {
            small[2 * i] = hex_digits[tmp[i] >> 4];
            small[2 * i + 1] = hex_digits[tmp[i] & 15];
        }
        OPENSSL_cleanse(tmp, n);
        lua_pushlstring(L, small, 2 * n);
        OPENSSL_cleanse(small, 2 * n);
        return 1;
    }
    luaL_buffinit(L, &b);
    while (n > 0) {
        size_t chunk = sizeof tmp;
        if (chunk > n) chunk = n;
        if (!rand_take(tmp, chunk)) {
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

/* An RFC 4122 version 4 uuid, lowercase, 8-4-4-4-12, into out (see paykit.h). */
int paykit_uuid4(char out[36])
{
    unsigned char r[16];
    size_t i, o = 0;
    if (!rand_take(r, sizeof r))
        return 0;
    r[6] = (unsigned char)((r[6] & 0x0f) | 0x40); /* version 4 */
    r[8] = (unsigned char)((r[8] & 0x3f) | 0x80); /* variant 10xx */
    for (i = 0; i < sizeof r; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[o++] = '-';
        out[o++] = hex_digits[r[i] >> 4];
        out[o++] = hex_digits[r[i] & 15];
    }
    return 1;
}

/* uuid4(): RFC 4122 version 4, lowercase, 8-4-4-4-12 */
static int l_uuid4(lua_State *L)
{
    char out[36];
    if (!paykit_uuid4(out))
        return push_openssl_error(L, "RAND_bytes");
    lua_pushlstring(L, out, sizeof out);
    return 1;
}

/* ---- request signers: what a provider signs on every call, in one C call ----
 *
 * oauth_signer: Zippy's OAuth 1.0a Authorization header (RFC 5849, HMAC-SHA1) for a URL
 * without a query. Made once per instance from the HMAC key (pct(consumer_secret) &
 * pct(token_secret)) and the fixed text of the base string and of the header (see
 * paykit.providers.zippy_oauth.signer); the key is kept only as the SHA-1 states after its
 * ipad and opad blocks. Per call: the nonce (16 bytes of the buffered random, as hex, unless
 * given), the timestamp (time(), unless given), the base string fed to SHA-1 in pieces (never
 * made as a string), the MAC, its base64 and the header text: one Lua string made.
 *
 * mocopay_signer: MoCoPay's request signature base64(DIGEST(secret .. path .. "?" .. sorted
 * name=value pairs)) from the digest state after the secret, for a list of string pairs;
 * anything else answers nil (the caller signs the general way). */

/* 1 for the RFC 3986 unreserved bytes A-Z a-z 0-9 - . _ ~ */
static const unsigned char sig_plain[256] = {
    ['-'] = 1, ['.'] = 1, ['_'] = 1, ['~'] = 1,
    ['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1, ['5'] = 1, ['6'] = 1, ['7'] = 1, ['8'] = 1, ['9'] = 1,
    ['A'] = 1, ['B'] = 1, ['C'] = 1, ['D'] = 1, ['E'] = 1, ['F'] = 1, ['G'] = 1, ['H'] = 1, ['I'] = 1,
    ['J'] = 1, ['K'] = 1, ['L'] = 1, ['M'] = 1, ['N'] = 1, ['O'] = 1, ['P'] = 1, ['Q'] = 1, ['R'] = 1,
    ['S'] = 1, ['T'] = 1, ['U'] = 1, ['V'] = 1, ['W'] = 1, ['X'] = 1, ['Y'] = 1, ['Z'] = 1,
    ['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1, ['e'] = 1, ['f'] = 1, ['g'] = 1, ['h'] = 1, ['i'] = 1,
    ['j'] = 1, ['k'] = 1, ['l'] = 1, ['m'] = 1, ['n'] = 1, ['o'] = 1, ['p'] = 1, ['q'] = 1, ['r'] = 1,
    ['s'] = 1, ['t'] = 1, ['u'] = 1, ['v'] = 1, ['w'] = 1, ['x'] = 1, ['y'] = 1, ['z'] = 1,
};
#define sig_unreserved(c) (sig_plain[(unsigned char)(c)])

static const char sig_hexu[] = "0123456789ABCDEF";

/* Writes s percent-encoded (RFC 3986: unreserved bytes as they are, else %XX) at dst (room
 * for 3 * n bytes); returns the end. */
static char *sig_put_pct(char *dst, const char *s, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (sig_unreserved(c)) {
            *dst++ = (char)c;
        } else {
            *dst++ = '%';
            *dst++ = sig_hexu[c >> 4];
            *dst++ = sig_hexu[c & 15];
        }
    }
    return dst;
}

/* An MD5 or SHA-1 state (alg: 0 md5, 1 sha1: alg_names' indexes). */
typedef struct {
    int alg;
    union {
        MD5_CTX md5;
        SHA_CTX sha1;
    } u;
} sig_digest_t;

static void sig_update(sig_digest_t *d, const void *p, size_t n)
{
    if (n == 0) return;
    if (d->alg == 0) MD5_Update(&d->u.md5, p, n);
    else SHA1_Update(&d->u.sha1, p, n);
}

static unsigned sig_final(sig_digest_t *d, unsigned char *md)
{
    if (d->alg == 0) {
        MD5_Final(md, &d->u.md5);
        return MD5_DIGEST_LENGTH;
    }
    SHA1_Final(md, &d->u.sha1);
    return SHA_DIGEST_LENGTH;
}

/* Bytes fed to a digest through a small block (the digest functions cost per call). */
typedef struct {
    sig_digest_t *d;
    size_t n;
    unsigned char buf[512];
} sig_feed_t;

static void feed_flush(sig_feed_t *f)
{
    sig_update(f->d, f->buf, f->n);
    f->n = 0;
}

static void feed_raw(sig_feed_t *f, const char *s, size_t n)
{
    if (n > sizeof f->buf - f->n) {
        feed_flush(f);
        if (n > sizeof f->buf) {
            sig_update(f->d, s, n);
            return;
        }
    }
    memcpy(f->buf + f->n, s, n);
    f->n += n;
}

/* pct(pct(s)): an unreserved byte as it is, any other as %25XX */
static void feed_pct2(sig_feed_t *f, const char *s, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (sizeof f->buf - f->n < 5) feed_flush(f);
        if (sig_unreserved(c)) {
            f->buf[f->n++] = c;
        } else {
            f->buf[f->n++] = '%';
            f->buf[f->n++] = '2';
            f->buf[f->n++] = '5';
            f->buf[f->n++] = (unsigned char)sig_hexu[c >> 4];
            f->buf[f->n++] = (unsigned char)sig_hexu[c & 15];
        }
    }
}

/* base64 of a digest (at most 20 bytes) into out (at least 29 bytes); returns the length */
static size_t sig_b64(const unsigned char *s, size_t n, char *out)
{
    size_t o = 0;
    while (n >= 3) {
        unsigned long v = ((unsigned long)s[0] << 16) | ((unsigned long)s[1] << 8) | s[2];
        out[o++] = b64_std[(v >> 18) & 63];
        out[o++] = b64_std[(v >> 12) & 63];
        out[o++] = b64_std[(v >> 6) & 63];
        out[o++] = b64_std[v & 63];
        s += 3;
        n -= 3;
    }
    if (n > 0) {
        unsigned long v = (unsigned long)s[0] << 16;
        if (n == 2) v |= (unsigned long)s[1] << 8;
        out[o++] = b64_std[(v >> 18) & 63];
        out[o++] = b64_std[(v >> 12) & 63];
        out[o++] = n == 2 ? b64_std[(v >> 6) & 63] : '=';
        out[o++] = '=';
    }
    return o;
}

#define OAUTH_MT "paykit.oauth_signer"

enum { OA_HNONCE, OA_HTS, OA_HSIG, OA_BNONCE, OA_BTS, OA_BREST, OA_N };

/* The longest method & encoded base URI whose inner SHA-1 state oauth_header keeps. */
#define OA_PRE_KEY 480

typedef struct {
    int ready;
    SHA_CTX inner, outer; /* after the key's ipad / opad block */
    /* the inner state after the last call's METHOD & euri & b_nonce (the part of the base
     * string before the nonce): a call with the same method and URI bytes starts from it, the
     * blocks of that prefix not hashed again (pre_ml 0: none kept) */
    SHA_CTX pre;
    size_t pre_ml, pre_ul;
    char pre_key[OA_PRE_KEY];
    size_t off[OA_N], len[OA_N];
    char text[1]; /* the fixed pieces, one after another */
} oauth_t;

/* oauth_signer(key, h_nonce, h_timestamp, h_signature, b_nonce, b_timestamp, b_rest):
 * the header is h_nonce .. pct(nonce) .. h_timestamp .. pct(timestamp) .. h_signature ..
 * pct(signature) .. '"'; the base string METHOD & euri & b_nonce .. pct(pct(nonce)) ..
 * b_timestamp .. pct(pct(timestamp)) .. b_rest. */
static int l_oauth_signer(lua_State *L)
{
    size_t klen, lens[OA_N], total = 0, pos = 0, i;
    const char *key = luaL_checklstring(L, 1, &klen);
    const char *parts[OA_N];
    unsigned char k[64], pad[64];
    oauth_t *o;
    for (i = 0; i < OA_N; i++) {
        parts[i] = luaL_checklstring(L, (int)i + 2, &lens[i]);
        total += lens[i];
    }
    o = (oauth_t *)lua_newuserdata(L, offsetof(oauth_t, text) + total + 1);
    memset(o, 0, offsetof(oauth_t, text));
    luaL_getmetatable(L, OAUTH_MT);
    lua_setmetatable(L, -2);
    memset(k, 0, sizeof k);
    if (klen > sizeof k) SHA1((const unsigned char *)key, klen, k); /* RFC 2104: a long key is hashed */
    else memcpy(k, key, klen);
    for (i = 0; i < sizeof pad; i++) pad[i] = (unsigned char)(k[i] ^ 0x36);
    SHA1_Init(&o->inner);
    SHA1_Update(&o->inner, pad, sizeof pad);
    for (i = 0; i < sizeof pad; i++) pad[i] = (unsigned char)(k[i] ^ 0x5c);
    SHA1_Init(&o->outer);
    SHA1_Update(&o->outer, pad, sizeof pad);
    OPENSSL_cleanse(k, sizeof k);
    OPENSSL_cleanse(pad, sizeof pad);
    for (i = 0; i < OA_N; i++) {
        o->off[i] = pos;
        o->len[i] = lens[i];
        memcpy(o->text + pos, parts[i], lens[i]);
        pos += lens[i];
    }
    o->ready = 1;
    return 1;
}

#define OA_PIECE(o, i) ((o)->text + (o)->off[i]), ((o)->len[i])

/* signer:header(method, encoded_base_uri[, nonce[, timestamp]]) -> the header value */
static int l_oauth_header(lua_State *L)
{
    oauth_t *o = (oauth_t *)luaL_checkudata(L, 1, OAUTH_MT);
    size_t ml, ul, nl, tl, i, sl;
    const char *m = luaL_checklstring(L, 2, &ml);
    const char *u = luaL_checklstring(L, 3, &ul);
    const char *nonce, *ts;
    char nbuf[32], tbuf[32], sig[32];
    unsigned char r[16], md[SHA_DIGEST_LENGTH];
    sig_digest_t d;
    sig_feed_t f;
    if (!o->ready)
        return luaL_error(L, "oauth_signer: this signer was closed");
    if (lua_isnoneornil(L, 4)) {
        if (!rand_take(r, sizeof r))
            return push_openssl_error(L, "RAND_bytes");
        for (i = 0; i < sizeof r; i++) {
            nbuf[2 * i] = hex_digits[r[i] >> 4];
            nbuf[2 * i + 1] = hex_digits[r[i] & 15];
        }
        nonce = nbuf;
        nl = sizeof nbuf;
    } else {
        nonce = luaL_checklstring(L, 4, &nl);
    }
    if (lua_isnoneornil(L, 5)) {
        long long t = (long long)time(NULL);
        char digits[24];
        size_t k = 0;
        int neg = t < 0;
        unsigned long long a = neg ? 0ULL - (unsigned long long)t : (unsigned long long)t;
        do { digits[k++] = (char)('0' + a % 10); a /= 10; } while (a > 0);
        tl = 0;
        if (neg) tbuf[tl++] = '-';
        while (k > 0) tbuf[tl++] = digits[--k];
        ts = tbuf;
    } else {
        ts = luaL_checklstring(L, 5, &tl);
    }
    d.alg = 1;
    f.d = &d;
    f.n = 0;
    if (o->pre_ml && o->pre_ml == ml && o->pre_ul == ul && memcmp(o->pre_key, m, ml) == 0
        && memcmp(o->pre_key + ml, u, ul) == 0) {
        d.u.sha1 = o->pre; /* the same prefix as the last call's: its state */
    } else {
        d.u.sha1 = o->inner;
        for (i = 0; i < ml; i++) { /* string.upper in the C locale: a-z only */
            unsigned char c = (unsigned char)m[i];
            if (f.n == sizeof f.buf) feed_flush(&f);
            f.buf[f.n++] = (unsigned char)(c >= 'a' && c <= 'z' ? c - 32 : c);
        }
        feed_raw(&f, "&", 1);
        feed_raw(&f, u, ul);
        feed_raw(&f, "&", 1);
        feed_raw(&f, OA_PIECE(o, OA_BNONCE));
        o->pre_ml = 0;
        if (ml > 0 && ml + ul <= sizeof o->pre_key) {
            feed_flush(&f);
            o->pre = d.u.sha1;
            memcpy(o->pre_key, m, ml);
            memcpy(o->pre_key + ml, u, ul);
            o->pre_ml = ml;
            o->pre_ul = ul;
        }
    }
    if (nonce == nbuf) feed_raw(&f, nonce, nl); /* hex digits: unreserved */
    else feed_pct2(&f, nonce, nl);
    feed_raw(&f, OA_PIECE(o, OA_BTS));
    if (ts == tbuf && tbuf[0] != '-') feed_raw(&f, ts, tl); /* digits: unreserved */
    else feed_pct2(&f, ts, tl);
    feed_raw(&f, OA_PIECE(o, OA_BREST));
    feed_flush(&f);
    SHA1_Final(md, &d.u.sha1);
    d.u.sha1 = o->outer;
    SHA1_Update(&d.u.sha1, md, sizeof md);
    SHA1_Final(md, &d.u.sha1);
    OPENSSL_cleanse(&d, sizeof d);
    sl = sig_b64(md, sizeof md, sig);
    {
        /* the header: the fixed pieces and three encoded values (at most 3 bytes each) */
        size_t need = o->len[OA_HNONCE] + o->len[OA_HTS] + o->len[OA_HSIG] + 3 * (nl + tl + sl) + 1;
        char small[1024], *out = need <= sizeof small ? small : (char *)lua_newuserdata(L, need), *p = out;
        memcpy(p, OA_PIECE(o, OA_HNONCE));
        p += o->len[OA_HNONCE];
        if (nonce == nbuf) { memcpy(p, nonce, nl); p += nl; }
        else p = sig_put_pct(p, nonce, nl);
        memcpy(p, OA_PIECE(o, OA_HTS));
        p += o->len[OA_HTS];
        if (ts == tbuf && tbuf[0] != '-') { memcpy(p, ts, tl); p += tl; }
        else p = sig_put_pct(p, ts, tl);
        memcpy(p, OA_PIECE(o, OA_HSIG));
        p = sig_put_pct(p + o->len[OA_HSIG], sig, sl);
        *p++ = '"';
        lua_pushlstring(L, out, (size_t)(p - out)); /* nonce, time, signature: all sent in the clear */
    }
    return 1;
}

static int l_oauth_gc(lua_State *L)
{
    oauth_t *o = (oauth_t *)luaL_checkudata(L, 1, OAUTH_MT);
    OPENSSL_cleanse(&o->inner, sizeof o->inner);
    OPENSSL_cleanse(&o->outer, sizeof o->outer);
    OPENSSL_cleanse(&o->pre, sizeof o->pre);
    o->pre_ml = 0;
    o->ready = 0;
    return 0;
}

/* never the key: "paykit.oauth_signer" */
static int l_oauth_tostring(lua_State *L)
{
    luaL_checkudata(L, 1, OAUTH_MT);
    lua_pushliteral(L, OAUTH_MT);
    return 1;
}

#define MOCOPAY_MT "paykit.mocopay_signer"
#define MOCOPAY_MAX_PAIRS 32

typedef struct {
    int ready;
    sig_digest_t base; /* after the secret */
} mocopay_signer_t;

/* mocopay_signer(alg, secret): alg "md5" or "sha1" */
static int l_mocopay_signer(lua_State *L)
{
    int alg = luaL_checkoption(L, 1, NULL, alg_names);
    size_t len;
    const char *secret = luaL_checklstring(L, 2, &len);
    mocopay_signer_t *s;
    luaL_argcheck(L, alg == 0 || alg == 1, 1, "md5 or sha1 expected");
    s = (mocopay_signer_t *)lua_newuserdata(L, sizeof *s);
    memset(s, 0, sizeof *s);
    luaL_getmetatable(L, MOCOPAY_MT);
    lua_setmetatable(L, -2);
    s->base.alg = alg;
    if (alg == 0) MD5_Init(&s->base.u.md5);
    else SHA1_Init(&s->base.u.sha1);
    sig_update(&s->base, secret, len);
    s->ready = 1;
    return 1;
}

typedef struct {
    const char *k, *v;
    size_t kl, vl;
} sig_pair_t;

/* byte order, the shorter first on a common prefix */
static int bytes_cmp(const char *a, size_t al, const char *b, size_t bl)
{
    int c = memcmp(a, b, al < bl ? al : bl);
    if (c != 0) return c;
    return al < bl ? -1 : al > bl ? 1 : 0;
}

static int pair_before(const sig_pair_t *a, const sig_pair_t *b)
{
    int c = bytes_cmp(a->k, a->kl, b->k, b->kl);
    if (c != 0) return c < 0;
    return bytes_cmp(a->v, a->vl, b->v, b->vl) < 0;
}

/* signer:sign(path, list[, prefix]) -> prefix .. base64 signature, or nil when list is not a
 * list of {name, value} string pairs (at most MOCOPAY_MAX_PAIRS) */
static int l_mocopay_sign(lua_State *L)
{
    mocopay_signer_t *s = (mocopay_signer_t *)luaL_checkudata(L, 1, MOCOPAY_MT);
    size_t pl, xl = 0, n, i, m = 0, sl;
    const char *path = luaL_checklstring(L, 2, &pl);
    const char *prefix = luaL_optlstring(L, 4, "", &xl);
    sig_pair_t pairs[MOCOPAY_MAX_PAIRS];
    unsigned char md[SHA_DIGEST_LENGTH];
    char sig[32];
    sig_digest_t d;
    sig_feed_t f;
    luaL_Buffer b;
    luaL_checktype(L, 3, LUA_TTABLE);
    if (!s->ready)
        return luaL_error(L, "mocopay_signer: this signer was closed");
    n = lua_rawlen(L, 3);
    if (n > MOCOPAY_MAX_PAIRS) return 0;
    if (n == 0) {
        lua_pushnil(L);
        if (lua_next(L, 3) != 0) return 0; /* a map: signed the general way */
    }
    for (i = 1; i <= n; i++) {
        sig_pair_t p;
        size_t j;
        lua_rawgeti(L, 3, (int)i);
        if (lua_type(L, -1) != LUA_TTABLE) return 0;
        lua_rawgeti(L, -1, 1);
        lua_rawgeti(L, -2, 2);
        if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING) return 0;
        /* the strings stay alive: the pair holds them, the list holds the pair */
        p.k = lua_tolstring(L, -2, &p.kl);
        p.v = lua_tolstring(L, -1, &p.vl);
        lua_pop(L, 3);
        if (p.kl == 9 && memcmp(p.k, "signature", 9) == 0) continue;
        for (j = m; j > 0 && pair_before(&p, &pairs[j - 1]); j--) pairs[j] = pairs[j - 1];
        pairs[j] = p;
        m++;
    }
    d = s->base;
    f.d = &d;
    f.n = 0;
    feed_raw(&f, path, pl);
    feed_raw(&f, "?", 1);
    for (i = 0; i < m; i++) {
        if (i > 0) feed_raw(&f, "&", 1);
        feed_raw(&f, pairs[i].k, pairs[i].kl);
        feed_raw(&f, "=", 1);
        feed_raw(&f, pairs[i].v, pairs[i].vl);
    }
    feed_flush(&f);
    sl = sig_b64(md, sig_final(&d, md), sig);
    OPENSSL_cleanse(&d, sizeof d); /* the state held the secret; the feed block never did */
    luaL_buffinit(L, &b);
    luaL_addlstring(&b, prefix, xl);
    luaL_addlstring(&b, sig, sl);
    luaL_pushresult(&b);
    return 1;
}

/* signer:verify(path, name, value[, prefix]) -> prefix .. signature of the one pair
 * {name, value}, or nothing when value is not 1..255 bytes without a control byte (the
 * caller's checks then give the error) */
static int l_mocopay_verify(lua_State *L)
{
    mocopay_signer_t *s = (mocopay_signer_t *)luaL_checkudata(L, 1, MOCOPAY_MT);
    size_t pl, nl, vl, xl = 0, i, sl;
    const char *path = luaL_checklstring(L, 2, &pl);
    const char *name = luaL_checklstring(L, 3, &nl);
    const char *value, *prefix = luaL_optlstring(L, 5, "", &xl);
    unsigned char md[SHA_DIGEST_LENGTH];
    char out[256];
    sig_digest_t d;
    if (!s->ready)
        return luaL_error(L, "mocopay_signer: this signer was closed");
    if (lua_type(L, 4) != LUA_TSTRING) return 0;
    value = lua_tolstring(L, 4, &vl);
    if (vl < 1 || vl > 255 || (nl == 9 && memcmp(name, "signature", 9) == 0)) return 0;
    for (i = 0; i < vl; i++) {
        unsigned char c = (unsigned char)value[i];
        if (c < 0x20 || c == 0x7f) return 0; /* iscntrl in the C locale: Lua's %c */
    }
    d = s->base;
    sig_update(&d, path, pl);
    sig_update(&d, "?", 1);
    sig_update(&d, name, nl);
    sig_update(&d, "=", 1);
    sig_update(&d, value, vl);
    sl = sig_b64(md, sig_final(&d, md), out + (xl < sizeof out - 32 ? xl : 0));
    OPENSSL_cleanse(&d, sizeof d);
    if (xl < sizeof out - 32) {
        memcpy(out, prefix, xl);
        lua_pushlstring(L, out, xl + sl);
    } else {
        lua_pushlstring(L, prefix, xl);
        lua_pushlstring(L, out, sl);
        lua_concat(L, 2);
    }
    return 1;
}

static int l_mocopay_gc(lua_State *L)
{
    mocopay_signer_t *s = (mocopay_signer_t *)luaL_checkudata(L, 1, MOCOPAY_MT);
    OPENSSL_cleanse(&s->base, sizeof s->base);
    s->ready = 0;
    return 0;
}

/* never the secret: "paykit.mocopay_signer (md5)" */
static int l_mocopay_tostring(lua_State *L)
{
    mocopay_signer_t *s = (mocopay_signer_t *)luaL_checkudata(L, 1, MOCOPAY_MT);
    lua_pushfstring(L, MOCOPAY_MT " (%s)", alg_names[s->base.alg]);
    return 1;
}

static const luaL_Reg oauth_methods[] = {
    {"header", l_oauth_header},
    {NULL, NULL},
};

static const luaL_Reg mocopay_methods[] = {
    {"sign", l_mocopay_sign},
    {"verify", l_mocopay_verify},
    {NULL, NULL},
};

/* A metatable for a signer's userdata: methods, __gc (and __close on 5.4), __tostring. */
static void signer_metatable(lua_State *L, const char *name, const luaL_Reg *methods,
                             lua_CFunction gc, lua_CFunction tostr)
{
    if (luaL_newmetatable(L, name)) {
        lua_newtable(L);
        luaL_setfuncs(L, methods, 0);
        lua_pushcfunction(L, gc);
        lua_setfield(L, -2, "close");
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, gc);
        lua_setfield(L, -2, "__gc");
#if LUA_VERSION_NUM >= 504
        lua_pushcfunction(L, gc);
        lua_setfield(L, -2, "__close");
#endif
        lua_pushcfunction(L, tostr);
        lua_setfield(L, -2, "__tostring");
        lua_pushstring(L, name);
        lua_setfield(L, -2, "__metatable");
    }
    lua_pop(L, 1);
}

static const luaL_Reg crypto_funcs[] = {
    {"digest", l_digest},
    {"hmac", l_hmac},
    {"hmac_key", l_hmac_key},
    {"hex_encode", l_hex_encode},
    {"hex_decode", l_hex_decode},
    {"b64_encode", l_b64_encode},
    {"b64_decode", l_b64_decode},
    {"consteq", l_consteq},
    {"random_bytes", l_random_bytes},
    {"random_hex", l_random_hex},
    {"uuid4", l_uuid4},
    {"oauth_signer", l_oauth_signer},
    {"mocopay_signer", l_mocopay_signer},
    {"_random_wiped_on_fork", l_random_wiped_on_fork},
    {NULL, NULL},
};

static const luaL_Reg hmac_key_methods[] = {
    {"mac", l_hmac_key_mac},
    {NULL, NULL},
};

void paykit_crypto_register(lua_State *L)
{
    pthread_once(&rand_once, rand_setup);
    if (luaL_newmetatable(L, HMAC_KEY_MT)) {
        lua_newtable(L);
        luaL_setfuncs(L, hmac_key_methods, 0);
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, l_hmac_key_gc);
        lua_setfield(L, -2, "__gc");
        lua_pushcfunction(L, l_hmac_key_tostring);
        lua_setfield(L, -2, "__tostring");
        lua_pushliteral(L, "paykit.hmac_key");
        lua_setfield(L, -2, "__metatable");
    }
    lua_pop(L, 1);
    signer_metatable(L, OAUTH_MT, oauth_methods, l_oauth_gc, l_oauth_tostring);
    signer_metatable(L, MOCOPAY_MT, mocopay_methods, l_mocopay_gc, l_mocopay_tostring);
    push_algorithms(L);
    luaL_setfuncs(L, crypto_funcs, 1); /* each holds the algorithms as its upvalue */
}
