/* test_torch_pickle.c - PyTorch's pytorch_model.bin through the restricted
 * unpickler (nn/torch_pickle.h), against files Debian's torch wrote
 * (tests/data/torch/generate.py): the same tensors as torch saved them,
 * shared storages, both zip layouts, a MarianMT model that runs as its
 * safetensors copy does, and hostile or broken files refused by name. */
#include <cjson/cJSON.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "engines/mt/nmt/model.h"
#include "nn/npy.h"
#include "nn/safetensors.h"
#include "nn/torch_pickle.h"

static const char *src_dir(void)
{
    const char *d = getenv("AT_SOURCE_DIR");
    return d ? d : ".";
}

static const char *oracles(void)
{
    const char *d = getenv("AT_ORACLES_DIR");
    return d ? d : "tests/data/oracles";
}

static void data_path(char *out, size_t cap, const char *rel)
{
    snprintf(out, cap, "%s/tests/data/torch/%s", src_dir(), rel);
}

static char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) fail_msg("%s missing: the fixtures are part of the repository", path);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)len + 1);
    assert_non_null(b);
    assert_int_equal(fread(b, 1, (size_t)len, f), (size_t)len);
    fclose(f);
    b[len] = 0;
    *n = (size_t)len;
    return b;
}

static double value(const at_nn_wtensor *t, int64_t i)
{
    const uint16_t *h = t->data;
    assert_int_equal((uintptr_t)t->data % (t->type == AT_DT_F32 ? 4 : 2), 0);
    switch (t->type) {
    case AT_DT_F32: return ((const float *)t->data)[i];
    case AT_DT_F16: return at_f16_to_f32(h[i]);
    case AT_DT_BF16: return at_bf16_to_f32(h[i]);
    default: fail_msg("unexpected type");
    }
    return 0;
}

/* Every tensor of a file, in order, as expected.json says torch saved it. */
static void check_tensors(const at_nn_weights *w, const cJSON *list, const char *file)
{
    assert_int_equal(w->n, (size_t)cJSON_GetArraySize(list));
    size_t k = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, list)
    {
        const at_nn_wtensor *t = &w->t[k++];
        const char *name = cJSON_GetObjectItem(e, "name")->valuestring;
        const char *dt = cJSON_GetObjectItem(e, "dtype")->valuestring;
        const cJSON *shape = cJSON_GetObjectItem(e, "shape"), *vals = cJSON_GetObjectItem(e, "values");
        assert_string_equal(t->name, name);
        assert_string_equal(dt, t->type == AT_DT_F32 ? "F32" : t->type == AT_DT_F16 ? "F16" : "BF16");
        int nd = cJSON_GetArraySize(shape);
        assert_int_equal(t->n_dims, nd ? nd : 1); /* a scalar is one value */
        for (int i = 0; i < nd; i++)
            assert_int_equal(t->shape[i], (int64_t)cJSON_GetArrayItem(shape, i)->valuedouble);
        int64_t n = at_nn_wtensor_numel(t);
        assert_int_equal(n, cJSON_GetArraySize(vals));
        assert_int_equal(t->nbytes, (size_t)n * (t->type == AT_DT_F32 ? 4 : 2));
        for (int64_t i = 0; i < n; i++)
            if (value(t, i) != cJSON_GetArrayItem(vals, (int)i)->valuedouble)
                fail_msg("%s: %s[%lld] = %g, torch saved %g", file, name, (long long)i, value(t, i),
                         cJSON_GetArrayItem(vals, (int)i)->valuedouble);
    }
}

static cJSON *expected(void)
{
    char path[4096];
    size_t n;
    data_path(path, sizeof path, "expected.json");
    char *b = slurp(path, &n);
    cJSON *j = cJSON_Parse(b);
    free(b);
    assert_non_null(j);
    return j;
}

/* f32, f16, bf16, both zip layouts and the byteorder record, shared
 * storages: the values torch saved, from the file and from memory. */
static void test_values(void **state)
{
    (void)state;
    static const char *const files[] = {"f32", "f16", "bf16", "archive", "archive-byteorder", "shared"};
    cJSON *j = expected();
    for (size_t f = 0; f < sizeof files / sizeof files[0]; f++) {
        char path[4096], rel[64];
        at_err err = {0};
        at_nn_weights w;
        snprintf(rel, sizeof rel, "%s.bin", files[f]);
        data_path(path, sizeof path, rel);
        if (at_nn_torch_open(path, &w, NULL, NULL, &err)) fail_msg("%s: %s", path, err.msg);
        check_tensors(&w, cJSON_GetObjectItem(j, files[f]), files[f]);
        at_nn_weights_free(&w);

        size_t n;
        char *b = slurp(path, &n);
        if (at_nn_torch_open_mem(b, n, rel, &w, NULL, NULL, &err)) fail_msg("%s: %s", rel, err.msg);
        assert_null(w.map);
        check_tensors(&w, cJSON_GetObjectItem(j, files[f]), files[f]);
        for (size_t i = 0; i < w.n; i++)
            assert_true((const char *)w.t[i].data >= b && (const char *)w.t[i].data + w.t[i].nbytes <= b + n);
        at_nn_weights_free(&w);
        free(b);
    }
    cJSON_Delete(j);
}

/* Tied weights are one storage: the tensors point at the same bytes, and a
 * view at a storage offset points inside them. */
static void test_shared(void **state)
{
    (void)state;
    char path[4096];
    at_err err = {0};
    at_nn_weights w;
    data_path(path, sizeof path, "shared.bin");
    if (at_nn_torch_open(path, &w, NULL, NULL, &err)) fail_msg("%s", err.msg);
    const at_nn_wtensor *emb = at_nn_weights_find(&w, "shared.weight"),
                        *lm = at_nn_weights_find(&w, "lm_head.weight"),
                        *tail = at_nn_weights_find(&w, "rows.tail"), *row = at_nn_weights_find(&w, "row.3"),
                        *fa = at_nn_weights_find(&w, "flat.a"), *fb = at_nn_weights_find(&w, "flat.b");
    assert_true(emb && lm && tail && row && fa && fb);
    assert_ptr_equal(emb->data, lm->data);
    assert_ptr_equal(tail->data, (const float *)emb->data + 8);
    assert_int_equal(tail->shape[0], 3);
    assert_ptr_equal(row->data, (const float *)emb->data + 12);
    assert_int_equal(row->n_dims, 1);
    assert_ptr_equal(fb->data, (const float *)fa->data + 6);
    for (size_t i = 0; i < w.n; i++) /* every tensor lies inside the map */
        assert_true((const char *)w.t[i].data >= (const char *)w.map &&
                    (const char *)w.t[i].data + w.t[i].nbytes <= (const char *)w.map + w.map_size);
    at_nn_weights_free(&w);
}

/* Six hundred storages before the one tensor: the unpickler's value table
 * grows while a persistent id is read, and the storage still gets its type
 * (it was read from the table's old, freed memory; ASan builds check). */
static void test_many_storages(void **state)
{
    (void)state;
    char path[4096];
    at_err err = {0};
    at_nn_weights w;
    data_path(path, sizeof path, "many_storages.bin");
    if (at_nn_torch_open(path, &w, NULL, NULL, &err)) fail_msg("%s", err.msg);
    assert_int_equal(w.n, 1);
    const at_nn_wtensor *t = at_nn_weights_find(&w, "w");
    assert_non_null(t);
    assert_int_equal(t->n_dims, 2);
    assert_int_equal(t->shape[0], 2);
    assert_int_equal(t->shape[1], 3);
    for (int64_t i = 0; i < 6; i++) assert_true(value(t, i) == (double)i);
    at_nn_weights_free(&w);
}

/* rename keeps, renames or skips, as for safetensors; a skipped tensor of
 * a type we do not load does not stop the others. */
static int rename_fn(void *user, const char *file_name, char *out, size_t cap)
{
    const char *skip = user;
    if (skip && !strcmp(file_name, skip)) return 1;
    return snprintf(out, cap, "m.%s", file_name) >= (int)cap ? -1 : 0;
}

static void test_rename(void **state)
{
    (void)state;
    char path[4096];
    at_err err = {0};
    at_nn_weights w;
    data_path(path, sizeof path, "f16.bin");
    assert_int_equal(at_nn_torch_open(path, &w, rename_fn, (void *)"layer.bias", &err), 0);
    assert_int_equal(w.n, 4);
    assert_non_null(at_nn_weights_find(&w, "m.layer.weight"));
    assert_null(at_nn_weights_find(&w, "m.layer.bias"));
    at_nn_weights_free(&w);

    data_path(path, sizeof path, "bad/int64.bin");
    assert_int_equal(at_nn_torch_open(path, &w, NULL, NULL, &err), AT_E_UNSUPPORTED);
    assert_non_null(strstr(err.msg, "ids is int64"));
    assert_int_equal(w.n, 0);
    assert_null(w.map);
    assert_int_equal(at_nn_torch_open(path, &w, rename_fn, (void *)"ids", &err), 0);
    assert_int_equal(w.n, 1);
    const at_nn_wtensor *t = at_nn_weights_find(&w, "m.ok");
    assert_non_null(t);
    assert_true(((const float *)t->data)[5] == 5.0f);
    at_nn_weights_free(&w);
}

/* Hostile and broken files: each refused with a message saying what is
 * wrong, nothing executed, nothing leaked (ASan builds check). */
static void test_refused(void **state)
{
    (void)state;
    static const struct {
        const char *file, *words;
    } cases[] = {
        {"bad/os_system.bin", "refused global os.system"},
        {"bad/builtins_eval.bin", "refused global builtins.eval"},
        {"bad/getattr.bin", "refused global __builtin__.getattr"},
        {"bad/stack_global.bin", "refused global os.system"},
        {"bad/inst.bin", "opcode 0x69 is not one a state dict uses"},
        {"bad/reduce_storage.bin", "REDUCE on torch.FloatStorage is refused"},
        {"bad/reduce_string.bin", "REDUCE on a str"},
        {"bad/persid_short.bin", "persistent id is not a ('storage'"},
        {"bad/persid_tag.bin", "not a 'storage' tuple"},
        {"bad/persid_missing.bin", "storage 7 named by the pickle is not in the archive"},
        {"bad/storage_too_big.bin", "claims 7 elements"},
        {"bad/view_past_end.bin", "past the end of its storage"},
        {"bad/negative_size.bin", "negative, huge"},
        {"bad/huge_size.bin", "negative, huge"},
        {"bad/overflow_size.bin", "huge size"},
        {"bad/negative_offset.bin", "past the end of its storage"},
        {"bad/non_contiguous.bin", "not contiguous"},
        {"bad/five_dims.bin", "more than 4 dimensions"},
        {"bad/no_pickle.bin", "no <folder>/data.pkl"},
        {"bad/two_pickles.bin", "two pickles"},
        {"bad/truncated_pickle.bin", "truncated pickle"},
        {"bad/truncated_zip.bin", "not a zip archive"},
        {"bad/compressed.bin", "compressed"},
        {"bad/deep_marks.bin", "MARKs nested deeper"},
        {"bad/deep_stack.bin", "stack deeper"},
        {"bad/deep_tuples.bin", "holds a tuple, not a state dict"},
        {"bad/not_a_dict.bin", "holds a list, not a state dict"},
        {"bad/not_a_tensor.bin", "w is a int, not a tensor"},
        {"bad/memo_unset.bin", "memo slot read before"},
        {"bad/big_endian.bin", "not little-endian"},
        {"bad/unaligned.bin", "not aligned to its 4-byte elements"},
        {"bad/bad_crc.bin", "fails its CRC check"},
        {"legacy.bin", "legacy"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char path[4096];
        at_err err = {0};
        at_nn_weights w;
        data_path(path, sizeof path, cases[i].file);
        int rc = at_nn_torch_open(path, &w, NULL, NULL, &err);
        printf("%s: %s\n", cases[i].file, err.msg);
        if (rc == 0) fail_msg("%s loaded", cases[i].file);
        assert_true(rc < 0 && err.code == rc);
        if (!strstr(err.msg, cases[i].words))
            fail_msg("%s: message \"%s\" lacks \"%s\"", cases[i].file, err.msg, cases[i].words);
        assert_null(w.map);
        assert_null(w.t);
    }
}

/* Every truncation and every single-byte corruption of a real file: a
 * clean refusal or a table whose tensors lie inside the bytes. */
static void test_damaged(void **state)
{
    (void)state;
    char path[4096];
    size_t n;
    data_path(path, sizeof path, "shared.bin");
    char *b = slurp(path, &n);
    at_err err = {0};
    at_nn_weights w;
    for (size_t len = 0; len < n; len++) {
        char *c = malloc(len ? len : 1); /* its own block: ASan sees any overread */
        memcpy(c, b, len);
        assert_int_not_equal(at_nn_torch_open_mem(c, len, "cut", &w, NULL, NULL, &err), 0);
        free(c);
    }
    int loaded = 0;
    for (size_t i = 0; i < n; i++) {
        char *c = malloc(n);
        memcpy(c, b, n);
        c[i] ^= 0x5a;
        if (at_nn_torch_open_mem(c, n, "flip", &w, NULL, NULL, &err) == 0) {
            loaded++;
            for (size_t k = 0; k < w.n; k++)
                assert_true(w.t[k].data >= (const void *)c &&
                            (const char *)w.t[k].data + w.t[k].nbytes <= c + n);
            at_nn_weights_free(&w);
        }
        free(c);
    }
    printf("single-byte corruptions of %zu bytes: %d still load (storage bytes, padding, dates: not "
           "checked), the rest refused\n",
           n, loaded);
    free(b);
}

/* The MarianMT oracle saved as pytorch_model.bin (embeddings tied in one
 * storage) holds the safetensors copy's tensors byte for byte, and the
 * model loaded from it gives the oracle's encoder output and logits. */
static void test_marian(void **state)
{
    (void)state;
    char sp[4096], tp[4200], dir[4096];
    at_err err = {0};
    at_nn_weights ws, wt;
    snprintf(sp, sizeof sp, "%s/marian-mini/model.safetensors", oracles());
    data_path(dir, sizeof dir, "marian-mini-bin");
    snprintf(tp, sizeof tp, "%s/pytorch_model.bin", dir);
    if (at_nn_safetensors_open(sp, &ws, NULL, NULL, &err)) fail_msg("%s", err.msg);
    if (at_nn_torch_open(tp, &wt, NULL, NULL, &err)) fail_msg("%s", err.msg);
    assert_int_equal(ws.n, wt.n);
    for (size_t i = 0; i < ws.n; i++) {
        const at_nn_wtensor *a = &ws.t[i], *b = at_nn_weights_find(&wt, a->name);
        if (!b) fail_msg("%s missing from pytorch_model.bin", a->name);
        assert_int_equal(a->type, b->type);
        assert_int_equal(a->n_dims, b->n_dims);
        assert_memory_equal(a->shape, b->shape, sizeof a->shape);
        assert_int_equal(a->nbytes, b->nbytes);
        assert_memory_equal(a->data, b->data, a->nbytes);
    }
    assert_ptr_equal(at_nn_weights_find(&wt, "model.shared.weight")->data,
                     at_nn_weights_find(&wt, "lm_head.weight")->data);
    at_nn_weights_free(&ws);
    at_nn_weights_free(&wt);

    /* at_nmt_model_load falls back to pytorch_model.bin */
    at_nmt_model *m = at_nmt_model_load(dir, &err);
    if (!m) fail_msg("%s: %s", dir, err.msg);
    char path[4096], buf[1 << 16];
    snprintf(path, sizeof path, "%s/marian-mini/reference.json", oracles());
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    cJSON *j = cJSON_Parse(buf);
    assert_non_null(j);
    int src[64], n_src = 0, greedy[64], n_greedy = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItem(j, "source_ids")) if (n_src < 64) src[n_src++] =
        (int)e->valuedouble;
    cJSON_ArrayForEach(e, cJSON_GetObjectItem(j, "greedy_tokens")) if (n_greedy < 64) greedy[n_greedy++] =
        (int)e->valuedouble;
    cJSON_Delete(j);
    at_npy enc_ref, lg_ref;
    snprintf(path, sizeof path, "%s/marian-mini/encoder_out.npy", oracles());
    if (at_npy_read(path, &enc_ref, 0, &err)) fail_msg("%s", err.msg);
    snprintf(path, sizeof path, "%s/marian-mini/logits.npy", oracles());
    if (at_npy_read(path, &lg_ref, 0, &err)) fail_msg("%s", err.msg);

    const at_nmt_hparams *hp = at_nmt_model_hparams(m);
    int d = hp->d_model, V = hp->dec_vocab ? hp->dec_vocab : hp->vocab;
    at_compute *pool = at_compute_new(1, &err);
    at_nmt_state *s = at_nmt_state_new(m, pool, &err);
    assert_non_null(s);
    at_nmt_memory *mem = at_nmt_memory_new(m, n_src, &err);
    at_nmt_kv *kv = at_nmt_kv_new(m, &err);
    assert_true(mem && kv);
    const int *sptr = src;
    if (at_nmt_encode(s, &sptr, &n_src, 1, &mem, &err)) fail_msg("encode: %s", err.msg);
    float *enc = malloc(sizeof(float) * (size_t)n_src * d);
    int len = 0;
    assert_int_equal(at_nmt_memory_output(s, mem, enc, (size_t)n_src * d, &len, &err), 0);
    assert_int_equal(len, n_src);
    assert_int_equal(at_npy_count(&enc_ref), (size_t)n_src * d);
    double de = 0, dl = 0;
    for (size_t i = 0; i < (size_t)n_src * d; i++) de = fmax(de, fabs((double)enc[i] - enc_ref.data[i]));
    size_t NL = (size_t)n_greedy * V;
    assert_int_equal(at_npy_count(&lg_ref), NL);
    float *lg = malloc(sizeof(float) * NL);
    at_nmt_seq q = {kv, greedy, n_greedy, mem, lg, 1};
    if (at_nmt_decode(s, &q, 1, &err)) fail_msg("decode: %s", err.msg);
    for (size_t i = 0; i < NL; i++) dl = fmax(dl, fabs((double)lg[i] - lg_ref.data[i]));
    printf("marian-mini from pytorch_model.bin: encoder max |diff| %.2e, logits max |diff| %.2e\n", de, dl);
    assert_true(de <= 5e-3 && dl <= 5e-3);
    free(enc);
    free(lg);
    at_nmt_kv_free(kv);
    at_nmt_memory_free(mem);
    at_nmt_state_free(s);
    at_compute_free(pool);
    at_nmt_model_free(m);
    at_npy_free(&enc_ref);
    at_npy_free(&lg_ref);
}

/* A folder with neither file says so. */
static void test_no_weights(void **state)
{
    (void)state;
    char dir[] = "/tmp/at-torch-XXXXXX", path[4096], cfg[4096];
    assert_non_null(mkdtemp(dir));
    snprintf(cfg, sizeof cfg, "%s/marian-mini/config.json", oracles());
    size_t n;
    char *b = slurp(cfg, &n);
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(b, 1, n, f), n);
    fclose(f);
    free(b);
    at_err err = {0};
    assert_null(at_nmt_model_load(dir, &err));
    assert_non_null(strstr(err.msg, "no model.safetensors or pytorch_model.bin"));
    unlink(path);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_values),     cmocka_unit_test(test_shared),
        cmocka_unit_test(test_rename),     cmocka_unit_test(test_refused),
        cmocka_unit_test(test_damaged),    cmocka_unit_test(test_marian),
        cmocka_unit_test(test_no_weights), cmocka_unit_test(test_many_storages),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
