/* maas tokenize / maas detokenize — text to token ids and back with the
 * tokenizer of a GGUF file (a whole model or a vocabulary-only file).
 *
 *   maas tokenize --model FILE [--bos] [--special] (--file F | TEXT)
 *   maas detokenize --model FILE [--special] ID...
 *
 * tokenize prints the ids on one line separated by single spaces. The text
 * is taken byte for byte (--file F: the whole content of F, "-" for standard
 * input); --bos puts the vocabulary's BOS id first; --special lets the text
 * of control tokens ("<|im_end|>") stand for those tokens. detokenize writes
 * the text of the ids exactly, with no newline added, so that
 * `maas detokenize --model M $(maas tokenize --model M --file F)` reproduces F.
 */
#include "cli/cli.h"
#include "cli/tools.h"
#include "tokenizer/tokenizer.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static void tokenize_usage(FILE *out)
{
    fprintf(out, "usage: maas tokenize --model FILE [--bos] [--special] (--file F | TEXT)\n"
                 "  prints the token ids of TEXT (or of the whole content of F; '-' reads standard input)\n"
                 "  --bos      put the BOS token first\n"
                 "  --special  recognise the text of control tokens such as <|im_end|> as those tokens\n");
}

static void detokenize_usage(FILE *out)
{
    fprintf(out, "usage: maas detokenize --model FILE [--special] ID...\n"
                 "  writes the text of the token ids (no newline is added)\n"
                 "  --special  render control tokens (BOS, <|im_end|>, ...) as their text\n");
}

static struct tokenizer *open_tokenizer(const char *cmd, const char *path)
{
    struct err e = {0};
    struct gguf_file *f = gguf_open(path, &e);
    if (!f) {
        fprintf(stderr, "maas %s: %s\n", cmd, e.msg);
        return NULL;
    }
    struct tokenizer *t = tok_load(f, &e);
    gguf_close(f);
    if (!t)
        fprintf(stderr, "maas %s: %s\n", cmd, e.msg);
    return t;
}

/* The whole of file path ("-": stdin), or NULL when reported. */
static char *read_all(const char *path, size_t *len)
{
    FILE *f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
    if (!f) {
        fprintf(stderr, "maas tokenize: %s: %s\n", path, strerror(errno));
        return NULL;
    }
    char *p = NULL;
    struct err e;
    if (tool_read_stream(f, path, SIZE_MAX, &p, len, &e) < 0)
        fprintf(stderr, "maas tokenize: %s\n", e.msg);
    if (f != stdin)
        fclose(f);
    return p;
}

int cmd_tokenize(int argc, char **argv)
{
    const char *model = NULL, *file = NULL, *text = NULL;
    bool bos = false, special = false, end_opts = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!end_opts && (!strcmp(a, "--help") || !strcmp(a, "-h"))) {
            tokenize_usage(stdout);
            return 0;
        } else if (!end_opts && !strcmp(a, "--model") && i + 1 < argc) {
            model = argv[++i];
        } else if (!end_opts && !strcmp(a, "--file") && i + 1 < argc) {
            file = argv[++i];
        } else if (!end_opts && !strcmp(a, "--bos")) {
            bos = true;
        } else if (!end_opts && !strcmp(a, "--special")) {
            special = true;
        } else if (!end_opts && !strcmp(a, "--")) {
            end_opts = true;
        } else if (!end_opts && a[0] == '-' && a[1] == '-') {
            fprintf(stderr, "maas tokenize: unknown option '%s' (or missing value)\n", a);
            tokenize_usage(stderr);
            return 2;
        } else if (!text) {
            text = a;
        } else {
            fprintf(stderr, "maas tokenize: more than one TEXT ('%s'); quote the text or use --file\n", a);
            return 2;
        }
    }
    if (!model || (!file) == (!text)) {
        fprintf(stderr, "maas tokenize: %s\n", !model ? "--model FILE is required" : "give either --file F or TEXT");
        tokenize_usage(stderr);
        return 2;
    }
    struct tokenizer *t = open_tokenizer("tokenize", model);
    if (!t)
        return 1;
    int rc = 1;
    size_t len = 0;
    char *buf = NULL;
    if (file) {
        if (!(buf = read_all(file, &len)))
            goto out;
    } else {
        len = strlen(text);
    }
    struct tok_ids ids;
    tok_ids_init(&ids);
    struct err e = {0};
    if (bos) {
        if (tok_bos(t) < 0) {
            fprintf(stderr, "maas tokenize: --bos: %s has no BOS token\n", model);
            goto out;
        }
        tok_ids_push(&ids, tok_bos(t), NULL);
    }
    if (tok_encode(t, buf ? buf : text, len, false, special, &ids, &e)) {
        fprintf(stderr, "maas tokenize: %s\n", e.msg);
        tok_ids_release(&ids);
        goto out;
    }
    for (size_t i = 0; i < ids.n; i++)
        printf(i ? " %d" : "%d", ids.ids[i]);
    printf("\n");
    tok_ids_release(&ids);
    rc = fflush(stdout) == 0 ? 0 : 1;
out:
    free(buf);
    tok_free(t);
    return rc;
}

int cmd_detokenize(int argc, char **argv)
{
    const char *model = NULL;
    bool special = false;
    int first_id = argc;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            detokenize_usage(stdout);
            return 0;
        } else if (!strcmp(a, "--model") && i + 1 < argc) {
            model = argv[++i];
        } else if (!strcmp(a, "--special")) {
            special = true;
        } else if (!strcmp(a, "--")) {
            first_id = i + 1;
            break;
        } else if (a[0] == '-' && a[1] == '-') {
            fprintf(stderr, "maas detokenize: unknown option '%s' (or missing value)\n", a);
            detokenize_usage(stderr);
            return 2;
        } else {
            first_id = i;
            break;
        }
    }
    if (!model) {
        fprintf(stderr, "maas detokenize: --model FILE is required\n");
        detokenize_usage(stderr);
        return 2;
    }
    struct tokenizer *t = open_tokenizer("detokenize", model);
    if (!t)
        return 1;
    int rc = 1;
    size_t n = (size_t)(argc - first_id);
    int32_t *ids = malloc((n ? n : 1) * sizeof *ids);
    char *text = NULL;
    if (!ids) {
        fprintf(stderr, "maas detokenize: out of memory\n");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        const char *a = argv[first_id + (int)i];
        int64_t v;
        if (parse_i64(a, INT64_MIN, INT64_MAX, &v) < 0) {
            fprintf(stderr, "maas detokenize: argument %zu: '%s' is not a token id\n", i + 1, a);
            goto out;
        }
        if (v < 0 || v >= tok_n_vocab(t)) {
            fprintf(stderr, "maas detokenize: argument %zu: id %s is not in the vocabulary of %s (0 .. %d)\n", i + 1, a,
                    model, tok_n_vocab(t) - 1);
            goto out;
        }
        ids[i] = (int32_t)v;
    }
    struct err e = {0};
    size_t len;
    text = tok_decode(t, ids, n, special, true, &len, &e);
    if (!text) {
        fprintf(stderr, "maas detokenize: %s\n", e.msg);
        goto out;
    }
    if (fwrite(text, 1, len, stdout) != len || fflush(stdout)) {
        fprintf(stderr, "maas detokenize: write error: %s\n", strerror(errno));
        goto out;
    }
    rc = 0;
out:
    free(text);
    free(ids);
    tok_free(t);
    return rc;
}
