/*
 * wpm.c — WordPiece (tokenizer.ggml.model = "bert"), as llama.cpp encodes it.
 *
 * The GGUF conversion rewrites a BERT vocabulary: a word-initial piece
 * "hello" is stored as "▁hello" (U+2581, the phantom space) and a
 * continuation piece "##lo" as "lo"; "[CLS]"-style tokens stay as they are.
 *
 * Pre-tokenization, one code point at a time:
 *   - every code point is replaced by the first code point of its canonical
 *     decomposition (NFD), which drops the accents of precomposed letters
 *     ("Ä" -> "A"); a stand-alone combining mark stays;
 *   - white space ends a word; NUL, U+FFFD (what invalid UTF-8 becomes) and
 *     control characters (Cc, Cf, Co, Cs) are removed;
 *   - the code point is lower-cased;
 *   - punctuation (P*), ASCII symbols (S* below U+007F) and CJK ideographs
 *     are words of their own.
 * Each word, with "▁" before it, is then cut greedily into the longest
 * vocabulary strings from the left; a word with any part that matches no
 * token becomes one [UNK]. Unicode properties come from ICU.
 */
#include "tokenizer/tok_int.h"

#include <unicode/uchar.h>
#include <unicode/unorm2.h>
#include <unicode/utf16.h>

static bool is_chinese_char(uint32_t c)
{
    return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) || (c >= 0x20000 && c <= 0x2A6DF) ||
           (c >= 0x2A700 && c <= 0x2B73F) || (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B920 && c <= 0x2CEAF) ||
           (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

/* The white space that separates words (the Unicode White_Space set
 * without the separators that are control characters in BERT's sense). */
static bool is_space(uint32_t c)
{
    return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

/* The first code point of c's canonical decomposition (c itself if none). */
static uint32_t nfd_first(const UNormalizer2 *nfd, uint32_t c)
{
    if (c < 0xC0 || !nfd)
        return c;
    UChar buf[32];
    UErrorCode st = U_ZERO_ERROR;
    int32_t n = unorm2_getDecomposition(nfd, (UChar32)c, buf, 32, &st);
    if (U_FAILURE(st) || n <= 0)
        return c;
    UChar32 first;
    int32_t i = 0;
    U16_NEXT(buf, i, n, first);
    return (uint32_t)first;
}

struct wpm_ctx {
    struct sbuf word; /* "▁" + the current word's lower-cased bytes */
    const struct tokenizer *t;
    struct tok_ids *out;
};

/* Cuts the word in c->word into tokens and appends them; resets the word. */
static int flush_word(struct wpm_ctx *c, struct err *e)
{
    size_t n = c->word.len;
    if (n <= 3) /* only the phantom space: no word */
        return 0;
    const char *w = c->word.buf;
    size_t n0 = c->out->n;
    for (size_t i = 0; i < n;) {
        size_t j = i + c->t->max_token_len < n ? i + c->t->max_token_len : n;
        int32_t id = -1;
        for (; j > i; j--)
            if ((id = tok_lookup(c->t, w + i, j - i)) >= 0)
                break;
        if (id < 0) {
            c->out->n = n0; /* the whole word is unknown */
            break;
        }
        if (tok_ids_push(c->out, id, e))
            return -1;
        i = j;
    }
    if (c->out->n == n0 && c->t->unk < 0)
        return err_set(e, ERR_INVALID, "'%.*s' matches no token and the vocabulary has no [UNK]", (int)(n - 3), w + 3);
    if (c->out->n == n0 && tok_ids_push(c->out, c->t->unk, e))
        return -1;
    c->word.len = 3;
    return 0;
}

static int add_cp(struct wpm_ctx *c, uint32_t cp)
{
    char u[4];
    sbuf_add(&c->word, u, tok_utf8_put(u, cp));
    return sbuf_failed(&c->word) ? -1 : 0;
}

/* One code point of the text through the pre-tokenizer. */
static int wpm_cp(struct wpm_ctx *c, const UNormalizer2 *nfd, uint32_t cp, struct err *e)
{
    cp = nfd_first(nfd, cp);
    if (is_space(cp))
        return flush_word(c, e);
    uint32_t mask = U_GET_GC_MASK((UChar32)cp);
    if (cp == 0 || cp == 0xFFFD || (mask & (U_GC_CC_MASK | U_GC_CF_MASK | U_GC_CO_MASK | U_GC_CS_MASK)))
        return 0;
    uint32_t low = (uint32_t)u_tolower((UChar32)cp);
    if ((mask & U_GC_P_MASK) || (cp < 0x7F && (mask & U_GC_S_MASK)) || is_chinese_char(cp)) {
        if (flush_word(c, e) || add_cp(c, low))
            return -1;
        return flush_word(c, e);
    }
    return add_cp(c, low);
}

int tok_wpm_encode(const struct tokenizer *t, const char *text, size_t len, struct tok_ids *out, struct err *e)
{
    UErrorCode st = U_ZERO_ERROR;
    const UNormalizer2 *nfd = unorm2_getNFDInstance(&st);
    if (U_FAILURE(st))
        nfd = NULL; /* ICU without its data: accents stay */
    struct wpm_ctx c = {SBUF_INIT, t, out};
    size_t n0 = out->n;
    sbuf_add(&c.word, "\xE2\x96\x81", 3);
    int rc = 0;
    for (size_t i = 0; i < len && rc == 0;) {
        int32_t cp;
        i += tok_utf8_next(text + i, len - i, &cp);
        rc = wpm_cp(&c, nfd, cp < 0 ? 0xFFFD : (uint32_t)cp, e);
    }
    if (rc == 0)
        rc = flush_word(&c, e);
    if (sbuf_failed(&c.word))
        rc = err_set(e, ERR_NOMEM, "out of memory in the WordPiece encoder");
    if (rc < 0)
        out->n = n0;
    sbuf_release(&c.word);
    return rc;
}
