/* Redis through Debian's libhiredis (0.14): a blocking connection for plain Lua, the reply
 * reader alone for nginx (where cosockets move the bytes), the command encoder, the Cluster
 * key slot and the wall clock the payment journal stamps its records with.
 *
 *   core.redis_connect(host, port, connect_ms, timeout_ms) -> conn | nil, message, code
 *   conn:call(arg, ...)          -> reply | nil, message, code
 *   conn:pipeline({{arg, ...}, ...}) -> {reply, ...} | nil, message, code
 *   conn:settimeout(ms), conn:broken(), conn:close()
 *   core.redis_reader()          -> reader;  reader:feed(bytes); reader:get()
 *   core.redis_format(arg, ...)  -> the command in RESP (what conn:call sends)
 *   core.redis_slot(key)         -> 0..16383 (CRC16 of the key or of its {hash tag})
 *   core.realtime_ms()           -> milliseconds since the epoch (wall clock)
 *
 * Replies as Lua values: a bulk or status string is a string, an integer a number, a nil
 * bulk `false` (as Redis's own Lua scripting does), an array a table. An error reply is
 * `nil, message, code` at the top (code: the first word, e.g. "NOSCRIPT", "MOVED",
 * "WRONGPASS") and `{err = message, code = code}` inside an array or a pipeline. A failure of
 * the connection itself is `nil, message, code` with code "timeout", "closed", "connect",
 * "protocol" or "io"; such a connection is broken() and must be dropped.
 * hiredis 0.14 has no TLS: paykit.redis refuses `tls = true` outside nginx. */
#include "paykit.h"

#include <errno.h>
#include <sys/time.h>
#include <time.h>
#include <hiredis/hiredis.h>

#define CONN_MT "paykit.redis.conn"
#define READER_MT "paykit.redis.reader"
#define MAX_ARGS 1024

typedef struct {
    redisContext *c;
} conn_t;

typedef struct {
    redisReader *r;
} reader_t;

/* The code of an error reply: its first word when that is upper case (MOVED, NOSCRIPT, ...). */
static void push_error_code(lua_State *L, const char *s, size_t n)
{
    size_t i = 0;
    while (i < n && i < 32 && s[i] >= 'A' && s[i] <= 'Z') i++;
    if (i > 0 && (i == n || s[i] == ' ')) lua_pushlstring(L, s, i);
    else lua_pushliteral(L, "ERR");
}

/* Pushes a reply; inside arrays an error becomes {err=, code=}. */
static void push_reply(lua_State *L, const redisReply *r)
{
    size_t i;
    switch (r->type) {
    case REDIS_REPLY_STRING:
    case REDIS_REPLY_STATUS:
        lua_pushlstring(L, r->str, r->len);
        break;
    case REDIS_REPLY_INTEGER:
        paykit_pushsafeint(L, r->integer);
        break;
    case REDIS_REPLY_NIL:
        lua_pushboolean(L, 0);
        break;
    case REDIS_REPLY_ARRAY:
        luaL_checkstack(L, 4, "redis reply too deep");
        lua_createtable(L, (int)r->elements, 0);
        for (i = 0; i < r->elements; i++) {
            push_reply(L, r->element[i]);
            lua_rawseti(L, -2, (int)i + 1);
        }
        break;
    default: /* REDIS_REPLY_ERROR */
        lua_createtable(L, 0, 2);
        lua_pushlstring(L, r->str, r->len);
        lua_setfield(L, -2, "err");
        push_error_code(L, r->str, r->len);
        lua_setfield(L, -2, "code");
        break;
    }
}

/* A top-level reply: the value, or nil, message, code for an error reply. */
static int return_reply(lua_State *L, redisReply *r)
{
    if (r->type == REDIS_REPLY_ERROR) {
        lua_pushnil(L);
        lua_pushlstring(L, r->str, r->len);
        push_error_code(L, r->str, r->len);
        freeReplyObject(r);
        return 3;
    }
    push_reply(L, r);
    freeReplyObject(r);
    return 1;
}

/* The failure of a context (connection level), with errno as it was right after it. */
static int context_fail(lua_State *L, const redisContext *c, int saved_errno, const char *what)
{
    const char *code = "io";
    if (c->err == REDIS_ERR_IO && (saved_errno == EAGAIN || saved_errno == EWOULDBLOCK || saved_errno == ETIMEDOUT
                                   || saved_errno == EINPROGRESS))
        code = "timeout";
    else if (c->err == REDIS_ERR_EOF) code = "closed";
    else if (c->err == REDIS_ERR_PROTOCOL) code = "protocol";
    else if (c->err == REDIS_ERR_OOM) code = "oom";
    if (strcmp(code, "timeout") == 0)
        return paykit_fail(L, code, "redis %s: timed out", what);
    return paykit_fail(L, code, "redis %s: %s", what, c->errstr[0] ? c->errstr : "connection failed");
}

static struct timeval ms_to_tv(long ms)
{
    struct timeval tv;
    tv.tv_sec = ms / 1000;
    tv.tv_usec = (ms % 1000) * 1000;
    return tv;
}

static long check_ms(lua_State *L, int arg)
{
    long long ms = 0;
    if (!paykit_tosafeint(L, arg, &ms) || ms < 1 || ms > 86400000)
        luaL_argerror(L, arg, "milliseconds must be a whole number from 1 to 86400000");
    return (long)ms;
}

/* core.redis_connect(host, port, connect_ms, timeout_ms) */
static int l_connect(lua_State *L)
{
    const char *host = luaL_checkstring(L, 1);
    long long port;
    long cms, rms;
    conn_t *cn;
    redisContext *c;
    int e;
    if (!paykit_tosafeint(L, 2, &port) || port < 1 || port > 65535) return luaL_argerror(L, 2, "port must be 1..65535");
    cms = check_ms(L, 3);
    rms = check_ms(L, 4);
    cn = (conn_t *)lua_newuserdata(L, sizeof(conn_t));
    cn->c = NULL;
    luaL_setmetatable(L, CONN_MT);
    errno = 0;
    c = redisConnectWithTimeout(host, (int)port, ms_to_tv(cms));
    e = errno;
    if (c == NULL) return paykit_fail(L, "oom", "redis connect: out of memory");
    if (c->err) {
        int r;
        if (c->err == REDIS_ERR_IO && (e == ETIMEDOUT || e == EINPROGRESS || e == EAGAIN))
            r = paykit_fail(L, "timeout", "redis connect to %s:%d: timed out", host, (int)port);
        else
            r = paykit_fail(L, "connect", "redis connect to %s:%d: %s", host, (int)port, c->errstr);
        redisFree(c);
        return r;
    }
    if (redisSetTimeout(c, ms_to_tv(rms)) != REDIS_OK) {
        redisFree(c);
        return paykit_fail(L, "io", "redis connect: cannot set the read timeout");
    }
    cn->c = c;
    return 1;
}

static conn_t *check_conn(lua_State *L)
{
    conn_t *cn = (conn_t *)luaL_checkudata(L, 1, CONN_MT);
    if (cn->c == NULL) luaL_argerror(L, 1, "redis connection is closed");
    return cn;
}

/* Collects the strings (or numbers) at stack [first, last] as argv; raises on another type. */
static int collect_args(lua_State *L, int first, int last, const char **argv, size_t *lens, int argpos)
{
    int i, n = last - first + 1;
    if (n < 1) luaL_argerror(L, argpos, "a command needs at least its name");
    if (n > MAX_ARGS) luaL_argerror(L, argpos, "too many command arguments");
    for (i = 0; i < n; i++) {
        int t = lua_type(L, first + i);
        if (t != LUA_TSTRING && t != LUA_TNUMBER)
            luaL_argerror(L, argpos, lua_pushfstring(L, "command argument %d must be a string or number, not %s", i + 1,
                                                     lua_typename(L, t)));
        argv[i] = lua_tolstring(L, first + i, &lens[i]);
    }
    return n;
}

/* conn:call(arg, ...) */
static int conn_call(lua_State *L)
{
    conn_t *cn = check_conn(L);
    const char *argv[MAX_ARGS];
    size_t lens[MAX_ARGS];
    int n = collect_args(L, 2, lua_gettop(L), argv, lens, 2), e;
    redisReply *r;
    if (cn->c->err) return paykit_fail(L, "closed", "redis: the connection failed earlier (%s)", cn->c->errstr);
    errno = 0;
    r = (redisReply *)redisCommandArgv(cn->c, n, argv, lens);
    e = errno;
    if (r == NULL) return context_fail(L, cn->c, e, "command");
    return return_reply(L, r);
}

/* conn:pipeline({{arg, ...}, ...}): sends every command, then reads every reply. */
static int conn_pipeline(lua_State *L)
{
    conn_t *cn = check_conn(L);
    const char *argv[MAX_ARGS];
    size_t lens[MAX_ARGS];
    int count, i, e;
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_settop(L, 2);
    count = (int)lua_rawlen(L, 2);
    if (cn->c->err) return paykit_fail(L, "closed", "redis: the connection failed earlier (%s)", cn->c->errstr);
    for (i = 1; i <= count; i++) { /* check everything before appending anything */
        int j, m;
        lua_rawgeti(L, 2, i);
        if (!lua_istable(L, -1)) return luaL_argerror(L, 2, lua_pushfstring(L, "command %d must be a table", i));
        m = (int)lua_rawlen(L, -1);
        luaL_checkstack(L, m + 2, "too many command arguments");
        for (j = 1; j <= m; j++) lua_rawgeti(L, 3, j);
        collect_args(L, 4, 3 + m, argv, lens, 2);
        lua_settop(L, 2);
    }
    for (i = 1; i <= count; i++) {
        int j, m;
        lua_rawgeti(L, 2, i);
        m = (int)lua_rawlen(L, -1);
        for (j = 1; j <= m; j++) lua_rawgeti(L, 3, j);
        collect_args(L, 4, 3 + m, argv, lens, 2);
        if (redisAppendCommandArgv(cn->c, m, argv, lens) != REDIS_OK)
            return paykit_fail(L, "oom", "redis pipeline: out of memory");
        lua_settop(L, 2);
    }
    lua_createtable(L, count, 0);
    for (i = 1; i <= count; i++) {
        void *r = NULL;
        errno = 0;
        if (redisGetReply(cn->c, &r) != REDIS_OK || r == NULL) {
            e = errno;
            return context_fail(L, cn->c, e, "pipeline");
        }
        push_reply(L, (redisReply *)r);
        freeReplyObject(r);
        lua_rawseti(L, -2, i);
    }
    return 1;
}

static int conn_settimeout(lua_State *L)
{
    conn_t *cn = check_conn(L);
    long ms = check_ms(L, 2);
    if (redisSetTimeout(cn->c, ms_to_tv(ms)) != REDIS_OK) return paykit_fail(L, "io", "redis: cannot set the timeout");
    lua_pushboolean(L, 1);
    return 1;
}

static int conn_broken(lua_State *L)
{
    conn_t *cn = (conn_t *)luaL_checkudata(L, 1, CONN_MT);
    lua_pushboolean(L, cn->c == NULL || cn->c->err != 0);
    return 1;
}

static int conn_close(lua_State *L)
{
    conn_t *cn = (conn_t *)luaL_checkudata(L, 1, CONN_MT);
    if (cn->c) {
        redisFree(cn->c);
        cn->c = NULL;
    }
    return 0;
}

static int conn_tostring(lua_State *L)
{
    conn_t *cn = (conn_t *)luaL_checkudata(L, 1, CONN_MT);
    if (cn->c) lua_pushfstring(L, "paykit.redis.conn(%s:%d)", cn->c->tcp.host ? cn->c->tcp.host : "?", cn->c->tcp.port);
    else lua_pushliteral(L, "paykit.redis.conn(closed)");
    return 1;
}

/* ---- the reader alone (nginx: cosockets bring the bytes) ---- */

static int l_reader(lua_State *L)
{
    reader_t *rd = (reader_t *)lua_newuserdata(L, sizeof(reader_t));
    rd->r = NULL;
    luaL_setmetatable(L, READER_MT);
    rd->r = redisReaderCreate();
    if (rd->r == NULL) return paykit_fail(L, "oom", "redis reader: out of memory");
    return 1;
}

static reader_t *check_reader(lua_State *L)
{
    reader_t *rd = (reader_t *)luaL_checkudata(L, 1, READER_MT);
    if (rd->r == NULL) luaL_argerror(L, 1, "redis reader is closed");
    return rd;
}

/* reader:feed(bytes) -> true | nil, message, "protocol" */
static int reader_feed(lua_State *L)
{
    reader_t *rd = check_reader(L);
    size_t n;
    const char *s = luaL_checklstring(L, 2, &n);
    if (rd->r->err) return paykit_fail(L, "protocol", "redis reply: %s", rd->r->errstr);
    if (redisReaderFeed(rd->r, s, n) != REDIS_OK) return paykit_fail(L, "protocol", "redis reply: %s", rd->r->errstr);
    lua_pushboolean(L, 1);
    return 1;
}

/* reader:get() -> reply (a complete one) | nil (more bytes needed) | nil, message, code
 * (an error reply, or code "protocol" for bytes that are not RESP: the reader is then dead) */
static int reader_get(lua_State *L)
{
    reader_t *rd = check_reader(L);
    void *r = NULL;
    if (rd->r->err || redisReaderGetReply(rd->r, &r) != REDIS_OK)
        return paykit_fail(L, "protocol", "redis reply: %s", rd->r->errstr[0] ? rd->r->errstr : "protocol error");
    if (r == NULL) {
        lua_pushnil(L);
        return 1;
    }
    return return_reply(L, (redisReply *)r);
}

static int reader_close(lua_State *L)
{
    reader_t *rd = (reader_t *)luaL_checkudata(L, 1, READER_MT);
    if (rd->r) {
        redisReaderFree(rd->r);
        rd->r = NULL;
    }
    return 0;
}

/* core.redis_format(arg, ...) -> the RESP bytes of the command */
static int l_format(lua_State *L)
{
    const char *argv[MAX_ARGS];
    size_t lens[MAX_ARGS];
    char *cmd = NULL;
    int n = collect_args(L, 1, lua_gettop(L), argv, lens, 1);
    int len = redisFormatCommandArgv(&cmd, n, argv, lens);
    if (len < 0 || cmd == NULL) return paykit_fail(L, "oom", "redis format: out of memory");
    lua_pushlstring(L, cmd, (size_t)len);
    redisFreeCommand(cmd);
    return 1;
}

/* CRC16-CCITT (XMODEM: polynomial 0x1021, initial 0), the Cluster specification's key hash. */
static unsigned crc16(const unsigned char *s, size_t n)
{
    unsigned crc = 0;
    size_t i;
    int b;
    for (i = 0; i < n; i++) {
        crc ^= (unsigned)s[i] << 8;
        for (b = 0; b < 8; b++) crc = (crc & 0x8000) ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
    }
    return crc;
}

/* core.redis_slot(key): only the part between the first "{" and the next "}" counts when it
 * is not empty (a hash tag), so "paykit:{moka:o-1}:rec" and "paykit:{moka:o-1}:grant" share one. */
static int l_slot(lua_State *L)
{
    size_t n, i;
    const unsigned char *k = (const unsigned char *)luaL_checklstring(L, 1, &n);
    for (i = 0; i < n && k[i] != '{'; i++) {}
    if (i < n) {
        size_t j;
        for (j = i + 1; j < n && k[j] != '}'; j++) {}
        if (j < n && j > i + 1) {
            k += i + 1;
            n = j - i - 1;
        }
    }
    lua_pushinteger(L, (lua_Integer)(crc16(k, n) & 16383));
    return 1;
}

/* core.realtime_ms(): the wall clock, for time stamps that other machines read */
static int l_realtime_ms(lua_State *L)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    paykit_pushsafeint(L, (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
    return 1;
}

static const luaL_Reg conn_methods[] = {
    {"call", conn_call},
    {"pipeline", conn_pipeline},
    {"settimeout", conn_settimeout},
    {"broken", conn_broken},
    {"close", conn_close},
    {NULL, NULL},
};

static const luaL_Reg conn_meta[] = {
    {"__gc", conn_close},
#if LUA_VERSION_NUM >= 504
    {"__close", conn_close},
#endif
    {"__tostring", conn_tostring},
    {NULL, NULL},
};

static const luaL_Reg reader_methods[] = {
    {"feed", reader_feed},
    {"get", reader_get},
    {"close", reader_close},
    {NULL, NULL},
};

static const luaL_Reg reader_meta[] = {
    {"__gc", reader_close},
#if LUA_VERSION_NUM >= 504
    {"__close", reader_close},
#endif
    {NULL, NULL},
};

static const luaL_Reg redis_funcs[] = {
    {"redis_connect", l_connect},
    {"redis_reader", l_reader},
    {"redis_format", l_format},
    {"redis_slot", l_slot},
    {"realtime_ms", l_realtime_ms},
    {NULL, NULL},
};

static void new_class(lua_State *L, const char *name, const luaL_Reg *meta, const luaL_Reg *methods)
{
    if (luaL_newmetatable(L, name)) {
        luaL_setfuncs(L, meta, 0);
        lua_newtable(L);
        luaL_setfuncs(L, methods, 0);
        lua_setfield(L, -2, "__index");
        lua_pushstring(L, name);
        lua_setfield(L, -2, "__name");
    }
    lua_pop(L, 1);
}

void paykit_redis_register(lua_State *L)
{
    new_class(L, CONN_MT, conn_meta, conn_methods);
    new_class(L, READER_MT, reader_meta, reader_methods);
    luaL_setfuncs(L, redis_funcs, 0);
}
