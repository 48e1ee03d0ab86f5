/* The floor of a plain C HTTP/1.1 keep-alive client, for the benchmark (not part of paykit):
 * one connection, the captured request bytes written, the answer read with poll + recv (or
 * SSL_read) and parsed with libhttp-parser, the body compared with the expected answer.
 * What the fast transport of docs/performance.md would cost per request before any Lua.
 *
 *   build/bench/cloop HOST PORT REQUEST_FILE ANSWER_FILE SECONDS [CAFILE]
 *   (with CAFILE: TLS, the certificate verified against CAFILE and HOST as an IP address)
 * Prints "result <ok> <errors> <wall s> <cpu s>" like bench/calls.lua. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <http_parser.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

typedef struct {
    int done;
    unsigned status;
    char *body;
    size_t body_len, body_cap;
} answer;

static int on_body(http_parser *p, const char *at, size_t n)
{
    answer *a = (answer *)p->data;
    if (a->body_len + n > a->body_cap) {
        size_t cap = a->body_cap ? a->body_cap * 2 : 4096;
        while (cap < a->body_len + n) cap *= 2;
        a->body = realloc(a->body, cap);
        if (a->body == NULL) return 1;
        a->body_cap = cap;
    }
    memcpy(a->body + a->body_len, at, n);
    a->body_len += n;
    return 0;
}

static int on_complete(http_parser *p)
{
    answer *a = (answer *)p->data;
    a->done = 1;
    a->status = p->status_code;
    http_parser_pause(p, 1); /* one message per read loop */
    return 0;
}

static char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    char *p;
    long len;
    if (f == NULL) return NULL;
    fseek(f, 0, SEEK_END);
    len = ftell(f);
    fseek(f, 0, SEEK_SET);
    p = malloc((size_t)len + 1);
    if (p == NULL || fread(p, 1, (size_t)len, f) != (size_t)len) { fclose(f); free(p); return NULL; }
    fclose(f);
    *n = (size_t)len;
    return p;
}

static double now(clockid_t c)
{
    struct timespec ts;
    clock_gettime(c, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    size_t req_len, want_len;
    char *req, *want;
    int fd, one = 1;
    struct sockaddr_in sa;
    SSL_CTX *ctx = NULL;
    SSL *ssl = NULL;
    http_parser parser;
    http_parser_settings settings;
    answer a;
    char buf[65536];
    double seconds, t0, c0, stop;
    long ok = 0, errors = 0;
    if (argc < 6) { fprintf(stderr, "usage: cloop HOST PORT REQUEST_FILE ANSWER_FILE SECONDS [CAFILE]\n"); return 2; }
    req = slurp(argv[3], &req_len);
    want = slurp(argv[4], &want_len);
    seconds = atof(argv[5]);
    if (req == NULL || want == NULL) { fprintf(stderr, "cloop: cannot read the request or answer file\n"); return 2; }

    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((unsigned short)atoi(argv[2]));
    if (inet_pton(AF_INET, argv[1], &sa.sin_addr) != 1) { fprintf(stderr, "cloop: HOST must be an IPv4 address\n"); return 2; }
    fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) { perror("cloop: connect"); return 1; }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (argc > 6) {
        ctx = SSL_CTX_new(TLS_client_method());
        if (ctx == NULL || SSL_CTX_load_verify_locations(ctx, argv[6], NULL) != 1) { fprintf(stderr, "cloop: CA file\n"); return 1; }
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
        ssl = SSL_new(ctx);
        X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), argv[1]);
        SSL_set_fd(ssl, fd);
        if (SSL_connect(ssl) != 1) { ERR_print_errors_fp(stderr); return 1; }
    }
    memset(&settings, 0, sizeof settings);
    settings.on_body = on_body;
    settings.on_message_complete = on_complete;
    memset(&a, 0, sizeof a);

    t0 = now(CLOCK_MONOTONIC);
    c0 = now(CLOCK_PROCESS_CPUTIME_ID);
    stop = t0 + seconds;
    do {
        int k;
        for (k = 0; k < 50; k++) {
            size_t off = 0;
            int good = 0;
            while (off < req_len) {
                long w = ssl ? SSL_write(ssl, req + off, (int)(req_len - off)) : (long)send(fd, req + off, req_len - off, MSG_NOSIGNAL);
                if (w <= 0) { fprintf(stderr, "cloop: write failed\n"); return 1; }
                off += (size_t)w;
            }
            http_parser_init(&parser, HTTP_RESPONSE);
            parser.data = &a;
            a.done = 0;
            a.body_len = 0;
            while (!a.done) {
                struct pollfd pfd = { fd, POLLIN, 0 };
                long r;
                if (!(ssl && SSL_pending(ssl) > 0) && poll(&pfd, 1, 10000) != 1) { fprintf(stderr, "cloop: timeout\n"); return 1; }
                r = ssl ? SSL_read(ssl, buf, sizeof buf) : (long)recv(fd, buf, sizeof buf, 0);
                if (r <= 0) { fprintf(stderr, "cloop: read failed\n"); return 1; }
                if (http_parser_execute(&parser, &settings, buf, (size_t)r) != (size_t)r && !a.done) {
                    fprintf(stderr, "cloop: bad answer\n");
                    return 1;
                }
            }
            good = a.status == 200 && a.body_len == want_len && memcmp(a.body, want, want_len) == 0;
            if (good) ok++; else errors++;
        }
    } while (now(CLOCK_MONOTONIC) < stop);
    printf("result %ld %ld %.6f %.6f\n", ok, errors, now(CLOCK_MONOTONIC) - t0, now(CLOCK_PROCESS_CPUTIME_ID) - c0);
    if (ssl) { SSL_shutdown(ssl); SSL_free(ssl); SSL_CTX_free(ctx); }
    close(fd);
    free(req);
    free(want);
    free(a.body);
    return 0;
}
