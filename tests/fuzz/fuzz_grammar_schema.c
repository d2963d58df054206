/* libFuzzer target for the JSON Schema compiler: the input is a schema.
 * Properties: it never crashes, leaks or hangs; a failure carries a code
 * and a message; a success is GBNF text that compiles (a schema the
 * compiler accepts never yields a grammar the GBNF compiler rejects,
 * except left recursion through $ref, which is reported as such). */
#include <stdio.h>
#include "grammar/grammar.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 4096)
        return 0;
    char *s = malloc(size + 1);
    if (!s)
        return 0;
    memcpy(s, data, size);
    s[size] = 0;
    struct err e = {0};
    char *gbnf = grammar_schema_to_gbnf(s, NULL, &e);
    free(s);
    if (!gbnf) {
        if (e.code == ERR_OK || !e.msg[0]) {
            fprintf(stderr, "grammar_schema_to_gbnf failed without a reason\n");
            __builtin_trap();
        }
        return 0;
    }
    struct grammar *g = grammar_compile(gbnf, strlen(gbnf), &e);
    if (!g && e.code != ERR_NOMEM && !strstr(e.msg, "left-recursive")) {
        fprintf(stderr, "the schema compiler's GBNF does not compile: %s\n--- GBNF:\n%s\n", e.msg, gbnf);
        __builtin_trap();
    }
    grammar_free(g);
    free(gbnf);
    return 0;
}
