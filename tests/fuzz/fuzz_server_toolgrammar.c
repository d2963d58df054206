/* libFuzzer target for the forced-call grammar builder (server/toolcall.h,
 * toolgrammar.c). The first byte chooses the format, whether the output
 * starts in reasoning and whether calls may be parallel; the rest is a
 * request's `tools` (JSON). Properties: never a crash, leak or hang; for a
 * JSON array the builder either names an error or gives GBNF that compiles
 * (every schema grammar_schema_to_gbnf accepts embeds cleanly, and the
 * format's literals are well escaped), or whose one failure is the known
 * left-recursion of a quantified empty pattern group. The auto-mode
 * (lazy) grammar of the same tools is built exactly when the forced one
 * is, compiles likewise, takes its trigger, and a state of it starts
 * waiting and becomes active over the trigger. */
#include "grammar/grammar.h"
#include "server/toolcall.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static void must(int cond)
{
    if (!cond)
        __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 4096)
        return 0;
    enum tc_format f = (enum tc_format)(data[0] % TC_FORMAT_COUNT);
    bool think = (data[0] & 0x40) != 0;
    struct tc_config c = {f, think ? "<think>" : NULL, think ? "</think>" : NULL, (data[0] & 0x80) != 0, true};
    json_t *tools = json_loadb((const char *)data + 1, size - 1, 0, NULL);
    if (!json_is_array(tools)) {
        json_decref(tools);
        return 0;
    }
    struct err e;
    int bad;
    char *g = tc_forced_gbnf(&c, tools, NULL, (data[0] & 0x20) != 0, &bad, &e);
    must(g != NULL || e.code == ERR_INVALID || e.code == ERR_NOMEM);
    must(g == NULL || tc_forcible(f));
    if (g) {
        struct grammar *gr = grammar_compile(g, strlen(g), &e);
        /* a pattern quantifier over a group that matches the empty string
         * compiles to a left-recursive rule: refused cleanly (a 400), the
         * limitation fuzz_grammar_schema accepts too */
        must(gr != NULL || e.code == ERR_NOMEM || strstr(e.msg, "left-recursive") != NULL);
        grammar_free(gr);
    }
    struct grammar_trigger trig;
    int bad2;
    char *a = tc_auto_gbnf(&c, tools, (data[0] & 0x20) != 0, &trig, &bad2, &e);
    must((a != NULL) == (g != NULL) || e.code == ERR_NOMEM);
    if (a) {
        struct grammar *gr = grammar_compile(a, strlen(a), &e);
        must(gr != NULL || e.code == ERR_NOMEM || strstr(e.msg, "left-recursive") != NULL);
        if (gr) {
            struct grammar_vocab *v = grammar_vocab_new(NULL, 0, &e);
            must(grammar_set_trigger(gr, &trig, &e) == 0);
            struct grammar_state *st = v ? grammar_state_new(gr, v, &e) : NULL;
            must(st != NULL && grammar_state_waiting(st));
            if (!c.start_in_think || !c.think_open)
                must(grammar_state_accept_bytes(st, trig.text, strlen(trig.text), &e) == 0 && !grammar_state_waiting(st));
            grammar_state_free(st);
            grammar_vocab_free(v);
        }
        grammar_free(gr);
    }
    free(a);
    free(g);
    json_decref(tools);
    return 0;
}
