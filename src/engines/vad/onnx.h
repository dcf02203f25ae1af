/* onnx.h - a minimal ONNX model reader: the tensors and the node list.
 *
 * Enough of the protobuf wire format and of onnx.proto to take the
 * weights out of a small exported network (Silero VAD) and to check that
 * its graph is the one our C code implements.  It does not execute
 * anything.  Tensors are collected from the graph's initializers and
 * from Constant nodes, in the main graph and, recursively, in the
 * subgraphs of If/Loop/Scan nodes; a tensor is found by its name (a
 * Constant's name is its output's).  Float and int64 tensors keep their
 * data; other types keep only their shape. */
#ifndef AT_ENGINES_VAD_ONNX_H
#define AT_ENGINES_VAD_ONNX_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

#define AT_ONNX_MAX_DIMS 8
#define AT_ONNX_FLOAT    1 /* TensorProto.DataType */
#define AT_ONNX_INT64    7

typedef struct at_onnx_tensor {
    const char *name;
    const char *graph; /* "" for the main graph, else "node/attribute" path */
    int dtype;
    int ndims;
    int64_t dims[AT_ONNX_MAX_DIMS];
    size_t n;         /* elements */
    const float *f;   /* AT_ONNX_FLOAT data, else NULL */
    const int64_t *i; /* AT_ONNX_INT64 data, else NULL */
} at_onnx_tensor;

typedef struct at_onnx_node {
    const char *op; /* op_type */
    const char *name;
    const char *graph; /* as at_onnx_tensor.graph */
    size_t n_in, n_out;
    const char **in, **out;
} at_onnx_node;

typedef struct at_onnx at_onnx;

/* Reads a whole .onnx file (refused beyond max_bytes). */
at_onnx *at_onnx_load(const char *path, size_t max_bytes, at_err *err);
/* Parses a model in memory (the bytes are not kept). */
at_onnx *at_onnx_parse(const void *data, size_t len, at_err *err);
void at_onnx_free(at_onnx *m);

/* The tensor called name in the (sub)graph named graph ("" the main one);
 * graph NULL: in any of them, the first in file order. */
const at_onnx_tensor *at_onnx_find(const at_onnx *m, const char *graph, const char *name);
size_t at_onnx_n_tensors(const at_onnx *m);
const at_onnx_tensor *at_onnx_tensor_at(const at_onnx *m, size_t i);
/* Nodes in file order, a subgraph's nodes right after the node owning it. */
size_t at_onnx_n_nodes(const at_onnx *m);
const at_onnx_node *at_onnx_node_at(const at_onnx *m, size_t i);

#endif
