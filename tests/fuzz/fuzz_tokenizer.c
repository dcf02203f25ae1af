/* fuzz_tokenizer - Whisper's tokenizer on any tokenizer.json and any text.
 *
 * Input: a tokenizer.json document, a NUL, text to encode, a NUL, then
 * token ids (16-bit little-endian) to decode.  Encoding must stay within
 * the vocabulary, decoding must give valid UTF-8, and when the vocabulary
 * holds every byte as a token (as the seed's does), encoding then decoding
 * valid UTF-8 must give the text back. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/strbuf.h"
#include "engines/asr/whisper/tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum { N_TEXT = 320, N_LANGS = 99 };

static int valid_utf8(const char *s, size_t n)
{
    for (size_t i = 0, k; i < n; i += k)
        if (!(k = at_utf8_len((const unsigned char *)s + i, n - i))) return 0;
    return 1;
}

/* 1 if every byte value is a one-byte text token: then any text has an
 * encoding, and decoding it must give the text back. */
static int all_bytes(const at_wtok *t)
{
    unsigned char seen[256] = {0};
    int n = 0;
    for (int id = 0; id < at_wtok_n_text(t); id++) {
        size_t len;
        const char *b = at_wtok_bytes(t, id, &len);
        if (b && len == 1 && !seen[(unsigned char)b[0]]++) n++;
    }
    return n == 256;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *z1 = memchr(data, 0, size);
    if (!z1) return 0;
    const uint8_t *text = z1 + 1;
    const uint8_t *z2 = memchr(text, 0, size - (size_t)(text - data));
    size_t tlen = z2 ? (size_t)(z2 - text) : size - (size_t)(text - data);
    const uint8_t *idb = z2 ? z2 + 1 : data + size;
    size_t n_ids = (size_t)(data + size - idb) / 2;

    int fd = memfd_create("tokenizer.json", MFD_CLOEXEC);
    if (fd < 0) return 0;
    at_err err;
    at_wtok *t = NULL;
    if (write(fd, data, (size_t)(z1 - data)) == (ssize_t)(z1 - data)) {
        char path[64];
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
        at_whisper_special sp;
        at_wtok_layout(N_TEXT, N_LANGS, &sp);
        t = at_wtok_new_hf_tokenizer_json(path, &sp, &err);
    }
    close(fd);
    if (!t) return 0;

    int *ids = NULL;
    size_t n = 0;
    if (at_wtok_encode(t, (const char *)text, tlen, &ids, &n, &err) == 0) {
        for (size_t i = 0; i < n; i++)
            if (ids[i] < 0 || ids[i] >= at_wtok_n_text(t)) __builtin_trap();
        char *back = at_wtok_decode(t, ids, n, &err);
        if (back) {
            if (!valid_utf8(back, strlen(back))) __builtin_trap();
            if (all_bytes(t) && valid_utf8((const char *)text, tlen) && !memchr(text, 0, tlen) &&
                (strlen(back) != tlen || memcmp(back, text, tlen) != 0))
                __builtin_trap();
            free(back);
        }
        free(ids);
    }
    int *dec = malloc((n_ids ? n_ids : 1) * sizeof *dec);
    if (dec) {
        for (size_t i = 0; i < n_ids; i++) dec[i] = (int)(int16_t)(idb[2 * i] | idb[2 * i + 1] << 8);
        char *s = at_wtok_decode(t, dec, n_ids, &err);
        if (s && !valid_utf8(s, strlen(s))) __builtin_trap();
        free(s);
        s = at_wtok_decode_with_timestamps(t, dec, n_ids, &err);
        free(s);
        free(dec);
    }
    at_wtok_free(t);
    return 0;
}
