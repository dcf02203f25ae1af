/* test_mem.c - large working buffers (src/core/mem.c). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

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

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_sizes)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
