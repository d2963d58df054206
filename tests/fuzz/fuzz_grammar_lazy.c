/* libFuzzer target for lazy grammars (grammar_set_trigger): the output is
 * watched for the trigger "<tc>" with the grammar root ::= "<tc>" [a-z]*,
 * fed in chunks (data[0] sets their sizes; with its top bit set, <r> ..
 * </r> spans are skipped). Properties: never a crash, leak or hang; a
 * waiting state takes every chunk that does not complete the trigger; a
 * chunk that completes it is taken exactly when the bytes after the
 * trigger are letters (then the state is active), else refused with
 * ERR_INVALID and the state still waiting; once active, a chunk is taken
 * exactly when it is all letters. Without skipped spans the state becomes
 * active at the first "<tc>" of the text taken so far, as a plain search
 * finds it. */
#include "grammar/grammar.h"

#include <stdlib.h>
#include <string.h>

static void must(int cond)
{
    if (!cond)
        __builtin_trap();
}

static bool letters(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] < 'a' || p[i] > 'z')
            return false;
    return true;
}

/* The end (index after) of the first "<tc>" of t[0..n), or 0. */
static size_t first_trigger(const uint8_t *t, size_t n)
{
    for (size_t i = 0; i + 4 <= n; i++)
        if (!memcmp(t + i, "<tc>", 4))
            return i + 4;
    return 0;
}

static struct grammar *g_plain, *g_skip;
static struct grammar_vocab *gv;

static void setup(void)
{
    struct err e;
    const char *src = "root ::= \"<tc>\" [a-z]*\n";
    g_plain = grammar_compile(src, strlen(src), &e);
    g_skip = grammar_compile(src, strlen(src), &e);
    must(g_plain && g_skip);
    must(grammar_set_trigger(g_plain, &(struct grammar_trigger){"<tc>", NULL, NULL, false}, &e) == 0);
    must(grammar_set_trigger(g_skip, &(struct grammar_trigger){"<tc>", "<r>", "</r>", false}, &e) == 0);
    gv = grammar_vocab_new(NULL, 0, &e);
    must(gv != NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 4096)
        return 0;
    if (!gv)
        setup();
    bool skip = (data[0] & 0x80) != 0;
    size_t step = (size_t)(data[0] & 7) + 1;
    struct err e;
    struct grammar_state *s = grammar_state_new(skip ? g_skip : g_plain, gv, &e);
    must(s != NULL && grammar_state_waiting(s));
    uint8_t *taken = malloc(size);
    size_t n_taken = 0;
    must(taken != NULL);
    for (size_t at = 1, k = 0; at < size; k++) {
        size_t n = step + k % 3;
        if (n > size - at)
            n = size - at;
        const uint8_t *p = data + at;
        at += n;
        bool was_waiting = grammar_state_waiting(s);
        int rc = grammar_state_accept_bytes(s, (const char *)p, n, &e);
        must(rc == 0 || e.code == ERR_INVALID);
        if (!was_waiting) {
            must((rc == 0) == letters(p, n) && !grammar_state_waiting(s));
            continue;
        }
        if (rc < 0) {
            must(grammar_state_waiting(s));
            memcpy(taken + n_taken, p, n); /* looked at, not kept */
            size_t end = first_trigger(taken, n_taken + n);
            must(skip || (end > n_taken && !letters(taken + end, n_taken + n - end)));
            continue;
        }
        memcpy(taken + n_taken, p, n);
        n_taken += n;
        if (skip)
            continue;
        size_t end = first_trigger(taken, n_taken);
        must(grammar_state_waiting(s) == (end == 0));
        if (end)
            must(letters(taken + end, n_taken - end));
    }
    free(taken);
    grammar_state_free(s);
    return 0;
}
