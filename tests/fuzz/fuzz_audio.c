/* fuzz_audio - any bytes as an uploaded audio file: decoded (WAV, FLAC,
 * Ogg/Opus/Vorbis, MP3 through libsndfile) and resampled to 16 kHz, as the
 * services do.  Anything but a clean error or a valid signal is a bug. */
#include <stddef.h>
#include <stdint.h>

#include "core/audio.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    at_audio a;
    at_err err;
    /* 60 s: bounds the work of one input */
    if (at_audio_load_16k(data, size, 60.0, &a, &err) == 0) {
        if (a.sample_rate != 16000 || (a.n && !a.samples)) __builtin_trap();
        at_audio_free(&a);
    }
    return 0;
}
