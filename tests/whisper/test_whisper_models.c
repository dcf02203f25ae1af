/* test_whisper_models.c - `models pull` against a loopback HTTP server
 * (raw sockets, here) that serves a generated random-weight model: a full
 * download with its checksum, an interrupted download resumed with a
 * Range request, corrupt bytes rejected (nothing installed), unknown
 * names, the Silero VAD file under its own name, `models list`, and an
 * engine loaded by name from the cache. */
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

#include "engines/asr/whisper/model.h"
#include "engines/asr/whisper/models.h"
#include "engines/asr/whisper/whisper.h"
#include "engines/vad/silero.h"
#include "fake_http.h"
#include "tools/tools.h"

typedef struct server {
    at_fake_http *http;
    int port;
    unsigned char *data; /* /ggml-tiny.bin */
    size_t len;
    unsigned char *sdata; /* /silero_vad-v5.onnx: the real file */
    size_t slen;
    /* behaviour of the next responses */
    size_t cut_after; /* 0: whole body; else close after this many body bytes */
    int corrupt;      /* flip one byte in the middle */
    long last_range;  /* -1: no Range header in the last request */
    int requests;
} server;

static server S;
static char dir[] = "/tmp/at-models-test-XXXXXX";
static char cache[512], srcfile[512], sha[65], url[128];

static void serve_one(void *user, int c, const char *req)
{
    server *s = user;
    s->requests++;
    s->last_range = at_fake_http_range(req);
    if (strncmp(req, "GET /silero_vad-v5.onnx ", 24) == 0 && s->sdata)
        at_fake_http_send_file(c, req, s->sdata, s->slen, s->cut_after, s->corrupt);
    else if (strncmp(req, "GET /ggml-tiny.bin ", 19) == 0)
        at_fake_http_send_file(c, req, s->data, s->len, s->cut_after, s->corrupt);
    else
        at_fake_http_reply(c, "404 Not Found", "", 0);
}

static unsigned char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *d = malloc((size_t)n);
    if (d && fread(d, 1, (size_t)n, f) != (size_t)n) {
        free(d);
        d = NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return d;
}

static int setup(void **st)
{
    (void)st;
    if (!mkdtemp(dir)) return -1;
    snprintf(cache, sizeof cache, "%s/cache", dir);
    snprintf(srcfile, sizeof srcfile, "%s/served.bin", dir);
    at_err err;
    /* q4_0 keeps the served file small (a few MB) */
    if (at_whisper_random_model("tiny", "q4_0", srcfile, 7, &err) != 0) {
        fprintf(stderr, "random model: %s\n", err.msg);
        return -1;
    }
    if (at_sha256_file(srcfile, sha, &err) != 0) return -1;
    S.data = read_all(srcfile, &S.len);
    if (!S.data) return -1;
    const char *src = getenv("AT_SOURCE_DIR");
    char sp[600];
    snprintf(sp, sizeof sp, "%s/tests/data/fetched/silero_vad-v5.onnx", src ? src : ".");
    S.sdata = read_all(sp, &S.slen);
    if (!S.sdata) fprintf(stderr, "%s missing: run scripts/fetch-test-data.sh\n", sp);
    if (!(S.http = at_fake_http_start(serve_one, &S, &S.port))) return -1;
    snprintf(url, sizeof url, "http://127.0.0.1:%d", S.port);
    setenv("AT_MODELS_DIR", cache, 1);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    return 0;
}

static int teardown(void **st)
{
    (void)st;
    at_fake_http_stop(S.http);
    free(S.data);
    free(S.sdata);
    curl_global_cleanup();
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static int exists(const char *name, const char *suffix)
{
    char p[700];
    struct stat st;
    snprintf(p, sizeof p, "%s/ggml-%s.bin%s", cache, name, suffix);
    return stat(p, &st) == 0;
}

static void test_unknown_names_and_hashes(void **st)
{
    (void)st;
    at_err err;
    char p[1024];
    at_models_pull_opts o = {url, NULL, 0, NULL};
    assert_int_equal(at_models_pull("tiny-xl", &o, p, sizeof p, &err), AT_E_INVALID);
    assert_non_null(strstr(err.msg, "unknown model"));
    assert_int_equal(at_models_pull("../etc", &o, p, sizeof p, &err), AT_E_INVALID);
    /* every entry, quantized and turbo ones included, has a hash: 64
     * lowercase hex digits */
    size_t n;
    const at_model_info *t = at_models_table(&n);
    assert_true(n >= 30);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(strlen(t[i].sha256), 64);
        assert_int_equal(strspn(t[i].sha256, "0123456789abcdef"), 64);
    }
    assert_non_null(at_models_find("large-v3-turbo-q8_0"));
    /* not cached yet: resolving a name says how to pull it */
    assert_int_equal(at_models_resolve("tiny", p, sizeof p, &err), AT_E_IO);
    assert_non_null(strstr(err.msg, "models pull tiny"));
}

/* The Silero VAD model: its own file name in the cache and under a URL
 * base, verified against the table's hash of the real file. */
static void test_silero_pull(void **st)
{
    (void)st;
    assert_non_null(S.sdata);
    at_err err;
    char p[1024], want[1024];
    at_models_pull_opts o = {url, NULL, 0, NULL};
    assert_int_equal(at_models_pull("silero-vad", &o, p, sizeof p, &err), 0);
    snprintf(want, sizeof want, "%s/silero_vad-v5.onnx", cache);
    assert_string_equal(p, want);
    assert_int_equal(at_models_resolve("silero-vad", p, sizeof p, &err), 0);
    assert_string_equal(p, want);
    at_silero *m = at_silero_load(p, &err);
    assert_non_null(m);
    at_silero_free(m);
    /* the default source is the pinned upstream tag, not a moving branch */
    const at_model_info *mi = at_models_find("silero-vad");
    assert_non_null(strstr(mi->url, "/raw/v5.1.2/"));
}

static void test_bad_checksum(void **st)
{
    (void)st;
    at_err err;
    char p[1024];
    /* the table's hash (the real tiny) does not match the generated file */
    at_models_pull_opts o = {url, NULL, 0, NULL};
    assert_int_equal(at_models_pull("tiny", &o, p, sizeof p, &err), AT_E_CORRUPT);
    assert_non_null(strstr(err.msg, "checksum mismatch"));
    assert_false(exists("tiny", ""));
    assert_false(exists("tiny", ".part"));
    /* pinned to the right hash, but the server corrupts a byte */
    S.corrupt = 1;
    o.sha256 = sha;
    assert_int_equal(at_models_pull("tiny", &o, p, sizeof p, &err), AT_E_CORRUPT);
    S.corrupt = 0;
    assert_false(exists("tiny", ""));
    assert_false(exists("tiny", ".part"));
}

/* A server that cannot be reached: a clear error, and nothing left in the
 * cache (an empty .part made `models list` say "partial"). */
static void test_unreachable_leaves_nothing(void **st)
{
    (void)st;
    at_err err;
    char p[1024];
    at_models_pull_opts o = {"http://127.0.0.1:9", sha, 0, NULL};
    assert_int_equal(at_models_pull("tiny", &o, p, sizeof p, &err), AT_E_IO);
    assert_non_null(strstr(err.msg, "http://127.0.0.1:9/ggml-tiny.bin failed: "));
    assert_null(strstr(err.msg, "resume"));
    assert_false(exists("tiny", ".part"));
    assert_false(exists("tiny", ""));
}

static void test_interrupted_then_resumed(void **st)
{
    (void)st;
    at_err err;
    char p[1024];
    at_models_pull_opts o = {url, sha, 0, NULL};
    S.cut_after = S.len / 3;
    assert_int_equal(at_models_pull("tiny", &o, p, sizeof p, &err), AT_E_IO);
    assert_non_null(strstr(err.msg, "resume"));
    assert_false(exists("tiny", ""));
    assert_true(exists("tiny", ".part"));
    /* again, cut once more: the second request resumed where the first stopped */
    assert_int_equal(at_models_pull("tiny", &o, p, sizeof p, &err), AT_E_IO);
    assert_int_equal(S.last_range, (long)(S.len / 3));
    S.cut_after = 0;
    int before = S.requests;
    assert_int_equal(at_models_pull("tiny", &o, p, sizeof p, &err), 0);
    assert_int_equal(S.requests, before + 1);
    assert_int_equal(S.last_range, (long)(2 * (S.len / 3)));
    assert_true(exists("tiny", ""));
    assert_false(exists("tiny", ".part"));
    char got[65];
    assert_int_equal(at_sha256_file(p, got, &err), 0);
    assert_string_equal(got, sha);
    /* the cached model resolves by name and loads as an engine */
    char r[1024];
    assert_int_equal(at_models_resolve("tiny", r, sizeof r, &err), 0);
    assert_string_equal(r, p);
    at_asr_engine *e = at_asr_whisper_new("tiny", 1, &err);
    if (!e) fprintf(stderr, "%s\n", err.msg);
    assert_non_null(e);
    at_asr_engine_free(e);
}

static void test_list_cli(void **st)
{
    (void)st;
    char cmd[1024], line[512];
    snprintf(cmd, sizeof cmd, "%s/audio-translator models list", getenv("AT_BUILD_DIR"));
    FILE *f = popen(cmd, "r");
    assert_non_null(f);
    int tiny_cached = 0, base_pullable = 0, turbo = 0, silero_cached = 0;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "tiny ", 5) == 0 && strstr(line, "cached")) tiny_cached = 1;
        if (strncmp(line, "base ", 5) == 0 && strstr(line, "pullable")) base_pullable = 1;
        if (strncmp(line, "large-v3-turbo ", 15) == 0) turbo = 1;
        if (strncmp(line, "silero-vad ", 11) == 0 && strstr(line, "cached")) silero_cached = 1;
    }
    assert_int_equal(pclose(f), 0);
    assert_true(tiny_cached);
    assert_true(base_pullable);
    assert_true(turbo);
    assert_true(silero_cached); /* pulled by test_silero_pull */
    /* the CLI pull: already installed file is replaced by a fresh verified one */
    snprintf(cmd, sizeof cmd,
             "%s/audio-translator models pull tiny --url-base %s --sha256 %s --quiet >/dev/null",
             getenv("AT_BUILD_DIR"), url, sha);
    assert_int_equal(system(cmd), 0);
    snprintf(cmd, sizeof cmd, "%s/audio-translator models pull nosuch --url-base %s 2>/dev/null",
             getenv("AT_BUILD_DIR"), url);
    assert_int_not_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unknown_names_and_hashes),
        cmocka_unit_test(test_silero_pull),
        cmocka_unit_test(test_bad_checksum),
        cmocka_unit_test(test_unreachable_leaves_nothing),
        cmocka_unit_test(test_interrupted_then_resumed),
        cmocka_unit_test(test_list_cli),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
