#include "engines/tts/vits.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "compute/pool.h"
#include "core/lang.h"
#include "core/strbuf.h"
#include "engines/tts/espeak.h"
#include "engines/tts/vits/model.h"
#include "engines/tts/vits/tokenizer.h"

#define MAX_VOICES   64
#define DELIVER_SIZE 4096 /* samples a callback */

typedef struct vits_voice {
    at_vits_model *model;
    at_vits_tokenizer *tok;
} vits_voice;

typedef struct vits_engine {
    at_compute *pool;
    vits_voice *v;
    at_tts_voice *voices;
    int n;
} vits_engine;

static void vits_destroy(void *impl)
{
    vits_engine *e = impl;
    if (!e) return;
    for (int i = 0; i < e->n; i++) {
        at_vits_model_free(e->v[i].model);
        at_vits_tokenizer_free(e->v[i].tok);
    }
    free(e->v);
    free(e->voices);
    at_compute_free(e->pool);
    free(e);
}

/* The model's samples, as PCM16, to the caller's callback. */
typedef struct sink_ctx {
    at_tts_chunk_cb cb;
    void *user;
    int16_t buf[DELIVER_SIZE];
} sink_ctx;

static int to_pcm16(void *user, const float *wave, size_t n, at_err *err)
{
    sink_ctx *c = user;
    for (size_t off = 0; off < n; off += DELIVER_SIZE) {
        size_t k = n - off < DELIVER_SIZE ? n - off : DELIVER_SIZE;
        for (size_t i = 0; i < k; i++) {
            float s = wave[off + i] * 32767.0f;
            c->buf[i] = (int16_t)(s > 32767.0f ? 32767 : s < -32768.0f ? -32768 : lrintf(s));
        }
        if (c->cb && c->cb(c->user, c->buf, k))
            return at_err_set(err, AT_E_CANCELLED, "synthesis cancelled by the caller");
    }
    return 0;
}

/* One sentence: tokens, then audio streamed as the decoder makes it. */
static int say(vits_engine *e, vits_voice *v, const char *text, const at_vits_params *vp, sink_ctx *sink,
               at_err *err)
{
    int *ids = NULL, n = 0;
    int rc = at_vits_tokenizer_encode(v->tok, text, at_espeak_phonemizer, NULL, &ids, &n, err);
    if (rc == 0)
        rc = at_vits_synthesize_stream(v->model, e->pool, ids, n, vp, to_pcm16, sink, NULL, NULL, err);
    free(ids);
    return rc;
}

static int vits_synthesize(void *impl, const at_tts_voice *voice, const char *text, const at_tts_params *p,
                           at_tts_chunk_cb cb, void *user, at_err *err)
{
    vits_engine *e = impl;
    long vi = voice - e->voices;
    if (vi < 0 || vi >= e->n) return at_err_set(err, AT_E_UNSUPPORTED, "no neural voice '%s'", voice->name);
    vits_voice *v = &e->v[vi];
    at_vits_params vp;
    at_vits_params_default(v->model, &vp);
    if (p->noise_scale >= 0) vp.noise_scale = p->noise_scale;
    if (p->noise_scale_duration >= 0) vp.noise_scale_duration = p->noise_scale_duration;
    vp.speaking_rate *= p->speed;
    vp.speaker_id = p->speaker_id;
    if (p->seed >= 0) {
        vp.seed = (uint64_t)p->seed;
    } else if (getrandom(&vp.seed, sizeof vp.seed, 0) != (ssize_t)sizeof vp.seed) {
        return at_err_set(err, AT_E_IO, "no random seed: getrandom failed");
    }
    size_t len = strlen(text);
    if (!at_utf8_valid(text, len)) return at_err_set(err, AT_E_INVALID, "the input is not valid UTF-8");
    sink_ctx *sink = malloc(sizeof *sink);
    char *piece = malloc(AT_TTS_SENTENCE_MAX + 1);
    int rc = 0, spoke = 0;
    if (!sink || !piece)
        rc = at_err_set(err, AT_E_NOMEM, "out of memory");
    else {
        sink->cb = cb;
        sink->user = user;
    }
    /* A sentence at a time: the first is heard while the next is made,
     * and any text is worked on in bounded pieces.  A sentence with
     * nothing the voice can say (only unknown characters) is skipped. */
    for (size_t off = 0; off < len && rc == 0;) {
        size_t k = at_tts_sentence_len(text + off, len - off);
        memcpy(piece, text + off, k);
        piece[k] = '\0';
        off += k;
        if (!piece[strspn(piece, " \t\r\n")]) continue;
        /* the text is valid UTF-8, so AT_E_INVALID here is a sentence
         * that leaves no token: skipped, as espeak-ng skips what it cannot
         * say */
        at_err quiet;
        at_err_clear(&quiet);
        int r = say(e, v, piece, &vp, sink, &quiet);
        if (r == 0) {
            spoke = 1;
        } else if (r != AT_E_INVALID) {
            *err = quiet;
            rc = r;
        }
        vp.seed++; /* each sentence its own noise, reproducible from the request's seed */
    }
    if (rc == 0 && !spoke)
        rc = at_err_set(err, AT_E_INVALID, "the input has nothing voice '%s' can say", voice->name);
    free(piece);
    free(sink);
    return rc;
}

static const at_tts_voice *vits_voices(void *impl, size_t *n)
{
    vits_engine *e = impl;
    *n = (size_t)e->n;
    return e->voices;
}

static const at_tts_ops vits_ops = {
    .name = "vits",
    .destroy = vits_destroy,
    .synthesize = vits_synthesize,
    .voices = vits_voices,
};

/* The voice's language: "mms-tts-eng" -> "en"; else the tokenizer's
 * espeak-ng language up to its region ("en-us" -> "en"); else "". */
static void voice_language(const char *name, const char *tok_lang, char *out, size_t cap)
{
    const char *m = strstr(name, "mms-tts-");
    out[0] = '\0';
    if (m) {
        char code[16];
        snprintf(code, sizeof code, "%s", m + 8);
        code[strcspn(code, "-_")] = '\0';
        const char *iso1 = at_lang_iso1(code);
        snprintf(out, cap, "%s", iso1 ? iso1 : code);
    } else if (tok_lang && *tok_lang) {
        char code[16];
        snprintf(code, sizeof code, "%.*s", (int)strcspn(tok_lang, "-_"), tok_lang);
        const char *iso1 = strlen(code) == 3 ? at_lang_iso1(code) : NULL;
        snprintf(out, cap, "%s", iso1 ? iso1 : code);
    }
}

static const char *base_name(const char *dir, size_t *len)
{
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/') n--;
    size_t s = n;
    while (s > 0 && dir[s - 1] != '/') s--;
    *len = n - s;
    return dir + s;
}

at_tts_engine *at_tts_vits_new(const char *const *dirs, int n, const at_tts_vits_config *cfg, at_err *err)
{
    if (n < 1 || n > MAX_VOICES) {
        at_err_set(err, AT_E_INVALID, "give 1 to %d neural voices, not %d", MAX_VOICES, n);
        return NULL;
    }
    vits_engine *e = calloc(1, sizeof *e);
    if (!e || !(e->v = calloc((size_t)n, sizeof *e->v)) ||
        !(e->voices = calloc((size_t)n, sizeof *e->voices))) {
        vits_destroy(e);
        at_err_set(err, AT_E_NOMEM, "out of memory");
        return NULL;
    }
    if (!(e->pool = at_compute_new(cfg && cfg->threads > 0 ? cfg->threads : 0, err))) goto fail;
    for (int i = 0; i < n; i++) {
        vits_voice *v = &e->v[i];
        at_tts_voice *tv = &e->voices[i];
        size_t len;
        const char *name = base_name(dirs[i], &len);
        if (!len || len >= sizeof tv->name) {
            at_err_set(err, AT_E_INVALID, "%s: a voice folder needs a name of 1 to %zu characters", dirs[i],
                       sizeof tv->name - 1);
            goto fail;
        }
        snprintf(tv->name, sizeof tv->name, "%.*s", (int)len, name);
        for (int k = 0; k < i; k++)
            if (strcmp(e->voices[k].name, tv->name) == 0) {
                at_err_set(err, AT_E_INVALID, "two neural voices are named '%s'", tv->name);
                goto fail;
            }
        e->n = i + 1; /* freed on failure from here */
        if (!(v->model = at_vits_model_load(dirs[i], err))) goto fail;
        if (!(v->tok = at_vits_tokenizer_load(dirs[i], err))) goto fail;
        const at_vits_hparams *hp = at_vits_model_hparams(v->model);
        if (at_vits_tokenizer_max_id(v->tok) > hp->vocab) {
            at_err_set(err, AT_E_CORRUPT, "%s: vocab.json has ids up to %d, the model embeds %d", dirs[i],
                       at_vits_tokenizer_max_id(v->tok) - 1, hp->vocab);
            goto fail;
        }
        voice_language(tv->name, at_vits_tokenizer_language(v->tok), tv->language, sizeof tv->language);
        tv->sample_rate = hp->sampling_rate;
        tv->speakers = hp->num_speakers > 1 ? hp->num_speakers : 1;
        tv->neural = 1;
    }
    return at_tts_engine_new(&vits_ops, e, err);
fail:
    vits_destroy(e);
    return NULL;
}
