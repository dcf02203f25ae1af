/* translate_service.c - translate: LibreTranslate-compatible text translation.
 *
 *   POST /translate          JSON, form or multipart: q (string or array),
 *                            source (a code or "auto"), target, format
 *                            ("text" or "html"), alternatives, api_key
 *   POST /detect             q -> [{confidence, language}]
 *   GET  /languages          [{code, name, targets}]
 *   GET  /frontend/settings  what LibreTranslate's page and clients read
 *
 * As LibreTranslate: codes are case-insensitive, errors are
 * {"error": "message"}, "auto" answers detectedLanguage. */
#include <cjson/cJSON.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "core/multipart.h"
#include "core/clock.h"
#include "core/strbuf.h"
#include "engines/mt/langid.h"
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
        /* LibreTranslate lists languages: a regional variant (Apertium's
         * en_US beside en) is not one of its own */
        const char *us = strchr(p[i].target, '_');
        int dup = 0;
        if (us)
            for (size_t k = 0; k < n && !dup; k++)
                dup = strcmp(p[k].source, p[i].source) == 0 &&
                      strlen(p[k].target) == (size_t)(us - p[i].target) &&
                      strncmp(p[k].target, p[i].target, (size_t)(us - p[i].target)) == 0;
        if (!dup)
            cJSON_AddItemToArray(cJSON_GetObjectItem(entry, "targets"), cJSON_CreateString(p[i].target));
    }
    at_http_respond_json(req, 200, arr);
    cJSON_Delete(arr);
}

/* Texts in one request's 'q' (their characters are bounded apart, by
 * --max-text-chars: empty items cost nothing there). */
#define MAX_Q_ITEMS 1000

/* The fields a request may carry; a form's others are skipped, so a body
 * of thousands of distinct names costs no search through them. */
static int known_field(const char *k)
{
    static const char *const names[] = {"q", "source", "target", "format", "alternatives", "api_key"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcmp(k, names[i]) == 0) return 1;
    return 0;
}

/* application/x-www-form-urlencoded -> a JSON object (a repeated field:
 * its first value). */
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
        if (!known_field(k)) continue;
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

/* multipart/form-data (as LibreTranslate accepts it) -> a JSON object. */
static cJSON *parse_multipart(at_http_req *req, const char *ctype, const unsigned char *body, size_t len,
                              int *nul)
{
    at_form *f = malloc(sizeof *f);
    at_err err;
    cJSON *o = NULL;
    if (f && at_multipart_parse(ctype, body, len, f, &err) == 0) {
        o = cJSON_CreateObject();
        for (size_t i = 0; o && i < f->n; i++) {
            const at_part *p = &f->parts[i];
            if (cJSON_GetObjectItemCaseSensitive(o, p->name)) continue;
            if (memchr(p->data, '\0', p->len)) *nul = 1;
            char *v = strndup((const char *)p->data, p->len);
            if (v) cJSON_AddStringToObject(o, p->name, v);
            free(v);
        }
    } else if (f) {
        at_http_error(req, 400, "invalid_request_error", "%s", err.msg);
    }
    free(f);
    return o;
}

/* The request's fields whatever the body's encoding; NULL once an error
 * has been sent. */
static cJSON *request_fields(at_http_req *req)
{
    size_t len;
    const char *body = (const char *)at_http_req_body(req, &len);
    const char *ctype = at_http_req_header(req, "content-type");
    cJSON *o;
    int nul = 0;
    if (ctype && strncasecmp(ctype, "application/x-www-form-urlencoded", 33) == 0) {
        o = parse_form(body, len, &nul);
    } else if (ctype && strncasecmp(ctype, "multipart/form-data", 19) == 0) {
        o = parse_multipart(req, ctype, (const unsigned char *)body, len, &nul);
        if (!o) return NULL; /* answered */
    } else {
        o = cJSON_ParseWithLength(body, len);
        nul = o && at_json_text_has_nul(body, len);
    }
    if (nul) {
        cJSON_Delete(o);
        at_http_error(req, 400, "invalid_request_error",
                      "the text contains a NUL character (\\u0000 or %%00); remove it");
        return NULL;
    }
    if (!cJSON_IsObject(o)) {
        cJSON_Delete(o);
        at_http_error(req, 400, "invalid_request_error",
                      len ? "the body is not a valid JSON object"
                          : "empty body; send JSON {\"q\":..., \"source\":..., \"target\":...}");
        return NULL;
    }
    return o;
}

/* A language code as LibreTranslate's clients send it, lower-cased
 * ("EN" and "en" are the same language). */
static void lower_code(const char *in, char *out, size_t cap)
{
    size_t i = 0;
    for (; in[i] && i + 1 < cap; i++) out[i] = (char)tolower((unsigned char)in[i]);
    out[i] = '\0';
}

/* 1 if some pair translates from `code`. */
static int is_source(at_mt_engine *mt, const char *code)
{
    size_t n;
    const at_mt_pair *p = at_mt_engine_pairs(mt, &n);
    for (size_t i = 0; i < n; i++)
        if (strcmp(p[i].source, code) == 0) return 1;
    return 0;
}

/* source "auto": the best guess the engine can translate from (or the
 * target itself); 0 with *code set, or an error sent. */
static int detect_source(at_http_req *req, at_mt_engine *mt, const char *text, const char *target, char *code,
                         size_t cap, double *confidence)
{
    at_langid_guess g[3];
    int n;
    at_err err;
    if (at_langid_detect(text, strlen(text), g, &n, &err) != 0) {
        at_http_error_from(req, &err);
        return -1;
    }
    for (int i = 0; i < n; i++) {
        if (is_source(mt, g[i].code) || strcmp(g[i].code, target) == 0) {
            snprintf(code, cap, "%s", g[i].code);
            *confidence = g[i].confidence;
            return 0;
        }
    }
    if (n > 0)
        at_http_error(req, 400, "invalid_request_error",
                      "the text looks like '%s', which cannot be translated here; GET /languages lists what "
                      "can",
                      g[0].code);
    else
        at_http_error(req, 400, "invalid_request_error",
                      "cannot tell the language of the text; give 'source' explicitly");
    return -1;
}

/* ---- format "html": the text between tags is translated, the markup
 * kept as it is ---- */

/* Decodes the character references text needs (&amp; &lt; &gt; &quot;
 * &#39; &nbsp; and numeric ones) in place. */
static void html_unescape(char *s)
{
    static const struct {
        const char *ent, *txt;
    } named[] = {{"&amp;", "&"}, {"&lt;", "<"},   {"&gt;", ">"},         {"&quot;", "\""},
                 {"&#39;", "'"}, {"&apos;", "'"}, {"&nbsp;", "\xc2\xa0"}};
    char *o = s;
    while (*s) {
        int done = 0;
        if (*s == '&') {
            for (size_t i = 0; i < sizeof named / sizeof named[0] && !done; i++) {
                size_t n = strlen(named[i].ent);
                if (strncmp(s, named[i].ent, n) == 0) {
                    size_t m = strlen(named[i].txt);
                    memcpy(o, named[i].txt, m); /* never longer than the entity */
                    o += m;
                    s += n;
                    done = 1;
                }
            }
            if (!done && s[1] == '#') {
                char *end;
                long cp = s[2] == 'x' || s[2] == 'X' ? strtol(s + 3, &end, 16) : strtol(s + 2, &end, 10);
                if (*end == ';' && cp > 0 && cp < 0x110000 && !(cp >= 0xD800 && cp < 0xE000) &&
                    end - s >= 4) { /* "&#N;" is at least as long as its UTF-8 */
                    if (cp < 0x80) {
                        *o++ = (char)cp;
                    } else if (cp < 0x800) {
                        *o++ = (char)(0xC0 | (cp >> 6));
                        *o++ = (char)(0x80 | (cp & 63));
                    } else if (cp < 0x10000) {
                        *o++ = (char)(0xE0 | (cp >> 12));
                        *o++ = (char)(0x80 | ((cp >> 6) & 63));
                        *o++ = (char)(0x80 | (cp & 63));
                    } else {
                        *o++ = (char)(0xF0 | (cp >> 18));
                        *o++ = (char)(0x80 | ((cp >> 12) & 63));
                        *o++ = (char)(0x80 | ((cp >> 6) & 63));
                        *o++ = (char)(0x80 | (cp & 63));
                    }
                    s = end + 1;
                    done = 1;
                }
            }
        }
        if (!done) *o++ = *s++;
    }
    *o = '\0';
}

static void html_escape_into(at_strbuf *b, const char *s)
{
    for (; *s; s++) {
        if (*s == '&')
            at_strbuf_str(b, "&amp;");
        else if (*s == '<')
            at_strbuf_str(b, "&lt;");
        else if (*s == '>')
            at_strbuf_str(b, "&gt;");
        else
            at_strbuf_put(b, s, 1);
    }
}

/* Length of the tag starting at s ('<'), quotes inside respected; 0 if it
 * never ends (the rest is then text). */
static size_t tag_len(const char *s)
{
    char q = 0;
    for (size_t i = 1; s[i]; i++) {
        if (q) {
            if (s[i] == q) q = 0;
        } else if (s[i] == '"' || s[i] == '\'') {
            q = s[i];
        } else if (s[i] == '>') {
            return i + 1;
        }
    }
    return 0;
}

/* Translates every text node of html; markup, comments and the content
 * of <script> and <style> are copied unchanged. */
static int translate_html(at_mt_engine *mt, const char *src, const char *tgt, const char *html, char **out,
                          at_err *err)
{
    at_strbuf b = {0};
    const char *p = html;
    int rc = 0;
    while (*p && !rc) {
        if (*p == '<') {
            size_t n = strncmp(p, "<!--", 4) == 0
                           ? (strstr(p, "-->") ? (size_t)(strstr(p, "-->") - p) + 3 : 0)
                           : tag_len(p);
            if (n) {
                const char *raw_end = strncasecmp(p, "<script", 7) == 0  ? "</script"
                                      : strncasecmp(p, "<style", 6) == 0 ? "</style"
                                                                         : NULL;
                at_strbuf_put(&b, p, n);
                p += n;
                if (raw_end) { /* code, not text: verbatim up to its closing tag */
                    const char *close = strcasestr(p, raw_end);
                    size_t m = close ? (size_t)(close - p) : strlen(p);
                    at_strbuf_put(&b, p, m);
                    p += m;
                }
                continue;
            }
        }
        /* a text node: up to the next tag that is one */
        const char *q = p + (*p == '<');
        while (*q && !(*q == '<' && (tag_len(q) || strncmp(q, "<!--", 4) == 0))) q++;
        size_t n = (size_t)(q - p);
        char *text = strndup(p, n);
        if (!text) {
            rc = at_err_set(err, AT_E_NOMEM, "out of memory");
            break;
        }
        html_unescape(text);
        size_t lead = strspn(text, " \t\r\n"), len = strlen(text), trail = 0;
        while (trail < len - lead && strchr(" \t\r\n", text[len - 1 - trail])) trail++;
        if (lead == len) {
            at_strbuf_put(&b, p, n); /* whitespace only */
        } else {
            char *mid = strndup(text + lead, len - lead - trail), *tr = NULL;
            if (!mid || at_mt_translate(mt, src, tgt, mid, &tr, err) != 0) {
                if (!mid) at_err_set(err, AT_E_NOMEM, "out of memory");
                rc = -1;
            } else {
                at_strbuf_put(&b, text, lead);
                html_escape_into(&b, tr);
                at_strbuf_put(&b, text + len - trail, trail);
            }
            free(mid);
            free(tr);
        }
        free(text);
        p = q;
    }
    if (!rc && b.oom) rc = at_err_set(err, AT_E_NOMEM, "out of memory");
    if (rc) {
        free(b.p);
        return rc ? rc : -1;
    }
    *out = b.p ? b.p : strdup("");
    return *out ? 0 : at_err_set(err, AT_E_NOMEM, "out of memory");
}

static int translate_one(at_mt_engine *mt, const char *src, const char *tgt, int html, const char *text,
                         char **out, at_err *err)
{
    if (!*text) {
        *out = strdup("");
        return *out ? 0 : at_err_set(err, AT_E_NOMEM, "out of memory");
    }
    if (html) return translate_html(mt, src, tgt, text, out, err);
    return at_mt_translate(mt, src, tgt, text, out, err);
}

static cJSON *detection_json(const char *code, double confidence)
{
    cJSON *d = cJSON_CreateObject();
    cJSON_AddNumberToObject(d, "confidence", confidence);
    cJSON_AddStringToObject(d, "language", code);
    return d;
}

static void h_translate(at_http_req *req, void *user)
{
    at_app *app = user;
    if (!at_service_require_ready(app, req)) return;
    cJSON *o = request_fields(req);
    if (!o) return;
    const cJSON *q = cJSON_GetObjectItemCaseSensitive(o, "q");
    const cJSON *src = cJSON_GetObjectItemCaseSensitive(o, "source");
    const cJSON *tgt = cJSON_GetObjectItemCaseSensitive(o, "target");
    const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(o, "format");
    const cJSON *alt = cJSON_GetObjectItemCaseSensitive(o, "alternatives");
    size_t max_chars = at_app_cfg(app)->max_text_chars;
    at_mt_engine *mt = at_app_mt(app);
    char source[16], target[16];
    double alt_n = 0;
    if (alt && cJSON_IsString(alt))
        alt_n = atof(alt->valuestring); /* form fields are text */
    else if (cJSON_IsNumber(alt))
        alt_n = alt->valuedouble;
    if (!q || !(cJSON_IsString(q) || cJSON_IsArray(q))) {
        at_http_error(req, 400, "invalid_request_error", "'q' is required: a string or an array of strings");
    } else if (!cJSON_IsString(src) || !cJSON_IsString(tgt) || !src->valuestring[0] || !tgt->valuestring[0]) {
        at_http_error(req, 400, "invalid_request_error", "'source' and 'target' are required");
    } else if (strlen(src->valuestring) >= sizeof source || strlen(tgt->valuestring) >= sizeof target) {
        at_http_error(req, 400, "invalid_request_error",
                      "'source' and 'target' are language codes, such as \"en\"");
    } else if (fmt && (!cJSON_IsString(fmt) ||
                       (strcmp(fmt->valuestring, "text") != 0 && strcmp(fmt->valuestring, "html") != 0))) {
        at_http_error(req, 400, "invalid_request_error", "'format' must be \"text\" or \"html\"");
    } else if (alt && (!(cJSON_IsNumber(alt) || cJSON_IsString(alt)) || alt_n < 0 || alt_n > 10)) {
        at_http_error(req, 400, "invalid_request_error", "'alternatives' must be a number from 0 to 10");
    } else {
        lower_code(src->valuestring, source, sizeof source);
        lower_code(tgt->valuestring, target, sizeof target);
        int html = fmt && strcmp(fmt->valuestring, "html") == 0;
        int auto_src = strcmp(source, "auto") == 0;
        /* Validate every item and the total size before any work. */
        int n = cJSON_IsArray(q) ? cJSON_GetArraySize(q) : 1;
        size_t total = 0;
        int bad = 0;
        if (n > MAX_Q_ITEMS) {
            at_http_error(req, 413, "invalid_request_error", "'q' has %d items; at most %d in one request", n,
                          MAX_Q_ITEMS);
            cJSON_Delete(o);
            return;
        }
        for (int i = 0; i < n && !bad; i++) {
            const cJSON *it = cJSON_IsArray(q) ? cJSON_GetArrayItem(q, i) : q;
            if (!cJSON_IsString(it))
                bad = 1;
            else
                total += strlen(it->valuestring);
        }
        if (bad) {
            at_http_error(req, 400, "invalid_request_error", "every item of 'q' must be a string");
        } else if (n == 0 || total == 0) {
            at_http_error(req, 400, "invalid_request_error", "'q' is empty: nothing to translate");
        } else if (total > max_chars) {
            at_http_error(req, 413, "invalid_request_error",
                          "text of %zu characters exceeds the limit of %zu", total, max_chars);
        } else if (!auto_src && strcmp(source, target) != 0 && !at_mt_engine_has_pair(mt, source, target)) {
            at_err err;
            char *out = NULL;
            at_mt_translate(mt, source, target, "x", &out, &err);
            free(out);
            at_http_error(req, 400, "invalid_request_error", "%s", err.msg);
        } else {
            cJSON *res = cJSON_CreateObject();
            cJSON *arr = cJSON_IsArray(q) ? cJSON_AddArrayToObject(res, "translatedText") : NULL;
            cJSON *det = auto_src && arr ? cJSON_AddArrayToObject(res, "detectedLanguage") : NULL;
            cJSON *alts = alt_n >= 1 && arr ? cJSON_AddArrayToObject(res, "alternatives") : NULL;
            double t0 = at_now_s();
            int failed = 0;
            char first_from[16];
            snprintf(first_from, sizeof first_from, "%s", source);
            if (!auto_src && !html && arr && n > 1) {
                /* one call: a neural engine translates the items as one batch */
                const char **texts = malloc((size_t)n * sizeof *texts);
                char **outs = calloc((size_t)n, sizeof *outs);
                at_err err;
                at_err_clear(&err);
                if (!texts || !outs) {
                    at_err_set(&err, AT_E_NOMEM, "out of memory");
                } else {
                    for (int i = 0; i < n; i++) texts[i] = cJSON_GetArrayItem(q, i)->valuestring;
                    at_mt_translate_many(mt, source, target, texts, n, outs, &err);
                }
                if (err.code) {
                    at_http_error_from(req, &err);
                    failed = 1;
                }
                for (int i = 0; i < n && !failed; i++) {
                    cJSON_AddItemToArray(arr, cJSON_CreateString(outs[i] ? outs[i] : ""));
                    if (alts) cJSON_AddItemToArray(alts, cJSON_CreateArray());
                }
                for (int i = 0; outs && i < n; i++) free(outs[i]);
                free(outs);
                free((void *)texts);
                n = 0; /* done */
            }
            for (int i = 0; i < n && !failed; i++) {
                const char *text = (cJSON_IsArray(q) ? cJSON_GetArrayItem(q, i) : q)->valuestring;
                char from[16];
                snprintf(from, sizeof from, "%s", source);
                if (auto_src) {
                    double conf = 0;
                    if (!*text) {
                        snprintf(from, sizeof from, "%s", target);
                    } else if (detect_source(req, mt, text, target, from, sizeof from, &conf) != 0) {
                        failed = 1;
                        break;
                    }
                    if (i == 0) snprintf(first_from, sizeof first_from, "%s", from);
                    if (det)
                        cJSON_AddItemToArray(det, detection_json(from, conf));
                    else
                        cJSON_AddItemToObject(res, "detectedLanguage", detection_json(from, conf));
                    if (strcmp(from, target) != 0 && !at_mt_engine_has_pair(mt, from, target)) {
                        at_http_error(req, 400, "invalid_request_error",
                                      "the text is in '%s', which cannot be translated to '%s' here", from,
                                      target);
                        failed = 1;
                        break;
                    }
                }
                char *out = NULL;
                at_err err;
                at_err_clear(&err);
                if (translate_one(mt, from, target, html, text, &out, &err)) {
                    at_http_error_from(req, &err);
                    failed = 1;
                    break;
                }
                if (arr)
                    cJSON_AddItemToArray(arr, cJSON_CreateString(out ? out : ""));
                else
                    cJSON_AddStringToObject(res, "translatedText", out ? out : "");
                /* Apertium's rules give one translation: no alternatives */
                if (alts)
                    cJSON_AddItemToArray(alts, cJSON_CreateArray());
                else if (alt_n >= 1)
                    cJSON_AddArrayToObject(res, "alternatives");
                free(out);
            }
            if (strcmp(first_from, target) != 0) {
                char via[256];
                cJSON_AddStringToObject(res, "engine", at_mt_route(mt, first_from, target, via, sizeof via));
            }
            at_app_observe(app, "mt_translate", at_now_s() - t0);
            if (!failed) at_http_respond_json(req, 200, res);
            cJSON_Delete(res);
        }
    }
    cJSON_Delete(o);
}

/* POST /detect: q -> [{"confidence": 0..100, "language": code}, ...] */
static void h_detect(at_http_req *req, void *user)
{
    at_app *app = user;
    if (!at_service_require_ready(app, req)) return;
    cJSON *o = request_fields(req);
    if (!o) return;
    const cJSON *q = cJSON_GetObjectItemCaseSensitive(o, "q");
    size_t max_chars = at_app_cfg(app)->max_text_chars;
    if (!cJSON_IsString(q) || !q->valuestring[0]) {
        at_http_error(req, 400, "invalid_request_error", "'q' is required: the text to identify");
    } else if (strlen(q->valuestring) > max_chars) {
        at_http_error(req, 413, "invalid_request_error", "text of %zu characters exceeds the limit of %zu",
                      strlen(q->valuestring), max_chars);
    } else {
        at_langid_guess g[3];
        int n;
        at_err err;
        if (at_langid_detect(q->valuestring, strlen(q->valuestring), g, &n, &err) != 0) {
            at_http_error_from(req, &err);
        } else {
            cJSON *arr = cJSON_CreateArray();
            for (int i = 0; i < n; i++) cJSON_AddItemToArray(arr, detection_json(g[i].code, g[i].confidence));
            at_http_respond_json(req, 200, arr);
            cJSON_Delete(arr);
        }
    }
    cJSON_Delete(o);
}

/* GET /frontend/settings, as LibreTranslate's web page and clients read it. */
static void h_settings(at_http_req *req, void *user)
{
    at_app *app = user;
    if (!at_service_require_ready(app, req)) return;
    size_t n;
    const at_mt_pair *p = at_mt_engine_pairs(at_app_mt(app), &n);
    cJSON *o = cJSON_CreateObject(), *lang, *x;
    cJSON_AddBoolToObject(o, "apiKeys", at_app_cfg(app)->api_keys_required);
    cJSON_AddBoolToObject(o, "keyRequired", at_app_cfg(app)->api_keys_required);
    cJSON_AddNumberToObject(o, "charLimit", (double)at_app_cfg(app)->max_text_chars);
    cJSON_AddNumberToObject(o, "frontendTimeout", 500);
    cJSON_AddBoolToObject(o, "suggestions", 0);
    cJSON_AddBoolToObject(o, "filesTranslation", 0);
    cJSON_AddArrayToObject(o, "supportedFilesFormat");
    lang = cJSON_AddObjectToObject(o, "language");
    x = cJSON_AddObjectToObject(lang, "source");
    cJSON_AddStringToObject(x, "code", n ? p[0].source : "en");
    cJSON_AddStringToObject(x, "name", language_name(n ? p[0].source : "en"));
    x = cJSON_AddObjectToObject(lang, "target");
    cJSON_AddStringToObject(x, "code", n ? p[0].target : "es");
    cJSON_AddStringToObject(x, "name", language_name(n ? p[0].target : "es"));
    at_http_respond_json(req, 200, o);
    cJSON_Delete(o);
}

static const at_http_route routes[] = {
    AT_SERVICE_COMMON_ROUTES,
    {"GET", "/languages", h_languages, NULL, AT_ROUTE_INLINE | AT_ROUTE_OPEN,
     0}, /* open, as LibreTranslate's */
    {"POST", "/translate", h_translate, NULL, AT_ROUTE_WORKER, AT_TEXT_BODY_MAX},
    {"POST", "/detect", h_detect, NULL, AT_ROUTE_WORKER, AT_TEXT_BODY_MAX},
    {"GET", "/frontend/settings", h_settings, NULL, AT_ROUTE_INLINE | AT_ROUTE_OPEN, 0},
};

int at_translate_service_listen(at_app *app, at_http_server *srv, const char *iface, int port, int *bound,
                                at_err *err)
{
    if (at_http_server_listen(srv, "translate", iface, port, routes, sizeof routes / sizeof routes[0], app,
                              bound, err))
        return -1;
    /* LibreTranslate's clients read {"error": "message"} */
    at_http_server_set_errors(srv, "translate", AT_ERRORS_PLAIN);
    return 0;
}
