/* test_whisper_timing - the word-timestamp steps of OpenAI's timing.py:
 * median filter, dynamic time warping (with its tie order), the alignment
 * matrix, word splitting and punctuation merging, and the whole
 * alignment on scores whose path is known. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
/* cmocka after the standard headers */
#include <cmocka.h>

#include "engines/asr/whisper/timing.h"
#include "engines/asr/whisper/tokenizer.h"

static at_wtok *tok;

/* One token per byte, so a test spells its tokens as text. */
static int setup(void **st)
{
    (void)st;
    static char singles[256];
    const char *toks[256];
    size_t lens[256];
    for (int i = 0; i < 256; i++) {
        singles[i] = (char)i;
        toks[i] = &singles[i];
        lens[i] = 1;
    }
    at_whisper_special sp;
    at_wtok_layout(256, 2, &sp);
    at_err err;
    tok = at_wtok_new_bytes(toks, lens, 256, &sp, &err);
    return tok ? 0 : -1;
}

static int teardown(void **st)
{
    (void)st;
    at_wtok_free(tok);
    return 0;
}

static int spell(const char *s, int *ids)
{
    int n = 0;
    for (; *s; s++) ids[n++] = (unsigned char)*s;
    return n;
}

static void test_median(void **st)
{
    (void)st;
    /* width 3, reflected edges: [5 | 1 5 2 8 3 9 4 7 6 0 | 6] */
    float x[10] = {1, 5, 2, 8, 3, 9, 4, 7, 6, 0};
    const float want[10] = {5, 2, 5, 3, 8, 4, 7, 6, 6, 6};
    at_wtiming_median(x, 1, 10, 3);
    for (int i = 0; i < 10; i++) assert_true(x[i] == want[i]);
    /* width 7 over two rows: a lone spike goes, a plateau of four stays */
    float y[2][12] = {{0, 0, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0}, {0, 0, 0, 0, 9, 9, 9, 9, 0, 0, 0, 0}};
    at_wtiming_median(&y[0][0], 2, 12, 7);
    for (int i = 0; i < 12; i++) assert_true(y[0][i] == 0);
    assert_true(y[1][5] == 9 && y[1][6] == 9 && y[1][3] == 0);
    /* rows no longer than half the width are left alone */
    float z[3] = {3, 1, 2};
    at_wtiming_median(z, 1, 3, 7);
    assert_true(z[0] == 3 && z[1] == 1 && z[2] == 2);
}

static void test_dtw(void **st)
{
    (void)st;
    at_err err;
    int r[16], c[16];
    /* the cheap cells: (0,0) (0,1) (1,2) (2,3) (2,4) */
    const float cost[3][5] = {{0, 0, 9, 9, 9}, {9, 9, 0, 9, 9}, {9, 9, 9, 0, 0}};
    int n = at_wtiming_dtw(&cost[0][0], 3, 5, r, c, &err);
    assert_int_equal(n, 5);
    const int wr[] = {0, 0, 1, 2, 2}, wc[] = {0, 1, 2, 3, 4};
    for (int i = 0; i < n; i++) assert_true(r[i] == wr[i] && c[i] == wc[i]);
    /* ties: OpenAI's order prefers moving in time (left) over the
     * diagonal, so a flat 2 x 2 goes (0,0) (1,0) (1,1) */
    const float flat[4] = {0, 0, 0, 0};
    n = at_wtiming_dtw(flat, 2, 2, r, c, &err);
    assert_int_equal(n, 3);
    assert_true(r[0] == 0 && c[0] == 0 && r[1] == 1 && c[1] == 0 && r[2] == 1 && c[2] == 1);
    assert_true(at_wtiming_dtw(flat, 0, 2, r, c, &err) < 0);
}

static void test_split(void **st)
{
    (void)st;
    int ids[64], n = spell(" Hello, world! \xE2\x99\xAA ok", ids);
    at_wtiming_word *w;
    int nw;
    at_err err;
    assert_int_equal(at_wtiming_split(tok, "en", ids, n, &w, &nw, &err), 0);
    const char *want[] = {" Hello", ",", " world", "!", " \xE2\x99\xAA", " ok"};
    assert_int_equal(nw, 6);
    int t = 0;
    for (int i = 0; i < nw; i++) {
        assert_string_equal(w[i].text, want[i]);
        assert_int_equal(w[i].tok0, t);
        t += w[i].n_tok;
    }
    assert_int_equal(t, n);
    at_wtiming_words_free(w, nw);
    /* languages without spaces: every whole character is a word (the
     * three bytes of one character stay together) */
    n = spell("\xE4\xBD\xA0\xE5\xA5\xBD", ids);
    assert_int_equal(at_wtiming_split(tok, "zh", ids, n, &w, &nw, &err), 0);
    assert_int_equal(nw, 2);
    assert_string_equal(w[0].text, "\xE4\xBD\xA0");
    assert_int_equal(w[1].n_tok, 3);
    at_wtiming_words_free(w, nw);
}

static void test_merge_punctuation(void **st)
{
    (void)st;
    const char *in[] = {" \"", " Hello", ",", " world", "."};
    at_wtiming_word w[5];
    for (int i = 0; i < 5; i++) {
        w[i].text = strdup(in[i]);
        w[i].tok0 = i;
        w[i].n_tok = 1;
    }
    at_wtiming_merge_punctuation(w, 5);
    const char *want[] = {"", " \" Hello,", "", " world.", ""};
    const int ntok[] = {0, 3, 0, 2, 0};
    for (int i = 0; i < 5; i++) {
        assert_string_equal(w[i].text, want[i]);
        assert_int_equal(w[i].n_tok, ntok[i]);
        free(w[i].text);
    }
    assert_int_equal(w[1].tok0, 0);
}

/* Scores that put text row k (after <|notimestamps|>) on frames
 * [20k, 20k + 20): the path enters row k at frame 20k, 0.4 s a row. */
static void test_align(void **st)
{
    (void)st;
    int text[32], n_text = spell(" hi yo ok", text);
    int sot_len = 3, n_tok = sot_len + n_text + 2, F = 400;
    float *qk = calloc((size_t)n_tok * F, sizeof *qk), probs[64];
    for (int k = 0; k <= n_text; k++)
        for (int f = 20 * k; f < 20 * k + 20; f++) qk[(size_t)(sot_len + k) * F + f] = 10;
    for (int i = 0; i < n_tok; i++) probs[i] = 0.5f;
    at_wtiming_word *w;
    int nw;
    at_err err;
    assert_int_equal(at_wtiming_align(tok, "en", qk, 1, F, F, sot_len, text, n_text, probs, &w, &nw, &err),
                     0);
    assert_int_equal(nw, 3);
    const double start[] = {0.0, 1.2, 2.4}, end[] = {1.2, 2.4, 3.6};
    for (int i = 0; i < 3; i++) {
        assert_true(fabs(w[i].start - start[i]) < 1e-9);
        assert_true(fabs(w[i].end - end[i]) < 1e-9);
        assert_true(fabs(w[i].probability - 0.5f) < 1e-6f);
    }
    assert_string_equal(w[2].text, " ok");
    at_wtiming_words_free(w, nw);
    /* the frames past n_frames are not looked at: on 100 of them the
     * words squeeze into the first two seconds */
    assert_int_equal(at_wtiming_align(tok, "en", qk, 1, F, 100, sot_len, text, n_text, probs, &w, &nw, &err),
                     0);
    assert_int_equal(nw, 3);
    assert_true(w[2].end <= 2.0);
    at_wtiming_words_free(w, nw);
    free(qk);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_median), cmocka_unit_test(test_dtw),
        cmocka_unit_test(test_split),  cmocka_unit_test(test_merge_punctuation),
        cmocka_unit_test(test_align),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
