/* opts.h: the one option parser of lm-worker's subcommands: a table of long options, parsed with
 * getopt_long, so that every subcommand spells, checks and reports its options the same way.
 *
 * Each subcommand lists its options as opt_t rows (name, kind, destination, range or choices)
 * and calls opts_parse once. -h/--help is always there. It does not print usage texts (the
 * subcommand passes its own) and holds no option of its own beyond help; the rows shared by
 * several subcommands come from one place (DEVICE_OPTS below), so each option has one
 * spelling (docs/lm-worker.md lists them).
 */
#ifndef LM_OPTS_H
#define LM_OPTS_H

#include <stdio.h>

typedef enum {
    OPT_FLAG = 1, // no value: *(int *)dst = 1
    OPT_SET,      // no value: *(const char **)dst = set (a deprecated alias, e.g. --int8)
    OPT_STR,      // *(const char **)dst = the value
    OPT_CHOICE,   // like OPT_STR, the value must be one of choices ("a|b|c")
    OPT_INT,      // *(int *)dst = the value, an integer in [lo, hi]
    OPT_LONG,     // *(long *)dst = the value, an integer in [lo, hi]
    OPT_NUM,      // *(double *)dst = the value, a number >= lo
    OPT_FN,       // fn(value, dst) parses it; returns 0, or -1 after printing why
} opt_kind_t;

typedef struct {
    const char *name;      // long name without "--", e.g. "max-length"
    opt_kind_t kind;       // how the value is read
    void *dst;             // where it goes (type per kind)
    long lo, hi;           // OPT_INT/OPT_LONG range; OPT_NUM lower bound (lo)
    const char *choices;   // OPT_CHOICE: "auto|cpu|cuda"; OPT_SET: the value set
    int required;          // 1: missing option is a usage error
    int (*fn)(const char *value, void *dst); // OPT_FN's parser
} opt_t;

/* Parse argv (argv[0] is the subcommand's name, cmd) against opts (n rows). Positional
 * arguments are rejected. Returns -1 when everything parsed, EXIT_OK after -h/--help (usage
 * printed to stdout), or EXIT_USAGE after printing "lm-worker <cmd>: <what was wrong>" and the
 * usage to stderr. */
int opts_parse(const char *cmd, int argc, char **argv, const opt_t *opts, int n, void (*usage)(FILE *f));

/* The opt_t rows of the options device_open reads (device.h defines their choices), for every
 * subcommand that opens a device, so that they are spelled and checked one way: --device,
 * --dtype, --quant (and --int8, its deprecated alias), --threads. o points at a struct with
 * const char *device, *dtype, *quant and int threads. */
#define DEVICE_OPTS(o)                                                                        \
    {"device", OPT_CHOICE, .dst = &(o)->device, .choices = DEVICE_CHOICES},                   \
    {"dtype", OPT_CHOICE, .dst = &(o)->dtype, .choices = DEVICE_DTYPE_CHOICES},               \
    {"quant", OPT_CHOICE, .dst = &(o)->quant, .choices = DEVICE_QUANT_CHOICES},               \
    {"int8", OPT_SET, .dst = &(o)->quant, .choices = "int8"},                                 \
    {"threads", OPT_INT, .dst = &(o)->threads, .lo = 0, .hi = 4096}
/* DEVICE_OPTS' lines for a usage text (options in column 3, help in column 22). */
#define DEVICE_OPTS_HELP                                                                        \
    "  --device D         " DEVICE_CHOICES " (default: auto)\n"                                  \
    "  --dtype T          " DEVICE_DTYPE_CHOICES " (default: auto)\n"                            \
    "  --quant Q          " DEVICE_QUANT_CHOICES ": int8 weights, CUDA only (default: none;\n"   \
    "                     --int8 is a deprecated alias of --quant int8)\n"                       \
    "  --threads N        CPU threads, 0 = all cores (default: 0)\n"

#define OPTS_N(table) ((int)(sizeof(table) / sizeof((table)[0])))

#endif
