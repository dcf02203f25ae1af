#include "engines/tts/tts.h"

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

int at_tts_synthesize(at_tts_engine *e, const at_tts_voice *voice, const char *text, float speed,
                      at_tts_chunk_cb cb, void *user, at_err *err)
{
    if (!text || !*text) return at_err_set(err, AT_E_INVALID, "input text is empty");
    if (!(speed >= 0.25f && speed <= 4.0f))
        return at_err_set(err, AT_E_INVALID, "speed must be between 0.25 and 4.0");
    if (!voice) return at_err_set(err, AT_E_UNSUPPORTED, "no voice given");
    return e->ops->synthesize(e->impl, voice, text, speed, cb, user, err);
}
