/* libFuzzer target for the /v1/embeddings and /v1/rerank body parsers
 * (srv_embed_parse; srv_rerank_parse when the first byte is 'R', on the
 * rest). For a rerank body, success also means a non-empty query, every
 * item a text, and top_n in 1..the number of documents.
 * Properties: it never crashes; it fails with a 400 (or 500) and a message,
 * or succeeds with a model name, 1..SRV_EMBED_MAX_ITEMS items each either a
 * non-empty text or a non-empty list of ids >= 0, and dimensions in
 * 0..2^20; the error renders through the response builder. */
#include "server/server_int.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct emb_body b;
    struct oai_error e;
    memset(&e, 0, sizeof e);
    bool rerank = size > 0 && data[0] == 'R';
    int rc = rerank ? srv_rerank_parse((const char *)data + 1, size - 1, &b, &e)
                    : srv_embed_parse((const char *)data, size, &b, &e);
    if (rc < 0) {
        if ((e.status != 400 && e.status != 500) || !e.message[0])
            abort();
        free(oai_build_error(&e));
        srv_embed_body_release(&b);
        return 0;
    }
    if (!b.model || b.n_items < 1 || b.n_items > SRV_EMBED_MAX_ITEMS || b.dimensions < 0 || b.dimensions > 1 << 20)
        abort();
    if (rerank && (!b.query || b.query_len == 0 || b.top_n < 1 || b.top_n > b.n_items))
        abort();
    for (int i = 0; i < b.n_items; i++) {
        if (rerank && !b.items[i].text)
            abort();
        const struct emb_item *it = &b.items[i];
        if (it->text ? it->len == 0 || it->ids : !it->ids || it->n_ids == 0)
            abort();
        for (size_t k = 0; !it->text && k < it->n_ids; k++)
            if (it->ids[k] < 0)
                abort();
    }
    srv_embed_body_release(&b);
    return 0;
}
