/*
 * engine — many sequences on one model: a request queue and a
 * continuous-batching scheduler over a paged KV cache with prefix reuse.
 *
 * Threads: one engine thread per model owns the model, the KV cache and the
 * scheduler. Any other thread (the HTTP layer) talks to it only through
 * this API: engine_submit() enqueues a request and returns a handle;
 * engine_next() blocks on the handle's bounded event queue; engine_cancel()
 * flags the sequence, which the engine thread finishes within one step.
 *
 * Each scheduler step builds one batch: one decode token for every running
 * sequence plus chunks of prefill for waiting ones, within a per-step token
 * budget, and runs it through model_forward() once. Admission waits while
 * KV blocks are short; a running sequence may be preempted (its blocks
 * freed) and resumed later by recomputation, giving the same output.
 *
 * Prefix cache: every full KV block is indexed by a hash of the whole token
 * prefix up to its end; such blocks survive their request (LRU eviction when
 * blocks run out), and a new request whose prompt starts with cached blocks
 * reuses them: those tokens are neither recomputed nor billed at the full
 * input price (they are reported as n_cached).
 */
#ifndef MAAS_ENGINE_H
#define MAAS_ENGINE_H

#include "core/core.h"
#include "grammar/grammar.h"
#include "model/model.h"
#include "sample/sample.h"
#include "tokenizer/tokenizer.h"

#include <stdbool.h>
#include <stdint.h>

struct engine_opts {
    int n_threads;        /* kernel threads (0 = all cores) */
    int n_ctx;            /* most positions one sequence may have (prompt + output); 0 = engine_default_n_ctx */
    int kv_blocks;        /* KV blocks in the cache (0 = enough for n_ctx * 4 positions) */
    int block_size;       /* positions per block (0 = 16) */
    int step_tokens;      /* token budget of one scheduler step (0 = 512) */
    int max_running;      /* most sequences decoding at once (0 = 64) */
    int max_queue;        /* most requests waiting; engine_submit refuses beyond (0 = 256) */
    bool fcfs;            /* admit first come, first served instead of weighted fair shares */
    bool embed_only;      /* only engine_embed: engine_submit refuses, and the KV cache is one block (kv_blocks
                             ignored) — for a server that sends an embedding model nothing else */
};

struct engine;

/* The context a sequence gets when none is asked for (engine_opts.n_ctx 0,
 * and `maas chat`/`maas serve` without --ctx): the trained context, at most
 * ENGINE_MAX_DEFAULT_CTX positions (and that when the model does not say). */
#define ENGINE_MAX_DEFAULT_CTX 4096
int engine_default_n_ctx(const struct model_hparams *hp);

/* Starts the engine thread on a loaded model (borrowed: must outlive the
 * engine) and its tokenizer (borrowed; used for end-of-generation tokens).
 * NULL with a reason. */
struct engine *engine_new(struct model *m, const struct tokenizer *tok, const struct engine_opts *o, struct err *e);
/* Cancels everything, stops the thread, frees the cache. NULL does nothing.
 * Handles not yet released stay valid for engine_next/engine_release. */
void engine_free(struct engine *eng);

struct engine_request {
    const int32_t *prompt;        /* copied by engine_submit */
    int n_prompt;                 /* >= 1 */
    struct sample_params sample;  /* the bias array is copied */
    uint64_t seed;
    int max_tokens;               /* most tokens to generate (>= 1) */
    bool ignore_eog;              /* keep going past end-of-generation tokens */
    const char *account;          /* copied; the fair-share class (NULL or "" = the class of requests
                                     without an account); at most ENGINE_ACCOUNT_MAX - 1 bytes */
    int weight;                   /* the account's share weight, 1..1000 (0 = 1) */
    struct grammar *grammar;      /* NULL, or structured output: the sequence's tokens must follow this
                                     grammar. engine_submit takes its own reference (grammar_ref) and
                                     drops it when the sequence ends, so the caller may free its
                                     reference at once. Each sequence keeps its own state; tokens the
                                     grammar forbids are masked before sampling (sample_params.allowed
                                     is set by the engine), and when the grammar is complete (no token
                                     can continue it) the sequence finishes with ENGINE_FINISH_STOP.
                                     A lazy grammar (grammar_set_trigger: tool_choice "auto") masks
                                     nothing until its trigger is sampled; a token that would complete
                                     the trigger with bytes the grammar refuses is excluded and another
                                     sampled. The state lives with the sequence through preemption.
                                     Needs the engine's tokenizer. */
};
#define ENGINE_ACCOUNT_MAX 64
#define ENGINE_TOP_ACCOUNTS 8

enum engine_finish {
    ENGINE_FINISH_STOP = 0,       /* an end-of-generation token (not emitted as text), or the
                                     request's grammar complete */
    ENGINE_FINISH_LENGTH,         /* max_tokens or n_ctx reached */
    ENGINE_FINISH_CANCELLED,      /* engine_cancel or engine_free */
    ENGINE_FINISH_ERROR,
};
const char *engine_finish_name(enum engine_finish f); /* "stop", "length", "cancelled", "error" */

enum engine_event_kind { ENGINE_EV_TOKEN = 0, ENGINE_EV_DONE };

struct engine_event {
    enum engine_event_kind kind;
    struct sample_result tok;     /* ENGINE_EV_TOKEN: the token, its logprob and alternatives */
    /* ENGINE_EV_DONE: */
    enum engine_finish finish;
    int n_prompt;                 /* prompt tokens */
    int n_cached;                 /* of which served from the prefix cache */
    int n_completion;             /* tokens generated (the EOG token not counted) */
    double compute_s;             /* core-seconds of the steps it took part in, its share (see engine_stats) */
    double queue_s;               /* seconds from engine_submit to its first admission (or to its end, if never) */
    char error[256];              /* ENGINE_FINISH_ERROR: why */
};

struct engine_seq;

/* Enqueues a request. NULL with a reason when the queue is full (the
 * message says so: callers answer 429/503), the prompt plus max_tokens
 * exceeds n_ctx, the parameters are invalid (a weight outside 0..1000,
 * an account name too long), or the engine is embed_only.
 *
 * Admission order (unless engine_opts.fcfs): weighted fair shares across
 * accounts by virtual time in tokens processed — the waiting request of the
 * account with the least tokens processed per unit of weight goes first,
 * FCFS inside an account; an account that was not waiting carries no
 * credit; preemption takes the youngest sequence of the account most above
 * its share, and when every slot is taken an account with none gets one
 * from an account above its share of the slots (the sequence that loses
 * least recomputation); a step's prompt-token budget is split among the
 * accounts with prompt work by weight (work-conserving), oldest first
 * inside one. */
struct engine_seq *engine_submit(struct engine *eng, const struct engine_request *r, struct err *e);
/* Waits up to timeout_ms (-1 = forever) for the next event. 0 with *ev
 * written; 1 on timeout. After ENGINE_EV_DONE no more events come. */
int engine_next(struct engine_seq *s, struct engine_event *ev, int timeout_ms);
/* Asks the engine to stop this sequence (client gone, stop string seen);
 * safe from any thread, any number of times. A DONE event follows. */
void engine_cancel(struct engine_seq *s);
/* Frees the handle (cancelling the sequence first if it is still running).
 * NULL does nothing. */
void engine_release(struct engine_seq *s);

struct engine_stats {
    int queued;                   /* waiting for admission */
    int running;                  /* admitted and not finished */
    int kv_blocks_total, kv_blocks_used, kv_blocks_free, kv_blocks_cached; /* cached: held only by the prefix cache */
    uint64_t steps, tokens_prefilled, tokens_decoded, tokens_cached;
    uint64_t preemptions;
    /* Compute attribution: each step's wall time (forward pass and sampling)
     * times the engine's kernel threads is split among the step's sequences
     * in proportion to the tokens each fed (its prompt chunk, or 1 when
     * decoding); recomputation after preemption is charged to the preempted
     * sequence. The shares of all sequences add up to busy_core_s. */
    double busy_s;                /* wall seconds spent in steps */
    double busy_core_s;           /* busy_s times the kernel threads */
    int n_threads;                /* kernel threads */
    /* The accounts with the most requests waiting (most first, at most
     * ENGINE_TOP_ACCOUNTS; "" = requests without an account). */
    struct engine_account_queue {
        char account[ENGINE_ACCOUNT_MAX];
        int queued;
    } top[ENGINE_TOP_ACCOUNTS];
    int n_top;
};
void engine_get_stats(struct engine *eng, struct engine_stats *out);

/* ---- embeddings ----
 * For an embedding model (model_is_embedding): the inputs go to the engine
 * thread, which runs them between scheduler steps in forward passes of at
 * most step_tokens tokens — several inputs, and the inputs of several
 * requests, share a pass, and a pass is no longer than one prefill step, so
 * chat streams on the same engine wait at most about one step. No KV is
 * kept. */
struct engine_embed_request {
    int n_inputs;                 /* >= 1 */
    const int32_t *const *inputs; /* borrowed until engine_embed returns: n_inputs token lists */
    const int *lens;              /* their lengths, each 1..engine_embed_max_tokens */
};
/* The longest input a pass takes: min(step_tokens, the model's context). */
int engine_embed_max_tokens(const struct engine *eng);
/* Embeds the inputs with the model's pooling and blocks until done: out
 * receives n_inputs rows of model_embed_n_out floats (n_embd, L2-normalised;
 * with pooling rank one score each); *compute_s the
 * core-seconds of its share of the passes. 0, or -1 with e: ERR_INVALID (an
 * input too long or empty, an id outside the vocabulary), ERR_EXHAUSTED
 * (max_queue requests already waiting), ERR_UNAVAILABLE (shutting down),
 * ERR_NOMEM. Safe from any thread but the engine's. */
int engine_embed(struct engine *eng, const struct engine_embed_request *r, float *out, double *compute_s,
                 struct err *e);

#endif
