/* libFuzzer target for tok_load: any bytes that open as a GGUF file either
 * give a tokenizer or a one-line reason; a tokenizer that loads must encode
 * and decode a fixed text (with and without special tokens), stream it, and
 * render a chat template (or refuse with a reason), all without touching
 * memory it does not own. */
#include <stdio.h>
#include <stdlib.h>
#include "tokenizer/tokenizer.h"

#include <string.h>

static const char text[] = "Hello, world! <|im_end|> <s> caf\xC3\xA9 \xE4\xBD\xA0\xE5\xA5\xBD 123 \xFF end";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct err e;
    e.msg[0] = 0;
    struct gguf_file *f = gguf_open_mem(data, size, "fuzz.gguf", &e);
    if (!f)
        return 0;
    struct tokenizer *t = tok_load(f, &e);
    gguf_close(f);
    if (!t) {
        MAAS_ASSERT(e.msg[0] != 0);
        return 0;
    }
    struct tok_ids ids;
    tok_ids_init(&ids);
    for (int special = 0; special < 2; special++) {
        ids.n = 0;
        if (tok_encode(t, text, sizeof text - 1, special, special, &ids, &e) != 0) {
            fprintf(stderr, "tok_encode failed on a vocabulary tok_load accepted: %s\n", e.msg);
            abort();
        }
        for (size_t i = 0; i < ids.n; i++)
            MAAS_ASSERT(ids.ids[i] >= 0 && ids.ids[i] < tok_n_vocab(t));
        size_t len;
        char *d = tok_decode(t, ids.ids, ids.n, special, true, &len, &e);
        MAAS_ASSERT(d);
        free(d);
        const char *stop = "world";
        struct tok_stream *s = tok_stream_new(t, &stop, 1, special, &e);
        MAAS_ASSERT(s);
        const char *out;
        for (size_t i = 0; i < ids.n; i++)
            MAAS_ASSERT(tok_stream_feed(s, ids.ids[i], &out, &len, &e) >= 0);
        MAAS_ASSERT(tok_stream_finish(s, &out, &len, &e) == 0);
        tok_stream_free(s);
    }
    for (int32_t id = -1; id <= tok_n_vocab(t) && id < 2000; id++) {
        size_t len;
        (void)tok_piece(t, id, true, &len);
        (void)tok_is_eog(t, id);
        (void)tok_token_type(t, id);
    }
    enum tok_chat_family fam;
    if (tok_chat_select(t, NULL, &fam, &e) >= 0) {
        static const struct tok_chat_msg m[] = {{"system", "s"}, {"user", "u"}, {"assistant", "a"}, {"user", "v"}};
        size_t len;
        char *r = tok_chat_render(t, fam, m, 4, true, &len, &e);
        free(r);
    }
    tok_ids_release(&ids);
    tok_free(t);
    return 0;
}
