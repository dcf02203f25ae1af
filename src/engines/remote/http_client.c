/* http_client.c - JSON and streamed requests over libcurl. */
#include "engines/remote/http_client.h"

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct sink {
    char *data;
    size_t n, cap, max;
    int too_large;
    /* streaming: */
    long status;
    CURL *curl;
    at_remote_data_cb cb;
    void *user;
    int cancelled;
} sink;

static size_t to_buffer(char *p, size_t size, size_t nmemb, void *user)
{
    sink *s = user;
    size_t n = size * nmemb;
    if (s->n + n + 1 > s->max) {
        s->too_large = 1;
        return 0;
    }
    if (s->n + n + 1 > s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 4096;
        while (cap < s->n + n + 1) cap *= 2;
        char *d = realloc(s->data, cap);
        if (!d) return 0;
        s->data = d;
        s->cap = cap;
    }
    memcpy(s->data + s->n, p, n);
    s->n += n;
    s->data[s->n] = '\0';
    return n;
}

/* The service's {"error":{"message":...}} (OpenAI's shape),
 * {"error":"..."} (LibreTranslate's) or the raw body. */
static int http_failure(at_err *err, const char *url, long status, const char *body)
{
    cJSON *o = body ? cJSON_Parse(body) : NULL;
    const cJSON *e = o ? cJSON_GetObjectItemCaseSensitive(o, "error") : NULL;
    const cJSON *m = cJSON_IsString(e) ? e : e ? cJSON_GetObjectItemCaseSensitive(e, "message") : NULL;
    int code = status == 400 || status == 413 || status == 422 ? AT_E_INVALID
               : status == 503                                 ? AT_E_BUSY
                                                               : AT_E_IO;
    at_err_set(err, code, "%s answered %ld: %.300s", url, status,
               cJSON_IsString(m) ? m->valuestring
               : body            ? body
                                 : "");
    cJSON_Delete(o);
    return code;
}

static CURL *prepare(const char *url, const char *api_key, const char *body, struct curl_slist **hdrs,
                     int timeout_s)
{
    CURL *c = curl_easy_init();
    if (!c) return NULL;
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L); /* threads: no SIGALRM */
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 5L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, (long)timeout_s);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http");
    if (api_key && api_key[0]) {
        char h[320];
        snprintf(h, sizeof h, "Authorization: Bearer %s", api_key);
        *hdrs = curl_slist_append(*hdrs, h);
    }
    if (body) *hdrs = curl_slist_append(*hdrs, "Content-Type: application/json");
    if (*hdrs) curl_easy_setopt(c, CURLOPT_HTTPHEADER, *hdrs);
    if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    }
    return c;
}

cJSON *at_remote_json(const char *base, const char *api_key, const char *path, const char *body,
                      size_t max_bytes, int timeout_s, at_err *err)
{
    char url[1024];
    snprintf(url, sizeof url, "%s%s", base, path);
    struct curl_slist *hdrs = NULL;
    CURL *c = prepare(url, api_key, body, &hdrs, timeout_s);
    if (!c) {
        at_err_set(err, AT_E_NOMEM, "cannot create an HTTP client");
        return NULL;
    }
    sink s = {0};
    s.max = max_bytes;
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, to_buffer);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &s);
    CURLcode rc = curl_easy_perform(c);
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(c);
    curl_slist_free_all(hdrs);
    cJSON *o = NULL;
    if (s.too_large)
        at_err_set(err, AT_E_TOO_LARGE, "%s: response over %zu bytes", url, max_bytes);
    else if (rc != CURLE_OK)
        at_err_set(err, AT_E_IO, "%s: %s", url, curl_easy_strerror(rc));
    else if (status < 200 || status >= 300)
        http_failure(err, url, status, s.data);
    else if (!(o = s.data ? cJSON_ParseWithLength(s.data, s.n) : NULL))
        at_err_set(err, AT_E_IO, "%s: the answer is not JSON", url);
    free(s.data);
    return o;
}

static size_t to_callback(char *p, size_t size, size_t nmemb, void *user)
{
    sink *s = user;
    size_t n = size * nmemb;
    if (!s->status) curl_easy_getinfo(s->curl, CURLINFO_RESPONSE_CODE, &s->status);
    if (s->status < 200 || s->status >= 300) {
        /* An error body: keep (a bounded amount of) it for the message. */
        if (s->n + n < 4096) to_buffer(p, size, nmemb, s);
        return n;
    }
    if (s->cb(s->user, (const unsigned char *)p, n)) {
        s->cancelled = 1;
        return 0;
    }
    return n;
}

/* libcurl calls this about once a second even while nothing arrives: the
 * callback, asked with no data, can stop a request to a hung service. */
static int keep_going(void *u, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow)
{
    (void)dltotal, (void)dlnow, (void)ultotal, (void)ulnow;
    sink *s = u;
    if (!s->cb(s->user, NULL, 0)) return 0;
    s->cancelled = 1;
    return 1;
}

int at_remote_stream(const char *base, const char *api_key, const char *path, const char *body, int timeout_s,
                     at_remote_data_cb cb, void *user, at_err *err)
{
    char url[1024];
    snprintf(url, sizeof url, "%s%s", base, path);
    struct curl_slist *hdrs = NULL;
    CURL *c = prepare(url, api_key, body, &hdrs, timeout_s);
    if (!c) return at_err_set(err, AT_E_NOMEM, "cannot create an HTTP client");
    sink s = {0};
    s.max = 4096;
    s.curl = c;
    s.cb = cb;
    s.user = user;
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, to_callback);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &s);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, keep_going);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, &s);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    CURLcode rc = curl_easy_perform(c);
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(c);
    curl_slist_free_all(hdrs);
    int ret = 0;
    if (s.cancelled)
        ret = at_err_set(err, AT_E_CANCELLED, "cancelled");
    else if (rc != CURLE_OK)
        ret = at_err_set(err, AT_E_IO, "%s: %s", url, curl_easy_strerror(rc));
    else if (status < 200 || status >= 300)
        ret = http_failure(err, url, status, s.data);
    free(s.data);
    return ret;
}
