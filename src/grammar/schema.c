/*
 * JSON Schema -> GBNF. Every subschema that needs one becomes a rule
 * <prefix>s<N>; primitives (ws, string, number, value, ...) are rules
 * emitted once at the end; a $ref becomes one rule per target, named when
 * first met, so recursive schemas refer back to it. allOf is merged into
 * one schema first (merge_schemas); anyOf/oneOf with sibling keywords
 * merge those into every branch.
 *
 * Objects put the properties in declaration order: for n properties, rules
 * B(i, first) generate "the properties from i on", first saying whether a
 * comma is due, so an optional property costs two rules, not a doubling.
 * Arrays are a chain of rules A(i), one per position up to the larger of
 * minItems and the prefixItems, then a bounded chain or a star.
 * Integer ranges become decimal patterns digit by digit (int_range); number
 * bounds are decimals too (to_decimal), the fraction digits walked against
 * them digit by digit (frac_rest).
 */
#include "grammar/grammar_int.h"
#include "grammar/schema_int.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DEPTH 64
#define MAX_DIGITS 16
#define MAX_FRAC 16 /* fraction digits of a bounded number, and of a bound */
#define MAX_KEY 32 /* characters of a key of additionalProperties */

struct sref {
    char *ref;           /* from malloc */
    char name[96];
};

struct sc {
    json_t *root;        /* borrowed */
    const char *p;       /* rule prefix */
    struct sbuf rules;
    int n_gen;
    struct sref *refs;   /* from malloc */
    size_t n_refs, cap_refs;
    int depth;
    struct err *e;
};

static int sc_fail(struct sc *c, const char *path, const char *fmt, const char *what)
{
    char msg[300];
    snprintf(msg, sizeof msg, fmt, what);
    return err_set(c->e, ERR_INVALID, "schema at '%s%s': %s", path[0] == '#' ? "" : "#", path, msg);
}

/* A GBNF string literal of n raw bytes. */
static void gbnf_literal(struct sbuf *o, const char *s, size_t n)
{
    sbuf_addch(o, '"');
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '"' || ch == '\\')
            sbuf_addf(o, "\\%c", ch);
        else if (ch < 0x20 || ch == 0x7F)
            sbuf_addf(o, "\\x%02x", ch);
        else
            sbuf_addch(o, (char)ch);
    }
    sbuf_addch(o, '"');
}

/* A JSON value's compact text as a GBNF literal. */
static int json_literal(struct sc *c, struct sbuf *o, json_t *v, const char *path)
{
    char *t = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    if (!t)
        return err_set(c->e, ERR_NOMEM, "schema: out of memory");
    gbnf_literal(o, t, strlen(t));
    free(t);
    return 0;
}

static void new_name(struct sc *c, char *name)
{
    snprintf(name, 96, "%ss%d", c->p, c->n_gen++);
}

/* Appends `name ::= expr` to the rules. */
static void put_rule(struct sc *c, const char *name, const struct sbuf *expr)
{
    sbuf_addf(&c->rules, "%s ::= %s\n", name, expr->buf ? expr->buf : "");
}

static const char *known[] = {"type", "properties", "required", "additionalProperties", "items", "prefixItems",
                              "minItems", "maxItems", "enum", "const", "anyOf", "oneOf", "allOf", "$ref", "$defs",
                              "definitions", "minLength", "maxLength", "pattern", "format", "minimum", "maximum",
                              "exclusiveMinimum", "exclusiveMaximum", "nullable", NULL};
static const char *annotations[] = {"title", "description", "default", "examples", "$schema", "$id", "$comment",
                                    "deprecated", "readOnly", "writeOnly", NULL};

static bool in_list(const char **l, const char *k)
{
    for (int i = 0; l[i]; i++)
        if (strcmp(l[i], k) == 0)
            return true;
    return false;
}

static int check_keywords(struct sc *c, json_t *s, const char *path)
{
    const char *k;
    json_t *v;
    json_object_foreach(s, k, v) {
        if (!in_list(known, k) && !in_list(annotations, k))
            return sc_fail(c, path, "unsupported keyword '%s'", k);
    }
    return 0;
}

/* True when the schema has constraint keywords besides `skip`. */
static bool has_constraints_besides(json_t *s, const char *skip)
{
    const char *k;
    json_t *v;
    json_object_foreach(s, k, v) {
        if (strcmp(k, skip) != 0 && in_list(known, k) && strcmp(k, "$defs") != 0 && strcmp(k, "definitions") != 0)
            return true;
    }
    return false;
}

static int gen(struct sc *c, json_t *s, const char *path, char *name);

/* ---- $ref and allOf ---------------------------------------------------- */

static json_t *resolve_ref(struct sc *c, const char *ref, const char *path)
{
    if (ref[0] != '#') {
        sc_fail(c, path, "unsupported $ref '%.100s': only local references (#...)", ref);
        return NULL;
    }
    json_t *v = c->root;
    const char *p = ref + 1;
    while (*p == '/') {
        p++;
        char tok[256];
        size_t n = 0;
        while (*p && *p != '/' && n < sizeof tok - 1) {
            if (p[0] == '~' && (p[1] == '0' || p[1] == '1')) {
                tok[n++] = p[1] == '0' ? '~' : '/';
                p += 2;
            } else {
                tok[n++] = *p++;
            }
        }
        tok[n] = 0;
        if (json_is_object(v))
            v = json_object_get(v, tok);
        else if (json_is_array(v))
            v = json_array_get(v, (size_t)strtoul(tok, NULL, 10));
        else
            v = NULL;
        if (!v)
            break;
    }
    if (!v || *p) {
        sc_fail(c, path, "$ref '%.100s' points at nothing", ref);
        return NULL;
    }
    return v;
}

static int ref_rule(struct sc *c, const char *ref, const char *path, char *name)
{
    for (size_t i = 0; i < c->n_refs; i++)
        if (strcmp(c->refs[i].ref, ref) == 0) {
            memcpy(name, c->refs[i].name, 96);
            return 0;
        }
    json_t *target = resolve_ref(c, ref, path);
    if (!target)
        return -1;
    if (mem_grow(&c->refs, &c->cap_refs, c->n_refs + 1, sizeof *c->refs) < 0 || !(c->refs[c->n_refs].ref = strdup(ref)))
        return err_set(c->e, ERR_NOMEM, "schema: out of memory");
    struct sref *r = &c->refs[c->n_refs++];
    snprintf(r->name, sizeof r->name, "%sref%zu", c->p, c->n_refs);
    memcpy(name, r->name, 96);
    char inner[96];
    if (gen(c, target, ref, inner) < 0)
        return -1;
    sbuf_addf(&c->rules, "%s ::= %s\n", name, inner);
    return 0;
}

static bool is_min_key(const char *k)
{
    return !strcmp(k, "minimum") || !strcmp(k, "minLength") || !strcmp(k, "minItems") || !strcmp(k, "exclusiveMinimum");
}

static bool is_max_key(const char *k)
{
    return !strcmp(k, "maximum") || !strcmp(k, "maxLength") || !strcmp(k, "maxItems") || !strcmp(k, "exclusiveMaximum");
}

/* The intersection of two `type` values (strings or arrays). */
static json_t *merge_types(json_t *a, json_t *b)
{
    json_t *out = json_array();
    json_t *la = json_is_array(a) ? json_incref(a) : json_pack("[O]", a);
    json_t *lb = json_is_array(b) ? json_incref(b) : json_pack("[O]", b);
    size_t i, j;
    json_t *x, *y;
    json_array_foreach(la, i, x) {
        json_array_foreach(lb, j, y) {
            const char *sx = json_string_value(x), *sy = json_string_value(y);
            if (!sx || !sy)
                continue;
            if (!strcmp(sx, sy) || (!strcmp(sx, "integer") && !strcmp(sy, "number")))
                json_array_append_new(out, json_string(sx));
            else if (!strcmp(sx, "number") && !strcmp(sy, "integer"))
                json_array_append_new(out, json_string(sy));
        }
    }
    json_decref(la);
    json_decref(lb);
    return out;
}

static int merge_into(struct sc *c, json_t *m, json_t *s, const char *path);

/* Merges one keyword k = v of another allOf member into m. */
static int merge_key(struct sc *c, json_t *m, const char *k, json_t *v, const char *path)
{
    json_t *old = json_object_get(m, k);
    if (!old || json_equal(old, v) || in_list(annotations, k) || !strcmp(k, "$defs") || !strcmp(k, "definitions")) {
        if (!old)
            json_object_set(m, k, v);
        return 0;
    }
    if (!strcmp(k, "properties") && json_is_object(old) && json_is_object(v)) {
        json_t *props = json_deep_copy(old);
        const char *pk;
        json_t *pv;
        json_object_foreach(v, pk, pv) {
            json_t *prev = json_object_get(props, pk);
            json_object_set_new(props, pk, prev ? json_pack("{s:[O,O]}", "allOf", prev, pv) : json_incref(pv));
        }
        json_object_set_new(m, k, props);
        return 0;
    }
    if (!strcmp(k, "required") && json_is_array(old) && json_is_array(v)) {
        json_t *req = json_deep_copy(old);
        size_t i;
        json_t *x;
        json_array_foreach(v, i, x) {
            size_t j;
            json_t *y;
            bool dup = false;
            json_array_foreach(req, j, y) dup = dup || json_equal(x, y);
            if (!dup)
                json_array_append(req, x);
        }
        json_object_set_new(m, k, req);
        return 0;
    }
    if ((is_min_key(k) || is_max_key(k)) && json_is_number(old) && json_is_number(v)) {
        bool take = is_min_key(k) ? json_number_value(v) > json_number_value(old)
                                  : json_number_value(v) < json_number_value(old);
        if (take)
            json_object_set(m, k, v);
        return 0;
    }
    if (!strcmp(k, "type")) {
        json_t *t = merge_types(old, v);
        if (json_array_size(t) == 0) {
            json_decref(t);
            return sc_fail(c, path, "allOf: the types of its members have nothing in common%s", "");
        }
        json_object_set_new(m, k, t);
        return 0;
    }
    if (!strcmp(k, "additionalProperties") && (json_is_false(old) || json_is_false(v))) {
        json_object_set_new(m, k, json_false());
        return 0;
    }
    return sc_fail(c, path, "allOf: cannot combine two different '%s'", k);
}

/* Merges schema s (its $ref and allOf resolved) into m. */
static int merge_into(struct sc *c, json_t *m, json_t *s, const char *path)
{
    if (++c->depth > MAX_DEPTH)
        return sc_fail(c, path, "allOf/$ref nested too deeply%s", "");
    if (json_is_true(s)) {
        c->depth--;
        return 0;
    }
    if (!json_is_object(s))
        return sc_fail(c, path, "allOf member is not a schema object%s", "");
    if (check_keywords(c, s, path) < 0)
        return -1;
    json_t *ref = json_object_get(s, "$ref");
    if (ref) {
        json_t *t = json_is_string(ref) ? resolve_ref(c, json_string_value(ref), path) : NULL;
        if (!t)
            return json_is_string(ref) ? -1 : sc_fail(c, path, "$ref is not a string%s", "");
        if (merge_into(c, m, t, path) < 0)
            return -1;
    }
    json_t *all = json_object_get(s, "allOf");
    if (all) {
        size_t i;
        json_t *x;
        if (!json_is_array(all))
            return sc_fail(c, path, "allOf is not an array%s", "");
        json_array_foreach(all, i, x) if (merge_into(c, m, x, path) < 0) return -1;
    }
    const char *k;
    json_t *v;
    json_object_foreach(s, k, v) {
        if (strcmp(k, "$ref") != 0 && strcmp(k, "allOf") != 0 && merge_key(c, m, k, v, path) < 0)
            return -1;
    }
    c->depth--;
    return 0;
}

/* ---- numbers --------------------------------------------------------------- */

/* Appends the decimal pattern of the integers in [a, b] (0 <= a <= b), no
 * leading zeros, as alternatives (the caller groups them). */
static void int_range(struct sbuf *o, uint64_t a, uint64_t b, bool *first)
{
    uint64_t pow = 1;
    for (int len = 1; len <= 19 && a <= b; len++, pow *= 10) {
        uint64_t lo = len == 1 ? 0 : pow, hi = len == 19 ? UINT64_MAX : pow * 10 - 1;
        if (b < lo || a > hi)
            continue;
        uint64_t x = a > lo ? a : lo, y = b < hi ? b : hi;
        while (x <= y) {
            uint64_t step = 1;
            int k = 0;
            while (k + 1 < len && x % (step * 10) == 0 && x + step * 10 - 1 <= y)
                step *= 10, k++;
            uint64_t d = (x / step) % 10;
            uint64_t cnt = (y - x + 1) / step;
            if (cnt > 10 - d)
                cnt = 10 - d;
            char digits[24];
            snprintf(digits, sizeof digits, "%llu", (unsigned long long)x);
            sbuf_addstr(o, *first ? "" : " | ");
            *first = false;
            if (len - k - 1 > 0)
                sbuf_addf(o, "\"%.*s\" ", len - k - 1, digits);
            sbuf_addf(o, "[%llu-%llu]", (unsigned long long)d, (unsigned long long)(d + cnt - 1));
            if (k > 0)
                sbuf_addf(o, " [0-9]{%d}", k);
            x += cnt * step;
            if (x == 0)
                break; /* wrapped */
        }
    }
}

/* [a, inf): the range up to the largest number of its length, then longer
 * numbers (up to MAX_DIGITS digits). */
static void int_from(struct sbuf *o, uint64_t a, bool *first)
{
    uint64_t top = 9;
    int len = 1;
    while (top < a)
        top = top * 10 + 9, len++;
    int_range(o, a, top, first);
    if (len < MAX_DIGITS) {
        sbuf_addf(o, "%s[1-9] [0-9]{%d,%d}", *first ? "" : " | ", len, MAX_DIGITS - 1);
        *first = false;
    }
}

/* A number bound as a decimal: sign, whole part and fraction digits without
 * trailing zeros; zero is never negative. */
struct dec {
    bool neg;
    uint64_t w;
    char f[MAX_FRAC + 1];
};

struct bound {
    bool set;
    double v;
    bool excl;
    struct dec d; /* numbers only: v as a decimal */
};

/* The shortest decimal that reads back as v (|v| <= 1e15), written out
 * without an exponent; -1 when it has more than MAX_FRAC fraction digits. */
/* The fewest significant digits that read back as v. */
static int shortest_digits(double v)
{
    char buf[40];
    int p = 1;
    for (; p < 17; p++) {
        snprintf(buf, sizeof buf, "%.*e", p - 1, v);
        if (strtod(buf, NULL) == v)
            break;
    }
    return p;
}

static int to_decimal(double v, struct dec *d)
{
    char buf[40], digits[24];
    int p = shortest_digits(v);
    snprintf(buf, sizeof buf, "%.*e", p - 1, fabs(v));
    int n = 0;
    const char *q = buf;
    for (; *q && *q != 'e'; q++)
        if (*q != '.' && n < (int)sizeof digits)
            digits[n++] = *q;
    int point = *q ? atoi(q + 1) + 1 : n; /* value = 0.digits * 10^point */
    *d = (struct dec){.neg = v < 0};
    for (int i = 0; i < point; i++)
        d->w = d->w * 10 + (uint64_t)(i < n ? digits[i] - '0' : 0);
    int nf = n - point;
    if (nf > MAX_FRAC)
        return -1;
    for (int j = 0; j < nf; j++)
        d->f[j] = point + j >= 0 ? digits[point + j] : '0';
    while (nf > 0 && d->f[nf - 1] == '0')
        nf--;
    d->f[nf > 0 ? nf : 0] = 0;
    if (d->w == 0 && !d->f[0])
        d->neg = false;
    return 0;
}

/* Reads minimum/exclusiveMinimum (lower) or maximum/exclusiveMaximum. */
static int read_bound(struct sc *c, json_t *s, bool lower, bool integer, const char *path, struct bound *b)
{
    json_t *inc = json_object_get(s, lower ? "minimum" : "maximum");
    json_t *exc = json_object_get(s, lower ? "exclusiveMinimum" : "exclusiveMaximum");
    *b = (struct bound){0};
    if (inc && !json_is_number(inc))
        return sc_fail(c, path, "'%s' is not a number", lower ? "minimum" : "maximum");
    if (exc && !json_is_number(exc))
        return sc_fail(c, path, "'%s' is not a number (the draft-4 boolean form is not supported)",
                       lower ? "exclusiveMinimum" : "exclusiveMaximum");
    if (inc)
        *b = (struct bound){true, json_number_value(inc), false, {0}};
    if (exc) {
        double v = json_number_value(exc);
        if (!b->set || (lower ? v >= b->v : v <= b->v))
            *b = (struct bound){true, v, true, {0}};
    }
    if (!b->set)
        return 0;
    const char *key = lower ? (b->excl ? "exclusiveMinimum" : "minimum") : (b->excl ? "exclusiveMaximum" : "maximum");
    if (!(fabs(b->v) <= 1e15))
        return sc_fail(c, path, "bound '%s' is too large (at most 1e15)", key);
    if (integer) { /* exact: to an inclusive integer bound */
        double v = b->v;
        b->v = lower ? (b->excl ? floor(v) + 1 : ceil(v)) : (b->excl ? ceil(v) - 1 : floor(v));
        b->excl = false;
    } else if (to_decimal(b->v, &b->d) < 0) {
        char msg[120];
        snprintf(msg, sizeof msg, "bound '%s' (%.*g) has more than %d fraction digits", key, shortest_digits(b->v), b->v,
                 MAX_FRAC);
        return sc_fail(c, path, "%s", msg);
    }
    return 0;
}

/* The integers M with lo <= M <= hi (hi < 0: unbounded). Appends alternatives. */
static void int_magnitude(struct sbuf *o, uint64_t lo, int64_t hi, bool *first)
{
    if (hi < 0)
        int_from(o, lo, first);
    else if ((uint64_t)hi >= lo)
        int_range(o, lo, (uint64_t)hi, first);
}

static int gen_integer(const struct bound *lo, const struct bound *hi, struct sbuf *o)
{
    bool first = true;
    sbuf_addstr(o, "( ");
    if (!hi->set || hi->v >= 0) { /* x >= 0 */
        int_magnitude(o, lo->set && lo->v >= 0 ? (uint64_t)lo->v : 0, hi->set ? (int64_t)hi->v : -1, &first);
    }
    if (!lo->set || lo->v < 0) { /* x < 0: "-" M with M in [max(-hi, 1), -lo] */
        uint64_t mlo = hi->set && hi->v < 0 ? (uint64_t)-hi->v : 1;
        sbuf_addstr(o, first ? "\"-\" ( " : " | \"-\" ( ");
        bool f2 = true;
        int_magnitude(o, mlo, lo->set ? (int64_t)-lo->v : -1, &f2);
        if (f2)
            sbuf_addstr(o, "[]");
        sbuf_addstr(o, " )");
        first = false;
    }
    sbuf_addstr(o, " )");
    return 0;
}

/* ---- fractions: digit strings compared as decimals --------------------------
 * A bounded number's text is ["-"] W ["." F], F of 1 to MAX_FRAC digits. For a
 * fixed whole part W the fraction F must satisfy 0.L <= 0.F (< when exclusive)
 * and 0.F <= 0.H: a digit-by-digit walk that stays "tight" against a bound
 * while F's digits equal the bound's (the bound padded with zeros), and is
 * free once it leaves it. Only the tight paths nest, so a pair of bounds
 * costs O(MAX_FRAC) alternatives. */

struct fb {
    const char *l, *h; /* fraction digits of the bounds, no trailing zeros */
    bool l_ex, h_ex;
};

static void reps(struct sbuf *o, const char *x, int a, int b)
{
    if (b > 0)
        sbuf_addf(o, " %s{%d,%d}", x, a, b);
}

/* sub's text, or "" (and o marked failed) when building it ran out of memory */
static const char *sub_text(struct sbuf *o, const struct sbuf *sub)
{
    if (sbuf_failed(sub))
        o->failed = true;
    return sub->buf ? sub->buf : "";
}

/* May the fraction end at digit i (the rest of it zero)? */
static bool frac_end(const struct fb *b, int i, bool tlo, bool thi)
{
    bool lz = (int)strlen(b->l) <= i, hz = (int)strlen(b->h) <= i;
    if (tlo && (!lz || b->l_ex))
        return false; /* 0 < the rest of L, or equal to an exclusive L */
    return !thi || !hz || !b->h_ex;
}

static int frac_rest(struct sbuf *o, const struct fb *b, int i, bool need, bool tlo, bool thi);

/* One alternative: digit d, then the rest from i + 1. */
static void frac_alt(struct sbuf *o, const struct fb *b, int i, int d, bool tlo, bool thi, int *n)
{
    struct sbuf sub = SBUF_INIT;
    int r = frac_rest(&sub, b, i + 1, false, tlo, thi);
    if (r >= 0) {
        sbuf_addf(o, "%s\"%d\"%s%s", *n ? " | " : "", d, r ? " " : "", r ? sub_text(o, &sub) : "");
        ++*n;
    }
    sbuf_release(&sub);
}

/* Appends the digit strings from digit i on (i < MAX_FRAC; at least one digit
 * when need) within the bounds the digits before i were tight against.
 * Returns -1 when none qualifies, 0 when only the empty string does (nothing
 * appended), 1 when an expression was appended. */
static int frac_rest(struct sbuf *o, const struct fb *b, int i, bool need, bool tlo, bool thi)
{
    int room = MAX_FRAC - i;
    bool lz = (int)strlen(b->l) <= i, hz = (int)strlen(b->h) <= i;
    if (tlo && lz && !b->l_ex)
        tlo = false; /* the rest of L is 0: any rest is >= it */
    bool end = !need && frac_end(b, i, tlo, thi);
    if (room == 0)
        return end ? 0 : -1;
    if (!tlo && !thi) {
        sbuf_addf(o, "[0-9]{%d,%d}", need ? 1 : 0, room);
        return 1;
    }
    if (tlo && lz && !thi) { /* above an exclusive 0: k zeros, then a nonzero digit */
        for (int k = 0; k < room; k++) {
            sbuf_addstr(o, k ? " | \"0\" ( [1-9]" : "( [1-9]");
            reps(o, "[0-9]", 0, room - 1 - k);
        }
        for (int k = 0; k < room; k++)
            sbuf_addstr(o, " )");
        return 1;
    }
    if (thi && hz && !tlo) { /* at most 0: zeros only */
        if (b->h_ex)
            return -1;
        sbuf_addf(o, "\"0\"{%d,%d}", need ? 1 : 0, room);
        return 1;
    }
    int lo = tlo && !lz ? b->l[i] - '0' : 0, hi = thi ? (hz ? 0 : b->h[i] - '0') : 9, n = 0;
    struct sbuf alts = SBUF_INIT;
    if (tlo && thi && lo == hi) {
        frac_alt(&alts, b, i, lo, true, true, &n);
    } else if (lo < hi || !(tlo && thi)) {
        if (tlo)
            frac_alt(&alts, b, i, lo++, true, false, &n);
        if (thi)
            frac_alt(&alts, b, i, hi--, false, true, &n);
        if (lo <= hi) {
            sbuf_addf(&alts, "%s[%d-%d]", n ? " | " : "", lo, hi);
            reps(&alts, "[0-9]", 0, room - 1);
            n++;
        }
    }
    if (n > 0)
        sbuf_addf(o, "( %s )%s", sub_text(o, &alts), end ? "?" : "");
    sbuf_release(&alts);
    return n > 0 ? 1 : end ? 0 : -1;
}

/* The fraction part (absent, or "." and digits) for a whole part that is
 * tight against the lower bound (tlo) and/or the upper one (thi). Returns as
 * frac_rest. */
static int fraction(struct sbuf *o, const struct fb *b, bool tlo, bool thi)
{
    bool end = frac_end(b, 0, tlo, thi);
    struct sbuf sub = SBUF_INIT;
    int r = frac_rest(&sub, b, 0, true, tlo, thi);
    if (r > 0)
        sbuf_addf(o, "( \".\" %s )%s", sub_text(o, &sub), end ? "?" : "");
    sbuf_release(&sub);
    return r > 0 ? 1 : end ? 0 : -1;
}

static void whole_alt(struct sbuf *o, uint64_t w, const struct fb *b, bool tlo, bool thi, int *n)
{
    struct sbuf sub = SBUF_INIT;
    int r = fraction(&sub, b, tlo, thi);
    if (r >= 0) {
        sbuf_addf(o, "%s\"%llu\"%s%s", *n ? " | " : "", (unsigned long long)w, r ? " " : "", r ? sub_text(o, &sub) : "");
        ++*n;
    }
    sbuf_release(&sub);
}

/* The texts W["." F] (no sign) whose value M has lo <= M (< when lo_ex) and
 * M <= hi (< when hi_ex; hi NULL: unbounded), lo and hi not negative.
 * Appends alternatives, counted in *n. */
static void dec_magnitude(struct sbuf *o, const struct dec *lo, bool lo_ex, const struct dec *hi, bool hi_ex, int *n)
{
    struct fb b = {lo->f, hi ? hi->f : "", lo_ex, hi_ex};
    if (hi && hi->w == lo->w) {
        whole_alt(o, lo->w, &b, true, true, n);
        return;
    }
    whole_alt(o, lo->w, &b, true, false, n);
    bool f2 = true;
    struct sbuf mid = SBUF_INIT;
    if (!hi)
        int_from(&mid, lo->w + 1, &f2);
    else if (lo->w + 1 < hi->w)
        int_range(&mid, lo->w + 1, hi->w - 1, &f2);
    if (!f2) {
        sbuf_addf(o, "%s( %s ) ( \".\" [0-9]{1,%d} )?", *n ? " | " : "", sub_text(o, &mid), MAX_FRAC);
        ++*n;
    }
    sbuf_release(&mid);
    if (hi)
        whole_alt(o, hi->w, &b, false, true, n);
}

static int gen_number(struct sc *c, const struct bound *lo, const struct bound *hi, const char *path, struct sbuf *o)
{
    static const struct dec zero = {false, 0, ""};
    struct dec lo_abs = lo->d, hi_abs = hi->d;
    lo_abs.neg = hi_abs.neg = false;
    bool hi_np = hi->set && (hi->d.neg || hi->v == 0), lo_np = lo->set && (lo->d.neg || lo->v == 0);
    struct sbuf pos = SBUF_INIT, neg = SBUF_INIT;
    int n_pos = 0, n_neg = 0;
    /* x >= 0: M = x in [max(lo, 0), hi] */
    if (!hi->set || !hi->d.neg) {
        bool lo_pos = lo->set && !lo->d.neg;
        dec_magnitude(&pos, lo_pos ? &lo->d : &zero, lo_pos && lo->excl, hi->set ? &hi->d : NULL, hi->set && hi->excl,
                      &n_pos);
    }
    /* x <= 0 written "-" M: M in [max(-hi, 0), -lo] ("-0" where 0 is allowed) */
    if (!lo->set || lo_np) {
        dec_magnitude(&neg, hi_np ? &hi_abs : &zero, hi_np && hi->excl, lo->set ? &lo_abs : NULL,
                      lo->set && lo->excl, &n_neg);
    }
    if (n_pos + n_neg > 0)
        sbuf_addf(o, "( %s%s%s%s%s )", n_pos ? sub_text(o, &pos) : "", n_pos && n_neg ? " | " : "", n_neg ? "\"-\" ( " : "",
                  n_neg ? sub_text(o, &neg) : "", n_neg ? " )" : "");
    sbuf_release(&pos);
    sbuf_release(&neg);
    if (n_pos + n_neg == 0)
        return sc_fail(c, path, "the bounds leave no %s", "number");
    return 0;
}

static int gen_numeric(struct sc *c, json_t *s, bool integer, const char *path, struct sbuf *o)
{
    struct bound lo, hi;
    if (read_bound(c, s, true, integer, path, &lo) < 0 || read_bound(c, s, false, integer, path, &hi) < 0)
        return -1;
    if (!lo.set && !hi.set) {
        sbuf_addf(o, "%s%s", c->p, integer ? "integer" : "number");
        return 0;
    }
    if (lo.set && hi.set && (lo.v > hi.v || (lo.v == hi.v && (lo.excl || hi.excl))))
        return sc_fail(c, path, "the bounds leave no %s", integer ? "integer" : "number");
    return integer ? gen_integer(&lo, &hi, o) : gen_number(c, &lo, &hi, path, o);
}

/* ---- strings ---------------------------------------------------------------- */

static const char *date_gbnf =
    "[0-9]{4} \"-\" ( ( \"0\" [13578] | \"1\" [02] ) \"-\" ( \"0\" [1-9] | [12] [0-9] | \"3\" [01] ) | "
    "( \"0\" [469] | \"11\" ) \"-\" ( \"0\" [1-9] | [12] [0-9] | \"30\" ) | \"02-\" ( \"0\" [1-9] | \"1\" [0-9] | "
    "\"2\" [0-8] ) )";
static const char *time_gbnf = "( [01] [0-9] | \"2\" [0-3] ) \":\" [0-5] [0-9] \":\" [0-5] [0-9] ( \".\" [0-9]{1,6} )? "
                               "( \"Z\" | [+-] ( [01] [0-9] | \"2\" [0-3] ) \":\" [0-5] [0-9] )";
static const char *uuid_gbnf = "[0-9a-f]{8} \"-\" [0-9a-f]{4} \"-\" [0-9a-f]{4} \"-\" [0-9a-f]{4} \"-\" [0-9a-f]{12}";

static int get_count(struct sc *c, json_t *s, const char *k, const char *path, int dflt, int *out)
{
    json_t *v = json_object_get(s, k);
    *out = dflt;
    if (!v)
        return 0;
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return sc_fail(c, path, "'%s' is not a non-negative integer", k);
    if (json_integer_value(v) > MAX_POSITIONS)
        return sc_fail(c, path, "'%s' is larger than this compiler spells out (2000)", k);
    *out = (int)json_integer_value(v);
    return 0;
}

static int gen_string(struct sc *c, json_t *s, const char *path, struct sbuf *o)
{
    json_t *fmt = json_object_get(s, "format"), *pat = json_object_get(s, "pattern");
    int mn, mx;
    if (get_count(c, s, "minLength", path, 0, &mn) < 0 || get_count(c, s, "maxLength", path, -1, &mx) < 0)
        return -1;
    bool lengths = json_object_get(s, "minLength") || json_object_get(s, "maxLength");
    if ((fmt || pat) && lengths)
        return sc_fail(c, path, "'%s' together with minLength/maxLength is not supported", fmt ? "format" : "pattern");
    if (fmt && pat)
        return sc_fail(c, path, "format together with pattern is not supported%s", "");
    if (fmt) {
        const char *f = json_string_value(fmt);
        const char *body = !f ? NULL : !strcmp(f, "date") ? date_gbnf : !strcmp(f, "time") ? time_gbnf
                         : !strcmp(f, "uuid") ? uuid_gbnf : NULL;
        if (f && !strcmp(f, "date-time"))
            sbuf_addf(o, "\"\\\"\" %s \"T\" %s \"\\\"\"", date_gbnf, time_gbnf);
        else if (body)
            sbuf_addf(o, "\"\\\"\" %s \"\\\"\"", body);
        else
            return sc_fail(c, path, "unsupported format '%.60s'", f ? f : "(not a string)");
        return 0;
    }
    if (pat) {
        if (!json_is_string(pat))
            return sc_fail(c, path, "pattern is not a string%s", "");
        char jchar[96];
        snprintf(jchar, sizeof jchar, "%schar", c->p);
        sbuf_addstr(o, "\"\\\"\" ");
        if (schema_pattern(o, json_string_value(pat), json_string_length(pat), jchar, c->e) < 0)
            return err_prefix(c->e, "schema at '%s%s'", path[0] == '#' ? "" : "#", path);
        sbuf_addstr(o, " \"\\\"\"");
        return 0;
    }
    if (mx >= 0 && mx < mn)
        return sc_fail(c, path, "maxLength is below minLength%s", "");
    if (mx < 0)
        sbuf_addf(o, "\"\\\"\" %schar{%d,} \"\\\"\"", c->p, mn);
    else
        sbuf_addf(o, "\"\\\"\" %schar{%d,%d} \"\\\"\"", c->p, mn, mx);
    return 0;
}

/* ---- objects and arrays --------------------------------------------------------- */

struct prop {
    char kv[96];     /* the rule of `"key" ws ":" ws value` */
    bool required;
};

static int gen_object(struct sc *c, json_t *s, const char *path, struct sbuf *o)
{
    json_t *props = json_object_get(s, "properties"), *req = json_object_get(s, "required");
    json_t *addl = json_object_get(s, "additionalProperties");
    if ((props && !json_is_object(props)) || (req && !json_is_array(req)))
        return sc_fail(c, path, "%s has the wrong type", props && !json_is_object(props) ? "properties" : "required");
    size_t n_props = json_object_size(props), n_req = json_array_size(req);
    struct prop *pl = calloc(n_props + n_req + 1, sizeof *pl);
    if (!pl)
        return err_set(c->e, ERR_NOMEM, "schema: out of memory");
    size_t n = 0;
    int rc = -1;
    struct sbuf x = SBUF_INIT;
    /* the declared properties, then required names not declared (any value) */
    for (size_t pass = 0; pass < 2; pass++) {
        const char *k;
        json_t *v;
        size_t ri;
        json_t *rv;
        void *it = pass == 0 ? json_object_iter(props) : NULL;
        for (ri = 0; pass == 0 ? it != NULL : ri < n_req; pass == 0 ? (void)(it = json_object_iter_next(props, it)) : (void)ri++) {
            if (pass == 0) {
                k = json_object_iter_key(it);
                v = json_object_iter_value(it);
            } else {
                rv = json_array_get(req, ri);
                k = json_string_value(rv);
                if (!k)
                    goto out;
                if (json_object_get(props, k))
                    continue;
                v = json_true();
            }
            char sub[96], p2[512];
            snprintf(p2, sizeof p2, "%s/properties/%s", path, k);
            if (gen(c, v, p2, sub) < 0)
                goto out;
            bool r = false;
            size_t j;
            json_t *y;
            json_array_foreach(req, j, y) r = r || (json_is_string(y) && !strcmp(json_string_value(y), k));
            new_name(c, pl[n].kv);
            pl[n].required = r;
            sbuf_reset(&x);
            json_t *key = json_string(k);
            json_literal(c, &x, key, path);
            json_decref(key);
            sbuf_addf(&x, " %sws \":\" %sws %s %sws", c->p, c->p, sub, c->p);
            put_rule(c, pl[n].kv, &x);
            n++;
        }
    }
    /* additional properties: absent = none when properties are given */
    char av[96] = "";
    if (json_is_object(addl) || json_is_true(addl) || (!addl && n == 0)) {
        char p2[512];
        snprintf(p2, sizeof p2, "%s/additionalProperties", path);
        if (gen(c, json_is_object(addl) ? addl : json_true(), p2, av) < 0)
            goto out;
    } else if (addl && !json_is_false(addl)) {
        sc_fail(c, path, "additionalProperties is neither a boolean nor a schema%s", "");
        goto out;
    }
    /* B(i, first) for i = n .. 0 */
    char base[96];
    new_name(c, base);
    for (size_t i = n + 1; i-- > 0;) {
        for (int f = 0; f < 2; f++) {
            sbuf_reset(&x);
            const char *comma = f ? "" : "\",\" ";
            if (i == n) {
                if (av[0] && f)
                    sbuf_addf(&x, "( %skey %sws \":\" %sws %s %sws ( \",\" %sws %skey %sws \":\" %sws %s %sws )* )?",
                              c->p, c->p, c->p, av, c->p, c->p, c->p, c->p, c->p, av, c->p);
                else if (av[0])
                    sbuf_addf(&x, "( \",\" %sws %skey %sws \":\" %sws %s %sws )*", c->p, c->p, c->p, c->p, av, c->p);
                else
                    sbuf_addstr(&x, "\"\"");
            } else if (pl[i].required) {
                sbuf_addf(&x, "%s%s%s %s %s-b%zun", comma, f ? "" : c->p, f ? "" : "ws", pl[i].kv, base, i + 1);
            } else {
                sbuf_addf(&x, "( %s%s%s %s %s-b%zun | %s-b%zu%c )", comma, f ? "" : c->p, f ? "" : "ws", pl[i].kv,
                          base, i + 1, base, i + 1, f ? 'f' : 'n');
            }
            char nm[128];
            snprintf(nm, sizeof nm, "%s-b%zu%c", base, i, f ? 'f' : 'n');
            put_rule(c, nm, &x);
        }
    }
    sbuf_addf(o, "\"{\" %sws %s-b0f \"}\"", c->p, base);
    rc = 0;
out:
    if (rc < 0 && c->e->code == ERR_OK)
        sc_fail(c, path, "required holds a non-string%s", "");
    sbuf_release(&x);
    free(pl);
    return rc;
}

static int gen_array(struct sc *c, json_t *s, const char *path, struct sbuf *o)
{
    json_t *prefix = json_object_get(s, "prefixItems"), *items = json_object_get(s, "items");
    if (prefix && !json_is_array(prefix))
        return sc_fail(c, path, "prefixItems is not an array%s", "");
    if (items && json_is_array(items))
        return sc_fail(c, path, "items as an array (draft 4 tuples) is not supported: use prefixItems%s", "");
    int mn, mx;
    if (get_count(c, s, "minItems", path, 0, &mn) < 0 || get_count(c, s, "maxItems", path, -1, &mx) < 0)
        return -1;
    int k = (int)json_array_size(prefix);
    if (k > MAX_POSITIONS)
        return sc_fail(c, path, "too many prefixItems%s", "");
    bool more = !json_is_false(items);
    if (!more && (mx < 0 || mx > k))
        mx = k;
    if (mx >= 0 && mx < mn)
        return sc_fail(c, path, "maxItems is below minItems (or items: false allows fewer)%s", "");
    char item[96] = "", base[96];
    char (*slot)[96] = calloc((size_t)k + 1, sizeof *slot);
    if (!slot)
        return err_set(c->e, ERR_NOMEM, "schema: out of memory");
    char p2[512];
    for (int i = 0; i < k; i++) {
        snprintf(p2, sizeof p2, "%s/prefixItems/%d", path, i);
        if (gen(c, json_array_get(prefix, (size_t)i), p2, slot[i]) < 0)
            return free(slot), -1;
    }
    snprintf(p2, sizeof p2, "%s/items", path);
    if (more && gen(c, items ? items : json_true(), p2, item) < 0)
        return free(slot), -1;
    new_name(c, base);
    int last = mx >= 0 ? mx : (mn > k ? mn : k); /* positions spelled out: 0 .. last-1 */
    struct sbuf x = SBUF_INIT;
    for (int i = last; i >= 0; i--) {
        sbuf_reset(&x);
        char sep[128];
        snprintf(sep, sizeof sep, "%s%s%s", i ? "\",\" " : "", i ? c->p : "", i ? "ws " : "");
        if (i == last && mx < 0 && more) /* the unbounded tail */
            sbuf_addf(&x, i ? "( %s%s %sws )*" : "( %s%s %sws ( \",\" %sws %s %sws )* )?", sep, item, c->p, c->p, item,
                      c->p);
        else if (i == last)
            sbuf_addstr(&x, "\"\"");
        else if (i < mn)
            sbuf_addf(&x, "%s%s %sws %s-a%d", sep, i < k ? slot[i] : item, c->p, base, i + 1);
        else
            sbuf_addf(&x, "( %s%s %sws %s-a%d )?", sep, i < k ? slot[i] : item, c->p, base, i + 1);
        char nm[128];
        snprintf(nm, sizeof nm, "%s-a%d", base, i);
        put_rule(c, nm, &x);
    }
    sbuf_release(&x);
    free(slot);
    sbuf_addf(o, "\"[\" %sws %s-a0 \"]\"", c->p, base);
    return 0;
}

/* ---- dispatch ------------------------------------------------------------------------ */

static int gen_typed(struct sc *c, json_t *s, const char *type, const char *path, struct sbuf *o)
{
    if (!strcmp(type, "string"))
        return gen_string(c, s, path, o);
    if (!strcmp(type, "integer") || !strcmp(type, "number"))
        return gen_numeric(c, s, type[0] == 'i', path, o);
    if (!strcmp(type, "object"))
        return gen_object(c, s, path, o);
    if (!strcmp(type, "array"))
        return gen_array(c, s, path, o);
    if (!strcmp(type, "boolean") || !strcmp(type, "null")) {
        sbuf_addf(o, "%s%s", c->p, type);
        return 0;
    }
    return sc_fail(c, path, "unknown type '%.40s'", type);
}

/* The type a schema without `type` has, from its keywords (NULL = any). */
static const char *infer_type(json_t *s)
{
    static const struct {
        const char *key, *type;
    } by[] = {{"properties", "object"}, {"additionalProperties", "object"}, {"required", "object"},
              {"items", "array"},       {"prefixItems", "array"},           {"minItems", "array"},
              {"maxItems", "array"},    {"minLength", "string"},            {"maxLength", "string"},
              {"pattern", "string"},    {"format", "string"},               {"minimum", "number"},
              {"maximum", "number"},    {"exclusiveMinimum", "number"},     {"exclusiveMaximum", "number"}};
    for (size_t i = 0; i < sizeof by / sizeof by[0]; i++)
        if (json_object_get(s, by[i].key))
            return by[i].type;
    return NULL;
}

/* Alternatives over a list: anyOf/oneOf branches (each merged with the
 * sibling keywords `rest`, when there are some) or enum values. */
static int gen_alternatives(struct sc *c, json_t *list, json_t *rest, const char *kw, const char *path, struct sbuf *o)
{
    if (!json_is_array(list) || json_array_size(list) == 0)
        return sc_fail(c, path, "'%s' is not a non-empty array", kw);
    size_t i;
    json_t *x;
    sbuf_addstr(o, "( ");
    json_array_foreach(list, i, x) {
        if (i)
            sbuf_addstr(o, " | ");
        if (!strcmp(kw, "enum")) {
            if (json_literal(c, o, x, path) < 0)
                return -1;
            continue;
        }
        char sub[96], p2[512];
        snprintf(p2, sizeof p2, "%s/%s/%zu", path, kw, i);
        json_t *b = x;
        if (rest) {
            b = json_object();
            if (merge_into(c, b, rest, p2) < 0 || merge_into(c, b, x, p2) < 0)
                return json_decref(b), -1;
        }
        int rc = gen(c, b, p2, sub);
        if (rest)
            json_decref(b);
        if (rc < 0)
            return -1;
        sbuf_addstr(o, sub);
    }
    sbuf_addstr(o, " )");
    return 0;
}

static int gen_expr(struct sc *c, json_t *s, const char *path, struct sbuf *o)
{
    json_t *v;
    if ((v = json_object_get(s, "nullable")) && json_is_true(v)) {
        json_t *t = json_deep_copy(s);
        json_object_del(t, "nullable");
        char sub[96];
        int rc = gen(c, t, path, sub);
        json_decref(t);
        if (rc == 0)
            sbuf_addf(o, "( %s | %snull )", sub, c->p);
        return rc;
    }
    if ((v = json_object_get(s, "const")))
        return json_literal(c, o, v, path);
    if ((v = json_object_get(s, "enum")))
        return gen_alternatives(c, v, NULL, "enum", path, o);
    const char *alt = json_object_get(s, "anyOf") ? "anyOf" : json_object_get(s, "oneOf") ? "oneOf" : NULL;
    if (alt) {
        json_t *rest = json_deep_copy(s);
        json_object_del(rest, alt);
        bool other = has_constraints_besides(rest, "");
        int rc = gen_alternatives(c, json_object_get(s, alt), other ? rest : NULL, alt, path, o);
        json_decref(rest);
        return rc;
    }
    json_t *type = json_object_get(s, "type");
    if (json_is_array(type)) {
        size_t i;
        json_t *t;
        sbuf_addstr(o, "( ");
        json_array_foreach(type, i, t) {
            if (!json_is_string(t))
                return sc_fail(c, path, "type array holds a non-string%s", "");
            if (i)
                sbuf_addstr(o, " | ");
            if (gen_typed(c, s, json_string_value(t), path, o) < 0)
                return -1;
        }
        sbuf_addstr(o, " )");
        return json_array_size(type) ? 0 : sc_fail(c, path, "type is an empty array%s", "");
    }
    if (type && !json_is_string(type))
        return sc_fail(c, path, "type is neither a string nor an array%s", "");
    const char *t = type ? json_string_value(type) : infer_type(s);
    if (!t) {
        sbuf_addf(o, "%svalue", c->p);
        return 0;
    }
    return gen_typed(c, s, t, path, o);
}

/* After an allOf merge: a member (or the schema itself) that closes its
 * object (additionalProperties not true) while the merged schema has
 * properties it does not declare would reject them in JSON Schema's
 * semantics, which merging cannot express: an error. */
static int check_closed(struct sc *c, json_t *s, json_t *merged, const char *path)
{
    json_t *all = json_object_get(s, "allOf");
    size_t n = json_array_size(all);
    for (size_t i = 0; i <= n; i++) {
        json_t *m = i < n ? json_array_get(all, i) : s;
        json_t *addl = json_is_object(m) ? json_object_get(m, "additionalProperties") : NULL;
        if (!addl || json_is_true(addl))
            continue;
        json_t *own = json_object_get(m, "properties");
        const char *k;
        json_t *v;
        json_object_foreach(json_object_get(merged, "properties"), k, v) {
            if (!json_object_get(own, k))
                return sc_fail(c, path, "allOf: additionalProperties of one member would reject property '%.60s' "
                                        "of another",
                               k);
        }
    }
    return 0;
}

/* Compiles schema s into a rule and writes its name. */
static int gen(struct sc *c, json_t *s, const char *path, char *name)
{
    if (json_is_true(s) || (json_is_object(s) && json_object_size(s) == 0)) {
        snprintf(name, 96, "%svalue", c->p);
        return 0;
    }
    if (json_is_false(s))
        return sc_fail(c, path, "the schema false allows no value%s", "");
    if (!json_is_object(s))
        return sc_fail(c, path, "a schema must be an object or a boolean%s", "");
    if (check_keywords(c, s, path) < 0)
        return -1;
    if (++c->depth > MAX_DEPTH)
        return sc_fail(c, path, "schema nested too deeply%s", "");
    json_t *ref = json_object_get(s, "$ref");
    int rc;
    if (ref && !has_constraints_besides(s, "$ref")) {
        rc = json_is_string(ref) ? ref_rule(c, json_string_value(ref), path, name)
                                 : sc_fail(c, path, "$ref is not a string%s", "");
    } else if (ref || json_object_get(s, "allOf")) {
        json_t *m = json_object();
        rc = merge_into(c, m, s, path);
        if (rc == 0)
            rc = check_closed(c, s, m, path);
        if (rc == 0)
            rc = gen(c, m, path, name);
        json_decref(m);
    } else {
        struct sbuf x = SBUF_INIT;
        rc = gen_expr(c, s, path, &x);
        if (rc == 0 && sbuf_failed(&x))
            rc = err_set(c->e, ERR_NOMEM, "schema: out of memory");
        if (rc == 0) {
            new_name(c, name);
            put_rule(c, name, &x);
        }
        sbuf_release(&x);
    }
    c->depth--;
    return rc;
}

static void primitives(struct sc *c)
{
    const char *p = c->p;
    struct sbuf *r = &c->rules;
    sbuf_addf(r, "%sws ::= ( \" \" | \"\\n\" \" \"{0,8} )?\n", p);
    sbuf_addf(r, "%schar ::= [^\"\\\\\\x00-\\x1F] | \"\\\\\" ( [\"\\\\/bfnrt] | \"u\" ( [0-9a-cA-CefEF] [0-9a-fA-F]{3} | "
                 "[dD] [0-7] [0-9a-fA-F]{2} ) )\n", p);
    sbuf_addf(r, "%sstring ::= \"\\\"\" %schar* \"\\\"\"\n", p, p);
    sbuf_addf(r, "%skey ::= \"\\\"\" %schar{0,%d} \"\\\"\"\n", p, p, MAX_KEY);
    sbuf_addf(r, "%sinteger ::= \"-\"? ( \"0\" | [1-9] [0-9]{0,15} )\n", p);
    sbuf_addf(r, "%snumber ::= %sinteger ( \".\" [0-9]{1,16} )? ( [eE] [-+]? [0-9]{1,3} )?\n", p, p);
    sbuf_addf(r, "%sboolean ::= \"true\" | \"false\"\n", p);
    sbuf_addf(r, "%snull ::= \"null\"\n", p);
    sbuf_addf(r, "%svalue ::= %sobject | %sarray | %sstring | %snumber | %sboolean | %snull\n", p, p, p, p, p, p, p);
    sbuf_addf(r, "%sobject ::= \"{\" %sws ( %sstring %sws \":\" %sws %svalue %sws ( \",\" %sws %sstring %sws \":\" %sws "
                 "%svalue %sws )* )? \"}\"\n", p, p, p, p, p, p, p, p, p, p, p, p, p);
    sbuf_addf(r, "%sarray ::= \"[\" %sws ( %svalue %sws ( \",\" %sws %svalue %sws )* )? \"]\"\n", p, p, p, p, p, p, p);
}

char *grammar_schema_to_gbnf(const char *schema_json, const char *rule_prefix, struct err *e)
{
    json_error_t je;
    json_t *root = json_loads(schema_json, JSON_DECODE_ANY, &je);
    if (!root)
        return err_set(e, ERR_INVALID, "schema: not JSON: %s at line %d col %d", je.text, je.line, je.column), NULL;
    struct sc c = {.root = root, .p = rule_prefix ? rule_prefix : "", .rules = SBUF_INIT, .e = e};
    e->code = ERR_OK;
    char *out = NULL, name[96];
    json_t *t = json_is_object(root) ? json_object_get(root, "type") : NULL;
    int rc;
    if (t && json_is_string(t) && !strcmp(json_string_value(t), "json_object") && json_object_size(root) == 1) {
        snprintf(name, sizeof name, "%sobject", c.p);
        rc = 0;
    } else {
        rc = gen(&c, root, "", name);
    }
    if (rc == 0) {
        sbuf_addf(&c.rules, "%sroot ::= %s\n", c.p, name);
        primitives(&c);
        out = sbuf_detach(&c.rules, NULL);
        if (!out)
            err_set(e, ERR_NOMEM, "schema: out of memory");
    }
    sbuf_release(&c.rules);
    for (size_t i = 0; i < c.n_refs; i++)
        free(c.refs[i].ref);
    free(c.refs);
    json_decref(root);
    return out;
}
