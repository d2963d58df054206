/*
 * parse.c — tokens to the AST: Jinja2's statements (if/elif/else, for with
 * else, filter and tuple targets, set and block set, macro, call, filter
 * blocks, break/continue, generation) and its expression grammar with
 * Jinja2's precedence: conditional, or, and, not, comparisons (in, not in),
 * + -, ~, * / // %, **, unary - +, then postfix (attribute, item, slice,
 * call) and the filter/test chain (| and is).
 */
#include "template/tmpl_int.h"

#include <stdio.h>

struct parser {
    struct arena *ar;
    struct tok *t;
    size_t n, i;
    jmp_buf fail;
    struct err *e;
};

_Noreturn static void perr(struct parser *p, const struct tok *t, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
_Noreturn static void perr(struct parser *p, const struct tok *t, const char *fmt, ...)
{
    char msg[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    err_set(p->e, ERR_INVALID, "line %d col %d: %s", t->line, t->col, msg);
    longjmp(p->fail, 1);
}

static void *palloc(struct parser *p, size_t n)
{
    void *x = ar_alloc(p->ar, n);
    if (!x) {
        err_set(p->e, ERR_NOMEM, "out of memory parsing the template");
        longjmp(p->fail, 1);
    }
    return x;
}

static struct tok *cur(struct parser *p)
{
    return &p->t[p->i];
}

static bool is_op(const struct tok *t, const char *op)
{
    return t->t == T_OP && t->n == strlen(op) && !memcmp(t->p, op, t->n);
}

static bool is_name(const struct tok *t, const char *name)
{
    return t->t == T_NAME && t->n == strlen(name) && !memcmp(t->p, name, t->n);
}

static const char *tok_desc(const struct tok *t)
{
    switch (t->t) {
    case T_EOF: return "end of template";
    case T_BE: return "end of block tag (%})";
    case T_VE: return "end of print tag (}})";
    case T_TEXT: return "text";
    default: return "token";
    }
}

static void expect_op(struct parser *p, const char *op)
{
    if (!is_op(cur(p), op))
        perr(p, cur(p), "expected '%s', found %s '%.*s'", op, tok_desc(cur(p)), (int)cur(p)->n, cur(p)->p);
    p->i++;
}

static bool accept_op(struct parser *p, const char *op)
{
    if (!is_op(cur(p), op))
        return false;
    p->i++;
    return true;
}

static bool accept_name(struct parser *p, const char *name)
{
    if (!is_name(cur(p), name))
        return false;
    p->i++;
    return true;
}

static const char *name_str(struct parser *p, const struct tok *t)
{
    char *s = palloc(p, t->n + 1);
    memcpy(s, t->p, t->n);
    return s;
}

static const char *expect_name(struct parser *p)
{
    if (cur(p)->t != T_NAME)
        perr(p, cur(p), "expected a name, found %s '%.*s'", tok_desc(cur(p)), (int)cur(p)->n, cur(p)->p);
    return name_str(p, &p->t[p->i++]);
}

static struct node *mk(struct parser *p, enum nk k, const struct tok *at)
{
    struct node *n = palloc(p, sizeof *n);
    n->k = k;
    n->line = at->line;
    n->col = at->col;
    return n;
}

/* growable node arrays in the arena */
struct nvec {
    struct node **v;
    const char **names;
    size_t n, cap;
};

static void nv_push(struct parser *p, struct nvec *v, struct node *x, const char *name)
{
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 4;
        struct node **nv = palloc(p, cap * sizeof *nv);
        const char **nn = palloc(p, cap * sizeof *nn);
        if (v->n) {
            memcpy(nv, v->v, v->n * sizeof *nv);
            memcpy(nn, v->names, v->n * sizeof *nn);
        }
        v->v = nv;
        v->names = nn;
        v->cap = cap;
    }
    v->names[v->n] = name;
    v->v[v->n++] = x;
}

static struct node *expr(struct parser *p);
static struct node *or_expr(struct parser *p);
static struct node *unary(struct parser *p, bool with_filter);

/* (args): positional into kids, name=value into kw */
static void call_args(struct parser *p, struct node *n)
{
    struct nvec pos = {0}, kw = {0};
    expect_op(p, "(");
    while (!accept_op(p, ")")) {
        if (pos.n + kw.n)
            expect_op(p, ",");
        if (accept_op(p, ")"))
            break;
        if (cur(p)->t == T_NAME && is_op(&p->t[p->i + 1], "=")) {
            const char *k = expect_name(p);
            p->i++;
            nv_push(p, &kw, expr(p), k);
        } else {
            if (kw.n)
                perr(p, cur(p), "a positional argument follows keyword arguments");
            nv_push(p, &pos, expr(p), NULL);
        }
    }
    n->kids = pos.v;
    n->n_kids = pos.n;
    n->kw = kw.v;
    n->kwn = kw.names;
    n->n_kw = kw.n;
}

static struct node *primary(struct parser *p)
{
    struct tok *t = cur(p);
    struct node *n;
    if (t->t == T_NAME) {
        p->i++;
        static const struct { const char *w; int v; } lits[] = {{"true", 1}, {"True", 1}, {"false", 0},
                                                                {"False", 0}, {"none", 2}, {"None", 2}};
        for (size_t i = 0; i < sizeof lits / sizeof *lits; i++)
            if (is_name(t, lits[i].w)) {
                n = mk(p, N_LIT, t);
                n->lit = lits[i].v == 2 ? v_none() : v_bool(lits[i].v);
                return n;
            }
        n = mk(p, N_NAME, t);
        n->op = name_str(p, t);
        return n;
    }
    if (t->t == T_STR) {
        n = mk(p, N_LIT, t);
        p->i++;
        struct str *s = t->s;
        while (cur(p)->t == T_STR) { /* adjacent literals concatenate */
            struct str *b = cur(p)->s, *c = palloc(p, sizeof *c + s->n + b->n + 1);
            c->n = s->n + b->n;
            memcpy(c->s, s->s, s->n);
            memcpy(c->s + s->n, b->s, b->n);
            s = c;
            p->i++;
        }
        n->lit.t = V_STR;
        n->lit.u.s = s;
        return n;
    }
    if (t->t == T_INT || t->t == T_FLOAT) {
        n = mk(p, N_LIT, t);
        n->lit = t->t == T_INT ? v_int(t->i) : v_float(t->f);
        p->i++;
        return n;
    }
    if (is_op(t, "(")) {
        p->i++;
        if (accept_op(p, ")"))
            return mk(p, N_TUPLEX, t);
        n = expr(p);
        if (is_op(cur(p), ",")) {
            struct nvec v = {0};
            nv_push(p, &v, n, NULL);
            while (accept_op(p, ",") && !is_op(cur(p), ")"))
                nv_push(p, &v, expr(p), NULL);
            n = mk(p, N_TUPLEX, t);
            n->kids = v.v;
            n->n_kids = v.n;
        }
        expect_op(p, ")");
        return n;
    }
    if (is_op(t, "[")) {
        p->i++;
        struct nvec v = {0};
        while (!accept_op(p, "]")) {
            if (v.n)
                expect_op(p, ",");
            if (accept_op(p, "]"))
                break;
            nv_push(p, &v, expr(p), NULL);
        }
        n = mk(p, N_LISTX, t);
        n->kids = v.v;
        n->n_kids = v.n;
        return n;
    }
    if (is_op(t, "{")) {
        p->i++;
        struct nvec k = {0}, v = {0};
        while (!accept_op(p, "}")) {
            if (k.n)
                expect_op(p, ",");
            if (accept_op(p, "}"))
                break;
            nv_push(p, &k, expr(p), NULL);
            expect_op(p, ":");
            nv_push(p, &v, expr(p), NULL);
        }
        n = mk(p, N_DICTX, t);
        n->kids = k.v;
        n->n_kids = k.n;
        n->kw = v.v;
        n->n_kw = v.n;
        return n;
    }
    perr(p, t, "unexpected %s '%.*s'", tok_desc(t), (int)t->n, t->p);
}

static struct node *subscript(struct parser *p, struct node *obj, struct tok *at)
{
    struct node *parts[3] = {NULL, NULL, NULL};
    int np = 0;
    bool slice = false;
    for (;;) {
        if (!is_op(cur(p), ":") && !is_op(cur(p), "]"))
            parts[np] = expr(p);
        if (accept_op(p, ":")) {
            slice = true;
            if (++np > 2)
                perr(p, cur(p), "a slice has at most three parts");
            continue;
        }
        break;
    }
    expect_op(p, "]");
    struct node *n = mk(p, slice ? N_SLICE : N_ITEM, at);
    n->a = obj;
    n->b = parts[0];
    if (slice) {
        n->c = parts[1];
        n->d = parts[2];
    } else if (!parts[0]) {
        perr(p, at, "empty subscript");
    }
    return n;
}

static struct node *postfix(struct parser *p, struct node *n)
{
    for (;;) {
        struct tok *t = cur(p);
        if (is_op(t, ".")) {
            p->i++;
            struct node *a = mk(p, N_ATTR, t);
            a->a = n;
            if (cur(p)->t == T_INT) { /* x.0 is x[0] */
                a->k = N_ITEM;
                a->b = mk(p, N_LIT, cur(p));
                a->b->lit = v_int(cur(p)->i);
                p->i++;
            } else {
                a->op = expect_name(p);
            }
            n = a;
        } else if (is_op(t, "[")) {
            p->i++;
            n = subscript(p, n, t);
        } else if (is_op(t, "(")) {
            struct node *c = mk(p, N_CALL, t);
            c->line = n->line; /* errors in a call point at what is called */
            c->col = n->col;
            c->a = n;
            call_args(p, c);
            n = c;
        } else {
            return n;
        }
    }
}

/* a filter: name or name(args), applied to subject (NULL in filter blocks) */
static struct node *filter_one(struct parser *p, struct node *subject)
{
    struct tok *t = cur(p);
    struct node *f = mk(p, N_FILTER, t);
    f->op = expect_name(p);
    while (accept_op(p, ".")) { /* dotted filter names are one name in Jinja2 */
        const char *more = expect_name(p);
        size_t a = strlen(f->op), b = strlen(more);
        char *s = palloc(p, a + b + 2);
        memcpy(s, f->op, a);
        s[a] = '.';
        memcpy(s + a + 1, more, b);
        f->op = s;
    }
    if (is_op(cur(p), "("))
        call_args(p, f);
    f->a = subject;
    return f;
}

static bool test_arg_follows(const struct tok *t)
{
    static const char *const stop[] = {"else", "or", "and", "if", "in", "is", "not"};
    if (t->t == T_STR || t->t == T_INT || t->t == T_FLOAT || is_op(t, "[") || is_op(t, "{"))
        return true;
    if (t->t != T_NAME)
        return false;
    for (size_t i = 0; i < sizeof stop / sizeof *stop; i++)
        if (is_name(t, stop[i]))
            return false;
    return true;
}

static struct node *filter_chain(struct parser *p, struct node *n)
{
    for (;;) {
        struct tok *t = cur(p);
        if (is_op(t, "|")) {
            p->i++;
            n = filter_one(p, n);
        } else if (is_name(t, "is")) {
            p->i++;
            struct node *x = mk(p, N_TEST, t);
            x->neg = accept_name(p, "not");
            x->a = n;
            if (is_name(cur(p), "none") || is_name(cur(p), "true") || is_name(cur(p), "false")) {
                x->op = name_str(p, cur(p));
                p->i++;
            } else {
                x->op = expect_name(p);
            }
            if (is_op(cur(p), "(")) {
                call_args(p, x);
            } else if (test_arg_follows(cur(p))) {
                x->kids = palloc(p, sizeof *x->kids);
                x->kids[0] = postfix(p, primary(p));
                x->n_kids = 1;
            }
            n = x;
        } else if (is_op(t, "(")) {
            struct node *c = mk(p, N_CALL, t);
            c->a = n;
            call_args(p, c);
            n = c;
        } else {
            return n;
        }
    }
}

static struct node *unary(struct parser *p, bool with_filter)
{
    struct tok *t = cur(p);
    struct node *n;
    if (is_op(t, "-") || is_op(t, "+")) {
        p->i++;
        n = mk(p, is_op(t, "-") ? N_NEG : N_POS, t);
        n->a = unary(p, false);
    } else {
        n = primary(p);
    }
    n = postfix(p, n);
    return with_filter ? filter_chain(p, n) : n;
}

static struct node *binop(struct parser *p, const struct tok *t, const char *op, struct node *a, struct node *b)
{
    struct node *n = mk(p, N_BIN, t);
    n->op = op;
    n->a = a;
    n->b = b;
    return n;
}

static struct node *pow_expr(struct parser *p)
{
    struct node *n = unary(p, true);
    while (is_op(cur(p), "**")) {
        struct tok *t = &p->t[p->i++];
        n = binop(p, t, "**", n, unary(p, true));
    }
    return n;
}

static struct node *math2(struct parser *p)
{
    struct node *n = pow_expr(p);
    static const char *const o[] = {"*", "/", "//", "%"};
    for (;;) {
        size_t i;
        for (i = 0; i < 4 && !is_op(cur(p), o[i]); i++)
            ;
        if (i == 4)
            return n;
        struct tok *t = &p->t[p->i++];
        n = binop(p, t, o[i], n, pow_expr(p));
    }
}

static struct node *concat(struct parser *p)
{
    struct node *n = math2(p);
    while (is_op(cur(p), "~")) {
        struct tok *t = &p->t[p->i++];
        n = binop(p, t, "~", n, math2(p));
    }
    return n;
}

static struct node *math1(struct parser *p)
{
    struct node *n = concat(p);
    while (is_op(cur(p), "+") || is_op(cur(p), "-")) {
        struct tok *t = &p->t[p->i++];
        n = binop(p, t, is_op(t, "+") ? "+" : "-", n, concat(p));
    }
    return n;
}

static struct node *compare(struct parser *p)
{
    struct tok *t0 = cur(p);
    struct node *first = math1(p);
    struct nvec v = {0};
    static const char *const o[] = {"==", "!=", "<", "<=", ">", ">="};
    for (;;) {
        const char *op = NULL;
        for (size_t i = 0; i < 6; i++)
            if (is_op(cur(p), o[i]))
                op = o[i];
        if (op) {
            p->i++;
        } else if (is_name(cur(p), "in")) {
            p->i++;
            op = "in";
        } else if (is_name(cur(p), "not") && is_name(&p->t[p->i + 1], "in")) {
            p->i += 2;
            op = "notin";
        } else {
            break;
        }
        nv_push(p, &v, math1(p), op);
    }
    if (!v.n)
        return first;
    struct node *n = mk(p, N_CMP, t0);
    n->a = first;
    n->kids = v.v;
    n->kwn = v.names;
    n->n_kids = v.n;
    return n;
}

static struct node *not_expr(struct parser *p)
{
    struct tok *t = cur(p);
    if (accept_name(p, "not")) {
        struct node *n = mk(p, N_NOT, t);
        n->a = not_expr(p);
        return n;
    }
    return compare(p);
}

static struct node *and_expr(struct parser *p)
{
    struct node *n = not_expr(p);
    while (is_name(cur(p), "and")) {
        struct tok *t = &p->t[p->i++];
        struct node *x = mk(p, N_AND, t);
        x->a = n;
        x->b = not_expr(p);
        n = x;
    }
    return n;
}

static struct node *or_expr(struct parser *p)
{
    struct node *n = and_expr(p);
    while (is_name(cur(p), "or")) {
        struct tok *t = &p->t[p->i++];
        struct node *x = mk(p, N_OR, t);
        x->a = n;
        x->b = and_expr(p);
        n = x;
    }
    return n;
}

static struct node *expr(struct parser *p)
{
    struct node *n = or_expr(p);
    while (is_name(cur(p), "if")) {
        struct tok *t = &p->t[p->i++];
        struct node *c = mk(p, N_COND, t);
        c->a = n;
        c->b = or_expr(p);
        if (accept_name(p, "else"))
            c->c = expr(p);
        n = c;
    }
    return n;
}

/* ---- statements ---- */

static struct node *body(struct parser *p, const char *const *ends, const char **which);

static void end_tag(struct parser *p)
{
    if (cur(p)->t != T_BE)
        perr(p, cur(p), "expected the end of the block tag (%%}), found '%.*s'", (int)cur(p)->n, cur(p)->p);
    p->i++;
}

static struct node *st_if(struct parser *p, struct tok *at)
{
    struct node *n = mk(p, N_IF, at);
    n->a = expr(p);
    end_tag(p);
    static const char *const ends[] = {"elif", "else", "endif", NULL};
    const char *w;
    n->b = body(p, ends, &w);
    struct tok *t = &p->t[p->i - 1];
    if (!strcmp(w, "elif")) {
        n->c = st_if(p, t);
        return n;
    }
    end_tag(p);
    if (!strcmp(w, "else")) {
        static const char *const e2[] = {"endif", NULL};
        n->c = body(p, e2, &w);
        end_tag(p);
    }
    return n;
}

static void targets(struct parser *p, struct nvec *v)
{
    bool paren = accept_op(p, "(");
    do {
        struct tok *t = cur(p);
        struct node *x = mk(p, N_NAME, t);
        x->op = expect_name(p);
        if (accept_op(p, ".")) { /* ns.attr, for set */
            x->k = N_ATTR;
            x->a = mk(p, N_NAME, t);
            x->a->op = x->op;
            x->op = expect_name(p);
        }
        nv_push(p, v, x, NULL);
    } while (accept_op(p, ","));
    if (paren)
        expect_op(p, ")");
}

static struct node *st_for(struct parser *p, struct tok *at)
{
    struct node *n = mk(p, N_FOR, at);
    struct nvec v = {0};
    targets(p, &v);
    for (size_t i = 0; i < v.n; i++)
        if (v.v[i]->k != N_NAME)
            perr(p, at, "a for loop target must be a name");
    n->kids = v.v;
    n->n_kids = v.n;
    if (!accept_name(p, "in"))
        perr(p, cur(p), "expected 'in' in the for loop");
    n->a = or_expr(p);
    if (accept_name(p, "if"))
        n->d = or_expr(p);
    if (is_name(cur(p), "recursive"))
        perr(p, cur(p), "recursive for loops are not supported");
    end_tag(p);
    static const char *const ends[] = {"else", "endfor", NULL};
    const char *w;
    n->b = body(p, ends, &w);
    end_tag(p);
    if (!strcmp(w, "else")) {
        static const char *const e2[] = {"endfor", NULL};
        n->c = body(p, e2, &w);
        end_tag(p);
    }
    return n;
}

static struct node *st_set(struct parser *p, struct tok *at)
{
    struct nvec v = {0};
    targets(p, &v);
    if (accept_op(p, "=")) {
        struct node *n = mk(p, N_SET, at);
        n->kids = v.v;
        n->n_kids = v.n;
        struct tok *t = cur(p);
        n->d = expr(p);
        if (is_op(cur(p), ",")) {
            struct node *tu = mk(p, N_TUPLEX, t);
            struct nvec items = {0};
            nv_push(p, &items, n->d, NULL);
            while (accept_op(p, ",") && cur(p)->t != T_BE)
                nv_push(p, &items, expr(p), NULL);
            tu->kids = items.v;
            tu->n_kids = items.n;
            n->d = tu;
        }
        end_tag(p);
        return n;
    }
    if (v.n != 1 || v.v[0]->k != N_NAME)
        perr(p, at, "a block set assigns one name");
    struct node *n = mk(p, N_SETBLOCK, at);
    n->op = v.v[0]->op;
    if (accept_op(p, "|")) {
        n->a = filter_one(p, NULL);
        while (accept_op(p, "|"))
            n->a = filter_one(p, n->a);
    }
    end_tag(p);
    static const char *const ends[] = {"endset", NULL};
    const char *w;
    n->b = body(p, ends, &w);
    end_tag(p);
    return n;
}

/* macro parameters: names with optional defaults */
static void params(struct parser *p, struct node *n)
{
    struct nvec names = {0}, defs = {0};
    expect_op(p, "(");
    while (!accept_op(p, ")")) {
        if (names.n)
            expect_op(p, ",");
        struct tok *t = cur(p);
        struct node *x = mk(p, N_NAME, t);
        x->op = expect_name(p);
        nv_push(p, &names, x, NULL);
        if (accept_op(p, "="))
            nv_push(p, &defs, expr(p), x->op);
        else if (defs.n)
            perr(p, t, "parameter '%s' without a default follows one with a default", x->op);
    }
    n->kids = names.v;
    n->n_kids = names.n;
    n->kw = defs.v;
    n->kwn = defs.names;
    n->n_kw = defs.n;
}

static struct node *st_macro(struct parser *p, struct tok *at)
{
    struct node *n = mk(p, N_MACRO, at);
    n->op = expect_name(p);
    params(p, n);
    end_tag(p);
    static const char *const ends[] = {"endmacro", NULL};
    const char *w;
    n->b = body(p, ends, &w);
    end_tag(p);
    return n;
}

static struct node *st_call(struct parser *p, struct tok *at)
{
    struct node *n = mk(p, N_CALLBLOCK, at);
    if (is_op(cur(p), "("))
        params(p, n);
    n->a = expr(p);
    if (n->a->k != N_CALL)
        perr(p, at, "a call block needs a call expression");
    end_tag(p);
    static const char *const ends[] = {"endcall", NULL};
    const char *w;
    n->b = body(p, ends, &w);
    end_tag(p);
    return n;
}

static struct node *st_filter(struct parser *p, struct tok *at)
{
    struct node *n = mk(p, N_FILTERBLOCK, at);
    n->a = filter_one(p, NULL);
    while (accept_op(p, "|"))
        n->a = filter_one(p, n->a);
    end_tag(p);
    static const char *const ends[] = {"endfilter", NULL};
    const char *w;
    n->b = body(p, ends, &w);
    end_tag(p);
    return n;
}

static struct node *st_simple(struct parser *p, struct tok *at, enum nk k)
{
    struct node *n = mk(p, k, at);
    end_tag(p);
    return n;
}

static struct node *st_generation(struct parser *p, struct tok *at)
{
    end_tag(p);
    static const char *const ends[] = {"endgeneration", NULL};
    const char *w;
    struct node *n = body(p, ends, &w);
    end_tag(p);
    (void)at;
    return n;
}

/* A statement after {% whose name is at->... */
static struct node *statement(struct parser *p, struct tok *at)
{
    p->i++;
    if (is_name(at, "if"))
        return st_if(p, at);
    if (is_name(at, "for"))
        return st_for(p, at);
    if (is_name(at, "set"))
        return st_set(p, at);
    if (is_name(at, "macro"))
        return st_macro(p, at);
    if (is_name(at, "call"))
        return st_call(p, at);
    if (is_name(at, "filter"))
        return st_filter(p, at);
    if (is_name(at, "break"))
        return st_simple(p, at, N_BREAK);
    if (is_name(at, "continue"))
        return st_simple(p, at, N_CONTINUE);
    if (is_name(at, "generation"))
        return st_generation(p, at);
    perr(p, at, "unknown tag '%.*s'", (int)at->n, at->p);
}

/* Statements up to a block tag named in ends (NULL-terminated; ends NULL:
 * up to the end of the template). Leaves p after that name; *which names it. */
static struct node *body(struct parser *p, const char *const *ends, const char **which)
{
    struct tok *start = cur(p);
    struct node *b = mk(p, N_BODY, start);
    struct nvec v = {0};
    for (;;) {
        struct tok *t = cur(p);
        if (t->t == T_EOF) {
            if (ends) {
                const char *want = ends[0];
                for (size_t i = 0; ends[i]; i++)
                    if (!strncmp(ends[i], "end", 3))
                        want = ends[i];
                perr(p, start, "unexpected end of template: missing {%% %s %%}", want);
            }
            break;
        }
        if (t->t == T_TEXT) {
            struct node *x = mk(p, N_TEXT, t);
            struct str *s = palloc(p, sizeof *s + t->n + 1);
            s->n = t->n;
            memcpy(s->s, t->p, t->n);
            x->lit.t = V_STR;
            x->lit.u.s = s;
            nv_push(p, &v, x, NULL);
            p->i++;
        } else if (t->t == T_VB) {
            p->i++;
            struct node *x = mk(p, N_OUT, t);
            x->a = expr(p);
            if (cur(p)->t != T_VE)
                perr(p, cur(p), "expected the end of the print tag (}}), found '%.*s'", (int)cur(p)->n, cur(p)->p);
            p->i++;
            nv_push(p, &v, x, NULL);
        } else if (t->t == T_BB) {
            p->i++;
            struct tok *nm = cur(p);
            if (nm->t != T_NAME)
                perr(p, nm, "expected a tag name");
            for (size_t i = 0; ends && ends[i]; i++)
                if (is_name(nm, ends[i])) {
                    p->i++;
                    *which = ends[i];
                    b->kids = v.v;
                    b->n_kids = v.n;
                    return b;
                }
            if ((nm->n > 3 && !memcmp(nm->p, "end", 3)) || is_name(nm, "else") || is_name(nm, "elif"))
                perr(p, nm, "unexpected '%.*s'", (int)nm->n, nm->p);
            nv_push(p, &v, statement(p, nm), NULL);
        } else {
            perr(p, t, "unexpected %s", tok_desc(t));
        }
    }
    b->kids = v.v;
    b->n_kids = v.n;
    return b;
}

struct node *tmpl_parse_src(struct arena *a, const char *src, size_t len, struct err *e)
{
    struct parser p;
    memset(&p, 0, sizeof p);
    p.ar = a;
    p.e = e;
    if (tmpl_lex(a, src, len, &p.t, &p.n, e))
        return NULL;
    struct node *volatile root = NULL;
    if (!setjmp(p.fail))
        root = body(&p, NULL, NULL);
    free(p.t);
    return root;
}
