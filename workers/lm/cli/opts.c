/* opts.c: opts_parse (see opts.h): an opt_t table -> getopt_long's struct option array, then
 * per-kind value checks. It does not know any subcommand's options. */
#include "opts.h"

#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "exit_codes.h"

#define OPT_VAL0 256 // getopt_long val of opts[0]; the rows follow

/* 1 when s is one of the '|'-separated words of choices, else 0. */
static int is_choice(const char *s, const char *choices) {
    size_t n = strlen(s);
    for (const char *p = choices; *p;) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        if (len == n && strncmp(p, s, n) == 0) return 1;
        if (!bar) break;
        p = bar + 1;
    }
    return 0;
}

/* Store value v of option o. Returns 0, or -1 after printing why. */
static int opt_store(const char *cmd, const opt_t *o, const char *v) {
    char *end;
    errno = 0;
    switch (o->kind) {
    case OPT_FLAG: *(int *)o->dst = 1; return 0;
    case OPT_SET: *(const char **)o->dst = o->choices; return 0;
    case OPT_STR: *(const char **)o->dst = v; return 0;
    case OPT_CHOICE:
        if (!is_choice(v, o->choices)) {
            fprintf(stderr, "lm-worker %s: --%s '%s': expected one of %s\n", cmd, o->name, v, o->choices);
            return -1;
        }
        *(const char **)o->dst = v;
        return 0;
    case OPT_INT:
    case OPT_LONG: {
        long x = strtol(v, &end, 10);
        if (errno || end == v || *end || x < o->lo || x > o->hi) {
            fprintf(stderr, "lm-worker %s: --%s '%s': expected an integer in [%ld, %ld]\n", cmd, o->name, v, o->lo,
                    o->hi);
            return -1;
        }
        if (o->kind == OPT_INT) *(int *)o->dst = (int)x;
        else *(long *)o->dst = x;
        return 0;
    }
    case OPT_NUM: {
        double x = strtod(v, &end);
        if (errno || end == v || *end || !(x >= (double)o->lo)) {
            fprintf(stderr, "lm-worker %s: --%s '%s': expected a number >= %ld\n", cmd, o->name, v, o->lo);
            return -1;
        }
        *(double *)o->dst = x;
        return 0;
    }
    case OPT_FN: return o->fn(v, o->dst);
    }
    ASSERT(!"unknown opt_kind_t");
    return -1;
}

int opts_parse(const char *cmd, int argc, char **argv, const opt_t *opts, int n, void (*usage)(FILE *f)) {
    struct option *lo = xcalloc((size_t)n + 2, sizeof *lo);
    char *seen = xcalloc((size_t)n + 1, 1);
    for (int i = 0; i < n; i++) {
        int has_arg = opts[i].kind == OPT_FLAG || opts[i].kind == OPT_SET ? no_argument : required_argument;
        lo[i] = (struct option){opts[i].name, has_arg, NULL, OPT_VAL0 + i};
    }
    lo[n] = (struct option){"help", no_argument, NULL, 'h'};
    int rc = -1, c;
    optind = 1;
    opterr = 1;
    while (rc == -1 && (c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        if (c == 'h') {
            usage(stdout);
            rc = EXIT_OK;
        } else if (c >= OPT_VAL0 && c < OPT_VAL0 + n) {
            seen[c - OPT_VAL0] = 1;
            if (opt_store(cmd, &opts[c - OPT_VAL0], optarg)) rc = EXIT_USAGE;
        } else {
            rc = EXIT_USAGE; // getopt printed what was wrong
        }
    }
    if (rc == -1 && optind < argc) {
        fprintf(stderr, "lm-worker %s: unexpected argument '%s'\n", cmd, argv[optind]);
        rc = EXIT_USAGE;
    }
    for (int i = 0; rc == -1 && i < n; i++)
        if (opts[i].required && !seen[i]) {
            fprintf(stderr, "lm-worker %s: --%s is required\n", cmd, opts[i].name);
            rc = EXIT_USAGE;
        }
    if (rc == EXIT_USAGE) usage(stderr);
    free(lo);
    free(seen);
    return rc;
}
