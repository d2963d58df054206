/* maas — entry point: dispatches to the subcommand named by argv[1]. */
#include "cli/cli.h"
#include "kernels/kernels.h"

#include <stdio.h>
#include <string.h>

static int cmd_version(int argc, char **argv)
{
    kernels_init();
    printf("maas 0.1.0 (kernels: %s)\n", kern_variant_current());
    return 0;
}

struct command {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *help;
};

static const struct command commands[] = {
    {"inspect", cmd_inspect, "inspect FILE [--json]            metadata and tensor table of a GGUF file"},
    {"quantize", cmd_quantize, "quantize IN OUT TYPE             convert a model to another type or mix"},
    {"mkmodel", cmd_mkmodel, "mkmodel --arch A --vocab V -o OUT  write a model with seeded random weights"},
    {"train", cmd_train, "train --arch A --text TRAIN.txt -o OUT  train a small model from scratch on the CPU"},
    {"tokenize", cmd_tokenize, "tokenize --model FILE [--bos] [--special] (--file F | TEXT)  token ids of a text"},
    {"detokenize", cmd_detokenize, "detokenize --model FILE [--special] ID...  text of token ids"},
    {"embed", cmd_embed, "embed --model FILE [--json] TEXT...  sentence embeddings (bert, pooling models)"},
    {"run", cmd_run, "run --model FILE --prompt TEXT [-n N] [--json]  generate a continuation"},
    {"perplexity", cmd_perplexity, "perplexity --model F --file TEXT [--ctx 512]  perplexity as llama-perplexity computes it"},
    {"template", cmd_template, "template (--model F | --template-file T) CASE.json  render a chat template"},
    {"chat", cmd_chat, "chat --model FILE                 interactive multi-turn chat (stdin lines)"},
    {"serve", cmd_serve, "serve --model FILE [--port 8080]   OpenAI-compatible HTTP API (chat, completions, /metrics)"},
    {"bench", cmd_bench, "bench --model FILE [-p 512] [-n 128]  prompt/generation speed and bandwidth roofline"},
    {"admin", cmd_admin, "admin [--data DIR] account|key|price|usage ...  accounts, API keys, prices, bills"},
    {"version", cmd_version, "version                          version and the kernels this CPU uses"},
};

static void usage(FILE *out)
{
    fprintf(out, "usage: maas <command> [options]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        fprintf(out, "  %s\n", commands[i].help);
    fprintf(out, "\n'maas <command> --help' describes a command.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    struct err e;
    if (kern_init(&e) < 0) {
        fprintf(stderr, "maas: %s\n", e.msg);
        return 2;
    }
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        if (!strcmp(argv[1], commands[i].name))
            return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "maas: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
