/*
 * lex.c — template source to tokens, as Jinja2's lexer with Hugging Face's
 * settings: text, {{ }}, {% %} and {# #} with `-`/`+` whitespace control,
 * trim_blocks (a newline right after %} or #} goes), lstrip_blocks (spaces
 * and tabs from the start of a line up to {% or {# go) and raw blocks.
 * Inside tags: names, numbers, strings and operators; an end marker is only
 * seen outside brackets (a dict literal's }} is not the end of {{ }}).
 */
#include "template/tmpl_int.h"

#include <errno.h>
#include <stdio.h>

struct lex {
    struct arena *ar;
    const char *src, *p, *end;
    struct tok *t;
    size_t n, cap;
    int line;
    const char *line_start;
    struct err *e;
};

static int lex_fail(struct lex *l, const char *at, const char *fmt, const char *arg)
{
    int line = 1;
    const char *ls = l->src;
    for (const char *q = l->src; q < at && q < l->end; q++)
        if (*q == '\n') {
            line++;
            ls = q + 1;
        }
    char msg[200];
    snprintf(msg, sizeof msg, fmt, arg);
    return err_set(l->e, ERR_INVALID, "line %d col %d: %s", line, (int)(at - ls) + 1, msg);
}

static struct tok *push(struct lex *l, enum tk k, const char *p, size_t n)
{
    if (l->n == l->cap && mem_grow(&l->t, &l->cap, l->n + 1, sizeof *l->t))
        return NULL;
    struct tok *t = &l->t[l->n++];
    memset(t, 0, sizeof *t);
    t->t = k;
    t->p = p;
    t->n = n;
    /* line and column of p */
    while (l->p < p) {
        if (*l->p == '\n') {
            l->line++;
            l->line_start = l->p + 1;
        }
        l->p++;
    }
    t->line = l->line;
    t->col = (int)(p - l->line_start) + 1;
    return t;
}

static bool is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

static bool is_name0(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* a quoted string literal at s (Python escapes); *endp after the quote */
static int lex_string(struct lex *l, const char *s, struct tok *t, const char **endp)
{
    char q = *s;
    struct sbuf b = SBUF_INIT;
    const char *p = s + 1;
    while (p < l->end && *p != q) {
        if (*p != '\\' || p + 1 >= l->end) {
            sbuf_addch(&b, *p++);
            continue;
        }
        char c = p[1];
        p += 2;
        switch (c) {
        case 'n': sbuf_addch(&b, '\n'); break;
        case 't': sbuf_addch(&b, '\t'); break;
        case 'r': sbuf_addch(&b, '\r'); break;
        case '0': sbuf_addch(&b, '\0'); break;
        case '\\': case '\'': case '"': sbuf_addch(&b, c); break;
        case '\n': break;
        default:
            sbuf_addch(&b, '\\');
            sbuf_addch(&b, c);
        }
    }
    if (p >= l->end) {
        sbuf_release(&b);
        return lex_fail(l, s, "%s", "unterminated string");
    }
    struct str *x = ar_alloc(l->ar, sizeof *x + b.len + 1);
    if (!x || sbuf_failed(&b)) {
        sbuf_release(&b);
        return err_set(l->e, ERR_NOMEM, "out of memory lexing the template");
    }
    x->n = b.len;
    if (b.len)
        memcpy(x->s, b.buf, b.len);
    x->s[b.len] = 0;
    sbuf_release(&b);
    t->s = x;
    *endp = p + 1;
    return 0;
}

static const char *const ops[] = {"**", "//", "==", "!=", "<=", ">=", "+", "-", "*", "/", "%", "~", "<", ">",
                                  "=",  "(",  ")",  "[",  "]",  "{",  "}", ",", ".", ":", "|"};

/* The tokens of one tag from s up to its end marker (block: %}, var: }}).
 * *endp is after the marker; *strip_after tells '-', '+' or 0 before it. */
static int lex_tag(struct lex *l, const char *s, bool block, const char **endp, char *strip_after)
{
    const char *p = s;
    int depth = 0;
    for (;;) {
        while (p < l->end && is_ws(*p))
            p++;
        if (p >= l->end)
            return lex_fail(l, s, "%s", block ? "unclosed block tag: missing %}" : "unclosed {{: missing }}");
        const char *close = block ? "%}" : "}}";
        if (depth == 0) {
            char sign = (*p == '-' || *p == '+') ? *p : 0;
            const char *q = p + (sign ? 1 : 0);
            if (l->end - q >= 2 && q[0] == close[0] && q[1] == '}') {
                *strip_after = sign;
                *endp = q + 2;
                return push(l, block ? T_BE : T_VE, p, 0) ? 0 : err_set(l->e, ERR_NOMEM, "out of memory");
            }
        }
        if (is_name0(*p)) {
            const char *q = p;
            while (q < l->end && (is_name0(*q) || is_digit(*q)))
                q++;
            if (!push(l, T_NAME, p, (size_t)(q - p)))
                return err_set(l->e, ERR_NOMEM, "out of memory");
            p = q;
        } else if (is_digit(*p)) {
            const char *q = p;
            bool fl = false;
            while (q < l->end && (is_digit(*q) || *q == '_'))
                q++;
            if (q + 1 < l->end && *q == '.' && is_digit(q[1])) {
                fl = true;
                q++;
                while (q < l->end && is_digit(*q))
                    q++;
            }
            if (q < l->end && (*q == 'e' || *q == 'E')) { /* exponent */
                const char *x = q + 1;
                if (x < l->end && (*x == '+' || *x == '-'))
                    x++;
                if (x < l->end && is_digit(*x)) {
                    fl = true;
                    q = x;
                    while (q < l->end && is_digit(*q))
                        q++;
                }
            }
            char buf[64];
            size_t n = 0;
            for (const char *x = p; x < q && n < sizeof buf - 1; x++)
                if (*x != '_')
                    buf[n++] = *x;
            buf[n] = 0;
            struct tok *t = push(l, fl ? T_FLOAT : T_INT, p, (size_t)(q - p));
            if (!t)
                return err_set(l->e, ERR_NOMEM, "out of memory");
            errno = 0;
            if (fl)
                t->f = strtod(buf, NULL);
            else
                t->i = strtoll(buf, NULL, 10);
            if (errno)
                return lex_fail(l, p, "%s", "number out of range");
            p = q;
        } else if (*p == '\'' || *p == '"') {
            struct tok *t = push(l, T_STR, p, 1);
            if (!t || lex_string(l, p, t, &p))
                return t ? -1 : err_set(l->e, ERR_NOMEM, "out of memory");
        } else {
            size_t i;
            for (i = 0; i < sizeof ops / sizeof *ops; i++) {
                size_t n = strlen(ops[i]);
                if ((size_t)(l->end - p) >= n && !memcmp(p, ops[i], n))
                    break;
            }
            if (i == sizeof ops / sizeof *ops) {
                char c[2] = {*p, 0};
                return lex_fail(l, p, "unexpected character '%s'", c);
            }
            if (*p == '(' || *p == '[' || *p == '{')
                depth++;
            else if ((*p == ')' || *p == ']' || *p == '}') && depth > 0)
                depth--;
            if (!push(l, T_OP, p, strlen(ops[i])))
                return err_set(l->e, ERR_NOMEM, "out of memory");
            p += strlen(ops[i]);
        }
    }
}

/* Adds text [a, b) as a token, stripped as the surrounding tags ask. */
static int add_text(struct lex *l, const char *a, const char *b)
{
    if (a >= b)
        return 0;
    return push(l, T_TEXT, a, (size_t)(b - a)) ? 0 : err_set(l->e, ERR_NOMEM, "out of memory");
}

/* The opening of the next tag at or after p: '{', '%' or '#' in *kind, or NULL. */
static const char *next_tag(const char *p, const char *end, char *kind)
{
    for (; p + 1 < end; p++)
        if (p[0] == '{' && (p[1] == '{' || p[1] == '%' || p[1] == '#')) {
            *kind = p[1];
            return p;
        }
    return NULL;
}

/* Text before a tag: '-' strips all trailing whitespace; lstrip_blocks
 * strips spaces before a block or comment tag alone at the start of its line. */
static const char *text_end(const char *a, const char *tag, char kind, char sign, bool line_starting)
{
    const char *z = tag;
    if (sign == '-') {
        while (z > a && is_ws(z[-1]))
            z--;
    } else if (sign != '+' && kind != '{') {
        const char *ls = z;
        while (ls > a && ls[-1] != '\n')
            ls--;
        if (ls > a || line_starting) {
            const char *q = ls;
            while (q < z && is_ws(*q) && *q != '\n')
                q++;
            if (q == z && z > ls)
                z = ls;
        }
    }
    return z;
}

/* After a tag: '-' strips all leading whitespace; trim_blocks drops one
 * newline after a block or comment unless '+'. */
static const char *after_tag(const char *p, const char *end, char kind, char sign)
{
    if (sign == '-') {
        while (p < end && is_ws(*p))
            p++;
    } else if (sign != '+' && kind != '{' && p < end && *p == '\n') {
        p++;
    }
    return p;
}

/* {% raw %} ... {% endraw %}: the body up to the end tag is text. */
static int lex_raw(struct lex *l, const char **pp)
{
    const char *p = *pp;
    for (const char *q = p; q + 1 < l->end; q++) {
        if (q[0] != '{' || q[1] != '%')
            continue;
        const char *r = q + 2;
        char sign = (r < l->end && (*r == '-' || *r == '+')) ? *r : 0;
        r += sign ? 1 : 0;
        while (r < l->end && is_ws(*r))
            r++;
        if ((size_t)(l->end - r) < 6 || memcmp(r, "endraw", 6))
            continue;
        r += 6;
        while (r < l->end && is_ws(*r))
            r++;
        char sign2 = (r < l->end && (*r == '-' || *r == '+')) ? *r : 0;
        r += sign2 ? 1 : 0;
        if (l->end - r < 2 || r[0] != '%' || r[1] != '}')
            return lex_fail(l, q, "%s", "malformed endraw tag");
        if (add_text(l, p, text_end(p, q, '%', sign, false)))
            return -1;
        *pp = after_tag(r + 2, l->end, '%', sign2);
        return 0;
    }
    return lex_fail(l, p, "%s", "raw block without endraw");
}

/* the tag just lexed (from token index first) is `{% raw %}` */
static bool is_raw(const struct lex *l, size_t first)
{
    return l->n == first + 3 && l->t[first + 1].t == T_NAME && l->t[first + 1].n == 3 &&
           !memcmp(l->t[first + 1].p, "raw", 3);
}

int tmpl_lex(struct arena *ar, const char *src, size_t len, struct tok **out, size_t *n_out, struct err *e)
{
    struct lex l = {ar, src, src, src + len, NULL, 0, 0, 1, src, e};
    const char *p = src;
    bool line_starting = true;
    int rc = 0;
    while (rc == 0 && p < l.end) {
        char kind = 0;
        const char *tag = next_tag(p, l.end, &kind);
        if (!tag) {
            rc = add_text(&l, p, l.end);
            break;
        }
        char sign = (tag + 2 < l.end && (tag[2] == '-' || tag[2] == '+')) ? tag[2] : 0;
        if ((rc = add_text(&l, p, text_end(p, tag, kind, sign, line_starting))))
            break;
        const char *body = tag + 2 + (sign ? 1 : 0), *endp = NULL;
        char sign_after = 0;
        if (kind == '#') {
            const char *c = body;
            while (c + 1 < l.end && !(c[0] == '#' && c[1] == '}'))
                c++;
            if (c + 1 >= l.end) {
                rc = lex_fail(&l, tag, "%s", "unclosed comment: missing #}");
                break;
            }
            sign_after = (c > body && (c[-1] == '-' || c[-1] == '+')) ? c[-1] : 0;
            endp = c + 2;
        } else {
            size_t first = l.n;
            if (!push(&l, kind == '%' ? T_BB : T_VB, tag, 2)) {
                rc = err_set(e, ERR_NOMEM, "out of memory");
                break;
            }
            if ((rc = lex_tag(&l, body, kind == '%', &endp, &sign_after)))
                break;
            if (kind == '%' && is_raw(&l, first)) {
                l.n = first;
                p = after_tag(endp, l.end, kind, sign_after);
                rc = lex_raw(&l, &p);
                line_starting = p > src && p[-1] == '\n';
                continue;
            }
        }
        p = after_tag(endp, l.end, kind, sign_after);
        line_starting = p > src && p[-1] == '\n';
    }
    if (rc == 0 && !push(&l, T_EOF, l.end, 0))
        rc = err_set(e, ERR_NOMEM, "out of memory");
    if (rc) {
        free(l.t);
        return -1;
    }
    *out = l.t;
    *n_out = l.n;
    return 0;
}
