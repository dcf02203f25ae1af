/* error.h - explicit error values carrying a message.
 *
 * Every fallible function in the project returns an int (0 = success,
 * negative = failure) or a pointer (NULL = failure) and fills an at_err
 * the caller owns.  No errno-style globals: the message travels with the
 * call, so it can be shown to a user or put into a JSON error body. */
#ifndef AT_CORE_ERROR_H
#define AT_CORE_ERROR_H

#include <stddef.h>

#define AT_ERR_MSG_MAX 512

/* Error classes let services map an engine failure to an HTTP status
 * without parsing messages. */
typedef enum {
    AT_OK = 0,
    AT_E_INVALID = -1,     /* bad input from the caller (HTTP 400) */
    AT_E_UNSUPPORTED = -2, /* unsupported format/language/voice (400/415) */
    AT_E_TOO_LARGE = -3,   /* size limit exceeded (413) */
    AT_E_NOMEM = -4,       /* allocation failed (500) */
    AT_E_IO = -5,          /* file/process/network I/O failed (500) */
    AT_E_ENGINE = -6,      /* engine internal failure (500) */
    AT_E_BUSY = -7,        /* capacity limit reached (503) */
    AT_E_CANCELLED = -8,   /* caller cancelled (client went away) */
    AT_E_CORRUPT = -9      /* corrupt model or data file */
} at_status;

typedef struct at_err {
    int code;                 /* one of at_status */
    char msg[AT_ERR_MSG_MAX]; /* human readable, no trailing newline */
} at_err;

/* Sets code and a printf-style message; returns code so callers can write
 * `return at_err_set(err, AT_E_INVALID, "...")`.  err may be NULL. */
int at_err_set(at_err *err, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* clang's static analyzer (scripts/analyze.sh) sees one file at a time:
 * without this it would assume an error return could be 0 and follow
 * every `rc = at_err_set(...)` into the success path. */
#ifdef __clang_analyzer__
#define at_err_set(err, code, ...) (at_err_set((err), (code), __VA_ARGS__), (code))
#endif

/* Resets to AT_OK with an empty message. err may be NULL. */
void at_err_clear(at_err *err);

/* A short machine-readable name for a code ("invalid_request", ...). */
const char *at_status_name(int code);

#endif
