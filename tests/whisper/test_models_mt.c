/* test_models_mt.c - `models pull` of translation model folders against a
 * loopback server (raw sockets) that plays Hugging Face: a repository
 * listing (/api/models/<repo>/tree/main) and its files
 * (/<repo>/resolve/main/<path>), the files being a random-weight Marian
 * folder (tests/common/nmt_folder.h).  Checks the table, the git blob and
 * SHA-256 verification (a file that does not match is not installed),
 * listings that are not JSON or name paths outside the folder, a resumed
 * weight file, a complete folder left alone, `--mt-models NAME` resolved
 * through the cache, and the CLI's list, path and pull. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <curl/curl.h>

#include "client.h"
#include "engines/asr/whisper/models.h"
#include "nmt_folder.h"
#include "services/app.h"
#include "tools/mt_models.h"
#include "tools/tools.h"

enum { LIST_GOOD, LIST_NOT_JSON, LIST_DOTDOT, LIST_ABSOLUTE, LIST_BAD_OID, LIST_NO_SPM };

/* the served repository: these files of the generated folder */
#define NF 6
static const char *const k_files[NF] = {"config.json", "tokenizer_config.json", "vocab.json", "source.spm",
                                        "target.spm",  "model.safetensors"};
static const int k_lfs[NF] = {0, 0, 0, 1, 1, 1};

typedef struct server {
    int fd, port;
    unsigned char *data[NF];
    size_t len[NF];
    char hash[NF][65];
    int listing;     /* LIST_* */
    const char *cut; /* this file: close after cut_after body bytes */
    size_t cut_after;
    const char *corrupt; /* this file: one byte flipped */
    long last_range;     /* of the last file request; -1: none */
    int listings, files, hits[NF], unknown;
    int stop;
    pthread_t th;
} server;

static server S;
static char tmp[] = "/tmp/at-mt-models-XXXXXX";
static char cache[512], url[128], *src_dir;

static void reply(int c, const char *status, const char *body, size_t len)
{
    char hdr[256];
    snprintf(hdr, sizeof hdr, "HTTP/1.1 %s\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n", status, len);
    send(c, hdr, strlen(hdr), MSG_NOSIGNAL);
    if (len) send(c, body, len, MSG_NOSIGNAL);
}

static void send_listing(server *s, int c)
{
    char body[8192];
    size_t n = 0;
    if (s->listing == LIST_NOT_JSON) {
        reply(c, "200 OK", "<html>rate limited</html>", 25);
        return;
    }
    n += (size_t)snprintf(body + n, sizeof body - n, "[");
    for (int i = 0; i < NF; i++) {
        if (s->listing == LIST_NO_SPM && strcmp(k_files[i], "source.spm") == 0) continue;
        const char *h = s->hash[i];
        if (s->listing == LIST_BAD_OID && i == 0) h = "0123456789abcdef0123456789abcdef01234567";
        if (k_lfs[i])
            n += (size_t)snprintf(body + n, sizeof body - n,
                                  "{\"type\":\"file\",\"oid\":\"%040d\",\"size\":%zu,\"path\":\"%s\","
                                  "\"lfs\":{\"oid\":\"%s\",\"size\":%zu,\"pointerSize\":134}},",
                                  i, s->len[i], k_files[i], h, s->len[i]);
        else
            n += (size_t)snprintf(body + n, sizeof body - n,
                                  "{\"type\":\"file\",\"oid\":\"%s\",\"size\":%zu,\"path\":\"%s\"},", h,
                                  s->len[i], k_files[i]);
    }
    /* what is never fetched: other frameworks' weights, a subfolder */
    n += (size_t)snprintf(body + n, sizeof body - n,
                          "{\"type\":\"file\",\"oid\":\"%040d\",\"size\":9,\"path\":\"tf_model.h5\","
                          "\"lfs\":{\"oid\":\"%064d\",\"size\":9,\"pointerSize\":134}},"
                          "{\"type\":\"directory\",\"oid\":\"%040d\",\"size\":0,\"path\":\"onnx\"}",
                          7, 7, 8);
    if (s->listing == LIST_DOTDOT)
        n += (size_t)snprintf(body + n, sizeof body - n,
                              ",{\"type\":\"file\",\"oid\":\"%040d\",\"size\":3,\"path\":\"../x\"}", 1);
    if (s->listing == LIST_ABSOLUTE)
        n +=
            (size_t)snprintf(body + n, sizeof body - n,
                             ",{\"type\":\"file\",\"oid\":\"%040d\",\"size\":3,\"path\":\"/etc/passwd\"}", 1);
    n += (size_t)snprintf(body + n, sizeof body - n, "]");
    reply(c, "200 OK", body, n);
}

static void serve_one(server *s, int c)
{
    char req[4096];
    size_t n = 0;
    while (n + 1 < sizeof req) {
        ssize_t k = recv(c, req + n, sizeof req - 1 - n, 0);
        if (k <= 0) break;
        n += (size_t)k;
        req[n] = '\0';
        if (strstr(req, "\r\n\r\n")) break;
    }
    req[n] = '\0';
    char path[1024];
    if (sscanf(req, "GET %1023s ", path) != 1) {
        reply(c, "400 Bad Request", "", 0);
        return;
    }
    /* any Helsinki-NLP repository is this one */
    if (strncmp(path, "/api/models/Helsinki-NLP/", 25) == 0 && strstr(path, "/tree/main")) {
        s->listings++;
        send_listing(s, c);
        return;
    }
    const char *rs = strstr(path, "/resolve/main/");
    int f = -1;
    if (strncmp(path, "/Helsinki-NLP/", 14) == 0 && rs)
        for (int i = 0; i < NF; i++)
            if (strcmp(rs + 14, k_files[i]) == 0) f = i;
    if (f < 0) {
        s->unknown++;
        reply(c, "404 Not Found", "", 0);
        return;
    }
    s->files++;
    s->hits[f]++;
    s->last_range = -1;
    const char *r = strcasestr(req, "\r\nRange: bytes=");
    if (r) s->last_range = atol(r + 15);
    size_t len = s->len[f], from = s->last_range > 0 ? (size_t)s->last_range : 0;
    char hdr[512];
    if (from >= len && len > 0) {
        reply(c, "416 Range Not Satisfiable", "", 0);
        return;
    }
    if (from > 0)
        snprintf(hdr, sizeof hdr,
                 "HTTP/1.1 206 Partial Content\r\nContent-Length: %zu\r\n"
                 "Content-Range: bytes %zu-%zu/%zu\r\nConnection: close\r\n\r\n",
                 len - from, from, len - 1, len);
    else
        snprintf(hdr, sizeof hdr, "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n", len);
    send(c, hdr, strlen(hdr), MSG_NOSIGNAL);
    int cut = s->cut && strcmp(s->cut, k_files[f]) == 0, bad = s->corrupt && !strcmp(s->corrupt, k_files[f]);
    size_t end = cut ? from + s->cut_after : len;
    if (end > len) end = len;
    for (size_t off = from; off < end;) {
        unsigned char chunk[65536];
        size_t k = end - off < sizeof chunk ? end - off : sizeof chunk;
        memcpy(chunk, s->data[f] + off, k);
        if (bad && off <= len / 2 && len / 2 < off + k) chunk[len / 2 - off] ^= 0x55;
        ssize_t w = send(c, chunk, k, MSG_NOSIGNAL);
        if (w <= 0) break;
        off += (size_t)w;
    }
}

static void *server_main(void *arg)
{
    server *s = arg;
    while (!s->stop) {
        struct pollfd p = {s->fd, POLLIN, 0};
        if (poll(&p, 1, 100) <= 0) continue;
        int c = accept(s->fd, NULL, NULL);
        if (c < 0) continue;
        serve_one(s, c);
        close(c);
    }
    return NULL;
}

static int write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    int ok = fputs(text, f) >= 0;
    return fclose(f) == 0 && ok ? 0 : -1;
}

static int setup(void **st)
{
    (void)st;
    if (!mkdtemp(tmp)) return -1;
    snprintf(cache, sizeof cache, "%s/cache", tmp);
    if (!(src_dir = at_test_nmt_folder("marian", "opus-mt-en-es", "uni_nfkc"))) return -1;
    char p[1024];
    snprintf(p, sizeof p, "%s/tokenizer_config.json", src_dir);
    if (write_file(p, "{\"source_lang\": \"en\", \"target_lang\": \"es\"}\n")) return -1;
    at_err err;
    for (int i = 0; i < NF; i++) {
        snprintf(p, sizeof p, "%s/%s", src_dir, k_files[i]);
        if (!(S.data[i] = at_test_read_file(p, &S.len[i]))) {
            fprintf(stderr, "%s missing\n", p);
            return -1;
        }
        int rc = k_lfs[i] ? at_sha256_file(p, S.hash[i], &err) : at_git_blob_sha1_file(p, S.hash[i], &err);
        if (rc) return -1;
    }
    S.fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t al = sizeof a;
    if (bind(S.fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(S.fd, 8) != 0 ||
        getsockname(S.fd, (struct sockaddr *)&a, &al) != 0)
        return -1;
    S.port = ntohs(a.sin_port);
    snprintf(url, sizeof url, "http://127.0.0.1:%d/", S.port); /* the trailing '/' is dropped */
    setenv("AT_MODELS_DIR", cache, 1);
    unsetenv("AT_HF_ENDPOINT");
    curl_global_init(CURL_GLOBAL_DEFAULT);
    return pthread_create(&S.th, NULL, server_main, &S);
}

static int teardown(void **st)
{
    (void)st;
    S.stop = 1;
    pthread_join(S.th, NULL);
    close(S.fd);
    for (int i = 0; i < NF; i++) free(S.data[i]);
    curl_global_cleanup();
    at_test_nmt_folder_remove(src_dir);
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

static void test_table_and_hashes(void **st)
{
    (void)st;
    size_t n;
    const at_mt_model_info *t = at_mt_models_table(&n);
    assert_true(n >= 17);
    int marian = 0;
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < i; j++) assert_string_not_equal(t[i].name, t[j].name);
        assert_null(at_models_find(t[i].name)); /* no clash with a file name of the Whisper table */
        assert_non_null(strchr(t[i].repo, '/'));
        assert_true(t[i].revision && *t[i].revision);
        assert_true(t[i].max_mib > 0);
        if (t[i].kind == AT_MT_MODELS_MARIAN) {
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
    }
    assert_true(marian >= 15);
    assert_int_equal(at_mt_models_find("nllb-200-distilled-600M")->kind, AT_MT_MODELS_NLLB);
    assert_string_equal(at_mt_models_find("m2m100_418M")->repo, "facebook/m2m100_418M");
    /* an unknown name lists the known ones */
    at_err err;
    char p[1024];
    at_mt_models_pull_opts o = {url, 0, NULL};
    assert_int_equal(at_mt_models_pull("opus-mt-xx-yy", &o, p, sizeof p, &err), AT_E_INVALID);
    assert_non_null(strstr(err.msg, "opus-mt-xx-yy"));
    assert_non_null(strstr(err.msg, "opus-mt-en-es"));
    assert_non_null(strstr(err.msg, "m2m100_418M"));
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
    at_mt_models_pull_opts o = {url, 0, NULL};
    static const struct {
        int mode;
        const char *says;
    } cases[] = {
        {LIST_NOT_JSON, "not a JSON array"},
        {LIST_DOTDOT, "unsafe path '../x'"},
        {LIST_ABSOLUTE, "unsafe path '/etc/passwd'"},
        {LIST_NO_SPM, "has no source.spm"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        S.listing = cases[i].mode;
        assert_int_equal(at_mt_models_pull("opus-mt-en-es", &o, p, sizeof p, &err), AT_E_CORRUPT);
        if (!strstr(err.msg, cases[i].says)) fprintf(stderr, "%s\n", err.msg);
        assert_non_null(strstr(err.msg, cases[i].says));
    }
    S.listing = LIST_GOOD;
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
    at_mt_models_pull_opts o = {url, 0, NULL};
    /* an LFS file (sha256) */
    S.corrupt = "source.spm";
    assert_int_equal(at_mt_models_pull("opus-mt-en-es", &o, p, sizeof p, &err), AT_E_CORRUPT);
    S.corrupt = NULL;
    assert_non_null(strstr(err.msg, "opus-mt-en-es/source.spm does not match the listed sha256"));
    assert_false(exists("opus-mt-en-es"));
    assert_false(exists("opus-mt-en-es.part/source.spm"));
    assert_false(exists("opus-mt-en-es.part/source.spm.part"));
    /* a git blob (sha1): the listing's id is not the content's */
    S.listing = LIST_BAD_OID;
    assert_int_equal(at_mt_models_pull("opus-mt-en-es", &o, p, sizeof p, &err), AT_E_CORRUPT);
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
    at_mt_models_pull_opts o = {url, 0, NULL};
    const size_t w = S.len[NF - 1];
    S.cut = "model.safetensors";
    S.cut_after = w / 3;
    assert_int_equal(at_mt_models_pull("opus-mt-en-es", &o, p, sizeof p, &err), AT_E_IO);
    assert_non_null(strstr(err.msg, "resume"));
    assert_false(exists("opus-mt-en-es"));
    assert_true(exists("opus-mt-en-es.part/model.safetensors.part"));
    assert_true(exists("opus-mt-en-es.part/source.spm")); /* verified, kept */
    /* cut again: the request resumed where the first one stopped */
    assert_int_equal(at_mt_models_pull("opus-mt-en-es", &o, p, sizeof p, &err), AT_E_IO);
    assert_int_equal(S.last_range, (long)(w / 3));
    S.cut = NULL;
    int hits_config = S.hits[0], files = S.files;
    assert_int_equal(at_mt_models_pull("opus-mt-en-es", &o, p, sizeof p, &err), 0);
    assert_int_equal(S.last_range, (long)(2 * (w / 3)));
    assert_int_equal(S.files, files + 1); /* only the weights: the rest was in */
    assert_int_equal(S.hits[0], hits_config);
    snprintf(want, sizeof want, "%s/opus-mt-en-es", cache);
    assert_string_equal(p, want);
    assert_false(exists("opus-mt-en-es.part"));
    assert_false(exists("opus-mt-en-es/model.safetensors.part"));
    assert_false(exists("opus-mt-en-es/tf_model.h5"));
    for (int i = 0; i < NF; i++) {
        char f[1280], got[65];
        snprintf(f, sizeof f, "%s/%s", p, k_files[i]);
        assert_int_equal(k_lfs[i] ? at_sha256_file(f, got, &err) : at_git_blob_sha1_file(f, got, &err), 0);
        assert_string_equal(got, S.hash[i]);
    }
    /* complete: a second pull asks nothing */
    int listings = S.listings;
    files = S.files;
    assert_int_equal(at_mt_models_pull("opus-mt-en-es", &o, p, sizeof p, &err), 0);
    assert_int_equal(S.listings, listings);
    assert_int_equal(S.files, files);
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
    snprintf(cmd, sizeof cmd, "%s/audio-translator models path opus-mt-en-es", bin);
    assert_int_equal(run(cmd, out, sizeof out), 0);
    char want[1024];
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
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table_and_hashes), cmocka_unit_test(test_bad_listings),
        cmocka_unit_test(test_mismatch_refused), cmocka_unit_test(test_interrupted_then_resumed),
        cmocka_unit_test(test_load_by_name),     cmocka_unit_test(test_cli),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
