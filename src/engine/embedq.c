/*
 * embedq.c — embedding requests on the engine thread.
 *
 * Threads: embedq_submit runs on a connection thread and blocks on its
 * job's condition variable; everything else runs on the engine thread,
 * which owns the work list and the scratch. The queue (head/tail/n) is
 * under the engine's mutex.
 *
 * A pass takes inputs in order from the oldest job on, across jobs, until
 * the next input would pass max_tokens; the inputs of one request can so
 * span several passes, and one pass can finish several requests. A pass's
 * cost (its wall time times the kernel threads) is shared among its jobs in
 * proportion to their tokens in it.
 */
#include "engine/engine_int.h"

#include <string.h>

void embedq_init(struct embed_queue *q, int max)
{
    memset(q, 0, sizeof *q);
    q->max = max;
}

void embedq_release(struct embed_queue *q)
{
    free(q->seqs);
    free(q->lens);
    free(q->owner);
    free(q->idx);
    embedq_init(q, q->max);
}

int embedq_submit(struct embed_queue *q, pthread_mutex_t *mu, pthread_cond_t *eng_cv, const bool *stop,
                  struct embed_job *j)
{
    pthread_mutex_lock(mu);
    if (*stop) {
        pthread_mutex_unlock(mu);
        return err_set(&j->err, ERR_UNAVAILABLE, "the engine is shutting down");
    }
    if (q->n >= q->max) {
        pthread_mutex_unlock(mu);
        return err_set(&j->err, ERR_EXHAUSTED, "%d embedding requests are already waiting", q->n);
    }
    j->next = NULL;
    if (q->tail)
        q->tail->next = j;
    else
        q->head = j;
    q->tail = j;
    q->n++;
    pthread_cond_signal(eng_cv);
    while (!j->finished)
        pthread_cond_wait(&j->cv, mu);
    pthread_mutex_unlock(mu);
    return j->err.code == ERR_OK ? 0 : -1;
}

bool embedq_pending(const struct embed_queue *q)
{
    return q->head || q->work;
}

/* Under mu: j is done; its caller wakes. */
static void finish(struct embed_queue *q, struct embed_job *j)
{
    j->finished = true;
    q->n--;
    pthread_cond_signal(&j->cv);
}

/* Takes the submitted jobs onto the end of the work list. */
static void take_submitted(struct embed_queue *q, pthread_mutex_t *mu)
{
    pthread_mutex_lock(mu);
    struct embed_job *h = q->head;
    q->head = q->tail = NULL;
    pthread_mutex_unlock(mu);
    struct embed_job **end = &q->work;
    while (*end)
        end = &(*end)->next;
    *end = h;
}

/* Removes the finished (n_done == n_inputs or failed) jobs from the work
 * list and wakes their callers. */
static void retire(struct embed_queue *q, pthread_mutex_t *mu)
{
    pthread_mutex_lock(mu);
    for (struct embed_job **p = &q->work; *p;) {
        struct embed_job *j = *p;
        if (j->n_done == j->n_inputs || j->err.code != ERR_OK) {
            *p = j->next;
            finish(q, j);
        } else {
            p = &j->next;
        }
    }
    pthread_mutex_unlock(mu);
}

static int grow_scratch(struct embed_queue *q, size_t need)
{
    if (mem_grow(&q->seqs, &q->cap_seqs, need, sizeof *q->seqs) < 0 ||
        mem_grow(&q->lens, &q->cap_lens, need, sizeof *q->lens) < 0 ||
        mem_grow(&q->owner, &q->cap_owner, need, sizeof *q->owner) < 0 ||
        mem_grow(&q->idx, &q->cap_idx, need, sizeof *q->idx) < 0)
        return -1;
    return 0;
}

/* The inputs of the next pass into the scratch: their count (0 when none). */
static int gather(struct embed_queue *q, int max_tokens, int vocab, int *n_tok)
{
    int n = 0, tokens = 0;
    for (struct embed_job *j = q->work; j; j = j->next) {
        while (j->err.code == ERR_OK && j->next_input < j->n_inputs) {
            int i = j->next_input, len = j->lens[i];
            if (len < 1 || len > max_tokens) {
                err_set(&j->err, ERR_INVALID, "input %d: %d tokens is outside 1..%d", i, len, max_tokens);
                break;
            }
            for (int p = 0; p < len; p++)
                if (j->inputs[i][p] < 0 || j->inputs[i][p] >= vocab) {
                    err_set(&j->err, ERR_INVALID, "input %d, token %d: id %d is outside the vocabulary of %d", i, p,
                            (int)j->inputs[i][p], vocab);
                    break;
                }
            if (j->err.code != ERR_OK)
                break;
            if (tokens + len > max_tokens)
                goto full;
            if (grow_scratch(q, (size_t)n + 1) < 0) {
                err_set(&j->err, ERR_NOMEM, "out of memory");
                break;
            }
            q->seqs[n] = j->inputs[i];
            q->lens[n] = len;
            q->owner[n] = j;
            q->idx[n] = i;
            n++;
            tokens += len;
            j->next_input++;
        }
    }
full:
    *n_tok = tokens;
    return n;
}

void embedq_run(struct embed_queue *q, pthread_mutex_t *mu, struct model *m, int max_tokens, int n_threads,
                double *busy_s, double *busy_core_s)
{
    take_submitted(q, mu);
    if (!q->work)
        return;
    int n_tok = 0, E = model_embed_n_out(m);
    int n = gather(q, max_tokens, model_hparams(m)->n_vocab, &n_tok);
    if (n > 0) {
        float *out = malloc((size_t)n * (size_t)E * sizeof *out);
        struct err e = {0};
        uint64_t t0 = now_ns();
        int rc = out ? model_embed(m, q->seqs, q->lens, n, -1, out, &e) : err_set(&e, ERR_NOMEM, "out of memory");
        double wall = (double)(now_ns() - t0) * 1e-9;
        *busy_s += wall;
        *busy_core_s += wall * n_threads;
        for (int k = 0; k < n; k++) {
            struct embed_job *j = q->owner[k];
            j->compute_s += wall * n_threads * q->lens[k] / n_tok;
            if (rc < 0 && j->err.code == ERR_OK)
                j->err = e;
            if (rc == 0) {
                memcpy(j->out + (size_t)q->idx[k] * E, out + (size_t)k * E, (size_t)E * sizeof *out);
                j->n_done++;
            }
        }
        free(out);
    }
    retire(q, mu);
}

void embedq_cancel_all(struct embed_queue *q, pthread_mutex_t *mu)
{
    take_submitted(q, mu);
    pthread_mutex_lock(mu);
    while (q->work) {
        struct embed_job *j = q->work;
        q->work = j->next;
        err_set(&j->err, ERR_UNAVAILABLE, "the engine is shutting down");
        finish(q, j);
    }
    pthread_mutex_unlock(mu);
}
