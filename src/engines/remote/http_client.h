/* http_client.h - libcurl calls shared by the remote engines (private). */
#ifndef AT_ENGINES_REMOTE_HTTP_CLIENT_H
#define AT_ENGINES_REMOTE_HTTP_CLIENT_H

#include <stddef.h>

#include "core/error.h"

typedef struct cJSON cJSON;

/* api_key (NULL for none) travels as "Authorization: Bearer KEY". */

/* GET or POST (body != NULL, JSON) base+path; answers the parsed JSON body
 * of a 2xx response.  Errors name the service's own error message.
 * Responses over max_bytes are refused (AT_E_TOO_LARGE). */
cJSON *at_remote_json(const char *base, const char *api_key, const char *path, const char *body,
                      size_t max_bytes, int timeout_s, at_err *err);

/* Streams a POSTed JSON request's response body into cb as it arrives;
 * cb returns nonzero to stop (AT_E_CANCELLED).  While waiting, cb is also
 * called with n == 0 (data NULL) about once a second, so a hung service
 * cannot hold the caller.  A non-2xx answer is an error carrying the
 * service's message. */
typedef int (*at_remote_data_cb)(void *user, const unsigned char *data, size_t n);
int at_remote_stream(const char *base, const char *api_key, const char *path, const char *body, int timeout_s,
                     at_remote_data_cb cb, void *user, at_err *err);

#endif
