/* server/openai: request validation (each malformed body gives 400 and
 * names its parameter) and the response builders (parsed back and checked). */
#include "server/openai.h"
#include "test.h"

#include <jansson.h>

struct bad_case {
    enum oai_kind kind;
    const char *body;
    const char *param; /* expected error.param ("" = null) */
};

#define CHAT_PRE "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],"
#define CMPL_PRE "{\"model\":\"m\",\"prompt\":\"hi\","

static const struct bad_case bad[] = {
    {OAI_CHAT, "", ""},
    {OAI_CHAT, "{", ""},
    {OAI_CHAT, "nul", ""},
    {OAI_CHAT, "[1,2]", ""},
    {OAI_CHAT, "\"str\"", ""},
    {OAI_CHAT, "{\"model\":\"m\",\"messages\":[]} trailing", ""},
    {OAI_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", "model"},
    {OAI_CHAT, "{\"model\":5,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", "model"},
    {OAI_CHAT, "{\"model\":\"\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", "model"},
    {OAI_CHAT, "{\"model\":\"m\"}", "messages"},
    {OAI_CHAT, "{\"model\":\"m\",\"messages\":{}}", "messages"},
    {OAI_CHAT, "{\"model\":\"m\",\"messages\":[]}", "messages"},
    {OAI_CHAT, "{\"model\":\"m\",\"messages\":[5]}", "messages[0]"},
    {OAI_CHAT, "{\"model\":\"m\",\"messages\":[{\"content\":\"hi\"}]}", "messages[0].role"},
    {OAI_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":1,\"content\":\"hi\"}]}", "messages[0].role"},
    {OAI_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"robot\",\"content\":\"hi\"}]}", "messages[0].role"},
    {OAI_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"a\"},{\"role\":\"user\"}]}",
     "messages[1].content"},
    {OAI_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":7}]}", "messages[0].content"},
    {OAI_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[3]}]}", "messages[0].content[0]"},
    {OAI_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\"}]}]}",
     "messages[0].content[0].type"},
    {OAI_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"text\":\"x\"}]}]}",
     "messages[0].content[0].type"},
    {OAI_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":1}]}]}",
     "messages[0].content[0].text"},
    {OAI_CHAT, CHAT_PRE "\"max_tokens\":\"10\"}", "max_tokens"},
    {OAI_CHAT, CHAT_PRE "\"max_tokens\":0}", "max_tokens"},
    {OAI_CHAT, CHAT_PRE "\"max_tokens\":-5}", "max_tokens"},
    {OAI_CHAT, CHAT_PRE "\"max_tokens\":1.5}", "max_tokens"},
    {OAI_CHAT, CHAT_PRE "\"max_completion_tokens\":0}", "max_completion_tokens"},
    {OAI_CHAT, CHAT_PRE "\"temperature\":\"hot\"}", "temperature"},
    {OAI_CHAT, CHAT_PRE "\"temperature\":2.5}", "temperature"},
    {OAI_CHAT, CHAT_PRE "\"temperature\":-0.1}", "temperature"},
    {OAI_CHAT, CHAT_PRE "\"temperature\":1e400}", ""},
    {OAI_CHAT, CHAT_PRE "\"top_p\":0}", "top_p"},
    {OAI_CHAT, CHAT_PRE "\"top_p\":1.01}", "top_p"},
    {OAI_CHAT, CHAT_PRE "\"top_p\":true}", "top_p"},
    {OAI_CHAT, CHAT_PRE "\"stop\":5}", "stop"},
    {OAI_CHAT, CHAT_PRE "\"stop\":[\"a\",\"b\",\"c\",\"d\",\"e\"]}", "stop"},
    {OAI_CHAT, CHAT_PRE "\"stop\":[\"a\",3]}", "stop[1]"},
    {OAI_CHAT, CHAT_PRE "\"seed\":\"1\"}", "seed"},
    {OAI_CHAT, CHAT_PRE "\"seed\":1.5}", "seed"},
    {OAI_CHAT, CHAT_PRE "\"presence_penalty\":3}", "presence_penalty"},
    {OAI_CHAT, CHAT_PRE "\"frequency_penalty\":-2.01}", "frequency_penalty"},
    {OAI_CHAT, CHAT_PRE "\"frequency_penalty\":[]}", "frequency_penalty"},
    {OAI_CHAT, CHAT_PRE "\"logit_bias\":[]}", "logit_bias"},
    {OAI_CHAT, CHAT_PRE "\"logit_bias\":{\"abc\":1}}", "logit_bias"},
    {OAI_CHAT, CHAT_PRE "\"logit_bias\":{\"-1\":1}}", "logit_bias"},
    {OAI_CHAT, CHAT_PRE "\"logit_bias\":{\"12x\":1}}", "logit_bias"},
    {OAI_CHAT, CHAT_PRE "\"logit_bias\":{\"\":1}}", "logit_bias"},
    {OAI_CHAT, CHAT_PRE "\"logit_bias\":{\"99999999999\":1}}", "logit_bias"},
    {OAI_CHAT, CHAT_PRE "\"logit_bias\":{\"5\":101}}", "logit_bias"},
    {OAI_CHAT, CHAT_PRE "\"logit_bias\":{\"5\":\"1\"}}", "logit_bias"},
    {OAI_CHAT, CHAT_PRE "\"logprobs\":1}", "logprobs"},
    {OAI_CHAT, CHAT_PRE "\"top_logprobs\":3}", "top_logprobs"},
    {OAI_CHAT, CHAT_PRE "\"logprobs\":false,\"top_logprobs\":3}", "top_logprobs"},
    {OAI_CHAT, CHAT_PRE "\"logprobs\":true,\"top_logprobs\":21}", "top_logprobs"},
    {OAI_CHAT, CHAT_PRE "\"logprobs\":true,\"top_logprobs\":-1}", "top_logprobs"},
    {OAI_CHAT, CHAT_PRE "\"user\":42}", "user"},
    {OAI_CHAT, CHAT_PRE "\"stream\":\"yes\"}", "stream"},
    {OAI_CHAT, CHAT_PRE "\"stream\":true,\"stream_options\":5}", "stream_options"},
    {OAI_CHAT, CHAT_PRE "\"stream\":true,\"stream_options\":{\"include_usage\":1}}", "stream_options.include_usage"},
    {OAI_CHAT, CHAT_PRE "\"stream_options\":{\"include_usage\":true}}", "stream_options"},
    {OAI_CHAT, CHAT_PRE "\"n\":2}", "n"},
    {OAI_CHAT, CHAT_PRE "\"n\":0}", "n"},
    {OAI_CHAT, CHAT_PRE "\"n\":\"1\"}", "n"},
    {OAI_CHAT, CHAT_PRE "\"tools\":{}}", "tools"},
    {OAI_CHAT, CHAT_PRE "\"tools\":[{\"type\":\"retrieval\"}]}", "tools[0].type"},
    {OAI_CHAT, CHAT_PRE "\"tools\":[{\"type\":\"function\"}]}", "tools[0].function"},
    {OAI_CHAT, CHAT_PRE "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"a b\"}}]}", "tools[0].function.name"},
    {OAI_CHAT, CHAT_PRE "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\",\"parameters\":[]}}]}",
     "tools[0].function.parameters"},
    {OAI_CHAT, CHAT_PRE "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\"}}],\"tool_choice\":\"sometimes\"}", "tool_choice"},
    {OAI_CHAT, CHAT_PRE "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\"}}],\"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":\"g\"}}}", "tool_choice"},
    {OAI_CHAT, CHAT_PRE "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\"}}],\"tool_choice\":5}", "tool_choice"},
    {OAI_CHAT, CHAT_PRE "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\"}}],\"parallel_tool_calls\":\"yes\"}", "parallel_tool_calls"},
    {OAI_CHAT, CHAT_PRE "\"chat_template_kwargs\":[1]}", "chat_template_kwargs"},
    {OAI_CHAT, CHAT_PRE "\"chat_template_kwargs\":{\"messages\":[]}}", "chat_template_kwargs"},
    {OAI_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"c\","
               "\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"{oops\"}}]}]}",
     "messages[0].tool_calls[0].function.arguments"},
    {OAI_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"c\"}]}]}",
     "messages[0].tool_calls[0]"},
    {OAI_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\",\"tool_calls\":[]}]}",
     "messages[0].tool_calls"},
    {OAI_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"tool\",\"tool_call_id\":\"c\"}]}", "messages[0].content"},
    {OAI_CHAT, CHAT_PRE "\"functions\":[{\"name\":\"f\"}]}", "functions"},
    {OAI_CHAT, CHAT_PRE "\"tool_choice\":\"required\"}", "tool_choice"},
    {OAI_CHAT, CHAT_PRE "\"response_format\":{\"type\":\"xml\"}}", "response_format"},
    {OAI_CHAT, CHAT_PRE "\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"schema\":"
                        "{\"type\":\"string\",\"minProperties\":1}}}}", "response_format"},
    {OAI_CHAT, CHAT_PRE "\"grammar\":7}", "grammar"},
    {OAI_CHAT, CHAT_PRE "\"grammar\":\"root ::= \\\"a\\\"\",\"response_format\":{\"type\":\"json_object\"}}", "grammar"},
    {OAI_CHAT, CHAT_PRE "\"response_format\":\"json\"}", "response_format"},
    {OAI_COMPLETION, CMPL_PRE "\"response_format\":{\"type\":\"json_schema\"}}", "response_format"},
    {OAI_COMPLETION, "{\"model\":\"m\"}", "prompt"},
    {OAI_COMPLETION, "{\"model\":\"m\",\"prompt\":5}", "prompt"},
    {OAI_COMPLETION, "{\"model\":\"m\",\"prompt\":[]}", "prompt"},
    {OAI_COMPLETION, "{\"model\":\"m\",\"prompt\":[\"a\",\"b\"]}", "prompt"},
    {OAI_COMPLETION, "{\"model\":\"m\",\"prompt\":[1,2,3]}", "prompt"},
    {OAI_COMPLETION, "{\"model\":\"m\",\"prompt\":[[1]]}", "prompt"},
    {OAI_COMPLETION, "{\"prompt\":\"x\"}", "model"},
    {OAI_COMPLETION, CMPL_PRE "\"echo\":true}", "echo"},
    {OAI_COMPLETION, CMPL_PRE "\"echo\":\"no\"}", "echo"},
    {OAI_COMPLETION, CMPL_PRE "\"logprobs\":true}", "logprobs"},
    {OAI_COMPLETION, CMPL_PRE "\"logprobs\":21}", "logprobs"},
    {OAI_COMPLETION, CMPL_PRE "\"best_of\":3}", "best_of"},
    {OAI_COMPLETION, CMPL_PRE "\"suffix\":\"tail\"}", "suffix"},
    {OAI_COMPLETION, CMPL_PRE "\"n\":4}", "n"},
    {OAI_COMPLETION, CMPL_PRE "\"max_tokens\":null,\"temperature\":9}", "temperature"},
};

TEST(malformed_bodies)
{
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        struct oai_request r;
        struct oai_error e;
        memset(&e, 0, sizeof e);
        int rc = oai_parse_request(bad[i].kind, bad[i].body, strlen(bad[i].body), &r, &e);
        CHECKF(rc == -1, "case %zu accepted: %s", i, bad[i].body);
        if (rc != -1) {
            oai_request_release(&r);
            continue;
        }
        CHECKF(e.status == 400, "case %zu status %d", i, e.status);
        CHECKF(!strcmp(e.param, bad[i].param), "case %zu: param '%s', expected '%s' (%s)", i, e.param, bad[i].param,
               e.message);
        CHECKF(!strcmp(e.type, "invalid_request_error"), "case %zu type %s", i, e.type);
        CHECKF(e.message[0] != 0, "case %zu: empty message", i);
        CHECK(r.model == NULL && r.msgs == NULL); /* nothing handed out on failure */
    }
}

TEST(body_with_nul_bytes_and_binary)
{
    const char body[] = "{\"model\":\"m\",\0\"messages\":[]}";
    struct oai_request r;
    struct oai_error e;
    CHECK(oai_parse_request(OAI_CHAT, body, sizeof body - 1, &r, &e) == -1 && e.status == 400);
    const char bin[] = "\xff\xfe{\"model\":\"m\"}";
    CHECK(oai_parse_request(OAI_CHAT, bin, sizeof bin - 1, &r, &e) == -1 && e.status == 400);
    const char esc_nul[] = "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"a\\u0000b\"}]}";
    CHECK(oai_parse_request(OAI_CHAT, esc_nul, sizeof esc_nul - 1, &r, &e) == -1 && e.status == 400);
    CHECK(oai_parse_request(OAI_CHAT, NULL, 0, &r, &e) == -1 && e.status == 400);
}

TEST(full_chat_request)
{
    const char *body = "{\"model\":\"tiny\",\"messages\":[{\"role\":\"developer\",\"content\":\"be brief\"},"
                       "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"a\"},{\"type\":\"text\","
                       "\"text\":\"b\"}],\"name\":\"x\"},{\"role\":\"assistant\",\"content\":null}],"
                       "\"max_tokens\":5,\"max_completion_tokens\":7,\"temperature\":0,\"top_p\":0.5,"
                       "\"stop\":[\"x\",\"\",\"yz\"],\"seed\":-3,\"presence_penalty\":1.5,\"frequency_penalty\":-2,"
                       "\"logit_bias\":{\"17\":-100,\"3\":2.5},\"logprobs\":true,\"top_logprobs\":4,\"user\":\"u\","
                       "\"stream\":true,\"stream_options\":{\"include_usage\":true},\"n\":1,\"unknown\":{\"a\":[1]}}";
    struct oai_request r;
    struct oai_error e;
    int rc = oai_parse_request(OAI_CHAT, body, strlen(body), &r, &e);
    CHECKF(rc == 0, "%s", e.message);
    if (rc)
        return;
    CHECK(r.kind == OAI_CHAT && !strcmp(r.model, "tiny") && r.n_msgs == 3);
    CHECK(!strcmp(r.msgs[0].role, "system") && !strcmp(r.msgs[0].content, "be brief"));
    CHECK(!strcmp(r.msgs[1].role, "user") && !strcmp(r.msgs[1].content, "a\nb"));
    CHECK(!strcmp(r.msgs[2].role, "assistant") && !strcmp(r.msgs[2].content, ""));
    CHECK(r.max_tokens == 7 && r.temperature == 0 && r.top_p == 0.5f);
    CHECK(r.n_stop == 2 && !strcmp(r.stop[0], "x") && !strcmp(r.stop[1], "yz"));
    CHECK(r.has_seed && r.seed == (uint64_t)-3);
    CHECK(r.presence_penalty == 1.5f && r.frequency_penalty == -2.0f);
    CHECK(r.n_bias == 2);
    int seen = 0;
    for (int i = 0; i < r.n_bias; i++)
        seen |= (r.bias[i].token == 17 && r.bias[i].bias == -100) ? 1 : (r.bias[i].token == 3 && r.bias[i].bias == 2.5f) ? 2 : 0;
    CHECK(seen == 3);
    CHECK(r.logprobs && r.top_logprobs == 4 && r.user && !strcmp(r.user, "u"));
    CHECK(r.stream && r.include_usage);
    oai_request_release(&r);
}

TEST(output_shaping_defaults_accepted)
{
    /* the values that ask for nothing different are accepted */
    const char *body = CHAT_PRE "\"tools\":[],\"tool_choice\":\"auto\",\"functions\":null,"
                                "\"response_format\":{\"type\":\"text\"},\"modalities\":[\"text\"],\"audio\":null}";
    struct oai_request r;
    struct oai_error e;
    int rc = oai_parse_request(OAI_CHAT, body, strlen(body), &r, &e);
    CHECKF(rc == 0, "%s", e.message);
    if (rc == 0)
        oai_request_release(&r);
}

TEST(defaults_and_completion)
{
    const char *body = "{\"model\":\"m\",\"prompt\":[\"Once upon\"],\"logprobs\":2,\"stop\":\"\\n\",\"echo\":false,"
                       "\"temperature\":null}";
    struct oai_request r;
    struct oai_error e;
    int rc = oai_parse_request(OAI_COMPLETION, body, strlen(body), &r, &e);
    CHECKF(rc == 0, "%s", e.message);
    if (rc)
        return;
    CHECK(!strcmp(r.prompt, "Once upon") && r.max_tokens == -1 && r.temperature == 1 && r.top_p == 1);
    CHECK(r.logprobs && r.top_logprobs == 2 && r.n_stop == 1 && !strcmp(r.stop[0], "\n"));
    CHECK(!r.stream && !r.has_seed && r.n_bias == 0);
    oai_request_release(&r);
}

static json_t *parse(char *s)
{
    json_error_t je;
    json_t *v = s ? json_loads(s, 0, &je) : NULL;
    free(s);
    return v;
}

TEST(builders)
{
    struct oai_meta m = {OAI_CHAT, "chatcmpl-1", 1700000000, "tiny\xff", NULL};
    struct oai_usage u = {.prompt_tokens = 10, .completion_tokens = 4, .cached_tokens = 8};
    json_t *v = parse(oai_build_response(&m, "hi \xe2\x82", 5, "length", NULL, &u));
    CHECK(v != NULL);
    if (v) {
        CHECK(!strcmp(json_string_value(json_object_get(v, "object")), "chat.completion"));
        CHECK(!strcmp(json_string_value(json_object_get(v, "model")), "tiny\xef\xbf\xbd"));
        json_t *c = json_array_get(json_object_get(v, "choices"), 0);
        CHECK(!strcmp(json_string_value(json_object_get(c, "finish_reason")), "length"));
        json_t *msg = json_object_get(c, "message");
        CHECK(!strcmp(json_string_value(json_object_get(msg, "role")), "assistant"));
        CHECK(!strcmp(json_string_value(json_object_get(msg, "content")), "hi \xef\xbf\xbd\xef\xbf\xbd"));
        json_t *us = json_object_get(v, "usage");
        CHECK(json_integer_value(json_object_get(us, "total_tokens")) == 14);
        CHECK(json_integer_value(json_object_get(json_object_get(us, "prompt_tokens_details"), "cached_tokens")) == 8);
        json_decref(v);
    }
    /* chunks */
    v = parse(oai_build_chunk(&m, true, "", 0, NULL, NULL));
    CHECK(v != NULL);
    if (v) {
        json_t *c = json_array_get(json_object_get(v, "choices"), 0);
        CHECK(!strcmp(json_string_value(json_object_get(v, "object")), "chat.completion.chunk"));
        CHECK(json_is_null(json_object_get(c, "finish_reason")));
        CHECK(!strcmp(json_string_value(json_object_get(json_object_get(c, "delta"), "role")), "assistant"));
        json_decref(v);
    }
    v = parse(oai_build_chunk(&m, false, NULL, 0, "stop", NULL));
    if (v) {
        json_t *c = json_array_get(json_object_get(v, "choices"), 0);
        CHECK(json_object_size(json_object_get(c, "delta")) == 0);
        CHECK(!strcmp(json_string_value(json_object_get(c, "finish_reason")), "stop"));
        json_decref(v);
    } else
        CHECK(0);
    v = parse(oai_build_usage_chunk(&m, &u));
    if (v) {
        CHECK(json_array_size(json_object_get(v, "choices")) == 0);
        CHECK(json_integer_value(json_object_get(json_object_get(v, "usage"), "prompt_tokens")) == 10);
        json_decref(v);
    } else
        CHECK(0);
    /* logprobs, chat and completion shapes */
    struct oai_logprobs *lp = oai_logprobs_new(OAI_CHAT);
    struct oai_token_lp t = {.bytes = "\xe2", .n_bytes = 1, .logprob = -1.0f / 0.0f, .n_top = 1};
    t.top[0].bytes = "a", t.top[0].n_bytes = 1, t.top[0].logprob = -0.5f;
    CHECK(lp && oai_logprobs_add(lp, &t, 0) == 0 && oai_logprobs_count(lp) == 1);
    v = parse(oai_build_chunk(&m, false, "x", 1, NULL, lp));
    if (v) {
        json_t *ent = json_array_get(json_object_get(json_object_get(json_array_get(json_object_get(v, "choices"), 0),
                                                                     "logprobs"), "content"), 0);
        CHECK(json_real_value(json_object_get(ent, "logprob")) == -9999.0);
        CHECK(json_integer_value(json_array_get(json_object_get(ent, "bytes"), 0)) == 0xe2);
        CHECK(json_array_size(json_object_get(ent, "top_logprobs")) == 1);
        json_decref(v);
    } else
        CHECK(0);
    oai_logprobs_clear(lp);
    CHECK(oai_logprobs_count(lp) == 0);
    oai_logprobs_free(lp);
    m.kind = OAI_COMPLETION;
    lp = oai_logprobs_new(OAI_COMPLETION);
    CHECK(lp && oai_logprobs_add(lp, &t, 3) == 0);
    v = parse(oai_build_response(&m, "abc", 3, "stop", lp, &u));
    if (v) {
        json_t *c = json_array_get(json_object_get(v, "choices"), 0);
        CHECK(!strcmp(json_string_value(json_object_get(v, "object")), "text_completion"));
        CHECK(!strcmp(json_string_value(json_object_get(c, "text")), "abc"));
        json_t *l = json_object_get(c, "logprobs");
        CHECK(json_integer_value(json_array_get(json_object_get(l, "text_offset"), 0)) == 3);
        CHECK(json_array_size(json_object_get(l, "tokens")) == 1);
        json_decref(v);
    } else
        CHECK(0);
    oai_logprobs_free(lp);
    /* errors and models */
    struct oai_error e;
    oai_err(&e, 404, "invalid_request_error", "model", "model_not_found", "The model '%s' does not exist", "x");
    v = parse(oai_build_error(&e));
    if (v) {
        json_t *er = json_object_get(v, "error");
        CHECK(!strcmp(json_string_value(json_object_get(er, "param")), "model"));
        CHECK(!strcmp(json_string_value(json_object_get(er, "code")), "model_not_found"));
        CHECK(strstr(json_string_value(json_object_get(er, "message")), "'x'") != NULL);
        json_decref(v);
    } else
        CHECK(0);
    oai_err(&e, 400, NULL, NULL, NULL, "bad");
    v = parse(oai_build_error(&e));
    if (v) {
        json_t *er = json_object_get(v, "error");
        CHECK(json_is_null(json_object_get(er, "param")) && json_is_null(json_object_get(er, "code")));
        json_decref(v);
    } else
        CHECK(0);
    const struct oai_model_desc ms[] = {{"a", "chat"}, {"b", "embedding"}};
    v = parse(oai_build_models(ms, 2, 5));
    if (v) {
        CHECK(json_array_size(json_object_get(v, "data")) == 2);
        CHECK(!strcmp(json_string_value(json_object_get(json_array_get(json_object_get(v, "data"), 1), "id")), "b"));
        CHECK(!strcmp(json_string_value(json_object_get(json_array_get(json_object_get(v, "data"), 1), "kind")),
                      "embedding"));
        json_decref(v);
    } else
        CHECK(0);
}

int main(void)
{
    RUN(malformed_bodies);
    RUN(body_with_nul_bytes_and_binary);
    RUN(full_chat_request);
    RUN(output_shaping_defaults_accepted);
    RUN(defaults_and_completion);
    RUN(builders);
    TEST_END();
}
