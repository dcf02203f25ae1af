/* asr_service.c - asr_streaming: OpenAI-compatible file transcription and
 * a WebSocket for live streams.
 *
 *   POST /v1/audio/transcriptions   multipart: file, model, language,
 *                                   prompt, response_format, temperature,
 *                                   and whisper.cpp's temperature_inc and
 *                                   faster-whisper's max_new_tokens
 *   POST /v1/audio/translations     same, speech -> English (whisper only)
 *   WS   /v1/stream                 JSON config, binary PCM16, {"type":"end"}
 */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/audio.h"
#include "core/clock.h"
#include "core/multipart.h"
#include "core/subtitle.h"
#include "services/app.h"

static cJSON *word_json(const at_asr_word *w)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "word", w->text);
    cJSON_AddNumberToObject(o, "start", w->start);
    cJSON_AddNumberToObject(o, "end", w->end);
    if (w->prob >= 0) cJSON_AddNumberToObject(o, "probability", w->prob);
    return o;
}

static cJSON *segments_json(const at_asr_result *r, int words)
{
    cJSON *arr = cJSON_CreateArray();
    for (size_t i = 0; i < r->n_segments; i++) {
        const at_asr_segment *s = &r->segments[i];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "id", (double)i);
        cJSON_AddNumberToObject(o, "seek", s->seek);
        cJSON_AddNumberToObject(o, "start", s->start);
        cJSON_AddNumberToObject(o, "end", s->end);
        /* OpenAI's segment text keeps the space Whisper's tokens start with */
        char *spaced = malloc(strlen(s->text) + 2);
        if (spaced) sprintf(spaced, " %s", s->text);
        cJSON_AddStringToObject(o, "text", spaced ? spaced : s->text);
        free(spaced);
        cJSON *toks = cJSON_AddArrayToObject(o, "tokens");
        for (size_t k = 0; k < s->n_tokens; k++) cJSON_AddItemToArray(toks, cJSON_CreateNumber(s->tokens[k]));
        cJSON_AddNumberToObject(o, "temperature", s->temperature);
        cJSON_AddNumberToObject(o, "avg_logprob", s->avg_logprob);
        cJSON_AddNumberToObject(o, "compression_ratio", s->compression_ratio);
        cJSON_AddNumberToObject(o, "no_speech_prob", s->no_speech_prob);
        if (words) {
            cJSON *w = cJSON_AddArrayToObject(o, "words");
            for (size_t j = 0; j < s->n_words; j++) cJSON_AddItemToArray(w, word_json(&s->words[j]));
        }
        cJSON_AddItemToArray(arr, o);
    }
    return arr;
}

char *at_asr_format_result(const at_asr_result *r, const char *fmt, const char *task, int granularity,
                           const char **content_type)
{
    char *text = at_asr_result_text(r);
    if (!text) return NULL;
    char *doc = NULL;
    if (strcmp(fmt, "text") == 0) {
        size_t n = strlen(text);
        doc = malloc(n + 2);
        if (doc) {
            memcpy(doc, text, n);
            memcpy(doc + n, "\n", 2);
        }
        *content_type = "text/plain; charset=utf-8";
    } else if (strcmp(fmt, "srt") == 0 || strcmp(fmt, "vtt") == 0) {
        at_cue *cues = calloc(r->n_segments + 1, sizeof *cues);
        for (size_t i = 0; cues && i < r->n_segments; i++)
            cues[i] = (at_cue){r->segments[i].start, r->segments[i].end, r->segments[i].text};
        if (cues)
            doc = fmt[0] == 's' ? at_subtitle_srt(cues, r->n_segments) : at_subtitle_vtt(cues, r->n_segments);
        free(cues);
        *content_type = fmt[0] == 's' ? "application/x-subrip; charset=utf-8" : "text/vtt; charset=utf-8";
    } else {
        cJSON *o = cJSON_CreateObject();
        if (strcmp(fmt, "verbose_json") == 0) {
            cJSON_AddStringToObject(o, "task", task);
            cJSON_AddStringToObject(o, "language", at_asr_language_name(r->language));
            cJSON_AddNumberToObject(o, "duration", r->duration);
            cJSON_AddStringToObject(o, "text", text);
            if (!(granularity & AT_ASR_NO_SEGMENTS))
                cJSON_AddItemToObject(o, "segments", segments_json(r, granularity & AT_ASR_WORDS));
            if (granularity & AT_ASR_WORDS) {
                cJSON *w = cJSON_AddArrayToObject(o, "words");
                for (size_t i = 0; i < r->n_segments; i++)
                    for (size_t j = 0; j < r->segments[i].n_words; j++)
                        cJSON_AddItemToArray(w, word_json(&r->segments[i].words[j]));
            }
        } else {
            cJSON_AddStringToObject(o, "text", text);
        }
        doc = at_json_print(o);
        cJSON_Delete(o);
        *content_type = "application/json";
    }
    free(text);
    return doc;
}

static void respond_result(at_http_req *req, const at_asr_result *r, const char *fmt, const char *task,
                           int granularity)
{
    const char *ctype;
    char *doc = at_asr_format_result(r, fmt, task, granularity, &ctype);
    if (doc)
        at_http_respond(req, 200, ctype, doc, strlen(doc));
    else
        at_http_error(req, 500, "server_error", "out of memory");
    free(doc);
}

static int client_gone(void *req) { return at_http_req_cancelled(req); }
static int ws_gone(void *ws) { return at_ws_closed(ws); }

/* stream=true: OpenAI's server-sent events, a transcript.text.delta for
 * each segment as the engine finishes it, then transcript.text.done. */
typedef struct sse_ctx {
    at_http_req *req;
    int started, failed;
    size_t n;
} sse_ctx;

static int sse_send(sse_ctx *c, cJSON *ev)
{
    if (!c->started) {
        if (at_http_stream_begin(c->req, 200, "text/event-stream") != 0) c->failed = 1;
        c->started = 1;
    }
    if (!c->failed && at_http_sse_event(c->req, ev) != 0) c->failed = 1;
    cJSON_Delete(ev);
    return c->failed;
}

static int sse_segment(void *user, const char *text, double start, double end)
{
    (void)start, (void)end;
    sse_ctx *c = user;
    const char *t = text + strspn(text, " ");
    if (!*t) return 0;
    char *delta = malloc(strlen(t) + 2);
    if (!delta) return 1;
    sprintf(delta, "%s%s", c->n++ ? " " : "", t); /* as at_asr_result_text joins them */
    cJSON *ev = cJSON_CreateObject();
    cJSON_AddStringToObject(ev, "type", "transcript.text.delta");
    cJSON_AddStringToObject(ev, "delta", delta);
    free(delta);
    return sse_send(c, ev);
}

/* A comma-separated list of numbers in [lo, hi] (at most cap, whole
 * numbers when whole); 0 with *n set, or answers 400 and returns -1. */
static int form_list(at_http_req *req, const char *name, const char *text, double lo, double hi, int whole,
                     double *out, int cap, int *n)
{
    *n = 0;
    for (const char *p = text; *p;) {
        char *end;
        double v = strtod(p, &end);
        while (*end == ' ') end++;
        if (end == p || (*end && *end != ',') || (*end == ',' && !end[1]) || !isfinite(v) || v < lo ||
            v > hi || (whole && v != floor(v)) || *n >= cap) {
            if (cap == 1)
                at_http_error_coded(req, 400, "invalid_request_error", NULL, name,
                                    "'%s' must be %s from %g to %g, not '%s'", name,
                                    whole ? "a whole number" : "a number", lo, hi, text);
            else
                at_http_error_coded(req, 400, "invalid_request_error", NULL, name,
                                    "'%s' must be up to %d comma-separated %s from %g to %g, not '%s'", name,
                                    cap, whole ? "whole numbers" : "numbers", lo, hi, text);
            return -1;
        }
        out[(*n)++] = v;
        p = *end ? end + 1 : end;
    }
    return 0;
}

/* timestamp_granularities[]: the SDK sends one field per value (curl users
 * often write timestamp_granularities, or a comma list).  Returns the
 * AT_ASR_* flags, or answers 400 and returns -1. */
static int granularities(at_http_req *req, const at_form *form, const char *fmt)
{
    int word = 0, segment = 0, any = 0;
    for (size_t i = 0; i < form->n; i++) {
        const at_part *p = &form->parts[i];
        if (strcmp(p->name, "timestamp_granularities[]") != 0 &&
            strcmp(p->name, "timestamp_granularities") != 0)
            continue;
        any = 1;
        for (size_t a = 0; a < p->len;) {
            size_t b = a;
            while (b < p->len && p->data[b] != ',') b++;
            size_t s = a, e = b;
            while (s < e && p->data[s] == ' ') s++;
            while (e > s && p->data[e - 1] == ' ') e--;
            if (e - s == 4 && memcmp(p->data + s, "word", 4) == 0)
                word = 1;
            else if (e - s == 7 && memcmp(p->data + s, "segment", 7) == 0)
                segment = 1;
            else {
                at_http_error_coded(req, 400, "invalid_request_error", NULL, "timestamp_granularities",
                                    "'timestamp_granularities' takes 'word' and 'segment', not '%.*s'",
                                    (int)(e - s > 32 ? 32 : e - s), (const char *)p->data + s);
                return -1;
            }
            a = b + 1;
        }
    }
    if (any && strcmp(fmt, "verbose_json") != 0) {
        at_http_error_coded(req, 400, "invalid_request_error", NULL, "timestamp_granularities",
                            "'timestamp_granularities' needs response_format 'verbose_json'");
        return -1;
    }
    return (word ? AT_ASR_WORDS : 0) | (word && !segment ? AT_ASR_NO_SEGMENTS : 0);
}

/* One number in [lo, hi]; an absent field keeps *out.  Returns 0 or
 * answers 400 and returns -1. */
static int form_number(at_http_req *req, const char *name, const char *text, double lo, double hi,
                       double *out)
{
    int n;
    return form_list(req, name, text, lo, hi, 0, out, 1, &n);
}

static void transcribe_common(at_http_req *req, at_app *app, int translate)
{
    if (!at_service_require_ready(app, req)) return;
    at_err err;
    at_err_clear(&err);
    size_t len;
    const unsigned char *body = at_http_req_body(req, &len);
    const char *ctype = at_http_req_header(req, "content-type");
    if (!ctype || strncasecmp(ctype, "multipart/form-data", 19) != 0) {
        at_http_error(req, 400, "invalid_request_error",
                      "expected a multipart/form-data body with a 'file' field");
        return;
    }
    at_form *form = malloc(sizeof *form);
    if (!form) {
        at_http_error(req, 500, "server_error", "out of memory");
        return;
    }
    if (at_multipart_parse(ctype, body, len, form, &err) != 0) {
        at_http_error(req, 400, "invalid_request_error", "malformed multipart body: %s", err.msg);
        free(form);
        return;
    }
    char model[64] = "", language[16] = "", fmt[16] = "json", prompt[1024] = "", temp[32] = "",
         temp_inc[32] = "", max_tokens[32] = "", stream[8] = "", beam[16] = "", best_of[16] = "",
         patience[32] = "", length_penalty[32] = "", suppress[1024] = "-1", condition[8] = "",
         vad_filter[8] = "", hallucination[32] = "";
    char temps[256] = "";
    if (at_form_text(form, "model", model, sizeof model, &err) < 0 ||
        at_form_text(form, "language", language, sizeof language, &err) < 0 ||
        at_form_text(form, "response_format", fmt, sizeof fmt, &err) < 0 ||
        at_form_text(form, "prompt", prompt, sizeof prompt, &err) < 0 ||
        at_form_text(form, "temperature", temps, sizeof temps, &err) < 0 ||
        at_form_text(form, "beam_size", beam, sizeof beam, &err) < 0 ||
        at_form_text(form, "best_of", best_of, sizeof best_of, &err) < 0 ||
        at_form_text(form, "patience", patience, sizeof patience, &err) < 0 ||
        at_form_text(form, "length_penalty", length_penalty, sizeof length_penalty, &err) < 0 ||
        at_form_text(form, "suppress_tokens", suppress, sizeof suppress, &err) < 0 ||
        at_form_text(form, "condition_on_previous_text", condition, sizeof condition, &err) < 0 ||
        at_form_text(form, "vad_filter", vad_filter, sizeof vad_filter, &err) < 0 ||
        at_form_text(form, "hallucination_silence_threshold", hallucination, sizeof hallucination, &err) <
            0 ||
        at_form_text(form, "temperature_inc", temp_inc, sizeof temp_inc, &err) < 0 ||
        at_form_text(form, "max_new_tokens", max_tokens, sizeof max_tokens, &err) < 0 ||
        at_form_text(form, "stream", stream, sizeof stream, &err) < 0) {
        at_http_error(req, 400, "invalid_request_error", "%s", err.msg);
        free(form);
        return;
    }
    /* temperature: one value (OpenAI's), or the whole fallback schedule
     * as a list (faster-whisper's "0,0.2,0.4,...") */
    double tlist[16], nums[4] = {0, 0, 0, 0}, supp[64];
    int n_temps = 0, n1, n_supp = 0;
    if (form_list(req, "temperature", temps, 0, 1, 0, tlist, 16, &n_temps) < 0 ||
        form_list(req, "beam_size", beam, 1, 16, 1, &nums[0], 1, &n1) < 0 ||
        form_list(req, "best_of", best_of, 1, 16, 1, &nums[1], 1, &n1) < 0 ||
        form_list(req, "patience", patience, 0.1, 10, 0, &nums[2], 1, &n1) < 0 ||
        form_list(req, "length_penalty", length_penalty, 0, 10, 0, &nums[3], 1, &n1) < 0 ||
        form_list(req, "suppress_tokens", suppress, -1, 1e6, 1, supp, 64, &n_supp) < 0) {
        free(form);
        return;
    }
    if (condition[0] && strcmp(condition, "true") != 0 && strcmp(condition, "false") != 0) {
        at_http_error_coded(req, 400, "invalid_request_error", NULL, "condition_on_previous_text",
                            "'condition_on_previous_text' must be true or false");
        free(form);
        return;
    }
    if (vad_filter[0] && strcmp(vad_filter, "true") != 0 && strcmp(vad_filter, "false") != 0) {
        at_http_error_coded(req, 400, "invalid_request_error", NULL, "vad_filter",
                            "'vad_filter' must be true or false");
        free(form);
        return;
    }
    if (n_temps == 1) snprintf(temp, sizeof temp, "%g", tlist[0]);
    /* temperature_inc 0 turns the fallback off, as in whisper.cpp */
    double temperature = 0, inc = 0.2, n_tokens = 0, silence = 0;
    int granularity = granularities(req, form, fmt);
    if (granularity < 0 ||
        form_number(req, "hallucination_silence_threshold", hallucination, 0.1, 30, &silence) < 0 ||
        form_number(req, "temperature", temp, 0, 1, &temperature) < 0 ||
        form_number(req, "temperature_inc", temp_inc, 0, 1, &inc) < 0 ||
        form_number(req, "max_new_tokens", max_tokens, 1, 224, &n_tokens) < 0) {
        free(form);
        return;
    }
    if (n_tokens != floor(n_tokens)) {
        at_http_error(req, 400, "invalid_request_error", "'max_new_tokens' must be a whole number, not '%s'",
                      max_tokens);
        free(form);
        return;
    }
    const at_part *file = at_form_get(form, "file");
    static const char *const fmts[] = {"json", "text", "srt", "vtt", "verbose_json"};
    int fmt_ok = 0;
    for (size_t i = 0; i < sizeof fmts / sizeof fmts[0]; i++) fmt_ok |= strcmp(fmt, fmts[i]) == 0;
    at_asr_engine *eng = at_app_asr(app, model);
    int sse = strcmp(stream, "true") == 0;
    if (stream[0] && !sse && strcmp(stream, "false") != 0) {
        at_http_error_coded(req, 400, "invalid_request_error", NULL, "stream",
                            "'stream' must be true or false");
    } else if (sse && translate) {
        at_http_error_coded(req, 400, "invalid_request_error", NULL, "stream",
                            "streaming is for transcriptions, not translations");
    } else if (!file) {
        at_http_error(req, 400, "invalid_request_error", "missing the 'file' field");
    } else if (file->len == 0) {
        at_http_error(req, 400, "invalid_request_error", "the uploaded file is empty");
    } else if (!fmt_ok) {
        at_http_error(req, 400, "invalid_request_error",
                      "unsupported response_format '%s'; use json, text, srt, vtt or verbose_json", fmt);
    } else if (!eng) {
        at_http_error(req, 400, "invalid_request_error", "unknown model '%s'; available: %s", model,
                      at_app_asr_names(app));
    } else if (language[0] && !at_asr_engine_supports_language(eng, language)) {
        at_http_error(req, 400, "invalid_request_error", "language '%s' is not supported by the %s engine",
                      language, at_asr_engine_name(eng));
    } else if (translate && strcmp(at_asr_engine_name(eng), "whisper") != 0) {
        at_http_error(req, 400, "invalid_request_error",
                      "translation to English needs a whisper model (start the service with --model)");
    } else {
        at_audio audio = {0};
        double t0 = at_now_s();
        if (at_audio_load_16k(file->data, file->len, at_app_cfg(app)->max_audio_seconds, &audio, &err) != 0) {
            int status = err.code == AT_E_UNSUPPORTED ? 415 : err.code == AT_E_TOO_LARGE ? 413 : 400;
            at_http_error(req, status, "invalid_request_error", "%s", err.msg);
        } else {
            at_asr_options opt = {0};
            opt.language = language[0] ? language : NULL;
            opt.translate = translate;
            opt.prompt = prompt[0] ? prompt : NULL;
            opt.temperature = (float)temperature;
            opt.temperature_inc = inc > 0 ? (float)inc : -1.0f;
            opt.max_tokens = (int)n_tokens;
            float tsched[16];
            int sup_ids[64], n_ids = 0, has_default = 0;
            if (n_temps > 1) {
                for (int k = 0; k < n_temps; k++) tsched[k] = (float)tlist[k];
                opt.temperatures = tsched;
                opt.n_temperatures = n_temps;
            }
            opt.beam_size = (int)nums[0];
            opt.best_of = (int)nums[1];
            opt.patience = (float)nums[2];
            opt.length_penalty = (float)nums[3];
            for (int k = 0; k < n_supp; k++) {
                if (supp[k] < 0)
                    has_default = 1; /* "-1": the non-speech symbols */
                else
                    sup_ids[n_ids++] = (int)supp[k];
            }
            opt.suppress_tokens = sup_ids;
            opt.n_suppress_tokens = n_ids;
            opt.no_default_suppress = !has_default;
            opt.no_condition_on_previous = strcmp(condition, "false") == 0;
            opt.vad_filter = strcmp(vad_filter, "true") == 0;
            opt.word_timestamps = (granularity & AT_ASR_WORDS) != 0;
            opt.hallucination_silence_threshold = (float)silence;
            opt.cancelled = client_gone; /* a vanished client frees the worker */
            opt.cancel_user = req;
            sse_ctx sc = {req, 0, 0, 0};
            if (sse) {
                opt.on_segment = sse_segment;
                opt.segment_user = &sc;
            }
            at_asr_result res;
            int rc = at_asr_transcribe(eng, audio.samples, audio.n, &opt, &res, &err);
            at_app_observe(app, translate ? "asr_translate" : "asr_transcribe", at_now_s() - t0);
            if (sse && (rc == 0 || sc.started)) {
                /* the whole text last, as OpenAI sends it */
                cJSON *ev = cJSON_CreateObject();
                if (rc == 0) {
                    char *text = at_asr_result_text(&res);
                    cJSON_AddStringToObject(ev, "type", "transcript.text.done");
                    cJSON_AddStringToObject(ev, "text", text ? text : "");
                    free(text);
                    at_app_count_audio(app, "asr", res.duration);
                    at_asr_result_free(&res);
                } else {
                    cJSON_AddStringToObject(ev, "type", "error");
                    cJSON *e = cJSON_AddObjectToObject(ev, "error");
                    cJSON_AddStringToObject(e, "message", err.msg);
                }
                sse_send(&sc, ev);
                at_http_stream_end(req);
            } else if (rc != 0) {
                at_http_error_from(req, &err);
            } else {
                at_app_count_audio(app, "asr", res.duration);
                if (!res.language[0])
                    snprintf(res.language, sizeof res.language, "%s", language[0] ? language : "en");
                respond_result(req, &res, fmt, translate ? "translate" : "transcribe", granularity);
                at_asr_result_free(&res);
            }
            at_audio_free(&audio);
        }
    }
    free(form);
}

static void h_transcriptions(at_http_req *req, void *app) { transcribe_common(req, app, 0); }
static void h_translations(at_http_req *req, void *app) { transcribe_common(req, app, 1); }

static void h_models(at_http_req *req, void *app)
{
    if (!at_service_require_ready(app, req)) return;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "object", "list");
    cJSON *d = cJSON_AddArrayToObject(o, "data");
    for (const char *p = at_app_asr_names(app); *p;) {
        const char *e = strstr(p, ", ");
        size_t n = e ? (size_t)(e - p) : strlen(p);
        char name[64];
        snprintf(name, sizeof name, "%.*s", (int)n, p);
        cJSON *m = cJSON_CreateObject();
        cJSON_AddStringToObject(m, "id", name);
        cJSON_AddStringToObject(m, "object", "model");
        cJSON_AddStringToObject(m, "owned_by", "audio-translator");
        cJSON_AddItemToArray(d, m);
        p += n;
        if (*p) p += 2;
    }
    at_http_respond_json(req, 200, o);
    cJSON_Delete(o);
}

/* ---- WebSocket stream ---- */

typedef struct stream_ctx {
    at_ws *ws;
    size_t n_final;
    char *transcript; /* all finals so far */
    size_t tlen;
} stream_ctx;

static int send_event(void *user, const at_asr_event *ev)
{
    stream_ctx *c = user;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", ev->is_final ? "final" : "partial");
    cJSON_AddStringToObject(o, "text", ev->text);
    cJSON_AddNumberToObject(o, "start", ev->start);
    cJSON_AddNumberToObject(o, "end", ev->end);
    if (ev->language) cJSON_AddStringToObject(o, "language", ev->language);
    if (ev->is_final) {
        cJSON_AddNumberToObject(o, "segment", (double)c->n_final);
        c->n_final++;
        size_t l = strlen(ev->text);
        char *t = realloc(c->transcript, c->tlen + l + 2);
        if (t) {
            c->transcript = t;
            if (c->tlen && l) t[c->tlen++] = ' ';
            memcpy(t + c->tlen, ev->text, l);
            c->tlen += l;
            t[c->tlen] = '\0';
        }
    }
    int rc = at_ws_send_json(c->ws, o);
    cJSON_Delete(o);
    return rc != 0; /* nonzero cancels: the client is gone */
}

static void ws_error(at_ws *ws, int close_code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void ws_error(at_ws *ws, int close_code, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", "error");
    cJSON_AddStringToObject(o, "message", msg);
    at_ws_send_json(ws, o);
    cJSON_Delete(o);
    if (close_code) at_ws_set_close(ws, close_code, "error");
}

/* Reads the first message: the stream configuration. */
static int read_config(at_ws *ws, at_app *app, char *language, size_t lcap, int *rate, int *channels,
                       char *model, size_t mcap)
{
    at_ws_msg m;
    int rc = at_ws_recv(ws, &m, at_app_cfg(app)->stream_idle_s * 1000);
    if (rc == 0) {
        ws_error(ws, 1008, "no configuration received within %d s", at_app_cfg(app)->stream_idle_s);
        return -1;
    }
    if (rc < 0) return -1;
    if (m.kind != AT_WS_TEXT) {
        free(m.data);
        ws_error(ws, 1008,
                 "audio before configuration: send a JSON text frame first, e.g. "
                 "{\"type\":\"config\",\"language\":\"en\",\"sample_rate\":16000,\"encoding\":\"pcm16\"}");
        return -1;
    }
    cJSON *o = cJSON_ParseWithLength((const char *)m.data, m.len);
    free(m.data);
    if (!cJSON_IsObject(o)) {
        cJSON_Delete(o);
        ws_error(ws, 1007, "configuration is not a JSON object");
        return -1;
    }
    const cJSON *lang = cJSON_GetObjectItemCaseSensitive(o, "language");
    const cJSON *sr = cJSON_GetObjectItemCaseSensitive(o, "sample_rate");
    const cJSON *enc = cJSON_GetObjectItemCaseSensitive(o, "encoding");
    const cJSON *ch = cJSON_GetObjectItemCaseSensitive(o, "channels");
    const cJSON *mo = cJSON_GetObjectItemCaseSensitive(o, "model");
    int bad = 0;
    language[0] = model[0] = '\0';
    *rate = 16000;
    *channels = 1;
    if (lang && (!cJSON_IsString(lang) || strlen(lang->valuestring) >= lcap))
        bad = 1;
    else if (lang)
        snprintf(language, lcap, "%s", lang->valuestring);
    if (mo && cJSON_IsString(mo) && strlen(mo->valuestring) < mcap)
        snprintf(model, mcap, "%s", mo->valuestring);
    if (sr && !cJSON_IsNumber(sr))
        bad = 1;
    else if (sr)
        *rate = sr->valueint;
    if (ch && !cJSON_IsNumber(ch))
        bad = 1;
    else if (ch)
        *channels = ch->valueint;
    if (bad) {
        cJSON_Delete(o);
        ws_error(ws, 1008,
                 "bad configuration: language must be a string, sample_rate and "
                 "channels numbers");
        return -1;
    }
    if (enc && (!cJSON_IsString(enc) ||
                (strcmp(enc->valuestring, "pcm16") != 0 && strcmp(enc->valuestring, "s16le") != 0))) {
        cJSON_Delete(o);
        ws_error(ws, 1008, "unsupported encoding; use \"pcm16\" (signed 16-bit little-endian)");
        return -1;
    }
    cJSON_Delete(o);
    if (*rate < 8000 || *rate > 48000) {
        ws_error(ws, 1008, "sample_rate %d is out of range (8000..48000)", *rate);
        return -1;
    }
    if (*channels < 1 || *channels > 2) {
        ws_error(ws, 1008, "channels must be 1 or 2");
        return -1;
    }
    return 0;
}

static void h_stream(at_ws *ws, void *user)
{
    at_app *app = user;
    at_err err;
    at_err_clear(&err);
    int st = at_app_ready(app, &err);
    if (st != 1) {
        ws_error(ws, 1013, st == 0 ? "engines are still loading; retry shortly" : "engines failed to load");
        return;
    }
    char language[16], model[64];
    int rate, channels;
    if (read_config(ws, app, language, sizeof language, &rate, &channels, model, sizeof model)) return;
    at_asr_engine *eng = at_app_asr(app, model);
    if (!eng) {
        ws_error(ws, 1008, "unknown model '%s'; available: %s", model, at_app_asr_names(app));
        return;
    }
    if (language[0] && !at_asr_engine_supports_language(eng, language)) {
        ws_error(ws, 1008, "language '%s' is not supported by the %s engine", language,
                 at_asr_engine_name(eng));
        return;
    }
    at_asr_options opt = {0};
    opt.language = language[0] ? language : NULL;
    opt.cancelled = ws_gone; /* no waiting for a decoder nobody will use */
    opt.cancel_user = ws;
    at_asr_stream *as = at_asr_stream_open(eng, &opt, &err);
    if (!as) {
        if (err.code == AT_E_CANCELLED) return;
        ws_error(ws, err.code == AT_E_BUSY ? 1013 : 1011, "cannot open a stream: %s", err.msg);
        return;
    }
    at_resampler *rs = rate != 16000 ? at_resampler_new(rate, 16000, &err) : NULL;
    if (rate != 16000 && !rs) {
        at_asr_stream_close(as);
        ws_error(ws, 1011, "cannot resample: %s", err.msg);
        return;
    }
    at_app_streams(app, 1);
    stream_ctx c = {ws, 0, NULL, 0};
    {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "type", "ready");
        cJSON_AddStringToObject(o, "engine", at_asr_engine_name(eng));
        cJSON_AddNumberToObject(o, "sample_rate", rate);
        at_ws_send_json(ws, o);
        cJSON_Delete(o);
    }
    double max_samples = at_app_cfg(app)->max_audio_seconds * rate;
    double samples_in = 0;
    unsigned char carry[4];
    size_t n_carry = 0;
    size_t frame_bytes = (size_t)channels * 2;
    float *mono = NULL, *res = NULL;
    size_t mono_cap = 0, res_cap = 0;
    int finished = 0, failed = 0;
    double t_compute = 0;

    while (!finished && !failed) {
        at_ws_msg m;
        int rc = at_ws_recv(ws, &m, at_app_cfg(app)->stream_idle_s * 1000);
        if (rc == 0) {
            ws_error(ws, 1008, "no audio for %d s; closing", at_app_cfg(app)->stream_idle_s);
            failed = 1;
            break;
        }
        if (rc < 0) {
            /* Peer gone (cancel) or server draining (flush what we have). */
            if (at_ws_closed(ws))
                failed = 1;
            else
                finished = 1;
            break;
        }
        if (m.kind == AT_WS_TEXT) {
            cJSON *o = cJSON_ParseWithLength((const char *)m.data, m.len);
            const cJSON *t = o ? cJSON_GetObjectItemCaseSensitive(o, "type") : NULL;
            if (cJSON_IsString(t) &&
                (strcmp(t->valuestring, "end") == 0 || strcmp(t->valuestring, "eos") == 0))
                finished = 1;
            else if (m.len == 3 && memcmp(m.data, "EOS", 3) == 0)
                finished = 1;
            else
                ws_error(ws, 0, "unknown control message; send {\"type\":\"end\"} to finish");
            cJSON_Delete(o);
            free(m.data);
            continue;
        }
        /* Binary PCM16: frames may split samples; keep the remainder. */
        size_t total = n_carry + m.len;
        unsigned char *buf = m.data;
        if (n_carry) {
            unsigned char *j = malloc(total);
            if (!j) {
                free(m.data);
                failed = 1;
                break;
            }
            memcpy(j, carry, n_carry);
            memcpy(j + n_carry, m.data, m.len);
            free(m.data);
            buf = j;
        }
        size_t usable = total - total % frame_bytes;
        n_carry = total - usable;
        memcpy(carry, buf + usable, n_carry);
        size_t frames = usable / frame_bytes;
        samples_in += (double)frames;
        if (samples_in > max_samples) {
            free(buf);
            ws_error(ws, 1009, "stream exceeds the limit of %.0f s of audio",
                     at_app_cfg(app)->max_audio_seconds);
            failed = 1;
            break;
        }
        if (frames > mono_cap) {
            float *nm = realloc(mono, frames * sizeof *nm);
            if (!nm) {
                free(buf);
                failed = 1;
                break;
            }
            mono = nm;
            mono_cap = frames;
        }
        at_audio a = {0};
        if (frames && at_audio_from_pcm16(buf, usable, rate, channels, &a, &err) != 0) {
            /* never feed the previous packet's samples again */
            free(buf);
            ws_error(ws, 1011, "cannot convert the audio: %s", err.msg);
            failed = 1;
            break;
        }
        if (frames) memcpy(mono, a.samples, frames * sizeof *mono);
        at_audio_free(&a);
        free(buf);
        const float *feed = mono;
        size_t n_feed = frames;
        if (rs && frames) {
            if (at_resampler_process(rs, mono, frames, 0, &res, &res_cap, &n_feed, &err) != 0) {
                ws_error(ws, 1011, "resampling failed: %s", err.msg);
                failed = 1;
                break;
            }
            feed = res;
        }
        double t0 = at_now_s();
        if (n_feed && at_asr_stream_feed(as, feed, n_feed, send_event, &c, &err) != 0) {
            if (err.code != AT_E_CANCELLED) ws_error(ws, 1011, "recognition failed: %s", err.msg);
            failed = 1;
        }
        t_compute += at_now_s() - t0;
    }
    if (finished) {
        if (rs) {
            size_t n_feed = 0;
            if (at_resampler_process(rs, NULL, 0, 1, &res, &res_cap, &n_feed, &err) == 0 && n_feed)
                at_asr_stream_feed(as, res, n_feed, send_event, &c, &err);
        }
        if (at_asr_stream_finish(as, send_event, &c, &err) == 0) {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "type", "summary");
            cJSON_AddNumberToObject(o, "segments", (double)c.n_final);
            cJSON_AddNumberToObject(o, "duration", samples_in / rate);
            cJSON_AddNumberToObject(o, "compute_seconds", t_compute);
            cJSON_AddStringToObject(o, "text", c.transcript ? c.transcript : "");
            at_ws_send_json(ws, o);
            cJSON_Delete(o);
        } else if (err.code != AT_E_CANCELLED) {
            ws_error(ws, 1011, "recognition failed: %s", err.msg);
        }
    }
    at_app_count_audio(app, "asr", samples_in / rate);
    at_app_streams(app, -1);
    at_resampler_free(rs);
    at_asr_stream_close(as);
    free(mono);
    free(res);
    free(c.transcript);
}

static const at_http_route routes[] = {
    AT_SERVICE_COMMON_ROUTES,
    {"GET", "/v1/models", h_models, NULL, AT_ROUTE_INLINE, 0},
    {"POST", "/v1/audio/transcriptions", h_transcriptions, NULL, AT_ROUTE_WORKER, 0},
    {"POST", "/v1/audio/translations", h_translations, NULL, AT_ROUTE_WORKER, 0},
    {NULL, "/v1/stream", NULL, h_stream, AT_ROUTE_WORKER, 0},
};

int at_asr_service_listen(at_app *app, at_http_server *srv, const char *iface, int port, int *bound,
                          at_err *err)
{
    return at_http_server_listen(srv, "asr_streaming", iface, port, routes, sizeof routes / sizeof routes[0],
                                 app, bound, err);
}
