/* torch_pickle.h - PyTorch state dicts as torch.save writes them
 * (pytorch_model.bin), read with a restricted unpickler.
 *
 * The file is a zip archive (torch >= 1.6) with one top folder (the file's
 * stem in torch.save(path), "archive" when saved to a buffer, as newer
 * torch always does): <top>/data.pkl, a pickle of the state dict, and
 * <top>/data/<key>, the raw little-endian storages, used in place (mapped,
 * like safetensors).  The pickle is never executed: a small stack machine
 * accepts only the opcodes and the few globals a state dict needs
 * (collections.OrderedDict, torch._utils._rebuild_tensor_v2 and
 * _rebuild_parameter, torch.*Storage) and refuses anything else by name.
 *
 * Limits: entries must be stored (torch.save never compresses; a
 * compressed entry is refused, not inflated), tensors must be contiguous
 * views of at most 4 dimensions, F32, F16 or BF16 (other storage types are
 * refused unless rename skips the tensor), and the storages' CRCs are not
 * checked (that would read every byte of a large model at load). */
#ifndef AT_NN_TORCH_PICKLE_H
#define AT_NN_TORCH_PICKLE_H

#include "nn/safetensors.h"
#include "nn/weights.h"

/* Opens path into w (which must be empty), keeping the tensors rename
 * accepts (rename NULL: every tensor under its own name), with the same
 * contract as at_nn_safetensors_open.  Tensors sharing a storage (tied
 * weights) point into the same bytes. */
int at_nn_torch_open(const char *path, at_nn_weights *w, at_nn_rename_fn rename, void *user, at_err *err);

/* The same over n bytes in memory (fuzzing, tests): w->map stays NULL and
 * the tensors point into data, which must outlive w.  name is used in
 * messages only. */
int at_nn_torch_open_mem(const void *data, size_t n, const char *name, at_nn_weights *w,
                         at_nn_rename_fn rename, void *user, at_err *err);

#endif
