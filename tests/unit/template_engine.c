/*
 * The Jinja engine on small templates whose Jinja2 output is known:
 * whitespace control, scoping, loops, macros, filters, tests, undefined
 * values, errors naming line and column, and the limits that stop hostile
 * templates.
 */
#include "template/template.h"
#include "test.h"

static struct err e;

/* Renders src with vars (JSON object); NULL on error (e holds it). */
static char *render_o(const char *src, const char *vars, const struct tmpl_opts *o)
{
    err_clear(&e);
    struct tmpl *t = tmpl_parse(src, strlen(src), &e);
    if (!t)
        return NULL;
    char *out = tmpl_render(t, vars, strlen(vars), o, NULL, &e);
    tmpl_free(t);
    return out;
}

static char *render(const char *src, const char *vars)
{
    return render_o(src, vars, NULL);
}

#define EXPECT(src, vars, want)                                                                  \
    do {                                                                                         \
        char *got_ = render(src, vars);                                                          \
        CHECKF(got_ && !strcmp(got_, want), "%s -> '%s' (want '%s') %s", src, got_ ? got_ : "(null)", want, \
               got_ ? "" : e.msg);                                                               \
        free(got_);                                                                              \
    } while (0)

#define EXPECT_ERR(src, vars, want_code, needle)                                                      \
    do {                                                                                         \
        char *got_ = render(src, vars);                                                          \
        CHECKF(!got_ && e.code == (want_code) && strstr(e.msg, needle), "%s -> '%s' / %s", src,        \
               got_ ? got_ : "(null)", e.msg);                                                   \
        free(got_);                                                                              \
    } while (0)

TEST(whitespace_control)
{
    /* trim_blocks drops the newline after a tag; lstrip_blocks the indentation before it */
    EXPECT("{% if true %}\nA\n{% endif %}\nB", "{}", "A\nB");
    EXPECT("  {% if true %}\n  x\n  {% endif %}\n", "{}", "  x\n");
    EXPECT("a  {{- ' b ' -}}  c", "{}", "a b c");
    EXPECT("a\n  {%- if true -%}  \n b{% endif %}", "{}", "ab");
    EXPECT("  {%+ if true %}x{% endif %}", "{}", "  x");
    EXPECT("a {# comment #}\nb", "{}", "a b");
    EXPECT("{% raw %}{{ x }}{% endraw %}", "{}", "{{ x }}");
    EXPECT("{{ {'a': 1}['a'] }}", "{}", "1");
}

TEST(expressions)
{
    EXPECT("{{ 1 + 2 * 3 }} {{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ 2 ** 10 }} {{ 1 / 2 }}", "{}", "7 3 -4 1 1024 0.5");
    EXPECT("{{ 'a' ~ 1 ~ none }} {{ 'ab' * 2 }} {{ [1] + [2] }}", "{}", "a1None abab [1, 2]");
    EXPECT("{{ 1 < 2 < 3 }} {{ 'b' in 'abc' }} {{ 3 not in [1, 2] }} {{ not 0 }}", "{}", "True True True True");
    EXPECT("{{ 'y' if x else 'n' }}{{ 'z' if false }}", "{\"x\": 1}", "y");
    EXPECT("{{ 0 or 'd' }} {{ 1 and 2 }}", "{}", "d 2");
    EXPECT("{{ s[1:] }} {{ s[::-1] }} {{ l[-1] }} {{ l[1:3] }}", "{\"s\": \"héllo\", \"l\": [1, 2, 3, 4]}",
           "éllo olléh 4 [2, 3]");
    EXPECT("{{ 1.0 }} {{ 2.5e-7 }} {{ 1e20 }} {{ 0.1 + 0.2 }}", "{}", "1.0 2.5e-07 1e+20 0.30000000000000004");
    EXPECT("{{ {'a': 'x', 'b': [1, none, true]} }}", "{}", "{'a': 'x', 'b': [1, None, True]}");
    EXPECT("{{ \"it's\" }}{{ [\"it's\"] }}", "{}", "it's[\"it's\"]");
}

TEST(statements)
{
    EXPECT("{% for x in l %}{{ loop.index }}{{ x }}{% if not loop.last %},{% endif %}{% endfor %}", "{\"l\": [\"a\", \"b\"]}",
           "1a,2b");
    EXPECT("{% for x in l if x > 1 %}{{ loop.length }}{{ x }}{% else %}none{% endfor %}", "{\"l\": [1, 2, 3]}", "2223");
    EXPECT("{% for x in l %}x{% else %}empty{% endfor %}", "{\"l\": []}", "empty");
    EXPECT("{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}", "{\"d\": {\"b\": 1, \"a\": 2}}", "b=1;a=2;");
    EXPECT("{% for x in range(5) %}{% if x == 1 %}{% continue %}{% endif %}{% if x == 3 %}{% break %}{% endif %}{{ x }}"
           "{% endfor %}",
           "{}", "02");
    /* a set inside a loop does not leak out; a namespace does */
    EXPECT("{% set n = 0 %}{% set ns = namespace(n=0) %}{% for x in [1, 2] %}{% set n = n + x %}{% set ns.n = ns.n + x %}"
           "{% endfor %}{{ n }} {{ ns.n }}",
           "{}", "0 3");
    EXPECT("{% set a, b = 1, 2 %}{{ b }}{{ a }}", "{}", "21");
    EXPECT("{% set x %}in {{ 1 }}{% endset %}[{{ x }}]", "{}", "[in 1]");
    EXPECT("{% macro m(a, b='B') %}{{ a }}{{ b }}{% endmacro %}{{ m(1) }}{{ m(2, b=3) }}", "{}", "1B23");
    EXPECT("{% macro w() %}<{{ caller() }}>{% endmacro %}{% call w() %}in{% endcall %}", "{}", "<in>");
    EXPECT("{% filter upper %}abc{% endfilter %}", "{}", "ABC");
    EXPECT("{% if a %}1{% elif b %}2{% else %}3{% endif %}", "{\"b\": true}", "2");
    EXPECT("{% for x in l %}{{ loop.previtem }}{{ loop.nextitem }}{{ loop.cycle('o', 'e') }} {% endfor %}",
           "{\"l\": [1, 2]}", "2o 1e ");
    EXPECT("{% generation %}g{% endgeneration %}", "{}", "g");
}

TEST(filters_and_methods)
{
    EXPECT("{{ '  a b  ' | trim }}|{{ ' x '.strip() }}|{{ 'xxaxx'.lstrip('x') }}|{{ 'a,b'.split(',') }}", "{}",
           "a b|x|axx|['a', 'b']");
    EXPECT("{{ d | tojson }}", "{\"d\": {\"a\": [1, 2.5, \"é\\\"\"], \"b\": null}}",
           "{\"a\": [1, 2.5, \"é\\\"\"], \"b\": null}");
    EXPECT("{{ d | tojson(indent=2) }}", "{\"d\": {\"a\": [1], \"e\": {}}}", "{\n  \"a\": [\n    1\n  ],\n  \"e\": {}\n}");
    EXPECT("{{ d | tojson(separators=(',', ':'), sort_keys=true) }}", "{\"d\": {\"b\": 1, \"a\": 2}}", "{\"a\":2,\"b\":1}");
    EXPECT("{{ '<&>' | tojson }}", "{}", "\"<&>\"");
    EXPECT("{{ l | length }} {{ l | join('-') }} {{ l | first }} {{ l | last }} {{ l | unique | list }}",
           "{\"l\": [\"a\", \"b\", \"a\"]}", "3 a-b-a a a ['a', 'b']");
    EXPECT("{{ m | selectattr('role', 'equalto', 'user') | map(attribute='c') | join }}",
           "{\"m\": [{\"role\": \"user\", \"c\": \"1\"}, {\"role\": \"x\", \"c\": \"2\"}, {\"role\": \"user\", \"c\": \"3\"}]}",
           "13");
    EXPECT("{{ m | rejectattr('c') | list | length }} {{ ['a', 'B'] | map('upper') | join }}",
           "{\"m\": [{\"c\": 0}, {\"c\": 1}]}", "1 AB");
    EXPECT("{{ x | default('d') }} {{ '' | default('e', true) }} {{ none | string }}", "{}", "d e None");
    EXPECT("{{ d | dictsort }} {{ d.get('z', 9) }} {{ d.keys() | list }}", "{\"d\": {\"b\": 1, \"A\": 2}}",
           "[['A', 2], ['b', 1]] 9 ['b', 'A']");
    EXPECT("{{ 'ab' | upper }}{{ 'AB' | lower }}{{ 'ab cd' | title }}{{ 'aB' | capitalize }}", "{}", "ABabAb CdAb");
    EXPECT("{{ 'a\nb' | indent(2) }}|{{ 'a\nb' | indent(2, true) }}", "{}", "a\n  b|  a\n  b");
    EXPECT("{{ '3' | int + 1 }} {{ 'x' | int }} {{ 2 | float }} {{ 'aXbX'.replace('X', '-') }}", "{}", "4 0 2.0 a-b-");
    EXPECT("{{ 'ab'.startswith('a') }}{{ 'ab'.endswith(('x', 'b')) }}", "{}", "TrueTrue");
    EXPECT("{{ '{} and {name}'.format(1, name='n') }}", "{}", "1 and n");
}

TEST(tests_and_undefined)
{
    EXPECT("{{ x is defined }}{{ x is undefined }}{{ none is none }}{{ 's' is string }}{{ {} is mapping }}"
           "{{ [] is iterable }}{{ 1 is number }}{{ 3 is odd }}{{ false is false }}{{ x is not defined }}",
           "{}", "FalseTrueTrueTrueTrueTrueTrueTrueTrueTrue");
    EXPECT("[{{ x }}]{% for i in x %}no{% endfor %}{{ x | length }}{{ d.missing is defined }}", "{\"d\": {}}",
           "[]0False");
    EXPECT("{{ 'a' in x }}", "{}", "False");
    EXPECT_ERR("{{ x.y }}", "{}", ERR_INVALID, "'x' is undefined");
    EXPECT_ERR("{{ d.a.b }}", "{\"d\": {}}", ERR_INVALID, "has no attribute 'a'");
}

TEST(errors_name_line_and_column)
{
    EXPECT_ERR("a\n{{ raise_exception('bad role') }}", "{}", ERR_INVALID, "line 2 col 4: bad role");
    char *out = render("x\n\n{% if %}", "{}");
    CHECK(!out && e.code == ERR_INVALID && strstr(e.msg, "line 3"));
    out = render("{% for x in y %}", "{}");
    CHECK(!out && strstr(e.msg, "endfor"));
    out = render("{{ 'abc }}", "{}");
    CHECK(!out && strstr(e.msg, "unterminated string"));
    out = render("{% frobnicate %}", "{}");
    CHECK(!out && strstr(e.msg, "unknown tag 'frobnicate'"));
    EXPECT_ERR("{{ 1 | nosuch }}", "{}", ERR_INVALID, "no filter named 'nosuch'");
    EXPECT_ERR("{{ [].append(1) }}", "{}", ERR_INVALID, "sandbox");
    EXPECT_ERR("{{ 1 + 'a' }}", "{}", ERR_INVALID, "unsupported operand");
    EXPECT_ERR("{{ 1 // 0 }}", "{}", ERR_INVALID, "division by zero");
    EXPECT_ERR("{{ x }}", "[1]", ERR_INVALID, "JSON object");
    EXPECT_ERR("{{ x }}", "{\"x\": ", ERR_INVALID, "variables JSON");
    struct tmpl_opts o = {.now = 1768469400};
    char *d = render_o("{{ strftime_now('%Y-%m-%d') }}", "{}", &o);
    CHECK(d && !strcmp(d, "2026-01-15"));
    free(d);
}

TEST(limits_stop_hostile_templates)
{
    struct tmpl_opts o = {.max_steps = 100000};
    char *out = render_o("{% for a in range(1000) %}{% for b in range(1000) %}{% endfor %}{% endfor %}", "{}", &o);
    CHECK(!out && e.code == ERR_EXHAUSTED && strstr(e.msg, "line 1"));
    out = render("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", "{}");
    CHECK(!out && e.code == ERR_EXHAUSTED && strstr(e.msg, "deeper"));
    struct tmpl_opts small = {.max_output = 1000};
    out = render_o("{% for a in range(100) %}0123456789abcdef{% endfor %}", "{}", &small);
    CHECK(!out && e.code == ERR_EXHAUSTED && strstr(e.msg, "output"));
    out = render_o("{{ 'x' * 100000 }}", "{}", &small);
    CHECK(!out && e.code == ERR_EXHAUSTED);
    out = render_o("{% set s = namespace(v='x') %}{% for i in range(40) %}{% set s.v = s.v + s.v %}{% endfor %}",
                   "{}", &small);
    CHECK(!out && e.code == ERR_EXHAUSTED);
}

int main(void)
{
    RUN(whitespace_control);
    RUN(expressions);
    RUN(statements);
    RUN(filters_and_methods);
    RUN(tests_and_undefined);
    RUN(errors_name_line_and_column);
    RUN(limits_stop_hostile_templates);
    TEST_END();
}
