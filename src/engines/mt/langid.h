/* langid.h - which language a text is in (Google's CLD2, Debian's
 * libcld2), for LibreTranslate's "source": "auto" and POST /detect.
 *
 * CLD2 is C++; langid_cld2.cc is the only C++ in the project, a thin
 * shim behind this C interface. */
#ifndef AT_ENGINES_MT_LANGID_H
#define AT_ENGINES_MT_LANGID_H

#include <stddef.h>

#include "core/error.h"

typedef struct at_langid_guess {
    char code[16];     /* ISO 639-1 where one exists ("en", "es"), else CLD2's code */
    double confidence; /* 0..100: the share of the text in that language, halved when CLD2 calls
                          the result unreliable (text too short or mixed) */
} at_langid_guess;

/* Up to 3 guesses, best first, into out[]; *n tells how many (0 when no
 * language was recognised, e.g. digits or punctuation only).  The text
 * must be valid UTF-8 (AT_E_INVALID otherwise). */
int at_langid_detect(const char *text, size_t len, at_langid_guess out[3], int *n, at_err *err);

#endif
