/*
 * GBNF parser and compiler: text -> builder (rules of alternatives of
 * symbols, repetition rewritten into generated rules) -> checks (undefined
 * rules, root, left recursion) -> the flat struct grammar of grammar_int.h.
 *
 * Repetition rewrites (R a new rule, x the repeated unit):
 *   x*      R ::= x R |            x+      x R*
 *   x?      R ::= x |              x{m,n}  x ... x (m times) then a chain of
 *                                          n-m nested optionals (or x* for {m,})
 * A unit of several symbols (a group, a string literal) becomes one rule first.
 */
#include "grammar/grammar_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SYMBOLS (1 << 21)  /* total symbols after expansion */
#define MAX_REPEAT 100000
#define MAX_NEST 256

struct bsym {
    int32_t type;  /* GE_CHARS or GE_RULE */
    int32_t a, n;
};

struct balt {
    struct bsym *s;  /* from malloc */
    size_t n, cap;
};

struct brule {
    char *name;      /* from malloc */
    struct balt *alts; /* from malloc */
    size_t n_alts, cap_alts;
    bool defined;
    size_t ref_off;  /* where it was first referenced (for "undefined rule") */
};

struct builder {
    const char *src;
    size_t len, pos;
    struct brule *rules;
    size_t n_rules, cap_rules;
    uint32_t *ranges;    /* 2 per range */
    size_t n_ranges, cap_ranges;
    size_t n_symbols;
    int depth;
    struct err *e;
    bool failed;
};

/* ---- errors with positions ---- */

static int fail_at(struct builder *b, size_t off, const char *what)
{
    if (b->failed)
        return -1;
    int line = 1, col = 1;
    for (size_t i = 0; i < off && i < b->len; i++) {
        if (b->src[i] == '\n') {
            line++;
            col = 1;
        } else {
            col++;
        }
    }
    b->failed = true;
    return err_set(b->e, ERR_INVALID, "line %d col %d: %s", line, col, what);
}

static int fail_nomem(struct builder *b)
{
    b->failed = true;
    return err_set(b->e, ERR_NOMEM, "grammar: out of memory");
}

/* ---- builder storage ---- */

static int rule_add(struct builder *b, const char *name, size_t n)
{
    if (mem_grow(&b->rules, &b->cap_rules, b->n_rules + 1, sizeof *b->rules) < 0)
        return fail_nomem(b);
    struct brule *r = &b->rules[b->n_rules];
    memset(r, 0, sizeof *r);
    if (!(r->name = malloc(n + 1)))
        return fail_nomem(b);
    memcpy(r->name, name, n);
    r->name[n] = 0;
    return (int)b->n_rules++;
}

/* A generated rule named after its parent. */
static int rule_gen(struct builder *b, int parent)
{
    char nm[160];
    snprintf(nm, sizeof nm, "%.120s~%zu", b->rules[parent].name, b->n_rules);
    int r = rule_add(b, nm, strlen(nm));
    if (r >= 0)
        b->rules[r].defined = true;
    return r;
}

static int rule_find(struct builder *b, const char *name, size_t n)
{
    for (size_t i = 0; i < b->n_rules; i++)
        if (strlen(b->rules[i].name) == n && memcmp(b->rules[i].name, name, n) == 0)
            return (int)i;
    return -1;
}

static struct balt *alt_new(struct builder *b, int rule)
{
    struct brule *r = &b->rules[rule];
    if (mem_grow(&r->alts, &r->cap_alts, r->n_alts + 1, sizeof *r->alts) < 0)
        return fail_nomem(b), NULL;
    struct balt *a = &r->alts[r->n_alts++];
    memset(a, 0, sizeof *a);
    return a;
}

static int sym_push(struct builder *b, struct balt *a, struct bsym s)
{
    if (++b->n_symbols > MAX_SYMBOLS)
        return fail_at(b, b->pos, "grammar too large after expanding repetitions");
    if (mem_grow(&a->s, &a->cap, a->n + 1, sizeof *a->s) < 0)
        return fail_nomem(b);
    a->s[a->n++] = s;
    return 0;
}

static int range_push(struct builder *b, uint32_t lo, uint32_t hi)
{
    if (mem_grow(&b->ranges, &b->cap_ranges, 2 * (b->n_ranges + 1), sizeof *b->ranges) < 0)
        return fail_nomem(b);
    b->ranges[2 * b->n_ranges] = lo;
    b->ranges[2 * b->n_ranges + 1] = hi;
    b->n_ranges++;
    return 0;
}

static void builder_release(struct builder *b)
{
    for (size_t i = 0; i < b->n_rules; i++) {
        for (size_t j = 0; j < b->rules[i].n_alts; j++)
            free(b->rules[i].alts[j].s);
        free(b->rules[i].alts);
        free(b->rules[i].name);
    }
    free(b->rules);
    free(b->ranges);
}

/* ---- character sets ---- */

static int cmp_u32pair(const void *x, const void *y)
{
    const uint32_t *a = x, *c = y;
    return a[0] < c[0] ? -1 : a[0] > c[0] ? 1 : 0;
}

/* Sorts and merges ranges [first, n_ranges), complements them when negated,
 * removes surrogates; leaves the result at [first, n_ranges). */
static int ranges_normalise(struct builder *b, size_t first, bool negated)
{
    uint32_t *r = b->ranges ? b->ranges + 2 * first : NULL;
    size_t n = b->n_ranges - first, w = 0;
    if (n > 1)
        qsort(r, n, 2 * sizeof *r, cmp_u32pair);
    for (size_t i = 0; i < n; i++) {
        if (w > 0 && r[2 * i] <= r[2 * (w - 1) + 1] + 1) {
            if (r[2 * i + 1] > r[2 * (w - 1) + 1])
                r[2 * (w - 1) + 1] = r[2 * i + 1];
        } else {
            r[2 * w] = r[2 * i];
            r[2 * w + 1] = r[2 * i + 1];
            w++;
        }
    }
    b->n_ranges = first + w;
    /* complement (into a scratch copy) and cut out surrogates */
    size_t nin = w;
    uint32_t *in = malloc((nin + 1) * 2 * sizeof *in);
    if (!in)
        return fail_nomem(b);
    if (nin > 0)
        memcpy(in, r, nin * 2 * sizeof *in);
    b->n_ranges = first;
    uint32_t next = 0;
    for (size_t i = 0; i <= nin; i++) {
        uint32_t lo, hi;
        if (negated) {
            if (i == nin) {
                if (next > 0x10FFFF)
                    break;
                lo = next, hi = 0x10FFFF;
            } else {
                if (in[2 * i] > next) {
                    lo = next, hi = in[2 * i] - 1;
                } else {
                    next = in[2 * i + 1] + 1;
                    continue;
                }
                next = in[2 * i + 1] + 1;
            }
        } else {
            if (i == nin)
                break;
            lo = in[2 * i], hi = in[2 * i + 1];
        }
        if (hi > 0x10FFFF)
            hi = 0x10FFFF;
        if (lo > hi)
            continue;
        int rc = 0;
        if (lo < 0xD800 && hi > 0xDFFF) {
            rc = range_push(b, lo, 0xD7FF);
            if (rc == 0)
                rc = range_push(b, 0xE000, hi);
        } else if (lo >= 0xD800 && hi <= 0xDFFF) {
            rc = 0;
        } else if (lo >= 0xD800 && lo <= 0xDFFF) {
            rc = range_push(b, 0xE000, hi);
        } else if (hi >= 0xD800 && hi <= 0xDFFF) {
            rc = range_push(b, lo, 0xD7FF);
        } else {
            rc = range_push(b, lo, hi);
        }
        if (rc < 0) {
            free(in);
            return -1;
        }
    }
    free(in);
    return 0;
}

static int push_chars(struct builder *b, struct balt *a, size_t first)
{
    return sym_push(b, a, (struct bsym){GE_CHARS, (int32_t)first, (int32_t)(b->n_ranges - first)});
}

/* ---- lexing ---- */

static int peek(struct builder *b)
{
    return b->pos < b->len ? (unsigned char)b->src[b->pos] : -1;
}

/* Skips blanks and comments, and newlines when newline_ok. */
static void skip_space(struct builder *b, bool newline_ok)
{
    while (b->pos < b->len) {
        char c = b->src[b->pos];
        if (c == ' ' || c == '\t' || c == '\r') {
            b->pos++;
        } else if (c == '#') {
            while (b->pos < b->len && b->src[b->pos] != '\n')
                b->pos++;
        } else if (c == '\n' && newline_ok) {
            b->pos++;
        } else {
            break;
        }
    }
}

static bool is_name_char(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

static int hex_value(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decodes one UTF-8 character of the source at pos. */
static int source_char(struct builder *b, uint32_t *out)
{
    const unsigned char *s = (const unsigned char *)b->src + b->pos;
    size_t left = b->len - b->pos;
    int n = s[0] < 0x80 ? 1 : (s[0] & 0xE0) == 0xC0 ? 2 : (s[0] & 0xF0) == 0xE0 ? 3 : (s[0] & 0xF8) == 0xF0 ? 4 : 0;
    if (n == 0 || (size_t)n > left)
        return fail_at(b, b->pos, "invalid UTF-8 in grammar text");
    uint32_t c = n == 1 ? s[0] : s[0] & (0x7F >> n);
    for (int i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return fail_at(b, b->pos, "invalid UTF-8 in grammar text");
        c = c << 6 | (s[i] & 0x3F);
    }
    b->pos += (size_t)n;
    *out = c;
    return 0;
}

/* One character of a literal or class, with escapes. */
static int parse_char(struct builder *b, uint32_t *out)
{
    if (b->pos >= b->len)
        return fail_at(b, b->pos, "unexpected end of grammar");
    if (b->src[b->pos] != '\\')
        return source_char(b, out);
    size_t at = b->pos++;
    int c = peek(b);
    int digits = c == 'x' ? 2 : c == 'u' ? 4 : c == 'U' ? 8 : 0;
    if (digits) {
        uint32_t v = 0;
        b->pos++;
        for (int i = 0; i < digits; i++) {
            int h = hex_value(peek(b));
            if (h < 0)
                return fail_at(b, at, "bad hex escape");
            v = v << 4 | (uint32_t)h;
            b->pos++;
        }
        if (v > 0x10FFFF)
            return fail_at(b, at, "escape beyond U+10FFFF");
        *out = v;
        return 0;
    }
    b->pos++;
    switch (c) {
    case 'n': *out = '\n'; return 0;
    case 'r': *out = '\r'; return 0;
    case 't': *out = '\t'; return 0;
    case '0': *out = 0; return 0;
    case '\\': case '"': case '\'': case '[': case ']': case '-': case '^': case '/':
        *out = (uint32_t)c;
        return 0;
    }
    return fail_at(b, at, "unknown escape");
}

/* ---- syntax ---- */

static int parse_alternates(struct builder *b, int rule, bool nested);

static int parse_literal(struct builder *b, struct balt *a)
{
    size_t at = b->pos++;
    while (peek(b) != '"') {
        if (b->pos >= b->len || b->src[b->pos] == '\n')
            return fail_at(b, at, "unterminated string literal");
        uint32_t c;
        if (parse_char(b, &c) < 0)
            return -1;
        size_t first = b->n_ranges;
        if (range_push(b, c, c) < 0 || ranges_normalise(b, first, false) < 0 || push_chars(b, a, first) < 0)
            return -1;
    }
    b->pos++;
    return 0;
}

static int parse_class(struct builder *b, struct balt *a)
{
    size_t at = b->pos++;
    bool neg = peek(b) == '^';
    if (neg)
        b->pos++;
    size_t first = b->n_ranges;
    while (peek(b) != ']') {
        if (b->pos >= b->len || b->src[b->pos] == '\n')
            return fail_at(b, at, "unterminated character class");
        uint32_t lo, hi;
        if (parse_char(b, &lo) < 0)
            return -1;
        hi = lo;
        if (peek(b) == '-' && b->pos + 1 < b->len && b->src[b->pos + 1] != ']' && b->src[b->pos + 1] != '\n') {
            b->pos++;
            if (parse_char(b, &hi) < 0)
                return -1;
            if (hi < lo)
                return fail_at(b, at, "character range out of order");
        }
        if (range_push(b, lo, hi) < 0)
            return -1;
    }
    b->pos++;
    if (ranges_normalise(b, first, neg) < 0)
        return -1;
    return push_chars(b, a, first);
}

static int parse_group(struct builder *b, struct balt *a, int rule)
{
    size_t at = b->pos++;
    if (++b->depth > MAX_NEST)
        return fail_at(b, at, "groups nested too deeply");
    int sub = rule_gen(b, rule);
    if (sub < 0)
        return -1;
    skip_space(b, true);
    if (parse_alternates(b, sub, true) < 0)
        return -1;
    if (peek(b) != ')')
        return fail_at(b, at, "unclosed '('");
    b->pos++;
    b->depth--;
    return sym_push(b, a, (struct bsym){GE_RULE, sub, 0});
}

static int parse_ref(struct builder *b, struct balt *a)
{
    size_t at = b->pos;
    while (is_name_char(peek(b)))
        b->pos++;
    int r = rule_find(b, b->src + at, b->pos - at);
    if (r < 0) {
        if ((r = rule_add(b, b->src + at, b->pos - at)) < 0)
            return -1;
        b->rules[r].ref_off = at;
    }
    return sym_push(b, a, (struct bsym){GE_RULE, r, 0});
}

/* Reads a decimal number for {m,n}. */
static int parse_count(struct builder *b, size_t at, int *out)
{
    int v = 0, digits = 0;
    while (peek(b) >= '0' && peek(b) <= '9') {
        v = v * 10 + (peek(b) - '0');
        if (v > MAX_REPEAT)
            return fail_at(b, at, "repetition count too large");
        b->pos++;
        digits++;
    }
    if (!digits)
        return fail_at(b, at, "expected a number in {}");
    *out = v;
    return 0;
}

/* Parses a postfix operator into min/max (max -1 = unbounded); 0 if none. */
static int parse_postfix(struct builder *b, int *mn, int *mx)
{
    int c = peek(b);
    size_t at = b->pos;
    if (c == '*' || c == '+' || c == '?') {
        b->pos++;
        *mn = c == '+' ? 1 : 0;
        *mx = c == '?' ? 1 : -1;
        return 1;
    }
    if (c != '{')
        return 0;
    b->pos++;
    skip_space(b, false);
    if (parse_count(b, at, mn) < 0)
        return -1;
    skip_space(b, false);
    *mx = *mn;
    if (peek(b) == ',') {
        b->pos++;
        skip_space(b, false);
        *mx = -1;
        if (peek(b) != '}' && parse_count(b, at, mx) < 0)
            return -1;
        skip_space(b, false);
    }
    if (peek(b) != '}')
        return fail_at(b, at, "expected '}' after repetition count");
    b->pos++;
    if (*mx >= 0 && *mx < *mn)
        return fail_at(b, at, "repetition {m,n} with n < m");
    return 1;
}

/* Replaces symbols [start, a->n) of alternative ai of rule by the repetition
 * min..max of them. */
static int apply_repeat(struct builder *b, int rule, size_t ai, size_t start, int mn, int mx)
{
    struct balt *a = &b->rules[rule].alts[ai];
    struct bsym unit = a->s[start];
    if (a->n - start > 1) { /* several symbols (a literal): one rule first */
        int u = rule_gen(b, rule);
        if (u < 0)
            return -1;
        struct balt *ua = alt_new(b, u);
        a = &b->rules[rule].alts[ai];
        if (!ua)
            return -1;
        for (size_t i = start; i < a->n; i++)
            if (sym_push(b, ua, a->s[i]) < 0)
                return -1;
        unit = (struct bsym){GE_RULE, u, 0};
    }
    a->n = start;
    for (int i = 0; i < mn; i++)
        if (sym_push(b, &b->rules[rule].alts[ai], unit) < 0)
            return -1;
    if (mx == mn)
        return 0;
    int tail;
    if (mx < 0) { /* R ::= unit R | */
        if ((tail = rule_gen(b, rule)) < 0)
            return -1;
        struct balt *x = alt_new(b, tail);
        if (!x || sym_push(b, x, unit) < 0 || sym_push(b, x, (struct bsym){GE_RULE, tail, 0}) < 0 ||
            !alt_new(b, tail))
            return -1;
    } else { /* O_1 ::= unit | ; O_k ::= unit O_{k-1} | */
        tail = -1;
        for (int k = 0; k < mx - mn; k++) {
            int o = rule_gen(b, rule);
            if (o < 0)
                return -1;
            struct balt *x = alt_new(b, o);
            if (!x || sym_push(b, x, unit) < 0)
                return -1;
            if (tail >= 0 && sym_push(b, x, (struct bsym){GE_RULE, tail, 0}) < 0)
                return -1;
            if (!alt_new(b, o))
                return -1;
            tail = o;
        }
    }
    return sym_push(b, &b->rules[rule].alts[ai], (struct bsym){GE_RULE, tail, 0});
}

/* True at the start of the next rule definition `name ::=`. */
static bool at_rule_start(struct builder *b)
{
    size_t p = b->pos;
    while (p < b->len && is_name_char((unsigned char)b->src[p]))
        p++;
    while (p < b->len && (b->src[p] == ' ' || b->src[p] == '\t'))
        p++;
    return p + 2 < b->len && memcmp(b->src + p, "::=", 3) == 0;
}

static int parse_sequence(struct builder *b, int rule, bool nested)
{
    struct balt *a = alt_new(b, rule);
    if (!a)
        return -1;
    size_t ai = b->rules[rule].n_alts - 1;
    for (;;) {
        a = &b->rules[rule].alts[ai];
        size_t start = a->n;
        int c = peek(b);
        int rc;
        if (c == '"')
            rc = parse_literal(b, a);
        else if (c == '[')
            rc = parse_class(b, a);
        else if (c == '.') {
            b->pos++;
            size_t first = b->n_ranges;
            rc = range_push(b, 0, 0x10FFFF);
            if (rc == 0 && (rc = ranges_normalise(b, first, false)) == 0)
                rc = push_chars(b, a, first);
        } else if (c == '(')
            rc = parse_group(b, a, rule);
        else if (is_name_char(c) && !(nested ? false : at_rule_start(b)))
            rc = parse_ref(b, a);
        else
            break;
        if (rc < 0)
            return -1;
        int mn, mx;
        int pf = parse_postfix(b, &mn, &mx);
        if (pf < 0)
            return -1;
        if (pf > 0) {
            if (b->rules[rule].alts[ai].n == start)
                return fail_at(b, b->pos - 1, "repetition of nothing");
            if (apply_repeat(b, rule, ai, start, mn, mx) < 0)
                return -1;
        }
        skip_space(b, nested);
    }
    return 0;
}

static int parse_alternates(struct builder *b, int rule, bool nested)
{
    if (parse_sequence(b, rule, nested) < 0)
        return -1;
    for (;;) {
        size_t save = b->pos;
        if (!nested)
            skip_space(b, true);
        if (peek(b) != '|') {
            b->pos = save;
            return 0;
        }
        b->pos++;
        skip_space(b, true);
        if (parse_sequence(b, rule, nested) < 0)
            return -1;
    }
}

static int parse_rule(struct builder *b)
{
    size_t at = b->pos;
    while (is_name_char(peek(b)))
        b->pos++;
    if (b->pos == at)
        return fail_at(b, at, "expected a rule name");
    size_t nlen = b->pos - at;
    skip_space(b, false);
    if (b->pos + 2 >= b->len || memcmp(b->src + b->pos, "::=", 3) != 0)
        return fail_at(b, b->pos, "expected '::='");
    b->pos += 3;
    int r = rule_find(b, b->src + at, nlen);
    if (r >= 0 && b->rules[r].defined)
        return fail_at(b, at, "rule defined twice");
    if (r < 0 && (r = rule_add(b, b->src + at, nlen)) < 0)
        return -1;
    b->rules[r].defined = true;
    skip_space(b, true);
    if (parse_alternates(b, r, false) < 0)
        return -1;
    skip_space(b, false);
    if (b->pos < b->len && b->src[b->pos] != '\n')
        return fail_at(b, b->pos, "unexpected character");
    return 0;
}

/* ---- checks ---- */

/* Fixpoint: nullable[r] when rule r can match the empty string. */
static void compute_nullable(struct builder *b, bool *nullable)
{
    for (bool changed = true; changed;) {
        changed = false;
        for (size_t r = 0; r < b->n_rules; r++) {
            if (nullable[r])
                continue;
            for (size_t j = 0; j < b->rules[r].n_alts && !nullable[r]; j++) {
                struct balt *a = &b->rules[r].alts[j];
                size_t i = 0;
                while (i < a->n && a->s[i].type == GE_RULE && nullable[a->s[i].a])
                    i++;
                if (i == a->n)
                    nullable[r] = changed = true;
            }
        }
    }
}

/* Depth-first search for a cycle of rules reachable without consuming a
 * character. state: 0 new, 1 on the path, 2 done. */
static int left_rec(struct builder *b, const bool *nullable, char *state, size_t r)
{
    if (state[r] == 2)
        return -1;
    if (state[r] == 1)
        return (int)r;
    state[r] = 1;
    for (size_t j = 0; j < b->rules[r].n_alts; j++) {
        struct balt *a = &b->rules[r].alts[j];
        for (size_t i = 0; i < a->n && a->s[i].type == GE_RULE; i++) {
            int c = left_rec(b, nullable, state, (size_t)a->s[i].a);
            if (c >= 0)
                return c;
            if (!nullable[a->s[i].a])
                break;
        }
    }
    state[r] = 2;
    return -1;
}

static int check_rules(struct builder *b, int *root)
{
    for (size_t r = 0; r < b->n_rules; r++)
        if (!b->rules[r].defined) {
            char what[200];
            snprintf(what, sizeof what, "undefined rule '%.100s'", b->rules[r].name);
            return fail_at(b, b->rules[r].ref_off, what);
        }
    if ((*root = rule_find(b, "root", 4)) < 0)
        return fail_at(b, b->len, "no rule named 'root'");
    bool *nullable = calloc(b->n_rules, sizeof *nullable);
    char *state = calloc(b->n_rules, 1);
    if (!nullable || !state) {
        free(nullable);
        free(state);
        return fail_nomem(b);
    }
    compute_nullable(b, nullable);
    int bad = -1;
    for (size_t r = 0; r < b->n_rules && bad < 0; r++)
        bad = left_rec(b, nullable, state, r);
    free(nullable);
    free(state);
    if (bad >= 0) {
        char what[200];
        snprintf(what, sizeof what, "rule '%.100s' is left-recursive", b->rules[bad].name);
        return fail_at(b, 0, what);
    }
    return 0;
}

/* ---- flattening ---- */

static struct grammar *flatten(struct builder *b, int root)
{
    struct grammar *g = calloc(1, sizeof *g);
    if (!g)
        return fail_nomem(b), NULL;
    size_t n_alts = 0, n_elems = 0;
    for (size_t r = 0; r < b->n_rules; r++) {
        n_alts += b->rules[r].n_alts;
        for (size_t j = 0; j < b->rules[r].n_alts; j++)
            n_elems += b->rules[r].alts[j].n + 1;
    }
    g->elems = malloc((n_elems + 1) * sizeof *g->elems);
    g->alt_start = malloc((n_alts + 1) * sizeof *g->alt_start);
    g->rule_first = malloc(b->n_rules * sizeof *g->rule_first);
    g->rule_n_alts = malloc(b->n_rules * sizeof *g->rule_n_alts);
    g->rule_name = calloc(b->n_rules, sizeof *g->rule_name);
    g->ranges = malloc((2 * b->n_ranges + 2) * sizeof *g->ranges);
    g->n_rules = (int)b->n_rules;
    atomic_init(&g->refs, 1);
    pthread_mutex_init(&g->mu, NULL);
    if (!g->elems || !g->alt_start || !g->rule_first || !g->rule_n_alts || !g->rule_name || !g->ranges) {
        grammar_free(g);
        return fail_nomem(b), NULL;
    }
    if (b->n_ranges)
        memcpy(g->ranges, b->ranges, 2 * b->n_ranges * sizeof *g->ranges);
    g->n_ranges = (int)b->n_ranges;
    int ne = 0, na = 0;
    for (size_t r = 0; r < b->n_rules; r++) {
        g->rule_first[r] = na;
        g->rule_n_alts[r] = (int32_t)b->rules[r].n_alts;
        g->rule_name[r] = b->rules[r].name;
        b->rules[r].name = NULL;
        for (size_t j = 0; j < b->rules[r].n_alts; j++) {
            g->alt_start[na++] = ne;
            for (size_t i = 0; i < b->rules[r].alts[j].n; i++) {
                struct bsym s = b->rules[r].alts[j].s[i];
                g->elems[ne++] = (struct gelem){s.type, s.a, s.n};
            }
            g->elems[ne++] = (struct gelem){GE_END, 0, 0};
        }
    }
    g->n_elems = ne;
    g->root = root;
    return g;
}

struct grammar *grammar_compile(const char *gbnf, size_t len, struct err *e)
{
    struct builder b = {.src = gbnf, .len = len, .e = e};
    struct grammar *g = NULL;
    int root = 0;
    for (;;) {
        skip_space(&b, true);
        if (b.pos >= b.len)
            break;
        if (parse_rule(&b) < 0)
            goto out;
    }
    if (check_rules(&b, &root) < 0)
        goto out;
    g = flatten(&b, root);
out:
    builder_release(&b);
    return g;
}

struct grammar *grammar_ref(struct grammar *g)
{
    atomic_fetch_add(&g->refs, 1);
    return g;
}

void grammar_free(struct grammar *g)
{
    if (!g || atomic_fetch_sub(&g->refs, 1) != 1)
        return;
    grammar_cache_release(g);
    pthread_mutex_destroy(&g->mu);
    if (g->rule_name)
        for (int r = 0; r < g->n_rules; r++)
            free(g->rule_name[r]);
    free(g->rule_name);
    for (int i = 0; i < g->n_ctl; i++)
        free(g->ctl_text[i]);
    free(g->ctl_text);
    for (int i = 0; i < 3; i++)
        free(g->trig[i]);
    free(g->elems);
    free(g->alt_start);
    free(g->rule_first);
    free(g->rule_n_alts);
    free(g->ranges);
    free(g);
}

int grammar_allow_control(struct grammar *g, const char *const *texts, int n, struct err *e)
{
    for (int i = 0; i < n; i++) {
        if (!texts[i] || !*texts[i])
            continue;
        char **t = realloc(g->ctl_text, ((size_t)g->n_ctl + 1) * sizeof *t);
        if (!t)
            return err_set(e, ERR_NOMEM, "grammar: out of memory");
        g->ctl_text = t;
        if (!(t[g->n_ctl] = strdup(texts[i])))
            return err_set(e, ERR_NOMEM, "grammar: out of memory");
        g->n_ctl++;
    }
    return 0;
}

int grammar_set_trigger(struct grammar *g, const struct grammar_trigger *t, struct err *e)
{
    const char *m[3] = {t->text, t->skip_open, t->skip_close};
    if (!m[0] || !*m[0] || strlen(m[0]) > GRAMMAR_TRIGGER_MAX)
        return err_set(e, ERR_INVALID, "grammar: a trigger must have 1 to %d bytes", GRAMMAR_TRIGGER_MAX);
    bool has_open = m[1] && *m[1], has_close = m[2] && *m[2];
    if (has_open != has_close || (has_open && (strlen(m[1]) > GRAMMAR_TRIGGER_MAX || strlen(m[2]) > GRAMMAR_TRIGGER_MAX)))
        return err_set(e, ERR_INVALID, "grammar: skip markers must both be given, each of 1 to %d bytes",
                       GRAMMAR_TRIGGER_MAX);
    for (int i = 0; i < 3; i++) {
        free(g->trig[i]);
        g->trig[i] = NULL;
        if (m[i] && *m[i] && !(g->trig[i] = strdup(m[i])))
            return err_set(e, ERR_NOMEM, "grammar: out of memory");
    }
    g->skip_start = has_open && t->start_skipped;
    return 0;
}
