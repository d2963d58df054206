/*
 * server — the OpenAI-compatible HTTP API over one engine per model.
 *
 *   POST /v1/chat/completions   chat (messages rendered with the model's chat template)
 *   POST /v1/completions        raw text completion
 *   GET  /v1/models[/NAME]      the models served
 *   GET  /v1/usage?from=&to=    the calling key's account's usage (billing on)
 *   GET  /health                {"status":"ok"}
 *   GET  /metrics               Prometheus text
 *   /admin/...                  accounts, keys, prices, usage (billing on; the admin key): see admin.c
 *
 * Use:
 *     struct server_model sm = {.name = "tiny", .m = m, .tok = tok, .eng = eng, .n_ctx = 4096};
 *     struct server_opts o = server_opts_default();
 *     struct server *s = server_new(&sm, 1, &o, &e);   // listening when it returns
 *     ... until a signal ...
 *     server_free(s);                                   // stops accepting, ends connections
 *
 * Threads: libmicrohttpd runs one thread per connection (plus its listening
 * thread). A connection thread parses, validates and tokenizes its request,
 * submits it to the model's engine and then blocks on engine_next for that
 * one sequence only — it never touches the model. A client that goes away
 * (checked on the socket while waiting) has its sequence cancelled.
 *
 * Billing: struct server_hooks is the one place where accounting plugs in.
 * admit() runs after validation and tokenization and before the engine sees
 * the request (authentication, holds, rate limits); settle() runs exactly
 * once for every admitted request when it ends, with the token counts.
 * With server_opts.billing set (and no hooks given) the server uses its own
 * hooks over billing_admit/billing_settle (auth.c): every /v1 route needs
 * "Authorization: Bearer <key>", checked as soon as the headers arrive (401
 * before a byte of the body is read; the admin key gets 403 on inference),
 * the response id is the ledger's request id, and usage carries "cost" (a
 * decimal string; streamed, in the include_usage chunk). Settlement is
 * committed before the last byte of a response: before the JSON body, or
 * before a stream's final chunk, usage chunk and [DONE]; a request cancelled
 * by its client is settled when its sequence ends. If the usage cannot be
 * recorded the client gets a 503 (or an error event) instead of the end of
 * its response, and the hold is released, uncharged, at the next start or
 * by the server's sweeper once it is older than recover_after_s (sweep.c:
 * every recover_every_ms, billing_recover_live also releases the holds of
 * dead processes sharing the data directory).
 * Without billing and hooks nothing is checked (maas serve --no-auth).
 */
#ifndef MAAS_SERVER_H
#define MAAS_SERVER_H

#include "billing/billing.h"
#include "core/core.h"
#include "engine/engine.h"
#include "model/model.h"
#include "server/openai.h"
#include "tokenizer/tokenizer.h"

#include <stdbool.h>
#include <stddef.h>

struct server_model {
    const char *name;              /* borrowed: the name clients put in "model" */
    struct model *m;               /* borrowed */
    const struct tokenizer *tok;   /* borrowed */
    struct engine *eng;            /* borrowed: must outlive the server */
    int n_ctx;                     /* the engine's n_ctx (prompt + output limit) */
    const char *chat_template;     /* borrowed: family name to force, or NULL to recognise the model's */
};

/* What admit() tells the engine about an admitted request: the account in
 * whose fair share it runs and that account's weight (see engine_submit). */
struct server_sched {
    char account[ENGINE_ACCOUNT_MAX]; /* "" = the one class of requests without an account */
    int weight;                       /* 1..1000; 0 = 1 */
};

struct server_admit_info {
    const char *request_id;        /* the response's id, unique: the ledger's request id */
    const char *authorization;     /* the Authorization header, or NULL */
    const char *model;
    const char *user;              /* the request's "user", or NULL */
    enum oai_kind kind;
    int n_prompt;
    int max_tokens;
    struct server_sched *sched;    /* out: zeroed before admit(), which may fill it */
};

struct server_settle_info {
    const char *request_id;
    const char *model;
    /* the response's own usage, by job.c's rule (on_done): a request ended by
     * a stop string counts the tokens up to the one that completed it */
    int n_prompt, n_cached, n_completion;
    const char *finish;            /* "stop", "length", "cancelled" (client gone), "error" */
    char *cost;                    /* out: the charged amount as a decimal string ("" = none) */
    size_t cost_size;
    int64_t compute_us;            /* core-microseconds the engine spent on it (engine_event.compute_s) */
};

struct server_hooks {
    void *ctx;
    /* 0 to let the request run (*req_ctx is handed to settle), or -1 with
     * *err filled (status 401/402/429...). NULL admits everything. */
    int (*admit)(void *ctx, const struct server_admit_info *a, void **req_ctx, struct oai_error *err);
    /* Called once per admitted request, from its connection thread, before
     * the last byte of its response. 0 once the usage is recorded (and
     * s->cost written), -1 if it could not be: the client then gets an error
     * instead of the end of its response. */
    int (*settle)(void *ctx, void *req_ctx, const struct server_settle_info *s);
};

struct server_opts {
    const char *host;              /* numeric address or name; default "127.0.0.1" */
    int port;                      /* 0 = any free port (see server_port) */
    size_t max_body;               /* bytes; larger bodies get 413 (default 1 MiB) */
    int timeout_s;                 /* an idle or stalled connection is closed after this (default 30) */
    int header_timeout_s;          /* a request's line and headers must arrive within this many seconds
                                      of their first byte, else 408 and close (default 10) */
    int min_body_rate;             /* bytes a second a request body must keep up, counted from the end of
                                      its headers after a grace of header_timeout_s; slower, the
                                      connection is closed (default 4096; 0 = no minimum) */
    int max_connections;           /* open client connections, idle ones included; past it a new one gets
                                      503 and is closed (0 = SERVER_MAX_CONNECTIONS, lowered to fit the
                                      open-file limit) */
    int max_per_ip;                /* open connections from one client address (0 = no limit of its own) */
    int max_active;                /* connections with a request in progress, one thread each; past it a
                                      request gets 503 (0 = SERVER_MAX_ACTIVE) */
    const struct server_hooks *hooks; /* borrowed, may be NULL */
    const char *access_log;        /* a file to append one JSON line per request to, "-" for stdout,
                                      NULL for none: time, request_id, account, key (its id), model,
                                      status, method, route, client, tokens, finish, duration_us */
    bool loopback_only;            /* refuse to listen on anything but a loopback address */
    struct billing *billing;       /* borrowed, may be NULL: keys, holds, metering, /admin, /v1/usage */
    int recover_every_ms;          /* with billing: release stale holds this often (billing_recover_live);
                                      0 = SERVER_RECOVER_EVERY_MS, < 0 = never */
    int64_t recover_after_s;       /* a hold is stale this long after admission; 0 = SERVER_STALE_HOLD_S */
};

#define SERVER_MAX_CONNECTIONS 10000
#define SERVER_MAX_ACTIVE 512
#define SERVER_RECOVER_EVERY_MS 300000 /* five minutes */
#define SERVER_STALE_HOLD_S 86400      /* no request runs a day; the age maas serve uses at start too */

struct server_opts server_opts_default(void);

struct server;

/* Starts listening. models: n_models entries (copied; what they point to
 * is borrowed). NULL with a reason (address in use, bad host, ...). */
struct server *server_new(const struct server_model *models, int n_models, const struct server_opts *o,
                          struct err *e);
/* The port actually bound. */
int server_port(const struct server *s);
/* Stops the daemon (open streams end, their sequences are cancelled) and
 * frees everything. NULL does nothing. */
void server_free(struct server *s);

/* ---- the ledger's records as JSON (admin_json.c) ----
 * One serializer for the /admin routes and `maas admin --format json`, so
 * both print the same bytes: amounts are decimal strings ("0.25"), times
 * "YYYY-MM-DDTHH:MM:SSZ" (unset: "-" for created_at and from, null
 * elsewhere). The objects are jansson's; each function returns a new
 * reference, NULL when out of memory (or when a string is not UTF-8). */
struct json_t;
/* {"id","name","balance","held","available","credited","keys","created_at"} */
struct json_t *srv_json_account(const struct billing_account *a);
/* {"id","account","models","rpm","tpm","budget","budget_period","expires_at",
 * "revoked","revoked_at","created_at","last_used_at"}, then "key": whole
 * when whole is not NULL (a key just created: the only time it is shown). */
struct json_t *srv_json_key(const struct billing_key *k, const char *whole);
/* {"model","input","cached_input","output","from","per":"1M tokens"} */
struct json_t *srv_json_price(const struct billing_price *p);
/* {"ok":true} when error is NULL, else {"ok":false,"error":error}. */
struct json_t *srv_json_audit(const char *error);
/* The listings, read from the ledger: {"accounts":[...]}, {"keys":[...]}
 * (account_id NULL: every account's), {"prices":[...]}, and the usage report
 * {"rows":[{GROUP:...,"requests",...,"cost"}...],"total":{...}} where GROUP
 * is billing_group_name(by); with operator set, every row and the total also
 * carry "compute_s" (core-seconds, a number), "compute_cost" and "margin"
 * (cost - compute_cost, exact; amounts as decimal strings). 0 with *out (a
 * new reference), or -1 with *e: billing's error, or ERR_NOMEM. */
int srv_json_accounts(struct billing *b, struct json_t **out, struct err *e);
int srv_json_keys(struct billing *b, const char *account_id, struct json_t **out, struct err *e);
int srv_json_prices(struct billing *b, struct json_t **out, struct err *e);
int srv_json_usage(struct billing *b, const struct billing_usage_filter *f, enum billing_group by, bool operator,
                   struct json_t **out, struct err *e);
/* Compact JSON text (from malloc) of o, whose reference it takes; NULL when
 * o is NULL or out of memory. */
char *srv_json_dump(struct json_t *o);

#endif
