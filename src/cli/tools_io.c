/* tools_io.c — the file chores of `maas quantize`, `maas mkmodel` and
 * `maas tokenize`: refuse an unwritable output path before minutes of work,
 * and read a text. */
#include "cli/tools.h"

#include <errno.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int tool_check_out_path(const char *out, struct err *e)
{
    char *copy = strdup(out);
    if (!copy)
        return err_set(e, ERR_NOMEM, "out of memory");
    const char *dir = dirname(copy);
    struct stat st;
    int rc = 0;
    if (stat(dir, &st) != 0)
        rc = err_set(e, ERR_IO, "%s: cannot write here: directory '%s': %s", out, dir, strerror(errno));
    else if (!S_ISDIR(st.st_mode))
        rc = err_set(e, ERR_IO, "%s: cannot write here: '%s' is not a directory", out, dir);
    else if (stat(out, &st) == 0 && S_ISDIR(st.st_mode))
        rc = err_set(e, ERR_INVALID, "%s: is a directory; give the path of the file to write", out);
    free(copy);
    return rc;
}

int tool_read_stream(FILE *f, const char *name, size_t max, char **out, size_t *len, struct err *e)
{
    struct sbuf b = SBUF_INIT;
    char chunk[1 << 16];
    size_t got;
    while ((got = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (got > max - b.len) {
            sbuf_release(&b);
            return err_set(e, ERR_INVALID, "%s: the text is larger than %zu MiB", name, max >> 20);
        }
        sbuf_add(&b, chunk, got);
    }
    if (ferror(f)) {
        sbuf_release(&b);
        return err_set(e, ERR_IO, "%s: read error: %s", name, strerror(errno));
    }
    char *p = sbuf_detach(&b, len);
    if (!p)
        return err_set(e, ERR_NOMEM, "%s: out of memory", name);
    *out = p;
    return 0;
}

int tool_read_text(const char *path, char **out, size_t *len, struct err *e)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return err_set(e, ERR_IO, "%s: %s", path, strerror(errno));
    char *p;
    size_t n;
    int rc = tool_read_stream(f, path, (size_t)1 << 30, &p, &n, e);
    fclose(f);
    if (rc < 0)
        return -1;
    if (n == 0) {
        free(p);
        return err_set(e, ERR_INVALID, "%s: the text is empty", path);
    }
    *out = p;
    *len = n;
    return 0;
}
