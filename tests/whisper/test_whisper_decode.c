/* test_whisper_decode.c - the decoding policy against small synthetic
 * score functions, with expected results worked out by hand.
 *
 * Vocabulary: ids 0..255 are the single bytes (so 'a' is 97), 256 = " -",
 * 257 = " '", 258/259 = space + the first one/two bytes of the music
 * symbols (so suppressing their first token does not ban the space); then
 * eot 260, sot 261, two languages 262 ("en") and 263 ("zh"), translate 264,
 * transcribe 265, startoflm 266, startofprev 267, nospeech 268,
 * notimestamps 269, timestamps from 270 (<|0.00|>).
 *
 * Scores: every logit is -100 unless a script sets it, so a token set to
 * 10 has probability ~1, and a token set to log(p) has probability ~p. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "engines/asr/whisper/decode.h"
#include "engines/asr/whisper/tokenizer.h"

#define BASE (-100.0f)

typedef struct synth synth;
/* Fills the logits after the sampled tokens smp[0..n). */
typedef void (*script_fn)(synth *s, const int *smp, int n, float *x);

struct synth {
    at_wtok *tok;
    const at_whisper_special *sp;
    int V;
    int max_seq; /* sequences the decoder may use */
    script_fn script;
    void (*at_sot)(synth *s, float *x); /* logits right after sot */
    int attempts;                       /* decode attempts (calls ending at sot) */
    int seek, n_frames, n_encodes;
    int copies;
    int batches; /* logits_batch calls with more than one sequence */
    float param;
    int aligns;       /* align calls */
    int align_off;    /* frame where the first text row's block starts */
    float align_prob; /* each token's probability */
    /* the initial tokens of each attempt's first step */
    int init[16][64];
    int n_init[16];
    int n_inits;
};

static int synth_logits(void *ctx, int seq, const int *tokens, int n, float *x, at_err *err)
{
    synth *s = ctx;
    (void)err;
    assert_true(seq >= 0 && seq < s->max_seq);
    assert_true(n > 0 && n <= 448);
    for (int v = 0; v < s->V; v++) x[v] = BASE;
    if (tokens[n - 1] == s->sp->sot) {
        s->attempts++;
        if (s->at_sot) s->at_sot(s, x);
        return 0;
    }
    int i = n - 1;
    while (i >= 0 && tokens[i] != s->sp->sot) i--;
    assert_true(i >= 0);
    int j = i + 3; /* sot, language, task */
    if (j < n && tokens[j] == s->sp->not_) j++;
    if (j == n && s->n_inits < 16) {
        s->n_init[s->n_inits] = n < 64 ? n : 64;
        memcpy(s->init[s->n_inits], tokens, (size_t)s->n_init[s->n_inits] * sizeof *tokens);
        s->n_inits++;
    }
    s->script(s, tokens + j, n - j, x);
    return 0;
}

/* The batch hook the engine implements, here one synth_logits per
 * sequence: decoding must give exactly what it gives without the hook. */
static int synth_logits_batch(void *ctx, int n, const int *seqs, const int *const *tokens,
                              const int *n_tokens, float *const *logits, at_err *err)
{
    synth *s = ctx;
    if (n > 1) s->batches++;
    for (int i = 0; i < n; i++) {
        int rc = synth_logits(ctx, seqs[i], tokens[i], n_tokens[i], logits[i], err);
        if (rc < 0) return rc;
    }
    return 0;
}

static int synth_copy(void *ctx, int dst, int src, at_err *err)
{
    synth *s = ctx;
    (void)err;
    assert_true(dst >= 0 && dst < s->max_seq && src >= 0 && src < s->max_seq);
    s->copies++;
    return 0;
}

static int synth_encode(void *ctx, int seek, int n_frames, at_err *err)
{
    synth *s = ctx;
    (void)err;
    s->seek = seek;
    s->n_frames = n_frames;
    s->n_encodes++;
    return 0;
}

/* Alignment scores that put row k after the sot sequence (k = 0:
 * <|notimestamps|>, then the text) on frames [off + 20k, off + 20k + 20);
 * align_off and align_prob hold for the window at seek 0, later windows
 * get offset 0 and probability 0.9. */
static int synth_align(void *ctx, const int *tokens, int n, int *n_frames, float **qk, int *n_heads,
                       float *probs, at_err *err)
{
    synth *s = ctx;
    (void)err;
    s->aligns++;
    assert_int_equal(tokens[0], s->sp->sot);
    assert_int_equal(tokens[3], s->sp->not_);
    assert_int_equal(tokens[n - 1], s->sp->eot);
    int F = *n_frames, off = s->seek == 0 ? s->align_off : 0;
    *qk = calloc((size_t)n * F, sizeof **qk);
    assert_non_null(*qk);
    for (int k = 0; k + 3 < n - 1; k++)
        for (int f = off + 20 * k; f < off + 20 * k + 20 && f < F; f++) (*qk)[(size_t)(3 + k) * F + f] = 10;
    for (int t = 0; t < n; t++) probs[t] = s->seek == 0 ? s->align_prob : 0.9f;
    *n_heads = 1;
    return 0;
}

static synth S;
static at_wdec_model M;

static int setup(void **st)
{
    (void)st;
    static char singles[256];
    const char *toks[260];
    size_t lens[260];
    for (int i = 0; i < 256; i++) {
        singles[i] = (char)i;
        toks[i] = &singles[i];
        lens[i] = 1;
    }
    toks[256] = " -";
    lens[256] = 2;
    toks[257] = " '";
    lens[257] = 2;
    toks[258] = " \xE2";
    lens[258] = 2;
    toks[259] = " \xE2\x99";
    lens[259] = 3;
    at_whisper_special sp;
    at_wtok_layout(260, 2, &sp);
    at_err err;
    memset(&S, 0, sizeof S);
    S.tok = at_wtok_new_bytes(toks, lens, 260, &sp, &err);
    if (!S.tok) return -1;
    S.sp = at_wtok_special(S.tok);
    S.V = S.sp->beg + AT_WTOK_N_TIMESTAMPS;
    M = (at_wdec_model){&S, S.V, 448, 1500, synth_logits, synth_copy, synth_encode, NULL, NULL};
    return 0;
}

static int setup_batched(void **st)
{
    int rc = setup(st);
    M.logits_batch = synth_logits_batch;
    return rc;
}

static int teardown(void **st)
{
    (void)st;
    at_wtok_free(S.tok);
    return 0;
}

/* fresh per-test state, same tokenizer */
static void reset(script_fn f)
{
    at_wtok *t = S.tok;
    const at_whisper_special *sp = S.sp;
    int V = S.V;
    memset(&S, 0, sizeof S);
    S.tok = t;
    S.sp = sp;
    S.V = V;
    S.max_seq = 1;
    S.script = f;
}

#define TS(i)   (S.sp->beg + (i))
#define EOT     (S.sp->eot)
#define LANG_EN (S.sp->sot + 1)
#define LANG_ZH (S.sp->sot + 2)

static void opts(at_wdec_options *o, int timestamps)
{
    at_wdec_options_default(o);
    o->lang_token = LANG_EN;
    o->without_timestamps = !timestamps;
}

static void expect_tokens(const at_wdec_result *r, const int *want, int n)
{
    if (r->n_tokens != n) {
        fprintf(stderr, "got %d tokens:", r->n_tokens);
        for (int i = 0; i < r->n_tokens; i++) fprintf(stderr, " %d", r->tokens[i]);
        fprintf(stderr, "\n");
    }
    assert_int_equal(r->n_tokens, n);
    for (int i = 0; i < n; i++) assert_int_equal(r->tokens[i], want[i]);
}

#define EXPECT(r, ...)                                                                                       \
    do {                                                                                                     \
        const int w_[] = {__VA_ARGS__};                                                                      \
        expect_tokens(r, w_, (int)(sizeof w_ / sizeof w_[0]));                                               \
    } while (0)

static void decode_ok(const at_wdec_options *o, at_wdec_result *r)
{
    at_err err;
    int rc = at_wdec_decode(&M, S.tok, o, r, &err);
    if (rc) fprintf(stderr, "decode: %s\n", err.msg);
    assert_int_equal(rc, 0);
}

/* ---- greedy and timestamp rules ----------------------------------------- */

static void sc_basic(synth *s, const int *m, int n, float *x)
{
    (void)s;
    (void)m;
    if (n == 0)
        x[TS(0)] = 10;
    else if (n == 1)
        x['a'] = 10;
    else if (n == 2)
        x[TS(10)] = 10;
    else
        x[EOT] = 10;
}

static void test_greedy_basic(void **st)
{
    (void)st;
    reset(sc_basic);
    at_wdec_options o;
    opts(&o, 1);
    at_wdec_result r;
    decode_ok(&o, &r);
    EXPECT(&r, TS(0), 'a', TS(10));
    assert_string_equal(r.text, "a");
    assert_int_equal(r.lang_token, LANG_EN);
    /* initial tokens: sot, en, transcribe */
    assert_int_equal(S.n_init[0], 3);
    assert_int_equal(S.init[0][0], S.sp->sot);
    assert_int_equal(S.init[0][1], LANG_EN);
    assert_int_equal(S.init[0][2], S.sp->transcribe);
    /* each choice has probability ~1: logprobs ~0 */
    assert_true(fabs(r.sum_logprob) < 1e-3);
    assert_true(fabs(r.avg_logprob) < 1e-3);
    /* nothing set at sot: no_speech_prob = 1/V */
    assert_true(fabsf(r.no_speech_prob - 1.0f / (float)S.V) < 1e-6f);
    assert_true(r.temperature == 0.0f);
    at_wdec_result_free(&r);

    /* translate task and English detection left out: the task token */
    o.translate = 1;
    decode_ok(&o, &r);
    assert_int_equal(S.init[1][2], S.sp->translate);
    at_wdec_result_free(&r);
}

static void sc_initial(synth *s, const int *m, int n, float *x)
{
    (void)s;
    (void)m;
    if (n == 0) {
        x['a'] = 10;     /* text cannot come first */
        x[TS(100)] = 12; /* 2.00 s: after max_initial_timestamp 1.0 */
        x[TS(5)] = 5;
    } else {
        x[EOT] = 10;
    }
}

static void test_initial_timestamp(void **st)
{
    (void)st;
    reset(sc_initial);
    at_wdec_options o;
    opts(&o, 1);
    at_wdec_result r;
    decode_ok(&o, &r);
    EXPECT(&r, TS(5));
    at_wdec_result_free(&r);
    /* 1.00 s (index 50) is still allowed, 1.02 s is not */
    o.max_initial_timestamp = 0; /* no limit */
    decode_ok(&o, &r);
    EXPECT(&r, TS(100));
    at_wdec_result_free(&r);
}

static void sc_pairs(synth *s, const int *m, int n, float *x)
{
    (void)s;
    (void)m;
    switch (n) {
    case 0: x[TS(0)] = 10; break;
    case 1: x['a'] = 10; break;
    case 2: x[TS(10)] = 10; break;
    case 3:
        x['b'] = 10;
        x[TS(20)] = 3;
        break; /* after text,ts: no text */
    case 4:
        x[TS(30)] = 10;
        x['c'] = 5;
        break; /* after ts,ts: text only */
    default: x[EOT] = 10;
    }
}

static void test_timestamp_pairs(void **st)
{
    (void)st;
    reset(sc_pairs);
    at_wdec_options o;
    opts(&o, 1);
    at_wdec_result r;
    decode_ok(&o, &r);
    EXPECT(&r, TS(0), 'a', TS(10), TS(20), 'c');
    at_wdec_result_free(&r);
}

static void sc_monotonic(synth *s, const int *m, int n, float *x)
{
    (void)s;
    (void)m;
    switch (n) {
    case 0: x[TS(10)] = 10; break;
    case 1: x['a'] = 10; break;
    /* after <|0.20|> a: earlier and equal timestamps are out */
    case 2:
        x[TS(5)] = 10;
        x[TS(10)] = 9;
        x[TS(11)] = 5;
        break;
    /* closing <|0.22|> may be repeated to open the next segment */
    case 3:
        x[TS(9)] = 12;
        x[TS(11)] = 10;
        break;
    default: x[EOT] = 10;
    }
}

static void test_timestamp_monotonic(void **st)
{
    (void)st;
    reset(sc_monotonic);
    at_wdec_options o;
    opts(&o, 1);
    at_wdec_result r;
    decode_ok(&o, &r);
    EXPECT(&r, TS(10), 'a', TS(11), TS(11));
    at_wdec_result_free(&r);
}

/* text 'b' at 5 against 1500 timestamps at param (one at param + 0.5) */
static void sc_forced(synth *s, const int *m, int n, float *x)
{
    (void)m;
    if (n == 0)
        x[TS(0)] = 10;
    else if (n == 1)
        x['a'] = 10;
    else if (n == 2) {
        x['b'] = 5;
        for (int v = S.sp->beg; v < S.V; v++) x[v] = s->param;
        x[TS(40)] = s->param + 0.5f;
    } else
        x[EOT] = 10;
}

static void test_forced_timestamp(void **st)
{
    (void)st;
    at_wdec_options o;
    opts(&o, 1);
    at_wdec_result r;
    /* allowed timestamps after <|0.00|>: 1500 of them (the first is out).
     * logsumexp = 1 + log(1499 + e^0.5) = 8.31 > 5: a timestamp is forced,
     * and the best one is <|0.80|>, although 'b' alone beats it */
    reset(sc_forced);
    S.param = 1.0f;
    decode_ok(&o, &r);
    EXPECT(&r, TS(0), 'a', TS(40));
    at_wdec_result_free(&r);
    /* at -3: logsumexp = -3 + 7.31 = 4.31 < 5: 'b' stays */
    reset(sc_forced);
    S.param = -3.0f;
    decode_ok(&o, &r);
    EXPECT(&r, TS(0), 'a', 'b');
    at_wdec_result_free(&r);
}

/* ---- suppression ------------------------------------------------------------ */

static void sc_blank(synth *s, const int *m, int n, float *x)
{
    (void)s;
    (void)m;
    if (n == 0) {
        x[' '] = 10;
        x[EOT] = 9;
        x['x'] = 5;
    } else if (n == 1)
        x[' '] = 10;
    else
        x[EOT] = 10;
}

static void test_suppress_blank(void **st)
{
    (void)st;
    reset(sc_blank);
    at_wdec_options o;
    opts(&o, 0);
    at_wdec_result r;
    decode_ok(&o, &r);
    /* blank and eot only banned at the first position */
    EXPECT(&r, 'x', ' ');
    assert_string_equal(r.text, "x");
    assert_int_equal(S.init[0][3], S.sp->not_);
    at_wdec_result_free(&r);
    o.suppress_blank = 0;
    decode_ok(&o, &r);
    EXPECT(&r, ' ', ' ');
    assert_string_equal(r.text, "");
    at_wdec_result_free(&r);
}

static void sc_suppress(synth *s, const int *m, int n, float *x)
{
    (void)s;
    (void)m;
    if (n == 0) {
        x['#'] = 10; /* non-speech symbol */
        x[S.sp->nosp] = 9.5f;
        x[LANG_ZH] = 9.4f;
        x[S.sp->sot] = 9.3f;
        x[S.sp->prev] = 9.2f;
        x[S.sp->transcribe] = 9.1f;
        x[256] = 9; /* " -" */
        x['x'] = 5;
    } else {
        x[EOT] = 10;
    }
}

static void test_suppress_tokens(void **st)
{
    (void)st;
    reset(sc_suppress);
    at_wdec_options o;
    opts(&o, 0);
    at_wdec_result r;
    decode_ok(&o, &r);
    EXPECT(&r, 'x');
    at_wdec_result_free(&r);
    /* suppress_tokens "" keeps the symbols; the specials stay banned */
    o.suppress_non_speech = 0;
    decode_ok(&o, &r);
    EXPECT(&r, '#');
    at_wdec_result_free(&r);
    /* an explicit list */
    o.suppress_non_speech = 0;
    int extra[] = {'#', 256};
    o.suppress = extra;
    o.n_suppress = 2;
    decode_ok(&o, &r);
    EXPECT(&r, 'x');
    at_wdec_result_free(&r);
}

/* ---- no speech, language ---------------------------------------------------- */

static void sot_half_nosp(synth *s, float *x)
{
    (void)s;
    x[S.sp->nosp] = 0;
    x[LANG_EN] = 0;
}

static void sot_lang(synth *s, float *x)
{
    (void)s;
    x[LANG_EN] = 3;
    x[LANG_ZH] = 5;
    x[S.sp->nosp] = 8; /* not a language: ignored */
}

static void sc_eot(synth *s, const int *m, int n, float *x)
{
    (void)s;
    (void)m;
    if (n == 0)
        x['k'] = 10;
    else
        x[EOT] = 10;
}

static void test_no_speech_prob(void **st)
{
    (void)st;
    reset(sc_eot);
    S.at_sot = sot_half_nosp;
    at_wdec_options o;
    opts(&o, 0);
    at_wdec_result r;
    decode_ok(&o, &r);
    assert_true(fabsf(r.no_speech_prob - 0.5f) < 1e-4f);
    at_wdec_result_free(&r);
}

static void test_detect_language(void **st)
{
    (void)st;
    reset(sc_eot);
    S.at_sot = sot_lang;
    int lang;
    float probs[2];
    at_err err;
    assert_int_equal(at_wdec_detect_language(&M, S.tok, &lang, probs, &err), 0);
    assert_int_equal(lang, LANG_ZH);
    /* softmax(3, 5) = (0.1192, 0.8808) */
    assert_true(fabsf(probs[0] - 0.11920f) < 1e-4f);
    assert_true(fabsf(probs[1] - 0.88080f) < 1e-4f);
    /* decode without a language detects it and uses it */
    at_wdec_options o;
    opts(&o, 0);
    o.lang_token = -1;
    at_wdec_result r;
    decode_ok(&o, &r);
    assert_int_equal(r.lang_token, LANG_ZH);
    assert_int_equal(S.init[0][1], LANG_ZH);
    at_wdec_result_free(&r);
}

/* ---- beam search and sampling ------------------------------------------- */

/* root: a .6, b .4; a -> eot .3, c .35, d .35; b -> f .95, eot .05;
 * anything else -> eot.
 * Greedy: a, c, eot: sum = ln .6 + ln .35 = -1.561, score -1.561/2 = -0.780.
 * Beam 2: step 1 keeps a (-0.511) and b (-0.916); step 2 ranks b f
 * (-0.967), a c (-1.561), a d (-1.561), a eot ...: keeps bf and ac; step 3
 * finishes bf (-0.967) and ac (-1.561).  Length-normalised: bf -0.484 beats
 * ac -0.780. */
static void sc_tree(synth *s, const int *m, int n, float *x)
{
    (void)s;
    if (n == 0) {
        x['a'] = logf(0.6f);
        x['b'] = logf(0.4f);
    } else if (n == 1 && m[0] == 'a') {
        x[EOT] = logf(0.3f);
        x['c'] = logf(0.35f);
        x['d'] = logf(0.35f);
    } else if (n == 1 && m[0] == 'b') {
        x['f'] = logf(0.95f);
        x[EOT] = logf(0.05f);
    } else {
        x[EOT] = 0;
    }
}

static void test_beam_beats_greedy(void **st)
{
    (void)st;
    at_wdec_options o;
    opts(&o, 0);
    at_wdec_result r;
    reset(sc_tree);
    decode_ok(&o, &r);
    EXPECT(&r, 'a', 'c');
    assert_true(fabs(r.sum_logprob - (log(0.6) + log(0.35))) < 1e-3);
    at_wdec_result_free(&r);

    reset(sc_tree);
    S.max_seq = 2;
    o.beam_size = 2;
    decode_ok(&o, &r);
    EXPECT(&r, 'b', 'f');
    assert_string_equal(r.text, "bf");
    assert_true(fabs(r.sum_logprob - (log(0.4) + log(0.95))) < 1e-3);
    assert_true(fabs(r.avg_logprob - (log(0.4) + log(0.95)) / 3) < 1e-3);
    assert_true(fabsf(r.logprobs[0] - logf(0.4f)) < 1e-3f);
    assert_true(fabsf(r.logprobs[1] - logf(0.95f)) < 1e-3f);
    assert_true(S.copies >= 1);                     /* the second beam got a cache copy */
    if (M.logits_batch) assert_true(S.batches > 0); /* the beams went as one batch */
    at_wdec_result_free(&r);

    /* beam 3: step 2 keeps bf, ac, ad (the unlikely third first beam drops
     * out), step 3 finishes all three: bf again */
    reset(sc_tree);
    S.max_seq = 3;
    o.beam_size = 3;
    decode_ok(&o, &r);
    EXPECT(&r, 'b', 'f');
    at_wdec_result_free(&r);

    /* beam 5: the three unlikely first beams (p ~ e^-100) end at step 2
     * with scores ~-100, which still beat their own continuations (~-200),
     * so the 5 finished candidates are a, b, and those three; "a" ranks
     * best (-1.715).  Python's BeamSearchDecoder does exactly this. */
    reset(sc_tree);
    S.max_seq = 5;
    o.beam_size = 5;
    decode_ok(&o, &r);
    EXPECT(&r, 'a');
    at_wdec_result_free(&r);
    /* patience 2: 10 finished candidates are awaited, bf among them */
    reset(sc_tree);
    S.max_seq = 5;
    o.patience = 2.0f;
    decode_ok(&o, &r);
    EXPECT(&r, 'b', 'f');
    at_wdec_result_free(&r);
}

/* a .5 / b .5; a -> eot; b -> c -> eot: "a" scores ln .5 = -0.69,
 * "bc" ln .5 / 2 = -0.35: among 8 samples the best is "bc" */
static void sc_fork(synth *s, const int *m, int n, float *x)
{
    (void)s;
    if (n == 0) {
        x['a'] = logf(0.5f);
        x['b'] = logf(0.5f);
    } else if (n == 1 && m[0] == 'b') {
        x['c'] = 0;
    } else {
        x[EOT] = 0;
    }
}

static void test_best_of(void **st)
{
    (void)st;
    at_wdec_options o;
    opts(&o, 0);
    at_wdec_result r;
    reset(sc_fork);
    /* temperature 0: argmax takes the first of equal tokens */
    decode_ok(&o, &r);
    EXPECT(&r, 'a');
    at_wdec_result_free(&r);
    reset(sc_fork);
    S.max_seq = 8;
    o.temperature = 1.0f;
    o.best_of = 8;
    decode_ok(&o, &r);
    EXPECT(&r, 'b', 'c');
    assert_true(r.temperature == 1.0f);
    at_wdec_result_free(&r);
}

/* ---- temperature fallback ------------------------------------------------- */

static const char *good_text = "hello world";

static void say(const char *text, int n, float *x)
{
    int len = (int)strlen(text);
    if (n < len)
        x[(unsigned char)text[n]] = 10;
    else
        x[EOT] = 10;
}

/* attempt 1: "abab...ab" (40 chars), then good text */
static void sc_repeat(synth *s, const int *m, int n, float *x)
{
    (void)m;
    if (s->attempts >= 2)
        say(good_text, n, x);
    else if (n < 40)
        x[n % 2 ? 'b' : 'a'] = 10;
    else
        x[EOT] = 10;
}

/* attempt 1: each chosen token (x, y, z, eot) has p .3 next to seven
 * digits at .1: avg logprob = 4 ln .3 / 4 = -1.20 < -1 */
static void sc_unsure(synth *s, const int *m, int n, float *x)
{
    (void)m;
    if (s->attempts >= 2) {
        say("ok", n, x);
        return;
    }
    for (int d = 0; d < 7; d++) x['0' + d] = logf(0.1f);
    x[n < 3 ? "xyz"[n] : EOT] = logf(0.3f);
}

static void sot_silence(synth *s, float *x)
{
    (void)s;
    x[S.sp->nosp] = logf(0.9f);
    x[LANG_EN] = logf(0.1f);
}

static void fallback_ok(const at_wdec_options *o, at_wdec_result *r)
{
    at_wdec_fallback f;
    at_wdec_fallback_default(&f);
    at_err err;
    assert_int_equal(at_wdec_decode_fallback(&M, S.tok, o, &f, r, &err), 0);
}

static void test_compression_ratio(void **st)
{
    (void)st;
    assert_true(at_wdec_compression_ratio("", 0) == 0.0f);
    const char *rep = "abababababababababababababababababababab";
    assert_true(at_wdec_compression_ratio(rep, strlen(rep)) > 2.4f);
    assert_true(at_wdec_compression_ratio(good_text, strlen(good_text)) < 1.0f);
}

static void test_fallback_repetition(void **st)
{
    (void)st;
    reset(sc_repeat);
    at_wdec_options o;
    opts(&o, 0);
    at_wdec_result r;
    fallback_ok(&o, &r);
    assert_int_equal(S.attempts, 2);
    assert_true(fabsf(r.temperature - 0.2f) < 1e-6f);
    assert_string_equal(r.text, good_text);
    assert_true(r.compression_ratio < 2.4f);
    at_wdec_result_free(&r);
}

static void test_fallback_logprob(void **st)
{
    (void)st;
    reset(sc_unsure);
    at_wdec_options o;
    opts(&o, 0);
    at_wdec_result r;
    /* first attempt alone: x y z, avg -1.204 */
    decode_ok(&o, &r);
    EXPECT(&r, 'x', 'y', 'z');
    assert_true(fabs(r.avg_logprob - log(0.3)) < 1e-3);
    at_wdec_result_free(&r);
    reset(sc_unsure);
    fallback_ok(&o, &r);
    assert_int_equal(S.attempts, 2);
    assert_true(fabsf(r.temperature - 0.2f) < 1e-6f);
    assert_string_equal(r.text, "ok");
    at_wdec_result_free(&r);
}

static void sc_good(synth *s, const int *m, int n, float *x)
{
    (void)s;
    (void)m;
    say(good_text, n, x);
}

static void test_fallback_not_needed(void **st)
{
    (void)st;
    reset(sc_good);
    at_wdec_options o;
    opts(&o, 0);
    at_wdec_result r;
    fallback_ok(&o, &r);
    assert_int_equal(S.attempts, 1);
    assert_true(r.temperature == 0.0f);
    assert_string_equal(r.text, good_text);
    at_wdec_result_free(&r);
}

static void test_fallback_silence(void **st)
{
    (void)st;
    /* improbable text, but no_speech_prob .9 > .6: silence, no retry */
    reset(sc_unsure);
    S.at_sot = sot_silence;
    at_wdec_options o;
    opts(&o, 0);
    at_wdec_result r;
    fallback_ok(&o, &r);
    assert_int_equal(S.attempts, 1);
    assert_true(r.temperature == 0.0f);
    assert_true(fabsf(r.no_speech_prob - 0.9f) < 1e-3f);
    at_wdec_result_free(&r);
}

/* ---- long-form ------------------------------------------------------------ */

typedef struct seglog {
    int n;
    int seek[8];
    double start[8], end[8];
    char text[8][32];
    int ntok[8];
    int stop_after;
    int n_words[8];
    char word[8][4][16];
    double wstart[8][4], wend[8][4];
} seglog;

static int on_seg(void *user, const at_wdec_segment *g)
{
    seglog *l = user;
    if (l->n < 8) {
        l->seek[l->n] = g->seek;
        l->start[l->n] = g->start;
        l->end[l->n] = g->end;
        snprintf(l->text[l->n], sizeof l->text[0], "%s", g->text);
        l->ntok[l->n] = g->n_tokens;
        l->n_words[l->n] = g->n_words;
        for (int i = 0; i < g->n_words && i < 4; i++) {
            snprintf(l->word[l->n][i], sizeof l->word[0][0], "%s", g->words[i].text);
            l->wstart[l->n][i] = g->words[i].start;
            l->wend[l->n][i] = g->words[i].end;
        }
    }
    l->n++;
    return l->stop_after && l->n >= l->stop_after;
}

/* window at frame 0: <0.00> a <2.00><2.00> b <5.00> eot
 *   -> two segments, single timestamp ending: seek += 3000
 * window at 3000 (1000 frames): <0.00> c <1.00><1.00> d eot
 *   -> segment "c", the unfinished "d" is dropped: seek += 50 * 2 = 3100
 * window at 3100 (900 frames): <0.00> e <4.00> eot
 *   -> no consecutive timestamps: one segment to the last timestamp,
 *      seek += 900 = 4000 */
static void sc_long(synth *s, const int *m, int n, float *x)
{
    (void)m;
    static const int w1[] = {0, 'a', 100, 100, 'b', 250};
    static const int w2[] = {0, 'c', 50, 50, 'd'};
    static const int w3[] = {0, 'e', 200};
    const int *w = s->seek == 0 ? w1 : s->seek == 3000 ? w2 : w3;
    int len = s->seek == 0 ? 6 : s->seek == 3000 ? 5 : 3;
    int is_ts[] = {1, 0, 1, 1, 0, 1};
    int ts_w3[] = {1, 0, 1};
    const int *tsm = s->seek == 3100 ? ts_w3 : is_ts;
    if (n >= len)
        x[EOT] = 10;
    else
        x[tsm[n] ? TS(w[n]) : w[n]] = 10;
}

static void test_long_form(void **st)
{
    (void)st;
    reset(sc_long);
    seglog log;
    memset(&log, 0, sizeof log);
    at_wdec_tx_options o;
    at_wdec_tx_options_default(&o);
    o.decode.lang_token = LANG_EN;
    int prompt[] = {'p', 'q'};
    o.initial_prompt = prompt;
    o.n_initial_prompt = 2;
    o.on_segment = on_seg;
    o.user = &log;
    at_err err;
    at_wdec_tx *t = at_wdec_tx_new(&M, S.tok, &o, &err);
    assert_non_null(t);
    /* streaming: nothing until a whole window is there */
    assert_int_equal(at_wdec_tx_run(t, 2999, 0, &err), 0);
    assert_int_equal(log.n, 0);
    assert_int_equal(S.n_encodes, 0);
    assert_int_equal(at_wdec_tx_run(t, 4000, 0, &err), 0);
    assert_int_equal(log.n, 2);
    assert_int_equal(at_wdec_tx_seek(t), 3000);
    /* the rest at the end */
    assert_int_equal(at_wdec_tx_run(t, 4000, 1, &err), 0);
    assert_int_equal(at_wdec_tx_seek(t), 4000);
    assert_int_equal(log.n, 4);
    assert_int_equal(S.n_encodes, 3);

    assert_int_equal(log.seek[0], 0);
    assert_true(fabs(log.start[0] - 0.0) < 1e-9 && fabs(log.end[0] - 2.0) < 1e-9);
    assert_string_equal(log.text[0], "a");
    assert_int_equal(log.ntok[0], 3);
    assert_true(fabs(log.start[1] - 2.0) < 1e-9 && fabs(log.end[1] - 5.0) < 1e-9);
    assert_string_equal(log.text[1], "b");
    assert_int_equal(log.seek[2], 3000);
    assert_true(fabs(log.start[2] - 30.0) < 1e-9 && fabs(log.end[2] - 31.0) < 1e-9);
    assert_string_equal(log.text[2], "c");
    assert_int_equal(log.seek[3], 3100);
    assert_true(fabs(log.start[3] - 31.0) < 1e-9 && fabs(log.end[3] - 35.0) < 1e-9);
    assert_string_equal(log.text[3], "e");

    /* prompts: window 1 gets the initial prompt, window 2 adds window 1's
     * tokens, window 3 adds the kept segment of window 2 */
    int b = S.sp->beg;
    const int p1[] = {S.sp->prev, 'p', 'q', S.sp->sot, LANG_EN, S.sp->transcribe};
    const int p2[] = {S.sp->prev, 'p', 'q',     b,         'a',     b + 100,
                      b + 100,    'b', b + 250, S.sp->sot, LANG_EN, S.sp->transcribe};
    const int p3[] = {S.sp->prev, 'p', 'q', b,      'a',       b + 100, b + 100,         'b',
                      b + 250,    b,   'c', b + 50, S.sp->sot, LANG_EN, S.sp->transcribe};
    assert_int_equal(S.n_inits, 3);
    assert_int_equal(S.n_init[0], 6);
    assert_memory_equal(S.init[0], p1, sizeof p1);
    assert_int_equal(S.n_init[1], 12);
    assert_memory_equal(S.init[1], p2, sizeof p2);
    assert_int_equal(S.n_init[2], 15);
    assert_memory_equal(S.init[2], p3, sizeof p3);
    at_wdec_tx_free(t);

    /* without conditioning, no prompt after the initial one */
    reset(sc_long);
    memset(&log, 0, sizeof log);
    o.condition_on_previous_text = 0;
    o.initial_prompt = NULL;
    o.n_initial_prompt = 0;
    t = at_wdec_tx_new(&M, S.tok, &o, &err);
    assert_int_equal(at_wdec_tx_run(t, 4000, 1, &err), 0);
    assert_int_equal(log.n, 4);
    for (int i = 0; i < 3; i++) assert_int_equal(S.n_init[i], 3);
    at_wdec_tx_free(t);

    /* cancelling from the callback */
    reset(sc_long);
    memset(&log, 0, sizeof log);
    log.stop_after = 1;
    t = at_wdec_tx_new(&M, S.tok, &o, &err);
    assert_int_equal(at_wdec_tx_run(t, 4000, 1, &err), AT_E_CANCELLED);
    assert_int_equal(log.n, 1);
    at_wdec_tx_free(t);
}

/* window 0: silence (no_speech .9) and improbable text -> skipped;
 * window 3000 (500 frames): <0.00> z <0.40> */
static void sc_skip(synth *s, const int *m, int n, float *x)
{
    if (s->seek == 0) {
        sc_unsure(s, m, n, x);
        return;
    }
    static const int w[] = {0, 'z', 20};
    if (n >= 3)
        x[EOT] = 10;
    else
        x[n == 1 ? 'z' : TS(w[n])] = 10;
}

static void sot_skip(synth *s, float *x)
{
    if (s->seek == 0) sot_silence(s, x);
}

static void test_no_speech_skip(void **st)
{
    (void)st;
    reset(sc_skip);
    S.at_sot = sot_skip;
    seglog log;
    memset(&log, 0, sizeof log);
    at_wdec_tx_options o;
    at_wdec_tx_options_default(&o);
    o.decode.lang_token = LANG_EN;
    o.on_segment = on_seg;
    o.user = &log;
    at_err err;
    at_wdec_tx *t = at_wdec_tx_new(&M, S.tok, &o, &err);
    assert_int_equal(at_wdec_tx_run(t, 3500, 1, &err), 0);
    assert_int_equal(S.attempts, 2); /* no fallback on the silent window */
    assert_int_equal(log.n, 1);
    assert_int_equal(log.seek[0], 3000);
    assert_true(fabs(log.start[0] - 30.0) < 1e-9 && fabs(log.end[0] - 30.4) < 1e-9);
    assert_string_equal(log.text[0], "z");
    assert_int_equal(at_wdec_tx_seek(t), 3500);
    at_wdec_tx_free(t);

    /* high no_speech_prob but confident text: kept */
    reset(sc_long);
    S.at_sot = sot_silence;
    memset(&log, 0, sizeof log);
    t = at_wdec_tx_new(&M, S.tok, &o, &err);
    assert_int_equal(at_wdec_tx_run(t, 3000, 1, &err), 0);
    assert_int_equal(log.n, 2);
    at_wdec_tx_free(t);
}

/* a result with no timestamps at all: one segment over the window */
static void test_long_form_no_timestamps(void **st)
{
    (void)st;
    reset(sc_good);
    seglog log;
    memset(&log, 0, sizeof log);
    at_wdec_tx_options o;
    at_wdec_tx_options_default(&o);
    o.decode.lang_token = LANG_EN;
    o.decode.without_timestamps = 1;
    o.on_segment = on_seg;
    o.user = &log;
    at_err err;
    at_wdec_tx *t = at_wdec_tx_new(&M, S.tok, &o, &err);
    assert_int_equal(at_wdec_tx_run(t, 1234, 1, &err), 0);
    assert_int_equal(log.n, 1);
    assert_true(fabs(log.start[0]) < 1e-9 && fabs(log.end[0] - 12.34) < 1e-9);
    assert_string_equal(log.text[0], good_text);
    at_wdec_tx_free(t);
}

/* window 0: <0.00> " hi yo" <1.00><1.00> " ok" <2.00> eot (single
 * timestamp ending); at seek 200 (the hallucination test's retry):
 * <0.00> " ok" <1.00> eot */
static void sc_words(synth *s, const int *m, int n, float *x)
{
    (void)m;
    static const int w0[] = {-0, ' ', 'h', 'i', ' ', 'y', 'o', -50, -50, ' ', 'o', 'k', -100};
    static const int w1[] = {-0, ' ', 'o', 'k', -50};
    const int *w = s->seek == 0 ? w0 : w1;
    int len = s->seek == 0 ? 13 : 5;
    if (n >= len)
        x[EOT] = 10;
    else
        x[w[n] <= 0 ? TS(-w[n]) : w[n]] = 10;
}

static void words_opts(at_wdec_tx_options *o, seglog *log)
{
    at_wdec_tx_options_default(o);
    o->decode.lang_token = LANG_EN;
    o->on_segment = on_seg;
    o->user = log;
    o->word_timestamps = 1;
}

/* Word times follow the alignment path (0.4 s a token row); segments
 * take their words' start and end, as transcribe.py's do. */
static void test_word_timestamps(void **st)
{
    (void)st;
    reset(sc_words);
    M.align = synth_align;
    S.align_prob = 0.9f;
    seglog log;
    memset(&log, 0, sizeof log);
    at_wdec_tx_options o;
    words_opts(&o, &log);
    at_err err;
    at_wdec_tx *t = at_wdec_tx_new(&M, S.tok, &o, &err);
    assert_int_equal(at_wdec_tx_run(t, 3000, 1, &err), 0);
    assert_int_equal(S.aligns, 1); /* one pass for the window's segments */
    assert_int_equal(log.n, 2);
    assert_int_equal(log.n_words[0], 2);
    assert_string_equal(log.word[0][0], " hi");
    assert_string_equal(log.word[0][1], " yo");
    assert_true(fabs(log.wstart[0][0] - 0.0) < 1e-9 && fabs(log.wend[0][0] - 1.2) < 1e-9);
    assert_true(fabs(log.wstart[0][1] - 1.2) < 1e-9 && fabs(log.wend[0][1] - 2.4) < 1e-9);
    assert_true(fabs(log.start[0] - 0.0) < 1e-9 && fabs(log.end[0] - 2.4) < 1e-9);
    assert_int_equal(log.n_words[1], 1);
    assert_string_equal(log.word[1][0], " ok");
    assert_true(fabs(log.wstart[1][0] - 2.4) < 1e-9 && fabs(log.wend[1][0] - 3.6) < 1e-9);
    assert_true(fabs(log.start[1] - 2.4) < 1e-9 && fabs(log.end[1] - 3.6) < 1e-9);
    assert_int_equal(at_wdec_tx_seek(t), 3000);
    at_wdec_tx_free(t);

    /* without the option, no alignment pass and no words */
    reset(sc_words);
    memset(&log, 0, sizeof log);
    o.word_timestamps = 0;
    t = at_wdec_tx_new(&M, S.tok, &o, &err);
    assert_int_equal(at_wdec_tx_run(t, 3000, 1, &err), 0);
    assert_int_equal(S.aligns, 0);
    assert_int_equal(log.n, 2);
    assert_int_equal(log.n_words[0], 0);
    assert_true(fabs(log.end[0] - 1.0) < 1e-9);
    at_wdec_tx_free(t);
    M.align = NULL;
}

/* hallucination_silence_threshold: improbable words (p 0.05) that start
 * more than the threshold into the window are a likely hallucination;
 * the window is dropped and decoded again from where they start. */
static void test_hallucination_silence(void **st)
{
    (void)st;
    reset(sc_words);
    M.align = synth_align;
    S.align_prob = 0.05f;
    S.align_off = 100;
    seglog log;
    memset(&log, 0, sizeof log);
    at_wdec_tx_options o;
    words_opts(&o, &log);
    o.hallucination_silence_threshold = 1.0f;
    at_err err;
    at_wdec_tx *t = at_wdec_tx_new(&M, S.tok, &o, &err);
    assert_int_equal(at_wdec_tx_run(t, 3000, 1, &err), 0);
    /* window 0 dropped; the next starts where the first word does: the
     * path gives it 0.0 to 3.2 s, and after a pause a word keeps at
     * most twice the median duration (2 x 0.7 s) before its end: 1.8 s */
    assert_int_equal(log.seek[0], 180);
    assert_true(log.n >= 1);
    assert_string_equal(log.text[0], " ok");
    at_wdec_tx_free(t);

    /* the same words with a high probability are kept */
    reset(sc_words);
    S.align_prob = 0.9f;
    S.align_off = 100;
    memset(&log, 0, sizeof log);
    t = at_wdec_tx_new(&M, S.tok, &o, &err);
    assert_int_equal(at_wdec_tx_run(t, 3000, 1, &err), 0);
    assert_int_equal(log.seek[0], 0);
    assert_string_equal(log.text[0], " hi yo");
    at_wdec_tx_free(t);
    M.align = NULL;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_greedy_basic),
        cmocka_unit_test(test_word_timestamps),
        cmocka_unit_test(test_hallucination_silence),
        cmocka_unit_test(test_initial_timestamp),
        cmocka_unit_test(test_timestamp_pairs),
        cmocka_unit_test(test_timestamp_monotonic),
        cmocka_unit_test(test_forced_timestamp),
        cmocka_unit_test(test_suppress_blank),
        cmocka_unit_test(test_suppress_tokens),
        cmocka_unit_test(test_no_speech_prob),
        cmocka_unit_test(test_detect_language),
        cmocka_unit_test(test_beam_beats_greedy),
        cmocka_unit_test(test_best_of),
        cmocka_unit_test(test_compression_ratio),
        cmocka_unit_test(test_fallback_repetition),
        cmocka_unit_test(test_fallback_logprob),
        cmocka_unit_test(test_fallback_not_needed),
        cmocka_unit_test(test_fallback_silence),
        cmocka_unit_test(test_long_form),
        cmocka_unit_test(test_no_speech_skip),
        cmocka_unit_test(test_long_form_no_timestamps),
    };
    /* every expectation holds with and without the batch hook */
    int failed = cmocka_run_group_tests_name("one sequence at a time", tests, setup, teardown);
    failed += cmocka_run_group_tests_name("beams and samples batched", tests, setup_batched, teardown);
    return failed;
}
