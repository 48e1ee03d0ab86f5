/* codec: RFC 3986 percent-encoding, form/query tables, canonical query strings, exact money.
 *
 * Strings are handled as bytes (invalid UTF-8 passes through). Misuse raises with
 * luaL_argerror; invalid input returns nil, message, code. Messages never echo the input:
 * a caller may pass a secret by mistake. No mutable C state.
 *
 * pct_encode and canonical_query (what OAuth signs on every call) take one pass over their
 * input and make one Lua string each: pct_encode answers its argument itself when nothing
 * needs encoding, canonical_query encodes into one scratch block and sorts pointers into it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "paykit.h"

/* money exponents accepted (decimal places of the currency's minor unit) */
#define MONEY_MAX_EXPONENT 15

static const char upper_hex[] = "0123456789ABCDEF";

/* ---- percent-encoding ---- */

/* 1 for the RFC 3986 unreserved bytes A-Z a-z 0-9 - . _ ~ */
static const unsigned char unreserved[256] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0,
    0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1,
    0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 1, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
};

static int is_unreserved(unsigned char c)
{
    return unreserved[c];
}

/* How many bytes s[0..n) takes percent-encoded (RFC 3986, space as %20). */
static size_t pct_size(const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i, out = n;
    for (i = 0; i < n; i++)
        if (!unreserved[s[i]])
            out += 2;
    return out;
}

/* Writes s[0..n) percent-encoded (space as %20) at dst; returns the end. */
static char *pct_write(char *dst, const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i;
    for (i = 0; i < n; i++) {
        unsigned char c = s[i];
        if (unreserved[c]) {
            *dst++ = (char)c;
        } else {
            dst[0] = '%';
            dst[1] = upper_hex[c >> 4];
            dst[2] = upper_hex[c & 15];
            dst += 3;
        }
    }
    return dst;
}

/* Appends s percent-encoded: unreserved bytes as they are, space as "+" when plus, else %XX. */
static void add_pct(luaL_Buffer *b, const char *str, size_t n, int plus)
{
    const unsigned char *s = (const unsigned char *)str;
    while (n > 0) {
        size_t i, o = 0, chunk = LUAL_BUFFERSIZE / 3;
        char *p = luaL_prepbuffer(b);
        if (chunk > n) chunk = n;
        for (i = 0; i < chunk; i++) {
            unsigned char c = s[i];
            if (is_unreserved(c)) {
                p[o++] = (char)c;
            } else if (c == ' ' && plus) {
                p[o++] = '+';
            } else {
                p[o++] = '%';
                p[o++] = upper_hex[c >> 4];
                p[o++] = upper_hex[c & 15];
            }
        }
        luaL_addsize(b, o);
        s += chunk;
        n -= chunk;
    }
}

static void push_pct(lua_State *L, const char *s, size_t n, int plus)
{
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    add_pct(&b, s, n, plus);
    luaL_pushresult(&b);
}

/* Decodes s[0..n) into dst (room for n bytes). Returns 1 and the length in *outlen, or 0 and
 * the offset of the bad '%' in *bad. */
static int pct_decode_into(const char *str, size_t n, int plus, char *dst, size_t *outlen, size_t *bad)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0, o = 0;
    while (i < n) {
        unsigned char c = s[i];
        if (c == '%') {
            int hi, lo;
            if (n - i < 3) { /* fewer than two bytes follow the '%' */
                *bad = i;
                return 0;
            }
            hi = paykit_hexval(s[i + 1]);
            lo = paykit_hexval(s[i + 2]);
            if (hi < 0 || lo < 0) {
                *bad = i;
                return 0;
            }
            dst[o++] = (char)((hi << 4) | lo);
            i += 3;
        } else {
            dst[o++] = (plus && c == '+') ? ' ' : (char)c;
            i++;
        }
    }
    *outlen = o;
    return 1;
}

static int push_bad_percent(lua_State *L, size_t pos)
{
    return paykit_fail(L, "invalid_percent",
                       "invalid percent-encoding: '%%' at position %d is not followed by two hex digits",
                       (int)pos + 1);
}

/* pct_encode(s): s itself when every byte is unreserved; else one string made */
static int l_pct_encode(lua_State *L)
{
    size_t len, out;
    const char *s = luaL_checklstring(L, 1, &len);
    char local[512];
    out = pct_size(s, len);
    if (out == len) {
        lua_settop(L, 1); /* a number argument was converted to its string in place */
        return 1;
    }
    if (out <= sizeof local) {
        pct_write(local, s, len);
        lua_pushlstring(L, local, out);
    } else {
        char *big = (char *)lua_newuserdata(L, out);
        pct_write(big, s, len);
        lua_pushlstring(L, big, out);
    }
    return 1;
}

/* pct_decode(s[, plus_as_space]) */
static int l_pct_decode(lua_State *L)
{
    size_t len, outlen = 0, bad = 0;
    const char *s = luaL_checklstring(L, 1, &len);
    int plus = lua_toboolean(L, 2);
    char *scratch = (char *)lua_newuserdata(L, len + 1);
    if (!pct_decode_into(s, len, plus, scratch, &outlen, &bad))
        return push_bad_percent(L, bad);
    lua_pushlstring(L, scratch, outlen);
    return 1;
}

/* ---- form / query decoding ---- */

/* Splits s on '&' into key[=value] fields, decodes each; returns map, pairs. */
static int decode_fields(lua_State *L, int plus)
{
    size_t len, start = 0;
    const char *s = luaL_checklstring(L, 1, &len);
    char *scratch = (char *)lua_newuserdata(L, len + 1);
    int map, list, count = 0;
    lua_newtable(L);
    map = lua_gettop(L);
    lua_newtable(L);
    list = lua_gettop(L);

    while (start < len) {
        const char *amp = (const char *)memchr(s + start, '&', len - start);
        size_t end = amp ? (size_t)(amp - s) : len;
        if (end > start) {
            const char *eq = (const char *)memchr(s + start, '=', end - start);
            size_t kend = eq ? (size_t)(eq - s) : end;
            size_t vstart = eq ? kend + 1 : end;
            size_t outlen = 0, bad = 0;

            if (!pct_decode_into(s + start, kend - start, plus, scratch, &outlen, &bad))
                return push_bad_percent(L, start + bad);
            lua_pushlstring(L, scratch, outlen); /* key */
            if (!pct_decode_into(s + vstart, end - vstart, plus, scratch, &outlen, &bad))
                return push_bad_percent(L, vstart + bad);
            lua_pushlstring(L, scratch, outlen); /* value */

            /* pairs[#pairs + 1] = {key, value} */
            lua_createtable(L, 2, 0);
            lua_pushvalue(L, -3);
            lua_rawseti(L, -2, 1);
            lua_pushvalue(L, -2);
            lua_rawseti(L, -2, 2);
            lua_rawseti(L, list, ++count);

            /* map[key] = value, or an array of values once the key repeats */
            lua_pushvalue(L, -2);
            lua_rawget(L, map);
            switch (lua_type(L, -1)) {
            case LUA_TNIL:
                lua_pop(L, 1);
                lua_rawset(L, map);
                break;
            case LUA_TSTRING:
                lua_createtable(L, 2, 0);
                lua_insert(L, -2);
                lua_rawseti(L, -2, 1);  /* {old} */
                lua_insert(L, -2);      /* key, {old}, value */
                lua_rawseti(L, -2, 2);  /* key, {old, value} */
                lua_rawset(L, map);
                break;
            default: /* already an array */
                lua_insert(L, -2);      /* key, array, value */
                lua_rawseti(L, -2, (int)lua_rawlen(L, -2) + 1);
                lua_pop(L, 2);
                break;
            }
        }
        start = end + 1;
    }
    return 2;
}

/* form_decode(s): application/x-www-form-urlencoded, "+" is a space */
static int l_form_decode(lua_State *L)
{
    return decode_fields(L, 1);
}

/* query_decode(s): as form_decode, but "+" stays "+" */
static int l_query_decode(lua_State *L)
{
    return decode_fields(L, 0);
}

/* ---- form / query encoding ---- */

typedef struct {
    const char *k, *v;
    size_t kl, vl, idx;
} field;

static int cmp_bytes(const char *a, size_t al, const char *b, size_t bl)
{
    int c = memcmp(a, b, al < bl ? al : bl);
    if (c != 0) return c;
    return (al > bl) - (al < bl);
}

/* by key, then original order (map values keep their array order) */
static int cmp_key_idx(const void *pa, const void *pb)
{
    const field *a = (const field *)pa, *b = (const field *)pb;
    int c = cmp_bytes(a->k, a->kl, b->k, b->kl);
    if (c != 0) return c;
    return (a->idx > b->idx) - (a->idx < b->idx);
}

/* Pushes the string form of the scalar at idx (string, number via tostring rules, boolean),
 * percent-encoded with "%20" for spaces when encode; returns 0 (pushing nothing) otherwise. */
static int push_scalar(lua_State *L, int idx, int encode)
{
    size_t n;
    const char *s;
    switch (lua_type(L, idx)) {
    case LUA_TSTRING:
    case LUA_TNUMBER:
        lua_pushvalue(L, idx);
        s = lua_tolstring(L, -1, &n); /* converts the copy, never the original */
        break;
    case LUA_TBOOLEAN:
        lua_pushstring(L, lua_toboolean(L, idx) ? "true" : "false");
        s = lua_tolstring(L, -1, &n);
        break;
    default:
        return 0;
    }
    if (encode) {
        push_pct(L, s, n, 0);
        lua_remove(L, -2);
    }
    return 1;
}

static void bad_value(lua_State *L, int key, int value)
{
    lua_pushfstring(L, "value of field '%s' must be a string, number, boolean or an array of them (got %s)",
                    lua_tostring(L, key), luaL_typename(L, value));
    luaL_argerror(L, 1, lua_tostring(L, -1));
}

/* Appends the pair (string key at `key`, value at `value`) to the anchor table: a scalar
 * once, an array once per element. Keys arrive already in their final (maybe encoded) form. */
static size_t collect_value(lua_State *L, int anchor, size_t n, int key, int value, int encode)
{
    if (lua_type(L, value) == LUA_TTABLE) {
        int i, len = (int)lua_rawlen(L, value);
        for (i = 1; i <= len; i++) {
            lua_rawgeti(L, value, i);
            if (!push_scalar(L, lua_gettop(L), encode))
                bad_value(L, key, lua_gettop(L));
            lua_pushvalue(L, key);
            lua_rawseti(L, anchor, (int)(2 * n + 1));
            lua_rawseti(L, anchor, (int)(2 * n + 2));
            lua_pop(L, 1);
            n++;
        }
        return n;
    }
    if (!push_scalar(L, value, encode))
        bad_value(L, key, value);
    lua_pushvalue(L, key);
    lua_rawseti(L, anchor, (int)(2 * n + 1));
    lua_rawseti(L, anchor, (int)(2 * n + 2));
    return n + 1;
}

/* Walks t (argument 1: a map, or an array of {k, v} pairs) into a new anchor table on the
 * stack holding k1, v1, k2, v2, ... as strings (percent-encoded when encode). Returns the
 * number of pairs; *is_pairs tells which input form it was. */
static size_t collect_fields(lua_State *L, int encode, int *is_pairs)
{
    int anchor;
    size_t n = 0;
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_newtable(L);
    anchor = lua_gettop(L);
    lua_rawgeti(L, 1, 1);
    *is_pairs = lua_type(L, -1) == LUA_TTABLE;
    lua_pop(L, 1);

    if (*is_pairs) {
        int i, len = (int)lua_rawlen(L, 1);
        for (i = 1; i <= len; i++) {
            int pair;
            lua_rawgeti(L, 1, i);
            pair = lua_gettop(L);
            if (lua_type(L, pair) != LUA_TTABLE)
                luaL_argerror(L, 1, lua_pushfstring(L, "element %d of the pairs array is not a {key, value} table", i));
            lua_rawgeti(L, pair, 1);
            if (lua_type(L, -1) != LUA_TSTRING && lua_type(L, -1) != LUA_TNUMBER)
                luaL_argerror(L, 1, lua_pushfstring(L, "key of pair %d must be a string", i));
            push_scalar(L, lua_gettop(L), encode);
            lua_remove(L, -2);
            lua_rawgeti(L, pair, 2);
            n = collect_value(L, anchor, n, pair + 1, pair + 2, encode);
            lua_settop(L, anchor);
        }
        return n;
    }

    lua_pushnil(L);
    while (lua_next(L, 1) != 0) {
        int key = lua_gettop(L) - 1, value = key + 1;
        if (lua_type(L, key) != LUA_TSTRING)
            luaL_argerror(L, 1, lua_pushfstring(L, "field names must be strings (got a %s key);"
                                                   " use an array of {key, value} pairs for ordered fields",
                                                luaL_typename(L, key)));
        if (encode) {
            size_t kl;
            const char *k = lua_tolstring(L, key, &kl);
            push_pct(L, k, kl, 0);
        } else {
            lua_pushvalue(L, key);
        }
        lua_pushvalue(L, value);
        n = collect_value(L, anchor, n, value + 1, value + 2, encode);
        lua_settop(L, key); /* keep the key for lua_next */
    }
    return n;
}

/* Fills a userdata array of fields pointing into the anchor table at `anchor`. */
static field *index_fields(lua_State *L, int anchor, size_t n)
{
    size_t i;
    field *f = (field *)lua_newuserdata(L, (n ? n : 1) * sizeof(field));
    for (i = 0; i < n; i++) {
        lua_rawgeti(L, anchor, (int)(2 * i + 1));
        f[i].k = lua_tolstring(L, -1, &f[i].kl); /* anchored: stays valid after the pop */
        lua_rawgeti(L, anchor, (int)(2 * i + 2));
        f[i].v = lua_tolstring(L, -1, &f[i].vl);
        f[i].idx = i;
        lua_pop(L, 2);
    }
    return f;
}

/* form_encode(t[, opts]) */
static int l_form_encode(lua_State *L)
{
    static const char *const space_names[] = {"+", "%20", NULL};
    int plus = 1, is_pairs, anchor;
    size_t n, i;
    field *f;
    luaL_Buffer b;

    if (!lua_isnoneornil(L, 2)) {
        luaL_checktype(L, 2, LUA_TTABLE);
        lua_getfield(L, 2, "space");
        plus = luaL_checkoption(L, -1, "+", space_names) == 0;
        lua_pop(L, 1);
    }
    lua_settop(L, 1);
    n = collect_fields(L, 0, &is_pairs);
    anchor = lua_gettop(L);
    f = index_fields(L, anchor, n);
    if (!is_pairs && n > 1)
        qsort(f, n, sizeof *f, cmp_key_idx);

    luaL_buffinit(L, &b);
    for (i = 0; i < n; i++) {
        if (i > 0) luaL_addchar(&b, '&');
        add_pct(&b, f[i].k, f[i].kl, plus);
        luaL_addchar(&b, '=');
        add_pct(&b, f[i].v, f[i].vl, plus);
    }
    luaL_pushresult(&b);
    return 1;
}

/* ---- canonical_query: one pass, one scratch block ---- */

/* A raw (not yet encoded) field: pointers into strings kept alive by the argument table (or
 * by the anchor table for converted numbers); k/v point at the encoded bytes once encoded. */
typedef struct {
    const char *k, *v;
    size_t kl, vl, idx;
} cfield;

#define CQ_LOCAL_FIELDS 32
#define CQ_LOCAL_BYTES 4096

typedef struct {
    lua_State *L;
    cfield *f;
    size_t n, cap;
    int slot;     /* stack slot of the userdata holding f once it outgrows the local array */
    int anchor;   /* stack slot of the table keeping converted numbers alive (nil until used) */
    size_t anchored;
    size_t bytes; /* encoded bytes of every key and value */
} cq_t;

static void cq_add(cq_t *q, const char *k, size_t kl, const char *v, size_t vl)
{
    cfield *f;
    if (q->n == q->cap) {
        size_t cap = q->cap * 2;
        cfield *bigger = (cfield *)lua_newuserdata(q->L, cap * sizeof *bigger);
        memcpy(bigger, q->f, q->n * sizeof *bigger);
        lua_replace(q->L, q->slot);
        q->f = bigger;
        q->cap = cap;
    }
    f = &q->f[q->n];
    f->k = k; f->kl = kl; f->v = v; f->vl = vl; f->idx = q->n;
    q->bytes += pct_size(k, kl) + pct_size(v, vl);
    q->n++;
}

/* The string form of the scalar at idx, kept alive: a string as it is (it lives in the
 * argument table), a boolean as a C literal, a number converted (tostring's rules) and kept
 * in the anchor table. NULL for any other type. */
static const char *cq_scalar(cq_t *q, int idx, size_t *len)
{
    lua_State *L = q->L;
    switch (lua_type(L, idx)) {
    case LUA_TSTRING:
        return lua_tolstring(L, idx, len);
    case LUA_TBOOLEAN:
        if (lua_toboolean(L, idx)) { *len = 4; return "true"; }
        *len = 5;
        return "false";
    case LUA_TNUMBER: {
        const char *s;
        if (lua_isnil(L, q->anchor)) {
            lua_newtable(L);
            lua_replace(L, q->anchor);
        }
        lua_pushvalue(L, idx);
        s = lua_tolstring(L, -1, len); /* converts the copy, never the original */
        lua_rawseti(L, q->anchor, (int)++q->anchored);
        return s; /* the anchor table holds the string */
    }
    default:
        return NULL;
    }
}

static void cq_bad_value(cq_t *q, const char *k, size_t kl, int value)
{
    lua_State *L = q->L;
    push_pct(L, k, kl, 0); /* the name as it would be sent (the message used to say that) */
    lua_pushfstring(L, "value of field '%s' must be a string, number, boolean or an array of them (got %s)",
                    lua_tostring(L, -1), luaL_typename(L, value));
    luaL_argerror(L, 1, lua_tostring(L, -1));
}

/* Adds the field k = the value at `value` (a scalar, or an array of them: one field each). */
static void cq_value(cq_t *q, const char *k, size_t kl, int value)
{
    lua_State *L = q->L;
    size_t vl;
    const char *v;
    if (lua_type(L, value) == LUA_TTABLE) {
        int i, len = (int)lua_rawlen(L, value);
        for (i = 1; i <= len; i++) {
            lua_rawgeti(L, value, i);
            v = cq_scalar(q, lua_gettop(L), &vl);
            if (v == NULL)
                cq_bad_value(q, k, kl, lua_gettop(L));
            cq_add(q, k, kl, v, vl); /* a string element stays alive in the value table */
            lua_pop(L, 1);
        }
        return;
    }
    v = cq_scalar(q, value, &vl);
    if (v == NULL)
        cq_bad_value(q, k, kl, value);
    cq_add(q, k, kl, v, vl);
}

static int cq_less(const cfield *a, const cfield *b)
{
    int c = cmp_bytes(a->k, a->kl, b->k, b->kl);
    if (c == 0) c = cmp_bytes(a->v, a->vl, b->v, b->vl);
    if (c == 0) return a->idx < b->idx;
    return c < 0;
}

static int cq_cmp(const void *pa, const void *pb)
{
    const cfield *a = (const cfield *)pa, *b = (const cfield *)pb;
    if (cq_less(a, b)) return -1;
    return cq_less(b, a);
}

/* canonical_query(t): RFC 3986 encoded, sorted by encoded key then encoded value */
static int l_canonical_query(lua_State *L)
{
    cfield local_fields[CQ_LOCAL_FIELDS];
    char local_bytes[CQ_LOCAL_BYTES];
    cq_t q;
    size_t i, need, out_len;
    char *scratch, *w, *out;
    int is_pairs;

    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    lua_pushnil(L); /* 2: the fields' userdata, once they outgrow local_fields */
    lua_pushnil(L); /* 3: the anchor table of converted numbers */
    q.L = L; q.f = local_fields; q.n = 0; q.cap = CQ_LOCAL_FIELDS; q.slot = 2; q.anchor = 3;
    q.anchored = 0; q.bytes = 0;

    lua_rawgeti(L, 1, 1);
    is_pairs = lua_type(L, -1) == LUA_TTABLE;
    lua_pop(L, 1);
    if (is_pairs) {
        int i2, len = (int)lua_rawlen(L, 1);
        for (i2 = 1; i2 <= len; i2++) {
            const char *k;
            size_t kl;
            lua_rawgeti(L, 1, i2); /* 4: the pair (alive in the argument table) */
            if (lua_type(L, 4) != LUA_TTABLE)
                luaL_argerror(L, 1, lua_pushfstring(L, "element %d of the pairs array is not a {key, value} table", i2));
            lua_rawgeti(L, 4, 1);
            if (lua_type(L, 5) != LUA_TSTRING && lua_type(L, 5) != LUA_TNUMBER)
                luaL_argerror(L, 1, lua_pushfstring(L, "key of pair %d must be a string", i2));
            k = cq_scalar(&q, 5, &kl);
            lua_rawgeti(L, 4, 2);
            cq_value(&q, k, kl, 6);
            lua_settop(L, 3);
        }
    } else {
        lua_pushnil(L);
        while (lua_next(L, 1) != 0) {
            int key = lua_gettop(L) - 1;
            size_t kl;
            const char *k;
            if (lua_type(L, key) != LUA_TSTRING)
                luaL_argerror(L, 1, lua_pushfstring(L, "field names must be strings (got a %s key);"
                                                       " use an array of {key, value} pairs for ordered fields",
                                                    luaL_typename(L, key)));
            k = lua_tolstring(L, key, &kl); /* a key of the argument table: stays alive */
            cq_value(&q, k, kl, key + 1);
            lua_settop(L, key); /* keep the key for lua_next */
        }
    }

    /* one block: every key and value encoded, then the output */
    out_len = q.bytes + (q.n ? 2 * q.n - 1 : 0);
    need = q.bytes + out_len;
    scratch = need <= sizeof local_bytes ? local_bytes : (char *)lua_newuserdata(L, need);
    w = scratch;
    for (i = 0; i < q.n; i++) {
        cfield *f = &q.f[i];
        char *start = w;
        w = pct_write(w, f->k, f->kl);
        f->k = start; f->kl = (size_t)(w - start);
        start = w;
        w = pct_write(w, f->v, f->vl);
        f->v = start; f->vl = (size_t)(w - start);
    }
    if (q.n > 16) {
        qsort(q.f, q.n, sizeof *q.f, cq_cmp);
    } else { /* insertion sort: no allocation, few fields */
        for (i = 1; i < q.n; i++) {
            cfield x = q.f[i];
            size_t j = i;
            while (j > 0 && cq_less(&x, &q.f[j - 1])) {
                q.f[j] = q.f[j - 1];
                j--;
            }
            q.f[j] = x;
        }
    }
    out = w;
    for (i = 0; i < q.n; i++) {
        if (i > 0) *w++ = '&';
        memcpy(w, q.f[i].k, q.f[i].kl); w += q.f[i].kl;
        *w++ = '=';
        memcpy(w, q.f[i].v, q.f[i].vl); w += q.f[i].vl;
    }
    lua_pushlstring(L, out, (size_t)(w - out));
    return 1;
}

/* ---- money ---- */

static int check_exponent(lua_State *L, int arg)
{
    long long e = 0;
    if (!paykit_tosafeint(L, arg, &e) || e < 0 || e > MONEY_MAX_EXPONENT)
        luaL_argerror(L, arg, lua_pushfstring(L, "exponent must be a whole number from 0 to %d",
                                              MONEY_MAX_EXPONENT));
    return (int)e;
}

static int is_digit(char c) { return c >= '0' && c <= '9'; }

/* money_parse(str, exponent[, allow_negative]) -> minor units | nil, msg, code */
static int l_money_parse(lua_State *L)
{
    size_t len, i = 0, int_start, int_digits, frac_start = 0, frac_digits = 0, k;
    const char *s;
    int exp, neg = 0, has_dot = 0;
    unsigned long long v = 0;
    const unsigned long long max = (unsigned long long)PAYKIT_MAX_SAFE_INTEGER;

    if (lua_type(L, 1) != LUA_TSTRING)
        luaL_argerror(L, 1, lua_pushfstring(L, "decimal string expected, got %s", luaL_typename(L, 1)));
    s = lua_tolstring(L, 1, &len);
    exp = check_exponent(L, 2);

    if (len == 0)
        return paykit_fail(L, "empty", "amount is empty");
    if (s[0] == '+')
        return paykit_fail(L, "sign", "amount must not start with '+'; write the plain number");
    if (s[0] == '-') {
        if (!lua_toboolean(L, 3))
            return paykit_fail(L, "sign", "amount is negative; a negative amount is not allowed here");
        neg = 1;
        i = 1;
    }
    int_start = i;
    while (i < len && is_digit(s[i])) i++;
    int_digits = i - int_start;
    if (i < len && s[i] == '.') {
        has_dot = 1;
        frac_start = ++i;
        while (i < len && is_digit(s[i])) i++;
        frac_digits = i - frac_start;
    }
    if (i < len) {
        if ((s[i] == 'e' || s[i] == 'E') && (int_digits > 0 || frac_digits > 0))
            return paykit_fail(L, "exponent_notation",
                               "amount uses exponent notation; write it as a plain decimal like 1000.00");
        return paykit_fail(L, "invalid",
                           "amount has an unexpected character at position %d (only digits and one '.' are allowed)",
                           (int)i + 1);
    }
    if (int_digits == 0 && frac_digits == 0)
        return paykit_fail(L, "invalid", "amount has no digits");
    if (int_digits == 0)
        return paykit_fail(L, "invalid", "amount needs a digit before the decimal point (write 0.5, not .5)");
    if (has_dot && frac_digits == 0)
        return paykit_fail(L, "invalid", "amount ends with a decimal point; write the decimals or drop the point");
    if (frac_digits > (size_t)exp)
        return paykit_fail(L, "too_many_decimals",
                           frac_digits == 1 ? "amount has %d decimal, at most %d allowed"
                                            : "amount has %d decimals, at most %d allowed",
                           frac_digits > 1000 ? 1000 : (int)frac_digits, exp);

    for (k = int_start; k < len; k++) {
        unsigned d;
        if (s[k] == '.') continue;
        d = (unsigned)(s[k] - '0');
        if (v > (max - d) / 10)
            goto overflow;
        v = v * 10 + d;
    }
    for (k = frac_digits; k < (size_t)exp; k++) {
        if (v > max / 10)
            goto overflow;
        v *= 10;
    }
    paykit_pushsafeint(L, neg ? -(long long)v : (long long)v);
    return 1;

overflow:
    return paykit_fail(L, "overflow", "amount is too large: at most %s minor units (2^53-1) are supported",
                       "9007199254740991");
}

/* money_format(minor, exponent) -> "27.50" */
static int l_money_format(lua_State *L)
{
    long long minor = 0;
    unsigned long long a;
    int exp, n, o = 0;
    char digits[32], out[64];

    if (!paykit_tosafeint(L, 1, &minor))
        luaL_argerror(L, 1, "whole number of minor units within +-(2^53-1) expected");
    exp = check_exponent(L, 2);
    a = minor < 0 ? (unsigned long long)(-minor) : (unsigned long long)minor;
    n = snprintf(digits, sizeof digits, "%llu", a);

    if (minor < 0) out[o++] = '-';
    if (n <= exp) {
        int z;
        out[o++] = '0';
        out[o++] = '.';
        for (z = 0; z < exp - n; z++) out[o++] = '0';
        memcpy(out + o, digits, (size_t)n);
        o += n;
    } else {
        memcpy(out + o, digits, (size_t)(n - exp));
        o += n - exp;
        if (exp > 0) {
            out[o++] = '.';
            memcpy(out + o, digits + n - exp, (size_t)exp);
            o += exp;
        }
    }
    lua_pushlstring(L, out, (size_t)o);
    return 1;
}

/* ---- Zippy's transaction body: the common case checked and written in one call ----
 *
 * zippy_transaction(t, defaults, good_urls, currencies) -> json | nil
 *
 * A fast path for paykit.providers.zippy_request.transaction_body followed by the JSON
 * writer, for the common transaction only: every field a string (region also a whole number
 * 0..999), no price_minor, carrier and ext_transaction_id printable ASCII, the price a plain
 * decimal with two places, every URL one the instance already found valid (a key of
 * good_urls, with its flags below; printable ASCII without '"' or '\\'), the currency a key
 * of currencies. For anything else it answers nil and the
 * caller takes the Lua path (which gives the errors, naming the field): this accepts a subset
 * of what the Lua checks accept and writes the bytes paykit.kit.json.encode writes for the
 * body (members in byte order, '"' and '\' escaped). A provider-specific helper: a compiled
 * request shape (csrc/shape.c) may later take its place. */

enum {
    ZT_CALLBACK_ERROR_URL, ZT_CALLBACK_SUCCESS_URL, ZT_CARRIER, ZT_CURRENCY, ZT_ERROR_URL,
    ZT_EXT_TRANSACTION_ID, ZT_PAY_METHOD, ZT_PRICE, ZT_PRODUCT_ID, ZT_PRODUCT_IMAGE_URL,
    ZT_REGION, ZT_SUCCESS_URL, ZT_N
};

/* the body's members, in byte order (the JSON writer's order) */
static const char *const zt_names[ZT_N] = {
    "callback_error_url", "callback_success_url", "carrier", "currency", "error_url",
    "ext_transaction_id", "pay_method", "price", "product_id", "product_image_url", "region",
    "success_url",
};
static const size_t zt_lens[ZT_N] = { 18, 20, 7, 8, 9, 18, 10, 5, 10, 17, 6, 11 };

static int zt_field(const char *k, size_t kl)
{
    int i;
    for (i = 0; i < ZT_N; i++)
        if (zt_lens[i] == kl && k[0] == zt_names[i][0] && memcmp(zt_names[i], k, kl) == 0) return i;
    return -1;
}

/* 1..255 bytes of printable ASCII, not only spaces */
static int zt_text(const char *s, size_t n)
{
    size_t i;
    int seen = 0;
    if (n < 1 || n > 255) return 0;
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c > 0x7e) return 0;
        if (c != ' ') seen = 1;
    }
    return seen;
}

static int zt_uuid(const char *s, size_t n)
{
    size_t i;
    if (n != 36) return 0;
    for (i = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (s[i] != '-') return 0;
        } else if (paykit_hexval((unsigned char)s[i]) < 0) {
            return 0;
        }
    }
    return 1;
}

/* (0|[1-9][0-9]{0,12}).[0-9][0-9], more than zero */
static int zt_price(const char *s, size_t n)
{
    size_t i;
    int nonzero = 0;
    if (n < 4 || n > 16 || s[n - 3] != '.') return 0;
    if (s[0] == '0' && n != 4) return 0;
    for (i = 0; i < n; i++) {
        if (i == n - 3) continue;
        if (s[i] < '0' || s[i] > '9') return 0;
        if (s[i] != '0') nonzero = 1;
    }
    return nonzero;
}

/* Writes the JSON text of a string the fast path took (printable ASCII, '"' and '\'
 * escaped) at p (room for 2 * n + 2 bytes); returns the end. */
static char *zt_put_json(char *p, const char *s, size_t n, int escape)
{
    size_t i;
    *p++ = '"';
    if (!escape) {
        memcpy(p, s, n);
        p += n;
    } else {
        for (i = 0; i < n; i++) {
            if (s[i] == '"' || s[i] == '\\') *p++ = '\\';
            *p++ = s[i];
        }
    }
    *p++ = '"';
    return p;
}

/* A URL the fast path takes (the value on top of the stack): good (stack index 3) holds it
 * with its flags, set by the Lua checks (paykit.providers.zippy_request.remember_urls):
 * ZT_URL_PLAIN (printable ASCII without '"' or '\\': written as it is), ZT_URL_FRAGMENT (it
 * holds a '#': not for success_url or error_url). */
#define ZT_URL_PLAIN 1
#define ZT_URL_FRAGMENT 2
static int zt_url(lua_State *L, int no_fragment)
{
    long long flags = 0;
    int ok;
    lua_pushvalue(L, -1);
    lua_rawget(L, 3);
    ok = paykit_tosafeint(L, -1, &flags) && (flags & ZT_URL_PLAIN) && !(no_fragment && (flags & ZT_URL_FRAGMENT));
    lua_pop(L, 1);
    return ok;
}

#define ZT_IS_URL(f) ((f) == ZT_SUCCESS_URL || (f) == ZT_ERROR_URL || (f) == ZT_CALLBACK_SUCCESS_URL \
                      || (f) == ZT_CALLBACK_ERROR_URL || (f) == ZT_PRODUCT_IMAGE_URL)
#define ZT_NO_FRAGMENT(f) ((f) == ZT_SUCCESS_URL || (f) == ZT_ERROR_URL)

/* the checks of one value (on top of the stack) of field f; 0: not the common case */
static int zt_value(lua_State *L, int f, const char **v, size_t *vl, int *escape, char *region)
{
    if (f == ZT_REGION && lua_type(L, -1) == LUA_TNUMBER) {
        long long r;
        if (!paykit_tosafeint(L, -1, &r) || r < 0 || r > 999) return 0;
        region[0] = (char)('0' + r / 100);
        region[1] = (char)('0' + r / 10 % 10);
        region[2] = (char)('0' + r % 10);
        *v = region;
        *vl = 3;
        return 1;
    }
    if (lua_type(L, -1) != LUA_TSTRING) return 0;
    *v = lua_tolstring(L, -1, vl); /* the table holds it */
    switch (f) {
    case ZT_PRODUCT_ID: return zt_uuid(*v, *vl);
    case ZT_PRICE: return zt_price(*v, *vl);
    case ZT_PAY_METHOD:
        return (*vl == 4 && memcmp(*v, "CARD", 4) == 0) || (*vl == 8 && memcmp(*v, "OPERATOR", 8) == 0);
    case ZT_REGION:
        return *vl == 3 && (*v)[0] >= '0' && (*v)[0] <= '9' && (*v)[1] >= '0' && (*v)[1] <= '9'
            && (*v)[2] >= '0' && (*v)[2] <= '9';
    case ZT_CARRIER:
    case ZT_EXT_TRANSACTION_ID:
        if (memchr(*v, '"', *vl) != NULL || memchr(*v, '\\', *vl) != NULL) *escape = 1;
        return zt_text(*v, *vl);
    case ZT_CURRENCY: {
        int ok;
        lua_pushvalue(L, -1);
        lua_rawget(L, 4);
        ok = lua_toboolean(L, -1);
        lua_pop(L, 1);
        return ok;
    }
    default:
        return zt_url(L, ZT_NO_FRAGMENT(f));
    }
}

static int l_zippy_transaction(lua_State *L)
{
    const char *v[ZT_N];
    size_t vl[ZT_N];
    int esc[ZT_N];
    char region[4];
    int i, first = 1;
    luaL_checktype(L, 2, LUA_TTABLE);
    luaL_checktype(L, 3, LUA_TTABLE);
    luaL_checktype(L, 4, LUA_TTABLE);
    if (lua_type(L, 1) != LUA_TTABLE) return 0;
    lua_settop(L, 4);
    for (i = 0; i < ZT_N; i++) { v[i] = NULL; vl[i] = 0; esc[i] = 0; }
    region[3] = 0;
    lua_pushnil(L);
    while (lua_next(L, 1) != 0) {
        size_t kl;
        const char *k;
        int f;
        if (lua_type(L, -2) != LUA_TSTRING) return 0;
        k = lua_tolstring(L, -2, &kl);
        f = zt_field(k, kl);
        if (f < 0) return 0; /* price_minor, or an unknown field: the Lua path */
        if (!zt_value(L, f, &v[f], &vl[f], &esc[f], region)) return 0;
        lua_pop(L, 1);
    }
    /* the instance's default URLs where the transaction gives none (the defaults table holds them) */
    for (i = 0; i < ZT_N; i++) {
        if (v[i] != NULL || !ZT_IS_URL(i) || i == ZT_PRODUCT_IMAGE_URL) continue;
        lua_getfield(L, 2, zt_names[i]);
        if (lua_type(L, -1) != LUA_TSTRING) return 0;
        v[i] = lua_tolstring(L, -1, &vl[i]);
        if (!zt_url(L, ZT_NO_FRAGMENT(i))) return 0;
        lua_pop(L, 1);
    }
    /* every field but product_image_url is required */
    for (i = 0; i < ZT_N; i++)
        if (v[i] == NULL && i != ZT_PRODUCT_IMAGE_URL) return 0;
    {
        size_t need = 2;
        char small[4096], *out, *p;
        for (i = 0; i < ZT_N; i++)
            if (v[i] != NULL) need += zt_lens[i] + 2 * vl[i] + 6;
        out = need <= sizeof small ? small : (char *)lua_newuserdata(L, need);
        p = out;
        *p++ = '{';
        for (i = 0; i < ZT_N; i++) {
            if (v[i] == NULL) continue;
            if (!first) *p++ = ',';
            first = 0;
            *p++ = '"';
            memcpy(p, zt_names[i], zt_lens[i]);
            p += zt_lens[i];
            *p++ = '"';
            *p++ = ':';
            p = zt_put_json(p, v[i], vl[i], esc[i]);
        }
        *p++ = '}';
        lua_pushlstring(L, out, (size_t)(p - out));
    }
    return 1;
}

static const luaL_Reg codec_funcs[] = {
    {"pct_encode", l_pct_encode},
    {"zippy_transaction", l_zippy_transaction},
    {"pct_decode", l_pct_decode},
    {"form_encode", l_form_encode},
    {"form_decode", l_form_decode},
    {"query_decode", l_query_decode},
    {"canonical_query", l_canonical_query},
    {"money_parse", l_money_parse},
    {"money_format", l_money_format},
    {NULL, NULL},
};

void paykit_codec_register(lua_State *L)
{
    luaL_setfuncs(L, codec_funcs, 0);
}
