/* apertium.h - rule-based MT through Apertium's installed language pairs.
 *
 * Every pair is discovered from the *.mode files in the modes directory.
 * Each pair runs as a persistent pipeline of Apertium processes kept alive
 * and reused across requests (started lazily on first use), framed the way
 * apertium-apy does it (NUL-terminated blocks in null-flush mode), and
 * restarted if a process dies.  Requests on one pipeline are serialised, so
 * concurrent requests never mix. */
#ifndef AT_ENGINES_MT_APERTIUM_H
#define AT_ENGINES_MT_APERTIUM_H

#include "engines/mt/mt.h"

/* modes_dir NULL = the Debian default (/usr/share/apertium/modes).
 * timeout_ms: longest wait for one translation before the pipeline is
 * killed and restarted (0 = 30000). */
at_mt_engine *at_mt_apertium_new(const char *modes_dir, int timeout_ms, at_err *err);

/* The engine's own state, for the inspection/test helpers below.  Borrowed:
 * valid while the at_mt_engine lives. */
typedef struct at_mt_apertium at_mt_apertium;

/* Same as at_mt_apertium_new, also handing out the state (may be NULL). */
at_mt_engine *at_mt_apertium_new_ex(const char *modes_dir, int timeout_ms, at_mt_apertium **handle,
                                    at_err *err);

/* Test helper: SIGKILLs every process of the pair's pipeline (if running),
 * leaving them for the engine to notice, reap and restart on the next
 * request.  Returns the number of processes signalled, or AT_E_UNSUPPORTED
 * for an unknown pair. */
int at_mt_apertium_debug_kill(at_mt_apertium *a, const char *source, const char *target);

/* Number of processes in the pair's running pipeline (0 = not started). */
int at_mt_apertium_running(at_mt_apertium *a, const char *source, const char *target);

#endif
