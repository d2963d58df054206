/*
 * http.c — the libmicrohttpd daemon: routing, request bodies, and
 * answering (JSON, SSE, Prometheus text, errors).
 *
 * Threads: MHD_USE_THREAD_PER_CONNECTION without a listening socket: the
 * front thread (front.c) accepts connections, holds them until their
 * request head is whole and sound, and hands them over. A connection's
 * thread may block as long as its request generates (in job_run_to_end, or
 * in the streaming content reader), which is what makes the code
 * straight-line; the engine thread is never blocked by it. Every response
 * says "Connection: close", so every request passes the front door.
 *
 * Bodies: the access handler is called first with the headers only: an
 * unknown route (404), a wrong method (405) or a Content-Length over
 * --max-body (413) is answered right there, before a byte of the body is
 * read. Otherwise the body is collected up to max_body; a body without a
 * Content-Length (chunked) that grows past it is dropped at once and
 * answered 413 when it ends (MHD cannot answer in the middle of an upload);
 * one that goes on for more than 4 x max_body + 1 MiB gets its connection
 * closed instead.
 *
 * Headers: all of a request's headers must fit in HEADER_MEMORY bytes (the
 * front door answers 431 past it; MHD's per-connection memory pool has the
 * same size); a bearer token longer
 * than AUTH_KEY_MAX is a 401 (auth.c).
 */
#include "server/server_int.h"

#include <microhttpd.h>

#include <arpa/inet.h>
#include <netdb.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>

struct req {
    const struct route *route;     /* an entry of srv_routes */
    struct sbuf body;
    bool answered;                 /* a response has been queued early */
    bool too_big;                  /* the body grew past max_body: answered 413 at its end */
    size_t discarded;              /* bytes dropped since */
    uint64_t body_start_ms;        /* the headers arrived: the body's clock starts */
    size_t body_seen;              /* body bytes arrived so far (kept or dropped) */
    struct auth_who who;           /* the caller, checked with the headers */
    struct access_rec log;         /* its access-log line */
};

struct server_opts server_opts_default(void)
{
    struct server_opts o = {.host = "127.0.0.1", .port = 8080, .max_body = 1 << 20, .timeout_s = 30,
                            .header_timeout_s = 10, .min_body_rate = 4096};
    return o;
}

int server_port(const struct server *s)
{
    return s->port;
}

/* ---- answering ---- */

/* retry_after: seconds for Retry-After on 429/503 (0 = 1). */
static enum MHD_Result respond_ra(struct server *srv, struct MHD_Connection *c, const struct route *r, int status,
                                  const char *ctype, char *body, size_t len, bool free_body, int retry_after)
{
    struct MHD_Response *resp = MHD_create_response_from_buffer(
        len, body, free_body ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
    if (!resp) {
        if (free_body)
            free(body);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close"); /* the next request: via front.c */
    if (status == 429 || status == 503) {
        char ra[24];
        snprintf(ra, sizeof ra, "%d", retry_after > 0 ? retry_after : 1);
        MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, ra);
    }
    if (status == 405) {
        const char *allow = r->methods == ROUTE_POST ? "POST" : "GET, HEAD";
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, allow);
    }
    enum MHD_Result rc = MHD_queue_response(c, (unsigned)status, resp);
    MHD_destroy_response(resp);
    if (rc == MHD_YES) {
        metrics_request(&srv->mt, r, status);
        access_status(status, false);
    }
    return rc;
}

static enum MHD_Result respond(struct server *srv, struct MHD_Connection *c, const struct route *r, int status,
                               const char *ctype, char *body, size_t len, bool free_body)
{
    return respond_ra(srv, c, r, status, ctype, body, len, free_body, 0);
}

static enum MHD_Result respond_error(struct server *srv, struct MHD_Connection *c, const struct route *r,
                                     const struct oai_error *e)
{
    char *body = oai_build_error(e);
    if (!body)
        return MHD_NO;
    return respond_ra(srv, c, r, e->status, "application/json", body, strlen(body), true, e->retry_after);
}

static enum MHD_Result respond_json(struct server *srv, struct MHD_Connection *c, const struct route *r,
                                    char *body)
{
    if (!body) {
        struct oai_error e;
        oai_err(&e, 500, "server_error", NULL, NULL, "Out of memory.");
        return respond_error(srv, c, r, &e);
    }
    return respond(srv, c, r, 200, "application/json", body, strlen(body), true);
}

/* ---- the routes' handlers ---- */

static struct smodel *find_model(struct server *srv, const char *name)
{
    for (int i = 0; i < srv->n_models; i++)
        if (!strcmp(srv->models[i].cfg.name, name))
            return &srv->models[i];
    return NULL;
}

static enum MHD_Result h_health(struct server *srv, struct MHD_Connection *c, const struct route *r, struct req *q,
                                const char *url, const char *method)
{
    return respond(srv, c, r, 200, "application/json", (char *)"{\"status\":\"ok\"}", 15, false);
}

/* Whether the caller may see model name: an account's key only the models
 * it may use, everyone else all. */
static bool model_visible(const struct req *q, const char *name)
{
    return q->who.caller != CALLER_TENANT || billing_key_allows(&q->who.key, name);
}

/* What a served model is for, as /v1/models says. */
static struct oai_model_desc model_desc(const struct smodel *sm)
{
    const char *kind = "chat";
    if (model_is_embedding(sm->cfg.m))
        kind = model_hparams(sm->cfg.m)->pooling == MODEL_POOL_RANK ? "rerank" : "embedding";
    return (struct oai_model_desc){sm->cfg.name, kind};
}

static enum MHD_Result h_models(struct server *srv, struct MHD_Connection *c, const struct route *r, struct req *q,
                                const char *url, const char *method)
{
    struct oai_model_desc *ms = calloc((size_t)srv->n_models, sizeof *ms);
    if (!ms)
        return respond_json(srv, c, r, NULL);
    int n = 0;
    for (int i = 0; i < srv->n_models; i++)
        if (model_visible(q, srv->models[i].cfg.name))
            ms[n++] = model_desc(&srv->models[i]);
    char *body = oai_build_models(ms, n, srv->started);
    free(ms);
    return respond_json(srv, c, r, body);
}

static enum MHD_Result h_model(struct server *srv, struct MHD_Connection *c, const struct route *r, struct req *q,
                               const char *url, const char *method)
{
    const char *name = url + strlen(r->path);
    if (!find_model(srv, name) || !model_visible(q, name)) {
        struct oai_error e;
        oai_err(&e, 404, "invalid_request_error", "model", "model_not_found", "The model '%.200s' does not exist.",
                name);
        return respond_error(srv, c, r, &e);
    }
    struct oai_model_desc d = model_desc(find_model(srv, name));
    return respond_json(srv, c, r, oai_build_model(&d, srv->started));
}

static enum MHD_Result h_metrics(struct server *srv, struct MHD_Connection *c, const struct route *r, struct req *q,
                                 const char *url, const char *method)
{
    size_t len = 0;
    char *text = metrics_render(&srv->mt, srv, &len);
    if (!text)
        return respond_json(srv, c, r, NULL);
    return respond(srv, c, r, 200, "text/plain; version=0.0.4; charset=utf-8", text, len, true);
}

static int client_fd(struct MHD_Connection *c)
{
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    return ci ? (int)ci->connect_fd : -1;
}

static enum MHD_Result generate(struct server *srv, struct MHD_Connection *c, const struct route *r, struct req *q,
                                enum oai_kind kind)
{
    struct oai_request oreq;
    struct oai_error e;
    if (oai_parse_request(kind, q->body.buf, q->body.len, &oreq, &e) < 0)
        return respond_error(srv, c, r, &e);
    snprintf(q->log.model, sizeof q->log.model, "%s", oreq.model);
    struct smodel *sm = find_model(srv, oreq.model);
    if (!sm) {
        oai_err(&e, 404, "invalid_request_error", "model", "model_not_found",
                "The model '%.200s' does not exist or you do not have access to it.", oreq.model);
        oai_request_release(&oreq);
        return respond_error(srv, c, r, &e);
    }
    if (model_is_embedding(sm->cfg.m)) {
        oai_err(&e, 400, "invalid_request_error", "model", "model_not_chat",
                "The model '%.200s' is an embedding model: use it with /v1/embeddings.", oreq.model);
        oai_request_release(&oreq);
        return respond_error(srv, c, r, &e);
    }
    const char *auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    struct job *j;
    if (job_start(srv, sm, &oreq, auth, client_fd(c), &j, &e) < 0) {
        oai_request_release(&oreq);
        return respond_error(srv, c, r, &e);
    }
    if (!job_is_stream(j)) {
        int status;
        char *body = job_run_to_end(j, &status, &e);
        job_free(j);
        if (!body)
            return status ? respond_error(srv, c, r, &e) : MHD_NO; /* 0: the client is gone */
        return respond(srv, c, r, 200, "application/json", body, strlen(body), true);
    }
    struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024, job_stream_read, j,
                                                                  job_free);
    if (!resp) {
        job_free(j);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    enum MHD_Result rc = MHD_queue_response(c, MHD_HTTP_OK, resp);
    MHD_destroy_response(resp); /* job_free runs when MHD is done with it */
    if (rc == MHD_YES) {
        metrics_request(&srv->mt, r, 200);
        access_status(200, true);
    }
    return rc;
}

static enum MHD_Result h_chat(struct server *srv, struct MHD_Connection *c, const struct route *r, struct req *q,
                              const char *url, const char *method)
{
    return generate(srv, c, r, q, OAI_CHAT);
}

static enum MHD_Result h_completions(struct server *srv, struct MHD_Connection *c, const struct route *r,
                                     struct req *q, const char *url, const char *method)
{
    return generate(srv, c, r, q, OAI_COMPLETION);
}

static enum MHD_Result h_embeddings(struct server *srv, struct MHD_Connection *c, const struct route *r, struct req *q,
                                    const char *url, const char *method)
{
    const char *auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    struct oai_error e;
    char *body = NULL;
    if (srv_embeddings(srv, q->body.buf, q->body.len, auth, q->log.model, sizeof q->log.model, &body, &e) < 0)
        return respond_error(srv, c, r, &e);
    return respond(srv, c, r, 200, "application/json", body, strlen(body), true);
}

static enum MHD_Result h_rerank(struct server *srv, struct MHD_Connection *c, const struct route *r, struct req *q,
                                const char *url, const char *method)
{
    const char *auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    struct oai_error e;
    char *body = NULL;
    if (srv_rerank(srv, q->body.buf, q->body.len, auth, q->log.model, sizeof q->log.model, &body, &e) < 0)
        return respond_error(srv, c, r, &e);
    return respond(srv, c, r, 200, "application/json", body, strlen(body), true);
}

/* /admin/... (admin_handle) and /v1/usage (admin_usage_for_key) */
static enum MHD_Result billing_route(struct server *srv, struct MHD_Connection *c, const struct route *r,
                                     struct req *q, const char *url, const char *method, bool admin)
{
    struct admin_query aq = {
        MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "from"),
        MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "to"),
        MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "account"),
        MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "key"),
        MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "by"),
    };
    struct oai_error e;
    char *body = NULL;
    int status = admin ? admin_handle(srv, method, url + strlen("/admin"), &aq, q->body.buf ? q->body.buf : "",
                                      q->body.len, &body, &e)
                       : admin_usage_for_key(srv, &q->who.key, &aq, &body, &e);
    if (status < 0)
        return respond_error(srv, c, r, &e);
    return respond(srv, c, r, status, "application/json", body, strlen(body), true);
}

static enum MHD_Result h_usage(struct server *srv, struct MHD_Connection *c, const struct route *r, struct req *q,
                               const char *url, const char *method)
{
    return billing_route(srv, c, r, q, url, method, false);
}

static enum MHD_Result h_admin(struct server *srv, struct MHD_Connection *c, const struct route *r, struct req *q,
                               const char *url, const char *method)
{
    return billing_route(srv, c, r, q, url, method, true);
}

/* ---- the route table ---- */

#define ADMIN_METHODS (ROUTE_GET | ROUTE_POST | ROUTE_PUT | ROUTE_DELETE) /* admin.c answers 405 per path */

/* In the order /metrics lists them; the catch-all last. */
const struct route srv_routes[] = {
    {"/v1/chat/completions", ROUTE_EXACT, ROUTE_POST, ROUTE_TENANT, false, "inference", "/v1/chat/completions",
     h_chat},
    {"/v1/completions", ROUTE_EXACT, ROUTE_POST, ROUTE_TENANT, false, "inference", "/v1/completions", h_completions},
    {"/v1/embeddings", ROUTE_EXACT, ROUTE_POST, ROUTE_TENANT, false, "inference", "/v1/embeddings", h_embeddings},
    {"/v1/rerank", ROUTE_EXACT, ROUTE_POST, ROUTE_TENANT, false, "inference", "/v1/rerank", h_rerank},
    {"/v1/models", ROUTE_EXACT, ROUTE_GET, ROUTE_ANY_KEY, false, NULL, "/v1/models", h_models},
    {"/v1/models/", ROUTE_PARAM, ROUTE_GET, ROUTE_ANY_KEY, false, NULL, "/v1/models/{model}", h_model},
    {"/health", ROUTE_EXACT, ROUTE_GET, ROUTE_ANYONE, false, NULL, "/health", h_health},
    {"/metrics", ROUTE_EXACT, ROUTE_GET, ROUTE_ANYONE, false, NULL, "/metrics", h_metrics},
    {"/v1/usage", ROUTE_EXACT, ROUTE_GET, ROUTE_TENANT, true, "/v1/usage (see /admin/usage)", "/v1/usage", h_usage},
    {"/admin/", ROUTE_PREFIX, ADMIN_METHODS, ROUTE_ADMIN_KEY, true, NULL, "/admin", h_admin},
    {"/v1/me", ROUTE_PREFIX, ROUTE_GET, ROUTE_TENANT, true, "/v1/me (see /admin/accounts)", "/v1/me", me_serve},
    {"/console", ROUTE_PREFIX, ROUTE_GET, ROUTE_ANYONE, false, NULL, "/console", console_serve},
    {NULL, ROUTE_EXACT, 0, ROUTE_ANYONE, false, NULL, "other", NULL},
};
const int srv_n_routes = (int)(sizeof srv_routes / sizeof srv_routes[0]);

static const struct route *route_of(const char *url)
{
    int i;
    for (i = 0; srv_routes[i].path; i++) {
        const struct route *r = &srv_routes[i];
        size_t n = strlen(r->path);
        if (r->match == ROUTE_EXACT ? !strcmp(url, r->path)
                                    : !strncmp(url, r->path, n) && (r->match == ROUTE_PREFIX || url[n]))
            return r;
    }
    return &srv_routes[i];
}

static unsigned method_bit(const char *method)
{
    if (!strcmp(method, MHD_HTTP_METHOD_GET) || !strcmp(method, MHD_HTTP_METHOD_HEAD))
        return ROUTE_GET;
    if (!strcmp(method, MHD_HTTP_METHOD_POST))
        return ROUTE_POST;
    if (!strcmp(method, MHD_HTTP_METHOD_PUT))
        return ROUTE_PUT;
    if (!strcmp(method, MHD_HTTP_METHOD_DELETE))
        return ROUTE_DELETE;
    return 0;
}

/* The headers have arrived: route, method, key and Content-Length are
 * checked before a byte of the body is read. */
static enum MHD_Result on_headers(struct server *srv, struct MHD_Connection *c, struct req *q, const char *url,
                                  const char *method)
{
    struct oai_error e;
    q->route = route_of(url);
    access_begin(&q->log, c, method, q->route->label);
    if (!q->route->path) {
        q->answered = true;
        oai_err(&e, 404, "invalid_request_error", NULL, "unknown_url", "Unknown request URL: %s %.200s.", method,
                url);
        return respond_error(srv, c, q->route, &e);
    }
    if (!(q->route->methods & method_bit(method))) {
        q->answered = true;
        oai_err(&e, 405, "invalid_request_error", NULL, "method_not_allowed",
                "Method %s is not allowed for %.200s; use %s.", method, url,
                q->route->methods == ROUTE_POST ? "POST" : "GET");
        return respond_error(srv, c, q->route, &e);
    }
    /* the key before the body: an unauthenticated caller never gets a byte parsed */
    const char *auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (auth_route(srv, q->route, auth, &q->who, &e) < 0) {
        q->answered = true;
        return respond_error(srv, c, q->route, &e);
    }
    access_who(&q->log, &q->who);
    q->body_start_ms = now_ns() / 1000000;
    const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (cl) {
        char *end;
        unsigned long long n = strtoull(cl, &end, 10);
        if (n > srv->o.max_body) {
            q->answered = true;
            oai_err(&e, 413, "invalid_request_error", NULL, "request_too_large",
                    "The request body of %llu bytes exceeds the limit of %zu bytes.", n, srv->o.max_body);
            return respond_error(srv, c, q->route, &e);
        }
    }
    return MHD_YES;
}

/* A body that arrives slower than --min-body-rate bytes a second, after a
 * grace of --header-timeout seconds, is cut off: a client dripping its body
 * cannot hold a connection (and its thread) for long. (One that sends
 * nothing at all is closed by MHD after --timeout.) */
static bool body_too_slow(const struct server *srv, struct req *q, size_t n)
{
    q->body_seen += n;
    uint64_t elapsed = now_ns() / 1000000 - q->body_start_ms;
    uint64_t grace = (uint64_t)srv->o.header_timeout_s * 1000;
    if (elapsed <= grace || srv->o.min_body_rate <= 0)
        return false;
    return (double)q->body_seen < (double)srv->o.min_body_rate * (double)(elapsed - grace) / 1000.0;
}

/* A piece of the body: collected up to max_body. */
static enum MHD_Result on_upload(struct server *srv, struct req *q, const char *data, size_t n)
{
    if (body_too_slow(srv, q, n)) {
        log_warn("server: a request body arrived slower than %d bytes/s; connection closed",
                 srv->o.min_body_rate);
        return MHD_NO;
    }
    if (q->answered)
        return MHD_YES; /* discard what follows an early answer */
    if (q->too_big || q->body.len + n > srv->o.max_body) {
        /* MHD cannot answer in the middle of an upload: drop the body,
         * read on (bounded) and answer 413 when it ends */
        sbuf_release(&q->body);
        q->too_big = true;
        q->discarded += n;
        return q->discarded > 4 * srv->o.max_body + (1 << 20) ? MHD_NO : MHD_YES;
    }
    return sbuf_add(&q->body, data, n) < 0 ? MHD_NO : MHD_YES;
}

/* One call of MHD's access handler for request q (headers, a piece of the
 * body, or its end). */
static enum MHD_Result on_request_step(struct server *srv, struct MHD_Connection *c, struct req *q, bool fresh,
                                       const char *url, const char *method, const char *upload_data,
                                       size_t *upload_size)
{
    if (fresh) /* headers only */
        return on_headers(srv, c, q, url, method);
    if (*upload_size) {
        size_t n = *upload_size;
        *upload_size = 0;
        return on_upload(srv, q, upload_data, n);
    }
    if (q->answered)
        return MHD_YES;
    q->answered = true;
    if (q->too_big) {
        struct oai_error e;
        oai_err(&e, 413, "invalid_request_error", NULL, "request_too_large",
                "The request body exceeds the limit of %zu bytes.", srv->o.max_body);
        return respond_error(srv, c, q->route, &e);
    }
    return q->route->handle(srv, c, q->route, q, url, method);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_size, void **req_cls)
{
    struct server *srv = cls;
    struct req *q = *req_cls;
    bool fresh = !q;
    if (fresh) {
        if (!(q = calloc(1, sizeof *q)))
            return MHD_NO;
        *req_cls = q;
    }
    access_enter(&q->log);
    enum MHD_Result rc = on_request_step(srv, c, q, fresh, url, method, upload_data, upload_size);
    access_leave();
    return rc;
}

static void on_completed(void *cls, struct MHD_Connection *c, void **req_cls, enum MHD_RequestTerminationCode toe)
{
    struct server *srv = cls;
    struct req *q = *req_cls;
    if (q) {
        access_end(srv, &q->log);
        sbuf_release(&q->body);
        free(q);
        *req_cls = NULL;
    }
}

static void log_mhd(void *cls, const char *fmt, va_list ap)
{
    char buf[512];
    vsnprintf(buf, sizeof buf, fmt, ap);
    size_t n = strlen(buf);
    while (n && buf[n - 1] == '\n')
        buf[--n] = 0;
    log_warn("http: %s", buf);
}

/* ---- lifecycle ---- */

static bool is_loopback(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET)
        return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
    if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        if (IN6_IS_ADDR_LOOPBACK(a))
            return true;
        return IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127;
    }
    return false;
}

/* The limits left at 0: the defaults, the connection limit lowered to what
 * the open-file limit leaves room for. */
static void size_defaults(struct server_opts *o)
{
    if (o->timeout_s <= 0)
        o->timeout_s = 30;
    if (o->header_timeout_s <= 0)
        o->header_timeout_s = 10;
    if (o->min_body_rate < 0)
        o->min_body_rate = 0;
    if (o->max_active <= 0)
        o->max_active = SERVER_MAX_ACTIVE;
    if (o->max_connections <= 0) {
        struct rlimit rl;
        o->max_connections = SERVER_MAX_CONNECTIONS;
        if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
            /* room for the ledger, the models and MHD's own descriptors */
            long room = (long)rl.rlim_cur - 256;
            if (room < o->max_connections)
                o->max_connections = room > 64 ? (int)room : 64;
        }
    }
    if (o->max_active > o->max_connections)
        o->max_active = o->max_connections;
}

struct server *server_new(const struct server_model *models, int n_models, const struct server_opts *o,
                          struct err *e)
{
    struct server *s = calloc(1, sizeof *s);
    struct addrinfo *ai = NULL;
    if (!s)
        return err_set(e, ERR_NOMEM, "server: out of memory"), NULL;
    s->o = *o;
    if (!s->o.host)
        s->o.host = "127.0.0.1";
    size_defaults(&s->o);
    if (o->hooks)
        s->hooks = *o->hooks;
    else if (o->billing)
        auth_hooks(s, &s->hooks);
    s->started = (int64_t)time(NULL);
    if (n_models < 1) {
        err_set(e, ERR_INVALID, "server: no models to serve");
        goto fail;
    }
    if (!(s->models = calloc((size_t)n_models, sizeof *s->models)) || metrics_init(&s->mt, n_models) < 0) {
        err_set(e, ERR_NOMEM, "server: out of memory");
        goto fail;
    }
    s->n_models = n_models;
    for (int i = 0; i < n_models; i++) {
        struct smodel *sm = &s->models[i];
        sm->cfg = models[i];
        sm->index = i;
        for (int k = 0; k < i; k++)
            if (!strcmp(models[k].name, models[i].name)) {
                err_set(e, ERR_INVALID, "server: two models are named '%s'; give each its own name", models[i].name);
                goto fail;
            }
        sm->n_vocab = tok_n_vocab_common(sm->cfg.tok, model_hparams(sm->cfg.m)->n_vocab);
        struct err why;
        if (tok_chat_choose(sm->cfg.tok, sm->cfg.chat_template, &sm->fam, &why, e) < 0) {
            err_prefix(e, "server: model '%s'", models[i].name);
            goto fail;
        }
        if (why.code != ERR_OK)
            log_warn("model '%s': %s; using chatml", models[i].name, why.msg);
    }

    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
    char port[16];
    snprintf(port, sizeof port, "%d", o->port);
    int grc = getaddrinfo(s->o.host, port, &hints, &ai);
    if (grc) {
        err_set(e, ERR_IO, "server: cannot resolve host '%s': %s", s->o.host, gai_strerror(grc));
        goto fail;
    }
    if (s->o.loopback_only && !is_loopback(ai->ai_addr)) {
        err_set(e, ERR_INVALID, "server: host '%s' is not a loopback address; without authentication maas serves only "
                   "this machine (127.0.0.1 or ::1)", s->o.host);
        goto fail;
    }
    /* MHD runs the requests (a thread each) and never listens: front.c
     * accepts, holds and checks connections and hands them over */
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION | MHD_USE_POLL |
                     MHD_USE_ERROR_LOG | MHD_USE_NO_LISTEN_SOCKET | MHD_USE_ITC;
    s->d = MHD_start_daemon(flags, 0, NULL, NULL, on_request, s,
                            MHD_OPTION_EXTERNAL_LOGGER, log_mhd, s,
                            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)s->o.timeout_s,
                            /* above max_active, which front.c enforces with an answer */
                            MHD_OPTION_CONNECTION_LIMIT, (unsigned)s->o.max_active + 64,
                            MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)HEADER_MEMORY,
                            MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
                            MHD_OPTION_NOTIFY_CONNECTION, front_notify, s,
                            MHD_OPTION_END);
    if (!s->d) {
        err_set(e, ERR_INTERNAL, "server: cannot start the HTTP daemon");
        goto fail;
    }
    if (access_open(s, e) < 0 || front_start(s, ai->ai_addr, ai->ai_addrlen, e) < 0)
        goto fail;
    if (sweeper_start(s, e) < 0)
        goto fail;
    freeaddrinfo(ai);
    return s;
fail:
    if (ai)
        freeaddrinfo(ai);
    server_free(s);
    return NULL;
}

void server_free(struct server *s)
{
    if (!s)
        return;
    sweeper_stop(s);
    front_stop(s);
    if (s->d)
        MHD_stop_daemon(s->d);
    front_free(s);
    access_close(s);
    metrics_release(&s->mt);
    free(s->models);
    free(s);
}
