/* http: the libcurl client behind paykit's transport.
 *
 *   core.http_client(opts)          -> client
 *   client:request(req)             -> {status=, headers=, body=} | nil, message, code, maybe_sent
 *   client:batch(reqs[, {max_in_flight=N}]) -> array of responses or {error=, code=, maybe_sent=}
 *   client:close()
 *
 * Every transfer, single or batched, runs through the client's one multi handle. Connections,
 * DNS answers and TLS sessions live in a CURLSH share handle, so a connection opened by a batch
 * is reused by the next request and the other way round. Easy handles are kept in a small pool
 * (one per transfer slot) and reused: a request of the same shape as the handle's last one
 * (method, body path, timeouts) sets only its URL, body and headers; any other starts from
 * curl_easy_reset. A call runs as start (set up transfers) / collect (from the multi handle)
 * / deliver (one result to Lua, the one path for every outcome).
 *
 * All C resources hang off the client userdata, which is allocated before any of them, so __gc
 * (also __close on 5.4, and :close()) can always free everything, even after a Lua error raised
 * in the middle of a batch. No Lua code runs while libcurl works: callbacks only fill C buffers,
 * and Lua values are built once a transfer is done. The only mutable global is the once-only
 * curl_global_init guard. */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "paykit.h"
#include "reqopts.h"

#define CLIENT_MT "paykit.http.client"
#define DEFAULT_CONNECT_TIMEOUT_MS 10000L
#define DEFAULT_TIMEOUT_MS 30000L
#define DEFAULT_MAX_RESPONSE (8u * 1024u * 1024u)
#define DEFAULT_MAX_REDIRECTS 5L
#define DEFAULT_MAX_CONNECTIONS 16L
#define MAX_HEADER_BYTES (256u * 1024u)  /* response header block cap (own limit, not max_response) */
#define KEEP_BUFFER_BYTES (64u * 1024u)  /* buffers up to this size are kept for the next transfer */
#define POLL_MS 1000

/* ---- once-only library init (the one global) -------------------------------------------- */

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static CURLcode global_rc = CURLE_FAILED_INIT;

static void global_init(void) { global_rc = curl_global_init(CURL_GLOBAL_DEFAULT); }

/* ---- growable byte buffers ---------------------------------------------------------------- */

/* Empties b for the next transfer; a large one is freed rather than kept. */
static void buf_recycle(paykit_buf *b)
{
    b->len = 0;
    if (b->cap > KEEP_BUFFER_BYTES) {
        free(b->p);
        b->p = NULL;
        b->cap = 0;
    }
}

/* ---- transfers and the client ------------------------------------------------------------- */

enum { OVER_NONE, OVER_BODY, OVER_HEADERS, OVER_MEMORY };

typedef struct xfer {
    CURL *easy;                 /* kept between transfers: the pool */
    struct curl_slist *hdrs;
    paykit_buf body, head;
    size_t max_body;
    int over;                   /* why a callback stopped the transfer */
    const char *up;             /* the body of a request that must not be resent (read callback) */
    size_t up_len, up_off;
    int no_resend;
    int index;                  /* request position (1-based) while busy, 0 when free */
    int in_multi;
    int keep_conf;              /* a client's transfer: its options stay set between requests */
    int conf_ok;                /* conf describes the options set on easy (see xfer_setup) */
    struct {
        int kind;               /* XK_*: how the method and the body were set */
        int follow, fresh;
        long timeout_ms, connect_timeout_ms, stall_ms;
        char method[24];        /* the method as given ("" for none) */
    } conf;
    char err[CURL_ERROR_SIZE];
} xfer;

/* How a transfer's method and body were set up. */
enum { XK_GET, XK_HEAD, XK_READ, XK_FIELDS, XK_CUSTOM };

typedef struct {
    CURLSH *share;              /* NULL once closed */
    CURLM *multi;
    xfer **slots;
    int nslots, capslots;
    long connect_timeout_ms, timeout_ms, max_redirects, max_connections;
    long keepalive_ms, stall_ms;  /* idle connection age limit; no-progress limit (0: none) */
    size_t max_response;
    size_t expect_from;         /* body size from which libcurl may send Expect: 100-continue */
    int verify, follow;
    char *cafile, *capath, *user_agent;
} client_t;

static void xfer_release_in(CURLM *multi, xfer *x)
{
    if (x->in_multi) {
        curl_multi_remove_handle(multi, x->easy);
        x->in_multi = 0;
    }
    curl_slist_free_all(x->hdrs);
    x->hdrs = NULL;
    buf_recycle(&x->body);
    buf_recycle(&x->head);
    x->index = 0;
    x->over = OVER_NONE;
}

static void xfer_release(client_t *c, xfer *x) { xfer_release_in(c->multi, x); }

static void xfer_destroy_in(CURLM *multi, xfer *x)
{
    xfer_release_in(multi, x);
    if (x->easy) {
        curl_easy_setopt(x->easy, CURLOPT_SHARE, NULL);
        curl_easy_cleanup(x->easy);
    }
    paykit_buf_free(&x->body);
    paykit_buf_free(&x->head);
    free(x);
}

static void xfer_destroy(client_t *c, xfer *x) { xfer_destroy_in(c->multi, x); }

/* Frees every C resource; safe to call any number of times. */
static void client_free(client_t *c)
{
    int i;
    for (i = 0; i < c->nslots; i++)
        xfer_destroy(c, c->slots[i]);
    free(c->slots);
    c->slots = NULL;
    c->nslots = c->capslots = 0;
    if (c->multi) {
        curl_multi_cleanup(c->multi);
        c->multi = NULL;
    }
    if (c->share) {
        curl_share_cleanup(c->share);
        c->share = NULL;
    }
    free(c->cafile);
    free(c->capath);
    free(c->user_agent);
    c->cafile = c->capath = c->user_agent = NULL;
}

/* Releases transfers left busy by a call that a Lua error interrupted. */
static void client_settle(client_t *c)
{
    int i;
    for (i = 0; i < c->nslots; i++)
        if (c->slots[i]->index)
            xfer_release(c, c->slots[i]);
}

/* Keeps at most max_connections idle easy handles once a call is done. */
static void client_trim(client_t *c)
{
    while (c->nslots > c->max_connections) {
        c->nslots--;
        xfer_destroy(c, c->slots[c->nslots]);
    }
}

static client_t *check_client(lua_State *L)
{
    client_t *c = (client_t *)luaL_checkudata(L, 1, CLIENT_MT);
    if (!c->share)
        luaL_error(L, "paykit http client is closed");
    return c;
}

/* client:close(), also __gc and (5.4) __close: frees the connections now; the client can no
 * longer be used. */
static int client_close(lua_State *L)
{
    client_t *c = (client_t *)luaL_checkudata(L, 1, CLIENT_MT);
    client_free(c);
    return 0;
}

static int client_tostring(lua_State *L)
{
    client_t *c = (client_t *)luaL_checkudata(L, 1, CLIENT_MT);
    lua_pushfstring(L, "paykit.http.client (%s): %p", c->share ? "open" : "closed", (void *)c);
    return 1;
}

/* core.http_client(opts) */
static int http_client(lua_State *L)
{
    client_t *c;
    int has_opts = !lua_isnoneornil(L, 1);
    if (has_opts)
        luaL_checktype(L, 1, LUA_TTABLE);
    pthread_once(&global_once, global_init);
    if (global_rc != CURLE_OK)
        return luaL_error(L, "curl_global_init failed: %s", curl_easy_strerror(global_rc));

    c = (client_t *)lua_newuserdata(L, sizeof *c);
    memset(c, 0, sizeof *c);
    luaL_getmetatable(L, CLIENT_MT);
    lua_setmetatable(L, -2);

    c->connect_timeout_ms = DEFAULT_CONNECT_TIMEOUT_MS;
    c->timeout_ms = DEFAULT_TIMEOUT_MS;
    c->max_response = DEFAULT_MAX_RESPONSE;
    c->max_redirects = DEFAULT_MAX_REDIRECTS;
    c->max_connections = DEFAULT_MAX_CONNECTIONS;
    c->verify = 1;
    if (has_opts) {
        paykit_client_opts o = { .connect_timeout_ms = c->connect_timeout_ms, .timeout_ms = c->timeout_ms,
                                 .max_redirects = c->max_redirects, .max_connections = c->max_connections,
                                 .max_response = c->max_response, .verify = 1 };
        paykit_read_client_opts(L, 1, 1, &o);
        c->connect_timeout_ms = o.connect_timeout_ms;
        c->timeout_ms = o.timeout_ms;
        c->max_response = o.max_response;
        c->max_redirects = o.max_redirects;
        c->max_connections = o.max_connections;
        c->keepalive_ms = o.keepalive_ms;
        c->stall_ms = o.stall_ms;
        c->verify = o.verify;
        c->follow = o.follow;
        c->cafile = o.cafile;
        c->capath = o.capath;
        c->user_agent = o.user_agent;
    }
    if (c->max_connections < 1)
        c->max_connections = 1;
    /* libcurl 7.88 asks for 100-continue only above 1 MiB of body (EXPECT_100_THRESHOLD); an
     * older one may ask sooner, so every request there carries the empty Expect header */
    c->expect_from = curl_version_info(CURLVERSION_NOW)->version_num >= 0x075800 ? 1024u * 1024u : 0;

    c->share = curl_share_init();
    c->multi = curl_multi_init();
    if (!c->share || !c->multi) {
        client_free(c);
        return luaL_error(L, "cannot create a libcurl handle");
    }
    curl_share_setopt(c->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
    curl_share_setopt(c->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
    curl_share_setopt(c->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_CONNECT);
    return 1;
}

/* ---- libcurl callbacks: C buffers only ---------------------------------------------------- */

static size_t on_body(char *data, size_t size, size_t nmemb, void *ud)
{
    xfer *x = (xfer *)ud;
    size_t n = size * nmemb;
    if (x->body.len > x->max_body || n > x->max_body - x->body.len) {
        x->over = OVER_BODY;
        return 0;
    }
    if (!paykit_buf_add(&x->body, data, n)) {
        x->over = OVER_MEMORY;
        return 0;
    }
    return n;
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *ud)
{
    xfer *x = (xfer *)ud;
    size_t n = size * nmemb;
    if (n >= 5 && memcmp(data, "HTTP/", 5) == 0)
        x->head.len = 0; /* a new response (after 1xx or a redirect): keep only the last */
    if (x->head.len > MAX_HEADER_BYTES || n > MAX_HEADER_BYTES - x->head.len) {
        x->over = OVER_HEADERS;
        return 0;
    }
    if (!paykit_buf_add(&x->head, data, n)) {
        x->over = OVER_MEMORY;
        return 0;
    }
    return n;
}

/* The body of a request that must not be resent is handed to libcurl through this callback,
 * with no seek callback: libcurl cannot rewind it, so its transparent retry of a request on a
 * reused connection that died (after it read the request) fails with CURLE_SEND_FAIL_REWIND
 * instead of sending the request a second time. */
static size_t on_read(char *dest, size_t size, size_t nmemb, void *ud)
{
    xfer *x = (xfer *)ud;
    size_t n = size * nmemb, left = x->up_len - x->up_off;
    if (n > left)
        n = left;
    if (n) {
        memcpy(dest, x->up + x->up_off, n);
        x->up_off += n;
    }
    return n;
}

/* ---- requests ----------------------------------------------------------------------------- */

/* A request as read from its Lua table (pointers into Lua strings kept alive by the caller). */
typedef struct {
    const char *method, *url, *body;
    size_t body_len;
    int has_body;
    long timeout_ms, connect_timeout_ms, stall_ms;
    int follow;
    int idempotent;             /* libcurl may send it again on a reused connection that died */
    int headers;                /* 1: the header list is built (in the transfer); -1: out of memory */
} reqspec;

/* Appends "Name: value" (or "Name;", libcurl's way of sending an empty value; or the array
 * form's own line when name is NULL) to the list. Returns 0 only when out of memory. */
static int add_header_line(struct curl_slist **out, const char *name, size_t nn, const char *value, size_t vn)
{
    char small[256], *line = small;
    struct curl_slist *next;
    if (name) {
        size_t need = nn + 2 + vn + 1;
        if (need > sizeof small && (line = malloc(need)) == NULL)
            return 0;
        memcpy(line, name, nn);
        if (vn) {
            line[nn] = ':';
            line[nn + 1] = ' ';
            memcpy(line + nn + 2, value, vn);
            line[nn + 2 + vn] = '\0';
        } else {
            line[nn] = ';';
            line[nn + 1] = '\0';
        }
        value = line;
    }
    next = curl_slist_append(*out, value); /* copies the line */
    if (line != small)
        free(line);
    if (!next)
        return 0;
    *out = next;
    return 1;
}

/* paykit_read_headers' callback: one header into the list (ud: the struct curl_slist **). */
static int header_to_list(void *ud, const char *name, size_t nn, const char *value, size_t vn)
{
    return add_header_line((struct curl_slist **)ud, name, nn, value, vn);
}

/* Reads and checks the request table at idx (raises on misuse). Leaves the body string (or
 * nil) on the stack: the caller keeps it alive while libcurl uses it. With hdrs != NULL the
 * header list is built into *hdrs in the same pass (r->headers says so); a raise may leave a
 * part of it there, for the caller to free. */
static void read_request_into(lua_State *L, client_t *c, int idx, int arg, int pos, reqspec *r,
                              struct curl_slist **hdrs)
{
    paykit_req q;
    q.timeout_ms = c->timeout_ms;
    q.connect_timeout_ms = c->connect_timeout_ms;
    q.stall_ms = c->stall_ms;
    q.follow = c->follow;
    paykit_read_req(L, idx, arg, pos, &q); /* leaves the body (or nil) on the stack */
    r->url = q.url;
    r->method = q.method;
    r->body = q.body;
    r->body_len = q.body_len;
    r->has_body = q.has_body;
    r->timeout_ms = q.timeout_ms;
    r->connect_timeout_ms = q.connect_timeout_ms;
    r->stall_ms = q.stall_ms;
    r->follow = q.follow;
    /* whether libcurl may send the request again on a reused connection that died */
    r->idempotent = q.idempotent;
    r->headers = 0;
    if (!paykit_read_headers(L, idx, arg, pos, hdrs ? header_to_list : NULL, hdrs))
        r->headers = -1;
    else if (hdrs)
        r->headers = 1;
}

static void read_request(lua_State *L, client_t *c, int idx, int arg, int pos, reqspec *r)
{
    read_request_into(L, c, idx, arg, pos, r, NULL);
}

/* A free transfer of a pool (slots, nslots, capslots), made when none is free. */
static xfer *pool_slot(xfer ***slots, int *nslots, int *capslots)
{
    int i;
    xfer *x;
    for (i = 0; i < *nslots; i++)
        if (!(*slots)[i]->index)
            return (*slots)[i];
    if (*nslots == *capslots) {
        int cap = *capslots ? *capslots * 2 : 4;
        xfer **s = realloc(*slots, (size_t)cap * sizeof *s);
        if (!s)
            return NULL;
        *slots = s;
        *capslots = cap;
    }
    x = calloc(1, sizeof *x);
    if (!x)
        return NULL;
    x->easy = curl_easy_init();
    if (!x->easy) {
        free(x);
        return NULL;
    }
    (*slots)[(*nslots)++] = x;
    return x;
}

/* A free transfer of the client. Its options stay set between requests (the loop's transfers
 * serve any client, so theirs are set afresh each time). */
static xfer *client_slot(client_t *c)
{
    xfer *x = pool_slot(&c->slots, &c->nslots, &c->capslots);
    if (x)
        x->keep_conf = 1;
    return x;
}

/* Whether the list has a header named name (lowercase), as "Name: v", "Name;" or "Name:". */
static int has_header(const struct curl_slist *l, const char *name)
{
    size_t n = strlen(name), i;
    for (; l; l = l->next) {
        for (i = 0; i < n && l->data[i] && tolower((unsigned char)l->data[i]) == name[i]; i++)
            ;
        if (i == n && (l->data[n] == ':' || l->data[n] == ';'))
            return 1;
    }
    return 0;
}

#define SET(opt, val) (rc = rc ? rc : curl_easy_setopt(e, opt, val))

/* The options of x that depend on the request r (not its URL, body or headers) are the ones
 * conf records. */
static int conf_matches(const xfer *x, const reqspec *r, int kind, int fresh)
{
    const char *m = r->method ? r->method : "";
    return x->conf_ok && x->conf.kind == kind && x->conf.fresh == fresh && x->conf.follow == r->follow
        && x->conf.timeout_ms == r->timeout_ms && x->conf.connect_timeout_ms == r->connect_timeout_ms
        && x->conf.stall_ms == r->stall_ms && strcmp(x->conf.method, m) == 0;
}

static void conf_record(xfer *x, const reqspec *r, int kind, int fresh)
{
    const char *m = r->method ? r->method : "";
    size_t n = strlen(m);
    x->conf_ok = x->keep_conf && n < sizeof x->conf.method;
    if (!x->conf_ok)
        return;
    x->conf.kind = kind;
    x->conf.fresh = fresh;
    x->conf.follow = r->follow;
    x->conf.timeout_ms = r->timeout_ms;
    x->conf.connect_timeout_ms = r->connect_timeout_ms;
    x->conf.stall_ms = r->stall_ms;
    memcpy(x->conf.method, m, n + 1);
}

/* The options a request of the same shape as the last one on x changes: URL, body, headers. */
static CURLcode set_request_parts(xfer *x, const reqspec *r, int kind)
{
    CURL *e = x->easy;
    CURLcode rc = CURLE_OK;
    SET(CURLOPT_URL, r->url);
    if (kind == XK_READ) {
        SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->body_len);
    } else if (kind == XK_FIELDS) {
        SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->body_len);
        SET(CURLOPT_POSTFIELDS, r->has_body ? r->body : "");
    }
    SET(CURLOPT_HTTPHEADER, x->hdrs);
    return rc;
}

/* Every option, from curl_easy_reset: the client's settings and the request's. */
static CURLcode set_all_options(client_t *c, xfer *x, const reqspec *r, int kind, int is_post, int fresh)
{
    CURL *e = x->easy;
    CURLcode rc = CURLE_OK;
    curl_easy_setopt(e, CURLOPT_SHARE, NULL); /* reset would drop it without unlinking */
    curl_easy_reset(e);
    SET(CURLOPT_SHARE, c->share);
    SET(CURLOPT_PRIVATE, (void *)x);
    SET(CURLOPT_URL, r->url);
    SET(CURLOPT_PROTOCOLS_STR, "http,https");
    SET(CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_ERRORBUFFER, x->err);
    SET(CURLOPT_WRITEFUNCTION, on_body);
    SET(CURLOPT_WRITEDATA, (void *)x);
    SET(CURLOPT_HEADERFUNCTION, on_header);
    SET(CURLOPT_HEADERDATA, (void *)x);
    SET(CURLOPT_CONNECTTIMEOUT_MS, r->connect_timeout_ms);
    SET(CURLOPT_TIMEOUT_MS, r->timeout_ms);
    SET(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)c->max_response);
    SET(CURLOPT_MAXCONNECTS, c->max_connections);
    /* libcurl counts both in whole seconds: rounded up. An idle connection older than
     * keepalive_timeout is closed instead of reused; a transfer that moves less than one byte
     * a second for stall_timeout (sending or receiving: libcurl has one timer) times out. */
    if (c->keepalive_ms > 0)
        SET(CURLOPT_MAXAGE_CONN, (c->keepalive_ms + 999) / 1000);
    if (r->stall_ms > 0) {
        SET(CURLOPT_LOW_SPEED_LIMIT, 1L);
        SET(CURLOPT_LOW_SPEED_TIME, (r->stall_ms + 999) / 1000);
    }
    SET(CURLOPT_FOLLOWLOCATION, r->follow ? 1L : 0L);
    SET(CURLOPT_MAXREDIRS, c->max_redirects);
    SET(CURLOPT_SSL_VERIFYPEER, c->verify ? 1L : 0L);
    SET(CURLOPT_SSL_VERIFYHOST, c->verify ? 2L : 0L);
    SET(CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
    if (c->cafile)
        SET(CURLOPT_CAINFO, c->cafile);
    if (c->capath)
        SET(CURLOPT_CAPATH, c->capath);
    if (c->user_agent)
        SET(CURLOPT_USERAGENT, c->user_agent);

    switch (kind) {
    case XK_HEAD:
        SET(CURLOPT_NOBODY, 1L);
        break;
    case XK_READ:
        SET(CURLOPT_POST, 1L);
        SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->body_len);
        SET(CURLOPT_READFUNCTION, on_read);
        SET(CURLOPT_READDATA, (void *)x);
        if (!is_post)
            SET(CURLOPT_CUSTOMREQUEST, r->method);
        break;
    case XK_FIELDS:
        SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->body_len);
        SET(CURLOPT_POSTFIELDS, r->has_body ? r->body : "");
        if (!is_post)
            SET(CURLOPT_CUSTOMREQUEST, r->method);
        break;
    case XK_GET:
        SET(CURLOPT_HTTPGET, 1L);
        break;
    default:
        SET(CURLOPT_CUSTOMREQUEST, r->method);
        break;
    }
    if (fresh)
        SET(CURLOPT_FRESH_CONNECT, 1L);
    SET(CURLOPT_HTTPHEADER, x->hdrs);
    return rc;
}

/* Prepares x for the request r (headers read from the table at idx unless r->headers says
 * they are built). Returns a CURLcode.
 *
 * A client's transfer keeps its options between requests: when the previous request on it was
 * of the same shape (conf: method, how the body goes, timeouts, redirects, fresh connection)
 * only the URL, the body and the header list are set again; any other request gets
 * curl_easy_reset and every option. */
static CURLcode xfer_setup(lua_State *L, client_t *c, xfer *x, int idx, const reqspec *r)
{
    CURLcode rc;
    int is_get = 0, is_head = 0, is_post = 0, kind, fresh;

    x->err[0] = '\0';
    x->over = OVER_NONE;
    x->max_body = c->max_response;
    x->body.len = x->head.len = 0;
    x->up = NULL;
    x->up_len = x->up_off = 0;
    x->no_resend = !r->idempotent;

    if (r->headers < 0 || (r->headers == 0 && !paykit_read_headers(L, idx, 0, 0, header_to_list, &x->hdrs)))
        return CURLE_OUT_OF_MEMORY;
    if (r->body_len >= c->expect_from && !has_header(x->hdrs, "expect")) {
        /* no 100-continue round trip unless asked */
        struct curl_slist *l = curl_slist_append(x->hdrs, "Expect:");
        if (!l)
            return CURLE_OUT_OF_MEMORY;
        x->hdrs = l;
    }

    if (r->method) {
        is_get = strcmp(r->method, "GET") == 0;
        is_head = strcmp(r->method, "HEAD") == 0;
        is_post = strcmp(r->method, "POST") == 0;
    } else {
        is_get = !r->has_body;
        is_post = r->has_body;
    }
    if (is_head)
        kind = XK_HEAD;
    else if ((r->has_body || is_post) && !r->idempotent)
        kind = XK_READ;  /* never resent: the body goes through on_read, which libcurl cannot rewind */
    else if (r->has_body || is_post)
        kind = XK_FIELDS;
    else if (is_get)
        kind = XK_GET;
    else
        kind = XK_CUSTOM;
    /* Without body bytes libcurl's retry needs no rewind: a request that must not be resent
     * and has no body gets a connection of its own, where libcurl never retries. */
    fresh = !r->idempotent && r->body_len == 0;
    if (kind == XK_READ) {
        x->up = r->has_body ? r->body : "";
        x->up_len = r->body_len;
    }

    if (conf_matches(x, r, kind, fresh)) {
        rc = set_request_parts(x, r, kind);
        if (rc != CURLE_OK)
            x->conf_ok = 0;
        return rc;
    }
    x->conf_ok = 0;
    rc = set_all_options(c, x, r, kind, is_post, fresh);
    if (rc == CURLE_OK)
        conf_record(x, r, kind, fresh);
    return rc;
}

/* ---- results ------------------------------------------------------------------------------ */

/* Classifies a failed transfer: the code name and whether the request may have been sent. */
static const char *failure_code_of(xfer *x, CURLcode rc, int *maybe_sent)
{
    *maybe_sent = 1;
    switch (rc) {
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
        *maybe_sent = 0;
        return "dns";
    case CURLE_COULDNT_CONNECT:
        *maybe_sent = 0;
        return "connect";
    case CURLE_OPERATION_TIMEDOUT: {
        /* The request goes out only once TCP (and TLS) setup is done. Never reached: no
         * pretransfer time and no request bytes counted. Anything else may have been sent. */
        curl_off_t pre = -1;
        long sent = -1;
        if (curl_easy_getinfo(x->easy, CURLINFO_PRETRANSFER_TIME_T, &pre) == CURLE_OK && pre == 0
            && curl_easy_getinfo(x->easy, CURLINFO_REQUEST_SIZE, &sent) == CURLE_OK && sent == 0) {
            *maybe_sent = 0;
            return "connect_timeout";
        }
        return "timeout";
    }
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
        /* the server's certificate was refused (or could not be checked): final */
        *maybe_sent = 0;
        return "tls_verify";
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_ENGINE_NOTFOUND:
    case CURLE_SSL_ENGINE_SETFAILED:
    case CURLE_SSL_ENGINE_INITFAILED:
    case CURLE_USE_SSL_FAILED:
        *maybe_sent = 0;
        return "tls";
    case CURLE_SEND_ERROR:
        return "send";
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
        return "recv";
    case CURLE_WRITE_ERROR:
    case CURLE_FILESIZE_EXCEEDED:
        if (x->over == OVER_BODY || x->over == OVER_HEADERS || rc == CURLE_FILESIZE_EXCEEDED)
            return "too_large";
        return "other";
    case CURLE_SEND_FAIL_REWIND:
        /* a request that must not be resent met a reused connection that the server closed
         * after it may have read the request: libcurl wanted to send it again */
        return "recv";
    case CURLE_UNSUPPORTED_PROTOCOL:
        /* before sending: a scheme other than http(s); after: e.g. a status code below 100 */
        return "protocol";
    case CURLE_URL_MALFORMAT:
    case CURLE_OUT_OF_MEMORY:
        *maybe_sent = 0; /* refused before any connection was made */
        return "other";
    case CURLE_WEIRD_SERVER_REPLY:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_TOO_MANY_REDIRECTS:
    case CURLE_BAD_CONTENT_ENCODING:
    case CURLE_HTTP3:
        return "protocol";
    default:
        return "other";
    }
}

/* Whether any byte of a request has left: libcurl counts the request bytes it sent (all the
 * requests of a transfer: redirects and its own retries included). */
static int request_left(xfer *x)
{
    long sent = 0;
    return curl_easy_getinfo(x->easy, CURLINFO_REQUEST_SIZE, &sent) == CURLE_OK && sent > 0;
}

/* Classifies a failed transfer. Whatever the code, a failure after the first byte of the
 * request left may have reached the server. */
static const char *failure_code(xfer *x, CURLcode rc, int *maybe_sent)
{
    const char *code = failure_code_of(x, rc, maybe_sent);
    if (rc == CURLE_SEND_FAIL_REWIND) {
        long redirects = 0;
        /* a 307/308 that would send the body again: an answer the request cannot follow */
        if (curl_easy_getinfo(x->easy, CURLINFO_REDIRECT_COUNT, &redirects) == CURLE_OK && redirects > 0)
            code = "protocol";
    }
    if (rc == CURLE_UNSUPPORTED_PROTOCOL && !request_left(x)) {
        *maybe_sent = 0;
        return "other";
    }
    if (request_left(x))
        *maybe_sent = 1;
    return code;
}

/* Pushes the failure message: libcurl's own words (never request headers or body). */
static void push_failure_message(lua_State *L, xfer *x, CURLcode rc, const char *code)
{
    if (strcmp(code, "too_large") == 0) {
        char msg[80];
        if (x->over == OVER_HEADERS)
            snprintf(msg, sizeof msg, "response headers larger than %u bytes", MAX_HEADER_BYTES);
        else
            snprintf(msg, sizeof msg, "response body larger than %zu bytes", x->max_body);
        lua_pushstring(L, msg);
    } else if (rc == CURLE_SEND_FAIL_REWIND && x->no_resend) {
        long redirects = 0;
        curl_easy_getinfo(x->easy, CURLINFO_REDIRECT_COUNT, &redirects);
        if (redirects > 0)
            lua_pushliteral(L, "the server redirected the request with its body (307/308); a request "
                               "that may charge is never sent again");
        else
            lua_pushliteral(L, "the connection was closed after the request was sent and before any "
                               "answer; a request that may charge is never sent again");
    } else if (x->over == OVER_MEMORY) {
        lua_pushliteral(L, "out of memory while receiving the response");
    } else if (x->err[0]) {
        lua_pushstring(L, x->err);
    } else {
        lua_pushstring(L, curl_easy_strerror(rc));
    }
}

static int is_space(char ch) { return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n'; }

/* Pushes a table of the last response's headers: lowercase names, repeats joined with ", ". */
static void push_headers(lua_State *L, const paykit_buf *h)
{
    const char *p = h->p, *end = h->p ? h->p + h->len : NULL;
    int t;
    lua_createtable(L, 0, 8); /* a typical answer's headers without rehashing */
    t = lua_gettop(L);
    lua_pushnil(L); /* name of the previous header, for folded continuation lines */
    while (p && p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        const char *next = eol ? eol + 1 : end, *colon, *v, *ve;
        if (!eol)
            eol = end;
        if (p < eol && (*p == ' ' || *p == '\t') && !lua_isnil(L, -1)) {
            v = p;
            ve = eol;
            while (v < ve && is_space(*v)) v++;
            while (ve > v && is_space(ve[-1])) ve--;
            lua_pushvalue(L, -1);
            lua_rawget(L, t);
            lua_pushliteral(L, " ");
            lua_pushlstring(L, v, (size_t)(ve - v));
            lua_concat(L, 3);
            lua_pushvalue(L, -2);
            lua_insert(L, -2);
            lua_rawset(L, t);
        } else if ((size_t)(eol - p) >= 5 && memcmp(p, "HTTP/", 5) == 0) {
            /* status line */
        } else if ((colon = memchr(p, ':', (size_t)(eol - p))) != NULL && colon > p) {
            size_t nn = (size_t)(colon - p), i;
            char lower[64];
            v = colon + 1;
            ve = eol;
            while (v < ve && is_space(*v)) v++;
            while (ve > v && is_space(ve[-1])) ve--;
            lua_pop(L, 1);
            if (nn <= sizeof lower) {
                for (i = 0; i < nn; i++)
                    lower[i] = (char)tolower((unsigned char)p[i]);
                lua_pushlstring(L, lower, nn);
            } else {
                luaL_Buffer b;
                luaL_buffinit(L, &b);
                for (i = 0; i < nn; i++)
                    luaL_addchar(&b, (char)tolower((unsigned char)p[i]));
                luaL_pushresult(&b);
            }
            paykit_addheader(L, t, v, (size_t)(ve - v)); /* the name stays, for continuations */
        }
        p = next;
    }
    lua_pop(L, 1);
}

/* Pushes the outcome of a finished transfer. As a table when as_table (batch); otherwise the
 * response table (returns 1) or nil, message, code, maybe_sent (returns 4). */
static int push_outcome(lua_State *L, xfer *x, CURLcode rc, int as_table)
{
    long status = 0;
    if (rc == CURLE_OK) {
        curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
        if (status < 100 || status > 599) {
            /* libcurl takes any three digits: a status outside HTTP's range is no answer */
            snprintf(x->err, sizeof x->err, "malformed HTTP response: status code %ld is outside 100-599", status);
            rc = CURLE_WEIRD_SERVER_REPLY;
        }
    }
    if (rc == CURLE_OK) {
        lua_createtable(L, 0, 3);
        lua_pushinteger(L, (lua_Integer)status);
        lua_setfield(L, -2, "status");
        push_headers(L, &x->head);
        lua_setfield(L, -2, "headers");
        lua_pushlstring(L, x->body.p ? x->body.p : "", x->body.len);
        lua_setfield(L, -2, "body");
        return 1;
    } else {
        int maybe_sent;
        const char *code = failure_code(x, rc, &maybe_sent);
        if (as_table) {
            lua_createtable(L, 0, 3);
            push_failure_message(L, x, rc, code);
            lua_setfield(L, -2, "error");
            lua_pushstring(L, code);
            lua_setfield(L, -2, "code");
            lua_pushboolean(L, maybe_sent);
            lua_setfield(L, -2, "maybe_sent");
            return 1;
        }
        lua_pushnil(L);
        push_failure_message(L, x, rc, code);
        lua_pushstring(L, code);
        lua_pushboolean(L, maybe_sent);
        return 4;
    }
}

/* ---- the transfer loop: start, collect, deliver ------------------------------------------ */

/* One call of client:request or client:batch while it runs. */
typedef struct {
    client_t *c;
    int reqs;                   /* batch: stack index of the array of request tables */
    int single;                 /* client:request: the outcome is pushed as return values */
    int results;                /* batch: stack index of the results table */
    int anchor;                 /* batch: stack index of a table holding each in-flight body */
    int n, next, active, done, max_in_flight;
    int nret;                   /* single: how many values the outcome pushed */
} run_t;

static void run_init(run_t *rt, client_t *c, int n, int max_in_flight)
{
    memset(rt, 0, sizeof *rt);
    rt->c = c;
    rt->n = n;
    rt->next = 1;
    rt->max_in_flight = max_in_flight;
    client_settle(c);
    curl_multi_setopt(c->multi, CURLMOPT_MAXCONNECTS,
                      max_in_flight > c->max_connections ? (long)max_in_flight : c->max_connections);
}

/* Delivers the outcome of request x->index to Lua and frees its transfer: for client:request
 * the return values are pushed (they stay on top of the stack), for a batch they go into the
 * results table. Every path goes through here: a request that could not start, a finished
 * transfer, a failure of the multi handle. */
static void deliver(lua_State *L, run_t *rt, xfer *x, CURLcode rc)
{
    int pos = x->index;
    if (rt->single) {
        rt->nret = push_outcome(L, x, rc, 0);
    } else {
        lua_pushnil(L);
        lua_rawseti(L, rt->anchor, pos); /* libcurl no longer reads the body */
        push_outcome(L, x, rc, 1);
        lua_rawseti(L, rt->results, pos);
    }
    if (x->in_multi)
        rt->active--;
    xfer_release(rt->c, x);
    rt->done++;
}

/* Hands the request r, read into the busy transfer x, to the multi handle; one that cannot
 * start is delivered at once. The caller keeps r's body alive until it is delivered. */
static void launch(lua_State *L, run_t *rt, xfer *x, int idx, const reqspec *r)
{
    CURLcode rc = xfer_setup(L, rt->c, x, idx, r);
    if (rc == CURLE_OK && curl_multi_add_handle(rt->c->multi, x->easy) != CURLM_OK)
        rc = CURLE_FAILED_INIT;
    if (rc != CURLE_OK) {
        deliver(L, rt, x, rc);
        return;
    }
    x->in_multi = 1;
    rt->active++;
}

/* A batch's next request: read (checked already: does not raise) with its header list built in
 * the same pass, then launched. Raises only when out of memory. */
static void start_one(lua_State *L, run_t *rt)
{
    int pos = rt->next++, idx;
    reqspec r;
    xfer *x = client_slot(rt->c);
    if (!x)
        luaL_error(L, "out of memory");
    x->index = pos;
    lua_rawgeti(L, rt->reqs, pos);
    idx = lua_gettop(L);
    read_request_into(L, rt->c, idx, 2, pos, &r, &x->hdrs);
    lua_rawseti(L, rt->anchor, pos); /* the body (or nil), until delivered */
    launch(L, rt, x, idx, &r);
    lua_pop(L, 1);                   /* the request table */
}

/* Starts requests until max_in_flight are running or none is left. */
static void start(lua_State *L, run_t *rt)
{
    while (rt->active < rt->max_in_flight && rt->next <= rt->n)
        start_one(L, rt);
}

/* Lets libcurl work, then delivers every transfer it finished; when the multi handle itself
 * fails, every transfer still running is delivered as failed. Returns how many were delivered. */
static int collect(lua_State *L, run_t *rt)
{
    client_t *c = rt->c;
    int running = 0, queued = 0, delivered = 0;
    CURLMsg *msg;
    CURLMcode mc = curl_multi_perform(c->multi, &running);
    while ((msg = curl_multi_info_read(c->multi, &queued)) != NULL) {
        xfer *x = NULL;
        if (msg->msg != CURLMSG_DONE)
            continue;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&x);
        if (!x || !x->index)
            continue;
        deliver(L, rt, x, msg->data.result);
        delivered++;
    }
    if (mc != CURLM_OK) {
        int i;
        for (i = 0; i < c->nslots; i++) {
            xfer *x = c->slots[i];
            if (!x->index || !x->in_multi)
                continue;
            snprintf(x->err, sizeof x->err, "libcurl multi error: %s", curl_multi_strerror(mc));
            deliver(L, rt, x, CURLE_FAILED_INIT);
            delivered++;
        }
    }
    return delivered;
}

/* Starts, collects and delivers until every request of the call is delivered. */
static void run(lua_State *L, run_t *rt)
{
    while (rt->done < rt->n) {
        if (!rt->single)
            start(L, rt);
        if (rt->active == 0)
            continue;
        if (collect(L, rt) == 0 && rt->done < rt->n)
            curl_multi_poll(rt->c->multi, NULL, 0, POLL_MS, NULL);
    }
    client_trim(rt->c);
}

/* client:request(req): the request is read once, its header list built in the same pass. */
static int client_request(lua_State *L)
{
    client_t *c = check_client(L);
    run_t rt;
    reqspec r;
    xfer *x;
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_settop(L, 2);
    run_init(&rt, c, 1, 1);
    rt.single = 1;
    x = client_slot(c);
    if (!x)
        return luaL_error(L, "out of memory");
    x->index = 1; /* busy: when reading raises, the next call frees the header list begun */
    read_request_into(L, c, 2, 2, 0, &r, &x->hdrs); /* leaves the body at 3, alive until the end */
    launch(L, &rt, x, 2, &r);
    run(L, &rt);
    return rt.nret; /* the outcome's values, on top */
}

/* client:batch(requests[, {max_in_flight=N}]) */
static int client_batch(lua_State *L)
{
    client_t *c = check_client(L);
    run_t rt;
    int n, i;
    long max_in_flight = c->max_connections;
    luaL_checktype(L, 2, LUA_TTABLE);
    if (!lua_isnoneornil(L, 3)) {
        luaL_checktype(L, 3, LUA_TTABLE);
        max_in_flight = paykit_opt_count(L, 3, 3, 0, "max_in_flight", max_in_flight, 100000);
        if (max_in_flight < 1)
            return luaL_argerror(L, 3, "'max_in_flight' must be at least 1");
    }
    lua_settop(L, 2);
    n = (int)lua_rawlen(L, 2);
    for (i = 1; i <= n; i++) { /* every request is checked before the first one is sent */
        reqspec r;
        lua_rawgeti(L, 2, i);
        if (!lua_istable(L, -1))
            return luaL_argerror(L, 2, lua_pushfstring(L, "request %d must be a table", i));
        read_request(L, c, lua_gettop(L), 2, i, &r);
        lua_settop(L, 2);
    }
    lua_createtable(L, n, 0); /* 3: the results */
    lua_newtable(L);          /* 4: the bodies in flight */
    run_init(&rt, c, n, (int)max_in_flight);
    rt.reqs = 2;
    rt.results = 3;
    rt.anchor = 4;
    run(L, &rt);
    lua_settop(L, 3);
    return 1;
}

static int client_closed(lua_State *L)
{
    client_t *c = (client_t *)luaL_checkudata(L, 1, CLIENT_MT);
    lua_pushboolean(L, c->share == NULL);
    return 1;
}

static const luaL_Reg client_methods[] = {
    {"request", client_request},
    {"batch", client_batch},
    {"close", client_close},
    {"closed", client_closed},
    {NULL, NULL},
};

static const luaL_Reg client_meta[] = {
    {"__gc", client_close},
#if LUA_VERSION_NUM >= 504
    {"__close", client_close},
#endif
    {"__tostring", client_tostring},
    {NULL, NULL},
};

/* ---- the loop: transfers that never block the caller -------------------------------------- *
 *
 *   core.http_loop()                -> loop
 *   loop:start(client, req)         -> id | false, outcome   (outcome as in client:batch)
 *   loop:run([wait])                -> handled, ids, outcomes | handled   (waits at most wait s)
 *   loop:cancel(id)                 -> maybe_sent (boolean) | nil when id is not in flight
 *   loop:fd()                       -> the epoll descriptor: readable when a transfer can go on
 *   loop:timeout()                  -> seconds until libcurl's next timer (0: due) | nil
 *   loop:sockets()                  -> {[fd] = "r" | "w" | "rw"}: the transfers' own sockets
 *   loop:count()                    -> transfers in flight
 *   loop:close()
 *
 * One multi handle driven through libcurl's socket API (CURLMOPT_SOCKETFUNCTION and
 * TIMERFUNCTION, curl_multi_socket_action). The socket callback keeps an epoll set in step with
 * libcurl's interest, so a host loop waits on one descriptor (loop:fd()) and loop:timeout(),
 * and a socket closed and reopened under the same number inside libcurl never confuses it.
 * A transfer is set up exactly as a single request or a batch is (xfer_setup, the client's
 * options and its share handle: connections are shared with the client's own requests), so
 * the no-resend rules are the same. run(0) never waits: epoll_wait with a zero timeout, and no
 * system call at all when no socket is open. */
#ifdef __linux__
#include <sys/epoll.h>
#include <unistd.h>
#include <math.h>

#define LOOP_MT "paykit.http.loop"
#define LOOP_EVENTS 64

typedef struct {
    curl_socket_t fd;
    int what;                   /* CURL_POLL_IN / OUT / INOUT */
} loop_sock;

typedef struct {
    CURLM *multi;               /* NULL once closed */
    int epfd;
    xfer **slots;
    int nslots, capslots;
    loop_sock *socks;
    int nsocks, capsocks;
    double timer_at;            /* monotonic seconds of libcurl's timer; < 0: none */
    int next_id, active;
    int *refs;                  /* per slot: registry refs of the request table and the client */
    int caprefs;
} loop_t;

static void sock_set(loop_t *l, curl_socket_t fd, int what)
{
    int i;
    for (i = 0; i < l->nsocks; i++)
        if (l->socks[i].fd == fd) {
            if (what == CURL_POLL_REMOVE)
                l->socks[i] = l->socks[--l->nsocks];
            else
                l->socks[i].what = what;
            return;
        }
    if (what == CURL_POLL_REMOVE)
        return;
    if (l->nsocks == l->capsocks) {
        int cap = l->capsocks ? l->capsocks * 2 : 16;
        loop_sock *s = realloc(l->socks, (size_t)cap * sizeof *s);
        if (!s)
            return; /* the epoll set still has it; only loop:sockets() misses it */
        l->socks = s;
        l->capsocks = cap;
    }
    l->socks[l->nsocks].fd = fd;
    l->socks[l->nsocks].what = what;
    l->nsocks++;
}

static int on_socket(CURL *e, curl_socket_t fd, int what, void *up, void *sockp)
{
    loop_t *l = (loop_t *)up;
    struct epoll_event ev;
    (void)e;
    (void)sockp;
    if (what == CURL_POLL_REMOVE) {
        epoll_ctl(l->epfd, EPOLL_CTL_DEL, fd, NULL); /* ENOENT/EBADF when already closed: fine */
    } else {
        memset(&ev, 0, sizeof ev);
        ev.events = ((what & CURL_POLL_IN) ? EPOLLIN : 0u) | ((what & CURL_POLL_OUT) ? EPOLLOUT : 0u);
        ev.data.fd = fd;
        if (epoll_ctl(l->epfd, EPOLL_CTL_MOD, fd, &ev) != 0 && errno == ENOENT)
            epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev);
    }
    sock_set(l, fd, what);
    return 0;
}

static int on_timer(CURLM *m, long timeout_ms, void *up)
{
    loop_t *l = (loop_t *)up;
    (void)m;
    l->timer_at = timeout_ms < 0 ? -1.0 : paykit_monotonic() + (double)timeout_ms / 1000.0;
    return 0;
}

/* Frees a slot's transfer for the next one: out of the multi handle, off the client's share
 * (a closed client's share is never held by an idle handle here), the Lua values let go. */
static void loop_release(lua_State *L, loop_t *l, int i)
{
    xfer *x = l->slots[i];
    if (x->index)
        l->active--;
    xfer_release_in(l->multi, x);
    curl_easy_setopt(x->easy, CURLOPT_SHARE, NULL);
    if (L) {
        luaL_unref(L, LUA_REGISTRYINDEX, l->refs[2 * i]);
        luaL_unref(L, LUA_REGISTRYINDEX, l->refs[2 * i + 1]);
    }
    l->refs[2 * i] = l->refs[2 * i + 1] = LUA_NOREF;
}

static void loop_free(lua_State *L, loop_t *l)
{
    int i;
    if (!l->multi)
        return;
    for (i = 0; i < l->nslots; i++) {
        if (l->slots[i]->index)
            loop_release(L, l, i);
        xfer_destroy_in(l->multi, l->slots[i]);
    }
    free(l->slots);
    free(l->refs);
    l->slots = NULL;
    l->refs = NULL;
    l->nslots = l->capslots = l->caprefs = 0;
    curl_multi_cleanup(l->multi);
    l->multi = NULL;
    if (l->epfd >= 0)
        close(l->epfd);
    l->epfd = -1;
    free(l->socks);
    l->socks = NULL;
    l->nsocks = l->capsocks = 0;
}

static loop_t *check_loop(lua_State *L)
{
    loop_t *l = (loop_t *)luaL_checkudata(L, 1, LOOP_MT);
    if (!l->multi)
        luaL_error(L, "paykit http loop is closed");
    return l;
}

static int loop_close(lua_State *L)
{
    loop_free(L, (loop_t *)luaL_checkudata(L, 1, LOOP_MT));
    return 0;
}

/* core.http_loop() */
static int http_loop(lua_State *L)
{
    loop_t *l;
    pthread_once(&global_once, global_init);
    if (global_rc != CURLE_OK)
        return luaL_error(L, "curl_global_init failed: %s", curl_easy_strerror(global_rc));
    l = (loop_t *)lua_newuserdata(L, sizeof *l);
    memset(l, 0, sizeof *l);
    l->epfd = -1;
    l->timer_at = -1.0;
    luaL_getmetatable(L, LOOP_MT);
    lua_setmetatable(L, -2);
    l->multi = curl_multi_init();
    if (!l->multi)
        return luaL_error(L, "cannot create a libcurl handle");
    l->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (l->epfd < 0) {
        int e = errno;
        loop_free(L, l);
        return luaL_error(L, "epoll_create1: %s", strerror(e));
    }
    curl_multi_setopt(l->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(l->multi, CURLMOPT_SOCKETDATA, (void *)l);
    curl_multi_setopt(l->multi, CURLMOPT_TIMERFUNCTION, on_timer);
    curl_multi_setopt(l->multi, CURLMOPT_TIMERDATA, (void *)l);
    return 1;
}

/* loop:start(client, req) */
static int loop_start(lua_State *L)
{
    loop_t *l = check_loop(L);
    client_t *c = (client_t *)luaL_checkudata(L, 2, CLIENT_MT);
    reqspec r;
    xfer *x;
    int i, slot = -1, idx = 3;
    CURLcode rc;
    if (!c->share)
        return luaL_argerror(L, 2, "the client is closed");
    luaL_checktype(L, 3, LUA_TTABLE);
    lua_settop(L, 3);
    read_request(L, c, idx, 3, 0, &r); /* raises on misuse, before anything starts */
    lua_settop(L, 3);
    x = pool_slot(&l->slots, &l->nslots, &l->capslots);
    if (!x)
        return luaL_error(L, "out of memory");
    for (i = 0; i < l->nslots; i++)
        if (l->slots[i] == x)
            slot = i;
    if (l->caprefs < l->capslots) {
        int *refs = realloc(l->refs, (size_t)l->capslots * 2 * sizeof *refs);
        if (!refs)
            return luaL_error(L, "out of memory");
        l->refs = refs;
        l->caprefs = l->capslots;
    }
    l->refs[2 * slot] = l->refs[2 * slot + 1] = LUA_NOREF;
    if (++l->next_id <= 0)
        l->next_id = 1;
    x->index = l->next_id;
    l->active++;
    rc = xfer_setup(L, c, x, idx, &r);
    if (rc == CURLE_OK && curl_multi_add_handle(l->multi, x->easy) != CURLM_OK)
        rc = CURLE_FAILED_INIT;
    if (rc != CURLE_OK) {
        lua_pushboolean(L, 0);
        push_outcome(L, x, rc, 1);
        loop_release(L, l, slot);
        return 2;
    }
    x->in_multi = 1;
    /* the request table holds the body and header strings libcurl reads; the client its share */
    lua_pushvalue(L, 3);
    l->refs[2 * slot] = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_pushvalue(L, 2);
    l->refs[2 * slot + 1] = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_pushinteger(L, x->index);
    return 1;
}

static int loop_slot_of(loop_t *l, CURL *easy)
{
    int i;
    for (i = 0; i < l->nslots; i++)
        if (l->slots[i]->easy == easy)
            return i;
    return -1;
}

/* loop:run([wait]) */
static int loop_run(lua_State *L)
{
    loop_t *l = check_loop(L);
    lua_Number wait = luaL_optnumber(L, 2, 0);
    struct epoll_event evs[LOOP_EVENTS];
    int ms, n = 0, i, running = 0, queued = 0, count = 0;
    CURLMsg *msg;
    luaL_argcheck(L, wait == wait && wait <= 86400, 2, "wait must be a number of seconds up to 86400");
    ms = wait > 0 ? (int)ceil(wait * 1000) : 0;
    if (l->timer_at >= 0) {
        double d = l->timer_at - paykit_monotonic();
        int tms = d <= 0 ? 0 : (int)ceil(d * 1000);
        if (tms < ms)
            ms = tms;
    }
    if (l->nsocks > 0 || ms > 0) {
        n = epoll_wait(l->epfd, evs, LOOP_EVENTS, ms);
        if (n < 0)
            n = 0; /* EINTR: the caller steps again */
    }
    for (i = 0; i < n; i++) {
        int flags = 0;
        if (evs[i].events & EPOLLIN)
            flags |= CURL_CSELECT_IN;
        if (evs[i].events & EPOLLOUT)
            flags |= CURL_CSELECT_OUT;
        if (evs[i].events & (EPOLLERR | EPOLLHUP))
            flags |= CURL_CSELECT_ERR;
        curl_multi_socket_action(l->multi, evs[i].data.fd, flags, &running);
    }
    if (l->timer_at >= 0 && paykit_monotonic() >= l->timer_at) {
        l->timer_at = -1.0;
        curl_multi_socket_action(l->multi, CURL_SOCKET_TIMEOUT, 0, &running);
        n++;
    }
    lua_settop(L, 1);
    lua_pushinteger(L, n); /* 2: what was handled */
    while ((msg = curl_multi_info_read(l->multi, &queued)) != NULL) {
        int slot;
        if (msg->msg != CURLMSG_DONE)
            continue;
        slot = loop_slot_of(l, msg->easy_handle);
        if (slot < 0 || !l->slots[slot]->index)
            continue;
        if (count == 0) {
            lua_newtable(L); /* 3: ids */
            lua_newtable(L); /* 4: outcomes */
        }
        count++;
        lua_pushinteger(L, l->slots[slot]->index);
        lua_rawseti(L, 3, count);
        push_outcome(L, l->slots[slot], msg->data.result, 1);
        lua_rawseti(L, 4, count);
        loop_release(L, l, slot);
    }
    return count ? 3 : 1;
}

/* loop:cancel(id) */
static int loop_cancel(lua_State *L)
{
    loop_t *l = check_loop(L);
    lua_Integer id = luaL_checkinteger(L, 2);
    int i;
    for (i = 0; i < l->nslots; i++) {
        xfer *x = l->slots[i];
        if (x->index && x->index == id) {
            /* a byte of the request may have left, or the connection may be carrying it */
            lua_pushboolean(L, request_left(x));
            loop_release(L, l, i);
            return 1;
        }
    }
    lua_pushnil(L);
    return 1;
}

static int loop_fd(lua_State *L)
{
    lua_pushinteger(L, check_loop(L)->epfd);
    return 1;
}

static int loop_timeout(lua_State *L)
{
    loop_t *l = check_loop(L);
    double d;
    if (l->timer_at < 0) {
        lua_pushnil(L);
        return 1;
    }
    d = l->timer_at - paykit_monotonic();
    lua_pushnumber(L, d > 0 ? d : 0);
    return 1;
}

static int loop_sockets(lua_State *L)
{
    loop_t *l = check_loop(L);
    int i;
    lua_createtable(L, 0, l->nsocks);
    for (i = 0; i < l->nsocks; i++) {
        int w = l->socks[i].what;
        lua_pushstring(L, w == CURL_POLL_INOUT ? "rw" : w == CURL_POLL_OUT ? "w" : "r");
        lua_rawseti(L, -2, (int)l->socks[i].fd);
    }
    return 1;
}

static int loop_count(lua_State *L)
{
    lua_pushinteger(L, check_loop(L)->active);
    return 1;
}

static int loop_tostring(lua_State *L)
{
    loop_t *l = (loop_t *)luaL_checkudata(L, 1, LOOP_MT);
    lua_pushfstring(L, "paykit.http.loop (%s): %p", l->multi ? "open" : "closed", (void *)l);
    return 1;
}

static const luaL_Reg loop_methods[] = {
    {"start", loop_start},   {"run", loop_run},         {"cancel", loop_cancel},
    {"fd", loop_fd},         {"timeout", loop_timeout}, {"sockets", loop_sockets},
    {"count", loop_count},   {"close", loop_close},     {NULL, NULL},
};

static const luaL_Reg loop_meta[] = {
    {"__gc", loop_close},
#if LUA_VERSION_NUM >= 504
    {"__close", loop_close},
#endif
    {"__tostring", loop_tostring},
    {NULL, NULL},
};

static void loop_register(lua_State *L)
{
    if (luaL_newmetatable(L, LOOP_MT)) {
        luaL_setfuncs(L, loop_meta, 0);
        lua_newtable(L);
        luaL_setfuncs(L, loop_methods, 0);
        lua_setfield(L, -2, "__index");
        lua_pushliteral(L, LOOP_MT);
        lua_setfield(L, -2, "__name");
    }
    lua_pop(L, 1);
    lua_pushcfunction(L, http_loop);
    lua_setfield(L, -2, "http_loop");
}
#else
static void loop_register(lua_State *L) { (void)L; } /* the loop needs epoll (Linux) */
#endif

static const luaL_Reg http_funcs[] = {
    {"http_client", http_client},
    {NULL, NULL},
};

void paykit_http_register(lua_State *L)
{
    if (luaL_newmetatable(L, CLIENT_MT)) {
        luaL_setfuncs(L, client_meta, 0);
        lua_newtable(L);
        luaL_setfuncs(L, client_methods, 0);
        lua_setfield(L, -2, "__index");
        lua_pushliteral(L, "paykit.http.client");
        lua_setfield(L, -2, "__name");
    }
    lua_pop(L, 1);
    luaL_setfuncs(L, http_funcs, 0);
    loop_register(L);
}
