#ifndef AT_COMPUTE_BACKEND_H
#define AT_COMPUTE_BACKEND_H
#include "compute/dtype.h"
#include "compute/isa.h"
#include "compute/kernels.h"
#include "compute/pool.h"
#endif
