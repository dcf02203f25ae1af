/* isa.c - which CPU kernels this machine runs, chosen by cpuid. */
#include "compute/isa.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compute/simd.h"

int at_simd_ok(void)
{
#if AT_HAVE_X86
#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
    return 1;
#else
    /* a fact of the CPU, the same for every thread: -1 until read */
    static atomic_int ok = -1;
    int v = atomic_load_explicit(&ok, memory_order_relaxed);
    if (v < 0) {
        unsigned a, b, c, d;
        v = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
            __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C);
        atomic_store_explicit(&ok, v, memory_order_relaxed);
    }
    return v;
#endif
#else
    return 0;
#endif
}

at_isa at_isa_detect(void)
{
#if AT_HAVE_X86
    /* libgcc's feature bits include the OS check (XGETBV) for AVX and
     * AVX-512 state */
    if (!at_simd_ok()) return AT_ISA_SCALAR;
    return __builtin_cpu_supports("avx512f") ? AT_ISA_AVX512 : AT_ISA_AVX2;
#else
    return AT_ISA_SCALAR;
#endif
}

const char *at_isa_name(at_isa isa)
{
    switch (isa) {
    case AT_ISA_AVX512: return "avx512";
    case AT_ISA_AVX2: return "avx2";
    default: return "scalar";
    }
}

void at_cpu_name(char *out, size_t cap)
{
    if (cap == 0) return;
    snprintf(out, cap, "unknown CPU");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return;
    char line[512], name[256] = "";
    int model = -1;
    while (fgets(line, sizeof line, f) && (!name[0] || model < 0)) {
        const char *v = strchr(line, ':');
        if (!v) continue;
        if (!name[0] && !strncmp(line, "model name", 10))
            snprintf(name, sizeof name, "%s", v + 2);
        else if (model < 0 && !strncmp(line, "model\t", 6))
            model = atoi(v + 1);
    }
    fclose(f);
    name[strcspn(name, "\n")] = '\0';
    if (name[0]) snprintf(out, cap, "%s (model %d)", name, model);
}
