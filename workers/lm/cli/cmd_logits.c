/* cmd_logits.c: `lm-worker logits`, raw classifier logits for token ids, one JSON line each.
 *
 * This is the check a user runs against transformers: feed the same input_ids, compare the
 * logits. Input is {"input_ids": [...]} per line on stdin (an optional "id" is echoed back);
 * output is {"logits": [...]} per line on stdout, floats printed with %.9g so that fp32 values
 * round-trip. Lines are answered one at a time and flushed, so it can be driven interactively.
 * It deliberately does no tokenisation and no CSV (that is `lm-worker run`).
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmds.h"
#include "device.h"
#include "exit_codes.h"
#include "jsonl.h"
#include "model/model.h"
#include "opts.h"

/* Print `lm-worker logits`'s options and their defaults to f. */
static void logits_usage(FILE *f) {
    fprintf(f,
            "usage: lm-worker logits --model DIR [options] < ids.jsonl > logits.jsonl\n"
            "  reads {\"input_ids\": [...]} lines, writes {\"logits\": [...]} lines\n"
            "  --model DIR        Hugging Face checkpoint directory (config.json + *.safetensors); required\n"
            "  --adapter DIR      PEFT LoRA adapter to merge (default: none)\n"
            DEVICE_OPTS_HELP
            "  -h, --help         this text\n");
}

typedef struct {
    const char *model, *adapter, *device, *dtype, *quant; // the options of the same names (NULL: unset)
    int threads;                                          // --threads
} logits_opts_t;

/* Parse argv (argv[0] is "logits"). Returns -1 to continue, or an exit status (0 after --help). */
static int logits_parse(int argc, char **argv, logits_opts_t *o) {
    *o = (logits_opts_t){.device = "auto", .dtype = "auto", .quant = "none"};
    const opt_t opts[] = {
        {"model", OPT_STR, .dst = &o->model, .required = 1},
        {"adapter", OPT_STR, .dst = &o->adapter},
        DEVICE_OPTS(o),
    };
    return opts_parse("logits", argc, argv, opts, OPTS_N(opts), logits_usage);
}

/* Read one input object's input_ids into ids (grown as needed) and its optional id into
 * *id_out (a new reference). Returns the length, or -1 with err set. */
static int parse_line(json_t *j, long lineno, int32_t **ids, size_t *cap, json_t **id_out, err_t *err) {
    const json_t *arr = json_object_get(j, "input_ids");
    int n = -1;
    if (!json_is_array(arr) || json_array_size(arr) == 0) {
        err_fmt(err, "stdin:%ld: field 'input_ids' must be a non-empty list of token ids", lineno);
        goto done;
    }
    if (json_array_size(arr) > (size_t)1 << 24) {
        err_fmt(err, "stdin:%ld: field 'input_ids' has %zu ids (too many)", lineno, json_array_size(arr));
        goto done;
    }
    if (json_array_size(arr) > *cap) {
        *cap = json_array_size(arr);
        *ids = xrealloc(*ids, *cap * sizeof **ids);
    }
    for (size_t i = 0; i < json_array_size(arr); i++) {
        const json_t *v = json_array_get(arr, i);
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > INT32_MAX) {
            err_fmt(err, "stdin:%ld: input_ids[%zu] is not a non-negative integer", lineno, i);
            goto done;
        }
        (*ids)[i] = (int32_t)json_integer_value(v);
    }
    n = (int)json_array_size(arr);
    *id_out = json_incref(json_object_get(j, "id"));
done:
    return n;
}

/* Write {"id": ..., "logits": [...]} and flush. */
static void write_logits(const json_t *id, const float *logits, int n) {
    jsonl_begin_object(stdout, id);
    fputs("\"logits\":[", stdout);
    for (int i = 0; i < n; i++) printf(i ? ",%.9g" : "%.9g", logits[i]);
    fputs("]}\n", stdout);
    fflush(stdout);
}

/* What logits_line needs across lines. */
typedef struct {
    model_t *m;                       // the loaded classifier
    int nl;                           // its labels
    int32_t *ids;                     // (cap) the current line's ids
    size_t cap;                       // ids allocated
    float logits[MODEL_MAX_LABELS];   // the current line's logits
} logits_ctx_t;

/* jsonl_fn_t of `logits`: one line's ids -> one output line. */
static int logits_line(json_t *j, long lineno, void *ctx, err_t *err) {
    logits_ctx_t *c = ctx;
    json_t *id = NULL;
    int n = parse_line(j, lineno, &c->ids, &c->cap, &id, err);
    if (n < 0) return EXIT_DATAERR;
    const int32_t *seq = c->ids;
    if (model_forward(c->m, &seq, &n, 1, c->logits, err)) {
        json_decref(id);
        err_prefix(err, "stdin:%ld", lineno);
        return err->code ? err->code : EXIT_SOFTWARE;
    }
    write_logits(id, c->logits, c->nl);
    json_decref(id);
    return EXIT_OK;
}

int cmd_logits(int argc, char **argv) {
    logits_opts_t o;
    int pr = logits_parse(argc, argv, &o);
    if (pr != -1) return pr;
    err_t err = {0};
    backend_t *be = device_open(o.device, o.dtype, !strcmp(o.quant, "int8"), o.threads, &err);
    if (!be) {
        fprintf(stderr, "lm-worker logits: %s\n", err.msg);
        return err.code ? err.code : EXIT_USAGE;
    }
    model_load_opts_t lo = {.model_dir = o.model, .adapter_dir = o.adapter, .backend = be};
    model_t *m = model_load(&lo, &err);
    if (!m) {
        fprintf(stderr, "lm-worker logits: %s\n", err.msg);
        be->ops->destroy(be);
        return err.code ? err.code : EXIT_DATAERR;
    }
    logits_ctx_t c = {.m = m, .nl = model_get_config(m)->n_labels};
    int rc = jsonl_each(stdin, "stdin", logits_line, &c, &err);
    if (rc != EXIT_OK) fprintf(stderr, "lm-worker logits: %s\n", err.msg);
    free(c.ids);
    model_free(m);
    be->ops->destroy(be);
    return rc;
}
