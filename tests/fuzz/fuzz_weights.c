/* fuzz_weights - any bytes as a model file: a Hugging Face safetensors
 * file (nn/safetensors.h), a PyTorch pytorch_model.bin (nn/torch_pickle.h,
 * from the file and from memory) and a whisper.cpp ggml file.  The
 * loaders must refuse what does not fit the file, never read outside it,
 * and the unpickler must never get past a global it does not allow. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

#include "engines/asr/whisper/model_internal.h"
#include "nn/safetensors.h"
#include "nn/torch_pickle.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* every tensor lies inside the bytes it was loaded from */
static void check_inside(const at_nn_weights *w, const uint8_t *base, size_t n)
{
    for (size_t i = 0; i < w->n; i++)
        if ((const uint8_t *)w->t[i].data < base || (const uint8_t *)w->t[i].data + w->t[i].nbytes > base + n)
            __builtin_trap();
}

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
        check_inside(&w, w.map, w.map_size);
        at_nn_weights_free(&w);
    }
    if (at_nn_torch_open(path, &w, NULL, NULL, &err) == 0) {
        check_inside(&w, w.map, w.map_size);
        at_nn_weights_free(&w);
    }
    /* in memory: ASan sees a read past the input's end */
    if (at_nn_torch_open_mem(data, size, "fuzz", &w, NULL, NULL, &err) == 0) {
        check_inside(&w, data, size);
        at_nn_weights_free(&w);
    }
    at_wsource src;
    if (at_whisper_ggml_open(path, &src, &err) == 0) at_wsource_free(&src);
    close(fd);
    return 0;
}
