/* load_local.c - the engines that run inside this process.
 *
 * Each loader sits in a file of its own (load_asr.c, load_mt.c, ...) and is
 * pulled from the static library only when a binary references it: the
 * translate binary, which names only at_app_load_local_mt, links no speech
 * engine.  This table, for serve and the CLI, names all three. */
#include "services/app.h"

const at_app_loaders at_app_local_loaders = {
    .asr = at_app_load_local_asr,
    .mt = at_app_load_local_mt,
    .tts = at_app_load_local_tts,
};
