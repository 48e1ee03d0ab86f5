/* libFuzzer entry for paykit's C parsers, driven through their Lua bindings.
 *
 * One binary per target (make fuzz): this file is compiled with -DTARGET_LUA="<path>.lua" and
 * -DREGISTER=<paykit_*_register>, and linked with the csrc part under test, instrumented
 * (-fsanitize=fuzzer,address,undefined), and with liblua5.4. The Lua file returns a function
 * check(core, data) that runs the part's functions on the input and raises when an invariant
 * (a round trip, split-point independence, ...) does not hold: that raise, an unexpected raise
 * from a binding, or any sanitizer report, is a finding (abort, so libFuzzer keeps the input).
 *
 * The bindings are the real code paths that paykit uses, so the target fuzzes the C parsers and
 * the binding glue (stack handling, buffer sizes) together. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "../csrc/paykit.h"

void REGISTER(lua_State *L);

static lua_State *state;

/* The state, once per process: the standard libraries, a table with the part's functions and
 * the target's check function in the registry. */
static lua_State *setup(void)
{
    lua_State *L = luaL_newstate();
    if (L == NULL) abort();
    luaL_openlibs(L);
    if (luaL_loadfile(L, TARGET_LUA) != LUA_OK) {
        fprintf(stderr, "fuzz: cannot load %s: %s\n", TARGET_LUA, lua_tostring(L, -1));
        abort();
    }
    if (lua_pcall(L, 0, 1, 0) != LUA_OK || !lua_isfunction(L, -1)) {
        fprintf(stderr, "fuzz: %s must return a check function: %s\n", TARGET_LUA, lua_tostring(L, -1));
        abort();
    }
    lua_setfield(L, LUA_REGISTRYINDEX, "paykit.fuzz.check");
    lua_newtable(L);
    REGISTER(L);
    lua_setfield(L, LUA_REGISTRYINDEX, "paykit.fuzz.core");
    return L;
}

static int traceback(lua_State *L)
{
    luaL_traceback(L, L, lua_tostring(L, 1), 1);
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    lua_State *L = state ? state : (state = setup());
    lua_settop(L, 0);
    lua_pushcfunction(L, traceback);
    lua_getfield(L, LUA_REGISTRYINDEX, "paykit.fuzz.check");
    lua_getfield(L, LUA_REGISTRYINDEX, "paykit.fuzz.core");
    lua_pushlstring(L, (const char *)data, size);
    if (lua_pcall(L, 2, 0, 1) != LUA_OK) {
        fprintf(stderr, "fuzz: invariant broken or unexpected error:\n%s\n", lua_tostring(L, -1));
        abort();
    }
    lua_settop(L, 0);
    /* Free this run's garbage now: libFuzzer re-checks for leaks (a costly LeakSanitizer pass)
     * after any run that leaves more mallocs than frees. */
    lua_gc(L, LUA_GCCOLLECT, 0);
    return 0;
}
