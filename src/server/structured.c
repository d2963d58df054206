/*
 * Structured output on the server: a request's GBNF (from response_format
 * or the `grammar` field, see openai.c) compiled into a struct grammar.
 *
 * Compiled grammars are kept in a small cache keyed by their text, shared
 * by every HTTP thread (under cache_mu) and every model: a grammar is
 * immutable apart from its own mask cache, so requests with the same schema
 * share one grammar and each one after the first finds the allowed-token
 * masks already computed. The least recently used entry is dropped when
 * the cache is full (the grammar lives on while sequences hold it).
 */
#include "server/server_int.h"

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

int srv_grammar_get(const struct oai_request *req, struct grammar **out, struct oai_error *err)
{
    *out = NULL;
    if (!req->grammar)
        return 0;
    uint64_t h = hash_bytes(req->grammar, strlen(req->grammar));
    pthread_mutex_lock(&cache_mu);
    struct grammar *g = cache_get(h, req->grammar);
    pthread_mutex_unlock(&cache_mu);
    if (!g) {
        struct err e;
        g = grammar_compile(req->grammar, strlen(req->grammar), &e);
        if (!g) {
            if (e.code == ERR_NOMEM)
                return oai_err(err, 500, "server_error", NULL, NULL, "Out of memory compiling the grammar.");
            return oai_err(err, 400, "invalid_request_error", req->grammar_param, NULL, "Invalid '%s': grammar: %s.",
                           req->grammar_param, e.msg);
        }
        pthread_mutex_lock(&cache_mu);
        cache_put(h, req->grammar, g);
        pthread_mutex_unlock(&cache_mu);
    }
    *out = g;
    return 0;
}
