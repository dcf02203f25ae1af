/* espeak_worker.h - libespeak-ng in a process of its own.
 *
 * libespeak-ng 1.51 (Debian 12) crashes on some text: TranslateRules()
 * reads uninitialised match records when a word starts with a symbol a
 * voice's rules do not cover (Hindi "***" segfaults, depending on what the
 * stack holds; fixed upstream in 1.52), overflows a 40-byte phoneme buffer
 * with long emoji names, and frees a translator it still uses.  Inside a
 * service any of these would take every request down with it.  So every
 * call into the library happens in a worker process: a crash or a hang
 * costs the request that caused it an AT_E_ENGINE error, and the next
 * request starts a fresh worker.
 *
 * The worker is the running program executed again, with a marker argument
 * that a constructor in this module recognises before main() (so every
 * program that links it can start workers, with no executable of its own).
 * It keeps only its socket, starts with default signal actions and exits
 * when the socket closes, so it never outlives its parent.  Only this
 * module includes the library's headers.
 *
 * Thread-safety: calls on one worker are serialised (one request at a time
 * per process; the library is not reentrant).  Different workers run in
 * parallel. */
#ifndef AT_ENGINES_TTS_ESPEAK_WORKER_H
#define AT_ENGINES_TTS_ESPEAK_WORKER_H

#include <stddef.h>

#include "core/error.h"
#include "engines/tts/tts.h"

/* Longest text one request may carry, in bytes. */
#define AT_ESPEAK_WORKER_TEXT_MAX (1u << 20)

typedef struct at_espeak_worker at_espeak_worker;

/* One voice as the library lists it. */
typedef struct at_espeak_listed {
    char identifier[128]; /* "gmw/en-US" */
    int gender;           /* 1 male, 2 female, 0 unknown */
    /* Its language names in priority order, each ended by '\0', the list
     * ended by an empty name: "en-us\0en\0\0". */
    char languages[256];
} at_espeak_listed;

/* data_path NULL = the library's default (the system's espeak-ng-data).
 * Starts the worker, so a library that cannot initialise fails here. */
at_espeak_worker *at_espeak_worker_new(const char *data_path, at_err *err);
/* Stops the worker and waits for it; w may be NULL. */
void at_espeak_worker_free(at_espeak_worker *w);

/* The library's voices (*out malloc'd) and its sample rate. */
int at_espeak_worker_list(at_espeak_worker *w, at_espeak_listed **out, size_t *n, int *sample_rate,
                          at_err *err);

/* Speaks text (len bytes of UTF-8) with the voice loaded by identifier
 * file (NULL or "": by name) at wpm words a minute, handing PCM16 to cb as
 * it comes.  cb returning nonzero stops the worker: AT_E_CANCELLED. */
int at_espeak_worker_synth(at_espeak_worker *w, const char *name, const char *file, int wpm, const char *text,
                           size_t len, at_tts_chunk_cb cb, void *user, at_err *err);

/* espeak_TextToPhonemes() over text (len bytes) with the first voice whose
 * first language is code: IPA with '_' between phonemes, the non-empty
 * clauses joined by ' ' (*out malloc'd, "" when no clause gave any). */
int at_espeak_worker_phonemes(at_espeak_worker *w, const char *code, const char *text, size_t len, char **out,
                              at_err *err);

#endif
