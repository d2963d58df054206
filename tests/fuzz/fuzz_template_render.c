/* libFuzzer target for the template engine: the input is a template; it is
 * parsed and, when it parses, rendered over a fixed conversation with tools
 * and tight limits. Properties: parsing and rendering never crash, leak or
 * hang; a failure always carries an error code and a message; a success
 * returns a NUL-terminated string of the reported length within the output
 * limit. */
#include "template/template.h"

#include <stdio.h>
#include <string.h>

static const char vars[] =
    "{\"messages\": [{\"role\": \"system\", \"content\": \"Be brief.\"},"
    " {\"role\": \"user\", \"content\": \"Weather in Paris? \\u00e9\"},"
    " {\"role\": \"assistant\", \"content\": \"\", \"tool_calls\": [{\"id\": \"c1\", \"type\": \"function\","
    " \"function\": {\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}}]},"
    " {\"role\": \"tool\", \"tool_call_id\": \"c1\", \"content\": \"18C\"}],"
    " \"tools\": [{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"parameters\":"
    " {\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\"}}, \"required\": [\"city\"]}}}],"
    " \"add_generation_prompt\": true, \"bos_token\": \"<s>\", \"eos_token\": \"</s>\", \"n\": 3, \"f\": 0.5}";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct err e = {0};
    struct tmpl *t = tmpl_parse((const char *)data, size, &e);
    if (!t) {
        if (e.code == ERR_OK || !e.msg[0])
            __builtin_trap();
        return 0;
    }
    struct tmpl_opts o = {.now = 1768469400, .max_output = 1 << 16, .max_steps = 200000, .max_depth = 64};
    size_t n = 0;
    err_clear(&e);
    char *out = tmpl_render(t, vars, strlen(vars), &o, &n, &e);
    if (!out && (e.code == ERR_OK || !e.msg[0]))
        __builtin_trap();
    if (out && (n > o.max_output || out[n] != 0))
        __builtin_trap();
    free(out);
    tmpl_free(t);
    return 0;
}
