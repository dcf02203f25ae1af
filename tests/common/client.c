#include "client.h"

#include "core/ws_frame.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sndfile.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int connect_port(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

static int send_all(int fd, const void *data, size_t len)
{
    const unsigned char *p = data;
    while (len) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Reads into a growing buffer until `done` says the message is whole. */
static ssize_t recv_some(int fd, unsigned char **buf, size_t *len, size_t *cap, int timeout_ms)
{
    struct pollfd pf = {fd, POLLIN, 0};
    int pr = poll(&pf, 1, timeout_ms);
    if (pr <= 0) return pr == 0 ? -2 : -1;
    if (*len + 65536 + 1 > *cap) {
        size_t nc = (*cap ? *cap * 2 : 131072);
        while (nc < *len + 65536 + 1) nc *= 2;
        unsigned char *nb = realloc(*buf, nc);
        if (!nb) return -1;
        *buf = nb;
        *cap = nc;
    }
    ssize_t n = recv(fd, *buf + *len, 65536, 0);
    if (n > 0) *len += (size_t)n;
    return n;
}

static int parse_response(unsigned char *buf, size_t len, at_test_resp *r, int *complete)
{
    *complete = 0;
    unsigned char *hend = NULL;
    for (size_t i = 0; i + 3 < len; i++)
        if (memcmp(buf + i, "\r\n\r\n", 4) == 0) {
            hend = buf + i;
            break;
        }
    if (!hend) return 0;
    size_t hlen = (size_t)(hend - buf);
    if (sscanf((char *)buf, "HTTP/1.%*d %d", &r->status) != 1) return -1;
    size_t copy = hlen < sizeof r->headers - 1 ? hlen : sizeof r->headers - 1;
    for (size_t i = 0; i < copy; i++) r->headers[i] = (char)tolower(buf[i]);
    r->headers[copy] = '\0';
    const unsigned char *body = hend + 4;
    size_t avail = len - (hlen + 4);
    char v[64];
    if (at_test_header(r, "content-length", v, sizeof v)) {
        size_t cl = strtoul(v, NULL, 10);
        if (avail < cl) return 0;
        r->body = malloc(cl + 1);
        memcpy(r->body, body, cl);
        r->body[cl] = '\0';
        r->len = cl;
        *complete = 1;
        return 0;
    }
    if (at_test_header(r, "transfer-encoding", v, sizeof v) && strstr(v, "chunked")) {
        r->chunked = 1;
        /* De-chunk what we have; complete only at the 0-size chunk. */
        unsigned char *out = malloc(avail + 1);
        size_t o = 0, i = 0;
        for (;;) {
            size_t j = i;
            while (j + 1 < avail && !(body[j] == '\r' && body[j + 1] == '\n')) j++;
            if (j + 1 >= avail) break;
            size_t sz = strtoul((const char *)body + i, NULL, 16);
            if (sz == 0) {
                *complete = 1;
                break;
            }
            if (j + 2 + sz + 2 > avail) break;
            memcpy(out + o, body + j + 2, sz);
            o += sz;
            i = j + 2 + sz + 2;
        }
        if (!*complete) {
            free(out);
            return 0;
        }
        out[o] = '\0';
        r->body = out;
        r->len = o;
        return 0;
    }
    return 0; /* no length: read to close */
}

int at_test_raw(int port, const void *raw, size_t len, at_test_resp *r, int timeout_s)
{
    memset(r, 0, sizeof *r);
    int fd = connect_port(port);
    if (fd < 0) return -1;
    /* A refused body (413) may close before we finish sending: ignore. */
    send_all(fd, raw, len);
    unsigned char *buf = NULL;
    size_t blen = 0, cap = 0;
    int complete = 0;
    double deadline = now_s() + timeout_s;
    while (!complete) {
        int left = (int)((deadline - now_s()) * 1000);
        if (left <= 0) break;
        ssize_t n = recv_some(fd, &buf, &blen, &cap, left);
        if (n == 0 || n == -1) { /* closed: whatever we have is the response */
            if (blen && parse_response(buf, blen, r, &complete) == 0 && !complete && r->status && !r->body) {
                /* close-delimited body */
                unsigned char *h = NULL;
                for (size_t i = 0; i + 3 < blen; i++)
                    if (memcmp(buf + i, "\r\n\r\n", 4) == 0) {
                        h = buf + i + 4;
                        break;
                    }
                if (h) {
                    r->len = blen - (size_t)(h - buf);
                    r->body = malloc(r->len + 1);
                    memcpy(r->body, h, r->len);
                    r->body[r->len] = '\0';
                    complete = 1;
                }
            }
            break;
        }
        if (n == -2) break;
        if (parse_response(buf, blen, r, &complete) < 0) break;
    }
    free(buf);
    close(fd);
    if (!complete) return -1;
    return 0;
}

int at_test_http(int port, const char *method, const char *path, const char *extra_headers, const void *body,
                 size_t len, at_test_resp *r)
{
    size_t hcap = 1024 + (extra_headers ? strlen(extra_headers) : 0);
    char *req = malloc(hcap + len);
    int hl = snprintf(req, hcap,
                      "%s %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n%sContent-Length: %zu\r\n"
                      "Connection: close\r\n\r\n",
                      method, path, port, extra_headers ? extra_headers : "", len);
    if (len) memcpy(req + hl, body, len);
    int rc = at_test_raw(port, req, (size_t)hl + len, r, 120);
    free(req);
    return rc;
}

void at_test_resp_free(at_test_resp *r)
{
    free(r->body);
    r->body = NULL;
}

int at_test_header(const at_test_resp *r, const char *name, char *buf, size_t cap)
{
    char key[128];
    snprintf(key, sizeof key, "\r\n%s:", name);
    for (char *k = key; *k; k++) *k = (char)tolower(*k);
    const char *p = strstr(r->headers, key);
    if (!p) return 0;
    p += strlen(key);
    while (*p == ' ') p++;
    size_t n = strcspn(p, "\r\n");
    if (n >= cap) n = cap - 1;
    memcpy(buf, p, n);
    buf[n] = '\0';
    return 1;
}

/* ---- multipart ---- */

static void form_put(at_test_form *f, const void *d, size_t n)
{
    if (f->len + n > f->cap) {
        size_t c = f->cap ? f->cap : 4096;
        while (c < f->len + n) c *= 2;
        f->data = realloc(f->data, c);
        f->cap = c;
    }
    memcpy(f->data + f->len, d, n);
    f->len += n;
}

void at_test_form_init(at_test_form *f)
{
    memset(f, 0, sizeof *f);
    snprintf(f->boundary, sizeof f->boundary, "----attest%08x", (unsigned)rand());
}

void at_test_form_field(at_test_form *f, const char *name, const char *value)
{
    char h[512];
    int n = snprintf(h, sizeof h, "--%s\r\nContent-Disposition: form-data; name=\"%s\"\r\n\r\n", f->boundary,
                     name);
    form_put(f, h, (size_t)n);
    form_put(f, value, strlen(value));
    form_put(f, "\r\n", 2);
}

void at_test_form_file(at_test_form *f, const char *name, const char *filename, const char *ctype,
                       const void *data, size_t len)
{
    char h[768];
    int n = snprintf(h, sizeof h,
                     "--%s\r\nContent-Disposition: form-data; name=\"%s\"; filename=\"%s\"\r\n"
                     "Content-Type: %s\r\n\r\n",
                     f->boundary, name, filename, ctype);
    form_put(f, h, (size_t)n);
    form_put(f, data, len);
    form_put(f, "\r\n", 2);
}

const char *at_test_form_finish(at_test_form *f, char *hdr, size_t cap)
{
    char t[128];
    int n = snprintf(t, sizeof t, "--%s--\r\n", f->boundary);
    form_put(f, t, (size_t)n);
    snprintf(hdr, cap, "Content-Type: multipart/form-data; boundary=%s\r\n", f->boundary);
    return hdr;
}

void at_test_form_free(at_test_form *f)
{
    free(f->data);
    memset(f, 0, sizeof *f);
}

/* ---- WebSocket (client frames are masked, RFC 6455) ---- */

int at_test_ws_connect(at_test_ws *ws, int port, const char *path, at_test_resp *refused)
{
    memset(ws, 0, sizeof *ws);
    ws->fd = connect_port(port);
    if (ws->fd < 0) return -1;
    char req[1024];
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     "Sec-WebSocket-Version: 13\r\n\r\n",
                     path, port);
    if (send_all(ws->fd, req, (size_t)n)) return -1;
    /* Read byte by byte up to the end of headers so no frame is consumed. */
    char buf[4096];
    size_t len = 0;
    while (len < sizeof buf - 1) {
        struct pollfd pf = {ws->fd, POLLIN, 0};
        if (poll(&pf, 1, 10000) <= 0) break;
        ssize_t r = recv(ws->fd, buf + len, 1, 0);
        if (r <= 0) break;
        len++;
        if (len >= 4 && memcmp(buf + len - 4, "\r\n\r\n", 4) == 0) break;
    }
    buf[len] = '\0';
    int status = 0;
    sscanf(buf, "HTTP/1.1 %d", &status);
    if (status == 101) return 0;
    if (refused) {
        memset(refused, 0, sizeof *refused);
        refused->status = status;
        size_t c = len < sizeof refused->headers - 1 ? len : sizeof refused->headers - 1;
        for (size_t i = 0; i < c; i++) refused->headers[i] = (char)tolower(buf[i]);
        refused->headers[c] = '\0';
        /* the JSON body follows the headers */
        char body[1024];
        ssize_t r = recv(ws->fd, body, sizeof body - 1, 0);
        if (r > 0) {
            body[r] = '\0';
            refused->body = (unsigned char *)strdup(body);
            refused->len = (size_t)r;
        }
    }
    close(ws->fd);
    ws->fd = -1;
    return status ? status : -1;
}

int at_test_ws_send(at_test_ws *ws, int opcode, const void *data, size_t len)
{
    static const unsigned char mask[4] = {0x12, 0x34, 0x56, 0x78};
    unsigned char h[AT_WS_FRAME_HEADER_MAX];
    size_t hl = at_ws_frame_header(h, opcode, len, mask);
    unsigned char *frame = malloc(hl + len);
    memcpy(frame, h, hl);
    at_ws_mask(frame + hl, data, len, 0, mask);
    int rc = send_all(ws->fd, frame, hl + len);
    free(frame);
    return rc;
}

static int read_exact(int fd, unsigned char *p, size_t n, int timeout_ms)
{
    double deadline = now_s() + timeout_ms / 1000.0;
    while (n) {
        int left = (int)((deadline - now_s()) * 1000);
        if (left <= 0) return -2;
        struct pollfd pf = {fd, POLLIN, 0};
        int pr = poll(&pf, 1, left);
        if (pr == 0) return -2;
        if (pr < 0) return -1;
        ssize_t r = recv(fd, p, n, 0);
        if (r <= 0) return -1;
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

int at_test_ws_recv(at_test_ws *ws, char **data, size_t *len, int timeout_ms)
{
    *data = NULL;
    *len = 0;
    for (;;) {
        unsigned char h[2];
        int rc = read_exact(ws->fd, h, 2, timeout_ms);
        if (rc == -2) return 0;
        if (rc) return -1;
        int op = h[0] & 0x0f;
        uint64_t n = h[1] & 0x7f;
        unsigned char ext[8];
        if (n == 126) {
            if (read_exact(ws->fd, ext, 2, timeout_ms)) return -1;
            n = ((uint64_t)ext[0] << 8) | ext[1];
        } else if (n == 127) {
            if (read_exact(ws->fd, ext, 8, timeout_ms)) return -1;
            n = 0;
            for (int i = 0; i < 8; i++) n = (n << 8) | ext[i];
        }
        if (n > (64u << 20)) return -1;
        char *buf = malloc((size_t)n + 1);
        if (n && read_exact(ws->fd, (unsigned char *)buf, (size_t)n, timeout_ms)) {
            free(buf);
            return -1;
        }
        buf[n] = '\0';
        if (op == 8) {
            ws->close_code = n >= 2 ? ((unsigned char)buf[0] << 8 | (unsigned char)buf[1]) : 1005;
            *data = buf;
            *len = (size_t)n;
            return 8;
        }
        if (op == 9) { /* ping: answer pong */
            at_test_ws_send(ws, 10, buf, (size_t)n);
            free(buf);
            continue;
        }
        if (op == 10) {
            free(buf);
            continue;
        }
        *data = buf;
        *len = (size_t)n;
        return op;
    }
}

void at_test_ws_close(at_test_ws *ws)
{
    if (ws->fd >= 0) close(ws->fd);
    ws->fd = -1;
}

/* ---- processes ---- */

/* Reads the child's log for its whole life, so a chatty child never
 * blocks on a full pipe, and shows what a developer needs to see. */
static void *drain_main(void *arg)
{
    int fd = (int)(intptr_t)arg;
    FILE *f = fdopen(fd, "r");
    char line[8192];
    int in_report = 0;
    while (f && fgets(line, sizeof line, f)) {
        if (strstr(line, "Sanitizer") || strstr(line, "runtime error")) in_report = 1;
        if (getenv("AT_TEST_VERBOSE") || in_report || strstr(line, "level=error") ||
            strstr(line, "level=warn"))
            fprintf(stderr, "[service] %s", line);
    }
    if (f) fclose(f);
    return NULL;
}

static int spawn(at_test_proc *p, const char *binary, const char *const *args, int n_listen, int timeout_s,
                 int wait_ready)
{
    memset(p, 0, sizeof *p);
    const char *bdir = getenv("AT_BUILD_DIR");
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", bdir ? bdir : ".", binary);
    int pipefd[2];
    if (pipe(pipefd)) return -1;
    const char *argv[64];
    int n = 0;
    argv[n++] = path;
    for (int i = 0; args && args[i] && n < 62; i++) argv[n++] = args[i];
    argv[n] = NULL;
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        dup2(pipefd[1], 2);
        close(pipefd[0]);
        close(pipefd[1]);
        execv(path, (char *const *)argv);
        _exit(127);
    }
    close(pipefd[1]);
    p->pid = pid;
    p->err_fd = pipefd[0];
    /* Read the log until every listener has reported its URL. */
    char line[4096];
    size_t ll = 0;
    double deadline = now_s() + timeout_s;
    while (p->n_ports < n_listen && now_s() < deadline) {
        struct pollfd pf = {p->err_fd, POLLIN, 0};
        if (poll(&pf, 1, 200) <= 0) continue;
        char c;
        if (read(p->err_fd, &c, 1) != 1) break;
        if (c != '\n' && ll < sizeof line - 1) {
            line[ll++] = c;
            continue;
        }
        line[ll] = '\0';
        ll = 0;
        if (getenv("AT_TEST_VERBOSE")) fprintf(stderr, "[child] %s\n", line);
        const char *u = strstr(line, "url=http://");
        if (strstr(line, "listening") && u) {
            const char *colon = strrchr(u, ':');
            p->ports[p->n_ports++] = atoi(colon + 1);
        }
    }
    if (p->n_ports < n_listen) {
        at_test_stop(p, 2);
        return -1;
    }
    pthread_t *th = malloc(sizeof *th);
    if (th && pthread_create(th, NULL, drain_main, (void *)(intptr_t)p->err_fd) == 0)
        p->drain = th;
    else
        free(th);
    if (!wait_ready) return 0;
    /* Then wait for the engines. */
    for (int i = 0; i < p->n_ports && now_s() < deadline;) {
        at_test_resp r;
        if (at_test_http(p->ports[i], "GET", "/ready", NULL, NULL, 0, &r) == 0) {
            int st = r.status;
            at_test_resp_free(&r);
            if (st == 200 && ++i == p->n_ports) return 0;
            if (st == 200) continue;
        }
        usleep(100000);
    }
    at_test_stop(p, 2);
    return -1;
}

int at_test_spawn(at_test_proc *p, const char *binary, const char *const *args, int n_listen, int timeout_s)
{
    return spawn(p, binary, args, n_listen, timeout_s, 1);
}

int at_test_spawn_listening(at_test_proc *p, const char *binary, const char *const *args, int n_listen,
                            int timeout_s)
{
    return spawn(p, binary, args, n_listen, timeout_s, 0);
}

int at_test_stop(at_test_proc *p, int timeout_s)
{
    if (p->pid <= 0) return -1;
    kill(p->pid, SIGTERM);
    int status = 0;
    double deadline = now_s() + timeout_s;
    int rc = -1;
    while (now_s() < deadline) {
        if (!p->drain) { /* before the drain thread exists: read here */
            char buf[4096];
            struct pollfd pf = {p->err_fd, POLLIN, 0};
            if (poll(&pf, 1, 0) > 0) {
                ssize_t r = read(p->err_fd, buf, sizeof buf);
                (void)r;
            }
        }
        pid_t w = waitpid(p->pid, &status, WNOHANG);
        if (w == p->pid) {
            rc = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
            break;
        }
        usleep(20000);
    }
    if (rc == -1) {
        kill(p->pid, SIGKILL);
        waitpid(p->pid, &status, 0);
    }
    if (p->drain) { /* the thread owns the fd: it ends at EOF */
        /* A killed child may leave grandchildren holding the pipe open:
         * then do not wait for EOF. */
        if (rc == -1)
            pthread_detach(*(pthread_t *)p->drain);
        else
            pthread_join(*(pthread_t *)p->drain, NULL);
        free(p->drain);
        p->drain = NULL;
    } else {
        close(p->err_fd);
    }
    p->pid = 0;
    return rc;
}

/* ---- files ---- */

unsigned char *at_test_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *d = malloc((size_t)n + 1);
    if (d && fread(d, 1, (size_t)n, f) != (size_t)n) {
        free(d);
        d = NULL;
    }
    fclose(f);
    if (d) {
        d[n] = 0;
        *len = (size_t)n;
    }
    return d;
}

int16_t *at_test_read_wav16(const char *path, size_t *n, int *rate)
{
    SF_INFO info = {0};
    SNDFILE *sf = sf_open(path, SFM_READ, &info);
    if (!sf) return NULL;
    int16_t *all = malloc((size_t)info.frames * (size_t)info.channels * sizeof *all);
    sf_count_t got = sf_readf_short(sf, all, info.frames);
    sf_close(sf);
    int16_t *mono = malloc((size_t)got * sizeof *mono);
    for (sf_count_t i = 0; i < got; i++) mono[i] = all[i * info.channels];
    free(all);
    *n = (size_t)got;
    *rate = info.samplerate;
    return mono;
}

unsigned char *at_test_wav_bytes(const int16_t *pcm, size_t frames, int rate, int channels, size_t *len)
{
    size_t data = frames * (size_t)channels * 2;
    unsigned char *b = malloc(44 + data);
    uint32_t v;
    memcpy(b, "RIFF", 4);
    v = (uint32_t)(36 + data);
    memcpy(b + 4, &v, 4);
    memcpy(b + 8, "WAVEfmt ", 8);
    v = 16;
    memcpy(b + 16, &v, 4);
    uint16_t s = 1;
    memcpy(b + 20, &s, 2);
    s = (uint16_t)channels;
    memcpy(b + 22, &s, 2);
    v = (uint32_t)rate;
    memcpy(b + 24, &v, 4);
    v = (uint32_t)(rate * channels * 2);
    memcpy(b + 28, &v, 4);
    s = (uint16_t)(channels * 2);
    memcpy(b + 32, &s, 2);
    s = 16;
    memcpy(b + 34, &s, 2);
    memcpy(b + 36, "data", 4);
    v = (uint32_t)data;
    memcpy(b + 40, &v, 4);
    memcpy(b + 44, pcm, data);
    *len = 44 + data;
    return b;
}

const char *at_test_librivox_dir(void) { return "/usr/share/pocketsphinx/test/data/librivox"; }
