/*
 * openai.c — request bodies in, response objects out, with jansson.
 *
 * Parsing walks the known fields of the root object one by one; each
 * helper treats JSON null as "not given" (as OpenAI does for optional
 * fields) and fails with a 400 naming the field for a wrong type or a value
 * out of range. Everything the request keeps is copied into malloc'ed
 * strings, so the jansson tree is freed before oai_parse_request returns.
 *
 * Building: jansson accepts only valid UTF-8 in strings, and model output
 * need not be, so every text goes through oai_utf8_sanitize first; JSON
 * has no infinities, so a logprob of -inf is written as -9999 (OpenAI's
 * own convention for "impossible").
 */
#include "server/openai.h"
#include "server/oai_tools.h"
#include "server/server.h" /* srv_json_dump */
#include "grammar/grammar.h"

#include <jansson.h>

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int oai_err(struct oai_error *e, int status, const char *type, const char *param, const char *code,
            const char *fmt, ...)
{
    if (!e)
        return -1;
    e->status = status;
    e->retry_after = 0;
    snprintf(e->type, sizeof e->type, "%s", type ? type : "invalid_request_error");
    snprintf(e->param, sizeof e->param, "%s", param ? param : "");
    snprintf(e->code, sizeof e->code, "%s", code ? code : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
    return -1;
}

#define BAD(param, ...) oai_err(e, 400, "invalid_request_error", (param), NULL, __VA_ARGS__)

static const char *json_type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    case JSON_NULL: return "null";
    }
    return "a value";
}

const char *oai_json_type_name(const json_t *v)
{
    return json_type_name(v);
}

/* ---- field helpers: 0 = absent or null, 1 = present (value written), -1 = error ---- */

static int get_number(json_t *root, const char *key, double lo, double hi, bool lo_open, double *out,
                      struct oai_error *e)
{
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_number(v))
        return BAD(key, "Invalid type for '%s': expected a number, but got %s.", key, json_type_name(v));
    double x = json_number_value(v);
    if (!isfinite(x) || x < lo || x > hi || (lo_open && x <= lo))
        return BAD(key, "Invalid value for '%s': %g is not in the range %s%g, %g].", key, x, lo_open ? "(" : "[",
                   lo, hi);
    *out = x;
    return 1;
}

static int get_int(json_t *root, const char *key, long long lo, long long hi, long long *out, struct oai_error *e)
{
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_integer(v))
        return BAD(key, "Invalid type for '%s': expected an integer, but got %s.", key, json_type_name(v));
    long long x = json_integer_value(v);
    if (x < lo || x > hi)
        return BAD(key, "Invalid value for '%s': %lld is not in the range [%lld, %lld].", key, x, lo, hi);
    *out = x;
    return 1;
}

static int get_bool(json_t *root, const char *key, bool *out, struct oai_error *e)
{
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_boolean(v))
        return BAD(key, "Invalid type for '%s': expected a boolean, but got %s.", key, json_type_name(v));
    *out = json_is_true(v);
    return 1;
}

static char *dup_json_string(json_t *v)
{
    size_t n = json_string_length(v);
    char *s = malloc(n + 1);
    if (s) {
        memcpy(s, json_string_value(v), n);
        s[n] = 0;
    }
    return s;
}

static int nomem(struct oai_error *e)
{
    return oai_err(e, 500, "server_error", NULL, NULL, "Out of memory while parsing the request.");
}

/* ---- messages ---- */

static int parse_content(json_t *c, int i, const char *role, char **out, struct oai_error *e)
{
    char param[64];
    snprintf(param, sizeof param, "messages[%d].content", i);
    if (!c || json_is_null(c)) {
        if (!strcmp(role, "assistant")) { /* an assistant turn that only called tools */
            *out = strdup("");
            return *out ? 0 : nomem(e);
        }
        return BAD(param, "Missing required parameter: '%s'.", param);
    }
    if (json_is_string(c)) {
        *out = dup_json_string(c);
        return *out ? 0 : nomem(e);
    }
    if (!json_is_array(c))
        return BAD(param, "Invalid type for '%s': expected a string or an array of content parts, but got %s.",
                   param, json_type_name(c));
    /* text parts joined by newlines */
    size_t total = 0, n = json_array_size(c);
    for (size_t j = 0; j < n; j++) {
        json_t *p = json_array_get(c, j), *type, *text;
        char pp[96];
        snprintf(pp, sizeof pp, "%s[%zu]", param, j);
        if (!json_is_object(p))
            return BAD(pp, "Invalid type for '%s': expected an object, but got %s.", pp, json_type_name(p));
        type = json_object_get(p, "type");
        if (!json_is_string(type)) {
            snprintf(pp, sizeof pp, "%s[%zu].type", param, j);
            return BAD(pp, "Missing or invalid '%s': expected a string.", pp);
        }
        if (strcmp(json_string_value(type), "text")) {
            snprintf(pp, sizeof pp, "%s[%zu].type", param, j);
            return BAD(pp, "Unsupported content part type '%.40s' in '%s': this server accepts only 'text'.",
                       json_string_value(type), pp);
        }
        text = json_object_get(p, "text");
        if (!json_is_string(text)) {
            snprintf(pp, sizeof pp, "%s[%zu].text", param, j);
            return BAD(pp, "Missing or invalid '%s': expected a string.", pp);
        }
        total += json_string_length(text) + 1;
    }
    char *s = malloc(total + 1);
    if (!s)
        return nomem(e);
    size_t at = 0;
    for (size_t j = 0; j < n; j++) {
        json_t *text = json_object_get(json_array_get(c, j), "text");
        if (j)
            s[at++] = '\n';
        memcpy(s + at, json_string_value(text), json_string_length(text));
        at += json_string_length(text);
    }
    s[at] = 0;
    *out = s;
    return 0;
}

static int parse_messages(json_t *root, struct oai_request *r, struct oai_error *e)
{
    json_t *ms = json_object_get(root, "messages");
    if (!ms || json_is_null(ms))
        return BAD("messages", "Missing required parameter: 'messages'.");
    if (!json_is_array(ms))
        return BAD("messages", "Invalid type for 'messages': expected an array, but got %s.", json_type_name(ms));
    size_t n = json_array_size(ms);
    if (n == 0)
        return BAD("messages", "Invalid 'messages': empty array. Expected an array with minimum length 1.");
    if (n > 100000)
        return BAD("messages", "Invalid 'messages': %zu messages is too many.", n);
    r->msgs = calloc(n, sizeof *r->msgs);
    if (!r->msgs)
        return nomem(e);
    for (size_t i = 0; i < n; i++) {
        json_t *m = json_array_get(ms, i), *role;
        char param[64];
        snprintf(param, sizeof param, "messages[%zu]", i);
        if (!json_is_object(m))
            return BAD(param, "Invalid type for '%s': expected an object, but got %s.", param, json_type_name(m));
        role = json_object_get(m, "role");
        snprintf(param, sizeof param, "messages[%zu].role", i);
        if (!role || json_is_null(role))
            return BAD(param, "Missing required parameter: '%s'.", param);
        if (!json_is_string(role))
            return BAD(param, "Invalid type for '%s': expected a string, but got %s.", param, json_type_name(role));
        const char *rs = json_string_value(role);
        const char *canon = !strcmp(rs, "system") || !strcmp(rs, "developer") ? "system"
                            : !strcmp(rs, "user")                            ? "user"
                            : !strcmp(rs, "assistant")                       ? "assistant"
                            : !strcmp(rs, "tool")                            ? "tool"
                                                                             : NULL;
        if (!canon)
            return BAD(param,
                       "Invalid value for '%s': '%.40s' is not supported; supported values are 'system', "
                       "'developer', 'user', 'assistant' and 'tool'.",
                       param, rs);
        if (!(r->msgs[i].role = strdup(canon)))
            return nomem(e);
        r->n_msgs = (int)i + 1; /* so that release frees what is filled */
        if (parse_content(json_object_get(m, "content"), (int)i, canon, &r->msgs[i].content, e) < 0)
            return -1;
    }
    return 0;
}

/* ---- prompt (completions) ---- */

static int parse_prompt(json_t *root, struct oai_request *r, struct oai_error *e)
{
    json_t *p = json_object_get(root, "prompt");
    if (!p || json_is_null(p))
        return BAD("prompt", "Missing required parameter: 'prompt'.");
    if (json_is_array(p)) {
        if (json_array_size(p) != 1)
            return BAD("prompt", "Invalid 'prompt': this server accepts a string or an array of exactly one "
                                 "string (got %zu elements).", json_array_size(p));
        p = json_array_get(p, 0);
        if (!json_is_string(p))
            return BAD("prompt", "Invalid type for 'prompt[0]': expected a string, but got %s (token arrays are "
                                 "not supported).", json_type_name(p));
    }
    if (!json_is_string(p))
        return BAD("prompt", "Invalid type for 'prompt': expected a string or an array of one string, but got %s.",
                   json_type_name(p));
    r->prompt = dup_json_string(p);
    return r->prompt ? 0 : nomem(e);
}

/* ---- stop, logit_bias ---- */

static int parse_stop(json_t *root, struct oai_request *r, struct oai_error *e)
{
    json_t *s = json_object_get(root, "stop");
    if (!s || json_is_null(s))
        return 0;
    if (json_is_string(s)) {
        if (json_string_length(s) == 0)
            return 0;
        if (!(r->stop[0] = dup_json_string(s)))
            return nomem(e);
        r->n_stop = 1;
        return 0;
    }
    if (!json_is_array(s))
        return BAD("stop", "Invalid type for 'stop': expected a string or an array of strings, but got %s.",
                   json_type_name(s));
    if (json_array_size(s) > OAI_MAX_STOP)
        return BAD("stop", "Invalid 'stop': array too long. Expected at most %d strings, but got %zu.", OAI_MAX_STOP,
                   json_array_size(s));
    for (size_t i = 0; i < json_array_size(s); i++) {
        json_t *v = json_array_get(s, i);
        if (!json_is_string(v)) {
            char param[32];
            snprintf(param, sizeof param, "stop[%zu]", i);
            return BAD(param, "Invalid type for '%s': expected a string, but got %s.", param, json_type_name(v));
        }
        if (json_string_length(v) == 0)
            continue;
        if (!(r->stop[r->n_stop] = dup_json_string(v)))
            return nomem(e);
        r->n_stop++;
    }
    return 0;
}

#define OAI_MAX_BIAS 1024

static int parse_logit_bias(json_t *root, struct oai_request *r, struct oai_error *e)
{
    json_t *b = json_object_get(root, "logit_bias"), *v;
    const char *key;
    if (!b || json_is_null(b))
        return 0;
    if (!json_is_object(b))
        return BAD("logit_bias", "Invalid type for 'logit_bias': expected an object, but got %s.",
                   json_type_name(b));
    size_t n = json_object_size(b);
    if (n == 0)
        return 0;
    if (n > OAI_MAX_BIAS)
        return BAD("logit_bias", "Invalid 'logit_bias': at most %d tokens may be biased (got %zu).", OAI_MAX_BIAS, n);
    r->bias = calloc(n, sizeof *r->bias);
    if (!r->bias)
        return nomem(e);
    json_object_foreach(b, key, v) {
        char *end;
        errno = 0;
        long id = strtol(key, &end, 10);
        if (!*key || *end || errno || id < 0 || id > INT32_MAX || key[0] == '+' || key[0] == ' ')
            return BAD("logit_bias", "Invalid key '%.40s' in 'logit_bias': expected a token id (a non-negative "
                                     "integer as a string).", key);
        if (!json_is_number(v))
            return BAD("logit_bias", "Invalid value for token '%s' in 'logit_bias': expected a number, but got %s.",
                       key, json_type_name(v));
        double x = json_number_value(v);
        if (!(x >= -100 && x <= 100))
            return BAD("logit_bias", "Invalid value for token '%s' in 'logit_bias': %g is not in [-100, 100].", key,
                       x);
        r->bias[r->n_bias].token = (int32_t)id;
        r->bias[r->n_bias].bias = (float)x;
        r->n_bias++;
    }
    return 0;
}

/* ---- the request ---- */

static int parse_model(json_t *root, struct oai_request *r, struct oai_error *e)
{
    json_t *model = json_object_get(root, "model");
    if (!model || json_is_null(model))
        return BAD("model", "Missing required parameter: 'model'.");
    if (!json_is_string(model))
        return BAD("model", "Invalid type for 'model': expected a string, but got %s.", json_type_name(model));
    if (json_string_length(model) == 0)
        return BAD("model", "Invalid 'model': empty string.");
    if (!(r->model = dup_json_string(model)))
        return nomem(e);
    return 0;
}

/* Fields that change what the answer must be and that this server does
 * not honour: the older functions (tools replace them), audio, prediction,
 * web_search_options, modalities other than text. A 400 naming the
 * field, never a silently different answer. (tools and tool_choice:
 * oai_tools.c; response_format and grammar: parse_structured below.) */
static int parse_output_shaping(json_t *root, struct oai_error *e)
{
    json_t *fv = json_object_get(root, "functions");
    if (fv && !json_is_null(fv) && !(json_is_array(fv) && json_array_size(fv) == 0))
        return BAD("functions", "Unsupported parameter: 'functions' is deprecated; send them as 'tools'.");
    /* OpenAI's fields for outputs this server cannot make (audio, predicted
     * outputs, web search): refused, never silently dropped */
    static const char *const absent[] = {"audio", "prediction", "web_search_options"};
    for (size_t i = 0; i < sizeof absent / sizeof *absent; i++) {
        json_t *v = json_object_get(root, absent[i]);
        if (v && !json_is_null(v))
            return BAD(absent[i], "Unsupported parameter: '%s' is not supported by this server.", absent[i]);
    }
    json_t *mods = json_object_get(root, "modalities");
    if (mods && !json_is_null(mods)) {
        size_t i;
        json_t *m;
        if (!json_is_array(mods))
            return BAD("modalities", "Invalid type for 'modalities': expected an array of strings.");
        json_array_foreach(mods, i, m) {
            if (!json_is_string(m) || strcmp(json_string_value(m), "text") != 0)
                return BAD("modalities", "Unsupported value: 'modalities' may only hold \"text\" on this server.");
        }
    }
    return 0;
}

/* ---- structured output: response_format and grammar ---- */

/* The GBNF of response_format (NULL for text), or -1 with the error. */
static int response_format_gbnf(json_t *rf, char **out, struct oai_error *e)
{
    *out = NULL;
    const char *type = json_string_value(json_object_get(rf, "type"));
    if (!json_is_object(rf) || !type)
        return BAD("response_format", "Invalid type for 'response_format': expected an object with a string 'type'.");
    if (!strcmp(type, "text"))
        return 0;
    char *schema = NULL;
    if (!strcmp(type, "json_object")) {
        schema = strdup("{\"type\":\"json_object\"}");
    } else if (!strcmp(type, "json_schema")) {
        json_t *js = json_object_get(rf, "json_schema");
        json_t *sch = json_object_get(js, "schema");
        if (!json_is_object(js) || !(json_is_object(sch) || json_is_boolean(sch)))
            return BAD("response_format", "Invalid 'response_format': type 'json_schema' needs 'json_schema' with an "
                       "object 'schema'.");
        schema = json_dumps(sch, JSON_COMPACT | JSON_ENCODE_ANY);
    } else {
        return BAD("response_format", "Invalid value for 'response_format': type '%.64s' is not one of 'text', "
                   "'json_object', 'json_schema'.", type);
    }
    if (!schema)
        return oai_err(e, 500, "server_error", NULL, NULL, "Out of memory.");
    struct err ge;
    *out = grammar_schema_to_gbnf(schema, NULL, &ge);
    free(schema);
    if (!*out)
        return ge.code == ERR_NOMEM ? oai_err(e, 500, "server_error", NULL, NULL, "Out of memory.")
                                    : BAD("response_format", "Invalid 'response_format': %s.", ge.msg);
    return 0;
}

/* response_format (json_object, json_schema) or `grammar` (GBNF, an
 * extension as llama.cpp's server has it) into r->grammar. The GBNF is
 * compiled (and its errors reported) when the job starts. */
static int parse_structured(json_t *root, struct oai_request *r, struct oai_error *e)
{
    json_t *rf = json_object_get(root, "response_format"), *g = json_object_get(root, "grammar");
    if (rf && !json_is_null(rf) && response_format_gbnf(rf, &r->grammar, e) < 0)
        return -1;
    if (r->grammar)
        r->grammar_param = "response_format";
    if (!g || json_is_null(g))
        return 0;
    if (!json_is_string(g))
        return BAD("grammar", "Invalid type for 'grammar': expected a string (GBNF), but got %s.", json_type_name(g));
    if (r->grammar)
        return BAD("grammar", "Invalid 'grammar': give either 'grammar' or a JSON 'response_format', not both.");
    if (!(r->grammar = strdup(json_string_value(g))))
        return oai_err(e, 500, "server_error", NULL, NULL, "Out of memory.");
    r->grammar_param = "grammar";
    return 0;
}

/* n, the output-shaping fields above, and the completion parameters this
 * server refuses (best_of, echo, suffix). */
static int parse_unsupported(enum oai_kind kind, json_t *root, struct oai_error *e)
{
    long long ll;
    int rc;
    if (parse_output_shaping(root, e) < 0)
        return -1;
    if ((rc = get_int(root, "n", 1, LLONG_MAX, &ll, e)) < 0)
        return -1;
    if (rc && ll != 1)
        return BAD("n", "Invalid value for 'n': this server generates one choice per request (n must be 1, got %lld).",
                   ll);
    if (kind != OAI_COMPLETION)
        return 0;
    if ((rc = get_int(root, "best_of", 1, 1, &ll, e)) < 0)
        return -1;
    bool echo = false;
    if (get_bool(root, "echo", &echo, e) < 0)
        return -1;
    if (echo)
        return BAD("echo", "Unsupported parameter: 'echo' is not supported by this server.");
    json_t *suf = json_object_get(root, "suffix");
    if (suf && !json_is_null(suf)) {
        if (!json_is_string(suf))
            return BAD("suffix", "Invalid type for 'suffix': expected a string, but got %s.", json_type_name(suf));
        if (json_string_length(suf))
            return BAD("suffix", "Unsupported parameter: 'suffix' is not supported by this server.");
    }
    return 0;
}

/* max_tokens, temperature, top_p, the penalties and seed, with their defaults. */
static int parse_sampling(json_t *root, struct oai_request *r, struct oai_error *e)
{
    long long ll;
    double d;
    int rc;
    r->max_tokens = -1;
    if ((rc = get_int(root, "max_tokens", 1, 1 << 30, &ll, e)) < 0)
        return -1;
    if (rc)
        r->max_tokens = (int)ll;
    if ((rc = get_int(root, "max_completion_tokens", 1, 1 << 30, &ll, e)) < 0)
        return -1;
    if (rc)
        r->max_tokens = (int)ll;

    r->temperature = 1;
    if ((rc = get_number(root, "temperature", 0, 2, false, &d, e)) < 0)
        return -1;
    if (rc)
        r->temperature = (float)d;
    r->top_p = 1;
    if ((rc = get_number(root, "top_p", 0, 1, true, &d, e)) < 0)
        return -1;
    if (rc)
        r->top_p = (float)d;
    if ((rc = get_number(root, "presence_penalty", -2, 2, false, &d, e)) < 0)
        return -1;
    if (rc)
        r->presence_penalty = (float)d;
    if ((rc = get_number(root, "frequency_penalty", -2, 2, false, &d, e)) < 0)
        return -1;
    if (rc)
        r->frequency_penalty = (float)d;

    if ((rc = get_int(root, "seed", LLONG_MIN, LLONG_MAX, &ll, e)) < 0)
        return -1;
    if (rc) {
        r->has_seed = true;
        r->seed = (uint64_t)ll;
    }
    return 0;
}

/* Chat: logprobs (a boolean) and top_logprobs; completions: logprobs (a count). */
static int parse_logprobs(enum oai_kind kind, json_t *root, struct oai_request *r, struct oai_error *e)
{
    long long ll;
    int rc;
    if (kind == OAI_CHAT) {
        if (get_bool(root, "logprobs", &r->logprobs, e) < 0)
            return -1;
        if ((rc = get_int(root, "top_logprobs", 0, SAMPLE_MAX_TOP, &ll, e)) < 0)
            return -1;
        if (rc) {
            if (!r->logprobs)
                return BAD("top_logprobs", "Invalid value for 'top_logprobs': 'logprobs' must be set to true when "
                                           "'top_logprobs' is used.");
            r->top_logprobs = (int)ll;
        }
        return 0;
    }
    if ((rc = get_int(root, "logprobs", 0, SAMPLE_MAX_TOP, &ll, e)) < 0)
        return -1;
    if (rc) {
        r->logprobs = true;
        r->top_logprobs = (int)ll;
    }
    return 0;
}

/* user, stream and stream_options. */
static int parse_user_stream(json_t *root, struct oai_request *r, struct oai_error *e)
{
    json_t *user = json_object_get(root, "user");
    if (user && !json_is_null(user)) {
        if (!json_is_string(user))
            return BAD("user", "Invalid type for 'user': expected a string, but got %s.", json_type_name(user));
        if (!(r->user = dup_json_string(user)))
            return nomem(e);
    }

    if (get_bool(root, "stream", &r->stream, e) < 0)
        return -1;
    json_t *so = json_object_get(root, "stream_options");
    if (so && !json_is_null(so)) {
        if (!json_is_object(so))
            return BAD("stream_options", "Invalid type for 'stream_options': expected an object, but got %s.",
                       json_type_name(so));
        json_t *iu = json_object_get(so, "include_usage");
        if (iu && !json_is_null(iu)) {
            if (!json_is_boolean(iu))
                return BAD("stream_options.include_usage",
                           "Invalid type for 'stream_options.include_usage': expected a boolean, but got %s.",
                           json_type_name(iu));
            r->include_usage = json_is_true(iu);
        }
        if (!r->stream)
            return BAD("stream_options", "Invalid value for 'stream_options': only allowed when 'stream' is true.");
    }
    return 0;
}

/* The request's fields, checked in the order of their error messages' precedence. */
static int parse_root(enum oai_kind kind, json_t *root, struct oai_request *r, struct oai_error *e)
{
    if (parse_model(root, r, e) < 0)
        return -1;
    if (kind == OAI_CHAT ? parse_messages(root, r, e) < 0 || oai_parse_tools(root, r, e) < 0
                         : parse_prompt(root, r, e) < 0)
        return -1;
    if (parse_unsupported(kind, root, e) < 0 || parse_structured(root, r, e) < 0 || parse_sampling(root, r, e) < 0 ||
        parse_stop(root, r, e) < 0 ||
        parse_logit_bias(root, r, e) < 0 || parse_logprobs(kind, root, r, e) < 0 || parse_user_stream(root, r, e) < 0)
        return -1;
    return 0;
}

int oai_parse_request(enum oai_kind kind, const char *body, size_t len, struct oai_request *out,
                      struct oai_error *e)
{
    struct oai_request r;
    memset(&r, 0, sizeof r);
    memset(out, 0, sizeof *out);
    r.kind = kind;
    json_error_t je;
    json_t *root = json_loadb(body ? body : "", len, 0, &je);
    if (!root)
        return oai_err(e, 400, "invalid_request_error", NULL, "invalid_json",
                       "We could not parse the JSON body of your request: %s (line %d, column %d).", je.text, je.line,
                       je.column);
    if (!json_is_object(root)) {
        oai_err(e, 400, "invalid_request_error", NULL, "invalid_json",
                "The body of your request must be a JSON object, not %s.", json_type_name(root));
        json_decref(root);
        return -1;
    }
    int rc = parse_root(kind, root, &r, e);
    json_decref(root);
    if (rc < 0) {
        oai_request_release(&r);
        return -1;
    }
    *out = r;
    return 0;
}

void oai_request_release(struct oai_request *r)
{
    free(r->model);
    for (int i = 0; i < r->n_msgs; i++) {
        free(r->msgs[i].role);
        free(r->msgs[i].content);
    }
    free(r->msgs);
    free(r->prompt);
    for (int i = 0; i < r->n_stop; i++)
        free(r->stop[i]);
    free(r->bias);
    free(r->user);
    free(r->chat_vars);
    free(r->tool_choice_name);
    free(r->grammar);
    memset(r, 0, sizeof *r);
}

/* ---- text ---- */

/* Length of the valid UTF-8 character at s[0..n), or 0 if invalid. */
static size_t utf8_char_len(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    size_t len;
    unsigned min;
    if (c < 0x80)
        return c ? 1 : 0;
    if ((c & 0xE0) == 0xC0)
        len = 2, min = 0x80, c &= 0x1F;
    else if ((c & 0xF0) == 0xE0)
        len = 3, min = 0x800, c &= 0x0F;
    else if ((c & 0xF8) == 0xF0)
        len = 4, min = 0x10000, c &= 0x07;
    else
        return 0;
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        c = (c << 6) | (s[i] & 0x3F);
    }
    if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
        return 0;
    return len;
}

char *oai_utf8_sanitize(const char *s, size_t n, size_t *out_len)
{
    char *o = malloc(n * 3 + 1);
    if (!o)
        return NULL;
    size_t at = 0;
    for (size_t i = 0; i < n;) {
        size_t l = utf8_char_len((const unsigned char *)s + i, n - i);
        if (l) {
            memcpy(o + at, s + i, l);
            at += l, i += l;
        } else {
            memcpy(o + at, "\xEF\xBF\xBD", 3);
            at += 3, i++;
        }
    }
    o[at] = 0;
    if (out_len)
        *out_len = at;
    return o;
}

static json_t *jstr(const char *s, size_t n)
{
    size_t l;
    char *c = oai_utf8_sanitize(s ? s : "", s ? n : 0, &l);
    if (!c)
        return NULL;
    json_t *v = json_stringn_nocheck(c, l);
    free(c);
    return v;
}

static json_t *jlogprob(float x)
{
    return json_real(isfinite(x) ? (double)x : -9999.0);
}

static json_t *jbytes(const char *s, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < n; i++)
        json_array_append_new(a, json_integer((unsigned char)s[i]));
    return a;
}

/* ---- logprobs ---- */

struct oai_logprobs {
    enum oai_kind kind;
    json_t *content;                              /* chat: array of entries */
    json_t *tokens, *token_lps, *tops, *offsets;  /* completions */
    int n;
};

struct oai_logprobs *oai_logprobs_new(enum oai_kind kind)
{
    struct oai_logprobs *lp = calloc(1, sizeof *lp);
    if (!lp)
        return NULL;
    lp->kind = kind;
    lp->content = json_array();
    lp->tokens = json_array();
    lp->token_lps = json_array();
    lp->tops = json_array();
    lp->offsets = json_array();
    if (!lp->content || !lp->tokens || !lp->token_lps || !lp->tops || !lp->offsets) {
        oai_logprobs_free(lp);
        return NULL;
    }
    return lp;
}

void oai_logprobs_free(struct oai_logprobs *lp)
{
    if (!lp)
        return;
    json_decref(lp->content);
    json_decref(lp->tokens);
    json_decref(lp->token_lps);
    json_decref(lp->tops);
    json_decref(lp->offsets);
    free(lp);
}

int oai_logprobs_add(struct oai_logprobs *lp, const struct oai_token_lp *t, size_t text_offset)
{
    int rc = 0;
    if (lp->kind == OAI_CHAT) {
        json_t *ent = json_object(), *top = json_array();
        if (!ent || !top) {
            json_decref(ent);
            json_decref(top);
            return -1;
        }
        rc |= json_object_set_new(ent, "token", jstr(t->bytes, t->n_bytes));
        rc |= json_object_set_new(ent, "logprob", jlogprob(t->logprob));
        rc |= json_object_set_new(ent, "bytes", jbytes(t->bytes, t->n_bytes));
        for (int i = 0; i < t->n_top; i++) {
            json_t *o = json_object();
            if (!o) {
                rc = -1;
                break;
            }
            rc |= json_object_set_new(o, "token", jstr(t->top[i].bytes, t->top[i].n_bytes));
            rc |= json_object_set_new(o, "logprob", jlogprob(t->top[i].logprob));
            rc |= json_object_set_new(o, "bytes", jbytes(t->top[i].bytes, t->top[i].n_bytes));
            rc |= json_array_append_new(top, o);
        }
        rc |= json_object_set_new(ent, "top_logprobs", top);
        rc |= json_array_append_new(lp->content, ent);
    } else {
        json_t *top = json_object();
        if (!top)
            return -1;
        for (int i = 0; i < t->n_top; i++) {
            size_t l;
            char *k = oai_utf8_sanitize(t->top[i].bytes, t->top[i].n_bytes, &l);
            if (!k) {
                rc = -1;
                break;
            }
            rc |= json_object_setn_new_nocheck(top, k, l, jlogprob(t->top[i].logprob));
            free(k);
        }
        rc |= json_array_append_new(lp->tokens, jstr(t->bytes, t->n_bytes));
        rc |= json_array_append_new(lp->token_lps, jlogprob(t->logprob));
        rc |= json_array_append_new(lp->tops, top);
        rc |= json_array_append_new(lp->offsets, json_integer((json_int_t)text_offset));
    }
    lp->n++;
    return rc ? -1 : 0;
}

void oai_logprobs_clear(struct oai_logprobs *lp)
{
    json_array_clear(lp->content);
    json_array_clear(lp->tokens);
    json_array_clear(lp->token_lps);
    json_array_clear(lp->tops);
    json_array_clear(lp->offsets);
    lp->n = 0;
}

int oai_logprobs_count(const struct oai_logprobs *lp)
{
    return lp->n;
}

static json_t *logprobs_json(const struct oai_logprobs *lp)
{
    if (!lp)
        return json_null();
    if (lp->kind == OAI_CHAT)
        return json_pack("{s:O}", "content", lp->content);
    return json_pack("{s:O,s:O,s:O,s:O}", "tokens", lp->tokens, "token_logprobs", lp->token_lps, "top_logprobs",
                     lp->tops, "text_offset", lp->offsets);
}

/* ---- responses ---- */

static json_t *usage_json(const struct oai_usage *u)
{
    json_t *o = json_pack("{s:i,s:i,s:i,s:{s:i},s:{s:i}}", "prompt_tokens", u->prompt_tokens, "completion_tokens",
                          u->completion_tokens, "total_tokens", u->prompt_tokens + u->completion_tokens,
                          "prompt_tokens_details", "cached_tokens", u->cached_tokens, "completion_tokens_details",
                          "reasoning_tokens", u->reasoning_tokens);
    if (o && u->cost[0] && json_object_set_new(o, "cost", json_string(u->cost))) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static json_t *finish_json(const char *finish_reason)
{
    return finish_reason ? json_string(finish_reason) : json_null();
}

static json_t *envelope(const struct oai_meta *m, const char *object)
{
    json_t *o = json_object();
    if (!o)
        return NULL;
    int rc = 0;
    rc |= json_object_set_new(o, "id", json_string(m->id));
    rc |= json_object_set_new(o, "object", json_string(object));
    rc |= json_object_set_new(o, "created", json_integer(m->created));
    rc |= json_object_set_new(o, "model", jstr(m->model, strlen(m->model)));
    rc |= json_object_set_new(o, "system_fingerprint", json_string("maas"));
    if (rc) {
        json_decref(o);
        return NULL;
    }
    return o;
}

char *oai_build_response(const struct oai_meta *m, const char *text, size_t len, const char *finish_reason,
                         const struct oai_logprobs *lp, const struct oai_usage *u)
{
    json_t *o = envelope(m, m->kind == OAI_CHAT ? "chat.completion" : "text_completion");
    json_t *choice;
    if (!o)
        return NULL;
    if (m->kind == OAI_CHAT)
        choice = json_pack("{s:i,s:{s:s,s:o,s:n},s:o,s:o}", "index", 0, "message", "role", "assistant", "content",
                           jstr(text, len), "refusal", "logprobs", logprobs_json(lp), "finish_reason",
                           finish_json(finish_reason));
    else
        choice = json_pack("{s:i,s:o,s:o,s:o}", "index", 0, "text", jstr(text, len), "logprobs", logprobs_json(lp),
                           "finish_reason", finish_json(finish_reason));
    if (choice && m->parts && oai_parts_apply(json_object_get(choice, "message"), m->parts, false) < 0) {
        json_decref(choice);
        choice = NULL;
    }
    if (!choice || json_object_set_new(o, "choices", json_pack("[o]", choice)) ||
        json_object_set_new(o, "usage", usage_json(u))) {
        json_decref(o);
        return NULL;
    }
    return srv_json_dump(o);
}

char *oai_build_chunk(const struct oai_meta *m, bool with_role, const char *text, size_t len,
                      const char *finish_reason, const struct oai_logprobs *lp)
{
    json_t *o = envelope(m, m->kind == OAI_CHAT ? "chat.completion.chunk" : "text_completion");
    json_t *choice;
    if (!o)
        return NULL;
    if (m->kind == OAI_CHAT) {
        json_t *delta = json_object();
        if (delta && with_role)
            json_object_set_new(delta, "role", json_string("assistant"));
        if (delta && text)
            json_object_set_new(delta, "content", jstr(text, len));
        if (delta && m->parts && oai_parts_apply(delta, m->parts, true) < 0) {
            json_decref(delta);
            delta = NULL;
        }
        choice = json_pack("{s:i,s:o,s:o,s:o}", "index", 0, "delta", delta, "logprobs", logprobs_json(lp),
                           "finish_reason", finish_json(finish_reason));
    } else {
        choice = json_pack("{s:i,s:o,s:o,s:o}", "index", 0, "text", jstr(text, text ? len : 0), "logprobs",
                           logprobs_json(lp), "finish_reason", finish_json(finish_reason));
    }
    if (!choice || json_object_set_new(o, "choices", json_pack("[o]", choice)) ||
        json_object_set_new(o, "usage", json_null())) {
        json_decref(o);
        return NULL;
    }
    return srv_json_dump(o);
}

char *oai_build_usage_chunk(const struct oai_meta *m, const struct oai_usage *u)
{
    json_t *o = envelope(m, m->kind == OAI_CHAT ? "chat.completion.chunk" : "text_completion");
    if (!o)
        return NULL;
    if (json_object_set_new(o, "choices", json_array()) || json_object_set_new(o, "usage", usage_json(u))) {
        json_decref(o);
        return NULL;
    }
    return srv_json_dump(o);
}

char *oai_build_error(const struct oai_error *e)
{
    json_t *err = json_object();
    if (!err)
        return NULL;
    json_object_set_new(err, "message", jstr(e->message, strlen(e->message)));
    json_object_set_new(err, "type", json_string(e->type[0] ? e->type : "invalid_request_error"));
    json_object_set_new(err, "param", e->param[0] ? jstr(e->param, strlen(e->param)) : json_null());
    json_object_set_new(err, "code", e->code[0] ? json_string(e->code) : json_null());
    return srv_json_dump(json_pack("{s:o}", "error", err));
}

static json_t *model_obj(const struct oai_model_desc *m, int64_t created)
{
    return json_pack("{s:o,s:s,s:I,s:s,s:s}", "id", jstr(m->name, strlen(m->name)), "object", "model", "created",
                     (json_int_t)created, "owned_by", "maas", "kind", m->kind);
}

char *oai_build_models(const struct oai_model_desc *ms, int n, int64_t created)
{
    json_t *data = json_array();
    for (int i = 0; data && i < n; i++)
        if (json_array_append_new(data, model_obj(&ms[i], created))) {
            json_decref(data);
            return NULL;
        }
    return srv_json_dump(json_pack("{s:s,s:o}", "object", "list", "data", data));
}

char *oai_build_model(const struct oai_model_desc *m, int64_t created)
{
    return srv_json_dump(model_obj(m, created));
}
