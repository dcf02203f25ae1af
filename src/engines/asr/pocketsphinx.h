/* pocketsphinx.h - the embedded English ASR engine (CMU pocketsphinx).
 *
 * Uses Debian's pocketsphinx-en-us acoustic model, dictionary and LM.
 * Each stream gets its own decoder state; utterances are split on the
 * decoder's voice activity detection so segment times are correct. */
#ifndef AT_ENGINES_ASR_POCKETSPHINX_H
#define AT_ENGINES_ASR_POCKETSPHINX_H

#include "engines/asr/asr.h"

/* model_dir: folder with en-us/, en-us.lm.bin, cmudict-en-us.dict;
 * NULL = the Debian default (/usr/share/pocketsphinx/model/en-us). */
at_asr_engine *at_asr_pocketsphinx_new(const char *model_dir, at_err *err);

/* Same, with a bound on decoders loaded at once (each ~1 s to load and tens
 * of MB): that many streams/transcriptions can run concurrently; one more
 * fails with AT_E_BUSY.  max_decoders <= 0 = the default (4).  Idle
 * decoders are kept and reused. */
at_asr_engine *at_asr_pocketsphinx_new_ex(const char *model_dir, int max_decoders, at_err *err);

#endif
