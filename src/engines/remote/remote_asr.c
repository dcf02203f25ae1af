/* remote_asr.c - at_asr streams over asr_streaming's WebSocket /v1/stream.
 *
 * A small WebSocket client on a blocking socket: feed() sends the audio as
 * one binary frame and then handles whatever events have already arrived,
 * without waiting; finish() sends {"type":"end"} and reads until the
 * summary.  The service flow-controls us, so a slow recogniser slows the
 * sender instead of queueing audio here.  Whole-file transcription is not
 * offered (the pipeline only streams). */
#include <cjson/cJSON.h>
#include <libwebsockets.h>
#include <netdb.h>
#include <stdatomic.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "core/audio.h"
#include "core/ws_frame.h"
#include "engines/remote/http_client.h"
#include "engines/remote/remote.h"

/* A message from the service larger than this is a protocol error. */
#define MAX_MESSAGE        (1u << 20)
#define RASR_IO_TIMEOUT_S  10          /* connect, send, and the upgrade answer */
#define RASR_MAX_ADDRS     64          /* replicas tried for one stream */
#define RASR_FRAME_SAMPLES (4 * 16000) /* audio a frame: 128 KB */

typedef struct remote_asr {
    char host[256];
    int port;
    char path[256];
    char base[600];
    char key[300]; /* "" for none */
    const char *const *langs;
    atomic_uint next; /* where the next stream starts in the address list */
} remote_asr;

typedef struct rasr_stream {
    int fd;
    unsigned char *in; /* bytes read, not yet parsed */
    size_t in_n, in_cap;
    unsigned char *msg; /* a message being reassembled from fragments */
    size_t msg_n;
    int msg_op;
    int closed, done, ended; /* ended: we sent {"type":"end"} */
    int close_code;          /* from the service's close frame, 0 if none */
    char error[400];         /* an error event from the service */
    int16_t *s16;
    size_t s16_cap;
} rasr_stream;

static const char *const en_only[] = {"en", NULL};
/* Whisper's languages (ISO 639-1) when the service has a model loaded. */
static const char *const whisper_langs[] = {
    "en", "zh", "de", "es", "ru", "ko", "fr", "ja", "pt",  "tr", "pl", "ca", "nl", "ar", "sv", "it", "id",
    "hi", "fi", "vi", "he", "uk", "el", "ms", "cs", "ro",  "da", "hu", "ta", "no", "th", "ur", "hr", "bg",
    "lt", "la", "mi", "ml", "cy", "sk", "te", "fa", "lv",  "bn", "sr", "az", "sl", "kn", "et", "mk", "br",
    "eu", "is", "hy", "ne", "mn", "bs", "kk", "sq", "sw",  "gl", "mr", "pa", "si", "km", "sn", "yo", "so",
    "af", "oc", "ka", "be", "tg", "sd", "gu", "am", "yi",  "lo", "uz", "fo", "ht", "ps", "tk", "nn", "mt",
    "sa", "lb", "my", "bo", "tl", "mg", "as", "tt", "haw", "ln", "ha", "ba", "jw", "su", NULL};

static int send_all(int fd, const void *p, size_t n)
{
    const unsigned char *b = p;
    while (n) {
        ssize_t w = send(fd, b, n, MSG_NOSIGNAL);
        if (w <= 0) return -1;
        b += w;
        n -= (size_t)w;
    }
    return 0;
}

/* One masked frame (clients must mask). */
static int send_frame(rasr_stream *s, int opcode, const void *data, size_t len)
{
    unsigned char key[4], h[AT_WS_FRAME_HEADER_MAX];
    /* RFC 6455 5.3: masks come from a strong source of entropy */
    if (getrandom(key, sizeof key, 0) != (ssize_t)sizeof key) return -1;
    size_t hl = at_ws_frame_header(h, opcode, len, key);
    if (send_all(s->fd, h, hl)) return -1;
    unsigned char buf[4096];
    const unsigned char *p = data;
    for (size_t off = 0; off < len;) {
        size_t k = len - off < sizeof buf ? len - off : sizeof buf;
        at_ws_mask(buf, p + off, k, off, key);
        if (send_all(s->fd, buf, k)) return -1;
        off += k;
    }
    return 0;
}

/* Reads what is available (waiting up to timeout_ms for the first byte). */
static int read_some(rasr_stream *s, int timeout_ms)
{
    struct pollfd pf = {s->fd, POLLIN, 0};
    int r = poll(&pf, 1, timeout_ms);
    if (r <= 0) return r;
    if (s->in_cap - s->in_n < 65536) {
        size_t cap = s->in_cap ? s->in_cap * 2 : 131072;
        if (cap > 2 * MAX_MESSAGE + 65536) return -1;
        unsigned char *n = realloc(s->in, cap);
        if (!n) return -1;
        s->in = n;
        s->in_cap = cap;
    }
    ssize_t got = recv(s->fd, s->in + s->in_n, s->in_cap - s->in_n - 1, 0);
    if (got <= 0) {
        s->closed = 1;
        return -1;
    }
    s->in_n += (size_t)got;
    return 1;
}

/* Handles one complete text message: events go to cb.  Returns nonzero
 * when cb asked to stop. */
static int on_message(rasr_stream *s, const unsigned char *data, size_t len, at_asr_event_cb cb, void *user)
{
    cJSON *o = cJSON_ParseWithLength((const char *)data, len);
    const cJSON *t = o ? cJSON_GetObjectItemCaseSensitive(o, "type") : NULL;
    int stop = 0;
    if (cJSON_IsString(t)) {
        const char *type = t->valuestring;
        if (strcmp(type, "partial") == 0 || strcmp(type, "final") == 0) {
            const cJSON *text = cJSON_GetObjectItemCaseSensitive(o, "text");
            const cJSON *st = cJSON_GetObjectItemCaseSensitive(o, "start");
            const cJSON *en = cJSON_GetObjectItemCaseSensitive(o, "end");
            const cJSON *lang = cJSON_GetObjectItemCaseSensitive(o, "language");
            at_asr_event ev = {type[0] == 'f', cJSON_IsString(text) ? text->valuestring : "",
                               cJSON_IsNumber(st) ? st->valuedouble : 0,
                               cJSON_IsNumber(en) ? en->valuedouble : 0,
                               cJSON_IsString(lang) ? lang->valuestring : NULL};
            if (cb) stop = cb(user, &ev) != 0;
        } else if (strcmp(type, "error") == 0) {
            const cJSON *m = cJSON_GetObjectItemCaseSensitive(o, "message");
            snprintf(s->error, sizeof s->error, "%s",
                     cJSON_IsString(m) ? m->valuestring : "asr_streaming reported an error");
        } else if (strcmp(type, "summary") == 0) {
            s->done = 1;
        }
    }
    cJSON_Delete(o);
    return stop;
}

/* Parses complete frames out of s->in.  Returns 1 if cb stopped us, -1 on
 * a protocol error, else 0. */
static int parse_frames(rasr_stream *s, at_asr_event_cb cb, void *user)
{
    size_t off = 0;
    int ret = 0;
    while (!ret) {
        size_t avail = s->in_n - off;
        const unsigned char *p = s->in + off;
        if (avail < 2) break;
        int fin = p[0] & 0x80, op = p[0] & 0x0f;
        uint64_t len = p[1] & 0x7f;
        size_t hl = 2 + ((p[1] & 0x80) ? 4 : 0);
        if (len == 126) {
            if (avail < 4) break;
            len = ((uint64_t)p[2] << 8) | p[3];
            hl += 2;
        } else if (len == 127) {
            if (avail < 10) break;
            len = 0;
            for (int i = 0; i < 8; i++) len = (len << 8) | p[2 + i];
            hl += 8;
        }
        if (len > MAX_MESSAGE) return -1;
        if (avail < hl + len) break;
        const unsigned char *payload = p + hl;
        off += hl + (size_t)len;
        if (op == 8) {
            s->closed = 1;
            if (len >= 2) s->close_code = (payload[0] << 8) | payload[1];
            break;
        }
        if (op == 9) {
            send_frame(s, 10, payload, (size_t)len);
            continue;
        }
        if (op == 10) continue;
        if (op != 0) {
            s->msg_op = op;
            s->msg_n = 0;
        }
        if (fin && s->msg_n == 0) {
            if (s->msg_op == 1 && on_message(s, payload, (size_t)len, cb, user)) ret = 1;
            continue;
        }
        if (s->msg_n + len > MAX_MESSAGE) return -1;
        unsigned char *m = realloc(s->msg, s->msg_n + (size_t)len + 1);
        if (!m) return -1;
        s->msg = m;
        memcpy(s->msg + s->msg_n, payload, (size_t)len);
        s->msg_n += (size_t)len;
        if (fin) {
            if (s->msg_op == 1 && on_message(s, s->msg, s->msg_n, cb, user)) ret = 1;
            s->msg_n = 0;
        }
    }
    memmove(s->in, s->in + off, s->in_n - off);
    s->in_n -= off;
    return ret;
}

static void rasr_stream_close(void *st)
{
    rasr_stream *s = st;
    if (!s) return;
    if (s->fd >= 0) {
        if (!s->closed) send_frame(s, 8, "\x03\xe8", 2);
        close(s->fd);
    }
    free(s->in);
    free(s->msg);
    free(s->s16);
    free(s);
}

/* A connected socket to one of the addresses, or -1. */
static int dial(const struct addrinfo *a)
{
    int fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) return -1;
    /* a service that does not answer (a dead host, a full backlog) must not
     * hold a session forever: on Linux SO_SNDTIMEO bounds connect() too,
     * and every send after it */
    struct timeval tv = {RASR_IO_TIMEOUT_S, 0};
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (connect(fd, a->ai_addr, a->ai_addrlen) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* A fresh Sec-WebSocket-Key (16 random bytes, base64) and the accept value
 * the server must answer with: base64(SHA-1(key + the RFC's GUID)). */
static int ws_key(char *key, size_t key_cap, char *accept, size_t acc_cap)
{
    unsigned char raw[16], md[20];
    char cat[80];
    if (getrandom(raw, sizeof raw, 0) != (ssize_t)sizeof raw) return -1;
    if (lws_b64_encode_string((const char *)raw, (int)sizeof raw, key, (int)key_cap) < 0) return -1;
    int n = snprintf(cat, sizeof cat, "%s258EAFA5-E914-47DA-95CA-C5AB0DC85B11", key);
    lws_SHA1((const unsigned char *)cat, (size_t)n, md);
    return lws_b64_encode_string((const char *)md, (int)sizeof md, accept, (int)acc_cap) < 0 ? -1 : 0;
}

/* 1 if the response head [p, end) has header `name` (lower case) whose
 * value is exactly `value`. */
static int header_has(const unsigned char *p, const char *end, const char *name, const char *value)
{
    size_t nl = strlen(name), vl = strlen(value);
    for (const char *l = strstr((const char *)p, "\r\n"); l && l < end; l = strstr(l + 2, "\r\n")) {
        const char *h = l + 2;
        if (strncasecmp(h, name, nl) != 0 || h[nl] != ':') continue;
        const char *v = h + nl + 1;
        while (*v == ' ' || *v == '\t') v++;
        const char *ve = strstr(v, "\r\n");
        while (ve && ve > v && (ve[-1] == ' ' || ve[-1] == '\t')) ve--;
        return ve && (size_t)(ve - v) == vl && !memcmp(v, value, vl);
    }
    return 0;
}

/* The upgrade and the configuration on s->fd; 0, or -1 with err set:
 * AT_E_BUSY when the service refused with 503 (full, or draining: another
 * replica may take the stream), AT_E_ENGINE for another refusal (a wrong
 * key is not cured by retrying), AT_E_IO when it did not answer. */
static int handshake(remote_asr *r, rasr_stream *s, const at_asr_options *opt, at_err *err)
{
    char req[1536], key[32], accept[40];
    if (ws_key(key, sizeof key, accept, sizeof accept))
        return at_err_set(err, AT_E_IO, "asr_streaming: no entropy for the WebSocket key");
    char auth[340] = "";
    if (r->key[0]) snprintf(auth, sizeof auth, "Authorization: Bearer %s\r\n", r->key);
    int n = snprintf(req, sizeof req,
                     "GET %s/v1/stream HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                     "Sec-WebSocket-Version: 13\r\n%s\r\n",
                     r->path, r->host, r->port, key, auth);
    if (send_all(s->fd, req, (size_t)n))
        return at_err_set(err, AT_E_IO, "asr_streaming: cannot send the upgrade");
    /* The upgrade answer; any bytes after it are the first frames. */
    char *eoh = NULL;
    while (!eoh) {
        if (read_some(s, RASR_IO_TIMEOUT_S * 1000) <= 0 || s->in_n > 16384)
            return at_err_set(err, AT_E_IO, "asr_streaming did not answer the WebSocket upgrade");
        s->in[s->in_n] = '\0';
        eoh = strstr((char *)s->in, "\r\n\r\n");
    }
    if (strncmp((char *)s->in, "HTTP/1.1 101", 12) != 0)
        return at_err_set(err, strstr((char *)s->in, " 503 ") ? AT_E_BUSY : AT_E_ENGINE,
                          "asr_streaming refused the stream: %.60s", (char *)s->in);
    if (!header_has(s->in, eoh, "sec-websocket-accept", accept))
        return at_err_set(err, AT_E_IO,
                          "asr_streaming answered the upgrade without the right Sec-WebSocket-Accept");
    size_t hl = (size_t)(eoh + 4 - (char *)s->in);
    memmove(s->in, s->in + hl, s->in_n - hl);
    s->in_n -= hl;
    cJSON *cfg = cJSON_CreateObject();
    cJSON_AddStringToObject(cfg, "type", "config");
    if (opt && opt->language && *opt->language) cJSON_AddStringToObject(cfg, "language", opt->language);
    cJSON_AddNumberToObject(cfg, "sample_rate", AT_ASR_SAMPLE_RATE);
    cJSON_AddStringToObject(cfg, "encoding", "pcm16");
    char *text = cJSON_PrintUnformatted(cfg);
    cJSON_Delete(cfg);
    int sent = text && send_frame(s, 1, text, strlen(text)) == 0;
    free(text);
    return sent ? 0 : at_err_set(err, AT_E_IO, "asr_streaming: cannot send the configuration");
}

static int addr_cmp(const void *a, const void *b)
{
    const struct addrinfo *x = *(const struct addrinfo *const *)a, *y = *(const struct addrinfo *const *)b;
    if (x->ai_addrlen != y->ai_addrlen) return x->ai_addrlen < y->ai_addrlen ? -1 : 1;
    return memcmp(x->ai_addr, y->ai_addr, x->ai_addrlen);
}

/* The service's name may stand for several replicas (Docker Swarm's
 * dnsrr, a Kubernetes headless Service): streams start at successive
 * addresses, so sessions spread over the replicas, and one that cannot be
 * reached or refuses (503 while it drains) hands the stream to the next. */
static void *rasr_stream_open(void *impl, const at_asr_options *opt, at_err *err)
{
    remote_asr *r = impl;
    char ps[16];
    snprintf(ps, sizeof ps, "%d", r->port);
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_socktype = SOCK_STREAM;
    int rc = getaddrinfo(r->host, ps, &hints, &res);
    if (rc != 0) {
        at_err_set(err, AT_E_IO, "cannot resolve %s: %s", r->host, gai_strerror(rc));
        return NULL;
    }
    /* in a fixed order: DNS may answer in any order each time */
    const struct addrinfo *addrs[RASR_MAX_ADDRS];
    unsigned n = 0;
    for (const struct addrinfo *a = res; a && n < RASR_MAX_ADDRS; a = a->ai_next) addrs[n++] = a;
    if (n == 0) { /* a resolver that answers success with no address */
        freeaddrinfo(res);
        at_err_set(err, AT_E_IO, "cannot resolve %s: no address", r->host);
        return NULL;
    }
    qsort(addrs, n, sizeof addrs[0], addr_cmp);
    unsigned first = atomic_fetch_add(&r->next, 1u) % n;
    at_err_set(err, AT_E_IO, "cannot connect to asr_streaming at %s:%d", r->host, r->port);
    rasr_stream *s = NULL;
    for (unsigned i = 0; i < n && !s; i++) {
        int fd = dial(addrs[(first + i) % n]);
        if (fd < 0) continue;
        s = calloc(1, sizeof *s);
        if (!s) {
            close(fd);
            at_err_set(err, AT_E_NOMEM, "out of memory");
            break;
        }
        s->fd = fd;
        if (handshake(r, s, opt, err) != 0) {
            s->closed = 1; /* no close frame on a stream that never opened */
            rasr_stream_close(s);
            s = NULL;
        }
    }
    freeaddrinfo(res);
    return s;
}

static int check(rasr_stream *s, int stopped, at_err *err)
{
    if (stopped) return at_err_set(err, AT_E_CANCELLED, "cancelled");
    if (s->error[0]) return at_err_set(err, AT_E_ENGINE, "asr_streaming: %s", s->error);
    if (!s->closed || (s->done && s->ended)) return 0;
    /* Ended by the service before we did: it is shutting down (1001,
     * after flushing its finals) or was lost with the connection. */
    if (s->close_code == 1001 || s->close_code == 1012 || s->close_code == 1013)
        return at_err_set(err, AT_E_BUSY, "asr_streaming ended the stream (close %d: shutting down)",
                          s->close_code);
    if (s->close_code)
        return at_err_set(err, AT_E_IO, "asr_streaming closed the stream (close %d)", s->close_code);
    return at_err_set(err, AT_E_IO, "asr_streaming: connection lost");
}

static int rasr_feed(void *st, const float *pcm, size_t n, at_asr_event_cb cb, void *user, at_err *err)
{
    rasr_stream *s = st;
    int rc = check(s, 0, err);
    if (rc) return rc;
    int lost = 0;
    if (n == 0) goto events; /* nothing to send: only collect what arrived */
    if (n > s->s16_cap) {
        int16_t *b = realloc(s->s16, n * sizeof *b);
        if (!b) return at_err_set(err, AT_E_NOMEM, "out of memory");
        s->s16 = b;
        s->s16_cap = n;
    }
    at_audio_f32_to_s16(pcm, n, s->s16);
    /* A failed send still reads what arrived: a service that drains sends
     * its last finals and a close frame before it closes the socket.  A
     * backlog goes as several frames: asr_streaming takes messages of at
     * most 1 MiB (32 s), and a pipeline's backlog may be longer. */
    for (size_t off = 0; off < n && !lost; off += RASR_FRAME_SAMPLES) {
        size_t k = n - off < RASR_FRAME_SAMPLES ? n - off : RASR_FRAME_SAMPLES;
        lost = send_frame(s, 2, s->s16 + off, k * sizeof *s->s16) != 0;
    }
events:;
    /* Events that have arrived so far; never wait here. */
    int stopped = 0;
    while (!stopped && !s->closed && read_some(s, 0) > 0) {
        int p = parse_frames(s, cb, user);
        if (p < 0) return at_err_set(err, AT_E_IO, "asr_streaming: protocol error");
        stopped = p;
    }
    if (!stopped && s->in_n) {
        int p = parse_frames(s, cb, user);
        if (p < 0) return at_err_set(err, AT_E_IO, "asr_streaming: protocol error");
        stopped = p;
    }
    if (lost) s->closed = 1;
    return check(s, stopped, err);
}

static int rasr_finish(void *st, at_asr_event_cb cb, void *user, at_err *err)
{
    rasr_stream *s = st;
    int rc = check(s, 0, err);
    if (rc) return rc;
    s->ended = 1;
    if (send_frame(s, 1, "{\"type\":\"end\"}", 14)) {
        s->closed = 1;
        return at_err_set(err, AT_E_IO, "asr_streaming: connection lost");
    }
    time_t deadline = time(NULL) + 120;
    int stopped = 0;
    while (!stopped && !s->done && !s->closed && !s->error[0]) {
        int p = parse_frames(s, cb, user);
        if (p < 0) return at_err_set(err, AT_E_IO, "asr_streaming: protocol error");
        stopped = p;
        if (stopped || s->done || s->closed || s->error[0]) break;
        if (time(NULL) > deadline) return at_err_set(err, AT_E_IO, "asr_streaming did not finish the stream");
        if (read_some(s, 1000) < 0 && s->closed) break;
    }
    return check(s, stopped, err);
}

static void rasr_destroy(void *impl) { free(impl); }

static const char *const *rasr_langs(void *impl) { return ((remote_asr *)impl)->langs; }

static const at_asr_ops rasr_ops = {
    .name = "remote-asr",
    .destroy = rasr_destroy,
    .transcribe = NULL,
    .stream_open = rasr_stream_open,
    .stream_feed = rasr_feed,
    .stream_finish = rasr_finish,
    .stream_close = rasr_stream_close,
    .languages = rasr_langs,
};

at_asr_engine *at_asr_remote_new(const char *base_url, const char *api_key, at_err *err)
{
    remote_asr *r = calloc(1, sizeof *r);
    if (!r) {
        at_err_set(err, AT_E_NOMEM, "out of memory");
        return NULL;
    }
    if (at_url_parse(base_url, r->host, sizeof r->host, &r->port, r->path, sizeof r->path, err)) {
        free(r);
        return NULL;
    }
    snprintf(r->base, sizeof r->base, "http://%s:%d%s", r->host, r->port, r->path);
    snprintf(r->key, sizeof r->key, "%s", api_key ? api_key : "");
    /* Pipelines start at different replicas, so that together they spread
     * their streams too. */
    unsigned first = 0;
    if (getrandom(&first, sizeof first, 0) == (ssize_t)sizeof first) atomic_store(&r->next, first);
    /* Reachable?  And which languages: Whisper's when a model is loaded. */
    cJSON *o = at_remote_json(r->base, r->key, "/v1/models", NULL, 1u << 20, 10, err);
    if (!o) {
        free(r);
        return NULL;
    }
    r->langs = en_only;
    const cJSON *m;
    cJSON_ArrayForEach(m, cJSON_GetObjectItemCaseSensitive(o, "data"))
    {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(m, "id");
        if (cJSON_IsString(id) && strcmp(id->valuestring, "whisper") == 0) r->langs = whisper_langs;
    }
    cJSON_Delete(o);
    return at_asr_engine_new(&rasr_ops, r, err);
}
