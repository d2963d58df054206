/* tokenizer internals shared by the files of src/tokenizer/ (not a public
 * contract). vocab.c builds struct tokenizer; spm.c and bpe.c encode one
 * fragment of raw text; encode.c splits out special tokens and dispatches;
 * decode.c and stream.c turn ids back into bytes; chat.c renders templates. */
#ifndef MAAS_TOK_INT_H
#define MAAS_TOK_INT_H

#include "tokenizer/tokenizer.h"
#include "template/template.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <string.h>

#define TOK_MAX_RE 8

struct tokenizer {
    enum tok_model model;
    char pre[64];               /* tokenizer.ggml.pre ("" for SPM) */
    int32_t n_vocab;

    char *text;                 /* from malloc: all token strings, concatenated */
    uint32_t *text_off;         /* from malloc: n_vocab offsets into text */
    uint32_t *text_len;         /* from malloc: n_vocab lengths */
    float *scores;              /* from malloc: n_vocab (0 when the file has none) */
    uint8_t *types;             /* from malloc: n_vocab enum tok_type */
    uint8_t *eog;               /* from malloc: n_vocab flags */

    char *piece;                /* from malloc: decoded bytes of every token, concatenated */
    uint32_t *piece_off;        /* from malloc: n_vocab */
    uint32_t *piece_len;        /* from malloc: n_vocab */

    struct tok_slot {
        int32_t id;             /* -1: empty */
        uint32_t fp;            /* upper half of the string's hash, checked before the string */
    } *hash;                    /* from malloc: open addressing, token string -> id */
    size_t hash_mask;

    /* Pairs, open addressing on key (left id << 32 | right id). BPE: the
     * merges with their ranks. SPM: every split of a token into two tokens. */
    struct tok_merge {
        uint64_t key;           /* UINT64_MAX: empty slot */
        uint32_t rank;
        int32_t res;            /* id of the merged token */
    } *merge;                   /* from malloc */
    size_t merge_mask;

    int32_t byte_tok[256];      /* SPM: id of <0xNN> (or the byte itself); BPE: id of the mapped character; -1 */

    int32_t *special;           /* from malloc: control / user-defined / unknown ids, longest text first */
    size_t n_special;
    uint32_t *special_rank;     /* from malloc: n_vocab; position of the id in special[] */

    /* Byte trie of the special texts: root_child[b] is the node after byte b
     * (or -1); deeper edges are in a hash (node << 8 | byte) -> node. */
    int32_t root_child[256];
    uint64_t *trie_key;         /* from malloc; UINT64_MAX empty */
    int32_t *trie_val;          /* from malloc */
    size_t trie_mask;
    int32_t *trie_tok;          /* from malloc: per node, the special id ending there or -1 */
    int32_t n_nodes;

    pcre2_code *re[TOK_MAX_RE]; /* owned: pre-tokenizer expressions, applied in order */
    int n_re;

    int32_t bos, eos, eot, eom, unk, pad;
    bool add_bos, add_eos;
    bool add_space_prefix;      /* SPM */
    bool spm_split_words;       /* SPM: no token has U+2581 after another character */
    bool ignore_merges;
    uint32_t max_token_len;     /* WPM: the longest token text in bytes */         /* BPE llama3: a word that is a whole token is taken as is */

    char *chat_template;        /* from malloc, NUL-terminated; NULL when the model has none */
    struct tmpl *jinja;         /* owned: chat_template parsed, when it parses and renders a probe chat */
    struct tmpl *jinja_tools;   /* owned: tokenizer.chat_template.tool_use parsed, when the file has one that parses */
    char *chat_template_tools;  /* from malloc: tokenizer.chat_template.tool_use, or NULL */
    char jinja_why[256];        /* why jinja is NULL although chat_template is not ("" otherwise) */
};

/* Parses t->chat_template with the Jinja engine and renders a one-message
 * probe; on success t->jinja is set, else t->jinja_why says why (the
 * built-in families are then the fallback). Never fails the load. */
void tok_chat_prepare(struct tokenizer *t);
/* Parses t->chat_template_tools into t->jinja_tools (left NULL, with a
 * warning logged, when the engine cannot parse it). */
void tok_chat_prepare_tools(struct tokenizer *t);

static inline const char *tok_text_at(const struct tokenizer *t, int32_t id)
{
    return t->text + t->text_off[id];
}

/* The merge table entry for the pair (l, r), or NULL. BPE: rank and
 * result of the merge; SPM: the token whose text is text(l) + text(r). */
static inline const struct tok_merge *tok_merge_find(const struct tokenizer *t, int32_t l, int32_t r)
{
    uint64_t key = (uint64_t)(uint32_t)l << 32 | (uint32_t)r;
    size_t i = (size_t)hash_mix64(key) & t->merge_mask;
    for (;;) {
        const struct tok_merge *m = &t->merge[i];
        if (m->key == key)
            return m;
        if (m->key == UINT64_MAX)
            return NULL;
        i = (i + 1) & t->merge_mask;
    }
}

/* Hash lookup of a token string: id or -1. */
int32_t tok_lookup(const struct tokenizer *t, const char *s, size_t n);

/* Keeps the last keep bytes of b (keep <= b->len) as its whole content:
 * the streaming decoder's carry-over between tokens. */
static inline void tok_sbuf_keep_tail(struct sbuf *b, size_t keep)
{
    if (!b->buf)
        return; /* nothing was ever added: keep is 0 */
    memmove(b->buf, b->buf + b->len - keep, keep);
    b->len = keep;
    b->buf[keep] = 0;
}

/* Encodes raw text (no special tokens inside) and appends ids. */
/* SPM: add_prefix puts a space before the text; spaces become U+2581. */
int tok_spm_encode(const struct tokenizer *t, const char *text, size_t len, bool add_prefix, struct tok_ids *out,
                   struct err *e);
/* WPM: the BERT pre-tokenizer and greedy longest-match (wpm.c). */
int tok_wpm_encode(const struct tokenizer *t, const char *text, size_t len, struct tok_ids *out, struct err *e);
int tok_bpe_encode(const struct tokenizer *t, const char *text, size_t len, struct tok_ids *out, struct err *e);

/* tok_encode with a mask: where raw_mask[i] != 0 (one byte per byte of
 * text; NULL for none) no control token may be recognised, whatever
 * parse_special says — how chat rendering keeps message contents raw. */
int tok_encode_masked(const struct tokenizer *t, const char *text, size_t len, bool add_special,
                      bool parse_special, const uint8_t *raw_mask, struct tok_ids *out, struct err *e);

/* Builds the trie of special texts (after special[] is sorted). */
int tok_build_special_trie(struct tokenizer *t, struct err *e);

/* BPE set-up: compiles the expressions of t->pre. -1 with a reason for an
 * unknown name. */
int tok_bpe_init_pre(struct tokenizer *t, struct err *e);

/* GPT-2 byte <-> unicode mapping: the code point that stands for byte b, and
 * the byte for code point cp (-1 when cp stands for no byte). */
uint32_t tok_byte_to_cp(uint8_t b);
int tok_cp_to_byte(uint32_t cp);

/* UTF-8 helpers. Length of a sequence from its lead byte (1 for stray
 * continuation bytes, as llama.cpp's unicode_len_utf8). */
static inline size_t tok_utf8_len(uint8_t c)
{
    static const uint8_t lookup[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    return lookup[c >> 4];
}
size_t tok_utf8_put(char *out, uint32_t cp); /* writes 1..4 bytes */
/* Decodes one character at s[0..n) (n >= 1): its length, and the code point
 * in *cp, or length 1 and *cp = -1 for an invalid byte. */
size_t tok_utf8_next(const char *s, size_t n, int32_t *cp);

/* A binary heap of TYPE, first the element for which BEFORE(a, b) holds,
 * kept in the fields heap, heap_n and heap_cap of a CTX (the merge queues of
 * bpe.c and spm.c). Defines static int NAME##_push(CTX *, TYPE) (-1 when
 * out of memory) and static TYPE NAME##_pop(CTX *) (heap_n > 0). */
#define TOK_HEAP_DEFINE(NAME, CTX, TYPE, BEFORE)                                                              \
    static int NAME##_push(CTX *c, TYPE v)                                                                    \
    {                                                                                                         \
        if (mem_grow(&c->heap, &c->heap_cap, c->heap_n + 1, sizeof *c->heap) < 0)                             \
            return -1;                                                                                        \
        size_t i = c->heap_n++;                                                                               \
        while (i > 0) {                                                                                       \
            size_t parent = (i - 1) / 2;                                                                      \
            if (!BEFORE(&v, &c->heap[parent]))                                                                \
                break;                                                                                        \
            c->heap[i] = c->heap[parent];                                                                     \
            i = parent;                                                                                       \
        }                                                                                                     \
        c->heap[i] = v;                                                                                       \
        return 0;                                                                                             \
    }                                                                                                         \
    static TYPE NAME##_pop(CTX *c)                                                                            \
    {                                                                                                         \
        TYPE top = c->heap[0], last = c->heap[--c->heap_n];                                                   \
        size_t i = 0, n = c->heap_n;                                                                          \
        for (;;) {                                                                                            \
            size_t l = 2 * i + 1, r = l + 1, m = i;                                                           \
            const TYPE *best = &last;                                                                         \
            if (l < n && BEFORE(&c->heap[l], best))                                                           \
                m = l, best = &c->heap[l];                                                                    \
            if (r < n && BEFORE(&c->heap[r], best))                                                           \
                m = r;                                                                                        \
            if (m == i)                                                                                       \
                break;                                                                                        \
            c->heap[i] = c->heap[m];                                                                          \
            i = m;                                                                                            \
        }                                                                                                     \
        if (n)                                                                                                \
            c->heap[i] = last;                                                                                \
        return top;                                                                                           \
    }


#endif
