/* torch_pickle.c - torch.save zip archives and a restricted unpickler. */
#include "nn/torch_pickle.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unzip.h>

#define MAX_PKL     (64u << 20) /* a 7B model's data.pkl is ~100 KB */
#define MAX_ENTRIES (1u << 20)  /* zip entries */
#define MAX_VALUES  (1u << 20)  /* unpickled objects */
#define MAX_ITEMS   (1u << 22)  /* container slots, all containers together */
#define MAX_STACK   (1u << 16)
#define MAX_MARKS   64u
#define MAX_MEMO    (1u << 20)
#define MAX_ZNAME   1024 /* zip entry names */
#define MAX_GLOBAL  128  /* GLOBAL's module and name lines */

/* ------------------------------------------------------------ zip in memory */

static uint64_t le(const uint8_t *p, int k)
{
    uint64_t x = 0;
    for (int i = 0; i < k; i++) x |= (uint64_t)p[i] << (8 * i);
    return x;
}

/* minizip reads through these callbacks from the mapped bytes, so the
 * archive is parsed where it lies and a stored entry's offset is an
 * offset into the map. */
typedef struct mem_stream {
    const uint8_t *p;
    size_t n, pos;
} mem_stream;

static voidpf ZCALLBACK z_open(voidpf opaque, const void *name, int mode)
{
    (void)name;
    (void)mode;
    mem_stream *s = opaque;
    s->pos = 0;
    return s;
}

static uLong ZCALLBACK z_read(voidpf opaque, voidpf stream, void *buf, uLong size)
{
    (void)opaque;
    mem_stream *s = stream;
    size_t k = s->n - s->pos < size ? s->n - s->pos : size;
    memcpy(buf, s->p + s->pos, k);
    s->pos += k;
    return (uLong)k;
}

static uLong ZCALLBACK z_write(voidpf opaque, voidpf stream, const void *buf, uLong size)
{
    (void)opaque;
    (void)stream;
    (void)buf;
    (void)size;
    return 0;
}

static ZPOS64_T ZCALLBACK z_tell(voidpf opaque, voidpf stream)
{
    (void)opaque;
    return ((mem_stream *)stream)->pos;
}

static long ZCALLBACK z_seek(voidpf opaque, voidpf stream, ZPOS64_T off, int origin)
{
    (void)opaque;
    mem_stream *s = stream;
    uint64_t base = origin == ZLIB_FILEFUNC_SEEK_SET ? 0 : origin == ZLIB_FILEFUNC_SEEK_CUR ? s->pos : s->n;
    if (off > s->n || base + off > s->n) return -1;
    s->pos = (size_t)(base + off);
    return 0;
}

static int ZCALLBACK z_close(voidpf opaque, voidpf stream)
{
    (void)opaque;
    (void)stream;
    return 0;
}

static int ZCALLBACK z_error(voidpf opaque, voidpf stream)
{
    (void)opaque;
    (void)stream;
    return 0;
}

typedef struct zentry {
    char *name;
    const uint8_t *data; /* in the map; NULL when compressed or encrypted */
    uint64_t size;
    unsigned long method;
} zentry;

typedef struct archive {
    zentry *e;
    size_t n;
    char prefix[MAX_ZNAME];  /* "<top>/" */
    const zentry **storages; /* the <top>/data/<key> entries, by name */
    size_t n_storages;
} archive;

static void archive_free(archive *a)
{
    for (size_t i = 0; i < a->n; i++) free(a->e[i].name);
    free(a->e);
    free(a->storages);
}

static int cmp_entry(const void *x, const void *y)
{
    return strcmp((*(const zentry *const *)x)->name, (*(const zentry *const *)y)->name);
}

/* 1 if the archive ends with its end-of-central-directory record (and
 * comment).  minizip would also accept a file cut inside that record when
 * the zip64 records before it survive; a cut file is refused instead. */
static int has_eocd(const uint8_t *p, size_t n)
{
    if (n < 22) return 0;
    size_t lo = n - 22 > 0xffff ? n - 22 - 0xffff : 0;
    for (size_t i = n - 22 + 1; i-- > lo;)
        if (p[i] == 'P' && p[i + 1] == 'K' && p[i + 2] == 5 && p[i + 3] == 6 &&
            le(p + i + 20, 2) == n - i - 22)
            return 1;
    return 0;
}

/* Reads the current entry through minizip, which checks its CRC: done for
 * the pickle only (small), not for the storages (all of a model). */
static int check_crc(unzFile uf)
{
    char buf[4096];
    int r;
    if (unzOpenCurrentFile(uf) != UNZ_OK) return -1;
    while ((r = unzReadCurrentFile(uf, buf, sizeof buf)) > 0) {}
    return unzCloseCurrentFile(uf) != UNZ_OK || r < 0 ? -1 : 0;
}

/* Lists every entry with where its bytes lie in p. */
static int read_zip(const uint8_t *p, size_t n, const char *path, archive *a, at_err *err)
{
    mem_stream ms = {p, n, 0};
    zlib_filefunc64_def ff = {z_open, z_read, z_write, z_tell, z_seek, z_close, z_error, &ms};
    unzFile uf = has_eocd(p, n) ? unzOpen2_64(path, &ff) : NULL;
    if (!uf) {
        /* torch < 1.6 wrote a sequence of pickles, starting with a magic
         * number pickled as a LONG1 */
        if (n >= 4 && p[0] == 0x80 && p[2] == 0x8a)
            return at_err_set(
                err, AT_E_UNSUPPORTED,
                "%s: legacy (torch < 1.6) format, not a zip archive: re-save it with a newer torch", path);
        return at_err_set(err, AT_E_CORRUPT, "%s: not a zip archive (or a truncated one)", path);
    }
    int rc = 0, zr;
    size_t cap = 0;
    char name[MAX_ZNAME];
    for (zr = unzGoToFirstFile(uf); zr == UNZ_OK; zr = unzGoToNextFile(uf)) {
        unz_file_info64 info;
        if (unzGetCurrentFileInfo64(uf, &info, name, sizeof name, NULL, 0, NULL, 0) != UNZ_OK) {
            rc = at_err_set(err, AT_E_CORRUPT, "%s: bad zip directory entry", path);
            break;
        }
        if (info.size_filename >= sizeof name) {
            rc = at_err_set(err, AT_E_CORRUPT, "%s: zip entry name of %lu bytes", path, info.size_filename);
            break;
        }
        name[info.size_filename] = 0;
        /* each entry takes at least a 46-byte directory record */
        if (a->n >= MAX_ENTRIES || a->n > n / 46) {
            rc = at_err_set(err, AT_E_CORRUPT, "%s: too many zip entries", path);
            break;
        }
        if (a->n == cap) {
            size_t nc = cap ? cap * 2 : 64;
            zentry *e = realloc(a->e, nc * sizeof *e);
            if (!e) {
                rc = at_err_set(err, AT_E_NOMEM, "out of memory");
                break;
            }
            a->e = e;
            cap = nc;
        }
        zentry *e = &a->e[a->n];
        memset(e, 0, sizeof *e);
        if (!(e->name = strdup(name))) {
            rc = at_err_set(err, AT_E_NOMEM, "out of memory");
            break;
        }
        a->n++;
        e->size = info.uncompressed_size;
        e->method = info.compression_method;
        if (info.compression_method != 0 || (info.flag & 1)) continue; /* refused if used */
        /* raw: no inflating, only the local header is read */
        int method = 0, level = 0;
        if (unzOpenCurrentFile2(uf, &method, &level, 1) != UNZ_OK) {
            rc = at_err_set(err, AT_E_CORRUPT, "%s: bad zip entry %s", path, name);
            break;
        }
        ZPOS64_T off = unzGetCurrentFileZStreamPos64(uf);
        unzCloseCurrentFile(uf);
        if (info.compressed_size != info.uncompressed_size || off > n || info.compressed_size > n - off) {
            rc = at_err_set(err, AT_E_CORRUPT, "%s: zip entry %s lies outside the file (truncated?)", path,
                            name);
            break;
        }
        e->data = p + off;
        const char *slash = strchr(name, '/');
        if (slash && slash != name && !strcmp(slash + 1, "data.pkl") && check_crc(uf)) {
            rc = at_err_set(err, AT_E_CORRUPT, "%s: %s fails its CRC check", path, name);
            break;
        }
    }
    if (!rc && zr != UNZ_END_OF_LIST_OF_FILE)
        rc = at_err_set(err, AT_E_CORRUPT, "%s: bad zip directory (truncated?)", path);
    unzClose(uf);
    return rc;
}

/* Finds <top>/data.pkl and sorts the <top>/data/ entries for lookups. */
static int find_layout(archive *a, const char *path, at_err *err)
{
    const zentry *pkl = NULL;
    for (size_t i = 0; i < a->n; i++) {
        const char *s = a->e[i].name, *slash = strchr(s, '/');
        if (!slash || slash == s || strcmp(slash + 1, "data.pkl")) continue;
        if (pkl)
            return at_err_set(err, AT_E_CORRUPT, "%s: two pickles (%s, %s): not one torch.save archive", path,
                              pkl->name, s);
        pkl = &a->e[i];
        snprintf(a->prefix, sizeof a->prefix, "%.*s/", (int)(slash - s), s);
    }
    if (!pkl)
        return at_err_set(err, AT_E_CORRUPT, "%s: no <folder>/data.pkl: not a torch.save archive", path);
    size_t plen = strlen(a->prefix);
    a->storages = calloc(a->n, sizeof *a->storages);
    if (!a->storages) return at_err_set(err, AT_E_NOMEM, "out of memory");
    for (size_t i = 0; i < a->n; i++)
        if (!strncmp(a->e[i].name, a->prefix, plen) && !strncmp(a->e[i].name + plen, "data/", 5))
            a->storages[a->n_storages++] = &a->e[i];
    qsort(a->storages, a->n_storages, sizeof *a->storages, cmp_entry);
    return 0;
}

static const zentry *find_entry(const archive *a, const char *rel)
{
    char name[MAX_ZNAME];
    if (snprintf(name, sizeof name, "%s%s", a->prefix, rel) >= (int)sizeof name) return NULL;
    for (size_t i = 0; i < a->n; i++)
        if (!strcmp(a->e[i].name, name)) return &a->e[i];
    return NULL;
}

static const zentry *find_storage(const archive *a, const char *key)
{
    char name[MAX_ZNAME];
    if (snprintf(name, sizeof name, "%sdata/%s", a->prefix, key) >= (int)sizeof name) return NULL;
    zentry k = {name, NULL, 0, 0};
    const zentry *kp = &k, **r = bsearch(&kp, a->storages, a->n_storages, sizeof *a->storages, cmp_entry);
    return r ? *r : NULL;
}

/* ------------------------------------------------------------- unpickler */

/* The callables a state dict names, and nothing else. */
enum { G_ODICT, G_TENSOR, G_PARAM, G_STORAGE };

typedef struct global_def {
    const char *module, *name;
    int kind;
    int supported; /* storages: 1 when at_dtype has the type */
    at_dtype type;
    int esize;
    const char *dtype; /* for messages */
} global_def;

static const global_def GLOBALS[] = {
    {"collections", "OrderedDict", G_ODICT, 0, AT_DT_F32, 0, ""},
    {"torch._utils", "_rebuild_tensor_v2", G_TENSOR, 0, AT_DT_F32, 0, ""},
    {"torch._utils", "_rebuild_parameter", G_PARAM, 0, AT_DT_F32, 0, ""},
    {"torch", "FloatStorage", G_STORAGE, 1, AT_DT_F32, 4, "float32"},
    {"torch", "HalfStorage", G_STORAGE, 1, AT_DT_F16, 2, "float16"},
    {"torch", "BFloat16Storage", G_STORAGE, 1, AT_DT_BF16, 2, "bfloat16"},
    /* known, so a model with an integer buffer gets a clear message (or
     * loads, when rename skips that buffer) */
    {"torch", "DoubleStorage", G_STORAGE, 0, AT_DT_F32, 8, "float64"},
    {"torch", "LongStorage", G_STORAGE, 0, AT_DT_F32, 8, "int64"},
    {"torch", "IntStorage", G_STORAGE, 0, AT_DT_F32, 4, "int32"},
    {"torch", "ShortStorage", G_STORAGE, 0, AT_DT_F32, 2, "int16"},
    {"torch", "CharStorage", G_STORAGE, 0, AT_DT_F32, 1, "int8"},
    {"torch", "ByteStorage", G_STORAGE, 0, AT_DT_F32, 1, "uint8"},
    {"torch", "BoolStorage", G_STORAGE, 0, AT_DT_F32, 1, "bool"},
};
#define N_GLOBALS (sizeof GLOBALS / sizeof GLOBALS[0])

enum { V_NONE, V_BOOL, V_INT, V_FLOAT, V_STR, V_TUPLE, V_LIST, V_DICT, V_GLOBAL, V_STORAGE, V_TENSOR };
static const char *const KIND_NAME[] = {"None", "bool", "int",    "float",   "str",   "tuple",
                                        "list", "dict", "global", "storage", "tensor"};

typedef struct val {
    int kind;
    union {
        int64_t i; /* V_BOOL, V_INT */
        struct {
            const char *s;
            uint32_t len;
        } str;
        struct {
            uint32_t *items; /* dicts: key, value, key, ... */
            uint32_t n, cap;
        } c;
        const global_def *g;
        struct {
            const global_def *g;
            const uint8_t *data;
            int64_t numel;
        } st;
        struct {
            uint32_t storage;
            int64_t offset, numel;
            int nd;
            int64_t shape[4];
        } t;
    } u;
} val;

typedef struct unpickler {
    const uint8_t *p, *end, *start;
    const char *path;
    const archive *a;
    val *v;
    uint32_t nv, capv;
    uint32_t *stack, sp;
    uint32_t marks[MAX_MARKS], nmarks;
    uint32_t *memo;           /* value + 1; 0 = unset */
    uint32_t nmemo, memo_len; /* slots allocated, slots set */
    size_t items;
    at_err *err;
} unpickler;

static void unpickler_free(unpickler *u)
{
    for (uint32_t i = 0; i < u->nv; i++)
        if (u->v[i].kind == V_TUPLE || u->v[i].kind == V_LIST || u->v[i].kind == V_DICT)
            free(u->v[i].u.c.items);
    free(u->v);
    free(u->stack);
    free(u->memo);
}

static size_t pos(const unpickler *u) { return (size_t)(u->p - u->start); }

#define FAIL(code, ...) at_err_set(u->err, code, __VA_ARGS__)

static int bad(unpickler *u, const char *what)
{
    return FAIL(AT_E_CORRUPT, "%s: data.pkl byte %zu: %s", u->path, pos(u), what);
}

static int new_val(unpickler *u, int kind, uint32_t *out)
{
    if (u->nv == u->capv) {
        if (u->nv >= MAX_VALUES) return bad(u, "too many objects");
        uint32_t nc = u->capv ? u->capv * 2 : 256;
        val *v = realloc(u->v, nc * sizeof *v);
        if (!v) return FAIL(AT_E_NOMEM, "out of memory");
        u->v = v;
        u->capv = nc;
    }
    memset(&u->v[u->nv], 0, sizeof u->v[u->nv]);
    u->v[u->nv].kind = kind;
    *out = u->nv++;
    return 0;
}

static int push(unpickler *u, uint32_t x)
{
    if (u->sp >= MAX_STACK) return bad(u, "stack deeper than a state dict needs");
    u->stack[u->sp++] = x;
    return 0;
}

/* Creates a value of kind and pushes it; its index in *out. */
static int push_new(unpickler *u, int kind, uint32_t *out)
{
    uint32_t x = 0;
    if (new_val(u, kind, &x)) return -1;
    if (out) *out = x;
    return push(u, x);
}

/* The stack's bottom for the current MARK: what lies below belongs to an
 * enclosing one. */
static uint32_t floor_of(const unpickler *u) { return u->nmarks ? u->marks[u->nmarks - 1] : 0; }

static int pop(unpickler *u, uint32_t *x)
{
    *x = 0;
    if (u->sp <= floor_of(u)) return bad(u, "stack underflow");
    *x = u->stack[--u->sp];
    return 0;
}

static int top(unpickler *u, uint32_t *x)
{
    *x = 0;
    if (u->sp <= floor_of(u)) return bad(u, "stack underflow");
    *x = u->stack[u->sp - 1];
    return 0;
}

static int add_item(unpickler *u, uint32_t c, uint32_t x)
{
    val *v = &u->v[c];
    if (u->items >= MAX_ITEMS) return bad(u, "too many container items");
    if (v->u.c.n == v->u.c.cap) {
        uint32_t nc = v->u.c.cap ? v->u.c.cap * 2 : 4;
        uint32_t *it = realloc(v->u.c.items, nc * sizeof *it);
        if (!it) return FAIL(AT_E_NOMEM, "out of memory");
        v->u.c.items = it;
        v->u.c.cap = nc;
    }
    v->u.c.items[v->u.c.n++] = x;
    u->items++;
    return 0;
}

static int need(unpickler *u, size_t k)
{
    return (size_t)(u->end - u->p) < k ? bad(u, "truncated pickle") : 0;
}

/* Pops the items above the top mark into a new tuple or list. */
static int pop_mark(unpickler *u, uint32_t *from)
{
    *from = 0;
    if (!u->nmarks) return bad(u, "no MARK to pop");
    *from = u->marks[--u->nmarks];
    return 0;
}

static int make_tuple(unpickler *u, uint32_t from)
{
    uint32_t t = 0;
    if (new_val(u, V_TUPLE, &t)) return -1;
    for (uint32_t i = from; i < u->sp; i++)
        if (add_item(u, t, u->stack[i])) return -1;
    u->sp = from;
    return push(u, t);
}

static int memo_put(unpickler *u, uint64_t idx)
{
    uint32_t x;
    if (top(u, &x)) return -1;
    /* picklers number memo slots from 0, so a slot past the pickle's size
     * is not something a state dict has */
    if (idx >= MAX_MEMO || idx > (uint64_t)(u->end - u->start)) return bad(u, "memo index out of range");
    if (idx >= u->nmemo) {
        uint32_t nc = u->nmemo ? u->nmemo : 256;
        while (nc <= idx) nc *= 2;
        uint32_t *m = realloc(u->memo, nc * sizeof *m);
        if (!m) return FAIL(AT_E_NOMEM, "out of memory");
        memset(m + u->nmemo, 0, (nc - u->nmemo) * sizeof *m);
        u->memo = m;
        u->nmemo = nc;
    }
    if (!u->memo[idx]) u->memo_len++;
    u->memo[idx] = x + 1;
    return 0;
}

static int memo_get(unpickler *u, uint64_t idx)
{
    if (idx >= u->nmemo || !u->memo[idx]) return bad(u, "memo slot read before it was written");
    return push(u, u->memo[idx] - 1);
}

static int str_is(const val *v, const char *s)
{
    return v->kind == V_STR && v->u.str.len == strlen(s) && !memcmp(v->u.str.s, s, v->u.str.len);
}

/* GLOBAL and STACK_GLOBAL: only the names in GLOBALS. */
static int push_global(unpickler *u, const char *mod, size_t ml, const char *name, size_t nl)
{
    for (size_t i = 0; i < N_GLOBALS; i++)
        if (strlen(GLOBALS[i].module) == ml && !memcmp(GLOBALS[i].module, mod, ml) &&
            strlen(GLOBALS[i].name) == nl && !memcmp(GLOBALS[i].name, name, nl)) {
            uint32_t x;
            if (push_new(u, V_GLOBAL, &x)) return -1;
            u->v[x].u.g = &GLOBALS[i];
            return 0;
        }
    char m[MAX_GLOBAL + 1], n[MAX_GLOBAL + 1];
    /* the names go into a message: printable characters only */
    size_t k;
    for (k = 0; k < ml && k < MAX_GLOBAL; k++) m[k] = mod[k] >= 0x20 && mod[k] < 0x7f ? mod[k] : '?';
    m[k] = 0;
    for (k = 0; k < nl && k < MAX_GLOBAL; k++) n[k] = name[k] >= 0x20 && name[k] < 0x7f ? name[k] : '?';
    n[k] = 0;
    return FAIL(AT_E_UNSUPPORTED,
                "%s: data.pkl byte %zu: refused global %s.%s: a state dict needs only OrderedDict, "
                "torch._utils._rebuild_tensor_v2 and torch storages (nothing in the pickle is executed)",
                u->path, pos(u), m, n);
}

static int read_line(unpickler *u, const char **s, size_t *len)
{
    *s = NULL;
    *len = 0;
    size_t avail = (size_t)(u->end - u->p);
    const uint8_t *nl = memchr(u->p, '\n', avail < MAX_GLOBAL + 1 ? avail : MAX_GLOBAL + 1);
    if (!nl) return bad(u, avail <= MAX_GLOBAL ? "truncated pickle" : "GLOBAL name too long");
    *s = (const char *)u->p;
    *len = (size_t)(nl - u->p);
    u->p = nl + 1;
    return 0;
}

/* BINPERSID: ('storage', torch.<T>Storage, key, location, numel). */
static int persistent_load(unpickler *u)
{
    uint32_t t = 0;
    if (pop(u, &t)) return -1;
    const val *pid = &u->v[t];
    if (pid->kind != V_TUPLE || pid->u.c.n != 5)
        return bad(u, "persistent id is not a ('storage', type, key, location, numel) tuple");
    const val *tag = &u->v[pid->u.c.items[0]], *ty = &u->v[pid->u.c.items[1]],
              *key = &u->v[pid->u.c.items[2]], *loc = &u->v[pid->u.c.items[3]],
              *num = &u->v[pid->u.c.items[4]];
    if (!str_is(tag, "storage")) return bad(u, "persistent id is not a 'storage' tuple");
    if (ty->kind != V_GLOBAL || ty->u.g->kind != G_STORAGE)
        return bad(u, "persistent id's storage type is not a torch storage class");
    if (key->kind != V_STR || loc->kind != V_STR || num->kind != V_INT)
        return bad(u, "persistent id's key, location or size has the wrong type");
    char k[MAX_ZNAME];
    if (key->u.str.len >= 256 || memchr(key->u.str.s, 0, key->u.str.len) ||
        memchr(key->u.str.s, '/', key->u.str.len))
        return bad(u, "bad storage key");
    snprintf(k, sizeof k, "%.*s", (int)key->u.str.len, key->u.str.s);
    const zentry *e = find_storage(u->a, k);
    if (!e) return FAIL(AT_E_CORRUPT, "%s: storage %s named by the pickle is not in the archive", u->path, k);
    if (!e->data)
        return FAIL(AT_E_UNSUPPORTED,
                    "%s: storage %s is compressed or encrypted (zip method %lu): torch.save writes them "
                    "stored, to be used in place",
                    u->path, k, e->method);
    int64_t numel = num->u.i;
    int es = ty->u.g->esize;
    /* torch.save aligns storages to 64 bytes; the model code reads the
     * values in place as their type */
    if ((uintptr_t)e->data % (uintptr_t)es)
        return FAIL(AT_E_UNSUPPORTED, "%s: storage %s is not aligned to its %d-byte elements", u->path, k,
                    es);
    if (numel < 0 || (uint64_t)numel > e->size / (uint64_t)es)
        return FAIL(AT_E_CORRUPT,
                    "%s: storage %s claims %lld elements of %d bytes, the archive holds %llu bytes", u->path,
                    k, (long long)numel, es, (unsigned long long)e->size);
    /* ty points into u->v, which a new value may move */
    const global_def *g = ty->u.g;
    uint32_t s;
    if (push_new(u, V_STORAGE, &s)) return -1;
    val *sv = &u->v[s];
    sv->u.st.g = g;
    sv->u.st.data = e->data;
    sv->u.st.numel = numel;
    return 0;
}

/* _rebuild_tensor_v2(storage, offset, size, stride, requires_grad,
 * backward_hooks[, metadata]): a contiguous view inside its storage. */
static int rebuild_tensor(unpickler *u, const val *args)
{
    if (args->u.c.n != 6 && args->u.c.n != 7) return bad(u, "_rebuild_tensor_v2 takes 6 or 7 arguments");
    const uint32_t *a = args->u.c.items;
    const val *st = &u->v[a[0]], *off = &u->v[a[1]], *size = &u->v[a[2]], *stride = &u->v[a[3]];
    if (st->kind != V_STORAGE) return bad(u, "_rebuild_tensor_v2 on something other than a storage");
    if (off->kind != V_INT || size->kind != V_TUPLE || stride->kind != V_TUPLE)
        return bad(u, "_rebuild_tensor_v2's offset, size or stride has the wrong type");
    if (u->v[a[4]].kind != V_BOOL) return bad(u, "_rebuild_tensor_v2's requires_grad is not a bool");
    if (u->v[a[5]].kind != V_DICT || u->v[a[5]].u.c.n)
        return bad(u, "_rebuild_tensor_v2 with backward hooks (a state dict has none)");
    int nd = (int)size->u.c.n;
    if (nd > 4) return bad(u, "tensor of more than 4 dimensions");
    if (stride->u.c.n != (uint32_t)nd) return bad(u, "tensor's size and stride differ in length");
    int64_t shape[4] = {1, 1, 1, 1}, numel = 1;
    int zero = 0, over = 0;
    for (int i = 0; i < nd; i++) {
        const val *d = &u->v[size->u.c.items[i]];
        if (d->kind != V_INT || d->u.i < 0 || d->u.i > INT32_MAX)
            return bad(u, "tensor has a negative, huge or non-integer size");
        shape[i] = d->u.i;
        /* the product of the non-zero sizes stays in range, so a table
         * reader multiplying them in any order cannot overflow */
        if (!shape[i])
            zero = 1;
        else if (__builtin_mul_overflow(numel, shape[i], &numel))
            over = 1;
    }
    if (over) return bad(u, "tensor has a huge size");
    if (zero) numel = 0;
    /* contiguous: row-major strides, ignoring dimensions of size 1 */
    int64_t want = 1;
    for (int i = nd - 1; i >= 0; i--) {
        const val *s = &u->v[stride->u.c.items[i]];
        if (s->kind != V_INT) return bad(u, "tensor has a non-integer stride");
        if (shape[i] > 1 && !zero && s->u.i != want)
            return FAIL(AT_E_UNSUPPORTED,
                        "%s: data.pkl byte %zu: tensor is not contiguous (stride %lld, want %lld)", u->path,
                        pos(u), (long long)s->u.i, (long long)want);
        if (shape[i] > 1) want *= shape[i];
    }
    int64_t o = off->u.i;
    if (o < 0 || numel > st->u.st.numel || o > st->u.st.numel - numel)
        return FAIL(
            AT_E_CORRUPT,
            "%s: data.pkl byte %zu: tensor view (offset %lld, %lld elements) past the end of its storage "
            "(%lld elements)",
            u->path, pos(u), (long long)o, (long long)numel, (long long)st->u.st.numel);
    uint32_t t = 0;
    if (push_new(u, V_TENSOR, &t)) return -1;
    val *tv = &u->v[t];
    tv->u.t.storage = a[0];
    tv->u.t.offset = o;
    tv->u.t.numel = numel;
    tv->u.t.nd = nd;
    memcpy(tv->u.t.shape, shape, sizeof shape);
    return 0;
}

static int reduce(unpickler *u)
{
    uint32_t ai, fi;
    if (pop(u, &ai) || pop(u, &fi)) return -1;
    const val *f = &u->v[fi], *args = &u->v[ai];
    if (f->kind != V_GLOBAL)
        return FAIL(AT_E_UNSUPPORTED, "%s: data.pkl byte %zu: REDUCE on a %s (only the tensor rebuilders)",
                    u->path, pos(u), KIND_NAME[f->kind]);
    if (args->kind != V_TUPLE) return bad(u, "REDUCE's arguments are not a tuple");
    switch (f->u.g->kind) {
    case G_ODICT:
        if (args->u.c.n) return bad(u, "OrderedDict with arguments");
        return push_new(u, V_DICT, NULL);
    case G_TENSOR: return rebuild_tensor(u, args);
    case G_PARAM:
        /* _rebuild_parameter(data, requires_grad, backward_hooks) */
        if (args->u.c.n != 3 || u->v[args->u.c.items[0]].kind != V_TENSOR)
            return bad(u, "_rebuild_parameter's arguments are not (tensor, bool, hooks)");
        return push(u, args->u.c.items[0]);
    default:
        return FAIL(AT_E_UNSUPPORTED,
                    "%s: data.pkl byte %zu: REDUCE on %s.%s is refused (only the tensor rebuilders)", u->path,
                    pos(u), f->u.g->module, f->u.g->name);
    }
}

static int set_items(unpickler *u, uint32_t from)
{
    if ((u->sp - from) % 2) return bad(u, "SETITEMS with an odd number of items");
    if (from <= floor_of(u)) return bad(u, "SETITEMS without a dict");
    uint32_t d = u->stack[from - 1];
    if (u->v[d].kind != V_DICT) return bad(u, "SETITEM on something other than a dict");
    for (uint32_t i = from; i < u->sp; i++)
        if (add_item(u, d, u->stack[i])) return -1;
    u->sp = from;
    return 0;
}

static int append_items(unpickler *u, uint32_t from)
{
    if (from <= floor_of(u)) return bad(u, "APPEND without a list");
    uint32_t l = u->stack[from - 1];
    if (u->v[l].kind != V_LIST) return bad(u, "APPEND on something other than a list");
    for (uint32_t i = from; i < u->sp; i++)
        if (add_item(u, l, u->stack[i])) return -1;
    u->sp = from;
    return 0;
}

/* Runs the pickle up to STOP; the result's index in *out. */
static int run(unpickler *u, uint32_t *out)
{
    uint32_t x, y, from;
    while (u->p < u->end) {
        uint8_t op = *u->p++;
        uint64_t k;
        switch (op) {
        case 0x80: /* PROTO */
            if (need(u, 1)) return -1;
            if (*u->p < 2 || *u->p > 5) return bad(u, "unsupported pickle protocol");
            u->p++;
            break;
        case 0x95: /* FRAME: a hint for buffered readers */
            if (need(u, 8)) return -1;
            u->p += 8;
            break;
        case '.': /* STOP */ return pop(u, out);
        case '(': /* MARK */
            if (u->nmarks >= MAX_MARKS) return bad(u, "MARKs nested deeper than a state dict needs");
            u->marks[u->nmarks++] = u->sp;
            break;
        case '}': /* EMPTY_DICT */
            if (push_new(u, V_DICT, NULL)) return -1;
            break;
        case ']': /* EMPTY_LIST */
            if (push_new(u, V_LIST, NULL)) return -1;
            break;
        case ')': /* EMPTY_TUPLE */
            if (push_new(u, V_TUPLE, NULL)) return -1;
            break;
        case 't': /* TUPLE */
            if (pop_mark(u, &from) || make_tuple(u, from)) return -1;
            break;
        case 0x85: /* TUPLE1 */
        case 0x86: /* TUPLE2 */
        case 0x87: /* TUPLE3 */
            k = op - 0x84u;
            if (u->sp - floor_of(u) < k) return bad(u, "stack underflow");
            if (make_tuple(u, u->sp - (uint32_t)k)) return -1;
            break;
        case 'X':  /* BINUNICODE */
        case 0x8c: /* SHORT_BINUNICODE */
            if (need(u, op == 'X' ? 4 : 1)) return -1;
            k = op == 'X' ? le(u->p, 4) : *u->p;
            u->p += op == 'X' ? 4 : 1;
            if (need(u, k)) return -1;
            if (push_new(u, V_STR, &x)) return -1;
            u->v[x].u.str.s = (const char *)u->p;
            u->v[x].u.str.len = (uint32_t)k;
            u->p += k;
            break;
        case 'J': /* BININT */
        case 'K': /* BININT1 */
        case 'M': /* BININT2 */
            k = op == 'J' ? 4 : op == 'K' ? 1 : 2;
            if (need(u, k) || push_new(u, V_INT, &x)) return -1;
            u->v[x].u.i = op == 'J' ? (int64_t)(int32_t)(uint32_t)le(u->p, 4) : (int64_t)le(u->p, (int)k);
            u->p += k;
            break;
        case 0x8a: /* LONG1: n bytes, little-endian two's complement */
            if (need(u, 1)) return -1;
            k = *u->p++;
            if (k > 8) return bad(u, "integer wider than 64 bits");
            if (need(u, k) || push_new(u, V_INT, &x)) return -1;
            {
                uint64_t v = le(u->p, (int)k);
                if (k && k < 8 && (u->p[k - 1] & 0x80)) v |= ~0ull << (8 * k);
                u->v[x].u.i = (int64_t)v;
            }
            u->p += k;
            break;
        case 'G': /* BINFLOAT: only its size matters here */
            if (need(u, 8) || push_new(u, V_FLOAT, NULL)) return -1;
            u->p += 8;
            break;
        case 0x88: /* NEWTRUE */
        case 0x89: /* NEWFALSE */
            if (push_new(u, V_BOOL, &x)) return -1;
            u->v[x].u.i = op == 0x88;
            break;
        case 'N': /* NONE */
            if (push_new(u, V_NONE, NULL)) return -1;
            break;
        case 'q': /* BINPUT */
        case 'r': /* LONG_BINPUT */
            k = op == 'q' ? 1 : 4;
            if (need(u, k)) return -1;
            u->p += k;
            if (memo_put(u, le(u->p - k, (int)k))) return -1;
            break;
        case 0x94: /* MEMOIZE */
            if (memo_put(u, u->memo_len)) return -1;
            break;
        case 'h': /* BINGET */
        case 'j': /* LONG_BINGET */
            k = op == 'h' ? 1 : 4;
            if (need(u, k)) return -1;
            u->p += k;
            if (memo_get(u, le(u->p - k, (int)k))) return -1;
            break;
        case 's': /* SETITEM */
            if (u->sp < 3 + floor_of(u)) return bad(u, "stack underflow");
            if (set_items(u, u->sp - 2)) return -1;
            break;
        case 'u': /* SETITEMS */
            if (pop_mark(u, &from) || set_items(u, from)) return -1;
            break;
        case 'a': /* APPEND */
            if (u->sp < 2 + floor_of(u)) return bad(u, "stack underflow");
            if (append_items(u, u->sp - 1)) return -1;
            break;
        case 'e': /* APPENDS */
            if (pop_mark(u, &from) || append_items(u, from)) return -1;
            break;
        case 'c': { /* GLOBAL: "module\nname\n" */
            const char *m, *n;
            size_t ml, nl;
            if (read_line(u, &m, &ml) || read_line(u, &n, &nl) || push_global(u, m, ml, n, nl)) return -1;
            break;
        }
        case 0x93: /* STACK_GLOBAL */
            if (pop(u, &y) || pop(u, &x)) return -1;
            if (u->v[x].kind != V_STR || u->v[y].kind != V_STR) return bad(u, "STACK_GLOBAL on non-strings");
            if (push_global(u, u->v[x].u.str.s, u->v[x].u.str.len, u->v[y].u.str.s, u->v[y].u.str.len))
                return -1;
            break;
        case 'R': /* REDUCE */
            if (reduce(u)) return -1;
            break;
        case 'Q': /* BINPERSID */
            if (persistent_load(u)) return -1;
            break;
        case 'b': /* BUILD: only an OrderedDict's attributes (_metadata), ignored */
            if (pop(u, &y) || top(u, &x)) return -1;
            if (u->v[x].kind != V_DICT) return bad(u, "BUILD on something other than a dict");
            break;
        default:
            u->p--;
            return FAIL(AT_E_UNSUPPORTED,
                        "%s: data.pkl byte %zu: pickle opcode 0x%02x is not one a state dict uses", u->path,
                        pos(u), op);
        }
    }
    return bad(u, "truncated pickle (no STOP)");
}

/* ------------------------------------------------------------- the loader */

static int add_tensor(unpickler *u, at_nn_weights *w, const val *key, const val *t, at_nn_rename_fn rename,
                      void *user)
{
    char fname[AT_NN_NAME_MAX * 2], name[AT_NN_NAME_MAX];
    if (key->kind != V_STR)
        return FAIL(AT_E_CORRUPT, "%s: state dict key is a %s", u->path, KIND_NAME[key->kind]);
    if (key->u.str.len >= sizeof fname || memchr(key->u.str.s, 0, key->u.str.len))
        return FAIL(AT_E_CORRUPT, "%s: tensor name %.*s... too long or not text", u->path,
                    key->u.str.len < 60 ? (int)key->u.str.len : 60, key->u.str.s);
    snprintf(fname, sizeof fname, "%.*s", (int)key->u.str.len, key->u.str.s);
    if (t->kind != V_TENSOR)
        return FAIL(AT_E_UNSUPPORTED, "%s: state dict entry %s is a %s, not a tensor", u->path, fname,
                    KIND_NAME[t->kind]);
    int keep = 0;
    if (rename)
        keep = rename(user, fname, name, sizeof name);
    else if (snprintf(name, sizeof name, "%s", fname) >= (int)sizeof name)
        keep = -1;
    if (keep < 0) return FAIL(AT_E_CORRUPT, "%s: tensor name %.60s... too long", u->path, fname);
    if (keep > 0) return 0;
    const val *st = &u->v[t->u.t.storage];
    const global_def *g = st->u.st.g;
    if (!g->supported)
        return FAIL(AT_E_UNSUPPORTED,
                    "%s: tensor %s is %s (torch.%s): only float32, float16 and bfloat16 load", u->path, fname,
                    g->dtype, g->name);
    int nd = t->u.t.nd ? t->u.t.nd : 1; /* a scalar is one value */
    return at_nn_weights_add(w, name, g->type, nd, t->u.t.shape, st->u.st.data + t->u.t.offset * g->esize,
                             (size_t)t->u.t.numel * (size_t)g->esize, u->err);
}

static int check_byteorder(const archive *a, const char *path, at_err *err)
{
    const zentry *b = find_entry(a, "byteorder");
    if (!b) return 0; /* torch < 2.1 wrote none: little-endian machines */
    if (!b->data) return at_err_set(err, AT_E_UNSUPPORTED, "%s: compressed byteorder record", path);
    if ((b->size == 6 || (b->size == 7 && b->data[6] == '\n')) && !memcmp(b->data, "little", 6)) return 0;
    return at_err_set(err, AT_E_UNSUPPORTED, "%s: storages are not little-endian (byteorder \"%.*s\")", path,
                      b->size < 16 ? (int)b->size : 16, (const char *)b->data);
}

static int load(const uint8_t *p, size_t n, const char *path, at_nn_weights *w, at_nn_rename_fn rename,
                void *user, at_err *err)
{
    archive a = {NULL, 0, "", NULL, 0};
    unpickler u;
    memset(&u, 0, sizeof u);
    int rc = read_zip(p, n, path, &a, err);
    if (!rc) rc = find_layout(&a, path, err);
    if (!rc) rc = check_byteorder(&a, path, err);
    const zentry *pkl = rc ? NULL : find_entry(&a, "data.pkl");
    if (!rc && !pkl->data)
        rc = at_err_set(err, AT_E_UNSUPPORTED, "%s: %s is compressed (zip method %lu): torch.save stores it",
                        path, pkl->name, pkl->method);
    if (!rc && pkl->size > MAX_PKL)
        rc = at_err_set(err, AT_E_TOO_LARGE, "%s: data.pkl of %llu bytes", path,
                        (unsigned long long)pkl->size);
    if (rc) goto done;
    u.p = u.start = pkl->data;
    u.end = pkl->data + pkl->size;
    u.path = path;
    u.a = &a;
    u.err = err;
    if (!(u.stack = malloc(MAX_STACK * sizeof *u.stack))) {
        rc = at_err_set(err, AT_E_NOMEM, "out of memory");
        goto done;
    }
    uint32_t root;
    if ((rc = run(&u, &root))) goto done;
    const val *d = &u.v[root];
    if (d->kind != V_DICT) {
        rc = at_err_set(err, AT_E_UNSUPPORTED, "%s: the pickle holds a %s, not a state dict", path,
                        KIND_NAME[d->kind]);
        goto done;
    }
    for (uint32_t i = 0; i + 1 < d->u.c.n; i += 2)
        if ((rc = add_tensor(&u, w, &u.v[d->u.c.items[i]], &u.v[d->u.c.items[i + 1]], rename, user))) break;
done:
    unpickler_free(&u);
    archive_free(&a);
    /* helpers return -1 once err is set: hand back err's class */
    return rc ? (err && err->code < 0 ? err->code : rc) : 0;
}

int at_nn_torch_open(const char *path, at_nn_weights *w, at_nn_rename_fn rename, void *user, at_err *err)
{
    memset(w, 0, sizeof *w);
    int rc = at_nn_map_file(path, &w->map, &w->map_size, err);
    if (rc) return rc;
    if ((rc = load(w->map, w->map_size, path, w, rename, user, err))) at_nn_weights_free(w);
    return rc;
}

int at_nn_torch_open_mem(const void *data, size_t n, const char *name, at_nn_weights *w,
                         at_nn_rename_fn rename, void *user, at_err *err)
{
    memset(w, 0, sizeof *w);
    int rc = load(data, n, name ? name : "(memory)", w, rename, user, err);
    if (rc) at_nn_weights_free(w);
    return rc;
}
