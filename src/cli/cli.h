/* cli — the `maas` subcommands. Each cmd_* takes the arguments after its
 * name (argv[0] is the command name) and returns the process exit code:
 * 0 success, 1 failure (message already printed), 2 usage error. */
#ifndef MAAS_CLI_H
#define MAAS_CLI_H

int cmd_inspect(int argc, char **argv);
int cmd_quantize(int argc, char **argv);
int cmd_mkmodel(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_chat(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_detokenize(int argc, char **argv);
int cmd_admin(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_template(int argc, char **argv);

#endif
