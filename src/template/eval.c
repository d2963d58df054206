/*
 * eval.c — renders the AST: scopes (the root frame holds the variables;
 * for loops and macro calls open a frame), Jinja2's attribute and item
 * lookup, operators with Python's types, loops with `loop`, macros and call
 * blocks, and the limits that keep a hostile template bounded.
 */
#include "template/tmpl_int.h"

#include <math.h>
#include <stdio.h>
#include <time.h>

_Noreturn void rs_fail(struct rstate *r, const struct node *at, enum err_code code, const char *fmt, ...)
{
    char msg[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (!at)
        at = r->at;
    if (at)
        err_set(r->e, code, "line %d col %d: %s", at->line, at->col, msg);
    else
        err_set(r->e, code, "%s", msg);
    longjmp(r->fail, 1);
}

void rs_step(struct rstate *r, const struct node *at)
{
    if (++r->steps > r->max_steps)
        rs_fail(r, at, ERR_EXHAUSTED, "the template ran more than %llu steps", (unsigned long long)r->max_steps);
}

static struct val eval(struct rstate *r, const struct node *n);
static void exec_body(struct rstate *r, const struct node *b, struct frame *fr);

static struct frame *frame_new(struct rstate *r, struct frame *up)
{
    struct frame *f = ar_alloc(&r->ar, sizeof *f);
    if (!f)
        rs_fail(r, NULL, ERR_EXHAUSTED, "the render needs more memory than its limit");
    f->up = up;
    return f;
}

static void frame_set(struct rstate *r, struct frame *f, const char *name, struct val v)
{
    struct val *old = dict_get(&f->vars, name, strlen(name));
    if (old) {
        *old = v;
        return;
    }
    struct val k = {.t = V_STR};
    struct str *s = ar_alloc(&r->ar, sizeof *s + strlen(name) + 1);
    if (!s)
        rs_fail(r, NULL, ERR_EXHAUSTED, "the render needs more memory than its limit");
    s->n = strlen(name);
    memcpy(s->s, name, s->n);
    k.u.s = s;
    dict_set(r, &f->vars, k, v);
}

static struct val lookup(struct rstate *r, struct frame *f, const char *name)
{
    size_t n = strlen(name);
    for (; f; f = f->up) {
        struct val *v = dict_get(&f->vars, name, n);
        if (v)
            return *v;
    }
    int g = bi_global(name);
    if (g >= 0) {
        struct val v = {.t = V_FUNC, .id = g};
        return v;
    }
    struct val u = {.t = V_UNDEF, .uname = name};
    return u;
}

/* ---- lookups ---- */

_Noreturn static void undefined_error(struct rstate *r, const struct node *at, const struct val *u)
{
    if (u->uname)
        rs_fail(r, at, ERR_INVALID, "'%s' is undefined", u->uname);
    rs_fail(r, at, ERR_INVALID, "an undefined value was used");
}

static struct val undef_named(struct rstate *r, const struct val *obj, const char *name)
{
    struct sbuf *b = rs_buf(r);
    sbuf_addf(b, "'%s object' has no attribute '%s'", v_type_name(obj), name);
    struct val u = {.t = V_UNDEF};
    if (!sbuf_failed(b))
        u.uname = v_str(r, b->buf, b->len).u.s->s;
    sbuf_release(b);
    return u;
}

static struct val getattr_v(struct rstate *r, const struct node *at, const struct val *obj, const char *name)
{
    if (obj->t == V_UNDEF)
        undefined_error(r, at, obj);
    if (obj->t == V_LOOP)
        return bi_loop_attr(r, at, obj->u.lp, name);
    int m = bi_method(obj, name);
    if (m >= 0) {
        struct val v = {.t = V_METHOD, .id = m};
        v.self = ar_alloc(&r->ar, sizeof *v.self);
        if (!v.self)
            rs_fail(r, at, ERR_EXHAUSTED, "the render needs more memory than its limit");
        *v.self = *obj;
        return v;
    }
    if (obj->t == V_DICT || obj->t == V_NS) {
        struct val *x = dict_get(obj->u.d, name, strlen(name));
        if (x)
            return *x;
    }
    return undef_named(r, obj, name);
}

static struct val getitem_v(struct rstate *r, const struct node *at, const struct val *obj, const struct val *key)
{
    if (obj->t == V_UNDEF)
        undefined_error(r, at, obj);
    if (obj->t == V_DICT || obj->t == V_NS) {
        struct val *x = dict_getv(obj->u.d, key);
        if (x)
            return *x;
    } else if ((obj->t == V_LIST || obj->t == V_STR) && (key->t == V_INT || key->t == V_BOOL)) {
        int64_t i = key->t == V_INT ? key->u.i : key->u.b;
        if (obj->t == V_LIST) {
            int64_t n = (int64_t)obj->u.l->n;
            if (i < 0)
                i += n;
            if (i >= 0 && i < n)
                return obj->u.l->v[i];
        } else {
            int64_t n = (int64_t)utf8_len(obj->u.s->s, obj->u.s->n);
            if (i < 0)
                i += n;
            if (i >= 0 && i < n) {
                size_t a = utf8_off(obj->u.s->s, obj->u.s->n, (size_t)i);
                size_t b = utf8_off(obj->u.s->s, obj->u.s->n, (size_t)i + 1);
                return v_str(r, obj->u.s->s + a, b - a);
            }
        }
    }
    if (key->t == V_STR)
        return getattr_v(r, at, obj, key->u.s->s);
    struct val u = {.t = V_UNDEF};
    return u;
}

static int64_t slice_idx(struct rstate *r, const struct node *at, const struct node *x, int64_t dflt, int64_t len)
{
    if (!x)
        return dflt;
    struct val v = eval(r, x);
    if (v.t == V_NONE)
        return dflt;
    if (v.t != V_INT)
        rs_fail(r, at, ERR_INVALID, "slice indices must be integers or None");
    int64_t i = v.u.i;
    if (i < 0)
        i += len;
    return i;
}

static struct val slice_v(struct rstate *r, const struct node *n)
{
    struct val obj = eval(r, n->a);
    if (obj.t != V_LIST && obj.t != V_STR)
        rs_fail(r, n, ERR_INVALID, "'%s' object is not subscriptable with a slice", v_type_name(&obj));
    int64_t len = obj.t == V_LIST ? (int64_t)obj.u.l->n : (int64_t)utf8_len(obj.u.s->s, obj.u.s->n);
    int64_t step = 1;
    if (n->d) {
        struct val s = eval(r, n->d);
        if (s.t != V_NONE && (s.t != V_INT || s.u.i == 0))
            rs_fail(r, n, ERR_INVALID, "slice step must be a non-zero integer");
        if (s.t == V_INT)
            step = s.u.i;
    }
    int64_t lo = slice_idx(r, n, n->b, step > 0 ? 0 : len - 1, len);
    int64_t hi = slice_idx(r, n, n->c, step > 0 ? len : -1, len);
    if (n->c && step < 0 && hi < -1)
        hi = -1;
    /* clamp as Python does */
    if (step > 0) {
        lo = lo < 0 ? 0 : lo > len ? len : lo;
        hi = hi < 0 ? 0 : hi > len ? len : hi;
    } else {
        lo = lo < -1 ? -1 : lo >= len ? len - 1 : lo;
        hi = hi < -1 ? -1 : hi >= len ? len - 1 : hi;
    }
    struct val out = obj.t == V_LIST ? v_list(r, 0) : v_none();
    struct sbuf *b = rs_buf(r);
    for (int64_t i = lo; step > 0 ? i < hi : i > hi; i += step) {
        rs_step(r, n);
        if (obj.t == V_LIST) {
            list_push(r, out.u.l, obj.u.l->v[i]);
        } else {
            size_t a = utf8_off(obj.u.s->s, obj.u.s->n, (size_t)i), z = utf8_off(obj.u.s->s, obj.u.s->n, (size_t)i + 1);
            sbuf_add(b, obj.u.s->s + a, z - a);
        }
    }
    if (obj.t == V_STR) {
        out = v_str(r, b->buf ? b->buf : "", b->len);
        sbuf_release(b);
    }
    return out;
}

/* ---- operators ---- */

static bool num(const struct val *v)
{
    return v->t == V_INT || v->t == V_FLOAT || v->t == V_BOOL;
}

static double dbl(const struct val *v)
{
    return v->t == V_FLOAT ? v->u.f : v->t == V_INT ? (double)v->u.i : v->u.b;
}

static int64_t i64(const struct val *v)
{
    return v->t == V_INT ? v->u.i : v->u.b;
}

_Noreturn static void bad_operands(struct rstate *r, const struct node *n, const struct val *a, const struct val *b)
{
    if (a->t == V_UNDEF)
        undefined_error(r, n, a);
    if (b->t == V_UNDEF)
        undefined_error(r, n, b);
    rs_fail(r, n, ERR_INVALID, "unsupported operand type(s) for %s: '%s' and '%s'", n->op, v_type_name(a),
            v_type_name(b));
}

static struct val repeat(struct rstate *r, const struct node *n, const struct val *seq, int64_t k)
{
    if (k < 0)
        k = 0;
    if (seq->t == V_STR) {
        if (seq->u.s->n && (uint64_t)k > r->max_output / seq->u.s->n)
            rs_fail(r, n, ERR_EXHAUSTED, "a repeated string passes the output limit (%zu bytes)", r->max_output);
        struct sbuf *b = rs_buf(r);
        for (int64_t i = 0; i < k; i++)
            sbuf_add(b, seq->u.s->s, seq->u.s->n);
        struct val v = v_str(r, b->buf ? b->buf : "", b->len);
        sbuf_release(b);
        return v;
    }
    struct val out = v_list(r, 0);
    for (int64_t i = 0; i < k; i++)
        for (size_t j = 0; j < seq->u.l->n; j++) {
            rs_step(r, n);
            list_push(r, out.u.l, seq->u.l->v[j]);
        }
    return out;
}

static struct val arith(struct rstate *r, const struct node *n, const struct val *a, const struct val *b)
{
    const char *op = n->op;
    bool ints = (a->t == V_INT || a->t == V_BOOL) && (b->t == V_INT || b->t == V_BOOL);
    double x = dbl(a), y = dbl(b);
    int64_t i = ints ? i64(a) : 0, j = ints ? i64(b) : 0;
    if (!strcmp(op, "+"))
        return ints ? v_int((int64_t)((uint64_t)i + (uint64_t)j)) : v_float(x + y);
    if (!strcmp(op, "-"))
        return ints ? v_int((int64_t)((uint64_t)i - (uint64_t)j)) : v_float(x - y);
    if (!strcmp(op, "*"))
        return ints ? v_int((int64_t)((uint64_t)i * (uint64_t)j)) : v_float(x * y);
    if ((!strcmp(op, "/") || !strcmp(op, "//") || !strcmp(op, "%")) && y == 0)
        rs_fail(r, n, ERR_INVALID, "division by zero");
    if (!strcmp(op, "/"))
        return v_float(x / y);
    if (!strcmp(op, "//")) {
        if (ints && !(i == INT64_MIN && j == -1)) {
            int64_t q = i / j;
            return v_int((i % j != 0 && ((i < 0) != (j < 0))) ? q - 1 : q);
        }
        return v_float(floor(x / y));
    }
    if (!strcmp(op, "%")) {
        if (ints && j != -1) {
            int64_t m = i % j;
            return v_int(m != 0 && ((m < 0) != (j < 0)) ? m + j : m);
        }
        double m = fmod(x, y);
        return v_float(m != 0 && ((m < 0) != (y < 0)) ? m + y : m);
    }
    if (ints && j >= 0) {
        int64_t p = 1;
        for (int64_t k = 0; k < j && k < 64; k++)
            p = (int64_t)((uint64_t)p * (uint64_t)i);
        return v_int(p);
    }
    return v_float(pow(x, y));
}

static struct val binary(struct rstate *r, const struct node *n)
{
    struct val a = eval(r, n->a), b = eval(r, n->b);
    const char *op = n->op;
    if (!strcmp(op, "~")) {
        struct sbuf *s = rs_buf(r);
        v_to_str(r, &a, s);
        v_to_str(r, &b, s);
        if (sbuf_failed(s))
            rs_fail(r, n, ERR_NOMEM, "out of memory");
        struct val v = v_str(r, s->buf ? s->buf : "", s->len);
        sbuf_release(s);
        return v;
    }
    if (num(&a) && num(&b))
        return arith(r, n, &a, &b);
    if (!strcmp(op, "+") && a.t == b.t && (a.t == V_STR || a.t == V_LIST)) {
        if (a.t == V_STR) {
            if (a.u.s->n + b.u.s->n > r->max_output)
                rs_fail(r, n, ERR_EXHAUSTED, "a string passes the output limit (%zu bytes)", r->max_output);
            struct val v = v_str(r, NULL, a.u.s->n + b.u.s->n);
            memcpy(v.u.s->s, a.u.s->s, a.u.s->n);
            memcpy(v.u.s->s + a.u.s->n, b.u.s->s, b.u.s->n);
            return v;
        }
        struct val v = v_list(r, a.u.l->n + b.u.l->n);
        for (size_t i = 0; i < a.u.l->n; i++)
            list_push(r, v.u.l, a.u.l->v[i]);
        for (size_t i = 0; i < b.u.l->n; i++)
            list_push(r, v.u.l, b.u.l->v[i]);
        return v;
    }
    if (!strcmp(op, "*") && (a.t == V_STR || a.t == V_LIST) && (b.t == V_INT || b.t == V_BOOL))
        return repeat(r, n, &a, i64(&b));
    if (!strcmp(op, "*") && (b.t == V_STR || b.t == V_LIST) && (a.t == V_INT || a.t == V_BOOL))
        return repeat(r, n, &b, i64(&a));
    bad_operands(r, n, &a, &b);
}

static bool contains(struct rstate *r, const struct node *n, const struct val *item, const struct val *c)
{
    switch (c->t) {
    case V_STR:
        if (item->t != V_STR)
            rs_fail(r, n, ERR_INVALID, "'in <string>' requires string as left operand, not %s", v_type_name(item));
        if (!item->u.s->n)
            return true;
        for (size_t i = 0; i + item->u.s->n <= c->u.s->n; i++)
            if (!memcmp(c->u.s->s + i, item->u.s->s, item->u.s->n))
                return true;
        return false;
    case V_LIST:
        for (size_t i = 0; i < c->u.l->n; i++)
            if (v_eq(&c->u.l->v[i], item))
                return true;
        return false;
    case V_DICT:
    case V_NS:
        return dict_getv(c->u.d, item) != NULL;
    case V_UNDEF:
        return false; /* Jinja2's Undefined iterates as empty */
    default:
        rs_fail(r, n, ERR_INVALID, "argument of type '%s' is not iterable", v_type_name(c));
    }
}

static bool compare_one(struct rstate *r, const struct node *n, const char *op, const struct val *a,
                        const struct val *b)
{
    if (!strcmp(op, "=="))
        return v_eq(a, b);
    if (!strcmp(op, "!="))
        return !v_eq(a, b);
    if (!strcmp(op, "in"))
        return contains(r, n, a, b);
    if (!strcmp(op, "notin"))
        return !contains(r, n, a, b);
    if (a->t == V_UNDEF || b->t == V_UNDEF)
        undefined_error(r, n, a->t == V_UNDEF ? a : b);
    int c = v_cmp(r, n, a, b);
    if (!strcmp(op, "<"))
        return c < 0;
    if (!strcmp(op, "<="))
        return c <= 0;
    if (!strcmp(op, ">"))
        return c > 0;
    return c >= 0;
}

static struct val cmp_chain(struct rstate *r, const struct node *n)
{
    struct val a = eval(r, n->a);
    for (size_t i = 0; i < n->n_kids; i++) {
        struct val b = eval(r, n->kids[i]);
        if (!compare_one(r, n, n->kwn[i], &a, &b))
            return v_bool(false);
        a = b;
    }
    return v_bool(true);
}

/* ---- calls ---- */

struct argbuf {
    struct val pos[16], kwv[16];
    const char *kwn[16];
    struct call_args a;
};

static void eval_args(struct rstate *r, const struct node *n, struct argbuf *ab)
{
    if (n->n_kids > 16 || n->n_kw > 16)
        rs_fail(r, n, ERR_INVALID, "more than 16 arguments in a call");
    for (size_t i = 0; i < n->n_kids; i++)
        ab->pos[i] = eval(r, n->kids[i]);
    for (size_t i = 0; i < n->n_kw; i++) {
        ab->kwv[i] = eval(r, n->kw[i]);
        ab->kwn[i] = n->kwn[i];
    }
    ab->a = (struct call_args){ab->pos, n->n_kids, ab->kwv, ab->kwn, n->n_kw};
}

/* Binds a macro's (or a caller's) parameters in f. */
static void bind_params(struct rstate *r, const struct node *m, struct frame *f, const struct call_args *a)
{
    for (size_t i = 0; i < m->n_kids; i++) {
        const char *name = m->kids[i]->op;
        struct val v = {.t = V_UNDEF, .uname = name};
        bool set = false;
        if (i < a->n_pos) {
            v = a->pos[i];
            set = true;
        }
        for (size_t k = 0; k < a->n_kw; k++)
            if (!strcmp(a->kwn[k], name)) {
                v = a->kwv[k];
                set = true;
            }
        for (size_t k = 0; !set && k < m->n_kw; k++)
            if (!strcmp(m->kwn[k], name)) {
                struct frame *saved = r->cur;
                r->cur = f;
                v = eval(r, m->kw[k]);
                r->cur = saved;
                set = true;
            }
        frame_set(r, f, name, v);
    }
    struct val vargs = v_list(r, 0);
    for (size_t i = m->n_kids; i < a->n_pos; i++)
        list_push(r, vargs.u.l, a->pos[i]);
    frame_set(r, f, "varargs", vargs);
}

/* Renders body b in frame f into a new string. */
static struct val capture(struct rstate *r, const struct node *b, struct frame *f)
{
    struct sbuf *out = rs_buf(r), *saved = r->out;
    r->out = out;
    exec_body(r, b, f);
    r->out = saved;
    r->ctl = 0;
    if (sbuf_failed(out))
        rs_fail(r, b, ERR_NOMEM, "out of memory");
    struct val v = v_str(r, out->buf ? out->buf : "", out->len);
    sbuf_release(out);
    return v;
}

static struct val call_macro(struct rstate *r, const struct node *at, const struct val *f, const struct call_args *a,
                             const struct val *caller)
{
    if (++r->depth > r->max_depth)
        rs_fail(r, at, ERR_EXHAUSTED, "macro calls nested deeper than %d", r->max_depth);
    const struct node *m = f->u.m.n;
    struct frame *fr = frame_new(r, f->u.m.fr);
    bind_params(r, m, fr, a);
    if (caller)
        frame_set(r, fr, "caller", *caller);
    struct val v = capture(r, m->b, fr);
    r->depth--;
    return v;
}

struct val ev_call_value(struct rstate *r, const struct node *at, const struct val *f, const struct call_args *a)
{
    rs_step(r, at);
    switch (f->t) {
    case V_MACRO:
    case V_CALLER:
        return call_macro(r, at, f, a, NULL);
    case V_FUNC:
        return bi_call_global(r, at, f->id, a);
    case V_METHOD:
        return bi_call_method(r, at, f, a);
    case V_UNDEF:
        undefined_error(r, at, f);
    default:
        rs_fail(r, at, ERR_INVALID, "'%s' object is not callable", v_type_name(f));
    }
}

static struct val call_expr(struct rstate *r, const struct node *n)
{
    struct val f = eval(r, n->a);
    struct argbuf ab;
    eval_args(r, n, &ab);
    return ev_call_value(r, n, &f, &ab.a);
}

static struct val filter_expr(struct rstate *r, const struct node *n)
{
    struct val x = n->a ? eval(r, n->a) : *r->hole;
    struct argbuf ab;
    eval_args(r, n, &ab);
    return bi_filter(r, n, n->op, &x, &ab.a);
}

static struct val test_expr(struct rstate *r, const struct node *n)
{
    struct val x = eval(r, n->a);
    struct argbuf ab;
    eval_args(r, n, &ab);
    bool b = bi_test(r, n, n->op, &x, &ab.a);
    return v_bool(n->neg ? !b : b);
}

static struct val seq_literal(struct rstate *r, const struct node *n)
{
    if (n->k == N_DICTX) {
        struct val d = v_dict(r, n->n_kids);
        for (size_t i = 0; i < n->n_kids; i++)
            dict_set(r, d.u.d, eval(r, n->kids[i]), eval(r, n->kw[i]));
        return d;
    }
    struct val l = v_list(r, n->n_kids);
    for (size_t i = 0; i < n->n_kids; i++)
        list_push(r, l.u.l, eval(r, n->kids[i]));
    return l;
}


static struct val eval_inner(struct rstate *r, const struct node *n)
{
    switch (n->k) {
    case N_LIT:
        return n->lit;
    case N_NAME:
        return lookup(r, r->cur, n->op);
    case N_LISTX:
    case N_TUPLEX:
    case N_DICTX:
        return seq_literal(r, n);
    case N_ATTR: {
        struct val o = eval(r, n->a);
        return getattr_v(r, n, &o, n->op);
    }
    case N_ITEM: {
        struct val o = eval(r, n->a), k = eval(r, n->b);
        return getitem_v(r, n, &o, &k);
    }
    case N_SLICE:
        return slice_v(r, n);
    case N_CALL:
        return call_expr(r, n);
    case N_FILTER:
        return filter_expr(r, n);
    case N_TEST:
        return test_expr(r, n);
    case N_NOT: {
        struct val v = eval(r, n->a);
        return v_bool(!v_truthy(&v));
    }
    case N_NEG:
    case N_POS: {
        struct val v = eval(r, n->a);
        if (v.t == V_INT || v.t == V_BOOL)
            return v_int(n->k == N_NEG ? -(int64_t)i64(&v) : i64(&v));
        if (v.t == V_FLOAT)
            return v_float(n->k == N_NEG ? -v.u.f : v.u.f);
        if (v.t == V_UNDEF)
            undefined_error(r, n, &v);
        rs_fail(r, n, ERR_INVALID, "bad operand type for unary %s: '%s'", n->k == N_NEG ? "-" : "+", v_type_name(&v));
    }
    case N_BIN:
        return binary(r, n);
    case N_CMP:
        return cmp_chain(r, n);
    case N_AND: {
        struct val a = eval(r, n->a);
        return v_truthy(&a) ? eval(r, n->b) : a;
    }
    case N_OR: {
        struct val a = eval(r, n->a);
        return v_truthy(&a) ? a : eval(r, n->b);
    }
    case N_COND: {
        struct val c = eval(r, n->b);
        if (v_truthy(&c))
            return eval(r, n->a);
        if (n->c)
            return eval(r, n->c);
        struct val u = {.t = V_UNDEF};
        return u;
    }
    default:
        rs_fail(r, n, ERR_INTERNAL, "node %d is not an expression", (int)n->k);
    }
}

static struct val eval(struct rstate *r, const struct node *n)
{
    rs_step(r, n);
    if (++r->depth > r->max_depth)
        rs_fail(r, n, ERR_EXHAUSTED, "expression nested deeper than %d", r->max_depth);
    const struct node *saved = r->at;
    r->at = n;
    struct val v = eval_inner(r, n);
    r->at = saved;
    r->depth--;
    return v;
}

/* ---- statements ---- */

static void emit(struct rstate *r, const struct node *at, const char *s, size_t n)
{
    sbuf_add(r->out, s, n);
    if (sbuf_failed(r->out))
        rs_fail(r, at, ERR_NOMEM, "out of memory");
    if (r->out->len > r->max_output)
        rs_fail(r, at, ERR_EXHAUSTED, "the output passes its limit (%zu bytes)", r->max_output);
}

static void assign(struct rstate *r, const struct node *t, struct val v, struct frame *f)
{
    if (t->k == N_ATTR) {
        struct val ns = lookup(r, f, t->a->op);
        if (ns.t != V_NS)
            rs_fail(r, t, ERR_INVALID, "cannot assign attribute on non-namespace object '%s'", t->a->op);
        struct val k = v_cstr(r, t->op);
        dict_set(r, ns.u.d, k, v);
        return;
    }
    frame_set(r, f, t->op, v);
}

static void assign_targets(struct rstate *r, const struct node *at, struct node *const *ts, size_t n, struct val v,
                           struct frame *f)
{
    if (n == 1) {
        assign(r, ts[0], v, f);
        return;
    }
    if (v.t != V_LIST)
        rs_fail(r, at, ERR_INVALID, "cannot unpack a '%s' into %zu names", v_type_name(&v), n);
    if (v.u.l->n != n)
        rs_fail(r, at, ERR_INVALID, "%s values to unpack (expected %zu, got %zu)", v.u.l->n > n ? "too many" : "not enough",
                n, v.u.l->n);
    for (size_t i = 0; i < n; i++)
        assign(r, ts[i], v.u.l->v[i], f);
}

/* The items a for loop walks: a list's items, a dict's keys, a string's characters. */
struct val tmpl_iter_items(struct rstate *r, const struct node *at, const struct val *v)
{
    switch (v->t) {
    case V_LIST:
        return *v;
    case V_UNDEF:
        return v_list(r, 0);
    case V_DICT: {
        struct val l = v_list(r, v->u.d->n);
        for (size_t i = 0; i < v->u.d->n; i++)
            list_push(r, l.u.l, v->u.d->k[i]);
        return l;
    }
    case V_STR: {
        struct val l = v_list(r, 0);
        for (size_t i = 0; i < v->u.s->n;) {
            size_t j = i + 1;
            while (j < v->u.s->n && ((unsigned char)v->u.s->s[j] & 0xC0) == 0x80)
                j++;
            list_push(r, l.u.l, v_str(r, v->u.s->s + i, j - i));
            i = j;
        }
        return l;
    }
    default:
        rs_fail(r, at, ERR_INVALID, "'%s' object is not iterable", v_type_name(v));
    }
}

static void exec_for(struct rstate *r, const struct node *n, struct frame *outer)
{
    struct val src = eval(r, n->a);
    struct val items = tmpl_iter_items(r, n, &src);
    struct frame *f = frame_new(r, outer);
    if (n->d) { /* for x in xs if cond: the loop sees only the items that pass */
        struct val kept = v_list(r, 0);
        struct frame *saved = r->cur;
        r->cur = f;
        for (size_t i = 0; i < items.u.l->n; i++) {
            assign_targets(r, n, n->kids, n->n_kids, items.u.l->v[i], f);
            struct val c = eval(r, n->d);
            if (v_truthy(&c))
                list_push(r, kept.u.l, items.u.l->v[i]);
        }
        r->cur = saved;
        items = kept;
    }
    struct loopst *lp = ar_alloc(&r->ar, sizeof *lp);
    if (!lp)
        rs_fail(r, n, ERR_EXHAUSTED, "the render needs more memory than its limit");
    lp->n = items.u.l->n;
    lp->items = items.u.l->v;
    struct val lv = {.t = V_LOOP};
    lv.u.lp = lp;
    frame_set(r, f, "loop", lv);
    for (size_t i = 0; i < lp->n; i++) {
        rs_step(r, n);
        lp->i = i;
        assign_targets(r, n, n->kids, n->n_kids, lp->items[i], f);
        exec_body(r, n->b, f);
        if (r->ctl == 1) {
            r->ctl = 0;
            break;
        }
        r->ctl = 0;
    }
    if (!lp->n && n->c)
        exec_body(r, n->c, outer);
}

static void exec_stmt(struct rstate *r, const struct node *n, struct frame *f)
{
    rs_step(r, n);
    r->at = n;
    switch (n->k) {
    case N_TEXT:
        emit(r, n, n->lit.u.s->s, n->lit.u.s->n);
        break;
    case N_OUT: {
        struct val v = eval(r, n->a);
        if (v.t == V_STR) {
            emit(r, n, v.u.s->s, v.u.s->n);
        } else {
            struct sbuf *b = rs_buf(r);
            v_to_str(r, &v, b);
            emit(r, n, b->buf ? b->buf : "", b->len);
            sbuf_release(b);
        }
        break;
    }
    case N_IF: {
        struct val c = eval(r, n->a);
        if (v_truthy(&c))
            exec_body(r, n->b, f);
        else if (n->c)
            n->c->k == N_IF ? exec_stmt(r, n->c, f) : exec_body(r, n->c, f);
        break;
    }
    case N_FOR:
        exec_for(r, n, f);
        break;
    case N_SET:
        assign_targets(r, n, n->kids, n->n_kids, eval(r, n->d), f);
        break;
    case N_SETBLOCK:
    case N_FILTERBLOCK: {
        struct val v = capture(r, n->b, f);
        if (n->a) {
            const struct val *saved = r->hole;
            r->hole = &v;
            v = eval(r, n->a);
            r->hole = saved;
        }
        if (n->k == N_SETBLOCK)
            frame_set(r, f, n->op, v);
        else
            emit(r, n, v.u.s ? v.u.s->s : "", v.t == V_STR ? v.u.s->n : 0);
        break;
    }
    case N_MACRO: {
        struct val m = {.t = V_MACRO};
        m.u.m.n = n;
        m.u.m.fr = f;
        frame_set(r, f, n->op, m);
        break;
    }
    case N_CALLBLOCK: {
        struct val fn = eval(r, n->a->a);
        struct argbuf ab;
        eval_args(r, n->a, &ab);
        struct val caller = {.t = V_CALLER};
        caller.u.m.n = n;
        caller.u.m.fr = f;
        struct val v = fn.t == V_MACRO ? call_macro(r, n, &fn, &ab.a, &caller) : ev_call_value(r, n, &fn, &ab.a);
        struct val s = v_stringify(r, &v);
        emit(r, n, s.u.s->s, s.u.s->n);
        break;
    }
    case N_BREAK:
        r->ctl = 1;
        break;
    case N_CONTINUE:
        r->ctl = 2;
        break;
    case N_BODY:
        exec_body(r, n, f);
        break;
    default:
        rs_fail(r, n, ERR_INTERNAL, "node %d is not a statement", (int)n->k);
    }
}

static void exec_body(struct rstate *r, const struct node *b, struct frame *f)
{
    struct frame *saved = r->cur;
    for (size_t i = 0; i < b->n_kids && !r->ctl; i++) {
        r->cur = f;
        exec_stmt(r, b->kids[i], f);
    }
    r->cur = saved;
}

void tmpl_exec_root(struct rstate *r, const struct node *root)
{
    exec_body(r, root, r->root);
}
