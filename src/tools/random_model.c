/* random_model.c - ggml models of every official Whisper shape filled with
 * random weights, for benchmarks and tests (no download needed).  The
 * weights are scaled like a trained network's (unit-variance rows, unit
 * norms) so activations stay in a realistic range. */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engines/asr/whisper/model_internal.h"
#include "tools/tools.h"

typedef struct {
    const char *name;
    int n_vocab, d, heads, enc_layers, dec_layers, n_mels;
} preset_t;

static const preset_t PRESETS[] = {
    {"tiny", 51865, 384, 6, 4, 4, 80},          {"tiny.en", 51864, 384, 6, 4, 4, 80},
    {"base", 51865, 512, 8, 6, 6, 80},          {"base.en", 51864, 512, 8, 6, 6, 80},
    {"small", 51865, 768, 12, 12, 12, 80},      {"small.en", 51864, 768, 12, 12, 12, 80},
    {"medium", 51865, 1024, 16, 24, 24, 80},    {"medium.en", 51864, 1024, 16, 24, 24, 80},
    {"large-v3", 51866, 1280, 20, 32, 32, 128}, {"large-v3-turbo", 51866, 1280, 20, 32, 4, 128},
};

typedef struct {
    uint64_t seed;
    float scale, offset; /* value = offset + scale * uniform(-1, 1) */
} gen_t;

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static int gen_row(void *user, int64_t row, float *dst, int n)
{
    gen_t *g = user;
    uint64_t s = g->seed ^ ((uint64_t)row * 0x2545f4914f6cdd1dull);
    for (int i = 0; i < n; i++) {
        float u = (float)(splitmix(&s) >> 40) * (2.0f / 16777216.0f) - 1.0f;
        dst[i] = g->offset + g->scale * u;
    }
    return 0;
}

static uint64_t hash_name(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

typedef struct {
    at_ggml_writer *w;
    at_dtype target;
    uint64_t seed;
    at_err *err;
} ctx_t;

static int put(ctx_t *c, const char *name, int nd, int64_t a, int64_t b, int64_t k)
{
    int64_t shape[3] = {a, b, k};
    gen_t g = {c->seed ^ hash_name(name), 0.0f, 0.0f};
    size_t L = strlen(name);
    int is_ln = strstr(name, "_ln.") || strstr(name, "ln_post.") || !strncmp(name, "decoder.ln.", 11);
    if (is_ln && L > 7 && !strcmp(name + L - 7, ".weight")) {
        g.offset = 1.0f;
        g.scale = 0.1f;
    } else if (nd == 1 || strstr(name, ".bias")) {
        g.scale = 0.02f;
    } else if (strstr(name, "positional_embedding") || strstr(name, "token_embedding")) {
        g.scale = 0.05f;
    } else { /* uniform(-a, a) with variance 1/fan_in */
        int64_t fan_in = nd == 3 ? b * k : b;
        g.scale = sqrtf(3.0f / (float)fan_in);
    }
    at_dtype t = at_whisper_ggml_tensor_type(name, nd, shape, c->target);
    return at_ggml_writer_tensor(c->w, name, nd, shape, t, gen_row, &g, c->err);
}

/* Each level's name buffer is larger than its caller's, so a name is never
 * cut (and gcc can see it in every build type). */
static int put_lin(ctx_t *c, const char *pfx, int64_t out, int64_t in, int bias)
{
    char n[192];
    snprintf(n, sizeof n, "%s.weight", pfx);
    int rc = put(c, n, 2, out, in, 0);
    if (rc || !bias) return rc;
    snprintf(n, sizeof n, "%s.bias", pfx);
    return put(c, n, 1, out, 0, 0);
}

static int put_ln(ctx_t *c, const char *pfx, int64_t d)
{
    char n[192];
    snprintf(n, sizeof n, "%s.weight", pfx);
    int rc = put(c, n, 1, d, 0, 0);
    if (rc) return rc;
    snprintf(n, sizeof n, "%s.bias", pfx);
    return put(c, n, 1, d, 0, 0);
}

static int put_attn(ctx_t *c, const char *pfx, int64_t d)
{
    char n[160];
    int rc;
    snprintf(n, sizeof n, "%s.query", pfx);
    if ((rc = put_lin(c, n, d, d, 1))) return rc;
    snprintf(n, sizeof n, "%s.key", pfx);
    if ((rc = put_lin(c, n, d, d, 0))) return rc;
    snprintf(n, sizeof n, "%s.value", pfx);
    if ((rc = put_lin(c, n, d, d, 1))) return rc;
    snprintf(n, sizeof n, "%s.out", pfx);
    return put_lin(c, n, d, d, 1);
}

int at_whisper_random_model(const char *preset, const char *type, const char *out_path, uint64_t seed,
                            at_err *err)
{
    const preset_t *p = NULL;
    for (size_t i = 0; i < sizeof PRESETS / sizeof PRESETS[0]; i++)
        if (preset && !strcmp(preset, PRESETS[i].name)) p = &PRESETS[i];
    if (!p) return at_err_set(err, AT_E_INVALID, "unknown preset '%s'", preset ? preset : "");
    at_dtype target;
    if (!type || at_dtype_from_name(type, &target))
        return at_err_set(err, AT_E_INVALID, "unknown type '%s'", type ? type : "");
    at_whisper_hparams hp = {p->n_vocab,
                             1500,
                             p->d,
                             p->heads,
                             p->enc_layers,
                             448,
                             p->d,
                             p->heads,
                             p->dec_layers,
                             p->n_mels,
                             at_ggml_ftype_for(target)};
    int nb = AT_WHISPER_N_FFT / 2 + 1, rc = 0;
    float *filt = malloc(sizeof(float) * (size_t)p->n_mels * (size_t)nb);
    int multi = p->n_vocab >= 51865;
    size_t ntok = multi ? 50257 : 50256;
    const char **toks = calloc(ntok, sizeof *toks);
    size_t *lens = calloc(ntok, sizeof *lens);
    char *tbuf = malloc(ntok * 16);
    ctx_t c = {NULL, target, seed, err};
    if (!filt || !toks || !lens || !tbuf) {
        rc = at_err_set(err, AT_E_NOMEM, "out of memory");
        goto out;
    }
    if ((rc = at_whisper_mel_filters(p->n_mels, filt, err))) goto out;
    /* placeholder vocabulary: the 256 single bytes first (as in real
     * vocabularies, so any text can be encoded, e.g. a prompt), then every
     * id a distinct word (" w300"), so the text splits into words as real
     * text does and streaming agreement and trimming work on words */
    for (size_t i = 0; i < ntok; i++) {
        char *q = tbuf + i * 16;
        if (i < 256) {
            q[0] = (char)i;
            q[1] = '\0';
            lens[i] = 1;
        } else {
            lens[i] = (size_t)snprintf(q, 16, " w%zu", i);
        }
        toks[i] = q;
    }
    if (!(c.w = at_ggml_writer_open(out_path, &hp, err))) {
        rc = err ? err->code : AT_E_IO;
        goto out;
    }
    if ((rc = at_ggml_writer_header(c.w, filt, p->n_mels, nb, ntok, toks, lens, err))) goto out;
    int64_t d = p->d;
    char n[128];
    if ((rc = put(&c, "encoder.positional_embedding", 2, 1500, d, 0)) ||
        (rc = put(&c, "encoder.conv1.weight", 3, d, p->n_mels, 3)) ||
        (rc = put(&c, "encoder.conv1.bias", 2, d, 1, 0)) ||
        (rc = put(&c, "encoder.conv2.weight", 3, d, d, 3)) ||
        (rc = put(&c, "encoder.conv2.bias", 2, d, 1, 0)))
        goto out;
    for (int i = 0; i < p->enc_layers; i++) {
        snprintf(n, sizeof n, "encoder.blocks.%d.attn_ln", i);
        if ((rc = put_ln(&c, n, d))) goto out;
        snprintf(n, sizeof n, "encoder.blocks.%d.attn", i);
        if ((rc = put_attn(&c, n, d))) goto out;
        snprintf(n, sizeof n, "encoder.blocks.%d.mlp_ln", i);
        if ((rc = put_ln(&c, n, d))) goto out;
        snprintf(n, sizeof n, "encoder.blocks.%d.mlp.0", i);
        if ((rc = put_lin(&c, n, 4 * d, d, 1))) goto out;
        snprintf(n, sizeof n, "encoder.blocks.%d.mlp.2", i);
        if ((rc = put_lin(&c, n, d, 4 * d, 1))) goto out;
    }
    if ((rc = put_ln(&c, "encoder.ln_post", d)) ||
        (rc = put(&c, "decoder.positional_embedding", 2, 448, d, 0)) ||
        (rc = put(&c, "decoder.token_embedding.weight", 2, p->n_vocab, d, 0)))
        goto out;
    for (int i = 0; i < p->dec_layers; i++) {
        snprintf(n, sizeof n, "decoder.blocks.%d.attn_ln", i);
        if ((rc = put_ln(&c, n, d))) goto out;
        snprintf(n, sizeof n, "decoder.blocks.%d.attn", i);
        if ((rc = put_attn(&c, n, d))) goto out;
        snprintf(n, sizeof n, "decoder.blocks.%d.cross_attn_ln", i);
        if ((rc = put_ln(&c, n, d))) goto out;
        snprintf(n, sizeof n, "decoder.blocks.%d.cross_attn", i);
        if ((rc = put_attn(&c, n, d))) goto out;
        snprintf(n, sizeof n, "decoder.blocks.%d.mlp_ln", i);
        if ((rc = put_ln(&c, n, d))) goto out;
        snprintf(n, sizeof n, "decoder.blocks.%d.mlp.0", i);
        if ((rc = put_lin(&c, n, 4 * d, d, 1))) goto out;
        snprintf(n, sizeof n, "decoder.blocks.%d.mlp.2", i);
        if ((rc = put_lin(&c, n, d, 4 * d, 1))) goto out;
    }
    rc = put_ln(&c, "decoder.ln", d);
out:
    if (c.w) {
        int rc2 = at_ggml_writer_close(c.w, rc ? NULL : err);
        if (!rc) rc = rc2;
    }
    if (rc) remove(out_path);
    free(filt);
    free(toks);
    free(lens);
    free(tbuf);
    return rc;
}

int at_tools_random_model_opts(int argc, char **argv, const char *cmd, const char *usage, const char **preset,
                               const char **type, const char **out, unsigned long long *seed)
{
    static const struct option opts[] = {
        {"preset", required_argument, 0, 'p'}, {"type", required_argument, 0, 't'},
        {"out", required_argument, 0, 'o'},    {"seed", required_argument, 0, 's'},
        {"help", no_argument, 0, 'h'},         {0, 0, 0, 0}};
    *preset = *out = NULL;
    *type = "f16";
    *seed = 1;
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'p': *preset = optarg; break;
        case 't': *type = optarg; break;
        case 'o': *out = optarg; break;
        case 's': *seed = strtoull(optarg, NULL, 10); break;
        case 'h': fputs(usage, stdout); return 1;
        default: fprintf(stderr, "%s: unknown or incomplete option '%s'\n", cmd, argv[optind - 1]); return 2;
        }
    }
    if (!*preset || !*out || optind < argc) {
        fputs(usage, stderr);
        return 2;
    }
    return 0;
}

int at_whisper_random_model_main(int argc, char **argv)
{
    const char *preset, *type, *out;
    unsigned long long seed;
    int rc = at_tools_random_model_opts(
        argc, argv, "whisper-random-model",
        "usage: audio-translator whisper-random-model --preset P --out FILE [--type T] [--seed N]\n"
        "  P: tiny tiny.en base base.en small small.en medium medium.en large-v3 large-v3-turbo\n"
        "  T: f32 f16 (default) q8_0 q5_0 q5_1 q4_0 q4_1\n",
        &preset, &type, &out, &seed);
    if (rc) return rc == 1 ? 0 : rc;
    at_err err = {0};
    if (at_whisper_random_model(preset, type, out, seed, &err)) {
        fprintf(stderr, "whisper-random-model: %s\n", err.msg);
        return err.code == AT_E_INVALID ? 2 : 1;
    }
    return 0;
}
