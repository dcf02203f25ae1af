/* The tts service binary: see services/runner.h. */
#include "services/runner.h"

/* Only these engines are linked into this binary. */
static const at_app_loaders loaders = {.tts = at_app_load_local_tts};

int main(int argc, char **argv) { return at_services_main("tts", AT_APP_TTS, &loaders, argc, argv, 1); }
