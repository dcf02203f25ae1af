/* http.c - HTTP/1.1 + WebSocket server on libwebsockets.
 *
 * Threading model (see http.h): the lws loop thread owns every wsi.  Work
 * objects (at_http_req, at_ws) are shared with one worker/session thread
 * and reference counted (loop + thread).  Threads never touch a wsi: they
 * queue bytes under the object's mutex and call lws_cancel_service(); the
 * loop then, in LWS_CALLBACK_EVENT_WAIT_CANCELLED, asks for writable
 * callbacks on every object with something pending. */
#include "core/http.h"

#include "core/access.h"
#include "core/chunked.h"
#include "core/clock.h"
#include "core/multipart.h"
#include "core/strbuf.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <libwebsockets.h>
#include <pthread.h>
#include <stdatomic.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

/* What a queued message costs beyond its payload (its slot or header,
 * the allocation's own): counted toward ws_queue_limit both ways, so a
 * flood of empty WebSocket frames is throttled like a flood of full ones. */
#define MSG_COST          (64 + LWS_PRE)
#define MAX_LISTENERS     8
#define MAX_QUERY_ARGS    16
#define OUT_CHUNK         (32 * 1024)
#define MAX_EXTRA_HEADERS 12
/* a turn a millisecond: a worker gets 10 minutes to answer a client that
 * sent bytes after its body (see LWS_CALLBACK_HTTP_BODY_COMPLETION) */
#define COMPLETIONS_MAX   (600 * 1000)

typedef struct out_buf {
    struct out_buf *next;
    size_t len;
    int kind;             /* LWS_WRITE_HTTP / _TEXT / _BINARY */
    unsigned char data[]; /* LWS_PRE bytes of headroom, then payload */
} out_buf;

typedef struct out_queue {
    out_buf *head, *tail;
    size_t bytes;
} out_queue;

typedef struct listener {
    at_http_server *srv;
    char name[32];
    const at_http_route *routes;
    size_t n_routes;
    void *user;
    struct lws_vhost *vh;
    at_error_style errors;
} listener;

typedef struct kv {
    char *key, *val;
} kv;

struct at_http_req {
    at_http_server *srv;
    listener *ls;
    struct lws *wsi;          /* loop thread only; NULL once closed */
    struct at_http_req *next; /* loop's active list */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int refs;
    int closed;
    const at_http_route *route;
    char method[8];
    char path[256];
    char content_type[256];
    char accept[128];
    char authorization[300];
    char origin[256];
    char addr[64];   /* the client's address, for per-address limits */
    int key_pending; /* no key in the headers: LibreTranslate's api_key in the body decides */
    kv query[MAX_QUERY_ARGS];
    int n_query;
    unsigned char *body;
    size_t body_len, body_cap;
    long long content_length; /* -1 if absent */
    at_chunked *dechunk;      /* Transfer-Encoding: chunked body, decoded as it comes */
    int body_complete;        /* the whole body has arrived */
    int completions;          /* BODY_COMPLETION callbacks seen */
    int body_overflow;
    int slot;                      /* holds a max_inflight slot (an upload's from its headers) */
    struct timespec body_deadline; /* CLOCK_MONOTONIC: the whole body by then */
    int dispatched;                /* its handler was started (its answer frees the slot) */
    size_t reserved;               /* bytes counted in the server's buffered total */
    struct timespec t0;
    /* response */
    int resp_started, headers_sent, chunked, finished, close_after;
    int status;
    size_t content_len;
    char ctype[128];
    char extra[MAX_EXTRA_HEADERS][2][128];
    int n_extra;
    out_queue out;
};

struct at_ws {
    at_http_server *srv;
    listener *ls;
    const at_http_route *route;
    struct lws *wsi;
    struct at_ws *next;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int refs;
    int closed; /* peer gone or connection dropped */
    int handler_done;
    int throttled; /* rx flow control is off */
    char path[256];
    kv query[MAX_QUERY_ARGS];
    int n_query;
    /* incoming */
    at_ws_msg *inbox;
    size_t inbox_n, inbox_cap, inbox_head, inbox_bytes;
    unsigned char *frag;
    size_t frag_len;
    int frag_binary;
    int too_big;
    /* outgoing */
    out_queue out;
    int close_code;
    char close_reason[120];
};

typedef struct pss {
    at_http_req *req;
    at_ws *ws;
    int ws_reserved;
} pss;

struct at_http_server {
    struct lws_context *ctx;
    at_http_config cfg;
    struct lws_protocols protocols[2];
    listener *listeners[MAX_LISTENERS];
    int n_listeners;
    pthread_mutex_t mu; /* inflight, ws_sessions, ctx for wakeups */
    pthread_cond_t idle_cv;
    int inflight, ws_sessions;
    size_t buffered; /* request body bytes reserved, under mu */
    int ws_threads;  /* session threads still running */
    int req_threads; /* request workers still running */
    volatile sig_atomic_t stop_flag;
    atomic_int draining; /* read by worker and session threads */
    at_http_req *reqs;   /* loop thread only */
    at_ws *wss;          /* loop thread only */
    at_metric *m_requests, *m_latency, *m_inflight, *m_ws, *m_rejected;
};

/* ------------------------------------------------------------------ */

static double elapsed_s(const struct timespec *t0)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)(t.tv_sec - t0->tv_sec) + (double)(t.tv_nsec - t0->tv_nsec) / 1e9;
}

static void wake_loop(at_http_server *s)
{
    pthread_mutex_lock(&s->mu);
    if (s->ctx) lws_cancel_service(s->ctx);
    pthread_mutex_unlock(&s->mu);
}

static out_buf *out_buf_new(const void *data, size_t len, int kind)
{
    out_buf *b = malloc(sizeof *b + LWS_PRE + len + 1);
    if (!b) return NULL;
    b->next = NULL;
    b->len = len;
    b->kind = kind;
    if (len) memcpy(b->data + LWS_PRE, data, len);
    return b;
}

static void outq_push(out_queue *q, out_buf *b)
{
    if (q->tail)
        q->tail->next = b;
    else
        q->head = b;
    q->tail = b;
    q->bytes += b->len + MSG_COST;
}

static out_buf *outq_pop(out_queue *q)
{
    out_buf *b = q->head;
    if (!b) return NULL;
    q->head = b->next;
    if (!q->head) q->tail = NULL;
    q->bytes -= b->len + MSG_COST;
    return b;
}

static void outq_clear(out_queue *q)
{
    out_buf *b;
    while ((b = outq_pop(q))) free(b);
}

static void kv_free(kv *q, int n)
{
    for (int i = 0; i < n; i++) {
        free(q[i].key);
        free(q[i].val);
    }
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* In-place URL decoding ('+' is a space in query strings). */
static void url_decode(char *s)
{
    char *o = s;
    for (; *s; s++) {
        if (*s == '+')
            *o++ = ' ';
        else if (*s == '%' && hexval(s[1]) >= 0 && hexval(s[2]) >= 0) {
            *o++ = (char)(hexval(s[1]) * 16 + hexval(s[2]));
            s += 2;
        } else
            *o++ = *s;
    }
    *o = '\0';
}

/* lws already splits the query at '&' into fragments and url-decodes
 * them; we only split name=value. */
static int read_query(struct lws *wsi, kv *q)
{
    char buf[1024];
    int n = 0;
    for (int i = 0; n < MAX_QUERY_ARGS; i++) {
        int len = lws_hdr_copy_fragment(wsi, buf, sizeof buf, WSI_TOKEN_HTTP_URI_ARGS, i);
        if (len < 0) break;
        char *eq = strchr(buf, '=');
        if (eq) *eq = '\0';
        q[n].key = strdup(buf);
        q[n].val = strdup(eq ? eq + 1 : "");
        if (!q[n].key || !q[n].val) {
            free(q[n].key);
            free(q[n].val);
            break;
        }
        url_decode(q[n].val);
        n++;
    }
    return n;
}

static const char *kv_get(const kv *q, int n, const char *name)
{
    for (int i = 0; i < n; i++)
        if (strcmp(q[i].key, name) == 0) return q[i].val;
    return NULL;
}

/* ------------------------------------------------------------------ */
/* requests */

static void req_unref(at_http_req *r)
{
    pthread_mutex_lock(&r->mu);
    int left = --r->refs;
    pthread_mutex_unlock(&r->mu);
    if (left) return;
    outq_clear(&r->out);
    kv_free(r->query, r->n_query);
    free(r->body);
    at_chunked_free(r->dechunk);
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->cv);
    free(r);
}

const char *at_http_req_method(const at_http_req *r) { return r->method; }
const char *at_http_req_path(const at_http_req *r) { return r->path; }
const char *at_http_req_query(const at_http_req *r, const char *name)
{
    return kv_get(r->query, r->n_query, name);
}

const char *at_http_req_header(const at_http_req *r, const char *name)
{
    if (strcmp(name, "content-type") == 0) return r->content_type[0] ? r->content_type : NULL;
    if (strcmp(name, "accept") == 0) return r->accept[0] ? r->accept : NULL;
    if (strcmp(name, "authorization") == 0) return r->authorization[0] ? r->authorization : NULL;
    if (strcmp(name, "origin") == 0) return r->origin[0] ? r->origin : NULL;
    return NULL;
}

const unsigned char *at_http_req_body(const at_http_req *r, size_t *len)
{
    *len = r->body_len;
    return r->body ? r->body : (const unsigned char *)"";
}

int at_http_req_cancelled(at_http_req *r)
{
    pthread_mutex_lock(&r->mu);
    int c = r->closed;
    pthread_mutex_unlock(&r->mu);
    return c;
}

int at_http_req_draining(const at_http_req *r) { return atomic_load(&r->srv->draining); }

int at_http_add_header(at_http_req *r, const char *name, const char *value)
{
    int rc = 0;
    pthread_mutex_lock(&r->mu);
    if (r->resp_started || r->n_extra >= MAX_EXTRA_HEADERS || strlen(name) >= 120 || strlen(value) >= 128)
        rc = AT_E_INVALID;
    else {
        /* lws wants the name with its colon */
        snprintf(r->extra[r->n_extra][0], 128, "%s:", name);
        snprintf(r->extra[r->n_extra][1], 128, "%s", value);
        r->n_extra++;
    }
    pthread_mutex_unlock(&r->mu);
    return rc;
}

/* A dispatched request gives back its max_inflight slot and its body's
 * bytes as its answer is completed, before the loop can send the answer's
 * end: a client that sends its next request as soon as it has read an
 * answer finds the slot free again.  Called with r->mu held (the lock
 * order is r->mu, then s->mu). */
static void release_answered(at_http_req *r)
{
    at_http_server *s = r->srv;
    pthread_mutex_lock(&s->mu);
    if (r->dispatched && r->slot) {
        s->buffered -= r->reserved;
        r->reserved = 0;
        r->slot = 0;
        s->inflight--;
        if (s->m_inflight) at_metric_add(s->m_inflight, r->ls->name, -1);
        pthread_cond_broadcast(&s->idle_cv);
    }
    pthread_mutex_unlock(&s->mu);
}

static int respond_locked_start(at_http_req *r, int status, const char *ctype)
{
    if (r->resp_started) return AT_E_INVALID;
    r->resp_started = 1;
    r->status = status;
    snprintf(r->ctype, sizeof r->ctype, "%s", ctype ? ctype : "application/octet-stream");
    return 0;
}

int at_http_respond(at_http_req *r, int status, const char *content_type, const void *body, size_t len)
{
    pthread_mutex_lock(&r->mu);
    int rc = respond_locked_start(r, status, content_type);
    if (rc == 0) {
        r->content_len = len;
        const unsigned char *p = body;
        for (size_t off = 0; off < len; off += OUT_CHUNK) {
            size_t n = len - off < OUT_CHUNK ? len - off : OUT_CHUNK;
            out_buf *b = out_buf_new(p + off, n, LWS_WRITE_HTTP);
            if (!b) {
                /* Nothing sensible can go out: drop the connection. */
                r->close_after = 1;
                outq_clear(&r->out);
                r->content_len = 0;
                rc = AT_E_NOMEM;
                break;
            }
            outq_push(&r->out, b);
        }
        release_answered(r);
        r->finished = 1;
    }
    pthread_mutex_unlock(&r->mu);
    wake_loop(r->srv);
    return rc;
}

int at_json_text_has_nul(const char *s, size_t n)
{
    if (memchr(s, 0, n)) return 1;
    /* \u0000 escapes: a backslash that starts an escape (not one escaped
     * by the backslash before it) followed by u0000 */
    for (size_t i = 0; i + 1 < n; i++) {
        if (s[i] != '\\') continue;
        if (s[i + 1] == 'u' && i + 5 < n && !memcmp(s + i + 2, "0000", 4)) return 1;
        i++; /* skip the escaped character */
    }
    return 0;
}

char *at_json_print(const cJSON *obj)
{
    char *s = cJSON_PrintUnformatted(obj);
    if (!s) return NULL;
    /* strings may carry a client's bytes (a voice or language name):
     * invalid UTF-8 becomes U+FFFD, so the document stays valid JSON */
    size_t n = strlen(s);
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        size_t k = at_utf8_len(u + i, n - i);
        if (!k) {
            at_strbuf b = {0};
            at_strbuf_utf8(&b, s, n);
            free(s);
            return at_strbuf_take(&b);
        }
        i += k;
    }
    return s;
}

int at_http_respond_json(at_http_req *r, int status, const cJSON *obj)
{
    char *s = at_json_print(obj);
    if (!s)
        return at_http_respond(r, 500, "application/json", "{\"error\":{\"message\":\"out of memory\"}}", 37);
    int rc = at_http_respond(r, status, "application/json", s, strlen(s));
    free(s);
    return rc;
}

/* An error document in the given style (see at_http_error). */
static cJSON *error_json(at_error_style style, const char *type, const char *code, const char *param,
                         const char *msg)
{
    cJSON *o = cJSON_CreateObject();
    if (style == AT_ERRORS_PLAIN) {
        cJSON_AddStringToObject(o, "error", msg);
        return o;
    }
    cJSON *e = cJSON_AddObjectToObject(o, "error");
    cJSON_AddStringToObject(e, "message", msg);
    cJSON_AddStringToObject(e, "type", type ? type : "invalid_request_error");
    if (param)
        cJSON_AddStringToObject(e, "param", param);
    else
        cJSON_AddNullToObject(e, "param");
    if (code)
        cJSON_AddStringToObject(e, "code", code);
    else
        cJSON_AddNullToObject(e, "code");
    return o;
}

static int send_error(at_http_req *r, int status, const char *type, const char *code, const char *param,
                      const char *fmt, va_list ap)
{
    char msg[1024];
    vsnprintf(msg, sizeof msg, fmt, ap);
    cJSON *o = error_json(r->ls ? r->ls->errors : AT_ERRORS_OPENAI, type, code, param, msg);
    int rc = at_http_respond_json(r, status, o);
    cJSON_Delete(o);
    return rc;
}

int at_http_error(at_http_req *r, int status, const char *type, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = send_error(r, status, type, NULL, NULL, fmt, ap);
    va_end(ap);
    return rc;
}

int at_http_error_coded(at_http_req *r, int status, const char *type, const char *code, const char *param,
                        const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = send_error(r, status, type, code, param, fmt, ap);
    va_end(ap);
    return rc;
}

void at_http_server_set_errors(at_http_server *s, const char *name, at_error_style style)
{
    for (int i = 0; i < s->n_listeners; i++)
        if (strcmp(s->listeners[i]->name, name) == 0) s->listeners[i]->errors = style;
}

int at_http_error_from(at_http_req *r, const at_err *err)
{
    int status = 500;
    const char *type = "server_error";
    switch (err->code) {
    case AT_E_INVALID:
        status = 400;
        type = "invalid_request_error";
        break;
    case AT_E_UNSUPPORTED:
        status = 400;
        type = "invalid_request_error";
        break;
    case AT_E_CORRUPT:
        status = 400;
        type = "invalid_request_error";
        break;
    case AT_E_TOO_LARGE:
        status = 413;
        type = "invalid_request_error";
        break;
    case AT_E_BUSY:
        status = 503;
        type = "overloaded_error";
        at_http_add_header(r, "retry-after", "5");
        break;
    case AT_E_CANCELLED: /* nobody reads it; the access log shows nginx's 499 */
        status = 499;
        type = "client_closed_request";
        break;
    default: break;
    }
    return at_http_error(r, status, type, "%s", err->msg[0] ? err->msg : at_status_name(err->code));
}

int at_http_stream_begin(at_http_req *r, int status, const char *content_type)
{
    pthread_mutex_lock(&r->mu);
    int rc = respond_locked_start(r, status, content_type);
    if (rc == 0) r->chunked = 1;
    pthread_mutex_unlock(&r->mu);
    wake_loop(r->srv);
    return rc;
}

/* Queues one chunk in HTTP/1.1 chunked framing ("<hex>\r\n<data>\r\n"). */
static int queue_chunk(at_http_req *r, const void *data, size_t len)
{
    char head[24];
    int hl = snprintf(head, sizeof head, "%zx\r\n", len);
    out_buf *b = malloc(sizeof *b + LWS_PRE + (size_t)hl + len + 2);
    if (!b) return AT_E_NOMEM;
    b->next = NULL;
    b->kind = LWS_WRITE_HTTP;
    unsigned char *p = b->data + LWS_PRE;
    memcpy(p, head, (size_t)hl);
    if (len) memcpy(p + hl, data, len);
    memcpy(p + hl + len, "\r\n", 2);
    b->len = (size_t)hl + len + 2;
    outq_push(&r->out, b);
    return 0;
}

int at_http_stream_write(at_http_req *r, const void *data, size_t len)
{
    if (len == 0) return 0; /* a zero-length chunk would end the body */
    const unsigned char *p = data;
    pthread_mutex_lock(&r->mu);
    int rc = 0;
    for (size_t off = 0; off < len && rc == 0;) {
        /* Backpressure: wait for the loop to drain, bounded by the idle
         * timeout so a client that stopped reading cannot pin a worker. */
        struct timespec dl;
        at_deadline_ms(&dl, r->srv->cfg.idle_timeout_s * 1000L);
        while (!r->closed && r->out.bytes > r->srv->cfg.ws_queue_limit) {
            if (pthread_cond_timedwait(&r->cv, &r->mu, &dl) != 0) {
                r->closed = 1; /* treat as gone; the loop will drop it */
                r->close_after = 1;
            }
        }
        if (r->closed) {
            rc = AT_E_CANCELLED;
            break;
        }
        size_t n = len - off < OUT_CHUNK ? len - off : OUT_CHUNK;
        rc = queue_chunk(r, p + off, n);
        off += n;
    }
    pthread_mutex_unlock(&r->mu);
    wake_loop(r->srv);
    return rc;
}

int at_http_sse_event(at_http_req *r, const cJSON *event)
{
    char *json = at_json_print(event);
    if (!json) return AT_E_NOMEM;
    size_t n = strlen(json);
    char *line = malloc(n + 9);
    if (!line) {
        free(json);
        return AT_E_NOMEM;
    }
    memcpy(line, "data: ", 6);
    memcpy(line + 6, json, n);
    memcpy(line + 6 + n, "\n\n", 2);
    free(json);
    int rc = at_http_stream_write(r, line, n + 8);
    free(line);
    return rc;
}

int at_http_stream_end(at_http_req *r)
{
    pthread_mutex_lock(&r->mu);
    int rc = r->closed ? AT_E_CANCELLED : 0;
    out_buf *b = out_buf_new("0\r\n\r\n", 5, LWS_WRITE_HTTP);
    if (b)
        outq_push(&r->out, b);
    else
        r->close_after = 1;
    release_answered(r);
    r->finished = 1;
    pthread_mutex_unlock(&r->mu);
    wake_loop(r->srv);
    return rc;
}

static void count_request(at_http_req *r)
{
    at_http_server *s = r->srv;
    char labels[400];
    const char *path = r->route ? r->route->path : "unmatched";
    snprintf(labels, sizeof labels, "%s,%s,%s,%d", r->ls->name, r->method, path, r->status);
    if (s->m_requests) at_metric_inc(s->m_requests, labels, 1);
    snprintf(labels, sizeof labels, "%s,%s", r->ls->name, path);
    double dt = elapsed_s(&r->t0);
    if (s->m_latency) at_metric_observe(s->m_latency, labels, dt);
    char st[8], ms[32];
    snprintf(st, sizeof st, "%d", r->status);
    snprintf(ms, sizeof ms, "%.1f", dt * 1000);
    at_log_write(s->cfg.log, r->status >= 500 ? AT_LOG_WARN : AT_LOG_INFO, "request", "service", r->ls->name,
                 "method", r->method, "path", r->path, "status", st, "ms", ms, NULL);
}

/* ---- access control (core/access.h) ---- */

static void refuse_key(at_http_req *r, const char *key)
{
    r->close_after = 1;
    if (key)
        at_http_error_coded(r, 401, "invalid_request_error", "invalid_api_key", NULL,
                            "invalid API key; ask the operator of this service for one");
    else
        at_http_error_coded(r, 401, "invalid_request_error", "missing_api_key", NULL,
                            "this service needs an API key: send \"Authorization: Bearer KEY\"%s",
                            r->ls->errors == AT_ERRORS_PLAIN ? " or \"api_key\" in the request" : "");
}

static void refuse_rate(at_http_req *r, int wait, const char *which)
{
    char v[16];
    snprintf(v, sizeof v, "%d", wait);
    at_http_add_header(r, "retry-after", v);
    if (r->srv->m_rejected) at_metric_inc(r->srv->m_rejected, r->ls->name, 1);
    at_http_error_coded(r, 429, "rate_limit_error", "rate_limit_exceeded", NULL,
                        "too many requests from this %s; retry in %d s", which, wait);
}

/* The key a request carries in its headers or query, or NULL. */
static const char *header_key(const char *authorization, const char *query_key)
{
    const char *k = at_access_bearer(authorization);
    return k ? k : query_key;
}

/* Loop thread, at the headers: 0 to go on (perhaps with key_pending set),
 * 1 when an error has been queued. */
static int gate(at_http_req *r)
{
    at_access *a = r->srv->cfg.access;
    if (!a) return 0;
    const char *key = header_key(r->authorization, kv_get(r->query, r->n_query, "api_key"));
    int guarded = at_access_path_guarded(a, r->path) && !(r->route->mode & AT_ROUTE_OPEN);
    if (guarded && key && !at_access_key_valid(a, key)) {
        refuse_key(r, key);
        return 1;
    }
    if (guarded && !key) {
        /* LibreTranslate's clients put api_key in the body: decided once
         * it has arrived; other APIs are refused before their upload */
        int has_body = strcmp(r->method, "POST") == 0 || strcmp(r->method, "PUT") == 0;
        if (r->ls->errors != AT_ERRORS_PLAIN || !has_body || (r->route->mode & AT_ROUTE_INLINE)) {
            refuse_key(r, NULL);
            return 1;
        }
        r->key_pending = 1;
    }
    if (!guarded && (strcmp(r->path, "/health") == 0 || strcmp(r->path, "/ready") == 0)) return 0;
    const char *which = "address";
    int wait = at_access_take(a, r->key_pending ? NULL : (guarded ? key : NULL), r->addr, &which);
    if (wait > 0) {
        refuse_rate(r, wait, which);
        return 1;
    }
    return 0;
}

/* api_key from a JSON, form-urlencoded or multipart body, into buf. */
static int body_api_key(at_http_req *r, char *buf, size_t cap)
{
    buf[0] = '\0';
    if (!r->body_len) return 0;
    if (strncasecmp(r->content_type, "application/x-www-form-urlencoded", 33) == 0) {
        const char *p = (const char *)r->body;
        while (p && *p) {
            if (strncmp(p, "api_key=", 8) == 0) {
                size_t n = strcspn(p + 8, "&");
                if (n >= cap) return 0;
                memcpy(buf, p + 8, n);
                buf[n] = '\0';
                url_decode(buf);
                return buf[0] != '\0';
            }
            p = strchr(p, '&');
            if (p) p++;
        }
        return 0;
    }
    if (strncasecmp(r->content_type, "multipart/form-data", 19) == 0) {
        at_form *f = malloc(sizeof *f);
        at_err err;
        int ok = f && at_multipart_parse(r->content_type, r->body, r->body_len, f, &err) == 0 &&
                 at_form_text(f, "api_key", buf, cap, &err) == 1;
        free(f);
        return ok;
    }
    cJSON *o = cJSON_ParseWithLength((const char *)r->body, r->body_len);
    const cJSON *k = cJSON_GetObjectItemCaseSensitive(o, "api_key");
    int ok = cJSON_IsString(k) && strlen(k->valuestring) < cap;
    if (ok) snprintf(buf, cap, "%s", k->valuestring);
    cJSON_Delete(o);
    return ok;
}

/* Worker thread: a request whose key is in its body.  1 to go on. */
static int gate_body_key(at_http_req *r)
{
    char key[300];
    if (!body_api_key(r, key, sizeof key)) {
        refuse_key(r, NULL);
        return 0;
    }
    if (!at_access_key_valid(r->srv->cfg.access, key)) {
        refuse_key(r, key);
        return 0;
    }
    const char *which = "key";
    int wait = at_access_take(r->srv->cfg.access, key, NULL, &which);
    if (wait > 0) {
        refuse_rate(r, wait, which);
        return 0;
    }
    return 1;
}

/* CORS: the allowed origin's headers on every answer to it. */
static void add_cors(at_http_req *r)
{
    const char *allow = at_access_cors(r->srv->cfg.access, r->origin);
    if (!allow) return;
    at_http_add_header(r, "access-control-allow-origin", allow);
    if (strcmp(allow, "*") != 0) at_http_add_header(r, "vary", "Origin");
    at_http_add_header(r, "access-control-expose-headers", "Retry-After, X-Sample-Rate");
}

/* The end of a request's worker, or of one that could not start: the
 * server is freed only once no worker runs. */
static void worker_done(at_http_req *r)
{
    at_http_server *s = r->srv;
    req_unref(r);
    pthread_mutex_lock(&s->mu);
    s->req_threads--;
    pthread_cond_broadcast(&s->idle_cv);
    if (s->ctx) lws_cancel_service(s->ctx);
    pthread_mutex_unlock(&s->mu);
}

/* The largest body a request's route takes. */
static size_t body_limit_of(const at_http_req *r)
{
    size_t lim = r->srv->cfg.body_limit, own = r->route ? r->route->max_body : 0;
    return own && own < lim ? own : lim;
}

static void *req_thread(void *arg)
{
    at_http_req *r = arg;
    if (!r->key_pending || gate_body_key(r)) r->route->handler(r, r->ls->user);
    pthread_mutex_lock(&r->mu);
    int answered = r->resp_started;
    pthread_mutex_unlock(&r->mu);
    if (!answered) at_http_error(r, 500, "server_error", "handler produced no response");
    pthread_mutex_lock(&r->mu);
    if (r->resp_started && !r->finished) { /* a stream left open: end it */
        pthread_mutex_unlock(&r->mu);
        at_http_stream_end(r);
    } else
        pthread_mutex_unlock(&r->mu);

    worker_done(r);
    return NULL;
}

/* Takes a max_inflight slot for a request whose body is about to be
 * buffered, and reserves `bytes` of the buffered total; 0 when either
 * limit is reached (the caller answers 503). */
static int admit_upload(at_http_req *r, size_t bytes)
{
    at_http_server *s = r->srv;
    pthread_mutex_lock(&s->mu);
    int ok = s->inflight < s->cfg.max_inflight && s->buffered + bytes <= s->cfg.max_buffered;
    if (ok) {
        s->inflight++;
        if (s->m_inflight) at_metric_add(s->m_inflight, r->ls->name, 1);
        s->buffered += bytes;
        r->reserved += bytes;
        r->slot = 1;
    }
    pthread_mutex_unlock(&s->mu);
    return ok;
}

/* More of the buffered total for a body that outgrew its reservation
 * (no Content-Length). */
static int reserve_more(at_http_req *r, size_t bytes)
{
    at_http_server *s = r->srv;
    pthread_mutex_lock(&s->mu);
    int ok = s->buffered + bytes <= s->cfg.max_buffered;
    if (ok) {
        s->buffered += bytes;
        r->reserved += bytes;
    }
    pthread_mutex_unlock(&s->mu);
    return ok;
}

static void release_slot(at_http_req *r)
{
    at_http_server *s = r->srv;
    pthread_mutex_lock(&s->mu);
    if (!r->dispatched) { /* a dispatched one's answer releases them */
        s->buffered -= r->reserved;
        r->reserved = 0;
    }
    if (r->slot && !r->dispatched) {
        r->slot = 0;
        s->inflight--;
        if (s->m_inflight) at_metric_add(s->m_inflight, r->ls->name, -1);
        pthread_cond_broadcast(&s->idle_cv);
    }
    pthread_mutex_unlock(&s->mu);
}

static void refuse_busy(at_http_req *r, const char *why)
{
    at_http_server *s = r->srv;
    if (s->m_rejected) at_metric_inc(s->m_rejected, r->ls->name, 1);
    r->close_after = 1; /* its body is not read */
    at_http_add_header(r, "retry-after", "5");
    at_http_error(r, 503, "overloaded_error", "%s; retry later", why);
}

/* Loop thread: the request is complete; run its handler. */
static void dispatch(at_http_req *r)
{
    at_http_server *s = r->srv;
    if ((r->route->mode & AT_ROUTE_INLINE)) {
        r->route->handler(r, r->ls->user);
        if (!r->resp_started) at_http_error(r, 500, "server_error", "no response");
        return;
    }
    pthread_mutex_lock(&s->mu);
    int ok = r->slot || (s->inflight < s->cfg.max_inflight && !atomic_load(&s->draining));
    if (ok && !r->slot) {
        s->inflight++;
        if (s->m_inflight) at_metric_add(s->m_inflight, r->ls->name, 1);
    }
    r->slot = ok;
    r->dispatched = ok;
    if (ok) s->req_threads++;
    pthread_mutex_unlock(&s->mu);
    if (!ok) {
        if (s->m_rejected) at_metric_inc(s->m_rejected, r->ls->name, 1);
        at_http_add_header(r, "retry-after", "5");
        at_http_error(r, 503, "overloaded_error",
                      atomic_load(&s->draining) ? "server is shutting down"
                                                : "too many requests in flight (limit %d); retry later",
                      s->cfg.max_inflight);
        return;
    }
    pthread_mutex_lock(&r->mu);
    r->refs++;
    pthread_mutex_unlock(&r->mu);
    pthread_t th;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&th, &attr, req_thread, r) != 0) {
        at_http_add_header(r, "retry-after", "5");
        at_http_error(r, 503, "overloaded_error", "cannot start a worker thread; retry later");
        worker_done(r);
    }
    pthread_attr_destroy(&attr);
}

static const at_http_route *find_route(listener *ls, const char *method, const char *path, int ws,
                                       int *path_known)
{
    *path_known = 0;
    for (size_t i = 0; i < ls->n_routes; i++) {
        const at_http_route *rt = &ls->routes[i];
        if (strcmp(rt->path, path) != 0) continue;
        if (ws) {
            if (rt->ws_handler) return rt;
            continue;
        }
        if (!rt->handler) continue;
        *path_known = 1;
        if (strcmp(rt->method, method) == 0) return rt;
        if (strcmp(method, "HEAD") == 0 && strcmp(rt->method, "GET") == 0) return rt;
    }
    return NULL;
}

static at_http_req *req_new(at_http_server *s, listener *ls, struct lws *wsi)
{
    at_http_req *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->srv = s;
    r->ls = ls;
    r->wsi = wsi;
    r->refs = 1;
    r->content_length = -1;
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    clock_gettime(CLOCK_MONOTONIC, &r->t0);
    r->next = s->reqs;
    s->reqs = r;
    return r;
}

static void list_remove_req(at_http_server *s, at_http_req *r)
{
    for (at_http_req **p = &s->reqs; *p; p = &(*p)->next)
        if (*p == r) {
            *p = r->next;
            return;
        }
}

static void list_remove_ws(at_http_server *s, at_ws *w)
{
    for (at_ws **p = &s->wss; *p; p = &(*p)->next)
        if (*p == w) {
            *p = w->next;
            return;
        }
}

/* Loop thread: the connection of r is gone or r is complete. */
static void release_slot(at_http_req *r);

static void req_detach(at_http_req *r)
{
    pthread_mutex_lock(&r->mu);
    r->closed = 1;
    r->wsi = NULL;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    release_slot(r); /* an upload that never reached its handler */
    list_remove_req(r->srv, r);
    req_unref(r);
}

static int method_of(struct lws *wsi, char *out, size_t cap)
{
    static const struct {
        enum lws_token_indexes tok;
        const char *name;
    } m[] = {
        {WSI_TOKEN_GET_URI, "GET"},   {WSI_TOKEN_POST_URI, "POST"},     {WSI_TOKEN_OPTIONS_URI, "OPTIONS"},
        {WSI_TOKEN_PUT_URI, "PUT"},   {WSI_TOKEN_DELETE_URI, "DELETE"}, {WSI_TOKEN_PATCH_URI, "PATCH"},
        {WSI_TOKEN_HEAD_URI, "HEAD"},
    };
    for (size_t i = 0; i < sizeof m / sizeof m[0]; i++)
        if (lws_hdr_total_length(wsi, m[i].tok) > 0) {
            snprintf(out, cap, "%s", m[i].name);
            return 0;
        }
    return -1;
}

/* A connection closed with output it could not deliver (a client that
 * stopped reading) is reset: the kernel then drops what is queued at once,
 * and the client learns, instead of the bytes and the FIN waiting, orphaned,
 * behind a zero window for minutes. */
static void reset_if_stuck(struct lws *wsi, int queued)
{
    if (!queued && !lws_partial_buffered(wsi)) return;
    struct linger l = {1, 0};
    setsockopt(lws_get_socket_fd(wsi), SOL_SOCKET, SO_LINGER, &l, sizeof l);
}

/* Loop thread: a writable callback for an HTTP transaction. */
static int req_writable(struct lws *wsi, pss *p)
{
    at_http_req *r = p->req;
    if (!r) return 0;
    pthread_mutex_lock(&r->mu);
    if (!r->resp_started) {
        pthread_mutex_unlock(&r->mu);
        if (r->dechunk && r->body_complete) lws_set_timeout(wsi, NO_PENDING_TIMEOUT, 0);
        return 0;
    }
    if (!r->headers_sent) {
        unsigned char buf[LWS_PRE + 2048], *start = buf + LWS_PRE, *pp = start, *end = buf + sizeof buf - 1;
        int bad = lws_add_http_header_status(wsi, (unsigned)r->status, &pp, end) ||
                  lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_CONTENT_TYPE, (unsigned char *)r->ctype,
                                               (int)strlen(r->ctype), &pp, end);
        if (!bad && r->chunked)
            bad = lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_TRANSFER_ENCODING,
                                               (unsigned char *)"chunked", 7, &pp, end);
        else if (!bad)
            bad = lws_add_http_header_content_length(wsi, r->content_len, &pp, end);
        for (int i = 0; !bad && i < r->n_extra; i++)
            bad = lws_add_http_header_by_name(wsi, (unsigned char *)r->extra[i][0],
                                              (unsigned char *)r->extra[i][1], (int)strlen(r->extra[i][1]),
                                              &pp, end);
        if (!bad && r->close_after)
            bad = lws_add_http_header_by_token(wsi, WSI_TOKEN_CONNECTION, (unsigned char *)"close", 5, &pp,
                                               end);
        if (!bad) bad = lws_finalize_write_http_header(wsi, start, &pp, end);
        r->headers_sent = 1;
        int more = r->out.head != NULL || r->finished;
        pthread_mutex_unlock(&r->mu);
        if (bad) return -1;
        if (strcmp(r->method, "HEAD") == 0) {
            pthread_mutex_lock(&r->mu);
            outq_clear(&r->out);
            r->chunked = 0;
            pthread_mutex_unlock(&r->mu);
        }
        if (more) lws_callback_on_writable(wsi);
        return 0;
    }
    out_buf *b = outq_pop(&r->out);
    int more = r->out.head != NULL;
    int done = !b && r->finished;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    if (b) {
        int n = lws_write(wsi, b->data + LWS_PRE, b->len, LWS_WRITE_HTTP);
        free(b);
        if (n < 0) return -1;
        /* The next writable callback comes once the socket has taken
         * this: a client that stops reading never lets it come, and is
         * dropped when this runs out (its queued output with it). */
        lws_set_timeout(wsi, PENDING_TIMEOUT_USER_OK, (int)r->srv->cfg.idle_timeout_s);
        lws_callback_on_writable(wsi);
        (void)more;
        return 0;
    }
    /* Nothing to send: the handler is working, which takes what it takes. */
    lws_set_timeout(wsi, NO_PENDING_TIMEOUT, 0);
    if (!done) return 0;
    count_request(r);
    int close_after = r->close_after;
    p->req = NULL;
    req_detach(r);
    if (close_after) return -1;
    return lws_http_transaction_completed(wsi) ? -1 : 0;
}

/* ------------------------------------------------------------------ */
/* WebSocket sessions */

static void ws_unref(at_ws *w)
{
    pthread_mutex_lock(&w->mu);
    int left = --w->refs;
    pthread_mutex_unlock(&w->mu);
    if (left) return;
    for (size_t i = 0; i < w->inbox_n; i++) free(w->inbox[(w->inbox_head + i) % w->inbox_cap].data);
    free(w->inbox);
    free(w->frag);
    outq_clear(&w->out);
    kv_free(w->query, w->n_query);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
    free(w);
}

static void release_ws_slot(at_http_server *s, listener *ls)
{
    pthread_mutex_lock(&s->mu);
    s->ws_sessions--;
    if (s->m_ws) at_metric_add(s->m_ws, ls->name, -1);
    pthread_cond_broadcast(&s->idle_cv);
    pthread_mutex_unlock(&s->mu);
}

static void *ws_thread(void *arg)
{
    at_ws *w = arg;
    w->route->ws_handler(w, w->ls->user);
    pthread_mutex_lock(&w->mu);
    w->handler_done = 1;
    pthread_mutex_unlock(&w->mu);
    at_http_server *s = w->srv;
    ws_unref(w);
    pthread_mutex_lock(&s->mu);
    s->ws_threads--;
    pthread_cond_broadcast(&s->idle_cv);
    if (s->ctx) lws_cancel_service(s->ctx);
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

static int inbox_push(at_ws *w, at_ws_msg m)
{
    if (w->inbox_n == w->inbox_cap) {
        size_t cap = w->inbox_cap ? w->inbox_cap * 2 : 16;
        at_ws_msg *n = malloc(cap * sizeof *n);
        if (!n) return -1;
        for (size_t i = 0; i < w->inbox_n; i++) n[i] = w->inbox[(w->inbox_head + i) % w->inbox_cap];
        free(w->inbox);
        w->inbox = n;
        w->inbox_cap = cap;
        w->inbox_head = 0;
    }
    w->inbox[(w->inbox_head + w->inbox_n) % w->inbox_cap] = m;
    w->inbox_n++;
    w->inbox_bytes += m.len + MSG_COST;
    return 0;
}

int at_ws_recv(at_ws *w, at_ws_msg *msg, int timeout_ms)
{
    struct timespec dl;
    at_deadline_ms(&dl, timeout_ms >= 0 ? timeout_ms : 0);
    pthread_mutex_lock(&w->mu);
    int rc = 0;
    while (w->inbox_n == 0 && !w->closed && !atomic_load(&w->srv->draining)) {
        if (timeout_ms < 0)
            pthread_cond_wait(&w->cv, &w->mu);
        else if (pthread_cond_timedwait(&w->cv, &w->mu, &dl) != 0)
            break;
    }
    if (w->inbox_n) {
        *msg = w->inbox[w->inbox_head];
        w->inbox_head = (w->inbox_head + 1) % w->inbox_cap;
        w->inbox_n--;
        w->inbox_bytes -= msg->len + MSG_COST;
        rc = 1;
    } else if (w->closed || atomic_load(&w->srv->draining))
        rc = AT_E_CANCELLED;
    int wake = w->throttled && w->inbox_bytes < w->srv->cfg.ws_queue_limit / 2;
    pthread_mutex_unlock(&w->mu);
    if (wake) wake_loop(w->srv);
    return rc;
}

static int ws_send(at_ws *w, const void *data, size_t len, int kind)
{
    pthread_mutex_lock(&w->mu);
    struct timespec dl;
    at_deadline_ms(&dl, w->srv->cfg.idle_timeout_s * 1000L);
    while (!w->closed && w->out.bytes > w->srv->cfg.ws_queue_limit) {
        if (pthread_cond_timedwait(&w->cv, &w->mu, &dl) != 0) {
            /* The client stopped reading: give up on it rather than buffer. */
            w->closed = 1;
            w->close_code = 1008;
            snprintf(w->close_reason, sizeof w->close_reason, "client is not reading");
        }
    }
    int rc = 0;
    if (w->closed)
        rc = AT_E_CANCELLED;
    else {
        out_buf *b = out_buf_new(data, len, kind);
        if (!b)
            rc = AT_E_NOMEM;
        else
            outq_push(&w->out, b);
    }
    pthread_mutex_unlock(&w->mu);
    if (rc == 0) wake_loop(w->srv);
    return rc;
}

int at_ws_send_text(at_ws *w, const char *text, size_t len) { return ws_send(w, text, len, LWS_WRITE_TEXT); }

int at_ws_send_binary(at_ws *w, const void *data, size_t len)
{
    return ws_send(w, data, len, LWS_WRITE_BINARY);
}

int at_ws_send_json(at_ws *w, const cJSON *obj)
{
    char *s = at_json_print(obj);
    if (!s) return AT_E_NOMEM;
    int rc = at_ws_send_text(w, s, strlen(s));
    free(s);
    return rc;
}

void at_ws_set_close(at_ws *w, int code, const char *reason)
{
    pthread_mutex_lock(&w->mu);
    w->close_code = code;
    snprintf(w->close_reason, sizeof w->close_reason, "%s", reason ? reason : "");
    pthread_mutex_unlock(&w->mu);
}

const char *at_ws_path(const at_ws *w) { return w->path; }
const char *at_ws_query(const at_ws *w, const char *name) { return kv_get(w->query, w->n_query, name); }

int at_ws_closed(at_ws *w)
{
    pthread_mutex_lock(&w->mu);
    int c = w->closed;
    pthread_mutex_unlock(&w->mu);
    return c;
}

/* Loop thread: refuse an upgrade with a real HTTP error before the
 * handshake, since lws offers no API to answer a filtered upgrade. */
static void refuse_upgrade(struct lws *wsi, int status, const char *type, const char *code, int retry_after,
                           const char *msg)
{
    cJSON *o = error_json(AT_ERRORS_OPENAI, type, code, NULL, msg);
    char *body = at_json_print(o);
    cJSON_Delete(o);
    if (!body) return;
    char buf[1024], ra[32] = "";
    if (retry_after > 0) snprintf(ra, sizeof ra, "Retry-After: %d\r\n", retry_after);
    int n = snprintf(buf, sizeof buf,
                     "HTTP/1.1 %d %s\r\n%sContent-Type: application/json\r\nContent-Length: %zu\r\n"
                     "Connection: close\r\n\r\n%s",
                     status,
                     status == 401   ? "Unauthorized"
                     : status == 429 ? "Too Many Requests"
                                     : "Service Unavailable",
                     ra, strlen(body), body);
    free(body);
    if (n > 0 && (size_t)n < sizeof buf) {
        ssize_t w = send(lws_get_socket_fd(wsi), buf, (size_t)n, MSG_NOSIGNAL);
        (void)w;
    }
}

/* Loop thread: keys and rate limits for a WebSocket upgrade; 0 to go on,
 * else the upgrade has been refused. */
static int gate_upgrade(at_http_server *s, struct lws *wsi, const char *uri)
{
    at_access *a = s->cfg.access;
    if (!a) return 0;
    char auth[300] = "", addr[64] = "", msg[160];
    if (lws_hdr_copy(wsi, auth, sizeof auth, WSI_TOKEN_HTTP_AUTHORIZATION) < 0) auth[0] = '\0';
    lws_get_peer_simple(wsi, addr, sizeof addr);
    kv q[MAX_QUERY_ARGS];
    int nq = read_query(wsi, q);
    const char *key = header_key(auth, kv_get(q, nq, "api_key"));
    int guarded = at_access_path_guarded(a, uri), rc = 0;
    if (guarded && (!key || !at_access_key_valid(a, key))) {
        refuse_upgrade(
            wsi, 401, "invalid_request_error", key ? "invalid_api_key" : "missing_api_key", 0,
            key ? "invalid API key"
                : "this stream needs an API key: send \"Authorization: Bearer KEY\" or ?api_key=KEY");
        rc = -1;
    } else {
        const char *which = "address";
        int wait = at_access_take(a, guarded ? key : NULL, addr, &which);
        if (wait > 0) {
            snprintf(msg, sizeof msg, "too many requests from this %s; retry in %d s", which, wait);
            refuse_upgrade(wsi, 429, "rate_limit_error", "rate_limit_exceeded", wait, msg);
            rc = -1;
        }
    }
    kv_free(q, nq);
    return rc;
}

static int ws_receive(struct lws *wsi, at_ws *w, const void *in, size_t len)
{
    at_http_server *s = w->srv;
    if (w->too_big) return 0;
    if (lws_is_first_fragment(wsi)) {
        w->frag_len = 0;
        w->frag_binary = lws_frame_is_binary(wsi);
    }
    /* what the frame's header says is still to come counts too: a frame
     * declaring a terabyte is refused at its first bytes */
    if (w->frag_len + len > s->cfg.ws_message_limit ||
        lws_remaining_packet_payload(wsi) > s->cfg.ws_message_limit - (w->frag_len + len)) {
        w->too_big = 1;
        pthread_mutex_lock(&w->mu);
        w->closed = 1; /* the session sees the end of its input */
        w->close_code = 1009;
        snprintf(w->close_reason, sizeof w->close_reason, "message too big");
        pthread_cond_broadcast(&w->cv);
        pthread_mutex_unlock(&w->mu);
        lws_close_reason(wsi, 1009, (unsigned char *)"message too big", 15);
        return -1;
    }
    unsigned char *nf = realloc(w->frag, w->frag_len + len + 1);
    if (!nf) return -1;
    w->frag = nf;
    memcpy(w->frag + w->frag_len, in, len);
    w->frag_len += len;
    if (!lws_is_final_fragment(wsi) || lws_remaining_packet_payload(wsi)) return 0;

    at_ws_msg m = {w->frag_binary ? AT_WS_BINARY : AT_WS_TEXT, w->frag, w->frag_len};
    m.data[m.len] = '\0';
    w->frag = NULL;
    w->frag_len = 0;
    pthread_mutex_lock(&w->mu);
    int rc = inbox_push(w, m);
    if (rc == 0 && w->inbox_bytes > s->cfg.ws_queue_limit && !w->throttled) {
        /* Backpressure: stop reading the socket until the session catches up. */
        w->throttled = 1;
        lws_rx_flow_control(wsi, 0);
    }
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    if (rc) free(m.data);
    return rc;
}

static int ws_writable(struct lws *wsi, at_ws *w)
{
    pthread_mutex_lock(&w->mu);
    out_buf *b = outq_pop(&w->out);
    int handler_done = w->handler_done, done = !b && handler_done;
    int code = w->close_code ? w->close_code : 1000;
    char reason[120];
    snprintf(reason, sizeof reason, "%s", w->close_reason);
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    if (b) {
        int n = lws_write(wsi, b->data + LWS_PRE, b->len, (enum lws_write_protocol)b->kind);
        free(b);
        if (n < 0) return -1;
        /* as for HTTP: the next writable callback comes once the socket
         * has taken this; a client that stops reading never lets it come
         * (libwebsockets holds what the socket did not take, and asks for
         * no callback meanwhile), and is dropped when this runs out, its
         * session slot with it */
        lws_set_timeout(wsi, PENDING_TIMEOUT_USER_OK, (int)w->srv->cfg.idle_timeout_s);
        lws_callback_on_writable(wsi);
        return 0;
    }
    /* nothing to send: the session is working or waiting for its client */
    lws_set_timeout(wsi, NO_PENDING_TIMEOUT, 0);
    if (done) {
        lws_close_reason(wsi, (enum lws_close_status)code, (unsigned char *)reason, strlen(reason));
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------ */

static void on_cancel(at_http_server *s)
{
    for (at_http_req *r = s->reqs; r; r = r->next) {
        pthread_mutex_lock(&r->mu);
        int want = r->wsi && r->resp_started && (!r->headers_sent || r->out.head || r->finished);
        struct lws *wsi = r->wsi;
        pthread_mutex_unlock(&r->mu);
        if (want) lws_callback_on_writable(wsi);
    }
    for (at_ws *w = s->wss; w; w = w->next) {
        pthread_mutex_lock(&w->mu);
        struct lws *wsi = w->wsi;
        int want = wsi && (w->out.head || w->handler_done);
        int unthrottle = wsi && w->throttled && w->inbox_bytes < s->cfg.ws_queue_limit / 2;
        if (unthrottle) w->throttled = 0;
        pthread_mutex_unlock(&w->mu);
        if (unthrottle) lws_rx_flow_control(wsi, 1);
        if (want) lws_callback_on_writable(wsi);
    }
}

/* Loop thread: appends a piece of a request body (at_chunked_sink shape).
 * Past the body limit or the buffered total the answer (413, 503) is
 * queued and a negative status returned. */
static int body_append(void *user, const unsigned char *in, size_t len, at_err *err)
{
    at_http_req *r = user;
    size_t limit = body_limit_of(r);
    if (r->body_len + len > limit) {
        r->close_after = 1;
        at_http_error(r, 413, "invalid_request_error", "request body exceeds the limit of %zu bytes", limit);
        return at_err_set(err, AT_E_TOO_LARGE, "request body too large");
    }
    if (r->body_len + len + 1 > r->body_cap) {
        size_t cap = r->body_cap ? r->body_cap : 65536;
        while (cap < r->body_len + len + 1) cap *= 2;
        if (cap > limit + 1) cap = limit + 1;
        if (r->slot && cap > r->reserved && !reserve_more(r, cap - r->reserved)) {
            refuse_busy(r, "too many request bodies in memory");
            return at_err_set(err, AT_E_BUSY, "too many request bodies in memory");
        }
        unsigned char *nb = realloc(r->body, cap);
        if (!nb) {
            r->close_after = 1;
            at_http_error(r, 503, "overloaded_error", "out of memory for the request body");
            return at_err_set(err, AT_E_NOMEM, "out of memory");
        }
        r->body = nb;
        r->body_cap = cap;
    }
    memcpy(r->body + r->body_len, in, len);
    r->body_len += len;
    r->body[r->body_len] = '\0';
    return 0;
}

static int callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len)
{
    pss *p = user;
    struct lws_vhost *vh = lws_get_vhost(wsi);
    listener *ls = vh ? lws_get_vhost_user(vh) : NULL;
    at_http_server *s = ls ? ls->srv : NULL;

    switch (reason) {
    case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
        if (s) on_cancel(s);
        return 0;

    case LWS_CALLBACK_HTTP: {
        if (!s || !p) return -1;
        if (p->req) { /* pipelined request before the last finished: drop it */
            return -1;
        }
        at_http_req *r = req_new(s, ls, wsi);
        if (!r) return -1;
        p->req = r;
        if (method_of(wsi, r->method, sizeof r->method) != 0) snprintf(r->method, sizeof r->method, "?");
        /* One request a connection (Connection: close).  libwebsockets 4.1
         * parses a request a client pipelined behind another from its own
         * buffer without polling, and while it does the answer is never
         * written and no other connection is served: one client hung the
         * whole server that way (fuzz_server).  Clients open a new
         * connection for the next request, as HTTP/1.1 has them do. */
        r->close_after = 1;
        snprintf(r->path, sizeof r->path, "%s", (const char *)in);
        r->n_query = read_query(wsi, r->query);
        lws_hdr_copy(wsi, r->content_type, sizeof r->content_type, WSI_TOKEN_HTTP_CONTENT_TYPE);
        lws_hdr_copy(wsi, r->accept, sizeof r->accept, WSI_TOKEN_HTTP_ACCEPT);
        if (lws_hdr_copy(wsi, r->authorization, sizeof r->authorization, WSI_TOKEN_HTTP_AUTHORIZATION) < 0)
            r->authorization[0] = '\0';
        if (lws_hdr_copy(wsi, r->origin, sizeof r->origin, WSI_TOKEN_ORIGIN) < 0) r->origin[0] = '\0';
        lws_get_peer_simple(wsi, r->addr, sizeof r->addr);
        add_cors(r);
        char cl[32] = "", te[64] = "";
        if (lws_hdr_copy(wsi, cl, sizeof cl, WSI_TOKEN_HTTP_CONTENT_LENGTH) > 0)
            r->content_length = strtoll(cl, NULL, 10);
        int te_len = lws_hdr_copy(wsi, te, sizeof te, WSI_TOKEN_HTTP_TRANSFER_ENCODING);
        int known;
        r->route = find_route(ls, r->method, r->path, 0, &known);
        int has_body = strcmp(r->method, "POST") == 0 || strcmp(r->method, "PUT") == 0 ||
                       strcmp(r->method, "PATCH") == 0;
        /* libwebsockets does not frame a chunked body, so the connection
         * is not reused after one */
        if (te_len != 0) r->close_after = 1;
        if (te_len != 0 && r->content_length >= 0) {
            /* both framings at once is how requests are smuggled past
             * proxies (RFC 9112 6.3 allows refusing it) */
            at_http_error(r, 400, "invalid_request_error",
                          "a request must not have both Content-Length and Transfer-Encoding");
        } else if (te_len != 0 && strcasecmp(te, "chunked") != 0) {
            at_http_error(r, 501, "invalid_request_error",
                          "Transfer-Encoding \"%s\" is not supported; send chunked or a Content-Length",
                          te_len > 0 ? te : "(too long)");
        } else if (atomic_load(&s->draining) && strcmp(r->path, "/health") != 0 &&
                   strcmp(r->path, "/ready") != 0) {
            /* the probes still answer: /ready says "draining" (503), and
             * /health stays 200, since the process is alive and working */
            r->close_after = 1;
            at_http_add_header(r, "retry-after", "5");
            at_http_error(r, 503, "overloaded_error", "server is shutting down");
        } else if (strcmp(r->method, "OPTIONS") == 0 && known && at_access_cors(s->cfg.access, r->origin)) {
            /* a browser's CORS preflight */
            char hdrs[128] = "Authorization, Content-Type";
            if (lws_hdr_copy(wsi, hdrs, sizeof hdrs, WSI_TOKEN_HTTP_AC_REQUEST_HEADERS) <= 0)
                snprintf(hdrs, sizeof hdrs, "Authorization, Content-Type");
            at_http_add_header(r, "access-control-allow-methods", "GET, POST, OPTIONS");
            at_http_add_header(r, "access-control-allow-headers", hdrs);
            at_http_add_header(r, "access-control-max-age", "600");
            at_http_respond(r, 200, "text/plain", "", 0);
        } else if (!r->route) {
            /* a body we will not use is not read */
            if (known) {
                at_http_error(r, 405, "invalid_request_error", "method %s not allowed on %s", r->method,
                              r->path);
            } else {
                at_http_error(r, 404, "invalid_request_error", "no route for %s %s", r->method, r->path);
            }
        } else if (gate(r)) {
            if (has_body) r->close_after = 1; /* its body is not read */
        } else if (has_body && r->content_length > (long long)body_limit_of(r)) {
            r->close_after = 1;
            at_http_error(r, 413, "invalid_request_error",
                          "request body of %lld bytes exceeds the limit of %zu bytes", r->content_length,
                          body_limit_of(r));
        } else if (!has_body || (r->content_length < 0 && te_len == 0)) {
            /* without Content-Length or chunked framing a request has no
             * body (RFC 9112 6.3); what follows is not read as one */
            if (has_body) r->close_after = 1;
            dispatch(r);
        } else if (te_len != 0 && !(r->dechunk = at_chunked_new(body_limit_of(r)))) {
            at_http_error(r, 503, "overloaded_error", "out of memory");
        } else if (!(r->route->mode & AT_ROUTE_INLINE) &&
                   !admit_upload(r, r->content_length > 0 ? (size_t)r->content_length + 1 : 0)) {
            refuse_busy(r, s->inflight >= s->cfg.max_inflight ? "too many requests in flight"
                                                              : "too many request bodies in memory");
        } else {
            /* Preallocate from Content-Length only within the limit. */
            if (r->content_length > 0) {
                r->body = malloc((size_t)r->content_length + 1);
                if (r->body) r->body_cap = (size_t)r->content_length + 1;
            }
            /* the whole body within a deadline: a sender trickling bytes
             * (slowloris) does not hold its slot for ever */
            long cl =
                r->content_length > 0 ? (long)(r->content_length >> 16) : (long)(body_limit_of(r) >> 16);
            clock_gettime(CLOCK_MONOTONIC, &r->body_deadline);
            r->body_deadline.tv_sec += s->cfg.body_timeout_s + cl;
            lws_set_timeout(wsi, PENDING_TIMEOUT_HTTP_CONTENT, (int)(s->cfg.body_timeout_s + cl));
            return 0;
        }
        lws_callback_on_writable(wsi);
        return 0;
    }

    case LWS_CALLBACK_HTTP_BODY: {
        at_http_req *r = p ? p->req : NULL;
        /* once its handler runs, a request's body is never touched again:
         * bytes after a POST that declared no body (libwebsockets passes
         * them on as one of up to 100 MiB) were appended to the buffer the
         * handler was reading, moving it */
        if (!r || r->resp_started || r->dispatched || len == 0) return 0;
        /* libwebsockets re-arms its own timeout on every piece of a body,
         * so a byte now and then would hold the slot for ever: the
         * deadline for the whole body is ours */
        if (!r->body_complete && r->body_deadline.tv_sec && elapsed_s(&r->body_deadline) > 0) {
            if (s->m_rejected) at_metric_inc(s->m_rejected, r->ls->name, 1);
            return -1; /* closes the connection; its slot is freed */
        }
        if (!r->dechunk) {
            body_append(r, in, len, NULL);
            if (r->resp_started) lws_callback_on_writable(wsi);
            return 0;
        }
        if (r->body_complete) { /* bytes after the last chunk: not read as a request */
            lws_callback_on_writable(wsi);
            return 0;
        }
        size_t used;
        at_err err;
        at_err_clear(&err);
        int rc = at_chunked_feed(r->dechunk, in, len, &used, body_append, r, &err);
        if (rc == 1) {
            r->body_complete = 1;
            dispatch(r);
        } else if (rc < 0 && !r->resp_started) {
            at_http_error(r, rc == AT_E_TOO_LARGE ? 413 : 400, "invalid_request_error", "%s", err.msg);
        }
        /* libwebsockets still counts on a body of unknown length and arms
         * its body timeout again after this returns; the writable
         * callback that follows clears it once the body is complete */
        lws_callback_on_writable(wsi);
        return 0;
    }

    case LWS_CALLBACK_HTTP_BODY_COMPLETION: {
        at_http_req *r = p ? p->req : NULL;
        if (!r || r->dechunk) return 0; /* a chunked body ends with its last chunk */
        if (r->completions++ > 0) {
            /* libwebsockets 4.1 calls this again and again, without
             * sleeping, while bytes a client sent after the body sit in
             * its buffer, until the answer has been written (the
             * connection then closes): the spin is slowed to a turn a
             * millisecond, and bounded. */
            if (r->completions > COMPLETIONS_MAX) return -1;
            struct timespec ms = {0, 1000000};
            nanosleep(&ms, NULL);
            return 0;
        }
        if (!r->resp_started && !r->dispatched) {
            /* The worker may run for long: lws must not time the wsi out. */
            lws_set_timeout(wsi, NO_PENDING_TIMEOUT, 0);
            dispatch(r);
        }
        lws_callback_on_writable(wsi);
        return 0;
    }

    case LWS_CALLBACK_HTTP_WRITEABLE: return p ? req_writable(wsi, p) : 0;

    case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
    case LWS_CALLBACK_CLOSED_HTTP:
        if (p && p->req) {
            at_http_req *r = p->req;
            p->req = NULL;
            pthread_mutex_lock(&r->mu);
            int queued = r->out.head != NULL;
            pthread_mutex_unlock(&r->mu);
            reset_if_stuck(wsi, queued);
            req_detach(r);
        }
        return 0;

    case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION: {
        if (!s) return -1;
        char uri[256] = "";
        lws_hdr_copy(wsi, uri, sizeof uri, WSI_TOKEN_GET_URI);
        int known;
        if (!find_route(ls, NULL, uri, 1, &known)) return -1;
        if (gate_upgrade(s, wsi, uri) != 0) {
            if (s->m_rejected) at_metric_inc(s->m_rejected, ls->name, 1);
            return -1;
        }
        pthread_mutex_lock(&s->mu);
        int ok = !atomic_load(&s->draining) && s->ws_sessions < s->cfg.max_ws_sessions;
        if (ok) {
            s->ws_sessions++;
            if (s->m_ws) at_metric_add(s->m_ws, ls->name, 1);
        }
        pthread_mutex_unlock(&s->mu);
        if (!ok) {
            if (s->m_rejected) at_metric_inc(s->m_rejected, ls->name, 1);
            char msg[128];
            snprintf(msg, sizeof msg,
                     atomic_load(&s->draining) ? "server is shutting down"
                                               : "too many concurrent streams (limit %d); retry later",
                     s->cfg.max_ws_sessions);
            refuse_upgrade(wsi, 503, "overloaded_error", NULL, 5, msg);
            return -1;
        }
        p->ws_reserved = 1;
        return 0;
    }

    case LWS_CALLBACK_ESTABLISHED: {
        if (!s || !p) return -1;
        at_ws *w = calloc(1, sizeof *w);
        if (!w) return -1;
        w->srv = s;
        w->ls = ls;
        w->wsi = wsi;
        w->refs = 2; /* loop + session thread */
        pthread_mutex_init(&w->mu, NULL);
        pthread_cond_init(&w->cv, NULL);
        lws_hdr_copy(wsi, w->path, sizeof w->path, WSI_TOKEN_GET_URI);
        w->n_query = read_query(wsi, w->query);
        int known;
        w->route = find_route(ls, NULL, w->path, 1, &known);
        p->ws = w;
        w->next = s->wss;
        s->wss = w;
        pthread_t th;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        pthread_mutex_lock(&s->mu);
        s->ws_threads++;
        pthread_mutex_unlock(&s->mu);
        int bad = !w->route || pthread_create(&th, &attr, ws_thread, w) != 0;
        pthread_attr_destroy(&attr);
        if (bad) {
            pthread_mutex_lock(&s->mu);
            s->ws_threads--;
            pthread_mutex_unlock(&s->mu);
            w->refs = 1; /* only the loop's: CLOSED frees it */
            return -1;
        }
        at_log_write(s->cfg.log, AT_LOG_INFO, "stream opened", "service", ls->name, "path", w->path, NULL);
        return 0;
    }

    case LWS_CALLBACK_RECEIVE: return (p && p->ws) ? ws_receive(wsi, p->ws, in, len) : 0;

    case LWS_CALLBACK_SERVER_WRITEABLE: return (p && p->ws) ? ws_writable(wsi, p->ws) : 0;

    case LWS_CALLBACK_CLOSED:
        if (p && p->ws) {
            at_ws *w = p->ws;
            p->ws = NULL;
            pthread_mutex_lock(&w->mu);
            reset_if_stuck(wsi, w->out.bytes > 0);
            w->closed = 1;
            w->wsi = NULL;
            pthread_cond_broadcast(&w->cv);
            pthread_mutex_unlock(&w->mu);
            list_remove_ws(s, w);
            at_log_write(s->cfg.log, AT_LOG_INFO, "stream closed", "service", ls->name, "path", w->path,
                         NULL);
            ws_unref(w);
        }
        if (p && p->ws_reserved) {
            p->ws_reserved = 0;
            release_ws_slot(s, ls);
        }
        return 0;

    default: break;
    }
    return lws_callback_http_dummy(wsi, reason, user, in, len);
}

/* ------------------------------------------------------------------ */

void at_http_config_defaults(at_http_config *c)
{
    memset(c, 0, sizeof *c);
    c->body_limit = 25u << 20;
    c->max_inflight = 16;
    c->max_ws_sessions = 8;
    c->ws_message_limit = 1u << 20;
    c->ws_queue_limit = 4u << 20;
    c->idle_timeout_s = 60;
    c->drain_timeout_s = 30;
    c->body_timeout_s = 30;
    c->max_buffered = 200u << 20;
}

at_http_server *at_http_server_new(const at_http_config *cfg, at_err *err)
{
    at_http_server *s = calloc(1, sizeof *s);
    if (!s) {
        at_err_set(err, AT_E_NOMEM, "out of memory");
        return NULL;
    }
    s->cfg = *cfg;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->idle_cv, NULL);
    s->protocols[0].name = "at";
    s->protocols[0].callback = callback;
    s->protocols[0].per_session_data_size = sizeof(pss);
    s->protocols[0].rx_buffer_size = 65536;

    lws_set_log_level(LLL_ERR, NULL);
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    info.options = LWS_SERVER_OPTION_EXPLICIT_VHOSTS | LWS_SERVER_OPTION_DISABLE_IPV6;
    info.port = CONTEXT_PORT_NO_LISTEN;
    s->ctx = lws_create_context(&info);
    if (!s->ctx) {
        at_err_set(err, AT_E_IO, "cannot create the libwebsockets context");
        free(s);
        return NULL;
    }
    if (cfg->metrics) {
        static const double lat[] = {0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};
        s->m_requests = at_metrics_counter(cfg->metrics, "http_requests_total", "HTTP requests answered",
                                           "service,method,path,status");
        s->m_latency = at_metrics_histogram(cfg->metrics, "http_request_duration_seconds",
                                            "Time from request to last byte queued", "service,path", lat,
                                            sizeof lat / sizeof lat[0]);
        s->m_inflight =
            at_metrics_gauge(cfg->metrics, "http_requests_in_flight", "Requests being worked on", "service");
        s->m_ws =
            at_metrics_gauge(cfg->metrics, "websocket_sessions_active", "Open WebSocket sessions", "service");
        s->m_rejected = at_metrics_counter(cfg->metrics, "http_rejected_total",
                                           "Requests and streams refused for capacity", "service");
    }
    return s;
}

int at_http_server_listen(at_http_server *s, const char *name, const char *iface, int port,
                          const at_http_route *routes, size_t n_routes, void *user, int *bound_port,
                          at_err *err)
{
    if (s->n_listeners >= MAX_LISTENERS) return at_err_set(err, AT_E_INVALID, "too many listeners");
    listener *ls = calloc(1, sizeof *ls);
    if (!ls) return at_err_set(err, AT_E_NOMEM, "out of memory");
    ls->srv = s;
    snprintf(ls->name, sizeof ls->name, "%s", name);
    ls->routes = routes;
    ls->n_routes = n_routes;
    ls->user = user;

    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    info.port = port;
    info.iface = iface;
    info.protocols = s->protocols;
    info.vhost_name = ls->name;
    info.user = ls;
    info.options = LWS_SERVER_OPTION_DISABLE_IPV6;
    info.keepalive_timeout = s->cfg.idle_timeout_s;
    info.timeout_secs = (unsigned)s->cfg.idle_timeout_s;
    ls->vh = lws_create_vhost(s->ctx, &info);
    if (!ls->vh) {
        free(ls);
        return at_err_set(err, AT_E_IO, "cannot listen on %s:%d (port in use?)", iface ? iface : "*", port);
    }
    s->listeners[s->n_listeners++] = ls;
    if (bound_port) *bound_port = lws_get_vhost_listen_port(ls->vh);
    return 0;
}

int at_http_server_draining(const at_http_server *s) { return atomic_load(&s->draining); }

void at_http_server_stop(at_http_server *s)
{
    s->stop_flag = 1;
    if (s->ctx) lws_cancel_service(s->ctx);
}

static void drain_tick(lws_sorted_usec_list_t *sul) { (void)sul; }

int at_http_server_run(at_http_server *s)
{
    while (!s->stop_flag)
        if (lws_service(s->ctx, 250) < 0) break;

    /* Drain: new work gets 503, sessions see the end of their input and
     * flush, in-flight requests finish. */
    atomic_store(&s->draining, 1);
    at_log_write(s->cfg.log, AT_LOG_INFO, "draining", NULL);
    for (at_ws *w = s->wss; w; w = w->next) {
        pthread_mutex_lock(&w->mu);
        if (!w->close_code) {
            w->close_code = 1001;
            snprintf(w->close_reason, sizeof w->close_reason, "server shutting down");
        }
        pthread_cond_broadcast(&w->cv);
        pthread_mutex_unlock(&w->mu);
    }
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    /* lws_service's timeout is a hint that libwebsockets ignores (it sleeps
     * until its next timer, seconds away): a timer of our own wakes the
     * loop to check the deadline */
    lws_sorted_usec_list_t tick;
    memset(&tick, 0, sizeof tick);
    for (;;) {
        pthread_mutex_lock(&s->mu);
        int busy = s->inflight + s->ws_sessions + s->ws_threads + s->req_threads;
        pthread_mutex_unlock(&s->mu);
        int pending = s->reqs != NULL;
        if ((!busy && !pending) || elapsed_s(&t0) > s->cfg.drain_timeout_s) break;
        lws_sul_schedule(s->ctx, 0, &tick, drain_tick, 100 * LWS_US_PER_MS);
        if (lws_service(s->ctx, 100) < 0) break;
    }
    lws_sul_cancel(&tick);
    at_log_write(s->cfg.log, AT_LOG_INFO, "stopped", NULL);
    return 0;
}

static at_http_server *g_signal_target; /* the one process-wide signal hook */

static void on_signal(int sig)
{
    (void)sig;
    if (g_signal_target) at_http_server_stop(g_signal_target);
}

void at_http_server_stop_on_signals(at_http_server *s)
{
    g_signal_target = s;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

int at_http_server_close(at_http_server *s, int grace_ms)
{
    if (!s) return 0;
    if (g_signal_target == s) g_signal_target = NULL;
    /* workers stop waking the loop before its context goes (they call
     * lws_cancel_service on s->ctx under mu) */
    pthread_mutex_lock(&s->mu);
    struct lws_context *ctx = s->ctx;
    s->ctx = NULL;
    pthread_mutex_unlock(&s->mu);
    /* Closing every connection marks its work cancelled. */
    if (ctx) lws_context_destroy(ctx);
    pthread_mutex_lock(&s->mu);
    /* Threads still running hold pointers to s: wait for them. */
    struct timespec until;
    at_deadline_ms(&until, grace_ms < 0 ? 0 : grace_ms);
    while (s->inflight > 0 || s->ws_threads > 0 || s->req_threads > 0) {
        if (grace_ms < 0)
            pthread_cond_wait(&s->idle_cv, &s->mu);
        else if (pthread_cond_timedwait(&s->idle_cv, &s->mu, &until) == ETIMEDOUT)
            break;
    }
    int left = s->inflight + s->ws_threads + s->req_threads;
    pthread_mutex_unlock(&s->mu);
    return left;
}

void at_http_server_free(at_http_server *s)
{
    if (!s) return;
    at_http_server_close(s, -1);
    for (int i = 0; i < s->n_listeners; i++) free(s->listeners[i]);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->idle_cv);
    free(s);
}
