/* The matcher against a real byte-level BPE vocabulary (test_vocab.h): the
 * allowed-token mask equals a brute-force check of every token (accept it
 * on a copy of the state), along a path through each grammar; tokens that
 * span several terminals; characters split across byte tokens;
 * end-of-generation only where the grammar may end; control tokens never,
 * unless grammar_allow_control names them. */
#include "grammar/grammar.h"
#include "test_vocab.h"

static struct tokenizer *tok;
static struct grammar_vocab *gv;
static int32_t n_vocab;

static bool bit(const uint32_t *m, int32_t t)
{
    return m[t / 32] >> (t % 32) & 1;
}

static struct grammar *compile(const char *src)
{
    struct err e;
    struct grammar *g = grammar_compile(src, strlen(src), &e);
    CHECKF(g != NULL, "%s", e.msg);
    return g;
}

/* Compares the mask with accepting each token on a clone; returns the
 * allowed token with the longest piece (ties: lowest id), or -1. */
static int32_t check_mask(struct grammar_state *s, const char *what)
{
    struct err e;
    uint32_t *m = calloc((size_t)grammar_vocab_words(gv), 4);
    int n = grammar_state_mask(s, m, &e);
    int count = 0, bad = 0;
    int32_t best = -1;
    size_t best_len = 0;
    for (int32_t t = 0; t < n_vocab; t++) {
        struct grammar_state *c = grammar_state_clone(s, &e);
        bool ok = grammar_state_accept(c, t, &e) == 0;
        grammar_state_free(c);
        if (ok != bit(m, t) && bad++ < 3)
            fprintf(stderr, "  %s: token %d: mask %d, accept %d\n", what, t, bit(m, t), ok);
        count += ok;
        size_t len = 0;
        tok_piece(tok, t, false, &len);
        if (ok && !tok_is_eog(tok, t) && len > best_len)
            best = t, best_len = len;
    }
    CHECKF(bad == 0 && n == count, "%s: %d tokens differ; mask counts %d, brute force %d", what, bad, n, count);
    free(m);
    return best;
}

TEST(mask_equals_brute_force)
{
    const char *grammars[] = {
        "root ::= \"{\" ws \"\\\"name\\\"\" ws \":\" ws \"\\\"\" [a-z ]{0,12} \"\\\"\" ws \"}\"\nws ::= \" \"?\n",
        "root ::= ( [0-9]+ \",\" )* \"end\"\n",
        "root ::= \"the\" ( \" cat\" | \" cats\" | \" category\" ) [^\\x00-\\x7F]? \"!\"\n",
    };
    for (size_t k = 0; k < sizeof grammars / sizeof *grammars; k++) {
        struct err e;
        struct grammar *g = compile(grammars[k]);
        struct grammar_state *s = g ? grammar_state_new(g, gv, &e) : NULL;
        for (int step = 0; s && step < 4 && !grammar_state_is_done(s); step++) {
            char what[64];
            snprintf(what, sizeof what, "grammar %zu step %d", k, step);
            int32_t t = check_mask(s, what);
            if (t < 0)
                break;
            CHECK(grammar_state_accept(s, t, &e) == 0);
        }
        grammar_state_free(s);
        grammar_free(g);
    }
}

TEST(multi_terminal_tokens)
{
    struct err e;
    struct grammar *g = compile("root ::= \"a\" \"b\" [c-e] \"d\"\n");
    struct grammar_state *s = grammar_state_new(g, gv, &e);
    uint32_t *m = calloc((size_t)grammar_vocab_words(gv), 4);
    int32_t abc = tok_find(tok, "abc", 3), abf = tok_find(tok, "abs", 3), ab = tok_find(tok, "ab", 2);
    CHECK(abc >= 0 && abf >= 0 && ab >= 0);
    if (abc < 0 || abf < 0 || ab < 0)
        goto out;
    CHECK(grammar_state_mask(s, m, &e) > 0);
    CHECK(bit(m, abc) && bit(m, ab) && !bit(m, abf));
    CHECK(grammar_state_accept(s, abc, &e) == 0);
    CHECK(grammar_state_mask(s, m, &e) == 1 && bit(m, tok_find(tok, "d", 1)));
    CHECK(grammar_state_accept(s, tok_find(tok, "d", 1), &e) == 0);
    CHECK(grammar_state_is_done(s));
out:
    free(m);
    grammar_state_free(s);
    grammar_free(g);
}

/* The byte token of byte b (its vocabulary text is GPT-2's character for b). */
static int32_t byte_token(unsigned b)
{
    char u[8];
    size_t n = test_vocab_utf8(u, test_vocab_byte_cp(b));
    return tok_find(tok, u, n);
}

TEST(partial_utf8)
{
    struct err e;
    struct grammar *g = compile("root ::= [é-ê] \"!\"\n"); /* U+00E9..U+00EA: C3 A9, C3 AA */
    struct grammar_state *s = grammar_state_new(g, gv, &e);
    uint32_t *m = calloc((size_t)grammar_vocab_words(gv), 4);
    CHECK(grammar_state_mask(s, m, &e) >= 1 && bit(m, byte_token(0xC3)) && !bit(m, byte_token(0xC4)));
    CHECK(grammar_state_accept(s, byte_token(0xC3), &e) == 0);
    CHECK(!grammar_state_can_end(s));
    CHECK(grammar_state_mask(s, m, &e) >= 2 && bit(m, byte_token(0xA9)) && bit(m, byte_token(0xAA)) &&
          !bit(m, byte_token(0xAB)));
    CHECK(grammar_state_accept(s, byte_token(0xAB), &e) < 0 && e.code == ERR_INVALID);
    CHECK(grammar_state_accept(s, byte_token(0xAA), &e) == 0);
    CHECK(grammar_state_accept(s, tok_find(tok, "!", 1), &e) == 0 && grammar_state_is_done(s));
    free(m);
    grammar_state_free(s);
    grammar_free(g);
}

TEST(eog_and_control_tokens)
{
    struct err e;
    struct grammar *g = compile("root ::= \"a\"+\n");
    struct grammar_state *s = grammar_state_new(g, gv, &e);
    uint32_t *m = calloc((size_t)grammar_vocab_words(gv), 4);
    int32_t eot = tok_find(tok, "<|endoftext|>", 13), start = -1;
    for (int32_t t = 0; t < n_vocab && start < 0; t++) /* a control token that does not end generation */
        if (tok_token_type(tok, t) == TOK_TYPE_CONTROL && !tok_is_eog(tok, t))
            start = t;
    if (start < 0)
        start = eot; /* gpt-2 has none: the checks below still hold for <|endoftext|> where they must */
    CHECK(eot >= 0);
    grammar_state_mask(s, m, &e);
    CHECK(!bit(m, eot) && !bit(m, start));
    CHECK(grammar_state_accept(s, eot, &e) < 0);
    CHECK(grammar_state_accept(s, tok_find(tok, "a", 1), &e) == 0);
    grammar_state_mask(s, m, &e);
    CHECK(bit(m, eot) && bit(m, tok_find(tok, "a", 1)));
    CHECK(start == eot || (!bit(m, start) && grammar_state_accept(s, start, &e) < 0));
    CHECK(grammar_state_accept(s, eot, &e) == 0 && grammar_state_is_done(s));
    CHECK(grammar_state_mask(s, m, &e) == 0);
    free(m);
    grammar_state_free(s);
    grammar_free(g);
}

/* A control token named by grammar_allow_control is allowed where its bytes fit, and only there. */
TEST(allowed_control_tokens)
{
    struct err e;
    struct tokenizer *own = test_vocab_build(&e); /* has <|im_start|>, a control token that does not end generation */
    CHECKF(own != NULL, "%s", own ? "" : e.msg);
    struct grammar_vocab *v = grammar_vocab_new(own, tok_n_vocab(own), &e);
    int32_t start = tok_find(own, "<|im_start|>", 12);
    CHECK(start >= 0 && tok_token_type(own, start) == TOK_TYPE_CONTROL && !tok_is_eog(own, start));
    uint32_t *m = calloc((size_t)grammar_vocab_words(v), 4);
    struct grammar *g = compile("root ::= \"x\"? \"<|im_start|>\" \"a\"\n");
    struct grammar_state *s = grammar_state_new(g, v, &e);
    grammar_state_mask(s, m, &e);
    CHECK(!bit(m, start) && grammar_state_accept(s, start, &e) < 0); /* not named: never */
    grammar_state_free(s);
    const char *names[] = {"<|im_start|>"};
    CHECK(grammar_allow_control(g, names, 1, &e) == 0);
    s = grammar_state_new(g, v, &e);
    grammar_state_mask(s, m, &e);
    CHECK(bit(m, start));
    CHECK(grammar_state_accept(s, tok_find(own, "x", 1), &e) == 0);
    grammar_state_mask(s, m, &e);
    CHECK(bit(m, start) && !bit(m, tok_find(own, "x", 1)));
    CHECK(grammar_state_accept(s, start, &e) == 0);
    grammar_state_mask(s, m, &e);
    CHECK(!bit(m, start) && bit(m, tok_find(own, "a", 1))); /* its bytes do not fit any more */
    CHECK(grammar_state_accept(s, start, &e) < 0);
    CHECK(grammar_state_accept(s, tok_find(own, "a", 1), &e) == 0 && grammar_state_can_end(s));
    grammar_state_free(s);
    grammar_free(g);
    free(m);
    grammar_vocab_free(v);
    tok_free(own);
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
    RUN(mask_equals_brute_force);
    RUN(multi_terminal_tokens);
    RUN(partial_utf8);
    RUN(eog_and_control_tokens);
    RUN(allowed_control_tokens);
    grammar_vocab_free(gv);
    tok_free(tok);
    TEST_END();
}
