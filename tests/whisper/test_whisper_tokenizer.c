/* test_whisper_tokenizer.c - byte-level BPE, special tokens, languages.
 * Vocabularies are tiny and hand-made; expected ids are worked out by
 * hand in the comments. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "engines/asr/whisper/tokenizer.h"

/* ---- helpers ------------------------------------------------------------- */

static void enc(const at_wtok *t, const char *s, const int *want, size_t n_want)
{
    int *ids;
    size_t n;
    at_err err;
    assert_int_equal(at_wtok_encode(t, s, strlen(s), &ids, &n, &err), 0);
    if (n != n_want) {
        fprintf(stderr, "encode(\"%s\"): got", s);
        for (size_t i = 0; i < n; i++) fprintf(stderr, " %d", ids[i]);
        fprintf(stderr, "\n");
    }
    assert_int_equal(n, n_want);
    for (size_t i = 0; i < n; i++) assert_int_equal(ids[i], want[i]);
    free(ids);
}

static void roundtrip(const at_wtok *t, const char *s)
{
    int *ids;
    size_t n;
    at_err err;
    assert_int_equal(at_wtok_encode(t, s, strlen(s), &ids, &n, &err), 0);
    char *back = at_wtok_decode(t, ids, n, &err);
    assert_non_null(back);
    assert_string_equal(back, s);
    free(back);
    free(ids);
}

#define ENC(t, s, ...)                                                                                       \
    do {                                                                                                     \
        const int w_[] = {__VA_ARGS__};                                                                      \
        enc(t, s, w_, sizeof w_ / sizeof w_[0]);                                                             \
    } while (0)

/* ---- layout and languages ------------------------------------------------ */

static void test_layout(void **st)
{
    (void)st;
    at_whisper_special sp;
    at_err err;
    /* multilingual (tiny..large-v2): 50257 text tokens */
    assert_int_equal(at_wtok_layout_from_n_vocab(51865, &sp, &err), 0);
    assert_int_equal(sp.eot, 50257);
    assert_int_equal(sp.sot, 50258);
    assert_int_equal(sp.n_langs, 99);
    assert_int_equal(sp.translate, 50358);
    assert_int_equal(sp.transcribe, 50359);
    assert_int_equal(sp.solm, 50360);
    assert_int_equal(sp.prev, 50361);
    assert_int_equal(sp.nosp, 50362);
    assert_int_equal(sp.not_, 50363);
    assert_int_equal(sp.beg, 50364);
    assert_true(sp.is_multilingual);
    /* English-only: gpt2 vocabulary of 50256 */
    assert_int_equal(at_wtok_layout_from_n_vocab(51864, &sp, &err), 0);
    assert_int_equal(sp.eot, 50256);
    assert_int_equal(sp.sot, 50257);
    assert_int_equal(sp.translate, 50357);
    assert_int_equal(sp.not_, 50362);
    assert_int_equal(sp.beg, 50363);
    assert_false(sp.is_multilingual);
    /* large-v3: 100 languages (yue) */
    assert_int_equal(at_wtok_layout_from_n_vocab(51866, &sp, &err), 0);
    assert_int_equal(sp.n_langs, 100);
    assert_int_equal(sp.translate, 50359);
    assert_int_equal(sp.beg, 50365);
    /* too small to hold the specials */
    assert_int_equal(at_wtok_layout_from_n_vocab(1000, &sp, &err), AT_E_CORRUPT);
}

static at_wtok *bytes_vocab(const char *const *extra, int n_extra, int n_langs)
{
    /* ids 0..255 = the single bytes, then the extra tokens */
    static char singles[256];
    const char *toks[300];
    size_t lens[300];
    for (int i = 0; i < 256; i++) {
        singles[i] = (char)i;
        toks[i] = &singles[i];
        lens[i] = 1;
    }
    for (int i = 0; i < n_extra; i++) {
        toks[256 + i] = extra[i];
        lens[256 + i] = strlen(extra[i]);
    }
    at_whisper_special sp;
    at_wtok_layout(256 + n_extra, n_langs, &sp);
    at_err err;
    at_wtok *t = at_wtok_new_bytes(toks, lens, (size_t)(256 + n_extra), &sp, &err);
    assert_non_null(t);
    return t;
}

static void test_languages(void **st)
{
    (void)st;
    at_whisper_special sp;
    at_err err;
    assert_int_equal(at_wtok_layout_from_n_vocab(51866, &sp, &err), 0);
    const char *none[] = {"x"};
    /* a vocabulary with the real special layout but only byte tokens */
    const char *toks[1] = {none[0]};
    size_t lens[1] = {1};
    at_wtok *t = at_wtok_new_bytes(toks, lens, 1, &sp, &err);
    assert_non_null(t);
    assert_int_equal(at_wtok_lang_token(t, "en"), 50259);
    assert_int_equal(at_wtok_lang_token(t, "zh"), 50260);
    assert_int_equal(at_wtok_lang_token(t, "de"), 50261);
    assert_int_equal(at_wtok_lang_token(t, "su"), 50357);  /* index 98 */
    assert_int_equal(at_wtok_lang_token(t, "yue"), 50358); /* index 99, v3 only */
    assert_int_equal(at_wtok_lang_token(t, "xx"), -1);
    assert_string_equal(at_wtok_lang_code(t, 50259), "en");
    assert_string_equal(at_wtok_lang_code(t, 50358), "yue");
    assert_null(at_wtok_lang_code(t, 50258));
    assert_null(at_wtok_lang_code(t, 50359));
    const char *const *l99 = at_wtok_languages(99), *const *l100 = at_wtok_languages(100);
    int n99 = 0, n100 = 0;
    while (l99[n99]) n99++;
    while (l100[n100]) n100++;
    assert_int_equal(n99, 99);
    assert_int_equal(n100, 100);
    assert_string_equal(l99[29], "no");
    assert_string_equal(l99[92], "tt");
    assert_string_equal(l99[93], "haw");
    at_wtok_free(t);

    /* 99-language model: yue does not exist */
    assert_int_equal(at_wtok_layout_from_n_vocab(51865, &sp, &err), 0);
    t = at_wtok_new_bytes(toks, lens, 1, &sp, &err);
    assert_int_equal(at_wtok_lang_token(t, "yue"), -1);
    assert_int_equal(at_wtok_lang_token(t, "su"), 50357);
    at_wtok_free(t);
}

/* ---- ggml vocabulary: raw bytes, rank = id -------------------------------- */

static void test_bytes_bpe(void **st)
{
    (void)st;
    const char *extra[] = {
        " t",   /* 256 */
        "he",   /* 257 */
        " the", /* 258 */
        "ll",   /* 259 */
        "hell", /* 260 */
        "  ",   /* 261: two spaces, must not swallow the space before a word */
        "x9",   /* 262: never across a letter/number boundary */
        "99",   /* 263 */
        "'t",   /* 264 */
        "e ",   /* 265: never across words */
        "el",   /* 266 */
    };
    at_wtok *t = bytes_vocab(extra, 11, 99);
    /* whole pre-token is a token: taken directly */
    ENC(t, " the", 258);
    /* "the": t h e -> (h,e)=257 is the only pair with a token -> t, he */
    ENC(t, "the", 't', 257);
    /* "hello": pairs he=257, el=266, ll=259: lowest id first: he -> [he,l,l,o];
     * then ll=259 -> [he,ll,o]; then he+ll = hell=260 -> [hell, o] */
    ENC(t, "hello", 260, 'o');
    /* "help": he=257 first -> [he, l, p]; "hel" is no token -> stays */
    ENC(t, "help", 257, 'l', 'p');
    /* "he the": pre-tokens "he", " the"; "e " must not be used */
    ENC(t, "he the", 257, 258);
    /* "a  b": "a", " ", " b" (\s+(?!\S) leaves the last space to the word) */
    ENC(t, "a  b", 'a', ' ', ' ', 'b');
    /* trailing spaces are one pre-token */
    ENC(t, "a  ", 'a', 261);
    /* letters and numbers split: "x", "99" */
    ENC(t, "x99", 'x', 263);
    /* contractions */
    ENC(t, "don't", 'd', 'o', 'n', 264);
    /* newline: its own pre-token ("\n" then " the") */
    ENC(t, "\n the", '\n', 258);
    /* multi-byte letters stay in the word: round trip */
    roundtrip(t, "na\xC3\xAFve caf\xC3\xA9 \xE2\x99\xAA 12 3!? \t\n x");
    roundtrip(t, "");
    at_wtok_free(t);
}

static void test_decode_specials(void **st)
{
    (void)st;
    at_wtok *t = bytes_vocab(NULL, 0, 2);
    const at_whisper_special *sp = at_wtok_special(t);
    /* layout: eot 256, sot 257, langs 258..259, translate 260 ... beg 266 */
    assert_int_equal(sp->eot, 256);
    assert_int_equal(sp->sot, 257);
    assert_int_equal(sp->translate, 260);
    assert_int_equal(sp->beg, 266);
    at_err err;
    int ids[] = {'h', sp->eot, 'i', sp->beg + 50, sp->sot, '!'};
    char *s = at_wtok_decode(t, ids, 6, &err);
    assert_string_equal(s, "hi!");
    free(s);
    s = at_wtok_decode_with_timestamps(t, ids, 6, &err);
    assert_string_equal(s, "h<|endoftext|>i<|1.00|><|startoftranscript|>!");
    free(s);
    int ids2[] = {sp->sot + 1, sp->transcribe, sp->not_, sp->beg, sp->beg + 1500};
    s = at_wtok_decode_with_timestamps(t, ids2, 5, &err);
    assert_string_equal(s, "<|en|><|transcribe|><|notimestamps|><|0.00|><|30.00|>");
    free(s);
    assert_true(at_wtok_is_timestamp(t, sp->beg));
    assert_true(at_wtok_is_timestamp(t, sp->beg + 1500));
    assert_false(at_wtok_is_timestamp(t, sp->beg + 1501));
    assert_false(at_wtok_is_timestamp(t, sp->not_));
    /* invalid UTF-8 becomes U+FFFD, one per broken sequence */
    int bad[] = {0xC3, 'a', 0xE2, 0x99, 'b', 0xFF};
    s = at_wtok_decode(t, bad, 6, &err);
    assert_string_equal(s, "\xEF\xBF\xBD"
                           "a"
                           "\xEF\xBF\xBD"
                           "b"
                           "\xEF\xBF\xBD");
    free(s);
    /* a character split over two tokens is whole again when joined */
    int split[] = {0xC3, 0xA9};
    s = at_wtok_decode(t, split, 2, &err);
    assert_string_equal(s, "\xC3\xA9");
    free(s);
    size_t len;
    const char *b = at_wtok_bytes(t, 'q', &len);
    assert_int_equal(len, 1);
    assert_int_equal(b[0], 'q');
    assert_null(at_wtok_bytes(t, sp->eot, &len));
    at_wtok_free(t);
}

static int has(const int *v, size_t n, int x)
{
    for (size_t i = 0; i < n; i++)
        if (v[i] == x) return 1;
    return 0;
}

static void test_non_speech(void **st)
{
    (void)st;
    /* " (" is a token here, " -" is not */
    const char *extra[] = {" (", "\xE2\x99"};
    at_wtok *t = bytes_vocab(extra, 2, 99);
    int *ids;
    size_t n;
    at_err err;
    assert_int_equal(at_wtok_non_speech_tokens(t, &ids, &n, &err), 0);
    for (size_t i = 1; i < n; i++) assert_true(ids[i - 1] < ids[i]); /* sorted, unique */
    assert_true(has(ids, n, '"'));
    assert_true(has(ids, n, '#'));
    assert_true(has(ids, n, '~'));
    assert_true(has(ids, n, 256));  /* " (" single token */
    assert_true(has(ids, n, 257));  /* first token of each music symbol */
    assert_true(has(ids, n, ' '));  /* first token of " -" / " '" */
    assert_false(has(ids, n, '-')); /* hyphens inside words are fine */
    assert_false(has(ids, n, '.'));
    assert_false(has(ids, n, ','));
    assert_false(has(ids, n, '?'));
    assert_false(has(ids, n, 'a'));
    free(ids);
    at_wtok_free(t);

    /* placeholder vocabularies (no byte tokens) cannot spell the symbols:
     * an empty list, while encoding text reports the gap */
    const char *ph[] = {"[_tok_0]", "[_tok_1]"};
    size_t pl[] = {8, 8};
    at_whisper_special sp;
    at_wtok_layout(2, 99, &sp);
    t = at_wtok_new_bytes(ph, pl, 2, &sp, &err);
    assert_non_null(t);
    assert_int_equal(at_wtok_non_speech_tokens(t, &ids, &n, &err), 0);
    assert_int_equal(n, 0);
    free(ids);
    assert_int_equal(at_wtok_encode(t, "hi", 2, &ids, &n, &err), AT_E_CORRUPT);
    at_wtok_free(t);
}

/* ---- Hugging Face files -------------------------------------------------- */

/* GPT-2 byte -> code point, written out independently of the library:
 * printable bytes keep their value, the others get 256, 257, ... in order. */
static unsigned cp_of(int b)
{
    unsigned n = 0;
    for (int x = 0; x < 256; x++) {
        int keep = (x >= 33 && x <= 126) || (x >= 161 && x <= 172) || (x >= 174);
        if (x == b) return keep ? (unsigned)x : 256 + n;
        if (!keep) n++;
    }
    return 0;
}

static void put_cp(FILE *f, unsigned c)
{
    if (c == '"' || c == '\\')
        fprintf(f, "\\%c", (char)c);
    else if (c < 0x80)
        fputc((int)c, f);
    else
        fprintf(f, "%c%c", (char)(0xC0 | (c >> 6)), (char)(0x80 | (c & 0x3F)));
}

/* GPT-2's vocabulary order for the 256 byte tokens */
static int gpt2_byte_id(int b)
{
    int id = 0;
    for (int x = 0; x < 256; x++) {
        int keep = (x >= 33 && x <= 126) || (x >= 161 && x <= 172) || (x >= 174);
        if (keep) {
            if (x == b) return id;
            id++;
        }
    }
    for (int x = 0; x < 256; x++) {
        int keep = (x >= 33 && x <= 126) || (x >= 161 && x <= 172) || (x >= 174);
        if (!keep) {
            if (x == b) return id;
            id++;
        }
    }
    return -1;
}

static char tmpdir[256];

/* extra tokens of the HF test vocabulary, in HF spelling (Ġ = space) */
static const char *hf_extra[] = {"\xC4\xA0t", "he", "\xC4\xA0the", "ll", "hell", "'s"};
static const char *hf_merges[] = {"\xC4\xA0 t", "h e", "\xC4\xA0t he", "l l", "he ll", "' s"};

static void write_vocab_obj(FILE *f, int with_eot)
{
    fputc('{', f);
    for (int id = 0; id < 256; id++) {
        int b = 0;
        while (gpt2_byte_id(b) != id) b++;
        fputc('"', f);
        put_cp(f, cp_of(b));
        fprintf(f, "\": %d, ", id);
    }
    for (int i = 0; i < 6; i++) fprintf(f, "\"%s\": %d, ", hf_extra[i], 256 + i);
    if (with_eot) fprintf(f, "\"<|endoftext|>\": 262, ");
    fprintf(f, "\"unused\": 9999}");
}

static int setup_hf(void **st)
{
    (void)st;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/at_wtok_XXXXXX");
    if (!mkdtemp(tmpdir)) return -1;
    char p[512];
    snprintf(p, sizeof p, "%s/vocab.json", tmpdir);
    FILE *f = fopen(p, "w");
    write_vocab_obj(f, 1);
    fclose(f);
    snprintf(p, sizeof p, "%s/merges.txt", tmpdir);
    f = fopen(p, "w");
    fprintf(f, "#version: 0.2\n");
    for (int i = 0; i < 6; i++) fprintf(f, "%s\n", hf_merges[i]);
    fclose(f);
    return 0;
}

static int teardown_hf(void **st)
{
    (void)st;
    char p[512];
    const char *names[] = {"vocab.json", "merges.txt", "tokenizer.json", "sub/tokenizer.json"};
    for (int i = 0; i < 4; i++) {
        snprintf(p, sizeof p, "%s/%s", tmpdir, names[i]);
        unlink(p);
    }
    snprintf(p, sizeof p, "%s/sub", tmpdir);
    rmdir(p);
    rmdir(tmpdir);
    return 0;
}

static void check_hf_tok(const at_wtok *t)
{
    /* byte ids: GPT-2 order: '!' = 0, 'A' = 32, 'a' = 64, space = 220, '\n' = 198 */
    int sp_ = gpt2_byte_id(' '), a = gpt2_byte_id('a');
    assert_int_equal(sp_, 220);
    assert_int_equal(gpt2_byte_id('\n'), 198);
    assert_int_equal(gpt2_byte_id('!'), 0);
    assert_int_equal(a, 64);
    ENC(t, " ", 220);
    ENC(t, "\n", 198);
    ENC(t, "a", 64);
    /* " the": merges by rank: (Ġ,t)=0 -> [Ġt,h,e]; (h,e)=1 -> [Ġt,he];
     * (Ġt,he)=2 -> Ġthe = 258 */
    ENC(t, " the", 258);
    /* "the": (h,e) -> [t, he]; no (t, he) merge */
    ENC(t, "the", gpt2_byte_id('t'), 257);
    /* "hello": he (1), ll (3), he+ll (4) -> [hell, o] */
    ENC(t, "hello", 260, gpt2_byte_id('o'));
    /* "it's": "it" + "'s" */
    ENC(t, "it's", gpt2_byte_id('i'), gpt2_byte_id('t'), 261);
    /* "Hi  there\n": "Hi", " ", " there", "\n" */
    ENC(t, "Hi  there\n", gpt2_byte_id('H'), gpt2_byte_id('i'), 220, 258, gpt2_byte_id('r'),
        gpt2_byte_id('e'), 198);
    roundtrip(t, " the hello world\n\xC3\xA9t\xC3\xA9 \xE6\x97\xA5\xE6\x9C\xAC");
    at_err err;
    int ids[] = {258, 220, 260};
    char *s = at_wtok_decode(t, ids, 3, &err);
    assert_string_equal(s, " the hell");
    free(s);
}

static void test_hf_vocab_merges(void **st)
{
    (void)st;
    at_whisper_special sp;
    at_wtok_layout(262, 99, &sp);
    at_err err;
    at_wtok *t = at_wtok_new_hf_dir(tmpdir, &sp, &err);
    assert_non_null(t);
    check_hf_tok(t);
    at_wtok_free(t);
}

static void test_hf_tokenizer_json(void **st)
{
    (void)st;
    char p[512];
    snprintf(p, sizeof p, "%s/sub", tmpdir);
    mkdir(p, 0700);
    snprintf(p, sizeof p, "%s/sub/tokenizer.json", tmpdir);
    FILE *f = fopen(p, "w");
    fprintf(f, "{\"added_tokens\": [{\"id\": 262, \"content\": \"<|endoftext|>\"},"
               " {\"id\": 263, \"content\": \"<|startoftranscript|>\"}],"
               " \"model\": {\"type\": \"BPE\", \"vocab\": ");
    write_vocab_obj(f, 0);
    /* both merge spellings: "a b" and ["a", "b"] */
    fprintf(f, ", \"merges\": [\"%s\", [\"h\", \"e\"]", hf_merges[0]);
    for (int i = 2; i < 6; i++) fprintf(f, ", \"%s\"", hf_merges[i]);
    fprintf(f, "]}}");
    fclose(f);
    at_whisper_special sp;
    at_wtok_layout(262, 99, &sp);
    at_err err;
    snprintf(p, sizeof p, "%s/sub", tmpdir);
    at_wtok *t = at_wtok_new_hf_dir(p, &sp, &err);
    assert_non_null(t);
    check_hf_tok(t);
    at_wtok_free(t);
    /* specials somewhere else than the model expects: refused */
    at_wtok_layout(261, 99, &sp);
    t = at_wtok_new_hf_dir(p, &sp, &err);
    assert_null(t);
    assert_int_equal(err.code, AT_E_CORRUPT);
}

static void test_hf_missing(void **st)
{
    (void)st;
    at_whisper_special sp;
    at_wtok_layout(262, 99, &sp);
    at_err err;
    assert_null(at_wtok_new_hf_dir("/nonexistent/dir", &sp, &err));
    assert_int_equal(err.code, AT_E_IO);
}

static void test_encode_limit(void **st)
{
    (void)st;
    at_wtok *t = bytes_vocab(NULL, 0, 99);
    size_t n = AT_WTOK_MAX_ENCODE_BYTES + 1;
    char *big = malloc(n);
    memset(big, 'a', n);
    int *ids;
    size_t nid;
    at_err err;
    assert_int_equal(at_wtok_encode(t, big, n, &ids, &nid, &err), AT_E_TOO_LARGE);
    /* the longest allowed single word is fine */
    assert_int_equal(at_wtok_encode(t, big, n - 1, &ids, &nid, &err), 0);
    assert_int_equal(nid, n - 1);
    free(ids);
    free(big);
    at_wtok_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layout),
        cmocka_unit_test(test_languages),
        cmocka_unit_test(test_bytes_bpe),
        cmocka_unit_test(test_decode_specials),
        cmocka_unit_test(test_non_speech),
        cmocka_unit_test(test_hf_vocab_merges),
        cmocka_unit_test(test_hf_tokenizer_json),
        cmocka_unit_test(test_hf_missing),
        cmocka_unit_test(test_encode_limit),
    };
    return cmocka_run_group_tests(tests, setup_hf, teardown_hf);
}
