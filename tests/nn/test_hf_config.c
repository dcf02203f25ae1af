/* config.json reading (nn/safetensors.h: at_hf_config_*): integers and
 * floats within their bounds, defaults for absent keys, and values a
 * hostile file may hold. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <unistd.h>

#include "nn/safetensors.h"

static at_hf_config *config_of(const char *json)
{
    char path[] = "/tmp/at-hf-config-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, json, strlen(json)), (ssize_t)strlen(json));
    close(fd);
    at_err err = {0};
    at_hf_config *c = at_hf_config_load(path, &err);
    unlink(path);
    if (!c) fail_msg("%s: %s", json, err.msg);
    return c;
}

static void integers(void **st)
{
    (void)st;
    at_hf_config *c = config_of("{\"a\": 7, \"big\": 2.44444e+25, \"neg\": -1e300, \"half\": 2.5, "
                                "\"s\": \"7\", \"edge\": 4096}");
    at_err err = {0};
    int v = 0;
    assert_int_equal(at_hf_config_int_or(c, "a", 1, 100, 3, &v, &err), 0);
    assert_int_equal(v, 7);
    assert_int_equal(at_hf_config_int_or(c, "absent", 1, 100, 3, &v, &err), 0);
    assert_int_equal(v, 3);
    assert_int_equal(at_hf_config_int_or(c, "edge", 1, 4096, 3, &v, &err), 0);
    assert_int_equal(v, 4096);
    /* past int64's range: refused without converting (that conversion is
     * undefined behaviour, which the sanitizer build stops on) */
    assert_int_equal(at_hf_config_int_or(c, "big", 1, 100, 3, &v, &err), AT_E_CORRUPT);
    assert_non_null(strstr(err.msg, "\"big\""));
    assert_int_equal(at_hf_config_int_or(c, "neg", 1, 100, 3, &v, &err), AT_E_CORRUPT);
    assert_int_equal(at_hf_config_int_or(c, "half", 1, 100, 3, &v, &err), AT_E_CORRUPT);
    assert_int_equal(at_hf_config_int_or(c, "s", 1, 100, 3, &v, &err), AT_E_CORRUPT);
    assert_int_equal(at_hf_config_int_or(c, "edge", 1, 4095, 3, &v, &err), AT_E_CORRUPT);
    assert_int_equal(at_hf_config_int(c, "absent", 1, 100, &v, &err), AT_E_CORRUPT);
    at_hf_config_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(integers)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
