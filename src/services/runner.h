/* runner.h - the daemon around the services: flags and environment,
 * logging, metrics, listeners, signal handling and draining.
 *
 * The three service binaries and `audio-translator serve` are this one
 * function with a different set of services. */
#ifndef AT_SERVICES_RUNNER_H
#define AT_SERVICES_RUNNER_H

#include "services/app.h"

/* kinds: AT_APP_* bits of the services to run; loaders: how their
 * engines load (see at_app_loaders).  argv[first..] are the flags.
 * Returns a process exit status. */
int at_services_main(const char *prog, int kinds, const at_app_loaders *loaders, int argc, char **argv,
                     int first);

#endif
