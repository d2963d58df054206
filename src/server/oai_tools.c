/*
 * oai_tools.c — tools, tool_choice, parallel_tool_calls and
 * chat_template_kwargs of a chat request, the messages as the template
 * sees them, and the tool_calls / reasoning_content of the response.
 */
#include "server/oai_tools.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BAD(param, ...) oai_err(e, 400, "invalid_request_error", (param), NULL, __VA_ARGS__)
#define OAI_MAX_TOOLS 128

static int nomem(struct oai_error *e)
{
    return oai_err(e, 500, "server_error", NULL, NULL, "Out of memory while parsing the request.");
}

static bool name_valid(const char *s, size_t n)
{
    if (n == 0 || n > 64)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '_' && s[i] != '-')
            return false;
    return true;
}

/* tools[i]: {"type":"function","function":{"name","description"?,"parameters"?}}. */
static int check_tool(json_t *t, size_t i, struct oai_error *e)
{
    char p[64];
    snprintf(p, sizeof p, "tools[%zu]", i);
    if (!json_is_object(t))
        return BAD(p, "Invalid type for '%s': expected an object, but got %s.", p, oai_json_type_name(t));
    const char *type = json_string_value(json_object_get(t, "type"));
    snprintf(p, sizeof p, "tools[%zu].type", i);
    if (!type || strcmp(type, "function"))
        return BAD(p, "Invalid value for '%s': expected 'function'.", p);
    json_t *fn = json_object_get(t, "function");
    snprintf(p, sizeof p, "tools[%zu].function", i);
    if (!json_is_object(fn))
        return BAD(p, "Missing or invalid '%s': expected an object.", p);
    json_t *name = json_object_get(fn, "name");
    snprintf(p, sizeof p, "tools[%zu].function.name", i);
    if (!json_is_string(name) || !name_valid(json_string_value(name), json_string_length(name)))
        return BAD(p, "Invalid '%s': expected a string of 1 to 64 letters, digits, '_' or '-'.", p);
    json_t *d = json_object_get(fn, "description");
    snprintf(p, sizeof p, "tools[%zu].function.description", i);
    if (d && !json_is_null(d) && !json_is_string(d))
        return BAD(p, "Invalid type for '%s': expected a string, but got %s.", p, oai_json_type_name(d));
    json_t *par = json_object_get(fn, "parameters");
    snprintf(p, sizeof p, "tools[%zu].function.parameters", i);
    if (par && !json_is_null(par) && !json_is_object(par))
        return BAD(p, "Invalid type for '%s': expected a JSON Schema object, but got %s.", p, oai_json_type_name(par));
    return 0;
}

/* tools: *out the array (NULL when absent or null). */
static int tools_list(json_t *root, struct oai_request *r, json_t **out, struct oai_error *e)
{
    json_t *tools = json_object_get(root, "tools");
    *out = NULL;
    if (!tools || json_is_null(tools))
        return 0;
    if (!json_is_array(tools))
        return BAD("tools", "Invalid type for 'tools': expected an array, but got %s.", oai_json_type_name(tools));
    if (json_array_size(tools) > OAI_MAX_TOOLS)
        return BAD("tools", "Invalid 'tools': at most %d tools (got %zu).", OAI_MAX_TOOLS, json_array_size(tools));
    for (size_t i = 0; i < json_array_size(tools); i++)
        if (check_tool(json_array_get(tools, i), i, e) < 0)
            return -1;
    r->n_tools = (int)json_array_size(tools);
    *out = r->n_tools ? tools : NULL;
    return 0;
}

static bool tool_named(json_t *tools, const char *name)
{
    for (size_t i = 0; i < json_array_size(tools); i++) {
        json_t *fn = json_object_get(json_array_get(tools, i), "function");
        if (!strcmp(json_string_value(json_object_get(fn, "name")), name))
            return true;
    }
    return false;
}

/* tool_choice: "none" | "auto" | "required" | {"type":"function","function":{"name":N}} (N among tools). */
static int parse_tool_choice(json_t *tc, json_t *tools, struct oai_request *r, struct oai_error *e)
{
    r->tool_choice = OAI_TOOL_AUTO;
    if (!tc || json_is_null(tc))
        return 0;
    if (json_is_string(tc)) {
        const char *s = json_string_value(tc);
        if (!strcmp(s, "none"))
            r->tool_choice = OAI_TOOL_NONE;
        else if (!strcmp(s, "required"))
            r->tool_choice = OAI_TOOL_REQUIRED;
        else if (strcmp(s, "auto"))
            return BAD("tool_choice", "Invalid value for 'tool_choice': '%.40s' (expected 'none', 'auto', 'required' "
                                      "or an object naming a function).", s);
    } else if (json_is_object(tc)) {
        const char *type = json_string_value(json_object_get(tc, "type"));
        json_t *name = json_object_get(json_object_get(tc, "function"), "name");
        if (!type || strcmp(type, "function") || !json_is_string(name))
            return BAD("tool_choice", "Invalid 'tool_choice': expected {\"type\": \"function\", \"function\": "
                                      "{\"name\": ...}}.");
        if (!tools || !tool_named(tools, json_string_value(name)))
            return BAD("tool_choice", "Invalid 'tool_choice': function '%.64s' is not among 'tools'.",
                       json_string_value(name));
        r->tool_choice = OAI_TOOL_NAMED;
        if (!(r->tool_choice_name = strdup(json_string_value(name))))
            return nomem(e);
    } else {
        return BAD("tool_choice", "Invalid type for 'tool_choice': expected a string or an object, but got %s.",
                   oai_json_type_name(tc));
    }
    if (r->tool_choice != OAI_TOOL_NONE && r->tool_choice != OAI_TOOL_AUTO && !tools)
        return BAD("tool_choice", "Invalid 'tool_choice': it demands a tool call but 'tools' is empty.");
    return 0;
}

/* One assistant tool_calls[j] for the template: function.arguments as an object. */
static json_t *tool_call_for_template(json_t *tc, size_t i, size_t j, struct oai_error *e)
{
    char p[96];
    snprintf(p, sizeof p, "messages[%zu].tool_calls[%zu]", i, j);
    json_t *fn = json_object_get(tc, "function");
    json_t *name = json_object_get(fn, "name");
    if (!json_is_object(tc) || !json_is_object(fn) || !json_is_string(name))
        return BAD(p, "Invalid '%s': expected {\"id\", \"type\": \"function\", \"function\": {\"name\", "
                      "\"arguments\"}}.", p), NULL;
    json_t *args = json_object_get(fn, "arguments"), *obj;
    if (json_is_string(args)) {
        obj = json_loadb(json_string_value(args), json_string_length(args), 0, NULL);
        if (!json_is_object(obj)) {
            json_decref(obj);
            snprintf(p, sizeof p, "messages[%zu].tool_calls[%zu].function.arguments", i, j);
            return BAD(p, "Invalid '%s': expected a JSON object encoded as a string.", p), NULL;
        }
    } else if (json_is_object(args) || !args || json_is_null(args)) {
        obj = args && !json_is_null(args) ? json_incref(args) : json_object();
    } else {
        snprintf(p, sizeof p, "messages[%zu].tool_calls[%zu].function.arguments", i, j);
        return BAD(p, "Invalid type for '%s': expected a string, but got %s.", p, oai_json_type_name(args)), NULL;
    }
    json_t *c = json_deep_copy(tc), *f = json_deep_copy(fn);
    if (!c || !f || json_object_set_new(f, "arguments", obj) < 0 || json_object_set_new(c, "function", f) < 0) {
        json_decref(c);
        return nomem(e), NULL;
    }
    return c;
}

/* messages[i] as the template sees it: role canonical, content the joined text, tool_calls' arguments objects. */
static json_t *message_for_template(json_t *m, const struct oai_msg *pm, size_t i, struct oai_request *r,
                                    struct oai_error *e)
{
    json_t *o = json_deep_copy(m);
    if (!o || json_object_set_new(o, "role", json_string(pm->role)) < 0 ||
        json_object_set_new(o, "content", json_string(pm->content)) < 0) {
        json_decref(o);
        return nomem(e), NULL;
    }
    if (!strcmp(pm->role, "tool"))
        r->tool_msgs = true;
    json_t *tcs = json_object_get(m, "tool_calls");
    if (!tcs || json_is_null(tcs)) {
        json_object_del(o, "tool_calls");
        return o;
    }
    char p[64];
    snprintf(p, sizeof p, "messages[%zu].tool_calls", i);
    if (!json_is_array(tcs) || strcmp(pm->role, "assistant")) {
        json_decref(o);
        return BAD(p, "Invalid '%s': only an assistant message has tool_calls, an array.", p), NULL;
    }
    json_t *out = json_array();
    for (size_t j = 0; out && j < json_array_size(tcs); j++) {
        json_t *c = tool_call_for_template(json_array_get(tcs, j), i, j, e);
        if (!c || json_array_append_new(out, c) < 0) {
            json_decref(out);
            json_decref(o);
            return c ? (nomem(e), NULL) : NULL;
        }
    }
    r->tool_msgs = true;
    json_object_set_new(o, "tool_calls", out);
    return o;
}

/* chat_template_kwargs: an object; its keys (not messages or tools) join the variables. */
static int merge_kwargs(json_t *root, json_t *vars, struct oai_error *e)
{
    json_t *kw = json_object_get(root, "chat_template_kwargs"), *v;
    const char *k;
    if (!kw || json_is_null(kw))
        return 0;
    if (!json_is_object(kw))
        return BAD("chat_template_kwargs", "Invalid type for 'chat_template_kwargs': expected an object, but got %s.",
                   oai_json_type_name(kw));
    json_object_foreach(kw, k, v) {
        if (!strcmp(k, "messages") || !strcmp(k, "tools"))
            return BAD("chat_template_kwargs", "Invalid 'chat_template_kwargs': '%s' is set by the request itself.", k);
        if (json_object_set(vars, k, v) < 0)
            return nomem(e);
    }
    return 0;
}

/* The template's variables: messages, tools, tool_choice, parallel_tool_calls, kwargs. */
static int build_vars(json_t *root, json_t *tools, struct oai_request *r, struct oai_error *e)
{
    json_t *vars = json_object(), *ms = json_object_get(root, "messages"), *list = json_array();
    int rc = vars && list ? 0 : nomem(e);
    for (size_t i = 0; rc == 0 && i < json_array_size(ms); i++) {
        json_t *m = message_for_template(json_array_get(ms, i), &r->msgs[i], i, r, e);
        rc = !m ? -1 : json_array_append_new(list, m) < 0 ? nomem(e) : 0;
    }
    if (rc == 0 && json_object_set(vars, "messages", list) < 0)
        rc = nomem(e);
    if (rc == 0 && tools && json_array_size(tools) && json_object_set(vars, "tools", tools) < 0)
        rc = nomem(e);
    static const char *const pass[] = {"tool_choice", "parallel_tool_calls"};
    for (int i = 0; rc == 0 && i < 2; i++) {
        json_t *v = json_object_get(root, pass[i]);
        if (v && !json_is_null(v) && json_object_set(vars, pass[i], v) < 0)
            rc = nomem(e);
    }
    if (rc == 0)
        rc = merge_kwargs(root, vars, e);
    if (rc == 0 && !(r->chat_vars = json_dumps(vars, JSON_COMPACT)))
        rc = nomem(e);
    json_decref(list);
    json_decref(vars);
    return rc;
}

int oai_parse_tools(json_t *root, struct oai_request *r, struct oai_error *e)
{
    json_t *tools;
    if (tools_list(root, r, &tools, e) < 0)
        return -1;
    if (parse_tool_choice(json_object_get(root, "tool_choice"), tools, r, e) < 0)
        return -1;
    r->parallel_tool_calls = true;
    json_t *ptc = json_object_get(root, "parallel_tool_calls");
    if (ptc && !json_is_null(ptc)) {
        if (!json_is_boolean(ptc))
            return BAD("parallel_tool_calls", "Invalid type for 'parallel_tool_calls': expected a boolean, but got %s.",
                       oai_json_type_name(ptc));
        r->parallel_tool_calls = json_is_true(ptc);
    }
    return build_vars(root, tools, r, e);
}

bool oai_tools_forced(const struct oai_request *r)
{
    return r->n_tools > 0 && (r->tool_choice == OAI_TOOL_REQUIRED || r->tool_choice == OAI_TOOL_NAMED);
}

/* ---- out ---- */

static json_t *text_json(const char *s, size_t n)
{
    size_t l;
    char *c = oai_utf8_sanitize(s ? s : "", s ? n : 0, &l);
    if (!c)
        return NULL;
    json_t *v = json_stringn_nocheck(c, l);
    free(c);
    return v;
}

static json_t *call_json(const struct oai_call_out *c, bool delta)
{
    json_t *fn = json_object(), *o = json_object();
    int rc = fn && o ? 0 : -1;
    if (delta)
        rc |= json_object_set_new(o, "index", json_integer(c->index));
    if (c->id) {
        rc |= json_object_set_new(o, "id", json_string(c->id));
        rc |= json_object_set_new(o, "type", json_string("function"));
        rc |= json_object_set_new(fn, "name", text_json(c->name, strlen(c->name)));
    }
    if (c->arguments)
        rc |= json_object_set_new(fn, "arguments", text_json(c->arguments, strlen(c->arguments)));
    rc |= json_object_set_new(o, "function", fn);
    if (rc) {
        json_decref(o);
        return NULL;
    }
    return o;
}

int oai_parts_apply(json_t *obj, const struct oai_parts *p, bool delta)
{
    if (!obj)
        return -1;
    int rc = 0;
    if (p->content_null && !delta)
        rc |= json_object_set_new(obj, "content", json_null());
    if (p->reasoning)
        rc |= json_object_set_new(obj, "reasoning_content", text_json(p->reasoning, p->n_reasoning));
    if (p->n_calls) {
        json_t *a = json_array();
        for (int i = 0; a && i < p->n_calls; i++)
            rc |= json_array_append_new(a, call_json(&p->calls[i], delta));
        rc |= a ? json_object_set_new(obj, "tool_calls", a) : -1;
    }
    return rc ? -1 : 0;
}
