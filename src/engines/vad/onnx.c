/* onnx.c - a minimal ONNX reader (onnx.h).
 *
 * Protobuf wire format: a message is a sequence of (key, value) with
 * key = field << 3 | wire type; wire 0 is a varint, 1 eight bytes,
 * 2 a length-prefixed blob (strings, sub-messages, packed arrays),
 * 5 four bytes.  Field numbers are those of onnx.proto (IR version 3+). */
#include "engines/vad/onnx.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Bounds for untrusted files: what a crafted model can make us allocate is
 * capped relative to its size, whatever it claims. */
#define MAX_DEPTH 8         /* nested subgraphs */
#define MAX_NAME  512       /* bytes in a node, attribute or tensor name */
#define MAX_ITEMS (1 << 16) /* tensors, nodes; inputs/outputs per node */

struct at_onnx {
    at_onnx_tensor *t;
    size_t n_t, cap_t;
    at_onnx_node *nodes;
    size_t n_nodes, cap_nodes;
    void **blocks; /* every allocation, freed together */
    size_t n_blocks, cap_blocks;
    size_t budget; /* bytes m_alloc may still hand out */
};

typedef struct pb {
    const uint8_t *p, *end;
} pb;

/* ---- allocation: everything the model owns is in m->blocks ---- */

static void *m_alloc(at_onnx *m, size_t size)
{
    size_t cost = size + 64; /* malloc's own overhead and the block slot */
    if (cost > m->budget) return NULL;
    m->budget -= cost;
    if (m->n_blocks == m->cap_blocks) {
        size_t cap = m->cap_blocks ? m->cap_blocks * 2 : 64;
        void **b = realloc(m->blocks, cap * sizeof *b);
        if (!b) return NULL;
        m->blocks = b;
        m->cap_blocks = cap;
    }
    void *p = calloc(1, size ? size : 1);
    if (p) m->blocks[m->n_blocks++] = p;
    return p;
}

static char *m_str(at_onnx *m, const uint8_t *s, size_t n)
{
    if (n > MAX_NAME) return NULL;
    char *r = m_alloc(m, n + 1);
    if (r) memcpy(r, s, n);
    return r;
}

/* ---- wire format ---- */

static int pb_varint(pb *b, uint64_t *v)
{
    uint64_t r = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (b->p >= b->end) return -1;
        uint8_t c = *b->p++;
        r |= (uint64_t)(c & 0x7f) << shift;
        if (!(c & 0x80)) {
            *v = r;
            return 0;
        }
    }
    return -1;
}

static int pb_key(pb *b, uint32_t *field, uint32_t *wire)
{
    uint64_t k;
    if (pb_varint(b, &k) < 0) return -1;
    *field = (uint32_t)(k >> 3);
    *wire = (uint32_t)(k & 7);
    return 0;
}

static int pb_blob(pb *b, pb *sub)
{
    uint64_t n;
    if (pb_varint(b, &n) < 0 || n > (uint64_t)(b->end - b->p)) return -1;
    sub->p = b->p;
    sub->end = b->p + n;
    b->p += n;
    return 0;
}

static int pb_skip(pb *b, uint32_t wire)
{
    uint64_t v;
    pb sub;
    switch (wire) {
    case 0: return pb_varint(b, &v);
    case 1:
        if (b->end - b->p < 8) return -1;
        b->p += 8;
        return 0;
    case 2: return pb_blob(b, &sub);
    case 5:
        if (b->end - b->p < 4) return -1;
        b->p += 4;
        return 0;
    default: return -1; /* groups (3/4) are not used by onnx.proto */
    }
}

/* A repeated int64 field, packed (wire 2) or not (wire 0); appends to
 * out[*n] up to cap values. */
static int pb_ints(pb *b, uint32_t wire, int64_t *out, int *n, int cap)
{
    uint64_t v;
    if (wire == 0) {
        if (pb_varint(b, &v) < 0 || *n >= cap) return -1;
        out[(*n)++] = (int64_t)v;
        return 0;
    }
    pb sub;
    if (wire != 2 || pb_blob(b, &sub) < 0) return -1;
    while (sub.p < sub.end) {
        if (pb_varint(&sub, &v) < 0 || *n >= cap) return -1;
        out[(*n)++] = (int64_t)v;
    }
    return 0;
}

/* ---- onnx.proto messages ---- */

static int corrupt(at_err *err, const char *what)
{
    return at_err_set(err, AT_E_CORRUPT, "onnx: malformed %s", what);
}

/* An allocation refused by the budget or the caps above (or malloc). */
static int too_big(at_err *err)
{
    return at_err_set(err, AT_E_TOO_LARGE,
                      "onnx: the model needs more memory than its size allows "
                      "(names over %d bytes, over %d tensors or nodes?)",
                      MAX_NAME, MAX_ITEMS);
}

static at_onnx_tensor *new_tensor(at_onnx *m)
{
    if (m->n_t >= MAX_ITEMS) return NULL;
    if (m->n_t == m->cap_t) {
        size_t cap = m->cap_t ? m->cap_t * 2 : 32;
        at_onnx_tensor *t = realloc(m->t, cap * sizeof *t);
        if (!t) return NULL;
        m->t = t;
        m->cap_t = cap;
    }
    at_onnx_tensor *t = &m->t[m->n_t++];
    memset(t, 0, sizeof *t);
    return t;
}

/* TensorProto: dims 1, data_type 2, float_data 4, int64_data 7, name 8,
 * raw_data 9, data_location 14 (external data is refused). */
static int parse_tensor(at_onnx *m, pb b, const char *graph, at_err *err)
{
    at_onnx_tensor *t = new_tensor(m);
    if (!t) return too_big(err);
    t->graph = graph;
    t->name = "";
    pb raw = {0}, fdata = {0}, idata = {0};
    int have_raw = 0, have_f = 0, have_i = 0;
    uint32_t field, wire;
    uint64_t v;
    while (b.p < b.end) {
        if (pb_key(&b, &field, &wire) < 0) return corrupt(err, "tensor");
        if (field == 1) {
            if (pb_ints(&b, wire, t->dims, &t->ndims, AT_ONNX_MAX_DIMS) < 0)
                return corrupt(err, "tensor dims");
        } else if (field == 2 && wire == 0) {
            if (pb_varint(&b, &v) < 0) return corrupt(err, "tensor type");
            t->dtype = (int)v;
        } else if (field == 8 && wire == 2) {
            pb s;
            if (pb_blob(&b, &s) < 0) return corrupt(err, "tensor name");
            if (!(t->name = m_str(m, s.p, (size_t)(s.end - s.p)))) return too_big(err);
        } else if (field == 9 && wire == 2) {
            if (pb_blob(&b, &raw) < 0) return corrupt(err, "tensor raw_data");
            have_raw = 1;
        } else if (field == 4 && wire == 2) { /* packed floats */
            if (pb_blob(&b, &fdata) < 0) return corrupt(err, "tensor float_data");
            have_f = 1;
        } else if (field == 7 && wire == 2) { /* packed int64 */
            if (pb_blob(&b, &idata) < 0) return corrupt(err, "tensor int64_data");
            have_i = 1;
        } else if (field == 14 && wire == 0) {
            if (pb_varint(&b, &v) < 0) return corrupt(err, "tensor data_location");
            if (v == 1)
                return at_err_set(err, AT_E_UNSUPPORTED, "onnx: tensor with external data is not supported");
        } else if (pb_skip(&b, wire) < 0) {
            return corrupt(err, "tensor");
        }
    }
    /* element count: the product of dims; the data present must match it
     * before anything is allocated, so a lying shape cannot ask for a
     * huge allocation */
    size_t n = 1;
    for (int d = 0; d < t->ndims; d++) {
        if (t->dims[d] < 0 || (uint64_t)t->dims[d] > SIZE_MAX / 8 ||
            (t->dims[d] > 0 && n > (SIZE_MAX / 8) / (size_t)t->dims[d]))
            return corrupt(err, "tensor shape");
        n *= (size_t)t->dims[d];
    }
    t->n = n;
    if (t->dtype == AT_ONNX_FLOAT) {
        pb *src = have_raw ? &raw : have_f ? &fdata : NULL;
        size_t bytes = src ? (size_t)(src->end - src->p) : 0;
        if (bytes != n * 4) return corrupt(err, "float tensor size");
        float *f = m_alloc(m, n * sizeof *f);
        if (!f) return too_big(err);
        if (n) memcpy(f, src->p, n * 4); /* little-endian, as the host (x86, arm64) */
        t->f = f;
    } else if (t->dtype == AT_ONNX_INT64) {
        if (have_raw ? (size_t)(raw.end - raw.p) != n * 8
                     : (size_t)(idata.end - idata.p) < n || (!have_i && n))
            return corrupt(err, "int64 tensor size");
        int64_t *iv = m_alloc(m, n * sizeof *iv);
        if (!iv) return too_big(err);
        if (have_raw) {
            if (n) memcpy(iv, raw.p, n * 8);
        } else {
            size_t k = 0;
            while (idata.p < idata.end) {
                if (pb_varint(&idata, &v) < 0 || k >= n) return corrupt(err, "int64 tensor data");
                iv[k++] = (int64_t)v;
            }
            if (k != n) return corrupt(err, "int64 tensor size");
        }
        t->i = iv;
    }
    return 0;
}

static int parse_graph(at_onnx *m, pb b, const char *graph, int depth, at_err *err);

/* A growable list of strings for a node's inputs or outputs. */
static int push_str(at_onnx *m, const char ***list, size_t *n, size_t *cap, pb s)
{
    if (*n >= MAX_ITEMS) return -1;
    if (*n == *cap) {
        size_t c = *cap ? *cap * 2 : 4;
        const char **l = m_alloc(m, c * sizeof *l);
        if (!l) return -1;
        if (*n) memcpy(l, *list, *n * sizeof *l);
        *list = l; /* the old array stays in blocks until the end */
        *cap = c;
    }
    const char *str = m_str(m, s.p, (size_t)(s.end - s.p));
    if (!str) return -1;
    (*list)[(*n)++] = str;
    return 0;
}

/* NodeProto: input 1, output 2, name 3, op_type 4, attribute 5.
 * AttributeProto: name 1, t 5 (tensor), g 6 (graph), graphs 11. */
static int parse_node(at_onnx *m, pb b, const char *graph, int depth, at_err *err)
{
    at_onnx_node node = {.op = "", .name = "", .graph = graph};
    size_t cap_in = 0, cap_out = 0;
    pb attrs[16];
    int n_attrs = 0;
    uint32_t field, wire;
    while (b.p < b.end) {
        pb s;
        if (pb_key(&b, &field, &wire) < 0) return corrupt(err, "node");
        if (wire == 2 && field >= 1 && field <= 5) {
            if (pb_blob(&b, &s) < 0) return corrupt(err, "node");
            int rc = 0;
            if (field == 1)
                rc = push_str(m, &node.in, &node.n_in, &cap_in, s);
            else if (field == 2)
                rc = push_str(m, &node.out, &node.n_out, &cap_out, s);
            else if (field == 3)
                rc = (node.name = m_str(m, s.p, (size_t)(s.end - s.p))) ? 0 : -1;
            else if (field == 4)
                rc = (node.op = m_str(m, s.p, (size_t)(s.end - s.p))) ? 0 : -1;
            else if (n_attrs < 16)
                attrs[n_attrs++] = s;
            else
                return at_err_set(err, AT_E_UNSUPPORTED, "onnx: node with over 16 attributes");
            if (rc < 0) return too_big(err);
        } else if (pb_skip(&b, wire) < 0) {
            return corrupt(err, "node");
        }
    }
    /* the node goes in before its subgraphs' nodes */
    if (m->n_nodes >= MAX_ITEMS) return too_big(err);
    if (m->n_nodes == m->cap_nodes) {
        size_t cap = m->cap_nodes ? m->cap_nodes * 2 : 64;
        at_onnx_node *nn = realloc(m->nodes, cap * sizeof *nn);
        if (!nn) return too_big(err);
        m->nodes = nn;
        m->cap_nodes = cap;
    }
    m->nodes[m->n_nodes++] = node;
    for (int a = 0; a < n_attrs; a++) {
        pb ab = attrs[a];
        const char *aname = "";
        char *path = NULL; /* of this attribute's subgraphs: built once */
        pb sub;
        while (ab.p < ab.end) {
            if (pb_key(&ab, &field, &wire) < 0) return corrupt(err, "attribute");
            if (wire != 2 || (field != 1 && field != 5 && field != 6 && field != 11)) {
                if (pb_skip(&ab, wire) < 0) return corrupt(err, "attribute");
                continue;
            }
            if (pb_blob(&ab, &sub) < 0) return corrupt(err, "attribute");
            if (field == 1) {
                if (!(aname = m_str(m, sub.p, (size_t)(sub.end - sub.p)))) return too_big(err);
            } else if (field == 5) {
                /* a Constant's value: named after the node's output */
                size_t before = m->n_t;
                if (parse_tensor(m, sub, graph, err) < 0) return -1;
                if (m->n_t > before && strcmp(node.op, "Constant") == 0 && node.n_out == 1)
                    m->t[m->n_t - 1].name = node.out[0];
            } else {
                if (depth + 1 >= MAX_DEPTH)
                    return at_err_set(err, AT_E_UNSUPPORTED, "onnx: subgraphs nested too deep");
                if (!path) {
                    size_t len = strlen(graph) + strlen(node.name) + strlen(aname) + 4;
                    if (!(path = m_alloc(m, len))) return too_big(err);
                    snprintf(path, len, "%s%s%s/%s", graph, *graph ? "/" : "", node.name, aname);
                }
                if (parse_graph(m, sub, path, depth + 1, err) < 0) return -1;
            }
        }
    }
    return 0;
}

/* GraphProto: node 1, initializer 5. */
static int parse_graph(at_onnx *m, pb b, const char *graph, int depth, at_err *err)
{
    uint32_t field, wire;
    while (b.p < b.end) {
        pb s;
        if (pb_key(&b, &field, &wire) < 0) return corrupt(err, "graph");
        if (wire == 2 && (field == 1 || field == 5)) {
            if (pb_blob(&b, &s) < 0) return corrupt(err, "graph");
            int rc = field == 1 ? parse_node(m, s, graph, depth, err) : parse_tensor(m, s, graph, err);
            if (rc < 0) return rc;
        } else if (pb_skip(&b, wire) < 0) {
            return corrupt(err, "graph");
        }
    }
    return 0;
}

at_onnx *at_onnx_parse(const void *data, size_t len, at_err *err)
{
    at_onnx *m = calloc(1, sizeof *m);
    if (!m) {
        at_err_set(err, AT_E_NOMEM, "out of memory");
        return NULL;
    }
    static const uint8_t empty[1];
    if (!data) len = 0;
    m->budget = 4 * len + (1u << 20); /* data copied once, names, lists */
    pb b = {data ? data : empty, (data ? (const uint8_t *)data : empty) + len};
    int have_graph = 0;
    uint32_t field, wire;
    while (b.p < b.end) {
        pb s;
        if (pb_key(&b, &field, &wire) < 0) goto bad;
        if (field == 7 && wire == 2) { /* ModelProto.graph */
            if (pb_blob(&b, &s) < 0) goto bad;
            if (parse_graph(m, s, "", 0, err) < 0) goto fail;
            have_graph = 1;
        } else if (pb_skip(&b, wire) < 0) {
            goto bad;
        }
    }
    if (!have_graph) {
        at_err_set(err, AT_E_CORRUPT, "onnx: no graph (not an ONNX model?)");
        goto fail;
    }
    return m;
bad:
    corrupt(err, "model");
fail:
    at_onnx_free(m);
    return NULL;
}

at_onnx *at_onnx_load(const char *path, size_t max_bytes, at_err *err)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        at_err_set(err, AT_E_IO, "onnx: cannot open %s: %s", path, strerror(errno));
        return NULL;
    }
    at_onnx *m = NULL;
    long len = -1;
    if (fseek(f, 0, SEEK_END) == 0) len = ftell(f);
    if (len < 0 || fseek(f, 0, SEEK_SET) != 0) {
        at_err_set(err, AT_E_IO, "onnx: cannot read %s", path);
    } else if ((size_t)len > max_bytes) {
        at_err_set(err, AT_E_TOO_LARGE, "onnx: %s is %ld bytes, over the %zu allowed", path, len, max_bytes);
    } else {
        void *buf = malloc((size_t)len + 1);
        if (!buf)
            at_err_set(err, AT_E_NOMEM, "out of memory");
        else if (fread(buf, 1, (size_t)len, f) != (size_t)len)
            at_err_set(err, AT_E_IO, "onnx: short read on %s", path);
        else
            m = at_onnx_parse(buf, (size_t)len, err);
        free(buf);
    }
    fclose(f);
    return m;
}

void at_onnx_free(at_onnx *m)
{
    if (!m) return;
    for (size_t i = 0; i < m->n_blocks; i++) free(m->blocks[i]);
    free(m->blocks);
    free(m->t);
    free(m->nodes);
    free(m);
}

const at_onnx_tensor *at_onnx_find(const at_onnx *m, const char *graph, const char *name)
{
    for (size_t i = 0; i < m->n_t; i++)
        if (strcmp(m->t[i].name, name) == 0 && (!graph || strcmp(m->t[i].graph, graph) == 0)) return &m->t[i];
    return NULL;
}

size_t at_onnx_n_tensors(const at_onnx *m) { return m->n_t; }
const at_onnx_tensor *at_onnx_tensor_at(const at_onnx *m, size_t i) { return i < m->n_t ? &m->t[i] : NULL; }
size_t at_onnx_n_nodes(const at_onnx *m) { return m->n_nodes; }
const at_onnx_node *at_onnx_node_at(const at_onnx *m, size_t i)
{
    return i < m->n_nodes ? &m->nodes[i] : NULL;
}
