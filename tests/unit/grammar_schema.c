/* JSON Schema -> GBNF: for each schema, texts its grammar must accept and
 * texts it must reject; keywords it cannot enforce are errors naming them. */
#include "grammar/grammar.h"
#include "test.h"

#include <math.h>

static struct grammar_vocab *no_vocab;

/* 1 accepted, 0 rejected, -1 the schema or its grammar failed */
static int accepts(const char *schema, const char *text)
{
    struct err e;
    char *gbnf = grammar_schema_to_gbnf(schema, NULL, &e);
    if (!gbnf) {
        fprintf(stderr, "  schema %s: %s\n", schema, e.msg);
        return -1;
    }
    struct grammar *g = grammar_compile(gbnf, strlen(gbnf), &e);
    if (!g) {
        fprintf(stderr, "  grammar of %s: %s\n%s\n", schema, e.msg, gbnf);
        free(gbnf);
        return -1;
    }
    free(gbnf);
    struct grammar_state *s = grammar_state_new(g, no_vocab, &e);
    int r = grammar_state_accept_bytes(s, text, strlen(text), &e) == 0 && grammar_state_can_end(s);
    grammar_state_free(s);
    grammar_free(g);
    return r;
}

#define OK(schema, text) CHECKF(accepts(schema, text) == 1, "%s should accept %s", schema, text)
#define NO(schema, text) CHECKF(accepts(schema, text) == 0, "%s should reject %s", schema, text)

TEST(types_and_objects)
{
    const char *s = "{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\"},\"age\":{\"type\":\"integer\"},"
                    "\"ok\":{\"type\":\"boolean\"}},\"required\":[\"name\"]}";
    OK(s, "{\"name\":\"x\"}");
    OK(s, "{ \"name\": \"x\", \"age\": -12, \"ok\": true }");
    OK(s, "{\"name\":\"a\\\"b\",\"ok\":false}");
    NO(s, "{\"age\":1}");
    NO(s, "{\"name\":\"x\",}");
    NO(s, "{\"name\":1}");
    NO(s, "{\"name\":\"x\"      }"); /* bounded whitespace */
    OK("{\"type\":[\"string\",\"null\"]}", "null");
    OK("{\"type\":[\"string\",\"null\"]}", "\"s\"");
    NO("{\"type\":[\"string\",\"null\"]}", "1");
    OK("{\"type\":\"json_object\"}", "{\"a\":[1,{\"b\":null}]}");
    NO("{\"type\":\"json_object\"}", "[1]");
    const char *addl = "{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\"}},"
                       "\"additionalProperties\":{\"type\":\"string\"}}";
    OK(addl, "{\"a\":1,\"zz\":\"y\",\"q\":\"\"}");
    NO(addl, "{\"a\":1,\"zz\":2}");
    NO("{\"type\":\"object\",\"properties\":{\"a\":{}},\"additionalProperties\":false}", "{\"b\":1}");
    OK("{\"nullable\":true,\"type\":\"integer\"}", "null");
}

TEST(arrays)
{
    const char *s = "{\"type\":\"array\",\"items\":{\"type\":\"integer\"},\"minItems\":2,\"maxItems\":3}";
    OK(s, "[1,2]");
    OK(s, "[1, 2, 3]");
    NO(s, "[1]");
    NO(s, "[1,2,3,4]");
    const char *t = "{\"type\":\"array\",\"prefixItems\":[{\"type\":\"string\"},{\"type\":\"boolean\"}],\"items\":false}";
    OK(t, "[\"a\",true]");
    OK(t, "[\"a\"]");
    NO(t, "[\"a\",true,1]");
    NO(t, "[true]");
    OK("{\"type\":\"array\"}", "[]");
    OK("{\"items\":{\"type\":\"null\"},\"minItems\":1}", "[null,null,null,null]");
}

TEST(enum_const_combinators)
{
    OK("{\"enum\":[\"red\",\"green\",3,null]}", "\"green\"");
    OK("{\"enum\":[\"red\",\"green\",3,null]}", "3");
    NO("{\"enum\":[\"red\",\"green\",3,null]}", "\"blue\"");
    OK("{\"const\":{\"a\":[1,2]}}", "{\"a\":[1,2]}");
    const char *any = "{\"anyOf\":[{\"type\":\"integer\",\"minimum\":10},{\"type\":\"string\",\"maxLength\":2}]}";
    OK(any, "12");
    OK(any, "\"ab\"");
    NO(any, "9");
    NO(any, "\"abc\"");
    const char *all = "{\"allOf\":[{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\"}},\"required\":[\"a\"]},"
                      "{\"properties\":{\"b\":{\"type\":\"string\"}},\"required\":[\"b\"]}]}";
    OK(all, "{\"a\":1,\"b\":\"x\"}");
    NO(all, "{\"a\":1}");
    const char *rec = "{\"$defs\":{\"node\":{\"type\":\"object\",\"properties\":{\"v\":{\"type\":\"integer\"},"
                      "\"kids\":{\"type\":\"array\",\"items\":{\"$ref\":\"#/$defs/node\"}}},\"required\":[\"v\"],"
                      "\"additionalProperties\":false}},\"$ref\":\"#/$defs/node\"}";
    OK(rec, "{\"v\":1,\"kids\":[{\"v\":2},{\"v\":3,\"kids\":[{\"v\":4,\"kids\":[]}]}]}");
    NO(rec, "{\"v\":1,\"kids\":[{\"kids\":[]}]}");
}

TEST(strings)
{
    const char *s = "{\"type\":\"string\",\"minLength\":2,\"maxLength\":3}";
    OK(s, "\"ab\"");
    OK(s, "\"\\u00e9\xc3\xa9\\n\"");
    NO(s, "\"a\"");
    NO(s, "\"abcd\"");
    OK("{\"type\":\"string\",\"format\":\"date\"}", "\"2024-02-28\"");
    NO("{\"type\":\"string\",\"format\":\"date\"}", "\"2024-02-30\"");
    NO("{\"type\":\"string\",\"format\":\"date\"}", "\"2024-13-01\"");
    OK("{\"type\":\"string\",\"format\":\"time\"}", "\"23:59:01.5Z\"");
    OK("{\"type\":\"string\",\"format\":\"date-time\"}", "\"2024-04-30T08:00:00+02:00\"");
    OK("{\"type\":\"string\",\"format\":\"uuid\"}", "\"123e4567-e89b-12d3-a456-426614174000\"");
    NO("{\"type\":\"string\",\"format\":\"uuid\"}", "\"123e4567e89b-12d3-a456-426614174000\"");
    const char *p = "{\"type\":\"string\",\"pattern\":\"^[A-Z]{2}-\\\\d{3}(x|yz)?$\"}";
    OK(p, "\"AB-123\"");
    OK(p, "\"QQ-000yz\"");
    NO(p, "\"AB-12\"");
    NO(p, "\"ab-123\"");
    OK("{\"type\":\"string\",\"pattern\":\"^a\\\"b\\\\\\\\$\"}", "\"a\\\"b\\\\\"");
    OK("{\"type\":\"string\",\"pattern\":\"[0-9]\"}", "\"xx7yy\"");
    NO("{\"type\":\"string\",\"pattern\":\"[0-9]\"}", "\"xxyy\"");
}

TEST(numbers)
{
    const char *i = "{\"type\":\"integer\",\"minimum\":-15,\"exclusiveMaximum\":130}";
    const char *ok[] = {"-15", "-9", "0", "7", "99", "100", "129"};
    const char *no[] = {"-16", "130", "1000", "-0x", "01", "1.5"};
    for (size_t k = 0; k < sizeof ok / sizeof *ok; k++)
        OK(i, ok[k]);
    for (size_t k = 0; k < sizeof no / sizeof *no; k++)
        NO(i, no[k]);
    OK("{\"type\":\"integer\",\"exclusiveMinimum\":999}", "1000");
    OK("{\"type\":\"integer\",\"exclusiveMinimum\":999}", "123456");
    NO("{\"type\":\"integer\",\"exclusiveMinimum\":999}", "999");
    NO("{\"type\":\"integer\",\"exclusiveMinimum\":999}", "-1000");
    const char *n = "{\"type\":\"number\",\"minimum\":0,\"maximum\":1}";
    OK(n, "0.25");
    OK(n, "1");
    OK(n, "1.000");
    NO(n, "1.5");
    NO(n, "-0.5");
    NO(n, "2");
    const char *x = "{\"type\":\"number\",\"exclusiveMinimum\":-2,\"exclusiveMaximum\":0}";
    OK(x, "-1.99");
    OK(x, "-0.001");
    NO(x, "-2");
    NO(x, "-2.5");
    NO(x, "0");
    OK("{\"type\":\"number\"}", "-1.5e+10");
}

/* ---- number bounds against brute force ----------------------------------------
 * Every text ["-"] W ["." F] with W of 1-2 digits (no leading zero) and F of
 * 0-3 digits: the grammar must accept exactly those whose value is in range
 * (strtod on both sides is exact for such short decimals). The texts form a
 * tree walked with cloned grammar states. */

struct brute {
    const char *schema;
    double lo, hi; /* NAN: unset */
    bool lo_ex, hi_ex;
    int n_in, n_bad;
};

static struct grammar_state *step(const struct grammar_state *s, const char *p)
{
    struct err e;
    if (!s)
        return NULL;
    struct grammar_state *t = grammar_state_clone(s, &e);
    if (t && grammar_state_accept_bytes(t, p, strlen(p), &e) != 0) {
        grammar_state_free(t);
        t = NULL;
    }
    return t;
}

static void judge(struct brute *b, const struct grammar_state *s, const char *text)
{
    double x = strtod(text, NULL);
    bool want = (isnan(b->lo) || (b->lo_ex ? x > b->lo : x >= b->lo)) &&
                (isnan(b->hi) || (b->hi_ex ? x < b->hi : x <= b->hi));
    bool got = s && grammar_state_can_end(s);
    b->n_in += want;
    if (want != got && b->n_bad++ < 5)
        fprintf(stderr, "  %s: %s %s\n", b->schema, got ? "accepts" : "rejects", text);
}

static void fraction_digits(struct brute *b, const struct grammar_state *s, char *text, size_t len, int left)
{
    for (int d = 0; d < 10; d++) {
        char c[2] = {(char)('0' + d), 0};
        text[len] = c[0];
        text[len + 1] = 0;
        struct grammar_state *t = step(s, c);
        judge(b, t, text);
        if (left > 1)
            fraction_digits(b, t, text, len + 1, left - 1);
        grammar_state_free(t);
    }
}

/* Whole parts near the bounds of the cases get 0-3 fraction digits, the
 * others 0-1 (they behave alike; this keeps the test to seconds under ASan). */
static void brute_walk(struct brute *b, const struct grammar_state *s0)
{
    char text[16];
    for (int neg = 0; neg < 2; neg++) {
        for (int w = 0; w < 100; w++) {
            int n = snprintf(text, sizeof text, "%s%d", neg ? "-" : "", w);
            struct grammar_state *t = step(s0, text);
            judge(b, t, text);
            struct grammar_state *dot = step(t, ".");
            text[n] = '.';
            bool near = w <= 13 || (w >= 49 && w <= 51) || w >= 98;
            fraction_digits(b, dot, text, (size_t)n + 1, near ? 3 : 1);
            grammar_state_free(dot);
            grammar_state_free(t);
        }
    }
}

static int brute(const char *schema, double lo, bool lo_ex, double hi, bool hi_ex, int *n_in)
{
    struct err e;
    struct brute b = {schema, lo, hi, lo_ex, hi_ex, 0, 0};
    char *gbnf = grammar_schema_to_gbnf(schema, NULL, &e);
    if (!gbnf) {
        fprintf(stderr, "  schema %s: %s\n", schema, e.msg);
        return -1;
    }
    struct grammar *g = grammar_compile(gbnf, strlen(gbnf), &e);
    free(gbnf);
    if (!g) {
        fprintf(stderr, "  grammar of %s: %s\n", schema, e.msg);
        return -1;
    }
    struct grammar_state *s = grammar_state_new(g, no_vocab, &e);
    brute_walk(&b, s);
    grammar_state_free(s);
    grammar_free(g);
    *n_in = b.n_in;
    return b.n_bad;
}

TEST(number_bounds_brute_force)
{
    static const struct {
        const char *bounds;
        double lo;
        bool lo_ex;
        double hi;
        bool hi_ex;
    } cases[] = {
        {"\"minimum\":0.5", 0.5, false, NAN, false},
        {"\"exclusiveMinimum\":0.5", 0.5, true, NAN, false},
        {"\"maximum\":0.5", NAN, false, 0.5, false},
        {"\"exclusiveMaximum\":0.5", NAN, false, 0.5, true},
        {"\"minimum\":-2.25,\"maximum\":3.75", -2.25, false, 3.75, false},
        {"\"exclusiveMinimum\":-2.25,\"exclusiveMaximum\":-0.5", -2.25, true, -0.5, true},
        {"\"minimum\":0.25,\"maximum\":0.75", 0.25, false, 0.75, false},
        {"\"exclusiveMinimum\":0.1,\"exclusiveMaximum\":0.2", 0.1, true, 0.2, true},
        {"\"minimum\":1e-3,\"maximum\":0.009", 0.001, false, 0.009, false},
        {"\"exclusiveMinimum\":-0.5,\"maximum\":0.5", -0.5, true, 0.5, false},
        {"\"minimum\":12.5,\"maximum\":12.5", 12.5, false, 12.5, false},
        {"\"minimum\":-1,\"exclusiveMaximum\":0", -1, false, 0, true},
        {"\"minimum\":-0.0,\"exclusiveMaximum\":1", 0, false, 1, true},
        {"\"exclusiveMinimum\":0,\"maximum\":0.001", 0, true, 0.001, false},
        {"\"minimum\":-10.05,\"exclusiveMaximum\":10.05", -10.05, false, 10.05, true},
        {"\"exclusiveMinimum\":2,\"maximum\":7.125", 2, true, 7.125, false},
        {"\"minimum\":-0.999,\"maximum\":-0.001", -0.999, false, -0.001, false},
        {"\"minimum\":50,\"maximum\":99.95", 50, false, 99.95, false},
        {"\"exclusiveMinimum\":3.14159,\"exclusiveMaximum\":3.2", 3.14159, true, 3.2, true},
        {"\"minimum\":5,\"exclusiveMinimum\":5.5,\"maximum\":9,\"exclusiveMaximum\":8.75", 5.5, true, 8.75, true},
        {"\"maximum\":-98.5", NAN, false, -98.5, false},
    };
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        char schema[200];
        snprintf(schema, sizeof schema, "{\"type\":\"number\",%s}", cases[k].bounds);
        int n_in = 0, bad = brute(schema, cases[k].lo, cases[k].lo_ex, cases[k].hi, cases[k].hi_ex, &n_in);
        CHECKF(bad == 0 && n_in > 0, "%s: %d texts judged wrongly (%d in range)", schema, bad, n_in);
    }
    /* beyond the brute-force texts: 16 fraction digits, the limit */
    OK("{\"type\":\"number\",\"exclusiveMinimum\":0.5}", "0.5000000000000001");
    NO("{\"type\":\"number\",\"exclusiveMinimum\":0.5}", "0.5000000000000000");
    NO("{\"type\":\"number\",\"exclusiveMinimum\":0.5}", "0.50000000000000011"); /* 16 digits at most */
    OK("{\"type\":\"number\",\"exclusiveMinimum\":0}", "0.0000000000000001");
    OK("{\"type\":\"number\",\"exclusiveMinimum\":0}", "0.1000000000000000");
    OK("{\"type\":\"number\",\"maximum\":0.5}", "0.5000000000000000");
    NO("{\"type\":\"number\",\"maximum\":0.5}", "0.5000000000000001");
    OK("{\"type\":\"number\",\"exclusiveMinimum\":1e-16}", "0.0000000000000002");
    NO("{\"type\":\"number\",\"exclusiveMinimum\":1e-16}", "0.0000000000000001");
    OK("{\"type\":\"number\",\"minimum\":-1e15,\"maximum\":1e15}", "-1000000000000000.0");
    NO("{\"type\":\"number\",\"minimum\":-1e15,\"maximum\":1e15}", "-1000000000000000.1");
    OK("{\"type\":\"number\",\"minimum\":0.1,\"maximum\":0.1}", "0.100");
    NO("{\"type\":\"number\",\"minimum\":0.1,\"maximum\":0.1}", "0.1000000000000001");
    OK("{\"type\":\"number\",\"minimum\":0.1,\"maximum\":0.1}", "0.1");
}

TEST(errors_name_the_keyword)
{
    struct err e;
    char *g = grammar_schema_to_gbnf("{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"string\",\"minProperties\":1}}}",
                                     NULL, &e);
    CHECK(!g && e.code == ERR_INVALID && strstr(e.msg, "'minProperties'") && strstr(e.msg, "#/properties/a"));
    g = grammar_schema_to_gbnf("{\"type\":\"string\",\"format\":\"email\"}", NULL, &e);
    CHECK(!g && strstr(e.msg, "'email'"));
    g = grammar_schema_to_gbnf("{\"type\":\"string\",\"pattern\":\"(?=a)\"}", NULL, &e);
    CHECK(!g && strstr(e.msg, "lookaround"));
    g = grammar_schema_to_gbnf("{\"$ref\":\"http://x/y\"}", NULL, &e);
    CHECK(!g && strstr(e.msg, "local"));
    g = grammar_schema_to_gbnf("{\"type\":\"number\",\"exclusiveMaximum\":1e-20}", NULL, &e);
    CHECK(!g && strstr(e.msg, "'exclusiveMaximum'") && strstr(e.msg, "fraction digits"));
    g = grammar_schema_to_gbnf("{\"type\":\"number\",\"minimum\":0.30000000000000004}", NULL, &e);
    CHECK(!g && strstr(e.msg, "'minimum'") && strstr(e.msg, "0.30000000000000004"));
    g = grammar_schema_to_gbnf("{\"type\":\"number\",\"minimum\":0.5,\"exclusiveMaximum\":0.5}", NULL, &e);
    CHECK(!g && strstr(e.msg, "leave no number"));
    g = grammar_schema_to_gbnf("{\"type\":", NULL, &e);
    CHECK(!g && e.code == ERR_INVALID);
    g = grammar_schema_to_gbnf("{\"allOf\":[{\"properties\":{\"a\":{}}},{\"properties\":{\"b\":{}}}],"
                               "\"additionalProperties\":false}", NULL, &e);
    CHECK(!g && strstr(e.msg, "allOf") && strstr(e.msg, "'a'"));
    /* a prefix keeps every rule apart */
    g = grammar_schema_to_gbnf("{\"type\":\"integer\"}", "tool-", &e);
    CHECK(g && strstr(g, "tool-root ::=") && !strstr(g, "\nroot ::="));
    free(g);
}

int main(void)
{
    struct err e;
    no_vocab = grammar_vocab_new(NULL, 0, &e);
    RUN(types_and_objects);
    RUN(arrays);
    RUN(enum_const_combinators);
    RUN(strings);
    RUN(numbers);
    RUN(number_bounds_brute_force);
    RUN(errors_name_the_keyword);
    grammar_vocab_free(no_vocab);
    TEST_END();
}
