/*
 * server tools in: a chat request with tools, tool_choice and tool
 * messages parses into the template variables; rendered through the
 * tokenizer (tok_chat_encode_json, what `maas serve` does) it gives exactly
 * what the Jinja engine renders for the shared case with the same content
 * (tmpl_render over the case, what `maas template` does) — for several
 * shared templates, with the OpenAI form (arguments as a JSON string) on
 * one side and the template form (an object) on the other. Skips the
 * template part without ../shared/testdata.
 */
#include "server/oai_tools.h"
#include "template/template.h"
#include "tokenizer/tokenizer.h"
#include "test.h"
#include "test_vocab.h"

#include <jansson.h>

static char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    struct sbuf b = SBUF_INIT;
    char buf[65536];
    size_t k;
    while ((k = fread(buf, 1, sizeof buf, f)) > 0)
        sbuf_add(&b, buf, k);
    fclose(f);
    return sbuf_detach(&b, n);
}

TEST(parse_tools_request)
{
    const char *body =
        "{\"model\":\"m\",\"messages\":[{\"role\":\"developer\",\"content\":[{\"type\":\"text\",\"text\":\"Be brief.\"}]},"
        "{\"role\":\"user\",\"content\":\"Weather?\"},{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":"
        "\"c1\",\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"arguments\":\"{\\\"city\\\": \\\"Paris\\\"}\"}}]},"
        "{\"role\":\"tool\",\"tool_call_id\":\"c1\",\"content\":\"18C\"}],\"tools\":[{\"type\":\"function\",\"function\":"
        "{\"name\":\"get_weather\",\"parameters\":{\"type\":\"object\"}}}],\"tool_choice\":\"auto\","
        "\"parallel_tool_calls\":false,\"chat_template_kwargs\":{\"enable_thinking\":false}}";
    struct oai_request r;
    struct oai_error e;
    int rc = oai_parse_request(OAI_CHAT, body, strlen(body), &r, &e);
    CHECKF(rc == 0, "%s", e.message);
    if (rc)
        return;
    CHECK(r.n_tools == 1 && r.tool_choice == OAI_TOOL_AUTO && !r.parallel_tool_calls && r.tool_msgs);
    CHECK(r.n_msgs == 4 && !strcmp(r.msgs[3].role, "tool") && !strcmp(r.msgs[0].role, "system"));
    json_t *v = json_loads(r.chat_vars, 0, NULL);
    CHECK(v != NULL);
    json_t *m2 = json_array_get(json_object_get(v, "messages"), 2);
    json_t *args = json_object_get(json_object_get(json_array_get(json_object_get(m2, "tool_calls"), 0), "function"),
                                   "arguments");
    CHECK(json_is_object(args) && !strcmp(json_string_value(json_object_get(args, "city")), "Paris"));
    CHECK(!strcmp(json_string_value(json_object_get(json_array_get(json_object_get(v, "messages"), 0), "content")),
                  "Be brief."));
    CHECK(!strcmp(json_string_value(json_object_get(json_array_get(json_object_get(v, "messages"), 3), "tool_call_id")),
                  "c1"));
    CHECK(json_is_false(json_object_get(v, "enable_thinking")) && json_array_size(json_object_get(v, "tools")) == 1);
    CHECK(json_is_false(json_object_get(v, "parallel_tool_calls")));
    json_decref(v);
    oai_request_release(&r);
}

TEST(forced_calls_parsed)
{
    const char *body = "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":[{\"type\":"
                       "\"function\",\"function\":{\"name\":\"f\"}}],\"tool_choice\":\"required\"}";
    struct oai_request r;
    struct oai_error e;
    CHECK(oai_parse_request(OAI_CHAT, body, strlen(body), &r, &e) == 0);
    CHECK(r.tool_choice == OAI_TOOL_REQUIRED && oai_tools_forced(&r));
    oai_request_release(&r);
    struct oai_request q = {0};
    q.tool_choice = OAI_TOOL_NONE;
    q.n_tools = 1;
    CHECK(!oai_tools_forced(&q));
}

/* The shared case (template form) as an OpenAI request (arguments as JSON strings). */
static char *case_as_request(json_t *c)
{
    json_t *req = json_pack("{s:s,s:O}", "model", "m", "messages", json_object_get(c, "messages"));
    json_t *ms = json_object_get(req, "messages");
    json_t *copy = json_deep_copy(ms);
    json_object_set_new(req, "messages", copy);
    for (size_t i = 0; i < json_array_size(copy); i++) {
        json_t *tcs = json_object_get(json_array_get(copy, i), "tool_calls");
        for (size_t j = 0; j < json_array_size(tcs); j++) {
            json_t *fn = json_object_get(json_array_get(tcs, j), "function");
            json_t *a = json_object_get(fn, "arguments");
            if (json_is_object(a)) {
                char *as = json_dumps(a, JSON_COMPACT);
                json_object_set_new(fn, "arguments", json_string(as));
                free(as);
            }
        }
    }
    if (json_object_get(c, "tools"))
        json_object_set(req, "tools", json_object_get(c, "tools"));
    char *s = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    return s;
}

static char *token_text(const struct tokenizer *t, int32_t id)
{
    size_t n = 0;
    const char *p = id >= 0 ? tok_piece(t, id, true, &n) : "";
    return strndup(p ? p : "", n);
}

/* The engine's rendering of the case with bos/eos set to the vocabulary's. */
static char *reference(const char *src, json_t *c, const struct tokenizer *t)
{
    struct err e;
    struct tmpl *tm = tmpl_parse(src, strlen(src), &e);
    if (!tm)
        return NULL;
    json_t *v = json_pack("{s:O,s:b}", "messages", json_object_get(c, "messages"), "add_generation_prompt", 1);
    char *bos = token_text(t, tok_bos(t)), *eos = token_text(t, tok_eos(t));
    json_object_set_new(v, "bos_token", json_string(bos));
    json_object_set_new(v, "eos_token", json_string(eos));
    free(bos);
    free(eos);
    if (json_object_get(c, "tools"))
        json_object_set(v, "tools", json_object_get(c, "tools"));
    char *vars = json_dumps(v, JSON_COMPACT);
    char *out = tmpl_render(tm, vars, strlen(vars), NULL, NULL, &e);
    free(vars);
    json_decref(v);
    tmpl_free(tm);
    return out;
}

static void render_both(const char *dir, struct tokenizer *t, const char *tname, const char *cname)
{
    char p[700];
    size_t n;
    snprintf(p, sizeof p, "%s/templates/%s", dir, tname);
    char *src = slurp(p, &n);
    snprintf(p, sizeof p, "%s/chat/%s", dir, cname);
    json_t *c = json_load_file(p, 0, NULL);
    CHECKF(src && c, "%s or %s missing", tname, cname);
    if (!src || !c) {
        free(src);
        json_decref(c);
        return;
    }
    struct err e;
    CHECKF(tok_chat_set_template(t, src, n, &e) == 0, "%s: %s", tname, e.msg);
    char *body = case_as_request(c);
    struct oai_request r;
    struct oai_error oe;
    int rc = oai_parse_request(OAI_CHAT, body, strlen(body), &r, &oe);
    CHECKF(rc == 0, "%s", oe.message);
    char *want = reference(src, c, t), *got = NULL;
    if (rc == 0) {
        struct tok_ids ids;
        tok_ids_init(&ids);
        const char *raw[8] = {0};
        for (int i = 0; i < r.n_msgs && i < 8; i++)
            raw[i] = r.msgs[i].content;
        CHECKF(tok_chat_encode_json(t, r.chat_vars, strlen(r.chat_vars), r.n_tools > 0, raw,
                                    (size_t)(r.n_msgs < 8 ? r.n_msgs : 8), true, &ids, &got, NULL, &e) == 0,
               "%s: %s", tname, e.msg);
        CHECK(ids.n > 0);
        tok_ids_release(&ids);
        oai_request_release(&r);
    }
    CHECKF(want && got && !strcmp(want, got), "%s with %s: server rendering differs:\n--- engine\n%s\n--- server\n%s",
           tname, cname, want ? want : "(null)", got ? got : "(null)");
    free(want);
    free(got);
    free(body);
    free(src);
    json_decref(c);
}

TEST(request_renders_as_the_template)
{
    const char *dir = test_shared_dir();
    if (!dir)
        SKIP("../shared/testdata not found (set MAAS_SHARED_TESTDATA)");
    struct err e;
    struct tokenizer *t = test_vocab_load(&e);
    CHECKF(t, "%s", e.msg);
    if (!t)
        return;
    static const char *const tmpls[] = {"Qwen-Qwen2.5-7B-Instruct.jinja", "Qwen-Qwen3-0.6B.jinja",
                                        "meta-llama-Llama-3.1-8B-Instruct.jinja",
                                        "NousResearch-Hermes-2-Pro-Llama-3-8B-tool_use.jinja",
                                        "mistralai-Mistral-Nemo-Instruct-2407.jinja"};
    static const char *const cases[] = {"tools.json", "tool-round.json", "basic.json"};
    for (size_t i = 0; i < sizeof tmpls / sizeof *tmpls; i++)
        for (size_t k = 0; k < sizeof cases / sizeof *cases; k++)
            render_both(dir, t, tmpls[i], cases[k]);
    tok_free(t);
}

int main(void)
{
    RUN(parse_tools_request);
    RUN(forced_calls_parsed);
    RUN(request_renders_as_the_template);
    TEST_END();
}
