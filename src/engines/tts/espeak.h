/* espeak.h - espeak-ng speech synthesis (many languages, formant voices),
 * and its text-to-phoneme conversion for neural voices trained on
 * espeak-ng phonemes (VITS).
 *
 * Voices are named by espeak-ng's voice identifiers ("en", "en-us", "es",
 * "fr", ...).  The library runs in a worker process (espeak_worker.h):
 * text that crashes it fails its request with AT_E_ENGINE, and the next
 * request gets a fresh worker.  Requests on one engine run one at a time. */
#ifndef AT_ENGINES_TTS_ESPEAK_H
#define AT_ENGINES_TTS_ESPEAK_H

#include "engines/tts/tts.h"

/* Longest text at_espeak_phonemize accepts, in bytes (callers give it a
 * sentence or a few). */
#define AT_ESPEAK_PHONEMIZE_MAX 65536

/* data_path NULL = the library default (espeak-ng-data of the system).
 * Starts the engine's worker. */
at_tts_engine *at_tts_espeak_new(const char *data_path, at_err *err);

/* What the Python package phonemizer (3.3) returns for
 *   phonemize(text, language=voice, backend="espeak", strip=True,
 *             preserve_punctuation=True, with_stress=True)
 * i.e. its defaults otherwise: IPA from espeak_TextToPhonemes, phonemes not
 * separated, words by " ", stress marks kept, language switch flags such
 * as "(fr)" kept, lines (split at '\n', blank ones dropped) joined by '\n',
 * and the punctuation marks ;:,.!?¡¿—…"«»“”(){}[] with the whitespace
 * around them put back where they were (espeak never sees them).
 *
 * voice is an espeak-ng language code as phonemizer takes it: the first
 * listed voice whose first language it is ("en-us" -> gmw/en-US).  text is
 * UTF-8 (AT_E_INVALID otherwise) of at most AT_ESPEAK_PHONEMIZE_MAX bytes
 * (AT_E_TOO_LARGE).  *out is malloc'd ("" when nothing is left).
 *
 * Thread-safe: runs in one worker per process (default data path),
 * started on first use, one call at a time.  Differences from phonemizer:
 * it loads a fresh copy of the library per call, we keep one; espeak's
 * output is the same either way as far as our tests see. */
int at_espeak_phonemize(const char *voice, const char *text, char **out, at_err *err);

/* at_espeak_phonemize as a callback, the signature of at_vits_phonemize_fn;
 * user is an at_espeak_worker to run it in, NULL for the process's. */
int at_espeak_phonemizer(void *user, const char *language, const char *text, char **out, at_err *err);

#endif
