/* check.c - `audio-translator whisper-check`: runs the model core on one
 * audio file with raw argmax decoding and dumps the intermediate tensors,
 * so they can be compared with a reference implementation. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/audio.h"
#include "engines/asr/whisper/model.h"
#include "nn/npy.h"
#include "engines/asr/whisper/whisper.h"
#include "tools/tools.h"

#define MAX_AUDIO_SAMPLES ((size_t)AT_WHISPER_SAMPLE_RATE * 3600) /* 1 h */
#define MAX_PREFIX        64

static void usage(FILE *f)
{
    fprintf(f, "usage: audio-translator whisper-check --model PATH --audio FILE [options]\n"
               "  --model PATH      whisper.cpp ggml .bin file or Hugging Face folder\n"
               "  --audio FILE      16 kHz WAV (any libsndfile format) or .npy of float32 samples\n"
               "  --prefix LIST     comma-separated start tokens (default: sot)\n"
               "  --steps N         argmax steps to decode (default 20)\n"
               "  --dump-dir DIR    write mel.npy, encoder_out.npy, logits.npy there\n"
               "  --audio-ctx N     encoder positions (default: all)\n"
               "  --threads N       worker threads (default: all CPUs)\n"
               "Decodes by raw argmax (no suppression), prints JSON with the tokens and\n"
               "the top-1 minus top-2 logit margin of every step.\n");
}

static int ends_with(const char *s, const char *suf)
{
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

static int read_audio(const char *path, float **pcm, size_t *n, at_err *err)
{
    *pcm = NULL;
    *n = 0;
    if (ends_with(path, ".npy")) {
        at_npy a;
        int rc = at_npy_read(path, &a, MAX_AUDIO_SAMPLES * 4, err);
        if (rc) return rc;
        *pcm = a.data;
        *n = at_npy_count(&a);
        return 0;
    }
    /* anything core/audio decodes, at any rate it resamples */
    at_audio a = {0};
    int rc = at_audio_decode_file(path, (double)MAX_AUDIO_SAMPLES / AT_WHISPER_SAMPLE_RATE, &a, err);
    if (rc == 0) rc = at_audio_resample(&a, AT_WHISPER_SAMPLE_RATE, err);
    if (rc) {
        at_audio_free(&a);
        return rc;
    }
    *pcm = a.samples;
    *n = a.n;
    return 0;
}

void at_tools_print_json(cJSON *j)
{
    char *txt = cJSON_Print(j);
    if (txt) printf("%s\n", txt);
    free(txt);
    cJSON_Delete(j);
}

int at_tools_parse_int(const char *s, int lo, int hi, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) return -1;
    *out = (int)v;
    return 0;
}

int at_tools_parse_ids(const char *s, int *toks, int cap, int *n)
{
    *n = 0;
    while (*s) {
        char *end;
        errno = 0;
        long v = strtol(s, &end, 10);
        if (errno || end == s || v < 0 || v > 1000000 || *n >= cap) return -1;
        toks[(*n)++] = (int)v;
        s = end;
        if (*s == ',')
            s++;
        else if (*s)
            return -1;
    }
    return *n > 0 ? 0 : -1;
}

static void top2(const float *x, int n, int *best, float *margin)
{
    int b = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    float second = -INFINITY;
    for (int i = 0; i < n; i++)
        if (i != b && x[i] > second) second = x[i];
    *best = b;
    *margin = x[b] - second;
}

int at_whisper_check_main(int argc, char **argv)
{
    static const struct option opts[] = {{"model", required_argument, 0, 'm'},
                                         {"audio", required_argument, 0, 'a'},
                                         {"prefix", required_argument, 0, 'p'},
                                         {"steps", required_argument, 0, 's'},
                                         {"dump-dir", required_argument, 0, 'd'},
                                         {"threads", required_argument, 0, 't'},
                                         {"audio-ctx", required_argument, 0, 'c'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *model_path = NULL, *audio = NULL, *prefix_s = NULL, *dump = NULL;
    int steps = 20, threads = 0, audio_ctx = 0, prefix[MAX_PREFIX], n_prefix = 0;
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'm': model_path = optarg; break;
        case 'a': audio = optarg; break;
        case 'p': prefix_s = optarg; break;
        case 'd': dump = optarg; break;
        case 's':
            if (at_tools_parse_int(optarg, 0, 4096, &steps)) {
                fprintf(stderr, "whisper-check: bad --steps '%s'\n", optarg);
                return 2;
            }
            break;
        case 't':
            if (at_tools_parse_int(optarg, 0, 256, &threads)) {
                fprintf(stderr, "whisper-check: bad --threads '%s'\n", optarg);
                return 2;
            }
            break;
        case 'c':
            if (at_tools_parse_int(optarg, 0, AT_WHISPER_N_FRAMES / 2, &audio_ctx)) {
                fprintf(stderr, "whisper-check: bad --audio-ctx '%s'\n", optarg);
                return 2;
            }
            break;
        case 'h': usage(stdout); return 0;
        default:
            fprintf(stderr, "whisper-check: unknown or incomplete option '%s'\n", argv[optind - 1]);
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "whisper-check: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    if (!model_path || !audio) {
        fprintf(stderr, "whisper-check: --model and --audio are required\n");
        usage(stderr);
        return 2;
    }
    if (prefix_s && at_tools_parse_ids(prefix_s, prefix, MAX_PREFIX, &n_prefix)) {
        fprintf(stderr, "whisper-check: bad --prefix '%s' (comma-separated token ids, at most %d)\n",
                prefix_s, MAX_PREFIX);
        return 2;
    }

    at_err err = {0};
    int ret = 1;
    float *pcm = NULL, *mel = NULL, *logits = NULL, *all = NULL, *margins = NULL, *enc = NULL;
    int *seq = NULL;
    at_whisper_state *st = NULL;
    at_whisper_kv *kv = NULL;
    at_whisper_model *m = at_whisper_model_load(model_path, &err);
    if (!m) goto fail;
    const at_whisper_hparams *hp = at_whisper_model_hparams(m);
    if (!n_prefix) prefix[n_prefix++] = at_whisper_model_special(m)->sot;
    for (int i = 0; i < n_prefix; i++)
        if (prefix[i] >= hp->n_vocab) {
            fprintf(stderr, "whisper-check: prefix token %d >= n_vocab %d\n", prefix[i], hp->n_vocab);
            ret = 2;
            goto out;
        }
    if (n_prefix + steps > hp->n_text_ctx) {
        fprintf(stderr, "whisper-check: prefix + steps exceed the text context (%d)\n", hp->n_text_ctx);
        ret = 2;
        goto out;
    }
    size_t n_pcm;
    if (read_audio(audio, &pcm, &n_pcm, &err)) goto fail;
    int V = hp->n_vocab, total = n_prefix + steps;
    mel = malloc(sizeof(float) * (size_t)hp->n_mels * AT_WHISPER_N_FRAMES);
    logits = malloc(sizeof(float) * (size_t)V);
    all = malloc(sizeof(float) * (size_t)V * (size_t)total);
    seq = malloc(sizeof(int) * (size_t)total);
    margins = malloc(sizeof(float) * (size_t)(steps + 1));
    if (!mel || !logits || !all || !seq || !margins) {
        at_err_set(&err, AT_E_NOMEM, "out of memory");
        goto fail;
    }
    if (at_whisper_mel(m, pcm, n_pcm, mel, &err)) goto fail;
    if (!(st = at_whisper_state_new(m, threads, &err))) goto fail;
    if (at_whisper_encode(st, mel, audio_ctx, &err)) goto fail;
    if (!(kv = at_whisper_kv_new(m, &err))) goto fail;

    /* argmax loop with the kv cache, each step fed back */
    memcpy(seq, prefix, sizeof(int) * (size_t)n_prefix);
    int n_seq = n_prefix;
    if (steps > 0 && at_whisper_decode(st, kv, seq, n_prefix, 0, logits, &err)) goto fail;
    for (int i = 0; i < steps; i++) {
        int best;
        top2(logits, V, &best, &margins[i]);
        seq[n_seq++] = best;
        if (i + 1 < steps && at_whisper_decode(st, kv, &seq[n_seq - 1], 1, 0, logits, &err)) goto fail;
    }
    /* teacher-forced logits of the whole sequence, one batch, fresh cache */
    at_whisper_kv_truncate(kv, 0);
    if (at_whisper_decode(st, kv, seq, n_seq, 1, all, &err)) goto fail;

    if (dump) {
        char path[4096];
        if (mkdir(dump, 0777) != 0 && errno != EEXIST) {
            at_err_set(&err, AT_E_IO, "cannot create %s: %s", dump, strerror(errno));
            goto fail;
        }
        int n_ctx = audio_ctx > 0 ? audio_ctx : hp->n_audio_ctx;
        enc = malloc((size_t)n_ctx * hp->n_audio_state * sizeof(float));
        if (!enc) {
            at_err_set(&err, AT_E_NOMEM, "out of memory");
            goto fail;
        }
        if (at_whisper_encoder_output(st, enc, (size_t)n_ctx * hp->n_audio_state, &n_ctx, &err)) goto fail;
        size_t s_mel[2] = {(size_t)hp->n_mels, AT_WHISPER_N_FRAMES};
        size_t s_enc[2] = {(size_t)n_ctx, (size_t)hp->n_audio_state};
        size_t s_log[2] = {(size_t)n_seq, (size_t)V};
        snprintf(path, sizeof path, "%s/mel.npy", dump);
        if (at_npy_write(path, mel, s_mel, 2, &err)) goto fail;
        snprintf(path, sizeof path, "%s/encoder_out.npy", dump);
        if (at_npy_write(path, enc, s_enc, 2, &err)) goto fail;
        snprintf(path, sizeof path, "%s/logits.npy", dump);
        if (at_npy_write(path, all, s_log, 2, &err)) goto fail;
    }

    cJSON *j = cJSON_CreateObject();
    cJSON *jp = cJSON_AddArrayToObject(j, "prefix");
    cJSON *jt = cJSON_AddArrayToObject(j, "tokens");
    cJSON *jg = cJSON_AddArrayToObject(j, "generated");
    cJSON *jm = cJSON_AddArrayToObject(j, "margins");
    for (int i = 0; i < n_prefix; i++) cJSON_AddItemToArray(jp, cJSON_CreateNumber(seq[i]));
    for (int i = 0; i < n_seq; i++) cJSON_AddItemToArray(jt, cJSON_CreateNumber(seq[i]));
    for (int i = n_prefix; i < n_seq; i++) cJSON_AddItemToArray(jg, cJSON_CreateNumber(seq[i]));
    for (int i = 0; i < steps; i++) cJSON_AddItemToArray(jm, cJSON_CreateNumber(margins[i]));
    at_tools_print_json(j);
    ret = 0;
    goto out;
fail:
    fprintf(stderr, "whisper-check: %s\n", err.msg);
    ret = 1;
out:
    at_whisper_kv_free(kv);
    at_whisper_state_free(st);
    at_whisper_model_free(m);
    free(pcm);
    free(mel);
    free(enc);
    free(logits);
    free(all);
    free(seq);
    free(margins);
    return ret;
}
