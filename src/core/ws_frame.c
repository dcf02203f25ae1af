#include "core/ws_frame.h"

#include <string.h>

size_t at_ws_frame_header(unsigned char out[AT_WS_FRAME_HEADER_MAX], int opcode, uint64_t len,
                          const unsigned char mask[4])
{
    size_t hl = 0;
    out[hl++] = (unsigned char)(0x80 | (opcode & 0x0f));
    if (len < 126) {
        out[hl++] = (unsigned char)(0x80 | len);
    } else if (len < 65536) {
        out[hl++] = 0x80 | 126;
        out[hl++] = (unsigned char)(len >> 8);
        out[hl++] = (unsigned char)len;
    } else {
        out[hl++] = 0x80 | 127;
        for (int i = 7; i >= 0; i--) out[hl++] = (unsigned char)(len >> (8 * i));
    }
    memcpy(out + hl, mask, 4);
    return hl + 4;
}

void at_ws_mask(unsigned char *dst, const unsigned char *src, size_t n, uint64_t offset,
                const unsigned char mask[4])
{
    for (size_t i = 0; i < n; i++) dst[i] = src[i] ^ mask[(offset + i) & 3];
}
