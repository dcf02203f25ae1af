/* tts_service.c - tts: OpenAI-compatible speech synthesis, streamed.
 *
 *   POST /v1/audio/speech   JSON: input, voice, response_format (mp3, the
 *                           default, opus, aac, flac, wav, pcm), speed,
 *                           stream_format ("audio" or "sse"), and as
 *                           extensions sample_rate (24000 by default)
 *                           and, for neural voices, noise_scale,
 *                           noise_scale_duration, seed and speaker_id
 *   GET  /v1/voices         the voices of every engine
 *
 * Audio is encoded and leaves as the engine produces it (chunked transfer
 * encoding); a WAV stream carries a header with unknown-length sizes, as
 * OpenAI's does.  With stream_format "sse" the same bytes travel base64 in
 * speech.audio.delta events, ended by speech.audio.done. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libwebsockets.h>

#include "core/clock.h"
#include "core/encode.h"
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
    const char *format;
    int sse;         /* stream_format "sse": base64 audio in events */
    int out_rate;    /* what the client gets */
    int in_rate;     /* what the voice makes */
    at_encoder *enc; /* made with the first audio */
    int started;
    size_t samples;
    at_err enc_err;
} speech_ctx;

/* Encoded bytes to the client: as they are, or as an SSE event. */
static int on_encoded(void *user, const void *data, size_t len)
{
    speech_ctx *c = user;
    if (!c->sse) return at_http_stream_write(c->req, data, len) != 0;
    size_t cap = 4 * ((len + 2) / 3) + 2; /* lws wants a byte beyond the NUL */
    char *b64 = malloc(cap);
    if (!b64 || lws_b64_encode_string(data, (int)len, b64, (int)cap) < 0) {
        free(b64);
        return 1;
    }
    cJSON *ev = cJSON_CreateObject();
    cJSON_AddStringToObject(ev, "type", "speech.audio.delta");
    cJSON_AddStringToObject(ev, "audio", b64);
    free(b64);
    int rc = at_http_sse_event(c->req, ev);
    cJSON_Delete(ev);
    return rc != 0;
}

static int on_chunk(void *user, const int16_t *pcm, size_t n)
{
    speech_ctx *c = user;
    if (n == 0) return at_http_req_cancelled(c->req); /* "go on?" (tts.h) */
    if (!c->started) {
        /* Headers go out with the first audio, so an engine failure
         * before any audio still gets a proper JSON error. */
        char rate[16];
        snprintf(rate, sizeof rate, "%d", c->out_rate);
        at_http_add_header(c->req, "x-sample-rate", rate);
        if (at_http_stream_begin(c->req, 200,
                                 c->sse ? "text/event-stream" : at_encoder_content_type(c->format)) != 0)
            return 1;
        c->started = 1;
        c->enc = at_encoder_new(c->format, c->in_rate, c->out_rate, on_encoded, c, &c->enc_err);
        if (!c->enc) return 1;
    }
    c->samples += n;
    return at_encoder_push(c->enc, pcm, n, &c->enc_err) != 0;
}

/* Ends a started response: the encoder's last bytes, then (SSE) the done
 * event with OpenAI's usage fields (characters in, audio seconds out). */
static void finish_speech(speech_ctx *c, size_t input_chars)
{
    if (c->enc && at_encoder_finish(c->enc, &c->enc_err) == 0 && c->sse) {
        cJSON *ev = cJSON_CreateObject(), *u;
        cJSON_AddStringToObject(ev, "type", "speech.audio.done");
        u = cJSON_AddObjectToObject(ev, "usage");
        cJSON_AddNumberToObject(u, "input_tokens", (double)input_chars);
        cJSON_AddNumberToObject(u, "output_tokens", (double)c->samples / c->in_rate);
        cJSON_AddNumberToObject(u, "total_tokens", (double)input_chars + (double)c->samples / c->in_rate);
        at_http_sse_event(c->req, ev);
        cJSON_Delete(ev);
    }
    at_http_stream_end(c->req);
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
    const cJSON *sfmt = cJSON_GetObjectItemCaseSensitive(o, "stream_format");
    const cJSON *srate = cJSON_GetObjectItemCaseSensitive(o, "sample_rate");
    /* neural voices (extensions): noise of the prior and of the durations,
     * a seed for reproducible noisy output, a multi-speaker voice's speaker */
    const cJSON *noise = cJSON_GetObjectItemCaseSensitive(o, "noise_scale");
    const cJSON *noise_w = cJSON_GetObjectItemCaseSensitive(o, "noise_scale_duration");
    const cJSON *seed = cJSON_GetObjectItemCaseSensitive(o, "seed");
    const cJSON *speaker = cJSON_GetObjectItemCaseSensitive(o, "speaker_id");
    const char *f = cJSON_IsString(fmt) ? fmt->valuestring : "mp3"; /* OpenAI's default */
    at_tts_engine *eng = NULL;
    const at_tts_voice *v = NULL;
    size_t max_chars = at_app_cfg(app)->max_text_chars;
    if (!cJSON_IsString(input)) {
        at_http_error_coded(req, 400, "invalid_request_error", NULL, "input",
                            "'input' is required and must be a string");
    } else if (!input->valuestring[strspn(input->valuestring, " \t\r\n\f\v")]) { /* blank */
        at_http_error_coded(req, 400, "invalid_request_error", NULL, "input",
                            "'input' is empty: nothing to say");
    } else if (strlen(input->valuestring) > max_chars) {
        at_http_error_coded(req, 413, "invalid_request_error", NULL, "input",
                            "input of %zu characters exceeds the limit of %zu", strlen(input->valuestring),
                            max_chars);
    } else if (voice && !cJSON_IsString(voice)) {
        at_http_error_coded(req, 400, "invalid_request_error", NULL, "voice", "'voice' must be a string");
    } else if (fmt && !cJSON_IsString(fmt)) {
        at_http_error_coded(req, 400, "invalid_request_error", NULL, "response_format",
                            "'response_format' must be a string");
    } else if (!at_encoder_known(f)) {
        at_http_error_coded(req, 400, "invalid_request_error", NULL, "response_format",
                            "unsupported response_format '%s'; supported: %s", f, at_encoder_formats());
    } else if (sfmt && (!cJSON_IsString(sfmt) ||
                        (strcmp(sfmt->valuestring, "audio") != 0 && strcmp(sfmt->valuestring, "sse") != 0))) {
        at_http_error_coded(req, 400, "invalid_request_error", NULL, "stream_format",
                            "'stream_format' must be \"audio\" or \"sse\"");
    } else if (srate && (!cJSON_IsNumber(srate) || srate->valuedouble < 8000 || srate->valuedouble > 48000 ||
                         srate->valuedouble != (int)srate->valuedouble)) {
        at_http_error_coded(req, 400, "invalid_request_error", NULL, "sample_rate",
                            "'sample_rate' must be a whole number of Hz from 8000 to 48000");
    } else if (speed && (!cJSON_IsNumber(speed) || speed->valuedouble < 0.25 || speed->valuedouble > 4.0)) {
        at_http_error_coded(req, 400, "invalid_request_error", NULL, "speed",
                            "'speed' must be a number from 0.25 to 4.0");
    } else if (noise && (!cJSON_IsNumber(noise) || !(noise->valuedouble >= 0 && noise->valuedouble <= 10))) {
        at_http_error_coded(req, 400, "invalid_request_error", NULL, "noise_scale",
                            "'noise_scale' must be a number from 0 to 10");
    } else if (noise_w &&
               (!cJSON_IsNumber(noise_w) || !(noise_w->valuedouble >= 0 && noise_w->valuedouble <= 10))) {
        at_http_error_coded(req, 400, "invalid_request_error", NULL, "noise_scale_duration",
                            "'noise_scale_duration' must be a number from 0 to 10");
    } else if (seed && (!cJSON_IsNumber(seed) ||
                        !(seed->valuedouble >= 0 && seed->valuedouble <= 9007199254740991.0) ||
                        seed->valuedouble != (double)(int64_t)seed->valuedouble)) {
        at_http_error_coded(req, 400, "invalid_request_error", NULL, "seed",
                            "'seed' must be a whole number from 0 to 2^53-1");
    } else if (speaker &&
               (!cJSON_IsNumber(speaker) || !(speaker->valuedouble >= 0 && speaker->valuedouble < 1e6) ||
                speaker->valuedouble != (int)speaker->valuedouble)) {
        at_http_error_coded(req, 400, "invalid_request_error", NULL, "speaker_id",
                            "'speaker_id' must be a whole number, 0 or more");
    } else if (!(v = at_app_find_voice(app, cJSON_IsString(voice) ? voice->valuestring : NULL, &eng))) {
        at_http_error_coded(req, 400, "invalid_request_error", NULL, "voice",
                            "unknown voice '%s'; GET /v1/voices lists them (a language code such as "
                            "\"es\" also works)",
                            cJSON_IsString(voice) ? voice->valuestring : "(default)");
    } else {
        /* OpenAI sends 24 kHz in every format; sample_rate (an extension)
         * asks for another rate, e.g. the voice's own */
        int out_rate = srate ? (int)srate->valuedouble : 24000;
        at_err err;
        if (at_encoder_check(f, out_rate, &err) != 0) { /* Opus: 8, 12, 16, 24, 48 kHz only */
            at_http_error_coded(req, 400, "invalid_request_error", NULL, "sample_rate", "%s", err.msg);
            cJSON_Delete(o);
            return;
        }
        speech_ctx c = {.req = req,
                        .format = f,
                        .sse = sfmt && strcmp(sfmt->valuestring, "sse") == 0,
                        .out_rate = out_rate,
                        .in_rate = v->sample_rate};
        at_err_clear(&err);
        double t0 = at_now_s();
        at_tts_params tp;
        at_tts_params_init(&tp);
        if (speed) tp.speed = (float)speed->valuedouble;
        if (noise) tp.noise_scale = (float)noise->valuedouble;
        if (noise_w) tp.noise_scale_duration = (float)noise_w->valuedouble;
        if (seed) tp.seed = (int64_t)seed->valuedouble;
        if (speaker) tp.speaker_id = (int)speaker->valuedouble;
        int rc = at_tts_synthesize_params(eng, v, input->valuestring, &tp, on_chunk, &c, &err);
        at_app_observe(app, "tts_synthesize", at_now_s() - t0);
        if (rc != 0 && !c.started) {
            at_http_error_from(req, &err);
        } else if (c.started) {
            finish_speech(&c, strlen(input->valuestring));
            at_app_count_audio(app, "tts", (double)c.samples / c.in_rate);
        } else {
            /* The engine made no audio at all (e.g. only punctuation). */
            at_http_error_coded(req, 422, "invalid_request_error", NULL, "input",
                                "the input produced no speech");
        }
        at_encoder_free(c.enc);
    }
    cJSON_Delete(o);
}

static const at_http_route routes[] = {
    AT_SERVICE_COMMON_ROUTES,
    {"GET", "/v1/voices", h_voices, NULL, AT_ROUTE_INLINE, 0},
    {"POST", "/v1/audio/speech", h_speech, NULL, AT_ROUTE_WORKER, AT_TEXT_BODY_MAX},
};

int at_tts_service_listen(at_app *app, at_http_server *srv, const char *iface, int port, int *bound,
                          at_err *err)
{
    return at_http_server_listen(srv, "tts", iface, port, routes, sizeof routes / sizeof routes[0], app,
                                 bound, err);
}
