/* luaopen_paykit_core: registers the parts of the C core, nothing else. */
#include "paykit.h"

int luaopen_paykit_core(lua_State *L);

int luaopen_paykit_core(lua_State *L)
{
    lua_newtable(L);
    paykit_clock_register(L);
    paykit_crypto_register(L);
    paykit_codec_register(L);
    paykit_http_register(L);
    paykit_httpparse_register(L);
    paykit_redis_register(L);
    paykit_json_register(L);
    paykit_shape_register(L);
    paykit_wire_register(L);
    paykit_wire_loop_register(L);
    paykit_memory_register(L);
    lua_pushliteral(L, PAYKIT_VERSION);
    lua_setfield(L, -2, "_VERSION");
    return 1;
}
