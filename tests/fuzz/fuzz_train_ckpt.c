/* libFuzzer target for the checkpoint reader (maas train --resume): any
 * bytes either open as a GGUF and read as a checkpoint of a fixed small
 * shape, or are refused with a message. The seed corpus holds a real
 * checkpoint of that shape (maas train --arch qwen3 --vocab-size 300
 * --n-embd 8 --n-layer 1 --n-head 2 --n-head-kv 1 --n-ff 16 --tie). */
#include "train/train.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct err e = {0};
    struct gguf_file *f = gguf_open_mem(data, size, "fuzz", &e);
    if (!f)
        return 0;
    struct model_hparams hp;
    memset(&hp, 0, sizeof hp);
    hp.arch = model_arch_find("qwen3", 5, &e);
    hp.arch_name = "qwen3";
    hp.n_vocab = 300, hp.n_embd = 8, hp.n_layer = 1, hp.n_head = 2, hp.n_head_kv = 1, hp.head_dim = 4, hp.n_rot = 4;
    hp.n_ff = 16, hp.n_ctx_train = 16, hp.tied_output = true, hp.rms_eps = 1e-6f, hp.rope_base = 1e6f;
    hp.rope_freq_scale = 1, hp.rope_neox = true;
    struct train_shape s;
    struct train_layout l;
    if (train_shape_from_hparams(&hp, &s, &e) != 0 || train_layout_init(&l, hp.arch, &hp, &s, &e) != 0)
        abort();
    float *P = calloc(l.n_params, sizeof *P), *M = calloc(l.n_params, sizeof *M), *V = calloc(l.n_params, sizeof *V);
    struct train_meta meta;
    memset(&meta, 0, sizeof meta);
    if (train_read(f, &l, P, M, V, &meta, &e) == 0) {
        if (meta.batch < 1 || meta.ctx < 1 || meta.opt.steps < 1 || meta.loss.n < 0 || meta.val.n < 0)
            abort();
        volatile double sink = 0;
        for (int i = 0; i < meta.loss.n; i++)
            sink += meta.loss.loss[i] + meta.loss.step[i];
        (void)sink;
    } else if (!e.msg[0]) {
        abort(); /* a refusal always says why */
    }
    train_meta_release(&meta);
    free(P), free(M), free(V);
    train_layout_release(&l);
    gguf_close(f);
    return 0;
}
