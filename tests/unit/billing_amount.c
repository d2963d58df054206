/* billing: amount parsing and formatting, the cost rule, time parsing. */
#include "billing/billing.h"
#include "test.h"

static int64_t parse_ok(const char *s)
{
    struct err e;
    int64_t v = -12345;
    int rc = amount_parse(s, 0, &v, &e);
    CHECKF(rc == 0, "'%s': %s", s, e.msg);
    return v;
}

TEST(amount_parse_accepts)
{
    CHECK(parse_ok("10") == 10000000);
    CHECK(parse_ok("0.25") == 250000);
    CHECK(parse_ok("0.000001") == 1);
    CHECK(parse_ok("0") == 0);
    CHECK(parse_ok("007.5") == 7500000);
    CHECK(parse_ok("1.100000") == 1100000);
    CHECK(parse_ok("9223372036854.775807") == INT64_MAX);
    struct err e;
    int64_t v;
    CHECK(amount_parse("-5", 1, &v, &e) == 0 && v == -5000000);
    CHECK(amount_parse("-0.000001", 1, &v, &e) == 0 && v == -1);
}

TEST(amount_parse_rejects)
{
    static const char *bad[] = {"",     "1e3",  "-5",    "0.0000001", "abc",  "+5",  "1.",     ".5",
                                " 1",   "1 ",   "1,5",   "0x10",      "1.2.3", "--1", "NaN",    "inf",
                                "1e-3", "9223372036855", "9223372036854.775808", "99999999999999999999", "-",
                                "1.-5", "½"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        struct err e = {0};
        int64_t v = 777;
        CHECKF(amount_parse(bad[i], 0, &v, &e) == -1, "'%s' accepted as %lld", bad[i], (long long)v);
        CHECK(v == 777); /* out-parameter untouched on failure */
        CHECKF(e.msg[0] && !strchr(e.msg, '\n'), "'%s'", bad[i]);
    }
    struct err e;
    int64_t v;
    CHECK(amount_parse(NULL, 0, &v, &e) == -1);
    CHECK(amount_parse("-", 1, &v, &e) == -1);
    CHECK(amount_parse("-.5", 1, &v, &e) == -1);
}

TEST(amount_format_round_trip)
{
    char buf[32];
    CHECK(!strcmp(amount_format(10000000, buf, sizeof buf), "10"));
    CHECK(!strcmp(amount_format(250000, buf, sizeof buf), "0.25"));
    CHECK(!strcmp(amount_format(1, buf, sizeof buf), "0.000001"));
    CHECK(!strcmp(amount_format(0, buf, sizeof buf), "0"));
    CHECK(!strcmp(amount_format(-1500000, buf, sizeof buf), "-1.5"));
    CHECK(!strcmp(amount_format(INT64_MAX, buf, sizeof buf), "9223372036854.775807"));
    CHECK(!strcmp(amount_format(INT64_MIN, buf, sizeof buf), "-9223372036854.775808"));
    /* format -> parse is the identity on a spread of values */
    struct rng r;
    rng_seed(&r, 7);
    for (int i = 0; i < 20000; i++) {
        int64_t v = (int64_t)(rng_u64(&r) >> (rng_u64(&r) % 63 + 1));
        if (i & 1)
            v = -v;
        struct err e;
        int64_t back = 0;
        amount_format(v, buf, sizeof buf);
        CHECKF(amount_parse(buf, 1, &back, &e) == 0 && back == v, "%lld -> %s -> %lld", (long long)v, buf,
               (long long)back);
    }
}

TEST(cost_rounding)
{
    /* 1 token at 0.5 micro-units per token = 0.5 micro -> rounds half up to 1 */
    CHECK(billing_cost(1, 0, 0, 500000, 0, 0) == 1);
    CHECK(billing_cost(1, 0, 0, 499999, 0, 0) == 0);
    CHECK(billing_cost(1, 0, 0, 1500000, 0, 0) == 2);
    CHECK(billing_cost(0, 0, 0, 123, 456, 789) == 0);
    /* 1000 prompt (200 cached) + 500 completion at 3 / 1.5 / 15 units per Mtok:
     * 800*3e6 + 200*1.5e6 + 500*15e6 = 2.4e9 + 3e8 + 7.5e9 = 1.02e10 micro*tok / 1e6 = 10200 */
    CHECK(billing_cost(1000, 200, 500, 3000000, 1500000, 15000000) == 10200);
    /* 7 tokens at 0.1 micro per token: 0.7 -> 1; 2 tokens: 0.2 -> 0; 5: 0.5 -> 1 */
    CHECK(billing_cost(7, 0, 0, 100000, 0, 0) == 1);
    CHECK(billing_cost(2, 0, 0, 100000, 0, 0) == 0);
    CHECK(billing_cost(5, 0, 0, 100000, 0, 0) == 1);
    /* huge values do not overflow (128-bit intermediate) */
    CHECK(billing_cost(INT64_C(1) << 40, 0, INT64_C(1) << 40, INT64_C(1) << 40, 0, INT64_C(1) << 40) ==
          (int64_t)(((unsigned __int128)1 << 81) / 1000000 + (((unsigned __int128)1 << 81) % 1000000 >= 500000)));
    /* worst case >= any actual cost within the admitted counts */
    struct rng r;
    rng_seed(&r, 11);
    for (int i = 0; i < 5000; i++) {
        int64_t pin = (int64_t)(rng_u64(&r) % 20000000), pc = (int64_t)(rng_u64(&r) % 20000000),
                pout = (int64_t)(rng_u64(&r) % 60000000);
        int64_t prompt = (int64_t)(rng_u64(&r) % 100000), maxt = (int64_t)(rng_u64(&r) % 10000);
        int64_t cached = prompt ? (int64_t)(rng_u64(&r) % (uint64_t)(prompt + 1)) : 0;
        int64_t comp = maxt ? (int64_t)(rng_u64(&r) % (uint64_t)(maxt + 1)) : 0;
        CHECK(billing_cost(prompt, cached, comp, pin, pc, pout) <= billing_worst_cost(prompt, maxt, pin, pc, pout));
    }
}

TEST(time_parse_cases)
{
    struct err e;
    int64_t t = 0;
    CHECK(time_parse("1970-01-01", &t, &e) == 0 && t == 0);
    CHECK(time_parse("2024-02-29", &t, &e) == 0 && t == 1709164800);
    CHECK(time_parse("2024-02-29T12:00:00Z", &t, &e) == 0 && t == 1709164800 + 43200);
    CHECK(time_parse("2024-02-29 12:30", &t, &e) == 0 && t == 1709164800 + 45000);
    CHECK(time_parse("1700000000", &t, &e) == 0 && t == 1700000000);
    static const char *bad[] = {"", "2023-02-29", "2024-13-01", "2024-1-1", "yesterday", "2024-01-01T25:00",
                                "2024-01-01X", "2024-01-01T10:00:00+02:00", "-5", "1e9", "2024-00-10",
                                "2024-01-32", "2024-01-01T10:60"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        int64_t v = 99;
        CHECKF(time_parse(bad[i], &v, &e) == -1 && v == 99, "'%s' accepted", bad[i]);
    }
    char buf[32];
    CHECK(!strcmp(time_format_day(1709164800 + 86399, buf, sizeof buf), "2024-02-29"));
    CHECK(!strcmp(time_format(1709164800 + 45000, buf, sizeof buf), "2024-02-29T12:30:00Z"));
}

int main(void)
{
    RUN(amount_parse_accepts);
    RUN(amount_parse_rejects);
    RUN(amount_format_round_trip);
    RUN(cost_rounding);
    RUN(time_parse_cases);
    TEST_END();
}
