/* cmd_check.c: `lm-worker check`, everything `run` would fail on, found in a second.
 *
 * It takes `run`'s options and checks what a run would load, without loading weights: the model
 * directory, config.json (labels included), the safetensors headers (mmapped, no tensor data
 * read), the tokenizer, the adapter's adapter_config.json and headers, the template and
 * truncation policy against --max-length (the template's own ids must leave room for text), the
 * input's columns when --input is given, and the device `run` would open (a backend without
 * weights); without --model, only the device. It prints one JSON line on stdout: what it found
 * ({"ok":true, ...}), or {"ok":false,"option":"--max-length","error":"..."} naming the option at
 * fault, which is how orchestrate's preflight names the plan key. The error also goes to stderr.
 *
 * Exit codes (common/exit_codes.h): 0 ok, 64 bad command line, 65 a file or a setting that cannot
 * work (missing tokenizer, template too long for --max-length, ...), and the device's own code
 * when --device cuda cannot be opened. It deliberately does not validate tensor shapes or the
 * adapter's targets (loading does that) and never writes --output.
 */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "backend/backend.h"
#include "cmds.h"
#include "csv_io.h"
#include "device.h"
#include "exit_codes.h"
#include "model/model.h"
#include "opts.h"
#include "rows/rows.h"
#include "tokenizer/tokenizer.h"

typedef struct {
    const char *model, *adapter, *tokenizer, *input;            // paths; NULL when not given
    const char *device, *dtype, *quant, *template_name, *truncation; // option values as given
    int threads, max_length;     // 0 threads = all cores; ids per row
} check_opts_t;

/* Print `lm-worker check`'s options and their defaults to f. */
static void check_usage(FILE *f) {
    fprintf(f,
        "usage: lm-worker check [--model DIR] [run's options]\n"
        "\n"
        "Check, without loading weights, what `lm-worker run` with the same options would load:\n"
        "config.json, the safetensors headers, the tokenizer, the adapter, the template against\n"
        "--max-length, the input's columns (with --input) and the device. Prints one JSON line.\n"
        "Without --model only the device is checked (`orchestrate doctor` does that).\n"
        "\n"
        "  --model DIR         checkpoint directory: config.json + *.safetensors\n"
        "  --adapter DIR       PEFT LoRA adapter: adapter_config.json + adapter_model.safetensors\n"
        "  --tokenizer FILE    tokenizer.json (default: DIR/tokenizer.json)\n"
        "  --input CSV         when given, must have the columns id, prompt, response_a, response_b\n"
        DEVICE_OPTS_HELP
        "  --max-length N      ids per row, special tokens included (default: 2048)\n"
        "  --template T        plain | gemma-chat | turns | FILE.json (default: plain)\n"
        "  --truncation P      balanced | keep_end | tail (default: balanced)\n"
        "  --output, --batch-size, --batch-tokens  accepted as `run` takes them; not used\n"
        "  -h, --help          this text\n"
        "\n"
        "Exit codes: 0 ok, 64 usage, 65 a file or setting that cannot work; --device cuda that\n"
        "cannot be opened exits with the device's code.\n");
}

/* Parse argv into o. Returns -1 to continue, or an exit status (0 after --help). run's
 * --output, --batch-size and --batch-tokens are accepted and checked as run checks them, so the
 * same command line works for both; they are not used. */
static int check_parse(int argc, char **argv, check_opts_t *o) {
    *o = (check_opts_t){.device = "auto", .dtype = "auto", .quant = "none", .template_name = "plain",
                        .truncation = "balanced", .max_length = 2048};
    const char *output = NULL;
    int batch_size = 0;
    long batch_tokens = 0;
    const opt_t opts[] = {
        {"model", OPT_STR, .dst = &o->model},
        {"adapter", OPT_STR, .dst = &o->adapter},
        {"tokenizer", OPT_STR, .dst = &o->tokenizer},
        {"input", OPT_STR, .dst = &o->input},
        {"output", OPT_STR, .dst = &output},
        DEVICE_OPTS(o),
        {"max-length", OPT_INT, .dst = &o->max_length, .lo = 1, .hi = 1 << 24},
        {"batch-size", OPT_INT, .dst = &batch_size, .lo = 1, .hi = 1 << 20},
        {"batch-tokens", OPT_LONG, .dst = &batch_tokens, .lo = 1, .hi = 1L << 40},
        {"template", OPT_STR, .dst = &o->template_name},
        {"truncation", OPT_STR, .dst = &o->truncation},
    };
    return opts_parse("check", argc, argv, opts, OPTS_N(opts), check_usage);
}

/* Everything a check holds, freed by check_free whatever failed. */
typedef struct {
    check_opts_t o;              // the parsed command line
    model_config_t cfg;          // config.json (valid when have_cfg)
    int have_cfg;                // cfg was loaded
    tokenizer_t *tok;            // the tokenizer
    template_t tmpl;             // the template
    encoder_t *enc;              // template + tokenizer + truncation, for the fixed-id count
    csv_table_t input;           // --input, when given
    backend_t *backend;          // the device run would use (no weights)
    json_t *out;                 // the JSON line being built
} check_t;

/* Free everything c holds. */
static void check_free(check_t *c) {
    if (c->backend) c->backend->ops->destroy(c->backend);
    encoder_free(c->enc);
    template_free(&c->tmpl);
    if (c->tok) tokenizer_free(c->tok);
    if (c->have_cfg) model_config_free(&c->cfg);
    csv_table_free(&c->input);
    json_decref(c->out);
}

/* Record a failure of `option` in c->out with err's message and code (EXIT_DATAERR when err
 * has none). Returns the exit code. */
static int check_fail(check_t *c, const char *option, err_t *err, int code) {
    if (err->code) code = err->code;
    json_object_set_new(c->out, "ok", json_false());
    json_object_set_new(c->out, "option", json_string(option));
    json_object_set_new(c->out, "error", json_string(err->msg));
    json_object_set_new(c->out, "exit", json_integer(code));
    fprintf(stderr, "lm-worker check: error: %s\n", err->msg);
    return code;
}

/* The model side: directory, config.json, safetensors headers, adapter. Returns 0 or an exit
 * code (c->out holds the failure). */
static int check_model(check_t *c) {
    err_t err = {0};
    check_opts_t *o = &c->o;
    json_t *out = c->out;
    struct stat st;
    if (stat(o->model, &st) != 0) err_fmt(&err, "--model %s: %s", o->model, strerror(errno));
    else if (!S_ISDIR(st.st_mode)) err_fmt(&err, "--model %s: not a directory", o->model);
    if (err.msg[0]) return check_fail(c, "--model", &err, EXIT_DATAERR);
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", o->model);
    if (model_config_load(&c->cfg, path, &err) < 0) return check_fail(c, "--model", &err, EXIT_DATAERR);
    c->have_cfg = 1;
    if (c->cfg.n_labels < 1) {
        err_fmt(&err, "%s: the model has no labels (id2label)", path);
        return check_fail(c, "--model", &err, EXIT_DATAERR);
    }
    model_files_t files;
    int adapter_at_fault;
    if (model_files_check(o->model, o->adapter, &files, &adapter_at_fault, &err) < 0)
        return check_fail(c, adapter_at_fault ? "--adapter" : "--model", &err, EXIT_DATAERR);
    json_object_set_new(out, "model", json_string(o->model));
    json_object_set_new(out, "model_type", json_string(c->cfg.model_type));
    json_object_set_new(out, "layers", json_integer(c->cfg.n_layers));
    json_object_set_new(out, "hidden", json_integer(c->cfg.dim));
    json_object_set_new(out, "vocab_size", json_integer(c->cfg.vocab_size));
    json_t *labels = json_array();
    for (int i = 0; i < c->cfg.n_labels; i++) json_array_append_new(labels, json_string(c->cfg.labels[i]));
    json_object_set_new(out, "labels", labels);
    json_object_set_new(out, "tensors", json_integer(files.n_tensors));
    if (!o->adapter) return 0;
    json_t *ad = json_object();
    json_object_set_new(ad, "dir", json_string(o->adapter));
    json_object_set_new(ad, "r", json_integer(files.adapter_r));
    json_object_set_new(ad, "alpha", json_real(files.adapter_alpha));
    json_object_set_new(ad, "tensors", json_integer(files.adapter_tensors));
    json_object_set_new(out, "adapter", ad);
    return 0;
}

/* The text side: tokenizer, template, truncation and --max-length, and --input's columns.
 * Returns 0 or an exit code (c->out holds the failure). */
static int check_text(check_t *c) {
    err_t err = {0};
    check_opts_t *o = &c->o;
    char tok_path[4096];
    if (o->tokenizer) snprintf(tok_path, sizeof tok_path, "%s", o->tokenizer);
    else snprintf(tok_path, sizeof tok_path, "%s/tokenizer.json", o->model);
    struct stat st;
    if (stat(tok_path, &st) != 0) {
        if (o->tokenizer) err_fmt(&err, "--tokenizer %s: %s", tok_path, strerror(errno));
        else err_fmt(&err, "%s: %s: the model directory has no tokenizer.json; give the tokenizer "
                     "with --tokenizer FILE", tok_path, strerror(errno));
        return check_fail(c, "--tokenizer", &err, EXIT_DATAERR);
    }
    if (!(c->tok = tokenizer_load(tok_path, &err))) return check_fail(c, "--tokenizer", &err, EXIT_DATAERR);
    tokenizer_no_truncation_padding(c->tok);  // as run does: our policy sets the lengths
    json_object_set_new(c->out, "tokenizer", json_string(tok_path));
    json_object_set_new(c->out, "tokenizer_vocab", json_integer((json_int_t)tokenizer_vocab_size(c->tok)));
    trunc_policy_t policy;
    if (trunc_policy_parse(o->truncation, &policy, &err) < 0) return check_fail(c, "--truncation", &err, EXIT_USAGE);
    if (template_load(&c->tmpl, o->template_name, &err) < 0) return check_fail(c, "--template", &err, EXIT_DATAERR);
    // A template that leaves no room for text within --max-length is a setting that cannot work
    // (65, like a bad file), whichever of the two the user changes.
    if (!(c->enc = encoder_create(&c->tmpl, c->tok, policy, o->max_length, &err))) {
        err.code = 0;
        return check_fail(c, "--max-length", &err, EXIT_DATAERR);
    }
    size_t fixed = encoder_fixed_ids(c->enc);
    json_object_set_new(c->out, "template", json_string(c->tmpl.name));
    json_object_set_new(c->out, "truncation", json_string(trunc_policy_name(policy)));
    json_object_set_new(c->out, "max_length", json_integer(o->max_length));
    json_object_set_new(c->out, "template_ids", json_integer((json_int_t)fixed));
    json_object_set_new(c->out, "text_ids", json_integer((json_int_t)o->max_length - (json_int_t)fixed));
    if (!o->input) return 0;
    row_cols_t cols;
    if (csv_table_read(&c->input, o->input, &err) < 0 || rows_find_cols(&c->input, o->input, &cols, &err) < 0)
        return check_fail(c, "--input", &err, EXIT_DATAERR);
    json_object_set_new(c->out, "input_rows", json_integer((json_int_t)c->input.n_rows));
    return 0;
}

/* The device run would open, without weights. Returns 0 or an exit code. */
static int check_device(check_t *c) {
    err_t err = {0};
    check_opts_t *o = &c->o;
    c->backend = device_open(o->device, o->dtype, strcmp(o->quant, "int8") == 0, o->threads, &err);
    if (!c->backend) return check_fail(c, "--device", &err, EXIT_USAGE);
    const char *name = c->backend->ops->name;
    json_object_set_new(c->out, "device_requested", json_string(o->device));
    json_object_set_new(c->out, "device", json_string(name));
    // "auto" that ended on the CPU printed its reason as a "note:" line on stderr (device.c).
    json_object_set_new(c->out, "fallback", json_boolean(strcmp(o->device, "auto") == 0 && strcmp(name, "cpu") == 0));
    if (strcmp(o->device, "cpu") != 0) { // what CUDA would be, or why not (doctor prints it)
        char cuda[1024];
        backend_cuda_describe(cuda, sizeof cuda);
        json_object_set_new(c->out, "cuda", json_string(cuda));
    }
    return 0;
}

int cmd_check(int argc, char **argv) {
    check_t c;
    memset(&c, 0, sizeof c);
    int rc = check_parse(argc, argv, &c.o);
    if (rc >= 0) return rc;
    c.out = json_object();
    json_object_set_new(c.out, "ok", json_true());  // replaced by false on a failure
    rc = c.o.model ? check_model(&c) : 0;
    if (rc == 0 && c.o.model) rc = check_text(&c);
    if (rc == 0) rc = check_device(&c);
    char *line = json_dumps(c.out, JSON_COMPACT | JSON_PRESERVE_ORDER);
    printf("%s\n", line);
    free(line);
    fflush(stdout);
    check_free(&c);
    return rc;
}
