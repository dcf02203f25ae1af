/* router.h - several translation engines as one.
 *
 * A pair goes to the first engine, in the order given, that has it (so
 * the caller lists its preference: an OPUS-MT model for the pair, then a
 * many-to-many model such as NLLB, then Apertium).  A pair no engine has
 * is pivoted through English when one engine has source -> en and one
 * has en -> target: the text is translated twice, and at_mt_route says
 * so.  The router lists direct and pivot pairs alike. */
#ifndef AT_ENGINES_MT_ROUTER_H
#define AT_ENGINES_MT_ROUTER_H

#include "engines/mt/mt.h"

#define AT_MT_PIVOT "en"

/* Takes ownership of the n engines (freed also on failure). */
at_mt_engine *at_mt_router_new(at_mt_engine **engines, int n, at_err *err);

#endif
