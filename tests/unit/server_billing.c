/* server: the server's own billing hooks (auth.c) on a real ledger, through
 * real HTTP on a loopback port, under the sanitizers. A tiny random model
 * with the shared gpt-2 vocabulary (or without ../shared/testdata the
 * test's own byte-level BPE one, test_vocab.h):
 *   - 401 without a key; a billed request's id and cost are the ledger's;
 *   - the ledger failing at admission: 503, nothing held, nothing recorded;
 *   - the ledger failing between admission and settlement of a stream: the
 *     stream ends in an error, never with a cost or [DONE]-after-usage; the
 *     request is not charged, and its hold is released by billing_recover
 *     when the ledger is opened again (as at the next start); audit passes. */
#include "engine/engine.h"
#include "kernels/kernels.h"
#include "server/server.h"
#include "test.h"
#include "tiny_served.h"

#include <arpa/inet.h>
#include <jansson.h>
#include <sys/socket.h>

static int connect_to(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
        close(fd);
        fd = -1;
    }
    return fd;
}

static int send_post(int fd, const char *key, const char *json)
{
    char head[512];
    int n = snprintf(head, sizeof head,
                     "POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
                     "Content-Type: application/json\r\n%s%s%sContent-Length: %zu\r\n\r\n",
                     key ? "Authorization: Bearer " : "", key ? key : "", key ? "\r\n" : "", strlen(json));
    if (write(fd, head, (size_t)n) != n || write(fd, json, strlen(json)) != (ssize_t)strlen(json))
        return -1;
    return 0;
}

/* Reads into buf (cap bytes) until EOF, or (until != NULL) until that text has arrived. */
static size_t read_until(int fd, char *buf, size_t len, size_t cap, const char *until)
{
    ssize_t n;
    while (len + 1 < cap && (n = read(fd, buf + len, cap - len - 1)) > 0) {
        len += (size_t)n;
        buf[len] = 0;
        if (until && strstr(buf, until))
            break;
    }
    buf[len] = 0;
    return len;
}

/* Non-streaming request: status, and the body copied into body (cap bytes). */
static int post(int port, const char *key, const char *json, char *body, size_t cap)
{
    static char buf[1 << 16];
    int fd = connect_to(port);
    if (fd < 0 || send_post(fd, key, json) < 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    read_until(fd, buf, 0, sizeof buf, NULL);
    close(fd);
    int status = -1;
    sscanf(buf, "HTTP/1.1 %d", &status);
    const char *b = strstr(buf, "\r\n\r\n");
    snprintf(body, cap, "%s", b ? b + 4 : "");
    return status;
}

struct found {
    const char *id;
    int n;
    int64_t cost;
};

static int find_request(void *ctx, const struct billing_usage_row *r)
{
    struct found *f = ctx;
    if (!strcmp(r->group, f->id))
        f->n++, f->cost = r->cost;
    return 0;
}

static int count_records(struct billing *b, const char *account, const char *id, int64_t *cost)
{
    struct billing_usage_filter flt = {.account_id = account};
    struct billing_usage_row total;
    struct found f = {id, 0, 0};
    struct err e;
    if (billing_usage_report(b, &flt, BILLING_BY_REQUEST, find_request, &f, &total, &e) < 0)
        return -1;
    if (cost)
        *cost = f.cost;
    return f.n;
}

TEST(test_billed_server)
{
    struct err e;
    struct tokenizer *tok = test_vocab_load(&e);
    CHECKF(tok != NULL, "%s", e.msg);
    if (!tok)
        return;

    struct model *m = tiny_served_model(tok, "server_billing", 11, &e);
    CHECKF(m != NULL, "%s", e.msg);
    struct engine *eng = m ? engine_new(m, tok, &(struct engine_opts){.n_threads = 1, .n_ctx = 256}, &e) : NULL;
    CHECKF(eng != NULL, "%s", e.msg);

    char ddir[128], cmd[200];
    snprintf(ddir, sizeof ddir, "/tmp/maas-server-billing-%d", (int)getpid());
    snprintf(cmd, sizeof cmd, "rm -rf %s", ddir);
    CHECK(system(cmd) == 0);
    struct billing_options bo = {.db = ddir, .writer = 1};
    struct billing *b = NULL;
    CHECKF(billing_open(&bo, &b, &e) == 0, "%s", e.msg);
    char acct[BILLING_ID_MAX], key[BILLING_KEY_LEN + 1];
    struct billing_price p = {.model = "tiny", .input = 1000000, .cached_input = 500000, .output = 2000000};
    CHECK(b && billing_account_create(b, "t", BILLING_MICRO, acct, &e) == 0);
    CHECK(b && billing_key_create(b, acct, NULL, key, NULL, &e) == 0);
    CHECK(b && billing_price_set(b, &p, &e) == 0);

    struct server_model sm = {.name = "tiny", .m = m, .tok = tok, .eng = eng, .n_ctx = 256,
                              .chat_template = "chatml"};
    struct server_opts o = server_opts_default();
    o.port = 0;
    o.billing = b;
    struct server *srv = eng && b ? server_new(&sm, 1, &o, &e) : NULL;
    CHECKF(srv != NULL, "%s", e.msg);
    char stream_id[64] = "";
    if (srv) {
        int port = server_port(srv);
        static char body[1 << 16];
        const char *req = "{\"model\":\"tiny\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"max_tokens\":4}";
        CHECK(post(port, NULL, req, body, sizeof body) == 401);

        /* billed: the id and the cost are the ledger's */
        CHECK(post(port, key, req, body, sizeof body) == 200);
        json_error_t je;
        json_t *v = json_loads(body, 0, &je);
        const char *id = json_string_value(json_object_get(v, "id"));
        json_t *u = json_object_get(v, "usage");
        const char *cost_s = json_string_value(json_object_get(u, "cost"));
        int64_t cost = -1, ledger_cost = -2;
        CHECK(cost_s && amount_parse(cost_s, 0, &cost, &e) == 0);
        int64_t want = billing_cost(json_integer_value(json_object_get(u, "prompt_tokens")), 0,
                                    json_integer_value(json_object_get(u, "completion_tokens")), p.input,
                                    p.cached_input, p.output);
        CHECKF(cost == want && cost > 0, "cost %lld, want %lld", (long long)cost, (long long)want);
        CHECK(id && count_records(b, acct, id, &ledger_cost) == 1 && ledger_cost == cost);
        json_decref(v);

        /* the ledger fails at admission: 503, nothing held or recorded */
        billing_fail_after(b, 0);
        CHECK(post(port, key, req, body, sizeof body) == 503);
        CHECK(strstr(body, "billing_unavailable") != NULL);
        billing_fail_after(b, -1);
        struct billing_account a;
        CHECK(billing_account_get(b, acct, &a, &e) == 0 && a.held == 0 && a.balance == BILLING_MICRO - cost);

        /* the ledger fails after admission, before settlement, mid-stream */
        int fd = connect_to(port);
        CHECK(fd >= 0 && send_post(fd, key,
                                   "{\"model\":\"tiny\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],"
                                   "\"max_tokens\":40,\"stream\":true,\"stream_options\":{\"include_usage\":true}}") == 0);
        static char sbuf[1 << 17];
        size_t n = fd >= 0 ? read_until(fd, sbuf, 0, sizeof sbuf, "\"id\":\"") : 0;
        n = fd >= 0 ? read_until(fd, sbuf, n, sizeof sbuf, "\",") : 0;
        billing_fail_after(b, 0);
        if (fd >= 0) {
            read_until(fd, sbuf, n, sizeof sbuf, NULL);
            close(fd);
        }
        billing_fail_after(b, -1);
        const char *ip = strstr(sbuf, "\"id\":\"");
        if (ip)
            sscanf(ip + 6, "%63[A-Za-z0-9_-]", stream_id);
        CHECKF(strstr(sbuf, "billing_unavailable") && !strstr(sbuf, "\"cost\""), "stream: %.400s", sbuf);
        CHECK(stream_id[0] && count_records(b, acct, stream_id, NULL) == 0);
        CHECK(billing_account_get(b, acct, &a, &e) == 0 && a.held > 0);
        server_free(srv);
    }
    billing_close(b);

    /* the next start: the dead hold is released, not charged */
    struct billing *b2 = NULL;
    int64_t released = -1;
    CHECKF(billing_open(&bo, &b2, &e) == 0, "%s", e.msg);
    CHECKF(b2 && billing_recover(b2, 0, &released, &e) == 0 && released == 1, "released %lld: %s",
           (long long)released, e.msg);
    struct billing_account a2;
    int64_t abandoned_cost = -1;
    CHECK(b2 && billing_account_get(b2, acct, &a2, &e) == 0 && a2.held == 0);
    CHECK(b2 && stream_id[0] && count_records(b2, acct, stream_id, &abandoned_cost) == 1 && abandoned_cost == 0);
    CHECKF(b2 && billing_audit(b2, &e) == 0, "%s", e.msg);
    billing_close(b2);
    CHECK(system(cmd) == 0);
    engine_free(eng);
    model_free(m);
    tok_free(tok);
}

int main(void)
{
    kernels_init();
    RUN(test_billed_server);
    TEST_END();
}
