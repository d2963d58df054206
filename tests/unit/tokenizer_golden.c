/*
 * Golden tests: every vocabulary in ../shared/testdata/tokenizer. NAME.gguf.inp
 * holds texts separated by "\n__ggml_vocab_test__\n" (the file also ends with
 * one); NAME.gguf.out holds one line of ids per text, as the reference
 * tokenizer encodes it without BOS. Each text must encode to exactly those
 * ids, and decoding the ids must give the text back byte for byte. The
 * decoding drops the one space that an SPM vocabulary with add_space_prefix
 * puts before the text (strip_leading_space) — that space is the only part
 * of the round trip that is not in the ids themselves; nothing else is lossy
 * for these vocabularies (SPM byte fallback covers every byte, byte-level BPE
 * covers every byte by construction).
 */
#include "test.h"
#include "tokenizer/tokenizer.h"

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *p = malloc((size_t)n + 1);
    if (p && fread(p, 1, (size_t)n, f) != (size_t)n) {
        free(p);
        p = NULL;
    }
    fclose(f);
    if (p) {
        p[n] = 0;
        *len = (size_t)n;
    }
    return p;
}

static const char SEP[] = "\n__ggml_vocab_test__\n";

static int run_vocab(const char *dir, const char *name, bool lossy)
{
    char path[1024];
    struct err e = {0};
    snprintf(path, sizeof path, "%s/tokenizer/%s.gguf", dir, name);
    struct gguf_file *f = gguf_open(path, &e);
    CHECKF(f != NULL, "%s", e.msg);
    if (!f)
        return -1;
    struct tokenizer *t = tok_load(f, &e);
    gguf_close(f);
    CHECKF(t != NULL, "%s", e.msg);
    if (!t)
        return -1;
    size_t inp_len = 0, out_len = 0;
    snprintf(path, sizeof path, "%s/tokenizer/%s.gguf.inp", dir, name);
    char *inp = slurp(path, &inp_len);
    snprintf(path, sizeof path, "%s/tokenizer/%s.gguf.out", dir, name);
    char *out = slurp(path, &out_len);
    CHECK(inp && out);
    int n_cases = 0, n_enc_ok = 0, n_dec_ok = 0;
    char *text = inp, *line = out;
    while (inp && out && text < inp + inp_len) {
        char *end = strstr(text, SEP);
        size_t tl = end ? (size_t)(end - text) : (size_t)(inp + inp_len - text);
        char *nl = strchr(line, '\n');
        CHECKF(nl != NULL, "%s: .out has fewer lines than .inp has texts", name);
        if (!nl)
            break;
        *nl = 0;
        /* expected ids */
        struct tok_ids want, got;
        tok_ids_init(&want);
        tok_ids_init(&got);
        for (char *p = line; *p;) {
            char *q;
            long v = strtol(p, &q, 10);
            if (q == p)
                break;
            tok_ids_push(&want, (int32_t)v, NULL);
            p = q;
        }
        int rc = tok_encode(t, text, tl, false, false, &got, &e);
        CHECKF(rc == 0, "%s case %d: %s", name, n_cases, e.msg);
        bool same = rc == 0 && got.n == want.n && (got.n == 0 || !memcmp(got.ids, want.ids, got.n * sizeof *got.ids));
        if (same) {
            n_enc_ok++;
        } else {
            fprintf(stderr, "  %s case %d: text '%.*s'\n    want:", name, n_cases, (int)tl, text);
            for (size_t i = 0; i < want.n; i++)
                fprintf(stderr, " %d", want.ids[i]);
            fprintf(stderr, "\n    got: ");
            for (size_t i = 0; i < got.n; i++)
                fprintf(stderr, " %d", got.ids[i]);
            fprintf(stderr, "\n");
        }
        size_t dl = 0;
        char *dec = tok_decode(t, want.ids, want.n, false, true, &dl, &e);
        CHECKF(dec != NULL, "%s case %d: %s", name, n_cases, e.msg);
        if (dec && (lossy || (dl == tl && !memcmp(dec, text, tl))))
            n_dec_ok++;
        else if (dec)
            fprintf(stderr, "  %s case %d: decode gives '%.*s' for '%.*s'\n", name, n_cases, (int)dl, dec, (int)tl,
                    text);
        free(dec);
        tok_ids_release(&want);
        tok_ids_release(&got);
        n_cases++;
        line = nl + 1;
        if (!end)
            break;
        text = end + strlen(SEP);
    }
    CHECKF(line == out + out_len, "%s: .out has more lines than .inp has texts", name);
    printf("  %s: %d cases, encode %d/%d, decode %d/%d\n", name, n_cases, n_enc_ok, n_cases, n_dec_ok, n_cases);
    CHECK(n_cases > 0);
    CHECK(n_enc_ok == n_cases);
    CHECK(n_dec_ok == n_cases);
    free(inp);
    free(out);
    tok_free(t);
    return 0;
}

#define VOCAB_TEST(fn, name, lossy)                                                                                 \
    TEST(fn)                                                                                                   \
    {                                                                                                          \
        const char *dir = test_shared_dir();                                                                   \
        if (!dir)                                                                                              \
            SKIP("../shared/testdata not found");                                                              \
        run_vocab(dir, name, lossy);                                                                               \
    }

VOCAB_TEST(golden_llama_spm, "llama-spm", false)
VOCAB_TEST(golden_phi3, "phi-3", false)
VOCAB_TEST(golden_gpt2, "gpt-2", false)
VOCAB_TEST(golden_deepseek_llm, "deepseek-llm", false)
/* WordPiece lower-cases and drops accents and spaces: decoding cannot give
 * the text back (tokenizer_basic checks what it gives). */
VOCAB_TEST(golden_bert_bge, "bert-bge", true)

int main(void)
{
    RUN(golden_llama_spm);
    RUN(golden_phi3);
    RUN(golden_gpt2);
    RUN(golden_deepseek_llm);
    RUN(golden_bert_bge);
    TEST_END();
}
