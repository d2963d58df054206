/*
 * auth.c — the server's side of billing/: who may call which route, and the
 * admit/settle hooks over billing_admit / billing_settle.
 *
 * Every /v1 route needs "Authorization: Bearer <key>". The key is checked
 * when the headers arrive, before a byte of the body is read (401 for none,
 * a wrong, revoked or expired key; 403 for the admin key on inference and
 * usage routes). /admin routes need the admin key (a tenant key gets 403).
 * /health and /metrics are open. Which kind of key a route takes is its
 * entry's caller in srv_routes (http.c). Keys are compared by billing/ in constant
 * time (keyed hashes); no key is ever copied into a message or a log line.
 *
 * The admit hook places the hold for the request (its id is the response's
 * id, so the ledger's request id is what the client sees); the settle hook
 * records the usage and returns once it is committed, with the cost.
 *
 * Threads: called from the connection threads; billing/ is thread-safe.
 */
#include "server/server_int.h"

#include <ctype.h>
#include <string.h>
#include <strings.h>

/* Copies the token of "Bearer <token>" into buf; NULL when the header is
 * missing, of another scheme, empty or too long. */
static const char *bearer(const char *h, char *buf, size_t n)
{
    if (!h || strncasecmp(h, "Bearer ", 7))
        return NULL;
    h += 7;
    while (*h == ' ')
        h++;
    size_t len = strlen(h);
    while (len && (h[len - 1] == ' ' || h[len - 1] == '\t'))
        len--;
    if (len == 0 || len >= n)
        return NULL;
    for (size_t i = 0; i < len; i++)
        if (!isgraph((unsigned char)h[i]))
            return NULL;
    memcpy(buf, h, len);
    buf[len] = 0;
    return buf;
}

static int unauthorized(struct oai_error *err, bool given)
{
    if (!given)
        return oai_err(err, 401, "invalid_request_error", NULL, "invalid_api_key",
                       "You didn't provide an API key. You need to provide your API key in an Authorization header "
                       "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).");
    return oai_err(err, 401, "invalid_request_error", NULL, "invalid_api_key",
                   "Incorrect API key provided (unknown, revoked or expired).");
}

/* The caller once both key lookups are known (each 0: this kind of key,
 * -1: not it); 0 with who->caller set, or -1 with *err. */
static int decide(const struct route *r, int tenant, int admin, struct auth_who *who, struct oai_error *err)
{
    if (r->caller == ROUTE_ADMIN_KEY) {
        if (admin == 0)
            return who->caller = CALLER_ADMIN, 0;
        if (tenant == 0)
            return oai_err(err, 403, "invalid_request_error", NULL, "admin_key_required",
                           "The /admin routes need the admin key; an API key of an account cannot use them.");
        return unauthorized(err, true);
    }
    if (tenant == 0)
        return who->caller = CALLER_TENANT, 0;
    if (admin != 0)
        return unauthorized(err, true);
    if (r->caller == ROUTE_ANY_KEY)
        return who->caller = CALLER_ADMIN, 0;
    return oai_err(err, 403, "invalid_request_error", NULL, "api_key_required",
                   "The admin key cannot be used for %s; create an API key for an account (POST /admin/keys).",
                   r->admin_refused);
}

int auth_route(struct server *srv, const struct route *r, const char *authorization, struct auth_who *who,
               struct oai_error *err)
{
    struct billing *b = srv->o.billing;
    memset(who, 0, sizeof *who);
    if (!b) {
        if (r->billing_only)
            return oai_err(err, 404, "invalid_request_error", NULL, "unknown_url",
                           "This server runs without billing: there are no accounts or usage.");
        return 0;
    }
    if (r->caller == ROUTE_ANYONE)
        return 0;
    char key[AUTH_KEY_MAX];
    if (!bearer(authorization, key, sizeof key))
        return unauthorized(err, authorization != NULL);
    struct err e;
    int rc;
    /* tenant routes look for a tenant key first, /admin for the admin key;
     * ERR_UNAVAILABLE from either: the ledger cannot be consulted (503, not a 401) */
    bool admin_first = r->caller == ROUTE_ADMIN_KEY;
    int tenant = -1, admin = -1;
    bool down = false;
    if (!admin_first) {
        tenant = billing_authenticate(b, key, &who->key, &e);
        down = tenant < 0 && e.code == ERR_UNAVAILABLE;
    }
    if (tenant < 0 && !down) {
        admin = billing_admin_key_verify(b, key, &e);
        down = admin < 0 && e.code == ERR_UNAVAILABLE;
    }
    if (admin_first && admin < 0 && !down) {
        tenant = billing_authenticate(b, key, &who->key, &e);
        down = tenant < 0 && e.code == ERR_UNAVAILABLE;
    }
    if (down) {
        log_error("billing: checking a key: %s", e.msg);
        rc = oai_err(err, 503, "server_error", NULL, "billing_unavailable",
                     "The ledger cannot be reached to check the API key. Please retry.");
        err->retry_after = 1;
    } else {
        rc = decide(r, tenant, admin, who, err);
    }
    sodium_memzero(key, sizeof key);
    return rc;
}

/* ---- the hooks ---- */

static int hook_admit(void *ctx, const struct server_admit_info *a, void **req_ctx, struct oai_error *err)
{
    struct server *srv = ctx;
    char key[AUTH_KEY_MAX];
    if (!bearer(a->authorization, key, sizeof key))
        return unauthorized(err, a->authorization != NULL);
    struct billing_request br = {key, a->model, a->n_prompt, a->max_tokens, a->request_id};
    struct billing_admission ad;
    struct err e;
    int rc = billing_admit(srv->o.billing, &br, &ad, &e);
    sodium_memzero(key, sizeof key);
    if (rc < 0 && e.code != ERR_REFUSED) {
        log_error("billing: admission of %s: %s", a->request_id, e.msg);
        oai_err(err, 503, "server_error", NULL, "billing_unavailable",
                "The ledger cannot be reached; the request was not run. Please retry.");
        err->retry_after = 1;
        return -1;
    }
    *req_ctx = NULL;
    if (rc == 0) {
        if (a->sched) {
            snprintf(a->sched->account, sizeof a->sched->account, "%s", ad.account_id);
            a->sched->weight = ad.weight;
        }
        return 0;
    }
    return srv_refusal_http(&e, ad.retry_after, err);
}

static int hook_settle(void *ctx, void *req_ctx, const struct server_settle_info *s)
{
    struct server *srv = ctx;
    struct billing_usage u;
    struct err e;
    int cached = s->n_cached <= s->n_prompt ? s->n_cached : s->n_prompt;
    if (billing_settle_compute(srv->o.billing, s->request_id, s->n_prompt, cached, s->n_completion, s->compute_us,
                               s->finish, &u, &e) < 0) {
        log_error("billing: settlement of %s (%s, %d + %d tokens) failed: %s; its hold is released at the "
                  "next start",
                  s->request_id, s->finish, s->n_prompt, s->n_completion, e.msg);
        return -1;
    }
    if (s->cost && s->cost_size >= 24)
        amount_format(u.cost, s->cost, s->cost_size);
    return 0;
}

void auth_hooks(struct server *srv, struct server_hooks *out)
{
    *out = (struct server_hooks){srv, hook_admit, hook_settle};
}
