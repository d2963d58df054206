/* server: every billing refusal's HTTP answer (refusal.c), pinned to the
 * bytes clients have always received: status, OpenAI error type, param, code
 * and message in the JSON body, and the Retry-After of a 429. */
#include "server/server_int.h"
#include "test.h"

struct want {
    int reason;
    int64_t retry_after;
    int status;
    int retry_header;
    const char *body;
};

static const struct want wants[] = {
    {BILLING_KEY_UNKNOWN, 0, 401, 0,
     "{\"error\":{\"message\":\"why\",\"type\":\"invalid_request_error\",\"param\":null,\"code\":\"invalid_api_key\"}}"},
    {BILLING_KEY_REVOKED, 0, 401, 0,
     "{\"error\":{\"message\":\"why\",\"type\":\"invalid_request_error\",\"param\":null,\"code\":\"invalid_api_key\"}}"},
    {BILLING_KEY_EXPIRED, 0, 401, 0,
     "{\"error\":{\"message\":\"why\",\"type\":\"invalid_request_error\",\"param\":null,\"code\":\"invalid_api_key\"}}"},
    {BILLING_MODEL_NOT_ALLOWED, 0, 403, 0,
     "{\"error\":{\"message\":\"why\",\"type\":\"permission_error\",\"param\":\"model\",\"code\":\"model_not_allowed\"}}"},
    {BILLING_MODEL_NOT_PRICED, 0, 403, 0,
     "{\"error\":{\"message\":\"why\",\"type\":\"permission_error\",\"param\":\"model\",\"code\":\"model_not_priced\"}}"},
    {BILLING_RATE_LIMITED, 40, 429, 40,
     "{\"error\":{\"message\":\"why\",\"type\":\"rate_limit_error\",\"param\":null,\"code\":\"rate_limit_exceeded\"}}"},
    {BILLING_RATE_LIMITED, 0, 429, 3600,
     "{\"error\":{\"message\":\"why\",\"type\":\"rate_limit_error\",\"param\":null,\"code\":\"rate_limit_exceeded\"}}"},
    {BILLING_BUDGET_EXCEEDED, 200000, 429, 86400,
     "{\"error\":{\"message\":\"why\",\"type\":\"rate_limit_error\",\"param\":null,\"code\":\"budget_exceeded\"}}"},
    {BILLING_INSUFFICIENT, 0, 402, 0,
     "{\"error\":{\"message\":\"why\",\"type\":\"insufficient_quota\",\"param\":null,\"code\":\"insufficient_quota\"}}"},
};

TEST(every_reason_answers_as_before)
{
    for (size_t i = 0; i < sizeof wants / sizeof *wants; i++) {
        const struct want *w = &wants[i];
        struct err e;
        err_refuse(&e, w->reason, "why");
        struct oai_error o;
        memset(&o, 0, sizeof o);
        CHECK(srv_refusal_http(&e, w->retry_after, &o) == -1);
        CHECKF(o.status == w->status, "reason %d: status %d", w->reason, o.status);
        CHECKF(o.retry_after == w->retry_header, "reason %d: retry-after %d", w->reason, o.retry_after);
        char *body = oai_build_error(&o);
        CHECKF(body && !strcmp(body, w->body), "reason %d: %s", w->reason, body ? body : "(null)");
        free(body);
    }
}

int main(void)
{
    RUN(every_reason_answers_as_before);
    TEST_END();
}
