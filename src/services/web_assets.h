/* web_assets.h - the pipeline's web page, embedded into the binary at
 * build time from web/ (cmake/embed_web.cmake writes the table), so every
 * binary is self-contained. */
#ifndef AT_SERVICES_WEB_ASSETS_H
#define AT_SERVICES_WEB_ASSETS_H

#include <stddef.h>

/* name: "index.html", "app.js", ...  Returns the bytes and sets *len and
 * *content_type, or NULL for an unknown name. */
const unsigned char *at_web_asset(const char *name, size_t *len, const char **content_type);

#endif
