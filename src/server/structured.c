/*
 * Structured output on the server: a request's GBNF (from response_format
 * or the `grammar` field, see openai.c), or the grammar of a forced tool
 * call (toolgrammar.c), or with tool_choice "auto" the lazy grammar of a
 * call the model starts (inactive until the format's call marker appears
 * in the output), compiled into a struct grammar.
 *
 * Compiled grammars are kept in a small cache keyed by their text, shared
 * by every HTTP thread (under cache_mu) and every model: a grammar is
 * immutable apart from its own mask cache, so requests with the same schema
 * share one grammar and each one after the first finds the allowed-token
 * masks already computed. The least recently used entry is dropped when
 * the cache is full (the grammar lives on while sequences hold it).
 */
#include "server/server_int.h"

#include "server/oai_tools.h"
#include "server/toolcall.h"

#include <jansson.h>

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define GCACHE_N 16

static struct {
    uint64_t hash;
    char *text;               /* from malloc */
    struct grammar *g;        /* one reference */
    uint64_t used;
} gcache[GCACHE_N];
static uint64_t gcache_clock;
static pthread_mutex_t cache_mu = PTHREAD_MUTEX_INITIALIZER;

/* A cached grammar for text (a new reference), or NULL. Under cache_mu. */
static struct grammar *cache_get(uint64_t h, const char *text)
{
    for (int i = 0; i < GCACHE_N; i++)
        if (gcache[i].g && gcache[i].hash == h && !strcmp(gcache[i].text, text)) {
            gcache[i].used = ++gcache_clock;
            return grammar_ref(gcache[i].g);
        }
    return NULL;
}

/* Keeps g (takes a reference) under text, evicting the oldest. Under cache_mu. */
static void cache_put(uint64_t h, const char *text, struct grammar *g)
{
    int v = 0;
    for (int i = 0; i < GCACHE_N; i++) {
        if (!gcache[i].g) {
            v = i;
            break;
        }
        if (gcache[i].used < gcache[v].used)
            v = i;
    }
    char *t = strdup(text);
    if (!t)
        return;
    free(gcache[v].text);
    grammar_free(gcache[v].g);
    gcache[v].hash = h;
    gcache[v].text = t;
    gcache[v].g = grammar_ref(g);
    gcache[v].used = ++gcache_clock;
}

/* The GBNF that forces the request's call in the model's format (tc: its
 * config, NULL when the template defines none). */
static int forced_gbnf(const struct oai_request *req, const struct tc_config *tc, char **out, struct oai_error *err)
{
    if (req->grammar)
        return oai_err(err, 400, "invalid_request_error", req->grammar_param, NULL, "Invalid '%s': a forced "
                       "'tool_choice' already constrains the output; give one or the other.", req->grammar_param);
    if (!tc || tc->fmt == TC_NONE || !tc->calls)
        return oai_err(err, 400, "invalid_request_error", "tool_choice", NULL, "Invalid 'tool_choice': it forces a "
                       "tool call, but the model's chat template defines no tool-call format this server knows.");
    if (!tc_forcible(tc->fmt))
        return oai_err(err, 400, "invalid_request_error", "tool_choice", NULL, "Unsupported value: 'tool_choice' "
                       "forces a tool call, which this server cannot constrain in the model's '%s' tool-call format "
                       "yet (use 'auto').", tc_format_name(tc->fmt));
    json_t *vars = json_loads(req->chat_vars ? req->chat_vars : "{}", 0, NULL);
    int bad;
    struct err e;
    *out = tc_forced_gbnf(tc, json_object_get(vars, "tools"),
                          req->tool_choice == OAI_TOOL_NAMED ? req->tool_choice_name : NULL, req->parallel_tool_calls,
                          &bad, &e);
    json_decref(vars);
    if (*out)
        return 0;
    if (e.code == ERR_NOMEM)
        return oai_err(err, 500, "server_error", NULL, NULL, "Out of memory.");
    if (bad >= 0)
        return oai_err(err, 400, "invalid_request_error", "tools", NULL,
                       "Invalid 'tools[%d].function.parameters': a forced call cannot enforce it: %s.", bad, e.msg);
    return oai_err(err, 400, "invalid_request_error", "tool_choice", NULL, "Invalid 'tool_choice': %s.", e.msg);
}

/* tool_choice "auto" with tools: the lazy grammar of a call the model
 * starts, when the format can be constrained (tc_forcible) and every
 * tool's schema enforced; else *out stays NULL and calls are only parsed.
 * -1 only on out of memory. */
static int auto_gbnf(const struct oai_request *req, const struct tc_config *tc, char **out,
                     struct grammar_trigger *trig, struct oai_error *err)
{
    *out = NULL;
    if (req->grammar || req->n_tools <= 0 || req->tool_choice != OAI_TOOL_AUTO || !tc || tc->fmt == TC_NONE ||
        !tc->calls || !tc_forcible(tc->fmt))
        return 0;
    json_t *vars = json_loads(req->chat_vars ? req->chat_vars : "{}", 0, NULL);
    int bad;
    struct err e;
    *out = tc_auto_gbnf(tc, json_object_get(vars, "tools"), req->parallel_tool_calls, trig, &bad, &e);
    json_decref(vars);
    if (!*out && e.code == ERR_NOMEM)
        return oai_err(err, 500, "server_error", NULL, NULL, "Out of memory.");
    if (!*out)
        log_info("tool_choice auto: calls are parsed, not constrained: %s", e.msg);
    return 0;
}

/* text compiled into *out; for a tool call, the format's markers allowed
 * as control tokens, and the trigger of a lazy (auto) grammar. A lazy
 * grammar that does not compile (a schema pattern the compiler refuses)
 * leaves *out NULL: the calls are only parsed, as for a schema it cannot
 * enforce. */
static int compile(const char *text, const struct tc_config *tc, bool calls, const struct grammar_trigger *trig,
                   const char *param, struct grammar **out, struct oai_error *err)
{
    struct err e;
    const char *marks[8];
    struct grammar *g = grammar_compile(text, strlen(text), &e);
    if (g && ((calls && grammar_allow_control(g, marks, tc_forced_markers(tc, marks), &e) < 0) ||
              (trig && grammar_set_trigger(g, trig, &e) < 0))) {
        grammar_free(g);
        g = NULL;
    }
    *out = g;
    if (g)
        return 0;
    if (e.code == ERR_NOMEM)
        return oai_err(err, 500, "server_error", NULL, NULL, "Out of memory compiling the grammar.");
    if (trig) {
        log_info("tool_choice auto: calls are parsed, not constrained: %s", e.msg);
        return 0;
    }
    return oai_err(err, 400, "invalid_request_error", param, NULL, "Invalid '%s': grammar: %s.", param, e.msg);
}

int srv_grammar_get(const struct oai_request *req, const struct tc_config *tc, struct grammar **out,
                    struct oai_error *err)
{
    *out = NULL;
    bool forced = oai_tools_forced(req);
    char *own = NULL;
    struct grammar_trigger trig;
    if (forced ? forced_gbnf(req, tc, &own, err) < 0 : auto_gbnf(req, tc, &own, &trig, err) < 0)
        return -1;
    bool lazy = !forced && own;
    const char *text = own ? own : req->grammar;
    if (!text)
        return 0;
    uint64_t h = hash_bytes(text, strlen(text));
    pthread_mutex_lock(&cache_mu);
    struct grammar *g = cache_get(h, text);
    pthread_mutex_unlock(&cache_mu);
    int rc = 0;
    if (!g && (rc = compile(text, tc, own != NULL, lazy ? &trig : NULL, own ? "tools" : req->grammar_param, &g, err)) == 0 &&
        g) {
        pthread_mutex_lock(&cache_mu);
        cache_put(h, text, g);
        pthread_mutex_unlock(&cache_mu);
    }
    free(own);
    *out = g;
    return rc;
}
