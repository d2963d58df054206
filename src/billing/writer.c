/*
 * The ledger writer: one thread, one role — it drains the bounded settlement
 * queue and commits settlements in groups (Redis's bio.c pattern).
 *
 * A caller of billing_settle queues a job and sleeps until the writer marks it
 * done; by then its usage record is committed (durable, synchronous=FULL), so
 * the server can send the last byte of the response knowing the bill is
 * written. The writer takes up to group_max jobs at once, opens one write
 * transaction, runs each job inside its own savepoint (a failing job rolls
 * back alone and reports its error), and commits once: one fsync for the
 * whole group. If the commit fails, every job of the group fails; their holds
 * stay in place and are released by recovery (never charged twice).
 *
 * Shared state (queue, done flags, stopping) is guarded by billing.q_mu.
 */
#include "billing/billing_int.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* retry[i] is set for a job that failed only because it lost a deadlock or
 * serialization race with another node (shared database). */
static void run_group(struct billing *b, struct settle_job **jobs, int n, char *retry)
{
    struct store *s = b->wconn;
    struct err e;
    memset(retry, 0, (size_t)n);
    if (store_begin(s, STORE_TX_WRITE, &e)) {
        for (int i = 0; i < n; i++) {
            jobs[i]->rc = -1;
            jobs[i]->err = e;
        }
        return;
    }
    int n_ok = 0;
    if (n == 1) { /* alone: the transaction itself is the savepoint */
        struct billing_usage u;
        jobs[0]->rc = billing_settle_in_tx(b, s, jobs[0], &u, &jobs[0]->err);
        if (jobs[0]->rc) {
            retry[0] = (char)store_last_retryable(s);
            store_rollback(s);
            return;
        }
        *jobs[0]->out = u;
        n_ok = 1;
        goto commit;
    }
    for (int i = 0; i < n; i++) {
        struct settle_job *j = jobs[i];
        struct billing_usage u;
        if (store_savepoint(s, "settle", &j->err)) {
            j->rc = -1;
            continue;
        }
        if (billing_settle_in_tx(b, s, j, &u, &j->err) || store_release(s, "settle", &j->err)) {
            struct err ignored;
            j->rc = -1;
            retry[i] = (char)store_last_retryable(s);
            if (store_rollback_to(s, "settle", &ignored) == 0)
                store_release(s, "settle", &ignored);
            continue;
        }
        *j->out = u;
        j->rc = 0;
        n_ok++;
    }
commit:
    if (store_commit(s, &e)) {
        int again = store_last_retryable(s);
        for (int i = 0; i < n; i++) {
            if (jobs[i]->rc == 0) {
                jobs[i]->rc = -1;
                jobs[i]->err = e;
                retry[i] = (char)again;
            }
        }
    }
    (void)n_ok;
}

struct by_account {
    struct settle_job *job;
    char account[BILLING_ID_MAX];
};

static int account_of_row(void *ctx, const struct store_row *r)
{
    snprintf(ctx, BILLING_ID_MAX, "%s", store_row_text(r, 0));
    return 1;
}

static int cmp_account(const void *a, const void *b)
{
    return strcmp(((const struct by_account *)a)->account, ((const struct by_account *)b)->account);
}

/* On a shared ledger, two nodes' groups that lock the same accounts in
 * different orders deadlock, and PostgreSQL breaks the tie only after
 * deadlock_timeout (a second of stalled settlements on both nodes). Taking the
 * account rows in one global order — the account id — avoids it. The lookup
 * reads without locking; a hold settled meanwhile sorts anywhere, harmlessly. */
static void order_by_account(struct billing *b, struct settle_job **jobs, int n)
{
    struct by_account *v = malloc((size_t)n * sizeof *v);
    if (!v)
        return; /* arrival order still works; the retry covers deadlocks */
    for (int i = 0; i < n; i++) {
        struct err e;
        v[i].job = jobs[i];
        v[i].account[0] = '\0';
        if (store_query(b->wconn, "SELECT account_id FROM holds WHERE request_id = $1",
                        (struct store_val[]){SV_TEXT(jobs[i]->request_id)}, 1, account_of_row, v[i].account, &e))
            v[i].account[0] = '\0';
    }
    qsort(v, (size_t)n, sizeof *v, cmp_account);
    for (int i = 0; i < n; i++)
        jobs[i] = v[i].job;
    free(v);
}

/* Runs a group, then again (a few times, backing off) the jobs that lost a
 * race with another node: their transaction or savepoint was rolled back, so
 * running them again cannot charge twice. */
static void run_group_retrying(struct billing *b, struct settle_job **jobs, int n, struct settle_job **again,
                               char *retry)
{
    if (b->shared && n > 1)
        order_by_account(b, jobs, n);
    run_group(b, jobs, n, retry);
    for (int attempt = 0; attempt < 5; attempt++) {
        int m = 0;
        for (int i = 0; i < n; i++)
            if (jobs[i]->rc && retry[i])
                again[m++] = jobs[i];
        if (m == 0)
            return;
        log_warn("ledger writer: %d settlement(s) lost a race with another node; retrying", m);
        usleep((useconds_t)(2000 << attempt));
        run_group(b, again, m, retry);
        jobs = again;
        n = m;
    }
}

static void *writer_main(void *arg)
{
    struct billing *b = arg;
    struct settle_job **group = calloc((size_t)b->group_max, sizeof *group);
    struct settle_job **again = calloc((size_t)b->group_max, sizeof *again);
    char *retry = calloc((size_t)b->group_max, 1);
    MAAS_ASSERT(group != NULL && again != NULL && retry != NULL);
    pthread_mutex_lock(&b->q_mu);
    for (;;) {
        while (!b->q_head && !b->stopping)
            pthread_cond_wait(&b->q_cv, &b->q_mu);
        if (!b->q_head && b->stopping)
            break;
        int n = 0;
        while (b->q_head && n < b->group_max) {
            group[n++] = b->q_head;
            b->q_head = b->q_head->next;
            b->q_len--;
        }
        if (!b->q_head)
            b->q_tail = NULL;
        pthread_cond_broadcast(&b->q_space_cv);
        pthread_mutex_unlock(&b->q_mu);

        struct timespec c0, c1;
        uint64_t w0 = now_ns();
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c0);
        run_group_retrying(b, group, n, again, retry);
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c1);
        int64_t busy = (int64_t)(now_ns() - w0);

        pthread_mutex_lock(&b->q_mu);
        b->stats.cpu_ns += (int64_t)(c1.tv_sec - c0.tv_sec) * 1000000000 + (c1.tv_nsec - c0.tv_nsec);
        b->stats.busy_ns += busy;
        b->stats.groups++;
        b->stats.settlements += n;
        for (int i = 0; i < n; i++) {
            b->stats.failed += group[i]->rc != 0;
            group[i]->done = 1;
            /* Each caller has its own condition: no thundering herd. */
            pthread_cond_signal(&group[i]->done_cv);
        }
    }
    pthread_mutex_unlock(&b->q_mu);
    free(group);
    free(again);
    free(retry);
    return NULL;
}

int billing_writer_start(struct billing *b, struct err *e)
{
    if (pthread_create(&b->writer, NULL, writer_main, b) != 0)
        return err_set(e, ERR_INTERNAL, "ledger writer: cannot start thread");
    b->has_writer = 1;
    return 0;
}

void billing_writer_stop(struct billing *b)
{
    if (!b->has_writer)
        return;
    pthread_mutex_lock(&b->q_mu);
    b->stopping = 1;
    pthread_cond_broadcast(&b->q_cv);
    pthread_mutex_unlock(&b->q_mu);
    pthread_join(b->writer, NULL);
    b->has_writer = 0;
}

static int settle_sync(struct billing *b, struct settle_job *j, struct billing_usage *out, struct err *e)
{
    struct store *s = billing_conn_get(b);
    int rc = -1;
    for (int attempt = 0; attempt < 5 && rc; attempt++) {
        if (attempt)
            usleep((useconds_t)(2000 << attempt));
        if (store_begin(s, STORE_TX_WRITE, e))
            break;
        if (billing_settle_in_tx(b, s, j, out, e) || store_commit(s, e)) {
            int again = store_last_retryable(s);
            store_rollback(s);
            if (!again)
                break;
            continue;
        }
        rc = 0;
    }
    billing_conn_put(b, s);
    return rc;
}

int billing_settle(struct billing *b, const char *request_id, int64_t prompt_tokens, int64_t cached_tokens,
                   int64_t completion_tokens, const char *finish_reason, struct billing_usage *out,
                   struct err *e)
{
    return billing_settle_compute(b, request_id, prompt_tokens, cached_tokens, completion_tokens, 0, finish_reason,
                                  out, e);
}

int billing_settle_compute(struct billing *b, const char *request_id, int64_t prompt_tokens, int64_t cached_tokens,
                           int64_t completion_tokens, int64_t compute_us, const char *finish_reason,
                           struct billing_usage *out, struct err *e)
{
    if (billing_settle_check(request_id, prompt_tokens, cached_tokens, completion_tokens, finish_reason, e))
        return -1;
    if (compute_us < 0 || compute_us > (INT64_C(1) << 50))
        return err_set(e, ERR_INVALID, "request %s: compute time %lld core-us is outside 0..2^50", request_id,
                       (long long)compute_us);
    struct billing_usage u;
    struct settle_job j;
    memset(&j, 0, sizeof j);
    j.request_id = request_id;
    j.prompt = prompt_tokens;
    j.cached = cached_tokens;
    j.completion = completion_tokens;
    j.compute_us = compute_us;
    j.finish_reason = finish_reason;
    j.out = &u;
    if (!b->has_writer) {
        if (settle_sync(b, &j, &u, e))
            return -1;
        if (out)
            *out = u;
        return 0;
    }
    pthread_cond_init(&j.done_cv, NULL);
    pthread_mutex_lock(&b->q_mu);
    while (b->q_len >= b->q_cap && !b->stopping)
        pthread_cond_wait(&b->q_space_cv, &b->q_mu);
    if (b->stopping) {
        pthread_mutex_unlock(&b->q_mu);
        pthread_cond_destroy(&j.done_cv);
        return err_set(e, ERR_INVALID, "request %s: the ledger is shutting down", request_id);
    }
    if (b->q_tail)
        b->q_tail->next = &j;
    else
        b->q_head = &j;
    b->q_tail = &j;
    b->q_len++;
    pthread_cond_signal(&b->q_cv);
    while (!j.done)
        pthread_cond_wait(&j.done_cv, &b->q_mu);
    pthread_mutex_unlock(&b->q_mu);
    pthread_cond_destroy(&j.done_cv);
    if (j.rc) {
        *e = j.err;
        return -1;
    }
    if (out)
        *out = u;
    return 0;
}

void billing_writer_stats(struct billing *b, struct billing_writer_stats *out)
{
    pthread_mutex_lock(&b->q_mu);
    *out = b->stats;
    out->queue_len = b->q_len;
    pthread_mutex_unlock(&b->q_mu);
}
