/*
 * toolgrammar.c — the grammar that forces a tool call (tool_choice
 * "required" or a named function): the model's own call syntax (toolcall.h),
 * the function name one of the allowed tools, the arguments valid for that
 * tool's parameters schema (grammar_schema_to_gbnf, one rule prefix per
 * tool).
 *
 * Each forced format is a shape of literal text around the calls and
 * around the name and arguments of one call, written as the format's
 * templates write it, so that tc_parse reads back exactly the calls the
 * grammar allowed. "%d" inside a literal is a call index ([0-9]{1,2}), "%n"
 * an optional newline (Hermes templates differ on them).
 */
#include "server/toolcall.h"

#include "grammar/grammar.h"

#include <jansson.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* open CALL (between CALL)* close; a CALL is pre NAME mid ARGS post. */
struct shape {
    const char *open, *between, *close;
    const char *pre, *mid, *post;
    bool multi; /* several calls in one turn */
};

static const struct shape shapes[TC_FORMAT_COUNT] = {
    [TC_HERMES] = {"", "%n", "", "<tool_call>%n{\"name\": \"", "\", \"arguments\": ", "}%n</tool_call>", true},
    [TC_LLAMA3] = {"", "", "", "{\"name\": \"", "\", \"parameters\": ", "}", false},
    [TC_MISTRAL] = {"[TOOL_CALLS][", ", ", "]", "{\"name\": \"", "\", \"arguments\": ", "}", true},
    [TC_GRANITE] = {"<|tool_call|>[", ", ", "]", "{\"name\": \"", "\", \"arguments\": ", "}", true},
    [TC_COMMAND_R7B] = {"<|START_ACTION|>[\n    ", ",\n    ", "\n]<|END_ACTION|>",
                        "{\"tool_call_id\": \"%d\", \"tool_name\": \"", "\", \"parameters\": ", "}", true},
    [TC_DEEPSEEK] = {TC_DS_CALLS_BEGIN, "\n", TC_DS_CALLS_END, TC_DS_CALL_BEGIN "function" TC_DS_SEP, "\n```json\n",
                     "\n```" TC_DS_CALL_END, true},
    [TC_KIMI_K2] = {"<|tool_calls_section_begin|>", "", "<|tool_calls_section_end|>", "<|tool_call_begin|>functions.",
                    ":%d<|tool_call_argument_begin|>", "<|tool_call_end|>", true},
    [TC_FUNCTIONARY31] = {"", "", "", "<function=", ">", "</function>", true},
    [TC_FUNCTIONARY] = {"", ">>>", "", "", "\n", "", true},
};

bool tc_forcible(enum tc_format f)
{
    return (unsigned)f < TC_FORMAT_COUNT && shapes[f].pre != NULL;
}

/* The next "%d" (a call index) or "%n" (an optional newline) in s, or NULL. */
static const char *next_slot(const char *s)
{
    const char *d = strstr(s, "%d"), *n = strstr(s, "%n");
    return !d ? n : !n ? d : d < n ? d : n;
}

/* s as GBNF: string literals, "%d" as a call index, "%n" as "\n"?; nothing for "". */
static void lit(struct sbuf *b, const char *s)
{
    while (*s) {
        const char *d = next_slot(s);
        size_t n = d ? (size_t)(d - s) : strlen(s);
        if (n) {
            sbuf_addstr(b, " \"");
            for (size_t i = 0; i < n; i++) {
                unsigned char c = (unsigned char)s[i];
                if (c == '"' || c == '\\')
                    sbuf_addf(b, "\\%c", c);
                else if (c < 0x20 || c == 0x7f)
                    sbuf_addf(b, "\\x%02X", c);
                else
                    sbuf_addch(b, c);
            }
            sbuf_addch(b, '"');
        }
        if (d)
            sbuf_addstr(b, d[1] == 'd' ? " [0-9]{1,2}" : " \"\\n\"?");
        s += n + (d ? 2 : 0);
    }
}

/* One character of a GBNF class. */
static void class_char(struct sbuf *b, unsigned char c)
{
    sbuf_addf(b, "\\x%02X", c);
}

/* Reasoning up to its close marker: text without the close's first two
 * bytes together, then the close (ASCII markers only). */
static int think_rule(struct sbuf *b, const struct tc_config *c)
{
    const char *cl = c->think_close;
    if (!cl || strlen(cl) < 2 || (unsigned char)cl[0] >= 0x80 || (unsigned char)cl[1] >= 0x80 || cl[0] == cl[1])
        return -1;
    sbuf_addstr(b, "think-text ::= ( [^");
    class_char(b, (unsigned char)cl[0]);
    sbuf_addstr(b, "] | ");
    lit(b, (char[]){cl[0], 0});
    sbuf_addstr(b, "+ [^");
    class_char(b, (unsigned char)cl[0]);
    class_char(b, (unsigned char)cl[1]);
    sbuf_addstr(b, "] )*");
    lit(b, (char[]){cl[0], 0});
    sbuf_addstr(b, "*");
    lit(b, cl);
    sbuf_addstr(b, " \"\\n\"{0,2}\n");
    return 0;
}

/* call-i and tool i's argument rules. -1 with e when the schema cannot be enforced. */
static int tool_rules(struct sbuf *b, const struct shape *sh, json_t *fn, int i, struct err *e)
{
    json_t *par = json_object_get(fn, "parameters");
    char *schema = par && !json_is_null(par) ? json_dumps(par, JSON_COMPACT) : strdup("{\"type\":\"json_object\"}");
    if (!schema)
        return err_set(e, ERR_NOMEM, "out of memory");
    char prefix[32];
    snprintf(prefix, sizeof prefix, "t%d-", i);
    char *g = grammar_schema_to_gbnf(schema, prefix, e);
    free(schema);
    if (!g)
        return -1;
    sbuf_addf(b, "call-%d ::=", i);
    lit(b, sh->pre);
    lit(b, json_string_value(json_object_get(fn, "name")));
    lit(b, sh->mid);
    sbuf_addf(b, " %sroot", prefix);
    lit(b, sh->post);
    sbuf_addf(b, "\n%s\n", g);
    free(g);
    return 0;
}

/* The trigger of a call the model starts in auto mode: the marker that
 * opens the calls of a turn. */
static const char *auto_trigger(enum tc_format f)
{
    const struct tc_syntax *sx = tc_syntax(f);
    return *sx->section_open ? sx->section_open : sx->call_open;
}

/* root, calls and call; the think prefix when the template has reasoning.
 * auto_mode: no reasoning (it stays free before the trigger) and the
 * trigger written first when the shape does not start with it. */
static void top_rules(struct sbuf *b, const struct tc_config *c, const struct shape *sh, bool multi, bool think,
                      bool auto_mode)
{
    if (auto_mode) {
        const char *t = auto_trigger(c->fmt), *first = *sh->open ? sh->open : sh->pre;
        /* the trigger, the reasoning spans skipped and where the output starts make the
         * text differ when the lazy grammar does (grammar caches are keyed by the text) */
        sbuf_addf(b, "# maas: a %s tool call the model starts, trigger %s, reasoning %s..%s%s\nroot ::=",
                  tc_format_name(c->fmt), t, c->think_open ? c->think_open : "", c->think_close ? c->think_close : "",
                  c->start_in_think ? " (open)" : "");
        if (strncmp(first, t, strlen(t)))
            lit(b, t);
    } else {
        sbuf_addf(b, "# maas: a forced %s tool call\nroot ::=", tc_format_name(c->fmt));
    }
    if (think && c->start_in_think)
        sbuf_addstr(b, " think-text");
    else if (think) {
        sbuf_addstr(b, " (");
        lit(b, c->think_open);
        sbuf_addstr(b, " think-text)?");
    }
    lit(b, sh->open);
    sbuf_addstr(b, " call");
    if (multi) {
        sbuf_addstr(b, " (");
        lit(b, sh->between);
        sbuf_addstr(b, " call)*");
    }
    lit(b, sh->close);
    sbuf_addch(b, '\n');
}

/* The GBNF of forced calls, or (auto_mode) of a call the model starts. */
static char *calls_gbnf(const struct tc_config *c, struct json_t *tools, const char *only, bool parallel,
                        bool auto_mode, int *bad_tool, struct err *e)
{
    *bad_tool = -1;
    if (!tc_forcible(c->fmt))
        return err_set(e, ERR_INVALID, "a call cannot be forced in the %s tool-call format", tc_format_name(c->fmt)),
               NULL;
    const struct shape *sh = &shapes[c->fmt];
    struct sbuf b = SBUF_INIT, calls = SBUF_INIT;
    bool think = !auto_mode && c->think_open && think_rule(&b, c) == 0;
    int n = 0;
    for (size_t i = 0; i < json_array_size(tools); i++) {
        json_t *fn = json_object_get(json_array_get(tools, i), "function");
        const char *name = json_string_value(json_object_get(fn, "name"));
        if (!name || (only && strcmp(name, only)))
            continue;
        if (tool_rules(&b, sh, fn, (int)i, e) < 0) {
            *bad_tool = e->code == ERR_NOMEM ? -1 : (int)i;
            sbuf_release(&b), sbuf_release(&calls);
            return NULL;
        }
        sbuf_addf(&calls, "%scall-%zu", n++ ? " | " : "call ::= ", i);
    }
    if (!n) {
        sbuf_release(&b), sbuf_release(&calls);
        return err_set(e, ERR_INVALID, "no tool to call"), NULL;
    }
    struct sbuf out = SBUF_INIT;
    top_rules(&out, c, sh, sh->multi && parallel && !only, think, auto_mode);
    sbuf_add(&out, calls.buf, calls.len);
    sbuf_addch(&out, '\n');
    sbuf_add(&out, b.buf, b.len);
    sbuf_release(&b), sbuf_release(&calls);
    char *s = sbuf_detach(&out, NULL);
    if (!s)
        err_set(e, ERR_NOMEM, "out of memory");
    return s;
}

char *tc_forced_gbnf(const struct tc_config *c, struct json_t *tools, const char *only, bool parallel, int *bad_tool,
                     struct err *e)
{
    return calls_gbnf(c, tools, only, parallel, false, bad_tool, e);
}

char *tc_auto_gbnf(const struct tc_config *c, struct json_t *tools, bool parallel, struct grammar_trigger *trig,
                   int *bad_tool, struct err *e)
{
    char *g = calls_gbnf(c, tools, NULL, parallel, true, bad_tool, e);
    if (g)
        *trig = (struct grammar_trigger){auto_trigger(c->fmt), c->think_open, c->think_close, c->start_in_think};
    return g;
}

int tc_forced_markers(const struct tc_config *c, const char *out[8])
{
    const struct tc_syntax *sx = tc_syntax(c->fmt);
    const char *m[8] = {sx->section_open, sx->section_close, sx->call_open, sx->call_close,
                        sx->layout == TC_LAYOUT_NAME_ARGS ? sx->name_sep : NULL, c->think_open, c->think_close, NULL};
    int n = 0;
    for (int i = 0; i < 7; i++)
        if (m[i] && *m[i])
            out[n++] = m[i];
    return n;
}
