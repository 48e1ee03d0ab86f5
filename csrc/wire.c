/* wire: a plain HTTP/1.1 keep-alive client over sockets and OpenSSL (the fast transport).
 *
 *   core.wire_client(opts)          -> client        (the options of core.http_client)
 *   client:request(req)             -> {status=, headers=, body=} | nil, message, code, maybe_sent
 *   client:batch(reqs[, {max_in_flight=N}]) -> array of responses or {error=, code=, maybe_sent=}
 *   client:close(), client:closed()
 *
 * The same Lua interface and error vocabulary as core.http_client (csrc/http.c): codes dns,
 * connect, connect_timeout, tls, tls_verify, timeout, send, recv, too_large, protocol, other.
 * What it does not do, by design: redirects (follow_redirects = true is refused), proxies,
 * HTTP/2, client certificates, compression; paykit.http keeps libcurl for those.
 *
 * Each request is a small state machine over a non-blocking socket (resolve, connect, TLS
 * handshake, send, receive); request() drives one with poll(), batch() up to max_in_flight
 * with the client's epoll descriptor. Deadlines: connect_timeout until the request can be
 * written, timeout for the whole request; per request, send_timeout / read_timeout (ms) bound
 * one wait for the socket to take more of the request / give more of the answer (without
 * either, stall_timeout, per request or the client's, bounds both: the one option libcurl has).
 * Options the client takes, as core.http_client: connect_timeout, timeout, max_response,
 * max_connections (idle connections kept), keepalive_timeout (ms an idle connection may wait
 * to be reused; default 118000 as libcurl's, 0: no limit), stall_timeout, verify (default
 * true: chain and host name or IP address), cafile, capath (else the system's CA store),
 * user_agent; max_redirects is accepted and unused. A URL it cannot use (another scheme, user
 * information, a bad host or port, a space in the path) fails before any connection, never
 * sent, with code unusable_url and a message starting "unusable URL" (paykit.http gives such a
 * request to libcurl). The option tables are read by csrc/reqopts.c, as the libcurl client's
 * (a request table's fields with lua_rawget and the names kept as the methods' upvalues when
 * it has no metatable). A HEAD request's body is not written (as libcurl's NOBODY).
 * DNS is getaddrinfo, which blocks (also inside a batch); names under .invalid fail as dns
 * without a lookup. Responses are parsed by
 * csrc/httpparse.c (paykit_resp_*); a status outside 100-599 is a protocol error.
 *
 * Connections are kept per scheme+host+port (up to max_connections idle ones) and reused.
 * Exactly once: before a kept connection is reused it is polled; one the server closed (or
 * wrote to) while idle is dropped and a new one opened, nothing was sent on it. A request that
 * is not idempotent (by default anything but GET, HEAD, OPTIONS; req.idempotent overrides) is
 * never written twice: once a byte of it may have left, any failure is reported (send, recv,
 * timeout, ... with maybe_sent = true). An idempotent request that meets a reused connection
 * that died before any answer byte is sent once more on a new connection. Like the libcurl
 * client, a body-less request that is not idempotent always gets a new connection.
 *
 * All C state hangs off the client userdata, allocated first; __gc, __close and :close() free
 * everything and are idempotent. No Lua code runs while requests are in flight; results are
 * built once a request is finished. No mutable globals. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "httpparse.h"
#include "reqopts.h"

#define WIRE_MT "paykit.wire.client"
#define DEFAULT_CONNECT_TIMEOUT_MS 10000L
#define DEFAULT_TIMEOUT_MS 30000L
#define DEFAULT_MAX_RESPONSE (8u * 1024u * 1024u)
#define DEFAULT_MAX_CONNECTIONS 16L
#define DEFAULT_KEEPALIVE_MS 118000L /* libcurl's CURLOPT_MAXAGE_CONN default */
#define READ_CHUNK 16384
#define KEEP_BUFFER_BYTES (64u * 1024u)
#define MAX_HOST 255

/* The upvalues of every method of the client and of the loop: the request field names
 * (paykit_req_keys: 1 .. PAYKIT_RF_N, read_request's), "status", then the metatable of the
 * method's own object (check_self). */
#define UP_FIELDS 1
#define UP_BODY (UP_FIELDS + PAYKIT_RF_BODY)
#define UP_HEADERS (UP_FIELDS + PAYKIT_RF_HEADERS)
#define UP_STATUS (UP_FIELDS + PAYKIT_RF_N)
#define UP_MT (UP_STATUS + 1)
#define UP_N (UP_MT)

/* Parsed URL parts, pointing into the URL string. */
typedef struct url_parts {
    int tls;
    const char *host, *path;
    size_t host_len, path_len;
    char port[8];
    int bracketed, default_port;
} url_t;

/* ---- connections ------------------------------------------------------------------------ */

typedef struct {
    int fd;
    SSL *ssl;
    long long idle_at;       /* when it was put back in the pool (ms, monotonic) */
    char key[MAX_HOST + 16]; /* "s|host|port" */
} conn;

static void conn_close(conn *k)
{
    if (k->ssl) {
        SSL_free(k->ssl); /* no close_notify: the connection is dropped, not shut down */
        k->ssl = NULL;
    }
    if (k->fd >= 0) {
        close(k->fd);
        k->fd = -1;
    }
}

/* ---- a request in flight ---------------------------------------------------------------- */

enum { X_FREE = 0, X_START, X_CONNECT, X_CONNECTING, X_HANDSHAKE, X_SEND, X_RECV, X_DONE };

typedef struct {
    int state;
    int index;                  /* 1-based position in the batch */
    conn k;                     /* fd -1 when none */
    int reused, fresh, retried, idempotent, head, tls;
    int sent_any, got_any, ok;
    int stall_phase;            /* what t_stall times: 0 nothing, 1 sending, 2 receiving */
    int want;                   /* POLLIN / POLLOUT while waiting */
    int reg_fd;                 /* registered in the epoll set (batch), or -1 */
    unsigned reg_ev;            /* its registered events */
    /* batch: the kept connection this slot's last request ended on, held by the slot (not in
     * the pool) and still registered in the epoll set for it (park.fd -1: none); the slot's
     * next request to the same scheme, host and port takes it as it would from the pool (the
     * same age and liveness checks), its registration with it (no epoll_ctl per request);
     * otherwise it is unregistered and put in the pool (park_resolve) */
    conn park;
    unsigned park_ev;
    struct addrinfo *ai, *ai_next;
    long long t_connect, t_total; /* deadlines, ms on the monotonic clock */
    long send_ms, read_ms;      /* longest wait for one send / one read (0: none) */
    long long t_stall;          /* when the current send or read wait ends (LLONG_MAX: never) */
    char host[MAX_HOST + 1], port[8];
    paykit_buf out;             /* request head and body */
    size_t out_off;
    paykit_resp resp;
    const char *code;
    int maybe_sent;
    char err[256];
} xfer;

typedef struct {
    int open;
    SSL_CTX *ctx;
    BIO_METHOD *bio;            /* sockets without SIGPIPE (send with MSG_NOSIGNAL) */
    int epfd;
    conn *idle;                 /* kept connections, oldest first */
    int nidle, cap_idle;
    long pool_limit;            /* max_connections, or a batch's larger max_in_flight */
    xfer *xs;                   /* transfer slots */
    int nxs;
    int *moved;                 /* batch: the slots started or advanced since the last wait (2 nxs) */
    long connect_timeout_ms, timeout_ms, max_connections;
    long keepalive_ms;          /* an idle connection older than this is closed, not reused */
    long stall_ms;              /* default send and read wait (stall_timeout), 0: none */
    size_t max_response;
    int verify;
    char *cafile, *capath, *user_agent;
    paykit_buf pre;             /* scratch: the headers wire writes before the caller's */
    paykit_hcache hc;           /* the last answers' header strings (httpparse.h) */
    struct url_parts url_parts; /* the last usable URL, split (cached_parse_url); url_len 0: none */
    size_t url_len, url_host_off, url_path_off;
    char url_text[512];
    char tls_err[200];
} wire_t;

static void buf_recycle(paykit_buf *b)
{
    b->len = 0;
    if (b->cap > KEEP_BUFFER_BYTES)
        paykit_buf_free(b);
}

static void xfer_unregister(wire_t *w, xfer *x)
{
    if (x->reg_fd >= 0) {
        epoll_ctl(w->epfd, EPOLL_CTL_DEL, x->reg_fd, NULL);
        x->reg_fd = -1;
    }
}

static void pool_put(wire_t *w, conn *k);

/* The connection the slot holds from its last request (x->park), unregistered and put in the
 * pool: when the slot's next request did not take it, and when the batch ends. */
static void park_resolve(wire_t *w, xfer *x)
{
    if (x->park.fd < 0)
        return;
    epoll_ctl(w->epfd, EPOLL_CTL_DEL, x->park.fd, NULL);
    pool_put(w, &x->park);
    x->park.fd = -1;
    x->park.ssl = NULL;
}

/* Ends a transfer's use of its slot (the connection, if still held, is closed), keeping the
 * slot's parked registration (the batch resolves it once the slot's next request started). */
static void xfer_release_keep(wire_t *w, xfer *x)
{
    xfer_unregister(w, x);
    conn_close(&x->k);
    if (x->ai) {
        freeaddrinfo(x->ai);
        x->ai = x->ai_next = NULL;
    }
    buf_recycle(&x->out);
    buf_recycle(&x->resp.body);
    buf_recycle(&x->resp.hdrs);
    x->state = X_FREE;
    x->index = 0;
}

static void xfer_release(wire_t *w, xfer *x)
{
    park_resolve(w, x);
    xfer_release_keep(w, x);
}

static void wire_free(wire_t *w)
{
    int i;
    for (i = 0; i < w->nxs; i++) {
        xfer_release(w, &w->xs[i]);
        paykit_buf_free(&w->xs[i].out);
        paykit_resp_free(&w->xs[i].resp);
    }
    free(w->xs);
    w->xs = NULL;
    w->nxs = 0;
    free(w->moved);
    w->moved = NULL;
    for (i = 0; i < w->nidle; i++)
        conn_close(&w->idle[i]);
    free(w->idle);
    w->idle = NULL;
    w->nidle = w->cap_idle = 0;
    if (w->epfd >= 0) {
        close(w->epfd);
        w->epfd = -1;
    }
    if (w->ctx) {
        SSL_CTX_free(w->ctx);
        w->ctx = NULL;
    }
    if (w->bio) {
        BIO_meth_free(w->bio);
        w->bio = NULL;
    }
    paykit_buf_free(&w->pre);
    free(w->cafile);
    free(w->capath);
    free(w->user_agent);
    w->cafile = w->capath = w->user_agent = NULL;
    w->open = 0;
}

/* Releases slots left busy by a call that a Lua error interrupted (and any registration a
 * batch left parked on a kept connection). */
static void wire_settle(wire_t *w)
{
    int i;
    for (i = 0; i < w->nxs; i++) {
        if (w->xs[i].state != X_FREE)
            xfer_release(w, &w->xs[i]);
        else
            park_resolve(w, &w->xs[i]);
    }
}

/* Makes at least n transfer slots; returns 0 when out of memory. */
static int wire_slots(wire_t *w, int n)
{
    xfer *xs;
    int i, *moved;
    if (n <= w->nxs)
        return 1;
    moved = (int *)realloc(w->moved, 2 * (size_t)n * sizeof *moved); /* a slot at most twice a turn */
    if (!moved)
        return 0;
    w->moved = moved;
    xs = (xfer *)realloc(w->xs, (size_t)n * sizeof *xs);
    if (!xs)
        return 0;
    for (i = w->nxs; i < n; i++) {
        memset(&xs[i], 0, sizeof xs[i]);
        xs[i].k.fd = -1;
        xs[i].reg_fd = -1;
        xs[i].park.fd = -1;
    }
    w->xs = xs;
    w->nxs = n;
    return 1;
}

/* ---- the pool ----------------------------------------------------------------------------- */

/* Whether a kept connection still looks usable: the server has neither closed it nor written
 * anything since its last answer (both make it unusable: nothing of ours was sent on it). */
static int conn_alive(conn *k)
{
    struct pollfd p;
    int r;
    if (k->ssl && SSL_has_pending(k->ssl))
        return 0; /* bytes read ahead or decrypted since the last answer */
    p.fd = k->fd;
    p.events = POLLIN;
    p.revents = 0;
    do r = poll(&p, 1, 0); while (r < 0 && errno == EINTR);
    return r == 0;
}

/* Whether a kept connection may serve a request: young enough and still live. */
static int conn_usable(const wire_t *w, conn *k)
{
    return (w->keepalive_ms <= 0 || paykit_monotonic_ms() - k->idle_at < w->keepalive_ms) && conn_alive(k);
}

/* Takes a live kept connection for key into *out; returns 0 when there is none. */
static int pool_take(wire_t *w, const char *key, conn *out)
{
    int i = w->nidle;
    while (i-- > 0) {
        if (strcmp(w->idle[i].key, key) != 0)
            continue;
        *out = w->idle[i];
        memmove(&w->idle[i], &w->idle[i + 1], (size_t)(w->nidle - i - 1) * sizeof *w->idle);
        w->nidle--;
        if (conn_usable(w, out))
            return 1;
        conn_close(out); /* closed or written to while idle: never used for a request */
    }
    return 0;
}

static void pool_put(wire_t *w, conn *k)
{
    if (w->nidle >= w->pool_limit) {
        conn_close(&w->idle[0]);
        memmove(&w->idle[0], &w->idle[1], (size_t)(w->nidle - 1) * sizeof *w->idle);
        w->nidle--;
    }
    if (w->nidle >= w->cap_idle) {
        int cap = w->cap_idle ? w->cap_idle * 2 : 16;
        conn *idle = (conn *)realloc(w->idle, (size_t)cap * sizeof *idle);
        if (!idle) {
            conn_close(k);
            return;
        }
        w->idle = idle;
        w->cap_idle = cap;
    }
    k->idle_at = paykit_monotonic_ms();
    w->idle[w->nidle++] = *k;
    k->fd = -1;
    k->ssl = NULL;
}

/* ---- TLS ---------------------------------------------------------------------------------- */

static void tls_message(char *dst, size_t n, const char *what)
{
    unsigned long e = ERR_peek_last_error();
    char reason[160];
    if (e) {
        ERR_error_string_n(e, reason, sizeof reason);
        snprintf(dst, n, "%s: %s", what, reason);
    } else {
        snprintf(dst, n, "%s", what);
    }
    ERR_clear_error();
}

/* A socket BIO of our own: OpenSSL's writes with write(2), and a write to a connection the
 * peer reset raises SIGPIPE, which would end a Lua process. This one sends with MSG_NOSIGNAL. */
static int bio_write(BIO *b, const char *data, int len)
{
    ssize_t r;
    BIO_clear_retry_flags(b);
    do r = send((int)(intptr_t)BIO_get_data(b), data, (size_t)len, MSG_NOSIGNAL); while (r < 0 && errno == EINTR);
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        BIO_set_retry_write(b);
    return (int)r;
}

static int bio_read(BIO *b, char *data, int len)
{
    ssize_t r;
    BIO_clear_retry_flags(b);
    do r = recv((int)(intptr_t)BIO_get_data(b), data, (size_t)len, 0); while (r < 0 && errno == EINTR);
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        BIO_set_retry_read(b);
    return (int)r;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    (void)b; (void)num; (void)ptr;
    return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

static int bio_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

static BIO_METHOD *wire_bio(wire_t *w)
{
    if (!w->bio) {
        BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "paykit wire socket");
        if (!m)
            return NULL;
        if (!BIO_meth_set_write(m, bio_write) || !BIO_meth_set_read(m, bio_read) || !BIO_meth_set_ctrl(m, bio_ctrl)
            || !BIO_meth_set_create(m, bio_create)) {
            BIO_meth_free(m);
            return NULL;
        }
        w->bio = m;
    }
    return w->bio;
}

/* The client's SSL_CTX, made on first use; NULL (message in w->tls_err) on failure. */
static SSL_CTX *wire_ctx(wire_t *w)
{
    SSL_CTX *ctx;
    if (w->ctx)
        return w->ctx;
    ERR_clear_error();
    ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) {
        tls_message(w->tls_err, sizeof w->tls_err, "cannot create the TLS context");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_ENABLE_PARTIAL_WRITE);
    /* one recv per burst of records instead of a header read and a body read per record;
     * what is read ahead shows in SSL_has_pending (conn_alive, do_recv) */
    SSL_CTX_set_read_ahead(ctx, 1);
    SSL_CTX_set_verify(ctx, w->verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, NULL);
    if (w->cafile || w->capath) {
        if (SSL_CTX_load_verify_locations(ctx, w->cafile, w->capath) != 1) {
            tls_message(w->tls_err, sizeof w->tls_err, "cannot load the CA file or path");
            SSL_CTX_free(ctx);
            return NULL;
        }
    } else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
        tls_message(w->tls_err, sizeof w->tls_err, "cannot load the system CA certificates");
        SSL_CTX_free(ctx);
        return NULL;
    }
    w->ctx = ctx;
    return ctx;
}

static int is_ip_literal(const char *host)
{
    unsigned char a[16];
    return inet_pton(AF_INET, host, a) == 1 || inet_pton(AF_INET6, host, a) == 1;
}

/* ---- failing a transfer ------------------------------------------------------------------- */

static void fail(wire_t *w, xfer *x, const char *code, int maybe_sent, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static void fail(wire_t *w, xfer *x, const char *code, int maybe_sent, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(x->err, sizeof x->err, fmt, ap);
    va_end(ap);
    x->code = code;
    x->maybe_sent = maybe_sent;
    x->ok = 0;
    x->state = X_DONE;
    xfer_unregister(w, x);
    conn_close(&x->k);
}

/* Once a connection exists, anything failing before the first byte of the request went out
 * was never sent; from then on it may have been. */
static int sent_flag(const xfer *x) { return x->sent_any; }

/* (Re)starts the send or read wait timer: progress was made, or the phase began. */
static void stall_arm(xfer *x, int phase)
{
    long ms = phase == 1 ? x->send_ms : x->read_ms;
    x->stall_phase = phase;
    x->t_stall = ms > 0 ? paykit_monotonic_ms() + ms : LLONG_MAX;
}

/* ---- the state machine -------------------------------------------------------------------- */

static int has_suffix_ci(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcasecmp(s + n - m, suffix) == 0;
}

/* Starts (again) on a new connection: for an idempotent retry or after a kept connection was
 * found dead before anything was written. */
static void restart_fresh(wire_t *w, xfer *x)
{
    xfer_unregister(w, x);
    conn_close(&x->k);
    x->fresh = 1;
    x->reused = 0;
    x->out_off = 0;
    x->sent_any = x->got_any = 0;
    x->stall_phase = 0;
    x->t_stall = LLONG_MAX;
    paykit_resp_start(&x->resp, w->max_response, x->head);
    x->state = X_START;
}

/* "s|host|port" (no printf on the per-request path); n >= sizeof conn.key */
static void conn_key(const xfer *x, char *key, size_t n)
{
    size_t hl = strlen(x->host), pl = strlen(x->port);
    if (hl + pl + 3 >= n) { /* cannot happen: host <= MAX_HOST, port < 8 */
        key[0] = '\0';
        return;
    }
    key[0] = x->tls ? 's' : 'p';
    key[1] = '|';
    memcpy(key + 2, x->host, hl);
    key[2 + hl] = '|';
    memcpy(key + 3 + hl, x->port, pl + 1);
}

/* Writes v in decimal at p (at least 21 bytes); returns the number of digits. */
static size_t put_decimal(char *p, unsigned long long v)
{
    char t[24];
    size_t n = 0, i;
    do { t[n++] = (char)('0' + v % 10); v /= 10; } while (v);
    for (i = 0; i < n; i++) p[i] = t[n - 1 - i];
    return n;
}

/* Opens the socket for the next address (state X_CONNECTING or X_HANDSHAKE/X_SEND), or fails. */
static void connect_next(wire_t *w, xfer *x, int last_errno)
{
    while (x->ai_next) {
        struct addrinfo *a = x->ai_next;
        int fd, one = 1;
        x->ai_next = a->ai_next;
        fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0) {
            last_errno = errno;
            continue;
        }
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        x->k.fd = fd;
        conn_key(x, x->k.key, sizeof x->k.key);
        if (connect(fd, a->ai_addr, a->ai_addrlen) == 0) {
            x->state = X_CONNECTING; /* connected at once: checked below like the others */
            x->want = POLLOUT;
            return;
        }
        if (errno == EINPROGRESS) {
            x->state = X_CONNECTING;
            x->want = POLLOUT;
            return;
        }
        last_errno = errno;
        close(fd);
        x->k.fd = -1;
    }
    fail(w, x, "connect", 0, "cannot connect to %s port %s: %s", x->host, x->port,
         last_errno ? strerror(last_errno) : "no address");
}

static void start_tls(wire_t *w, xfer *x)
{
    SSL_CTX *ctx = wire_ctx(w);
    SSL *ssl;
    if (!ctx) {
        fail(w, x, "tls", 0, "%s", w->tls_err);
        return;
    }
    ERR_clear_error();
    ssl = SSL_new(ctx);
    {
        BIO_METHOD *m = ssl ? wire_bio(w) : NULL;
        BIO *b = m ? BIO_new(m) : NULL;
        if (!b) {
            if (ssl)
                SSL_free(ssl);
            tls_message(x->err, sizeof x->err, "cannot create the TLS connection");
            fail(w, x, "tls", 0, "%s", x->err);
            return;
        }
        BIO_set_data(b, (void *)(intptr_t)x->k.fd);
        SSL_set_bio(ssl, b, b); /* the SSL owns the BIO */
    }
    x->k.ssl = ssl;
    if (is_ip_literal(x->host)) {
        /* no SNI for an address; the certificate must name the address */
        if (w->verify && X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), x->host) != 1) {
            fail(w, x, "tls", 0, "cannot set the address to verify");
            return;
        }
    } else {
        if (SSL_set_tlsext_host_name(ssl, x->host) != 1 || (w->verify && SSL_set1_host(ssl, x->host) != 1)) {
            fail(w, x, "tls", 0, "cannot set the host name to verify");
            return;
        }
    }
    x->state = X_HANDSHAKE;
    x->want = POLLOUT;
}

/* Whether the last SSL call wants to wait; sets x->want. */
static int ssl_wait(xfer *x, int r)
{
    int e = SSL_get_error(x->k.ssl, r);
    if (e == SSL_ERROR_WANT_READ) { x->want = POLLIN; return 1; }
    if (e == SSL_ERROR_WANT_WRITE) { x->want = POLLOUT; return 1; }
    return 0;
}

static void handshake(wire_t *w, xfer *x)
{
    int r;
    ERR_clear_error();
    r = SSL_connect(x->k.ssl);
    if (r == 1) {
        x->state = X_SEND;
        return;
    }
    if (ssl_wait(x, r))
        return;
    {
        long v = SSL_get_verify_result(x->k.ssl);
        if (w->verify && v != X509_V_OK) {
            ERR_clear_error();
            fail(w, x, "tls_verify", 0, "TLS certificate of %s refused: %s", x->host,
                 X509_verify_cert_error_string(v));
        } else {
            char m[200];
            tls_message(m, sizeof m, "TLS handshake failed");
            fail(w, x, "tls", 0, "%s", m);
        }
    }
}

/* Writes what is left of the request. */
static void do_send(wire_t *w, xfer *x)
{
    if (x->stall_phase != 1)
        stall_arm(x, 1);
    while (x->out_off < x->out.len) {
        const char *p = x->out.p + x->out_off;
        size_t n = x->out.len - x->out_off;
        if (x->k.ssl) {
            size_t done = 0;
            int r;
            ERR_clear_error();
            r = SSL_write_ex(x->k.ssl, p, n, &done);
            if (r == 1) {
                x->out_off += done;
                x->sent_any = 1;
                if (x->send_ms > 0)
                    stall_arm(x, 1);
                continue;
            }
            if (ssl_wait(x, r))
                return;
            if (!x->sent_any && x->reused) {
                restart_fresh(w, x);
                return;
            }
            {
                char m[200];
                tls_message(m, sizeof m, "TLS write failed");
                fail(w, x, "send", 1, "%s", m);
            }
            return;
        } else {
            ssize_t r = send(x->k.fd, p, n, MSG_NOSIGNAL);
            if (r > 0) {
                x->out_off += (size_t)r;
                x->sent_any = 1;
                if (x->send_ms > 0)
                    stall_arm(x, 1);
                continue;
            }
            if (r < 0 && errno == EINTR)
                continue;
            if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                x->want = POLLOUT;
                return;
            }
            if (!x->sent_any && x->reused) {
                /* the kernel took none of it: nothing left, a new connection is no resend */
                restart_fresh(w, x);
                return;
            }
            fail(w, x, "send", 1, "sending the request failed: %s", strerror(errno));
            return;
        }
    }
    x->state = X_RECV;
    x->want = POLLIN;
    stall_arm(x, 2);
}

/* The connection ended (EOF or error) before the response was complete. */
static void recv_ended(wire_t *w, xfer *x, int eof, int err)
{
    if (!x->got_any && x->reused && x->idempotent && !x->retried) {
        x->retried = 1; /* once: a kept connection that died under an idempotent request */
        restart_fresh(w, x);
        return;
    }
    if (eof) {
        int st = paykit_resp_feed(&x->resp, NULL, 0);
        if (st == PAYKIT_RESP_DONE) { /* a body delimited by the end of the connection */
            x->ok = 1;
            x->state = X_DONE;
            conn_close(&x->k);
            xfer_unregister(w, x);
            return;
        }
        if (!x->got_any)
            fail(w, x, "recv", 1, "the connection was closed after the request was sent and before any "
                                  "answer; a request that may charge is never sent again");
        else
            fail(w, x, "recv", 1, "the connection was closed before the response was complete");
        return;
    }
    fail(w, x, "recv", 1, "receiving the response failed: %s", err ? strerror(err) : "TLS error");
}

static void do_recv(wire_t *w, xfer *x)
{
    char buf[READ_CHUNK];
    for (;;) {
        size_t got = 0;
        int st;
        if (x->k.ssl) {
            int r;
            ERR_clear_error();
            r = SSL_read_ex(x->k.ssl, buf, sizeof buf, &got);
            if (r != 1) {
                int e = SSL_get_error(x->k.ssl, 0);
                if (e == SSL_ERROR_WANT_READ) { x->want = POLLIN; return; }
                if (e == SSL_ERROR_WANT_WRITE) { x->want = POLLOUT; return; }
                if (e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && errno == 0)
                    || (e == SSL_ERROR_SSL && ERR_GET_REASON(ERR_peek_last_error()) == SSL_R_UNEXPECTED_EOF_WHILE_READING)) {
                    ERR_clear_error();
                    recv_ended(w, x, 1, 0);
                } else {
                    int en = e == SSL_ERROR_SYSCALL ? errno : 0;
                    ERR_clear_error();
                    recv_ended(w, x, 0, en);
                }
                return;
            }
        } else {
            ssize_t r = recv(x->k.fd, buf, sizeof buf, 0);
            if (r < 0) {
                if (errno == EINTR)
                    continue;
                if (errno == EAGAIN || errno == EWOULDBLOCK) { x->want = POLLIN; return; }
                recv_ended(w, x, 0, errno);
                return;
            }
            if (r == 0) {
                recv_ended(w, x, 1, 0);
                return;
            }
            got = (size_t)r;
        }
        x->got_any = 1;
        if (x->read_ms > 0)
            stall_arm(x, 2);
        st = paykit_resp_feed(&x->resp, buf, got);
        if (st == PAYKIT_RESP_ERROR) {
            if (strcmp(x->resp.code, "too_large") == 0 && strncmp(x->resp.err, "response body", 13) == 0)
                fail(w, x, "too_large", 1, "response body larger than %zu bytes", w->max_response);
            else
                fail(w, x, x->resp.code, 1, "%s", x->resp.err);
            return;
        }
        if (st == PAYKIT_RESP_DONE) {
            x->ok = 1;
            x->state = X_DONE;
            if (x->resp.keepalive && !(x->k.ssl && SSL_has_pending(x->k.ssl))) {
                if (x->reg_fd >= 0 && x->reg_fd == x->k.fd && x->park.fd < 0 && x >= w->xs && x < w->xs + w->nxs) {
                    /* batch: the slot keeps it, registered, for its next request (park_resolve) */
                    x->park = x->k;
                    x->park.idle_at = paykit_monotonic_ms();
                    x->park_ev = x->reg_ev;
                    x->reg_fd = -1;
                    x->k.fd = -1;
                    x->k.ssl = NULL;
                } else {
                    xfer_unregister(w, x);
                    pool_put(w, &x->k);
                }
            } else {
                xfer_unregister(w, x);
                conn_close(&x->k);
            }
            return;
        }
    }
}

/* Advances x as far as it goes without waiting. ready: the socket reported the events x
 * waited for (for a connect in progress, the only way to know it ended). */
static void advance(wire_t *w, xfer *x, int ready)
{
    for (;;) {
        x->want = 0;
        switch (x->state) {
        case X_START: {
            char key[sizeof x->k.key];
            struct addrinfo hints;
            int rc;
            conn_key(x, key, sizeof key);
            if (!x->fresh && x->park.fd >= 0 && x->reg_fd < 0 && strcmp(x->park.key, key) == 0) {
                /* the slot's own kept connection, still registered for it: taken as from the pool */
                conn k = x->park;
                x->park.fd = -1;
                x->park.ssl = NULL;
                if (conn_usable(w, &k)) {
                    x->k = k;
                    x->reg_fd = k.fd;
                    x->reg_ev = x->park_ev;
                    x->reused = 1;
                    x->state = X_SEND;
                    break;
                }
                conn_close(&k); /* closed or written to while idle; closing ends its registration */
            }
            if (!x->fresh && pool_take(w, key, &x->k)) {
                x->reused = 1;
                x->state = X_SEND;
                break;
            }
            if (strcasecmp(x->host, "invalid") == 0 || has_suffix_ci(x->host, ".invalid")) {
                fail(w, x, "dns", 0, "cannot resolve host name %s", x->host);
                return;
            }
            memset(&hints, 0, sizeof hints);
            hints.ai_family = AF_UNSPEC;
            hints.ai_socktype = SOCK_STREAM;
            hints.ai_flags = AI_NUMERICSERV;
            rc = getaddrinfo(x->host, x->port, &hints, &x->ai);
            if (rc != 0) {
                x->ai = NULL;
                fail(w, x, "dns", 0, "cannot resolve host name %s: %s", x->host, gai_strerror(rc));
                return;
            }
            x->ai_next = x->ai;
            connect_next(w, x, 0);
            if (x->state == X_DONE)
                return;
            ready = 0;
            break;
        }
        case X_CONNECTING: {
            int err = 0;
            socklen_t len = sizeof err;
            struct pollfd p;
            if (!ready) {
                p.fd = x->k.fd;
                p.events = POLLOUT;
                p.revents = 0;
                if (poll(&p, 1, 0) <= 0) {
                    x->want = POLLOUT;
                    return;
                }
            }
            ready = 0;
            if (getsockopt(x->k.fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
                err = errno;
            if (err) {
                close(x->k.fd);
                x->k.fd = -1;
                xfer_unregister(w, x);
                connect_next(w, x, err);
                if (x->state == X_DONE)
                    return;
                break;
            }
            if (x->ai) {
                freeaddrinfo(x->ai);
                x->ai = x->ai_next = NULL;
            }
            if (x->tls) {
                start_tls(w, x);
                if (x->state == X_DONE)
                    return;
            } else {
                x->state = X_SEND;
            }
            break;
        }
        case X_HANDSHAKE:
            handshake(w, x);
            if (x->want || x->state == X_DONE)
                return;
            break;
        case X_SEND:
            do_send(w, x);
            if (x->state == X_DONE || (x->want && x->state == X_SEND))
                return;
            if (x->state == X_RECV) {
                /* the request just went out: the answer is seldom there yet, so wait for it
                 * (poll or epoll) instead of a read that would mostly fail with EAGAIN */
                x->want = POLLIN;
                return;
            }
            break;
        case X_RECV:
            do_recv(w, x);
            if (x->state == X_DONE || x->want)
                return;
            break;
        default:
            return;
        }
    }
}

/* Fails x if a deadline passed. Returns 1 when it did. */
static int check_deadline(wire_t *w, xfer *x, long long now)
{
    int connecting = x->state == X_START || x->state == X_CONNECTING || x->state == X_HANDSHAKE;
    if (connecting && now >= x->t_connect) {
        fail(w, x, "connect_timeout", 0, "connecting to %s port %s timed out", x->host, x->port);
        return 1;
    }
    if ((x->state == X_SEND || x->state == X_RECV) && now >= x->t_stall && now < x->t_total) {
        if (x->state == X_SEND)
            fail(w, x, "timeout", sent_flag(x), "sending the request to %s port %s stalled for %ld ms (send_timeout)",
                 x->host, x->port, x->send_ms);
        else
            fail(w, x, "timeout", 1, "no answer bytes from %s port %s for %ld ms (read_timeout)", x->host,
                 x->port, x->read_ms);
        return 1;
    }
    if (now >= x->t_total) {
        if (connecting)
            fail(w, x, "connect_timeout", 0, "connecting to %s port %s timed out", x->host, x->port);
        else
            fail(w, x, "timeout", sent_flag(x) || x->state == X_RECV, "the request to %s port %s timed out",
                 x->host, x->port);
        return 1;
    }
    return 0;
}

static long long deadline_of(const xfer *x)
{
    int connecting = x->state == X_START || x->state == X_CONNECTING || x->state == X_HANDSHAKE;
    if (connecting)
        return x->t_connect < x->t_total ? x->t_connect : x->t_total;
    if ((x->state == X_SEND || x->state == X_RECV) && x->t_stall < x->t_total)
        return x->t_stall;
    return x->t_total;
}

/* ---- reading requests --------------------------------------------------------------------- */

/* Whether the header line "Name: v" / name n is one the transport writes itself. */
static int own_header(const char *name, size_t n)
{
    return (n == 14 && strncasecmp(name, "content-length", 14) == 0)
        || (n == 17 && strncasecmp(name, "transfer-encoding", 17) == 0)
        || (n == 10 && strncasecmp(name, "connection", 10) == 0);
}

#ifdef __GNUC__
__attribute__((always_inline)) /* a handful of bytes a call: the call would cost more */
#endif
static inline int add(paykit_buf *b, const char *s, size_t n, int *ok)
{
    if (*ok && !paykit_buf_add(b, s, n))
        *ok = 0;
    return *ok;
}
#define ADDS(b, s, ok) add((b), (s), strlen(s), (ok))


/* Splits an http(s) URL; returns NULL or the reason it cannot be used. */
static const char *parse_url(const char *u, url_t *p)
{
    const char *s, *auth_end, *h, *he;
    size_t i;
    memset(p, 0, sizeof *p);
    if (strncasecmp(u, "http://", 7) == 0) {
        s = u + 7;
    } else if (strncasecmp(u, "https://", 8) == 0) {
        s = u + 8;
        p->tls = 1;
    } else {
        return "only http:// and https:// URLs";
    }
    auth_end = s + strcspn(s, "/?#");
    for (h = s; h < auth_end; h++)
        if (*h == '@')
            return "user information in the URL";
    for (h = s; h < auth_end; h++)
        if ((unsigned char)*h <= ' ' || (unsigned char)*h >= 0x7f)
            return "a bad character in the host";
    h = s;
    if (*h == '[') {
        he = memchr(h, ']', (size_t)(auth_end - h));
        if (!he)
            return "a bad IPv6 address";
        p->host = h + 1;
        p->host_len = (size_t)(he - h - 1);
        p->bracketed = 1;
        he++;
    } else {
        he = memchr(h, ':', (size_t)(auth_end - h));
        if (!he)
            he = auth_end;
        p->host = h;
        p->host_len = (size_t)(he - h);
    }
    if (p->host_len == 0 || p->host_len > MAX_HOST)
        return "a missing or too long host";
    if (he < auth_end) {
        size_t n;
        long port = 0;
        if (*he != ':')
            return "a bad host";
        he++;
        n = (size_t)(auth_end - he);
        if (n == 0 || n > 5)
            return "a bad port";
        for (i = 0; i < n; i++) {
            if (he[i] < '0' || he[i] > '9')
                return "a bad port";
            port = port * 10 + (he[i] - '0');
        }
        if (port < 1 || port > 65535)
            return "a bad port";
        p->port[put_decimal(p->port, (unsigned long long)port)] = '\0';
        p->default_port = port == (p->tls ? 443 : 80);
    } else {
        memcpy(p->port, p->tls ? "443" : "80", p->tls ? 4 : 3);
        p->default_port = 1;
    }
    p->path = auth_end;
    p->path_len = strcspn(auth_end, "#");
    for (i = 0; i < p->path_len; i++)
        if ((unsigned char)p->path[i] <= ' ' || (unsigned char)p->path[i] == 0x7f)
            return "a space or control character in the path";
    return NULL;
}

/* parse_url through the client's one-URL cache: a request to the URL of the last usable one
 * (the same bytes) takes its parts again without a new scan. */
static const char *cached_parse_url(wire_t *w, const char *url, url_t *p)
{
    size_t n = strlen(url);
    const char *bad;
    if (n == w->url_len && n && memcmp(url, w->url_text, n) == 0) {
        *p = w->url_parts;
        p->host = url + w->url_host_off;
        p->path = url + w->url_path_off;
        return NULL;
    }
    bad = parse_url(url, p);
    if (!bad && n < sizeof w->url_text) {
        memcpy(w->url_text, url, n);
        w->url_len = n;
        w->url_parts = *p;
        w->url_host_off = (size_t)(p->host - url);
        w->url_path_off = (size_t)(p->path - url);
    }
    return bad;
}

/* Reads and checks the request at idx (raises on misuse). With x != NULL also prepares the
 * transfer: URL parts, the request bytes. Returns 0 when x's URL is unusable (x failed with
 * code other, never sent) or out of memory; 1 otherwise. */
/* paykit_read_headers' callback: one header into the request bytes, noting the headers wire
 * would otherwise write itself. */
typedef struct {
    xfer *x;
    int ok, has_host, has_ua, has_accept, has_ct;
    int named, named_ct, named_accept; /* with named: a name = value Content-Type / Accept (any case) */
    const char *skip;           /* a name = value header (this exact name) the extra one replaces */
    size_t skip_n;
} header_sink;

static int header_to_bytes(void *ud, const char *name, size_t nn, const char *value, size_t vn)
{
    header_sink *h = (header_sink *)ud;
    const char *hn = name ? name : value;
    size_t hl = name ? nn : strcspn(value, ":");
    if (name && h->named) {
        if (nn == 12 && strncasecmp(name, "content-type", 12) == 0) h->named_ct = 1;
        if (nn == 6 && strncasecmp(name, "accept", 6) == 0) h->named_accept = 1;
    }
    if (name && h->skip && nn == h->skip_n && memcmp(name, h->skip, nn) == 0)
        return 1; /* as a table entry overwritten by the extra header */
    if (!name && (hl == vn || hl == 0))
        return 1; /* not "Name: value": nothing to send */
    if (!own_header(hn, hl)) {
        if (hl == 4 && strncasecmp(hn, "host", 4) == 0) h->has_host = 1;
        if (hl == 10 && strncasecmp(hn, "user-agent", 10) == 0) h->has_ua = 1;
        if (hl == 6 && strncasecmp(hn, "accept", 6) == 0) h->has_accept = 1;
        if (hl == 12 && strncasecmp(hn, "content-type", 12) == 0) h->has_ct = 1;
        if (name) {
            add(&h->x->out, name, nn, &h->ok);
            ADDS(&h->x->out, vn ? ": " : ":", &h->ok);
        }
        add(&h->x->out, value, vn, &h->ok);
        ADDS(&h->x->out, "\r\n", &h->ok);
    }
    return 1; /* out of memory shows in h->ok */
}

/* A request as read from a request table or from client:request's positional form. */
typedef struct {
    paykit_req q;
    long send_ms, read_ms;           /* -1: not given */
    int headers;                     /* stack index of the headers value (nil: none) */
    const char *extra, *extra_value; /* one more header after the caller's (NULL: none) */
    size_t extra_n, extra_vn;
    int json;                        /* paykit.http's json: Content-Type, Accept application/json */
} req_in;

static int build_request(lua_State *L, wire_t *w, req_in *in, int arg, int pos, xfer *x);

static int read_request(lua_State *L, wire_t *w, int idx, int arg, int pos, xfer *x)
{
    req_in in;
    int r, base;
    in.q.timeout_ms = w->timeout_ms;
    in.q.connect_timeout_ms = w->connect_timeout_ms;
    in.q.stall_ms = w->stall_ms;
    in.q.follow = 0;
    base = paykit_req_fields(L, idx, UP_FIELDS); /* the methods' upvalues: the field names */
    paykit_read_req_fields(L, idx, base, arg, pos, &in.q);
    in.send_ms = paykit_count_value(L, base + PAYKIT_RF_SEND_TIMEOUT, arg, pos, "send_timeout", -1, LONG_MAX);
    in.read_ms = paykit_count_value(L, base + PAYKIT_RF_READ_TIMEOUT, arg, pos, "read_timeout", -1, LONG_MAX);
    if (in.q.follow)
        paykit_req_argerror(L, arg, pos, "the wire transport does not follow redirects");
    in.extra = NULL;
    in.json = 0;
    in.headers = base + PAYKIT_RF_HEADERS;
    r = build_request(L, w, &in, arg, pos, x);
    lua_settop(L, base - 1);
    return r;
}

/* An optional non-negative whole number argument of the positional form (checked as
 * paykit_opt_count checks a request table's field, with the same messages). */
static long pos_count(lua_State *L, int b, int i, const char *name, long def)
{
    long long n = 0;
    if (lua_isnoneornil(L, i))
        return def;
    if (lua_type(L, i) != LUA_TNUMBER)
        paykit_req_argerror(L, b, 0, lua_pushfstring(L, "'%s' must be a number", name));
    if (!paykit_tosafeint(L, i, &n) || n < 0)
        paykit_req_argerror(L, b, 0, lua_pushfstring(L, "'%s' must be a non-negative integer", name));
    return (long)n;
}

/* client:request(method, url, headers, body, idempotent, timeout, connect_timeout, send_timeout,
 * read_timeout, stall_timeout, extra_name, extra_value, json): the fields of a request table as
 * arguments (checked in the same order with the same messages, as argument 1), and one header
 * written after the caller's (a name = value entry of the same exact name is left out, as a
 * table entry it overwrote), its value a uuid4 made here when extra_value is nil; json as
 * paykit.http's: Content-Type application/json (with a body) unless the caller's headers
 * name one, Accept application/json unless they name one. Leaves the made value (or nil) on
 * top of the stack. */
static void read_positional(lua_State *L, wire_t *w, req_in *in, int b)
{
    paykit_req *q = &in->q;
    size_t n;
    int t;
    if (lua_type(L, b + 1) != LUA_TSTRING)
        paykit_req_argerror(L, b, 0, "'url' must be a string");
    q->url = lua_tolstring(L, b + 1, &n);
    if (strlen(q->url) != n)
        paykit_req_argerror(L, b, 0, "'url' must not contain NUL bytes");
    if (lua_type(L, b) != LUA_TSTRING)
        paykit_req_argerror(L, b, 0, "'method' must be a string");
    q->method = lua_tolstring(L, b, &q->method_len);
    paykit_check_method(L, b, 0, q->method, q->method_len);
    q->timeout_ms = pos_count(L, b, b + 5, "timeout", w->timeout_ms);
    q->connect_timeout_ms = pos_count(L, b, b + 6, "connect_timeout", w->connect_timeout_ms);
    q->stall_ms = pos_count(L, b, b + 9, "stall_timeout", w->stall_ms);
    q->follow = 0;
    q->has_body = !lua_isnil(L, b + 3);
    q->body = NULL;
    q->body_len = 0;
    if (q->has_body) {
        if (lua_type(L, b + 3) != LUA_TSTRING)
            paykit_req_argerror(L, b, 0, "'body' must be a string");
        q->body = lua_tolstring(L, b + 3, &q->body_len);
    }
    t = lua_type(L, b + 4);
    if (t == LUA_TNIL)
        q->idempotent = paykit_idempotent_method(q->method, q->method_len);
    else if (t != LUA_TBOOLEAN)
        paykit_req_argerror(L, b, 0, "'idempotent' must be a boolean");
    else
        q->idempotent = lua_toboolean(L, b + 4);
    in->send_ms = pos_count(L, b, b + 7, "send_timeout", -1);
    in->read_ms = pos_count(L, b, b + 8, "read_timeout", -1);
    in->headers = b + 2;
    in->json = lua_toboolean(L, b + 12);
    in->extra = NULL;
    if (lua_type(L, b + 10) == LUA_TSTRING) {
        in->extra = lua_tolstring(L, b + 10, &in->extra_n);
        if (in->extra_n == 0 || paykit_bad_header_text(in->extra, in->extra_n) || memchr(in->extra, ':', in->extra_n))
            paykit_req_argerror(L, b, 0, "invalid header name");
        if (lua_isnil(L, b + 11)) {
            char id[36];
            if (paykit_uuid4(id)) {
                lua_pushlstring(L, id, sizeof id);
                in->extra_value = lua_tolstring(L, -1, &in->extra_vn);
            } else {
                lua_pushnil(L); /* as core.uuid4's failure in paykit.http: no header, no id */
                in->extra = NULL;
            }
            return;
        }
        if (lua_type(L, b + 11) == LUA_TNUMBER)
            lua_tostring(L, b + 11); /* converted in place, as a header value of a table */
        else if (lua_type(L, b + 11) != LUA_TSTRING)
            paykit_req_argerror(L, b, 0, "header values must be strings or numbers");
        in->extra_value = lua_tolstring(L, b + 11, &in->extra_vn);
        if (paykit_bad_header_text(in->extra_value, in->extra_vn))
            paykit_req_argerror(L, b, 0, "header values must not contain CR, LF or NUL");
    }
    lua_pushnil(L);
}

static int build_request(lua_State *L, wire_t *w, req_in *in, int arg, int pos, xfer *x)
{
    size_t body_len, method_len, hstart = 0;
    const char *url, *method, *body, *bad = NULL;
    xfer *xfailed = x;
    int xbad = 0;
    long timeout_ms, connect_timeout_ms, send_ms, read_ms;
    int has_body, idempotent, ok = 1;
    header_sink hs = { .ok = 1 };
    paykit_req q = in->q;
    url_t u;
    url = q.url;
    body = q.body;
    body_len = q.body_len;
    has_body = q.has_body;
    idempotent = q.idempotent;
    method = q.method ? q.method : has_body ? "POST" : "GET";
    method_len = q.method ? q.method_len : has_body ? 4 : 3;
    timeout_ms = q.timeout_ms;
    connect_timeout_ms = q.connect_timeout_ms;
    /* send_timeout / read_timeout: the longest wait for one send / one read; without either,
     * stall_timeout (libcurl's one stall timer) bounds both */
    send_ms = in->send_ms;
    read_ms = in->read_ms;
    if (send_ms < 0 && read_ms < 0)
        send_ms = read_ms = q.stall_ms;
    if (send_ms < 0)
        send_ms = 0;
    if (read_ms < 0)
        read_ms = 0;

    if (x) {
        long long t0 = paykit_monotonic_ms();
        x->idempotent = idempotent;
        x->head = method_len == 4 && memcmp(method, "HEAD", 4) == 0;
        x->fresh = !idempotent && body_len == 0; /* as the libcurl client: see the header */
        x->reused = x->retried = x->sent_any = x->got_any = x->ok = 0;
        x->send_ms = send_ms;
        x->read_ms = read_ms;
        x->stall_phase = 0;
        x->t_stall = LLONG_MAX;
        x->out_off = 0;
        x->out.len = 0;
        x->code = NULL;
        x->maybe_sent = 0;
        x->err[0] = '\0';
        x->t_connect = t0 + connect_timeout_ms;
        x->t_total = t0 + timeout_ms;
        if (timeout_ms == 0)
            x->t_total = LLONG_MAX; /* 0: no limit, as libcurl */
        if (connect_timeout_ms == 0)
            x->t_connect = t0 + 300000;
        paykit_resp_start(&x->resp, w->max_response, x->head);
        x->state = X_START;
        bad = cached_parse_url(w, url, &u);
    }
    if (x && bad) {
        x = NULL; /* the headers are still checked (misuse raises) before the URL fails */
        xbad = 1;
    }
    if (x) {
        x->tls = u.tls;
        memcpy(x->host, u.host, u.host_len);
        x->host[u.host_len] = '\0';
        memcpy(x->port, u.port, sizeof x->port);
        add(&x->out, method, method_len, &ok);
        ADDS(&x->out, " ", &ok);
        if (u.path_len == 0 || u.path[0] == '?')
            ADDS(&x->out, "/", &ok);
        add(&x->out, u.path, u.path_len, &ok);
        ADDS(&x->out, " HTTP/1.1\r\n", &ok);
        hstart = x->out.len;
        hs.x = x;
        hs.ok = ok;
    }
    if (in->extra) {
        hs.skip = in->extra;
        hs.skip_n = in->extra_n;
    }
    hs.named = in->json; /* json's test */
    paykit_read_header_table(L, in->headers, arg, pos, x ? header_to_bytes : NULL, &hs);
    if (x) {
        /* paykit.http's own headers, after the caller's as in the table it would have made;
         * the json ones of that name win over the extra one, as there */
        int json_ct = in->json && has_body && !hs.named_ct, json_accept = in->json && !hs.named_accept;
        hs.skip = NULL;
        if (in->extra && !(json_ct && in->extra_n == 12 && memcmp(in->extra, "Content-Type", 12) == 0)
            && !(json_accept && in->extra_n == 6 && memcmp(in->extra, "Accept", 6) == 0))
            header_to_bytes(&hs, in->extra, in->extra_n, in->extra_value, in->extra_vn);
        if (json_ct)
            header_to_bytes(&hs, "Content-Type", 12, "application/json", 16);
        if (json_accept)
            header_to_bytes(&hs, "Accept", 6, "application/json", 16);
        ok = hs.ok;
    }

    if (xbad) {
        fail(w, xfailed, "unusable_url", 0, "unusable URL: %s", bad);
        return 0;
    }
    if (x) {
        char num[32];
        paykit_buf *pre = &w->pre; /* kept between requests: no allocation per request */
        pre->len = 0;
        /* Host, User-Agent, Accept before the caller's headers, in libcurl's order */
        if (!hs.has_host) {
            ADDS(pre, "Host: ", &ok);
            if (u.bracketed) ADDS(pre, "[", &ok);
            ADDS(pre, x->host, &ok);
            if (u.bracketed) ADDS(pre, "]", &ok);
            if (!u.default_port) {
                ADDS(pre, ":", &ok);
                ADDS(pre, x->port, &ok);
            }
            ADDS(pre, "\r\n", &ok);
        }
        if (!hs.has_ua && w->user_agent) {
            ADDS(pre, "User-Agent: ", &ok);
            ADDS(pre, w->user_agent, &ok);
            ADDS(pre, "\r\n", &ok);
        }
        if (!hs.has_accept)
            ADDS(pre, "Accept: */*\r\n", &ok);
        if (ok && pre->len) {
            size_t tail = x->out.len - hstart;
            if (add(&x->out, pre->p, pre->len, &ok)) {
                memmove(x->out.p + hstart + pre->len, x->out.p + hstart, tail);
                memcpy(x->out.p + hstart, pre->p, pre->len);
            }
        }
        buf_recycle(pre);
        if ((has_body || (method_len == 4 && memcmp(method, "POST", 4) == 0)) && !x->head) {
            /* as libcurl writes a POST body: its length, and a form type unless one is given */
            size_t nl = put_decimal(num, (unsigned long long)body_len);
            ADDS(&x->out, "Content-Length: ", &ok);
            add(&x->out, num, nl, &ok);
            ADDS(&x->out, "\r\n", &ok);
            if (!hs.has_ct)
                ADDS(&x->out, "Content-Type: application/x-www-form-urlencoded\r\n", &ok);
        }
        ADDS(&x->out, "\r\n", &ok);
        if (body_len && !x->head) /* as libcurl (NOBODY): a HEAD's body, with no length, is not written */
            add(&x->out, body, body_len, &ok);
        if (!ok) {
            fail(w, x, "other", 0, "out of memory while building the request");
            return 0;
        }
    }
    return 1;
}

/* ---- results ------------------------------------------------------------------------------ */

/* Pushes the methods' upvalues (UP_N values) over the methods table, under which is the
 * metatable they belong to. */
static void push_upvalues(lua_State *L)
{
    paykit_req_keys(L);
    lua_pushliteral(L, "status");
    lua_pushvalue(L, -(UP_STATUS + 2)); /* UP_MT: under the names and the methods table */
}

/* luaL_checkudata(L, arg, tname) in a method whose UP_MT is tname's metatable: a value with
 * that metatable is taken without looking the name up; anything else goes to luaL_checkudata,
 * which raises its own message. */
static void *check_self(lua_State *L, int arg, const char *tname)
{
    void *p = lua_touserdata(L, arg);
    if (p && lua_getmetatable(L, arg)) {
        int same = lua_rawequal(L, -1, lua_upvalueindex(UP_MT));
        lua_pop(L, 1);
        if (same)
            return p;
    }
    return luaL_checkudata(L, arg, tname);
}

/* w: the client whose header string cache to use (NULL or closed: none). Runs in a method of
 * the client or of the loop (their upvalues). */
static int push_outcome(lua_State *L, xfer *x, int as_table, wire_t *w)
{
    if (x->ok) {
        /* the keys: the methods' upvalues (UP_*), strings made once, not looked up by name */
        lua_createtable(L, 0, 5); /* room for paykit.http's request_id, correlation_id */
        lua_pushvalue(L, lua_upvalueindex(UP_STATUS));
        lua_pushinteger(L, x->resp.status);
        lua_rawset(L, -3);
        lua_pushvalue(L, lua_upvalueindex(UP_HEADERS));
        paykit_resp_push_headers(L, &x->resp, w && w->open ? &w->hc : NULL);
        lua_rawset(L, -3);
        lua_pushvalue(L, lua_upvalueindex(UP_BODY));
        lua_pushlstring(L, x->resp.body.p ? x->resp.body.p : "", x->resp.body.len);
        lua_rawset(L, -3);
        return 1;
    }
    if (as_table) {
        lua_createtable(L, 0, 3);
        lua_pushstring(L, x->err);
        lua_setfield(L, -2, "error");
        lua_pushstring(L, x->code ? x->code : "other");
        lua_setfield(L, -2, "code");
        lua_pushboolean(L, x->maybe_sent);
        lua_setfield(L, -2, "maybe_sent");
        return 1;
    }
    lua_pushnil(L);
    lua_pushstring(L, x->err);
    lua_pushstring(L, x->code ? x->code : "other");
    lua_pushboolean(L, x->maybe_sent);
    return 4;
}

/* ---- the client --------------------------------------------------------------------------- */

static wire_t *check_wire(lua_State *L) /* in a client method (check_self) */
{
    wire_t *w = (wire_t *)check_self(L, 1, WIRE_MT);
    if (!w->open)
        luaL_error(L, "paykit wire client is closed");
    return w;
}

static int wire_close(lua_State *L)
{
    wire_t *w = (wire_t *)luaL_checkudata(L, 1, WIRE_MT);
    paykit_hcache_free(L, &w->hc);
    wire_free(w);
    return 0;
}

static int wire_closed(lua_State *L)
{
    wire_t *w = (wire_t *)luaL_checkudata(L, 1, WIRE_MT);
    lua_pushboolean(L, !w->open);
    return 1;
}

static int wire_tostring(lua_State *L)
{
    wire_t *w = (wire_t *)luaL_checkudata(L, 1, WIRE_MT);
    lua_pushfstring(L, "paykit.wire.client (%s): %p", w->open ? "open" : "closed", (void *)w);
    return 1;
}

/* core.wire_client(opts) */
static int wire_client(lua_State *L)
{
    wire_t *w;
    int has_opts = !lua_isnoneornil(L, 1);
    if (has_opts)
        luaL_checktype(L, 1, LUA_TTABLE);
    w = (wire_t *)lua_newuserdata(L, sizeof *w);
    memset(w, 0, sizeof *w);
    w->epfd = -1;
    w->hc.ref = LUA_NOREF;
    luaL_getmetatable(L, WIRE_MT);
    lua_setmetatable(L, -2);
    w->open = 1;
    w->connect_timeout_ms = DEFAULT_CONNECT_TIMEOUT_MS;
    w->timeout_ms = DEFAULT_TIMEOUT_MS;
    w->max_response = DEFAULT_MAX_RESPONSE;
    w->max_connections = DEFAULT_MAX_CONNECTIONS;
    w->keepalive_ms = DEFAULT_KEEPALIVE_MS;
    w->verify = 1;
    if (has_opts) {
        paykit_client_opts o = { .connect_timeout_ms = w->connect_timeout_ms, .timeout_ms = w->timeout_ms,
                                 .max_connections = w->max_connections, .keepalive_ms = w->keepalive_ms,
                                 .max_response = w->max_response, .verify = 1 };
        paykit_read_client_opts(L, 1, 1, &o); /* max_redirects is accepted for the same options; unused */
        w->connect_timeout_ms = o.connect_timeout_ms;
        w->timeout_ms = o.timeout_ms;
        w->max_response = o.max_response;
        w->max_connections = o.max_connections;
        w->keepalive_ms = o.keepalive_ms;
        w->stall_ms = o.stall_ms;
        w->verify = o.verify;
        w->cafile = o.cafile;
        w->capath = o.capath;
        w->user_agent = o.user_agent;
        if (o.follow)
            return luaL_argerror(L, 1, "the wire transport does not follow redirects");
    }
    if (w->max_connections < 1)
        w->max_connections = 1;
    w->pool_limit = w->max_connections;
    paykit_hcache_init(L, &w->hc); /* leaves the stack as it was: the client on top */
    return 1;
}

/* Waits for one transfer (poll). */
static void drive_one(wire_t *w, xfer *x)
{
    int ready = 0;
    for (;;) {
        struct pollfd p;
        long long now, dl;
        int r, ms;
        advance(w, x, ready);
        if (x->state == X_DONE)
            return;
        now = paykit_monotonic_ms();
        if (check_deadline(w, x, now))
            return;
        dl = deadline_of(x) - now;
        ms = dl > INT_MAX ? INT_MAX : (int)dl;
        p.fd = x->k.fd;
        p.events = (short)x->want;
        p.revents = 0;
        r = poll(&p, 1, ms);
        ready = r > 0;
        if (r < 0 && errno != EINTR) {
            fail(w, x, x->sent_any ? "recv" : "connect", x->sent_any, "poll failed: %s", strerror(errno));
            return;
        }
    }
}

/* Registers x's socket for the events it waits for. */
static int watch(wire_t *w, xfer *x, int slot)
{
    struct epoll_event ev;
    memset(&ev, 0, sizeof ev);
    ev.events = (x->want & POLLIN ? EPOLLIN : 0) | (x->want & POLLOUT ? EPOLLOUT : 0);
    ev.data.u32 = (uint32_t)slot;
    if (x->reg_fd == x->k.fd) {
        if (x->reg_ev == ev.events)
            return 1; /* registered for these events already: no system call */
        if (epoll_ctl(w->epfd, EPOLL_CTL_MOD, x->k.fd, &ev) != 0)
            return 0;
        x->reg_ev = ev.events;
        return 1;
    }
    xfer_unregister(w, x);
    if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, x->k.fd, &ev) != 0)
        return 0;
    x->reg_fd = x->k.fd;
    x->reg_ev = ev.events;
    return 1;
}

static int wire_request(lua_State *L)
{
    wire_t *w = check_wire(L);
    xfer *x;
    /* not a table and more than one argument: the positional form (which checks its own
     * arguments: paykit.http checks none of their types) */
    int nret, positional = !lua_istable(L, 2) && lua_gettop(L) > 2;
    req_in in;
    if (positional) {
        lua_settop(L, 14);
    } else {
        luaL_checktype(L, 2, LUA_TTABLE);
        lua_settop(L, 2);
    }
    wire_settle(w);
    if (!wire_slots(w, 1))
        return luaL_error(L, "out of memory");
    x = &w->xs[0];
    /* raises on misuse before any connection is touched (the slot is settled next time) */
    x->index = 1;
    if (positional) {
        read_positional(L, w, &in, 2); /* the made extra value (or nil) on top: index 15 */
        if (build_request(L, w, &in, 2, 0, x))
            drive_one(w, x);
    } else if (read_request(L, w, 2, 2, 0, x)) {
        drive_one(w, x);
    }
    nret = push_outcome(L, x, 0, w);
    xfer_release(w, x);
    if (positional) {
        lua_pushvalue(L, 15); /* after the outcome: res, id or nil, message, code, maybe_sent, id */
        nret++;
    }
    return nret;
}

static int wire_batch(lua_State *L)
{
    wire_t *w = check_wire(L);
    int n, i, next = 1, active = 0, done = 0, slots, nmoved = 0;
    long long dl_min;
    long max_in_flight = w->max_connections;
    struct epoll_event evs[64];
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
        lua_rawgeti(L, 2, i);
        if (!lua_istable(L, -1))
            return luaL_argerror(L, 2, lua_pushfstring(L, "request %d must be a table", i));
        read_request(L, w, lua_gettop(L), 2, i, NULL);
        lua_settop(L, 2);
    }
    lua_createtable(L, n, 0); /* 3: results */
    if (n == 0)
        return 1;
    wire_settle(w);
    slots = (int)(max_in_flight < n ? max_in_flight : n);
    if (slots > w->pool_limit)
        w->pool_limit = slots; /* as libcurl's connection cache: every connection of a batch stays */
    if (!wire_slots(w, slots))
        return luaL_error(L, "out of memory");
    if (w->epfd < 0) {
        w->epfd = epoll_create1(EPOLL_CLOEXEC);
        if (w->epfd < 0)
            return luaL_error(L, "epoll_create1 failed: %s", strerror(errno));
    }
    /* Each turn: start requests in free slots and collect the finished ones; then register
     * (watch) and time the slots that moved (started, or advanced by an event) since the last
     * wait, the others being as they were: their registration stands and the nearest deadline
     * (dl_min) covers theirs. When the clock reaches dl_min every slot is checked and dl_min
     * made again; a slot that finished its request leaves dl_min as it was (earlier at worst:
     * one sweep more). So a turn costs what moved, not the number of slots. */
    dl_min = LLONG_MAX;
    while (done < n) {
        long long now;
        int k, r, ms, failed = 0;
        for (k = 0; k < slots; k++) {
            xfer *x = &w->xs[k];
            if (x->state == X_FREE && next <= n) {
                lua_rawgeti(L, 2, next);
                x->index = next++;
                if (read_request(L, w, lua_gettop(L), 2, x->index, x))
                    advance(w, x, 0);
                park_resolve(w, x); /* taken over by now, or removed */
                lua_pop(L, 1);
                active++;
                if (x->state != X_DONE)
                    w->moved[nmoved++] = k;
            }
            if (x->state == X_DONE) {
                push_outcome(L, x, 1, w);
                lua_rawseti(L, 3, x->index);
                xfer_release_keep(w, x);
                if (next > n)
                    park_resolve(w, x); /* no next request in this slot */
                active--;
                done++;
                k--; /* the slot is free again: start the next request in it */
                continue;
            }
        }
        if (done >= n)
            break;
        now = paykit_monotonic_ms();
        if (now >= dl_min) { /* a deadline may have passed: every slot, and dl_min anew */
            dl_min = LLONG_MAX;
            for (k = 0; k < slots; k++) {
                xfer *x = &w->xs[k];
                if (x->state == X_FREE || x->state == X_DONE)
                    continue;
                if (check_deadline(w, x, now)) {
                    failed = 1;
                    continue;
                }
                if (deadline_of(x) < dl_min)
                    dl_min = deadline_of(x);
            }
        }
        for (i = 0; i < nmoved; i++) {
            xfer *x = &w->xs[w->moved[i]];
            if (x->state == X_FREE || x->state == X_DONE)
                continue;
            if (check_deadline(w, x, now)) {
                failed = 1;
                continue;
            }
            if (!watch(w, x, w->moved[i])) {
                fail(w, x, x->sent_any ? "recv" : "connect", x->sent_any, "epoll_ctl failed: %s", strerror(errno));
                failed = 1;
                continue;
            }
            if (deadline_of(x) < dl_min)
                dl_min = deadline_of(x);
        }
        nmoved = 0;
        if (failed)
            continue; /* collect them first */
        ms = dl_min == LLONG_MAX ? -1 : dl_min - now <= 0 ? 0 : dl_min - now > INT_MAX ? INT_MAX : (int)(dl_min - now);
        r = epoll_wait(w->epfd, evs, 64, ms);
        if (r < 0 && errno != EINTR)
            return luaL_error(L, "epoll_wait failed: %s", strerror(errno));
        for (i = 0; i < r; i++) { /* the slots advanced: registered and timed at the next turn */
            int k2 = (int)evs[i].data.u32;
            xfer *x = &w->xs[k2];
            if (x->state != X_FREE && x->state != X_DONE) {
                advance(w, x, 1);
                w->moved[nmoved++] = k2;
            }
        }
    }
    (void)active;
    return 1;
}

static const luaL_Reg wire_methods[] = {
    {"request", wire_request},
    {"batch", wire_batch},
    {"close", wire_close},
    {"closed", wire_closed},
    {NULL, NULL},
};

static const luaL_Reg wire_meta[] = {
    {"__gc", wire_close},
#if LUA_VERSION_NUM >= 504
    {"__close", wire_close},
#endif
    {"__tostring", wire_tostring},
    {NULL, NULL},
};

void paykit_wire_register(lua_State *L)
{
    if (luaL_newmetatable(L, WIRE_MT)) {
        luaL_setfuncs(L, wire_meta, 0);
        lua_newtable(L);
        push_upvalues(L); /* the field and result names, the metatable (UP_*) */
        luaL_setfuncs(L, wire_methods, UP_N);
        lua_setfield(L, -2, "__index");
        lua_pushliteral(L, WIRE_MT);
        lua_setfield(L, -2, "__name");
    }
    lua_pop(L, 1);
    lua_pushcfunction(L, wire_client);
    lua_setfield(L, -2, "wire_client");
}

/* ---- the loop: wire transfers that never block the caller ---------------------------------- *
 *
 *   core.wire_loop()                -> loop
 *   loop:start(client, req)         -> id, slot | false, outcome   (outcome as in client:batch)
 *   loop:run([wait])                -> handled, ids, outcomes, slots | handled   (waits at most wait s)
 *   loop:cancel(id)                 -> maybe_sent (boolean) | nil when id is not in flight
 *   loop:fd()                       -> the epoll descriptor: readable when a transfer can go on
 *   loop:watch(fd)                  -> also readable when fd is (another loop's descriptor)
 *   loop:timeout()                  -> seconds until the nearest deadline (0: due) | nil
 *   loop:sockets()                  -> {[fd] = "r" | "w" | "rw"}: the transfers' own sockets
 *   loop:count()                    -> transfers in flight
 *   loop:close()
 *
 * The same interface as core.http_loop (csrc/http.c), for wire clients: a transfer is the
 * state machine request() and batch() drive (read_request, advance, the client's pool and TLS
 * context), so every no-resend rule of the header holds. Transfers live in the loop, not in the
 * client's slots: the client's own request() and batch() can run between steps. The loop keeps
 * its own epoll set: after each advance a transfer's socket is registered for what it waits for
 * and removed once the transfer is done (a kept connection back in the pool is never watched).
 * run(0) never waits; with nothing registered it makes no system call. A client closed while
 * its transfers are in flight fails them (maybe sent when a byte left). */
#define WLOOP_MT "paykit.wire.loop"
#define WLOOP_EVENTS 64
#define WLOOP_EXT UINT32_MAX

typedef struct {
    xfer x;
    wire_t *w;                  /* the client (kept alive by ref) */
    int ref;                    /* registry ref of the client userdata: kept while the slot is
                                 * free, so the next transfer of the same client in this slot
                                 * takes no new ref (dropped when another client takes the slot
                                 * and when the loop closes) */
    wire_t *refd;               /* the client that ref holds */
    int id;                     /* 0: the slot is free */
    int reg;                    /* the descriptor registered for x, or -1 */
    unsigned evs;               /* its registered events */
} wl_slot;

typedef struct {
    int open;
    int epfd;
    wl_slot **slots;
    int nslots;
    int next_id, active, nreg;
    int extfd;                  /* loop:watch's descriptor, or -1 */
} wloop_t;

/* Keeps slot i's registration in step with what its transfer waits for. */
static void wl_reconcile(wloop_t *l, int i)
{
    wl_slot *s = l->slots[i];
    xfer *x = &s->x;
    int fd = (x->state != X_DONE && x->state != X_FREE && x->k.fd >= 0 && x->want) ? x->k.fd : -1;
    struct epoll_event ev;
    if (s->reg >= 0 && s->reg != fd) {
        epoll_ctl(l->epfd, EPOLL_CTL_DEL, s->reg, NULL); /* EBADF when closed already: fine */
        s->reg = -1;
        l->nreg--;
    }
    if (fd < 0)
        return;
    memset(&ev, 0, sizeof ev);
    ev.events = (x->want & POLLIN ? EPOLLIN : 0u) | (x->want & POLLOUT ? EPOLLOUT : 0u);
    ev.data.u32 = (uint32_t)i;
    if (s->reg == fd) {
        /* the same number may be a new socket (closed and reopened inside advance): MOD, else ADD */
        if (epoll_ctl(l->epfd, EPOLL_CTL_MOD, fd, &ev) != 0 && errno == ENOENT)
            epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev);
    } else {
        if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
            if (errno != EEXIST || epoll_ctl(l->epfd, EPOLL_CTL_MOD, fd, &ev) != 0) {
                fail(s->w, x, x->sent_any ? "recv" : "connect", x->sent_any, "epoll_ctl failed: %s", strerror(errno));
                return;
            }
        }
        s->reg = fd;
        l->nreg++;
    }
    s->evs = ev.events;
}

static void wl_release(lua_State *L, wloop_t *l, int i)
{
    wl_slot *s = l->slots[i];
    (void)L; /* the client's ref stays with the slot (see wl_slot) */
    if (!s->id)
        return;
    if (s->reg >= 0) {
        epoll_ctl(l->epfd, EPOLL_CTL_DEL, s->reg, NULL);
        s->reg = -1;
        l->nreg--;
    }
    xfer_release(s->w, &s->x); /* a connection still held (not done, not pooled) is closed */
    s->w = NULL;
    s->id = 0;
    l->active--;
}

static void wl_free(lua_State *L, wloop_t *l)
{
    int i;
    if (!l->open)
        return;
    for (i = 0; i < l->nslots; i++) {
        wl_release(L, l, i);
        if (L && l->slots[i]->ref != LUA_NOREF)
            luaL_unref(L, LUA_REGISTRYINDEX, l->slots[i]->ref);
        paykit_buf_free(&l->slots[i]->x.out);
        paykit_resp_free(&l->slots[i]->x.resp);
        free(l->slots[i]);
    }
    free(l->slots);
    l->slots = NULL;
    l->nslots = 0;
    if (l->epfd >= 0)
        close(l->epfd);
    l->epfd = -1;
    l->open = 0;
}

static wloop_t *check_wloop(lua_State *L) /* in a loop method (check_self) */
{
    wloop_t *l = (wloop_t *)check_self(L, 1, WLOOP_MT);
    if (!l->open)
        luaL_error(L, "paykit wire loop is closed");
    return l;
}

static int wl_close(lua_State *L)
{
    wl_free(L, (wloop_t *)luaL_checkudata(L, 1, WLOOP_MT));
    return 0;
}

/* core.wire_loop() */
static int wire_loop(lua_State *L)
{
    wloop_t *l = (wloop_t *)lua_newuserdata(L, sizeof *l);
    memset(l, 0, sizeof *l);
    l->epfd = -1;
    l->extfd = -1;
    luaL_getmetatable(L, WLOOP_MT);
    lua_setmetatable(L, -2);
    l->open = 1;
    l->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (l->epfd < 0) {
        int e = errno;
        wl_free(L, l);
        return luaL_error(L, "epoll_create1: %s", strerror(e));
    }
    return 1;
}

/* A free slot's index (made when none is free), or -1 when out of memory. */
static int wl_slot_free(wloop_t *l)
{
    int i;
    wl_slot **slots, *s;
    for (i = 0; i < l->nslots; i++)
        if (!l->slots[i]->id)
            return i;
    slots = (wl_slot **)realloc(l->slots, (size_t)(l->nslots + 1) * sizeof *slots);
    if (!slots)
        return -1;
    l->slots = slots;
    s = (wl_slot *)calloc(1, sizeof *s);
    if (!s)
        return -1;
    s->x.k.fd = -1;
    s->x.reg_fd = -1;
    s->x.park.fd = -1;
    s->reg = -1;
    s->ref = LUA_NOREF;
    l->slots[l->nslots] = s;
    return l->nslots++;
}

/* loop:start(client, req), or loop:start(client, method, url, headers, body, idempotent,
 * timeout, connect_timeout, send_timeout, read_timeout, stall_timeout, extra_name, extra_value,
 * json): the positional form of client:request (the same fields as arguments, checked in the
 * same order with the same messages, as argument 2; the extra header after the caller's, a
 * uuid4 made here when extra_value is nil), which returns the made value (or nil) after what
 * the table form returns. */
static int wl_start(lua_State *L)
{
    wloop_t *l = check_wloop(L);
    wire_t *w = (wire_t *)luaL_checkudata(L, 2, WIRE_MT);
    wl_slot *s;
    int i, ok, top;
    /* not a table and more than one argument after the client: the positional form */
    int positional = !lua_istable(L, 3) && lua_gettop(L) > 3;
    req_in in;
    if (!w->open)
        return luaL_argerror(L, 2, "the client is closed");
    if (positional) {
        lua_settop(L, 15);
    } else {
        luaL_checktype(L, 3, LUA_TTABLE);
        lua_settop(L, 3);
    }
    top = lua_gettop(L);
    i = wl_slot_free(l);
    if (i < 0)
        return luaL_error(L, "out of memory");
    s = l->slots[i];
    s->x.index = 1;
    s->x.reg_fd = -1;
    /* one pass: a misuse raises from inside it with the slot still free (its id 0) and nothing
     * started (no connection is touched before advance), so the slot is simply used again */
    if (positional) {
        read_positional(L, w, &in, 3); /* the made extra value (or nil) on top: index 16 */
        ok = build_request(L, w, &in, 3, 0, &s->x);
        top = 16;
    } else {
        ok = read_request(L, w, 3, 3, 0, &s->x);
    }
    lua_settop(L, top);
    s->w = w;
    if (++l->next_id <= 0)
        l->next_id = 1;
    s->id = l->next_id;
    l->active++;
    if (s->refd != w || s->ref == LUA_NOREF) {
        if (s->ref != LUA_NOREF)
            luaL_unref(L, LUA_REGISTRYINDEX, s->ref);
        lua_pushvalue(L, 2);
        s->ref = luaL_ref(L, LUA_REGISTRYINDEX);
        s->refd = w;
    }
    if (!ok) {
        lua_pushboolean(L, 0);
        push_outcome(L, &s->x, 1, s->w);
        wl_release(L, l, i);
        if (positional) {
            lua_pushvalue(L, 16); /* false, outcome, id or nil */
            return 3;
        }
        return 2;
    }
    if (l->active > w->pool_limit)
        w->pool_limit = l->active; /* as batch(): every connection of the loop is kept */
    advance(w, &s->x, 0);
    wl_reconcile(l, i);
    lua_pushinteger(L, s->id);
    lua_pushinteger(L, i + 1); /* the slot: small and reused, an array index for the caller */
    if (positional) {
        lua_pushvalue(L, 16); /* id, slot, made id or nil */
        return 3;
    }
    return 2;
}

/* Fails the transfers whose deadline passed or whose client was closed; returns the nearest
 * deadline of the others (LLONG_MAX: none) and counts the finished ones into *done. */
static long long wl_sweep(wloop_t *l, long long now, int *done)
{
    long long dl = LLONG_MAX;
    int i;
    *done = 0;
    for (i = 0; i < l->nslots; i++) {
        wl_slot *s = l->slots[i];
        xfer *x = &s->x;
        if (!s->id)
            continue;
        if (x->state != X_DONE && !s->w->open)
            fail(s->w, x, x->sent_any ? "send" : "other", x->sent_any,
                 "the client was closed while the request was in flight");
        if (x->state != X_DONE)
            check_deadline(s->w, x, now);
        if (x->state == X_DONE) {
            wl_reconcile(l, i);
            (*done)++;
            continue;
        }
        if (deadline_of(x) < dl)
            dl = deadline_of(x);
    }
    return dl;
}

/* loop:run([wait]) */
static int wl_run(lua_State *L)
{
    wloop_t *l = check_wloop(L);
    lua_Number wait = luaL_optnumber(L, 2, 0);
    struct epoll_event evs[WLOOP_EVENTS];
    int n = 0, i, count = 0, done, ready = 0, ms;
    long long now, dl;
    luaL_argcheck(L, wait == wait && wait <= 86400, 2, "wait must be a number of seconds up to 86400");
    ms = wait > 0 ? (int)(wait * 1000) : 0;
    if (wait > 0 && (lua_Number)ms < wait * 1000)
        ms++; /* rounded up: a wait never ends before it is due */
    now = paykit_monotonic_ms();
    dl = wl_sweep(l, now, &done);
    if (done)
        ms = 0;
    else if (dl != LLONG_MAX && dl - now < ms)
        ms = dl - now < 0 ? 0 : (int)(dl - now);
    if (l->nreg > 0 || l->extfd >= 0 || ms > 0) {
        n = epoll_wait(l->epfd, evs, WLOOP_EVENTS, ms);
        if (n < 0)
            n = 0; /* EINTR: the caller steps again */
    }
    for (i = 0; i < n; i++) {
        uint32_t k = evs[i].data.u32;
        wl_slot *s;
        if (k == WLOOP_EXT || (int)k >= l->nslots)
            continue;
        s = l->slots[k];
        if (!s->id || s->x.state == X_DONE || !s->w->open)
            continue;
        advance(s->w, &s->x, 1);
        wl_reconcile(l, (int)k);
    }
    if (n > 0)
        wl_sweep(l, paykit_monotonic_ms(), &done);
    lua_settop(L, 1);
    lua_pushinteger(L, n); /* 2: what was handled */
    for (i = 0; i < l->nslots; i++)
        if (l->slots[i]->id && l->slots[i]->x.state == X_DONE)
            ready++;
    if (ready == 0)
        return 1;
    /* the three arrays made at their size: no rehash as they fill */
    lua_createtable(L, ready, 0); /* 3: ids */
    lua_createtable(L, ready, 0); /* 4: outcomes */
    lua_createtable(L, ready, 0); /* 5: slots */
    for (i = 0; i < l->nslots && count < ready; i++) {
        wl_slot *s = l->slots[i];
        if (!s->id || s->x.state != X_DONE)
            continue;
        count++;
        lua_pushinteger(L, s->id);
        lua_rawseti(L, 3, count);
        push_outcome(L, &s->x, 1, s->w);
        lua_rawseti(L, 4, count);
        lua_pushinteger(L, i + 1);
        lua_rawseti(L, 5, count);
        wl_release(L, l, i);
    }
    return 4;
}

/* loop:cancel(id) */
static int wl_cancel(lua_State *L)
{
    wloop_t *l = check_wloop(L);
    lua_Integer id = luaL_checkinteger(L, 2);
    int i;
    for (i = 0; i < l->nslots; i++) {
        wl_slot *s = l->slots[i];
        if (s->id && s->id == id) {
            /* a byte of the request may have left: the connection is dropped, never reused */
            lua_pushboolean(L, s->x.sent_any || s->x.state == X_RECV);
            wl_release(L, l, i);
            return 1;
        }
    }
    lua_pushnil(L);
    return 1;
}

static int wl_fd(lua_State *L)
{
    lua_pushinteger(L, check_wloop(L)->epfd);
    return 1;
}

static int wl_watch(lua_State *L)
{
    wloop_t *l = check_wloop(L);
    int fd = (int)luaL_checkinteger(L, 2);
    struct epoll_event ev;
    if (l->extfd >= 0)
        return luaL_error(L, "the wire loop already watches descriptor %d", l->extfd);
    memset(&ev, 0, sizeof ev);
    ev.events = EPOLLIN;
    ev.data.u32 = WLOOP_EXT;
    if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) != 0)
        return luaL_error(L, "epoll_ctl: %s", strerror(errno));
    l->extfd = fd;
    return 0;
}

static int wl_timeout(lua_State *L)
{
    wloop_t *l = check_wloop(L);
    long long now = paykit_monotonic_ms(), dl = LLONG_MAX;
    int i, any = 0;
    for (i = 0; i < l->nslots; i++) {
        wl_slot *s = l->slots[i];
        if (!s->id)
            continue;
        any = 1;
        if (s->x.state == X_DONE) {
            dl = now;
            break;
        }
        if (deadline_of(&s->x) < dl)
            dl = deadline_of(&s->x);
    }
    if (!any || dl == LLONG_MAX) {
        lua_pushnil(L);
        return 1;
    }
    lua_pushnumber(L, dl <= now ? 0 : (lua_Number)(dl - now) / 1000.0);
    return 1;
}

static int wl_sockets(lua_State *L)
{
    wloop_t *l = check_wloop(L);
    int i;
    lua_createtable(L, 0, l->nreg);
    for (i = 0; i < l->nslots; i++) {
        wl_slot *s = l->slots[i];
        if (!s->id || s->reg < 0)
            continue;
        lua_pushstring(L, (s->evs & EPOLLIN) && (s->evs & EPOLLOUT) ? "rw" : (s->evs & EPOLLOUT) ? "w" : "r");
        lua_rawseti(L, -2, s->reg);
    }
    return 1;
}

static int wl_count(lua_State *L)
{
    lua_pushinteger(L, check_wloop(L)->active);
    return 1;
}

static int wl_tostring(lua_State *L)
{
    wloop_t *l = (wloop_t *)luaL_checkudata(L, 1, WLOOP_MT);
    lua_pushfstring(L, "paykit.wire.loop (%s): %p", l->open ? "open" : "closed", (void *)l);
    return 1;
}

static const luaL_Reg wloop_methods[] = {
    {"start", wl_start},
    {"run", wl_run},
    {"cancel", wl_cancel},
    {"fd", wl_fd},
    {"watch", wl_watch},
    {"timeout", wl_timeout},
    {"sockets", wl_sockets},
    {"count", wl_count},
    {"close", wl_close},
    {NULL, NULL},
};

static const luaL_Reg wloop_meta[] = {
    {"__gc", wl_close},
#if LUA_VERSION_NUM >= 504
    {"__close", wl_close},
#endif
    {"__tostring", wl_tostring},
    {NULL, NULL},
};

void paykit_wire_loop_register(lua_State *L)
{
    if (luaL_newmetatable(L, WLOOP_MT)) {
        luaL_setfuncs(L, wloop_meta, 0);
        lua_newtable(L);
        push_upvalues(L); /* the field and result names, the metatable (UP_*) */
        luaL_setfuncs(L, wloop_methods, UP_N);
        lua_setfield(L, -2, "__index");
        lua_pushliteral(L, WLOOP_MT);
        lua_setfield(L, -2, "__name");
    }
    lua_pop(L, 1);
    lua_pushcfunction(L, wire_loop);
    lua_setfield(L, -2, "wire_loop");
}
