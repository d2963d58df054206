/*
 * admin_json.c — the JSON of the ledger's records, one serializer for the
 * /admin routes (admin.c) and `maas admin --format json` (cli/cmd_admin.c),
 * so that the two print the same bytes. Amounts are decimal strings, times
 * ISO 8601 in UTC; objects keep the order in which their fields are set.
 */
#include "server/server.h"

#include <jansson.h>
#include <string.h>

static json_t *jamount(int64_t v)
{
    char b[32];
    return json_string(amount_format(v, b, sizeof b));
}

static json_t *jwhen(int64_t t)
{
    char b[32];
    return t ? json_string(time_format(t, b, sizeof b)) : json_string("-");
}

static json_t *jwhen_or_null(int64_t t)
{
    char b[32];
    return t ? json_string(time_format(t, b, sizeof b)) : json_null();
}

json_t *srv_json_account(const struct billing_account *a)
{
    return json_pack("{s:s,s:s,s:o,s:o,s:o,s:o,s:I,s:I,s:o}", "id", a->id, "name", a->name, "balance",
                     jamount(a->balance), "held", jamount(a->held), "available", jamount(a->balance - a->held),
                     "credited", jamount(a->credited), "keys", (json_int_t)a->n_keys, "weight",
                     (json_int_t)a->weight, "created_at", jwhen(a->created_at));
}

json_t *srv_json_key(const struct billing_key *k, const char *whole)
{
    json_t *models = json_null();
    if (k->models[0]) {
        models = json_array();
        char m[sizeof k->models], *save = NULL;
        snprintf(m, sizeof m, "%s", k->models);
        for (char *t = strtok_r(m, ",", &save); t; t = strtok_r(NULL, ",", &save))
            json_array_append_new(models, json_string(t));
    }
    json_t *o = json_pack("{s:s,s:s,s:o,s:I,s:I,s:o,s:o,s:o,s:b,s:o,s:o,s:o}", "id", k->id, "account",
                          k->account_id, "models", models, "rpm", (json_int_t)k->rpm, "tpm", (json_int_t)k->tpm,
                          "budget", k->budget ? jamount(k->budget) : json_null(), "budget_period",
                          k->budget ? json_string(billing_period_name(k->budget_period)) : json_null(),
                          "expires_at", jwhen_or_null(k->expires_at), "revoked", k->revoked_at != 0, "revoked_at",
                          jwhen_or_null(k->revoked_at), "created_at", jwhen(k->created_at), "last_used_at",
                          jwhen_or_null(k->last_used_at));
    if (o && whole && json_object_set_new(o, "key", json_string(whole)) < 0) {
        json_decref(o);
        return NULL;
    }
    return o;
}

json_t *srv_json_price(const struct billing_price *p)
{
    return json_pack("{s:s,s:o,s:o,s:o,s:o,s:s}", "model", p->model, "input", jamount(p->input), "cached_input",
                     jamount(p->cached_input), "output", jamount(p->output), "from", jwhen(p->effective_from),
                     "per", "1M tokens");
}

/* {GROUP: ..., "requests", ..., "cost"} with the group first; no group for the total. */
static json_t *counters_json(const struct billing_usage_row *r, const char *group_name, bool operator)
{
    json_t *o = json_object();
    if (!o)
        return NULL;
    int rc = 0;
    if (group_name)
        rc |= json_object_set_new(o, group_name, json_string(r->group));
    rc |= json_object_set_new(o, "requests", json_integer(r->requests));
    rc |= json_object_set_new(o, "prompt_tokens", json_integer(r->prompt_tokens));
    rc |= json_object_set_new(o, "cached_tokens", json_integer(r->cached_tokens));
    rc |= json_object_set_new(o, "completion_tokens", json_integer(r->completion_tokens));
    rc |= json_object_set_new(o, "cost", jamount(r->cost));
    if (operator) {
        rc |= json_object_set_new(o, "compute_s", json_real((double)r->compute_us / 1e6));
        rc |= json_object_set_new(o, "compute_cost", jamount(r->compute_cost));
        rc |= json_object_set_new(o, "margin", jamount(r->cost - r->compute_cost));
    }
    if (rc) {
        json_decref(o);
        return NULL;
    }
    return o;
}

/* ---- lists: billing's callbacks append to an array ---- */

struct list {
    json_t *items;
    const char *group;             /* usage rows: the grouping's name */
    bool operator;                 /* usage rows: with compute and margin */
    bool oom;
};

static int append(struct list *l, json_t *item)
{
    if (json_array_append_new(l->items, item) < 0) {
        l->oom = true;
        return -1;
    }
    return 0;
}

static int add_account(void *ctx, const struct billing_account *a)
{
    return append(ctx, srv_json_account(a));
}

static int add_key(void *ctx, const struct billing_key *k)
{
    return append(ctx, srv_json_key(k, NULL));
}

static int add_price(void *ctx, const struct billing_price *p)
{
    return append(ctx, srv_json_price(p));
}

static int add_usage(void *ctx, const struct billing_usage_row *r)
{
    struct list *l = ctx;
    return append(l, counters_json(r, l->group, l->operator));
}

static int list_begin(struct list *l, const char *group, struct err *e)
{
    *l = (struct list){json_array(), group, false, false};
    return l->items ? 0 : err_set(e, ERR_NOMEM, "out of memory");
}

/* {name: items, ...more} once the listing returned rc; the items are
 * consumed either way. */
static int list_end(struct list *l, int rc, const char *name, json_t *more, json_t **out, struct err *e)
{
    json_t *o = NULL;
    if (rc == 0) {
        o = json_pack("{s:o}", name, l->items);
        l->items = NULL;
        if (o && more && json_object_set_new(o, "total", more) < 0) {
            json_decref(o);
            o = NULL;
        }
        more = NULL;
        if (!o)
            rc = -1, l->oom = true;
    }
    json_decref(l->items);
    json_decref(more);
    if (rc < 0) {
        if (l->oom)
            err_set(e, ERR_NOMEM, "out of memory");
        return -1;
    }
    *out = o;
    return 0;
}

int srv_json_accounts(struct billing *b, json_t **out, struct err *e)
{
    struct list l;
    if (list_begin(&l, NULL, e) < 0)
        return -1;
    return list_end(&l, billing_account_list(b, add_account, &l, e), "accounts", NULL, out, e);
}

int srv_json_keys(struct billing *b, const char *account_id, json_t **out, struct err *e)
{
    struct list l;
    if (list_begin(&l, NULL, e) < 0)
        return -1;
    return list_end(&l, billing_key_list(b, account_id, add_key, &l, e), "keys", NULL, out, e);
}

int srv_json_prices(struct billing *b, json_t **out, struct err *e)
{
    struct list l;
    if (list_begin(&l, NULL, e) < 0)
        return -1;
    return list_end(&l, billing_price_list(b, add_price, &l, e), "prices", NULL, out, e);
}

int srv_json_usage(struct billing *b, const struct billing_usage_filter *f, enum billing_group by, bool operator,
                   json_t **out, struct err *e)
{
    struct list l;
    struct billing_usage_row total;
    if (list_begin(&l, billing_group_name(by), e) < 0)
        return -1;
    l.operator = operator;
    int rc = billing_usage_report(b, f, by, add_usage, &l, &total, e);
    json_t *t = NULL;
    if (rc == 0 && !(t = counters_json(&total, NULL, operator)))
        rc = -1, l.oom = true;
    return list_end(&l, rc, "rows", t, out, e);
}

json_t *srv_json_audit(const char *error)
{
    return error ? json_pack("{s:b,s:s}", "ok", 0, "error", error) : json_pack("{s:b}", "ok", 1);
}

char *srv_json_dump(json_t *o)
{
    if (!o)
        return NULL;
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return s;
}
