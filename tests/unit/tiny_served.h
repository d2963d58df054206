/*
 * The model the engine and server tests serve: one small qwen2 layer
 * (n_embd 32, 2 heads, 1 KV head, f32, tied output) with random weights over
 * a real vocabulary (test_vocab_load), written to a temporary file, loaded
 * and the file removed. Header-only, test use only; links the model module
 * and below.
 */
#ifndef MAAS_TINY_SERVED_H
#define MAAS_TINY_SERVED_H

#include "model/model.h"
#include "model_tiny.h"
#include "test_vocab.h"

/* The model for tok, seeded with seed; tag names the temporary file. NULL
 * with e set on failure. */
static struct model *tiny_served_model(const struct tokenizer *tok, const char *tag, uint64_t seed, struct err *e)
{
    struct tiny_cfg c = {0};
    c.arch = "qwen2";
    c.n_vocab = tok_n_vocab(tok);
    c.n_embd = 32;
    c.n_layer = 1;
    c.n_head = 2;
    c.n_head_kv = 1;
    c.head_dim = 16;
    c.n_ff = 32;
    c.wtype = GGML_TYPE_F32;
    c.tied = true;
    c.seed = seed;
    char path[128];
    tiny_path(path, sizeof path, tag);
    if (tiny_write(&c, path) != 0) {
        err_set(e, ERR_IO, "cannot write the tiny model %s", path);
        return NULL;
    }
    struct model *m = model_load(path, e);
    unlink(path);
    return m;
}

#endif
