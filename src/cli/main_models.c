/* audio-translator-models - the CLI's `models` command alone (list, pull,
 * path: the model cache).  Images install it as `audio-translator`, so a
 * job that fills the cache runs `audio-translator models pull NAME` as on
 * a workstation, without the engines the whole CLI links; it needs only
 * libcurl and OpenSSL. */
#include <stdio.h>
#include <string.h>

#include "tools/tools.h"

int main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "models") == 0) return at_models_main(argc - 1, argv + 1);
    int help = argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0);
    fprintf(help ? stdout : stderr,
            "Usage: audio-translator models list | pull NAME | path NAME\n\n"
            "This build has only the 'models' command (the model cache, AT_MODELS_DIR);\n"
            "the other commands are in the full audio-translator CLI.\n");
    return help ? 0 : 2;
}
