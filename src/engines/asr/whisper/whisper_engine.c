/* whisper_engine.c - Whisper as an at_asr engine.
 *
 * The model and tokenizer are loaded once and only read afterwards; every
 * transcription and every stream builds its own "run" (encoder state, mel
 * buffer, one KV cache per beam/sample), so calls may run concurrently.
 *
 * Files go through OpenAI's long-form loop (decode.h's at_wdec_tx).
 * Streams use the same loop fed incrementally: a window is decoded as soon
 * as 30 s of audio lie past the seek point, its segments are emitted as
 * finals and the audio before the new seek point is dropped; finish()
 * decodes the rest.  So finals come at most every 30 s and there are no
 * partials (live low-latency streaming is a separate piece of work).
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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engines/asr/asr.h"
#include "engines/asr/whisper/decode.h"
#include "engines/asr/whisper/model.h"
#include "engines/asr/whisper/tokenizer.h"

/* Longest audio one call may pass, in mel frames: keeps frame counts in
 * int with room for a window past the end. */
#define W_MAX_FRAMES (INT_MAX - 2 * AT_WHISPER_N_FRAMES)
#define W_MAX_PROMPT_BYTES 4096
/* A stream keeps at most two windows of audio: after each decoding pass
 * less than one window is left, so feeding never needs more. */
#define W_STREAM_BUF ((size_t)2 * AT_WHISPER_N_SAMPLES)

typedef struct wengine {
    at_whisper_model *model;
    at_wtok *tok;
    int n_threads;
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
    const float *pcm;  /* audio from absolute sample pcm_start */
    size_t n_pcm;
    size_t pcm_start;
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
        if (!s->kv) return err ? err->code : AT_E_NOMEM;
        s->toks = malloc((size_t)hp->n_text_ctx * sizeof *s->toks);
        if (!s->toks) return at_err_set(err, AT_E_NOMEM, "out of memory");
        s->n = 0;
    }
    *out = s;
    return 0;
}

static int run_logits(void *ctx, int seq, const int *tokens, int n, float *logits,
                      at_err *err)
{
    wrun *r = ctx;
    const at_whisper_hparams *hp = at_whisper_model_hparams(r->e->model);
    wseq *s;
    int rc = seq_get(r, seq, &s, err);
    if (rc < 0) return rc;
    if (n <= 0 || n > hp->n_text_ctx)
        return at_err_set(err, AT_E_ENGINE, "whisper: %d tokens for a context of %d", n,
                          hp->n_text_ctx);
    /* reuse the cached common prefix; at least the last token is run to
     * get its logits */
    int p = 0, lim = s->n < n ? s->n : n;
    while (p < lim && s->toks[p] == tokens[p]) p++;
    if (p == n) p = n - 1;
    at_whisper_kv_truncate(s->kv, p);
    s->n = p;
    rc = at_whisper_decode(r->st, s->kv, tokens + p, n - p, 0, logits, err);
    if (rc < 0) {
        at_whisper_kv_truncate(s->kv, 0);
        s->n = 0;
        return rc;
    }
    memcpy(s->toks + p, tokens + p, (size_t)(n - p) * sizeof *tokens);
    s->n = n;
    return 0;
}

static int run_copy(void *ctx, int dst, int src, at_err *err)
{
    wrun *r = ctx;
    wseq *d, *s;
    int rc;
    if ((rc = seq_get(r, dst, &d, err)) < 0 || (rc = seq_get(r, src, &s, err)) < 0)
        return rc;
    if (d == s) return 0;
    at_whisper_kv_copy(d->kv, s->kv);
    memcpy(d->toks, s->toks, (size_t)s->n * sizeof *s->toks);
    d->n = s->n;
    return 0;
}

static int run_encode(void *ctx, int seek, int n_frames, at_err *err)
{
    wrun *r = ctx;
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
    return at_whisper_encode(r->st, r->mel, 0, err);
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
    r->st = at_whisper_state_new(e->model, e->n_threads, err);
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
        .copy = run_copy,
        .encode = run_encode,
    };
    return 0;
}

/* ---- options ------------------------------------------------------------ */

typedef struct wjob {
    at_wdec_tx_options txo;
    int *prompt;
    float temps[16];
} wjob;

static int job_init(const wengine *e, const at_asr_options *opt, wjob *j, int *n_seqs,
                    at_err *err)
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
                return at_err_set(err, AT_E_UNSUPPORTED,
                                  "whisper: English-only model, language \"%s\"", code);
        } else {
            d->lang_token = at_wtok_lang_token(e->tok, code);
            if (d->lang_token < 0)
                return at_err_set(err, AT_E_UNSUPPORTED, "whisper: unknown language \"%s\"",
                                  opt->language);
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
    int nt = 0;
    for (; nt < 16 && t0 + 0.2f * (float)nt <= 1.0f + 1e-6f; nt++)
        j->temps[nt] = t0 + 0.2f * (float)nt;
    j->txo.fallback.temperatures = j->temps;
    j->txo.fallback.n_temperatures = nt;
    /* beam search when asked; its samples on fallback then use best_of as
     * the whisper CLI defaults do (beam_size 5, best_of 5) */
    int beam = opt && opt->beam_size > 1 ? opt->beam_size : 0;
    if (beam > 16) beam = 16;
    d->beam_size = beam;
    d->best_of = beam;
    *n_seqs = beam > 1 ? beam : 1;
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

typedef struct file_sink {
    at_asr_result *out;
    double duration;
    at_err *err;
    int failed;
} file_sink;

static int file_on_segment(void *user, const at_wdec_segment *seg)
{
    file_sink *fs = user;
    char *text = seg_text(seg->text);
    if (!text) return 0;
    double s = seg->start, e = seg->end;
    clamp_times(&s, &e, fs->duration);
    int rc = at_asr_result_add(fs->out, text, s, e, fs->err);
    free(text);
    if (rc < 0) {
        fs->failed = 1;
        return 1;
    }
    at_asr_segment *g = &fs->out->segments[fs->out->n_segments - 1];
    g->avg_logprob = seg->avg_logprob;
    g->no_speech_prob = seg->no_speech_prob;
    return 0;
}

static int w_transcribe(void *impl, const float *pcm, size_t n, const at_asr_options *opt,
                        at_asr_result *out, at_err *err)
{
    wengine *e = impl;
    memset(out, 0, sizeof *out);
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
    file_sink fs = {out, (double)n / AT_WHISPER_SAMPLE_RATE, err, 0};
    job.txo.on_segment = file_on_segment;
    job.txo.user = &fs;
    at_wdec_tx *tx = at_wdec_tx_new(&run.dm, e->tok, &job.txo, err);
    if (!tx) {
        rc = err ? err->code : AT_E_NOMEM;
    } else {
        rc = at_wdec_tx_run(tx, (int)(n / AT_WHISPER_HOP), 1, err);
        if (fs.failed && rc == AT_E_CANCELLED) rc = err ? err->code : AT_E_NOMEM;
        int lt = at_wdec_tx_lang_token(tx);
        const char *code = lt >= 0 ? lang_code(e, lt)
                           : (opt && opt->language ? opt->language : "");
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

typedef struct wstream {
    wengine *e;
    wjob job;
    wrun run;
    at_wdec_tx *tx;
    float *buf;        /* audio from absolute sample buf_start */
    size_t n_buf, cap, buf_start;
    at_asr_event_cb cb;
    void *user;
    int failed;        /* a previous call failed: the decoder state is unknown */
} wstream;

static int stream_on_segment(void *user, const at_wdec_segment *seg)
{
    wstream *s = user;
    char *text = seg_text(seg->text);
    if (!text) return 0;
    double st = seg->start, en = seg->end;
    clamp_times(&st, &en, (double)(s->buf_start + s->n_buf) / AT_WHISPER_SAMPLE_RATE);
    at_asr_event ev = {1, text, st, en};
    int stop = s->cb ? s->cb(s->user, &ev) : 0;
    free(text);
    return stop;
}

static void w_stream_close(void *st)
{
    wstream *s = st;
    if (!s) return;
    at_wdec_tx_free(s->tx);
    run_free(&s->run);
    free(s->job.prompt);
    free(s->buf);
    free(s);
}

static void *w_stream_open(void *impl, const at_asr_options *opt, at_err *err)
{
    wengine *e = impl;
    wstream *s = calloc(1, sizeof *s);
    if (!s) {
        at_err_set(err, AT_E_NOMEM, "out of memory");
        return NULL;
    }
    s->e = e;
    int n_seqs;
    if (job_init(e, opt, &s->job, &n_seqs, err) < 0 || run_init(&s->run, e, n_seqs, err) < 0) {
        w_stream_close(s);
        return NULL;
    }
    s->job.txo.on_segment = stream_on_segment;
    s->job.txo.user = s;
    s->tx = at_wdec_tx_new(&s->run.dm, e->tok, &s->job.txo, err);
    if (!s->tx) {
        w_stream_close(s);
        return NULL;
    }
    return s;
}

static int stream_step(wstream *s, int final, at_asr_event_cb cb, void *user, at_err *err)
{
    s->cb = cb;
    s->user = user;
    s->run.pcm = s->buf;
    s->run.n_pcm = s->n_buf;
    s->run.pcm_start = s->buf_start;
    size_t frames = (s->buf_start + s->n_buf) / AT_WHISPER_HOP;
    int rc = at_wdec_tx_run(s->tx, (int)frames, final, err);
    s->cb = NULL;
    s->user = NULL;
    if (rc < 0) {
        s->failed = 1;
        return rc;
    }
    /* audio before the seek point is never looked at again */
    size_t keep_from = (size_t)at_wdec_tx_seek(s->tx) * AT_WHISPER_HOP;
    if (keep_from > s->buf_start) {
        size_t drop = keep_from - s->buf_start;
        if (drop > s->n_buf) drop = s->n_buf;
        memmove(s->buf, s->buf + drop, (s->n_buf - drop) * sizeof *s->buf);
        s->n_buf -= drop;
        s->buf_start += drop;
    }
    return 0;
}

static int w_stream_feed(void *st, const float *pcm, size_t n, at_asr_event_cb cb, void *user,
                         at_err *err)
{
    wstream *s = st;
    if (s->failed) return at_err_set(err, AT_E_INVALID, "whisper: stream failed earlier");
    if (n == 0) return 0;
    if (!pcm) return at_err_set(err, AT_E_INVALID, "whisper: no audio");
    if ((s->buf_start + s->n_buf + n) / AT_WHISPER_HOP > (size_t)W_MAX_FRAMES)
        return at_err_set(err, AT_E_TOO_LARGE, "whisper: stream too long");
    if (!s->buf) {
        s->cap = W_STREAM_BUF;
        s->buf = malloc(s->cap * sizeof *s->buf);
        if (!s->buf) return at_err_set(err, AT_E_NOMEM, "out of memory");
    }
    /* Take the audio in pieces that fit the fixed buffer: after each run
     * less than one window is left over, so every piece makes room. */
    while (n > 0) {
        size_t k = s->cap - s->n_buf;
        if (k > n) k = n;
        memcpy(s->buf + s->n_buf, pcm, k * sizeof *pcm);
        s->n_buf += k;
        pcm += k;
        n -= k;
        int rc = stream_step(s, 0, cb, user, err);
        if (rc < 0) return rc;
    }
    return 0;
}

static int w_stream_finish(void *st, at_asr_event_cb cb, void *user, at_err *err)
{
    wstream *s = st;
    if (s->failed) return at_err_set(err, AT_E_INVALID, "whisper: stream failed earlier");
    return stream_step(s, 1, cb, user, err);
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
        a->transcribe != b->transcribe || a->solm != b->solm || a->prev != b->prev ||
        a->nosp != b->nosp || a->not_ != b->not_ || a->beg != b->beg ||
        a->is_multilingual != b->is_multilingual)
        return at_err_set(err, AT_E_CORRUPT, "whisper: special token layout mismatch");
    return 0;
}

at_asr_engine *at_asr_whisper_new(const char *model_path, int n_threads, at_err *err)
{
    if (!model_path || !*model_path) {
        at_err_set(err, AT_E_INVALID, "whisper: no model path");
        return NULL;
    }
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
    e->model = at_whisper_model_load(model_path, err);
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
