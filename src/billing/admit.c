/*
 * Admission (holds), settlement and recovery: the money path.
 *
 * billing_admit runs every check and places the hold in one write
 * transaction. It first touches the key's row (UPDATE last_used_at): under
 * SQLite BEGIN IMMEDIATE already serialises writers, and under PostgreSQL the
 * same statement takes the key's row lock, so the rate-limit and budget counts
 * that follow cannot race with another node's admission on the same key. The
 * balance check and the hold are a single conditional UPDATE
 * (held = held + w WHERE balance - held >= w), which both engines apply
 * atomically; zero changed rows means an insufficient balance.
 *
 * The admission transaction is "lazy" (no fsync of its own): a hold lost with
 * the machine belonged to a process that died with it, and recovery would
 * release it anyway; the next durable commit (a settlement) makes it durable.
 *
 * billing_settle_in_tx is the body of one settlement inside a transaction
 * opened by the writer thread (or the synchronous path): usage record, balance
 * update, ledger row, hold release. The usage table's primary key is the
 * request id, so a settlement can be written once only; a repeated settlement
 * finds the first record and returns it.
 */
#include "billing/billing_int.h"

#include <stdbool.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

bool billing_key_allows(const struct billing_key *k, const char *model)
{
    if (!k->models[0])
        return true;
    size_t n = strlen(model);
    for (const char *p = k->models; *p;) {
        const char *c = strchr(p, ',');
        size_t len = c ? (size_t)(c - p) : strlen(p);
        if (len == n && !strncmp(p, model, n))
            return true;
        if (!c)
            break;
        p = c + 1;
    }
    return false;
}

static int check_request_id(const char *id, struct err *e)
{
    size_t n = id ? strlen(id) : 0;
    if (n == 0 || n >= BILLING_ID_MAX)
        return err_set(e, ERR_INVALID, "request id must be 1 to %d characters", BILLING_ID_MAX - 1);
    for (size_t i = 0; i < n; i++) {
        char c = id[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_'))
            return err_set(e, ERR_INVALID, "request id '%s': only letters, digits, '-' and '_' allowed", id);
    }
    return 0;
}

struct window {
    int64_t count, oldest, tokens;
};

static int window_row(void *ctx, const struct store_row *r)
{
    struct window *w = ctx;
    w->count = store_row_int(r, 0);
    w->oldest = store_row_int(r, 1);
    w->tokens = store_row_int(r, 2);
    return 1;
}

/* One admission as its phases build it: the request, its connection, and
 * the key, price and admission found so far. */
struct admission {
    struct billing *b;
    const struct billing_request *r;
    struct store *s;
    int64_t now;
    struct billing_key k;
    struct billing_admission a;
};

/* Checks the request's own fields and names it (the caller's id, or a new one). */
static int admit_prepare(struct admission *ad, struct err *e)
{
    const struct billing_request *r = ad->r;
    if (!r->model || !*r->model || strlen(r->model) >= BILLING_MODEL_MAX)
        return err_set(e, ERR_INVALID, "admission: model name must be 1 to %d characters", BILLING_MODEL_MAX - 1);
    if (r->prompt_tokens < 0 || r->max_tokens < 0 || r->prompt_tokens > (INT64_C(1) << 40) ||
        r->max_tokens > (INT64_C(1) << 40))
        return err_set(e, ERR_INVALID, "admission: token counts must be between 0 and 2^40");
    if (r->request_id) {
        if (check_request_id(r->request_id, e))
            return -1;
        snprintf(ad->a.request_id, sizeof ad->a.request_id, "%s", r->request_id);
    } else {
        /* time-ordered (milliseconds, then 48 random bits), so that the
         * ledger's indexes grow at their ends instead of everywhere */
        snprintf(ad->a.request_id, sizeof ad->a.request_id, "req_%012llx",
                 (unsigned long long)(now_ms() & 0xffffffffffffull));
        billing_random_hex(ad->a.request_id + 16, 6);
    }
    ad->now = billing_now(ad->b);
    ad->a.admitted_at = ad->now;
    return 0;
}

/* The key, checked twice: first outside any transaction, so that
 * unauthenticated traffic never takes the write lock, then inside the write
 * transaction this opens, so that a key revoked in between is seen. Touching
 * its row then serialises the key's admissions (see the top of the file). */
static int admit_key(struct admission *ad, struct err *e)
{
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 1 && store_begin(ad->s, STORE_TX_WRITE_LAZY, e))
            return -1;
        struct err why;
        if (billing_key_check(ad->b, ad->s, ad->r->key, ad->now, &ad->k, &why)) {
            if (why.code == ERR_UNAVAILABLE) {
                *e = why;
                return -1;
            }
            return err_refuse(e, why.code == ERR_REFUSED ? why.reason : BILLING_KEY_UNKNOWN, "%s", why.msg);
        }
    }
    if (store_exec(ad->s, "UPDATE api_keys SET last_used_at = $1 WHERE id = $2",
                   (struct store_val[]){SV_INT(ad->now), SV_TEXT(ad->k.id)}, 2, NULL, e))
        return -1;
    snprintf(ad->a.key_id, sizeof ad->a.key_id, "%s", ad->k.id);
    snprintf(ad->a.account_id, sizeof ad->a.account_id, "%s", ad->k.account_id);
    int64_t w = 1;
    int found = 0;
    if (store_query_int(ad->s, "SELECT weight FROM accounts WHERE id = $1",
                        (struct store_val[]){SV_TEXT(ad->k.account_id)}, 1, &w, &found, e))
        return -1;
    ad->a.weight = found && w >= 1 && w <= 1000 ? (int)w : 1;
    return 0;
}

/* The model: allowed for the key, with a price in force, which sets the hold. */
static int admit_price(struct admission *ad, struct err *e)
{
    const struct billing_request *r = ad->r;
    if (!billing_key_allows(&ad->k, r->model))
        return err_refuse(e, BILLING_MODEL_NOT_ALLOWED, "this API key may not use model '%s'", r->model);
    struct billing_price price;
    int found = 0;
    if (billing_price_lookup(ad->s, r->model, ad->now, &price, &found, e))
        return -1;
    if (!found)
        return err_refuse(e, BILLING_MODEL_NOT_PRICED, "model '%s' has no price in force", r->model);
    ad->a.price_input = price.input;
    ad->a.price_cached = price.cached_input;
    ad->a.price_output = price.output;
    ad->a.hold = billing_worst_cost(r->prompt_tokens, r->max_tokens, price.input, price.cached_input, price.output);
    return 0;
}

/* Rate limits over the last 60 s: open holds and settled records. */
static int admit_rate(struct admission *ad, struct err *e)
{
    const struct billing_key *k = &ad->k;
    if (k->rpm <= 0 && k->tpm <= 0)
        return 0;
    int64_t now = ad->now;
    struct window w = {0, 0, 0};
    struct store_val p[2] = {SV_TEXT(k->id), SV_INT(now - 60)};
    if (store_query(ad->s,
                    "SELECT COUNT(*), COALESCE(MIN(t), 0), COALESCE(SUM(n), 0) FROM ("
                    " SELECT admitted_at AS t, prompt_tokens + max_tokens AS n FROM holds"
                    "  WHERE key_id = $1 AND admitted_at > $2"
                    " UNION ALL"
                    " SELECT admitted_at AS t, prompt_tokens + completion_tokens AS n FROM usage"
                    "  WHERE key_id = $1 AND admitted_at > $2) AS w",
                    p, 2, window_row, &w, e))
        return -1;
    int64_t retry = w.count ? w.oldest + 60 - now : 60;
    if (retry < 1)
        retry = 1;
    if (k->rpm > 0 && w.count + 1 > k->rpm) {
        ad->a.retry_after = retry;
        return err_refuse(e, BILLING_RATE_LIMITED, "rate limit of %lld requests per minute reached; retry in %lld s",
                          (long long)k->rpm, (long long)retry);
    }
    int64_t need = ad->r->prompt_tokens + ad->r->max_tokens;
    if (k->tpm > 0 && w.tokens + need > k->tpm) {
        if (need > k->tpm)
            return err_refuse(e, BILLING_RATE_LIMITED,
                              "request needs %lld tokens, more than the key's limit of %lld tokens per minute",
                              (long long)need, (long long)k->tpm);
        ad->a.retry_after = retry;
        return err_refuse(e, BILLING_RATE_LIMITED, "rate limit of %lld tokens per minute reached; retry in %lld s",
                          (long long)k->tpm, (long long)retry);
    }
    return 0;
}

/* Budget: settled costs in the period plus open holds. */
static int admit_budget(struct admission *ad, struct err *e)
{
    const struct billing_key *k = &ad->k;
    if (k->budget <= 0 || k->budget_period == BILLING_PERIOD_NONE)
        return 0;
    int64_t start = billing_period_start(k->budget_period, ad->now);
    int64_t spent = 0; /* settled in the period + open holds */
    /* One statement, so one snapshot: on PostgreSQL (READ COMMITTED) a
     * settlement committing between two statements could move a request
     * from holds to usage unseen by both. */
    if (store_query_int(ad->s,
                        "SELECT (SELECT COALESCE(SUM(cost), 0) FROM usage WHERE key_id = $1 AND admitted_at >= $2)"
                        " + (SELECT COALESCE(SUM(amount), 0) FROM holds WHERE key_id = $1)",
                        (struct store_val[]){SV_TEXT(k->id), SV_INT(start)}, 2, &spent, NULL, e))
        return -1;
    if (spent + ad->a.hold <= k->budget)
        return 0;
    ad->a.retry_after =
        k->budget_period == BILLING_PERIOD_TOTAL ? 0 : billing_period_end(k->budget_period, ad->now) - ad->now;
    char bud[32];
    return err_refuse(e, BILLING_BUDGET_EXCEEDED, "the key's %s budget of %s would be exceeded",
                      billing_period_name(k->budget_period), amount_format(k->budget, bud, sizeof bud));
}

/* A caller-chosen request id must be new to the ledger. */
static int admit_id_unused(struct admission *ad, struct err *e)
{
    if (!ad->r->request_id)
        return 0;
    int64_t used = 0;
    if (store_query_int(ad->s,
                        "SELECT (SELECT COUNT(*) FROM holds WHERE request_id = $1) +"
                        " (SELECT COUNT(*) FROM usage WHERE request_id = $1)",
                        (struct store_val[]){SV_TEXT(ad->a.request_id)}, 1, &used, NULL, e))
        return -1;
    if (used)
        return err_set(e, ERR_INVALID, "request id '%s' is already in the ledger", ad->a.request_id);
    return 0;
}

/* The balance check and the hold, as one conditional update, then the hold's row. */
static int admit_hold(struct admission *ad, struct err *e)
{
    const struct billing_request *r = ad->r;
    const struct billing_admission *a = &ad->a;
    int64_t changed = 0;
    if (store_exec(ad->s, "UPDATE accounts SET held = held + $1 WHERE id = $2 AND balance - held >= $1",
                   (struct store_val[]){SV_INT(a->hold), SV_TEXT(ad->k.account_id)}, 2, &changed, e))
        return -1;
    if (changed != 1) {
        char w[32];
        return err_refuse(e, BILLING_INSUFFICIENT, "insufficient balance: this request may cost up to %s",
                          amount_format(a->hold, w, sizeof w));
    }
    struct store_val hp[13] = {SV_TEXT(a->request_id), SV_TEXT(ad->k.account_id), SV_TEXT(ad->k.id),
                               SV_TEXT(r->model),      SV_INT(r->prompt_tokens),  SV_INT(r->max_tokens),
                               SV_INT(a->price_input), SV_INT(a->price_cached),   SV_INT(a->price_output),
                               SV_INT(a->hold),        SV_INT(ad->now),           SV_TEXT(ad->b->node),
                               SV_TEXT(ad->b->boot)};
    if (store_exec(ad->s,
                   "INSERT INTO holds (request_id, account_id, key_id, model, prompt_tokens, max_tokens,"
                   " price_input, price_cached, price_output, amount, admitted_at, node, boot)"
                   " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
                   hp, 13, NULL, e))
        return err_prefix(e, "request %s", a->request_id);
    return 0;
}

/* One attempt: the phases in order on one pooled connection. A refusal and a
 * failure both roll back (nothing to keep); success commits. */
static int admit_once(struct billing *b, const struct billing_request *r, struct billing_admission *out,
                      int *retryable, struct err *e)
{
    struct admission ad;
    memset(&ad, 0, sizeof ad);
    ad.b = b;
    ad.r = r;
    if (admit_prepare(&ad, e))
        return -1;
    ad.s = billing_conn_get(b);
    int rc = admit_key(&ad, e) || admit_price(&ad, e) || admit_rate(&ad, e) || admit_budget(&ad, e) ||
                     admit_id_unused(&ad, e) || admit_hold(&ad, e) || store_commit(ad.s, e)
                 ? -1
                 : 0;
    if (rc && e->code == ERR_REFUSED)
        out->retry_after = ad.a.retry_after;
    else if (rc)
        *retryable = store_last_retryable(ad.s);
    store_rollback(ad.s);
    billing_conn_put(b, ad.s);
    if (rc == 0)
        *out = ad.a;
    return rc;
}

/* Retries an admission that lost a deadlock or serialization race (only
 * possible on a shared database); it had rolled back, so nothing is held. */
int billing_admit(struct billing *b, const struct billing_request *r, struct billing_admission *out,
                  struct err *e)
{
    for (int attempt = 0;; attempt++) {
        int retryable = 0;
        int rc = admit_once(b, r, out, &retryable, e);
        if (rc == 0 || !retryable || attempt == 4)
            return rc;
        usleep((useconds_t)(1000 << attempt));
    }
}

/* ---- settlement ---- */

int billing_settle_check(const char *request_id, int64_t prompt, int64_t cached, int64_t completion,
                         const char *finish_reason, struct err *e)
{
    if (check_request_id(request_id, e))
        return -1;
    if (prompt < 0 || cached < 0 || completion < 0 || prompt > (INT64_C(1) << 40) ||
        completion > (INT64_C(1) << 40))
        return err_set(e, ERR_INVALID, "request %s: token counts must be between 0 and 2^40", request_id);
    if (cached > prompt)
        return err_set(e, ERR_INVALID, "request %s: cached tokens (%lld) exceed prompt tokens (%lld)", request_id,
                       (long long)cached, (long long)prompt);
    size_t n = finish_reason ? strlen(finish_reason) : 0;
    if (n == 0 || n > 31)
        return err_set(e, ERR_INVALID, "request %s: finish reason must be 1 to 31 characters", request_id);
    for (size_t i = 0; i < n; i++)
        if (!((finish_reason[i] >= 'a' && finish_reason[i] <= 'z') || finish_reason[i] == '_'))
            return err_set(e, ERR_INVALID, "request %s: finish reason '%s': only a-z and '_' allowed", request_id, finish_reason);
    return 0;
}

#define USAGE_COLS \
    "request_id, account_id, key_id, model, prompt_tokens, cached_tokens, completion_tokens," \
    " price_input, price_cached, price_output, cost, admitted_at, ended_at, finish_reason, compute_us, compute_cost"
/* A hold read as the usage it reserves: no cached tokens, max_tokens
 * completion tokens, its amount as the cost. */
#define HOLD_AS_USAGE_COLS \
    "request_id, account_id, key_id, model, prompt_tokens, 0, max_tokens," \
    " price_input, price_cached, price_output, amount, admitted_at, admitted_at, 'held', 0, 0"

#define U_TEXT(f) BILLING_COL_TEXT(struct billing_usage, f)
#define U_INT(f) BILLING_COL_INT(struct billing_usage, f)
static const struct billing_col usage_cols[] = {
    U_TEXT(request_id),  U_TEXT(account_id),    U_TEXT(key_id),       U_TEXT(model),
    U_INT(prompt_tokens), U_INT(cached_tokens), U_INT(completion_tokens), U_INT(price_input),
    U_INT(price_cached), U_INT(price_output),   U_INT(cost),          U_INT(admitted_at),
    U_INT(ended_at),     U_TEXT(finish_reason), U_INT(compute_us),    U_INT(compute_cost),
};

/* Reads one usage record (USAGE_COLS or HOLD_AS_USAGE_COLS) into ctx and stops. */
static int usage_row(void *ctx, const struct store_row *r)
{
    billing_row_read(r, usage_cols, sizeof usage_cols / sizeof *usage_cols, ctx);
    return 1;
}

int billing_settle_in_tx(struct billing *b, struct store *s, const struct settle_job *j, struct billing_usage *out,
                         struct err *e)
{
    struct store_val rid[1] = {SV_TEXT(j->request_id)};
    /* Taking the hold is the claim. A hold and its usage record never exist
     * together (both change in one transaction), so no hold means either
     * already settled — the first record stands — or unknown. With several
     * nodes on one database, a second settler of the same request blocks on
     * this row until the first commits, then finds it gone and the record. */
    struct billing_usage h;
    memset(&h, 0, sizeof h);
    if (store_query(s, "DELETE FROM holds WHERE request_id = $1 RETURNING " HOLD_AS_USAGE_COLS, rid, 1, usage_row, &h,
                    e))
        return -1;
    if (!h.request_id[0]) {
        struct billing_usage u;
        memset(&u, 0, sizeof u);
        if (store_query(s, "SELECT " USAGE_COLS " FROM usage WHERE request_id = $1", rid, 1, usage_row, &u, e))
            return -1;
        if (u.request_id[0]) { /* already settled */
            if (!strcmp(u.finish_reason, "abandoned") && strcmp(j->finish_reason, "abandoned") &&
                (j->prompt || j->completion))
                log_warn("request %s: its hold was released as abandoned before it finished (its process was"
                         " judged dead: see lease.c); %lld prompt and %lld completion tokens are not billed",
                         j->request_id, (long long)j->prompt, (long long)j->completion);
            *out = u;
            return 0;
        }
        return err_set(e, ERR_NOT_FOUND, "request %s: no such admitted request", j->request_id);
    }
    int64_t cost = billing_cost(j->prompt, j->cached, j->completion, h.price_input, h.price_cached, h.price_output);
    if (cost > h.cost) {
        log_warn("request %s: usage (%lld prompt, %lld completion tokens) exceeds what was admitted (%lld, %lld);"
                 " charging the hold", j->request_id, (long long)j->prompt, (long long)j->completion,
                 (long long)h.prompt_tokens, (long long)h.completion_tokens);
        cost = h.cost;
    }
    int64_t now = billing_now(b);
    char day[24];
    time_format_day(h.admitted_at, day, sizeof day);
    int64_t pch = 0;
    if (store_query_int(s,
                        "SELECT per_core_hour FROM compute_prices WHERE effective_from <= $1"
                        " ORDER BY effective_from DESC LIMIT 1",
                        (struct store_val[]){SV_INT(h.admitted_at)}, 1, &pch, NULL, e))
        return -1;
    int64_t ccost = billing_compute_cost(j->compute_us, pch);
    struct store_val up[17] = {SV_TEXT(j->request_id), SV_TEXT(h.account_id),   SV_TEXT(h.key_id),
                               SV_TEXT(h.model),       SV_INT(j->prompt),       SV_INT(j->cached),
                               SV_INT(j->completion),  SV_INT(h.price_input),   SV_INT(h.price_cached),
                               SV_INT(h.price_output), SV_INT(cost),            SV_INT(h.admitted_at),
                               SV_INT(now),            SV_TEXT(day),            SV_TEXT(j->finish_reason),
                               SV_INT(j->compute_us),  SV_INT(ccost)};
    if (store_exec(s,
                   "INSERT INTO usage (request_id, account_id, key_id, model, prompt_tokens, cached_tokens,"
                   " completion_tokens, price_input, price_cached, price_output, cost, admitted_at, ended_at, day,"
                   " finish_reason, compute_us, compute_cost)"
                   " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)",
                   up, 17, NULL, e))
        return -1;
    int64_t balance = 0;
    int found = 0;
    if (store_query_int(s,
                        "UPDATE accounts SET balance = balance - $1, held = held - $2"
                        " WHERE id = $3 AND held >= $2 RETURNING balance",
                        (struct store_val[]){SV_INT(cost), SV_INT(h.cost), SV_TEXT(h.account_id)}, 3, &balance,
                        &found, e))
        return -1;
    if (!found)
        return err_set(e, ERR_INVALID, "request %s: account %s holds less than the request's hold", j->request_id, h.account_id);
    if (billing_ledger_row(s, h.account_id, "usage", -cost, balance, j->request_id, now, e))
        return -1;
    /* the record just written: the hold's names and prices, the real counts */
    *out = h;
    snprintf(out->request_id, sizeof out->request_id, "%s", j->request_id);
    out->prompt_tokens = j->prompt;
    out->cached_tokens = j->cached;
    out->completion_tokens = j->completion;
    out->compute_us = j->compute_us;
    out->compute_cost = ccost;
    out->cost = cost;
    out->ended_at = now;
    snprintf(out->finish_reason, sizeof out->finish_reason, "%s", j->finish_reason);
    return 0;
}

/* ---- recovery ---- */

struct stale_list {
    char (*ids)[BILLING_ID_MAX];  /* owned */
    char (*boots)[96];            /* owned */
    int *old;                     /* owned: older than the timeout */
    int n, cap;
    int oom;
};

static int stale_row(void *ctx, const struct store_row *r)
{
    struct stale_list *l = ctx;
    if (l->n == l->cap) {
        int cap = l->cap ? l->cap * 2 : 64;
        void *p1 = realloc(l->ids, (size_t)cap * sizeof *l->ids);
        if (p1)
            l->ids = p1;
        void *p2 = realloc(l->boots, (size_t)cap * sizeof *l->boots);
        if (p2)
            l->boots = p2;
        void *p3 = realloc(l->old, (size_t)cap * sizeof *l->old);
        if (p3)
            l->old = p3;
        if (!p1 || !p2 || !p3) {
            l->oom = 1;
            return 1;
        }
        l->cap = cap;
    }
    snprintf(l->ids[l->n], BILLING_ID_MAX, "%s", store_row_text(r, 0));
    snprintf(l->boots[l->n], sizeof l->boots[l->n], "%s", store_row_text(r, 1));
    l->old[l->n] = (int)store_row_int(r, 2);
    l->n++;
    return 0;
}

static int recover_once(struct billing *b, struct store *s, int64_t cutoff, int64_t stale_after, bool ask_liveness,
                        const struct dead_boots *dead, int64_t *n_released, int *retryable, struct err *e);

/* On a shared database the processes dead by their lease are found first,
 * outside the transaction (it takes lease_grace_ms when a lease is free), and
 * their leases stay claimed on s until the release has committed (lease.c). */
static int recover(struct billing *b, int64_t stale_after, bool ask_liveness, int64_t *n_released, struct err *e)
{
    int64_t cutoff = stale_after > 0 ? billing_now(b) - stale_after : INT64_MIN;
    struct dead_boots dead = {NULL, 0, 0};
    struct store *s = billing_conn_get(b);
    int rc = -1;
    if (b->shared && ask_liveness && billing_dead_boots_find(b, s, cutoff, &dead, e))
        goto out;
    for (int attempt = 0;; attempt++) {
        int retryable = 0;
        rc = recover_once(b, s, cutoff, stale_after, ask_liveness, &dead, n_released, &retryable, e);
        if (rc == 0 || !retryable || attempt == 4)
            break;
        usleep((useconds_t)(1000 << attempt));
    }
    billing_dead_boots_release(s, &dead);
out:
    billing_conn_put(b, s);
    return rc;
}

int billing_recover(struct billing *b, int64_t stale_after, int64_t *n_released, struct err *e)
{
    return recover(b, stale_after, true, n_released, e);
}

/* The periodic sweep of a live node. What it releases cannot belong to a
 * request still running, and a release can never double-count: the hold's
 * DELETE ... RETURNING in billing_settle_in_tx is the claim, so of a
 * settlement and a release of the same request exactly one takes the hold
 * and writes the one usage record; the other finds that record.
 *   - holds older than stale_after (of any process, this one included): no
 *     request runs that long, as at start;
 *   - holds of another process of this node that is gone, when liveness is
 *     the flock of a data directory: the kernel holds that lock for exactly
 *     the life of the process.
 * It does not judge processes of a shared ledger by their leases. A lease
 * lives on database sessions, which a database restart, an idle-session kill
 * or a network cut ends while the process lives on; the process takes it
 * again as soon as it reaches the database (lease.c), and recovery looks
 * twice, lease_grace_ms apart, so only a process cut off for longer than that
 * looks dead. A sweep every few minutes on every node would make that
 * remaining risk a recurring one (the running requests of a node cut off
 * from the database, released unbilled each period); at start it is a
 * one-off. Those holds wait for a start, or for stale_after. */
int billing_recover_live(struct billing *b, int64_t stale_after, int64_t *n_released, struct err *e)
{
    if (stale_after <= 0)
        return err_set(e, ERR_INVALID, "ledger recovery: a live node needs an age limit (stale_after %lld)",
                       (long long)stale_after);
    return recover(b, stale_after, !b->shared, n_released, e);
}

static int recover_once(struct billing *b, struct store *s, int64_t cutoff, int64_t stale_after, bool ask_liveness,
                        const struct dead_boots *dead, int64_t *n_released, int *retryable, struct err *e)
{
    struct stale_list l = {NULL, NULL, NULL, 0, 0, 0};
    int rc = -1;
    int64_t released = 0;
    if (store_begin(s, STORE_TX_WRITE, e))
        goto out;
    /* Candidates: holds of other processes of this node, or of any node on
     * a shared database (whose liveness any node can ask), and holds older
     * than the timeout. Without ask_liveness (billing_recover_live on a shared
     * database) only the old ones. */
    if (store_query(s,
                    "SELECT request_id, boot, CASE WHEN admitted_at < $3 THEN 1 ELSE 0 END FROM holds"
                    " WHERE ($5 = 1 AND (node = $1 OR $4 = 1) AND boot <> $2) OR admitted_at < $3"
                    " ORDER BY boot, request_id",
                    (struct store_val[]){SV_TEXT(b->node), SV_TEXT(b->boot), SV_INT(cutoff), SV_INT(b->shared),
                                         SV_INT(ask_liveness ? 1 : 0)},
                    5, stale_row, &l, e))
        goto out;
    if (l.oom) {
        err_set(e, ERR_NOMEM, "ledger recovery: out of memory");
        goto out;
    }
    int last_dead = 0;
    for (int i = 0; i < l.n; i++) {
        /* Another process: release only if it is gone (asked once per boot
         * in a row of the same boot). */
        if (!l.old[i]) {
            int is_dead;
            if (i > 0 && !strcmp(l.boots[i], l.boots[i - 1]))
                is_dead = last_dead;
            else
                is_dead = b->shared ? billing_dead_boots_has(dead, l.boots[i]) : billing_boot_dead(b, l.boots[i]);
            last_dead = is_dead;
            if (!is_dead)
                continue;
        }
        struct settle_job j = {.request_id = l.ids[i], .finish_reason = "abandoned"};
        struct billing_usage u;
        if (billing_settle_in_tx(b, s, &j, &u, e))
            goto out;
        released++;
    }
    if (store_commit(s, e))
        goto out;
    if (released && stale_after > 0)
        log_info("ledger: released %lld hold(s) of processes that stopped or older than %lld s; not charged",
                 (long long)released, (long long)stale_after);
    else if (released)
        log_info("ledger: released %lld hold(s) left by processes that stopped; not charged", (long long)released);
    billing_boot_sweep(b);
    if (n_released)
        *n_released = released;
    rc = 0;
out:
    if (rc) {
        *retryable = store_last_retryable(s);
        store_rollback(s);
    }
    free(l.ids);
    free(l.boots);
    free(l.old);
    return rc;
}

/* ---- an account's recent usage records ---- */

struct recent_ctx {
    billing_recent_fn fn;
    void *ctx;
};

static int recent_row(void *ctx, const struct store_row *r)
{
    struct recent_ctx *rc = ctx;
    struct billing_usage u;
    memset(&u, 0, sizeof u);
    billing_row_read(r, usage_cols, sizeof usage_cols / sizeof *usage_cols, &u);
    return rc->fn(rc->ctx, &u) ? 1 : 0;
}

int billing_usage_recent(struct billing *b, const char *account_id, int limit, billing_recent_fn fn, void *ctx,
                         struct err *e)
{
    if (limit < 1 || limit > BILLING_RECENT_MAX)
        return err_set(e, ERR_INVALID, "recent requests: limit %d is not in [1, %d]", limit, BILLING_RECENT_MAX);
    struct recent_ctx rc = {fn, ctx};
    struct store *s = billing_conn_get(b);
    int64_t found = 0;
    int rv = store_query_int(s, "SELECT COUNT(*) FROM accounts WHERE id = $1",
                             (struct store_val[]){SV_TEXT(account_id)}, 1, &found, NULL, e);
    if (rv == 0 && !found)
        rv = err_set(e, ERR_NOT_FOUND, "account '%s': no such account", account_id);
    if (rv == 0)
        rv = store_query(s,
                         "SELECT " USAGE_COLS " FROM usage WHERE account_id = $1"
                         " ORDER BY admitted_at DESC, request_id DESC LIMIT $2",
                         (struct store_val[]){SV_TEXT(account_id), SV_INT(limit)}, 2, recent_row, &rc, e);
    billing_conn_put(b, s);
    return rv;
}
