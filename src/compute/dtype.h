/* dtype.h - the data types of tensors: f32, f16, bf16 and ggml's block
 * quantizations (32 values per block), their sizes and conversions. */
#ifndef AT_COMPUTE_DTYPE_H
#define AT_COMPUTE_DTYPE_H

#include <stddef.h>
#include <stdint.h>

/* Values equal ggml's type ids where ggml has the type, so a ggml file's
 * tensor type maps directly. */
typedef enum {
    AT_DT_F32 = 0,
    AT_DT_F16 = 1,
    AT_DT_Q4_0 = 2,
    AT_DT_Q4_1 = 3,
    AT_DT_Q5_0 = 6,
    AT_DT_Q5_1 = 7,
    AT_DT_Q8_0 = 8,
    AT_DT_BF16 = 30
} at_dtype;

#define AT_QK 32 /* values per quantization block */

/* 1 if t is one of the types above. */
int at_dtype_valid(int t);
const char *at_dtype_name(at_dtype t);
/* Values per block (1 for f32/f16/bf16, 32 for quantized types). */
int at_dtype_block(at_dtype t);
/* Bytes per block. */
size_t at_dtype_block_bytes(at_dtype t);
/* Bytes of a row of n values; 0 when n is not a whole number of blocks. */
size_t at_dtype_row_bytes(at_dtype t, int64_t n);

float at_f16_to_f32(uint16_t h);
uint16_t at_f32_to_f16(float f); /* round to nearest even */
float at_bf16_to_f32(uint16_t h);

/* Converts n values (n a multiple of the block size) from src to float. */
void at_dequant_row(at_dtype t, const void *src, float *dst, int n);
/* Quantizes n floats (n a multiple of the block size) into dst with ggml's
 * reference rounding; returns the bytes written. t may be f32/f16 too. */
size_t at_quant_row(at_dtype t, const float *src, void *dst, int n);

#endif
