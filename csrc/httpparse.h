/* The C-level API of csrc/httpparse.c (HTTP/1.1 responses on libhttp-parser), for the parts of
 * the core that parse responses without going through Lua (csrc/wire.c). The Lua binding
 * (core.http_response_parser) is a thin layer over the same functions.
 *
 *   paykit_resp_start(ps, max_body, head)   before the first byte of a response (also resets)
 *   paykit_resp_feed(ps, data, len)         bytes as they arrive; len 0 = the peer closed;
 *                                           returns PAYKIT_RESP_PARSING / _DONE / _ERROR
 *   ps->status, ps->keepalive, ps->body     once done; ps->code ("protocol", "too_large",
 *   ps->code, ps->err                       "other") and ps->err (a message) once failed
 *   paykit_resp_push_headers(L, ps)         pushes {lowercase name = "v1, v2"}
 *   paykit_resp_free(ps)                    frees the buffers (idempotent; start again to reuse)
 * No Lua code runs in feed; a struct starts zeroed (memset) before the first start. */
#ifndef PAYKIT_HTTPPARSE_H
#define PAYKIT_HTTPPARSE_H

#include <http_parser.h>
#include "paykit.h"

enum paykit_resp_state { PAYKIT_RESP_PARSING = 0, PAYKIT_RESP_DONE, PAYKIT_RESP_ERROR };

typedef struct paykit_resp {
    http_parser hp;
    paykit_buf body;
    paykit_buf hdrs;   /* completed headers: name '\0' value '\0' ..., names lowercased */
    paykit_buf field;  /* header name being read */
    paykit_buf value;  /* header value being read */
    size_t max_body;
    int in_value;
    int head;    /* response to a HEAD request: no body whatever the headers say */
    int keepalive;
    int status;
    int nhdrs;   /* entries in hdrs (to size the Lua table) */
    enum paykit_resp_state state;
    int cb_err;
    int closed;
    char err[160];
    const char *code;
} paykit_resp;

void paykit_resp_start(paykit_resp *ps, size_t max_body, int head);
int paykit_resp_feed(paykit_resp *ps, const char *data, size_t len);
void paykit_resp_push_headers(lua_State *L, const paykit_resp *ps);
void paykit_resp_free(paykit_resp *ps);

#endif
