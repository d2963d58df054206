/*
 * access.c — the access log (maas serve --access-log FILE|-): one JSON line
 * per request for the operator: time, request id, account id, key id (never
 * the key), model, status, tokens, duration (microseconds), client
 * address, method and route. Connections refused by the front door (framing,
 * limits, deadlines) are counted in /metrics, not logged here.
 *
 * A request's record (struct access_rec) lives in its connection's state
 * (http.c). Most lines are written when MHD completes the request. An
 * admitted generation learns its request id and tokens at settlement, which
 * the server's hooks report: the hooks are wrapped here. A non-streamed one
 * settles inside its handler, so the usage goes into its record and the line
 * is written on completion with the status answered; a stream settles after
 * its 200 went out, perhaps after its connection's state is gone, so its
 * line is written at settlement from what the admit wrapper kept.
 *
 * Threads: connection threads. The record being handled by a thread is
 * found through a thread-local pointer, set by http.c around its handler
 * (MHD runs a connection's handler on that connection's thread). Lines are
 * written whole under srv->access_mu.
 */
#include "server/server_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <string.h>
#include <time.h>

static __thread struct access_rec *current;

/* What the admit wrapper keeps for a request until it settles. */
struct access_hold {
    void *inner;                   /* the wrapped hooks' req_ctx */
    struct access_rec rec;
};

static void write_line(struct server *srv, const struct access_rec *r)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char when[40];
    snprintf(when, sizeof when, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000);
#define OPT(s) ((s)[0] ? json_string(s) : json_null())
    json_t *o = json_pack("{s:s,s:o,s:o,s:o,s:o,s:i,s:s,s:s,s:o,s:i,s:i,s:i,s:o,s:I}", "time", when,
                          "request_id", OPT(r->request_id), "account", OPT(r->account), "key", OPT(r->key),
                          "model", OPT(r->model), "status", r->status, "method", r->method, "route", r->route,
                          "client", OPT(r->client), "prompt_tokens", r->n_prompt, "cached_tokens", r->n_cached,
                          "completion_tokens", r->n_completion, "finish", OPT(r->finish), "duration_us",
                          (json_int_t)((now_ns() - r->t0_ns) / 1000));
#undef OPT
    char *line = srv_json_dump(o);
    if (!line)
        return;
    pthread_mutex_lock(&srv->access_mu);
    fprintf(srv->access, "%s\n", line);
    fflush(srv->access);
    pthread_mutex_unlock(&srv->access_mu);
    free(line);
}

/* ---- the wrapped hooks ---- */

static int log_admit(void *ctx, const struct server_admit_info *a, void **req_ctx, struct oai_error *err)
{
    struct server *srv = ctx;
    struct access_hold *h = calloc(1, sizeof *h);
    if (!h)
        return oai_err(err, 500, "server_error", NULL, NULL, "Out of memory.");
    if (srv->access_inner.admit && srv->access_inner.admit(srv->access_inner.ctx, a, &h->inner, err) < 0) {
        free(h);
        return -1;
    }
    if (current) {
        h->rec = *current;
        current->admitted = true;
    } else {
        h->rec.t0_ns = now_ns();
        h->rec.method = "POST";
        h->rec.route = "";
    }
    snprintf(h->rec.request_id, sizeof h->rec.request_id, "%s", a->request_id);
    snprintf(h->rec.model, sizeof h->rec.model, "%s", a->model);
    *req_ctx = h;
    return 0;
}

static int log_settle(void *ctx, void *req_ctx, const struct server_settle_info *s)
{
    struct server *srv = ctx;
    struct access_hold *h = req_ctx;
    int rc = srv->access_inner.settle ? srv->access_inner.settle(srv->access_inner.ctx, h->inner, s) : 0;
    struct access_rec *r = current && current->admitted ? current : &h->rec;
    snprintf(r->request_id, sizeof r->request_id, "%s", s->request_id);
    r->n_prompt = s->n_prompt;
    r->n_cached = s->n_cached;
    r->n_completion = s->n_completion;
    snprintf(r->finish, sizeof r->finish, "%s", s->finish);
    if (r == &h->rec) { /* a stream: its 200 went out, the line is written now */
        h->rec.status = rc < 0 ? 503 : 200;
        write_line(srv, &h->rec);
    }
    free(h);
    return rc;
}

/* ---- what http.c calls ---- */

int access_open(struct server *srv, struct err *e)
{
    const char *path = srv->o.access_log;
    if (!path)
        return 0;
    srv->access = !strcmp(path, "-") ? stdout : fopen(path, "a");
    if (!srv->access)
        return err_set(e, ERR_IO, "server: access log %s: %s", path, strerror(errno));
    pthread_mutex_init(&srv->access_mu, NULL);
    srv->access_inner = srv->hooks;
    srv->hooks = (struct server_hooks){srv, log_admit, log_settle};
    return 0;
}

void access_close(struct server *srv)
{
    if (!srv->access)
        return;
    if (srv->access != stdout)
        fclose(srv->access);
    else
        fflush(stdout);
    pthread_mutex_destroy(&srv->access_mu);
    srv->access = NULL;
}

void access_begin(struct access_rec *r, struct MHD_Connection *c, const char *method, const char *route)
{
    memset(r, 0, sizeof *r);
    r->t0_ns = now_ns();
    r->method = method;
    r->route = route;
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (ci && ci->client_addr) {
        const struct sockaddr *sa = ci->client_addr;
        if (sa->sa_family == AF_INET)
            inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, r->client, sizeof r->client);
        else if (sa->sa_family == AF_INET6)
            inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, r->client, sizeof r->client);
    }
}

void access_who(struct access_rec *r, const struct auth_who *who)
{
    if (who->caller == CALLER_TENANT) {
        snprintf(r->account, sizeof r->account, "%s", who->key.account_id);
        snprintf(r->key, sizeof r->key, "%s", who->key.id);
    } else if (who->caller == CALLER_ADMIN) {
        snprintf(r->key, sizeof r->key, "admin");
    }
}

void access_enter(struct access_rec *r)
{
    current = r;
}

void access_leave(void)
{
    current = NULL;
}

void access_status(int status, bool stream)
{
    if (!current)
        return;
    current->status = status;
    current->stream = stream;
}

void access_end(struct server *srv, struct access_rec *r)
{
    if (srv->access && !(r->admitted && r->stream))
        write_line(srv, r);
}
