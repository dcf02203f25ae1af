/* tokenizer.c - transformers' VitsTokenizer in C (see tokenizer.h for the
 * steps and where we differ).  Text is handled as arrays of code points so
 * that "a character" means what it means to Python's str. */
#include "engines/tts/vits/tokenizer.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/strbuf.h"
#include "engines/tts/vits/tokenizer_lower.h"

#define VT_MAX_TOKEN_BYTES 1024 /* one vocabulary entry */
#define VT_MAX_LANG        64
/* Phonemes may be longer than the text ("2" -> "tˈuː"), but not this much. */
#define VT_MAX_PHONEMES    (16 * AT_VITS_TOK_MAX_TEXT)
#define VT_PHONEME_LANG    "en-us"

typedef struct vt_word {
    uint32_t *cp; /* code points, n of them */
    size_t n;
    int id;       /* -1: a special token that is not in vocab.json */
    size_t order; /* position among vocab.json's keys (first occurrence) */
} vt_word;

typedef struct vt_single {
    uint32_t cp;
    int id;
} vt_single;

struct at_vits_tokenizer {
    vt_word *words; /* vocab.json keys in file order, then the specials not in it */
    size_t n_vocab, n_words;
    size_t *by_first; /* words with n > 0, ordered by (first code point, position) */
    size_t n_by_first;
    vt_single *singles; /* one-character entries by code point */
    size_t n_singles;
    vt_word specials[2]; /* unk_token, pad_token (transformers adds them in that order) */
    int n_specials;
    int unk_special; /* index of unk_token in specials, -1 if null */
    int unk_id;      /* -1: unk_token not in vocab.json */
    int max_id;
    int add_blank, normalize, phonemize, is_uroman;
    char language[VT_MAX_LANG];
};

/* ---- UTF-8 and Python's str methods ----------------------------------- */

static size_t vt_decode1(const unsigned char *u, size_t left, uint32_t *cp)
{
    size_t n = at_utf8_len(u, left);
    if (n == 0) return 0;
    uint32_t c = n == 1 ? u[0] : n == 2 ? (u[0] & 0x1Fu) : n == 3 ? (u[0] & 0x0Fu) : (u[0] & 0x07u);
    for (size_t i = 1; i < n; i++) c = (c << 6) | (u[i] & 0x3Fu);
    *cp = c;
    return n;
}

/* s[0..len) as code points (malloc'd, *n of them); -1 if not valid UTF-8
 * (*bad = its byte offset), -2 out of memory. */
static int vt_decode(const char *s, size_t len, uint32_t **out, size_t *n, size_t *bad)
{
    uint32_t *cp = malloc((len ? len : 1) * sizeof *cp);
    if (!cp) return -2;
    size_t k = 0;
    for (size_t i = 0; i < len;) {
        size_t m = vt_decode1((const unsigned char *)s + i, len - i, &cp[k]);
        if (!m) {
            free(cp);
            if (bad) *bad = i;
            return -1;
        }
        i += m;
        k++;
    }
    *out = cp;
    *n = k;
    return 0;
}

static void vt_put_cp(at_strbuf *b, uint32_t c)
{
    char u[4];
    size_t n;
    if (c < 0x80) {
        u[0] = (char)c;
        n = 1;
    } else if (c < 0x800) {
        u[0] = (char)(0xC0 | (c >> 6));
        u[1] = (char)(0x80 | (c & 0x3F));
        n = 2;
    } else if (c < 0x10000) {
        u[0] = (char)(0xE0 | (c >> 12));
        u[1] = (char)(0x80 | ((c >> 6) & 0x3F));
        u[2] = (char)(0x80 | (c & 0x3F));
        n = 3;
    } else {
        u[0] = (char)(0xF0 | (c >> 18));
        u[1] = (char)(0x80 | ((c >> 12) & 0x3F));
        u[2] = (char)(0x80 | ((c >> 6) & 0x3F));
        u[3] = (char)(0x80 | (c & 0x3F));
        n = 4;
    }
    at_strbuf_put(b, u, n);
}

/* str.isspace(), which is also what re's \s matches. */
static int vt_isspace(uint32_t c)
{
    return (c >= 0x9 && c <= 0xD) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F ||
           c == 0x3000;
}

/* chr(c).lower() into out (1 or 2 code points); returns how many. */
static size_t vt_lower(uint32_t c, uint32_t out[2])
{
    if (c == 0x130) { /* the one code point that lowers to two */
        out[0] = 'i';
        out[1] = 0x307;
        return 2;
    }
    size_t lo = 0, hi = sizeof at_vits_lower / sizeof at_vits_lower[0];
    while (lo < hi) { /* last range starting at or before c */
        size_t mid = (lo + hi) / 2;
        if (at_vits_lower[mid].lo <= c)
            lo = mid + 1;
        else
            hi = mid;
    }
    out[0] = c;
    if (lo > 0) {
        const at_vits_lower_range *r = &at_vits_lower[lo - 1];
        if (c <= r->hi && (c - r->lo) % r->stride == 0) out[0] = (uint32_t)((int64_t)c + r->delta);
    }
    return 1;
}

/* ---- loading ------------------------------------------------------------ */

static void words_free(vt_word *w, size_t n)
{
    for (size_t i = 0; w && i < n; i++) free(w[i].cp);
    free(w);
}

void at_vits_tokenizer_free(at_vits_tokenizer *t)
{
    if (!t) return;
    words_free(t->words, t->n_words);
    for (int i = 0; i < t->n_specials; i++) free(t->specials[i].cp);
    free(t->by_first);
    free(t->singles);
    free(t);
}

static int cmp_cp(const uint32_t *a, size_t na, const uint32_t *b, size_t nb)
{
    for (size_t i = 0; i < na && i < nb; i++)
        if (a[i] != b[i]) return a[i] < b[i] ? -1 : 1;
    return na < nb ? -1 : na > nb ? 1 : 0;
}

static int cmp_word_text(const void *x, const void *y)
{
    const vt_word *a = x, *b = y;
    int c = cmp_cp(a->cp, a->n, b->cp, b->n);
    if (c) return c;
    return a->order < b->order ? -1 : a->order > b->order ? 1 : 0;
}

static int cmp_word_order(const void *x, const void *y)
{
    const vt_word *a = x, *b = y;
    return a->order < b->order ? -1 : a->order > b->order ? 1 : 0;
}

static int cmp_single(const void *x, const void *y)
{
    const vt_single *a = x, *b = y;
    return a->cp < b->cp ? -1 : a->cp > b->cp ? 1 : 0;
}

/* by_first sorts indices; qsort has no context argument, so the keys are
 * packed: first code point (21 bits) above the position. */
static int cmp_u64(const void *x, const void *y)
{
    uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;
    return a < b ? -1 : a > b ? 1 : 0;
}

/* Python's truth value of a JSON value; def when absent. */
static int json_truthy(const cJSON *v, int def)
{
    if (!v) return def;
    if (cJSON_IsBool(v)) return cJSON_IsTrue(v);
    if (cJSON_IsNull(v)) return 0;
    if (cJSON_IsNumber(v)) return v->valuedouble != 0;
    if (cJSON_IsString(v)) return v->valuestring && v->valuestring[0];
    return cJSON_GetArraySize(v) > 0; /* list or dict */
}

/* vocab.json: {"token": id, ...}.  Duplicate keys behave as in Python's
 * json.load: the last id wins, at the first key's position. */
static int load_vocab(at_vits_tokenizer *t, const char *json, size_t len, at_err *err)
{
    if (len > AT_VITS_TOK_MAX_FILE)
        return at_err_set(err, AT_E_TOO_LARGE, "vocab.json is larger than %d bytes", AT_VITS_TOK_MAX_FILE);
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (!root) return at_err_set(err, AT_E_CORRUPT, "vocab.json is not valid JSON");
    int rc = 0;
    if (!cJSON_IsObject(root)) {
        rc = at_err_set(err, AT_E_CORRUPT, "vocab.json is not a JSON object of token -> id");
        goto done;
    }
    int count = cJSON_GetArraySize(root);
    if (count <= 0 || count > AT_VITS_TOK_MAX_TOKENS) {
        rc = at_err_set(err, AT_E_CORRUPT, "vocab.json has %d entries (1..%d expected)", count,
                        AT_VITS_TOK_MAX_TOKENS);
        goto done;
    }
    t->words = calloc((size_t)count + 2, sizeof *t->words); /* + the specials not in it */
    if (!t->words) {
        rc = at_err_set(err, AT_E_NOMEM, "out of memory");
        goto done;
    }
    const cJSON *it;
    size_t n = 0;
    cJSON_ArrayForEach(it, root)
    {
        double d = it->valuedouble;
        if (!cJSON_IsNumber(it) || d != floor(d) || d < 0 || d >= AT_VITS_TOK_MAX_ID) {
            rc = at_err_set(err, AT_E_CORRUPT, "vocab.json: the id of entry %zu is not an integer in 0..%d",
                            n, AT_VITS_TOK_MAX_ID - 1);
            goto done;
        }
        size_t klen = it->string ? strlen(it->string) : 0;
        if (!it->string || klen > VT_MAX_TOKEN_BYTES) {
            rc = at_err_set(err, AT_E_CORRUPT, "vocab.json: entry %zu has no key or one over %d bytes", n,
                            VT_MAX_TOKEN_BYTES);
            goto done;
        }
        vt_word *w = &t->words[n];
        int r = vt_decode(it->string, klen, &w->cp, &w->n, NULL);
        if (r == -2) {
            rc = at_err_set(err, AT_E_NOMEM, "out of memory");
            goto done;
        }
        if (r < 0) {
            rc = at_err_set(err, AT_E_CORRUPT, "vocab.json: the key of entry %zu is not valid UTF-8", n);
            goto done;
        }
        w->id = (int)d;
        w->order = n++;
        t->n_words = n; /* freed from here on, should a later entry fail */
    }
    /* Merge duplicate keys: sort by text then position, keep the first
     * position with the last id, and restore file order. */
    qsort(t->words, n, sizeof *t->words, cmp_word_text);
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        if (m && cmp_cp(t->words[m - 1].cp, t->words[m - 1].n, t->words[i].cp, t->words[i].n) == 0) {
            t->words[m - 1].id = t->words[i].id;
            free(t->words[i].cp);
            continue;
        }
        t->words[m++] = t->words[i];
    }
    for (size_t i = m; i < n; i++) t->words[i] = (vt_word){0};
    qsort(t->words, m, sizeof *t->words, cmp_word_order);
    t->n_vocab = t->n_words = m;
done:
    cJSON_Delete(root);
    return rc;
}

/* pad_token / unk_token: a string, or an AddedToken object {"content": ..}.
 * Returns 1 with *s set, 0 for null (no such token), -1 if malformed. */
static int special_string(const cJSON *v, const char *def, const char **s)
{
    if (!v) {
        *s = def;
        return 1;
    }
    if (cJSON_IsNull(v)) return 0;
    if (cJSON_IsObject(v)) v = cJSON_GetObjectItemCaseSensitive(v, "content");
    if (!cJSON_IsString(v) || !v->valuestring) return -1;
    *s = v->valuestring;
    return 1;
}

static int load_config(at_vits_tokenizer *t, const char *json, size_t len, at_err *err)
{
    cJSON *root = NULL;
    if (json) {
        if (len > AT_VITS_TOK_MAX_FILE)
            return at_err_set(err, AT_E_TOO_LARGE, "tokenizer_config.json is larger than %d bytes",
                              AT_VITS_TOK_MAX_FILE);
        root = cJSON_ParseWithLength(json, len);
        if (!cJSON_IsObject(root)) {
            cJSON_Delete(root);
            return at_err_set(err, AT_E_CORRUPT, "tokenizer_config.json is not a JSON object");
        }
    }
    t->unk_special = -1;
    /* VitsTokenizer.__init__ defaults. */
    t->add_blank = json_truthy(cJSON_GetObjectItemCaseSensitive(root, "add_blank"), 1);
    t->normalize = json_truthy(cJSON_GetObjectItemCaseSensitive(root, "normalize"), 1);
    t->phonemize = json_truthy(cJSON_GetObjectItemCaseSensitive(root, "phonemize"), 1);
    t->is_uroman = json_truthy(cJSON_GetObjectItemCaseSensitive(root, "is_uroman"), 0);
    int rc = 0;
    const cJSON *lang = cJSON_GetObjectItemCaseSensitive(root, "language");
    if (cJSON_IsString(lang) && lang->valuestring) {
        if (strlen(lang->valuestring) >= sizeof t->language)
            rc = at_err_set(err, AT_E_CORRUPT, "tokenizer_config.json: language is too long");
        else
            snprintf(t->language, sizeof t->language, "%s", lang->valuestring);
    } else if (lang && !cJSON_IsNull(lang)) {
        rc = at_err_set(err, AT_E_CORRUPT, "tokenizer_config.json: language is not a string");
    }
    static const char *const keys[2] = {"unk_token", "pad_token"};
    static const char *const defs[2] = {"<unk>", "<pad>"};
    for (int i = 0; i < 2 && rc == 0; i++) {
        const char *s = NULL;
        int r = special_string(cJSON_GetObjectItemCaseSensitive(root, keys[i]), defs[i], &s);
        if (r < 0) {
            rc = at_err_set(err, AT_E_CORRUPT, "tokenizer_config.json: %s is not a string", keys[i]);
        } else if (r > 0 && *s) {
            size_t slen = strlen(s);
            vt_word *w = &t->specials[t->n_specials];
            int d = slen > VT_MAX_TOKEN_BYTES ? -1 : vt_decode(s, slen, &w->cp, &w->n, NULL);
            if (d == -2) rc = at_err_set(err, AT_E_NOMEM, "out of memory");
            if (d == -1)
                rc = at_err_set(err, AT_E_CORRUPT, "tokenizer_config.json: %s is not valid", keys[i]);
            if (d == 0) {
                w->id = -1;
                /* pad == unk is one added token */
                if (t->n_specials == 1 && cmp_cp(w->cp, w->n, t->specials[0].cp, t->specials[0].n) == 0) {
                    free(w->cp);
                    *w = (vt_word){0};
                } else {
                    if (i == 0) t->unk_special = t->n_specials;
                    t->n_specials++;
                }
            }
        }
    }
    cJSON_Delete(root);
    return rc;
}

/* The lookup structures, once vocab and config are in. */
static int build_index(at_vits_tokenizer *t, at_err *err)
{
    t->unk_id = -1;
    t->max_id = 0;
    int has_zero = 0;
    for (size_t i = 0; i < t->n_vocab; i++) {
        if (t->words[i].id + 1 > t->max_id) t->max_id = t->words[i].id + 1;
        has_zero |= t->words[i].id == 0;
    }
    if (t->add_blank && !has_zero)
        return at_err_set(err, AT_E_CORRUPT,
                          "vocab.json has no id 0, the blank add_blank puts between tokens");
    /* Specials: their vocab id, and the ones not in vocab.json join the
     * words normalize_text matches (after the vocabulary, as in Python's
     * added_tokens_encoder). */
    for (int s = 0; s < t->n_specials; s++) {
        vt_word *sp = &t->specials[s];
        for (size_t i = 0; i < t->n_vocab && sp->id < 0; i++)
            if (cmp_cp(sp->cp, sp->n, t->words[i].cp, t->words[i].n) == 0) sp->id = t->words[i].id;
        if (s == t->unk_special) t->unk_id = sp->id;
        if (sp->id < 0) {
            vt_word *w = &t->words[t->n_words];
            w->cp = malloc(sp->n * sizeof *w->cp);
            if (!w->cp) return at_err_set(err, AT_E_NOMEM, "out of memory");
            memcpy(w->cp, sp->cp, sp->n * sizeof *w->cp);
            w->n = sp->n;
            w->id = -1;
            w->order = t->n_words++;
        }
    }
    uint64_t *keys = malloc((t->n_words ? t->n_words : 1) * sizeof *keys);
    t->by_first = malloc((t->n_words ? t->n_words : 1) * sizeof *t->by_first);
    t->singles = malloc((t->n_vocab ? t->n_vocab : 1) * sizeof *t->singles);
    if (!keys || !t->by_first || !t->singles) {
        free(keys);
        return at_err_set(err, AT_E_NOMEM, "out of memory");
    }
    size_t nk = 0;
    for (size_t i = 0; i < t->n_words; i++)
        if (t->words[i].n) /* an empty key matches everywhere: Python would loop forever */
            keys[nk++] = ((uint64_t)t->words[i].cp[0] << 32) | (uint64_t)i;
    qsort(keys, nk, sizeof *keys, cmp_u64);
    for (size_t i = 0; i < nk; i++) t->by_first[i] = (size_t)(keys[i] & 0xFFFFFFFFu);
    t->n_by_first = nk;
    free(keys);
    for (size_t i = 0; i < t->n_vocab; i++)
        if (t->words[i].n == 1) t->singles[t->n_singles++] = (vt_single){t->words[i].cp[0], t->words[i].id};
    qsort(t->singles, t->n_singles, sizeof *t->singles, cmp_single);
    return 0;
}

at_vits_tokenizer *at_vits_tokenizer_load_mem(const char *vocab_json, size_t vocab_len,
                                              const char *config_json, size_t config_len, at_err *err)
{
    if (!vocab_json) {
        at_err_set(err, AT_E_INVALID, "no vocab.json given");
        return NULL;
    }
    at_vits_tokenizer *t = calloc(1, sizeof *t);
    if (!t) {
        at_err_set(err, AT_E_NOMEM, "out of memory");
        return NULL;
    }
    if (load_vocab(t, vocab_json, vocab_len, err) < 0 || load_config(t, config_json, config_len, err) < 0 ||
        build_index(t, err) < 0) {
        at_vits_tokenizer_free(t);
        return NULL;
    }
    return t;
}

/* Whole file, at most AT_VITS_TOK_MAX_FILE bytes; NULL with *missing set
 * when it does not exist. */
static char *read_file(const char *path, size_t *len, int *missing, at_err *err)
{
    *missing = 0;
    FILE *f = fopen(path, "rb");
    if (!f) {
        *missing = 1;
        at_err_set(err, AT_E_IO, "cannot open %s", path);
        return NULL;
    }
    char *buf = malloc(AT_VITS_TOK_MAX_FILE + 1);
    size_t n = buf ? fread(buf, 1, AT_VITS_TOK_MAX_FILE + 1, f) : 0;
    int bad = ferror(f);
    fclose(f);
    if (!buf) {
        at_err_set(err, AT_E_NOMEM, "out of memory");
        return NULL;
    }
    if (bad || n > AT_VITS_TOK_MAX_FILE) {
        free(buf);
        if (bad)
            at_err_set(err, AT_E_IO, "cannot read %s", path);
        else
            at_err_set(err, AT_E_TOO_LARGE, "%s is larger than %d bytes", path, AT_VITS_TOK_MAX_FILE);
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

at_vits_tokenizer *at_vits_tokenizer_load(const char *dir, at_err *err)
{
    if (!dir) {
        at_err_set(err, AT_E_INVALID, "no tokenizer folder given");
        return NULL;
    }
    char path[4096];
    size_t vlen = 0, clen = 0;
    int missing;
    if (snprintf(path, sizeof path, "%s/vocab.json", dir) >= (int)sizeof path) {
        at_err_set(err, AT_E_INVALID, "tokenizer folder path too long");
        return NULL;
    }
    char *vocab = read_file(path, &vlen, &missing, err);
    if (!vocab) return NULL;
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    at_err cerr;
    char *config = read_file(path, &clen, &missing, &cerr);
    at_vits_tokenizer *t = NULL;
    if (!config && !missing) {
        if (err) *err = cerr;
    } else {
        t = at_vits_tokenizer_load_mem(vocab, vlen, config, clen, err);
    }
    free(vocab);
    free(config);
    return t;
}

int at_vits_tokenizer_phonemizes(const at_vits_tokenizer *t) { return t && t->phonemize; }
int at_vits_tokenizer_needs_uroman(const at_vits_tokenizer *t) { return t && t->is_uroman; }
const char *at_vits_tokenizer_language(const at_vits_tokenizer *t) { return t ? t->language : ""; }
const char *at_vits_tokenizer_phoneme_language(const at_vits_tokenizer *t)
{
    (void)t;
    return VT_PHONEME_LANG;
}
int at_vits_tokenizer_vocab_size(const at_vits_tokenizer *t) { return t ? (int)t->n_vocab : 0; }
int at_vits_tokenizer_max_id(const at_vits_tokenizer *t) { return t ? t->max_id : 0; }

/* ---- encoding ----------------------------------------------------------- */

/* A growable code point array. */
typedef struct vt_cps {
    uint32_t *p;
    size_t n, cap;
    int oom;
} vt_cps;

static void cps_push(vt_cps *a, uint32_t c)
{
    if (a->oom) return;
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 256;
        uint32_t *p = realloc(a->p, cap * sizeof *p);
        if (!p) {
            a->oom = 1;
            return;
        }
        a->p = p;
        a->cap = cap;
    }
    a->p[a->n++] = c;
}

static int single_id(const at_vits_tokenizer *t, uint32_t c)
{
    vt_single key = {c, 0};
    const vt_single *s = bsearch(&key, t->singles, t->n_singles, sizeof *s, cmp_single);
    return s ? s->id : -1;
}

/* normalize_text(): at each position the first word (vocabulary order)
 * the text continues with is copied, else the character is lowercased. */
static void normalize_text(const at_vits_tokenizer *t, const uint32_t *s, size_t n, vt_cps *out)
{
    size_t i = 0;
    while (i < n) {
        /* words starting with s[i]: a run of by_first */
        size_t lo = 0, hi = t->n_by_first;
        while (lo < hi) {
            size_t mid = (lo + hi) / 2;
            if (t->words[t->by_first[mid]].cp[0] < s[i])
                lo = mid + 1;
            else
                hi = mid;
        }
        const vt_word *match = NULL;
        for (size_t k = lo; k < t->n_by_first && !match; k++) {
            const vt_word *w = &t->words[t->by_first[k]];
            if (w->cp[0] != s[i]) break;
            if (w->n <= n - i && memcmp(w->cp, s + i, w->n * sizeof *s) == 0) match = w;
        }
        if (match) {
            for (size_t k = 0; k < match->n; k++) cps_push(out, match->cp[k]);
            i += match->n;
        } else {
            uint32_t l[2];
            size_t m = vt_lower(s[i], l);
            for (size_t k = 0; k < m; k++) cps_push(out, l[k]);
            i++;
        }
    }
}

/* The longest special token at s[i..n), or NULL. */
static const vt_word *special_at(const at_vits_tokenizer *t, const uint32_t *s, size_t n, size_t i)
{
    const vt_word *best = NULL;
    for (int k = 0; k < t->n_specials; k++) {
        const vt_word *w = &t->specials[k];
        if (w->n <= n - i && memcmp(w->cp, s + i, w->n * sizeof *s) == 0 && (!best || w->n > best->n))
            best = w;
    }
    return best;
}

/* Appends the ids of one piece of text between special tokens (_tokenize
 * and convert_tokens_to_ids); returns how many non-blank ids. */
static size_t tokenize_piece(const at_vits_tokenizer *t, const uint32_t *s, size_t n, int *ids, size_t *k)
{
    size_t real = 0;
    if (n == 0) return 0;
    if (t->add_blank) ids[(*k)++] = 0;
    for (size_t i = 0; i < n; i++) {
        int id = single_id(t, s[i]);
        if (id < 0) id = t->unk_id;
        if (id < 0) continue; /* Python: None; dropped with its blank */
        ids[(*k)++] = id;
        if (t->add_blank) ids[(*k)++] = 0;
        real++;
    }
    if (real == 0 && t->add_blank) (*k)--; /* nothing known: no lone blank either */
    return real;
}

static int has_non_ascii(const uint32_t *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] > 0x7F) return 1;
    return 0;
}

/* The phoneme path: phonemize, then re.sub(r"\s+", " ", ...). */
static int phonemize_text(vt_cps *text, at_vits_phonemize_fn phonemize, void *user, at_err *err)
{
    if (!phonemize)
        return at_err_set(err, AT_E_UNSUPPORTED, "this voice reads phonemes, and no phonemiser was given");
    at_strbuf b = {0};
    for (size_t i = 0; i < text->n; i++) vt_put_cp(&b, text->p[i]);
    char *in = at_strbuf_take(&b);
    if (!in) return at_err_set(err, AT_E_NOMEM, "out of memory");
    char *ph = NULL;
    at_err perr = {0};
    int rc = phonemize(user, VT_PHONEME_LANG, in, &ph, &perr);
    free(in);
    if (rc < 0 || !ph) {
        free(ph);
        if (err) *err = perr;
        if (rc >= 0) rc = at_err_set(err, AT_E_ENGINE, "the phonemiser returned nothing");
        return rc;
    }
    size_t plen = strlen(ph), np = 0, bad = 0;
    uint32_t *cp = NULL;
    if (plen > VT_MAX_PHONEMES) {
        free(ph);
        return at_err_set(err, AT_E_TOO_LARGE, "the phonemiser returned more than %d bytes", VT_MAX_PHONEMES);
    }
    int d = vt_decode(ph, plen, &cp, &np, &bad);
    free(ph);
    if (d == -2) return at_err_set(err, AT_E_NOMEM, "out of memory");
    if (d == -1) return at_err_set(err, AT_E_ENGINE, "the phonemiser returned invalid UTF-8 (byte %zu)", bad);
    text->n = 0;
    for (size_t i = 0; i < np; i++) {
        if (vt_isspace(cp[i])) {
            while (i + 1 < np && vt_isspace(cp[i + 1])) i++;
            cps_push(text, ' ');
        } else {
            cps_push(text, cp[i]);
        }
    }
    free(cp);
    return text->oom ? at_err_set(err, AT_E_NOMEM, "out of memory") : 0;
}

int at_vits_tokenizer_encode(const at_vits_tokenizer *t, const char *text, at_vits_phonemize_fn phonemize,
                             void *user, int **ids, int *n, at_err *err)
{
    if (ids) *ids = NULL;
    if (n) *n = 0;
    if (!t || !text || !ids || !n) return at_err_set(err, AT_E_INVALID, "vits tokenizer: missing argument");
    size_t len = strlen(text);
    if (len > AT_VITS_TOK_MAX_TEXT)
        return at_err_set(err, AT_E_TOO_LARGE, "text is longer than %d bytes", AT_VITS_TOK_MAX_TEXT);
    uint32_t *in = NULL;
    size_t nin = 0, bad = 0;
    int d = vt_decode(text, len, &in, &nin, &bad);
    if (d == -2) return at_err_set(err, AT_E_NOMEM, "out of memory");
    if (d == -1) return at_err_set(err, AT_E_INVALID, "text is not valid UTF-8 (byte %zu)", bad);

    int rc = 0;
    vt_cps s = {malloc(64 * sizeof *s.p), 0, 64, 0}; /* never NULL, even for empty text */
    if (!s.p) s.oom = 1;
    if (t->normalize) {
        normalize_text(t, in, nin, &s);
    } else {
        for (size_t i = 0; i < nin; i++) cps_push(&s, in[i]);
    }
    free(in);
    if (s.oom) {
        free(s.p);
        return at_err_set(err, AT_E_NOMEM, "out of memory");
    }
    if (strcmp(t->language, "ron") == 0) /* _preprocess_char */
        for (size_t i = 0; i < s.n; i++)
            if (s.p[i] == 0x21B) s.p[i] = 0x163;
    if (t->is_uroman && has_non_ascii(s.p, s.n)) {
        free(s.p);
        return at_err_set(err, AT_E_UNSUPPORTED,
                          "this voice needs uroman romanisation, which is not supported");
    }
    if (t->phonemize) {
        rc = phonemize_text(&s, phonemize, user, err);
    } else if (t->normalize) { /* keep what the vocabulary has, then strip() */
        size_t k = 0;
        for (size_t i = 0; i < s.n; i++)
            if (single_id(t, s.p[i]) >= 0) s.p[k++] = s.p[i];
        size_t b = 0;
        while (b < k && vt_isspace(s.p[b])) b++;
        while (k > b && vt_isspace(s.p[k - 1])) k--;
        if (k > b) memmove(s.p, s.p + b, (k - b) * sizeof *s.p);
        s.n = k - b;
    }
    int *out = NULL;
    size_t k = 0, real = 0;
    /* at most 2 ids per character + 1 per piece, pieces <= characters + 1 */
    if (rc == 0 && !(out = malloc((3 * s.n + 2) * sizeof *out)))
        rc = at_err_set(err, AT_E_NOMEM, "out of memory");
    if (rc == 0) { /* tokenize(): pieces between special tokens */
        size_t start = 0, i = 0;
        while (i < s.n) {
            const vt_word *sp = special_at(t, s.p, s.n, i);
            if (!sp) {
                i++;
                continue;
            }
            real += tokenize_piece(t, s.p + start, i - start, out, &k);
            if (sp->id >= 0) { /* not in vocab.json: no id the model knows */
                out[k++] = sp->id;
                real++;
            }
            i += sp->n;
            start = i;
        }
        real += tokenize_piece(t, s.p + start, s.n - start, out, &k);
        if (real == 0)
            rc = at_err_set(err, AT_E_INVALID,
                            "the text leaves nothing this voice can speak (empty, or only "
                            "characters it does not know)");
    }
    free(s.p);
    if (rc < 0) {
        free(out);
        return rc;
    }
    *ids = out;
    *n = (int)k;
    return 0;
}
