/* translate_service.c - translate: LibreTranslate-compatible text translation.
 *
 *   POST /translate   JSON or form: q (string or array), source, target, format
 *   GET  /languages   [{code, name, targets}]
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "services/app.h"

static const char *language_name(const char *code)
{
    static const char *const names[][2] = {
        {"en", "English"},   {"es", "Spanish"},          {"ca", "Catalan"},
        {"fr", "French"},    {"pt", "Portuguese"},       {"it", "Italian"},
        {"de", "German"},    {"gl", "Galician"},         {"oc", "Occitan"},
        {"eo", "Esperanto"}, {"nb", "Norwegian Bokmål"}, {"nn", "Norwegian Nynorsk"},
        {"sv", "Swedish"},   {"da", "Danish"},           {"ro", "Romanian"},
        {"eu", "Basque"},    {"ar", "Arabic"},           {"en_US", "English (US)"},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcmp(names[i][0], code) == 0) return names[i][1];
    return code;
}

static void h_languages(at_http_req *req, void *user)
{
    at_app *app = user;
    if (!at_service_require_ready(app, req)) return;
    size_t n;
    const at_mt_pair *p = at_mt_engine_pairs(at_app_mt(app), &n);
    cJSON *arr = cJSON_CreateArray();
    for (size_t i = 0; i < n; i++) {
        cJSON *entry = NULL;
        cJSON *it;
        cJSON_ArrayForEach(it, arr)
        {
            if (strcmp(cJSON_GetObjectItem(it, "code")->valuestring, p[i].source) == 0) entry = it;
        }
        if (!entry) {
            entry = cJSON_CreateObject();
            cJSON_AddStringToObject(entry, "code", p[i].source);
            cJSON_AddStringToObject(entry, "name", language_name(p[i].source));
            cJSON_AddArrayToObject(entry, "targets");
            cJSON_AddItemToArray(arr, entry);
        }
        cJSON_AddItemToArray(cJSON_GetObjectItem(entry, "targets"), cJSON_CreateString(p[i].target));
    }
    at_http_respond_json(req, 200, arr);
    cJSON_Delete(arr);
}

/* application/x-www-form-urlencoded -> a JSON object (q may repeat). */
static cJSON *parse_form(const char *body, size_t len, int *nul)
{
    cJSON *o = cJSON_CreateObject();
    char *copy = malloc(len + 1);
    if (!o || !copy) {
        cJSON_Delete(o);
        free(copy);
        return NULL;
    }
    memcpy(copy, body, len);
    copy[len] = '\0';
    char *save = NULL;
    for (char *tok = strtok_r(copy, "&", &save); tok; tok = strtok_r(NULL, "&", &save)) {
        char *eq = strchr(tok, '=');
        if (!eq) continue;
        *eq = '\0';
        char *k = tok, *v = eq + 1;
        for (char *s = v, *d = v;; s++) { /* url-decode */
            if (*s == '+')
                *d++ = ' ';
            else if (*s == '%' && s[1] && s[2]) {
                char h[3] = {s[1], s[2], 0};
                *d = (char)strtol(h, NULL, 16);
                if (!*d++) *nul = 1; /* %00 would end the C string here */
                s += 2;
            } else {
                *d++ = *s;
                if (!*s) break;
            }
        }
        if (!cJSON_GetObjectItemCaseSensitive(o, k)) cJSON_AddStringToObject(o, k, v);
    }
    free(copy);
    return o;
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void h_translate(at_http_req *req, void *user)
{
    at_app *app = user;
    if (!at_service_require_ready(app, req)) return;
    size_t len;
    const char *body = (const char *)at_http_req_body(req, &len);
    const char *ctype = at_http_req_header(req, "content-type");
    cJSON *o;
    int nul = 0;
    if (ctype && strncasecmp(ctype, "application/x-www-form-urlencoded", 33) == 0)
        o = parse_form(body, len, &nul);
    else {
        o = cJSON_ParseWithLength(body, len);
        nul = o && at_json_text_has_nul(body, len);
    }
    if (nul) {
        cJSON_Delete(o);
        at_http_error(req, 400, "invalid_request_error",
                      "the text contains a NUL character (\\u0000 or %%00); remove it");
        return;
    }
    if (!cJSON_IsObject(o)) {
        cJSON_Delete(o);
        at_http_error(req, 400, "invalid_request_error",
                      len ? "the body is not a valid JSON object"
                          : "empty body; send JSON {\"q\":..., \"source\":..., \"target\":...}");
        return;
    }
    const cJSON *q = cJSON_GetObjectItemCaseSensitive(o, "q");
    const cJSON *src = cJSON_GetObjectItemCaseSensitive(o, "source");
    const cJSON *tgt = cJSON_GetObjectItemCaseSensitive(o, "target");
    const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(o, "format");
    size_t max_chars = at_app_cfg(app)->max_text_chars;
    if (!q || !(cJSON_IsString(q) || cJSON_IsArray(q))) {
        at_http_error(req, 400, "invalid_request_error", "'q' is required: a string or an array of strings");
    } else if (!cJSON_IsString(src) || !cJSON_IsString(tgt)) {
        at_http_error(req, 400, "invalid_request_error", "'source' and 'target' are required");
    } else if (strcmp(src->valuestring, "auto") == 0) {
        at_http_error(req, 400, "invalid_request_error",
                      "language detection is not available; give 'source' explicitly");
    } else if (fmt && (!cJSON_IsString(fmt) || strcmp(fmt->valuestring, "text") != 0)) {
        at_http_error(req, 400, "invalid_request_error", "unsupported format; only \"text\" is supported");
    } else {
        /* Validate every item and the total size before any work. */
        int n = cJSON_IsArray(q) ? cJSON_GetArraySize(q) : 1;
        size_t total = 0;
        int bad = 0;
        for (int i = 0; i < n && !bad; i++) {
            const cJSON *it = cJSON_IsArray(q) ? cJSON_GetArrayItem(q, i) : q;
            if (!cJSON_IsString(it))
                bad = 1;
            else
                total += strlen(it->valuestring);
        }
        at_mt_engine *mt = at_app_mt(app);
        if (bad) {
            at_http_error(req, 400, "invalid_request_error", "every item of 'q' must be a string");
        } else if (n == 0 || total == 0) {
            at_http_error(req, 400, "invalid_request_error", "'q' is empty: nothing to translate");
        } else if (total > max_chars) {
            at_http_error(req, 413, "invalid_request_error",
                          "text of %zu characters exceeds the limit of %zu", total, max_chars);
        } else if (strcmp(src->valuestring, tgt->valuestring) != 0 &&
                   !at_mt_engine_has_pair(mt, src->valuestring, tgt->valuestring)) {
            at_err err;
            char *out = NULL;
            at_mt_translate(mt, src->valuestring, tgt->valuestring, "x", &out, &err);
            free(out);
            at_http_error(req, 400, "invalid_request_error", "%s", err.msg);
        } else {
            cJSON *res = cJSON_CreateObject();
            cJSON *arr = cJSON_IsArray(q) ? cJSON_AddArrayToObject(res, "translatedText") : NULL;
            double t0 = now_s();
            int failed = 0;
            for (int i = 0; i < n && !failed; i++) {
                const char *text = (cJSON_IsArray(q) ? cJSON_GetArrayItem(q, i) : q)->valuestring;
                char *out = NULL;
                at_err err;
                at_err_clear(&err);
                if (!*text)
                    out = strdup("");
                else if (at_mt_translate(mt, src->valuestring, tgt->valuestring, text, &out, &err)) {
                    at_http_error_from(req, &err);
                    failed = 1;
                    break;
                }
                if (arr)
                    cJSON_AddItemToArray(arr, cJSON_CreateString(out ? out : ""));
                else
                    cJSON_AddStringToObject(res, "translatedText", out ? out : "");
                free(out);
            }
            at_app_observe(app, "mt_translate", now_s() - t0);
            if (!failed) at_http_respond_json(req, 200, res);
            cJSON_Delete(res);
        }
    }
    cJSON_Delete(o);
}

static const at_http_route routes[] = {
    AT_SERVICE_COMMON_ROUTES,
    {"GET", "/languages", h_languages, NULL, AT_ROUTE_INLINE | AT_ROUTE_OPEN}, /* open, as LibreTranslate's */
    {"POST", "/translate", h_translate, NULL, AT_ROUTE_WORKER},
};

int at_translate_service_listen(at_app *app, at_http_server *srv, const char *iface, int port, int *bound,
                                at_err *err)
{
    if (at_http_server_listen(srv, "translate", iface, port, routes, sizeof routes / sizeof routes[0], app, bound,
                              err))
        return -1;
    /* LibreTranslate's clients read {"error": "message"} */
    at_http_server_set_errors(srv, "translate", AT_ERRORS_PLAIN);
    return 0;
}
