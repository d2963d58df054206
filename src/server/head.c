/*
 * head.c — the framing checks on a request head (request line + header
 * lines, up to the blank line), made by the front door (front.c) before
 * libmicrohttpd sees a byte of the request. RFC 9112 §6.3 asks a server to
 * refuse, with a 400 and by closing the connection, whatever two parsers
 * could frame differently: a repeated Content-Length, one with
 * Transfer-Encoding, a length that is not a plain decimal number, a transfer
 * coding other than chunked; and header values with NUL or control bytes,
 * folded lines or a blank before the colon (§5.1, §5.2).
 *
 * Pure functions on bytes; no thread of their own.
 */
#include "server/server_int.h"

#include <string.h>
#include <strings.h>

size_t srv_head_end(const char *buf, size_t n)
{
    size_t i = 0;
    while (i < n && (buf[i] == '\r' || buf[i] == '\n')) /* blank lines before the request line (§2.2) */
        i++;
    for (; i < n; i++) {
        if (buf[i] != '\n')
            continue;
        if (i + 1 < n && buf[i + 1] == '\n')
            return i + 2;
        if (i + 2 < n && buf[i + 1] == '\r' && buf[i + 2] == '\n')
            return i + 3;
    }
    return 0;
}

static int bad(struct oai_error *err, const char *fmt, const char *what, size_t len)
{
    char shown[64];
    size_t k = 0;
    for (size_t i = 0; i < len && k + 5 < sizeof shown; i++) { /* printable, or \xNN */
        unsigned char ch = (unsigned char)what[i];
        if (ch >= 0x20 && ch < 0x7f && ch != '\'' && ch != '\\')
            shown[k++] = (char)ch;
        else
            k += (size_t)snprintf(shown + k, sizeof shown - k, "\\x%02x", ch);
    }
    shown[k] = 0;
    oai_err(err, 400, "invalid_request_error", NULL, "bad_request_framing", fmt, shown);
    return -1;
}

/* Whether the header name [p, p+n) is name (case-insensitive). */
static bool is_name(const char *p, size_t n, const char *name)
{
    return n == strlen(name) && !strncasecmp(p, name, n);
}

/* The value [v, v+n) without its surrounding blanks. */
static void trim(const char **v, size_t *n)
{
    while (*n && (**v == ' ' || **v == '\t'))
        (*v)++, (*n)--;
    while (*n && ((*v)[*n - 1] == ' ' || (*v)[*n - 1] == '\t'))
        (*n)--;
}

struct framing {
    int n_length, n_coding;
};

/* One header line [p, p+n) (without its line end): 0, or -1 with *err. */
static int check_line(const char *p, size_t n, struct framing *f, struct oai_error *err)
{
    if (p[0] == ' ' || p[0] == '\t')
        return bad(err, "A header line starts with a blank (obsolete line folding): '%s'.", p, n);
    const char *colon = memchr(p, ':', n);
    if (!colon || colon == p)
        return bad(err, "A header line has no name and colon: '%s'.", p, n);
    size_t name_len = (size_t)(colon - p);
    for (size_t i = 0; i < name_len; i++)
        if ((unsigned char)p[i] <= ' ' || p[i] == 0x7f)
            return bad(err, "The header name '%s' has a blank or a control byte.", p, name_len);
    const char *v = colon + 1;
    size_t vn = n - name_len - 1;
    for (size_t i = 0; i < vn; i++) {
        unsigned char ch = (unsigned char)v[i];
        if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
            return bad(err, "The value of header '%s' has a NUL or control byte.", p, name_len);
    }
    trim(&v, &vn);
    if (is_name(p, name_len, "Content-Length")) {
        if (++f->n_length > 1)
            return bad(err, "Content-Length is given more than once (last: '%s').", v, vn);
        bool digits = vn > 0 && vn <= 18;
        for (size_t i = 0; digits && i < vn; i++)
            digits = v[i] >= '0' && v[i] <= '9';
        if (!digits)
            return bad(err, "Content-Length '%s' is not a decimal number of bytes.", v, vn);
    } else if (is_name(p, name_len, "Transfer-Encoding")) {
        if (++f->n_coding > 1)
            return bad(err, "Transfer-Encoding is given more than once (last: '%s').", v, vn);
        if (!is_name(v, vn, "chunked"))
            return bad(err, "Transfer-Encoding '%s' is not supported; send chunked, or a Content-Length.", v, vn);
    }
    return 0;
}

int srv_head_check(const char *head, size_t n, struct oai_error *err)
{
    size_t i = 0;
    while (i < n && (head[i] == '\r' || head[i] == '\n'))
        i++;
    struct framing f = {0, 0};
    bool first = true;
    while (i < n) {
        const char *nl = memchr(head + i, '\n', n - i);
        size_t end = nl ? (size_t)(nl - head) : n;
        size_t len = end - i;
        if (len && head[i + len - 1] == '\r')
            len--;
        if (len == 0)
            break; /* the blank line that ends the head */
        if (memchr(head + i, '\r', len) || memchr(head + i, 0, len)) {
            if (first)
                return bad(err, "The request line has a NUL or a bare CR: '%s'.", head + i, len);
            return bad(err, "A header line has a NUL or a bare CR: '%s'.", head + i, len);
        }
        if (!first && check_line(head + i, len, &f, err) < 0)
            return -1;
        first = false;
        i = end + 1;
    }
    if (f.n_length && f.n_coding)
        return oai_err(err, 400, "invalid_request_error", NULL, "bad_request_framing",
                       "Content-Length and Transfer-Encoding are both given; send one of them.");
    return 0;
}
