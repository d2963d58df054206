/*
 * sweep.c — the periodic release of stale billing holds while serving.
 *
 * billing_recover runs once, at start (cmd_serve). A hold left behind on a
 * node that keeps serving — a settlement that failed (the client was told
 * that the request is not charged), or a neighbour process on the same data
 * directory that died — would otherwise keep part of the account's balance
 * and budget held until the next start. The sweeper releases such holds with
 * billing_recover_live, whose rules (admit.c) ensure that it never takes the
 * hold of a running request (only holds older than any request can run,
 * SERVER_STALE_HOLD_S by default, and holds of processes known dead by their
 * lock file) and never counts anything twice (a hold is settled or released
 * exactly once, whichever comes first; the other finds the one record).
 *
 * Thread: one sweeper thread per server with a ledger. It sleeps on cv for
 * recover_every_ms, sweeps, and sleeps again; server_free sets stop under mu
 * and joins it. It touches nothing of the server but its billing handle.
 */
#include "server/server_int.h"

#include <errno.h>
#include <time.h>

struct sweeper {
    struct billing *b;             /* borrowed */
    int every_ms;
    int64_t after_s;
    pthread_t thread;
    pthread_mutex_t mu;            /* guards stop */
    pthread_cond_t cv;             /* CLOCK_MONOTONIC; signalled at stop */
    bool stop;
};

static void *sweeper_main(void *arg)
{
    struct sweeper *w = arg;
    pthread_mutex_lock(&w->mu);
    for (;;) {
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_sec += w->every_ms / 1000;
        until.tv_nsec += (long)(w->every_ms % 1000) * 1000000L;
        if (until.tv_nsec >= 1000000000L)
            until.tv_sec++, until.tv_nsec -= 1000000000L;
        while (!w->stop && pthread_cond_timedwait(&w->cv, &w->mu, &until) != ETIMEDOUT)
            ;
        if (w->stop)
            break;
        pthread_mutex_unlock(&w->mu);
        struct err e; /* billing_recover_live logs what it releases */
        if (billing_recover_live(w->b, w->after_s, NULL, &e) < 0)
            log_warn("billing: releasing stale holds: %s; trying again in %d ms", e.msg, w->every_ms);
        pthread_mutex_lock(&w->mu);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

int sweeper_start(struct server *srv, struct err *e)
{
    if (!srv->o.billing || srv->o.recover_every_ms < 0)
        return 0;
    struct sweeper *w = calloc(1, sizeof *w);
    if (!w)
        return err_set(e, ERR_NOMEM, "server: out of memory");
    w->b = srv->o.billing;
    w->every_ms = srv->o.recover_every_ms > 0 ? srv->o.recover_every_ms : SERVER_RECOVER_EVERY_MS;
    w->after_s = srv->o.recover_after_s > 0 ? srv->o.recover_after_s : SERVER_STALE_HOLD_S;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, &ca);
    pthread_condattr_destroy(&ca);
    if (pthread_create(&w->thread, NULL, sweeper_main, w) != 0) {
        pthread_mutex_destroy(&w->mu);
        pthread_cond_destroy(&w->cv);
        free(w);
        return err_set(e, ERR_INTERNAL, "server: cannot start the stale-hold sweeper thread");
    }
    srv->sweep = w;
    return 0;
}

void sweeper_stop(struct server *srv)
{
    struct sweeper *w = srv->sweep;
    if (!w)
        return;
    pthread_mutex_lock(&w->mu);
    w->stop = true;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->thread, NULL);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
    free(w);
    srv->sweep = NULL;
}
