/*
 * Reading GGUF files: one validating pass over the mapped bytes.
 *
 * Design: the file is mapped read-only and parsed once with a cursor that
 * checks every read against the bytes left, so nothing past the mapping is
 * ever touched. Counts (n_kv, n_tensors, array lengths) are checked against
 * the smallest encoding their items could have in the bytes left before
 * anything is allocated, so a hostile count fails at once. Values stay in the
 * mapping; the only allocations are the kv and tensor arrays, one gguf_str
 * array per string array, one block holding every key and tensor name as a
 * NUL-terminated copy, and two hash indexes (keys, tensor names).
 *
 * Messages: "<file>: <context>: <what is wrong> (at offset N)", where the
 * context names the key or tensor being read.
 */
#include "gguf/gguf_int.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_KEY_LEN 65535u     /* the spec: keys are at most 2^16-1 bytes */
#define MAX_NAME_LEN 65536u    /* tensor names */
/* Smallest encodings, used to bound counts by the bytes left. */
#define MIN_KV_BYTES (8 + 1 + 4 + 1)            /* key length, 1-byte key, type, 1-byte value */
#define MIN_TINFO_BYTES (8 + 1 + 4 + 8 + 4 + 8) /* name length, 1-byte name, n_dims, ne[0], type, offset */
#define HEADER_BYTES 24

struct gguf_file {
    char *name;                  /* from malloc */
    const uint8_t *base;         /* the mapping (owned when mapped) or the caller's bytes (borrowed) */
    size_t size;
    bool mapped;
    uint32_t version;
    uint64_t alignment;
    uint64_t data_offset;
    size_t n_kv, n_tensors;
    struct gguf_kv *kvs;         /* from malloc; n_kv */
    struct gguf_tensor *tensors; /* from malloc; n_tensors */
    char *names;                 /* from malloc: every key and tensor name, NUL-terminated */
    struct nidx kv_idx, t_idx;
};

/* ---- the cursor ---- */

struct rd {
    const uint8_t *p;
    size_t size, pos;
    const char *file;
    char ctx[256]; /* "key 'general.name'" and the like; may be empty */
    struct err *e;
};

/* Appends s[0..len) to out (of cap bytes) with non-printable bytes escaped,
 * cut at 80 bytes of input so that messages stay one readable line. */
static void quote_bytes(char *out, size_t cap, const char *s, uint64_t len)
{
    size_t o = 0;
    uint64_t n = len > 80 ? 80 : len;
    for (uint64_t i = 0; i < n && o + 5 < cap; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c < 0x7f && c != '\\' && c != '\'')
            out[o++] = (char)c;
        else
            o += (size_t)snprintf(out + o, cap - o, "\\x%02x", c);
    }
    if (n < len && o + 4 < cap) {
        memcpy(out + o, "...", 3);
        o += 3;
    }
    out[o < cap ? o : cap - 1] = '\0';
}

static int rd_fail(struct rd *r, size_t at, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int rd_fail(struct rd *r, size_t at, const char *fmt, ...)
{
    char what[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return err_set(r->e, ERR_CORRUPT, "%s: %s%s%s (at offset %zu)", r->file, r->ctx, r->ctx[0] ? ": " : "", what, at);
}

/* Fails unless n more bytes are there; what names the field. */
static int rd_need(struct rd *r, uint64_t n, const char *what)
{
    if (n > r->size - r->pos)
        return rd_fail(r, r->pos, "%s (%" PRIu64 " bytes) runs past end of file (%zu bytes)", what, n, r->size);
    return 0;
}

static int rd_u32(struct rd *r, uint32_t *v, const char *what)
{
    if (rd_need(r, 4, what))
        return -1;
    memcpy(v, r->p + r->pos, 4);
    r->pos += 4;
    return 0;
}

static int rd_u64(struct rd *r, uint64_t *v, const char *what)
{
    if (rd_need(r, 8, what))
        return -1;
    memcpy(v, r->p + r->pos, 8);
    r->pos += 8;
    return 0;
}

/* A length-prefixed string; what names it ("key", "string value"). For
 * string arrays, idx is the element (else -1) and n the array length. The
 * message is only formatted on failure: this runs for every token of a vocabulary. */
static int rd_str(struct rd *r, struct gguf_str *s, const char *what, int64_t idx, uint64_t n)
{
    size_t at = r->pos;
    char el[64] = "";
    if (r->size - r->pos < 8) {
        if (idx >= 0)
            snprintf(el, sizeof el, " %" PRId64 " of %" PRIu64 " of the array", idx, n);
        return rd_fail(r, at, "length of %s%s (8 bytes) runs past end of file (%zu bytes)", what, el, r->size);
    }
    uint64_t len;
    memcpy(&len, r->p + r->pos, 8);
    r->pos += 8;
    if (len > r->size - r->pos) {
        if (idx >= 0)
            snprintf(el, sizeof el, " %" PRId64 " of %" PRIu64 " of the array", idx, n);
        r->pos = at;
        return rd_fail(r, at, "%s%s of %" PRIu64 " bytes runs past end of file (%zu bytes)", what, el, len, r->size);
    }
    s->ptr = (const char *)r->p + r->pos;
    s->len = len;
    r->pos += len;
    return 0;
}

/* ---- metadata ---- */

static bool vtype_known(uint32_t t)
{
    return t < GGUF_VT_COUNT;
}

/* One value of type t (not an array) at the cursor. */
static int rd_scalar(struct rd *r, enum gguf_vtype t, const void **val)
{
    size_t sz = gguf_vtype_size(t), at = r->pos;
    char w[48];
    snprintf(w, sizeof w, "%s value", gguf_vtype_name(t));
    if (rd_need(r, sz, w))
        return -1;
    if (t == GGUF_VT_BOOL && r->p[at] > 1)
        return rd_fail(r, at, "bool value %u is neither 0 nor 1", r->p[at]);
    *val = r->p + at;
    r->pos += sz;
    return 0;
}

static int rd_array(struct rd *r, struct gguf_kv *kv)
{
    size_t at = r->pos;
    uint32_t et;
    uint64_t n;
    if (rd_u32(r, &et, "array element type"))
        return -1;
    if (!vtype_known(et))
        return rd_fail(r, at, "unknown array element type %" PRIu32, et);
    if (et == GGUF_VT_ARRAY)
        return rd_fail(r, at, "arrays of arrays are not supported");
    at = r->pos;
    if (rd_u64(r, &n, "array length"))
        return -1;
    size_t left = r->size - r->pos;
    kv->arr_type = (enum gguf_vtype)et;
    if (et == GGUF_VT_STRING) {
        if (n > left / 8)
            return rd_fail(r, at, "array of %" PRIu64 " strings (8 bytes each at least) runs past end of file (%zu bytes)",
                           n, r->size);
        kv->arr_n = n;
        if (n == 0)
            return 0;
        kv->arr_strs = malloc(n * sizeof *kv->arr_strs);
        if (!kv->arr_strs)
            return rd_fail(r, at, "out of memory for an array of %" PRIu64 " strings", n);
        for (uint64_t i = 0; i < n; i++)
            if (rd_str(r, &kv->arr_strs[i], "string", (int64_t)i, n))
                return -1;
        return 0;
    }
    size_t sz = gguf_vtype_size((enum gguf_vtype)et);
    if (n > left / sz)
        return rd_fail(r, at, "array of %" PRIu64 " %s values (%zu bytes each) runs past end of file (%zu bytes)", n,
                       gguf_vtype_name((enum gguf_vtype)et), sz, r->size);
    kv->arr_n = n;
    kv->arr_data = r->p + r->pos;
    if (et == GGUF_VT_BOOL)
        for (uint64_t i = 0; i < n; i++)
            if (r->p[r->pos + i] > 1)
                return rd_fail(r, r->pos + i, "bool array element %" PRIu64 " is %u, neither 0 nor 1", i,
                               r->p[r->pos + i]);
    r->pos += n * sz;
    return 0;
}

/* Name spans in the mapping while parsing; the NUL-terminated copies are made
 * at the end. */
struct span_ctx {
    const struct gguf_str *spans;
};

static bool span_eq(const void *ctx, uint32_t idx, const char *s, size_t len)
{
    const struct gguf_str *sp = &((const struct span_ctx *)ctx)->spans[idx];
    return sp->len == len && memcmp(sp->ptr, s, len) == 0;
}

static bool kv_eq(const void *ctx, uint32_t idx, const char *s, size_t len)
{
    const char *k = ((const struct gguf_file *)ctx)->kvs[idx].key;
    return strncmp(k, s, len) == 0 && k[len] == '\0';
}

static bool tensor_eq(const void *ctx, uint32_t idx, const char *s, size_t len)
{
    const char *k = ((const struct gguf_file *)ctx)->tensors[idx].name;
    return strncmp(k, s, len) == 0 && k[len] == '\0';
}

/* Checks a key or tensor name read at offset at. */
static int check_name(struct rd *r, size_t at, struct gguf_str s, uint64_t max, const char *what)
{
    if (s.len == 0)
        return rd_fail(r, at, "empty %s", what);
    if (s.len > max)
        return rd_fail(r, at, "%s of %" PRIu64 " bytes is longer than %" PRIu64, what, s.len, max);
    if (memchr(s.ptr, '\0', s.len))
        return rd_fail(r, at, "%s contains a NUL byte", what);
    return 0;
}

static int rd_kvs(struct rd *r, struct gguf_file *f, struct gguf_str *key_spans)
{
    struct span_ctx sc = {key_spans};
    for (size_t i = 0; i < f->n_kv; i++) {
        struct gguf_kv *kv = &f->kvs[i];
        size_t at = r->pos;
        snprintf(r->ctx, sizeof r->ctx, "key/value %zu of %zu", i, f->n_kv);
        if (rd_str(r, &key_spans[i], "key", -1, 0) || check_name(r, at, key_spans[i], MAX_KEY_LEN, "key"))
            return -1;
        char q[400];
        quote_bytes(q, sizeof q, key_spans[i].ptr, key_spans[i].len);
        snprintf(r->ctx, sizeof r->ctx, "key '%s'", q);
        if (nidx_find(&f->kv_idx, key_spans[i].ptr, key_spans[i].len, span_eq, &sc) >= 0)
            return rd_fail(r, at, "duplicate key");
        nidx_insert(&f->kv_idx, nidx_hash(key_spans[i].ptr, key_spans[i].len), (uint32_t)i);
        size_t tat = r->pos;
        uint32_t t;
        if (rd_u32(r, &t, "value type"))
            return -1;
        if (!vtype_known(t))
            return rd_fail(r, tat, "unknown value type %" PRIu32, t);
        kv->type = (enum gguf_vtype)t;
        if (t == GGUF_VT_STRING) {
            if (rd_str(r, &kv->str, "string value", -1, 0))
                return -1;
        } else if (t == GGUF_VT_ARRAY) {
            if (rd_array(r, kv))
                return -1;
        } else if (rd_scalar(r, kv->type, &kv->val)) {
            return -1;
        }
    }
    r->ctx[0] = '\0';
    return 0;
}

static int rd_alignment(struct rd *r, struct gguf_file *f, const struct gguf_str *key_spans)
{
    struct span_ctx sc = {key_spans};
    const char *k = "general.alignment";
    int64_t i = nidx_find(&f->kv_idx, k, strlen(k), span_eq, &sc);
    f->alignment = GGUF_DEFAULT_ALIGNMENT;
    if (i < 0)
        return 0;
    const struct gguf_kv *kv = &f->kvs[i];
    size_t at = (size_t)((const uint8_t *)key_spans[i].ptr - r->p) - 8;
    snprintf(r->ctx, sizeof r->ctx, "key '%s'", k);
    if (kv->type != GGUF_VT_UINT32)
        return rd_fail(r, at, "has type %s, must be uint32", gguf_vtype_name(kv->type));
    uint32_t a;
    memcpy(&a, kv->val, 4);
    if (a == 0 || (a & (a - 1)))
        return rd_fail(r, at, "alignment %" PRIu32 " is not a power of two", a);
    f->alignment = a;
    r->ctx[0] = '\0';
    return 0;
}

/* ---- tensor infos ---- */

static int rd_tensor_infos(struct rd *r, struct gguf_file *f, struct gguf_str *name_spans)
{
    struct span_ctx sc = {name_spans};
    for (size_t i = 0; i < f->n_tensors; i++) {
        struct gguf_tensor *t = &f->tensors[i];
        size_t at = r->pos;
        snprintf(r->ctx, sizeof r->ctx, "tensor info %zu of %zu", i, f->n_tensors);
        if (rd_str(r, &name_spans[i], "tensor name", -1, 0) ||
            check_name(r, at, name_spans[i], MAX_NAME_LEN, "tensor name"))
            return -1;
        char q[400];
        quote_bytes(q, sizeof q, name_spans[i].ptr, name_spans[i].len);
        snprintf(r->ctx, sizeof r->ctx, "tensor '%s'", q);
        if (nidx_find(&f->t_idx, name_spans[i].ptr, name_spans[i].len, span_eq, &sc) >= 0)
            return rd_fail(r, at, "duplicate tensor name");
        nidx_insert(&f->t_idx, nidx_hash(name_spans[i].ptr, name_spans[i].len), (uint32_t)i);

        at = r->pos;
        uint32_t n_dims;
        if (rd_u32(r, &n_dims, "n_dims"))
            return -1;
        if (n_dims < 1 || n_dims > GGUF_MAX_DIMS)
            return rd_fail(r, at, "n_dims %" PRIu32 " is not in 1..%d", n_dims, GGUF_MAX_DIMS);
        t->n_dims = (int)n_dims;
        uint64_t nel = 1;
        for (int d = 0; d < GGUF_MAX_DIMS; d++)
            t->ne[d] = 1;
        for (uint32_t d = 0; d < n_dims; d++) {
            uint64_t ne;
            at = r->pos;
            if (rd_u64(r, &ne, "dimension"))
                return -1;
            if (ne == 0)
                return rd_fail(r, at, "ne[%" PRIu32 "] is 0", d);
            if (ne > (uint64_t)INT64_MAX)
                return rd_fail(r, at, "ne[%" PRIu32 "] is negative (%" PRId64 ")", d, (int64_t)ne);
            if (__builtin_mul_overflow(nel, ne, &nel) || nel > (uint64_t)INT64_MAX)
                return rd_fail(r, at, "element count overflows at ne[%" PRIu32 "] = %" PRIu64, d, ne);
            t->ne[d] = (int64_t)ne;
        }
        at = r->pos;
        uint32_t type;
        if (rd_u32(r, &type, "tensor type"))
            return -1;
        if (!ggml_type_known(type))
            return rd_fail(r, at, "unknown tensor type %" PRIu32, type);
        t->type = (enum ggml_type)type;
        int64_t blck = ggml_blck_size(t->type);
        if (t->ne[0] % blck)
            return rd_fail(r, at, "row length ne[0] = %" PRId64 " is not a multiple of the %s block size %" PRId64,
                           t->ne[0], ggml_type_name(t->type), blck);
        uint64_t rows = nel / (uint64_t)t->ne[0], row_bytes;
        if (__builtin_mul_overflow((uint64_t)(t->ne[0] / blck), (uint64_t)ggml_type_size(t->type), &row_bytes) ||
            __builtin_mul_overflow(row_bytes, rows, &t->nbytes) || t->nbytes > (uint64_t)INT64_MAX)
            return rd_fail(r, at, "byte size of %" PRIu64 " elements of %s overflows", nel, ggml_type_name(t->type));
        if (rd_u64(r, &t->offset, "data offset"))
            return -1;
    }
    r->ctx[0] = '\0';
    return 0;
}

static int place_tensors(struct rd *r, struct gguf_file *f, const struct gguf_str *name_spans)
{
    for (size_t i = 0; i < f->n_tensors; i++) {
        struct gguf_tensor *t = &f->tensors[i];
        char q[400];
        quote_bytes(q, sizeof q, name_spans[i].ptr, name_spans[i].len);
        snprintf(r->ctx, sizeof r->ctx, "tensor '%s'", q);
        /* where the tensor info's offset field sits: the end of the info */
        size_t info_end = (size_t)((const uint8_t *)name_spans[i].ptr - r->p) + name_spans[i].len + 4 +
                          8 * (size_t)t->n_dims + 4 + 8;
        if (t->offset % f->alignment)
            return rd_fail(r, info_end - 8, "data offset %" PRIu64 " is not a multiple of the alignment %" PRIu64,
                           t->offset, f->alignment);
        uint64_t start;
        if (__builtin_add_overflow(f->data_offset, t->offset, &start))
            return rd_fail(r, info_end - 8, "data offset %" PRIu64 " + data section start %" PRIu64 " overflows",
                           t->offset, f->data_offset);
        if (start > r->size || t->nbytes > r->size - start) {
            /* The example of STYLE.md, word for word. */
            return err_set(r->e, ERR_CORRUPT, "%s: %s: data at offset %" PRIu64 " + %" PRIu64
                                 " bytes runs past end of file (%zu bytes)",
                           r->file, r->ctx, start, t->nbytes, r->size);
        }
        t->data = r->p + start;
    }
    r->ctx[0] = '\0';
    return 0;
}

/* Copies every key and tensor name into one block of NUL-terminated strings. */
static int copy_names(struct gguf_file *f, const struct gguf_str *key_spans, const struct gguf_str *name_spans,
                      struct err *e)
{
    size_t total = 1;
    for (size_t i = 0; i < f->n_kv; i++)
        total += key_spans[i].len + 1;
    for (size_t i = 0; i < f->n_tensors; i++)
        total += name_spans[i].len + 1;
    f->names = malloc(total);
    if (!f->names)
        return err_set(e, ERR_NOMEM, "%s: out of memory for %zu bytes of names", f->name, total);
    char *p = f->names;
    for (size_t i = 0; i < f->n_kv; i++) {
        memcpy(p, key_spans[i].ptr, key_spans[i].len);
        p[key_spans[i].len] = '\0';
        f->kvs[i].key = p;
        p += key_spans[i].len + 1;
    }
    for (size_t i = 0; i < f->n_tensors; i++) {
        memcpy(p, name_spans[i].ptr, name_spans[i].len);
        p[name_spans[i].len] = '\0';
        f->tensors[i].name = p;
        p += name_spans[i].len + 1;
    }
    return 0;
}

static int parse(struct gguf_file *f, struct err *e)
{
    struct rd r = {.p = f->base, .size = f->size, .pos = 0, .file = f->name, .e = e};
    struct gguf_str *key_spans = NULL, *name_spans = NULL;
    int rc = -1;

    if (f->size < 4 || memcmp(f->base, "GGUF", 4) != 0) {
        char q[64];
        quote_bytes(q, sizeof q, (const char *)f->base, f->size < 4 ? f->size : 4);
        rd_fail(&r, 0, "not a GGUF file: magic '%s' is not 'GGUF'", q);
        goto out;
    }
    r.pos = 4;
    if (rd_u32(&r, &f->version, "version"))
        goto out;
    if (f->version == 1) {
        rd_fail(&r, 4, "GGUF version 1 is not supported (only versions 2 and 3); convert the file with current llama.cpp tools");
        goto out;
    }
    if (f->version == 0x02000000u || f->version == 0x03000000u) {
        rd_fail(&r, 4, "big-endian GGUF files are not supported");
        goto out;
    }
    if (f->version != 2 && f->version != 3) {
        rd_fail(&r, 4, "unsupported GGUF version %" PRIu32 " (only versions 2 and 3)", f->version);
        goto out;
    }
    uint64_t n_tensors, n_kv;
    if (rd_u64(&r, &n_tensors, "tensor count") || rd_u64(&r, &n_kv, "key/value count"))
        goto out;
    size_t left = f->size - r.pos;
    if (n_tensors > left / MIN_TINFO_BYTES) {
        rd_fail(&r, 8, "tensor count %" PRIu64 " is impossible: the %zu bytes after the header hold at most %zu tensor infos",
                n_tensors, left, left / MIN_TINFO_BYTES);
        goto out;
    }
    if (n_kv > left / MIN_KV_BYTES || n_kv * MIN_KV_BYTES + n_tensors * MIN_TINFO_BYTES > left) {
        rd_fail(&r, 16, "key/value count %" PRIu64 " is impossible with %" PRIu64 " tensors: the %zu bytes after the header hold at most %zu key/value pairs",
                n_kv, n_tensors, left, (left - (size_t)n_tensors * MIN_TINFO_BYTES) / MIN_KV_BYTES);
        goto out;
    }
    if (n_kv >= UINT32_MAX || n_tensors >= UINT32_MAX) { /* the indexes hold 32-bit positions */
        rd_fail(&r, 8, "%" PRIu64 " tensors and %" PRIu64 " keys: more than 2^32-2 are not supported", n_tensors, n_kv);
        goto out;
    }
    f->n_kv = (size_t)n_kv;
    f->n_tensors = (size_t)n_tensors;

    f->kvs = calloc(f->n_kv ? f->n_kv : 1, sizeof *f->kvs);
    f->tensors = calloc(f->n_tensors ? f->n_tensors : 1, sizeof *f->tensors);
    key_spans = calloc(f->n_kv ? f->n_kv : 1, sizeof *key_spans);
    name_spans = calloc(f->n_tensors ? f->n_tensors : 1, sizeof *name_spans);
    if (!f->kvs || !f->tensors || !key_spans || !name_spans || nidx_reserve(&f->kv_idx, f->n_kv) ||
        nidx_reserve(&f->t_idx, f->n_tensors)) {
        err_set(e, ERR_NOMEM, "%s: out of memory for %zu keys and %zu tensors", f->name, f->n_kv, f->n_tensors);
        goto out;
    }
    if (rd_kvs(&r, f, key_spans) || rd_alignment(&r, f, key_spans) || rd_tensor_infos(&r, f, name_spans))
        goto out;
    f->data_offset = (r.pos + f->alignment - 1) / f->alignment * f->alignment;
    if (place_tensors(&r, f, name_spans) || copy_names(f, key_spans, name_spans, e))
        goto out;
    rc = 0;
out:
    free(key_spans);
    free(name_spans);
    return rc;
}

/* ---- opening and closing ---- */

static struct gguf_file *file_new(const char *name, struct err *e)
{
    struct gguf_file *f = calloc(1, sizeof *f);
    if (f)
        f->name = strdup(name ? name : "(memory)");
    if (!f || !f->name) {
        free(f);
        err_set(e, ERR_NOMEM, "%s: out of memory", name ? name : "(memory)");
        return NULL;
    }
    return f;
}

void gguf_close(struct gguf_file *f)
{
    if (!f)
        return;
    if (f->kvs)
        for (size_t i = 0; i < f->n_kv; i++)
            free(f->kvs[i].arr_strs);
    free(f->kvs);
    free(f->tensors);
    free(f->names);
    nidx_release(&f->kv_idx);
    nidx_release(&f->t_idx);
    if (f->mapped)
        munmap((void *)f->base, f->size);
    free(f->name);
    free(f);
}

struct gguf_file *gguf_open_mem(const void *data, size_t size, const char *name, struct err *e)
{
    struct gguf_file *f = file_new(name, e);
    if (!f)
        return NULL;
    static const uint8_t empty[1];
    f->base = data ? data : empty;
    f->size = data ? size : 0;
    if (parse(f, e)) {
        gguf_close(f);
        return NULL;
    }
    return f;
}

static struct gguf_file *open_file(const char *path, bool copy, struct err *e)
{
    struct gguf_file *f = file_new(path, e);
    if (!f)
        return NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        err_set(e, ERR_IO, "%s: cannot open: %s", path, strerror(errno));
        goto fail;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        err_set(e, ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
        goto fail;
    }
    if (!S_ISREG(st.st_mode)) {
        err_set(e, ERR_CORRUPT, "%s: not a regular file", path);
        goto fail;
    }
    if (st.st_size == 0) {
        err_set(e, ERR_CORRUPT, "%s: empty file (0 bytes), not a GGUF file", path);
        goto fail;
    }
    if ((uint64_t)st.st_size > SIZE_MAX) {
        err_set(e, ERR_CORRUPT, "%s: file of %jd bytes is too large to map", path, (intmax_t)st.st_size);
        goto fail;
    }
    const size_t size = (size_t)st.st_size;
    void *m = copy ? mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) : MAP_FAILED;
    if (m != MAP_FAILED) { /* read it in, then make it read-only like the mapping */
        madvise(m, size, MADV_HUGEPAGE);
        for (size_t got = 0; got < size;) {
            ssize_t r = pread(fd, (char *)m + got, size - got, (off_t)got);
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0) {
                err_set(e, ERR_IO, "%s: cannot read byte %zu of %zu: %s", path, got, size,
                        r < 0 ? strerror(errno) : "the file got shorter");
                munmap(m, size);
                goto fail;
            }
            got += (size_t)r;
        }
        mprotect(m, size, PROT_READ);
        posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    } else {
        m = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    }
    if (m == MAP_FAILED) {
        err_set(e, ERR_IO, "%s: cannot map %jd bytes: %s", path, (intmax_t)st.st_size, strerror(errno));
        goto fail;
    }
    close(fd);
    fd = -1;
    f->base = m;
    f->size = (size_t)st.st_size;
    f->mapped = true;
    if (parse(f, e))
        goto fail;
    return f;
fail:
    if (fd >= 0)
        close(fd);
    gguf_close(f);
    return NULL;
}

struct gguf_file *gguf_open(const char *path, struct err *e)
{
    return open_file(path, false, e);
}

struct gguf_file *gguf_open_copy(const char *path, struct err *e)
{
    return open_file(path, true, e);
}

/* ---- accessors ---- */

const char *gguf_name(const struct gguf_file *f) { return f->name; }
uint32_t gguf_version(const struct gguf_file *f) { return f->version; }
size_t gguf_size(const struct gguf_file *f) { return f->size; }
uint64_t gguf_alignment(const struct gguf_file *f) { return f->alignment; }
uint64_t gguf_data_offset(const struct gguf_file *f) { return f->data_offset; }
size_t gguf_n_kv(const struct gguf_file *f) { return f->n_kv; }
size_t gguf_n_tensors(const struct gguf_file *f) { return f->n_tensors; }

const struct gguf_kv *gguf_kv_at(const struct gguf_file *f, size_t i)
{
    MAAS_ASSERT(i < f->n_kv);
    return &f->kvs[i];
}

const struct gguf_tensor *gguf_tensor_at(const struct gguf_file *f, size_t i)
{
    MAAS_ASSERT(i < f->n_tensors);
    return &f->tensors[i];
}

const struct gguf_kv *gguf_find_kv(const struct gguf_file *f, const char *key)
{
    int64_t i = nidx_find(&f->kv_idx, key, strlen(key), kv_eq, f);
    return i < 0 ? NULL : &f->kvs[i];
}

const struct gguf_tensor *gguf_find_tensor(const struct gguf_file *f, const char *name)
{
    int64_t i = nidx_find(&f->t_idx, name, strlen(name), tensor_eq, f);
    return i < 0 ? NULL : &f->tensors[i];
}

int64_t gguf_tensor_nelements(const struct gguf_tensor *t)
{
    return t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3];
}

bool gguf_str_eq(struct gguf_str s, const char *c)
{
    size_t n = strlen(c);
    return s.len == n && memcmp(s.ptr, c, n) == 0;
}

static bool vtype_numeric(enum gguf_vtype t)
{
    return gguf_vtype_size(t) != 0;
}

static bool vtype_integer(enum gguf_vtype t)
{
    return vtype_numeric(t) && t != GGUF_VT_FLOAT32 && t != GGUF_VT_FLOAT64 && t != GGUF_VT_BOOL;
}

/* Loads raw value p of type t; ints into *i (with *is_u64_big set when a
 * uint64 exceeds INT64_MAX), floats into *d. */
static double load_float(enum gguf_vtype t, const void *p)
{
    switch (t) {
    case GGUF_VT_FLOAT32: { float v; memcpy(&v, p, 4); return v; }
    case GGUF_VT_FLOAT64: { double v; memcpy(&v, p, 8); return v; }
    case GGUF_VT_UINT64: { uint64_t v; memcpy(&v, p, 8); return (double)v; }
    default: break;
    }
    return 0;
}

static int64_t load_int(enum gguf_vtype t, const void *p)
{
    switch (t) {
    case GGUF_VT_UINT8: case GGUF_VT_BOOL: return *(const uint8_t *)p;
    case GGUF_VT_INT8: return *(const int8_t *)p;
    case GGUF_VT_UINT16: { uint16_t v; memcpy(&v, p, 2); return v; }
    case GGUF_VT_INT16: { int16_t v; memcpy(&v, p, 2); return v; }
    case GGUF_VT_UINT32: { uint32_t v; memcpy(&v, p, 4); return v; }
    case GGUF_VT_INT32: { int32_t v; memcpy(&v, p, 4); return v; }
    case GGUF_VT_UINT64: { uint64_t v; memcpy(&v, p, 8); return (int64_t)v; }
    case GGUF_VT_INT64: { int64_t v; memcpy(&v, p, 8); return v; }
    case GGUF_VT_FLOAT32: case GGUF_VT_FLOAT64: {
        double d = load_float(t, p);
        if (!(d > -9.2233720368547758e18 && d < 9.2233720368547758e18))
            return d > 0 ? INT64_MAX : INT64_MIN; /* NaN gives INT64_MIN */
        return (int64_t)d;
    }
    default: break;
    }
    MAAS_ASSERT(!"not a numeric type");
    return 0;
}

static double load_any_float(enum gguf_vtype t, const void *p)
{
    if (t == GGUF_VT_FLOAT32 || t == GGUF_VT_FLOAT64 || t == GGUF_VT_UINT64)
        return load_float(t, p);
    return (double)load_int(t, p);
}

int64_t gguf_kv_int(const struct gguf_kv *kv)
{
    MAAS_ASSERT(vtype_numeric(kv->type));
    return load_int(kv->type, kv->val);
}

double gguf_kv_float(const struct gguf_kv *kv)
{
    MAAS_ASSERT(vtype_numeric(kv->type));
    return load_any_float(kv->type, kv->val);
}

int64_t gguf_arr_int(const struct gguf_kv *kv, uint64_t i)
{
    MAAS_ASSERT(kv->type == GGUF_VT_ARRAY && vtype_numeric(kv->arr_type) && i < kv->arr_n);
    return load_int(kv->arr_type, (const uint8_t *)kv->arr_data + i * gguf_vtype_size(kv->arr_type));
}

double gguf_arr_float(const struct gguf_kv *kv, uint64_t i)
{
    MAAS_ASSERT(kv->type == GGUF_VT_ARRAY && vtype_numeric(kv->arr_type) && i < kv->arr_n);
    return load_any_float(kv->arr_type, (const uint8_t *)kv->arr_data + i * gguf_vtype_size(kv->arr_type));
}

static const char *kv_type_desc(const struct gguf_kv *kv, char *buf, size_t cap)
{
    if (kv->type == GGUF_VT_ARRAY)
        snprintf(buf, cap, "array of %s", gguf_vtype_name(kv->arr_type));
    else
        snprintf(buf, cap, "%s", gguf_vtype_name(kv->type));
    return buf;
}

static int wrong_type(const struct gguf_file *f, const struct gguf_kv *kv, const char *want, struct err *e)
{
    char d[64];
    return err_set(e, ERR_CORRUPT, "%s: key '%s' has type %s, expected %s", f->name, kv->key, kv_type_desc(kv, d, sizeof d), want);
}

static int missing(const struct gguf_file *f, const char *key, struct err *e)
{
    return err_set(e, ERR_NOT_FOUND, "%s: key '%s' is missing", f->name, key);
}

int gguf_get_int(const struct gguf_file *f, const char *key, int64_t *out, struct err *e)
{
    const struct gguf_kv *kv = gguf_find_kv(f, key);
    if (!kv)
        return missing(f, key, e);
    if (!vtype_integer(kv->type))
        return wrong_type(f, kv, "an integer", e);
    if (kv->type == GGUF_VT_UINT64) {
        uint64_t v;
        memcpy(&v, kv->val, 8);
        if (v > (uint64_t)INT64_MAX)
            return err_set(e, ERR_CORRUPT, "%s: key '%s': value %" PRIu64 " does not fit in int64", f->name, key, v);
    }
    *out = load_int(kv->type, kv->val);
    return 0;
}

int gguf_get_float(const struct gguf_file *f, const char *key, double *out, struct err *e)
{
    const struct gguf_kv *kv = gguf_find_kv(f, key);
    if (!kv)
        return missing(f, key, e);
    if (kv->type != GGUF_VT_FLOAT32 && kv->type != GGUF_VT_FLOAT64)
        return wrong_type(f, kv, "float32 or float64", e);
    *out = load_float(kv->type, kv->val);
    return 0;
}

int gguf_get_bool(const struct gguf_file *f, const char *key, bool *out, struct err *e)
{
    const struct gguf_kv *kv = gguf_find_kv(f, key);
    if (!kv)
        return missing(f, key, e);
    if (kv->type != GGUF_VT_BOOL)
        return wrong_type(f, kv, "bool", e);
    *out = *(const uint8_t *)kv->val != 0;
    return 0;
}

int gguf_get_str(const struct gguf_file *f, const char *key, struct gguf_str *out, struct err *e)
{
    const struct gguf_kv *kv = gguf_find_kv(f, key);
    if (!kv)
        return missing(f, key, e);
    if (kv->type != GGUF_VT_STRING)
        return wrong_type(f, kv, "string", e);
    *out = kv->str;
    return 0;
}

int gguf_get_arr(const struct gguf_file *f, const char *key, enum gguf_vtype elem, const struct gguf_kv **out,
                 struct err *e)
{
    const struct gguf_kv *kv = gguf_find_kv(f, key);
    if (!kv)
        return missing(f, key, e);
    if (kv->type != GGUF_VT_ARRAY || (elem != GGUF_VT_COUNT && kv->arr_type != elem)) {
        char want[64];
        if (elem == GGUF_VT_COUNT)
            snprintf(want, sizeof want, "an array");
        else
            snprintf(want, sizeof want, "array of %s", gguf_vtype_name(elem));
        return wrong_type(f, kv, want, e);
    }
    *out = kv;
    return 0;
}
