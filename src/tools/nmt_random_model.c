/* nmt_random_model.c - Hugging Face folders of the published translation
 * model shapes (OPUS-MT base, NLLB-200 600M, M2M100 418M) filled with
 * random weights, for benchmarks and tests (no download needed).
 *
 * The weights follow transformers' initialisation (normal, std init_std
 * 0.02; biases 0; layer norms 1 and 0), so activations stay in a trained
 * model's range; the values come from a fixed seed.  Tied embeddings are
 * written once (model.shared.weight), as the published files store them,
 * and Marian's sinusoidal position table is left out: the loader computes
 * the same table. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "compute/dtype.h"
#include "tools/tools.h"

typedef struct {
    const char *name;
    int hidden; /* tests only: not in the usage text */
    int marian; /* else M2M100 */
    int vocab, d, enc_layers, dec_layers, heads, ffn, max_pos;
    const char *act;
    int bos, pad, eos, dec_start;
    const char *cfg_gen; /* generation keys the published config.json also holds */
    const char *gen;     /* generation_config.json */
} preset_t;

static const preset_t PRESETS[] = {
    {"opus-mt-base", 0, 1, 58101, 512, 6, 6, 8, 2048, 512, "swish", 0, 58100, 0, 58100,
     "\"bad_words_ids\": [[58100]], \"forced_eos_token_id\": 0, \"max_length\": 512, \"num_beams\": 4",
     "{\"bad_words_ids\": [[58100]], \"bos_token_id\": 0, \"decoder_start_token_id\": 58100, "
     "\"eos_token_id\": 0, \"forced_eos_token_id\": 0, \"max_length\": 512, \"num_beams\": 4, "
     "\"pad_token_id\": 58100}"},
    {"nllb-600m", 0, 0, 256206, 1024, 12, 12, 16, 4096, 1024, "relu", 0, 1, 2, 2, "\"max_length\": 200",
     "{\"bos_token_id\": 0, \"decoder_start_token_id\": 2, \"eos_token_id\": 2, \"max_length\": 200, "
     "\"pad_token_id\": 1}"},
    {"m2m100-418m", 0, 0, 128112, 1024, 12, 12, 16, 4096, 1024, "relu", 0, 1, 2, 2,
     "\"early_stopping\": true, \"max_length\": 200, \"num_beams\": 5",
     "{\"bos_token_id\": 0, \"decoder_start_token_id\": 2, \"early_stopping\": true, \"eos_token_id\": 2, "
     "\"max_length\": 200, \"num_beams\": 5, \"pad_token_id\": 1}"},
    /* the tests' models: a few kilobytes, loaded and run in milliseconds */
    {"tiny", 1, 1, 100, 32, 1, 1, 4, 64, 64, "swish", 0, 99, 0, 99,
     "\"bad_words_ids\": [[99]], \"forced_eos_token_id\": 0, \"max_length\": 64, \"num_beams\": 4",
     "{\"bad_words_ids\": [[99]], \"bos_token_id\": 0, \"decoder_start_token_id\": 99, \"eos_token_id\": 0, "
     "\"forced_eos_token_id\": 0, \"max_length\": 64, \"num_beams\": 4, \"pad_token_id\": 99}"},
    {"tiny-m2m100", 1, 0, 100, 32, 1, 1, 4, 64, 64, "relu", 0, 1, 2, 2, "\"max_length\": 64",
     "{\"bos_token_id\": 0, \"decoder_start_token_id\": 2, \"eos_token_id\": 2, \"max_length\": 64, "
     "\"pad_token_id\": 1}"},
};

#define INIT_STD 0.02f

typedef enum { INIT_NORMAL, INIT_ONE, INIT_ZERO } init_kind;

typedef struct {
    char name[96];
    int nd;
    int64_t shape[2];
    init_kind init;
} tspec;

typedef struct {
    tspec *t;
    int n, cap;
} tlist;

static int add(tlist *l, const char *name, int nd, int64_t rows, int64_t cols, init_kind init, at_err *err)
{
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 256;
        tspec *t = realloc(l->t, (size_t)cap * sizeof *t);
        if (!t) return at_err_set(err, AT_E_NOMEM, "out of memory");
        l->t = t;
        l->cap = cap;
    }
    tspec *t = &l->t[l->n];
    if (snprintf(t->name, sizeof t->name, "%s", name) >= (int)sizeof t->name)
        return at_err_set(err, AT_E_INVALID, "tensor name %s too long", name);
    t->nd = nd;
    t->shape[0] = rows;
    t->shape[1] = nd == 2 ? cols : 1;
    t->init = init;
    l->n++;
    return 0;
}

/* pfx.weight and pfx.bias: a linear layer [out x in] or a norm [d]. */
static int add_pair(tlist *l, const char *pfx, int64_t out, int64_t in, int norm, at_err *err)
{
    char n[128];
    if (snprintf(n, sizeof n, "%s.weight", pfx) >= (int)sizeof n)
        return at_err_set(err, AT_E_INVALID, "tensor name %s too long", pfx);
    int rc = norm ? add(l, n, 1, out, 0, INIT_ONE, err) : add(l, n, 2, out, in, INIT_NORMAL, err);
    if (rc) return rc;
    snprintf(n, sizeof n, "%s.bias", pfx); /* fits: shorter than .weight */
    return add(l, n, 1, out, 0, INIT_ZERO, err);
}

static int add_attn(tlist *l, const char *pfx, int64_t d, at_err *err)
{
    static const char *const proj[] = {"q_proj", "k_proj", "v_proj", "out_proj"};
    char n[112];
    for (int i = 0; i < 4; i++) {
        if (snprintf(n, sizeof n, "%s.%s", pfx, proj[i]) >= (int)sizeof n)
            return at_err_set(err, AT_E_INVALID, "tensor name %s too long", pfx);
        int rc = add_pair(l, n, d, d, 0, err);
        if (rc) return rc;
    }
    return 0;
}

/* The tensors model.c reads, in the order they are written. */
static int list_tensors(const preset_t *p, tlist *l, at_err *err)
{
    int64_t d = p->d;
    char n[96];
    int rc = add(l, "model.shared.weight", 2, p->vocab, d, INIT_NORMAL, err);
    for (int side = 0; side < 2 && !rc; side++) {
        const char *stack = side ? "decoder" : "encoder";
        int layers = side ? p->dec_layers : p->enc_layers;
        for (int i = 0; i < layers && !rc; i++) {
            snprintf(n, sizeof n, "model.%s.layers.%d.self_attn", stack, i);
            rc = add_attn(l, n, d, err);
            snprintf(n, sizeof n, "model.%s.layers.%d.self_attn_layer_norm", stack, i);
            if (!rc) rc = add_pair(l, n, d, 0, 1, err);
            if (side && !rc) {
                snprintf(n, sizeof n, "model.decoder.layers.%d.encoder_attn", i);
                rc = add_attn(l, n, d, err);
                snprintf(n, sizeof n, "model.decoder.layers.%d.encoder_attn_layer_norm", i);
                if (!rc) rc = add_pair(l, n, d, 0, 1, err);
            }
            snprintf(n, sizeof n, "model.%s.layers.%d.fc1", stack, i);
            if (!rc) rc = add_pair(l, n, p->ffn, d, 0, err);
            snprintf(n, sizeof n, "model.%s.layers.%d.fc2", stack, i);
            if (!rc) rc = add_pair(l, n, d, p->ffn, 0, err);
            snprintf(n, sizeof n, "model.%s.layers.%d.final_layer_norm", stack, i);
            if (!rc) rc = add_pair(l, n, d, 0, 1, err);
        }
        if (!p->marian && !rc) {
            snprintf(n, sizeof n, "model.%s.layer_norm", stack);
            rc = add_pair(l, n, d, 0, 1, err);
        }
    }
    /* last: its length (vocab x 2 bytes) would misalign what follows */
    if (p->marian && !rc) rc = add(l, "final_logits_bias", 2, 1, p->vocab, INIT_ZERO, err);
    return rc;
}

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t hash_name(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

/* One row: a sum of four uniforms per value (close enough to a normal,
 * and a quarter of the draws of Box-Muller's logarithms). */
static void fill_row(const tspec *t, uint64_t seed, int64_t row, float *x, int64_t n)
{
    if (t->init != INIT_NORMAL) {
        for (int64_t i = 0; i < n; i++) x[i] = t->init == INIT_ONE ? 1.0f : 0.0f;
        return;
    }
    uint64_t s = seed ^ hash_name(t->name) ^ ((uint64_t)row * 0x2545f4914f6cdd1dull);
    const float k = INIT_STD / 37837.2f; /* std of a sum of four 16-bit uniforms */
    for (int64_t i = 0; i < n; i++) {
        uint64_t r = splitmix(&s);
        int32_t sum = (int32_t)(r & 0xffff) + (int32_t)((r >> 16) & 0xffff) + (int32_t)((r >> 32) & 0xffff) +
                      (int32_t)(r >> 48);
        x[i] = (float)(sum - 131070) * k;
    }
}

/* The safetensors header: names, types, shapes and offsets, padded with
 * spaces so the data starts on a 64-byte boundary. */
static char *header(const tlist *l, int f16, uint64_t *hlen, at_err *err)
{
    size_t cap = 256 + (size_t)l->n * 200, len = 0;
    char *h = malloc(cap);
    if (!h) {
        at_err_set(err, AT_E_NOMEM, "out of memory");
        return NULL;
    }
    uint64_t off = 0, esz = f16 ? 2 : 4;
    len += (size_t)snprintf(h, cap, "{\"__metadata__\":{\"format\":\"pt\"}");
    for (int i = 0; i < l->n; i++) {
        const tspec *t = &l->t[i];
        uint64_t bytes = (uint64_t)t->shape[0] * (uint64_t)t->shape[1] * esz;
        char shape[64];
        if (t->nd == 2)
            snprintf(shape, sizeof shape, "%lld,%lld", (long long)t->shape[0], (long long)t->shape[1]);
        else
            snprintf(shape, sizeof shape, "%lld", (long long)t->shape[0]);
        len += (size_t)snprintf(
            h + len, cap - len, ",\"%s\":{\"dtype\":\"%s\",\"shape\":[%s],\"data_offsets\":[%llu,%llu]}",
            t->name, f16 ? "F16" : "F32", shape, (unsigned long long)off, (unsigned long long)(off + bytes));
        off += bytes;
    }
    h[len++] = '}';
    while ((8 + len) % 64) h[len++] = ' ';
    *hlen = len;
    return h;
}

static int write_text(const char *dir, const char *name, const char *text, at_err *err)
{
    char path[4200];
    if (snprintf(path, sizeof path, "%s/%s", dir, name) >= (int)sizeof path)
        return at_err_set(err, AT_E_INVALID, "output path too long");
    FILE *f = fopen(path, "wb");
    if (!f) return at_err_set(err, AT_E_IO, "cannot create %s: %s", path, strerror(errno));
    int bad = fputs(text, f) < 0;
    bad |= fclose(f) != 0;
    return bad ? at_err_set(err, AT_E_IO, "cannot write %s", path) : 0;
}

static int write_config(const preset_t *p, const char *dir, int f16, at_err *err)
{
    char cfg[4096], dvs[64] = "";
    if (p->marian) snprintf(dvs, sizeof dvs, "  \"decoder_vocab_size\": %d,\n", p->vocab);
    snprintf(cfg, sizeof cfg,
             "{\n"
             "  \"activation_dropout\": 0.0,\n"
             "  \"activation_function\": \"%s\",\n"
             "  \"architectures\": [\"%s\"],\n"
             "  \"attention_dropout\": 0.0,\n"
             "  \"bos_token_id\": %d,\n"
             "  \"d_model\": %d,\n"
             "  \"decoder_attention_heads\": %d,\n"
             "  \"decoder_ffn_dim\": %d,\n"
             "  \"decoder_layerdrop\": 0.0,\n"
             "  \"decoder_layers\": %d,\n"
             "  \"decoder_start_token_id\": %d,\n"
             "%s"
             "  \"dropout\": 0.1,\n"
             "  \"encoder_attention_heads\": %d,\n"
             "  \"encoder_ffn_dim\": %d,\n"
             "  \"encoder_layerdrop\": 0.0,\n"
             "  \"encoder_layers\": %d,\n"
             "  \"eos_token_id\": %d,\n"
             "  \"init_std\": 0.02,\n"
             "  \"is_encoder_decoder\": true,\n"
             "  \"max_position_embeddings\": %d,\n"
             "  \"model_type\": \"%s\",\n"
             "%s"
             "  \"num_hidden_layers\": %d,\n"
             "  \"pad_token_id\": %d,\n"
             "  \"scale_embedding\": true,\n"
             "  \"tie_word_embeddings\": true,\n"
             "  \"torch_dtype\": \"%s\",\n"
             "  \"use_cache\": true,\n"
             "  \"vocab_size\": %d,\n"
             "  %s\n"
             "}\n",
             p->act, p->marian ? "MarianMTModel" : "M2M100ForConditionalGeneration", p->bos, p->d, p->heads,
             p->ffn, p->dec_layers, p->dec_start, dvs, p->heads, p->ffn, p->enc_layers, p->eos, p->max_pos,
             p->marian ? "marian" : "m2m_100",
             p->marian
                 ? "  \"normalize_before\": false,\n  \"normalize_embedding\": false,\n"
                   "  \"share_encoder_decoder_embeddings\": true,\n  \"static_position_embeddings\": true,\n"
                 : "",
             p->enc_layers, p->pad, f16 ? "float16" : "float32", p->vocab, p->cfg_gen);
    int rc = write_text(dir, "config.json", cfg, err);
    if (!rc) {
        snprintf(cfg, sizeof cfg, "%s\n", p->gen);
        rc = write_text(dir, "generation_config.json", cfg, err);
    }
    return rc;
}

static int write_weights(const preset_t *p, const tlist *l, const char *dir, int f16, uint64_t seed,
                         at_err *err)
{
    char tmp[4200], path[4200];
    if (snprintf(path, sizeof path, "%s/model.safetensors", dir) >= (int)sizeof path ||
        snprintf(tmp, sizeof tmp, "%s/model.safetensors.part", dir) >= (int)sizeof tmp)
        return at_err_set(err, AT_E_INVALID, "output path too long");
    uint64_t hlen = 0;
    char *h = header(l, f16, &hlen, err);
    if (!h) return AT_E_NOMEM;
    int64_t wmax = p->vocab > p->ffn ? p->vocab : p->ffn;
    float *row = malloc((size_t)wmax * sizeof *row);
    uint16_t *half = malloc((size_t)wmax * sizeof *half);
    FILE *f = fopen(tmp, "wb");
    int rc = 0;
    if (!row || !half) {
        rc = at_err_set(err, AT_E_NOMEM, "out of memory");
        goto out;
    }
    if (!f) {
        rc = at_err_set(err, AT_E_IO, "cannot create %s: %s", tmp, strerror(errno));
        goto out;
    }
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)(hlen >> (8 * i));
    int bad = fwrite(len8, 1, 8, f) != 8 || fwrite(h, 1, hlen, f) != hlen;
    for (int i = 0; i < l->n && !bad; i++) {
        const tspec *t = &l->t[i];
        for (int64_t r = 0; r < t->shape[0] && !bad; r++) {
            int64_t n = t->shape[1];
            fill_row(t, seed, r, row, n);
            if (f16) {
                for (int64_t k = 0; k < n; k++) half[k] = at_f32_to_f16(row[k]);
                bad = fwrite(half, 2, (size_t)n, f) != (size_t)n;
            } else {
                bad = fwrite(row, 4, (size_t)n, f) != (size_t)n;
            }
        }
    }
    bad |= fclose(f) != 0;
    f = NULL;
    if (bad)
        rc = at_err_set(err, AT_E_IO, "cannot write %s", tmp);
    else if (rename(tmp, path) != 0) /* complete or absent, never half */
        rc = at_err_set(err, AT_E_IO, "cannot rename %s: %s", tmp, strerror(errno));
out:
    if (f) fclose(f);
    if (rc) remove(tmp);
    free(h);
    free(row);
    free(half);
    return rc;
}

/* mkdir -p: the folder and those above it. */
static int mkdir_p(const char *dir)
{
    char p[4096];
    if (snprintf(p, sizeof p, "%s", dir) >= (int)sizeof p) {
        errno = ENAMETOOLONG;
        return -1;
    }
    for (char *c = p + 1; *c; c++) {
        if (*c != '/') continue;
        *c = 0;
        if (mkdir(p, 0755) != 0 && errno != EEXIST) return -1;
        *c = '/';
    }
    return mkdir(p, 0755) != 0 && errno != EEXIST ? -1 : 0;
}

int at_nmt_random_model(const char *preset, const char *type, const char *out_dir, uint64_t seed,
                        int64_t *n_params, at_err *err)
{
    const preset_t *p = NULL;
    for (size_t i = 0; i < sizeof PRESETS / sizeof PRESETS[0]; i++)
        if (preset && !strcmp(preset, PRESETS[i].name)) p = &PRESETS[i];
    if (!p) return at_err_set(err, AT_E_INVALID, "unknown preset '%s'", preset ? preset : "");
    if (!type || (strcmp(type, "f16") && strcmp(type, "f32")))
        return at_err_set(err, AT_E_INVALID, "unknown type '%s' (f32 or f16)", type ? type : "");
    if (!out_dir || !*out_dir) return at_err_set(err, AT_E_INVALID, "no output folder");
    if (mkdir_p(out_dir)) return at_err_set(err, AT_E_IO, "cannot create %s: %s", out_dir, strerror(errno));
    int f16 = !strcmp(type, "f16");
    tlist l = {NULL, 0, 0};
    int rc = list_tensors(p, &l, err);
    if (!rc) rc = write_config(p, out_dir, f16, err);
    if (!rc) rc = write_weights(p, &l, out_dir, f16, seed, err);
    if (!rc && n_params) {
        *n_params = 0;
        for (int i = 0; i < l.n; i++) *n_params += l.t[i].shape[0] * l.t[i].shape[1];
    }
    free(l.t);
    return rc;
}

int at_nmt_random_model_main(int argc, char **argv)
{
    const char *preset, *type, *out;
    unsigned long long seed;
    int rc = at_tools_random_model_opts(
        argc, argv, "nmt-random-model",
        "usage: audio-translator nmt-random-model --preset P --out DIR [--type T] [--seed N]\n"
        "  P: opus-mt-base (MarianMT as Helsinki-NLP/opus-mt-en-es), nllb-600m\n"
        "     (facebook/nllb-200-distilled-600M), m2m100-418m (facebook/m2m100_418M)\n"
        "  T: f16 (default) f32\n"
        "Writes config.json, generation_config.json and model.safetensors (random\n"
        "weights of the published shape, no tokenizer) into DIR.\n",
        &preset, &type, &out, &seed);
    if (rc) return rc == 1 ? 0 : rc;
    at_err err = {0};
    int64_t n = 0;
    if (at_nmt_random_model(preset, type, out, seed, &n, &err)) {
        fprintf(stderr, "nmt-random-model: %s\n", err.msg);
        return err.code == AT_E_INVALID ? 2 : 1;
    }
    printf("%s: %s, %lld parameters (%s)\n", out, preset, (long long)n, type);
    return 0;
}
