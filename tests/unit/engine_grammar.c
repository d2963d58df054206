/* engine: structured output. Sequences with a grammar emit only what it
 * allows and finish with stop when it is complete (length when max_tokens
 * runs out first); many at once with a KV cache small enough to force
 * preemption (recomputation) still follow their grammars, and a sequence
 * without a grammar in the same batches is unaffected by the others'
 * masks. */
#include "engine/engine.h"
#include "kernels/kernels.h"
#include "test.h"
#include "tiny_served.h"

static struct tokenizer *tok;

/* Runs r; writes the decoded text (cap bytes) and the DONE event. */
static void collect(struct engine_seq *s, char *text, size_t cap, struct engine_event *done)
{
    size_t n = 0;
    struct engine_event ev;
    for (;;) {
        if (engine_next(s, &ev, 30000) != 0) {
            CHECK(!"timeout");
            break;
        }
        if (ev.kind == ENGINE_EV_DONE)
            break;
        size_t len = 0;
        const char *p = tok_piece(tok, ev.tok.token, false, &len);
        if (n + len < cap) {
            memcpy(text + n, p, len);
            n += len;
        }
    }
    text[n] = 0;
    *done = ev;
}

/* 1 when g accepts text completely. */
static int matches(struct grammar *g, const char *text)
{
    struct err e;
    struct grammar_vocab *v = grammar_vocab_new(NULL, 0, &e);
    struct grammar_state *s = grammar_state_new(g, v, &e);
    int ok = grammar_state_accept_bytes(s, text, strlen(text), &e) == 0 && grammar_state_can_end(s);
    grammar_state_free(s);
    grammar_vocab_free(v);
    return ok;
}

static struct grammar *compile(const char *src)
{
    struct err e;
    struct grammar *g = grammar_compile(src, strlen(src), &e);
    CHECKF(g != NULL, "%s", e.msg);
    return g;
}

TEST(test_grammar_sequences)
{
    struct err e;
    struct model *m = tiny_served_model(tok, "engine_grammar", 9, &e);
    CHECKF(m != NULL, "%s", e.msg);
    if (!m)
        return;
    /* 5 blocks of 16 positions: a few sequences of ~60 positions must take turns */
    struct engine *eng = engine_new(m, tok, &(struct engine_opts){.n_threads = 2, .n_ctx = 64, .kv_blocks = 5}, &e);
    CHECKF(eng != NULL, "%s", e.msg);
    struct grammar *yn = compile("root ::= (\"yes\" | \"no\") \"!\"\n");
    struct grammar *lst = compile("root ::= \"[\" [0-9]{1,3} (\", \" [a-z]{3,6}){8,9} \"]\"\n");
    struct grammar *longg = compile("root ::= [a-z]{200}\n");
    int32_t prompt[4] = {10, 20, 30, 40};
    struct engine_request r = {0};
    r.prompt = prompt;
    r.n_prompt = 4;
    r.sample = sample_params_default();
    r.max_tokens = 56;
    struct grammar *gs[8] = {yn, lst, lst, NULL, lst, yn, lst, longg};
    struct engine_seq *seq[8];
    for (int i = 0; i < 8; i++) {
        r.seed = 100 + (uint64_t)i;
        r.grammar = gs[i];
        r.max_tokens = gs[i] == longg ? 5 : 56;
        seq[i] = engine_submit(eng, &r, &e);
        CHECKF(seq[i] != NULL, "%s", e.msg);
    }
    for (int i = 0; i < 8; i++) {
        char text[1024];
        struct engine_event d;
        if (!seq[i])
            continue;
        collect(seq[i], text, sizeof text, &d);
        engine_release(seq[i]);
        if (gs[i] == longg) {
            CHECKF(d.finish == ENGINE_FINISH_LENGTH && d.n_completion == 5, "sequence %d: %s", i, text);
        } else if (gs[i]) {
            CHECKF(d.finish == ENGINE_FINISH_STOP && matches(gs[i], text), "sequence %d: finish %s, '%s'", i,
                   engine_finish_name(d.finish), text);
        } else {
            CHECK(d.finish == ENGINE_FINISH_LENGTH || d.finish == ENGINE_FINISH_STOP);
        }
    }
    struct engine_stats st;
    engine_get_stats(eng, &st);
    CHECKF(st.preemptions > 0, "no preemption: the test did not exercise recomputation");
    grammar_free(yn);
    grammar_free(lst);
    grammar_free(longg);
    engine_free(eng);
    model_free(m);
}

int main(void)
{
    struct err e;
    kernels_init();
    tok = test_vocab_load(&e);
    if (!tok) {
        fprintf(stderr, "%s\n", e.msg);
        return 1;
    }
    RUN(test_grammar_sequences);
    tok_free(tok);
    TEST_END();
}
