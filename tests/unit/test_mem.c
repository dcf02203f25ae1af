/* test_mem.c - large working buffers (src/core/mem.c). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/mem.h"

/* Small and large requests come back aligned, writable over their whole
 * length and releasable with free(); an empty one is NULL. */
static void test_sizes(void **st)
{
    (void)st;
    const size_t sizes[] = {1, 100, 4096, AT_MEM_LARGE_MIN - 1, AT_MEM_LARGE_MIN, 3 * AT_MEM_LARGE_MIN + 12};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        unsigned char *p = at_mem_large(sizes[i]);
        assert_non_null(p);
        assert_int_equal((uintptr_t)p % 64, 0);
        if (sizes[i] >= AT_MEM_LARGE_MIN) assert_int_equal((uintptr_t)p % ((size_t)2 << 20), 0);
        memset(p, 0xa5, sizes[i]);
        assert_int_equal(p[sizes[i] - 1], 0xa5);
        free(p);
    }
    assert_null(at_mem_large(0));
}

/* Resident pages of this process, from /proc/self/statm. */
static long resident_pages(void)
{
    long size = 0, rss = -1;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        if (fscanf(f, "%ld %ld", &size, &rss) != 2) rss = -1;
        fclose(f);
    }
    return rss;
}

/* A mapping reads as zeros, is writable over its whole length, a new one
 * after it does not show the old one's bytes, and unmapping gives the
 * touched memory back to the system (the resident size falls again). */
static void test_map(void **st)
{
    (void)st;
    assert_null(at_mem_map(0));
    const size_t sizes[] = {1, 4096, AT_MEM_LARGE_MIN + 12, (size_t)64 << 20};
    long page = sysconf(_SC_PAGESIZE);
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        size_t n = sizes[i];
        for (int round = 0; round < 2; round++) {
            long before = resident_pages();
            unsigned char *p = at_mem_map(n);
            assert_non_null(p);
            assert_int_equal((uintptr_t)p % (uintptr_t)page, 0);
            if (n >= ((size_t)2 << 20)) assert_int_equal((uintptr_t)p % ((uintptr_t)2 << 20), 0);
            for (size_t k = 0; k < n; k += 4093) assert_int_equal(p[k], 0);
            assert_int_equal(p[n - 1], 0);
            memset(p, 0x5a, n);
            assert_int_equal(p[n - 1], 0x5a);
            long touched = resident_pages();
            at_mem_unmap(p, n);
            long after = resident_pages();
            if (n >= ((size_t)64 << 20) && before >= 0) {
                long mib = (1L << 20) / page;
                assert_true(touched - before >= 60 * mib); /* it was backed while used */
                assert_true(touched - after >= 60 * mib);  /* and given back */
            }
        }
    }
    at_mem_unmap(NULL, 10); /* like free(NULL) */
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_sizes), cmocka_unit_test(test_map)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
