/* mt_check.c - `audio-translator mt-check`: runs a translation model
 * (MarianMT, M2M100/NLLB) on given source ids, by raw argmax and by
 * generate(), and dumps the encoder output and the teacher-forced logits,
 * so they can be compared with what transformers computes. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "compute/pool.h"
#include "engines/mt/nmt/generate.h"
#include "nn/npy.h"
#include "tools/tools.h"

#define MAX_IDS 1024
#define MAX_NEW 20 /* generate()'s max_new_tokens */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: audio-translator mt-check --model DIR --source-ids LIST [options]\n"
            "  --model DIR       Hugging Face folder (config.json, model.safetensors or\n"
            "                    pytorch_model.bin, generation_config.json)\n"
            "  --source-ids LIST comma-separated source token ids (eos included)\n"
            "  --prefix LIST     decoder start, then for NLLB/M2M100 the target language\n"
            "                    token (default: the model's decoder start)\n"
            "  --steps N         argmax steps after the prefix (default 16)\n"
            "  --num-beams B     beams for generate() (default 1)\n"
            "  --dump-dir DIR    write encoder_out.npy and logits.npy there\n"
            "  --threads N       worker threads (default: all CPUs)\n"
            "Prints JSON: greedy_tokens (the prefix, then N raw argmax tokens fed back)\n"
            "and generate (the folder's generation config with num_beams B,\n"
            "max_new_tokens %d, early stopping, length penalty 1.0 and the prefix's\n"
            "language token forced first).\n",
            MAX_NEW);
}

static cJSON *id_array(const int *t, int n)
{
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; i < n; i++) cJSON_AddItemToArray(a, cJSON_CreateNumber(t[i]));
    return a;
}

static int argmax(const float *x, int n)
{
    int b = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return b;
}

static int dump_npy(const char *dir, const char *name, const float *x, size_t rows, size_t cols, at_err *err)
{
    char path[4096];
    size_t shape[2] = {rows, cols};
    if (snprintf(path, sizeof path, "%s/%s", dir, name) >= (int)sizeof path)
        return at_err_set(err, AT_E_INVALID, "dump path too long");
    return at_npy_write(path, x, shape, 2, err);
}

int at_mt_check_main(int argc, char **argv)
{
    static const struct option opts[] = {{"model", required_argument, 0, 'm'},
                                         {"source-ids", required_argument, 0, 'i'},
                                         {"prefix", required_argument, 0, 'p'},
                                         {"steps", required_argument, 0, 's'},
                                         {"num-beams", required_argument, 0, 'b'},
                                         {"dump-dir", required_argument, 0, 'd'},
                                         {"threads", required_argument, 0, 't'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *dir = NULL, *dump = NULL;
    static int src[MAX_IDS], prefix[MAX_IDS];
    int n_src = 0, n_prefix = 0, steps = 16, beams = 1, threads = 0, c, li = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, &li)) != -1) {
        int bad = 0;
        switch (c) {
        case 'm': dir = optarg; break;
        case 'd': dump = optarg; break;
        case 'i': bad = at_tools_parse_ids(optarg, src, MAX_IDS, &n_src); break;
        case 'p': bad = at_tools_parse_ids(optarg, prefix, 2, &n_prefix); break;
        case 's': bad = at_tools_parse_int(optarg, 0, 4096, &steps); break;
        case 'b': bad = at_tools_parse_int(optarg, 1, AT_NMT_MAX_BEAMS, &beams); break;
        case 't': bad = at_tools_parse_int(optarg, 0, 256, &threads); break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
        if (bad) {
            fprintf(stderr, "mt-check: bad value '%s' for --%s\n", optarg, opts[li].name);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "mt-check: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    if (!dir || !n_src) {
        fprintf(stderr, "mt-check: --model and --source-ids are required\n");
        usage(stderr);
        return 2;
    }

    at_err err = {0};
    int ret = 1, *seq = NULL;
    float *logits = NULL, *enc = NULL;
    at_compute *pool = NULL;
    at_nmt_state *s = NULL;
    at_nmt_memory *mem = NULL;
    at_nmt_kv *kv = NULL;
    at_nmt_job job = {0};
    at_nmt_gen g;
    at_nmt_model *m = at_nmt_model_load(dir, &err);
    if (!m || at_nmt_gen_load(dir, m, &g, &err)) goto fail;
    const at_nmt_hparams *hp = at_nmt_model_hparams(m);
    if (!n_prefix) prefix[n_prefix++] = g.decoder_start_id;
    for (int i = 0; i < n_src; i++)
        if (src[i] >= hp->vocab) {
            at_err_set(&err, AT_E_INVALID, "source id %d outside the vocabulary of %d", src[i], hp->vocab);
            goto usage_fail;
        }
    for (int i = 0; i < n_prefix; i++)
        if (prefix[i] >= hp->dec_vocab) {
            at_err_set(&err, AT_E_INVALID, "prefix id %d outside the vocabulary of %d", prefix[i],
                       hp->dec_vocab);
            goto usage_fail;
        }
    int total = n_prefix + steps, V = hp->dec_vocab;
    if (total > hp->max_pos || n_src > hp->max_pos || 1 + MAX_NEW > hp->max_pos) {
        at_err_set(&err, AT_E_INVALID, "more tokens than the model's %d positions", hp->max_pos);
        goto usage_fail;
    }
    if (!(pool = at_compute_new(threads, &err)) || !(s = at_nmt_state_new(m, pool, &err)) ||
        !(mem = at_nmt_memory_new(m, n_src, &err)) || !(kv = at_nmt_kv_new(m, &err)))
        goto fail;
    seq = malloc((size_t)total * sizeof *seq);
    logits = malloc((size_t)total * V * sizeof *logits);
    enc = malloc((size_t)n_src * hp->d_model * sizeof *enc);
    if (!seq || !logits || !enc) {
        at_err_set(&err, AT_E_NOMEM, "out of memory");
        goto fail;
    }
    const int *srcp = src;
    if (at_nmt_encode(s, &srcp, &n_src, 1, &mem, &err)) goto fail;

    /* raw argmax, each token fed back through the cache */
    memcpy(seq, prefix, (size_t)n_prefix * sizeof *seq);
    int n_seq = n_prefix;
    for (int i = 0; i < steps; i++) {
        int first = i == 0;
        at_nmt_seq q = {kv, first ? seq : &seq[n_seq - 1], first ? n_seq : 1, mem, logits, 0};
        if (at_nmt_decode(s, &q, 1, &err)) goto fail;
        seq[n_seq++] = argmax(logits, V);
    }
    /* teacher-forced logits at every position, a fresh cache */
    at_nmt_kv_truncate(kv, 0);
    at_nmt_seq all = {kv, seq, n_seq, mem, logits, 1};
    if (at_nmt_decode(s, &all, 1, &err)) goto fail;

    /* generate() with transformers' arguments of the check */
    g.num_beams = beams;
    g.max_length = 1 + MAX_NEW;
    g.early_stopping = AT_NMT_STOP_EARLY;
    g.length_penalty = 1.0f;
    g.decoder_start_id = prefix[0];
    job.mem = mem;
    job.forced_bos_id = n_prefix > 1 ? prefix[1] : -1;
    if (at_nmt_generate(s, &g, &job, 1, &err)) goto fail;

    if (dump) {
        int len;
        if (mkdir(dump, 0777) != 0 && errno != EEXIST) {
            at_err_set(&err, AT_E_IO, "cannot create %s: %s", dump, strerror(errno));
            goto fail;
        }
        if (at_nmt_memory_output(s, mem, enc, (size_t)n_src * hp->d_model, &len, &err) ||
            dump_npy(dump, "encoder_out.npy", enc, (size_t)len, (size_t)hp->d_model, &err) ||
            dump_npy(dump, "logits.npy", logits, (size_t)n_seq, (size_t)V, &err))
            goto fail;
    }
    cJSON *j = cJSON_CreateObject();
    cJSON_AddItemToObject(j, "greedy_tokens", id_array(seq, n_seq));
    cJSON_AddItemToObject(j, "generate", id_array(job.tokens, job.n_tokens));
    cJSON_AddNumberToObject(j, "generate_score", job.score);
    at_tools_print_json(j);
    ret = 0;
    goto out;
usage_fail:
    fprintf(stderr, "mt-check: %s\n", err.msg);
    ret = 2;
    goto out;
fail:
    fprintf(stderr, "mt-check: %s\n", err.msg);
    ret = 1;
out:
    free(job.tokens);
    at_nmt_kv_free(kv);
    at_nmt_memory_free(mem);
    at_nmt_state_free(s);
    at_compute_free(pool);
    at_nmt_model_free(m);
    free(seq);
    free(logits);
    free(enc);
    return ret;
}
