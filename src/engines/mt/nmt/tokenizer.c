/* tokenizer.c - Marian / NLLB / M2M100 tokenizers over SentencePiece (see
 * tokenizer.h). */
#include "engines/mt/nmt/tokenizer.h"

#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define TOK_MAX_JSON (64u << 20) /* vocab.json of the largest models is ~10 MB */
#define TOK_MAX_IDS  (1 << 24)

/* transformers' FAIRSEQ_LANGUAGE_CODES of NllbTokenizer, in id order. */
static const char *const nllb_langs[] = {
    "ace_Arab", "ace_Latn", "acm_Arab", "acq_Arab", "aeb_Arab", "afr_Latn", "ajp_Arab", "aka_Latn",
    "amh_Ethi", "apc_Arab", "arb_Arab", "ars_Arab", "ary_Arab", "arz_Arab", "asm_Beng", "ast_Latn",
    "awa_Deva", "ayr_Latn", "azb_Arab", "azj_Latn", "bak_Cyrl", "bam_Latn", "ban_Latn", "bel_Cyrl",
    "bem_Latn", "ben_Beng", "bho_Deva", "bjn_Arab", "bjn_Latn", "bod_Tibt", "bos_Latn", "bug_Latn",
    "bul_Cyrl", "cat_Latn", "ceb_Latn", "ces_Latn", "cjk_Latn", "ckb_Arab", "crh_Latn", "cym_Latn",
    "dan_Latn", "deu_Latn", "dik_Latn", "dyu_Latn", "dzo_Tibt", "ell_Grek", "eng_Latn", "epo_Latn",
    "est_Latn", "eus_Latn", "ewe_Latn", "fao_Latn", "pes_Arab", "fij_Latn", "fin_Latn", "fon_Latn",
    "fra_Latn", "fur_Latn", "fuv_Latn", "gla_Latn", "gle_Latn", "glg_Latn", "grn_Latn", "guj_Gujr",
    "hat_Latn", "hau_Latn", "heb_Hebr", "hin_Deva", "hne_Deva", "hrv_Latn", "hun_Latn", "hye_Armn",
    "ibo_Latn", "ilo_Latn", "ind_Latn", "isl_Latn", "ita_Latn", "jav_Latn", "jpn_Jpan", "kab_Latn",
    "kac_Latn", "kam_Latn", "kan_Knda", "kas_Arab", "kas_Deva", "kat_Geor", "knc_Arab", "knc_Latn",
    "kaz_Cyrl", "kbp_Latn", "kea_Latn", "khm_Khmr", "kik_Latn", "kin_Latn", "kir_Cyrl", "kmb_Latn",
    "kon_Latn", "kor_Hang", "kmr_Latn", "lao_Laoo", "lvs_Latn", "lij_Latn", "lim_Latn", "lin_Latn",
    "lit_Latn", "lmo_Latn", "ltg_Latn", "ltz_Latn", "lua_Latn", "lug_Latn", "luo_Latn", "lus_Latn",
    "mag_Deva", "mai_Deva", "mal_Mlym", "mar_Deva", "min_Latn", "mkd_Cyrl", "plt_Latn", "mlt_Latn",
    "mni_Beng", "khk_Cyrl", "mos_Latn", "mri_Latn", "zsm_Latn", "mya_Mymr", "nld_Latn", "nno_Latn",
    "nob_Latn", "npi_Deva", "nso_Latn", "nus_Latn", "nya_Latn", "oci_Latn", "gaz_Latn", "ory_Orya",
    "pag_Latn", "pan_Guru", "pap_Latn", "pol_Latn", "por_Latn", "prs_Arab", "pbt_Arab", "quy_Latn",
    "ron_Latn", "run_Latn", "rus_Cyrl", "sag_Latn", "san_Deva", "sat_Beng", "scn_Latn", "shn_Mymr",
    "sin_Sinh", "slk_Latn", "slv_Latn", "smo_Latn", "sna_Latn", "snd_Arab", "som_Latn", "sot_Latn",
    "spa_Latn", "als_Latn", "srd_Latn", "srp_Cyrl", "ssw_Latn", "sun_Latn", "swe_Latn", "swh_Latn",
    "szl_Latn", "tam_Taml", "tat_Cyrl", "tel_Telu", "tgk_Cyrl", "tgl_Latn", "tha_Thai", "tir_Ethi",
    "taq_Latn", "taq_Tfng", "tpi_Latn", "tsn_Latn", "tso_Latn", "tuk_Latn", "tum_Latn", "tur_Latn",
    "twi_Latn", "tzm_Tfng", "uig_Arab", "ukr_Cyrl", "umb_Latn", "urd_Arab", "uzn_Latn", "vec_Latn",
    "vie_Latn", "war_Latn", "wol_Latn", "xho_Latn", "ydd_Hebr", "yor_Latn", "yue_Hant", "zho_Hans",
    "zho_Hant", "zul_Latn", NULL};

/* transformers' FAIRSEQ_LANGUAGE_CODES["m2m100"], in id order. */
static const char *const m2m_langs[] = {
    "af", "am", "ar", "ast", "az", "ba",  "be", "bg", "bn", "br", "bs", "ca", "ceb", "cs", "cy", "da", "de",
    "el", "en", "es", "et",  "fa", "ff",  "fi", "fr", "fy", "ga", "gd", "gl", "gu",  "ha", "he", "hi", "hr",
    "ht", "hu", "hy", "id",  "ig", "ilo", "is", "it", "ja", "jv", "ka", "kk", "km",  "kn", "ko", "lb", "lg",
    "ln", "lo", "lt", "lv",  "mg", "mk",  "ml", "mn", "mr", "ms", "my", "ne", "nl",  "no", "ns", "oc", "or",
    "pa", "pl", "ps", "pt",  "ro", "ru",  "sd", "si", "sk", "sl", "so", "sq", "sr",  "ss", "su", "sv", "sw",
    "ta", "th", "tl", "tn",  "tr", "uk",  "ur", "uz", "vi", "wo", "xh", "yi", "yo",  "zh", "zu", NULL};

/* ISO 639-1, ISO 639-3 (as OPUS-MT's >>xxx<< tokens use it), NLLB code:
 * the obvious correspondences for the common languages. */
static const char *const iso_map[][3] = {
    {"en", "eng", "eng_Latn"}, {"es", "spa", "spa_Latn"}, {"fr", "fra", "fra_Latn"},
    {"de", "deu", "deu_Latn"}, {"it", "ita", "ita_Latn"}, {"pt", "por", "por_Latn"},
    {"ru", "rus", "rus_Cyrl"}, {"zh", "zho", "zho_Hans"}, {"ja", "jpn", "jpn_Jpan"},
    {"ar", "ara", "arb_Arab"}, {"ko", "kor", "kor_Hang"}, {"nl", "nld", "nld_Latn"},
    {"pl", "pol", "pol_Latn"}, {"tr", "tur", "tur_Latn"}, {"uk", "ukr", "ukr_Cyrl"},
    {"cs", "ces", "ces_Latn"}, {"sv", "swe", "swe_Latn"}, {"fi", "fin", "fin_Latn"},
    {"da", "dan", "dan_Latn"}, {"el", "ell", "ell_Grek"}, {"hi", "hin", "hin_Deva"},
    {"he", "heb", "heb_Hebr"}, {"hu", "hun", "hun_Latn"}, {"id", "ind", "ind_Latn"},
    {"vi", "vie", "vie_Latn"}, {"th", "tha", "tha_Thai"}, {"ro", "ron", "ron_Latn"},
    {"bg", "bul", "bul_Cyrl"}, {"ca", "cat", "cat_Latn"}, {"fa", "pes", "pes_Arab"},
    {"ms", "zsm", "zsm_Latn"}, {"bn", "ben", "ben_Beng"}, {"ta", "tam", "tam_Taml"},
    {"ur", "urd", "urd_Arab"}, {"sk", "slk", "slk_Latn"}, {"sl", "slv", "slv_Latn"},
    {"hr", "hrv", "hrv_Latn"}, {"sr", "srp", "srp_Cyrl"}, {"lt", "lit", "lit_Latn"},
    {"lv", "lav", "lvs_Latn"}, {"et", "est", "est_Latn"}, {"no", "nob", "nob_Latn"},
    {"sw", "swh", "swh_Latn"}, {"af", "afr", "afr_Latn"}, {"mr", "mar", "mar_Deva"},
    {"ne", "npi", "npi_Deva"}, {"gl", "glg", "glg_Latn"}, {"eu", "eus", "eus_Latn"},
    {"cy", "cym", "cym_Latn"}, {"ga", "gle", "gle_Latn"}, {"is", "isl", "isl_Latn"},
    {"mk", "mkd", "mkd_Cyrl"}, {"hy", "hye", "hye_Armn"}, {"ka", "kat", "kat_Geor"},
    {"kk", "kaz", "kaz_Cyrl"}, {"be", "bel", "bel_Cyrl"}, {"bs", "bos", "bos_Latn"},
    {"tl", "tgl", "tgl_Latn"}, {"am", "amh", "amh_Ethi"}, {"my", "mya", "mya_Mymr"},
    {"km", "khm", "khm_Khmr"}, {"lo", "lao", "lao_Laoo"}, {"si", "sin", "sin_Sinh"},
    {"te", "tel", "tel_Telu"}, {"kn", "kan", "kan_Knda"}, {"ml", "mal", "mal_Mlym"},
    {"gu", "guj", "guj_Gujr"}, {"pa", "pan", "pan_Guru"}, {"yo", "yor", "yor_Latn"},
    {"zu", "zul", "zul_Latn"}, {"xh", "xho", "xho_Latn"}, {"so", "som", "som_Latn"},
};

/* ---- string -> id map ------------------------------------------------------ */

typedef struct {
    char **key;
    int *val;
    uint32_t mask;
    size_t n;
} strmap;

static uint64_t hash_str(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

static int strmap_init(strmap *m, size_t n)
{
    uint32_t cap = 16;
    while (cap < 2 * n + 2) cap <<= 1;
    m->key = calloc(cap, sizeof *m->key);
    m->val = calloc(cap, sizeof *m->val);
    m->mask = cap - 1;
    m->n = 0;
    return m->key && m->val ? 0 : -1;
}

static void strmap_free(strmap *m)
{
    if (m->key)
        for (uint32_t i = 0; i <= m->mask; i++) free(m->key[i]);
    free(m->key);
    free(m->val);
}

static int strmap_get_n(const strmap *m, const char *s, size_t n)
{
    if (!m->key) return -1;
    for (uint32_t i = (uint32_t)hash_str(s, n) & m->mask;; i = (i + 1) & m->mask) {
        if (!m->key[i]) return -1;
        if (strlen(m->key[i]) == n && memcmp(m->key[i], s, n) == 0) return m->val[i];
    }
}

static int strmap_get(const strmap *m, const char *s) { return strmap_get_n(m, s, strlen(s)); }

/* Inserts (the first value wins; the map has room for what init said). */
static int strmap_put(strmap *m, const char *s, int v)
{
    size_t n = strlen(s);
    uint32_t i = (uint32_t)hash_str(s, n) & m->mask;
    for (; m->key[i]; i = (i + 1) & m->mask)
        if (strcmp(m->key[i], s) == 0) return 0;
    if (!(m->key[i] = strdup(s))) return -1;
    m->val[i] = v;
    m->n++;
    return 0;
}

/* ---- the tokenizer ---------------------------------------------------------- */

struct at_nmt_tok {
    at_nmt_tok_kind kind;
    at_spm *src, *tgt; /* tgt: Marian's target.spm, else == src */
    strmap enc;        /* Marian/M2M100: piece -> id (vocab.json) */
    char **dec;        /* id -> piece (target vocabulary) */
    int n_dec;
    int vocab_size;
    int eos, pad, unk, bos, mask;
    int lang_base, n_langs; /* NLLB/M2M100: language ids lang_base + i */
    const char *const *langs;
    int legacy;          /* NLLB legacy_behaviour */
    char **marian_langs; /* Marian >>xxx<< tokens in id order */
    int *marian_lang_ids;
    int n_marian_langs;
};

static char *read_file(const char *path, size_t *len, at_err *err)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        at_err_set(err, AT_E_IO, "nmt tokenizer: cannot open %s", path);
        return NULL;
    }
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || st.st_size < 0 || (uint64_t)st.st_size > TOK_MAX_JSON) {
        fclose(f);
        at_err_set(err, AT_E_TOO_LARGE, "nmt tokenizer: %s is too large or unreadable", path);
        return NULL;
    }
    char *buf = malloc((size_t)st.st_size + 1);
    if (!buf) {
        fclose(f);
        at_err_set(err, AT_E_NOMEM, "nmt tokenizer: out of memory");
        return NULL;
    }
    size_t n = fread(buf, 1, (size_t)st.st_size, f);
    fclose(f);
    buf[n] = 0;
    if (len) *len = n;
    return buf;
}

static int exists(const char *dir, const char *name)
{
    char path[4096];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return stat(path, &st) == 0;
}

static cJSON *read_json(const char *dir, const char *name, at_err *err)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    char *s = read_file(path, NULL, err);
    if (!s) return NULL;
    cJSON *j = cJSON_Parse(s);
    free(s);
    if (!j) at_err_set(err, AT_E_CORRUPT, "nmt tokenizer: %s is not valid JSON", path);
    return j;
}

static at_spm *load_spm(const char *dir, const char *name, at_err *err)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return at_spm_load(path, err);
}

/* vocab.json -> map (and when dec is not NULL, the inverse table). */
static int load_vocab(const char *dir, const char *name, strmap *map, char ***dec, int *n_dec, at_err *err)
{
    cJSON *j = read_json(dir, name, err);
    if (!j) return -1;
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return at_err_set(err, AT_E_CORRUPT, "nmt tokenizer: %s is not a JSON object", name);
    }
    int n = cJSON_GetArraySize(j), max_id = -1;
    const cJSON *e;
    cJSON_ArrayForEach(e, j)
    {
        if (!cJSON_IsNumber(e) || e->valuedouble < 0 || e->valuedouble >= TOK_MAX_IDS || !e->string) {
            cJSON_Delete(j);
            return at_err_set(err, AT_E_CORRUPT, "nmt tokenizer: %s has a bad entry", name);
        }
        if (e->valueint > max_id) max_id = e->valueint;
    }
    if (map && strmap_init(map, (size_t)n) < 0) goto nomem;
    if (dec) {
        *dec = calloc((size_t)max_id + 2, sizeof **dec);
        if (!*dec) goto nomem;
        *n_dec = max_id + 1;
    }
    cJSON_ArrayForEach(e, j)
    {
        if (map && strmap_put(map, e->string, e->valueint) < 0) goto nomem;
        if (dec && !(*dec)[e->valueint] && !((*dec)[e->valueint] = strdup(e->string))) goto nomem;
    }
    cJSON_Delete(j);
    return 0;
nomem:
    cJSON_Delete(j);
    return at_err_set(err, AT_E_NOMEM, "nmt tokenizer: out of memory");
}

void at_nmt_tok_free(at_nmt_tok *t)
{
    if (!t) return;
    if (t->tgt != t->src) at_spm_free(t->tgt);
    at_spm_free(t->src);
    strmap_free(&t->enc);
    for (int i = 0; t->dec && i < t->n_dec; i++) free(t->dec[i]);
    free(t->dec);
    for (int i = 0; i < t->n_marian_langs; i++) free(t->marian_langs[i]);
    free(t->marian_langs);
    free(t->marian_lang_ids);
    free(t);
}

static at_nmt_tok_kind detect(const char *dir)
{
    at_err e;
    cJSON *cfg = exists(dir, "config.json") ? read_json(dir, "config.json", &e) : NULL;
    const cJSON *mt = cfg ? cJSON_GetObjectItem(cfg, "model_type") : NULL;
    at_nmt_tok_kind k = 0;
    if (cJSON_IsString(mt)) {
        if (strcmp(mt->valuestring, "marian") == 0) k = AT_NMT_TOK_MARIAN;
        if (strcmp(mt->valuestring, "m2m_100") == 0 || strcmp(mt->valuestring, "m2m100") == 0)
            k = exists(dir, "vocab.json") ? AT_NMT_TOK_M2M100 : AT_NMT_TOK_NLLB;
        if (strncmp(mt->valuestring, "nllb", 4) == 0) k = AT_NMT_TOK_NLLB;
    }
    cJSON_Delete(cfg);
    if (k) return k;
    if (exists(dir, "source.spm")) return AT_NMT_TOK_MARIAN;
    if (exists(dir, "sentencepiece.bpe.model"))
        return exists(dir, "vocab.json") ? AT_NMT_TOK_M2M100 : AT_NMT_TOK_NLLB;
    return 0;
}

static int vocab_id(const at_nmt_tok *t, const char *s, int dflt)
{
    int id = strmap_get(&t->enc, s);
    return id >= 0 ? id : dflt;
}

static int load_marian(at_nmt_tok *t, const char *dir, at_err *err)
{
    if (!(t->src = load_spm(dir, "source.spm", err))) return -1;
    t->tgt = exists(dir, "target.spm") ? load_spm(dir, "target.spm", err) : t->src;
    if (!t->tgt) return -1;
    int separate = exists(dir, "target_vocab.json");
    if (load_vocab(dir, "vocab.json", &t->enc, separate ? NULL : &t->dec, &t->n_dec, err) < 0) return -1;
    if (separate && load_vocab(dir, "target_vocab.json", NULL, &t->dec, &t->n_dec, err) < 0) return -1;
    t->unk = strmap_get(&t->enc, "<unk>");
    t->eos = strmap_get(&t->enc, "</s>");
    t->pad = strmap_get(&t->enc, "<pad>");
    if (t->unk < 0 || t->eos < 0)
        return at_err_set(err, AT_E_CORRUPT, "nmt tokenizer: vocab.json lacks <unk> or </s>");
    t->bos = -1;
    t->mask = -1;
    t->vocab_size = (int)t->enc.n > t->n_dec ? (int)t->enc.n : t->n_dec;
    /* Multilingual OPUS-MT models name target languages as >>xxx<<. */
    size_t cap = 0;
    for (uint32_t i = 0; i <= t->enc.mask; i++) {
        const char *k = t->enc.key[i];
        size_t l = k ? strlen(k) : 0;
        if (l < 5 || strncmp(k, ">>", 2) != 0 || strcmp(k + l - 2, "<<") != 0) continue;
        if ((size_t)t->n_marian_langs == cap) {
            cap = cap ? 2 * cap : 16;
            char **a = realloc(t->marian_langs, cap * sizeof *a);
            if (a) t->marian_langs = a;
            int *b = realloc(t->marian_lang_ids, cap * sizeof *b);
            if (b) t->marian_lang_ids = b;
            if (!a || !b) return at_err_set(err, AT_E_NOMEM, "nmt tokenizer: out of memory");
        }
        if (!(t->marian_langs[t->n_marian_langs] = strdup(k)))
            return at_err_set(err, AT_E_NOMEM, "nmt tokenizer: out of memory");
        t->marian_lang_ids[t->n_marian_langs++] = t->enc.val[i];
    }
    /* id order, as listed */
    for (int i = 1; i < t->n_marian_langs; i++)
        for (int k = i; k > 0 && t->marian_lang_ids[k - 1] > t->marian_lang_ids[k]; k--) {
            int v = t->marian_lang_ids[k];
            t->marian_lang_ids[k] = t->marian_lang_ids[k - 1];
            t->marian_lang_ids[k - 1] = v;
            char *s = t->marian_langs[k];
            t->marian_langs[k] = t->marian_langs[k - 1];
            t->marian_langs[k - 1] = s;
        }
    return 0;
}

static int load_nllb(at_nmt_tok *t, const char *dir, at_err *err)
{
    if (!(t->src = load_spm(dir, "sentencepiece.bpe.model", err))) return -1;
    t->tgt = t->src;
    /* fairseq ids: <s> <pad> </s> <unk>, then spm id + 1. */
    t->bos = 0;
    t->pad = 1;
    t->eos = 2;
    t->unk = 3;
    t->langs = nllb_langs;
    t->n_langs = (int)(sizeof nllb_langs / sizeof *nllb_langs) - 1;
    t->lang_base = at_spm_size(t->src) + 1;
    t->mask = t->lang_base + t->n_langs;
    t->vocab_size = t->mask + 1;
    if (exists(dir, "tokenizer_config.json")) {
        cJSON *c = read_json(dir, "tokenizer_config.json", err);
        if (!c) return -1;
        t->legacy = cJSON_IsTrue(cJSON_GetObjectItem(c, "legacy_behaviour"));
        cJSON_Delete(c);
    }
    return 0;
}

static int load_m2m(at_nmt_tok *t, const char *dir, at_err *err)
{
    if (!(t->src = load_spm(dir, "sentencepiece.bpe.model", err))) return -1;
    t->tgt = t->src;
    if (load_vocab(dir, "vocab.json", &t->enc, &t->dec, &t->n_dec, err) < 0) return -1;
    t->unk = strmap_get(&t->enc, "<unk>");
    t->eos = strmap_get(&t->enc, "</s>");
    t->pad = strmap_get(&t->enc, "<pad>");
    t->bos = strmap_get(&t->enc, "<s>");
    t->mask = -1;
    if (t->unk < 0 || t->eos < 0)
        return at_err_set(err, AT_E_CORRUPT, "nmt tokenizer: vocab.json lacks <unk> or </s>");
    t->langs = m2m_langs;
    t->n_langs = (int)(sizeof m2m_langs / sizeof *m2m_langs) - 1;
    /* Language ids follow len(vocab.json), then 8 "madeup" words. */
    t->lang_base = (int)t->enc.n;
    t->vocab_size = t->lang_base + t->n_langs + 8;
    return 0;
}

at_nmt_tok *at_nmt_tok_load(const char *dir, at_err *err)
{
    at_nmt_tok_kind k = detect(dir);
    if (!k) {
        at_err_set(err, AT_E_IO, "nmt tokenizer: %s has no source.spm or sentencepiece.bpe.model", dir);
        return NULL;
    }
    at_nmt_tok *t = calloc(1, sizeof *t);
    if (!t) {
        at_err_set(err, AT_E_NOMEM, "nmt tokenizer: out of memory");
        return NULL;
    }
    t->kind = k;
    int rc = k == AT_NMT_TOK_MARIAN ? load_marian(t, dir, err)
             : k == AT_NMT_TOK_NLLB ? load_nllb(t, dir, err)
                                    : load_m2m(t, dir, err);
    if (rc < 0) {
        at_nmt_tok_free(t);
        return NULL;
    }
    return t;
}

at_nmt_tok_kind at_nmt_tok_kind_of(const at_nmt_tok *t) { return t->kind; }
int at_nmt_tok_vocab_size(const at_nmt_tok *t) { return t->vocab_size; }
int at_nmt_tok_eos_id(const at_nmt_tok *t) { return t->eos; }
int at_nmt_tok_pad_id(const at_nmt_tok *t) { return t->pad; }
int at_nmt_tok_unk_id(const at_nmt_tok *t) { return t->unk; }
const at_spm *at_nmt_tok_source_spm(const at_nmt_tok *t) { return t->src; }

const char *at_nmt_tok_lang(const at_nmt_tok *t, int i)
{
    if (i < 0) return NULL;
    if (t->kind == AT_NMT_TOK_MARIAN) return i < t->n_marian_langs ? t->marian_langs[i] : NULL;
    return i < t->n_langs ? t->langs[i] : NULL;
}

static int lang_index(const char *const *langs, int n, const char *code)
{
    for (int i = 0; i < n; i++)
        if (strcmp(langs[i], code) == 0) return i;
    return -1;
}

int at_nmt_tok_lang_id(const at_nmt_tok *t, const char *lang)
{
    if (!lang || !*lang) return -1;
    size_t n_iso = sizeof iso_map / sizeof *iso_map;
    if (t->kind == AT_NMT_TOK_MARIAN) {
        char tok[64];
        if (strncmp(lang, ">>", 2) == 0) return strmap_get(&t->enc, lang);
        snprintf(tok, sizeof tok, ">>%s<<", lang);
        int id = strmap_get(&t->enc, tok);
        for (size_t i = 0; id < 0 && i < n_iso; i++)
            if (strcmp(iso_map[i][0], lang) == 0 || strcmp(iso_map[i][2], lang) == 0) {
                snprintf(tok, sizeof tok, ">>%s<<", iso_map[i][1]);
                id = strmap_get(&t->enc, tok);
            }
        return id;
    }
    if (t->kind == AT_NMT_TOK_NLLB) {
        int i = lang_index(t->langs, t->n_langs, lang);
        for (size_t k = 0; i < 0 && k < n_iso; k++)
            if (strcmp(iso_map[k][0], lang) == 0 || strcmp(iso_map[k][1], lang) == 0)
                i = lang_index(t->langs, t->n_langs, iso_map[k][2]);
        return i < 0 ? -1 : t->lang_base + i;
    }
    char code[16];
    size_t l = strlen(lang);
    if (l > 4 && l < sizeof code + 4 && strncmp(lang, "__", 2) == 0 && strcmp(lang + l - 2, "__") == 0) {
        memcpy(code, lang + 2, l - 4);
        code[l - 4] = 0;
        lang = code;
    }
    int i = lang_index(t->langs, t->n_langs, lang);
    for (size_t k = 0; i < 0 && k < n_iso; k++)
        if (strcmp(iso_map[k][1], lang) == 0 || strcmp(iso_map[k][2], lang) == 0)
            i = lang_index(t->langs, t->n_langs, iso_map[k][0]);
    return i < 0 ? -1 : t->lang_base + i;
}

int at_nmt_tok_encode(const at_nmt_tok *t, const char *src_lang, const char *text, size_t len, int **ids,
                      int *n, at_err *err)
{
    *ids = NULL;
    *n = 0;
    int lang = -1, code = -1;
    if (t->kind != AT_NMT_TOK_MARIAN) {
        const char *l = src_lang ? src_lang : t->kind == AT_NMT_TOK_NLLB ? "eng_Latn" : "en";
        if ((lang = at_nmt_tok_lang_id(t, l)) < 0)
            return at_err_set(err, AT_E_UNSUPPORTED, "nmt tokenizer: the model has no language '%s'", l);
    } else if (len >= 5 && strncmp(text, ">>", 2) == 0) {
        /* Marian: a leading >>xxx<< is the target language token. */
        const char *end = NULL;
        for (size_t i = 2; i + 1 < len && text[i] != '\n'; i++)
            if (text[i] == '<' && text[i + 1] == '<') end = text + i + 2;
        if (end) {
            char tok[128];
            size_t tl = (size_t)(end - text);
            if (tl < sizeof tok) {
                memcpy(tok, text, tl);
                tok[tl] = 0;
                code = vocab_id(t, tok, t->unk);
                len -= tl;
                text = end;
            }
        }
    }
    int *sp = NULL, ns = 0;
    if (at_spm_encode(t->src, text, len, &sp, &ns, err) < 0) return -1;
    int *out = malloc(((size_t)ns + 3) * sizeof *out);
    if (!out) {
        free(sp);
        return at_err_set(err, AT_E_NOMEM, "nmt tokenizer: out of memory");
    }
    int k = 0;
    if (code >= 0) out[k++] = code;
    if (lang >= 0 && !(t->kind == AT_NMT_TOK_NLLB && t->legacy)) out[k++] = lang;
    for (int i = 0; i < ns; i++) {
        if (t->kind == AT_NMT_TOK_NLLB) {
            /* spm's unk (id 0) is fairseq's <unk>; the rest shift by one. */
            out[k++] = sp[i] == 0 ? t->unk : sp[i] + 1;
        } else {
            out[k++] = vocab_id(t, at_spm_piece(t->src, sp[i], NULL), t->unk);
        }
    }
    free(sp);
    out[k++] = t->eos;
    if (t->kind == AT_NMT_TOK_NLLB && t->legacy) out[k++] = lang;
    *ids = out;
    *n = k;
    return 0;
}

static int is_special(const at_nmt_tok *t, int id)
{
    if (id == t->eos || id == t->pad || id == t->unk || id == t->bos || id == t->mask) return 1;
    if (t->kind != AT_NMT_TOK_MARIAN && id >= t->lang_base && id < t->lang_base + t->n_langs) return 1;
    return t->kind == AT_NMT_TOK_M2M100 && id >= t->lang_base + t->n_langs; /* madeup words */
}

static int is_space(unsigned char c) { return c == ' ' || (c >= '\t' && c <= '\r'); }

int at_nmt_tok_decode(const at_nmt_tok *t, const int *ids, int n, char **out, at_err *err)
{
    *out = NULL;
    if (n < 0) return at_err_set(err, AT_E_INVALID, "nmt tokenizer: negative id count");
    const char **pieces = malloc(((size_t)n + 1) * sizeof *pieces);
    if (!pieces) return at_err_set(err, AT_E_NOMEM, "nmt tokenizer: out of memory");
    int k = 0;
    size_t total = 1;
    for (int i = 0; i < n; i++) {
        int id = ids[i];
        if (id < 0 || is_special(t, id)) continue;
        const char *p = NULL;
        if (t->kind == AT_NMT_TOK_NLLB)
            p = at_spm_piece(t->src, id - 1, NULL);
        else if (id < t->n_dec)
            p = t->dec[id];
        if (!p) continue; /* ids outside the vocabulary */
        pieces[k++] = p;
        total += strlen(p);
    }
    char *s = NULL;
    size_t len = 0;
    int rc = 0;
    if (t->kind == AT_NMT_TOK_NLLB) {
        /* NllbTokenizer: pieces joined, U+2581 -> space, stripped. */
        s = malloc(total);
        if (!s) rc = at_err_set(err, AT_E_NOMEM, "nmt tokenizer: out of memory");
        for (int i = 0; s && i < k; i++)
            for (const char *p = pieces[i]; *p;) {
                if (strncmp(p, "\xe2\x96\x81", 3) == 0) {
                    s[len++] = ' ';
                    p += 3;
                } else
                    s[len++] = *p++;
            }
        if (s) s[len] = 0;
    } else {
        rc = at_spm_decode_pieces(t->tgt, pieces, NULL, k, &s, &len, err);
    }
    free(pieces);
    if (rc < 0) return -1;
    /* transformers strips the decoded string. */
    size_t a = 0;
    while (a < len && is_space((unsigned char)s[a])) a++;
    while (len > a && is_space((unsigned char)s[len - 1])) len--;
    memmove(s, s + a, len - a);
    s[len - a] = 0;
    *out = s;
    return 0;
}
