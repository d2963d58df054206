/*
 * maas quantize IN OUT TYPE [--threads N] [--pure]
 *
 * Converts the weights of an f32/f16/bf16 GGUF model to one type or to one
 * of llama.cpp's mixes (the per-tensor choice is in quantmix.c). Metadata is
 * copied; general.file_type and general.quantization_version are set as
 * llama-quantize sets them. Rows are converted in parallel on a thread pool;
 * the output bytes are the same for any thread count. All converted tensors
 * are held in memory until the file is written (a 0.5B model at q4_k_m is
 * about 0.4 GB; at f32 the size of the input).
 */
#include "cli/cli.h"
#include "cli/tools.h"
#include "kernels/kernels.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *out)
{
    fprintf(out,
            "usage: maas quantize IN OUT TYPE [--threads N] [--pure]\n"
            "\n"
            "Converts an f32, f16 or bf16 GGUF model. TYPE is one of:\n"
            "  %s\n"
            "Mixes follow llama.cpp (q4_k_m: q6_k output and part of attn_v/ffn_down,\n"
            "q4_k elsewhere); k-quant rows that are not a multiple of 256 fall back\n"
            "(q4_k->q5_0, q5_k->q5_1, q6_k->q8_0, q2_k/q3_k->iq4_nl). q2_k and q6_k are\n"
            "llama.cpp's mixes of those names; q3_k, q4_k and q5_k (which llama.cpp has no\n"
            "file type for) put every weight in that type. Norms, biases and MoE routers stay f32.\n"
            "  --threads N   worker threads (default: all cores)\n"
            "  --pure        every weight in TYPE's base type, no mix rules\n",
            qmix_names());
}

/* Sets *dst from the optional key "<arch>.<suffix>" when it is there and in
 * [lo, 1000000). */
static int opt_arch_int(const struct gguf_file *f, const char *arch, const char *suffix, int64_t lo, int *dst,
                        struct err *e)
{
    char key[256];
    int64_t v;
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    if (gguf_get_int(f, key, &v, e) < 0)
        return e->code == ERR_NOT_FOUND ? 0 : -1;
    if (v >= lo && v < 1000000)
        *dst = (int)v;
    return 0;
}

/* Reads what the type choice needs from the model's metadata and tensors. */
static int model_info(const struct gguf_file *f, struct qmix_model *m, struct err *e)
{
    memset(m, 0, sizeof *m);
    char arch[128] = "";
    struct gguf_str s;
    if (gguf_get_str(f, "general.architecture", &s, e) == 0)
        snprintf(arch, sizeof arch, "%.*s", (int)(s.len < 127 ? s.len : 127), s.ptr);
    else if (e->code != ERR_NOT_FOUND)
        return -1;

    int max_layer = -1;
    for (size_t i = 0; i < gguf_n_tensors(f); i++) {
        const struct gguf_tensor *t = gguf_tensor_at(f, i);
        int il;
        if (sscanf(t->name, "blk.%d.", &il) == 1 && il > max_layer)
            max_layer = il;
        if (strstr(t->name, "attn_v.weight") || strstr(t->name, "attn_qkv.weight") ||
            strstr(t->name, "attn_kv_b.weight"))
            m->n_attn_v++;
        if (!strcmp(t->name, "output.weight"))
            m->has_output = true;
    }
    m->n_layer = max_layer + 1;
    if (arch[0]) {
        if (opt_arch_int(f, arch, "block_count", 1, &m->n_layer, e) < 0 ||
            opt_arch_int(f, arch, "attention.head_count", 1, &m->n_head, e) < 0)
            return -1;
        m->n_head_kv = m->n_head;
        if (opt_arch_int(f, arch, "attention.head_count_kv", 1, &m->n_head_kv, e) < 0 ||
            opt_arch_int(f, arch, "expert_count", 0, &m->n_expert, e) < 0)
            return -1;
    }
    return 0;
}

static double mib(uint64_t b)
{
    return (double)b / (1024.0 * 1024.0);
}

struct quant_args {
    const char *in, *out;
    struct qmix q;
    int n_threads;
};

/* The command line into qa: 0 to go on, -1 after --help (exit 0), or the
 * exit status of a usage error (reported). */
static int parse_args(int argc, char **argv, struct quant_args *qa)
{
    const char *pos[3];
    int n_pos = 0;
    bool pure = false;
    qa->n_threads = cpu_count();
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return -1;
        } else if (!strcmp(a, "--threads") || !strcmp(a, "-t")) {
            struct err e;
            if (i + 1 >= argc) {
                fprintf(stderr, "maas quantize: %s needs a value\n", a);
                return 2;
            }
            if (arg_int(a, argv[++i], 1, 1024, &qa->n_threads, &e) < 0) {
                fprintf(stderr, "maas quantize: %s\n", e.msg);
                return 2;
            }
        } else if (!strcmp(a, "--pure")) {
            pure = true;
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "maas quantize: unknown option '%s' (see maas quantize --help)\n", a);
            return 2;
        } else if (n_pos < 3) {
            pos[n_pos++] = a;
        } else {
            fprintf(stderr, "maas quantize: unexpected argument '%s' (see maas quantize --help)\n", a);
            return 2;
        }
    }
    if (n_pos != 3) {
        usage(stderr);
        return 2;
    }
    qa->in = pos[0];
    qa->out = pos[1];
    if (qmix_parse(pos[2], &qa->q) != 0) {
        fprintf(stderr, "maas quantize: unknown type '%s' (one of: %s)\n", pos[2], qmix_names());
        return 2;
    }
    qa->q.pure = qa->q.pure || pure;
    return 0;
}

/* Every tensor is f32, f16 or bf16 and gets a type this build can write:
 * checked before any work is done. */
static int check_tensors(const struct gguf_file *f, const struct quant_args *qa, const struct qmix_model *m,
                         struct err *e)
{
    for (size_t i = 0; i < gguf_n_tensors(f); i++) {
        const struct gguf_tensor *t = gguf_tensor_at(f, i);
        if (t->type != GGML_TYPE_F32 && t->type != GGML_TYPE_F16 && t->type != GGML_TYPE_BF16)
            return err_set(e, ERR_INVALID, "%s: tensor '%s' is %s; quantize reads only f32, f16 or bf16 models", qa->in,
                           t->name, ggml_type_name(t->type));
        enum ggml_type dt = qmix_tensor_type(&qa->q, m, t->name, t->n_dims, t->ne, NULL);
        if (dt != GGML_TYPE_F32 && dt != GGML_TYPE_F16 && dt != GGML_TYPE_BF16 && !kern_type_quantizable(dt))
            return err_set(e, ERR_INVALID, "tensor '%s' would be %s, which this build of maas cannot produce", t->name,
                           ggml_type_name(dt));
    }
    return 0;
}

/* The input's metadata, with the quantization version and file type set. */
static int copy_metadata(struct gguf_writer *w, const struct gguf_file *f, const struct qmix *q, struct err *e)
{
    for (size_t i = 0; i < gguf_n_kv(f); i++)
        if (gguf_writer_copy_kv(w, gguf_kv_at(f, i)) != 0)
            return err_set(e, ERR_NOMEM, "out of memory");
    if (gguf_writer_set_u32(w, "general.quantization_version", 2) != 0 ||
        gguf_writer_set_u32(w, "general.file_type", (uint32_t)q->ftype) != 0)
        return err_set(e, ERR_NOMEM, "out of memory");
    return 0;
}

struct quant_stats {
    uint64_t size_in, size_out, n_elem;
    int n_fallback;
};

/* Prints one converted tensor's line: index, name, shape, types and sizes. */
static void print_tensor(size_t i, size_t n_t, const struct gguf_tensor *t, enum ggml_type dt, size_t nbytes, bool fb)
{
    char shape[96];
    int sl = snprintf(shape, sizeof shape, "[%lld", (long long)t->ne[0]);
    for (int d = 1; d < t->n_dims && sl < (int)sizeof shape; d++)
        sl += snprintf(shape + sl, sizeof shape - (size_t)sl, ", %lld", (long long)t->ne[d]);
    snprintf(shape + (sl < (int)sizeof shape ? sl : (int)sizeof shape - 2), 2, "]");
    printf("[%4zu/%4zu] %-32s %-22s %5s -> %-6s %10.2f -> %9.2f MiB%s\n", i + 1, n_t, t->name, shape,
           ggml_type_name(t->type), ggml_type_name(dt), mib(t->nbytes), mib(nbytes), fb ? "  (row length fallback)" : "");
}

/* Converts every tensor into bufs[i] (n_t of them, from calloc) and adds it
 * to w, printing a line per tensor and counting into st. */
static int convert_tensors(const struct gguf_file *f, const struct quant_args *qa, const struct qmix_model *m,
                           struct pool *pool, struct gguf_writer *w, void **bufs, struct quant_stats *st, struct err *e)
{
    size_t n_t = gguf_n_tensors(f);
    for (size_t i = 0; i < n_t; i++) {
        const struct gguf_tensor *t = gguf_tensor_at(f, i);
        bool fb;
        enum ggml_type dt = qmix_tensor_type(&qa->q, m, t->name, t->n_dims, t->ne, &fb);
        int64_t n_per_row = t->ne[0], nrows = gguf_tensor_nelements(t) / n_per_row;
        size_t nbytes = ggml_row_size(dt, n_per_row) * (size_t)nrows;
        if (!(bufs[i] = maas_alloc_aligned(nbytes)))
            return err_set(e, ERR_NOMEM, "out of memory for tensor '%s' (%zu bytes)", t->name, nbytes);
        if (qrows_convert(pool, t->type, t->data, dt, bufs[i], nrows, n_per_row, e) != 0)
            return -1;
        if (gguf_writer_add_tensor(w, t->name, dt, t->n_dims, t->ne, bufs[i], nbytes, e) != 0)
            return -1;
        print_tensor(i, n_t, t, dt, nbytes, fb);
        st->size_in += t->nbytes;
        st->size_out += nbytes;
        st->n_elem += (uint64_t)gguf_tensor_nelements(t);
        st->n_fallback += fb;
    }
    return 0;
}

int cmd_quantize(int argc, char **argv)
{
    struct quant_args qa;
    int st = parse_args(argc, argv, &qa);
    if (st)
        return st < 0 ? 0 : st;

    kernels_init();
    struct err e = {0};
    int ret = 1;
    struct gguf_file *f = NULL;
    struct gguf_writer *w = NULL;
    struct pool *pool = NULL;
    void **bufs = NULL;
    size_t n_t = 0;
    uint64_t t0 = now_ns();

    if (tool_check_out_path(qa.out, &e) != 0)
        goto fail;
    if (!(f = gguf_open(qa.in, &e)))
        goto fail;
    n_t = gguf_n_tensors(f);

    struct qmix_model m;
    if (model_info(f, &m, &e) != 0) {
        err_prefix(&e, "%s", qa.in);
        goto fail;
    }
    if (check_tensors(f, &qa, &m, &e) != 0)
        goto fail;
    if (!(w = gguf_writer_new()) || !(bufs = calloc(n_t ? n_t : 1, sizeof *bufs))) {
        err_set(&e, ERR_NOMEM, "out of memory");
        goto fail;
    }
    if (copy_metadata(w, f, &qa.q, &e) != 0)
        goto fail;
    if (!(pool = pool_new(qa.n_threads))) {
        err_set(&e, ERR_INTERNAL, "cannot start %d threads", qa.n_threads);
        goto fail;
    }
    struct quant_stats qs = {0};
    if (convert_tensors(f, &qa, &m, pool, w, bufs, &qs, &e) != 0)
        goto fail;
    if (gguf_writer_write(w, qa.out, &e) != 0)
        goto fail;
    double secs = (double)(now_ns() - t0) * 1e-9;
    printf("%s: %s (file type %d), %zu tensors, %d row-length fallbacks\n", qa.out, qa.q.name, (int)qa.q.ftype, n_t,
           qs.n_fallback);
    printf("size: %.2f MiB -> %.2f MiB (%.2f bits/weight before, %.2f after) in %.2f s with %d threads\n",
           mib(qs.size_in), mib(qs.size_out), qs.n_elem ? 8.0 * (double)qs.size_in / (double)qs.n_elem : 0.0,
           qs.n_elem ? 8.0 * (double)qs.size_out / (double)qs.n_elem : 0.0, secs, qa.n_threads);
    ret = 0;
    goto out;

fail:
    fprintf(stderr, "maas quantize: %s\n", e.msg);
out:
    if (bufs)
        for (size_t i = 0; i < n_t; i++)
            maas_free_aligned(bufs[i]);
    free(bufs);
    pool_free(pool);
    gguf_writer_free(w);
    gguf_close(f);
    return ret;
}
