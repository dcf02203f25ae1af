/* client.h - what integration tests use to drive the real service binaries:
 * spawn a service on free loopback ports, raw HTTP/1.1 requests (so tests
 * can also send malformed ones), a minimal WebSocket client, multipart
 * bodies and WAV helpers. */
#ifndef AT_TESTS_CLIENT_H
#define AT_TESTS_CLIENT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* ---- processes ---- */
typedef struct at_test_proc {
    pid_t pid;
    int ports[4]; /* in "listening" order: asr, translate, tts, pipeline */
    int n_ports;
    int err_fd;  /* the child's stderr (its log) */
    void *drain; /* thread that keeps reading the log once started */
} at_test_proc;

/* Starts `$AT_BUILD_DIR/<binary> args...` with every port flag set to 0,
 * waits until it logs n_listen "listening" lines and /ready answers 200
 * on every one of those ports (up to timeout_s).  Returns 0 on success. */
int at_test_spawn(at_test_proc *p, const char *binary, const char *const *args, int n_listen, int timeout_s);
/* The same without waiting for /ready (a service whose engines fail). */
int at_test_spawn_listening(at_test_proc *p, const char *binary, const char *const *args, int n_listen,
                            int timeout_s);
/* SIGTERM, then waits up to timeout_s; returns the exit status, or -1 if
 * it had to be killed, or 128+signal if a signal ended it.  Lines of the
 * child's log that come from a sanitizer or that are warnings/errors are
 * echoed to our stderr (all lines with AT_TEST_VERBOSE set). */
int at_test_stop(at_test_proc *p, int timeout_s);

/* ---- HTTP ---- */
typedef struct at_test_resp {
    int status;
    char headers[4096];  /* raw header block, lower-cased names */
    unsigned char *body; /* NUL-terminated, de-chunked */
    size_t len;
    int chunked;
} at_test_resp;

/* Sends exactly `raw` (a whole request) and reads the response. */
int at_test_raw(int port, const void *raw, size_t len, at_test_resp *r, int timeout_s);
/* A normal request; extra_headers like "Content-Type: x\r\n" or NULL. */
int at_test_http(int port, const char *method, const char *path, const char *extra_headers, const void *body,
                 size_t len, at_test_resp *r);
void at_test_resp_free(at_test_resp *r);
/* Header value (case-insensitive name) copied into buf; 1 if found. */
int at_test_header(const at_test_resp *r, const char *name, char *buf, size_t cap);

/* multipart/form-data builder */
typedef struct at_test_form {
    unsigned char *data;
    size_t len, cap;
    char boundary[64];
} at_test_form;
void at_test_form_init(at_test_form *f);
void at_test_form_field(at_test_form *f, const char *name, const char *value);
void at_test_form_file(at_test_form *f, const char *name, const char *filename, const char *ctype,
                       const void *data, size_t len);
/* Closes the body and returns the Content-Type header line to send. */
const char *at_test_form_finish(at_test_form *f, char *hdr, size_t cap);
void at_test_form_free(at_test_form *f);

/* ---- WebSocket ---- */
typedef struct at_test_ws {
    int fd;
    int close_code; /* set when a close frame arrived */
} at_test_ws;

/* Returns 0 on a 101 upgrade; otherwise the HTTP status (e.g. 503), with
 * the response in *refused if not NULL. */
int at_test_ws_connect(at_test_ws *ws, int port, const char *path, at_test_resp *refused);
int at_test_ws_send(at_test_ws *ws, int opcode, const void *data, size_t len);
/* Next data frame: returns its opcode (1 text, 2 binary), 8 on close, 0 on
 * timeout, -1 on error.  *data is malloc'd and NUL-terminated. */
int at_test_ws_recv(at_test_ws *ws, char **data, size_t *len, int timeout_ms);
void at_test_ws_close(at_test_ws *ws);

/* ---- files and audio ---- */
/* Reads a whole file (malloc'd); NULL on failure. */
unsigned char *at_test_read_file(const char *path, size_t *len);
/* Mono PCM16 from a WAV file at 16 kHz (via libsndfile); malloc'd. */
int16_t *at_test_read_wav16(const char *path, size_t *n, int *rate);
/* A WAV file in memory: PCM16, channels interleaved. */
unsigned char *at_test_wav_bytes(const int16_t *pcm, size_t frames, int rate, int channels, size_t *len);
const char *at_test_librivox_dir(void);

#endif
