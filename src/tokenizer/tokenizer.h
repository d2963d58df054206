/*
 * tokenizer — text to token ids and back, exactly as the model was trained,
 * built from the `tokenizer.*` metadata of a GGUF file.
 *
 *   SPM   tokenizer.ggml.model = "llama": SentencePiece-style merging by
 *         score, byte fallback <0xNN>, the leading-space rule (U+2581 "▁"
 *         stands for a space; add_space_prefix puts one before the text).
 *   BPE   tokenizer.ggml.model = "gpt2": byte-level BPE with merge ranks,
 *         the byte<->unicode mapping and the pre-tokenizer split expressions
 *         chosen by tokenizer.ggml.pre (PCRE2 with Unicode properties).
 *   WPM   tokenizer.ggml.model = "bert": BERT's WordPiece (lower-cased,
 *         accents dropped, punctuation split, greedy longest match, [UNK]
 *         for a word no tokens cover); add_special puts [CLS] before and
 *         [SEP] after the text (they are tok_bos / tok_eos).
 *
 * Use:
 *     struct tokenizer *t = tok_load(f, &e);       // f may be closed after
 *     struct tok_ids ids; tok_ids_init(&ids);
 *     tok_encode(t, text, len, true, false, &ids, &e);   // raw user text
 *     ... ids.ids[0 .. ids.n) ...
 *     tok_ids_release(&ids);
 *     tok_free(t);
 *
 * Control tokens (type 3, and unknown, type 2) are recognised in text only
 * when the caller passes parse_special = true — as for a rendered chat
 * template. Raw user text is encoded with parse_special = false, so a user
 * who writes "<|im_end|>" gets the ordinary tokens of those characters.
 * User-defined tokens (type 4) are ordinary text stored whole (DeepSeek's
 * "ø", Phi-3's "</s>"): like llama.cpp and HF added tokens they are matched
 * in any text, which the reference ids of those vocabularies require.
 *
 * Output: decoding is by pieces — the bytes a token stands for. A piece need
 * not be valid UTF-8 on its own (byte tokens, a character split by BPE); the
 * streaming detokenizer (tok_stream) holds incomplete characters back and
 * recognises stop strings that span tokens.
 *
 * Chat templates: a model's own tokenizer.chat_template is rendered by the
 * Jinja engine (src/template) as Hugging Face renders it (TOK_CHAT_MODEL).
 * The built-in families (recognised from the template text by distinctive
 * substrings, rendered in C as their Jinja source would render them) are
 * what a user forces by name, and the fallback for a model without a
 * template or with one the engine cannot parse or render.
 *
 * A loaded tokenizer is immutable: every function taking a const pointer may
 * be called from several threads at once.
 */
#ifndef MAAS_TOKENIZER_H
#define MAAS_TOKENIZER_H

#include "core/core.h"
#include "gguf/gguf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Token types, numbered as in tokenizer.ggml.token_type. */
enum tok_type {
    TOK_TYPE_UNDEFINED = 0,
    TOK_TYPE_NORMAL = 1,
    TOK_TYPE_UNKNOWN = 2,
    TOK_TYPE_CONTROL = 3,
    TOK_TYPE_USER_DEFINED = 4,
    TOK_TYPE_UNUSED = 5,
    TOK_TYPE_BYTE = 6,
};

enum tok_model {
    TOK_MODEL_SPM, /* "llama" */
    TOK_MODEL_BPE, /* "gpt2" */
    TOK_MODEL_WPM, /* "bert": WordPiece */
};

struct tokenizer;

/* Builds a tokenizer from f's tokenizer.* metadata (tokenizer.ggml.model,
 * .tokens, .scores, .token_type, .merges, .pre, special token ids and flags,
 * .chat_template). Everything needed is copied: f may be closed afterwards.
 * NULL with one line in e on failure (missing or inconsistent metadata, an
 * unsupported tokenizer model, an unknown pre-tokenizer name, out of memory). */
struct tokenizer *tok_load(const struct gguf_file *f, struct err *e);
void tok_free(struct tokenizer *t); /* NULL does nothing */

enum tok_model tok_model(const struct tokenizer *t);
const char *tok_pre_name(const struct tokenizer *t); /* BPE pre-tokenizer ("" for SPM) */
int32_t tok_n_vocab(const struct tokenizer *t);
/* The token ids both t and a model with n_vocab_model logits know, so the
 * ones a sampler may choose: min(n_vocab_model, tok_n_vocab(t)), or
 * n_vocab_model when t is NULL. */
int32_t tok_n_vocab_common(const struct tokenizer *t, int32_t n_vocab_model);

/* Special token ids; -1 when the vocabulary has none. */
int32_t tok_bos(const struct tokenizer *t);
int32_t tok_eos(const struct tokenizer *t);
int32_t tok_eot(const struct tokenizer *t); /* end of turn (<|eot_id|>, <|im_end|>, ...) */
/* Whether encoding with add_special puts BOS before / EOS after the text. */
bool tok_add_bos(const struct tokenizer *t);
bool tok_add_eos(const struct tokenizer *t);

/* End of generation: eos, eot and the end-of-turn tokens of known chat
 * formats present in the vocabulary (<|im_end|>, <|endoftext|>, <|eot_id|>,
 * <|eom_id|>, <end_of_turn>, <|end|>, <EOT>, <|end_of_text|>,
 * <｜end▁of▁sentence｜>; GLM-4 also <|user|>, <|observation|>).
 * False for ids out of range. */
bool tok_is_eog(const struct tokenizer *t, int32_t id);

/* Type of token id; TOK_TYPE_UNDEFINED for ids out of range. */
enum tok_type tok_token_type(const struct tokenizer *t, int32_t id);

/* The token's string exactly as stored in the vocabulary (SPM "▁Hello",
 * BPE "ĠHello", "<0x0A>", "<|im_end|>"); not NUL-terminated. NULL for ids
 * out of range. */
const char *tok_token_text(const struct tokenizer *t, int32_t id, size_t *len);

/* The id of the token whose vocabulary string is exactly text[0..len); -1
 * when there is none. */
int32_t tok_find(const struct tokenizer *t, const char *text, size_t len);

/* The bytes token id stands for in text: SPM "▁" -> " " and <0xNN> -> byte
 * NN; BPE byte<->unicode mapping reversed. Control tokens give their text
 * only when render_special, "" otherwise; user-defined tokens always give
 * their text. Not NUL-terminated, valid for the life of t. NULL for ids out
 * of range. */
const char *tok_piece(const struct tokenizer *t, int32_t id, bool render_special, size_t *len);

/* ---- encoding ---- */

/* A growable array of token ids, owned by the caller (strbuf-style). */
struct tok_ids {
    int32_t *ids; /* from malloc; NULL while empty */
    size_t n, cap;
};
void tok_ids_init(struct tok_ids *v);
void tok_ids_release(struct tok_ids *v); /* frees ids and re-initialises */
int tok_ids_push(struct tok_ids *v, int32_t id, struct err *e); /* 0 or -1 (out of memory) */

/* Encodes text[0..len) (any bytes; invalid UTF-8 is encoded byte by byte)
 * and APPENDS the ids to out. add_special: put BOS/EOS around the text as
 * tok_add_bos/tok_add_eos say. parse_special: recognise the text of control
 * tokens in text as those tokens (user-defined tokens always are). For SPM
 * with add_space_prefix, a space is put before the text and after every
 * special token found in it, as llama.cpp does. Returns 0, or -1 with the
 * reason in e (out of memory, or a text longer than INT32_MAX bytes); on
 * failure out keeps its earlier ids and length. */
int tok_encode(const struct tokenizer *t, const char *text, size_t len, bool add_special, bool parse_special,
               struct tok_ids *out, struct err *e);

/* ---- decoding ---- */

/* The text of ids[0..n): the concatenation of their pieces. With
 * strip_leading_space, an SPM vocabulary with add_space_prefix drops the
 * single space its encoder put before the text, so that
 * decode(encode(text)) == text. Returns a NUL-terminated string from malloc
 * (length in *len, which may be NULL; the text may contain NUL bytes), or
 * NULL with the reason in e (an id out of range — named with its position —
 * or out of memory). */
char *tok_decode(const struct tokenizer *t, const int32_t *ids, size_t n, bool render_special,
                 bool strip_leading_space, size_t *len, struct err *e);

/* ---- streaming detokenizer ----
 * Feed generated ids one at a time; each call hands back the bytes that are
 * now final: only complete UTF-8 characters (an incomplete sequence at the
 * end is held until it completes) and nothing that could still be the start
 * of a stop string. When a stop string is complete, everything before it is
 * handed back, the stop string and whatever follows never are, and the
 * stream reports the stop. tok_stream_finish hands back what is held, with
 * each byte sequence that can no longer become a character replaced by
 * U+FFFD. Bytes that are invalid UTF-8 in the middle of the text are
 * replaced by U+FFFD as soon as they are known to be invalid. */
struct tok_stream;

/* stop: n_stop strings (copied; empty strings are ignored). render_special as
 * for tok_piece. NULL on out of memory (reason in e). The tokenizer is
 * borrowed and must outlive the stream. */
struct tok_stream *tok_stream_new(const struct tokenizer *t, const char *const *stop, size_t n_stop,
                                  bool render_special, struct err *e);
void tok_stream_free(struct tok_stream *s); /* NULL does nothing */

/* Feeds one id. *out / *out_len receive the bytes released by this call
 * (a buffer inside s, valid until the next call on s; *out_len may be 0).
 * Returns 0 to go on, 1 when a stop string has just been completed (the bytes
 * before it are in *out; every later feed hands back nothing and returns 1),
 * -1 with the reason in e (id out of range, out of memory). */
int tok_stream_feed(struct tok_stream *s, int32_t id, const char **out, size_t *out_len, struct err *e);

/* Ends the stream: hands back everything still held (nothing after a stop),
 * incomplete UTF-8 replaced by U+FFFD. 0, or -1 on out of memory. */
int tok_stream_finish(struct tok_stream *s, const char **out, size_t *out_len, struct err *e);

/* Index of the stop string that ended the stream, or -1. */
int tok_stream_stop_index(const struct tok_stream *s);

/* ---- chat templates ---- */

enum tok_chat_family {
    TOK_CHAT_CHATML,       /* <|im_start|>role\n...<|im_end|>\n (Qwen, Yi, ...) */
    TOK_CHAT_LLAMA3,       /* <|start_header_id|>role<|end_header_id|>\n\n...<|eot_id|> */
    TOK_CHAT_LLAMA2,       /* <s>[INST] <<SYS>>\n...\n<</SYS>>\n\n... [/INST] (Llama-2, Mistral) */
    TOK_CHAT_MISTRAL_NEMO, /* [INST]...[/INST] without spaces, system before the last user turn */
    TOK_CHAT_DEEPSEEK,     /* <｜User｜>...<｜Assistant｜> (DeepSeek V2/V3, R1 distills) */
    TOK_CHAT_PHI3,         /* <|user|>\n...<|end|>\n<|assistant|>\n */
    TOK_CHAT_GEMMA,        /* <start_of_turn>user\n...<end_of_turn>\n<start_of_turn>model\n */
    TOK_CHAT_GLM4,         /* [gMASK]<sop><|user|>\n... */
    TOK_CHAT_COUNT,
    TOK_CHAT_MODEL,        /* not a family: the model's own tokenizer.chat_template, run by the Jinja engine */
};

/* Short names of the families, as users choose them: "chatml", "llama3",
 * "llama2", "mistral-nemo", "deepseek", "phi3", "gemma", "glm4"; "model"
 * for TOK_CHAT_MODEL (not a name tok_chat_family_from_name accepts). */
const char *tok_chat_family_name(enum tok_chat_family f);
int tok_chat_family_from_name(const char *name); /* -1 if unknown */

/* Chooses the chat format. name (a family name the user gave) when not NULL:
 * -1 with the list of names in e (ERR_INVALID) if unknown. Otherwise the
 * model's tokenizer.chat_template is recognised: 0 with *out set; -1 with
 * ERR_NOT_FOUND when the model has no template, or ERR_INVALID when the
 * template is not one this program knows (e says a family can be chosen by
 * name). Most callers want tok_chat_choose. */
int tok_chat_select(const struct tokenizer *t, const char *name, enum tok_chat_family *out, struct err *e);

/* What every caller uses. With a name: that family (as tok_chat_select).
 * Without: TOK_CHAT_MODEL when the model's tokenizer.chat_template parses
 * and renders with the Jinja engine; otherwise (logged as a warning when
 * the template exists but the engine cannot use it, with the reason) the
 * family recognised from the template text, and failing that ChatML. 0 with
 * *out set and why->code ERR_OK, or, when it fell back to ChatML, why->code
 * ERR_NOT_FOUND (no template) or ERR_INVALID (an unknown one) and why->msg
 * the reason to warn about; -1 with e (ERR_INVALID) only for an unknown
 * name. The caller adds the name of its option to e's message. */
int tok_chat_choose(const struct tokenizer *t, const char *name, enum tok_chat_family *out, struct err *why,
                    struct err *e);

/* Replaces the model's chat template by src (len bytes of Jinja, as from a
 * --chat-template FILE.jinja option); tok_chat_choose then gives
 * TOK_CHAT_MODEL for it. Call before t is shared between threads. 0, or -1
 * with t unchanged and e: ERR_INVALID with the engine's error when src does
 * not parse or cannot render a one-message chat, ERR_NOMEM. */
int tok_chat_set_template(struct tokenizer *t, const char *src, size_t len, struct err *e);

/* The model's tokenizer.chat_template (NUL-terminated), or NULL. */
const char *tok_chat_template_source(const struct tokenizer *t);

struct tok_chat_msg {
    const char *role;    /* "system", "user" or "assistant" */
    const char *content; /* NUL-terminated UTF-8 */
};

/* Renders the conversation as the family's Jinja template would (with
 * TOK_CHAT_MODEL: as the model's own template does, given messages,
 * add_generation_prompt, bos_token and eos_token as the vocabulary's BOS and
 * EOS texts, and strftime_now the current UTC time), including
 * the BOS text where the template writes bos_token, and the opening of the
 * assistant's turn when add_generation_prompt. To turn a conversation into
 * tokens use tok_chat_encode, not tok_encode on this string: encoding the
 * string with parse_special would let "<|im_end|>" typed in a message become
 * the control token. Returns a NUL-terminated
 * string from malloc (length in *len, which may be NULL), or NULL with the
 * reason in e (a role the format does not accept, or an order of roles the
 * template itself rejects — the message names the index — or out of memory). */
char *tok_chat_render(const struct tokenizer *t, enum tok_chat_family fam, const struct tok_chat_msg *msgs,
                      size_t n_msgs, bool add_generation_prompt, size_t *len, struct err *e);

/* Renders (as tok_chat_render) and APPENDS the tokens of the rendering to
 * out: the template's own text is encoded with its control tokens (BOS,
 * <|im_start|>, ...), while the text of every message content is raw — a
 * control token's text inside a message stays ordinary text. (With
 * TOK_CHAT_MODEL a content is found in the rendering by searching for it,
 * or for it stripped of surrounding whitespace, in message order after the
 * previous one; a content the template rewrote beyond that is encoded with
 * control tokens recognised.) No BOS/EOS is
 * added beyond what the template writes. 0, or -1 with the reason in e (as
 * tok_chat_render); out keeps its earlier ids on failure. */
int tok_chat_encode(const struct tokenizer *t, enum tok_chat_family fam, const struct tok_chat_msg *msgs,
                    size_t n_msgs, bool add_generation_prompt, struct tok_ids *out, struct err *e);

/* The whole template variable set of a request, for the model's own
 * template (TOK_CHAT_MODEL): vars_json is a JSON object whose keys become
 * template variables as they are — messages as full objects (tool_calls,
 * tool_call_id, name, ...), tools, chat_template_kwargs' keys such as
 * enable_thinking. add_generation_prompt, bos_token and eos_token (the
 * vocabulary's texts) are added unless vars_json sets them. tools: render
 * with tokenizer.chat_template.tool_use when the file has one the engine
 * parses. raw: the n_raw texts (message contents, in message order) that
 * are encoded raw as in tok_chat_encode — never read as control tokens.
 * Appends the tokens to out; when rendered is not NULL the rendered text
 * (from malloc, NUL-terminated) goes there and its length to *rendered_len.
 * 0, or -1 with e: ERR_INVALID when the model has no template the engine
 * runs, vars_json is not an object, or the template fails (raise_exception,
 * a wrong type); ERR_EXHAUSTED for a render limit; ERR_NOMEM. */
int tok_chat_encode_json(const struct tokenizer *t, const char *vars_json, size_t vars_len, bool tools,
                         const char *const *raw, size_t n_raw, bool add_generation_prompt, struct tok_ids *out,
                         char **rendered, size_t *rendered_len, struct err *e);

/* The template text a request is rendered with (the tool_use variant when
 * tools and the file has one), or NULL when the model's template is not run. */
const char *tok_chat_template_for(const struct tokenizer *t, bool tools);

#endif
