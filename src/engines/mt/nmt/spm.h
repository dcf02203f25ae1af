/* spm.h - SentencePiece in C: loads a `.model` file (a serialized
 * sentencepiece ModelProto) and encodes/decodes text exactly as the
 * reference implementation (sentencepiece 0.1.97, Debian's spm_encode and
 * spm_decode) does.
 *
 * Supported: unigram (Viterbi, the "optimized" encoder upstream uses by
 * default) and BPE models; the normaliser's precompiled character map
 * (nmt_nfkc, nfkc, ... or identity when empty), dummy prefix, extra
 * whitespace removal, whitespace escaping to U+2581, whitespace as suffix;
 * user-defined pieces; byte fallback; the denormaliser when a model has one.
 * Not supported: WORD and CHAR models, sampling, n-best, encode options
 * (bos/eos/reverse: callers add special ids themselves).
 *
 * The model file is untrusted input: every length is checked and nothing
 * is allocated beyond what the file's own size bounds.  A loaded model is
 * immutable: any number of threads may encode and decode with it at once. */
#ifndef AT_ENGINES_MT_NMT_SPM_H
#define AT_ENGINES_MT_NMT_SPM_H

#include <stddef.h>

#include "core/error.h"

/* Model files larger than this are refused (NLLB's is about 5 MB). */
#define AT_SPM_MAX_FILE         (64u << 20)
/* Longest text one encode call accepts, and longest normalised form. */
#define AT_SPM_MAX_ENCODE_BYTES (1u << 20)
#define AT_SPM_MAX_NORMALIZED   (8u << 20)

/* Piece types, numbered as in sentencepiece_model.proto. */
enum {
    AT_SPM_NORMAL = 1,
    AT_SPM_UNKNOWN = 2,
    AT_SPM_CONTROL = 3,
    AT_SPM_USER_DEFINED = 4,
    AT_SPM_UNUSED = 5,
    AT_SPM_BYTE = 6
};

/* Model types (TrainerSpec.ModelType). */
enum { AT_SPM_UNIGRAM = 1, AT_SPM_BPE = 2 };

typedef struct at_spm at_spm;

at_spm *at_spm_load(const char *path, at_err *err);
at_spm *at_spm_load_mem(const void *data, size_t n, at_err *err);
void at_spm_free(at_spm *m);

/* Number of pieces (ids are 0 .. size-1). */
int at_spm_size(const at_spm *m);
int at_spm_model_type(const at_spm *m); /* AT_SPM_UNIGRAM or AT_SPM_BPE */
/* The piece string of id (NUL-terminated; *len its length when len is not
 * NULL); NULL when id is out of range. */
const char *at_spm_piece(const at_spm *m, int id, size_t *len);
float at_spm_score(const at_spm *m, int id);
int at_spm_type(const at_spm *m, int id); /* 0 when out of range */
/* Id of an exact piece string, control and byte pieces included; -1 when
 * absent (sentencepiece's PieceToId would answer unk instead). */
int at_spm_piece_id(const at_spm *m, const char *piece);
int at_spm_piece_id_n(const at_spm *m, const char *piece, size_t len);

/* Special ids as sentencepiece reports them: the unknown piece, and the
 * trainer's bos/eos/pad pieces when they exist as control pieces (else -1). */
int at_spm_unk_id(const at_spm *m);
int at_spm_bos_id(const at_spm *m);
int at_spm_eos_id(const at_spm *m);
int at_spm_pad_id(const at_spm *m);

/* The normalised form of text (what the segmenter sees): malloc'd,
 * NUL-terminated, *out_len its length. */
int at_spm_normalize(const at_spm *m, const char *text, size_t len, char **out, size_t *out_len, at_err *err);

/* Encodes text (any bytes: invalid UTF-8 is replaced as upstream does) to
 * piece ids, like `spm_encode --output_format=id`.  *ids is malloc'd (the
 * caller frees it; NULL with *n 0 for an empty result).  Texts longer than
 * AT_SPM_MAX_ENCODE_BYTES fail with AT_E_TOO_LARGE. */
int at_spm_encode(const at_spm *m, const char *text, size_t len, int **ids, int *n, at_err *err);
/* The same, and also the pieces as `spm_encode --output_format=piece`
 * prints them: separated by single spaces, a run of unknown characters
 * merged into one piece (without byte fallback).  ids/n and pieces may each
 * be NULL when not wanted; *pieces is malloc'd and NUL-terminated. */
int at_spm_encode_pieces(const at_spm *m, const char *text, size_t len, int **ids, int *n, char **pieces,
                         at_err *err);

/* Decodes ids to text like spm_decode: control pieces dropped, unknown as
 * the model's unk surface (" \u2047 "), byte pieces reassembled (invalid
 * sequences as U+FFFD), U+2581 back to spaces, the leading space of the
 * first piece removed.  Ids out of range fail with AT_E_INVALID.  *out is
 * malloc'd and NUL-terminated; it can hold NUL bytes only from <0x00>,
 * which at_spm_decode_n's *out_len tells. */
int at_spm_decode(const at_spm *m, const int *ids, int n, char **out, at_err *err);
int at_spm_decode_n(const at_spm *m, const int *ids, int n, char **out, size_t *out_len, at_err *err);
/* Decodes piece strings (lens may be NULL for NUL-terminated pieces) as
 * sentencepiece's DecodePieces does: a string that is not a piece of the
 * model is copied through as it is. */
int at_spm_decode_pieces(const at_spm *m, const char *const *pieces, const size_t *lens, int n, char **out,
                         size_t *out_len, at_err *err);

#endif
