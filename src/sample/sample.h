/*
 * sample — turns one row of logits into a token.
 *
 * A struct sampler owns scratch sized for one vocabulary (allocated once, by
 * sampler_new), so sampling allocates nothing per token. The caller owns
 * everything else: the parameters, the sequence's previous tokens (for the
 * penalties) and the sequence's random generator (struct rng from core.h),
 * which makes the output reproducible from a seed.
 *
 * The pipeline, in order (each step only if enabled):
 *   1. logit bias            l[t] += bias[t]
 *      allowed tokens        l[t] = -inf for t not in the allowed bitset (when
 *                            given: structured output's grammar mask), so
 *                            greedy decoding and every later step respect it
 *   2. repetition penalty    for t seen in the last penalty_last_n tokens:
 *                            l[t] = l[t] > 0 ? l[t] / r : l[t] * r  (CTRL)
 *   3. presence / frequency  l[t] -= presence * (count[t] > 0) + frequency * count[t]
 *                            (OpenAI's definition, over the same window)
 *   4. temperature           l[t] /= T; T == 0 means greedy (argmax, lowest id on ties)
 *   5. logprobs              log-softmax of the logits after step 4 (after 3 when
 *                            T == 0): the chosen token's and the top N alternatives'
 *   6. top-k                 keep the k largest (0 = off)
 *   7. top-p                 keep the smallest most-probable prefix whose
 *                            renormalised mass reaches p (1 = off)
 *   8. min-p                 keep tokens with prob >= min_p * max prob (0 = off)
 *   9. draw                  from the renormalised survivors with the rng.
 * Steps 6-8 each keep a prefix of the tokens sorted by probability, so their
 * result is the shortest of the three prefixes.
 */
#ifndef MAAS_SAMPLE_H
#define MAAS_SAMPLE_H

#include "core/core.h"

#include <stdbool.h>
#include <stdint.h>

#define SAMPLE_MAX_TOP 20 /* most alternatives returned (OpenAI's top_logprobs limit) */

struct sample_bias {
    int32_t token;
    float bias;
};

struct sample_params {
    float temperature;        /* 0 = greedy */
    int top_k;                /* 0 = off */
    float top_p;              /* 1 = off */
    float min_p;              /* 0 = off */
    float repeat_penalty;     /* 1 = off */
    float presence_penalty;   /* 0 = off */
    float frequency_penalty;  /* 0 = off */
    int penalty_last_n;       /* window of previous tokens the penalties see; -1 = all */
    const struct sample_bias *bias; /* borrowed; n_bias entries; tokens out of range are ignored */
    int n_bias;
    int n_top_logprobs;       /* alternatives to report, 0..SAMPLE_MAX_TOP */
    const uint32_t *allowed;  /* borrowed; NULL = every token; else bit t of word t/32 set when token t
                                 may be sampled ((n_vocab + 31) / 32 words). At least one token must be
                                 allowed; the result is always an allowed token. */
};

struct sample_logprob {
    int32_t id;
    float logprob;            /* natural log */
};

struct sample_result {
    int32_t token;
    float logprob;            /* of the chosen token, see step 5 */
    int n_top;                /* entries in top, most probable first */
    struct sample_logprob top[SAMPLE_MAX_TOP];
};

/* Defaults: temperature 1, every filter and penalty off, no logprobs. */
struct sample_params sample_params_default(void);

/* Checks ranges (temperature >= 0, top_p in (0,1], min_p in [0,1], penalties
 * finite, repeat_penalty > 0, n_top_logprobs in 0..SAMPLE_MAX_TOP). -1 with a
 * message naming the parameter. */
int sample_params_check(const struct sample_params *p, struct err *e);

struct sampler;

/* Scratch for a vocabulary of n_vocab tokens. NULL with a reason on failure. */
struct sampler *sampler_new(int n_vocab, struct err *e);
void sampler_free(struct sampler *s); /* NULL does nothing */

/* Samples from one row of n_vocab logits (not modified). prev: the sequence's
 * tokens so far (prompt and generated), n_prev of them (tokens out of range
 * are ignored). rng is advanced only when temperature > 0. Parameters must
 * have passed sample_params_check. Writes *out. */
void sampler_sample(struct sampler *s, const float *logits, const struct sample_params *p, const int32_t *prev,
                    int n_prev, struct rng *rng, struct sample_result *out);

#endif
