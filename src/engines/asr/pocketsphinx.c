/* pocketsphinx.c - CMU pocketsphinx (5prealpha) behind the at_asr interface.
 *
 * Decoders are expensive to load (acoustic model + LM + dictionary: about
 * 0.6 s and 90 MB each), so the engine keeps a pool: a stream (or a
 * whole-file transcription) borrows a decoder, and ps_start_utt() resets
 * its search state for the next user.  When all `max_decoders` are busy,
 * opening another stream fails with AT_E_BUSY rather than piling up
 * memory.  Only KEEP_WARM decoders stay loaded while idle: the others a
 * burst needed are freed as they come back, so memory returns to its
 * idle level (a burst of 16 streams would otherwise hold 1.5 GB for good),
 * at the price of a load when concurrency next exceeds KEEP_WARM.
 *
 * Utterances are split on pocketsphinx's own voice activity detection
 * (ps_get_in_speech).  ps_start_stream() at the start of each stream makes
 * segment frame numbers count from the stream's first sample (silence
 * included), so word times come straight from ps_seg_frames().  Audio is
 * processed in fixed blocks independent of how the caller chunks it, so
 * streaming and whole-file transcription give identical results. */
#include "engines/asr/pocketsphinx.h"

#include <limits.h>
#include <malloc.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <pocketsphinx.h>
#include <sphinxbase/cmn.h>
#include <sphinxbase/err.h>
#include <sphinxbase/feat.h>

#ifndef AT_POCKETSPHINX_MODEL_DIR
#define AT_POCKETSPHINX_MODEL_DIR "/usr/share/pocketsphinx/model/en-us"
#endif

#define PS_DEFAULT_MAX_DECODERS 4
#define PS_FRAME_SAMPLES        160                           /* 100 frames per second at 16 kHz */
#define PS_BLOCK                320                           /* 20 ms: VAD decisions land on these */
#define PS_PARTIAL_EVERY        (AT_ASR_SAMPLE_RATE * 3 / 10) /* ~300 ms of audio */
/* Speech is reported after -vad_startspeech (10) speech frames and the
 * decoder also gets -vad_prespeech (20) frames from before: partial
 * hypotheses are dated from about this far before detection. */
#define UTT_LOOKBACK_FRAMES     30

/* A pooled decoder plus the cepstral mean it started with: live CMN adapts
 * to the audio heard, so it is put back for every new stream, making each
 * stream's result independent of what the decoder decoded before. */
typedef struct ps_dec {
    ps_decoder_t *ps;
    mfcc_t *cmn0;
    int veclen;
} ps_dec;

typedef struct ps_engine {
    char hmm[PATH_MAX];
    char lm[PATH_MAX];
    char dict[PATH_MAX];
    pthread_mutex_t mu;   /* guards the pool below */
    pthread_cond_t moved; /* a load ended or a decoder came back */
    ps_dec **idle;        /* capacity max_decoders */
    int n_idle;
    int n_total; /* idle + borrowed + being created */
    int max_decoders;
    int loading; /* a decoder load is in progress */
    int waiting; /* callers waiting for that load or a returned decoder */
} ps_engine;

typedef struct ps_stream {
    ps_engine *eng;
    ps_dec *dec;
    ps_decoder_t *ps; /* dec->ps */
    int16_t block[PS_BLOCK];
    size_t n_block;
    uint64_t fed;          /* samples given to the decoder so far */
    uint64_t utt_start;    /* stream sample where ps_start_utt was called */
    uint64_t utt_base;     /* estimated stream sample where speech began */
    int stream_started;    /* ps_start_stream done for this stream */
    int utt_open;          /* ps_start_utt done, no ps_end_utt yet */
    int in_speech;         /* VAD reported speech in this utterance */
    uint64_t next_partial; /* sample position of the next partial check */
    char *last_partial;
    double last_end;        /* end time of the last final, seconds */
    int failed;             /* cancelled or decoder error: refuse more */
    at_asr_result *collect; /* transcribe(): finals go here too */
} ps_stream;

static const char *const ps_languages[] = {"en", NULL};

/* ---- decoder pool ------------------------------------------------------ */

#define KEEP_WARM 2 /* idle decoders kept loaded */

/* sphinxbase logs through one process-wide FILE.  A decoder configured with
 * -logfn replaces that FILE when it loads and fcloses the old one, which
 * decoders busy on other threads may be writing their statistics to at that
 * moment: a use-after-free that killed asr_streaming in bursts of requests.
 * So logging is switched off once for the whole process, no decoder names
 * a log file, and the FILE is never replaced.  The /dev/null stream is for
 * the few places that fprintf to err_get_logfp() directly (configuration
 * dumps), which a NULL stream would crash. */
static pthread_once_t ps_log_once = PTHREAD_ONCE_INIT;

static void ps_log_discard(void *user, err_lvl_t lvl, const char *fmt, ...)
{
    (void)user, (void)lvl, (void)fmt;
}

static void ps_log_off(void)
{
    err_set_callback(ps_log_discard, NULL);
    FILE *devnull = fopen("/dev/null", "w");
    if (devnull) err_set_logfp(devnull);
}

static void dec_free(ps_dec *d)
{
    if (!d) return;
    if (d->ps) ps_free(d->ps);
    free(d->cmn0);
    free(d);
}

/* Called with no lock held; decoder_acquire makes loads one at a time
 * (ps_init is not documented thread-safe). */
static ps_dec *decoder_create(ps_engine *e, at_err *err)
{
    cmd_ln_t *cfg = cmd_ln_init(NULL, ps_args(), TRUE, "-hmm", e->hmm, "-lm", e->lm, "-dict", e->dict, NULL);
    ps_decoder_t *ps = cfg ? ps_init(cfg) : NULL;
    if (cfg) cmd_ln_free_r(cfg); /* the decoder keeps its own reference */
    if (!ps) {
        at_err_set(err, AT_E_CORRUPT, "pocketsphinx could not load its model (hmm %s, lm %s, dict %s)",
                   e->hmm, e->lm, e->dict);
        return NULL;
    }
    ps_dec *d = calloc(1, sizeof *d);
    feat_t *fc = ps_get_feat(ps);
    cmn_t *cmn = fc ? fc->cmn_struct : NULL;
    if (d && cmn && cmn->veclen > 0) {
        d->veclen = cmn->veclen;
        d->cmn0 = malloc((size_t)cmn->veclen * sizeof *d->cmn0);
        if (d->cmn0) memcpy(d->cmn0, cmn->cmn_mean, (size_t)cmn->veclen * sizeof *d->cmn0);
    }
    if (!d || (cmn && !d->cmn0)) {
        ps_free(ps);
        free(d);
        at_err_set(err, AT_E_NOMEM, "out of memory");
        return NULL;
    }
    d->ps = ps;
    return d;
}

static void dec_reset_cmn(ps_dec *d)
{
    feat_t *fc = ps_get_feat(d->ps);
    if (d->cmn0 && fc && fc->cmn_struct && fc->cmn_struct->veclen == d->veclen)
        cmn_live_set(fc->cmn_struct, d->cmn0);
}

#define WAIT_POLL_MS 50 /* how often a waiting caller checks its client */

/* Called with e->mu held; releases it.  While nobody waits for a decoder,
 * idle ones past KEEP_WARM are freed. */
static void pool_trim_unlock(ps_engine *e)
{
    int freed = 0;
    while (e->waiting == 0 && e->n_idle > KEEP_WARM) {
        ps_dec *d = e->idle[--e->n_idle];
        e->n_total--;
        pthread_mutex_unlock(&e->mu);
        dec_free(d);
        freed = 1;
        pthread_mutex_lock(&e->mu);
    }
    pthread_mutex_unlock(&e->mu);
    /* A decoder's many small blocks sit in the arena of the thread that
     * loaded it; without a trim glibc keeps those pages. */
    if (freed) malloc_trim(0);
}

/* A decoder for a new stream: an idle one, else a fresh load, else
 * AT_E_BUSY once max_decoders exist.  Loads go one at a time and take
 * seconds under load, so callers may queue behind one: they wait on a
 * condition variable, not on a lock, so that a caller whose client has
 * gone (`cancelled`) leaves the queue at once instead of loading a decoder
 * nobody will use, and a decoder that comes back is handed to a waiter
 * rather than freed.  A burst of abandoned streams once queued a dozen
 * loads and kept a live request waiting behind all of them. */
static ps_dec *decoder_acquire(ps_engine *e, int (*cancelled)(void *), void *cancel_user, at_err *err)
{
    ps_dec *d = NULL;
    pthread_mutex_lock(&e->mu);
    e->waiting++;
    for (;;) {
        if (cancelled) { /* the caller's own locks, never under ours */
            pthread_mutex_unlock(&e->mu);
            int gone = cancelled(cancel_user);
            pthread_mutex_lock(&e->mu);
            if (gone) {
                at_err_set(err, AT_E_CANCELLED, "cancelled: the client went away");
                break;
            }
        }
        if (e->n_idle > 0) {
            d = e->idle[--e->n_idle];
            break;
        }
        if (!e->loading && e->n_total >= e->max_decoders) {
            at_err_set(err, AT_E_BUSY, "all %d pocketsphinx decoders are busy; try again later",
                       e->max_decoders);
            break;
        }
        if (!e->loading) {
            e->loading = 1;
            e->n_total++; /* reserve the slot, load outside the lock (slow) */
            e->waiting--;
            pthread_mutex_unlock(&e->mu);
            d = decoder_create(e, err);
            pthread_mutex_lock(&e->mu);
            e->loading = 0;
            if (!d) e->n_total--;
            pthread_cond_broadcast(&e->moved);
            pthread_mutex_unlock(&e->mu);
            return d;
        }
        struct timespec t;
        clock_gettime(CLOCK_MONOTONIC, &t);
        t.tv_nsec += WAIT_POLL_MS * 1000000L;
        if (t.tv_nsec >= 1000000000L) t.tv_sec++, t.tv_nsec -= 1000000000L;
        pthread_cond_timedwait(&e->moved, &e->mu, &t);
    }
    e->waiting--;
    pool_trim_unlock(e); /* decoders kept for waiters that then left */
    return d;
}

static void decoder_release(ps_engine *e, ps_dec *ps)
{
    pthread_mutex_lock(&e->mu);
    e->idle[e->n_idle++] = ps; /* n_idle < n_total <= max_decoders */
    pthread_cond_signal(&e->moved);
    pool_trim_unlock(e);
}

/* ---- utterance handling ------------------------------------------------ */

/* Filler and marker words are not text a user should see. */
static int is_filler(const char *w) { return !w || !*w || w[0] == '<' || w[0] == '[' || w[0] == '+'; }

/* Copies w without an alternate-pronunciation suffix: "read(2)" -> "read". */
static size_t word_len(const char *w)
{
    size_t l = strlen(w);
    if (l > 2 && w[l - 1] == ')') {
        const char *p = strrchr(w, '(');
        if (p && p > w) return (size_t)(p - w);
    }
    return l;
}

static int emit(ps_stream *s, int is_final, const char *text, double start, double end, at_asr_event_cb cb,
                void *user, at_err *err)
{
    if (!cb) return 0;
    at_asr_event ev = {.is_final = is_final, .text = text, .start = start, .end = end, .language = "en"};
    if (cb(user, &ev) != 0) {
        s->failed = 1;
        return at_err_set(err, AT_E_CANCELLED, "recognition cancelled by the caller");
    }
    return 0;
}

static int utt_start(ps_stream *s, at_err *err)
{
    /* A new stream on a reused decoder: reset the VAD, noise estimate and
     * frame counter, so segment frames count from this stream's start. */
    if (!s->stream_started) {
        if (ps_start_stream(s->ps) < 0) {
            s->failed = 1;
            return at_err_set(err, AT_E_ENGINE, "pocketsphinx could not start a stream");
        }
        dec_reset_cmn(s->dec);
        s->stream_started = 1;
    }
    if (ps_start_utt(s->ps) < 0) {
        s->failed = 1;
        return at_err_set(err, AT_E_ENGINE, "pocketsphinx could not start an utterance");
    }
    s->utt_open = 1;
    s->in_speech = 0;
    s->utt_start = s->utt_base = s->fed;
    free(s->last_partial);
    s->last_partial = NULL;
    return 0;
}

static double clampd(double v, double lo, double hi) { return v < lo ? lo : v > hi ? hi : v; }

/* Ends the current utterance and emits its final segment, if any words. */
static int utt_finish(ps_stream *s, at_asr_event_cb cb, void *user, at_err *err)
{
    if (!s->utt_open) return 0;
    s->utt_open = 0;
    if (ps_end_utt(s->ps) < 0) {
        s->failed = 1;
        return at_err_set(err, AT_E_ENGINE, "pocketsphinx could not end an utterance");
    }
    const double rate = AT_ASR_SAMPLE_RATE;
    const double now = (double)s->fed / rate;

    /* First pass: size the text and count the words. */
    size_t len = 0, nw = 0;
    for (ps_seg_t *g = ps_seg_iter(s->ps); g; g = ps_seg_next(g)) {
        const char *w = ps_seg_word(g);
        if (is_filler(w)) continue;
        len += word_len(w) + 1;
        nw++;
    }
    if (nw == 0) return 0;
    char *text = malloc(len + 1);
    at_asr_word *words = calloc(nw, sizeof *words);
    if (!text || !words) {
        free(text);
        free(words);
        return at_err_set(err, AT_E_NOMEM, "out of memory");
    }
    size_t off = 0, i = 0;
    double start = now, end = s->last_end;
    int rc = 0;
    for (ps_seg_t *g = ps_seg_iter(s->ps); g; g = ps_seg_next(g)) {
        const char *w = ps_seg_word(g);
        if (is_filler(w) || i >= nw) continue;
        int sf = 0, ef = 0;
        ps_seg_frames(g, &sf, &ef);
        /* Frames count from ps_start_stream, silence included. */
        double ws = clampd(sf * (double)PS_FRAME_SAMPLES / rate, s->last_end, now);
        double we = clampd((ef + 1) * (double)PS_FRAME_SAMPLES / rate, ws, now);
        size_t l = word_len(w);
        if (off) text[off++] = ' ';
        memcpy(text + off, w, l);
        off += l;
        words[i].text = strndup(w, l);
        if (!words[i].text) rc = at_err_set(err, AT_E_NOMEM, "out of memory");
        words[i].start = ws;
        words[i].end = we;
        words[i].prob = -1.0f;
        i++;
        if (ws < start) start = ws;
        if (we > end) end = we;
    }
    text[off] = '\0';
    if (end < start) end = start;
    if (rc == 0 && s->collect) {
        rc = at_asr_result_add(s->collect, text, start, end, err);
        if (rc == 0) {
            at_asr_segment *seg = &s->collect->segments[s->collect->n_segments - 1];
            seg->words = words;
            seg->n_words = nw;
            words = NULL;
        }
    }
    if (rc == 0) rc = emit(s, 1, text, start, end, cb, user, err);
    s->last_end = end;
    if (words)
        for (size_t k = 0; k < nw; k++) free(words[k].text);
    free(words);
    free(text);
    return rc;
}

static int maybe_partial(ps_stream *s, at_asr_event_cb cb, void *user, at_err *err)
{
    if (s->fed < s->next_partial) return 0;
    s->next_partial = s->fed + PS_PARTIAL_EVERY;
    const char *hyp = ps_get_hyp(s->ps, NULL);
    if (!hyp || !*hyp) return 0;
    if (s->last_partial && strcmp(s->last_partial, hyp) == 0) return 0;
    char *copy = strdup(hyp);
    if (!copy) return at_err_set(err, AT_E_NOMEM, "out of memory");
    free(s->last_partial);
    s->last_partial = copy;
    double start = (double)s->utt_base / AT_ASR_SAMPLE_RATE;
    if (start < s->last_end) start = s->last_end;
    double end = (double)s->fed / AT_ASR_SAMPLE_RATE;
    return emit(s, 0, copy, start, end, cb, user, err);
}

/* Runs one block through the decoder and reacts to VAD changes. */
static int process_block(ps_stream *s, const int16_t *pcm, size_t n, at_asr_event_cb cb, void *user,
                         at_err *err)
{
    if (!s->utt_open) {
        int rc = utt_start(s, err);
        if (rc) return rc;
    }
    if (ps_process_raw(s->ps, pcm, n, FALSE, FALSE) < 0) {
        s->failed = 1;
        return at_err_set(err, AT_E_ENGINE, "pocketsphinx failed to process audio");
    }
    s->fed += n;
    int speech = ps_get_in_speech(s->ps) != 0;
    if (speech && !s->in_speech) {
        s->in_speech = 1;
        uint64_t back = (uint64_t)UTT_LOOKBACK_FRAMES * PS_FRAME_SAMPLES + n;
        s->utt_base = s->fed > back ? s->fed - back : 0;
        if (s->utt_base < s->utt_start) s->utt_base = s->utt_start;
        s->next_partial = s->fed + PS_PARTIAL_EVERY;
        return 0;
    }
    if (!speech && s->in_speech) return utt_finish(s, cb, user, err);
    if (speech) return maybe_partial(s, cb, user, err);
    return 0;
}

/* ---- at_asr_ops ---------------------------------------------------------- */

static void *ps_stream_open(void *impl, const at_asr_options *opt, at_err *err)
{
    ps_engine *e = impl;
    if (opt && opt->language && *opt->language && strcmp(opt->language, "en") != 0) {
        at_err_set(err, AT_E_UNSUPPORTED, "pocketsphinx only recognises English (en), not '%s'",
                   opt->language);
        return NULL;
    }
    ps_stream *s = calloc(1, sizeof *s);
    if (!s) {
        at_err_set(err, AT_E_NOMEM, "out of memory");
        return NULL;
    }
    s->eng = e;
    s->dec = decoder_acquire(e, opt ? opt->cancelled : NULL, opt ? opt->cancel_user : NULL, err);
    if (!s->dec) {
        free(s);
        return NULL;
    }
    s->ps = s->dec->ps;
    return s;
}

static int ps_stream_feed(void *st, const float *pcm, size_t n, at_asr_event_cb cb, void *user, at_err *err)
{
    ps_stream *s = st;
    if (s->failed) return at_err_set(err, AT_E_INVALID, "stream already failed or was cancelled");
    if (n && !pcm) return at_err_set(err, AT_E_INVALID, "no audio given");
    for (size_t i = 0; i < n; i++) {
        float v = pcm[i];
        long q = isfinite(v) ? lrintf(v * 32767.0f) : 0;
        if (q > 32767) q = 32767;
        if (q < -32768) q = -32768;
        s->block[s->n_block++] = (int16_t)q;
        if (s->n_block == PS_BLOCK) {
            s->n_block = 0;
            int rc = process_block(s, s->block, PS_BLOCK, cb, user, err);
            if (rc) return rc;
        }
    }
    return 0;
}

static int ps_stream_finish(void *st, at_asr_event_cb cb, void *user, at_err *err)
{
    ps_stream *s = st;
    if (s->failed) return at_err_set(err, AT_E_INVALID, "stream already failed or was cancelled");
    if (s->n_block) {
        size_t n = s->n_block;
        s->n_block = 0;
        int rc = process_block(s, s->block, n, cb, user, err);
        if (rc) return rc;
    }
    /* Audio that ended in mid-speech still counts; pure silence emits nothing. */
    if (s->utt_open && !s->in_speech) {
        s->utt_open = 0;
        ps_end_utt(s->ps);
        return 0;
    }
    return utt_finish(s, cb, user, err);
}

static void ps_stream_close(void *st)
{
    ps_stream *s = st;
    if (!s) return;
    if (s->utt_open) ps_end_utt(s->ps); /* leave the decoder ready for reuse */
    decoder_release(s->eng, s->dec);
    free(s->last_partial);
    free(s);
}

static int ps_transcribe(void *impl, const float *pcm, size_t n, const at_asr_options *opt,
                         at_asr_result *out, at_err *err)
{
    ps_stream *s = ps_stream_open(impl, opt, err);
    if (!s) return err ? err->code : AT_E_ENGINE;
    s->collect = out;
    int rc = 0;
    /* a second at a time, so a client that went away stops the work */
    for (size_t off = 0; rc == 0 && off < n; off += AT_ASR_SAMPLE_RATE) {
        if (opt && opt->cancelled && opt->cancelled(opt->cancel_user)) {
            rc = at_err_set(err, AT_E_CANCELLED, "cancelled: the client went away");
            break;
        }
        size_t k = n - off < AT_ASR_SAMPLE_RATE ? n - off : AT_ASR_SAMPLE_RATE;
        rc = ps_stream_feed(s, pcm + off, k, NULL, NULL, err);
    }
    if (rc == 0) rc = ps_stream_finish(s, NULL, NULL, err);
    ps_stream_close(s);
    if (rc) {
        at_asr_result_free(out);
        return rc;
    }
    snprintf(out->language, sizeof out->language, "en");
    out->duration = (double)n / AT_ASR_SAMPLE_RATE;
    return 0;
}

static const char *const *ps_langs(void *impl)
{
    (void)impl;
    return ps_languages;
}

static void ps_destroy(void *impl)
{
    ps_engine *e = impl;
    if (!e) return;
    /* All streams must be closed by now: every decoder is idle. */
    for (int i = 0; i < e->n_idle; i++) dec_free(e->idle[i]);
    free(e->idle);
    pthread_mutex_destroy(&e->mu);
    pthread_cond_destroy(&e->moved);
    free(e);
}

static const at_asr_ops ps_ops = {
    .name = "pocketsphinx",
    .destroy = ps_destroy,
    .transcribe = ps_transcribe,
    .stream_open = ps_stream_open,
    .stream_feed = ps_stream_feed,
    .stream_finish = ps_stream_finish,
    .stream_close = ps_stream_close,
    .languages = ps_langs,
};

static int build_path(char *dst, size_t cap, const char *dir, const char *name, at_err *err)
{
    int w = snprintf(dst, cap, "%s/%s", dir, name);
    if (w < 0 || (size_t)w >= cap) return at_err_set(err, AT_E_INVALID, "pocketsphinx model path too long");
    return 0;
}

at_asr_engine *at_asr_pocketsphinx_new_ex(const char *model_dir, int max_decoders, at_err *err)
{
    if (!model_dir || !*model_dir) model_dir = AT_POCKETSPHINX_MODEL_DIR;
    if (max_decoders <= 0) max_decoders = PS_DEFAULT_MAX_DECODERS;
    ps_engine *e = calloc(1, sizeof *e);
    if (!e) {
        at_err_set(err, AT_E_NOMEM, "out of memory");
        return NULL;
    }
    pthread_once(&ps_log_once, ps_log_off);
    e->max_decoders = max_decoders;
    e->idle = calloc((size_t)max_decoders, sizeof *e->idle);
    pthread_mutex_init(&e->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&e->moved, &ca);
    pthread_condattr_destroy(&ca);
    if (!e->idle) {
        at_err_set(err, AT_E_NOMEM, "out of memory");
        ps_destroy(e);
        return NULL;
    }
    if (build_path(e->hmm, sizeof e->hmm, model_dir, "en-us", err) ||
        build_path(e->lm, sizeof e->lm, model_dir, "en-us.lm.bin", err) ||
        build_path(e->dict, sizeof e->dict, model_dir, "cmudict-en-us.dict", err)) {
        ps_destroy(e);
        return NULL;
    }
    /* Load one decoder now: a wrong model folder fails here, at startup,
     * instead of at the first request; it also warms the pool. */
    ps_dec *ps = decoder_create(e, err);
    if (!ps) {
        ps_destroy(e);
        return NULL;
    }
    e->idle[e->n_idle++] = ps;
    e->n_total = 1;
    return at_asr_engine_new(&ps_ops, e, err);
}

at_asr_engine *at_asr_pocketsphinx_new(const char *model_dir, at_err *err)
{
    return at_asr_pocketsphinx_new_ex(model_dir, 0, err);
}
