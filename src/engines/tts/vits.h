/* vits.h - neural voices: Hugging Face VITS folders (Meta's MMS-TTS,
 * kakao-enterprise's vits-ljs and vits-vctk) as a speech engine, on the
 * model and tokenizer of engines/tts/vits.
 *
 * Each folder is one voice, named after the folder ("mms-tts-eng",
 * "vits-ljs").  Its language comes from the name (an MMS-TTS folder's ISO
 * 639-3 code, given as ISO 639-1 where one exists) or from the
 * tokenizer's espeak-ng language ("en-us" -> "en").  Voices whose
 * tokenizer phonemizes go through espeak-ng (engines/tts/espeak.h), under
 * its lock; the model itself runs without one, so requests to neural
 * voices synthesise in parallel on the process's compute pool.
 *
 * Text is said a sentence at a time, and each sentence's audio is handed
 * on as the decoder makes it: the first sound leaves early, and a request
 * of any length is worked on in bounded pieces.  A sentence with nothing
 * the voice can say (only characters outside its vocabulary) is skipped;
 * a text with nothing at all fails.  Each sentence takes seed + its index,
 * so a request with a seed is reproducible. */
#ifndef AT_ENGINES_TTS_VITS_H
#define AT_ENGINES_TTS_VITS_H

#include "engines/tts/tts.h"

typedef struct at_tts_vits_config {
    int threads; /* compute threads (0: every core) */
} at_tts_vits_config;

/* dirs: n Hugging Face VitsModel folders (config.json, model.safetensors
 * or pytorch_model.bin, vocab.json, tokenizer_config.json). */
at_tts_engine *at_tts_vits_new(const char *const *dirs, int n, const at_tts_vits_config *cfg, at_err *err);

#endif
