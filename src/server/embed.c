/*
 * embed.c — POST /v1/embeddings in OpenAI's shape.
 *
 * Request: {"model", "input", "encoding_format"?, "dimensions"?, "user"?}
 * where input is a string, an array of strings, an array of token ids or an
 * array of arrays of token ids. Strings are tokenized with the model's
 * special tokens ([CLS] ... [SEP] for BERT); token ids are taken as given.
 * Response: {"object":"list","data":[{"object":"embedding","index",
 * "embedding"}...],"model","usage":{"prompt_tokens","total_tokens"[,"cost"]}}
 * with each embedding L2-normalised; "dimensions" keeps the first N values
 * and normalises them again (Matryoshka models); "encoding_format":"base64"
 * gives the little-endian float32 bytes in base64.
 *
 * Billing: the request is admitted (hold at the input price for its
 * tokens, no output) and settled through the same hooks as a chat request;
 * the work runs on the model's engine thread (engine_embed), this
 * connection thread only waits.
 */
#include "server/server_int.h"

#include <jansson.h>
#include <math.h>
#include <sodium.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

/* ---- the body (srv_embed_parse: JSON only, no model) ---- */

void srv_embed_body_release(struct emb_body *b)
{
    for (int i = 0; b->items && i < b->n_items; i++) {
        free(b->items[i].text);
        free(b->items[i].ids);
    }
    free(b->items);
    free(b->model);
    free(b->user);
    free(b->query);
    memset(b, 0, sizeof *b);
}

static int bad(struct oai_error *err, const char *param, const char *code, const char *msg)
{
    return oai_err(err, 400, "invalid_request_error", param, code, "%s", msg);
}

static int oom(struct oai_error *err)
{
    return oai_err(err, 500, "server_error", NULL, NULL, "Out of memory.");
}

/* One element of "input": a non-empty string or a non-empty array of ids. */
static int parse_item(json_t *v, const char *where, struct emb_item *it, struct oai_error *err)
{
    char msg[200];
    if (json_is_string(v)) {
        if (json_string_length(v) == 0) {
            snprintf(msg, sizeof msg, "Invalid '%s': empty string.", where);
            return bad(err, "input", NULL, msg);
        }
        it->len = json_string_length(v);
        if (!(it->text = malloc(it->len + 1)))
            return oom(err);
        memcpy(it->text, json_string_value(v), it->len + 1);
        return 0;
    }
    if (!json_is_array(v) || json_array_size(v) == 0) {
        snprintf(msg, sizeof msg, "Invalid '%s': expected a non-empty string or a non-empty array of token ids.",
                 where);
        return bad(err, "input", NULL, msg);
    }
    if (!(it->ids = malloc(json_array_size(v) * sizeof *it->ids)))
        return oom(err);
    size_t k;
    json_t *t;
    json_array_foreach(v, k, t) {
        json_int_t id = json_is_integer(t) ? json_integer_value(t) : -1;
        if (id < 0 || id > INT32_MAX) {
            snprintf(msg, sizeof msg, "Invalid '%s[%zu]': expected a token id (an integer >= 0).", where, k);
            return bad(err, "input", NULL, msg);
        }
        it->ids[it->n_ids++] = (int32_t)id;
    }
    return 0;
}

/* "input": one item (a string, or an array of ids) or a list of them. */
static int parse_input(json_t *in, struct emb_body *b, struct oai_error *err)
{
    if (!in || json_is_null(in) || (json_is_array(in) && json_array_size(in) == 0))
        return bad(err, "input", NULL, "'input' is required and must not be empty.");
    bool list = json_is_array(in) && !json_is_integer(json_array_get(in, 0));
    size_t n = list ? json_array_size(in) : 1;
    if (n > SRV_EMBED_MAX_ITEMS)
        return oai_err(err, 400, "invalid_request_error", "input", NULL, "'input' has %zu items (at most %d).", n,
                       SRV_EMBED_MAX_ITEMS);
    if (!(b->items = calloc(n, sizeof *b->items)))
        return oom(err);
    for (size_t i = 0; i < n; i++) {
        char where[48];
        snprintf(where, sizeof where, list ? "input[%zu]" : "input", i);
        b->n_items = (int)i + 1;
        if (parse_item(list ? json_array_get(in, i) : in, where, &b->items[i], err) < 0)
            return -1;
    }
    return 0;
}

static int parse_options(json_t *root, struct emb_body *b, struct oai_error *err)
{
    json_t *fmt = json_object_get(root, "encoding_format"), *dim = json_object_get(root, "dimensions");
    json_t *user = json_object_get(root, "user");
    if (fmt && !json_is_null(fmt)) {
        const char *f = json_string_value(fmt);
        if (!f || (strcmp(f, "float") && strcmp(f, "base64")))
            return bad(err, "encoding_format", NULL, "Invalid 'encoding_format': expected 'float' or 'base64'.");
        b->base64 = !strcmp(f, "base64");
    }
    if (dim && !json_is_null(dim)) {
        if (!json_is_integer(dim) || json_integer_value(dim) < 1 || json_integer_value(dim) > 1 << 20)
            return bad(err, "dimensions", NULL, "Invalid 'dimensions': expected a positive integer.");
        b->dimensions = (int)json_integer_value(dim);
    }
    if (user && !json_is_null(user)) {
        if (!json_is_string(user))
            return bad(err, "user", NULL, "Invalid 'user': expected a string.");
        if (!(b->user = strdup(json_string_value(user))))
            return oom(err);
    }
    return 0;
}

/* "query", "documents", "top_n", "return_documents" of a /v1/rerank body. */
static int parse_rerank(json_t *root, struct emb_body *b, struct oai_error *err)
{
    json_t *q = json_object_get(root, "query"), *docs = json_object_get(root, "documents");
    json_t *top = json_object_get(root, "top_n"), *ret = json_object_get(root, "return_documents");
    if (!json_is_string(q) || json_string_length(q) == 0)
        return bad(err, "query", NULL, "'query' is required and must be a non-empty string.");
    b->query_len = json_string_length(q);
    if (!(b->query = malloc(b->query_len + 1)))
        return oom(err);
    memcpy(b->query, json_string_value(q), b->query_len + 1);
    if (!json_is_array(docs) || json_array_size(docs) == 0)
        return bad(err, "documents", NULL, "'documents' is required and must be a non-empty array of strings.");
    size_t n = json_array_size(docs);
    if (n > SRV_EMBED_MAX_ITEMS)
        return oai_err(err, 400, "invalid_request_error", "documents", NULL, "'documents' has %zu items (at most %d).",
                       n, SRV_EMBED_MAX_ITEMS);
    if (!(b->items = calloc(n, sizeof *b->items)))
        return oom(err);
    for (size_t i = 0; i < n; i++) {
        json_t *d = json_array_get(docs, i);
        char where[48];
        snprintf(where, sizeof where, "documents[%zu]", i);
        b->n_items = (int)i + 1;
        if (!json_is_string(d))
            return oai_err(err, 400, "invalid_request_error", "documents", NULL, "Invalid '%s': expected a string.",
                           where);
        if (parse_item(d, where, &b->items[i], err) < 0) {
            snprintf(err->param, sizeof err->param, "documents");
            return -1;
        }
    }
    b->top_n = b->n_items;
    if (top && !json_is_null(top)) {
        if (!json_is_integer(top) || json_integer_value(top) < 1)
            return bad(err, "top_n", NULL, "Invalid 'top_n': expected a positive integer.");
        if (json_integer_value(top) < b->n_items)
            b->top_n = (int)json_integer_value(top);
    }
    if (ret && !json_is_null(ret)) {
        if (!json_is_boolean(ret))
            return bad(err, "return_documents", NULL, "Invalid 'return_documents': expected a boolean.");
        b->return_documents = json_is_true(ret);
    }
    return 0;
}

/* The body of either route: the model, then the route's own fields. */
static int parse_body(const char *body, size_t len, bool rerank, struct emb_body *out, struct oai_error *err)
{
    json_error_t je;
    memset(out, 0, sizeof *out);
    json_t *root = json_loadb(body ? body : "", len, 0, &je);
    int rc = -1;
    const char *name = json_string_value(json_object_get(root, "model"));
    if (!root || !json_is_object(root))
        oai_err(err, 400, "invalid_request_error", NULL, NULL, "The body is not a JSON object: %s",
                root ? "another JSON value" : je.text);
    else if (!name)
        bad(err, "model", NULL, "'model' is required and must be a string.");
    else if (!(out->model = strdup(name)))
        oom(err);
    else if (rerank ? parse_rerank(root, out, err) == 0 && parse_options(root, out, err) == 0
                    : parse_input(json_object_get(root, "input"), out, err) == 0 && parse_options(root, out, err) == 0)
        rc = 0;
    json_decref(root);
    if (rc < 0) {
        char *model = out->model; /* kept for the access log */
        out->model = NULL;
        srv_embed_body_release(out);
        out->model = model;
    }
    return rc;
}

int srv_embed_parse(const char *body, size_t len, struct emb_body *out, struct oai_error *err)
{
    return parse_body(body, len, false, out, err);
}

int srv_rerank_parse(const char *body, size_t len, struct emb_body *out, struct oai_error *err)
{
    return parse_body(body, len, true, out, err);
}

/* ---- against the model ---- */

/* The model named by the body: found, and one for embeddings (rerank:
 * a reranker, pooling rank). */
static struct smodel *emb_model(struct server *srv, const char *name, bool rerank, struct oai_error *err)
{
    for (int i = 0; i < srv->n_models; i++) {
        struct smodel *sm = &srv->models[i];
        if (strcmp(sm->cfg.name, name))
            continue;
        const struct model_hparams *hp = model_hparams(sm->cfg.m);
        if (!model_is_embedding(sm->cfg.m))
            return oai_err(err, 400, "invalid_request_error", "model", "model_not_embedding",
                           "The model '%.200s' is not an embedding model (no pooling_type; use it for chat).", name),
                   NULL;
        if (rerank && hp->pooling != MODEL_POOL_RANK)
            return oai_err(err, 400, "invalid_request_error", "model", "model_not_reranker",
                           "The model '%.200s' is not a reranker (its pooling is '%s', not 'rank').", name,
                           model_pooling_name(hp->pooling)),
                   NULL;
        if (!rerank && hp->pooling != MODEL_POOL_MEAN && hp->pooling != MODEL_POOL_CLS &&
            hp->pooling != MODEL_POOL_LAST)
            return oai_err(err, 400, "invalid_request_error", "model", "unsupported_pooling",
                           "The model '%.200s' pools by '%s', which /v1/embeddings does not serve.", name,
                           model_pooling_name(hp->pooling)),
                   NULL;
        return sm;
    }
    return oai_err(err, 404, "invalid_request_error", "model", "model_not_found",
                   "The model '%.200s' does not exist or you do not have access to it.", name),
           NULL;
}

/* A reranker's input: [CLS] query [SEP] document [SEP] (the query with
 * the model's special tokens, the document after it, then EOS/SEP). */
static int emb_pair(const struct smodel *sm, const struct emb_body *b, const struct emb_item *doc,
                    struct tok_ids *out, struct err *e)
{
    const struct tokenizer *t = sm->cfg.tok;
    if (tok_encode(t, b->query, b->query_len, true, false, out, e) < 0 ||
        tok_encode(t, doc->text, doc->len, false, false, out, e) < 0)
        return -1;
    return tok_eos(t) >= 0 ? tok_ids_push(out, tok_eos(t), e) : 0;
}

/* The inputs' tokens (strings tokenized with the model's special tokens),
 * each within the vocabulary and the longest input a pass takes. */
static int emb_tokens(const struct smodel *sm, const struct emb_body *b, struct tok_ids *in, int64_t *n_tokens,
                      struct oai_error *err)
{
    int max = engine_embed_max_tokens(sm->cfg.eng);
    struct err e;
    *n_tokens = 0;
    for (int i = 0; i < b->n_items; i++) {
        const struct emb_item *it = &b->items[i];
        char where[48];
        snprintf(where, sizeof where, b->query ? "documents[%d]" : b->n_items > 1 ? "input[%d]" : "input", i);
        if (b->query && emb_pair(sm, b, it, &in[i], &e) < 0)
            return oai_err(err, 400, "invalid_request_error", "documents", NULL, "Invalid 'documents[%d]': %s", i,
                           e.msg);
        if (!b->query && it->text && tok_encode(sm->cfg.tok, it->text, it->len, true, false, &in[i], &e) < 0)
            return oai_err(err, 400, "invalid_request_error", "input", NULL, "Invalid '%s': %s", where, e.msg);
        for (size_t k = 0; !it->text && k < it->n_ids; k++) {
            if (it->ids[k] >= sm->n_vocab)
                return oai_err(err, 400, "invalid_request_error", "input", NULL,
                               "Invalid '%s[%zu]': token id %d is outside the vocabulary (0..%d).", where, k,
                               (int)it->ids[k], sm->n_vocab - 1);
            if (tok_ids_push(&in[i], it->ids[k], &e) < 0)
                return oom(err);
        }
        if (in[i].n > (size_t)max)
            return oai_err(err, 400, "invalid_request_error", b->query ? "documents" : "input",
                           "context_length_exceeded", "Invalid '%s': %zu tokens%s, more than this model's maximum of %d "
                           "per input.", where, in[i].n, b->query ? " with the query" : "", max);
        *n_tokens += (int64_t)in[i].n;
    }
    return 0;
}

/* One vector, truncated to dims and normalised again when dims < n. */
static json_t *vec_json(float *v, int n, int dims, bool base64)
{
    if (dims > 0 && dims < n) {
        double s = 0;
        for (int d = 0; d < dims; d++)
            s += (double)v[d] * v[d];
        for (int d = 0; s > 0 && d < dims; d++)
            v[d] = (float)(v[d] / sqrt(s));
        n = dims;
    }
    if (base64) {
        size_t blen = sodium_base64_encoded_len((size_t)n * 4, sodium_base64_VARIANT_ORIGINAL);
        char *b = malloc(blen);
        if (!b)
            return NULL;
        sodium_bin2base64(b, blen, (const unsigned char *)v, (size_t)n * 4, sodium_base64_VARIANT_ORIGINAL);
        json_t *s = json_string(b);
        free(b);
        return s;
    }
    json_t *a = json_array();
    for (int d = 0; a && d < n; d++)
        if (json_array_append_new(a, json_real(v[d])) < 0) {
            json_decref(a);
            return NULL;
        }
    return a;
}

static char *emb_response(const struct emb_body *r, int64_t n_tokens, float *out, int n_embd,
                          const struct oai_usage *u)
{
    json_t *data = json_array();
    for (int i = 0; data && i < r->n_items; i++) {
        json_t *item = json_pack("{s:s,s:i,s:o*}", "object", "embedding", "index", i, "embedding",
                                 vec_json(out + (size_t)i * n_embd, n_embd, r->dimensions, r->base64));
        if (!item || json_array_append_new(data, item) < 0) {
            json_decref(data);
            data = NULL;
        }
    }
    json_t *usage = json_pack("{s:I,s:I}", "prompt_tokens", (json_int_t)n_tokens, "total_tokens",
                              (json_int_t)n_tokens);
    if (usage && u->cost[0])
        json_object_set_new(usage, "cost", json_string(u->cost));
    json_t *o = json_pack("{s:s,s:o*,s:s%,s:o*}", "object", "list", "data", data, "model", r->model, strlen(r->model),
                          "usage", usage);
    char *text = o ? json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(9)) : NULL;
    json_decref(o);
    return text;
}

static atomic_uint_fast64_t emb_counter;

/* Admission, the engine, settlement; 0 with out filled and u's cost. */
static int emb_run(struct server *srv, struct smodel *sm, const struct emb_body *r, const struct tok_ids *in,
                   int64_t n_tokens, const char *auth, float *out, struct oai_usage *u, struct oai_error *err)
{
    char id[64];
    struct timespec wall;
    clock_gettime(CLOCK_REALTIME, &wall);
    uint64_t rnd;
    randombytes_buf(&rnd, sizeof rnd);
    snprintf(id, sizeof id, "%s-%012llx%016llx", r->query ? "rrnk" : "embd",
             (unsigned long long)(((uint64_t)wall.tv_sec * 1000 + (uint64_t)wall.tv_nsec / 1000000) & 0xffffffffffffULL),
             (unsigned long long)(rnd ^ atomic_fetch_add(&emb_counter, 1)));
    void *hook_ctx = NULL;
    struct server_sched sched = {{0}, 0};
    if (srv->hooks.admit) {
        struct server_admit_info a = {id, auth, r->model, r->user, OAI_EMBEDDING, (int)n_tokens, 0, &sched};
        if (srv->hooks.admit(srv->hooks.ctx, &a, &hook_ctx, err) < 0)
            return -1;
    }
    const int32_t **seqs = malloc((size_t)r->n_items * sizeof *seqs);
    int *lens = malloc((size_t)r->n_items * sizeof *lens);
    struct err e = {0};
    double compute_s = 0;
    int rc = -1;
    if (!seqs || !lens) {
        err_set(&e, ERR_NOMEM, "out of memory");
    } else {
        for (int i = 0; i < r->n_items; i++)
            seqs[i] = in[i].ids, lens[i] = (int)in[i].n;
        struct engine_embed_request er = {r->n_items, seqs, lens};
        rc = engine_embed(sm->cfg.eng, &er, out, &compute_s, &e);
    }
    free(seqs);
    free(lens);
    if (rc < 0 && e.code == ERR_EXHAUSTED)
        oai_err(err, 429, "rate_limit_exceeded", NULL, "queue_full", "The server is busy: %s", e.msg);
    else if (rc < 0)
        oai_err(err, e.code == ERR_INVALID ? 400 : 503, e.code == ERR_INVALID ? "invalid_request_error" : "server_error",
                e.code == ERR_INVALID ? "input" : NULL, NULL, "The embeddings could not be computed: %s", e.msg);
    if (srv->hooks.settle) {
        struct server_settle_info s = {id, r->model, rc < 0 ? 0 : (int)n_tokens, 0, 0, rc < 0 ? "error" : "stop",
                                       u->cost, sizeof u->cost, (int64_t)(compute_s * 1e6)};
        if (srv->hooks.settle(srv->hooks.ctx, hook_ctx, &s) < 0 && rc == 0) {
            u->cost[0] = 0;
            return oai_err(err, 503, "server_error", NULL, "billing_unavailable",
                           "The usage could not be recorded; the result is withheld. Please retry.");
        }
    }
    return rc;
}

struct scored {
    int index;
    float score;
};

static int by_score(const void *a, const void *b)
{
    const struct scored *x = a, *y = b;
    if (x->score != y->score)
        return x->score > y->score ? -1 : 1;
    return x->index - y->index;
}

static char *rerank_response(const struct emb_body *b, int64_t n_tokens, const float *scores,
                             const struct oai_usage *u)
{
    struct scored *sc = malloc((size_t)b->n_items * sizeof *sc);
    if (!sc)
        return NULL;
    for (int i = 0; i < b->n_items; i++)
        sc[i] = (struct scored){i, scores[i]};
    qsort(sc, (size_t)b->n_items, sizeof *sc, by_score);
    json_t *res = json_array();
    for (int k = 0; res && k < b->top_n; k++) {
        const struct emb_item *d = &b->items[sc[k].index];
        json_t *item = json_pack("{s:i,s:f}", "index", sc[k].index, "relevance_score", (double)sc[k].score);
        if (item && b->return_documents)
            json_object_set_new(item, "document", json_pack("{s:s%}", "text", d->text, d->len));
        if (!item || json_array_append_new(res, item) < 0) {
            json_decref(res);
            res = NULL;
        }
    }
    free(sc);
    json_t *usage = json_pack("{s:I,s:I}", "prompt_tokens", (json_int_t)n_tokens, "total_tokens", (json_int_t)n_tokens);
    if (usage && u->cost[0])
        json_object_set_new(usage, "cost", json_string(u->cost));
    json_t *o = json_pack("{s:s,s:s%,s:o*,s:o*}", "object", "list", "model", b->model, strlen(b->model), "results", res,
                          "usage", usage);
    char *text = o ? json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(9)) : NULL;
    json_decref(o);
    return text;
}

/* One /v1/embeddings (rank false) or /v1/rerank (rank true) request: parse,
 * choose the model, tokenize, run on the engine (billed), answer. Each
 * input gets n_embd floats, or one score when ranking. The HTTP status, or
 * -1 with err. */
static int emb_serve(struct server *srv, bool rank, const char *body, size_t len, const char *auth, char *model_out,
                     size_t model_size, char **out, struct oai_error *err)
{
    struct emb_body b;
    struct oai_usage u = {0};
    struct tok_ids *in = NULL;
    float *res = NULL;
    int64_t n_tokens = 0;
    int status = -1;
    int rc = rank ? srv_rerank_parse(body, len, &b, err) : srv_embed_parse(body, len, &b, err);
    if (b.model)
        snprintf(model_out, model_size, "%s", b.model);
    struct smodel *sm = rc == 0 ? emb_model(srv, b.model, rank, err) : NULL;
    if (!sm)
        goto out;
    int n_embd = model_hparams(sm->cfg.m)->n_embd;
    if (!rank && b.dimensions > n_embd) {
        oai_err(err, 400, "invalid_request_error", "dimensions", NULL,
                "Invalid 'dimensions': %d is more than the model's %d.", b.dimensions, n_embd);
        goto out;
    }
    in = calloc((size_t)b.n_items, sizeof *in);
    res = malloc((size_t)b.n_items * (size_t)(rank ? 1 : n_embd) * sizeof *res);
    if (!in || !res) {
        oom(err);
        goto out;
    }
    if (emb_tokens(sm, &b, in, &n_tokens, err) < 0 || emb_run(srv, sm, &b, in, n_tokens, auth, res, &u, err) < 0)
        goto out;
    metrics_usage(&srv->mt, sm->index, (int)n_tokens, 0, 0);
    *out = rank ? rerank_response(&b, n_tokens, res, &u) : emb_response(&b, n_tokens, res, n_embd, &u);
    if (!*out) {
        oom(err);
        goto out;
    }
    status = 200;
out:
    for (int i = 0; in && i < b.n_items; i++)
        tok_ids_release(&in[i]);
    free(in);
    free(res);
    srv_embed_body_release(&b);
    return status;
}

int srv_embeddings(struct server *srv, const char *body, size_t len, const char *auth, char *model_out,
                   size_t model_size, char **out, struct oai_error *err)
{
    return emb_serve(srv, false, body, len, auth, model_out, model_size, out, err);
}

int srv_rerank(struct server *srv, const char *body, size_t len, const char *auth, char *model_out,
               size_t model_size, char **out, struct oai_error *err)
{
    return emb_serve(srv, true, body, len, auth, model_out, model_size, out, err);
}
