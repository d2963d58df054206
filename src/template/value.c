/*
 * value.c — the arena, the value type and its Python behaviour: truth,
 * equality, ordering, str() and repr(), json.dumps (tojson) and the JSON
 * reader that turns render variables into values.
 */
#include "template/tmpl_int.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>

/* ---- arena ---- */

struct arena_blk {
    struct arena_blk *next;
    size_t cap, used;
    max_align_t data[];
};

void *ar_alloc(struct arena *a, size_t n)
{
    if (a->over)
        return NULL;
    n = (n + 15) & ~(size_t)15;
    if (a->limit && a->used + n > a->limit) {
        a->over = true;
        return NULL;
    }
    struct arena_blk *b = a->head;
    if (!b || b->cap - b->used < n) {
        size_t cap = n > 32768 ? n : 32768;
        b = malloc(sizeof *b + cap);
        if (!b) {
            a->over = true;
            return NULL;
        }
        b->next = a->head;
        b->cap = cap;
        b->used = 0;
        a->head = b;
    }
    void *p = (char *)b->data + b->used;
    b->used += n;
    a->used += n;
    memset(p, 0, n);
    return p;
}

void ar_free_all(struct arena *a)
{
    struct arena_blk *b = a->head;
    while (b) {
        struct arena_blk *nx = b->next;
        free(b);
        b = nx;
    }
    a->head = NULL;
    a->used = 0;
    a->over = false;
}

static void *ralloc(struct rstate *r, size_t n)
{
    void *p = ar_alloc(&r->ar, n);
    if (!p)
        rs_fail(r, NULL, ERR_EXHAUSTED, "the render needs more than %zu bytes of memory", r->ar.limit);
    return p;
}

/* ---- constructors ---- */

struct val v_str(struct rstate *r, const char *s, size_t n)
{
    if (n > r->max_output)
        rs_fail(r, NULL, ERR_EXHAUSTED, "a string of %zu bytes passes the output limit (%zu)", n, r->max_output);
    struct str *x = ralloc(r, sizeof *x + n + 1);
    x->n = n;
    if (n && s)
        memcpy(x->s, s, n);
    x->s[n] = 0;
    struct val v = {.t = V_STR};
    v.u.s = x;
    return v;
}

struct val v_cstr(struct rstate *r, const char *s)
{
    return v_str(r, s, strlen(s));
}

struct val v_int(int64_t i)
{
    struct val v = {.t = V_INT};
    v.u.i = i;
    return v;
}

struct val v_float(double f)
{
    struct val v = {.t = V_FLOAT};
    v.u.f = f;
    return v;
}

struct val v_bool(bool b)
{
    struct val v = {.t = V_BOOL};
    v.u.b = b;
    return v;
}

struct val v_none(void)
{
    struct val v = {.t = V_NONE};
    return v;
}

struct val v_list(struct rstate *r, size_t cap)
{
    struct val v = {.t = V_LIST};
    v.u.l = ralloc(r, sizeof *v.u.l);
    if (cap) {
        v.u.l->v = ralloc(r, cap * sizeof(struct val));
        v.u.l->cap = cap;
    }
    return v;
}

struct val v_dict(struct rstate *r, size_t cap)
{
    struct val v = {.t = V_DICT};
    v.u.d = ralloc(r, sizeof *v.u.d);
    if (cap) {
        v.u.d->k = ralloc(r, cap * sizeof(struct val));
        v.u.d->v = ralloc(r, cap * sizeof(struct val));
        v.u.d->cap = cap;
    }
    return v;
}

void list_push(struct rstate *r, struct list *l, struct val v)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 4;
        struct val *nv = ralloc(r, cap * sizeof *nv);
        if (l->n)
            memcpy(nv, l->v, l->n * sizeof *nv);
        l->v = nv;
        l->cap = cap;
    }
    l->v[l->n++] = v;
}

void dict_set(struct rstate *r, struct dict *d, struct val k, struct val v)
{
    struct val *old = dict_getv(d, &k);
    if (old) {
        *old = v;
        return;
    }
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 4;
        struct val *nk = ralloc(r, cap * sizeof *nk), *nv = ralloc(r, cap * sizeof *nv);
        if (d->n) {
            memcpy(nk, d->k, d->n * sizeof *nk);
            memcpy(nv, d->v, d->n * sizeof *nv);
        }
        d->k = nk;
        d->v = nv;
        d->cap = cap;
    }
    d->k[d->n] = k;
    d->v[d->n++] = v;
}

struct val *dict_get(const struct dict *d, const char *k, size_t n)
{
    for (size_t i = 0; i < d->n; i++)
        if (d->k[i].t == V_STR && d->k[i].u.s->n == n && !memcmp(d->k[i].u.s->s, k, n))
            return &d->v[i];
    return NULL;
}

struct val *dict_getv(const struct dict *d, const struct val *k)
{
    if (k->t == V_STR)
        return dict_get(d, k->u.s->s, k->u.s->n);
    for (size_t i = 0; i < d->n; i++)
        if (v_eq(&d->k[i], k))
            return &d->v[i];
    return NULL;
}

/* ---- Python semantics ---- */

bool v_truthy(const struct val *v)
{
    switch (v->t) {
    case V_UNDEF:
    case V_NONE:
        return false;
    case V_BOOL:
        return v->u.b;
    case V_INT:
        return v->u.i != 0;
    case V_FLOAT:
        return v->u.f != 0;
    case V_STR:
        return v->u.s->n != 0;
    case V_LIST:
        return v->u.l->n != 0;
    case V_DICT:
        return v->u.d->n != 0;
    default:
        return true;
    }
}

static bool is_num(const struct val *v)
{
    return v->t == V_INT || v->t == V_FLOAT || v->t == V_BOOL;
}

static double num_of(const struct val *v)
{
    return v->t == V_FLOAT ? v->u.f : v->t == V_INT ? (double)v->u.i : (double)v->u.b;
}

bool v_eq(const struct val *a, const struct val *b)
{
    if (is_num(a) && is_num(b)) {
        if (a->t != V_FLOAT && b->t != V_FLOAT)
            return (a->t == V_INT ? a->u.i : a->u.b) == (b->t == V_INT ? b->u.i : b->u.b);
        return num_of(a) == num_of(b);
    }
    if (a->t != b->t)
        return false;
    switch (a->t) {
    case V_UNDEF:
    case V_NONE:
        return true;
    case V_STR:
        return a->u.s->n == b->u.s->n && !memcmp(a->u.s->s, b->u.s->s, a->u.s->n);
    case V_LIST:
        if (a->u.l->n != b->u.l->n)
            return false;
        for (size_t i = 0; i < a->u.l->n; i++)
            if (!v_eq(&a->u.l->v[i], &b->u.l->v[i]))
                return false;
        return true;
    case V_DICT:
        if (a->u.d->n != b->u.d->n)
            return false;
        for (size_t i = 0; i < a->u.d->n; i++) {
            struct val *o = dict_getv(b->u.d, &a->u.d->k[i]);
            if (!o || !v_eq(&a->u.d->v[i], o))
                return false;
        }
        return true;
    case V_NS:
        return a->u.d == b->u.d;
    case V_MACRO:
    case V_CALLER:
        return a->u.m.n == b->u.m.n;
    default:
        return a->id == b->id;
    }
}

const char *v_type_name(const struct val *v)
{
    static const char *const names[] = {"undefined", "NoneType", "bool",      "int",      "float",
                                        "str",       "list",     "dict",      "Namespace", "Macro",
                                        "Macro",     "function", "method",    "LoopContext"};
    return names[v->t];
}

int v_cmp(struct rstate *r, const struct node *at, const struct val *a, const struct val *b)
{
    if (is_num(a) && is_num(b)) {
        double x = num_of(a), y = num_of(b);
        if (a->t == V_INT && b->t == V_INT)
            return a->u.i < b->u.i ? -1 : a->u.i > b->u.i;
        return x < y ? -1 : x > y;
    }
    if (a->t == V_STR && b->t == V_STR) {
        size_t n = a->u.s->n < b->u.s->n ? a->u.s->n : b->u.s->n;
        int c = memcmp(a->u.s->s, b->u.s->s, n);
        if (c)
            return c < 0 ? -1 : 1;
        return a->u.s->n < b->u.s->n ? -1 : a->u.s->n > b->u.s->n;
    }
    if (a->t == V_LIST && b->t == V_LIST) {
        for (size_t i = 0; i < a->u.l->n && i < b->u.l->n; i++) {
            int c = v_cmp(r, at, &a->u.l->v[i], &b->u.l->v[i]);
            if (c)
                return c;
        }
        return a->u.l->n < b->u.l->n ? -1 : a->u.l->n > b->u.l->n;
    }
    rs_fail(r, at, ERR_INVALID, "'<' not supported between instances of '%s' and '%s'", v_type_name(a), v_type_name(b));
}

void fmt_float(double f, struct sbuf *b)
{
    if (isnan(f)) {
        sbuf_addstr(b, "nan");
        return;
    }
    if (isinf(f)) {
        sbuf_addstr(b, f < 0 ? "-inf" : "inf");
        return;
    }
    char buf[40];
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, sizeof buf, "%.*e", prec - 1, f);
        if (strtod(buf, NULL) == f)
            break;
    }
    /* buf is d.ddde±XX: Python's repr uses fixed notation for 1e-4 <= |f| < 1e16 */
    char *ep = strchr(buf, 'e');
    int exp10 = atoi(ep + 1);
    *ep = 0;
    char digits[40];
    size_t nd = 0;
    bool neg = buf[0] == '-';
    for (char *p = buf + neg; *p; p++)
        if (*p != '.')
            digits[nd++] = *p;
    while (nd > 1 && digits[nd - 1] == '0')
        nd--;
    digits[nd] = 0;
    if (neg)
        sbuf_addch(b, '-');
    if (exp10 >= 16 || exp10 < -4) {
        sbuf_addch(b, digits[0]);
        if (nd > 1) {
            sbuf_addch(b, '.');
            sbuf_add(b, digits + 1, nd - 1);
        }
        sbuf_addf(b, "e%c%02d", exp10 < 0 ? '-' : '+', exp10 < 0 ? -exp10 : exp10);
    } else if (exp10 < 0) {
        sbuf_addstr(b, "0.");
        for (int i = -1; i > exp10; i--)
            sbuf_addch(b, '0');
        sbuf_add(b, digits, nd);
    } else {
        for (int i = 0; i <= exp10; i++)
            sbuf_addch(b, (size_t)i < nd ? digits[i] : '0');
        sbuf_addch(b, '.');
        if ((size_t)exp10 + 1 < nd)
            sbuf_add(b, digits + exp10 + 1, nd - (size_t)exp10 - 1);
        else
            sbuf_addch(b, '0');
    }
}

static void repr_str(const struct str *s, struct sbuf *b)
{
    bool sq = memchr(s->s, '\'', s->n) != NULL, dq = memchr(s->s, '"', s->n) != NULL;
    char q = sq && !dq ? '"' : '\'';
    sbuf_addch(b, q);
    for (size_t i = 0; i < s->n; i++) {
        unsigned char c = (unsigned char)s->s[i];
        if (c == '\\' || c == (unsigned char)q) {
            sbuf_addch(b, '\\');
            sbuf_addch(b, c);
        } else if (c == '\n') {
            sbuf_addstr(b, "\\n");
        } else if (c == '\r') {
            sbuf_addstr(b, "\\r");
        } else if (c == '\t') {
            sbuf_addstr(b, "\\t");
        } else if (c < 0x20 || c == 0x7f) {
            sbuf_addf(b, "\\x%02x", c);
        } else {
            sbuf_addch(b, c);
        }
    }
    sbuf_addch(b, q);
}

void v_repr(struct rstate *r, const struct val *v, struct sbuf *b)
{
    rs_step(r, NULL);
    switch (v->t) {
    case V_STR:
        repr_str(v->u.s, b);
        break;
    case V_LIST:
        sbuf_addch(b, '[');
        for (size_t i = 0; i < v->u.l->n; i++) {
            if (i)
                sbuf_addstr(b, ", ");
            v_repr(r, &v->u.l->v[i], b);
        }
        sbuf_addch(b, ']');
        break;
    case V_DICT:
        sbuf_addch(b, '{');
        for (size_t i = 0; i < v->u.d->n; i++) {
            if (i)
                sbuf_addstr(b, ", ");
            v_repr(r, &v->u.d->k[i], b);
            sbuf_addstr(b, ": ");
            v_repr(r, &v->u.d->v[i], b);
        }
        sbuf_addch(b, '}');
        break;
    default:
        v_to_str(r, v, b);
    }
    if (b->len > r->max_output)
        rs_fail(r, NULL, ERR_EXHAUSTED, "a string passes the output limit (%zu bytes)", r->max_output);
}

void v_to_str(struct rstate *r, const struct val *v, struct sbuf *b)
{
    switch (v->t) {
    case V_UNDEF:
        break;
    case V_NONE:
        sbuf_addstr(b, "None");
        break;
    case V_BOOL:
        sbuf_addstr(b, v->u.b ? "True" : "False");
        break;
    case V_INT:
        sbuf_addf(b, "%lld", (long long)v->u.i);
        break;
    case V_FLOAT:
        fmt_float(v->u.f, b);
        break;
    case V_STR:
        sbuf_add(b, v->u.s->s, v->u.s->n);
        break;
    case V_LIST:
    case V_DICT:
        v_repr(r, v, b);
        break;
    case V_NS:
        sbuf_addstr(b, "<Namespace>");
        break;
    default:
        sbuf_addf(b, "<%s>", v_type_name(v));
    }
}

struct val v_stringify(struct rstate *r, const struct val *v)
{
    if (v->t == V_STR)
        return *v;
    struct sbuf *b = rs_buf(r);
    v_to_str(r, v, b);
    if (sbuf_failed(b))
        rs_fail(r, NULL, ERR_NOMEM, "out of memory");
    struct val s = v_str(r, b->buf ? b->buf : "", b->len);
    sbuf_release(b);
    return s;
}

/* ---- json.dumps(ensure_ascii=False) ---- */

static void json_str(const char *s, size_t n, struct sbuf *b)
{
    sbuf_addch(b, '"');
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        switch (c) {
        case '"': sbuf_addstr(b, "\\\""); break;
        case '\\': sbuf_addstr(b, "\\\\"); break;
        case '\n': sbuf_addstr(b, "\\n"); break;
        case '\r': sbuf_addstr(b, "\\r"); break;
        case '\t': sbuf_addstr(b, "\\t"); break;
        case '\b': sbuf_addstr(b, "\\b"); break;
        case '\f': sbuf_addstr(b, "\\f"); break;
        default:
            if (c < 0x20)
                sbuf_addf(b, "\\u%04x", c);
            else
                sbuf_addch(b, c);
        }
    }
    sbuf_addch(b, '"');
}

static void json_nl(const struct tojson_opts *o, int level, struct sbuf *b)
{
    sbuf_addch(b, '\n');
    for (int i = 0; i < o->indent * level; i++)
        sbuf_addch(b, ' ');
}

static int key_cmp(const void *x, const void *y)
{
    const struct val *a = *(const struct val *const *)x, *c = *(const struct val *const *)y;
    if (a->t == V_STR && c->t == V_STR) {
        size_t n = a->u.s->n < c->u.s->n ? a->u.s->n : c->u.s->n;
        int k = memcmp(a->u.s->s, c->u.s->s, n);
        return k ? k : (a->u.s->n > c->u.s->n) - (a->u.s->n < c->u.s->n);
    }
    return 0;
}

static void json_dict(struct rstate *r, const struct node *at, const struct dict *d, const struct tojson_opts *o,
                      int level, struct sbuf *b)
{
    if (!d->n) {
        sbuf_addstr(b, "{}");
        return;
    }
    size_t *ord = ralloc(r, d->n * sizeof *ord);
    for (size_t i = 0; i < d->n; i++)
        ord[i] = i;
    if (o->sort_keys) {
        const struct val **keys = ralloc(r, d->n * sizeof *keys);
        for (size_t i = 0; i < d->n; i++)
            keys[i] = &d->k[i];
        qsort(keys, d->n, sizeof *keys, key_cmp);
        for (size_t i = 0; i < d->n; i++)
            ord[i] = (size_t)(keys[i] - d->k);
    }
    sbuf_addch(b, '{');
    for (size_t j = 0; j < d->n; j++) {
        size_t i = ord[j];
        if (j)
            sbuf_addstr(b, o->item_sep);
        if (o->indent >= 0)
            json_nl(o, level + 1, b);
        const struct val *k = &d->k[i];
        if (k->t == V_STR) {
            json_str(k->u.s->s, k->u.s->n, b);
        } else {
            struct sbuf *kb = rs_buf(r);
            if (k->t == V_BOOL)
                sbuf_addstr(kb, k->u.b ? "true" : "false");
            else if (k->t == V_NONE)
                sbuf_addstr(kb, "null");
            else
                v_to_str(r, k, kb);
            json_str(kb->buf ? kb->buf : "", kb->len, b);
            sbuf_release(kb);
        }
        sbuf_addstr(b, o->key_sep);
        v_tojson(r, at, &d->v[i], o, level + 1, b);
    }
    if (o->indent >= 0)
        json_nl(o, level, b);
    sbuf_addch(b, '}');
}

void v_tojson(struct rstate *r, const struct node *at, const struct val *v, const struct tojson_opts *o, int level,
              struct sbuf *b)
{
    rs_step(r, at);
    if (level > r->max_depth)
        rs_fail(r, at, ERR_EXHAUSTED, "tojson: value nested deeper than %d", r->max_depth);
    switch (v->t) {
    case V_NONE:
        sbuf_addstr(b, "null");
        break;
    case V_BOOL:
        sbuf_addstr(b, v->u.b ? "true" : "false");
        break;
    case V_INT:
        sbuf_addf(b, "%lld", (long long)v->u.i);
        break;
    case V_FLOAT:
        if (isnan(v->u.f))
            sbuf_addstr(b, "NaN");
        else if (isinf(v->u.f))
            sbuf_addstr(b, v->u.f < 0 ? "-Infinity" : "Infinity");
        else
            fmt_float(v->u.f, b);
        break;
    case V_STR:
        json_str(v->u.s->s, v->u.s->n, b);
        break;
    case V_LIST:
        if (!v->u.l->n) {
            sbuf_addstr(b, "[]");
            break;
        }
        sbuf_addch(b, '[');
        for (size_t i = 0; i < v->u.l->n; i++) {
            if (i)
                sbuf_addstr(b, o->item_sep);
            if (o->indent >= 0)
                json_nl(o, level + 1, b);
            v_tojson(r, at, &v->u.l->v[i], o, level + 1, b);
        }
        if (o->indent >= 0)
            json_nl(o, level, b);
        sbuf_addch(b, ']');
        break;
    case V_DICT:
        json_dict(r, at, v->u.d, o, level, b);
        break;
    default:
        rs_fail(r, at, ERR_INVALID, "Object of type %s is not JSON serializable", v_type_name(v));
    }
    if (b->len > r->max_output)
        rs_fail(r, at, ERR_EXHAUSTED, "tojson passes the output limit (%zu bytes)", r->max_output);
}

/* ---- JSON reader ---- */

struct jp {
    struct rstate *r;
    const char *s, *end, *start;
    int depth;
    struct err *e;
};

static void jp_ws(struct jp *p)
{
    while (p->s < p->end && (*p->s == ' ' || *p->s == '\t' || *p->s == '\n' || *p->s == '\r'))
        p->s++;
}

static int jp_err(struct jp *p, const char *what)
{
    return err_set(p->e, ERR_INVALID, "variables JSON: %s at byte %zu", what, (size_t)(p->s - p->start));
}

static void put_utf8(struct sbuf *b, uint32_t c)
{
    if (c < 0x80) {
        sbuf_addch(b, (int)c);
    } else if (c < 0x800) {
        sbuf_addch(b, 0xC0 | (c >> 6));
        sbuf_addch(b, 0x80 | (c & 0x3F));
    } else if (c < 0x10000) {
        sbuf_addch(b, 0xE0 | (c >> 12));
        sbuf_addch(b, 0x80 | ((c >> 6) & 0x3F));
        sbuf_addch(b, 0x80 | (c & 0x3F));
    } else {
        sbuf_addch(b, 0xF0 | (c >> 18));
        sbuf_addch(b, 0x80 | ((c >> 12) & 0x3F));
        sbuf_addch(b, 0x80 | ((c >> 6) & 0x3F));
        sbuf_addch(b, 0x80 | (c & 0x3F));
    }
}

static int hex4(const char *s, uint32_t *out)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        char c = s[i];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= (uint32_t)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v |= (uint32_t)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            v |= (uint32_t)(c - 'A' + 10);
        else
            return -1;
    }
    *out = v;
    return 0;
}

static int jp_string(struct jp *p, struct val *out)
{
    p->s++;
    struct sbuf *b = rs_buf(p->r);
    while (p->s < p->end && *p->s != '"') {
        unsigned char c = (unsigned char)*p->s;
        if (c < 0x20) {
            sbuf_release(b);
            return jp_err(p, "control character in a string");
        }
        if (c != '\\') {
            sbuf_addch(b, c);
            p->s++;
            continue;
        }
        if (p->end - p->s < 2)
            break;
        char x = p->s[1];
        p->s += 2;
        const char *esc = strchr("\"\\/bfnrt", x);
        if (x && esc) {
            sbuf_addch(b, "\"\\/\b\f\n\r\t"[esc - "\"\\/bfnrt"]);
            continue;
        }
        uint32_t u, lo;
        if (x != 'u' || p->end - p->s < 4 || hex4(p->s, &u)) {
            sbuf_release(b);
            return jp_err(p, "bad escape in a string");
        }
        p->s += 4;
        if (u >= 0xD800 && u < 0xDC00 && p->end - p->s >= 6 && p->s[0] == '\\' && p->s[1] == 'u' &&
            !hex4(p->s + 2, &lo) && lo >= 0xDC00 && lo < 0xE000) {
            u = 0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00);
            p->s += 6;
        }
        put_utf8(b, u);
    }
    if (p->s >= p->end) {
        sbuf_release(b);
        return jp_err(p, "unterminated string");
    }
    p->s++;
    if (sbuf_failed(b))
        return err_set(p->e, ERR_NOMEM, "out of memory reading variables");
    *out = v_str(p->r, b->buf ? b->buf : "", b->len);
    sbuf_release(b);
    return 0;
}

static int jp_value(struct jp *p, struct val *out);

static int jp_container(struct jp *p, struct val *out, bool obj)
{
    if (++p->depth > 200)
        return jp_err(p, "nested deeper than 200");
    p->s++;
    *out = obj ? v_dict(p->r, 0) : v_list(p->r, 0);
    jp_ws(p);
    if (p->s < p->end && *p->s == (obj ? '}' : ']')) {
        p->s++;
        p->depth--;
        return 0;
    }
    for (;;) {
        struct val k, v;
        jp_ws(p);
        if (obj) {
            if (p->s >= p->end || *p->s != '"')
                return jp_err(p, "expected a string key");
            if (jp_string(p, &k))
                return -1;
            jp_ws(p);
            if (p->s >= p->end || *p->s != ':')
                return jp_err(p, "expected ':'");
            p->s++;
        }
        if (jp_value(p, &v))
            return -1;
        if (obj)
            dict_set(p->r, out->u.d, k, v);
        else
            list_push(p->r, out->u.l, v);
        jp_ws(p);
        if (p->s < p->end && *p->s == ',') {
            p->s++;
            continue;
        }
        if (p->s < p->end && *p->s == (obj ? '}' : ']')) {
            p->s++;
            p->depth--;
            return 0;
        }
        return jp_err(p, obj ? "expected ',' or '}'" : "expected ',' or ']'");
    }
}

static int jp_number(struct jp *p, struct val *out)
{
    const char *b = p->s;
    bool fl = false;
    if (p->s < p->end && *p->s == '-')
        p->s++;
    while (p->s < p->end && ((*p->s >= '0' && *p->s <= '9') || *p->s == '.' || *p->s == 'e' || *p->s == 'E' ||
                             *p->s == '+' || *p->s == '-')) {
        if (*p->s == '.' || *p->s == 'e' || *p->s == 'E')
            fl = true;
        p->s++;
    }
    char buf[64];
    size_t n = (size_t)(p->s - b);
    if (!n || n >= sizeof buf)
        return jp_err(p, "bad number");
    memcpy(buf, b, n);
    buf[n] = 0;
    char *e;
    if (!fl) {
        errno = 0;
        long long i = strtoll(buf, &e, 10);
        if (!*e && !errno) {
            *out = v_int(i);
            return 0;
        }
    }
    double f = strtod(buf, &e);
    if (*e)
        return jp_err(p, "bad number");
    *out = v_float(f);
    return 0;
}

static int jp_value(struct jp *p, struct val *out)
{
    jp_ws(p);
    if (p->s >= p->end)
        return jp_err(p, "unexpected end");
    char c = *p->s;
    if (c == '{' || c == '[')
        return jp_container(p, out, c == '{');
    if (c == '"')
        return jp_string(p, out);
    static const struct { const char *w; int t; } words[] = {{"true", 1}, {"false", 0}, {"null", 2}};
    for (size_t i = 0; i < 3; i++) {
        size_t n = strlen(words[i].w);
        if ((size_t)(p->end - p->s) >= n && !memcmp(p->s, words[i].w, n)) {
            p->s += n;
            *out = words[i].t == 2 ? v_none() : v_bool(words[i].t);
            return 0;
        }
    }
    return jp_number(p, out);
}

int json_parse(struct rstate *r, const char *s, size_t n, struct val *out, struct err *e)
{
    struct jp p = {r, s, s + n, s, 0, e};
    if (jp_value(&p, out))
        return -1;
    jp_ws(&p);
    if (p.s != p.end)
        return jp_err(&p, "trailing characters");
    return 0;
}

/* ---- UTF-8 ---- */

size_t utf8_len(const char *s, size_t n)
{
    size_t c = 0;
    for (size_t i = 0; i < n; i++)
        if (((unsigned char)s[i] & 0xC0) != 0x80)
            c++;
    return c;
}

size_t utf8_off(const char *s, size_t n, size_t cp)
{
    size_t c = 0;
    for (size_t i = 0; i < n; i++)
        if (((unsigned char)s[i] & 0xC0) != 0x80) {
            if (c == cp)
                return i;
            c++;
        }
    return n;
}

size_t py_space_at(const char *s, size_t n)
{
    const uint8_t *u = (const uint8_t *)s;
    if (n >= 1 && ((u[0] >= 0x09 && u[0] <= 0x0D) || (u[0] >= 0x1C && u[0] <= 0x20)))
        return 1;
    if (n >= 2 && u[0] == 0xC2 && (u[1] == 0x85 || u[1] == 0xA0))
        return 2;
    if (n >= 3 && u[0] == 0xE1 && u[1] == 0x9A && u[2] == 0x80)
        return 3;
    if (n >= 3 && u[0] == 0xE2 && u[1] == 0x80 && (u[2] <= 0x8A || u[2] == 0xA8 || u[2] == 0xA9 || u[2] == 0xAF))
        return 3;
    if (n >= 3 && u[0] == 0xE2 && u[1] == 0x81 && u[2] == 0x9F)
        return 3;
    if (n >= 3 && u[0] == 0xE3 && u[1] == 0x80 && u[2] == 0x80)
        return 3;
    return 0;
}
