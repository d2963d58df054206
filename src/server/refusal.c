/*
 * refusal.c — the one place where a billing refusal becomes an HTTP answer.
 * Billing says why it refused (enum billing_reason); this table says what
 * OpenAI's API answers for that: the status, the error type, the parameter at
 * fault and the error code. Adding a reason to billing adds a row here.
 */
#include "server/server_int.h"

struct refusal_http {
    int status;
    const char *type;
    const char *param; /* NULL = null */
    const char *code;
};

static const struct refusal_http refusals[] = {
    [BILLING_KEY_UNKNOWN] = {401, "invalid_request_error", NULL, "invalid_api_key"},
    [BILLING_KEY_REVOKED] = {401, "invalid_request_error", NULL, "invalid_api_key"},
    [BILLING_KEY_EXPIRED] = {401, "invalid_request_error", NULL, "invalid_api_key"},
    [BILLING_MODEL_NOT_ALLOWED] = {403, "permission_error", "model", "model_not_allowed"},
    [BILLING_MODEL_NOT_PRICED] = {403, "permission_error", "model", "model_not_priced"},
    [BILLING_RATE_LIMITED] = {429, "rate_limit_error", NULL, "rate_limit_exceeded"},
    [BILLING_BUDGET_EXCEEDED] = {429, "rate_limit_error", NULL, "budget_exceeded"},
    [BILLING_INSUFFICIENT] = {402, "insufficient_quota", NULL, "insufficient_quota"},
};

int srv_refusal_http(const struct err *refusal, int64_t retry_after, struct oai_error *err)
{
    MAAS_ASSERT(refusal->code == ERR_REFUSED && refusal->reason > 0 &&
                (size_t)refusal->reason < sizeof refusals / sizeof *refusals && refusals[refusal->reason].type);
    const struct refusal_http *h = &refusals[refusal->reason];
    oai_err(err, h->status, h->type, h->param, h->code, "%s", refusal->msg);
    if (h->status == 429)
        /* 0 means that waiting will not help (a total budget): say an hour */
        err->retry_after = retry_after > 0 ? (int)(retry_after < 86400 ? retry_after : 86400) : 3600;
    return -1;
}
