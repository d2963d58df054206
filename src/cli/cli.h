/* cli — the `maas` subcommands. Each cmd_* takes the arguments after its
 * name (argv[0] is the command name) and returns the process exit code:
 * 0 success, 1 failure (message already printed), 2 usage error. */
#ifndef MAAS_CLI_H
#define MAAS_CLI_H

int cmd_inspect(int argc, char **argv);
int cmd_quantize(int argc, char **argv);
int cmd_mkmodel(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_chat(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_embed(int argc, char **argv);
int cmd_detokenize(int argc, char **argv);
int cmd_admin(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_template(int argc, char **argv);
int cmd_perplexity(int argc, char **argv);

struct tokenizer;
struct err;
/* --chat-template: a value ending in .jinja is a template file that replaces
 * the model's (tok_chat_set_template) and *name becomes NULL; any other
 * value (a family name) is left for tok_chat_choose. 0, or -1 with e. */
int cli_chat_template_file(struct tokenizer *tok, const char **name, struct err *e);

#endif
