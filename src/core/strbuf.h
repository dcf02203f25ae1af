/* strbuf.h - a growable, always NUL-terminated string buffer.
 *
 * Used to build whole documents and lines in memory (log lines, metrics
 * pages, subtitles, help text).  There is no size cap: what goes in is
 * bounded by the caller's inputs.  An allocation failure is sticky: once
 * oom is set every later append is a no-op, so callers append freely and
 * check once at the end (at_strbuf_take returns NULL, or test b.oom).
 *
 *   at_strbuf b = {0};
 *   at_strbuf_str(&b, "hello ");
 *   at_strbuf_printf(&b, "%d", 42);
 *   char *s = at_strbuf_take(&b);   // "hello 42", or NULL on OOM
 */
#ifndef AT_CORE_STRBUF_H
#define AT_CORE_STRBUF_H

#include <stddef.h>

typedef struct at_strbuf {
    char *p;    /* NULL until the first append, then NUL-terminated */
    size_t n;   /* length, not counting the NUL */
    size_t cap; /* bytes allocated at p */
    int oom;    /* set on the first failed allocation; never cleared */
} at_strbuf;

/* Appends n bytes of s. */
void at_strbuf_put(at_strbuf *b, const char *s, size_t n);
/* Appends the C string s. */
void at_strbuf_str(at_strbuf *b, const char *s);
/* Appends printf-formatted text.  A format error (vsnprintf < 0) appends
 * nothing and does not set oom. */
void at_strbuf_printf(at_strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends n bytes of s with every byte that is not part of a valid UTF-8
 * sequence replaced by U+FFFD, so user input can be echoed into JSON. */
void at_strbuf_utf8(at_strbuf *b, const char *s, size_t n);
/* Length of the valid UTF-8 sequence at s (1..4; 0 if invalid or cut
 * short by left): no overlong forms, surrogates or values past U+10FFFF. */
size_t at_utf8_len(const unsigned char *s, size_t left);
/* Nonzero when the n bytes at s are valid UTF-8 throughout. */
int at_utf8_valid(const char *s, size_t n);
/* Hands over the malloc'd string ("" if nothing was appended) and leaves b
 * empty; on OOM frees what was built and returns NULL. */
char *at_strbuf_take(at_strbuf *b);
/* Frees the contents and leaves b empty (reusable).  b may be zeroed. */
void at_strbuf_free(at_strbuf *b);

#endif
