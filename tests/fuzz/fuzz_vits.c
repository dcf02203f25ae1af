/* fuzz_vits - the VITS voices' tokenizer on any vocab.json, tokenizer
 * config and text, and the VITS model loader on any config.json.
 *
 * Input: an 8-byte header, then vocab.json, a NUL, tokenizer_config.json
 * (empty: none, the defaults), a NUL, text, a NUL, config.json.
 *   h[0] bit 0: replace the tokenizer config by one built here (add_blank,
 *        no pad or unk token), bit 1 its normalize, bit 2 its phonemize;
 *        bits 3-5: what the phonemiser does (see phonemize below).
 *   h[1] bits 0-1: 1-4 ids for the model; bit 2: ids unchecked (byte - 8,
 *        may be outside the vocabulary) instead of modulo the vocabulary;
 *        bits 3-4: speaker - 1; bit 5: streamed, the sink stopping it.
 *   h[2..5]: the ids; h[6], h[7]: noise_scale, noise_scale_duration
 *        (0..2).
 * The tokenizer must load or refuse with a message, and encoding must give
 * ids within the vocabulary (the blank 0 at every even position when
 * add_blank is on and no special token can appear) or an error with a
 * message.  The config.json goes beside the weights of a tiny voice made
 * at the first call (at_vits_random_model "tiny"); a config that loads
 * speaks the ids in at most 64 frames. */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "compute/pool.h"
#include "core/strbuf.h"
#include "engines/tts/vits/model.h"
#include "engines/tts/vits/tokenizer.h"
#include "tools/tools.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum { HEADER = 8, MAX_FRAMES = 64 };

/* An error must say what went wrong. */
static void check_err(int rc, const at_err *err)
{
    if (rc >= 0 || err->code != rc || !err->msg[0]) __builtin_trap();
}

/* ---- the tokenizer ------------------------------------------------------ */

enum { PH_LOWER, PH_SPACES, PH_BAD_UTF8, PH_FAIL, PH_NOTHING };

static const char STRESSED_A[] = {'\xcb', '\x88', 'a'}; /* U+02C8, as espeak-ng marks stress */

typedef struct phon {
    int mode, called;
    const char *language; /* what the tokenizer says it hands over */
} phon;

/* Stands in for espeak-ng, fast and deterministic: ASCII lowercased; or
 * each space a run of whitespace and a stress mark before each 'a' (output
 * longer than the text, multi-byte); or invalid UTF-8 (a cut sequence); or
 * a failure; or success without a string. */
static int phonemize(void *user, const char *language, const char *text, char **out, at_err *err)
{
    phon *ph = user;
    ph->called = 1;
    if (!language || strcmp(language, ph->language) != 0) __builtin_trap();
    if (ph->mode == PH_FAIL) return at_err_set(err, AT_E_ENGINE, "fuzz phonemiser: refused");
    if (ph->mode == PH_NOTHING) {
        *out = NULL;
        return 0;
    }
    size_t n = strlen(text), k = 0;
    char *s = malloc(3 * n + 3);
    if (!s) return at_err_set(err, AT_E_NOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        char c = text[i];
        if (ph->mode == PH_SPACES && c == ' ') {
            memcpy(s + k, " \t\n", 3);
            k += 3;
        } else if (ph->mode == PH_SPACES && c == 'a') {
            memcpy(s + k, STRESSED_A, 3);
            k += 3;
        } else {
            s[k++] = c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
        }
    }
    if (ph->mode == PH_BAD_UTF8) {
        memcpy(s + k, "\xe2\x82", 2);
        k += 2;
    }
    s[k] = 0;
    *out = s;
    return 0;
}

static void fuzz_tokenizer(const uint8_t *h, const char *vocab, size_t vlen, const char *cfg, size_t clen,
                           const char *text)
{
    char own[160];
    int built = h[0] & 1;
    if (built) {
        snprintf(own, sizeof own,
                 "{\"add_blank\": true, \"normalize\": %s, \"phonemize\": %s, \"unk_token\": null, "
                 "\"pad_token\": null}",
                 h[0] & 2 ? "true" : "false", h[0] & 4 ? "true" : "false");
        cfg = own;
        clen = strlen(own);
    }
    at_err err = {0};
    at_vits_tokenizer *t = at_vits_tokenizer_load_mem(vocab, vlen, clen ? cfg : NULL, clen, &err);
    if (!t) {
        check_err(err.code, &err);
        return;
    }
    int max_id = at_vits_tokenizer_max_id(t), nv = at_vits_tokenizer_vocab_size(t);
    if (nv < 1 || nv > AT_VITS_TOK_MAX_TOKENS || max_id < 1 || max_id > AT_VITS_TOK_MAX_ID) __builtin_trap();
    int mode = (h[0] >> 3) & 7;
    phon ph = {mode <= PH_NOTHING ? mode : PH_LOWER, 0, at_vits_tokenizer_phoneme_language(t)};
    int *ids = NULL, n = -1;
    at_err_clear(&err);
    int rc = at_vits_tokenizer_encode(t, text, phonemize, &ph, &ids, &n, &err);
    size_t tlen = strlen(text);
    if (rc == 0) {
        if (!ids || n < 1) __builtin_trap();
        for (int i = 0; i < n; i++)
            if (ids[i] < 0 || ids[i] >= max_id) __builtin_trap();
        /* add_blank without special tokens: 0, x, 0, x, ..., 0 */
        if (built && (n % 2 == 0 || ids[0] != 0)) __builtin_trap();
        for (int i = 0; built && i < n; i += 2)
            if (ids[i] != 0) __builtin_trap();
        if (ph.called && ph.mode != PH_LOWER && ph.mode != PH_SPACES) __builtin_trap();
        if (!at_utf8_valid(text, tlen) || tlen > AT_VITS_TOK_MAX_TEXT) __builtin_trap();
    } else {
        check_err(rc, &err);
        if (ph.called && ph.mode == PH_FAIL && strcmp(err.msg, "fuzz phonemiser: refused") != 0)
            __builtin_trap();
        if (tlen <= AT_VITS_TOK_MAX_TEXT && !at_utf8_valid(text, tlen) && rc != AT_E_INVALID)
            __builtin_trap();
    }
    free(ids);
    at_vits_tokenizer_free(t);
}

/* ---- the model ---------------------------------------------------------- */

static char model_dir[] = "/tmp/fuzz_vits.XXXXXX";
static char config_path[sizeof model_dir + 16];
static at_compute *pool;

static void cleanup(void)
{
    char path[sizeof model_dir + 32];
    unlink(config_path);
    snprintf(path, sizeof path, "%s/model.safetensors", model_dir);
    unlink(path);
    rmdir(model_dir);
    at_compute_free(pool);
}

/* The tiny voice's weights (a few hundred KB), once per process: every
 * input then only replaces config.json. */
static void setup(void)
{
    at_err err;
    if (!mkdtemp(model_dir)) __builtin_trap();
    snprintf(config_path, sizeof config_path, "%s/config.json", model_dir);
    if (at_vits_random_model("tiny", "f32", model_dir, 1, NULL, &err)) __builtin_trap();
    if (!(pool = at_compute_new(1, &err))) __builtin_trap();
    atexit(cleanup);
}

typedef struct stopper {
    int calls;
} stopper;

/* Stops the synthesis at its first piece, as a client that goes away. */
static int stop_sink(void *user, const float *x, size_t n, at_err *err)
{
    stopper *s = user;
    for (size_t i = 0; i < n; i++)
        if (!(fabsf(x[i]) <= 1.0f)) __builtin_trap();
    s->calls++;
    return at_err_set(err, AT_E_CANCELLED, "fuzz: client gone");
}

static void fuzz_model(const uint8_t *h, const uint8_t *cfg, size_t clen)
{
    FILE *f = fopen(config_path, "wb");
    if (!f) __builtin_trap();
    if (clen && fwrite(cfg, 1, clen, f) != clen) __builtin_trap();
    if (fclose(f)) __builtin_trap();
    at_err err = {0};
    at_vits_model *m = at_vits_model_load(model_dir, &err);
    if (!m) {
        check_err(err.code, &err);
        return;
    }
    const at_vits_hparams *hp = at_vits_model_hparams(m);
    if (hp->vocab < 1 || hp->hop < 1 || hp->num_speakers < 1) __builtin_trap();
    int n = 1 + (h[1] & 3), ids[4], bad = 0;
    for (int i = 0; i < n; i++) {
        ids[i] = h[1] & 4 ? (int)h[2 + i] - 8 : h[2 + i] % hp->vocab;
        bad |= ids[i] < 0 || ids[i] >= hp->vocab;
    }
    at_vits_params p;
    at_vits_params_default(m, &p);
    p.noise_scale = (float)h[6] / 127.5f;
    p.noise_scale_duration = (float)h[7] / 127.5f;
    p.speaker_id = ((h[1] >> 3) & 3) - 1;
    p.max_frames = MAX_FRAMES;
    memcpy(&p.seed, h, sizeof p.seed);
    bad |= p.speaker_id >= hp->num_speakers;
    int dur[4];
    at_err_clear(&err);
    if (h[1] & 32) {
        stopper s = {0};
        size_t total = 0;
        int rc = at_vits_synthesize_stream(m, pool, ids, n, &p, stop_sink, &s, &total, dur, &err);
        /* the sink is called (and stops it) whenever audio is made */
        if (rc == 0 || bad != (rc == AT_E_INVALID) || (s.calls && rc != AT_E_CANCELLED)) __builtin_trap();
        check_err(rc, &err);
    } else {
        float *wave = NULL;
        size_t len = 0;
        int rc = at_vits_synthesize(m, pool, ids, n, &p, &wave, &len, dur, &err);
        if (rc == 0) {
            /* every sample of the durations' frames, through tanh */
            size_t frames = 0;
            for (int i = 0; i < n; i++) {
                if (dur[i] < 0) __builtin_trap();
                frames += (size_t)dur[i];
            }
            if (bad || !wave || len % (size_t)hp->hop || len / (size_t)hp->hop != (frames ? frames : 1) ||
                frames > MAX_FRAMES)
                __builtin_trap();
            for (size_t i = 0; i < len; i++)
                if (!(fabsf(wave[i]) <= 1.0f)) __builtin_trap();
        } else {
            check_err(rc, &err);
            if (bad != (rc == AT_E_INVALID)) __builtin_trap();
        }
        free(wave);
    }
    at_vits_model_free(m);
}

/* ---- the input ---------------------------------------------------------- */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready;
    if (!ready) {
        setup();
        ready = 1;
    }
    if (size < HEADER) return 0;
    const uint8_t *h = data, *end = data + size, *part[4];
    size_t len[4];
    int parts = 0;
    for (const uint8_t *p = data + HEADER; parts < 4;) {
        const uint8_t *z = parts < 3 ? memchr(p, 0, (size_t)(end - p)) : NULL;
        part[parts] = p;
        len[parts++] = (size_t)((z ? z : end) - p);
        if (!z) break;
        p = z + 1;
    }
    /* the text is a C string: a copy with its NUL */
    char *text = malloc(parts > 2 ? len[2] + 1 : 1);
    if (!text) return 0;
    if (parts > 2) memcpy(text, part[2], len[2]);
    text[parts > 2 ? len[2] : 0] = 0;
    fuzz_tokenizer(h, (const char *)part[0], len[0], parts > 1 ? (const char *)part[1] : NULL,
                   parts > 1 ? len[1] : 0, text);
    free(text);
    if (parts == 4) fuzz_model(h, part[3], len[3]);
    return 0;
}
