/*
 * maas chat — an interactive multi-turn chat in the terminal (or over a pipe:
 * one user message per stdin line). Each turn renders the whole conversation
 * with the model's chat template (tokenizer.chat_template as the tokenizer
 * recognises it; ChatML when the model has none), encodes it, and feeds only what follows the longest common prefix
 * with the tokens already in the KV cache — so earlier turns are not
 * recomputed, and a reply that re-tokenises differently costs only the
 * tokens that differ. Lines "/reset" (forget the conversation) and "/exit"
 * are commands.
 */
#include "cli/cli.h"
#include "cli/gen.h"

#include <string.h>
#include <unistd.h>

static void usage(FILE *out)
{
    fprintf(out, "usage: maas chat --model FILE [options]\n"
                 "  --system TEXT          system message\n"
                 "  --chat-template NAME   a built-in format (chatml, llama3, llama2, mistral-nemo, deepseek,\n"
                 "                         phi3, gemma, glm4) or FILE.jinja (a template replacing the model's)\n"
                 "  -n N                   most tokens per reply (default 512)\n"
                 "  --temp T, --top-k K, --top-p P, --min-p P, --seed S, --repeat-penalty R\n"
                 "  --threads T, --ctx N (default min(trained context, 4096)), --kv-type f16|f32 (default f16)\n"
                 "  --verbose              per-turn statistics on stderr\n"
                 "Reads one user message per line of stdin; /reset forgets the conversation, /exit ends.\n");
}

struct msgs {
    struct tok_chat_msg *v; /* from malloc; role static, content from malloc */
    size_t n, cap;
};

static int msgs_push(struct msgs *m, const char *role, const char *content, size_t len)
{
    if (mem_grow(&m->v, &m->cap, m->n + 1, sizeof *m->v) < 0)
        return -1;
    char *c = strndup(content, len);
    if (!c)
        return -1;
    m->v[m->n++] = (struct tok_chat_msg){role, c};
    return 0;
}

static void msgs_clear(struct msgs *m, size_t keep)
{
    while (m->n > keep)
        free((char *)m->v[--m->n].content);
}

struct chat_args {
    struct gen_args ga;
    const char *system, *tmpl;
    int n_reply, n_ctx, verbose;
};

/* chat's own options with value v: 1 when a is one, 0 when not, -1 with a
 * message. */
static int chat_opt(void *ctx, const char *a, const char *v, struct err *e)
{
    struct chat_args *ca = ctx;
    if (!strcmp(a, "--system")) {
        ca->system = v;
        return 1;
    }
    if (!strcmp(a, "--chat-template")) {
        ca->tmpl = v;
        return 1;
    }
    int rc;
    if (!strcmp(a, "-n"))
        rc = arg_int(a, v, 1, 1 << 24, &ca->n_reply, e);
    else if (!strcmp(a, "--ctx") || !strcmp(a, "-c"))
        rc = arg_int(a, v, 16, 1 << 24, &ca->n_ctx, e);
    else
        return 0;
    return rc < 0 ? -1 : 1;
}

/* The command line into ca: 0 to go on, -1 after --help (exit 0), or the
 * exit status of a usage error (reported). */
static int parse_args(int argc, char **argv, struct chat_args *ca)
{
    *ca = (struct chat_args){.n_reply = 512};
    gen_args_init(&ca->ga, GGML_TYPE_F16);
    const struct gen_flag flags[] = {{"--verbose", &ca->verbose}, {NULL, NULL}};
    int st = gen_parse_argv("chat", argc, argv, usage, flags, chat_opt, ca, &ca->ga);
    if (st)
        return st;
    if (!ca->ga.model)
        return gen_usage_error("chat", usage, "--model is required");
    return 0;
}

/* A conversation in progress: the generator, the messages so far and the
 * buffers one turn reuses. */
struct chat {
    const struct chat_args *ca;
    struct gen g;
    enum tok_chat_family fam;
    struct msgs msgs;
    size_t n_base;              /* messages /reset keeps (the system message) */
    struct rng rng;
    struct tok_ids ids;         /* the rendered conversation's tokens */
    struct tok_stream *ts;      /* owned */
    struct sbuf reply;          /* the reply's text */
    int turn;
};

/* Opens the model, picks the chat format and adds the system message. */
static int chat_open(struct chat *c, const struct chat_args *ca, struct err *e)
{
    c->ca = ca;
    tok_ids_init(&c->ids);
    sbuf_init(&c->reply);
    struct gen_opts go = ca->ga.go;
    go.model_path = ca->ga.model;
    go.n_ctx = ca->n_ctx;
    if (gen_open(&c->g, &go, e) < 0)
        return -1;
    struct err why;
    const char *tmpl_name = ca->tmpl;
    if (cli_chat_template_file(c->g.tok, &tmpl_name, e) < 0)
        return err_prefix(e, "--chat-template");
    if (tok_chat_choose(c->g.tok, tmpl_name, &c->fam, &why, e) < 0)
        return err_prefix(e, "--chat-template");
    if (why.code != ERR_OK)
        fprintf(stderr, "maas chat: %s; using chatml%s\n", why.msg,
                why.code == ERR_INVALID ? " (--chat-template NAME chooses another)" : "");
    if (ca->system && msgs_push(&c->msgs, "system", ca->system, strlen(ca->system)) < 0)
        return err_set(e, ERR_NOMEM, "out of memory");
    c->n_base = c->msgs.n;
    gen_rng_seed(&c->rng, &ca->ga);
    return 0;
}

static void chat_close(struct chat *c)
{
    tok_stream_free(c->ts);
    sbuf_release(&c->reply);
    msgs_clear(&c->msgs, 0);
    free(c->msgs.v);
    tok_ids_release(&c->ids);
    gen_close(&c->g);
}

/* Renders and encodes the conversation into c->ids, and keeps in the KV
 * cache the longest prefix it shares with them (*common tokens; *n_new are
 * left to feed). 1 when the turn is skipped (the template rejects it or it
 * does not fit: reported, the user message dropped), 0, or -1 on error. */
static int prepare_conversation(struct chat *c, int *common, int *n_new, struct err *e)
{
    struct gen *g = &c->g;
    size_t rlen;
    char *rendered = tok_chat_render(g->tok, c->fam, c->msgs.v, c->msgs.n, true, &rlen, e);
    if (!rendered) {
        /* a role order the template rejects: drop the message, go on */
        fprintf(stderr, "maas chat: %s\n", e->msg);
        msgs_clear(&c->msgs, c->msgs.n - 1);
        return 1;
    }
    c->ids.n = 0;
    int rc = tok_encode(g->tok, rendered, rlen, false, true, &c->ids, e);
    free(rendered);
    if (rc < 0)
        return -1;
    /* reuse the KV of the longest common prefix */
    int n = 0;
    while (n < g->n_hist && (size_t)n < c->ids.n && g->hist[n] == c->ids.ids[n])
        n++;
    if ((size_t)n == c->ids.n) /* at least one token must be fed to get logits */
        n--;
    gen_truncate(g, n);
    *common = n;
    *n_new = (int)c->ids.n - n;
    if (g->n_hist + *n_new + 1 > g->n_ctx) {
        fprintf(stderr, "maas chat: the conversation (%zu tokens) no longer fits in --ctx %d; /reset to start over\n",
                c->ids.n, g->n_ctx);
        msgs_clear(&c->msgs, c->msgs.n - 1);
        return 1;
    }
    return 0;
}

/* Writes text to stdout and keeps it in the reply. */
static void reply_put(struct chat *c, const char *out, size_t len)
{
    fwrite(out, 1, len, stdout);
    fflush(stdout);
    sbuf_add(&c->reply, out, len);
}

/* Samples, prints and keeps the reply, up to -n tokens (*produced of them)
 * or the end of the context, then adds it to the conversation. */
static int reply(struct chat *c, int *produced, struct err *e)
{
    struct gen *g = &c->g;
    tok_stream_free(c->ts);
    if (!(c->ts = tok_stream_new(g->tok, NULL, 0, false, e)))
        return -1;
    sbuf_reset(&c->reply);
    const char *out;
    size_t out_len;
    for (*produced = 0; *produced < c->ca->n_reply;) {
        struct sample_result r;
        sampler_sample(g->smp, g->logits, &c->ca->ga.sp, g->hist, g->n_hist, &c->rng, &r);
        (*produced)++;
        if (tok_is_eog(g->tok, r.token))
            break;
        if (tok_stream_feed(c->ts, r.token, &out, &out_len, e) < 0)
            return -1;
        reply_put(c, out, out_len);
        if (g->n_hist + 1 >= g->n_ctx) {
            fprintf(stderr, "\nmaas chat: context of %d tokens is full\n", g->n_ctx);
            break;
        }
        if (gen_feed(g, &r.token, 1, e) < 0)
            return -1;
    }
    if (tok_stream_finish(c->ts, &out, &out_len, e) < 0)
        return -1;
    reply_put(c, out, out_len);
    fputc('\n', stdout);
    fflush(stdout);
    if (sbuf_failed(&c->reply) || msgs_push(&c->msgs, "assistant", c->reply.buf ? c->reply.buf : "", c->reply.len) < 0)
        return err_set(e, ERR_NOMEM, "out of memory");
    return 0;
}

/* One user message: the reply to it, or a command (/reset). -1 on error. */
static int turn(struct chat *c, const char *line, size_t len, struct err *e)
{
    if (!strcmp(line, "/reset")) {
        msgs_clear(&c->msgs, c->n_base);
        gen_truncate(&c->g, 0);
        return 0;
    }
    if (msgs_push(&c->msgs, "user", line, len) < 0)
        return err_set(e, ERR_NOMEM, "out of memory");
    int common, n_new, produced;
    int rc = prepare_conversation(c, &common, &n_new, e);
    if (rc != 0)
        return rc < 0 ? -1 : 0;
    uint64_t t0 = now_ns();
    if (gen_feed(&c->g, c->ids.ids + common, n_new, e) < 0)
        return -1;
    uint64_t t1 = now_ns();
    if (reply(c, &produced, e) < 0)
        return -1;
    uint64_t t2 = now_ns();
    c->turn++;
    if (c->ca->verbose)
        fprintf(stderr, "[turn %d: prompt %zu tokens, %d reused from the KV cache, %d computed in %.3f s; %d tokens "
                        "generated at %.1f tokens/s]\n",
                c->turn, c->ids.n, common, n_new, (t1 - t0) / 1e9, produced, produced / ((t2 - t1) / 1e9 + 1e-12));
    return 0;
}

int cmd_chat(int argc, char **argv)
{
    struct chat_args ca;
    int st = parse_args(argc, argv, &ca);
    if (st)
        return st < 0 ? 0 : st;
    struct chat c = {0};
    struct err e;
    char *line = NULL;
    size_t line_cap = 0;
    int rc = 1;
    if (chat_open(&c, &ca, &e) < 0)
        goto out;
    bool tty = isatty(STDIN_FILENO);
    for (;;) {
        if (tty) {
            fputs("> ", stdout);
            fflush(stdout);
        }
        ssize_t len = getline(&line, &line_cap, stdin);
        if (len < 0)
            break;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = 0;
        if (len == 0)
            continue;
        if (!strcmp(line, "/exit") || !strcmp(line, "/quit"))
            break;
        if (turn(&c, line, (size_t)len, &e) < 0)
            goto out;
    }
    rc = 0;
out:
    if (rc)
        fprintf(stderr, "maas chat: %s\n", e.msg);
    free(line);
    chat_close(&c);
    return rc;
}
