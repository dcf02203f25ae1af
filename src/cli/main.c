/* audio-translator - the command-line front end.
 *
 *   serve                      all services, a supervised process each
 *   transcribe FILE            speech file -> text / subtitles
 *   translate TEXT --from --to text -> text
 *   speak TEXT -o out.wav      text -> speech
 *   translate-speech IN ...    speech file -> translated speech + subtitles
 *   whisper-check ...          compare our Whisper against reference dumps
 *   mt-check ...               compare a translation model against reference dumps
 *   tts-check ...              run a VITS voice on token ids, write the waveform
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/commands.h"
#include "core/audio.h"
#include "core/config.h"
#include "engines/asr/whisper/model.h"
#include "engines/asr/whisper/models.h"
#include "engines/asr/whisper/whisper.h"
#include "services/app.h"
#include "services/runner.h"
#include "tools/tools.h"

static void usage(FILE *f)
{
    fprintf(f, "Usage: audio-translator COMMAND [OPTIONS]\n\n"
               "Commands:\n"
               "  serve                          run asr_streaming (8003), translate (8004),\n"
               "                                 tts (8005) and the pipeline with its web\n"
               "                                 page (8000), a supervised process each\n"
               "  transcribe FILE                recognise speech in an audio file\n"
               "  translate TEXT --from L --to L translate text (TEXT '-' reads stdin)\n"
               "  speak TEXT -o OUT.wav          synthesise speech\n"
               "  translate-speech IN --from L --to L -o OUT.wav [--srt F] [--vtt F]\n"
               "                                 speech file -> translated speech + subtitles\n"
               "  whisper-check --model PATH ... decode with raw argmax and dump features\n"
               "  mt-check --model DIR --source-ids LIST ...  run a translation model\n"
               "                                 by argmax and generate(), dump tensors\n"
               "  tts-check --model DIR --input-ids LIST --out FILE.npy  run a VITS voice\n"
               "                                 on token ids, write the waveform\n"
               "  whisper-convert --model IN --out OUT.bin  Hugging Face folder -> ggml\n"
               "                                 (--type f32|f16|q8_0|q5_0|q5_1|q4_0)\n"
               "  models list|pull NAME|path NAME  the Whisper model cache (AT_MODELS_DIR)\n"
               "  whisper-random-model ...       write a random-weight ggml model of an\n"
               "                                 official shape (tests, benchmarks)\n"
               "  nmt-random-model --preset P --out DIR  a random-weight translation model\n"
               "                                 folder (opus-mt-base, nllb-600m, m2m100-418m)\n"
               "  vits-random-model --preset P --out DIR  a random-weight VITS voice\n"
               "                                 folder (mms-tts, vits-ljs)\n\n"
               "Run 'audio-translator COMMAND --help' for a command's options.\n");
}

/* curl-style short options the commands accept. */
static void expand_short(int argc, char **argv)
{
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "-o") == 0)
            argv[i] = "--output";
        else if (strcmp(argv[i], "-h") == 0)
            argv[i] = "--help";
        else if (strcmp(argv[i], "-l") == 0)
            argv[i] = "--language";
        else if (strcmp(argv[i], "-m") == 0)
            argv[i] = "--model";
    }
}

/* Parses a command's options; returns -1 to continue, else an exit code. */
static int parse(const at_option *o, size_t n, int argc, char **argv, const char *use, const char **pos,
                 size_t max_pos, size_t *n_pos, size_t need_pos)
{
    at_err err;
    at_err_clear(&err);
    int rc = at_config_parse(o, n, argc, argv, 2, use, pos, max_pos, n_pos, &err);
    if (rc == 1) return 0;
    if (rc == 0 && *n_pos < need_pos) at_err_set(&err, AT_E_INVALID, "missing argument");
    if (rc != 0 || *n_pos < need_pos) {
        fprintf(stderr, "audio-translator %s: %s\nUsage: %s\n", argv[1], err.msg, use);
        return 2;
    }
    return -1;
}

static int load_app(at_app **app, int kinds, const char *model, const char *extra_dir, int threads)
{
    at_app_config c;
    at_app_config_defaults(&c);
    c.kinds = kinds;
    c.loaders = &at_app_local_loaders;
    if (kinds == AT_APP_MT) {
        c.mt_models = model; /* translation models, comma-separated */
        c.apertium_modes = extra_dir;
    } else if (kinds == AT_APP_TTS) {
        c.tts_models = model; /* neural voices, comma-separated */
    } else {
        c.whisper_model = model;
    }
    if (kinds == AT_APP_ASR) c.pocketsphinx_dir = extra_dir;
    c.threads = threads;
    at_err err;
    at_err_clear(&err);
    *app = at_app_new(&c, NULL, NULL, &err);
    if (!*app || at_app_load(*app, &err) != 0) {
        fprintf(stderr, "audio-translator: cannot load engines: %s\n", err.msg);
        at_app_free(*app);
        *app = NULL;
        return 1;
    }
    return 0;
}

static int cmd_transcribe(int argc, char **argv)
{
    char *model = NULL, *engine = NULL, *language = NULL, *format = NULL, *output = NULL, *prompt = NULL,
         *ps_dir = NULL;
    long threads = 0;
    int translate = 0, words = 0;
    at_option o[] = {
        {"model", "AT_WHISPER_MODEL", AT_OPT_STRING, NULL,
         "whisper model (ggml .bin or Hugging Face folder); default: pocketsphinx", &model, 0, 0},
        {"engine", NULL, AT_OPT_STRING, NULL, "pocketsphinx or whisper (default: the best loaded)", &engine,
         0, 0},
        {"language", NULL, AT_OPT_STRING, NULL, "spoken language (ISO 639-1)", &language, 0, 0},
        {"format", NULL, AT_OPT_STRING, "text", "text, json, verbose_json, srt or vtt", &format, 0, 0},
        {"translate", NULL, AT_OPT_BOOL, "0", "translate speech to English (whisper)", &translate, 0, 0},
        {"prompt", NULL, AT_OPT_STRING, NULL, "initial prompt (whisper)", &prompt, 0, 0},
        {"word-timestamps", NULL, AT_OPT_BOOL, "0", "words with their times in verbose_json", &words, 0, 0},
        {"threads", "AT_THREADS", AT_OPT_INT, "0", "whisper threads (0 = all cores)", &threads, 0, 256},
        {"pocketsphinx-model", "AT_POCKETSPHINX_MODEL", AT_OPT_STRING, NULL, "pocketsphinx model folder",
         &ps_dir, 0, 0},
        {"output", NULL, AT_OPT_STRING, NULL, "write to this file instead of stdout (-o)", &output, 0, 0},
    };
    size_t no = sizeof o / sizeof o[0], n_pos = 0;
    const char *pos[1];
    int rc = parse(o, no, argc, argv, "audio-translator transcribe FILE [OPTIONS]", pos, 1, &n_pos, 1);
    if (rc >= 0) goto done;
    rc = 1;
    at_err err;
    at_err_clear(&err);
    at_audio audio = {0};
    if (at_audio_decode_file(pos[0], 0, &audio, &err) != 0 || at_audio_resample(&audio, 16000, &err) != 0) {
        fprintf(stderr, "audio-translator transcribe: %s: %s\n", pos[0], err.msg);
        at_audio_free(&audio);
        goto done;
    }
    at_app *app;
    if (load_app(&app, AT_APP_ASR, model, ps_dir, (int)threads)) {
        at_audio_free(&audio);
        goto done;
    }
    at_asr_engine *eng = at_app_asr(app, engine);
    if (!eng) {
        fprintf(stderr, "audio-translator transcribe: unknown engine '%s' (loaded: %s)\n", engine,
                at_app_asr_names(app));
    } else {
        at_asr_options opt = {0};
        opt.language = language;
        opt.translate = translate;
        opt.prompt = prompt;
        opt.word_timestamps = words;
        at_asr_result res;
        if (at_asr_transcribe(eng, audio.samples, audio.n, &opt, &res, &err) != 0) {
            fprintf(stderr, "audio-translator transcribe: %s\n", err.msg);
        } else {
            static const char *const fmts[] = {"text", "json", "verbose_json", "srt", "vtt"};
            int ok = 0;
            for (size_t i = 0; i < sizeof fmts / sizeof fmts[0]; i++) ok |= !strcmp(format, fmts[i]);
            const char *ctype;
            char *doc = ok ? at_asr_format_result(&res, format, translate ? "translate" : "transcribe",
                                                  words ? AT_ASR_WORDS : 0, &ctype)
                           : NULL;
            if (!ok) fprintf(stderr, "audio-translator transcribe: unknown --format '%s'\n", format);
            FILE *out = output ? fopen(output, "w") : stdout;
            if (!doc) {
                /* reported above */
            } else if (!out) {
                perror(output);
            } else {
                fputs(doc, out);
                if (format[0] == 'j' || format[0] == 'v') fputc('\n', out);
                if (output) fclose(out);
                rc = 0;
            }
            free(doc);
            at_asr_result_free(&res);
        }
    }
    at_app_free(app);
    at_audio_free(&audio);
done:
    at_config_free(o, no);
    return rc;
}

static char *read_stdin(void)
{
    size_t cap = 4096, n = 0;
    char *s = malloc(cap);
    size_t r;
    while (s && (r = fread(s + n, 1, cap - n - 1, stdin)) > 0) {
        n += r;
        if (n + 1 == cap) {
            if (cap > (64u << 20)) break; /* stdin text beyond 64 MiB is not a sentence */
            char *ns = realloc(s, cap *= 2);
            if (!ns) {
                free(s);
                return NULL;
            }
            s = ns;
        }
    }
    if (s) s[n] = '\0';
    return s;
}

static int cmd_translate(int argc, char **argv)
{
    char *from = NULL, *to = NULL, *modes = NULL, *models = NULL;
    int list = 0, route = 0;
    at_option o[] = {
        {"from", NULL, AT_OPT_STRING, NULL, "source language (ISO 639-1, e.g. en)", &from, 0, 0},
        {"to", NULL, AT_OPT_STRING, NULL, "target language (e.g. es)", &to, 0, 0},
        {"list", NULL, AT_OPT_BOOL, "0", "list the installed language pairs", &list, 0, 0},
        {"apertium-modes", "AT_APERTIUM_MODES", AT_OPT_STRING, NULL, "folder of .mode files", &modes, 0, 0},
        {"model", "AT_MT_MODELS", AT_OPT_STRING, NULL,
         "translation models: Hugging Face folders (OPUS-MT, NLLB-200, M2M100), comma-separated", &models, 0,
         0},
        {"route", NULL, AT_OPT_BOOL, "0", "print what translates the pair (stderr)", &route, 0, 0},
    };
    size_t no = sizeof o / sizeof o[0], n_pos = 0;
    const char *pos[1];
    const char *use = "audio-translator translate TEXT --from L --to L  (TEXT '-' = stdin)";
    int rc = parse(o, no, argc, argv, use, pos, 1, &n_pos, 0);
    if (rc >= 0) goto done;
    rc = 2;
    if (!list && (n_pos != 1 || !from || !to)) {
        fprintf(stderr, "audio-translator translate: TEXT, --from and --to are required\nUsage: %s\n", use);
        goto done;
    }
    at_app *app;
    rc = 1;
    if (load_app(&app, AT_APP_MT, models, modes, 0)) goto done;
    if (list) {
        size_t n;
        const at_mt_pair *p = at_mt_engine_pairs(at_app_mt(app), &n);
        for (size_t i = 0; i < n; i++) printf("%s %s\n", p[i].source, p[i].target);
        rc = 0;
    } else {
        char *text = strcmp(pos[0], "-") == 0 ? read_stdin() : strdup(pos[0]);
        char *out = NULL;
        at_err err;
        at_err_clear(&err);
        if (!text)
            fprintf(stderr, "audio-translator translate: cannot read the text\n");
        else if (at_mt_translate(at_app_mt(app), from, to, text, &out, &err) != 0)
            fprintf(stderr, "audio-translator translate: %s\n", err.msg);
        else {
            char via[256];
            if (route)
                fprintf(stderr, "engine: %s\n", at_mt_route(at_app_mt(app), from, to, via, sizeof via));
            printf("%s\n", out);
            rc = 0;
        }
        free(out);
        free(text);
    }
    at_app_free(app);
done:
    at_config_free(o, no);
    return rc;
}

static int cmd_speak(int argc, char **argv)
{
    char *voice = NULL, *output = NULL, *model = NULL;
    double speed = 1.0, noise = -1, noise_w = -1;
    long seed = -1, speaker = 0;
    int list = 0;
    at_option o[] = {
        {"voice", NULL, AT_OPT_STRING, "slt",
         "voice name (see --list), OpenAI name (alloy...) or language code", &voice, 0, 0},
        {"model", "AT_TTS_MODELS", AT_OPT_STRING, NULL,
         "neural voices: VITS folders or cache names, comma-separated (-m)", &model, 0, 0},
        {"speed", NULL, AT_OPT_DOUBLE, "1.0", "speaking rate, 0.25 to 4.0", &speed, 0.25, 4.0},
        {"noise-scale", NULL, AT_OPT_DOUBLE, "-1", "neural voices: noise of the prior (-1: the voice's)",
         &noise, -1, 10},
        {"noise-scale-duration", NULL, AT_OPT_DOUBLE, "-1",
         "neural voices: noise of the durations (-1: the voice's)", &noise_w, -1, 10},
        {"seed", NULL, AT_OPT_INT, "-1", "neural voices: seed of the noise (-1: a fresh one)", &seed, -1,
         2147483647},
        {"speaker-id", NULL, AT_OPT_INT, "0", "multi-speaker neural voices: the speaker", &speaker, 0,
         1000000},
        {"output", NULL, AT_OPT_STRING, NULL, "WAV file to write (-o)", &output, 0, 0},
        {"list", NULL, AT_OPT_BOOL, "0", "list the voices", &list, 0, 0},
    };
    size_t no = sizeof o / sizeof o[0], n_pos = 0;
    const char *pos[1];
    const char *use = "audio-translator speak TEXT -o OUT.wav [--voice V] [--speed S] [--model VITS_DIR]";
    int rc = parse(o, no, argc, argv, use, pos, 1, &n_pos, 0);
    if (rc >= 0) goto done;
    rc = 2;
    if (!list && (n_pos != 1 || !output)) {
        fprintf(stderr, "audio-translator speak: TEXT and -o OUT.wav are required\nUsage: %s\n", use);
        goto done;
    }
    at_app *app;
    rc = 1;
    if (load_app(&app, AT_APP_TTS, model, NULL, 0)) goto done;
    if (list) {
        for (size_t e = 0; e < at_app_tts_count(app); e++) {
            size_t n;
            const at_tts_voice *v = at_tts_engine_voices(at_app_tts(app, e), &n);
            for (size_t i = 0; i < n; i++)
                printf("%-16s %-6s %-7s %s (%d speaker%s)\n", v[i].name, v[i].language, v[i].gender,
                       at_tts_engine_name(at_app_tts(app, e)), v[i].speakers > 1 ? v[i].speakers : 1,
                       v[i].speakers > 1 ? "s" : "");
        }
        rc = 0;
    } else {
        at_tts_engine *eng = NULL;
        const at_tts_voice *v = at_app_find_voice(app, voice, &eng);
        at_err err;
        at_err_clear(&err);
        at_pcm16_buf sink = {0};
        char *text = strcmp(pos[0], "-") == 0 ? read_stdin() : strdup(pos[0]);
        at_tts_params tp;
        at_tts_params_init(&tp);
        tp.speed = (float)speed;
        tp.noise_scale = (float)noise;
        tp.noise_scale_duration = (float)noise_w;
        tp.seed = seed;
        tp.speaker_id = (int)speaker;
        if (!v)
            fprintf(stderr, "audio-translator speak: unknown voice '%s' (see --list)\n", voice);
        else if (!text)
            fprintf(stderr, "audio-translator speak: cannot read the text\n");
        else if (at_tts_synthesize_params(eng, v, text, &tp, at_pcm16_buf_append, &sink, &err) != 0)
            fprintf(stderr, "audio-translator speak: %s\n", err.msg);
        else if (at_wav_write_file(output, sink.pcm, sink.n, v->sample_rate, &err) != 0)
            fprintf(stderr, "audio-translator speak: %s\n", err.msg);
        else {
            fprintf(stderr, "wrote %s: %.2f s at %d Hz (voice %s)\n", output, (double)sink.n / v->sample_rate,
                    v->sample_rate, v->name);
            rc = 0;
        }
        free(text);
        free(sink.pcm);
    }
    at_app_free(app);
done:
    at_config_free(o, no);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(cmd, "models") == 0) return at_models_main(argc - 1, argv + 1);
    if (strcmp(cmd, "whisper-check") == 0) return at_whisper_check_main(argc - 1, argv + 1);
    if (strcmp(cmd, "mt-check") == 0) return at_mt_check_main(argc - 1, argv + 1);
    if (strcmp(cmd, "tts-check") == 0) return at_tts_check_main(argc - 1, argv + 1);
    if (strcmp(cmd, "whisper-convert") == 0) return at_whisper_convert_main(argc - 1, argv + 1);
    if (strcmp(cmd, "whisper-random-model") == 0) return at_whisper_random_model_main(argc - 1, argv + 1);
    if (strcmp(cmd, "nmt-random-model") == 0) return at_nmt_random_model_main(argc - 1, argv + 1);
    if (strcmp(cmd, "vits-random-model") == 0) return at_vits_random_model_main(argc - 1, argv + 1);
    expand_short(argc, argv);
    if (strcmp(cmd, "serve") == 0)
        return at_services_main("audio-translator serve",
                                AT_APP_ASR | AT_APP_MT | AT_APP_TTS | AT_APP_PIPELINE, &at_app_local_loaders,
                                argc, argv, 2);
    if (strcmp(cmd, "transcribe") == 0) return cmd_transcribe(argc, argv);
    if (strcmp(cmd, "translate") == 0) return cmd_translate(argc, argv);
    if (strcmp(cmd, "speak") == 0) return cmd_speak(argc, argv);
    if (strcmp(cmd, "translate-speech") == 0) return at_cli_translate_speech(argc, argv);
    fprintf(stderr, "audio-translator: unknown command '%s'\n\n", cmd);
    usage(stderr);
    return 2;
}
