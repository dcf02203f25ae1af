/* whisper_engine.c - Whisper as an at_asr engine.
 *
 * The model and tokenizer are loaded once and only read afterwards; every
 * transcription and every stream builds its own "run" (encoder state, mel
 * buffer, one KV cache per beam/sample), so calls may run concurrently.
 *
 * Files go through OpenAI's long-form loop (decode.h's at_wdec_tx).
 * Streams are live: LocalAgreement-2 over a growing buffer with a reduced
 * encoder context, gated by a VAD, with hallucination guards (see the
 * streaming section below).
 *
 * Deviations from transcribe.py, all for bounded memory / simplicity:
 *   - the log-mel is computed per 30 s window (OpenAI computes it over the
 *     whole file; only the log clamp floor, max - 8, can differ);
 *   - segment times are clamped to the audio duration and empty segments
 *     are dropped;
 *   - word timestamps are not computed (words stay NULL). */
#include "engines/asr/whisper/whisper.h"

#include <ctype.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/clock.h"
#include "engines/asr/asr.h"
#include "engines/asr/whisper/decode.h"
#include "engines/asr/whisper/la2.h"
#include "engines/asr/whisper/model.h"
#include "engines/asr/whisper/sched.h"
#include "engines/asr/whisper/models.h"
#include "engines/asr/whisper/tokenizer.h"
#include "engines/vad/vad.h"

/* Longest audio one call may pass, in mel frames: keeps frame counts in
 * int with room for a window past the end. */
#define W_MAX_FRAMES       (INT_MAX - 2 * AT_WHISPER_N_FRAMES)
#define W_MAX_PROMPT_BYTES 4096
#define W_MAX_SEQS         64 /* beams or samples of one step (decode.c's limit) */

typedef struct wengine {
    at_whisper_model *model;
    at_wtok *tok;
    int n_threads;
    at_whisper_stream_config sc;
    at_silero *silero;    /* the VAD network, shared by all streams (or NULL) */
    atomic_int n_streams; /* open streams, for sc.max_streams */
    at_compute *compute;  /* the one thread pool of every stream and job */
    at_wsched *sched;     /* shared decoder batches (sc.batch_decode), or NULL */
    /* admission of file transcriptions (sc.max_jobs, sc.max_queued) */
    pthread_mutex_t adm_mu;
    pthread_cond_t adm_cv;
    int active, queued;
} wengine;

/* One decoder sequence: its KV cache and the tokens the cache holds. */
typedef struct wseq {
    at_whisper_kv *kv;
    int *toks;
    int n;
} wseq;

/* Per-call decoding context: what at_wdec_model's hooks work on. */
typedef struct wrun {
    const wengine *e;
    at_whisper_state *st;
    wseq *seqs;
    int n_seqs;
    float *mel;
    const float *pcm; /* audio from absolute sample pcm_start */
    size_t n_pcm;
    size_t pcm_start;
    int (*cancelled)(void *user); /* at_asr_options' hook, polled per window and decoder step */
    void *cancel_user;
    at_wdec_model dm;
} wrun;

/* ---- at_wdec_model hooks ------------------------------------------------ */

static int seq_get(wrun *r, int seq, wseq **out, at_err *err)
{
    if (seq < 0 || seq >= r->n_seqs)
        return at_err_set(err, AT_E_ENGINE, "whisper: sequence %d out of range", seq);
    wseq *s = &r->seqs[seq];
    if (!s->kv) {
        const at_whisper_hparams *hp = at_whisper_model_hparams(r->e->model);
        s->kv = at_whisper_kv_new(r->e->model, err);
        if (!s->kv) return err && err->code < 0 ? err->code : AT_E_NOMEM;
        s->toks = malloc((size_t)hp->n_text_ctx * sizeof *s->toks);
        if (!s->toks) return at_err_set(err, AT_E_NOMEM, "out of memory");
        s->n = 0;
    }
    *out = s;
    return 0;
}

/* The logits of sequences seqs[i], each extending what its cache holds,
 * as one decoder batch (the beams or samples of a step); each sequence
 * reuses its cached common prefix, and at least its last token is run to
 * get its logits. */
static int run_logits_batch(void *ctx, int n, const int *seqs, const int *const *tokens, const int *n_tokens,
                            float *const *logits, at_err *err)
{
    wrun *r = ctx;
    const at_whisper_hparams *hp = at_whisper_model_hparams(r->e->model);
    at_whisper_seq q[W_MAX_SEQS];
    /* every decoder step (and so every fallback) asks whether the client
     * is still there: a short clip is one window */
    if (r->cancelled && r->cancelled(r->cancel_user))
        return at_err_set(err, AT_E_CANCELLED, "cancelled: the client went away");
    wseq *ws[W_MAX_SEQS];
    if (n <= 0 || n > W_MAX_SEQS) return at_err_set(err, AT_E_ENGINE, "whisper: batch of %d sequences", n);
    for (int i = 0; i < n; i++) {
        int rc = seq_get(r, seqs[i], &ws[i], err);
        if (rc < 0) return rc;
        int nt = n_tokens[i];
        if (nt <= 0 || nt > hp->n_text_ctx)
            return at_err_set(err, AT_E_ENGINE, "whisper: %d tokens for a context of %d", nt, hp->n_text_ctx);
        int p = 0, lim = ws[i]->n < nt ? ws[i]->n : nt;
        while (p < lim && ws[i]->toks[p] == tokens[i][p]) p++;
        if (p == nt) p = nt - 1;
        at_whisper_kv_truncate(ws[i]->kv, p);
        ws[i]->n = p;
        q[i] = (at_whisper_seq){ws[i]->kv, tokens[i] + p, nt - p, NULL, logits[i], 0};
    }
    int rc = r->e->sched ? at_wsched_decode(r->e->sched, r->st, q, n, err)
                         : at_whisper_decode_batch(r->st, q, n, err);
    for (int i = 0; i < n; i++) {
        if (rc < 0) {
            at_whisper_kv_truncate(ws[i]->kv, 0);
            ws[i]->n = 0;
            continue;
        }
        memcpy(ws[i]->toks + ws[i]->n, q[i].tokens, (size_t)q[i].n * sizeof *q[i].tokens);
        ws[i]->n = n_tokens[i];
    }
    return rc;
}

static int run_logits(void *ctx, int seq, const int *tokens, int n, float *logits, at_err *err)
{
    return run_logits_batch(ctx, 1, &seq, &tokens, &n, &logits, err);
}

static int run_copy(void *ctx, int dst, int src, at_err *err)
{
    wrun *r = ctx;
    wseq *d = NULL, *s = NULL;
    int rc;
    if ((rc = seq_get(r, dst, &d, err)) < 0 || (rc = seq_get(r, src, &s, err)) < 0) return rc;
    if (d == s) return 0;
    at_whisper_kv_copy(d->kv, s->kv);
    memcpy(d->toks, s->toks, (size_t)s->n * sizeof *s->toks);
    d->n = s->n;
    return 0;
}

/* A window's encoding: in the scheduler's encoder batches when it takes
 * them (--batch-encode), else on the caller's state at once. */
static int w_encode(const wengine *e, at_whisper_state *st, const float *mel, int audio_ctx, at_err *err)
{
    return e->sched ? at_wsched_encode(e->sched, st, mel, audio_ctx, err)
                    : at_whisper_encode(st, mel, audio_ctx, err);
}

static int run_encode(void *ctx, int seek, int n_frames, at_err *err)
{
    wrun *r = ctx;
    if (r->cancelled && r->cancelled(r->cancel_user))
        return at_err_set(err, AT_E_CANCELLED, "cancelled: the client went away");
    size_t start = (size_t)seek * AT_WHISPER_HOP;
    if (start < r->pcm_start)
        return at_err_set(err, AT_E_ENGINE, "whisper: audio before the seek point is gone");
    size_t off = start - r->pcm_start, len = (size_t)n_frames * AT_WHISPER_HOP;
    if (off > r->n_pcm) off = r->n_pcm;
    if (len > r->n_pcm - off) len = r->n_pcm - off;
    if (len > AT_WHISPER_N_SAMPLES) len = AT_WHISPER_N_SAMPLES;
    int rc = at_whisper_mel(r->e->model, r->pcm + off, len, r->mel, err);
    if (rc < 0) return rc;
    /* the decoder caches depend on the audio: start them afresh */
    for (int i = 0; i < r->n_seqs; i++)
        if (r->seqs[i].kv) {
            at_whisper_kv_truncate(r->seqs[i].kv, 0);
            r->seqs[i].n = 0;
        }
    return w_encode(r->e, r->st, r->mel, 0, err);
}

/* Word alignment: the decoder run again over the window's text on seq 0's
 * cache, whose recorded tokens are then forgotten. */
static int run_align(void *ctx, const int *tokens, int n, int *n_frames, float **qk, int *n_heads,
                     float *probs, at_err *err)
{
    wrun *r = ctx;
    wseq *s;
    at_whisper_head heads[AT_WHISPER_MAX_HEADS];
    int rc = seq_get(r, 0, &s, err), nh = at_whisper_alignment_heads(r->e->model, heads);
    if (rc < 0) return rc;
    if (r->cancelled && r->cancelled(r->cancel_user))
        return at_err_set(err, AT_E_CANCELLED, "cancelled: the client went away");
    *qk = malloc((size_t)nh * n * *n_frames * sizeof **qk);
    if (!*qk) return at_err_set(err, AT_E_NOMEM, "out of memory (word alignment)");
    rc = at_whisper_cross_scores(r->st, s->kv, tokens, n, heads, nh, *n_frames, *qk, probs, err);
    s->n = 0;
    if (rc < 0) {
        free(*qk);
        *qk = NULL;
        return rc;
    }
    *n_heads = nh;
    return 0;
}

static void run_free(wrun *r)
{
    if (r->seqs)
        for (int i = 0; i < r->n_seqs; i++) {
            at_whisper_kv_free(r->seqs[i].kv);
            free(r->seqs[i].toks);
        }
    free(r->seqs);
    free(r->mel);
    at_whisper_state_free(r->st);
    memset(r, 0, sizeof *r);
}

static int run_init(wrun *r, const wengine *e, int n_seqs, at_err *err)
{
    memset(r, 0, sizeof *r);
    r->e = e;
    const at_whisper_hparams *hp = at_whisper_model_hparams(e->model);
    r->n_seqs = n_seqs;
    r->seqs = calloc((size_t)n_seqs, sizeof *r->seqs);
    r->mel = malloc((size_t)hp->n_mels * AT_WHISPER_N_FRAMES * sizeof *r->mel);
    if (!r->seqs || !r->mel) {
        run_free(r);
        return at_err_set(err, AT_E_NOMEM, "out of memory");
    }
    r->st = at_whisper_state_new_shared(e->model, e->compute, err);
    if (!r->st) {
        run_free(r);
        return err ? err->code : AT_E_NOMEM;
    }
    r->dm = (at_wdec_model){
        .ctx = r,
        .n_vocab = hp->n_vocab,
        .n_text_ctx = hp->n_text_ctx,
        .n_audio_ctx = hp->n_audio_ctx,
        .logits = run_logits,
        .logits_batch = run_logits_batch,
        .copy = run_copy,
        .encode = run_encode,
        .align = run_align,
    };
    return 0;
}

/* ---- options ------------------------------------------------------------ */

typedef struct wjob {
    at_wdec_tx_options txo;
    int *prompt;
    float temps[16];
} wjob;

static int job_init(const wengine *e, const at_asr_options *opt, wjob *j, int *n_seqs, at_err *err)
{
    const at_whisper_special *sp = at_wtok_special(e->tok);
    memset(j, 0, sizeof *j);
    at_wdec_tx_options_default(&j->txo);
    at_wdec_options *d = &j->txo.decode;
    if (opt && opt->language && opt->language[0]) {
        char code[16];
        size_t i = 0;
        for (; opt->language[i] && i + 1 < sizeof code; i++)
            code[i] = (char)tolower((unsigned char)opt->language[i]);
        code[i] = '\0';
        if (!sp->is_multilingual) {
            if (strcmp(code, "en") != 0)
                return at_err_set(err, AT_E_UNSUPPORTED, "whisper: English-only model, language \"%s\"",
                                  code);
        } else {
            d->lang_token = at_wtok_lang_token(e->tok, code);
            if (d->lang_token < 0)
                return at_err_set(err, AT_E_UNSUPPORTED, "whisper: unknown language \"%s\"", opt->language);
        }
    }
    if (opt && opt->translate) {
        if (!sp->is_multilingual)
            return at_err_set(err, AT_E_UNSUPPORTED, "whisper: English-only model cannot translate");
        d->translate = 1;
    }
    /* temperature schedule: start, start + 0.2, ... up to 1.0 (the CLI's
     * --temperature_increment_on_fallback 0.2) */
    float t0 = opt && opt->temperature > 0 ? opt->temperature : 0.0f;
    if (t0 > 1.0f) t0 = 1.0f;
    float inc = opt && opt->temperature_inc > 0 ? opt->temperature_inc : 0.2f;
    int nt = 1;
    j->temps[0] = t0;
    if (opt && opt->n_temperatures > 0) { /* a schedule given in full */
        nt = opt->n_temperatures < 16 ? opt->n_temperatures : 16;
        for (int k = 0; k < nt; k++) j->temps[k] = opt->temperatures[k];
    } else if (!opt || opt->temperature_inc >= 0)
        for (; nt < 16 && t0 + inc * (float)nt <= 1.0f + 1e-6f; nt++) j->temps[nt] = t0 + inc * (float)nt;
    j->txo.fallback.temperatures = j->temps;
    j->txo.fallback.n_temperatures = nt;
    /* beam search when asked; its samples on fallback then use best_of as
     * the whisper CLI defaults do (beam_size 5, best_of 5) */
    int beam = opt && opt->beam_size > 1 ? opt->beam_size : 0;
    if (beam > 16) beam = 16;
    d->beam_size = beam;
    d->best_of = beam;
    if (opt && opt->best_of > 0) d->best_of = opt->best_of > 16 ? 16 : opt->best_of;
    if (opt && opt->patience > 0) d->patience = opt->patience;
    if (opt && opt->length_penalty > 0) d->length_penalty = opt->length_penalty;
    if (opt && opt->n_suppress_tokens > 0) {
        d->suppress = opt->suppress_tokens; /* the caller's array outlives the job */
        d->n_suppress = opt->n_suppress_tokens;
    }
    if (opt && opt->no_default_suppress) d->suppress_non_speech = 0;
    if (opt && opt->no_condition_on_previous) j->txo.condition_on_previous_text = 0;
    if (opt && opt->word_timestamps) j->txo.word_timestamps = 1;
    if (opt && opt->hallucination_silence_threshold > 0)
        j->txo.hallucination_silence_threshold = opt->hallucination_silence_threshold;
    *n_seqs = beam > 1 ? beam : 1;
    if (d->best_of > *n_seqs) *n_seqs = d->best_of;
    int max_len = at_whisper_model_hparams(e->model)->n_text_ctx / 2;
    if (opt && opt->max_tokens > 0) d->sample_len = opt->max_tokens < max_len ? opt->max_tokens : max_len;
    if (opt && opt->prompt && opt->prompt[0]) {
        /* " " + prompt.strip(), keeping the end of long prompts (the
         * decoder only looks at the last 223 tokens anyway) */
        const char *p = opt->prompt;
        while (*p && isspace((unsigned char)*p)) p++;
        size_t len = strlen(p);
        while (len > 0 && isspace((unsigned char)p[len - 1])) len--;
        if (len > W_MAX_PROMPT_BYTES) {
            p += len - W_MAX_PROMPT_BYTES;
            len = W_MAX_PROMPT_BYTES;
            while (len > 0 && ((unsigned char)*p & 0xC0) == 0x80) p++, len--;
        }
        char *buf = malloc(len + 2);
        if (!buf) return at_err_set(err, AT_E_NOMEM, "out of memory");
        buf[0] = ' ';
        memcpy(buf + 1, p, len);
        buf[len + 1] = '\0';
        size_t n;
        int rc = at_wtok_encode(e->tok, buf, len + 1, &j->prompt, &n, err);
        free(buf);
        if (rc < 0) return rc;
        j->txo.initial_prompt = j->prompt;
        j->txo.n_initial_prompt = (int)n;
    }
    return 0;
}

static const char *lang_code(const wengine *e, int token)
{
    const at_whisper_special *sp = at_wtok_special(e->tok);
    if (!sp->is_multilingual) return "en";
    const char *c = at_wtok_lang_code(e->tok, token);
    return c ? c : "";
}

/* Trimmed copy of a segment's text, NULL if it is empty. */
static char *seg_text(const char *t)
{
    while (*t && isspace((unsigned char)*t)) t++;
    size_t n = strlen(t);
    while (n > 0 && isspace((unsigned char)t[n - 1])) n--;
    if (n == 0) return NULL;
    char *s = malloc(n + 1);
    if (s) {
        memcpy(s, t, n);
        s[n] = '\0';
    }
    return s;
}

static void clamp_times(double *start, double *end, double duration)
{
    if (*start < 0) *start = 0;
    if (*start > duration) *start = duration;
    if (*end > duration) *end = duration;
    if (*end < *start) *end = *start;
}

/* ---- file transcription ------------------------------------------------- */

/* vad_filter: a stretch of speech, where it sits in the audio decoded
 * (only speech, one stretch after another) and in the original. */
typedef struct speech_span {
    size_t cat, orig, len; /* samples */
} speech_span;

typedef struct file_sink {
    at_asr_result *out;
    double duration;
    at_err *err;
    int failed;
    const speech_span *spans; /* NULL: times are the audio's own */
    size_t n_spans;
    int words; /* keep the words (word timestamps were asked for) */
} file_sink;

/* A time in the speech-only audio, back in the original's. */
static double orig_time(const file_sink *fs, double t)
{
    if (!fs->spans) return t;
    double at = t * AT_WHISPER_SAMPLE_RATE;
    const speech_span *sp = &fs->spans[0];
    for (size_t i = 0; i < fs->n_spans; i++)
        if ((double)fs->spans[i].cat <= at) sp = &fs->spans[i];
    double off = at - (double)sp->cat;
    if (off > (double)sp->len) off = (double)sp->len;
    return ((double)sp->orig + off) / AT_WHISPER_SAMPLE_RATE;
}

static int file_on_segment(void *user, const at_wdec_segment *seg)
{
    file_sink *fs = user;
    char *text = seg_text(seg->text);
    if (!text) return 0;
    double s = seg->start, e = seg->end;
    clamp_times(&s, &e, fs->duration);
    s = orig_time(fs, s);
    e = orig_time(fs, e);
    int rc = at_asr_result_add(fs->out, text, s, e, fs->err);
    free(text);
    if (rc < 0) {
        fs->failed = 1;
        return 1;
    }
    at_asr_segment *g = &fs->out->segments[fs->out->n_segments - 1];
    g->avg_logprob = seg->avg_logprob;
    g->no_speech_prob = seg->no_speech_prob;
    g->seek = seg->seek;
    g->temperature = seg->temperature;
    g->compression_ratio = seg->compression_ratio;
    if (seg->n_tokens > 0 && (g->tokens = malloc((size_t)seg->n_tokens * sizeof *g->tokens)) != NULL) {
        memcpy(g->tokens, seg->tokens, (size_t)seg->n_tokens * sizeof *g->tokens);
        g->n_tokens = (size_t)seg->n_tokens;
    }
    if (fs->words && seg->n_words > 0) {
        if (!(g->words = calloc((size_t)seg->n_words, sizeof *g->words))) {
            at_err_set(fs->err, AT_E_NOMEM, "out of memory");
            fs->failed = 1;
            return 1;
        }
        for (int i = 0; i < seg->n_words; i++) {
            const at_wdec_word *w = &seg->words[i];
            at_asr_word *o = &g->words[g->n_words];
            /* OpenAI's API gives words without Whisper's leading space */
            if (w->text[strspn(w->text, " \t\n")] == '\0') continue;
            if (!(o->text = seg_text(w->text))) {
                at_err_set(fs->err, AT_E_NOMEM, "out of memory");
                fs->failed = 1;
                return 1;
            }
            o->start = w->start, o->end = w->end;
            clamp_times(&o->start, &o->end, fs->duration);
            o->start = orig_time(fs, o->start);
            o->end = orig_time(fs, o->end);
            o->prob = w->probability;
            g->n_words++;
        }
    }
    return 0;
}

/* Waits for a turn to decode (sc.max_jobs at once, sc.max_queued
 * waiting): AT_E_BUSY when the queue is full, AT_E_CANCELLED when the
 * client leaves while waiting. */
static int admit(wengine *e, const at_asr_options *opt, at_err *err)
{
    int rc = 0;
    pthread_mutex_lock(&e->adm_mu);
    if (e->active >= e->sc.max_jobs) {
        if (e->queued >= e->sc.max_queued) {
            rc = at_err_set(err, AT_E_BUSY,
                            "whisper: %d transcriptions running and %d waiting; try again later", e->active,
                            e->queued);
        } else {
            e->queued++;
            while (e->active >= e->sc.max_jobs) {
                if (opt && opt->cancelled && opt->cancelled(opt->cancel_user)) {
                    rc = at_err_set(err, AT_E_CANCELLED, "whisper: cancelled while waiting for a turn");
                    break;
                }
                struct timespec t;
                at_deadline_ms(&t, 100); /* look at the client again in 0.1 s */
                pthread_cond_timedwait(&e->adm_cv, &e->adm_mu, &t);
            }
            e->queued--;
        }
    }
    if (rc == 0) e->active++;
    pthread_mutex_unlock(&e->adm_mu);
    return rc;
}

static void release(wengine *e)
{
    pthread_mutex_lock(&e->adm_mu);
    e->active--;
    pthread_cond_signal(&e->adm_cv);
    pthread_mutex_unlock(&e->adm_mu);
}

static int transcribe_admitted(wengine *e, const float *pcm, size_t n, const at_asr_options *opt,
                               at_asr_result *out, at_err *err);

static int w_transcribe(void *impl, const float *pcm, size_t n, const at_asr_options *opt, at_asr_result *out,
                        at_err *err)
{
    wengine *e = impl;
    memset(out, 0, sizeof *out);
    int rc = admit(e, opt, err);
    if (rc < 0) return rc;
    rc = transcribe_admitted(e, pcm, n, opt, out, err);
    release(e);
    return rc;
}

#define VAD_PAD ((size_t)AT_WHISPER_SAMPLE_RATE * 3 / 10) /* kept around speech */

/* vad_filter (as faster-whisper's): the stretches of speech the VAD finds,
 * padded and merged, copied one after another into *speech. */
static int speech_only(const wengine *e, const float *pcm, size_t n, float **speech, size_t *n_speech,
                       speech_span **spans, size_t *n_spans, at_err *err)
{
    *speech = NULL;
    *spans = NULL;
    *n_speech = *n_spans = 0;
    at_vad *v = at_vad_new(&e->sc.vad_cfg, err);
    if (!v) return err ? err->code : AT_E_NOMEM;
    size_t frame = at_vad_frame_len(v), cap = 0, start = 0;
    speech_span *sp = NULL;
    int in = 0, rc = 0;
    for (size_t off = 0;; off += frame) {
        int started = 0, ended = 0;
        size_t end = n;
        if (off < n) at_vad_feed(v, pcm + off, n - off < frame ? n - off : frame, &started, &ended, &end);
        if (started && !in) {
            size_t onset = (size_t)AT_VAD_ONSET_MS * AT_WHISPER_SAMPLE_RATE / 1000 + frame;
            start = off > onset ? off - onset : 0;
            in = 1;
        }
        if ((ended || off >= n) && in) {
            in = 0;
            if (end > n) end = n;
            size_t a = start > VAD_PAD ? start - VAD_PAD : 0, b = end + VAD_PAD < n ? end + VAD_PAD : n;
            if (*n_spans && sp[*n_spans - 1].orig + sp[*n_spans - 1].len >= a) { /* overlaps: merge */
                speech_span *last = &sp[*n_spans - 1];
                if (b > last->orig + last->len) last->len = b - last->orig;
            } else if (b > a) {
                if (*n_spans == cap) {
                    cap = cap ? cap * 2 : 16;
                    speech_span *ns = realloc(sp, cap * sizeof *ns);
                    if (!ns) {
                        rc = at_err_set(err, AT_E_NOMEM, "out of memory");
                        break;
                    }
                    sp = ns;
                }
                sp[(*n_spans)++] = (speech_span){0, a, b - a};
            }
        }
        if (off >= n) break;
    }
    at_vad_free(v);
    size_t total = 0;
    for (size_t i = 0; i < *n_spans; i++) total += sp[i].len;
    if (!rc && total > 0) {
        float *buf = malloc(total * sizeof *buf);
        if (!buf) {
            rc = at_err_set(err, AT_E_NOMEM, "out of memory");
        } else {
            size_t at = 0;
            for (size_t i = 0; i < *n_spans; i++) {
                sp[i].cat = at;
                memcpy(buf + at, pcm + sp[i].orig, sp[i].len * sizeof *buf);
                at += sp[i].len;
            }
            *speech = buf;
            *n_speech = total;
        }
    }
    if (rc) {
        free(sp);
        *n_spans = 0;
        return rc;
    }
    *spans = sp;
    return 0;
}

static int transcribe_spans(wengine *e, const float *pcm, size_t n, const at_asr_options *opt,
                            const speech_span *spans, size_t n_spans, at_asr_result *out, at_err *err);

static int transcribe_admitted(wengine *e, const float *pcm, size_t n, const at_asr_options *opt,
                               at_asr_result *out, at_err *err)
{
    if (!pcm && n > 0) return at_err_set(err, AT_E_INVALID, "whisper: no audio");
    if (opt && opt->vad_filter) {
        float *speech;
        speech_span *spans;
        size_t n_speech, n_spans;
        int rc = speech_only(e, pcm, n, &speech, &n_speech, &spans, &n_spans, err);
        if (rc < 0) return rc;
        at_asr_options o = *opt;
        o.vad_filter = 0;
        if (n_speech == 0) { /* no speech at all: nothing to say */
            out->duration = (double)n / AT_WHISPER_SAMPLE_RATE;
            free(spans);
            return 0;
        }
        rc = transcribe_spans(e, speech, n_speech, &o, spans, n_spans, out, err);
        if (rc == 0) out->duration = (double)n / AT_WHISPER_SAMPLE_RATE;
        free(speech);
        free(spans);
        return rc;
    }
    return transcribe_spans(e, pcm, n, opt, NULL, 0, out, err);
}

static int transcribe_spans(wengine *e, const float *pcm, size_t n, const at_asr_options *opt,
                            const speech_span *spans, size_t n_spans, at_asr_result *out, at_err *err)
{
    if (!pcm && n > 0) return at_err_set(err, AT_E_INVALID, "whisper: no audio");
    if (n / AT_WHISPER_HOP > (size_t)W_MAX_FRAMES)
        return at_err_set(err, AT_E_TOO_LARGE, "whisper: audio too long");
    wjob job;
    int n_seqs, rc;
    if ((rc = job_init(e, opt, &job, &n_seqs, err)) < 0) {
        free(job.prompt);
        return rc;
    }
    wrun run;
    if ((rc = run_init(&run, e, n_seqs, err)) < 0) {
        free(job.prompt);
        return rc;
    }
    run.pcm = pcm;
    run.n_pcm = n;
    if (opt) {
        run.cancelled = opt->cancelled;
        run.cancel_user = opt->cancel_user;
    }
    file_sink fs = {out,     (double)n / AT_WHISPER_SAMPLE_RATE, err, 0, spans,
                    n_spans, opt && opt->word_timestamps};
    job.txo.on_segment = file_on_segment;
    job.txo.user = &fs;
    at_wdec_tx *tx = at_wdec_tx_new(&run.dm, e->tok, &job.txo, err);
    if (!tx) {
        rc = err ? err->code : AT_E_NOMEM;
    } else {
        rc = at_wdec_tx_run(tx, (int)(n / AT_WHISPER_HOP), 1, err);
        if (fs.failed && rc == AT_E_CANCELLED) rc = err ? err->code : AT_E_NOMEM;
        int lt = at_wdec_tx_lang_token(tx);
        const char *code = lt >= 0 ? lang_code(e, lt) : (opt && opt->language ? opt->language : "");
        snprintf(out->language, sizeof out->language, "%s", code);
    }
    out->duration = (double)n / AT_WHISPER_SAMPLE_RATE;
    at_wdec_tx_free(tx);
    run_free(&run);
    free(job.prompt);
    if (rc < 0) at_asr_result_free(out);
    return rc < 0 ? rc : 0;
}

/* ---- streaming ------------------------------------------------------------ */

/* Live streaming: LocalAgreement-2 (la2.h) over a growing buffer.  Every
 * step_ms of new audio the whole buffer is re-decoded with the encoder
 * cut to the buffer's length (audio_ctx, so 3 s cost ~1/10 of a 30 s
 * pass); the prefix two hypotheses agree on becomes final, the rest goes
 * out as a partial.  The buffer is trimmed at the end of each fully
 * confirmed segment, flushed when it exceeds max_buffer_s, and at an
 * utterance end the VAD reports.  Without speech nothing is decoded. */

#define W_PREROLL    ((size_t)AT_WHISPER_SAMPLE_RATE * 3 / 10) /* kept before speech */
#define W_MIN_DECODE ((size_t)AT_WHISPER_SAMPLE_RATE / 5)      /* shorter: nothing to say */
#define W_TICK       ((size_t)AT_WHISPER_SAMPLE_RATE / 10)     /* decision grid */
/* automatic language: guesses on less speech than this are not kept (a
 * second of audio with a reduced encoder context guesses badly) */
#define W_LANG_LOCK  ((size_t)AT_WHISPER_SAMPLE_RATE * 2)

typedef struct wstream {
    wengine *e;
    wjob job;
    wrun run;
    at_la2 *la;
    at_vad *vad;
    float *buf; /* audio from absolute sample buf_start */
    size_t n_buf, cap, buf_start;
    size_t step, since_decode;
    int speech;        /* speech since the buffer was last cleared */
    int in_utt, ended; /* VAD state / an utterance ended since the last tick */
    int lang_token;    /* the utterance's language; <0 while still detecting */
    int auto_lang;     /* the client asked for detection: again for every utterance */
    int last_lang;     /* the latest guess, reported with events */
    int failed;        /* a previous call failed: the decoder state is unknown */
    /* hypothesis scratch */
    at_la2_word *words;
    unsigned char *closed; /* word ends a segment closed by a timestamp */
    size_t n_words, cap_words;
    char *arena;
    size_t cap_arena;
} wstream;

void at_whisper_stream_config_default(at_whisper_stream_config *c)
{
    memset(c, 0, sizeof *c);
    c->step_ms = 1000;
    c->max_buffer_s = 15.0;
    c->vad = 1;
    at_vad_config_default(&c->vad_cfg);
    c->no_speech_threshold = 0.6f;
    c->logprob_threshold = -1.0f;
    c->compression_threshold = 2.4f;
    c->max_streams = 0;
    c->max_jobs = 2;
    c->max_queued = 16;
    c->batch_decode = 1;
    c->batch_encode = 0;
    c->device = -1;
}

static void w_stream_close(void *st)
{
    wstream *s = st;
    if (!s) return;
    if (s->e) atomic_fetch_sub(&s->e->n_streams, 1);
    at_la2_free(s->la);
    at_vad_free(s->vad);
    run_free(&s->run);
    free(s->job.prompt);
    free(s->buf);
    free(s->words);
    free(s->closed);
    free(s->arena);
    free(s);
}

static void *w_stream_open(void *impl, const at_asr_options *opt, at_err *err)
{
    wengine *e = impl;
    int max = e->sc.max_streams;
    if (max > 0 && atomic_fetch_add(&e->n_streams, 1) >= max) {
        atomic_fetch_sub(&e->n_streams, 1);
        at_err_set(err, AT_E_BUSY,
                   "whisper: %d streams are already open, the configured maximum; "
                   "retry when one has ended",
                   max);
        return NULL;
    }
    if (max <= 0) atomic_fetch_add(&e->n_streams, 1);
    wstream *s = calloc(1, sizeof *s);
    if (!s) {
        atomic_fetch_sub(&e->n_streams, 1);
        at_err_set(err, AT_E_NOMEM, "out of memory");
        return NULL;
    }
    s->e = e;
    int n_seqs;
    if (job_init(e, opt, &s->job, &n_seqs, err) < 0 || run_init(&s->run, e, n_seqs, err) < 0) goto fail;
    s->lang_token = s->job.txo.decode.lang_token;
    s->auto_lang = s->lang_token < 0;
    s->last_lang = s->lang_token;
    s->step = ((size_t)e->sc.step_ms * AT_WHISPER_SAMPLE_RATE / 1000 + W_TICK - 1) / W_TICK * W_TICK;
    /* the buffer never exceeds max_buffer_s + one step: beyond it is flushed */
    s->cap = (size_t)(e->sc.max_buffer_s * AT_WHISPER_SAMPLE_RATE) + s->step + W_PREROLL + W_TICK;
    if (s->cap > AT_WHISPER_N_SAMPLES) s->cap = AT_WHISPER_N_SAMPLES;
    s->buf = malloc(s->cap * sizeof *s->buf);
    s->la = at_la2_new(err);
    if (!s->buf || !s->la) {
        at_err_set(err, AT_E_NOMEM, "out of memory");
        goto fail;
    }
    if (e->sc.vad && !(s->vad = at_vad_new(&e->sc.vad_cfg, err))) goto fail;
    s->speech = !e->sc.vad;
    return s;
fail:
    w_stream_close(s);
    return NULL;
}

/* Room for n words and `bytes` of their text. */
static int words_reserve(wstream *s, size_t n, size_t bytes, at_err *err)
{
    if (n > s->cap_words) {
        at_la2_word *w = realloc(s->words, n * sizeof *w);
        if (w) s->words = w;
        unsigned char *c = w ? realloc(s->closed, n) : NULL;
        if (c) s->closed = c;
        if (!w || !c) return at_err_set(err, AT_E_NOMEM, "out of memory");
        s->cap_words = n;
    }
    if (bytes > s->cap_arena) {
        char *a = realloc(s->arena, bytes);
        if (!a) return at_err_set(err, AT_E_NOMEM, "out of memory");
        s->arena = a;
        s->cap_arena = bytes;
    }
    return 0;
}

/* Words with absolute times from a decoded window: text tokens between
 * timestamp tokens form segments; a token starting with a space starts a
 * word; inside a segment time is shared out by bytes. */
static int build_words(wstream *s, const at_wdec_result *r, double t_base, double dur, at_err *err)
{
    const at_wtok *tok = s->e->tok;
    const at_whisper_special *sp = at_wtok_special(tok);
    size_t bytes = 0;
    for (int i = 0; i < r->n_tokens; i++) {
        size_t len = 0;
        if (r->tokens[i] < sp->eot) at_wtok_bytes(tok, r->tokens[i], &len);
        bytes += len + 1;
    }
    int rc = words_reserve(s, (size_t)r->n_tokens + 1, bytes + 1, err);
    if (rc < 0) return rc;
    s->n_words = 0;
    char *out = s->arena;
    int i = 0;
    double t_open = 0;
    while (i < r->n_tokens) {
        /* one segment: [ts] text... [ts] */
        if (r->tokens[i] >= sp->beg) {
            t_open = (r->tokens[i] - sp->beg) * 0.02;
            i++;
        }
        int j = i;
        size_t seg_bytes = 0;
        while (j < r->n_tokens && r->tokens[j] < sp->beg) {
            size_t len = 0;
            if (r->tokens[j] < sp->eot) at_wtok_bytes(tok, r->tokens[j], &len);
            seg_bytes += len;
            j++;
        }
        int closed = j < r->n_tokens;
        double t_close = closed ? (r->tokens[j] - sp->beg) * 0.02 : dur;
        if (t_open > dur) t_open = dur;
        if (t_close > dur) t_close = dur;
        if (t_close < t_open) t_close = t_open;
        size_t done = 0, first_word = s->n_words;
        for (int k = i; k < j; k++) {
            size_t len = 0;
            const char *b = r->tokens[k] < sp->eot ? at_wtok_bytes(tok, r->tokens[k], &len) : NULL;
            if (!b || len == 0) continue;
            double t0 = t_open + (t_close - t_open) * (double)done / (double)(seg_bytes ? seg_bytes : 1);
            done += len;
            double t1 = t_open + (t_close - t_open) * (double)done / (double)(seg_bytes ? seg_bytes : 1);
            if (s->n_words == first_word || b[0] == ' ') {
                if (s->n_words > first_word) out++; /* terminate the previous word */
                at_la2_word *w = &s->words[s->n_words];
                s->closed[s->n_words] = 0;
                w->text = out;
                w->start = t_base + t0;
                s->n_words++;
            }
            memcpy(out, b, len);
            out += len;
            *out = '\0';
            s->words[s->n_words - 1].end = t_base + t1;
        }
        if (s->n_words > first_word) {
            out++;
            s->closed[s->n_words - 1] = (unsigned char)closed;
        }
        /* skip the closing timestamp; a following one opens the next segment */
        i = closed ? j + 1 : j;
        if (closed) t_open = t_close;
    }
    return 0;
}

/* Decoding hooks on a short window: caches restart with each encoding. */
static void reset_caches(wrun *r)
{
    for (int i = 0; i < r->n_seqs; i++)
        if (r->seqs[i].kv) {
            at_whisper_kv_truncate(r->seqs[i].kv, 0);
            r->seqs[i].n = 0;
        }
}

/* Is text a loop (one 1..4-word n-gram repeated 4+ times in a row)? */
static int looping(const at_la2_word *w, size_t n)
{
    for (size_t g = 1; g <= 4; g++)
        for (size_t i = 0; i + 4 * g <= n; i++) {
            int rep = 1;
            for (size_t k = i + g; k + g <= n; k += g) {
                size_t m = 0;
                while (m < g && strcmp(w[i + m].text, w[k + m].text) == 0) m++;
                if (m < g) break;
                if (++rep >= 4) return 1;
            }
        }
    return 0;
}

/* Decodes the buffer into s->words (empty when a guard rejects it). */
static int decode_buffer(wstream *s, at_err *err)
{
    s->n_words = 0;
    if (s->n_buf < W_MIN_DECODE) return 0;
    const wengine *e = s->e;
    const at_whisper_hparams *hp = at_whisper_model_hparams(e->model);
    int rc = at_whisper_mel(e->model, s->buf, s->n_buf, s->run.mel, err);
    if (rc < 0) return rc;
    /* reduced audio context: half the mel frames, plus ~0.6 s of padding
     * the model expects after speech, in steps of 32 positions */
    int frames = (int)(s->n_buf / AT_WHISPER_HOP);
    int ctx = ((frames + 1) / 2 + 32 + 31) / 32 * 32;
    if (ctx > hp->n_audio_ctx) ctx = hp->n_audio_ctx;
    reset_caches(&s->run);
    rc = w_encode(e, s->run.st, s->run.mel, ctx, err);
    if (rc < 0) return rc;
    at_wdec_options d = s->job.txo.decode;
    d.lang_token = s->lang_token;
    double secs = (double)s->n_buf / AT_WHISPER_SAMPLE_RATE;
    /* a speaker says ~4 tokens/s; more than 10/s is a decoder running away */
    d.sample_len = (int)(20 + 10 * secs);
    if (d.sample_len > hp->n_text_ctx / 2) d.sample_len = hp->n_text_ctx / 2;
    if (s->job.txo.decode.sample_len > 0 && d.sample_len > s->job.txo.decode.sample_len)
        d.sample_len = s->job.txo.decode.sample_len;
    d.max_initial_timestamp = 0; /* speech may start anywhere in the buffer */
    int *ptoks = NULL;
    size_t np = 0;
    const char *pr = at_la2_prompt(s->la);
    if (pr[0]) {
        char pb[1200];
        snprintf(pb, sizeof pb, " %s", pr);
        /* the context is a help, not a need: text the vocabulary cannot
         * encode (a model without byte tokens) just goes without it */
        at_err ignored;
        if (at_wtok_encode(e->tok, pb, strlen(pb), &ptoks, &np, &ignored) == 0) {
            d.prompt = ptoks;
            d.n_prompt = (int)np;
        }
    } else {
        d.prompt = s->job.txo.initial_prompt;
        d.n_prompt = s->job.txo.n_initial_prompt;
    }
    d.prefix = NULL;
    d.n_prefix = 0;
    at_wdec_result r;
    memset(&r, 0, sizeof r);
    rc = at_wdec_decode(&s->run.dm, e->tok, &d, &r, err);
    free(ptoks);
    if (rc < 0) return rc;
    /* a guess is kept for the utterance once it rests on enough audio */
    if (r.lang_token >= 0) s->last_lang = r.lang_token;
    if (s->lang_token < 0 && s->n_buf >= W_LANG_LOCK) s->lang_token = r.lang_token;
    const at_whisper_stream_config *c = &e->sc;
    int reject = 0;
    if (!isnan(c->no_speech_threshold) && r.no_speech_prob > c->no_speech_threshold &&
        (isnan(c->logprob_threshold) || r.avg_logprob < c->logprob_threshold))
        reject = 1;
    if (!isnan(c->logprob_threshold) && r.avg_logprob < c->logprob_threshold - 0.5) reject = 1;
    if (!isnan(c->compression_threshold) && r.compression_ratio > c->compression_threshold) reject = 1;
    if (!reject) {
        double t_base = (double)s->buf_start / AT_WHISPER_SAMPLE_RATE;
        rc = build_words(s, &r, t_base, secs, err);
        /* with the compression guard: a word loop is rejected too */
        if (rc == 0 && !isnan(c->compression_threshold) && looping(s->words, s->n_words)) s->n_words = 0;
    }
    at_wdec_result_free(&r);
    return rc;
}

/* Drops audio before absolute sample t (keeping at most everything). */
static void trim_to(wstream *s, size_t t)
{
    if (t <= s->buf_start) return;
    size_t drop = t - s->buf_start;
    if (drop > s->n_buf) drop = s->n_buf;
    memmove(s->buf, s->buf + drop, (s->n_buf - drop) * sizeof *s->buf);
    s->n_buf -= drop;
    s->buf_start += drop;
}

/* The caller's callback, with the language heard added to each event. */
typedef struct lang_cb {
    at_asr_event_cb cb;
    void *user;
    const char *language;
} lang_cb;

static int with_language(void *user, const at_asr_event *ev)
{
    lang_cb *l = user;
    at_asr_event e = *ev;
    e.language = l->language;
    return l->cb(l->user, &e);
}

/* One decoding step; flush: commit everything (utterance end, finish). */
static int stream_step(wstream *s, int flush, at_asr_event_cb user_cb, void *user_data, at_err *err)
{
    int rc = decode_buffer(s, err);
    if (rc < 0) return rc;
    lang_cb lc = {user_cb, user_data, s->last_lang >= 0 ? lang_code(s->e, s->last_lang) : NULL};
    at_asr_event_cb cb = with_language;
    void *user = &lc;
    size_t done = 0;
    if ((rc = at_la2_insert(s->la, s->words, s->n_words, &done, cb, user, err)) < 0) return rc;
    s->since_decode = 0;
    double full = (double)s->n_buf / AT_WHISPER_SAMPLE_RATE;
    /* flushed past max_buffer_s, or when the next step would not fit in
     * the buffer (one 30 s window): a long step with a long buffer */
    if (flush || full > s->e->sc.max_buffer_s || s->n_buf + s->step + W_TICK > s->cap) {
        if ((rc = at_la2_flush(s->la, cb, user, err)) < 0) return rc;
        /* keep a little audio: the next word may have begun already */
        size_t end = s->buf_start + s->n_buf;
        trim_to(s, end > W_PREROLL ? end - W_PREROLL : 0);
        if (s->vad) s->speech = 0;
        /* automatic detection follows a speaker who changes language:
         * each utterance is detected anew */
        if (s->auto_lang) s->lang_token = -1;
        return 0;
    }
    /* trim at the end of the last segment whose words are all final */
    for (size_t i = done; i > 0; i--)
        if (s->closed[i - 1]) {
            double t = s->words[i - 1].end;
            trim_to(s, (size_t)(t * AT_WHISPER_SAMPLE_RATE));
            break;
        }
    return 0;
}

static int w_stream_feed(void *st, const float *pcm, size_t n, at_asr_event_cb cb, void *user, at_err *err)
{
    wstream *s = st;
    if (s->failed) return at_err_set(err, AT_E_INVALID, "whisper: stream failed earlier");
    if (n == 0) return 0;
    if (!pcm) return at_err_set(err, AT_E_INVALID, "whisper: no audio");
    if ((s->buf_start + s->n_buf + n) / AT_WHISPER_HOP > (size_t)W_MAX_FRAMES)
        return at_err_set(err, AT_E_TOO_LARGE, "whisper: stream too long");
    while (n > 0) {
        /* decisions fall on 0.1 s boundaries of the stream, so the events
         * do not depend on how the caller cut the audio */
        size_t total = s->buf_start + s->n_buf;
        size_t k = W_TICK - total % W_TICK;
        if (k > n) k = n;
        if (s->n_buf + k > s->cap) { /* cannot happen: flushed before a step could overflow */
            s->failed = 1;
            return at_err_set(err, AT_E_ENGINE, "whisper: stream buffer overflow");
        }
        memcpy(s->buf + s->n_buf, pcm, k * sizeof *pcm);
        s->n_buf += k;
        s->since_decode += k;
        pcm += k;
        n -= k;
        if (s->vad) {
            int started = 0, ended = 0;
            size_t end_sample = 0;
            s->in_utt = at_vad_feed(s->vad, s->buf + s->n_buf - k, k, &started, &ended, &end_sample);
            if (s->in_utt || started) s->speech = 1;
            if (ended) s->ended = 1;
        }
        if ((s->buf_start + s->n_buf) % W_TICK != 0) continue;
        int rc = 0;
        if (s->ended) {
            s->ended = 0;
            if (s->speech) {
                rc = stream_step(s, 1, cb, user, err);
                s->speech = s->in_utt;
                if (rc < 0) goto fail;
                continue;
            }
        }
        if (!s->speech) {
            /* silence or steady noise: no decoding, keep only the pre-roll */
            size_t end = s->buf_start + s->n_buf;
            trim_to(s, end > W_PREROLL ? end - W_PREROLL : 0);
            s->since_decode = 0;
            continue;
        }
        if (s->since_decode >= s->step && (rc = stream_step(s, 0, cb, user, err)) < 0) goto fail;
        continue;
    fail:
        if (rc != AT_E_CANCELLED) s->failed = 1;
        return rc;
    }
    return 0;
}

static int w_stream_finish(void *st, at_asr_event_cb cb, void *user, at_err *err)
{
    wstream *s = st;
    if (s->failed) return at_err_set(err, AT_E_INVALID, "whisper: stream failed earlier");
    if (!s->speech && at_la2_pending(s->la) == 0) return 0;
    int rc = stream_step(s, 1, cb, user, err);
    if (rc < 0) s->failed = 1;
    return rc;
}

/* ---- engine --------------------------------------------------------------- */

static const char *const *w_languages(void *impl)
{
    static const char *const en_only[] = {"en", NULL};
    wengine *e = impl;
    const at_whisper_special *sp = at_wtok_special(e->tok);
    return sp->is_multilingual ? at_wtok_languages(sp->n_langs) : en_only;
}

static void w_destroy(void *impl)
{
    wengine *e = impl;
    if (!e) return;
    at_wtok_free(e->tok);
    at_whisper_model_free(e->model);
    at_silero_free(e->silero);
    at_wsched_free(e->sched);
    at_compute_free(e->compute);
    pthread_mutex_destroy(&e->adm_mu);
    pthread_cond_destroy(&e->adm_cv);
    free(e);
}

static const at_asr_ops whisper_ops = {
    .name = "whisper",
    .destroy = w_destroy,
    .transcribe = w_transcribe,
    .stream_open = w_stream_open,
    .stream_feed = w_stream_feed,
    .stream_finish = w_stream_finish,
    .stream_close = w_stream_close,
    .languages = w_languages,
};

/* The tokenizer's special ids must be the model's. */
static int check_special(const at_whisper_special *a, const at_whisper_special *b, at_err *err)
{
    if (a->eot != b->eot || a->sot != b->sot || a->translate != b->translate ||
        a->transcribe != b->transcribe || a->solm != b->solm || a->prev != b->prev || a->nosp != b->nosp ||
        a->not_ != b->not_ || a->beg != b->beg || a->is_multilingual != b->is_multilingual)
        return at_err_set(err, AT_E_CORRUPT, "whisper: special token layout mismatch");
    return 0;
}

at_asr_engine *at_asr_whisper_new(const char *model, int n_threads, at_err *err)
{
    return at_asr_whisper_new_ex(model, n_threads, NULL, err);
}

at_asr_engine *at_asr_whisper_new_ex(const char *model, int n_threads, const at_whisper_stream_config *sc,
                                     at_err *err)
{
    if (!model || !*model) {
        at_err_set(err, AT_E_INVALID, "whisper: no model path");
        return NULL;
    }
    /* a name ("base.en") means the file in the model cache */
    char model_path[1024];
    if (at_models_resolve(model, model_path, sizeof model_path, err) < 0) return NULL;
    wengine *e = calloc(1, sizeof *e);
    if (!e) {
        at_err_set(err, AT_E_NOMEM, "out of memory");
        return NULL;
    }
    if (n_threads <= 0) {
        long c = sysconf(_SC_NPROCESSORS_ONLN);
        n_threads = c > 0 && c < 1024 ? (int)c : 1;
    }
    e->n_threads = n_threads;
    if (sc)
        e->sc = *sc;
    else
        at_whisper_stream_config_default(&e->sc);
    if (e->sc.step_ms < 50) e->sc.step_ms = 50;
    if (e->sc.step_ms > 29000) e->sc.step_ms = 29000; /* a step and the pre-roll fit one window */
    if (e->sc.max_buffer_s < 1) e->sc.max_buffer_s = 1;
    if (e->sc.max_buffer_s > 28) e->sc.max_buffer_s = 28; /* one window, room for a step */
    if (e->sc.max_jobs < 1) e->sc.max_jobs = 1;
    if (e->sc.max_queued < 0) e->sc.max_queued = 0;
    atomic_init(&e->n_streams, 0);
    pthread_mutex_init(&e->adm_mu, NULL);
    pthread_cond_init(&e->adm_cv, NULL);
    if (!(e->compute = at_compute_new(n_threads, err))) goto fail;
    if (e->sc.batch_decode &&
        !(e->sched = at_wsched_new(W_MAX_SEQS, e->sc.batch_encode ? e->compute : NULL, err)))
        goto fail;
    e->sc.vad_cfg.silero = NULL;
    if (e->sc.vad && e->sc.vad_model && *e->sc.vad_model) {
        char vad_path[1024];
        if (at_models_resolve(e->sc.vad_model, vad_path, sizeof vad_path, err) < 0 ||
            !(e->silero = at_silero_load(vad_path, err)))
            goto fail;
        e->sc.vad_cfg.silero = e->silero;
    }
    e->sc.vad_model = NULL; /* the caller's string need not outlive this call */
    e->model = at_whisper_model_load_on(model_path, e->sc.device, err);
    if (!e->model) goto fail;
    const at_whisper_hparams *hp = at_whisper_model_hparams(e->model);
    at_whisper_special sp;
    if (at_wtok_layout_from_n_vocab(hp->n_vocab, &sp, err) < 0 ||
        check_special(&sp, at_whisper_model_special(e->model), err) < 0)
        goto fail;
    const char *const *toks;
    const size_t *lens;
    size_t nv = at_whisper_model_vocab(e->model, &toks, &lens);
    if (nv > 0) {
        e->tok = at_wtok_new_bytes(toks, lens, nv, &sp, err);
    } else {
        struct stat stt;
        if (stat(model_path, &stt) == 0 && S_ISDIR(stt.st_mode)) {
            e->tok = at_wtok_new_hf_dir(model_path, &sp, err);
        } else {
            at_err_set(err, AT_E_CORRUPT, "whisper: %s has no vocabulary", model_path);
        }
    }
    if (!e->tok) goto fail;
    return at_asr_engine_new(&whisper_ops, e, err);
fail:
    w_destroy(e);
    return NULL;
}
