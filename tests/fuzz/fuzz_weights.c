/* fuzz_weights - any bytes as a model file: a Hugging Face safetensors
 * file (nn/safetensors.h) and a whisper.cpp ggml file.  The loaders must
 * refuse what does not fit the file, never read outside it. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

#include "engines/asr/whisper/model_internal.h"
#include "nn/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* the loaders map a path: a memory file stands in */
    int fd = memfd_create("fuzz-model", MFD_CLOEXEC);
    if (fd < 0) return 0;
    if (write(fd, data, size) != (ssize_t)size) {
        close(fd);
        return 0;
    }
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    at_err err;
    at_nn_weights w;
    if (at_nn_safetensors_open(path, &w, NULL, NULL, &err) == 0) {
        for (size_t i = 0; i < w.n; i++) /* every tensor lies inside the map */
            if ((const uint8_t *)w.t[i].data + w.t[i].nbytes > (const uint8_t *)w.map + w.map_size)
                __builtin_trap();
        at_nn_weights_free(&w);
    }
    at_wsource src;
    if (at_whisper_ggml_open(path, &src, &err) == 0) at_wsource_free(&src);
    close(fd);
    return 0;
}
