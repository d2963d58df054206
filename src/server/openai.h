/*
 * server/openai.h — OpenAI's JSON schemas, in and out: request bodies of
 * /v1/chat/completions and /v1/completions parsed and validated into a plain
 * C struct, and the response objects (whole, SSE chunks, usage chunk, error,
 * model list) built as JSON text.
 *
 * Validation happens here once, at the edge: a body that passes
 * oai_parse_request has every field in range, and inner code asserts nothing
 * about it. A body that fails gives a struct oai_error whose status is the
 * HTTP status to answer (400) and whose param names the offending parameter
 * (NULL-string "" for a body that is not JSON at all). Unknown fields are
 * ignored, as OpenAI's API does.
 *
 * Pure functions over jansson; no threads, no globals: safe from every HTTP
 * thread at once.
 */
#ifndef MAAS_SERVER_OPENAI_H
#define MAAS_SERVER_OPENAI_H

#include "sample/sample.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define OAI_MAX_STOP 4

enum oai_kind { OAI_CHAT, OAI_COMPLETION, OAI_EMBEDDING /* /v1/embeddings (server/embed.c) */ };

struct oai_error {
    int status;          /* HTTP status: 400, 404, 405, 413, 429, 500, 503 */
    char type[32];       /* "invalid_request_error", "server_error", ... */
    char param[64];      /* the offending parameter; "" = null */
    char code[48];       /* "" = null */
    char message[512];
    int retry_after;     /* seconds for Retry-After on 429/503; 0 = 1 */
};

/* Fills e and returns -1 (so callers can `return oai_err(...)`). */
int oai_err(struct oai_error *e, int status, const char *type, const char *param, const char *code,
            const char *fmt, ...) __attribute__((format(printf, 6, 7)));

enum oai_tool_choice { OAI_TOOL_AUTO, OAI_TOOL_NONE, OAI_TOOL_REQUIRED, OAI_TOOL_NAMED };

struct oai_msg {
    char *role;     /* from malloc: "system", "user", "assistant" or "tool" ("developer" becomes "system") */
    char *content;  /* from malloc, NUL-terminated UTF-8 (text parts joined) */
};

struct oai_request {
    enum oai_kind kind;
    char *model;                   /* from malloc */
    struct oai_msg *msgs;          /* OAI_CHAT: from malloc, n_msgs >= 1 */
    int n_msgs;
    char *prompt;                  /* OAI_COMPLETION: from malloc, NUL-terminated */
    int max_tokens;                /* -1 = not given */
    float temperature;             /* [0, 2], default 1 */
    float top_p;                   /* (0, 1], default 1 */
    float presence_penalty;        /* [-2, 2] */
    float frequency_penalty;       /* [-2, 2] */
    char *stop[OAI_MAX_STOP];      /* from malloc, non-empty strings */
    int n_stop;
    bool has_seed;
    uint64_t seed;
    struct sample_bias *bias;      /* from malloc; token ids >= 0 (checked against the vocabulary later) */
    int n_bias;
    bool logprobs;                 /* report logprobs (chat: logprobs:true; completions: logprobs:N given) */
    int top_logprobs;              /* alternatives, 0..SAMPLE_MAX_TOP */
    char *user;                    /* from malloc or NULL */
    bool stream;
    bool include_usage;            /* stream_options.include_usage */
    /* chat: tools and the chat template's variables (server/oai_tools.h) */
    char *chat_vars;               /* from malloc: a JSON object: messages as full objects (tool_calls'
                                    * arguments as objects), tools, tool_choice and parallel_tool_calls
                                    * when given, chat_template_kwargs' keys */
    int n_tools;
    enum oai_tool_choice tool_choice;  /* default auto */
    char *tool_choice_name;        /* from malloc: the function OAI_TOOL_NAMED names */
    bool parallel_tool_calls;      /* default true */
    bool tool_msgs;                /* some message has role tool or tool_calls */
    char *grammar;                 /* from malloc or NULL: structured output as GBNF text, from
                                      response_format (json_object, json_schema) or the `grammar` field */
    const char *grammar_param;     /* static: "response_format" or "grammar" (whence grammar came) */
};

/* Parses body[0..len). 0 with *out filled (release with
 * oai_request_release), or -1 with *e filled (status 400) and *out left
 * empty. Never crashes on any bytes. */
int oai_parse_request(enum oai_kind kind, const char *body, size_t len, struct oai_request *out,
                      struct oai_error *e);
void oai_request_release(struct oai_request *r);

/* ---- responses ---- */

struct oai_usage {
    int prompt_tokens, completion_tokens, cached_tokens;
    int reasoning_tokens;          /* of completion_tokens (completion_tokens_details.reasoning_tokens) */
    char cost[32];                 /* the charged amount, a decimal string; "" = not billed (omitted) */
};

/* One generated token for logprobs. bytes: the token's raw piece (any
 * bytes; shown as text with invalid UTF-8 replaced, and as a byte list). */
struct oai_token_lp {
    const char *bytes;
    size_t n_bytes;
    float logprob;
    int n_top;
    struct {
        const char *bytes;
        size_t n_bytes;
        float logprob;
    } top[SAMPLE_MAX_TOP];
};

/* A logprobs collector: chat's {"content":[...]} or completions'
 * {"tokens":[...],"token_logprobs":[...],"top_logprobs":[...],"text_offset":[...]}.
 * Opaque; NULL on out of memory. */
struct oai_logprobs;
struct oai_logprobs *oai_logprobs_new(enum oai_kind kind);
void oai_logprobs_free(struct oai_logprobs *lp);       /* NULL does nothing */
/* Appends one token; text_offset is its offset in the completion's text. -1 on out of memory. */
int oai_logprobs_add(struct oai_logprobs *lp, const struct oai_token_lp *t, size_t text_offset);
void oai_logprobs_clear(struct oai_logprobs *lp);      /* forget the tokens (after a chunk took them) */
int oai_logprobs_count(const struct oai_logprobs *lp);

/* A tool call as the response carries it. In a streamed delta the first
 * chunk of a call has id, type and name (and arguments ""), later ones
 * arguments fragments only (id NULL). */
struct oai_call_out {
    int index;
    const char *id;        /* "call_..."; NULL in an arguments-only delta */
    const char *name;
    const char *arguments; /* a JSON text; NULL = omitted */
};

/* What tool calls and reasoning add to a chat message or delta (NULL in
 * struct oai_meta: a plain text answer). */
struct oai_parts {
    bool content_null;                  /* message: content is null (no text) */
    const char *reasoning;              /* reasoning_content, NULL = omitted */
    size_t n_reasoning;
    const struct oai_call_out *calls;
    int n_calls;
};

/* What the builders need to name the response. */
struct oai_meta {
    enum oai_kind kind;
    const char *id;        /* "chatcmpl-..." / "cmpl-..." */
    int64_t created;       /* unix seconds */
    const char *model;     /* any bytes; invalid UTF-8 replaced */
    const struct oai_parts *parts; /* chat: tool calls and reasoning of this message or chunk, or NULL */
};

/* The builders return NUL-terminated JSON text from malloc, or NULL on out
 * of memory. Text arguments may hold any bytes: invalid UTF-8 is replaced by
 * U+FFFD. finish_reason NULL means null. lp may be NULL (logprobs: null). */
char *oai_build_response(const struct oai_meta *m, const char *text, size_t len, const char *finish_reason,
                         const struct oai_logprobs *lp, const struct oai_usage *u);
/* One SSE chunk payload (without "data: "): chat.completion.chunk with
 * delta {role (when with_role), content (when text != NULL)}, or a
 * text_completion chunk; usage is null in these chunks. */
char *oai_build_chunk(const struct oai_meta *m, bool with_role, const char *text, size_t len,
                      const char *finish_reason, const struct oai_logprobs *lp);
/* The final usage chunk: choices [] and usage. */
char *oai_build_usage_chunk(const struct oai_meta *m, const struct oai_usage *u);
char *oai_build_error(const struct oai_error *e);
/* A served model as /v1/models lists it: its name and what it is for,
 * "chat" (chat and completions), "embedding" (/v1/embeddings) or "rerank"
 * (/v1/rerank and /v1/embeddings' scores). */
struct oai_model_desc {
    const char *name;
    const char *kind;
};
/* {"object":"list","data":[{"id","object":"model","created","owned_by":"maas","kind"}...]} */
char *oai_build_models(const struct oai_model_desc *ms, int n, int64_t created);
char *oai_build_model(const struct oai_model_desc *m, int64_t created);

/* Copies s[0..n) to a new NUL-terminated string from malloc with each
 * invalid UTF-8 byte (and NUL) replaced by U+FFFD. NULL on out of memory. */
char *oai_utf8_sanitize(const char *s, size_t n, size_t *out_len);

#endif
