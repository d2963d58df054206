/* The grammar of a forced tool call, for every format that can be forced:
 * it accepts a call written as the format's documentation writes it and
 * rejects a wrong name, wrong arguments, a second call where only one is
 * allowed; random token walks through it (a real byte-level vocabulary,
 * test_vocab.h) always end in text that tc_parse reads back as calls of the
 * allowed tools with arguments valid for their schema; reasoning first when
 * the prompt opened it; a schema the compiler cannot enforce names its tool. */
#include "grammar/grammar.h"
#include "server/toolcall.h"
#include "test_vocab.h"

#include <jansson.h>

static struct tokenizer *tok;
static struct grammar_vocab *gv;

static const char *tools_json =
    "[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"parameters\":{\"type\":\"object\",\"properties\":"
    "{\"city\":{\"type\":\"string\",\"maxLength\":8},\"unit\":{\"enum\":[\"c\",\"f\"]}},\"required\":[\"city\",\"unit\"]}}},"
    "{\"type\":\"function\",\"function\":{\"name\":\"ping\"}}]";
/* The same with a ping that takes no arguments: random walks end (any JSON object would not, at random). */
static const char *bounded_json =
    "[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"parameters\":{\"type\":\"object\",\"properties\":"
    "{\"city\":{\"type\":\"string\",\"maxLength\":8},\"unit\":{\"enum\":[\"c\",\"f\"]}},\"required\":[\"city\",\"unit\"]}}},"
    "{\"type\":\"function\",\"function\":{\"name\":\"ping\",\"parameters\":{\"type\":\"object\",\"additionalProperties\":false}}}]";

#define ARGS "{\"city\": \"Paris\", \"unit\": \"c\"}"

/* A call to N with arguments A (two %s) as each format writes it. */
static const struct {
    enum tc_format f;
    const char *call;
} samples[] = {
    {TC_HERMES, "<tool_call>\n{\"name\": \"%s\", \"arguments\": %s}\n</tool_call>"},
    {TC_LLAMA3, "{\"name\": \"%s\", \"parameters\": %s}"},
    {TC_MISTRAL, "[TOOL_CALLS][{\"name\": \"%s\", \"arguments\": %s}]"},
    {TC_GRANITE, "<|tool_call|>[{\"name\": \"%s\", \"arguments\": %s}]"},
    {TC_COMMAND_R7B, "<|START_ACTION|>[\n    {\"tool_call_id\": \"0\", \"tool_name\": \"%s\", \"parameters\": %s}\n]"
                     "<|END_ACTION|>"},
    {TC_DEEPSEEK, TC_DS_CALLS_BEGIN TC_DS_CALL_BEGIN "function" TC_DS_SEP "%s\n```json\n%s\n```" TC_DS_CALL_END
                  TC_DS_CALLS_END},
    {TC_KIMI_K2, "<|tool_calls_section_begin|><|tool_call_begin|>functions.%s:0<|tool_call_argument_begin|>%s"
                 "<|tool_call_end|><|tool_calls_section_end|>"},
    {TC_FUNCTIONARY31, "<function=%s>%s</function>"},
    {TC_FUNCTIONARY, "%s\n%s"},
};
#define N_SAMPLES (int)(sizeof samples / sizeof samples[0])

static struct grammar *forced_of(const char *json, const struct tc_config *c, const char *only, bool parallel)
{
    struct err e;
    json_t *tools = json_loads(json, 0, NULL);
    int bad;
    char *text = tc_forced_gbnf(c, tools, only, parallel, &bad, &e);
    json_decref(tools);
    CHECKF(text != NULL, "%s: %s", tc_format_name(c->fmt), text ? "" : e.msg);
    if (!text)
        return NULL;
    struct grammar *g = grammar_compile(text, strlen(text), &e);
    CHECKF(g != NULL, "%s: %s\n%s", tc_format_name(c->fmt), g ? "" : e.msg, text);
    free(text);
    return g;
}

static struct grammar *forced(const struct tc_config *c, const char *only, bool parallel)
{
    return forced_of(tools_json, c, only, parallel);
}

/* Whether g takes the whole text and may end there. */
static bool takes(struct grammar *g, const char *text)
{
    struct err e;
    struct grammar_state *s = grammar_state_new(g, gv, &e);
    bool ok = grammar_state_accept_bytes(s, text, strlen(text), &e) == 0 && grammar_state_can_end(s);
    grammar_state_free(s);
    return ok;
}

static char *sample(int i, const char *name, const char *args)
{
    static char buf[1024];
    snprintf(buf, sizeof buf, samples[i].call, name, args);
    return buf;
}

/* The calls tc_parse finds: each a tool of tools_json with valid arguments; their number. Content
 * before them only when free_text. */
static int parsed_calls_after(const struct tc_config *c, const char *text, size_t n, bool free_text)
{
    struct tc_result r = {0};
    CHECK(tc_parse(c, text, n, true, &r) == 0);
    CHECKF((free_text || r.content.len == 0) && r.n_calls > 0, "%s: content \"%s\" from \"%.*s\"", tc_format_name(c->fmt),
           r.content.buf ? r.content.buf : "", (int)n, text);
    for (int k = 0; k < r.n_calls; k++) {
        json_t *a = json_loads(r.calls[k].arguments, 0, NULL);
        if (!strcmp(r.calls[k].name, "get_weather")) {
            const char *city = json_string_value(json_object_get(a, "city"));
            const char *unit = json_string_value(json_object_get(a, "unit"));
            CHECKF(city && unit && (!strcmp(unit, "c") || !strcmp(unit, "f")) && json_object_size(a) == 2,
                   "%s: arguments %s", tc_format_name(c->fmt), r.calls[k].arguments);
        } else {
            CHECKF(!strcmp(r.calls[k].name, "ping") && json_is_object(a), "%s: call %s", tc_format_name(c->fmt),
                   r.calls[k].name);
        }
        json_decref(a);
    }
    int got = r.n_calls;
    tc_result_release(&r);
    return got;
}

static int parsed_calls(const struct tc_config *c, const char *text, size_t n)
{
    return parsed_calls_after(c, text, n, false);
}

TEST(samples_accepted_and_parsed)
{
    for (int i = 0; i < N_SAMPLES; i++) {
        struct tc_config c = {samples[i].f, NULL, NULL, false, true};
        struct grammar *g = forced(&c, NULL, true);
        if (!g)
            continue;
        const char *t = sample(i, "get_weather", ARGS);
        CHECKF(takes(g, t), "%s: the sample call is refused", tc_format_name(c.fmt));
        CHECK(parsed_calls(&c, t, strlen(t)) == 1);
        CHECKF(takes(g, sample(i, "ping", "{}")), "%s: ping", tc_format_name(c.fmt));
        CHECKF(!takes(g, sample(i, "get_wether", ARGS)), "%s: a wrong name", tc_format_name(c.fmt));
        CHECK(!takes(g, sample(i, "get_weather", "{\"city\": 5, \"unit\": \"c\"}")));
        CHECK(!takes(g, sample(i, "get_weather", "{\"city\": \"Paris\", \"unit\": \"k\"}")));
        CHECK(!takes(g, sample(i, "get_weather", "{\"city\": \"Paris\"}")));
        CHECK(!takes(g, sample(i, "get_weather", "{\"city\": \"Montpellier\", \"unit\": \"c\"}"))); /* maxLength */
        CHECK(!takes(g, "Sure, let me check."));
        grammar_free(g);
        g = forced(&c, "ping", true); /* named: only that one */
        CHECK(g && !takes(g, sample(i, "get_weather", ARGS)) && takes(g, sample(i, "ping", "{}")));
        grammar_free(g);
    }
}

TEST(parallel_calls)
{
    struct tc_config c = {TC_HERMES, NULL, NULL, false, true};
    char two[2048];
    snprintf(two, sizeof two, "%s\n", sample(0, "get_weather", ARGS));
    strcat(two, sample(0, "ping", "{}"));
    struct grammar *g = forced(&c, NULL, true);
    CHECK(takes(g, two) && parsed_calls(&c, two, strlen(two)) == 2);
    const char *tight = "<tool_call>{\"name\": \"ping\", \"arguments\": {}}</tool_call>"; /* newlines optional */
    CHECK(takes(g, tight) && parsed_calls(&c, tight, strlen(tight)) == 1);
    grammar_free(g);
    g = forced(&c, NULL, false);
    CHECK(!takes(g, two) && takes(g, sample(0, "ping", "{}")));
    grammar_free(g);
    g = forced(&c, "ping", true); /* a named function: one call */
    CHECK(!takes(g, two));
    grammar_free(g);
}

TEST(reasoning_first)
{
    struct tc_config c = {TC_HERMES, "<think>", "</think>", true, true};
    char t[2048];
    snprintf(t, sizeof t, "Paris? a<b, so <<ok.\n</think>\n\n%s", sample(0, "get_weather", ARGS));
    struct grammar *g = forced(&c, NULL, true);
    CHECK(takes(g, t) && parsed_calls(&c, t, strlen(t)) == 1);
    CHECK(!takes(g, sample(0, "get_weather", ARGS))); /* the prompt opened <think>: it is closed first */
    grammar_free(g);
    c.start_in_think = false; /* the model may open it itself, or call at once */
    g = forced(&c, NULL, true);
    snprintf(t, sizeof t, "<think>hmm</think>\n%s", sample(0, "ping", "{}"));
    CHECK(takes(g, t) && takes(g, sample(0, "ping", "{}")) && parsed_calls(&c, t, strlen(t)) == 1);
    grammar_free(g);
}

static uint64_t rng = 0x9E3779B97F4A7C15ULL;
static uint32_t next_rand(void)
{
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (uint32_t)(rng >> 32);
}

/* From state s (freed here), a uniformly random allowed token at each step until end of
 * generation; the text written. */
static size_t walk_from(struct grammar_state *s, char *out, size_t cap)
{
    struct err e;
    int words = grammar_vocab_words(gv);
    uint32_t *m = calloc((size_t)words, 4);
    int32_t *allowed = malloc((size_t)words * 32 * sizeof *allowed);
    size_t n = 0;
    for (int step = 0; step < 4000; step++) {
        int k = 0;
        CHECK(grammar_state_mask(s, m, &e) >= 0);
        for (int32_t t = 0; t < words * 32; t++)
            if (m[t / 32] >> (t % 32) & 1)
                allowed[k++] = t;
        if (k == 0)
            break;
        int32_t t = allowed[next_rand() % (uint32_t)k];
        CHECK(grammar_state_accept(s, t, &e) == 0);
        if (tok_is_eog(tok, t))
            break;
        size_t len = 0;
        const char *p = tok_piece(tok, t, true, &len);
        if (n + len < cap)
            memcpy(out + n, p, len), n += len;
        if (grammar_state_is_done(s))
            break;
    }
    CHECKF(grammar_state_is_done(s), "a walk did not end: %.*s", (int)n, out);
    free(allowed);
    free(m);
    grammar_state_free(s);
    return n;
}

static size_t walk(struct grammar *g, char *out, size_t cap)
{
    struct err e;
    return walk_from(grammar_state_new(g, gv, &e), out, cap);
}

TEST(random_walks_parse_back)
{
    static char text[65536];
    for (int i = 0; i < N_SAMPLES; i++) {
        struct tc_config c = {samples[i].f, NULL, NULL, false, true};
        struct grammar *g = forced_of(bounded_json, &c, NULL, true);
        for (int w = 0; g && w < 6; w++) {
            size_t n = walk(g, text, sizeof text);
            CHECK(parsed_calls(&c, text, n) >= 1);
        }
        grammar_free(g);
    }
}

/* tool_choice "auto": the lazy grammar of samples[i]'s format (NULL on a failed check). */
static struct grammar *auto_of(const char *json, const struct tc_config *c, bool parallel)
{
    struct err e;
    json_t *tools = json_loads(json, 0, NULL);
    int bad;
    struct grammar_trigger trig;
    char *text = tc_auto_gbnf(c, tools, parallel, &trig, &bad, &e);
    json_decref(tools);
    CHECKF(text != NULL, "%s: %s", tc_format_name(c->fmt), text ? "" : e.msg);
    struct grammar *g = text ? grammar_compile(text, strlen(text), &e) : NULL;
    CHECKF(!text || g, "%s: %s\n%s", tc_format_name(c->fmt), g ? "" : e.msg, text);
    CHECK(!g || grammar_set_trigger(g, &trig, &e) == 0);
    free(text);
    return g;
}

/* What the model writes before its call in auto mode: free text, then the trigger when the
 * format's forced call does not start with it (Llama 3's <|python_tag|>, Functionary's >>>). */
static const char *auto_lead(enum tc_format f)
{
    return f == TC_LLAMA3 ? "Let me see. <|python_tag|>" : f == TC_FUNCTIONARY ? "all\nLet me see.>>>" : "Let me see. ";
}

/* Auto mode: free text stays free (even text no call allows), a call after it is held to the
 * grammar (name, arguments) and ends the grammar (one call without parallel_tool_calls), and
 * random walks from the trigger on parse back as valid calls after the text. */
TEST(auto_calls)
{
    static char text[65536];
    struct err e;
    for (int i = 0; i < N_SAMPLES; i++) {
        struct tc_config c = {samples[i].f, NULL, NULL, false, true};
        const char *fmt = tc_format_name(c.fmt);
        struct grammar *g = auto_of(tools_json, &c, false);
        struct grammar_state *s = g ? grammar_state_new(g, gv, &e) : NULL;
        CHECKF(s != NULL, "%s: %s", fmt, s ? "" : e.msg);
        if (!s) {
            grammar_free(g);
            continue;
        }
        const char *lead = auto_lead(c.fmt);
        CHECK(grammar_state_accept_bytes(s, "Sure!}", 6, &e) == 0 && grammar_state_waiting(s));
        snprintf(text, sizeof text, "%s%s", lead, sample(i, "get_weather", ARGS));
        struct grammar_state *bad = grammar_state_clone(s, &e);
        CHECKF(grammar_state_accept_bytes(s, text, strlen(text), &e) == 0 && grammar_state_is_done(s), "%s: %s", fmt,
               e.msg);
        CHECKF(parsed_calls_after(&c, text, strlen(text), true) == 1, "%s", fmt);
        snprintf(text, sizeof text, "%s%s", lead, sample(i, "get_wether", ARGS));
        CHECKF(grammar_state_accept_bytes(bad, text, strlen(text), &e) < 0, "%s: a wrong name passes", fmt);
        grammar_state_free(bad);
        grammar_state_free(s);
        grammar_free(g);
        /* random walks from the trigger on */
        g = auto_of(bounded_json, &c, true);
        for (int w = 0; g && w < 4; w++) {
            s = grammar_state_new(g, gv, &e);
            const char *t = strstr(lead, "<|python_tag|>") ? lead : NULL;
            size_t n = snprintf(text, sizeof text, "%s", lead);
            if (!t) { /* the trigger is the start of the sample call */
                const struct tc_syntax *sx = tc_syntax(c.fmt);
                n += snprintf(text + n, sizeof text - n, "%s", *sx->section_open ? sx->section_open : sx->call_open);
                if (c.fmt == TC_FUNCTIONARY)
                    n -= 3; /* the lead wrote >>> already */
            }
            CHECK(grammar_state_accept_bytes(s, text, n, &e) == 0 && !grammar_state_waiting(s));
            n += walk_from(s, text + n, sizeof text - n);
            CHECKF(parsed_calls_after(&c, text, n, true) >= 1, "%s: %.*s", fmt, (int)n, text);
        }
        grammar_free(g);
    }
    /* reasoning: the trigger inside <think> does not start a call */
    struct tc_config c = {TC_HERMES, "<think>", "</think>", true, true};
    struct grammar *g = auto_of(tools_json, &c, false);
    struct grammar_state *s = g ? grammar_state_new(g, gv, &e) : NULL;
    const char *t = "maybe <tool_call> later</think>";
    CHECK(s && grammar_state_accept_bytes(s, t, strlen(t), &e) == 0 && grammar_state_waiting(s));
    CHECK(s && grammar_state_accept_bytes(s, sample(0, "ping", "{}"), strlen(sample(0, "ping", "{}")), &e) == 0 &&
          grammar_state_is_done(s));
    grammar_state_free(s);
    grammar_free(g);
}

TEST(errors)
{
    struct err e;
    int bad;
    struct tc_config c = {TC_HERMES, NULL, NULL, false, true};
    json_t *tools = json_loads("[{\"type\":\"function\",\"function\":{\"name\":\"a\"}},{\"type\":\"function\","
                               "\"function\":{\"name\":\"b\",\"parameters\":{\"type\":\"object\",\"properties\":{\"x\":"
                               "{\"type\":\"string\",\"contentEncoding\":\"base64\"}}}}}]", 0, NULL);
    CHECK(tc_forced_gbnf(&c, tools, NULL, true, &bad, &e) == NULL && bad == 1 && strstr(e.msg, "contentEncoding"));
    char *ok = tc_forced_gbnf(&c, tools, "a", true, &bad, &e); /* only the named tool's schema matters */
    CHECK(ok != NULL);
    free(ok);
    c.fmt = TC_GLM45;
    CHECK(!tc_forcible(TC_GLM45) && !tc_forcible(TC_HARMONY) && !tc_forcible(TC_QWEN3_CODER));
    CHECK(tc_forced_gbnf(&c, tools, NULL, true, &bad, &e) == NULL && bad == -1 && strstr(e.msg, "glm45"));
    json_decref(tools);
    const char *m[8];
    c = (struct tc_config){TC_KIMI_K2, "<think>", "</think>", false, true};
    CHECK(tc_forced_markers(&c, m) == 7 && !strcmp(m[2], "<|tool_call_begin|>"));
}

int main(void)
{
    struct err e;
    tok = test_vocab_load(&e);
    if (!tok) {
        fprintf(stderr, "no vocabulary: %s\n", e.msg);
        return 1;
    }
    gv = grammar_vocab_new(tok, tok_n_vocab(tok), &e);
    RUN(samples_accepted_and_parsed);
    RUN(parallel_calls);
    RUN(reasoning_first);
    RUN(random_walks_parse_back);
    RUN(auto_calls);
    RUN(errors);
    grammar_vocab_free(gv);
    tok_free(tok);
    TEST_END();
}
