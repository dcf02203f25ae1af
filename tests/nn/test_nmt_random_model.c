/* test_nmt_random_model.c - `nmt-random-model`'s folders (tools.h) load
 * as the translation models they imitate and translate: the tests' tiny
 * presets of both architectures, written to a temporary folder, loaded,
 * encoded and run through generate() greedy and with the folder's beams. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "compute/pool.h"
#include "engines/mt/nmt/generate.h"
#include "tools/tools.h"

static void remove_folder(const char *dir)
{
    static const char *const files[] = {"config.json", "generation_config.json", "model.safetensors"};
    char path[512];
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        unlink(path);
    }
    rmdir(dir);
}

static unsigned char *read_all(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)len);
    assert_non_null(b);
    assert_int_equal(fread(b, 1, (size_t)len, f), (size_t)len);
    fclose(f);
    *n = (size_t)len;
    return b;
}

static void check_preset(const char *preset, at_nmt_arch arch, int eos, int start)
{
    char dir[] = "/tmp/at-nmt-random-XXXXXX";
    assert_non_null(mkdtemp(dir));
    at_err err = {0};
    int64_t n_params = 0;
    if (at_nmt_random_model(preset, "f16", dir, 7, &n_params, &err)) fail_msg("%s", err.msg);
    /* shared embeddings 100 x 32; a layer pair's projections and ffn;
     * norms and biases; M2M100's two final norms, Marian's logits bias */
    int64_t d = 32, ffn = 64, layer = 4 * (d * d + d) + 2 * d + 2 * ffn * d + ffn + d + 2 * d;
    int64_t want = 100 * d + layer + layer + 4 * (d * d + d) + 2 * d + (arch == AT_NMT_MARIAN ? 100 : 4 * d);
    assert_int_equal(n_params, want);

    at_nmt_model *m = at_nmt_model_load(dir, &err);
    if (!m) fail_msg("%s", err.msg);
    const at_nmt_hparams *hp = at_nmt_model_hparams(m);
    assert_int_equal(hp->arch, arch);
    assert_int_equal(hp->d_model, 32);
    assert_int_equal(hp->vocab, 100);
    assert_int_equal(hp->dec_vocab, 100);
    assert_int_equal(hp->enc_layers, 1);
    assert_int_equal(hp->dec_layers, 1);
    assert_int_equal(hp->eos_id, eos);
    assert_int_equal(hp->decoder_start_id, start);
    at_nmt_gen g;
    if (at_nmt_gen_load(dir, m, &g, &err)) fail_msg("%s", err.msg);
    assert_int_equal(g.decoder_start_id, start);
    assert_int_equal(g.max_length, 64);

    at_compute *pool = at_compute_new(1, &err);
    at_nmt_state *s = pool ? at_nmt_state_new(m, pool, &err) : NULL;
    at_nmt_memory *mem = s ? at_nmt_memory_new(m, 8, &err) : NULL;
    if (!mem) fail_msg("%s", err.msg);
    const int src[8] = {5, 17, 42, 63, 8, 91, 30, eos};
    const int *srcp = src, len = 8;
    if (at_nmt_encode(s, &srcp, &len, 1, &mem, &err)) fail_msg("%s", err.msg);
    for (int beams = 1; beams <= 4; beams += 3) {
        at_nmt_job job = {mem, -1, 12, NULL, 0, 0.0f};
        g.num_beams = beams;
        if (at_nmt_generate(s, &g, &job, 1, &err)) fail_msg("%s", err.msg);
        assert_true(job.n_tokens >= 2 && job.n_tokens <= 12);
        assert_int_equal(job.tokens[0], start);
        for (int i = 1; i < job.n_tokens; i++) assert_true(job.tokens[i] >= 0 && job.tokens[i] < 100);
        free(job.tokens);
    }
    at_nmt_memory_free(mem);
    at_nmt_state_free(s);
    at_compute_free(pool);
    at_nmt_model_free(m);

    /* the seed fixes every byte; another seed changes the weights */
    char path[512], dir2[] = "/tmp/at-nmt-random-XXXXXX";
    assert_non_null(mkdtemp(dir2));
    size_t n1, n2;
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    unsigned char *a = read_all(path, &n1);
    assert_int_equal(at_nmt_random_model(preset, "f16", dir2, 7, NULL, &err), 0);
    snprintf(path, sizeof path, "%s/model.safetensors", dir2);
    unsigned char *b = read_all(path, &n2);
    assert_int_equal(n1, n2);
    assert_memory_equal(a, b, n1);
    free(b);
    assert_int_equal(at_nmt_random_model(preset, "f16", dir2, 8, NULL, &err), 0);
    b = read_all(path, &n2);
    assert_int_equal(n1, n2);
    assert_true(memcmp(a, b, n1) != 0);
    free(a);
    free(b);
    remove_folder(dir);
    remove_folder(dir2);
}

static void test_tiny_marian(void **state)
{
    (void)state;
    check_preset("tiny", AT_NMT_MARIAN, 0, 99);
}

static void test_tiny_m2m100(void **state)
{
    (void)state;
    check_preset("tiny-m2m100", AT_NMT_M2M100, 2, 2);
}

static void test_f32_and_errors(void **state)
{
    (void)state;
    char dir[] = "/tmp/at-nmt-random-XXXXXX";
    assert_non_null(mkdtemp(dir));
    at_err err = {0};
    assert_int_equal(at_nmt_random_model("tiny", "f32", dir, 1, NULL, &err), 0);
    at_nmt_model *m = at_nmt_model_load(dir, &err);
    if (!m) fail_msg("%s", err.msg);
    at_nmt_model_free(m);
    assert_int_equal(at_nmt_random_model("no-such", "f16", dir, 1, NULL, &err), AT_E_INVALID);
    assert_int_equal(at_nmt_random_model("tiny", "q4_0", dir, 1, NULL, &err), AT_E_INVALID);
    remove_folder(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tiny_marian),
        cmocka_unit_test(test_tiny_m2m100),
        cmocka_unit_test(test_f32_and_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
