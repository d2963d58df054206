/*
 * vocab.c — builds a tokenizer from GGUF metadata.
 *
 * Every token string is copied into one blob (offsets per id) so that the
 * GGUF file may be closed after tok_load. Two open-addressing hash tables
 * serve the encoders: token string -> id (FNV-1a, linear probing) and, for
 * BPE, the merge pair (left id, right id) -> (rank, merged id). The decoded
 * bytes of every token (its "piece") are computed once here, so decoding is
 * a table look-up.
 *
 * Defaults follow llama.cpp where the file is silent: SPM adds BOS (id 1),
 * not EOS, and puts a space before the text; BPE adds nothing unless the
 * pre-tokenizer is llama3. Special ids that lie outside the vocabulary are
 * ignored with a warning, as llama.cpp does.
 */
#include "tokenizer/tok_int.h"

#include <string.h>

/* ---- token id lists ---- */

void tok_ids_init(struct tok_ids *v)
{
    v->ids = NULL;
    v->n = v->cap = 0;
}

void tok_ids_release(struct tok_ids *v)
{
    free(v->ids);
    tok_ids_init(v);
}

int tok_ids_push(struct tok_ids *v, int32_t id, struct err *e)
{
    if (mem_grow(&v->ids, &v->cap, v->n + 1, sizeof *v->ids) < 0)
        return err_set(e, ERR_NOMEM, "token list: out of memory (%zu tokens)", v->n + 1);
    v->ids[v->n++] = id;
    return 0;
}

size_t tok_utf8_put(char *out, uint32_t cp)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* ---- GPT-2 byte <-> unicode mapping ----
 * The printable bytes '!'..'~', 0xA1..0xAC and 0xAE..0xFF stand for
 * themselves; the other 68 bytes, in increasing order, take the code points
 * 256, 257, ... so that every byte has a visible, non-space character. */
static bool byte_is_self(unsigned b)
{
    return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
}

/* The 68 other bytes are 0x00..0x20 (33), 0x7F..0xA0 (34) and 0xAD. */
uint32_t tok_byte_to_cp(uint8_t b)
{
    if (byte_is_self(b))
        return b;
    if (b <= 0x20)
        return 256u + b;
    if (b >= 0x7F && b <= 0xA0)
        return 256u + 33 + (b - 0x7Fu);
    return 256u + 67; /* 0xAD */
}

int tok_cp_to_byte(uint32_t cp)
{
    if (cp < 256)
        return byte_is_self(cp) ? (int)cp : -1;
    uint32_t n = cp - 256;
    if (n <= 32)
        return (int)n;
    if (n <= 66)
        return (int)(0x7F + n - 33);
    return n == 67 ? 0xAD : -1;
}

/* Decodes one UTF-8 character at s[0..n); returns its length and the code
 * point, or length 1 and cp = -1 for an invalid byte. */
size_t tok_utf8_next(const char *s, size_t n, int32_t *cp)
{
    const uint8_t *u = (const uint8_t *)s;
    size_t len = tok_utf8_len(u[0]);
    if (len == 1) {
        *cp = u[0] < 0x80 ? u[0] : -1;
        return 1;
    }
    if (len > n) {
        *cp = -1;
        return 1;
    }
    uint32_t c = u[0] & (0x7F >> len);
    for (size_t i = 1; i < len; i++) {
        if ((u[i] & 0xC0) != 0x80) {
            *cp = -1;
            return 1;
        }
        c = (c << 6) | (u[i] & 0x3F);
    }
    *cp = (int32_t)c;
    return len;
}

/* ---- hash tables ---- */

static size_t pow2_at_least(size_t n)
{
    size_t p = 16;
    while (p < n)
        p *= 2;
    return p;
}

int32_t tok_lookup(const struct tokenizer *t, const char *s, size_t n)
{
    uint64_t h = hash_bytes(s, n);
    uint32_t fp = (uint32_t)(h >> 32);
    size_t i = (size_t)h & t->hash_mask;
    for (;;) {
        const struct tok_slot *sl = &t->hash[i];
        if (sl->id < 0)
            return -1;
        if (sl->fp == fp && t->text_len[sl->id] == n && !memcmp(tok_text_at(t, sl->id), s, n))
            return sl->id;
        i = (i + 1) & t->hash_mask;
    }
}

/* Later duplicates win, as in llama.cpp's token_to_id map. */
static void hash_insert(struct tokenizer *t, int32_t id)
{
    const char *s = tok_text_at(t, id);
    size_t n = t->text_len[id];
    uint64_t h = hash_bytes(s, n);
    uint32_t fp = (uint32_t)(h >> 32);
    size_t i = (size_t)h & t->hash_mask;
    for (;;) {
        struct tok_slot *sl = &t->hash[i];
        if (sl->id < 0 || (sl->fp == fp && t->text_len[sl->id] == n && !memcmp(tok_text_at(t, sl->id), s, n))) {
            *sl = (struct tok_slot){id, fp};
            return;
        }
        i = (i + 1) & t->hash_mask;
    }
}

/* First occurrence of a pair keeps its rank. */
static void merge_insert(struct tokenizer *t, uint64_t key, uint32_t rank, int32_t res)
{
    size_t i = (size_t)hash_mix64(key) & t->merge_mask;
    while (t->merge[i].key != UINT64_MAX) {
        if (t->merge[i].key == key)
            return;
        i = (i + 1) & t->merge_mask;
    }
    t->merge[i] = (struct tok_merge){key, rank, res};
}

/* ---- accessors ---- */

enum tok_model tok_model(const struct tokenizer *t) { return t->model; }
const char *tok_pre_name(const struct tokenizer *t) { return t->pre; }
int32_t tok_n_vocab(const struct tokenizer *t) { return t->n_vocab; }
int32_t tok_n_vocab_common(const struct tokenizer *t, int32_t n_vocab_model)
{
    return t && t->n_vocab < n_vocab_model ? t->n_vocab : n_vocab_model;
}
int32_t tok_bos(const struct tokenizer *t) { return t->bos; }
int32_t tok_eos(const struct tokenizer *t) { return t->eos; }
int32_t tok_eot(const struct tokenizer *t) { return t->eot; }
bool tok_add_bos(const struct tokenizer *t) { return t->add_bos && t->bos >= 0; }
bool tok_add_eos(const struct tokenizer *t) { return t->add_eos && t->eos >= 0; }
const char *tok_chat_template_source(const struct tokenizer *t) { return t->chat_template; }

bool tok_is_eog(const struct tokenizer *t, int32_t id)
{
    return id >= 0 && id < t->n_vocab && t->eog[id];
}

enum tok_type tok_token_type(const struct tokenizer *t, int32_t id)
{
    if (id < 0 || id >= t->n_vocab)
        return TOK_TYPE_UNDEFINED;
    return (enum tok_type)t->types[id];
}

const char *tok_token_text(const struct tokenizer *t, int32_t id, size_t *len)
{
    if (id < 0 || id >= t->n_vocab)
        return NULL;
    *len = t->text_len[id];
    return tok_text_at(t, id);
}

int32_t tok_find(const struct tokenizer *t, const char *text, size_t len)
{
    return tok_lookup(t, text, len);
}

const char *tok_piece(const struct tokenizer *t, int32_t id, bool render_special, size_t *len)
{
    if (id < 0 || id >= t->n_vocab)
        return NULL;
    uint8_t ty = t->types[id];
    if (!render_special && (ty == TOK_TYPE_CONTROL || ty == TOK_TYPE_UNKNOWN)) {
        *len = 0;
        return t->piece + t->piece_off[id];
    }
    *len = t->piece_len[id];
    return t->piece + t->piece_off[id];
}

void tok_free(struct tokenizer *t)
{
    if (!t)
        return;
    for (int i = 0; i < t->n_re; i++)
        pcre2_code_free(t->re[i]);
    free(t->text);
    free(t->text_off);
    free(t->text_len);
    free(t->scores);
    free(t->types);
    free(t->eog);
    free(t->piece);
    free(t->piece_off);
    free(t->piece_len);
    free(t->hash);
    free(t->merge);
    free(t->special);
    free(t->special_rank);
    free(t->trie_key);
    free(t->trie_val);
    free(t->trie_tok);
    free(t->chat_template);
    tmpl_free(t->jinja);
    free(t->chat_template_tools);
    tmpl_free(t->jinja_tools);
    free(t);
}

/* ---- loading ---- */

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Writes the piece of token id (its bytes in text) to b. */
static int build_piece(struct tokenizer *t, int32_t id, struct sbuf *b)
{
    const char *s = tok_text_at(t, id);
    size_t n = t->text_len[id];
    uint8_t ty = t->types[id];
    if (ty == TOK_TYPE_CONTROL || ty == TOK_TYPE_UNKNOWN || ty == TOK_TYPE_USER_DEFINED)
        return sbuf_add(b, s, n);
    if (t->model == TOK_MODEL_SPM || t->model == TOK_MODEL_WPM) {
        if (ty == TOK_TYPE_BYTE) {
            /* "<0xNN>" */
            int hi = n == 6 ? hexval(s[3]) : -1, lo = n == 6 ? hexval(s[4]) : -1;
            if (n == 6 && !memcmp(s, "<0x", 3) && s[5] == '>' && hi >= 0 && lo >= 0) {
                char c = (char)(hi * 16 + lo);
                return sbuf_add(b, &c, 1);
            }
            return sbuf_add(b, s, n);
        }
        if (ty != TOK_TYPE_NORMAL)
            return 0;
        for (size_t i = 0; i < n;) {
            if (i + 3 <= n && !memcmp(s + i, "\xE2\x96\x81", 3)) {
                if (sbuf_add(b, " ", 1))
                    return -1;
                i += 3;
            } else {
                if (sbuf_add(b, s + i, 1))
                    return -1;
                i++;
            }
        }
        return 0;
    }
    if (ty != TOK_TYPE_NORMAL)
        return 0;
    /* BPE: each character stands for one byte; characters outside the
     * mapping are kept as they are (llama.cpp does the same). */
    for (size_t i = 0; i < n;) {
        int32_t cp;
        size_t l = tok_utf8_next(s + i, n - i, &cp);
        int byte = cp >= 0 ? tok_cp_to_byte((uint32_t)cp) : -1;
        if (byte >= 0) {
            char c = (char)byte;
            if (sbuf_add(b, &c, 1))
                return -1;
        } else if (sbuf_add(b, s + i, l)) {
            return -1;
        }
        i += l;
    }
    return 0;
}

struct len_id {
    uint32_t len;
    int32_t id;
};

static int cmp_special(const void *a, const void *b)
{
    const struct len_id *x = a, *y = b;
    if (x->len != y->len)
        return x->len > y->len ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

/* Reads an optional special-token id. */
static int get_special(const struct gguf_file *f, struct tokenizer *t, const char *key, int32_t *id, struct err *e)
{
    int64_t v;
    int rc = gguf_get_int(f, key, &v, e);
    if (rc < 0 && e->code != ERR_NOT_FOUND)
        return -1;
    if (rc < 0)
        return 0;
    if (v < 0 || v >= t->n_vocab) {
        log_warn("%s: %s = %lld is outside the vocabulary (%d tokens); ignored", gguf_name(f), key, (long long)v,
                 t->n_vocab);
        return 0;
    }
    *id = (int32_t)v;
    return 0;
}

static int get_flag(const struct gguf_file *f, const char *key, bool *flag, struct err *e)
{
    bool v;
    int rc = gguf_get_bool(f, key, &v, e);
    if (rc < 0 && e->code != ERR_NOT_FOUND)
        return -1;
    if (rc == 0)
        *flag = v;
    return 0;
}

static int32_t find_text(const struct tokenizer *t, const char *s)
{
    return tok_lookup(t, s, strlen(s));
}

/* End-of-turn texts of known chat formats, in order of preference for eot. */
static const char *const eot_texts[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<EOT>",
    "<\xEF\xBD\234end\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>", /* DeepSeek <｜end▁of▁sentence｜> */
    "<|eom_id|>", "<|end_of_text|>", "<|user|>", "<|observation|>",
};

/* tokenizer.ggml.model: which encoder. */
static int load_model_kind(struct tokenizer *t, const struct gguf_file *f, struct err *e)
{
    struct gguf_str model;
    int rc = gguf_get_str(f, "tokenizer.ggml.model", &model, e);
    if (rc < 0 && e->code != ERR_NOT_FOUND)
        return -1;
    if (rc < 0)
        return err_set(e, ERR_CORRUPT, "no tokenizer.ggml.model: the file carries no tokenizer");
    if (gguf_str_eq(model, "llama"))
        t->model = TOK_MODEL_SPM;
    else if (gguf_str_eq(model, "gpt2"))
        t->model = TOK_MODEL_BPE;
    else if (gguf_str_eq(model, "bert"))
        t->model = TOK_MODEL_WPM;
    else
        return err_set(e, ERR_CORRUPT, "tokenizer.ggml.model '%.*s' is not supported (supported: 'llama' = SentencePiece, "
                          "'gpt2' = byte-level BPE, 'bert' = WordPiece)", (int)(model.len > 64 ? 64 : model.len), model.ptr);
    return 0;
}

/* tokenizer.ggml.tokens: the text blob, the per-token arrays (types
 * NORMAL until the file says) and the text -> id table. */
static int load_texts(struct tokenizer *t, const struct gguf_file *f, struct err *e)
{
    const struct gguf_kv *toks;
    int rc = gguf_get_arr(f, "tokenizer.ggml.tokens", GGUF_VT_STRING, &toks, e);
    if (rc < 0 && e->code != ERR_NOT_FOUND)
        return -1;
    if (rc < 0)
        return err_set(e, ERR_CORRUPT, "no tokenizer.ggml.tokens");
    if (toks->arr_n == 0 || toks->arr_n > INT32_MAX / 2)
        return err_set(e, ERR_CORRUPT, "tokenizer.ggml.tokens: %llu tokens (must be 1 .. %d)", (unsigned long long)toks->arr_n,
                       INT32_MAX / 2);
    int32_t n = t->n_vocab = (int32_t)toks->arr_n;

    uint64_t total = 0;
    for (int32_t i = 0; i < n; i++)
        total += toks->arr_strs[i].len;
    if (total >= UINT32_MAX)
        return err_set(e, ERR_CORRUPT, "tokenizer.ggml.tokens: %llu bytes of token text (at most 4 GiB)", (unsigned long long)total);
    t->text = malloc(total + 1);
    t->text_off = malloc(n * sizeof *t->text_off);
    t->text_len = malloc(n * sizeof *t->text_len);
    t->scores = calloc(n, sizeof *t->scores);
    t->types = malloc(n);
    t->eog = calloc(n, 1);
    t->piece_off = malloc(n * sizeof *t->piece_off);
    t->piece_len = malloc(n * sizeof *t->piece_len);
    t->hash_mask = pow2_at_least(2 * (size_t)n) - 1;
    t->hash = malloc((t->hash_mask + 1) * sizeof *t->hash);
    if (!t->text || !t->text_off || !t->text_len || !t->scores || !t->types || !t->eog || !t->piece_off ||
        !t->piece_len || !t->hash)
        return err_set(e, ERR_NOMEM, "out of memory loading %d tokens", n);
    uint32_t off = 0;
    for (int32_t i = 0; i < n; i++) {
        struct gguf_str s = toks->arr_strs[i];
        if (s.len)
            memcpy(t->text + off, s.ptr, s.len);
        t->text_off[i] = off;
        t->text_len[i] = (uint32_t)s.len;
        off += (uint32_t)s.len;
        t->types[i] = TOK_TYPE_NORMAL;
    }
    t->text[off] = 0;
    for (size_t i = 0; i <= t->hash_mask; i++)
        t->hash[i] = (struct tok_slot){-1, 0};
    for (int32_t i = 0; i < n; i++)
        if (t->text_len[i])
            hash_insert(t, i);
    return 0;
}

/* tokenizer.ggml.scores and .token_type, both optional. */
static int load_scores_types(struct tokenizer *t, const struct gguf_file *f, struct err *e)
{
    const struct gguf_kv *kv;
    int32_t n = t->n_vocab;
    int rc = gguf_get_arr(f, "tokenizer.ggml.scores", GGUF_VT_COUNT, &kv, e);
    if (rc < 0 && e->code != ERR_NOT_FOUND)
        return -1;
    if (rc == 0) {
        if (kv->arr_n != (uint64_t)n)
            return err_set(e, ERR_CORRUPT, "tokenizer.ggml.scores has %llu entries for %d tokens", (unsigned long long)kv->arr_n, n);
        if (kv->arr_type == GGUF_VT_STRING || kv->arr_type == GGUF_VT_ARRAY || kv->arr_type == GGUF_VT_BOOL)
            return err_set(e, ERR_CORRUPT, "tokenizer.ggml.scores: array of %s, expected float32", gguf_vtype_name(kv->arr_type));
        for (int32_t i = 0; i < n; i++)
            t->scores[i] = (float)gguf_arr_float(kv, i);
    }
    rc = gguf_get_arr(f, "tokenizer.ggml.token_type", GGUF_VT_COUNT, &kv, e);
    if (rc < 0 && e->code != ERR_NOT_FOUND)
        return -1;
    if (rc == 0) {
        if (kv->arr_n != (uint64_t)n)
            return err_set(e, ERR_CORRUPT, "tokenizer.ggml.token_type has %llu entries for %d tokens",
                           (unsigned long long)kv->arr_n, n);
        if (kv->arr_type == GGUF_VT_STRING || kv->arr_type == GGUF_VT_ARRAY || kv->arr_type == GGUF_VT_BOOL ||
            kv->arr_type == GGUF_VT_FLOAT32 || kv->arr_type == GGUF_VT_FLOAT64)
            return err_set(e, ERR_CORRUPT, "tokenizer.ggml.token_type: array of %s, expected int32", gguf_vtype_name(kv->arr_type));
        for (int32_t i = 0; i < n; i++) {
            int64_t ty = gguf_arr_int(kv, i);
            t->types[i] = (uint8_t)(ty >= 0 && ty <= TOK_TYPE_BYTE ? ty : TOK_TYPE_UNDEFINED);
        }
    }
    return 0;
}

/* Special token ids and flags: llama.cpp's defaults, then the file's
 * values; and the BPE pre-tokenizer. */
static int load_specials(struct tokenizer *t, const struct gguf_file *f, struct err *e)
{
    int32_t n = t->n_vocab;
    t->bos = t->eos = t->eot = t->eom = t->unk = t->pad = -1;
    if (t->model == TOK_MODEL_SPM) {
        t->bos = n > 1 ? 1 : -1;
        t->eos = n > 2 ? 2 : -1;
        t->unk = 0;
        t->add_bos = true;
        t->add_space_prefix = true;
    } else if (t->model == TOK_MODEL_WPM) {
        /* [CLS] text [SEP], [UNK] 100, as llama.cpp's defaults */
        t->bos = n > 101 ? 101 : -1;
        t->eos = n > 102 ? 102 : -1;
        t->unk = n > 100 ? 100 : -1;
        t->add_bos = t->add_eos = true;
        if (get_special(f, t, "tokenizer.ggml.cls_token_id", &t->bos, e) ||
            get_special(f, t, "tokenizer.ggml.seperator_token_id", &t->eos, e))
            return -1;
        for (int32_t i = 0; i < n; i++)
            if (t->text_len[i] > t->max_token_len)
                t->max_token_len = t->text_len[i];
    } else {
        struct gguf_str pre;
        int rc = gguf_get_str(f, "tokenizer.ggml.pre", &pre, e);
        if (rc < 0 && e->code != ERR_NOT_FOUND)
            return -1;
        if (rc < 0) {
            log_warn("%s: no tokenizer.ggml.pre; using the 'default' pre-tokenizer", gguf_name(f));
            strcpy(t->pre, "default");
        } else {
            if (pre.len >= sizeof t->pre || memchr(pre.ptr, 0, pre.len))
                return err_set(e, ERR_CORRUPT, "unknown pre-tokenizer '%.*s' (tokenizer.ggml.pre)", (int)(pre.len > 64 ? 64 : pre.len),
                               pre.ptr);
            memcpy(t->pre, pre.ptr, pre.len);
            t->pre[pre.len] = 0;
        }
        if (tok_bpe_init_pre(t, e))
            return -1;
    }
    if (get_special(f, t, "tokenizer.ggml.bos_token_id", &t->bos, e) ||
        get_special(f, t, "tokenizer.ggml.eos_token_id", &t->eos, e) ||
        get_special(f, t, "tokenizer.ggml.eot_token_id", &t->eot, e) ||
        get_special(f, t, "tokenizer.ggml.eom_token_id", &t->eom, e) ||
        get_special(f, t, "tokenizer.ggml.unknown_token_id", &t->unk, e) ||
        get_special(f, t, "tokenizer.ggml.padding_token_id", &t->pad, e) ||
        get_flag(f, "tokenizer.ggml.add_bos_token", &t->add_bos, e) ||
        get_flag(f, "tokenizer.ggml.add_eos_token", &t->add_eos, e) ||
        get_flag(f, "tokenizer.ggml.add_space_prefix", &t->add_space_prefix, e))
        return -1;
    if (t->model == TOK_MODEL_BPE && !strcmp(t->pre, "chatglm-bpe"))
        t->bos = -1; /* GLM-4 writes [gMASK]<sop> itself */
    if (t->unk >= 0 && t->unk >= n)
        t->unk = -1;
    if (t->model == TOK_MODEL_WPM && t->unk < 0) /* a word no piece covers must have somewhere to go */
        return err_set(e, ERR_CORRUPT, "a WordPiece vocabulary needs an [UNK] token (tokenizer.ggml.unknown_token_id, "
                       "or id 100): this one has %d tokens and none set", (int)n);
    return 0;
}

/* eot and the end-of-generation flags. */
static void mark_eog(struct tokenizer *t)
{
    for (size_t i = 0; i < sizeof eot_texts / sizeof *eot_texts; i++) {
        int32_t id = find_text(t, eot_texts[i]);
        if (id < 0)
            continue;
        if (t->eot < 0 && i < 7)
            t->eot = id;
        if (!strcmp(eot_texts[i], "<|user|>") || !strcmp(eot_texts[i], "<|observation|>")) {
            /* GLM-4 ends a turn by starting the next one; elsewhere these are not ends. */
            if (t->model == TOK_MODEL_BPE && !strcmp(t->pre, "chatglm-bpe"))
                t->eog[id] = 1;
            continue;
        }
        t->eog[id] = 1;
    }
    if (t->eos >= 0)
        t->eog[t->eos] = 1;
    if (t->eot >= 0)
        t->eog[t->eot] = 1;
    if (t->eom >= 0)
        t->eog[t->eom] = 1;
}

/* The decoded bytes of every token. */
static int build_pieces(struct tokenizer *t, struct err *e)
{
    int32_t n = t->n_vocab;
    struct sbuf pb = SBUF_INIT;
    for (int32_t i = 0; i < n; i++) {
        size_t before = pb.len;
        if (build_piece(t, i, &pb) || pb.len >= UINT32_MAX) {
            sbuf_release(&pb);
            return err_set(e, ERR_NOMEM, "out of memory building token pieces");
        }
        t->piece_off[i] = (uint32_t)before;
        t->piece_len[i] = (uint32_t)(pb.len - before);
    }
    if (!pb.buf && sbuf_add(&pb, "", 0))
        return err_set(e, ERR_NOMEM, "out of memory building token pieces");
    t->piece = pb.buf;
    return 0;
}

/* Special tokens that may appear in text, longest first, and their trie. */
static int build_special_list(struct tokenizer *t, struct err *e)
{
    int32_t n = t->n_vocab;
    size_t ns = 0;
    for (int32_t i = 0; i < n; i++) {
        uint8_t ty = t->types[i];
        if ((ty == TOK_TYPE_CONTROL || ty == TOK_TYPE_USER_DEFINED || ty == TOK_TYPE_UNKNOWN) && t->text_len[i])
            ns++;
    }
    struct len_id *li = malloc((ns ? ns : 1) * sizeof *li);
    t->special = malloc((ns ? ns : 1) * sizeof *t->special);
    if (!t->special || !li) {
        free(li);
        return err_set(e, ERR_NOMEM, "out of memory");
    }
    for (int32_t i = 0; i < n; i++) {
        uint8_t ty = t->types[i];
        if ((ty == TOK_TYPE_CONTROL || ty == TOK_TYPE_USER_DEFINED || ty == TOK_TYPE_UNKNOWN) && t->text_len[i])
            li[t->n_special++] = (struct len_id){t->text_len[i], i};
    }
    qsort(li, t->n_special, sizeof *li, cmp_special);
    for (size_t i = 0; i < t->n_special; i++)
        t->special[i] = li[i].id;
    free(li);
    return tok_build_special_trie(t, e);
}

/* The token of each byte value (-1 when none). */
static void find_byte_tokens(struct tokenizer *t)
{
    for (int b = 0; b < 256; b++) {
        if (t->model == TOK_MODEL_SPM) {
            char name[8];
            snprintf(name, sizeof name, "<0x%02X>", b);
            int32_t id = find_text(t, name);
            if (id < 0) {
                char c = (char)b;
                id = tok_lookup(t, &c, 1);
            }
            t->byte_tok[b] = id;
        } else {
            char u[4];
            size_t l = tok_utf8_put(u, tok_byte_to_cp((uint8_t)b));
            t->byte_tok[b] = tok_lookup(t, u, l);
        }
    }
}

/* tokenizer.ggml.merges into the merge table (pair -> rank, result); merges
 * whose parts or result are not tokens can never apply and are skipped. */
static int load_bpe_merges(struct tokenizer *t, const struct gguf_file *f, struct err *e)
{
    const struct gguf_kv *kv;
    int rc = gguf_get_arr(f, "tokenizer.ggml.merges", GGUF_VT_STRING, &kv, e);
    if (rc < 0 && e->code != ERR_NOT_FOUND)
        return -1;
    uint64_t nm = rc == 0 ? kv->arr_n : 0;
    if (nm > INT32_MAX)
        return err_set(e, ERR_CORRUPT, "tokenizer.ggml.merges: %llu merges is too many", (unsigned long long)nm);
    t->merge_mask = pow2_at_least(2 * (size_t)nm) - 1;
    t->merge = malloc((t->merge_mask + 1) * sizeof *t->merge);
    if (!t->merge)
        return err_set(e, ERR_NOMEM, "out of memory loading %llu merges", (unsigned long long)nm);
    for (size_t i = 0; i <= t->merge_mask; i++)
        t->merge[i].key = UINT64_MAX;
    struct sbuf cat = SBUF_INIT;
    uint64_t skipped = 0;
    for (uint64_t i = 0; i < nm; i++) {
        struct gguf_str m = kv->arr_strs[i];
        /* "left right": the separator is the first space after the first byte */
        const char *sp = m.len > 1 ? memchr(m.ptr + 1, ' ', m.len - 1) : NULL;
        if (!sp) {
            sbuf_release(&cat);
            return err_set(e, ERR_CORRUPT, "tokenizer.ggml.merges[%llu] = '%.*s': no space between the two parts",
                           (unsigned long long)i, (int)(m.len > 64 ? 64 : m.len), m.ptr);
        }
        size_t ll = (size_t)(sp - m.ptr), rl = m.len - ll - 1;
        int32_t l = tok_lookup(t, m.ptr, ll), r = tok_lookup(t, sp + 1, rl);
        sbuf_reset(&cat);
        if (sbuf_add(&cat, m.ptr, ll) || sbuf_add(&cat, sp + 1, rl)) {
            sbuf_release(&cat);
            return err_set(e, ERR_NOMEM, "out of memory loading merges");
        }
        int32_t res = tok_lookup(t, cat.buf, cat.len);
        if (l < 0 || r < 0 || res < 0) {
            skipped++; /* can never apply: its parts or result are not tokens */
            continue;
        }
        merge_insert(t, (uint64_t)(uint32_t)l << 32 | (uint32_t)r, (uint32_t)i, res);
    }
    sbuf_release(&cat);
    if (skipped)
        log_warn("%s: %llu of %llu merges name strings that are not tokens; ignored", gguf_name(f),
                 (unsigned long long)skipped, (unsigned long long)nm);
    return 0;
}

/* SPM: whether no token has "▁" inside it after its leading ones, so that
 * text may be split into words at spaces. */
static bool spm_words_split(const struct tokenizer *t)
{
    for (int32_t id = 0; id < t->n_vocab; id++) {
        const char *s = tok_text_at(t, id);
        uint32_t len = t->text_len[id], lead = 0;
        while (lead + 3 <= len && !memcmp(s + lead, "\xE2\x96\x81", 3))
            lead += 3;
        for (uint32_t k = lead + 1; k + 3 <= len; k++)
            if (!memcmp(s + k, "\xE2\x96\x81", 3))
                return false;
    }
    return true;
}

/* SPM: every way a token splits into two tokens, so that the encoder
 * finds a pair's token by ids instead of hashing strings. */
static int build_spm_pairs(struct tokenizer *t, struct err *e)
{
    t->spm_split_words = spm_words_split(t);
    struct tok_merge *pairs = NULL;
    size_t np = 0, cap = 0;
    for (int32_t id = 0; id < t->n_vocab; id++) {
        const char *s = tok_text_at(t, id);
        uint32_t len = t->text_len[id];
        if (len < 2 || tok_lookup(t, s, len) != id)
            continue; /* a duplicate text: the table names the id the lookup gives */
        for (uint32_t k = 1; k < len; k++) {
            int32_t l = tok_lookup(t, s, k);
            if (l < 0)
                continue;
            int32_t r = tok_lookup(t, s + k, len - k);
            if (r < 0)
                continue;
            if (mem_grow(&pairs, &cap, np + 1, sizeof *pairs) < 0) {
                free(pairs);
                return err_set(e, ERR_NOMEM, "out of memory building the SPM pair table");
            }
            pairs[np++] = (struct tok_merge){(uint64_t)(uint32_t)l << 32 | (uint32_t)r, 0, id};
        }
    }
    t->merge_mask = pow2_at_least(2 * np) - 1;
    t->merge = malloc((t->merge_mask + 1) * sizeof *t->merge);
    if (!t->merge) {
        free(pairs);
        return err_set(e, ERR_NOMEM, "out of memory building the SPM pair table");
    }
    for (size_t i = 0; i <= t->merge_mask; i++)
        t->merge[i].key = UINT64_MAX;
    for (size_t i = 0; i < np; i++)
        merge_insert(t, pairs[i].key, 0, pairs[i].res);
    free(pairs);
    return 0;
}

/* tokenizer.chat_template, optional, copied NUL-terminated. */
static int load_chat_template(struct tokenizer *t, const struct gguf_file *f, struct err *e)
{
    struct gguf_str tmpl;
    int rc = gguf_get_str(f, "tokenizer.chat_template", &tmpl, e);
    if (rc < 0 && e->code != ERR_NOT_FOUND)
        return -1;
    if (rc == 0) {
        t->chat_template = malloc(tmpl.len + 1);
        if (!t->chat_template)
            return err_set(e, ERR_NOMEM, "out of memory");
        memcpy(t->chat_template, tmpl.ptr, tmpl.len);
        t->chat_template[tmpl.len] = 0;
        tok_chat_prepare(t);
    }
    rc = gguf_get_str(f, "tokenizer.chat_template.tool_use", &tmpl, e);
    if (rc < 0 && e->code != ERR_NOT_FOUND)
        return -1;
    if (rc == 0) {
        if (!(t->chat_template_tools = strndup(tmpl.ptr, tmpl.len)))
            return err_set(e, ERR_NOMEM, "out of memory");
        tok_chat_prepare_tools(t);
    }
    return 0;
}

static int load_body(struct tokenizer *t, const struct gguf_file *f, struct err *e)
{
    if (load_model_kind(t, f, e) || load_texts(t, f, e) || load_scores_types(t, f, e) || load_specials(t, f, e))
        return -1;
    mark_eog(t);
    if (build_pieces(t, e) || build_special_list(t, e))
        return -1;
    find_byte_tokens(t);
    if (t->model == TOK_MODEL_BPE && load_bpe_merges(t, f, e))
        return -1;
    if (t->model == TOK_MODEL_SPM && build_spm_pairs(t, e))
        return -1;
    return load_chat_template(t, f, e);
}

struct tokenizer *tok_load(const struct gguf_file *f, struct err *e)
{
    struct tokenizer *t = calloc(1, sizeof *t);
    if (!t) {
        err_set(e, ERR_NOMEM, "%s: out of memory", gguf_name(f));
        return NULL;
    }
    if (load_body(t, f, e)) {
        err_prefix(e, "%s", gguf_name(f));
        tok_free(t);
        return NULL;
    }
    return t;
}
