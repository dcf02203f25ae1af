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
    /* Optional: n texts at once (a neural engine translates them as one
     * batch); outs[i] malloc'd.  NULL: translate, one by one. */
    int (*translate_many)(void *impl, const char *source, const char *target, const char *const *texts, int n,
                          char **outs, at_err *err);
    /* Optional: what serves the pair, written to buf (a model's name; a
     * router's "A + B via en").  NULL: the engine's name. */
    const char *(*route)(void *impl, const char *source, const char *target, char *buf, size_t cap);
} at_mt_ops;

/* Pairs sorted by source, then target (qsort's comparator), and a sorted
 * list's index of a pair, -1 when absent: engines with thousands of pairs
 * (NLLB's 200 languages) look them up in log time. */
int at_mt_pair_cmp(const void *a, const void *b);
long at_mt_pairs_find(const at_mt_pair *sorted, size_t n, const char *source, const char *target);

/* Takes ownership of impl (destroyed also on failure). */
at_mt_engine *at_mt_engine_new(const at_mt_ops *ops, void *impl, at_err *err);
void at_mt_engine_free(at_mt_engine *e);
const char *at_mt_engine_name(const at_mt_engine *e);
/* Names an engine made of others ("neural+apertium"); at most 63 bytes kept. */
void at_mt_engine_set_name(at_mt_engine *e, const char *name);
const at_mt_pair *at_mt_engine_pairs(const at_mt_engine *e, size_t *n);
int at_mt_engine_has_pair(const at_mt_engine *e, const char *source, const char *target);

/* Translates text.  Validates the pair (AT_E_UNSUPPORTED naming the
 * supported pairs) and empty text (AT_E_INVALID).  Same source and target
 * returns a copy. */
int at_mt_translate(at_mt_engine *e, const char *source, const char *target, const char *text, char **out,
                    at_err *err);
/* n texts of one pair, with the same checks (an empty text gives an empty
 * translation here); on failure no outs[i] is left allocated. */
int at_mt_translate_many(at_mt_engine *e, const char *source, const char *target, const char *const *texts,
                         int n, char **outs, at_err *err);
/* What translates the pair (see at_mt_ops.route), in buf. */
const char *at_mt_route(at_mt_engine *e, const char *source, const char *target, char *buf, size_t cap);

#endif
