/* server: the billing hooks and end-of-generation, through real HTTP on a
 * loopback port. A tiny random model with the shared gpt-2 vocabulary
 * (or without ../shared/testdata the test's own byte-level BPE one,
 * test_vocab.h) serves behind hooks that refuse a
 * request without "Authorization: Bearer good" (401) or for user "broke"
 * (402), and count settlements: each admitted request settles exactly once,
 * with its token counts, whether it streams or not; refused ones never do.
 * A logit bias on <|endoftext|> ends generation at once: finish_reason stop,
 * no text, zero completion tokens. */
#include "engine/engine.h"
#include "kernels/kernels.h"
#include "server/server.h"
#include "test.h"
#include "tiny_served.h"

#include <arpa/inet.h>
#include <jansson.h>
#include <pthread.h>
#include <sys/socket.h>

struct ledger {
    pthread_mutex_t mu;
    int admitted, settled;
    struct server_admit_info last_admit;
    int last_prompt, last_completion, last_cached;
    char last_finish[32];
    char last_user[32];
};

static int admit(void *ctx, const struct server_admit_info *a, void **req_ctx, struct oai_error *err)
{
    struct ledger *l = ctx;
    if (!a->authorization || strcmp(a->authorization, "Bearer good"))
        return oai_err(err, 401, "authentication_error", NULL, "invalid_api_key", "Incorrect API key provided.");
    if (a->user && !strcmp(a->user, "broke"))
        return oai_err(err, 402, "insufficient_quota", NULL, "insufficient_quota", "Your balance is too low.");
    pthread_mutex_lock(&l->mu);
    l->admitted++;
    l->last_admit = *a;
    snprintf(l->last_user, sizeof l->last_user, "%s", a->user ? a->user : "");
    *req_ctx = l; /* anything: handed back to settle */
    pthread_mutex_unlock(&l->mu);
    return 0;
}

static int settle(void *ctx, void *req_ctx, const struct server_settle_info *s)
{
    struct ledger *l = ctx;
    pthread_mutex_lock(&l->mu);
    if (req_ctx == l)
        l->settled++;
    l->last_prompt = s->n_prompt;
    l->last_completion = s->n_completion;
    l->last_cached = s->n_cached;
    snprintf(l->last_finish, sizeof l->last_finish, "%s", s->finish);
    pthread_mutex_unlock(&l->mu);
    return 0;
}

/* One request on a fresh connection (Connection: close); returns the status
 * and the body (from malloc) in *body. */
static int http(int port, const char *auth, const char *path, const char *json, char **body)
{
    *body = NULL;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    char head[512];
    int hn = snprintf(head, sizeof head,
                      "POST %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Type: application/json\r\n"
                      "%s%s%sContent-Length: %zu\r\n\r\n",
                      path, auth ? "Authorization: " : "", auth ? auth : "", auth ? "\r\n" : "", strlen(json));
    if (write(fd, head, (size_t)hn) != hn || write(fd, json, strlen(json)) != (ssize_t)strlen(json)) {
        close(fd);
        return -1;
    }
    size_t len = 0, cap = 1 << 16;
    char *buf = malloc(cap);
    ssize_t n;
    while (buf && (n = read(fd, buf + len, cap - len - 1)) > 0) {
        len += (size_t)n;
        if (len + 1 == cap) {
            char *nb = realloc(buf, cap *= 2);
            if (!nb) {
                free(buf);
                buf = NULL;
            }
            buf = nb;
        }
    }
    close(fd);
    if (!buf)
        return -1;
    buf[len] = 0;
    int status = -1;
    sscanf(buf, "HTTP/1.1 %d", &status);
    char *b = strstr(buf, "\r\n\r\n");
    *body = strdup(b ? b + 4 : "");
    free(buf);
    return status;
}

static json_t *parse(const char *s)
{
    json_error_t je;
    return s ? json_loads(s, 0, &je) : NULL;
}

TEST(test_hooks_and_eog)
{
    struct err e;
    struct tokenizer *tok = test_vocab_load(&e);
    CHECKF(tok != NULL, "%s", e.msg);
    if (!tok)
        return;
    int32_t eot = tok_find(tok, "<|endoftext|>", 13);
    CHECK(eot >= 0 && tok_is_eog(tok, eot));

    struct model *m = tiny_served_model(tok, "server_hooks", 9, &e);
    CHECKF(m != NULL, "%s", e.msg);
    struct engine *eng = m ? engine_new(m, tok, &(struct engine_opts){.n_threads = 1, .n_ctx = 256}, &e) : NULL;
    CHECKF(eng != NULL, "%s", e.msg);
    struct ledger l = {.mu = PTHREAD_MUTEX_INITIALIZER};
    struct server_hooks hooks = {&l, admit, settle};
    struct server_model sm = {.name = "tiny", .m = m, .tok = tok, .eng = eng, .n_ctx = 256,
                              .chat_template = "chatml"};
    struct server_opts o = server_opts_default();
    o.port = 0;
    o.hooks = &hooks;
    struct server *srv = eng ? server_new(&sm, 1, &o, &e) : NULL;
    CHECKF(srv != NULL, "%s", eng ? e.msg : "no engine");
    if (srv) {
        int port = server_port(srv);
        CHECK(port > 0);
        const char *req = "{\"model\":\"tiny\",\"messages\":[{\"role\":\"user\",\"content\":\"hello there\"}],"
                          "\"max_tokens\":5,\"temperature\":0,\"user\":\"alice\"}";
        char *body;
        json_t *v;

        /* refused: no key, wrong key, no money; never settled */
        CHECK(http(port, NULL, "/v1/chat/completions", req, &body) == 401);
        v = parse(body);
        CHECK(v && !strcmp(json_string_value(json_object_get(json_object_get(v, "error"), "code")), "invalid_api_key"));
        json_decref(v);
        free(body);
        CHECK(http(port, "Bearer bad", "/v1/chat/completions", req, &body) == 401);
        free(body);
        CHECK(http(port, "Bearer good", "/v1/chat/completions",
                   "{\"model\":\"tiny\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"user\":\"broke\"}",
                   &body) == 402);
        free(body);
        /* validation comes before admission: a bad body never reaches the hook */
        CHECK(http(port, "Bearer good", "/v1/chat/completions", "{\"model\":\"tiny\"}", &body) == 400);
        free(body);
        CHECK(l.admitted == 0 && l.settled == 0);

        /* admitted: settled once, with the counts the response reports */
        CHECK(http(port, "Bearer good", "/v1/chat/completions", req, &body) == 200);
        v = parse(body);
        json_t *u = json_object_get(v, "usage");
        CHECK(l.admitted == 1 && l.settled == 1);
        CHECK(l.last_admit.max_tokens == 5 && l.last_admit.kind == OAI_CHAT && !strcmp(l.last_user, "alice"));
        CHECK(l.last_admit.n_prompt == (int)json_integer_value(json_object_get(u, "prompt_tokens")));
        CHECK(l.last_prompt == l.last_admit.n_prompt && l.last_completion == 5 && !strcmp(l.last_finish, "length"));
        CHECK(json_integer_value(json_object_get(u, "completion_tokens")) == 5);
        json_decref(v);
        free(body);

        /* streaming: settled once too, before [DONE] (greedy: at temperature
         * 1 the end token may come first, now and then) */
        CHECK(http(port, "Bearer good", "/v1/completions",
                   "{\"model\":\"tiny\",\"prompt\":\"abc\",\"max_tokens\":3,\"temperature\":0,\"stream\":true}",
                   &body) == 200);
        CHECK(body && strstr(body, "data: [DONE]") != NULL);
        pthread_mutex_lock(&l.mu);
        CHECKF(l.admitted == 2 && l.settled == 2, "admitted %d, settled %d", l.admitted, l.settled);
        CHECKF(l.last_completion == 3 && l.last_admit.kind == OAI_COMPLETION, "completion tokens %d, finish %s",
               l.last_completion, l.last_finish);
        pthread_mutex_unlock(&l.mu);
        free(body);

        /* end of generation: <|endoftext|> biased to be the greedy choice */
        char eog_req[256];
        snprintf(eog_req, sizeof eog_req,
                 "{\"model\":\"tiny\",\"prompt\":\"abc\",\"max_tokens\":8,\"temperature\":0,"
                 "\"logit_bias\":{\"%d\":100}}", (int)eot);
        CHECK(http(port, "Bearer good", "/v1/completions", eog_req, &body) == 200);
        v = parse(body);
        json_t *ch = json_array_get(json_object_get(v, "choices"), 0);
        CHECK(ch && !strcmp(json_string_value(json_object_get(ch, "finish_reason")), "stop"));
        CHECK(ch && !strcmp(json_string_value(json_object_get(ch, "text")), ""));
        CHECK(json_integer_value(json_object_get(json_object_get(v, "usage"), "completion_tokens")) == 0);
        CHECK(l.settled == 3 && !strcmp(l.last_finish, "stop") && l.last_completion == 0);
        json_decref(v);
        free(body);

        /* a token id outside the vocabulary in logit_bias is the client's error */
        snprintf(eog_req, sizeof eog_req, "{\"model\":\"tiny\",\"prompt\":\"abc\",\"logit_bias\":{\"%d\":1}}",
                 (int)tok_n_vocab(tok));
        CHECK(http(port, "Bearer good", "/v1/completions", eog_req, &body) == 400);
        v = parse(body);
        CHECK(v && !strcmp(json_string_value(json_object_get(json_object_get(v, "error"), "param")), "logit_bias"));
        json_decref(v);
        free(body);
        CHECK(l.admitted == 3 && l.settled == 3);
        server_free(srv);
    }
    engine_free(eng);
    model_free(m);
    tok_free(tok);
}

int main(void)
{
    kernels_init();
    RUN(test_hooks_and_eog);
    TEST_END();
}
