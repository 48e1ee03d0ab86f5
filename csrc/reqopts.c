/* reqopts: the option tables of the HTTP clients, read once for both (see reqopts.h). */
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "reqopts.h"

void paykit_req_argerror(lua_State *L, int arg, int pos, const char *msg)
{
    if (pos > 0)
        msg = lua_pushfstring(L, "request %d: %s", pos, msg);
    luaL_argerror(L, arg, msg);
}

long paykit_count_value(lua_State *L, int v, int arg, int pos, const char *name, long def, long max)
{
    long long n = 0;
    if (lua_isnil(L, v))
        return def;
    if (lua_type(L, v) != LUA_TNUMBER)
        paykit_req_argerror(L, arg, pos, lua_pushfstring(L, "'%s' must be a number", name));
    if (!paykit_tosafeint(L, v, &n) || n < 0 || n > max)
        paykit_req_argerror(L, arg, pos, lua_pushfstring(L, "'%s' must be a non-negative integer", name));
    return (long)n;
}

long paykit_opt_count(lua_State *L, int idx, int arg, int pos, const char *name, long def, long max)
{
    long v;
    lua_getfield(L, idx, name);
    v = paykit_count_value(L, lua_gettop(L), arg, pos, name, def, max);
    lua_pop(L, 1);
    return v;
}

/* The boolean at stack index v, or def when it is nil (as paykit_opt_bool). */
static int bool_value(lua_State *L, int v, int arg, int pos, const char *name, int def)
{
    if (lua_isnil(L, v))
        return def;
    if (lua_type(L, v) != LUA_TBOOLEAN)
        paykit_req_argerror(L, arg, pos, lua_pushfstring(L, "'%s' must be a boolean", name));
    return lua_toboolean(L, v);
}

int paykit_opt_bool(lua_State *L, int idx, int arg, int pos, const char *name, int def)
{
    int v;
    lua_getfield(L, idx, name);
    v = bool_value(L, lua_gettop(L), arg, pos, name, def);
    lua_pop(L, 1);
    return v;
}

/* An optional string field without NUL bytes (the clients hand them to C as C strings), or
 * NULL; the string stays referenced by the table. */
static const char *opt_string(lua_State *L, int idx, int arg, const char *name)
{
    const char *s = NULL;
    lua_getfield(L, idx, name);
    if (!lua_isnil(L, -1)) {
        size_t n;
        if (lua_type(L, -1) != LUA_TSTRING)
            luaL_argerror(L, arg, lua_pushfstring(L, "'%s' must be a string", name));
        s = lua_tolstring(L, -1, &n);
        if (strlen(s) != n)
            luaL_argerror(L, arg, lua_pushfstring(L, "'%s' must not contain NUL bytes", name));
    }
    lua_pop(L, 1);
    return s;
}

#define ONES 0x0101010101010101ull
#define HAS_ZERO(v) (((v) - ONES) & ~(v) & (0x80 * ONES)) /* exact: whether a byte of v is 0 */

#define BAD_WORD(w) (HAS_ZERO(w) | HAS_ZERO((w) ^ ('\r' * ONES)) | HAS_ZERO((w) ^ ('\n' * ONES)))

int paykit_bad_header_text(const char *s, size_t n)
{
    if (n >= 8) { /* words holding a 0, a CR or an LF; the last one ends at the last byte */
        const char *last = s + n - 8;
        uint64_t w;
        for (; s < last; s += 8) {
            memcpy(&w, s, 8);
            if (BAD_WORD(w))
                return 1;
        }
        memcpy(&w, last, 8); /* overlaps bytes already seen: they are not bad */
        return BAD_WORD(w) != 0;
    }
    while (n--) {
        if ((unsigned char)*s <= '\r' && (*s == '\r' || *s == '\n' || *s == '\0'))
            return 1;
        s++;
    }
    return 0;
}

int paykit_idempotent_method(const char *m, size_t n)
{
    return (n == 3 && memcmp(m, "GET", 3) == 0) || (n == 4 && memcmp(m, "HEAD", 4) == 0)
        || (n == 7 && memcmp(m, "OPTIONS", 7) == 0);
}

static char *copy_of(const char *s)
{
    size_t n;
    char *c;
    if (!s)
        return NULL;
    n = strlen(s);
    c = (char *)malloc(n + 1);
    if (c)
        memcpy(c, s, n + 1);
    return c;
}

void paykit_read_client_opts(lua_State *L, int idx, int arg, paykit_client_opts *o)
{
    const char *cafile, *capath, *ua;
    o->connect_timeout_ms = paykit_opt_count(L, idx, arg, 0, "connect_timeout", o->connect_timeout_ms, LONG_MAX);
    o->timeout_ms = paykit_opt_count(L, idx, arg, 0, "timeout", o->timeout_ms, LONG_MAX);
    o->max_response = (size_t)paykit_opt_count(L, idx, arg, 0, "max_response", (long)o->max_response, LONG_MAX);
    o->max_redirects = paykit_opt_count(L, idx, arg, 0, "max_redirects", o->max_redirects, 1000);
    o->max_connections = paykit_opt_count(L, idx, arg, 0, "max_connections", o->max_connections, 10000);
    o->keepalive_ms = paykit_opt_count(L, idx, arg, 0, "keepalive_timeout", o->keepalive_ms, LONG_MAX);
    o->stall_ms = paykit_opt_count(L, idx, arg, 0, "stall_timeout", o->stall_ms, LONG_MAX);
    o->verify = paykit_opt_bool(L, idx, arg, 0, "verify", o->verify);
    o->follow = paykit_opt_bool(L, idx, arg, 0, "follow_redirects", o->follow);
    cafile = opt_string(L, idx, arg, "cafile");
    capath = opt_string(L, idx, arg, "capath");
    ua = opt_string(L, idx, arg, "user_agent");
    if (ua && paykit_bad_header_text(ua, strlen(ua)))
        luaL_argerror(L, arg, "'user_agent' must not contain CR or LF");
    o->cafile = copy_of(cafile);
    o->capath = copy_of(capath);
    o->user_agent = copy_of(ua);
    if ((cafile && !o->cafile) || (capath && !o->capath) || (ua && !o->user_agent)) {
        free(o->cafile);
        free(o->capath);
        free(o->user_agent);
        o->cafile = o->capath = o->user_agent = NULL;
        luaL_error(L, "out of memory");
    }
}

void paykit_check_method(lua_State *L, int arg, int pos, const char *m, size_t n)
{
    size_t i;
    if (n == 0)
        paykit_req_argerror(L, arg, pos, "'method' must not be empty");
    for (i = 0; i < n; i++) {
        char ch = m[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z')) && ch != '-' && ch != '_')
            paykit_req_argerror(L, arg, pos, "'method' must be a token such as \"POST\"");
    }
}

/* The names of the request fields, by PAYKIT_RF_* position. */
static const char *const RF_NAME[PAYKIT_RF_N] = {
    "url", "method", "timeout", "connect_timeout", "stall_timeout", "follow_redirects", "body",
    "idempotent", "send_timeout", "read_timeout", "headers",
};

void paykit_req_keys(lua_State *L)
{
    int f;
    luaL_checkstack(L, PAYKIT_RF_N, "request field names");
    for (f = 0; f < PAYKIT_RF_N; f++)
        lua_pushstring(L, RF_NAME[f]);
}

int paykit_req_fields(lua_State *L, int idx, int up)
{
    int base, f;
    if (idx < 0 && idx > LUA_REGISTRYINDEX)
        idx = lua_gettop(L) + idx + 1; /* the values go above it */
    luaL_checkstack(L, PAYKIT_RF_N + 4, "request fields");
    base = lua_gettop(L) + 1;
    if (!lua_istable(L, idx)) {
        lua_settop(L, base + PAYKIT_RF_N - 1); /* nils: paykit_read_req_fields raises */
        return base;
    }
    if (up && !lua_getmetatable(L, idx)) { /* no __index to ask: the table's own entries */
        for (f = 0; f < PAYKIT_RF_N; f++) {
            lua_pushvalue(L, lua_upvalueindex(up + f)); /* the name's string: not hashed again */
            lua_rawget(L, idx);
        }
        return base;
    }
    if (up)
        lua_pop(L, 1); /* the metatable */
    for (f = 0; f < PAYKIT_RF_N; f++)
        lua_getfield(L, idx, RF_NAME[f]);
    return base;
}

/* paykit_read_req over the table at idx (base 0: lua_getfield, the body left on the stack) or
 * over the values paykit_req_fields pushed at base (nothing left). */
static void read_req(lua_State *L, int idx, int base, int arg, int pos, paykit_req *r)
{
    size_t n;
    int v;
#define FIELD(f) (base ? base + (f) : (lua_getfield(L, idx, RF_NAME[f]), lua_gettop(L)))
#define DONE() do { if (!base) lua_pop(L, 1); } while (0) /* a string stays referenced by the table */
    if (!lua_istable(L, idx))
        paykit_req_argerror(L, arg, pos, "request must be a table");
    v = FIELD(PAYKIT_RF_URL);
    if (lua_type(L, v) != LUA_TSTRING)
        paykit_req_argerror(L, arg, pos, "'url' must be a string");
    r->url = lua_tolstring(L, v, &n);
    if (strlen(r->url) != n)
        paykit_req_argerror(L, arg, pos, "'url' must not contain NUL bytes");
    DONE();
    r->method = NULL;
    r->method_len = 0;
    v = FIELD(PAYKIT_RF_METHOD);
    if (!lua_isnil(L, v)) {
        if (lua_type(L, v) != LUA_TSTRING)
            paykit_req_argerror(L, arg, pos, "'method' must be a string");
        r->method = lua_tolstring(L, v, &r->method_len);
        paykit_check_method(L, arg, pos, r->method, r->method_len);
    }
    DONE();
    v = FIELD(PAYKIT_RF_TIMEOUT);
    r->timeout_ms = paykit_count_value(L, v, arg, pos, "timeout", r->timeout_ms, LONG_MAX);
    DONE();
    v = FIELD(PAYKIT_RF_CONNECT_TIMEOUT);
    r->connect_timeout_ms = paykit_count_value(L, v, arg, pos, "connect_timeout", r->connect_timeout_ms, LONG_MAX);
    DONE();
    v = FIELD(PAYKIT_RF_STALL_TIMEOUT);
    r->stall_ms = paykit_count_value(L, v, arg, pos, "stall_timeout", r->stall_ms, LONG_MAX);
    DONE();
    v = FIELD(PAYKIT_RF_FOLLOW);
    r->follow = bool_value(L, v, arg, pos, "follow_redirects", r->follow);
    DONE();
    v = FIELD(PAYKIT_RF_BODY); /* left on the stack (base 0) */
    r->has_body = !lua_isnil(L, v);
    r->body = NULL;
    r->body_len = 0;
    if (r->has_body) {
        if (lua_type(L, v) != LUA_TSTRING)
            paykit_req_argerror(L, arg, pos, "'body' must be a string");
        r->body = lua_tolstring(L, v, &r->body_len);
    }
    v = FIELD(PAYKIT_RF_IDEMPOTENT);
    r->idempotent = bool_value(L, v, arg, pos, "idempotent",
                               r->method ? paykit_idempotent_method(r->method, r->method_len) : !r->has_body);
    DONE();
#undef FIELD
#undef DONE
}

void paykit_read_req(lua_State *L, int idx, int arg, int pos, paykit_req *r)
{
    read_req(L, idx, 0, arg, pos, r);
}

void paykit_read_req_fields(lua_State *L, int idx, int base, int arg, int pos, paykit_req *r)
{
    read_req(L, idx, base, arg, pos, r);
}

int paykit_read_headers(lua_State *L, int idx, int arg, int pos, paykit_header_fn fn, void *ud)
{
    int ok;
    lua_getfield(L, idx, "headers");
    ok = paykit_read_header_table(L, lua_gettop(L), arg, pos, fn, ud);
    lua_pop(L, 1);
    return ok;
}

int paykit_read_header_table(lua_State *L, int t, int arg, int pos, paykit_header_fn fn, void *ud)
{
    int ok = 1;
    if (!lua_isnil(L, t)) {
        if (!lua_istable(L, t))
            paykit_req_argerror(L, arg, pos, "'headers' must be a table");
        lua_pushnil(L);
        while (lua_next(L, t)) {
            size_t nn = 0, vn = 0;
            const char *name = NULL, *value;
            if (lua_type(L, -2) == LUA_TNUMBER) {
                if (lua_type(L, -1) != LUA_TSTRING)
                    paykit_req_argerror(L, arg, pos, "array headers must be strings \"Name: value\"");
            } else if (lua_type(L, -2) == LUA_TSTRING) {
                int vt = lua_type(L, -1);
                if (vt != LUA_TSTRING && vt != LUA_TNUMBER)
                    paykit_req_argerror(L, arg, pos, "header values must be strings or numbers");
                name = lua_tolstring(L, -2, &nn);
                if (nn == 0 || paykit_bad_header_text(name, nn) || memchr(name, ':', nn))
                    paykit_req_argerror(L, arg, pos, "invalid header name");
            } else {
                paykit_req_argerror(L, arg, pos, "header keys must be names or array positions");
            }
            if (lua_type(L, -1) == LUA_TNUMBER) {
                lua_pushvalue(L, -1); /* a copy to convert: the table's own value stays a number */
                lua_replace(L, -2);
            }
            value = lua_tolstring(L, -1, &vn);
            if (paykit_bad_header_text(value, vn))
                paykit_req_argerror(L, arg, pos, "header values must not contain CR, LF or NUL");
            if (fn && ok)
                ok = fn(ud, name, nn, value, vn);
            lua_pop(L, 1);
        }
    }
    return ok;
}
