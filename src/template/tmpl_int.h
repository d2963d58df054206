/* Shared inside the template module: the arena, values, tokens, the AST and
 * the render state. */
#ifndef MAAS_TMPL_INT_H
#define MAAS_TMPL_INT_H

#include "template/template.h"

#include <setjmp.h>
#include <stdbool.h>
#include <string.h>

/* ---- arena: every allocation of a parse or a render, freed at once ---- */
struct arena_blk;
struct arena {
    struct arena_blk *head;
    size_t used, limit; /* bytes handed out; limit 0 = none */
    bool over;          /* an allocation failed (limit or out of memory) */
};
void *ar_alloc(struct arena *a, size_t n); /* zeroed; NULL when over */
void ar_free_all(struct arena *a);

/* ---- values ---- */
enum vt { V_UNDEF, V_NONE, V_BOOL, V_INT, V_FLOAT, V_STR, V_LIST, V_DICT, V_NS, V_MACRO, V_CALLER, V_FUNC, V_METHOD, V_LOOP };

struct str { size_t n; char s[]; };
struct list { size_t n, cap; struct val *v; };
struct dict { size_t n, cap; struct val *k; struct val *v; };
struct node;
struct frame;
struct loopst;

struct val {
    enum vt t;
    int id;        /* V_FUNC: global index; V_METHOD: method index */
    union {
        bool b;
        int64_t i;
        double f;
        struct str *s;
        struct list *l;
        struct dict *d;  /* V_DICT, V_NS */
        struct { const struct node *n; struct frame *fr; } m; /* V_MACRO, V_CALLER */
        struct loopst *lp;
    } u;
    struct val *self; /* V_METHOD: the object */
    const char *uname; /* V_UNDEF: the name that was missing (may be NULL) */
};

struct loopst {
    size_t i, n;
    const struct val *items;
};

/* ---- tokens and AST ---- */
enum tk { T_EOF, T_NAME, T_INT, T_FLOAT, T_STR, T_OP, T_TEXT, T_VB, T_VE, T_BB, T_BE };

struct tok {
    enum tk t;
    const char *p; size_t n;  /* name, operator text; T_STR: decoded in s */
    struct str *s;
    int64_t i; double f;
    int line, col;
};

enum nk {
    /* statements */
    N_BODY, N_TEXT, N_OUT, N_IF, N_FOR, N_SET, N_SETBLOCK, N_MACRO, N_CALLBLOCK, N_FILTERBLOCK, N_BREAK, N_CONTINUE,
    /* expressions */
    N_LIT, N_NAME, N_LISTX, N_TUPLEX, N_DICTX, N_ATTR, N_ITEM, N_SLICE, N_CALL, N_FILTER, N_TEST, N_NOT, N_NEG,
    N_POS, N_BIN, N_CMP, N_AND, N_OR, N_COND, N_NONE_EXPR
};

struct node {
    enum nk k;
    int line, col;
    const char *op;          /* N_BIN / N_CMP operator, N_NAME / N_ATTR / N_FILTER / N_TEST name, N_SET target attr */
    struct val lit;          /* N_LIT, N_TEXT (string) */
    struct node *a, *b, *c;  /* operands; N_IF: cond, body, else; N_FOR: iter, body, else; N_SLICE: start, stop, step */
    struct node *d;          /* N_FOR: filter condition; N_SET: value; N_CALL callee-args holder */
    struct node **kids; size_t n_kids;      /* body statements, list items, call positional args, names */
    struct node **kw; const char **kwn; size_t n_kw; /* keyword args, macro defaults (by param name) */
    bool neg;                /* N_TEST: is not */
};

struct tmpl {
    struct arena ar;
    struct node *root;
};

/* lexer/parser: tokens in a malloc'd array (free it), strings in the arena */
int tmpl_lex(struct arena *ar, const char *src, size_t len, struct tok **out, size_t *n_out, struct err *e);
struct node *tmpl_parse_src(struct arena *a, const char *src, size_t len, struct err *e);

/* ---- rendering ---- */
struct frame {
    struct frame *up;
    struct dict vars;
};

struct tbuf { struct sbuf b; struct tbuf *next; };

struct rstate {
    struct arena ar;
    struct frame *root;
    struct sbuf *out;     /* where output goes now */
    jmp_buf fail;
    struct err *e;
    uint64_t steps, max_steps;
    size_t max_output;
    int depth, max_depth;
    int64_t now;
    int ctl;              /* 1 break, 2 continue */
    const struct node *at;   /* the node being evaluated, for errors */
    const struct val *hole;  /* the value a filter block or block set filters */
    struct frame *cur;       /* the frame names are looked up in */
    struct tbuf *bufs;       /* every scratch buffer, released when the render ends */
};

/* raise: records "line L col C: msg" with code and longjmps out. */
_Noreturn void rs_fail(struct rstate *r, const struct node *at, enum err_code code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* The items a for loop or a filter walks (eval.c): a list's items, a dict's
 * keys, a string's characters (UTF-8 sequences); undefined gives an empty
 * list; anything else fails the render. */
struct val tmpl_iter_items(struct rstate *r, const struct node *at, const struct val *v);

/* A scratch buffer released when the render ends (even by a failure). */
struct sbuf *rs_buf(struct rstate *r);

/* value helpers (value.c) */
struct val v_str(struct rstate *r, const char *s, size_t n); /* s NULL: n zero bytes */
struct val v_cstr(struct rstate *r, const char *s);
struct val v_int(int64_t i);
struct val v_float(double f);
struct val v_bool(bool b);
struct val v_none(void);
struct val v_list(struct rstate *r, size_t cap);
struct val v_dict(struct rstate *r, size_t cap);
void list_push(struct rstate *r, struct list *l, struct val v);
void dict_set(struct rstate *r, struct dict *d, struct val k, struct val v);
struct val *dict_get(const struct dict *d, const char *k, size_t n);
struct val *dict_getv(const struct dict *d, const struct val *k);
bool v_truthy(const struct val *v);
bool v_eq(const struct val *a, const struct val *b);
int v_cmp(struct rstate *r, const struct node *at, const struct val *a, const struct val *b);
const char *v_type_name(const struct val *v);
void v_to_str(struct rstate *r, const struct val *v, struct sbuf *b); /* Python str() */
void v_repr(struct rstate *r, const struct val *v, struct sbuf *b);   /* Python repr() */
struct val v_stringify(struct rstate *r, const struct val *v);        /* as a V_STR */
void fmt_float(double f, struct sbuf *b);                              /* Python repr of a float */
struct tojson_opts { int indent; const char *item_sep, *key_sep; bool sort_keys; };
void v_tojson(struct rstate *r, const struct node *at, const struct val *v, const struct tojson_opts *o, int level,
              struct sbuf *b);
int json_parse(struct rstate *r, const char *s, size_t n, struct val *out, struct err *e);
size_t utf8_len(const char *s, size_t n);
size_t utf8_off(const char *s, size_t n, size_t cp); /* byte offset of code point cp (n if past) */
size_t py_space_at(const char *s, size_t n);

/* builtins (builtins.c) */
struct call_args {
    const struct val *pos; size_t n_pos;
    const struct val *kwv; const char *const *kwn; size_t n_kw;
};
struct val bi_filter(struct rstate *r, const struct node *at, const char *name, const struct val *x,
                     const struct call_args *a);
bool bi_test(struct rstate *r, const struct node *at, const char *name, const struct val *x, const struct call_args *a);
bool bi_test_exists(const char *name);
int bi_global(const char *name); /* -1 if none */
struct val bi_call_global(struct rstate *r, const struct node *at, int id, const struct call_args *a);
int bi_method(const struct val *obj, const char *name); /* -1 if none */
struct val bi_call_method(struct rstate *r, const struct node *at, const struct val *m, const struct call_args *a);
struct val bi_loop_attr(struct rstate *r, const struct node *at, const struct loopst *lp, const char *name);

/* eval.c, for builtins that call back (map with a filter, caller) */
struct val ev_call_value(struct rstate *r, const struct node *at, const struct val *f, const struct call_args *a);
void rs_step(struct rstate *r, const struct node *at);
void tmpl_exec_root(struct rstate *r, const struct node *root);

#endif
