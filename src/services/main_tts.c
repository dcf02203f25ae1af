/* The tts service binary: see services/runner.h. */
#include "services/runner.h"

int main(int argc, char **argv)
{
    return at_services_main("tts", AT_APP_TTS, argc, argv, 1);
}
