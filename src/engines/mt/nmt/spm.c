/* spm.c - SentencePiece model reader, normaliser, unigram/BPE segmentation
 * and decoding (see spm.h).  The rules follow sentencepiece 0.1.97's
 * normalizer.cc, unigram_model.cc, bpe_model.cc, model_interface.cc and
 * sentencepiece_processor.cc; comments name the upstream behaviour that a
 * line reproduces where it is not obvious. */
#include "engines/mt/nmt/spm.h"

#include <float.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SPACE_SYM        "\xe2\x96\x81" /* U+2581, the escaped whitespace */
#define SPACE_SYM_LEN    3
#define REPLACEMENT      "\xef\xbf\xbd" /* U+FFFD */
/* The normaliser considers the first 32 prefix matches of its trie
 * (Normalizer::kMaxTrieResultsSize). */
#define NORM_MAX_RESULTS 32
#define UNK_PENALTY      10.0f

/* ---- a byte trie over piece strings --------------------------------------
 * Nodes are numbered from 0 (the root); edges live in one open-addressing
 * table keyed by (node, byte).  Walking it byte by byte gives exactly the
 * matches upstream's darts-clone traverse()/commonPrefixSearch() give. */
typedef struct {
    uint64_t *keys; /* node << 8 | byte; UINT64_MAX = empty */
    int32_t *child;
    uint32_t mask;
    int32_t *value; /* per node: piece id or -1 */
    int32_t n_nodes, cap_nodes;
} trie;

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return x;
}

/* max_nodes bounds the trie (the bytes of its pieces + 1); the tables
 * grow with the nodes actually made, at most half full. */
static int trie_init(trie *t, size_t max_nodes)
{
    memset(t, 0, sizeof *t);
    t->cap_nodes = max_nodes + 1 > 0x7FFFFFF ? 0x7FFFFFF : (int32_t)(max_nodes + 1);
    return 0;
}

static void trie_free(trie *t)
{
    free(t->keys);
    free(t->child);
    free(t->value);
}

static int32_t trie_next(const trie *t, int32_t node, unsigned char c)
{
    if (!t->keys) return -1;
    uint64_t key = (uint64_t)(uint32_t)node << 8 | c;
    for (uint32_t i = (uint32_t)mix64(key) & t->mask;; i = (i + 1) & t->mask) {
        if (t->keys[i] == key) return t->child[i];
        if (t->keys[i] == UINT64_MAX) return -1;
    }
}

static void trie_put_edge(trie *t, uint64_t key, int32_t c)
{
    uint32_t i = (uint32_t)mix64(key) & t->mask;
    while (t->keys[i] != UINT64_MAX) i = (i + 1) & t->mask;
    t->keys[i] = key;
    t->child[i] = c;
}

/* Room for one more node (and its edge). */
static int trie_reserve(trie *t)
{
    if (t->n_nodes >= t->cap_nodes) return -1;
    size_t cap = t->keys ? (size_t)t->mask + 1 : 0;
    if ((size_t)t->n_nodes * 2 + 2 <= cap) return 0;
    size_t ncap = cap ? 2 * cap : 64;
    uint64_t *keys = malloc(ncap * sizeof *keys);
    int32_t *child = malloc(ncap * sizeof *child);
    int32_t *value = realloc(t->value, ncap / 2 * sizeof *value);
    if (value) t->value = value;
    if (!keys || !child || !value) {
        free(keys);
        free(child);
        return -1;
    }
    memset(keys, 0xff, ncap * sizeof *keys);
    uint64_t *okeys = t->keys;
    int32_t *ochild = t->child;
    t->keys = keys;
    t->child = child;
    t->mask = (uint32_t)(ncap - 1);
    for (size_t i = 0; i < cap; i++)
        if (okeys[i] != UINT64_MAX) trie_put_edge(t, okeys[i], ochild[i]);
    free(okeys);
    free(ochild);
    if (t->n_nodes == 0) {
        t->n_nodes = 1; /* the root */
        t->value[0] = -1;
    }
    return 0;
}

/* Adds s -> id; returns 1 when s was already present, -1 when out of
 * memory or nodes. */
static int trie_add(trie *t, const char *s, size_t n, int32_t id)
{
    if (trie_reserve(t) < 0) return -1;
    int32_t node = 0;
    for (size_t k = 0; k < n; k++) {
        int32_t c = trie_next(t, node, (unsigned char)s[k]);
        if (c < 0) {
            if (trie_reserve(t) < 0) return -1;
            c = t->n_nodes++;
            t->value[c] = -1;
            trie_put_edge(t, (uint64_t)(uint32_t)node << 8 | (unsigned char)s[k], c);
        }
        node = c;
    }
    if (t->value[node] >= 0) return 1;
    t->value[node] = id;
    return 0;
}

static int32_t trie_get(const trie *t, const char *s, size_t n)
{
    if (!t->keys) return -1;
    int32_t node = 0;
    for (size_t k = 0; k < n && node >= 0; k++) node = trie_next(t, node, (unsigned char)s[k]);
    return node >= 0 ? t->value[node] : -1;
}

/* ---- the normaliser ------------------------------------------------------ */

typedef struct {
    unsigned char *blob; /* darts-clone units (little-endian uint32) */
    size_t n_units;
    const char *pool; /* NUL-separated replacement strings */
    size_t pool_len;
    int add_dummy_prefix, remove_extra_ws, escape_ws, ws_suffix;
} normalizer;

struct at_spm {
    int n;
    uint32_t *off; /* n + 1 offsets into arena (pieces NUL-terminated) */
    char *arena;
    float *score;
    unsigned char *type;
    int16_t *byte_of; /* BYTE pieces: the byte value, else -1 */
    int byte_id[256]; /* byte fallback: id of <0xNN> */
    trie normal;      /* NORMAL, USER_DEFINED, UNUSED (upstream pieces_) */
    trie reserved;    /* CONTROL, UNKNOWN, BYTE (upstream reserved_id_map_) */
    int has_user_defined;
    int model_type, byte_fallback;
    int unk, bos, eos, pad;
    float min_score, max_score;
    char *unk_surface;
    size_t unk_surface_len;
    normalizer norm, denorm;
    int has_denorm;
};

static uint32_t rd32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* UTF-8 character length from the lead byte, as upstream's OneCharLen. */
static size_t one_char_len(unsigned char c) { return "\1\1\1\1\1\1\1\1\1\1\1\1\2\2\3\4"[c >> 4]; }

/* Upstream's DecodeUTF8 + IsValidDecodeUTF8: returns the length of a valid
 * character at s, 0 when the first byte starts no valid character. */
static size_t valid_utf8_len(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    if (c < 0x80) return 1;
    uint32_t cp;
    if (n >= 2 && (c & 0xE0) == 0xC0) {
        cp = (c & 0x1Fu) << 6 | (s[1] & 0x3Fu);
        if ((s[1] & 0xC0) == 0x80 && cp >= 0x80) return 2;
    } else if (n >= 3 && (c & 0xF0) == 0xE0) {
        cp = (c & 0x0Fu) << 12 | (s[1] & 0x3Fu) << 6 | (s[2] & 0x3Fu);
        if ((s[1] & 0xC0) == 0x80 && (s[2] & 0xC0) == 0x80 && cp >= 0x800 && (cp < 0xD800 || cp >= 0xE000))
            return 3;
    } else if (n >= 4 && (c & 0xF8) == 0xF0) {
        cp = (c & 0x07u) << 18 | (s[1] & 0x3Fu) << 12 | (s[2] & 0x3Fu) << 6 | (s[3] & 0x3Fu);
        if ((s[1] & 0xC0) == 0x80 && (s[2] & 0xC0) == 0x80 && (s[3] & 0xC0) == 0x80 && cp >= 0x10000 &&
            cp <= 0x10FFFF)
            return 4;
    }
    return 0;
}

/* Longest match of the character map at s (among the first 32 prefixes, as
 * upstream); 0 when none.  *rep gets the replacement. */
static size_t charsmap_match(const normalizer *nz, const unsigned char *s, size_t n, const char **rep,
                             size_t *rep_len)
{
    if (!nz->n_units) return 0;
    size_t pos = 0, best = 0, found = 0;
    uint32_t unit = rd32(nz->blob);
    size_t best_val = 0;
    pos ^= (unit >> 10) << ((unit & (1u << 9)) >> 6);
    for (size_t i = 0; i < n; i++) {
        pos ^= s[i];
        if (pos >= nz->n_units) break;
        unit = rd32(nz->blob + 4 * pos);
        if ((unit & ((1u << 31) | 0xFF)) != s[i]) break;
        pos ^= (unit >> 10) << ((unit & (1u << 9)) >> 6);
        if ((unit >> 8) & 1) {
            if (pos >= nz->n_units) break;
            if (found++ < NORM_MAX_RESULTS && i + 1 > best) {
                best = i + 1;
                best_val = rd32(nz->blob + 4 * pos) & ((1u << 31) - 1);
            }
        }
    }
    if (!best) return 0;
    if (best_val >= nz->pool_len) {
        *rep = "";
        *rep_len = 0;
    } else {
        *rep = nz->pool + best_val;
        *rep_len = strnlen(*rep, nz->pool_len - best_val);
    }
    return best;
}

/* Upstream's NormalizePrefix: the normalised form of the next unit of s and
 * how many input bytes it consumes. */
static size_t norm_prefix(const at_spm *m, const normalizer *nz, int use_matcher, const char *s, size_t n,
                          const char **out, size_t *out_len)
{
    const unsigned char *u = (const unsigned char *)s;
    if (use_matcher && m->has_user_defined) {
        /* User-defined pieces pass through unnormalised. */
        int32_t node = 0;
        size_t best = 0;
        for (size_t k = 0; k < n; k++) {
            node = trie_next(&m->normal, node, u[k]);
            if (node < 0) break;
            int32_t id = m->normal.value[node];
            if (id >= 0 && m->type[id] == AT_SPM_USER_DEFINED) best = k + 1;
        }
        if (best) {
            *out = s;
            *out_len = best;
            return best;
        }
    }
    size_t l = charsmap_match(nz, u, n, out, out_len);
    if (l) return l;
    l = valid_utf8_len(u, n);
    if (!l) {
        /* Malformed UTF-8: one byte becomes U+FFFD. */
        *out = REPLACEMENT;
        *out_len = 3;
        return 1;
    }
    *out = s;
    *out_len = l;
    return l;
}

typedef struct {
    char *p;
    size_t n, cap;
    int oom;
} buf;

static void buf_put(buf *b, const char *s, size_t n)
{
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->n + n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

static int ends_with(const buf *b, const char *s, size_t n)
{
    return b->n >= n && memcmp(b->p + b->n - n, s, n) == 0;
}

static int normalize(const at_spm *m, const normalizer *nz, int use_matcher, const char *s, size_t n, buf *o,
                     at_err *err)
{
    const char *rep;
    size_t rep_len, l;
    buf_put(o, "", 0);
    if (nz->remove_extra_ws) {
        /* Leading units that normalise to exactly " " are dropped. */
        while (n > 0) {
            l = norm_prefix(m, nz, use_matcher, s, n, &rep, &rep_len);
            if (!(rep_len == 1 && rep[0] == ' ')) break;
            s += l;
            n -= l;
        }
    }
    if (n == 0) return 0;
    const char *ws = nz->escape_ws ? SPACE_SYM : " ";
    size_t ws_len = nz->escape_ws ? SPACE_SYM_LEN : 1;
    if (!nz->ws_suffix && nz->add_dummy_prefix) buf_put(o, ws, ws_len);
    int prev_space = nz->remove_extra_ws;
    while (n > 0) {
        l = norm_prefix(m, nz, use_matcher, s, n, &rep, &rep_len);
        /* Spaces after a space are dropped when removing extra ones. */
        while (prev_space && rep_len > 0 && rep[0] == ' ') {
            rep++;
            rep_len--;
        }
        if (rep_len > 0) {
            for (size_t k = 0; k < rep_len; k++) {
                if (nz->escape_ws && rep[k] == ' ')
                    buf_put(o, SPACE_SYM, SPACE_SYM_LEN);
                else
                    buf_put(o, rep + k, 1);
            }
            prev_space = rep[rep_len - 1] == ' ';
        }
        s += l;
        n -= l;
        if (!nz->remove_extra_ws) prev_space = 0;
        if (o->n > AT_SPM_MAX_NORMALIZED)
            return at_err_set(err, AT_E_TOO_LARGE, "sentencepiece: normalised text too long");
    }
    if (nz->remove_extra_ws)
        while (ends_with(o, ws, ws_len)) o->p[o->n -= ws_len] = 0;
    if (nz->ws_suffix && nz->add_dummy_prefix) buf_put(o, ws, ws_len);
    if (o->oom) return at_err_set(err, AT_E_NOMEM, "sentencepiece: out of memory");
    return 0;
}

int at_spm_normalize(const at_spm *m, const char *text, size_t len, char **out, size_t *out_len, at_err *err)
{
    buf o = {NULL, 0, 0, 0};
    *out = NULL;
    if (len > AT_SPM_MAX_ENCODE_BYTES)
        return at_err_set(err, AT_E_TOO_LARGE, "sentencepiece: text of %zu bytes is too long", len);
    if (normalize(m, &m->norm, 1, text, len, &o, err) < 0) {
        free(o.p);
        return -1;
    }
    *out = o.p;
    if (out_len) *out_len = o.n;
    return 0;
}

/* ---- protobuf wire format ------------------------------------------------ */

typedef struct {
    const unsigned char *p, *end;
} pb;

static int pb_varint(pb *r, uint64_t *v)
{
    uint64_t x = 0;
    for (int shift = 0; shift < 70; shift += 7) {
        if (r->p >= r->end) return -1;
        unsigned char c = *r->p++;
        if (shift < 64) x |= (uint64_t)(c & 0x7F) << shift;
        if (!(c & 0x80)) {
            *v = x;
            return 0;
        }
    }
    return -1;
}

/* Next field: its number, wire type, and for length-delimited fields the
 * payload (checked against the buffer); varints in *v; fixed32 in *v. */
static int pb_next(pb *r, uint32_t *field, pb *sub, uint64_t *v)
{
    uint64_t key;
    if (pb_varint(r, &key) < 0 || (key >> 3) == 0 || (key >> 3) > 0x1FFFFFFF) return -1;
    *field = (uint32_t)(key >> 3);
    *v = 0;
    sub->p = sub->end = NULL;
    switch (key & 7) {
    case 0: return pb_varint(r, v) < 0 ? -1 : 0;
    case 1:
        if (r->end - r->p < 8) return -1;
        r->p += 8;
        return 1;
    case 2: {
        uint64_t n;
        if (pb_varint(r, &n) < 0 || n > (uint64_t)(r->end - r->p)) return -1;
        sub->p = r->p;
        sub->end = r->p + n;
        r->p += n;
        return 2;
    }
    case 5:
        if (r->end - r->p < 4) return -1;
        *v = rd32(r->p);
        r->p += 4;
        return 5;
    default: return -1; /* groups are not part of this schema */
    }
}

static float u32_float(uint64_t v)
{
    uint32_t u = (uint32_t)v;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

typedef struct {
    const unsigned char *p;
    size_t n;
    int set;
} pbstr;

typedef struct {
    pbstr name, charsmap;
    int add_dummy_prefix, remove_extra_ws, escape_ws;
} norm_spec;

static int parse_norm_spec(pb r, norm_spec *ns)
{
    memset(ns, 0, sizeof *ns);
    ns->add_dummy_prefix = ns->remove_extra_ws = ns->escape_ws = 1;
    while (r.p < r.end) {
        uint32_t f;
        pb s;
        uint64_t v;
        int wt = pb_next(&r, &f, &s, &v);
        if (wt < 0) return -1;
        if (wt == 2 && (f == 1 || f == 2)) {
            pbstr *d = f == 1 ? &ns->name : &ns->charsmap;
            d->p = s.p;
            d->n = (size_t)(s.end - s.p);
            d->set = 1;
        } else if (wt == 0 && f == 3)
            ns->add_dummy_prefix = v != 0;
        else if (wt == 0 && f == 4)
            ns->remove_extra_ws = v != 0;
        else if (wt == 0 && f == 5)
            ns->escape_ws = v != 0;
    }
    return 0;
}

typedef struct {
    int model_type, byte_fallback, ws_suffix;
    int unk_id, bos_id, eos_id, pad_id;
    pbstr unk_piece, bos_piece, eos_piece, pad_piece, unk_surface;
} trainer_spec;

static int parse_trainer_spec(pb r, trainer_spec *ts)
{
    memset(ts, 0, sizeof *ts);
    ts->model_type = AT_SPM_UNIGRAM;
    ts->unk_id = 0;
    ts->bos_id = 1;
    ts->eos_id = 2;
    ts->pad_id = -1;
    while (r.p < r.end) {
        uint32_t f;
        pb s;
        uint64_t v;
        int wt = pb_next(&r, &f, &s, &v);
        if (wt < 0) return -1;
        if (wt == 0) {
            switch (f) {
            case 3: ts->model_type = (int)(int32_t)v; break;
            case 24: ts->ws_suffix = v != 0; break;
            case 35: ts->byte_fallback = v != 0; break;
            case 40: ts->unk_id = (int)(int32_t)v; break;
            case 41: ts->bos_id = (int)(int32_t)v; break;
            case 42: ts->eos_id = (int)(int32_t)v; break;
            case 43: ts->pad_id = (int)(int32_t)v; break;
            default: break;
            }
        } else if (wt == 2 && f >= 44 && f <= 48) {
            pbstr *d = f == 44   ? &ts->unk_surface
                       : f == 45 ? &ts->unk_piece
                       : f == 46 ? &ts->bos_piece
                       : f == 47 ? &ts->eos_piece
                                 : &ts->pad_piece;
            d->p = s.p;
            d->n = (size_t)(s.end - s.p);
            d->set = 1;
        }
    }
    return 0;
}

static int init_normalizer(normalizer *nz, const norm_spec *ns, int ws_suffix, at_err *err)
{
    memset(nz, 0, sizeof *nz);
    nz->add_dummy_prefix = ns->add_dummy_prefix;
    nz->remove_extra_ws = ns->remove_extra_ws;
    nz->escape_ws = ns->escape_ws;
    nz->ws_suffix = ws_suffix;
    if (!ns->charsmap.n) return 0;
    /* <uint32 trie size><darts-clone units><NUL-separated strings> */
    const unsigned char *b = ns->charsmap.p;
    size_t n = ns->charsmap.n;
    /* the trie's units are read as whole 32-bit words: it must lie inside
     * the blob (upstream only checks it against the blob with its header) */
    if (n <= 4 || rd32(b) > n - 4)
        return at_err_set(err, AT_E_CORRUPT, "sentencepiece: broken precompiled_charsmap");
    size_t trie_size = rd32(b);
    nz->blob = malloc(n - 4 + 1);
    if (!nz->blob) return at_err_set(err, AT_E_NOMEM, "sentencepiece: out of memory");
    memcpy(nz->blob, b + 4, n - 4);
    nz->blob[n - 4] = 0;
    nz->n_units = trie_size / 4;
    nz->pool = (const char *)nz->blob + trie_size;
    nz->pool_len = n - 4 - trie_size;
    return 0;
}

/* ---- loading --------------------------------------------------------------- */

static int piece_to_byte(const char *s, size_t n)
{
    /* Exactly "<0xNN>" with upper-case hex digits (upstream's ByteToPiece). */
    if (n != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>') return -1;
    int v = 0;
    for (int k = 3; k < 5; k++) {
        char c = s[k];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= c - '0';
        else if (c >= 'A' && c <= 'F')
            v |= c - 'A' + 10;
        else
            return -1;
    }
    return v;
}

void at_spm_free(at_spm *m)
{
    if (!m) return;
    free(m->off);
    free(m->arena);
    free(m->score);
    free(m->type);
    free(m->byte_of);
    trie_free(&m->normal);
    trie_free(&m->reserved);
    free(m->unk_surface);
    free(m->norm.blob);
    free(m->denorm.blob);
    free(m);
}

static int special_id(const at_spm *m, const pbstr *piece, const char *dflt, int want_type)
{
    const char *s = piece->n ? (const char *)piece->p : dflt;
    size_t n = piece->n ? piece->n : strlen(dflt);
    int id = trie_get(&m->reserved, s, n);
    if (id < 0) id = trie_get(&m->normal, s, n);
    return id >= 0 && m->type[id] == want_type ? id : -1;
}

at_spm *at_spm_load_mem(const void *data, size_t size, at_err *err)
{
    if (size > AT_SPM_MAX_FILE) {
        at_err_set(err, AT_E_TOO_LARGE, "sentencepiece: model of %zu bytes is too large", size);
        return NULL;
    }
    pb r = {data, (const unsigned char *)data + size};
    /* First pass: count pieces and their bytes; find the specs. */
    size_t n_pieces = 0, arena = 0;
    pb tspec = {NULL, NULL}, nspec = {NULL, NULL}, dspec = {NULL, NULL};
    int has_dspec = 0;
    while (r.p < r.end) {
        uint32_t f;
        pb s;
        uint64_t v;
        int wt = pb_next(&r, &f, &s, &v);
        if (wt < 0) goto corrupt;
        if (wt != 2) continue;
        if (f == 1) {
            n_pieces++;
            arena += (size_t)(s.end - s.p) + 1;
        } else if (f == 2)
            tspec = s;
        else if (f == 3)
            nspec = s;
        else if (f == 5) {
            dspec = s;
            has_dspec = 1;
        }
    }
    if (n_pieces == 0) {
        at_err_set(err, AT_E_CORRUPT, "sentencepiece: the model has no pieces");
        return NULL;
    }
    if (n_pieces > 0x7FFFFFF) goto corrupt;
    trainer_spec ts;
    norm_spec ns, ds;
    if (parse_trainer_spec(tspec, &ts) < 0 || parse_norm_spec(nspec, &ns) < 0 ||
        parse_norm_spec(dspec, &ds) < 0)
        goto corrupt;
    if (ts.model_type != AT_SPM_UNIGRAM && ts.model_type != AT_SPM_BPE) {
        at_err_set(err, AT_E_UNSUPPORTED, "sentencepiece: model type %d is not supported (unigram or bpe)",
                   ts.model_type);
        return NULL;
    }

    at_spm *m = calloc(1, sizeof *m);
    if (!m) goto nomem;
    m->n = (int)n_pieces;
    m->model_type = ts.model_type;
    m->byte_fallback = ts.byte_fallback;
    m->off = malloc((n_pieces + 1) * sizeof *m->off);
    m->arena = malloc(arena + 1);
    m->score = malloc(n_pieces * sizeof *m->score);
    m->type = malloc(n_pieces);
    m->byte_of = malloc(n_pieces * sizeof *m->byte_of);
    trie_init(&m->normal, arena);
    trie_init(&m->reserved, arena);
    if (!m->off || !m->arena || !m->score || !m->type || !m->byte_of) {
        at_spm_free(m);
        goto nomem;
    }
    for (int b = 0; b < 256; b++) m->byte_id[b] = -1;
    /* Second pass: the pieces. */
    r.p = data;
    size_t at = 0;
    int i = 0;
    m->unk = -1;
    while (r.p < r.end) {
        uint32_t f;
        pb s;
        uint64_t v;
        if (pb_next(&r, &f, &s, &v) != 2 || f != 1) continue;
        pbstr piece = {NULL, 0, 0};
        float score = 0;
        int type = AT_SPM_NORMAL;
        while (s.p < s.end) {
            uint32_t g;
            pb t;
            int wt = pb_next(&s, &g, &t, &v);
            if (wt < 0) goto corrupt_m;
            if (g == 1 && wt == 2) {
                piece.p = t.p;
                piece.n = (size_t)(t.end - t.p);
            } else if (g == 2 && wt == 5)
                score = u32_float(v);
            else if (g == 3 && wt == 0)
                type = (int)(int32_t)v;
        }
        if (type < AT_SPM_NORMAL || type > AT_SPM_BYTE) {
            at_err_set(err, AT_E_CORRUPT, "sentencepiece: piece %d has unknown type %d", i, type);
            goto fail_m;
        }
        if (piece.n == 0) {
            at_err_set(err, AT_E_CORRUPT, "sentencepiece: piece %d is empty", i);
            goto fail_m;
        }
        m->off[i] = (uint32_t)at;
        memcpy(m->arena + at, piece.p, piece.n);
        m->arena[at + piece.n] = 0;
        at += piece.n + 1;
        m->score[i] = score;
        m->type[i] = (unsigned char)type;
        m->byte_of[i] = -1;
        int is_normal = type == AT_SPM_NORMAL || type == AT_SPM_USER_DEFINED || type == AT_SPM_UNUSED;
        int rc = trie_add(is_normal ? &m->normal : &m->reserved, (const char *)piece.p, piece.n, i);
        if (rc < 0) goto nomem_m;
        if (rc != 0) {
            at_err_set(err, AT_E_CORRUPT, "sentencepiece: piece %d is defined twice", i);
            goto fail_m;
        }
        if (type == AT_SPM_USER_DEFINED) m->has_user_defined = 1;
        if (type == AT_SPM_UNKNOWN) {
            if (m->unk >= 0) {
                at_err_set(err, AT_E_CORRUPT, "sentencepiece: unk is defined twice");
                goto fail_m;
            }
            m->unk = i;
        }
        if (type == AT_SPM_BYTE) {
            int b = piece_to_byte((const char *)piece.p, piece.n);
            if (!ts.byte_fallback || b < 0) {
                at_err_set(err, AT_E_CORRUPT, "sentencepiece: unexpected byte piece %d", i);
                goto fail_m;
            }
            m->byte_of[i] = (int16_t)b;
            m->byte_id[b] = i;
        }
        i++;
    }
    m->off[i] = (uint32_t)at;
    if (m->unk < 0) {
        at_err_set(err, AT_E_CORRUPT, "sentencepiece: the model defines no unknown piece");
        goto fail_m;
    }
    if (ts.byte_fallback)
        for (int b = 0; b < 256; b++)
            if (m->byte_id[b] < 0) {
                at_err_set(err, AT_E_CORRUPT, "sentencepiece: byte_fallback without all 256 byte pieces");
                goto fail_m;
            }
    /* Unigram scores: over NORMAL pieces, starting from FLT_MAX/FLT_MIN as
     * upstream does (so max_score stays positive for negative scores). */
    m->min_score = FLT_MAX;
    m->max_score = FLT_MIN;
    for (int k = 0; k < m->n; k++)
        if (m->type[k] == AT_SPM_NORMAL) {
            if (m->score[k] < m->min_score) m->min_score = m->score[k];
            if (m->score[k] > m->max_score) m->max_score = m->score[k];
        }
    if (m->normal.n_nodes <= 1) {
        at_err_set(err, AT_E_CORRUPT, "sentencepiece: the model has no normal pieces");
        goto fail_m;
    }
    m->bos = special_id(m, &ts.bos_piece, "<s>", AT_SPM_CONTROL);
    m->eos = special_id(m, &ts.eos_piece, "</s>", AT_SPM_CONTROL);
    m->pad = special_id(m, &ts.pad_piece, "<pad>", AT_SPM_CONTROL);
    {
        const char *us = ts.unk_surface.set ? (const char *)ts.unk_surface.p : " \xe2\x81\x87 ";
        size_t ul = ts.unk_surface.set ? ts.unk_surface.n : strlen(us);
        m->unk_surface = malloc(ul + 1);
        if (!m->unk_surface) goto nomem_m;
        memcpy(m->unk_surface, us, ul);
        m->unk_surface[ul] = 0;
        m->unk_surface_len = ul;
    }
    if (init_normalizer(&m->norm, &ns, ts.ws_suffix, err) < 0) goto fail_m;
    /* The denormaliser is used only when it has rules (as upstream). */
    if (has_dspec && ds.charsmap.n) {
        if (init_normalizer(&m->denorm, &ds, 0, err) < 0) goto fail_m;
        m->has_denorm = 1;
    }
    return m;

corrupt_m:
    at_err_set(err, AT_E_CORRUPT, "sentencepiece: malformed model file");
fail_m:
    at_spm_free(m);
    return NULL;
nomem_m:
    at_spm_free(m);
nomem:
    at_err_set(err, AT_E_NOMEM, "sentencepiece: out of memory");
    return NULL;
corrupt:
    at_err_set(err, AT_E_CORRUPT, "sentencepiece: malformed model file");
    return NULL;
}

at_spm *at_spm_load(const char *path, at_err *err)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        at_err_set(err, AT_E_IO, "sentencepiece: cannot open %s", path);
        return NULL;
    }
    char *data = NULL;
    long size = -1;
    if (fseek(f, 0, SEEK_END) == 0) size = ftell(f);
    if (size < 0 || fseek(f, 0, SEEK_SET) != 0) {
        fclose(f);
        at_err_set(err, AT_E_IO, "sentencepiece: cannot read %s", path);
        return NULL;
    }
    if ((unsigned long)size > AT_SPM_MAX_FILE) {
        fclose(f);
        at_err_set(err, AT_E_TOO_LARGE, "sentencepiece: %s is too large", path);
        return NULL;
    }
    data = malloc((size_t)size + 1);
    if (!data) {
        fclose(f);
        at_err_set(err, AT_E_NOMEM, "sentencepiece: out of memory");
        return NULL;
    }
    size_t got = fread(data, 1, (size_t)size, f);
    fclose(f);
    if (got != (size_t)size) {
        free(data);
        at_err_set(err, AT_E_IO, "sentencepiece: cannot read %s", path);
        return NULL;
    }
    at_spm *m = at_spm_load_mem(data, got, err);
    free(data);
    return m;
}

/* ---- accessors -------------------------------------------------------------- */

int at_spm_size(const at_spm *m) { return m->n; }
int at_spm_model_type(const at_spm *m) { return m->model_type; }
int at_spm_unk_id(const at_spm *m) { return m->unk; }
int at_spm_bos_id(const at_spm *m) { return m->bos; }
int at_spm_eos_id(const at_spm *m) { return m->eos; }
int at_spm_pad_id(const at_spm *m) { return m->pad; }

const char *at_spm_piece(const at_spm *m, int id, size_t *len)
{
    if (id < 0 || id >= m->n) {
        if (len) *len = 0;
        return NULL;
    }
    if (len) *len = m->off[id + 1] - m->off[id] - 1;
    return m->arena + m->off[id];
}

float at_spm_score(const at_spm *m, int id) { return id >= 0 && id < m->n ? m->score[id] : 0.0f; }
int at_spm_type(const at_spm *m, int id) { return id >= 0 && id < m->n ? m->type[id] : 0; }

int at_spm_piece_id_n(const at_spm *m, const char *piece, size_t len)
{
    int id = trie_get(&m->reserved, piece, len);
    return id >= 0 ? id : trie_get(&m->normal, piece, len);
}

int at_spm_piece_id(const at_spm *m, const char *piece) { return at_spm_piece_id_n(m, piece, strlen(piece)); }

/* ---- segmentation ------------------------------------------------------------- */

typedef struct {
    uint32_t off, len; /* span in the normalised text */
    int id;
} seg;

typedef struct {
    seg *v;
    size_t n, cap;
} segs;

static int segs_push(segs *s, uint32_t off, uint32_t len, int id)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 64;
        seg *v = realloc(s->v, cap * sizeof *v);
        if (!v) return -1;
        s->v = v;
        s->cap = cap;
    }
    s->v[s->n++] = (seg){off, len, id};
    return 0;
}

/* Unigram Viterbi as upstream's EncodeOptimized: best path ending at each
 * byte position; the arithmetic mirrors upstream's types (double for the
 * candidate score, float for what is stored) so that ties break alike. */
static int encode_unigram(const at_spm *m, const char *s, size_t size, segs *out)
{
    typedef struct {
        int id;
        float score;
        int starts_at;
    } best_node;
    best_node *best = malloc((size + 1) * sizeof *best);
    if (!best) return -1;
    for (size_t k = 0; k <= size; k++) best[k] = (best_node){-1, 0.0f, -1};
    const float unk_score = m->min_score - UNK_PENALTY;
    size_t starts_at = 0;
    while (starts_at < size) {
        const float here = best[starts_at].score;
        int has_single = 0;
        size_t mblen = one_char_len((unsigned char)s[starts_at]);
        if (mblen > size - starts_at) mblen = size - starts_at;
        int32_t node = 0;
        for (size_t key_pos = starts_at; key_pos < size;) {
            node = trie_next(&m->normal, node, (unsigned char)s[key_pos]);
            if (node < 0) break;
            key_pos++;
            int id = m->normal.value[node];
            if (id < 0 || m->type[id] == AT_SPM_UNUSED) continue;
            size_t length = key_pos - starts_at;
            double score = m->type[id] == AT_SPM_USER_DEFINED ? (double)((float)length * m->max_score) - 0.1
                                                              : (double)m->score[id];
            double cand = score + (double)here;
            best_node *t = &best[key_pos];
            if (t->starts_at == -1 || cand > (double)t->score) {
                t->score = (float)cand;
                t->starts_at = (int)starts_at;
                t->id = id;
            }
            if (length == mblen) has_single = 1;
        }
        if (!has_single) {
            best_node *t = &best[starts_at + mblen];
            float cand = unk_score + here;
            if (t->starts_at == -1 || cand > t->score) {
                t->score = cand;
                t->starts_at = (int)starts_at;
                t->id = m->unk;
            }
        }
        starts_at += mblen;
    }
    /* Backtrack, then reverse. */
    size_t first = out->n;
    for (size_t end = size; end > 0;) {
        const best_node *b = &best[end];
        if (b->starts_at < 0 || (size_t)b->starts_at >= end ||
            segs_push(out, (uint32_t)b->starts_at, (uint32_t)(end - b->starts_at), b->id) < 0) {
            free(best);
            return -1;
        }
        end = (size_t)b->starts_at;
    }
    free(best);
    for (size_t a = first, z = out->n; a + 1 < z; a++, z--) {
        seg t = out->v[a];
        out->v[a] = out->v[z - 1];
        out->v[z - 1] = t;
    }
    return 0;
}

/* ---- BPE ---------------------------------------------------------------------- */

typedef struct {
    float score;
    int left, right;
    size_t size;
} bpe_pair;

/* Upstream's agenda order: higher score first, then the leftmost. */
static int pair_before(const bpe_pair *a, const bpe_pair *b)
{
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

typedef struct {
    bpe_pair *v;
    size_t n, cap;
} heap;

static void heap_push(heap *h, bpe_pair p)
{
    size_t i = h->n++;
    h->v[i] = p;
    while (i > 0) {
        size_t up = (i - 1) / 2;
        if (!pair_before(&h->v[i], &h->v[up])) break;
        bpe_pair t = h->v[i];
        h->v[i] = h->v[up];
        h->v[up] = t;
        i = up;
    }
}

static bpe_pair heap_pop(heap *h)
{
    bpe_pair top = h->v[0];
    h->v[0] = h->v[--h->n];
    for (size_t i = 0;;) {
        size_t l = 2 * i + 1, r = l + 1, b = i;
        if (l < h->n && pair_before(&h->v[l], &h->v[b])) b = l;
        if (r < h->n && pair_before(&h->v[r], &h->v[b])) b = r;
        if (b == i) break;
        bpe_pair t = h->v[i];
        h->v[i] = h->v[b];
        h->v[b] = t;
        i = b;
    }
    return top;
}

typedef struct {
    uint32_t off, len;
    int prev, next;
    int freeze;
} bpe_sym;

typedef struct {
    uint32_t off, len, loff, llen, roff, rlen;
} rev_merge;

typedef struct {
    const at_spm *m;
    const char *s;
    bpe_sym *sym;
    heap h;
    rev_merge *rev;
    size_t n_rev, cap_rev;
    int oom;
} bpe_ctx;

static void bpe_maybe_add(bpe_ctx *c, int left, int right)
{
    if (left < 0 || right < 0 || c->sym[left].freeze || c->sym[right].freeze) return;
    uint32_t off = c->sym[left].off, len = c->sym[left].len + c->sym[right].len;
    int id = trie_get(&c->m->normal, c->s + off, len);
    if (id < 0) return;
    if (c->h.n == c->h.cap) {
        size_t cap = 2 * c->h.cap;
        bpe_pair *v = realloc(c->h.v, cap * sizeof *v);
        if (!v) {
            c->oom = 1;
            return;
        }
        c->h.v = v;
        c->h.cap = cap;
    }
    heap_push(&c->h, (bpe_pair){c->m->score[id], left, right, len});
    if (c->m->type[id] == AT_SPM_UNUSED) {
        /* How to split an unused piece again (upstream's rev_merge). */
        if (c->n_rev == c->cap_rev) {
            size_t cap = c->cap_rev ? 2 * c->cap_rev : 16;
            rev_merge *v = realloc(c->rev, cap * sizeof *v);
            if (!v) {
                c->oom = 1;
                return;
            }
            c->rev = v;
            c->cap_rev = cap;
        }
        c->rev[c->n_rev++] =
            (rev_merge){off, len, c->sym[left].off, c->sym[left].len, c->sym[right].off, c->sym[right].len};
    }
}

/* The latest split recorded for the piece s[off, off+len). */
static const rev_merge *find_rev(const bpe_ctx *c, uint32_t off, uint32_t len)
{
    for (size_t k = c->n_rev; k-- > 0;)
        if (c->rev[k].len == len && memcmp(c->s + c->rev[k].off, c->s + off, len) == 0) return &c->rev[k];
    return NULL;
}

/* upstream PieceToId: reserved pieces first, then the others, else unk. */
static int piece_to_id(const at_spm *m, const char *s, size_t n)
{
    int id = at_spm_piece_id_n(m, s, n);
    return id >= 0 ? id : m->unk;
}

static int encode_bpe(const at_spm *m, const char *s, size_t size, segs *out)
{
    bpe_ctx c;
    memset(&c, 0, sizeof c);
    c.m = m;
    c.s = s;
    c.sym = malloc((size + 1) * sizeof *c.sym);
    c.h.cap = 2 * size + 16;
    c.h.v = malloc(c.h.cap * sizeof *c.h.v);
    int rc = -1;
    if (!c.sym || !c.h.v) goto done;
    /* Characters, with user-defined pieces (longest match) frozen. */
    int n_sym = 0;
    for (size_t pos = 0; pos < size;) {
        size_t len = 0;
        int freeze = 0;
        if (m->has_user_defined) {
            int32_t node = 0;
            for (size_t k = pos; k < size; k++) {
                node = trie_next(&m->normal, node, (unsigned char)s[k]);
                if (node < 0) break;
                int32_t id = m->normal.value[node];
                if (id >= 0 && m->type[id] == AT_SPM_USER_DEFINED) len = k + 1 - pos;
            }
            freeze = len > 0;
        }
        if (!len) {
            len = one_char_len((unsigned char)s[pos]);
            if (len > size - pos) len = size - pos;
        }
        c.sym[n_sym] = (bpe_sym){(uint32_t)pos, (uint32_t)len, n_sym - 1, -1, freeze};
        pos += len;
        if (pos < size) c.sym[n_sym].next = n_sym + 1;
        n_sym++;
    }
    for (int k = 1; k < n_sym; k++) bpe_maybe_add(&c, k - 1, k);
    while (c.h.n > 0 && !c.oom) {
        bpe_pair top = heap_pop(&c.h);
        bpe_sym *l = &c.sym[top.left], *r = &c.sym[top.right];
        /* Stale entries: a side was merged away or has grown. */
        if (l->len == 0 || r->len == 0 || (size_t)l->len + r->len != top.size) continue;
        l->len += r->len;
        l->next = r->next;
        if (r->next >= 0) c.sym[r->next].prev = top.left;
        r->len = 0;
        bpe_maybe_add(&c, l->prev, top.left);
        bpe_maybe_add(&c, top.left, c.sym[top.left].next);
    }
    if (c.oom) goto done;
    /* Output, splitting unused pieces back into their parts. */
    if (n_sym > 0) {
        uint32_t *stack = malloc(2 * (size + 1) * sizeof *stack);
        if (!stack) goto done;
        for (int k = 0; k != -1; k = c.sym[k].next) {
            size_t sp = 0;
            stack[sp++] = c.sym[k].off;
            stack[sp++] = c.sym[k].len;
            while (sp > 0) {
                uint32_t len = stack[--sp], off = stack[--sp];
                int id = piece_to_id(m, s + off, len);
                const rev_merge *rv = m->type[id] == AT_SPM_UNUSED ? find_rev(&c, off, len) : NULL;
                if (!rv || sp + 4 > 2 * (size + 1)) {
                    if (segs_push(out, off, len, id) < 0) {
                        free(stack);
                        goto done;
                    }
                    continue;
                }
                /* Right pushed first so the left comes out first.  The
                 * recorded parts may lie elsewhere in the text: equal
                 * strings, so their spans serve. */
                stack[sp++] = rv->roff;
                stack[sp++] = rv->rlen;
                stack[sp++] = rv->loff;
                stack[sp++] = rv->llen;
            }
        }
        free(stack);
    }
    rc = 0;
done:
    free(c.sym);
    free(c.h.v);
    free(c.rev);
    return rc;
}

/* ---- encode ------------------------------------------------------------------ */

int at_spm_encode_pieces(const at_spm *m, const char *text, size_t len, int **ids, int *n, char **pieces,
                         at_err *err)
{
    if (ids) *ids = NULL;
    if (n) *n = 0;
    if (pieces) *pieces = NULL;
    if (len > AT_SPM_MAX_ENCODE_BYTES)
        return at_err_set(err, AT_E_TOO_LARGE, "sentencepiece: text of %zu bytes is too long", len);
    buf norm = {NULL, 0, 0, 0};
    segs sg = {NULL, 0, 0};
    buf pb_out = {NULL, 0, 0, 0};
    int *out_ids = NULL;
    size_t n_out = 0;
    int rc = -1;
    if (normalize(m, &m->norm, 1, text, len, &norm, err) < 0) goto done;
    if (norm.n > 0) {
        int r = m->model_type == AT_SPM_BPE ? encode_bpe(m, norm.p, norm.n, &sg)
                                            : encode_unigram(m, norm.p, norm.n, &sg);
        if (r < 0) {
            at_err_set(err, AT_E_NOMEM, "sentencepiece: out of memory");
            goto done;
        }
    }
    /* At most one id per normalised byte (byte fallback). */
    out_ids = malloc((norm.n + 1) * sizeof *out_ids);
    if (!out_ids) {
        at_err_set(err, AT_E_NOMEM, "sentencepiece: out of memory");
        goto done;
    }
    pb_out.p = NULL;
    buf_put(&pb_out, "", 0);
    int prev_unk = 0;
    size_t consumed = 0;
    for (size_t k = 0; k < sg.n; k++) {
        const seg *g = &sg.v[k];
        const char *w = norm.p + g->off;
        int is_unk = m->type[g->id] == AT_SPM_UNKNOWN;
        if (m->type[g->id] == AT_SPM_CONTROL) {
            /* Upstream adds it without consuming text, then fails. */
            at_err_set(err, AT_E_ENGINE, "sentencepiece: a control piece matched text");
            goto done;
        }
        if (is_unk && m->byte_fallback) {
            for (uint32_t b = 0; b < g->len; b++) {
                unsigned char c = (unsigned char)w[b];
                char name[8];
                snprintf(name, sizeof name, "<0x%02X>", c);
                if (pb_out.n) buf_put(&pb_out, " ", 1);
                buf_put(&pb_out, name, 6);
                out_ids[n_out++] = m->byte_id[c];
            }
        } else if (is_unk && prev_unk) {
            /* A run of unknown characters is one unknown piece. */
            buf_put(&pb_out, w, g->len);
        } else {
            if (pb_out.n) buf_put(&pb_out, " ", 1);
            buf_put(&pb_out, w, g->len);
            out_ids[n_out++] = g->id;
        }
        consumed += g->len;
        prev_unk = is_unk;
    }
    if (pb_out.oom) {
        at_err_set(err, AT_E_NOMEM, "sentencepiece: out of memory");
        goto done;
    }
    if (consumed != norm.n) {
        at_err_set(err, AT_E_ENGINE, "sentencepiece: segmentation does not cover the text");
        goto done;
    }
    if (ids) {
        if (n_out == 0) {
            free(out_ids);
            out_ids = NULL;
        }
        *ids = out_ids;
        out_ids = NULL;
    }
    if (n) *n = (int)n_out;
    if (pieces) {
        *pieces = pb_out.p;
        pb_out.p = NULL;
    }
    rc = 0;
done:
    free(norm.p);
    free(sg.v);
    free(pb_out.p);
    free(out_ids);
    return rc;
}

int at_spm_encode(const at_spm *m, const char *text, size_t len, int **ids, int *n, at_err *err)
{
    return at_spm_encode_pieces(m, text, len, ids, n, NULL, err);
}

/* ---- decode -------------------------------------------------------------------- */

/* Byte pieces in a row become UTF-8; each invalid byte is U+FFFD. */
static void flush_bytes(buf *o, const unsigned char *b, size_t n)
{
    for (size_t i = 0; i < n;) {
        size_t l = valid_utf8_len(b + i, n - i);
        if (!l) {
            buf_put(o, REPLACEMENT, 3);
            i++;
        } else {
            buf_put(o, (const char *)b + i, l);
            i += l;
        }
    }
}

/* Decoding works on (id, piece) items: a piece string that is not in the
 * model decodes as an unknown piece that shows its own text (upstream's
 * Decode of pieces). */
typedef struct {
    int id;
    const char *p;
    size_t len;
} dec_item;

static int decode_items(const at_spm *m, const dec_item *it, int n, char **out, size_t *out_len, at_err *err)
{
    buf o = {NULL, 0, 0, 0};
    unsigned char *bytes = malloc((size_t)n + 1);
    if (!bytes) return at_err_set(err, AT_E_NOMEM, "sentencepiece: out of memory");
    buf_put(&o, "", 0);
    size_t n_bytes = 0;
    int is_bos_ws = 1, bos_ws_seen = 0;
    for (int i = 0; i < n; i++) {
        int id = it[i].id;
        if (m->type[id] == AT_SPM_BYTE) {
            bytes[n_bytes++] = (unsigned char)m->byte_of[id];
            continue;
        }
        flush_bytes(&o, bytes, n_bytes);
        n_bytes = 0;
        if (bos_ws_seen || o.n > 0) is_bos_ws = 0;
        size_t len = it[i].len;
        const char *p = it[i].p;
        bos_ws_seen = 0;
        if (m->type[id] == AT_SPM_CONTROL) continue;
        if (m->type[id] == AT_SPM_UNKNOWN) {
            size_t ul;
            const char *up = at_spm_piece(m, id, &ul);
            if (ul == len && memcmp(up, p, len) == 0)
                buf_put(&o, m->unk_surface, m->unk_surface_len);
            else
                buf_put(&o, p, len);
            continue;
        }
        if (is_bos_ws && (m->norm.add_dummy_prefix || m->norm.remove_extra_ws) && len >= SPACE_SYM_LEN &&
            memcmp(p, SPACE_SYM, SPACE_SYM_LEN) == 0) {
            p += SPACE_SYM_LEN;
            len -= SPACE_SYM_LEN;
            /* With extra-whitespace removal every leading space goes. */
            bos_ws_seen = !m->norm.remove_extra_ws;
        }
        for (size_t k = 0; k < len;) {
            if (len - k >= SPACE_SYM_LEN && memcmp(p + k, SPACE_SYM, SPACE_SYM_LEN) == 0) {
                buf_put(&o, " ", 1);
                k += SPACE_SYM_LEN;
            } else {
                buf_put(&o, p + k, 1);
                k++;
            }
        }
    }
    flush_bytes(&o, bytes, n_bytes);
    free(bytes);
    if (!o.oom && m->has_denorm) {
        buf d = {NULL, 0, 0, 0};
        if (normalize(m, &m->denorm, 0, o.p, o.n, &d, err) < 0) {
            free(o.p);
            free(d.p);
            return -1;
        }
        free(o.p);
        o = d;
    }
    if (o.oom) {
        free(o.p);
        return at_err_set(err, AT_E_NOMEM, "sentencepiece: out of memory");
    }
    *out = o.p;
    if (out_len) *out_len = o.n;
    return 0;
}

int at_spm_decode_n(const at_spm *m, const int *ids, int n, char **out, size_t *out_len, at_err *err)
{
    *out = NULL;
    if (out_len) *out_len = 0;
    if (n < 0) return at_err_set(err, AT_E_INVALID, "sentencepiece: negative id count");
    dec_item *it = malloc(((size_t)n + 1) * sizeof *it);
    if (!it) return at_err_set(err, AT_E_NOMEM, "sentencepiece: out of memory");
    for (int i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= m->n) {
            free(it);
            return at_err_set(err, AT_E_INVALID, "sentencepiece: id %d out of range [0, %d)", ids[i], m->n);
        }
        it[i].id = ids[i];
        it[i].p = at_spm_piece(m, ids[i], &it[i].len);
    }
    int rc = decode_items(m, it, n, out, out_len, err);
    free(it);
    return rc;
}

int at_spm_decode_pieces(const at_spm *m, const char *const *pieces, const size_t *lens, int n, char **out,
                         size_t *out_len, at_err *err)
{
    *out = NULL;
    if (out_len) *out_len = 0;
    if (n < 0) return at_err_set(err, AT_E_INVALID, "sentencepiece: negative piece count");
    dec_item *it = malloc(((size_t)n + 1) * sizeof *it);
    if (!it) return at_err_set(err, AT_E_NOMEM, "sentencepiece: out of memory");
    for (int i = 0; i < n; i++) {
        size_t len = lens ? lens[i] : strlen(pieces[i]);
        it[i].id = piece_to_id(m, pieces[i], len);
        it[i].p = pieces[i];
        it[i].len = len;
    }
    int rc = decode_items(m, it, n, out, out_len, err);
    free(it);
    return rc;
}

int at_spm_decode(const at_spm *m, const int *ids, int n, char **out, at_err *err)
{
    return at_spm_decode_n(m, ids, n, out, NULL, err);
}
