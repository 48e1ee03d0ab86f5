/* memory: giving the heap's freed memory back to the system.
 *
 *   core.release_memory()  -> true when the allocator returned memory, false otherwise
 *
 * glibc keeps memory freed in the middle of its heap (only the top is trimmed by itself): after
 * a large paykit.batch the process would keep its peak size. malloc_trim(0) returns the free
 * pages. Elsewhere (another libc; LuaJIT's own allocator on 64-bit) it does nothing. */
#include "paykit.h"

#if defined(__GLIBC__)
#include <malloc.h>
#endif

static int release_memory(lua_State *L)
{
#if defined(__GLIBC__)
    lua_pushboolean(L, malloc_trim(0));
#else
    lua_pushboolean(L, 0);
#endif
    return 1;
}

void paykit_memory_register(lua_State *L)
{
    lua_pushcfunction(L, release_memory);
    lua_setfield(L, -2, "release_memory");
}
