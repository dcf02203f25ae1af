/* mem.c - see mem.h. */
#include "core/mem.h"

#include <stdlib.h>
#include <sys/mman.h>

#define HUGE_PAGE ((size_t)2 << 20)

void *at_mem_large(size_t n)
{
    void *p = NULL;
    if (n == 0) return NULL;
    if (n < AT_MEM_LARGE_MIN) return posix_memalign(&p, 64, n) ? NULL : p;
    if (posix_memalign(&p, HUGE_PAGE, n)) return NULL;
#ifdef MADV_HUGEPAGE
    /* advice only: where THP is off or unsupported the buffer still works */
    (void)madvise(p, n, MADV_HUGEPAGE);
#endif
    return p;
}

void *at_mem_map(size_t n)
{
    if (n == 0) return NULL;
    void *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return NULL;
#ifdef MADV_HUGEPAGE
    (void)madvise(p, n, MADV_HUGEPAGE);
#endif
    return p;
}

void at_mem_unmap(void *p, size_t n)
{
    if (p) munmap(p, n);
}
