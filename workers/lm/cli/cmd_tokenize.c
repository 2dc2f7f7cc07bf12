/* cmd_tokenize.c: `lm-worker tokenize`, the native tokenizer on JSON lines.
 *
 * This is the check a user runs against Hugging Face `tokenizers`: feed the same texts, diff
 * the ids. Input is {"text": "..."} per line on stdin (an optional "id" is echoed back); output
 * is {"ids": [...]} per line on stdout, in input order, flushed line by line so that it can be
 * driven interactively. Blank input lines are skipped, as `lm-worker logits` does.
 * It deliberately does no CSV, templating or truncation (that is `lm-worker run`).
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmds.h"
#include "exit_codes.h"
#include "jsonl.h"
#include "opts.h"
#include "tokenizer/tokenizer.h"

/* Print `lm-worker tokenize`'s options and their defaults to f. */
static void tokenize_usage(FILE *f) {
    fprintf(f,
            "usage: lm-worker tokenize --tokenizer FILE [options] < texts.jsonl > ids.jsonl\n"
            "  reads {\"text\": \"...\"} lines (an optional \"id\" is echoed), writes {\"ids\": [...]} lines\n"
            "  --tokenizer FILE        Hugging Face tokenizer.json; required\n"
            "  --add-special-tokens    apply the post-processor, e.g. Gemma's <bos> (default: off,\n"
            "                          like encode(text, add_special_tokens=False))\n"
            "  -h, --help              this text\n");
}

typedef struct {
    const char *tokenizer; // --tokenizer path
    int add_special;       // --add-special-tokens given
} tokenize_opts_t;

/* Parse argv (argv[0] is "tokenize"). Returns -1 to continue, or an exit status (0 after --help). */
static int tokenize_parse(int argc, char **argv, tokenize_opts_t *o) {
    *o = (tokenize_opts_t){0};
    const opt_t opts[] = {
        {"tokenizer", OPT_STR, .dst = &o->tokenizer, .required = 1},
        {"add-special-tokens", OPT_FLAG, .dst = &o->add_special},
    };
    return opts_parse("tokenize", argc, argv, opts, OPTS_N(opts), tokenize_usage);
}

/* Write {"id": ..., "ids": [...]} and flush. */
static void write_ids(const json_t *id, const ids_t *ids) {
    jsonl_begin_object(stdout, id);
    fputs("\"ids\":[", stdout);
    for (size_t i = 0; i < ids->n; i++) printf(i ? ",%d" : "%d", (int)ids->data[i]);
    fputs("]}\n", stdout);
    fflush(stdout);
}

/* What tokenize_line needs across lines. */
typedef struct {
    tokenizer_t *tok;  // the loaded tokenizer
    int add_special;   // --add-special-tokens: the post-processor's special tokens too
    ids_t ids;         // the current line's ids
} tokenize_ctx_t;

/* jsonl_fn_t of `tokenize`: one line's text -> one output line of ids. */
static int tokenize_line(json_t *j, long lineno, void *ctx, err_t *err) {
    tokenize_ctx_t *c = ctx;
    json_t *text = json_object_get(j, "text");
    if (!json_is_string(text)) {
        err_fmt(err, "stdin:%ld: field 'text' must be a string", lineno);
        return EXIT_DATAERR;
    }
    c->ids.n = 0;
    if (tokenizer_encode(c->tok, json_string_value(text), json_string_length(text), c->add_special, &c->ids, err) < 0) {
        err_prefix(err, "stdin:%ld", lineno);
        return EXIT_DATAERR;
    }
    write_ids(json_object_get(j, "id"), &c->ids);
    return EXIT_OK;
}

int cmd_tokenize(int argc, char **argv) {
    tokenize_opts_t o;
    int pr = tokenize_parse(argc, argv, &o);
    if (pr != -1) return pr;
    err_t err = {0};
    tokenizer_t *tok = tokenizer_load(o.tokenizer, &err);
    if (!tok) {
        fprintf(stderr, "lm-worker tokenize: %s\n", err.msg);
        return EXIT_DATAERR;
    }
    tokenize_ctx_t c = {.tok = tok, .add_special = o.add_special};
    int rc = jsonl_each(stdin, "stdin", tokenize_line, &c, &err);
    if (rc != EXIT_OK) fprintf(stderr, "lm-worker tokenize: %s\n", err.msg);
    if (rc == EXIT_OK && ferror(stdout)) {
        fprintf(stderr, "lm-worker tokenize: cannot write stdout\n");
        rc = EXIT_IOERR;
    }
    ids_free(&c.ids);
    tokenizer_free(tok);
    return rc;
}
