/*
 * spm.c — SentencePiece-style BPE (tokenizer.ggml.model = "llama").
 *
 * The text (with a leading space when asked, every space written as U+2581
 * "▁") starts as one symbol per UTF-8 character (a byte that does not begin
 * a complete sequence is a symbol of its own). Every adjacent pair whose
 * concatenation is a token is a candidate; the candidate of highest token
 * score (leftmost on ties) is merged, and the new neighbours become
 * candidates, until none is left — llama.cpp's SPM tokenizer, which matches
 * SentencePiece's BPE mode. Symbols that are not tokens at the end fall back
 * to their bytes (<0xNN>), or to the unknown token when the vocabulary has no
 * byte tokens.
 */
#include "tokenizer/tok_int.h"

#include <string.h>

struct ssym {
    uint32_t off, n; /* bytes of the escaped text; n = 0 once merged away */
    int32_t prev, next;
    int32_t id;      /* token of the text, -1 if it is none */
};

struct scand {
    float score;
    int32_t left, right;
    uint32_t size;
    int32_t id;      /* token of the merged text */
};

struct spm_ctx {
    struct ssym *s;
    struct scand *heap;
    size_t heap_n, heap_cap;
};

static bool scand_before(const struct scand *x, const struct scand *y)
{
    return x->score > y->score || (x->score == y->score && x->left < y->left);
}

TOK_HEAP_DEFINE(heap, struct spm_ctx, struct scand, scand_before)

static int try_pair(const struct tokenizer *t, struct spm_ctx *c, const char *text, int32_t left, int32_t right)
{
    if (left < 0 || right < 0)
        return 0;
    uint32_t size = c->s[left].n + c->s[right].n;
    int32_t id;
    if (c->s[left].id >= 0 && c->s[right].id >= 0) {
        /* both are tokens: the pair table has every token made of two */
        const struct tok_merge *m = tok_merge_find(t, c->s[left].id, c->s[right].id);
        id = m ? m->res : -1;
    } else {
        id = tok_lookup(t, text + c->s[left].off, size);
    }
    if (id < 0)
        return 0;
    return heap_push(c, (struct scand){t->scores[id], left, right, size, id});
}

static bool is_space_sym(const struct spm_ctx *c, const char *text, size_t i)
{
    return c->s[i].n == 3 && !memcmp(text + c->s[i].off, "\xE2\x96\x81", 3);
}

int tok_spm_encode(const struct tokenizer *t, const char *text, size_t len, bool add_prefix, struct tok_ids *out,
                   struct err *e)
{
    int rc = -1;
    struct sbuf esc = SBUF_INIT;
    struct spm_ctx c = {0};
    if (len == 0)
        return 0; /* the prefix space is only ever put before some text */
    if (sbuf_grow(&esc, len + 3) || (add_prefix && sbuf_add(&esc, "\xE2\x96\x81", 3)))
        goto oom;
    for (size_t i = 0; i < len;) {
        const char *sp = memchr(text + i, ' ', len - i);
        size_t run = sp ? (size_t)(sp - (text + i)) : len - i;
        if (sbuf_add(&esc, text + i, run))
            goto oom;
        i += run;
        if (sp) {
            if (sbuf_add(&esc, "\xE2\x96\x81", 3))
                goto oom;
            i++;
        }
    }
    if (esc.len > INT32_MAX)
        goto oom;

    /* one symbol per character */
    size_t nsym = 0;
    c.s = malloc(esc.len * sizeof *c.s);
    if (!c.s)
        goto oom;
    for (size_t off = 0; off < esc.len;) {
        size_t l = tok_utf8_len((uint8_t)esc.buf[off]);
        if (l > esc.len - off)
            l = esc.len - off;
        /* A lead byte not followed by its continuation bytes stands alone, so
         * that invalid UTF-8 never swallows the next character (llama.cpp
         * would take the following bytes with it and lose a space). */
        for (size_t k = 1; k < l; k++)
            if (((uint8_t)esc.buf[off + k] & 0xC0) != 0x80) {
                l = 1;
                break;
            }
        c.s[nsym++] = (struct ssym){(uint32_t)off, (uint32_t)l, -1, -1, tok_lookup(t, esc.buf + off, l)};
        off += l;
    }
    /* Segments: when no token has "▁" after another character, no merge can
     * cross the start of a "▁" run, so each word is merged on its own — the
     * same result as one queue over the whole text, with a small heap. */
    for (size_t a = 0; a < nsym;) {
        size_t b = a + 1;
        if (t->spm_split_words)
            while (b < nsym && !(is_space_sym(&c, esc.buf, b) && !is_space_sym(&c, esc.buf, b - 1)))
                b++;
        else
            b = nsym;
        for (size_t i = a; i < b; i++) {
            c.s[i].prev = i > a ? (int32_t)i - 1 : -1;
            c.s[i].next = i + 1 < b ? (int32_t)i + 1 : -1;
        }
        c.heap_n = 0;
        for (size_t i = a + 1; i < b; i++)
            if (try_pair(t, &c, esc.buf, (int32_t)i - 1, (int32_t)i))
                goto oom;
        while (c.heap_n) {
            struct scand bg = heap_pop(&c);
            struct ssym *L = &c.s[bg.left], *R = &c.s[bg.right];
            if (!L->n || !R->n || L->n + R->n != bg.size)
                continue; /* one side was merged since this candidate was made */
            L->n += R->n;
            L->id = bg.id;
            R->n = 0;
            L->next = R->next;
            if (R->next >= 0)
                c.s[R->next].prev = bg.left;
            if (try_pair(t, &c, esc.buf, L->prev, bg.left) || try_pair(t, &c, esc.buf, bg.left, L->next))
                goto oom;
        }
        for (int32_t i = (int32_t)a; i >= 0; i = c.s[i].next) {
            const struct ssym *sy = &c.s[i];
            if (sy->id >= 0) {
                if (tok_ids_push(out, sy->id, e))
                    goto out;
                continue;
            }
            for (uint32_t j = 0; j < sy->n; j++) {
                int32_t bt = t->byte_tok[(uint8_t)esc.buf[sy->off + j]];
                if (bt < 0)
                    bt = t->unk;
                if (bt >= 0 && tok_ids_push(out, bt, e))
                    goto out;
                if (t->byte_tok[(uint8_t)esc.buf[sy->off + j]] < 0)
                    break; /* no byte tokens: one unknown token stands for the character */
            }
        }
        a = b;
    }
    rc = 0;
    goto out;
oom:
    err_set(e, ERR_NOMEM, "out of memory encoding %zu bytes", len);
out:
    sbuf_release(&esc);
    free(c.s);
    free(c.heap);
    return rc;
}
