/* flite.c - CMU flite behind the at_tts interface.
 *
 * flite keeps process-wide state: flite_init() tables (run once, by
 * pthread_once) and the voices themselves, which register_cmu_us_*() hands
 * out as library singletons.  g_flite wraps that: the voices are registered
 * by the first engine and unregistered with the last (reference count),
 * and each voice has one process-wide mutex.  A voice's feature set is
 * shared: the streaming callback and the duration stretch (speed) are set
 * on it for one request, so requests on the same voice are serialised;
 * different voices run in parallel.  Audio reaches the caller through flite's audio-stream
 * callback as each chunk is made; returning CST_AUDIO_STREAM_STOP ends
 * synthesis early. */
#include "engines/tts/flite.h"

#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <flite/flite.h>

/* The Debian voice libraries do not ship headers for these. */
cst_voice *register_cmu_us_slt(const char *voxdir);
void unregister_cmu_us_slt(cst_voice *v);
cst_voice *register_cmu_us_kal16(const char *voxdir);
void unregister_cmu_us_kal16(cst_voice *v);
cst_voice *register_cmu_us_awb(const char *voxdir);
void unregister_cmu_us_awb(cst_voice *v);
cst_voice *register_cmu_us_rms(const char *voxdir);
void unregister_cmu_us_rms(cst_voice *v);

#define FL_N_VOICES    4
#define FL_SAMPLE_RATE 16000 /* all four Debian voices are 16 kHz */

static const struct {
    const char *name;
    const char *gender;
    cst_voice *(*reg)(const char *);
    void (*unreg)(cst_voice *);
} fl_table[FL_N_VOICES] = {
    {"slt", "female", register_cmu_us_slt, unregister_cmu_us_slt},
    {"kal", "male", register_cmu_us_kal16, unregister_cmu_us_kal16},
    {"awb", "male", register_cmu_us_awb, unregister_cmu_us_awb},
    {"rms", "male", register_cmu_us_rms, unregister_cmu_us_rms},
};

/* The library's global state, see the header comment. */
static struct {
    pthread_mutex_t mu; /* guards refs and vox */
    int refs;
    cst_voice *vox[FL_N_VOICES];
    pthread_mutex_t vmu[FL_N_VOICES]; /* one request per voice at a time */
} g_flite = {.mu = PTHREAD_MUTEX_INITIALIZER,
             .vmu = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_MUTEX_INITIALIZER, PTHREAD_MUTEX_INITIALIZER,
                     PTHREAD_MUTEX_INITIALIZER}};

typedef struct fl_engine {
    at_tts_voice voices[FL_N_VOICES];
} fl_engine;

typedef struct fl_request {
    at_tts_chunk_cb cb;
    void *user;
    int cancelled;
    int bad_rate;
    int expected_rate;
} fl_request;

static pthread_once_t fl_once = PTHREAD_ONCE_INIT;
static void fl_init_once(void) { flite_init(); }

static int fl_stream_cb(const cst_wave *w, int start, int size, int last, cst_audio_streaming_info *asi)
{
    (void)last;
    fl_request *r = asi->userdata;
    if (r->cancelled) return CST_AUDIO_STREAM_STOP;
    if (w->sample_rate != r->expected_rate) {
        r->bad_rate = w->sample_rate;
        return CST_AUDIO_STREAM_STOP;
    }
    if (size <= 0 || !r->cb) return CST_AUDIO_STREAM_CONT;
    if (r->cb(r->user, w->samples + start, (size_t)size) != 0) {
        r->cancelled = 1;
        return CST_AUDIO_STREAM_STOP;
    }
    return CST_AUDIO_STREAM_CONT;
}

/* flite 2.2's tokenizer corrupts its heap when a token ends in a run of
 * 313 or more punctuation characters (the process aborts), so runs are
 * cut to FL_MAX_PUNCT before the text reaches it.  flite speaks none of
 * a run's characters after the first few anyway. */
#define FL_MAX_PUNCT 8

static char *fl_clean(const char *text)
{
    size_t n = strlen(text), o = 0;
    char *t = malloc(n + 1);
    if (!t) return NULL;
    int run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)text[i];
        run = c < 128 && ispunct(c) ? run + 1 : 0;
        if (run <= FL_MAX_PUNCT) t[o++] = (char)c;
    }
    t[o] = '\0';
    return t;
}

static int fl_synthesize(void *impl, const at_tts_voice *voice, const char *text, const at_tts_params *p,
                         at_tts_chunk_cb cb, void *user, at_err *err)
{
    fl_engine *e = impl;
    int i = 0;
    while (i < FL_N_VOICES && strcmp(e->voices[i].name, voice->name) != 0) i++;
    if (i == FL_N_VOICES) return at_err_set(err, AT_E_UNSUPPORTED, "flite has no voice '%s'", voice->name);
    cst_voice *v = g_flite.vox[i];
    char *clean = fl_clean(text);
    if (!clean) return at_err_set(err, AT_E_NOMEM, "out of memory");
    fl_request req = {.cb = cb, .user = user, .expected_rate = e->voices[i].sample_rate};
    cst_audio_streaming_info *asi = new_audio_streaming_info();
    if (!asi) {
        free(clean);
        return at_err_set(err, AT_E_NOMEM, "out of memory");
    }
    asi->asc = fl_stream_cb;
    asi->userdata = &req;

    pthread_mutex_lock(&g_flite.vmu[i]);
    /* Speed: flite stretches durations, so 2x faster = stretch 0.5.  Keep
     * the voice's own stretch (some voices set one) as the base. */
    int had_stretch = feat_present(v->features, "duration_stretch");
    float base = had_stretch ? feat_float(v->features, "duration_stretch") : 1.0f;
    if (!(base > 0.0f)) base = 1.0f;
    feat_set_float(v->features, "duration_stretch", base / p->speed);
    feat_set(v->features, "streaming_info", audio_streaming_info_val(asi)); /* owns asi */
    cst_wave *w = flite_text_to_wave(clean, v);
    feat_remove(v->features, "streaming_info");
    if (had_stretch)
        feat_set_float(v->features, "duration_stretch", base);
    else
        feat_remove(v->features, "duration_stretch");
    pthread_mutex_unlock(&g_flite.vmu[i]);
    free(clean);
    if (w) delete_wave(w);

    if (req.cancelled) return at_err_set(err, AT_E_CANCELLED, "synthesis cancelled by the caller");
    if (req.bad_rate)
        return at_err_set(err, AT_E_ENGINE, "flite voice %s produced %d Hz, expected %d", voice->name,
                          req.bad_rate, req.expected_rate);
    if (!w) return at_err_set(err, AT_E_ENGINE, "flite failed to synthesise the text");
    return 0;
}

static const at_tts_voice *fl_voices(void *impl, size_t *n)
{
    fl_engine *e = impl;
    *n = FL_N_VOICES;
    return e->voices;
}

static void fl_release_voices(void)
{
    pthread_mutex_lock(&g_flite.mu);
    if (--g_flite.refs == 0)
        for (int i = 0; i < FL_N_VOICES; i++) {
            if (g_flite.vox[i]) fl_table[i].unreg(g_flite.vox[i]);
            g_flite.vox[i] = NULL;
        }
    pthread_mutex_unlock(&g_flite.mu);
}

static void fl_destroy(void *impl)
{
    if (!impl) return;
    fl_release_voices();
    free(impl);
}

static const at_tts_ops fl_ops = {
    .name = "flite",
    .serialised = 1,
    .destroy = fl_destroy,
    .synthesize = fl_synthesize,
    .voices = fl_voices,
};

at_tts_engine *at_tts_flite_new(at_err *err)
{
    pthread_once(&fl_once, fl_init_once);
    fl_engine *e = calloc(1, sizeof *e);
    if (!e) {
        at_err_set(err, AT_E_NOMEM, "out of memory");
        return NULL;
    }
    int ok = 1;
    pthread_mutex_lock(&g_flite.mu);
    g_flite.refs++;
    for (int i = 0; i < FL_N_VOICES && ok; i++) {
        if (!g_flite.vox[i]) g_flite.vox[i] = fl_table[i].reg(NULL);
        if (!g_flite.vox[i]) {
            at_err_set(err, AT_E_ENGINE, "flite could not register voice %s", fl_table[i].name);
            ok = 0;
        }
    }
    pthread_mutex_unlock(&g_flite.mu);
    if (!ok) {
        fl_destroy(e);
        return NULL;
    }
    for (int i = 0; i < FL_N_VOICES; i++) {
        at_tts_voice *o = &e->voices[i];
        snprintf(o->name, sizeof o->name, "%s", fl_table[i].name);
        snprintf(o->language, sizeof o->language, "en");
        snprintf(o->gender, sizeof o->gender, "%s", fl_table[i].gender);
        o->sample_rate = FL_SAMPLE_RATE;
    }
    return at_tts_engine_new(&fl_ops, e, err);
}
