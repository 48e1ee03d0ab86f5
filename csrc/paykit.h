/* The parts of paykit.core: each registers its functions into the module table on top of the stack. */
#ifndef PAYKIT_H
#define PAYKIT_H

#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "compat.h"

#define PAYKIT_VERSION "0.1.0"

void paykit_crypto_register(lua_State *L);
void paykit_codec_register(lua_State *L);
void paykit_http_register(lua_State *L);
void paykit_httpparse_register(lua_State *L);
void paykit_redis_register(lua_State *L);
void paykit_json_register(lua_State *L);
void paykit_shape_register(lua_State *L);
void paykit_wire_register(lua_State *L);
void paykit_clock_register(lua_State *L);

/* The monotonic clock (csrc/clock.c): seconds, and whole milliseconds; never jumps. */
double paykit_monotonic(void);
long long paykit_monotonic_ms(void);
void paykit_wire_loop_register(lua_State *L);

/* An RFC 4122 version 4 uuid (core.uuid4's: lowercase, 8-4-4-4-12, 36 bytes, no NUL) from
 * csrc/crypto.c's buffered random bytes; 0 when the random source failed. */
int paykit_uuid4(char out[36]);
void paykit_memory_register(lua_State *L);

/* ---- small helpers shared by the parts ---- */

/* The value of a hex digit (either case), or -1. */
static inline int paykit_hexval(unsigned char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* The runtime-failure return of every part: nil, message (a lua_pushfstring format), code. */
static inline int paykit_fail(lua_State *L, const char *code, const char *fmt, ...)
{
    va_list ap;
    lua_pushnil(L);
    va_start(ap, fmt);
    lua_pushvfstring(L, fmt, ap);
    va_end(ap);
    lua_pushstring(L, code);
    return 3;
}

/* A growable malloc'd byte buffer, for bytes gathered in C callbacks where no Lua code may run. */
typedef struct {
    char *p;
    size_t len, cap;
} paykit_buf;

/* Appends n bytes; returns 0 (leaving the buffer as it was) when out of memory. */
static inline int paykit_buf_add(paykit_buf *b, const char *s, size_t n)
{
    if (n == 0) return 1;
    if (n > b->cap - b->len) {
        size_t cap = b->cap ? b->cap : 256;
        char *p;
        while (cap - b->len < n) {
            if (cap > SIZE_MAX / 2) return 0;
            cap *= 2;
        }
        p = (char *)realloc(b->p, cap);
        if (p == NULL) return 0;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    return 1;
}

static inline void paykit_buf_free(paykit_buf *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

/* Response headers: t[name] = value, or "earlier, value" when the name repeats. The name is on
 * top of the stack and stays there; t is an absolute index. */
static inline void paykit_addheader(lua_State *L, int t, const char *v, size_t vn)
{
    lua_pushvalue(L, -1);
    lua_pushvalue(L, -1);
    lua_rawget(L, t); /* name, name, earlier value */
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        lua_pushlstring(L, v, vn);
    } else {
        lua_pushliteral(L, ", ");
        lua_pushlstring(L, v, vn);
        lua_concat(L, 3);
    }
    lua_rawset(L, t);
}

#endif
