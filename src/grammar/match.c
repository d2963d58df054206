/*
 * The matcher: token trie, pushdown stacks, allowed-token masks.
 *
 * A stack is an array of element positions, bottom first; its top is always
 * a GE_CHARS element (the next character to match) and the entries below
 * are where to continue when the rule above ends (positions of GE_END are
 * never pushed: a rule called last in an alternative is a tail call, so
 * x* loops do not grow the stack). An empty stack means the grammar has
 * matched completely. A state is a set of distinct stacks (the
 * alternatives still alive) plus the bytes of a UTF-8 character begun but
 * not finished.
 *
 * Stacks live in an arena (positions + stack headers) used like a stack
 * itself: advancing a set by one code point appends the new set behind the
 * old, and the trie walk drops what it appended when it backs up, so a
 * mask computation allocates only when the arena has to grow.
 *
 * The mask of a state is the union of its stacks' masks (a token is
 * allowed when some stack accepts all its bytes). One stack's mask comes
 * from a walk of the token trie carrying the set of stacks reached so far
 * and pruning every subtree where that set is empty, and is cached in the
 * grammar keyed by the stack, the pending UTF-8 bytes and the vocabulary.
 */
#include "grammar/grammar_int.h"

#include <stdlib.h>
#include <string.h>

/* ---- vocabulary ---------------------------------------------------------- */

struct tnode {
    uint32_t end;        /* index after the last node of this subtree */
    uint32_t tok_first;  /* tokens whose bytes end here: toks[tok_first .. +tok_n) */
    uint32_t tok_n;
    uint8_t byte;
};

struct grammar_vocab {
    int32_t n_vocab;
    int words;
    struct tnode *nodes;   /* from malloc: preorder, node 0 the root */
    uint32_t n_nodes;
    int32_t *toks;         /* from malloc: ids sorted by bytes */
    char *blob;            /* from malloc: every token's bytes */
    uint32_t *off;         /* from malloc: n_vocab + 1; token id's bytes are blob[off[id] .. off[id+1]) */
    uint32_t *eog;         /* from malloc: words; end-of-generation tokens */
    bool *usable;          /* from malloc: n_vocab; in the trie */
    int32_t *ctl;          /* from malloc: the control tokens with text (their bytes in blob), not in the trie */
    int32_t n_ctl;
};

struct sort_ctx {
    const char *blob;
    const uint32_t *off;
};
static struct sort_ctx sort_by; /* qsort has no context argument; set under vocab_mu */
static pthread_mutex_t vocab_mu = PTHREAD_MUTEX_INITIALIZER;

static int cmp_tok(const void *x, const void *y)
{
    int32_t a = *(const int32_t *)x, b = *(const int32_t *)y;
    uint32_t la = sort_by.off[a + 1] - sort_by.off[a], lb = sort_by.off[b + 1] - sort_by.off[b];
    int c = memcmp(sort_by.blob + sort_by.off[a], sort_by.blob + sort_by.off[b], la < lb ? la : lb);
    if (c)
        return c;
    return la < lb ? -1 : la > lb ? 1 : a - b;
}

/* Copies every token's bytes; marks usable and end-of-generation tokens. */
static int vocab_pieces(struct grammar_vocab *v, const struct tokenizer *t, int32_t *n_usable, struct err *e)
{
    size_t total = 0;
    int32_t nt = t ? tok_n_vocab(t) : 0;
    for (int32_t id = 0; id < v->n_vocab && id < nt; id++) {
        size_t n = 0;
        tok_piece(t, id, tok_token_type(t, id) == TOK_TYPE_CONTROL, &n);
        total += n;
    }
    if (total >= UINT32_MAX)
        return err_set(e, ERR_INVALID, "grammar: vocabulary too large");
    v->blob = malloc(total + 1);
    if (!v->blob)
        return err_set(e, ERR_NOMEM, "grammar: out of memory");
    uint32_t at = 0;
    *n_usable = 0;
    for (int32_t id = 0; id < v->n_vocab; id++) {
        v->off[id] = at;
        if (id >= nt)
            continue;
        size_t n = 0;
        enum tok_type ty = tok_token_type(t, id);
        const char *p = tok_piece(t, id, ty == TOK_TYPE_CONTROL, &n);
        if (tok_is_eog(t, id)) {
            v->eog[id / 32] |= 1u << (id % 32);
            continue;
        }
        if (n == 0 || !p || ty == TOK_TYPE_UNKNOWN || ty == TOK_TYPE_UNUSED)
            continue;
        memcpy(v->blob + at, p, n);
        at += (uint32_t)n;
        if (ty == TOK_TYPE_CONTROL) { /* kept for grammar_allow_control, never in the trie */
            v->off[id + 1] = at;
            v->ctl[v->n_ctl++] = id;
            continue;
        }
        v->usable[id] = true;
        v->toks[(*n_usable)++] = id;
    }
    v->off[v->n_vocab] = at;
    return 0;
}

/* Builds the preorder trie from the sorted tokens. */
static int vocab_trie(struct grammar_vocab *v, int32_t n_usable, struct err *e)
{
    size_t cap = 0, n = 1;
    if (mem_grow(&v->nodes, &cap, 1024, sizeof *v->nodes) < 0)
        return err_set(e, ERR_NOMEM, "grammar: out of memory");
    memset(&v->nodes[0], 0, sizeof v->nodes[0]);
    uint32_t path[1024]; /* path[d] = node at depth d (path[0] = root) */
    path[0] = 0;
    uint32_t depth = 0;
    const char *prev = NULL;
    uint32_t prev_len = 0;
    for (int32_t i = 0; i < n_usable; i++) {
        int32_t id = v->toks[i];
        const char *p = v->blob + v->off[id];
        uint32_t len = v->off[id + 1] - v->off[id];
        if (len > 1000)
            len = 1000; /* longer tokens are cut (never allowed: they end at no node) */
        uint32_t common = 0;
        while (common < len && common < prev_len && common < depth && p[common] == prev[common])
            common++;
        while (depth > common) /* close the nodes below the common prefix */
            v->nodes[path[depth--]].end = (uint32_t)n;
        while (depth < len) {
            if (mem_grow(&v->nodes, &cap, n + 1, sizeof *v->nodes) < 0)
                return err_set(e, ERR_NOMEM, "grammar: out of memory");
            v->nodes[n] = (struct tnode){0, 0, 0, (uint8_t)p[depth]};
            path[++depth] = (uint32_t)n++;
        }
        struct tnode *nd = &v->nodes[path[depth]];
        if (v->off[id + 1] - v->off[id] <= 1000) {
            if (nd->tok_n == 0)
                nd->tok_first = (uint32_t)i;
            nd->tok_n++;
        }
        prev = p;
        prev_len = len;
    }
    while (depth > 0)
        v->nodes[path[depth--]].end = (uint32_t)n;
    v->nodes[0].end = (uint32_t)n;
    v->n_nodes = (uint32_t)n;
    return 0;
}

struct grammar_vocab *grammar_vocab_new(const struct tokenizer *t, int32_t n_vocab, struct err *e)
{
    struct grammar_vocab *v = calloc(1, sizeof *v);
    if (!v || n_vocab < 0)
        return free(v), err_set(e, n_vocab < 0 ? ERR_INVALID : ERR_NOMEM, "grammar: cannot build vocabulary"), NULL;
    v->n_vocab = n_vocab;
    v->words = (n_vocab + 31) / 32;
    v->off = calloc((size_t)n_vocab + 1, sizeof *v->off);
    v->toks = malloc(((size_t)n_vocab + 1) * sizeof *v->toks);
    v->eog = calloc((size_t)v->words + 1, sizeof *v->eog);
    v->usable = calloc((size_t)n_vocab + 1, sizeof *v->usable);
    v->ctl = malloc(((size_t)n_vocab + 1) * sizeof *v->ctl);
    int32_t n_usable = 0;
    if (!v->off || !v->toks || !v->eog || !v->usable || !v->ctl) {
        err_set(e, ERR_NOMEM, "grammar: out of memory");
        goto fail;
    }
    if (vocab_pieces(v, t, &n_usable, e) < 0)
        goto fail;
    pthread_mutex_lock(&vocab_mu);
    sort_by = (struct sort_ctx){v->blob, v->off};
    qsort(v->toks, (size_t)n_usable, sizeof *v->toks, cmp_tok);
    pthread_mutex_unlock(&vocab_mu);
    if (vocab_trie(v, n_usable, e) < 0)
        goto fail;
    return v;
fail:
    grammar_vocab_free(v);
    return NULL;
}

void grammar_vocab_free(struct grammar_vocab *v)
{
    if (!v)
        return;
    free(v->nodes);
    free(v->toks);
    free(v->blob);
    free(v->off);
    free(v->eog);
    free(v->usable);
    free(v->ctl);
    free(v);
}

int grammar_vocab_words(const struct grammar_vocab *v)
{
    return v->words;
}

/* ---- stacks ------------------------------------------------------------- */

struct stk {
    uint32_t off, len;
};

struct arena {
    int32_t *pos;       /* from malloc */
    size_t n_pos, cap_pos;
    struct stk *stk;    /* from malloc */
    size_t n_stk, cap_stk;
    int32_t *work;      /* from malloc: the stack being expanded */
    size_t cap_work;
    bool oom;           /* out of memory, or past a limit below (then over is set too) */
    bool over;
};

/* A state's limits: a grammar so ambiguous that more stacks than this stay
 * alive, or that nests rules deeper, fails cleanly instead of taking time
 * and memory exponential in the output's length. */
#define MAX_SET_STACKS 256
#define MAX_STACK_DEPTH 512

/* The error of an arena that stopped: out of memory or past a limit. */
static int arena_fail(bool over, struct err *e)
{
    if (over)
        return err_set(e, ERR_EXHAUSTED, "grammar: more than %d alternatives alive at once or rules nested deeper "
                       "than %d (the grammar is too ambiguous for this output)", MAX_SET_STACKS, MAX_STACK_DEPTH);
    return err_set(e, ERR_NOMEM, "grammar: out of memory");
}

static void arena_release(struct arena *a)
{
    free(a->pos);
    free(a->stk);
    free(a->work);
    memset(a, 0, sizeof *a);
}

static bool work_room(struct arena *a, size_t n)
{
    if (n <= a->cap_work)
        return true;
    if (mem_grow(&a->work, &a->cap_work, n, sizeof *a->work) < 0) {
        a->oom = true;
        return false;
    }
    return true;
}

/* Appends work[0..wlen) as a stack of the set starting at s0 unless the set
 * already has it. */
static void commit(struct arena *a, size_t wlen, size_t s0)
{
    for (size_t i = s0; i < a->n_stk; i++)
        if (a->stk[i].len == wlen && memcmp(a->pos + a->stk[i].off, a->work, wlen * sizeof *a->work) == 0)
            return;
    if (a->n_stk - s0 >= MAX_SET_STACKS || wlen > MAX_STACK_DEPTH) {
        a->oom = a->over = true;
        return;
    }
    if (mem_grow(&a->pos, &a->cap_pos, a->n_pos + wlen + 1, sizeof *a->pos) < 0 ||
        mem_grow(&a->stk, &a->cap_stk, a->n_stk + 1, sizeof *a->stk) < 0) {
        a->oom = true;
        return;
    }
    memcpy(a->pos + a->n_pos, a->work, wlen * sizeof *a->work);
    a->stk[a->n_stk++] = (struct stk){(uint32_t)a->n_pos, (uint32_t)wlen};
    a->n_pos += wlen;
}

/* Expands work[0..wlen) until its top is a character set (or it is empty)
 * and commits every resulting stack. Leaves work[0..wlen) as it found it. */
static void expand(const struct grammar *g, struct arena *a, size_t wlen, size_t s0)
{
    if (wlen == 0 || g->elems[a->work[wlen - 1]].type == GE_CHARS) {
        commit(a, wlen, s0);
        return;
    }
    int32_t p = a->work[wlen - 1];
    int32_t rule = g->elems[p].a;
    size_t base = wlen - 1;
    if (g->elems[p + 1].type != GE_END)
        a->work[base++] = p + 1; /* continue after the reference */
    for (int32_t k = 0; k < g->rule_n_alts[rule] && !a->oom; k++) {
        int32_t st = g->alt_start[g->rule_first[rule] + k];
        if (g->elems[st].type == GE_END) {
            expand(g, a, base, s0);
        } else if (work_room(a, base + 1)) {
            a->work[base] = st;
            expand(g, a, base + 1, s0);
        }
    }
    a->work[wlen - 1] = p;
}

/* Appends to the arena the set reached from stacks [s0, s1) by code point c. */
static void advance(const struct grammar *g, struct arena *a, size_t s0, size_t s1, uint32_t c)
{
    size_t out = a->n_stk;
    for (size_t i = s0; i < s1 && !a->oom; i++) {
        struct stk s = a->stk[i];
        if (s.len == 0)
            continue;
        int32_t p = a->pos[s.off + s.len - 1];
        if (!gelem_has(g, &g->elems[p], c) || !work_room(a, s.len + 1))
            continue;
        memcpy(a->work, a->pos + s.off, s.len * sizeof *a->work);
        size_t wlen = s.len;
        if (g->elems[p + 1].type == GE_END)
            wlen--;
        else
            a->work[wlen - 1] = p + 1;
        expand(g, a, wlen, out);
    }
}

/* True when some stack of [s0, s1) may take a code point in [lo, hi]. */
static bool set_meets(const struct grammar *g, const struct arena *a, size_t s0, size_t s1, uint32_t lo, uint32_t hi)
{
    for (size_t i = s0; i < s1; i++) {
        struct stk s = a->stk[i];
        if (s.len > 0 && gelem_meets(g, &g->elems[a->pos[s.off + s.len - 1]], lo, hi))
            return true;
    }
    return false;
}

/* ---- UTF-8 ---------------------------------------------------------------- */

struct utf8 {
    uint32_t cp;
    int32_t need;   /* continuation bytes still to come */
    int32_t total;  /* length of the character */
};

/* Feeds byte c: 1 when a character is complete (u->cp), 0 when more bytes
 * are needed (*lo..*hi the code points still possible), -1 when invalid. */
static int utf8_step(struct utf8 *u, uint8_t c, uint32_t *lo, uint32_t *hi)
{
    if (u->need == 0) {
        if (c < 0x80) {
            u->cp = c;
            return 1;
        }
        if (c >= 0xC2 && c <= 0xDF)
            u->cp = c & 0x1F, u->need = 1, u->total = 2;
        else if (c >= 0xE0 && c <= 0xEF)
            u->cp = c & 0x0F, u->need = 2, u->total = 3;
        else if (c >= 0xF0 && c <= 0xF4)
            u->cp = c & 0x07, u->need = 3, u->total = 4;
        else
            return -1;
    } else {
        if ((c & 0xC0) != 0x80)
            return -1;
        u->cp = u->cp << 6 | (c & 0x3F);
        if (--u->need == 0) {
            uint32_t mn = u->total == 2 ? 0x80 : u->total == 3 ? 0x800 : 0x10000;
            if (u->cp < mn || u->cp > 0x10FFFF || (u->cp >= 0xD800 && u->cp <= 0xDFFF))
                return -1;
            return 1;
        }
    }
    uint32_t mn = u->total == 2 ? 0x80 : u->total == 3 ? 0x800 : 0x10000;
    *lo = u->cp << (6 * u->need);
    *hi = *lo | ((1u << (6 * u->need)) - 1);
    if (*lo < mn)
        *lo = mn;
    if (*hi > 0x10FFFF)
        *hi = 0x10FFFF;
    return *lo <= *hi ? 0 : -1;
}

/* ---- one stack's mask: the trie walk -------------------------------------- */

/* The sets of stacks a trie walk reaches, each stored once in the arena
 * for the whole walk, with the transitions found from it: advance()'s
 * result depends on the code point only through which of the set's stacks
 * take it (match_bits), so every trie node whose set and matching stacks
 * were seen before (all the letters under a node, every position inside a
 * string) costs a lookup instead of an expansion. */
struct wset {
    uint32_t s0, s1;   /* stacks [s0, s1) of the arena */
    int32_t tr;        /* first transition, -1 = none */
};

struct wtr {
    uint64_t bits;     /* the stacks that matched */
    int32_t child;     /* the set reached, -1 = none */
    int32_t next;
};

struct walk {
    const struct grammar *g;
    const struct grammar_vocab *v;
    struct arena *a;
    uint32_t *mask;
    struct wset *sets; /* from malloc (the state's scratch) */
    size_t n_sets, cap_sets;
    struct wtr *trs;   /* from malloc (the state's scratch) */
    size_t n_trs, cap_trs;
};

static void allow_node(struct walk *w, uint32_t node)
{
    const struct tnode *nd = &w->v->nodes[node];
    for (uint32_t i = 0; i < nd->tok_n; i++) {
        int32_t id = w->v->toks[nd->tok_first + i];
        w->mask[id / 32] |= 1u << (id % 32);
    }
}

/* Which stacks of [s0, s1) (at most 64) take code point c. */
static uint64_t match_bits(const struct walk *w, size_t s0, size_t s1, uint32_t c)
{
    uint64_t bits = 0;
    for (size_t i = s0; i < s1; i++) {
        struct stk s = w->a->stk[i];
        if (s.len > 0 && gelem_has(w->g, &w->g->elems[w->a->pos[s.off + s.len - 1]], c))
            bits |= 1ull << (i - s0);
    }
    return bits;
}

/* Stores stacks [s0, s1) as a new set; its index, or -1 (out of memory). */
static int32_t set_new(struct walk *w, size_t s0, size_t s1)
{
    if (mem_grow(&w->sets, &w->cap_sets, w->n_sets + 1, sizeof *w->sets) < 0) {
        w->a->oom = true;
        return -1;
    }
    w->sets[w->n_sets] = (struct wset){(uint32_t)s0, (uint32_t)s1, -1};
    return (int32_t)w->n_sets++;
}

/* The set reached from set by code point c (-1 when no stack takes it). */
static int32_t transition(struct walk *w, int32_t set, uint32_t c)
{
    struct wset ws = w->sets[set];
    bool memo = ws.s1 - ws.s0 <= 64;
    uint64_t bits = 0;
    if (memo) {
        bits = match_bits(w, ws.s0, ws.s1, c);
        if (!bits)
            return -1;
        for (int32_t t = ws.tr; t >= 0; t = w->trs[t].next)
            if (w->trs[t].bits == bits)
                return w->trs[t].child;
    }
    size_t b0 = w->a->n_stk;
    advance(w->g, w->a, ws.s0, ws.s1, c);
    int32_t child = w->a->n_stk > b0 ? set_new(w, b0, w->a->n_stk) : -1;
    if (memo && mem_grow(&w->trs, &w->cap_trs, w->n_trs + 1, sizeof *w->trs) == 0) {
        w->trs[w->n_trs] = (struct wtr){bits, child, w->sets[set].tr};
        w->sets[set].tr = (int32_t)w->n_trs++;
    }
    return child;
}

/* Visits the children of node with the set reached so far and the
 * character begun u. */
static void walk(struct walk *w, uint32_t node, int32_t set, struct utf8 u)
{
    const struct tnode *nodes = w->v->nodes;
    for (uint32_t c = node + 1; c < nodes[node].end && !w->a->oom; c = nodes[c].end) {
        struct utf8 nu = u;
        uint32_t lo, hi;
        int st = utf8_step(&nu, nodes[c].byte, &lo, &hi);
        if (st < 0)
            continue;
        if (st == 0) {
            if (set_meets(w->g, w->a, w->sets[set].s0, w->sets[set].s1, lo, hi)) {
                allow_node(w, c);
                walk(w, c, set, nu);
            }
            continue;
        }
        int32_t child = transition(w, set, nu.cp);
        if (child >= 0) {
            allow_node(w, c);
            walk(w, c, child, (struct utf8){0, 0, 0});
        }
    }
}

/* ---- the cache ------------------------------------------------------------- */

static struct gcache_entry *cache_find(struct grammar *g, const struct grammar_vocab *v, uint64_t h,
                                       const int32_t *key, int n_key)
{
    if (!g->cache)
        return NULL;
    for (int i = (int)(h & (uint64_t)(g->cache_cap - 1));; i = (i + 1) & (g->cache_cap - 1)) {
        struct gcache_entry *c = &g->cache[i];
        if (!c->key)
            return NULL;
        if (c->hash == h && c->v == v && c->n_key == n_key && memcmp(c->key, key, (size_t)n_key * sizeof *key) == 0)
            return c;
    }
}

static void cache_put(struct grammar *g, struct gcache_entry *x)
{
    for (int i = (int)(x->hash & (uint64_t)(g->cache_cap - 1));; i = (i + 1) & (g->cache_cap - 1))
        if (!g->cache[i].key) {
            g->cache[i] = *x;
            g->cache_len++;
            return;
        }
}

/* Stores a copy of mask under key (when the cache has room); under g->mu. */
static void cache_insert(struct grammar *g, const struct grammar_vocab *v, uint64_t h, const int32_t *key, int n_key,
                         const uint32_t *mask)
{
    size_t bytes = (size_t)v->words * 4 + (size_t)n_key * 4;
    if (g->cache_bytes + bytes > GRAMMAR_CACHE_BYTES || cache_find(g, v, h, key, n_key))
        return;
    if ((g->cache_len + 1) * 2 > g->cache_cap) {
        int ncap = g->cache_cap ? g->cache_cap * 2 : 64;
        struct gcache_entry *old = g->cache, *nc = calloc((size_t)ncap, sizeof *nc);
        if (!nc)
            return;
        int ocap = g->cache_cap;
        g->cache = nc;
        g->cache_cap = ncap;
        g->cache_len = 0;
        for (int i = 0; i < ocap; i++)
            if (old[i].key)
                cache_put(g, &old[i]);
        free(old);
    }
    struct gcache_entry x = {h, v, malloc((size_t)n_key * sizeof *key), n_key, malloc((size_t)v->words * 4)};
    if (!x.key || !x.mask) {
        free(x.key);
        free(x.mask);
        return;
    }
    memcpy(x.key, key, (size_t)n_key * sizeof *key);
    memcpy(x.mask, mask, (size_t)v->words * 4);
    cache_put(g, &x);
    g->cache_bytes += bytes;
}

void grammar_cache_release(struct grammar *g)
{
    for (int i = 0; i < g->cache_cap; i++) {
        free(g->cache[i].key);
        free(g->cache[i].mask);
    }
    free(g->cache);
    g->cache = NULL;
    g->cache_cap = g->cache_len = 0;
    g->cache_bytes = 0;
}

/* ---- states ------------------------------------------------------------------ */

struct grammar_state {
    struct grammar *g;                /* one reference */
    const struct grammar_vocab *v;    /* borrowed */
    struct arena cur;                 /* the set: every stack of the arena */
    struct arena save;                /* the set before an accept, for undoing */
    struct arena scratch;             /* the trie walk's */
    struct utf8 pend;                 /* a character begun */
    bool done;                        /* end-of-generation accepted */
    int32_t *key;                     /* from malloc: cache key scratch */
    size_t cap_key;
    uint32_t *one;                    /* from malloc: one stack's mask (words) */
    struct walk w;                    /* the trie walk's set and transition tables (scratch) */
    int32_t *ctl;                     /* from malloc: the control tokens the grammar allows (grammar_allow_control) */
    int n_ctl;
    bool over;                        /* the last failure was a limit passed (arena_fail) */
    /* lazy grammars: */
    bool waiting;                     /* the trigger has not appeared yet (cur is the start) */
    bool skip;                        /* the output is inside a skipped span */
    char win[2 * GRAMMAR_TRIGGER_MAX + 2]; /* the output's last bytes (at least the last GRAMMAR_TRIGGER_MAX) */
    int n_win;
};

/* The vocabulary's control tokens whose text the grammar names, into s->ctl. */
static int state_controls(struct grammar_state *s)
{
    const struct grammar_vocab *v = s->v;
    for (int32_t i = 0; i < v->n_ctl && s->g->n_ctl; i++) {
        int32_t id = v->ctl[i];
        size_t n = v->off[id + 1] - v->off[id];
        for (int k = 0; k < s->g->n_ctl; k++) {
            if (strlen(s->g->ctl_text[k]) != n || memcmp(s->g->ctl_text[k], v->blob + v->off[id], n))
                continue;
            int32_t *t = realloc(s->ctl, ((size_t)s->n_ctl + 1) * sizeof *t);
            if (!t)
                return -1;
            s->ctl = t;
            s->ctl[s->n_ctl++] = id;
            break;
        }
    }
    return 0;
}

static int arena_copy(struct arena *dst, const struct arena *src)
{
    dst->n_pos = dst->n_stk = 0;
    if (mem_grow(&dst->pos, &dst->cap_pos, src->n_pos + 1, sizeof *dst->pos) < 0 ||
        mem_grow(&dst->stk, &dst->cap_stk, src->n_stk + 1, sizeof *dst->stk) < 0)
        return -1;
    memcpy(dst->pos, src->pos, src->n_pos * sizeof *src->pos);
    memcpy(dst->stk, src->stk, src->n_stk * sizeof *src->stk);
    dst->n_pos = src->n_pos;
    dst->n_stk = src->n_stk;
    return 0;
}

static int bytes_fit(struct grammar_state *s, const char *p, size_t n);

struct grammar_state *grammar_state_new(struct grammar *g, const struct grammar_vocab *v, struct err *e)
{
    struct grammar_state *s = calloc(1, sizeof *s);
    if (!s || !(s->one = malloc((size_t)v->words * 4 + 4)))
        goto nomem;
    s->g = grammar_ref(g);
    s->v = v;
    /* the start: every alternative of root */
    for (int32_t k = 0; k < g->rule_n_alts[g->root]; k++) {
        int32_t st = g->alt_start[g->rule_first[g->root] + k];
        if (!work_room(&s->cur, 1))
            break;
        if (g->elems[st].type == GE_END) {
            expand(g, &s->cur, 0, 0);
        } else {
            s->cur.work[0] = st;
            expand(g, &s->cur, 1, 0);
        }
    }
    if (s->cur.oom || state_controls(s) < 0)
        goto nomem;
    if (g->trig[0]) {
        int fit = bytes_fit(s, g->trig[0], strlen(g->trig[0]));
        if (fit < 0)
            goto nomem;
        if (!fit) {
            grammar_state_free(s);
            return err_set(e, ERR_INVALID, "grammar: the trigger \"%s\" does not fit the start of the grammar",
                           g->trig[0]), NULL;
        }
        s->waiting = true;
        s->skip = g->skip_start;
    }
    return s;
nomem:;
    bool over = s && s->cur.over;
    grammar_state_free(s);
    return arena_fail(over, e), NULL;
}

struct grammar_state *grammar_state_clone(const struct grammar_state *src, struct err *e)
{
    struct grammar_state *s = calloc(1, sizeof *s);
    if (!s || !(s->one = malloc((size_t)src->v->words * 4 + 4)))
        goto nomem;
    s->g = grammar_ref(src->g);
    s->v = src->v;
    s->pend = src->pend;
    s->done = src->done;
    s->waiting = src->waiting;
    s->skip = src->skip;
    memcpy(s->win, src->win, sizeof s->win);
    s->n_win = src->n_win;
    if (arena_copy(&s->cur, &src->cur) < 0 || state_controls(s) < 0)
        goto nomem;
    return s;
nomem:
    grammar_state_free(s);
    return err_set(e, ERR_NOMEM, "grammar: out of memory"), NULL;
}

void grammar_state_free(struct grammar_state *s)
{
    if (!s)
        return;
    arena_release(&s->cur);
    arena_release(&s->save);
    arena_release(&s->scratch);
    free(s->key);
    free(s->one);
    free(s->w.sets);
    free(s->w.trs);
    free(s->ctl);
    grammar_free(s->g);
    free(s);
}

bool grammar_state_waiting(const struct grammar_state *s)
{
    return s->waiting;
}

bool grammar_state_can_end(const struct grammar_state *s)
{
    if (s->done || s->waiting)
        return true;
    if (s->pend.need)
        return false;
    for (size_t i = 0; i < s->cur.n_stk; i++)
        if (s->cur.stk[i].len == 0)
            return true;
    return false;
}

bool grammar_state_is_done(const struct grammar_state *s)
{
    if (s->done)
        return true;
    if (s->waiting)
        return false;
    for (size_t i = 0; i < s->cur.n_stk; i++)
        if (s->cur.stk[i].len > 0)
            return false;
    return true;
}

/* ORs the mask of stack i of the current set into mask, from the cache or
 * a trie walk. */
static int stack_mask(struct grammar_state *s, size_t i, uint32_t *mask)
{
    struct stk st = s->cur.stk[i];
    size_t n_key = st.len + 3;
    if (mem_grow(&s->key, &s->cap_key, n_key, sizeof *s->key) < 0)
        return -1;
    memcpy(s->key, s->cur.pos + st.off, st.len * sizeof *s->key);
    s->key[st.len] = (int32_t)s->pend.cp;
    s->key[st.len + 1] = s->pend.need;
    s->key[st.len + 2] = s->pend.total;
    uint64_t h = hash_bytes(s->key, n_key * sizeof *s->key);
    int words = s->v->words;
    pthread_mutex_lock(&s->g->mu);
    struct gcache_entry *c = cache_find(s->g, s->v, h, s->key, (int)n_key);
    const uint32_t *hit = c ? c->mask : NULL; /* entries' masks stay put until the grammar is freed */
    pthread_mutex_unlock(&s->g->mu);
    if (hit) {
        for (int k = 0; k < words; k++)
            mask[k] |= hit[k];
        return 0;
    }
    /* walk: the one stack copied into the scratch arena */
    struct arena *a = &s->scratch;
    a->n_pos = a->n_stk = 0;
    if (!work_room(a, st.len + 1))
        return -1;
    memcpy(a->work, s->key, st.len * sizeof *a->work);
    commit(a, st.len, 0);
    memset(s->one, 0, (size_t)words * 4);
    struct walk *w = &s->w;
    w->g = s->g;
    w->v = s->v;
    w->a = a;
    w->mask = s->one;
    w->n_sets = w->n_trs = 0;
    int32_t root = set_new(w, 0, a->n_stk);
    if (root >= 0)
        walk(w, 0, root, s->pend);
    if (a->oom) {
        s->over = a->over;
        a->oom = a->over = false;
        return -1;
    }
    for (int k = 0; k < words; k++)
        mask[k] |= s->one[k];
    pthread_mutex_lock(&s->g->mu);
    cache_insert(s->g, s->v, h, s->key, (int)n_key, s->one);
    pthread_mutex_unlock(&s->g->mu);
    return 0;
}

static int feed_byte(struct grammar_state *s, uint8_t c);

/* 1 when the state may take bytes p[0..n) next, else 0 (the state is left
 * as it was); -1 on out of memory. */
static int bytes_fit(struct grammar_state *s, const char *p, size_t n)
{
    struct utf8 pend = s->pend;
    if (arena_copy(&s->save, &s->cur) < 0)
        return -1;
    int fit = 1;
    for (size_t i = 0; i < n && fit; i++)
        if (feed_byte(s, (uint8_t)p[i]) < 0)
            fit = 0;
    bool oom = s->cur.oom;
    s->over = s->cur.over;
    struct arena t = s->cur;
    s->cur = s->save;
    s->save = t;
    s->cur.oom = s->save.oom = s->cur.over = s->save.over = false;
    s->pend = pend;
    return oom ? -1 : fit;
}

int grammar_state_mask(struct grammar_state *s, uint32_t *mask, struct err *e)
{
    int words = s->v->words;
    memset(mask, 0, (size_t)words * 4);
    if (s->done)
        return 0;
    if (s->waiting) {
        int32_t n = s->v->n_vocab;
        memset(mask, 0xff, (size_t)(n / 32) * 4);
        if (n % 32)
            mask[n / 32] = (1u << (n % 32)) - 1;
        return n;
    }
    bool can_end = grammar_state_can_end(s);
    for (size_t i = 0; i < s->cur.n_stk; i++)
        if (s->cur.stk[i].len > 0 && stack_mask(s, i, mask) < 0)
            return arena_fail(s->over, e);
    for (int i = 0; i < s->n_ctl; i++) {
        int32_t id = s->ctl[i];
        int fit = bytes_fit(s, s->v->blob + s->v->off[id], s->v->off[id + 1] - s->v->off[id]);
        if (fit < 0)
            return arena_fail(s->over, e);
        if (fit)
            mask[id / 32] |= 1u << (id % 32);
    }
    int count = 0;
    for (int k = 0; k < words; k++) {
        if (can_end)
            mask[k] |= s->v->eog[k];
        count += __builtin_popcount(mask[k]);
    }
    return count;
}

/* Feeds one byte of output; -1 when the grammar does not allow it. */
static int feed_byte(struct grammar_state *s, uint8_t c)
{
    uint32_t lo, hi;
    int st = utf8_step(&s->pend, c, &lo, &hi);
    if (st < 0)
        return -1;
    if (st == 0)
        return set_meets(s->g, &s->cur, 0, s->cur.n_stk, lo, hi) ? 0 : -1;
    /* a whole character: the new set is built behind the current one, then moved down */
    size_t n_stk = s->cur.n_stk, n_pos = s->cur.n_pos;
    advance(s->g, &s->cur, 0, n_stk, s->pend.cp);
    s->pend = (struct utf8){0, 0, 0};
    if (s->cur.oom || s->cur.n_stk == n_stk)
        return -1;
    size_t base = s->cur.stk[n_stk].off;
    for (size_t i = n_stk; i < s->cur.n_stk; i++) {
        s->cur.stk[i - n_stk] = s->cur.stk[i];
        s->cur.stk[i - n_stk].off -= (uint32_t)base;
    }
    memmove(s->cur.pos, s->cur.pos + base, (s->cur.n_pos - base) * sizeof *s->cur.pos);
    s->cur.n_stk -= n_stk;
    s->cur.n_pos -= base;
    (void)n_pos;
    return 0;
}

/* Advances an active state by bytes; unchanged on failure. */
static int take_bytes(struct grammar_state *s, const char *p, size_t n, struct err *e)
{
    if (s->done)
        return err_set(e, ERR_INVALID, "grammar: output after the end of the grammar");
    struct utf8 pend = s->pend;
    if (arena_copy(&s->save, &s->cur) < 0)
        return err_set(e, ERR_NOMEM, "grammar: out of memory");
    for (size_t i = 0; i < n; i++) {
        if (feed_byte(s, (uint8_t)p[i]) < 0) {
            bool oom = s->cur.oom, over = s->cur.over;
            struct arena t = s->cur;
            s->cur = s->save;
            s->save = t;
            s->cur.oom = s->save.oom = s->cur.over = s->save.over = false;
            s->pend = pend;
            if (oom)
                return arena_fail(over, e);
            return err_set(e, ERR_INVALID, "grammar: byte %zu of the output (0x%02x) does not fit the grammar", i,
                           (unsigned char)p[i]);
        }
    }
    return 0;
}

/* ---- lazy grammars: waiting for the trigger ---- */

/* True when the n bytes of w end with marker m (NULL or "": never). */
static bool ends_with(const char *w, int n, const char *m)
{
    size_t k = m ? strlen(m) : 0;
    return k && (size_t)n >= k && !memcmp(w + n - k, m, k);
}

/* The trigger ended at byte i of p[0..n): the state becomes active over
 * the trigger and p[i+1..n). Unchanged on failure. */
static int trigger_fire(struct grammar_state *s, const char *p, size_t n, size_t i, struct err *e)
{
    const char *t = s->g->trig[0];
    size_t k = strlen(t), rest = n - i - 1;
    char *buf = malloc(k + rest + 1);
    if (!buf)
        return err_set(e, ERR_NOMEM, "grammar: out of memory");
    memcpy(buf, t, k);
    memcpy(buf + k, p + i + 1, rest);
    int rc = take_bytes(s, buf, k + rest, e);
    free(buf);
    if (rc < 0) {
        if (e->code == ERR_INVALID)
            err_set(e, ERR_INVALID, "grammar: the %zu bytes after the trigger do not fit the grammar", rest);
        return -1;
    }
    s->waiting = false;
    return 0;
}

/* A waiting state watches p[0..n) for the trigger (outside skipped spans);
 * unchanged on failure. */
static int lazy_bytes(struct grammar_state *s, const char *p, size_t n, struct err *e)
{
    char *const *m = s->g->trig;
    char win[sizeof s->win];
    int nw = s->n_win;
    bool skip = s->skip;
    memcpy(win, s->win, (size_t)nw);
    for (size_t i = 0; i < n; i++) {
        if (nw == (int)sizeof win) {
            memmove(win, win + nw - GRAMMAR_TRIGGER_MAX, GRAMMAR_TRIGGER_MAX);
            nw = GRAMMAR_TRIGGER_MAX;
        }
        win[nw++] = p[i];
        if (skip) {
            skip = !ends_with(win, nw, m[2]);
            continue;
        }
        if (ends_with(win, nw, m[0]))
            return trigger_fire(s, p, n, i, e);
        skip = ends_with(win, nw, m[1]);
    }
    memcpy(s->win, win, (size_t)nw);
    s->n_win = nw;
    s->skip = skip;
    return 0;
}

int grammar_state_accept_bytes(struct grammar_state *s, const char *p, size_t n, struct err *e)
{
    return s->waiting ? lazy_bytes(s, p, n, e) : take_bytes(s, p, n, e);
}

int grammar_state_accept(struct grammar_state *s, int32_t id, struct err *e)
{
    const struct grammar_vocab *v = s->v;
    if (id < 0 || id >= v->n_vocab)
        return err_set(e, ERR_INVALID, "grammar: token %d out of range", id);
    if (s->waiting) /* any token, by its text (end of generation: none) */
        return lazy_bytes(s, v->blob + v->off[id], v->off[id + 1] - v->off[id], e);
    if (v->eog[id / 32] >> (id % 32) & 1) {
        if (!grammar_state_can_end(s))
            return err_set(e, ERR_INVALID, "grammar: end of generation before the grammar is complete");
        s->done = true;
        return 0;
    }
    bool ctl = false;
    for (int i = 0; i < s->n_ctl && !ctl; i++)
        ctl = s->ctl[i] == id;
    if (!v->usable[id] && !ctl)
        return err_set(e, ERR_INVALID, "grammar: token %d is not allowed by a grammar", id);
    return grammar_state_accept_bytes(s, v->blob + v->off[id], v->off[id + 1] - v->off[id], e);
}
