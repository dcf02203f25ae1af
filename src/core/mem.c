/* mem.c - see mem.h. */
#include "core/mem.h"

#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

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
    if (n == 0 || n > SIZE_MAX - 2 * HUGE_PAGE) return NULL;
    /* a huge page must start on a 2 MiB boundary, which the kernel gives
     * only to some lengths: map a huge page more and trim both ends */
    size_t span = n < HUGE_PAGE ? n : n + HUGE_PAGE;
    char *p = mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return NULL;
    if (span == n) return p;
    size_t page = (size_t)sysconf(_SC_PAGESIZE), len = (n + page - 1) / page * page;
    char *a = (char *)(((uintptr_t)p + HUGE_PAGE - 1) & ~(uintptr_t)(HUGE_PAGE - 1));
    if (a > p) munmap(p, (size_t)(a - p));
    if (p + span > a + len) munmap(a + len, (size_t)(p + span - (a + len)));
#ifdef MADV_HUGEPAGE
    (void)madvise(a, len, MADV_HUGEPAGE); /* advice: without THP it works with small pages */
#endif
    return a;
}

void at_mem_unmap(void *p, size_t n)
{
    if (p) munmap(p, n);
}
