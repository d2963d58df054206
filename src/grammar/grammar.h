/*
 * grammar — structured output: grammars that constrain decoding.
 *
 * Three parts:
 *   1. GBNF (the grammar syntax llama.cpp's server accepts) compiled into an
 *      immutable struct grammar: rules `name ::= ...`, alternation `|`,
 *      grouping `( )`, `*` `+` `?`, `{m}` `{m,}` `{m,n}`, string literals
 *      "..." with escapes \n \r \t \\ \" \' \[ \] \xHH \uHHHH \UHHHHHHHH,
 *      character classes [a-z] [^...] over Unicode code points, `.` (any
 *      code point), comments from `#` to the end of the line. The start rule
 *      is `root`. A rule ends at the end of its line unless inside
 *      parentheses (or the next line starts with `|`). Left recursion is an
 *      error (the matcher expands rules top-down).
 *   2. JSON Schema compiled into GBNF text (grammar_schema_to_gbnf), see
 *      below for the keywords.
 *   3. A matcher: per vocabulary a token trie (struct grammar_vocab, built
 *      once per tokenizer), per sequence a struct grammar_state (a set of
 *      pushdown stacks, as llama.cpp's grammar sampler keeps) that computes
 *      the bitset of tokens that may come next and advances by a token.
 *      Tokens are byte strings: one may span several terminals or end in
 *      the middle of a UTF-8 character (the state keeps the pending bytes).
 *      End-of-generation tokens are allowed only where the grammar may end;
 *      other control tokens (unless grammar_allow_control names them) and
 *      tokens with no bytes never are.
 *
 * Cost: the allowed set of a state is the union of the sets of its stacks;
 * the set of one stack is computed by walking the token trie (pruned where
 * no stack survives) and cached in the grammar (per vocabulary, up to
 * GRAMMAR_CACHE_BYTES), so a state seen before costs one OR of the bitset
 * per stack. Generation keeps visiting the same few states (inside a
 * string, after a comma, ...), so the walk happens a few dozen times per
 * schema, not per token.
 *
 * Threads: a struct grammar is immutable apart from its mask cache, which
 * has its own lock: share it between threads and sequences freely
 * (grammar_ref / grammar_free count references). A grammar_vocab is
 * immutable. A grammar_state belongs to one thread at a time.
 *
 * JSON Schema keywords enforced: type (a name or an array of names),
 * properties, required, additionalProperties (false, true or a schema; when
 * absent and properties are given, no other keys are generated, which is
 * still valid output), items, prefixItems, minItems, maxItems, enum, const,
 * anyOf, oneOf (as anyOf: exclusivity is not enforced), allOf (merged into
 * one schema; conflicting values of one keyword are an error), local $ref
 * ("#", "#/$defs/x", "#/definitions/x", recursion allowed), $defs /
 * definitions, string minLength / maxLength / pattern / format (date, time,
 * date-time, uuid), integer and number minimum / maximum / exclusiveMinimum /
 * exclusiveMaximum, nullable. Annotations (title, description, default,
 * examples, $schema, $id, $comment, deprecated, readOnly, writeOnly) are
 * ignored; any other keyword is an ERR_INVALID naming it.
 *   Integer bounds are exact (a digit-by-digit grammar of the range). Number
 *   bounds: the integral part is held to the range (for a lower bound >= 0
 *   no minus sign; the integral digits bounded like an integer of the
 *   range), the fraction is free, so 1.5 passes `maximum: 1`. A bound with a
 *   fraction is an error; exclusive number bounds are enforced by their
 *   integral part only when that is exact (an error otherwise).
 *   pattern: a regex subset — literals, escapes (\d \w \s \D \W \S and
 *   escaped punctuation), classes [..] [^..] with ranges, `.`, groups ( )
 *   and (?: ), alternation |, quantifiers * + ? {m} {m,} {m,n}, anchors ^ at
 *   the start and $ at the end (without them any text may come before or
 *   after, as JSON Schema's unanchored search means). No backreferences,
 *   lookaround or lazy quantifiers (an error naming the construct).
 *   Whitespace between JSON tokens is at most one run of a space or a
 *   newline followed by up to 8 spaces; numbers have at most 16 integral and
 *   16 fraction digits.
 */
#ifndef MAAS_GRAMMAR_H
#define MAAS_GRAMMAR_H

#include "core/core.h"
#include "tokenizer/tokenizer.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct grammar;

/* Compiles GBNF text (len bytes; need not be NUL-terminated). NULL with
 * ERR_INVALID "line L col C: what" on a syntax error, an undefined rule, a
 * missing root or left recursion; ERR_NOMEM. One reference. */
struct grammar *grammar_compile(const char *gbnf, size_t len, struct err *e);
/* Adds a reference; returns g. */
struct grammar *grammar_ref(struct grammar *g);
/* Drops a reference; the last frees it. NULL does nothing. */
void grammar_free(struct grammar *g);

/* Lets the control tokens whose text is one of texts[0..n) be chosen as
 * single tokens wherever the grammar allows their bytes (other control
 * tokens never are). Tool-call markers such as <|python_tag|> or
 * [TOOL_CALLS] are control tokens in many vocabularies; a grammar that
 * forces a call needs them. Call before g is shared. 0, or -1 with ERR_NOMEM. */
int grammar_allow_control(struct grammar *g, const char *const *texts, int n, struct err *e);

/* ---- lazy grammars ----
 * A grammar with a trigger constrains nothing until the trigger appears in
 * the output (as llama.cpp's lazy grammars): a state starts waiting, takes
 * any token (its mask allows the whole vocabulary, end-of-generation
 * included) and only watches the output's bytes. When they end with the
 * trigger — written by one control token, by several ordinary tokens, or
 * by a token holding more bytes after it — the state becomes active at the
 * start of the grammar, advanced over the trigger and over the rest of
 * that token's bytes; from then on it is an ordinary state. Every string
 * the grammar matches must start with the trigger (grammar_state_new
 * checks). A token whose bytes after the trigger the grammar refuses is
 * refused as a whole (grammar_state_accept fails, the state still
 * waiting), so the caller can sample another token instead of writing a
 * call the grammar cannot finish. Inside a skipped span (reasoning:
 * skip_open .. skip_close) the trigger is not looked for. */
#define GRAMMAR_TRIGGER_MAX 63 /* longest trigger or skip marker, in bytes */
struct grammar_trigger {
    const char *text;                   /* 1..GRAMMAR_TRIGGER_MAX bytes */
    const char *skip_open, *skip_close; /* both NULL or "", or both 1..GRAMMAR_TRIGGER_MAX bytes */
    bool start_skipped;                 /* the output starts inside a skipped span */
};
/* Makes g lazy. Call before g is shared. 0, or -1 with ERR_INVALID (a
 * marker empty or too long) or ERR_NOMEM. */
int grammar_set_trigger(struct grammar *g, const struct grammar_trigger *t, struct err *e);

/* Translates a JSON Schema (JSON text) into GBNF text whose rule names all
 * start with rule_prefix (NULL = ""); the start rule is <prefix>root, so
 * the text with prefix "" compiles as is, and with another prefix it can be
 * embedded in a larger grammar. The special schema {"type":"json_object"}
 * means any JSON object. Returns a string from malloc; NULL with
 * ERR_INVALID naming the keyword and where (a JSON pointer) on a schema it
 * cannot enforce or that is malformed. */
char *grammar_schema_to_gbnf(const char *schema_json, const char *rule_prefix, struct err *e);

/* ---- matching ---- */

struct grammar_vocab;

/* The token trie of tokenizer t over the first n_vocab ids (the sampler's
 * vocabulary; ids past the tokenizer's have no bytes and are never
 * allowed). t is only read here. NULL with a reason (out of memory). */
struct grammar_vocab *grammar_vocab_new(const struct tokenizer *t, int32_t n_vocab, struct err *e);
void grammar_vocab_free(struct grammar_vocab *v); /* NULL does nothing */
/* Words of a mask over the vocabulary: (n_vocab + 31) / 32. */
int grammar_vocab_words(const struct grammar_vocab *v);

struct grammar_state;

/* A sequence's state at the start of g (takes a reference on g; v is
 * borrowed and must outlive the state); waiting when g has a trigger.
 * NULL with a reason (ERR_INVALID: g's trigger does not fit its start). */
struct grammar_state *grammar_state_new(struct grammar *g, const struct grammar_vocab *v, struct err *e);
struct grammar_state *grammar_state_clone(const struct grammar_state *s, struct err *e);
void grammar_state_free(struct grammar_state *s); /* NULL does nothing */

/* Writes the allowed-token bitset (bit t of word t/32) into mask
 * (grammar_vocab_words words) and returns the number of tokens allowed
 * (0 = none: the grammar is done or no token of the vocabulary fits; all
 * of them while waiting), or -1 with ERR_NOMEM. */
int grammar_state_mask(struct grammar_state *s, uint32_t *mask, struct err *e);
/* Advances by token id. An end-of-generation token is accepted where the
 * grammar may end (and leaves the state done; while waiting it changes
 * nothing). While waiting, any token is taken by its text (a control
 * token's too) unless it completes the trigger with bytes after it the
 * grammar refuses. -1 with ERR_INVALID when
 * the grammar does not allow the token (the state is unchanged); ERR_NOMEM. */
int grammar_state_accept(struct grammar_state *s, int32_t id, struct err *e);
/* Advances by raw bytes (tests, and text forced into the output). Same
 * errors as grammar_state_accept. */
int grammar_state_accept_bytes(struct grammar_state *s, const char *p, size_t n, struct err *e);
/* A lazy state whose trigger has not appeared yet (everything is allowed). */
bool grammar_state_waiting(const struct grammar_state *s);
/* The grammar may stop here (no pending partial character; always while
 * waiting). */
bool grammar_state_can_end(const struct grammar_state *s);
/* No continuation is possible (the grammar is complete, or an
 * end-of-generation token was accepted). */
bool grammar_state_is_done(const struct grammar_state *s);

#endif
