/* dashboard_int.h - the dashboard's files, compiled into the binary.
 *
 * The table is generated at build time by tools/embed.c from web/ (and the chart library in
 * web/node_modules) into build/gen/dashboard_assets.c. It is constant: any thread may read it. */
#ifndef TANDEM_API_DASHBOARD_INT_H
#define TANDEM_API_DASHBOARD_INT_H

#include <stddef.h>

#include "api/api_int.h"

struct api_asset {
    const char *path;         /* under /_/, e.g. "index.html", "js/app.js" */
    const char *content_type; /* from the extension */
    const unsigned char *data;
    size_t len;
    const char *etag; /* strong, quoted: "\"<hash>-<len>\"" */
};

extern const struct api_asset api_dashboard_assets[];
extern const size_t api_dashboard_n_assets;

/* The asset at path (no leading slash; empty means index.html), or NULL.
 * RETURNS BORROWED: entries of the static table. */
const struct api_asset *api__dashboard_find(struct str path);
/* True when an If-None-Match header value (a list of entity tags, or "*") matches etag under
 * the weak comparison RFC 9110 asks for GET and HEAD. */
bool api__etag_matches(const char *if_none_match, const char *etag);

void api__register_dashboard(struct http_router *r, struct api_env *env);

#endif
