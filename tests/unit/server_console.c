/* server: the web console's files (/console) and the tenant's own routes
 * (/v1/me, /v1/me/requests) through real HTTP on a loopback port, on a real
 * ledger, under the sanitizers:
 *   - /console is the embedded index.html with a CSP without 'unsafe-inline',
 *     nosniff, an ETag (304 when it matches); its script and style have their
 *     content types; unknown files, "/consolex" and ".." are 404;
 *   - /v1/me shows the key's own account and keys, never another account's,
 *     never a whole key; 401 without a key, 403 for the admin key;
 *   - /v1/me/requests lists the account's own requests and
 *     refuses a bad limit (400); an unknown path under /v1/me is 404. */
#include "engine/engine.h"
#include "kernels/kernels.h"
#include "server/server.h"
#include "test.h"
#include "tiny_served.h"

#include <arpa/inet.h>
#include <jansson.h>
#include <sys/socket.h>

static char resp[1 << 17];

/* One request; the status, with the whole response (head and body) in resp. */
static int http(int port, const char *method, const char *path, const char *key, const char *extra,
                const char *json)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    char head[1024];
    int n = snprintf(head, sizeof head, "%s %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n%s%s%s%s",
                     method, path, key ? "Authorization: Bearer " : "", key ? key : "", key ? "\r\n" : "",
                     extra ? extra : "");
    if (json)
        n += snprintf(head + n, sizeof head - (size_t)n,
                      "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n", strlen(json));
    else
        n += snprintf(head + n, sizeof head - (size_t)n, "\r\n");
    int status = -1;
    if (write(fd, head, (size_t)n) == n && (!json || write(fd, json, strlen(json)) == (ssize_t)strlen(json))) {
        size_t len = 0;
        ssize_t r;
        while (len + 1 < sizeof resp && (r = read(fd, resp + len, sizeof resp - len - 1)) > 0)
            len += (size_t)r;
        resp[len] = 0;
        sscanf(resp, "HTTP/1.1 %d", &status);
    }
    close(fd);
    return status;
}

static const char *body_of(void)
{
    const char *b = strstr(resp, "\r\n\r\n");
    return b ? b + 4 : "";
}

/* The value of header name in resp (case as MHD writes it), into out. */
static bool header(const char *name, char *out, size_t n)
{
    char pat[64];
    snprintf(pat, sizeof pat, "\r\n%s: ", name);
    const char *h = strstr(resp, pat);
    if (!h)
        return false;
    h += strlen(pat);
    snprintf(out, n, "%.*s", (int)strcspn(h, "\r"), h);
    return true;
}

static void check_files(int port)
{
    char v[512], etag[64] = "";
    CHECK(http(port, "GET", "/console", NULL, NULL, NULL) == 200);
    CHECK(strstr(body_of(), "<!doctype html>") && strstr(body_of(), "name=\"api_key\""));
    CHECK(header("Content-Type", v, sizeof v) && !strcmp(v, "text/html; charset=utf-8"));
    CHECKF(header("Content-Security-Policy", v, sizeof v) && strstr(v, "script-src 'self'") &&
               !strstr(v, "unsafe-inline"), "CSP: %s", v);
    CHECK(header("X-Content-Type-Options", v, sizeof v) && !strcmp(v, "nosniff"));
    CHECK(header("ETag", etag, sizeof etag) && etag[0] == '"');
    char inm[128];
    snprintf(inm, sizeof inm, "If-None-Match: %s\r\n", etag);
    CHECK(http(port, "GET", "/console/", NULL, inm, NULL) == 304);
    CHECK(http(port, "GET", "/console/console.js", NULL, NULL, NULL) == 200);
    CHECK(header("Content-Type", v, sizeof v) && !strcmp(v, "text/javascript; charset=utf-8"));
    CHECK(http(port, "GET", "/console/console.css", NULL, NULL, NULL) == 200);
    CHECK(header("Content-Type", v, sizeof v) && !strcmp(v, "text/css; charset=utf-8"));
    CHECK(http(port, "GET", "/console/nope.js", NULL, NULL, NULL) == 404);
    CHECK(http(port, "GET", "/console/../README.md", NULL, NULL, NULL) == 404);
    CHECK(http(port, "GET", "/consolex", NULL, NULL, NULL) == 404);
    CHECK(http(port, "POST", "/console", NULL, NULL, "{}") == 405);
}

/* GET path with key: the parsed JSON body (status must be 200). */
static json_t *get_json(int port, const char *path, const char *key)
{
    int st = http(port, "GET", path, key, NULL, NULL);
    CHECKF(st == 200, "%s: %d %.300s", path, st, body_of());
    return json_loads(body_of(), 0, NULL);
}

static void check_me(int port, const char *key, const char *acct, const char *other_key_id, const char *admin)
{
    CHECK(http(port, "GET", "/v1/me", NULL, NULL, NULL) == 401);
    CHECK(http(port, "GET", "/v1/me", admin, NULL, NULL) == 403);
    json_t *me = get_json(port, "/v1/me", key);
    json_t *keys = json_object_get(me, "keys");
    CHECK(!strcmp(json_string_value(json_object_get(json_object_get(me, "account"), "id")) ?: "", acct));
    CHECK(json_array_size(keys) == 1);
    size_t i;
    json_t *k;
    json_array_foreach(keys, i, k)
    {
        CHECK(!strcmp(json_string_value(json_object_get(k, "account")) ?: "", acct));
        CHECK(strcmp(json_string_value(json_object_get(k, "id")) ?: "", other_key_id) != 0);
        CHECK(!json_object_get(k, "key"));
    }
    CHECK(!strstr(body_of(), "sk-maas-"));
    json_decref(me);
}

static void check_requests(int port, const char *key, const char *id1, const char *id2, const char *other_id)
{
    json_t *r = get_json(port, "/v1/me/requests", key);
    json_t *list = json_object_get(r, "requests");
    CHECKF(json_array_size(list) == 2, "%zu requests", json_array_size(list));
    const char *first = json_string_value(json_object_get(json_array_get(list, 0), "id"));
    const char *second = json_string_value(json_object_get(json_array_get(list, 1), "id"));
    /* both (the same second: their order is the ledger test's business) */
    CHECK(first && second && ((!strcmp(first, id2) && !strcmp(second, id1)) ||
                              (!strcmp(first, id1) && !strcmp(second, id2))));
    CHECK(!strstr(body_of(), other_id));
    CHECK(!strcmp(json_string_value(json_object_get(json_array_get(list, 0), "model")) ?: "", "tiny"));
    json_decref(r);
    r = get_json(port, "/v1/me/requests?limit=1", key);
    CHECK(json_array_size(json_object_get(r, "requests")) == 1);
    json_decref(r);
    CHECK(http(port, "GET", "/v1/me/requests?limit=0", key, NULL, NULL) == 400);
    CHECK(http(port, "GET", "/v1/me/requests?limit=x", key, NULL, NULL) == 400);
    CHECK(http(port, "GET", "/v1/me/nope", key, NULL, NULL) == 404);
}

/* A chat completion with key; its id into id (64 bytes). */
static void chat(int port, const char *key, char *id)
{
    const char *req = "{\"model\":\"tiny\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"max_tokens\":2}";
    CHECK(http(port, "POST", "/v1/chat/completions", key, NULL, req) == 200);
    json_t *v = json_loads(body_of(), 0, NULL);
    snprintf(id, 64, "%s", json_string_value(json_object_get(v, "id")) ?: "?");
    json_decref(v);
}

TEST(test_console_and_me)
{
    struct err e;
    struct tokenizer *tok = test_vocab_load(&e);
    CHECKF(tok != NULL, "%s", e.msg);
    if (!tok)
        return;
    struct model *m = tiny_served_model(tok, "server_console", 11, &e);
    struct engine *eng = m ? engine_new(m, tok, &(struct engine_opts){.n_threads = 1, .n_ctx = 256}, &e) : NULL;
    CHECKF(eng != NULL, "%s", e.msg);
    char ddir[128], cmd[200];
    snprintf(ddir, sizeof ddir, "/tmp/maas-server-console-%d", (int)getpid());
    snprintf(cmd, sizeof cmd, "rm -rf %s", ddir);
    CHECK(system(cmd) == 0);
    struct billing_options bo = {.db = ddir, .writer = 1};
    struct billing *b = NULL;
    CHECKF(billing_open(&bo, &b, &e) == 0, "%s", e.msg);
    char acct[BILLING_ID_MAX], other[BILLING_ID_MAX], key[BILLING_KEY_LEN + 1], okey[BILLING_KEY_LEN + 1];
    char admin[128];
    struct billing_key oinfo;
    struct billing_price p = {.model = "tiny", .input = 1000000, .cached_input = 500000, .output = 2000000};
    CHECK(b && billing_account_create(b, "t", BILLING_MICRO, acct, &e) == 0);
    CHECK(b && billing_account_create(b, "other", BILLING_MICRO, other, &e) == 0);
    CHECK(b && billing_key_create(b, acct, NULL, key, NULL, &e) == 0);
    CHECK(b && billing_key_create(b, other, NULL, okey, &oinfo, &e) == 0);
    CHECK(b && billing_price_set(b, &p, &e) == 0);
    CHECK(b && billing_admin_key_create(b, admin, sizeof admin, &e) == 0);

    struct server_model sm = {.name = "tiny", .m = m, .tok = tok, .eng = eng, .n_ctx = 256,
                              .chat_template = "chatml"};
    struct server_opts o = server_opts_default();
    o.port = 0;
    o.billing = b;
    struct server *srv = eng && b ? server_new(&sm, 1, &o, &e) : NULL;
    CHECKF(srv != NULL, "%s", e.msg);
    if (srv) {
        int port = server_port(srv);
        char id1[64], id2[64], other_id[64];
        check_files(port);
        chat(port, key, id1);
        chat(port, okey, other_id);
        chat(port, key, id2);
        check_me(port, key, acct, oinfo.id, admin);
        check_requests(port, key, id1, id2, other_id);
        server_free(srv);
    }
    billing_close(b);
    CHECK(system(cmd) == 0);
    engine_free(eng);
    model_free(m);
    tok_free(tok);
}

int main(void)
{
    kernels_init();
    RUN(test_console_and_me);
    TEST_END();
}
