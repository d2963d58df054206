/*
 * me.c — what a tenant key may read about its own account (the web
 * console's tenant view uses it; so can any client):
 *
 *   GET /v1/me                    -> {"account": account, "keys": [key...]}
 *   GET /v1/me/requests?limit=N   -> {"requests": [{"id", "time", "model", "prompt_tokens",
 *                                     "cached_tokens", "completion_tokens", "cost", "status"}...]}
 *
 * The account and key objects are admin_json.c's (the same as `maas admin
 * --format json`); never a whole key, never compute cost or margin. The
 * requests are the account's settled usage records, newest first (limit:
 * 1..1000, default 50); "status" is the finish reason. Only the key's own
 * account is ever read: the route takes tenant keys only (srv_routes), and
 * the account id comes from the key, never from the request.
 *
 * Threads: connection threads; billing/ is thread-safe.
 */
#include "server/server_int.h"

#include <jansson.h>
#include <string.h>

static int not_found(struct oai_error *err, const char *what)
{
    return oai_err(err, 404, "invalid_request_error", NULL, "not_found", "%.400s", what);
}

static int ledger_failed(struct oai_error *err, const char *what, const struct err *e)
{
    if (e->code == ERR_NOT_FOUND)
        return not_found(err, e->msg);
    if (e->code == ERR_INVALID)
        return oai_err(err, 400, "invalid_request_error", "limit", NULL, "%.400s", e->msg);
    return oai_err(err, 503, "server_error", NULL, NULL, "The ledger could not be read (%s): %.300s", what, e->msg);
}

/* {"account": ..., "keys": [...]} of account id. */
static json_t *me_account(struct server *srv, const char *id, struct oai_error *err)
{
    struct billing_account a;
    struct err e;
    json_t *keys = NULL;
    if (billing_account_get(srv->o.billing, id, &a, &e) < 0 || srv_json_keys(srv->o.billing, id, &keys, &e) < 0) {
        ledger_failed(err, "account", &e);
        return NULL;
    }
    json_t *o = json_pack("{s:o,s:O}", "account", srv_json_account(&a), "keys", json_object_get(keys, "keys"));
    json_decref(keys);
    if (!o)
        oai_err(err, 500, "server_error", NULL, NULL, "Out of memory.");
    return o;
}

static int add_request(void *ctx, const struct billing_usage *u)
{
    char when[32], cost[32];
    json_t *o = json_pack("{s:s,s:s,s:s,s:I,s:I,s:I,s:s,s:s}", "id", u->request_id, "time",
                          time_format(u->admitted_at, when, sizeof when), "model", u->model, "prompt_tokens",
                          (json_int_t)u->prompt_tokens, "cached_tokens", (json_int_t)u->cached_tokens,
                          "completion_tokens", (json_int_t)u->completion_tokens, "cost",
                          amount_format(u->cost, cost, sizeof cost), "status", u->finish_reason);
    return json_array_append_new(ctx, o) < 0 ? -1 : 0;
}

/* {"requests": [...]} of account id, newest first. */
static json_t *me_requests(struct server *srv, const char *id, const char *limit_s, struct oai_error *err)
{
    int limit = 50;
    struct err e;
    if (limit_s && arg_int("limit", limit_s, 1, BILLING_RECENT_MAX, &limit, &e) < 0) {
        oai_err(err, 400, "invalid_request_error", "limit", NULL, "%.400s", e.msg);
        return NULL;
    }
    json_t *list = json_array();
    if (!list || billing_usage_recent(srv->o.billing, id, limit, add_request, list, &e) < 0) {
        if (list)
            ledger_failed(err, "recent requests", &e);
        else
            oai_err(err, 500, "server_error", NULL, NULL, "Out of memory.");
        json_decref(list);
        return NULL;
    }
    json_t *o = json_pack("{s:o}", "requests", list);
    if (!o)
        oai_err(err, 500, "server_error", NULL, NULL, "Out of memory.");
    return o;
}

enum MHD_Result me_serve(struct server *srv, struct MHD_Connection *c, const struct route *r, struct req *q,
                         const char *url, const char *method)
{
    struct oai_error err;
    struct auth_who who = {0};
    /* http.c checked the key at the headers; this reads which account it is */
    const char *auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (auth_route(srv, r, auth, &who, &err) < 0)
        return srv_reply_error(srv, c, r, &err);
    if (who.caller != CALLER_TENANT) /* billing off: the route is 404 before this */
        return srv_reply_error(srv, c, r, (oai_err(&err, 403, "invalid_request_error", NULL, "api_key_required",
                                                   "/v1/me needs an API key of an account."), &err));
    const char *rest = url + strlen(r->path);
    json_t *o;
    if (!*rest)
        o = me_account(srv, who.key.account_id, &err);
    else if (!strcmp(rest, "/requests"))
        o = me_requests(srv, who.key.account_id, MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "limit"),
                        &err);
    else
        o = (not_found(&err, "Unknown route under /v1/me (there are /v1/me and /v1/me/requests)."), NULL);
    if (!o)
        return srv_reply_error(srv, c, r, &err);
    char *body = srv_json_dump(o);
    if (!body)
        return srv_reply_error(srv, c, r, (oai_err(&err, 500, "server_error", NULL, NULL, "Out of memory."), &err));
    return srv_reply(srv, c, r, 200, "application/json", body, strlen(body), true, NULL);
}
