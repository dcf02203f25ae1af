/* tts_check.c - `audio-translator tts-check`: runs a VITS voice (Hugging
 * Face VitsModel folder) on given token ids and writes the waveform as a
 * float32 .npy, so it can be compared with what transformers computes. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compute/pool.h"
#include "engines/tts/vits/model.h"
#include "nn/npy.h"
#include "tools/tools.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: audio-translator tts-check --model DIR --input-ids LIST --out FILE.npy [options]\n"
               "  --model DIR                 Hugging Face VitsModel folder (config.json,\n"
               "                              model.safetensors or pytorch_model.bin)\n"
               "  --input-ids LIST            comma-separated token ids (as the tokenizer gives them)\n"
               "  --out FILE.npy              the waveform, float32, 1-D\n"
               "  --seed N                    noise seed (default 0; our generator, not torch's)\n"
               "  --speaker-id N              speaker of a multi-speaker voice (default 0)\n"
               "  --noise-scale X             default: the config's noise_scale\n"
               "  --noise-scale-duration X    default: the config's noise_scale_duration\n"
               "  --speaking-rate X           default: the config's speaking_rate\n"
               "  --threads N                 worker threads (default: all CPUs)\n"
               "Prints JSON: length (samples), sample_rate, durations (frames per token).\n");
}

static int parse_float(const char *s, float *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v)) return -1;
    *out = (float)v;
    return 0;
}

static int parse_u64(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    if (*s == '-') return -1;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end) return -1;
    *out = (uint64_t)v;
    return 0;
}

int at_tts_check_main(int argc, char **argv)
{
    static const struct option opts[] = {{"model", required_argument, 0, 'm'},
                                         {"input-ids", required_argument, 0, 'i'},
                                         {"out", required_argument, 0, 'o'},
                                         {"seed", required_argument, 0, 's'},
                                         {"speaker-id", required_argument, 0, 'k'},
                                         {"noise-scale", required_argument, 0, 'n'},
                                         {"noise-scale-duration", required_argument, 0, 'd'},
                                         {"speaking-rate", required_argument, 0, 'r'},
                                         {"threads", required_argument, 0, 't'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *dir = NULL, *out = NULL;
    int *ids = malloc(AT_VITS_MAX_TOKENS * sizeof *ids);
    int n_ids = 0, threads = 0, speaker = 0, c, li = 0;
    int has_noise = 0, has_noise_dur = 0, has_rate = 0;
    float noise = 0, noise_dur = 0, rate = 0;
    uint64_t seed = 0;
    if (!ids) {
        fprintf(stderr, "tts-check: out of memory\n");
        return 1;
    }
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, &li)) != -1) {
        int bad = 0;
        switch (c) {
        case 'm': dir = optarg; break;
        case 'o': out = optarg; break;
        case 'i': bad = at_tools_parse_ids(optarg, ids, AT_VITS_MAX_TOKENS, &n_ids); break;
        case 's': bad = parse_u64(optarg, &seed); break;
        case 'k': bad = at_tools_parse_int(optarg, -1, 1 << 20, &speaker); break;
        case 'n':
            bad = parse_float(optarg, &noise);
            has_noise = 1;
            break;
        case 'd':
            bad = parse_float(optarg, &noise_dur);
            has_noise_dur = 1;
            break;
        case 'r':
            bad = parse_float(optarg, &rate);
            has_rate = 1;
            break;
        case 't': bad = at_tools_parse_int(optarg, 0, 256, &threads); break;
        case 'h':
            usage(stdout);
            free(ids);
            return 0;
        default:
            usage(stderr);
            free(ids);
            return 2;
        }
        if (bad) {
            fprintf(stderr, "tts-check: bad value '%s' for --%s\n", optarg, opts[li].name);
            free(ids);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "tts-check: unexpected argument '%s'\n", argv[optind]);
        free(ids);
        return 2;
    }
    if (!dir || !n_ids || !out) {
        fprintf(stderr, "tts-check: --model, --input-ids and --out are required\n");
        usage(stderr);
        free(ids);
        return 2;
    }

    at_err err = {0};
    int ret = 1, *dur = NULL;
    float *wave = NULL;
    size_t n_wave = 0;
    at_compute *pool = NULL;
    at_vits_model *m = at_vits_model_load(dir, &err);
    if (!m) goto fail;
    at_vits_params p;
    at_vits_params_default(m, &p);
    p.seed = seed;
    p.speaker_id = speaker;
    if (has_noise) p.noise_scale = noise;
    if (has_noise_dur) p.noise_scale_duration = noise_dur;
    if (has_rate) p.speaking_rate = rate;
    if (!(dur = malloc((size_t)n_ids * sizeof *dur))) {
        at_err_set(&err, AT_E_NOMEM, "out of memory");
        goto fail;
    }
    if (!(pool = at_compute_new(threads, &err)) ||
        at_vits_synthesize(m, pool, ids, n_ids, &p, &wave, &n_wave, dur, &err))
        goto fail;
    size_t shape[1] = {n_wave};
    if (at_npy_write(out, wave, shape, 1, &err)) goto fail;
    cJSON *j = cJSON_CreateObject(), *a = cJSON_CreateArray();
    cJSON_AddNumberToObject(j, "length", (double)n_wave);
    cJSON_AddNumberToObject(j, "sample_rate", at_vits_model_hparams(m)->sampling_rate);
    for (int i = 0; i < n_ids; i++) cJSON_AddItemToArray(a, cJSON_CreateNumber(dur[i]));
    cJSON_AddItemToObject(j, "durations", a);
    at_tools_print_json(j);
    ret = 0;
    goto out;
fail:
    fprintf(stderr, "tts-check: %s\n", err.msg);
    ret = err.code == AT_E_INVALID ? 2 : 1;
out:
    at_compute_free(pool);
    at_vits_model_free(m);
    free(wave);
    free(dur);
    free(ids);
    return ret;
}
