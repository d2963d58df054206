/*
 * Amounts, costs and times: the exact integer arithmetic of money, and the
 * strict parsers that keep bad input out (this is the edge: CLI arguments and
 * later HTTP query strings come through here).
 */
#include "billing/billing.h"

#include <ctype.h>
#include <string.h>
#include <time.h>

int amount_parse(const char *s, int allow_negative, int64_t *out, struct err *e)
{
    const char *p = s;
    int neg = 0;
    if (!s || !*s)
        return err_set(e, ERR_INVALID, "amount is empty");
    if (*p == '-') {
        if (!allow_negative)
            return err_set(e, ERR_INVALID, "amount '%s': must not be negative", s);
        neg = 1;
        p++;
    }
    if (!isdigit((unsigned char)*p))
        return err_set(e, ERR_INVALID, "amount '%s': expected a decimal number such as 10, 0.25 or 0.000001", s);
    uint64_t units = 0;
    for (; isdigit((unsigned char)*p); p++) {
        units = units * 10 + (uint64_t)(*p - '0');
        if (units > (uint64_t)(INT64_MAX / BILLING_MICRO))
            return err_set(e, ERR_INVALID, "amount '%s': too large", s);
    }
    uint64_t frac = 0;
    int n_frac = 0;
    if (*p == '.') {
        p++;
        for (; isdigit((unsigned char)*p); p++) {
            if (++n_frac > 6)
                return err_set(e, ERR_INVALID, "amount '%s': more than 6 decimals (the smallest unit is 0.000001)", s);
            frac = frac * 10 + (uint64_t)(*p - '0');
        }
        if (n_frac == 0)
            return err_set(e, ERR_INVALID, "amount '%s': expected digits after the decimal point", s);
    }
    if (*p)
        return err_set(e, ERR_INVALID, "amount '%s': expected a decimal number such as 10, 0.25 or 0.000001", s);
    for (int i = n_frac; i < 6; i++)
        frac *= 10;
    uint64_t v = units * (uint64_t)BILLING_MICRO + frac;
    if (v > (uint64_t)INT64_MAX)
        return err_set(e, ERR_INVALID, "amount '%s': too large", s);
    *out = neg ? -(int64_t)v : (int64_t)v;
    return 0;
}

char *amount_format(int64_t micro, char *buf, size_t n)
{
    /* Work in unsigned so INT64_MIN has a magnitude too. */
    uint64_t mag = micro < 0 ? (uint64_t)0 - (uint64_t)micro : (uint64_t)micro;
    uint64_t units = mag / (uint64_t)BILLING_MICRO, frac = mag % (uint64_t)BILLING_MICRO;
    if (frac == 0) {
        snprintf(buf, n, "%s%llu", micro < 0 ? "-" : "", (unsigned long long)units);
        return buf;
    }
    char f[8];
    snprintf(f, sizeof f, "%06llu", (unsigned long long)frac);
    for (int i = 5; i > 0 && f[i] == '0'; i--)
        f[i] = '\0';
    snprintf(buf, n, "%s%llu.%s", micro < 0 ? "-" : "", (unsigned long long)units, f);
    return buf;
}

/* round half up of x / 1e6 for x >= 0, saturating at INT64_MAX */
static int64_t round_micro(unsigned __int128 x)
{
    unsigned __int128 q = (x + (unsigned __int128)(BILLING_MICRO / 2)) / (unsigned __int128)BILLING_MICRO;
    return q > (unsigned __int128)INT64_MAX ? INT64_MAX : (int64_t)q;
}

int64_t billing_cost(int64_t prompt, int64_t cached, int64_t completion, int64_t price_input,
                     int64_t price_cached, int64_t price_output)
{
    MAAS_ASSERT(prompt >= 0 && cached >= 0 && cached <= prompt && completion >= 0);
    MAAS_ASSERT(price_input >= 0 && price_cached >= 0 && price_output >= 0);
    unsigned __int128 x = (unsigned __int128)(uint64_t)(prompt - cached) * (uint64_t)price_input +
                          (unsigned __int128)(uint64_t)cached * (uint64_t)price_cached +
                          (unsigned __int128)(uint64_t)completion * (uint64_t)price_output;
    return round_micro(x);
}

int64_t billing_worst_cost(int64_t prompt, int64_t max_tokens, int64_t price_input, int64_t price_cached,
                           int64_t price_output)
{
    int64_t in = price_input > price_cached ? price_input : price_cached;
    return billing_cost(prompt, 0, max_tokens, in, 0, price_output);
}

/* ---- times (UTC) ---- */

static int digits(const char *p, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (!isdigit((unsigned char)p[i]))
            return -1;
        v = v * 10 + (p[i] - '0');
    }
    *out = v;
    return 0;
}

int time_parse(const char *s, int64_t *out, struct err *e)
{
    static const char *what = "expected YYYY-MM-DD, YYYY-MM-DDTHH:MM[:SS][Z] or Unix seconds";
    if (!s || !*s)
        return err_set(e, ERR_INVALID, "time is empty (%s)", what);
    size_t len = strlen(s);
    size_t i = 0;
    while (i < len && isdigit((unsigned char)s[i]))
        i++;
    if (i == len) {
        if (len > 12)
            return err_set(e, ERR_INVALID, "time '%s': out of range", s);
        *out = strtoll(s, NULL, 10);
        return 0;
    }
    int Y, M, D, h = 0, m = 0, sec = 0;
    if (len < 10 || digits(s, 4, &Y) || s[4] != '-' || digits(s + 5, 2, &M) || s[7] != '-' ||
        digits(s + 8, 2, &D))
        return err_set(e, ERR_INVALID, "time '%s': %s", s, what);
    const char *p = s + 10;
    if (*p) {
        if ((*p != 'T' && *p != ' ') || strlen(p) < 6 || digits(p + 1, 2, &h) || p[3] != ':' ||
            digits(p + 4, 2, &m))
            return err_set(e, ERR_INVALID, "time '%s': %s", s, what);
        p += 6;
        if (*p == ':') {
            if (digits(p + 1, 2, &sec) || strlen(p) < 3)
                return err_set(e, ERR_INVALID, "time '%s': %s", s, what);
            p += 3;
        }
        if (*p == 'Z')
            p++;
        if (*p)
            return err_set(e, ERR_INVALID, "time '%s': %s", s, what);
    }
    if (Y < 1970 || Y > 9999 || M < 1 || M > 12 || D < 1 || D > 31 || h > 23 || m > 59 || sec > 59)
        return err_set(e, ERR_INVALID, "time '%s': out of range", s);
    struct tm tm = {.tm_year = Y - 1900, .tm_mon = M - 1, .tm_mday = D, .tm_hour = h, .tm_min = m, .tm_sec = sec};
    time_t t = timegm(&tm);
    struct tm back;
    gmtime_r(&t, &back);
    if (back.tm_mday != D || back.tm_mon != M - 1)
        return err_set(e, ERR_NOT_FOUND, "time '%s': no such date", s);
    *out = (int64_t)t;
    return 0;
}

char *time_format_day(int64_t t, char *buf, size_t n)
{
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    snprintf(buf, n, "%04d-%02d-%02d", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday);
    return buf;
}

char *time_format(int64_t t, char *buf, size_t n)
{
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    snprintf(buf, n, "%04d-%02d-%02dT%02d:%02d:%02dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
             tm.tm_min, tm.tm_sec);
    return buf;
}
