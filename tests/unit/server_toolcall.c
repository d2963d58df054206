/*
 * server/toolcall: every call format on outputs written from its
 * documentation (the model cards and chat templates), whole and streamed
 * in random chunkings (the streamed deltas must add up to the whole
 * result), a malformed call returned as text, text before a call, several
 * calls, reasoning split out, and the format chosen from template text.
 */
#include "server/toolcall.h"
#include "test.h"

#include <stdint.h>

struct want {
    const char *content;   /* expected content */
    const char *reasoning; /* expected reasoning */
    int n_calls;
    const char *name[3];
    const char *args[3];   /* compact JSON */
};

static struct tc_config cfg(enum tc_format f, const char *think_open, const char *think_close, bool start_in)
{
    struct tc_config c = {f, think_open, think_close, start_in, f != TC_NONE};
    return c;
}

static void check_result(const char *what, const struct tc_result *r, const struct want *w)
{
    const char *c = r->content.buf ? r->content.buf : "";
    const char *rs = r->reasoning.buf ? r->reasoning.buf : "";
    CHECKF(!strcmp(c, w->content), "%s: content '%s' want '%s'", what, c, w->content);
    CHECKF(!strcmp(rs, w->reasoning ? w->reasoning : ""), "%s: reasoning '%s' want '%s'", what, rs,
           w->reasoning ? w->reasoning : "");
    CHECKF(r->n_calls == w->n_calls, "%s: %d calls want %d", what, r->n_calls, w->n_calls);
    for (int i = 0; i < r->n_calls && i < w->n_calls; i++) {
        CHECKF(!strcmp(r->calls[i].name, w->name[i]), "%s: call %d name '%s' want '%s'", what, i, r->calls[i].name,
               w->name[i]);
        CHECKF(!strcmp(r->calls[i].arguments, w->args[i]), "%s: call %d args '%s' want '%s'", what, i,
               r->calls[i].arguments, w->args[i]);
    }
}

static uint64_t rng = 88172645463325252ULL;
static unsigned next_rand(void)
{
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (unsigned)rng;
}

/* Whole, then streamed in 20 random chunkings (and one byte at a time). */
static void check_format(const char *what, const struct tc_config *c, const char *text, const struct want *w)
{
    struct tc_result r = {0};
    CHECK(tc_parse(c, text, strlen(text), true, &r) == 0);
    check_result(what, &r, w);
    tc_result_release(&r);
    size_t n = strlen(text);
    for (int round = 0; round < 21; round++) {
        struct tc_stream *s = tc_stream_new(c);
        struct sbuf content = SBUF_INIT, reasoning = SBUF_INIT;
        struct tc_result calls = {0};
        size_t pos = 0;
        while (pos <= n) {
            size_t k = round == 20 ? 1 : 1 + next_rand() % 7;
            if (k > n - pos)
                k = n - pos;
            struct tc_delta d;
            bool fin = pos + k == n;
            CHECK(tc_stream_feed(s, text + pos, k, fin, &d) == 0);
            sbuf_add(&content, d.content ? d.content : "", d.n_content);
            sbuf_add(&reasoning, d.reasoning ? d.reasoning : "", d.n_reasoning);
            for (int i = 0; i < d.n_calls; i++) {
                CHECK(d.first_index + i == calls.n_calls);
                size_t cap = (size_t)calls.cap_calls;
                mem_grow(&calls.calls, &cap, (size_t)calls.n_calls + 1, sizeof *calls.calls);
                calls.cap_calls = (int)cap;
                calls.calls[calls.n_calls].name = strdup(d.calls[i].name);
                calls.calls[calls.n_calls++].arguments = strdup(d.calls[i].arguments);
            }
            pos += k;
            if (fin)
                break;
        }
        calls.content = content;
        calls.reasoning = reasoning;
        char label[128];
        snprintf(label, sizeof label, "%s (streamed, chunking %d)", what, round);
        check_result(label, &calls, w);
        tc_result_release(&calls);
        tc_stream_free(s);
    }
}

#define W(...) ((struct want){__VA_ARGS__})

TEST(hermes)
{
    struct tc_config c = cfg(TC_HERMES, "<think>", "</think>", false);
    check_format("hermes one", &c,
                 "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>",
                 &W("", NULL, 1, {"get_weather"}, {"{\"city\":\"Paris\"}"}));
    check_format("hermes text before, two calls", &c,
                 "Let me check.\n<tool_call>\n{\"name\": \"a\", \"arguments\": {}}\n</tool_call>\n<tool_call>\n"
                 "{\"name\": \"b\", \"arguments\": {\"x\": [1, 2]}}\n</tool_call>",
                 &W("Let me check.\n", NULL, 2, {"a", "b"}, {"{}", "{\"x\":[1,2]}"}));
    check_format("hermes malformed", &c, "<tool_call>\n{\"name\": \"a\", \"arguments\": {</tool_call> ok",
                 &W("<tool_call>\n{\"name\": \"a\", \"arguments\": {</tool_call> ok", NULL, 0, {0}, {0}));
    check_format("hermes no name", &c, "<tool_call>{\"arguments\": {}}</tool_call>",
                 &W("<tool_call>{\"arguments\": {}}</tool_call>", NULL, 0, {0}, {0}));
    check_format("qwen3 think then call", &c,
                 "<think>\nThe user wants weather.\n</think>\n\n<tool_call>\n{\"name\": \"get_weather\", "
                 "\"arguments\": {\"city\": \"Paris\"}}\n</tool_call>",
                 &W("", "\nThe user wants weather.\n", 1, {"get_weather"}, {"{\"city\":\"Paris\"}"}));
    check_format("string arguments", &c, "<tool_call>{\"name\": \"f\", \"arguments\": \"{\\\"a\\\": 1}\"}</tool_call>",
                 &W("", NULL, 1, {"f"}, {"{\"a\":1}"}));
    check_format("unterminated call at the end", &c, "Hi <tool_call>{\"name\": \"f\", \"arguments\": {}}",
                 &W("Hi ", NULL, 1, {"f"}, {"{}"}));
    check_format("a lone < is text", &c, "a < b and <tool", &W("a < b and <tool", NULL, 0, {0}, {0}));
}

TEST(reasoning_only)
{
    struct tc_config c = cfg(TC_NONE, "<think>", "</think>", true);
    check_format("r1 starts in think", &c, "Okay, 2+2.\n</think>\n\nThe answer is 4.",
                 &W("The answer is 4.", "Okay, 2+2.\n", 0, {0}, {0}));
    check_format("r1 never closes", &c, "still thinking </thi", &W("", "still thinking </thi", 0, {0}, {0}));
    c.start_in_think = false;
    check_format("plain text", &c, "Hello <b>world</b>", &W("Hello <b>world</b>", NULL, 0, {0}, {0}));
}

TEST(glm45)
{
    struct tc_config c = cfg(TC_GLM45, "<think>", "</think>", false);
    check_format("glm", &c,
                 "<think>weather</think>\n<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Paris</arg_value>\n"
                 "<arg_key>days</arg_key>\n<arg_value>3</arg_value>\n</tool_call>",
                 &W("", "weather", 1, {"get_weather"}, {"{\"city\":\"Paris\",\"days\":3}"}));
    check_format("glm no args", &c, "<tool_call>now\n</tool_call>", &W("", NULL, 1, {"now"}, {"{}"}));
    check_format("glm malformed", &c, "<tool_call>f\n<arg_key>a</arg_key></tool_call>",
                 &W("<tool_call>f\n<arg_key>a</arg_key></tool_call>", NULL, 0, {0}, {0}));
}

TEST(llama3)
{
    struct tc_config c = cfg(TC_LLAMA3, NULL, NULL, false);
    check_format("llama3 json", &c, "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}",
                 &W("", NULL, 1, {"get_weather"}, {"{\"city\":\"Paris\"}"}));
    check_format("llama3 python_tag", &c,
                 "<|python_tag|>{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}",
                 &W("", NULL, 1, {"get_weather"}, {"{\"city\":\"Paris\"}"}));
    check_format("llama3 built-in tool", &c, "<|python_tag|>brave_search.call(query=\"weather in Paris\", n=3)",
                 &W("", NULL, 1, {"brave_search"}, {"{\"query\":\"weather in Paris\",\"n\":3}"}));
    check_format("llama3 built-in tool, no args", &c, "<|python_tag|>clock.call()", &W("", NULL, 1, {"clock"}, {"{}"}));
    check_format("llama3 built-in malformed", &c, "<|python_tag|>x.call(q=)",
                 &W("<|python_tag|>x.call(q=)", NULL, 0, {0}, {0}));
    check_format("llama3 text", &c, "The weather is {nice}.", &W("The weather is {nice}.", NULL, 0, {0}, {0}));
    check_format("llama3 bad json", &c, "{\"name\": \"f\", \"parameters\": ", &W("{\"name\": \"f\", \"parameters\": ", NULL, 0, {0}, {0}));
    check_format("llama3 two", &c, "{\"name\": \"a\", \"parameters\": {}}; {\"name\": \"b\", \"parameters\": {}}",
                 &W("", NULL, 2, {"a", "b"}, {"{}", "{}"}));
}

TEST(mistral)
{
    struct tc_config c = cfg(TC_MISTRAL, NULL, NULL, false);
    check_format("mistral list", &c,
                 "[TOOL_CALLS][{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}, \"id\": \"abcDEF123\"}, "
                 "{\"name\": \"b\", \"arguments\": {}}]",
                 &W("", NULL, 2, {"get_weather", "b"}, {"{\"city\":\"Paris\"}", "{}"}));
    check_format("mistral v11", &c, "Sure.[TOOL_CALLS]get_weather[ARGS]{\"city\": \"Paris\"}",
                 &W("Sure.", NULL, 1, {"get_weather"}, {"{\"city\":\"Paris\"}"}));
    check_format("mistral v11 two", &c, "[TOOL_CALLS]a[ARGS]{}[TOOL_CALLS]b[ARGS]{\"x\": 1}",
                 &W("", NULL, 2, {"a", "b"}, {"{}", "{\"x\":1}"}));
    check_format("mistral malformed", &c, "[TOOL_CALLS][{\"name\": 3}]", &W("[TOOL_CALLS][{\"name\": 3}]", NULL, 0, {0}, {0}));
}

#define DSB "<\xEF\xBD\x9Ctool\xE2\x96\x81" "calls\xE2\x96\x81" "begin\xEF\xBD\x9C>"
#define DSE "<\xEF\xBD\x9Ctool\xE2\x96\x81" "calls\xE2\x96\x81" "end\xEF\xBD\x9C>"
#define DCB "<\xEF\xBD\x9Ctool\xE2\x96\x81" "call\xE2\x96\x81" "begin\xEF\xBD\x9C>"
#define DCE "<\xEF\xBD\x9Ctool\xE2\x96\x81" "call\xE2\x96\x81" "end\xEF\xBD\x9C>"
#define DSEP "<\xEF\xBD\x9Ctool\xE2\x96\x81sep\xEF\xBD\x9C>"

TEST(deepseek)
{
    struct tc_config c = cfg(TC_DEEPSEEK, "<think>", "</think>", true);
    check_format("deepseek r1", &c,
                 "I should call it.</think>" DSB DCB "function" DSEP "get_weather\n```json\n{\"city\": \"Paris\"}\n```" DCE
                 DCB "function" DSEP "b\n```json\n{}\n```" DCE DSE,
                 &W("", "I should call it.", 2, {"get_weather", "b"}, {"{\"city\":\"Paris\"}", "{}"}));
    c.start_in_think = false;
    check_format("deepseek v3.1", &c, "Checking." DSB DCB "get_weather" DSEP "{\"city\": \"Paris\"}" DCE DSE,
                 &W("Checking.", NULL, 1, {"get_weather"}, {"{\"city\":\"Paris\"}"}));
    check_format("deepseek malformed", &c, DSB DCB "get_weather" DSEP "{bad" DCE DSE,
                 &W(DSB DCB "get_weather" DSEP "{bad" DCE DSE, NULL, 0, {0}, {0}));
}

TEST(command_r7b)
{
    struct tc_config c = cfg(TC_COMMAND_R7B, "<|START_THINKING|>", "<|END_THINKING|>", false);
    check_format("r7b", &c,
                 "<|START_THINKING|>I will look up the weather.<|END_THINKING|><|START_ACTION|>[\n"
                 "    {\"tool_call_id\": \"0\", \"tool_name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}\n"
                 "]<|END_ACTION|>",
                 &W("", "I will look up the weather.", 1, {"get_weather"}, {"{\"city\":\"Paris\"}"}));
    check_format("r7b response", &c, "<|START_RESPONSE|>It is sunny.<|END_RESPONSE|>",
                 &W("It is sunny.", NULL, 0, {0}, {0}));
}

TEST(functionary)
{
    struct tc_config c = cfg(TC_FUNCTIONARY, NULL, NULL, false);
    check_format("functionary call", &c, "get_weather\n{\"city\": \"Paris\"}",
                 &W("", NULL, 1, {"get_weather"}, {"{\"city\":\"Paris\"}"}));
    check_format("functionary text then call", &c, "all\nLet me check.>>>get_weather\n{\"city\": \"Paris\"}>>>b\n{}",
                 &W("Let me check.", NULL, 2, {"get_weather", "b"}, {"{\"city\":\"Paris\"}", "{}"}));
    check_format("functionary text", &c, "Hello there", &W("Hello there", NULL, 0, {0}, {0}));
    struct tc_result part = {0}; /* a text turn streams before the output ends, all but a possible ">>" */
    CHECK(tc_parse(&c, "all\nHello wor>>", 15, false, &part) == 0);
    CHECKF(part.content.buf && !strcmp(part.content.buf, "Hello wor"), "%s", part.content.buf);
    tc_result_release(&part);
    struct tc_config c31 = cfg(TC_FUNCTIONARY31, NULL, NULL, false);
    check_format("functionary v3.1", &c31, "Sure <function=get_weather>{\"city\": \"Paris\"}</function>",
                 &W("Sure ", NULL, 1, {"get_weather"}, {"{\"city\":\"Paris\"}"}));
}

TEST(kimi)
{
    struct tc_config c = cfg(TC_KIMI_K2, NULL, NULL, false);
    check_format("kimi", &c,
                 "I'll check.<|tool_calls_section_begin|><|tool_call_begin|>functions.get_weather:0"
                 "<|tool_call_argument_begin|>{\"city\": \"Paris\"}<|tool_call_end|><|tool_call_begin|>functions.b:1"
                 "<|tool_call_argument_begin|>{}<|tool_call_end|><|tool_calls_section_end|>",
                 &W("I'll check.", NULL, 2, {"get_weather", "b"}, {"{\"city\":\"Paris\"}", "{}"}));
}

TEST(harmony)
{
    struct tc_config c = cfg(TC_HARMONY, NULL, NULL, false);
    check_format("harmony final", &c,
                 "<|channel|>analysis<|message|>User says hi.<|end|><|start|>assistant<|channel|>final<|message|>Hello!",
                 &W("Hello!", "User says hi.", 0, {0}, {0}));
    check_format("harmony call", &c,
                 "<|channel|>analysis<|message|>Need weather.<|end|><|start|>assistant<|channel|>commentary "
                 "to=functions.get_weather <|constrain|>json<|message|>{\"city\": \"Paris\"}<|call|>",
                 &W("", "Need weather.", 1, {"get_weather"}, {"{\"city\":\"Paris\"}"}));
    check_format("harmony bad args", &c, "<|channel|>commentary to=functions.f <|message|>{oops<|call|>",
                 &W("<|channel|>commentary to=functions.f <|message|>{oops<|call|>", NULL, 0, {0}, {0}));
    check_format("harmony plain", &c, "no channels here", &W("no channels here", NULL, 0, {0}, {0}));
    c.calls = false;
    check_format("harmony without tools", &c, "<|channel|>commentary to=functions.f<|message|>{}<|call|>",
                 &W("{}", NULL, 0, {0}, {0}));
}

TEST(granite)
{
    struct tc_config c = cfg(TC_GRANITE, "<think>", "</think>", false);
    check_format("granite", &c, "<|tool_call|>[{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}]",
                 &W("", NULL, 1, {"get_weather"}, {"{\"city\":\"Paris\"}"}));
}

TEST(qwen3_coder)
{
    struct tc_config c = cfg(TC_QWEN3_CODER, "<think>", "</think>", false);
    check_format("qwen3-coder", &c,
                 "I'll check.\n<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n"
                 "<parameter=days>\n3\n</parameter>\n</function>\n</tool_call>",
                 &W("I'll check.\n", NULL, 1, {"get_weather"}, {"{\"city\":\"Paris\",\"days\":3}"}));
    check_format("qwen3-coder malformed", &c, "<tool_call>\n<function=f>\n<parameter=a>1</function>\n</tool_call>",
                 &W("<tool_call>\n<function=f>\n<parameter=a>1</function>\n</tool_call>", NULL, 0, {0}, {0}));
}

TEST(detect)
{
    struct tc_config c;
    CHECK(tc_config_for(&c, "{{ '<tool_call>' }}{% if x %}<think>{% endif %}", true, "x<think>\n", 9));
    CHECK(c.fmt == TC_HERMES && c.start_in_think && !strcmp(c.think_open, "<think>"));
    tc_config_for(&c, "<tool_call><arg_key>", true, NULL, 0);
    CHECK(c.fmt == TC_GLM45);
    tc_config_for(&c, "<tool_call><arg_key>", false, NULL, 0);
    CHECK(c.fmt == TC_NONE);
    CHECK(!tc_config_for(&c, "<|im_start|>", true, NULL, 0));
    tc_config_for(&c, "<|channel|>", false, NULL, 0);
    CHECK(c.fmt == TC_HARMONY && !c.calls);
    tc_config_for(&c, "[TOOL_CALLS] [ARGS]", true, NULL, 0);
    CHECK(c.fmt == TC_MISTRAL);
    tc_config_for(&c, "<|python_tag|>", true, NULL, 0);
    CHECK(c.fmt == TC_LLAMA3);
    tc_config_for(&c, "<|tool_calls_section_begin|>", true, NULL, 0);
    CHECK(c.fmt == TC_KIMI_K2);
    tc_config_for(&c, "<tool_call>\n<function=example_function_name>", true, NULL, 0);
    CHECK(c.fmt == TC_QWEN3_CODER);
    CHECK(!strcmp(tc_format_name(TC_KIMI_K2), "kimi-k2") && !strcmp(tc_syntax(TC_HERMES)->call_open, "<tool_call>"));
}

int main(void)
{
    RUN(hermes);
    RUN(reasoning_only);
    RUN(glm45);
    RUN(llama3);
    RUN(mistral);
    RUN(deepseek);
    RUN(command_r7b);
    RUN(functionary);
    RUN(kimi);
    RUN(harmony);
    RUN(granite);
    RUN(qwen3_coder);
    RUN(detect);
    TEST_END();
}
