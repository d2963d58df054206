/*
 * console.c — the web console at /console: the files of web/, compiled into
 * the program (the Makefile turns them into build/gen/console_web.c, the
 * table console_files), served with a strict Content-Security-Policy.
 *
 *   GET /console, /console/            -> web/index.html
 *   GET /console/<name>                -> web/<name> (no sub-folders)
 *
 * The page is static: everything it shows comes from the JSON routes
 * (/v1/me, /v1/usage, /admin/..., /metrics), fetched by console.js with the
 * key in the Authorization header. Every file is answered with an ETag (its
 * FNV-1a hash) and "Cache-Control: no-cache", so a browser revalidates and
 * gets a 304 until the program changes. srv_reply is also the answer of
 * the /v1/me routes (me.c).
 *
 * Threads: connection threads; the table is read-only.
 */
#include "server/server_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

/* Scripts and styles from this origin only, no inline code, no frames, no
 * form posts anywhere: the page talks to the server with fetch() alone. */
#define CONSOLE_CSP                                                                                               \
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "        \
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

static const struct {
    const char *ext, *ctype;
} content_types[] = {
    {".html", "text/html; charset=utf-8"},
    {".js", "text/javascript; charset=utf-8"},
    {".css", "text/css; charset=utf-8"},
    {".svg", "image/svg+xml"},
    {".png", "image/png"},
};

static const char *content_type(const char *name)
{
    const char *dot = strrchr(name, '.');
    for (size_t i = 0; dot && i < sizeof content_types / sizeof *content_types; i++)
        if (!strcmp(dot, content_types[i].ext))
            return content_types[i].ctype;
    return "application/octet-stream";
}

enum MHD_Result srv_reply(struct server *srv, struct MHD_Connection *c, const struct route *r, int status,
                          const char *ctype, char *body, size_t len, bool free_body, const char *const *headers)
{
    struct MHD_Response *resp = MHD_create_response_from_buffer(
        len, body, free_body ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
    if (!resp) {
        if (free_body)
            free(body);
        return MHD_NO;
    }
    if (ctype)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    for (int i = 0; headers && headers[i]; i += 2)
        MHD_add_response_header(resp, headers[i], headers[i + 1]);
    enum MHD_Result rc = MHD_queue_response(c, (unsigned)status, resp);
    MHD_destroy_response(resp);
    if (rc == MHD_YES) {
        metrics_request(&srv->mt, r, status);
        access_status(status, false);
    }
    return rc;
}

enum MHD_Result srv_reply_error(struct server *srv, struct MHD_Connection *c, const struct route *r,
                                const struct oai_error *e)
{
    char *body = oai_build_error(e);
    if (!body)
        return MHD_NO;
    return srv_reply(srv, c, r, e->status, "application/json", body, strlen(body), true, NULL);
}

/* The file the URL names, or NULL. */
static const struct console_file *console_find(const char *url)
{
    const char *name = url + strlen("/console");
    if (!*name || !strcmp(name, "/"))
        name = "index.html";
    else if (*name == '/')
        name++;
    else
        return NULL; /* "/consolefoo" */
    for (int i = 0; i < console_n_files; i++)
        if (!strcmp(console_files[i].name, name))
            return &console_files[i];
    return NULL;
}

enum MHD_Result console_serve(struct server *srv, struct MHD_Connection *c, const struct route *r, struct req *q,
                              const char *url, const char *method)
{
    const struct console_file *f = console_find(url);
    if (!f) {
        struct oai_error e;
        oai_err(&e, 404, "invalid_request_error", NULL, "not_found", "The console has no file '%.200s'.", url);
        return srv_reply_error(srv, c, r, &e);
    }
    char etag[24];
    snprintf(etag, sizeof etag, "\"%016" PRIx64 "\"", hash_fnv1a64(HASH_FNV64_BASIS, f->data, f->len));
    const char *headers[] = {
        MHD_HTTP_HEADER_CONTENT_SECURITY_POLICY, CONSOLE_CSP,
        MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache",
        MHD_HTTP_HEADER_ETAG, etag,
        "Referrer-Policy", "no-referrer",
        "X-Frame-Options", "DENY",
        NULL,
    };
    const char *inm = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_IF_NONE_MATCH);
    if (inm && strstr(inm, etag))
        return srv_reply(srv, c, r, 304, NULL, (char *)"", 0, false, headers);
    return srv_reply(srv, c, r, 200, content_type(f->name), (char *)f->data, f->len, false, headers);
}
