/* vits_random_model.c - Hugging Face VitsModel folders of published voice
 * shapes (facebook/mms-tts-*, kakao-enterprise/vits-ljs) filled with
 * random weights, for benchmarks and tests (no download needed).
 *
 * Convolutions and projections are drawn with a variance of 1/fan-in (the
 * decoder's residual blocks a quarter of it, so the signal stays in range
 * through its stages), norms are 1 and 0, biases 0, and the duration
 * predictor's last affine flow is set so that tokens last about five
 * frames, as speech does.  WaveNet layers are stored as weight_g /
 * weight_v, as the published checkpoints store them.  The posterior
 * encoder (training only) is left out. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "tools/random_weights.h"
#include "tools/tools.h"

typedef struct preset_t {
    const char *name;
    int vocab, d, layers, heads, ffn, flow, window;
    int dp_flows, bins, ds_layers, prior_flows, wn_layers, wn_k;
    int up_init, n_up, up_rate[4], up_k[4];
    int speakers, spk_dim, sr;
} preset_t;

static const preset_t PRESETS[] = {
    {"mms-tts",      38, 192, 6,    2, 768, 192, 4, 4, 10, 3, 4, 4, 5, 512, 4, {8, 8, 2, 2},
     {16, 16, 4, 4}, 1,  0,   16000},
    {"vits-ljs",     178, 192, 6,    2, 768, 192, 4, 4, 10, 3, 4, 4, 5, 512, 4, {8, 8, 2, 2},
     {16, 16, 4, 4}, 1,   0,   22050},
    /* the tests' voice: a few hundred kilobytes, two speakers */
    {"tiny", 12, 16, 1, 2, 24, 8, 2, 2, 4, 2, 2, 2, 3, 32, 2, {4, 4}, {8, 8}, 2, 8, 8000},
    /* the same with one speaker and vits-ljs's phoneme vocabulary */
    {"tiny-phonemes", 178, 16, 1, 2, 24, 8, 2, 2, 4, 2, 2, 2, 3, 32, 2, {4, 4}, {8, 8}, 1, 0, 8000},
};

static const int RB_K[3] = {3, 7, 11}; /* dilations 1, 3, 5 each (the config) */

/* pfx.weight [out, in, k] (or weight_g / weight_v) and pfx.bias [out]. */
static void conv(at_rw_list *l, const char *pfx, int out, int in, int k, float gain, int bias, int wnorm)
{
    float std = gain / sqrtf((float)in * (float)k);
    if (wnorm) {
        at_rw_add(l, 3, out, 1, 1, AT_RW_CONST, 1.0f, "%s.weight_g", pfx);
        at_rw_add(l, 3, out, in, k, AT_RW_NORMAL, 1.0f, "%s.weight_v", pfx);
    } else {
        at_rw_add(l, 3, out, in, k, AT_RW_NORMAL, std, "%s.weight", pfx);
    }
    if (bias) at_rw_add(l, 1, out, 1, 1, AT_RW_ZERO, 0, "%s.bias", pfx);
}

static void dds(at_rw_list *l, const char *pfx, int d, int layers)
{
    char n[112];
    for (int i = 0; i < layers; i++) {
        snprintf(n, sizeof n, "%s.convs_dilated.%d", pfx, i);
        conv(l, n, d, 1, 3, 1.0f, 1, 0);
        snprintf(n, sizeof n, "%s.convs_pointwise.%d", pfx, i);
        conv(l, n, d, d, 1, 1.0f, 1, 0);
        snprintf(n, sizeof n, "%s.norms_1.%d", pfx, i);
        at_rw_norm(l, n, d);
        snprintf(n, sizeof n, "%s.norms_2.%d", pfx, i);
        at_rw_norm(l, n, d);
    }
}

/* The tensors model.c reads, in the order they are written. */
static void list_tensors(const preset_t *p, at_rw_list *l)
{
    char n[112];
    int d = p->d, hd = d / p->heads, F = p->flow, L = p->wn_layers;
    at_rw_add(l, 2, p->vocab, d, 1, AT_RW_NORMAL, 1.0f, "text_encoder.embed_tokens.weight");
    for (int i = 0; i < p->layers; i++) {
        static const char *const proj[] = {"q_proj", "k_proj", "v_proj", "out_proj"};
        for (int j = 0; j < 4; j++) {
            at_rw_add(l, 2, d, d, 1, AT_RW_NORMAL, 1.0f / sqrtf((float)d),
                      "text_encoder.encoder.layers.%d.attention.%s.weight", i, proj[j]);
            at_rw_add(l, 1, d, 1, 1, AT_RW_ZERO, 0, "text_encoder.encoder.layers.%d.attention.%s.bias", i,
                      proj[j]);
        }
        at_rw_add(l, 3, 1, 2 * p->window + 1, hd, AT_RW_NORMAL, 1.0f / sqrtf((float)hd),
                  "text_encoder.encoder.layers.%d.attention.emb_rel_k", i);
        at_rw_add(l, 3, 1, 2 * p->window + 1, hd, AT_RW_NORMAL, 1.0f / sqrtf((float)hd),
                  "text_encoder.encoder.layers.%d.attention.emb_rel_v", i);
        snprintf(n, sizeof n, "text_encoder.encoder.layers.%d.layer_norm", i);
        at_rw_norm(l, n, d);
        snprintf(n, sizeof n, "text_encoder.encoder.layers.%d.feed_forward.conv_1", i);
        conv(l, n, p->ffn, d, 3, 1.0f, 1, 0);
        snprintf(n, sizeof n, "text_encoder.encoder.layers.%d.feed_forward.conv_2", i);
        conv(l, n, d, p->ffn, 3, 1.0f, 1, 0);
        snprintf(n, sizeof n, "text_encoder.encoder.layers.%d.final_layer_norm", i);
        at_rw_norm(l, n, d);
    }
    conv(l, "text_encoder.project", 2 * F, d, 1, 0.5f, 1, 0);

    conv(l, "duration_predictor.conv_pre", d, d, 1, 1.0f, 1, 0);
    conv(l, "duration_predictor.conv_proj", d, d, 1, 1.0f, 1, 0);
    dds(l, "duration_predictor.conv_dds", d, p->ds_layers);
    if (p->spk_dim) conv(l, "duration_predictor.cond", d, p->spk_dim, 1, 1.0f, 1, 0);
    /* log-durations about 1.5: tokens of ceil(e^1.5) = 5 frames */
    at_rw_add(l, 2, 2, 1, 1, AT_RW_CONST, -1.5f, "duration_predictor.flows.0.translate");
    at_rw_add(l, 2, 2, 1, 1, AT_RW_ZERO, 0, "duration_predictor.flows.0.log_scale");
    for (int f = 1; f <= p->dp_flows; f++) {
        snprintf(n, sizeof n, "duration_predictor.flows.%d.conv_pre", f);
        conv(l, n, d, 1, 1, 1.0f, 1, 0);
        snprintf(n, sizeof n, "duration_predictor.flows.%d.conv_proj", f);
        conv(l, n, 3 * p->bins - 1, d, 1, 0.1f, 1, 0);
        snprintf(n, sizeof n, "duration_predictor.flows.%d.conv_dds", f);
        dds(l, n, d, p->ds_layers);
    }

    for (int f = 0; f < p->prior_flows; f++) {
        snprintf(n, sizeof n, "flow.flows.%d.conv_pre", f);
        conv(l, n, d, F / 2, 1, 1.0f, 1, 0);
        for (int i = 0; i < L; i++) {
            snprintf(n, sizeof n, "flow.flows.%d.wavenet.in_layers.%d", f, i);
            conv(l, n, 2 * d, d, p->wn_k, 1.0f, 1, 1);
            snprintf(n, sizeof n, "flow.flows.%d.wavenet.res_skip_layers.%d", f, i);
            conv(l, n, i < L - 1 ? 2 * d : d, d, 1, 1.0f, 1, 1);
        }
        if (p->spk_dim) {
            snprintf(n, sizeof n, "flow.flows.%d.wavenet.cond_layer", f);
            conv(l, n, 2 * d * L, p->spk_dim, 1, 1.0f, 1, 1);
        }
        snprintf(n, sizeof n, "flow.flows.%d.conv_post", f);
        conv(l, n, F / 2, d, 1, 0.1f, 1, 0);
    }

    int ch = p->up_init;
    conv(l, "decoder.conv_pre", ch, F, 7, 1.0f, 1, 0);
    if (p->spk_dim) conv(l, "decoder.cond", ch, p->spk_dim, 1, 1.0f, 1, 0);
    for (int s = 0; s < p->n_up; s++) {
        /* ConvTranspose1d: [in, out, k] */
        at_rw_add(l, 3, ch, ch / 2, p->up_k[s], AT_RW_NORMAL,
                  1.0f / sqrtf((float)ch * p->up_k[s] / p->up_rate[s]), "decoder.upsampler.%d.weight", s);
        at_rw_add(l, 1, ch / 2, 1, 1, AT_RW_ZERO, 0, "decoder.upsampler.%d.bias", s);
        ch /= 2;
        for (int j = 0; j < 3; j++)
            for (int i = 0; i < 3; i++) {
                snprintf(n, sizeof n, "decoder.resblocks.%d.convs1.%d", 3 * s + j, i);
                conv(l, n, ch, ch, RB_K[j], 0.5f, 1, 0);
                snprintf(n, sizeof n, "decoder.resblocks.%d.convs2.%d", 3 * s + j, i);
                conv(l, n, ch, ch, RB_K[j], 0.5f, 1, 0);
            }
    }
    conv(l, "decoder.conv_post", 1, ch, 7, 1.0f, 0, 0);
    if (p->speakers > 1)
        at_rw_add(l, 2, p->speakers, p->spk_dim, 1, AT_RW_NORMAL, 1.0f, "embed_speaker.weight");
}

static int write_config(const preset_t *p, const char *dir, int f16, at_err *err)
{
    char cfg[4096], rates[64] = "", ks[64] = "";
    for (int i = 0; i < p->n_up; i++) {
        snprintf(rates + strlen(rates), sizeof rates - strlen(rates), "%s%d", i ? ", " : "", p->up_rate[i]);
        snprintf(ks + strlen(ks), sizeof ks - strlen(ks), "%s%d", i ? ", " : "", p->up_k[i]);
    }
    snprintf(cfg, sizeof cfg,
             "{\n"
             "  \"architectures\": [\"VitsModel\"],\n"
             "  \"depth_separable_channels\": 2,\n"
             "  \"depth_separable_num_layers\": %d,\n"
             "  \"duration_predictor_filter_channels\": 256,\n"
             "  \"duration_predictor_flow_bins\": %d,\n"
             "  \"duration_predictor_kernel_size\": 3,\n"
             "  \"duration_predictor_num_flows\": %d,\n"
             "  \"duration_predictor_tail_bound\": 5.0,\n"
             "  \"ffn_dim\": %d,\n"
             "  \"ffn_kernel_size\": 3,\n"
             "  \"flow_size\": %d,\n"
             "  \"hidden_act\": \"relu\",\n"
             "  \"hidden_size\": %d,\n"
             "  \"layer_norm_eps\": 1e-05,\n"
             "  \"leaky_relu_slope\": 0.1,\n"
             "  \"model_type\": \"vits\",\n"
             "  \"noise_scale\": 0.667,\n"
             "  \"noise_scale_duration\": 0.8,\n"
             "  \"num_attention_heads\": %d,\n"
             "  \"num_hidden_layers\": %d,\n"
             "  \"num_speakers\": %d,\n"
             "  \"pad_token_id\": 0,\n"
             "  \"prior_encoder_num_flows\": %d,\n"
             "  \"prior_encoder_num_wavenet_layers\": %d,\n"
             "  \"resblock_dilation_sizes\": [[1, 3, 5], [1, 3, 5], [1, 3, 5]],\n"
             "  \"resblock_kernel_sizes\": [3, 7, 11],\n"
             "  \"sampling_rate\": %d,\n"
             "  \"speaker_embedding_size\": %d,\n"
             "  \"speaking_rate\": 1.0,\n"
             "  \"torch_dtype\": \"%s\",\n"
             "  \"upsample_initial_channel\": %d,\n"
             "  \"upsample_kernel_sizes\": [%s],\n"
             "  \"upsample_rates\": [%s],\n"
             "  \"use_bias\": true,\n"
             "  \"use_stochastic_duration_prediction\": true,\n"
             "  \"vocab_size\": %d,\n"
             "  \"wavenet_dilation_rate\": 1,\n"
             "  \"wavenet_kernel_size\": %d,\n"
             "  \"window_size\": %d\n"
             "}\n",
             p->ds_layers, p->bins, p->dp_flows, p->ffn, p->flow, p->d, p->heads, p->layers, p->speakers,
             p->prior_flows, p->wn_layers, p->sr, p->spk_dim, f16 ? "float16" : "float32", p->up_init, ks,
             rates, p->vocab, p->wn_k, p->window);
    return at_rw_write_text(dir, "config.json", cfg, err);
}

int at_vits_random_model(const char *preset, const char *type, const char *out_dir, uint64_t seed,
                         int64_t *n_params, at_err *err)
{
    const preset_t *p = NULL;
    for (size_t i = 0; i < sizeof PRESETS / sizeof PRESETS[0]; i++)
        if (preset && !strcmp(preset, PRESETS[i].name)) p = &PRESETS[i];
    if (!p) return at_err_set(err, AT_E_INVALID, "unknown preset '%s'", preset ? preset : "");
    if (!type || (strcmp(type, "f16") && strcmp(type, "f32")))
        return at_err_set(err, AT_E_INVALID, "unknown type '%s' (f32 or f16)", type ? type : "");
    if (!out_dir || !*out_dir) return at_err_set(err, AT_E_INVALID, "no output folder");
    if (at_models_mkdirs(out_dir, err)) return err ? err->code : AT_E_IO;
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

int at_vits_random_model_main(int argc, char **argv)
{
    const char *preset, *type, *out;
    unsigned long long seed;
    int rc = at_tools_random_model_opts(
        argc, argv, "vits-random-model",
        "usage: audio-translator vits-random-model --preset P --out DIR [--type T] [--seed N]\n"
        "  P: mms-tts (facebook/mms-tts-eng), vits-ljs (kakao-enterprise/vits-ljs)\n"
        "  T: f16 (default) f32\n"
        "Writes config.json and model.safetensors (random weights of the published\n"
        "shape, no tokenizer) into DIR.\n",
        &preset, &type, &out, &seed);
    if (rc) return rc == 1 ? 0 : rc;
    at_err err = {0};
    int64_t n = 0;
    if (at_vits_random_model(preset, type, out, seed, &n, &err)) {
        fprintf(stderr, "vits-random-model: %s\n", err.msg);
        return err.code == AT_E_INVALID ? 2 : 1;
    }
    printf("%s: %s, %lld parameters (%s)\n", out, preset, (long long)n, type);
    return 0;
}
