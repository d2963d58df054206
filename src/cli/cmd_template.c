/* maas template — renders a chat template with the Jinja engine, as the
 * server does, for checking a model's prompt format.
 *
 *   maas template (--model FILE | --template-file FILE.jinja) [--now YYYY-MM-DD] CASE.json
 *
 * CASE.json: {"messages": [...], "tools": [...]?, "add_generation_prompt":
 * true?, "bos_token": "..."?, "eos_token": "..."?, "kwargs": {...}?} —
 * kwargs are extra template variables (enable_thinking, ...); bos_token and
 * eos_token default to the vocabulary's with --model, else to "". --now
 * fixes the date strftime_now gives (09:30 UTC that day). Prints the
 * rendering exactly (no newline added) and exits 0, or prints the
 * template's error and exits 1 (2 for a usage or file error).
 */
#define _GNU_SOURCE /* timegm */
#include "cli/cli.h"
#include "cli/tools.h"
#include "template/template.h"
#include "tokenizer/tokenizer.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static void template_usage(FILE *out)
{
    fprintf(out, "usage: maas template (--model FILE | --template-file FILE.jinja) [--now YYYY-MM-DD] CASE.json\n"
                 "  renders the chat template over CASE.json ({\"messages\": [...], \"tools\", \"add_generation_prompt\",\n"
                 "  \"bos_token\", \"eos_token\", \"kwargs\"}) and prints it exactly; exits 1 on a template error\n"
                 "  --now D  the date strftime_now gives (default: today)\n");
}

/* The token's text as a JSON string, "" when the vocabulary has none. */
static json_t *token_json(const struct tokenizer *t, int32_t id)
{
    size_t n = 0;
    const char *s = t ? tok_token_text(t, id, &n) : NULL;
    return s ? json_stringn(s, n) : json_string("");
}

/* The template variables of a case, as JSON text (free it), or NULL when reported. */
static char *case_vars(const char *path, const struct tokenizer *t)
{
    json_error_t je;
    json_t *c = json_load_file(path, 0, &je);
    if (!c || !json_is_object(c) || !json_is_array(json_object_get(c, "messages"))) {
        fprintf(stderr, "maas template: %s: %s\n", path,
                c ? "not an object with a \"messages\" array" : je.text);
        json_decref(c);
        return NULL;
    }
    json_t *v = json_object();
    json_t *kw = json_object_get(c, "kwargs");
    if (json_is_object(kw))
        json_object_update(v, kw);
    json_object_set(v, "messages", json_object_get(c, "messages"));
    json_t *agp = json_object_get(c, "add_generation_prompt");
    json_object_set_new(v, "add_generation_prompt", agp ? json_incref(agp) : json_true());
    json_t *bos = json_object_get(c, "bos_token"), *eos = json_object_get(c, "eos_token");
    json_object_set_new(v, "bos_token", bos ? json_incref(bos) : token_json(t, t ? tok_bos(t) : -1));
    json_object_set_new(v, "eos_token", eos ? json_incref(eos) : token_json(t, t ? tok_eos(t) : -1));
    json_t *tools = json_object_get(c, "tools");
    if (tools && !json_is_null(tools))
        json_object_set(v, "tools", tools);
    char *s = json_dumps(v, JSON_COMPACT);
    json_decref(v);
    json_decref(c);
    return s;
}

/* --now YYYY-MM-DD as unix seconds at 09:30 UTC, or -1. */
static int64_t parse_day(const char *s)
{
    struct tm tm = {0};
    const char *end = s ? strptime(s, "%Y-%m-%d", &tm) : NULL;
    if (!end || *end)
        return -1;
    tm.tm_hour = 9;
    tm.tm_min = 30;
    return (int64_t)timegm(&tm);
}

/* The template source: the file's, or the model's tokenizer.chat_template. */
static char *template_source(const char *model, const char *file, struct tokenizer **tok, size_t *n)
{
    struct err e = {0};
    if (file) {
        char *s = NULL;
        if (tool_read_text(file, &s, n, &e) < 0)
            fprintf(stderr, "maas template: %s\n", e.msg);
        return s;
    }
    struct gguf_file *f = gguf_open(model, &e);
    *tok = f ? tok_load(f, &e) : NULL;
    gguf_close(f);
    if (!*tok) {
        fprintf(stderr, "maas template: %s\n", e.msg);
        return NULL;
    }
    const char *src = tok_chat_template_source(*tok);
    if (!src) {
        fprintf(stderr, "maas template: %s: the model has no tokenizer.chat_template\n", model);
        return NULL;
    }
    *n = strlen(src);
    return strdup(src);
}

int cli_chat_template_file(struct tokenizer *tok, const char **name, struct err *e)
{
    size_t n = *name ? strlen(*name) : 0;
    if (n < 6 || strcmp(*name + n - 6, ".jinja"))
        return 0;
    size_t len;
    char *src;
    if (tool_read_text(*name, &src, &len, e) < 0)
        return -1;
    int rc = tok_chat_set_template(tok, src, len, e);
    free(src);
    if (rc)
        return err_prefix(e, "%s", *name);
    *name = NULL;
    return 0;
}

/* With --model and a case that has tools: the file's tokenizer.chat_template.tool_use
 * when it has one the engine parses (as maas serve uses it), replacing *src. */
static void tool_use_source(const struct tokenizer *tok, const char *vars, char **src, size_t *n)
{
    json_t *v = tok && vars ? json_loads(vars, 0, NULL) : NULL;
    const char *tu = json_array_size(json_object_get(v, "tools")) ? tok_chat_template_for(tok, true) : NULL;
    json_decref(v);
    char *c = tu && tu != tok_chat_template_source(tok) ? strdup(tu) : NULL;
    if (!c)
        return;
    free(*src);
    *src = c;
    *n = strlen(c);
}

int cmd_template(int argc, char **argv)
{
    const char *model = NULL, *file = NULL, *now = NULL, *cas = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--model") && i + 1 < argc)
            model = argv[++i];
        else if (!strcmp(argv[i], "--template-file") && i + 1 < argc)
            file = argv[++i];
        else if (!strcmp(argv[i], "--now") && i + 1 < argc)
            now = argv[++i];
        else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help"))
            return template_usage(stdout), 0;
        else if (argv[i][0] != '-' && !cas)
            cas = argv[i];
        else
            return template_usage(stderr), 2;
    }
    if (!cas || (!model == !file))
        return template_usage(stderr), 2;
    struct tmpl_opts o = {0};
    if (now && (o.now = parse_day(now)) < 0) {
        fprintf(stderr, "maas template: --now: '%s' is not a date YYYY-MM-DD\n", now);
        return 2;
    }
    struct tokenizer *tok = NULL;
    size_t sn = 0, on = 0;
    char *src = template_source(model, file, &tok, &sn), *vars = src ? case_vars(cas, tok) : NULL, *out = NULL;
    int rc = 2;
    tool_use_source(tok, vars, &src, &sn);
    if (vars) {
        struct err e = {0};
        struct tmpl *t = tmpl_parse(src, sn, &e);
        out = t ? tmpl_render(t, vars, strlen(vars), &o, &on, &e) : NULL;
        tmpl_free(t);
        if (out) {
            fwrite(out, 1, on, stdout);
            rc = 0;
        } else {
            fprintf(stderr, "maas template: %s: %s\n", file ? file : "tokenizer.chat_template", e.msg);
            rc = 1;
        }
    }
    free(out);
    free(vars);
    free(src);
    tok_free(tok);
    return rc;
}
