/* test_nmt_generate.c - transformers' generate() in C (generate.h): the
 * search on small language models whose answers are worked out by hand in
 * the comments (beam search finding what greedy misses, the processors,
 * the stopping rules), the beams' caches following their sequences, the
 * configuration files, and the oracles' generate() outputs through the
 * real models and through `audio-translator mt-check`. */
#include <cjson/cJSON.h>
#include <math.h>
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
#include "nn/npy.h"

/* ---------------------------------------------------------- toy decoder */

/* A language model over a few tokens whose next-token probabilities
 * depend on the whole history, which its "cache" keeps: the search must
 * hand every beam the history of its own sequence. */
#define TOY_MAX 64
typedef struct toy_kv {
    int tok[TOY_MAX], n;
} toy_kv;

typedef struct toy {
    int V;
    /* next-token log-probabilities for a history */
    void (*next)(const struct toy *t, const int *hist, int n, float *out);
    uint64_t seed;
    int decodes; /* sequences decoded, all calls */
} toy;

static int toy_decode(void *user, const at_nmt_seq *seqs, int n, at_err *err)
{
    toy *t = user;
    for (int i = 0; i < n; i++) {
        toy_kv *kv = (toy_kv *)seqs[i].kv;
        if (kv->n + seqs[i].n > TOY_MAX) return at_err_set(err, AT_E_TOO_LARGE, "toy history full");
        memcpy(kv->tok + kv->n, seqs[i].tokens, (size_t)seqs[i].n * sizeof(int));
        kv->n += seqs[i].n;
        if (seqs[i].logits) t->next(t, kv->tok, kv->n, seqs[i].logits);
        t->decodes++;
    }
    return 0;
}

static at_nmt_kv *toy_kv_new(void *user, int n_ctx, at_err *err)
{
    (void)user;
    (void)n_ctx;
    (void)err;
    return (at_nmt_kv *)calloc(1, sizeof(toy_kv));
}

static void toy_kv_free(void *user, at_nmt_kv *kv)
{
    (void)user;
    free(kv);
}

static int toy_kv_copy(void *user, at_nmt_kv *dst, const at_nmt_kv *src, at_err *err)
{
    (void)user;
    (void)err;
    memcpy(dst, src, sizeof(toy_kv));
    return 0;
}

static at_nmt_decoder toy_decoder(toy *t)
{
    return (at_nmt_decoder){t, t->V, TOY_MAX, toy_decode, toy_kv_new, toy_kv_free, toy_kv_copy};
}

/* Tokens: 0 eos, 1 start, 2 and 3 words.
 *   after [1]:        eos .1, 2 .5, 3 .4
 *   after [1 2]:      eos .3, 2 .35, 3 .35
 *   after [1 3]:      eos .9, 2 .05, 3 .05
 *   after 3+ tokens:  eos .9, 2 .05, 3 .05
 * Greedy takes 2 (.5), then 2 (the first of a tie), then eos: [1 2 2 0],
 * probability .5 * .35 * .9 = .1575.  [1 3 0] has .4 * .9 = .36. */
static void hand_next(const toy *t, const int *h, int n, float *out)
{
    static const float p1[] = {.1f, 1e-9f, .5f, .4f}, p12[] = {.3f, 1e-9f, .35f, .35f},
                       p13[] = {.9f, 1e-9f, .05f, .05f};
    const float *p = n == 1 ? p1 : n == 2 && h[1] == 2 ? p12 : p13;
    for (int i = 0; i < t->V; i++) out[i] = logf(p[i]);
}

/* An eos that ranks below the beams does not finish a hypothesis:
 *   after [1]:        eos .2, 2 .45, 3 .35   ([1 0] ranks third of four)
 *   after 2+ tokens:  eos .01, 2 .495, 3 .495
 * With two beams, no length penalty and max_length 4, the answer is
 * [1 2 2 2] (-2.21); were [1 0] kept, its -1.61 would win. */
static void low_eos_next(const toy *t, const int *h, int n, float *out)
{
    static const float p1[] = {.2f, 1e-9f, .45f, .35f}, pn[] = {.01f, 1e-9f, .495f, .495f};
    (void)h;
    for (int i = 0; i < t->V; i++) out[i] = logf(n == 1 ? p1[i] : pn[i]);
}

static at_nmt_gen hand_gen(int beams)
{
    at_nmt_gen g;
    memset(&g, 0, sizeof g);
    g.num_beams = beams;
    g.max_length = 10;
    g.length_penalty = 1.0f;
    g.early_stopping = AT_NMT_STOP_EARLY;
    g.decoder_start_id = 1;
    g.eos[0] = 0;
    g.n_eos = 1;
    g.forced_bos_id = g.forced_eos_id = -1;
    return g;
}

/* Runs one sentence and compares its tokens with want (ended by -1). */
static void expect(toy *t, const at_nmt_gen *g, int forced_bos, const int *want)
{
    at_nmt_decoder d = toy_decoder(t);
    at_nmt_job job = {(const at_nmt_memory *)t, forced_bos, 0, NULL, 0, 0};
    at_err err = {0};
    if (at_nmt_generate_on(&d, g, &job, 1, &err)) fail_msg("generate: %s", err.msg);
    int n = 0;
    while (want[n] >= 0) n++;
    char got[256] = "", exp[256] = "";
    for (int i = 0; i < job.n_tokens; i++)
        snprintf(got + strlen(got), sizeof got - strlen(got), " %d", job.tokens[i]);
    for (int i = 0; i < n; i++) snprintf(exp + strlen(exp), sizeof exp - strlen(exp), " %d", want[i]);
    if (strcmp(got, exp)) fail_msg("tokens [%s ], expected [%s ]", got, exp);
    free(job.tokens);
}

static void test_greedy_and_beam(void **state)
{
    (void)state;
    toy t = {4, hand_next, 0, 0};
    at_nmt_gen g = hand_gen(1);
    expect(&t, &g, -1, (const int[]){1, 2, 2, 0, -1});
    /* Two beams: step 1 keeps [1 2] (-0.69) and [1 3] (-0.92); step 2's
     * best continuation is [1 3 0] (-1.02, rank 0: finished, -1.02 / 2);
     * step 3 finishes [1 2 2 0] and [1 2 3 0] (-1.85 / 3 = -0.62 each):
     * two finished, early stopping: the best is [1 3 0]. */
    g = hand_gen(2);
    at_nmt_decoder d = toy_decoder(&t);
    at_nmt_job job = {(const at_nmt_memory *)&t, -1, 0, NULL, 0, 0};
    at_err err = {0};
    assert_int_equal(at_nmt_generate_on(&d, &g, &job, 1, &err), 0);
    assert_int_equal(job.n_tokens, 3);
    assert_int_equal(job.tokens[1], 3);
    assert_int_equal(job.tokens[2], 0);
    assert_float_equal(job.score, (logf(.4f) + logf(.9f)) / 2, 1e-5);
    free(job.tokens);
    /* length_penalty 0 scores by the sum alone: [1 3 0] still wins */
    g.length_penalty = 0;
    expect(&t, &g, -1, (const int[]){1, 3, 0, -1});
    toy low = {4, low_eos_next, 0, 0};
    g.max_length = 4;
    expect(&low, &g, -1, (const int[]){1, 2, 2, 2, -1});
}

static void test_processors(void **state)
{
    (void)state;
    toy t = {4, hand_next, 0, 0};
    at_nmt_gen g = hand_gen(1);
    /* forced BOS: the first generated token */
    expect(&t, &g, 3, (const int[]){1, 3, 0, -1});
    /* forced EOS at max_length - 1 */
    g.max_length = 3;
    g.forced_eos_id = 0;
    expect(&t, &g, -1, (const int[]){1, 2, 0, -1});
    /* max_length without a forced eos: cut after 3 tokens */
    g.forced_eos_id = -1;
    expect(&t, &g, -1, (const int[]){1, 2, 2, -1});
    /* a sentence's own lower max_length, beside one without */
    {
        g = hand_gen(1);
        at_nmt_decoder d = toy_decoder(&t);
        at_nmt_job jobs[2] = {{(const at_nmt_memory *)&t, -1, 3, NULL, 0, 0},
                              {(const at_nmt_memory *)&t, -1, 0, NULL, 0, 0}};
        at_err err = {0};
        assert_int_equal(at_nmt_generate_on(&d, &g, jobs, 2, &err), 0);
        assert_int_equal(jobs[0].n_tokens, 3);
        assert_int_equal(jobs[1].n_tokens, 4);
        free(jobs[0].tokens);
        free(jobs[1].tokens);
    }
    /* bad words: 2 never; then "2 2" only (after [1 2], 3 beats eos) */
    g = hand_gen(1);
    g.bad[0] = 2;
    g.bad_end[0] = 1;
    g.n_bad_seqs = 1;
    expect(&t, &g, -1, (const int[]){1, 3, 0, -1});
    g.bad[0] = 2;
    g.bad[1] = 2;
    g.bad_end[0] = 2;
    expect(&t, &g, -1, (const int[]){1, 2, 3, 0, -1});
    /* a bad word that is the eos is ignored, as transformers ignores it */
    g.bad[0] = 0;
    g.bad_end[0] = 1;
    expect(&t, &g, -1, (const int[]){1, 2, 2, 0, -1});
    /* min_length 5: no eos while fewer than 5 tokens are there */
    g = hand_gen(1);
    g.min_length = 5;
    expect(&t, &g, -1, (const int[]){1, 2, 2, 2, 2, 0, -1});
    /* no_repeat_ngram_size 1: no token twice: after [1 2], 3 */
    g = hand_gen(1);
    g.no_repeat_ngram_size = 1;
    expect(&t, &g, -1, (const int[]){1, 2, 3, 0, -1});
    /* two eos ids: 2 ends the sentence too */
    g = hand_gen(1);
    g.eos[1] = 2;
    g.n_eos = 2;
    expect(&t, &g, -1, (const int[]){1, 2, -1});
}

/* Pseudo-random log-probabilities of the whole history (a hash of it):
 * any beam given another's cache scores differently. */
static void hashed_next(const toy *t, const int *h, int n, float *out)
{
    uint64_t x = t->seed * 0x9E3779B97F4A7C15ull;
    for (int i = 0; i < n; i++) x = (x ^ (uint64_t)h[i]) * 0x100000001B3ull + 0x632BE59BD9B4E019ull;
    for (int i = 0; i < t->V; i++) {
        x ^= x >> 29;
        x *= 0xBF58476D1CE4E5B9ull;
        x ^= x >> 32;
        out[i] = (float)((x >> 11) * (1.0 / 9007199254740992.0)) * 6.0f;
    }
    float mx = out[0];
    for (int i = 1; i < t->V; i++) mx = out[i] > mx ? out[i] : mx;
    double s = 0;
    for (int i = 0; i < t->V; i++) s += exp(out[i] - mx);
    for (int i = 0; i < t->V; i++) out[i] -= mx + (float)log(s);
}

/* The score a finished hypothesis must carry: its log-probability from
 * scratch, divided by its generated length to the power lp. */
static double rescore(toy *t, const int *tok, int n, float lp, int forced)
{
    float lpv[64];
    double sum = 0;
    for (int i = 1; i < n; i++) {
        hashed_next(t, tok, i, lpv);
        sum += i == 1 && forced ? 0 : lpv[tok[i]]; /* a forced token scores 0 */
    }
    return sum / pow(n - 1, lp);
}

static void test_beams_keep_their_caches(void **state)
{
    (void)state;
    static const at_nmt_stopping stops[] = {AT_NMT_STOP_HEURISTIC, AT_NMT_STOP_EARLY, AT_NMT_STOP_NEVER};
    static const float lps[] = {1.0f, 0.0f, 2.0f, -0.5f};
    int checked = 0;
    for (uint64_t seed = 1; seed <= 60; seed++) {
        toy t = {12, hashed_next, seed, 0};
        at_nmt_gen g = hand_gen(2 + (int)(seed % 5));
        g.max_length = 4 + (int)(seed % 9);
        g.early_stopping = stops[seed % 3];
        g.length_penalty = lps[seed % 4];
        at_nmt_decoder d = toy_decoder(&t);
        /* three sentences in one batch, the second with a forced first
         * token; the first and third are the same sentence */
        at_nmt_job jobs[3] = {{(const at_nmt_memory *)&t, -1, 0, NULL, 0, 0},
                              {(const at_nmt_memory *)&t, 5, 0, NULL, 0, 0},
                              {(const at_nmt_memory *)&t, -1, 0, NULL, 0, 0}};
        at_err err = {0};
        if (at_nmt_generate_on(&d, &g, jobs, 3, &err)) fail_msg("seed %d: %s", (int)seed, err.msg);
        for (int j = 0; j < 3; j++) {
            assert_true(jobs[j].n_tokens >= 2 && jobs[j].n_tokens <= g.max_length);
            assert_int_equal(jobs[j].tokens[0], 1);
            if (j == 1) assert_int_equal(jobs[j].tokens[1], 5);
            double want = rescore(&t, jobs[j].tokens, jobs[j].n_tokens, g.length_penalty, j == 1);
            if (fabs(want - jobs[j].score) > 1e-4 * (1 + fabs(want)))
                fail_msg("seed %d sentence %d: score %g, the sequence's own %g", (int)seed, j, jobs[j].score,
                         want);
            checked++;
        }
        assert_int_equal(jobs[0].n_tokens, jobs[2].n_tokens);
        assert_memory_equal(jobs[0].tokens, jobs[2].tokens, (size_t)jobs[0].n_tokens * sizeof(int));
        /* alone, the first sentence gives the same answer */
        at_nmt_job one = {(const at_nmt_memory *)&t, -1, 0, NULL, 0, 0};
        assert_int_equal(at_nmt_generate_on(&d, &g, &one, 1, &err), 0);
        assert_int_equal(one.n_tokens, jobs[0].n_tokens);
        assert_memory_equal(one.tokens, jobs[0].tokens, (size_t)one.n_tokens * sizeof(int));
        free(one.tokens);
        for (int j = 0; j < 3; j++) free(jobs[j].tokens);
    }
    assert_int_equal(checked, 180);
}

static void test_refusals(void **state)
{
    (void)state;
    toy t = {4, hand_next, 0, 0};
    at_nmt_decoder d = toy_decoder(&t);
    at_nmt_job job = {(const at_nmt_memory *)&t, -1, 0, NULL, 0, 0};
    at_err err = {0};
    at_nmt_gen g = hand_gen(3); /* 3 beams need 6 candidates of 4 tokens */
    assert_int_not_equal(at_nmt_generate_on(&d, &g, &job, 1, &err), 0);
    assert_non_null(strstr(err.msg, "too small"));
    g = hand_gen(AT_NMT_MAX_BEAMS + 1);
    assert_int_not_equal(at_nmt_generate_on(&d, &g, &job, 1, &err), 0);
    assert_non_null(strstr(err.msg, "num_beams"));
    g = hand_gen(1);
    g.max_length = TOY_MAX + 1;
    assert_int_not_equal(at_nmt_generate_on(&d, &g, &job, 1, &err), 0);
    assert_non_null(strstr(err.msg, "max_length"));
    /* a forced token past the vocabulary (a tokenizer's language id for
     * another model) was written past the logits */
    g = hand_gen(1);
    job.forced_bos_id = 4;
    assert_int_equal(at_nmt_generate_on(&d, &g, &job, 1, &err), AT_E_INVALID);
    assert_non_null(strstr(err.msg, "outside the decoder's vocabulary of 4"));
    job.forced_bos_id = -1;
    g.forced_eos_id = 7;
    assert_int_equal(at_nmt_generate_on(&d, &g, &job, 1, &err), AT_E_INVALID);
    assert_null(job.tokens);
}

/* ------------------------------------------------------- oracles, config */

static const char *oracles(void)
{
    const char *d = getenv("AT_ORACLES_DIR");
    return d ? d : "tests/data/oracles";
}

static cJSON *read_json(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) fail_msg("%s missing", path);
    static char buf[1 << 17];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    cJSON *j = cJSON_Parse(buf);
    if (!j) fail_msg("%s: not JSON", path);
    return j;
}

static int json_ids(const cJSON *a, int *out, int cap)
{
    int n = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, a)
    {
        if (n < cap) out[n] = (int)e->valuedouble;
        n++;
    }
    return n;
}

/* transformers' generate() with 1 and 4 beams, max_new_tokens 20, on the
 * oracles' random-weight models (NLLB's language token forced first). */
static void check_generate(const char *name, int forced)
{
    char dir[4096], path[4200];
    snprintf(dir, sizeof dir, "%s/%s", oracles(), name);
    snprintf(path, sizeof path, "%s/reference.json", dir);
    cJSON *ref = read_json(path);
    int src[64], want[64];
    int n_src = json_ids(cJSON_GetObjectItem(ref, "source_ids"), src, 64);
    at_err err = {0};
    at_nmt_model *m = at_nmt_model_load(dir, &err);
    if (!m) fail_msg("%s: %s", dir, err.msg);
    at_compute *pool = at_compute_new(2, &err);
    at_nmt_state *s = at_nmt_state_new(m, pool, &err);
    at_nmt_memory *mem = at_nmt_memory_new(m, n_src, &err);
    assert_non_null(mem);
    const int *sp = src;
    assert_int_equal(at_nmt_encode(s, &sp, &n_src, 1, &mem, &err), 0);
    for (int beams = 1; beams <= 4; beams += 3) {
        at_nmt_gen g;
        assert_int_equal(at_nmt_gen_load(dir, m, &g, &err), 0);
        g.num_beams = beams;
        g.max_length = 21;
        g.early_stopping = AT_NMT_STOP_EARLY;
        char key[32];
        snprintf(key, sizeof key, "generate_beams%d", beams);
        int n_want = json_ids(cJSON_GetObjectItem(ref, key), want, 64);
        at_nmt_job job = {mem, forced, 0, NULL, 0, 0};
        if (at_nmt_generate(s, &g, &job, 1, &err)) fail_msg("%s: %s", name, err.msg);
        assert_int_equal(job.n_tokens, n_want);
        assert_memory_equal(job.tokens, want, (size_t)n_want * sizeof(int));
        free(job.tokens);
    }
    at_nmt_memory_free(mem);
    at_nmt_state_free(s);
    at_compute_free(pool);
    at_nmt_model_free(m);
    cJSON_Delete(ref);
}

static void test_oracle_generate(void **state)
{
    (void)state;
    check_generate("marian-mini", -1);
    check_generate("m2m100-mini", 1990);
}

static double max_diff(const at_npy *a, const at_npy *b)
{
    if (at_npy_count(a) != at_npy_count(b)) return INFINITY;
    double d = 0;
    for (size_t i = 0; i < at_npy_count(a); i++) {
        double x = fabs((double)a->data[i] - b->data[i]);
        if (!(x <= d)) d = x;
    }
    return d;
}

/* The verification command, as anyone runs it: its JSON and dumps against
 * the oracle's. */
static void check_cli(const char *name, const char *prefix)
{
    char dir[4096], path[4200], cmd[12288], out[] = "/tmp/at-mtcheck-XXXXXX";
    snprintf(dir, sizeof dir, "%s/%s", oracles(), name);
    snprintf(path, sizeof path, "%s/reference.json", dir);
    cJSON *ref = read_json(path);
    int src[64], greedy[64];
    int n_src = json_ids(cJSON_GetObjectItem(ref, "source_ids"), src, 64);
    int n_greedy = json_ids(cJSON_GetObjectItem(ref, "greedy_tokens"), greedy, 64);
    int n_prefix = strchr(prefix, ',') ? 2 : 1;
    char ids[1024] = "";
    for (int i = 0; i < n_src; i++)
        snprintf(ids + strlen(ids), sizeof ids - strlen(ids), "%s%d", i ? "," : "", src[i]);
    assert_non_null(mkdtemp(out));
    snprintf(cmd, sizeof cmd,
             "%s/audio-translator mt-check --model %s --source-ids %s --prefix %s --steps %d --num-beams 4 "
             "--dump-dir %s --threads 2",
             getenv("AT_BUILD_DIR"), dir, ids, prefix, n_greedy - n_prefix, out);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf - 1, p);
    buf[n] = 0;
    assert_int_equal(pclose(p), 0);
    cJSON *j = cJSON_Parse(buf);
    if (!j) fail_msg("mt-check printed: %s", buf);
    int got[64], n_got = json_ids(cJSON_GetObjectItem(j, "greedy_tokens"), got, 64);
    assert_int_equal(n_got, n_greedy);
    assert_memory_equal(got, greedy, (size_t)n_greedy * sizeof(int));
    int want[64], n_want = json_ids(cJSON_GetObjectItem(ref, "generate_beams4"), want, 64);
    n_got = json_ids(cJSON_GetObjectItem(j, "generate"), got, 64);
    assert_int_equal(n_got, n_want);
    assert_memory_equal(got, want, (size_t)n_want * sizeof(int));
    static const char *const files[] = {"encoder_out.npy", "logits.npy"};
    for (int f = 0; f < 2; f++) {
        at_npy a, b;
        at_err err = {0};
        snprintf(path, sizeof path, "%s/%s", out, files[f]);
        if (at_npy_read(path, &a, 0, &err)) fail_msg("%s", err.msg);
        unlink(path);
        snprintf(path, sizeof path, "%s/%s", dir, files[f]);
        if (at_npy_read(path, &b, 0, &err)) fail_msg("%s", err.msg);
        double d = max_diff(&a, &b);
        if (!(d <= 5e-3)) fail_msg("%s %s differs by %g", name, files[f], d);
        at_npy_free(&a);
        at_npy_free(&b);
    }
    rmdir(out);
    cJSON_Delete(j);
    cJSON_Delete(ref);
}

static void test_mt_check_cli(void **state)
{
    (void)state;
    check_cli("marian-mini", "1999");
    check_cli("m2m100-mini", "2,1990");
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* generation_config.json over config.json, as transformers reads a folder
 * (Marian's published files look like this one). */
static void test_config_files(void **state)
{
    (void)state;
    char dir[] = "/tmp/at-gencfg-XXXXXX", path[256], cfg[4200], buf[8192];
    assert_non_null(mkdtemp(dir));
    snprintf(cfg, sizeof cfg, "%s/marian-mini/config.json", oracles());
    FILE *f = fopen(cfg, "rb");
    assert_non_null(f);
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    snprintf(path, sizeof path, "%s/config.json", dir);
    write_file(path, buf);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    snprintf(cfg, sizeof cfg, "%s/marian-mini/model.safetensors", oracles());
    assert_int_equal(symlink(cfg, path), 0);
    at_err err = {0};
    at_nmt_model *m = at_nmt_model_load(dir, &err);
    if (!m) fail_msg("%s", err.msg);
    at_nmt_gen g;
    snprintf(path, sizeof path, "%s/generation_config.json", dir);
    write_file(path,
               "{\"bad_words_ids\": [[1999]], \"decoder_start_token_id\": 1999, \"eos_token_id\": 0,"
               " \"forced_eos_token_id\": 0, \"max_length\": 512, \"num_beams\": 4, \"pad_token_id\": 1999,"
               " \"renormalize_logits\": true, \"early_stopping\": \"never\", \"length_penalty\": 0.6}");
    assert_int_equal(at_nmt_gen_load(dir, m, &g, &err), 0);
    assert_int_equal(g.num_beams, 4);
    assert_int_equal(g.max_length, 512);
    assert_int_equal(g.n_bad_seqs, 1);
    assert_int_equal(g.bad[0], 1999);
    assert_int_equal(g.forced_eos_id, 0);
    assert_int_equal(g.renormalize, 1);
    assert_int_equal(g.early_stopping, AT_NMT_STOP_NEVER);
    assert_float_equal(g.length_penalty, 0.6, 1e-6);
    write_file(path,
               "{\"eos_token_id\": [0, 7], \"early_stopping\": true, \"bad_words_ids\": [[5, 6], [7]]}");
    assert_int_equal(at_nmt_gen_load(dir, m, &g, &err), 0);
    assert_int_equal(g.n_eos, 2);
    assert_int_equal(g.eos[1], 7);
    assert_int_equal(g.early_stopping, AT_NMT_STOP_EARLY);
    assert_int_equal(g.n_bad_seqs, 2);
    assert_int_equal(g.bad_end[0], 2);
    assert_int_equal(g.bad_end[1], 3);
    /* refused, each with the key named */
    static const char *const bad[][2] = {{"{\"num_beams\": 0}", "num_beams"},
                                         {"{\"early_stopping\": \"sometimes\"}", "early_stopping"},
                                         {"{\"max_length\": 100000}", "max_length"},
                                         {"{\"eos_token_id\": 2000}", "eos_token_id"},
                                         {"{\"bad_words_ids\": [5]}", "bad_words_ids"},
                                         {"{\"bad_words_ids\": [[]]}", "bad_words_ids"},
                                         {"{\"num_beams\": 4", "generation_config.json"}};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        write_file(path, bad[i][0]);
        if (!at_nmt_gen_load(dir, m, &g, &err)) fail_msg("%s accepted", bad[i][0]);
        if (!strstr(err.msg, bad[i][1]))
            fail_msg("%s: \"%s\" does not name %s", bad[i][0], err.msg, bad[i][1]);
    }
    unlink(path);
    assert_int_equal(at_nmt_gen_load(dir, m, &g, &err), 0); /* the file is optional */
    assert_int_equal(g.num_beams, 1);
    assert_int_equal(g.max_length, 20);
    at_nmt_model_free(m);
    snprintf(path, sizeof path, "%s/config.json", dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    unlink(path);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_greedy_and_beam),
        cmocka_unit_test(test_processors),
        cmocka_unit_test(test_beams_keep_their_caches),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_oracle_generate),
        cmocka_unit_test(test_mt_check_cli),
        cmocka_unit_test(test_config_files),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
