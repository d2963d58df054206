/* Lazy grammars (grammar_set_trigger): a waiting state allows every token
 * and takes any text; the trigger — split over several tokens, inside one
 * token with bytes before or after it, or a single control token — makes
 * it active with the trigger consumed, and from then on only what the
 * grammar allows passes; a token whose bytes after the trigger the grammar
 * refuses is refused whole; the trigger is not looked for inside skipped
 * spans (reasoning). */
#include "grammar/grammar.h"
#include "test_vocab.h"

static struct tokenizer *tok;
static struct grammar_vocab *gv;
static int32_t n_vocab;

static bool bit(const uint32_t *m, int32_t t)
{
    return m[t / 32] >> (t % 32) & 1;
}

/* A lazy grammar: src compiled with trigger t (and the skip markers). */
static struct grammar *lazy(const char *src, const char *t, const char *open, const char *close, bool in_skip)
{
    struct err e;
    struct grammar *g = grammar_compile(src, strlen(src), &e);
    CHECKF(g != NULL, "%s", e.msg);
    if (g)
        CHECKF(grammar_set_trigger(g, &(struct grammar_trigger){t, open, close, in_skip}, &e) == 0, "%s", e.msg);
    return g;
}

/* The id of the token whose text is s (the byte-level spelling of ASCII without spaces). */
static int32_t id(const char *s)
{
    int32_t t = tok_find(tok, s, strlen(s));
    CHECKF(t >= 0, "no token '%s'", s);
    return t;
}

static const char *CALL = "root ::= \"<tc>\" \"{\" [a-z]+ \"}\"\n";

TEST(free_until_trigger)
{
    struct err e;
    struct grammar *g = lazy(CALL, "<tc>", NULL, NULL, false);
    struct grammar_state *s = grammar_state_new(g, gv, &e);
    uint32_t *m = calloc((size_t)grammar_vocab_words(gv), 4);
    int32_t eot = tok_eos(tok);
    CHECK(s && grammar_state_waiting(s));
    CHECK(grammar_state_mask(s, m, &e) == n_vocab && bit(m, eot) && bit(m, id("!")));
    /* text the grammar would never allow, "<" and "tc" not followed by the rest, end of generation */
    const char *free_text[] = {"h", "!", "<", "t", "<", "tc", "}", "{"};
    for (size_t i = 0; i < sizeof free_text / sizeof *free_text; i++)
        CHECKF(grammar_state_accept(s, id(free_text[i]), &e) == 0, "'%s': %s", free_text[i], e.msg);
    CHECK(grammar_state_accept(s, eot, &e) == 0);
    CHECK(grammar_state_waiting(s) && grammar_state_can_end(s) && !grammar_state_is_done(s));
    CHECK(grammar_state_accept_bytes(s, "x <t c> <tc", 11, &e) == 0 && grammar_state_waiting(s));
    free(m);
    grammar_state_free(s);
    grammar_free(g);
}

TEST(trigger_split_over_tokens)
{
    struct err e;
    struct grammar *g = lazy(CALL, "<tc>", NULL, NULL, false);
    struct grammar_state *s = grammar_state_new(g, gv, &e);
    uint32_t *m = calloc((size_t)grammar_vocab_words(gv), 4);
    CHECK(grammar_state_accept(s, id("h"), &e) == 0);
    CHECK(grammar_state_accept(s, id("<"), &e) == 0);
    CHECK(grammar_state_accept(s, id("t"), &e) == 0);
    struct grammar_state *c = grammar_state_clone(s, &e); /* the window travels with a clone */
    CHECK(grammar_state_accept(s, id("c"), &e) == 0 && grammar_state_waiting(s));
    CHECK(grammar_state_accept(s, id(">"), &e) == 0 && !grammar_state_waiting(s));
    /* active: only "{" now, no end */
    CHECK(grammar_state_mask(s, m, &e) == 1 && bit(m, id("{")) && !grammar_state_can_end(s));
    CHECK(grammar_state_accept(s, id("h"), &e) < 0 && e.code == ERR_INVALID);
    CHECK(grammar_state_accept(s, id("{"), &e) == 0);
    CHECK(grammar_state_accept(s, id("abc"), &e) == 0);
    CHECK(grammar_state_mask(s, m, &e) > 1 && bit(m, id("}")) && !bit(m, id("{")) && !bit(m, tok_eos(tok)));
    CHECK(grammar_state_accept(s, id("}"), &e) == 0 && grammar_state_is_done(s));
    CHECK(grammar_state_mask(s, m, &e) >= 1 && bit(m, tok_eos(tok))); /* complete: only the end */
    for (int32_t t = 0; t < n_vocab; t++)
        CHECKF(!bit(m, t) || tok_is_eog(tok, t), "token %d allowed after the end", (int)t);
    /* the clone saw "<t": "c>" completes it there too, the rest follows the grammar */
    CHECK(c && grammar_state_waiting(c));
    CHECK(grammar_state_accept_bytes(c, "c>{x", 4, &e) == 0 && !grammar_state_waiting(c));
    CHECK(grammar_state_accept_bytes(c, "y}", 2, &e) == 0 && grammar_state_is_done(c));
    grammar_state_free(c);
    free(m);
    grammar_state_free(s);
    grammar_free(g);
}

TEST(trigger_inside_one_token)
{
    struct err e;
    struct grammar *g = lazy(CALL, "<tc>", NULL, NULL, false);
    struct grammar_state *s = grammar_state_new(g, gv, &e);
    /* bytes after the trigger that do not fit: refused whole, the state still waiting and unchanged */
    CHECK(grammar_state_accept_bytes(s, "ok <tc>!", 8, &e) < 0 && e.code == ERR_INVALID);
    CHECK(grammar_state_waiting(s));
    CHECK(grammar_state_accept_bytes(s, "<t", 2, &e) == 0 && grammar_state_waiting(s));
    /* text before the trigger, then the trigger and a fitting rest */
    CHECK(grammar_state_accept_bytes(s, "c>{ab", 5, &e) == 0 && !grammar_state_waiting(s));
    CHECK(grammar_state_accept_bytes(s, "!", 1, &e) < 0);
    CHECK(grammar_state_accept_bytes(s, "c}", 2, &e) == 0 && grammar_state_is_done(s));
    grammar_state_free(s);
    /* a trigger the grammar does not start with is refused when a state is made */
    struct grammar *bad = lazy(CALL, "<tool>", NULL, NULL, false);
    CHECK(grammar_state_new(bad, gv, &e) == NULL && e.code == ERR_INVALID);
    grammar_free(bad);
    /* malformed triggers */
    CHECK(grammar_set_trigger(g, &(struct grammar_trigger){"", NULL, NULL, false}, &e) < 0 && e.code == ERR_INVALID);
    CHECK(grammar_set_trigger(g, &(struct grammar_trigger){"<tc>", "<think>", NULL, false}, &e) < 0);
    char longt[GRAMMAR_TRIGGER_MAX + 2];
    memset(longt, 'a', sizeof longt - 1);
    longt[sizeof longt - 1] = 0;
    CHECK(grammar_set_trigger(g, &(struct grammar_trigger){longt, NULL, NULL, false}, &e) < 0);
    grammar_free(g);
}

TEST(trigger_control_token)
{
    struct err e;
    struct tokenizer *own = test_vocab_build(&e); /* has <|im_start|>: a control token that does not end generation */
    CHECKF(own != NULL, "%s", own ? "" : e.msg);
    if (!own)
        return;
    struct grammar_vocab *v = grammar_vocab_new(own, tok_n_vocab(own), &e);
    int32_t start = tok_find(own, "<|im_start|>", 12), a = tok_find(own, "a", 1), eot = tok_find(own, "<|endoftext|>", 13);
    struct grammar *g = lazy("root ::= \"<|im_start|>\" \"a\"+\n", "<|im_start|>", NULL, NULL, false);
    const char *names[] = {"<|im_start|>"};
    CHECK(grammar_allow_control(g, names, 1, &e) == 0);
    struct grammar_state *s = grammar_state_new(g, v, &e);
    uint32_t *m = calloc((size_t)grammar_vocab_words(v), 4);
    CHECK(grammar_state_mask(s, m, &e) == tok_n_vocab(own) && bit(m, start));
    CHECK(grammar_state_accept(s, tok_find(own, "b", 1), &e) == 0 && grammar_state_waiting(s));
    CHECK(grammar_state_accept(s, start, &e) == 0 && !grammar_state_waiting(s));
    CHECK(grammar_state_mask(s, m, &e) >= 1 && bit(m, a) && !bit(m, start) && !bit(m, eot));
    CHECK(grammar_state_accept(s, a, &e) == 0);
    grammar_state_mask(s, m, &e);
    CHECK(bit(m, a) && bit(m, eot));
    CHECK(grammar_state_accept(s, eot, &e) == 0 && grammar_state_is_done(s));
    free(m);
    grammar_state_free(s);
    grammar_free(g);
    grammar_vocab_free(v);
    tok_free(own);
}

TEST(reasoning_is_skipped)
{
    struct err e;
    struct grammar *g = lazy(CALL, "<tc>", "<think>", "</think>", false);
    struct grammar_state *s = grammar_state_new(g, gv, &e);
    const char *text = "<think>maybe <tc>{x} now</thi";
    CHECK(grammar_state_accept_bytes(s, text, strlen(text), &e) == 0 && grammar_state_waiting(s));
    CHECK(grammar_state_accept_bytes(s, "nk>so <tc>", 10, &e) == 0 && !grammar_state_waiting(s));
    CHECK(grammar_state_accept_bytes(s, "{q}", 3, &e) == 0 && grammar_state_is_done(s));
    grammar_state_free(s);
    grammar_free(g);
    /* the output starts inside reasoning */
    g = lazy(CALL, "<tc>", "<think>", "</think>", true);
    s = grammar_state_new(g, gv, &e);
    CHECK(grammar_state_accept_bytes(s, "<tc>!", 5, &e) == 0 && grammar_state_waiting(s));
    CHECK(grammar_state_accept_bytes(s, "</think><tc>", 12, &e) == 0 && !grammar_state_waiting(s));
    grammar_state_free(s);
    grammar_free(g);
}

int main(void)
{
    struct err e;
    tok = test_vocab_load(&e);
    if (!tok) {
        fprintf(stderr, "no vocabulary: %s\n", e.msg);
        return 1;
    }
    n_vocab = tok_n_vocab(tok);
    gv = grammar_vocab_new(tok, n_vocab, &e);
    RUN(free_until_trigger);
    RUN(trigger_split_over_tokens);
    RUN(trigger_inside_one_token);
    RUN(trigger_control_token);
    RUN(reasoning_is_skipped);
    grammar_vocab_free(gv);
    tok_free(tok);
    TEST_END();
}
