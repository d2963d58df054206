/*
 * maas train — train a small llama, qwen3 or qwen3moe model from scratch on
 * a text, on the CPU (src/train/ does the arithmetic).
 *
 * A new run first makes the starting model with `maas mkmodel` (a byte-level
 * BPE vocabulary learned from the training text, seeded random weights in
 * f32, every shape option passed on), then trains it: batches of --batch
 * windows of --ctx + 1 tokens drawn from the text by (seed, step), AdamW
 * with linear warm-up and cosine decay to lr/10, gradient clipping. Every
 * --save-every steps and at the end it writes OUT.ckpt (a checkpoint:
 * --resume continues it exactly), then OUT (the trained model in f32, or in
 * --type) and OUT.svg (the loss curve).
 */
#include "cli/cli.h"
#include "cli/tools.h"
#include "kernels/kernels.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"
#include "train/train.h"

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TRAIN_MAX_PASS 48 /* mkmodel options passed on */

struct targs {
    const char *text, *val, *out, *resume, *type, *vocab;
    int steps, batch, ctx, threads, warmup, eval_every, save_every, eval_windows, stop_after;
    double minutes, lr, weight_decay, clip, aux_coef;
    int64_t seed;
    bool seed_given, quiet;
    const char *pass[TRAIN_MAX_PASS]; /* mkmodel's shape options and their values */
    int n_pass;
};

static void usage(FILE *out)
{
    fprintf(out,
            "usage: maas train --arch llama|qwen3|qwen3moe --text TRAIN.txt [--val VAL.txt] -o OUT.gguf\n"
            "                  [--steps N | --minutes M] [options] [shape options of maas mkmodel]\n"
            "       maas train --resume OUT.gguf.ckpt [--steps N] -o OUT.gguf\n"
            "\n"
            "Trains a model from scratch on the CPU. The vocabulary (byte-level BPE) is learned from TRAIN.txt\n"
            "(or copied with --vocab V.gguf); the shape options are mkmodel's (--n-embd, --n-layer, --n-head,\n"
            "--n-head-kv, --n-ff, --n-expert, --n-expert-used, --n-ff-exp, --head-dim, --vocab-size, --tie, ...).\n"
            "  --steps N          optimizer steps (default 1000)\n"
            "  --minutes M        instead of --steps: as many steps as fit in M minutes at the measured speed\n"
            "                     (refitted every 25 steps; not reproducible across machines; --steps is)\n"
            "  --batch B (16)     windows per step     --ctx C (128)   tokens per window (the model's context)\n"
            "  --lr X (2e-3)      peak learning rate; cosine decay to X/10 after --warmup N (default steps/20)\n"
            "  --weight-decay X (0.1)  --clip X (1.0, global gradient norm)  --aux-coef X (0.01, MoE balance)\n"
            "  --seed S (1)       weights and batches; a run is the same for a seed on any thread count\n"
            "  --eval-every N (50) validation loss on --eval-windows W (4 x batch) windows of VAL.txt\n"
            "  --save-every N (250) checkpoint OUT.ckpt          --resume CKPT   continue a checkpoint\n"
            "  --stop-after N     stop at step N with a checkpoint (as Ctrl-C does), to --resume later\n"
            "  --type T           write OUT in this type or mix (q8_0, q4_k_m, ...; default f32)\n"
            "  --threads N        (default: all cores)    --quiet   no progress lines\n"
            "Writes OUT, OUT.ckpt and OUT.svg (the loss curves).\n");
}

/* ---- options ---- */
static const char *const pass_with_value[] = {
    "--arch", "--n-embd", "--n-layer", "--n-head", "--n-head-kv", "--n-ff", "--n-expert", "--n-expert-used",
    "--n-ff-exp", "--head-dim", "--vocab-size", "--rope-theta", "--name", "--embd-std", "--n-ctx"};

static bool passes(const char *a)
{
    for (size_t i = 0; i < sizeof pass_with_value / sizeof *pass_with_value; i++)
        if (!strcmp(a, pass_with_value[i]))
            return true;
    return false;
}

struct num_opt {
    const char *name;
    bool is_int;
    size_t off;
    double lo, hi;
};

#define NI(n, f, lo, hi) {n, true, offsetof(struct targs, f), lo, hi}
#define NF(n, f, lo, hi) {n, false, offsetof(struct targs, f), lo, hi}
static const struct num_opt num_opts[] = {
    NI("--steps", steps, 1, 10000000), NI("--batch", batch, 1, 4096), NI("--ctx", ctx, 2, 65536),
    NI("--threads", threads, 1, 1024), NI("--warmup", warmup, 0, 10000000), NI("--eval-every", eval_every, 1, 1 << 30),
    NI("--save-every", save_every, 1, 1 << 30), NI("--stop-after", stop_after, 1, 10000000), NI("--eval-windows", eval_windows, 1, 65536),
    NF("--minutes", minutes, 0.01, 1e6), NF("--lr", lr, 1e-8, 10), NF("--weight-decay", weight_decay, 0, 10),
    NF("--clip", clip, 0, 1e6), NF("--aux-coef", aux_coef, 0, 100),
};
#undef NI
#undef NF

static int set_num(const struct num_opt *o, const char *v, struct targs *a)
{
    struct err e = {0};
    int rc = o->is_int ? arg_int(o->name, v, (int)o->lo, (int)o->hi, (int *)((char *)a + o->off), &e)
                       : arg_f64(o->name, v, o->lo, o->hi, (double *)((char *)a + o->off), &e);
    if (rc != 0)
        fprintf(stderr, "maas train: %s\n", e.msg);
    return rc;
}

static int set_str(const char *opt, const char *v, struct targs *a)
{
    static const struct {
        const char *name;
        size_t off;
    } strs[] = {{"--text", offsetof(struct targs, text)}, {"--val", offsetof(struct targs, val)},
                {"-o", offsetof(struct targs, out)},      {"--output", offsetof(struct targs, out)},
                {"--resume", offsetof(struct targs, resume)}, {"--type", offsetof(struct targs, type)},
                {"--vocab", offsetof(struct targs, vocab)}};
    for (size_t i = 0; i < sizeof strs / sizeof *strs; i++)
        if (!strcmp(opt, strs[i].name)) {
            *(const char **)((char *)a + strs[i].off) = v;
            return 0;
        }
    if (!strcmp(opt, "--seed")) {
        struct err e = {0};
        a->seed_given = true;
        if (arg_i64("--seed", v, 0, INT64_MAX, &a->seed, &e) != 0)
            return fprintf(stderr, "maas train: %s\n", e.msg), -1;
        return 0;
    }
    for (size_t i = 0; i < sizeof num_opts / sizeof *num_opts; i++)
        if (!strcmp(opt, num_opts[i].name))
            return set_num(&num_opts[i], v, a);
    return 1; /* not ours */
}

/* 0, -1 after --help, or the exit code (2) after printing why */
static int parse_args(int argc, char **argv, struct targs *a)
{
    memset(a, 0, sizeof *a);
    a->steps = -1, a->batch = 16, a->ctx = 128, a->threads = cpu_count(), a->warmup = -1, a->eval_every = 50;
    a->save_every = 250, a->eval_windows = -1, a->lr = 2e-3, a->weight_decay = 0.1, a->clip = 1.0, a->aux_coef = 0.01;
    a->seed = 1;
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        if (!strcmp(o, "--help") || !strcmp(o, "-h"))
            return usage(stdout), -1;
        if (!strcmp(o, "--quiet")) {
            a->quiet = true;
            continue;
        }
        if ((!strcmp(o, "--tie") || !strcmp(o, "--no-tie")) && a->n_pass < TRAIN_MAX_PASS) {
            a->pass[a->n_pass++] = o;
            continue;
        }
        if (i + 1 >= argc)
            return fprintf(stderr, "maas train: %s needs a value (see maas train --help)\n", o), 2;
        if (passes(o) && a->n_pass + 2 <= TRAIN_MAX_PASS) {
            a->pass[a->n_pass++] = o;
            a->pass[a->n_pass++] = argv[++i];
            continue;
        }
        int rc = set_str(o, argv[i + 1], a);
        if (rc > 0)
            return fprintf(stderr, "maas train: unknown option '%s' (see maas train --help)\n", o), 2;
        if (rc < 0)
            return 2;
        i++;
    }
    if (!a->out)
        return fprintf(stderr, "maas train: -o OUT.gguf is required\n"), 2;
    if (!a->resume && !a->text)
        return fprintf(stderr, "maas train: --text TRAIN.txt is required (or --resume CKPT)\n"), 2;
    if (a->resume && a->n_pass > 0)
        return fprintf(stderr, "maas train: --resume takes the shape from the checkpoint; drop %s\n", a->pass[0]), 2;
    if (a->steps > 0 && a->minutes > 0)
        return fprintf(stderr, "maas train: give --steps or --minutes, not both\n"), 2;
    return 0;
}

/* ---- the run ---- */
static volatile sig_atomic_t interrupted;
static void on_sigint(int sig)
{
    (void)sig;
    interrupted = 1;
}

struct run {
    struct targs a;
    char ckpt[4096], init[4096], svg[4096];
    struct model *m;
    struct gguf_file *src;    /* the metadata the outputs copy: the init model or the checkpoint */
    struct tokenizer *tok;
    struct train_shape s;
    struct train_layout l;
    struct train_meta meta;
    float *P, *G, *M, *V;
    int32_t *train_toks, *val_toks, *batch;
    size_t n_train, n_val;
    int32_t *eval;            /* the evaluation windows: n_eval (a multiple of the batch) of ctx + 1 tokens */
    int n_eval;
    struct pool *pool;
    struct train_net_f32 *net;
    bool stopped;             /* --stop-after or Ctrl-C: a checkpoint, no model */
};

/* The starting model: mkmodel with the shape options, in f32. */
static int make_init(struct run *r, struct err *e)
{
    const struct targs *a = &r->a;
    char seed[32], ctx[32];
    snprintf(seed, sizeof seed, "%lld", (long long)a->seed);
    snprintf(ctx, sizeof ctx, "%d", a->ctx);
    const char *argv[TRAIN_MAX_PASS + 16];
    int n = 0;
    argv[n++] = "mkmodel";
    argv[n++] = a->vocab ? "--vocab" : "--train-vocab";
    argv[n++] = a->vocab ? a->vocab : a->text;
    argv[n++] = "--seed", argv[n++] = seed, argv[n++] = "--embd-std", argv[n++] = "0.02";
    argv[n++] = "--n-ctx", argv[n++] = ctx;
    for (int i = 0; i < a->n_pass; i++) /* later options win in mkmodel */
        argv[n++] = a->pass[i];
    argv[n++] = "-o", argv[n++] = r->init;
    argv[n] = NULL;
    if (cmd_mkmodel(n, (char **)argv) != 0)
        return err_set(e, ERR_INVALID, "could not make the starting model (mkmodel's message is above)");
    return 0;
}

static int read_tokens(struct run *r, const char *path, int32_t **out, size_t *n, struct err *e)
{
    char *text = NULL;
    size_t len = 0;
    if (tool_read_text(path, &text, &len, e) != 0)
        return -1;
    struct tok_ids ids;
    tok_ids_init(&ids);
    int rc = tok_encode(r->tok, text, len, false, false, &ids, e);
    free(text);
    if (rc != 0)
        return err_prefix(e, "%s", path), -1;
    if ((size_t)ids.n <= (size_t)r->meta.ctx + 1) {
        size_t got = (size_t)ids.n;
        tok_ids_release(&ids);
        return err_set(e, ERR_INVALID, "%s: %zu tokens; training needs more than --ctx + 1 = %d", path, got,
                       r->meta.ctx + 1);
    }
    *out = ids.ids;
    *n = (size_t)ids.n;
    return 0;
}

/* Opens the model (new or checkpoint), its tokenizer, shape and parameters. */
static int open_model(struct run *r, const char *path, bool ckpt, struct err *e)
{
    if (!(r->m = model_load(path, e)))
        return -1;
    const struct model_hparams *hp = model_hparams(r->m);
    r->src = (struct gguf_file *)model_gguf(r->m);
    if (!(r->tok = tok_load(r->src, e)) || train_shape_from_hparams(hp, &r->s, e) != 0 ||
        train_layout_init(&r->l, hp->arch, hp, &r->s, e) != 0)
        return -1;
    size_t np = r->l.n_params;
    r->P = calloc(np, sizeof *r->P), r->G = calloc(np, sizeof *r->G);
    r->M = calloc(np, sizeof *r->M), r->V = calloc(np, sizeof *r->V);
    if (!r->P || !r->G || !r->M || !r->V)
        return err_set(e, ERR_NOMEM, "out of memory for %zu parameters", np);
    return train_read(r->src, &r->l, r->P, ckpt ? r->M : NULL, ckpt ? r->V : NULL, ckpt ? &r->meta : NULL, e);
}

/* A new run's settings from the options. */
static void new_meta(struct run *r)
{
    const struct targs *a = &r->a;
    struct train_meta *m = &r->meta;
    m->seed = (uint64_t)a->seed, m->batch = a->batch, m->ctx = a->ctx, m->step = 0;
    m->opt.steps = a->steps > 0 ? a->steps : 1000;
    m->opt.warmup = a->warmup >= 0 ? a->warmup : m->opt.steps / 20;
    m->opt.lr = a->lr, m->opt.lr_min = a->lr / 10, m->opt.beta1 = 0.9, m->opt.beta2 = 0.95, m->opt.eps = 1e-8;
    m->opt.weight_decay = a->weight_decay, m->opt.clip = a->clip;
    m->aux_coef = a->aux_coef;
}

static int setup(struct run *r, struct err *e)
{
    struct targs *a = &r->a;
    snprintf(r->ckpt, sizeof r->ckpt, "%s.ckpt", a->out);
    snprintf(r->init, sizeof r->init, "%s.init", a->out);
    snprintf(r->svg, sizeof r->svg, "%s.svg", a->out);
    if (tool_check_out_path(a->out, e) != 0)
        return -1;
    if (a->resume) {
        if (open_model(r, a->resume, true, e) != 0)
            return -1;
        if (a->steps > 0) /* a longer run: the schedule stretches */
            r->meta.opt.steps = a->steps;
    } else {
        new_meta(r);
        int rc = make_init(r, e);
        if (rc == 0)
            rc = open_model(r, r->init, false, e);
        unlink(r->init);
        if (rc != 0)
            return -1;
    }
    if (!a->text)
        return err_set(e, ERR_INVALID, "--text TRAIN.txt is required (the checkpoint keeps no text)");
    if (read_tokens(r, a->text, &r->train_toks, &r->n_train, e) != 0 ||
        (a->val && read_tokens(r, a->val, &r->val_toks, &r->n_val, e) != 0))
        return -1;
    if (!(r->pool = pool_new(a->threads)))
        return err_set(e, ERR_INTERNAL, "cannot start %d threads", a->threads);
    if (!(r->net = train_net_new_f32(&r->s, &r->l, r->meta.batch, r->meta.ctx, r->pool, e)))
        return -1;
    if (!(r->batch = malloc((size_t)r->meta.batch * (size_t)(r->meta.ctx + 1) * sizeof *r->batch)))
        return err_set(e, ERR_NOMEM, "out of memory");
    if (r->val_toks) { /* spread evenly over the text, rounded up to whole batches */
        int B = r->meta.batch, nw = a->eval_windows > 0 ? a->eval_windows : 4 * B;
        r->n_eval = (nw + B - 1) / B * B;
        if (!(r->eval = malloc((size_t)r->n_eval * (size_t)(r->meta.ctx + 1) * sizeof *r->eval)))
            return err_set(e, ERR_NOMEM, "out of memory");
        train_eval_windows(r->val_toks, r->n_val, r->meta.ctx, r->n_eval, r->eval);
    }
    return 0;
}

/* Mean cross-entropy over the evaluation windows of the validation text. */
static double evaluate(struct run *r)
{
    int B = r->meta.batch, T = r->meta.ctx;
    double sum = 0;
    for (int w0 = 0; w0 < r->n_eval; w0 += B)
        sum += train_net_step_f32(r->net, r->P, NULL, r->eval + (size_t)w0 * (size_t)(T + 1), 0).ce;
    return sum / (r->n_eval / B);
}

static void progress(const struct run *r, double loss, double aux, double val, double gnorm, double tps, double left)
{
    const struct train_meta *m = &r->meta;
    printf("step %6lld/%d  loss %.4f", (long long)m->step, m->opt.steps, loss);
    if (r->s.n_expert > 0)
        printf(" (aux %.3f)", aux);
    if (!isnan(val))
        printf("  val %.4f", val);
    printf("  lr %.2e  |g| %.2f  %.0f tok/s  %02d:%02d left\n", train_lr(&m->opt, (int)m->step - 1), gnorm, tps,
           (int)(left / 60), (int)fmod(left, 60));
    fflush(stdout);
}

static int save_ckpt(struct run *r, struct err *e)
{
    return train_write(r->ckpt, r->src, &r->l, r->P, r->M, r->V, &r->meta, e);
}

/* --minutes: the step count the time left allows at the speed so far.
 * Fitted after 10 steps (which sets the warm-up) and again every 25 steps
 * from the speed since step 10 (the first steps are slower: caches, page
 * faults), so the run ends on time; the cosine schedule follows the fit. */
static void fit_minutes(struct run *r, double elapsed, double step_s, bool first_fit)
{
    struct train_meta *m = &r->meta;
    double left = r->a.minutes * 60.0 - elapsed;
    int steps = (int)m->step + (left > 0 ? (int)(left / step_s) : 0);
    m->opt.steps = steps > (int)m->step + 1 ? steps : (int)m->step + 1;
    if (first_fit && r->a.warmup < 0)
        m->opt.warmup = m->opt.steps / 20;
    if (first_fit)
        printf("--minutes %.1f: %.2f s a step, about %d steps\n", r->a.minutes, step_s, m->opt.steps);
}

static int one_step(struct run *r, double *loss, double *aux, double *gnorm)
{
    struct train_meta *m = &r->meta;
    train_batch(r->train_toks, r->n_train, m->batch, m->ctx, m->seed, m->step, r->batch);
    memset(r->G, 0, r->l.n_params * sizeof *r->G);
    struct train_loss ls = train_net_step_f32(r->net, r->P, r->G, r->batch, m->aux_coef);
    if (!isfinite(ls.ce))
        return -1;
    *gnorm = train_adamw_step(r->pool, &m->opt, (int)m->step, &r->l, r->P, r->G, r->M, r->V);
    *loss = ls.ce, *aux = ls.aux;
    m->step++;
    m->tokens += (uint64_t)m->batch * (uint64_t)m->ctx;
    return 0;
}

static int train_loop(struct run *r, struct err *e)
{
    struct train_meta *m = &r->meta;
    uint64_t t0 = now_ns();
    double secs0 = m->seconds, t10 = 0;
    int64_t first = m->step;
    while (m->step < m->opt.steps && !interrupted) {
        if (r->a.stop_after > 0 && m->step >= r->a.stop_after) {
            printf("stopped at step %lld: saving %s (continue with --resume)\n", (long long)m->step, r->ckpt);
            r->stopped = true;
            return save_ckpt(r, e);
        }
        double loss, aux, gnorm, val = NAN;
        if (one_step(r, &loss, &aux, &gnorm) != 0)
            return err_set(e, ERR_INTERNAL, "step %lld: the loss is not finite (lower --lr)", (long long)m->step);
        m->seconds = secs0 + (double)(now_ns() - t0) * 1e-9;
        if (train_hist_push(&m->loss, m->step, loss) != 0)
            return err_set(e, ERR_NOMEM, "out of memory");
        if (r->a.minutes > 0 && !r->a.resume && m->step - first == 10)
            t10 = m->seconds, fit_minutes(r, m->seconds - secs0, (m->seconds - secs0) / 10, true);
        else if (r->a.minutes > 0 && !r->a.resume && m->step - first > 10 && (m->step - first) % 25 == 0)
            fit_minutes(r, m->seconds - secs0, (m->seconds - t10) / (double)(m->step - first - 10), false);
        bool last = m->step == m->opt.steps;
        if (r->val_toks && (m->step % r->a.eval_every == 0 || last)) {
            val = evaluate(r);
            if (train_hist_push(&m->val, m->step, val) != 0)
                return err_set(e, ERR_NOMEM, "out of memory");
        }
        double per = (m->seconds - secs0) / (double)(m->step - first);
        if (!r->a.quiet && (m->step % 10 == 0 || last || !isnan(val) || m->step - first <= 3))
            progress(r, loss, aux, val, gnorm, (double)m->batch * m->ctx / per, per * (double)(m->opt.steps - m->step));
        if ((m->step % r->a.save_every == 0 || last) && save_ckpt(r, e) != 0)
            return -1;
    }
    if (interrupted) {
        printf("interrupted at step %lld: saving %s (continue with --resume)\n", (long long)m->step, r->ckpt);
        r->stopped = true;
        return save_ckpt(r, e);
    }
    return 0;
}

/* The loss curves as an SVG line chart. */
static int write_svg(struct run *r, struct err *e)
{
    const struct train_meta *m = &r->meta;
    double *xs = malloc((size_t)(m->loss.n + m->val.n + 1) * 2 * sizeof *xs);
    if (!xs)
        return err_set(e, ERR_NOMEM, "out of memory");
    double *ys = xs + m->loss.n + m->val.n + 1;
    for (int i = 0; i < m->loss.n; i++)
        xs[i] = m->loss.step[i], ys[i] = m->loss.loss[i];
    for (int i = 0; i < m->val.n; i++)
        xs[m->loss.n + i] = m->val.step[i], ys[m->loss.n + i] = m->val.loss[i];
    struct svg_series s[2] = {{"training loss", xs, ys, m->loss.n, "#1f77b4"},
                              {"validation loss", xs + m->loss.n, ys + m->loss.n, m->val.n, "#d62728"}};
    char title[256];
    const char *base = strrchr(r->a.out, '/');
    snprintf(title, sizeof title, "maas train: %s, %.1fM parameters, %llu tokens", base ? base + 1 : r->a.out,
             (double)r->l.n_params * 1e-6,
             (unsigned long long)m->tokens);
    int rc = svg_plot(r->svg, title, "step", "cross-entropy (nats per token)", s, m->val.n ? 2 : 1, e);
    free(xs);
    return rc;
}

static int finish(struct run *r, struct err *e)
{
    const struct targs *a = &r->a;
    if (write_svg(r, e) != 0)
        return -1;
    if (!a->type || !strcmp(a->type, "f32"))
        return train_write(a->out, r->src, &r->l, r->P, NULL, NULL, NULL, e);
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.f32", a->out);
    if (train_write(tmp, r->src, &r->l, r->P, NULL, NULL, NULL, e) != 0)
        return -1;
    const char *argv[] = {"quantize", tmp, a->out, a->type, NULL};
    int rc = cmd_quantize(4, (char **)argv);
    unlink(tmp);
    return rc != 0 ? err_set(e, ERR_INVALID, "could not write %s as %s (quantize's message is above)", a->out, a->type)
                   : 0;
}

static void release(struct run *r)
{
    train_net_free_f32(r->net);
    pool_free(r->pool);
    free(r->train_toks), free(r->val_toks), free(r->batch), free(r->eval);
    free(r->P), free(r->G), free(r->M), free(r->V);
    train_meta_release(&r->meta);
    train_layout_release(&r->l);
    tok_free(r->tok);
    model_free(r->m);
}

int cmd_train(int argc, char **argv)
{
    struct run *r = calloc(1, sizeof *r);
    if (!r)
        return fprintf(stderr, "maas train: out of memory\n"), 1;
    int prc = parse_args(argc, argv, &r->a);
    if (prc != 0) {
        free(r);
        return prc < 0 ? 0 : prc;
    }
    kernels_init();
    struct err e = {0};
    int ret = 1;
    if (setup(r, &e) != 0)
        goto out;
    printf("training %s: %.2fM parameters, %zu training tokens%s, batch %d x %d, %d steps, %d threads, kernels %s\n",
           r->a.out, (double)r->l.n_params * 1e-6, r->n_train, r->val_toks ? " (+ validation)" : "", r->meta.batch,
           r->meta.ctx, r->meta.opt.steps, pool_n_threads(r->pool), kern_variant_current());
    signal(SIGINT, on_sigint);
    if (train_loop(r, &e) != 0 || (!r->stopped && finish(r, &e) != 0))
        goto out;
    if (!r->stopped)
        printf("wrote %s, %s and %s (%lld steps, %llu tokens, %.1f s)\n", r->a.out, r->ckpt, r->svg,
               (long long)r->meta.step, (unsigned long long)r->meta.tokens, r->meta.seconds);
    ret = interrupted ? 130 : 0;
out:
    signal(SIGINT, SIG_DFL);
    if (ret == 1)
        fprintf(stderr, "maas train: %s\n", e.msg);
    release(r);
    free(r);
    return ret;
}
