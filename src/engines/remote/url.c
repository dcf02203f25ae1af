/* url.c - the little URL parsing the remote engines need. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engines/remote/remote.h"

int at_url_parse(const char *url, char *host, size_t host_cap, int *port, char *path, size_t path_cap,
                 at_err *err)
{
    if (!url || strncmp(url, "http://", 7) != 0)
        return at_err_set(err, AT_E_INVALID, "unsupported URL '%s': expected http://host:port",
                          url ? url : "(null)");
    const char *h = url + 7;
    const char *slash = strchr(h, '/');
    size_t hl = slash ? (size_t)(slash - h) : strlen(h);
    const char *colon = memchr(h, ':', hl);
    size_t name_len = colon ? (size_t)(colon - h) : hl;
    if (name_len == 0 || name_len >= host_cap)
        return at_err_set(err, AT_E_INVALID, "bad host in URL '%s'", url);
    memcpy(host, h, name_len);
    host[name_len] = '\0';
    *port = 80;
    if (colon) {
        char *end;
        long p = strtol(colon + 1, &end, 10);
        if (end != h + hl || p <= 0 || p > 65535)
            return at_err_set(err, AT_E_INVALID, "bad port in URL '%s'", url);
        *port = (int)p;
    }
    if (path) {
        const char *ps = slash ? slash : "";
        if (strlen(ps) >= path_cap) return at_err_set(err, AT_E_INVALID, "URL '%s' is too long", url);
        snprintf(path, path_cap, "%s", ps);
        /* "http://h:p/" and "http://h:p" name the same base. */
        size_t l = strlen(path);
        if (l && path[l - 1] == '/') path[l - 1] = '\0';
    }
    return 0;
}
