/*
 * admin.c — the /admin HTTP routes (the admin key) and GET /v1/usage (a
 * tenant key, its own account). JSON in and out, the same objects as
 * `maas admin --format json` prints, amounts as decimal strings:
 *
 *   POST /admin/accounts                {"name", "credit"?}            -> account (201)
 *   GET  /admin/accounts                                               -> {"accounts":[account...]}
 *   GET  /admin/accounts/{id}                                          -> account
 *   POST /admin/accounts/{id}/credit    {"amount", "note"?}            -> account
 *   POST /admin/keys                    {"account", "models"?, "rpm"?, "tpm"?, "budget"?,
 *                                        "budget_period"?, "expires"?} -> key with "key" (201; shown once)
 *   GET  /admin/keys[?account=ID]                                      -> {"keys":[key...]}
 *   POST /admin/keys/{id}/revoke, DELETE /admin/keys/{id}              -> {"revoked":"ID"}
 *   PUT|POST /admin/prices              {"model", "input", "cached_input", "output", "from"?} -> price
 *   GET  /admin/prices                                                 -> {"prices":[price...]}
 *   GET  /admin/usage?from=&to=&account=&key=&by=                      -> {"rows":[...],"total":{...}}
 *   GET  /admin/audit                                                  -> {"ok":true} | {"ok":false,"error"}
 *   GET  /v1/usage?from=&to=&by=                                       -> the same report, one account
 *
 * The JSON of the records is admin_json.c's, shared with the CLI.
 *
 * Amounts in bodies are decimal strings ("0.25") or whole numbers; anything
 * billing's amount_parse rejects (floats among them) is a 400.
 *
 * Threads: connection threads; billing/ is thread-safe.
 */
#include "server/server_int.h"

#include <jansson.h>
#include <string.h>

/* ---- helpers ---- */

static int bad(struct oai_error *err, const char *param, const char *fmt, const char *detail)
{
    return oai_err(err, 400, "invalid_request_error", param, NULL, fmt, detail ? detail : "");
}

static int store_failed(struct oai_error *err, const char *what, const struct err *e)
{
    log_error("admin: %s: %s", what, e->msg);
    return oai_err(err, 503, "server_error", NULL, "billing_unavailable", "%s failed: %.400s", what, e->msg);
}

/* 0 with *out, or -1 (400) unless the field is absent and optional. */
static int get_amount(json_t *root, const char *name, bool required, int64_t *out, struct oai_error *err)
{
    json_t *v = json_object_get(root, name);
    char buf[32];
    const char *s;
    if (!v || json_is_null(v)) {
        if (required)
            return oai_err(err, 400, "invalid_request_error", name, NULL, "Missing '%s' (a decimal amount).",
                           name);
        return 1;
    }
    if (json_is_string(v)) {
        s = json_string_value(v);
    } else if (json_is_integer(v)) {
        snprintf(buf, sizeof buf, "%lld", (long long)json_integer_value(v));
        s = buf;
    } else {
        return oai_err(err, 400, "invalid_request_error", name, NULL,
                       "'%s' must be a decimal amount in a string (\"0.25\") or a whole number.", name);
    }
    struct err e;
    if (amount_parse(s, 0, out, &e) < 0)
        return oai_err(err, 400, "invalid_request_error", name, NULL, "'%s': %.300s", name, e.msg);
    return 0;
}

static int get_count(json_t *root, const char *name, int64_t *out, struct oai_error *err)
{
    json_t *v = json_object_get(root, name);
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 999999999999LL)
        return oai_err(err, 400, "invalid_request_error", name, NULL,
                       "'%s' must be a whole number from 0 to 999999999999.", name);
    *out = json_integer_value(v);
    return 0;
}

/* A string field: NULL when absent; -1 for another type. */
static int get_str(json_t *root, const char *name, const char **out, struct oai_error *err)
{
    json_t *v = json_object_get(root, name);
    *out = NULL;
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_string(v))
        return oai_err(err, 400, "invalid_request_error", name, NULL, "'%s' must be a string.", name);
    *out = json_string_value(v);
    return 0;
}

static int done(json_t *o, int status, char **out, struct oai_error *err)
{
    if (!(*out = srv_json_dump(o)))
        return oai_err(err, 500, "server_error", NULL, NULL, "Out of memory.");
    return status;
}

/* The answer for a listing made by srv_json_* (rc, *o): 200 with it, or the
 * error. (o by address: it is written by the call that makes rc.) */
static int listed(int rc, json_t *const *o, const char *what, const struct err *e, char **out,
                  struct oai_error *err)
{
    if (rc == 0)
        return done(*o, 200, out, err);
    if (e->code == ERR_NOMEM)
        return oai_err(err, 500, "server_error", NULL, NULL, "Out of memory.");
    return store_failed(err, what, e);
}

/* The {id} of "/{id}[/...]" into id (size n); returns what follows it ("" or
 * "/..."), NULL when the id is empty or too long. */
static const char *path_id(const char *rest, char *id, size_t size)
{
    size_t n = strcspn(rest + 1, "/");
    if (n == 0 || n >= size)
        return NULL;
    memcpy(id, rest + 1, n);
    id[n] = 0;
    return rest + 1 + n;
}

/* ---- routes ---- */

/* operator: with compute_s, compute_cost and margin (the /admin route;
 * tenants never see them). */
static int usage_report(struct server *srv, const struct admin_query *q, const char *account, const char *key_id,
                        bool operator, char **out, struct oai_error *err)
{
    struct billing_usage_filter f = {.account_id = account, .key_id = key_id};
    struct err e;
    if (q->from && time_parse(q->from, &f.from, &e) < 0)
        return bad(err, "from", "'from': %s", e.msg);
    if (q->to) {
        if (time_parse(q->to, &f.to, &e) < 0)
            return bad(err, "to", "'to': %s", e.msg);
        if (strlen(q->to) == 10 && q->to[4] == '-') /* a date: include that whole day */
            f.to += 86400;
        if (f.from && f.to <= f.from)
            return bad(err, "to", "'to' must be after 'from'.%s", NULL);
    }
    enum billing_group by = BILLING_BY_DAY;
    if (q->by && billing_group_parse(q->by, &by, &e) < 0)
        return bad(err, "by", "'by': %s", e.msg);
    json_t *o = NULL;
    return listed(srv_json_usage(srv->o.billing, &f, by, operator, &o, &e), &o, "usage report", &e, out, err);
}

int admin_usage_for_key(struct server *srv, const struct billing_key *k, const struct admin_query *q, char **out,
                        struct oai_error *err)
{
    struct admin_query own = *q;
    if (own.by && strcmp(own.by, "day") && strcmp(own.by, "model") && strcmp(own.by, "key") &&
        strcmp(own.by, "request"))
        return bad(err, "by", "'by' must be day, model, key or request here.%s", NULL);
    return usage_report(srv, &own, k->account_id, NULL, false, out, err);
}

static int accounts(struct server *srv, const char *method, const char *rest, json_t *body, char **out,
                    struct oai_error *err)
{
    struct billing *b = srv->o.billing;
    struct billing_account a;
    struct err e;
    if (!*rest) {
        if (!strcmp(method, "GET")) {
            json_t *o = NULL;
            return listed(srv_json_accounts(b, &o, &e), &o, "account list", &e, out, err);
        }
        if (strcmp(method, "POST"))
            return -2;
        const char *name;
        int64_t credit = 0;
        if (get_str(body, "name", &name, err) < 0 || get_amount(body, "credit", false, &credit, err) < 0)
            return -1;
        if (!name || !*name || strlen(name) >= sizeof a.name)
            return bad(err, "name", "'name' must be a string of 1 to 255 bytes.%s", NULL);
        char id[BILLING_ID_MAX];
        if (billing_account_create(b, name, credit, id, &e) < 0)
            return bad(err, NULL, "%s", e.msg);
        if (billing_account_get(b, id, &a, &e) < 0)
            return store_failed(err, "account create", &e);
        return done(srv_json_account(&a), 201, out, err);
    }
    /* /{id} or /{id}/credit */
    char id[BILLING_ID_MAX];
    const char *slash = path_id(rest, id, sizeof id);
    if (!slash)
        return oai_err(err, 404, "invalid_request_error", NULL, "not_found", "No such account.");
    if (!*slash)
        slash = NULL;
    if (!slash) {
        if (strcmp(method, "GET"))
            return -2;
        if (billing_account_get(b, id, &a, &e) < 0)
            return oai_err(err, 404, "invalid_request_error", NULL, "not_found", "%.400s", e.msg);
        return done(srv_json_account(&a), 200, out, err);
    }
    if (strcmp(slash, "/credit"))
        return oai_err(err, 404, "invalid_request_error", NULL, "unknown_url", "Unknown admin route.");
    if (strcmp(method, "POST"))
        return -2;
    int64_t amount;
    const char *note;
    if (get_amount(body, "amount", true, &amount, err) < 0 || get_str(body, "note", &note, err) < 0)
        return -1;
    if (amount <= 0)
        return bad(err, "amount", "'amount' must be greater than 0.%s", NULL);
    if (billing_account_credit(b, id, amount, note ? note : "admin http", &a, &e) < 0) {
        if (billing_account_get(b, id, &a, &e) < 0)
            return oai_err(err, 404, "invalid_request_error", NULL, "not_found", "%.400s", e.msg);
        return store_failed(err, "credit", &e);
    }
    return done(srv_json_account(&a), 200, out, err);
}

static int keys(struct server *srv, const char *method, const char *rest, const struct admin_query *q,
                json_t *body, char **out, struct oai_error *err)
{
    struct billing *b = srv->o.billing;
    struct err e;
    if (!*rest) {
        if (!strcmp(method, "GET")) {
            json_t *o = NULL;
            return listed(srv_json_keys(b, q->account, &o, &e), &o, "key list", &e, out, err);
        }
        if (strcmp(method, "POST"))
            return -2;
        struct billing_key_spec sp = {0};
        const char *account, *period, *expires;
        char models[1024] = "";
        if (get_str(body, "account", &account, err) < 0 || get_count(body, "rpm", &sp.rpm, err) < 0 ||
            get_count(body, "tpm", &sp.tpm, err) < 0 || get_str(body, "budget_period", &period, err) < 0 ||
            get_str(body, "expires", &expires, err) < 0)
            return -1;
        if (!account)
            return bad(err, "account", "Missing 'account' (an account id).%s", NULL);
        json_t *m = json_object_get(body, "models");
        if (json_is_string(m)) {
            snprintf(models, sizeof models, "%s", json_string_value(m));
        } else if (json_is_array(m)) {
            size_t i;
            json_t *x;
            json_array_foreach(m, i, x)
            {
                if (!json_is_string(x) || !*json_string_value(x) || strchr(json_string_value(x), ','))
                    return bad(err, "models", "'models' must be a list of model names.%s", NULL);
                size_t used = strlen(models);
                int w = snprintf(models + used, sizeof models - used, "%s%s", used ? "," : "", json_string_value(x));
                if (w < 0 || (size_t)w >= sizeof models - used)
                    return bad(err, "models", "'models' is too long.%s", NULL);
            }
        } else if (m && !json_is_null(m)) {
            return bad(err, "models", "'models' must be a list of model names.%s", NULL);
        }
        if (models[0])
            sp.models = models;
        int has_budget = get_amount(body, "budget", false, &sp.budget, err);
        if (has_budget < 0)
            return -1;
        if ((has_budget == 0) != (period != NULL))
            return bad(err, "budget", "'budget' and 'budget_period' go together.%s", NULL);
        if (has_budget == 0 && sp.budget <= 0)
            return bad(err, "budget", "'budget' must be greater than 0.%s", NULL);
        if (period && billing_period_parse(period, &sp.budget_period, &e) < 0)
            return bad(err, "budget_period", "%s", e.msg);
        if (expires) {
            if (time_parse(expires, &sp.expires_at, &e) < 0)
                return bad(err, "expires", "'expires': %s", e.msg);
            if (sp.expires_at <= billing_now(b))
                return bad(err, "expires", "'expires' is in the past.%s", NULL);
        }
        char key[BILLING_KEY_LEN + 1];
        struct billing_key info;
        if (billing_key_create(b, account, &sp, key, &info, &e) < 0)
            return bad(err, NULL, "%s", e.msg);
        int rc = done(srv_json_key(&info, key), 201, out, err);
        sodium_memzero(key, sizeof key);
        return rc;
    }
    /* /{id}/revoke (POST) or /{id} (DELETE) */
    char id[BILLING_ID_MAX];
    const char *slash = path_id(rest, id, sizeof id);
    if (!slash)
        return oai_err(err, 404, "invalid_request_error", NULL, "not_found", "No such key.");
    if (!*slash)
        slash = NULL;
    if (slash ? strcmp(slash, "/revoke") || strcmp(method, "POST") : strcmp(method, "DELETE"))
        return slash && strcmp(slash, "/revoke")
                   ? oai_err(err, 404, "invalid_request_error", NULL, "unknown_url", "Unknown admin route.")
                   : -2;
    if (billing_key_revoke(b, id, &e) < 0)
        return oai_err(err, 404, "invalid_request_error", NULL, "not_found", "%.400s", e.msg);
    return done(json_pack("{s:s}", "revoked", id), 200, out, err);
}

static int prices(struct server *srv, const char *method, json_t *body, char **out, struct oai_error *err)
{
    struct billing *b = srv->o.billing;
    struct err e;
    if (!strcmp(method, "GET")) {
        json_t *o = NULL;
        return listed(srv_json_prices(b, &o, &e), &o, "price list", &e, out, err);
    }
    if (strcmp(method, "POST") && strcmp(method, "PUT"))
        return -2;
    struct billing_price p;
    memset(&p, 0, sizeof p);
    const char *model, *from;
    if (get_str(body, "model", &model, err) < 0 || get_str(body, "from", &from, err) < 0 ||
        get_amount(body, "input", true, &p.input, err) < 0 ||
        get_amount(body, "cached_input", true, &p.cached_input, err) < 0 ||
        get_amount(body, "output", true, &p.output, err) < 0)
        return -1;
    if (!model || !*model || strlen(model) >= sizeof p.model)
        return bad(err, "model", "'model' must be a model name of 1 to %s bytes.", "127");
    snprintf(p.model, sizeof p.model, "%s", model);
    p.effective_from = billing_now(b);
    if (from && strcmp(from, "now") && time_parse(from, &p.effective_from, &e) < 0)
        return bad(err, "from", "'from': %s", e.msg);
    if (billing_price_set(b, &p, &e) < 0)
        return bad(err, NULL, "%s", e.msg);
    return done(srv_json_price(&p), 200, out, err);
}

int admin_handle(struct server *srv, const char *method, const char *path, const struct admin_query *q,
                 const char *body, size_t len, char **out, struct oai_error *err)
{
    if (!strcmp(method, "HEAD"))
        method = "GET";
    json_t *root = NULL;
    bool writes = !strcmp(method, "POST") || !strcmp(method, "PUT");
    if (writes && len > 0) {
        json_error_t je;
        root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
        if (!root || !json_is_object(root)) {
            json_decref(root);
            return oai_err(err, 400, "invalid_request_error", NULL, NULL,
                           "The body must be a JSON object (%.200s).", root ? "not an object" : je.text);
        }
    } else if (writes) {
        root = json_object();
    }
    int rc;
    if (!strncmp(path, "/accounts", 9) && (path[9] == 0 || path[9] == '/'))
        rc = accounts(srv, method, path + 9, root, out, err);
    else if (!strncmp(path, "/keys", 5) && (path[5] == 0 || path[5] == '/'))
        rc = keys(srv, method, path + 5, q, root, out, err);
    else if (!strcmp(path, "/prices"))
        rc = prices(srv, method, root, out, err);
    else if (!strcmp(path, "/usage"))
        rc = strcmp(method, "GET") ? -2 : usage_report(srv, q, q->account, q->key, true, out, err);
    else if (!strcmp(path, "/audit")) {
        struct err e;
        if (strcmp(method, "GET"))
            rc = -2;
        else
            rc = done(srv_json_audit(billing_audit(srv->o.billing, &e) < 0 ? e.msg : NULL), 200, out, err);
    } else
        rc = oai_err(err, 404, "invalid_request_error", NULL, "unknown_url", "Unknown admin route: /admin%.200s.",
                     path);
    json_decref(root);
    if (rc == -2)
        rc = oai_err(err, 405, "invalid_request_error", NULL, "method_not_allowed",
                     "Method %s is not allowed for /admin%.200s.", method, path);
    return rc;
}
