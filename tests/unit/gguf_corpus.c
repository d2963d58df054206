/* gguf: the fuzz seed corpus (tests/fuzz/corpus/gguf_read). Run with no
 * arguments it checks that every committed seed opens cleanly and that the
 * seeds still equal what the generator writes (so the corpus cannot rot);
 * `gguf_corpus --write DIR` regenerates the seeds into DIR. Each seed is a
 * small valid file exercising one part of the format. */
#include "gguf/gguf.h"
#include "test.h"

#include <dirent.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#define CORPUS_DIR "tests/fuzz/corpus/gguf_read"

static int seed_kv_all_types(const char *path, struct err *e)
{
    struct gguf_writer *w = gguf_writer_new();
    uint8_t u8 = 200;
    int8_t i8 = -5;
    uint16_t u16 = 60000;
    int16_t i16 = -300;
    int64_t i64 = -1234567890123LL;
    double f64 = 2.5;
    gguf_writer_set_val(w, "t.u8", GGUF_VT_UINT8, &u8);
    gguf_writer_set_val(w, "t.i8", GGUF_VT_INT8, &i8);
    gguf_writer_set_val(w, "t.u16", GGUF_VT_UINT16, &u16);
    gguf_writer_set_val(w, "t.i16", GGUF_VT_INT16, &i16);
    gguf_writer_set_u32(w, "t.u32", 123456);
    gguf_writer_set_i32(w, "t.i32", -654321);
    gguf_writer_set_f32(w, "t.f32", 1e-5f);
    gguf_writer_set_bool(w, "t.bool", true);
    gguf_writer_set_str(w, "t.str", "h\xc3\xa9llo");
    gguf_writer_set_strn(w, "t.str_nul", "a\0b", 3);
    gguf_writer_set_str(w, "t.str_empty", "");
    gguf_writer_set_u64(w, "t.u64", UINT64_MAX);
    gguf_writer_set_val(w, "t.i64", GGUF_VT_INT64, &i64);
    gguf_writer_set_val(w, "t.f64", GGUF_VT_FLOAT64, &f64);
    int32_t ia[4] = {1, -2, 3, -4};
    float fa[3] = {0.5f, -0.25f, 8};
    uint8_t ba[3] = {1, 0, 1};
    struct gguf_str sa[3] = {{"x", 1}, {"", 0}, {"yz", 2}};
    gguf_writer_set_arr(w, "a.i32", GGUF_VT_INT32, ia, 4);
    gguf_writer_set_arr(w, "a.f32", GGUF_VT_FLOAT32, fa, 3);
    gguf_writer_set_arr(w, "a.bool", GGUF_VT_BOOL, ba, 3);
    gguf_writer_set_arr_str(w, "a.str", sa, 3);
    gguf_writer_set_arr(w, "a.empty", GGUF_VT_UINT64, NULL, 0);
    gguf_writer_set_arr_str(w, "a.str_empty", NULL, 0);
    int rc = gguf_writer_write(w, path, e);
    gguf_writer_free(w);
    return rc;
}

static int seed_tensors_mixed(const char *path, struct err *e)
{
    static uint8_t buf[4096];
    for (size_t i = 0; i < sizeof buf; i++)
        buf[i] = (uint8_t)(i * 37 + 11);
    /* keep f16 scales finite: zero the high byte of each block's d */
    static uint8_t q8[34 * 4], q4[18 * 2], qk[144];
    memcpy(q8, buf, sizeof q8);
    memcpy(q4, buf + 200, sizeof q4);
    memcpy(qk, buf + 400, sizeof qk);
    for (int b = 0; b < 4; b++)
        q8[b * 34 + 1] = 0x3c;
    for (int b = 0; b < 2; b++)
        q4[b * 18 + 1] = 0x3c;
    qk[1] = 0x3c;
    qk[3] = 0x3c;
    float f[12];
    for (int i = 0; i < 12; i++)
        f[i] = (float)i - 5.5f;
    uint16_t h[6] = {0x3c00, 0xbc00, 0x4000, 0x0000, 0x3800, 0xc200};
    struct gguf_writer *w = gguf_writer_new();
    gguf_writer_set_str(w, "general.architecture", "llama");
    gguf_writer_set_u32(w, "general.file_type", 7);
    int rc = 0;
    rc |= gguf_writer_add_tensor(w, "f32.2d", GGML_TYPE_F32, 2, (int64_t[]){4, 3}, f, sizeof f, e);
    rc |= gguf_writer_add_tensor(w, "f16.1d", GGML_TYPE_F16, 1, (int64_t[]){6}, h, sizeof h, e);
    rc |= gguf_writer_add_tensor(w, "q8_0.3d", GGML_TYPE_Q8_0, 3, (int64_t[]){32, 2, 2}, q8, sizeof q8, e);
    rc |= gguf_writer_add_tensor(w, "q4_0.4d", GGML_TYPE_Q4_0, 4, (int64_t[]){32, 1, 2, 1}, q4, sizeof q4, e);
    rc |= gguf_writer_add_tensor(w, "q4_k", GGML_TYPE_Q4_K, 1, (int64_t[]){256}, qk, sizeof qk, e);
    rc |= gguf_writer_add_tensor(w, "bf16", GGML_TYPE_BF16, 1, (int64_t[]){6}, h, sizeof h, e);
    if (rc == 0)
        rc = gguf_writer_write(w, path, e);
    gguf_writer_free(w);
    return rc;
}

static int seed_align64(const char *path, struct err *e)
{
    float a[3] = {1, 2, 3}, b[20];
    for (int i = 0; i < 20; i++)
        b[i] = (float)i;
    struct gguf_writer *w = gguf_writer_new();
    gguf_writer_set_u32(w, "general.alignment", 64);
    int rc = gguf_writer_add_tensor(w, "a", GGML_TYPE_F32, 1, (int64_t[]){3}, a, sizeof a, e);
    rc |= gguf_writer_add_tensor(w, "b", GGML_TYPE_F32, 2, (int64_t[]){5, 4}, b, sizeof b, e);
    if (rc == 0)
        rc = gguf_writer_write(w, path, e);
    gguf_writer_free(w);
    return rc;
}

static int seed_vocab(const char *path, struct err *e)
{
    static const char *toks[] = {"<unk>", "<s>", "</s>", "a", "b", "ab", "\xc4\xa0", "\xc4\xa0" "a", "\xe2\x96\x81", "<0x0A>",
                                 "hello", "h\xc3\xa9"};
    enum { N = sizeof toks / sizeof *toks };
    struct gguf_str s[N];
    float scores[N];
    int32_t types[N];
    for (int i = 0; i < N; i++) {
        s[i] = (struct gguf_str){toks[i], strlen(toks[i])};
        scores[i] = -(float)i;
        types[i] = i < 3 ? 3 : 1;
    }
    struct gguf_str merges[2] = {{"a b", 3}, {"\xc4\xa0 a", 4}};
    struct gguf_writer *w = gguf_writer_new();
    gguf_writer_set_str(w, "general.architecture", "llama");
    gguf_writer_set_str(w, "tokenizer.ggml.model", "gpt2");
    gguf_writer_set_str(w, "tokenizer.ggml.pre", "default");
    gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", s, N);
    gguf_writer_set_arr(w, "tokenizer.ggml.scores", GGUF_VT_FLOAT32, scores, N);
    gguf_writer_set_arr(w, "tokenizer.ggml.token_type", GGUF_VT_INT32, types, N);
    gguf_writer_set_arr_str(w, "tokenizer.ggml.merges", merges, 2);
    gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", 1);
    gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", 2);
    gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", true);
    gguf_writer_set_str(w, "tokenizer.chat_template", "{% for m in messages %}{{ m['content'] }}{% endfor %}");
    int rc = gguf_writer_write(w, path, e);
    gguf_writer_free(w);
    return rc;
}

static int seed_model_like(const char *path, struct err *e)
{
    static float emb[32 * 12], norm[32], wq[32 * 32];
    for (int i = 0; i < 32 * 12; i++)
        emb[i] = (float)(i % 7) * 0.1f;
    for (int i = 0; i < 32; i++)
        norm[i] = 1;
    struct gguf_writer *w = gguf_writer_new();
    gguf_writer_set_str(w, "general.architecture", "llama");
    gguf_writer_set_str(w, "general.name", "tiny");
    gguf_writer_set_u32(w, "llama.block_count", 1);
    gguf_writer_set_u32(w, "llama.context_length", 128);
    gguf_writer_set_u32(w, "llama.embedding_length", 32);
    gguf_writer_set_u32(w, "llama.feed_forward_length", 64);
    gguf_writer_set_u32(w, "llama.attention.head_count", 4);
    gguf_writer_set_u32(w, "llama.attention.head_count_kv", 2);
    gguf_writer_set_f32(w, "llama.rope.freq_base", 10000);
    gguf_writer_set_f32(w, "llama.attention.layer_norm_rms_epsilon", 1e-5f);
    int rc = gguf_writer_add_tensor(w, "token_embd.weight", GGML_TYPE_F32, 2, (int64_t[]){32, 12}, emb, sizeof emb, e);
    rc |= gguf_writer_add_tensor(w, "blk.0.attn_norm.weight", GGML_TYPE_F32, 1, (int64_t[]){32}, norm, sizeof norm, e);
    rc |= gguf_writer_add_tensor(w, "blk.0.attn_q.weight", GGML_TYPE_F32, 2, (int64_t[]){32, 8}, wq, 32 * 8 * 4, e);
    rc |= gguf_writer_add_tensor(w, "output_norm.weight", GGML_TYPE_F32, 1, (int64_t[]){32}, norm, sizeof norm, e);
    if (rc == 0)
        rc = gguf_writer_write(w, path, e);
    gguf_writer_free(w);
    return rc;
}

/* The vocabulary seed rewritten as version 2 (same layout). */
static int seed_v2(const char *path, struct err *e)
{
    if (seed_vocab(path, e))
        return -1;
    FILE *f = fopen(path, "r+b");
    uint32_t v = 2;
    if (!f || fseek(f, 4, SEEK_SET) || fwrite(&v, 4, 1, f) != 1) {
        if (f)
            fclose(f);
        return err_set(e, ERR_IO, "%s: cannot patch the version", path);
    }
    fclose(f);
    return 0;
}

static const struct {
    const char *name;
    int (*gen)(const char *path, struct err *e);
} seeds[] = {
    {"kv_all_types.gguf", seed_kv_all_types}, {"tensors_mixed.gguf", seed_tensors_mixed},
    {"align64.gguf", seed_align64},           {"vocab_small.gguf", seed_vocab},
    {"vocab_v2.gguf", seed_v2},               {"model_like.gguf", seed_model_like},
};
enum { N_SEEDS = sizeof seeds / sizeof *seeds };

static uint8_t *slurp(const char *path, size_t *n)
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

TEST(seeds_open_and_match_the_generator)
{
    struct stat st;
    if (stat(CORPUS_DIR, &st) != 0)
        SKIP("run from the repository root to check " CORPUS_DIR);
    char tmp[] = "/tmp/maas_gguf_corpus.XXXXXX";
    if (!mkdtemp(tmp)) {
        CHECK(!"mkdtemp failed");
        return;
    }
    for (int i = 0; i < N_SEEDS; i++) {
        char committed[512], fresh[512];
        struct err e = {0};
        snprintf(committed, sizeof committed, "%s/%s", CORPUS_DIR, seeds[i].name);
        snprintf(fresh, sizeof fresh, "%s/%s", tmp, seeds[i].name);
        struct gguf_file *f = gguf_open(committed, &e);
        CHECKF(f != NULL, "%s", e.msg);
        gguf_close(f);
        CHECKF(seeds[i].gen(fresh, &e) == 0, "%s", e.msg);
        size_t n1 = 0, n2 = 0;
        uint8_t *a = slurp(committed, &n1), *b = slurp(fresh, &n2);
        CHECKF(a && b && n1 == n2 && !memcmp(a, b, n1), "%s differs from the generator's output", committed);
        CHECKF(n1 <= 4096, "%s is %zu bytes; seeds should stay small", committed, n1);
        free(a);
        free(b);
        unlink(fresh);
    }
    rmdir(tmp);
}

int main(int argc, char **argv)
{
    if (argc == 3 && !strcmp(argv[1], "--write")) {
        for (int i = 0; i < N_SEEDS; i++) {
            char path[512];
            struct err e = {0};
            snprintf(path, sizeof path, "%s/%s", argv[2], seeds[i].name);
            if (seeds[i].gen(path, &e)) {
                fprintf(stderr, "%s\n", e.msg);
                return 1;
            }
            printf("wrote %s\n", path);
        }
        return 0;
    }
    RUN(seeds_open_and_match_the_generator);
    TEST_END();
}
