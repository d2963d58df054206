/*
 * decode.c — ids to text: whole sequences (tok_decode) and the streaming
 * detokenizer (tok_stream).
 *
 * The stream keeps two buffers. `raw` holds the bytes at the end of the
 * output that are a valid but incomplete UTF-8 sequence; `hold` holds
 * complete text that is not released yet because its end could be the start
 * of a stop string. A feed appends the token's piece to raw, moves every
 * complete character (or U+FFFD for each maximal invalid subsequence, as the
 * Unicode standard recommends) to hold, then looks for the stop strings in
 * hold: a complete one ends the stream; otherwise everything except the
 * longest suffix that is a proper prefix of a stop string is released.
 */
#define _GNU_SOURCE /* memmem */
#include "tokenizer/tok_int.h"

#include <string.h>

char *tok_decode(const struct tokenizer *t, const int32_t *ids, size_t n, bool render_special,
                 bool strip_leading_space, size_t *len, struct err *e)
{
    struct sbuf b = SBUF_INIT;
    bool strip = strip_leading_space && ((t->model == TOK_MODEL_SPM && t->add_space_prefix) || t->model == TOK_MODEL_WPM);
    if (sbuf_add(&b, "", 0))
        goto oom;
    for (size_t i = 0; i < n; i++) {
        size_t l;
        const char *p = tok_piece(t, ids[i], render_special, &l);
        if (!p) {
            sbuf_release(&b);
            err_set(e, ERR_INVALID, "token %zu: id %d is not in the vocabulary (0 .. %d)", i, ids[i], t->n_vocab - 1);
            return NULL;
        }
        if (strip && l) {
            /* the space the encoder put before the text */
            if (p[0] == ' ')
                p++, l--;
            strip = false;
        }
        if (sbuf_add(&b, p, l))
            goto oom;
    }
    if (len)
        *len = b.len;
    return b.buf;
oom:
    sbuf_release(&b);
    err_set(e, ERR_NOMEM, "out of memory decoding %zu tokens", n);
    return NULL;
}

/* ---- streaming ---- */

struct tok_stream {
    const struct tokenizer *t; /* borrowed */
    bool render_special;
    char **stop;               /* from malloc: n_stop strings, each from malloc */
    size_t *stop_len;          /* from malloc */
    size_t n_stop;
    struct sbuf raw, hold, out;
    int stop_index;            /* -1 while running */
};

struct tok_stream *tok_stream_new(const struct tokenizer *t, const char *const *stop, size_t n_stop,
                                  bool render_special, struct err *e)
{
    struct tok_stream *s = calloc(1, sizeof *s);
    if (!s)
        goto oom;
    s->t = t;
    s->render_special = render_special;
    s->stop_index = -1;
    if (n_stop) {
        s->stop = calloc(n_stop, sizeof *s->stop);
        s->stop_len = calloc(n_stop, sizeof *s->stop_len);
        if (!s->stop || !s->stop_len)
            goto oom;
        for (size_t i = 0; i < n_stop; i++) {
            size_t l = stop[i] ? strlen(stop[i]) : 0;
            s->stop[i] = malloc(l + 1);
            if (!s->stop[i])
                goto oom;
            if (l)
                memcpy(s->stop[i], stop[i], l);
            s->stop[i][l] = 0;
            s->stop_len[i] = l;
            s->n_stop++;
        }
    }
    return s;
oom:
    tok_stream_free(s);
    err_set(e, ERR_NOMEM, "out of memory creating a detokenizer stream");
    return NULL;
}

void tok_stream_free(struct tok_stream *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->n_stop; i++)
        free(s->stop[i]);
    free(s->stop);
    free(s->stop_len);
    sbuf_release(&s->raw);
    sbuf_release(&s->hold);
    sbuf_release(&s->out);
    free(s);
}

int tok_stream_stop_index(const struct tok_stream *s)
{
    return s->stop_index;
}

/* Classifies the UTF-8 sequence at u[0..n): 1 = a complete character of
 * *len bytes; 0 = a valid beginning that needs more bytes; -1 = invalid, the
 * first *len bytes form one maximal invalid subpart. */
static int utf8_class(const uint8_t *u, size_t n, size_t *len)
{
    uint8_t c = u[0];
    size_t need;
    uint8_t lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
    if (c < 0x80) {
        *len = 1;
        return 1;
    }
    if (c < 0xC2 || c > 0xF4) {
        *len = 1;
        return -1;
    }
    if (c < 0xE0)
        need = 2;
    else if (c < 0xF0)
        need = 3;
    else
        need = 4;
    if (c == 0xE0)
        lo = 0xA0;
    else if (c == 0xED)
        hi = 0x9F;
    else if (c == 0xF0)
        lo = 0x90;
    else if (c == 0xF4)
        hi = 0x8F;
    for (size_t i = 1; i < need; i++) {
        if (i >= n)
            return 0;
        uint8_t b = u[i];
        bool ok = i == 1 ? (b >= lo && b <= hi) : (b >= 0x80 && b <= 0xBF);
        if (!ok) {
            *len = i;
            return -1;
        }
    }
    *len = need;
    return 1;
}

static const char replacement[] = "\xEF\xBF\xBD"; /* U+FFFD */

/* Moves complete characters from raw to hold; at_end converts an incomplete
 * tail too. */
static int drain_raw(struct tok_stream *s, bool at_end)
{
    const uint8_t *u = (const uint8_t *)s->raw.buf;
    size_t i = 0, n = s->raw.len, start = 0;
    while (i < n) {
        size_t l = 0;
        int c = utf8_class(u + i, n - i, &l);
        if (c == 1) {
            i += l;
            continue;
        }
        if (i > start && sbuf_add(&s->hold, u + start, i - start))
            return -1;
        if (c == 0 && !at_end)
            break;
        if (sbuf_add(&s->hold, replacement, 3))
            return -1;
        i += c == 0 ? n - i : l;
        start = i;
    }
    if (i >= n && n > start && sbuf_add(&s->hold, u + start, n - start))
        return -1;
    tok_sbuf_keep_tail(&s->raw, i < n ? n - i : 0);
    return 0;
}

/* Looks for stop strings in hold and releases what is safe into out. */
static int release(struct tok_stream *s, bool at_end)
{
    const char *h = s->hold.buf;
    size_t hl = s->hold.len;
    size_t best = SIZE_MAX;
    int best_i = -1;
    for (size_t k = 0; k < s->n_stop; k++) {
        size_t sl = s->stop_len[k];
        if (!sl || sl > hl)
            continue;
        const char *p = memmem(h, hl, s->stop[k], sl);
        if (p && (size_t)(p - h) < best) {
            best = (size_t)(p - h);
            best_i = (int)k;
        }
    }
    if (best_i >= 0) {
        s->stop_index = best_i;
        if (sbuf_add(&s->out, h, best))
            return -1;
        sbuf_reset(&s->hold);
        sbuf_reset(&s->raw);
        return 0;
    }
    size_t keep = 0;
    if (!at_end) {
        for (size_t k = 0; k < s->n_stop; k++) {
            size_t sl = s->stop_len[k];
            size_t maxm = sl ? sl - 1 : 0;
            if (maxm > hl)
                maxm = hl;
            for (size_t m = maxm; m > keep; m--)
                if (!memcmp(h + hl - m, s->stop[k], m)) {
                    keep = m;
                    break;
                }
        }
    }
    if (sbuf_add(&s->out, h, hl - keep))
        return -1;
    tok_sbuf_keep_tail(&s->hold, keep);
    return 0;
}

int tok_stream_feed(struct tok_stream *s, int32_t id, const char **out, size_t *out_len, struct err *e)
{
    sbuf_reset(&s->out);
    if (sbuf_add(&s->out, "", 0))
        goto oom;
    *out = s->out.buf;
    *out_len = 0;
    if (s->stop_index >= 0)
        return 1;
    size_t l;
    const char *p = tok_piece(s->t, id, s->render_special, &l);
    if (!p)
        return err_set(e, ERR_INVALID, "detokenizer: id %d is not in the vocabulary (0 .. %d)", id, s->t->n_vocab - 1);
    if (sbuf_add(&s->raw, p, l) || drain_raw(s, false) || release(s, false))
        goto oom;
    *out = s->out.buf;
    *out_len = s->out.len;
    return s->stop_index >= 0;
oom:
    return err_set(e, ERR_NOMEM, "detokenizer: out of memory");
}

int tok_stream_finish(struct tok_stream *s, const char **out, size_t *out_len, struct err *e)
{
    sbuf_reset(&s->out);
    if (sbuf_add(&s->out, "", 0))
        goto oom;
    if (s->stop_index < 0 && (drain_raw(s, true) || release(s, true)))
        goto oom;
    *out = s->out.buf;
    *out_len = s->out.len;
    return 0;
oom:
    return err_set(e, ERR_NOMEM, "detokenizer: out of memory");
}
