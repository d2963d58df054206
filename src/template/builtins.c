/*
 * builtins.c — the filters, tests, globals and methods templates call, each
 * a table entry (name, function) as Jinja2 and Python define them:
 * filters (trim, tojson, length, items, join, default, selectattr, map, ...),
 * tests (defined, none, string, mapping, ...), globals (range, namespace,
 * raise_exception, strftime_now, dict) and str/dict methods (strip, split,
 * startswith, get, items, ...). The sandbox refuses the mutating methods
 * (list.append, dict.update, ...) as Hugging Face's immutable sandbox does.
 */
#define _GNU_SOURCE
#include "template/tmpl_int.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <time.h>

/* ---- arguments ---- */

/* positional argument i, or the keyword `name`; NULL when absent */
static const struct val *arg(const struct call_args *a, size_t i, const char *name)
{
    if (i < a->n_pos)
        return &a->pos[i];
    for (size_t k = 0; name && k < a->n_kw; k++)
        if (!strcmp(a->kwn[k], name))
            return &a->kwv[k];
    return NULL;
}

static bool arg_true(const struct call_args *a, size_t i, const char *name)
{
    const struct val *v = arg(a, i, name);
    return v && v_truthy(v);
}

static const struct str *need_str(struct rstate *r, const struct node *at, const struct val *v, const char *what)
{
    if (v->t != V_STR)
        rs_fail(r, at, ERR_INVALID, "%s: expected a string, got %s", what, v_type_name(v));
    return v->u.s;
}

static struct val as_str(struct rstate *r, const struct val *v)
{
    return v_stringify(r, v);
}

static struct val sb_val(struct rstate *r, struct sbuf *b)
{
    if (sbuf_failed(b))
        rs_fail(r, NULL, ERR_NOMEM, "out of memory");
    struct val v = v_str(r, b->buf ? b->buf : "", b->len);
    sbuf_release(b);
    return v;
}

/* ---- string helpers ---- */

static bool in_chars(const char *s, size_t n, const struct str *chars)
{
    for (size_t i = 0; i + n <= chars->n; i++)
        if (!memcmp(chars->s + i, s, n))
            return true;
    return false;
}

/* Python str.strip/lstrip/rstrip: whitespace, or the characters of chars */
static struct val strip_s(struct rstate *r, const struct str *s, const struct str *chars, bool left, bool right)
{
    size_t a = 0, z = s->n, l;
    while (left && a < z) {
        size_t cl = 1;
        while (a + cl < z && ((unsigned char)s->s[a + cl] & 0xC0) == 0x80)
            cl++;
        if (chars ? in_chars(s->s + a, cl, chars) : (l = py_space_at(s->s + a, z - a)) == cl)
            a += cl;
        else
            break;
    }
    while (right && z > a) {
        size_t k = z - 1;
        while (k > a && ((unsigned char)s->s[k] & 0xC0) == 0x80)
            k--;
        if (chars ? in_chars(s->s + k, z - k, chars) : py_space_at(s->s + k, z - k) == z - k)
            z = k;
        else
            break;
    }
    return v_str(r, s->s + a, z - a);
}

static struct val case_map(struct rstate *r, const struct str *s, int mode)
{
    /* mode 0 lower, 1 upper, 2 capitalize, 3 title (ASCII letters; other bytes kept) */
    struct val v = v_str(r, s->s, s->n);
    char *p = v.u.s->s;
    bool start = true;
    for (size_t i = 0; i < s->n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (mode == 0)
            p[i] = (char)tolower(c);
        else if (mode == 1)
            p[i] = (char)toupper(c);
        else if (mode == 2)
            p[i] = (char)(i == 0 ? toupper(c) : tolower(c));
        else {
            p[i] = (char)(start ? toupper(c) : tolower(c));
            start = !isalnum(c) && c < 0x80 && c != '\'';
        }
    }
    return v;
}

static struct val replace_s(struct rstate *r, const struct str *s, const struct str *old, const struct str *nw,
                            int64_t count)
{
    struct sbuf *b = rs_buf(r);
    size_t i = 0;
    int64_t done = 0;
    if (!old->n) {
        for (size_t k = 0; k <= s->n; k++) {
            if (count < 0 || done < count) {
                sbuf_add(b, nw->s, nw->n);
                done++;
            }
            if (k < s->n)
                sbuf_addch(b, s->s[k]);
        }
        return sb_val(r, b);
    }
    while (i < s->n) {
        if ((count < 0 || done < count) && i + old->n <= s->n && !memcmp(s->s + i, old->s, old->n)) {
            sbuf_add(b, nw->s, nw->n);
            i += old->n;
            done++;
        } else {
            sbuf_addch(b, s->s[i++]);
        }
        if (b->len > r->max_output)
            rs_fail(r, NULL, ERR_EXHAUSTED, "replace passes the output limit (%zu bytes)", r->max_output);
    }
    return sb_val(r, b);
}

static struct val split_s(struct rstate *r, const struct node *at, const struct str *s, const struct val *sepv,
                          int64_t maxsplit)
{
    struct val out = v_list(r, 0);
    if (!sepv || sepv->t == V_NONE) {
        size_t i = 0, l;
        while (i < s->n) {
            while (i < s->n && (l = py_space_at(s->s + i, s->n - i)))
                i += l;
            if (i >= s->n)
                break;
            size_t j = i;
            if (maxsplit >= 0 && (int64_t)out.u.l->n >= maxsplit) {
                size_t z = s->n;
                while (z > i && py_space_at(s->s + z - 1, 1))
                    z--;
                list_push(r, out.u.l, v_str(r, s->s + i, z - i));
                break;
            }
            while (j < s->n && !py_space_at(s->s + j, s->n - j))
                j++;
            list_push(r, out.u.l, v_str(r, s->s + i, j - i));
            i = j;
        }
        return out;
    }
    const struct str *sep = need_str(r, at, sepv, "split");
    if (!sep->n)
        rs_fail(r, at, ERR_INVALID, "split: empty separator");
    size_t i = 0;
    for (;;) {
        rs_step(r, at);
        const char *hit = NULL;
        if (maxsplit < 0 || (int64_t)out.u.l->n < maxsplit)
            for (size_t k = i; k + sep->n <= s->n; k++)
                if (!memcmp(s->s + k, sep->s, sep->n)) {
                    hit = s->s + k;
                    break;
                }
        if (!hit) {
            list_push(r, out.u.l, v_str(r, s->s + i, s->n - i));
            return out;
        }
        list_push(r, out.u.l, v_str(r, s->s + i, (size_t)(hit - s->s) - i));
        i = (size_t)(hit - s->s) + sep->n;
    }
}

static bool affix(const struct str *s, const struct val *p, bool end)
{
    if (p->t == V_LIST) {
        for (size_t i = 0; i < p->u.l->n; i++)
            if (affix(s, &p->u.l->v[i], end))
                return true;
        return false;
    }
    if (p->t != V_STR || p->u.s->n > s->n)
        return false;
    return !memcmp(s->s + (end ? s->n - p->u.s->n : 0), p->u.s->s, p->u.s->n);
}

/* ---- attribute paths (selectattr, map, sort: "a.b" and integers) ---- */

static struct val attr_path(struct rstate *r, const struct node *at, const struct val *x, const struct val *path)
{
    struct val cur = *x;
    if (path->t == V_INT) {
        if (cur.t == V_LIST && path->u.i >= 0 && (size_t)path->u.i < cur.u.l->n)
            return cur.u.l->v[path->u.i];
        struct val u = {.t = V_UNDEF};
        return u;
    }
    const struct str *p = need_str(r, at, path, "attribute");
    size_t i = 0;
    while (i <= p->n) {
        size_t j = i;
        while (j < p->n && p->s[j] != '.')
            j++;
        struct val *got = NULL;
        if (cur.t == V_DICT || cur.t == V_NS)
            got = dict_get(cur.u.d, p->s + i, j - i);
        if (!got) {
            struct val u = {.t = V_UNDEF};
            return u;
        }
        cur = *got;
        i = j + 1;
    }
    return cur;
}

/* ---- filters ---- */

typedef struct val (*filter_fn)(struct rstate *r, const struct node *at, const struct val *x, const struct call_args *a);

static struct val f_trim(struct rstate *r, const struct node *at, const struct val *x, const struct call_args *a)
{
    struct val s = as_str(r, x);
    const struct val *c = arg(a, 0, "chars");
    return strip_s(r, s.u.s, c && c->t == V_STR ? c->u.s : NULL, true, true);
}

static struct val f_tojson(struct rstate *r, const struct node *at, const struct val *x, const struct call_args *a)
{
    struct tojson_opts o = {-1, ", ", ": ", false};
    const struct val *ind = arg(a, 1, "indent"), *sep = arg(a, 2, "separators"), *sk = arg(a, 3, "sort_keys");
    if (ind && ind->t == V_INT)
        o.indent = ind->u.i < 0 ? 0 : ind->u.i > 64 ? 64 : (int)ind->u.i;
    else if (ind && ind->t == V_STR)
        rs_fail(r, at, ERR_INVALID, "tojson: a string indent is not supported");
    if (o.indent >= 0)
        o.item_sep = ",";
    if (sep && sep->t == V_LIST && sep->u.l->n == 2 && sep->u.l->v[0].t == V_STR && sep->u.l->v[1].t == V_STR) {
        o.item_sep = sep->u.l->v[0].u.s->s;
        o.key_sep = sep->u.l->v[1].u.s->s;
    } else if (sep && sep->t != V_NONE) {
        rs_fail(r, at, ERR_INVALID, "tojson: separators must be two strings");
    }
    o.sort_keys = sk && v_truthy(sk);
    struct sbuf *b = rs_buf(r);
    v_tojson(r, at, x, &o, 0, b);
    return sb_val(r, b);
}

static struct val f_length(struct rstate *r, const struct node *at, const struct val *x, const struct call_args *a)
{
    switch (x->t) {
    case V_STR:
        return v_int((int64_t)utf8_len(x->u.s->s, x->u.s->n));
    case V_LIST:
        return v_int((int64_t)x->u.l->n);
    case V_DICT:
    case V_NS:
        return v_int((int64_t)x->u.d->n);
    case V_UNDEF:
        return v_int(0);
    default:
        rs_fail(r, at, ERR_INVALID, "object of type '%s' has no len()", v_type_name(x));
    }
}

static struct val dict_items(struct rstate *r, const struct dict *d)
{
    struct val l = v_list(r, d->n);
    for (size_t i = 0; i < d->n; i++) {
        struct val p = v_list(r, 2);
        list_push(r, p.u.l, d->k[i]);
        list_push(r, p.u.l, d->v[i]);
        list_push(r, l.u.l, p);
    }
    return l;
}

static struct val f_items(struct rstate *r, const struct node *at, const struct val *x, const struct call_args *a)
{
    if (x->t == V_UNDEF)
        return v_list(r, 0);
    if (x->t != V_DICT && x->t != V_NS)
        rs_fail(r, at, ERR_INVALID, "items: can only get item pairs from a mapping, not %s", v_type_name(x));
    return dict_items(r, x->u.d);
}

static struct val f_join(struct rstate *r, const struct node *at, const struct val *x, const struct call_args *a)
{
    struct val l = tmpl_iter_items(r, at, x);
    const struct val *d = arg(a, 0, "d"), *attr = arg(a, 1, "attribute");
    struct sbuf *b = rs_buf(r);
    for (size_t i = 0; i < l.u.l->n; i++) {
        if (i && d)
            v_to_str(r, d, b);
        struct val it = attr ? attr_path(r, at, &l.u.l->v[i], attr) : l.u.l->v[i];
        v_to_str(r, &it, b);
        if (b->len > r->max_output)
            rs_fail(r, at, ERR_EXHAUSTED, "join passes the output limit (%zu bytes)", r->max_output);
    }
    return sb_val(r, b);
}

static struct val f_default(struct rstate *r, const struct node *at, const struct val *x, const struct call_args *a)
{
    const struct val *d = arg(a, 0, "default_value");
    if (x->t == V_UNDEF || (arg_true(a, 1, "boolean") && !v_truthy(x)))
        return d ? *d : v_cstr(r, "");
    return *x;
}

static struct val f_first(struct rstate *r, const struct node *at, const struct val *x, const struct call_args *a)
{
    struct val l = tmpl_iter_items(r, at, x);
    struct val u = {.t = V_UNDEF};
    return l.u.l->n ? l.u.l->v[0] : u;
}

static struct val f_last(struct rstate *r, const struct node *at, const struct val *x, const struct call_args *a)
{
    struct val l = tmpl_iter_items(r, at, x);
    struct val u = {.t = V_UNDEF};
    return l.u.l->n ? l.u.l->v[l.u.l->n - 1] : u;
}

static struct val f_list(struct rstate *r, const struct node *at, const struct val *x, const struct call_args *a)
{
    struct val l = tmpl_iter_items(r, at, x), out = v_list(r, l.u.l->n);
    for (size_t i = 0; i < l.u.l->n; i++)
        list_push(r, out.u.l, l.u.l->v[i]);
    return out;
}

static struct val f_unique(struct rstate *r, const struct node *at, const struct val *x, const struct call_args *a)
{
    struct val l = tmpl_iter_items(r, at, x), out = v_list(r, 0);
    const struct val *attr = arg(a, 1, "attribute");
    for (size_t i = 0; i < l.u.l->n; i++) {
        struct val k = attr ? attr_path(r, at, &l.u.l->v[i], attr) : l.u.l->v[i];
        bool seen = false;
        for (size_t j = 0; j < out.u.l->n && !seen; j++) {
            struct val kj = attr ? attr_path(r, at, &out.u.l->v[j], attr) : out.u.l->v[j];
            seen = v_eq(&k, &kj);
        }
        if (!seen)
            list_push(r, out.u.l, l.u.l->v[i]);
    }
    return out;
}

static struct val f_replace(struct rstate *r, const struct node *at, const struct val *x, const struct call_args *a)
{
    const struct val *o = arg(a, 0, "old"), *n = arg(a, 1, "new"), *c = arg(a, 2, "count");
    if (!o || !n)
        rs_fail(r, at, ERR_INVALID, "replace needs the old and the new string");
    struct val s = as_str(r, x), os = as_str(r, o), ns = as_str(r, n);
    return replace_s(r, s.u.s, os.u.s, ns.u.s, c && c->t == V_INT ? c->u.i : -1);
}

static struct val f_lower(struct rstate *r, const struct node *at, const struct val *x, const struct call_args *a)
{
    return case_map(r, as_str(r, x).u.s, 0);
}

static struct val f_upper(struct rstate *r, const struct node *at, const struct val *x, const struct call_args *a)
{
    return case_map(r, as_str(r, x).u.s, 1);
}

static struct val f_capitalize(struct rstate *r, const struct node *at, const struct val *x, const struct call_args *a)
{
    return case_map(r, as_str(r, x).u.s, 2);
}

static struct val f_title(struct rstate *r, const struct node *at, const struct val *x, const struct call_args *a)
{
    return case_map(r, as_str(r, x).u.s, 3);
}

static struct val f_string(struct rstate *r, const struct node *at, const struct val *x, const struct call_args *a)
{
    return as_str(r, x);
}

static struct val f_safe(struct rstate *r, const struct node *at, const struct val *x, const struct call_args *a)
{
    return *x;
}

static struct val f_int(struct rstate *r, const struct node *at, const struct val *x, const struct call_args *a)
{
    const struct val *d = arg(a, 0, "default");
    struct val dv = d ? *d : v_int(0);
    if (x->t == V_INT)
        return *x;
    if (x->t == V_BOOL)
        return v_int(x->u.b);
    if (x->t == V_FLOAT)
        return isfinite(x->u.f) ? v_int((int64_t)x->u.f) : dv;
    if (x->t == V_STR) {
        int64_t i;
        double f;
        struct val t = strip_s(r, x->u.s, NULL, true, true);
        if (!parse_i64(t.u.s->s, INT64_MIN, INT64_MAX, &i))
            return v_int(i);
        if (!parse_f64(t.u.s->s, -9.2e18, 9.2e18, &f))
            return v_int((int64_t)f);
    }
    return dv;
}

static struct val f_float(struct rstate *r, const struct node *at, const struct val *x, const struct call_args *a)
{
    const struct val *d = arg(a, 0, "default");
    if (x->t == V_INT || x->t == V_BOOL)
        return v_float(x->t == V_INT ? (double)x->u.i : x->u.b);
    if (x->t == V_FLOAT)
        return *x;
    double f;
    if (x->t == V_STR && !parse_f64(strip_s(r, x->u.s, NULL, true, true).u.s->s, -1e308, 1e308, &f))
        return v_float(f);
    return d ? *d : v_float(0);
}

static struct val f_abs(struct rstate *r, const struct node *at, const struct val *x, const struct call_args *a)
{
    if (x->t == V_INT)
        return v_int(x->u.i < 0 ? -x->u.i : x->u.i);
    if (x->t == V_FLOAT)
        return v_float(fabs(x->u.f));
    rs_fail(r, at, ERR_INVALID, "bad operand type for abs(): '%s'", v_type_name(x));
}

static struct val f_round(struct rstate *r, const struct node *at, const struct val *x, const struct call_args *a)
{
    const struct val *pv = arg(a, 0, "precision"), *mv = arg(a, 1, "method");
    int64_t prec = pv && pv->t == V_INT ? pv->u.i : 0;
    if (x->t != V_INT && x->t != V_FLOAT)
        rs_fail(r, at, ERR_INVALID, "round: expected a number, got %s", v_type_name(x));
    double f = x->t == V_INT ? (double)x->u.i : x->u.f, m = pow(10, (double)prec);
    const char *meth = mv && mv->t == V_STR ? mv->u.s->s : "common";
    double y = f * m;
    y = !strcmp(meth, "ceil") ? ceil(y) : !strcmp(meth, "floor") ? floor(y) : round(y);
    return v_float(y / m);
}

/* Jinja2's indent: every line after the first (and the first with first=true)
 * gets the indentation; empty lines only with blank=true. */
static struct val f_indent(struct rstate *r, const struct node *at, const struct val *x, const struct call_args *a)
{
    const struct val *w = arg(a, 0, "width");
    bool first = arg_true(a, 1, "first"), blank = arg_true(a, 2, "blank");
    struct sbuf *ind = rs_buf(r);
    if (w && w->t == V_STR)
        sbuf_add(ind, w->u.s->s, w->u.s->n);
    else
        for (int64_t i = 0; i < (w && w->t == V_INT ? w->u.i : 4) && i < 1000; i++)
            sbuf_addch(ind, ' ');
    struct val s = as_str(r, x);
    struct sbuf *b = rs_buf(r);
    if (first)
        sbuf_add(b, ind->buf ? ind->buf : "", ind->len);
    /* the lines of s + "\n" (so a trailing newline makes no extra line) */
    size_t i = 0, n = s.u.s->n;
    bool line0 = true;
    while (i < n) {
        size_t j = i;
        while (j < n && s.u.s->s[j] != '\n')
            j++;
        if (!line0) {
            sbuf_addch(b, '\n');
            if (blank || j > i)
                sbuf_add(b, ind->buf ? ind->buf : "", ind->len);
        }
        sbuf_add(b, s.u.s->s + i, j - i);
        line0 = false;
        i = j + 1;
        if (b->len > r->max_output)
            rs_fail(r, at, ERR_EXHAUSTED, "indent passes the output limit (%zu bytes)", r->max_output);
    }
    return sb_val(r, b);
}

/* select/reject(test, args...) and selectattr/rejectattr(attr, test, args...) */
static struct val select_common(struct rstate *r, const struct node *at, const struct val *x, const struct call_args *a,
                                bool by_attr, bool keep)
{
    struct val l = tmpl_iter_items(r, at, x), out = v_list(r, 0);
    size_t t0 = by_attr ? 1 : 0;
    if (by_attr && !a->n_pos)
        rs_fail(r, at, ERR_INVALID, "selectattr/rejectattr need an attribute");
    const char *test = NULL;
    if (a->n_pos > t0) {
        test = need_str(r, at, &a->pos[t0], "test name")->s;
        if (!bi_test_exists(test))
            rs_fail(r, at, ERR_INVALID, "no test named '%s'", test);
    }
    struct call_args rest = {a->pos + (a->n_pos > t0 ? t0 + 1 : a->n_pos),
                             a->n_pos > t0 ? a->n_pos - t0 - 1 : 0, NULL, NULL, 0};
    for (size_t i = 0; i < l.u.l->n; i++) {
        rs_step(r, at);
        struct val it = by_attr ? attr_path(r, at, &l.u.l->v[i], &a->pos[0]) : l.u.l->v[i];
        bool ok = test ? bi_test(r, at, test, &it, &rest) : v_truthy(&it);
        if (ok == keep)
            list_push(r, out.u.l, l.u.l->v[i]);
    }
    return out;
}

static struct val f_select(struct rstate *r, const struct node *at, const struct val *x, const struct call_args *a)
{
    return select_common(r, at, x, a, false, true);
}

static struct val f_reject(struct rstate *r, const struct node *at, const struct val *x, const struct call_args *a)
{
    return select_common(r, at, x, a, false, false);
}

static struct val f_selectattr(struct rstate *r, const struct node *at, const struct val *x, const struct call_args *a)
{
    return select_common(r, at, x, a, true, true);
}

static struct val f_rejectattr(struct rstate *r, const struct node *at, const struct val *x, const struct call_args *a)
{
    return select_common(r, at, x, a, true, false);
}

static struct val f_map(struct rstate *r, const struct node *at, const struct val *x, const struct call_args *a)
{
    struct val l = tmpl_iter_items(r, at, x), out = v_list(r, l.u.l->n);
    const struct val *attr = arg(a, 99, "attribute"), *dflt = arg(a, 99, "default");
    if (!attr && !a->n_pos)
        rs_fail(r, at, ERR_INVALID, "map needs a filter name or attribute=");
    for (size_t i = 0; i < l.u.l->n; i++) {
        rs_step(r, at);
        struct val it;
        if (attr) {
            it = attr_path(r, at, &l.u.l->v[i], attr);
            if (it.t == V_UNDEF && dflt)
                it = *dflt;
        } else {
            struct call_args rest = {a->pos + 1, a->n_pos - 1, a->kwv, a->kwn, a->n_kw};
            it = bi_filter(r, at, need_str(r, at, &a->pos[0], "map")->s, &l.u.l->v[i], &rest);
        }
        list_push(r, out.u.l, it);
    }
    return out;
}

static int sort_cmp_val(struct rstate *r, const struct node *at, const struct val *a, const struct val *b, bool ci)
{
    if (ci && a->t == V_STR && b->t == V_STR) {
        struct val la = case_map(r, a->u.s, 0), lb = case_map(r, b->u.s, 0);
        return v_cmp(r, at, &la, &lb);
    }
    return v_cmp(r, at, a, b);
}

/* stable insertion sort by key (lists in templates are short) */
static void sort_vals(struct rstate *r, const struct node *at, struct val *v, struct val *keys, size_t n, bool ci,
                      bool rev)
{
    for (size_t i = 1; i < n; i++) {
        struct val x = v[i], k = keys[i];
        size_t j = i;
        while (j > 0) {
            rs_step(r, at);
            int c = sort_cmp_val(r, at, &keys[j - 1], &k, ci);
            if (rev ? c >= 0 : c <= 0)
                break;
            v[j] = v[j - 1];
            keys[j] = keys[j - 1];
            j--;
        }
        v[j] = x;
        keys[j] = k;
    }
}

static struct val f_sort(struct rstate *r, const struct node *at, const struct val *x, const struct call_args *a)
{
    struct val l = f_list(r, at, x, a);
    bool rev = arg_true(a, 0, "reverse"), cs = arg_true(a, 1, "case_sensitive");
    const struct val *attr = arg(a, 2, "attribute");
    size_t n = l.u.l->n;
    struct val *keys = ar_alloc(&r->ar, (n + 1) * sizeof *keys);
    if (!keys)
        rs_fail(r, at, ERR_EXHAUSTED, "the render needs more memory than its limit");
    for (size_t i = 0; i < n; i++)
        keys[i] = attr ? attr_path(r, at, &l.u.l->v[i], attr) : l.u.l->v[i];
    sort_vals(r, at, l.u.l->v, keys, n, !cs, rev);
    return l;
}

static struct val f_dictsort(struct rstate *r, const struct node *at, const struct val *x, const struct call_args *a)
{
    if (x->t != V_DICT && x->t != V_NS)
        rs_fail(r, at, ERR_INVALID, "dictsort: expected a mapping, got %s", v_type_name(x));
    bool cs = arg_true(a, 0, "case_sensitive"), rev = arg_true(a, 2, "reverse");
    const struct val *by = arg(a, 1, "by");
    bool by_value = by && by->t == V_STR && !strcmp(by->u.s->s, "value");
    struct val l = dict_items(r, x->u.d);
    size_t n = l.u.l->n;
    struct val *keys = ar_alloc(&r->ar, (n + 1) * sizeof *keys);
    if (!keys)
        rs_fail(r, at, ERR_EXHAUSTED, "the render needs more memory than its limit");
    for (size_t i = 0; i < n; i++)
        keys[i] = l.u.l->v[i].u.l->v[by_value ? 1 : 0];
    sort_vals(r, at, l.u.l->v, keys, n, !cs, rev);
    return l;
}

static struct val f_reverse(struct rstate *r, const struct node *at, const struct val *x, const struct call_args *a)
{
    if (x->t == V_STR) {
        struct val l = tmpl_iter_items(r, at, x);
        struct sbuf *b = rs_buf(r);
        for (size_t i = l.u.l->n; i-- > 0;)
            sbuf_add(b, l.u.l->v[i].u.s->s, l.u.l->v[i].u.s->n);
        return sb_val(r, b);
    }
    struct val l = tmpl_iter_items(r, at, x), out = v_list(r, l.u.l->n);
    for (size_t i = l.u.l->n; i-- > 0;)
        list_push(r, out.u.l, l.u.l->v[i]);
    return out;
}

static struct val f_sum(struct rstate *r, const struct node *at, const struct val *x, const struct call_args *a)
{
    struct val l = tmpl_iter_items(r, at, x);
    const struct val *attr = arg(a, 0, "attribute"), *start = arg(a, 1, "start");
    int64_t si = start && start->t == V_INT ? start->u.i : 0;
    double sf = 0;
    bool fl = start && start->t == V_FLOAT;
    if (fl)
        sf = start->u.f;
    for (size_t i = 0; i < l.u.l->n; i++) {
        struct val it = attr ? attr_path(r, at, &l.u.l->v[i], attr) : l.u.l->v[i];
        if (it.t == V_INT || it.t == V_BOOL)
            si += it.t == V_INT ? it.u.i : it.u.b;
        else if (it.t == V_FLOAT) {
            fl = true;
            sf += it.u.f;
        } else
            rs_fail(r, at, ERR_INVALID, "sum: cannot add %s", v_type_name(&it));
    }
    return fl ? v_float(sf + (double)si) : v_int(si);
}

static struct val minmax(struct rstate *r, const struct node *at, const struct val *x, const struct call_args *a,
                         int sign)
{
    struct val l = tmpl_iter_items(r, at, x);
    bool cs = arg_true(a, 0, "case_sensitive");
    const struct val *attr = arg(a, 1, "attribute");
    struct val best = {.t = V_UNDEF}, bk = best;
    for (size_t i = 0; i < l.u.l->n; i++) {
        struct val k = attr ? attr_path(r, at, &l.u.l->v[i], attr) : l.u.l->v[i];
        if (best.t == V_UNDEF || sort_cmp_val(r, at, &k, &bk, !cs) * sign > 0) {
            best = l.u.l->v[i];
            bk = k;
        }
    }
    return best;
}

static struct val f_min(struct rstate *r, const struct node *at, const struct val *x, const struct call_args *a)
{
    return minmax(r, at, x, a, -1);
}

static struct val f_max(struct rstate *r, const struct node *at, const struct val *x, const struct call_args *a)
{
    return minmax(r, at, x, a, 1);
}

static struct val f_escape(struct rstate *r, const struct node *at, const struct val *x, const struct call_args *a)
{
    struct val s = as_str(r, x);
    struct sbuf *b = rs_buf(r);
    for (size_t i = 0; i < s.u.s->n; i++) {
        char c = s.u.s->s[i];
        const char *rep = c == '&' ? "&amp;" : c == '<' ? "&lt;" : c == '>' ? "&gt;" : c == '"' ? "&#34;"
                        : c == '\'' ? "&#39;" : NULL;
        if (rep)
            sbuf_addstr(b, rep);
        else
            sbuf_addch(b, c);
    }
    return sb_val(r, b);
}

static struct val f_wordcount(struct rstate *r, const struct node *at, const struct val *x, const struct call_args *a)
{
    struct val s = as_str(r, x);
    int64_t n = 0;
    bool in = false;
    for (size_t i = 0; i < s.u.s->n; i++) {
        bool w = isalnum((unsigned char)s.u.s->s[i]) || s.u.s->s[i] == '_' || (unsigned char)s.u.s->s[i] >= 0x80;
        if (w && !in)
            n++;
        in = w;
    }
    return v_int(n);
}

static struct val f_attr(struct rstate *r, const struct node *at, const struct val *x, const struct call_args *a)
{
    const struct val *n = arg(a, 0, "name");
    if (!n)
        rs_fail(r, at, ERR_INVALID, "attr needs a name");
    return attr_path(r, at, x, n);
}

static const struct {
    const char *name;
    filter_fn fn;
} filters[] = {
    {"trim", f_trim},         {"tojson", f_tojson},       {"length", f_length},       {"count", f_length},
    {"items", f_items},       {"join", f_join},           {"default", f_default},     {"d", f_default},
    {"first", f_first},       {"last", f_last},           {"list", f_list},           {"unique", f_unique},
    {"replace", f_replace},   {"lower", f_lower},         {"upper", f_upper},         {"capitalize", f_capitalize},
    {"title", f_title},       {"string", f_string},       {"safe", f_safe},           {"int", f_int},
    {"float", f_float},       {"abs", f_abs},             {"round", f_round},         {"indent", f_indent},
    {"select", f_select},     {"reject", f_reject},       {"selectattr", f_selectattr}, {"rejectattr", f_rejectattr},
    {"map", f_map},           {"sort", f_sort},           {"dictsort", f_dictsort},   {"reverse", f_reverse},
    {"sum", f_sum},           {"min", f_min},             {"max", f_max},             {"escape", f_escape},
    {"e", f_escape},          {"wordcount", f_wordcount}, {"attr", f_attr},
};

struct val bi_filter(struct rstate *r, const struct node *at, const char *name, const struct val *x,
                     const struct call_args *a)
{
    rs_step(r, at);
    for (size_t i = 0; i < sizeof filters / sizeof *filters; i++)
        if (!strcmp(filters[i].name, name))
            return filters[i].fn(r, at, x, a);
    rs_fail(r, at, ERR_INVALID, "no filter named '%s'", name);
}

/* ---- tests ---- */

enum tst {
    TS_DEFINED, TS_UNDEFINED, TS_NONE, TS_BOOLEAN, TS_TRUE, TS_FALSE, TS_INTEGER, TS_FLOAT, TS_NUMBER, TS_STRING,
    TS_MAPPING, TS_ITERABLE, TS_SEQUENCE, TS_CALLABLE, TS_SAMEAS, TS_EQ, TS_NE, TS_LT, TS_LE, TS_GT, TS_GE, TS_IN,
    TS_ODD, TS_EVEN, TS_DIVISIBLEBY, TS_LOWER, TS_UPPER,
};

static const struct {
    const char *name;
    enum tst t;
} tests[] = {
    {"defined", TS_DEFINED}, {"undefined", TS_UNDEFINED}, {"none", TS_NONE},       {"boolean", TS_BOOLEAN},
    {"true", TS_TRUE},       {"false", TS_FALSE},         {"integer", TS_INTEGER}, {"float", TS_FLOAT},
    {"number", TS_NUMBER},   {"string", TS_STRING},       {"mapping", TS_MAPPING}, {"iterable", TS_ITERABLE},
    {"sequence", TS_SEQUENCE}, {"callable", TS_CALLABLE}, {"sameas", TS_SAMEAS},   {"eq", TS_EQ},
    {"equalto", TS_EQ},      {"==", TS_EQ},               {"ne", TS_NE},           {"!=", TS_NE},
    {"lt", TS_LT},           {"lessthan", TS_LT},         {"<", TS_LT},            {"le", TS_LE},
    {"<=", TS_LE},           {"gt", TS_GT},               {"greaterthan", TS_GT},  {">", TS_GT},
    {"ge", TS_GE},           {">=", TS_GE},               {"in", TS_IN},           {"odd", TS_ODD},
    {"even", TS_EVEN},       {"divisibleby", TS_DIVISIBLEBY}, {"lower", TS_LOWER}, {"upper", TS_UPPER},
};

static int test_index(const char *name)
{
    for (size_t i = 0; i < sizeof tests / sizeof *tests; i++)
        if (!strcmp(tests[i].name, name))
            return (int)i;
    return -1;
}

bool bi_test_exists(const char *name)
{
    return test_index(name) >= 0;
}

static bool same(const struct val *x, const struct val *y)
{
    if (x->t != y->t)
        return false;
    switch (x->t) {
    case V_UNDEF:
    case V_NONE:
        return true;
    case V_BOOL:
        return x->u.b == y->u.b;
    case V_INT:
        return x->u.i == y->u.i;
    case V_STR:
        return x->u.s == y->u.s;
    case V_LIST:
        return x->u.l == y->u.l;
    case V_DICT:
    case V_NS:
        return x->u.d == y->u.d;
    default:
        return v_eq(x, y);
    }
}

static bool test_case(const struct val *x, bool upper)
{
    if (x->t != V_STR)
        return false;
    bool cased = false;
    for (size_t i = 0; i < x->u.s->n; i++) {
        unsigned char c = (unsigned char)x->u.s->s[i];
        if (upper ? islower(c) : isupper(c))
            return false;
        cased |= isalpha(c) != 0;
    }
    return cased;
}

bool bi_test(struct rstate *r, const struct node *at, const char *name, const struct val *x, const struct call_args *a)
{
    int i = test_index(name);
    if (i < 0)
        rs_fail(r, at, ERR_INVALID, "no test named '%s'", name);
    const struct val *y = arg(a, 0, NULL);
    enum tst t = tests[i].t;
    if (t >= TS_SAMEAS && t <= TS_IN && !y)
        rs_fail(r, at, ERR_INVALID, "test '%s' needs an argument", name);
    switch (t) {
    case TS_DEFINED: return x->t != V_UNDEF;
    case TS_UNDEFINED: return x->t == V_UNDEF;
    case TS_NONE: return x->t == V_NONE;
    case TS_BOOLEAN: return x->t == V_BOOL;
    case TS_TRUE: return x->t == V_BOOL && x->u.b;
    case TS_FALSE: return x->t == V_BOOL && !x->u.b;
    case TS_INTEGER: return x->t == V_INT;
    case TS_FLOAT: return x->t == V_FLOAT;
    case TS_NUMBER: return x->t == V_INT || x->t == V_FLOAT || x->t == V_BOOL;
    case TS_STRING: return x->t == V_STR;
    case TS_MAPPING: return x->t == V_DICT;
    case TS_ITERABLE: return x->t == V_STR || x->t == V_LIST || x->t == V_DICT;
    case TS_SEQUENCE: return x->t == V_STR || x->t == V_LIST || x->t == V_DICT;
    case TS_CALLABLE: return x->t == V_MACRO || x->t == V_CALLER || x->t == V_FUNC || x->t == V_METHOD;
    case TS_SAMEAS: return same(x, y);
    case TS_EQ: return v_eq(x, y);
    case TS_NE: return !v_eq(x, y);
    case TS_LT: return v_cmp(r, at, x, y) < 0;
    case TS_LE: return v_cmp(r, at, x, y) <= 0;
    case TS_GT: return v_cmp(r, at, x, y) > 0;
    case TS_GE: return v_cmp(r, at, x, y) >= 0;
    case TS_IN: {
        if (y->t == V_LIST) {
            for (size_t k = 0; k < y->u.l->n; k++)
                if (v_eq(&y->u.l->v[k], x))
                    return true;
            return false;
        }
        if (y->t == V_DICT)
            return dict_getv(y->u.d, x) != NULL;
        if (y->t == V_STR && x->t == V_STR)
            return x->u.s->n == 0 || memmem(y->u.s->s, y->u.s->n, x->u.s->s, x->u.s->n) != NULL;
        rs_fail(r, at, ERR_INVALID, "test 'in': argument of type '%s' is not a container", v_type_name(y));
    }
    case TS_ODD:
    case TS_EVEN:
    case TS_DIVISIBLEBY: {
        if (x->t != V_INT)
            rs_fail(r, at, ERR_INVALID, "test '%s' needs an integer, got %s", name, v_type_name(x));
        if (t == TS_ODD)
            return x->u.i % 2 != 0;
        if (t == TS_EVEN)
            return x->u.i % 2 == 0;
        if (!y || y->t != V_INT || y->u.i == 0)
            rs_fail(r, at, ERR_INVALID, "divisibleby needs a non-zero integer");
        return x->u.i % y->u.i == 0;
    }
    case TS_LOWER: return test_case(x, false);
    case TS_UPPER: return test_case(x, true);
    }
    return false;
}

/* ---- globals ---- */

static struct val g_range(struct rstate *r, const struct node *at, const struct call_args *a)
{
    int64_t v[3] = {0, 0, 1};
    if (a->n_pos < 1 || a->n_pos > 3)
        rs_fail(r, at, ERR_INVALID, "range expects 1 to 3 integers, got %zu arguments", a->n_pos);
    for (size_t i = 0; i < a->n_pos; i++)
        if (a->pos[i].t != V_INT)
            rs_fail(r, at, ERR_INVALID, "range: '%s' object cannot be interpreted as an integer", v_type_name(&a->pos[i]));
    if (a->n_pos == 1)
        v[1] = a->pos[0].u.i;
    else
        for (size_t i = 0; i < a->n_pos; i++)
            v[i] = a->pos[i].u.i;
    if (v[2] == 0)
        rs_fail(r, at, ERR_INVALID, "range() arg 3 must not be zero");
    struct val out = v_list(r, 0);
    for (int64_t i = v[0]; v[2] > 0 ? i < v[1] : i > v[1]; i += v[2]) {
        rs_step(r, at);
        list_push(r, out.u.l, v_int(i));
    }
    return out;
}

static struct val g_dict(struct rstate *r, const struct node *at, const struct call_args *a, enum vt t)
{
    struct val d = v_dict(r, 0);
    d.t = t;
    if (a->n_pos > 1)
        rs_fail(r, at, ERR_INVALID, "%s takes at most one positional argument", t == V_NS ? "namespace" : "dict");
    if (a->n_pos == 1) {
        if (a->pos[0].t != V_DICT)
            rs_fail(r, at, ERR_INVALID, "%s: the positional argument must be a mapping", t == V_NS ? "namespace" : "dict");
        for (size_t i = 0; i < a->pos[0].u.d->n; i++)
            dict_set(r, d.u.d, a->pos[0].u.d->k[i], a->pos[0].u.d->v[i]);
    }
    for (size_t i = 0; i < a->n_kw; i++)
        dict_set(r, d.u.d, v_cstr(r, a->kwn[i]), a->kwv[i]);
    return d;
}

static struct val g_raise(struct rstate *r, const struct node *at, const struct call_args *a)
{
    struct val m = a->n_pos ? v_stringify(r, &a->pos[0]) : v_cstr(r, "raise_exception called");
    rs_fail(r, at, ERR_INVALID, "%s", m.u.s->s);
}

static struct val g_strftime(struct rstate *r, const struct node *at, const struct call_args *a)
{
    if (a->n_pos != 1 || a->pos[0].t != V_STR)
        rs_fail(r, at, ERR_INVALID, "strftime_now expects one format string");
    time_t t = (time_t)r->now;
    struct tm g;
    gmtime_r(&t, &g);
    char buf[512];
    size_t n = strftime(buf, sizeof buf, a->pos[0].u.s->s, &g);
    if (n == 0 && a->pos[0].u.s->n)
        rs_fail(r, at, ERR_INVALID, "strftime_now: the format gives an empty or too long date");
    return v_str(r, buf, n);
}

static const char *const global_names[] = {"range", "namespace", "dict", "raise_exception", "strftime_now"};

int bi_global(const char *name)
{
    for (size_t i = 0; i < sizeof global_names / sizeof *global_names; i++)
        if (!strcmp(global_names[i], name))
            return (int)i;
    return -1;
}

struct val bi_call_global(struct rstate *r, const struct node *at, int id, const struct call_args *a)
{
    switch (id) {
    case 0:
        return g_range(r, at, a);
    case 1:
        return g_dict(r, at, a, V_NS);
    case 2:
        return g_dict(r, at, a, V_DICT);
    case 3:
        return g_raise(r, at, a);
    case 4:
        return g_strftime(r, at, a);
    default:
        rs_fail(r, at, ERR_INTERNAL, "global %d does not exist", id);
    }
}

/* ---- methods ---- */

typedef struct val (*method_fn)(struct rstate *r, const struct node *at, const struct val *self,
                                const struct call_args *a);

static const struct str *opt_chars(struct rstate *r, const struct node *at, const struct call_args *a)
{
    const struct val *c = arg(a, 0, "chars");
    return c && c->t != V_NONE ? need_str(r, at, c, "strip") : NULL;
}

static struct val m_strip(struct rstate *r, const struct node *at, const struct val *s, const struct call_args *a)
{
    return strip_s(r, s->u.s, opt_chars(r, at, a), true, true);
}

static struct val m_lstrip(struct rstate *r, const struct node *at, const struct val *s, const struct call_args *a)
{
    return strip_s(r, s->u.s, opt_chars(r, at, a), true, false);
}

static struct val m_rstrip(struct rstate *r, const struct node *at, const struct val *s, const struct call_args *a)
{
    return strip_s(r, s->u.s, opt_chars(r, at, a), false, true);
}

static struct val m_split(struct rstate *r, const struct node *at, const struct val *s, const struct call_args *a)
{
    const struct val *mx = arg(a, 1, "maxsplit");
    return split_s(r, at, s->u.s, arg(a, 0, "sep"), mx && mx->t == V_INT ? mx->u.i : -1);
}

static struct val m_startswith(struct rstate *r, const struct node *at, const struct val *s, const struct call_args *a)
{
    if (!a->n_pos)
        rs_fail(r, at, ERR_INVALID, "startswith needs a prefix");
    return v_bool(affix(s->u.s, &a->pos[0], false));
}

static struct val m_endswith(struct rstate *r, const struct node *at, const struct val *s, const struct call_args *a)
{
    if (!a->n_pos)
        rs_fail(r, at, ERR_INVALID, "endswith needs a suffix");
    return v_bool(affix(s->u.s, &a->pos[0], true));
}

static struct val m_replace(struct rstate *r, const struct node *at, const struct val *s, const struct call_args *a)
{
    if (a->n_pos < 2)
        rs_fail(r, at, ERR_INVALID, "replace needs the old and the new string");
    const struct val *c = arg(a, 2, "count");
    return replace_s(r, s->u.s, need_str(r, at, &a->pos[0], "replace"), need_str(r, at, &a->pos[1], "replace"),
                     c && c->t == V_INT ? c->u.i : -1);
}

static struct val m_lower(struct rstate *r, const struct node *at, const struct val *s, const struct call_args *a)
{
    return case_map(r, s->u.s, 0);
}

static struct val m_upper(struct rstate *r, const struct node *at, const struct val *s, const struct call_args *a)
{
    return case_map(r, s->u.s, 1);
}

static struct val m_capitalize(struct rstate *r, const struct node *at, const struct val *s, const struct call_args *a)
{
    return case_map(r, s->u.s, 2);
}

static struct val m_title(struct rstate *r, const struct node *at, const struct val *s, const struct call_args *a)
{
    return case_map(r, s->u.s, 3);
}

static struct val m_find(struct rstate *r, const struct node *at, const struct val *s, const struct call_args *a)
{
    if (!a->n_pos)
        rs_fail(r, at, ERR_INVALID, "find needs a substring");
    const struct str *sub = need_str(r, at, &a->pos[0], "find");
    const char *p = sub->n ? memmem(s->u.s->s, s->u.s->n, sub->s, sub->n) : s->u.s->s;
    return v_int(p ? (int64_t)utf8_len(s->u.s->s, (size_t)(p - s->u.s->s)) : -1);
}

static struct val m_count(struct rstate *r, const struct node *at, const struct val *s, const struct call_args *a)
{
    if (!a->n_pos)
        rs_fail(r, at, ERR_INVALID, "count needs a substring");
    const struct str *sub = need_str(r, at, &a->pos[0], "count");
    if (!sub->n)
        return v_int((int64_t)utf8_len(s->u.s->s, s->u.s->n) + 1);
    int64_t n = 0;
    for (size_t i = 0; i + sub->n <= s->u.s->n;)
        if (!memcmp(s->u.s->s + i, sub->s, sub->n)) {
            n++;
            i += sub->n;
        } else {
            i++;
        }
    return v_int(n);
}

static struct val m_join(struct rstate *r, const struct node *at, const struct val *s, const struct call_args *a)
{
    if (!a->n_pos)
        rs_fail(r, at, ERR_INVALID, "join needs an iterable");
    struct val l = tmpl_iter_items(r, at, &a->pos[0]);
    struct sbuf *b = rs_buf(r);
    for (size_t i = 0; i < l.u.l->n; i++) {
        if (i)
            sbuf_add(b, s->u.s->s, s->u.s->n);
        sbuf_add(b, need_str(r, at, &l.u.l->v[i], "join")->s, l.u.l->v[i].u.s->n);
        if (b->len > r->max_output)
            rs_fail(r, at, ERR_EXHAUSTED, "join passes the output limit (%zu bytes)", r->max_output);
    }
    return sb_val(r, b);
}

static struct val m_splitlines(struct rstate *r, const struct node *at, const struct val *s, const struct call_args *a)
{
    struct val out = v_list(r, 0);
    const struct str *x = s->u.s;
    size_t i = 0;
    while (i < x->n) {
        size_t j = i;
        while (j < x->n && x->s[j] != '\n' && x->s[j] != '\r')
            j++;
        list_push(r, out.u.l, v_str(r, x->s + i, j - i));
        if (j + 1 < x->n && x->s[j] == '\r' && x->s[j + 1] == '\n')
            j++;
        i = j + 1;
    }
    return out;
}

/* str.format with {} / {0} / {name} fields (no format specs) */
static struct val m_format(struct rstate *r, const struct node *at, const struct val *s, const struct call_args *a)
{
    const struct str *f = s->u.s;
    struct sbuf *b = rs_buf(r);
    size_t auto_i = 0;
    for (size_t i = 0; i < f->n; i++) {
        char c = f->s[i];
        if ((c == '{' || c == '}') && i + 1 < f->n && f->s[i + 1] == c) {
            sbuf_addch(b, c);
            i++;
            continue;
        }
        if (c != '{') {
            sbuf_addch(b, c);
            continue;
        }
        const char *z = memchr(f->s + i, '}', f->n - i);
        if (!z)
            rs_fail(r, at, ERR_INVALID, "format: single '{' encountered in format string");
        size_t fl = (size_t)(z - (f->s + i)) - 1;
        const char *field = f->s + i + 1;
        const struct val *v = NULL;
        if (fl == 0) {
            v = arg(a, auto_i++, NULL);
        } else if (field[0] >= '0' && field[0] <= '9') {
            v = arg(a, (size_t)atoi(field), NULL);
        } else {
            for (size_t k = 0; k < a->n_kw; k++)
                if (strlen(a->kwn[k]) == fl && !memcmp(a->kwn[k], field, fl))
                    v = &a->kwv[k];
        }
        if (!v)
            rs_fail(r, at, ERR_INVALID, "format: no argument for field '{%.*s}'", (int)fl, field);
        v_to_str(r, v, b);
        i = (size_t)(z - f->s);
    }
    return sb_val(r, b);
}

static struct val m_isdigit(struct rstate *r, const struct node *at, const struct val *s, const struct call_args *a)
{
    if (!s->u.s->n)
        return v_bool(false);
    for (size_t i = 0; i < s->u.s->n; i++)
        if (!isdigit((unsigned char)s->u.s->s[i]))
            return v_bool(false);
    return v_bool(true);
}

static struct val m_get(struct rstate *r, const struct node *at, const struct val *d, const struct call_args *a)
{
    if (!a->n_pos)
        rs_fail(r, at, ERR_INVALID, "get needs a key");
    struct val *x = dict_getv(d->u.d, &a->pos[0]);
    if (x)
        return *x;
    return a->n_pos > 1 ? a->pos[1] : v_none();
}

static struct val m_items(struct rstate *r, const struct node *at, const struct val *d, const struct call_args *a)
{
    return dict_items(r, d->u.d);
}

static struct val m_keys(struct rstate *r, const struct node *at, const struct val *d, const struct call_args *a)
{
    struct val l = v_list(r, d->u.d->n);
    for (size_t i = 0; i < d->u.d->n; i++)
        list_push(r, l.u.l, d->u.d->k[i]);
    return l;
}

static struct val m_values(struct rstate *r, const struct node *at, const struct val *d, const struct call_args *a)
{
    struct val l = v_list(r, d->u.d->n);
    for (size_t i = 0; i < d->u.d->n; i++)
        list_push(r, l.u.l, d->u.d->v[i]);
    return l;
}

static struct val m_copy(struct rstate *r, const struct node *at, const struct val *d, const struct call_args *a)
{
    struct val c = v_dict(r, d->u.d->n);
    for (size_t i = 0; i < d->u.d->n; i++)
        dict_set(r, c.u.d, d->u.d->k[i], d->u.d->v[i]);
    return c;
}

static struct val m_unsafe(struct rstate *r, const struct node *at, const struct val *o, const struct call_args *a)
{
    rs_fail(r, at, ERR_INVALID, "the sandbox does not allow modifying a %s", v_type_name(o));
}

static struct val m_cycle(struct rstate *r, const struct node *at, const struct val *o, const struct call_args *a)
{
    if (!a->n_pos)
        rs_fail(r, at, ERR_INVALID, "no items for cycling given");
    return a->pos[o->u.lp->i % a->n_pos];
}

static const struct {
    enum vt t;
    const char *name;
    method_fn fn;
} methods[] = {
    {V_STR, "strip", m_strip},       {V_STR, "lstrip", m_lstrip},         {V_STR, "rstrip", m_rstrip},
    {V_STR, "split", m_split},       {V_STR, "startswith", m_startswith}, {V_STR, "endswith", m_endswith},
    {V_STR, "replace", m_replace},   {V_STR, "lower", m_lower},           {V_STR, "upper", m_upper},
    {V_STR, "capitalize", m_capitalize}, {V_STR, "title", m_title},       {V_STR, "find", m_find},
    {V_STR, "count", m_count},       {V_STR, "join", m_join},             {V_STR, "splitlines", m_splitlines},
    {V_STR, "format", m_format},     {V_STR, "isdigit", m_isdigit},
    {V_DICT, "get", m_get},          {V_DICT, "items", m_items},          {V_DICT, "keys", m_keys},
    {V_DICT, "values", m_values},    {V_DICT, "copy", m_copy},            {V_DICT, "update", m_unsafe},
    {V_DICT, "pop", m_unsafe},       {V_DICT, "setdefault", m_unsafe},    {V_DICT, "clear", m_unsafe},
    {V_LIST, "append", m_unsafe},    {V_LIST, "extend", m_unsafe},        {V_LIST, "pop", m_unsafe},
    {V_LIST, "insert", m_unsafe},    {V_LIST, "remove", m_unsafe},        {V_LIST, "clear", m_unsafe},
    {V_LOOP, "cycle", m_cycle},
};

int bi_method(const struct val *obj, const char *name)
{
    for (size_t i = 0; i < sizeof methods / sizeof *methods; i++)
        if (methods[i].t == obj->t && !strcmp(methods[i].name, name))
            return (int)i;
    return -1;
}

struct val bi_call_method(struct rstate *r, const struct node *at, const struct val *m, const struct call_args *a)
{
    return methods[m->id].fn(r, at, m->self, a);
}

/* ---- loop ---- */

struct val bi_loop_attr(struct rstate *r, const struct node *at, const struct loopst *lp, const char *name)
{
    size_t i = lp->i, n = lp->n;
    struct val u = {.t = V_UNDEF, .uname = "loop attribute"};
    if (!strcmp(name, "index"))
        return v_int((int64_t)i + 1);
    if (!strcmp(name, "index0"))
        return v_int((int64_t)i);
    if (!strcmp(name, "first"))
        return v_bool(i == 0);
    if (!strcmp(name, "last"))
        return v_bool(i + 1 == n);
    if (!strcmp(name, "length"))
        return v_int((int64_t)n);
    if (!strcmp(name, "revindex"))
        return v_int((int64_t)(n - i));
    if (!strcmp(name, "revindex0"))
        return v_int((int64_t)(n - i - 1));
    if (!strcmp(name, "depth"))
        return v_int(1);
    if (!strcmp(name, "depth0"))
        return v_int(0);
    if (!strcmp(name, "previtem"))
        return i > 0 ? lp->items[i - 1] : u;
    if (!strcmp(name, "nextitem"))
        return i + 1 < n ? lp->items[i + 1] : u;
    if (!strcmp(name, "cycle")) {
        struct val m = {.t = V_METHOD};
        struct val self = {.t = V_LOOP};
        self.u.lp = (struct loopst *)lp;
        m.id = -1;
        for (size_t k = 0; k < sizeof methods / sizeof *methods; k++)
            if (methods[k].t == V_LOOP)
                m.id = (int)k;
        m.self = ar_alloc(&r->ar, sizeof *m.self);
        if (!m.self)
            rs_fail(r, at, ERR_EXHAUSTED, "the render needs more memory than its limit");
        *m.self = self;
        return m;
    }
    return u;
}
