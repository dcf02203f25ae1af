/* remote_tts.c - at_tts over the tts service: POST /v1/audio/speech with
 * response_format pcm, the streamed body handed to the chunk callback as
 * it arrives. */
#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engines/remote/http_client.h"
#include "engines/remote/remote.h"

typedef struct remote_tts {
    char base[600];
    char key[300]; /* "" for none */
    at_tts_voice *voices;
    size_t n_voices;
} remote_tts;

static void rtts_destroy(void *impl)
{
    remote_tts *t = impl;
    if (!t) return;
    free(t->voices);
    free(t);
}

typedef struct pcm_ctx {
    at_tts_chunk_cb cb;
    void *user;
    unsigned char odd; /* a sample split across two network reads */
    int has_odd;
    int16_t buf[4096];
} pcm_ctx;

static int on_data(void *user, const unsigned char *p, size_t n)
{
    pcm_ctx *c = user;
    if (n == 0) return c->cb(c->user, NULL, 0); /* waiting: ask whether to go on */
    while (n) {
        size_t k = 0;
        unsigned char *dst = (unsigned char *)c->buf;
        if (c->has_odd) {
            dst[k++] = c->odd;
            c->has_odd = 0;
        }
        size_t take = sizeof c->buf - k;
        if (take > n) take = n;
        memcpy(dst + k, p, take);
        k += take;
        p += take;
        n -= take;
        if (k & 1) {
            c->odd = dst[--k];
            c->has_odd = 1;
        }
        if (k && c->cb(c->user, c->buf, k / 2)) return 1;
    }
    return 0;
}

static int rtts_synthesize(void *impl, const at_tts_voice *voice, const char *text, const at_tts_params *p,
                           at_tts_chunk_cb cb, void *user, at_err *err)
{
    remote_tts *t = impl;
    cJSON *req = cJSON_CreateObject();
    cJSON_AddStringToObject(req, "input", text);
    cJSON_AddStringToObject(req, "voice", voice->name);
    cJSON_AddStringToObject(req, "response_format", "pcm");
    /* the voice's own rate, not OpenAI's 24 kHz: no resampling twice */
    cJSON_AddNumberToObject(req, "sample_rate", voice->sample_rate);
    cJSON_AddNumberToObject(req, "speed", p->speed);
    /* the neural voices' extensions, only when set: a service without
     * neural voices then sees OpenAI's request */
    if (p->noise_scale >= 0) cJSON_AddNumberToObject(req, "noise_scale", p->noise_scale);
    if (p->noise_scale_duration >= 0)
        cJSON_AddNumberToObject(req, "noise_scale_duration", p->noise_scale_duration);
    if (p->seed >= 0) cJSON_AddNumberToObject(req, "seed", (double)p->seed);
    if (p->speaker_id > 0) cJSON_AddNumberToObject(req, "speaker_id", p->speaker_id);
    char *body = cJSON_PrintUnformatted(req);
    cJSON_Delete(req);
    if (!body) return at_err_set(err, AT_E_NOMEM, "out of memory");
    pcm_ctx *c = malloc(sizeof *c);
    if (!c) {
        free(body);
        return at_err_set(err, AT_E_NOMEM, "out of memory");
    }
    c->cb = cb;
    c->user = user;
    c->has_odd = 0;
    int rc = at_remote_stream(t->base, t->key, "/v1/audio/speech", body, 120, on_data, c, err);
    free(c);
    free(body);
    return rc;
}

static const at_tts_voice *rtts_voices(void *impl, size_t *n)
{
    remote_tts *t = impl;
    *n = t->n_voices;
    return t->voices;
}

static const at_tts_ops rtts_ops = {
    .name = "remote-tts",
    .destroy = rtts_destroy,
    .synthesize = rtts_synthesize,
    .voices = rtts_voices,
};

at_tts_engine *at_tts_remote_new(const char *base_url, const char *api_key, at_err *err)
{
    char host[256], path[256];
    int port;
    if (at_url_parse(base_url, host, sizeof host, &port, path, sizeof path, err) != 0) return NULL;
    remote_tts *t = calloc(1, sizeof *t);
    if (!t) {
        at_err_set(err, AT_E_NOMEM, "out of memory");
        return NULL;
    }
    snprintf(t->base, sizeof t->base, "http://%s:%d%s", host, port, path);
    snprintf(t->key, sizeof t->key, "%s", api_key ? api_key : "");
    cJSON *o = at_remote_json(t->base, t->key, "/v1/voices", NULL, 4u << 20, 10, err);
    const cJSON *arr = o ? cJSON_GetObjectItemCaseSensitive(o, "voices") : NULL;
    if (!cJSON_IsArray(arr)) {
        if (o) at_err_set(err, AT_E_IO, "%s/v1/voices: no voice list", t->base);
        cJSON_Delete(o);
        rtts_destroy(t);
        return NULL;
    }
    size_t cap = (size_t)cJSON_GetArraySize(arr);
    t->voices = calloc(cap + 1, sizeof *t->voices);
    if (!t->voices) {
        cJSON_Delete(o);
        rtts_destroy(t);
        at_err_set(err, AT_E_NOMEM, "out of memory");
        return NULL;
    }
    const cJSON *v;
    cJSON_ArrayForEach(v, arr)
    {
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(v, "name");
        const cJSON *lang = cJSON_GetObjectItemCaseSensitive(v, "language");
        const cJSON *gender = cJSON_GetObjectItemCaseSensitive(v, "gender");
        const cJSON *rate = cJSON_GetObjectItemCaseSensitive(v, "sample_rate");
        const cJSON *speakers = cJSON_GetObjectItemCaseSensitive(v, "speakers");
        const cJSON *neural = cJSON_GetObjectItemCaseSensitive(v, "neural");
        if (!cJSON_IsString(name) || !cJSON_IsNumber(rate) || t->n_voices >= cap) continue;
        at_tts_voice *d = &t->voices[t->n_voices++];
        snprintf(d->name, sizeof d->name, "%s", name->valuestring);
        snprintf(d->language, sizeof d->language, "%s", cJSON_IsString(lang) ? lang->valuestring : "");
        snprintf(d->gender, sizeof d->gender, "%s", cJSON_IsString(gender) ? gender->valuestring : "");
        d->sample_rate = rate->valueint;
        d->speakers =
            cJSON_IsNumber(speakers) && speakers->valuedouble >= 1 && speakers->valuedouble <= 1 << 20
                ? (int)speakers->valuedouble
                : 1;
        d->neural = cJSON_IsTrue(neural);
    }
    cJSON_Delete(o);
    return at_tts_engine_new(&rtts_ops, t, err);
}
