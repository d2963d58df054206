/*
 * vocab_train.c — learn a GPT-2-style byte-level BPE vocabulary from a text.
 *
 * The result is the standard "gpt2" vocabulary form that llama.cpp and
 * Hugging Face load: tokens 0..255 are the 256 bytes, written with GPT-2's
 * byte<->unicode mapping and in GPT-2's order (the printable bytes '!'..'~',
 * '¡'..'¬', '®'..'ÿ' first, then the others mapped to U+0100 and up); then
 * one token per learned merge; then <|endoftext|>, <|im_start|>, <|im_end|>
 * as control tokens.
 *
 * Training: the text is split into words with the GPT-2 pre-tokenizer
 * expression (PCRE2, Unicode properties), and identical words are counted
 * once with their frequency. Each step merges the most frequent adjacent pair
 * of symbols (ties: the pair of smaller token ids), which becomes a new token.
 * Pair counts live in an open-addressing table; a merge rewrites only the
 * words that contain the pair and moves their pair counts, so a step costs a
 * scan of the words and of the table, not a recount of the text.
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "cli/tools.h"

#include <pcre2.h>
#include <stdlib.h>
#include <string.h>

const char vocab_chatml_template[] =
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + "
    "'<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

static const char *const specials[3] = {"<|endoftext|>", "<|im_start|>", "<|im_end|>"};

/* GPT-2's pre-tokenizer expression. */
static const char gpt2_split[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

/* ---- a byte-string -> index table (words and token strings) ---- */
struct bytes {
    char *p; /* from malloc */
    uint32_t n;
};

struct strtab {
    uint32_t *slots; /* index + 1, 0 = empty; from malloc */
    uint32_t cap;    /* power of two */
    uint32_t n;
};

/* Finds (s, n) among items[]; returns its index or -1, and the slot. */
static int64_t strtab_find(const struct strtab *t, const struct bytes *items, const char *s, size_t n, uint32_t *slot)
{
    uint32_t i = hash_fnv1a32(s, n) & (t->cap - 1);
    for (;; i = (i + 1) & (t->cap - 1)) {
        uint32_t v = t->slots[i];
        if (!v) {
            *slot = i;
            return -1;
        }
        const struct bytes *b = &items[v - 1];
        if (b->n == n && !memcmp(b->p, s, n)) {
            *slot = i;
            return v - 1;
        }
    }
}

static int strtab_grow(struct strtab *t, const struct bytes *items)
{
    if (t->cap && (t->n + 1) * 2 <= t->cap)
        return 0;
    uint32_t cap = t->cap ? t->cap * 2 : 1024;
    uint32_t *slots = calloc(cap, sizeof *slots);
    if (!slots)
        return -1;
    for (uint32_t k = 0; k < t->cap; k++) {
        uint32_t v = t->slots[k];
        if (!v)
            continue;
        uint32_t i = hash_fnv1a32(items[v - 1].p, items[v - 1].n) & (cap - 1);
        while (slots[i])
            i = (i + 1) & (cap - 1);
        slots[i] = v;
    }
    free(t->slots);
    t->slots = slots;
    t->cap = cap;
    return 0;
}

/* ---- pair counts: (a, b) -> count, open addressing, never shrinks ---- */
struct pair_slot {
    uint64_t key; /* (a << 32 | b) + 1; 0 = empty */
    int64_t count;
};

struct pairtab {
    struct pair_slot *s; /* from malloc */
    uint64_t cap, n;
};

static int pair_add(struct pairtab *t, uint32_t a, uint32_t b, int64_t d)
{
    if ((t->n + 1) * 2 > t->cap) {
        uint64_t cap = t->cap ? t->cap * 2 : 4096;
        struct pair_slot *s = calloc(cap, sizeof *s);
        if (!s)
            return -1;
        for (uint64_t k = 0; k < t->cap; k++) {
            if (!t->s[k].key)
                continue;
            uint64_t i = hash_mix64(t->s[k].key) & (cap - 1);
            while (s[i].key)
                i = (i + 1) & (cap - 1);
            s[i] = t->s[k];
        }
        free(t->s);
        t->s = s;
        t->cap = cap;
    }
    uint64_t key = (((uint64_t)a << 32) | b) + 1;
    uint64_t i = hash_mix64(key) & (t->cap - 1);
    while (t->s[i].key && t->s[i].key != key)
        i = (i + 1) & (t->cap - 1);
    if (!t->s[i].key) {
        t->s[i].key = key;
        t->n++;
    }
    t->s[i].count += d;
    return 0;
}

/* ---- training state ---- */
struct word {
    uint32_t *sym; /* from malloc */
    uint32_t n;
    int64_t freq;
};

struct trainer {
    struct word *words; /* from malloc */
    size_t n_words, cap_words;
    struct bytes *wbytes; /* word texts while counting; from malloc */
    size_t cap_wbytes;
    struct strtab wtab;
    struct bytes *tok; /* raw bytes of each token; from malloc */
    uint32_t n_tok;
    size_t cap_tok;
    struct strtab ttab;
    struct pairtab pairs;
};

static int word_pairs(struct pairtab *p, const struct word *w, int64_t sign)
{
    for (uint32_t i = 0; i + 1 < w->n; i++)
        if (pair_add(p, w->sym[i], w->sym[i + 1], sign * w->freq) != 0)
            return -1;
    return 0;
}

static int add_word(struct trainer *tr, const unsigned char *s, size_t n, const uint32_t *byte_tok)
{
    if (n == 0)
        return 0;
    if (n > UINT32_MAX / 2)
        return -1;
    uint32_t slot;
    int64_t idx = tr->wtab.cap ? strtab_find(&tr->wtab, tr->wbytes, (const char *)s, n, &slot) : -1;
    if (idx >= 0) {
        tr->words[idx].freq++;
        return 0;
    }
    /* words and wbytes grow together: each keeps its own capacity */
    if (mem_grow(&tr->words, &tr->cap_words, tr->n_words + 1, sizeof *tr->words) != 0 ||
        mem_grow(&tr->wbytes, &tr->cap_wbytes, tr->n_words + 1, sizeof *tr->wbytes) != 0)
        return -1;
    if (strtab_grow(&tr->wtab, tr->wbytes) != 0)
        return -1;
    strtab_find(&tr->wtab, tr->wbytes, (const char *)s, n, &slot);
    struct word *w = &tr->words[tr->n_words];
    struct bytes *b = &tr->wbytes[tr->n_words];
    w->sym = malloc(n * sizeof *w->sym);
    b->p = malloc(n);
    if (!w->sym || !b->p) {
        free(w->sym);
        free(b->p);
        return -1;
    }
    memcpy(b->p, s, n);
    b->n = (uint32_t)n;
    for (size_t i = 0; i < n; i++)
        w->sym[i] = byte_tok[s[i]];
    w->n = (uint32_t)n;
    w->freq = 1;
    tr->n_words++;
    tr->wtab.slots[slot] = (uint32_t)tr->n_words;
    tr->wtab.n++;
    return 0;
}

/* Adds a token with raw bytes (s, n) unless one exists; its id in *id. */
static int add_token(struct trainer *tr, const char *s, uint32_t n, uint32_t *id)
{
    uint32_t slot;
    if (tr->ttab.cap) {
        int64_t idx = strtab_find(&tr->ttab, tr->tok, s, n, &slot);
        if (idx >= 0) {
            *id = (uint32_t)idx;
            return 0;
        }
    }
    if (mem_grow(&tr->tok, &tr->cap_tok, (size_t)tr->n_tok + 1, sizeof *tr->tok) != 0)
        return -1;
    if (strtab_grow(&tr->ttab, tr->tok) != 0)
        return -1;
    strtab_find(&tr->ttab, tr->tok, s, n, &slot);
    char *p = malloc(n ? n : 1);
    if (!p)
        return -1;
    memcpy(p, s, n);
    tr->tok[tr->n_tok] = (struct bytes){p, n};
    tr->ttab.slots[slot] = tr->n_tok + 1;
    tr->ttab.n++;
    *id = tr->n_tok++;
    return 0;
}

static void trainer_release(struct trainer *tr)
{
    for (size_t i = 0; i < tr->n_words; i++) {
        free(tr->words[i].sym);
        free(tr->wbytes[i].p);
    }
    free(tr->words);
    free(tr->wbytes);
    free(tr->wtab.slots);
    for (uint32_t i = 0; i < tr->n_tok; i++)
        free(tr->tok[i].p);
    free(tr->tok);
    free(tr->ttab.slots);
    free(tr->pairs.s);
}

/* GPT-2's byte order and byte -> code point mapping. */
static void gpt2_bytes(uint8_t order[256], uint32_t cp[256])
{
    int n = 0, extra = 0;
    bool printable[256] = {false};
    for (int b = 0; b < 256; b++)
        printable[b] = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    for (int b = 0; b < 256; b++)
        if (printable[b]) {
            order[n++] = (uint8_t)b;
            cp[b] = (uint32_t)b;
        }
    for (int b = 0; b < 256; b++)
        if (!printable[b]) {
            order[n++] = (uint8_t)b;
            cp[b] = 256u + (uint32_t)extra++;
        }
}

/* Raw bytes -> the GPT-2 unicode form, as a malloc'd string. */
static int to_unicode(const struct bytes *raw, const uint32_t cp[256], struct gguf_str *out)
{
    char *s = malloc((size_t)raw->n * 2 + 1);
    if (!s)
        return -1;
    size_t k = 0;
    for (uint32_t i = 0; i < raw->n; i++) {
        uint32_t c = cp[(unsigned char)raw->p[i]];
        if (c < 0x80) {
            s[k++] = (char)c;
        } else {
            s[k++] = (char)(0xC0 | (c >> 6));
            s[k++] = (char)(0x80 | (c & 0x3F));
        }
    }
    s[k] = 0;
    out->ptr = s;
    out->len = k;
    return 0;
}

static int split_words(struct trainer *tr, const char *text, size_t len, const uint32_t *byte_tok, struct err *e)
{
    int errc;
    PCRE2_SIZE erroff;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)gpt2_split, PCRE2_ZERO_TERMINATED,
                                   PCRE2_UTF | PCRE2_UCP, &errc, &erroff, NULL);
    if (!re)
        return err_set(e, ERR_INVALID, "cannot compile the GPT-2 split expression (PCRE2 error %d)", errc);
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
    int rc = 0;
    if (!md) {
        rc = err_set(e, ERR_NOMEM, "out of memory");
        goto out;
    }
    /* The first match checks that the whole text is UTF-8; later ones skip
     * that check (it would make the split quadratic in the text length). */
    size_t off = 0;
    uint32_t flags = 0;
    while (off < len) {
        int m = pcre2_match(re, (PCRE2_SPTR)text, len, off, flags, md, NULL);
        flags = PCRE2_NO_UTF_CHECK;
        size_t s = len, t = len;
        if (m >= 0) {
            PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
            s = ov[0];
            t = ov[1];
        } else if (m <= PCRE2_ERROR_UTF8_ERR1 && m >= PCRE2_ERROR_UTF8_ERR21) {
            rc = err_set(e, ERR_INVALID, "the text is not valid UTF-8 at byte %zu", (size_t)pcre2_get_startchar(md));
            goto out;
        } else if (m != PCRE2_ERROR_NOMATCH) {
            rc = err_set(e, ERR_INVALID, "splitting the text failed at byte %zu (PCRE2 error %d)", off, m);
            goto out;
        }
        if (t == s && s < len)
            t = s + 1; /* the expression never matches empty; be safe anyway */
        /* Text the expression does not cover (none for valid UTF-8) is a word of its own. */
        if ((s > off && add_word(tr, (const unsigned char *)text + off, s - off, byte_tok) != 0) ||
            (t > s && add_word(tr, (const unsigned char *)text + s, t - s, byte_tok) != 0)) {
            rc = err_set(e, ERR_NOMEM, "out of memory");
            goto out;
        }
        off = t;
    }
out:
    pcre2_match_data_free(md);
    pcre2_code_free(re);
    return rc;
}

/* Replaces every (a, b) in w by c, left to right. Returns whether it changed. */
static bool merge_word(struct word *w, uint32_t a, uint32_t b, uint32_t c)
{
    uint32_t j = 0;
    bool changed = false;
    for (uint32_t i = 0; i < w->n; i++) {
        if (i + 1 < w->n && w->sym[i] == a && w->sym[i + 1] == b) {
            w->sym[j++] = c;
            i++;
            changed = true;
        } else {
            w->sym[j++] = w->sym[i];
        }
    }
    w->n = j;
    return changed;
}

static bool word_has(const struct word *w, uint32_t a, uint32_t b)
{
    for (uint32_t i = 0; i + 1 < w->n; i++)
        if (w->sym[i] == a && w->sym[i + 1] == b)
            return true;
    return false;
}

/* The most frequent pair (lowest key on ties) as key + 1, or 0 when no pair
 * is left: every word is a single token. */
static uint64_t best_pair(const struct trainer *tr)
{
    int64_t best = 0;
    uint64_t best_key = 0;
    for (uint64_t k = 0; k < tr->pairs.cap; k++) {
        const struct pair_slot *s = &tr->pairs.s[k];
        if (s->key && s->count > 0 && (s->count > best || (s->count == best && s->key < best_key))) {
            best = s->count;
            best_key = s->key;
        }
    }
    return best ? best_key : 0;
}

/* Learns merges until the trainer has target tokens or nothing is left to
 * merge: *mrg (from malloc) gets them as (a, b) token pairs, in order. */
static int learn_merges(struct trainer *tr, uint32_t target, uint32_t (**mrg)[2], uint32_t *n_merge)
{
    char *buf = NULL;
    size_t cap_buf = 0, cap_merge = 0;
    int rc = -1;
    while (tr->n_tok < target) {
        uint64_t key = best_pair(tr);
        if (key == 0)
            break;
        uint32_t a = (uint32_t)((key - 1) >> 32), b = (uint32_t)(key - 1);
        size_t n = (size_t)tr->tok[a].n + tr->tok[b].n;
        if (mem_grow(&buf, &cap_buf, n, 1) != 0)
            goto out;
        memcpy(buf, tr->tok[a].p, tr->tok[a].n);
        memcpy(buf + tr->tok[a].n, tr->tok[b].p, tr->tok[b].n);
        uint32_t c;
        if (add_token(tr, buf, (uint32_t)n, &c) != 0)
            goto out;
        if (mem_grow(mrg, &cap_merge, (size_t)*n_merge + 1, sizeof **mrg) != 0)
            goto out;
        (*mrg)[*n_merge][0] = a;
        (*mrg)[*n_merge][1] = b;
        (*n_merge)++;
        for (size_t i = 0; i < tr->n_words; i++) {
            struct word *w = &tr->words[i];
            if (!word_has(w, a, b))
                continue;
            if (word_pairs(&tr->pairs, w, -1) != 0)
                goto out;
            merge_word(w, a, b, c);
            if (word_pairs(&tr->pairs, w, 1) != 0)
                goto out;
        }
    }
    rc = 0;
out:
    free(buf);
    return rc;
}

/* The trained vocabulary in GGUF form into v (released by the caller on
 * failure): tokens as GPT-2 unicode, the three specials, merges as text. */
static int build_vocab(const struct trainer *tr, const uint32_t *cp, uint32_t (*mrg)[2], uint32_t n_merge,
                       struct vocab *v)
{
    v->n_tokens = tr->n_tok + 3;
    v->n_merges = n_merge;
    v->tokens = calloc(v->n_tokens, sizeof *v->tokens);
    v->token_type = calloc(v->n_tokens, sizeof *v->token_type);
    v->merges = calloc(n_merge ? n_merge : 1, sizeof *v->merges);
    if (!v->tokens || !v->token_type || !v->merges)
        return -1;
    for (uint32_t i = 0; i < tr->n_tok; i++) {
        if (to_unicode(&tr->tok[i], cp, &v->tokens[i]) != 0)
            return -1;
        v->token_type[i] = 1; /* normal */
    }
    for (int i = 0; i < 3; i++) {
        char *s = strdup(specials[i]);
        if (!s)
            return -1;
        v->tokens[tr->n_tok + i] = (struct gguf_str){s, strlen(s)};
        v->token_type[tr->n_tok + i] = 3; /* control */
    }
    for (uint32_t i = 0; i < n_merge; i++) {
        const struct gguf_str *l = &v->tokens[mrg[i][0]], *r = &v->tokens[mrg[i][1]];
        char *s = malloc(l->len + r->len + 2);
        if (!s)
            return -1;
        memcpy(s, l->ptr, l->len);
        s[l->len] = ' ';
        memcpy(s + l->len + 1, r->ptr, r->len);
        s[l->len + 1 + r->len] = 0;
        v->merges[i] = (struct gguf_str){s, l->len + 1 + r->len};
    }
    v->bos_id = tr->n_tok;     /* <|endoftext|> */
    v->eos_id = tr->n_tok + 2; /* <|im_end|>, as ChatML models end a turn */
    v->pad_id = tr->n_tok;
    return 0;
}

int vocab_train(const char *text, size_t len, uint32_t n_vocab, struct vocab *out, struct err *e)
{
    if (n_vocab < 256 + 3)
        return err_set(e, ERR_INVALID, "vocabulary size %u is too small: it needs at least 259 tokens (256 bytes and 3 "
                          "special tokens)", n_vocab);
    struct trainer tr;
    memset(&tr, 0, sizeof tr);
    struct vocab v;
    memset(&v, 0, sizeof v);
    uint8_t order[256];
    uint32_t cp[256], byte_tok[256];
    uint32_t(*mrg)[2] = NULL;
    uint32_t n_merge = 0;
    int rc = -1;
    gpt2_bytes(order, cp);
    for (int i = 0; i < 256; i++) {
        char c = (char)order[i];
        if (add_token(&tr, &c, 1, &byte_tok[order[i]]) != 0)
            goto oom;
    }
    if (split_words(&tr, text, len, byte_tok, e) != 0)
        goto out;
    for (size_t i = 0; i < tr.n_words; i++)
        if (word_pairs(&tr.pairs, &tr.words[i], 1) != 0)
            goto oom;
    if (learn_merges(&tr, n_vocab - 3, &mrg, &n_merge) != 0 || build_vocab(&tr, cp, mrg, n_merge, &v) != 0)
        goto oom;
    *out = v;
    memset(&v, 0, sizeof v);
    rc = 0;
    goto out;

oom:
    err_set(e, ERR_NOMEM, "out of memory training the vocabulary");
out:
    free(mrg);
    vocab_release(&v);
    trainer_release(&tr);
    return rc;
}

void vocab_release(struct vocab *v)
{
    if (v->tokens)
        for (uint64_t i = 0; i < v->n_tokens; i++)
            free((void *)v->tokens[i].ptr);
    if (v->merges)
        for (uint64_t i = 0; i < v->n_merges; i++)
            free((void *)v->merges[i].ptr);
    free(v->tokens);
    free(v->token_type);
    free(v->merges);
    memset(v, 0, sizeof *v);
}
