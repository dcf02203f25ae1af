/* models.c - the Whisper model cache (see models.h). */
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

/* SHA-256 of the files at https://huggingface.co/ggerganov/whisper.cpp
 * (the LFS object ids).  The values were taken from Nix fetchurl pins in
 * public repositories (two independent ones agree for tiny..small); the
 * entries left empty had no source we could check, so pulling them needs
 * --sha256 HEX or --no-verify.  max_mib: the published size plus ~10%. */
static const at_model_info k_models[] = {
    {"tiny", "be07e048e1e599ad46341c8d2a135645097a538221678b7acdd1b1919c6e1b21", 85},
    {"tiny.en", "921e4cf8686fdd993dcd081a5da5b6c365bfde1162e72b08d75ac75289920b1f", 85},
    {"tiny-q5_1", "818710568da3ca15689e31a743197b520007872ff9576237bda97bd1b469c3d7", 36},
    {"tiny.en-q5_1", "c77c5766f1cef09b6b7d47f21b546cbddd4157886b3b5d6d4f709e91e66c7c2b", 36},
    {"tiny-q8_0", "", 48},
    {"tiny.en-q8_0", "5bc2b3860aa151a4c6e7bb095e1fcce7cf12c7b020ca08dcec0c6d018bb7dd94", 48},
    {"base", "60ed5bc3dd14eea856493d334349b405782ddcaf0028d4b5df4088345fba2efe", 160},
    {"base.en", "a03779c86df3323075f5e796cb2ce5029f00ec8869eee3fdfb897afe36c6d002", 160},
    {"base-q5_1", "422f1ae452ade6f30a004d7e5c6a43195e4433bc370bf23fac9cc591f01a8898", 65},
    {"base.en-q5_1", "4baf70dd0d7c4247ba2b81fafd9c01005ac77c2f9ef064e00dcf195d0e2fdd2f", 65},
    {"base-q8_0", "", 88},
    {"small", "1be3a9b2063867b937e64e2ec7483364a79917e157fa98c5d94b5c1fffea987b", 520},
    {"small.en", "c6138d6d58ecc8322097e0f987c32f1be8bb0a18532a3f88f734d1bbf9c41e5d", 520},
    {"small-q5_1", "ae85e4a935d7a567bd102fe55afc16bb595bdb618e11b2fc7591bc08120411bb", 200},
    {"small.en-q5_1", "bfdff4894dcb76bbf647d56263ea2a96645423f1669176f4844a1bf8e478ad30", 200},
    {"small-q8_0", "", 280},
    {"medium", "6c14d5adee5f86394037b4e4e8b59f1673b6cee10e3cf0b11bbdbee79c156208", 1700},
    {"medium.en", "cc37e93478338ec7700281a7ac30a10128929eb8f427dda2e865faa8f6da4356", 1700},
    {"medium-q5_0", "19fea4b380c3a618ec4723c3eef2eb785ffba0d0538cf43f8f235e7b3b34220f", 570},
    {"medium.en-q5_0", "76733e26ad8fe1c7a5bf7531a9d41917b2adc0f20f2e4f5531688a8c6cd88eb0", 570},
    {"medium-q8_0", "", 870},
    {"large-v1", "7d99f41a10525d0206bddadd86760181fa920438b6b33237e3118ff6c83bb53d", 3300},
    {"large-v2", "9a423fe4d40c82774b6af34115b8b935f34152246eb19e80e376071d3f999487", 3300},
    {"large-v2-q5_0", "3a214837221e4530dbc1fe8d734f302af393eb30bd0ed046042ebf4baf70f6f2", 1200},
    {"large-v2-q8_0", "", 1700},
    {"large-v3", "64d182b440b98d5203c4f9bd541544d84c605196c4f7b845dfa11fb23594d1e2", 3300},
    {"large-v3-q5_0", "d75795ecff3f83b5faa89d1900604ad8c780abd5739fae406de19f23ecd98ad1", 1200},
    {"large-v3-turbo", "", 1720},
    {"large-v3-turbo-q5_0", "", 610},
    {"large-v3-turbo-q8_0", "", 930},
};

const at_model_info *at_models_table(size_t *n)
{
    *n = sizeof k_models / sizeof k_models[0];
    return k_models;
}

const at_model_info *at_models_find(const char *name)
{
    if (!name) return NULL;
    for (size_t i = 0; i < sizeof k_models / sizeof k_models[0]; i++)
        if (strcmp(k_models[i].name, name) == 0) return &k_models[i];
    return NULL;
}

int at_models_dir(char *out, size_t cap, at_err *err)
{
    const char *d = getenv("AT_MODELS_DIR");
    int n;
    if (d && *d) {
        n = snprintf(out, cap, "%s", d);
    } else if ((d = getenv("XDG_CACHE_HOME")) && *d) {
        n = snprintf(out, cap, "%s/audio-translator/models", d);
    } else if ((d = getenv("HOME")) && *d) {
        n = snprintf(out, cap, "%s/.cache/audio-translator/models", d);
    } else {
        return at_err_set(err, AT_E_INVALID, "models: set AT_MODELS_DIR (no HOME)");
    }
    if (n < 0 || (size_t)n >= cap) return at_err_set(err, AT_E_INVALID, "models: cache path too long");
    return 0;
}

/* A name may only be a file name: no path tricks through the cache. */
static int plain_name(const char *s)
{
    if (!s || !*s || strlen(s) > 64 || s[0] == '.') return 0;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '.' && *s != '-' && *s != '_') return 0;
    return 1;
}

static int cache_file(const char *dir, const char *name, const char *suffix, char *out,
                      size_t cap, at_err *err)
{
    int n = snprintf(out, cap, "%s/ggml-%s.bin%s", dir, name, suffix);
    if (n < 0 || (size_t)n >= cap) return at_err_set(err, AT_E_INVALID, "models: path too long");
    return 0;
}

int at_models_resolve(const char *arg, char *out, size_t cap, at_err *err)
{
    struct stat st;
    if (!arg || !*arg) return at_err_set(err, AT_E_INVALID, "no model given");
    if (stat(arg, &st) == 0 || !plain_name(arg)) {
        if (snprintf(out, cap, "%s", arg) >= (int)cap)
            return at_err_set(err, AT_E_INVALID, "model path too long");
        return 0;
    }
    char dir[768];
    int rc = at_models_dir(dir, sizeof dir, err);
    if (rc < 0) return rc;
    if ((rc = cache_file(dir, arg, "", out, cap, err)) < 0) return rc;
    if (stat(out, &st) == 0) return 0;
    return at_err_set(err, AT_E_IO,
                      "model '%s' is neither a file nor in the cache %s; run "
                      "'audio-translator models pull %s'",
                      arg, dir, arg);
}

int at_sha256_file(const char *path, char hex[65], at_err *err)
{
    FILE *f = fopen(path, "rb");
    if (!f) return at_err_set(err, AT_E_IO, "%s: %s", path, strerror(errno));
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    unsigned char *buf = malloc(1 << 20);
    int rc = 0;
    if (!c || !buf || EVP_DigestInit_ex(c, EVP_sha256(), NULL) != 1) {
        rc = at_err_set(err, AT_E_NOMEM, "sha256: cannot start");
        goto out;
    }
    size_t n;
    while ((n = fread(buf, 1, 1 << 20, f)) > 0)
        if (EVP_DigestUpdate(c, buf, n) != 1) {
            rc = at_err_set(err, AT_E_ENGINE, "sha256 failed");
            goto out;
        }
    if (ferror(f)) {
        rc = at_err_set(err, AT_E_IO, "%s: read error", path);
        goto out;
    }
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (EVP_DigestFinal_ex(c, md, &mdlen) != 1 || mdlen != 32) {
        rc = at_err_set(err, AT_E_ENGINE, "sha256 failed");
        goto out;
    }
    for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", md[i]);
out:
    free(buf);
    EVP_MD_CTX_free(c);
    fclose(f);
    return rc;
}

/* ---- download --------------------------------------------------------- */

typedef struct dl {
    CURL *curl;
    FILE *f;
    curl_off_t have;     /* bytes already in the .part file before this request */
    curl_off_t written;  /* bytes written by this request */
    curl_off_t max;      /* cap on the file size */
    int checked;         /* the status code was looked at */
    int restarted;       /* server ignored the Range: the file starts over */
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

static int dl_progress(void *u, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow)
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
        fprintf(stderr, "\r[%s] %6.1f / %.1f MiB %3.0f%%", bar, have / 1048576.0,
                total / 1048576.0, 100.0 * have / total);
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

static int mkdirs(const char *path, at_err *err)
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

int at_models_pull(const char *name, const at_models_pull_opts *o, char *path, size_t cap,
                   at_err *err)
{
    at_models_pull_opts def = {0};
    if (!o) o = &def;
    const at_model_info *mi = at_models_find(name);
    if (!mi)
        return at_err_set(err, AT_E_INVALID,
                          "unknown model '%s' (see 'audio-translator models list')",
                          name ? name : "");
    char want[65] = "";
    if (o->sha256) {
        if (!valid_hex(o->sha256))
            return at_err_set(err, AT_E_INVALID, "--sha256 needs 64 hex digits");
        for (int i = 0; i < 64; i++) want[i] = (char)tolower((unsigned char)o->sha256[i]);
        want[64] = '\0';
    } else if (mi->sha256[0]) {
        snprintf(want, sizeof want, "%s", mi->sha256);
    } else if (!o->no_verify) {
        return at_err_set(err, AT_E_UNSUPPORTED,
                          "no SHA-256 for '%s' in the project's table: pass --sha256 HEX "
                          "(the LFS object id on Hugging Face) or --no-verify",
                          name);
    }
    char dir[768], part[1024];
    int rc;
    if (o->dir) snprintf(dir, sizeof dir, "%s", o->dir);
    else if ((rc = at_models_dir(dir, sizeof dir, err)) < 0) return rc;
    if ((rc = mkdirs(dir, err)) < 0) return rc;
    if ((rc = cache_file(dir, name, "", path, cap, err)) < 0 ||
        (rc = cache_file(dir, name, ".part", part, sizeof part, err)) < 0)
        return rc;

    const char *base = o->url_base;
    if (!base || !*base) base = getenv("AT_MODELS_URL");
    if (!base || !*base) base = AT_MODELS_DEFAULT_URL;
    char url[1024];
    size_t bl = strlen(base);
    while (bl > 0 && base[bl - 1] == '/') bl--;
    if (snprintf(url, sizeof url, "%.*s/ggml-%s.bin", (int)bl, base, name) >= (int)sizeof url)
        return at_err_set(err, AT_E_INVALID, "models: URL too long");

    FILE *f = fopen(part, "ab");
    if (!f) return at_err_set(err, AT_E_IO, "%s: %s", part, strerror(errno));
    long have = ftell(f);
    dl d = {0};
    d.f = f;
    d.have = have > 0 ? have : 0;
    d.max = (curl_off_t)mi->max_mib << 20;
    d.progress = o->progress < 0 ? isatty(2) : o->progress;
    d.curl = curl_easy_init();
    if (!d.curl) {
        fclose(f);
        return at_err_set(err, AT_E_NOMEM, "curl: cannot start");
    }
    if (d.have > 0 && d.progress)
        fprintf(stderr, "resuming %s at %.1f MiB\n", name, (double)d.have / 1048576.0);
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
    if (fclose(f) != 0 && cr == CURLE_OK)
        return at_err_set(err, AT_E_IO, "%s: %s", part, strerror(errno));
    /* 416: we asked past the end, i.e. the .part file is already complete */
    int complete_part = (cr == CURLE_HTTP_RETURNED_ERROR && code == 416 && d.have > 0);
    if (d.too_big || cr == CURLE_FILESIZE_EXCEEDED) {
        unlink(part);
        return at_err_set(err, AT_E_TOO_LARGE, "%s: larger than the %u MiB expected for '%s'",
                          url, mi->max_mib, name);
    }
    if (cr != CURLE_OK && !complete_part)
        return at_err_set(err, AT_E_IO,
                          "download of %s failed after %.1f MiB: %s (run the pull again to resume)",
                          url, (double)(d.have + d.written) / 1048576.0,
                          errbuf[0] ? errbuf : curl_easy_strerror(cr));
    if (want[0]) {
        char got[65];
        if ((rc = at_sha256_file(part, got, err)) < 0) return rc;
        if (strcmp(got, want) != 0) {
            unlink(part); /* a resumed download cannot be repaired: start afresh */
            return at_err_set(err, AT_E_CORRUPT,
                              "checksum mismatch for '%s': expected sha256 %s, got %s; "
                              "the file was not installed",
                              name, want, got);
        }
    }
    if (rename(part, path) != 0)
        return at_err_set(err, AT_E_IO, "rename %s: %s", part, strerror(errno));
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
    printf("cache: %s\n%-22s %-10s %-10s %s\n", dir, "NAME", "STATUS", "SIZE", "SHA-256");
    size_t n;
    const at_model_info *t = at_models_table(&n);
    for (size_t i = 0; i < n; i++) {
        char p[1024], pp[1024];
        struct stat st;
        const char *status = "pullable";
        double mib = 0;
        if (cache_file(dir, t[i].name, "", p, sizeof p, &err) == 0 && stat(p, &st) == 0) {
            status = "cached";
            mib = (double)st.st_size / 1048576.0;
        } else if (cache_file(dir, t[i].name, ".part", pp, sizeof pp, &err) == 0 &&
                   stat(pp, &st) == 0) {
            status = "partial";
            mib = (double)st.st_size / 1048576.0;
        }
        char size[32];
        if (mib > 0) snprintf(size, sizeof size, "%.1fM", mib);
        else snprintf(size, sizeof size, "<%uM", (unsigned)t[i].max_mib);
        printf("%-22s %-10s %-10s %s\n", t[i].name, status, size,
               t[i].sha256[0] ? "known" : "unknown (--sha256/--no-verify)");
    }
    return 0;
}

int at_models_main(int argc, char **argv)
{
    const char *use = "audio-translator models list | pull NAME [--url-base URL] "
                      "[--sha256 HEX] [--no-verify] [--progress] | path NAME";
    char *url = NULL, *sha = NULL;
    int no_verify = 0, progress = 0, quiet = 0;
    at_option o[] = {
        {"url-base", "AT_MODELS_URL", AT_OPT_STRING, NULL,
         "where ggml-NAME.bin files are (default: Hugging Face)", &url, 0, 0},
        {"sha256", NULL, AT_OPT_STRING, NULL, "expected SHA-256 (overrides the table)", &sha, 0, 0},
        {"no-verify", NULL, AT_OPT_BOOL, "0", "install a model with no known hash", &no_verify, 0, 0},
        {"progress", NULL, AT_OPT_BOOL, "0", "progress bar even when stderr is not a TTY",
         &progress, 0, 0},
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
        fprintf(stderr, "audio-translator models: %s\nUsage: %s\n",
                rc ? err.msg : "missing subcommand", use);
        goto out;
    }
    if (strcmp(pos[0], "list") == 0) {
        ret = cmd_list();
    } else if (strcmp(pos[0], "path") == 0 && n_pos == 2) {
        char p[1024];
        if (at_models_resolve(pos[1], p, sizeof p, &err) < 0) {
            fprintf(stderr, "audio-translator models: %s\n", err.msg);
            ret = 1;
        } else {
            printf("%s\n", p);
            ret = 0;
        }
    } else if (strcmp(pos[0], "pull") == 0 && n_pos == 2) {
        at_models_pull_opts po = {url, sha, no_verify, quiet ? 0 : progress ? 1 : -1, NULL};
        char p[1024];
        curl_global_init(CURL_GLOBAL_DEFAULT);
        if (at_models_pull(pos[1], &po, p, sizeof p, &err) < 0) {
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
