/*
 * tools.h — private to cli/: what `maas quantize` and `maas mkmodel` share.
 *
 *   qmix     the target of a conversion: one tensor type or one of llama.cpp's
 *            file-type mixes (q4_k_m, ...), and the per-tensor type choice
 *            (quantmix.c) that follows llama.cpp's llama_tensor_get_type.
 *   qrows    quantizing rows of f32/f16/bf16 into a type over a thread pool,
 *            the same bytes for any number of threads (quantmix.c).
 *   vocab    learning a GPT-2-style byte-level BPE vocabulary from a text
 *            (vocab_train.c).
 *   files    checking an output path early, reading a text (tools_io.c).
 *   svg      a line chart of loss curves as an SVG file (svgplot.c).
 */
#ifndef MAAS_CLI_TOOLS_H
#define MAAS_CLI_TOOLS_H

#include "core/core.h"
#include "gguf/gguf.h"

#include <stdbool.h>
#include <stdint.h>

/* llama.cpp's enum llama_ftype, the value of general.file_type. */
enum llama_ftype {
    LLAMA_FTYPE_ALL_F32 = 0,
    LLAMA_FTYPE_MOSTLY_F16 = 1,
    LLAMA_FTYPE_MOSTLY_Q4_0 = 2,
    LLAMA_FTYPE_MOSTLY_Q4_1 = 3,
    LLAMA_FTYPE_MOSTLY_Q8_0 = 7,
    LLAMA_FTYPE_MOSTLY_Q5_0 = 8,
    LLAMA_FTYPE_MOSTLY_Q5_1 = 9,
    LLAMA_FTYPE_MOSTLY_Q2_K = 10,
    LLAMA_FTYPE_MOSTLY_Q3_K_S = 11,
    LLAMA_FTYPE_MOSTLY_Q3_K_M = 12,
    LLAMA_FTYPE_MOSTLY_Q3_K_L = 13,
    LLAMA_FTYPE_MOSTLY_Q4_K_S = 14,
    LLAMA_FTYPE_MOSTLY_Q4_K_M = 15,
    LLAMA_FTYPE_MOSTLY_Q5_K_S = 16,
    LLAMA_FTYPE_MOSTLY_Q5_K_M = 17,
    LLAMA_FTYPE_MOSTLY_Q6_K = 18,
    LLAMA_FTYPE_MOSTLY_IQ4_NL = 25,
    LLAMA_FTYPE_MOSTLY_BF16 = 32,
};

/* A conversion target, as parsed from the TYPE argument. */
struct qmix {
    const char *name;       /* as the user writes it: "q4_k_m", "f16" */
    enum ggml_type base;    /* the type of most weights */
    enum llama_ftype ftype; /* recorded in general.file_type */
    bool pure;              /* every weight in `base` (no llama.cpp mix rules) */
};

/* Parses TYPE (case-insensitive). -1 if unknown. */
int qmix_parse(const char *name, struct qmix *out);
/* The accepted names, space-separated, for usage messages. */
const char *qmix_names(void);

/* What the type choice needs to know about the model (from its metadata and
 * tensor list). */
struct qmix_model {
    int n_layer;     /* ARCH.block_count */
    int n_head;      /* ARCH.attention.head_count */
    int n_head_kv;   /* ARCH.attention.head_count_kv */
    int n_expert;    /* ARCH.expert_count, 0 for dense */
    int n_attn_v;    /* number of tensors whose name contains attn_v.weight */
    bool has_output; /* has a separate output.weight (not tied to token_embd) */
};

/* The type the tensor gets under q. Tensors that are not quantizable get
 * GGML_TYPE_F32. The k-quant fallback for rows that are not a multiple of 256
 * is applied; *fallback (may be NULL) is set when it changed the type. */
enum ggml_type qmix_tensor_type(const struct qmix *q, const struct qmix_model *m, const char *name, int n_dims,
                                const int64_t *ne, bool *fallback);

/* Converts nrows rows of n_per_row elements of type src (f32, f16 or bf16)
 * into dst_type (any type kern_type_quantizable accepts, or f32/f16/bf16),
 * writing ggml_row_size(dst_type, n_per_row) bytes per row. Rows are split
 * over the pool; each row is converted independently, so the bytes do not
 * depend on the number of threads. pool may be NULL (one thread). 0 or -1
 * with the reason (out of memory) in e. */
int qrows_convert(struct pool *pool, enum ggml_type src, const void *x, enum ggml_type dst_type, void *y,
                  int64_t nrows, int64_t n_per_row, struct err *e);

/* Converts one row of n f32 values to dst (f32, f16, bf16 or a type
 * kern_type_quantizable accepts); n is a multiple of dst's block size. */
void qrow_from_f32(enum ggml_type dst, const float *x, void *y, int64_t n);

/* ---- files (tools_io.c) ---- */
/* Checks, before any work, that OUT can be created: its directory exists and
 * OUT is not itself a directory. 0, or -1 with the reason in e. */
int tool_check_out_path(const char *out, struct err *e);
/* Reads a whole (non-empty, at most 1 GiB) file into a malloc'd buffer. */
int tool_read_text(const char *path, char **out, size_t *len, struct err *e);
/* Reads f to its end into *out (from malloc, NUL-terminated, length in
 * *len); name is f's name for messages. -1 with ERR_INVALID past max bytes,
 * ERR_IO on a read error, ERR_NOMEM. */
int tool_read_stream(FILE *f, const char *name, size_t max, char **out, size_t *len, struct err *e);

/* ---- line charts (svgplot.c) ---- */
struct svg_series {
    const char *name;         /* the legend's text (NULL: none) */
    const double *x, *y;      /* n points; a point with a NaN or infinite coordinate is skipped (the line breaks) */
    int n;
    const char *color;        /* any SVG color ("#1f77b4", "red"); NULL: the next of 8 default colors */
};

/* Writes a line chart of the series to path as a standalone SVG file: linear
 * axes over the finite points of all series, widened to ticks at 1, 2 or 5
 * times a power of ten, with tick labels, the axis labels, the title and a
 * legend. A series is drawn as lines through its points in order, broken at
 * skipped points; a point alone between breaks is a dot. No series, empty
 * series or one point give a valid chart (a default frame around the data).
 * Text is XML-escaped. The file is written beside path and renamed over it,
 * so readers never see a partial chart. 0, or -1 with e (ERR_INVALID: no
 * path, n < 0 or NULL data; ERR_IO naming the file; ERR_NOMEM). */
int svg_plot(const char *path, const char *title, const char *xlabel, const char *ylabel,
             const struct svg_series *s, int n_series, struct err *e);

/* ---- byte-level BPE vocabulary training ---- */
struct vocab {
    uint64_t n_tokens;
    struct gguf_str *tokens; /* from malloc; each ptr from malloc, UTF-8 (GPT-2 byte mapping) */
    int32_t *token_type;     /* from malloc; n_tokens entries */
    uint64_t n_merges;
    struct gguf_str *merges; /* from malloc; "left right", each ptr from malloc */
    uint32_t bos_id, eos_id, pad_id;
};

/* Learns merges from the text (pre-split with the GPT-2 expression) until the
 * vocabulary has n_vocab tokens in all (256 byte tokens, the merged tokens,
 * then <|endoftext|>, <|im_start|>, <|im_end|> as control tokens), or until
 * no pair is left to merge. 0, or -1 with the reason in e. */
int vocab_train(const char *text, size_t len, uint32_t n_vocab, struct vocab *out, struct err *e);
void vocab_release(struct vocab *v);

/* The ChatML template written as tokenizer.chat_template. */
extern const char vocab_chatml_template[];

#endif
