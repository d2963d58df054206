/*
 * Usage reports: the usage records summed by day, account, key, model or
 * request, with the grand total computed in the same read transaction so the
 * rows always add up to it. The SQL is built from fixed pieces (group column
 * from a table, one condition per filter given) so that it has no
 * engine-specific NULL-parameter tricks and no caller text in it.
 */
#include "billing/billing_int.h"

#include <string.h>

static const char *group_col[] = {"day", "account_id", "key_id", "model", "request_id"};
static const char *group_names[] = {"day", "account", "key", "model", "request"};

const char *billing_group_name(enum billing_group g)
{
    return group_names[g];
}

int billing_group_parse(const char *s, enum billing_group *out, struct err *e)
{
    for (int i = 0; i < 5; i++) {
        if (s && !strcmp(s, group_names[i])) {
            *out = (enum billing_group)i;
            return 0;
        }
    }
    return err_set(e, ERR_INVALID, "usage grouping '%s': expected day, account, key, model or request", s ? s : "");
}

struct report_ctx {
    billing_usage_fn fn;
    void *ctx;
    struct billing_usage_row *total;
    int stop;
};

static void fill(struct billing_usage_row *u, const struct store_row *r, int has_group)
{
    memset(u, 0, sizeof *u);
    int c = 0;
    if (has_group)
        snprintf(u->group, sizeof u->group, "%s", store_row_text(r, c++));
    u->requests = store_row_int(r, c++);
    u->prompt_tokens = store_row_int(r, c++);
    u->cached_tokens = store_row_int(r, c++);
    u->completion_tokens = store_row_int(r, c++);
    u->cost = store_row_int(r, c++);
    u->compute_us = store_row_int(r, c++);
    u->compute_cost = store_row_int(r, c++);
}

static int group_row(void *ctx, const struct store_row *r)
{
    struct report_ctx *rc = ctx;
    struct billing_usage_row u;
    fill(&u, r, 1);
    if (rc->fn(rc->ctx, &u)) {
        rc->stop = 1;
        return 1;
    }
    return 0;
}

static int total_row(void *ctx, const struct store_row *r)
{
    struct report_ctx *rc = ctx;
    fill(rc->total, r, 0);
    return 1;
}

#define SUMS \
    " COUNT(*), COALESCE(SUM(prompt_tokens), 0), COALESCE(SUM(cached_tokens), 0)," \
    " COALESCE(SUM(completion_tokens), 0), COALESCE(SUM(cost), 0), COALESCE(SUM(compute_us), 0)," \
    " COALESCE(SUM(compute_cost), 0) FROM usage"

int billing_usage_report(struct billing *b, const struct billing_usage_filter *f, enum billing_group by,
                         billing_usage_fn fn, void *ctx, struct billing_usage_row *total, struct err *e)
{
    static const struct billing_usage_filter none = {0};
    if (!f)
        f = &none;
    MAAS_ASSERT((int)by >= 0 && (int)by < 5);
    char where[256] = "";
    struct store_val p[4];
    int n = 0;
    size_t w = 0;
    /* the placeholders are numbered in the order the filters appear */
#define COND(fmt, val)                                                                                     \
    do {                                                                                                   \
        p[n] = (val);                                                                                      \
        n++;                                                                                               \
        w += (size_t)snprintf(where + w, sizeof where - w, "%s" fmt, w ? " AND " : " WHERE ", n);          \
    } while (0)
    if (f->from)
        COND("admitted_at >= $%d", SV_INT(f->from));
    if (f->to)
        COND("admitted_at < $%d", SV_INT(f->to));
    if (f->account_id)
        COND("account_id = $%d", SV_TEXT(f->account_id));
    if (f->key_id)
        COND("key_id = $%d", SV_TEXT(f->key_id));
#undef COND
    char sql_groups[1024], sql_total[768];
    snprintf(sql_groups, sizeof sql_groups, "SELECT %s," SUMS "%s GROUP BY %s ORDER BY %s", group_col[by], where,
             group_col[by], group_col[by]);
    snprintf(sql_total, sizeof sql_total, "SELECT" SUMS "%s", where);

    struct billing_usage_row t;
    struct report_ctx rc = {fn, ctx, &t, 0};
    struct store *s = billing_conn_get(b);
    int rv = -1;
    if (store_begin(s, STORE_TX_READ, e))
        goto out;
    if (f->account_id) {
        int64_t found = 0;
        if (store_query_int(s, "SELECT COUNT(*) FROM accounts WHERE id = $1",
                            (struct store_val[]){SV_TEXT(f->account_id)}, 1, &found, NULL, e))
            goto out;
        if (!found) {
            err_set(e, ERR_NOT_FOUND, "account '%s': no such account", f->account_id);
            goto out;
        }
    }
    if (store_query(s, sql_groups, p, n, group_row, &rc, e) || store_query(s, sql_total, p, n, total_row, &rc, e))
        goto out;
    if (total)
        *total = t;
    rv = 0;
out:
    store_rollback(s);
    billing_conn_put(b, s);
    return rv;
}
