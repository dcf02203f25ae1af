/* The vits engine (engines/tts/vits.h): a neural voice from a Hugging Face
 * folder, through the at_tts interface the services use.  Character
 * voices (MMS-TTS's English vocabulary on the vits-mini oracle model) and
 * phoneme voices (vits-ljs's vocabulary, espeak-ng phonemes, on a tiny
 * random model), a request's parameters, text of any length streamed and
 * cancellable, and the refusals. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>
#include <unistd.h>

#include "common/vits_folder.h"
#include "engines/tts/vits.h"
#include "tools/tools.h"

typedef struct {
    int16_t *pcm;
    size_t n, cap;
    int chunks;
    int cancel_after; /* stop after this many chunks; 0 = never */
    double first_s;   /* when the first chunk came */
} sink;

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + t.tv_nsec / 1e9;
}

static int sink_cb(void *user, const int16_t *pcm, size_t n)
{
    sink *s = user;
    if (!s->chunks) s->first_s = now_s();
    if (s->n + n > s->cap) {
        s->cap = (s->n + n) * 2;
        s->pcm = realloc(s->pcm, s->cap * sizeof *s->pcm);
        assert_non_null(s->pcm);
    }
    memcpy(s->pcm + s->n, pcm, n * sizeof *pcm);
    s->n += n;
    s->chunks++;
    return s->cancel_after && s->chunks >= s->cancel_after;
}

typedef struct fixture {
    char *chars_dir, *phon_dir, *phon_model;
    at_tts_engine *e;
} fixture;

static int setup(void **st)
{
    fixture *f = calloc(1, sizeof *f);
    char tmpl[] = "/tmp/at-vits-model-XXXXXX";
    at_err err = {0};
    if (!f || !mkdtemp(tmpl)) return -1;
    f->phon_model = strdup(tmpl);
    if (at_vits_random_model("tiny-phonemes", "f32", f->phon_model, 5, NULL, &err)) {
        fprintf(stderr, "random model: %s\n", err.msg);
        return -1;
    }
    f->chars_dir = at_test_vits_folder("mms-tts-eng", "oracles/vits-mini", "vits/tokenizer/mms-eng");
    f->phon_dir = at_test_vits_folder("vits-ljs", f->phon_model, "vits/tokenizer/vits-ljs");
    if (!f->chars_dir || !f->phon_dir) return -1;
    const char *dirs[] = {f->chars_dir, f->phon_dir};
    at_tts_vits_config c = {2};
    if (!(f->e = at_tts_vits_new(dirs, 2, &c, &err))) {
        fprintf(stderr, "vits: %s\n", err.msg);
        return -1;
    }
    *st = f;
    return 0;
}

static int teardown(void **st)
{
    fixture *f = *st;
    at_tts_engine_free(f->e);
    at_test_vits_folder_remove(f->chars_dir);
    at_test_vits_folder_remove(f->phon_dir);
    char path[512];
    snprintf(path, sizeof path, "%s/config.json", f->phon_model);
    unlink(path);
    snprintf(path, sizeof path, "%s/model.safetensors", f->phon_model);
    unlink(path);
    rmdir(f->phon_model);
    free(f->phon_model);
    free(f);
    return 0;
}

static int say(at_tts_engine *e, const char *voice, const char *text, const at_tts_params *p, sink *s,
               at_err *err)
{
    const at_tts_voice *v = at_tts_engine_find_voice(e, voice);
    assert_non_null(v);
    at_tts_params d;
    at_tts_params_init(&d);
    return at_tts_synthesize_params(e, v, text, p ? p : &d, sink_cb, s, err);
}

static void voices_listed(void **st)
{
    fixture *f = *st;
    size_t n;
    const at_tts_voice *v = at_tts_engine_voices(f->e, &n);
    assert_int_equal(n, 2);
    assert_string_equal(v[0].name, "mms-tts-eng");
    assert_string_equal(v[0].language, "en"); /* from the folder's ISO 639-3 code */
    assert_int_equal(v[0].sample_rate, 16000);
    assert_string_equal(v[1].name, "vits-ljs");
    assert_string_equal(v[1].language, "en"); /* from the tokenizer's "en-us" */
    assert_int_equal(v[1].sample_rate, 8000);
    assert_true(v[0].neural && v[1].neural);
    assert_string_equal(at_tts_engine_name(f->e), "vits");
}

/* Each sentence's samples come as the decoder makes them; the oracle's
 * noise scales are 0, so the same text gives the same samples. */
static void characters_and_phonemes(void **st)
{
    fixture *f = *st;
    at_err err;
    sink a = {0}, b = {0}, c = {0};
    assert_int_equal(say(f->e, "mms-tts-eng", "Hello there.", NULL, &a, &err), 0);
    assert_int_equal(say(f->e, "mms-tts-eng", "HELLO THERE.", NULL, &b, &err), 0); /* lowercased */
    assert_true(a.n > 1000);
    assert_int_equal(a.n, b.n);
    assert_memory_equal(a.pcm, b.pcm, a.n * sizeof *a.pcm);
    /* two sentences: the second's audio follows the first's */
    assert_int_equal(say(f->e, "mms-tts-eng", "Hello there. Hello there.", NULL, &c, &err), 0);
    assert_int_equal(c.n, 2 * a.n);
    free(a.pcm);
    free(b.pcm);
    free(c.pcm);
    /* phonemes: espeak-ng's for the text, through vits-ljs's symbols */
    sink p = {0};
    if (say(f->e, "vits-ljs", "The quick brown fox jumps over the lazy dog!", NULL, &p, &err))
        fail_msg("vits-ljs: %s", err.msg);
    assert_true(p.n > 800);
    free(p.pcm);
}

static void request_parameters(void **st)
{
    fixture *f = *st;
    at_err err;
    at_tts_params p;
    at_tts_params_init(&p);
    p.noise_scale = 0.667f;
    p.noise_scale_duration = 0.8f;
    p.seed = 42;
    sink a = {0}, b = {0}, c = {0};
    assert_int_equal(say(f->e, "mms-tts-eng", "Hello there, friend.", &p, &a, &err), 0);
    assert_int_equal(say(f->e, "mms-tts-eng", "Hello there, friend.", &p, &b, &err), 0);
    p.seed = 43;
    assert_int_equal(say(f->e, "mms-tts-eng", "Hello there, friend.", &p, &c, &err), 0);
    assert_int_equal(a.n, b.n);
    assert_memory_equal(a.pcm, b.pcm, a.n * sizeof *a.pcm);
    assert_true(a.n != c.n || memcmp(a.pcm, c.pcm, a.n * sizeof *a.pcm) != 0);
    free(a.pcm);
    free(b.pcm);
    free(c.pcm);
    /* speed is the speaking rate: twice as fast, about half the frames */
    sink n1 = {0}, n2 = {0};
    at_tts_params_init(&p);
    assert_int_equal(say(f->e, "mms-tts-eng", "Hello there, friend.", &p, &n1, &err), 0);
    p.speed = 2.0f;
    assert_int_equal(say(f->e, "mms-tts-eng", "Hello there, friend.", &p, &n2, &err), 0);
    if (!(n2.n < n1.n * 0.6 && n2.n > n1.n * 0.4)) fail_msg("speed 2: %zu samples, 1: %zu", n2.n, n1.n);
    free(n1.pcm);
    free(n2.pcm);
}

/* 100 KB of text: the first audio comes after one sentence's work, and a
 * caller that stops listening stops the synthesis at once. */
static void long_text_streams_and_cancels(void **st)
{
    fixture *f = *st;
    size_t cap = 100 * 1024;
    char *text = malloc(cap + 64);
    assert_non_null(text);
    size_t len = 0;
    while (len < cap) len += (size_t)sprintf(text + len, "This is sentence number %zu of many. ", len);
    sink s = {.cancel_after = 2};
    at_err err;
    double t0 = now_s();
    assert_int_equal(say(f->e, "mms-tts-eng", text, NULL, &s, &err), AT_E_CANCELLED);
    double total = now_s() - t0;
    printf("  100 KB of text: first audio after %.0f ms, cancelled after %.0f ms\n", (s.first_s - t0) * 1e3,
           total * 1e3);
    assert_int_equal(s.chunks, 2);
    assert_true(total < 30); /* a whole 100 KB would be hours of audio */
    free(s.pcm);
    free(text);
}

static void refusals(void **st)
{
    fixture *f = *st;
    at_err err;
    sink s = {0};
    assert_int_equal(say(f->e, "mms-tts-eng", "", NULL, &s, &err), AT_E_INVALID);
    /* nothing the voice knows: Japanese to an English character voice */
    assert_int_equal(say(f->e, "mms-tts-eng", "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e", NULL, &s, &err),
                     AT_E_INVALID);
    assert_non_null(strstr(err.msg, "nothing"));
    assert_int_equal(say(f->e, "mms-tts-eng", "bad \xff utf-8", NULL, &s, &err), AT_E_INVALID);
    assert_non_null(strstr(err.msg, "UTF-8"));
    at_tts_params p;
    at_tts_params_init(&p);
    p.speaker_id = 1;
    assert_int_equal(say(f->e, "mms-tts-eng", "hello", &p, &s, &err), AT_E_INVALID);
    assert_non_null(strstr(err.msg, "one speaker"));
    assert_int_equal(s.n, 0);
    /* a folder whose vocabulary reaches past the model's embeddings */
    char *bad = at_test_vits_folder("bad-voice", "oracles/vits-mini", "vits/tokenizer/vits-ljs");
    assert_non_null(bad);
    const char *dirs[] = {bad};
    assert_null(at_tts_vits_new(dirs, 1, NULL, &err));
    assert_non_null(strstr(err.msg, "vocab.json"));
    at_test_vits_folder_remove(bad);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(voices_listed),      cmocka_unit_test(characters_and_phonemes),
        cmocka_unit_test(request_parameters), cmocka_unit_test(long_text_streams_and_cancels),
        cmocka_unit_test(refusals),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
