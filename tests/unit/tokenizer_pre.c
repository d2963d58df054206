/*
 * Every supported pre-tokenizer name: the gpt-2 vocabulary from
 * ../shared/testdata is rewritten with tokenizer.ggml.pre set to each name,
 * loaded (so every expression list compiles under PCRE2) and made to encode
 * and decode a text mixing scripts, digits, punctuation, whitespace runs and
 * invalid UTF-8. The byte-level vocabulary covers every byte, so the round
 * trip must be exact whatever the split. Also checks splits that tell the
 * expression lists apart (digit grouping). Skips without ../shared.
 */
#include "test.h"
#include "tokenizer/tokenizer.h"

#include <unistd.h>

static const char *const pres[] = {
    "default", "gpt-2", "llama3", "llama-bpe", "qwen2", "deepseek-llm", "deepseek-coder", "deepseek-v3", "falcon",
    "starcoder", "refact", "mpt", "command-r", "chatglm-bpe", "smollm", "dbrx", "olmo", "tekken", "bloom", "viking",
    "stablelm2", "phi-2", "deepseek-r1-qwen", "gpt-4o", "seed-coder", "hunyuan", "falcon3", "exaone",
};

static struct tokenizer *with_pre(const struct gguf_file *src, const char *pre, struct err *e)
{
    char path[256];
    snprintf(path, sizeof path, "/tmp/maas_tok_pre_%d.gguf", (int)getpid());
    struct gguf_writer *w = gguf_writer_new();
    struct tokenizer *t = NULL;
    if (!w)
        return NULL;
    for (size_t i = 0; i < gguf_n_kv(src); i++)
        gguf_writer_copy_kv(w, gguf_kv_at(src, i));
    gguf_writer_set_str(w, "tokenizer.ggml.pre", pre);
    if (gguf_writer_write(w, path, e) == 0) {
        struct gguf_file *f = gguf_open(path, e);
        if (f) {
            t = tok_load(f, e);
            gguf_close(f);
        }
        unlink(path);
    }
    gguf_writer_free(w);
    return t;
}

static const char mixed[] = "Hello, World! It's 2024-11-29: 1234567 apples\n\n\t  indented   \r\n"
                            "\xD0\x9F\xD1\x80\xD0\xB8\xD0\xB2\xD0\xB5\xD1\x82 \xE4\xBD\xA0\xE5\xA5\xBD "
                            "\xE3\x81\x93\xE3\x82\x93 \xF0\x9F\x98\x80 caf\xC3\xA9 \xEF\xBC\x81 x = a+b; // ok\n"
                            "bad \xC3 bytes \xFF\xFE end   ";

TEST(every_pre_round_trips)
{
    const char *dir = test_shared_dir();
    if (!dir)
        SKIP("../shared/testdata not found");
    char path[512];
    snprintf(path, sizeof path, "%s/tokenizer/gpt-2.gguf", dir);
    struct err e = {0};
    struct gguf_file *src = gguf_open(path, &e);
    CHECKF(src, "%s", e.msg);
    if (!src)
        return;
    for (size_t i = 0; i < sizeof pres / sizeof *pres; i++) {
        struct tokenizer *t = with_pre(src, pres[i], &e);
        CHECKF(t, "pre '%s': %s", pres[i], e.msg);
        if (!t)
            continue;
        struct tok_ids v;
        tok_ids_init(&v);
        CHECKF(tok_encode(t, mixed, sizeof mixed - 1, false, false, &v, &e) == 0, "%s: %s", pres[i], e.msg);
        CHECK(v.n > 10);
        size_t dl;
        char *d = tok_decode(t, v.ids, v.n, false, false, &dl, &e);
        CHECKF(d && dl == sizeof mixed - 1 && !memcmp(d, mixed, dl), "pre '%s': round trip differs", pres[i]);
        free(d);
        /* digits: llama3 groups by three, qwen2 and starcoder one by one, gpt-2 keeps a run */
        v.n = 0;
        CHECK(tok_encode(t, "1234567", 7, false, false, &v, &e) == 0);
        if (!strcmp(pres[i], "llama3"))
            CHECKF(v.n >= 3, "llama3 split 1234567 into %zu tokens", v.n);
        if (!strcmp(pres[i], "qwen2") || !strcmp(pres[i], "starcoder") || !strcmp(pres[i], "deepseek-coder"))
            CHECKF(v.n == 7, "%s split 1234567 into %zu tokens", pres[i], v.n);
        tok_ids_release(&v);
        tok_free(t);
    }
    struct tokenizer *t = with_pre(src, "gpt-5-imaginary", &e);
    CHECK(t == NULL);
    CHECKF(strstr(e.msg, "unknown pre-tokenizer 'gpt-5-imaginary'"), "%s", e.msg);
    gguf_close(src);
}

int main(void)
{
    RUN(every_pre_round_trips);
    TEST_END();
}
