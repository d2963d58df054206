/* GBNF parsing and byte-level matching: what each grammar accepts and
 * rejects, and parse errors with their positions. */
#include "grammar/grammar.h"
#include "test.h"

/* 1 when the grammar accepts s completely, 0 when it rejects it (or it is
 * only a prefix), -1 when it does not compile. */
static int accepts(const char *gbnf, const char *s)
{
    struct err e;
    struct grammar *g = grammar_compile(gbnf, strlen(gbnf), &e);
    if (!g) {
        fprintf(stderr, "  compile: %s\n", e.msg);
        return -1;
    }
    /* no vocabulary needed for bytes: a vocabulary of 0 tokens */
    struct grammar_vocab *v = grammar_vocab_new(NULL, 0, &e);
    struct grammar_state *st = v ? grammar_state_new(g, v, &e) : NULL;
    int r = -1;
    if (st)
        r = grammar_state_accept_bytes(st, s, strlen(s), &e) == 0 && grammar_state_can_end(st);
    grammar_state_free(st);
    grammar_vocab_free(v);
    grammar_free(g);
    return r;
}

static const char *compile_error(const char *gbnf)
{
    static struct err e;
    struct grammar *g = grammar_compile(gbnf, strlen(gbnf), &e);
    if (g) {
        grammar_free(g);
        return "";
    }
    CHECK(e.code == ERR_INVALID);
    return e.msg;
}

static const char *arith = "root ::= expr\n"
                           "expr ::= term ([-+] term)*\n"
                           "term ::= factor ([*/] factor)*   # products\n"
                           "factor ::= [0-9]+ | \"(\" expr \")\"\n";

TEST(arithmetic)
{
    CHECK(accepts(arith, "1+2*3") == 1);
    CHECK(accepts(arith, "(1+2)*30/4") == 1);
    CHECK(accepts(arith, "((7))") == 1);
    CHECK(accepts(arith, "1+") == 0);
    CHECK(accepts(arith, "(1") == 0);
    CHECK(accepts(arith, "1+a") == 0);
    CHECK(accepts(arith, "") == 0);
}

TEST(lists_and_nesting)
{
    const char *g = "root ::= \"[\" ( item (\",\" item)* )? \"]\"\n"
                    "item ::= root | [a-z]+\n";
    CHECK(accepts(g, "[]") == 1);
    CHECK(accepts(g, "[a,bc,[d,[]]]") == 1);
    CHECK(accepts(g, "[a,]") == 0);
    CHECK(accepts(g, "[[a]") == 0);
    const char *multi = "root ::= (\n  \"x\"\n  | \"y\" )\n  | \"z\"\n";
    CHECK(accepts(multi, "x") == 1);
    CHECK(accepts(multi, "z") == 1);
    CHECK(accepts(multi, "w") == 0);
}

TEST(repetition_bounds)
{
    const char *g = "root ::= \"a\"{2,4} \"b\"{3} \"c\"{1,} \"d\"{0,1}\n";
    CHECK(accepts(g, "aabbbc") == 1);
    CHECK(accepts(g, "aaaabbbcccd") == 1);
    CHECK(accepts(g, "abbbc") == 0);
    CHECK(accepts(g, "aaaaabbbc") == 0);
    CHECK(accepts(g, "aabbc") == 0);
    CHECK(accepts(g, "aabbb") == 0);
    CHECK(accepts(g, "aabbbcdd") == 0);
    CHECK(accepts("root ::= (\"ab\" | \"c\")+ \"!\"?\n", "abcab!") == 1);
    CHECK(accepts("root ::= \"ab\"*\n", "") == 1);
    CHECK(accepts("root ::= \"ab\"*\n", "aba") == 0);
    CHECK(accepts("root ::= [0-9]{ 2 , }\n", "123456") == 1);
}

TEST(char_classes)
{
    CHECK(accepts("root ::= [a-cx]+\n", "abxc") == 1);
    CHECK(accepts("root ::= [a-cx]+\n", "abd") == 0);
    CHECK(accepts("root ::= [^\"\\\\]*\n", "hello world") == 1);
    CHECK(accepts("root ::= [^\"\\\\]*\n", "say \"x\"") == 0);
    CHECK(accepts("root ::= [\\x41-\\x43]\n", "B") == 1);
    CHECK(accepts("root ::= [-a]+\n", "-a-") == 1);
    CHECK(accepts("root ::= . . .\n", "a\xc3\xa9z") == 1);
    CHECK(accepts("root ::= \"\\u00e9\\n\"\n", "\xc3\xa9\n") == 1);
}

TEST(utf8_ranges)
{
    /* Greek lower case and the CJK block, as code points */
    const char *g = "root ::= [α-ω]+ [\\u4e00-\\u9fff]\n";
    CHECK(accepts(g, "λόγ\xe4\xb8\xad") == 0); /* ό (U+03CC) is outside α-ω */
    CHECK(accepts(g, "λογ\xe4\xb8\xad") == 1);
    CHECK(accepts(g, "λογ\xe3\x81\x82") == 0); /* hiragana */
    CHECK(accepts("root ::= [^a]\n", "\xf0\x9f\x98\x80") == 1); /* 4-byte character */
    CHECK(accepts("root ::= [^a]\n", "\xc0\x80") == 0);         /* overlong: not UTF-8 */
    CHECK(accepts("root ::= [^a]\n", "\xed\xa0\x80") == 0);     /* a surrogate */
    CHECK(accepts("root ::= [^a]\n", "\xe4\xb8") == 0);         /* incomplete */
}

TEST(errors_have_positions)
{
    CHECK(strcmp(compile_error("root ::= \"a\"\nfoo ::= bar\n"), "line 2 col 9: undefined rule 'bar'") == 0);
    CHECK(strcmp(compile_error("rot ::= \"a\"\n"), "line 2 col 1: no rule named 'root'") == 0);
    CHECK(strcmp(compile_error("root ::= \"a\n"), "line 1 col 10: unterminated string literal") == 0);
    CHECK(strcmp(compile_error("root ::= [a-\n"), "line 1 col 10: unterminated character class") == 0);
    CHECK(strcmp(compile_error("root ::= (\"a\"\n"), "line 1 col 10: unclosed '('") == 0);
    CHECK(strcmp(compile_error("root ::= \"a\"{3,1}\n"), "line 1 col 13: repetition {m,n} with n < m") == 0);
    CHECK(strcmp(compile_error("root ::= \"\\q\"\n"), "line 1 col 11: unknown escape") == 0);
    CHECK(strcmp(compile_error("root := \"a\"\n"), "line 1 col 6: expected '::='") == 0);
    CHECK(strstr(compile_error("root ::= root \"a\" | \"b\"\n"), "left-recursive") != NULL);
    CHECK(strstr(compile_error("root ::= x\nx ::= \"a\"? root\n"), "left-recursive") != NULL);
    CHECK(strcmp(compile_error("root ::= \"a\"\nroot ::= \"b\"\n"), "line 2 col 1: rule defined twice") == 0);
    CHECK(strcmp(compile_error("root ::= \"a\" )\n"), "line 1 col 14: unexpected character") == 0);
}

TEST(can_end_and_done)
{
    struct err e;
    const char *src = "root ::= \"ab\" \"c\"?\n";
    struct grammar *g = grammar_compile(src, strlen(src), &e);
    struct grammar_vocab *v = grammar_vocab_new(NULL, 0, &e);
    struct grammar_state *s = grammar_state_new(g, v, &e);
    CHECK(!grammar_state_can_end(s) && !grammar_state_is_done(s));
    CHECK(grammar_state_accept_bytes(s, "ab", 2, &e) == 0);
    CHECK(grammar_state_can_end(s) && !grammar_state_is_done(s));
    struct grammar_state *c = grammar_state_clone(s, &e);
    CHECK(grammar_state_accept_bytes(s, "x", 1, &e) < 0 && e.code == ERR_INVALID);
    CHECK(grammar_state_accept_bytes(s, "c", 1, &e) == 0);
    CHECK(grammar_state_can_end(s) && grammar_state_is_done(s));
    CHECK(c && !grammar_state_is_done(c)); /* the clone is independent */
    grammar_state_free(c);
    grammar_state_free(s);
    grammar_vocab_free(v);
    grammar_free(g);
}

/* A grammar whose alternatives multiply with every byte (items of 1 to 3
 * letters, nested lists) fails cleanly with ERR_EXHAUSTED once too many
 * stay alive, instead of taking exponential time; an ordinary output of the
 * same grammar still matches. */
TEST(ambiguity_is_bounded)
{
    struct err e;
    const char *src = "root ::= \"[\" (item (item)*)? \"]\"\nitem ::= [a-z]{1,3} | root\n";
    struct grammar *g = grammar_compile(src, strlen(src), &e);
    CHECK(g != NULL);
    struct grammar_vocab *v = grammar_vocab_new(NULL, 0, &e);
    struct grammar_state *s = grammar_state_new(g, v, &e);
    CHECK(s && grammar_state_accept_bytes(s, "[ab[c]]", 7, &e) == 0 && grammar_state_can_end(s));
    grammar_state_free(s);
    s = grammar_state_new(g, v, &e);
    char text[2100];
    for (int i = 0; i < 2048; i++)
        text[i] = i % 3 ? 'a' : '[';
    int rc = 0;
    for (int i = 0; i < 2048 && rc == 0; i++)
        rc = grammar_state_accept_bytes(s, text + i, 1, &e);
    CHECK(rc < 0 && e.code == ERR_EXHAUSTED && strstr(e.msg, "too ambiguous"));
    grammar_state_free(s);
    grammar_vocab_free(v);
    grammar_free(g);
}

int main(void)
{
    RUN(arithmetic);
    RUN(lists_and_nesting);
    RUN(repetition_bounds);
    RUN(char_classes);
    RUN(utf8_ranges);
    RUN(errors_have_positions);
    RUN(can_end_and_done);
    RUN(ambiguity_is_bounded);
    TEST_END();
}
