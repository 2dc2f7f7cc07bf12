/* cmds.h: the lm-worker subcommands that main.c dispatches to. Each takes the arguments after
 * the program name (argv[0] is the subcommand's name) and returns the process exit code
 * (common/exit_codes.h). */
#ifndef LM_CMDS_H
#define LM_CMDS_H

/* lm-worker logits: {"input_ids": [...]} lines on stdin -> {"logits": [...]} lines on stdout. */
int cmd_logits(int argc, char **argv);

/* lm-worker info: architecture, config, parameter count, dtypes and memory estimates. */
int cmd_info(int argc, char **argv);

/* lm-worker tokenize --tokenizer FILE [--add-special-tokens]: {"text": ...} lines on stdin ->
 * {"ids": [...]} lines on stdout, in order. */
int cmd_tokenize(int argc, char **argv);

/* lm-worker run: score a competition CSV -> id,<labels> probabilities (cmd_run.c,
 * docs/lm-worker.md). cmd_run_usage prints its options and their defaults. */
#include <stdio.h>
int cmd_run(int argc, char **argv);
void cmd_run_usage(FILE *f);

/* lm-worker check: run's options -> one JSON line saying what a run would load (config,
 * tokenizer, adapter, template ids, device) or which option cannot work (cmd_check.c). */
int cmd_check(int argc, char **argv);

/* lm-worker bench: developer timing (--batch/--len) and golden checks (--golden) of the forward
 * pass on any device (cmd_bench.c; used by tools/gpu-check.sh). */
int cmd_bench(int argc, char **argv);

#endif
