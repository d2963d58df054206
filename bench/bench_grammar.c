/*
 * The matcher's per-token cost: a JSON schema's grammar driven through
 * random allowed tokens of a real vocabulary, timing grammar_state_mask
 * (cold: the first pass fills the grammar's mask cache with trie walks;
 * warm: a second pass over new random paths of the same grammar) and
 * grammar_state_accept.
 *
 * usage: build/bench/bench_grammar VOCAB.gguf [tokens (400)]
 * Prints one line per pass and a JSON line.
 */
#include "gguf/gguf.h"
#include "grammar/grammar.h"
#include "tokenizer/tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *schema =
    "{\"type\":\"object\",\"properties\":{\"title\":{\"type\":\"string\",\"maxLength\":40},\"items\":{\"type\":\"array\","
    "\"items\":{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\",\"maxLength\":30},\"count\":{\"type\":"
    "\"integer\",\"minimum\":0,\"maximum\":1000},\"ok\":{\"type\":\"boolean\"}},\"required\":[\"name\",\"count\",\"ok\"],"
    "\"additionalProperties\":false},\"minItems\":8,\"maxItems\":8}},\"required\":[\"title\",\"items\"],"
    "\"additionalProperties\":false}";

/* Drives fresh states through n random allowed tokens; returns mean mask µs. */
static double pass(struct grammar *g, struct grammar_vocab *v, int n, uint64_t seed, double *accept_us, int *steps)
{
    struct err e;
    uint32_t *m = malloc((size_t)grammar_vocab_words(v) * 4);
    struct rng r;
    rng_seed(&r, seed);
    double t_mask = 0, t_acc = 0;
    int k = 0;
    struct grammar_state *s = grammar_state_new(g, v, &e);
    while (k < n) {
        uint64_t t0 = now_ns();
        int cnt = grammar_state_mask(s, m, &e);
        uint64_t t1 = now_ns();
        t_mask += (double)(t1 - t0);
        if (cnt <= 0 || grammar_state_is_done(s)) { /* start again */
            grammar_state_free(s);
            s = grammar_state_new(g, v, &e);
            continue;
        }
        int pick = (int)(rng_uniform(&r) * cnt), id = -1;
        for (int w = 0; id < 0; w++)
            for (int b = 0; b < 32; b++)
                if (m[w] >> b & 1 && pick-- == 0) {
                    id = w * 32 + b;
                    break;
                }
        t0 = now_ns();
        if (grammar_state_accept(s, id, &e) < 0) {
            fprintf(stderr, "accept failed: %s\n", e.msg);
            exit(1);
        }
        t_acc += (double)(now_ns() - t0);
        k++;
    }
    grammar_state_free(s);
    free(m);
    *accept_us = t_acc / n / 1e3;
    *steps = k;
    return t_mask / n / 1e3;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s VOCAB.gguf [tokens]\n", argv[0]);
        return 2;
    }
    int n = argc > 2 ? atoi(argv[2]) : 400;
    struct err e;
    struct gguf_file *f = gguf_open(argv[1], &e);
    struct tokenizer *t = f ? tok_load(f, &e) : NULL;
    if (!t) {
        fprintf(stderr, "%s\n", e.msg);
        return 1;
    }
    uint64_t t0 = now_ns();
    struct grammar_vocab *v = grammar_vocab_new(t, tok_n_vocab(t), &e);
    double build_ms = (double)(now_ns() - t0) / 1e6;
    char *gbnf = grammar_schema_to_gbnf(schema, NULL, &e);
    struct grammar *g = gbnf ? grammar_compile(gbnf, strlen(gbnf), &e) : NULL;
    if (!v || !g) {
        fprintf(stderr, "%s\n", e.msg);
        return 1;
    }
    double acc1, acc2;
    int k;
    double cold = pass(g, v, n, 1, &acc1, &k);
    double warm = pass(g, v, n, 2, &acc2, &k);
    printf("vocabulary %d tokens, trie built in %.1f ms\n", tok_n_vocab(t), build_ms);
    printf("cold pass: mask %.1f us/token (trie walks fill the cache), accept %.1f us/token\n", cold, acc1);
    printf("warm pass: mask %.1f us/token, accept %.1f us/token\n", warm, acc2);
    printf("{\"n_vocab\":%d,\"trie_ms\":%.1f,\"cold_mask_us\":%.1f,\"warm_mask_us\":%.1f,\"accept_us\":%.1f}\n",
           tok_n_vocab(t), build_ms, cold, warm, acc2);
    free(gbnf);
    grammar_free(g);
    grammar_vocab_free(v);
    tok_free(t);
    gguf_close(f);
    return 0;
}
