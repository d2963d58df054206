/*
 * train — training decoder models from scratch on the CPU: the forward pass
 * with its activations kept, the backward pass of every layer, AdamW, and
 * the batches a text gives.
 *
 * What it trains: the decoder architectures of model/ without biases —
 * llama (adjacent-pair RoPE; with experts, Mixtral), qwen3 (per-head q/k
 * RMS norms, NeoX RoPE) and qwen3moe — with the tensor names and shapes of
 * the architecture table, so the result is an ordinary GGUF model. The
 * network is the one model/forward.c computes, in f32:
 *
 *   x = token_embd[tokens]
 *   per layer:  h = rmsnorm(x) * attn_norm
 *               q, k, v = h Wq^T, h Wk^T, h Wv^T  (qwen3: per-head rmsnorm of q, k)
 *               RoPE(q, k);  o = softmax(q k^T / sqrt(hd), causal) v  (heads grouped over kv heads)
 *               x = x + o Wo^T
 *               h = rmsnorm(x) * ffn_norm
 *               dense: x = x + (silu(h Wg^T) * h Wu^T) Wd^T
 *               MoE:   p = softmax(h Wr^T); the n_expert_used largest (ties: lower index);
 *                      weights p (renormalised over the chosen when the model says so);
 *                      x = x + sum over chosen e of w_e * expert_e(h)
 *   logits = (rmsnorm(x) * output_norm) W_out^T   (W_out = token_embd when tied)
 *   loss = mean cross-entropy of the next token + aux_coef * mean over MoE layers of the
 *          load-balancing loss  n_expert * sum_e f_e P_e   (f_e: share of the routed slots
 *          that went to e, a constant; P_e: mean router probability of e)
 *
 * Every operation has its backward pass written out (no automatic
 * differentiation). The network code is one source compiled twice, for
 * float (training) and for double (the gradient checks in the unit tests
 * compare it with central finite differences).
 *
 * Determinism: every reduction is split over rows, columns or fixed chunks
 * so that each sum has one order whatever the thread count; kern_gemm_f32
 * promises the same. A run is the same, bit for bit, for a seed on any
 * number of threads of the same kernel variant.
 */
#ifndef MAAS_TRAIN_H
#define MAAS_TRAIN_H

#include "core/core.h"
#include "model/model.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- the shape of a trainable network ---- */
struct train_shape {
    int n_vocab, n_embd, n_layer, n_head, n_head_kv, head_dim, n_rot, n_ff;
    int n_expert, n_expert_used, n_ff_exp; /* 0, 0, 0 for dense */
    bool tied, qk_norm, rope_neox, expert_norm;
    float rms_eps, rope_base;
};

/* The shape of a model's hyper-parameters. -1 with ERR_INVALID naming the
 * feature for what train cannot train: biases (qwen2), shared experts
 * (qwen2moe), encoders (bert), partial or scaled RoPE, RoPE factors. */
int train_shape_from_hparams(const struct model_hparams *hp, struct train_shape *s, struct err *e);

/* ---- the parameters: one f32 array, each tensor a range of it ---- */
#define TRAIN_NONE ((size_t)-1)

struct train_tensor {
    char name[64];            /* llama.cpp's name, e.g. "blk.0.attn_q.weight" */
    int n_dims;
    int64_t ne[3];            /* ggml order: ne[0] is the row length */
    size_t off, n;            /* its elements: [off, off + n) of the parameter array */
    bool decay;               /* weight decay applies (matrices; not norms) */
};

struct train_layer {          /* offsets into the parameter array, TRAIN_NONE when absent */
    size_t attn_norm, wq, wk, wv, wo, q_norm, k_norm, ffn_norm;
    size_t gate, up, down;                         /* dense */
    size_t gate_inp, gate_exps, up_exps, down_exps; /* MoE */
};

struct train_layout {
    struct train_tensor *t;   /* from malloc; in the architecture table's file order */
    int n_t;
    size_t n_params;
    size_t tok_embd, output_norm, output; /* output == tok_embd when tied */
    struct train_layer *layer; /* n_layer entries, from malloc */
};

/* The tensors a model of this architecture and shape has (the same list
 * maas mkmodel writes). -1 with ERR_NOMEM. */
int train_layout_init(struct train_layout *l, const struct model_arch *arch, const struct model_hparams *hp,
                      const struct train_shape *s, struct err *e);
void train_layout_release(struct train_layout *l);
/* The tensor named name, or NULL. */
const struct train_tensor *train_layout_find(const struct train_layout *l, const char *name);

/* ---- the network: forward and backward over a batch ----
 * A batch is B sequences of T + 1 tokens (B * (T + 1) ids): the network reads
 * the first T of each and predicts the next one at every position. */
struct train_net_f32;
struct train_net_f64;

struct train_loss {
    double ce;                /* mean cross-entropy per predicted token (nats) */
    double aux;               /* the load-balancing term before aux_coef (0 for dense) */
};

/* Activations and scratch for batches of B x T on pool (borrowed; NULL: the
 * calling thread). NULL with ERR_NOMEM or ERR_INVALID. */
struct train_net_f32 *train_net_new_f32(const struct train_shape *s, const struct train_layout *l, int B, int T,
                                        struct pool *pool, struct err *e);
void train_net_free_f32(struct train_net_f32 *n);
/* The loss of one batch under parameters P. With G not NULL, the gradient of
 * ce + aux_coef * aux is added into G (same layout as P). Token ids must be
 * below n_vocab (the caller checks). */
struct train_loss train_net_step_f32(struct train_net_f32 *n, const float *P, float *G, const int32_t *tokens,
                                     double aux_coef);

struct train_net_f64 *train_net_new_f64(const struct train_shape *s, const struct train_layout *l, int B, int T,
                                        struct pool *pool, struct err *e);
void train_net_free_f64(struct train_net_f64 *n);
struct train_loss train_net_step_f64(struct train_net_f64 *n, const double *P, double *G, const int32_t *tokens,
                                     double aux_coef);

/* ---- the operations, exposed for the gradient checks (f64) ----
 * Row operations of the network in double; each *_bwd adds into its
 * gradient outputs. */
void train_rmsnorm_fwd_f64(double *y, double *rs, const double *x, const double *w, int n, double eps);
void train_rmsnorm_bwd_f64(double *dx, double *dw, const double *dy, const double *x, const double *w, double rs,
                           int n);
void train_rope_f64(double *x, int n_head, int hd, int n_rot, bool neox, const double *cs, const double *sn,
                    bool inverse);
void train_swiglu_fwd_f64(double *a, const double *g, const double *u, int n);
void train_swiglu_bwd_f64(double *dg, double *du, const double *da, const double *g, const double *u, int n);
/* Softmax cross-entropy of one row: returns -log p[target]; with dlogits
 * not NULL writes (p - onehot) * scale there. */
double train_xent_f64(double *dlogits, const double *logits, int n, int target, double scale);

/* ---- the optimizer ---- */
struct train_adamw {
    double lr, lr_min;        /* peak and final learning rate */
    int warmup, steps;        /* linear warm-up steps, then cosine decay to lr_min at `steps` */
    double beta1, beta2, eps, weight_decay, clip; /* clip: max global gradient L2 norm (0: none) */
};

/* The learning rate at step (0-based). */
double train_lr(const struct train_adamw *o, int step);
/* The global L2 norm of G (n floats), summed in fixed chunks. */
double train_grad_norm(struct pool *pool, const float *G, size_t n);
/* One AdamW step (step is 0-based; bias correction uses step + 1): clips G
 * to o->clip by scaling, then updates P, M, V. decay[i] says whether tensor
 * i of l decays. Returns the gradient norm before clipping. */
double train_adamw_step(struct pool *pool, const struct train_adamw *o, int step, const struct train_layout *l,
                        float *P, float *G, float *M, float *V);

/* ---- batches from a token stream ---- */
/* Fills B windows of T + 1 tokens from toks[0 .. n): window b of step s
 * starts at an offset drawn from (seed, s, b), so batches need no state to
 * resume. n must exceed T + 1. */
void train_batch(const int32_t *toks, size_t n, int B, int T, uint64_t seed, int64_t step, int32_t *out);
/* The evaluation windows: n_win windows of T + 1 tokens spread evenly over
 * toks (overlapping when the text is short). Returns how many it wrote
 * (0 when n <= T + 1). */
int train_eval_windows(const int32_t *toks, size_t n, int T, int n_win, int32_t *out);

#endif

/* ---- checkpoints and the trained model ----
 * A checkpoint is a GGUF file: the model's metadata and f32 tensors (maas
 * loads it as a model; the extra tensors are ignored), plus the optimizer's
 * moments as tensors "train.m.<name>" and "train.v.<name>" and the run's
 * settings and history as "train.*" keys. Resuming from it continues the
 * run exactly: batches depend only on (seed, step). */
struct train_hist {
    int32_t *step;            /* from malloc */
    float *loss;
    int n, cap;
};

struct train_meta {
    uint64_t seed;
    int batch, ctx;
    int64_t step;             /* steps done */
    struct train_adamw opt;
    double aux_coef;
    uint64_t tokens;          /* tokens trained on so far */
    double seconds;           /* training time so far */
    struct train_hist loss, val; /* training loss per step, validation loss when evaluated */
};

int train_hist_push(struct train_hist *h, int64_t step, double loss); /* -1 on out of memory */
void train_meta_release(struct train_meta *m);

/* Writes path: src's metadata (without its train.* keys) and the tensors of
 * l from P, as f32; with meta (and M, V), a checkpoint. -1 with the reason. */
int train_write(const char *path, const struct gguf_file *src, const struct train_layout *l, const float *P,
                const float *M, const float *V, const struct train_meta *meta, struct err *e);
/* Reads P (and, when M and V are not NULL, the moments and meta: a
 * checkpoint) from f. -1 with ERR_INVALID naming a missing tensor or key, or
 * one of the wrong shape or type. */
int train_read(const struct gguf_file *f, const struct train_layout *l, float *P, float *M, float *V,
               struct train_meta *meta, struct err *e);
