/* safetensors.h - Hugging Face's safetensors files, and the config.json
 * beside them.
 *
 * safetensors: uint64 LE header length N, N bytes of JSON
 * {name: {dtype, shape, data_offsets: [begin, end]}} (offsets relative to
 * the end of the header), then the data, used in place (mapped). */
#ifndef AT_NN_SAFETENSORS_H
#define AT_NN_SAFETENSORS_H

#include "nn/weights.h"

/* Decides what a tensor is called in the model's table: writes the name
 * to out and returns 0 to keep the tensor, 1 to skip it (not used by the
 * model), -1 when the name does not fit. */
typedef int (*at_nn_rename_fn)(void *user, const char *file_name, char *out, size_t cap);

/* Opens path into w (which must be empty), keeping the tensors rename
 * accepts (rename NULL: every tensor under its own name).  F32, F16 and
 * BF16 tensors; every size and offset is checked against the file. */
int at_nn_safetensors_open(const char *path, at_nn_weights *w, at_nn_rename_fn rename, void *user,
                           at_err *err);

/* A Hugging Face folder's weights: dir/model.safetensors, else
 * dir/pytorch_model.bin, opened into w by at_nn_safetensors_open or
 * at_nn_torch_open (nn/torch_pickle.h); AT_E_IO when dir has neither. */
int at_nn_weights_open_dir(const char *dir, at_nn_weights *w, at_nn_rename_fn rename, void *user,
                           at_err *err);

/* config.json and generation_config.json: a JSON object, read with bounds
 * on every value (untrusted input). */
typedef struct at_hf_config at_hf_config;
/* NULL with AT_E_IO when the file is missing. */
at_hf_config *at_hf_config_load(const char *path, at_err *err);
void at_hf_config_free(at_hf_config *c);
const char *at_hf_config_path(const at_hf_config *c);
/* 1 if key is present (and not null). */
int at_hf_config_has(const at_hf_config *c, const char *key);
/* A required integer in lo..hi. */
int at_hf_config_int(const at_hf_config *c, const char *key, int lo, int hi, int *out, at_err *err);
/* The same, with def when the key is absent or null. */
int at_hf_config_int_or(const at_hf_config *c, const char *key, int lo, int hi, int def, int *out,
                        at_err *err);
int at_hf_config_float_or(const at_hf_config *c, const char *key, double lo, double hi, double def,
                          double *out, at_err *err);
int at_hf_config_bool_or(const at_hf_config *c, const char *key, int def, int *out, at_err *err);
/* A list of integer pairs ([[a, b], ...], generation_config.json's
 * "alignment_heads"): each value in lo..hi, at most cap pairs; *n = 0
 * when the key is absent. */
int at_hf_config_pairs(const at_hf_config *c, const char *key, int lo, int hi, int (*out)[2], int cap, int *n,
                       at_err *err);
/* An integer or a list of integers (eos_token_id), each in lo..hi, at
 * most cap; *n = 0 when the key is absent or null. */
int at_hf_config_ints(const at_hf_config *c, const char *key, int lo, int hi, int *out, int cap, int *n,
                      at_err *err);
/* A list of non-empty integer lists (bad_words_ids), flattened: list i is
 * vals[ends[i-1]..ends[i]) (ends[-1] = 0); at most cap values and
 * cap_lists lists. */
int at_hf_config_int_lists(const at_hf_config *c, const char *key, int lo, int hi, int *vals, int cap,
                           int *ends, int cap_lists, int *n_lists, at_err *err);
/* A string value, or def when absent; an error when not a string. */
int at_hf_config_string_or(const at_hf_config *c, const char *key, const char *def, const char **out,
                           at_err *err);

#endif
