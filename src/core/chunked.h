/* chunked.h - decoding an HTTP/1.1 chunked request body (RFC 9112 7.1).
 *
 * libwebsockets 4.1 hands a request body without Content-Length to the
 * server as raw bytes, chunk framing included, and never ends it: clients
 * that stream an upload (the OpenAI SDK given a file stream, curl -T -)
 * send exactly that.  This decoder takes the raw bytes in pieces as they
 * arrive, passes the payload on, and says when the last chunk and its
 * trailers have been read. */
#ifndef AT_CORE_CHUNKED_H
#define AT_CORE_CHUNKED_H

#include <stddef.h>

#include "core/error.h"

typedef struct at_chunked at_chunked;

/* Receives decoded payload bytes; a negative return stops decoding and is
 * returned by at_chunked_feed (err should be set by the sink). */
typedef int (*at_chunked_sink)(void *user, const unsigned char *data, size_t len, at_err *err);

/* limit: most payload bytes accepted in total (more is AT_E_TOO_LARGE,
 * found as soon as a chunk size says so, before its bytes arrive). */
at_chunked *at_chunked_new(size_t limit);
void at_chunked_free(at_chunked *c);

/* Feeds the next len raw bytes.  Returns 1 once the body is complete
 * (*used tells how many bytes of `in` belonged to it; the rest is the next
 * request), 0 when more input is needed (*used == len), AT_E_INVALID for
 * malformed framing, AT_E_TOO_LARGE past the limit, or the sink's error.
 * After a non-zero return further calls return the same result. */
int at_chunked_feed(at_chunked *c, const unsigned char *in, size_t len, size_t *used, at_chunked_sink sink,
                    void *user, at_err *err);

/* Payload bytes passed to the sink so far. */
size_t at_chunked_total(const at_chunked *c);

#endif
