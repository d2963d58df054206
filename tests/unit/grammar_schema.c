/* JSON Schema -> GBNF: for each schema, texts its grammar must accept and
 * texts it must reject; keywords it cannot enforce are errors naming them. */
#include "grammar/grammar.h"
#include "test.h"

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
    g = grammar_schema_to_gbnf("{\"type\":\"number\",\"maximum\":0.5}", NULL, &e);
    CHECK(!g && strstr(e.msg, "fraction"));
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
    RUN(errors_name_the_keyword);
    grammar_vocab_free(no_vocab);
    TEST_END();
}
