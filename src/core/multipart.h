/* multipart.h - parsing a buffered multipart/form-data body (RFC 7578).
 *
 * Parts point into the caller's body buffer (no copies), so the body must
 * outlive the form. */
#ifndef AT_CORE_MULTIPART_H
#define AT_CORE_MULTIPART_H

#include <stddef.h>

#include "core/error.h"

#define AT_MULTIPART_MAX_PARTS 32

typedef struct at_part {
    char name[128];         /* form field name */
    char filename[256];     /* "" if not a file */
    char content_type[128]; /* "" if absent */
    const unsigned char *data;
    size_t len;
} at_part;

typedef struct at_form {
    at_part parts[AT_MULTIPART_MAX_PARTS];
    size_t n;
} at_form;

/* content_type: the request's Content-Type header (boundary taken from it).
 * AT_E_INVALID with a clear message for a missing boundary, a malformed
 * part, or more than AT_MULTIPART_MAX_PARTS parts. */
int at_multipart_parse(const char *content_type, const unsigned char *body, size_t len, at_form *form,
                       at_err *err);
/* Notes (added): boundary 1..70 chars, quoted or not; "--boundary" may
 * start the body or follow a preamble; header lines may end in LF alone;
 * every part needs Content-Disposition: form-data with a name; a name of
 * >= 128 bytes, a filename of >= 256 or a Content-Type of >= 128 is
 * AT_E_INVALID (not truncated); backslash escapes \" and \\ are decoded in
 * quoted values, any other backslash is kept (Windows paths). */
/* First part with that name, or NULL. */
const at_part *at_form_get(const at_form *f, const char *name);
/* Copies a text field into buf (NUL-terminated, truncation = AT_E_INVALID);
 * returns 1 if present, 0 if absent, negative on error. */
int at_form_text(const at_form *f, const char *name, char *buf, size_t cap, at_err *err);

#endif
