/* pipeline: the speech-to-speech front door on its own, driving the
 * asr_streaming, translate and tts services over the network. */
#include "services/runner.h"

/* Only these engines are linked into this binary. */
static const at_app_loaders loaders = {.remote = at_app_load_remote};

int main(int argc, char **argv)
{
    return at_services_main("pipeline", AT_APP_PIPELINE, &loaders, argc, argv, 1);
}
