/* main.c: lm-worker's entry point: process setup, then dispatch to one subcommand.
 *
 * Subcommands live in cmd_*.c (declared in cmds.h) and parse their own options; this file only
 * picks one. Process setup happens here because it is policy for the whole program: the worker
 * must die with its supervisor (PR_SET_PDEATHSIG), so that a killed orchestrate never leaves a
 * worker holding GPU memory.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "build_info.h"
#include "cmds.h"
#include "exit_codes.h"
#include "proc_util.h"

#ifndef LM_WORKER_VERSION
#define LM_WORKER_VERSION "0.1.0"
#endif

typedef struct {
    const char *name;                 // the subcommand word, e.g. "run"
    int (*fn)(int argc, char **argv); // its entry point; returns the exit code
    const char *summary;              // one line for the usage text
} subcommand_t;

static const subcommand_t subcommands[] = {
    {"run", cmd_run, "score a competition CSV: id,prompt,response_a,response_b -> id,<labels>"},
    {"tokenize", cmd_tokenize, "print the token ids of texts (checks a tokenizer.json)"},
    {"logits", cmd_logits, "run given token ids through a model and print logits"},
    {"check", cmd_check, "check run's options without loading weights (orchestrate's preflight)"},
    {"info", cmd_info, "describe a checkpoint: config, tensors, memory needed"},
    {"bench", cmd_bench, "time forward passes on synthetic batches"},
};
#define N_SUBCOMMANDS (sizeof subcommands / sizeof subcommands[0])

/* Print the subcommand list and `run`'s options to f. */
static void usage(FILE *f) {
    fprintf(f, "usage: lm-worker <subcommand> [options]\n       lm-worker -h|--help | -V|--version\n\n"
               "Subcommands (each takes --help for its options and their defaults):\n");
    for (size_t i = 0; i < N_SUBCOMMANDS; i++)
        fprintf(f, "  %-9s %s\n", subcommands[i].name, subcommands[i].summary);
    fprintf(f, "\nThe main subcommand, `run`:\n\n");
    cmd_run_usage(f);
    fprintf(f, "\nSee docs/lm-worker.md for the full reference.\n");
}

int main(int argc, char **argv) {
    // Die with the supervisor. The parent may already be gone by the time prctl takes effect;
    // then we were reparented and nobody will signal us, so leave now.
    int gone = proc_die_with_parent(SIGTERM, getppid());
    if (gone < 0) perror("lm-worker: prctl(PR_SET_PDEATHSIG)");
    if (gone > 0) return 128 + SIGTERM;

    if (argc < 2) {
        usage(stderr);
        return EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        usage(stdout);
        return EXIT_OK;
    }
    if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "-V") == 0) {
        if (argc > 2) {
            fprintf(stderr, "lm-worker: %s takes no arguments (got '%s')\n", cmd, argv[2]);
            return EXIT_USAGE;
        }
        printf("lm-worker %s\n" BUILD_INFO_LINES, LM_WORKER_VERSION);
        return EXIT_OK;
    }
    for (size_t i = 0; i < N_SUBCOMMANDS; i++)
        if (strcmp(cmd, subcommands[i].name) == 0) return subcommands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "lm-worker: unknown subcommand '%s'\n\n", cmd);
    usage(stderr);
    return EXIT_USAGE;
}
