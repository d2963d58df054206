/*
 * bench_toolcall — what splitting the output costs a streamed request:
 * an output of reasoning, text and tool calls (Hermes format, <think>) of
 * N bytes fed to tc_stream_feed in pieces of 4 bytes (about one token
 * each), as the server does, against one tc_parse of the whole text.
 *
 *   build/bench/bench_toolcall [N_BYTES ...]   (default 2000 8000 32000)
 */
#include "server/toolcall.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* An output of about n bytes: reasoning, text, then calls. */
static char *make_output(size_t n)
{
    struct sbuf b = SBUF_INIT;
    sbuf_addstr(&b, "<think>\n");
    while (b.len < n / 2)
        sbuf_addstr(&b, "The user asks about the weather, so a tool is needed. ");
    sbuf_addstr(&b, "</think>\n\nLet me check.\n");
    while (b.len < n)
        sbuf_addstr(&b, "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"unit\": "
                        "\"celsius\"}}\n</tool_call>\n");
    return sbuf_detach(&b, NULL);
}

int main(int argc, char **argv)
{
    size_t sizes[8] = {2000, 8000, 32000};
    int n_sizes = argc > 1 ? argc - 1 : 3;
    for (int i = 1; i < argc && i <= 8; i++)
        sizes[i - 1] = (size_t)atol(argv[i]);
    struct tc_config c = {TC_HERMES, "<think>", "</think>", false, true};
    printf("%10s %8s %14s %14s %12s\n", "bytes", "calls", "whole (ms)", "streamed (ms)", "per feed (us)");
    for (int k = 0; k < n_sizes; k++) {
        char *text = make_output(sizes[k]);
        size_t n = strlen(text);
        struct tc_result r = {0};
        double t0 = now_s();
        tc_parse(&c, text, n, true, &r);
        double whole = now_s() - t0;
        int calls = r.n_calls;
        tc_result_release(&r);
        struct tc_stream *s = tc_stream_new(&c);
        struct tc_delta d;
        size_t feeds = 0;
        t0 = now_s();
        for (size_t pos = 0; pos < n; pos += 4, feeds++)
            tc_stream_feed(s, text + pos, n - pos < 4 ? n - pos : 4, pos + 4 >= n, &d);
        double streamed = now_s() - t0;
        tc_stream_free(s);
        printf("%10zu %8d %14.3f %14.3f %12.2f\n", n, calls, whole * 1e3, streamed * 1e3, streamed * 1e6 / (double)feeds);
        free(text);
    }
    return 0;
}
