/* wyoming.c - reading and writing Wyoming events (see wyoming.h). */
#include "core/wyoming.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/http.h" /* at_json_print */
#include "core/strbuf.h"

#define WY_VERSION "1.5.4" /* the protocol version our events follow */

struct at_wy_reader {
    int fd;
    size_t max_payload;
    unsigned char buf[8192]; /* read ahead */
    size_t head, tail;
};

at_wy_reader *at_wy_reader_new(int fd, size_t max_payload)
{
    at_wy_reader *r = calloc(1, sizeof *r);
    if (r) {
        r->fd = fd;
        r->max_payload = max_payload;
    }
    return r;
}

void at_wy_reader_free(at_wy_reader *r) { free(r); }

void at_wy_event_free(at_wy_event *ev)
{
    cJSON_Delete(ev->data);
    free(ev->payload);
    memset(ev, 0, sizeof *ev);
}

static long long now_ms(void) { return (long long)(at_now_s() * 1000); }

/* Refills the read-ahead buffer: >0 bytes, 0 on EOF, negative on error or
 * when the deadline passed. */
static int fill(at_wy_reader *r, long long deadline, at_err *err)
{
    if (r->head == r->tail) r->head = r->tail = 0;
    for (;;) {
        long long left = deadline - now_ms();
        if (left <= 0) return at_err_set(err, AT_E_CANCELLED, "timed out waiting for an event");
        struct pollfd pf = {r->fd, POLLIN, 0};
        int pr = poll(&pf, 1, (int)(left > 1000 ? 1000 : left));
        if (pr < 0 && errno != EINTR) return at_err_set(err, AT_E_IO, "poll: %s", strerror(errno));
        if (pr <= 0) continue;
        ssize_t n = recv(r->fd, r->buf + r->tail, sizeof r->buf - r->tail, 0);
        if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (n < 0) return at_err_set(err, AT_E_IO, "recv: %s", strerror(errno));
        r->tail += (size_t)n;
        return (int)n;
    }
}

/* Copies exactly n bytes into out. */
static int read_exact(at_wy_reader *r, unsigned char *out, size_t n, long long deadline, at_err *err)
{
    size_t got = 0;
    while (got < n) {
        if (r->head == r->tail) {
            int rc = fill(r, deadline, err);
            if (rc < 0) return rc;
            if (rc == 0) return at_err_set(err, AT_E_INVALID, "the connection ended inside an event");
        }
        size_t k = r->tail - r->head;
        if (k > n - got) k = n - got;
        memcpy(out + got, r->buf + r->head, k);
        r->head += k;
        got += k;
    }
    return 0;
}

/* Wyoming's JSON is UTF-8: anything else is refused, not passed on. */
static int valid_utf8(const char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        size_t k = at_utf8_len((const unsigned char *)s + i, n - i);
        if (!k) return 0;
        i += k;
    }
    return 1;
}

#define WY_MAX_FIELDS 256 /* fields of an event's data */

/* A key given twice keeps its last value, as Python's json (the reference
 * implementation's parser) does; more than WY_MAX_FIELDS fields: -1. */
static int dedupe(cJSON *o)
{
    int n = 0;
    for (cJSON *it = o->child; it; it = it->next)
        if (++n > WY_MAX_FIELDS) return -1;
    cJSON *it = o->child;
    while (it) {
        cJSON *next = it->next, *later = next;
        while (later && strcmp(later->string, it->string) != 0) later = later->next;
        if (later) cJSON_Delete(cJSON_DetachItemViaPointer(o, it));
        it = next;
    }
    return 0;
}

/* A non-negative whole number field, or -1 if absent; -2 if malformed. */
static long long length_field(const cJSON *o, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    if (!v || cJSON_IsNull(v)) return -1;
    if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > 1e15 ||
        v->valuedouble != (double)(long long)v->valuedouble)
        return -2;
    return (long long)v->valuedouble;
}

int at_wy_read(at_wy_reader *r, at_wy_event *ev, int timeout_ms, at_err *err)
{
    memset(ev, 0, sizeof *ev);
    long long deadline = now_ms() + timeout_ms;
    /* the header line */
    char *line = NULL;
    size_t len = 0;
    for (;;) {
        unsigned char *nl = memchr(r->buf + r->head, '\n', r->tail - r->head);
        size_t take = nl ? (size_t)(nl - (r->buf + r->head)) : r->tail - r->head;
        if (len + take > AT_WY_LINE_MAX) {
            free(line);
            return at_err_set(err, AT_E_INVALID, "event header longer than %d bytes", AT_WY_LINE_MAX);
        }
        if (take) {
            char *nb = realloc(line, len + take + 1);
            if (!nb) {
                free(line);
                return at_err_set(err, AT_E_NOMEM, "out of memory");
            }
            line = nb;
            memcpy(line + len, r->buf + r->head, take);
            len += take;
        }
        r->head += take;
        if (nl) {
            r->head++; /* the newline */
            break;
        }
        int rc = fill(r, deadline, err);
        if (rc < 0) {
            free(line);
            return rc;
        }
        if (rc == 0) {
            free(line);
            if (len == 0) return 0; /* closed between events */
            return at_err_set(err, AT_E_INVALID, "the connection ended inside an event header");
        }
    }
    if (!line) return at_err_set(err, AT_E_INVALID, "empty event header line");
    line[len] = '\0';
    cJSON *hdr = valid_utf8(line, len) ? cJSON_ParseWithLength(line, len) : NULL;
    int nul = hdr && at_json_text_has_nul(line, len);
    free(line);
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(hdr, "type");
    long long dlen = length_field(hdr, "data_length"), plen = length_field(hdr, "payload_length");
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(hdr, "data");
    int rc = 0;
    if (!cJSON_IsObject(hdr))
        rc = at_err_set(err, AT_E_INVALID, "an event header must be one line of UTF-8 JSON, an object");
    else if (nul)
        rc = at_err_set(err, AT_E_INVALID, "an event header must not contain NUL characters");
    else if (!cJSON_IsString(type) || !type->valuestring[0] || strlen(type->valuestring) >= sizeof ev->type)
        rc = at_err_set(err, AT_E_INVALID, "an event needs a \"type\" string");
    else if (data && !cJSON_IsObject(data) && !cJSON_IsNull(data))
        rc = at_err_set(err, AT_E_INVALID, "an event's \"data\" must be an object");
    else if (dlen == -2 || plen == -2)
        rc = at_err_set(err, AT_E_INVALID, "data_length and payload_length must be whole numbers");
    else if (dlen > AT_WY_DATA_MAX)
        rc = at_err_set(err, AT_E_INVALID, "data_length %lld exceeds the limit of %d bytes", dlen,
                        AT_WY_DATA_MAX);
    else if (plen > (long long)r->max_payload)
        rc = at_err_set(err, AT_E_INVALID, "payload_length %lld exceeds the limit of %zu bytes", plen,
                        r->max_payload);
    if (rc) {
        cJSON_Delete(hdr);
        return rc;
    }
    snprintf(ev->type, sizeof ev->type, "%s", type->valuestring);
    ev->data = cJSON_IsObject(data) ? cJSON_Duplicate(data, 1) : cJSON_CreateObject();
    cJSON_Delete(hdr);
    if (!ev->data) return at_err_set(err, AT_E_NOMEM, "out of memory");
    if (dedupe(ev->data) != 0) {
        at_wy_event_free(ev);
        return at_err_set(err, AT_E_INVALID, "an event's data has more than %d fields", WY_MAX_FIELDS);
    }
    if (dlen > 0) {
        char *d = malloc((size_t)dlen + 1);
        if (!d) {
            at_wy_event_free(ev);
            return at_err_set(err, AT_E_NOMEM, "out of memory");
        }
        if ((rc = read_exact(r, (unsigned char *)d, (size_t)dlen, deadline, err)) != 0) {
            free(d);
            at_wy_event_free(ev);
            return rc;
        }
        d[dlen] = '\0';
        cJSON *more = valid_utf8(d, (size_t)dlen) ? cJSON_ParseWithLength(d, (size_t)dlen) : NULL;
        int bad = !cJSON_IsObject(more) || at_json_text_has_nul(d, (size_t)dlen);
        free(d);
        if (bad || dedupe(more) != 0) {
            cJSON_Delete(more);
            at_wy_event_free(ev);
            return at_err_set(err, AT_E_INVALID,
                              "an event's additional data must be a JSON object of at most "
                              "%d fields",
                              WY_MAX_FIELDS);
        }
        /* merged over the header's data */
        cJSON *it = more->child;
        while (it) {
            cJSON *next = it->next;
            cJSON_DetachItemViaPointer(more, it);
            cJSON_DeleteItemFromObjectCaseSensitive(ev->data, it->string);
            cJSON_AddItemToObject(ev->data, it->string, it);
            it = next;
        }
        cJSON_Delete(more);
    }
    if (plen > 0) {
        ev->payload = malloc((size_t)plen);
        if (!ev->payload) {
            at_wy_event_free(ev);
            return at_err_set(err, AT_E_NOMEM, "out of memory");
        }
        ev->payload_len = (size_t)plen;
        if ((rc = read_exact(r, ev->payload, (size_t)plen, deadline, err)) != 0) {
            at_wy_event_free(ev);
            return rc;
        }
    }
    return 1;
}

static int send_all(int fd, const void *p, size_t n, long long deadline, at_err *err)
{
    const unsigned char *b = p;
    while (n) {
        long long left = deadline - now_ms();
        if (left <= 0) return at_err_set(err, AT_E_IO, "the peer does not read");
        struct pollfd pf = {fd, POLLOUT, 0};
        int pr = poll(&pf, 1, (int)(left > 1000 ? 1000 : left));
        if (pr < 0 && errno != EINTR) return at_err_set(err, AT_E_IO, "poll: %s", strerror(errno));
        if (pr <= 0) continue;
        ssize_t w = send(fd, b, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (w <= 0) return at_err_set(err, AT_E_IO, "send: %s", w < 0 ? strerror(errno) : "closed");
        b += w;
        n -= (size_t)w;
    }
    return 0;
}

int at_wy_write(int fd, const char *type, const cJSON *data, const void *payload, size_t len, int timeout_ms,
                at_err *err)
{
    char *d = data && data->child ? at_json_print(data) : NULL;
    if (data && data->child && !d) return at_err_set(err, AT_E_NOMEM, "out of memory");
    cJSON *hdr = cJSON_CreateObject();
    cJSON_AddStringToObject(hdr, "type", type);
    cJSON_AddStringToObject(hdr, "version", WY_VERSION);
    if (d) cJSON_AddNumberToObject(hdr, "data_length", (double)strlen(d));
    if (payload && len) cJSON_AddNumberToObject(hdr, "payload_length", (double)len);
    char *h = at_json_print(hdr);
    cJSON_Delete(hdr);
    if (!h) {
        free(d);
        return at_err_set(err, AT_E_NOMEM, "out of memory");
    }
    long long deadline = now_ms() + timeout_ms;
    size_t hl = strlen(h);
    int rc = send_all(fd, h, hl, deadline, err);
    if (!rc) rc = send_all(fd, "\n", 1, deadline, err);
    if (!rc && d) rc = send_all(fd, d, strlen(d), deadline, err);
    if (!rc && payload && len) rc = send_all(fd, payload, len, deadline, err);
    free(h);
    free(d);
    return rc;
}
