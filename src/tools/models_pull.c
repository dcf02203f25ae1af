/* models_pull.c - downloading models into the cache (libcurl) and checking
 * them (SHA-256 and git blob ids, OpenSSL); the resumable download is
 * shared with the Hugging Face folders (hf_models.c).  Kept apart from
 * models.c so a binary that only resolves model names (asr_streaming)
 * links neither library. */
#include "engines/asr/whisper/models.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/evp.h>

#include "core/config.h"
#include "tools/hf_models.h"
#include "tools/tools.h"

/* The digest md of a file, after prefix (plen bytes), as lowercase hex. */
static int digest_file(const char *path, const EVP_MD *md, const char *prefix, size_t plen, char *hex,
                       at_err *err)
{
    FILE *f = fopen(path, "rb");
    if (!f) return at_err_set(err, AT_E_IO, "%s: %s", path, strerror(errno));
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    unsigned char *buf = malloc(1 << 20);
    int rc = 0;
    if (!c || !buf || EVP_DigestInit_ex(c, md, NULL) != 1 || EVP_DigestUpdate(c, prefix, plen) != 1) {
        rc = at_err_set(err, AT_E_NOMEM, "digest: cannot start");
        goto out;
    }
    size_t n;
    while ((n = fread(buf, 1, 1 << 20, f)) > 0)
        if (EVP_DigestUpdate(c, buf, n) != 1) {
            rc = at_err_set(err, AT_E_ENGINE, "digest failed");
            goto out;
        }
    if (ferror(f)) {
        rc = at_err_set(err, AT_E_IO, "%s: read error", path);
        goto out;
    }
    unsigned char out[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (EVP_DigestFinal_ex(c, out, &len) != 1 || (int)len != EVP_MD_size(md)) {
        rc = at_err_set(err, AT_E_ENGINE, "digest failed");
        goto out;
    }
    for (unsigned int i = 0; i < len; i++) snprintf(hex + 2 * i, 3, "%02x", out[i]);
out:
    free(buf);
    EVP_MD_CTX_free(c);
    fclose(f);
    return rc;
}

int at_sha256_file(const char *path, char hex[65], at_err *err)
{
    return digest_file(path, EVP_sha256(), "", 0, hex, err);
}

int at_git_blob_sha1_file(const char *path, char hex[41], at_err *err)
{
    struct stat st;
    if (stat(path, &st) != 0) return at_err_set(err, AT_E_IO, "%s: %s", path, strerror(errno));
    /* git hashes "blob <size>" and a NUL before the content */
    char prefix[48];
    int n = snprintf(prefix, sizeof prefix, "blob %lld", (long long)st.st_size);
    return digest_file(path, EVP_sha1(), prefix, (size_t)n + 1, hex, err);
}

/* ---- download --------------------------------------------------------- */

typedef struct dl {
    CURL *curl;
    FILE *f;
    curl_off_t have;    /* bytes already in the .part file before this request */
    curl_off_t written; /* bytes written by this request */
    curl_off_t max;     /* cap on the file size */
    int checked;        /* the status code was looked at */
    int restarted;      /* server ignored the Range: the file starts over */
    int too_big;
    int progress;
    double last_draw;
} dl;

static size_t dl_write(char *p, size_t sz, size_t n, void *u)
{
    dl *d = u;
    size_t len = sz * n;
    if (!d->checked) {
        /* A 200 to a ranged request is the whole file: start over. */
        long code = 0;
        curl_easy_getinfo(d->curl, CURLINFO_RESPONSE_CODE, &code);
        if (code == 200 && d->have > 0) {
            if (fflush(d->f) != 0 || ftruncate(fileno(d->f), 0) != 0 || fseek(d->f, 0, SEEK_SET) != 0)
                return 0;
            d->have = 0;
            d->restarted = 1;
        }
        d->checked = 1;
    }
    if (d->have + d->written + (curl_off_t)len > d->max) {
        d->too_big = 1;
        return 0; /* aborts the transfer */
    }
    if (fwrite(p, 1, len, d->f) != len) return 0;
    d->written += (curl_off_t)len;
    return len;
}

static double mono_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int dl_progress(void *u, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow)
{
    (void)ultotal;
    (void)ulnow;
    dl *d = u;
    if (!d->progress) return 0;
    double t = mono_now();
    if (t - d->last_draw < 0.2 && !(dltotal > 0 && dlnow == dltotal)) return 0;
    d->last_draw = t;
    double have = (double)(d->have + dlnow), total = (double)(d->have + dltotal);
    char bar[31];
    int fill = dltotal > 0 && total > 0 ? (int)(30.0 * have / total) : 0;
    if (fill > 30) fill = 30;
    for (int i = 0; i < 30; i++) bar[i] = i < fill ? '#' : '.';
    bar[30] = '\0';
    if (dltotal > 0)
        fprintf(stderr, "\r[%s] %6.1f / %.1f MiB %3.0f%%", bar, have / 1048576.0, total / 1048576.0,
                100.0 * have / total);
    else
        fprintf(stderr, "\r[%s] %6.1f MiB", bar, have / 1048576.0);
    return 0;
}

static int valid_hex(const char *h)
{
    if (!h || strlen(h) != 64) return 0;
    for (int i = 0; i < 64; i++)
        if (!isxdigit((unsigned char)h[i])) return 0;
    return 1;
}

int at_models_mkdirs(const char *path, at_err *err)
{
    char tmp[1024];
    if (snprintf(tmp, sizeof tmp, "%s", path) >= (int)sizeof tmp)
        return at_err_set(err, AT_E_INVALID, "models: path too long");
    for (char *p = tmp + 1; *p; p++)
        if (*p == '/') {
            *p = '\0';
            if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
                return at_err_set(err, AT_E_IO, "mkdir %s: %s", tmp, strerror(errno));
            *p = '/';
        }
    if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
        return at_err_set(err, AT_E_IO, "mkdir %s: %s", tmp, strerror(errno));
    return 0;
}

int at_models_fetch(const char *url, const char *part, int64_t max_bytes, int progress, const char *label,
                    at_err *err)
{
    FILE *f = fopen(part, "ab");
    if (!f) return at_err_set(err, AT_E_IO, "%s: %s", part, strerror(errno));
    long have = ftell(f);
    dl d = {0};
    d.f = f;
    d.have = have > 0 ? have : 0;
    d.max = (curl_off_t)max_bytes;
    d.progress = progress;
    d.curl = curl_easy_init();
    if (!d.curl) {
        fclose(f);
        return at_err_set(err, AT_E_NOMEM, "curl: cannot start");
    }
    if (d.have > 0 && d.progress)
        fprintf(stderr, "resuming %s at %.1f MiB\n", label, (double)d.have / 1048576.0);
    char errbuf[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(d.curl, CURLOPT_URL, url);
    curl_easy_setopt(d.curl, CURLOPT_FOLLOWLOCATION, 1L); /* HF redirects to its CDN */
    curl_easy_setopt(d.curl, CURLOPT_MAXREDIRS, 10L);
    curl_easy_setopt(d.curl, CURLOPT_FAILONERROR, 1L);
    curl_easy_setopt(d.curl, CURLOPT_WRITEFUNCTION, dl_write);
    curl_easy_setopt(d.curl, CURLOPT_WRITEDATA, &d);
    curl_easy_setopt(d.curl, CURLOPT_XFERINFOFUNCTION, dl_progress);
    curl_easy_setopt(d.curl, CURLOPT_XFERINFODATA, &d);
    curl_easy_setopt(d.curl, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(d.curl, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(d.curl, CURLOPT_USERAGENT, "audio-translator/0.1");
    curl_easy_setopt(d.curl, CURLOPT_MAXFILESIZE_LARGE, d.max);
    /* a stalled server: give up after 60 s below 1 byte/s */
    curl_easy_setopt(d.curl, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(d.curl, CURLOPT_LOW_SPEED_TIME, 60L);
    if (d.have > 0) curl_easy_setopt(d.curl, CURLOPT_RESUME_FROM_LARGE, d.have);
    CURLcode cr = curl_easy_perform(d.curl);
    long code = 0;
    curl_easy_getinfo(d.curl, CURLINFO_RESPONSE_CODE, &code);
    curl_easy_cleanup(d.curl);
    if (d.progress) fputc('\n', stderr);
    if (fclose(f) != 0 && cr == CURLE_OK) return at_err_set(err, AT_E_IO, "%s: %s", part, strerror(errno));
    /* 416: we asked past the end, i.e. the .part file is already complete */
    int complete_part = (cr == CURLE_HTTP_RETURNED_ERROR && code == 416 && d.have > 0);
    if (d.too_big || cr == CURLE_FILESIZE_EXCEEDED) {
        unlink(part);
        return at_err_set(err, AT_E_TOO_LARGE, "%s: larger than the %.1f MiB expected for '%s'", url,
                          (double)max_bytes / 1048576.0, label);
    }
    if (cr != CURLE_OK && !complete_part) {
        const char *why = errbuf[0] ? errbuf : curl_easy_strerror(cr);
        if (d.have + d.written > 0)
            return at_err_set(err, AT_E_IO,
                              "download of %s failed after %.1f MiB: %s (run the pull again to resume)", url,
                              (double)(d.have + d.written) / 1048576.0, why);
        /* nothing arrived: no empty .part for `models list` to call partial */
        unlink(part);
        return at_err_set(err, AT_E_IO, "download of %s failed: %s", url, why);
    }
    return 0;
}

int at_models_pull(const char *name, const at_models_pull_opts *o, char *path, size_t cap, at_err *err)
{
    at_models_pull_opts def = {0};
    if (!o) o = &def;
    const at_model_info *mi = at_models_find(name);
    if (!mi)
        return at_err_set(err, AT_E_INVALID, "unknown model '%s' (see 'audio-translator models list')",
                          name ? name : "");
    char want[65] = "";
    if (o->sha256) {
        if (!valid_hex(o->sha256)) return at_err_set(err, AT_E_INVALID, "--sha256 needs 64 hex digits");
        for (int i = 0; i < 64; i++) want[i] = (char)tolower((unsigned char)o->sha256[i]);
        want[64] = '\0';
    } else {
        snprintf(want, sizeof want, "%s", mi->sha256); /* every entry has one (tested) */
    }
    char dir[768], part[1024];
    int rc;
    if (o->dir)
        snprintf(dir, sizeof dir, "%s", o->dir);
    else if ((rc = at_models_dir(dir, sizeof dir, err)) < 0)
        return rc;
    if ((rc = at_models_mkdirs(dir, err)) < 0) return rc;
    if ((rc = at_models_cache_file(dir, name, "", path, cap, err)) < 0 ||
        (rc = at_models_cache_file(dir, name, ".part", part, sizeof part, err)) < 0)
        return rc;

    /* an explicit base (a mirror, the tests' loopback server) serves every
     * model under its file name; otherwise the table's URL, if any */
    const char *base = o->url_base;
    if (!base || !*base) base = getenv("AT_MODELS_URL");
    char url[1024], file[128];
    if ((!base || !*base) && mi->url) {
        snprintf(url, sizeof url, "%s", mi->url);
    } else {
        if (!base || !*base) base = AT_MODELS_DEFAULT_URL;
        size_t bl = strlen(base);
        while (bl > 0 && base[bl - 1] == '/') bl--;
        if (at_models_file_name(name, file, sizeof file) < 0 ||
            snprintf(url, sizeof url, "%.*s/%s", (int)bl, base, file) >= (int)sizeof url)
            return at_err_set(err, AT_E_INVALID, "models: URL too long");
    }

    if ((rc = at_models_fetch(url, part, (int64_t)mi->max_mib << 20,
                              o->progress < 0 ? isatty(2) : o->progress, name, err)) < 0)
        return rc;
    char got[65];
    if ((rc = at_sha256_file(part, got, err)) < 0) return rc;
    if (strcmp(got, want) != 0) {
        unlink(part); /* a resumed download cannot be repaired: start afresh */
        return at_err_set(err, AT_E_CORRUPT,
                          "checksum mismatch for '%s': expected sha256 %s, got %s; "
                          "the file was not installed",
                          name, want, got);
    }
    if (rename(part, path) != 0) return at_err_set(err, AT_E_IO, "rename %s: %s", part, strerror(errno));
    return 0;
}

/* ---- CLI ---------------------------------------------------------------- */

static int cmd_list(void)
{
    char dir[768];
    at_err err;
    if (at_models_dir(dir, sizeof dir, &err) < 0) {
        fprintf(stderr, "audio-translator models: %s\n", err.msg);
        return 1;
    }
    printf("cache: %s\n%-22s %-10s %s\n", dir, "NAME", "STATUS", "SIZE");
    size_t n;
    const at_model_info *t = at_models_table(&n);
    for (size_t i = 0; i < n; i++) {
        char p[1024], pp[1024];
        struct stat st;
        const char *status = "pullable";
        double mib = 0;
        if (at_models_cache_file(dir, t[i].name, "", p, sizeof p, &err) == 0 && stat(p, &st) == 0) {
            status = "cached";
            mib = (double)st.st_size / 1048576.0;
        } else if (at_models_cache_file(dir, t[i].name, ".part", pp, sizeof pp, &err) == 0 &&
                   stat(pp, &st) == 0) {
            status = "partial";
            mib = (double)st.st_size / 1048576.0;
        }
        char size[32];
        if (mib > 0)
            snprintf(size, sizeof size, "%.1fM", mib);
        else
            snprintf(size, sizeof size, "<%uM", (unsigned)t[i].max_mib);
        printf("%-22s %-10s %s\n", t[i].name, status, size);
    }
    /* translation models, then voices: folders, complete only under their
     * own name */
    const at_hf_model_info *hf = at_hf_models_table(&n);
    for (int voices = 0; voices < 2; voices++) {
        printf(voices ? "\nneural voices (Hugging Face folders; --tts-models NAME):\n"
                      : "\ntranslation models (Hugging Face folders; --mt-models NAME):\n");
        printf("%-24s %-7s %-9s %-7s %s\n", "NAME", "KIND", "STATUS", "SIZE", "REPO");
        for (size_t i = 0; i < n; i++) {
            if ((hf[i].kind == AT_HF_MODELS_VITS) != voices) continue;
            char p[1024];
            struct stat st;
            const char *status = "pullable";
            if (snprintf(p, sizeof p, "%s/%s", dir, hf[i].name) < (int)sizeof p && stat(p, &st) == 0)
                status = "cached";
            else if (snprintf(p, sizeof p, "%s/%s.part", dir, hf[i].name) < (int)sizeof p &&
                     stat(p, &st) == 0)
                status = "partial";
            char size[32];
            snprintf(size, sizeof size, "<%uM", (unsigned)hf[i].max_mib);
            printf("%-24s %-7s %-9s %-7s %s\n", hf[i].name, at_hf_models_kind_name(hf[i].kind), status, size,
                   hf[i].repo);
        }
    }
    return 0;
}

/* An unknown name: every name, from both tables (longer than an at_err). */
static void print_known(const char *name)
{
    size_t n;
    const at_model_info *t = at_models_table(&n);
    fprintf(stderr, "audio-translator models: unknown model '%s'\nspeech models:", name);
    for (size_t i = 0; i < n; i++) fprintf(stderr, " %s", t[i].name);
    const at_hf_model_info *hf = at_hf_models_table(&n);
    for (int voices = 0; voices < 2; voices++) {
        fprintf(stderr, voices ? "\nneural voices:" : "\ntranslation models:");
        for (size_t i = 0; i < n; i++)
            if ((hf[i].kind == AT_HF_MODELS_VITS) == voices) fprintf(stderr, " %s", hf[i].name);
    }
    fputc('\n', stderr);
}

int at_models_main(int argc, char **argv)
{
    const char *use = "audio-translator models list | pull NAME [--url-base URL] "
                      "[--hf-endpoint URL] [--sha256 HEX] [--progress] | path NAME";
    char *url = NULL, *sha = NULL, *hf = NULL;
    int progress = 0, quiet = 0;
    at_option o[] = {
        {"url-base", "AT_MODELS_URL", AT_OPT_STRING, NULL,
         "where ggml-NAME.bin files are (default: Hugging Face)", &url, 0, 0},
        {"hf-endpoint", "AT_HF_ENDPOINT", AT_OPT_STRING, NULL,
         "Hugging Face API and files of translation models and voices (default: " AT_HF_DEFAULT_ENDPOINT ")",
         &hf, 0, 0},
        {"sha256", NULL, AT_OPT_STRING, NULL, "expected SHA-256 (overrides the table)", &sha, 0, 0},
        {"progress", NULL, AT_OPT_BOOL, "0", "progress bar even when stderr is not a TTY", &progress, 0, 0},
        {"quiet", NULL, AT_OPT_BOOL, "0", "no progress bar", &quiet, 0, 0},
    };
    size_t no = sizeof o / sizeof o[0];
    const char *pos[4];
    size_t n_pos = 0;
    at_err err;
    at_err_clear(&err);
    int rc = at_config_parse(o, no, argc, argv, 1, use, pos, 4, &n_pos, &err);
    int ret = 2;
    if (rc == 1) {
        ret = 0;
        goto out;
    }
    if (rc != 0 || n_pos < 1) {
        fprintf(stderr, "audio-translator models: %s\nUsage: %s\n", rc ? err.msg : "missing subcommand", use);
        goto out;
    }
    if (strcmp(pos[0], "list") == 0) {
        ret = cmd_list();
    } else if (strcmp(pos[0], "path") == 0 && n_pos == 2) {
        char p[1024];
        rc = at_hf_models_find(pos[1]) ? at_models_resolve_dir(pos[1], p, sizeof p, &err)
                                       : at_models_resolve(pos[1], p, sizeof p, &err);
        if (rc < 0) {
            fprintf(stderr, "audio-translator models: %s\n", err.msg);
            ret = 1;
        } else {
            printf("%s\n", p);
            ret = 0;
        }
    } else if (strcmp(pos[0], "pull") == 0 && n_pos == 2) {
        int bar = quiet ? 0 : progress ? 1 : -1;
        at_models_pull_opts po = {url, sha, bar, NULL};
        at_hf_models_pull_opts mo = {hf, bar, NULL};
        int is_hf = at_hf_models_find(pos[1]) != NULL;
        char p[1024];
        curl_global_init(CURL_GLOBAL_DEFAULT);
        if (!is_hf && !at_models_find(pos[1])) {
            print_known(pos[1]);
            ret = 1;
        } else if (is_hf && sha) {
            fprintf(stderr,
                    "audio-translator models: --sha256 is for single files; %s is checked against "
                    "its repository's listing\n",
                    pos[1]);
            ret = 2;
        } else if ((is_hf ? at_hf_models_pull(pos[1], &mo, p, sizeof p, &err)
                          : at_models_pull(pos[1], &po, p, sizeof p, &err)) < 0) {
            fprintf(stderr, "audio-translator models: %s\n", err.msg);
            ret = 1;
        } else {
            printf("%s\n", p);
            ret = 0;
        }
        curl_global_cleanup();
    } else {
        fprintf(stderr, "Usage: %s\n", use);
    }
out:
    at_config_free(o, no);
    return ret;
}
