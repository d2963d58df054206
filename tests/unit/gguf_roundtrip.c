/* gguf: writer -> reader round trips, typed getters, the byte layout of
 * written files, and the shared tokenizer vocabularies. */
#include "gguf/gguf.h"
#include "test.h"

#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmpdir[256];

static const char *tmp_path(const char *name)
{
    static char p[512];
    snprintf(p, sizeof p, "%s/%s", tmpdir, name);
    return p;
}

static uint8_t *read_all(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc(sz > 0 ? (size_t)sz : 1);
    if (b && fread(b, 1, (size_t)sz, f) != (size_t)sz) {
        free(b);
        b = NULL;
    }
    fclose(f);
    *n = (size_t)sz;
    return b;
}

/* Writes w to name in tmpdir and opens the result; NULL (and a failed check) on error. */
static struct gguf_file *write_and_open(struct gguf_writer *w, const char *name)
{
    struct err e = {0};
    int rc = gguf_writer_write(w, tmp_path(name), &e);
    CHECKF(rc == 0, "%s", e.msg);
    if (rc)
        return NULL;
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s.tmp", tmp_path(name));
    CHECKF(access(tmp, F_OK) != 0, "%s left behind", tmp);
    struct gguf_file *f = gguf_open(tmp_path(name), &e);
    CHECKF(f != NULL, "%s", e.msg);
    return f;
}

TEST(scalars_round_trip)
{
    struct gguf_writer *w = gguf_writer_new();
    uint8_t u8 = 250;
    int8_t i8 = -100;
    uint16_t u16 = 65000;
    int16_t i16 = -32000;
    int64_t i64 = INT64_MIN + 5;
    double f64 = 3.141592653589793;
    CHECK(gguf_writer_set_val(w, "t.u8", GGUF_VT_UINT8, &u8) == 0);
    CHECK(gguf_writer_set_val(w, "t.i8", GGUF_VT_INT8, &i8) == 0);
    CHECK(gguf_writer_set_val(w, "t.u16", GGUF_VT_UINT16, &u16) == 0);
    CHECK(gguf_writer_set_val(w, "t.i16", GGUF_VT_INT16, &i16) == 0);
    CHECK(gguf_writer_set_u32(w, "t.u32", 4000000000u) == 0);
    CHECK(gguf_writer_set_i32(w, "t.i32", -2000000000) == 0);
    CHECK(gguf_writer_set_f32(w, "t.f32", 0.125f) == 0);
    CHECK(gguf_writer_set_bool(w, "t.bool", true) == 0);
    CHECK(gguf_writer_set_bool(w, "t.false", false) == 0);
    CHECK(gguf_writer_set_u64(w, "t.u64", UINT64_MAX) == 0);
    CHECK(gguf_writer_set_u64(w, "t.u64small", 12345) == 0);
    CHECK(gguf_writer_set_val(w, "t.i64", GGUF_VT_INT64, &i64) == 0);
    CHECK(gguf_writer_set_val(w, "t.f64", GGUF_VT_FLOAT64, &f64) == 0);
    struct gguf_file *f = write_and_open(w, "scalars.gguf");
    gguf_writer_free(w);
    if (!f)
        return;
    struct err e;
    int64_t v;
    double d;
    bool b;
    CHECK(gguf_version(f) == 3);
    CHECK(gguf_n_kv(f) == 13 && gguf_n_tensors(f) == 0);
    CHECK(gguf_get_int(f, "t.u8", &v, &e) == 0 && v == 250);
    CHECK(gguf_get_int(f, "t.i8", &v, &e) == 0 && v == -100);
    CHECK(gguf_get_int(f, "t.u16", &v, &e) == 0 && v == 65000);
    CHECK(gguf_get_int(f, "t.i16", &v, &e) == 0 && v == -32000);
    CHECK(gguf_get_int(f, "t.u32", &v, &e) == 0 && v == 4000000000LL);
    CHECK(gguf_get_int(f, "t.i32", &v, &e) == 0 && v == -2000000000LL);
    CHECK(gguf_get_int(f, "t.i64", &v, &e) == 0 && v == INT64_MIN + 5);
    CHECK(gguf_get_int(f, "t.u64small", &v, &e) == 0 && v == 12345);
    CHECK(gguf_get_float(f, "t.f32", &d, &e) == 0 && d == 0.125);
    CHECK(gguf_get_float(f, "t.f64", &d, &e) == 0 && d == f64);
    CHECK(gguf_get_bool(f, "t.bool", &b, &e) == 0 && b);
    CHECK(gguf_get_bool(f, "t.false", &b, &e) == 0 && !b);
    /* uint64 beyond int64: a clear error, not a wrapped value */
    v = 7;
    CHECK(gguf_get_int(f, "t.u64", &v, &e) == -1 && v == 7);
    CHECKF(strstr(e.msg, "t.u64") && strstr(e.msg, "18446744073709551615"), "%s", e.msg);
    const struct gguf_kv *kv = gguf_find_kv(f, "t.u64");
    CHECK(kv && kv->type == GGUF_VT_UINT64 && gguf_kv_float(kv) == 18446744073709551615.0);
    kv = gguf_find_kv(f, "t.f32");
    CHECK(kv && gguf_kv_int(kv) == 0 && gguf_kv_float(kv) == 0.125);
    kv = gguf_find_kv(f, "t.i16");
    CHECK(kv && gguf_kv_int(kv) == -32000 && gguf_kv_float(kv) == -32000.0);
    /* insertion order is kept */
    CHECK(!strcmp(gguf_kv_at(f, 0)->key, "t.u8") && !strcmp(gguf_kv_at(f, 12)->key, "t.f64"));
    gguf_close(f);
}

TEST(getter_type_checks)
{
    struct gguf_writer *w = gguf_writer_new();
    uint32_t arr[3] = {1, 2, 3};
    gguf_writer_set_str(w, "s", "hello");
    gguf_writer_set_u32(w, "n", 5);
    gguf_writer_set_f32(w, "x", 1.5f);
    gguf_writer_set_bool(w, "b", true);
    gguf_writer_set_arr(w, "a", GGUF_VT_UINT32, arr, 3);
    struct gguf_file *f = write_and_open(w, "getters.gguf");
    gguf_writer_free(w);
    if (!f)
        return;
    struct err e;
    int64_t v = 42;
    double d = 4.2;
    bool b = false;
    struct gguf_str s = {0};
    const struct gguf_kv *kv = NULL;
    /* absent keys: ERR_NOT_FOUND, outputs untouched */
    CHECK(gguf_get_int(f, "missing", &v, &e) == -1 && e.code == ERR_NOT_FOUND && v == 42);
    CHECK(gguf_get_float(f, "missing", &d, &e) == -1 && e.code == ERR_NOT_FOUND && d == 4.2);
    CHECK(gguf_get_bool(f, "missing", &b, &e) == -1 && e.code == ERR_NOT_FOUND && !b);
    CHECK(gguf_get_str(f, "missing", &s, &e) == -1 && e.code == ERR_NOT_FOUND && s.ptr == NULL);
    CHECK(gguf_get_arr(f, "missing", GGUF_VT_COUNT, &kv, &e) == -1 && e.code == ERR_NOT_FOUND && kv == NULL);
    CHECK(gguf_find_kv(f, "missing") == NULL);
    /* wrong types: -1 with the key and both types named */
    CHECK(gguf_get_int(f, "s", &v, &e) == -1 && e.code == ERR_CORRUPT && v == 42);
    CHECKF(strstr(e.msg, "'s'") && strstr(e.msg, "string") && strstr(e.msg, "integer"), "%s", e.msg);
    CHECK(gguf_get_int(f, "x", &v, &e) == -1 && e.code == ERR_CORRUPT);
    CHECK(gguf_get_int(f, "b", &v, &e) == -1 && e.code == ERR_CORRUPT);
    CHECK(gguf_get_float(f, "n", &d, &e) == -1 && e.code == ERR_CORRUPT && d == 4.2);
    CHECKF(strstr(e.msg, "uint32") && strstr(e.msg, "float"), "%s", e.msg);
    CHECK(gguf_get_bool(f, "n", &b, &e) == -1 && e.code == ERR_CORRUPT && !b);
    CHECK(gguf_get_str(f, "n", &s, &e) == -1 && e.code == ERR_CORRUPT && s.ptr == NULL);
    CHECK(gguf_get_arr(f, "s", GGUF_VT_COUNT, &kv, &e) == -1 && e.code == ERR_CORRUPT && kv == NULL);
    CHECK(gguf_get_arr(f, "a", GGUF_VT_STRING, &kv, &e) == -1 && e.code == ERR_CORRUPT && kv == NULL);
    CHECKF(strstr(e.msg, "array of uint32") && strstr(e.msg, "array of string"), "%s", e.msg);
    /* right types */
    CHECK(gguf_get_str(f, "s", &s, &e) == 0 && gguf_str_eq(s, "hello") && !gguf_str_eq(s, "hell"));
    CHECK(gguf_get_arr(f, "a", GGUF_VT_UINT32, &kv, &e) == 0 && kv && kv->arr_n == 3);
    CHECK(gguf_get_arr(f, "a", GGUF_VT_COUNT, &kv, &e) == 0);
    CHECK(kv && gguf_arr_int(kv, 2) == 3 && gguf_arr_float(kv, 0) == 1.0);
    gguf_close(f);
}

TEST(strings_round_trip)
{
    static const char nul[] = {'a', '\0', 'b', '\0'};
    const char *utf8 = "h\xc3\xa9llo \xe4\xb8\x96\xe7\x95\x8c \xf0\x9f\x98\x80";
    struct gguf_writer *w = gguf_writer_new();
    CHECK(gguf_writer_set_str(w, "s.empty", "") == 0);
    CHECK(gguf_writer_set_strn(w, "s.nul", nul, sizeof nul) == 0);
    CHECK(gguf_writer_set_str(w, "s.utf8", utf8) == 0);
    struct gguf_str strs[4] = {{"", 0}, {nul, sizeof nul}, {utf8, strlen(utf8)}, {"x", 1}};
    CHECK(gguf_writer_set_arr_str(w, "a.str", strs, 4) == 0);
    CHECK(gguf_writer_set_arr_str(w, "a.str_empty", NULL, 0) == 0);
    CHECK(gguf_writer_set_arr(w, "a.u8_empty", GGUF_VT_UINT8, NULL, 0) == 0);
    struct gguf_file *f = write_and_open(w, "strings.gguf");
    gguf_writer_free(w);
    if (!f)
        return;
    struct err e;
    struct gguf_str s;
    CHECK(gguf_get_str(f, "s.empty", &s, &e) == 0 && s.len == 0);
    CHECK(gguf_get_str(f, "s.nul", &s, &e) == 0 && s.len == 4 && !memcmp(s.ptr, nul, 4));
    CHECK(gguf_get_str(f, "s.utf8", &s, &e) == 0 && gguf_str_eq(s, utf8));
    const struct gguf_kv *kv;
    CHECK(gguf_get_arr(f, "a.str", GGUF_VT_STRING, &kv, &e) == 0);
    if (kv) {
        CHECK(kv->arr_n == 4);
        CHECK(kv->arr_strs[0].len == 0);
        CHECK(kv->arr_strs[1].len == 4 && !memcmp(kv->arr_strs[1].ptr, nul, 4));
        CHECK(gguf_str_eq(kv->arr_strs[2], utf8));
        CHECK(gguf_str_eq(kv->arr_strs[3], "x"));
    }
    CHECK(gguf_get_arr(f, "a.str_empty", GGUF_VT_STRING, &kv, &e) == 0 && kv && kv->arr_n == 0);
    CHECK(gguf_get_arr(f, "a.u8_empty", GGUF_VT_UINT8, &kv, &e) == 0 && kv && kv->arr_n == 0);
    gguf_close(f);
}

TEST(numeric_arrays_round_trip)
{
    int8_t i8[5] = {-128, -1, 0, 1, 127};
    uint16_t u16[3] = {0, 1, 65535};
    int16_t i16[3] = {-32768, 0, 32767};
    uint32_t u32[2] = {0, 4294967295u};
    int32_t i32[4] = {INT32_MIN, -1, 0, INT32_MAX};
    float f32[3] = {-1.5f, 0.0f, 1e30f};
    uint8_t bools[3] = {1, 0, 1};
    uint64_t u64[2] = {0, 1ull << 40};
    int64_t i64[2] = {INT64_MIN, INT64_MAX};
    double f64[2] = {1e-300, -2.5};
    struct gguf_writer *w = gguf_writer_new();
    gguf_writer_set_arr(w, "i8", GGUF_VT_INT8, i8, 5);
    gguf_writer_set_arr(w, "u16", GGUF_VT_UINT16, u16, 3);
    gguf_writer_set_arr(w, "i16", GGUF_VT_INT16, i16, 3);
    gguf_writer_set_arr(w, "u32", GGUF_VT_UINT32, u32, 2);
    gguf_writer_set_arr(w, "i32", GGUF_VT_INT32, i32, 4);
    gguf_writer_set_arr(w, "f32", GGUF_VT_FLOAT32, f32, 3);
    gguf_writer_set_arr(w, "bool", GGUF_VT_BOOL, bools, 3);
    gguf_writer_set_arr(w, "u64", GGUF_VT_UINT64, u64, 2);
    gguf_writer_set_arr(w, "i64", GGUF_VT_INT64, i64, 2);
    gguf_writer_set_arr(w, "f64", GGUF_VT_FLOAT64, f64, 2);
    struct gguf_file *f = write_and_open(w, "arrays.gguf");
    gguf_writer_free(w);
    if (!f)
        return;
    const struct gguf_kv *kv;
    struct err e;
    CHECK(gguf_get_arr(f, "i8", GGUF_VT_INT8, &kv, &e) == 0 && kv->arr_n == 5);
    for (int i = 0; i < 5; i++)
        CHECK(gguf_arr_int(kv, (uint64_t)i) == i8[i]);
    CHECK(gguf_get_arr(f, "u16", GGUF_VT_UINT16, &kv, &e) == 0 && gguf_arr_int(kv, 2) == 65535);
    CHECK(gguf_get_arr(f, "i16", GGUF_VT_INT16, &kv, &e) == 0 && gguf_arr_int(kv, 0) == -32768);
    CHECK(gguf_get_arr(f, "u32", GGUF_VT_UINT32, &kv, &e) == 0 && gguf_arr_int(kv, 1) == 4294967295LL);
    CHECK(gguf_get_arr(f, "i32", GGUF_VT_INT32, &kv, &e) == 0 && gguf_arr_int(kv, 0) == INT32_MIN &&
          gguf_arr_int(kv, 3) == INT32_MAX);
    CHECK(gguf_get_arr(f, "f32", GGUF_VT_FLOAT32, &kv, &e) == 0 && gguf_arr_float(kv, 0) == -1.5 &&
          gguf_arr_float(kv, 2) == (double)1e30f);
    CHECK(gguf_get_arr(f, "bool", GGUF_VT_BOOL, &kv, &e) == 0 && gguf_arr_int(kv, 0) == 1 && gguf_arr_int(kv, 1) == 0);
    CHECK(gguf_get_arr(f, "u64", GGUF_VT_UINT64, &kv, &e) == 0 && gguf_arr_int(kv, 1) == (1ll << 40));
    CHECK(gguf_get_arr(f, "i64", GGUF_VT_INT64, &kv, &e) == 0 && gguf_arr_int(kv, 0) == INT64_MIN &&
          gguf_arr_int(kv, 1) == INT64_MAX);
    CHECK(gguf_get_arr(f, "f64", GGUF_VT_FLOAT64, &kv, &e) == 0 && gguf_arr_float(kv, 0) == 1e-300 &&
          gguf_arr_float(kv, 1) == -2.5);
    gguf_close(f);
}

TEST(set_replaces_in_place)
{
    struct gguf_writer *w = gguf_writer_new();
    gguf_writer_set_u32(w, "a", 1);
    gguf_writer_set_str(w, "b", "first");
    gguf_writer_set_u32(w, "c", 3);
    /* replace with a different type; order stays a, b, c */
    uint32_t arr[2] = {7, 8};
    CHECK(gguf_writer_set_arr(w, "b", GGUF_VT_UINT32, arr, 2) == 0);
    CHECK(gguf_writer_set_str(w, "a", "now a string") == 0);
    CHECK(gguf_writer_remove(w, "zzz") == 0);
    CHECK(gguf_writer_set_u32(w, "", 9) == -1); /* the reader refuses empty keys */
    CHECK(gguf_writer_set_u32(w, "d", 4) == 0);
    CHECK(gguf_writer_remove(w, "c") == 0);
    struct gguf_file *f = write_and_open(w, "replace.gguf");
    gguf_writer_free(w);
    if (!f)
        return;
    struct err e;
    CHECK(gguf_n_kv(f) == 3);
    CHECK(!strcmp(gguf_kv_at(f, 0)->key, "a") && !strcmp(gguf_kv_at(f, 1)->key, "b") &&
          !strcmp(gguf_kv_at(f, 2)->key, "d"));
    struct gguf_str s;
    CHECK(gguf_get_str(f, "a", &s, &e) == 0 && gguf_str_eq(s, "now a string"));
    const struct gguf_kv *kv;
    CHECK(gguf_get_arr(f, "b", GGUF_VT_UINT32, &kv, &e) == 0 && kv->arr_n == 2 && gguf_arr_int(kv, 1) == 8);
    CHECK(gguf_find_kv(f, "c") == NULL);
    gguf_close(f);
}

TEST(copy_kv_round_trip)
{
    struct gguf_writer *w = gguf_writer_new();
    struct gguf_str strs[2] = {{"x", 1}, {"yz", 2}};
    int16_t i16 = -7;
    gguf_writer_set_val(w, "i16", GGUF_VT_INT16, &i16);
    gguf_writer_set_str(w, "s", "str");
    gguf_writer_set_arr_str(w, "as", strs, 2);
    float fl[2] = {1, 2};
    gguf_writer_set_arr(w, "af", GGUF_VT_FLOAT32, fl, 2);
    struct gguf_file *f = write_and_open(w, "copy_src.gguf");
    gguf_writer_free(w);
    if (!f)
        return;
    struct gguf_writer *w2 = gguf_writer_new();
    for (size_t i = 0; i < gguf_n_kv(f); i++)
        CHECK(gguf_writer_copy_kv(w2, gguf_kv_at(f, i)) == 0);
    struct gguf_file *g = write_and_open(w2, "copy_dst.gguf");
    gguf_writer_free(w2);
    gguf_close(f);
    if (!g)
        return;
    /* a copy of a copy is byte-identical */
    size_t n1, n2;
    uint8_t *b1 = read_all(tmp_path("copy_src.gguf"), &n1), *b2 = read_all(tmp_path("copy_dst.gguf"), &n2);
    CHECK(b1 && b2 && n1 == n2 && !memcmp(b1, b2, n1));
    free(b1);
    free(b2);
    gguf_close(g);
}

static uint64_t rd64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

TEST(tensors_round_trip_and_layout)
{
    /* f32 [5, 3], q8_0 [64, 2, 3] (3-D), f16 [7], q4_k [256, 1, 1, 2] (4-D) */
    float a[15];
    for (int i = 0; i < 15; i++)
        a[i] = (float)i * 0.5f;
    static uint8_t q8[34 * 2 * 2 * 3], h[14], qk[144 * 2];
    for (size_t i = 0; i < sizeof q8; i++)
        q8[i] = (uint8_t)(i * 7);
    for (size_t i = 0; i < sizeof h; i++)
        h[i] = (uint8_t)(i + 100);
    for (size_t i = 0; i < sizeof qk; i++)
        qk[i] = (uint8_t)(i * 13);
    struct gguf_writer *w = gguf_writer_new();
    struct err e = {0};
    gguf_writer_set_str(w, "general.architecture", "llama");
    CHECKF(gguf_writer_add_tensor(w, "a", GGML_TYPE_F32, 2, (int64_t[]){5, 3}, a, sizeof a, &e) == 0, "%s", e.msg);
    CHECKF(gguf_writer_add_tensor(w, "blk.0.q8", GGML_TYPE_Q8_0, 3, (int64_t[]){64, 2, 3}, q8, sizeof q8, &e) == 0,
           "%s", e.msg);
    CHECKF(gguf_writer_add_tensor(w, "h", GGML_TYPE_F16, 1, (int64_t[]){7}, h, sizeof h, &e) == 0, "%s", e.msg);
    CHECKF(gguf_writer_add_tensor(w, "k", GGML_TYPE_Q4_K, 4, (int64_t[]){256, 1, 1, 2}, qk, sizeof qk, &e) == 0,
           "%s", e.msg);
    /* the writer's own checks */
    CHECK(gguf_writer_add_tensor(w, "a", GGML_TYPE_F32, 1, (int64_t[]){15}, a, sizeof a, &e) == -1);
    CHECKF(strstr(e.msg, "'a'") && strstr(e.msg, "duplicate"), "%s", e.msg);
    CHECK(gguf_writer_add_tensor(w, "bad", GGML_TYPE_F32, 1, (int64_t[]){15}, a, sizeof a - 4, &e) == -1);
    CHECKF(strstr(e.msg, "56 bytes given"), "%s", e.msg);
    CHECK(gguf_writer_add_tensor(w, "bad", GGML_TYPE_Q8_0, 1, (int64_t[]){33}, q8, 34, &e) == -1);
    CHECKF(strstr(e.msg, "multiple"), "%s", e.msg);
    CHECK(gguf_writer_add_tensor(w, "bad", GGML_TYPE_F32, 0, (int64_t[]){1}, a, 4, &e) == -1);
    CHECK(gguf_writer_add_tensor(w, "bad", GGML_TYPE_F32, 2, (int64_t[]){1, 0}, a, 0, &e) == -1);
    CHECK(gguf_writer_add_tensor(w, "", GGML_TYPE_F32, 1, (int64_t[]){1}, a, 4, &e) == -1);
    CHECK(gguf_writer_add_tensor(w, "bad", (enum ggml_type)4, 1, (int64_t[]){1}, a, 4, &e) == -1);
    struct gguf_file *f = write_and_open(w, "tensors.gguf");
    gguf_writer_free(w);
    if (!f)
        return;
    CHECK(gguf_n_tensors(f) == 4);
    CHECK(gguf_alignment(f) == 32 && gguf_data_offset(f) % 32 == 0);
    const struct gguf_tensor *t = gguf_find_tensor(f, "a");
    CHECK(t && t->type == GGML_TYPE_F32 && t->n_dims == 2 && t->ne[0] == 5 && t->ne[1] == 3 && t->ne[2] == 1 &&
          t->nbytes == sizeof a && t->offset == 0 && !memcmp(t->data, a, sizeof a));
    t = gguf_find_tensor(f, "blk.0.q8");
    CHECK(t && t->type == GGML_TYPE_Q8_0 && t->n_dims == 3 && t->ne[2] == 3 && gguf_tensor_nelements(t) == 384 &&
          t->nbytes == sizeof q8 && t->offset == 64 && !memcmp(t->data, q8, sizeof q8));
    t = gguf_find_tensor(f, "h");
    CHECK(t && t->type == GGML_TYPE_F16 && t->n_dims == 1 && t->nbytes == 14 && t->offset == 64 + 416 &&
          !memcmp(t->data, h, 14));
    t = gguf_find_tensor(f, "k");
    CHECK(t && t->n_dims == 4 && t->ne[3] == 2 && t->nbytes == sizeof qk && t->offset == 64 + 416 + 32 &&
          !memcmp(t->data, qk, sizeof qk));
    CHECK(gguf_find_tensor(f, "missing") == NULL && gguf_find_tensor(f, "blk.0") == NULL);
    CHECK(!strcmp(gguf_tensor_at(f, 1)->name, "blk.0.q8"));
    /* the layout byte by byte: header, padding zeroed, file ends padded */
    const uint8_t *d = (const uint8_t *)gguf_tensor_at(f, 0)->data - gguf_data_offset(f);
    CHECK(!memcmp(d, "GGUF\3\0\0\0", 8) && rd64(d + 8) == 4 && rd64(d + 16) == 1);
    CHECK(gguf_size(f) == gguf_data_offset(f) + 64 + 416 + 32 + 288);
    for (size_t i = 60; i < 64; i++)
        CHECK(d[gguf_data_offset(f) + i] == 0);
    gguf_close(f);
}

TEST(custom_alignment_64)
{
    struct gguf_writer *w = gguf_writer_new();
    struct err e = {0};
    float x[3] = {1, 2, 3}, y[5] = {4, 5, 6, 7, 8};
    gguf_writer_set_u32(w, "general.alignment", 64);
    gguf_writer_add_tensor(w, "x", GGML_TYPE_F32, 1, (int64_t[]){3}, x, sizeof x, &e);
    gguf_writer_add_tensor(w, "y", GGML_TYPE_F32, 1, (int64_t[]){5}, y, sizeof y, &e);
    struct gguf_file *f = write_and_open(w, "align64.gguf");
    gguf_writer_free(w);
    if (!f)
        return;
    CHECK(gguf_alignment(f) == 64 && gguf_data_offset(f) % 64 == 0);
    const struct gguf_tensor *t = gguf_find_tensor(f, "y");
    CHECK(t && t->offset == 64 && !memcmp(t->data, y, sizeof y));
    CHECK(gguf_size(f) == gguf_data_offset(f) + 128);
    gguf_close(f);

    /* a bad alignment is refused by the writer, and nothing is left behind */
    w = gguf_writer_new();
    gguf_writer_set_u32(w, "general.alignment", 48);
    CHECK(gguf_writer_write(w, tmp_path("align48.gguf"), &e) == -1);
    CHECKF(strstr(e.msg, "general.alignment"), "%s", e.msg);
    CHECK(access(tmp_path("align48.gguf"), F_OK) != 0 && access(tmp_path("align48.gguf.tmp"), F_OK) != 0);
    gguf_writer_free(w);
}

TEST(large_tensor_round_trip)
{
    /* bigger than the writer's buffer, so its data goes straight to write(2) */
    enum { N = 600001 };
    float *big = malloc(N * sizeof *big);
    if (!big) {
        CHECK(!"out of memory");
        return;
    }
    for (int i = 0; i < N; i++)
        big[i] = (float)i * 0.25f;
    float small[3] = {7, 8, 9};
    struct gguf_writer *w = gguf_writer_new();
    struct err e = {0};
    CHECK(gguf_writer_add_tensor(w, "s0", GGML_TYPE_F32, 1, (int64_t[]){3}, small, sizeof small, &e) == 0);
    CHECK(gguf_writer_add_tensor(w, "big", GGML_TYPE_F32, 2, (int64_t[]){N, 1}, big, N * sizeof *big, &e) == 0);
    CHECK(gguf_writer_add_tensor(w, "s1", GGML_TYPE_F32, 1, (int64_t[]){3}, small, sizeof small, &e) == 0);
    struct gguf_file *f = write_and_open(w, "big.gguf");
    gguf_writer_free(w);
    if (f) {
        const struct gguf_tensor *t = gguf_find_tensor(f, "big");
        CHECK(t && t->offset == 32 && t->nbytes == N * sizeof *big && !memcmp(t->data, big, N * sizeof *big));
        t = gguf_find_tensor(f, "s1");
        CHECK(t && t->offset == 32 + (N * 4 + 31) / 32 * 32 && !memcmp(t->data, small, sizeof small));
        CHECK(gguf_size(f) == gguf_data_offset(f) + t->offset + 32);
        gguf_close(f);
    }
    /* the huge-page copy (gguf_open_copy) reads the same bytes */
    f = gguf_open_copy(tmp_path("big.gguf"), &e);
    CHECKF(f != NULL, "%s", e.msg);
    if (f) {
        const struct gguf_tensor *t = gguf_find_tensor(f, "big");
        CHECK(t && t->nbytes == N * sizeof *big && !memcmp(t->data, big, N * sizeof *big));
        t = gguf_find_tensor(f, "s1");
        CHECK(t && !memcmp(t->data, small, sizeof small));
        gguf_close(f);
    }
    free(big);
}

TEST(write_errors_name_the_path)
{
    struct gguf_writer *w = gguf_writer_new();
    struct err e = {0};
    gguf_writer_set_u32(w, "a", 1);
    CHECK(gguf_writer_write(w, "/nonexistent-dir/x.gguf", &e) == -1);
    CHECKF(strstr(e.msg, "/nonexistent-dir/x.gguf.tmp") && strstr(e.msg, "No such file"), "%s", e.msg);
    gguf_writer_free(w);
    gguf_writer_free(NULL);
    gguf_close(NULL);
}

TEST(open_errors)
{
    struct err e = {0};
    CHECK(gguf_open(tmp_path("does-not-exist.gguf"), &e) == NULL);
    CHECKF(strstr(e.msg, "does-not-exist.gguf") && strstr(e.msg, "No such file"), "%s", e.msg);
    CHECK(gguf_open(tmpdir, &e) == NULL);
    CHECKF(strstr(e.msg, "not a regular file"), "%s", e.msg);
    FILE *fp = fopen(tmp_path("empty.gguf"), "wb");
    if (fp)
        fclose(fp);
    CHECK(gguf_open(tmp_path("empty.gguf"), &e) == NULL);
    CHECKF(strstr(e.msg, "empty.gguf") && strstr(e.msg, "empty"), "%s", e.msg);
    CHECK(gguf_open_copy(tmp_path("empty.gguf"), &e) == NULL);
    CHECKF(strstr(e.msg, "empty.gguf") && strstr(e.msg, "empty"), "%s", e.msg);
    CHECK(gguf_open_copy(tmp_path("does-not-exist.gguf"), &e) == NULL);
    CHECKF(strstr(e.msg, "No such file"), "%s", e.msg);
    CHECK(gguf_open_mem(NULL, 0, "nothing", &e) == NULL);
    CHECKF(strstr(e.msg, "nothing:"), "%s", e.msg);
}

TEST(many_tensors_lookup)
{
    /* enough tensors and keys for the hash indexes to grow and collide */
    enum { N = 3000 };
    static float one[N];
    struct gguf_writer *w = gguf_writer_new();
    struct err e = {0};
    char name[64];
    for (int i = 0; i < N; i++) {
        one[i] = (float)i;
        snprintf(name, sizeof name, "blk.%d.w", i);
        CHECK(gguf_writer_add_tensor(w, name, GGML_TYPE_F32, 1, (int64_t[]){1}, &one[i], 4, &e) == 0);
        snprintf(name, sizeof name, "key.%d", i);
        gguf_writer_set_u32(w, name, (uint32_t)i);
    }
    struct gguf_file *f = write_and_open(w, "many.gguf");
    gguf_writer_free(w);
    if (!f)
        return;
    int bad = 0;
    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof name, "blk.%d.w", i);
        const struct gguf_tensor *t = gguf_find_tensor(f, name);
        float v;
        if (!t || (memcpy(&v, t->data, 4), v != (float)i))
            bad++;
        snprintf(name, sizeof name, "key.%d", i);
        int64_t k;
        if (gguf_get_int(f, name, &k, &e) != 0 || k != i)
            bad++;
    }
    CHECK(bad == 0);
    gguf_close(f);
}

TEST(shared_vocabularies)
{
    const char *dir = test_shared_dir();
    if (!dir)
        SKIP("../shared/testdata not found (set MAAS_SHARED_TESTDATA)");
    static const struct {
        const char *file, *model;
        uint64_t n_tokens, n_merges;
    } want[] = {
        {"gpt-2.gguf", "gpt2", 50257, 50000},
        {"deepseek-llm.gguf", "gpt2", 102400, 99757},
        {"llama-spm.gguf", "llama", 32000, 0},
        {"phi-3.gguf", "llama", 32064, 0},
    };
    for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
        char path[512];
        struct err e = {0};
        snprintf(path, sizeof path, "%s/tokenizer/%s", dir, want[i].file);
        uint64_t t0 = now_ns();
        struct gguf_file *f = gguf_open(path, &e);
        double ms = (double)(now_ns() - t0) / 1e6;
        CHECKF(f != NULL, "%s", e.msg);
        if (!f)
            continue;
        printf("  %s: opened in %.1f ms (sanitized build)\n", want[i].file, ms);
        struct gguf_str m = {0};
        CHECK(gguf_get_str(f, "tokenizer.ggml.model", &m, &e) == 0 && gguf_str_eq(m, want[i].model));
        const struct gguf_kv *kv = NULL;
        CHECK(gguf_get_arr(f, "tokenizer.ggml.tokens", GGUF_VT_STRING, &kv, &e) == 0 && kv &&
              kv->arr_n == want[i].n_tokens);
        CHECK(gguf_get_arr(f, "tokenizer.ggml.token_type", GGUF_VT_INT32, &kv, &e) == 0 && kv &&
              kv->arr_n == want[i].n_tokens);
        int rc = gguf_get_arr(f, "tokenizer.ggml.merges", GGUF_VT_STRING, &kv, &e);
        if (want[i].n_merges)
            CHECK(rc == 0 && kv && kv->arr_n == want[i].n_merges);
        else
            CHECK(rc == -1 && e.code == ERR_NOT_FOUND);
        CHECK(gguf_n_tensors(f) == 0);
        gguf_close(f);
    }
}

TEST(vocabulary_copy_round_trip)
{
    /* copying every kv of a real vocabulary gives a file that reads back equal */
    const char *dir = test_shared_dir();
    if (!dir)
        SKIP("../shared/testdata not found (set MAAS_SHARED_TESTDATA)");
    char path[512];
    struct err e = {0};
    snprintf(path, sizeof path, "%s/tokenizer/llama-spm.gguf", dir);
    struct gguf_file *f = gguf_open(path, &e);
    CHECKF(f, "%s", e.msg);
    if (!f)
        return;
    struct gguf_writer *w = gguf_writer_new();
    for (size_t i = 0; i < gguf_n_kv(f); i++)
        CHECK(gguf_writer_copy_kv(w, gguf_kv_at(f, i)) == 0);
    struct gguf_file *g = write_and_open(w, "vocab_copy.gguf");
    gguf_writer_free(w);
    if (g) {
        CHECK(gguf_n_kv(g) == gguf_n_kv(f));
        const struct gguf_kv *a, *b;
        CHECK(gguf_get_arr(f, "tokenizer.ggml.tokens", GGUF_VT_STRING, &a, &e) == 0);
        CHECK(gguf_get_arr(g, "tokenizer.ggml.tokens", GGUF_VT_STRING, &b, &e) == 0);
        int diff = 0;
        for (uint64_t i = 0; i < a->arr_n; i++)
            diff += a->arr_strs[i].len != b->arr_strs[i].len ||
                    memcmp(a->arr_strs[i].ptr, b->arr_strs[i].ptr, a->arr_strs[i].len);
        CHECK(diff == 0);
        CHECK(gguf_get_arr(g, "tokenizer.ggml.scores", GGUF_VT_FLOAT32, &b, &e) == 0 && b->arr_n == 32000);
        gguf_close(g);
    }
    gguf_close(f);
}

static void cleanup(void)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", tmpdir);
}

/* Type names parse in either case and back; unknown names are -1. */
TEST(type_names_parse)
{
    for (int t = 0; t < GGML_TYPE_COUNT; t++)
        if (ggml_type_known((uint32_t)t))
            CHECKF(ggml_type_from_name(ggml_type_name((enum ggml_type)t)) == t, "type %d", t);
    CHECK(ggml_type_from_name("Q4_K") == GGML_TYPE_Q4_K);
    CHECK(ggml_type_from_name("bF16") == GGML_TYPE_BF16);
    CHECK(ggml_type_from_name("q9_9") == -1);
    CHECK(ggml_type_from_name("") == -1);
    CHECK(ggml_type_from_name("?") == -1);
    CHECK(ggml_type_from_name("q4_0_but_much_longer_than_any_type") == -1);
}

int main(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/maas_gguf_rt.XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    RUN(scalars_round_trip);
    RUN(getter_type_checks);
    RUN(strings_round_trip);
    RUN(numeric_arrays_round_trip);
    RUN(set_replaces_in_place);
    RUN(copy_kv_round_trip);
    RUN(tensors_round_trip_and_layout);
    RUN(custom_alignment_64);
    RUN(large_tensor_round_trip);
    RUN(write_errors_name_the_path);
    RUN(open_errors);
    RUN(many_tensors_lookup);
    RUN(shared_vocabularies);
    RUN(vocabulary_copy_round_trip);
    RUN(type_names_parse);
    cleanup();
    TEST_END();
}
