/* engine: structured output. Sequences with a grammar emit only what it
 * allows and finish with stop when it is complete (length when max_tokens
 * runs out first); many at once with a KV cache small enough to force
 * preemption (recomputation) still follow their grammars, and a sequence
 * without a grammar in the same batches is unaffected by the others'
 * masks. A lazy grammar leaves the output free until its trigger. */
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

/* tok's id of text s (-1 and a failed check when absent). */
static int32_t id_of(const char *s)
{
    int32_t t = tok_find(tok, s, strlen(s));
    CHECKF(t >= 0, "no token '%s'", s);
    return t;
}

/* A lazy grammar (trigger "qa"), with a bias that makes the random model
 * write "q" and "a", "ab", "az" often: the output is free before the
 * trigger, and from the first "qa" on it follows the grammar to its end
 * (stop), although "q" then "ab" would complete the trigger with a "b"
 * the grammar refuses (that token is sampled away). With a negative bias
 * on "q" the trigger never comes: free text until max_tokens. Under a
 * cache small enough to preempt. */
TEST(test_lazy_grammar)
{
    struct err e;
    struct model *m = tiny_served_model(tok, "engine_grammar", 9, &e);
    CHECKF(m != NULL, "%s", e.msg);
    if (!m)
        return;
    struct engine *eng = engine_new(m, tok, &(struct engine_opts){.n_threads = 2, .n_ctx = 64, .kv_blocks = 5}, &e);
    const char *src = "root ::= \"qa\" \"z\" [a-z]{2,4} \".\"\n";
    struct grammar *g = compile(src), *eager = compile(src);
    CHECK(grammar_set_trigger(g, &(struct grammar_trigger){"qa", NULL, NULL, false}, &e) == 0);
    struct sample_bias on[4] = {{id_of("q"), 36}, {id_of("a"), 30}, {id_of("ab"), 31}, {id_of("az"), 29}};
    struct sample_bias off[1] = {{id_of("q"), -100}};
    int32_t prompt[4] = {10, 20, 30, 40};
    struct engine_seq *seq[6];
    int n_calls = 0;
    for (int i = 0; i < 6; i++) {
        struct engine_request r = {.prompt = prompt, .n_prompt = 4, .max_tokens = 40, .grammar = g, .seed = 7 + (uint64_t)i};
        r.sample = sample_params_default();
        r.sample.temperature = 3; /* flattens the random model's habit of repeating a token */
        r.sample.bias = i < 4 ? on : off;
        r.sample.n_bias = i < 4 ? 4 : 1;
        seq[i] = engine_submit(eng, &r, &e);
        CHECKF(seq[i] != NULL, "%s", e.msg);
    }
    for (int i = 0; i < 6; i++) {
        char text[1024];
        struct engine_event d;
        if (!seq[i])
            continue;
        collect(seq[i], text, sizeof text, &d);
        engine_release(seq[i]);
        const char *call = strstr(text, "qa");
        if (i < 4) {
            /* the random model may repeat "q" and never write "qa" (it depends on the vocabulary): a
             * sequence without the trigger is free text; one with it must follow the grammar to its end */
            n_calls += call != NULL;
            CHECKF(!call || (d.finish == ENGINE_FINISH_STOP && matches(eager, call) && strchr(call, '.')[1] == 0),
                   "sequence %d: finish %s, '%s'", i, engine_finish_name(d.finish), text);
        } else {
            CHECKF(!call && (d.finish == ENGINE_FINISH_LENGTH || d.finish == ENGINE_FINISH_STOP) && !matches(eager, text),
                   "sequence %d: '%s'", i, text);
        }
    }
    CHECKF(n_calls >= 2, "only %d of 4 biased sequences wrote the trigger: the test checked too little", n_calls);
    grammar_free(g);
    grammar_free(eager);
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
    RUN(test_lazy_grammar);
    tok_free(tok);
    TEST_END();
}
