/* Writes tiny random-weight models for the model unit tests (gguf_writer),
 * with options to drop or misshape one tensor. Header-only, test use only. */
#ifndef MAAS_TEST_MODEL_TINY_H
#define MAAS_TEST_MODEL_TINY_H

#include "gguf/gguf.h"
#include "kernels/kernels.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

struct tiny_cfg {
    const char *arch;
    int n_vocab, n_embd, n_layer, n_head, n_head_kv, head_dim, n_ff;
    int n_expert, n_expert_used, n_ff_exp, n_ff_shexp; /* MoE: llama (Mixtral), qwen2moe, qwen3moe */
    enum ggml_type wtype;        /* type of the 2-D matrices */
    bool tied;
    const char *omit;            /* tensor name to leave out, or NULL */
    const char *misshape;        /* tensor name to write with ne[0] + 32, or NULL */
    enum ggml_type misstype_type;/* with misstype: the type to give it */
    const char *misstype;        /* tensor name to write with another type, or NULL */
    uint64_t seed;
};

struct tiny_writer {
    struct gguf_writer *w;
    struct rng r;
    const struct tiny_cfg *c;
    void *bufs[512];
    int n_bufs;
    int failed;
};

static void tiny_tensor3(struct tiny_writer *tw, const char *name, int64_t ne0, int64_t ne1, int64_t ne2, double std,
                         double mean)
{
    const struct tiny_cfg *c = tw->c;
    if (c->omit && !strcmp(name, c->omit))
        return;
    if (c->misshape && !strcmp(name, c->misshape))
        ne0 += 32;
    int n_dims = ne2 > 1 ? 3 : ne1 > 1 ? 2 : 1;
    enum ggml_type t = n_dims == 2 ? c->wtype : GGML_TYPE_F32;
    if (c->misstype && !strcmp(name, c->misstype))
        t = c->misstype_type;
    int64_t n = ne0 * ne1 * ne2;
    float *f = malloc((size_t)n * sizeof *f);
    for (int64_t i = 0; i < n; i++)
        f[i] = (float)(mean + std * rng_normal(&tw->r));
    size_t bytes;
    void *data;
    if (t == GGML_TYPE_F32) {
        data = f;
        bytes = (size_t)n * 4;
    } else if (kern_type_quantizable(t)) {
        bytes = ggml_row_size(t, ne0) * (size_t)(ne1 * ne2);
        data = malloc(bytes);
        kern_quantize(t, f, data, ne1 * ne2, ne0);
        free(f);
    } else { /* a type the kernels cannot use: raw bytes of the right size */
        bytes = ggml_row_size(t, ne0) * (size_t)(ne1 * ne2);
        data = calloc(1, bytes);
        free(f);
    }
    tw->bufs[tw->n_bufs++] = data;
    int64_t ne[3] = {ne0, ne1, ne2};
    struct err e;
    if (gguf_writer_add_tensor(tw->w, name, t, n_dims, ne, data, bytes, &e) < 0) {
        fprintf(stderr, "tiny model: %s\n", e.msg);
        tw->failed = 1;
    }
}

static void tiny_tensor(struct tiny_writer *tw, const char *name, int64_t ne0, int64_t ne1, double std, double mean)
{
    tiny_tensor3(tw, name, ne0, ne1, 1, std, mean);
}

/* Writes the model to path; 0 or -1. */
static int tiny_write(const struct tiny_cfg *c, const char *path)
{
    struct tiny_writer tw = {0};
    tw.w = gguf_writer_new();
    tw.c = c;
    rng_seed(&tw.r, c->seed ? c->seed : 1);
    char k[128];
    gguf_writer_set_str(tw.w, "general.architecture", c->arch);
#define KEY(s) (snprintf(k, sizeof k, "%s." s, c->arch), k)
    gguf_writer_set_u32(tw.w, KEY("context_length"), 256);
    gguf_writer_set_u32(tw.w, KEY("embedding_length"), (uint32_t)c->n_embd);
    gguf_writer_set_u32(tw.w, KEY("block_count"), (uint32_t)c->n_layer);
    gguf_writer_set_u32(tw.w, KEY("feed_forward_length"), (uint32_t)c->n_ff);
    if (c->n_expert) {
        gguf_writer_set_u32(tw.w, KEY("expert_count"), (uint32_t)c->n_expert);
        gguf_writer_set_u32(tw.w, KEY("expert_used_count"), (uint32_t)c->n_expert_used);
        if (strstr(c->arch, "moe"))
            gguf_writer_set_u32(tw.w, KEY("expert_feed_forward_length"), (uint32_t)c->n_ff_exp);
        if (c->n_ff_shexp)
            gguf_writer_set_u32(tw.w, KEY("expert_shared_feed_forward_length"), (uint32_t)c->n_ff_shexp);
    }
    gguf_writer_set_u32(tw.w, KEY("attention.head_count"), (uint32_t)c->n_head);
    gguf_writer_set_u32(tw.w, KEY("attention.head_count_kv"), (uint32_t)c->n_head_kv);
    gguf_writer_set_f32(tw.w, KEY("attention.layer_norm_rms_epsilon"), 1e-6f);
    gguf_writer_set_f32(tw.w, KEY("rope.freq_base"), 10000.0f);
    if (c->head_dim != c->n_embd / c->n_head) {
        gguf_writer_set_u32(tw.w, KEY("attention.key_length"), (uint32_t)c->head_dim);
        gguf_writer_set_u32(tw.w, KEY("attention.value_length"), (uint32_t)c->head_dim);
    }
#undef KEY
    int E = c->n_embd, QD = c->n_head * c->head_dim, KD = c->n_head_kv * c->head_dim;
    bool qwen2 = !strncmp(c->arch, "qwen2", 5), qwen3 = !strncmp(c->arch, "qwen3", 5);
    int FE = strstr(c->arch, "moe") ? c->n_ff_exp : c->n_ff;
    tiny_tensor(&tw, "token_embd.weight", E, c->n_vocab, 0.5, 0);
    tiny_tensor(&tw, "output_norm.weight", E, 1, 0.1, 1.0);
    if (!c->tied)
        tiny_tensor(&tw, "output.weight", E, c->n_vocab, 0.15, 0);
    for (int l = 0; l < c->n_layer; l++) {
        char n[96];
#define T(s, a, b, sd, mu) (snprintf(n, sizeof n, "blk.%d." s, l), tiny_tensor(&tw, n, a, b, sd, mu))
        T("attn_norm.weight", E, 1, 0.1, 1.0);
        T("attn_q.weight", E, QD, 0.15, 0);
        T("attn_k.weight", E, KD, 0.15, 0);
        T("attn_v.weight", E, KD, 0.15, 0);
        T("attn_output.weight", QD, E, 0.15, 0);
        if (qwen2) {
            T("attn_q.bias", QD, 1, 0.1, 0);
            T("attn_k.bias", KD, 1, 0.1, 0);
            T("attn_v.bias", KD, 1, 0.1, 0);
        }
        if (qwen3) {
            T("attn_q_norm.weight", c->head_dim, 1, 0.1, 1.0);
            T("attn_k_norm.weight", c->head_dim, 1, 0.1, 1.0);
        }
        T("ffn_norm.weight", E, 1, 0.1, 1.0);
        if (!c->n_expert) {
            T("ffn_gate.weight", E, c->n_ff, 0.15, 0);
            T("ffn_up.weight", E, c->n_ff, 0.15, 0);
            T("ffn_down.weight", c->n_ff, E, 0.15, 0);
        } else {
#define T3(s, a, b) (snprintf(n, sizeof n, "blk.%d." s, l), tiny_tensor3(&tw, n, a, b, c->n_expert, 0.15, 0))
            T("ffn_gate_inp.weight", E, c->n_expert, 0.5, 0);
            T3("ffn_gate_exps.weight", E, FE);
            T3("ffn_up_exps.weight", E, FE);
            T3("ffn_down_exps.weight", FE, E);
#undef T3
            if (c->n_ff_shexp) {
                T("ffn_gate_inp_shexp.weight", E, 1, 0.2, 0);
                T("ffn_gate_shexp.weight", E, c->n_ff_shexp, 0.15, 0);
                T("ffn_up_shexp.weight", E, c->n_ff_shexp, 0.15, 0);
                T("ffn_down_shexp.weight", c->n_ff_shexp, E, 0.15, 0);
            }
        }
#undef T
    }
    struct err e;
    int rc = tw.failed ? -1 : gguf_writer_write(tw.w, path, &e);
    if (rc < 0 && !tw.failed)
        fprintf(stderr, "tiny model: %s\n", e.msg);
    for (int i = 0; i < tw.n_bufs; i++)
        free(tw.bufs[i]);
    gguf_writer_free(tw.w);
    return rc;
}

/* A tiny BERT encoder (bert.* keys, llama.cpp's tensor names) with
 * c->n_vocab tokens and pooling_type pooling (-1: no key); the config's
 * arch, n_head_kv, head_dim and tied are ignored. 0 or -1. */
static inline int tiny_write_bert(const struct tiny_cfg *c, int pooling, const char *path)
{
    struct tiny_writer tw = {0};
    tw.w = gguf_writer_new();
    tw.c = c;
    rng_seed(&tw.r, c->seed ? c->seed : 1);
    int E = c->n_embd, F = c->n_ff;
    gguf_writer_set_str(tw.w, "general.architecture", "bert");
    gguf_writer_set_u32(tw.w, "bert.context_length", 32);
    gguf_writer_set_u32(tw.w, "bert.embedding_length", (uint32_t)E);
    gguf_writer_set_u32(tw.w, "bert.block_count", (uint32_t)c->n_layer);
    gguf_writer_set_u32(tw.w, "bert.feed_forward_length", (uint32_t)F);
    gguf_writer_set_u32(tw.w, "bert.attention.head_count", (uint32_t)c->n_head);
    gguf_writer_set_f32(tw.w, "bert.attention.layer_norm_epsilon", 1e-12f);
    gguf_writer_set_bool(tw.w, "bert.attention.causal", false);
    if (pooling >= 0)
        gguf_writer_set_u32(tw.w, "bert.pooling_type", (uint32_t)pooling);
    gguf_writer_set_u32(tw.w, "tokenizer.ggml.token_type_count", 2);
    tiny_tensor(&tw, "token_embd.weight", E, c->n_vocab, 0.5, 0);
    tiny_tensor(&tw, "token_types.weight", E, 2, 0.5, 0);
    tiny_tensor(&tw, "position_embd.weight", E, 32, 0.5, 0);
    tiny_tensor(&tw, "token_embd_norm.weight", E, 1, 0.1, 1.0);
    tiny_tensor(&tw, "token_embd_norm.bias", E, 1, 0.1, 0);
    for (int l = 0; l < c->n_layer; l++) {
        char n[96];
#define T(s, a, b, sd, mu) (snprintf(n, sizeof n, "blk.%d." s, l), tiny_tensor(&tw, n, a, b, sd, mu))
        T("attn_q.weight", E, E, 0.15, 0);
        T("attn_k.weight", E, E, 0.15, 0);
        T("attn_v.weight", E, E, 0.15, 0);
        T("attn_q.bias", E, 1, 0.1, 0);
        T("attn_k.bias", E, 1, 0.1, 0);
        T("attn_v.bias", E, 1, 0.1, 0);
        T("attn_output.weight", E, E, 0.15, 0);
        T("attn_output.bias", E, 1, 0.1, 0);
        T("attn_output_norm.weight", E, 1, 0.1, 1.0);
        T("attn_output_norm.bias", E, 1, 0.1, 0);
        T("ffn_up.weight", E, F, 0.15, 0);
        T("ffn_up.bias", F, 1, 0.1, 0);
        T("ffn_down.weight", F, E, 0.15, 0);
        T("ffn_down.bias", E, 1, 0.1, 0);
        T("layer_output_norm.weight", E, 1, 0.1, 1.0);
        T("layer_output_norm.bias", E, 1, 0.1, 0);
#undef T
    }
    struct err e;
    int rc = tw.failed ? -1 : gguf_writer_write(tw.w, path, &e);
    for (int i = 0; i < tw.n_bufs; i++)
        free(tw.bufs[i]);
    gguf_writer_free(tw.w);
    return rc;
}

/* A fresh temporary path (the file itself is created by tiny_write). */
static void tiny_path(char *buf, size_t n, const char *tag)
{
    snprintf(buf, n, "/tmp/maas_test_%s_%d.gguf", tag, (int)getpid());
}

#endif
