/*
 * template.c — the public entry points: parse once, render many times.
 */
#include "template/tmpl_int.h"

#include <time.h>

struct tmpl *tmpl_parse(const char *src, size_t len, struct err *e)
{
    struct tmpl *t = calloc(1, sizeof *t);
    if (!t) {
        err_set(e, ERR_NOMEM, "out of memory parsing a template");
        return NULL;
    }
    t->root = tmpl_parse_src(&t->ar, src, len, e);
    if (!t->root) {
        tmpl_free(t);
        return NULL;
    }
    return t;
}

void tmpl_free(struct tmpl *t)
{
    if (!t)
        return;
    ar_free_all(&t->ar);
    free(t);
}

struct sbuf *rs_buf(struct rstate *r)
{
    struct tbuf *b = ar_alloc(&r->ar, sizeof *b);
    if (!b)
        rs_fail(r, NULL, ERR_EXHAUSTED, "the render needs more memory than its limit");
    b->next = r->bufs;
    r->bufs = b;
    return &b->b;
}

/* Renders inside the setjmp of tmpl_render. */
static void render_root(struct rstate *r, const struct tmpl *t, const char *vars, size_t n)
{
    struct val v;
    if (json_parse(r, vars, n, &v, r->e))
        longjmp(r->fail, 1);
    if (v.t != V_DICT) {
        err_set(r->e, ERR_INVALID, "the template variables must be a JSON object");
        longjmp(r->fail, 1);
    }
    r->root = ar_alloc(&r->ar, sizeof *r->root);
    if (!r->root) {
        err_set(r->e, ERR_NOMEM, "out of memory");
        longjmp(r->fail, 1);
    }
    r->root->vars = *v.u.d;
    r->cur = r->root;
    tmpl_exec_root(r, t->root);
}

char *tmpl_render(const struct tmpl *t, const char *vars_json, size_t vars_len, const struct tmpl_opts *o,
                  size_t *len, struct err *e)
{
    struct tmpl_opts d = {0};
    if (!o)
        o = &d;
    struct rstate *r = calloc(1, sizeof *r);
    if (!r) {
        err_set(e, ERR_NOMEM, "out of memory rendering a template");
        return NULL;
    }
    struct sbuf out = SBUF_INIT;
    r->e = e;
    r->out = &out;
    r->max_output = o->max_output ? o->max_output : (size_t)16 << 20;
    r->max_steps = o->max_steps ? o->max_steps : 50000000ull;
    r->max_depth = o->max_depth ? o->max_depth : 200;
    r->now = o->now ? o->now : (int64_t)time(NULL);
    r->ar.limit = r->max_output * 8 + ((size_t)64 << 20);
    char *res = NULL;
    if (!setjmp(r->fail)) {
        render_root(r, t, vars_json, vars_len);
        if (sbuf_failed(&out))
            err_set(e, ERR_NOMEM, "out of memory rendering a template");
        else
            res = sbuf_detach(&out, len);
    }
    for (struct tbuf *b = r->bufs; b; b = b->next)
        sbuf_release(&b->b);
    sbuf_release(&out);
    ar_free_all(&r->ar);
    free(r);
    return res;
}
