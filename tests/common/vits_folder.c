/* vits_folder.c - Hugging Face VITS voice folders for tests. */
#include "vits_folder.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *const MODEL_FILES[] = {"config.json", "model.safetensors"};
static const char *const TOK_FILES[] = {"vocab.json", "tokenizer_config.json"};

/* Links dir/<file> to <src>/<file> for each file (src made absolute). */
static int link_files(const char *dir, const char *src, const char *const *files, int n)
{
    char base[PATH_MAX], from[PATH_MAX + 64], to[PATH_MAX + 64];
    const char *root = getenv("AT_SOURCE_DIR");
    if (src[0] == '/')
        snprintf(base, sizeof base, "%s", src);
    else
        snprintf(base, sizeof base, "%s/tests/data/%s", root ? root : ".", src);
    char abs[PATH_MAX];
    if (!realpath(base, abs)) {
        fprintf(stderr, "%s missing: test data is part of the repository\n", base);
        return -1;
    }
    for (int i = 0; i < n; i++) {
        snprintf(from, sizeof from, "%s/%s", abs, files[i]);
        snprintf(to, sizeof to, "%s/%s", dir, files[i]);
        if (access(from, R_OK) != 0 || symlink(from, to) != 0) {
            fprintf(stderr, "cannot link %s to %s\n", to, from);
            return -1;
        }
    }
    return 0;
}

char *at_test_vits_folder(const char *name, const char *model, const char *tok)
{
    char top[] = "/tmp/at-vits-XXXXXX";
    if (!mkdtemp(top)) return NULL;
    char *dir = malloc(strlen(top) + strlen(name) + 2);
    if (!dir) return NULL;
    sprintf(dir, "%s/%s", top, name);
    if (mkdir(dir, 0755) != 0 || link_files(dir, model, MODEL_FILES, 2) ||
        link_files(dir, tok, TOK_FILES, 2)) {
        at_test_vits_folder_remove(dir);
        return NULL;
    }
    return dir;
}

void at_test_vits_folder_remove(char *dir)
{
    if (!dir) return;
    char path[PATH_MAX + 64];
    for (int i = 0; i < 2; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, MODEL_FILES[i]);
        unlink(path);
        snprintf(path, sizeof path, "%s/%s", dir, TOK_FILES[i]);
        unlink(path);
    }
    rmdir(dir);
    char *slash = strrchr(dir, '/');
    if (slash) {
        *slash = '\0';
        rmdir(dir);
    }
    free(dir);
}
