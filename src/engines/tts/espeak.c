/* espeak.c - espeak-ng behind the at_tts interface.
 *
 * libespeak-ng keeps all of its state in process globals (the loaded voice,
 * parameters, the synthesis callback).  That state is wrapped here by
 * g_espeak: one process-wide mutex around every library call, and a
 * flag so the library is initialised once, by the first engine, and kept
 * for the life of the process (see es_destroy).  The data path is fixed by the first engine
 * (the library cannot hold two).  Synthesis therefore runs one request at
 * a time across all espeak engines; it is much faster than real time.
 *
 * Output is synchronous: espeak_ng_Synthesize() returns when the text is
 * spoken, calling our callback with chunks of PCM on the way; the
 * per-request context travels in espeak's user_data, never in a global. */
#include "engines/tts/espeak.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <espeak-ng/espeak_ng.h>
#include <espeak-ng/speak_lib.h>

#define ES_BUFFER_MS 100 /* callback chunk length */
#define ES_BASE_WPM  175.0f
#define ES_MIN_WPM   80
#define ES_MAX_WPM   450

/* The library's global state, see the header comment. */
static struct {
    pthread_mutex_t mu;
    int refs; /* live engines (informational) */
    int initialised;
    int sample_rate;
} g_espeak = {PTHREAD_MUTEX_INITIALIZER, 0, 0, 0};

typedef struct es_voice_id {
    char file[128]; /* espeak identifier, e.g. "gmw/en-US" */
} es_voice_id;

typedef struct es_engine {
    at_tts_voice *voices;
    es_voice_id *ids; /* parallel to voices */
    size_t n;
} es_engine;

typedef struct es_request {
    at_tts_chunk_cb cb;
    void *user;
    int cancelled;
} es_request;

static int es_callback(short *wav, int n, espeak_EVENT *events)
{
    es_request *r = events ? events->user_data : NULL;
    if (!r || r->cancelled) return 1;
    if (wav && n > 0 && r->cb && r->cb(r->user, (const int16_t *)wav, (size_t)n) != 0) {
        r->cancelled = 1;
        return 1; /* tells espeak to stop */
    }
    return 0;
}

static int es_synthesize(void *impl, const at_tts_voice *voice, const char *text, float speed,
                         at_tts_chunk_cb cb, void *user, at_err *err)
{
    es_engine *e = impl;
    size_t idx = e->n;
    for (size_t i = 0; i < e->n; i++)
        if (strcmp(e->voices[i].name, voice->name) == 0) idx = i;
    if (idx == e->n) return at_err_set(err, AT_E_UNSUPPORTED, "espeak-ng has no voice '%s'", voice->name);
    int wpm = (int)(ES_BASE_WPM * speed + 0.5f);
    if (wpm < ES_MIN_WPM) wpm = ES_MIN_WPM;
    if (wpm > ES_MAX_WPM) wpm = ES_MAX_WPM;

    es_request req = {.cb = cb, .user = user};
    int rc = 0;
    pthread_mutex_lock(&g_espeak.mu);
    if (espeak_ng_SetVoiceByFile(e->ids[idx].file) != ENS_OK &&
        espeak_ng_SetVoiceByName(e->voices[idx].name) != ENS_OK) {
        rc = at_err_set(err, AT_E_ENGINE, "espeak-ng could not load voice '%s'", e->voices[idx].name);
    } else {
        espeak_ng_SetParameter(espeakRATE, wpm, 0);
        espeak_SetSynthCallback(es_callback);
        espeak_ng_STATUS st =
            espeak_ng_Synthesize(text, strlen(text) + 1, 0, POS_CHARACTER, 0, espeakCHARS_UTF8, NULL, &req);
        if (req.cancelled)
            rc = at_err_set(err, AT_E_CANCELLED, "synthesis cancelled by the caller");
        else if (st != ENS_OK)
            rc = at_err_set(err, AT_E_ENGINE, "espeak-ng synthesis failed (status %#x)", (unsigned)st);
    }
    pthread_mutex_unlock(&g_espeak.mu);
    return rc;
}

static const at_tts_voice *es_voices(void *impl, size_t *n)
{
    es_engine *e = impl;
    *n = e->n;
    return e->voices;
}

static void es_destroy(void *impl)
{
    es_engine *e = impl;
    if (!e) return;
    /* The library stays initialised for the life of the process:
     * espeak_ng_Terminate() of 1.51 hangs joining its internal thread in
     * synchronous mode, and re-initialising is not needed anyway. */
    pthread_mutex_lock(&g_espeak.mu);
    g_espeak.refs--;
    pthread_mutex_unlock(&g_espeak.mu);
    free(e->voices);
    free(e->ids);
    free(e);
}

static const at_tts_ops es_ops = {
    .name = "espeak-ng",
    .serialised = 1,
    .destroy = es_destroy,
    .synthesize = es_synthesize,
    .voices = es_voices,
};

/* Copies espeak's voice list (called under g_espeak.mu: the list lives in
 * library memory that the next ListVoices call replaces). */
static int add_voice(es_engine *e, const espeak_VOICE *v, const char *lang)
{
    if (strlen(lang) >= sizeof e->voices[0].name || strlen(v->identifier) >= sizeof e->ids[0].file) return 0;
    for (size_t k = 0; k < e->n; k++)
        if (strcmp(e->voices[k].name, lang) == 0) return 0;
    at_tts_voice *o = &e->voices[e->n];
    snprintf(o->name, sizeof o->name, "%s", lang);
    snprintf(o->language, sizeof o->language, "%.*s", (int)strcspn(lang, "-_"), lang);
    snprintf(o->gender, sizeof o->gender, "%s", v->gender == 1 ? "male" : v->gender == 2 ? "female" : "");
    o->sample_rate = g_espeak.sample_rate;
    snprintf(e->ids[e->n].file, sizeof e->ids[0].file, "%s", v->identifier);
    e->n++;
    return 1;
}

/* Copies espeak's voice list (called under g_espeak.mu: the list lives in
 * library memory that the next ListVoices call replaces).  A voice is named
 * by its first language ("en-gb", "fr-fr"); then every other language a
 * voice declares becomes an alias if still free, so the plain codes users
 * ask for ("en", "fr") exist too. */
static int list_voices(es_engine *e, at_err *err)
{
    const espeak_VOICE **vl = espeak_ListVoices(NULL);
    size_t cap = 0;
    for (size_t i = 0; vl && vl[i]; i++)
        for (const char *l = vl[i]->languages; l && l[0] && l[1]; l += strlen(l + 1) + 2) cap++;
    e->voices = calloc(cap ? cap : 1, sizeof *e->voices);
    e->ids = calloc(cap ? cap : 1, sizeof *e->ids);
    if (!e->voices || !e->ids) return at_err_set(err, AT_E_NOMEM, "out of memory");
    for (int pass = 0; pass < 2; pass++)
        for (size_t i = 0; vl && vl[i]; i++) {
            const espeak_VOICE *v = vl[i];
            if (!v->identifier || !v->languages || !v->languages[0] || !v->languages[1]) continue;
            /* MBROLA voices need separately installed diphone databases. */
            if (strncmp(v->identifier, "mb/", 3) == 0) continue;
            const char *l = v->languages; /* priority byte, name, NUL, ... */
            if (pass == 0) {
                add_voice(e, v, l + 1);
                continue;
            }
            for (l += strlen(l + 1) + 2; l[0] && l[1]; l += strlen(l + 1) + 2) add_voice(e, v, l + 1);
        }
    if (e->n == 0) return at_err_set(err, AT_E_CORRUPT, "espeak-ng lists no usable voices");
    return 0;
}

at_tts_engine *at_tts_espeak_new(const char *data_path, at_err *err)
{
    es_engine *e = calloc(1, sizeof *e);
    if (!e) {
        at_err_set(err, AT_E_NOMEM, "out of memory");
        return NULL;
    }
    int rc = 0, took_ref = 0;
    pthread_mutex_lock(&g_espeak.mu);
    if (!g_espeak.initialised) {
        espeak_ng_InitializePath(data_path && *data_path ? data_path : NULL);
        espeak_ng_STATUS st = espeak_ng_Initialize(NULL);
        if (st == ENS_OK) st = espeak_ng_InitializeOutput(ENOUTPUT_MODE_SYNCHRONOUS, ES_BUFFER_MS, NULL);
        if (st != ENS_OK) {
            rc = at_err_set(err, AT_E_CORRUPT, "espeak-ng failed to initialise (data path %s, status %#x)",
                            data_path ? data_path : "(default)", (unsigned)st);
        } else {
            g_espeak.sample_rate = espeak_ng_GetSampleRate();
            g_espeak.initialised = 1;
        }
    }
    if (rc == 0) {
        g_espeak.refs++;
        took_ref = 1;
        rc = list_voices(e, err);
    }
    pthread_mutex_unlock(&g_espeak.mu);
    if (rc) {
        if (took_ref) {
            es_destroy(e); /* drops the reference, frees e */
        } else {
            free(e);
        }
        return NULL;
    }
    return at_tts_engine_new(&es_ops, e, err);
}
