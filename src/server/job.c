/*
 * job.c — one generation request from submission to the last byte: the
 * prompt built from the request (chat template or raw prompt), the engine
 * sequence, the streaming detokenizer with the request's stop strings, and
 * the output, either collected for one JSON response or cut into SSE chunks.
 *
 * Thread: a job belongs to its connection thread; only engine_next /
 * engine_cancel cross to the engine thread. While waiting for an event the
 * job polls the client's socket every WAIT_SLICE_MS, so a client that hangs
 * up while queued or mid-stream is noticed at once and its sequence is
 * cancelled (the engine finishes it within one step and frees its blocks).
 */
#define _GNU_SOURCE /* POLLRDHUP */
#include "server/server_int.h"
#include "server/toolcall.h"

#include <limits.h>
#include <math.h>
#include <poll.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define WAIT_SLICE_MS 50
#define KEEPALIVE_MS 10000   /* an SSE comment after this long without output, */
                             /* or a third of the connection timeout if shorter: MHD drops a */
                             /* connection that writes nothing for that long */
#define DRAIN_MS 5000        /* longest wait for DONE after a cancel */

enum phase { PH_ROLE, PH_GEN, PH_END };

struct job {
    struct server *srv;            /* borrowed */
    struct smodel *sm;             /* borrowed */
    struct oai_request req;        /* owned */
    char id[48];
    struct oai_meta meta;          /* points into id, req.model */
    struct engine_seq *seq;        /* owned; NULL once released */
    struct tok_stream *ts;         /* owned */
    struct oai_logprobs *lp;       /* owned; NULL without logprobs */
    int fd;                        /* client socket (borrowed), -1 = not polled */
    void *hook_ctx;
    bool admitted, settled, done, stop_hit, gone, error;
    bool settle_failed;            /* the usage could not be recorded: the response ends in an error */
    char error_msg[256];
    const char *finish;            /* static string once done */
    struct oai_usage usage;
    int n_tok;                     /* token events seen */
    int n_fed;                     /* tokens fed to the detokenizer */
    int n_stop_tok;                /* stop_hit: token events up to the one that completed the stop string */
    uint64_t t_submit, t_last;
    int64_t compute_us;            /* the engine's compute_s of the request, in core-microseconds */
    uint64_t t_checked;            /* last look at the client's socket */
    size_t text_total;             /* bytes of text produced (for text_offset) */
    struct sbuf text;              /* non-streaming: the whole text */
    struct sbuf out;               /* streaming: bytes to hand to MHD */
    size_t out_pos;                /* of out, handed already */
    enum phase phase;
    struct tc_stream *tc;          /* owned: content/reasoning/tool calls split (chat), or NULL */
    int n_reasoning_tok;           /* tokens fed while inside reasoning */
    char (*call_ids)[32];          /* from malloc: "call_..." of each tool call so far */
    int n_call_ids;
};

/* Appends "data: <payload>\n\n" to the stream output and frees payload. */
static int sse(struct job *j, char *payload)
{
    if (!payload)
        return -1;
    int rc = sbuf_addf(&j->out, "data: %s\n\n", payload);
    free(payload);
    return rc;
}

static bool client_gone(int fd)
{
    if (fd < 0)
        return false;
    struct pollfd p = {.fd = fd, .events = POLLRDHUP};
    if (poll(&p, 1, 0) <= 0)
        return false;
    return (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)) != 0;
}

/* model: the request's (the job may not own it yet). */
static void settle(struct job *j, const char *model, const char *finish)
{
    if (!j->admitted || j->settled)
        return;
    j->settled = true;
    if (j->srv->hooks.settle) {
        struct server_settle_info s = {j->id, model, j->usage.prompt_tokens, j->usage.cached_tokens,
                                       j->usage.completion_tokens, finish, j->usage.cost, sizeof j->usage.cost,
                                       j->compute_us};
        if (j->srv->hooks.settle(j->srv->hooks.ctx, j->hook_ctx, &s) < 0) {
            j->settle_failed = true;
            j->usage.cost[0] = 0;
        }
    }
}

/* ---- start ---- */

static atomic_uint_fast64_t job_counter;

/* Every logit_bias id must be one the model and tokenizer both know. */
static int check_bias(const struct smodel *sm, const struct oai_request *req, struct oai_error *err)
{
    for (int i = 0; i < req->n_bias; i++)
        if (req->bias[i].token >= sm->n_vocab)
            return oai_err(err, 400, "invalid_request_error", "logit_bias", NULL,
                           "Invalid key in 'logit_bias': token id %d is outside the vocabulary of %d tokens.",
                           (int)req->bias[i].token, sm->n_vocab);
    return 0;
}

/* The model's own template over the request's whole variable set (tools, tool calls, kwargs). */
static int encode_chat_json(const struct smodel *sm, const struct oai_request *req, struct tok_ids *ids,
                            char **rendered, size_t *rendered_len, struct oai_error *err)
{
    struct err e;
    const char **raw = calloc((size_t)req->n_msgs, sizeof *raw);
    if (!raw)
        return oai_err(err, 500, "server_error", NULL, NULL, "Out of memory.");
    for (int i = 0; i < req->n_msgs; i++)
        raw[i] = req->msgs[i].content;
    int rc = tok_chat_encode_json(sm->cfg.tok, req->chat_vars, strlen(req->chat_vars), req->n_tools > 0, raw,
                                  (size_t)req->n_msgs, true, ids, rendered, rendered_len, &e);
    free(raw);
    if (rc < 0)
        return oai_err(err, e.code == ERR_NOMEM ? 500 : 400, e.code == ERR_NOMEM ? "server_error" : "invalid_request_error",
                       "messages", NULL, "Invalid 'messages': %s", e.msg);
    return 0;
}

/* The prompt's tokens: the chat template over the messages, or the raw
 * prompt. *rendered: the rendered chat prompt (from malloc) or NULL. */
static int encode_prompt(const struct smodel *sm, const struct oai_request *req, struct tok_ids *ids,
                         char **rendered, size_t *rendered_len, struct oai_error *err)
{
    const struct tokenizer *tok = sm->cfg.tok;
    struct err e;
    *rendered = NULL;
    if (req->kind != OAI_CHAT) {
        if (tok_encode(tok, req->prompt, strlen(req->prompt), true, false, ids, &e) < 0)
            return oai_err(err, 400, "invalid_request_error", "prompt", NULL, "Invalid 'prompt': %s", e.msg);
        return 0;
    }
    if (sm->fam == TOK_CHAT_MODEL && req->chat_vars)
        return encode_chat_json(sm, req, ids, rendered, rendered_len, err);
    if (req->n_tools || req->tool_msgs)
        return oai_err(err, 400, "invalid_request_error", req->n_tools ? "tools" : "messages", NULL,
                       "This model is served with the built-in '%s' chat format (it carries no chat template maas "
                       "can run): tools and tool messages need the model's own template (see --chat-template).",
                       tok_chat_family_name(sm->fam));
    struct tok_chat_msg *msgs = calloc((size_t)req->n_msgs, sizeof *msgs);
    if (!msgs)
        return oai_err(err, 500, "server_error", NULL, NULL, "Out of memory.");
    for (int i = 0; i < req->n_msgs; i++)
        msgs[i].role = req->msgs[i].role, msgs[i].content = req->msgs[i].content;
    int rc = tok_chat_encode(tok, sm->fam, msgs, (size_t)req->n_msgs, true, ids, &e);
    if (rc == 0)
        *rendered = tok_chat_render(tok, sm->fam, msgs, (size_t)req->n_msgs, true, rendered_len, &e);
    free(msgs);
    if (rc < 0)
        return oai_err(err, 400, "invalid_request_error", "messages", NULL, "Invalid 'messages': %s", e.msg);
    return 0;
}

/* The output split a chat request needs (tool calls when it has tools and
 * tool_choice is not none, reasoning when the template writes it): *c set
 * and true, or false when the output is plain text. */
static bool split_config(const struct smodel *sm, const struct oai_request *req, const char *rendered, size_t n,
                         struct tc_config *c)
{
    if (req->kind != OAI_CHAT)
        return false;
    bool tools = req->n_tools > 0 && req->tool_choice != OAI_TOOL_NONE;
    const char *tm = tok_chat_template_for(sm->cfg.tok, req->n_tools > 0);
    if (!tm)
        tm = tok_chat_template_source(sm->cfg.tok);
    return tm && tc_config_for(c, tm, tools, rendered, n);
}

/* The prompt and the completion must fit in the context; *max_tokens gets
 * the request's, or what is left of the context when it gave none. */
static int fit_context(const struct smodel *sm, const struct oai_request *req, size_t n_prompt, int *max_tokens,
                       struct oai_error *err)
{
    const char *pparam = req->kind == OAI_CHAT ? "messages" : "prompt";
    int n_ctx = sm->cfg.n_ctx;
    int mt = req->max_tokens;
    if (n_prompt == 0)
        return oai_err(err, 400, "invalid_request_error", pparam, NULL,
                       "Invalid '%s': it encodes to no tokens (empty text, and the model adds no BOS token).",
                       pparam);
    if ((int64_t)n_prompt >= n_ctx || (mt > 0 && (int64_t)n_prompt + mt > n_ctx))
        return oai_err(err, 400, "invalid_request_error", pparam, "context_length_exceeded",
                       "This model's maximum context length is %d tokens. However, you requested %lld tokens (%zu "
                       "in the %s, %d in the completion). Please reduce the length of the %s or the completion.",
                       n_ctx, (long long)n_prompt + (mt > 0 ? mt : 0), n_prompt, pparam, mt > 0 ? mt : 0, pparam);
    *max_tokens = mt > 0 ? mt : n_ctx - (int)n_prompt;
    return 0;
}

/* A job with its id, detokenizer and logprobs; *serial: its number in this
 * process (a seed ingredient). NULL with *err. */
static struct job *job_new(struct server *srv, struct smodel *sm, const struct oai_request *req, int fd,
                           const struct tc_config *tc, uint64_t *serial, struct oai_error *err)
{
    struct job *j = calloc(1, sizeof *j);
    struct err e;
    if (!j)
        return oai_err(err, 500, "server_error", NULL, NULL, "Out of memory."), NULL;
    j->srv = srv, j->sm = sm, j->fd = fd;
    /* the id is also the ledger's request id: unique across restarts and
     * nodes (Unix milliseconds and 64 random bits) */
    *serial = atomic_fetch_add(&job_counter, 1) + 1;
    struct timespec wall;
    clock_gettime(CLOCK_REALTIME, &wall);
    uint64_t ms = (uint64_t)wall.tv_sec * 1000 + (uint64_t)wall.tv_nsec / 1000000, rnd;
    randombytes_buf(&rnd, sizeof rnd);
    snprintf(j->id, sizeof j->id, "%s-%012llx%016llx", req->kind == OAI_CHAT ? "chatcmpl" : "cmpl",
             (unsigned long long)(ms & 0xffffffffffffULL), (unsigned long long)rnd);
    /* a split output needs the format's markers, which are often control tokens */
    if (!(j->ts = tok_stream_new(sm->cfg.tok, (const char *const *)req->stop, (size_t)req->n_stop, tc != NULL, &e))) {
        oai_err(err, 500, "server_error", NULL, NULL, "%s", e.msg);
        goto fail;
    }
    if ((req->logprobs && !(j->lp = oai_logprobs_new(req->kind))) || (tc && !(j->tc = tc_stream_new(tc)))) {
        oai_err(err, 500, "server_error", NULL, NULL, "Out of memory.");
        goto fail;
    }
    return j;
fail:
    tok_stream_free(j->ts);
    oai_logprobs_free(j->lp);
    free(j);
    return NULL;
}

/* The sampling parameters of the request. */
static int sampling_of(const struct oai_request *req, struct sample_params *sp, struct oai_error *err)
{
    struct err e;
    *sp = sample_params_default();
    sp->temperature = req->temperature;
    sp->top_p = req->top_p;
    sp->presence_penalty = req->presence_penalty;
    sp->frequency_penalty = req->frequency_penalty;
    sp->penalty_last_n = -1;
    sp->bias = req->bias;
    sp->n_bias = req->n_bias;
    sp->n_top_logprobs = req->logprobs ? req->top_logprobs : 0;
    if (sample_params_check(sp, &e) < 0) /* ranges were checked by the parser: a mismatch is a bug, reported */
        return oai_err(err, 400, "invalid_request_error", NULL, NULL, "%s", e.msg);
    return 0;
}

/* The admit hook, then the engine; a refused submission is settled at once. */
static int admit_submit(struct job *j, const struct oai_request *req, const char *authorization,
                        const struct engine_request *er, struct oai_error *err)
{
    struct server *srv = j->srv;
    struct err e;
    struct server_sched sched = {{0}, 0};
    if (srv->hooks.admit) {
        struct server_admit_info a = {j->id,     authorization, req->model,     req->user,
                                      req->kind, er->n_prompt,  er->max_tokens, &sched};
        if (srv->hooks.admit(srv->hooks.ctx, &a, &j->hook_ctx, err) < 0)
            return -1;
    }
    struct engine_request sub = *er;
    sub.account = sched.account;
    sub.weight = sched.weight;
    er = &sub;
    j->admitted = true;
    j->usage.prompt_tokens = er->n_prompt;
    j->t_submit = now_ns();
    if (!(j->seq = engine_submit(j->sm->cfg.eng, er, &e))) {
        if (e.code == ERR_EXHAUSTED)
            oai_err(err, 429, "rate_limit_exceeded", NULL, "queue_full", "The server is busy: %s", e.msg);
        else
            oai_err(err, 503, "server_error", NULL, "unavailable", "The model cannot take the request: %s", e.msg);
        j->usage.prompt_tokens = 0;
        settle(j, req->model, "error");
        return -1;
    }
    return 0;
}

int job_start(struct server *srv, struct smodel *sm, struct oai_request *req, const char *authorization, int fd,
              struct job **out, struct oai_error *err)
{
    struct tok_ids ids;
    struct job *j = NULL;
    struct engine_request er = {0};
    struct tc_config tc;
    uint64_t serial;
    int rc = -1;
    char *rendered = NULL;
    size_t rendered_len = 0;
    tok_ids_init(&ids);
    const struct tc_config *split = NULL;
    if (check_bias(sm, req, err) < 0 || encode_prompt(sm, req, &ids, &rendered, &rendered_len, err) < 0 ||
        fit_context(sm, req, ids.n, &er.max_tokens, err) < 0)
        goto out;
    split = split_config(sm, req, rendered, rendered_len, &tc) ? &tc : NULL;
    if (!(j = job_new(srv, sm, req, fd, split, &serial, err)) || sampling_of(req, &er.sample, err) < 0 ||
        srv_grammar_get(req, split, &er.grammar, err) < 0)
        goto out;
    er.prompt = ids.ids;
    er.n_prompt = (int)ids.n;
    er.seed = req->has_seed ? req->seed : now_ns() ^ (serial * 0x9E3779B97F4A7C15ULL);
    if (admit_submit(j, req, authorization, &er, err) < 0)
        goto out;
    /* the job owns the request from here */
    j->req = *req;
    memset(req, 0, sizeof *req);
    j->meta.kind = j->req.kind;
    j->meta.id = j->id;
    j->meta.created = (int64_t)time(NULL);
    j->meta.model = j->req.model;
    j->phase = j->req.kind == OAI_CHAT ? PH_ROLE : PH_GEN;
    *out = j;
    j = NULL;
    rc = 0;
out:
    grammar_free(er.grammar); /* the engine holds its own reference */
    if (j) {
        tok_stream_free(j->ts);
        oai_logprobs_free(j->lp);
        tc_stream_free(j->tc);
        free(j);
    }
    free(rendered);
    tok_ids_release(&ids);
    return rc;
}

bool job_is_stream(const struct job *j)
{
    return j->req.stream;
}

/* ---- events ---- */

static void on_done(struct job *j, const struct engine_event *ev);

/* 0 with *ev, 1 after idle_ms without an event, -1 when the client is gone
 * (the sequence has been cancelled). */
static int wait_event(struct job *j, struct engine_event *ev, int idle_ms)
{
    int waited = 0;
    for (;;) {
        int rc = engine_next(j->seq, ev, WAIT_SLICE_MS);
        /* the socket is looked at when nothing comes, and every slice while
         * tokens flow (a busy sequence must notice its client too) */
        uint64_t now = now_ns();
        if (rc == 0 && now - j->t_checked < (uint64_t)WAIT_SLICE_MS * 1000000)
            return 0;
        j->t_checked = now;
        if (client_gone(j->fd)) {
            j->gone = true;
            engine_cancel(j->seq);
            if (rc == 0 && ev->kind == ENGINE_EV_DONE)
                on_done(j, ev); /* the last event: job_free must not wait for another */
            return -1;
        }
        if (rc == 0)
            return 0;
        waited += WAIT_SLICE_MS;
        if (idle_ms >= 0 && waited >= idle_ms)
            return 1;
    }
}

static int split_text(struct job *j, const char *s, size_t n, bool final);

/* Text released by the detokenizer: collected or sent as a chunk. */
static int emit_text(struct job *j, const char *s, size_t n)
{
    if (j->tc)
        return split_text(j, s, n, false);
    j->text_total += n;
    if (!j->req.stream)
        return n ? sbuf_add(&j->text, s, n) : 0;
    if (n == 0)
        return 0;
    int rc = sse(j, oai_build_chunk(&j->meta, false, s, n, NULL, j->lp));
    if (j->lp)
        oai_logprobs_clear(j->lp);
    return rc;
}

static int on_token(struct job *j, const struct sample_result *t)
{
    uint64_t now = now_ns();
    struct metrics *mt = &j->srv->mt;
    if (j->n_tok == 0)
        metrics_ttft(mt, j->sm->index, (double)(now - j->t_submit) * 1e-9);
    else
        metrics_itl(mt, j->sm->index, (double)(now - j->t_last) * 1e-9);
    j->t_last = now;
    j->n_tok++;
    if (j->stop_hit || tok_is_eog(j->sm->cfg.tok, t->token))
        return 0;
    const struct tokenizer *tok = j->sm->cfg.tok;
    if (j->lp) {
        struct oai_token_lp tl;
        memset(&tl, 0, sizeof tl);
        tl.bytes = tok_piece(tok, t->token, j->tc != NULL, &tl.n_bytes); /* as the text shows it */
        tl.logprob = t->logprob;
        tl.n_top = t->n_top < SAMPLE_MAX_TOP ? t->n_top : SAMPLE_MAX_TOP;
        for (int i = 0; i < tl.n_top; i++) {
            tl.top[i].bytes = tok_piece(tok, t->top[i].id, j->tc != NULL, &tl.top[i].n_bytes);
            tl.top[i].logprob = t->top[i].logprob;
            if (!tl.top[i].bytes)
                tl.top[i].bytes = "", tl.top[i].n_bytes = 0;
        }
        if (!tl.bytes)
            tl.bytes = "", tl.n_bytes = 0;
        if (oai_logprobs_add(j->lp, &tl, j->text_total) < 0)
            return -1;
    }
    const char *s;
    size_t n;
    struct err e;
    j->n_fed++;
    if (j->tc && tc_stream_in_reasoning(j->tc))
        j->n_reasoning_tok++;
    int rc = tok_stream_feed(j->ts, t->token, &s, &n, &e);
    if (rc < 0) {
        snprintf(j->error_msg, sizeof j->error_msg, "%s", e.msg);
        return -1;
    }
    if (rc == 1) {
        j->stop_hit = true;
        j->n_stop_tok = j->n_tok;
        engine_cancel(j->seq);
    }
    return emit_text(j, s, n);
}

/*
 * The usage of a request — one rule for the JSON response, the streamed
 * usage chunk, /metrics, the settlement (hence the ledger and /v1/usage):
 *   prompt_tokens      the prompt as submitted to the engine;
 *   cached_tokens      of those, the ones the engine took from the prefix
 *                      cache at the sequence's first admission (never more
 *                      than prompt_tokens - 1: the last one is recomputed);
 *   completion_tokens  the tokens the model generated for the response: all
 *                      of them up to the end (an end-of-generation token is
 *                      not counted), except that a request ended by a stop
 *                      string counts the tokens up to and including the one
 *                      that completed the stop string, the text itself being
 *                      cut before the stop string, as OpenAI does. The engine
 *                      runs ahead of this thread and may generate a few more
 *                      tokens before it sees the cancellation; those depend
 *                      on timing (streamed or not, machine load), are never
 *                      returned, and are not counted or billed.
 * The response and the ledger therefore always carry the same numbers, and
 * the streamed and the non-streamed form of a request the same ones.
 */
static void on_done(struct job *j, const struct engine_event *ev)
{
    j->done = true;
    j->usage.prompt_tokens = ev->n_prompt;
    j->usage.cached_tokens = ev->n_cached;
    j->usage.completion_tokens = ev->n_completion;
    j->compute_us = (int64_t)llround(ev->compute_s * 1e6);
    if (j->stop_hit && j->n_stop_tok < ev->n_completion)
        j->usage.completion_tokens = j->n_stop_tok;
    if (ev->finish == ENGINE_FINISH_ERROR) {
        j->error = true;
        snprintf(j->error_msg, sizeof j->error_msg, "%s", ev->error);
    }
    /* (a stream never fed holds nothing, and tok_stream_finish on it passes
     * NULL to memmove: skipped) */
    if (!j->stop_hit && !j->error && j->n_fed > 0) {
        const char *s;
        size_t n;
        struct err e;
        if (tok_stream_finish(j->ts, &s, &n, &e) < 0 || emit_text(j, s, n) < 0) {
            j->error = true;
            snprintf(j->error_msg, sizeof j->error_msg, "out of memory");
        }
    }
    if (!j->error && j->tc && split_text(j, "", 0, true) < 0) {
        j->error = true;
        snprintf(j->error_msg, sizeof j->error_msg, "out of memory");
    }
    j->usage.reasoning_tokens = j->n_reasoning_tok < j->usage.completion_tokens ? j->n_reasoning_tok
                                                                                  : j->usage.completion_tokens;
    j->finish = j->error ? "error"
                : j->stop_hit ? "stop"
                : ev->finish == ENGINE_FINISH_LENGTH ? "length"
                : ev->finish == ENGINE_FINISH_CANCELLED ? "cancelled"
                                                        : "stop";
    metrics_usage(&j->srv->mt, j->sm->index, j->usage.prompt_tokens, j->usage.cached_tokens,
                  j->usage.completion_tokens);
    metrics_queue_wait(&j->srv->mt, j->sm->index, ev->queue_s);
    settle(j, j->req.model, j->gone ? "cancelled" : j->finish);
}

/* The finish_reason clients see: stop, length, or tool_calls when the answer holds calls. */
static const char *client_finish(const struct job *j)
{
    if (!strcmp(j->finish, "length"))
        return "length";
    return j->tc && tc_stream_result(j->tc)->n_calls ? "tool_calls" : "stop";
}

/* ---- tool calls and reasoning (toolcall.h) ---- */

/* The ids of calls [0, upto): made once each, "call_" and 24 random hex digits. */
static int call_ids_upto(struct job *j, int upto)
{
    if (upto <= j->n_call_ids)
        return 0;
    char(*ids)[32] = realloc(j->call_ids, (size_t)upto * sizeof *ids);
    if (!ids)
        return -1;
    j->call_ids = ids;
    for (; j->n_call_ids < upto; j->n_call_ids++) {
        unsigned char r[12];
        randombytes_buf(r, sizeof r);
        char *p = j->call_ids[j->n_call_ids];
        p += sprintf(p, "call_");
        for (int i = 0; i < 12; i++)
            p += sprintf(p, "%02x", r[i]);
    }
    return 0;
}

/* One streamed chunk carrying text and/or parts (the logprobs so far ride on it). */
static int split_chunk(struct job *j, const char *text, size_t n, const struct oai_parts *p)
{
    struct oai_meta m = j->meta;
    m.parts = p;
    int rc = sse(j, oai_build_chunk(&m, false, text, n, NULL, j->lp));
    if (j->lp)
        oai_logprobs_clear(j->lp);
    return rc;
}

/* What one feed settled, as chunks: reasoning, content, then each call (id and name, then its arguments). */
static int split_stream(struct job *j, const struct tc_delta *d)
{
    int rc = 0;
    if (d->n_reasoning) {
        struct oai_parts p = {false, d->reasoning, d->n_reasoning, NULL, 0};
        rc |= split_chunk(j, NULL, 0, &p);
    }
    if (d->n_content)
        rc |= split_chunk(j, d->content, d->n_content, NULL);
    if (d->n_calls && call_ids_upto(j, d->first_index + d->n_calls) < 0)
        return -1;
    for (int i = 0; i < d->n_calls; i++) {
        int k = d->first_index + i;
        struct oai_call_out head = {k, j->call_ids[k], d->calls[i].name, ""};
        struct oai_call_out args = {k, NULL, NULL, d->calls[i].arguments};
        struct oai_parts p1 = {false, NULL, 0, &head, 1}, p2 = {false, NULL, 0, &args, 1};
        rc |= split_chunk(j, NULL, 0, &p1);
        rc |= split_chunk(j, NULL, 0, &p2);
    }
    return rc ? -1 : 0;
}

/* The most calls the answer may carry: one when parallel_tool_calls is false. */
static int max_calls(const struct job *j)
{
    return j->req.parallel_tool_calls ? INT_MAX : 1;
}

/* Text through the splitter: streamed as what it settles, or kept for the
 * response. With parallel_tool_calls false, generation ends at the first
 * complete call, as at a stop string. */
static int split_text(struct job *j, const char *s, size_t n, bool final)
{
    struct tc_delta d;
    j->text_total += n;
    if (tc_stream_feed(j->tc, s, n, final, &d) < 0)
        return -1;
    if (d.first_index + d.n_calls > max_calls(j))
        d.n_calls = max_calls(j) > d.first_index ? max_calls(j) - d.first_index : 0;
    if (!j->stop_hit && !final && tc_stream_result(j->tc)->n_calls >= max_calls(j)) {
        j->stop_hit = true;
        j->n_stop_tok = j->n_tok;
        engine_cancel(j->seq);
    }
    return j->req.stream ? split_stream(j, &d) : 0;
}

/* The whole response of a split output: content (null when empty and there are calls), reasoning, tool_calls. */
static char *split_response(struct job *j)
{
    const struct tc_result *r = tc_stream_result(j->tc);
    int n_calls = r->n_calls < max_calls(j) ? r->n_calls : max_calls(j);
    if (call_ids_upto(j, n_calls) < 0)
        return NULL;
    struct oai_call_out *calls = calloc((size_t)n_calls + 1, sizeof *calls);
    if (!calls)
        return NULL;
    for (int i = 0; i < n_calls; i++)
        calls[i] = (struct oai_call_out){i, j->call_ids[i], r->calls[i].name, r->calls[i].arguments};
    bool blank = true;
    for (size_t i = 0; i < r->content.len; i++)
        blank &= r->content.buf[i] == ' ' || r->content.buf[i] == '\n' || r->content.buf[i] == '\t' ||
                 r->content.buf[i] == '\r';
    struct oai_parts p = {blank && n_calls > 0, r->reasoning.len ? r->reasoning.buf : NULL, r->reasoning.len, calls,
                          n_calls};
    struct oai_meta m = j->meta;
    m.parts = &p;
    char *body = oai_build_response(&m, r->content.buf ? r->content.buf : "", r->content.len, client_finish(j), j->lp,
                                    &j->usage);
    free(calls);
    return body;
}

/* ---- non-streaming ---- */

char *job_run_to_end(struct job *j, int *status, struct oai_error *err)
{
    struct engine_event ev;
    while (!j->done) {
        int rc = wait_event(j, &ev, -1);
        if (rc < 0) {
            *status = 0;
            return NULL;
        }
        if (ev.kind == ENGINE_EV_DONE)
            on_done(j, &ev);
        else if (on_token(j, &ev.tok) < 0) {
            j->error = true;
            engine_cancel(j->seq);
        }
    }
    if (j->error) {
        *status = 500;
        oai_err(err, 500, "server_error", NULL, NULL, "Generation failed: %s", j->error_msg);
        return NULL;
    }
    if (j->settle_failed) {
        *status = 503;
        oai_err(err, 503, "server_error", NULL, "billing_unavailable",
                "The usage of request %s could not be recorded; it is not charged. Please retry.", j->id);
        return NULL;
    }
    char *body = j->tc ? split_response(j) :
                 oai_build_response(&j->meta, j->text.buf ? j->text.buf : "", j->text.len, client_finish(j), j->lp, &j->usage);
    if (!body) {
        *status = 500;
        oai_err(err, 500, "server_error", NULL, NULL, "Out of memory while building the response.");
        return NULL;
    }
    *status = 200;
    return body;
}

/* ---- streaming ---- */

static int stream_finish(struct job *j)
{
    int rc = 0;
    if (j->error) {
        struct oai_error e;
        oai_err(&e, 500, "server_error", NULL, NULL, "Generation failed: %s", j->error_msg);
        rc |= sse(j, oai_build_error(&e));
    } else if (j->settle_failed) {
        struct oai_error e;
        oai_err(&e, 503, "server_error", NULL, "billing_unavailable",
                "The usage of request %s could not be recorded; it is not charged. Please retry.", j->id);
        rc |= sse(j, oai_build_error(&e));
    } else {
        rc |= sse(j, oai_build_chunk(&j->meta, false, NULL, 0, client_finish(j),
                                     j->lp && oai_logprobs_count(j->lp) ? j->lp : NULL));
        if (j->req.include_usage)
            rc |= sse(j, oai_build_usage_chunk(&j->meta, &j->usage));
    }
    rc |= sbuf_addstr(&j->out, "data: [DONE]\n\n");
    j->phase = PH_END;
    return rc ? -1 : 0;
}

ssize_t job_stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct job *j = cls;
    for (;;) {
        if (j->out_pos < j->out.len) {
            size_t n = j->out.len - j->out_pos;
            if (n > max)
                n = max;
            memcpy(buf, j->out.buf + j->out_pos, n);
            j->out_pos += n;
            return (ssize_t)n;
        }
        sbuf_reset(&j->out);
        j->out_pos = 0;
        if (j->phase == PH_END)
            return -1; /* MHD_CONTENT_READER_END_OF_STREAM */
        if (j->phase == PH_ROLE) {
            if (sse(j, oai_build_chunk(&j->meta, true, "", 0, NULL, NULL)) < 0)
                return -2;
            j->phase = PH_GEN;
            continue;
        }
        struct engine_event ev;
        int idle_ms = j->srv->o.timeout_s * 1000 / 3;
        int rc = wait_event(j, &ev, idle_ms < KEEPALIVE_MS ? idle_ms : KEEPALIVE_MS);
        if (rc < 0)
            return -2; /* MHD_CONTENT_READER_END_WITH_ERROR: the client is gone */
        if (rc == 1) {
            if (sbuf_addstr(&j->out, ": keep-alive\n\n") < 0)
                return -2;
            continue;
        }
        if (ev.kind == ENGINE_EV_DONE) {
            on_done(j, &ev);
            if (stream_finish(j) < 0)
                return -2;
        } else if (on_token(j, &ev.tok) < 0) {
            j->error = true;
            engine_cancel(j->seq);
        }
    }
}

void job_free(void *cls)
{
    struct job *j = cls;
    if (!j)
        return;
    if (j->seq && !j->done) {
        /* the client went away (or the daemon is stopping): cancel, then wait
         * briefly for the engine's DONE so that usage is exact when settled */
        engine_cancel(j->seq);
        struct engine_event ev;
        uint64_t t0 = now_ns();
        while (!j->done && now_ns() - t0 < (uint64_t)DRAIN_MS * 1000000) {
            if (engine_next(j->seq, &ev, WAIT_SLICE_MS) == 0 && ev.kind == ENGINE_EV_DONE) {
                j->gone = true;
                on_done(j, &ev);
            }
        }
    }
    settle(j, j->req.model, "cancelled");
    engine_release(j->seq);
    tok_stream_free(j->ts);
    oai_logprobs_free(j->lp);
    tc_stream_free(j->tc);
    free(j->call_ids);
    oai_request_release(&j->req);
    sbuf_release(&j->text);
    sbuf_release(&j->out);
    free(j);
}
