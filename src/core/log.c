/* log.c - logfmt / JSON-lines logger.
 *
 * Each line is built in memory and handed to write() whole; a mutex keeps
 * a retried partial write from interleaving with another thread's line.
 * Values come from requests (paths, user agents), so control characters
 * and invalid UTF-8 are escaped rather than copied. */
#include "core/log.h"

#include "core/strbuf.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define AT_LOG_VALUE_MAX 4096 /* longer values are cut, marked with "..." */

struct at_log {
    int fd;
    at_log_level min;
    int json;
    pthread_mutex_t mu;
};

at_log *at_log_new(int fd, at_log_level min_level, int json)
{
    at_log *l = calloc(1, sizeof *l);
    if (!l) return NULL;
    l->fd = fd;
    l->min = min_level;
    l->json = json != 0;
    pthread_mutex_init(&l->mu, NULL);
    return l;
}

void at_log_free(at_log *l)
{
    if (!l) return;
    pthread_mutex_destroy(&l->mu);
    free(l);
}

int at_log_level_parse(const char *s)
{
    if (!s) return -1;
    if (!strcasecmp(s, "debug")) return AT_LOG_DEBUG;
    if (!strcasecmp(s, "info")) return AT_LOG_INFO;
    if (!strcasecmp(s, "warn") || !strcasecmp(s, "warning")) return AT_LOG_WARN;
    if (!strcasecmp(s, "error")) return AT_LOG_ERROR;
    return -1;
}

static const char *level_name(at_log_level l)
{
    switch (l) {
    case AT_LOG_DEBUG: return "debug";
    case AT_LOG_INFO: return "info";
    case AT_LOG_WARN: return "warn";
    default: return "error";
    }
}

/* Escapes for a double-quoted string: JSON rules (valid for logfmt too,
 * since logfmt parsers accept Go-style \" \\ \n \t \uXXXX). */
static void lb_quoted(at_strbuf *b, const char *s)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t len = strlen(s), cut = len > AT_LOG_VALUE_MAX ? AT_LOG_VALUE_MAX : len;
    at_strbuf_put(b, "\"", 1);
    for (size_t i = 0; i < cut;) {
        unsigned c = u[i];
        char tmp[8];
        if (c == '"')
            at_strbuf_put(b, "\\\"", 2);
        else if (c == '\\')
            at_strbuf_put(b, "\\\\", 2);
        else if (c == '\n')
            at_strbuf_put(b, "\\n", 2);
        else if (c == '\r')
            at_strbuf_put(b, "\\r", 2);
        else if (c == '\t')
            at_strbuf_put(b, "\\t", 2);
        else if (c < 0x20 || c == 0x7F) {
            snprintf(tmp, sizeof tmp, "\\u%04x", c);
            at_strbuf_put(b, tmp, 6);
        } else if (c < 0x80) {
            at_strbuf_put(b, (const char *)u + i, 1);
        } else {
            size_t k = at_utf8_len(u + i, cut - i);
            if (k) {
                at_strbuf_put(b, (const char *)u + i, k);
                i += k;
                continue;
            }
            at_strbuf_put(b, "\\ufffd", 6); /* invalid byte: keep the line valid UTF-8 */
        }
        i++;
    }
    if (cut < len) at_strbuf_put(b, "...", 3);
    at_strbuf_put(b, "\"", 1);
}

/* logfmt values stay bare when they are plain tokens. */
static int needs_quotes(const char *s)
{
    if (!*s || strlen(s) > AT_LOG_VALUE_MAX) return 1;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p <= ' ' || *p == '=' || *p == '"' || *p == '\\' || *p >= 0x7F) return 1;
    return 0;
}

/* Keys come from code, but a bad one must not break the line format. */
static void lb_key(at_strbuf *b, const char *k)
{
    if (!*k) {
        at_strbuf_put(b, "_", 1);
        return;
    }
    for (const char *p = k; *p; p++) {
        char c = *p;
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
                 c == '.' || c == '-';
        at_strbuf_put(b, ok ? p : "_", 1);
    }
}

static void timestamp(char out[64])
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    snprintf(out, 64, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
             tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000L);
}

void at_log_write(at_log *l, at_log_level level, const char *msg, ...)
{
    if (!l || level < l->min) return;
    char ts[64];
    timestamp(ts);
    at_strbuf b = {0};
    if (!msg) msg = "";
    if (l->json) {
        at_strbuf_str(&b, "{\"ts\":\"");
        at_strbuf_str(&b, ts);
        at_strbuf_str(&b, "\",\"level\":\"");
        at_strbuf_str(&b, level_name(level));
        at_strbuf_str(&b, "\",\"msg\":");
        lb_quoted(&b, msg);
    } else {
        at_strbuf_str(&b, "ts=");
        at_strbuf_str(&b, ts);
        at_strbuf_str(&b, " level=");
        at_strbuf_str(&b, level_name(level));
        at_strbuf_str(&b, " msg=");
        lb_quoted(&b, msg); /* always quoted: reads well and greps well */
    }
    va_list ap;
    va_start(ap, msg);
    for (;;) {
        const char *k = va_arg(ap, const char *);
        if (!k) break;
        const char *v = va_arg(ap, const char *);
        /* A NULL value may be the terminator after an odd key: reading on
         * would run past the arguments, so log the key empty and stop. */
        int stop = v == NULL;
        if (!v) v = "";
        if (l->json) {
            at_strbuf_put(&b, ",", 1);
            lb_quoted(&b, k);
            at_strbuf_put(&b, ":", 1);
            lb_quoted(&b, v);
        } else {
            at_strbuf_put(&b, " ", 1);
            lb_key(&b, k);
            at_strbuf_put(&b, "=", 1);
            if (needs_quotes(v))
                lb_quoted(&b, v);
            else
                at_strbuf_str(&b, v);
        }
        if (stop) break;
    }
    va_end(ap);
    if (l->json) at_strbuf_put(&b, "}", 1);
    at_strbuf_put(&b, "\n", 1);
    if (b.oom) {
        at_strbuf_free(&b);
        return;
    }
    pthread_mutex_lock(&l->mu);
    for (size_t off = 0; off < b.n;) {
        ssize_t w = write(l->fd, b.p + off, b.n - off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) break; /* nowhere to report a failing log sink */
        off += (size_t)w;
    }
    pthread_mutex_unlock(&l->mu);
    at_strbuf_free(&b);
}
