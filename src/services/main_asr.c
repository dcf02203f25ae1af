/* The asr_streaming service binary: see services/runner.h. */
#include "services/runner.h"

int main(int argc, char **argv)
{
    return at_services_main("asr_streaming", AT_APP_ASR, argc, argv, 1);
}
