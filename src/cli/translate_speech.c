/* translate_speech.c - `audio-translator translate-speech`: a speech file
 * in one language -> translated speech (WAV) and subtitles.
 *
 * The recording is streamed through the ASR engine in one-second steps
 * (that gives timed segments and a natural progress measure), each final
 * segment is translated and synthesised, and the speech is laid out on one
 * timeline: a segment starts at its time in the original, or right after
 * the previous one when that ran longer, so the result stays in step with
 * the source.  Subtitle times are those of the original recording; each
 * cue has two lines, the source text and then its translation. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/commands.h"
#include "core/audio.h"
#include "core/config.h"
#include "core/subtitle.h"
#include "services/app.h"

typedef struct ts_seg {
    double start, end;
    char *text;
    char *translation; /* NULL if translation failed */
    char *cue;         /* "source\ntranslation" */
} ts_seg;

typedef struct ts_ctx {
    ts_seg *segs;
    size_t n, cap;
    int failed;
} ts_ctx;

static int on_event(void *user, const at_asr_event *ev)
{
    ts_ctx *c = user;
    if (!ev->is_final) return 0;
    const char *t = ev->text;
    while (*t == ' ') t++;
    if (!*t) return 0;
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 16;
        ts_seg *s = realloc(c->segs, cap * sizeof *s);
        if (!s) {
            c->failed = 1;
            return 1;
        }
        c->segs = s;
        c->cap = cap;
    }
    ts_seg *s = &c->segs[c->n];
    memset(s, 0, sizeof *s);
    s->start = ev->start;
    s->end = ev->end;
    s->text = strdup(t);
    if (!s->text) {
        c->failed = 1;
        return 1;
    }
    c->n++;
    return 0;
}

/* A progress bar on stderr, only when it is a terminal. */
typedef struct progress {
    int on;
    double last;
} progress;

static void show(progress *p, const char *what, double done, double total, const char *unit)
{
    if (!p->on) return;
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    double now = (double)t.tv_sec + (double)t.tv_nsec / 1e9;
    if (done < total && now - p->last < 0.1) return; /* at most 10 redraws a second */
    p->last = now;
    double f = total > 0 ? done / total : 1;
    if (f > 1) f = 1;
    char bar[31];
    int fill = (int)(f * 30);
    for (int i = 0; i < 30; i++) bar[i] = i < fill ? '#' : '.';
    bar[30] = '\0';
    fprintf(stderr, "\r%-12s [%s] %3.0f%%  %.0f/%.0f %s   ", what, bar, f * 100, done, total, unit);
    if (done >= total) fputc('\n', stderr);
    fflush(stderr);
}

static int write_text(const char *path, const char *doc)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        perror(path);
        return -1;
    }
    int ok = fputs(doc, f) >= 0;
    ok &= fclose(f) == 0;
    if (!ok) perror(path);
    return ok ? 0 : -1;
}

int at_cli_translate_speech(int argc, char **argv)
{
    char *from = NULL, *to = NULL, *output = NULL, *srt = NULL, *vtt = NULL, *voice = NULL, *model = NULL,
         *engine = NULL, *modes = NULL;
    long threads = 0, rate = 0;
    double speed = 1.0;
    int want_progress = 1;
    at_option o[] = {
        {"from", NULL, AT_OPT_STRING, "en", "spoken language (ISO 639-1)", &from, 0, 0},
        {"to", NULL, AT_OPT_STRING, NULL, "language to translate into", &to, 0, 0},
        {"output", NULL, AT_OPT_STRING, NULL, "translated speech, WAV (-o)", &output, 0, 0},
        {"srt", NULL, AT_OPT_STRING, NULL,
         "also write SRT subtitles: each cue has the source line, then its translation", &srt, 0, 0},
        {"vtt", NULL, AT_OPT_STRING, NULL, "also write WebVTT subtitles (same two lines)", &vtt, 0, 0},
        {"voice", NULL, AT_OPT_STRING, NULL, "voice (default: the first of the target language)", &voice, 0,
         0},
        {"speed", NULL, AT_OPT_DOUBLE, "1.0", "speaking rate, 0.25 to 4.0", &speed, 0.25, 4.0},
        {"rate", NULL, AT_OPT_INT, "0", "output sample rate (0 = the voice's)", &rate, 0, 192000},
        {"model", "AT_WHISPER_MODEL", AT_OPT_STRING, NULL, "whisper model; default: pocketsphinx (English)",
         &model, 0, 0},
        {"engine", NULL, AT_OPT_STRING, NULL, "pocketsphinx or whisper", &engine, 0, 0},
        {"threads", "AT_THREADS", AT_OPT_INT, "0", "whisper threads (0 = all cores)", &threads, 0, 256},
        {"apertium-modes", "AT_APERTIUM_MODES", AT_OPT_STRING, NULL, "folder of .mode files", &modes, 0, 0},
        {"progress", NULL, AT_OPT_BOOL, "1", "progress bar on stderr (only on a terminal)", &want_progress, 0,
         0},
    };
    size_t no = sizeof o / sizeof o[0], n_pos = 0;
    const char *pos[1];
    const char *use = "audio-translator translate-speech IN --from L --to L -o OUT.wav "
                      "[--srt OUT.srt] [--vtt OUT.vtt]";
    at_err err;
    at_err_clear(&err);
    int rc = at_config_parse(o, no, argc, argv, 2, use, pos, 1, &n_pos, &err);
    if (rc == 1) {
        at_config_free(o, no);
        return 0;
    }
    if (rc != 0 || n_pos != 1 || !to || !output) {
        fprintf(stderr, "audio-translator translate-speech: %s\nUsage: %s\n",
                rc ? err.msg : "IN, --to and -o OUT.wav are required", use);
        at_config_free(o, no);
        return 2;
    }
    rc = 1;
    progress prog = {want_progress && isatty(2), 0};
    at_audio audio = {0};
    at_app *app = NULL;
    at_asr_stream *as = NULL;
    ts_ctx ctx = {0};
    at_pcm16_buf speech = {0};
    int16_t *out = NULL;
    at_cue *cues = NULL;
    if (at_audio_decode_file(pos[0], 0, &audio, &err) != 0 ||
        at_audio_resample(&audio, AT_ASR_SAMPLE_RATE, &err) != 0) {
        fprintf(stderr, "audio-translator translate-speech: %s: %s\n", pos[0], err.msg);
        goto done;
    }
    at_app_config ac;
    at_app_config_defaults(&ac);
    ac.kinds = AT_APP_ASR | AT_APP_MT | AT_APP_TTS;
    ac.loaders = &at_app_local_loaders;
    ac.whisper_model = model;
    ac.apertium_modes = modes;
    ac.threads = (int)threads;
    ac.max_streams = 1;
    app = at_app_new(&ac, NULL, NULL, &err);
    if (!app || at_app_load(app, &err) != 0) {
        fprintf(stderr, "audio-translator translate-speech: cannot load engines: %s\n", err.msg);
        goto done;
    }
    at_asr_engine *asr = at_app_asr(app, engine);
    at_tts_engine *tts = NULL;
    const at_tts_voice *v = at_app_find_voice(app, voice ? voice : to, &tts);
    if (!asr) {
        fprintf(stderr, "audio-translator translate-speech: unknown engine '%s' (loaded: %s)\n", engine,
                at_app_asr_names(app));
        goto done;
    }
    if (!at_asr_engine_supports_language(asr, from)) {
        fprintf(stderr, "audio-translator translate-speech: the %s engine does not recognise '%s'\n",
                at_asr_engine_name(asr), from);
        goto done;
    }
    if (strcmp(from, to) != 0 && !at_mt_engine_has_pair(at_app_mt(app), from, to)) {
        char *x = NULL;
        at_mt_translate(at_app_mt(app), from, to, "x", &x, &err);
        free(x);
        fprintf(stderr, "audio-translator translate-speech: %s\n", err.msg);
        goto done;
    }
    if (!v) {
        fprintf(stderr, "audio-translator translate-speech: no voice '%s' (see speak --list)\n",
                voice ? voice : to);
        goto done;
    }

    /* 1. Recognise, a second at a time. */
    at_asr_options opt = {0};
    opt.language = from;
    if (!(as = at_asr_stream_open(asr, &opt, &err))) {
        fprintf(stderr, "audio-translator translate-speech: %s\n", err.msg);
        goto done;
    }
    double total = (double)audio.n / AT_ASR_SAMPLE_RATE;
    for (size_t i = 0; i < audio.n; i += AT_ASR_SAMPLE_RATE) {
        size_t k = audio.n - i < AT_ASR_SAMPLE_RATE ? audio.n - i : AT_ASR_SAMPLE_RATE;
        if (at_asr_stream_feed(as, audio.samples + i, k, on_event, &ctx, &err) != 0) break;
        show(&prog, "recognising", (double)(i + k) / AT_ASR_SAMPLE_RATE, total, "s");
    }
    if (!err.code) at_asr_stream_finish(as, on_event, &ctx, &err);
    if (err.code || ctx.failed) {
        fprintf(stderr, "audio-translator translate-speech: recognition failed: %s\n",
                ctx.failed ? "out of memory" : err.msg);
        goto done;
    }
    if (!ctx.n) {
        fprintf(stderr, "audio-translator translate-speech: no speech found in %s\n", pos[0]);
        goto done;
    }

    /* 2. Translate and speak each segment onto one timeline. */
    int out_rate = rate ? (int)rate : v->sample_rate;
    size_t out_n = 0, out_cap = 0;
    int errors = 0;
    for (size_t i = 0; i < ctx.n; i++) {
        ts_seg *s = &ctx.segs[i];
        at_err e;
        at_err_clear(&e);
        if (strcmp(from, to) == 0)
            s->translation = strdup(s->text);
        else if (at_mt_translate(at_app_mt(app), from, to, s->text, &s->translation, &e) != 0) {
            fprintf(stderr, "%ssegment %zu: translation failed: %s\n", prog.on ? "\n" : "", i, e.msg);
            s->translation = NULL;
            errors++;
        }
        size_t cl = strlen(s->text) + (s->translation ? strlen(s->translation) : 0) + 2;
        s->cue = malloc(cl);
        if (s->cue)
            snprintf(s->cue, cl, "%s%s%s", s->text, s->translation ? "\n" : "",
                     s->translation ? s->translation : "");
        speech.n = 0;
        if (s->translation &&
            at_tts_synthesize(tts, v, s->translation, (float)speed, at_pcm16_buf_append, &speech, &e) != 0) {
            fprintf(stderr, "%ssegment %zu: speech synthesis failed: %s\n", prog.on ? "\n" : "", i, e.msg);
            errors++;
            speech.n = 0;
        }
        if (speech.n) {
            at_audio a = {malloc(speech.n * sizeof(float)), speech.n, v->sample_rate};
            if (!a.samples) goto oom;
            at_audio_s16_to_f32(speech.pcm, speech.n, a.samples);
            if (at_audio_resample(&a, out_rate, &e) != 0) {
                at_audio_free(&a);
                fprintf(stderr, "audio-translator translate-speech: %s\n", e.msg);
                goto done;
            }
            size_t at = (size_t)(s->start * out_rate);
            if (at < out_n) at = out_n;
            if (at + a.n > out_cap) {
                size_t cap = out_cap ? out_cap : (size_t)(total * out_rate) + 1;
                while (cap < at + a.n) cap *= 2;
                int16_t *p = realloc(out, cap * sizeof *p);
                if (!p) {
                    at_audio_free(&a);
                    goto oom;
                }
                memset(p + out_cap, 0, (cap - out_cap) * sizeof *p);
                out = p;
                out_cap = cap;
            }
            at_audio_f32_to_s16(a.samples, a.n, out + at);
            out_n = at + a.n;
            at_audio_free(&a);
        }
        show(&prog, "translating", (double)(i + 1), (double)ctx.n, "segments");
    }
    if (!out_n) {
        fprintf(stderr, "audio-translator translate-speech: no segment could be spoken\n");
        goto done;
    }
    /* The translation lasts at least as long as the original. */
    size_t want = (size_t)(total * out_rate);
    if (want > out_n && want <= out_cap) out_n = want;
    if (at_wav_write_file(output, out, out_n, out_rate, &err) != 0) {
        fprintf(stderr, "audio-translator translate-speech: %s\n", err.msg);
        goto done;
    }
    cues = calloc(ctx.n, sizeof *cues);
    if (!cues) goto oom;
    for (size_t i = 0; i < ctx.n; i++)
        cues[i] = (at_cue){ctx.segs[i].start, ctx.segs[i].end,
                           ctx.segs[i].cue ? ctx.segs[i].cue : ctx.segs[i].text};
    for (int k = 0; k < 2; k++) {
        const char *path = k ? vtt : srt;
        if (!path) continue;
        char *doc = k ? at_subtitle_vtt(cues, ctx.n) : at_subtitle_srt(cues, ctx.n);
        if (!doc) goto oom;
        int w = write_text(path, doc);
        free(doc);
        if (w) goto done;
    }
    fprintf(stderr, "wrote %s: %.2f s at %d Hz, %zu segments (%s -> %s, voice %s)%s%s\n", output,
            (double)out_n / out_rate, out_rate, ctx.n, from, to, v->name,
            errors ? "; segments with errors: " : "", errors ? "see above" : "");
    rc = 0;
    goto done;
oom:
    fprintf(stderr, "audio-translator translate-speech: out of memory\n");
done:
    for (size_t i = 0; i < ctx.n; i++) {
        free(ctx.segs[i].text);
        free(ctx.segs[i].translation);
        free(ctx.segs[i].cue);
    }
    free(ctx.segs);
    free(cues);
    free(out);
    free(speech.pcm);
    at_asr_stream_close(as);
    at_app_free(app);
    at_audio_free(&audio);
    at_config_free(o, no);
    return rc;
}
