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

#include "core/config.h"

/* SHA-256 of the files at https://huggingface.co/ggerganov/whisper.cpp
 * (the LFS object ids).  Each value was read on that repository's own file
 * pages and/or in two or more independent public manifests (Nix pins,
 * LocalAI's gallery, downloaders) that agree; large-v2-q8_0 has only the
 * manifests.  max_mib: the published size plus ~10%.
 *
 * Silero VAD (MIT) comes from its GitHub release tags; the tag is pinned
 * because the file at the default branch changes from version to version
 * at the same size.  v5.1.2's file is also npm's @ricky0123/vad-web
 * silero_vad_v5.onnx, v6.2.1's its silero_vad_v6.onnx. */
static const at_model_info k_models[] = {
    {"tiny", "be07e048e1e599ad46341c8d2a135645097a538221678b7acdd1b1919c6e1b21", 85, NULL, NULL},
    {"tiny.en", "921e4cf8686fdd993dcd081a5da5b6c365bfde1162e72b08d75ac75289920b1f", 85, NULL, NULL},
    {"tiny-q5_1", "818710568da3ca15689e31a743197b520007872ff9576237bda97bd1b469c3d7", 36, NULL, NULL},
    {"tiny.en-q5_1", "c77c5766f1cef09b6b7d47f21b546cbddd4157886b3b5d6d4f709e91e66c7c2b", 36, NULL, NULL},
    {"tiny-q8_0", "c2085835d3f50733e2ff6e4b41ae8a2b8d8110461e18821b09a15c40c42d1cca", 48, NULL, NULL},
    {"tiny.en-q8_0", "5bc2b3860aa151a4c6e7bb095e1fcce7cf12c7b020ca08dcec0c6d018bb7dd94", 48, NULL, NULL},
    {"base", "60ed5bc3dd14eea856493d334349b405782ddcaf0028d4b5df4088345fba2efe", 160, NULL, NULL},
    {"base.en", "a03779c86df3323075f5e796cb2ce5029f00ec8869eee3fdfb897afe36c6d002", 160, NULL, NULL},
    {"base-q5_1", "422f1ae452ade6f30a004d7e5c6a43195e4433bc370bf23fac9cc591f01a8898", 65, NULL, NULL},
    {"base.en-q5_1", "4baf70dd0d7c4247ba2b81fafd9c01005ac77c2f9ef064e00dcf195d0e2fdd2f", 65, NULL, NULL},
    {"base-q8_0", "c577b9a86e7e048a0b7eada054f4dd79a56bbfa911fbdacf900ac5b567cbb7d9", 88, NULL, NULL},
    {"small", "1be3a9b2063867b937e64e2ec7483364a79917e157fa98c5d94b5c1fffea987b", 520, NULL, NULL},
    {"small.en", "c6138d6d58ecc8322097e0f987c32f1be8bb0a18532a3f88f734d1bbf9c41e5d", 520, NULL, NULL},
    {"small-q5_1", "ae85e4a935d7a567bd102fe55afc16bb595bdb618e11b2fc7591bc08120411bb", 200, NULL, NULL},
    {"small.en-q5_1", "bfdff4894dcb76bbf647d56263ea2a96645423f1669176f4844a1bf8e478ad30", 200, NULL, NULL},
    {"small-q8_0", "49c8fb02b65e6049d5fa6c04f81f53b867b5ec9540406812c643f177317f779f", 280, NULL, NULL},
    {"medium", "6c14d5adee5f86394037b4e4e8b59f1673b6cee10e3cf0b11bbdbee79c156208", 1700, NULL, NULL},
    {"medium.en", "cc37e93478338ec7700281a7ac30a10128929eb8f427dda2e865faa8f6da4356", 1700, NULL, NULL},
    {"medium-q5_0", "19fea4b380c3a618ec4723c3eef2eb785ffba0d0538cf43f8f235e7b3b34220f", 570, NULL, NULL},
    {"medium.en-q5_0", "76733e26ad8fe1c7a5bf7531a9d41917b2adc0f20f2e4f5531688a8c6cd88eb0", 570, NULL, NULL},
    {"medium-q8_0", "42a1ffcbe4167d224232443396968db4d02d4e8e87e213d3ee2e03095dea6502", 870, NULL, NULL},
    {"large-v1", "7d99f41a10525d0206bddadd86760181fa920438b6b33237e3118ff6c83bb53d", 3300, NULL, NULL},
    {"large-v2", "9a423fe4d40c82774b6af34115b8b935f34152246eb19e80e376071d3f999487", 3300, NULL, NULL},
    {"large-v2-q5_0", "3a214837221e4530dbc1fe8d734f302af393eb30bd0ed046042ebf4baf70f6f2", 1200, NULL, NULL},
    {"large-v2-q8_0", "fef54e6d898246a65c8285bfa83bd1807e27fadf54d5d4e81754c47634737e8c", 1700, NULL, NULL},
    {"large-v3", "64d182b440b98d5203c4f9bd541544d84c605196c4f7b845dfa11fb23594d1e2", 3300, NULL, NULL},
    {"large-v3-q5_0", "d75795ecff3f83b5faa89d1900604ad8c780abd5739fae406de19f23ecd98ad1", 1200, NULL, NULL},
    {"large-v3-turbo", "1fc70f774d38eb169993ac391eea357ef47c88757ef72ee5943879b7e8e2bc69", 1720, NULL, NULL},
    {"large-v3-turbo-q5_0", "394221709cd5ad1f40c46e6031ca61bce88931e6e088c188294c6d5a55ffa7e2", 610, NULL,
     NULL},
    {"large-v3-turbo-q8_0", "317eb69c11673c9de1e1f0d459b253999804ec71ac4c23c17ecf5fbe24e259a1", 930, NULL,
     NULL},
    {"silero-vad", "2623a2953f6ff3d2c1e61740c6cdb7168133479b267dfef114a4a3cc5bdd788f", 3,
     "https://github.com/snakers4/silero-vad/raw/v5.1.2/src/silero_vad/data/silero_vad.onnx",
     "silero_vad-v5.onnx"},
    {"silero-vad-v6", "1a153a22f4509e292a94e67d6f9b85e8deb25b4988682b7e174c65279d8788e3", 3,
     "https://github.com/snakers4/silero-vad/raw/v6.2.1/src/silero_vad/data/silero_vad.onnx",
     "silero_vad-v6.onnx"},
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

int at_models_file_name(const char *name, char *out, size_t cap)
{
    const at_model_info *mi = at_models_find(name);
    int n = mi && mi->file ? snprintf(out, cap, "%s", mi->file) : snprintf(out, cap, "ggml-%s.bin", name);
    return n < 0 || (size_t)n >= cap ? -1 : 0;
}

int at_models_cache_file(const char *dir, const char *name, const char *suffix, char *out, size_t cap,
                         at_err *err)
{
    char file[128];
    if (at_models_file_name(name, file, sizeof file) < 0)
        return at_err_set(err, AT_E_INVALID, "models: name too long");
    int n = snprintf(out, cap, "%s/%s%s", dir, file, suffix);
    if (n < 0 || (size_t)n >= cap) return at_err_set(err, AT_E_INVALID, "models: path too long");
    return 0;
}

/* A path is returned as is; a plain name becomes its place in the cache
 * (a Whisper file name, or a folder), which must exist. */
static int resolve(const char *arg, int folder, char *out, size_t cap, at_err *err)
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
    if (folder) {
        int n = snprintf(out, cap, "%s/%s", dir, arg);
        if (n < 0 || (size_t)n >= cap) return at_err_set(err, AT_E_INVALID, "models: path too long");
    } else if ((rc = at_models_cache_file(dir, arg, "", out, cap, err)) < 0) {
        return rc;
    }
    if (stat(out, &st) == 0 && (!folder || S_ISDIR(st.st_mode))) return 0;
    return at_err_set(err, AT_E_IO,
                      "model '%s' is neither a %s nor in the cache %s; run "
                      "'audio-translator models pull %s'",
                      arg, folder ? "folder" : "file", dir, arg);
}

int at_models_resolve(const char *arg, char *out, size_t cap, at_err *err)
{
    return resolve(arg, 0, out, cap, err);
}

int at_models_resolve_dir(const char *arg, char *out, size_t cap, at_err *err)
{
    return resolve(arg, 1, out, cap, err);
}
