/*
 * chat.c — chat templates: the model's own, and the built-in families.
 *
 * A model's tokenizer.chat_template is parsed at load by the Jinja engine
 * (src/template) and, when it renders a probe chat, is what a conversation
 * is rendered with (TOK_CHAT_MODEL). Otherwise, or when a family is chosen
 * by name, the template is recognised by substrings that only its
 * family writes (<|im_start|>, <|start_header_id|>, [gMASK], <start_of_turn>,
 * <｜User｜>, <|user|>...<|end|>, [INST]); each family is rendered by C code
 * that follows its Jinja source line by line, including the source's quirks
 * (Jinja's `trim` = Python str.strip; Gemma and Mistral raising on roles that
 * do not alternate; Mistral-Nemo putting the system message into the last
 * user turn only; DeepSeek-R1 dropping the reasoning before </think>).
 * Variants inside a family are read from the same template text: Qwen's
 * default system message, Llama-3.1's date header, Llama-2's <<SYS>> versus
 * Mistral's plain [INST], Phi-3 versus Phi-3.5, DeepSeek V2's "User:" turns
 * versus V3/R1's <｜User｜> and R1's <think>.
 * The built-in families render system/user/assistant only: another role is
 * an error naming the message. Tools, tool calls and tool results are
 * rendered by the model's own template (tok_chat_encode_json), with the
 * file's tokenizer.chat_template.tool_use variant when a request has tools.
 */
#define _GNU_SOURCE /* memmem */
#include "tokenizer/tok_int.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

static const char *const family_names[TOK_CHAT_COUNT] = {
    [TOK_CHAT_CHATML] = "chatml",    [TOK_CHAT_LLAMA3] = "llama3", [TOK_CHAT_LLAMA2] = "llama2",
    [TOK_CHAT_MISTRAL_NEMO] = "mistral-nemo", [TOK_CHAT_DEEPSEEK] = "deepseek", [TOK_CHAT_PHI3] = "phi3",
    [TOK_CHAT_GEMMA] = "gemma",      [TOK_CHAT_GLM4] = "glm4",
};

const char *tok_chat_family_name(enum tok_chat_family f)
{
    if (f == TOK_CHAT_MODEL)
        return "model";
    return (unsigned)f < TOK_CHAT_COUNT ? family_names[f] : "?";
}

/* Other names users know (several from llama.cpp's --chat-template). */
static const struct {
    const char *name;
    enum tok_chat_family fam;
} aliases[] = {
    {"qwen", TOK_CHAT_CHATML},           {"qwen2", TOK_CHAT_CHATML},     {"mistral", TOK_CHAT_LLAMA2},
    {"mistral-v3-tekken", TOK_CHAT_MISTRAL_NEMO}, {"deepseek3", TOK_CHAT_DEEPSEEK}, {"deepseek-r1", TOK_CHAT_DEEPSEEK},
    {"chatglm4", TOK_CHAT_GLM4},         {"phi-3", TOK_CHAT_PHI3},       {"llama-3", TOK_CHAT_LLAMA3},
};

int tok_chat_family_from_name(const char *name)
{
    for (int i = 0; i < TOK_CHAT_COUNT; i++)
        if (!strcmp(name, family_names[i]))
            return i;
    for (size_t i = 0; i < sizeof aliases / sizeof *aliases; i++)
        if (!strcmp(name, aliases[i].name))
            return (int)aliases[i].fam;
    return -1;
}

/* Variant flags read from the template text. */
enum {
    V_QWEN_DEFAULT_SYSTEM = 1 << 0, /* ChatML: "You are Qwen, ..." when no system message */
    V_LLAMA31_HEADER = 1 << 1,      /* Llama-3: system header with knowledge and today's date */
    V_LLAMA31_STRFTIME = 1 << 2,    /* ... today's date from the clock (Llama-3.2) */
    V_LLAMA2_SYS = 1 << 3,          /* [INST] with <<SYS>> (Llama-2) rather than Mistral's */
    V_DEEPSEEK_THINK = 1 << 4,      /* generation prompt opens <think> */
    V_DEEPSEEK_SPLIT = 1 << 5,      /* assistant content keeps only what follows </think> */
    V_PHI35 = 1 << 6,               /* Phi-3.5: system turns, eos when no generation prompt */
    V_DEEPSEEK_V2 = 1 << 7,         /* DeepSeek-V2: "User: ...\n\nAssistant: ..." */
};

static bool has(const char *s, const char *needle)
{
    return strstr(s, needle) != NULL;
}

#define DS_USER "<\xEF\xBD\x9CUser\xEF\xBD\x9C>"                /* <｜User｜> */
#define DS_ASSISTANT "<\xEF\xBD\x9C" "Assistant\xEF\xBD\x9C>"   /* <｜Assistant｜> */
#define DS_EOS "<\xEF\xBD\x9C" "end\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>" /* <｜end▁of▁sentence｜> */

/* 0 and the family, or -1 when the text is no known family. */
static int detect(const char *tmpl, enum tok_chat_family *fam, unsigned *var)
{
    unsigned v = 0;
    if (has(tmpl, "<|im_start|>")) {
        *fam = TOK_CHAT_CHATML;
        if (has(tmpl, "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."))
            v |= V_QWEN_DEFAULT_SYSTEM;
    } else if (has(tmpl, "<|start_header_id|>")) {
        *fam = TOK_CHAT_LLAMA3;
        if (has(tmpl, "Cutting Knowledge Date"))
            v |= V_LLAMA31_HEADER;
        if (has(tmpl, "strftime_now"))
            v |= V_LLAMA31_STRFTIME;
    } else if (has(tmpl, "[gMASK]")) {
        *fam = TOK_CHAT_GLM4;
    } else if (has(tmpl, "<start_of_turn>")) {
        *fam = TOK_CHAT_GEMMA;
    } else if (has(tmpl, DS_USER) || has(tmpl, DS_ASSISTANT)) {
        *fam = TOK_CHAT_DEEPSEEK;
        if (has(tmpl, DS_ASSISTANT "<think>"))
            v |= V_DEEPSEEK_THINK;
        if (has(tmpl, "split('</think>')"))
            v |= V_DEEPSEEK_SPLIT;
    } else if (has(tmpl, "'User: ' + message['content']") && has(tmpl, "'Assistant: ' + message['content']")) {
        *fam = TOK_CHAT_DEEPSEEK;
        v |= V_DEEPSEEK_V2;
    } else if (has(tmpl, "<|user|>") && has(tmpl, "<|end|>")) {
        *fam = TOK_CHAT_PHI3;
        if (has(tmpl, "<|system|>"))
            v |= V_PHI35;
    } else if (has(tmpl, "[INST]")) {
        if (has(tmpl, "<<SYS>>")) {
            *fam = TOK_CHAT_LLAMA2;
            v |= V_LLAMA2_SYS;
        } else if (has(tmpl, "[INST] ")) {
            *fam = TOK_CHAT_LLAMA2; /* Mistral v0.1/v0.2: [INST] text [/INST] */
        } else {
            *fam = TOK_CHAT_MISTRAL_NEMO;
        }
    } else {
        return -1;
    }
    *var = v;
    return 0;
}

/* Variants of a family chosen by name, without a model template to read. */
static unsigned default_variant(enum tok_chat_family f)
{
    switch (f) {
    case TOK_CHAT_LLAMA2:
        return V_LLAMA2_SYS;
    case TOK_CHAT_DEEPSEEK:
        return V_DEEPSEEK_THINK | V_DEEPSEEK_SPLIT;
    case TOK_CHAT_PHI3:
        return V_PHI35;
    case TOK_CHAT_LLAMA3:
        return V_LLAMA31_HEADER;
    default:
        return 0;
    }
}

static const char *names_list(void)
{
    return "chatml, llama3, llama2, mistral-nemo, deepseek, phi3, gemma, glm4";
}

int tok_chat_select(const struct tokenizer *t, const char *name, enum tok_chat_family *out, struct err *e)
{
    if (name) {
        int f = tok_chat_family_from_name(name);
        if (f < 0)
            return err_set(e, ERR_INVALID, "'%s' is not a chat template family (choose one of: %s)", name, names_list());
        *out = (enum tok_chat_family)f;
        return 0;
    }
    if (!t->chat_template)
        return err_set(e, ERR_NOT_FOUND, "the model has no chat template");
    unsigned v;
    if (detect(t->chat_template, out, &v)) {
        char head[61];
        size_t i = 0;
        for (const char *p = t->chat_template; *p && i < sizeof head - 1; p++)
            head[i++] = (*p == '\n' || *p == '\r' || *p == '\t') ? ' ' : *p;
        head[i] = 0;
        return err_set(e, ERR_INVALID, "tokenizer.chat_template is not a template family maas knows ('%s%s'); a family "
                          "can be chosen by name (%s)",
                       head, t->chat_template[i] ? "..." : "", names_list());
    }
    return 0;
}

int tok_chat_choose(const struct tokenizer *t, const char *name, enum tok_chat_family *out, struct err *why,
                    struct err *e)
{
    err_clear(why);
    if (!name && t->jinja) {
        *out = TOK_CHAT_MODEL;
        return 0;
    }
    int rc = tok_chat_select(t, name, out, why);
    if (!name && t->chat_template && rc == 0)
        log_warn("tokenizer.chat_template: %s; using the built-in %s format", t->jinja_why, tok_chat_family_name(*out));
    if (rc < 0 && name) {
        *e = *why;
        err_clear(why);
        return -1;
    }
    if (rc < 0) {
        *out = TOK_CHAT_CHATML;
        if (t->jinja_why[0])
            err_prefix(why, "%s", t->jinja_why);
    }
    return 0;
}

/* ---- rendering helpers ---- */

/* The rendering, and beside it one byte per byte of text: 1 where the text
 * comes from a message's content (raw: no control tokens may be read
 * there), 0 where it is the template's own. */
struct render {
    struct sbuf b;
    struct sbuf mask;
    bool oom;
};

static void put_span(struct render *r, const char *s, size_t n, bool content)
{
    if (r->oom)
        return;
    if (sbuf_add(&r->b, s, n) || sbuf_grow(&r->mask, n)) {
        r->oom = true;
        return;
    }
    /* n flag bytes written in place (sbuf has no fill), its NUL kept */
    memset(r->mask.buf + r->mask.len, content ? 1 : 0, n);
    r->mask.len += n;
    r->mask.buf[r->mask.len] = 0;
}

/* template text */
static void put(struct render *r, const char *s)
{
    put_span(r, s, strlen(s), false);
}

/* message content */
static void put_c(struct render *r, const char *s)
{
    put_span(r, s, strlen(s), true);
}

/* Length of the Python-whitespace character at s (0 if none): str.isspace. */
static size_t space_at(const char *s, size_t n)
{
    const uint8_t *u = (const uint8_t *)s;
    if (n >= 1 && ((u[0] >= 0x09 && u[0] <= 0x0D) || (u[0] >= 0x1C && u[0] <= 0x20)))
        return 1;
    if (n >= 2 && u[0] == 0xC2 && (u[1] == 0x85 || u[1] == 0xA0))
        return 2;
    if (n >= 3 && u[0] == 0xE1 && u[1] == 0x9A && u[2] == 0x80) /* U+1680 */
        return 3;
    if (n >= 3 && u[0] == 0xE2 && u[1] == 0x80 && (u[2] <= 0x8A || u[2] == 0xA8 || u[2] == 0xA9 || u[2] == 0xAF))
        return 3; /* U+2000..200A, 2028, 2029, 202F */
    if (n >= 3 && u[0] == 0xE2 && u[1] == 0x81 && u[2] == 0x9F) /* U+205F */
        return 3;
    if (n >= 3 && u[0] == 0xE3 && u[1] == 0x80 && u[2] == 0x80) /* U+3000 */
        return 3;
    return 0;
}

/* Jinja's trim of message content: strips Python whitespace at both ends. */
static void put_trim_c(struct render *r, const char *s)
{
    size_t n = strlen(s), a = 0, l;
    while (a < n && (l = space_at(s + a, n - a)))
        a += l;
    size_t z = n;
    while (z > a) {
        /* find the start of the last character */
        size_t k = z - 1;
        while (k > a && ((uint8_t)s[k] & 0xC0) == 0x80)
            k--;
        if (space_at(s + k, z - k) != z - k)
            break;
        z = k;
    }
    put_span(r, s + a, z - a, true);
}

static const char *token_str(const struct tokenizer *t, int32_t id, char *buf, size_t cap)
{
    if (id < 0)
        return "";
    size_t n = t->text_len[id] < cap - 1 ? t->text_len[id] : cap - 1;
    memcpy(buf, tok_text_at(t, id), n);
    buf[n] = 0;
    return buf;
}

static bool role_is(const struct tok_chat_msg *m, const char *r)
{
    return m->role && !strcmp(m->role, r);
}

static const char *content_of(const struct tok_chat_msg *m)
{
    return m->content ? m->content : "";
}

static int check_roles(const struct tok_chat_msg *msgs, size_t n, enum tok_chat_family fam, struct err *e)
{
    for (size_t i = 0; i < n; i++)
        if (!role_is(&msgs[i], "system") && !role_is(&msgs[i], "user") && !role_is(&msgs[i], "assistant"))
            return err_set(e, ERR_INVALID, "message %zu: role '%s' is not supported by the %s chat format (system, user, assistant)",
                           i, msgs[i].role ? msgs[i].role : "(none)", tok_chat_family_name(fam));
    return 0;
}

/* ---- the model's own template (Jinja) ---- */

static void json_string(struct sbuf *b, const char *s, size_t n)
{
    sbuf_addch(b, '"');
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\')
            sbuf_addf(b, "\\%c", c);
        else if (c < 0x20)
            sbuf_addf(b, "\\u%04x", c);
        else
            sbuf_addch(b, c);
    }
    sbuf_addch(b, '"');
}

static void json_token(struct sbuf *b, const struct tokenizer *t, int32_t id)
{
    if (id < 0 || id >= t->n_vocab)
        json_string(b, "", 0);
    else
        json_string(b, tok_text_at(t, id), t->text_len[id]);
}

/* The template's variables as a JSON object: messages, add_generation_prompt, bos_token, eos_token. */
static char *model_vars(const struct tokenizer *t, const struct tok_chat_msg *m, size_t n, bool gen, size_t *len)
{
    struct sbuf b = SBUF_INIT;
    sbuf_addstr(&b, "{\"messages\": [");
    for (size_t i = 0; i < n; i++) {
        sbuf_addstr(&b, i ? ", {\"role\": " : "{\"role\": ");
        json_string(&b, m[i].role ? m[i].role : "", m[i].role ? strlen(m[i].role) : 0);
        sbuf_addstr(&b, ", \"content\": ");
        json_string(&b, content_of(&m[i]), strlen(content_of(&m[i])));
        sbuf_addch(&b, '}');
    }
    sbuf_addf(&b, "], \"add_generation_prompt\": %s, \"bos_token\": ", gen ? "true" : "false");
    json_token(&b, t, t->bos);
    sbuf_addstr(&b, ", \"eos_token\": ");
    json_token(&b, t, t->eos);
    sbuf_addch(&b, '}');
    return sbuf_detach(&b, len);
}

/* Marks in r->mask the message contents found in the rendering, in order. */
static void mark_contents(struct render *r, const struct tok_chat_msg *m, size_t n)
{
    size_t pos = 0;
    for (size_t i = 0; i < n && r->b.buf; i++) {
        const char *c = content_of(&m[i]);
        size_t a = 0, z = strlen(c), l;
        for (int pass = 0; pass < 2; pass++) {
            if (pass == 1) { /* the template may have trimmed it */
                while (a < z && (l = space_at(c + a, z - a)))
                    a += l;
                while (z > a && space_at(c + z - 1, 1)) /* ASCII whitespace at the end */
                    z--;
            }
            if (z <= a)
                break;
            const char *hit = memmem(r->b.buf + pos, r->b.len - pos, c + a, z - a);
            if (hit) {
                size_t off = (size_t)(hit - r->b.buf);
                memset(r->mask.buf + off, 1, z - a);
                pos = off + (z - a);
                break;
            }
        }
    }
}

static int render_model(const struct tokenizer *t, const struct tok_chat_msg *m, size_t n, bool gen,
                        struct render *r, struct err *e)
{
    size_t vlen = 0, olen = 0;
    char *vars = model_vars(t, m, n, gen, &vlen);
    if (!vars)
        return err_set(e, ERR_NOMEM, "out of memory rendering %zu chat messages", n);
    char *out = tmpl_render(t->jinja, vars, vlen, NULL, &olen, e);
    free(vars);
    if (!out)
        return err_prefix(e, "chat template");
    put_span(r, out, olen, false);
    free(out);
    if (r->oom)
        return err_set(e, ERR_NOMEM, "out of memory rendering %zu chat messages", n);
    mark_contents(r, m, n);
    return 0;
}

void tok_chat_prepare(struct tokenizer *t)
{
    struct err e = {0};
    t->jinja_why[0] = 0;
    t->jinja = tmpl_parse(t->chat_template, strlen(t->chat_template), &e);
    if (t->jinja) {
        static const struct tok_chat_msg probe[] = {{"user", "Hello"}};
        struct render r = {{0}, {0}, false};
        int rc = render_model(t, probe, 1, true, &r, &e);
        sbuf_release(&r.b);
        sbuf_release(&r.mask);
        if (rc == 0)
            return;
        tmpl_free(t->jinja);
        t->jinja = NULL;
        snprintf(t->jinja_why, sizeof t->jinja_why, "cannot render a one-message chat: %s", e.msg);
        return;
    }
    snprintf(t->jinja_why, sizeof t->jinja_why, "the Jinja engine cannot parse it: %s", e.msg);
}

int tok_chat_set_template(struct tokenizer *t, const char *src, size_t len, struct err *e)
{
    struct tokenizer saved = *t;
    t->chat_template = malloc(len + 1);
    if (!t->chat_template) {
        *t = saved;
        return err_set(e, ERR_NOMEM, "out of memory");
    }
    memcpy(t->chat_template, src, len);
    t->chat_template[len] = 0;
    tok_chat_prepare(t);
    if (!t->jinja) {
        err_set(e, ERR_INVALID, "%s", t->jinja_why);
        free(t->chat_template);
        *t = saved;
        return -1;
    }
    free(saved.chat_template);
    tmpl_free(saved.jinja);
    /* the file's tool_use variant is the file's: an override replaces both */
    free(t->chat_template_tools);
    tmpl_free(t->jinja_tools);
    t->chat_template_tools = NULL;
    t->jinja_tools = NULL;
    return 0;
}

/* ---- the families ---- */

static int render_chatml(struct render *r, const struct tok_chat_msg *m, size_t n, bool gen, unsigned v)
{
    size_t i = 0;
    if (n && role_is(&m[0], "system")) {
        put(r, "<|im_start|>system\n");
        put_c(r, content_of(&m[0]));
        put(r, "<|im_end|>\n");
        i = 1;
    } else if (v & V_QWEN_DEFAULT_SYSTEM) {
        put(r, "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n");
    }
    for (; i < n; i++) {
        put(r, "<|im_start|>");
        put(r, m[i].role);
        put(r, "\n");
        put_c(r, content_of(&m[i]));
        put(r, "<|im_end|>\n");
    }
    if (gen)
        put(r, "<|im_start|>assistant\n");
    return 0;
}

static int render_llama3(struct render *r, const struct tokenizer *t, const struct tok_chat_msg *m, size_t n,
                         bool gen, unsigned v, const char *bos)
{
    if (v & V_LLAMA31_HEADER) {
        /* Llama-3.1: the system message (trimmed) always sits in a header with the dates */
        char date[64] = "26 Jul 2024";
        const char *tm = t->chat_template;
        const char *p = tm ? strstr(tm, "set date_string = \"") : NULL;
        if (v & V_LLAMA31_STRFTIME) {
            time_t now = time(NULL);
            struct tm g;
            gmtime_r(&now, &g);
            strftime(date, sizeof date, "%d %b %Y", &g);
        } else if (p) {
            p += strlen("set date_string = \"");
            const char *q = strchr(p, '"');
            if (q && (size_t)(q - p) < sizeof date) {
                memcpy(date, p, (size_t)(q - p));
                date[q - p] = 0;
            }
        }
        put(r, bos);
        size_t i = 0;
        put(r, "<|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\nToday Date: ");
        put(r, date);
        put(r, "\n\n");
        if (n && role_is(&m[0], "system")) {
            put_trim_c(r, content_of(&m[0]));
            i = 1;
        }
        put(r, "<|eot_id|>");
        for (; i < n; i++) {
            put(r, "<|start_header_id|>");
            put(r, m[i].role);
            put(r, "<|end_header_id|>\n\n");
            put_trim_c(r, content_of(&m[i]));
            put(r, "<|eot_id|>");
        }
    } else {
        /* Llama-3.0: BOS before the first message, every message trimmed */
        for (size_t i = 0; i < n; i++) {
            if (i == 0)
                put(r, bos);
            put(r, "<|start_header_id|>");
            put(r, m[i].role);
            put(r, "<|end_header_id|>\n\n");
            put_trim_c(r, content_of(&m[i]));
            put(r, "<|eot_id|>");
        }
    }
    if (gen)
        put(r, "<|start_header_id|>assistant<|end_header_id|>\n\n");
    return 0;
}

static int alternation_error(struct err *e, size_t i, const char *what)
{
    return err_set(e, ERR_INVALID, "message %zu: %s", i, what);
}

static int render_llama2(struct render *r, const struct tok_chat_msg *m, size_t n, unsigned v, const char *bos,
                         const char *eos, struct err *e)
{
    if (v & V_LLAMA2_SYS) {
        /* Llama-2-chat: optional system folded into the first user turn */
        size_t i0 = 0;
        const char *sys = NULL;
        if (n && role_is(&m[0], "system")) {
            sys = content_of(&m[0]);
            i0 = 1;
        }
        for (size_t i = i0; i < n; i++) {
            if (role_is(&m[i], "user") != ((i - i0) % 2 == 0))
                return alternation_error(e, i, "conversation roles must alternate user/assistant/user/assistant/...");
            struct render c = {{0}, {0}, false};
            if (i == i0 && sys) {
                put(&c, "<<SYS>>\n");
                put(&c, sys);
                put(&c, "\n<</SYS>>\n\n");
            }
            put(&c, content_of(&m[i]));
            if (c.oom) {
                sbuf_release(&c.b);
                sbuf_release(&c.mask);
                r->oom = true;
                return 0;
            }
            const char *content = c.b.buf ? c.b.buf : "";
            if (role_is(&m[i], "user")) {
                put(r, bos);
                put(r, "[INST] ");
                put_trim_c(r, content);
                put(r, " [/INST]");
            } else if (role_is(&m[i], "assistant")) {
                put(r, " ");
                put_trim_c(r, content);
                put(r, " ");
                put(r, eos);
            }
            sbuf_release(&c.b);
            sbuf_release(&c.mask);
        }
        return 0;
    }
    /* Mistral-7B-Instruct v0.1/v0.2 */
    put(r, bos);
    for (size_t i = 0; i < n; i++) {
        if (role_is(&m[i], "user") != (i % 2 == 0))
            return alternation_error(e, i, "conversation roles must alternate user/assistant/user/assistant/...");
        if (role_is(&m[i], "user")) {
            put(r, "[INST] ");
            put_c(r, content_of(&m[i]));
            put(r, " [/INST]");
        } else if (role_is(&m[i], "assistant")) {
            put_c(r, content_of(&m[i]));
            put(r, eos);
        } else {
            return alternation_error(e, i, "only user and assistant roles are supported by this template");
        }
    }
    return 0;
}

static int render_mistral_nemo(struct render *r, const struct tok_chat_msg *m, size_t n, const char *bos,
                               const char *eos, struct err *e)
{
    size_t i0 = 0;
    const char *sys = NULL;
    if (n && role_is(&m[0], "system")) {
        sys = content_of(&m[0]);
        i0 = 1;
    }
    for (size_t i = i0; i < n; i++)
        if (role_is(&m[i], "user") != ((i - i0) % 2 == 0))
            return alternation_error(e, i, "after the optional system message, conversation roles must alternate "
                                           "user/assistant/user/assistant/...");
    put(r, bos);
    for (size_t i = i0; i < n; i++) {
        if (role_is(&m[i], "user")) {
            put(r, "[INST]");
            if (i == n - 1 && sys) {
                put_c(r, sys);
                put(r, "\n\n");
            }
            put_c(r, content_of(&m[i]));
            put(r, "[/INST]");
        } else if (role_is(&m[i], "assistant")) {
            put_c(r, content_of(&m[i]));
            put(r, eos);
        } else {
            return alternation_error(e, i, "only user and assistant roles are supported, with the exception of an "
                                           "initial optional system message");
        }
    }
    return 0;
}

static int render_deepseek(struct render *r, const struct tok_chat_msg *m, size_t n, bool gen, unsigned v,
                           const char *bos, const char *eos)
{
    if (v & V_DEEPSEEK_V2) {
        put(r, bos);
        for (size_t i = 0; i < n; i++) {
            const char *c = content_of(&m[i]);
            if (role_is(&m[i], "user")) {
                put(r, "User: ");
                put_c(r, c);
                put(r, "\n\n");
            } else if (role_is(&m[i], "assistant")) {
                put(r, "Assistant: ");
                put_c(r, c);
                put(r, eos);
            } else {
                put_c(r, c);
                put(r, "\n\n");
            }
        }
        if (gen)
            put(r, "Assistant:");
        return 0;
    }
    const char *sys = "";
    for (size_t i = 0; i < n; i++)
        if (role_is(&m[i], "system"))
            sys = content_of(&m[i]); /* the last one wins, as in the template */
    put(r, bos);
    put_c(r, sys);
    for (size_t i = 0; i < n; i++) {
        const char *c = content_of(&m[i]);
        if (role_is(&m[i], "user")) {
            put(r, DS_USER);
            put_c(r, c);
        } else if (role_is(&m[i], "assistant")) {
            if (v & V_DEEPSEEK_SPLIT) {
                const char *p;
                while ((p = strstr(c, "</think>")))
                    c = p + strlen("</think>");
            }
            put(r, DS_ASSISTANT);
            put_c(r, c);
            put(r, DS_EOS);
        }
    }
    if (gen)
        put(r, (v & V_DEEPSEEK_THINK) ? DS_ASSISTANT "<think>\n" : DS_ASSISTANT);
    return 0;
}

static int render_phi3(struct render *r, const struct tok_chat_msg *m, size_t n, bool gen, unsigned v,
                       const char *bos, const char *eos)
{
    if (v & V_PHI35) {
        for (size_t i = 0; i < n; i++) {
            const char *c = content_of(&m[i]);
            if (role_is(&m[i], "system") && *c) {
                put(r, "<|system|>\n");
            } else if (role_is(&m[i], "user")) {
                put(r, "<|user|>\n");
            } else if (role_is(&m[i], "assistant")) {
                put(r, "<|assistant|>\n");
            } else {
                continue;
            }
            put_c(r, c);
            put(r, "<|end|>\n");
        }
        put(r, gen ? "<|assistant|>\n" : eos);
        return 0;
    }
    /* Phi-3-mini: BOS; each user turn opens the assistant's; system messages are dropped */
    put(r, bos);
    for (size_t i = 0; i < n; i++) {
        if (role_is(&m[i], "user")) {
            put(r, "<|user|>\n");
            put_c(r, content_of(&m[i]));
            put(r, "<|end|>\n<|assistant|>\n");
        } else if (role_is(&m[i], "assistant")) {
            put_c(r, content_of(&m[i]));
            put(r, "<|end|>\n");
        }
    }
    return 0;
}

static int render_gemma(struct render *r, const struct tok_chat_msg *m, size_t n, bool gen, const char *bos,
                        struct err *e)
{
    put(r, bos);
    if (n && role_is(&m[0], "system"))
        return alternation_error(e, 0, "system role not supported");
    for (size_t i = 0; i < n; i++) {
        if (role_is(&m[i], "user") != (i % 2 == 0))
            return alternation_error(e, i, "conversation roles must alternate user/assistant/user/assistant/...");
        put(r, "<start_of_turn>");
        put(r, role_is(&m[i], "assistant") ? "model" : m[i].role);
        put(r, "\n");
        put_trim_c(r, content_of(&m[i]));
        put(r, "<end_of_turn>\n");
    }
    if (gen)
        put(r, "<start_of_turn>model\n");
    return 0;
}

static int render_glm4(struct render *r, const struct tok_chat_msg *m, size_t n, bool gen)
{
    put(r, "[gMASK]<sop>");
    for (size_t i = 0; i < n; i++) {
        put(r, "<|");
        put(r, m[i].role);
        put(r, "|>\n");
        put_c(r, content_of(&m[i]));
    }
    if (gen)
        put(r, "<|assistant|>");
    return 0;
}

static int render_all(const struct tokenizer *t, enum tok_chat_family fam, const struct tok_chat_msg *msgs,
                      size_t n_msgs, bool add_generation_prompt, struct render *r, struct err *e)
{
    if (fam == TOK_CHAT_MODEL)
        return render_model(t, msgs, n_msgs, add_generation_prompt, r, e);
    if ((unsigned)fam >= TOK_CHAT_COUNT)
        return err_set(e, ERR_NOT_FOUND, "chat format %d does not exist", (int)fam);
    if (check_roles(msgs, n_msgs, fam, e))
        return -1;
    /* Variants come from the model's own template when it is of this family. */
    unsigned v = default_variant(fam);
    enum tok_chat_family mf;
    unsigned mv;
    if (t->chat_template && !detect(t->chat_template, &mf, &mv) && mf == fam)
        v = mv;
    char bos_buf[256], eos_buf[256];
    const char *bos = token_str(t, t->bos, bos_buf, sizeof bos_buf);
    const char *eos = token_str(t, t->eos, eos_buf, sizeof eos_buf);
    put(r, "");
    int rc = 0;
    switch (fam) {
    case TOK_CHAT_CHATML:
        rc = render_chatml(r, msgs, n_msgs, add_generation_prompt, v);
        break;
    case TOK_CHAT_LLAMA3:
        rc = render_llama3(r, t, msgs, n_msgs, add_generation_prompt, v, bos);
        break;
    case TOK_CHAT_LLAMA2:
        rc = render_llama2(r, msgs, n_msgs, v, bos, eos, e);
        break;
    case TOK_CHAT_MISTRAL_NEMO:
        rc = render_mistral_nemo(r, msgs, n_msgs, bos, eos, e);
        break;
    case TOK_CHAT_DEEPSEEK:
        rc = render_deepseek(r, msgs, n_msgs, add_generation_prompt, v, bos, eos);
        break;
    case TOK_CHAT_PHI3:
        rc = render_phi3(r, msgs, n_msgs, add_generation_prompt, v, bos, eos);
        break;
    case TOK_CHAT_GEMMA:
        rc = render_gemma(r, msgs, n_msgs, add_generation_prompt, bos, e);
        break;
    case TOK_CHAT_GLM4:
        rc = render_glm4(r, msgs, n_msgs, add_generation_prompt);
        break;
    default:
        break;
    }
    if (rc == 0 && r->oom)
        rc = err_set(e, ERR_NOMEM, "out of memory rendering %zu chat messages", n_msgs);
    return rc;
}

char *tok_chat_render(const struct tokenizer *t, enum tok_chat_family fam, const struct tok_chat_msg *msgs,
                      size_t n_msgs, bool add_generation_prompt, size_t *len, struct err *e)
{
    struct render r = {{0}, {0}, false};
    int rc = render_all(t, fam, msgs, n_msgs, add_generation_prompt, &r, e);
    sbuf_release(&r.mask);
    if (rc) {
        sbuf_release(&r.b);
        return NULL;
    }
    if (len)
        *len = r.b.len;
    return r.b.buf;
}

int tok_chat_encode(const struct tokenizer *t, enum tok_chat_family fam, const struct tok_chat_msg *msgs,
                    size_t n_msgs, bool add_generation_prompt, struct tok_ids *out, struct err *e)
{
    struct render r = {{0}, {0}, false};
    int rc = render_all(t, fam, msgs, n_msgs, add_generation_prompt, &r, e);
    if (rc == 0)
        rc = tok_encode_masked(t, r.b.buf, r.b.len, false, true, (const uint8_t *)r.mask.buf, out, e);
    sbuf_release(&r.b);
    sbuf_release(&r.mask);
    return rc;
}

/* ---- the whole request's variables (tools, tool calls, kwargs) ---- */

void tok_chat_prepare_tools(struct tokenizer *t)
{
    struct err e = {0};
    t->jinja_tools = tmpl_parse(t->chat_template_tools, strlen(t->chat_template_tools), &e);
    if (!t->jinja_tools)
        log_warn("tokenizer.chat_template.tool_use: the Jinja engine cannot parse it (%s); requests with tools use "
                 "tokenizer.chat_template", e.msg);
}

const char *tok_chat_template_for(const struct tokenizer *t, bool tools)
{
    if (tools && t->jinja_tools)
        return t->chat_template_tools;
    return t->jinja ? t->chat_template : NULL;
}

/* "{" + add_generation_prompt, bos_token, eos_token + the caller's keys (which win). */
static char *json_vars(const struct tokenizer *t, const char *vars, size_t n, bool gen, size_t *len)
{
    struct sbuf b = SBUF_INIT;
    sbuf_addf(&b, "{\"add_generation_prompt\": %s, \"bos_token\": ", gen ? "true" : "false");
    json_token(&b, t, t->bos);
    sbuf_addstr(&b, ", \"eos_token\": ");
    json_token(&b, t, t->eos);
    size_t i = 0;
    while (i < n && (vars[i] == ' ' || vars[i] == '\n' || vars[i] == '\t' || vars[i] == '\r'))
        i++;
    i++; /* the caller's '{' (checked by the caller) */
    size_t j = i;
    while (j < n && (vars[j] == ' ' || vars[j] == '\n' || vars[j] == '\t' || vars[j] == '\r'))
        j++;
    if (j < n && vars[j] != '}')
        sbuf_addstr(&b, ", ");
    sbuf_add(&b, vars + i, n - i);
    return sbuf_detach(&b, len);
}

int tok_chat_encode_json(const struct tokenizer *t, const char *vars_json, size_t vars_len, bool tools,
                         const char *const *raw, size_t n_raw, bool add_generation_prompt, struct tok_ids *out,
                         char **rendered, size_t *rendered_len, struct err *e)
{
    const struct tmpl *tm = tools && t->jinja_tools ? t->jinja_tools : t->jinja;
    if (!tm)
        return err_set(e, ERR_INVALID, "the model has no chat template the Jinja engine can run (%s)",
                       t->jinja_why[0] ? t->jinja_why : "the file carries none");
    size_t k = 0;
    while (k < vars_len && (vars_json[k] == ' ' || vars_json[k] == '\n' || vars_json[k] == '\t'))
        k++;
    if (k == vars_len || vars_json[k] != '{')
        return err_set(e, ERR_INVALID, "chat template variables: not a JSON object");
    size_t vlen = 0, olen = 0;
    char *vars = json_vars(t, vars_json, vars_len, add_generation_prompt, &vlen);
    if (!vars)
        return err_set(e, ERR_NOMEM, "out of memory rendering a chat");
    char *text = tmpl_render(tm, vars, vlen, NULL, &olen, e);
    free(vars);
    if (!text)
        return err_prefix(e, "chat template");
    struct render r = {{0}, {0}, false};
    put_span(&r, text, olen, false);
    struct tok_chat_msg *m = calloc(n_raw ? n_raw : 1, sizeof *m);
    int rc = -1;
    if (!m || r.oom) {
        err_set(e, ERR_NOMEM, "out of memory rendering a chat");
    } else {
        for (size_t i = 0; i < n_raw; i++)
            m[i].role = "", m[i].content = raw[i];
        mark_contents(&r, m, n_raw);
        rc = tok_encode_masked(t, r.b.buf, r.b.len, false, true, (const uint8_t *)r.mask.buf, out, e);
    }
    free(m);
    sbuf_release(&r.b);
    sbuf_release(&r.mask);
    if (rc == 0 && rendered) {
        *rendered = text;
        if (rendered_len)
            *rendered_len = olen;
    } else {
        free(text);
    }
    return rc;
}
