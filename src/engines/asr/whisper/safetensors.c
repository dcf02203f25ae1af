/* safetensors.c - a Hugging Face Whisper folder: config.json for the
 * hyper-parameters, model.safetensors for the weights (both read by the
 * shared readers of nn/safetensors.h).  Names are mapped to the
 * OpenAI/whisper.cpp names so both formats share one model builder. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engines/asr/whisper/model_internal.h"
#include "nn/safetensors.h"

/* Ordered rewrite rules HF -> OpenAI names; longer patterns first where
 * one contains another (self_attn_layer_norm before self_attn). */
static const char *const RULES[][2] = {
    {"encoder.layers.", "encoder.blocks."},
    {"decoder.layers.", "decoder.blocks."},
    {".self_attn_layer_norm.", ".attn_ln."},
    {".encoder_attn_layer_norm.", ".cross_attn_ln."},
    {".final_layer_norm.", ".mlp_ln."},
    {".self_attn.", ".attn."},
    {".encoder_attn.", ".cross_attn."},
    {".q_proj.", ".query."},
    {".k_proj.", ".key."},
    {".v_proj.", ".value."},
    {".out_proj.", ".out."},
    {".fc1.", ".mlp.0."},
    {".fc2.", ".mlp.2."},
    {"encoder.embed_positions.weight", "encoder.positional_embedding"},
    {"decoder.embed_positions.weight", "decoder.positional_embedding"},
    {"decoder.embed_tokens.weight", "decoder.token_embedding.weight"},
    {"encoder.layer_norm.", "encoder.ln_post."},
    {"decoder.layer_norm.", "decoder.ln."},
};

static int map_name(void *user, const char *hf, char *out, size_t cap)
{
    (void)user;
    if (!strcmp(hf, "proj_out.weight")) return 1; /* tied to the token embedding */
    if (!strncmp(hf, "model.", 6)) hf += 6;
    if (strlen(hf) >= cap) return -1;
    strcpy(out, hf);
    for (size_t r = 0; r < sizeof RULES / sizeof RULES[0]; r++) {
        char *p = strstr(out, RULES[r][0]);
        if (!p) continue;
        size_t lf = strlen(RULES[r][0]), lt = strlen(RULES[r][1]), tail = strlen(p + lf);
        if ((size_t)(p - out) + lt + tail >= cap) return -1;
        memmove(p + lt, p + lf, tail + 1);
        memcpy(p, RULES[r][1], lt);
    }
    return 0;
}

static int parse_config(const char *dir, at_whisper_hparams *hp, at_err *err)
{
    char path[4096];
    if (snprintf(path, sizeof path, "%s/config.json", dir) >= (int)sizeof path)
        return at_err_set(err, AT_E_INVALID, "model path too long");
    at_hf_config *c = at_hf_config_load(path, err);
    if (!c) return err ? err->code : AT_E_IO;
    const char *mt, *act;
    int rc = 0, d = 0;
    const int BIG = 1000000000;
    if ((rc = at_hf_config_string_or(c, "model_type", "whisper", &mt, err)) ||
        (rc = at_hf_config_string_or(c, "activation_function", "gelu", &act, err)))
        goto out;
    if (strcmp(mt, "whisper") != 0) {
        rc = at_err_set(err, AT_E_UNSUPPORTED, "%s: model_type \"%s\" is not whisper", path, mt);
        goto out;
    }
    if (strcmp(act, "gelu") != 0) {
        rc = at_err_set(err, AT_E_UNSUPPORTED, "%s: activation \"%s\" not supported (only exact gelu)", path,
                        act);
        goto out;
    }
    if ((rc = at_hf_config_int(c, "d_model", 0, BIG, &d, err)) ||
        (rc = at_hf_config_int(c, "vocab_size", 0, BIG, &hp->n_vocab, err)) ||
        (rc = at_hf_config_int(c, "num_mel_bins", 0, BIG, &hp->n_mels, err)) ||
        (rc = at_hf_config_int(c, "encoder_layers", 0, BIG, &hp->n_audio_layer, err)) ||
        (rc = at_hf_config_int(c, "encoder_attention_heads", 0, BIG, &hp->n_audio_head, err)) ||
        (rc = at_hf_config_int(c, "decoder_layers", 0, BIG, &hp->n_text_layer, err)) ||
        (rc = at_hf_config_int(c, "decoder_attention_heads", 0, BIG, &hp->n_text_head, err)) ||
        (rc = at_hf_config_int(c, "max_source_positions", 0, BIG, &hp->n_audio_ctx, err)) ||
        (rc = at_hf_config_int(c, "max_target_positions", 0, BIG, &hp->n_text_ctx, err)))
        goto out;
    hp->n_audio_state = hp->n_text_state = d;
    rc = at_whisper_hparams_check(hp, path, err);
out:
    at_hf_config_free(c);
    return rc;
}

/* generation_config.json is optional; its alignment heads must name heads
 * the model has. */
static int parse_generation_config(const char *dir, at_wsource *out, at_err *err)
{
    char path[4096];
    if (snprintf(path, sizeof path, "%s/generation_config.json", dir) >= (int)sizeof path)
        return at_err_set(err, AT_E_INVALID, "model path too long");
    at_err e2;
    at_err_clear(&e2);
    at_hf_config *c = at_hf_config_load(path, &e2);
    if (!c) return e2.code == AT_E_IO ? 0 : at_err_set(err, e2.code, "%s", e2.msg);
    int pairs[AT_WHISPER_MAX_HEADS][2], n = 0;
    int rc = at_hf_config_pairs(c, "alignment_heads", 0, 1 << 16, pairs, AT_WHISPER_MAX_HEADS, &n, err);
    for (int i = 0; !rc && i < n; i++) {
        if (pairs[i][0] >= out->hp.n_text_layer || pairs[i][1] >= out->hp.n_text_head)
            rc = at_err_set(err, AT_E_CORRUPT,
                            "%s: alignment head [%d, %d] is not in a decoder of %d x %d heads", path,
                            pairs[i][0], pairs[i][1], out->hp.n_text_layer, out->hp.n_text_head);
        out->heads[i] = (at_whisper_head){pairs[i][0], pairs[i][1]};
    }
    if (!rc) out->n_heads = n;
    at_hf_config_free(c);
    return rc;
}

int at_whisper_hf_open(const char *dir, at_wsource *out, at_err *err)
{
    memset(out, 0, sizeof *out);
    out->is_hf = 1;
    int rc = parse_config(dir, &out->hp, err);
    if (!rc) rc = parse_generation_config(dir, out, err);
    if (rc) return rc;
    out->hp.ftype = -1;
    char path[4096];
    if (snprintf(path, sizeof path, "%s/model.safetensors", dir) >= (int)sizeof path)
        return at_err_set(err, AT_E_INVALID, "model path too long");
    return at_nn_safetensors_open(path, &out->w, map_name, NULL, err);
}
