/* libFuzzer target for what a client sends: the first byte chooses the
 * path. Bit 1 set: the rest is a request head for the front door's framing
 * checks (srv_head_end, srv_head_check): they never crash, the end found is
 * within the bytes and just after a line end, and a head is either accepted
 * (then it has no NUL byte and no repeated Content-Length) or refused with
 * a 400 and a message. Bit 1 clear: bit 0 chooses chat or completions and
 * the rest is the body for the OpenAI request parser. Properties: the
 * parser never crashes; it either fails with a 400-class error (4xx status,
 * a message) or succeeds with every field in its documented range; and
 * whatever it accepts can be rendered back through the response builders. */
#include "server/server_int.h"

#include <strings.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* The number of Content-Length header lines in head (case-insensitive),
 * after its request line. */
static int count_lengths(const char *head, size_t n)
{
    size_t i = 0;
    while (i < n && (head[i] == '\r' || head[i] == '\n'))
        i++;
    const char *nl = memchr(head + i, '\n', n - i);
    int count = 0;
    for (i = nl ? (size_t)(nl - head) + 1 : n; i + 15 <= n; i++)
        if (head[i - 1] == '\n' && !strncasecmp(head + i, "Content-Length:", 15))
            count++;
    return count;
}

static int fuzz_head(const uint8_t *data, size_t size)
{
    const char *head = (const char *)data;
    size_t end = srv_head_end(head, size);
    if (end > size || (end && head[end - 1] != '\n'))
        abort();
    if (!end)
        end = size;
    struct oai_error e;
    memset(&e, 0, sizeof e);
    if (srv_head_check(head, end, &e) < 0) {
        if (e.status != 400 || !e.message[0])
            abort();
        free(oai_build_error(&e));
        return 0;
    }
    /* what passes has no NUL before its blank line, and one Content-Length at most */
    size_t line_end = srv_head_end(head, end);
    if (line_end && (memchr(head, 0, line_end) || count_lengths(head, line_end) > 1))
        abort();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    if (data[0] & 2)
        return fuzz_head(data + 1, size - 1);
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
    struct oai_meta m = {kind, "id", 0, r.model, NULL};
    struct oai_usage u = {.prompt_tokens = 1, .completion_tokens = 2};
    const char *text = kind == OAI_CHAT ? r.msgs[r.n_msgs - 1].content : r.prompt;
    char *s = oai_build_response(&m, text, strlen(text), "stop", NULL, &u);
    if (!s)
        abort();
    free(s);
    oai_request_release(&r);
    return 0;
}
