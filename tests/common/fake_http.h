/* fake_http.h - a loopback HTTP server for tests of download code (raw
 * sockets, one connection at a time, every answer `Connection: close`):
 * the test's handler gets each request's head and answers on the socket,
 * with the helpers below for the usual answers, including byte ranges of
 * a file as `models pull` resumes them. */
#ifndef AT_TESTS_COMMON_FAKE_HTTP_H
#define AT_TESTS_COMMON_FAKE_HTTP_H

#include <stddef.h>

typedef struct at_fake_http at_fake_http;

/* Called on the server's thread for each request: fd is the connection
 * (closed after the call), head the request line and headers. */
typedef void (*at_fake_http_fn)(void *user, int fd, const char *head);

/* Listens on 127.0.0.1 (a free port, in *port) and serves on a thread of
 * its own until at_fake_http_stop.  NULL on failure. */
at_fake_http *at_fake_http_start(at_fake_http_fn fn, void *user, int *port);
void at_fake_http_stop(at_fake_http *s);

/* An answer with a body (len bytes; 0 for none). */
void at_fake_http_reply(int fd, const char *status, const char *body, size_t len);
/* The start of a request's `Range: bytes=N-`, or -1 without one. */
long at_fake_http_range(const char *head);
/* data (len bytes) from the request's range on: 200, 206 with its
 * Content-Range, or 416 past the end.  cut_after > 0 closes after that
 * many body bytes (an interrupted download); corrupt flips the byte in the
 * middle of the file (a download that does not match its hash). */
void at_fake_http_send_file(int fd, const char *head, const unsigned char *data, size_t len, size_t cut_after,
                            int corrupt);

#endif
