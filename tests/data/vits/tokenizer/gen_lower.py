#!/usr/bin/env python3
"""gen_lower.py - writes src/engines/tts/vits/tokenizer_lower.h: Python's
str.lower() of one code point as ranges, for the VITS tokenizer's
normalize_text.  The table follows this Python's Unicode version (3.11:
Unicode 14).

    /usr/bin/python3 tests/data/vits/tokenizer/gen_lower.py > src/engines/tts/vits/tokenizer_lower.h
    clang-format -i src/engines/tts/vits/tokenizer_lower.h
"""
import unicodedata

# (lo, hi, stride, delta): every stride-th code point from lo to hi lowers to cp + delta
m = [(c, ord(chr(c).lower())) for c in range(0x110000)
     if chr(c).lower() != chr(c) and len(chr(c).lower()) == 1]
runs = []
for c, l in m:
    d = l - c
    if runs:
        lo, hi, st, dd = runs[-1]
        if dd == d and (c - hi) in (1, 2) and (st == 0 or c - hi == st):
            runs[-1] = (lo, c, c - hi, d)
            continue
    runs.append((c, c, 0, d))

print("""/* tokenizer_lower.h - Python's str.lower() for one code point, as sorted
 * ranges {first, last, stride, delta}: every stride-th code point from
 * first to last lowers to itself + delta.  U+0130 (the one code point whose
 * lowercase is two, "i" + U+0307) is handled in tokenizer.c.  Unicode %s,
 * written by tests/data/vits/tokenizer/gen_lower.py.  Only tokenizer.c
 * includes it. */
#ifndef AT_VITS_TOKENIZER_LOWER_H
#define AT_VITS_TOKENIZER_LOWER_H
#include <stdint.h>
typedef struct at_vits_lower_range {
    uint32_t lo, hi;
    uint8_t stride;
    int32_t delta;
} at_vits_lower_range;
static const at_vits_lower_range at_vits_lower[] = {""" % unicodedata.unidata_version)
for lo, hi, st, d in runs:
    print("{0x%X, 0x%X, %d, %d}," % (lo, hi, st or 1, d))
print("};\n#endif")
