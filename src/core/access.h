/* access.h - who may use a service: API keys, rate limits and CORS.
 *
 * A shared deployment needs to know its callers.  With a keys file every
 * request except /health and /ready (and /metrics unless it is closed too)
 * must carry one of the keys, as OpenAI clients send it (Authorization:
 * Bearer KEY) or, for LibreTranslate's clients, as `api_key` in the body;
 * `?api_key=` works everywhere (a browser cannot set headers on a
 * WebSocket).  Requests are also counted per key and per client address in
 * token buckets, so one caller cannot take the service for itself.  The
 * HTTP server (core/http.c) applies all of it; this module only decides. */
#ifndef AT_CORE_ACCESS_H
#define AT_CORE_ACCESS_H

#include <stddef.h>

#include "core/error.h"

typedef struct at_access at_access;

typedef struct at_access_config {
    const char *keys_file;    /* one key per line, '#' comments; NULL or "": no keys */
    double key_per_min;       /* requests a minute per key (0: unlimited) */
    double addr_per_min;      /* requests a minute per client address (0: unlimited) */
    int metrics_need_key;     /* /metrics is closed too */
    const char *cors_origins; /* "*" or a comma-separated list of origins; NULL/"": no CORS */
} at_access_config;

/* Reads the keys file: a missing or unreadable file, an empty one, or a
 * key shorter than 8 or longer than 256 characters is an error (a typo
 * must not open the service to everyone). */
at_access *at_access_new(const at_access_config *cfg, at_err *err);
void at_access_free(at_access *a);

/* 1 when requests must carry a key. */
int at_access_keys_required(const at_access *a);
/* 1 when `path` needs a key (keys required and not an open path). */
int at_access_path_guarded(const at_access *a, const char *path);
/* 1 if `key` is one of the keys; compared in constant time. */
int at_access_key_valid(const at_access *a, const char *key);
/* Counts one request against `key` (may be NULL) and `addr`.  0 if it may
 * go on, else the seconds until it may (for Retry-After), and *which says
 * "key" or "address". */
int at_access_take(at_access *a, const char *key, const char *addr, const char **which);
/* The Access-Control-Allow-Origin value for a request from `origin`, or
 * NULL when CORS is off or the origin is not allowed. */
const char *at_access_cors(const at_access *a, const char *origin);

/* The key in an Authorization header value ("Bearer KEY"), or NULL. */
const char *at_access_bearer(const char *authorization);

#endif
