/*
 * encode.c — text to ids: special tokens first, then the model's encoder on
 * the raw text between them.
 *
 * Special tokens are found as llama.cpp's tokenizer_st_partition finds them:
 * tokens are taken longest text first; each one claims its occurrences left
 * to right in the text that no longer-or-earlier token has claimed. All
 * occurrences are found in one pass with a byte trie of the special texts,
 * then claimed in that order, so the cost does not grow with the number of
 * special tokens (DeepSeek has 2,400).
 *
 * Which tokens may be claimed: control and unknown tokens only when the
 * caller passes parse_special; user-defined tokens always, because they are
 * ordinary text that the vocabulary stores whole (DeepSeek's "ø", "ö", ...)
 * — the reference tokenizers (HF added tokens, llama.cpp) match them in raw
 * text too, and the expected ids of the test vocabularies depend on it.
 * tok_encode_masked additionally forbids control tokens over bytes the
 * caller marks as raw (chat message contents, see tok_chat_encode).
 */
#include "tokenizer/tok_int.h"

#include <string.h>

static uint64_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    return x;
}

static int32_t trie_child(const struct tokenizer *t, int32_t node, uint8_t b)
{
    if (node == 0)
        return t->root_child[b];
    uint64_t key = (uint64_t)node << 8 | b;
    size_t i = (size_t)mix(key) & t->trie_mask;
    for (;;) {
        if (t->trie_key[i] == key)
            return t->trie_val[i];
        if (t->trie_key[i] == UINT64_MAX)
            return -1;
        i = (i + 1) & t->trie_mask;
    }
}

int tok_build_special_trie(struct tokenizer *t, struct err *e)
{
    size_t total = 1;
    for (size_t i = 0; i < t->n_special; i++)
        total += t->text_len[t->special[i]];
    if (total > INT32_MAX / 2)
        return err_set(e, ERR_INVALID, "special tokens: %zu bytes of text is too much", total);
    t->trie_mask = 16;
    while (t->trie_mask < 2 * total)
        t->trie_mask *= 2;
    t->trie_mask--;
    t->trie_key = malloc((t->trie_mask + 1) * sizeof *t->trie_key);
    t->trie_val = malloc((t->trie_mask + 1) * sizeof *t->trie_val);
    t->trie_tok = malloc(total * sizeof *t->trie_tok);
    t->special_rank = malloc((size_t)t->n_vocab * sizeof *t->special_rank);
    if (!t->trie_key || !t->trie_val || !t->trie_tok || !t->special_rank)
        return err_set(e, ERR_NOMEM, "out of memory building the special-token trie");
    memset(t->trie_key, 0xFF, (t->trie_mask + 1) * sizeof *t->trie_key);
    for (int b = 0; b < 256; b++)
        t->root_child[b] = -1;
    t->n_nodes = 1;
    t->trie_tok[0] = -1;
    /* Insert shortest first so that a duplicate text keeps the longest-first
     * (earliest in special[]) id: walk special[] backwards. */
    for (size_t k = t->n_special; k-- > 0;) {
        int32_t id = t->special[k];
        t->special_rank[id] = (uint32_t)k;
        const uint8_t *s = (const uint8_t *)tok_text_at(t, id);
        int32_t node = 0;
        for (uint32_t j = 0; j < t->text_len[id]; j++) {
            int32_t child = trie_child(t, node, s[j]);
            if (child < 0) {
                child = t->n_nodes++;
                t->trie_tok[child] = -1;
                if (node == 0) {
                    t->root_child[s[j]] = child;
                } else {
                    uint64_t key = (uint64_t)node << 8 | s[j];
                    size_t i = (size_t)mix(key) & t->trie_mask;
                    while (t->trie_key[i] != UINT64_MAX)
                        i = (i + 1) & t->trie_mask;
                    t->trie_key[i] = key;
                    t->trie_val[i] = child;
                }
            }
            node = child;
        }
        t->trie_tok[node] = id;
    }
    return 0;
}

struct occ {
    uint32_t rank; /* position of the token in special[] */
    uint32_t pos;
};

static int cmp_occ(const void *a, const void *b)
{
    const struct occ *x = a, *y = b;
    if (x->rank != y->rank)
        return x->rank < y->rank ? -1 : 1;
    return x->pos < y->pos ? -1 : x->pos > y->pos;
}

struct frag {
    uint32_t off, len;
    int32_t id; /* >= 0: a special token */
};

static int cmp_frag(const void *a, const void *b)
{
    const struct frag *x = a, *y = b;
    return x->off < y->off ? -1 : x->off > y->off;
}

static bool claimable(const struct tokenizer *t, int32_t id, bool parse_special)
{
    uint8_t ty = t->types[id];
    return parse_special || ty == TOK_TYPE_USER_DEFINED;
}

/* Finds the special tokens of text; *frags receives the claimed ones in
 * text order (from malloc, *n_frags entries). */
static int find_specials(const struct tokenizer *t, const char *text, size_t len, bool parse_special,
                         const uint8_t *raw_mask, struct frag **frags, size_t *n_frags, struct err *e)
{
    struct occ *occ = NULL;
    size_t n_occ = 0, cap = 0;
    uint8_t *taken = NULL;
    *frags = NULL;
    *n_frags = 0;
    const uint8_t *u = (const uint8_t *)text;
    for (size_t i = 0; i < len; i++) {
        int32_t node = t->root_child[u[i]];
        for (size_t j = i + 1; node > 0; j++) {
            int32_t id = t->trie_tok[node];
            /* a control token may not take a byte the caller marked as raw text */
            bool masked = false;
            if (id >= 0 && raw_mask && t->types[id] != TOK_TYPE_USER_DEFINED)
                for (size_t k = i; k < j && !masked; k++)
                    masked = raw_mask[k] != 0;
            if (id >= 0 && !masked && claimable(t, id, parse_special)) {
                if (mem_grow(&occ, &cap, n_occ + 1, sizeof *occ) < 0)
                    goto oom;
                occ[n_occ++] = (struct occ){t->special_rank[id], (uint32_t)i};
            }
            if (j >= len)
                break;
            node = trie_child(t, node, u[j]);
        }
    }
    if (!n_occ)
        return 0;
    qsort(occ, n_occ, sizeof *occ, cmp_occ);
    taken = calloc(len, 1);
    *frags = malloc(n_occ * sizeof **frags);
    if (!taken || !*frags)
        goto oom;
    uint32_t cur_rank = UINT32_MAX;
    size_t last_end = 0;
    for (size_t k = 0; k < n_occ; k++) {
        int32_t id = t->special[occ[k].rank];
        size_t p = occ[k].pos, l = t->text_len[id];
        if (occ[k].rank != cur_rank) {
            cur_rank = occ[k].rank;
            last_end = 0;
        }
        if (p < last_end)
            continue;
        bool free_span = true;
        for (size_t j = p; j < p + l && free_span; j++)
            free_span = !taken[j];
        if (!free_span)
            continue;
        memset(taken + p, 1, l);
        last_end = p + l;
        (*frags)[(*n_frags)++] = (struct frag){(uint32_t)p, (uint32_t)l, id};
    }
    qsort(*frags, *n_frags, sizeof **frags, cmp_frag);
    free(occ);
    free(taken);
    return 0;
oom:
    free(occ);
    free(taken);
    free(*frags);
    *frags = NULL;
    return err_set(e, ERR_NOMEM, "out of memory looking for special tokens");
}

static int encode_raw(const struct tokenizer *t, const char *text, size_t len, bool *prev_special,
                      struct tok_ids *out, struct err *e)
{
    if (len == 0)
        return 0;
    int rc;
    if (t->model == TOK_MODEL_SPM)
        rc = tok_spm_encode(t, text, len, t->add_space_prefix && *prev_special, out, e);
    else if (t->model == TOK_MODEL_WPM)
        rc = tok_wpm_encode(t, text, len, out, e);
    else
        rc = tok_bpe_encode(t, text, len, out, e);
    *prev_special = false;
    return rc;
}

int tok_encode(const struct tokenizer *t, const char *text, size_t len, bool add_special, bool parse_special,
               struct tok_ids *out, struct err *e)
{
    return tok_encode_masked(t, text, len, add_special, parse_special, NULL, out, e);
}

int tok_encode_masked(const struct tokenizer *t, const char *text, size_t len, bool add_special,
                      bool parse_special, const uint8_t *raw_mask, struct tok_ids *out, struct err *e)
{
    size_t n0 = out->n;
    struct frag *frags = NULL;
    size_t n_frags = 0;
    if (len > INT32_MAX)
        return err_set(e, ERR_INVALID, "text of %zu bytes is too long to encode (at most %d)", len, INT32_MAX);
    if (add_special && tok_add_bos(t) && tok_ids_push(out, t->bos, e))
        goto fail;
    if (t->n_special && find_specials(t, text, len, parse_special, raw_mask, &frags, &n_frags, e))
        goto fail;
    bool prev_special = true; /* SPM: a space goes before text that starts the input or follows a special token */
    size_t pos = 0;
    for (size_t k = 0; k < n_frags; k++) {
        if (encode_raw(t, text + pos, frags[k].off - pos, &prev_special, out, e))
            goto fail;
        if (tok_ids_push(out, frags[k].id, e))
            goto fail;
        prev_special = true;
        pos = frags[k].off + frags[k].len;
    }
    if (encode_raw(t, text + pos, len - pos, &prev_special, out, e))
        goto fail;
    if (add_special && tok_add_eos(t) && tok_ids_push(out, t->eos, e))
        goto fail;
    free(frags);
    return 0;
fail:
    free(frags);
    out->n = n0;
    return -1;
}
