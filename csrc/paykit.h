/* The parts of paykit.core: each registers its functions into the module table on top of the stack. */
#ifndef PAYKIT_H
#define PAYKIT_H

#include <stdarg.h>

#include "compat.h"

#define PAYKIT_VERSION "0.1.0"

void paykit_crypto_register(lua_State *L);
void paykit_codec_register(lua_State *L);
void paykit_http_register(lua_State *L);
void paykit_httpparse_register(lua_State *L);

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

#endif
