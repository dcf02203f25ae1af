/* pipeline: the speech-to-speech front door on its own, driving the
 * asr_streaming, translate and tts services over the network. */
#include "services/runner.h"

int main(int argc, char **argv)
{
    return at_services_main("pipeline", AT_APP_PIPELINE, argc, argv, 1);
}
