/*
 * Writing GGUF v3 files in llama.cpp's layout: header, key/values in
 * insertion order, tensor infos in insertion order, zero padding to the
 * alignment (general.alignment if set, else 32), then each tensor's data at an
 * aligned offset followed by zero padding to the next one.
 *
 * Design: the writer owns copies of all metadata (so callers may pass
 * temporaries) and borrows tensor data until gguf_writer_write. Output goes
 * to PATH.tmp through one buffer, large tensor data straight to write(2);
 * the file is fsync'ed and renamed over PATH, then the directory is fsync'ed,
 * so PATH is either the old file or the complete new one.
 */
#include "gguf/gguf_int.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct wkv {
    char *key;              /* from malloc */
    enum gguf_vtype type;
    uint8_t scalar[8];      /* numeric and bool values, little-endian */
    char *str;              /* STRING: from malloc, str_len bytes (+ NUL) */
    uint64_t str_len;
    enum gguf_vtype arr_type;
    uint64_t arr_n;
    void *arr_data;         /* numeric arrays: from malloc, arr_n elements */
    struct gguf_str *arr_strs; /* string arrays: from malloc, pointing into arr_blob */
    char *arr_blob;         /* from malloc: the bytes of all strings of the array */
};

struct wtensor {
    char *name;             /* from malloc */
    enum ggml_type type;
    int n_dims;
    int64_t ne[GGUF_MAX_DIMS];
    const void *data;       /* borrowed until gguf_writer_write returns */
    uint64_t nbytes;
};

struct gguf_writer {
    struct wkv *kvs;        /* from malloc; n_kv used of cap_kv */
    size_t n_kv, cap_kv;
    struct wtensor *ts;     /* from malloc; n_ts used of cap_ts */
    size_t n_ts, cap_ts;
    struct nidx t_idx;      /* tensor names */
};

struct gguf_writer *gguf_writer_new(void)
{
    return calloc(1, sizeof(struct gguf_writer));
}

static void wkv_release(struct wkv *kv)
{
    free(kv->str);
    free(kv->arr_data);
    free(kv->arr_strs);
    free(kv->arr_blob);
}

void gguf_writer_free(struct gguf_writer *w)
{
    if (!w)
        return;
    for (size_t i = 0; i < w->n_kv; i++) {
        free(w->kvs[i].key);
        wkv_release(&w->kvs[i]);
    }
    for (size_t i = 0; i < w->n_ts; i++)
        free(w->ts[i].name);
    free(w->kvs);
    free(w->ts);
    nidx_release(&w->t_idx);
    free(w);
}

static struct wkv *find_wkv(struct gguf_writer *w, const char *key)
{
    for (size_t i = 0; i < w->n_kv; i++)
        if (!strcmp(w->kvs[i].key, key))
            return &w->kvs[i];
    return NULL;
}

/* Installs a prepared value (its key field unset) under key: replaces the
 * value of an existing key in place, else appends. On failure (out of memory,
 * or a key that is empty or longer than 65535 bytes) v is released. */
static int put(struct gguf_writer *w, const char *key, struct wkv *v)
{
    size_t klen = strlen(key);
    if (klen == 0 || klen > 65535) /* what the reader (and the spec) accepts */
        goto fail;
    struct wkv *old = find_wkv(w, key);
    if (old) {
        v->key = old->key;
        wkv_release(old);
        *old = *v;
        return 0;
    }
    if (w->n_kv == w->cap_kv) {
        size_t cap = w->cap_kv ? w->cap_kv * 2 : 16;
        struct wkv *kvs = realloc(w->kvs, cap * sizeof *kvs);
        if (!kvs)
            goto fail;
        w->kvs = kvs;
        w->cap_kv = cap;
    }
    v->key = strdup(key);
    if (!v->key)
        goto fail;
    w->kvs[w->n_kv++] = *v;
    return 0;
fail:
    wkv_release(v);
    return -1;
}

int gguf_writer_set_val(struct gguf_writer *w, const char *key, enum gguf_vtype type, const void *val)
{
    size_t sz = gguf_vtype_size(type);
    MAAS_ASSERT(sz != 0);
    struct wkv v = {.type = type};
    memcpy(v.scalar, val, sz);
    if (type == GGUF_VT_BOOL)
        v.scalar[0] = v.scalar[0] != 0;
    return put(w, key, &v);
}

int gguf_writer_set_u32(struct gguf_writer *w, const char *key, uint32_t v)
{
    return gguf_writer_set_val(w, key, GGUF_VT_UINT32, &v);
}

int gguf_writer_set_i32(struct gguf_writer *w, const char *key, int32_t v)
{
    return gguf_writer_set_val(w, key, GGUF_VT_INT32, &v);
}

int gguf_writer_set_u64(struct gguf_writer *w, const char *key, uint64_t v)
{
    return gguf_writer_set_val(w, key, GGUF_VT_UINT64, &v);
}

int gguf_writer_set_f32(struct gguf_writer *w, const char *key, float v)
{
    return gguf_writer_set_val(w, key, GGUF_VT_FLOAT32, &v);
}

int gguf_writer_set_bool(struct gguf_writer *w, const char *key, bool v)
{
    uint8_t b = v;
    return gguf_writer_set_val(w, key, GGUF_VT_BOOL, &b);
}

int gguf_writer_set_strn(struct gguf_writer *w, const char *key, const char *v, uint64_t len)
{
    struct wkv kv = {.type = GGUF_VT_STRING, .str_len = len};
    if (len >= SIZE_MAX || !(kv.str = malloc((size_t)len + 1)))
        return -1;
    if (len)
        memcpy(kv.str, v, (size_t)len);
    kv.str[len] = '\0';
    return put(w, key, &kv);
}

int gguf_writer_set_str(struct gguf_writer *w, const char *key, const char *v)
{
    return gguf_writer_set_strn(w, key, v, strlen(v));
}

int gguf_writer_set_arr(struct gguf_writer *w, const char *key, enum gguf_vtype elem, const void *data, uint64_t n)
{
    size_t sz = gguf_vtype_size(elem);
    MAAS_ASSERT(sz != 0);
    struct wkv kv = {.type = GGUF_VT_ARRAY, .arr_type = elem, .arr_n = n};
    if (n > SIZE_MAX / sz)
        return -1;
    if (n) {
        if (!(kv.arr_data = malloc((size_t)n * sz)))
            return -1;
        memcpy(kv.arr_data, data, (size_t)n * sz);
        if (elem == GGUF_VT_BOOL)
            for (uint64_t i = 0; i < n; i++)
                ((uint8_t *)kv.arr_data)[i] = ((uint8_t *)kv.arr_data)[i] != 0;
    }
    return put(w, key, &kv);
}

int gguf_writer_set_arr_str(struct gguf_writer *w, const char *key, const struct gguf_str *strs, uint64_t n)
{
    struct wkv kv = {.type = GGUF_VT_ARRAY, .arr_type = GGUF_VT_STRING, .arr_n = n};
    uint64_t total = 0;
    if (n > SIZE_MAX / sizeof(struct gguf_str))
        return -1;
    for (uint64_t i = 0; i < n; i++)
        if (__builtin_add_overflow(total, strs[i].len, &total) || total >= SIZE_MAX)
            return -1;
    if (n) {
        kv.arr_strs = malloc((size_t)n * sizeof *kv.arr_strs);
        kv.arr_blob = malloc((size_t)total + 1);
        if (!kv.arr_strs || !kv.arr_blob) {
            wkv_release(&kv);
            return -1;
        }
        char *p = kv.arr_blob;
        for (uint64_t i = 0; i < n; i++) {
            if (strs[i].len)
                memcpy(p, strs[i].ptr, (size_t)strs[i].len);
            kv.arr_strs[i].ptr = p;
            kv.arr_strs[i].len = strs[i].len;
            p += strs[i].len;
        }
    }
    return put(w, key, &kv);
}

int gguf_writer_copy_kv(struct gguf_writer *w, const struct gguf_kv *kv)
{
    switch (kv->type) {
    case GGUF_VT_STRING:
        return gguf_writer_set_strn(w, kv->key, kv->str.ptr, kv->str.len);
    case GGUF_VT_ARRAY:
        if (kv->arr_type == GGUF_VT_STRING)
            return gguf_writer_set_arr_str(w, kv->key, kv->arr_strs, kv->arr_n);
        return gguf_writer_set_arr(w, kv->key, kv->arr_type, kv->arr_data, kv->arr_n);
    default:
        return gguf_writer_set_val(w, kv->key, kv->type, kv->val);
    }
}

int gguf_writer_remove(struct gguf_writer *w, const char *key)
{
    struct wkv *kv = find_wkv(w, key);
    if (!kv)
        return 0;
    size_t i = (size_t)(kv - w->kvs);
    free(kv->key);
    wkv_release(kv);
    memmove(&w->kvs[i], &w->kvs[i + 1], (w->n_kv - i - 1) * sizeof *w->kvs);
    w->n_kv--;
    return 0;
}

static bool wtensor_eq(const void *ctx, uint32_t idx, const char *s, size_t len)
{
    const char *n = ((const struct gguf_writer *)ctx)->ts[idx].name;
    return strncmp(n, s, len) == 0 && n[len] == '\0';
}

int gguf_writer_add_tensor(struct gguf_writer *w, const char *name, enum ggml_type type, int n_dims,
                           const int64_t *ne, const void *data, uint64_t nbytes, struct err *e)
{
    size_t len = strlen(name);
    if (len == 0)
        return err_set(e, ERR_INVALID, "gguf writer: empty tensor name");
    if (len > 65536)
        return err_set(e, ERR_INVALID, "gguf writer: tensor name of %zu bytes is longer than 65536", len);
    if (nidx_find(&w->t_idx, name, len, wtensor_eq, w) >= 0)
        return err_set(e, ERR_INVALID, "gguf writer: tensor '%s': duplicate name", name);
    if (!ggml_type_known((uint32_t)type))
        return err_set(e, ERR_INVALID, "gguf writer: tensor '%s': unknown type %d", name, (int)type);
    if (n_dims < 1 || n_dims > GGUF_MAX_DIMS)
        return err_set(e, ERR_INVALID, "gguf writer: tensor '%s': n_dims %d is not in 1..%d", name, n_dims, GGUF_MAX_DIMS);
    struct wtensor t = {.type = type, .n_dims = n_dims, .data = data, .nbytes = nbytes};
    uint64_t nel = 1;
    for (int d = 0; d < GGUF_MAX_DIMS; d++) {
        t.ne[d] = d < n_dims ? ne[d] : 1;
        if (t.ne[d] <= 0)
            return err_set(e, ERR_INVALID, "gguf writer: tensor '%s': ne[%d] = %" PRId64 " is not positive", name, d, t.ne[d]);
        if (__builtin_mul_overflow(nel, (uint64_t)t.ne[d], &nel) || nel > (uint64_t)INT64_MAX)
            return err_set(e, ERR_INVALID, "gguf writer: tensor '%s': element count overflows", name);
    }
    int64_t blck = ggml_blck_size(type);
    if (t.ne[0] % blck)
        return err_set(e, ERR_INVALID, "gguf writer: tensor '%s': row length %" PRId64 " is not a multiple of the %s block size %" PRId64,
                       name, t.ne[0], ggml_type_name(type), blck);
    uint64_t want;
    if (__builtin_mul_overflow((uint64_t)ggml_row_size(type, t.ne[0]), nel / (uint64_t)t.ne[0], &want))
        return err_set(e, ERR_INVALID, "gguf writer: tensor '%s': byte size overflows", name);
    if (want != nbytes)
        return err_set(e, ERR_INVALID, "gguf writer: tensor '%s': %" PRIu64 " bytes given, %s of this shape takes %" PRIu64, name,
                       nbytes, ggml_type_name(type), want);
    if (!data)
        return err_set(e, ERR_INVALID, "gguf writer: tensor '%s': no data", name);
    if (w->n_ts >= UINT32_MAX - 1)
        return err_set(e, ERR_INVALID, "gguf writer: tensor '%s': too many tensors", name);
    if (w->n_ts == w->cap_ts) {
        size_t cap = w->cap_ts ? w->cap_ts * 2 : 64;
        struct wtensor *ts = realloc(w->ts, cap * sizeof *ts);
        if (!ts)
            return err_set(e, ERR_NOMEM, "gguf writer: out of memory");
        w->ts = ts;
        w->cap_ts = cap;
    }
    if (nidx_reserve(&w->t_idx, w->n_ts + 1) || !(t.name = strdup(name)))
        return err_set(e, ERR_NOMEM, "gguf writer: out of memory");
    w->ts[w->n_ts] = t;
    nidx_insert(&w->t_idx, nidx_hash(name, len), (uint32_t)w->n_ts);
    w->n_ts++;
    return 0;
}

/* ---- output ---- */

#define WBUF_SIZE (1u << 20)

struct wout {
    int fd;
    const char *path;  /* the temporary file, for messages */
    uint8_t *buf;      /* from malloc, WBUF_SIZE */
    size_t n;
    uint64_t written;  /* bytes of the file so far (buffered included) */
    int err;           /* errno of the first failure, 0 if none */
};

static void write_all(struct wout *o, const void *p, size_t n)
{
    const uint8_t *b = p;
    while (n && !o->err) {
        ssize_t k = write(o->fd, b, n > (1u << 30) ? (1u << 30) : n);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            o->err = errno;
        } else if (k == 0) {
            o->err = EIO;
        } else {
            b += k;
            n -= (size_t)k;
        }
    }
}

static void out_flush(struct wout *o)
{
    write_all(o, o->buf, o->n);
    o->n = 0;
}

static void out_bytes(struct wout *o, const void *p, uint64_t n)
{
    o->written += n;
    if (n >= WBUF_SIZE / 2) {
        out_flush(o);
        write_all(o, p, (size_t)n);
        return;
    }
    if (o->n + n > WBUF_SIZE)
        out_flush(o);
    memcpy(o->buf + o->n, p, (size_t)n);
    o->n += (size_t)n;
}

static void out_u32(struct wout *o, uint32_t v) { out_bytes(o, &v, 4); }
static void out_u64(struct wout *o, uint64_t v) { out_bytes(o, &v, 8); }

static void out_str(struct wout *o, const char *s, uint64_t len)
{
    out_u64(o, len);
    if (len)
        out_bytes(o, s, len);
}

static void out_pad(struct wout *o, uint64_t align)
{
    static const uint8_t zeros[256];
    uint64_t pad = (align - o->written % align) % align;
    while (pad) {
        uint64_t k = pad > sizeof zeros ? sizeof zeros : pad;
        out_bytes(o, zeros, k);
        pad -= k;
    }
}

static void out_kv(struct wout *o, const struct wkv *kv)
{
    out_str(o, kv->key, strlen(kv->key));
    out_u32(o, (uint32_t)kv->type);
    switch (kv->type) {
    case GGUF_VT_STRING:
        out_str(o, kv->str, kv->str_len);
        break;
    case GGUF_VT_ARRAY:
        out_u32(o, (uint32_t)kv->arr_type);
        out_u64(o, kv->arr_n);
        if (kv->arr_type == GGUF_VT_STRING)
            for (uint64_t i = 0; i < kv->arr_n; i++)
                out_str(o, kv->arr_strs[i].ptr, kv->arr_strs[i].len);
        else if (kv->arr_n)
            out_bytes(o, kv->arr_data, kv->arr_n * gguf_vtype_size(kv->arr_type));
        break;
    default:
        out_bytes(o, kv->scalar, gguf_vtype_size(kv->type));
        break;
    }
}

static int writer_alignment(struct gguf_writer *w, uint64_t *align, const char *path, struct err *e)
{
    const struct wkv *kv = find_wkv(w, "general.alignment");
    *align = GGUF_DEFAULT_ALIGNMENT;
    if (!kv)
        return 0;
    uint32_t a;
    memcpy(&a, kv->scalar, 4);
    if (kv->type != GGUF_VT_UINT32 || a == 0 || (a & (a - 1)))
        return err_set(e, ERR_INVALID, "%s: general.alignment must be a uint32 power of two", path);
    *align = a;
    return 0;
}

/* fsyncs the directory holding path, so that the rename is durable. */
static int sync_dir(const char *path, struct err *e)
{
    char *copy = strdup(path);
    if (!copy)
        return err_set(e, ERR_NOMEM, "%s: out of memory", path);
    const char *dir = dirname(copy);
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int rc = 0;
    if (fd < 0 || fsync(fd) != 0)
        rc = err_set(e, ERR_IO, "%s: cannot sync directory: %s", dir, strerror(errno));
    if (fd >= 0)
        close(fd);
    free(copy);
    return rc;
}

int gguf_writer_write(struct gguf_writer *w, const char *path, struct err *e)
{
    uint64_t align;
    if (writer_alignment(w, &align, path, e))
        return -1;
    size_t plen = strlen(path);
    char *tmp = malloc(plen + 5);
    struct wout o = {.fd = -1};
    bool created = false;
    int rc = -1;
    if (!tmp || !(o.buf = malloc(WBUF_SIZE))) {
        err_set(e, ERR_NOMEM, "%s: out of memory", path);
        goto out;
    }
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp", 5);
    o.path = tmp;
    o.fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (o.fd < 0) {
        err_set(e, ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
        goto out;
    }
    created = true;

    out_bytes(&o, "GGUF", 4);
    out_u32(&o, 3);
    out_u64(&o, w->n_ts);
    out_u64(&o, w->n_kv);
    for (size_t i = 0; i < w->n_kv; i++)
        out_kv(&o, &w->kvs[i]);
    uint64_t off = 0;
    for (size_t i = 0; i < w->n_ts; i++) {
        const struct wtensor *t = &w->ts[i];
        out_str(&o, t->name, strlen(t->name));
        out_u32(&o, (uint32_t)t->n_dims);
        for (int d = 0; d < t->n_dims; d++)
            out_u64(&o, (uint64_t)t->ne[d]);
        out_u32(&o, (uint32_t)t->type);
        out_u64(&o, off);
        off += (t->nbytes + align - 1) / align * align;
    }
    out_pad(&o, align);
    for (size_t i = 0; i < w->n_ts && !o.err; i++) {
        out_bytes(&o, w->ts[i].data, w->ts[i].nbytes);
        out_pad(&o, align);
    }
    out_flush(&o);
    if (o.err) {
        err_set(e, ERR_IO, "%s: write failed: %s", tmp, strerror(o.err));
        goto out;
    }
    if (fsync(o.fd) != 0) {
        err_set(e, ERR_IO, "%s: fsync failed: %s", tmp, strerror(errno));
        goto out;
    }
    int fd = o.fd;
    o.fd = -1;
    if (close(fd) != 0) {
        err_set(e, ERR_IO, "%s: close failed: %s", tmp, strerror(errno));
        goto out;
    }
    if (rename(tmp, path) != 0) {
        err_set(e, ERR_IO, "%s: cannot rename to %s: %s", tmp, path, strerror(errno));
        goto out;
    }
    free(tmp);
    tmp = NULL;
    rc = sync_dir(path, e);
out:
    if (o.fd >= 0)
        close(o.fd);
    if (rc != 0 && created && tmp)
        unlink(tmp);
    free(tmp);
    free(o.buf);
    return rc;
}
