#include "engines/tts/tts.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct at_tts_engine {
    const at_tts_ops *ops;
    void *impl;
};

at_tts_engine *at_tts_engine_new(const at_tts_ops *ops, void *impl, at_err *err)
{
    at_tts_engine *e = calloc(1, sizeof *e);
    if (!e) {
        if (ops && ops->destroy) ops->destroy(impl);
        at_err_set(err, AT_E_NOMEM, "out of memory");
        return NULL;
    }
    e->ops = ops;
    e->impl = impl;
    return e;
}

void at_tts_engine_free(at_tts_engine *e)
{
    if (!e) return;
    if (e->ops->destroy) e->ops->destroy(e->impl);
    free(e);
}

const char *at_tts_engine_name(const at_tts_engine *e) { return e->ops->name; }

const at_tts_voice *at_tts_engine_voices(const at_tts_engine *e, size_t *n)
{
    return e->ops->voices(e->impl, n);
}

const at_tts_voice *at_tts_engine_find_voice(const at_tts_engine *e, const char *name)
{
    size_t n;
    const at_tts_voice *v = at_tts_engine_voices(e, &n);
    for (size_t i = 0; name && i < n; i++)
        if (strcmp(v[i].name, name) == 0) return &v[i];
    return NULL;
}

/* ---- serialised engines: a sentence at a time ---- */

#define DELIVER_CHUNK 4096 /* samples per callback */

/* One sentence's audio, collected while the engine holds its lock. */
typedef struct pcm_buf {
    int16_t *p;
    size_t n, cap;
    int oom;
} pcm_buf;

static int collect(void *user, const int16_t *pcm, size_t n)
{
    pcm_buf *b = user;
    if (!n) return 0;
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 16384;
        while (cap < b->n + n) cap *= 2;
        int16_t *p = realloc(b->p, cap * sizeof *p);
        if (!p) {
            b->oom = 1;
            return 1;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, pcm, n * sizeof *pcm);
    b->n += n;
    return 0;
}

size_t at_tts_sentence_len(const char *s, size_t n)
{
    size_t lim = n < AT_TTS_SENTENCE_MAX ? n : AT_TTS_SENTENCE_MAX, i = 0;
    for (; i < lim; i++) {
        char c = s[i];
        int end = c == '\n' || ((c == '.' || c == '!' || c == '?' || c == ';') && i + 1 < n &&
                                (s[i + 1] == ' ' || s[i + 1] == '\n' || s[i + 1] == '\t'));
        if (end) {
            i++;
            /* the blanks after it go with it, up to the limit: the rest
             * make a piece of their own, which callers skip */
            while (i < lim && (s[i] == ' ' || s[i] == '\n' || s[i] == '\t' || s[i] == '\r')) i++;
            return i;
        }
    }
    if (lim == n) return n;
    for (size_t k = lim; k > lim / 2; k--)
        if (s[k - 1] == ' ') return k;
    while (lim > 1 && ((unsigned char)s[lim] & 0xC0) == 0x80) lim--;
    return lim;
}

static int by_sentence(at_tts_engine *e, const at_tts_voice *voice, const char *text, const at_tts_params *p,
                       at_tts_chunk_cb cb, void *user, at_err *err)
{
    size_t n = strlen(text);
    char *piece = malloc((n < AT_TTS_SENTENCE_MAX ? n : AT_TTS_SENTENCE_MAX) + 1);
    if (!piece) return at_err_set(err, AT_E_NOMEM, "out of memory");
    pcm_buf b = {0};
    int rc = 0, spoke = 0;
    for (size_t off = 0; off < n && rc == 0;) {
        size_t len = at_tts_sentence_len(text + off, n - off);
        memcpy(piece, text + off, len);
        piece[len] = '\0';
        off += len;
        if (!piece[strspn(piece, " \t\r\n")]) continue; /* nothing to say */
        b.n = 0;
        rc = e->ops->synthesize(e->impl, voice, piece, p, collect, &b, err);
        if (b.oom) rc = at_err_set(err, AT_E_NOMEM, "out of memory");
        spoke |= rc == 0;
        for (size_t k = 0; rc == 0 && k < b.n; k += DELIVER_CHUNK)
            if (cb && cb(user, b.p + k, b.n - k < DELIVER_CHUNK ? b.n - k : DELIVER_CHUNK) != 0)
                rc = at_err_set(err, AT_E_CANCELLED, "synthesis cancelled by the caller");
    }
    if (rc == 0 && !spoke) rc = at_err_set(err, AT_E_INVALID, "input text is empty");
    free(b.p);
    free(piece);
    return rc;
}

void at_tts_params_init(at_tts_params *p)
{
    p->speed = 1.0f;
    p->noise_scale = -1.0f;
    p->noise_scale_duration = -1.0f;
    p->seed = -1;
    p->speaker_id = 0;
}

int at_tts_synthesize_params(at_tts_engine *e, const at_tts_voice *voice, const char *text,
                             const at_tts_params *p, at_tts_chunk_cb cb, void *user, at_err *err)
{
    if (!text || !*text) return at_err_set(err, AT_E_INVALID, "input text is empty");
    if (!(p->speed >= 0.25f && p->speed <= 4.0f))
        return at_err_set(err, AT_E_INVALID, "speed must be between 0.25 and 4.0");
    if (!voice) return at_err_set(err, AT_E_UNSUPPORTED, "no voice given");
    int speakers = voice->speakers > 1 ? voice->speakers : 1;
    if (p->speaker_id < 0 || p->speaker_id >= speakers) {
        if (speakers == 1)
            return at_err_set(err, AT_E_INVALID, "voice '%s' has one speaker (speaker_id 0), not %d",
                              voice->name, p->speaker_id);
        return at_err_set(err, AT_E_INVALID, "voice '%s' has speakers 0..%d, not %d", voice->name,
                          speakers - 1, p->speaker_id);
    }
    if (e->ops->serialised) return by_sentence(e, voice, text, p, cb, user, err);
    return e->ops->synthesize(e->impl, voice, text, p, cb, user, err);
}

int at_tts_synthesize(at_tts_engine *e, const at_tts_voice *voice, const char *text, float speed,
                      at_tts_chunk_cb cb, void *user, at_err *err)
{
    at_tts_params p;
    at_tts_params_init(&p);
    p.speed = speed;
    return at_tts_synthesize_params(e, voice, text, &p, cb, user, err);
}
