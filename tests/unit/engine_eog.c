/* engine: end-of-generation with a real vocabulary (the shared gpt-2
 * tokenizer, or without ../shared/testdata the test's own byte-level BPE
 * one, test_vocab.h; <|endoftext|> ends generation in both) on a tiny random
 * model of that vocabulary size. A logit bias makes <|endoftext|> the greedy
 * choice: the sequence stops at once (finish "stop", the token not emitted,
 * not counted), or with ignore_eog runs to max_tokens emitting it. A second
 * sequence without the bias in the same batch is not affected. */
#include "engine/engine.h"
#include "kernels/kernels.h"
#include "test.h"
#include "tiny_served.h"

static int run(struct engine *eng, const struct engine_request *r, int32_t *toks, int cap, struct engine_event *done)
{
    struct err e;
    struct engine_seq *s = engine_submit(eng, r, &e);
    CHECKF(s != NULL, "%s", e.msg);
    if (!s)
        return -1;
    int n = 0;
    struct engine_event ev;
    for (;;) {
        if (engine_next(s, &ev, 20000) != 0) {
            CHECK(!"timeout");
            break;
        }
        if (ev.kind == ENGINE_EV_DONE)
            break;
        if (n < cap)
            toks[n] = ev.tok.token;
        n++;
    }
    *done = ev;
    engine_release(s);
    return n;
}

TEST(test_eog_stops)
{
    struct err e;
    struct tokenizer *tok = test_vocab_load(&e);
    CHECKF(tok != NULL, "%s", e.msg);
    if (!tok)
        return;
    int32_t eot = tok_find(tok, "<|endoftext|>", 13);
    CHECK(eot >= 0 && tok_is_eog(tok, eot));
    /* the prompt: 40 1101 257 3797 in gpt-2 */
    struct tok_ids prompt;
    tok_ids_init(&prompt);
    CHECKF(tok_encode(tok, "I'm a cat", 9, false, false, &prompt, &e) == 0 && prompt.n > 0, "%s", e.msg);

    struct model *m = tiny_served_model(tok, "engine_eog", 5, &e);
    CHECKF(m != NULL, "%s", e.msg);
    struct engine *eng = m ? engine_new(m, tok, &(struct engine_opts){.n_threads = 2, .n_ctx = 64}, &e) : NULL;
    CHECK(eng != NULL);
    if (eng && prompt.n > 0) {
        struct sample_bias bias = {eot, 100.0f};
        struct engine_request r = {0};
        r.prompt = prompt.ids;
        r.n_prompt = (int)prompt.n;
        r.sample = sample_params_default();
        r.sample.temperature = 0;
        r.sample.bias = &bias;
        r.sample.n_bias = 1;
        r.max_tokens = 6;
        int32_t toks[16];
        struct engine_event d;
        int n = run(eng, &r, toks, 16, &d);
        CHECK(n == 0);
        CHECK(d.finish == ENGINE_FINISH_STOP && d.n_completion == 0 && d.n_prompt == (int)prompt.n);
        CHECK(!strcmp(engine_finish_name(d.finish), "stop"));

        r.ignore_eog = true;
        n = run(eng, &r, toks, 16, &d);
        CHECK(n == 6 && d.finish == ENGINE_FINISH_LENGTH && d.n_completion == 6);
        for (int i = 0; i < n && i < 16; i++)
            CHECK(toks[i] == eot);

        /* without the bias: the same tokens alone and next to a biased sequence */
        struct engine_request plain = r;
        plain.sample.bias = NULL;
        plain.sample.n_bias = 0;
        plain.ignore_eog = false;
        int32_t alone[16], crowd[16];
        int na = run(eng, &plain, alone, 16, &d);
        struct engine_seq *other = engine_submit(eng, &r, &e);
        int nc = run(eng, &plain, crowd, 16, &d);
        CHECK(na == nc && na > 0 && !memcmp(alone, crowd, (size_t)(na < 16 ? na : 16) * sizeof *alone));
        engine_release(other);
    }
    engine_free(eng);
    model_free(m);
    tok_ids_release(&prompt);
    tok_free(tok);
}

int main(void)
{
    kernels_init();
    RUN(test_eog_stops);
    TEST_END();
}
