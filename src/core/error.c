#include "core/error.h"

#include <stdarg.h>
#include <stdio.h>

int(at_err_set)(at_err *err, int code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        err->code = code;
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return code;
}

void at_err_clear(at_err *err)
{
    if (err) {
        err->code = AT_OK;
        err->msg[0] = '\0';
    }
}

const char *at_status_name(int code)
{
    switch (code) {
    case AT_OK: return "ok";
    case AT_E_INVALID: return "invalid_request";
    case AT_E_UNSUPPORTED: return "unsupported";
    case AT_E_TOO_LARGE: return "too_large";
    case AT_E_NOMEM: return "out_of_memory";
    case AT_E_IO: return "io_error";
    case AT_E_ENGINE: return "engine_error";
    case AT_E_BUSY: return "busy";
    case AT_E_CANCELLED: return "cancelled";
    case AT_E_CORRUPT: return "corrupt";
    default: return "error";
    }
}
