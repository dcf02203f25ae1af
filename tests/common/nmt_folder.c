/* nmt_folder.c - Hugging Face translation folders for tests. */
#include "nmt_folder.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "engines/mt/nmt/spm.h"

static const char *const FILES[] = {"config.json", "model.safetensors",       "source.spm",
                                    "target.spm",  "sentencepiece.bpe.model", "vocab.json"};

static const char *env_or(const char *name, const char *def)
{
    const char *v = getenv(name);
    return v ? v : def;
}

static int write_all(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    int ok = f && fwrite(data, 1, n, f) == n;
    if (f && fclose(f)) ok = 0;
    if (!ok) fprintf(stderr, "cannot write %s\n", path);
    return ok ? 0 : -1;
}

static int copy_file(const char *from, const char *to)
{
    FILE *f = fopen(from, "rb");
    if (!f) {
        fprintf(stderr, "%s missing: test data is part of the repository\n", from);
        return -1;
    }
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    return n == sizeof buf ? -1 : write_all(to, buf, n);
}

/* tests/data/spm/<spm>.model.gz, unpacked, to each of the paths. */
static int put_spm(const char *spm, const char *const *to, int n_to)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/tests/data/spm/%s.model.gz", env_or("AT_SOURCE_DIR", "."), spm);
    gzFile f = gzopen(path, "rb");
    if (!f) {
        fprintf(stderr, "%s missing\n", path);
        return -1;
    }
    static char buf[1 << 20];
    int n = gzread(f, buf, sizeof buf);
    gzclose(f);
    if (n <= 0 || n == (int)sizeof buf) return -1;
    for (int i = 0; i < n_to; i++)
        if (write_all(to[i], buf, (size_t)n)) return -1;
    return 0;
}

/* vocab.json: the specials, then spm's pieces from id 3 (past its own
 * <unk> <s> </s>) at id + offset while below limit. */
static int put_vocab(const char *spm_path, const char *path, const char *const *sp, const int *ids, int n_sp,
                     int offset, int limit, const char *const *extra)
{
    at_err err = {0};
    at_spm *m = at_spm_load(spm_path, &err);
    if (!m) {
        fprintf(stderr, "%s: %s\n", spm_path, err.msg);
        return -1;
    }
    cJSON *j = cJSON_CreateObject();
    for (int i = 0; i < n_sp; i++) cJSON_AddNumberToObject(j, sp[i], ids[i]);
    int n_extra = 0;
    while (extra && extra[n_extra]) n_extra++;
    for (int i = 3; i < at_spm_size(m) && i + offset < limit - n_extra; i++)
        cJSON_AddNumberToObject(j, at_spm_piece(m, i, NULL), i + offset);
    for (int i = 0; i < n_extra; i++) cJSON_AddNumberToObject(j, extra[i], limit - n_extra + i);
    char *s = cJSON_PrintUnformatted(j);
    int rc = s ? write_all(path, s, strlen(s)) : -1;
    free(s);
    cJSON_Delete(j);
    at_spm_free(m);
    return rc;
}

char *at_test_nmt_folder(const char *kind, const char *name, const char *spm)
{
    return at_test_nmt_folder_tokens(kind, name, spm, NULL);
}

char *at_test_nmt_folder_tokens(const char *kind, const char *name, const char *spm, const char *const *extra)
{
    int marian = !strcmp(kind, "marian");
    const char *oracle = marian ? "marian-mini" : "m2m100-mini";
    char top[] = "/tmp/at-nmt-XXXXXX", dir[512], a[4096], b[4096];
    if (!mkdtemp(top)) return NULL;
    snprintf(dir, sizeof dir, "%s/%s", top, name);
    if (mkdir(dir, 0777)) return NULL;
    const char *od = env_or("AT_ORACLES_DIR", "tests/data/oracles");
    snprintf(a, sizeof a, "%s/%s/config.json", od, oracle);
    snprintf(b, sizeof b, "%s/config.json", dir);
    if (copy_file(a, b)) return NULL;
    snprintf(a, sizeof a, "%s/%s/model.safetensors", od, oracle);
    if (a[0] != '/') { /* the link must work from anywhere */
        char *abs = realpath(a, NULL);
        if (!abs) return NULL;
        snprintf(a, sizeof a, "%s", abs);
        free(abs);
    }
    snprintf(b, sizeof b, "%s/model.safetensors", dir);
    if (symlink(a, b)) return NULL;
    char p1[600], p2[600], vocab[600];
    snprintf(vocab, sizeof vocab, "%s/vocab.json", dir);
    if (marian) {
        /* Marian: </s> 0, <unk> 1, <pad> 1999 (the decoder start) */
        static const char *const sp[] = {"</s>", "<unk>", "<pad>"};
        static const int ids[] = {0, 1, 1999};
        snprintf(p1, sizeof p1, "%s/source.spm", dir);
        snprintf(p2, sizeof p2, "%s/target.spm", dir);
        const char *to[] = {p1, p2};
        if (put_spm(spm, to, 2) || put_vocab(p1, vocab, sp, ids, 3, 0, 1999, extra)) return NULL;
    } else {
        /* M2M100's fairseq specials, then pieces at spm id + 1 below 1880:
         * the languages take 1880.., the made-up words after them */
        static const char *const sp[] = {"<s>", "<pad>", "</s>", "<unk>"};
        static const int ids[] = {0, 1, 2, 3};
        snprintf(p1, sizeof p1, "%s/sentencepiece.bpe.model", dir);
        const char *to[] = {p1};
        if (put_spm(spm, to, 1) || put_vocab(p1, vocab, sp, ids, 4, 1, 1880, extra)) return NULL;
    }
    return strdup(dir);
}

void at_test_nmt_folder_remove(char *dir)
{
    char path[4096];
    if (!dir) return;
    for (size_t i = 0; i < sizeof FILES / sizeof *FILES; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, FILES[i]);
        unlink(path);
    }
    rmdir(dir);
    char *slash = strrchr(dir, '/');
    if (slash) {
        *slash = 0;
        rmdir(dir);
    }
    free(dir);
}
