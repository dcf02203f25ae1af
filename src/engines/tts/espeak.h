/* espeak.h - espeak-ng speech synthesis (many languages, formant voices).
 *
 * Voices are named by espeak-ng's voice identifiers ("en", "en-us", "es",
 * "fr", ...).  libespeak-ng keeps global state, so synthesis is serialised
 * inside the engine. */
#ifndef AT_ENGINES_TTS_ESPEAK_H
#define AT_ENGINES_TTS_ESPEAK_H

#include "engines/tts/tts.h"

/* data_path NULL = the library default (espeak-ng-data of the system). */
at_tts_engine *at_tts_espeak_new(const char *data_path, at_err *err);

#endif
