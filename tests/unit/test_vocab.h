/*
 * A real tokenizer for the tests that need one but not a particular one (a
 * tiny random model needs a vocabulary to be served): the shared gpt-2
 * vocabulary when ../shared/testdata is there (test_shared_dir), otherwise a
 * byte-level BPE vocabulary the test writes itself with gguf_writer, so that
 * these tests also run in a clone without ../shared.
 *
 * The self-built vocabulary is what tokenizer.ggml.model = "gpt2" with the
 * "gpt-2" pre-tokenizer expects, laid out as maas mkmodel's trained ones are:
 *   ids 0 .. 255    the 256 byte tokens, byte b as GPT-2's byte-to-unicode
 *                   character of b (a space is "Ġ", U+0120);
 *   then one token per merge, in rank order: "Ġ x" (x in a..z), "x y",
 *                   "Ġx y", "xy z", "Ġxy z" — 36,530 merges, so that the
 *                   vocabulary is about as large as gpt-2's and a sampled
 *                   random model rarely picks an end-of-generation token;
 *   then the control tokens <|endoftext|> (BOS and EOS), <|im_start|> and
 *                   <|im_end|> (ChatML; both end tokens end generation).
 * Header-only, test use only; links the tokenizer module and below.
 */
#ifndef MAAS_TEST_VOCAB_H
#define MAAS_TEST_VOCAB_H

#include "gguf/gguf.h"
#include "test.h"
#include "tokenizer/tokenizer.h"

#include <unistd.h>

#define TEST_VOCAB_SLOT 16 /* bytes per token or merge string in the blob, NUL included */

/* GPT-2's byte-to-unicode mapping: printable Latin-1 bytes stand for
 * themselves; the others (controls, space, DEL, NBSP, soft hyphen) take the
 * code points from U+0100 up, in byte order. */
static uint32_t test_vocab_byte_cp(unsigned b)
{
    if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255))
        return b;
    uint32_t n = 0;
    for (unsigned c = 0; c < b; c++)
        if (!((c >= 33 && c <= 126) || (c >= 161 && c <= 172) || (c >= 174 && c <= 255)))
            n++;
    return 256 + n;
}

/* Writes the UTF-8 of cp (below U+0800, all this mapping needs) to out; its length. */
static size_t test_vocab_utf8(char *out, uint32_t cp)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    out[0] = (char)(0xC0 | (cp >> 6));
    out[1] = (char)(0x80 | (cp & 0x3F));
    return 2;
}

/* Appends one string (at most TEST_VOCAB_SLOT - 1 bytes) to the list. */
static void test_vocab_push(char *blob, struct gguf_str *list, size_t *n, const char *s)
{
    char *slot = blob + *n * TEST_VOCAB_SLOT;
    snprintf(slot, TEST_VOCAB_SLOT, "%s", s);
    list[*n] = (struct gguf_str){slot, strlen(slot)};
    (*n)++;
}

/* Adds the merge "left right" and its result token "leftright". */
static void test_vocab_merge(char *tblob, struct gguf_str *toks, size_t *n_toks, char *mblob, struct gguf_str *merges,
                             size_t *n_merges, const char *left, const char *right)
{
    char s[TEST_VOCAB_SLOT];
    snprintf(s, sizeof s, "%s %s", left, right);
    test_vocab_push(mblob, merges, n_merges, s);
    snprintf(s, sizeof s, "%s%s", left, right);
    test_vocab_push(tblob, toks, n_toks, s);
}

/* Writes the self-built vocabulary to a temporary GGUF file and loads it;
 * NULL with the reason in e. */
static struct tokenizer *test_vocab_build(struct err *e)
{
    enum { N_MERGES = 26 + 26 * 26 * 2 + 26 * 26 * 26 * 2, N_SPECIAL = 3, N_TOKENS = 256 + N_MERGES + N_SPECIAL };
    static const char *const specials[N_SPECIAL] = {"<|endoftext|>", "<|im_start|>", "<|im_end|>"};
    struct gguf_writer *w = gguf_writer_new();
    char *tblob = malloc((size_t)N_TOKENS * TEST_VOCAB_SLOT), *mblob = malloc((size_t)N_MERGES * TEST_VOCAB_SLOT);
    struct gguf_str *toks = malloc(N_TOKENS * sizeof *toks), *merges = malloc(N_MERGES * sizeof *merges);
    int32_t *types = malloc(N_TOKENS * sizeof *types);
    struct tokenizer *t = NULL;
    char path[128];
    path[0] = 0;
    if (!w || !tblob || !mblob || !toks || !merges || !types) {
        err_set(e, ERR_NOMEM, "test vocabulary: out of memory");
        goto out;
    }
    size_t nt = 0, nm = 0;
    for (unsigned b = 0; b < 256; b++) {
        char u[4];
        u[test_vocab_utf8(u, test_vocab_byte_cp(b))] = 0;
        test_vocab_push(tblob, toks, &nt, u);
    }
    char sp[4], x[2] = "a", y[2] = "a", xy[3] = "aa", spx[4], spxy[5];
    sp[test_vocab_utf8(sp, test_vocab_byte_cp(' '))] = 0;
    for (x[0] = 'a'; x[0] <= 'z'; x[0]++)
        test_vocab_merge(tblob, toks, &nt, mblob, merges, &nm, sp, x);
    for (x[0] = 'a'; x[0] <= 'z'; x[0]++)
        for (y[0] = 'a'; y[0] <= 'z'; y[0]++)
            test_vocab_merge(tblob, toks, &nt, mblob, merges, &nm, x, y);
    for (x[0] = 'a'; x[0] <= 'z'; x[0]++) {
        snprintf(spx, sizeof spx, "%s%s", sp, x);
        for (y[0] = 'a'; y[0] <= 'z'; y[0]++)
            test_vocab_merge(tblob, toks, &nt, mblob, merges, &nm, spx, y);
    }
    for (int with_space = 0; with_space < 2; with_space++)
        for (xy[0] = 'a'; xy[0] <= 'z'; xy[0]++)
            for (xy[1] = 'a'; xy[1] <= 'z'; xy[1]++) {
                snprintf(spxy, sizeof spxy, "%s%s", with_space ? sp : "", xy);
                for (y[0] = 'a'; y[0] <= 'z'; y[0]++)
                    test_vocab_merge(tblob, toks, &nt, mblob, merges, &nm, spxy, y);
            }
    for (size_t i = 0; i < nt; i++)
        types[i] = TOK_TYPE_NORMAL;
    uint32_t eot_id = (uint32_t)nt;
    for (int i = 0; i < N_SPECIAL; i++) {
        types[nt] = TOK_TYPE_CONTROL;
        test_vocab_push(tblob, toks, &nt, specials[i]);
    }
    if (nt != N_TOKENS || nm != N_MERGES) {
        err_set(e, ERR_INTERNAL, "test vocabulary: %zu tokens and %zu merges, expected %d and %d", nt, nm, N_TOKENS, N_MERGES);
        goto out;
    }
    int rc = 0;
    rc |= gguf_writer_set_str(w, "general.architecture", "qwen2");
    rc |= gguf_writer_set_str(w, "general.name", "maas test vocabulary");
    rc |= gguf_writer_set_str(w, "tokenizer.ggml.model", "gpt2");
    rc |= gguf_writer_set_str(w, "tokenizer.ggml.pre", "gpt-2");
    rc |= gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", toks, nt);
    rc |= gguf_writer_set_arr(w, "tokenizer.ggml.token_type", GGUF_VT_INT32, types, nt);
    rc |= gguf_writer_set_arr_str(w, "tokenizer.ggml.merges", merges, nm);
    rc |= gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", eot_id);
    rc |= gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", eot_id);
    rc |= gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", false);
    if (rc) {
        err_set(e, ERR_NOMEM, "test vocabulary: out of memory setting the metadata");
        goto out;
    }
    snprintf(path, sizeof path, "/tmp/maas_test_vocab_%d.gguf", (int)getpid());
    if (gguf_writer_write(w, path, e) < 0)
        goto out;
    struct gguf_file *f = gguf_open(path, e);
    if (f) {
        t = tok_load(f, e);
        gguf_close(f);
    }
out:
    if (path[0])
        unlink(path);
    free(types);
    free(merges);
    free(toks);
    free(mblob);
    free(tblob);
    gguf_writer_free(w);
    return t;
}

/* The vocabulary for a test: ../shared/testdata/tokenizer/gpt-2.gguf when
 * test_shared_dir() finds it (as these tests always used), the self-built
 * one otherwise; prints which. NULL with the reason in e when the one chosen
 * cannot be loaded. The caller tok_free()s it. */
static struct tokenizer *test_vocab_load(struct err *e)
{
    const char *dir = test_shared_dir(), *source = "self-built byte-level BPE";
    struct tokenizer *t;
    if (!dir) {
        t = test_vocab_build(e);
    } else {
        char p[600];
        snprintf(p, sizeof p, "%s/tokenizer/gpt-2.gguf", dir);
        source = "shared gpt-2";
        struct gguf_file *f = gguf_open(p, e);
        if (!f)
            return NULL;
        t = tok_load(f, e);
        gguf_close(f);
    }
    if (t)
        printf("  vocabulary: %s, %d tokens\n", source, (int)tok_n_vocab(t));
    return t;
}

#endif
