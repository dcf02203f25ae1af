/* backend_cuda_none.c - the CUDA entry points of a build without AT_CUDA:
 * they say so, and the callers fall back to the CPU. */
#include "compute/backend.h"

int at_cuda_devices(at_err *err)
{
    at_err_set(err, AT_E_UNSUPPORTED, "built without CUDA (cmake -DAT_CUDA=ON)");
    return 0;
}

at_backend *at_backend_cuda_new(int device, int weights_only, at_err *err)
{
    (void)device;
    (void)weights_only;
    at_cuda_devices(err);
    return NULL;
}
