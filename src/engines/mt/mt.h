/* mt.h - the machine translation engine interface.
 *
 * An engine translates UTF-8 text for a (source, target) pair of ISO 639-1
 * codes ("en" -> "es").  Engines list the pairs they support; services use
 * that list for LibreTranslate's /languages and to reject unknown pairs.
 *
 * Thread-safety: at_mt_translate() may be called from several threads at
 * once; the engine serialises whatever it must internally and never mixes
 * the text of concurrent requests. */
#ifndef AT_ENGINES_MT_H
#define AT_ENGINES_MT_H

#include <stddef.h>

#include "core/error.h"

typedef struct at_mt_pair {
    char source[16]; /* ISO 639-1 where one exists, e.g. "en" */
    char target[16];
} at_mt_pair;

typedef struct at_mt_engine at_mt_engine;

typedef struct at_mt_ops {
    const char *name; /* "apertium" */
    void (*destroy)(void *impl);
    /* *out is malloc'd UTF-8 on success. */
    int (*translate)(void *impl, const char *source, const char *target, const char *text, char **out,
                     at_err *err);
    /* Fills a static-lifetime (engine-lifetime) array. */
    const at_mt_pair *(*pairs)(void *impl, size_t *n);
} at_mt_ops;

/* Takes ownership of impl (destroyed also on failure). */
at_mt_engine *at_mt_engine_new(const at_mt_ops *ops, void *impl, at_err *err);
void at_mt_engine_free(at_mt_engine *e);
const char *at_mt_engine_name(const at_mt_engine *e);
const at_mt_pair *at_mt_engine_pairs(const at_mt_engine *e, size_t *n);
int at_mt_engine_has_pair(const at_mt_engine *e, const char *source, const char *target);

/* Translates text.  Validates the pair (AT_E_UNSUPPORTED naming the
 * supported pairs) and empty text (AT_E_INVALID).  Same source and target
 * returns a copy. */
int at_mt_translate(at_mt_engine *e, const char *source, const char *target, const char *text, char **out,
                    at_err *err);

#endif
