/* fuzz_mt_text - any text to Apertium (English <-> Spanish) as POST
 * /translate hands it over: our deformatter, the null-flush pipeline
 * framing and the reformatter see every byte.  A translation must come
 * back for every input the engine accepts; inputs are capped at 600
 * bytes, the order of the services' text limit. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "engines/mt/apertium.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static at_mt_engine *ap;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    at_err err;
    if (!ap && !(ap = at_mt_apertium_new(NULL, 10000, &err))) abort();
    if (size < 1) return 0;
    int dir = data[0] & 1;
    data++, size--;
    if (size > 600) size = 600;
    char *t = malloc(size + 1);
    if (!t) return 0;
    memcpy(t, data, size);
    t[size] = 0; /* the service refuses a NUL inside q (400) */
    char *out = NULL;
    if (at_mt_translate(ap, dir ? "es" : "en", dir ? "en" : "es", t, &out, &err) == 0 && !out)
        __builtin_trap();
    free(out);
    free(t);
    return 0;
}
