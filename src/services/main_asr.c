/* The asr_streaming service binary: see services/runner.h. */
#include "services/runner.h"

/* Only these engines are linked into this binary. */
static const at_app_loaders loaders = {.asr = at_app_load_local_asr};

int main(int argc, char **argv)
{
    return at_services_main("asr_streaming", AT_APP_ASR, &loaders, argc, argv, 1);
}
