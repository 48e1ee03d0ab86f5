/* The C-level API of csrc/httpparse.c (HTTP/1.1 responses on libhttp-parser), for the parts of
 * the core that parse responses without going through Lua (csrc/wire.c). The Lua binding
 * (core.http_response_parser) is a thin layer over the same functions.
 *
 *   paykit_resp_start(ps, max_body, head)   before the first byte of a response (also resets)
 *   paykit_resp_feed(ps, data, len)         bytes as they arrive; len 0 = the peer closed;
 *                                           returns PAYKIT_RESP_PARSING / _DONE / _ERROR
 *   ps->status, ps->keepalive, ps->body     once done; ps->code ("protocol", "too_large",
 *   ps->code, ps->err                       "other") and ps->err (a message) once failed
 *   paykit_resp_push_headers(L, ps, hc)     pushes {lowercase name = "v1, v2"} (hc: a string cache or NULL)
 *   paykit_resp_free(ps)                    frees the buffers (idempotent; start again to reuse)
 * No Lua code runs in feed; a struct starts zeroed (memset) before the first start.
 *
 * Two readers, one outcome. When the first bytes fed hold a whole, plainly simple head (see
 * fast_head in httpparse.c: HTTP/1.0 or 1.1, a status 200-599 other than 204 and 304, CRLF
 * lines of token names and printable values, exactly one plain Content-Length within
 * max_body, no Transfer-Encoding or Upgrade, Connection only "keep-alive" or "close"), a
 * direct scan reads it and counts the body in; anything else, from the first byte on, goes to
 * libhttp-parser. The outcome (status, headers, body, keep-alive, or the error) is the same
 * either way: spec/core_httpparse_fast_spec.lua and the httpparse_fast fuzz target compare the
 * two on generated answers (ps->no_fast = 1 forces the general reader). The fast reader keeps
 * the last head it read (ps->last): the next one that starts with the same head bytes gets what
 * that head gave (the scan of a head depends on its bytes alone) without being scanned. */
#ifndef PAYKIT_HTTPPARSE_H
#define PAYKIT_HTTPPARSE_H

#include <http_parser.h>
#include "paykit.h"

enum paykit_resp_state { PAYKIT_RESP_PARSING = 0, PAYKIT_RESP_DONE, PAYKIT_RESP_ERROR };

/* The fast reader takes heads of at most this many bytes and header lines (else: the general one). */
#define PAYKIT_FAST_MAX_HEAD 8192
#define PAYKIT_FAST_MAX_HDRS 48

typedef struct paykit_resp {
    http_parser hp;
    paykit_buf body;
    paykit_buf hdrs;   /* completed headers: name '\0' value '\0' ..., names lowercased */
    paykit_buf field;  /* header name being read */
    paykit_buf value;  /* header value being read */
    unsigned short hl[2 * PAYKIT_FAST_MAX_HDRS]; /* fast reader: name, value length of each entry */
    size_t max_body;
    int in_value;
    int head;    /* response to a HEAD request: no body whatever the headers say */
    int keepalive;
    int status;
    int nhdrs;   /* entries in hdrs (to size the Lua table) */
    enum paykit_resp_state state;
    int cb_err;
    int closed;
    int no_fast;     /* set by the owner: always libhttp-parser (the differential checks) */
    int fed;         /* bytes were fed since start */
    int general;     /* libhttp-parser reads this response (hp initialised) */
    int fast;        /* the fast reader read the head: hl[] valid, names distinct */
    uint64_t fast_left; /* fast reader: body bytes still to come */
    /* fast reader: the last head it took, kept whole (its bytes through the final CRLF, then
     * its hdrs entries) with what it read from it; a head of the same bytes is taken from
     * here without a new scan (last.len 0: none) */
    paykit_buf last;
    size_t last_head, last_hdrs;
    uint64_t last_cl;
    int last_status, last_keepalive, last_n;
    unsigned short last_hl[2 * PAYKIT_FAST_MAX_HDRS];
    char err[160];
    const char *code;
} paykit_resp;

/* The Lua strings of the header names and values of the last answers, by position (name and
 * value of header i are entries 2i and 2i+1), kept alive in a table in the registry: an answer
 * whose header bytes are those of the last one at that place gets the same strings without
 * hashing or allocating them again (most of an answer's headers repeat from call to call). */
#define PAYKIT_HCACHE_N 32
#define PAYKIT_HCACHE_LEN 40
typedef struct {
    int ref;                                 /* the table (LUA_NOREF: none) */
    unsigned char n[PAYKIT_HCACHE_N];        /* entry length + 1, 0: empty */
    char text[PAYKIT_HCACHE_N][PAYKIT_HCACHE_LEN];
} paykit_hcache;

void paykit_hcache_init(lua_State *L, paykit_hcache *hc); /* may raise (out of memory) */
void paykit_hcache_free(lua_State *L, paykit_hcache *hc); /* idempotent; hc->ref LUA_NOREF after */

void paykit_resp_start(paykit_resp *ps, size_t max_body, int head);
int paykit_resp_feed(paykit_resp *ps, const char *data, size_t len);
void paykit_resp_push_headers(lua_State *L, const paykit_resp *ps, paykit_hcache *hc); /* hc: NULL or a cache */
void paykit_resp_free(paykit_resp *ps);

#endif
