/*
 * A JSON Schema `pattern` (the regex subset grammar.h lists) as a GBNF
 * expression over the JSON-encoded characters of a string: a literal `"`
 * becomes the two characters \" of the JSON text, a class that admits `"`
 * or `\` gets their escaped forms as alternatives, and so on. Quantifiers
 * and groups map onto GBNF's own. Without ^ / $ anchors any JSON string
 * characters may come before / after (JSON Schema's patterns search).
 */
#include "grammar/grammar_int.h"
#include "grammar/schema_int.h"

#include <string.h>

struct rx {
    const char *p;
    size_t n, i;
    struct sbuf *out;
    const char *jchar;   /* the rule name of one JSON string character */
    struct err *e;
    int depth;
};

static int rx_fail(struct rx *r, const char *what)
{
    return err_set(r->e, ERR_INVALID, "pattern '%.*s': %s at offset %zu", (int)(r->n > 80 ? 80 : r->n), r->p, what,
                   r->i);
}

/* One code point as the JSON text a string holds for it, as a GBNF literal. */
static void emit_jchar(struct sbuf *o, uint32_t c)
{
    if (c == '"')
        sbuf_addstr(o, "\"\\\\\\\"\"");
    else if (c == '\\')
        sbuf_addstr(o, "\"\\\\\\\\\"");
    else if (c == '\n')
        sbuf_addstr(o, "\"\\\\n\"");
    else if (c == '\t')
        sbuf_addstr(o, "\"\\\\t\"");
    else if (c == '\r')
        sbuf_addstr(o, "\"\\\\r\"");
    else if (c < 0x20)
        sbuf_addf(o, "\"\\\\u%04x\"", c);
    else
        sbuf_addf(o, "\"\\U%08x\"", c);
}

/* Decodes one UTF-8 character of the pattern (valid UTF-8: it comes from
 * a JSON string). A byte that does not start a well-formed character is
 * taken as the code point of its value, never as a value past U+10FFFF. */
static uint32_t rx_char(struct rx *r)
{
    const unsigned char *s = (const unsigned char *)r->p + r->i;
    size_t left = r->n - r->i;
    int n = s[0] < 0x80 ? 1 : s[0] >= 0xC2 && s[0] <= 0xDF ? 2 : s[0] >= 0xE0 && s[0] <= 0xEF ? 3
          : s[0] >= 0xF0 && s[0] <= 0xF4 ? 4 : 1;
    if ((size_t)n > left)
        n = 1;
    for (int k = 1; k < n; k++)
        if ((s[k] & 0xC0) != 0x80)
            n = 1;
    uint32_t c = n == 1 ? s[0] : s[0] & (0x7F >> n);
    for (int k = 1; k < n; k++)
        c = c << 6 | (s[k] & 0x3F);
    if (c > 0x10FFFF)
        c = s[0], n = 1;
    r->i += (size_t)n;
    return c;
}

/* Class ranges of an escape \d \w \s (upper case negated via *neg). 0 when
 * the escape is not a class. */
static int class_escape(char c, uint32_t *rg, bool *neg)
{
    *neg = c == 'D' || c == 'W' || c == 'S';
    switch (c) {
    case 'd': case 'D':
        rg[0] = '0', rg[1] = '9';
        return 1;
    case 'w': case 'W':
        rg[0] = 'a', rg[1] = 'z', rg[2] = 'A', rg[3] = 'Z', rg[4] = '0', rg[5] = '9', rg[6] = '_', rg[7] = '_';
        return 4;
    case 's': case 'S':
        rg[0] = ' ', rg[1] = ' ', rg[2] = '\t', rg[3] = '\r';
        return 2;
    }
    return 0;
}

/* A literal escape (\. \n \t ...) as its code point; -1 if unsupported. */
static int64_t literal_escape(char c)
{
    switch (c) {
    case 'n': return '\n';
    case 't': return '\t';
    case 'r': return '\r';
    case 'f': return '\f';
    case 'v': return '\v';
    }
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return -1;
    return (unsigned char)c;
}

/* At a backslash that is not a class escape: the escaped character's code
 * point (advancing past it), or -1 for an escape the subset lacks. A
 * non-ASCII character after the backslash stands for itself. */
static int64_t rx_escaped(struct rx *r)
{
    unsigned char c = (unsigned char)r->p[r->i + 1];
    if (c >= 0x80) {
        r->i++;
        return rx_char(r);
    }
    int64_t v = literal_escape((char)c);
    if (v >= 0)
        r->i += 2;
    return v;
}

/* Emits a set of code point ranges (negated or not) over JSON-encoded
 * characters: raw characters in a class, `"` `\` and controls escaped. */
static void emit_set(struct sbuf *o, const uint32_t *rg, int n, bool neg)
{
    sbuf_addstr(o, "( [");
    if (neg)
        sbuf_addstr(o, "^\"\\\\\\x00-\\x1F");
    bool has_q = false, has_bs = false, has_ctl[32] = {false};
    for (int k = 0; k < n; k++) {
        uint32_t lo = rg[2 * k], hi = rg[2 * k + 1];
        for (uint32_t c = lo; c <= hi && c < 0x20; c++)
            has_ctl[c] = true;
        if (lo <= '"' && hi >= '"')
            has_q = true;
        if (lo <= '\\' && hi >= '\\')
            has_bs = true;
        if (hi < 0x20)
            continue;
        if (lo < 0x20)
            lo = 0x20;
        /* raw `"` and `\` never appear inside a JSON string: cut them out */
        uint32_t cut[2] = {'"', '\\'};
        for (int j = 0; j < 2 && lo <= hi; j++) {
            if (cut[j] < lo || cut[j] > hi)
                continue;
            if (cut[j] > lo)
                sbuf_addf(o, "\\U%08x-\\U%08x", lo, cut[j] - 1);
            lo = cut[j] + 1;
        }
        if (lo <= hi)
            sbuf_addf(o, "\\U%08x-\\U%08x", lo, hi);
    }
    sbuf_addstr(o, "]");
    if (neg) { /* the escaped forms of what the class does not exclude */
        if (!has_q)
            sbuf_addstr(o, " | \"\\\\\\\"\"");
        if (!has_bs)
            sbuf_addstr(o, " | \"\\\\\\\\\"");
    } else {
        if (has_q)
            sbuf_addstr(o, " | \"\\\\\\\"\"");
        if (has_bs)
            sbuf_addstr(o, " | \"\\\\\\\\\"");
        for (uint32_t c = 0; c < 0x20; c++)
            if (has_ctl[c]) {
                sbuf_addstr(o, " | ");
                emit_jchar(o, c);
            }
    }
    sbuf_addstr(o, " )");
}

static int parse_class(struct rx *r)
{
    uint32_t rg[512];
    int n = 0;
    r->i++;
    bool neg = r->i < r->n && r->p[r->i] == '^';
    if (neg)
        r->i++;
    bool first = true;
    while (r->i < r->n && (r->p[r->i] != ']' || first)) {
        first = false;
        if (n > 240)
            return rx_fail(r, "character class too long");
        uint32_t lo;
        if (r->p[r->i] == '\\' && r->i + 1 < r->n) {
            char c = r->p[r->i + 1];
            bool cneg;
            int k = class_escape(c, rg + 2 * n, &cneg);
            if (k > 0) {
                if (cneg)
                    return rx_fail(r, "negated class escape inside [ ]");
                n += k;
                r->i += 2;
                continue;
            }
            int64_t v = rx_escaped(r);
            if (v < 0)
                return rx_fail(r, "unsupported escape");
            lo = (uint32_t)v;
        } else {
            lo = rx_char(r);
        }
        uint32_t hi = lo;
        if (r->i + 1 < r->n && r->p[r->i] == '-' && r->p[r->i + 1] != ']') {
            r->i++;
            if (r->p[r->i] == '\\' && r->i + 1 < r->n) {
                int64_t v = rx_escaped(r);
                if (v < 0)
                    return rx_fail(r, "unsupported escape in a range");
                hi = (uint32_t)v;
            } else {
                hi = rx_char(r);
            }
            if (hi < lo)
                return rx_fail(r, "range out of order");
        }
        rg[2 * n] = lo, rg[2 * n + 1] = hi;
        n++;
    }
    if (r->i >= r->n)
        return rx_fail(r, "unterminated [");
    r->i++;
    emit_set(r->out, rg, n, neg);
    return 0;
}

static int parse_alt(struct rx *r);

static int parse_atom(struct rx *r)
{
    char c = r->p[r->i];
    if (c == '(') {
        if (++r->depth > 64)
            return rx_fail(r, "groups nested too deeply");
        r->i++;
        if (r->i < r->n && r->p[r->i] == '?') {
            if (r->i + 1 < r->n && r->p[r->i + 1] == ':')
                r->i += 2;
            else
                return rx_fail(r, "lookaround and named groups are not supported");
        }
        sbuf_addstr(r->out, "( ");
        if (parse_alt(r) < 0)
            return -1;
        if (r->i >= r->n || r->p[r->i] != ')')
            return rx_fail(r, "unclosed (");
        r->i++;
        r->depth--;
        sbuf_addstr(r->out, " )");
        return 0;
    }
    if (c == '[')
        return parse_class(r);
    if (c == '.') {
        r->i++;
        sbuf_addf(r->out, "%s", r->jchar);
        return 0;
    }
    if (c == '\\') {
        if (r->i + 1 >= r->n)
            return rx_fail(r, "trailing backslash");
        uint32_t rg[8];
        bool neg;
        int k = class_escape(r->p[r->i + 1], rg, &neg);
        if (k > 0) {
            r->i += 2;
            emit_set(r->out, rg, k, neg);
            return 0;
        }
        int64_t v = rx_escaped(r);
        if (v < 0)
            return rx_fail(r, "unsupported escape (backreferences, \\b and the like)");
        emit_jchar(r->out, (uint32_t)v);
        return 0;
    }
    if (c == '^' || c == '$')
        return rx_fail(r, "an anchor is supported only at the start (^) and the end ($)");
    if (c == '*' || c == '+' || c == '?' || c == '{')
        return rx_fail(r, "quantifier without an atom");
    emit_jchar(r->out, rx_char(r));
    return 0;
}

/* Copies a quantifier after an atom (GBNF has the same ones). */
static int parse_quant(struct rx *r)
{
    if (r->i >= r->n)
        return 0;
    char c = r->p[r->i];
    if (c == '*' || c == '+' || c == '?') {
        sbuf_addch(r->out, c);
        r->i++;
    } else if (c == '{') { /* {m}, {m,} or {m,n}, each count at most MAX_POSITIONS */
        size_t j = r->i + 1;
        long cnt[2] = {-1, -1};
        int k = 0;
        for (; j < r->n && k < 2; j++) {
            char d = r->p[j];
            if (d >= '0' && d <= '9') {
                cnt[k] = (cnt[k] < 0 ? 0 : cnt[k]) * 10 + (d - '0');
                if (cnt[k] > MAX_POSITIONS)
                    return rx_fail(r, "a {m,n} count larger than this compiler spells out (2000)");
            } else if (d == ',' && k == 0 && cnt[0] >= 0) {
                k = 1;
            } else {
                break;
            }
        }
        if (j >= r->n || r->p[j] != '}' || cnt[0] < 0 || (cnt[1] >= 0 && cnt[1] < cnt[0]))
            return rx_fail(r, "bad {m,n} quantifier");
        sbuf_add(r->out, r->p + r->i, j - r->i + 1);
        r->i = j + 1;
    } else {
        return 0;
    }
    if (r->i < r->n && (r->p[r->i] == '?' || r->p[r->i] == '+'))
        return rx_fail(r, "lazy and possessive quantifiers are not supported");
    return 0;
}

static int parse_seq(struct rx *r)
{
    sbuf_addstr(r->out, "\"\"");
    while (r->i < r->n && r->p[r->i] != '|' && r->p[r->i] != ')') {
        if (r->p[r->i] == '$' && r->i + 1 == r->n && r->depth == 0)
            return 0;
        sbuf_addch(r->out, ' ');
        if (parse_atom(r) < 0 || parse_quant(r) < 0)
            return -1;
    }
    return 0;
}

static int parse_alt(struct rx *r)
{
    if (parse_seq(r) < 0)
        return -1;
    while (r->i < r->n && r->p[r->i] == '|') {
        r->i++;
        sbuf_addstr(r->out, " | ");
        if (parse_seq(r) < 0)
            return -1;
    }
    return 0;
}

int schema_pattern(struct sbuf *out, const char *pattern, size_t n, const char *jchar, struct err *e)
{
    struct rx r = {pattern, n, 0, out, jchar, e, 0};
    bool start = n > 0 && pattern[0] == '^';
    size_t bs = 0; /* backslashes before a final $: an even number leaves it an anchor */
    while (n > 0 && bs + 1 < n && pattern[n - 2 - bs] == '\\')
        bs++;
    bool end = n > 0 && pattern[n - 1] == '$' && bs % 2 == 0;
    if (start)
        r.i = 1;
    sbuf_addstr(out, "( ");
    if (!start)
        sbuf_addf(out, "%s* ", jchar);
    sbuf_addstr(out, "( ");
    if (parse_alt(&r) < 0)
        return -1;
    if (r.i < r.n && r.p[r.i] == ')')
        return rx_fail(&r, "unbalanced )");
    if (end && r.i == r.n - 1)
        r.i++;
    if (r.i != r.n)
        return rx_fail(&r, "unexpected character");
    sbuf_addstr(out, " )");
    if (!end)
        sbuf_addf(out, " %s*", jchar);
    sbuf_addstr(out, " )");
    return 0;
}
