/*
 * json.c: JSON text to Lua values and back, exact for money.
 *
 *   core.json_encode(v[, opts])    -> text | nil, message, "unencodable"
 *   core.json_decode(text[, opts]) -> value | nil, message, "invalid_json"
 *   core.json_number("27.50")    -> a marker written as the number literal 27.50 (never a float)
 *   core.json_null               -> the null value (a NULL light userdata: equal to cjson.null)
 *   core.json_unknown_key(t, set)  -> the first key of t not in the set, or nothing
 *   core.json_raw(v)             -> v's JSON text, kept: json_encode writes it as it is
 *   core.json_keys(list)         -> an ordered object's member names written once (list[0])
 *   core.text_plain(s[, ml]), core.digits_luhn(s): byte checks of a body's values (below)
 *
 * The file has two layers. The first is plain C with no Lua in it (pj_*: UTF-8 checking, the
 * number grammar, an iterative parser that reports to callbacks), so that a fuzz target can
 * build it alone with -DPAYKIT_JSON_CORE_ONLY. The second binds it to Lua.
 *
 * Writer rules (json_encode):
 *  - nil inside a value is an error; core.json_null (or cjson.null) is null; booleans as such.
 *  - numbers: Lua 5.4 integers as integers; a float only when it is integral and within
 *    +-(2^53-1) (written as an integer; -0.0 is written 0). NaN, infinities and fractions are
 *    errors: money goes as core.json_number("27.50") or a decimal string, never as a float.
 *  - a table whose metatable has __json_number = f is the number literal t[f] (a string that
 *    must match the JSON number grammar); core.json_number makes one with f = 1.
 *  - a table whose metatable has __json_keys = kf and __json_values = vf is an object whose
 *    members are t[kf][i] = t[vf][i], in that order (paykit.gateway's ordered objects).
 *  - other tables: a sequence (t[1] ~= nil and exactly #t entries) is an array; a table with
 *    no t[1] is an object with its keys sorted by bytes (string keys, or integers written in
 *    decimal); an empty table is [] unless its metatable has __json_type = "object"
 *    (__json_type = "array" forces an array). A table with both t[1] and other keys, or
 *    with holes, is an error. Nesting deeper than opts.max_depth (default 64) is an error,
 *    which is also what a cycle gives.
 *  - strings: '"', '\' and the control bytes 0x00-0x1F escaped (\b \f \n \r \t, else
 *    \u00XX); '/' and non-ASCII are written as they are. A string that is not valid UTF-8
 *    (overlong forms, surrogates, beyond U+10FFFF, truncated) is an error naming its place,
 *    or with opts.invalid_utf8 = "replace" each bad byte becomes U+FFFD.
 *  - error messages name the place ($.a.b[3]) and the type, never the value.
 *
 * Reader rules (json_decode), RFC 8259 strict:
 *  - one value (any type) with optional whitespace (space, tab, CR, LF) around it; anything
 *    after it is an error; no comments, no trailing commas, no BOM, no NaN/Infinity.
 *  - strings must be valid UTF-8 without raw control bytes; escapes \" \\ \/ \b \f \n \r \t
 *    \uXXXX; a surrogate pair becomes its one code point; a lone surrogate is an error;
 *    \u0000 gives a NUL byte in the Lua string.
 *  - numbers: an integer literal within +-(2^53-1) is an integer (a Lua 5.4 integer; an exact
 *    double on LuaJIT); "-0" is the integer 0; other literals (fractions, exponents, larger
 *    integers) are floats (strtod, C locale). With opts.text = {Name = true, ...} the numbers
 *    that are direct members named so, or elements of arrays that are (`"Amount":[1.50]`),
 *    stay their literal text ("27.50" stays "27.50");
 *    opts.numbers = "text" keeps every number literal as text.
 *  - null is core.json_null (== cjson.null) unless opts.null gives another value.
 *  - a repeated member name is an error (RFC 7493 I-JSON), or with opts.duplicates = "last"
 *    the last one wins.
 *  - nesting deeper than opts.max_depth (default 64, at most 1000) is an error.
 *  - errors: nil, "json: <what> at byte <offset>" (offsets from 1), "invalid_json"; never the
 *    text itself.
 */
#ifdef PAYKIT_JSON_CORE_ONLY
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#else
#include "paykit.h"
#include "jsontext.h"
#include <math.h>
#include <stdio.h>
#endif

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#define PJ_MAX_DEPTH 1000

/* The pure C core is static inside paykit.core, and external in a -DPAYKIT_JSON_CORE_ONLY
 * build (a fuzz target links against it). */
#ifdef PAYKIT_JSON_CORE_ONLY
#define PJ_API
#else
#define PJ_API static
#endif

/* ------------------------------------------------------------------ pure C core */

/* Length (1-4) of the valid UTF-8 sequence at s, or 0 (jsontext.h). */
PJ_API size_t pj_utf8_len(const unsigned char *s, size_t n) { return paykit_utf8_len(s, n); }

/* Length of the JSON number literal at the start of s (0 when there is none); *is_int is set
 * when it has neither a fraction nor an exponent. */
PJ_API size_t pj_number_len(const char *s, size_t n, int *is_int)
{
    size_t i = 0;
    *is_int = 1;
    if (i < n && s[i] == '-') i++;
    if (i >= n) return 0;
    if (s[i] == '0') i++;
    else if (s[i] >= '1' && s[i] <= '9') { while (i < n && s[i] >= '0' && s[i] <= '9') i++; }
    else return 0;
    if (i < n && s[i] == '.') {
        i++;
        if (i >= n || s[i] < '0' || s[i] > '9') return 0;
        while (i < n && s[i] >= '0' && s[i] <= '9') i++;
        *is_int = 0;
    }
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < n && (s[i] == '+' || s[i] == '-')) i++;
        if (i >= n || s[i] < '0' || s[i] > '9') return 0;
        while (i < n && s[i] >= '0' && s[i] <= '9') i++;
        *is_int = 0;
    }
    return i;
}

/* Whether s (n bytes) is exactly one JSON number literal. */
PJ_API int pj_is_number(const char *s, size_t n)
{
    int is_int;
    return n > 0 && pj_number_len(s, n, &is_int) == n;
}

/* What the parser reports. Each callback returns 0 to stop the parse (its own error). */
typedef struct {
    int (*begin)(void *ud, int is_object);
    int (*end)(void *ud, int is_object);
    int (*key)(void *ud, const char *s, size_t n);
    int (*string)(void *ud, const char *s, size_t n);
    int (*number)(void *ud, const char *s, size_t n, int is_int);
    int (*literal)(void *ud, int which); /* 0 null, 1 false, 2 true */
} pj_sink;

typedef struct {
    size_t pos;      /* byte offset of the problem */
    const char *msg; /* static text; NULL when a callback stopped the parse */
} pj_error;

static int pj_hex4(const unsigned char *p, unsigned *out)
{
    unsigned v = 0;
    int i;
    for (i = 0; i < 4; i++) {
        unsigned char c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
        else return 0;
    }
    *out = v;
    return 1;
}

/* The bytes a string's fast loop passes: printable ASCII but '"' and '\\'. */
static const unsigned char PJ_STR_PLAIN[256] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
};

/* paykit_plain_run with PJ_STR_PLAIN: where SSE2 is there (every x86-64), 16 bytes at a time
 * while 16 are left (a signed compare below 0x20 flags the control bytes and every byte from
 * 0x80 up, as the table does; '"' and '\\' by equality), then the word and byte loops. */
static inline size_t pj_plain_run(const unsigned char *s, size_t i, size_t n)
{
#if defined(__SSE2__)
    const __m128i quote = _mm_set1_epi8('"'), bslash = _mm_set1_epi8('\\'), space = _mm_set1_epi8(0x20);
    while (i + 16 <= n) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(s + i));
        __m128i bad = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, bslash)),
                                   _mm_cmplt_epi8(v, space));
        unsigned mask = (unsigned)_mm_movemask_epi8(bad);
        if (mask) return i + (size_t)__builtin_ctz(mask);
        i += 16;
    }
#endif
    return paykit_plain_run(s, i, n, PJ_STR_PLAIN, 0);
}

/* Decodes the string whose opening quote is at s[*pos]; returns its length, or (size_t)-1
 * with e set. *pos ends after the closing quote. *res points at the decoded bytes: into s
 * itself when the string has no escape and no non-ASCII byte, else into out (never longer
 * than the source). */
static size_t pj_string(const unsigned char *s, size_t n, size_t *pos, char *out, pj_error *e, const char **res)
{
    size_t i = *pos + 1, o = 0;
    *res = out;
    for (;;) {
        size_t start = i;
        i = pj_plain_run(s, i, n); /* 16 or 8 bytes at a time where it can */
        if (o == 0 && i < n && s[i] == '"') {
            /* nothing to decode: the bytes as they are in the text */
            *res = (const char *)s + start;
            *pos = i + 1;
            return i - start;
        }
        if (i > start) { memcpy(out + o, s + start, i - start); o += i - start; }
        if (i >= n) { e->pos = *pos; e->msg = "unterminated string"; return (size_t)-1; }
        if (s[i] == '"') { *pos = i + 1; return o; }
        if (s[i] < 0x20) { e->pos = i; e->msg = "control character in a string"; return (size_t)-1; }
        if (s[i] >= 0x80) {
            size_t k = pj_utf8_len(s + i, n - i);
            if (k == 0) { e->pos = i; e->msg = "invalid UTF-8 in a string"; return (size_t)-1; }
            memcpy(out + o, s + i, k);
            o += k;
            i += k;
            continue;
        }
        /* a backslash */
        if (i + 1 >= n) { e->pos = i; e->msg = "unterminated string"; return (size_t)-1; }
        switch (s[i + 1]) {
        case '"': out[o++] = '"'; i += 2; break;
        case '\\': out[o++] = '\\'; i += 2; break;
        case '/': out[o++] = '/'; i += 2; break;
        case 'b': out[o++] = '\b'; i += 2; break;
        case 'f': out[o++] = '\f'; i += 2; break;
        case 'n': out[o++] = '\n'; i += 2; break;
        case 'r': out[o++] = '\r'; i += 2; break;
        case 't': out[o++] = '\t'; i += 2; break;
        case 'u': {
            unsigned cp, lo;
            if (i + 6 > n || !pj_hex4(s + i + 2, &cp)) { e->pos = i; e->msg = "bad \\u escape"; return (size_t)-1; }
            if (cp >= 0xDC00 && cp <= 0xDFFF) { e->pos = i; e->msg = "lone surrogate in a \\u escape"; return (size_t)-1; }
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                if (i + 12 > n || s[i + 6] != '\\' || s[i + 7] != 'u' || !pj_hex4(s + i + 8, &lo) || lo < 0xDC00 || lo > 0xDFFF) {
                    e->pos = i; e->msg = "lone surrogate in a \\u escape"; return (size_t)-1;
                }
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                i += 12;
            } else {
                i += 6;
            }
            if (cp < 0x80) out[o++] = (char)cp;
            else if (cp < 0x800) { out[o++] = (char)(0xC0 | (cp >> 6)); out[o++] = (char)(0x80 | (cp & 0x3F)); }
            else if (cp < 0x10000) {
                out[o++] = (char)(0xE0 | (cp >> 12)); out[o++] = (char)(0x80 | ((cp >> 6) & 0x3F));
                out[o++] = (char)(0x80 | (cp & 0x3F));
            } else {
                out[o++] = (char)(0xF0 | (cp >> 18)); out[o++] = (char)(0x80 | ((cp >> 12) & 0x3F));
                out[o++] = (char)(0x80 | ((cp >> 6) & 0x3F)); out[o++] = (char)(0x80 | (cp & 0x3F));
            }
            break;
        }
        default: e->pos = i; e->msg = "bad escape in a string"; return (size_t)-1;
        }
    }
}

/* pj_string for the usual string (no escape, nothing but printable ASCII): found where it is
 * read, without a call; anything else goes to pj_string, which reads it again from its start. */
static inline size_t pj_string_at(const unsigned char *s, size_t n, size_t *pos, char *out, pj_error *e,
                                  const char **res)
{
    size_t start = *pos + 1, i = pj_plain_run(s, start, n);
    if (i < n && s[i] == '"') {
        *res = (const char *)s + start;
        *pos = i + 1;
        return i - start;
    }
    return pj_string(s, n, pos, out, e, res);
}

#define PJ_WS(c) ((c) == ' ' || (c) == '\t' || (c) == '\n' || (c) == '\r')

/* Parses text (n bytes) and reports it to k. scratch must hold n bytes (decoded strings are
 * placed there, each in turn; a number literal is given where it is in the text). max_depth: 1..PJ_MAX_DEPTH.
 * Returns 1, or 0 with e set (e->msg NULL when a callback stopped). No allocation, no
 * recursion: a longjmp out of a callback leaks nothing. */
#if defined(__GNUC__)
#define PJ_INLINE static inline __attribute__((always_inline))
#else
#define PJ_INLINE static inline
#endif
PJ_INLINE int pj_parse_in(const char *text, size_t n, char *scratch, int max_depth, const pj_sink *k, void *ud,
                          pj_error *e)
{
    const unsigned char *s = (const unsigned char *)text;
    char stack[PJ_MAX_DEPTH]; /* 'o' object, 'a' array */
    int depth = 0;
    size_t i = 0;
    if (max_depth < 1) max_depth = 1;
    if (max_depth > PJ_MAX_DEPTH) max_depth = PJ_MAX_DEPTH;
    e->msg = NULL;
    e->pos = 0;

value:
    while (i < n && PJ_WS(s[i])) i++;
    if (i >= n) { e->pos = i; e->msg = "unexpected end of text"; return 0; }
    switch (s[i]) {
    case '{':
    case '[': {
        int obj = s[i] == '{';
        if (depth >= max_depth) { e->pos = i; e->msg = "nested too deep"; return 0; }
        if (!k->begin(ud, obj)) { e->pos = i; return 0; }
        stack[depth++] = obj ? 'o' : 'a';
        i++;
        while (i < n && PJ_WS(s[i])) i++;
        if (i < n && s[i] == (obj ? '}' : ']')) {
            i++;
            depth--;
            if (!k->end(ud, obj)) { e->pos = i; return 0; }
            goto after;
        }
        if (obj) goto member;
        goto value;
    }
    case '"': {
        const char *str;
        size_t at = i, len = pj_string_at(s, n, &i, scratch, e, &str);
        if (len == (size_t)-1) return 0;
        if (!k->string(ud, str, len)) { e->pos = at; return 0; }
        goto after;
    }
    case 't':
        if (n - i >= 4 && memcmp(s + i, "true", 4) == 0) {
            if (!k->literal(ud, 2)) { e->pos = i; return 0; }
            i += 4;
            goto after;
        }
        break;
    case 'f':
        if (n - i >= 5 && memcmp(s + i, "false", 5) == 0) {
            if (!k->literal(ud, 1)) { e->pos = i; return 0; }
            i += 5;
            goto after;
        }
        break;
    case 'n':
        if (n - i >= 4 && memcmp(s + i, "null", 4) == 0) {
            if (!k->literal(ud, 0)) { e->pos = i; return 0; }
            i += 4;
            goto after;
        }
        break;
    default:
        if (s[i] == '-' || (s[i] >= '0' && s[i] <= '9')) {
            int is_int;
            size_t len = pj_number_len(text + i, n - i, &is_int);
            if (len == 0) { e->pos = i; e->msg = "bad number"; return 0; }
            /* the literal as it is in the text (as a string without escapes is) */
            if (!k->number(ud, text + i, len, is_int)) { e->pos = i; return 0; }
            i += len;
            goto after;
        }
    }
    e->pos = i;
    e->msg = "unexpected character";
    return 0;

member: /* at a member name (after '{' or ',') */
    while (i < n && PJ_WS(s[i])) i++;
    if (i >= n || s[i] != '"') { e->pos = i; e->msg = "expected a member name"; return 0; }
    {
        const char *str;
        size_t at = i, len = pj_string_at(s, n, &i, scratch, e, &str);
        if (len == (size_t)-1) return 0;
        if (!k->key(ud, str, len)) { e->pos = at; return 0; }
    }
    while (i < n && PJ_WS(s[i])) i++;
    if (i >= n || s[i] != ':') { e->pos = i; e->msg = "expected ':'"; return 0; }
    i++;
    goto value;

after: /* after a complete value */
    while (i < n && PJ_WS(s[i])) i++;
    if (depth == 0) {
        if (i != n) { e->pos = i; e->msg = "text after the value"; return 0; }
        return 1;
    }
    if (i < n && s[i] == ',') {
        i++;
        if (stack[depth - 1] == 'o') goto member;
        goto value;
    }
    if (i < n && s[i] == (stack[depth - 1] == 'o' ? '}' : ']')) {
        int obj = stack[depth - 1] == 'o';
        i++;
        depth--;
        if (!k->end(ud, obj)) { e->pos = i; return 0; }
        goto after;
    }
    e->pos = i;
    e->msg = stack[depth - 1] == 'o' ? "expected ',' or '}'" : "expected ',' or ']'";
    return 0;
}

/* pj_parse_in as a function of its own (the C core's entry point; paykit.core's readers call
 * pj_parse_in with their sink, so that the compiler inlines its callbacks) */
#ifdef PAYKIT_JSON_CORE_ONLY
PJ_API int pj_parse(const char *text, size_t n, char *scratch, int max_depth, const pj_sink *k, void *ud, pj_error *e)
{
    return pj_parse_in(text, n, scratch, max_depth, k, ud, e);
}
#endif

#ifndef PAYKIT_JSON_CORE_ONLY
/* ------------------------------------------------------------------ Lua: the reader */

typedef struct {
    lua_State *L;
    int depth;
    int text_set;   /* stack index of opts.text, or 0 */
    int all_text;   /* opts.numbers == "text" */
    int null_idx;   /* stack index of opts.null, or 0 for json_null */
    int dup_last;   /* opts.duplicates == "last" */
    const char *err; /* a sink-side error */
    char kind[PJ_MAX_DEPTH + 1];
    char arr_text[PJ_MAX_DEPTH + 1]; /* an array whose numbers are text: the value of a member
                                        named in opts.text (directly or in nested arrays) */
    lua_Integer count[PJ_MAX_DEPTH + 1];
} lsink;

/* Whether the member name on top of the stack is in opts.text. */
static int ls_named_text(lsink *k)
{
    int t;
    lua_pushvalue(k->L, -1);
    lua_rawget(k->L, k->text_set);
    t = lua_toboolean(k->L, -1);
    lua_pop(k->L, 1);
    return t;
}

/* The value on top goes into the container below it (or stays, at depth 0). */
static int ls_store(lsink *k)
{
    lua_State *L = k->L;
    if (k->depth == 0) return 1;
    if (k->kind[k->depth] == 'a') {
        lua_rawseti(L, -2, (int)++k->count[k->depth]);
        return 1;
    }
    /* object: table, key, value */
    if (!k->dup_last) {
        lua_pushvalue(L, -2);
        lua_rawget(L, -4);
        if (!lua_isnil(L, -1)) { k->err = "repeated member name"; return 0; }
        lua_pop(L, 1);
    }
    lua_rawset(L, -3);
    return 1;
}

static int ls_begin(void *ud, int is_object)
{
    lsink *k = (lsink *)ud;
    char text = 0;
    if (!lua_checkstack(k->L, 4)) { k->err = "nested too deep for the Lua stack"; return 0; }
    if (!is_object && k->text_set && k->depth > 0)
        text = k->kind[k->depth] == 'o' ? (char)ls_named_text(k) : k->arr_text[k->depth];
    /* room for a few members up front: an answer's objects rarely have fewer, and a table
       grown from empty is rehashed at 1, 2 and 4 members */
    if (is_object) lua_createtable(k->L, 0, 4);
    else lua_newtable(k->L);
    k->depth++;
    k->kind[k->depth] = is_object ? 'o' : 'a';
    k->arr_text[k->depth] = text;
    k->count[k->depth] = 0;
    return 1;
}

static int ls_end(void *ud, int is_object)
{
    lsink *k = (lsink *)ud;
    (void)is_object;
    k->depth--;
    return ls_store(k);
}

static int ls_key(void *ud, const char *s, size_t n)
{
    lua_pushlstring(((lsink *)ud)->L, s, n);
    return 1;
}

static int ls_string(void *ud, const char *s, size_t n)
{
    lsink *k = (lsink *)ud;
    lua_pushlstring(k->L, s, n);
    return ls_store(k);
}

/* Pushes a number literal as json_decode reads it: an integer within +-(2^53-1) as an
 * integer, else a float (strtod, C locale). */
static void push_number(lua_State *L, const char *s, size_t n, int is_int)
{
    if (is_int && n <= 17) {
        /* at most 16 digits (plus a sign) cannot overflow; range-check against 2^53-1 */
        long long v = 0;
        size_t i = s[0] == '-' ? 1 : 0;
        for (; i < n; i++) v = v * 10 + (s[i] - '0');
        if (v <= PAYKIT_MAX_SAFE_INTEGER) {
            paykit_pushsafeint(L, s[0] == '-' ? -v : v);
            return;
        }
    }
    {
        char buf[64];
        char *p = buf, *end;
        double d;
        if (n >= sizeof buf) {
            p = (char *)lua_newuserdata(L, n + 1);
        }
        memcpy(p, s, n);
        p[n] = '\0';
        d = strtod(p, &end);
        if (p != buf) lua_pop(L, 1);
        lua_pushnumber(L, (lua_Number)d);
    }
}

static int ls_number(void *ud, const char *s, size_t n, int is_int)
{
    lsink *k = (lsink *)ud;
    lua_State *L = k->L;
    int as_text = k->all_text;
    if (!as_text && k->text_set && k->depth > 0)
        as_text = k->kind[k->depth] == 'o' ? ls_named_text(k) /* the member name */ : k->arr_text[k->depth];
    if (as_text) lua_pushlstring(L, s, n);
    else push_number(L, s, n, is_int);
    return ls_store(k);
}

static int ls_literal(void *ud, int which)
{
    lsink *k = (lsink *)ud;
    if (which == 0) {
        if (k->null_idx) lua_pushvalue(k->L, k->null_idx);
        else lua_pushlightuserdata(k->L, NULL);
    } else {
        lua_pushboolean(k->L, which == 2);
    }
    return ls_store(k);
}

static const pj_sink LUA_SINK = { ls_begin, ls_end, ls_key, ls_string, ls_number, ls_literal };

static int opt_field(lua_State *L, int opts, const char *name)
{
    if (opts == 0) { lua_pushnil(L); return LUA_TNIL; }
    lua_getfield(L, opts, name);
    return lua_type(L, -1);
}

/* core.json_decode(text[, opts]) */
static int l_json_decode(lua_State *L)
{
    size_t n;
    const char *text = luaL_checklstring(L, 1, &n);
    int opts = lua_isnoneornil(L, 2) ? 0 : 2;
    int max_depth = 64;
    lsink k;
    pj_error e;
    char small[2048];
    char *scratch;
    int base;
    if (opts) luaL_checktype(L, 2, LUA_TTABLE);
    /* the scalars only: kind/arr_text/count[d] are written when depth d begins, before any
       read (zeroing the ~10 KB of arrays cost more than parsing a small answer) */
    k.L = L;
    k.depth = 0;
    k.text_set = 0;
    k.all_text = 0;
    k.null_idx = 0;
    k.dup_last = 0;
    k.err = NULL;
    k.kind[0] = 0;
    k.arr_text[0] = 0;
    k.count[0] = 0;
    lua_settop(L, 2);
    /* 3: opts.text, 4: opts.null, 5: scratch */
    if (opt_field(L, opts, "text") == LUA_TTABLE) k.text_set = 3;
    else if (!lua_isnil(L, -1)) return luaL_argerror(L, 2, "opts.text must be a table of member names");
    if (opt_field(L, opts, "null") != LUA_TNIL) k.null_idx = 4;
    if (opt_field(L, opts, "numbers") != LUA_TNIL) {
        const char *v = lua_tostring(L, -1);
        if (v == NULL || strcmp(v, "text") != 0) return luaL_argerror(L, 2, "opts.numbers must be \"text\"");
        k.all_text = 1;
    }
    lua_pop(L, 1);
    if (opt_field(L, opts, "duplicates") != LUA_TNIL) {
        const char *v = lua_tostring(L, -1);
        if (v == NULL || (strcmp(v, "last") != 0 && strcmp(v, "error") != 0))
            return luaL_argerror(L, 2, "opts.duplicates must be \"error\" or \"last\"");
        k.dup_last = strcmp(v, "last") == 0;
    }
    lua_pop(L, 1);
    if (opt_field(L, opts, "max_depth") != LUA_TNIL) {
        long long d;
        if (!paykit_tosafeint(L, -1, &d) || d < 1 || d > PJ_MAX_DEPTH)
            return luaL_argerror(L, 2, "opts.max_depth must be an integer from 1 to 1000");
        max_depth = (int)d;
    }
    lua_pop(L, 1);
    /* 5: the strings' scratch space: on the C stack for a small text (nothing to free when a
       Lua error unwinds), else a userdata freed by the GC, whatever happens */
    if (n < sizeof small) { scratch = small; lua_pushnil(L); }
    else scratch = (char *)lua_newuserdata(L, n + 1);
    base = lua_gettop(L);
    if (!pj_parse_in(text, n, scratch, max_depth, &LUA_SINK, &k, &e)) {
        lua_settop(L, base);
        lua_pushnil(L);
        lua_pushfstring(L, "json: %s at byte %d", e.msg ? e.msg : (k.err ? k.err : "error"), (int)e.pos + 1);
        lua_pushliteral(L, "invalid_json");
        return 3;
    }
    return 1;
}

/* ------------------------------------------------------------------ Lua: the picking reader */

/* core.json_map(paths[, opts]) compiles the members an answer's reading needs;
 * core.json_pick(text, map) parses the whole text exactly as json_decode does (the same
 * validation, depth limit and error messages; a repeated member name: the last one wins, the
 * kit's reading) but builds only what the map names:
 *   -> kind, v1, ..., vN   kind "object", "array", "string", "number", "boolean" or "null" (the
 *                          top-level value's); vi the value at paths[i], nil when absent
 *   -> nil, message, "invalid_json"
 * A path is a member name or a list of names from the top-level object down ({"Data", "Url"}).
 * The value at a path that no other path goes below is what json_decode gives there (a table
 * for an object or array, with the same text/number rules); at a path that another one goes
 * below it is the scalar itself, or core.json_object_mark / core.json_array_mark for an object
 * or an array (its members are read only through the longer paths). Paths never go into arrays.
 * opts (of json_map): `text` (a set of member names) and `numbers = "text"` as json_decode's,
 * `max_depth` (default 64), `null = "absent"`: a null at a path is nil (inside a value built
 * at a path it stays core.json_null).
 * opts.names (a list of strings, one per path) makes json_pick answer a table instead:
 *   -> kind, t   t[names[i]] = the value at paths[i] (nil ones absent); a path below another one
 *                goes into that one's table: a path that others go below is a fresh table of
 *                theirs when its value is an object or an array, else absent
 * opts.kinds (names to "string", "array" or "integer", with opts.names) filters a value:
 * "string" keeps only a string (numbers kept as text are strings), "array" only an array,
 * "integer" makes a string of decimal digits (with an optional '-') the number tonumber makes
 * of it, then a float with an integral value an integer when one holds it (Lua 5.4; LuaJIT
 * keeps the number), as `paykit.providers.mocopay_wire`'s reading of whole numbers did.
 * opts.keep_strings = true: the map keeps, per path, the Lua string of the last string (or
 * number kept as text, up to PK_KEEP_MAX bytes) picked there, and a pick that finds the same
 * bytes there again gives that string (no hashing, no new string): the same values, for an
 * answer whose values repeat from call to call. A path whose value differed twice in a row is
 * paused (PK_KEEP_PAUSE). The last answer's strings then stay alive until the next pick
 * replaces them: not for a map that reads a secret. */

#define PK_MAX_PATHS 100
#define PK_MAX_NODES 256
#define PK_MAX_PATH_LEN 32
#define PK_KEEP_MAX 256 /* opts.keep_strings: the longest string kept */
/* opts.keep_strings: a path whose kept string differed from the one picked twice in a row is
 * not looked at (nor kept) for the next PK_KEEP_PAUSE - 2 picks, then looked at again: a value
 * that changes on every answer (an id, a time) costs little more than with no keeping */
#define PK_KEEP_PAUSE 16

static const char PK_OBJECT_TAG = 'o', PK_ARRAY_TAG = 'a';

typedef struct {
    int child, sibling; /* node indexes, -1 none */
    int up;             /* the parent node, -1 for the root */
    int slot;           /* 1-based place among the paths, 0: no path ends here */
    int leaf;           /* a path ends here and none goes below */
    int text;           /* its numbers stay text */
    size_t off, len;    /* the member name in names[] */
    uint64_t lens;      /* the lengths of its children's names: bit n for n (bit 63: 63 or more) */
} pknode;

/* The bit of pknode.lens for a name of n bytes. */
#define PK_LEN_BIT(n) (1ULL << ((n) < 63 ? (n) : 63))

#define PK_KIND_STRING 1
#define PK_KIND_ARRAY 2
#define PK_KIND_INTEGER 3

typedef struct {
    int nnodes, npaths, all_text, max_depth, text_ref, null_absent;
    int names_ref; /* opts.names (a list), or LUA_NOREF: the values are returned one by one */
    int keep_ref;  /* opts.keep_strings: per path the string last picked there, or LUA_NOREF */
    int ntop;      /* with names: the paths that go into the answer's table itself */
    short parent[PK_MAX_PATHS + 1];       /* per path: the path whose table it goes into, 0 the answer's */
    short nchild[PK_MAX_PATHS + 1];       /* per path: the paths going into its table (0: not a table) */
    unsigned char kind[PK_MAX_PATHS + 1]; /* per path: PK_KIND_*, 0 any value */
    unsigned char keep_miss[PK_MAX_PATHS + 1]; /* opts.keep_strings: per path, misses in a row (PK_KEEP_PAUSE) */
    int node_of[PK_MAX_PATHS + 1];        /* per path: its node */
    pknode node[PK_MAX_NODES];
    size_t names_len, names_cap;
    char names[1];
} pkmap;

static int pkmap_gc(lua_State *L)
{
    pkmap *m = (pkmap *)lua_touserdata(L, 1);
    if (m && m->text_ref != LUA_NOREF) {
        luaL_unref(L, LUA_REGISTRYINDEX, m->text_ref);
        m->text_ref = LUA_NOREF;
    }
    if (m && m->names_ref != LUA_NOREF) {
        luaL_unref(L, LUA_REGISTRYINDEX, m->names_ref);
        m->names_ref = LUA_NOREF;
    }
    if (m && m->keep_ref != LUA_NOREF) {
        luaL_unref(L, LUA_REGISTRYINDEX, m->keep_ref);
        m->keep_ref = LUA_NOREF;
    }
    return 0;
}

/* the child of node p named s, created when missing (-1 when the map is full) */
static int pk_child(pkmap *m, int p, const char *s, size_t n)
{
    int c, last = -1;
    for (c = m->node[p].child; c >= 0; c = m->node[c].sibling) {
        if (m->node[c].len == n && memcmp(m->names + m->node[c].off, s, n) == 0) return c;
        last = c;
    }
    if (m->nnodes >= PK_MAX_NODES || m->names_len + n > m->names_cap) return -1;
    c = m->nnodes++;
    m->node[c].child = m->node[c].sibling = -1;
    m->node[c].up = p;
    m->node[c].slot = m->node[c].leaf = m->node[c].text = 0;
    m->node[c].off = m->names_len;
    m->node[c].len = n;
    m->node[c].lens = 0;
    m->node[p].lens |= PK_LEN_BIT(n);
    memcpy(m->names + m->names_len, s, n);
    m->names_len += n;
    if (last < 0) m->node[p].child = c;
    else m->node[last].sibling = c;
    return c;
}

/* opts.names and opts.kinds of json_map (opts at 2, the map at 3). Returns 0, or 1 with the
 * reason pushed. */
static int pk_names(lua_State *L, pkmap *m, int npaths)
{
    int i;
    lua_getfield(L, 2, "names");
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        lua_getfield(L, 2, "kinds");
        if (!lua_isnil(L, -1)) { lua_pushliteral(L, "opts.kinds needs opts.names"); return 1; }
        lua_pop(L, 1);
        return 0;
    }
    if (lua_type(L, -1) != LUA_TTABLE || (int)lua_rawlen(L, -1) != npaths) {
        lua_pushliteral(L, "opts.names must be a list of one name per path");
        return 1;
    }
    lua_getfield(L, 2, "kinds");
    if (!lua_isnil(L, -1) && lua_type(L, -1) != LUA_TTABLE) {
        lua_pushliteral(L, "opts.kinds must be a table of names to kinds");
        return 1;
    }
    /* -2 names, -1 kinds */
    lua_createtable(L, npaths, 0); /* the names kept: a copy, as strings */
    for (i = 1; i <= npaths; i++) {
        lua_rawgeti(L, -3, i);
        if (lua_type(L, -1) != LUA_TSTRING) { lua_pushliteral(L, "opts.names must be a list of one name per path"); return 1; }
        if (!lua_isnil(L, -3)) {
            lua_pushvalue(L, -1);
            lua_rawget(L, -4);
            if (!lua_isnil(L, -1)) {
                const char *k = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "";
                if (strcmp(k, "string") == 0) m->kind[i] = PK_KIND_STRING;
                else if (strcmp(k, "array") == 0) m->kind[i] = PK_KIND_ARRAY;
                else if (strcmp(k, "integer") == 0) m->kind[i] = PK_KIND_INTEGER;
                else { lua_pushliteral(L, "opts.kinds: a kind is \"string\", \"array\" or \"integer\""); return 1; }
            }
            lua_pop(L, 1);
        }
        lua_rawseti(L, -2, i);
    }
    for (i = 1; i <= npaths; i++) {
        if (m->parent[i]) m->nchild[m->parent[i]]++;
        else m->ntop++;
    }
    for (i = 1; i <= npaths; i++)
        if (m->nchild[i] && m->kind[i]) { lua_pushliteral(L, "opts.kinds: a path others go below takes no kind"); return 1; }
    m->names_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_pop(L, 2);
    return 0;
}

/* core.json_map(paths[, opts]); upvalue 1: the maps' metatable */
static int l_json_map(lua_State *L)
{
    int npaths, i, j, opts;
    size_t total = 0;
    pkmap *m;
    luaL_checktype(L, 1, LUA_TTABLE);
    opts = lua_isnoneornil(L, 2) ? 0 : 2;
    if (opts) luaL_checktype(L, 2, LUA_TTABLE);
    lua_settop(L, 2);
    npaths = (int)lua_rawlen(L, 1);
    if (npaths < 1 || npaths > PK_MAX_PATHS) return luaL_argerror(L, 1, "paths must be a list of 1 to 100 paths");
    /* the names' room: every name of every path */
    for (i = 1; i <= npaths; i++) {
        lua_rawgeti(L, 1, i);
        if (lua_type(L, -1) == LUA_TSTRING) total += lua_rawlen(L, -1);
        else if (lua_type(L, -1) == LUA_TTABLE) {
            int len = (int)lua_rawlen(L, -1);
            if (len < 1 || len > PK_MAX_PATH_LEN) return luaL_argerror(L, 1, "a path must be a list of 1 to 32 member names");
            for (j = 1; j <= len; j++) {
                lua_rawgeti(L, -1, j);
                if (lua_type(L, -1) != LUA_TSTRING) return luaL_argerror(L, 1, "a path's member names must be strings");
                total += lua_rawlen(L, -1);
                lua_pop(L, 1);
            }
        } else return luaL_argerror(L, 1, "a path must be a member name or a list of member names");
        lua_pop(L, 1);
    }
    m = (pkmap *)lua_newuserdata(L, sizeof(pkmap) + total);
    m->text_ref = LUA_NOREF;
    m->names_ref = LUA_NOREF;
    m->keep_ref = LUA_NOREF;
    m->ntop = 0;
    m->nnodes = 1;
    m->npaths = npaths;
    m->all_text = 0;
    m->null_absent = 0;
    m->max_depth = 64;
    m->names_len = 0;
    m->names_cap = total;
    m->node[0].child = m->node[0].sibling = m->node[0].up = -1;
    m->node[0].slot = m->node[0].leaf = m->node[0].text = 0;
    m->node[0].off = m->node[0].len = 0;
    m->node[0].lens = 0;
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_setmetatable(L, -2);
    /* stack: 1 paths, 2 opts, 3 map */
    for (i = 1; i <= npaths; i++) {
        int p = 0, len = 1, c = -1;
        lua_rawgeti(L, 1, i);
        if (lua_type(L, -1) == LUA_TTABLE) len = (int)lua_rawlen(L, -1);
        for (j = 1; j <= len; j++) {
            size_t n;
            const char *s;
            if (lua_type(L, 4) == LUA_TTABLE) lua_rawgeti(L, 4, j);
            else lua_pushvalue(L, 4);
            s = lua_tolstring(L, -1, &n);
            c = pk_child(m, p, s, n);
            lua_pop(L, 1);
            if (c < 0) return luaL_argerror(L, 1, "too many member names (at most 256)");
            p = c;
        }
        if (m->node[c].slot) return luaL_argerror(L, 1, "a path is given twice");
        m->node[c].slot = i;
        m->node_of[i] = c;
        m->kind[i] = 0;
        m->nchild[i] = 0;
        lua_pop(L, 1);
    }
    /* each path's nearest path above it (0: none) */
    for (i = 1; i <= npaths; i++) {
        int up = m->node[m->node_of[i]].up;
        while (up > 0 && !m->node[up].slot) up = m->node[up].up;
        m->parent[i] = (short)(up > 0 ? m->node[up].slot : 0);
    }
    for (i = 1; i < m->nnodes; i++) m->node[i].leaf = m->node[i].slot && m->node[i].child < 0;
    if (opts) {
        lua_getfield(L, 2, "numbers");
        if (!lua_isnil(L, -1)) {
            const char *v = lua_tostring(L, -1);
            if (v == NULL || strcmp(v, "text") != 0) return luaL_argerror(L, 2, "opts.numbers must be \"text\"");
            m->all_text = 1;
        }
        lua_pop(L, 1);
        lua_getfield(L, 2, "null");
        if (!lua_isnil(L, -1)) {
            const char *v = lua_tostring(L, -1);
            if (v == NULL || strcmp(v, "absent") != 0) return luaL_argerror(L, 2, "opts.null must be \"absent\"");
            m->null_absent = 1;
        }
        lua_pop(L, 1);
        lua_getfield(L, 2, "max_depth");
        if (!lua_isnil(L, -1)) {
            long long d;
            if (!paykit_tosafeint(L, -1, &d) || d < 1 || d > PJ_MAX_DEPTH)
                return luaL_argerror(L, 2, "opts.max_depth must be an integer from 1 to 1000");
            m->max_depth = (int)d;
        }
        lua_pop(L, 1);
        lua_getfield(L, 2, "text");
        if (lua_type(L, -1) == LUA_TTABLE) {
            for (i = 1; i < m->nnodes; i++) {
                lua_pushlstring(L, m->names + m->node[i].off, m->node[i].len);
                lua_rawget(L, -2);
                m->node[i].text = lua_toboolean(L, -1);
                lua_pop(L, 1);
            }
            m->text_ref = luaL_ref(L, LUA_REGISTRYINDEX); /* pops opts.text */
        } else if (!lua_isnil(L, -1)) {
            return luaL_argerror(L, 2, "opts.text must be a table of member names");
        } else {
            lua_pop(L, 1);
        }
        if (pk_names(L, m, npaths)) return luaL_argerror(L, 2, lua_tostring(L, -1));
        lua_getfield(L, 2, "keep_strings");
        if (lua_toboolean(L, -1)) {
            memset(m->keep_miss, 0, sizeof m->keep_miss);
            lua_createtable(L, npaths, 0);
            m->keep_ref = luaL_ref(L, LUA_REGISTRYINDEX);
        }
        lua_pop(L, 1);
    }
    return 1;
}

typedef struct {
    lua_State *L;
    const pkmap *m;
    int base;       /* the kind at base + 1, the value of path i at base + 1 + i */
    int depth;      /* containers open outside a built value */
    int pending;    /* the node the last member name matched, -1 none */
    int building;   /* a path's value is being built by ls */
    int build_node;
    const char *top;
    short at[PJ_MAX_DEPTH + 2]; /* per depth: the node of that object, -1 when nothing is picked in it */
    unsigned char seen[PK_MAX_NODES];
    unsigned char array[PK_MAX_PATHS + 1]; /* per path: the value last built there is an array */
    int names, res; /* with opts.names: the stack indexes of the names and of the answer's table */
    int keep;       /* with opts.keep_strings: the stack index of the kept strings, else 0 */
    unsigned char *keep_miss; /* with opts.keep_strings: the map's keep_miss */
    short hint[PK_MAX_NODES]; /* per node: the child whose name is tried first, -1 the first */
    lsink ls;
} psink;

static void pk_integer(lua_State *L, int idx);

/* the top-level kinds, in the order of json_pick's upvalues 2-7 ("object" first: the usual one) */
static const char *const PK_KINDS[] = { "object", "array", "string", "number", "boolean", "null", NULL };

/* With opts.names, the name path slot's value goes under (pushed before its value is, so
 * that pk_put's lua_rawset takes both as they are); without, nothing. */
static inline void pk_push_name(psink *k, int slot)
{
    if (k->names) lua_rawgeti(k->L, k->names, slot);
}

/* The value on top (popped) is path slot's: its stack slot, or with opts.names (its name,
 * pk_push_name's, below it, popped too) its field in the answer's table (or in the table of
 * the path it is below), filtered by its kind. A value a kind refuses, or a container's value
 * that is not its table, is nil (a repeated member's earlier value is gone). */
static void pk_put(psink *k, int slot)
{
    lua_State *L = k->L;
    const pkmap *m = k->m;
    int dst, t;
    if (!k->names) {
        lua_replace(L, k->base + 1 + slot);
        return;
    }
    t = lua_type(L, -1);
    if (t != LUA_TNIL) {
        int keep = 1;
        if (m->nchild[slot]) keep = t == LUA_TTABLE;
        else if (m->kind[slot] == PK_KIND_STRING) keep = t == LUA_TSTRING;
        else if (m->kind[slot] == PK_KIND_ARRAY) keep = t == LUA_TTABLE && k->array[slot];
        else if (m->kind[slot] == PK_KIND_INTEGER) pk_integer(L, lua_gettop(L));
        if (!keep) {
            lua_pop(L, 1);
            lua_pushnil(L);
        }
    }
    if (m->parent[slot]) {
        dst = k->base + 1 + m->parent[slot];
        if (lua_type(L, dst) != LUA_TTABLE) {
            lua_pop(L, 2);
            return;
        }
    } else {
        dst = k->res;
    }
    lua_rawset(L, dst);
}

/* A repeated member (the last one wins): what was read below its earlier value is forgotten. */
static void pk_forget(psink *k, int n)
{
    int c;
    for (c = k->m->node[n].child; c >= 0; c = k->m->node[c].sibling) {
        if (k->m->node[c].slot) {
            lua_pushnil(k->L);
            lua_replace(k->L, k->base + 1 + k->m->node[c].slot);
        }
        if (k->seen[c]) {
            k->seen[c] = 0;
            pk_forget(k, c);
        }
    }
}

/* Whether the n bytes at a and b are the same: a member name or a kept string, mostly short
 * (memcmp's call costs more than these loads). */
static inline int pk_same(const char *a, const char *b, size_t n)
{
    /* words, the last one overlapping the one before it (no byte loop, never past n) */
    if (n >= 8) {
        uint64_t x, y;
        size_t i;
        for (i = 0; i + 8 < n; i += 8) {
            memcpy(&x, a + i, 8);
            memcpy(&y, b + i, 8);
            if (x != y) return 0;
        }
        memcpy(&x, a + n - 8, 8);
        memcpy(&y, b + n - 8, 8);
        return x == y;
    }
    if (n >= 4) {
        uint32_t x, y, u, v;
        memcpy(&x, a, 4);
        memcpy(&y, b, 4);
        memcpy(&u, a + n - 4, 4);
        memcpy(&v, b + n - 4, 4);
        return x == y && u == v;
    }
    if (n >= 2) {
        uint16_t x, y, u, v;
        memcpy(&x, a, 2);
        memcpy(&y, b, 2);
        memcpy(&u, a + n - 2, 2);
        memcpy(&v, b + n - 2, 2);
        return x == y && u == v;
    }
    return n == 0 || *a == *b;
}

/* The node a value in an object at the current depth belongs to, or -1. */
static int pk_take(psink *k)
{
    int n = k->pending;
    if (k->at[k->depth] < 0 || n < 0) return -1;
    k->pending = -1;
    if (k->seen[n]) pk_forget(k, n);
    k->seen[n] = 1;
    return n;
}

static int pk_begin(void *ud, int is_object)
{
    psink *k = (psink *)ud;
    int n;
    if (k->building) return ls_begin(&k->ls, is_object);
    if (k->depth == 0) {
        k->top = is_object ? "object" : "array";
        k->depth = 1;
        k->at[1] = is_object ? 0 : -1;
        return 1;
    }
    n = pk_take(k);
    if (n >= 0 && k->m->node[n].leaf) {
        k->building = 1;
        k->build_node = n;
        k->array[k->m->node[n].slot] = (unsigned char)!is_object;
        k->ls.depth = 0;
        pk_push_name(k, k->m->node[n].slot); /* below the value built (pk_end puts it) */
        if (!ls_begin(&k->ls, is_object)) return 0;
        if (!is_object) k->ls.arr_text[1] = (char)(k->m->all_text || k->m->node[n].text);
        return 1;
    }
    if (n >= 0 && k->m->node[n].slot) {
        int slot = k->m->node[n].slot;
        if (k->names) {
            /* the table the paths below go into, in its slot and in its place */
            pk_push_name(k, slot);
            lua_createtable(k->L, 0, k->m->nchild[slot]);
            lua_pushvalue(k->L, -1);
            lua_replace(k->L, k->base + 1 + slot);
        } else {
            lua_pushlightuserdata(k->L, (void *)(is_object ? &PK_OBJECT_TAG : &PK_ARRAY_TAG));
        }
        pk_put(k, slot);
    }
    k->depth++;
    k->at[k->depth] = (short)(n >= 0 && is_object ? n : -1);
    k->pending = -1;
    return 1;
}

static int pk_end(void *ud, int is_object)
{
    psink *k = (psink *)ud;
    if (k->building) {
        if (!ls_end(&k->ls, is_object)) return 0;
        if (k->ls.depth == 0) {
            pk_put(k, k->m->node[k->build_node].slot);
            k->building = 0;
        }
        return 1;
    }
    k->depth--;
    k->pending = -1;
    return 1;
}

static int pk_key(void *ud, const char *s, size_t n)
{
    psink *k = (psink *)ud;
    int p, c;
    if (k->building) return ls_key(&k->ls, s, n);
    k->pending = -1;
    p = k->at[k->depth];
    if (p < 0) return 1;
    /* no child's name has this length: not one of them (most members a map does not read) */
    if (!(k->m->node[p].lens & PK_LEN_BIT(n))) return 1;
    /* answers mostly come in the map's order: the search starts after the last match */
    {
        const pknode *node = k->m->node;
        int first = node[p].child, start = k->hint[p] >= 0 ? k->hint[p] : first;
        c = start;
        do {
            if (node[c].len == n && pk_same(k->m->names + node[c].off, s, n)) {
                k->pending = c;
                k->hint[p] = (short)(node[c].sibling >= 0 ? node[c].sibling : first);
                return 1;
            }
            c = node[c].sibling >= 0 ? node[c].sibling : first;
        } while (c != start);
    }
    return 1;
}

/* The node whose slot a scalar goes to (its value to be pushed), or -1. */
static int pk_scalar(psink *k, const char *kind)
{
    int n;
    if (k->depth == 0) { k->top = kind; return -1; }
    n = pk_take(k);
    return n >= 0 && k->m->node[n].slot ? n : -1;
}

/* The string s (len bytes) picked at path slot pushed: with opts.keep_strings the one kept
 * there when it has these bytes, else a new one (then kept there). */
static void pk_push_text(psink *k, int slot, const char *s, size_t len)
{
    lua_State *L = k->L;
    if (k->keep && len <= PK_KEEP_MAX) {
        size_t kl;
        const char *ks;
        unsigned char *miss = &k->keep_miss[slot];
        if (*miss >= 2) {
            /* paused: a new string, not kept; looked at again when the pause ends */
            if (++*miss >= PK_KEEP_PAUSE) *miss = 0;
            lua_pushlstring(L, s, len);
            return;
        }
        lua_rawgeti(L, k->keep, slot);
        ks = lua_tolstring(L, -1, &kl); /* NULL for nil: only strings are kept */
        if (ks != NULL && kl == len && pk_same(ks, s, len)) {
            *miss = 0;
            return;
        }
        (*miss)++;
        lua_pop(L, 1);
        lua_pushlstring(L, s, len);
        lua_pushvalue(L, -1);
        lua_rawseti(L, k->keep, slot);
        return;
    }
    lua_pushlstring(L, s, len);
}

static int pk_string(void *ud, const char *s, size_t len)
{
    psink *k = (psink *)ud;
    int n;
    if (k->building) return ls_string(&k->ls, s, len);
    if ((n = pk_scalar(k, "string")) < 0) return 1;
    pk_push_name(k, k->m->node[n].slot);
    pk_push_text(k, k->m->node[n].slot, s, len);
    pk_put(k, k->m->node[n].slot);
    return 1;
}

static int pk_number(void *ud, const char *s, size_t len, int is_int)
{
    psink *k = (psink *)ud;
    int n;
    if (k->building) return ls_number(&k->ls, s, len, is_int);
    if ((n = pk_scalar(k, "number")) < 0) return 1;
    pk_push_name(k, k->m->node[n].slot);
    if (k->m->all_text || k->m->node[n].text) pk_push_text(k, k->m->node[n].slot, s, len);
    else push_number(k->L, s, len, is_int);
    pk_put(k, k->m->node[n].slot);
    return 1;
}

static int pk_literal(void *ud, int which)
{
    psink *k = (psink *)ud;
    int n;
    if (k->building) return ls_literal(&k->ls, which);
    if ((n = pk_scalar(k, which == 0 ? "null" : "boolean")) < 0) return 1;
    pk_push_name(k, k->m->node[n].slot);
    if (which == 0) {
        if (k->m->null_absent) lua_pushnil(k->L);
        else lua_pushlightuserdata(k->L, NULL);
    } else {
        lua_pushboolean(k->L, which == 2);
    }
    pk_put(k, k->m->node[n].slot);
    return 1;
}

static const pj_sink PICK_SINK = { pk_begin, pk_end, pk_key, pk_string, pk_number, pk_literal };

/* A path's "integer" value at idx made what mocopay_wire's int() made of it (json_map). */
static void pk_integer(lua_State *L, int idx)
{
    if (lua_type(L, idx) == LUA_TSTRING) {
        size_t n, i;
        const char *s = lua_tolstring(L, idx, &n);
        i = n > 0 && s[0] == '-' ? 1 : 0;
        if (i >= n) return;
        for (; i < n; i++)
            if (s[i] < '0' || s[i] > '9') return;
#if LUA_VERSION_NUM >= 503
        if (lua_stringtonumber(L, s) == 0) return;
#else
        lua_pushnumber(L, lua_tonumber(L, idx));
#endif
        lua_replace(L, idx);
    }
#if LUA_VERSION_NUM >= 503
    if (lua_type(L, idx) == LUA_TNUMBER && !lua_isinteger(L, idx)) {
        lua_Number d = lua_tonumber(L, idx);
        lua_Integer v;
        if (d == floor(d) && lua_numbertointeger(d, &v)) {
            lua_pushinteger(L, v);
            lua_replace(L, idx);
        }
    }
#endif
}

/* The top-level value's kind (a string pk_begin or pk_scalar set) pushed: json_pick's upvalue
 * of that name. */
static void pk_push_kind(lua_State *L, const char *top)
{
    int j;
    for (j = 0; PK_KINDS[j]; j++) {
        if (strcmp(PK_KINDS[j], top) == 0) {
            lua_pushvalue(L, lua_upvalueindex(2 + j));
            return;
        }
    }
    lua_pushstring(L, top);
}

/* core.json_pick(text, map); upvalue 1: the maps' metatable, 2-7: the kinds (PK_KINDS) */
static int l_json_pick(lua_State *L)
{
    size_t n;
    const char *text = luaL_checklstring(L, 1, &n);
    pkmap *m = (pkmap *)lua_touserdata(L, 2);
    psink k;
    pj_error e;
    char small[2048];
    char *scratch;
    int i;
    if (m == NULL || !lua_getmetatable(L, 2) || !lua_rawequal(L, -1, lua_upvalueindex(1)))
        return luaL_argerror(L, 2, "a map from json_map expected");
    lua_settop(L, 2);
    if (!lua_checkstack(L, m->npaths + 12)) return luaL_error(L, "json_pick: no room on the Lua stack");
    k.L = L;
    k.m = m;
    k.base = 2;
    k.depth = 0;
    k.pending = -1;
    k.building = 0;
    k.build_node = 0;
    k.top = NULL;
    k.at[0] = -1;
    memset(k.seen, 0, (size_t)m->nnodes);
    memset(k.hint, 0xff, sizeof(short) * (size_t)m->nnodes);
    for (i = 0; i <= m->npaths; i++) lua_pushnil(L);
    /* the built values' reader: json_decode's with the map's options */
    k.ls.L = L;
    k.ls.depth = 0;
    k.ls.text_set = 0;
    k.ls.all_text = m->all_text;
    k.ls.null_idx = 0;
    k.ls.dup_last = 1;
    k.ls.err = NULL;
    k.ls.kind[0] = 0;
    k.ls.arr_text[0] = 0;
    k.ls.count[0] = 0;
    if (m->text_ref != LUA_NOREF) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, m->text_ref);
        k.ls.text_set = lua_gettop(L);
    } else {
        lua_pushnil(L);
    }
    if (n < sizeof small) { scratch = small; lua_pushnil(L); }
    else scratch = (char *)lua_newuserdata(L, n + 1);
    k.names = k.res = k.keep = 0;
    k.keep_miss = NULL;
    if (m->keep_ref != LUA_NOREF) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, m->keep_ref);
        k.keep = lua_gettop(L);
        k.keep_miss = m->keep_miss;
    }
    if (m->names_ref != LUA_NOREF) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, m->names_ref);
        k.names = lua_gettop(L);
        lua_createtable(L, 0, m->ntop);
        k.res = k.names + 1;
    }
    if (!pj_parse_in(text, n, scratch, m->max_depth, &PICK_SINK, &k, &e)) {
        lua_settop(L, 2);
        lua_pushnil(L);
        lua_pushfstring(L, "json: %s at byte %d", e.msg ? e.msg : (k.ls.err ? k.ls.err : "error"), (int)e.pos + 1);
        lua_pushliteral(L, "invalid_json");
        return 3;
    }
    if (m->names_ref != LUA_NOREF) {
        /* the answer's table on top of the top-level kind */
        pk_push_kind(L, k.top);
        lua_pushvalue(L, k.res);
        return 2;
    }
    lua_settop(L, 3 + m->npaths);
    pk_push_kind(L, k.top);
    lua_replace(L, 3);
    return 1 + m->npaths;
}

static void register_pick(lua_State *L)
{
    lua_createtable(L, 0, 3);
    lua_pushcfunction(L, pkmap_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushliteral(L, "paykit.json_map");
    lua_setfield(L, -2, "__name");
    lua_pushliteral(L, "paykit.json_map");
    lua_setfield(L, -2, "__metatable");
    lua_pushvalue(L, -1);
    lua_pushcclosure(L, l_json_map, 1);
    lua_setfield(L, -3, "json_map");
    {
        /* the kinds json_pick gives, as its upvalues 2-7 (pushed, not made, per call) */
        int j;
        for (j = 0; PK_KINDS[j]; j++) lua_pushstring(L, PK_KINDS[j]);
        lua_pushcclosure(L, l_json_pick, 1 + j);
    }
    lua_setfield(L, -2, "json_pick");
    lua_pushlightuserdata(L, (void *)&PK_OBJECT_TAG);
    lua_setfield(L, -2, "json_object_mark");
    lua_pushlightuserdata(L, (void *)&PK_ARRAY_TAG);
    lua_setfield(L, -2, "json_array_mark");
}

/* ------------------------------------------------------------------ Lua: the writer */

typedef struct {
    char *p;
    size_t len, cap;
    int busy; /* in use by a json_encode call (a __gc finalizer may call json_encode meanwhile) */
} jbuf;

typedef struct {
    const char *s;
    size_t n;
    lua_Integer i;
} jplace;

typedef struct {
    lua_State *L;
    jbuf *b;
    int max_depth;
    int replace_utf8;
    int depth;
    /* the place being written, for error messages: per depth a name (string key) or an index */
    jplace *path;
    char err[256];
} jwriter;

static int jb_grow(jbuf *b, size_t need)
{
    size_t cap = b->cap ? b->cap : 1024;
    char *p;
    if (need <= b->cap - b->len) return 1;
    while (cap - b->len < need) {
        if (cap > SIZE_MAX / 2) return 0;
        cap *= 2;
    }
    p = (char *)realloc(b->p, cap);
    if (p == NULL) return 0;
    b->p = p;
    b->cap = cap;
    return 1;
}

#define JB_NEED(w, n) do { if ((w)->b->cap - (w)->b->len < (n) && !jb_grow((w)->b, (n))) return jw_fail((w), "out of memory"); } while (0)
#define JB_PUT(w, s, n) do { JB_NEED(w, n); memcpy((w)->b->p + (w)->b->len, (s), (n)); (w)->b->len += (n); } while (0)
#define JB_CHAR(w, c) do { JB_NEED(w, 1); (w)->b->p[(w)->b->len++] = (c); } while (0)

/* Records an error message with the place ("$.a.b[2]"); returns 0. */
static int jw_fail(jwriter *w, const char *what)
{
    size_t o = 0;
    int d;
    const size_t cap = sizeof w->err;
    int m = snprintf(w->err, cap, "json: %s at $", what);
    o = m < 0 ? 0 : (size_t)m;
    for (d = 1; d <= w->depth && o < cap - 1; d++) {
        if (w->path[d].s == NULL && w->path[d].i == 0) break; /* the container itself */
        if (w->path[d].s) {
            /* the member name, at most 40 bytes, printable ASCII only (others as '?') */
            char name[41];
            size_t j, n = w->path[d].n > 40 ? 40 : w->path[d].n;
            for (j = 0; j < n; j++) {
                unsigned char c = (unsigned char)w->path[d].s[j];
                name[j] = (c >= 0x20 && c < 0x7F) ? (char)c : '?';
            }
            name[n] = '\0';
            m = snprintf(w->err + o, cap - o, ".%s%s", name, w->path[d].n > 40 ? "..." : "");
        } else {
            m = snprintf(w->err + o, cap - o, "[%lld]", (long long)w->path[d].i);
        }
        if (m < 0) break;
        o += (size_t)m;
    }
    return 0;
}


/* 1 for the bytes a string writes as they are without a look (printable ASCII but '"', '\\'). */
static const unsigned char PLAIN[256] = {
#define R16(v) v, v, v, v, v, v, v, v, v, v, v, v, v, v, v, v
    R16(0), R16(0),                                    /* 0x00-0x1F: escaped */
    1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,    /* 0x20-0x2F: '"' escaped */
    R16(1), R16(1),                                    /* 0x30-0x4F */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1,    /* 0x50-0x5F: '\\' escaped */
    R16(1), R16(1),                                    /* 0x60-0x7F (DEL as it is) */
    R16(0), R16(0), R16(0), R16(0), R16(0), R16(0), R16(0), R16(0) /* 0x80-0xFF: UTF-8 checked */
#undef R16
};

static int jw_string(jwriter *w, const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    JB_NEED(w, n + 2);
    w->b->p[w->b->len++] = '"';
    while (i < n) {
        size_t start = i;
        while (i < n && PLAIN[s[i]]) i++;
        if (i > start) JB_PUT(w, s + start, i - start);
        if (i >= n) break;
        if (s[i] >= 0x80) {
            size_t k = pj_utf8_len(s + i, n - i);
            if (k == 0) {
                if (!w->replace_utf8) return jw_fail(w, "a string that is not valid UTF-8");
                JB_PUT(w, "\xEF\xBF\xBD", 3);
                i++;
            } else {
                JB_PUT(w, s + i, k);
                i += k;
            }
            continue;
        }
        {
            char esc[6];
            size_t en = paykit_json_escape(s[i], esc);
            JB_PUT(w, esc, en);
            i++;
        }
    }
    JB_CHAR(w, '"');
    return 1;
}

static int jw_integer(jwriter *w, long long v)
{
    char tmp[24], *p = tmp + sizeof tmp;
    unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
    do { *--p = (char)('0' + (int)(u % 10)); u /= 10; } while (u != 0);
    if (v < 0) *--p = '-';
    JB_PUT(w, p, (size_t)(tmp + sizeof tmp - p));
    return 1;
}

static int jw_value(jwriter *w, int idx);

/* The metatable field names, kept as upvalues of json_encode so that no lookup interns them. */
enum { UV_BUF = 1, UV_NUMBER, UV_KEYS, UV_VALUES, UV_TYPE, UV_RAW, UV_KEYSMT };

/* A core.json_raw value: text the writer itself produced, kept immutable in a userdata. */
typedef struct {
    size_t n;
    char s[1];
} jraw;

/* A core.json_keys(list) value: the written forms of an ordered object's member names,
 * fragment i = ("{" or ",") .. name_i as a JSON string .. ":", all in one text; off[i-1] ..
 * off[i] is fragment i. Kept at list[0]: the writer then copies fragment i before value i. */
typedef struct {
    lua_Integer count;
    size_t *off;     /* count + 1 offsets into text */
    char *text;
} jkeys;

typedef struct {
    const char *s;
    size_t n;
    int slot; /* the key's stack slot (for the value lookup) */
} jkey;

static int jkey_cmp(const void *a, const void *b)
{
    const jkey *x = (const jkey *)a, *y = (const jkey *)b;
    size_t n = x->n < y->n ? x->n : y->n;
    int c = memcmp(x->s, y->s, n);
    if (c != 0) return c;
    return x->n < y->n ? -1 : (x->n > y->n);
}

/* An ordered object: its key list and value list are on the stack top (keys below values). */
static int jw_ordered(jwriter *w)
{
    lua_State *L = w->L;
    int vl = lua_gettop(L), kl = vl - 1;
    lua_Integer i, nk;
    if (!lua_istable(L, kl) || !lua_istable(L, vl)) return jw_fail(w, "an ordered object without its key and value lists");
    nk = (lua_Integer)lua_rawlen(L, kl);
    lua_rawgeti(L, kl, 0);
    if (lua_type(L, -1) == LUA_TUSERDATA && lua_getmetatable(L, -1)) {
        int is_keys = lua_rawequal(L, -1, lua_upvalueindex(UV_KEYSMT));
        const jkeys *t = (const jkeys *)lua_touserdata(L, -2);
        lua_pop(L, 2);
        if (is_keys && t->count == nk && nk > 0) {
            /* the names' written forms, made once for this list (core.json_keys) */
            for (i = 1; i <= nk; i++) {
                size_t a = t->off[i - 1], z = t->off[i];
                JB_PUT(w, t->text + a, z - a);
                /* the place errors name: the name as written, between ("{" or ",") '"' and '":' */
                w->path[w->depth].s = t->text + a + 2;
                w->path[w->depth].n = z - a - 4;
                lua_rawgeti(L, vl, (int)i);
                if (lua_isnil(L, -1)) return jw_fail(w, "an ordered object's member without a value");
                if (!jw_value(w, lua_gettop(L))) return 0;
                lua_pop(L, 1);
            }
            JB_CHAR(w, '}');
            return 1;
        }
    } else {
        lua_pop(L, 1);
    }
    JB_CHAR(w, '{');
    for (i = 1; i <= nk; i++) {
        size_t kn;
        const char *ks;
        lua_rawgeti(L, kl, (int)i);
        if (lua_type(L, -1) != LUA_TSTRING) {
            w->path[w->depth].s = NULL;
            w->path[w->depth].i = i;
            return jw_fail(w, "an ordered object's member name that is not a string");
        }
        ks = lua_tolstring(L, -1, &kn);
        w->path[w->depth].s = ks;
        w->path[w->depth].n = kn;
        if (i > 1) JB_CHAR(w, ',');
        if (!jw_string(w, ks, kn)) return 0;
        JB_CHAR(w, ':');
        lua_rawgeti(L, vl, (int)i);
        if (lua_isnil(L, -1)) return jw_fail(w, "an ordered object's member without a value");
        if (!jw_value(w, lua_gettop(L))) return 0;
        lua_pop(L, 2);
    }
    JB_CHAR(w, '}');
    return 1;
}

/* A plain table at t; forced: 0, 1 object, 2 array (its metatable's __json_type). */
static int jw_table(jwriter *w, int t, int forced)
{
    lua_State *L = w->L;
    size_t len = lua_rawlen(L, t);
    if (len > 0) {
        size_t i, count = 0;
        lua_pushnil(L);
        while (lua_next(L, t) != 0) { count++; lua_pop(L, 1); }
        if (count != len || forced == 1) return jw_fail(w, "a table with both array items and named members (or holes)");
        JB_CHAR(w, '[');
        for (i = 1; i <= len; i++) {
            if (i > 1) JB_CHAR(w, ',');
            w->path[w->depth].s = NULL;
            w->path[w->depth].i = (lua_Integer)i;
            lua_rawgeti(L, t, (int)i);
            if (!jw_value(w, lua_gettop(L))) return 0;
            lua_pop(L, 1);
        }
        JB_CHAR(w, ']');
        return 1;
    }
    {
        /* an object: every key is left on the stack (first slot base + 1) by one traversal,
         * then sorted by bytes; integer keys are written in decimal */
        int base = lua_gettop(L);
        size_t count = 0, j;
        jkey small[32], *keys = small;
        char numbuf[32 * 24], *nums = numbuf;
        lua_pushnil(L);
        while (lua_next(L, t) != 0) {
            int kt = lua_type(L, -2);
            if (kt != LUA_TSTRING && kt != LUA_TNUMBER) return jw_fail(w, "a member name that is neither a string nor an integer");
            count++;
            if (!lua_checkstack(L, 4)) return jw_fail(w, "an object with too many members for the Lua stack");
            lua_pushvalue(L, -2);
            lua_replace(L, -2); /* key, key copy: lua_next goes on from the copy, the key stays */
        }
        if (count == 0) {
            if (forced == 1) JB_PUT(w, "{}", 2);
            else JB_PUT(w, "[]", 2);
            return 1;
        }
        if (forced == 2) return jw_fail(w, "a table marked as an array with named members");
        if (count > 32) {
            keys = (jkey *)lua_newuserdata(L, count * (sizeof(jkey) + 24));
            nums = (char *)(keys + count);
        }
        for (j = 0; j < count; j++) {
            int slot = base + 1 + (int)j;
            keys[j].slot = slot;
            if (lua_type(L, slot) == LUA_TSTRING) {
                keys[j].s = lua_tolstring(L, slot, &keys[j].n);
            } else {
                long long v;
                if (!paykit_tosafeint(L, slot, &v)) return jw_fail(w, "a member name that is a non-integral number");
                keys[j].s = nums + 24 * j;
                keys[j].n = (size_t)snprintf(nums + 24 * j, 24, "%lld", v);
            }
        }
        if (count > 1) qsort(keys, count, sizeof(jkey), jkey_cmp);
        JB_CHAR(w, '{');
        for (j = 0; j < count; j++) {
            if (j > 0) {
                if (jkey_cmp(&keys[j - 1], &keys[j]) == 0) return jw_fail(w, "a member name given twice (a string and an integer key)");
                JB_CHAR(w, ',');
            }
            w->path[w->depth].s = keys[j].s;
            w->path[w->depth].n = keys[j].n;
            if (!jw_string(w, keys[j].s, keys[j].n)) return 0;
            JB_CHAR(w, ':');
            lua_pushvalue(L, keys[j].slot);
            lua_rawget(L, t);
            if (!jw_value(w, lua_gettop(L))) return 0;
            lua_pop(L, 1);
        }
        JB_CHAR(w, '}');
        lua_settop(L, base);
        return 1;
    }
}

static int jw_value(jwriter *w, int idx)
{
    lua_State *L = w->L;
    switch (lua_type(L, idx)) {
    case LUA_TSTRING: {
        size_t n;
        const char *s = lua_tolstring(L, idx, &n);
        return jw_string(w, s, n);
    }
    case LUA_TBOOLEAN:
        if (lua_toboolean(L, idx)) JB_PUT(w, "true", 4);
        else JB_PUT(w, "false", 5);
        return 1;
    case LUA_TNUMBER: {
        long long v;
        if (!paykit_tosafeint(L, idx, &v)) {
#if LUA_VERSION_NUM >= 503
            if (lua_isinteger(L, idx)) return jw_integer(w, (long long)lua_tointeger(L, idx));
#endif
            return jw_fail(w, "a number that is not an integer within 2^53 (write amounts with core.json_number)");
        }
        return jw_integer(w, v);
    }
    case LUA_TLIGHTUSERDATA:
        if (lua_touserdata(L, idx) == NULL) { JB_PUT(w, "null", 4); return 1; }
        return jw_fail(w, "a light userdata other than null");
    case LUA_TUSERDATA:
        if (lua_getmetatable(L, idx)) {
            int is_raw = lua_rawequal(L, -1, lua_upvalueindex(UV_RAW));
            lua_pop(L, 1);
            if (is_raw) {
                const jraw *r = (const jraw *)lua_touserdata(L, idx);
                JB_PUT(w, r->s, r->n);
                return 1;
            }
        }
        return jw_fail(w, "a function, userdata or thread (JSON has no form for it)");
    case LUA_TTABLE: {
        int ok, forced = 0, top = lua_gettop(L);
        if (!lua_checkstack(L, 8)) return jw_fail(w, "nested too deep for the Lua stack");
        if (lua_getmetatable(L, idx)) {
            int mt = top + 1;
            lua_pushvalue(L, lua_upvalueindex(UV_NUMBER));
            lua_rawget(L, mt);
            if (!lua_isnil(L, -1)) {
                size_t n;
                const char *s;
                lua_rawget(L, idx);
                s = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &n) : NULL;
                if (s == NULL || !pj_is_number(s, n)) return jw_fail(w, "a number literal that is not a JSON number");
                JB_PUT(w, s, n);
                lua_settop(L, top);
                return 1;
            }
            lua_pop(L, 1);
            if (w->depth >= w->max_depth) return jw_fail(w, "nesting deeper than max_depth (a cycle?)");
            w->depth++;
            w->path[w->depth].s = NULL;
            w->path[w->depth].i = 0;
            lua_pushvalue(L, lua_upvalueindex(UV_KEYS));
            lua_rawget(L, mt);
            if (!lua_isnil(L, -1)) {
                lua_rawget(L, idx); /* the key list */
                lua_pushvalue(L, lua_upvalueindex(UV_VALUES));
                lua_rawget(L, mt);
                lua_rawget(L, idx); /* the value list */
                ok = jw_ordered(w);
            } else {
                lua_pop(L, 1);
                lua_pushvalue(L, lua_upvalueindex(UV_TYPE));
                lua_rawget(L, mt);
                if (lua_type(L, -1) == LUA_TSTRING) {
                    const char *v = lua_tostring(L, -1);
                    if (strcmp(v, "object") == 0) forced = 1;
                    else if (strcmp(v, "array") == 0) forced = 2;
                }
                lua_settop(L, top);
                ok = jw_table(w, idx, forced);
            }
        } else {
            if (w->depth >= w->max_depth) return jw_fail(w, "nesting deeper than max_depth (a cycle?)");
            w->depth++;
            w->path[w->depth].s = NULL;
            w->path[w->depth].i = 0;
            ok = jw_table(w, idx, 0);
        }
        if (!ok) return 0;
        w->depth--;
        lua_settop(L, top);
        return 1;
    }
    case LUA_TNIL:
        return jw_fail(w, "nil (use core.json_null for null)");
    default:
        return jw_fail(w, "a function, userdata or thread (JSON has no form for it)");
    }
}

static int jbuf_gc(lua_State *L)
{
    jbuf *b = (jbuf *)lua_touserdata(L, 1);
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
    return 0;
}

/* core.json_encode(v[, opts]); upvalues: the reusable output buffer, the field names. */
static int l_json_encode(lua_State *L)
{
    jwriter writer, *w = &writer;
    jplace places[65];
    jbuf *b = (jbuf *)lua_touserdata(L, lua_upvalueindex(UV_BUF));
    int ok;
    luaL_checkany(L, 1);
    lua_settop(L, 2);
    lua_pushnil(L); /* 3: the place list when max_depth > 64 */
    w->L = L;
    w->path = places;
    w->b = b;
    w->max_depth = 64;
    w->replace_utf8 = 0;
    w->depth = 0;
    w->err[0] = '\0';
    if (!lua_isnil(L, 2)) {
        luaL_checktype(L, 2, LUA_TTABLE);
        lua_getfield(L, 2, "invalid_utf8");
        if (!lua_isnil(L, -1)) {
            const char *v = lua_tostring(L, -1);
            if (v == NULL || (strcmp(v, "replace") != 0 && strcmp(v, "error") != 0))
                return luaL_argerror(L, 2, "opts.invalid_utf8 must be \"error\" or \"replace\"");
            w->replace_utf8 = strcmp(v, "replace") == 0;
        }
        lua_getfield(L, 2, "max_depth");
        if (!lua_isnil(L, -1)) {
            long long d;
            if (!paykit_tosafeint(L, -1, &d) || d < 1 || d > PJ_MAX_DEPTH)
                return luaL_argerror(L, 2, "opts.max_depth must be an integer from 1 to 1000");
            w->max_depth = (int)d;
        }
        lua_settop(L, 3);
        if (w->max_depth > 64) {
            w->path = (jplace *)lua_newuserdata(L, sizeof(jplace) * (size_t)(w->max_depth + 1));
            lua_replace(L, 3);
        }
    }
    if (b->busy) {
        /* re-entered (from a finalizer run by a GC step inside the outer call), or the outer
         * call was left by a Lua error: this call writes into a buffer of its own */
        jbuf *own = (jbuf *)lua_newuserdata(L, sizeof(jbuf));
        memset(own, 0, sizeof *own);
        lua_getmetatable(L, lua_upvalueindex(UV_BUF));
        lua_setmetatable(L, -2);
        w->b = own;
        own->busy = 1;
        ok = jw_value(w, 1);
        if (ok) lua_pushlstring(L, own->p, own->len);
    } else {
        b->busy = 1;
        b->len = 0;
        ok = jw_value(w, 1);
        if (ok) lua_pushlstring(L, b->p, b->len);
        if (b->cap > 65536) { free(b->p); b->p = NULL; b->len = b->cap = 0; } /* don't keep a big one */
        b->busy = 0;
    }
    if (!ok) {
        lua_pushnil(L);
        lua_pushstring(L, w->err);
        lua_pushliteral(L, "unencodable");
        return 3;
    }
    return 1;
}

/* core.json_number(text): the marker written as that number literal. */
static int l_json_number(lua_State *L)
{
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    if (!pj_is_number(s, n)) return luaL_argerror(L, 1, "not a JSON number literal (e.g. \"27.50\")");
    lua_createtable(L, 1, 0);
    lua_pushvalue(L, 1);
    lua_rawseti(L, -2, 1);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_setmetatable(L, -2);
    return 1;
}

static int json_number_tostring(lua_State *L)
{
    lua_rawgeti(L, 1, 1);
    return 1;
}

/* core.json_unknown_key(t, allowed) -> the first key of t (in next() order) that is not a key
 * of the set `allowed` (allowed[k] neither nil nor false), or nothing. The check of a call's
 * table before its members are written: one pass in C, so that no Lua loop (a trace abort on
 * LuaJIT) runs per call. Raw access only (no metamethods run). */
static int l_json_unknown_key(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_settop(L, 2);
    lua_pushnil(L);
    while (lua_next(L, 1) != 0) {
        lua_pop(L, 1);                  /* the value */
        lua_pushvalue(L, -1);           /* the key, looked up in allowed */
        lua_rawget(L, 2);
        if (!lua_toboolean(L, -1)) {
            lua_pop(L, 1);
            return 1;                   /* the key */
        }
        lua_pop(L, 1);
    }
    return 0;
}

/* Byte checks of the values a body is built from (one C pass where a Lua pattern would
 * cost a match per byte on Lua 5.4):
 *   core.text_plain(s[, multiline]) -> true when s has no control character (0x00-0x1F,
 *     0x7F; multiline: tab, LF and CR allowed)
 *   core.digits_luhn(s) -> digits, luhn: whether s is one or more ASCII digits, and whether
 *     those digits pass the Luhn check (false when s is not digits) */
static int l_text_plain(lua_State *L)
{
    size_t n, i;
    const unsigned char *p = (const unsigned char *)luaL_checklstring(L, 1, &n);
    int multiline = lua_toboolean(L, 2);
    for (i = 0; i < n; i++) {
        unsigned char c = p[i];
        if (c < 0x20 || c == 0x7F) {
            if (multiline && (c == '\t' || c == '\n' || c == '\r')) continue;
            lua_pushboolean(L, 0);
            return 1;
        }
    }
    lua_pushboolean(L, 1);
    return 1;
}

static int l_digits_luhn(lua_State *L)
{
    size_t n, i;
    const unsigned char *p = (const unsigned char *)luaL_checklstring(L, 1, &n);
    unsigned sum = 0;
    if (n == 0) { lua_pushboolean(L, 0); lua_pushboolean(L, 0); return 2; }
    for (i = 0; i < n; i++) {
        unsigned d = (unsigned)p[n - 1 - i] - '0';
        if (d > 9) { lua_pushboolean(L, 0); lua_pushboolean(L, 0); return 2; }
        if (i & 1) { d *= 2; if (d > 9) d -= 9; }
        sum += d;
    }
    lua_pushboolean(L, 1);
    lua_pushboolean(L, sum % 10 == 0);
    return 2;
}

static int jkeys_gc(lua_State *L)
{
    jkeys *t = (jkeys *)lua_touserdata(L, 1);
    free(t->off);
    free(t->text);
    t->off = NULL;
    t->text = NULL;
    t->count = 0;
    return 0;
}

/* core.json_keys(list) -> the written forms of the member names list[1..#list] (strings, valid
 * UTF-8), for list[0] = ... (see jkeys); nil, message, "unencodable" for a name the writer
 * refuses. Upvalues: json_encode, the jkeys metatable. */
static int l_json_keys(lua_State *L)
{
    lua_Integer n, i;
    size_t total = 0, at = 0;
    jkeys *t;
    luaL_checktype(L, 1, LUA_TTABLE);
    n = (lua_Integer)lua_rawlen(L, 1);
    lua_settop(L, 1);
    t = (jkeys *)lua_newuserdata(L, sizeof(jkeys)); /* 2 */
    t->count = 0;
    t->off = NULL;
    t->text = NULL;
    lua_pushvalue(L, lua_upvalueindex(2));
    lua_setmetatable(L, 2);
    lua_createtable(L, (int)n, 0); /* 3: the names written */
    for (i = 1; i <= n; i++) {
        lua_pushvalue(L, lua_upvalueindex(1));
        lua_rawgeti(L, 1, (int)i);
        if (lua_type(L, -1) != LUA_TSTRING) {
            lua_pushnil(L);
            lua_pushliteral(L, "json: a member name that is not a string");
            lua_pushliteral(L, "unencodable");
            return 3;
        }
        lua_call(L, 1, 3);
        if (lua_isnil(L, -3)) return 3;
        lua_pop(L, 2);
        total += lua_rawlen(L, -1) + 2;
        lua_rawseti(L, 3, (int)i);
    }
    t->off = (size_t *)malloc(sizeof(size_t) * (size_t)(n + 1));
    t->text = (char *)malloc(total + 1);
    if (t->off == NULL || t->text == NULL) return luaL_error(L, "json_keys: out of memory");
    t->off[0] = 0;
    for (i = 1; i <= n; i++) {
        size_t kn;
        const char *k;
        lua_rawgeti(L, 3, (int)i);
        k = lua_tolstring(L, -1, &kn);
        t->text[at++] = i == 1 ? '{' : ',';
        memcpy(t->text + at, k, kn);
        at += kn;
        t->text[at++] = ':';
        t->off[i] = at;
        lua_pop(L, 1);
    }
    t->count = n;
    lua_settop(L, 2);
    return 1;
}

/* core.json_raw(v[, opts]) -> a value json_encode writes as the text json_encode(v, opts) gave
 * when json_raw was called (a fixed part of many bodies, encoded once); nil, message,
 * "unencodable" as json_encode. Upvalues: json_encode, the raw values' metatable. */
static int l_json_raw(lua_State *L)
{
    size_t n;
    const char *t;
    jraw *r;
    lua_settop(L, 2);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_pushvalue(L, 1);
    lua_pushvalue(L, 2);
    lua_call(L, 2, 3);
    if (lua_isnil(L, -3)) return 3;
    t = lua_tolstring(L, -3, &n);
    r = (jraw *)lua_newuserdata(L, sizeof(jraw) + n);
    r->n = n;
    memcpy(r->s, t, n);
    r->s[n] = '\0';
    lua_pushvalue(L, lua_upvalueindex(2));
    lua_setmetatable(L, -2);
    return 1;
}

void paykit_json_register(lua_State *L)
{
    /* json_encode with its buffer */
    jbuf *b = (jbuf *)lua_newuserdata(L, sizeof(jbuf));
    b->p = NULL;
    b->len = b->cap = 0;
    b->busy = 0;
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, jbuf_gc);
    lua_setfield(L, -2, "__gc");
    lua_setmetatable(L, -2);
    lua_pushliteral(L, "__json_number");
    lua_pushliteral(L, "__json_keys");
    lua_pushliteral(L, "__json_values");
    lua_pushliteral(L, "__json_type");
    /* the metatable of core.json_raw's values (no field a user could reach: the writer knows
     * them by this table's identity) */
    lua_createtable(L, 0, 1);
    lua_pushliteral(L, "paykit.json_raw");
    lua_setfield(L, -2, "__name");
    lua_pushvalue(L, -1);
    lua_insert(L, -7); /* a copy below the buffer, for json_raw */
    /* the metatable of core.json_keys's values */
    lua_createtable(L, 0, 2);
    lua_pushcfunction(L, jkeys_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushliteral(L, "paykit.json_keys");
    lua_setfield(L, -2, "__name");
    lua_pushvalue(L, -1);
    lua_insert(L, -9); /* a copy below rawmt's, for json_keys */
    lua_pushcclosure(L, l_json_encode, 7);
    lua_pushvalue(L, -1);
    lua_setfield(L, -5, "json_encode");
    /* stack: ..., module, keysmt, rawmt, json_encode */
    lua_pushvalue(L, -1);
    lua_pushvalue(L, -4);
    lua_pushcclosure(L, l_json_keys, 2);
    lua_setfield(L, -5, "json_keys");
    /* stack: ..., module, keysmt, rawmt, json_encode */
    lua_insert(L, -2);
    lua_pushcclosure(L, l_json_raw, 2);
    lua_setfield(L, -3, "json_raw");
    lua_pop(L, 1); /* keysmt */

    lua_pushcfunction(L, l_json_decode);
    lua_setfield(L, -2, "json_decode");
    register_pick(L);

    /* json_number with the markers' shared metatable */
    lua_createtable(L, 0, 3);
    lua_pushinteger(L, 1);
    lua_setfield(L, -2, "__json_number");
    lua_pushcfunction(L, json_number_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pushliteral(L, "paykit.json_number");
    lua_setfield(L, -2, "__name");
    lua_pushvalue(L, -1);
    lua_setfield(L, -3, "json_number_mt");
    lua_pushcclosure(L, l_json_number, 1);
    lua_setfield(L, -2, "json_number");

    lua_pushlightuserdata(L, NULL);
    lua_setfield(L, -2, "json_null");

    lua_pushcfunction(L, l_json_unknown_key);
    lua_setfield(L, -2, "json_unknown_key");
    lua_pushcfunction(L, l_text_plain);
    lua_setfield(L, -2, "text_plain");
    lua_pushcfunction(L, l_digits_luhn);
    lua_setfield(L, -2, "digits_luhn");
}
#endif /* PAYKIT_JSON_CORE_ONLY */
