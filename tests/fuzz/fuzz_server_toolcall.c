/* libFuzzer target for the tool-call parser (server/toolcall.h). The first
 * byte chooses the format and whether the output starts inside reasoning;
 * the rest is the model's output. Properties: parsing never crashes, leaks
 * or hangs; every call has a non-empty name and arguments that are a JSON
 * object; and the streamed form, fed in chunks the input also chooses,
 * adds up to exactly the whole result (content, reasoning, calls). */
#include "server/toolcall.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static void must(int cond)
{
    if (!cond)
        __builtin_trap();
}

static void check_call(const struct tc_call *c)
{
    must(c->name[0] != 0);
    json_t *v = json_loads(c->arguments, 0, NULL);
    must(json_is_object(v));
    json_decref(v);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    enum tc_format f = (enum tc_format)(data[0] % TC_FORMAT_COUNT);
    const struct tc_syntax *sx = tc_syntax(f);
    struct tc_config c = {f, *sx->think_open && f != TC_HARMONY ? sx->think_open : NULL,
                          *sx->think_close && f != TC_HARMONY ? sx->think_close : NULL, (data[0] & 0x80) != 0,
                          f != TC_NONE};
    unsigned step = 1 + data[1] % 13;
    const char *text = (const char *)data + 2;
    size_t n = size - 2;
    struct tc_result whole = {0};
    must(tc_parse(&c, text, n, true, &whole) == 0);
    for (int i = 0; i < whole.n_calls; i++)
        check_call(&whole.calls[i]);
    struct tc_stream *s = tc_stream_new(&c);
    struct sbuf content = SBUF_INIT, reasoning = SBUF_INIT;
    int calls = 0;
    for (size_t pos = 0;;) {
        size_t k = n - pos < step ? n - pos : step;
        struct tc_delta d;
        bool fin = pos + k == n;
        must(tc_stream_feed(s, text + pos, k, fin, &d) == 0);
        sbuf_add(&content, d.content ? d.content : "", d.n_content);
        sbuf_add(&reasoning, d.reasoning ? d.reasoning : "", d.n_reasoning);
        for (int i = 0; i < d.n_calls; i++, calls++) {
            must(d.first_index + i == calls && calls < whole.n_calls);
            must(!strcmp(d.calls[i].name, whole.calls[calls].name));
            must(!strcmp(d.calls[i].arguments, whole.calls[calls].arguments));
        }
        pos += k;
        if (fin)
            break;
    }
    must(calls == whole.n_calls);
    must(content.len == whole.content.len && (!content.len || !memcmp(content.buf, whole.content.buf, content.len)));
    must(reasoning.len == whole.reasoning.len &&
         (!reasoning.len || !memcmp(reasoning.buf, whole.reasoning.buf, reasoning.len)));
    sbuf_release(&content);
    sbuf_release(&reasoning);
    tc_stream_free(s);
    tc_result_release(&whole);
    return 0;
}
