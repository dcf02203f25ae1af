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
#include <stdio.h>
#include <string.h>

#include "tools/random_weights.h"
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

/* pfx.weight [out x in] and pfx.bias [out] of a linear layer. */
static void linear(at_rw_list *l, const char *pfx, int64_t out, int64_t in)
{
    at_rw_add(l, 2, out, in, 1, AT_RW_NORMAL, INIT_STD, "%s.weight", pfx);
    at_rw_add(l, 1, out, 1, 1, AT_RW_ZERO, 0, "%s.bias", pfx);
}

/* The four projections of an attention block. */
static void attn(at_rw_list *l, const char *pfx, int64_t d)
{
    static const char *const proj[] = {"q_proj", "k_proj", "v_proj", "out_proj"};
    for (int i = 0; i < 4; i++) {
        at_rw_add(l, 2, d, d, 1, AT_RW_NORMAL, INIT_STD, "%s.%s.weight", pfx, proj[i]);
        at_rw_add(l, 1, d, 1, 1, AT_RW_ZERO, 0, "%s.%s.bias", pfx, proj[i]);
    }
}

/* The tensors model.c reads, in the order they are written. */
static void list_tensors(const preset_t *p, at_rw_list *l)
{
    int64_t d = p->d;
    char n[96];
    at_rw_add(l, 2, p->vocab, d, 1, AT_RW_NORMAL, INIT_STD, "model.shared.weight");
    for (int side = 0; side < 2; side++) {
        const char *stack = side ? "decoder" : "encoder";
        int layers = side ? p->dec_layers : p->enc_layers;
        for (int i = 0; i < layers; i++) {
            snprintf(n, sizeof n, "model.%s.layers.%d.self_attn", stack, i);
            attn(l, n, d);
            snprintf(n, sizeof n, "model.%s.layers.%d.self_attn_layer_norm", stack, i);
            at_rw_norm(l, n, d);
            if (side) {
                snprintf(n, sizeof n, "model.decoder.layers.%d.encoder_attn", i);
                attn(l, n, d);
                snprintf(n, sizeof n, "model.decoder.layers.%d.encoder_attn_layer_norm", i);
                at_rw_norm(l, n, d);
            }
            snprintf(n, sizeof n, "model.%s.layers.%d.fc1", stack, i);
            linear(l, n, p->ffn, d);
            snprintf(n, sizeof n, "model.%s.layers.%d.fc2", stack, i);
            linear(l, n, d, p->ffn);
            snprintf(n, sizeof n, "model.%s.layers.%d.final_layer_norm", stack, i);
            at_rw_norm(l, n, d);
        }
        if (!p->marian) {
            snprintf(n, sizeof n, "model.%s.layer_norm", stack);
            at_rw_norm(l, n, d);
        }
    }
    /* last: its length (vocab x 2 bytes) would misalign what follows */
    if (p->marian) at_rw_add(l, 2, 1, p->vocab, 1, AT_RW_ZERO, 0, "final_logits_bias");
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
    int rc = at_rw_write_text(dir, "config.json", cfg, err);
    if (!rc) {
        snprintf(cfg, sizeof cfg, "%s\n", p->gen);
        rc = at_rw_write_text(dir, "generation_config.json", cfg, err);
    }
    return rc;
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
    if (at_rw_mkdir_p(out_dir))
        return at_err_set(err, AT_E_IO, "cannot create %s: %s", out_dir, strerror(errno));
    int f16 = !strcmp(type, "f16");
    at_rw_list l = {.err = err};
    list_tensors(p, &l);
    int rc = l.rc;
    if (!rc) rc = write_config(p, out_dir, f16, err);
    if (!rc) rc = at_rw_write_safetensors(&l, out_dir, f16, seed, err);
    if (!rc && n_params) *n_params = at_rw_params(&l);
    at_rw_list_free(&l);
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
