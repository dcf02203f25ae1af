/* test_spm.c - SentencePiece in C against Debian's sentencepiece tools.
 *
 * tests/data/spm (made by its generate.sh, see README.txt there) holds eight
 * models spm_train made (unigram and BPE; nmt_nfkc and identity; with and
 * without byte fallback; user-defined and control symbols, whitespace as
 * suffix, no dummy prefix, kept extra whitespace), 11 634 test sentences in
 * six scripts plus edge cases and invalid UTF-8, and per model and sentence
 * a CRC-32 of what spm_encode (ids and pieces) and spm_decode printed, plus
 * random id sequences with the CRC-32 of their spm_decode output.  Every
 * line must match: identical ids, pieces and decoded text. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include <cmocka.h>

#include "engines/mt/nmt/spm.h"

static const char *src_dir(void)
{
    const char *d = getenv("AT_SOURCE_DIR");
    return d ? d : ".";
}

/* Whole gzip file (NUL-terminated); fails the test when missing. */
static char *read_gz(const char *name, size_t *len)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/tests/data/spm/%s", src_dir(), name);
    gzFile f = gzopen(path, "rb");
    if (!f) fail_msg("%s missing: the fixtures are part of the repository", path);
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    assert_non_null(buf);
    for (;;) {
        if (cap - n < 65536) {
            cap *= 2;
            buf = realloc(buf, cap);
            assert_non_null(buf);
        }
        int got = gzread(f, buf + n, (unsigned)(cap - n - 1));
        assert_true(got >= 0);
        if (got == 0) break;
        n += (size_t)got;
    }
    gzclose(f);
    buf[n] = 0;
    *len = n;
    return buf;
}

static at_spm *load_model(const char *name)
{
    char file[256];
    size_t n;
    snprintf(file, sizeof file, "%s.model.gz", name);
    char *data = read_gz(file, &n);
    at_err err = {0};
    at_spm *m = at_spm_load_mem(data, n, &err);
    free(data);
    if (!m) fail_msg("%s: %s", name, err.msg);
    return m;
}

/* Splits buf in place into lines (the last one ends with "\n"). */
static char **split_lines(char *buf, size_t len, size_t *n_lines)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++) n += buf[i] == '\n';
    char **v = malloc((n + 1) * sizeof *v);
    assert_non_null(v);
    size_t k = 0;
    char *p = buf;
    for (size_t i = 0; i < len; i++)
        if (buf[i] == '\n') {
            buf[i] = 0;
            v[k++] = p;
            p = buf + i + 1;
        }
    *n_lines = k;
    return v;
}

typedef struct {
    char *p;
    size_t n, cap;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n)
{
    if (b->n + n + 1 > b->cap) {
        while (b->n + n + 1 > b->cap) b->cap = b->cap ? 2 * b->cap : 1024;
        b->p = realloc(b->p, b->cap);
        assert_non_null(b->p);
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

static void sb_ids(sbuf *b, const int *ids, int n)
{
    char tmp[16];
    for (int i = 0; i < n; i++) {
        int l = snprintf(tmp, sizeof tmp, i ? " %d" : "%d", ids[i]);
        sb_put(b, tmp, (size_t)l);
    }
}

static void check_model(const char *name)
{
    size_t slen, elen, n_sent, n_exp;
    char *sbufp = read_gz("sentences.txt.gz", &slen);
    char **sent = split_lines(sbufp, slen, &n_sent);
    char file[256];
    snprintf(file, sizeof file, "%s.expect.gz", name);
    char *ebufp = read_gz(file, &elen);
    char **exp = split_lines(ebufp, elen, &n_exp);
    at_spm *m = load_model(name);
    at_err err = {0};
    sbuf line = {NULL, 0, 0};
    int bad = 0;
    size_t n_e = 0, n_r = 0;
    assert_true(n_sent >= 10000);
    for (size_t k = 0; k < n_exp; k++) {
        line.n = 0;
        sb_put(&line, "", 0);
        if (exp[k][0] == 'E') {
            assert_true(n_e < n_sent);
            const char *s = sent[n_e++];
            int *ids = NULL, n = 0;
            char *pieces = NULL, *dec = NULL;
            size_t dlen = 0;
            if (at_spm_encode_pieces(m, s, strlen(s), &ids, &n, &pieces, &err) != 0)
                fail_msg("%s line %zu: %s", name, n_e, err.msg);
            if (at_spm_decode_n(m, ids, n, &dec, &dlen, &err) != 0) fail_msg("%s: %s", name, err.msg);
            sb_ids(&line, ids, n);
            sb_put(&line, "\t", 1);
            sb_put(&line, pieces, strlen(pieces));
            sb_put(&line, "\t", 1);
            sb_put(&line, dec, dlen);
            unsigned long crc = crc32(0, (const Bytef *)line.p, (uInt)line.n);
            if (crc != strtoul(exp[k] + 2, NULL, 16) && bad++ < 5)
                print_error(
                    "%s sentence %zu differs from spm_encode/spm_decode:\n  text   [%s]\n  ours   [%s]\n",
                    name, n_e, s, line.p);
            free(ids);
            free(pieces);
            free(dec);
        } else if (exp[k][0] == 'R') {
            /* "R id,id,... crc": random ids through spm_decode. */
            int ids[64], n = 0;
            char *p = exp[k] + 2;
            while (*p != ' ') {
                assert_true(n < 64);
                ids[n++] = (int)strtol(p, &p, 10);
                if (*p == ',') p++;
            }
            char *dec = NULL;
            size_t dlen = 0;
            if (at_spm_decode_n(m, ids, n, &dec, &dlen, &err) != 0) fail_msg("%s: %s", name, err.msg);
            unsigned long crc = crc32(0, (const Bytef *)dec, (uInt)dlen);
            if (crc != strtoul(p + 1, NULL, 16) && bad++ < 5)
                print_error("%s random ids %s decode differently: [%s]\n", name, exp[k] + 2, dec);
            free(dec);
            n_r++;
        }
    }
    assert_int_equal(n_e, n_sent);
    assert_true(n_r >= 100);
    if (bad) fail_msg("%s: %d of %zu lines differ from the sentencepiece tools", name, bad, n_exp);
    free(line.p);
    at_spm_free(m);
    free(exp);
    free(ebufp);
    free(sent);
    free(sbufp);
}

static void test_uni_nfkc(void **s) { (void)s, check_model("uni_nfkc"); }
static void test_uni_nfkc_bf(void **s) { (void)s, check_model("uni_nfkc_bf"); }
static void test_uni_id(void **s) { (void)s, check_model("uni_id"); }
static void test_uni_id_bf(void **s) { (void)s, check_model("uni_id_bf"); }
static void test_bpe_nfkc(void **s) { (void)s, check_model("bpe_nfkc"); }
static void test_bpe_nfkc_bf(void **s) { (void)s, check_model("bpe_nfkc_bf"); }
static void test_bpe_id(void **s) { (void)s, check_model("bpe_id"); }
static void test_bpe_id_bf(void **s) { (void)s, check_model("bpe_id_bf"); }

/* What a caller sees: the special ids, piece lookups, NFKC folding, byte
 * fallback, and refusals of bad input. */
static void test_api(void **state)
{
    (void)state;
    at_spm *m = load_model("uni_nfkc_bf");
    at_err err = {0};
    assert_int_equal(at_spm_model_type(m), AT_SPM_UNIGRAM);
    assert_int_equal(at_spm_unk_id(m), 0);
    assert_int_equal(at_spm_bos_id(m), 1);
    assert_int_equal(at_spm_eos_id(m), 2);
    assert_int_equal(at_spm_pad_id(m), -1);
    assert_int_equal(at_spm_piece_id(m, "<unk>"), 0);
    assert_int_equal(at_spm_piece_id(m, "</s>"), 2);
    assert_int_equal(at_spm_type(m, 2), AT_SPM_CONTROL);
    int b = at_spm_piece_id(m, "<0x41>");
    assert_true(b > 0);
    assert_int_equal(at_spm_type(m, b), AT_SPM_BYTE);
    assert_int_equal(at_spm_piece_id(m, "no such piece at all"), -1);
    assert_null(at_spm_piece(m, at_spm_size(m), NULL));

    /* Full-width letters fold to ASCII under nmt_nfkc. */
    int *a = NULL, *f = NULL, na, nf;
    assert_int_equal(at_spm_encode(m, "ABC 123", 7, &a, &na, &err), 0);
    const char *fw = "\xef\xbc\xa1\xef\xbc\xa2\xef\xbc\xa3\xe3\x80\x80\xef\xbc\x91\xef\xbc\x92\xef\xbc\x93";
    assert_int_equal(at_spm_encode(m, fw, strlen(fw), &f, &nf, &err), 0);
    assert_int_equal(na, nf);
    assert_memory_equal(a, f, (size_t)na * sizeof *a);
    free(a);
    free(f);

    /* An unseen character becomes its UTF-8 bytes and decodes back. */
    char *pieces = NULL, *text = NULL;
    const char *snow = "\xe2\x98\x83";
    assert_int_equal(at_spm_encode_pieces(m, snow, 3, &a, &na, &pieces, &err), 0);
    assert_string_equal(pieces, "\xe2\x96\x81 <0xE2> <0x98> <0x83>");
    assert_int_equal(at_spm_decode(m, a, na, &text, &err), 0);
    assert_string_equal(text, snow);
    free(a);
    free(pieces);
    free(text);

    /* Empty and all-space text give no ids. */
    assert_int_equal(at_spm_encode(m, "   ", 3, &a, &na, &err), 0);
    assert_int_equal(na, 0);
    assert_null(a);

    int bad[] = {5, at_spm_size(m)};
    assert_true(at_spm_decode(m, bad, 2, &text, &err) < 0);
    assert_int_equal(err.code, AT_E_INVALID);
    at_spm_free(m);

    /* Without byte fallback a run of unknown characters is one <unk>. */
    m = load_model("bpe_nfkc");
    assert_int_equal(at_spm_encode_pieces(m, "\xe2\x98\x83\xe2\x98\x83", 6, &a, &na, &pieces, &err), 0);
    assert_string_equal(pieces, "\xe2\x96\x81 \xe2\x98\x83\xe2\x98\x83");
    assert_int_equal(na, 2);
    assert_int_equal(a[1], 0);
    assert_int_equal(at_spm_decode(m, a, na, &text, &err), 0);
    assert_string_equal(text, " \xe2\x81\x87 ");
    free(a);
    free(pieces);
    free(text);
    /* User-defined symbols stay whole. */
    assert_int_equal(at_spm_encode_pieces(m, "a<sep>b", 7, NULL, NULL, &pieces, &err), 0);
    assert_non_null(strstr(pieces, " <sep> "));
    free(pieces);
    at_spm_free(m);
}

/* Truncated, garbled and empty model files are refused, never crash. */
static void test_corrupt(void **state)
{
    (void)state;
    size_t n;
    char *data = read_gz("uni_nfkc.model.gz", &n);
    at_err err = {0};
    assert_null(at_spm_load_mem(data, 0, &err));
    for (size_t cut = 1; cut < 4000; cut += 97) {
        at_spm *m = at_spm_load_mem(data, cut, &err);
        if (m)
            at_spm_free(m); /* a cut between pieces is a valid (small) model */
        else
            assert_int_equal(err.code, AT_E_CORRUPT);
    }
    unsigned char junk[64];
    for (size_t i = 0; i < sizeof junk; i++) junk[i] = (unsigned char)(i * 37 + 11);
    assert_null(at_spm_load_mem(junk, sizeof junk, &err));
    assert_null(at_spm_load("/nonexistent/x.model", &err));
    assert_int_equal(err.code, AT_E_IO);

    /* The character map's trie said to reach past the map's end (into its
     * last 1-3 bytes, where the header's 4 bytes were counted): once
     * loaded, and read up to 2 bytes past the copy for text starting with
     * a low byte. */
    size_t at = 0, len = 0;
    for (size_t p = 0; p + 4 < n && !at; p++) { /* NormalizerSpec field 2: a long length-delimited blob */
        if ((unsigned char)data[p] != 0x12) continue;
        size_t v = 0, k = p + 1;
        for (int sh = 0; k < n && sh < 28; sh += 7, k++) {
            v |= (size_t)((unsigned char)data[k] & 0x7F) << sh;
            if (!((unsigned char)data[k] & 0x80)) break;
        }
        k++;
        if (v > 100000 && k + v <= n) {
            size_t trie = (size_t)(unsigned char)data[k] | (size_t)(unsigned char)data[k + 1] << 8 |
                          (size_t)(unsigned char)data[k + 2] << 16 | (size_t)(unsigned char)data[k + 3] << 24;
            if (trie > 0 && trie < v - 4) at = k, len = v;
        }
    }
    assert_true(at > 0);
    at_spm *m = at_spm_load_mem(data, n, &err);
    assert_non_null(m); /* the map found is the model's own */
    at_spm_free(m);
    for (size_t over = 1; over <= 3; over++) {
        size_t trie = len - 4 + over;
        for (int b = 0; b < 4; b++) data[at + (size_t)b] = (char)(trie >> (8 * b));
        assert_null(at_spm_load_mem(data, n, &err));
        assert_int_equal(err.code, AT_E_CORRUPT);
        assert_non_null(strstr(err.msg, "precompiled_charsmap"));
    }
    free(data);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_uni_nfkc), cmocka_unit_test(test_uni_nfkc_bf),
        cmocka_unit_test(test_uni_id),   cmocka_unit_test(test_uni_id_bf),
        cmocka_unit_test(test_bpe_nfkc), cmocka_unit_test(test_bpe_nfkc_bf),
        cmocka_unit_test(test_bpe_id),   cmocka_unit_test(test_bpe_id_bf),
        cmocka_unit_test(test_api),      cmocka_unit_test(test_corrupt),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
