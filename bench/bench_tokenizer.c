/*
 * bench_tokenizer — encoding speed of English prose on one core.
 *
 *   build/bench/bench_tokenizer [TEXT_FILE]
 *
 * The prose is TEXT_FILE, or /usr/share/common-licenses/GPL-3 when present,
 * or a paragraph built in here; it is repeated to 4 MiB and encoded in
 * 16 KiB pieces cut at spaces (prompt-sized calls, so per-call costs count).
 * Vocabularies are taken from ../shared/testdata/tokenizer (gpt-2 and
 * deepseek-llm: byte-level BPE; llama-spm: SentencePiece); one that is
 * missing is reported as skipped. Each configuration runs 5 times and the
 * median is printed, one line per vocabulary:
 *
 *   tokenizer vocab=gpt-2 model=bpe bytes=4194304 tokens=... mb_per_s=... (median of 5)
 *
 * and a closing ratio line `bpe_gpt2_vs_target=X` against the 5 MB/s goal.
 */
#include "tokenizer/tokenizer.h"

#include <stdio.h>
#include <string.h>

static const char builtin_prose[] =
    "It was a bright cold day in April, and the clocks on the old tower were striking thirteen. The market "
    "square below had emptied early; a few traders folded their awnings, and the smell of bread drifted from "
    "the bakery on the corner. Nobody could remember when the tower had last told the right time, but the town "
    "had grown used to it, the way one grows used to a friend who is always late. Children learned to read the "
    "sun instead, and their parents pretended not to notice. \"We'll fix it next spring,\" the mayor said every "
    "year, and every year the council voted to spend the money on something more urgent: a new bridge, a "
    "school roof, a road that wouldn't flood. So the clock went on striking whatever it liked.\n\n";

static char *load_text(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *p = n > 0 ? malloc((size_t)n) : NULL;
    if (p && fread(p, 1, (size_t)n, f) != (size_t)n) {
        free(p);
        p = NULL;
    }
    fclose(f);
    *len = p ? (size_t)n : 0;
    return p;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double bench_one(const char *name, const char *text, size_t len, double *out_mbps)
{
    char path[256];
    snprintf(path, sizeof path, "../shared/testdata/tokenizer/%s.gguf", name);
    struct err e = {0};
    struct gguf_file *f = gguf_open(path, &e);
    if (!f) {
        printf("tokenizer vocab=%s skipped: %s\n", name, e.msg);
        return -1;
    }
    struct tokenizer *t = tok_load(f, &e);
    gguf_close(f);
    if (!t) {
        printf("tokenizer vocab=%s skipped: %s\n", name, e.msg);
        return -1;
    }
    enum { RUNS = 5, CHUNK = 16 * 1024 };
    double mbps[RUNS];
    size_t n_tokens = 0;
    struct tok_ids ids;
    tok_ids_init(&ids);
    for (int r = 0; r < RUNS; r++) {
        n_tokens = 0;
        uint64_t t0 = now_ns();
        for (size_t off = 0; off < len;) {
            size_t n = len - off < CHUNK ? len - off : CHUNK;
            while (off + n < len && n > 1 && text[off + n] != ' ')
                n--; /* cut before a space, as a prompt would end */
            ids.n = 0;
            if (tok_encode(t, text + off, n, false, false, &ids, &e)) {
                printf("tokenizer vocab=%s error: %s\n", name, e.msg);
                tok_ids_release(&ids);
                tok_free(t);
                return -1;
            }
            n_tokens += ids.n;
            off += n;
        }
        double s = (double)(now_ns() - t0) / 1e9;
        mbps[r] = (double)len / 1e6 / s;
    }
    qsort(mbps, RUNS, sizeof *mbps, cmp_double);
    printf("tokenizer vocab=%s model=%s bytes=%zu tokens=%zu bytes_per_token=%.2f mb_per_s=%.2f (median of %d; "
           "min %.2f max %.2f)\n",
           name, tok_model(t) == TOK_MODEL_BPE ? "bpe" : "spm", len, n_tokens, (double)len / (double)n_tokens,
           mbps[RUNS / 2], RUNS, mbps[0], mbps[RUNS - 1]);
    *out_mbps = mbps[RUNS / 2];
    tok_ids_release(&ids);
    tok_free(t);
    return 0;
}

int main(int argc, char **argv)
{
    size_t src_len = 0;
    char *src = NULL;
    const char *src_name = "built-in paragraph";
    if (argc > 1) {
        if (!(src = load_text(argv[1], &src_len))) {
            fprintf(stderr, "bench_tokenizer: cannot read %s\n", argv[1]);
            return 1;
        }
        src_name = argv[1];
    } else if ((src = load_text("/usr/share/common-licenses/GPL-3", &src_len))) {
        src_name = "/usr/share/common-licenses/GPL-3";
    }
    if (!src) {
        src_len = sizeof builtin_prose - 1;
        src = malloc(src_len);
        if (!src)
            return 1;
        memcpy(src, builtin_prose, src_len);
    }
    size_t len = 4u << 20;
    char *text = malloc(len);
    if (!text)
        return 1;
    for (size_t i = 0; i < len; i += src_len)
        memcpy(text + i, src, len - i < src_len ? len - i : src_len);
    printf("tokenizer text=\"%s\" repeated to %zu bytes, one thread, 16 KiB calls\n", src_name, len);
    double gpt2 = -1, x;
    if (bench_one("gpt-2", text, len, &x) == 0)
        gpt2 = x;
    bench_one("deepseek-llm", text, len, &x);
    bench_one("llama-spm", text, len, &x);
    if (gpt2 > 0)
        printf("bpe_gpt2_vs_target=%.2f (target 5 MB/s per core)\n", gpt2 / 5.0);
    free(text);
    free(src);
    return 0;
}
