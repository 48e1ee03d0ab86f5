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

long paykit_opt_count(lua_State *L, int idx, int arg, int pos, const char *name, long def, long max)
{
    long v = def;
    lua_getfield(L, idx, name);
    if (!lua_isnil(L, -1)) {
        long long n = 0;
        if (lua_type(L, -1) != LUA_TNUMBER)
            paykit_req_argerror(L, arg, pos, lua_pushfstring(L, "'%s' must be a number", name));
        if (!paykit_tosafeint(L, -1, &n) || n < 0 || n > max)
            paykit_req_argerror(L, arg, pos, lua_pushfstring(L, "'%s' must be a non-negative integer", name));
        v = (long)n;
    }
    lua_pop(L, 1);
    return v;
}

int paykit_opt_bool(lua_State *L, int idx, int arg, int pos, const char *name, int def)
{
    int v = def;
    lua_getfield(L, idx, name);
    if (!lua_isnil(L, -1)) {
        if (lua_type(L, -1) != LUA_TBOOLEAN)
            paykit_req_argerror(L, arg, pos, lua_pushfstring(L, "'%s' must be a boolean", name));
        v = lua_toboolean(L, -1);
    }
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

int paykit_bad_header_text(const char *s, size_t n)
{
    while (n >= 8) { /* a word holding a 0, a CR or an LF */
        uint64_t w;
        memcpy(&w, s, 8);
        if (HAS_ZERO(w) | HAS_ZERO(w ^ ('\r' * ONES)) | HAS_ZERO(w ^ ('\n' * ONES)))
            return 1;
        s += 8;
        n -= 8;
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

void paykit_read_req(lua_State *L, int idx, int arg, int pos, paykit_req *r)
{
    size_t n;
    if (!lua_istable(L, idx))
        paykit_req_argerror(L, arg, pos, "request must be a table");
    lua_getfield(L, idx, "url");
    if (lua_type(L, -1) != LUA_TSTRING)
        paykit_req_argerror(L, arg, pos, "'url' must be a string");
    r->url = lua_tolstring(L, -1, &n);
    if (strlen(r->url) != n)
        paykit_req_argerror(L, arg, pos, "'url' must not contain NUL bytes");
    lua_pop(L, 1); /* still referenced by the request table */
    r->method = NULL;
    r->method_len = 0;
    lua_getfield(L, idx, "method");
    if (!lua_isnil(L, -1)) {
        if (lua_type(L, -1) != LUA_TSTRING)
            paykit_req_argerror(L, arg, pos, "'method' must be a string");
        r->method = lua_tolstring(L, -1, &r->method_len);
        paykit_check_method(L, arg, pos, r->method, r->method_len);
    }
    lua_pop(L, 1);
    r->timeout_ms = paykit_opt_count(L, idx, arg, pos, "timeout", r->timeout_ms, LONG_MAX);
    r->connect_timeout_ms = paykit_opt_count(L, idx, arg, pos, "connect_timeout", r->connect_timeout_ms, LONG_MAX);
    r->stall_ms = paykit_opt_count(L, idx, arg, pos, "stall_timeout", r->stall_ms, LONG_MAX);
    r->follow = paykit_opt_bool(L, idx, arg, pos, "follow_redirects", r->follow);
    lua_getfield(L, idx, "body"); /* left on the stack */
    r->has_body = !lua_isnil(L, -1);
    r->body = NULL;
    r->body_len = 0;
    if (r->has_body) {
        if (lua_type(L, -1) != LUA_TSTRING)
            paykit_req_argerror(L, arg, pos, "'body' must be a string");
        r->body = lua_tolstring(L, -1, &r->body_len);
    }
    r->idempotent = paykit_opt_bool(L, idx, arg, pos, "idempotent",
                                    r->method ? paykit_idempotent_method(r->method, r->method_len) : !r->has_body);
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
