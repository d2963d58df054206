/*
 * parse.c — checked parsing of whole strings into numbers: the one place
 * command-line options, admin arguments and configuration values are turned
 * into integers and decimals. A value is accepted only if all of it parses,
 * without overflow, inside the caller's range.
 */
#include "core.h"

#include <errno.h>
#include <math.h>

int parse_i64(const char *s, int64_t lo, int64_t hi, int64_t *out)
{
    if (!s || !*s || *s == ' ' || *s == '\t' || *s == '\n')
        return -1;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

int parse_f64(const char *s, double lo, double hi, double *out)
{
    if (!s || !*s || *s == ' ' || *s == '\t' || *s == '\n')
        return -1;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || *end || !isfinite(v) || !(v >= lo && v <= hi))
        return -1;
    *out = v;
    return 0;
}

int arg_i64(const char *what, const char *s, int64_t lo, int64_t hi, int64_t *out, struct err *e)
{
    if (parse_i64(s, lo, hi, out) < 0)
        return err_set(e, ERR_INVALID, "%s: '%s' is not an integer in [%lld, %lld]", what, s ? s : "",
                       (long long)lo, (long long)hi);
    return 0;
}

int arg_int(const char *what, const char *s, int lo, int hi, int *out, struct err *e)
{
    int64_t v = 0;
    int rc = arg_i64(what, s, lo, hi, &v, e);
    *out = rc == 0 ? (int)v : *out;
    return rc;
}

int arg_f64(const char *what, const char *s, double lo, double hi, double *out, struct err *e)
{
    if (parse_f64(s, lo, hi, out) < 0)
        return err_set(e, ERR_INVALID, "%s: '%s' is not a number in [%g, %g]", what, s ? s : "", lo, hi);
    return 0;
}

int arg_float(const char *what, const char *s, double lo, double hi, float *out, struct err *e)
{
    double v;
    if (arg_f64(what, s, lo, hi, &v, e) < 0)
        return -1;
    *out = (float)v;
    return 0;
}
