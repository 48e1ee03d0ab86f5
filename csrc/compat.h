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

#endif
