/* test_models_hf.c - `models pull` of Hugging Face folders (translation
 * models and neural voices) against a loopback server (raw sockets) that
 * plays Hugging Face: a repository listing (/api/models/<repo>/tree/main)
 * and its files (/<repo>/resolve/main/<path>), the files being a
 * random-weight Marian folder (tests/common/nmt_folder.h) for Helsinki-NLP's
 * repositories and a VITS voice (tests/common/vits_folder.h: the vits-mini
 * oracle with MMS's English tokenizer) for facebook/mms-tts-*.  Checks the
 * table, the git blob and SHA-256 verification (a file that does not match
 * is not installed), listings that are not JSON, name paths outside the
 * folder or lack a required file, a resumed weight file, a complete folder
 * left alone, only the files the loaders read fetched, `--mt-models NAME`
 * and `--tts-models NAME` resolved through the cache, and the CLI's list,
 * path and pull. */
#include <dirent.h>
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
#include <curl/curl.h>

#include "client.h"
#include "engines/asr/whisper/models.h"
#include "engines/tts/vits/model.h"
#include "engines/tts/vits/tokenizer.h"
#include "fake_http.h"
#include "nmt_folder.h"
#include "services/app.h"
#include "tools/hf_models.h"
#include "tools/tools.h"
#include "vits_folder.h"

enum { LIST_GOOD, LIST_NOT_JSON, LIST_DOTDOT, LIST_ABSOLUTE, LIST_BAD_OID };

/* the served repositories: these files of the generated folders */
#define MAXF 6
typedef struct repo {
    const char *prefix; /* of the repository's name: any such repository is this one */
    int nf;
    const char *files[MAXF];
    int lfs[MAXF];
    unsigned char *data[MAXF];
    size_t len[MAXF];
    char hash[MAXF][65];
    int hits[MAXF];
} repo;

enum { R_MARIAN, R_VITS, NR };
#define NF_MARIAN 6
#define NF_VITS   4

typedef struct server {
    at_fake_http *http;
    int port;
    repo r[NR];
    int listing;      /* LIST_* */
    const char *omit; /* this file is not in the listing */
    const char *cut;  /* this file: close after cut_after body bytes */
    size_t cut_after;
    const char *corrupt; /* this file: one byte flipped */
    long last_range;     /* of the last file request; -1: none */
    int listings, files, unknown;
} server;

static server S = {
    .r = {{"Helsinki-NLP/",
           NF_MARIAN,
           {"config.json", "tokenizer_config.json", "vocab.json", "source.spm", "target.spm",
            "model.safetensors"},
           {0, 0, 0, 1, 1, 1}},
          {"facebook/mms-tts-",
           NF_VITS,
           {"config.json", "vocab.json", "tokenizer_config.json", "model.safetensors"},
           {0, 0, 0, 1}}},
};
static repo *const M = &S.r[R_MARIAN], *const V = &S.r[R_VITS];
static char tmp[] = "/tmp/at-hf-models-XXXXXX";
static char cache[512], url[128], *src_dir, *voice_dir;

static void send_listing(server *s, const repo *r, int c)
{
    char body[8192];
    size_t n = 0;
    if (s->listing == LIST_NOT_JSON) {
        at_fake_http_reply(c, "200 OK", "<html>rate limited</html>", 25);
        return;
    }
    n += (size_t)snprintf(body + n, sizeof body - n, "[");
    for (int i = 0; i < r->nf; i++) {
        if (s->omit && strcmp(r->files[i], s->omit) == 0) continue;
        const char *h = r->hash[i];
        if (s->listing == LIST_BAD_OID && i == 0) h = "0123456789abcdef0123456789abcdef01234567";
        if (r->lfs[i])
            n += (size_t)snprintf(body + n, sizeof body - n,
                                  "{\"type\":\"file\",\"oid\":\"%040d\",\"size\":%zu,\"path\":\"%s\","
                                  "\"lfs\":{\"oid\":\"%s\",\"size\":%zu,\"pointerSize\":134}},",
                                  i, r->len[i], r->files[i], h, r->len[i]);
        else
            n += (size_t)snprintf(body + n, sizeof body - n,
                                  "{\"type\":\"file\",\"oid\":\"%s\",\"size\":%zu,\"path\":\"%s\"},", h,
                                  r->len[i], r->files[i]);
    }
    /* what is never fetched: the model card, other frameworks' weights, a
     * subfolder */
    n += (size_t)snprintf(body + n, sizeof body - n,
                          "{\"type\":\"file\",\"oid\":\"%040d\",\"size\":5,\"path\":\"README.md\"},"
                          "{\"type\":\"file\",\"oid\":\"%040d\",\"size\":9,\"path\":\"tf_model.h5\","
                          "\"lfs\":{\"oid\":\"%064d\",\"size\":9,\"pointerSize\":134}},"
                          "{\"type\":\"directory\",\"oid\":\"%040d\",\"size\":0,\"path\":\"onnx\"}",
                          6, 7, 7, 8);
    if (r == V) /* a translation model's file, which a voice does not read */
        n += (size_t)snprintf(
            body + n, sizeof body - n,
            ",{\"type\":\"file\",\"oid\":\"%040d\",\"size\":4,\"path\":\"generation_config.json\"}", 5);
    if (s->listing == LIST_DOTDOT)
        n += (size_t)snprintf(body + n, sizeof body - n,
                              ",{\"type\":\"file\",\"oid\":\"%040d\",\"size\":3,\"path\":\"../x\"}", 1);
    if (s->listing == LIST_ABSOLUTE)
        n +=
            (size_t)snprintf(body + n, sizeof body - n,
                             ",{\"type\":\"file\",\"oid\":\"%040d\",\"size\":3,\"path\":\"/etc/passwd\"}", 1);
    n += (size_t)snprintf(body + n, sizeof body - n, "]");
    at_fake_http_reply(c, "200 OK", body, n);
}

/* The repository a path names after its prefix ("/api/models/", "/"). */
static repo *repo_of(server *s, const char *p)
{
    for (int i = 0; i < NR; i++)
        if (strncmp(p, s->r[i].prefix, strlen(s->r[i].prefix)) == 0) return &s->r[i];
    return NULL;
}

static void serve_one(void *user, int c, const char *req)
{
    server *s = user;
    char path[1024];
    if (sscanf(req, "GET %1023s ", path) != 1) {
        at_fake_http_reply(c, "400 Bad Request", "", 0);
        return;
    }
    repo *r = strncmp(path, "/api/models/", 12) == 0 ? repo_of(s, path + 12) : NULL;
    if (r && strstr(path, "/tree/main")) {
        s->listings++;
        send_listing(s, r, c);
        return;
    }
    const char *rs = strstr(path, "/resolve/main/");
    int f = -1;
    r = repo_of(s, path + 1);
    if (r && rs)
        for (int i = 0; i < r->nf; i++)
            if (strcmp(rs + 14, r->files[i]) == 0) f = i;
    if (f < 0) {
        s->unknown++;
        at_fake_http_reply(c, "404 Not Found", "", 0);
        return;
    }
    s->files++;
    r->hits[f]++;
    s->last_range = at_fake_http_range(req);
    at_fake_http_send_file(c, req, r->data[f], r->len[f],
                           s->cut && strcmp(s->cut, r->files[f]) == 0 ? s->cut_after : 0,
                           s->corrupt && strcmp(s->corrupt, r->files[f]) == 0);
}

static int write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    int ok = fputs(text, f) >= 0;
    return fclose(f) == 0 && ok ? 0 : -1;
}

/* The content and hashes of r's files, from the folder dir. */
static int load_repo(repo *r, const char *dir)
{
    at_err err;
    for (int i = 0; i < r->nf; i++) {
        char p[1024];
        snprintf(p, sizeof p, "%s/%s", dir, r->files[i]);
        if (!(r->data[i] = at_test_read_file(p, &r->len[i]))) {
            fprintf(stderr, "%s missing\n", p);
            return -1;
        }
        int rc = r->lfs[i] ? at_sha256_file(p, r->hash[i], &err) : at_git_blob_sha1_file(p, r->hash[i], &err);
        if (rc) return -1;
    }
    return 0;
}

static int setup(void **st)
{
    (void)st;
    if (!mkdtemp(tmp)) return -1;
    snprintf(cache, sizeof cache, "%s/cache", tmp);
    if (!(src_dir = at_test_nmt_folder("marian", "opus-mt-en-es", "uni_nfkc"))) return -1;
    if (!(voice_dir = at_test_vits_folder("mms-tts-eng", "oracles/vits-mini", "vits/tokenizer/mms-eng")))
        return -1;
    char p[1024];
    snprintf(p, sizeof p, "%s/tokenizer_config.json", src_dir);
    if (write_file(p, "{\"source_lang\": \"en\", \"target_lang\": \"es\"}\n")) return -1;
    if (load_repo(M, src_dir) || load_repo(V, voice_dir)) return -1;
    if (!(S.http = at_fake_http_start(serve_one, &S, &S.port))) return -1;
    snprintf(url, sizeof url, "http://127.0.0.1:%d/", S.port); /* the trailing '/' is dropped */
    setenv("AT_MODELS_DIR", cache, 1);
    unsetenv("AT_HF_ENDPOINT");
    curl_global_init(CURL_GLOBAL_DEFAULT);
    return 0;
}

static int teardown(void **st)
{
    (void)st;
    at_fake_http_stop(S.http);
    for (int r = 0; r < NR; r++)
        for (int i = 0; i < S.r[r].nf; i++) free(S.r[r].data[i]);
    curl_global_cleanup();
    at_test_nmt_folder_remove(src_dir);
    at_test_vits_folder_remove(voice_dir);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    return system(cmd) == 0 ? 0 : -1;
}

static int exists(const char *rel)
{
    char p[1024];
    struct stat st;
    snprintf(p, sizeof p, "%s/%s", cache, rel);
    return stat(p, &st) == 0;
}

/* Every file of r is in dir with its listed hash, and nothing else. */
static void assert_installed(const repo *r, const char *dir)
{
    at_err err;
    for (int i = 0; i < r->nf; i++) {
        char f[1280], got[65];
        snprintf(f, sizeof f, "%s/%s", dir, r->files[i]);
        assert_int_equal(r->lfs[i] ? at_sha256_file(f, got, &err) : at_git_blob_sha1_file(f, got, &err), 0);
        assert_string_equal(got, r->hash[i]);
    }
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        if (e->d_name[0] != '.') n++;
    closedir(d);
    assert_int_equal(n, r->nf); /* no README.md, tf_model.h5, onnx/ */
}

static void test_table_and_hashes(void **st)
{
    (void)st;
    size_t n;
    const at_hf_model_info *t = at_hf_models_table(&n);
    assert_true(n >= 17);
    int marian = 0, voices = 0;
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < i; j++) assert_string_not_equal(t[i].name, t[j].name);
        assert_null(at_models_find(t[i].name)); /* no clash with a file name of the Whisper table */
        assert_non_null(strchr(t[i].repo, '/'));
        assert_true(t[i].revision && *t[i].revision);
        assert_true(t[i].max_mib > 0);
        if (t[i].kind == AT_HF_MODELS_MARIAN) {
            /* the engine reads the pair from the folder's name: its last
             * two parts, codes of two or three letters */
            const char *last = strrchr(t[i].name, '-'), *prev = last - 1;
            while (prev > t[i].name && prev[-1] != '-') prev--;
            assert_non_null(strstr(t[i].name, "opus-mt-"));
            assert_true(last - prev >= 2 && last - prev <= 3);
            assert_true(strlen(last + 1) >= 2 && strlen(last + 1) <= 3);
            assert_non_null(strstr(t[i].repo, t[i].name));
            marian++;
        }
        if (t[i].kind == AT_HF_MODELS_VITS) {
            /* the engine names a voice after its folder: the repository's */
            assert_string_equal(strrchr(t[i].repo, '/') + 1, t[i].name);
            assert_true(t[i].max_mib >= 200 && t[i].max_mib <= 400);
            voices++;
        }
    }
    assert_true(marian >= 15);
    assert_int_equal(voices, 13);
    assert_string_equal(at_hf_models_kind_name(AT_HF_MODELS_VITS), "vits");
    assert_string_equal(at_hf_models_find("mms-tts-ron")->repo, "facebook/mms-tts-ron");
    assert_string_equal(at_hf_models_find("vits-vctk")->repo, "kakao-enterprise/vits-vctk");
    assert_int_equal(at_hf_models_find("nllb-200-distilled-600M")->kind, AT_HF_MODELS_NLLB);
    assert_string_equal(at_hf_models_find("m2m100_418M")->repo, "facebook/m2m100_418M");
    /* an unknown name lists the known ones */
    at_err err;
    char p[1024];
    at_hf_models_pull_opts o = {url, 0, NULL};
    assert_int_equal(at_hf_models_pull("opus-mt-xx-yy", &o, p, sizeof p, &err), AT_E_INVALID);
    assert_non_null(strstr(err.msg, "opus-mt-xx-yy"));
    assert_non_null(strstr(err.msg, "opus-mt-en-es"));
    assert_non_null(strstr(err.msg, "m2m100_418M"));
    /* the voices, grouped to fit: the message is not cut */
    const char *v =
        strstr(err.msg, "; neural voices: mms-tts-{eng,spa,fra,deu,ita,por,nld,pol,ron,swe,fin}, ");
    if (!v) fprintf(stderr, "%s\n", err.msg);
    assert_non_null(v);
    assert_string_equal(strrchr(err.msg, ','), ",vctk}");
    assert_int_equal(S.listings + S.files, 0);
    /* git's blob ids: `echo hello | git hash-object --stdin`, the empty blob */
    char f[700], hex[41];
    snprintf(f, sizeof f, "%s/hello", tmp);
    assert_int_equal(write_file(f, "hello\n"), 0);
    assert_int_equal(at_git_blob_sha1_file(f, hex, &err), 0);
    assert_string_equal(hex, "ce013625030ba8dba906f756967f9e9ca394464a");
    assert_int_equal(write_file(f, ""), 0);
    assert_int_equal(at_git_blob_sha1_file(f, hex, &err), 0);
    assert_string_equal(hex, "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391");
}

/* Listings refused before any file is asked for. */
static void test_bad_listings(void **st)
{
    (void)st;
    at_err err;
    char p[1024];
    at_hf_models_pull_opts o = {url, 0, NULL};
    static const struct {
        int mode;
        const char *says;
    } cases[] = {
        {LIST_NOT_JSON, "not a JSON array"},
        {LIST_DOTDOT, "unsafe path '../x'"},
        {LIST_ABSOLUTE, "unsafe path '/etc/passwd'"},
        {LIST_GOOD, "Helsinki-NLP/opus-mt-en-es (revision main) has no source.spm"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        S.listing = cases[i].mode;
        S.omit = cases[i].mode == LIST_GOOD ? "source.spm" : NULL;
        assert_int_equal(at_hf_models_pull("opus-mt-en-es", &o, p, sizeof p, &err), AT_E_CORRUPT);
        if (!strstr(err.msg, cases[i].says)) fprintf(stderr, "%s\n", err.msg);
        assert_non_null(strstr(err.msg, cases[i].says));
    }
    S.listing = LIST_GOOD;
    S.omit = NULL;
    assert_int_equal(S.listings, 4);
    assert_int_equal(S.files, 0);
    assert_false(exists("opus-mt-en-es"));
}

/* Content that does not match the listing is not installed. */
static void test_mismatch_refused(void **st)
{
    (void)st;
    at_err err;
    char p[1024];
    at_hf_models_pull_opts o = {url, 0, NULL};
    /* an LFS file (sha256) */
    S.corrupt = "source.spm";
    assert_int_equal(at_hf_models_pull("opus-mt-en-es", &o, p, sizeof p, &err), AT_E_CORRUPT);
    S.corrupt = NULL;
    assert_non_null(strstr(err.msg, "opus-mt-en-es/source.spm does not match the listed sha256"));
    assert_false(exists("opus-mt-en-es"));
    assert_false(exists("opus-mt-en-es.part/source.spm"));
    assert_false(exists("opus-mt-en-es.part/source.spm.part"));
    /* a git blob (sha1): the listing's id is not the content's */
    S.listing = LIST_BAD_OID;
    assert_int_equal(at_hf_models_pull("opus-mt-en-es", &o, p, sizeof p, &err), AT_E_CORRUPT);
    S.listing = LIST_GOOD;
    assert_non_null(strstr(err.msg, "opus-mt-en-es/config.json does not match the listed git blob sha1"));
    assert_false(exists("opus-mt-en-es"));
    assert_false(exists("opus-mt-en-es.part/config.json"));
    assert_int_equal(S.unknown, 0); /* tf_model.h5 was never asked for */
}

static void test_interrupted_then_resumed(void **st)
{
    (void)st;
    at_err err;
    char p[1024], want[1024];
    at_hf_models_pull_opts o = {url, 0, NULL};
    const size_t w = M->len[NF_MARIAN - 1];
    S.cut = "model.safetensors";
    S.cut_after = w / 3;
    assert_int_equal(at_hf_models_pull("opus-mt-en-es", &o, p, sizeof p, &err), AT_E_IO);
    assert_non_null(strstr(err.msg, "resume"));
    assert_false(exists("opus-mt-en-es"));
    assert_true(exists("opus-mt-en-es.part/model.safetensors.part"));
    assert_true(exists("opus-mt-en-es.part/source.spm")); /* verified, kept */
    /* cut again: the request resumed where the first one stopped */
    assert_int_equal(at_hf_models_pull("opus-mt-en-es", &o, p, sizeof p, &err), AT_E_IO);
    assert_int_equal(S.last_range, (long)(w / 3));
    S.cut = NULL;
    int hits_config = M->hits[0], files = S.files;
    assert_int_equal(at_hf_models_pull("opus-mt-en-es", &o, p, sizeof p, &err), 0);
    assert_int_equal(S.last_range, (long)(2 * (w / 3)));
    assert_int_equal(S.files, files + 1); /* only the weights: the rest was in */
    assert_int_equal(M->hits[0], hits_config);
    snprintf(want, sizeof want, "%s/opus-mt-en-es", cache);
    assert_string_equal(p, want);
    assert_false(exists("opus-mt-en-es.part"));
    assert_false(exists("opus-mt-en-es/model.safetensors.part"));
    assert_false(exists("opus-mt-en-es/tf_model.h5"));
    assert_installed(M, p);
    /* complete: a second pull asks nothing */
    int listings = S.listings;
    files = S.files;
    assert_int_equal(at_hf_models_pull("opus-mt-en-es", &o, p, sizeof p, &err), 0);
    assert_int_equal(S.listings, listings);
    assert_int_equal(S.files, files);
}

/* A neural voice: only what the VITS loaders read (no generation config),
 * vocab.json required; the folder loads, and `--tts-models NAME` finds it
 * in the cache. */
static void test_vits_voice(void **st)
{
    (void)st;
    at_err err;
    char p[1024], want[1024];
    at_hf_models_pull_opts o = {url, 0, NULL};
    int files = S.files, unknown = S.unknown;
    S.omit = "vocab.json";
    assert_int_equal(at_hf_models_pull("mms-tts-eng", &o, p, sizeof p, &err), AT_E_CORRUPT);
    S.omit = NULL;
    assert_non_null(strstr(err.msg, "facebook/mms-tts-eng (revision main) has no vocab.json"));
    assert_int_equal(S.files, files);
    assert_false(exists("mms-tts-eng"));
    assert_false(exists("mms-tts-eng.part"));

    assert_int_equal(at_hf_models_pull("mms-tts-eng", &o, p, sizeof p, &err), 0);
    snprintf(want, sizeof want, "%s/mms-tts-eng", cache);
    assert_string_equal(p, want);
    assert_int_equal(S.files, files + NF_VITS);
    assert_int_equal(S.unknown, unknown); /* README.md, tf_model.h5, generation_config.json never asked for */
    for (int i = 0; i < NF_VITS; i++) assert_int_equal(V->hits[i], 1);
    assert_false(exists("mms-tts-eng.part"));
    assert_installed(V, p);

    at_vits_tokenizer *t = at_vits_tokenizer_load(p, &err);
    if (!t) fprintf(stderr, "%s\n", err.msg);
    assert_non_null(t);
    assert_string_equal(at_vits_tokenizer_language(t), "eng");
    assert_false(at_vits_tokenizer_phonemizes(t));
    at_vits_tokenizer_free(t);
    at_vits_model *m = at_vits_model_load(p, &err);
    if (!m) fprintf(stderr, "%s\n", err.msg);
    assert_non_null(m);
    assert_int_equal(at_vits_model_hparams(m)->sampling_rate, 16000);
    at_vits_model_free(m);

    /* --tts-models NAME */
    assert_int_equal(at_models_resolve_dir("mms-tts-eng", p, sizeof p, &err), 0);
    assert_string_equal(p, want);
    at_app_config c;
    at_app_config_defaults(&c);
    c.kinds = AT_APP_TTS;
    c.loaders = &at_app_local_loaders;
    c.tts_models = "mms-tts-eng";
    c.threads = 1;
    at_err_clear(&err);
    at_app *app = at_app_new(&c, NULL, NULL, &err);
    assert_non_null(app);
    int rc = at_app_load(app, &err);
    if (rc) fprintf(stderr, "%s\n", err.msg);
    assert_int_equal(rc, 0);
    at_tts_engine *e = NULL;
    assert_non_null(at_app_find_voice(app, "mms-tts-eng", &e));
    at_app_free(app);
    /* a voice not pulled: how to pull it */
    assert_int_equal(at_models_resolve_dir("mms-tts-fra", p, sizeof p, &err), AT_E_IO);
    assert_non_null(strstr(err.msg, "audio-translator models pull mms-tts-fra"));
}

/* --mt-models NAME: the cache's folder, or how to pull it. */
static void test_load_by_name(void **st)
{
    (void)st;
    at_err err;
    char p[1024], want[1024];
    snprintf(want, sizeof want, "%s/opus-mt-en-es", cache);
    assert_int_equal(at_models_resolve_dir("opus-mt-en-es", p, sizeof p, &err), 0);
    assert_string_equal(p, want);
    assert_int_equal(at_models_resolve_dir(src_dir, p, sizeof p, &err), 0); /* a folder stays one */
    assert_string_equal(p, src_dir);
    assert_int_equal(at_models_resolve_dir("opus-mt-fr-en", p, sizeof p, &err), AT_E_IO);
    assert_non_null(strstr(err.msg, "audio-translator models pull opus-mt-fr-en"));

    const char *lists[] = {"opus-mt-en-es", "opus-mt-en-es,opus-mt-fr-en"};
    for (int i = 0; i < 2; i++) {
        at_app_config c;
        at_app_config_defaults(&c);
        c.kinds = AT_APP_MT;
        c.loaders = &at_app_local_loaders;
        c.mt_models = lists[i];
        c.apertium_modes = tmp;
        c.threads = 1;
        at_err_clear(&err);
        at_app *app = at_app_new(&c, NULL, NULL, &err);
        assert_non_null(app);
        int rc = at_app_load(app, &err);
        if (i == 0) {
            if (rc) fprintf(stderr, "%s\n", err.msg);
            assert_int_equal(rc, 0);
            assert_non_null(at_app_mt(app));
        } else {
            assert_int_not_equal(rc, 0);
            assert_non_null(strstr(err.msg, "models pull opus-mt-fr-en"));
        }
        at_app_free(app);
    }
}

static int run(const char *cmd, char *out, size_t cap)
{
    FILE *f = popen(cmd, "r");
    if (!f) return -1;
    size_t n = fread(out, 1, cap - 1, f);
    out[n] = '\0';
    return pclose(f);
}

static void test_cli(void **st)
{
    (void)st;
    const char *bin = getenv("AT_BUILD_DIR");
    static char cmd[1024], out[16384];
    snprintf(cmd, sizeof cmd, "%s/audio-translator models list", bin);
    assert_int_equal(run(cmd, out, sizeof out), 0);
    const char *l = strstr(out, "\nopus-mt-en-es ");
    assert_non_null(l);
    assert_true(strstr(l, "marian") < strchr(l + 1, '\n') && strstr(l, "cached") < strchr(l + 1, '\n'));
    l = strstr(out, "\nnllb-200-distilled-600M ");
    assert_non_null(l);
    assert_true(strstr(l, "pullable") < strchr(l + 1, '\n'));
    assert_non_null(strstr(out, "facebook/nllb-200-distilled-600M"));
    /* the voices under their own heading, after the translation models */
    const char *h = strstr(out, "\nneural voices (Hugging Face folders; --tts-models NAME):\n");
    assert_non_null(h);
    assert_true(strstr(out, "\ntranslation models (") < h && l < h);
    l = strstr(out, "\nmms-tts-eng ");
    assert_true(l > h);
    assert_true(strstr(l, "vits") < strchr(l + 1, '\n') && strstr(l, "cached") < strchr(l + 1, '\n'));
    l = strstr(out, "\nvits-ljs ");
    assert_true(l > h);
    assert_true(strstr(l, "pullable") < strchr(l + 1, '\n'));
    assert_true(strstr(l, "kakao-enterprise/vits-ljs") < strchr(l + 1, '\n'));
    snprintf(cmd, sizeof cmd, "%s/audio-translator models path mms-tts-eng", bin);
    assert_int_equal(run(cmd, out, sizeof out), 0);
    char want[1024];
    snprintf(want, sizeof want, "%s/mms-tts-eng\n", cache);
    assert_string_equal(out, want);
    snprintf(cmd, sizeof cmd, "%s/audio-translator models path opus-mt-en-es", bin);
    assert_int_equal(run(cmd, out, sizeof out), 0);
    snprintf(want, sizeof want, "%s/opus-mt-en-es\n", cache);
    assert_string_equal(out, want);
    /* a pull through the CLI, the endpoint from the environment */
    snprintf(cmd, sizeof cmd, "AT_HF_ENDPOINT=%s %s/audio-translator models pull opus-mt-de-en --quiet", url,
             bin);
    assert_int_equal(run(cmd, out, sizeof out), 0);
    snprintf(want, sizeof want, "%s/opus-mt-de-en\n", cache);
    assert_string_equal(out, want);
    assert_true(exists("opus-mt-de-en/model.safetensors"));
    snprintf(cmd, sizeof cmd, "%s/audio-translator models pull nosuch --hf-endpoint %s 2>&1", bin, url);
    assert_int_not_equal(run(cmd, out, sizeof out), 0);
    assert_non_null(strstr(out, "unknown model 'nosuch'"));
    assert_non_null(strstr(out, "opus-mt-en-es"));
    assert_non_null(strstr(out, "large-v3"));
    assert_non_null(strstr(out, "\nneural voices: mms-tts-eng "));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table_and_hashes),
        cmocka_unit_test(test_bad_listings),
        cmocka_unit_test(test_mismatch_refused),
        cmocka_unit_test(test_interrupted_then_resumed),
        cmocka_unit_test(test_vits_voice),
        cmocka_unit_test(test_load_by_name),
        cmocka_unit_test(test_cli),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
