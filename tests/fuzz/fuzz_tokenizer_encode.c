/* libFuzzer target for the tokenizer: arbitrary bytes are encoded and the
 * ids decoded and streamed back, with properties checked on every input.
 *
 * Vocabularies: a small byte-level BPE and a small SPM with byte fallback,
 * both built here (so the target needs no files), plus gpt-2, llama-spm and
 * the WordPiece bert-bge from ../shared/testdata when present (bit 7 of the
 * first byte reaches the fifth). The first input byte chooses the
 * vocabulary and the flags; the rest is the text.
 *
 * Properties: encoding never fails on any bytes; every id is in range; for
 * byte-level BPE decode(encode(text)) == text, with render_special when the
 * text was encoded with parse_special; for SPM (no special tokens parsed, no
 * U+2581 in the text) decode with strip_leading_space == text; the streaming detokenizer hands
 * back valid UTF-8 only, and without stop strings exactly the decoded text
 * with invalid sequences replaced, while a stop string never reaches the
 * output. */
#define _GNU_SOURCE /* memmem */
#include "tokenizer/tokenizer.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define MAX_TOK 5
static struct tokenizer *toks[MAX_TOK];
static int n_toks;

static struct tokenizer *load_path(const char *path)
{
    struct err e = {0};
    struct gguf_file *f = gguf_open(path, &e);
    if (!f)
        return NULL;
    struct tokenizer *t = tok_load(f, &e);
    gguf_close(f);
    if (!t)
        fprintf(stderr, "fuzz_tokenizer_encode: %s\n", e.msg);
    return t;
}

static struct tokenizer *write_and_load(struct gguf_writer *w)
{
    char path[128];
    struct err e = {0};
    snprintf(path, sizeof path, "/tmp/fuzz_tok_%d.gguf", (int)getpid());
    struct tokenizer *t = NULL;
    if (gguf_writer_write(w, path, &e) == 0) {
        t = load_path(path);
        unlink(path);
    } else {
        fprintf(stderr, "fuzz_tokenizer_encode: %s\n", e.msg);
    }
    gguf_writer_free(w);
    return t;
}

static char strs[512][16];

static struct tokenizer *small_bpe(void)
{
    /* every byte's character, a few merges, a control and a user-defined token */
    static const char *const extra[] = {"\xC4\xA0t", "he", "\xC4\xA0the", "in", "<|im_end|>", "<|tool|>"};
    static const char *const merges[] = {"h e", "\xC4\xA0 t", "\xC4\xA0t he", "i n"};
    struct gguf_str s[256 + 6], m[4];
    int32_t types[256 + 6];
    for (int b = 0; b < 256; b++) {
        /* GPT-2 mapping: printable bytes stand for themselves, the rest take 256.. in order */
        int self = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
        int n = 0;
        for (int c = 0; c < b; c++)
            n += !((c >= 0x21 && c <= 0x7E) || (c >= 0xA1 && c <= 0xAC) || c >= 0xAE);
        unsigned cp = self ? (unsigned)b : 256u + (unsigned)n;
        if (cp < 0x80) {
            strs[b][0] = (char)cp, strs[b][1] = 0;
        } else {
            strs[b][0] = (char)(0xC0 | (cp >> 6)), strs[b][1] = (char)(0x80 | (cp & 0x3F)), strs[b][2] = 0;
        }
        s[b] = (struct gguf_str){strs[b], strlen(strs[b])};
        types[b] = 1;
    }
    for (int i = 0; i < 6; i++) {
        s[256 + i] = (struct gguf_str){extra[i], strlen(extra[i])};
        types[256 + i] = i == 4 ? 3 : i == 5 ? 4 : 1;
    }
    for (int i = 0; i < 4; i++)
        m[i] = (struct gguf_str){merges[i], strlen(merges[i])};
    struct gguf_writer *w = gguf_writer_new();
    gguf_writer_set_str(w, "tokenizer.ggml.model", "gpt2");
    gguf_writer_set_str(w, "tokenizer.ggml.pre", "qwen2");
    gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", s, 256 + 6);
    gguf_writer_set_arr(w, "tokenizer.ggml.token_type", GGUF_VT_INT32, types, 256 + 6);
    gguf_writer_set_arr_str(w, "tokenizer.ggml.merges", m, 4);
    return write_and_load(w);
}

static struct tokenizer *small_spm(void)
{
    static const char *const extra[] = {"\xE2\x96\x81", "\xE2\x96\x81t", "he", "\xE2\x96\x81the", "<|end|>"};
    static const float extra_score[] = {-1, -2, -3, -1.5f, 0};
    struct gguf_str s[3 + 256 + 5];
    float scores[3 + 256 + 5];
    int32_t types[3 + 256 + 5];
    static const char *const head[] = {"<unk>", "<s>", "</s>"};
    for (int i = 0; i < 3; i++)
        s[i] = (struct gguf_str){head[i], strlen(head[i])}, types[i] = i ? 3 : 2, scores[i] = 0;
    for (int b = 0; b < 256; b++) {
        snprintf(strs[256 + b], sizeof strs[0], "<0x%02X>", b);
        s[3 + b] = (struct gguf_str){strs[256 + b], 6};
        types[3 + b] = 6;
        scores[3 + b] = 0;
    }
    for (int i = 0; i < 5; i++) {
        s[259 + i] = (struct gguf_str){extra[i], strlen(extra[i])};
        types[259 + i] = i == 4 ? 3 : 1;
        scores[259 + i] = extra_score[i];
    }
    struct gguf_writer *w = gguf_writer_new();
    gguf_writer_set_str(w, "tokenizer.ggml.model", "llama");
    gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", s, 264);
    gguf_writer_set_arr(w, "tokenizer.ggml.scores", GGUF_VT_FLOAT32, scores, 264);
    gguf_writer_set_arr(w, "tokenizer.ggml.token_type", GGUF_VT_INT32, types, 264);
    return write_and_load(w);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    struct tokenizer *t;
    if ((t = small_bpe()))
        toks[n_toks++] = t;
    if ((t = small_spm()))
        toks[n_toks++] = t;
    if ((t = load_path("../shared/testdata/tokenizer/gpt-2.gguf")))
        toks[n_toks++] = t;
    if ((t = load_path("../shared/testdata/tokenizer/llama-spm.gguf")))
        toks[n_toks++] = t;
    if ((t = load_path("../shared/testdata/tokenizer/bert-bge.gguf")))
        toks[n_toks++] = t;
    MAAS_ASSERT(n_toks >= 2);
    return 0;
}

/* Valid UTF-8 by the standard's rules (no overlongs, surrogates or > U+10FFFF). */
static bool valid_utf8(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        size_t need = c < 0x80 ? 1 : c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
        if (!need || i + need > n)
            return false;
        for (size_t k = 1; k < need; k++)
            if ((s[i + k] & 0xC0) != 0x80)
                return false;
        if ((c == 0xE0 && s[i + 1] < 0xA0) || (c == 0xED && s[i + 1] > 0x9F) || (c == 0xF0 && s[i + 1] < 0x90) ||
            (c == 0xF4 && s[i + 1] > 0x8F))
            return false;
        i += need;
    }
    return true;
}

static void stream_check(struct tokenizer *t, const struct tok_ids *ids, bool render, const char *stop,
                         const char *dec, size_t dl)
{
    struct err e = {0};
    const char *stops[1] = {stop};
    struct tok_stream *s = tok_stream_new(t, stops, stop ? 1 : 0, render, &e);
    MAAS_ASSERT(s);
    char *acc = malloc(dl * 3 + 16);
    size_t an = 0;
    const char *out;
    size_t ol;
    int rc = 0;
    for (size_t i = 0; i < ids->n && rc == 0; i++) {
        rc = tok_stream_feed(s, ids->ids[i], &out, &ol, &e);
        MAAS_ASSERT(rc >= 0);
        MAAS_ASSERT(valid_utf8((const uint8_t *)out, ol));
        memcpy(acc + an, out, ol);
        an += ol;
    }
    MAAS_ASSERT(tok_stream_finish(s, &out, &ol, &e) == 0);
    MAAS_ASSERT(valid_utf8((const uint8_t *)out, ol));
    memcpy(acc + an, out, ol);
    an += ol;
    if (stop) {
        MAAS_ASSERT(!memmem(acc, an, stop, strlen(stop)));
    } else {
        /* the decoded text, with each invalid sequence replaced: valid bytes agree */
        if (valid_utf8((const uint8_t *)dec, dl))
            MAAS_ASSERT(an == dl && !memcmp(acc, dec, dl));
    }
    free(acc);
    tok_stream_free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t sel = data[0];
    struct tokenizer *t = toks[((sel & 3) + 4 * (sel >> 7)) % n_toks];
    bool parse_special = sel & 4, add_special = sel & 8;
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    struct err e = {0};
    struct tok_ids ids;
    tok_ids_init(&ids);
    int rc = tok_encode(t, text, len, add_special, parse_special, &ids, &e);
    MAAS_ASSERT(rc == 0);
    for (size_t i = 0; i < ids.n; i++)
        MAAS_ASSERT(ids.ids[i] >= 0 && ids.ids[i] < tok_n_vocab(t));
    /* without the BOS/EOS that add_special may have put around the text */
    size_t off = add_special && tok_add_bos(t) ? 1 : 0;
    size_t n = ids.n - off - (add_special && tok_add_eos(t) ? 1 : 0);
    bool spm = tok_model(t) == TOK_MODEL_SPM;
    size_t dl = 0;
    /* ids.ids is NULL when the text encoded to nothing */
    char *dec = tok_decode(t, ids.n ? ids.ids + off : NULL, n, parse_special, spm, &dl, &e);
    MAAS_ASSERT(dec);
    /* SPM is lossy by definition in two ways: it puts a space after every
     * special token it parses, and a literal U+2581 in the text decodes as a
     * space (the character is SentencePiece's escape for spaces). */
    /* WordPiece lower-cases and drops accents, control characters and
     * spaces: only the properties above and below hold for it. */
    if (tok_model(t) != TOK_MODEL_WPM && !(spm && (parse_special || memmem(text, len, "\xE2\x96\x81", 3))))
        MAAS_ASSERT(dl == len && !memcmp(dec, text, len));
    free(dec);
    /* the stream does not drop SPM's prefix space: compare with the plain decoding */
    dec = tok_decode(t, ids.ids, ids.n, parse_special, false, &dl, &e);
    MAAS_ASSERT(dec);
    stream_check(t, &ids, parse_special, NULL, dec, dl);
    stream_check(t, &ids, parse_special, sel & 16 ? "the" : "\xC3\xA9\n", dec, dl);
    free(dec);
    tok_ids_release(&ids);
    return 0;
}
