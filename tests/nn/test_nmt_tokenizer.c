/* test_nmt_tokenizer.c - the Marian / NLLB / M2M100 tokenizers on small
 * folders built from the SentencePiece fixtures (tests/data/spm), laid out
 * as Hugging Face ships them.
 *
 * The expected ids follow transformers' rules by hand from what spm_encode
 * prints for TEXT (verified by test_spm):
 *   bpe_nfkc: ▁H el lo ▁w or ld , ▁ ¿ qu é ▁t al ? ▁ ☃
 *             278 37 159 101 25 432 669 627 1771 92 674 23 32 928 627 0
 *   uni_nfkc: ▁H ell o ▁w or ld , ▁ ¿ q u é ▁ t al ? ▁ ☃
 *             426 879 17 315 56 438 18 7 2882 625 11 54 7 9 67 574 7 0
 * (☃ is not in either vocabulary: spm's unk, id 0). */
#include <cjson/cJSON.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include <cmocka.h>

#include "engines/mt/nmt/tokenizer.h"

#define TEXT "Hello world, \xc2\xbfqu\xc3\xa9 tal? \xe2\x98\x83"

static const char *src_dir(void)
{
    const char *d = getenv("AT_SOURCE_DIR");
    return d ? d : ".";
}

static void write_file(const char *dir, const char *name, const void *data, size_t n)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, n, f), n);
    fclose(f);
}

/* Copies tests/data/spm/<model>.model.gz, unpacked, to dir/name. */
static void put_model(const char *dir, const char *model, const char *name)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/tests/data/spm/%s.model.gz", src_dir(), model);
    gzFile f = gzopen(path, "rb");
    if (!f) fail_msg("%s missing", path);
    static char buf[1 << 20];
    int n = gzread(f, buf, sizeof buf);
    gzclose(f);
    assert_true(n > 0 && n < (int)sizeof buf);
    write_file(dir, name, buf, (size_t)n);
}

/* vocab.json: the given specials, then every piece of spm (id >= 3, the
 * model's own <unk>/<s>/</s> excluded) at spm id + offset. */
static void put_vocab(const char *dir, const char *name, const char *model, int offset, const char *const *sp,
                      const int *sp_ids, int n_sp)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    at_err err = {0};
    char mp[4096];
    snprintf(mp, sizeof mp, "%s/%s", dir, model);
    at_spm *m = at_spm_load(mp, &err);
    if (!m) fail_msg("%s", err.msg);
    cJSON *j = cJSON_CreateObject();
    for (int i = 0; i < n_sp; i++) cJSON_AddNumberToObject(j, sp[i], sp_ids[i]);
    for (int i = 3; i < at_spm_size(m); i++) cJSON_AddNumberToObject(j, at_spm_piece(m, i, NULL), i + offset);
    char *s = cJSON_PrintUnformatted(j);
    write_file(dir, name, s, strlen(s));
    free(s);
    cJSON_Delete(j);
    at_spm_free(m);
}

static char *make_dir(void)
{
    char *d = strdup("/tmp/at_nmt_tok_XXXXXX");
    assert_non_null(d);
    assert_non_null(mkdtemp(d));
    return d;
}

static void remove_dir(char *d)
{
    const char *names[] = {"source.spm",           "target.spm",  "vocab.json",
                           "target_vocab.json",    "config.json", "sentencepiece.bpe.model",
                           "tokenizer_config.json"};
    char path[4096];
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        snprintf(path, sizeof path, "%s/%s", d, names[i]);
        unlink(path);
    }
    rmdir(d);
    free(d);
}

static void assert_ids(const int *got, int n, const int *want, int n_want)
{
    for (int i = 0; i < n && i < n_want; i++)
        if (got[i] != want[i]) fail_msg("id %d: got %d, want %d", i, got[i], want[i]);
    assert_int_equal(n, n_want);
}

static void encode(const at_nmt_tok *t, const char *lang, const char *text, int **ids, int *n)
{
    at_err err = {0};
    if (at_nmt_tok_encode(t, lang, text, strlen(text), ids, n, &err) != 0) fail_msg("%s", err.msg);
}

static void assert_decode(const at_nmt_tok *t, const int *ids, int n, const char *want)
{
    at_err err = {0};
    char *s = NULL;
    if (at_nmt_tok_decode(t, ids, n, &s, &err) != 0) fail_msg("%s", err.msg);
    assert_string_equal(s, want);
    free(s);
}

/* Marian: source.spm = bpe_nfkc, target.spm = uni_nfkc, separate
 * vocabularies: vocab.json has source piece i at 1000 + i and
 * target_vocab.json target piece j at 5000 + j; </s> 0, <unk> 1,
 * >>spa<< 2, >>fra<< 3, <pad> 4 in both. */
static void test_marian(void **state)
{
    (void)state;
    char *d = make_dir();
    put_model(d, "bpe_nfkc", "source.spm");
    put_model(d, "uni_nfkc", "target.spm");
    const char *sp[] = {"</s>", "<unk>", ">>spa<<", ">>fra<<", "<pad>"};
    const int sp_ids[] = {0, 1, 2, 3, 4};
    put_vocab(d, "vocab.json", "source.spm", 1000, sp, sp_ids, 5);
    put_vocab(d, "target_vocab.json", "target.spm", 5000, sp, sp_ids, 5);
    write_file(d, "config.json", "{\"model_type\": \"marian\"}", 24);
    at_err err = {0};
    at_nmt_tok *t = at_nmt_tok_load(d, &err);
    if (!t) fail_msg("%s", err.msg);
    assert_int_equal(at_nmt_tok_kind_of(t), AT_NMT_TOK_MARIAN);
    assert_int_equal(at_nmt_tok_eos_id(t), 0);
    assert_int_equal(at_nmt_tok_pad_id(t), 4);

    /* pieces -> vocab.json ids, ☃ -> <unk>, then </s>. */
    int *ids, n;
    encode(t, NULL, TEXT, &ids, &n);
    const int want[] = {1278, 1037, 1159, 1101, 1025, 1432, 1669, 1627, 2771,
                        1092, 1674, 1023, 1032, 1928, 1627, 1,    0};
    assert_ids(ids, n, want, (int)(sizeof want / sizeof *want));
    free(ids);
    /* A leading >>spa<< is one token, the rest is encoded as before. */
    encode(t, NULL, ">>spa<< " TEXT, &ids, &n);
    assert_int_equal(n, 18);
    assert_int_equal(ids[0], 2);
    assert_ids(ids + 1, n - 1, want, (int)(sizeof want / sizeof *want));
    free(ids);

    assert_int_equal(at_nmt_tok_lang_id(t, "spa"), 2);
    assert_int_equal(at_nmt_tok_lang_id(t, "es"), 2);
    assert_int_equal(at_nmt_tok_lang_id(t, ">>fra<<"), 3);
    assert_int_equal(at_nmt_tok_lang_id(t, "de"), -1);
    assert_string_equal(at_nmt_tok_lang(t, 0), ">>spa<<");
    assert_string_equal(at_nmt_tok_lang(t, 1), ">>fra<<");
    assert_null(at_nmt_tok_lang(t, 2));

    /* Decoding goes through target_vocab.json and target.spm; pad, eos and
     * ids outside the vocabulary are skipped. */
    const int out[] = {4, 5426, 5879, 5017, 5315, 5056, 5438, 99999, 0};
    assert_decode(t, out, 9, "Hello world");
    at_nmt_tok_free(t);
    remove_dir(d);
}

/* NLLB: sentencepiece.bpe.model = bpe_nfkc (3000 pieces): fairseq ids are
 * spm id + 1 (spm's unk -> 3), languages from 3001 (eng_Latn is the 47th
 * code: 3047; spa_Latn the 161st: 3161), <mask> = 3001 + 202. */
static void test_nllb(void **state)
{
    (void)state;
    char *d = make_dir();
    put_model(d, "bpe_nfkc", "sentencepiece.bpe.model");
    at_err err = {0};
    at_nmt_tok *t = at_nmt_tok_load(d, &err);
    if (!t) fail_msg("%s", err.msg);
    assert_int_equal(at_nmt_tok_kind_of(t), AT_NMT_TOK_NLLB);
    assert_int_equal(at_nmt_tok_lang_id(t, "eng_Latn"), 3047);
    assert_int_equal(at_nmt_tok_lang_id(t, "en"), 3047);
    assert_int_equal(at_nmt_tok_lang_id(t, "spa_Latn"), 3161);
    assert_int_equal(at_nmt_tok_lang_id(t, "es"), 3161);
    assert_int_equal(at_nmt_tok_lang_id(t, "xx_Nope"), -1);
    assert_int_equal(at_nmt_tok_vocab_size(t), 3204);
    assert_string_equal(at_nmt_tok_lang(t, 0), "ace_Arab");
    assert_string_equal(at_nmt_tok_lang(t, 201), "zul_Latn");
    assert_null(at_nmt_tok_lang(t, 202));

    int *ids, n;
    encode(t, "eng_Latn", TEXT, &ids, &n);
    const int want[] = {3047, 279, 38, 160, 102, 26, 433, 670, 628, 1772, 93, 675, 24, 33, 929, 628, 3, 2};
    assert_ids(ids, n, want, (int)(sizeof want / sizeof *want));
    free(ids);
    assert_true(at_nmt_tok_encode(t, "klingon", "x", 1, &ids, &n, &err) < 0);
    assert_int_equal(err.code, AT_E_UNSUPPORTED);

    /* Decoder output: </s> spa_Latn pieces </s>; pieces joined, U+2581 ->
     * space, stripped. */
    const int out[] = {2, 3161, 279, 38, 160, 102, 26, 433, 3, 2, 1};
    assert_decode(t, out, 11, "Hello world");
    at_nmt_tok_free(t);

    /* legacy_behaviour: tokens </s> [src_lang]. */
    write_file(d, "tokenizer_config.json", "{\"legacy_behaviour\": true}", 26);
    t = at_nmt_tok_load(d, &err);
    assert_non_null(t);
    encode(t, "spa_Latn", "Hello", &ids, &n);
    assert_true(n >= 3);
    assert_int_equal(ids[n - 2], 2);
    assert_int_equal(ids[n - 1], 3161);
    free(ids);
    at_nmt_tok_free(t);
    remove_dir(d);
}

/* M2M100: sentencepiece.bpe.model = uni_nfkc, vocab.json <s> 0, <pad> 1,
 * </s> 2, <unk> 3, spm piece j at j + 1: 3001 entries, so __af__ = 3001,
 * __en__ = 3019, __es__ = 3020. */
static void test_m2m100(void **state)
{
    (void)state;
    char *d = make_dir();
    put_model(d, "uni_nfkc", "sentencepiece.bpe.model");
    const char *sp[] = {"<s>", "<pad>", "</s>", "<unk>"};
    const int sp_ids[] = {0, 1, 2, 3};
    put_vocab(d, "vocab.json", "sentencepiece.bpe.model", 1, sp, sp_ids, 4);
    at_err err = {0};
    at_nmt_tok *t = at_nmt_tok_load(d, &err);
    if (!t) fail_msg("%s", err.msg);
    assert_int_equal(at_nmt_tok_kind_of(t), AT_NMT_TOK_M2M100);
    assert_int_equal(at_nmt_tok_lang_id(t, "af"), 3001);
    assert_int_equal(at_nmt_tok_lang_id(t, "en"), 3019);
    assert_int_equal(at_nmt_tok_lang_id(t, "__es__"), 3020);
    assert_int_equal(at_nmt_tok_lang_id(t, "spa_Latn"), 3020);
    assert_int_equal(at_nmt_tok_lang_id(t, "tlh"), -1);
    assert_string_equal(at_nmt_tok_lang(t, 99), "zu");

    int *ids, n;
    encode(t, "es", TEXT, &ids, &n);
    const int want[] = {3020, 427, 880, 18, 316, 57, 439, 19, 8, 2883, 626, 12, 55, 8, 10, 68, 575, 8, 3, 2};
    assert_ids(ids, n, want, (int)(sizeof want / sizeof *want));
    free(ids);

    const int out[] = {2, 3019, 427, 880, 18, 316, 57, 439, 2};
    assert_decode(t, out, 9, "Hello world");
    at_nmt_tok_free(t);
    remove_dir(d);
}

static void test_missing(void **state)
{
    (void)state;
    char *d = make_dir();
    at_err err = {0};
    assert_null(at_nmt_tok_load(d, &err));
    assert_int_equal(err.code, AT_E_IO);
    remove_dir(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_marian),
        cmocka_unit_test(test_nllb),
        cmocka_unit_test(test_m2m100),
        cmocka_unit_test(test_missing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
