/* Chat template rendering speed: every template in the shared test data
 * renders a 50-message conversation with tools (the rounds of
 * chat/tool-round.json repeated: user, assistant tool call, tool result,
 * assistant answer; with tools.json's tool list), on one core.
 *
 *   build/bench/bench_template [TESTDATA=../shared/testdata] [REPS=300]
 *
 * A template that rejects that conversation (raise_exception: no tool role,
 * roles must alternate) is timed on 50 alternating user/assistant messages
 * instead, and marked so. Prints per template the median milliseconds per
 * render (parsing excluded: the server parses once at load) and the output
 * size, then the slowest as JSON on the last line. */
#include "template/template.h"

#include <dirent.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* 50 messages: the tool round repeated (tools = 1), or plain user/assistant turns. */
static char *conversation(const char *dir, bool tools)
{
    char p[1024];
    snprintf(p, sizeof p, "%s/chat/tool-round.json", dir);
    json_error_t je;
    json_t *c = json_load_file(p, 0, &je);
    if (!c)
        return NULL;
    json_t *src = json_object_get(c, "messages"), *msgs = json_array();
    for (int i = 0; json_array_size(msgs) < (tools ? 49u : 50u); i++) {
        if (tools) {
            size_t k = (size_t)i % 4;
            json_array_append(msgs, k < 3 ? json_array_get(src, k)
                                          : json_pack("{s:s, s:s}", "role", "assistant", "content", "It is 18 C and clear."));
        } else {
            json_array_append_new(msgs, json_pack("{s:s, s:s}", "role", i % 2 ? "assistant" : "user", "content",
                                                  i % 2 ? "Sure: here is a longer answer to that question." : "Tell me more about Paris."));
        }
    }
    if (tools)
        json_array_append_new(msgs, json_pack("{s:s, s:s}", "role", "user", "content", "And tomorrow?"));
    json_t *v = json_pack("{s:o, s:b, s:s, s:s}", "messages", msgs, "add_generation_prompt", 1, "bos_token", "<s>",
                          "eos_token", "</s>");
    if (tools)
        json_object_set(v, "tools", json_object_get(c, "tools"));
    char *s = json_dumps(v, JSON_COMPACT);
    json_decref(v);
    json_decref(c);
    return s;
}

static char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    struct sbuf b = SBUF_INIT;
    char buf[65536];
    size_t k;
    while ((k = fread(buf, 1, sizeof buf, f)) > 0)
        sbuf_add(&b, buf, k);
    fclose(f);
    return sbuf_detach(&b, n);
}

/* Median ms per render of t over vars, or -1 when it fails; *bytes the output size. */
static double time_render(const struct tmpl *t, const char *vars, int reps, size_t *bytes)
{
    struct err e = {0};
    struct tmpl_opts o = {.now = 1768469400};
    double *ms = malloc((size_t)reps * sizeof *ms);
    for (int i = 0; i < reps; i++) {
        uint64_t t0 = now_ns();
        char *out = tmpl_render(t, vars, strlen(vars), &o, bytes, &e);
        ms[i] = (double)(now_ns() - t0) / 1e6;
        if (!out) {
            if (getenv("BENCH_TEMPLATE_ERRORS"))
                fprintf(stderr, "  %s\n", e.msg);
            free(ms);
            return -1;
        }
        free(out);
    }
    qsort(ms, (size_t)reps, sizeof *ms, cmp_double);
    double m = ms[reps / 2];
    free(ms);
    return m;
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : "../shared/testdata";
    int reps = argc > 2 ? atoi(argv[2]) : 300;
    char *with_tools = conversation(dir, true), *plain = conversation(dir, false);
    if (!with_tools || !plain || reps < 1) {
        fprintf(stderr, "usage: bench_template [TESTDATA=../shared/testdata] [REPS=300] (%s/chat/tool-round.json)\n", dir);
        return 2;
    }
    char tdir[1024], *names[128];
    snprintf(tdir, sizeof tdir, "%s/templates", dir);
    DIR *d = opendir(tdir);
    struct dirent *de;
    size_t n = 0;
    while (d && (de = readdir(d)) && n < 128)
        if (strstr(de->d_name, ".jinja"))
            names[n++] = strdup(de->d_name);
    if (d)
        closedir(d);
    qsort(names, n, sizeof *names, cmp_str);
    double worst = 0;
    const char *worst_name = "";
    for (size_t i = 0; i < n; i++) {
        char p[2048];
        snprintf(p, sizeof p, "%s/%s", tdir, names[i]);
        size_t sl, bytes = 0;
        char *src = slurp(p, &sl);
        struct err e = {0};
        struct tmpl *t = src ? tmpl_parse(src, sl, &e) : NULL;
        double ms = t ? time_render(t, with_tools, reps, &bytes) : -1;
        const char *kind = "tools";
        if (t && ms < 0) {
            ms = time_render(t, plain, reps, &bytes);
            kind = "plain";
        }
        printf("%-56s %-5s %8.3f ms %7zu bytes\n", names[i], ms < 0 ? "FAIL" : kind, ms, bytes);
        if (ms > worst) {
            worst = ms;
            worst_name = names[i];
        }
        tmpl_free(t);
        free(src);
    }
    printf("{\"templates\": %zu, \"slowest\": \"%s\", \"slowest_ms\": %.3f}\n", n, worst_name, worst);
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(with_tools);
    free(plain);
    return 0;
}
