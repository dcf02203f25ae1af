/* hf_models.c - model folders from Hugging Face, translation models and
 * neural voices (see hf_models.h): the table, the repository listing
 * (untrusted: bounded and checked before use) and the verified, resumable
 * pull. */
#include "tools/hf_models.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>

#include "engines/asr/whisper/models.h"
#include "tools/tools.h"

/* Repositories as published.  OPUS-MT (Helsinki-NLP, CC-BY 4.0) keeps one
 * model per direction; the folder's name gives the engine its pair
 * (neural.c reads "opus-mt-SRC-TGT", and gives a multi-target model such
 * as opus-mt-en-zh or opus-mt-tc-big-en-pt its >>xxx<< token).  Portuguese
 * to English is left to NLLB-200 and M2M100.  max_mib: the weights plus
 * tokenizer files, with room (a Marian model's weights are ~300 MB, a
 * tc-big one's ~900 MB; NLLB-600M's ~2.5 GB, M2M100-418M's ~1.9 GB, in
 * float32). */
static const at_hf_model_info k_hf[] = {
    {"opus-mt-en-es", "Helsinki-NLP/opus-mt-en-es", "main", AT_HF_MODELS_MARIAN, 600},
    {"opus-mt-es-en", "Helsinki-NLP/opus-mt-es-en", "main", AT_HF_MODELS_MARIAN, 600},
    {"opus-mt-en-fr", "Helsinki-NLP/opus-mt-en-fr", "main", AT_HF_MODELS_MARIAN, 600},
    {"opus-mt-fr-en", "Helsinki-NLP/opus-mt-fr-en", "main", AT_HF_MODELS_MARIAN, 600},
    {"opus-mt-en-de", "Helsinki-NLP/opus-mt-en-de", "main", AT_HF_MODELS_MARIAN, 600},
    {"opus-mt-de-en", "Helsinki-NLP/opus-mt-de-en", "main", AT_HF_MODELS_MARIAN, 600},
    {"opus-mt-en-it", "Helsinki-NLP/opus-mt-en-it", "main", AT_HF_MODELS_MARIAN, 600},
    {"opus-mt-it-en", "Helsinki-NLP/opus-mt-it-en", "main", AT_HF_MODELS_MARIAN, 600},
    {"opus-mt-en-ru", "Helsinki-NLP/opus-mt-en-ru", "main", AT_HF_MODELS_MARIAN, 600},
    {"opus-mt-ru-en", "Helsinki-NLP/opus-mt-ru-en", "main", AT_HF_MODELS_MARIAN, 600},
    {"opus-mt-en-zh", "Helsinki-NLP/opus-mt-en-zh", "main", AT_HF_MODELS_MARIAN, 600},
    {"opus-mt-zh-en", "Helsinki-NLP/opus-mt-zh-en", "main", AT_HF_MODELS_MARIAN, 600},
    {"opus-mt-en-jap", "Helsinki-NLP/opus-mt-en-jap", "main", AT_HF_MODELS_MARIAN, 600},
    {"opus-mt-ja-en", "Helsinki-NLP/opus-mt-ja-en", "main", AT_HF_MODELS_MARIAN, 600},
    {"opus-mt-en-ar", "Helsinki-NLP/opus-mt-en-ar", "main", AT_HF_MODELS_MARIAN, 600},
    {"opus-mt-ar-en", "Helsinki-NLP/opus-mt-ar-en", "main", AT_HF_MODELS_MARIAN, 600},
    {"opus-mt-tc-big-en-pt", "Helsinki-NLP/opus-mt-tc-big-en-pt", "main", AT_HF_MODELS_MARIAN, 1200},
    {"nllb-200-distilled-600M", "facebook/nllb-200-distilled-600M", "main", AT_HF_MODELS_NLLB, 3000},
    {"m2m100_418M", "facebook/m2m100_418M", "main", AT_HF_MODELS_M2M100, 2600},
    /* Neural voices: the engine names a voice after its folder, and gives
     * an MMS voice the language of "mms-tts-ISO639-3".  MMS-TTS (Meta,
     * CC-BY-NC 4.0) speaks characters; vits-ljs (one English speaker) and
     * vits-vctk (109 speakers) speak espeak-ng phonemes (MIT).  Weights:
     * ~145 MB in float32. */
    {"mms-tts-eng", "facebook/mms-tts-eng", "main", AT_HF_MODELS_VITS, 300},
    {"mms-tts-spa", "facebook/mms-tts-spa", "main", AT_HF_MODELS_VITS, 300},
    {"mms-tts-fra", "facebook/mms-tts-fra", "main", AT_HF_MODELS_VITS, 300},
    {"mms-tts-deu", "facebook/mms-tts-deu", "main", AT_HF_MODELS_VITS, 300},
    {"mms-tts-ita", "facebook/mms-tts-ita", "main", AT_HF_MODELS_VITS, 300},
    {"mms-tts-por", "facebook/mms-tts-por", "main", AT_HF_MODELS_VITS, 300},
    {"mms-tts-nld", "facebook/mms-tts-nld", "main", AT_HF_MODELS_VITS, 300},
    {"mms-tts-pol", "facebook/mms-tts-pol", "main", AT_HF_MODELS_VITS, 300},
    {"mms-tts-ron", "facebook/mms-tts-ron", "main", AT_HF_MODELS_VITS, 300},
    {"mms-tts-swe", "facebook/mms-tts-swe", "main", AT_HF_MODELS_VITS, 300},
    {"mms-tts-fin", "facebook/mms-tts-fin", "main", AT_HF_MODELS_VITS, 300},
    {"vits-ljs", "kakao-enterprise/vits-ljs", "main", AT_HF_MODELS_VITS, 300},
    {"vits-vctk", "kakao-enterprise/vits-vctk", "main", AT_HF_MODELS_VITS, 300},
};
#define N_HF (sizeof k_hf / sizeof k_hf[0])

const at_hf_model_info *at_hf_models_table(size_t *n)
{
    *n = N_HF;
    return k_hf;
}

const at_hf_model_info *at_hf_models_find(const char *name)
{
    if (!name) return NULL;
    for (size_t i = 0; i < N_HF; i++)
        if (strcmp(k_hf[i].name, name) == 0) return &k_hf[i];
    return NULL;
}

const char *at_hf_models_kind_name(at_hf_models_kind kind)
{
    switch (kind) {
    case AT_HF_MODELS_MARIAN: return "marian";
    case AT_HF_MODELS_NLLB: return "nllb";
    case AT_HF_MODELS_M2M100: return "m2m100";
    case AT_HF_MODELS_VITS: return "vits";
    }
    return "?";
}

/* ---- which files ------------------------------------------------------- */

/* What the loaders read (translation, engines/mt/nmt: model.c, tokenizer.c,
 * generate.c; voices, engines/tts/vits: model.c, tokenizer.c); "optional"
 * ones are fetched when the repository has them.  The weights are added
 * apart: model.safetensors, else pytorch_model.bin (never the TensorFlow,
 * Flax or Rust copies). */
typedef struct wanted {
    const char *path;
    int required;
} wanted;

static const wanted k_common[] = {
    {"config.json", 1},
    {"generation_config.json", 0},
    {"tokenizer_config.json", 0},
    {"special_tokens_map.json", 0},
};
static const wanted k_marian[] = {
    {"source.spm", 1}, {"target.spm", 1}, {"vocab.json", 1}, {"target_vocab.json", 0}};
static const wanted k_nllb[] = {{"sentencepiece.bpe.model", 1}};
static const wanted k_m2m[] = {{"sentencepiece.bpe.model", 1}, {"vocab.json", 1}};
/* a voice: no generation config (special_tokens_map.json is not read, but
 * belongs with the tokenizer's files) */
static const wanted k_vits[] = {
    {"config.json", 1},
    {"vocab.json", 1},
    {"tokenizer_config.json", 1}, /* without it the tokenizer would phonemize */
    {"special_tokens_map.json", 0},
};

#define MAX_FILES 12 /* what one folder may need, weights included */

typedef struct file {
    const char *path; /* one of the constants above: never the listing's text */
    int64_t size;
    int lfs;       /* hash: SHA-256 of the content, else git blob SHA-1 */
    char hash[65]; /* lowercase hex */
} file;

/* ---- the listing ------------------------------------------------------- */

#define LISTING_MAX     (1 << 20) /* a model repository lists a few KB */
#define LISTING_ENTRIES 2000
#define PATH_MAX_LEN    512

typedef struct membuf {
    char *p;
    size_t n, cap;
    int too_big;
} membuf;

static size_t mem_write(char *p, size_t sz, size_t n, void *u)
{
    membuf *b = u;
    size_t len = sz * n;
    if (b->n + len > b->cap) {
        b->too_big = 1;
        return 0;
    }
    memcpy(b->p + b->n, p, len);
    b->n += len;
    return len;
}

static int fetch_listing(const char *url, membuf *b, at_err *err)
{
    b->cap = LISTING_MAX;
    b->n = 0;
    b->too_big = 0;
    if (!(b->p = malloc(b->cap + 1))) return at_err_set(err, AT_E_NOMEM, "out of memory");
    CURL *c = curl_easy_init();
    if (!c) return at_err_set(err, AT_E_NOMEM, "curl: cannot start");
    char errbuf[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(c, CURLOPT_MAXREDIRS, 10L);
    curl_easy_setopt(c, CURLOPT_FAILONERROR, 1L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, mem_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, b);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "audio-translator/0.1");
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 120L);
    CURLcode cr = curl_easy_perform(c);
    curl_easy_cleanup(c);
    if (b->too_big)
        return at_err_set(err, AT_E_TOO_LARGE, "%s: listing larger than %d bytes", url, LISTING_MAX);
    if (cr != CURLE_OK)
        return at_err_set(err, AT_E_IO, "listing %s: %s", url, errbuf[0] ? errbuf : curl_easy_strerror(cr));
    b->p[b->n] = '\0';
    return 0;
}

/* A relative path that stays inside the folder: no leading '/', no '\',
 * no "." or ".." component, printable ASCII. */
static int safe_path(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > PATH_MAX_LEN || s[0] == '/') return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] >= 0x7f || s[i] == '\\') return 0;
    for (const char *c = s; *c;) {
        size_t l = strcspn(c, "/");
        if (l == 0 || (l == 1 && c[0] == '.') || (l == 2 && c[0] == '.' && c[1] == '.')) return 0;
        c += l;
        if (*c == '/') c++;
    }
    return 1;
}

static int hex_lower(const char *s, size_t len, char *out)
{
    if (strlen(s) != len) return 0;
    for (size_t i = 0; i < len; i++) {
        if (!isxdigit((unsigned char)s[i])) return 0;
        out[i] = (char)tolower((unsigned char)s[i]);
    }
    out[len] = '\0';
    return 1;
}

static int listed_size(const cJSON *v, int64_t *out)
{
    if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > 9.0e15 ||
        v->valuedouble != (double)(int64_t)v->valuedouble)
        return 0;
    *out = (int64_t)v->valuedouble;
    return 1;
}

/* The listing's entry for path (a file), checked, into f. */
static int entry_file(const cJSON *e, const char *repo, const char *path, file *f, at_err *err)
{
    const cJSON *lfs = cJSON_GetObjectItemCaseSensitive(e, "lfs");
    const cJSON *oid, *size;
    f->path = path;
    f->lfs = cJSON_IsObject(lfs);
    if (f->lfs) {
        oid = cJSON_GetObjectItemCaseSensitive(lfs, "oid");
        size = cJSON_GetObjectItemCaseSensitive(lfs, "size");
    } else {
        oid = cJSON_GetObjectItemCaseSensitive(e, "oid");
        size = cJSON_GetObjectItemCaseSensitive(e, "size");
    }
    const char *h = cJSON_GetStringValue(oid);
    if (h && f->lfs && strncmp(h, "sha256:", 7) == 0) h += 7; /* some hubs spell the algorithm */
    if (!h || !hex_lower(h, f->lfs ? 64 : 40, f->hash))
        return at_err_set(err, AT_E_CORRUPT, "listing of %s: %s has no valid %s", repo, path,
                          f->lfs ? "lfs.oid (sha256)" : "oid (git blob sha1)");
    if (!listed_size(size, &f->size))
        return at_err_set(err, AT_E_CORRUPT, "listing of %s: %s has no valid size", repo, path);
    return 0;
}

/* The files to fetch, from the listing's JSON text. */
static int select_files(const at_hf_model_info *mi, const char *text, size_t len, file *out, int *n_out,
                        at_err *err)
{
    cJSON *root = cJSON_ParseWithLength(text, len);
    if (!cJSON_IsArray(root)) {
        cJSON_Delete(root);
        return at_err_set(err, AT_E_CORRUPT, "listing of %s is not a JSON array of files", mi->repo);
    }
    int rc = 0, n = 0;
    if (cJSON_GetArraySize(root) > LISTING_ENTRIES) {
        rc =
            at_err_set(err, AT_E_TOO_LARGE, "listing of %s: more than %d entries", mi->repo, LISTING_ENTRIES);
        goto out;
    }
    /* every path first: a listing that points outside the folder is refused
     * whole, whatever would be fetched */
    const cJSON *e;
    cJSON_ArrayForEach(e, root)
    {
        const char *p = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "path"));
        if (!cJSON_IsObject(e) || !p) {
            rc = at_err_set(err, AT_E_CORRUPT, "listing of %s: an entry without a path", mi->repo);
            goto out;
        }
        if (!safe_path(p)) {
            char shown[64];
            size_t k = 0;
            for (const char *c = p; *c && k + 1 < sizeof shown; c++)
                shown[k++] = isprint((unsigned char)*c) ? *c : '?';
            shown[k] = '\0';
            rc = at_err_set(err, AT_E_CORRUPT, "listing of %s: unsafe path '%s' refused", mi->repo, shown);
            goto out;
        }
    }
    const wanted *lists[2] = {k_common, NULL};
    size_t sizes[2] = {sizeof k_common / sizeof *k_common, 0};
    if (mi->kind == AT_HF_MODELS_VITS) {
        lists[0] = k_vits;
        sizes[0] = sizeof k_vits / sizeof *k_vits;
    } else if (mi->kind == AT_HF_MODELS_MARIAN) {
        lists[1] = k_marian;
        sizes[1] = sizeof k_marian / sizeof *k_marian;
    } else if (mi->kind == AT_HF_MODELS_NLLB) {
        lists[1] = k_nllb;
        sizes[1] = sizeof k_nllb / sizeof *k_nllb;
    } else {
        lists[1] = k_m2m;
        sizes[1] = sizeof k_m2m / sizeof *k_m2m;
    }
    static const wanted weights[] = {{"model.safetensors", 0}, {"pytorch_model.bin", 0}};
    int have_weights = 0;
    for (int l = 0; l < 3; l++) {
        const wanted *w = l < 2 ? lists[l] : weights;
        size_t nw = l < 2 ? sizes[l] : 2;
        for (size_t i = 0; i < nw; i++) {
            if (l == 2 && have_weights) break;
            const cJSON *hit = NULL;
            cJSON_ArrayForEach(e, root)
            {
                const char *t = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "type"));
                const char *p = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "path"));
                if (t && strcmp(t, "file") == 0 && strcmp(p, w[i].path) == 0) hit = e;
            }
            if (!hit) {
                if (w[i].required) {
                    rc = at_err_set(err, AT_E_CORRUPT, "%s (revision %s) has no %s", mi->repo, mi->revision,
                                    w[i].path);
                    goto out;
                }
                continue;
            }
            if (n == MAX_FILES) {
                rc = at_err_set(err, AT_E_ENGINE, "too many files");
                goto out;
            }
            if ((rc = entry_file(hit, mi->repo, w[i].path, &out[n], err)) < 0) goto out;
            n++;
            have_weights += l == 2;
        }
    }
    if (!have_weights) {
        rc = at_err_set(err, AT_E_CORRUPT, "%s (revision %s) has no model.safetensors or pytorch_model.bin",
                        mi->repo, mi->revision);
        goto out;
    }
    int64_t total = 0;
    for (int i = 0; i < n; i++) total += out[i].size;
    if (total > (int64_t)mi->max_mib << 20) {
        rc = at_err_set(err, AT_E_TOO_LARGE, "%s lists %.1f MiB of files, more than the %u MiB expected",
                        mi->repo, (double)total / 1048576.0, (unsigned)mi->max_mib);
        goto out;
    }
    *n_out = n;
out:
    cJSON_Delete(root);
    return rc;
}

/* ---- the pull ---------------------------------------------------------- */

static int check_file(const char *path, const file *f, const char *name, at_err *err)
{
    struct stat st;
    if (stat(path, &st) != 0) return at_err_set(err, AT_E_IO, "%s: %s", path, strerror(errno));
    if ((int64_t)st.st_size != f->size)
        return at_err_set(err, AT_E_CORRUPT, "%s/%s: %lld bytes, the listing says %lld; not installed", name,
                          f->path, (long long)st.st_size, (long long)f->size);
    char got[65];
    int rc = f->lfs ? at_sha256_file(path, got, err) : at_git_blob_sha1_file(path, got, err);
    if (rc < 0) return rc;
    if (strcmp(got, f->hash) != 0)
        return at_err_set(err, AT_E_CORRUPT,
                          "%s/%s does not match the listed %s: expected %s, got %s; not installed", name,
                          f->path, f->lfs ? "sha256" : "git blob sha1", f->hash, got);
    return 0;
}

static int join(char *out, size_t cap, const char *a, const char *b, const char *suffix, at_err *err)
{
    int n = snprintf(out, cap, "%s/%s%s", a, b, suffix);
    if (n < 0 || (size_t)n >= cap) return at_err_set(err, AT_E_INVALID, "models: path too long");
    return 0;
}

/* One file into the staging folder: kept when already verified there,
 * else downloaded (resuming FILE.part), checked and renamed. */
static int pull_file(const at_hf_model_info *mi, const char *base, const char *stage, const file *f,
                     int progress, at_err *err)
{
    char done[1280], part[1280], url[2048], label[160];
    struct stat st;
    int rc;
    if ((rc = join(done, sizeof done, stage, f->path, "", err)) < 0 ||
        (rc = join(part, sizeof part, stage, f->path, ".part", err)) < 0)
        return rc;
    if (stat(done, &st) == 0) {
        at_err e2;
        if (check_file(done, f, mi->name, &e2) == 0) return 0;
        unlink(done); /* the repository moved on, or the file was damaged */
    }
    /* a .part longer than the file cannot be resumed */
    if (stat(part, &st) == 0 && (int64_t)st.st_size > f->size) unlink(part);
    int n = snprintf(url, sizeof url, "%s/%s/resolve/%s/%s", base, mi->repo, mi->revision, f->path);
    if (n < 0 || (size_t)n >= sizeof url) return at_err_set(err, AT_E_INVALID, "models: URL too long");
    snprintf(label, sizeof label, "%s/%s", mi->name, f->path);
    if (progress) fprintf(stderr, "%s (%.1f MiB)\n", label, (double)f->size / 1048576.0);
    if ((rc = at_models_fetch(url, part, f->size, progress, label, err)) < 0) return rc;
    if ((rc = check_file(part, f, mi->name, err)) < 0) {
        unlink(part); /* a resumed download cannot be repaired: start afresh */
        return rc;
    }
    if (rename(part, done) != 0) return at_err_set(err, AT_E_IO, "rename %s: %s", part, strerror(errno));
    return 0;
}

static void append(char *out, size_t cap, size_t *k, const char *s, size_t n)
{
    if (*k + n >= cap) n = cap - 1 - *k;
    memcpy(out + *k, s, n);
    *k += n;
    out[*k] = '\0';
}

/* The names of the translation models (voices 0) or of the voices, those
 * that differ only after their last '-' as one "mms-tts-{eng,spa}" (the
 * whole table would not fit in an at_err). */
static void known_names(int voices, char *out, size_t cap)
{
    size_t k = 0;
    out[0] = '\0';
    for (size_t i = 0; i < N_HF;) {
        const char *a = k_hf[i].name, *dash = strrchr(a, '-');
        if ((k_hf[i].kind == AT_HF_MODELS_VITS) != voices) {
            i++;
            continue;
        }
        size_t stem = dash ? (size_t)(dash - a) + 1 : 0, j = i + 1;
        while (stem && j < N_HF && (k_hf[j].kind == AT_HF_MODELS_VITS) == voices &&
               strncmp(k_hf[j].name, a, stem) == 0 && !strchr(k_hf[j].name + stem, '-'))
            j++;
        if (k) append(out, cap, &k, ", ", 2);
        if (j - i == 1) {
            append(out, cap, &k, a, strlen(a));
        } else {
            append(out, cap, &k, a, stem);
            for (size_t m = i; m < j; m++) {
                append(out, cap, &k, m == i ? "{" : ",", 1);
                append(out, cap, &k, k_hf[m].name + stem, strlen(k_hf[m].name + stem));
            }
            append(out, cap, &k, "}", 1);
        }
        i = j;
    }
}

int at_hf_models_pull(const char *name, const at_hf_models_pull_opts *o, char *path, size_t cap, at_err *err)
{
    at_hf_models_pull_opts def = {NULL, 0, NULL};
    if (!o) o = &def;
    const at_hf_model_info *mi = at_hf_models_find(name);
    if (!mi) {
        char mt[400], voices[200];
        known_names(0, mt, sizeof mt);
        known_names(1, voices, sizeof voices);
        return at_err_set(err, AT_E_INVALID,
                          "unknown model '%.60s'; translation models: %s; neural voices: %s",
                          name ? name : "", mt, voices);
    }
    char dir[768], stage[1024];
    int rc;
    if (o->dir)
        snprintf(dir, sizeof dir, "%s", o->dir);
    else if ((rc = at_models_dir(dir, sizeof dir, err)) < 0)
        return rc;
    if ((rc = join(path, cap, dir, mi->name, "", err)) < 0 ||
        (rc = join(stage, sizeof stage, dir, mi->name, ".part", err)) < 0)
        return rc;
    struct stat st;
    if (stat(path, &st) == 0) {
        if (S_ISDIR(st.st_mode)) return 0; /* complete: installed only whole */
        return at_err_set(err, AT_E_IO, "%s exists and is not a folder", path);
    }

    const char *base = o->endpoint;
    if (!base || !*base) base = getenv("AT_HF_ENDPOINT");
    if (!base || !*base) base = AT_HF_DEFAULT_ENDPOINT;
    size_t bl = strlen(base);
    while (bl > 0 && base[bl - 1] == '/') bl--;
    char url[1024], host[768];
    if (bl >= sizeof host) return at_err_set(err, AT_E_INVALID, "models: endpoint too long");
    snprintf(host, sizeof host, "%.*s", (int)bl, base);
    int n = snprintf(url, sizeof url, "%s/api/models/%s/tree/%s", host, mi->repo, mi->revision);
    if (n < 0 || (size_t)n >= sizeof url) return at_err_set(err, AT_E_INVALID, "models: URL too long");

    membuf b = {NULL, 0, 0, 0};
    file files[MAX_FILES];
    int nf = 0;
    rc = fetch_listing(url, &b, err);
    if (rc == 0) rc = select_files(mi, b.p, b.n, files, &nf, err);
    free(b.p);
    if (rc < 0) return rc;

    int progress = o->progress < 0 ? isatty(2) : o->progress;
    if ((rc = at_models_mkdirs(stage, err)) < 0) return rc;
    for (int i = 0; i < nf; i++)
        if ((rc = pull_file(mi, host, stage, &files[i], progress, err)) < 0) return rc;
    if (rename(stage, path) != 0) return at_err_set(err, AT_E_IO, "rename %s: %s", stage, strerror(errno));
    return 0;
}
