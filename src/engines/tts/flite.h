/* flite.h - CMU flite speech synthesis (English voices slt, kal, awb, rms).
 *
 * Audio is streamed through flite's audio-stream callback as it is made. */
#ifndef AT_ENGINES_TTS_FLITE_H
#define AT_ENGINES_TTS_FLITE_H

#include "engines/tts/tts.h"

at_tts_engine *at_tts_flite_new(at_err *err);

#endif
