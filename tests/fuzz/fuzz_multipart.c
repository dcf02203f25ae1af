/* fuzz_multipart - any bytes as a multipart/form-data body, with the
 * boundary taken from the first line of the input. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "core/multipart.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nl = memchr(data, '\n', size < 80 ? size : 80);
    size_t bl = nl ? (size_t)(nl - data) : 0;
    char ct[160];
    snprintf(ct, sizeof ct, "multipart/form-data; boundary=%.*s", (int)bl, (const char *)data);
    const uint8_t *body = nl ? nl + 1 : data;
    size_t blen = size - (size_t)(body - data);
    at_form f;
    at_err err;
    if (at_multipart_parse(ct, body, blen, &f, &err) == 0) {
        for (size_t i = 0; i < f.n; i++) /* parts point into the body */
            if (f.parts[i].data < body || f.parts[i].data + f.parts[i].len > body + blen) __builtin_trap();
        char buf[64];
        at_form_text(&f, "model", buf, sizeof buf, &err);
    }
    return 0;
}
