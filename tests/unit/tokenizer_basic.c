/*
 * Tokenizer tests that need no shared data: tiny vocabularies are written as
 * GGUF files with gguf_writer, loaded back and exercised — BPE merges by
 * rank, SPM scores and byte fallback, special tokens refused in raw text,
 * invalid UTF-8 kept byte for byte, the streaming detokenizer (a character
 * split across tokens, a stop string across three tokens, U+FFFD at the end)
 * and the load errors.
 */
#include "test.h"
#include "tokenizer/tokenizer.h"

#include <unistd.h>

static char tmp_path[256];

/* Writes the vocabulary (tokens, optional scores/types/merges) to a temporary
 * GGUF file and loads it; NULL with the reason in e. */
static struct tokenizer *make_vocab(const char *model, const char *pre, const char *const *toks, size_t n,
                                    const float *scores, const int32_t *types, const char *const *merges,
                                    size_t n_merges, struct err *e)
{
    struct gguf_writer *w = gguf_writer_new();
    struct gguf_str *s = calloc(n + n_merges + 1, sizeof *s);
    struct tokenizer *t = NULL;
    if (!w || !s)
        goto out;
    gguf_writer_set_str(w, "general.architecture", "llama");
    gguf_writer_set_str(w, "tokenizer.ggml.model", model);
    if (pre)
        gguf_writer_set_str(w, "tokenizer.ggml.pre", pre);
    for (size_t i = 0; i < n; i++)
        s[i] = (struct gguf_str){toks[i], strlen(toks[i])};
    gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", s, n);
    if (scores)
        gguf_writer_set_arr(w, "tokenizer.ggml.scores", GGUF_VT_FLOAT32, scores, n);
    if (types)
        gguf_writer_set_arr(w, "tokenizer.ggml.token_type", GGUF_VT_INT32, types, n);
    if (merges) {
        for (size_t i = 0; i < n_merges; i++)
            s[i] = (struct gguf_str){merges[i], strlen(merges[i])};
        gguf_writer_set_arr_str(w, "tokenizer.ggml.merges", s, n_merges);
    }
    snprintf(tmp_path, sizeof tmp_path, "/tmp/maas_tok_test_%d.gguf", (int)getpid());
    if (gguf_writer_write(w, tmp_path, e))
        goto out;
    struct gguf_file *f = gguf_open(tmp_path, e);
    if (f) {
        t = tok_load(f, e);
        gguf_close(f);
    }
    unlink(tmp_path);
out:
    free(s);
    gguf_writer_free(w);
    return t;
}

/* BPE: the characters a b c, space (Ġ = U+0120), two bytes of é (Ã = C3, © = A9),
 * and merges in rank order. */
static const char *const bpe_toks[] = {
    "a", "b", "c", "\xC4\xA0", "\xC3\x83", "\xC2\xA9", /* 0..5 */
    "ab", "abc", "\xC4\xA0" "a", "\xC4\xA0" "ab", "bc", /* 6..10 */
    "<|im_end|>",                                       /* 11 control */
    "\xC3\x83\xC2\xA9",                                 /* 12 = é */
    "<", "|", "i", "m", "_", "e", "n", "d", ">",        /* 13..21 */
};
static const int32_t bpe_types[] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
static const char *const bpe_merges[] = {
    "b c",              /* rank 0: bc */
    "\xC4\xA0 a",       /* rank 1 */
    "a b",              /* rank 2 */
    "ab c",             /* rank 3 (never reached: bc wins first in "abc") */
    "\xC4\xA0" "a b",   /* rank 4 */
    "\xC3\x83 \xC2\xA9", /* rank 5: é */
};

static struct tokenizer *bpe_vocab(const char *pre, struct err *e)
{
    return make_vocab("gpt2", pre, bpe_toks, sizeof bpe_toks / sizeof *bpe_toks, NULL, bpe_types, bpe_merges,
                      sizeof bpe_merges / sizeof *bpe_merges, e);
}

static bool ids_eq(const struct tok_ids *v, const int32_t *want, size_t n)
{
    if (v->n != n)
        return false;
    for (size_t i = 0; i < n; i++)
        if (v->ids[i] != want[i])
            return false;
    return true;
}

static void print_ids(const char *what, const struct tok_ids *v)
{
    fprintf(stderr, "  %s:", what);
    for (size_t i = 0; i < v->n; i++)
        fprintf(stderr, " %d", v->ids[i]);
    fprintf(stderr, "\n");
}

TEST(bpe_merges_by_rank)
{
    struct err e = {0};
    struct tokenizer *t = bpe_vocab("gpt-2", &e);
    CHECKF(t, "%s", e.msg);
    if (!t)
        return;
    struct tok_ids v;
    tok_ids_init(&v);
    /* "abc": "b c" (rank 0) merges before "a b" (rank 2), so a + bc; " ab": Ġa (rank 1) then Ġab */
    CHECK(tok_encode(t, "abc ab", 6, false, false, &v, &e) == 0);
    static const int32_t want[] = {0, 10, 9};
    CHECK(ids_eq(&v, want, 3));
    if (!ids_eq(&v, want, 3))
        print_ids("abc ab", &v);
    /* é is two bytes whose characters merge into token 12 */
    v.n = 0;
    CHECK(tok_encode(t, "\xC3\xA9", 2, false, false, &v, &e) == 0);
    CHECK(v.n == 1 && v.ids[0] == 12);
    size_t len;
    const char *p = tok_piece(t, 12, false, &len);
    CHECK(p && len == 2 && !memcmp(p, "\xC3\xA9", 2));
    p = tok_piece(t, 9, false, &len);
    CHECK(p && len == 3 && !memcmp(p, " ab", 3));
    CHECK(tok_piece(t, 99, false, &len) == NULL);
    /* words longer than the small-word path (64 bytes) take the heap path: same rules */
    for (int reps = 10; reps <= 40; reps += 30) {
        char word[128];
        for (int i = 0; i < reps; i++)
            memcpy(word + 3 * i, "abc", 3);
        v.n = 0;
        CHECK(tok_encode(t, word, (size_t)reps * 3, false, false, &v, &e) == 0);
        bool ok = v.n == (size_t)reps * 2;
        for (size_t i = 0; ok && i < v.n; i++)
            ok = v.ids[i] == (i % 2 ? 10 : 0);
        CHECKF(ok, "'abc' x %d", reps);
    }
    CHECK(tok_n_vocab(t) == (int32_t)(sizeof bpe_toks / sizeof *bpe_toks));
    CHECK(tok_model(t) == TOK_MODEL_BPE);
    CHECK(!tok_add_bos(t));
    CHECK(!strcmp(tok_pre_name(t), "gpt-2"));
    /* <|im_end|> ends a ChatML turn */
    CHECK(tok_eot(t) == 11 && tok_is_eog(t, 11));
    /* the vocabulary's own string, not the bytes it stands for */
    p = tok_token_text(t, 9, &len);
    CHECK(p && len == 4 && !memcmp(p, "\xC4\xA0" "ab", 4));
    CHECK(tok_token_text(t, -1, &len) == NULL && tok_token_text(t, 22, &len) == NULL);
    /* ids a model and this tokenizer both know */
    CHECK(tok_n_vocab_common(t, 100) == 22 && tok_n_vocab_common(t, 10) == 10 && tok_n_vocab_common(NULL, 10) == 10);
    tok_ids_release(&v);
    tok_free(t);
}

TEST(special_tokens_only_when_allowed)
{
    struct err e = {0};
    struct tokenizer *t = bpe_vocab("gpt-2", &e);
    CHECKF(t, "%s", e.msg);
    if (!t)
        return;
    const char *text = "ab<|im_end|>c";
    struct tok_ids raw, spec;
    tok_ids_init(&raw);
    tok_ids_init(&spec);
    CHECK(tok_encode(t, text, strlen(text), false, false, &raw, &e) == 0);
    CHECK(tok_encode(t, text, strlen(text), false, true, &spec, &e) == 0);
    bool raw_has = false, spec_has = false;
    for (size_t i = 0; i < raw.n; i++)
        raw_has |= raw.ids[i] == 11;
    for (size_t i = 0; i < spec.n; i++)
        spec_has |= spec.ids[i] == 11;
    CHECKF(!raw_has, "user text produced the control token");
    CHECK(spec_has);
    static const int32_t want_spec[] = {6, 11, 2};
    CHECK(ids_eq(&spec, want_spec, 3));
    /* raw text decodes back to itself; the control token renders only when asked */
    size_t dl;
    char *d = tok_decode(t, raw.ids, raw.n, false, false, &dl, &e);
    CHECK(d && dl == strlen(text) && !memcmp(d, text, dl));
    free(d);
    d = tok_decode(t, spec.ids, spec.n, false, false, &dl, &e);
    CHECK(d && !strcmp(d, "abc"));
    free(d);
    d = tok_decode(t, spec.ids, spec.n, true, false, &dl, &e);
    CHECK(d && !strcmp(d, text));
    free(d);
    CHECK(tok_find(t, "<|im_end|>", 10) == 11);
    CHECK(tok_is_eog(t, 11));
    CHECK(!tok_is_eog(t, 0) && !tok_is_eog(t, -1) && !tok_is_eog(t, 1000));
    tok_ids_release(&raw);
    tok_ids_release(&spec);
    tok_free(t);
}

TEST(bpe_invalid_utf8_is_kept)
{
    struct err e = {0};
    struct tokenizer *t = bpe_vocab("llama3", &e);
    CHECKF(t, "%s", e.msg);
    if (!t)
        return;
    /* bytes whose characters are not in this tiny vocabulary are dropped, as
     * llama.cpp does; those that are (a, b, c, C3, A9) survive even when the
     * sequence is not valid UTF-8 */
    const char text[] = "a\xC3" "b\xA9\xA9" "c\xC3";
    struct tok_ids v;
    tok_ids_init(&v);
    CHECK(tok_encode(t, text, sizeof text - 1, false, false, &v, &e) == 0);
    size_t dl;
    char *d = tok_decode(t, v.ids, v.n, false, false, &dl, &e);
    CHECK(d && dl == sizeof text - 1 && !memcmp(d, text, dl));
    free(d);
    tok_ids_release(&v);
    tok_free(t);
}

TEST(unknown_pre_is_an_error)
{
    struct err e = {0};
    struct tokenizer *t = bpe_vocab("no-such-pre", &e);
    CHECK(t == NULL);
    CHECKF(strstr(e.msg, "no-such-pre") && strstr(e.msg, "tokenizer.ggml.pre"), "%s", e.msg);
    tok_free(t);
    static const char *const one[] = {"a"};
    t = make_vocab("wordpiece", NULL, one, 1, NULL, NULL, NULL, 0, &e);
    CHECK(t == NULL);
    CHECKF(strstr(e.msg, "wordpiece"), "%s", e.msg);
    tok_free(t);
}

/* SPM: <unk> <s> </s>, 256 byte tokens, then pieces with scores. */
static struct tokenizer *spm_vocab(struct err *e)
{
    enum { N = 3 + 256 + 8 };
    static char names[256][8];
    const char *toks[N];
    float scores[N];
    int32_t types[N];
    toks[0] = "<unk>", types[0] = 2;
    toks[1] = "<s>", types[1] = 3;
    toks[2] = "</s>", types[2] = 3;
    for (int b = 0; b < 256; b++) {
        snprintf(names[b], sizeof names[b], "<0x%02X>", b);
        toks[3 + b] = names[b];
        types[3 + b] = 6;
    }
    static const char *const pieces[] = {"\xE2\x96\x81", "a", "b", "\xE2\x96\x81" "a", "ab",
                                         "\xE2\x96\x81" "ab", "\xE2\x96\x81\xE2\x96\x81", "c"};
    static const float piece_scores[] = {-1, -2, -2, -3, -1.5f, -4, -5, -2};
    for (int i = 0; i < 8; i++) {
        toks[259 + i] = pieces[i];
        types[259 + i] = 1;
        scores[259 + i] = piece_scores[i];
    }
    for (int i = 0; i < 259; i++)
        scores[i] = 0;
    return make_vocab("llama", NULL, toks, N, scores, types, NULL, 0, e);
}

TEST(spm_scores_and_byte_fallback)
{
    struct err e = {0};
    struct tokenizer *t = spm_vocab(&e);
    CHECKF(t, "%s", e.msg);
    if (!t)
        return;
    struct tok_ids v;
    tok_ids_init(&v);
    /* "ab" -> "▁ab": candidates ▁a (-3) and ab (-1.5): ab wins, then ▁ + ab = ▁ab */
    CHECK(tok_encode(t, "ab", 2, true, false, &v, &e) == 0);
    static const int32_t want1[] = {1, 264};
    CHECK(ids_eq(&v, want1, 2));
    if (!ids_eq(&v, want1, 2))
        print_ids("ab", &v);
    /* "é" is not a piece: byte fallback after the prefix space */
    v.n = 0;
    CHECK(tok_encode(t, "\xC3\xA9", 2, false, false, &v, &e) == 0);
    static const int32_t want2[] = {259, 3 + 0xC3, 3 + 0xA9};
    CHECK(ids_eq(&v, want2, 3));
    size_t dl;
    char *d = tok_decode(t, v.ids, v.n, false, true, &dl, &e);
    CHECK(d && !strcmp(d, "\xC3\xA9"));
    free(d);
    d = tok_decode(t, v.ids, v.n, false, false, &dl, &e);
    CHECK(d && !strcmp(d, " \xC3\xA9"));
    free(d);
    /* empty text: nothing, not even the prefix space; BOS alone with add_special */
    v.n = 0;
    CHECK(tok_encode(t, "", 0, false, false, &v, &e) == 0 && v.n == 0);
    CHECK(tok_encode(t, "", 0, true, false, &v, &e) == 0 && v.n == 1 && v.ids[0] == 1);
    /* "<s>" in user text stays text; with parse_special it is BOS */
    v.n = 0;
    CHECK(tok_encode(t, "<s>", 3, false, false, &v, &e) == 0);
    for (size_t i = 0; i < v.n; i++)
        CHECK(v.ids[i] != 1);
    v.n = 0;
    CHECK(tok_encode(t, "<s>", 3, false, true, &v, &e) == 0 && v.n == 1 && v.ids[0] == 1);
    CHECK(tok_bos(t) == 1 && tok_eos(t) == 2 && tok_add_bos(t) && !tok_add_eos(t));
    CHECK(!strcmp(tok_pre_name(t), "") && tok_eot(t) == -1);
    CHECK(tok_is_eog(t, 2));
    /* decoding an id out of range is an error that names it */
    int32_t bad[] = {260, 5000};
    d = tok_decode(t, bad, 2, false, false, &dl, &e);
    CHECK(d == NULL);
    CHECKF(strstr(e.msg, "5000"), "%s", e.msg);
    tok_ids_release(&v);
    tok_free(t);
}

TEST(spm_merge_across_words_when_vocab_has_it)
{
    /* "a▁" has U+2581 after another character, so words are not merged on
     * their own: "a b" must become ▁ + a▁ + b (a▁ outscores ▁b). */
    enum { N = 3 + 256 + 5 };
    static char names[256][8];
    const char *toks[N];
    float scores[N] = {0};
    int32_t types[N];
    toks[0] = "<unk>", types[0] = 2;
    toks[1] = "<s>", types[1] = 3;
    toks[2] = "</s>", types[2] = 3;
    for (int b = 0; b < 256; b++) {
        snprintf(names[b], sizeof names[b], "<0x%02X>", b);
        toks[3 + b] = names[b];
        types[3 + b] = 6;
    }
    static const char *const pieces[] = {"\xE2\x96\x81", "a", "b", "a\xE2\x96\x81", "\xE2\x96\x81" "b"};
    static const float ps[] = {-5, -5, -5, -1, -2};
    for (int i = 0; i < 5; i++)
        toks[259 + i] = pieces[i], types[259 + i] = 1, scores[259 + i] = ps[i];
    struct err e = {0};
    struct tokenizer *t = make_vocab("llama", NULL, toks, N, scores, types, NULL, 0, &e);
    CHECKF(t, "%s", e.msg);
    if (!t)
        return;
    struct tok_ids v;
    tok_ids_init(&v);
    CHECK(tok_encode(t, "a b", 3, false, false, &v, &e) == 0);
    static const int32_t want[] = {259, 262, 261};
    CHECK(ids_eq(&v, want, 3));
    if (!ids_eq(&v, want, 3))
        print_ids("a b", &v);
    tok_ids_release(&v);
    tok_free(t);
}

/* Feeds ids, collecting the released text; returns the last feed's code. */
static int stream_run(struct tok_stream *s, const int32_t *ids, size_t n, char *acc, size_t cap, size_t *per_feed)
{
    struct err e = {0};
    int rc = 0;
    size_t total = strlen(acc);
    for (size_t i = 0; i < n; i++) {
        const char *out;
        size_t len;
        rc = tok_stream_feed(s, ids[i], &out, &len, &e);
        if (rc < 0)
            return rc;
        if (per_feed)
            per_feed[i] = len;
        if (total + len < cap) {
            memcpy(acc + total, out, len);
            total += len;
            acc[total] = 0;
        }
    }
    return rc;
}

TEST(stream_holds_split_characters)
{
    struct err e = {0};
    struct tokenizer *t = spm_vocab(&e);
    CHECKF(t, "%s", e.msg);
    if (!t)
        return;
    struct tok_stream *s = tok_stream_new(t, NULL, 0, false, &e);
    CHECK(s);
    char acc[64] = "";
    size_t per[4];
    /* "a" then é as two byte tokens, then "b" */
    int32_t ids[] = {260, 3 + 0xC3, 3 + 0xA9, 261};
    CHECK(stream_run(s, ids, 4, acc, sizeof acc, per) == 0);
    CHECK(per[0] == 1 && per[1] == 0 && per[2] == 2 && per[3] == 1);
    CHECK(!strcmp(acc, "a\xC3\xA9" "b"));
    const char *out;
    size_t len;
    CHECK(tok_stream_finish(s, &out, &len, &e) == 0 && len == 0);
    tok_stream_free(s);

    /* an incomplete character at the end becomes U+FFFD; so does an invalid byte in the middle */
    s = tok_stream_new(t, NULL, 0, false, &e);
    acc[0] = 0;
    int32_t ids2[] = {260, 3 + 0xFF, 261, 3 + 0xE2, 3 + 0x82};
    CHECK(stream_run(s, ids2, 5, acc, sizeof acc, NULL) == 0);
    CHECK(!strcmp(acc, "a\xEF\xBF\xBD" "b"));
    CHECK(tok_stream_finish(s, &out, &len, &e) == 0);
    CHECK(len == 3 && !memcmp(out, "\xEF\xBF\xBD", 3));
    tok_stream_free(s);
    tok_free(t);
}

TEST(stream_stop_string_across_tokens)
{
    struct err e = {0};
    struct tokenizer *t = spm_vocab(&e);
    CHECKF(t, "%s", e.msg);
    if (!t)
        return;
    const char *stops[] = {"zzz", "abc"};
    struct tok_stream *s = tok_stream_new(t, stops, 2, false, &e);
    CHECK(s);
    char acc[64] = "";
    size_t per[6];
    /* "c", "a", "b" (a, b held: they may start "abc"), "c" completes the stop */
    int32_t ids[] = {266, 260, 261, 266};
    int rc = stream_run(s, ids, 4, acc, sizeof acc, per);
    CHECK(rc == 1);
    CHECK(per[0] == 1 && per[1] == 0 && per[2] == 0 && per[3] == 0);
    CHECKF(!strcmp(acc, "c"), "got '%s'", acc);
    CHECK(tok_stream_stop_index(s) == 1);
    /* nothing after the stop, not even at the end */
    const char *out;
    size_t len;
    CHECK(tok_stream_feed(s, 260, &out, &len, &e) == 1 && len == 0);
    CHECK(tok_stream_finish(s, &out, &len, &e) == 0 && len == 0);
    tok_stream_free(s);

    /* a held prefix that turns out not to be a stop is released */
    s = tok_stream_new(t, stops, 2, false, &e);
    acc[0] = 0;
    int32_t ids2[] = {260, 261, 261};
    CHECK(stream_run(s, ids2, 3, acc, sizeof acc, NULL) == 0);
    CHECK(!strcmp(acc, "abb"));
    CHECK(tok_stream_stop_index(s) == -1);
    /* an id out of range is an error, not a crash */
    CHECK(tok_stream_feed(s, 99999, &out, &len, &e) == -1);
    tok_stream_free(s);
    tok_free(t);
}

int main(void)
{
    RUN(bpe_merges_by_rank);
    RUN(special_tokens_only_when_allowed);
    RUN(bpe_invalid_utf8_is_kept);
    RUN(unknown_pre_is_an_error);
    RUN(spm_scores_and_byte_fallback);
    RUN(spm_merge_across_words_when_vocab_has_it);
    RUN(stream_holds_split_characters);
    RUN(stream_stop_string_across_tokens);
    TEST_END();
}
