/* server_int.h — private to server/: the route table, the server object,
 * metrics, authentication and the generation job shared by its files. */
#ifndef MAAS_SERVER_INT_H
#define MAAS_SERVER_INT_H

#include "server/server.h"

#include <microhttpd.h>
#include <pthread.h>
#include <sodium.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

/* ---- routes (http.c) ---- */

struct server;
struct req;                        /* one request in flight (http.c) */

/* Who may call a route when billing is on (without billing every route is
 * open, and the billing_only ones answer 404). */
enum route_caller {
    ROUTE_ANYONE,                  /* no key looked at */
    ROUTE_TENANT,                  /* an account's API key only (the admin key: 403) */
    ROUTE_ANY_KEY,                 /* an account's API key or the admin key */
    ROUTE_ADMIN_KEY,               /* the admin key only (an account's key: 403) */
};

enum route_match { ROUTE_EXACT, ROUTE_PREFIX, ROUTE_PARAM /* prefix + a non-empty rest */ };

#define ROUTE_GET (1u << 0)        /* GET and HEAD */
#define ROUTE_POST (1u << 1)
#define ROUTE_PUT (1u << 2)
#define ROUTE_DELETE (1u << 3)

/* One HTTP route: everything about it is in its entry of srv_routes
 * (http.c); the auth and metrics code read the entry. */
struct route {
    const char *path;              /* NULL: the catch-all for unknown URLs (404) */
    enum route_match match;
    unsigned methods;              /* ROUTE_GET | ...: another method is a 405 at the headers */
    enum route_caller caller;
    bool billing_only;             /* 404 when the server runs without billing */
    const char *admin_refused;     /* ROUTE_TENANT: what the admin key cannot be used for (403 text) */
    const char *label;             /* the metrics' route label */
    /* Answers the request once its body is in; NULL for the catch-all. */
    enum MHD_Result (*handle)(struct server *srv, struct MHD_Connection *c, const struct route *r, struct req *q,
                              const char *url, const char *method);
};

extern const struct route srv_routes[];  /* the catch-all last */
extern const int srv_n_routes;

/* ---- metrics (metrics.c) ---- */

#define METRICS_N_STATUS 12
#define HIST_TTFT_N 13
#define HIST_ITL_N 11

struct hist {
    uint64_t bucket[16];           /* non-cumulative counts, one per bound, then +Inf */
    double sum;
    uint64_t count;
};

struct model_metrics {
    uint64_t requests, prompt_tokens, cached_tokens, completion_tokens;
    struct hist ttft, itl, qwait;  /* qwait: submission to first admission by the engine */
};

struct metrics {
    pthread_mutex_t mu;            /* guards everything below */
    uint64_t (*req)[METRICS_N_STATUS]; /* from calloc: one row per srv_routes entry */
    struct model_metrics *models;  /* from calloc: one per served model */
    int n_models;
};

int metrics_init(struct metrics *mt, int n_models);
void metrics_release(struct metrics *mt);
void metrics_request(struct metrics *mt, const struct route *r, int status);
void metrics_ttft(struct metrics *mt, int model, double seconds);
void metrics_itl(struct metrics *mt, int model, double seconds);
void metrics_queue_wait(struct metrics *mt, int model, double seconds);
void metrics_usage(struct metrics *mt, int model, int n_prompt, int n_cached, int n_completion);
/* The Prometheus text exposition, from malloc (NULL on out of memory). */
char *metrics_render(struct metrics *mt, const struct server *srv, size_t *len);

/* ---- the server ---- */

struct smodel {
    struct server_model cfg;       /* borrowed pointers, as given */
    enum tok_chat_family fam;
    int n_vocab;                   /* ids a request may bias: min(model, tokenizer) */
    int index;                     /* in server.models and metrics.models */
};

struct server {
    struct MHD_Daemon *d;
    struct smodel *models;         /* from calloc, n_models */
    int n_models;
    struct server_opts o;
    struct server_hooks hooks;     /* copy; zeroed when none */
    struct metrics mt;
    int port;
    int64_t started;               /* unix seconds, "created" of the models */
    struct sweeper *sweep;         /* owned (sweep.c), NULL without billing */
    struct front *front;           /* owned (front.c) */
    FILE *access;                  /* the access log (access.c); NULL = none */
    pthread_mutex_t access_mu;     /* one line at a time */
    struct server_hooks access_inner; /* the hooks the access log wraps */
};

/* ---- the front door (front.c) and the request head (head.c) ---- */

#define HEADER_MEMORY (32 * 1024)      /* a request's line and headers must fit in this */

/* Listens on sa and starts the thread that accepts connections, holds them
 * until their request head is whole and sound, and hands them to srv->d
 * (which must run with MHD_USE_NO_LISTEN_SOCKET). Sets srv->front and
 * srv->port. 0, or -1 with *e (srv->front may be set: front_free it). */
int front_start(struct server *srv, const struct sockaddr *sa, socklen_t len, struct err *e);
/* Stops accepting and closes the connections still held. */
void front_stop(struct server *srv);
/* front_stop, then frees srv->front; after MHD_stop_daemon. NULL front: nothing. */
void front_free(struct server *srv);
/* MHD's MHD_OPTION_NOTIFY_CONNECTION callback (cls: the server): a
 * connection MHD closes gives back its place in the counts. */
void front_notify(void *cls, struct MHD_Connection *c, void **socket_context, enum MHD_ConnectionNotificationCode toe);
/* The length of the request head at buf (through the blank line that ends
 * it), or 0 when it has not all arrived. */
size_t srv_head_end(const char *buf, size_t n);
/* Checks the framing of a whole head (n from srv_head_end): 0, or -1 with
 * *err a 400 naming what is wrong (repeated Content-Length, Content-Length
 * with Transfer-Encoding, a length that is not a decimal number, a transfer
 * coding other than chunked, NUL or control bytes, folded or malformed
 * header lines). */
int srv_head_check(const char *head, size_t n, struct oai_error *err);

/* ---- the access log (access.c) ---- */

struct auth_who;

/* One request's line of the access log, filled as the request goes. */
struct access_rec {
    uint64_t t0_ns;                /* its headers arrived (monotonic) */
    int status;                    /* the status answered; 0 = none */
    bool stream;                   /* answered with a stream */
    bool admitted;                 /* admitted for generation: its usage comes at settlement */
    const char *method, *route;    /* borrowed: MHD's method, the route's metrics label */
    char client[64];               /* the client's address */
    char account[BILLING_ID_MAX], key[BILLING_ID_MAX]; /* the key's id ("admin": the admin key), never the key */
    char model[128], request_id[64], finish[16];
    int n_prompt, n_cached, n_completion;
};

/* Opens srv->o.access_log (a path, or "-" for stdout; NULL: nothing) and
 * wraps srv->hooks to learn the admitted requests' usage. 0, or -1 with *e. */
int access_open(struct server *srv, struct err *e);
/* Closes it; nothing when none is open. */
void access_close(struct server *srv);
/* A request's headers have arrived on c: a fresh record. */
void access_begin(struct access_rec *r, struct MHD_Connection *c, const char *method, const char *route);
/* The caller, once authenticated. */
void access_who(struct access_rec *r, const struct auth_who *who);
/* Around a handler: r is the record of the request this thread handles. */
void access_enter(struct access_rec *r);
void access_leave(void);
/* The status answered by the handler of the current record (stream: a
 * 200 whose body follows). Nothing outside access_enter/access_leave. */
void access_status(int status, bool stream);
/* The request is complete: its line, unless a stream's settlement writes it. */
void access_end(struct server *srv, struct access_rec *r);

/* ---- stale holds (sweep.c) ---- */

/* Starts the thread that releases stale holds every recover_every_ms (with
 * billing, unless recover_every_ms < 0). 0, or -1 with *e. */
int sweeper_start(struct server *srv, struct err *e);
/* Stops and joins it; nothing when none runs. */
void sweeper_stop(struct server *srv);

/* ---- who calls (auth.c) ---- */

#define AUTH_KEY_MAX 320               /* longest bearer token looked at (admin keys: 256) */

enum caller { CALLER_NONE, CALLER_TENANT, CALLER_ADMIN };

struct auth_who {
    enum caller caller;                /* NONE: an open route, or billing is off */
    struct billing_key key;            /* CALLER_TENANT: the key (its id and account) */
};

/* Decides whether the Authorization header lets its bearer use route r
 * (by r->caller): 0 with *who filled, or -1 with *err (401, 403; 404 for
 * r->billing_only when the server has no billing). */
int auth_route(struct server *srv, const struct route *r, const char *authorization, struct auth_who *who,
               struct oai_error *err);
/* The admit/settle hooks over srv->o.billing. */
void auth_hooks(struct server *srv, struct server_hooks *out);
/* The answer to a billing refusal (refusal->code ERR_REFUSED, reason an enum
 * billing_reason): fills *err with its HTTP status, OpenAI error type, param
 * and code, the refusal's message, and for a 429 the Retry-After from
 * retry_after (seconds; 0 = waiting will not help). Returns -1. */
int srv_refusal_http(const struct err *refusal, int64_t retry_after, struct oai_error *err);

/* ---- /admin and /v1/usage (admin.c) ---- */

/* The query-string parameters those routes read (borrowed; NULL = absent). */
struct admin_query {
    const char *from, *to, *account, *key, *by;
};

/* Answers an /admin request (the caller holds the admin key). path: the URL
 * after "/admin". Returns the HTTP status (200, 201) with *out the JSON body
 * (from malloc), or -1 with *err (400, 404, 405, 503). */
int admin_handle(struct server *srv, const char *method, const char *path, const struct admin_query *q,
                 const char *body, size_t len, char **out, struct oai_error *err);
/* GET /v1/usage for a tenant key: its own account only. Same returns. */
int admin_usage_for_key(struct server *srv, const struct billing_key *k, const struct admin_query *q, char **out,
                        struct oai_error *err);

/* ---- the web console (console.c) and /v1/me (me.c) ---- */

/* One file of web/, compiled into the program (build/gen/console_web.c,
 * made by scripts/embed_web.sh). */
struct console_file {
    const char *name;              /* "index.html" */
    const unsigned char *data;
    size_t len;
};
extern const struct console_file console_files[];
extern const int console_n_files;

/* Answers status with body (ctype NULL: no Content-Type) and
 * "X-Content-Type-Options: nosniff"; headers: NULL, or name, value, ...,
 * NULL. free_body: body is from malloc and becomes MHD's. */
enum MHD_Result srv_reply(struct server *srv, struct MHD_Connection *c, const struct route *r, int status,
                          const char *ctype, char *body, size_t len, bool free_body, const char *const *headers);
/* The OpenAI-style error e as the answer. */
enum MHD_Result srv_reply_error(struct server *srv, struct MHD_Connection *c, const struct route *r,
                                const struct oai_error *e);
/* The route handlers of /console (a file of web/) and /v1/me. */
enum MHD_Result console_serve(struct server *srv, struct MHD_Connection *c, const struct route *r, struct req *q,
                              const char *url, const char *method);
enum MHD_Result me_serve(struct server *srv, struct MHD_Connection *c, const struct route *r, struct req *q,
                         const char *url, const char *method);

/* ---- /v1/embeddings (embed.c) ---- */

#define SRV_EMBED_MAX_ITEMS 2048

/* A /v1/embeddings body as parsed, before any model is looked at. */
struct emb_item {
    char *text;                    /* from malloc, NUL-terminated (len bytes, may hold NULs), or NULL */
    size_t len;
    int32_t *ids;                  /* from malloc when text is NULL: n_ids >= 1 ids, each >= 0 */
    size_t n_ids;
};
struct emb_body {
    char *model;                   /* from malloc */
    char *user;                    /* from malloc or NULL */
    bool base64;                   /* encoding_format "base64" (else "float") */
    int dimensions;                /* 0 = all, else 1..2^20 (checked against the model later) */
    struct emb_item *items;        /* from calloc: n_items (1..SRV_EMBED_MAX_ITEMS); rerank: the documents */
    int n_items;
    /* /v1/rerank only (srv_rerank_parse): */
    char *query;                   /* from malloc, non-empty; NULL for /v1/embeddings */
    size_t query_len;
    int top_n;                     /* 1..n_items */
    bool return_documents;
};
/* Parses body[0..len): 0 with *out filled, or -1 with *err (400: not a JSON
 * object, no model, an empty or malformed input naming the item, a bad
 * encoding_format, dimensions or user; 500 out of memory) and *out empty
 * but for its model when the body named one. Never crashes on any bytes.
 * Release with srv_embed_body_release. */
int srv_embed_parse(const char *body, size_t len, struct emb_body *out, struct oai_error *err);
void srv_embed_body_release(struct emb_body *b);
/* The same for a /v1/rerank body: {"model", "query" (a non-empty string),
 * "documents" (1..SRV_EMBED_MAX_ITEMS non-empty strings, as items with
 * text), "top_n"? (>= 1; more than the documents means all),
 * "return_documents"? (bool), "user"?}. */
int srv_rerank_parse(const char *body, size_t len, struct emb_body *out, struct oai_error *err);
/* Answers a POST /v1/rerank body as srv_embeddings does: 200 with
 * {"object":"list","model","results":[{"index","relevance_score"
 * [,"document":{"text"}]}...] (best first, top_n of them),"usage"}. */
int srv_rerank(struct server *srv, const char *body, size_t len, const char *auth, char *model_out,
               size_t model_size, char **out, struct oai_error *err);

/* Answers a POST /v1/embeddings body: 200 with *out the JSON response (from
 * malloc), or -1 with *err (400 bad input or a model that does not embed,
 * 404 unknown model, 429 queue full, the admit hook's refusal, 503). The
 * body's model name, when it has one, goes to model_out. */
int srv_embeddings(struct server *srv, const char *body, size_t len, const char *auth, char *model_out,
                   size_t model_size, char **out, struct oai_error *err);

/* ---- one generation request (job.c) ---- */

struct job;

/* Validates the parsed request against model sm, tokenizes it, runs the
 * admit hook and submits it. On success *out owns req (moved; req is
 * emptied). -1 with *err filled (400 context too long, bad logit_bias id,
 * 429/503 queue full, or the hook's refusal); req is then still the
 * caller's. fd: the client's socket, polled for disconnects. */
int job_start(struct server *srv, struct smodel *sm, struct oai_request *req, const char *authorization, int fd,
              struct job **out, struct oai_error *err);
bool job_is_stream(const struct job *j);
/* Non-streaming: waits for the end and returns the response body (from
 * malloc). NULL when the client went away (*status 0) or on an error
 * (*err filled, *status its HTTP status). */
char *job_run_to_end(struct job *j, int *status, struct oai_error *err);
/* Streaming: the MHD content-reader callback and its cleanup. */
ssize_t job_stream_read(void *cls, uint64_t pos, char *buf, size_t max);
void job_free(void *cls);              /* cancels a running sequence, settles, frees */

/* structured.c: the compiled grammar of req->grammar, or of the forced
 * tool call (tool_choice required or named) in the format of tc (the
 * model's split config, NULL when none): a new reference from the cache
 * (drop it with grammar_free), or NULL when the request has none. -1 with
 * a 400 naming req->grammar_param and the position of a GBNF error, the
 * tool whose schema cannot be enforced, or the format that cannot be
 * forced. */
struct tc_config;
int srv_grammar_get(const struct oai_request *req, const struct tc_config *tc, struct grammar **out,
                    struct oai_error *err);

#endif
