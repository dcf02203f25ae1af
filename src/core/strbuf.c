/* strbuf.c - growable string buffer (see strbuf.h). */
#include "core/strbuf.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define AT_STRBUF_INITIAL 256

/* Makes room for add more bytes plus the NUL; 0 on success, -1 (and oom
 * set) on failure. */
static int reserve(at_strbuf *b, size_t add)
{
    if (b->oom) return -1;
    if (add > SIZE_MAX - 1 - b->n) {
        b->oom = 1;
        return -1;
    }
    size_t need = b->n + add + 1;
    if (need <= b->cap) return 0;
    size_t nc = b->cap ? b->cap : AT_STRBUF_INITIAL;
    while (nc < need) {
        if (nc > SIZE_MAX / 2) {
            nc = need;
            break;
        }
        nc *= 2;
    }
    char *q = realloc(b->p, nc);
    if (!q) {
        b->oom = 1;
        return -1;
    }
    b->p = q;
    b->cap = nc;
    return 0;
}

void at_strbuf_put(at_strbuf *b, const char *s, size_t n)
{
    if (reserve(b, n)) return;
    if (n) memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
}

void at_strbuf_str(at_strbuf *b, const char *s) { at_strbuf_put(b, s, strlen(s)); }

void at_strbuf_printf(at_strbuf *b, const char *fmt, ...)
{
    if (b->oom) return;
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (k < 0) return;
    if (reserve(b, (size_t)k)) return;
    va_start(ap, fmt);
    vsnprintf(b->p + b->n, (size_t)k + 1, fmt, ap);
    va_end(ap);
    b->n += (size_t)k;
}

char *at_strbuf_take(at_strbuf *b)
{
    if (!b->p) at_strbuf_put(b, "", 0);
    if (b->oom) {
        at_strbuf_free(b);
        return NULL;
    }
    char *s = b->p;
    *b = (at_strbuf){0};
    return s;
}

void at_strbuf_free(at_strbuf *b)
{
    free(b->p);
    *b = (at_strbuf){0};
}

int at_utf8_valid(const char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        size_t k = at_utf8_len((const unsigned char *)s + i, n - i);
        if (!k) return 0;
        i += k;
    }
    return 1;
}

size_t at_utf8_len(const unsigned char *s, size_t left)
{
    if (left == 0) return 0;
    unsigned c = s[0];
    size_t n;
    unsigned min;
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) {
        n = 2;
        min = 0x80;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        min = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        min = 0x10000;
    } else
        return 0;
    if (left < n) return 0;
    unsigned cp = c & (0x3F >> (n - 1));
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        cp = cp << 6 | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    return n;
}

void at_strbuf_utf8(at_strbuf *b, const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0, run = 0; /* run: valid bytes not yet appended */
    while (i < n) {
        size_t k = at_utf8_len(u + i, n - i);
        if (k) {
            i += k;
            run += k;
            continue;
        }
        at_strbuf_put(b, s + i - run, run);
        at_strbuf_put(b, "\xEF\xBF\xBD", 3);
        run = 0;
        i++;
    }
    at_strbuf_put(b, s + n - run, run);
}
