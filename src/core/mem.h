/* mem.h - allocation of large, short-lived working buffers.
 *
 * A buffer of many megabytes that is allocated, filled and freed once per
 * request (a decoder's activations, a convolution's phase copies) spends
 * a measurable part of its life in page faults: glibc hands it fresh pages
 * from mmap, and the kernel maps them 4 KiB at a time on first touch.
 * at_mem_large aligns such a buffer to 2 MiB and asks for transparent huge
 * pages, so the same buffer costs a fault per 2 MiB (on kernels whose THP
 * setting is "madvise" this is the only way to get them).  Small requests
 * are plain malloc.  The result is released with free().
 *
 *   float *x = at_mem_large(n * sizeof *x);   // NULL when out of memory
 *   ...
 *   free(x);
 */
#ifndef AT_CORE_MEM_H
#define AT_CORE_MEM_H

#include <stddef.h>

/* Requests of at least this many bytes get the huge-page treatment. */
#define AT_MEM_LARGE_MIN ((size_t)4 << 20)

/* n bytes, uninitialised, 64-byte aligned at least; NULL when out of
 * memory or n == 0.  Release with free(). */
void *at_mem_large(size_t n);

/* n bytes of zeros, mapped from the kernel with huge pages asked for:
 * pages are backed (and cleared) only when first touched, a 2 MiB page a
 * fault, and at_mem_unmap(p, n) gives them all back to the system.  For
 * buffers that are made and dropped with each request (a transcription's
 * encoder state): malloc's fresh pages cost a fault per 4 KiB every time.
 * Page-aligned, 2 MiB-aligned from 2 MiB up; NULL when out of memory or
 * n == 0. */
void *at_mem_map(size_t n);
void at_mem_unmap(void *p, size_t n);

#endif
