/*
 * metrics.c — counters and histograms for /metrics, in Prometheus' text
 * exposition format (version 0.0.4). One mutex guards them all: updates
 * are a few additions per request or token, far below anything that could
 * contend. Engine gauges (queue, running, KV blocks) are read from
 * engine_get_stats at render time.
 */
#include "server/server_int.h"

#include <stddef.h>
#include <string.h>

static const int status_codes[METRICS_N_STATUS] = {200, 400, 401, 402, 403, 404, 405, 413, 429, 500, 503, 0};

static const double ttft_bounds[HIST_TTFT_N] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                                 1,     2.5,  5,     10,   30,  60};
static const double itl_bounds[HIST_ITL_N] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5};

int metrics_init(struct metrics *mt, int n_models)
{
    memset(mt, 0, sizeof *mt);
    mt->req = calloc((size_t)srv_n_routes, sizeof *mt->req);
    mt->models = calloc((size_t)n_models, sizeof *mt->models);
    if (!mt->req || !mt->models) {
        free(mt->req);
        free(mt->models);
        mt->req = NULL;
        mt->models = NULL;
        return -1;
    }
    mt->n_models = n_models;
    pthread_mutex_init(&mt->mu, NULL);
    return 0;
}

void metrics_release(struct metrics *mt)
{
    if (!mt->models)
        return;
    pthread_mutex_destroy(&mt->mu);
    free(mt->models);
    free(mt->req);
    mt->models = NULL;
    mt->req = NULL;
}

void metrics_request(struct metrics *mt, const struct route *r, int status)
{
    int k = METRICS_N_STATUS - 1; /* "other" */
    for (int i = 0; i < METRICS_N_STATUS - 1; i++)
        if (status_codes[i] == status)
            k = i;
    pthread_mutex_lock(&mt->mu);
    mt->req[r - srv_routes][k]++;
    pthread_mutex_unlock(&mt->mu);
}

static void hist_add(struct hist *h, const double *bounds, int n, double x)
{
    int i = 0;
    while (i < n && x > bounds[i])
        i++;
    h->bucket[i]++;
    h->sum += x;
    h->count++;
}

void metrics_ttft(struct metrics *mt, int model, double seconds)
{
    pthread_mutex_lock(&mt->mu);
    hist_add(&mt->models[model].ttft, ttft_bounds, HIST_TTFT_N, seconds);
    pthread_mutex_unlock(&mt->mu);
}

void metrics_itl(struct metrics *mt, int model, double seconds)
{
    pthread_mutex_lock(&mt->mu);
    hist_add(&mt->models[model].itl, itl_bounds, HIST_ITL_N, seconds);
    pthread_mutex_unlock(&mt->mu);
}

void metrics_queue_wait(struct metrics *mt, int model, double seconds)
{
    pthread_mutex_lock(&mt->mu);
    hist_add(&mt->models[model].qwait, ttft_bounds, HIST_TTFT_N, seconds);
    pthread_mutex_unlock(&mt->mu);
}

void metrics_usage(struct metrics *mt, int model, int n_prompt, int n_cached, int n_completion)
{
    pthread_mutex_lock(&mt->mu);
    struct model_metrics *m = &mt->models[model];
    m->requests++;
    m->prompt_tokens += (uint64_t)n_prompt;
    m->cached_tokens += (uint64_t)n_cached;
    m->completion_tokens += (uint64_t)n_completion;
    pthread_mutex_unlock(&mt->mu);
}

/* ---- rendering ---- */

/* A label value: valid UTF-8 with \, " and newline escaped. */
static char *label_value(const char *s)
{
    size_t n;
    char *u = oai_utf8_sanitize(s, strlen(s), &n);
    if (!u)
        return NULL;
    char *o = malloc(n * 2 + 1);
    if (o) {
        size_t at = 0;
        for (size_t i = 0; i < n; i++) {
            if (u[i] == '\\' || u[i] == '"')
                o[at++] = '\\', o[at++] = u[i];
            else if (u[i] == '\n')
                o[at++] = '\\', o[at++] = 'n';
            else
                o[at++] = u[i];
        }
        o[at] = 0;
    }
    free(u);
    return o;
}

static void render_hist(struct sbuf *o, const char *name, const char *model, const struct hist *h,
                        const double *bounds, int n)
{
    uint64_t cum = 0;
    for (int i = 0; i < n; i++) {
        cum += h->bucket[i];
        sbuf_addf(o, "%s_bucket{model=\"%s\",le=\"%g\"} %llu\n", name, model, bounds[i], (unsigned long long)cum);
    }
    cum += h->bucket[n];
    sbuf_addf(o, "%s_bucket{model=\"%s\",le=\"+Inf\"} %llu\n", name, model, (unsigned long long)cum);
    sbuf_addf(o, "%s_sum{model=\"%s\"} %.9g\n", name, model, h->sum);
    sbuf_addf(o, "%s_count{model=\"%s\"} %llu\n", name, model, (unsigned long long)h->count);
}

/* One histogram family, a series per model; itl picks the inter-token
 * latencies instead of the times to first token. */
static void render_hist_family(struct sbuf *o, const char *name, const char *help, char **labels,
                               const struct model_metrics *snap, int nm, bool itl)
{
    sbuf_addf(o, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    for (int i = 0; i < nm; i++)
        render_hist(o, name, labels[i], itl ? &snap[i].itl : &snap[i].ttft, itl ? itl_bounds : ttft_bounds,
                    itl ? HIST_ITL_N : HIST_TTFT_N);
}

/* maas_http_requests_total, a series per route and status seen. */
static void render_requests(struct sbuf *o, uint64_t (*req)[METRICS_N_STATUS])
{
    sbuf_addf(o, "# HELP maas_http_requests_total HTTP requests answered, by route and status code.\n"
                 "# TYPE maas_http_requests_total counter\n");
    for (int r = 0; r < srv_n_routes; r++)
        for (int k = 0; k < METRICS_N_STATUS; k++)
            if (req[r][k]) {
                char code[16];
                if (status_codes[k])
                    snprintf(code, sizeof code, "%d", status_codes[k]);
                else
                    snprintf(code, sizeof code, "other");
                sbuf_addf(o, "maas_http_requests_total{route=\"%s\",status=\"%s\"} %llu\n", srv_routes[r].label,
                          code, (unsigned long long)req[r][k]);
            }
}

/* The per-model counters and gauges: a value of struct model_metrics
 * (uint64_t) or of struct engine_stats (int or uint64_t), at off. */
enum series_src { SRC_METRICS, SRC_ENGINE_INT, SRC_ENGINE_U64 };
struct series {
    const char *name, *type, *help;
    size_t off;
    enum series_src src;
};
#define MM(f) offsetof(struct model_metrics, f), SRC_METRICS
#define EI(f) offsetof(struct engine_stats, f), SRC_ENGINE_INT
#define EU(f) offsetof(struct engine_stats, f), SRC_ENGINE_U64
static const struct series series[] = {
    {"maas_generation_requests_total", "counter", "Generation requests finished.", MM(requests)},
    {"maas_prompt_tokens_total", "counter", "Prompt tokens of finished requests.", MM(prompt_tokens)},
    {"maas_cached_tokens_total", "counter", "Prompt tokens served from the prefix cache.", MM(cached_tokens)},
    {"maas_completion_tokens_total", "counter", "Tokens generated.", MM(completion_tokens)},
    {"maas_queue_length", "gauge", "Requests waiting for admission.", EI(queued)},
    {"maas_running_sequences", "gauge", "Sequences admitted and not finished.", EI(running)},
    {"maas_kv_blocks", "gauge", "KV cache blocks in all.", EI(kv_blocks_total)},
    {"maas_kv_blocks_used", "gauge", "KV cache blocks in use.", EI(kv_blocks_used)},
    {"maas_kv_blocks_free", "gauge", "KV cache blocks free.", EI(kv_blocks_free)},
    {"maas_kv_blocks_cached", "gauge", "KV cache blocks held only by the prefix cache.", EI(kv_blocks_cached)},
    {"maas_engine_steps_total", "counter", "Scheduler steps run.", EU(steps)},
    {"maas_engine_preemptions_total", "counter", "Sequences preempted.", EU(preemptions)},
};
#undef MM
#undef EI
#undef EU

static void render_series(struct sbuf *o, const struct series *s, char **labels, const struct model_metrics *snap,
                          const struct engine_stats *st, int nm)
{
    sbuf_addf(o, "# HELP %s %s\n# TYPE %s %s\n", s->name, s->help, s->name, s->type);
    for (int i = 0; i < nm; i++) {
        const char *p = s->src == SRC_METRICS ? (const char *)&snap[i] : (const char *)&st[i];
        unsigned long long v;
        if (s->src == SRC_ENGINE_INT) {
            int x;
            memcpy(&x, p + s->off, sizeof x);
            v = (unsigned long long)x;
        } else {
            uint64_t x;
            memcpy(&x, p + s->off, sizeof x);
            v = (unsigned long long)x;
        }
        sbuf_addf(o, "%s{model=\"%s\"} %llu\n", s->name, labels[i], v);
    }
}

char *metrics_render(struct metrics *mt, const struct server *srv, size_t *len)
{
    struct sbuf o = SBUF_INIT;
    int nm = srv->n_models;
    char **labels = calloc((size_t)nm, sizeof *labels);
    struct engine_stats *st = calloc((size_t)nm, sizeof *st);
    struct model_metrics *snap = calloc((size_t)nm, sizeof *snap);
    uint64_t(*req)[METRICS_N_STATUS] = calloc((size_t)srv_n_routes, sizeof *req);
    char *ret = NULL;
    if (!labels || !st || !snap || !req)
        goto out;
    for (int i = 0; i < nm; i++) {
        if (!(labels[i] = label_value(srv->models[i].cfg.name)))
            goto out;
        engine_get_stats(srv->models[i].cfg.eng, &st[i]);
    }
    pthread_mutex_lock(&mt->mu);
    memcpy(req, mt->req, (size_t)srv_n_routes * sizeof *req);
    memcpy(snap, mt->models, (size_t)nm * sizeof *snap);
    pthread_mutex_unlock(&mt->mu);

    render_requests(&o, req);
    for (size_t k = 0; k < sizeof series / sizeof series[0]; k++)
        render_series(&o, &series[k], labels, snap, st, nm);
    sbuf_addf(&o, "# HELP maas_compute_seconds_total Core-seconds the engine spent in steps (wall time x threads).\n"
                  "# TYPE maas_compute_seconds_total counter\n");
    for (int i = 0; i < nm; i++)
        sbuf_addf(&o, "maas_compute_seconds_total{model=\"%s\"} %.6f\n", labels[i], st[i].busy_core_s);
    sbuf_addf(&o, "# HELP maas_account_queue_length Requests waiting, for the accounts with the most waiting "
                  "(at most %d per model; account \"-\": requests without one).\n"
                  "# TYPE maas_account_queue_length gauge\n",
              ENGINE_TOP_ACCOUNTS);
    for (int i = 0; i < nm; i++)
        for (int k = 0; k < st[i].n_top; k++) {
            char *acct = label_value(st[i].top[k].account[0] ? st[i].top[k].account : "-");
            if (acct)
                sbuf_addf(&o, "maas_account_queue_length{model=\"%s\",account=\"%s\"} %d\n", labels[i], acct,
                          st[i].top[k].queued);
            free(acct);
        }

    render_hist_family(&o, "maas_time_to_first_token_seconds", "Time from submission to the first generated token.",
                       labels, snap, nm, false);
    sbuf_addf(&o, "# HELP maas_queue_wait_seconds Time from submission to admission by the engine's scheduler.\n"
                  "# TYPE maas_queue_wait_seconds histogram\n");
    for (int i = 0; i < nm; i++)
        render_hist(&o, "maas_queue_wait_seconds", labels[i], &snap[i].qwait, ttft_bounds, HIST_TTFT_N);
    render_hist_family(&o, "maas_inter_token_latency_seconds",
                       "Time between consecutive generated tokens of a request.", labels, snap, nm, true);
    ret = sbuf_detach(&o, len);
out:
    sbuf_release(&o);
    if (labels)
        for (int i = 0; i < nm; i++)
            free(labels[i]);
    free(labels);
    free(st);
    free(snap);
    free(req);
    return ret;
}
