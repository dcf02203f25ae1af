/* test_mt_neural.c - the neural translate engine (neural.h) on folders laid
 * out as users download them (tests/common/nmt_folder.h: the oracles'
 * random-weight models with SentencePiece tokenizers): the pairs a folder
 * gives, sentence by sentence translation with the separators kept, the
 * same answers batched or alone and from concurrent callers, and clear
 * errors.  The models are random, so the text is gibberish: what is
 * checked is what must hold for any model. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "engines/mt/neural.h"
#include "engines/mt/router.h"
#include "nmt_folder.h"

typedef struct fixture {
    char *marian, *m2m;
    at_mt_engine *e;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    if (!f) return -1;
    f->marian = at_test_nmt_folder("marian", "opus-mt-en-es", "uni_nfkc");
    f->m2m = at_test_nmt_folder("m2m100", "m2m100-mini", "bpe_nfkc");
    if (!f->marian || !f->m2m) return -1;
    const char *dirs[] = {f->m2m, f->marian}; /* Marian still comes first */
    at_mt_neural_config c = {2, 0, 0, 0, 0};
    at_err err = {0};
    if (!(f->e = at_mt_neural_new(dirs, 2, &c, &err))) {
        fprintf(stderr, "neural: %s\n", err.msg);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    if (!f) return 0;
    at_mt_engine_free(f->e);
    at_test_nmt_folder_remove(f->marian);
    at_test_nmt_folder_remove(f->m2m);
    free(f);
    return 0;
}

static char *tr(at_mt_engine *e, const char *s, const char *t, const char *text)
{
    char *out = NULL;
    at_err err = {0};
    if (at_mt_translate(e, s, t, text, &out, &err)) fail_msg("%s->%s \"%s\": %s", s, t, text, err.msg);
    return out;
}

static void test_pairs(void **state)
{
    fixture *f = *state;
    char via[128];
    /* en->es from the Marian folder's name, and its route */
    assert_true(at_mt_engine_has_pair(f->e, "en", "es"));
    assert_string_equal(at_mt_route(f->e, "en", "es", via, sizeof via), "opus-mt-en-es");
    /* every pair of M2M100's languages from the other */
    assert_true(at_mt_engine_has_pair(f->e, "es", "en"));
    assert_true(at_mt_engine_has_pair(f->e, "de", "ja"));
    assert_string_equal(at_mt_route(f->e, "de", "ja", via, sizeof via), "m2m100-mini");
    assert_false(at_mt_engine_has_pair(f->e, "en", "en"));
    size_t n;
    const at_mt_pair *p = at_mt_engine_pairs(f->e, &n);
    assert_true(n > 90 * 90);
    for (size_t i = 1; i < n; i++) assert_true(at_mt_pair_cmp(&p[i - 1], &p[i]) < 0); /* sorted, no repeats */
}

static void test_sentences_and_batches(void **state)
{
    fixture *f = *state;
    static const char *const langs[][2] = {{"en", "es"}, {"fr", "de"}};
    for (int l = 0; l < 2; l++) {
        const char *s = langs[l][0], *t = langs[l][1];
        char *a = tr(f->e, s, t, "Hello world."), *b = tr(f->e, s, t, "How are you?");
        /* two sentences: each translated as alone, the separators kept */
        char *both = tr(f->e, s, t, "  Hello world.\n\nHow are you?\t");
        char want[4096];
        snprintf(want, sizeof want, "  %s\n\n%s\t", a, b);
        assert_string_equal(both, want);
        /* the random Marian model repeats a word piece; the random M2M100
         * one repeats an id past its tokenizer's words, which decodes to
         * nothing */
        if (l == 0) assert_true(strlen(a) > 0);
        /* many texts in one call: the same answers, empty ones kept */
        const char *texts[3] = {"How are you?", "", "Hello world."};
        char *outs[3];
        at_err err = {0};
        assert_int_equal(at_mt_translate_many(f->e, s, t, texts, 3, outs, &err), 0);
        assert_string_equal(outs[0], b);
        assert_string_equal(outs[1], "");
        assert_string_equal(outs[2], a);
        for (int i = 0; i < 3; i++) free(outs[i]);
        free(a);
        free(b);
        free(both);
    }
}

typedef struct job {
    at_mt_engine *e;
    const char *text;
    char *out;
    int rc;
} job;

static void *worker(void *arg)
{
    job *j = arg;
    at_err err = {0};
    j->rc = at_mt_translate(j->e, "en", "es", j->text, &j->out, &err);
    return NULL;
}

/* Callers at once share batches (whoever finds the model idle runs the
 * queue); each still gets its own text's translation. */
static void test_concurrent_callers(void **state)
{
    fixture *f = *state;
    static const char *const texts[] = {
        "One sentence.", "Two of them. Here!", "Third text", "A fourth? Yes.", "Fifth.", "Six.",
        "Seven.",        "Eight, last."};
    enum { N = sizeof texts / sizeof *texts };
    char *alone[N];
    for (int i = 0; i < N; i++) alone[i] = tr(f->e, "en", "es", texts[i]);
    for (int round = 0; round < 3; round++) {
        pthread_t th[N];
        job j[N];
        for (int i = 0; i < N; i++) {
            j[i] = (job){f->e, texts[i], NULL, -1};
            assert_int_equal(pthread_create(&th[i], NULL, worker, &j[i]), 0);
        }
        for (int i = 0; i < N; i++) {
            pthread_join(th[i], NULL);
            assert_int_equal(j[i].rc, 0);
            assert_string_equal(j[i].out, alone[i]);
            free(j[i].out);
        }
    }
    for (int i = 0; i < N; i++) free(alone[i]);
}

/* A multi-target Marian model gets its >>xxx<< token first: under a
 * pair's name the first token of the target language, under a group's
 * name every language it has. */
static void test_target_tokens(void **state)
{
    (void)state;
    static const char *const toks[] = {">>yue_Hant<<", ">>cmn_Hans<<", ">>cmn_Hant<<", ">>spa<<", NULL};
    char *zh = at_test_nmt_folder_tokens("marian", "opus-mt-en-zh", "uni_nfkc", toks);
    char *grp = at_test_nmt_folder_tokens("marian", "opus-mt-en-mul", "uni_nfkc", toks);
    assert_non_null(zh);
    assert_non_null(grp);
    at_err err = {0};
    const char *d1[] = {zh}, *d2[] = {grp};
    at_mt_engine *a = at_mt_neural_new(d1, 1, NULL, &err), *b = at_mt_neural_new(d2, 1, NULL, &err);
    if (!a || !b) fail_msg("%s", err.msg);
    char via[128];
    assert_string_equal(at_mt_route(a, "en", "zh", via, sizeof via), "opus-mt-en-zh >>cmn_Hans<<");
    size_t n;
    at_mt_engine_pairs(a, &n);
    assert_int_equal(n, 1);
    at_mt_engine_pairs(b, &n);
    assert_int_equal(n, 2); /* en-es, en-zh (yue has no ISO 639-1 code here) */
    assert_string_equal(at_mt_route(b, "en", "es", via, sizeof via), "opus-mt-en-mul >>spa<<");
    char *out = tr(a, "en", "zh", "Hello.");
    free(out);
    at_mt_engine_free(a);
    at_mt_engine_free(b);
    at_test_nmt_folder_remove(zh);
    at_test_nmt_folder_remove(grp);
}

static void test_errors(void **state)
{
    fixture *f = *state;
    char *out = NULL;
    at_err err = {0};
    /* a pair no model has */
    assert_int_not_equal(at_mt_translate(f->e, "en", "xx", "hi", &out, &err), 0);
    assert_int_equal(err.code, AT_E_UNSUPPORTED);
    /* a folder whose languages cannot be told */
    char *odd = at_test_nmt_folder("marian", "my-model", "uni_nfkc");
    assert_non_null(odd);
    const char *dirs[] = {odd};
    assert_null(at_mt_neural_new(dirs, 1, NULL, &err));
    assert_non_null(strstr(err.msg, "opus-mt-SRC-TGT"));
    at_test_nmt_folder_remove(odd);
    /* a folder without a model */
    const char *none[] = {"/nonexistent/opus-mt-en-de"};
    assert_null(at_mt_neural_new(none, 1, NULL, &err));
    assert_non_null(strstr(err.msg, "/nonexistent/opus-mt-en-de"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_pairs),
                                       cmocka_unit_test(test_sentences_and_batches),
                                       cmocka_unit_test(test_concurrent_callers),
                                       cmocka_unit_test(test_target_tokens), cmocka_unit_test(test_errors)};
    return cmocka_run_group_tests(tests, setup, teardown);
}
