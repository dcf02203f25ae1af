/* fuzz_spm - SentencePiece on any model file and any text.
 *
 * Input: a first byte choosing the mode, then the rest.  Mode even: the
 * rest is a .model file, loaded and used to encode and decode a fixed
 * multilingual text.  Mode odd: the rest is text, encoded with a small
 * model built here (unigram, user-defined piece, byte fallback off) and
 * its ids decoded.  Ids must stay within the vocabulary, pieces and ids
 * must agree, and decoding any valid ids must succeed. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "engines/mt/nmt/spm.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char fixed_text[] = "  Hello\tworld ﬁ Ｆｕｌｌ ÀÉ Привет Γειά مرحبا 你好 नमस्ते \xff\xc3 <sep>x  ";

static void exercise(const at_spm *m, const char *text, size_t len)
{
    at_err err;
    int *ids = NULL, n = 0;
    char *pieces = NULL;
    if (at_spm_encode_pieces(m, text, len, &ids, &n, &pieces, &err) != 0) return;
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= at_spm_size(m)) __builtin_trap();
    char *out = NULL;
    size_t out_len;
    if (at_spm_decode_n(m, ids, n, &out, &out_len, &err) != 0) __builtin_trap();
    free(out);
    free(ids);
    free(pieces);
    char *norm = NULL;
    size_t nl;
    if (at_spm_normalize(m, text, len, &norm, &nl, &err) == 0) free(norm);
}

/* A tiny ModelProto: pieces <unk> (UNKNOWN), <s>, </s> (CONTROL),
 * <sep> (USER_DEFINED), then a few NORMAL pieces; default specs. */
static size_t put_piece(uint8_t *b, const char *s, float score, int type)
{
    size_t l = strlen(s), k = 0;
    uint8_t inner[64];
    inner[k++] = 0x0A;
    inner[k++] = (uint8_t)l;
    memcpy(inner + k, s, l);
    k += l;
    inner[k++] = 0x15;
    memcpy(inner + k, &score, 4);
    k += 4;
    inner[k++] = 0x18;
    inner[k++] = (uint8_t)type;
    b[0] = 0x0A;
    b[1] = (uint8_t)k;
    memcpy(b + 2, inner, k);
    return k + 2;
}

static at_spm *small_model(void)
{
    static const char *normal[] = {"\xe2\x96\x81", "a", "b", "e", "l", "o", "\xe2\x96\x81he", "ll", "h", "x"};
    uint8_t buf[1024];
    size_t n = 0;
    n += put_piece(buf + n, "<unk>", 0, 2);
    n += put_piece(buf + n, "<s>", 0, 3);
    n += put_piece(buf + n, "</s>", 0, 3);
    n += put_piece(buf + n, "<sep>", 0, 4);
    for (size_t i = 0; i < sizeof normal / sizeof *normal; i++)
        n += put_piece(buf + n, normal[i], -1.0f - (float)i, 1);
    at_err err;
    return at_spm_load_mem(buf, n, &err);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    if (data[0] & 1) {
        at_spm *m = small_model();
        if (!m) __builtin_trap();
        exercise(m, (const char *)data + 1, size - 1);
        at_spm_free(m);
        return 0;
    }
    at_err err;
    at_spm *m = at_spm_load_mem(data + 1, size - 1, &err);
    if (!m) return 0;
    exercise(m, fixed_text, sizeof fixed_text - 1);
    at_spm_free(m);
    return 0;
}
