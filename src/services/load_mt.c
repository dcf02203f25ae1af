/* load_mt.c - local translation: every installed Apertium pair. */
#include "engines/mt/apertium.h"
#include "services/app.h"

int at_app_load_local_mt(at_app *a, at_err *err)
{
    at_mt_engine *mt = at_mt_apertium_new(at_app_cfg(a)->apertium_modes, 0, err);
    if (!mt || at_app_set_mt(a, mt, err)) return err->code ? err->code : AT_E_ENGINE;
    return 0;
}
