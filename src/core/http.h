/* http.h - the HTTP + WebSocket server every service runs on (libwebsockets).
 *
 * One event loop thread owns every socket.  Request handlers never run on
 * it unless marked cheap (health, metrics): each other request is handed to
 * a worker thread with its body fully buffered (bounded by body_limit), and
 * the worker answers through the thread-safe response calls below, which
 * queue bytes and wake the loop.  WebSocket sessions get a thread each that
 * reads messages with at_ws_recv() and writes with at_ws_send_*(); both
 * directions are bounded queues, so a fast sender is flow-controlled and a
 * client that stops reading blocks (then times out) its session instead of
 * growing memory.
 *
 * Several listeners (ports) share one loop: `serve --one-process` answers
 * every service's port from one process. */
#ifndef AT_CORE_HTTP_H
#define AT_CORE_HTTP_H

#include <stddef.h>

#include "core/error.h"
#include "core/log.h"
#include "core/metrics.h"

typedef struct cJSON cJSON;
typedef struct at_http_server at_http_server;
typedef struct at_http_req at_http_req;
typedef struct at_ws at_ws;

typedef void (*at_http_handler)(at_http_req *req, void *user);
/* Runs on the session's own thread; the session closes when it returns. */
typedef void (*at_ws_handler)(at_ws *ws, void *user);

/* Flags: INLINE routes are cheap and run on the loop thread; OPEN ones are
 * answered without an API key (LibreTranslate's /languages). */
typedef enum { AT_ROUTE_WORKER = 0, AT_ROUTE_INLINE = 1, AT_ROUTE_OPEN = 2 } at_route_mode;

typedef struct at_http_route {
    const char *method;       /* "GET", "POST"; NULL for WebSocket routes */
    const char *path;         /* exact match, e.g. "/v1/audio/speech" */
    at_http_handler handler;  /* HTTP routes */
    at_ws_handler ws_handler; /* WebSocket routes */
    int mode;                 /* at_route_mode flags */
    size_t max_body;          /* bytes, below the server's body_limit; 0: body_limit */
} at_http_route;

typedef struct at_http_config {
    size_t body_limit;       /* bytes; larger bodies get 413 */
    int max_inflight;        /* worker requests not yet answered; beyond: 503 */
    int max_ws_sessions;     /* concurrent WebSocket sessions; beyond: 503 */
    size_t ws_message_limit; /* largest WebSocket message (bytes) */
    size_t ws_queue_limit;   /* bytes queued per direction before flow control */
    int idle_timeout_s;      /* a client silent this long is dropped */
    /* A request body must arrive within body_timeout_s plus one second per
     * 64 KiB (slow senders hold a slot: slowloris); bodies in memory at
     * once are bounded by max_buffered bytes.  A request with a body takes
     * its max_inflight slot when its headers arrive, before its body is
     * buffered. */
    int body_timeout_s;
    size_t max_buffered;
    int drain_timeout_s;      /* on stop, how long to let work finish */
    struct at_access *access; /* API keys, rate limits, CORS (core/access.h); NULL: open */
    at_log *log;              /* may be NULL */
    at_metrics *metrics;      /* may be NULL; http_* metrics are registered */
} at_http_config;

/* Fills defaults: 25 MiB body, 16 in flight, 8 sessions, 1 MiB message,
 * 4 MiB queues, 60 s idle, 30 s drain, 30 s + 1 s per 64 KiB for a body,
 * 200 MiB of bodies buffered at once. */
void at_http_config_defaults(at_http_config *cfg);

at_http_server *at_http_server_new(const at_http_config *cfg, at_err *err);
/* Adds a listener.  iface NULL = all interfaces, "127.0.0.1" for loopback.
 * port 0 picks a free port; the port bound is returned via *bound_port.
 * routes must outlive the server.  `name` labels logs and metrics. */
int at_http_server_listen(at_http_server *s, const char *name, const char *iface, int port,
                          const at_http_route *routes, size_t n_routes, void *user, int *bound_port,
                          at_err *err);
/* Runs the loop until at_http_server_stop(); then refuses new work with
 * 503, lets in-flight requests and sessions finish (up to drain_timeout_s)
 * and returns. */
int at_http_server_run(at_http_server *s);
/* Async-signal-safe: may be called from a SIGTERM handler. */
void at_http_server_stop(at_http_server *s);
int at_http_server_draining(const at_http_server *s);
/* Closes every connection (the work of each sees itself cancelled) and
 * waits up to grace_ms (< 0: as long as it takes) for the worker threads
 * to return; returns how many are still running.  A process whose drain
 * timed out exits when this is not 0, whatever is still running. */
int at_http_server_close(at_http_server *s, int grace_ms);
/* Closes (waiting for every worker) and frees. */
void at_http_server_free(at_http_server *s);
typedef enum { AT_ERRORS_OPENAI = 0, AT_ERRORS_PLAIN = 1 } at_error_style;
/* The shape of the errors the listener `name` sends (see at_http_error),
 * its own (404, 413, 503) included. */
void at_http_server_set_errors(at_http_server *s, const char *name, at_error_style style);
/* Installs SIGTERM/SIGINT handlers that stop s (one server per process). */
void at_http_server_stop_on_signals(at_http_server *s);

/* ---- requests (valid until the response is finished) ---- */
const char *at_http_req_method(const at_http_req *r);
const char *at_http_req_path(const at_http_req *r);
/* Query argument value (URL-decoded) or NULL. */
const char *at_http_req_query(const at_http_req *r, const char *name);
/* Request header by lower-case name ("content-type", "accept"); NULL if
 * absent.  Only the headers services use are kept. */
const char *at_http_req_header(const at_http_req *r, const char *name);
const unsigned char *at_http_req_body(const at_http_req *r, size_t *len);
/* 1 once the client has gone away: stop working and return. */
int at_http_req_cancelled(at_http_req *r);
/* 1 once the server drains (it was stopped): /ready answers 503 so that
 * load balancers stop sending new work here. */
int at_http_req_draining(const at_http_req *r);

/* ---- responses (callable from the worker thread) ---- */
/* Adds a response header before the status line is sent. */
int at_http_add_header(at_http_req *r, const char *name, const char *value);
/* A whole response with Content-Length. */
int at_http_respond(at_http_req *r, int status, const char *content_type, const void *body, size_t len);
/* A whole JSON response (object is not freed). */
/* cJSON_PrintUnformatted with invalid UTF-8 in strings replaced by
 * U+FFFD: every JSON document we send is valid.  NULL on OOM; free(). */
char *at_json_print(const cJSON *obj);
/* 1 if JSON text holds a NUL character (raw, or a \u0000 escape): cJSON's
 * C strings would silently end there, dropping the rest of the text. */
int at_json_text_has_nul(const char *s, size_t n);
int at_http_respond_json(at_http_req *r, int status, const cJSON *obj);
/* An error with that status, in the listener's error style:
 *   AT_ERRORS_OPENAI  {"error":{"message", "type", "param", "code"}} as
 *                     OpenAI sends it (param and code null unless given);
 *   AT_ERRORS_PLAIN   {"error":"message"} as LibreTranslate sends it.
 * type: "invalid_request_error", "server_error", ... */
int at_http_error(at_http_req *r, int status, const char *type, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Same with OpenAI's machine-readable code ("invalid_api_key") and the
 * offending parameter ("voice"); either may be NULL. */
int at_http_error_coded(at_http_req *r, int status, const char *type, const char *code, const char *param,
                        const char *fmt, ...) __attribute__((format(printf, 6, 7)));
/* Maps an at_err code to a status and sends it as an error. */
int at_http_error_from(at_http_req *r, const at_err *err);
/* A streamed response (chunked transfer encoding). */
int at_http_stream_begin(at_http_req *r, int status, const char *content_type);
/* Blocks while too much is queued; AT_E_CANCELLED once the client is gone. */
int at_http_stream_write(at_http_req *r, const void *data, size_t len);
/* One server-sent event, "data: <json>\n\n", on a stream begun with
 * Content-Type text/event-stream. */
int at_http_sse_event(at_http_req *r, const cJSON *event);
int at_http_stream_end(at_http_req *r);

/* ---- WebSocket sessions (called on the session's thread) ---- */
typedef enum { AT_WS_TEXT = 1, AT_WS_BINARY = 2 } at_ws_kind;
typedef struct at_ws_msg {
    at_ws_kind kind;
    unsigned char *data; /* malloc'd, NUL-terminated for convenience */
    size_t len;
} at_ws_msg;

/* Waits up to timeout_ms (-1 = forever) for a message.  Returns 1 with a
 * message (free msg->data), 0 on timeout, AT_E_CANCELLED once the peer has
 * closed or the server is stopping. */
int at_ws_recv(at_ws *ws, at_ws_msg *msg, int timeout_ms);
int at_ws_send_text(at_ws *ws, const char *text, size_t len);
int at_ws_send_json(at_ws *ws, const cJSON *obj);
int at_ws_send_binary(at_ws *ws, const void *data, size_t len);
/* Close code and reason sent when the handler returns (default 1000). */
void at_ws_set_close(at_ws *ws, int code, const char *reason);
const char *at_ws_path(const at_ws *ws);
/* Query argument of the upgrade request or NULL. */
const char *at_ws_query(const at_ws *ws, const char *name);
int at_ws_closed(at_ws *ws);

#endif
