/*
 * sbuf.c — the growable byte string and array growth of core.h.
 *
 * Growth is geometric (doubling from 64 bytes), so n appends cost O(n)
 * copies. A failed allocation never loses what the buffer held: the old
 * memory stays, and the sticky failed flag turns later appends into no-ops
 * so that a caller building a long response checks once at the end.
 */
#include "core.h"

#include <stdint.h>
#include <string.h>

void sbuf_init(struct sbuf *b)
{
    b->buf = NULL;
    b->len = b->cap = 0;
    b->failed = false;
}

void sbuf_release(struct sbuf *b)
{
    free(b->buf);
    sbuf_init(b);
}

void sbuf_reset(struct sbuf *b)
{
    b->len = 0;
    b->failed = false;
    if (b->buf)
        b->buf[0] = 0;
}

int sbuf_grow(struct sbuf *b, size_t extra)
{
    if (b->failed)
        return -1;
    if (extra > SIZE_MAX - 1 - b->len) {
        b->failed = true;
        return -1;
    }
    size_t need = b->len + extra + 1;
    if (need <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    char *p = realloc(b->buf, cap);
    if (!p) {
        b->failed = true;
        return -1;
    }
    b->buf = p;
    b->cap = cap;
    return 0;
}

int sbuf_add(struct sbuf *b, const void *p, size_t n)
{
    if (sbuf_grow(b, n) < 0)
        return -1;
    if (n)
        memcpy(b->buf + b->len, p, n);
    b->len += n;
    b->buf[b->len] = 0;
    return 0;
}

int sbuf_addstr(struct sbuf *b, const char *s)
{
    return sbuf_add(b, s, strlen(s));
}

int sbuf_addch(struct sbuf *b, int c)
{
    char ch = (char)c;
    return sbuf_add(b, &ch, 1);
}

int sbuf_vaddf(struct sbuf *b, const char *fmt, va_list ap)
{
    if (b->failed)
        return -1;
    va_list ap2;
    va_copy(ap2, ap);
    char small[256];
    int n = vsnprintf(small, sizeof small, fmt, ap2);
    va_end(ap2);
    if (n < 0) {
        b->failed = true;
        return -1;
    }
    if ((size_t)n < sizeof small)
        return sbuf_add(b, small, (size_t)n);
    if (sbuf_grow(b, (size_t)n) < 0)
        return -1;
    vsnprintf(b->buf + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
    return 0;
}

int sbuf_addf(struct sbuf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = sbuf_vaddf(b, fmt, ap);
    va_end(ap);
    return rc;
}

char *sbuf_detach(struct sbuf *b, size_t *len)
{
    if (b->failed || (!b->buf && sbuf_grow(b, 0) < 0)) {
        sbuf_release(b);
        return NULL;
    }
    b->buf[b->len] = 0;
    char *s = b->buf;
    if (len)
        *len = b->len;
    sbuf_init(b);
    return s;
}

int mem_grow(void *pp, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    size_t c = *cap ? *cap : 8;
    while (c < need) {
        if (c > SIZE_MAX / 2)
            return -1;
        c *= 2;
    }
    if (elem && c > SIZE_MAX / elem)
        return -1;
    void **slot = pp;
    void *p = realloc(*slot, c * elem);
    if (!p)
        return -1;
    *slot = p;
    *cap = c;
    return 0;
}
