/*
 * maas inspect FILE [--json] [--dump TENSOR]
 *
 * Shows what a GGUF file holds: the header, every metadata key with its type
 * and value, and the tensor table with totals. --json prints the same as one
 * JSON object for scripts; --dump writes one tensor, dequantized, as raw
 * little-endian f32 on stdout (the NumPy golden tests compare it with an
 * independent dequantization).
 *
 * Everything shown comes from the validated reader (gguf_open), so a corrupt
 * file ends here with its one-line reason and exit code 1. Bytes from the file
 * are never printed raw: the human form escapes them C-style, the JSON form
 * writes valid UTF-8 with invalid sequences replaced by U+FFFD.
 */
#include "cli/cli.h"
#include "gguf/gguf.h"
#include "kernels/kernels.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define HUMAN_ARRAY_HEAD 8    /* array elements shown in the human form */
#define HUMAN_STR_MAX 96      /* bytes of a string shown in the human form */
#define JSON_ARRAY_MAX 64     /* longer arrays are abbreviated in JSON ... */
#define JSON_ARRAY_HEAD 16    /* ... to their first elements */

static void usage(FILE *out)
{
    fprintf(out,
            "usage: maas inspect FILE [--json] [--dump TENSOR]\n"
            "\n"
            "Validates a GGUF file and prints its header, metadata and tensor table\n"
            "(name, type, shape as [ne0, ne1, ...] with ne0 the row length, bytes) and\n"
            "the totals. Long arrays are abbreviated to their element type, length and\n"
            "first %d values.\n"
            "\n"
            "  --json          one JSON object instead: {\"version\", \"alignment\",\n"
            "                  \"data_offset\", \"file_size\", \"metadata\": {key: value},\n"
            "                  \"tensors\": [{\"name\", \"type\", \"shape\", \"offset\", \"bytes\"}],\n"
            "                  \"n_params\", \"n_bytes\"}. A tensor's \"offset\" is relative to\n"
            "                  \"data_offset\", as in the file. Arrays of more than %d\n"
            "                  elements are given as {\"type\": \"array\", \"element_type\": T,\n"
            "                  \"n\": N, \"head\": [first %d]}. Strings are valid UTF-8:\n"
            "                  invalid bytes become U+FFFD. Non-finite floats are null.\n"
            "  --dump TENSOR   write TENSOR dequantized to raw little-endian f32 on stdout\n"
            "                  (ne0 values per row, rows in file order)\n"
            "  -h, --help      this text\n"
            "\n"
            "Exit status: 0 success, 1 the file is unreadable or invalid (one line on\n"
            "stderr says why), 2 usage error.\n",
            HUMAN_ARRAY_HEAD, JSON_ARRAY_MAX, JSON_ARRAY_HEAD);
}

/* ---- shared helpers ---- */

/* Length of the valid UTF-8 sequence at s (of n bytes left), or 0 if the
 * bytes there are not one (RFC 3629: no overlongs, surrogates or > U+10FFFF). */
static size_t utf8_seq(const unsigned char *s, uint64_t n)
{
    unsigned char c = s[0];
    if (c < 0x80)
        return 1;
    size_t len;
    unsigned char lo = 0x80, hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf)
        len = 2;
    else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        if (c == 0xe0)
            lo = 0xa0;
        if (c == 0xed)
            hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        if (c == 0xf0)
            lo = 0x90;
        if (c == 0xf4)
            hi = 0x8f;
    } else
        return 0;
    if (n < len || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if (s[i] < 0x80 || s[i] > 0xbf)
            return 0;
    return len;
}

/* Prints d with the fewest significant digits that read back as the same
 * float (f32) or double. */
static void print_shortest(double d, bool f32)
{
    char buf[40];
    for (int prec = f32 ? 6 : 15;; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, d);
        double back = strtod(buf, NULL);
        if ((f32 ? (double)(float)back == d : back == d) || prec >= 17)
            break;
    }
    fputs(buf, stdout);
}

/* Copies a key or tensor name into buf for the human form: printable ASCII and
 * valid UTF-8 as they are, other bytes as \xNN, cut at about 120 bytes. */
static const char *esc_name(const char *s, char *buf, size_t cap)
{
    size_t o = 0, len = strlen(s);
    for (size_t i = 0; i < len && o + 8 < cap; i++) {
        unsigned char c = (unsigned char)s[i];
        size_t k = c >= 0x80 ? utf8_seq((const unsigned char *)s + i, len - i) : 0;
        if (c >= 0x20 && c < 0x7f) {
            buf[o++] = (char)c;
        } else if (k && !(c == 0xc2 && (unsigned char)s[i + 1] < 0xa0) && o + k + 8 < cap) {
            memcpy(buf + o, s + i, k);
            o += k;
            i += k - 1;
        } else {
            o += (size_t)snprintf(buf + o, cap - o, "\\x%02x", c);
        }
        if (o >= 120 && i + 1 < len) {
            memcpy(buf + o, "...", 3);
            o += 3;
            break;
        }
    }
    buf[o] = '\0';
    return buf;
}

/* ---- human form ---- */

/* Prints up to max bytes of s in double quotes, escaping everything that is
 * not printable ASCII; valid UTF-8 is escaped too so the output stays ASCII. */
static void human_str(const char *s, uint64_t len, uint64_t max)
{
    putchar('"');
    uint64_t n = len < max ? len : max;
    for (uint64_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        switch (c) {
        case '"': fputs("\\\"", stdout); break;
        case '\\': fputs("\\\\", stdout); break;
        case '\n': fputs("\\n", stdout); break;
        case '\t': fputs("\\t", stdout); break;
        case '\r': fputs("\\r", stdout); break;
        default:
            if (c >= 0x20 && c < 0x7f) {
                putchar(c);
            } else {
                /* valid UTF-8 is shown as is, except the C1 controls (U+0080..U+009F) */
                size_t k = c >= 0x80 ? utf8_seq((const unsigned char *)s + i, n - i) : 0;
                if (k && !(c == 0xc2 && (unsigned char)s[i + 1] < 0xa0)) {
                    fwrite(s + i, 1, k, stdout);
                    i += k - 1;
                } else {
                    printf("\\x%02x", c);
                }
            }
        }
    }
    putchar('"');
    if (n < len)
        printf("... (%" PRIu64 " bytes)", len);
}

static void human_number(enum gguf_vtype t, const void *p)
{
    union {
        uint8_t u8; int8_t i8; uint16_t u16; int16_t i16; uint32_t u32; int32_t i32;
        uint64_t u64; int64_t i64; float f32; double f64;
    } v;
    memcpy(&v, p, gguf_vtype_size(t));
    switch (t) {
    case GGUF_VT_UINT8: printf("%" PRIu8, v.u8); break;
    case GGUF_VT_INT8: printf("%" PRId8, v.i8); break;
    case GGUF_VT_UINT16: printf("%" PRIu16, v.u16); break;
    case GGUF_VT_INT16: printf("%" PRId16, v.i16); break;
    case GGUF_VT_UINT32: printf("%" PRIu32, v.u32); break;
    case GGUF_VT_INT32: printf("%" PRId32, v.i32); break;
    case GGUF_VT_UINT64: printf("%" PRIu64, v.u64); break;
    case GGUF_VT_INT64: printf("%" PRId64, v.i64); break;
    case GGUF_VT_FLOAT32: print_shortest(v.f32, true); break;
    case GGUF_VT_FLOAT64: print_shortest(v.f64, false); break;
    case GGUF_VT_BOOL: fputs(v.u8 ? "true" : "false", stdout); break;
    default: fputs("?", stdout); break;
    }
}

static void human_kv(const struct gguf_kv *kv)
{
    char kb[160];
    printf("  %-44s ", esc_name(kv->key, kb, sizeof kb));
    if (kv->type == GGUF_VT_STRING) {
        printf("%-10s ", "string");
        human_str(kv->str.ptr, kv->str.len, HUMAN_STR_MAX);
    } else if (kv->type == GGUF_VT_ARRAY) {
        char t[32];
        snprintf(t, sizeof t, "[%s]", gguf_vtype_name(kv->arr_type));
        printf("%-10s n=%" PRIu64 " [", t, kv->arr_n);
        uint64_t n = kv->arr_n < HUMAN_ARRAY_HEAD ? kv->arr_n : HUMAN_ARRAY_HEAD;
        size_t esz = gguf_vtype_size(kv->arr_type);
        for (uint64_t i = 0; i < n; i++) {
            if (i)
                fputs(", ", stdout);
            if (kv->arr_type == GGUF_VT_STRING)
                human_str(kv->arr_strs[i].ptr, kv->arr_strs[i].len, 32);
            else
                human_number(kv->arr_type, (const uint8_t *)kv->arr_data + i * esz);
        }
        fputs(n < kv->arr_n ? ", ...]" : "]", stdout);
    } else {
        printf("%-10s ", gguf_vtype_name(kv->type));
        human_number(kv->type, kv->val);
    }
    putchar('\n');
}

static void shape_str(const struct gguf_tensor *t, char *buf, size_t cap)
{
    size_t o = (size_t)snprintf(buf, cap, "[");
    for (int d = 0; d < t->n_dims && o < cap; d++)
        o += (size_t)snprintf(buf + o, cap - o, "%s%" PRId64, d ? ", " : "", t->ne[d]);
    if (o < cap)
        snprintf(buf + o, cap - o, "]");
}

static void human_size(uint64_t n, char *buf, size_t cap)
{
    if (n >= (1ull << 30))
        snprintf(buf, cap, "%.2f GiB", (double)n / (1ull << 30));
    else if (n >= (1ull << 20))
        snprintf(buf, cap, "%.2f MiB", (double)n / (1ull << 20));
    else if (n >= 1024)
        snprintf(buf, cap, "%.1f KiB", (double)n / 1024);
    else
        snprintf(buf, cap, "%" PRIu64 " B", n);
}

static void print_human(const struct gguf_file *f)
{
    char hs[32];
    human_size(gguf_size(f), hs, sizeof hs);
    printf("file:        %s\n", gguf_name(f));
    printf("version:     %" PRIu32 "\n", gguf_version(f));
    printf("alignment:   %" PRIu64 "\n", gguf_alignment(f));
    printf("file size:   %zu bytes (%s)\n", gguf_size(f), hs);
    printf("data offset: %" PRIu64 "\n", gguf_data_offset(f));
    printf("\nmetadata: %zu keys\n", gguf_n_kv(f));
    for (size_t i = 0; i < gguf_n_kv(f); i++)
        human_kv(gguf_kv_at(f, i));

    size_t nt = gguf_n_tensors(f);
    int wname = 4;
    for (size_t i = 0; i < nt; i++) {
        size_t l = strlen(gguf_tensor_at(f, i)->name);
        if (l > (size_t)wname)
            wname = l > 64 ? 64 : (int)l;
    }
    printf("\ntensors: %zu\n", nt);
    uint64_t params = 0, bytes = 0;
    if (nt)
        printf("  %-*s %-8s %-28s %14s\n", wname, "name", "type", "shape", "bytes");
    for (size_t i = 0; i < nt; i++) {
        const struct gguf_tensor *t = gguf_tensor_at(f, i);
        char shape[128];
        shape_str(t, shape, sizeof shape);
        char nb[160];
        printf("  %-*s %-8s %-28s %14" PRIu64 "\n", wname, esc_name(t->name, nb, sizeof nb), ggml_type_name(t->type),
               shape, t->nbytes);
        params += (uint64_t)gguf_tensor_nelements(t);
        bytes += t->nbytes;
    }
    human_size(bytes, hs, sizeof hs);
    printf("\ntotals: %zu tensors, %" PRIu64 " parameters, %" PRIu64 " bytes (%s)\n", nt, params, bytes, hs);
}

/* ---- JSON form ---- */

static void json_str(const char *str, uint64_t len)
{
    const unsigned char *s = (const unsigned char *)str;
    putchar('"');
    for (uint64_t i = 0; i < len;) {
        unsigned char c = s[i];
        if (c < 0x80) {
            switch (c) {
            case '"': fputs("\\\"", stdout); break;
            case '\\': fputs("\\\\", stdout); break;
            case '\n': fputs("\\n", stdout); break;
            case '\r': fputs("\\r", stdout); break;
            case '\t': fputs("\\t", stdout); break;
            case '\b': fputs("\\b", stdout); break;
            case '\f': fputs("\\f", stdout); break;
            default:
                if (c < 0x20)
                    printf("\\u%04x", c);
                else
                    putchar(c);
            }
            i++;
            continue;
        }
        size_t n = utf8_seq(s + i, len - i);
        if (n == 0) {
            fputs("\\ufffd", stdout);
            i++;
        } else {
            fwrite(s + i, 1, n, stdout);
            i += n;
        }
    }
    putchar('"');
}

static void json_float(double d, bool f32)
{
    if (!isfinite(d))
        fputs("null", stdout);
    else
        print_shortest(d, f32);
}

static void json_number(enum gguf_vtype t, const void *p)
{
    if (t == GGUF_VT_FLOAT32) {
        float v;
        memcpy(&v, p, 4);
        json_float(v, true);
    } else if (t == GGUF_VT_FLOAT64) {
        double v;
        memcpy(&v, p, 8);
        json_float(v, false);
    } else {
        human_number(t, p); /* integers and true/false print the same in JSON */
    }
}

static void json_kv_value(const struct gguf_kv *kv)
{
    if (kv->type == GGUF_VT_STRING) {
        json_str(kv->str.ptr, kv->str.len);
        return;
    }
    if (kv->type != GGUF_VT_ARRAY) {
        json_number(kv->type, kv->val);
        return;
    }
    uint64_t n = kv->arr_n;
    bool abbrev = n > JSON_ARRAY_MAX;
    if (abbrev) {
        printf("{\"type\": \"array\", \"element_type\": \"%s\", \"n\": %" PRIu64 ", \"head\": ",
               gguf_vtype_name(kv->arr_type), n);
        n = JSON_ARRAY_HEAD;
    }
    putchar('[');
    size_t esz = gguf_vtype_size(kv->arr_type);
    for (uint64_t i = 0; i < n; i++) {
        if (i)
            fputs(", ", stdout);
        if (kv->arr_type == GGUF_VT_STRING)
            json_str(kv->arr_strs[i].ptr, kv->arr_strs[i].len);
        else
            json_number(kv->arr_type, (const uint8_t *)kv->arr_data + i * esz);
    }
    putchar(']');
    if (abbrev)
        putchar('}');
}

static void print_json(const struct gguf_file *f)
{
    printf("{\"version\": %" PRIu32 ", \"alignment\": %" PRIu64 ", \"data_offset\": %" PRIu64 ", \"file_size\": %zu,\n",
           gguf_version(f), gguf_alignment(f), gguf_data_offset(f), gguf_size(f));
    fputs(" \"metadata\": {", stdout);
    for (size_t i = 0; i < gguf_n_kv(f); i++) {
        const struct gguf_kv *kv = gguf_kv_at(f, i);
        fputs(i ? ",\n  " : "\n  ", stdout);
        json_str(kv->key, strlen(kv->key));
        fputs(": ", stdout);
        json_kv_value(kv);
    }
    fputs(gguf_n_kv(f) ? "\n },\n" : "},\n", stdout);
    fputs(" \"tensors\": [", stdout);
    uint64_t params = 0, bytes = 0;
    for (size_t i = 0; i < gguf_n_tensors(f); i++) {
        const struct gguf_tensor *t = gguf_tensor_at(f, i);
        fputs(i ? ",\n  {\"name\": " : "\n  {\"name\": ", stdout);
        json_str(t->name, strlen(t->name));
        printf(", \"type\": \"%s\", \"shape\": [", ggml_type_name(t->type));
        for (int d = 0; d < t->n_dims; d++)
            printf("%s%" PRId64, d ? ", " : "", t->ne[d]);
        printf("], \"offset\": %" PRIu64 ", \"bytes\": %" PRIu64 "}", t->offset, t->nbytes);
        params += (uint64_t)gguf_tensor_nelements(t);
        bytes += t->nbytes;
    }
    fputs(gguf_n_tensors(f) ? "\n ],\n" : "],\n", stdout);
    printf(" \"n_tensors\": %zu, \"n_params\": %" PRIu64 ", \"n_bytes\": %" PRIu64 "}\n", gguf_n_tensors(f), params,
           bytes);
}

/* ---- --dump ---- */

static int dump_tensor(const struct gguf_file *f, const char *name)
{
    const struct gguf_tensor *t = gguf_find_tensor(f, name);
    if (!t) {
        fprintf(stderr, "maas inspect: %s: no tensor named '%s'\n", gguf_name(f), name);
        return 1;
    }
    kernels_init();
    const struct kern_type_ops *ops = kern_ops(t->type);
    if (!ops || !ops->to_float) {
        fprintf(stderr, "maas inspect: %s: tensor '%s' has type %s, which maas cannot dequantize\n", gguf_name(f),
                name, ggml_type_name(t->type));
        return 1;
    }
    if (isatty(STDOUT_FILENO)) {
        fprintf(stderr, "maas inspect: --dump writes binary f32; redirect stdout to a file or a pipe\n");
        return 1;
    }
    /* The rows of a tensor are one contiguous run of blocks, so it can be
     * converted in chunks of whole blocks regardless of row boundaries. */
    enum { CHUNK = 65536 }; /* elements; a multiple of every block size (1, 32, 256) */
    int64_t blck = ggml_blck_size(t->type);
    MAAS_ASSERT(CHUNK % blck == 0);
    float *buf = malloc(CHUNK * sizeof *buf);
    if (!buf) {
        fprintf(stderr, "maas inspect: out of memory\n");
        return 1;
    }
    int64_t total = gguf_tensor_nelements(t);
    const uint8_t *src = t->data;
    int rc = 0;
    for (int64_t done = 0; done < total; done += CHUNK) {
        int64_t n = total - done < CHUNK ? total - done : CHUNK;
        kern_dequantize_row(t->type, src + (uint64_t)(done / blck) * ggml_type_size(t->type), buf, n);
        if (fwrite(buf, sizeof *buf, (size_t)n, stdout) != (size_t)n) {
            fprintf(stderr, "maas inspect: --dump: writing to stdout failed: %s\n", strerror(errno));
            rc = 1;
            break;
        }
    }
    free(buf);
    return rc;
}

int cmd_inspect(int argc, char **argv)
{
    const char *path = NULL, *dump = NULL;
    bool json = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--json")) {
            json = true;
        } else if (!strcmp(a, "--dump")) {
            if (i + 1 >= argc) {
                fprintf(stderr, "maas inspect: --dump needs a tensor name\n");
                return 2;
            }
            dump = argv[++i];
        } else if (a[0] == '-' && a[1] != '\0') {
            fprintf(stderr, "maas inspect: unknown option '%s' (see maas inspect --help)\n", a);
            return 2;
        } else if (path) {
            fprintf(stderr, "maas inspect: one file at a time ('%s' and '%s' given)\n", path, a);
            return 2;
        } else {
            path = a;
        }
    }
    if (!path) {
        fprintf(stderr, "maas inspect: no file given\n");
        usage(stderr);
        return 2;
    }
    if (json && dump) {
        fprintf(stderr, "maas inspect: --json and --dump cannot be combined\n");
        return 2;
    }
    struct err e = {0};
    struct gguf_file *f = gguf_open(path, &e);
    if (!f) {
        fprintf(stderr, "maas inspect: %s\n", e.msg);
        return 1;
    }
    int rc = 0;
    if (dump)
        rc = dump_tensor(f, dump);
    else if (json)
        print_json(f);
    else
        print_human(f);
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "maas inspect: writing to stdout failed: %s\n", strerror(errno));
        rc = 1;
    }
    gguf_close(f);
    return rc;
}
