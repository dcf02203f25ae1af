/* test_vits_tokenizer.c - the VITS tokenizer (transformers' VitsTokenizer)
 * and espeak-ng phonemes as the phonemizer package makes them.
 *
 * tests/data/vits/tokenizer/cases.json holds texts for small voice folders
 * modelled on facebook/mms-tts-eng, kakao-enterprise/vits-ljs and friends,
 * with the ids (and phonemes) transformers + phonemizer give, written by
 * make_fixtures.py there (a transcription of VitsTokenizer, and the real
 * phonemizer 3.3 on this libespeak-ng 1.51).  The mms-tts-eng ids of two
 * sentences are also spelled out below, copied from transformers' own
 * test_tokenizer_integration.  Then bad input, bad vocabularies, a fake
 * phonemiser, and phonemisation from threads while espeak synthesises. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <cjson/cJSON.h>

#include "engines/tts/espeak.h"
#include "engines/tts/vits/tokenizer.h"

static char g_dir[512]; /* tests/data/vits/tokenizer */

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    buf[n] = '\0';
    if (len) *len = (size_t)n;
    return buf;
}

static at_vits_tokenizer *voice(const char *name)
{
    char path[600];
    snprintf(path, sizeof path, "%s/%s", g_dir, name);
    at_err err;
    at_vits_tokenizer *t = at_vits_tokenizer_load(path, &err);
    if (!t) fprintf(stderr, "load %s: %s\n", path, err.msg);
    assert_non_null(t);
    return t;
}

static at_vits_tokenizer *from_json(const char *vocab, const char *config, at_err *err)
{
    return at_vits_tokenizer_load_mem(vocab, strlen(vocab), config, config ? strlen(config) : 0, err);
}

static void expect_ids(const at_vits_tokenizer *t, const char *text, const int *want, int n_want)
{
    int *ids = NULL, n = -1;
    at_err err;
    int rc = at_vits_tokenizer_encode(t, text, at_espeak_phonemizer, NULL, &ids, &n, &err);
    if (rc) fprintf(stderr, "encode \"%s\": %s\n", text, err.msg);
    assert_int_equal(rc, 0);
    int same = n == n_want;
    for (int i = 0; same && i < n; i++) same = ids[i] == want[i];
    if (!same) {
        fprintf(stderr, "\"%s\":\n got ", text);
        for (int i = 0; i < n; i++) fprintf(stderr, "%d ", ids[i]);
        fprintf(stderr, "\nwant ");
        for (int i = 0; i < n_want; i++) fprintf(stderr, "%d ", want[i]);
        fprintf(stderr, "\n");
    }
    assert_true(same);
    free(ids);
}

static int encode_rc(const at_vits_tokenizer *t, const char *text, at_vits_phonemize_fn fn, at_err *err)
{
    int *ids = (int *)1, n = -1;
    int rc = at_vits_tokenizer_encode(t, text, fn, NULL, &ids, &n, err);
    if (rc) {
        assert_null(ids); /* nothing to free on failure */
        assert_int_equal(n, 0);
    }
    free(ids);
    return rc;
}

/* ---- the fixtures ------------------------------------------------------- */

static void test_cases(void **st)
{
    (void)st;
    char path[600];
    snprintf(path, sizeof path, "%s/cases.json", g_dir);
    char *json = slurp(path, NULL);
    assert_non_null(json);
    cJSON *root = cJSON_Parse(json);
    assert_true(cJSON_IsArray(root));
    int n_cases = 0, n_phon = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, root)
    {
        const char *name = cJSON_GetObjectItem(c, "voice")->valuestring;
        const char *text = cJSON_GetObjectItem(c, "text")->valuestring;
        const cJSON *error = cJSON_GetObjectItem(c, "error");
        const cJSON *phon = cJSON_GetObjectItem(c, "phonemes");
        at_vits_tokenizer *t = voice(name);
        at_err err;
        if (phon) { /* the phonemiser alone, against phonemizer's output */
            char *out = NULL;
            assert_int_equal(at_espeak_phonemize("en-us", text, &out, &err), 0);
            if (strcmp(out, phon->valuestring) != 0)
                fprintf(stderr, "phonemes of \"%s\":\n got \"%s\"\nwant \"%s\"\n", text, out,
                        phon->valuestring);
            assert_string_equal(out, phon->valuestring);
            free(out);
            n_phon++;
        }
        if (error) {
            int rc = encode_rc(t, text, at_espeak_phonemizer, &err);
            int want = strcmp(error->valuestring, "unsupported") == 0 ? AT_E_UNSUPPORTED : AT_E_INVALID;
            if (rc != want) fprintf(stderr, "\"%s\": rc %d (%s), want %d\n", text, rc, err.msg, want);
            assert_int_equal(rc, want);
            if (want == AT_E_UNSUPPORTED) assert_non_null(strstr(err.msg, "uroman"));
        } else {
            const cJSON *arr = cJSON_GetObjectItem(c, "ids");
            int n = cJSON_GetArraySize(arr);
            int *want = calloc((size_t)n + 1, sizeof *want);
            assert_non_null(want);
            for (int i = 0; i < n; i++) want[i] = cJSON_GetArrayItem(arr, i)->valueint;
            expect_ids(t, text, want, n);
            free(want);
        }
        at_vits_tokenizer_free(t);
        n_cases++;
    }
    assert_true(n_cases >= 30);
    assert_true(n_phon >= 10);
    cJSON_Delete(root);
    free(json);
}

/* transformers' test_tokenizer_integration on facebook/mms-tts-eng
 * (padding removed): independent of make_fixtures.py. */
static void test_mms_eng_integration(void **st)
{
    (void)st;
    static const int fox[] = {0, 33, 0, 6,  0, 7,  0, 19, 0, 34, 0, 4,  0, 18, 0, 12, 0, 0,  0, 19, 0, 24,
                              0, 25, 0, 22, 0, 9,  0, 29, 0, 19, 0, 20, 0, 22, 0, 31, 0, 19, 0, 16, 0, 4,
                              0, 17, 0, 13, 0, 8,  0, 19, 0, 22, 0, 32, 0, 7,  0, 25, 0, 19, 0, 33, 0, 6,
                              0, 7,  0, 19, 0, 21, 0, 26, 0, 2,  0, 3,  0, 19, 0, 5,  0, 22, 0, 37, 0};
    static const int pad[] = {0, 9,  0, 7,  0, 19, 0, 4,  0, 8,  0, 7,  0, 19, 0, 0,  0, 19, 0, 26,
                              0, 8,  0, 19, 0, 22, 0, 4,  0, 25, 0, 19, 0, 13, 0, 26, 0, 5,  0, 5,
                              0, 18, 0, 29, 0, 37, 0, 19, 0, 33, 0, 22, 0, 0,  0, 7,  0, 29, 0};
    at_vits_tokenizer *t = voice("mms-eng");
    assert_false(at_vits_tokenizer_phonemizes(t));
    assert_string_equal(at_vits_tokenizer_language(t), "eng");
    assert_int_equal(at_vits_tokenizer_vocab_size(t), 38);
    assert_int_equal(at_vits_tokenizer_max_id(t), 38);
    expect_ids(t, "The quick brown fox! Jumps over the lazy dog...", fox, (int)(sizeof fox / sizeof fox[0]));
    expect_ids(t, "We use k as our padding token", pad, (int)(sizeof pad / sizeof pad[0]));
    at_vits_tokenizer_free(t);
}

/* The character path spelled out: lowercasing, dropping, the blanks. */
static void test_characters(void **st)
{
    (void)st;
    at_vits_tokenizer *t = voice("mms-eng");
    /* h=6 e=7 y=3 ' '=19 -> blank (0) around and between */
    expect_ids(t, "HEY hey!", (const int[]){0, 6, 0, 7, 0, 3, 0, 19, 0, 6, 0, 7, 0, 3, 0}, 15);
    /* unknown characters go before the blanks; the ends are stripped */
    expect_ids(t, " ¿é? h ", (const int[]){0, 6, 0}, 3);
    at_vits_tokenizer_free(t);
    t = voice("mms-eng-noblank");
    expect_ids(t, "Hey", (const int[]){6, 7, 3}, 3);
    at_vits_tokenizer_free(t);
    /* Romanian: t comma (U+021B) is read as t cedilla (U+0163, id 25). */
    t = voice("mms-ron");
    assert_string_equal(at_vits_tokenizer_language(t), "ron");
    expect_ids(t, "\xC8\x9B", (const int[]){0, 25, 0}, 3); /* ț */
    expect_ids(t, "\xC8\x9A", (const int[]){0, 25, 0}, 3); /* Ț: lowered, then replaced */
    expect_ids(t, "\xC5\xA3", (const int[]){0, 25, 0}, 3); /* ţ */
    at_vits_tokenizer_free(t);
    /* is_uroman: ASCII goes through, anything else is refused clearly. */
    t = voice("mms-uroman");
    assert_true(at_vits_tokenizer_needs_uroman(t));
    at_err err;
    expect_ids(t, "ok", (const int[]){0, 22, 0, 0, 0}, 5);
    assert_int_equal(encode_rc(t, "caf\xC3\xA9", NULL, &err), AT_E_UNSUPPORTED);
    assert_string_equal(err.msg, "this voice needs uroman romanisation, which is not supported");
    at_vits_tokenizer_free(t);
    /* unk_token in vocab.json: unknown characters become it (hf-test: 44);
     * pad_token in the text is one token, no blanks around it. */
    t = voice("hf-test");
    expect_ids(t, "V!", (const int[]){0, 44, 0, 44, 0}, 5);
    expect_ids(t, "<pad><pad>", (const int[]){43, 43}, 2);
    at_vits_tokenizer_free(t);
}

/* ---- phonemes ---------------------------------------------------------- */

typedef struct fake {
    const char *reply; /* NULL: fail */
    char lang[32];
    char text[256];
} fake;

static int fake_phonemizer(void *user, const char *language, const char *text, char **out, at_err *err)
{
    fake *f = user;
    snprintf(f->lang, sizeof f->lang, "%s", language);
    snprintf(f->text, sizeof f->text, "%s", text);
    if (!f->reply) return at_err_set(err, AT_E_ENGINE, "fake phonemiser failed");
    *out = strdup(f->reply);
    return 0;
}

static void test_phoneme_path(void **st)
{
    (void)st;
    at_vits_tokenizer *t = voice("vits-ljs");
    assert_true(at_vits_tokenizer_phonemizes(t));
    assert_string_equal(at_vits_tokenizer_language(t), "en-us");
    assert_string_equal(at_vits_tokenizer_phoneme_language(t), "en-us");
    at_err err;
    int *ids = NULL, n = 0;
    /* No phonemiser for a phoneme voice. */
    assert_int_equal(encode_rc(t, "hello", NULL, &err), AT_E_UNSUPPORTED);
    /* What the phonemiser gets (normalised text, "en-us") and what comes
     * back: whitespace runs become one space, unknown symbols dropped. */
    fake f = {.reply = "a \t\n b(c"};
    assert_int_equal(at_vits_tokenizer_encode(t, "Hi \xC3\x89T\xC3\x89", fake_phonemizer, &f, &ids, &n, &err),
                     0);
    assert_string_equal(f.lang, "en-us");
    assert_string_equal(f.text, "Hi \xC3\xA9T\xC3\xA9"); /* É is not in the vocabulary: lowered; T is */
    int want[] = {0, 43, 0, 16, 0, 44, 0, 45, 0};        /* a ' ' b c */
    assert_int_equal(n, 9);
    assert_memory_equal(ids, want, sizeof want);
    free(ids);
    f.reply = NULL;
    assert_int_equal(at_vits_tokenizer_encode(t, "x", fake_phonemizer, &f, &ids, &n, &err), AT_E_ENGINE);
    assert_string_equal(err.msg, "fake phonemiser failed");
    f.reply = "\xFF";
    assert_int_equal(at_vits_tokenizer_encode(t, "x", fake_phonemizer, &f, &ids, &n, &err), AT_E_ENGINE);
    f.reply = "(((";
    assert_int_equal(at_vits_tokenizer_encode(t, "x", fake_phonemizer, &f, &ids, &n, &err), AT_E_INVALID);
    at_vits_tokenizer_free(t);

    /* The espeak phonemiser on its own. */
    char *out = NULL;
    assert_int_equal(at_espeak_phonemize("en-us", "", &out, &err), 0);
    assert_string_equal(out, "");
    free(out);
    assert_int_equal(at_espeak_phonemize("en-us", "\n \n", &out, &err), 0);
    assert_string_equal(out, "");
    free(out);
    assert_int_equal(at_espeak_phonemize("xx-nope", "hello", &out, &err), AT_E_UNSUPPORTED);
    assert_null(out);
    assert_int_equal(at_espeak_phonemize("en-us", "bad \xC3", &out, &err), AT_E_INVALID);
    assert_int_equal(at_espeak_phonemize("en-us", NULL, &out, &err), AT_E_INVALID);
    /* Another language, by phonemizer's voice lookup (phonemizer gives
     * "bɔ̃ʒˈuʁ, lə- mˈɔ̃d!"). */
    assert_int_equal(at_espeak_phonemize("fr-fr", "Bonjour, le monde!", &out, &err), 0);
    assert_string_equal(out,
                        "b\xC9\x94\xCC\x83\xCA\x92\xCB\x88u\xCA\x81, l\xC9\x99- m\xCB\x88\xC9\x94\xCC\x83"
                        "d!");
    free(out);
}

/* ---- bad input ---------------------------------------------------------- */

static void test_bad_text(void **st)
{
    (void)st;
    at_vits_tokenizer *t = voice("mms-eng");
    at_err err;
    static const char *const bad[] = {"\xFF",
                                      "ok \xC3",
                                      "\xC0\xAF",
                                      "\xED\xA0\x80",
                                      "\xF4\x90\x80\x80",
                                      "a\x80"
                                      "b",
                                      "\xE2\x82"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(encode_rc(t, bad[i], NULL, &err), AT_E_INVALID);
        assert_non_null(strstr(err.msg, "UTF-8"));
    }
    assert_int_equal(encode_rc(t, "", NULL, &err), AT_E_INVALID);
    assert_int_equal(encode_rc(t, "?!", NULL, &err), AT_E_INVALID);
    assert_non_null(strstr(err.msg, "nothing this voice can speak"));
    int *ids = NULL, n = 0;
    assert_int_equal(at_vits_tokenizer_encode(NULL, "a", NULL, NULL, &ids, &n, &err), AT_E_INVALID);
    assert_int_equal(at_vits_tokenizer_encode(t, NULL, NULL, NULL, &ids, &n, &err), AT_E_INVALID);

    /* The limit: AT_VITS_TOK_MAX_TEXT bytes pass, 100 KB are refused. */
    size_t big = 100 * 1000;
    char *s = malloc(big + 1);
    assert_non_null(s);
    memset(s, 'a', big);
    s[AT_VITS_TOK_MAX_TEXT] = '\0';
    assert_int_equal(at_vits_tokenizer_encode(t, s, NULL, NULL, &ids, &n, &err), 0);
    assert_int_equal(n, 2 * AT_VITS_TOK_MAX_TEXT + 1);
    free(ids);
    s[AT_VITS_TOK_MAX_TEXT] = 'a';
    s[big] = '\0';
    assert_int_equal(encode_rc(t, s, NULL, &err), AT_E_TOO_LARGE);
    char *out = NULL;
    assert_int_equal(at_espeak_phonemize("en-us", s, &out, &err), AT_E_TOO_LARGE);
    assert_null(out);
    free(s);
    at_vits_tokenizer_free(t);
}

static void test_bad_vocab(void **st)
{
    (void)st;
    static const struct {
        const char *vocab, *config;
        int want;
    } bad[] = {
        {"{\"a\": 0", NULL, AT_E_CORRUPT},                           /* not JSON */
        {"[\"a\", \"b\"]", NULL, AT_E_CORRUPT},                      /* not a dict */
        {"\"a\"", NULL, AT_E_CORRUPT},                               /* not a dict */
        {"{}", NULL, AT_E_CORRUPT},                                  /* empty */
        {"{\"_\": 0, \"a\": -1}", NULL, AT_E_CORRUPT},               /* negative id */
        {"{\"_\": 0, \"a\": 1e9}", NULL, AT_E_CORRUPT},              /* huge id */
        {"{\"_\": 0, \"a\": 65536}", NULL, AT_E_CORRUPT},            /* just past the bound */
        {"{\"_\": 0, \"a\": 1.5}", NULL, AT_E_CORRUPT},              /* not an integer */
        {"{\"_\": 0, \"a\": \"1\"}", NULL, AT_E_CORRUPT},            /* not a number */
        {"{\"_\": 0, \"a\": null}", NULL, AT_E_CORRUPT},             /* not a number */
        {"{\"_\": 0, \"\xFF\": 1}", NULL, AT_E_CORRUPT},             /* key not UTF-8 */
        {"{\"a\": 1}", "{\"add_blank\": true}", AT_E_CORRUPT},       /* no blank id 0 */
        {"{\"_\": 0}", "{\"phonemize\": fals", AT_E_CORRUPT},        /* config not JSON */
        {"{\"_\": 0}", "[]", AT_E_CORRUPT},                          /* config not a dict */
        {"{\"_\": 0}", "{\"pad_token\": 5}", AT_E_CORRUPT},          /* token not a string */
        {"{\"_\": 0}", "{\"unk_token\": {\"x\": 1}}", AT_E_CORRUPT}, /* AddedToken without content */
        {"{\"_\": 0}", "{\"language\": 7}", AT_E_CORRUPT},
    };
    at_err err;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        at_vits_tokenizer *t = from_json(bad[i].vocab, bad[i].config, &err);
        if (t) fprintf(stderr, "case %zu loaded\n", i);
        assert_null(t);
        assert_int_equal(err.code, bad[i].want);
    }
    /* Too large. */
    size_t big = AT_VITS_TOK_MAX_FILE + 1;
    char *s = malloc(big + 1);
    assert_non_null(s);
    memset(s, ' ', big);
    s[0] = '{';
    s[big - 1] = '}';
    s[big] = '\0';
    assert_null(at_vits_tokenizer_load_mem(s, big, NULL, 0, &err));
    assert_int_equal(err.code, AT_E_TOO_LARGE);
    free(s);
    /* Missing folder / vocab.json; no tokenizer_config.json = defaults
     * (phonemize, normalize, add_blank). */
    assert_null(at_vits_tokenizer_load("/nonexistent/vits", &err));
    assert_int_equal(err.code, AT_E_IO);
    at_vits_tokenizer *t = from_json("{\"_\": 0, \"a\": 1}", NULL, &err);
    assert_non_null(t);
    assert_true(at_vits_tokenizer_phonemizes(t));
    assert_false(at_vits_tokenizer_needs_uroman(t));
    assert_string_equal(at_vits_tokenizer_language(t), "");
    at_vits_tokenizer_free(t);

    /* Duplicate keys as Python's json.load: the last id wins.  Null
     * special tokens are allowed (no such token). */
    t = from_json("{\"_\": 0, \"a\": 1, \"b\": 2, \"a\": 3}",
                  "{\"phonemize\": false, \"pad_token\": null, \"unk_token\": {\"content\": \"b\"}}", &err);
    assert_non_null(t);
    assert_int_equal(at_vits_tokenizer_vocab_size(t), 3);
    assert_int_equal(at_vits_tokenizer_max_id(t), 4);
    expect_ids(t, "aA", (const int[]){0, 3, 0, 3, 0}, 5);
    at_vits_tokenizer_free(t);
    /* No unk token: pad ("a", in the vocabulary) does not stand in for it. */
    t = from_json("{\"_\": 0, \"a\": 1}",
                  "{\"phonemize\": false, \"normalize\": false, \"unk_token\": null, "
                  "\"pad_token\": \"a\"}",
                  &err);
    assert_non_null(t);
    expect_ids(t, "xax", (const int[]){1}, 1);
    at_vits_tokenizer_free(t);
    /* Not normalising, unk "b" in the vocabulary: unknown characters are
     * unk, and unk itself is a special token (no blanks around it). */
    t = from_json("{\"_\": 0, \"a\": 1, \"b\": 2}",
                  "{\"phonemize\": 0, \"normalize\": false, \"unk_token\": \"b\"}", &err);
    assert_non_null(t);
    expect_ids(t, "aAb", (const int[]){0, 1, 0, 2, 0, 2}, 6);
    at_vits_tokenizer_free(t);
}

/* ---- threads ------------------------------------------------------------ */

typedef struct worker {
    const char *const *texts;
    const char *const *want;
    size_t n;
    int rounds;
    int failures;
} worker;

static const char *const g_texts[] = {"Hello, world.", "The quick brown fox jumps over the lazy dog!",
                                      "I have 2 cats.", "It costs $3.50, on 12/05/2023; really?!"};

static void *phonemize_main(void *p)
{
    worker *w = p;
    for (int r = 0; r < w->rounds; r++)
        for (size_t i = 0; i < w->n; i++) {
            char *out = NULL;
            at_err err;
            if (at_espeak_phonemize("en-us", w->texts[i], &out, &err) != 0 || strcmp(out, w->want[i]) != 0)
                w->failures++;
            free(out);
        }
    return NULL;
}

typedef struct synth {
    at_tts_engine *e;
    int rounds, failures;
    size_t samples;
} synth;

static int count_cb(void *user, const int16_t *pcm, size_t n)
{
    (void)pcm;
    ((synth *)user)->samples += n;
    return 0;
}

static void *synth_main(void *p)
{
    synth *s = p;
    const at_tts_voice *v = at_tts_engine_find_voice(s->e, "en-us");
    for (int r = 0; r < s->rounds; r++) {
        at_err err;
        if (!v || at_tts_synthesize(s->e, v, "Synthesis runs while other threads phonemise.", 1.0f, count_cb,
                                    s, &err) != 0)
            s->failures++;
    }
    return NULL;
}

static void test_threads(void **st)
{
    (void)st;
    enum { N = sizeof g_texts / sizeof g_texts[0] };
    char *want[N];
    at_err err;
    for (size_t i = 0; i < N; i++)
        assert_int_equal(at_espeak_phonemize("en-us", g_texts[i], &want[i], &err), 0);
    at_tts_engine *e = at_tts_espeak_new(NULL, &err);
    assert_non_null(e);
    /* the same output after an engine listed the voices, and after
     * synthesis loaded its own voice */
    synth s = {e, 1, 0, 0};
    for (int round = 0; round < 2; round++) {
        if (round == 1) synth_main(&s);
        assert_int_equal(s.failures, 0);
        for (size_t i = 0; i < N; i++) {
            char *out = NULL;
            assert_int_equal(at_espeak_phonemize("en-us", g_texts[i], &out, &err), 0);
            assert_string_equal(out, want[i]);
            free(out);
        }
    }
    worker w[2] = {{g_texts, (const char *const *)want, N, 6, 0},
                   {g_texts, (const char *const *)want, N, 6, 0}};
    s = (synth){e, 6, 0, 0};
    pthread_t th[3];
    assert_int_equal(pthread_create(&th[0], NULL, synth_main, &s), 0);
    assert_int_equal(pthread_create(&th[1], NULL, phonemize_main, &w[0]), 0);
    assert_int_equal(pthread_create(&th[2], NULL, phonemize_main, &w[1]), 0);
    for (int i = 0; i < 3; i++) pthread_join(th[i], NULL);
    assert_int_equal(s.failures, 0);
    assert_true(s.samples > 0);
    assert_int_equal(w[0].failures, 0);
    assert_int_equal(w[1].failures, 0);
    /* and the tokenizer on top, with the engine alive */
    at_vits_tokenizer *t = voice("vits-ljs");
    int *ids = NULL, n = 0;
    assert_int_equal(at_vits_tokenizer_encode(t, g_texts[0], at_espeak_phonemizer, NULL, &ids, &n, &err), 0);
    assert_int_equal(n, 31);
    free(ids);
    at_vits_tokenizer_free(t);
    at_tts_engine_free(e);
    for (size_t i = 0; i < N; i++) free(want[i]);
}

int main(void)
{
    const char *src = getenv("AT_SOURCE_DIR");
    snprintf(g_dir, sizeof g_dir, "%s/tests/data/vits/tokenizer", src ? src : ".");
    const struct CMUnitTest tests[] = {
        /* first: phonemisation before any espeak engine exists */
        cmocka_unit_test(test_cases),      cmocka_unit_test(test_mms_eng_integration),
        cmocka_unit_test(test_characters), cmocka_unit_test(test_phoneme_path),
        cmocka_unit_test(test_bad_text),   cmocka_unit_test(test_bad_vocab),
        cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
