/* Reading the option tables the two HTTP clients share (csrc/http.c: libcurl, csrc/wire.c:
 * sockets and OpenSSL): the client's options (core.http_client / core.wire_client), a request
 * table's fields and its headers. Misuse raises with luaL_argerror, naming the field; both
 * clients say the same words for the same mistake (spec/core_http_spec.lua runs one table of
 * cases against both). */
#ifndef PAYKIT_REQOPTS_H
#define PAYKIT_REQOPTS_H

#include "paykit.h"

/* An optional non-negative integer field (at most max, and at most 2^53-1) of the table at idx,
 * or def when the field is nil. pos > 0: the table is request pos of a batch, and a raise
 * says so (as paykit_req_argerror). */
long paykit_opt_count(lua_State *L, int idx, int arg, int pos, const char *name, long def, long max);

/* As paykit_opt_count for the value at stack index v itself. */
long paykit_count_value(lua_State *L, int v, int arg, int pos, const char *name, long def, long max);

/* An optional boolean field, or def when it is nil (pos as for paykit_opt_count). */
int paykit_opt_bool(lua_State *L, int idx, int arg, int pos, const char *name, int def);

/* Raises "request <pos>: <msg>" (pos > 0: a request of a batch) or msg as argument arg. */
void paykit_req_argerror(lua_State *L, int arg, int pos, const char *msg);

/* Whether s (n bytes) holds a CR, LF or NUL: never in a header line. Eight bytes a step. */
int paykit_bad_header_text(const char *s, size_t n);

/* The client options both clients take. On entry *o holds the client's defaults; the strings
 * are malloc'd copies (the caller frees them), NULL when not given. */
typedef struct {
    long connect_timeout_ms, timeout_ms, max_redirects, max_connections, keepalive_ms, stall_ms;
    size_t max_response;
    int verify, follow;
    char *cafile, *capath, *user_agent;
} paykit_client_opts;

/* Reads connect_timeout, timeout, max_response, max_redirects, max_connections,
 * keepalive_timeout, stall_timeout, verify, follow_redirects, cafile, capath and user_agent
 * (no CR or LF) of the table at idx (argument arg). Everything is checked before the strings
 * are copied, so a raise leaves nothing to free. */
void paykit_read_client_opts(lua_State *L, int idx, int arg, paykit_client_opts *o);

/* The fields of a request table. On entry timeout_ms, connect_timeout_ms, stall_ms and follow
 * hold the client's defaults. method is NULL when the request names none. */
typedef struct {
    const char *url, *method, *body;
    size_t body_len, method_len;     /* method_len: 0 when method is NULL */
    int has_body, follow, idempotent;
    long timeout_ms, connect_timeout_ms, stall_ms;
} paykit_req;

/* Reads and checks the request table at idx (argument arg, position pos in a batch, 0 for
 * one request): url, method, timeout, connect_timeout, stall_timeout, follow_redirects, body,
 * idempotent (default: only GET, HEAD, OPTIONS; no method: a request without a body). Leaves
 * the body (or nil) on the stack; the strings stay referenced by the request table. */
void paykit_read_req(lua_State *L, int idx, int arg, int pos, paykit_req *r);

/* The fields of a request table, in the order they are checked. */
enum {
    PAYKIT_RF_URL, PAYKIT_RF_METHOD, PAYKIT_RF_TIMEOUT, PAYKIT_RF_CONNECT_TIMEOUT, PAYKIT_RF_STALL_TIMEOUT,
    PAYKIT_RF_FOLLOW, PAYKIT_RF_BODY, PAYKIT_RF_IDEMPOTENT, PAYKIT_RF_SEND_TIMEOUT, PAYKIT_RF_READ_TIMEOUT,
    PAYKIT_RF_HEADERS, PAYKIT_RF_N
};

/* Pushes the PAYKIT_RF_N names of the request fields (strings, in PAYKIT_RF_* order): the
 * upvalues that paykit_req_fields reads the fields with. */
void paykit_req_keys(lua_State *L);

/* Pushes the PAYKIT_RF_N fields of the table at idx (nil where absent) and returns the stack
 * index of the first (field f at base + f). up > 0: the running C function's upvalues up ..
 * up + PAYKIT_RF_N - 1 hold the names (paykit_req_keys), and a table without a metatable is
 * read with lua_rawget and those strings (no C string to hash and look up again per name);
 * one with a metatable (an __index may answer), or up 0, with lua_getfield: the values are the
 * same either way (spec/core_wire_reqtable_spec.lua compares the two). A value that is not a
 * table gives nils (paykit_read_req_fields raises). */
int paykit_req_fields(lua_State *L, int idx, int up);

/* paykit_read_req over the values paykit_req_fields pushed at base for the table at idx (the
 * same checks, order and messages); leaves nothing on the stack. */
void paykit_read_req_fields(lua_State *L, int idx, int base, int arg, int pos, paykit_req *r);

/* Called for each header of a request: name/nn and value/vn for a "name = value" entry, or
 * name NULL and value the whole "Name: value" string of an array entry. Returns 0 when out of
 * memory. */
typedef int (*paykit_header_fn)(void *ud, const char *name, size_t nn, const char *value, size_t vn);

/* Checks the headers field of the request at idx (every entry, raising on a bad one) and,
 * with fn != NULL, hands each to fn. After fn has failed once it is not called again; the
 * return is then 0 (out of memory), else 1. */
int paykit_read_headers(lua_State *L, int idx, int arg, int pos, paykit_header_fn fn, void *ud);

/* As paykit_read_headers for the headers value at stack index t itself (nil: none). */
int paykit_read_header_table(lua_State *L, int t, int arg, int pos, paykit_header_fn fn, void *ud);

/* Checks a request's method (n bytes): a non-empty token of letters, '-' and '_' (raises). */
void paykit_check_method(lua_State *L, int arg, int pos, const char *m, size_t n);

/* Whether method m (n bytes) is idempotent by default: GET, HEAD or OPTIONS, exactly. */
int paykit_idempotent_method(const char *m, size_t n);

#endif
