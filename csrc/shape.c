/*
 * shape.c: compiled request shapes: a Lua call table checked and written as a JSON body in one C
 * call (the hot path of a provider's request side).
 *
 *   core.shape(spec)                  -> a shape (userdata)
 *   shape:write(p, prefix, ...)       -> body, amount, currency | nil, field
 *
 * spec = { suffix = "}", members = { m1, m2, ... } }: the members of the JSON object written, in
 * order; each member m = { name = "Amount", kind = "...", key = "amount", ... } reads p[key]
 * (raw access). The body is prefix .. '{"name":value,...}' .. suffix. The extra arguments of
 * write are the defaults a member takes with `arg = i` (the i-th extra argument).
 *
 * write accepts only what the Lua reference checks (paykit.providers.moka_checks) accept, and
 * writes the exact bytes the Lua path writes (paykit.core.json_encode of the request objects);
 * it may refuse more: every refusal is `nil, field` (the member's key, or "params" for the
 * table itself), and the caller then runs the Lua reference, which gives the real error with
 * its code and message, or the body when the input was only outside what the shape handles
 * (a metatable, an unknown key, a spelling the shape does not know). So a shape never decides
 * that an input is wrong; it only writes what is right. A refusal names no value (no card
 * number, no CVC), and a shape's tostring is "paykit.shape (N members)".
 *
 * Kinds (options beside name, kind and key):
 *  - const    json = "1": the raw JSON text (no key read)
 *  - ignore   p[key] is allowed and not written (a field the call takes but this body lacks)
 *  - empty    p[key] nil or "": writes ""
 *  - text     max (characters), multiline, arg: nil -> the arg's string, else ""; a string of at
 *             most max UTF-8 characters without control characters (0x00-0x1F, 0x7F; multiline:
 *             tab, LF, CR allowed), valid UTF-8
 *  - token    max (bytes): a non-empty string without control characters or white space
 *  - flag     falsy_only: nil/false/0 -> 0, true/1 -> 1 (falsy_only: only nil or false, 0 written)
 *  - int      min, max, default (nil -> default; false_default: false too), over, over_currency:
 *             an integral number min..max; above `over` only when the currency is over_currency
 *  - money    minor_key, exponent (the currency's decimals): a decimal string (no sign, no
 *             exponent, at most `exponent` decimals) or an integer of minor units in p[minor_key]
 *             (exactly one), greater than zero, at most 2^53-1 minor units; written as the
 *             canonical decimal ("27.5" -> 27.50), never through a float; returned as `amount`
 *  - currency arg, map = {TL = "TL", TRY = "TL", ...}: p[key] (nil or false: the arg) looked up
 *             as it is in map; written and returned as `currency`
 *  - ip       arg: p[key] (nil: the arg), an IPv4 dotted quad without leading zeros or an IPv6
 *             address in RFC 4291 text form (paykit.kit.checks.is_ip)
 *  - url      an absolute http(s) URL as paykit.kit.checks.is_http_url accepts it
 *  - card     names = {holder, number, month, year, cvc member names}, clock = arg index of the
 *             clock function: p[key] a table {number=, exp_month=, exp_year=, cvc=, holder=}
 *             checked as moka_checks.card_fields (number digits, spaces and dashes dropped,
 *             12-19 digits, Luhn; month 1-12; year YYYY or YY, not expired by the clock, which
 *             is called once and only when everything else passed; CVC 3 or 4 digits; holder at
 *             most 100 characters); writes the five members
 * Any key of p that no member reads makes write refuse ("params"), and so does a metatable on p
 * or on the card table.
 */
#include "paykit.h"
#include "jsontext.h"
#include <time.h>

#define SHAPE_MAX_KEYS 40
#define SHAPE_MAX_MEMBERS 40
#define SHAPE_KHASH 64      /* more than SHAPE_MAX_KEYS: a probe always ends at an empty entry */
/* the hash of an interned key string's text pointer */
#define KHASH(p) ((unsigned)(((uintptr_t)(p) >> 3) ^ ((uintptr_t)(p) >> 9)) & (SHAPE_KHASH - 1))

enum { K_CONST, K_IGNORE, K_EMPTY, K_TEXT, K_TOKEN, K_FLAG, K_INT, K_MONEY, K_CURRENCY, K_IP, K_URL, K_CARD };
static const char *const KIND_NAMES[] = { "const", "ignore", "empty", "text", "token", "flag", "int", "money",
                                          "currency", "ip", "url", "card", NULL };
/* the card table's keys, in this order */
enum { CK_NUMBER, CK_MONTH, CK_YEAR, CK_CVC, CK_HOLDER, CK_COUNT };
static const char *const CARD_KEYS[CK_COUNT] = { "number", "exp_month", "exp_year", "cvc", "holder" };

typedef struct {
    int kind;
    int slot, slot2;        /* the key's slot (0-based; -1 none); money: minor_key's slot */
    int arg;                /* extra argument index (1-based; 0 none) */
    int multiline, falsy_only, false_default;
    long long min, max, def, over;
    char *name;             /* the member's written form: ("{" or ",") '"' name '":' */
    size_t name_len;
    char *text;             /* const: its JSON; int: over_currency */
    size_t text_len;
    char *card_names[5];    /* card: the five members' written forms (with their ',') */
    size_t card_name_len[5];
    int nmap;               /* currency: map entries */
    char *map_from[16], *map_to[16];
    size_t map_from_len[16], map_to_len[16];
    const char *key;        /* for refusals: the key's text (anchored) */
} member;

typedef struct {
    char *p;
    size_t len, cap;
} sbuf;

typedef struct {
    int nmembers, nkeys;
    member m[SHAPE_MAX_MEMBERS];
    const char *keyptr[SHAPE_MAX_KEYS];  /* interned key strings (anchored) */
    size_t keylen[SHAPE_MAX_KEYS];
    unsigned char khash[SHAPE_KHASH]; /* key string pointer -> slot + 1 (0: no key), open addressing */
    int anchor;             /* registry ref of the table holding the key strings */
    char *suffix;
    size_t suffix_len;
    sbuf buf;
    int busy;
    unsigned gen;           /* bodies written: a clock call that wrote one is seen */
    long long last_t;       /* the clock reading whose UTC year and month are kept */
    int last_year, last_month, have_t;
} shape_t;

#define SHAPE_MT "paykit.shape"

/* ------------------------------------------------------------------ buffer */

static int sb_grow(sbuf *b, size_t n)
{
    size_t cap;
    char *np;
    cap = b->cap ? b->cap : 2048;
    while (cap - b->len < n) {
        if (cap > SIZE_MAX / 2) return 0;
        cap *= 2;
    }
    np = (char *)realloc(b->p, cap);
    if (np == NULL) return 0;
    b->p = np;
    b->cap = cap;
    return 1;
}

static inline int sb_need(sbuf *b, size_t n)
{
    return b->cap - b->len >= n || sb_grow(b, n);
}

static inline int sb_put(sbuf *b, const char *s, size_t n)
{
    if (!sb_need(b, n)) return 0;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    return 1;
}

/* The writes of a member go into room reserved once (sb_need) for all of them: the puts
 * below check nothing. RESERVE_SLACK covers what a member writes beside its strings (its
 * name's form, quotes, a number, the 16-byte blocks of put_form). */
#define RESERVE_SLACK 96

static inline void put_raw(sbuf *b, const char *s, size_t n)
{
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

static inline void put_byte(sbuf *b, char c)
{
    b->p[b->len++] = c;
}

/* A text of the shape's own (a member's written name, a const's JSON): its allocation is
 * padded to whole 16-byte blocks (pad_dup), so it is copied in blocks, without a call. The
 * bytes past n written into the room are overwritten or past the body's length. */
static inline void put_form(sbuf *b, const char *s, size_t n)
{
    char *o = b->p + b->len;
    size_t k;
    for (k = 0; k < n; k += 16) memcpy(o + k, s + k, 16);
    b->len += n;
}

static void sb_int(sbuf *b, long long v)
{
    char tmp[24], *p = tmp + sizeof tmp;
    unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
    do { *--p = (char)('0' + (int)(u % 10)); u /= 10; } while (u != 0);
    if (v < 0) *--p = '-';
    put_raw(b, p, (size_t)(tmp + sizeof tmp - p));
}

/* ------------------------------------------------------------------ byte checks */

/* Length (1-4) of the valid UTF-8 sequence at s (n bytes left), or 0 (RFC 3629, as json.c). */

/* 1 for the bytes written as they are without a look (printable ASCII but '"' and '\\'). */
static const unsigned char PLAIN[256] = {
#define R16(v) v, v, v, v, v, v, v, v, v, v, v, v, v, v, v, v
    R16(0), R16(0),
    1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    R16(1), R16(1),
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1,
    R16(1),
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, /* 0x70-0x7F: DEL looked at */
    R16(0), R16(0), R16(0), R16(0), R16(0), R16(0), R16(0), R16(0)
#undef R16
};

/* Writes s as a JSON string exactly as json.c's writer does; 0 for invalid UTF-8 (or a
 * control byte refused). The caller has reserved 6 * n + 2 bytes (an escape is at most 6).
 * controls: 0 any control byte escaped; 1 none allowed (0x00-0x1F, 0x7F); 2 only tab, LF, CR.
 * *chars gets the number of characters. Runs of plain bytes are found 8 at a time and copied
 * at once. */
static int put_string(sbuf *b, const char *str, size_t n, int controls, size_t *chars)
{
    const unsigned char *s = (const unsigned char *)str;
    char *o = b->p + b->len;
    size_t i = 0, count = 0;
    int ok = 0;
    *o++ = '"';
    while (i < n) {
        size_t start = i;
        i = paykit_plain_run(s, i, n, PLAIN, 1);
        if (i > start) {
            memcpy(o, s + start, i - start);
            o += i - start;
            count += i - start;
        }
        if (i >= n) break;
        if (s[i] >= 0x80) {
            size_t k = paykit_utf8_len(s + i, n - i);
            if (k == 0) goto done;
            memcpy(o, s + i, k);
            o += k;
            i += k;
            count++;
            continue;
        }
        if (s[i] == 0x7F) {
            if (controls) goto done;
            *o++ = '\x7F';
        } else {
            if (s[i] < 0x20 && controls == 1) goto done;
            if (s[i] < 0x20 && controls == 2 && s[i] != '\t' && s[i] != '\n' && s[i] != '\r') goto done;
            o += paykit_json_escape(s[i], o);
        }
        i++;
        count++;
    }
    *o++ = '"';
    if (chars) *chars = count;
    ok = 1;
done:
    /* what was written counts (the buffer is cleared up to its length after the call) */
    b->len = (size_t)(o - b->p);
    return ok;
}

static int is_dig(unsigned char c) { return c >= '0' && c <= '9'; }
static int is_hex(unsigned char c) { return paykit_hexval(c) >= 0; }

/* One number of a dotted quad: 1-3 digits, no leading zero, <= 255. */
static int octet(const char *s, size_t n)
{
    size_t i;
    int v = 0;
    if (n == 0 || n > 3 || (n > 1 && s[0] == '0')) return 0;
    for (i = 0; i < n; i++) {
        if (!is_dig((unsigned char)s[i])) return 0;
        v = v * 10 + (s[i] - '0');
    }
    return v <= 255;
}

static int is_ipv4(const char *s, size_t n)
{
    size_t i, start = 0;
    int parts = 0;
    for (i = 0; i <= n; i++) {
        if (i == n || s[i] == '.') {
            if (parts == 4 || !octet(s + start, i - start)) return 0;
            parts++;
            start = i + 1;
        }
    }
    return parts == 4;
}

/* 16-bit groups of a colon-separated run (n == 0: 0), -1 when malformed; the last field may be
 * an IPv4 address (two groups) when allow_v4 (paykit.kit.checks' v6_groups). */
static int v6_groups(const char *s, size_t n, int allow_v4)
{
    size_t i, start = 0;
    int groups = 0;
    if (n == 0) return 0;
    for (i = 0; i <= n; i++) {
        if (i == n || s[i] == ':') {
            size_t fl = i - start;
            const char *f = s + start;
            int dot = memchr(f, '.', fl) != NULL;
            if (allow_v4 && i == n && dot) {
                if (!is_ipv4(f, fl)) return -1;
                groups += 2;
            } else {
                size_t j;
                if (fl < 1 || fl > 4) return -1;
                for (j = 0; j < fl; j++) if (!is_hex((unsigned char)f[j])) return -1;
                groups++;
            }
            start = i + 1;
        }
    }
    return groups;
}

static int is_ipv6(const char *s, size_t n)
{
    size_t i, dbl = n;
    int head, tail;
    if (n < 2 || n > 45) return 0;
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!is_hex(c) && c != ':' && c != '.') return 0;
    }
    for (i = 0; i + 1 < n; i++) if (s[i] == ':' && s[i + 1] == ':') { dbl = i; break; }
    if (dbl == n) return v6_groups(s, n, 1) == 8;
    for (i = dbl + 1; i + 1 < n; i++) if (s[i] == ':' && s[i + 1] == ':') return 0;
    head = v6_groups(s, dbl, 0);
    tail = v6_groups(s + dbl + 2, n - dbl - 2, 1);
    return head >= 0 && tail >= 0 && head + tail <= 7;
}


/* Character classes of URL bytes (one table read per byte). */
enum { U_BAD = 1, U_ALPHA = 2, U_SCHEME = 4, U_HOST = 8, U_END = 16, U_HEX = 32 };
static const unsigned char URLC[256] = {
     1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,
     1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,
     1,  0,  0, 16,  0,  0,  0,  0,  0,  0,  0,  4,  0, 12, 12, 16,
    44, 44, 44, 44, 44, 44, 44, 44, 44, 44,  0,  0,  0,  0,  0, 16,
     0, 46, 46, 46, 46, 46, 46, 14, 14, 14, 14, 14, 14, 14, 14, 14,
    14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14,  0,  0,  0,  0,  0,
     0, 46, 46, 46, 46, 46, 46, 14, 14, 14, 14, 14, 14, 14, 14, 14,
    14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14,  0,  0,  0,  0,  1,
     0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,
     0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,
     0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,
     0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,
     0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,
     0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,
     0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,
     0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,
};

/* paykit.kit.checks.is_http_url: at most 2048 bytes, no control or space byte, an http(s)
 * scheme (any case), no user information, a host (a bracketed IPv6 address, or letters,
 * digits, '.' and '-' without "..", not starting with '.' or '-'), an optional :port 1-65535.
 * (Every test is a condition of the answer: they are made in the order that reads each byte
 * once where it can.) */
static int is_http_url(const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i, sl, a, z, hz;
    if (n == 0 || n > 2048 || !(URLC[s[0]] & U_ALPHA)) return 0;
    for (i = 1; i < n && (URLC[s[i]] & U_SCHEME); i++) {}
    sl = i;
    if (n - sl < 3 || s[sl] != ':' || s[sl + 1] != '/' || s[sl + 2] != '/') return 0;
    /* the scheme's bytes are letters, digits, '+', '.', '-': | 0x20 lowers only the letters */
    if (sl < 4 || sl > 5 || (s[0] | 0x20) != 'h' || (s[1] | 0x20) != 't' || (s[2] | 0x20) != 't' ||
        (s[3] | 0x20) != 'p' || (sl == 5 && (s[4] | 0x20) != 's')) return 0;
    a = sl + 3;
    if (a < n && s[a] == '[') {
        /* the authority: up to '/', '?' or '#'; no control or space byte, no '@' */
        for (z = a; z < n && !(URLC[s[z]] & U_END); z++) {
            if ((URLC[s[z]] & U_BAD) || s[z] == '@') return 0;
        }
        for (hz = a + 1; hz < z && ((URLC[s[hz]] & U_HEX) || s[hz] == ':' || s[hz] == '.'); hz++) {}
        if (hz == a + 1 || hz >= z || s[hz] != ']') return 0;
        if (!is_ipv6((const char *)s + a + 1, hz - a - 1)) return 0;
        hz++;
        if (hz < z) {
            long port = 0;
            if (s[hz] != ':' || hz + 1 >= z || z - hz - 1 > 5) return 0;
            for (i = hz + 1; i < z; i++) {
                if (!is_dig(s[i])) return 0;
                port = port * 10 + (s[i] - '0');
            }
            if (port < 1 || port > 65535) return 0;
        }
    } else {
        /* a host name, read once: letters, digits, '.' and '-' (no "..", not first '.' or
         * '-'), up to a ':' and the port, or the authority's end ('/', '?', '#' or none);
         * any other byte (a control or space byte, '@', ...) is refused where it stands */
        for (hz = a; hz < n && (URLC[s[hz]] & U_HOST); hz++) {
            if (s[hz] == '.' && hz + 1 < n && s[hz + 1] == '.') return 0;
        }
        if (hz == a || s[a] == '.' || s[a] == '-') return 0;
        z = hz;
        if (z < n && s[z] == ':') {
            long port = 0;
            for (z = hz + 1; z < n && is_dig(s[z]) && z - hz <= 5; z++) port = port * 10 + (s[z] - '0');
            if (z == hz + 1 || port < 1 || port > 65535) return 0;
        }
        if (z < n && !(URLC[s[z]] & U_END)) return 0;
    }
    /* the rest: no control or space byte */
    for (i = z; i < n; i++) if (URLC[s[i]] & U_BAD) return 0;
    return 1;
}

/* ------------------------------------------------------------------ numbers */

/* An integral number within 2^53 (lua_isinteger not required: 3.0 counts, as `x == floor(x)`). */
static int integral(lua_State *L, int idx, long long *v)
{
    return paykit_tosafeint(L, idx, v);
}

/* A number whose tostring is its integer text: a 5.4 integer, or a LuaJIT integral double. */
static int int_text(lua_State *L, int idx, long long *v)
{
    if (lua_type(L, idx) != LUA_TNUMBER) return 0;
#if LUA_VERSION_NUM >= 503
    if (!lua_isinteger(L, idx)) return 0;
#endif
    return paykit_tosafeint(L, idx, v) && *v > -100000000000000LL && *v < 100000000000000LL;
}

/* a number equal to 0 or 1 (Lua's ==): -1 otherwise */
static int zero_one(lua_State *L, int idx)
{
    lua_Number n;
    if (lua_type(L, idx) != LUA_TNUMBER) return -1;
    n = lua_tonumber(L, idx);
    if (n == 0) return 0;
    if (n == 1) return 1;
    return -1;
}

/* A decimal amount (money_parse rules, no sign) in minor units; 0 when refused. */
static int parse_money(const char *s, size_t n, int exp, unsigned long long *out)
{
    size_t i = 0, id, fd = 0, k;
    int dot = 0;
    unsigned long long v = 0, max = (unsigned long long)PAYKIT_MAX_SAFE_INTEGER;
    while (i < n && is_dig((unsigned char)s[i])) i++;
    id = i;
    if (i < n && s[i] == '.') {
        dot = 1;
        i++;
        while (i < n && is_dig((unsigned char)s[i])) { i++; fd++; }
    }
    if (i != n || id == 0 || (dot && fd == 0) || fd > (size_t)exp) return 0;
    for (k = 0; k < n; k++) {
        unsigned d;
        if (s[k] == '.') continue;
        d = (unsigned)(s[k] - '0');
        if (v > (max - d) / 10) return 0;
        v = v * 10 + d;
    }
    for (k = fd; k < (size_t)exp; k++) {
        if (v > max / 10) return 0;
        v *= 10;
    }
    *out = v;
    return 1;
}

/* money_format(minor, exp) into out (at least 48 bytes); returns the length. */
static size_t format_money(unsigned long long v, int exp, char *out)
{
    char digits[24];
    int n = 0, o = 0;
    unsigned long long u = v;
    do { digits[n++] = (char)('0' + (int)(u % 10)); u /= 10; } while (u != 0);
    /* digits reversed: most significant last */
    if (n <= exp) {
        int z;
        out[o++] = '0';
        out[o++] = '.';
        for (z = 0; z < exp - n; z++) out[o++] = '0';
        while (n > 0) out[o++] = digits[--n];
    } else {
        while (n > exp) out[o++] = digits[--n];
        if (exp > 0) {
            out[o++] = '.';
            while (n > 0) out[o++] = digits[--n];
        }
    }
    return (size_t)o;
}

/* ------------------------------------------------------------------ compile */

static int sh_gc(lua_State *L)
{
    shape_t *s = (shape_t *)luaL_checkudata(L, 1, SHAPE_MT);
    int i, j;
    for (i = 0; i < s->nmembers; i++) {
        member *m = &s->m[i];
        free(m->name); m->name = NULL;
        free(m->text); m->text = NULL;
        for (j = 0; j < 5; j++) { free(m->card_names[j]); m->card_names[j] = NULL; }
        for (j = 0; j < m->nmap; j++) { free(m->map_from[j]); free(m->map_to[j]); m->map_from[j] = m->map_to[j] = NULL; }
        m->nmap = 0;
    }
    s->nmembers = 0;
    free(s->suffix); s->suffix = NULL;
    free(s->buf.p); s->buf.p = NULL; s->buf.len = s->buf.cap = 0;
    if (s->anchor != LUA_NOREF) {
        luaL_unref(L, LUA_REGISTRYINDEX, s->anchor);
        s->anchor = LUA_NOREF;
    }
    s->nkeys = 0;
    return 0;
}

static char *dup_bytes(const char *p, size_t n)
{
    char *d = (char *)malloc(n + 1);
    if (d) { memcpy(d, p, n); d[n] = '\0'; }
    return d;
}

/* A copy of n bytes in whole 16-byte blocks (zero-padded, at least one block past n's
 * rounding), as put_form reads it. */
static char *pad_dup(const char *p, size_t n)
{
    char *d = (char *)calloc((n + 15) / 16 + 1, 16);
    if (d) memcpy(d, p, n);
    return d;
}

/* The written form of a member name: sep '"' name '":' (name plain ASCII, checked). */
static char *member_form(lua_State *L, const char *name, size_t n, char sep, size_t *len)
{
    size_t i;
    char *d;
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c < 0x20 || c >= 0x7F || c == '"' || c == '\\') luaL_error(L, "core.shape: member name must be plain ASCII");
    }
    d = (char *)calloc((n + 4 + 15) / 16 + 1, 16); /* padded: put_form copies it in blocks */
    if (d == NULL) luaL_error(L, "core.shape: out of memory");
    d[0] = sep;
    d[1] = '"';
    memcpy(d + 2, name, n);
    d[n + 2] = '"';
    d[n + 3] = ':';
    *len = n + 4;
    return d;
}

/* The slot of key (a string at idx) in the shape, added when new. Anchor table at `anchor`. */
static int key_slot(lua_State *L, shape_t *s, int anchor, int idx)
{
    size_t n;
    const char *k = lua_tolstring(L, idx, &n);
    int i;
    for (i = 0; i < s->nkeys; i++) if (s->keyptr[i] == k) return i;
    if (s->nkeys >= SHAPE_MAX_KEYS) luaL_error(L, "core.shape: too many keys");
    if (n > 40) luaL_error(L, "core.shape: a key longer than 40 bytes");
    lua_pushvalue(L, idx);
    lua_rawseti(L, anchor, (int)lua_rawlen(L, anchor) + 1);
    s->keyptr[s->nkeys] = k;
    s->keylen[s->nkeys] = n;
    {
        unsigned h = KHASH(k);
        while (s->khash[h] != 0) h = (h + 1) & (SHAPE_KHASH - 1);
        s->khash[h] = (unsigned char)(s->nkeys + 1);
    }
    return s->nkeys++;
}

static long long opt_int(lua_State *L, int t, const char *f, long long def)
{
    long long v = def;
    lua_getfield(L, t, f);
    if (!lua_isnil(L, -1) && !paykit_tosafeint(L, -1, &v)) luaL_error(L, "core.shape: %s must be an integer", f);
    lua_pop(L, 1);
    return v;
}

static int opt_bool(lua_State *L, int t, const char *f)
{
    int v;
    lua_getfield(L, t, f);
    v = lua_toboolean(L, -1);
    lua_pop(L, 1);
    return v;
}

/* core.shape(spec) -> shape */
static int l_shape(lua_State *L)
{
    shape_t *s;
    int anchor, members, i, n, j;
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    s = (shape_t *)lua_newuserdata(L, sizeof(shape_t)); /* 2 */
    memset(s, 0, sizeof *s);
    s->anchor = LUA_NOREF;
    luaL_getmetatable(L, SHAPE_MT);
    lua_setmetatable(L, 2);
    lua_newtable(L); /* 3: the anchor of the key strings */
    anchor = 3;
    lua_pushvalue(L, 3);
    s->anchor = luaL_ref(L, LUA_REGISTRYINDEX);
    /* the card's keys take the slots after the shape's: they are resolved at the end */
    lua_getfield(L, 1, "suffix");
    if (lua_type(L, -1) == LUA_TSTRING) {
        size_t sl;
        const char *sx = lua_tolstring(L, -1, &sl);
        s->suffix = dup_bytes(sx, sl);
        s->suffix_len = sl;
        if (s->suffix == NULL) return luaL_error(L, "core.shape: out of memory");
    }
    lua_pop(L, 1);
    lua_getfield(L, 1, "members");
    luaL_checktype(L, -1, LUA_TTABLE);
    members = lua_gettop(L);
    n = (int)lua_rawlen(L, members);
    if (n < 1 || n > SHAPE_MAX_MEMBERS) return luaL_error(L, "core.shape: 1 to %d members", SHAPE_MAX_MEMBERS);
    for (i = 1; i <= n; i++) {
        member *m = &s->m[i - 1];
        int mt;
        size_t nl;
        const char *name;
        lua_rawgeti(L, members, i);
        luaL_checktype(L, -1, LUA_TTABLE);
        mt = lua_gettop(L);
        m->slot = m->slot2 = -1;
        s->nmembers = i;
        lua_getfield(L, mt, "kind");
        m->kind = luaL_checkoption(L, -1, NULL, KIND_NAMES);
        lua_pop(L, 1);
        if (m->kind != K_IGNORE && m->kind != K_CARD) {
            lua_getfield(L, mt, "name");
            name = luaL_checklstring(L, -1, &nl);
            m->name = member_form(L, name, nl, i == 1 ? '{' : ',', &m->name_len);
            lua_pop(L, 1);
        }
        if (m->kind != K_CONST) {
            lua_getfield(L, mt, "key");
            if (lua_type(L, -1) != LUA_TSTRING) return luaL_error(L, "core.shape: member %d needs a key", i);
            m->slot = key_slot(L, s, anchor, lua_gettop(L));
            m->key = s->keyptr[m->slot];
            lua_pop(L, 1);
        }
        m->arg = (int)opt_int(L, mt, "arg", 0);
        m->multiline = opt_bool(L, mt, "multiline");
        m->falsy_only = opt_bool(L, mt, "falsy_only");
        m->false_default = opt_bool(L, mt, "false_default");
        m->min = opt_int(L, mt, "min", 0);
        m->max = opt_int(L, mt, "max", 0);
        m->def = opt_int(L, mt, "default", 0);
        m->over = opt_int(L, mt, "over", PAYKIT_MAX_SAFE_INTEGER);
        if (m->kind == K_MONEY) m->max = opt_int(L, mt, "exponent", 2);
        if (m->kind == K_CONST || m->kind == K_INT) {
            lua_getfield(L, mt, m->kind == K_CONST ? "json" : "over_currency");
            if (lua_type(L, -1) == LUA_TSTRING) {
                size_t tl;
                const char *t = lua_tolstring(L, -1, &tl);
                m->text = pad_dup(t, tl);
                if (m->text == NULL) return luaL_error(L, "core.shape: out of memory");
                m->text_len = tl;
            } else if (m->kind == K_CONST) {
                return luaL_error(L, "core.shape: a const member needs json");
            }
            lua_pop(L, 1);
        }
        if (m->kind == K_MONEY) {
            lua_getfield(L, mt, "minor_key");
            if (lua_type(L, -1) != LUA_TSTRING) return luaL_error(L, "core.shape: a money member needs minor_key");
            m->slot2 = key_slot(L, s, anchor, lua_gettop(L));
            lua_pop(L, 1);
        }
        if (m->kind == K_CURRENCY) {
            lua_getfield(L, mt, "map");
            luaL_checktype(L, -1, LUA_TTABLE);
            lua_pushnil(L);
            while (lua_next(L, -2) != 0) {
                size_t fl, tl;
                const char *f, *t;
                if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING || m->nmap >= 16)
                    return luaL_error(L, "core.shape: a currency map of at most 16 strings");
                f = lua_tolstring(L, -2, &fl);
                t = lua_tolstring(L, -1, &tl);
                m->map_from[m->nmap] = dup_bytes(f, fl);
                m->map_to[m->nmap] = dup_bytes(t, tl);
                m->map_from_len[m->nmap] = fl;
                m->map_to_len[m->nmap] = tl;
                if (m->map_from[m->nmap] == NULL || m->map_to[m->nmap] == NULL) {
                    m->nmap++;
                    return luaL_error(L, "core.shape: out of memory");
                }
                m->nmap++;
                lua_pop(L, 1);
            }
            lua_pop(L, 1);
        }
        if (m->kind == K_CARD) {
            lua_getfield(L, mt, "names");
            luaL_checktype(L, -1, LUA_TTABLE);
            for (j = 0; j < 5; j++) {
                lua_rawgeti(L, -1, j + 1);
                name = luaL_checklstring(L, -1, &nl);
                m->card_names[j] = member_form(L, name, nl, (i == 1 && j == 0) ? '{' : ',', &m->card_name_len[j]);
                lua_pop(L, 1);
            }
            lua_pop(L, 1);
            m->arg = (int)opt_int(L, mt, "clock", 0);
            if (m->arg < 1) return luaL_error(L, "core.shape: a card member needs clock (an argument index)");
        }
        if (m->arg < 0 || m->arg > 8) return luaL_error(L, "core.shape: arg must be 1 to 8");
        lua_settop(L, members);
    }
    lua_settop(L, 2);
    return 1;
}

/* ------------------------------------------------------------------ write */

typedef struct {
    const char *number; size_t number_len;   /* as given (spaces and dashes dropped on write) */
    int number_plain;                         /* digits only */
    const char *cvc, *holder; size_t cvc_len, holder_len; /* holder NULL: absent */
    int month;
    long long year;                           /* 4-digit wire value */
    char year_text[8]; size_t year_len;
    int card_slot;                            /* stack slot of the card's values */
} card_state;

/* the failure: nil, the member's key (or "params") */
static int refuse(lua_State *L, const char *field)
{
    lua_pushnil(L);
    lua_pushstring(L, field ? field : "params");
    return 2;
}

/* UTC year and month of clock reading t (kept for the last t). */
static int year_month(shape_t *s, long long t, int *year, int *month)
{
    if (!s->have_t || s->last_t != t) {
        struct tm tm;
        time_t tt = (time_t)t;
        if (gmtime_r(&tt, &tm) == NULL) return 0;
        s->last_t = t;
        s->last_year = tm.tm_year + 1900;
        s->last_month = tm.tm_mon + 1;
        s->have_t = 1;
    }
    *year = s->last_year;
    *month = s->last_month;
    return 1;
}

/* Reads and checks the card at stack idx (its values are pushed, in CARD_KEYS order); 1 when
 * it fits. */
static int read_card(lua_State *L, const shape_t *s, int idx, card_state *c)
{
    size_t n, i, digits = 0;
    unsigned sum = 0;
    const char *num;
    int pos, cs;
    long long v;
    int j;
    if (lua_type(L, idx) != LUA_TTABLE || lua_getmetatable(L, idx)) return 0;
    /* the five keys looked up (the table has no metatable: raw reads, as card_fields' are;
     * other keys are not read): cheaper than a lua_next walk over the table. The key strings
     * are l_write's upvalues 2-6 (no C string hashed or looked up per call). The values stay
     * where they are pushed (slots cs .. cs+4) */
    (void)s;
    cs = lua_gettop(L) + 1;
    for (j = 0; j < CK_COUNT; j++) {
        lua_pushvalue(L, lua_upvalueindex(2 + j));
        lua_rawget(L, idx);
    }
    /* number: digits, spaces and dashes dropped; 12-19 digits; Luhn */
    if (lua_type(L, cs + CK_NUMBER) != LUA_TSTRING) return 0;
    num = lua_tolstring(L, cs + CK_NUMBER, &n);
    if (n == 0 || n > 64) return 0;
    for (pos = (int)n - 1; pos >= 0; pos--) {
        /* a digit (the usual byte) tested first; a space or dash is dropped */
        static const unsigned char DOUBLED[10] = { 0, 2, 4, 6, 8, 1, 3, 5, 7, 9 };
        unsigned d = (unsigned)(unsigned char)num[pos] - '0';
        if (d > 9) {
            if (num[pos] == ' ' || num[pos] == '-') continue;
            return 0;
        }
        sum += (digits & 1) ? DOUBLED[d] : d;
        digits++;
    }
    if (digits < 12 || digits > 19 || sum % 10 != 0) return 0;
    c->number = num;
    c->number_len = n;
    c->number_plain = digits == n; /* no space or dash to drop */
    /* month: "1".."12", "01".."09", or an integer 1..12 */
    if (lua_type(L, cs + CK_MONTH) == LUA_TSTRING) {
        const char *ms = lua_tolstring(L, cs + CK_MONTH, &n);
        int m;
        if (n == 1 && ms[0] >= '1' && ms[0] <= '9') m = ms[0] - '0';
        else if (n == 2 && ms[0] == '0' && ms[1] >= '1' && ms[1] <= '9') m = ms[1] - '0';
        else if (n == 2 && ms[0] == '1' && ms[1] >= '0' && ms[1] <= '2') m = 10 + ms[1] - '0';
        else return 0;
        c->month = m;
    } else if (int_text(L, cs + CK_MONTH, &v) && v >= 1 && v <= 12) {
        c->month = (int)v;
    } else {
        return 0;
    }
    /* year: 4 or 2 digits (a string, or an integer whose text is) */
    if (lua_type(L, cs + CK_YEAR) == LUA_TSTRING) {
        const char *ys = lua_tolstring(L, cs + CK_YEAR, &n);
        if (n != 2 && n != 4) return 0;
        v = 0;
        for (i = 0; i < n; i++) {
            if (!is_dig((unsigned char)ys[i])) return 0;
            v = v * 10 + (ys[i] - '0');
        }
        if (n == 4) { memcpy(c->year_text, ys, 4); c->year_len = 4; }
    } else if (int_text(L, cs + CK_YEAR, &v) && ((v >= 10 && v <= 99) || (v >= 1000 && v <= 9999))) {
        n = v >= 1000 ? 4 : 2;
        if (n == 4) { snprintf(c->year_text, sizeof c->year_text, "%04lld", v); c->year_len = 4; }
    } else {
        return 0;
    }
    if (v < 100) v += 2000;
    if (n == 2) { snprintf(c->year_text, sizeof c->year_text, "%04lld", v); c->year_len = 4; }
    c->year = v;
    /* CVC: a string of 3 or 4 digits */
    if (lua_type(L, cs + CK_CVC) != LUA_TSTRING) return 0;
    {
        const char *cv = lua_tolstring(L, cs + CK_CVC, &n);
        if (n != 3 && n != 4) return 0;
        for (i = 0; i < n; i++) if (!is_dig((unsigned char)cv[i])) return 0;
        c->cvc = cv;
        c->cvc_len = n;
    }
    /* holder: nil or a string (its length is checked as it is written) */
    j = lua_type(L, cs + CK_HOLDER);
    c->holder = NULL;
    c->holder_len = 0;
    if (j == LUA_TSTRING) c->holder = lua_tolstring(L, cs + CK_HOLDER, &c->holder_len);
    else if (j != LUA_TNIL) return 0;
    c->card_slot = cs;
    return 1;
}

static int write_card(lua_State *L, sbuf *b, const member *m, const card_state *c)
{
    size_t n = c->holder_len, chars = 0, i, need;
    const char *t = c->holder, *cvc = c->cvc;
    size_t cvc_len = c->cvc_len;
    int j;
    (void)L;
    need = 6 * n + c->number_len + cvc_len + RESERVE_SLACK;
    for (j = 0; j < 5; j++) need += m->card_name_len[j];
    if (!sb_need(b, need)) return 0;
    /* holder: "" when absent; at most 100 characters, any bytes the JSON writer escapes */
    put_form(b, m->card_names[0], m->card_name_len[0]);
    if (t == NULL) {
        put_raw(b, "\"\"", 2);
    } else if (!put_string(b, t, n, 0, &chars) || chars > 100) {
        return 0;
    }
    put_form(b, m->card_names[1], m->card_name_len[1]);
    put_byte(b, '"');
    if (c->number_plain) {
        put_raw(b, c->number, c->number_len);
    } else {
        char *o = b->p + b->len;
        for (i = 0; i < c->number_len; i++) if (c->number[i] != ' ' && c->number[i] != '-') *o++ = c->number[i];
        b->len = (size_t)(o - b->p);
    }
    put_byte(b, '"');
    put_form(b, m->card_names[2], m->card_name_len[2]);
    put_byte(b, '"');
    put_byte(b, (char)('0' + c->month / 10));
    put_byte(b, (char)('0' + c->month % 10));
    put_byte(b, '"');
    put_form(b, m->card_names[3], m->card_name_len[3]);
    put_byte(b, '"');
    put_raw(b, c->year_text, c->year_len);
    put_byte(b, '"');
    put_form(b, m->card_names[4], m->card_name_len[4]);
    put_byte(b, '"');
    put_raw(b, cvc, cvc_len);
    put_byte(b, '"');
    return 1;
}

/* The values of p's keys, read in the one walk over p: slot j's value is at stack index
 * idx[j] (0: absent), of type type[j]; a string's text and length in str[j], len[j]. */
typedef struct {
    int idx[SHAPE_MAX_KEYS], type[SHAPE_MAX_KEYS];
    const char *str[SHAPE_MAX_KEYS];
    size_t len[SHAPE_MAX_KEYS];
} values;

/* What write_members gives beside the body: the amount's text (and the stack index of an
 * amount string that is that text already, else 0), the currency (and the index of a value
 * that is it), the card. */
typedef struct {
    char amount[48];
    size_t amount_len;
    int amount_idx;
    const char *currency;
    size_t currency_len;
    int currency_idx;
    card_state card;
    const member *card_m;
} outcome;

/* The value of an extra argument (1-based index arg, 0 none): its stack index, or 0. */
#define ARG_IDX(arg) ((arg) && (arg) <= nargs ? base - nargs + (arg) : 0)

/* The members written into b; 0 with *bad the failing member. */
static int write_members(lua_State *L, shape_t *s, const values *vs, int base, int nargs, sbuf *b,
                         const member **bad, outcome *out)
{
    int i;
    for (i = 0; i < s->nmembers; i++) {
        const member *m = &s->m[i];
        int v = m->slot >= 0 ? vs->idx[m->slot] : 0;
        int t = v ? vs->type[m->slot] : LUA_TNIL;
        const char *str = t == LUA_TSTRING ? vs->str[m->slot] : NULL;
        size_t n = t == LUA_TSTRING ? vs->len[m->slot] : 0;
        *bad = m;
        switch (m->kind) {
        case K_CONST:
            if (!sb_need(b, m->name_len + m->text_len + RESERVE_SLACK)) return 0;
            put_form(b, m->name, m->name_len);
            put_form(b, m->text, m->text_len);
            break;
        case K_IGNORE:
            break;
        case K_EMPTY: {
            if (t != LUA_TNIL && !(t == LUA_TSTRING && n == 0)) return 0;
            if (!sb_need(b, m->name_len + RESERVE_SLACK)) return 0;
            put_form(b, m->name, m->name_len);
            put_raw(b, "\"\"", 2);
            break;
        }
        case K_TEXT: {
            size_t chars = 0;
            if (t == LUA_TNIL && m->arg) {
                v = ARG_IDX(m->arg); /* the default: an extra argument */
                t = v ? lua_type(L, v) : LUA_TNIL;
                if (t != LUA_TSTRING) return 0;
                str = lua_tolstring(L, v, &n);
            }
            if (t != LUA_TNIL && t != LUA_TSTRING) return 0;
            if (!sb_need(b, m->name_len + 6 * n + RESERVE_SLACK)) return 0;
            put_form(b, m->name, m->name_len);
            if (t == LUA_TNIL) {
                put_raw(b, "\"\"", 2);
                break;
            }
            if (!put_string(b, str, n, m->multiline ? 2 : 1, &chars) || (long long)chars > m->max) return 0;
            break;
        }
        case K_TOKEN: {
            size_t j;
            if (t != LUA_TSTRING) return 0;
            if (n == 0 || (long long)n > m->max) return 0;
            for (j = 0; j < n; j++) if ((unsigned char)str[j] <= 0x20 || str[j] == 0x7F) return 0;
            if (!sb_need(b, m->name_len + 6 * n + RESERVE_SLACK)) return 0;
            put_form(b, m->name, m->name_len);
            if (!put_string(b, str, n, 1, NULL)) return 0;
            break;
        }
        case K_FLAG: {
            int f;
            if (t == LUA_TNIL) f = 0;
            else if (t == LUA_TBOOLEAN) f = lua_toboolean(L, v);
            else if (m->falsy_only) return 0;
            else if ((f = zero_one(L, v)) < 0) return 0;
            if (m->falsy_only && f) return 0;
            if (!sb_need(b, m->name_len + RESERVE_SLACK)) return 0;
            put_form(b, m->name, m->name_len);
            put_byte(b, f ? '1' : '0');
            break;
        }
        case K_INT: {
            long long x;
            if (t == LUA_TNIL || (t == LUA_TBOOLEAN && m->false_default && !lua_toboolean(L, v))) x = m->def;
            else if (!integral(L, v, &x)) return 0;
            if (x < m->min || x > m->max) return 0;
            if (x > m->over) {
                if (m->text == NULL || out->currency == NULL || out->currency_len != m->text_len ||
                    memcmp(out->currency, m->text, m->text_len) != 0) return 0;
            }
            if (!sb_need(b, m->name_len + RESERVE_SLACK)) return 0;
            put_form(b, m->name, m->name_len);
            sb_int(b, x);
            break;
        }
        case K_MONEY: {
            int mv = vs->idx[m->slot2], mt = mv ? vs->type[m->slot2] : LUA_TNIL;
            unsigned long long units;
            if (mt != LUA_TNIL) {
                long long x;
                if (t != LUA_TNIL || !integral(L, mv, &x) || x <= 0) return 0;
                units = (unsigned long long)x;
            } else {
                if (t != LUA_TSTRING) return 0;
                if (!parse_money(str, n, (int)m->max, &units) || units == 0) return 0;
            }
            out->amount_len = format_money(units, (int)m->max, out->amount);
            /* the amount given as its canonical text already: handed back as it is */
            if (t == LUA_TSTRING && n == out->amount_len && memcmp(str, out->amount, n) == 0) out->amount_idx = v;
            if (!sb_need(b, m->name_len + out->amount_len + RESERVE_SLACK)) return 0;
            put_form(b, m->name, m->name_len);
            put_raw(b, out->amount, out->amount_len);
            break;
        }
        case K_CURRENCY: {
            int j;
            if (t == LUA_TNIL || (t == LUA_TBOOLEAN && !lua_toboolean(L, v))) {
                v = ARG_IDX(m->arg);
                t = v ? lua_type(L, v) : LUA_TNIL;
                if (t == LUA_TSTRING) str = lua_tolstring(L, v, &n);
            }
            if (t != LUA_TSTRING) return 0;
            out->currency = NULL;
            for (j = 0; j < m->nmap; j++) {
                if (m->map_from_len[j] == n && memcmp(m->map_from[j], str, n) == 0) {
                    out->currency = m->map_to[j];
                    out->currency_len = m->map_to_len[j];
                    /* the wire form given as it is: that value is handed back */
                    if (out->currency_len == n && memcmp(out->currency, str, n) == 0) out->currency_idx = v;
                    break;
                }
            }
            if (out->currency == NULL) return 0;
            if (!sb_need(b, m->name_len + 6 * out->currency_len + RESERVE_SLACK)) return 0;
            put_form(b, m->name, m->name_len);
            if (!put_string(b, out->currency, out->currency_len, 1, NULL)) return 0;
            break;
        }
        case K_IP: {
            if (t == LUA_TNIL) {
                v = ARG_IDX(m->arg);
                t = v ? lua_type(L, v) : LUA_TNIL;
                if (t == LUA_TSTRING) str = lua_tolstring(L, v, &n);
            }
            if (t != LUA_TSTRING) return 0;
            if (!is_ipv4(str, n) && !is_ipv6(str, n)) return 0;
            if (!sb_need(b, m->name_len + n + RESERVE_SLACK)) return 0;
            /* an address is hex digits, '.' and ':' only: written as it is */
            put_form(b, m->name, m->name_len);
            put_byte(b, '"');
            put_raw(b, str, n);
            put_byte(b, '"');
            break;
        }
        case K_URL: {
            if (t != LUA_TSTRING) return 0;
            if (!is_http_url(str, n)) return 0;
            if (!sb_need(b, m->name_len + 6 * n + RESERVE_SLACK)) return 0;
            put_form(b, m->name, m->name_len);
            if (!put_string(b, str, n, 1, NULL)) return 0;
            break;
        }
        case K_CARD:
            /* the card's slots follow the shape's keys */
            if (!read_card(L, s, v, &out->card)) return 0;
            if (!write_card(L, b, m, &out->card)) return 0;
            out->card_m = m;
            break;
        default:
            return 0;
        }
    }
    return 1;
}

/* Whether the shape at stack 1 wrote no other body since generation gen (its buffer holds ours). */
static int still_mine(lua_State *L, unsigned gen)
{
    const shape_t *s = (const shape_t *)lua_touserdata(L, 1);
    return s->gen == gen;
}

/* shape:write(p, prefix, ...) -> body, amount, currency | nil, field */
static int l_write(lua_State *L)
{
    /* the shape: its metatable is this closure's upvalue (no registry lookup per call) */
    shape_t *s = (shape_t *)lua_touserdata(L, 1);
    size_t plen;
    const char *prefix;
    int nargs, base, ok;
    sbuf *b = &s->buf;
    const member *bad = NULL;
    outcome out;
    values vs;
    int vi;
    if (s == NULL || !lua_getmetatable(L, 1) || !lua_rawequal(L, -1, lua_upvalueindex(1)))
        return luaL_argerror(L, 1, "paykit.shape expected");
    lua_pop(L, 1);
    out.card.card_slot = 0;
    out.card_m = NULL;
    out.amount_len = 0;
    out.amount_idx = out.currency_idx = 0;
    out.currency = NULL;
    out.currency_len = 0;
    prefix = luaL_checklstring(L, 3, &plen);
    if (s->nmembers == 0) return luaL_error(L, "shape:write on a closed shape");
    if (lua_type(L, 2) != LUA_TTABLE || lua_getmetatable(L, 2)) return refuse(L, NULL);
    /* re-entered (a finalizer run inside the clock call): the Lua path serves it */
    if (s->busy) return refuse(L, NULL);
    nargs = lua_gettop(L) - 3;
    base = lua_gettop(L);
    /* each known key's value and a copy of its key stay on the stack (at most 2 per key: a
     * key no member reads refuses), then the card's values and the clock call */
    if (!lua_checkstack(L, 2 * s->nkeys + CK_COUNT + 8)) return refuse(L, NULL);
    memset(vs.idx, 0, sizeof vs.idx);
    /* one pass over p: each value's stack index kept for its key's slot (the value stays
     * where lua_next put it, a copy of the key goes above it for the next step); a key no
     * member reads refuses */
    lua_pushnil(L);
    vi = base + 2; /* where lua_next puts the value: 2 slots up per key */
    while (lua_next(L, 2) != 0) {
        const char *k;
        unsigned h;
        int hit;
        if (lua_type(L, -2) != LUA_TSTRING) return refuse(L, NULL);
        k = lua_tostring(L, -2);
        /* the key's slot: its interned text pointer hashed (the shape's keys are anchored) */
        h = KHASH(k);
        while ((hit = s->khash[h]) != 0 && s->keyptr[hit - 1] != k) h = (h + 1) & (SHAPE_KHASH - 1);
        if (hit == 0) return refuse(L, NULL);
        hit--;
        vs.idx[hit] = vi;
        if ((vs.type[hit] = lua_type(L, vi)) == LUA_TSTRING) vs.str[hit] = lua_tolstring(L, vi, &vs.len[hit]);
        lua_pushvalue(L, -2);
        vi += 2;
    }
    s->busy = 1;
    s->gen++;
    b->len = 0;
    ok = sb_put(b, prefix, plen) && write_members(L, s, &vs, base, nargs, b, &bad, &out) &&
         sb_put(b, "}", 1) && sb_put(b, s->suffix, s->suffix_len);
    s->busy = 0;
    if (ok && out.card_m) {
        const member *card_m = out.card_m;
        /* the expiry, last: the clock is called only when everything else fits (as the Lua
         * path calls it only for a card that passed its other checks) */
        int year, month, ca = card_m->arg;
        unsigned gen = s->gen;
        long long t;
        bad = card_m;
        ok = 0;
        if (ca <= nargs && lua_type(L, base - nargs + ca) == LUA_TFUNCTION) {
            lua_pushvalue(L, base - nargs + ca);
            lua_call(L, 0, 1);
            /* a clock that wrote another body (through this shape) took the buffer */
            /* (read again after the call: lua_call may have changed it) */
            if (still_mine(L, gen) && int_text(L, -1, &t) && year_month(s, t, &year, &month))
                ok = !(out.card.year < year || (out.card.year == year && out.card.month < month));
            lua_pop(L, 1);
        }
    }
    if (ok) lua_pushlstring(L, b->p, b->len);
    /* the buffer keeps no card number or CVC between calls */
    if (b->len) memset(b->p, 0, b->len);
    b->len = 0;
    if (s->buf.cap > 65536) { free(s->buf.p); s->buf.p = NULL; s->buf.len = s->buf.cap = 0; } /* keep no big one */
    if (!ok) return refuse(L, bad ? bad->key : NULL);
    /* an amount or currency given as the text handed back is that value (no string made) */
    if (out.amount_idx) lua_pushvalue(L, out.amount_idx);
    else if (out.amount_len) lua_pushlstring(L, out.amount, out.amount_len);
    else lua_pushnil(L);
    if (out.currency_idx) lua_pushvalue(L, out.currency_idx);
    else if (out.currency) lua_pushlstring(L, out.currency, out.currency_len);
    else lua_pushnil(L);
    return 3;
}

static int sh_tostring(lua_State *L)
{
    shape_t *s = (shape_t *)luaL_checkudata(L, 1, SHAPE_MT);
    lua_pushfstring(L, "paykit.shape (%d members)", s->nmembers);
    return 1;
}


void paykit_shape_register(lua_State *L)
{
    luaL_newmetatable(L, SHAPE_MT);
    lua_pushcfunction(L, sh_gc);
    lua_setfield(L, -2, "__gc");
#if LUA_VERSION_NUM >= 504
    lua_pushcfunction(L, sh_gc);
    lua_setfield(L, -2, "__close");
#endif
    lua_pushcfunction(L, sh_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_createtable(L, 0, 2);
    lua_pushvalue(L, -2);
    {
        int j;
        for (j = 0; j < CK_COUNT; j++) lua_pushstring(L, CARD_KEYS[j]);
    }
    lua_pushcclosure(L, l_write, 1 + CK_COUNT);
    lua_setfield(L, -2, "write");
    lua_pushcfunction(L, sh_gc);
    lua_setfield(L, -2, "close");
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
    lua_pushcfunction(L, l_shape);
    lua_setfield(L, -2, "shape");
}
