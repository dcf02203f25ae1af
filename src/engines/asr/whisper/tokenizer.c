/* tokenizer.c - Whisper byte-level BPE (see tokenizer.h). */
#include "engines/asr/whisper/tokenizer.h"

#include <cjson/cJSON.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engines/asr/whisper/tokenizer_ucd.h"

/* Tokenizer files larger than this are not Whisper tokenizers (the real
 * tokenizer.json is about 2.5 MB); refusing them bounds the allocation. */
#define WTOK_MAX_FILE (64u << 20)
#define WTOK_MAX_TEXT 1000000 /* more text tokens than any BPE vocabulary */

/* OpenAI's LANGUAGES order: token id = sot + 1 + index. */
#define WTOK_LANGS_99                                                                                        \
    "en", "zh", "de", "es", "ru", "ko", "fr", "ja", "pt", "tr", "pl", "ca", "nl", "ar", "sv", "it", "id",    \
        "hi", "fi", "vi", "he", "uk", "el", "ms", "cs", "ro", "da", "hu", "ta", "no", "th", "ur", "hr",      \
        "bg", "lt", "la", "mi", "ml", "cy", "sk", "te", "fa", "lv", "bn", "sr", "az", "sl", "kn", "et",      \
        "mk", "br", "eu", "is", "hy", "ne", "mn", "bs", "kk", "sq", "sw", "gl", "mr", "pa", "si", "km",      \
        "sn", "yo", "so", "af", "oc", "ka", "be", "tg", "sd", "gu", "am", "yi", "lo", "uz", "fo", "ht",      \
        "ps", "tk", "nn", "mt", "sa", "lb", "my", "bo", "tl", "mg", "as", "tt", "haw", "ln", "ha", "ba",     \
        "jw", "su"
static const char *const wtok_langs99[] = {WTOK_LANGS_99, NULL};
static const char *const wtok_langs100[] = {WTOK_LANGS_99, "yue", NULL};

struct at_wtok {
    at_whisper_special sp;
    int n_text;
    uint32_t *off; /* n_text + 1 offsets into arena */
    char *arena;
    int32_t *tab; /* open addressing: bytes -> id, -1 = empty */
    uint32_t tab_mask;
    /* HF merges: (left id, right id) -> rank.  NULL: rank = merged id. */
    uint64_t *mkeys;
    int32_t *mranks;
    uint32_t m_mask;
    int byte_id[256];
};

/* ---- layout ------------------------------------------------------------ */

void at_wtok_layout(int n_text, int n_langs, at_whisper_special *o)
{
    memset(o, 0, sizeof *o);
    o->eot = n_text;
    o->sot = n_text + 1;
    o->n_langs = n_langs;
    o->translate = o->sot + 1 + n_langs;
    o->transcribe = o->translate + 1;
    o->solm = o->translate + 2;
    o->prev = o->translate + 3;
    o->nosp = o->translate + 4;
    o->not_ = o->translate + 5;
    o->beg = o->translate + 6;
    /* The .en vocabulary (gpt2) has 50256 text tokens, the multilingual
     * ones 50257: that is how OpenAI tells them apart. */
    o->is_multilingual = n_text != 50256;
}

int at_wtok_layout_from_n_vocab(int n_vocab, at_whisper_special *out, at_err *err)
{
    /* OpenAI model.py: num_languages = n_vocab - 51765 - is_multilingual. */
    int multi = n_vocab >= 51865;
    int n_langs = n_vocab - 51765 - multi;
    if (n_vocab < 51864 || n_langs > AT_WTOK_MAX_LANGS)
        return at_err_set(err, AT_E_CORRUPT, "whisper: unexpected vocabulary size %d", n_vocab);
    /* n_text + 2 (eot, sot) + langs + 6 + 1501 timestamps = n_vocab */
    at_wtok_layout(n_vocab - 2 - n_langs - 6 - AT_WTOK_N_TIMESTAMPS, n_langs, out);
    out->is_multilingual = multi;
    return 0;
}

const at_whisper_special *at_wtok_special(const at_wtok *t) { return &t->sp; }
int at_wtok_n_text(const at_wtok *t) { return t->n_text; }

int at_wtok_is_timestamp(const at_wtok *t, int id)
{
    return id >= t->sp.beg && id < t->sp.beg + AT_WTOK_N_TIMESTAMPS;
}

/* ---- GPT-2 byte <-> unicode mapping ------------------------------------ */

/* Printable Latin-1 bytes map to themselves; the others to 256 + n in byte
 * order, so every byte has a visible code point (GPT-2's bytes_to_unicode). */
static void byte_to_cp(uint32_t map[256])
{
    uint32_t n = 0;
    for (int b = 0; b < 256; b++) {
        int keep = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
        map[b] = keep ? (uint32_t)b : 256 + n++;
    }
}

/* Decodes one UTF-8 code point strictly; returns its length, 0 if invalid. */
static size_t utf8_next(const unsigned char *s, size_t n, uint32_t *cp)
{
    if (n == 0) return 0;
    unsigned c = s[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    size_t len;
    uint32_t v, min;
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
        v = c & 0x1F;
        min = 0x80;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        v = c & 0x0F;
        min = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        v = c & 0x07;
        min = 0x10000;
    } else
        return 0;
    if (n < len) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        v = (v << 6) | (s[i] & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return 0;
    *cp = v;
    return len;
}

/* HF vocabulary string -> raw bytes (malloc'd).  Returns NULL with *bad set
 * when a character is outside the mapping. */
static char *hf_to_bytes(const char *s, const int inv[512], size_t *len, int *bad)
{
    size_t n = strlen(s), o = 0;
    char *out = malloc(n + 1);
    *bad = 0;
    if (!out) return NULL;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t l = utf8_next((const unsigned char *)s + i, n - i, &cp);
        if (!l || cp >= 512 || inv[cp] < 0) {
            free(out);
            *bad = 1;
            return NULL;
        }
        out[o++] = (char)inv[cp];
        i += l;
    }
    *len = o;
    return out;
}

/* ---- hash of byte strings ------------------------------------------------ */

static uint64_t hash_bytes(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ull;
    }
    return h;
}

static uint64_t hash_u64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    return x;
}

static int lookup(const at_wtok *t, const char *s, size_t n)
{
    uint32_t i = (uint32_t)hash_bytes(s, n) & t->tab_mask;
    for (;;) {
        int32_t id = t->tab[i];
        if (id < 0) return -1;
        size_t l = t->off[id + 1] - t->off[id];
        if (l == n && memcmp(t->arena + t->off[id], s, n) == 0) return id;
        i = (i + 1) & t->tab_mask;
    }
}

static int merge_rank(const at_wtok *t, int a, int b)
{
    uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    uint32_t i = (uint32_t)hash_u64(key) & t->m_mask;
    for (;;) {
        if (t->mranks[i] < 0) return INT_MAX;
        if (t->mkeys[i] == key) return t->mranks[i];
        i = (i + 1) & t->m_mask;
    }
}

static uint32_t pow2_above(size_t n)
{
    uint32_t s = 16;
    while (s < 2 * n) s <<= 1;
    return s;
}

void at_wtok_free(at_wtok *t)
{
    if (!t) return;
    free(t->off);
    free(t->arena);
    free(t->tab);
    free(t->mkeys);
    free(t->mranks);
    free(t);
}

/* Builds the tokenizer from byte strings by id (NULL = missing). */
static at_wtok *build(const char *const *tokens, const size_t *lens, size_t n, const at_whisper_special *sp,
                      at_err *err)
{
    if (sp->eot <= 0 || sp->eot > WTOK_MAX_TEXT) {
        at_err_set(err, AT_E_CORRUPT, "whisper tokenizer: bad eot id %d", sp->eot);
        return NULL;
    }
    at_wtok *t = calloc(1, sizeof *t);
    if (!t) goto nomem;
    t->sp = *sp;
    t->n_text = sp->eot;
    size_t total = 0;
    for (size_t i = 0; i < n && i < (size_t)t->n_text; i++)
        if (tokens[i]) total += lens[i];
    if (total > WTOK_MAX_FILE) {
        at_wtok_free(t);
        at_err_set(err, AT_E_CORRUPT, "whisper tokenizer: vocabulary too large");
        return NULL;
    }
    t->off = malloc(((size_t)t->n_text + 1) * sizeof *t->off);
    t->arena = malloc(total ? total : 1);
    t->tab_mask = pow2_above((size_t)t->n_text) - 1;
    t->tab = malloc(((size_t)t->tab_mask + 1) * sizeof *t->tab);
    if (!t->off || !t->arena || !t->tab) goto nomem;
    memset(t->tab, 0xff, ((size_t)t->tab_mask + 1) * sizeof *t->tab);
    size_t o = 0;
    for (int id = 0; id < t->n_text; id++) {
        t->off[id] = (uint32_t)o;
        if ((size_t)id < n && tokens[id]) {
            memcpy(t->arena + o, tokens[id], lens[id]);
            o += lens[id];
        }
    }
    t->off[t->n_text] = (uint32_t)o;
    for (int i = 0; i < 256; i++) t->byte_id[i] = -1;
    for (int id = 0; id < t->n_text; id++) {
        size_t l = t->off[id + 1] - t->off[id];
        if (l == 0) continue;
        const char *s = t->arena + t->off[id];
        if (lookup(t, s, l) >= 0) continue; /* duplicate: first id wins */
        uint32_t h = (uint32_t)hash_bytes(s, l) & t->tab_mask;
        while (t->tab[h] >= 0) h = (h + 1) & t->tab_mask;
        t->tab[h] = id;
        if (l == 1 && t->byte_id[(unsigned char)s[0]] < 0) t->byte_id[(unsigned char)s[0]] = id;
    }
    return t;
nomem:
    at_wtok_free(t);
    at_err_set(err, AT_E_NOMEM, "out of memory");
    return NULL;
}

at_wtok *at_wtok_new_bytes(const char *const *tokens, const size_t *lens, size_t n_tokens,
                           const at_whisper_special *sp, at_err *err)
{
    return build(tokens, lens, n_tokens, sp, err);
}

/* ---- Hugging Face files ------------------------------------------------ */

static char *read_file(const char *path, size_t *len, at_err *err)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        at_err_set(err, AT_E_IO, "cannot open %s", path);
        return NULL;
    }
    char *buf = NULL;
    long sz = -1;
    if (fseek(f, 0, SEEK_END) == 0) sz = ftell(f);
    if (sz < 0 || (unsigned long)sz > WTOK_MAX_FILE || fseek(f, 0, SEEK_SET) != 0) {
        fclose(f);
        at_err_set(err, sz < 0 ? AT_E_IO : AT_E_TOO_LARGE, "cannot read %s (or larger than %u bytes)", path,
                   WTOK_MAX_FILE);
        return NULL;
    }
    buf = malloc((size_t)sz + 1);
    if (!buf) {
        fclose(f);
        at_err_set(err, AT_E_NOMEM, "out of memory");
        return NULL;
    }
    if (fread(buf, 1, (size_t)sz, f) != (size_t)sz) {
        fclose(f);
        free(buf);
        at_err_set(err, AT_E_IO, "cannot read %s", path);
        return NULL;
    }
    fclose(f);
    buf[sz] = '\0';
    *len = (size_t)sz;
    return buf;
}

/* Tokens by id from a JSON object {"string": id, ...}. */
static at_wtok *from_vocab_obj(const cJSON *vocab, const at_whisper_special *sp, const char *what,
                               at_err *err)
{
    if (!cJSON_IsObject(vocab)) {
        at_err_set(err, AT_E_CORRUPT, "%s: vocabulary is not a JSON object", what);
        return NULL;
    }
    uint32_t map[256];
    int inv[512];
    byte_to_cp(map);
    for (int i = 0; i < 512; i++) inv[i] = -1;
    for (int b = 0; b < 256; b++) inv[map[b]] = b;

    size_t n = (size_t)sp->eot;
    char **toks = calloc(n ? n : 1, sizeof *toks);
    size_t *lens = calloc(n ? n : 1, sizeof *lens);
    at_wtok *t = NULL;
    if (!toks || !lens) {
        at_err_set(err, AT_E_NOMEM, "out of memory");
        goto done;
    }
    const cJSON *it;
    cJSON_ArrayForEach(it, vocab)
    {
        if (!cJSON_IsNumber(it) || !it->string) continue;
        double d = it->valuedouble;
        if (d < 0 || d >= (double)n || d != (double)(int)d) continue; /* specials */
        int id = (int)d;
        if (toks[id]) continue;
        int bad;
        toks[id] = hf_to_bytes(it->string, inv, &lens[id], &bad);
        if (!toks[id]) {
            if (bad)
                at_err_set(err, AT_E_CORRUPT, "%s: token %d is not a byte-level string", what, id);
            else
                at_err_set(err, AT_E_NOMEM, "out of memory");
            goto done;
        }
    }
    t = build((const char *const *)toks, lens, n, sp, err);
done:
    if (toks)
        for (size_t i = 0; i < n; i++) free(toks[i]);
    free(toks);
    free(lens);
    return t;
}

/* Adds one merge "a b" (HF strings) with the given rank; unknown tokens
 * are skipped (they could never be produced anyway). */
static void add_merge(at_wtok *t, const char *a, size_t la, const char *b, size_t lb, int rank,
                      const int inv[512], size_t *count)
{
    char sa[256], sb[256];
    if (la >= sizeof sa || lb >= sizeof sb) return;
    memcpy(sa, a, la);
    sa[la] = 0;
    memcpy(sb, b, lb);
    sb[lb] = 0;
    size_t ba_len, bb_len;
    int bad;
    char *ba = hf_to_bytes(sa, inv, &ba_len, &bad);
    char *bb = hf_to_bytes(sb, inv, &bb_len, &bad);
    if (ba && bb) {
        int ia = lookup(t, ba, ba_len), ib = lookup(t, bb, bb_len);
        if (ia >= 0 && ib >= 0) {
            uint64_t key = ((uint64_t)(uint32_t)ia << 32) | (uint32_t)ib;
            uint32_t h = (uint32_t)hash_u64(key) & t->m_mask;
            while (t->mranks[h] >= 0 && t->mkeys[h] != key) h = (h + 1) & t->m_mask;
            if (t->mranks[h] < 0) { /* first listing wins */
                t->mkeys[h] = key;
                t->mranks[h] = rank;
                (*count)++;
            }
        }
    }
    free(ba);
    free(bb);
}

static int alloc_merges(at_wtok *t, size_t n, at_err *err)
{
    t->m_mask = pow2_above(n) - 1;
    t->mkeys = malloc(((size_t)t->m_mask + 1) * sizeof *t->mkeys);
    t->mranks = malloc(((size_t)t->m_mask + 1) * sizeof *t->mranks);
    if (!t->mkeys || !t->mranks) return at_err_set(err, AT_E_NOMEM, "out of memory");
    memset(t->mranks, 0xff, ((size_t)t->m_mask + 1) * sizeof *t->mranks);
    return 0;
}

static void inv_map(int inv[512])
{
    uint32_t map[256];
    byte_to_cp(map);
    for (int i = 0; i < 512; i++) inv[i] = -1;
    for (int b = 0; b < 256; b++) inv[map[b]] = b;
}

at_wtok *at_wtok_new_hf_files(const char *vocab_json, const char *merges_txt, const at_whisper_special *sp,
                              at_err *err)
{
    size_t len;
    char *buf = read_file(vocab_json, &len, err);
    if (!buf) return NULL;
    cJSON *root = cJSON_ParseWithLength(buf, len);
    free(buf);
    if (!root) {
        at_err_set(err, AT_E_CORRUPT, "%s: invalid JSON", vocab_json);
        return NULL;
    }
    at_wtok *t = from_vocab_obj(root, sp, vocab_json, err);
    cJSON_Delete(root);
    if (!t || !merges_txt) return t;

    char *m = read_file(merges_txt, &len, err);
    if (!m) {
        at_wtok_free(t);
        return NULL;
    }
    size_t lines = 1;
    for (size_t i = 0; i < len; i++) lines += m[i] == '\n';
    int inv[512];
    inv_map(inv);
    if (alloc_merges(t, lines, err) < 0) {
        free(m);
        at_wtok_free(t);
        return NULL;
    }
    int rank = 0;
    size_t count = 0;
    for (char *p = m, *end = m + len; p < end;) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        char *le = nl ? nl : end;
        char *e = le;
        if (e > p && e[-1] == '\r') e--;
        if (e > p && !(p == m && *p == '#')) { /* "#version" header */
            char *sp_ = memchr(p, ' ', (size_t)(e - p));
            if (sp_) add_merge(t, p, (size_t)(sp_ - p), sp_ + 1, (size_t)(e - sp_ - 1), rank++, inv, &count);
        }
        p = le + 1;
    }
    free(m);
    return t;
}

at_wtok *at_wtok_new_hf_tokenizer_json(const char *path, const at_whisper_special *sp, at_err *err)
{
    size_t len;
    char *buf = read_file(path, &len, err);
    if (!buf) return NULL;
    cJSON *root = cJSON_ParseWithLength(buf, len);
    free(buf);
    if (!root) {
        at_err_set(err, AT_E_CORRUPT, "%s: invalid JSON", path);
        return NULL;
    }
    at_wtok *t = NULL;
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
    /* The special tokens must sit where the model expects them. */
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    const cJSON *a;
    cJSON_ArrayForEach(a, added)
    {
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(a, "content");
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(a, "id");
        if (!cJSON_IsString(c) || !cJSON_IsNumber(id)) continue;
        int want = -1;
        if (strcmp(c->valuestring, "<|endoftext|>") == 0)
            want = sp->eot;
        else if (strcmp(c->valuestring, "<|startoftranscript|>") == 0)
            want = sp->sot;
        else if (strcmp(c->valuestring, "<|notimestamps|>") == 0)
            want = sp->not_;
        if (want >= 0 && id->valueint != want) {
            at_err_set(err, AT_E_CORRUPT, "%s: %s has id %d, expected %d", path, c->valuestring, id->valueint,
                       want);
            goto done;
        }
    }
    t = from_vocab_obj(vocab, sp, path, err);
    if (!t || !cJSON_IsArray(merges)) goto done;
    int inv[512];
    inv_map(inv);
    if (alloc_merges(t, (size_t)cJSON_GetArraySize(merges), err) < 0) {
        at_wtok_free(t);
        t = NULL;
        goto done;
    }
    int rank = 0;
    size_t count = 0;
    const cJSON *mg;
    cJSON_ArrayForEach(mg, merges)
    {
        if (cJSON_IsString(mg)) { /* "a b" */
            const char *s = mg->valuestring, *spc = strchr(s, ' ');
            if (spc) add_merge(t, s, (size_t)(spc - s), spc + 1, strlen(spc + 1), rank, inv, &count);
        } else if (cJSON_IsArray(mg) && cJSON_GetArraySize(mg) == 2) { /* ["a","b"] */
            const cJSON *x = cJSON_GetArrayItem(mg, 0), *y = cJSON_GetArrayItem(mg, 1);
            if (cJSON_IsString(x) && cJSON_IsString(y))
                add_merge(t, x->valuestring, strlen(x->valuestring), y->valuestring, strlen(y->valuestring),
                          rank, inv, &count);
        }
        rank++;
    }
done:
    cJSON_Delete(root);
    return t;
}

at_wtok *at_wtok_new_hf_dir(const char *dir, const at_whisper_special *sp, at_err *err)
{
    char p1[4096], p2[4096];
    FILE *f;
    snprintf(p1, sizeof p1, "%s/tokenizer.json", dir);
    if ((f = fopen(p1, "rb"))) {
        fclose(f);
        return at_wtok_new_hf_tokenizer_json(p1, sp, err);
    }
    snprintf(p1, sizeof p1, "%s/vocab.json", dir);
    snprintf(p2, sizeof p2, "%s/merges.txt", dir);
    if ((f = fopen(p1, "rb"))) {
        fclose(f);
        int has_merges = (f = fopen(p2, "rb")) != NULL;
        if (f) fclose(f);
        return at_wtok_new_hf_files(p1, has_merges ? p2 : NULL, sp, err);
    }
    at_err_set(err, AT_E_IO, "%s: no tokenizer.json or vocab.json", dir);
    return NULL;
}

/* ---- decoding ---------------------------------------------------------- */

const char *at_wtok_bytes(const at_wtok *t, int id, size_t *len)
{
    if (id < 0 || id >= t->n_text) {
        *len = 0;
        return NULL;
    }
    *len = t->off[id + 1] - t->off[id];
    return t->arena + t->off[id];
}

/* Copies s replacing invalid UTF-8 with U+FFFD, one per maximal invalid
 * subpart (Python's errors="replace"). */
static char *utf8_sanitize(const unsigned char *s, size_t n, at_err *err)
{
    char *out = malloc(n * 3 + 1), *o = out;
    if (!out) {
        at_err_set(err, AT_E_NOMEM, "out of memory");
        return NULL;
    }
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t l = utf8_next(s + i, n - i, &cp);
        if (l) {
            memcpy(o, s + i, l);
            o += l;
            i += l;
            continue;
        }
        /* Skip the lead byte and the continuation bytes that could still
         * have completed it. */
        unsigned c = s[i];
        size_t need = c >= 0xF0 && c <= 0xF4   ? 4
                      : c >= 0xE0 && c <= 0xEF ? 3
                      : c >= 0xC2 && c <= 0xDF ? 2
                                               : 1;
        size_t k = 1;
        while (k < need && i + k < n) {
            unsigned d = s[i + k];
            unsigned lo = 0x80, hi = 0xBF;
            if (k == 1) {
                if (c == 0xE0)
                    lo = 0xA0;
                else if (c == 0xED)
                    hi = 0x9F;
                else if (c == 0xF0)
                    lo = 0x90;
                else if (c == 0xF4)
                    hi = 0x8F;
            }
            if (d < lo || d > hi) break;
            k++;
        }
        memcpy(o, "\xEF\xBF\xBD", 3);
        o += 3;
        i += k;
    }
    *o = '\0';
    return out;
}

static size_t special_name(const at_wtok *t, int id, char *buf, size_t cap)
{
    const at_whisper_special *sp = &t->sp;
    const char *name = NULL;
    if (id == sp->eot)
        name = "endoftext";
    else if (id == sp->sot)
        name = "startoftranscript";
    else if (id == sp->translate)
        name = "translate";
    else if (id == sp->transcribe)
        name = "transcribe";
    else if (id == sp->solm)
        name = "startoflm";
    else if (id == sp->prev)
        name = "startofprev";
    else if (id == sp->nosp)
        name = "nospeech";
    else if (id == sp->not_)
        name = "notimestamps";
    int n;
    if (name)
        n = snprintf(buf, cap, "<|%s|>", name);
    else if (at_wtok_lang_code(t, id))
        n = snprintf(buf, cap, "<|%s|>", at_wtok_lang_code(t, id));
    else if (at_wtok_is_timestamp(t, id))
        n = snprintf(buf, cap, "<|%.2f|>", (id - sp->beg) * 0.02);
    else
        n = snprintf(buf, cap, "<|%d|>", id);
    return n < 0 ? 0 : (size_t)n < cap ? (size_t)n : cap - 1;
}

static char *decode_impl(const at_wtok *t, const int *ids, size_t n, int specials, at_err *err)
{
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] >= 0 && ids[i] < t->n_text)
            total += t->off[ids[i] + 1] - t->off[ids[i]];
        else if (specials)
            total += 32;
    }
    char *raw = malloc(total + 1), *p = raw;
    if (!raw) {
        at_err_set(err, AT_E_NOMEM, "out of memory");
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        if (ids[i] >= 0 && ids[i] < t->n_text) {
            size_t l = t->off[ids[i] + 1] - t->off[ids[i]];
            memcpy(p, t->arena + t->off[ids[i]], l);
            p += l;
        } else if (specials) {
            p += special_name(t, ids[i], p, 32);
        }
    }
    char *out = utf8_sanitize((const unsigned char *)raw, (size_t)(p - raw), err);
    free(raw);
    return out;
}

char *at_wtok_decode(const at_wtok *t, const int *ids, size_t n, at_err *err)
{
    return decode_impl(t, ids, n, 0, err);
}

char *at_wtok_decode_with_timestamps(const at_wtok *t, const int *ids, size_t n, at_err *err)
{
    return decode_impl(t, ids, n, 1, err);
}

/* ---- encoding ---------------------------------------------------------- */

enum { C_OTHER = 0, C_LETTER = 1, C_NUMBER = 2, C_SPACE = 3 };

static int is_white_space(uint32_t c)
{
    /* Unicode White_Space, which \s means in tiktoken's regex engine. */
    return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F ||
           c == 0x3000;
}

static int char_class(uint32_t c)
{
    if (is_white_space(c)) return C_SPACE;
    if (c < 0x80) {
        if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') return C_LETTER;
        if (c >= '0' && c <= '9') return C_NUMBER;
        return C_OTHER;
    }
    size_t lo = 0, hi = sizeof at_wtok_ucd / sizeof at_wtok_ucd[0];
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (c < at_wtok_ucd[mid].lo)
            hi = mid;
        else if (c > at_wtok_ucd[mid].hi)
            lo = mid + 1;
        else
            return at_wtok_ucd[mid].cls;
    }
    return C_OTHER;
}

/* Class and length of the character at s[i]; an invalid byte is "other". */
static int class_at(const unsigned char *s, size_t n, size_t i, size_t *len)
{
    uint32_t cp;
    size_t l = utf8_next(s + i, n - i, &cp);
    if (!l) {
        *len = 1;
        return C_OTHER;
    }
    *len = l;
    return char_class(cp);
}

/* End of the run of class cls starting at i. */
static size_t run_end(const unsigned char *s, size_t n, size_t i, int cls)
{
    size_t l;
    while (i < n && class_at(s, n, i, &l) == cls) i += l;
    return i;
}

/* Length of the GPT-2 pre-token at s[i]:
 * 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ */
static size_t pretoken(const unsigned char *s, size_t n, size_t i)
{
    if (s[i] == '\'' && i + 1 < n) {
        unsigned c = s[i + 1];
        if (c == 's' || c == 't' || c == 'm' || c == 'd') return 2;
        if (i + 2 < n) {
            unsigned d = s[i + 2];
            if ((c == 'r' && d == 'e') || (c == 'v' && d == 'e') || (c == 'l' && d == 'l')) return 3;
        }
    }
    size_t j = i + (s[i] == ' ' ? 1 : 0), l;
    if (j < n) {
        int cls = class_at(s, n, j, &l);
        if (cls == C_LETTER || cls == C_NUMBER || cls == C_OTHER) return run_end(s, n, j, cls) - i;
    }
    /* whitespace: \s+(?!\S) keeps the last space for the next word */
    size_t e = i, last = i;
    while (e < n && class_at(s, n, e, &l) == C_SPACE) {
        last = e;
        e += l;
    }
    if (e >= n || last == i) return e - i;
    return last - i;
}

typedef struct {
    size_t start, len;
    int rank; /* rank of merging with the next part, INT_MAX = none */
} part;

static int pair_rank(const at_wtok *t, const unsigned char *s, const part *a, const part *b)
{
    if (t->mranks) {
        int ia = lookup(t, (const char *)s + a->start, a->len);
        int ib = lookup(t, (const char *)s + b->start, b->len);
        if (ia < 0 || ib < 0) return INT_MAX;
        int r = merge_rank(t, ia, ib);
        /* a merge is only usable when its result is a token */
        if (r != INT_MAX && lookup(t, (const char *)s + a->start, a->len + b->len) < 0) return INT_MAX;
        return r;
    }
    /* tiktoken: a pair's rank is the id of the merged token */
    int id = lookup(t, (const char *)s + a->start, a->len + b->len);
    return id < 0 ? INT_MAX : id;
}

typedef struct {
    int *v;
    size_t n, cap;
} ivec;

static int ivec_push(ivec *v, int x)
{
    if (v->n == v->cap) {
        size_t nc = v->cap ? v->cap * 2 : 64;
        int *nv = realloc(v->v, nc * sizeof *nv);
        if (!nv) return -1;
        v->v = nv;
        v->cap = nc;
    }
    v->v[v->n++] = x;
    return 0;
}

static int bpe(const at_wtok *t, const unsigned char *s, size_t n, part *parts, ivec *out, at_err *err)
{
    int whole = lookup(t, (const char *)s, n);
    if (whole >= 0 && !t->mranks) /* tiktoken's shortcut */
        return ivec_push(out, whole) < 0 ? at_err_set(err, AT_E_NOMEM, "out of memory") : 0;
    size_t np = n;
    for (size_t i = 0; i < n; i++) parts[i] = (part){i, 1, INT_MAX};
    for (size_t i = 0; i + 1 < np; i++) parts[i].rank = pair_rank(t, s, &parts[i], &parts[i + 1]);
    while (np > 1) {
        size_t best = 0;
        for (size_t i = 1; i + 1 < np; i++)
            if (parts[i].rank < parts[best].rank) best = i;
        if (parts[best].rank == INT_MAX) break;
        parts[best].len += parts[best + 1].len;
        memmove(&parts[best + 1], &parts[best + 2], (np - best - 2) * sizeof *parts);
        np--;
        parts[best].rank = best + 1 < np ? pair_rank(t, s, &parts[best], &parts[best + 1]) : INT_MAX;
        if (best > 0) parts[best - 1].rank = pair_rank(t, s, &parts[best - 1], &parts[best]);
    }
    for (size_t i = 0; i < np; i++) {
        int id = lookup(t, (const char *)s + parts[i].start, parts[i].len);
        if (id < 0) return at_err_set(err, AT_E_CORRUPT, "whisper tokenizer: no token for a byte sequence");
        if (ivec_push(out, id) < 0) return at_err_set(err, AT_E_NOMEM, "out of memory");
    }
    return 0;
}

int at_wtok_encode(const at_wtok *t, const char *text, size_t len, int **ids, size_t *n, at_err *err)
{
    *ids = NULL;
    *n = 0;
    if (len > AT_WTOK_MAX_ENCODE_BYTES)
        return at_err_set(err, AT_E_TOO_LARGE, "whisper tokenizer: text over %d bytes",
                          AT_WTOK_MAX_ENCODE_BYTES);
    const unsigned char *s = (const unsigned char *)text;
    part *parts = malloc((len ? len : 1) * sizeof *parts);
    ivec out = {0};
    if (!parts) return at_err_set(err, AT_E_NOMEM, "out of memory");
    int rc = 0;
    for (size_t i = 0; i < len;) {
        size_t l = pretoken(s, len, i);
        if (l == 0) l = 1; /* cannot happen; guarantees progress */
        if ((rc = bpe(t, s + i, l, parts, &out, err)) < 0) break;
        i += l;
    }
    free(parts);
    if (rc < 0) {
        free(out.v);
        return rc;
    }
    if (!out.v) { /* empty text: still hand back a freeable pointer */
        out.v = malloc(sizeof *out.v);
        if (!out.v) return at_err_set(err, AT_E_NOMEM, "out of memory");
    }
    *ids = out.v;
    *n = out.n;
    return 0;
}

/* ---- suppression list -------------------------------------------------- */

static int cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

int at_wtok_non_speech_tokens(const at_wtok *t, int **ids, size_t *n, at_err *err)
{
    /* tokenizer.py's symbols; one string per entry. */
    static const char *const symbols[] = {"\"",
                                          "#",
                                          "(",
                                          ")",
                                          "*",
                                          "+",
                                          "/",
                                          ":",
                                          ";",
                                          "<",
                                          "=",
                                          ">",
                                          "@",
                                          "[",
                                          "\\",
                                          "]",
                                          "^",
                                          "_",
                                          "`",
                                          "{",
                                          "|",
                                          "}",
                                          "~",
                                          "\xE3\x80\x8C" /* 「 */,
                                          "\xE3\x80\x8D" /* 」 */,
                                          "\xE3\x80\x8E" /* 『 */,
                                          "\xE3\x80\x8F" /* 』 */,
                                          "<<",
                                          ">>",
                                          "<<<",
                                          ">>>",
                                          "--",
                                          "---",
                                          "-(",
                                          "-[",
                                          "('",
                                          "(\"",
                                          "((",
                                          "))",
                                          "(((",
                                          ")))",
                                          "[[",
                                          "]]",
                                          "{{",
                                          "}}",
                                          "\xE2\x99\xAA\xE2\x99\xAA",
                                          "\xE2\x99\xAA\xE2\x99\xAA\xE2\x99\xAA"};
    /* U+2640..U+267F music symbols: suppress their first token even when
     * they take several (they share the first two UTF-8 bytes). */
    static const char *const misc[] = {"\xE2\x99\xA9", "\xE2\x99\xAA", "\xE2\x99\xAB", "\xE2\x99\xAC",
                                       "\xE2\x99\xAD", "\xE2\x99\xAE", "\xE2\x99\xAF"};
    ivec out = {0};
    int rc = 0;
    char buf[32];
    int *tk;
    size_t nt;
    /* " -" and " '" (hyphens/quotes allowed inside words only) */
    static const char *const lead[] = {" -", " '"};
    /* A vocabulary without some byte tokens (placeholder vocabularies of
     * test models) cannot spell every symbol: those are skipped. */
    for (size_t i = 0; i < 2 && rc == 0; i++) {
        if ((rc = at_wtok_encode(t, lead[i], 2, &tk, &nt, err)) < 0) {
            if (rc == AT_E_CORRUPT) rc = 0;
            continue;
        }
        /* analyzer: at_wtok_encode returned 0 with nt ids written
         * NOLINTNEXTLINE(clang-analyzer-core.CallAndMessage) */
        if (nt > 0 && ivec_push(&out, tk[0]) < 0) rc = at_err_set(err, AT_E_NOMEM, "out of memory");
        free(tk);
    }
    size_t ns = sizeof symbols / sizeof *symbols, nm = sizeof misc / sizeof *misc;
    for (size_t i = 0; i < ns + nm && rc == 0; i++) {
        int is_misc = i >= ns;
        const char *sym = is_misc ? misc[i - ns] : symbols[i];
        for (int with_space = 0; with_space < 2 && rc == 0; with_space++) {
            snprintf(buf, sizeof buf, "%s%s", with_space ? " " : "", sym);
            if ((rc = at_wtok_encode(t, buf, strlen(buf), &tk, &nt, err)) < 0) {
                if (rc == AT_E_CORRUPT) rc = 0;
                continue;
            }
            /* analyzer: at_wtok_encode returned 0 with nt ids written
             * NOLINTNEXTLINE(clang-analyzer-core.CallAndMessage) */
            if ((nt == 1 || (is_misc && nt > 0)) && ivec_push(&out, tk[0]) < 0)
                rc = at_err_set(err, AT_E_NOMEM, "out of memory");
            free(tk);
        }
    }
    if (rc < 0) {
        free(out.v);
        return rc;
    }
    if (out.n > 1) qsort(out.v, out.n, sizeof *out.v, cmp_int);
    size_t k = 0;
    for (size_t i = 0; i < out.n; i++)
        if (k == 0 || out.v[k - 1] != out.v[i]) out.v[k++] = out.v[i];
    *ids = out.v;
    *n = k;
    return 0;
}

/* ---- languages --------------------------------------------------------- */

const char *const *at_wtok_languages(int n_langs) { return n_langs >= 100 ? wtok_langs100 : wtok_langs99; }

int at_wtok_lang_token(const at_wtok *t, const char *code)
{
    if (!code) return -1;
    const char *const *l = at_wtok_languages(t->sp.n_langs);
    for (int i = 0; l[i] && i < t->sp.n_langs; i++)
        if (strcmp(l[i], code) == 0) return t->sp.sot + 1 + i;
    return -1;
}

const char *at_wtok_lang_code(const at_wtok *t, int token)
{
    int i = token - t->sp.sot - 1;
    if (i < 0 || i >= t->sp.n_langs || i >= AT_WTOK_MAX_LANGS) return NULL;
    return at_wtok_languages(t->sp.n_langs)[i];
}
