/*
 * toolcall.c — content, reasoning and tool calls out of the model's text.
 *
 * One scanner serves every format: it walks the text looking for the
 * earliest marker (reasoning open, a call or section open, a marker to
 * drop), copies what lies before it to the content, and hands a call
 * block to the body parser of the format's layout. In partial mode (not
 * final) it stops at the first thing not settled: a suffix that may be
 * the start of a marker, a call whose close has not come. Because the
 * walk is the same in both modes, every partial result is a prefix of the
 * final one, which is what the streaming form relies on: each feed resumes
 * the scan where the last one stopped (struct resume: everything before is
 * settled) and hands back what grew.
 * Harmony (gpt-oss) is a sequence of messages rather than markers in text
 * and has its own walk.
 */
#define _GNU_SOURCE /* memmem */
#include "server/toolcall.h"

#include <jansson.h>

#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define NONE SIZE_MAX

static const struct tc_syntax syntaxes[TC_FORMAT_COUNT] = {
    [TC_NONE] = {"none", "", "", "", "", TC_LAYOUT_JSON, "", false, "", ""},
    [TC_HERMES] = {"hermes", "", "", "<tool_call>", "</tool_call>", TC_LAYOUT_JSON, "", false, "<think>", "</think>"},
    [TC_GLM45] = {"glm45", "", "", "<tool_call>", "</tool_call>", TC_LAYOUT_GLM, "", false, "<think>", "</think>"},
    [TC_LLAMA3] = {"llama3", "", "", "<|python_tag|>", "", TC_LAYOUT_JSON, "", true, "", ""},
    [TC_MISTRAL] = {"mistral", "", "", "[TOOL_CALLS]", "", TC_LAYOUT_JSON, "[ARGS]", false, "", ""},
    [TC_DEEPSEEK] = {"deepseek", TC_DS_CALLS_BEGIN, TC_DS_CALLS_END, TC_DS_CALL_BEGIN, TC_DS_CALL_END, TC_LAYOUT_NAME_ARGS,
                     TC_DS_SEP, false, "<think>", "</think>"},
    [TC_COMMAND_R7B] = {"command-r7b", "", "", "<|START_ACTION|>", "<|END_ACTION|>", TC_LAYOUT_JSON, "", false,
                        "<|START_THINKING|>", "<|END_THINKING|>"},
    [TC_FUNCTIONARY] = {"functionary", "", "", ">>>", "", TC_LAYOUT_NAME_ARGS, "\n", true, "", ""},
    [TC_FUNCTIONARY31] = {"functionary31", "", "", "<function=", "</function>", TC_LAYOUT_NAME_ARGS, ">", false, "",
                          ""},
    [TC_KIMI_K2] = {"kimi-k2", "<|tool_calls_section_begin|>", "<|tool_calls_section_end|>", "<|tool_call_begin|>",
                    "<|tool_call_end|>", TC_LAYOUT_NAME_ARGS, "<|tool_call_argument_begin|>", false, "<think>",
                    "</think>"},
    [TC_HARMONY] = {"harmony", "", "", "<|channel|>commentary to=functions.", "<|call|>", TC_LAYOUT_HARMONY,
                    "<|message|>", false, "<|channel|>analysis<|message|>", "<|end|>"},
    [TC_GRANITE] = {"granite", "", "", "<|tool_call|>", "", TC_LAYOUT_JSON, "", false, "<think>", "</think>"},
    [TC_QWEN3_CODER] = {"qwen3-coder", "", "", "<tool_call>", "</tool_call>", TC_LAYOUT_XML, ">", false, "<think>",
                        "</think>"},
};

const struct tc_syntax *tc_syntax(enum tc_format f)
{
    return &syntaxes[(unsigned)f < TC_FORMAT_COUNT ? f : TC_NONE];
}

const char *tc_format_name(enum tc_format f)
{
    return tc_syntax(f)->name;
}

/* Markers dropped from the content (Command R7B's response brackets). */
static const char *const r7b_drop[] = {"<|START_RESPONSE|>", "<|END_RESPONSE|>"};

static bool has(const char *s, const char *needle)
{
    return s && strstr(s, needle) != NULL;
}

/* The call format a template's text defines (TC_NONE if none it knows). */
static enum tc_format detect_format(const char *t)
{
    if (has(t, "<|channel|>"))
        return TC_HARMONY;
    if (has(t, "<|tool_calls_section_begin|>"))
        return TC_KIMI_K2;
    if (has(t, "tool\xE2\x96\x81" "calls\xE2\x96\x81" "begin"))
        return TC_DEEPSEEK;
    if (has(t, "<|START_ACTION|>"))
        return TC_COMMAND_R7B;
    if (has(t, "<tool_call>"))
        return has(t, "<arg_key>") ? TC_GLM45 : has(t, "<function=") ? TC_QWEN3_CODER : TC_HERMES;
    if (has(t, "[TOOL_CALLS]"))
        return TC_MISTRAL;
    if (has(t, "<|tool_call|>"))
        return TC_GRANITE;
    if (has(t, "<function="))
        return TC_FUNCTIONARY31;
    if (has(t, ">>>"))
        return TC_FUNCTIONARY;
    if (has(t, "<|python_tag|>") || has(t, "\"parameters\": dictionary of argument name"))
        return TC_LLAMA3;
    return TC_NONE;
}

/* Whether the prompt's end, past trailing whitespace, is an opened marker. */
static bool ends_with_open(const char *p, size_t n, const char *open)
{
    while (n && isspace((unsigned char)p[n - 1]))
        n--;
    size_t l = strlen(open);
    return n >= l && !memcmp(p + n - l, open, l);
}

bool tc_config_for(struct tc_config *c, const char *template_text, bool tools, const char *prompt, size_t prompt_len)
{
    memset(c, 0, sizeof *c);
    enum tc_format f = detect_format(template_text);
    if (f == TC_HARMONY) {
        c->fmt = TC_HARMONY; /* content itself is in a channel */
        c->calls = tools;
        return true;
    }
    if (tools)
        c->fmt = f, c->calls = f != TC_NONE;
    if (has(template_text, "<|START_THINKING|>")) {
        c->think_open = "<|START_THINKING|>", c->think_close = "<|END_THINKING|>";
    } else if (has(template_text, "<think>") || has(template_text, "</think>")) {
        c->think_open = "<think>", c->think_close = "</think>";
    }
    if (c->think_open && prompt)
        c->start_in_think = ends_with_open(prompt, prompt_len, c->think_open);
    return c->fmt != TC_NONE || c->think_open;
}

/* ---- results ---- */

void tc_result_release(struct tc_result *r)
{
    sbuf_release(&r->content);
    sbuf_release(&r->reasoning);
    for (int i = 0; i < r->n_calls; i++) {
        free(r->calls[i].name);
        free(r->calls[i].arguments);
    }
    free(r->calls);
    memset(r, 0, sizeof *r);
}

/* Drops the calls after the first keep (a block that turned out malformed). */
static void calls_truncate(struct tc_result *r, int keep)
{
    while (r->n_calls > keep) {
        r->n_calls--;
        free(r->calls[r->n_calls].name);
        free(r->calls[r->n_calls].arguments);
    }
}

/* ---- the scan ---- */

struct scan {
    const struct tc_config *c;
    const struct tc_syntax *sx;
    const char *t;
    size_t n;
    bool final;
    struct tc_result *r;
    bool oom;
};

static size_t find(const struct scan *s, size_t from, size_t to, const char *m)
{
    if (!*m || from >= to)
        return NONE;
    const char *p = memmem(s->t + from, to - from, m, strlen(m));
    return p ? (size_t)(p - s->t) : NONE;
}

static bool at(const struct scan *s, size_t pos, const char *m)
{
    size_t l = strlen(m);
    return pos + l <= s->n && !memcmp(s->t + pos, m, l);
}

/* Bytes at the end of t[from..n) that are a proper prefix of marker m. */
static size_t prefix_tail(const struct scan *s, size_t from, const char *m)
{
    size_t l = strlen(m), avail = s->n - from;
    for (size_t k = l > 1 ? l - 1 : 0; k > 0; k--)
        if (k <= avail && !memcmp(s->t + s->n - k, m, k))
            return k;
    return 0;
}

static void add(struct scan *s, struct sbuf *b, size_t from, size_t to)
{
    if (to > from && sbuf_add(b, s->t + from, to - from) < 0)
        s->oom = true;
}

static size_t skip_ws(const struct scan *s, size_t pos, size_t to)
{
    while (pos < to && isspace((unsigned char)s->t[pos]))
        pos++;
    return pos;
}

static int push_call(struct scan *s, const char *name, size_t name_len, const char *args, size_t args_len)
{
    struct tc_result *r = s->r;
    if (r->n_calls == r->cap_calls) {
        size_t cap = (size_t)r->cap_calls;
        if (mem_grow(&r->calls, &cap, (size_t)r->n_calls + 1, sizeof *r->calls) < 0) {
            s->oom = true;
            return -1;
        }
        r->cap_calls = (int)cap;
    }
    struct tc_call *c = &r->calls[r->n_calls];
    c->name = strndup(name, name_len);
    c->arguments = strndup(args, args_len);
    if (!c->name || !c->arguments) {
        free(c->name);
        free(c->arguments);
        s->oom = true;
        return -1;
    }
    r->n_calls++;
    return 0;
}

/* Pushes a call with its arguments v (an object, or a string holding one). 0, or -1 if malformed. */
static int push_json_args(struct scan *s, const char *name, size_t name_len, json_t *v)
{
    json_t *own = NULL;
    if (!v)
        v = own = json_object();
    else if (json_is_string(v)) {
        v = own = json_loadb(json_string_value(v), json_string_length(v), 0, NULL);
        if (!v)
            return -1;
    }
    if (!json_is_object(v) || name_len == 0) {
        json_decref(own);
        return -1;
    }
    char *a = json_dumps(v, JSON_COMPACT);
    json_decref(own);
    if (!a) {
        s->oom = true;
        return -1;
    }
    int rc = push_call(s, name, name_len, a, strlen(a));
    free(a);
    return rc;
}

/* A call object: {name|tool_name, arguments|parameters} or {function:{name, arguments}}. */
static int call_from_obj(struct scan *s, json_t *o)
{
    if (!json_is_object(o))
        return -1;
    json_t *fn = json_object_get(o, "function");
    if (json_is_object(fn))
        o = fn;
    json_t *name = json_object_get(o, "name");
    if (!json_is_string(name))
        name = json_object_get(o, "tool_name");
    if (!json_is_string(name))
        return -1;
    json_t *args = json_object_get(o, "arguments");
    if (!args)
        args = json_object_get(o, "parameters");
    return push_json_args(s, json_string_value(name), json_string_length(name), args);
}

/* t[from..to) as JSON values (objects or arrays of them) separated by
 * whitespace, ';' or ','. 0 with the calls pushed, -1 if malformed. */
static int body_json(struct scan *s, size_t from, size_t to)
{
    int got = 0;
    size_t pos = from;
    for (;;) {
        while (pos < to && (isspace((unsigned char)s->t[pos]) || s->t[pos] == ';' || s->t[pos] == ','))
            pos++;
        if (pos >= to)
            return got ? 0 : -1;
        json_error_t je;
        json_t *v = json_loadb(s->t + pos, to - pos, JSON_DISABLE_EOF_CHECK | JSON_DECODE_ANY, &je);
        if (!v)
            return -1;
        pos += je.position;
        int rc = 0;
        if (json_is_array(v)) {
            for (size_t i = 0; rc == 0 && i < json_array_size(v); i++)
                rc = call_from_obj(s, json_array_get(v, i));
            if (json_array_size(v) == 0)
                rc = -1;
        } else {
            rc = call_from_obj(s, v);
        }
        json_decref(v);
        if (rc < 0)
            return -1;
        got++;
    }
}

/* Trims whitespace and a ```json … ``` fence around t[*a..*z). */
static void trim_fence(const struct scan *s, size_t *a, size_t *z)
{
    *a = skip_ws(s, *a, *z);
    while (*z > *a && isspace((unsigned char)s->t[*z - 1]))
        (*z)--;
    if (at(s, *a, "```")) {
        size_t nl = find(s, *a, *z, "\n");
        *a = nl == NONE ? *z : nl + 1;
        if (*z >= *a + 3 && !memcmp(s->t + *z - 3, "```", 3))
            *z -= 3;
        *a = skip_ws(s, *a, *z);
        while (*z > *a && isspace((unsigned char)s->t[*z - 1]))
            (*z)--;
    }
}

/* Arguments text t[a..z) pushed as a call's (empty = {}). */
static int push_args_text(struct scan *s, const char *name, size_t name_len, size_t a, size_t z)
{
    trim_fence(s, &a, &z);
    if (a == z)
        return push_json_args(s, name, name_len, NULL);
    json_t *v = json_loadb(s->t + a, z - a, 0, NULL);
    if (!v)
        return -1;
    int rc = push_json_args(s, name, name_len, v);
    json_decref(v);
    return rc;
}

/* A function name as formats write it: "functions.N:0" (Kimi), "functions.N" (harmony) give N. */
static void clean_name(const char *t, size_t *a, size_t *z)
{
    while (*a < *z && isspace((unsigned char)t[*a]))
        (*a)++;
    while (*z > *a && isspace((unsigned char)t[*z - 1]))
        (*z)--;
    if (*z - *a > 10 && !memcmp(t + *a, "functions.", 10))
        *a += 10;
    size_t k = *z;
    while (k > *a && isdigit((unsigned char)t[k - 1]))
        k--;
    if (k < *z && k > *a + 1 && t[k - 1] == ':')
        *z = k - 1;
}

static bool name_ok(const char *t, size_t a, size_t z)
{
    if (a >= z || z - a > 256)
        return false;
    for (size_t i = a; i < z; i++)
        if ((unsigned char)t[i] <= 0x20 || t[i] == 0x7f || t[i] == '{' || t[i] == '<' || t[i] == '"')
            return false;
    return true;
}

/* NAME sep ARGS; DeepSeek V3's "function<sep>NAME\n```json ...```" too. */
static int body_name_args(struct scan *s, size_t from, size_t to)
{
    size_t sep = find(s, from, to, s->sx->name_sep);
    if (sep == NONE)
        return -1;
    size_t na = from, nz = sep, args = sep + strlen(s->sx->name_sep);
    clean_name(s->t, &na, &nz);
    if (nz - na == 8 && !memcmp(s->t + na, "function", 8) && s->c->fmt == TC_DEEPSEEK) {
        size_t nl = find(s, args, to, "\n");
        na = args, nz = nl == NONE ? to : nl;
        args = nz;
        clean_name(s->t, &na, &nz);
    }
    if (!name_ok(s->t, na, nz))
        return -1;
    return push_args_text(s, s->t + na, nz - na, args, to);
}

/* One <tag>…</tag> at pos; *a, *z the inside, *end past the close. */
static bool tagged(const struct scan *s, size_t pos, size_t to, const char *open, const char *close, size_t *a,
                   size_t *z, size_t *end)
{
    pos = skip_ws(s, pos, to);
    if (!at(s, pos, open))
        return false;
    *a = pos + strlen(open);
    size_t c = find(s, *a, to, close);
    if (c == NONE)
        return false;
    *z = c;
    *end = c + strlen(close);
    return true;
}

/* Sets args[k] = v for the texts t[ka..kz) and t[va..vz): v as JSON when it parses, else a string. -1 if malformed. */
static int set_arg(const struct scan *s, json_t *args, size_t ka, size_t kz, size_t va, size_t vz)
{
    if (kz == ka || memchr(s->t + ka, 0, kz - ka) || memchr(s->t + va, 0, vz - va)) /* no NUL in a key or a value */
        return -1;
    json_t *v = json_loadb(s->t + va, vz - va, JSON_DECODE_ANY, NULL);
    if (!v)
        v = json_stringn(s->t + va, vz - va);
    char *key = strndup(s->t + ka, kz - ka);
    int rc = -1;
    if (v && key)
        rc = json_object_set_new(args, key, v) < 0 ? -1 : 0; /* takes v, also on failure */
    else
        json_decref(v);
    free(key);
    return rc;
}

/* GLM-4.5: NAME then <arg_key>k</arg_key><arg_value>v</arg_value> pairs (v: JSON if it parses, else a string). */
static int body_glm(struct scan *s, size_t from, size_t to)
{
    size_t k = find(s, from, to, "<arg_key>");
    size_t nz = k == NONE ? to : k, na = from;
    clean_name(s->t, &na, &nz);
    if (!name_ok(s->t, na, nz))
        return -1;
    json_t *args = json_object();
    size_t pos = nz, ka, kz, va, vz;
    int rc = args ? 0 : -1;
    while (rc == 0 && skip_ws(s, pos, to) < to) {
        if (!tagged(s, pos, to, "<arg_key>", "</arg_key>", &ka, &kz, &pos) ||
            !tagged(s, pos, to, "<arg_value>", "</arg_value>", &va, &vz, &pos))
            rc = -1;
        else
            rc = set_arg(s, args, ka, kz, va, vz);
    }
    if (rc == 0)
        rc = push_json_args(s, s->t + na, nz - na, args);
    json_decref(args);
    return rc;
}

/* Qwen3-Coder: <function=N> then <parameter=k>\nv\n</parameter> (v: JSON if it parses, else a string), </function>. */
static int body_xml(struct scan *s, size_t from, size_t to)
{
    size_t a, z, pos, gt;
    if (!tagged(s, from, to, "<function=", "</function>", &a, &z, &pos) || skip_ws(s, pos, to) < to ||
        (gt = find(s, a, z, ">")) == NONE)
        return -1;
    size_t na = a, nz = gt;
    clean_name(s->t, &na, &nz);
    if (!name_ok(s->t, na, nz))
        return -1;
    json_t *args = json_object();
    int rc = args ? 0 : -1;
    pos = gt + 1;
    while (rc == 0 && skip_ws(s, pos, z) < z) {
        size_t pa, pz, kgt;
        if (!tagged(s, pos, z, "<parameter=", "</parameter>", &pa, &pz, &pos) || (kgt = find(s, pa, pz, ">")) == NONE) {
            rc = -1;
            break;
        }
        size_t va = kgt + 1, vz = pz;
        if (va < vz && s->t[va] == '\n') /* the template writes the value on its own lines */
            va++;
        if (vz > va && s->t[vz - 1] == '\n')
            vz--;
        rc = set_arg(s, args, pa, kgt, va, vz);
    }
    if (rc == 0)
        rc = push_json_args(s, s->t + na, nz - na, args);
    json_decref(args);
    return rc;
}

/* Llama 3.1's built-in tools: NAME.call(k=v, ...) with JSON literal values. */
static int body_builtin(struct scan *s, size_t from, size_t to)
{
    size_t na = skip_ws(s, from, to), open = find(s, na, to, ".call(");
    if (open == NONE || !name_ok(s->t, na, open))
        return -1;
    json_t *args = json_object();
    size_t pos = open + 6;
    int rc = args ? 0 : -1;
    while (rc == 0) {
        pos = skip_ws(s, pos, to);
        if (pos < to && s->t[pos] == ')')
            break;
        size_t ka = pos;
        while (pos < to && (isalnum((unsigned char)s->t[pos]) || s->t[pos] == '_'))
            pos++;
        size_t kz = pos;
        pos = skip_ws(s, pos, to);
        json_error_t je;
        json_t *v = kz > ka && pos < to && s->t[pos] == '='
                        ? json_loadb(s->t + pos + 1, to - pos - 1, JSON_DISABLE_EOF_CHECK | JSON_DECODE_ANY, &je)
                        : NULL;
        char *key = v ? strndup(s->t + ka, kz - ka) : NULL;
        rc = v && key && json_object_set_new(args, key, v) == 0 ? 0 : -1;
        if (v && !key)
            json_decref(v);
        free(key);
        if (rc == 0) {
            pos = skip_ws(s, pos + 1 + je.position, to);
            if (pos < to && s->t[pos] == ',')
                pos++;
            else if (pos >= to || s->t[pos] != ')')
                rc = -1;
        }
    }
    if (rc == 0 && skip_ws(s, pos + 1, to) < to)
        rc = -1;
    if (rc == 0)
        rc = push_json_args(s, s->t + na, open - na, args);
    json_decref(args);
    return rc;
}

static int body(struct scan *s, size_t from, size_t to)
{
    switch (s->sx->layout) {
    case TC_LAYOUT_JSON: {
        size_t p = skip_ws(s, from, to);
        if (p < to && s->t[p] != '{' && s->t[p] != '[' && s->c->fmt == TC_LLAMA3)
            return body_builtin(s, from, to);
        if (p < to && s->t[p] != '{' && s->t[p] != '[' && *s->sx->name_sep) /* Mistral v11: N[ARGS]{..} */
            return body_name_args(s, from, to);
        return body_json(s, from, to);
    }
    case TC_LAYOUT_NAME_ARGS:
        return body_name_args(s, from, to);
    case TC_LAYOUT_GLM:
        return body_glm(s, from, to);
    case TC_LAYOUT_XML:
        return body_xml(s, from, to);
    default:
        return -1;
    }
}

/* The calls between a section's open and close: call_open … call_close, repeated. */
static int section_calls(struct scan *s, size_t from, size_t to)
{
    size_t pos = from, a, z;
    int got = 0;
    while (skip_ws(s, pos, to) < to) {
        if (!tagged(s, pos, to, s->sx->call_open, s->sx->call_close, &a, &z, &pos) || body(s, a, z) < 0)
            return -1;
        got++;
    }
    return got ? 0 : -1;
}

/*
 * A call block starting at k (at its section_open or call_open; at k with
 * no marker for a lead call). 1 with *end past it and its calls pushed; 0
 * when it is not complete yet (partial mode); -1 when malformed, *end
 * past what is returned as text.
 */
static int call_block(struct scan *s, size_t k, size_t open_len, bool sectioned, size_t *end)
{
    const struct tc_syntax *sx = s->sx;
    const char *close = sectioned ? sx->section_close : sx->call_close;
    size_t b = k + open_len, z;
    if (*close) {
        z = find(s, b, s->n, close);
        if (z == NONE && !s->final)
            return 0;
        *end = z == NONE ? s->n : z + strlen(close);
        if (z == NONE)
            z = s->n;
    } else {
        z = *sx->call_open ? find(s, b, s->n, sx->call_open) : NONE;
        if (z == NONE && !s->final)
            return 0;
        if (z == NONE)
            z = s->n;
        *end = z;
    }
    int keep = s->r->n_calls;
    if (sx->layout == TC_LAYOUT_NAME_ARGS && s->c->fmt == TC_FUNCTIONARY && z - b >= 4 &&
        !memcmp(s->t + b, "all\n", 4)) { /* Functionary's text turn */
        add(s, &s->r->content, b + 4, z);
        return 1;
    }
    int rc = sectioned ? section_calls(s, b, z) : body(s, b, z);
    if (rc < 0) {
        calls_truncate(s->r, keep);
        return -1;
    }
    return 1;
}

enum mark { M_THINK, M_CALL, M_DROP };

/* The earliest marker in t[pos..n): its kind, offset, length; NONE if none. */
static size_t next_marker(const struct scan *s, size_t pos, enum mark *kind, size_t *len)
{
    size_t best = NONE;
    const char *m[4] = {s->c->think_open, NULL, NULL, NULL};
    if (s->c->fmt != TC_NONE)
        m[1] = *s->sx->section_open ? s->sx->section_open : s->sx->call_open;
    if (s->c->fmt == TC_COMMAND_R7B || (s->c->think_open && !strcmp(s->c->think_open, "<|START_THINKING|>")))
        m[2] = r7b_drop[0], m[3] = r7b_drop[1];
    for (int i = 0; i < 4; i++) {
        size_t at_ = m[i] ? find(s, pos, s->n, m[i]) : NONE;
        if (at_ < best) {
            best = at_;
            *kind = i == 0 ? M_THINK : i == 1 ? M_CALL : M_DROP;
            *len = strlen(m[i]);
        }
    }
    if (best == NONE) { /* what is held back: a tail that may start a marker */
        size_t h = 0;
        for (int i = 0; i < 4; i++) {
            size_t t = m[i] && !s->final ? prefix_tail(s, pos, m[i]) : 0;
            h = t > h ? t : h;
        }
        *len = h;
    }
    return best;
}

/* A call at the very start (Llama 3's bare JSON, Functionary's first turn). 1, 0 or -1 as call_block; 2: none;
 * 3: no call, the text starts at *pos. */
static int lead_call(struct scan *s, size_t *pos)
{
    size_t p = skip_ws(s, 0, s->n);
    if (s->c->fmt == TC_LLAMA3) {
        if (p >= s->n)
            return s->final ? 2 : 0;
        if (s->t[p] != '{')
            return 2;
        if (!s->final)
            return 0;
        int keep = s->r->n_calls;
        *pos = s->n;
        if (body_json(s, p, s->n) < 0) {
            calls_truncate(s->r, keep);
            return -1;
        }
        return 1;
    }
    /* Functionary: "all\n" (text, scanned as such: 3) or "NAME\n{..}" up to the next >>> */
    size_t nl = find(s, 0, s->n, "\n");
    if (nl == NONE)
        return s->final ? 2 : 0;
    if (nl == 3 && !memcmp(s->t, "all", 3)) {
        *pos = 4;
        return 3;
    }
    if (!name_ok(s->t, 0, nl))
        return 2;
    int rc = call_block(s, 0, 0, false, pos);
    return rc;
}

/* Inside reasoning at *pos: up to its close. false when the scan stops (partial). */
static bool in_think(struct scan *s, size_t *pos)
{
    size_t k = find(s, *pos, s->n, s->c->think_close);
    if (k == NONE) {
        size_t h = s->final ? 0 : prefix_tail(s, *pos, s->c->think_close);
        add(s, &s->r->reasoning, *pos, s->n - h);
        s->r->in_reasoning = !s->final;
        *pos = s->n - h;
        return false;
    }
    add(s, &s->r->reasoning, *pos, k);
    *pos = skip_ws(s, k + strlen(s->c->think_close), s->n);
    return true;
}

/* Where a partial scan stopped: everything before pos is settled, so the
 * next scan of a longer text resumes there with the same state. */
struct resume {
    size_t pos;
    bool started;     /* the lead call (if the format has one) is decided */
    bool think;       /* inside reasoning */
    bool after_close; /* right after a reasoning close or a call: whitespace is skipped */
    size_t sent;      /* harmony: bytes of the unfinished message at pos already added */
};

static void scan_markers(struct scan *s, struct resume *st)
{
    size_t pos = st->pos, end = 0, len;
    if (!st->started) {
        st->think = s->c->think_open && s->c->start_in_think;
        if (s->c->fmt != TC_NONE && s->sx->lead_call && !st->think) {
            int rc = lead_call(s, &end);
            if (rc == 0)
                return;
            if (rc == 1)
                pos = end, st->after_close = true;
            else if (rc == 3)
                pos = end;
        }
        st->started = true;
    }
    if (st->after_close)
        pos = skip_ws(s, pos, s->n);
    st->pos = pos;
    while (pos < s->n && !s->oom) {
        st->after_close = false;
        if (st->think) {
            bool closed = in_think(s, &pos);
            st->pos = pos;
            if (!closed)
                return;
            st->think = false, st->after_close = true;
            continue;
        }
        enum mark kind = M_DROP;
        size_t k = next_marker(s, pos, &kind, &len);
        if (k == NONE) {
            add(s, &s->r->content, pos, s->n - len);
            st->pos = s->n - len;
            return;
        }
        add(s, &s->r->content, pos, k);
        st->pos = pos = k + len;
        if (kind == M_THINK) {
            st->think = true;
        } else if (kind == M_CALL) {
            int rc = call_block(s, k, len, *s->sx->section_open != 0, &end);
            if (rc == 0) {
                st->pos = k;
                return;
            }
            if (rc < 0)
                add(s, &s->r->content, k, end);
            st->pos = pos = rc > 0 ? skip_ws(s, end, s->n) : end;
            st->after_close = rc > 0;
        }
    }
}

/* ---- harmony (gpt-oss) ---- */

static const char *const harmony_ends[] = {"<|end|>", "<|call|>", "<|return|>"};

/* The earliest message end at or after from: offset and length, NONE if none. */
static size_t harmony_end(const struct scan *s, size_t from, size_t *len)
{
    size_t best = NONE;
    for (int i = 0; i < 3; i++) {
        size_t k = find(s, from, s->n, harmony_ends[i]);
        if (k < best)
            best = k, *len = strlen(harmony_ends[i]);
    }
    return best;
}

/* The word after key in the header t[a..z) (e.g. "<|channel|>" → "analysis"). */
static bool header_word(const struct scan *s, size_t a, size_t z, const char *key, size_t *wa, size_t *wz)
{
    size_t k = find(s, a, z, key);
    if (k == NONE)
        return false;
    *wa = k + strlen(key);
    *wz = *wa;
    while (*wz < z && !isspace((unsigned char)s->t[*wz]) && s->t[*wz] != '<')
        (*wz)++;
    return true;
}

/* One message: header t[h..m), body t[b..e). */
/* One message: header t[h..m), body t[b..e); sent: body bytes a partial scan already added. */
static void harmony_message(struct scan *s, size_t h, size_t m, size_t b, size_t e, size_t raw_end, size_t sent)
{
    size_t ca = 0, cz = 0, ra, rz;
    bool chan = header_word(s, h, m, "<|channel|>", &ca, &cz);
    if (s->c->calls && header_word(s, h, m, "to=", &ra, &rz)) {
        clean_name(s->t, &ra, &rz);
        int keep = s->r->n_calls;
        if (!name_ok(s->t, ra, rz) || push_args_text(s, s->t + ra, rz - ra, b, e) < 0) {
            calls_truncate(s->r, keep);
            add(s, &s->r->content, h, raw_end);
        }
        return;
    }
    bool analysis = chan && cz - ca == 8 && !memcmp(s->t + ca, "analysis", 8);
    add(s, analysis ? &s->r->reasoning : &s->r->content, b + sent, e);
}

static void scan_harmony(struct scan *s, struct resume *st)
{
    size_t pos = st->pos, len = 0, sent = st->sent;
    while (pos < s->n && !s->oom) {
        st->pos = pos, st->sent = sent;
        if (at(s, pos, "<|start|>"))
            pos += 9;
        size_t m = find(s, pos, s->n, "<|message|>");
        if (m == NONE) { /* no header (yet): text outside the format is content once the output ends */
            if (s->final)
                add(s, &s->r->content, pos, s->n);
            return;
        }
        size_t b = m + 11, e = harmony_end(s, b, &len);
        if (e == NONE) {
            if (!s->final) {
                size_t ca, cz, ra, rz;
                if (s->c->calls && header_word(s, pos, m, "to=", &ra, &rz))
                    return; /* a call: only whole */
                bool an = header_word(s, pos, m, "<|channel|>", &ca, &cz) && cz - ca == 8 &&
                          !memcmp(s->t + ca, "analysis", 8);
                size_t h = 0;
                for (int i = 0; i < 3; i++) {
                    size_t t = prefix_tail(s, b, harmony_ends[i]);
                    h = t > h ? t : h;
                }
                add(s, an ? &s->r->reasoning : &s->r->content, b + sent, s->n - h);
                st->sent = s->n - h - b;
                s->r->in_reasoning = an;
                return;
            }
            e = s->n, len = 0;
        }
        harmony_message(s, pos, m, b, e, e + len, sent);
        pos = e + len, sent = 0;
    }
    st->pos = pos, st->sent = 0;
}

/* One scan of text[0..n) into r, from *st (zeroed: from the start). */
static int scan(const struct tc_config *c, const char *text, size_t n, bool final, struct tc_result *r,
                struct resume *st)
{
    struct scan s = {c, tc_syntax(c->fmt), text ? text : "", text ? n : 0, final, r, false};
    r->in_reasoning = false;
    if (c->fmt == TC_HARMONY)
        scan_harmony(&s, st);
    else
        scan_markers(&s, st);
    if (s.oom || sbuf_failed(&r->content) || sbuf_failed(&r->reasoning))
        return -1;
    return 0;
}

int tc_parse(const struct tc_config *c, const char *text, size_t n, bool final, struct tc_result *r)
{
    struct resume st = {0, false, false, false, 0};
    return scan(c, text, n, final, r, &st);
}

/* ---- streaming ---- */

struct tc_stream {
    struct tc_config c;
    struct sbuf text;
    struct tc_result r;
    struct resume st;          /* where the last partial scan stopped */
    size_t sent_content, sent_reasoning;
    int sent_calls;
};

struct tc_stream *tc_stream_new(const struct tc_config *c)
{
    struct tc_stream *s = calloc(1, sizeof *s);
    if (s) {
        s->c = *c;
        s->r.in_reasoning = c->start_in_think && c->think_open; /* before the first feed */
    }
    return s;
}

void tc_stream_free(struct tc_stream *s)
{
    if (!s)
        return;
    sbuf_release(&s->text);
    tc_result_release(&s->r);
    free(s);
}

int tc_stream_feed(struct tc_stream *s, const char *text, size_t n, bool final, struct tc_delta *d)
{
    memset(d, 0, sizeof *d);
    if (n && sbuf_add(&s->text, text, n) < 0)
        return -1;
    if (scan(&s->c, s->text.buf, s->text.len, final, &s->r, &s->st) < 0)
        return -1;
    /* every partial result is a prefix of the later ones (see the top of the file) */
    if (s->r.content.len > s->sent_content) {
        d->content = s->r.content.buf + s->sent_content;
        d->n_content = s->r.content.len - s->sent_content;
        s->sent_content = s->r.content.len;
    }
    if (s->r.reasoning.len > s->sent_reasoning) {
        d->reasoning = s->r.reasoning.buf + s->sent_reasoning;
        d->n_reasoning = s->r.reasoning.len - s->sent_reasoning;
        s->sent_reasoning = s->r.reasoning.len;
    }
    if (s->r.n_calls > s->sent_calls) {
        d->calls = s->r.calls + s->sent_calls;
        d->n_calls = s->r.n_calls - s->sent_calls;
        d->first_index = s->sent_calls;
        s->sent_calls = s->r.n_calls;
    }
    return 0;
}

bool tc_stream_in_reasoning(const struct tc_stream *s)
{
    return s->r.in_reasoning;
}

const struct tc_result *tc_stream_result(const struct tc_stream *s)
{
    return &s->r;
}
