/* HTTP/1.1 response parsing for the cosocket transport, on libhttp-parser (Debian's http_parser.h).
 *
 *   local p = core.http_response_parser{max_body = 8388608, head = false}
 *                                           -- fast = false: only libhttp-parser (see httpparse.h)
 *   local done, err, code = p:feed(bytes)   -- true | false (need more) | nil, message, code
 *   local done, err, code = p:finish()      -- the peer closed: ends a read-until-close body
 *   p:result()  -> {status=, headers={lowercase = "v1, v2"}, body=, keepalive=bool}
 *   p:reset([{head = bool}])                -- next response on a kept-alive connection
 *   p:close()                               -- also __gc and, on 5.4, __close
 *   p:fast()                                -- whether the fast reader read this response
 *
 * Codes: "protocol" (malformed or truncated response), "too_large" (body above max_body or
 * headers above libhttp-parser's limit), "other" (out of memory). Errors are sticky until reset.
 * The parser state lives in the userdata; the callback table is static const.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>

#include "httpparse.h"

#define PARSER_MT "paykit.http_response_parser"
#define DEFAULT_MAX_BODY ((size_t)8 * 1024 * 1024)

#define ST_PARSING PAYKIT_RESP_PARSING
#define ST_DONE PAYKIT_RESP_DONE
#define ST_ERROR PAYKIT_RESP_ERROR
enum perr { PE_NONE = 0, PE_TOO_LARGE, PE_NOMEM, PE_BAD_NAME, PE_BAD_VERSION, PE_BAD_STATUS };

typedef paykit_resp parser_t; /* the state (csrc/httpparse.h), shared with csrc/wire.c */

static parser_t *from_hp(http_parser *hp)
{
    return (parser_t *)hp->data;
}

/* RFC 9110 token characters. Debian builds libhttp-parser non-strict, which lets a space or
 * a control byte into a header name; such a response is refused here. */
static int is_tchar(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z')
        || (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

/* Moves the header just read (field, value) into hdrs. */
static int flush_header(parser_t *ps)
{
    static const char nul = '\0';
    size_t i;
    if (ps->field.len == 0 && !ps->in_value) return 0;
    if (ps->field.len == 0) { ps->cb_err = PE_BAD_NAME; return -1; }
    for (i = 0; i < ps->field.len; i++) {
        if (!is_tchar((unsigned char)ps->field.p[i])) { ps->cb_err = PE_BAD_NAME; return -1; }
    }
    if (memchr(ps->value.p ? ps->value.p : "", '\0', ps->value.len) != NULL) {
        ps->cb_err = PE_BAD_NAME;
        return -1;
    }
    if (!paykit_buf_add(&ps->hdrs, ps->field.p, ps->field.len) || !paykit_buf_add(&ps->hdrs, &nul, 1)
        || !paykit_buf_add(&ps->hdrs, ps->value.p, ps->value.len) || !paykit_buf_add(&ps->hdrs, &nul, 1)) {
        ps->cb_err = PE_NOMEM;
        return -1;
    }
    ps->nhdrs++;
    ps->field.len = ps->value.len = 0;
    ps->in_value = 0;
    return 0;
}

static int on_header_field(http_parser *hp, const char *at, size_t len)
{
    parser_t *ps = from_hp(hp);
    size_t start, i;
    if (ps->in_value && flush_header(ps)) return -1;
    start = ps->field.len;
    if (!paykit_buf_add(&ps->field, at, len)) { ps->cb_err = PE_NOMEM; return -1; }
    for (i = start; i < ps->field.len; i++) {
        char c = ps->field.p[i];
        if (c >= 'A' && c <= 'Z') ps->field.p[i] = (char)(c - 'A' + 'a');
    }
    return 0;
}

static int on_header_value(http_parser *hp, const char *at, size_t len)
{
    parser_t *ps = from_hp(hp);
    ps->in_value = 1;
    if (!paykit_buf_add(&ps->value, at, len)) { ps->cb_err = PE_NOMEM; return -1; }
    return 0;
}

static int on_headers_complete(http_parser *hp)
{
    parser_t *ps = from_hp(hp);
    if (flush_header(ps)) return -1;
    if (hp->http_major != 1) { ps->cb_err = PE_BAD_VERSION; return -1; }
    /* libhttp-parser takes one to three digits: a code outside HTTP's range is no answer */
    if (hp->status_code < 100 || hp->status_code > 599) { ps->cb_err = PE_BAD_STATUS; return -1; }
    if ((hp->flags & F_CONTENTLENGTH) && !(hp->flags & F_CHUNKED)
        && hp->content_length > (uint64_t)ps->max_body && !ps->head) {
        ps->cb_err = PE_TOO_LARGE;
        return -1;
    }
    return ps->head ? 1 : 0; /* 1: no body follows */
}

static int on_body(http_parser *hp, const char *at, size_t len)
{
    parser_t *ps = from_hp(hp);
    if (len > ps->max_body - ps->body.len) { ps->cb_err = PE_TOO_LARGE; return -1; }
    if (!paykit_buf_add(&ps->body, at, len)) { ps->cb_err = PE_NOMEM; return -1; }
    return 0;
}

static int on_message_complete(http_parser *hp)
{
    parser_t *ps = from_hp(hp);
    if (hp->status_code >= 100 && hp->status_code < 200 && hp->status_code != 101) {
        /* An interim response (100 Continue, 103 Early Hints): the final one follows. */
        ps->hdrs.len = ps->body.len = ps->field.len = ps->value.len = 0;
        ps->in_value = 0;
        ps->nhdrs = 0;
        return 0;
    }
    if (flush_header(ps)) return -1; /* a trailer field, after a chunked body */
    ps->status = (int)hp->status_code;
    ps->keepalive = http_should_keep_alive(hp) ? 1 : 0;
    ps->state = ST_DONE;
    http_parser_pause(hp, 1); /* anything after this response is not ours to parse */
    return 0;
}

static const http_parser_settings settings = {
    .on_message_begin = NULL,
    .on_url = NULL,
    .on_status = NULL,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
    .on_chunk_header = NULL,
    .on_chunk_complete = NULL,
};

static void parser_start(parser_t *ps, int head)
{
    ps->fed = ps->general = ps->fast = 0; /* libhttp-parser is set up only when it reads */
    ps->fast_left = 0;
    ps->body.len = ps->hdrs.len = ps->field.len = ps->value.len = 0;
    ps->in_value = 0;
    ps->nhdrs = 0;
    ps->head = head;
    ps->keepalive = 0;
    ps->status = 0;
    ps->state = ST_PARSING;
    ps->cb_err = PE_NONE;
    ps->err[0] = '\0';
    ps->code = NULL;
}

static parser_t *check_parser(lua_State *L)
{
    parser_t *ps = (parser_t *)luaL_checkudata(L, 1, PARSER_MT);
    if (ps->closed) luaL_error(L, "http response parser is closed");
    return ps;
}

static void set_error(parser_t *ps, const char *code, const char *msg, const char *detail)
{
    ps->state = ST_ERROR;
    ps->code = code;
    if (detail)
        snprintf(ps->err, sizeof ps->err, "%s: %s", msg, detail);
    else
        snprintf(ps->err, sizeof ps->err, "%s", msg);
}

static int push_outcome(lua_State *L, const parser_t *ps)
{
    if (ps->state == ST_ERROR)
        return paykit_fail(L, ps->code, "%s", ps->err);
    lua_pushboolean(L, ps->state == ST_DONE);
    return 1;
}

/* Runs libhttp-parser over data (len 0 = end of stream) and records the outcome. */
static void run_general(parser_t *ps, const char *data, size_t len)
{
    size_t used;
    enum http_errno e;
    if (!ps->general) {
        http_parser_init(&ps->hp, HTTP_RESPONSE);
        ps->hp.data = ps;
        ps->general = 1;
    }
    used = http_parser_execute(&ps->hp, &settings, data, len);
    e = HTTP_PARSER_ERRNO(&ps->hp);

    if (ps->state == ST_DONE) {
        /* Paused at the end of the response; bytes beyond it mean the connection is not clean. */
        if (used < len) ps->keepalive = 0;
        return;
    }
    if (ps->cb_err == PE_TOO_LARGE) {
        set_error(ps, "too_large", "response body exceeds the size limit", NULL);
    } else if (ps->cb_err == PE_NOMEM) {
        set_error(ps, "other", "not enough memory for the response", NULL);
    } else if (ps->cb_err == PE_BAD_NAME || e == HPE_INVALID_HEADER_TOKEN) {
        /* One message for both checks of a header: which one sees a bad header first depends
         * on where the bytes were split (libhttp-parser reports a field only once it ends). */
        set_error(ps, "protocol", "malformed HTTP response: invalid header", NULL);
    } else if (ps->cb_err == PE_BAD_VERSION) {
        set_error(ps, "protocol", "malformed HTTP response: not HTTP/1.x", NULL);
    } else if (ps->cb_err == PE_BAD_STATUS) {
        set_error(ps, "protocol", "malformed HTTP response: status code outside 100-599", NULL);
    } else if (e == HPE_HEADER_OVERFLOW) {
        set_error(ps, "too_large", "response headers exceed the size limit", NULL);
    } else if (e == HPE_INVALID_EOF_STATE || (len == 0 && e == HPE_OK)) {
        set_error(ps, "protocol", "connection closed before the response was complete", NULL);
    } else if (e != HPE_OK) {
        set_error(ps, "protocol", "malformed HTTP response", http_errno_description(e));
    } else if (ps->hp.upgrade) {
        set_error(ps, "protocol", "unexpected protocol upgrade", NULL);
    }
}

/* ---- the fast reader ------------------------------------------------------------------------
 * A direct scan of a head that is whole in the first bytes fed and plainly simple; it gives
 * what libhttp-parser and the callbacks above give for it (the same hdrs entries in the same
 * order, status, keep-alive, body), and declines everything else before it has changed
 * anything, so the general reader then starts from the first byte. What it takes:
 *   "HTTP/1.1 " or "HTTP/1.0 ", three digits 200-599 but 204 and 304 (no interim answers, no
 *   bodiless statuses), " ", a reason of text bytes, CRLF;
 *   header lines "name:" OWS value CRLF: a name of RFC 9110 token bytes, a value of text bytes
 *   (SP, 0x21-0x7E, 0x80-0xFF; leading SP/HTAB dropped, trailing SP kept, as libhttp-parser);
 *   no line starting with SP or HTAB (obs-fold), no bare CR or LF, at most
 *   PAYKIT_FAST_MAX_HDRS lines and PAYKIT_FAST_MAX_HEAD bytes;
 *   exactly one Content-Length of 1-15 digits and nothing else, at most max_body;
 *   no Transfer-Encoding, no Upgrade; Connection and Proxy-Connection only "keep-alive" or
 *   "close" (any case), which set keep-alive as libhttp-parser's flags do;
 *   not a response to HEAD; the final CRLF.
 * A token byte (RFC 9110 tchar) maps to itself lowered; every other byte to 0. */
static const unsigned char lower_token[256] = {
    ['!'] = '!', ['#'] = '#', ['$'] = '$', ['%'] = '%', ['&'] = '&', ['\''] = '\'', ['*'] = '*',
    ['+'] = '+', ['-'] = '-', ['.'] = '.', ['0'] = '0', ['1'] = '1', ['2'] = '2', ['3'] = '3',
    ['4'] = '4', ['5'] = '5', ['6'] = '6', ['7'] = '7', ['8'] = '8', ['9'] = '9', ['A'] = 'a',
    ['B'] = 'b', ['C'] = 'c', ['D'] = 'd', ['E'] = 'e', ['F'] = 'f', ['G'] = 'g', ['H'] = 'h',
    ['I'] = 'i', ['J'] = 'j', ['K'] = 'k', ['L'] = 'l', ['M'] = 'm', ['N'] = 'n', ['O'] = 'o',
    ['P'] = 'p', ['Q'] = 'q', ['R'] = 'r', ['S'] = 's', ['T'] = 't', ['U'] = 'u', ['V'] = 'v',
    ['W'] = 'w', ['X'] = 'x', ['Y'] = 'y', ['Z'] = 'z', ['^'] = '^', ['_'] = '_', ['`'] = '`',
    ['a'] = 'a', ['b'] = 'b', ['c'] = 'c', ['d'] = 'd', ['e'] = 'e', ['f'] = 'f', ['g'] = 'g',
    ['h'] = 'h', ['i'] = 'i', ['j'] = 'j', ['k'] = 'k', ['l'] = 'l', ['m'] = 'm', ['n'] = 'n',
    ['o'] = 'o', ['p'] = 'p', ['q'] = 'q', ['r'] = 'r', ['s'] = 's', ['t'] = 't', ['u'] = 'u',
    ['v'] = 'v', ['w'] = 'w', ['x'] = 'x', ['y'] = 'y', ['z'] = 'z', ['|'] = '|', ['~'] = '~',
};

/* Whether the n bytes at s are word (n bytes, lower case) in any case. */
static int same_ci(const unsigned char *s, const char *word, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++)
        if ((s[i] | 0x20) != word[i]) return 0;
    return 1;
}

#define ONES 0x0101010101010101ull
/* Whether the n bytes at s are all value bytes but HTAB (SP, 0x21-0x7E, 0x80-0xFF): eight at a
 * time, a word holding a byte below 0x20 or a 0x7F fails (the exact "has a byte less than"
 * and "has a zero byte" word tests). */
#define NOT_TEXT(w, d) ((d) = (w) ^ (0x7f * ONES), ((((w) - 0x20 * ONES) & ~(w)) | (((d) - ONES) & ~(d))) & (0x80 * ONES))
static int plain_text(const unsigned char *s, size_t n)
{
    if (n >= 8) { /* the last word ends at the last byte (it may overlap bytes already seen) */
        const unsigned char *last = s + n - 8;
        uint64_t w, d;
        for (; s < last; s += 8) {
            memcpy(&w, s, 8);
            if (NOT_TEXT(w, d)) return 0;
        }
        memcpy(&w, last, 8);
        return !NOT_TEXT(w, d);
    }
    while (n--) {
        if (*s < 0x20 || *s == 0x7f) return 0;
        s++;
    }
    return 1;
}

/* The response whose head (head_len bytes, its entries in hdrs) the fast reader took: what is
 * here of its body. Returns 1 (the outcome in ps). */
static int fast_take(parser_t *ps, const char *data, size_t len, size_t head_len, uint64_t cl)
{
    size_t have = len - head_len;
    ps->fast = 1;
    if (have > cl) have = (size_t)cl;
    if (have && !paykit_buf_add(&ps->body, data + head_len, have)) {
        set_error(ps, "other", "not enough memory for the response", NULL);
        return 1;
    }
    ps->fast_left = cl - have;
    if (ps->fast_left == 0) {
        ps->state = ST_DONE;
        if (head_len + have < len) ps->keepalive = 0; /* bytes beyond the response */
    }
    return 1;
}

/* The head kept in ps->last, when data starts with its bytes (and its length fits max_body):
 * taken as the scan took it. Returns 1 when taken, 0 when the head must be scanned. */
static int fast_again(parser_t *ps, const char *data, size_t len)
{
    size_t h = ps->last_head, hn = ps->last_hdrs;
    if (!ps->last.len || len < h || ps->last_cl > (uint64_t)ps->max_body || memcmp(data, ps->last.p, h) != 0)
        return 0;
    if (ps->hdrs.cap < hn) {
        char *q = (char *)realloc(ps->hdrs.p, hn);
        if (!q) return 0;
        ps->hdrs.p = q;
        ps->hdrs.cap = hn;
    }
    memcpy(ps->hdrs.p, ps->last.p + h, hn);
    memcpy(ps->hl, ps->last_hl, (size_t)ps->last_n * 2 * sizeof ps->hl[0]);
    ps->hdrs.len = hn;
    ps->nhdrs = ps->last_n;
    ps->status = ps->last_status;
    ps->keepalive = ps->last_keepalive;
    return fast_take(ps, data, len, h, ps->last_cl);
}

/* Keeps the head just taken (head_len bytes of data, its entries in hdrs) for fast_again. */
static void fast_keep(parser_t *ps, const char *data, size_t head_len, uint64_t cl)
{
    ps->last.len = 0;
    if (!paykit_buf_add(&ps->last, data, head_len) || !paykit_buf_add(&ps->last, ps->hdrs.p, ps->hdrs.len)) {
        ps->last.len = 0; /* out of memory: nothing kept */
        return;
    }
    ps->last_head = head_len;
    ps->last_hdrs = ps->hdrs.len;
    ps->last_cl = cl;
    ps->last_status = ps->status;
    ps->last_keepalive = ps->keepalive;
    ps->last_n = ps->nhdrs;
    memcpy(ps->last_hl, ps->hl, (size_t)ps->nhdrs * 2 * sizeof ps->hl[0]);
}

/* Reads a whole simple head and what is here of its body. Returns 1 when it took the
 * response (ps->state DONE, or PARSING with fast_left body bytes to come), 0 when the general
 * reader must read it (ps untouched but for hdrs' contents and capacity, its length still 0). */
static int fast_head(parser_t *ps, const char *data, size_t len)
{
    const unsigned char *p = (const unsigned char *)data, *end, *e;
    int status, minor, n = 0, seen_cl = 0, ka_flag = 0, close_flag = 0;
    uint64_t cl = 0;
    unsigned char *out;

    if (ps->head)
        return 0;
    if (fast_again(ps, data, len))
        return 1;
    if (len < 17 || memcmp(p, "HTTP/1.", 7) != 0 || (p[7] != '0' && p[7] != '1') || p[8] != ' '
        || p[12] != ' ' || p[9] < '2' || p[9] > '5' || p[10] < '0' || p[10] > '9' || p[11] < '0' || p[11] > '9')
        return 0;
    minor = p[7] - '0';
    status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
    if (status == 204 || status == 304) return 0;
    end = p + (len < PAYKIT_FAST_MAX_HEAD ? len : PAYKIT_FAST_MAX_HEAD);
    /* room for every entry at once: an entry (name NUL value NUL) is never longer than its line */
    if (ps->hdrs.cap < (size_t)(end - p)) {
        char *q = (char *)realloc(ps->hdrs.p, (size_t)(end - p));
        if (!q) return 0;
        ps->hdrs.p = q;
        ps->hdrs.cap = (size_t)(end - p);
    }
    out = (unsigned char *)ps->hdrs.p;
    p += 13;
    e = memchr(p, '\r', (size_t)(end - p)); /* the reason: value bytes up to CRLF */
    if (!e || end - e < 2 || e[1] != '\n' || !plain_text(p, (size_t)(e - p))) return 0;
    p = e + 2;
    for (;;) {
        const unsigned char *value;
        unsigned char *name = out, c;
        size_t nn, vn;
        int j;
        if (p >= end) return 0;
        if (*p == '\r') {
            if (end - p < 2 || p[1] != '\n') return 0;
            p += 2;
            break;
        }
        while (p < end && (c = lower_token[*p]) != 0) {
            *out++ = c;
            p++;
        }
        nn = (size_t)(out - name);
        if (nn == 0 || p >= end || *p != ':' || n == PAYKIT_FAST_MAX_HDRS) return 0;
        p++;
        while (p < end && (*p == ' ' || *p == '\t')) p++;
        value = p;
        e = memchr(p, '\r', (size_t)(end - p));
        if (!e || end - e < 3 || e[1] != '\n' || e[2] == ' ' || e[2] == '\t') return 0;
        vn = (size_t)(e - value);
        if (!plain_text(value, vn)) return 0;
        p = e + 2;
        /* the names libhttp-parser reads for itself */
        switch (nn) {
        case 7:
            if (memcmp(name, "upgrade", 7) == 0) return 0;
            break;
        case 10:
        case 16:
            if (nn == 10 ? memcmp(name, "connection", 10) == 0 : memcmp(name, "proxy-connection", 16) == 0) {
                if (vn == 10 && same_ci(value, "keep-alive", 10)) ka_flag = 1;
                else if (vn == 5 && same_ci(value, "close", 5)) close_flag = 1;
                else return 0;
            }
            break;
        case 14:
            if (memcmp(name, "content-length", 14) == 0) {
                size_t i;
                if (seen_cl || vn == 0 || vn > 15) return 0;
                for (i = 0; i < vn; i++) {
                    if (value[i] < '0' || value[i] > '9') return 0;
                    cl = cl * 10 + (uint64_t)(value[i] - '0');
                }
                seen_cl = 1;
            }
            break;
        case 17:
            if (memcmp(name, "transfer-encoding", 17) == 0) return 0;
            break;
        default:
            break;
        }
        /* the same name earlier? marked, so that push_headers joins the values */
        ps->hl[2 * n] = (unsigned short)nn;
        ps->hl[2 * n + 1] = (unsigned short)vn;
        {
            const unsigned char *o = (const unsigned char *)ps->hdrs.p;
            for (j = 0; j < n; j++) {
                size_t l2 = ps->hl[2 * j] & 0x7fff;
                if (l2 == nn && memcmp(o, name, nn) == 0) { ps->hl[2 * n] |= 0x8000; break; }
                o += l2 + 1 + ps->hl[2 * j + 1] + 1;
            }
        }
        *out++ = '\0';
        memcpy(out, value, vn);
        out += vn;
        *out++ = '\0';
        n++;
    }
    if (!seen_cl || cl > (uint64_t)ps->max_body) return 0;

    /* taken: from here on, what libhttp-parser would have given */
    ps->hdrs.len = (size_t)((char *)out - ps->hdrs.p);
    ps->nhdrs = n;
    ps->status = status;
    ps->keepalive = minor == 1 ? !close_flag : ka_flag;
    fast_keep(ps, data, (size_t)((const char *)p - data), cl);
    return fast_take(ps, data, len, (size_t)((const char *)p - data), cl);
}

/* More body bytes (len 0: the peer closed) of a response whose head the fast reader took. */
static void fast_body(parser_t *ps, const char *data, size_t len)
{
    size_t take = len;
    if (len == 0) {
        set_error(ps, "protocol", "connection closed before the response was complete", NULL);
        return;
    }
    if (take > ps->fast_left) take = (size_t)ps->fast_left;
    if (!paykit_buf_add(&ps->body, data, take)) {
        set_error(ps, "other", "not enough memory for the response", NULL);
        return;
    }
    ps->fast_left -= take;
    if (ps->fast_left == 0) {
        ps->state = ST_DONE;
        if (take < len) ps->keepalive = 0;
    }
}

/* Reads data (len 0 = end of stream) with the fast reader when it applies, else libhttp-parser. */
static void run(parser_t *ps, const char *data, size_t len)
{
    if (ps->fast) {
        fast_body(ps, data, len);
        return;
    }
    if (!ps->fed && len > 0) {
        ps->fed = 1;
        if (!ps->no_fast && fast_head(ps, data, len)) return;
        ps->hdrs.len = 0;
    }
    run_general(ps, data, len);
}

/* ---- the C-level API (csrc/httpparse.h) ---- */

void paykit_resp_start(paykit_resp *ps, size_t max_body, int head)
{
    ps->max_body = max_body;
    parser_start(ps, head);
}

int paykit_resp_feed(paykit_resp *ps, const char *data, size_t len)
{
    if (ps->state == ST_PARSING) run(ps, len ? data : NULL, len);
    else if (ps->state == ST_DONE && len > 0) ps->keepalive = 0;
    return ps->state;
}

void paykit_hcache_init(lua_State *L, paykit_hcache *hc)
{
    memset(hc->n, 0, sizeof hc->n);
    lua_createtable(L, PAYKIT_HCACHE_N, 0);
    hc->ref = luaL_ref(L, LUA_REGISTRYINDEX);
}

void paykit_hcache_free(lua_State *L, paykit_hcache *hc)
{
    if (hc->ref != LUA_NOREF) luaL_unref(L, LUA_REGISTRYINDEX, hc->ref);
    hc->ref = LUA_NOREF;
    memset(hc->n, 0, sizeof hc->n);
}

/* Pushes the n bytes at s: the cached string of entry slot when it holds the same bytes, else
 * a new string, which then takes the entry (ct: the cache table's stack index, 0: none). */
static void push_text(lua_State *L, const char *s, size_t n, paykit_hcache *hc, int ct, int slot)
{
    if (ct && slot < PAYKIT_HCACHE_N && n < PAYKIT_HCACHE_LEN) {
        if (hc->n[slot] == n + 1 && memcmp(hc->text[slot], s, n) == 0) {
            lua_rawgeti(L, ct, slot + 1);
            return;
        }
        lua_pushlstring(L, s, n);
        lua_pushvalue(L, -1);
        lua_rawseti(L, ct, slot + 1);
        memcpy(hc->text[slot], s, n);
        hc->n[slot] = (unsigned char)(n + 1);
        return;
    }
    lua_pushlstring(L, s, n);
}

void paykit_resp_push_headers(lua_State *L, const paykit_resp *ps, paykit_hcache *hc)
{
    size_t off = 0;
    int t;
    lua_createtable(L, 0, ps->nhdrs); /* sized once: no rehash as the names go in */
    t = lua_gettop(L);
    if (ps->fast) { /* lengths known, repeated names marked */
        int i, ct = 0;
        if (hc && hc->ref != LUA_NOREF) {
            lua_rawgeti(L, LUA_REGISTRYINDEX, hc->ref);
            ct = lua_gettop(L);
        }
        for (i = 0; i < ps->nhdrs; i++) {
            const char *name = ps->hdrs.p + off;
            size_t nlen = ps->hl[2 * i] & 0x7fff, vlen = ps->hl[2 * i + 1];
            push_text(L, name, nlen, hc, ct, 2 * i);
            if (ps->hl[2 * i] & 0x8000) {
                paykit_addheader(L, t, name + nlen + 1, vlen);
                lua_pop(L, 1);
            } else {
                push_text(L, name + nlen + 1, vlen, hc, ct, 2 * i + 1);
                lua_rawset(L, t);
            }
            off += nlen + vlen + 2;
        }
        if (ct) lua_pop(L, 1);
        return;
    }
    while (off < ps->hdrs.len) {
        const char *name = ps->hdrs.p + off;
        size_t nlen = strlen(name);
        const char *value = name + nlen + 1;
        size_t vlen = strlen(value);
        size_t at = off, o = 0;
        int seen = 0;
        off += nlen + 1 + vlen + 1;
        while (o < at) { /* the same name earlier? (names are lowercase; a handful of them) */
            const char *n2 = ps->hdrs.p + o;
            size_t l2 = strlen(n2);
            const char *v2 = n2 + l2 + 1;
            if (l2 == nlen && memcmp(n2, name, nlen) == 0) { seen = 1; break; }
            o += l2 + 1 + strlen(v2) + 1;
        }
        lua_pushlstring(L, name, nlen);
        if (!seen) { /* the common case: set at once, no lookup */
            lua_pushlstring(L, value, vlen);
            lua_rawset(L, t);
            continue;
        }
        paykit_addheader(L, t, value, vlen);
        lua_pop(L, 1);
    }
}

void paykit_resp_free(paykit_resp *ps)
{
    paykit_buf_free(&ps->last);
    paykit_buf_free(&ps->body);
    paykit_buf_free(&ps->hdrs);
    paykit_buf_free(&ps->field);
    paykit_buf_free(&ps->value);
}

static int l_feed(lua_State *L)
{
    parser_t *ps = check_parser(L);
    size_t len;
    const char *data = luaL_checklstring(L, 2, &len);
    if (ps->state == ST_PARSING && len > 0) run(ps, data, len);
    else if (ps->state == ST_DONE && len > 0) ps->keepalive = 0;
    return push_outcome(L, ps);
}

static int l_finish(lua_State *L)
{
    parser_t *ps = check_parser(L);
    if (ps->state == ST_PARSING) run(ps, NULL, 0);
    return push_outcome(L, ps);
}

/* p:fast(): whether the fast reader read this response (for the differential checks). */
static int l_fast(lua_State *L)
{
    parser_t *ps = check_parser(L);
    lua_pushboolean(L, ps->fast);
    return 1;
}

static int l_result(lua_State *L)
{
    parser_t *ps = check_parser(L);
    if (ps->state != ST_DONE) return luaL_error(L, "http response parser: the response is not complete");
    lua_createtable(L, 0, 4);
    lua_pushinteger(L, ps->status);
    lua_setfield(L, -2, "status");
    paykit_resp_push_headers(L, ps, NULL);
    lua_setfield(L, -2, "headers");
    lua_pushlstring(L, ps->body.p ? ps->body.p : "", ps->body.len);
    lua_setfield(L, -2, "body");
    lua_pushboolean(L, ps->keepalive);
    lua_setfield(L, -2, "keepalive");
    return 1;
}

static int head_option(lua_State *L, int idx)
{
    int head;
    if (lua_isnoneornil(L, idx)) return 0;
    luaL_checktype(L, idx, LUA_TTABLE);
    lua_getfield(L, idx, "head");
    head = lua_toboolean(L, -1);
    lua_pop(L, 1);
    return head;
}

static int l_reset(lua_State *L)
{
    parser_t *ps = check_parser(L);
    parser_start(ps, head_option(L, 2));
    lua_settop(L, 1);
    return 1;
}

static int l_close(lua_State *L)
{
    parser_t *ps = (parser_t *)luaL_checkudata(L, 1, PARSER_MT);
    paykit_resp_free(ps);
    ps->closed = 1;
    return 0;
}

static int l_tostring(lua_State *L)
{
    const parser_t *ps = (const parser_t *)luaL_checkudata(L, 1, PARSER_MT);
    lua_pushfstring(L, "paykit.http_response_parser (%s)",
                    ps->closed ? "closed" : ps->state == ST_DONE ? "done"
                    : ps->state == ST_ERROR ? "failed" : "parsing");
    return 1;
}

static int l_new(lua_State *L)
{
    parser_t *ps;
    size_t max_body = DEFAULT_MAX_BODY;
    int head = 0, no_fast = 0;
    if (!lua_isnoneornil(L, 1)) {
        luaL_checktype(L, 1, LUA_TTABLE);
        lua_getfield(L, 1, "max_body");
        if (!lua_isnil(L, -1)) {
            lua_Number n;
            if (!lua_isnumber(L, -1)) return luaL_argerror(L, 1, "max_body must be a number");
            n = lua_tonumber(L, -1);
            if (!(n >= 0) || n > (lua_Number)PAYKIT_MAX_SAFE_INTEGER)
                return luaL_argerror(L, 1, "max_body out of range");
            max_body = (size_t)n;
        }
        lua_pop(L, 1);
        head = head_option(L, 1);
        lua_getfield(L, 1, "fast");
        no_fast = lua_type(L, -1) == LUA_TBOOLEAN && !lua_toboolean(L, -1);
        lua_pop(L, 1);
    }
    ps = (parser_t *)lua_newuserdata(L, sizeof *ps);
    memset(ps, 0, sizeof *ps);
    ps->no_fast = no_fast;
    luaL_getmetatable(L, PARSER_MT);
    lua_setmetatable(L, -2);
    ps->max_body = max_body;
    parser_start(ps, head);
    return 1;
}

static const luaL_Reg parser_methods[] = {
    {"feed", l_feed},
    {"finish", l_finish},
    {"result", l_result},
    {"reset", l_reset},
    {"close", l_close},
    {"fast", l_fast},
    {NULL, NULL}
};

void paykit_httpparse_register(lua_State *L)
{
    luaL_newmetatable(L, PARSER_MT);
    lua_newtable(L);
    luaL_setfuncs(L, parser_methods, 0);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_close);
    lua_setfield(L, -2, "__gc");
#if LUA_VERSION_NUM >= 504
    lua_pushcfunction(L, l_close);
    lua_setfield(L, -2, "__close");
#endif
    lua_pushcfunction(L, l_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pop(L, 1);
    lua_pushcfunction(L, l_new);
    lua_setfield(L, -2, "http_response_parser");
}
