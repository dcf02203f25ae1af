/* tts_service.c - tts: OpenAI-compatible speech synthesis, streamed.
 *
 *   POST /v1/audio/speech   JSON: input, voice, response_format (wav|pcm), speed
 *   GET  /v1/voices         the voices of every engine
 *
 * Audio leaves as the engine produces it (chunked transfer encoding); a WAV
 * stream carries a header with unknown-length sizes, as OpenAI's does. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/audio.h"
#include "services/app.h"

static void h_voices(at_http_req *req, void *user)
{
    at_app *app = user;
    if (!at_service_require_ready(app, req)) return;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddItemToObject(o, "voices", at_app_voices_json(app));
    at_http_respond_json(req, 200, o);
    cJSON_Delete(o);
}

typedef struct speech_ctx {
    at_http_req *req;
    int wav;
    int started;
    int sample_rate;
    size_t samples;
} speech_ctx;

static int on_chunk(void *user, const int16_t *pcm, size_t n)
{
    speech_ctx *c = user;
    if (n == 0) return at_http_req_cancelled(c->req); /* "go on?" (tts.h) */
    if (!c->started) {
        /* Headers go out with the first audio, so an engine failure
         * before any audio still gets a proper JSON error. */
        char rate[16];
        snprintf(rate, sizeof rate, "%d", c->sample_rate);
        at_http_add_header(c->req, "x-sample-rate", rate);
        if (at_http_stream_begin(c->req, 200, c->wav ? "audio/wav" : "audio/pcm") != 0) return 1;
        c->started = 1;
        if (c->wav) {
            uint8_t hdr[44];
            at_wav_header(hdr, c->sample_rate, 0xFFFFFFFFu);
            if (at_http_stream_write(c->req, hdr, sizeof hdr) != 0) return 1;
        }
    }
    c->samples += n;
    /* PCM16 little-endian on the wire; this host is little-endian (x86/arm). */
    return at_http_stream_write(c->req, pcm, n * sizeof *pcm) != 0;
}

static void h_speech(at_http_req *req, void *user)
{
    at_app *app = user;
    if (!at_service_require_ready(app, req)) return;
    size_t len;
    const char *body = (const char *)at_http_req_body(req, &len);
    cJSON *o = cJSON_ParseWithLength(body, len);
    if (o && at_json_text_has_nul(body, len)) {
        cJSON_Delete(o);
        at_http_error(req, 400, "invalid_request_error",
                      "the input contains a NUL character (\\u0000); remove it");
        return;
    }
    if (!cJSON_IsObject(o)) {
        cJSON_Delete(o);
        at_http_error(req, 400, "invalid_request_error",
                      len ? "the body is not a valid JSON object"
                          : "empty body; send JSON {\"input\":..., \"voice\":...}");
        return;
    }
    const cJSON *input = cJSON_GetObjectItemCaseSensitive(o, "input");
    const cJSON *voice = cJSON_GetObjectItemCaseSensitive(o, "voice");
    const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(o, "response_format");
    const cJSON *speed = cJSON_GetObjectItemCaseSensitive(o, "speed");
    const char *f = cJSON_IsString(fmt) ? fmt->valuestring : "wav";
    at_tts_engine *eng = NULL;
    const at_tts_voice *v = NULL;
    size_t max_chars = at_app_cfg(app)->max_text_chars;
    if (!cJSON_IsString(input)) {
        at_http_error(req, 400, "invalid_request_error", "'input' is required and must be a string");
    } else if (!input->valuestring[strspn(input->valuestring, " \t\r\n\f\v")]) { /* blank */
        at_http_error(req, 400, "invalid_request_error", "'input' is empty: nothing to say");
    } else if (strlen(input->valuestring) > max_chars) {
        at_http_error(req, 413, "invalid_request_error", "input of %zu characters exceeds the limit of %zu",
                      strlen(input->valuestring), max_chars);
    } else if (voice && !cJSON_IsString(voice)) {
        at_http_error(req, 400, "invalid_request_error", "'voice' must be a string");
    } else if (fmt && !cJSON_IsString(fmt)) {
        at_http_error(req, 400, "invalid_request_error", "'response_format' must be a string");
    } else if (strcmp(f, "wav") != 0 && strcmp(f, "pcm") != 0) {
        at_http_error(req, 400, "invalid_request_error",
                      "unsupported response_format '%s'; supported: wav, pcm", f);
    } else if (speed && (!cJSON_IsNumber(speed) || speed->valuedouble < 0.25 || speed->valuedouble > 4.0)) {
        at_http_error(req, 400, "invalid_request_error", "'speed' must be a number from 0.25 to 4.0");
    } else if (!(v = at_app_find_voice(app, cJSON_IsString(voice) ? voice->valuestring : NULL, &eng))) {
        at_http_error(req, 400, "invalid_request_error",
                      "unknown voice '%s'; GET /v1/voices lists them (a language code such as "
                      "\"es\" also works)",
                      cJSON_IsString(voice) ? voice->valuestring : "(default)");
    } else {
        speech_ctx c = {req, strcmp(f, "wav") == 0, 0, v->sample_rate, 0};
        at_err err;
        at_err_clear(&err);
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        int rc = at_tts_synthesize(eng, v, input->valuestring, speed ? (float)speed->valuedouble : 1.0f,
                                   on_chunk, &c, &err);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        at_app_observe(app, "tts_synthesize",
                       (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
        if (rc != 0 && !c.started) {
            at_http_error_from(req, &err);
        } else if (c.started) {
            at_http_stream_end(req);
            at_app_count_audio(app, "tts", (double)c.samples / c.sample_rate);
        } else {
            /* The engine made no audio at all (e.g. only punctuation). */
            at_http_error(req, 422, "invalid_request_error", "the input produced no speech");
        }
    }
    cJSON_Delete(o);
}

static const at_http_route routes[] = {
    AT_SERVICE_COMMON_ROUTES,
    {"GET", "/v1/voices", h_voices, NULL, AT_ROUTE_INLINE},
    {"POST", "/v1/audio/speech", h_speech, NULL, AT_ROUTE_WORKER},
};

int at_tts_service_listen(at_app *app, at_http_server *srv, const char *iface, int port, int *bound,
                          at_err *err)
{
    return at_http_server_listen(srv, "tts", iface, port, routes, sizeof routes / sizeof routes[0], app,
                                 bound, err);
}
