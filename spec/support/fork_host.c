/* A Lua host for spec/core_random_fork_spec.lua: runs the Lua file argv[1] with two extra
 * globals, so a spec can fork the very process (and module state) that already served random
 * bytes, as nginx forks its workers after the master loaded paykit.core:
 *   fork()     the C library's fork (its fork handlers run); -> 0 in the child, pid in the parent
 *   rawfork()  the fork system call itself, bypassing the C library's fork handlers (-> the same)
 *   wait(pid)  waitpid; -> the child's exit status
 *   exit(n)    _exit(n), without flushing anything inherited from the parent
 * and the script's arguments in arg[1], arg[2], ...
 * Built by the spec with the compiler and the Lua headers of the runtime running it. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>

static int push_pid(lua_State *L, pid_t pid)
{
    if (pid < 0)
        return luaL_error(L, "fork failed");
    lua_pushnumber(L, (lua_Number)pid);
    return 1;
}

static int l_fork(lua_State *L) { return push_pid(L, fork()); }

static int l_rawfork(lua_State *L)
{
#ifdef SYS_fork
    fflush(NULL);
    return push_pid(L, (pid_t)syscall(SYS_fork));
#else
    lua_pushnil(L);
    return 1;
#endif
}

static int l_wait(lua_State *L)
{
    int status = 0;
    pid_t pid = (pid_t)luaL_checknumber(L, 1);
    if (waitpid(pid, &status, 0) != pid)
        return luaL_error(L, "waitpid failed");
    lua_pushnumber(L, WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
    return 1;
}

static int l_exit(lua_State *L) { _exit((int)luaL_optnumber(L, 1, 0)); return 0; }

int main(int argc, char **argv)
{
    lua_State *L;
    if (argc < 2) {
        fprintf(stderr, "usage: fork_host script.lua [args]\n");
        return 2;
    }
    L = luaL_newstate();
    luaL_openlibs(L);
    lua_register(L, "fork", l_fork);
    lua_register(L, "rawfork", l_rawfork);
    lua_register(L, "wait", l_wait);
    lua_register(L, "exit", l_exit);
    {
        int i;
        lua_newtable(L); /* arg[1..]: the script's arguments */
        for (i = 2; i < argc; i++) {
            lua_pushstring(L, argv[i]);
            lua_rawseti(L, -2, i - 1);
        }
        lua_setglobal(L, "arg");
    }
    if (luaL_dofile(L, argv[1]) != 0) {
        fprintf(stderr, "%s\n", lua_tostring(L, -1));
        lua_close(L);
        return 1;
    }
    lua_close(L);
    return 0;
}
