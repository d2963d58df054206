/* gguf: corrupt, truncated and hostile inputs are refused with one clear line
 * and never read outside the bytes given (ASan watches every case, and each
 * input sits in a malloc block of exactly its size). */
#include "gguf/gguf.h"
#include "test.h"

#include <stdint.h>
#include <unistd.h>

/* ---- building files by hand ---- */

struct bb {
    uint8_t *p;
    size_t n, cap;
};

static void put(struct bb *b, const void *x, size_t n)
{
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        if (!b->p)
            abort();
    }
    memcpy(b->p + b->n, x, n);
    b->n += n;
}
static void u32(struct bb *b, uint32_t v) { put(b, &v, 4); }
static void u64(struct bb *b, uint64_t v) { put(b, &v, 8); }
static void u8(struct bb *b, uint8_t v) { put(b, &v, 1); }
static void str(struct bb *b, const char *s)
{
    u64(b, strlen(s));
    put(b, s, strlen(s));
}
static void pad(struct bb *b, size_t a)
{
    while (b->n % a)
        u8(b, 0);
}
static void hdr(struct bb *b, uint32_t version, uint64_t n_tensors, uint64_t n_kv)
{
    put(b, "GGUF", 4);
    u32(b, version);
    u64(b, n_tensors);
    u64(b, n_kv);
}
static void kv_u32(struct bb *b, const char *key, uint32_t v)
{
    str(b, key);
    u32(b, GGUF_VT_UINT32);
    u32(b, v);
}
static void tinfo(struct bb *b, const char *name, uint32_t n_dims, const uint64_t *ne, uint32_t type, uint64_t off)
{
    str(b, name);
    u32(b, n_dims);
    for (uint32_t i = 0; i < n_dims; i++)
        u64(b, ne[i]);
    u32(b, type);
    u64(b, off);
}

/* Opens bytes from an exactly sized copy. */
static struct gguf_file *open_copy(const uint8_t *p, size_t n, struct err *e)
{
    uint8_t *c = malloc(n ? n : 1);
    if (n)
        memcpy(c, p, n);
    struct gguf_file *f = gguf_open_mem(c, n, "test.gguf", e);
    if (f) {
        gguf_close(f);
        f = (struct gguf_file *)1; /* callers only test for success */
    }
    free(c);
    return f;
}

/* Expects the file in b to be refused with a message holding every needle. */
static void expect_fail_(struct bb *b, const char *const *needles, const char *file, int line)
{
    struct err e = {0};
    struct gguf_file *f = open_copy(b->p, b->n, &e);
    if (f) {
        fprintf(stderr, "  %s:%d: file was accepted\n", file, line);
        test_failed_checks++;
    } else {
        if (strncmp(e.msg, "test.gguf: ", 11) != 0 || strchr(e.msg, '\n')) {
            fprintf(stderr, "  %s:%d: message not one line starting with the name: %s\n", file, line, e.msg);
            test_failed_checks++;
        }
        for (; *needles; needles++)
            if (!strstr(e.msg, *needles)) {
                fprintf(stderr, "  %s:%d: message lacks '%s': %s\n", file, line, *needles, e.msg);
                test_failed_checks++;
            }
    }
    free(b->p);
    *b = (struct bb){0};
}
#define EXPECT_FAIL(b, ...) expect_fail_((b), (const char *const[]){__VA_ARGS__, NULL}, __FILE__, __LINE__)

static void expect_ok_(struct bb *b, const char *file, int line)
{
    struct err e = {0};
    if (!open_copy(b->p, b->n, &e)) {
        fprintf(stderr, "  %s:%d: refused: %s\n", file, line, e.msg);
        test_failed_checks++;
    }
    free(b->p);
    *b = (struct bb){0};
}
#define EXPECT_OK(b) expect_ok_((b), __FILE__, __LINE__)

/* A valid file with one f32 tensor [ne0] named "w" (data zero). */
static void one_tensor(struct bb *b, uint32_t version, uint64_t ne0)
{
    hdr(b, version, 1, 1);
    kv_u32(b, "general.x", 1);
    tinfo(b, "w", 1, (uint64_t[]){ne0}, GGML_TYPE_F32, 0);
    pad(b, 32);
    for (uint64_t i = 0; i < ne0 * 4; i++)
        u8(b, 0);
}

TEST(hand_made_valid_files)
{
    struct bb b = {0};
    one_tensor(&b, 3, 8);
    EXPECT_OK(&b);
    one_tensor(&b, 2, 8); /* v2 has the same layout */
    EXPECT_OK(&b);
    hdr(&b, 3, 0, 0); /* nothing at all */
    EXPECT_OK(&b);
}

TEST(header_errors)
{
    struct bb b = {0};
    put(&b, "GGUX", 4);
    u32(&b, 3);
    u64(&b, 0);
    u64(&b, 0);
    EXPECT_FAIL(&b, "not a GGUF file", "magic", "offset 0");
    put(&b, "GG", 2);
    EXPECT_FAIL(&b, "not a GGUF file");
    hdr(&b, 1, 0, 0);
    EXPECT_FAIL(&b, "version 1 is not supported", "offset 4");
    hdr(&b, 4, 0, 0);
    EXPECT_FAIL(&b, "version 4", "offset 4");
    hdr(&b, 0, 0, 0);
    EXPECT_FAIL(&b, "version 0");
    hdr(&b, 0x03000000u, 0, 0);
    EXPECT_FAIL(&b, "big-endian");
    put(&b, "GGUF\3\0\0\0\0\0", 10);
    EXPECT_FAIL(&b, "tensor count", "runs past end of file");
}

TEST(hostile_counts)
{
    struct bb b = {0};
    hdr(&b, 3, 0, UINT64_MAX);
    kv_u32(&b, "a", 1);
    EXPECT_FAIL(&b, "key/value count 18446744073709551615", "impossible");
    hdr(&b, 3, 0, 1ull << 63);
    EXPECT_FAIL(&b, "key/value count 9223372036854775808");
    hdr(&b, 3, UINT64_MAX, 0);
    tinfo(&b, "w", 1, (uint64_t[]){1}, 0, 0);
    EXPECT_FAIL(&b, "tensor count 18446744073709551615", "impossible");
    hdr(&b, 3, 2, 0); /* two tensor infos cannot fit in the bytes of one */
    tinfo(&b, "w", 1, (uint64_t[]){1}, 0, 0);
    EXPECT_FAIL(&b, "tensor count 2");
    /* huge array lengths */
    hdr(&b, 3, 0, 1);
    str(&b, "arr");
    u32(&b, GGUF_VT_ARRAY);
    u32(&b, GGUF_VT_UINT32);
    u64(&b, 1ull << 62);
    u32(&b, 0);
    EXPECT_FAIL(&b, "key 'arr'", "array of 4611686018427387904 uint32", "runs past end of file");
    hdr(&b, 3, 0, 1);
    str(&b, "arr");
    u32(&b, GGUF_VT_ARRAY);
    u32(&b, GGUF_VT_STRING);
    u64(&b, UINT64_MAX);
    u64(&b, 0);
    EXPECT_FAIL(&b, "key 'arr'", "array of 18446744073709551615 strings");
}

TEST(string_errors)
{
    struct bb b = {0};
    hdr(&b, 3, 0, 1);
    u64(&b, 1000); /* key length past EOF */
    put(&b, "abcdefghijklmnopqrstuvwxyz", 26);
    EXPECT_FAIL(&b, "key of 1000 bytes runs past end of file", "offset 24");
    hdr(&b, 3, 0, 1);
    str(&b, "general.name");
    u32(&b, GGUF_VT_STRING);
    u64(&b, 1ull << 63);
    put(&b, "abc", 3);
    EXPECT_FAIL(&b, "key 'general.name'", "string value of 9223372036854775808 bytes runs past end of file");
    hdr(&b, 3, 0, 1);
    str(&b, "toks");
    u32(&b, GGUF_VT_ARRAY);
    u32(&b, GGUF_VT_STRING);
    u64(&b, 3);
    str(&b, "a");
    str(&b, "b");
    u64(&b, 5);
    put(&b, "cc", 2);
    EXPECT_FAIL(&b, "key 'toks'", "string 2 of 3", "runs past end of file");
    hdr(&b, 3, 0, 1);
    str(&b, "");
    u32(&b, GGUF_VT_UINT8);
    u8(&b, 1);
    u8(&b, 0);
    EXPECT_FAIL(&b, "empty key");
    hdr(&b, 3, 0, 1);
    u64(&b, 3);
    put(&b, "a\0b", 3);
    u32(&b, GGUF_VT_UINT8);
    u8(&b, 1);
    EXPECT_FAIL(&b, "key contains a NUL byte");
}

TEST(value_type_errors)
{
    struct bb b = {0};
    hdr(&b, 3, 0, 1);
    str(&b, "k");
    u32(&b, 13);
    u32(&b, 0);
    EXPECT_FAIL(&b, "key 'k'", "unknown value type 13", "offset 33");
    hdr(&b, 3, 0, 1);
    str(&b, "k");
    u32(&b, GGUF_VT_ARRAY);
    u32(&b, 99);
    u64(&b, 0);
    EXPECT_FAIL(&b, "key 'k'", "unknown array element type 99");
    hdr(&b, 3, 0, 1); /* arrays of arrays: refused clearly */
    str(&b, "nested");
    u32(&b, GGUF_VT_ARRAY);
    u32(&b, GGUF_VT_ARRAY);
    u64(&b, 1);
    u32(&b, GGUF_VT_UINT8);
    u64(&b, 1);
    u8(&b, 0);
    EXPECT_FAIL(&b, "key 'nested'", "arrays of arrays are not supported");
    hdr(&b, 3, 0, 1);
    str(&b, "flag");
    u32(&b, GGUF_VT_BOOL);
    u8(&b, 2);
    EXPECT_FAIL(&b, "key 'flag'", "bool value 2");
    hdr(&b, 3, 0, 1);
    str(&b, "flags");
    u32(&b, GGUF_VT_ARRAY);
    u32(&b, GGUF_VT_BOOL);
    u64(&b, 3);
    put(&b, "\1\0\7", 3);
    EXPECT_FAIL(&b, "key 'flags'", "element 2 is 7");
    hdr(&b, 3, 0, 1);
    str(&b, "x");
    u32(&b, GGUF_VT_FLOAT64);
    u32(&b, 0); /* 4 of 8 bytes */
    EXPECT_FAIL(&b, "key 'x'", "float64 value", "runs past end of file");
    hdr(&b, 3, 0, 2);
    kv_u32(&b, "same", 1);
    kv_u32(&b, "same", 2);
    EXPECT_FAIL(&b, "key 'same'", "duplicate key", "offset 44");
}

TEST(alignment_errors)
{
    struct bb b = {0};
    hdr(&b, 3, 0, 1);
    kv_u32(&b, "general.alignment", 0);
    EXPECT_FAIL(&b, "general.alignment", "0 is not a power of two");
    hdr(&b, 3, 0, 1);
    kv_u32(&b, "general.alignment", 3);
    EXPECT_FAIL(&b, "general.alignment", "3 is not a power of two");
    hdr(&b, 3, 0, 1);
    str(&b, "general.alignment");
    u32(&b, GGUF_VT_UINT64);
    u64(&b, 64);
    EXPECT_FAIL(&b, "general.alignment", "has type uint64, must be uint32");
    hdr(&b, 3, 0, 1);
    str(&b, "general.alignment");
    u32(&b, GGUF_VT_STRING);
    str(&b, "32");
    EXPECT_FAIL(&b, "general.alignment", "has type string");
    /* alignment 64 and a tensor at offset 32: misaligned */
    hdr(&b, 3, 2, 1);
    kv_u32(&b, "general.alignment", 64);
    tinfo(&b, "a", 1, (uint64_t[]){8}, GGML_TYPE_F32, 0);
    tinfo(&b, "b", 1, (uint64_t[]){8}, GGML_TYPE_F32, 32);
    pad(&b, 64);
    for (int i = 0; i < 128; i++)
        u8(&b, 0);
    EXPECT_FAIL(&b, "tensor 'b'", "offset 32 is not a multiple of the alignment 64");
    /* the same with offset 64 is fine */
    hdr(&b, 3, 2, 1);
    kv_u32(&b, "general.alignment", 64);
    tinfo(&b, "a", 1, (uint64_t[]){8}, GGML_TYPE_F32, 0);
    tinfo(&b, "b", 1, (uint64_t[]){8}, GGML_TYPE_F32, 64);
    pad(&b, 64);
    for (int i = 0; i < 128; i++)
        u8(&b, 0);
    EXPECT_OK(&b);
}

TEST(tensor_info_errors)
{
    struct bb b = {0};
    hdr(&b, 3, 1, 0);
    tinfo(&b, "w", 1, (uint64_t[]){32}, 4, 0);
    EXPECT_FAIL(&b, "tensor 'w'", "unknown tensor type 4");
    hdr(&b, 3, 1, 0);
    tinfo(&b, "w", 1, (uint64_t[]){32}, 40, 0);
    EXPECT_FAIL(&b, "tensor 'w'", "unknown tensor type 40");
    hdr(&b, 3, 1, 0);
    tinfo(&b, "w", 0, NULL, 0, 0);
    u64(&b, 0);
    u64(&b, 0);
    EXPECT_FAIL(&b, "tensor 'w'", "n_dims 0 is not in 1..4");
    hdr(&b, 3, 1, 0);
    tinfo(&b, "w", 5, (uint64_t[]){1, 1, 1, 1, 1}, 0, 0);
    EXPECT_FAIL(&b, "tensor 'w'", "n_dims 5");
    hdr(&b, 3, 1, 0);
    tinfo(&b, "w", 2, (uint64_t[]){4, 0}, 0, 0);
    EXPECT_FAIL(&b, "tensor 'w'", "ne[1] is 0");
    hdr(&b, 3, 1, 0);
    tinfo(&b, "w", 2, (uint64_t[]){4, (uint64_t)-3}, 0, 0);
    EXPECT_FAIL(&b, "tensor 'w'", "ne[1] is negative (-3)");
    hdr(&b, 3, 1, 0);
    tinfo(&b, "w", 3, (uint64_t[]){1ull << 32, 1ull << 20, 1ull << 12}, 0, 0);
    EXPECT_FAIL(&b, "tensor 'w'", "element count overflows at ne[2]");
    hdr(&b, 3, 1, 0); /* elements fit in int64, bytes do not */
    tinfo(&b, "w", 1, (uint64_t[]){1ull << 62}, GGML_TYPE_F64, 0);
    EXPECT_FAIL(&b, "tensor 'w'", "byte size", "overflows");
    hdr(&b, 3, 1, 0);
    tinfo(&b, "w", 2, (uint64_t[]){33, 2}, GGML_TYPE_Q8_0, 0);
    EXPECT_FAIL(&b, "tensor 'w'", "ne[0] = 33 is not a multiple of the q8_0 block size 32");
    hdr(&b, 3, 1, 0);
    tinfo(&b, "w", 1, (uint64_t[]){128}, GGML_TYPE_Q4_K, 0);
    EXPECT_FAIL(&b, "tensor 'w'", "q4_k block size 256");
    hdr(&b, 3, 1, 0);
    tinfo(&b, "", 1, (uint64_t[]){1}, 0, 0);
    u8(&b, 0);
    EXPECT_FAIL(&b, "empty tensor name");
    hdr(&b, 3, 2, 0);
    tinfo(&b, "w", 1, (uint64_t[]){8}, 0, 0);
    tinfo(&b, "w", 1, (uint64_t[]){8}, 0, 32);
    pad(&b, 32);
    for (int i = 0; i < 64; i++)
        u8(&b, 0);
    EXPECT_FAIL(&b, "tensor 'w'", "duplicate tensor name");
    /* a long name is fine up to 64 KiB, refused beyond */
    static char longname[65538];
    memset(longname, 'x', 65536);
    longname[65536] = '\0';
    hdr(&b, 3, 1, 0);
    tinfo(&b, longname, 1, (uint64_t[]){1}, 0, 0);
    pad(&b, 32);
    u32(&b, 0);
    EXPECT_OK(&b);
    longname[65536] = 'x';
    hdr(&b, 3, 1, 0);
    tinfo(&b, longname, 1, (uint64_t[]){1}, 0, 0);
    pad(&b, 32);
    u32(&b, 0);
    EXPECT_FAIL(&b, "tensor name of 65537 bytes is longer than 65536");
    /* names in messages are escaped and cut short */
    hdr(&b, 3, 1, 0);
    tinfo(&b, "bad\x01name", 1, (uint64_t[]){1}, 99, 0);
    EXPECT_FAIL(&b, "tensor 'bad\\x01name'", "unknown tensor type 99");
}

TEST(tensor_data_errors)
{
    struct bb b = {0};
    one_tensor(&b, 3, 8);
    b.n -= 1; /* last byte of data missing */
    size_t n = b.n;
    char want[128];
    snprintf(want, sizeof want, "+ 32 bytes runs past end of file (%zu bytes)", n);
    EXPECT_FAIL(&b, "tensor 'w': data at offset", want);
    hdr(&b, 3, 1, 0);
    tinfo(&b, "blk.3.attn_q.weight", 2, (uint64_t[]){64, 64}, GGML_TYPE_F32, 0);
    pad(&b, 32);
    EXPECT_FAIL(&b, "tensor 'blk.3.attn_q.weight': data at offset 96 + 16384 bytes runs past end of file (96 bytes)");
    hdr(&b, 3, 1, 0);
    tinfo(&b, "w", 1, (uint64_t[]){8}, GGML_TYPE_F32, UINT64_MAX - 31);
    pad(&b, 32);
    EXPECT_FAIL(&b, "tensor 'w'", "data offset 18446744073709551584 + data section start 64 overflows", "offset 49");
    hdr(&b, 3, 1, 0);
    tinfo(&b, "w", 1, (uint64_t[]){8}, GGML_TYPE_F32, 1ull << 40);
    pad(&b, 32);
    EXPECT_FAIL(&b, "tensor 'w': data at offset 1099511627840 + 32 bytes runs past end of file (64 bytes)");
    hdr(&b, 3, 1, 0);
    tinfo(&b, "w", 1, (uint64_t[]){8}, GGML_TYPE_F32, 4);
    pad(&b, 32);
    for (int i = 0; i < 64; i++)
        u8(&b, 0);
    EXPECT_FAIL(&b, "tensor 'w'", "data offset 4 is not a multiple of the alignment 32", "(at offset 49)");
}

/* ---- a small valid file written by the writer, then damaged ---- */

static uint8_t *sample_file(size_t *n)
{
    char dir[] = "/tmp/maas_gguf_corrupt.XXXXXX", path[128];
    if (!mkdtemp(dir))
        return NULL;
    snprintf(path, sizeof path, "%s/s.gguf", dir);
    struct gguf_writer *w = gguf_writer_new();
    struct err e = {0};
    struct gguf_str toks[3] = {{"<s>", 3}, {"", 0}, {"h\xc3\xa9", 3}};
    float scores[3] = {0, -1, -2};
    uint8_t bools[2] = {1, 0};
    static float data[8 + 16];
    static uint8_t q8[34 * 2];
    for (int i = 0; i < 24; i++)
        data[i] = (float)i;
    gguf_writer_set_str(w, "general.architecture", "llama");
    gguf_writer_set_u32(w, "llama.block_count", 2);
    gguf_writer_set_f32(w, "llama.rope.freq_base", 10000.0f);
    gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", true);
    gguf_writer_set_u64(w, "u64", 77);
    gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", toks, 3);
    gguf_writer_set_arr(w, "tokenizer.ggml.scores", GGUF_VT_FLOAT32, scores, 3);
    gguf_writer_set_arr(w, "bools", GGUF_VT_BOOL, bools, 2);
    gguf_writer_add_tensor(w, "a", GGML_TYPE_F32, 1, (int64_t[]){8}, data, 32, &e);
    gguf_writer_add_tensor(w, "q", GGML_TYPE_Q8_0, 2, (int64_t[]){32, 2}, q8, sizeof q8, &e);
    /* last tensor 64 bytes: the file ends exactly where its data does */
    gguf_writer_add_tensor(w, "b", GGML_TYPE_F32, 2, (int64_t[]){4, 4}, data + 8, 64, &e);
    uint8_t *buf = NULL;
    if (gguf_writer_write(w, path, &e) == 0) {
        FILE *fp = fopen(path, "rb");
        fseek(fp, 0, SEEK_END);
        *n = (size_t)ftell(fp);
        fseek(fp, 0, SEEK_SET);
        buf = malloc(*n);
        if (fread(buf, 1, *n, fp) != *n) {
            free(buf);
            buf = NULL;
        }
        fclose(fp);
    } else {
        fprintf(stderr, "%s\n", e.msg);
    }
    gguf_writer_free(w);
    unlink(path);
    rmdir(dir);
    return buf;
}

/* Reads every value of an opened file, so that ASan sees any bad pointer. */
static uint64_t walk(const struct gguf_file *f)
{
    uint64_t h = gguf_version(f) + gguf_alignment(f) + gguf_data_offset(f);
    for (size_t i = 0; i < gguf_n_kv(f); i++) {
        const struct gguf_kv *kv = gguf_kv_at(f, i);
        h += strlen(kv->key);
        CHECK(gguf_find_kv(f, kv->key) == kv);
        if (kv->type == GGUF_VT_STRING) {
            for (uint64_t j = 0; j < kv->str.len; j++)
                h += (uint8_t)kv->str.ptr[j];
        } else if (kv->type == GGUF_VT_ARRAY) {
            for (uint64_t j = 0; j < kv->arr_n; j++) {
                if (kv->arr_type == GGUF_VT_STRING)
                    for (uint64_t k = 0; k < kv->arr_strs[j].len; k++)
                        h += (uint8_t)kv->arr_strs[j].ptr[k];
                else
                    h += (uint64_t)gguf_arr_int(kv, j) + (uint64_t)gguf_arr_float(kv, j);
            }
        } else {
            h += (uint64_t)gguf_kv_int(kv) + (uint64_t)gguf_kv_float(kv);
        }
    }
    for (size_t i = 0; i < gguf_n_tensors(f); i++) {
        const struct gguf_tensor *t = gguf_tensor_at(f, i);
        CHECK(gguf_find_tensor(f, t->name) == t);
        CHECK(t->nbytes == ggml_row_size(t->type, t->ne[0]) * (uint64_t)(gguf_tensor_nelements(t) / t->ne[0]));
        const uint8_t *d = t->data;
        for (uint64_t j = 0; j < t->nbytes; j++)
            h += d[j];
    }
    return h;
}

TEST(every_truncation_fails)
{
    size_t n = 0;
    uint8_t *buf = sample_file(&n);
    CHECK(buf != NULL);
    if (!buf)
        return;
    struct err e = {0};
    struct gguf_file *f = gguf_open_mem(buf, n, "test.gguf", &e);
    CHECKF(f, "%s", e.msg);
    if (f) {
        walk(f);
        gguf_close(f);
    }
    int accepted = 0, badmsg = 0;
    for (size_t len = 0; len < n; len++) {
        if (open_copy(buf, len, &e)) {
            accepted++;
            fprintf(stderr, "  truncation to %zu of %zu bytes accepted\n", len, n);
        } else if (strncmp(e.msg, "test.gguf: ", 11) || !(strstr(e.msg, "past end of file") || strstr(e.msg, "magic") ||
                                                           strstr(e.msg, "impossible"))) {
            badmsg++;
            fprintf(stderr, "  truncation to %zu: unexpected message: %s\n", len, e.msg);
        }
    }
    CHECK(accepted == 0);
    CHECK(badmsg == 0);
    printf("  %zu truncations of a %zu-byte file refused\n", n, n);
    free(buf);
}

TEST(random_bit_flips_never_crash)
{
    size_t n = 0;
    uint8_t *buf = sample_file(&n);
    CHECK(buf != NULL);
    if (!buf)
        return;
    uint8_t *c = malloc(n);
    struct rng r;
    rng_seed(&r, 1234);
    int ok = 0, refused = 0, unnamed = 0;
    for (int it = 0; it < 20000; it++) {
        memcpy(c, buf, n);
        int flips = 1 + (int)(rng_u64(&r) % 4);
        for (int k = 0; k < flips; k++) {
            uint64_t bit = rng_u64(&r) % (n * 8);
            c[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        }
        struct err e = {0};
        struct gguf_file *f = gguf_open_mem(c, n, "test.gguf", &e);
        if (f) {
            walk(f);
            gguf_close(f);
            ok++;
        } else {
            refused++;
            if (strncmp(e.msg, "test.gguf: ", 11) || !strstr(e.msg, "offset"))
                unnamed++;
        }
    }
    printf("  20000 damaged files: %d still valid, %d refused\n", ok, refused);
    CHECK(refused > 1000 && ok > 100);
    CHECK(unnamed == 0);
    free(c);
    free(buf);
}

int main(void)
{
    RUN(hand_made_valid_files);
    RUN(header_errors);
    RUN(hostile_counts);
    RUN(string_errors);
    RUN(value_type_errors);
    RUN(alignment_errors);
    RUN(tensor_info_errors);
    RUN(tensor_data_errors);
    RUN(every_truncation_fails);
    RUN(random_bit_flips_never_crash);
    TEST_END();
}
