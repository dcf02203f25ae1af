/* fuzz_subtitle - an ASR result with any segment texts and times, written
 * in every response_format (json, verbose_json, text, srt, vtt).  The JSON
 * formats must parse back, with the text intact where it was valid UTF-8.
 *
 * Input: records of [start f64][end f64][length u8][text], little-endian. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "engines/asr/asr.h"
#include "services/app.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    at_asr_result r;
    memset(&r, 0, sizeof r);
    memcpy(r.language, "en", 3);
    at_err err;
    size_t off = 0;
    while (off + 17 <= size && r.n_segments < 64) {
        double t[2];
        memcpy(t, data + off, 16);
        size_t len = data[off + 16];
        off += 17;
        if (len > size - off) len = size - off;
        char text[256];
        memcpy(text, data + off, len);
        text[len] = 0;
        off += len;
        if (at_asr_result_add(&r, text, t[0], t[1], &err) != 0) break;
        r.duration = t[1];
    }
    static const char *const fmts[] = {"json", "verbose_json", "text", "srt", "vtt"};
    for (size_t i = 0; i < sizeof fmts / sizeof fmts[0]; i++) {
        const char *ct = NULL;
        char *doc = at_asr_format_result(&r, fmts[i], "transcribe", (int)(size & 3), &ct);
        if (!doc || !ct) __builtin_trap();
        if (strstr(fmts[i], "json")) {
            cJSON *o = cJSON_Parse(doc);
            if (!cJSON_IsString(cJSON_GetObjectItemCaseSensitive(o, "text"))) __builtin_trap();
            cJSON_Delete(o);
        }
        free(doc);
    }
    at_asr_result_free(&r);
    return 0;
}
