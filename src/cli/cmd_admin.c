/*
 * maas admin — account, key, price and usage administration, working directly
 * on the ledger (--data DIR, default ./maas-data; later --db URL).
 *
 *   maas admin [--data DIR] account create NAME [--credit AMOUNT]
 *   maas admin [--data DIR] account list | show ID | credit ID AMOUNT
 *   maas admin [--data DIR] account set ID --weight N   (fair-share weight, 1..1000)
 *   maas admin [--data DIR] key create ACCOUNT [--models M1,M2] [--rpm N] [--tpm N]
 *                               [--budget AMOUNT --budget-period day|month|total] [--expires YYYY-MM-DD]
 *   maas admin [--data DIR] key list [ACCOUNT] | revoke KEY_ID
 *   maas admin [--data DIR] price set MODEL --input A --cached-input A --output A [--from TIMESTAMP]
 *   maas admin [--data DIR] price list
 *   maas admin [--data DIR] cost set --per-core-hour AMOUNT [--from TIMESTAMP]   (the operator's compute price)
 *   maas admin [--data DIR] usage [--from DATE] [--to DATE] [--account ID] [--key KEY_ID]
 *                               [--by day|account|key|model|request] [--format table|json|csv]
 *   maas admin [--data DIR] admin-key create
 *   maas admin [--data DIR] audit            checks that the ledger balances
 *
 * Options may come before or after the subcommand; every subcommand takes
 * --format json. Scripts can rely on: `account create` printing the new id
 * alone on its last line, `key create` and `admin-key create` the key alone on
 * the last line (the only time a key is shown). Amounts are decimals in
 * currency units, exact to 0.000001; anything else is refused with one line.
 */
#include "billing/billing.h"
#include "cli/cli.h"
#include "server/server.h" /* srv_json_*: the same JSON as the /admin routes */

#include <jansson.h>
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

enum fmt { FMT_TABLE, FMT_JSON, FMT_CSV };

enum opt_id {
    O_DATA, O_DB, O_FORMAT, O_SECRET, O_CREDIT, O_MODELS, O_RPM, O_TPM, O_BUDGET, O_PERIOD, O_EXPIRES, O_INPUT,
    O_CACHED, O_OUTPUT, O_FROM, O_TO, O_ACCOUNT, O_KEY, O_BY, O_WEIGHT, O_PER_CORE_HOUR, O_COUNT
};

static const char *opt_names[O_COUNT] = {
    "data", "db", "format", "secret-file", "credit", "models", "rpm", "tpm", "budget", "budget-period",
    "expires", "input", "cached-input", "output", "from", "to", "account", "key", "by", "weight", "per-core-hour",
};

#define GLOBAL_OPTS ((1u << O_DATA) | (1u << O_DB) | (1u << O_FORMAT) | (1u << O_SECRET))
#define MAX_POS 8

struct args {
    const char *opt[O_COUNT];
    const char *pos[MAX_POS];
    int n_pos;
    enum fmt fmt;
};

static const char usage_text[] =
    "usage: maas admin [--data DIR | --db URL] [--format table|json] <subcommand>\n"
    "  account create NAME [--credit AMOUNT]      prints the new account id on its last line\n"
    "  account list\n"
    "  account show ID\n"
    "  account credit ID AMOUNT\n"
    "  account set ID --weight N                  fair-share weight in the scheduler, 1..1000 (default 1)\n"
    "  key create ACCOUNT [--models M1,M2] [--rpm N] [--tpm N] [--budget AMOUNT --budget-period day|month|total]\n"
    "                     [--expires YYYY-MM-DD]   prints the key on its last line (shown only once)\n"
    "  key list [ACCOUNT]\n"
    "  key revoke KEY_ID\n"
    "  price set MODEL --input AMOUNT --cached-input AMOUNT --output AMOUNT [--from TIMESTAMP]\n"
    "                                             amounts per million tokens\n"
    "  price list\n"
    "  cost set --per-core-hour AMOUNT [--from TIMESTAMP]\n"
    "                                             the operator's compute price, for usage's compute_cost and margin\n"
    "  usage [--from DATE] [--to DATE] [--account ID] [--key KEY_ID] [--by day|account|key|model|request]\n"
    "        [--format table|json|csv]\n"
    "  admin-key create                           a key for the /admin HTTP routes (last line)\n"
    "  audit                                      check balances against credits, costs and holds\n"
    "AMOUNT is a decimal in currency units (10, 0.25, 0.000001). DIR defaults to ./maas-data.\n";

static int fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "maas admin: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    return 1;
}

static int parse_args(int argc, char **argv, struct args *a)
{
    memset(a, 0, sizeof *a);
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];
        if (!strcmp(s, "--help") || !strcmp(s, "-h")) {
            fputs(usage_text, stdout);
            return 1;
        }
        if (!strncmp(s, "--", 2)) {
            const char *name = s + 2, *eq = strchr(name, '=');
            size_t len = eq ? (size_t)(eq - name) : strlen(name);
            int id = -1;
            for (int k = 0; k < O_COUNT; k++)
                if (strlen(opt_names[k]) == len && !strncmp(opt_names[k], name, len))
                    id = k;
            if (id < 0) {
                fprintf(stderr, "maas admin: unknown option '%s'\n", s);
                return 2;
            }
            const char *val = eq ? eq + 1 : (i + 1 < argc ? argv[++i] : NULL);
            if (!val) {
                fprintf(stderr, "maas admin: option --%s needs a value\n", opt_names[id]);
                return 2;
            }
            if (a->opt[id]) {
                fprintf(stderr, "maas admin: option --%s given twice\n", opt_names[id]);
                return 2;
            }
            a->opt[id] = val;
            continue;
        }
        if (a->n_pos == MAX_POS) {
            fprintf(stderr, "maas admin: too many arguments\n");
            return 2;
        }
        a->pos[a->n_pos++] = s;
    }
    const char *f = a->opt[O_FORMAT];
    if (!f || !strcmp(f, "table"))
        a->fmt = FMT_TABLE;
    else if (!strcmp(f, "json"))
        a->fmt = FMT_JSON;
    else if (!strcmp(f, "csv"))
        a->fmt = FMT_CSV;
    else {
        fprintf(stderr, "maas admin: --format '%s': expected table, json or csv\n", f);
        return 2;
    }
    return 0;
}

/* Refuses options that the subcommand does not take. */
static int only(const struct args *a, unsigned allowed, const char *what)
{
    allowed |= GLOBAL_OPTS;
    for (int k = 0; k < O_COUNT; k++)
        if (a->opt[k] && !(allowed & (1u << k))) {
            fprintf(stderr, "maas admin: %s does not take --%s\n", what, opt_names[k]);
            return 2;
        }
    return 0;
}

static int npos(const struct args *a, int lo, int hi, const char *syntax)
{
    int n = a->n_pos - 2; /* after "<noun> <verb>" */
    if (n < lo || n > hi) {
        fprintf(stderr, "maas admin: usage: maas admin %s\n", syntax);
        return 2;
    }
    return 0;
}

/* Prints o (its reference taken) as one line of compact JSON. */
static int print_json(json_t *o)
{
    char *text = srv_json_dump(o);
    if (!text) /* jansson refuses strings that are not UTF-8 */
        return fail("cannot print JSON: out of memory, or a name that is not valid UTF-8");
    printf("%s\n", text);
    free(text);
    return 0;
}

static void csv_str(FILE *f, const char *s)
{
    if (!strpbrk(s, ",\"\n\r")) {
        fputs(s, f);
        return;
    }
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"')
            fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

static int parse_count(const char *name, const char *s, int64_t *out)
{
    if (!s)
        return 0;
    size_t n = strlen(s);
    if (n == 0 || n > 12) {
        fprintf(stderr, "maas admin: --%s '%s': expected a whole number from 0 to 999999999999\n", name, s);
        return -1;
    }
    for (size_t i = 0; i < n; i++)
        if (!isdigit((unsigned char)s[i])) {
            fprintf(stderr, "maas admin: --%s '%s': expected a whole number from 0 to 999999999999\n", name, s);
            return -1;
        }
    *out = strtoll(s, NULL, 10);
    return 0;
}

static int parse_amount(const char *what, const char *s, int64_t *out)
{
    struct err e;
    if (amount_parse(s, 0, out, &e)) {
        fprintf(stderr, "maas admin: %s: %s\n", what, e.msg);
        return -1;
    }
    return 0;
}

static char *amt(int64_t v, char *buf)
{
    return amount_format(v, buf, 32);
}

static char *when(int64_t t, char *buf)
{
    if (!t)
        return strcpy(buf, "-");
    return time_format(t, buf, 32);
}

/* ---- accounts ---- */

static void print_account_table(const struct billing_account *a)
{
    char b1[32], b2[32], b3[32], b4[32], t[32];
    printf("id:         %s\nname:       %s\nbalance:    %s\nheld:       %s\navailable:  %s\ncredited:   %s\n"
           "keys:       %lld\nweight:     %lld\ncreated:    %s\n",
           a->id, a->name, amt(a->balance, b1), amt(a->held, b2), amt(a->balance - a->held, b3),
           amt(a->credited, b4), (long long)a->n_keys, (long long)a->weight, when(a->created_at, t));
}

/* A listing's JSON, made by srv_json_* (rc, *o): printed, or the error. */
static int print_listing(int rc, json_t *const *o, const struct err *e)
{
    return rc ? fail("%s", e->msg) : print_json(*o);
}

static int account_list_row(void *ctx, const struct billing_account *a)
{
    int *n = ctx;
    char b1[32], b2[32], b3[32], t[32];
    if (*n == 0)
        printf("%-22s %-20s %16s %14s %16s %5s %6s  %s\n", "ID", "NAME", "BALANCE", "HELD", "CREDITED", "KEYS",
               "WEIGHT", "CREATED");
    printf("%-22s %-20s %16s %14s %16s %5lld %6lld  %s\n", a->id, a->name, amt(a->balance, b1), amt(a->held, b2),
           amt(a->credited, b3), (long long)a->n_keys, (long long)a->weight, when(a->created_at, t));
    (*n)++;
    return 0;
}

static int account_create(struct billing *b, const struct args *a)
{
    struct err e = {0};
    if (only(a, 1u << O_CREDIT, "account create") || npos(a, 1, 1, "account create NAME [--credit AMOUNT]"))
        return 2;
    int64_t credit = 0;
    if (a->opt[O_CREDIT] && parse_amount("--credit", a->opt[O_CREDIT], &credit))
        return 2;
    char id[BILLING_ID_MAX];
    struct billing_account acc;
    if (billing_account_create(b, a->pos[2], credit, id, &e) || billing_account_get(b, id, &acc, &e))
        return fail("%s", e.msg);
    if (a->fmt == FMT_JSON)
        return print_json(srv_json_account(&acc));
    char b1[32];
    printf("created account '%s' with balance %s\n%s\n", acc.name, amt(acc.balance, b1), id);
    return 0;
}

static int account_list(struct billing *b, const struct args *a)
{
    struct err e = {0};
    if (only(a, 0, "account list") || npos(a, 0, 0, "account list"))
        return 2;
    if (a->fmt == FMT_JSON) {
        json_t *o = NULL;
        return print_listing(srv_json_accounts(b, &o, &e), &o, &e);
    }
    int n = 0;
    if (billing_account_list(b, account_list_row, &n, &e))
        return fail("%s", e.msg);
    if (n == 0)
        printf("no accounts\n");
    return 0;
}

/* account show ID, account credit ID AMOUNT: the account, credited first. */
static int account_show(struct billing *b, const struct args *a)
{
    struct err e = {0};
    int credit = !strcmp(a->pos[1], "credit");
    if (only(a, 0, credit ? "account credit" : "account show") ||
        npos(a, 1 + credit, 1 + credit, credit ? "account credit ID AMOUNT" : "account show ID"))
        return 2;
    struct billing_account acc;
    if (credit) {
        int64_t v;
        if (parse_amount("credit", a->pos[3], &v))
            return 2;
        if (v == 0)
            return fail("credit: amount must be greater than 0"), 2;
        if (billing_account_credit(b, a->pos[2], v, "admin credit", &acc, &e))
            return fail("%s", e.msg);
    } else if (billing_account_get(b, a->pos[2], &acc, &e)) {
        return fail("%s", e.msg);
    }
    if (a->fmt == FMT_JSON)
        return print_json(srv_json_account(&acc));
    print_account_table(&acc);
    return 0;
}

/* account set ID --weight N */
static int account_set(struct billing *b, const struct args *a)
{
    struct err e = {0};
    const char *syn = "account set ID --weight N";
    if (only(a, 1u << O_WEIGHT, "account set") || npos(a, 1, 1, syn))
        return 2;
    if (!a->opt[O_WEIGHT])
        return fail("account set: --weight is required (%s)", syn), 2;
    int w;
    if (arg_int("--weight", a->opt[O_WEIGHT], 1, 1000, &w, &e))
        return fail("%s", e.msg), 2;
    struct billing_account acc;
    if (billing_account_set_weight(b, a->pos[2], w, &e) || billing_account_get(b, a->pos[2], &acc, &e))
        return fail("%s", e.msg);
    if (a->fmt == FMT_JSON)
        return print_json(srv_json_account(&acc));
    print_account_table(&acc);
    return 0;
}

/* ---- keys ---- */

static int key_list_row(void *ctx, const struct billing_key *k)
{
    int *n = ctx;
    char b1[32], t1[32], lim[64], bud[64];
    if (*n == 0)
        printf("%-12s %-22s %-8s %-20s %-24s %-20s %s\n", "KEY_ID", "ACCOUNT", "STATUS", "MODELS", "LIMITS",
               "BUDGET", "EXPIRES");
    snprintf(lim, sizeof lim, "rpm %lld tpm %lld", (long long)k->rpm, (long long)k->tpm);
    if (k->budget)
        snprintf(bud, sizeof bud, "%s/%s", amt(k->budget, b1), billing_period_name(k->budget_period));
    else
        snprintf(bud, sizeof bud, "-");
    printf("%-12s %-22s %-8s %-20s %-24s %-20s %s\n", k->id, k->account_id, k->revoked_at ? "revoked" : "active",
           k->models[0] ? k->models : "*", lim, bud, when(k->expires_at, t1));
    (*n)++;
    return 0;
}

static int key_create(struct billing *b, const struct args *a)
{
    struct err e = {0};
    unsigned allowed = (1u << O_MODELS) | (1u << O_RPM) | (1u << O_TPM) | (1u << O_BUDGET) | (1u << O_PERIOD) |
                       (1u << O_EXPIRES);
    if (only(a, allowed, "key create") ||
        npos(a, 1, 1, "key create ACCOUNT [--models M1,M2] [--rpm N] [--tpm N] [--budget AMOUNT "
                      "--budget-period day|month|total] [--expires YYYY-MM-DD]"))
        return 2;
    struct billing_key_spec sp = {.models = a->opt[O_MODELS]};
    if (parse_count("rpm", a->opt[O_RPM], &sp.rpm) || parse_count("tpm", a->opt[O_TPM], &sp.tpm))
        return 2;
    if (a->opt[O_BUDGET] || a->opt[O_PERIOD]) {
        if (!a->opt[O_BUDGET] || !a->opt[O_PERIOD]) {
            fprintf(stderr, "maas admin: --budget and --budget-period go together\n");
            return 2;
        }
        if (parse_amount("--budget", a->opt[O_BUDGET], &sp.budget))
            return 2;
        if (sp.budget == 0) {
            fprintf(stderr, "maas admin: --budget must be greater than 0\n");
            return 2;
        }
        if (billing_period_parse(a->opt[O_PERIOD], &sp.budget_period, &e)) {
            fprintf(stderr, "maas admin: %s\n", e.msg);
            return 2;
        }
    }
    if (a->opt[O_EXPIRES]) {
        if (time_parse(a->opt[O_EXPIRES], &sp.expires_at, &e)) {
            fprintf(stderr, "maas admin: --expires: %s\n", e.msg);
            return 2;
        }
        if (sp.expires_at <= billing_now(b)) {
            fprintf(stderr, "maas admin: --expires '%s' is in the past\n", a->opt[O_EXPIRES]);
            return 2;
        }
    }
    char key[BILLING_KEY_LEN + 1];
    struct billing_key info;
    if (billing_key_create(b, a->pos[2], &sp, key, &info, &e))
        return fail("%s", e.msg);
    if (a->fmt == FMT_JSON)
        return print_json(srv_json_key(&info, key));
    printf("created key %s for account %s; it is shown only this once:\n%s\n", info.id, info.account_id, key);
    return 0;
}

static int key_list(struct billing *b, const struct args *a)
{
    struct err e = {0};
    if (only(a, 0, "key list") || npos(a, 0, 1, "key list [ACCOUNT]"))
        return 2;
    const char *account = a->n_pos > 2 ? a->pos[2] : NULL;
    if (a->fmt == FMT_JSON) {
        json_t *o = NULL;
        return print_listing(srv_json_keys(b, account, &o, &e), &o, &e);
    }
    int n = 0;
    if (billing_key_list(b, account, key_list_row, &n, &e))
        return fail("%s", e.msg);
    if (n == 0)
        printf("no keys\n");
    return 0;
}

static int key_revoke(struct billing *b, const struct args *a)
{
    struct err e = {0};
    if (only(a, 0, "key revoke") || npos(a, 1, 1, "key revoke KEY_ID"))
        return 2;
    if (billing_key_revoke(b, a->pos[2], &e))
        return fail("%s", e.msg);
    if (a->fmt == FMT_JSON)
        return print_json(json_pack("{s:s}", "revoked", a->pos[2]));
    printf("revoked\n");
    return 0;
}

/* ---- prices ---- */

struct price_state {
    int n;
    int64_t now;
};

static int price_row(void *ctx, const struct billing_price *p)
{
    struct price_state *st = ctx;
    char b1[32], b2[32], b3[32], t[32];
    if (st->n == 0)
        printf("%-24s %14s %14s %14s  %-20s %s\n", "MODEL", "INPUT/1M", "CACHED/1M", "OUTPUT/1M", "FROM", "");
    printf("%-24s %14s %14s %14s  %-20s %s\n", p->model, amt(p->input, b1), amt(p->cached_input, b2),
           amt(p->output, b3), p->effective_from ? when(p->effective_from, t) : "always",
           p->effective_from > st->now ? "(future)" : "");
    st->n++;
    return 0;
}

/* cost set --per-core-hour AMOUNT [--from TIMESTAMP] */
static int cost_set(struct billing *b, const struct args *a)
{
    struct err e = {0};
    const char *syn = "cost set --per-core-hour AMOUNT [--from TIMESTAMP]";
    if (only(a, (1u << O_PER_CORE_HOUR) | (1u << O_FROM), "cost set") || npos(a, 0, 0, syn))
        return 2;
    if (!a->opt[O_PER_CORE_HOUR]) {
        fprintf(stderr, "maas admin: usage: maas admin %s\n", syn);
        return 2;
    }
    int64_t pch = 0, from = billing_now(b);
    if (parse_amount("--per-core-hour", a->opt[O_PER_CORE_HOUR], &pch))
        return 2;
    if (a->opt[O_FROM] && strcmp(a->opt[O_FROM], "now") && time_parse(a->opt[O_FROM], &from, &e)) {
        fprintf(stderr, "maas admin: --from: %s\n", e.msg);
        return 2;
    }
    if (billing_compute_price_set(b, pch, from, &e))
        return fail("%s", e.msg);
    char t[32], c[32];
    if (a->fmt == FMT_JSON) {
        json_t *o = json_pack("{s:s,s:s,s:s}", "per_core_hour", amt(pch, c), "from", when(from, t), "per",
                              "core-hour");
        return print_json(o);
    }
    printf("compute price %s per core-hour set from %s\n", amt(pch, c), when(from, t));
    return 0;
}

static int price_set(struct billing *b, const struct args *a)
{
    struct err e = {0};
    unsigned allowed = (1u << O_INPUT) | (1u << O_CACHED) | (1u << O_OUTPUT) | (1u << O_FROM);
    const char *syn = "price set MODEL --input AMOUNT --cached-input AMOUNT --output AMOUNT [--from TIMESTAMP]";
    if (only(a, allowed, "price set") || npos(a, 1, 1, syn))
        return 2;
    if (!a->opt[O_INPUT] || !a->opt[O_CACHED] || !a->opt[O_OUTPUT]) {
        fprintf(stderr, "maas admin: usage: maas admin %s\n", syn);
        return 2;
    }
    struct billing_price p;
    memset(&p, 0, sizeof p);
    if (strlen(a->pos[2]) >= sizeof p.model)
        return fail("model name too long"), 2;
    snprintf(p.model, sizeof p.model, "%s", a->pos[2]);
    if (parse_amount("--input", a->opt[O_INPUT], &p.input) ||
        parse_amount("--cached-input", a->opt[O_CACHED], &p.cached_input) ||
        parse_amount("--output", a->opt[O_OUTPUT], &p.output))
        return 2;
    p.effective_from = billing_now(b);
    if (a->opt[O_FROM] && strcmp(a->opt[O_FROM], "now") && time_parse(a->opt[O_FROM], &p.effective_from, &e)) {
        fprintf(stderr, "maas admin: --from: %s\n", e.msg);
        return 2;
    }
    if (billing_price_set(b, &p, &e))
        return fail("%s", e.msg);
    if (a->fmt == FMT_JSON)
        return print_json(srv_json_price(&p));
    char t[32];
    printf("price of %s set from %s\n", p.model, when(p.effective_from, t));
    return 0;
}

static int price_list(struct billing *b, const struct args *a)
{
    struct err e = {0};
    if (only(a, 0, "price list") || npos(a, 0, 0, "price list"))
        return 2;
    if (a->fmt == FMT_JSON) {
        json_t *o = NULL;
        return print_listing(srv_json_prices(b, &o, &e), &o, &e);
    }
    struct price_state st = {0, billing_now(b)};
    if (billing_price_list(b, price_row, &st, &e))
        return fail("%s", e.msg);
    if (st.n == 0)
        printf("no prices\n");
    return 0;
}

/* ---- usage ---- */

struct usage_state {
    enum fmt fmt;
    const char *group;
    int n;
};

/* Core-microseconds as exact decimal seconds. */
static const char *secs(int64_t us, char *buf)
{
    snprintf(buf, 32, "%lld.%06lld", (long long)(us / 1000000), (long long)(us % 1000000));
    return buf;
}

static int usage_row(void *ctx, const struct billing_usage_row *r)
{
    struct usage_state *st = ctx;
    char c[32], cs[32], cc[32], mg[32];
    secs(r->compute_us, cs);
    amt(r->compute_cost, cc);
    amt(r->cost - r->compute_cost, mg);
    if (st->fmt == FMT_CSV) {
        csv_str(stdout, r->group);
        printf(",%lld,%lld,%lld,%lld,%s,%s,%s,%s\n", (long long)r->requests, (long long)r->prompt_tokens,
               (long long)r->cached_tokens, (long long)r->completion_tokens, amt(r->cost, c), cs, cc, mg);
    } else {
        printf("%-28s %9lld %14lld %14lld %14lld %16s %14s %16s %16s\n", r->group, (long long)r->requests,
               (long long)r->prompt_tokens, (long long)r->cached_tokens, (long long)r->completion_tokens,
               amt(r->cost, c), cs, cc, mg);
    }
    st->n++;
    return 0;
}

static int do_usage(struct billing *b, const struct args *a)
{
    struct err e = {0};
    unsigned allowed = (1u << O_FROM) | (1u << O_TO) | (1u << O_ACCOUNT) | (1u << O_KEY) | (1u << O_BY);
    if (only(a, allowed, "usage"))
        return 2;
    if (a->n_pos != 1) {
        fprintf(stderr, "maas admin: usage takes no arguments besides its options\n");
        return 2;
    }
    struct billing_usage_filter f = {.account_id = a->opt[O_ACCOUNT], .key_id = a->opt[O_KEY]};
    char key_id[BILLING_ID_MAX];
    if (f.key_id && !strncmp(f.key_id, BILLING_KEY_PREFIX, strlen(BILLING_KEY_PREFIX)) &&
        strlen(f.key_id) > strlen(BILLING_KEY_PREFIX) + BILLING_KEY_ID_LEN) { /* a whole key: use its id */
        snprintf(key_id, sizeof key_id, "%.*s", BILLING_KEY_ID_LEN, f.key_id + strlen(BILLING_KEY_PREFIX));
        f.key_id = key_id;
    }
    if (a->opt[O_FROM] && time_parse(a->opt[O_FROM], &f.from, &e)) {
        fprintf(stderr, "maas admin: --from: %s\n", e.msg);
        return 2;
    }
    if (a->opt[O_TO]) {
        if (time_parse(a->opt[O_TO], &f.to, &e)) {
            fprintf(stderr, "maas admin: --to: %s\n", e.msg);
            return 2;
        }
        if (strlen(a->opt[O_TO]) == 10 && a->opt[O_TO][4] == '-') /* a date: include that whole day */
            f.to += 86400;
        if (f.from && f.to <= f.from) {
            fprintf(stderr, "maas admin: --to must be after --from\n");
            return 2;
        }
    }
    enum billing_group by = BILLING_BY_DAY;
    if (a->opt[O_BY] && billing_group_parse(a->opt[O_BY], &by, &e)) {
        err_prefix(&e, "--by");
        fprintf(stderr, "maas admin: %s\n", e.msg);
        return 2;
    }
    if (a->fmt == FMT_JSON) {
        json_t *o = NULL;
        return print_listing(srv_json_usage(b, &f, by, true, &o, &e), &o, &e);
    }
    struct usage_state st = {a->fmt, billing_group_name(by), 0};
    if (a->fmt == FMT_CSV)
        printf("%s,requests,prompt_tokens,cached_tokens,completion_tokens,cost,compute_s,compute_cost,margin\n",
               st.group);
    else
        printf("%-28s %9s %14s %14s %14s %16s %14s %16s %16s\n", st.group, "REQUESTS", "PROMPT", "CACHED",
               "COMPLETION", "COST", "COMPUTE_S", "COMPUTE_COST", "MARGIN");
    struct billing_usage_row total;
    if (billing_usage_report(b, &f, by, usage_row, &st, &total, &e))
        return fail("%s", e.msg);
    if (a->fmt == FMT_TABLE) {
        snprintf(total.group, sizeof total.group, "TOTAL");
        usage_row(&st, &total);
    }
    return 0;
}

static int do_admin_key(struct billing *b, const struct args *a)
{
    struct err e = {0};
    if (a->n_pos != 2 || strcmp(a->pos[1], "create")) {
        fprintf(stderr, "maas admin: usage: maas admin admin-key create\n");
        return 2;
    }
    if (only(a, 0, "admin-key create"))
        return 2;
    char key[128];
    if (billing_admin_key_create(b, key, sizeof key, &e))
        return fail("%s", e.msg);
    if (a->fmt == FMT_JSON)
        return print_json(json_pack("{s:s}", "admin_key", key));
    printf("admin key created; it is shown only this once:\n%s\n", key);
    return 0;
}

static int do_audit(struct billing *b, const struct args *a)
{
    struct err e = {0};
    if (a->n_pos != 1 || only(a, 0, "audit")) {
        fprintf(stderr, "maas admin: usage: maas admin audit\n");
        return 2;
    }
    if (billing_audit(b, &e)) {
        if (a->fmt == FMT_JSON)
            print_json(srv_json_audit(e.msg));
        return fail("%s", e.msg);
    }
    if (a->fmt == FMT_JSON)
        return print_json(srv_json_audit(NULL));
    else
        printf("ledger balances: every balance equals its credits minus its settled costs, and holds add up\n");
    return 0;
}

/* ---- the subcommands ---- */

struct subcmd {
    const char *noun;
    const char *verb;              /* NULL: the noun's function checks what follows it */
    int (*run)(struct billing *b, const struct args *a);
};

/* In the order the error messages list them. */
static const struct subcmd subcmds[] = {
    {"account", "create", account_create}, {"account", "list", account_list}, {"account", "show", account_show},
    {"account", "credit", account_show},   {"account", "set", account_set},   {"key", "create", key_create},     {"key", "list", key_list},
    {"key", "revoke", key_revoke},         {"price", "set", price_set},       {"price", "list", price_list},
    {"cost", "set", cost_set},
    {"usage", NULL, do_usage},             {"admin-key", NULL, do_admin_key}, {"audit", NULL, do_audit},
};
#define N_SUBCMDS ((int)(sizeof subcmds / sizeof subcmds[0]))

static bool known_noun(const char *noun)
{
    for (int i = 0; i < N_SUBCMDS; i++)
        if (!strcmp(subcmds[i].noun, noun))
            return true;
    return false;
}

/* Runs the subcommand a names (its noun is known); a wrong verb lists the noun's verbs. */
static int run_subcmd(struct billing *b, const struct args *a)
{
    const char *noun = a->pos[0], *verb = a->n_pos > 1 ? a->pos[1] : "";
    int n = 0;
    for (int i = 0; i < N_SUBCMDS; i++)
        if (!strcmp(subcmds[i].noun, noun)) {
            if (!subcmds[i].verb || !strcmp(subcmds[i].verb, verb))
                return subcmds[i].run(b, a);
            n++;
        }
    fprintf(stderr, "maas admin: %s: expected ", noun);
    for (int i = 0, k = 0; i < N_SUBCMDS; i++)
        if (!strcmp(subcmds[i].noun, noun)) {
            fprintf(stderr, "%s%s", k == 0 ? "" : k == n - 1 ? " or " : ", ", subcmds[i].verb);
            k++;
        }
    fprintf(stderr, "\n");
    return 2;
}

int cmd_admin(int argc, char **argv)
{
    struct args a;
    int rc = parse_args(argc, argv, &a);
    if (rc)
        return rc == 1 ? 0 : rc;
    if (a.n_pos == 0) {
        fputs(usage_text, stderr);
        return 2;
    }
    const char *noun = a.pos[0];
    if (!known_noun(noun)) {
        fprintf(stderr, "maas admin: unknown subcommand '%s' (account, key, price, usage, admin-key, audit)\n", noun);
        return 2;
    }
    if (a.fmt == FMT_CSV && strcmp(noun, "usage")) {
        fprintf(stderr, "maas admin: --format csv is for usage only (use table or json)\n");
        return 2;
    }
    if (a.opt[O_DATA] && a.opt[O_DB]) {
        fprintf(stderr, "maas admin: give --data DIR or --db URL, not both\n");
        return 2;
    }
    /* Only commands that create something may create the ledger: a mistyped
     * --data must not quietly show an empty, new one. */
    int creates = (!strcmp(noun, "account") && a.n_pos > 1 && !strcmp(a.pos[1], "create")) ||
                  (!strcmp(noun, "price") && a.n_pos > 1 && !strcmp(a.pos[1], "set")) || !strcmp(noun, "admin-key");
    if (!a.opt[O_DB] && !creates) {
        char path[4200];
        const char *dir = a.opt[O_DATA] ? a.opt[O_DATA] : "./maas-data";
        snprintf(path, sizeof path, "%s/ledger.db", dir);
        if (access(path, F_OK) != 0) {
            fprintf(stderr, "maas admin: no ledger in '%s' (create one with: maas admin --data %s account create NAME)\n",
                    dir, dir);
            return 1;
        }
    }
    struct billing_options o = {.db = a.opt[O_DB] ? a.opt[O_DB] : a.opt[O_DATA] ? a.opt[O_DATA] : "./maas-data",
                                .secret_file = a.opt[O_SECRET],
                                .n_conn = 1};
    struct billing *b = NULL;
    struct err e = {0};
    if (billing_open(&o, &b, &e))
        return fail("%s", e.msg);
    rc = run_subcmd(b, &a);
    billing_close(b);
    fflush(stdout);
    return rc;
}
