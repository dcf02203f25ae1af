/* ws_frame.h - the client side of RFC 6455 framing.
 *
 * The server side is libwebsockets'.  Our own clients (the standalone
 * pipeline's remote ASR engine and the test client) only need to build a
 * masked frame header and mask a payload; this is that one piece. */
#ifndef AT_CORE_WS_FRAME_H
#define AT_CORE_WS_FRAME_H

#include <stddef.h>
#include <stdint.h>

#define AT_WS_FRAME_HEADER_MAX 14

/* Writes a FIN frame header for `opcode` (1 text, 2 binary, 8 close, 9 ping,
 * 10 pong) and payload length `len`, masked with mask[4]; returns its
 * length (6, 8 or 14 bytes). */
size_t at_ws_frame_header(unsigned char out[AT_WS_FRAME_HEADER_MAX], int opcode, uint64_t len,
                          const unsigned char mask[4]);

/* dst[i] = src[i] ^ mask[(offset + i) & 3]: masks (or unmasks) a piece of a
 * payload that starts `offset` bytes into it.  dst may equal src. */
void at_ws_mask(unsigned char *dst, const unsigned char *src, size_t n, uint64_t offset,
                const unsigned char mask[4]);

#endif
