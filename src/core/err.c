/* Errors (a code and one line of text, always with context) and logging. */
#include "core.h"

#include <string.h>
#include <time.h>

static int err_vset(struct err *e, enum err_code code, int reason, const char *fmt, va_list ap)
{
    if (!e)
        return -1;
    e->code = code;
    e->reason = reason;
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    return -1;
}

int err_set(struct err *e, enum err_code code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    err_vset(e, code, 0, fmt, ap);
    va_end(ap);
    return -1;
}

int err_refuse(struct err *e, int reason, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    err_vset(e, ERR_REFUSED, reason, fmt, ap);
    va_end(ap);
    return -1;
}

int err_prefix(struct err *e, const char *fmt, ...)
{
    if (!e)
        return -1;
    char pre[MAAS_ERR_MAX], old[MAAS_ERR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(pre, sizeof pre, fmt, ap);
    va_end(ap);
    memcpy(old, e->msg, sizeof old);
    snprintf(e->msg, sizeof e->msg, "%s: %s", pre, old);
    if (e->code == ERR_OK) /* a message written by hand: still a failure */
        e->code = ERR_INTERNAL;
    return -1;
}

void err_clear(struct err *e)
{
    if (!e)
        return;
    e->code = ERR_OK;
    e->reason = 0;
    e->msg[0] = 0;
}

const char *err_code_name(enum err_code code)
{
    static const char *const names[ERR_CODE_COUNT] = {
        [ERR_OK] = "ok",           [ERR_INTERNAL] = "internal",       [ERR_INVALID] = "invalid",
        [ERR_NOT_FOUND] = "not_found", [ERR_EXHAUSTED] = "exhausted", [ERR_UNAVAILABLE] = "unavailable",
        [ERR_REFUSED] = "refused", [ERR_IO] = "io",                   [ERR_CORRUPT] = "corrupt",
        [ERR_NOMEM] = "nomem",
    };
    return (unsigned)code < ERR_CODE_COUNT ? names[code] : "unknown";
}

static void vlog(const char *level, const char *fmt, va_list ap)
{
    char buf[2048];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s ", tm.tm_year + 1900,
                     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000, level);
    vsnprintf(buf + n, sizeof buf - (size_t)n, fmt, ap);
    /* One write per line so that lines from several threads do not interleave. */
    fprintf(stderr, "%s\n", buf);
}

void log_info(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vlog("info", fmt, ap);
    va_end(ap);
}

void log_warn(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vlog("warn", fmt, ap);
    va_end(ap);
}

void log_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vlog("error", fmt, ap);
    va_end(ap);
}
