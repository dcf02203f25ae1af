/* The translate service binary: see services/runner.h. */
#include "services/runner.h"

/* Only these engines are linked into this binary. */
static const at_app_loaders loaders = {.mt = at_app_load_local_mt};

int main(int argc, char **argv) { return at_services_main("translate", AT_APP_MT, &loaders, argc, argv, 1); }
