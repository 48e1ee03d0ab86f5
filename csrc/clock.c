/* clock: time for deadlines and waits, shared by the parts of the C core.
 *
 *   core.monotonic()                -> seconds on a clock that never jumps
 *   core.sleep(seconds)             blocks the calling thread (outside nginx only)
 *
 * paykit_monotonic() and paykit_monotonic_ms() (paykit.h) are the C side of the same clock,
 * for the transports' deadlines and timers. No state. */
#include <errno.h>
#include <time.h>

#include "paykit.h"

double paykit_monotonic(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

long long paykit_monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* core.monotonic() -> seconds on a clock that never jumps (for deadlines and intervals) */
static int l_monotonic(lua_State *L)
{
    lua_pushnumber(L, (lua_Number)paykit_monotonic());
    return 1;
}

/* core.sleep(seconds): blocks the calling thread (outside nginx only; up to one day) */
static int l_sleep(lua_State *L)
{
    lua_Number s = luaL_checknumber(L, 1);
    struct timespec ts;
    luaL_argcheck(L, s == s && s <= 86400, 1, "seconds must be a number up to 86400");
    if (s <= 0) return 0;
    ts.tv_sec = (time_t)s;
    ts.tv_nsec = (long)((s - (lua_Number)ts.tv_sec) * 1e9);
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {}
    return 0;
}

static const luaL_Reg clock_funcs[] = {
    {"monotonic", l_monotonic},
    {"sleep", l_sleep},
    {NULL, NULL},
};

void paykit_clock_register(lua_State *L)
{
    luaL_setfuncs(L, clock_funcs, 0);
}
