/* tokenizer: WordPiece (tokenizer.ggml.model = "bert") on a vocabulary
 * written here in the layout llama.cpp's converter gives BERT vocabularies
 * (word-initial pieces with U+2581 before them, continuation pieces bare):
 * lower-casing, accents dropped, punctuation and CJK split off, greedy
 * longest match, [UNK] for a word nothing covers, [CLS]/[SEP] with
 * add_special, control characters dropped, decoding. (The bert-bge golden
 * vectors are in tokenizer_golden.) */
#include "test.h"
#include "tokenizer/tokenizer.h"

#include <unistd.h>

static const char *const vocab[] = {
    "[PAD]", "[UNK]", "[CLS]", "[SEP]",                                   /* 0..3 */
    "\xE2\x96\x81" "hello", "\xE2\x96\x81" "world", "\xE2\x96\x81,", "\xE2\x96\x81!", /* 4..7 */
    "\xE2\x96\x81" "un", "aff", "able", "\xE2\x96\x81" "unaff",                 /* 8..11 */
    "\xE2\x96\x81" "cafe", "\xE2\x96\x81\xE4\xBD\xA0", "\xE2\x96\x81\xE5\xA5\xBD", /* 12..14: cafe, 你, 好 */
    "\xE2\x96\x81" "a", "b",                                                /* 15, 16 */
};
#define NV (int)(sizeof vocab / sizeof *vocab)

static struct tokenizer *load(void)
{
    struct gguf_writer *w = gguf_writer_new();
    struct gguf_str s[NV];
    int32_t types[NV];
    for (int i = 0; i < NV; i++) {
        s[i] = (struct gguf_str){vocab[i], strlen(vocab[i])};
        types[i] = i < 4 ? 3 : 1;
    }
    gguf_writer_set_str(w, "tokenizer.ggml.model", "bert");
    gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", s, NV);
    gguf_writer_set_arr(w, "tokenizer.ggml.token_type", GGUF_VT_INT32, types, NV);
    gguf_writer_set_u32(w, "tokenizer.ggml.unknown_token_id", 1);
    gguf_writer_set_u32(w, "tokenizer.ggml.cls_token_id", 2);
    gguf_writer_set_u32(w, "tokenizer.ggml.seperator_token_id", 3);
    char path[64];
    snprintf(path, sizeof path, "/tmp/maas_test_wpm_%d.gguf", (int)getpid());
    struct err e = {0};
    struct tokenizer *t = NULL;
    if (gguf_writer_write(w, path, &e) == 0) {
        struct gguf_file *f = gguf_open(path, &e);
        t = f ? tok_load(f, &e) : NULL;
        gguf_close(f);
    }
    unlink(path);
    gguf_writer_free(w);
    CHECKF(t != NULL, "%s", e.msg);
    return t;
}

/* text encodes to want (n ids, terminated by -1). */
static void expect(const struct tokenizer *t, const char *text, bool add_special, const int32_t *want)
{
    struct tok_ids ids;
    tok_ids_init(&ids);
    struct err e = {0};
    CHECKF(tok_encode(t, text, strlen(text), add_special, false, &ids, &e) == 0, "%s", e.msg);
    size_t n = 0;
    while (want[n] >= 0)
        n++;
    bool same = ids.n == n && (n == 0 || !memcmp(ids.ids, want, n * sizeof *want));
    CHECKF(same, "'%s': %zu ids, first %d", text, ids.n, ids.n ? ids.ids[0] : -1);
    tok_ids_release(&ids);
}

TEST(test_wpm_encode)
{
    struct tokenizer *t = load();
    if (!t)
        return;
    CHECK(tok_model(t) == TOK_MODEL_WPM && tok_bos(t) == 2 && tok_eos(t) == 3);
    expect(t, "Hello, World!", false, (const int32_t[]){4, 6, 5, 7, -1});
    expect(t, "Hello, World!", true, (const int32_t[]){2, 4, 6, 5, 7, 3, -1});
    expect(t, "unaffable", false, (const int32_t[]){11, 10, -1});   /* longest first: "▁unaff" then "able" */
    expect(t, "unable hello", false, (const int32_t[]){8, 10, 4, -1});
    expect(t, "unaffablex hello", false, (const int32_t[]){1, 4, -1}); /* "x" matches nothing: the word is [UNK] */
    expect(t, "  CAF\xC3\x89\t", false, (const int32_t[]){12, -1});  /* CAFÉ -> cafe */
    expect(t, "\xE4\xBD\xA0\xE5\xA5\xBD", false, (const int32_t[]){13, 14, -1}); /* 你好: one word each */
    expect(t, "a\x01" "b", false, (const int32_t[]){15, 16, -1});      /* a control character is dropped */
    expect(t, "   ", true, (const int32_t[]){2, 3, -1});
    expect(t, "[CLS]", false, (const int32_t[]){1, 1, 1, -1});         /* not parsed: "[", "cls", "]" */
    int32_t ids[] = {2, 4, 6, 5, 7, 3};
    size_t len = 0;
    struct err e = {0};
    char *s = tok_decode(t, ids, 6, false, true, &len, &e);
    CHECKF(s && !strcmp(s, "hello , world !"), "decoded '%s'", s ? s : e.msg);
    free(s);
    tok_free(t);
}

int main(void)
{
    RUN(test_wpm_encode);
    TEST_END();
}
