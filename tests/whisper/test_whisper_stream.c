/* test_whisper_stream.c - the streaming policy without a model:
 * LocalAgreement-2 on scripted hypotheses (a fake recogniser).  The VAD
 * is measured in tests/engines/test_vad.c. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "engines/asr/whisper/la2.h"

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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_la2_agreement),
        cmocka_unit_test(test_la2_repeat_guard),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
