/* supervisor.h - `serve` as one process per service, restarted on a crash.
 *
 * An engine library that aborts (libflite did, on a run of punctuation)
 * takes its whole process down.  So `serve` forks a child per service
 * (asr_streaming, translate, tts, pipeline), each a normal single-service
 * process on its own port (the pipeline's with engines of its own).  The
 * supervisor restarts a child that dies (after 1 s, doubling up to 30 s
 * while it keeps dying within 10 s of its start), so a crash costs the
 * requests that child had in hand and nothing on the other ports.
 * SIGTERM/SIGINT are passed on to every child, which drain as usual.
 *
 * The supervisor forks before any thread exists; children start one after
 * another, each once the previous one accepts connections, so their logs
 * come in a fixed order.  Ports given as 0 are picked by the supervisor (a
 * free port at that moment) and kept across restarts. */
#ifndef AT_SERVICES_SUPERVISOR_H
#define AT_SERVICES_SUPERVISOR_H

#include "core/log.h"

#define AT_SUPERVISOR_MAX 8

typedef struct at_supervisor_cfg {
    const char *host;                     /* interface the children listen on */
    int n;                                /* services */
    const char *names[AT_SUPERVISOR_MAX]; /* for logs */
    int ports[AT_SUPERVISOR_MAX];         /* 0: pick a free one (written back) */
    int drain_timeout_s;                  /* the children's; bounds the stop */
    at_log *log;                          /* the supervisor's own log */
} at_supervisor_cfg;

/* Resolves the ports, then starts and watches the children.  Returns
 * twice, in effect: in a child with *which set to the index of the
 * service it must run (cfg->ports resolved, cfg->log no longer its to
 * use) and -1; in the supervisor, once every child has exited after
 * SIGTERM/SIGINT, with the exit status (0 when all children exited 0). */
int at_supervise(at_supervisor_cfg *cfg, int *which);

#endif
