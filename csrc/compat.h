/* Lua 5.1 / LuaJIT 2.1 versus Lua 5.4: every difference paykit's C core meets, in one place. */
#ifndef PAYKIT_COMPAT_H
#define PAYKIT_COMPAT_H

#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>

#if LUA_VERSION_NUM < 502
/* LuaJIT 2.1 already has luaL_setfuncs, luaL_testudata, luaL_setmetatable. */
#  ifndef luaL_newlibtable
#    define luaL_newlibtable(L, l) lua_createtable((L), 0, sizeof(l) / sizeof((l)[0]) - 1)
#  endif
#  ifndef luaL_newlib
#    define luaL_newlib(L, l) (luaL_newlibtable((L), (l)), luaL_setfuncs((L), (l), 0))
#  endif
#  define lua_rawlen(L, i) lua_objlen((L), (i))
#endif

/* Largest integer both runtimes represent exactly (LuaJIT numbers are doubles). */
#define PAYKIT_MAX_SAFE_INTEGER 9007199254740991LL

/* paykit_tosafeint: argument `arg` as a whole number of magnitude <= PAYKIT_MAX_SAFE_INTEGER
 * (a 5.4 integer or an integral float); returns 0 when it is not a number or not one of those.
 * paykit_pushsafeint: pushes such a value (an integer on 5.4, an exact double on LuaJIT). */
static inline int paykit_tosafeint(lua_State *L, int arg, long long *out)
{
    lua_Number n;
    if (lua_type(L, arg) != LUA_TNUMBER) return 0;
#if LUA_VERSION_NUM >= 503
    if (lua_isinteger(L, arg)) {
        lua_Integer i = lua_tointeger(L, arg);
        if (i > PAYKIT_MAX_SAFE_INTEGER || i < -PAYKIT_MAX_SAFE_INTEGER) return 0;
        *out = (long long)i;
        return 1;
    }
#endif
    n = lua_tonumber(L, arg);
    if (!(n >= -(lua_Number)PAYKIT_MAX_SAFE_INTEGER && n <= (lua_Number)PAYKIT_MAX_SAFE_INTEGER)) return 0;
    if ((lua_Number)(long long)n != n) return 0;
    *out = (long long)n;
    return 1;
}

#if LUA_VERSION_NUM >= 503
#  define paykit_pushsafeint(L, v) lua_pushinteger((L), (lua_Integer)(v))
#else
#  define paykit_pushsafeint(L, v) lua_pushnumber((L), (lua_Number)(v))
#endif

#endif
