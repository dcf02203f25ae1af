/* isa.h - instruction-set levels of the CPU kernels. */
#ifndef AT_COMPUTE_ISA_H
#define AT_COMPUTE_ISA_H

#include <stddef.h>

/* Instruction-set levels of the CPU kernels, chosen by cpuid (never by
 * CPU model).  AMX is not used: it needs the kernel's permission per
 * process, and some virtual machines list it without granting it. */
typedef enum {
    AT_ISA_SCALAR = 0, /* portable C */
    AT_ISA_AVX2 = 1,   /* AVX2 + FMA + F16C */
    AT_ISA_AVX512 = 2  /* AVX-512F on top of AVX2 (f32 products) */
} at_isa;

/* The best level this CPU and operating system run. */
at_isa at_isa_detect(void);
const char *at_isa_name(at_isa isa);
/* "model name (model N)" from /proc/cpuinfo, for logs and figures:
 * kernels are chosen by features, but speed is reported per CPU. */
void at_cpu_name(char *out, size_t cap);

#endif
