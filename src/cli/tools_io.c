/* tools_io.c — the file chores of `maas quantize` and `maas mkmodel`:
 * refuse an unwritable output path before minutes of work, and read a text. */
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

int tool_read_text(const char *path, char **out, size_t *len, struct err *e)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return err_set(e, ERR_IO, "%s: %s", path, strerror(errno));
    char *buf = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;
    for (;;) {
        if (n == cap) {
            cap = cap ? cap * 2 : 1 << 16;
            if (cap > (size_t)1 << 30) {
                rc = err_set(e, ERR_INVALID, "%s: the text is larger than 1 GiB", path);
                break;
            }
            char *nb = realloc(buf, cap);
            if (!nb) {
                rc = err_set(e, ERR_NOMEM, "%s: out of memory", path);
                break;
            }
            buf = nb;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0) {
            if (ferror(f))
                rc = err_set(e, ERR_IO, "%s: read error: %s", path, strerror(errno));
            break;
        }
    }
    fclose(f);
    if (rc == 0 && n == 0)
        rc = err_set(e, ERR_INVALID, "%s: the text is empty", path);
    if (rc) {
        free(buf);
        return -1;
    }
    *out = buf;
    *len = n;
    return 0;
}
