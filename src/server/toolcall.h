/*
 * server/toolcall.h — the model's output split into content, reasoning and
 * tool calls, for the call formats real chat templates define.
 *
 * The format is chosen from the chat template's text (markers only that
 * format writes), never from a model name:
 *
 *   format         chosen when the template has   a call looks like
 *   hermes         <tool_call>                     <tool_call>{"name":N,"arguments":{..}}</tool_call>
 *   glm45          <tool_call> and <arg_key>       <tool_call>N\n<arg_key>k</arg_key>\n<arg_value>v</arg_value></tool_call>
 *   llama3         <|python_tag|>                  {"name":N,"parameters":{..}} (the whole output) or
 *                                                  <|python_tag|>{"name":N,"parameters":{..}}
 *   mistral        [TOOL_CALLS]                    [TOOL_CALLS][{"name":N,"arguments":{..}},..] or
 *                                                  [TOOL_CALLS]N[ARGS]{..} (v11+ templates, [ARGS])
 *   deepseek       <｜tool▁calls▁begin｜>           <｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>N
 *                                                  \n```json\n{..}\n```<｜tool▁call▁end｜>..<｜tool▁calls▁end｜>
 *                                                  (V3.1: <｜tool▁call▁begin｜>N<｜tool▁sep｜>{..}<｜tool▁call▁end｜>)
 *   command-r7b    <|START_ACTION|>                <|START_ACTION|>[{"tool_call_id":"0","tool_name":N,
 *                                                  "parameters":{..}}]<|END_ACTION|>
 *   functionary    >>>                             N\n{..} at the start or >>>N\n{..}; "all\n" starts text
 *   functionary31  <function= (without <tool_call>) <function=N>{..}</function>
 *   kimi-k2        <|tool_calls_section_begin|>    <|tool_calls_section_begin|><|tool_call_begin|>functions.N:0
 *                                                  <|tool_call_argument_begin|>{..}<|tool_call_end|>..
 *                                                  <|tool_calls_section_end|>
 *   harmony        <|channel|>                     <|channel|>commentary to=functions.N <|constrain|>json
 *                                                  <|message|>{..}<|call|>  (gpt-oss)
 *   granite        <|tool_call|>                   <|tool_call|>[{"name":N,"arguments":{..}},..]
 *   qwen3-coder    <tool_call> and <function=      <tool_call>\n<function=N>\n<parameter=k>\nv\n</parameter>\n
 *                                                  </function>\n</tool_call>
 *
 * Reasoning: <think>…</think> when the template mentions <think> (Qwen3,
 * QwQ, DeepSeek-R1, GLM-4.5, Granite 3.3, …), <|START_THINKING|>… for
 * Command R7B, the analysis channel for harmony. When the rendered prompt
 * ends inside an opened <think>, the output starts in reasoning.
 *
 * Non-streaming: tc_parse over the whole text. Streaming: tc_stream_feed
 * with each piece of text; it hands back only what is settled — text that
 * might be the start of a marker, and a call until it is complete and
 * parsed, are held back — so the concatenation of the deltas equals what
 * tc_parse gives for the whole text. A call that does not parse (bad JSON,
 * no name) is returned as content, as it was written.
 *
 * Pure functions over jansson; no globals: safe from every thread.
 */
#ifndef MAAS_SERVER_TOOLCALL_H
#define MAAS_SERVER_TOOLCALL_H

#include "core/core.h"

#include <stdbool.h>
#include <stddef.h>

enum tc_format {
    TC_NONE,
    TC_HERMES,
    TC_GLM45,
    TC_LLAMA3,
    TC_MISTRAL,
    TC_DEEPSEEK,
    TC_COMMAND_R7B,
    TC_FUNCTIONARY,
    TC_FUNCTIONARY31,
    TC_KIMI_K2,
    TC_HARMONY,
    TC_GRANITE,
    TC_QWEN3_CODER,
    TC_FORMAT_COUNT,
};

/* How a body between call_open and call_close is laid out. */
enum tc_layout {
    TC_LAYOUT_JSON,     /* a JSON object {name, arguments|parameters} or an array of them */
    TC_LAYOUT_NAME_ARGS, /* the name, then name_sep, then the arguments as a JSON object */
    TC_LAYOUT_GLM,      /* the name, then <arg_key>k</arg_key><arg_value>v</arg_value> pairs */
    TC_LAYOUT_HARMONY,  /* harmony messages; a call is a commentary message to=functions.N */
    TC_LAYOUT_XML,      /* <function=N><parameter=k>v</parameter>...</function> */
};

/* A format's call syntax (toolgrammar.c forces calls written in it).
 * Strings are "" when the format has no such marker.
 *   section_open  section_close: around all the calls of a turn (DeepSeek, Kimi)
 *   call_open     call_close:    around one call ("" close: the call runs to
 *                                the next call_open or the end of the output)
 *   name_sep:     between the name and the arguments (NAME_ARGS layout)
 *   lead_call:    a call may also start the output without call_open
 *                 (Llama 3's bare JSON, Functionary's "N\n{..}") */
/* DeepSeek's markers (fullwidth bars, U+2581 for spaces). */
#define TC_DS_CALLS_BEGIN "<\xEF\xBD\x9Ctool\xE2\x96\x81" "calls\xE2\x96\x81" "begin\xEF\xBD\x9C>"
#define TC_DS_CALLS_END "<\xEF\xBD\x9Ctool\xE2\x96\x81" "calls\xE2\x96\x81" "end\xEF\xBD\x9C>"
#define TC_DS_CALL_BEGIN "<\xEF\xBD\x9Ctool\xE2\x96\x81" "call\xE2\x96\x81" "begin\xEF\xBD\x9C>"
#define TC_DS_CALL_END "<\xEF\xBD\x9Ctool\xE2\x96\x81" "call\xE2\x96\x81" "end\xEF\xBD\x9C>"
#define TC_DS_SEP "<\xEF\xBD\x9Ctool\xE2\x96\x81sep\xEF\xBD\x9C>"

struct tc_syntax {
    const char *name;
    const char *section_open, *section_close;
    const char *call_open, *call_close;
    enum tc_layout layout;
    const char *name_sep;
    bool lead_call;
    const char *think_open, *think_close; /* the reasoning markers the format's models write, "" = none */
};

/* The syntax of format f (TC_NONE: all empty). */
const struct tc_syntax *tc_syntax(enum tc_format f);
const char *tc_format_name(enum tc_format f);

/* What tc_parse needs: the call format, the reasoning markers and whether
 * the output starts inside reasoning. */
struct tc_config {
    enum tc_format fmt;              /* TC_NONE: no call is looked for */
    const char *think_open, *think_close; /* NULL: no reasoning */
    bool start_in_think;
    bool calls;                      /* calls are looked for (harmony always splits channels) */
};

/* The config for a chat template's text: the call format when tools is
 * true (the request has tools and tool_choice is not "none"), the reasoning
 * markers when the template writes them; prompt (the rendered prompt, may
 * be NULL) tells whether the output starts inside reasoning. Returns true
 * when anything is to be parsed at all. */
bool tc_config_for(struct tc_config *c, const char *template_text, bool tools, const char *prompt, size_t prompt_len);

struct tc_call {
    char *name;       /* from malloc, UTF-8 */
    char *arguments;  /* from malloc: a JSON object, compact */
};

struct tc_result {
    struct sbuf content;
    struct sbuf reasoning;
    struct tc_call *calls;
    int n_calls, cap_calls;
    bool in_reasoning;   /* the text ended inside reasoning */
};

/* Splits text[0..n). final: the whole output (nothing held back); else the
 * result stops at the first point that is not settled yet. r must be
 * zeroed or released before. 0, or -1 on out of memory. */
int tc_parse(const struct tc_config *c, const char *text, size_t n, bool final, struct tc_result *r);
void tc_result_release(struct tc_result *r); /* leaves r zeroed */

/* ---- streaming ---- */
struct tc_stream;

/* What one feed settled: content and reasoning bytes (pointers into the
 * stream, valid until the next call) and the calls completed by it. */
struct tc_delta {
    const char *content;
    size_t n_content;
    const char *reasoning;
    size_t n_reasoning;
    const struct tc_call *calls;
    int n_calls;
    int first_index;   /* index of calls[0] among all the calls of the output */
};

struct tc_stream *tc_stream_new(const struct tc_config *c); /* NULL on out of memory */
void tc_stream_free(struct tc_stream *s);                   /* NULL does nothing */
/* Adds text[0..n) (final: it is the last piece). 0 with *d, or -1 on out of memory. */
int tc_stream_feed(struct tc_stream *s, const char *text, size_t n, bool final, struct tc_delta *d);
/* True while the text so far ends inside reasoning. */
bool tc_stream_in_reasoning(const struct tc_stream *s);
/* The result of the whole output once fed with final (else of the text so far). */
const struct tc_result *tc_stream_result(const struct tc_stream *s);

/* ---- forcing a call (toolgrammar.c) ---- */
struct json_t;

/* Whether a call can be forced in format f: hermes, llama3 (bare JSON, one
 * call), mistral (the JSON array form), granite, command-r7b, deepseek (V3
 * form), kimi-k2, functionary31, functionary. Not glm45, qwen3-coder,
 * harmony. */
bool tc_forcible(enum tc_format f);

/* The GBNF of the calls tool_choice allows in c->fmt: one call (several
 * when parallel, only is NULL and the format has several per turn) of a
 * tool of tools (a JSON array of OpenAI tools; only: that one), its
 * arguments valid for the tool's parameters (any JSON object without).
 * When the template has reasoning markers, the output may start with
 * reasoning (must, when c->start_in_think) written without the close
 * marker's first two bytes. A string from malloc; NULL with ERR_INVALID
 * (*bad_tool the tool's index when its schema cannot be enforced, else -1)
 * or ERR_NOMEM. */
char *tc_forced_gbnf(const struct tc_config *c, struct json_t *tools, const char *only, bool parallel, int *bad_tool,
                     struct err *e);

/* tool_choice "auto": the GBNF of the call(s) the model may start (as
 * tc_forced_gbnf, without reasoning) and the trigger that starts them —
 * the format's marker opening the calls (section_open, else call_open;
 * the grammar starts with it) with the template's reasoning markers as
 * the spans where it is not looked for — for grammar_set_trigger. Same
 * formats and errors as tc_forced_gbnf. */
struct grammar_trigger;
char *tc_auto_gbnf(const struct tc_config *c, struct json_t *tools, bool parallel, struct grammar_trigger *trig,
                   int *bad_tool, struct err *e);

/* The format's marker strings (at most 7) that vocabularies often hold as
 * control tokens, for grammar_allow_control. Returns how many. */
int tc_forced_markers(const struct tc_config *c, const char *out[8]);

#endif
