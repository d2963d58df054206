/*
 * The session lease of a process on a shared ledger (PostgreSQL), and how
 * recovery judges another process by it.
 *
 * Thread: one lease keeper per struct billing on a shared ledger. It owns
 * billing.lease (a connection of its own) and pings it every lease_check_ms;
 * it sleeps on lease_cv, which billing_lease_stop signals. Nothing else of the
 * handle is touched but the lease fields.
 *
 * What the lease is. Every connection of the process keeps the lease named
 * after its boot (store_lease_keep: a shared session advisory lock): the
 * admission and read pool, the settlement writer's connection and the
 * keeper's. The database drops a session's locks when the session ends, so
 * the lease is free exactly when none of the process's sessions is alive:
 * when the process died, or when the database ended its sessions (a server
 * restart, an idle-session killer, pg_terminate_backend, a network cut)
 * while the process lives on.
 *
 * Taking it again. A connection that the database dropped is reopened before
 * its next statement, and the store takes the lease again right then, before
 * that statement runs; while it cannot, the statement fails (store.h,
 * store_lease_keep). So:
 *   - every hold is inserted, and committed, by a session that holds the
 *     lease: an admission never places a hold that recovery could take for a
 *     dead process's, and an admission that cannot take the lease again fails
 *     (the server answers 503) instead of serving a request nobody could bill;
 *   - the keeper's connection is reopened, and the lease taken again, within
 *     lease_check_ms of the database being reachable again, even when the
 *     process makes no other statement meanwhile (requests that are only
 *     generating), and every other connection at its next use.
 *
 * Judging another process (billing_dead_boots_find, for billing_recover). A
 * free lease is not proof of death: it is also what a live process looks like
 * between the loss of its sessions and the keeper's next ping. So a process is
 * judged dead only if its lease is free, and still free lease_grace_ms later
 * (which must exceed lease_check_ms plus a reconnect), and then it is claimed
 * (store_lease_claim: held alone, so that the process cannot take it again)
 * until the release of its holds has committed: a process that comes back in
 * the middle cannot admit anything that the release would take, since
 * its admissions fail while the claim lasts (LEASE_WAIT_MS in the store, then
 * an error; the claim is held for one short transaction).
 *
 * The remaining window, which no lease can close: a process that cannot reach
 * the database for longer than lease_grace_ms, while another node can and runs
 * recovery (it starts), is indistinguishable from a dead one. The holds of the
 * requests it had admitted before the cut are then released uncharged
 * ("abandoned"); when it settles them later it gets that record back, never a
 * second charge, and billing_settle logs a warning naming the request and its
 * unbilled tokens. A process that only loses its sessions (the database
 * restarts, or ends idle sessions) and reaches the database again as soon as
 * the other node does keeps all its holds. The periodic sweep
 * (billing_recover_live) does not judge by leases at all on a shared ledger.
 */
#include "billing/billing_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

void billing_boot_lease(const char *boot, char *name, size_t n)
{
    snprintf(name, n, "maas boot %s", boot);
}

int billing_lease_keep(struct billing *b, struct store *s, struct err *e)
{
    char name[160];
    billing_boot_lease(b->boot, name, sizeof name);
    if (store_lease_keep(s, name, e))
        return err_prefix(e, "ledger: taking this process's lease");
    return 0;
}

static void *keeper_main(void *arg)
{
    struct billing *b = arg;
    int down = 0; /* the last ping failed: say so once, and when it is back */
    pthread_mutex_lock(&b->lease_mu);
    for (;;) {
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_sec += b->lease_check_ms / 1000;
        until.tv_nsec += (long)(b->lease_check_ms % 1000) * 1000000L;
        if (until.tv_nsec >= 1000000000L)
            until.tv_sec++, until.tv_nsec -= 1000000000L;
        while (!b->lease_stop && pthread_cond_timedwait(&b->lease_cv, &b->lease_mu, &until) != ETIMEDOUT)
            ;
        if (b->lease_stop)
            break;
        pthread_mutex_unlock(&b->lease_mu);
        struct err e;
        if (store_ping(b->lease, &e)) {
            if (!down)
                log_warn("ledger: this process's lease may be lost (other nodes may soon judge it dead): %s;"
                         " trying again every %d ms", e.msg, b->lease_check_ms);
            down = 1;
        } else if (down) {
            log_info("ledger: the connection holding this process's lease works again");
            down = 0;
        }
        pthread_mutex_lock(&b->lease_mu);
    }
    pthread_mutex_unlock(&b->lease_mu);
    return NULL;
}

int billing_lease_start(struct billing *b, const char *db, struct err *e)
{
    if (store_open(db, &billing_schema, &b->lease, e) || billing_lease_keep(b, b->lease, e))
        return -1;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&b->lease_cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&b->lease_mu, NULL);
    b->lease_sync = 1;
    if (pthread_create(&b->keeper, NULL, keeper_main, b) != 0)
        return err_set(e, ERR_INTERNAL, "ledger: cannot start the lease keeper thread");
    b->has_keeper = 1;
    return 0;
}

void billing_lease_stop(struct billing *b)
{
    if (b->has_keeper) {
        pthread_mutex_lock(&b->lease_mu);
        b->lease_stop = 1;
        pthread_cond_signal(&b->lease_cv);
        pthread_mutex_unlock(&b->lease_mu);
        pthread_join(b->keeper, NULL);
        b->has_keeper = 0;
    }
    if (b->lease_sync) {
        pthread_mutex_destroy(&b->lease_mu);
        pthread_cond_destroy(&b->lease_cv);
        b->lease_sync = 0;
    }
    store_close(b->lease);
    b->lease = NULL;
}

/* ---- judging other processes ---- */

struct boot_list {
    struct dead_boots *d;
    int oom;
};

static int boot_row(void *ctx, const struct store_row *r)
{
    struct boot_list *l = ctx;
    struct dead_boots *d = l->d;
    if (d->n == d->cap) {
        int cap = d->cap ? d->cap * 2 : 16;
        void *p = realloc(d->boots, (size_t)cap * sizeof *d->boots);
        if (!p) {
            l->oom = 1;
            return 1;
        }
        d->boots = p;
        d->cap = cap;
    }
    snprintf(d->boots[d->n++], sizeof d->boots[0], "%s", store_row_text(r, 0));
    return 0;
}

static void sleep_ms(int ms)
{
    struct timespec t = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&t, &t) != 0 && errno == EINTR)
        ;
}

int billing_dead_boots_find(struct billing *b, struct store *s, int64_t cutoff, struct dead_boots *d, struct err *e)
{
    memset(d, 0, sizeof *d);
    struct boot_list l = {d, 0};
    /* The processes whose holds only liveness can release (older ones go by
     * age). Outside a transaction: nothing is locked while we wait. */
    if (store_query(s, "SELECT DISTINCT boot FROM holds WHERE boot <> $1 AND admitted_at >= $2 ORDER BY boot",
                    (struct store_val[]){SV_TEXT(b->boot), SV_INT(cutoff)}, 2, boot_row, &l, e))
        goto fail;
    if (l.oom) {
        err_set(e, ERR_NOMEM, "ledger recovery: out of memory");
        goto fail;
    }
    /* First look: drop the processes whose lease is held. */
    int n_free = 0;
    for (int i = 0; i < d->n; i++) {
        char name[160];
        int is_free = 0;
        struct err why;
        billing_boot_lease(d->boots[i], name, sizeof name);
        if (store_lease_free(s, name, &is_free, &why)) {
            log_warn("ledger recovery: cannot tell whether process %s is alive: %s", d->boots[i], why.msg);
            is_free = 0;
        }
        if (is_free)
            memmove(d->boots[n_free++], d->boots[i], sizeof d->boots[0]);
    }
    d->n = n_free;
    if (!d->n)
        return 0;
    /* Second look after the grace: a live process whose sessions dropped has
     * taken its lease again by then. Claim the leases still free, so that
     * their processes cannot take them (and admit) until the holds are gone. */
    log_info("ledger recovery: %d process(es) with open holds hold no lease; checking again in %d ms", d->n,
             b->lease_grace_ms);
    sleep_ms(b->lease_grace_ms);
    int n_dead = 0;
    for (int i = 0; i < d->n; i++) {
        char name[160];
        int claimed = 0;
        struct err why;
        billing_boot_lease(d->boots[i], name, sizeof name);
        if (store_lease_claim(s, name, &claimed, &why)) {
            log_warn("ledger recovery: cannot tell whether process %s is alive: %s", d->boots[i], why.msg);
            claimed = 0;
        }
        if (claimed)
            memmove(d->boots[n_dead++], d->boots[i], sizeof d->boots[0]);
        else
            log_info("ledger recovery: process %s took its lease again: alive, its holds stay", d->boots[i]);
    }
    d->n = n_dead;
    return 0;
fail:
    free(d->boots);
    memset(d, 0, sizeof *d);
    return -1;
}

int billing_dead_boots_has(const struct dead_boots *d, const char *boot)
{
    for (int i = 0; i < d->n; i++)
        if (!strcmp(d->boots[i], boot))
            return 1;
    return 0;
}

void billing_dead_boots_release(struct store *s, struct dead_boots *d)
{
    for (int i = 0; i < d->n; i++) {
        char name[160];
        struct err e;
        billing_boot_lease(d->boots[i], name, sizeof name);
        if (store_lease_drop(s, name, &e)) /* a session that ended dropped it anyway */
            log_warn("ledger recovery: giving up the claim on process %s's lease: %s", d->boots[i], e.msg);
    }
    free(d->boots);
    memset(d, 0, sizeof *d);
}
