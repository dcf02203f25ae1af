/* fuzz_onnx - any bytes as an ONNX model: the protobuf reader, then the
 * Silero VAD loader that checks the graph and takes its weights, and one
 * chunk through the network when the loader accepts the file. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "engines/vad/onnx.h"
#include "engines/vad/silero.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile float sink;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    at_err err;
    at_onnx *m = at_onnx_parse(data, size, &err);
    if (m) {
        /* Every tensor's data must hold its element count. */
        float acc = 0;
        for (size_t i = 0; i < at_onnx_n_tensors(m); i++) {
            const at_onnx_tensor *t = at_onnx_tensor_at(m, i);
            if (t->f && t->n) acc += t->f[0] + t->f[t->n - 1];
            if (t->i && t->n) acc += (float)t->i[0] + (float)t->i[t->n - 1];
        }
        for (size_t i = 0; i < at_onnx_n_nodes(m); i++) {
            const at_onnx_node *nd = at_onnx_node_at(m, i);
            for (size_t k = 0; k < nd->n_in; k++) acc += (float)strlen(nd->in[k]);
            for (size_t k = 0; k < nd->n_out; k++) acc += (float)strlen(nd->out[k]);
        }
        sink = acc; /* keeps the reads */
        at_onnx_free(m);
    }
    /* The loader reads a path: hand it the input through a memory file. */
    int fd = memfd_create("fuzz.onnx", MFD_CLOEXEC);
    if (fd < 0) return 0;
    if (write(fd, data, size) == (ssize_t)size) {
        char path[64];
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
        at_silero *s = at_silero_load(path, &err);
        if (s) {
            at_silero_stream *st = at_silero_stream_new(s, &err);
            if (st) {
                float chunk[AT_SILERO_CHUNK];
                for (int i = 0; i < AT_SILERO_CHUNK; i++) chunk[i] = (float)(i % 7) * 0.01f;
                float p = at_silero_stream_prob(st, chunk);
                if (!(p >= 0.0f && p <= 1.0f) && p == p) __builtin_trap();
                at_silero_stream_free(st);
            }
            at_silero_free(s);
        }
    }
    close(fd);
    return 0;
}
