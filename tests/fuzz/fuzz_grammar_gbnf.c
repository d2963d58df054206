/* libFuzzer target for the GBNF compiler and the matcher: the input is a
 * grammar, then (after a NUL byte, if any) text to match. Properties:
 * compiling never crashes, leaks or hangs; a failure carries ERR_INVALID
 * or ERR_NOMEM and a message; a compiled grammar runs over the text byte by
 * byte, and a rejected byte leaves the state as it was (the next byte is
 * tried on it). */
#include "grammar/grammar.h"

#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 4096)
        return 0;
    const uint8_t *nul = memchr(data, 0, size);
    size_t glen = nul ? (size_t)(nul - data) : size;
    struct err e = {0};
    struct grammar *g = grammar_compile((const char *)data, glen, &e);
    if (!g) {
        if ((e.code != ERR_INVALID && e.code != ERR_NOMEM) || !e.msg[0])
            __builtin_trap();
        return 0;
    }
    struct grammar_vocab *v = grammar_vocab_new(NULL, 0, &e);
    struct grammar_state *s = v ? grammar_state_new(g, v, &e) : NULL;
    if (s && nul) {
        for (size_t i = glen + 1; i < size && !grammar_state_is_done(s); i++)
            if (grammar_state_accept_bytes(s, (const char *)data + i, 1, &e) < 0 && e.code != ERR_INVALID)
                break;
        (void)grammar_state_can_end(s);
    }
    grammar_state_free(s);
    grammar_vocab_free(v);
    grammar_free(g);
    return 0;
}
