/* libFuzzer target for the OpenAI request parser: the first byte chooses
 * chat or completions, the rest is the body. Properties: the parser never
 * crashes; it either fails with a 400-class error (4xx status, a message)
 * or succeeds with every field in its documented range; and whatever it
 * accepts can be rendered back through the response builders. */
#include "server/openai.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    enum oai_kind kind = (data[0] & 1) ? OAI_COMPLETION : OAI_CHAT;
    struct oai_request r;
    struct oai_error e;
    memset(&e, 0, sizeof e);
    if (oai_parse_request(kind, (const char *)data + 1, size - 1, &r, &e) < 0) {
        if (e.status < 400 || e.status > 599 || !e.message[0])
            abort();
        free(oai_build_error(&e));
        return 0;
    }
    if (!r.model || !r.model[0])
        abort();
    if (kind == OAI_CHAT && (r.n_msgs < 1 || !r.msgs))
        abort();
    if (kind == OAI_COMPLETION && !r.prompt)
        abort();
    if (!(r.temperature >= 0 && r.temperature <= 2) || !(r.top_p > 0 && r.top_p <= 1))
        abort();
    if (r.presence_penalty < -2 || r.presence_penalty > 2 || r.frequency_penalty < -2 || r.frequency_penalty > 2)
        abort();
    if (r.n_stop > OAI_MAX_STOP || r.top_logprobs < 0 || r.top_logprobs > SAMPLE_MAX_TOP)
        abort();
    if (r.max_tokens != -1 && r.max_tokens < 1)
        abort();
    for (int i = 0; i < r.n_bias; i++)
        if (r.bias[i].token < 0 || !(r.bias[i].bias >= -100 && r.bias[i].bias <= 100))
            abort();
    for (int i = 0; i < r.n_stop; i++)
        if (!r.stop[i][0])
            abort();
    struct oai_meta m = {kind, "id", 0, r.model};
    struct oai_usage u = {.prompt_tokens = 1, .completion_tokens = 2};
    const char *text = kind == OAI_CHAT ? r.msgs[r.n_msgs - 1].content : r.prompt;
    char *s = oai_build_response(&m, text, strlen(text), "stop", NULL, &u);
    if (!s)
        abort();
    free(s);
    oai_request_release(&r);
    return 0;
}
