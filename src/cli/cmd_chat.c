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
                 "  --chat-template NAME   chatml, llama3, llama2, mistral-nemo, deepseek, phi3, gemma, glm4\n"
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
    if (m->n == m->cap) {
        size_t cap = m->cap ? 2 * m->cap : 16;
        struct tok_chat_msg *v = realloc(m->v, cap * sizeof *v);
        if (!v)
            return -1;
        m->v = v;
        m->cap = cap;
    }
    char *c = malloc(len + 1);
    if (!c)
        return -1;
    memcpy(c, content, len);
    c[len] = 0;
    m->v[m->n++] = (struct tok_chat_msg){role, c};
    return 0;
}

static void msgs_clear(struct msgs *m, size_t keep)
{
    while (m->n > keep)
        free((char *)m->v[--m->n].content);
}

/* A growing byte buffer for the reply text. */
struct buf {
    char *p;
    size_t n, cap;
};

static int buf_add(struct buf *b, const char *s, size_t n)
{
    if (b->n + n + 1 > b->cap) {
        size_t cap = (b->n + n + 1) * 2;
        char *p = realloc(b->p, cap);
        if (!p)
            return -1;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
    return 0;
}

int cmd_chat(int argc, char **argv)
{
    const char *model = NULL, *system = NULL, *tmpl = NULL;
    int n_reply = 512, n_ctx = 0, seed_set = 0, seed = 0, verbose = 0;
    struct sample_params sp = sample_params_default();
    sp.temperature = 0.8f;
    sp.top_k = 40;
    sp.top_p = 0.95f;
    sp.min_p = 0.05f;
    struct gen_opts go = {.kv_type = GGML_TYPE_F16, .need_tokenizer = true, .n_ctx = -1};
    struct err e;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int rc = 0, used = 1;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--verbose")) {
            verbose = 1, used = 0;
        } else if (!v) {
            fprintf(stderr, "maas chat: %s needs a value (or is unknown)\n", a);
            return 2;
        } else if (!strcmp(a, "--model") || !strcmp(a, "-m")) {
            model = v;
        } else if (!strcmp(a, "--system")) {
            system = v;
        } else if (!strcmp(a, "--chat-template")) {
            tmpl = v;
        } else if (!strcmp(a, "-n")) {
            rc = parse_int_arg(a, v, 1, 1 << 24, &n_reply, &e);
        } else if ((rc = gen_parse_sample_arg(a, v, &sp, &seed, &seed_set, &e)) != 0 ||
                   (rc = gen_parse_opts_arg(a, v, &go, &e)) != 0) {
            /* parsed (or rc < 0: reported below) */
        } else if (!strcmp(a, "--ctx") || !strcmp(a, "-c")) {
            rc = parse_int_arg(a, v, 16, 1 << 24, &n_ctx, &e);
        } else {
            fprintf(stderr, "maas chat: unknown option '%s'\n", a);
            usage(stderr);
            return 2;
        }
        if (rc < 0) {
            fprintf(stderr, "maas chat: %s\n", e.msg);
            return 2;
        }
        i += used;
    }
    if (!model) {
        fprintf(stderr, "maas chat: --model is required\n");
        usage(stderr);
        return 2;
    }
    go.model_path = model;
    struct gen g;
    if (gen_open(&g, &go, &e) < 0) {
        fprintf(stderr, "maas chat: %s\n", e.msg);
        return 1;
    }
    int rc = 1;
    struct msgs msgs = {0};
    struct buf reply = {0};
    struct tok_ids ids;
    struct tok_stream *ts = NULL;
    char *line = NULL, *rendered = NULL;
    size_t line_cap = 0;
    tok_ids_init(&ids);
    if (gen_set_ctx(&g, n_ctx, &e) < 0)
        goto out;
    enum tok_chat_family fam;
    int sel = tok_chat_select(g.tok, tmpl, &fam, &e);
    if (sel < 0 && tmpl)
        goto out;
    if (sel != 0) {
        fprintf(stderr, "maas chat: %s; using chatml\n", sel > 0 ? "the model has no chat template" : e.msg);
        fam = TOK_CHAT_CHATML;
    }
    if (system && msgs_push(&msgs, "system", system, strlen(system)) < 0) {
        err_set(&e, ERR_NOMEM, "out of memory");
        goto out;
    }
    size_t n_base = msgs.n;
    struct rng rng;
    rng_seed(&rng, seed_set ? (uint64_t)seed : now_ns());
    bool tty = isatty(STDIN_FILENO);
    int turn = 0;
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
        if (!strcmp(line, "/reset")) {
            msgs_clear(&msgs, n_base);
            gen_truncate(&g, 0);
            continue;
        }
        if (msgs_push(&msgs, "user", line, (size_t)len) < 0) {
            err_set(&e, ERR_NOMEM, "out of memory");
            goto out;
        }
        free(rendered);
        size_t rlen;
        rendered = tok_chat_render(g.tok, fam, msgs.v, msgs.n, true, &rlen, &e);
        if (!rendered) {
            /* a role order the template rejects: drop the message, go on */
            fprintf(stderr, "maas chat: %s\n", e.msg);
            msgs_clear(&msgs, msgs.n - 1);
            continue;
        }
        ids.n = 0;
        if (tok_encode(g.tok, rendered, rlen, false, true, &ids, &e) < 0)
            goto out;
        /* reuse the KV of the longest common prefix */
        int common = 0;
        while (common < g.n_hist && (size_t)common < ids.n && g.hist[common] == ids.ids[common])
            common++;
        if ((size_t)common == ids.n) /* at least one token must be fed to get logits */
            common--;
        gen_truncate(&g, common);
        int n_new = (int)ids.n - common;
        if (g.n_hist + n_new + 1 > g.n_ctx) {
            fprintf(stderr, "maas chat: the conversation (%zu tokens) no longer fits in --ctx %d; /reset to start over\n",
                    ids.n, g.n_ctx);
            msgs_clear(&msgs, msgs.n - 1);
            continue;
        }
        uint64_t t0 = now_ns();
        if (gen_feed(&g, ids.ids + common, n_new, &e) < 0)
            goto out;
        uint64_t t1 = now_ns();
        tok_stream_free(ts);
        if (!(ts = tok_stream_new(g.tok, NULL, 0, false, &e)))
            goto out;
        reply.n = 0;
        if (buf_add(&reply, "", 0) < 0) {
            err_set(&e, ERR_NOMEM, "out of memory");
            goto out;
        }
        int produced = 0;
        const char *out;
        size_t out_len;
        while (produced < n_reply) {
            struct sample_result r;
            sampler_sample(g.smp, g.logits, &sp, g.hist, g.n_hist, &rng, &r);
            produced++;
            if (tok_is_eog(g.tok, r.token))
                break;
            if (tok_stream_feed(ts, r.token, &out, &out_len, &e) < 0)
                goto out;
            fwrite(out, 1, out_len, stdout);
            fflush(stdout);
            if (buf_add(&reply, out, out_len) < 0) {
                err_set(&e, ERR_NOMEM, "out of memory");
                goto out;
            }
            if (g.n_hist + 1 >= g.n_ctx) {
                fprintf(stderr, "\nmaas chat: context of %d tokens is full\n", g.n_ctx);
                break;
            }
            if (gen_feed(&g, &r.token, 1, &e) < 0)
                goto out;
        }
        if (tok_stream_finish(ts, &out, &out_len, &e) < 0)
            goto out;
        fwrite(out, 1, out_len, stdout);
        fputc('\n', stdout);
        fflush(stdout);
        if (buf_add(&reply, out, out_len) < 0 || msgs_push(&msgs, "assistant", reply.p, reply.n) < 0) {
            err_set(&e, ERR_NOMEM, "out of memory");
            goto out;
        }
        uint64_t t2 = now_ns();
        turn++;
        if (verbose)
            fprintf(stderr, "[turn %d: prompt %zu tokens, %d reused from the KV cache, %d computed in %.3f s; %d tokens "
                            "generated at %.1f tokens/s]\n",
                    turn, ids.n, common, n_new, (t1 - t0) / 1e9, produced, produced / ((t2 - t1) / 1e9 + 1e-12));
    }
    rc = 0;
out:
    if (rc)
        fprintf(stderr, "maas chat: %s\n", e.msg);
    tok_stream_free(ts);
    free(rendered);
    free(line);
    free(reply.p);
    msgs_clear(&msgs, 0);
    free(msgs.v);
    tok_ids_release(&ids);
    gen_close(&g);
    return rc;
}
