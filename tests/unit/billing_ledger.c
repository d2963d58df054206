/* billing: keys, admission refusals (401/402/403/429), 64 concurrent
 * admissions against a small balance, idempotent settlement, prices changing
 * mid-stream, budgets and rate limits, recovery of stale holds, and fault
 * injection (the ledger balances whatever operation fails). */
#include "billing/billing.h"
#include "store/store.h"
#include "test.h"

#include <pthread.h>
#include <unistd.h>

static int64_t fake_now = 1700000000; /* 2023-11-14T22:13:20Z */
static int64_t clock_fn(void *ctx)
{
    (void)ctx;
    return __atomic_load_n(&fake_now, __ATOMIC_SEQ_CST);
}

static char dir[256];

static struct billing *open_b(const char *node, int writer, int fresh)
{
    struct err e = {0};
    snprintf(dir, sizeof dir, "/tmp/maas-billing-test-%d", (int)getpid());
    if (fresh) {
        char cmd[300];
        snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
        CHECK(system(cmd) == 0);
    }
    struct billing_options o = {.db = dir, .node = node, .writer = writer, .n_conn = 8, .now = clock_fn};
    struct billing *b = NULL;
    CHECKF(billing_open(&o, &b, &e) == 0, "%s", e.msg);
    return b;
}

static void must(int rc, const struct err *e)
{
    CHECKF(rc == 0, "%s", e->msg);
}

static void setup_acct(struct billing *b, const char *credit, char *acct, char *key, const struct billing_key_spec *spec)
{
    struct err e = {0};
    int64_t c = 0;
    must(amount_parse(credit, 0, &c, &e), &e);
    must(billing_account_create(b, "test", c, acct, &e), &e);
    must(billing_key_create(b, acct, spec, key, NULL, &e), &e);
}

static void set_price(struct billing *b, const char *model, int64_t in, int64_t cached, int64_t out, int64_t from)
{
    struct err e = {0};
    struct billing_price p = {.input = in, .cached_input = cached, .output = out, .effective_from = from};
    snprintf(p.model, sizeof p.model, "%s", model);
    must(billing_price_set(b, &p, &e), &e);
}

/* An admission as these tests look at it: status ADMITTED or the refusal's
 * enum billing_reason, with its message; the rest as billing_admit fills it. */
#define ADMITTED 0
struct adm {
    int status;
    char message[256];
    int64_t retry_after, hold, price_input, price_output;
    int weight;
    char request_id[BILLING_ID_MAX], account_id[BILLING_ID_MAX];
};

static struct adm admit(struct billing *b, const char *key, const char *model, int64_t prompt, int64_t max_tokens)
{
    struct err e = {0};
    struct billing_admission a;
    memset(&a, 0, sizeof a);
    struct billing_request r = {.key = key, .model = model, .prompt_tokens = prompt, .max_tokens = max_tokens};
    int rc = billing_admit(b, &r, &a, &e);
    if (rc && e.code != ERR_REFUSED)
        must(rc, &e);
    struct adm out = {.status = rc ? e.reason : ADMITTED, .retry_after = a.retry_after};
    if (rc) {
        snprintf(out.message, sizeof out.message, "%s", e.msg);
        return out;
    }
    out.hold = a.hold;
    out.price_input = a.price_input;
    out.price_output = a.price_output;
    out.weight = a.weight;
    snprintf(out.request_id, sizeof out.request_id, "%s", a.request_id);
    snprintf(out.account_id, sizeof out.account_id, "%s", a.account_id);
    return out;
}

static struct billing_account acct_get(struct billing *b, const char *id)
{
    struct err e = {0};
    struct billing_account a;
    memset(&a, 0, sizeof a);
    must(billing_account_get(b, id, &a, &e), &e);
    return a;
}

static void audit_ok(struct billing *b)
{
    struct err e = {0};
    CHECKF(billing_audit(b, &e) == 0, "%s", e.msg);
}

TEST(keys_verify)
{
    struct billing *b = open_b("n1", 0, 1);
    struct err e = {0};
    char acct[BILLING_ID_MAX], key[BILLING_KEY_LEN + 1];
    setup_acct(b, "5", acct, key, NULL);
    CHECK(strlen(key) == BILLING_KEY_LEN && !strncmp(key, "sk-maas-", 8));
    struct billing_key k;
    must(billing_authenticate(b, key, &k, &e), &e);
    CHECK(!strcmp(k.account_id, acct));
    CHECK(!strncmp(k.id, key + 8, 12));

    char bad[BILLING_KEY_LEN + 1];
    memcpy(bad, key, sizeof bad);
    bad[BILLING_KEY_LEN - 1] = bad[BILLING_KEY_LEN - 1] == 'A' ? 'B' : 'A'; /* wrong secret */
    CHECK(billing_authenticate(b, bad, &k, &e) == -1 && e.code == ERR_NOT_FOUND);
    CHECKF(!strstr(e.msg, bad + 20), "message leaks the key: %s", e.msg);
    memcpy(bad, key, sizeof bad);
    bad[8] = bad[8] == 'a' ? 'b' : 'a'; /* tampered prefix */
    CHECK(billing_authenticate(b, bad, &k, &e) == -1);
    CHECK(billing_authenticate(b, "sk-maas-short", &k, &e) == -1 && e.code == ERR_INVALID);
    CHECK(billing_authenticate(b, "", &k, &e) == -1);
    CHECK(billing_authenticate(b, NULL, &k, &e) == -1);

    /* another account's valid key with this key's prefix does not pass */
    char acct2[BILLING_ID_MAX], key2[BILLING_KEY_LEN + 1];
    setup_acct(b, "1", acct2, key2, NULL);
    memcpy(bad, key, sizeof bad);
    memcpy(bad + 20, key2 + 20, BILLING_KEY_LEN - 20);
    CHECK(billing_authenticate(b, bad, &k, &e) == -1);

    /* expiry */
    char key3[BILLING_KEY_LEN + 1];
    struct billing_key_spec sp = {.expires_at = fake_now + 100};
    must(billing_key_create(b, acct, &sp, key3, NULL, &e), &e);
    must(billing_authenticate(b, key3, &k, &e), &e);
    fake_now += 100;
    CHECK(billing_authenticate(b, key3, &k, &e) == -1 && e.code == ERR_REFUSED && e.reason == BILLING_KEY_EXPIRED);
    CHECKF(strstr(e.msg, "expired"), "%s", e.msg);
    fake_now -= 100;

    /* revocation, by id or whole key; unknown ids */
    must(billing_key_revoke(b, key, &e), &e);
    CHECK(billing_authenticate(b, key, &k, &e) == -1 && e.code == ERR_REFUSED && e.reason == BILLING_KEY_REVOKED);
    CHECKF(strstr(e.msg, "revoked"), "%s", e.msg);
    must(billing_key_revoke(b, k.id[0] ? k.id : key + 8, &e), &e); /* twice is fine */
    CHECK(billing_key_revoke(b, "000000000000", &e) == -1);
    CHECK(billing_key_revoke(b, "zz", &e) == -1);

    /* the database holds no key material */
    struct adm a = admit(b, key, "m", 1, 1);
    CHECK(a.status == BILLING_KEY_REVOKED);
    CHECK(!strstr(a.message, key + 20));

    /* keys for unknown accounts; budget without period */
    CHECK(billing_key_create(b, "acct_nope", NULL, key3, NULL, &e) == -1);
    struct billing_key_spec sp2 = {.budget = 5};
    CHECK(billing_key_create(b, acct, &sp2, key3, NULL, &e) == -1);

    /* admin keys */
    int missing = 0;
    must(billing_admin_key_missing(b, &missing, &e), &e);
    CHECK(missing == 1);
    char ak[128];
    must(billing_admin_key_create(b, ak, sizeof ak, &e), &e);
    must(billing_admin_key_verify(b, ak, &e), &e);
    CHECK(billing_admin_key_verify(b, key2, &e) == -1); /* a tenant key is not an admin key */
    ak[strlen(ak) - 1] ^= 1;
    CHECK(billing_admin_key_verify(b, ak, &e) == -1);
    must(billing_admin_key_import(b, "operator-chosen-admin-secret-0123", &e), &e);
    must(billing_admin_key_import(b, "operator-chosen-admin-secret-0123", &e), &e);
    must(billing_admin_key_verify(b, "operator-chosen-admin-secret-0123", &e), &e);
    CHECK(billing_admin_key_verify(b, "operator-chosen-admin-secret-0124", &e) == -1 && e.code == ERR_NOT_FOUND);
    /* a ledger that cannot be consulted is not a bad key */
    billing_fail_after(b, 0);
    CHECK(billing_authenticate(b, key2, &k, &e) == -1 && e.code == ERR_UNAVAILABLE);
    CHECK(billing_admin_key_verify(b, "operator-chosen-admin-secret-0123", &e) == -1 && e.code == ERR_UNAVAILABLE);
    billing_fail_after(b, -1);
    CHECK(billing_admin_key_import(b, "short", &e) == -1);
    CHECK(billing_admin_key_import(b, "has a space in the middle of it ok", &e) == -1);
    billing_close(b);
}

TEST(refusals)
{
    struct billing *b = open_b("n1", 0, 1);
    char acct[BILLING_ID_MAX], key[BILLING_KEY_LEN + 1];
    struct billing_key_spec sp = {.models = "m1,m2"};
    setup_acct(b, "1", acct, key, &sp);
    set_price(b, "m1", 1000000, 500000, 2000000, 0);
    set_price(b, "m2", 1000000, 500000, 2000000, fake_now + 10); /* not yet in force */
    struct adm a = admit(b, key, "m3", 10, 10);
    CHECK(a.status == BILLING_MODEL_NOT_ALLOWED);
    a = admit(b, key, "m2", 10, 10);
    CHECK(a.status == BILLING_MODEL_NOT_PRICED);
    a = admit(b, "sk-maas-000000000000_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "m1", 10, 10);
    CHECK(a.status == BILLING_KEY_UNKNOWN);
    /* 1 unit covers 1e6 micro; 1 prompt token + 1e6 output tokens at 2/Mtok = 2 units */
    a = admit(b, key, "m1", 1, 1000000);
    CHECK(a.status == BILLING_INSUFFICIENT);
    a = admit(b, key, "m1", 100, 100);
    CHECK(a.status == ADMITTED && a.hold == 300);
    struct billing_account ac = acct_get(b, acct);
    CHECK(ac.held == 300 && ac.balance == 1000000);
    CHECK(a.price_input == 1000000 && a.price_output == 2000000 && a.request_id[0] && !strcmp(a.account_id, acct));
    struct err e;
    struct billing_request bad = {.key = key, .model = "m1", .prompt_tokens = -1, .max_tokens = 1};
    struct billing_admission ba;
    CHECK(billing_admit(b, &bad, &ba, &e) == -1 && e.code == ERR_INVALID);
    /* a caller-chosen request id is used once only */
    struct billing_request named = {.key = key, .model = "m1", .prompt_tokens = 1, .max_tokens = 1,
                                    .request_id = "chatcmpl-abc123"};
    CHECK(billing_admit(b, &named, &ba, &e) == 0 && !strcmp(ba.request_id, "chatcmpl-abc123"));
    CHECK(billing_admit(b, &named, &ba, &e) == -1 && e.code == ERR_INVALID);
    CHECKF(strstr(e.msg, "already"), "%s", e.msg);
    named.request_id = "bad id!";
    CHECK(billing_admit(b, &named, &ba, &e) == -1);
    audit_ok(b);
    billing_close(b);
}

struct race {
    struct billing *b;
    const char *key;
    int ok, insufficient, other;
    char ids[64][BILLING_ID_MAX];
    pthread_mutex_t mu;
    int go;
};

static void *race_thread(void *arg)
{
    struct race *r = arg;
    while (!__atomic_load_n(&r->go, __ATOMIC_ACQUIRE))
        ;
    struct err e = {0};
    struct billing_admission a;
    struct billing_request req = {.key = r->key, .model = "m", .prompt_tokens = 1000, .max_tokens = 1000};
    int rc = billing_admit(r->b, &req, &a, &e);
    pthread_mutex_lock(&r->mu);
    if (rc == 0) {
        snprintf(r->ids[r->ok++], BILLING_ID_MAX, "%s", a.request_id);
    } else if (e.code == ERR_REFUSED && e.reason == BILLING_INSUFFICIENT) {
        r->insufficient++;
    } else {
        fprintf(stderr, "  admit failed: %s\n", e.msg);
        r->other++;
    }
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

struct settle_arg {
    struct billing *b;
    const char *id;
    int rc;
};

static void *settle_thread(void *arg)
{
    struct settle_arg *s = arg;
    struct err e = {0};
    struct billing_usage u;
    s->rc = billing_settle(s->b, s->id, 1000, 100, 500, "stop", &u, &e);
    if (s->rc)
        fprintf(stderr, "  settle failed: %s\n", e.msg);
    return NULL;
}

TEST(concurrent_64_no_overdraw)
{
    struct billing *b = open_b("n1", 1, 1);
    char acct[BILLING_ID_MAX], key[BILLING_KEY_LEN + 1];
    /* worst case per request: 1000 * 100 + 1000 * 200 = 300000 micro*tok/1e6... use prices that make it 0.3 */
    set_price(b, "m", 100000000, 50000000, 200000000, 0); /* 100 / 50 / 200 units per Mtok */
    setup_acct(b, "10", acct, key, NULL);
    /* worst = (1000*1e8 + 1000*2e8)/1e6 = 300000 micro = 0.3; floor(10 / 0.3) = 33 */
    struct race r;
    memset(&r, 0, sizeof r);
    r.b = b;
    r.key = key;
    pthread_mutex_init(&r.mu, NULL);
    pthread_t th[64];
    for (int i = 0; i < 64; i++)
        pthread_create(&th[i], NULL, race_thread, &r);
    __atomic_store_n(&r.go, 1, __ATOMIC_RELEASE);
    for (int i = 0; i < 64; i++)
        pthread_join(th[i], NULL);
    CHECKF(r.ok == 33 && r.insufficient == 31 && r.other == 0, "ok %d, 402 %d, other %d", r.ok, r.insufficient,
           r.other);
    struct billing_account a = acct_get(b, acct);
    CHECK(a.held == 33 * 300000 && a.balance == 10000000 && a.balance - a.held >= 0);
    audit_ok(b);
    /* settle them concurrently through the writer: actual 900 + 100 cached + 500 out
     * = (900*1e8 + 100*5e7 + 500*2e8)/1e6 = 90000 + 5000 + 100000 = 195000 */
    struct settle_arg sa[64];
    for (int i = 0; i < r.ok; i++) {
        sa[i] = (struct settle_arg){b, r.ids[i], -1};
        pthread_create(&th[i], NULL, settle_thread, &sa[i]);
    }
    for (int i = 0; i < r.ok; i++) {
        pthread_join(th[i], NULL);
        CHECK(sa[i].rc == 0);
    }
    a = acct_get(b, acct);
    CHECKF(a.held == 0 && a.balance == 10000000 - 33 * 195000, "held %lld balance %lld", (long long)a.held,
           (long long)a.balance);
    audit_ok(b);
    pthread_mutex_destroy(&r.mu);
    billing_close(b);
}

static int count_row(void *ctx, const struct billing_usage_row *r)
{
    (*(int *)ctx)++;
    return 0;
}

TEST(settle_idempotent)
{
    struct billing *b = open_b("n1", 1, 1);
    struct err e = {0};
    char acct[BILLING_ID_MAX], key[BILLING_KEY_LEN + 1];
    set_price(b, "m", 1000000, 100000, 3000000, 0);
    setup_acct(b, "1", acct, key, NULL);
    struct adm a = admit(b, key, "m", 100, 200);
    CHECK(a.status == ADMITTED);
    CHECK(a.hold == 700); /* 100*1 + 200*3 */
    struct billing_usage u1, u2;
    must(billing_settle(b, a.request_id, 100, 40, 50, "stop", &u1, &e), &e);
    /* (60*1e6 + 40*1e5 + 50*3e6)/1e6 = 60 + 4 + 150 = 214 */
    CHECK(u1.cost == 214 && u1.cached_tokens == 40 && !strcmp(u1.finish_reason, "stop"));
    must(billing_settle(b, a.request_id, 100, 0, 200, "length", &u2, &e), &e);
    CHECK(u2.cost == 214 && u2.completion_tokens == 50 && !strcmp(u2.finish_reason, "stop"));
    struct billing_account ac = acct_get(b, acct);
    CHECK(ac.balance == 1000000 - 214 && ac.held == 0);
    struct billing_usage_row tot;
    struct billing_usage_filter f = {.account_id = acct};
    int n = 0;
    must(billing_usage_report(b, &f, BILLING_BY_REQUEST, count_row, &n, &tot, &e), &e);
    CHECK(n == 1 && tot.requests == 1 && tot.cost == 214);
    audit_ok(b); /* exactly one ledger row per usage record */
    billing_close(b);
}

TEST(settle_errors_and_report)
{
    struct billing *b = open_b("n1", 0, 1);
    struct err e = {0};
    char acct[BILLING_ID_MAX], key[BILLING_KEY_LEN + 1];
    set_price(b, "m", 1000000, 100000, 3000000, 0);
    setup_acct(b, "1", acct, key, NULL);
    struct billing_usage u;
    CHECK(billing_settle(b, "req_unknown", 1, 0, 1, "stop", &u, &e) == -1);
    CHECKF(strstr(e.msg, "no such"), "%s", e.msg);
    struct adm a = admit(b, key, "m", 100, 200);
    CHECK(billing_settle(b, a.request_id, 10, 11, 1, "stop", &u, &e) == -1); /* cached > prompt */
    CHECK(billing_settle(b, a.request_id, 10, 1, -1, "stop", &u, &e) == -1);
    CHECK(billing_settle(b, a.request_id, 10, 1, 1, "Stop!", &u, &e) == -1);
    CHECK(billing_settle(b, "bad id", 10, 1, 1, "stop", &u, &e) == -1);
    /* more tokens than admitted: charged at most the hold */
    must(billing_settle(b, a.request_id, 1000, 0, 1000, "length", &u, &e), &e);
    CHECK(u.cost == a.hold);
    struct adm a2 = admit(b, key, "m", 10, 10);
    must(billing_settle(b, a2.request_id, 10, 5, 10, "cancelled", &u, &e), &e);
    int n = 0;
    struct billing_usage_row tot;
    struct billing_usage_filter f = {.account_id = acct};
    must(billing_usage_report(b, &f, BILLING_BY_REQUEST, count_row, &n, &tot, &e), &e);
    CHECK(n == 2 && tot.requests == 2 && tot.cost == a.hold + u.cost && tot.prompt_tokens == 1010 &&
          tot.cached_tokens == 5 && tot.completion_tokens == 1010);
    struct billing_usage_filter f2 = {.account_id = "acct_missing"};
    CHECK(billing_usage_report(b, &f2, BILLING_BY_DAY, count_row, &n, &tot, &e) == -1);
    audit_ok(b);
    billing_close(b);
}

TEST(price_change_mid_stream)
{
    struct billing *b = open_b("n1", 1, 1);
    struct err e = {0};
    char acct[BILLING_ID_MAX], key[BILLING_KEY_LEN + 1];
    setup_acct(b, "100", acct, key, NULL);
    int64_t t0 = fake_now;
    set_price(b, "m", 1000000, 1000000, 1000000, t0 - 10);
    struct adm before = admit(b, key, "m", 1000, 1000); /* admitted at old price */
    set_price(b, "m", 5000000, 5000000, 5000000, t0 + 60);           /* takes effect in a minute */
    struct adm still_old = admit(b, key, "m", 1000, 1000);
    fake_now = t0 + 60;
    struct adm after = admit(b, key, "m", 1000, 1000);
    CHECK(before.status == ADMITTED && still_old.status == ADMITTED && after.status == ADMITTED);
    struct billing_usage u1, u2, u3;
    /* settle all after the change: the first two still pay the old price */
    must(billing_settle(b, before.request_id, 1000, 0, 1000, "stop", &u1, &e), &e);
    must(billing_settle(b, still_old.request_id, 1000, 0, 1000, "stop", &u2, &e), &e);
    must(billing_settle(b, after.request_id, 1000, 0, 1000, "stop", &u3, &e), &e);
    CHECK(u1.cost == 2000 && u1.price_input == 1000000);
    CHECK(u2.cost == 2000);
    CHECK(u3.cost == 10000 && u3.price_output == 5000000);
    audit_ok(b);
    fake_now = t0;
    billing_close(b);
}

TEST(budgets)
{
    struct billing *b = open_b("n1", 0, 1);
    struct err e = {0};
    char acct[BILLING_ID_MAX], key[BILLING_KEY_LEN + 1];
    set_price(b, "m", 1000000, 1000000, 1000000, 0);
    struct billing_key_spec sp = {.budget = 1000, .budget_period = BILLING_PERIOD_DAY};
    setup_acct(b, "100", acct, key, &sp);
    int64_t t0 = fake_now;
    struct adm a1 = admit(b, key, "m", 200, 200); /* hold 400 */
    struct adm a2 = admit(b, key, "m", 200, 200); /* 800 */
    struct adm a3 = admit(b, key, "m", 200, 200); /* would be 1200 */
    CHECK(a1.status == ADMITTED && a2.status == ADMITTED);
    CHECK(a3.status == BILLING_BUDGET_EXCEEDED);
    /* retry after: seconds until the next UTC midnight */
    CHECKF(a3.retry_after == 86400 - t0 % 86400, "%lld", (long long)a3.retry_after);
    struct billing_usage u;
    must(billing_settle(b, a1.request_id, 100, 0, 0, "stop", &u, &e), &e); /* spent 100, hold 400 left */
    struct adm a4 = admit(b, key, "m", 200, 200);           /* 100 + 400 + 400 = 900 */
    CHECK(a4.status == ADMITTED);
    fake_now = t0 + a3.retry_after; /* next day: only holds count */
    must(billing_settle(b, a2.request_id, 100, 0, 0, "stop", &u, &e), &e);
    must(billing_settle(b, a4.request_id, 100, 0, 0, "stop", &u, &e), &e);
    struct adm a5 = admit(b, key, "m", 400, 500);
    CHECK(a5.status == ADMITTED);
    /* total budget: retry will not help */
    char key2[BILLING_KEY_LEN + 1];
    struct billing_key_spec sp2 = {.budget = 500, .budget_period = BILLING_PERIOD_TOTAL};
    must(billing_key_create(b, acct, &sp2, key2, NULL, &e), &e);
    struct adm t1 = admit(b, key2, "m", 300, 300);
    CHECK(t1.status == BILLING_BUDGET_EXCEEDED && t1.retry_after == 0);
    /* month */
    char key3[BILLING_KEY_LEN + 1];
    struct billing_key_spec sp3 = {.budget = 500, .budget_period = BILLING_PERIOD_MONTH};
    must(billing_key_create(b, acct, &sp3, key3, NULL, &e), &e);
    struct adm m1 = admit(b, key3, "m", 300, 300);
    CHECK(m1.status == BILLING_BUDGET_EXCEEDED && m1.retry_after > 0 && m1.retry_after <= 31 * 86400);
    audit_ok(b);
    fake_now = t0;
    billing_close(b);
}

TEST(rate_limits)
{
    struct billing *b = open_b("n1", 0, 1);
    struct err e = {0};
    char acct[BILLING_ID_MAX], key[BILLING_KEY_LEN + 1];
    set_price(b, "m", 1, 1, 1, 0);
    struct billing_key_spec sp = {.rpm = 3};
    setup_acct(b, "100", acct, key, &sp);
    int64_t t0 = fake_now;
    struct adm a = admit(b, key, "m", 1, 1);
    struct billing_usage u;
    must(billing_settle(b, a.request_id, 1, 0, 1, "stop", &u, &e), &e); /* settled ones count too */
    fake_now = t0 + 10;
    CHECK(admit(b, key, "m", 1, 1).status == ADMITTED);
    CHECK(admit(b, key, "m", 1, 1).status == ADMITTED);
    fake_now = t0 + 20;
    a = admit(b, key, "m", 1, 1);
    CHECK(a.status == BILLING_RATE_LIMITED);
    CHECKF(a.retry_after == 40, "%lld", (long long)a.retry_after);
    fake_now = t0 + 61;
    CHECK(admit(b, key, "m", 1, 1).status == ADMITTED);

    char key2[BILLING_KEY_LEN + 1];
    struct billing_key_spec sp2 = {.tpm = 1000};
    must(billing_key_create(b, acct, &sp2, key2, NULL, &e), &e);
    CHECK(admit(b, key2, "m", 200, 200).status == ADMITTED);
    fake_now = t0 + 70;
    a = admit(b, key2, "m", 300, 300); /* 400 + 600 = 1000: fits */
    CHECK(a.status == ADMITTED);
    a = admit(b, key2, "m", 1, 0);
    CHECK(a.status == BILLING_RATE_LIMITED && a.retry_after == 51);
    a = admit(b, key2, "m", 1000, 1000); /* can never fit */
    CHECK(a.status == BILLING_RATE_LIMITED && a.retry_after == 0);
    audit_ok(b);
    fake_now = t0;
    billing_close(b);
}

TEST(recovery)
{
    struct err e = {0};
    struct billing *b = open_b("n1", 1, 1);
    char acct[BILLING_ID_MAX], key[BILLING_KEY_LEN + 1];
    set_price(b, "m", 1000000, 1000000, 1000000, 0);
    setup_acct(b, "1", acct, key, NULL);
    char done_id[BILLING_ID_MAX];
    struct adm a = admit(b, key, "m", 10, 10);
    snprintf(done_id, sizeof done_id, "%s", a.request_id);
    struct billing_usage u;
    must(billing_settle(b, done_id, 10, 0, 5, "stop", &u, &e), &e);
    for (int i = 0; i < 3; i++)
        CHECK(admit(b, key, "m", 100, 100).status == ADMITTED);
    billing_close(b); /* "dies" with 3 open holds */

    struct billing *other = open_b("n2", 0, 0); /* another node's hold stays */
    CHECK(admit(other, key, "m", 100, 100).status == ADMITTED);
    billing_close(other);

    /* a live process of the same node keeps its holds */
    struct billing *alive = open_b("n1", 0, 0);
    CHECK(admit(alive, key, "m", 50, 50).status == ADMITTED);

    b = open_b("n1", 1, 0);
    CHECK(acct_get(b, acct).held == 900);
    int64_t n = -1;
    must(billing_recover(b, 0, &n, &e), &e);
    CHECK(n == 3);
    CHECK(acct_get(b, acct).held == 300);
    billing_close(alive); /* now it is gone (its hold with it) */
    must(billing_recover(b, 0, &n, &e), &e);
    CHECK(n == 1);
    CHECK(acct_get(b, acct).held == 200);
    CHECK(acct_get(b, acct).balance == 1000000 - 15);
    /* a hold of this boot is never touched */
    CHECK(admit(b, key, "m", 1, 1).status == ADMITTED);
    must(billing_recover(b, 0, &n, &e), &e);
    CHECK(n == 0);
    /* the other node's hold, once older than the timeout */
    fake_now += 3600;
    must(billing_recover(b, 600, &n, &e), &e);
    CHECK(n == 2);
    CHECK(acct_get(b, acct).held == 0);
    /* the settled request is not re-settled */
    must(billing_settle(b, done_id, 10, 0, 10, "stop", &u, &e), &e);
    CHECK(u.cost == 15);
    audit_ok(b);
    fake_now -= 3600;
    billing_close(b);
}

/* A scripted workload that tolerates failures, for fault injection. */
static int workload(struct billing *b, const char *acct, const char *key, int *n_fail)
{
    struct err e;
    char ids[8][BILLING_ID_MAX];
    int n = 0;
    if (billing_account_credit(b, acct, 1000, "top-up", NULL, &e))
        (*n_fail)++;
    for (int i = 0; i < 8; i++) {
        struct billing_admission a;
        struct billing_request r = {.key = key, .model = "m", .prompt_tokens = 100, .max_tokens = 100};
        if (billing_admit(b, &r, &a, &e) == 0)
            snprintf(ids[n++], BILLING_ID_MAX, "%s", a.request_id);
        else if (e.code != ERR_REFUSED)
            (*n_fail)++;
    }
    for (int i = 0; i < n; i++) {
        struct billing_usage u;
        if (billing_settle(b, ids[i], 100, 30, 50 + i, "stop", &u, &e))
            (*n_fail)++;
        if (i % 3 == 0 && billing_settle(b, ids[i], 100, 30, 50 + i, "stop", &u, &e)) /* retries */
            (*n_fail)++;
    }
    return n;
}

TEST(fault_injection_ledger_balances)
{
    struct err e = {0};
    struct billing *b = open_b("n1", 1, 1);
    char acct[BILLING_ID_MAX], key[BILLING_KEY_LEN + 1];
    set_price(b, "m", 3000000, 1000000, 7000000, 0);
    setup_acct(b, "0.01", acct, key, NULL);
    billing_close(b);
    int total_failures = 0;
    for (long n = 0; n < 160; n += 3) {
        b = open_b("n1", (n / 3) % 2, 0); /* alternate writer thread and synchronous settles */
        billing_fail_after(b, n);
        int n_fail = 0;
        workload(b, acct, key, &n_fail);
        total_failures += n_fail;
        billing_fail_after(b, -1);
        audit_ok(b); /* balances even with holds still open */
        billing_close(b);
        b = open_b("n1", 0, 0); /* restart: release what the failed run left */
        must(billing_recover(b, 0, NULL, &e), &e);
        struct billing_account a = acct_get(b, acct);
        CHECKF(a.held == 0 && a.balance >= 0, "n=%ld held %lld balance %lld", n, (long long)a.held,
               (long long)a.balance);
        audit_ok(b);
        billing_close(b);
    }
    CHECK(total_failures > 50); /* the injection really hit */
}

/* Fair-share weights: 1 by default, set within 1..1000, seen by the next
 * admission; bad values and unknown accounts are refused. */
TEST(account_weights)
{
    struct billing *b = open_b("n1", 1, 1);
    if (!b)
        return;
    struct err e = {0};
    char acct[BILLING_ID_MAX], key[BILLING_KEY_LEN + 1];
    setup_acct(b, "10", acct, key, NULL);
    set_price(b, "m", 1, 1, 1, 0);
    CHECK(acct_get(b, acct).weight == 1);
    CHECK(admit(b, key, "m", 1, 1).weight == 1);
    must(billing_account_set_weight(b, acct, 7, &e), &e);
    CHECK(acct_get(b, acct).weight == 7);
    CHECK(admit(b, key, "m", 1, 1).weight == 7);
    CHECK(billing_account_set_weight(b, acct, 0, &e) == -1 && e.code == ERR_INVALID);
    CHECK(billing_account_set_weight(b, acct, 1001, &e) == -1 && e.code == ERR_INVALID);
    CHECK(billing_account_set_weight(b, "acct_nope", 2, &e) == -1 && e.code == ERR_NOT_FOUND);
    CHECK(acct_get(b, acct).weight == 7);
    billing_close(b);
}

/* Compute time with the usage record: its cost at the compute price in
 * force at admission (versioned), rounded half up; report sums; a request
 * settled without compute time costs nothing to compute. */
TEST(compute_cost)
{
    CHECK(billing_compute_cost(1, 1800000000) == 1 && billing_compute_cost(1, 1799999999) == 0);
    CHECK(billing_compute_cost(INT64_C(1) << 50, INT64_MAX) == INT64_MAX); /* saturates, no overflow */
    CHECK(billing_compute_cost(0, 5) == 0 && billing_compute_cost(5, 0) == 0);
    struct billing *b = open_b("n1", 1, 1);
    if (!b)
        return;
    struct err e = {0};
    char acct[BILLING_ID_MAX], key[BILLING_KEY_LEN + 1];
    setup_acct(b, "10", acct, key, NULL);
    set_price(b, "m", 1000000, 100000, 3000000, 0);
    struct adm a0 = admit(b, key, "m", 10, 10); /* admitted before the price was set, but after its --from */
    must(billing_compute_price_set(b, 3600000, 1, &e), &e); /* 3.6 per core-hour from t = 1 */
    CHECK(billing_compute_price_set(b, -1, 1, &e) == -1 && e.code == ERR_INVALID);
    struct billing_usage u0, u1, u2;
    must(billing_settle_compute(b, a0.request_id, 10, 0, 10, 2000000, "stop", &u0, &e), &e);
    CHECKF(u0.compute_us == 2000000 && u0.compute_cost == 2000, "%lld %lld", (long long)u0.compute_us, (long long)u0.compute_cost);
    struct adm a1 = admit(b, key, "m", 10, 10);
    CHECK(billing_settle_compute(b, a1.request_id, 10, 0, 10, -1, "stop", &u1, &e) == -1 && e.code == ERR_INVALID);
    must(billing_settle_compute(b, a1.request_id, 10, 0, 10, 1500000, "stop", &u1, &e), &e);
    CHECK(u1.compute_us == 1500000 && u1.compute_cost == 1500);
    struct adm a2 = admit(b, key, "m", 10, 10);
    must(billing_settle(b, a2.request_id, 10, 0, 10, "stop", &u2, &e), &e);
    CHECK(u2.compute_us == 0 && u2.compute_cost == 0);
    int n = 0;
    struct billing_usage_row tot;
    must(billing_usage_report(b, NULL, BILLING_BY_REQUEST, count_row, &n, &tot, &e), &e);
    CHECK(n == 3 && tot.compute_us == 3500000 && tot.compute_cost == 3500);
    CHECK(tot.cost == u0.cost + u1.cost + u2.cost);
    audit_ok(b);
    billing_close(b);
}

/* billing_usage_recent: an account's own records only, newest first, the
 * limit and an early stop obeyed, bad limits and unknown accounts refused. */
struct recent_seen {
    int n, stop_at;
    char ids[8][BILLING_ID_MAX];
    char account[BILLING_ID_MAX];
    bool foreign;
};

static int recent_cb(void *ctx, const struct billing_usage *u)
{
    struct recent_seen *r = ctx;
    if (r->n < 8)
        snprintf(r->ids[r->n], sizeof r->ids[0], "%s", u->request_id);
    r->foreign |= strcmp(u->account_id, r->account) != 0 || strcmp(u->finish_reason, "stop") != 0;
    r->n++;
    return r->stop_at && r->n >= r->stop_at;
}

TEST(recent_requests)
{
    struct billing *b = open_b("n1", 0, 1);
    struct err e = {0};
    char a1[BILLING_ID_MAX], a2[BILLING_ID_MAX], k1[BILLING_KEY_LEN + 1], k2[BILLING_KEY_LEN + 1];
    setup_acct(b, "5", a1, k1, NULL);
    setup_acct(b, "5", a2, k2, NULL);
    set_price(b, "m", 1000000, 500000, 2000000, 0);
    char ids[3][BILLING_ID_MAX];
    for (int i = 0; i < 4; i++) {
        __atomic_add_fetch(&fake_now, 10, __ATOMIC_SEQ_CST);
        struct adm a = admit(b, i == 3 ? k2 : k1, "m", 10, 5);
        CHECK(a.status == ADMITTED);
        if (i < 3)
            snprintf(ids[i], sizeof ids[i], "%s", a.request_id);
        struct billing_usage u;
        must(billing_settle(b, a.request_id, 10, 0, 5, "stop", &u, &e), &e);
    }
    struct recent_seen r = {0};
    snprintf(r.account, sizeof r.account, "%s", a1);
    must(billing_usage_recent(b, a1, 2, recent_cb, &r, &e), &e);
    CHECK(r.n == 2 && !r.foreign);
    CHECK(!strcmp(r.ids[0], ids[2]) && !strcmp(r.ids[1], ids[1]));
    memset(r.ids, 0, sizeof r.ids);
    r.n = 0;
    must(billing_usage_recent(b, a1, BILLING_RECENT_MAX, recent_cb, &r, &e), &e);
    CHECK(r.n == 3 && !r.foreign && !strcmp(r.ids[2], ids[0]));
    r.n = 0;
    r.stop_at = 1;
    must(billing_usage_recent(b, a1, 10, recent_cb, &r, &e), &e);
    CHECK(r.n == 1);
    r.n = 0;
    r.stop_at = 0;
    snprintf(r.account, sizeof r.account, "%s", a2);
    must(billing_usage_recent(b, a2, 10, recent_cb, &r, &e), &e);
    CHECK(r.n == 1 && !r.foreign);
    CHECK(billing_usage_recent(b, a1, 0, recent_cb, &r, &e) < 0 && e.code == ERR_INVALID);
    CHECK(billing_usage_recent(b, a1, BILLING_RECENT_MAX + 1, recent_cb, &r, &e) < 0 && e.code == ERR_INVALID);
    CHECK(billing_usage_recent(b, "acct_nope", 5, recent_cb, &r, &e) < 0 && e.code == ERR_NOT_FOUND);
    billing_close(b);
}

int main(void)
{
    RUN(keys_verify);
    RUN(account_weights);
    RUN(compute_cost);
    RUN(refusals);
    RUN(concurrent_64_no_overdraw);
    RUN(settle_idempotent);
    RUN(settle_errors_and_report);
    RUN(price_change_mid_stream);
    RUN(budgets);
    RUN(rate_limits);
    RUN(recovery);
    RUN(fault_injection_ledger_balances);
    RUN(recent_requests);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        return 1;
    TEST_END();
}
