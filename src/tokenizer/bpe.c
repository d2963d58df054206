/*
 * bpe.c — byte-level BPE (tokenizer.ggml.model = "gpt2").
 *
 * 1. Pre-tokenization: the expressions chosen by tokenizer.ggml.pre are
 *    applied in order, each one to every piece the previous ones produced;
 *    both the matches and the text between matches become pieces (the
 *    semantics of llama.cpp's unicode_regex_split, whose expression lists are
 *    the source of the table below). Each piece is its own subject, so
 *    look-arounds and `$` never see past it. PCRE2 runs with UTF and Unicode
 *    properties; PCRE2_MATCH_INVALID_UTF lets invalid UTF-8 through: such
 *    bytes match nothing and end up in pieces of their own, encoded byte by
 *    byte, so no input is lost.
 * 2. Each piece ("word") starts as one symbol per byte (the token of the
 *    byte's GPT-2 character) and merges the adjacent pair of lowest merge
 *    rank, leftmost first, until no pair has a rank — a heap of candidate
 *    pairs whose entries are checked for staleness when popped.
 */
#include "tokenizer/tok_int.h"

#include <string.h>

/* ---- pre-tokenizer expressions ---- */

#define RE_GPT2 "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)"
#define RE_LLAMA3                                                                                              \
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "       \
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define RE_QWEN2                                                                                               \
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "           \
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define RE_CJK "[\xE4\xB8\x80-\xE9\xBE\xA5\xE0\xA0\x80-\xE4\xB8\x80\xEA\xB0\x80-\xED\x9F\xBF]+" /* [一-龥ࠀ-一가-퟿]+ */
#define RE_BLOOM " ?[^(\\s|.,!?\xE2\x80\xA6\xE3\x80\x82\xEF\xBC\x8C\xE3\x80\x81\xE0\xA5\xA4\xDB\x94\xD8\x8C)]+"

/* DeepSeek LLM's letter class, copied as data from its tokenizer.json (via llama.cpp). */
#define RE_DEEPSEEK_LETTERS                                                                                    \
    "\\s?[A-Za-z\xC2\xB5\xC3\x80-\xC3\x96\xC3\x98-\xC3\xB6\xC3\xB8-\xC6\xBA\xC6\xBC-\xC6\xBF\xC7\x84-\xCA\x93"  \
    "\xCA\x95-\xCA\xAF\xCD\xB0-\xCD\xB3\xCD\xB6\xCD\xB7\xCD\xBB-\xCD\xBD\xCD\xBF\xCE\x86\xCE\x88-\xCE\x8A"     \
    "\xCE\x8C\xCE\x8E-\xCE\xA1\xCE\xA3-\xCF\xB5\xCF\xB7-\xD2\x81\xD2\x8A-\xD4\xAF\xD4\xB1-\xD5\x96"            \
    "\xE1\x82\xA0-\xE1\x83\x85\xE1\x8E\xA0-\xE1\x8F\xB5\xE1\x8F\xB8-\xE1\x8F\xBD\xE1\xB2\x90-\xE1\xB2\xBA"     \
    "\xE1\xB2\xBD-\xE1\xB2\xBF\xE1\xB4\x80-\xE1\xB4\xAB\xE1\xB5\xAB-\xE1\xB5\xB7\xE1\xB5\xB9-\xE1\xB6\x9A"     \
    "\xE1\xB8\x80-\xE1\xBC\x95\xE1\xBC\x98-\xE1\xBC\x9D\xE1\xBC\xA0-\xE1\xBD\x85\xE1\xBD\x88-\xE1\xBD\x8D"     \
    "\xE1\xBD\x90-\xE1\xBD\x97\xE1\xBD\x99\xE1\xBD\x9B\xE1\xBD\x9D\xE1\xBD\x9F-\xE1\xBD\xBD"                   \
    "\xE1\xBE\x80-\xE1\xBE\xB4\xE1\xBE\xB6-\xE1\xBE\xBC\xE1\xBE\xBE\xE1\xBF\x82-\xE1\xBF\x84"                  \
    "\xE1\xBF\x86-\xE1\xBF\x8C\xE1\xBF\x90-\xE1\xBF\x93\xE1\xBF\x96-\xE1\xBF\x9B\xE1\xBF\xA0-\xE1\xBF\xAC"     \
    "\xE1\xBF\xB2-\xE1\xBF\xB4\xE1\xBF\xB6-\xE1\xBF\xBC\xE2\x84\x82\xE2\x84\x87\xE2\x84\x8A-\xE2\x84\x93"      \
    "\xE2\x84\x95\xE2\x84\x99-\xE2\x84\x9D\xE2\x84\xA4\xE2\x84\xA6\xE2\x84\xA8\xE2\x84\xAA-\xE2\x84\xAD"       \
    "\xE2\x84\xAF-\xE2\x84\xB4\xE2\x84\xB9\xE2\x84\xBC-\xE2\x84\xBF\xE2\x85\x85-\xE2\x85\x89\xE2\x85\x8E"      \
    "\xE2\x86\x83\xE2\x86\x84\xE2\xB0\x80-\xE2\xB1\xBB\xE2\xB1\xBE-\xE2\xB3\xA4\xE2\xB3\xAB-\xE2\xB3\xAE"      \
    "\xE2\xB3\xB2\xE2\xB3\xB3\xEA\x99\x80-\xEA\x99\xAD\xEA\x9A\x80-\xEA\x9A\x9B\xEA\x9C\xA2-\xEA\x9D\xAF"      \
    "\xEA\x9D\xB1-\xEA\x9E\x87\xEA\x9E\x8B-\xEA\x9E\x8E\xEA\xAD\xB0-\xEA\xAE\xBF\xEF\xAC\x80-\xEF\xAC\x86"     \
    "\xEF\xAC\x93-\xEF\xAC\x97\xEF\xBC\xA1-\xEF\xBC\xBA\xEF\xBD\x81-\xEF\xBD\x9A"                              \
    "\xF0\x90\x90\x80-\xF0\x90\x91\x8F\xF0\x90\x92\xB0-\xF0\x90\x93\x93\xF0\x90\x93\x98-\xF0\x90\x93\xBB"      \
    "\xF0\x90\xB2\x80-\xF0\x90\xB2\xB2\xF0\x90\xB3\x80-\xF0\x90\xB3\xB2\xF0\x91\xA2\xA0-\xF0\x91\xA3\x9F"      \
    "\xF0\x9E\xA4\x80-\xF0\x9E\xA5\x83]+"

struct pre_def {
    const char *names; /* space-separated tokenizer.ggml.pre values */
    bool ignore_merges, add_bos;
    const char *re[TOK_MAX_RE];
};

static const struct pre_def pre_defs[] = {
    {"default", false, false, {"[\\p{P}\\$\\+<=>\\^~\\|]+", RE_GPT2, "\\p{N}+", "[0-9][0-9][0-9]"}},
    {"gpt-2 phi-2 mpt olmo jais roberta-bpe jina-es jina-de gigachat jina-v1-en jina-v2-es jina-v2-de "
     "jina-v2-code",
     false, false, {RE_GPT2}},
    {"llama3 llama-v3 llama-bpe falcon3", true, true, {RE_LLAMA3}},
    {"dbrx smaug-bpe chatglm-bpe", false, false, {RE_LLAMA3}},
    {"qwen2 stablelm2 megrez deepseek-r1-qwen kormo f2llmv2 hunyuan grok-2", false, false, {RE_QWEN2}},
    {"gpt-4o minimax-m2", false, false,
     {"[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+(?i:'s|'t|'re|'ve|'m|'"
      "ll|'d)?|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*(?i:'s|'t|'re|'"
      "ve|'m|'ll|'d)?|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}},
    {"seed-coder", false, false,
     {"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1}| "
      "?[^\\s\\p{L}\\p{N}\\r\\n]+|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}},
    {"deepseek-llm", false, false,
     {"[\r\n]", RE_DEEPSEEK_LETTERS,
      "\\s?[!-/:-~\xEF\xBC\x81-\xEF\xBC\x8F\xEF\xBC\x9A-\xEF\xBD\x9E\xE2\x80\x98-\xE2\x80\x9F\xE3\x80\x80-\xE3\x80\x82]+",
      "\\s+$", RE_CJK, "\\p{N}+"}},
    {"deepseek-coder", false, false, {"[\r\n]", "\\s?\\p{L}+", "\\s?\\p{P}+", RE_CJK, "\\p{N}"}},
    {"deepseek-v3", false, false,
     {"\\p{N}{1,3}",
      "[\xE4\xB8\x80-\xE9\xBE\xA5\xE3\x81\x80-\xE3\x82\x9F\xE3\x82\xA0-\xE3\x83\xBF]+", /* [一-龥぀-ゟ゠-ヿ]+ */
      "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| "
      "?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+"}},
    {"falcon", false, false, {"[\\p{P}\\$\\+<=>\\^~\\|`]+", RE_GPT2, "[0-9][0-9][0-9]"}},
    {"starcoder refact command-r smollm codeshell exaone minerva-7b", false, false, {"\\p{N}", RE_GPT2}},
    {"poro-chat bloom gpt3-finnish", false, false, {RE_BLOOM}},
    {"viking", false, false, {RE_BLOOM, "\\p{N}"}},
    {"tekken", true, true,
     {"[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+|[^\\r\\n\\p{L}\\p{"
      "N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*|\\p{N}| "
      "?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}},
};

static bool name_in_list(const char *list, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = list; *p;) {
        const char *sp = strchr(p, ' ');
        size_t l = sp ? (size_t)(sp - p) : strlen(p);
        if (l == n && !memcmp(p, name, n))
            return true;
        p += l;
        while (*p == ' ')
            p++;
    }
    return false;
}

int tok_bpe_init_pre(struct tokenizer *t, struct err *e)
{
    const struct pre_def *d = NULL;
    for (size_t i = 0; i < sizeof pre_defs / sizeof *pre_defs && !d; i++)
        if (name_in_list(pre_defs[i].names, t->pre))
            d = &pre_defs[i];
    if (!d)
        return err_set(e, ERR_INVALID, "unknown pre-tokenizer '%s' (tokenizer.ggml.pre); supported: default, gpt-2, llama3 "
                          "(llama-bpe), qwen2, deepseek-llm, deepseek-coder, deepseek-v3, falcon, starcoder, refact, "
                          "mpt, command-r, chatglm-bpe, smollm, dbrx, olmo, tekken, gpt-4o, seed-coder, bloom and aliases",
                       t->pre);
    t->ignore_merges = d->ignore_merges;
    if (d->add_bos)
        t->add_bos = true;
    for (int i = 0; i < TOK_MAX_RE && d->re[i]; i++) {
        int ec;
        PCRE2_SIZE eo;
        pcre2_code *re = pcre2_compile((PCRE2_SPTR)d->re[i], PCRE2_ZERO_TERMINATED,
                                       PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF | PCRE2_DOLLAR_ENDONLY, &ec,
                                       &eo, NULL);
        if (!re) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(ec, msg, sizeof msg);
            return err_set(e, ERR_INVALID, "pre-tokenizer '%s': expression %d does not compile at offset %zu: %s", t->pre, i,
                           (size_t)eo, (const char *)msg);
        }
        pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* falls back to the interpreter if JIT is unavailable */
        t->re[t->n_re++] = re;
    }
    return 0;
}

/* ---- splitting ---- */

struct span {
    uint32_t off, len;
};

struct spans {
    struct span *v;
    size_t n, cap;
};

static int spans_push(struct spans *s, uint32_t off, uint32_t len)
{
    if (mem_grow(&s->v, &s->cap, s->n + 1, sizeof *s->v) < 0)
        return -1;
    s->v[s->n++] = (struct span){off, len};
    return 0;
}

/* Per-call state; nothing is shared between threads. */
struct bpe_ctx {
    const struct tokenizer *t;
    pcre2_match_data *md;
    pcre2_match_context *mctx;
    pcre2_jit_stack *jstack;
    struct spans a, b;
    /* word merging */
    struct sym {
        int32_t id, prev, next;
        uint32_t len;
    } *syms;
    size_t syms_cap;
    struct cand {
        uint32_t rank;
        int32_t left, right;
        int32_t lid, rid, res;
    } *heap;
    size_t heap_n, heap_cap;
    struct sbuf word; /* byte-encoded word for ignore_merges */
};

static int split_one(struct bpe_ctx *c, pcre2_code *re, const char *text, struct span sp, struct spans *out,
                     struct err *e)
{
    const char *subj = text + sp.off;
    size_t start = 0, prev = 0;
    while (start < sp.len) {
        int rc = pcre2_match(re, (PCRE2_SPTR)subj, sp.len, start, 0, c->md, c->mctx);
        if (rc == PCRE2_ERROR_NOMATCH)
            break;
        if (rc < 0) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(rc, msg, sizeof msg);
            return err_set(e, ERR_INVALID, "pre-tokenizer '%s': matching at byte %zu failed: %s", c->t->pre, sp.off + start,
                           (const char *)msg);
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(c->md);
        size_t ms = ov[0], me = ov[1];
        if (me <= ms) { /* empty match: step over one character */
            start = ms + 1;
            while (start < sp.len && ((uint8_t)subj[start] & 0xC0) == 0x80)
                start++;
            continue;
        }
        if (ms > prev && spans_push(out, sp.off + (uint32_t)prev, (uint32_t)(ms - prev)))
            return err_set(e, ERR_NOMEM, "out of memory");
        if (spans_push(out, sp.off + (uint32_t)ms, (uint32_t)(me - ms)))
            return err_set(e, ERR_NOMEM, "out of memory");
        prev = start = me;
    }
    if (prev < sp.len && spans_push(out, sp.off + (uint32_t)prev, (uint32_t)(sp.len - prev)))
        return err_set(e, ERR_NOMEM, "out of memory");
    return 0;
}

/* ---- merging ---- */

static bool cand_less(const struct cand *x, const struct cand *y)
{
    return x->rank < y->rank || (x->rank == y->rank && x->left < y->left);
}

TOK_HEAP_DEFINE(heap, struct bpe_ctx, struct cand, cand_less)

static inline bool merge_find(const struct tokenizer *t, int32_t l, int32_t r, uint32_t *rank, int32_t *res)
{
    const struct tok_merge *m = tok_merge_find(t, l, r);
    if (!m)
        return false;
    *rank = m->rank;
    *res = m->res;
    return true;
}

/* Rank of merging a and b (UINT32_MAX: no merge). */
static inline uint32_t pair_rank(const struct tokenizer *t, int32_t a, int32_t b, int32_t *res)
{
    uint32_t rank;
    if (a < 0 || b < 0 || !merge_find(t, a, b, &rank, res))
        return UINT32_MAX;
    return rank;
}

/* Words of up to SMALL_WORD bytes: an array of symbols and the rank of each
 * adjacent pair; each step merges the pair of lowest rank (leftmost on ties,
 * the same choice as the heap) and looks up only the two new pairs. */
#define SMALL_WORD 64

static int encode_small(const struct tokenizer *t, const char *w, size_t n, struct tok_ids *out, struct err *e)
{
    int32_t ids[SMALL_WORD], res[SMALL_WORD];
    uint32_t rank[SMALL_WORD];
    size_t m = n;
    for (size_t i = 0; i < n; i++)
        ids[i] = t->byte_tok[(uint8_t)w[i]];
    for (size_t i = 0; i + 1 < n; i++)
        rank[i] = pair_rank(t, ids[i], ids[i + 1], &res[i]);
    while (m > 1) {
        size_t best = 0;
        for (size_t i = 1; i + 1 < m; i++)
            if (rank[i] < rank[best])
                best = i;
        if (rank[best] == UINT32_MAX)
            break;
        ids[best] = res[best];
        /* drop symbol best+1 and the pair (best+1, best+2) */
        for (size_t i = best + 1; i + 1 < m; i++) {
            ids[i] = ids[i + 1];
            if (i + 1 < m - 1) {
                rank[i] = rank[i + 1];
                res[i] = res[i + 1];
            }
        }
        m--;
        if (best > 0)
            rank[best - 1] = pair_rank(t, ids[best - 1], ids[best], &res[best - 1]);
        if (best + 1 < m)
            rank[best] = pair_rank(t, ids[best], ids[best + 1], &res[best]);
    }
    for (size_t i = 0; i < m; i++)
        if (ids[i] >= 0 && tok_ids_push(out, ids[i], e)) /* a byte whose character is not a token is dropped, as in llama.cpp */
            return -1;
    return 0;
}

static int try_pair(struct bpe_ctx *c, int32_t left, int32_t right)
{
    if (left < 0 || right < 0)
        return 0;
    int32_t l = c->syms[left].id, r = c->syms[right].id, res;
    uint32_t rank;
    if (l < 0 || r < 0 || !merge_find(c->t, l, r, &rank, &res))
        return 0;
    return heap_push(c, (struct cand){rank, left, right, l, r, res});
}

static int encode_word(struct bpe_ctx *c, const char *w, size_t n, struct tok_ids *out, struct err *e)
{
    const struct tokenizer *t = c->t;
    if (n == 1) {
        int32_t id = t->byte_tok[(uint8_t)w[0]];
        return id >= 0 ? tok_ids_push(out, id, e) : 0;
    }
    if (t->ignore_merges) {
        sbuf_reset(&c->word);
        for (size_t i = 0; i < n; i++) {
            char u[4];
            size_t l = tok_utf8_put(u, tok_byte_to_cp((uint8_t)w[i]));
            if (sbuf_add(&c->word, u, l))
                return err_set(e, ERR_NOMEM, "out of memory");
        }
        int32_t id = tok_lookup(t, c->word.buf, c->word.len);
        if (id >= 0)
            return tok_ids_push(out, id, e);
    }
    if (n <= SMALL_WORD)
        return encode_small(t, w, n, out, e);
    if (mem_grow(&c->syms, &c->syms_cap, n, sizeof *c->syms) < 0)
        return err_set(e, ERR_NOMEM, "out of memory (word of %zu bytes)", n);
    struct sym *s = c->syms;
    for (size_t i = 0; i < n; i++)
        s[i] = (struct sym){t->byte_tok[(uint8_t)w[i]], (int32_t)i - 1, i + 1 < n ? (int32_t)i + 1 : -1, 1};
    c->heap_n = 0;
    for (size_t i = 1; i < n; i++)
        if (try_pair(c, (int32_t)i - 1, (int32_t)i))
            return err_set(e, ERR_NOMEM, "out of memory");
    while (c->heap_n) {
        struct cand b = heap_pop(c);
        struct sym *L = &s[b.left], *R = &s[b.right];
        if (!L->len || !R->len || L->next != b.right || L->id != b.lid || R->id != b.rid)
            continue; /* stale */
        L->id = b.res;
        L->len += R->len;
        R->len = 0;
        L->next = R->next;
        if (R->next >= 0)
            s[R->next].prev = b.left;
        if (try_pair(c, L->prev, b.left) || try_pair(c, b.left, L->next))
            return err_set(e, ERR_NOMEM, "out of memory");
    }
    for (int32_t i = 0; i >= 0; i = s[i].next)
        if (s[i].id >= 0 && tok_ids_push(out, s[i].id, e)) /* a byte whose character is not a token is dropped, as in llama.cpp */
            return -1;
    return 0;
}

int tok_bpe_encode(const struct tokenizer *t, const char *text, size_t len, struct tok_ids *out, struct err *e)
{
    if (len == 0)
        return 0;
    int rc = -1;
    struct bpe_ctx c = {.t = t};
    c.md = pcre2_match_data_create(4, NULL);
    c.mctx = pcre2_match_context_create(NULL);
    c.jstack = pcre2_jit_stack_create(32 * 1024, 8 * 1024 * 1024, NULL);
    if (!c.md || !c.mctx || !c.jstack) {
        err_set(e, ERR_NOMEM, "out of memory");
        goto out;
    }
    pcre2_jit_stack_assign(c.mctx, NULL, c.jstack);
    if (spans_push(&c.a, 0, (uint32_t)len)) {
        err_set(e, ERR_NOMEM, "out of memory");
        goto out;
    }
    for (int r = 0; r < t->n_re; r++) {
        c.b.n = 0;
        for (size_t i = 0; i < c.a.n; i++)
            if (split_one(&c, t->re[r], text, c.a.v[i], &c.b, e))
                goto out;
        struct spans tmp = c.a;
        c.a = c.b;
        c.b = tmp;
    }
    for (size_t i = 0; i < c.a.n; i++)
        if (encode_word(&c, text + c.a.v[i].off, c.a.v[i].len, out, e))
            goto out;
    rc = 0;
out:
    free(c.a.v);
    free(c.b.v);
    free(c.syms);
    free(c.heap);
    sbuf_release(&c.word);
    pcre2_jit_stack_free(c.jstack);
    pcre2_match_context_free(c.mctx);
    pcre2_match_data_free(c.md);
    return rc;
}
