/* test_whisper_stream.c - the streaming policy and the VAD without a
 * model: LocalAgreement-2 on scripted hypotheses (a fake recogniser),
 * and the VAD measured on LibriVox speech, digital silence, and white and
 * pink noise (the percentages are printed: docs/figures.md). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/audio.h"
#include "engines/asr/whisper/la2.h"
#include "engines/asr/whisper/vad.h"

typedef struct evs {
    char finals[8][128];
    double fstart[8], fend[8];
    int n_final;
    char partial[256];
} evs;

static int on_ev(void *u, const at_asr_event *e)
{
    evs *v = u;
    if (e->is_final) {
        if (v->n_final < 8) {
            snprintf(v->finals[v->n_final], 128, "%s", e->text);
            v->fstart[v->n_final] = e->start;
            v->fend[v->n_final] = e->end;
        }
        v->n_final++;
    } else {
        snprintf(v->partial, sizeof v->partial, "%s", e->text);
    }
    return 0;
}

static void test_la2_agreement(void **st)
{
    (void)st;
    at_err err;
    at_la2 *p = at_la2_new(&err);
    evs v = {0};
    size_t done;
    at_la2_word h1[] = {{" The", 1.0, 1.2}, {" cat", 1.2, 1.5}};
    assert_int_equal(at_la2_insert(p, h1, 2, &done, on_ev, &v, &err), 0);
    assert_int_equal(v.n_final, 0); /* one hypothesis: nothing agreed yet */
    assert_string_equal(v.partial, "The cat");
    assert_int_equal(done, 0);
    at_la2_word h2[] = {{" The", 1.0, 1.2}, {" cat", 1.2, 1.5}, {" sat", 1.6, 1.9}};
    assert_int_equal(at_la2_insert(p, h2, 3, &done, on_ev, &v, &err), 0);
    assert_int_equal(v.n_final, 1);
    assert_string_equal(v.finals[0], "The cat");
    assert_true(fabs(v.fstart[0] - 1.0) < 1e-9 && fabs(v.fend[0] - 1.5) < 1e-9);
    assert_string_equal(v.partial, "sat");
    assert_int_equal(done, 2);
    /* the buffer still holds "The cat": re-decoded, it is skipped; case
     * and punctuation do not break agreement */
    at_la2_word h3[] = {{" The", 1.0, 1.2}, {" cat", 1.2, 1.5}, {" Sat,", 1.6, 1.9}, {" on", 2.0, 2.1}};
    assert_int_equal(at_la2_insert(p, h3, 4, &done, on_ev, &v, &err), 0);
    assert_int_equal(v.n_final, 2);
    assert_string_equal(v.finals[1], "Sat,");
    assert_int_equal(done, 3);
    assert_string_equal(v.partial, "on");
    /* after a trim at 1.5 s the hypothesis starts later; a repeated tail
     * word at the junction ("Sat") is not emitted twice */
    at_la2_word h4[] = {{" sat", 1.95, 1.99}, {" on", 2.0, 2.1}, {" the", 2.1, 2.3}};
    assert_int_equal(at_la2_insert(p, h4, 3, &done, on_ev, &v, &err), 0);
    assert_int_equal(v.n_final, 3);
    assert_string_equal(v.finals[2], "on");
    /* flush at utterance end: the tail becomes final */
    assert_int_equal(at_la2_flush(p, on_ev, &v, &err), 0);
    assert_int_equal(v.n_final, 4);
    assert_string_equal(v.finals[3], "the");
    assert_int_equal(at_la2_pending(p), 0);
    assert_string_equal(at_la2_prompt(p), "The cat Sat, on the");
    /* a changed hypothesis commits nothing new */
    at_la2_word h5[] = {{" mat", 2.4, 2.6}};
    at_la2_word h6[] = {{" hat", 2.4, 2.6}};
    at_la2_insert(p, h5, 1, NULL, on_ev, &v, &err);
    at_la2_insert(p, h6, 1, NULL, on_ev, &v, &err);
    assert_int_equal(v.n_final, 4);
    at_la2_free(p);
}

static void test_la2_repeat_guard(void **st)
{
    (void)st;
    at_err err;
    at_la2 *p = at_la2_new(&err);
    evs v = {0};
    /* the phantom "Thank you." over and over: the second is dropped */
    for (int i = 0; i < 3; i++) {
        at_la2_word w[] = {{" Thank", 3.0 * i, 3.0 * i + 0.5}, {" you.", 3.0 * i + 0.5, 3.0 * i + 1}};
        at_la2_insert(p, w, 2, NULL, on_ev, &v, &err);
        at_la2_flush(p, on_ev, &v, &err);
    }
    assert_int_equal(v.n_final, 1);
    assert_int_equal(at_la2_repeats_dropped(p), 2);
    at_la2_free(p);
}

/* Percentage of 20 ms frames flagged as speech, and utterances. */
static double vad_percent(const float *x, size_t n, int *utts)
{
    at_err err;
    at_vad *v = at_vad_new(NULL, &err);
    size_t speech = 0, frames = 0;
    for (size_t off = 0; off + AT_VAD_FRAME <= n; off += AT_VAD_FRAME, frames++)
        speech += (size_t)at_vad_frame(v, x + off, NULL, NULL);
    at_vad_reset(v);
    *utts = 0;
    for (size_t off = 0; off < n; off += 1600) {
        int started = 0, ended = 0;
        size_t k = n - off < 1600 ? n - off : 1600;
        at_vad_feed(v, x + off, k, &started, &ended, NULL);
        *utts += started;
    }
    at_vad_free(v);
    return frames ? 100.0 * (double)speech / (double)frames : 0;
}

static void test_vad_measured(void **st)
{
    (void)st;
    const char *clips[] = {"sense_and_sensibility_01_austen_64kb-0870.wav",
                           "sense_and_sensibility_01_austen_64kb-0880.wav",
                           "sense_and_sensibility_01_austen_64kb-0890.wav",
                           "sense_and_sensibility_01_austen_64kb-0920.wav",
                           "sense_and_sensibility_01_austen_64kb-0930.wav", NULL};
    char path[512];
    at_err err;
    for (int i = 0; clips[i]; i++) {
        snprintf(path, sizeof path, "/usr/share/pocketsphinx/test/data/librivox/%s", clips[i]);
        at_audio a;
        if (at_audio_decode_file(path, 0, &a, &err) != 0 || at_audio_resample(&a, 16000, &err) != 0) {
            fprintf(stderr, "skip %s: %s\n", path, err.msg);
            continue;
        }
        int utts;
        double pct = vad_percent(a.samples, a.n, &utts);
        printf("vad speech %-50s %5.1f%% frames, %d utterances\n", clips[i], pct, utts);
        assert_true(pct > 40.0);
        assert_true(utts >= 1);
        at_audio_free(&a);
    }
    size_t n = 16000 * 10;
    float *x = calloc(n, sizeof *x);
    int utts;
    double pct = vad_percent(x, n, &utts);
    printf("vad digital silence: %5.1f%% frames, %d utterances\n", pct, utts);
    assert_true(pct == 0 && utts == 0);
    uint64_t r = 88172645463325252ULL;
    double b0 = 0, b1 = 0, b2 = 0;
    for (int kind = 0; kind < 2; kind++)
        for (int level = 0; level < 2; level++) {
            float amp = level ? 0.3f : 0.03f;
            for (size_t i = 0; i < n; i++) {
                r ^= r << 13; r ^= r >> 7; r ^= r << 17;
                double w = (double)(r >> 11) / 9007199254740992.0 * 2 - 1;
                if (kind == 1) { /* pink: Paul Kellet's economy filter */
                    b0 = 0.99765 * b0 + w * 0.0990460;
                    b1 = 0.96300 * b1 + w * 0.2965164;
                    b2 = 0.57000 * b2 + w * 1.0526913;
                    w = (b0 + b1 + b2 + w * 0.1848) * 0.25;
                }
                x[i] = (float)(amp * w);
            }
            pct = vad_percent(x, n, &utts);
            printf("vad %s noise amp %.2f: %5.1f%% frames, %d utterances\n",
                   kind ? "pink" : "white", amp, pct, utts);
            assert_true(pct < 2.0);
            assert_int_equal(utts, 0);
        }
    free(x);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_la2_agreement),
        cmocka_unit_test(test_la2_repeat_guard),
        cmocka_unit_test(test_vad_measured),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
