/* Client-side WebSocket framing against RFC 6455's own examples. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "core/ws_frame.h"

static const unsigned char key[4] = {0x37, 0xfa, 0x21, 0x3d};

/* RFC 6455 5.7: a masked "Hello" is 81 85 37 fa 21 3d 7f 9f 4d 51 58. */
static void rfc_masked_hello(void **state)
{
    (void)state;
    unsigned char h[AT_WS_FRAME_HEADER_MAX], p[5];
    size_t hl = at_ws_frame_header(h, 1, 5, key);
    assert_int_equal(hl, 6);
    static const unsigned char want_h[] = {0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d};
    assert_memory_equal(h, want_h, 6);
    at_ws_mask(p, (const unsigned char *)"Hello", 5, 0, key);
    static const unsigned char want_p[] = {0x7f, 0x9f, 0x4d, 0x51, 0x58};
    assert_memory_equal(p, want_p, 5);
}

static void length_encodings(void **state)
{
    (void)state;
    unsigned char h[AT_WS_FRAME_HEADER_MAX];
    assert_int_equal(at_ws_frame_header(h, 2, 125, key), 6);
    assert_int_equal(h[1], 0x80 | 125);
    /* 256 bytes: RFC 6455 5.7's 16-bit example, 7e 01 00 (here masked) */
    assert_int_equal(at_ws_frame_header(h, 2, 256, key), 8);
    static const unsigned char w16[] = {0x82, 0xfe, 0x01, 0x00};
    assert_memory_equal(h, w16, 4);
    assert_int_equal(at_ws_frame_header(h, 2, 65535, key), 8);
    assert_int_equal(h[2], 0xff);
    assert_int_equal(h[3], 0xff);
    /* 65536 bytes: 7f 00 00 00 00 00 01 00 00 */
    assert_int_equal(at_ws_frame_header(h, 2, 65536, key), 14);
    static const unsigned char w64[] = {0x82, 0xff, 0, 0, 0, 0, 0, 1, 0, 0};
    assert_memory_equal(h, w64, 10);
    assert_memory_equal(h + 10, key, 4);
}

/* Masking in pieces at any offset equals masking in one go, and twice
 * gives back the original. */
static void mask_in_pieces(void **state)
{
    (void)state;
    unsigned char src[1000], whole[1000], parts[1000], back[1000];
    for (size_t i = 0; i < sizeof src; i++) src[i] = (unsigned char)(i * 7);
    at_ws_mask(whole, src, sizeof src, 0, key);
    for (size_t off = 0; off < sizeof src; off += 333) {
        size_t n = sizeof src - off < 333 ? sizeof src - off : 333;
        at_ws_mask(parts + off, src + off, n, off, key);
    }
    assert_memory_equal(whole, parts, sizeof src);
    at_ws_mask(back, whole, sizeof src, 0, key);
    assert_memory_equal(back, src, sizeof src);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(rfc_masked_hello),
        cmocka_unit_test(length_encodings),
        cmocka_unit_test(mask_in_pieces),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
