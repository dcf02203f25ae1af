/* convert.c - any loadable Whisper model -> whisper.cpp ggml .bin, with
 * optional quantization of the weight matrices. */
#include <cjson/cJSON.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "engines/asr/whisper/model_internal.h"
#include "tools/tools.h"

#define MAX_VOCAB_JSON (64u << 20)

at_dtype at_whisper_ggml_tensor_type(const char *name, int n_dims, const int64_t *shape, at_dtype target)
{
    /* as whisper.cpp's converter and quantizer: 1-D tensors, conv biases and
     * positional embeddings f32; conv kernels f16; 2-D matrices the target
     * type when their rows are whole blocks. */
    if (n_dims < 2 || strstr(name, "conv1.bias") || strstr(name, "conv2.bias") ||
        strstr(name, "positional_embedding"))
        return AT_DT_F32;
    if (target == AT_DT_F32) return AT_DT_F32;
    if (n_dims != 2) return AT_DT_F16;
    if (shape[1] % at_dtype_block(target)) return AT_DT_F16;
    return target;
}

/* GPT-2 byte-level BPE: bytes map to printable code points; invert that. */
static void byte_decoder(int dec[512])
{
    for (int i = 0; i < 512; i++) dec[i] = -1;
    int n = 0;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
        if (printable)
            dec[b] = b;
        else
            dec[256 + n++] = b;
    }
}

/* UTF-8 token string -> raw bytes; -1 if a code point is not in the map. */
static int decode_token(const char *s, const int dec[512], char *out, size_t cap, size_t *len)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t n = 0;
    while (*p) {
        unsigned cp;
        int extra;
        if (*p < 0x80) {
            cp = *p;
            extra = 0;
        } else if ((*p & 0xe0) == 0xc0) {
            cp = *p & 0x1f;
            extra = 1;
        } else if ((*p & 0xf0) == 0xe0) {
            cp = *p & 0x0f;
            extra = 2;
        } else
            return -1;
        p++;
        for (int i = 0; i < extra; i++, p++) {
            if ((*p & 0xc0) != 0x80) return -1;
            cp = (cp << 6) | (*p & 0x3f);
        }
        if (cp >= 512 || dec[cp] < 0 || n >= cap) return -1;
        out[n++] = (char)dec[cp];
    }
    *len = n;
    return 0;
}

typedef struct {
    size_t n;
    char **tok;
    size_t *len;
} vocab_t;

static void vocab_free(vocab_t *v)
{
    for (size_t i = 0; v->tok && i < v->n; i++) free(v->tok[i]);
    free(v->tok);
    free(v->len);
}

/* Tokens 0..eot-1 (the byte-level BPE ranks, as whisper.cpp stores them). */
static int vocab_build(const char *in_path, const at_whisper_model *m, vocab_t *v, at_err *err)
{
    memset(v, 0, sizeof *v);
    const at_whisper_special *sp = at_whisper_model_special(m);
    v->n = (size_t)sp->eot;
    v->tok = calloc(v->n, sizeof *v->tok);
    v->len = calloc(v->n, sizeof *v->len);
    if (!v->tok || !v->len) {
        vocab_free(v);
        return at_err_set(err, AT_E_NOMEM, "out of memory");
    }
    const char *const *ft;
    const size_t *fl;
    size_t nf = at_whisper_model_vocab(m, &ft, &fl);
    cJSON *j = NULL;
    struct stat st;
    char path[4096];
    snprintf(path, sizeof path, "%s/vocab.json", in_path);
    if (!nf && stat(in_path, &st) == 0 && S_ISDIR(st.st_mode) && stat(path, &st) == 0 && st.st_size > 0 &&
        (size_t)st.st_size <= MAX_VOCAB_JSON) {
        FILE *f = fopen(path, "rb");
        char *txt = malloc((size_t)st.st_size + 1);
        if (f && txt && fread(txt, 1, (size_t)st.st_size, f) == (size_t)st.st_size) {
            txt[st.st_size] = 0;
            j = cJSON_Parse(txt);
        }
        if (f) fclose(f);
        free(txt);
        if (!cJSON_IsObject(j)) {
            cJSON_Delete(j);
            vocab_free(v);
            return at_err_set(err, AT_E_CORRUPT, "%s: not a JSON object of tokens and their ids", path);
        }
    }
    int dec[512];
    byte_decoder(dec);
    if (j) {
        const cJSON *e;
        cJSON_ArrayForEach(e, j)
        {
            if (!cJSON_IsNumber(e) || e->valuedouble < 0 || e->valuedouble >= (double)v->n) continue;
            size_t id = (size_t)e->valuedouble, len;
            char buf[1024];
            if (decode_token(e->string, dec, buf, sizeof buf, &len)) continue; /* special/added token */
            free(v->tok[id]);
            v->tok[id] = malloc(len + 1);
            if (!v->tok[id]) {
                cJSON_Delete(j);
                vocab_free(v);
                return at_err_set(err, AT_E_NOMEM, "out of memory");
            }
            memcpy(v->tok[id], buf, len);
            v->len[id] = len;
        }
        cJSON_Delete(j);
    }
    for (size_t i = 0; i < v->n; i++) {
        if (v->tok[i]) continue;
        char buf[32];
        int len;
        if (i < nf) { /* from the source ggml file */
            v->tok[i] = malloc(fl[i] + 1);
            if (v->tok[i]) memcpy(v->tok[i], ft[i], fl[i]);
            v->len[i] = fl[i];
        } else if (j || nf) {
            v->tok[i] = calloc(1, 1); /* id absent from the vocabulary */
        } else {                      /* no vocabulary at all: placeholders keep ids unique */
            len = snprintf(buf, sizeof buf, "[_tok_%zu]", i);
            v->tok[i] = malloc((size_t)len + 1);
            if (v->tok[i]) memcpy(v->tok[i], buf, (size_t)len + 1);
            v->len[i] = (size_t)len;
        }
        if (!v->tok[i]) {
            vocab_free(v);
            return at_err_set(err, AT_E_NOMEM, "out of memory");
        }
    }
    return 0;
}

typedef struct {
    const at_nn_wtensor *t;
} src_rows;

static int row_from_tensor(void *user, int64_t row, float *dst, int n)
{
    const at_nn_wtensor *t = ((src_rows *)user)->t;
    int64_t cols = t->shape[t->n_dims - 1];
    if (cols == n) {
        size_t rb = at_dtype_row_bytes(t->type, cols);
        at_dequant_row(t->type, (const uint8_t *)t->data + (size_t)row * rb, dst, n);
        return 0;
    }
    /* reshaped (conv bias [d] -> [d, 1]): element-wise, plain types only */
    if (at_dtype_block(t->type) != 1) return AT_E_UNSUPPORTED;
    size_t es = at_dtype_block_bytes(t->type);
    for (int i = 0; i < n; i++)
        at_dequant_row(t->type, (const uint8_t *)t->data + ((size_t)row * n + i) * es, dst + i, 1);
    return 0;
}

int at_whisper_convert(const char *in_path, const char *out_path, const char *type, at_err *err)
{
    at_dtype target;
    if (!type || at_dtype_from_name(type, &target))
        return at_err_set(err, AT_E_INVALID, "unknown type '%s' (f32, f16, q8_0, q5_0, q5_1, q4_0, q4_1)",
                          type ? type : "");
    at_whisper_model *m = at_whisper_model_load(in_path, err);
    if (!m) return err ? err->code : AT_E_IO;
    vocab_t voc;
    int rc = vocab_build(in_path, m, &voc, err);
    if (rc) {
        at_whisper_model_free(m);
        return rc;
    }
    at_whisper_hparams hp = *at_whisper_model_hparams(m);
    hp.ftype = at_ggml_ftype_for(target);
    float *filt = malloc(sizeof(float) * (size_t)hp.n_mels * (AT_WHISPER_N_FFT / 2 + 1));
    at_ggml_writer *w = NULL;
    if (!filt) {
        rc = at_err_set(err, AT_E_NOMEM, "out of memory");
        goto out;
    }
    if ((rc = at_whisper_mel_filters(hp.n_mels, filt, err))) goto out;
    if (!(w = at_ggml_writer_open(out_path, &hp, err))) {
        rc = err ? err->code : AT_E_IO;
        goto out;
    }
    if ((rc = at_ggml_writer_header(w, filt, hp.n_mels, AT_WHISPER_N_FFT / 2 + 1, voc.n,
                                    (const char *const *)voc.tok, voc.len, err)))
        goto out;
    const at_wsource *src = at_whisper_model_source(m);
    for (size_t i = 0; i < src->w.n; i++) {
        const at_nn_wtensor *t = &src->w.t[i];
        int64_t shape[4];
        int nd = t->n_dims;
        memcpy(shape, t->shape, sizeof shape);
        if ((strstr(t->name, "conv1.bias") || strstr(t->name, "conv2.bias")) && nd == 1) {
            shape[1] = 1; /* whisper.cpp stores conv biases as [d, 1] */
            nd = 2;
        }
        at_dtype ot = at_whisper_ggml_tensor_type(t->name, nd, shape, target);
        src_rows sr = {t};
        if ((rc = at_ggml_writer_tensor(w, t->name, nd, shape, ot, row_from_tensor, &sr, err))) goto out;
    }
out:
    if (w) {
        int rc2 = at_ggml_writer_close(w, rc ? NULL : err);
        if (!rc) rc = rc2;
    }
    if (rc) remove(out_path);
    free(filt);
    vocab_free(&voc);
    at_whisper_model_free(m);
    return rc;
}

int at_whisper_convert_main(int argc, char **argv)
{
    static const struct option opts[] = {{"model", required_argument, 0, 'm'},
                                         {"out", required_argument, 0, 'o'},
                                         {"type", required_argument, 0, 't'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *in = NULL, *out = NULL, *type = "f16";
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'm': in = optarg; break;
        case 'o': out = optarg; break;
        case 't': type = optarg; break;
        case 'h':
            printf("usage: audio-translator whisper-convert --model IN --out FILE [--type T]\n"
                   "  IN: Hugging Face folder (config.json + model.safetensors [+ vocab.json]) or ggml file\n"
                   "  T:  f32, f16 (default), q8_0, q5_0, q5_1, q4_0, q4_1\n");
            return 0;
        default:
            fprintf(stderr, "whisper-convert: unknown or incomplete option '%s'\n", argv[optind - 1]);
            return 2;
        }
    }
    at_dtype t;
    if (!in || !out || optind < argc || at_dtype_from_name(type, &t)) {
        fprintf(stderr, "usage: audio-translator whisper-convert --model IN --out FILE [--type "
                        "f16|f32|q8_0|q5_0|q5_1|q4_0|q4_1]\n");
        return 2;
    }
    at_err err = {0};
    if (at_whisper_convert(in, out, type, &err)) {
        fprintf(stderr, "whisper-convert: %s\n", err.msg);
        return 1;
    }
    return 0;
}
