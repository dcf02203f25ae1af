/* safetensors.c - a Hugging Face Whisper folder: config.json for the
 * hyper-parameters, model.safetensors for the weights.
 *
 * safetensors: uint64 LE header length N, N bytes of JSON
 * {name: {dtype, shape, data_offsets: [begin, end]}} (offsets relative to
 * the end of the header), then the data.  Names are mapped to the
 * OpenAI/whisper.cpp names so both formats share one model builder. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engines/asr/whisper/model_internal.h"

#define MAX_HEADER (64u << 20) /* generous: a large-v3 header is ~100 KB */
#define MAX_CONFIG (1u << 20)

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

static int map_name(const char *hf, char *out, size_t cap)
{
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

static char *read_small(const char *path, size_t max, at_err *err)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        at_err_set(err, AT_E_IO, "cannot open %s", path);
        return NULL;
    }
    char *buf = malloc(max + 1);
    size_t n = buf ? fread(buf, 1, max + 1, f) : 0;
    fclose(f);
    if (!buf) {
        at_err_set(err, AT_E_NOMEM, "out of memory");
        return NULL;
    }
    if (n > max) {
        free(buf);
        at_err_set(err, AT_E_TOO_LARGE, "%s is larger than %zu bytes", path, max);
        return NULL;
    }
    buf[n] = 0;
    return buf;
}

static int json_int(const cJSON *o, const char *key, int *out, const char *path, at_err *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > 1e9)
        return at_err_set(err, AT_E_CORRUPT, "%s: missing or bad \"%s\"", path, key);
    *out = (int)v->valuedouble;
    return 0;
}

static int parse_config(const char *dir, at_whisper_hparams *hp, at_err *err)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    char *txt = read_small(path, MAX_CONFIG, err);
    if (!txt) return err ? err->code : AT_E_IO;
    cJSON *j = cJSON_Parse(txt);
    free(txt);
    if (!j) return at_err_set(err, AT_E_CORRUPT, "%s: invalid JSON", path);
    int rc = 0, d = 0;
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(j, "model_type");
    const cJSON *act = cJSON_GetObjectItemCaseSensitive(j, "activation_function");
    if (cJSON_IsString(mt) && strcmp(mt->valuestring, "whisper") != 0) {
        rc = at_err_set(err, AT_E_UNSUPPORTED, "%s: model_type \"%s\" is not whisper", path, mt->valuestring);
        goto out;
    }
    if (cJSON_IsString(act) && strcmp(act->valuestring, "gelu") != 0) {
        rc = at_err_set(err, AT_E_UNSUPPORTED, "%s: activation \"%s\" not supported (only exact gelu)", path,
                        act->valuestring);
        goto out;
    }
    if ((rc = json_int(j, "d_model", &d, path, err)) ||
        (rc = json_int(j, "vocab_size", &hp->n_vocab, path, err)) ||
        (rc = json_int(j, "num_mel_bins", &hp->n_mels, path, err)) ||
        (rc = json_int(j, "encoder_layers", &hp->n_audio_layer, path, err)) ||
        (rc = json_int(j, "encoder_attention_heads", &hp->n_audio_head, path, err)) ||
        (rc = json_int(j, "decoder_layers", &hp->n_text_layer, path, err)) ||
        (rc = json_int(j, "decoder_attention_heads", &hp->n_text_head, path, err)) ||
        (rc = json_int(j, "max_source_positions", &hp->n_audio_ctx, path, err)) ||
        (rc = json_int(j, "max_target_positions", &hp->n_text_ctx, path, err)))
        goto out;
    hp->n_audio_state = hp->n_text_state = d;
    rc = at_whisper_hparams_check(hp, path, err);
out:
    cJSON_Delete(j);
    return rc;
}

static int dtype_of(const char *s, at_dtype *t)
{
    if (!strcmp(s, "F32"))
        *t = AT_DT_F32;
    else if (!strcmp(s, "F16"))
        *t = AT_DT_F16;
    else if (!strcmp(s, "BF16"))
        *t = AT_DT_BF16;
    else
        return -1;
    return 0;
}

int at_whisper_hf_open(const char *dir, at_wsource *out, at_err *err)
{
    memset(out, 0, sizeof *out);
    out->is_hf = 1;
    int rc = parse_config(dir, &out->hp, err);
    if (rc) return rc;
    out->hp.ftype = -1;
    char path[4096];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    if ((rc = at_wmap_file(path, &out->map, &out->map_size, err))) return rc;
    const uint8_t *p = out->map;
    uint64_t hlen = 0;
    char *hdr = NULL;
    cJSON *j = NULL;
    if (out->map_size < 8) {
        rc = at_err_set(err, AT_E_CORRUPT, "%s: truncated file (%zu bytes)", path, out->map_size);
        goto fail;
    }
    for (int i = 0; i < 8; i++) hlen |= (uint64_t)p[i] << (8 * i);
    if (hlen < 2 || hlen > MAX_HEADER || hlen > out->map_size - 8) {
        rc = at_err_set(err, AT_E_CORRUPT, "%s: bad header length %llu (file is %zu bytes)", path,
                        (unsigned long long)hlen, out->map_size);
        goto fail;
    }
    hdr = malloc((size_t)hlen + 1);
    if (!hdr) {
        rc = at_err_set(err, AT_E_NOMEM, "out of memory");
        goto fail;
    }
    memcpy(hdr, p + 8, (size_t)hlen);
    hdr[hlen] = 0;
    j = cJSON_Parse(hdr);
    if (!j || !cJSON_IsObject(j)) {
        rc = at_err_set(err, AT_E_CORRUPT, "%s: header is not a JSON object", path);
        goto fail;
    }
    const uint8_t *base = p + 8 + hlen;
    size_t avail = out->map_size - 8 - (size_t)hlen;
    const cJSON *e;
    cJSON_ArrayForEach(e, j)
    {
        if (!strcmp(e->string, "__metadata__")) continue;
        const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
        const cJSON *sh = cJSON_GetObjectItemCaseSensitive(e, "shape");
        const cJSON *off = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
        at_dtype t;
        if (!cJSON_IsString(dt) || !cJSON_IsArray(sh) || !cJSON_IsArray(off) ||
            cJSON_GetArraySize(off) != 2) {
            rc = at_err_set(err, AT_E_CORRUPT, "%s: bad entry for %s", path, e->string);
            goto fail;
        }
        if (dtype_of(dt->valuestring, &t)) {
            rc = at_err_set(err, AT_E_UNSUPPORTED, "%s: %s has unsupported dtype %s", path, e->string,
                            dt->valuestring);
            goto fail;
        }
        int nd = cJSON_GetArraySize(sh);
        if (nd > 4) {
            rc = at_err_set(err, AT_E_CORRUPT, "%s: %s has %d dimensions", path, e->string, nd);
            goto fail;
        }
        int64_t shape[4] = {1, 1, 1, 1};
        uint64_t nel = 1;
        for (int i = 0; i < nd; i++) {
            const cJSON *d = cJSON_GetArrayItem(sh, i);
            if (!cJSON_IsNumber(d) || d->valuedouble < 0 || d->valuedouble > (double)(1 << 24)) {
                rc = at_err_set(err, AT_E_CORRUPT, "%s: %s has a bad shape", path, e->string);
                goto fail;
            }
            shape[i] = (int64_t)d->valuedouble;
            nel *= (uint64_t)shape[i];
            if (nel > out->map_size) {
                rc = at_err_set(err, AT_E_CORRUPT, "%s: %s is larger than the file", path, e->string);
                goto fail;
            }
        }
        if (nd == 0) nd = 1; /* scalar */
        const cJSON *b0 = cJSON_GetArrayItem(off, 0), *b1 = cJSON_GetArrayItem(off, 1);
        if (!cJSON_IsNumber(b0) || !cJSON_IsNumber(b1) || b0->valuedouble < 0 ||
            b1->valuedouble < b0->valuedouble || b1->valuedouble > (double)avail) {
            rc = at_err_set(err, AT_E_CORRUPT, "%s: %s has data offsets outside the file", path, e->string);
            goto fail;
        }
        uint64_t o0 = (uint64_t)b0->valuedouble, o1 = (uint64_t)b1->valuedouble;
        size_t esz = t == AT_DT_F32 ? 4 : 2;
        if (o1 - o0 != nel * esz) {
            rc = at_err_set(err, AT_E_CORRUPT, "%s: %s has %llu bytes, shape needs %llu", path, e->string,
                            (unsigned long long)(o1 - o0), (unsigned long long)(nel * esz));
            goto fail;
        }
        char name[AT_WT_NAME_MAX];
        if (!strcmp(e->string, "proj_out.weight")) continue;  /* tied to the token embedding */
        if (map_name(e->string, name, sizeof name)) continue; /* not a Whisper tensor we use */
        if ((rc = at_wsource_add(out, name, t, nd, shape, base + o0, (size_t)(o1 - o0), err))) goto fail;
    }
    cJSON_Delete(j);
    free(hdr);
    return 0;
fail:
    cJSON_Delete(j);
    free(hdr);
    at_wsource_free(out);
    return rc;
}
