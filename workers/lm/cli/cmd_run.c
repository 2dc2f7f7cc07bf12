/* cmd_run.c: `lm-worker run`, the worker contract end to end (docs/lm-worker.md).
 *
 *   input CSV -> rows (csv_io) -> text and ids (rows/, on a thread pool that runs while
 *   the model loads) -> length-sorted packed batches (batcher) -> model_forward -> fp64 softmax
 *   -> output CSV in input order, written atomically.
 *
 * Exit codes follow common/exit_codes.h: 0 ok, 64 usage, 65 bad input (CSV, JSON lists, model or
 * tokenizer files), 74 output not writable, 75 out of memory (orchestrate retries with a smaller
 * batch), 70 anything unexpected. Every error names the file, line, row id or option involved.
 *
 * It does not know about shards, variants or ensembles; orchestrate handles those around it.
 */
#include <errno.h>
#include <jansson.h>
#include <libgen.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "atomic_file.h"
#include "clock_util.h"
#include "cmds.h"
#include "csv_io.h"
#include "device.h"
#include "exit_codes.h"
#include "model/model.h"
#include "opts.h"
#include "probs.h"
#include "progress_fd.h"
#include "rows/rows.h"
#include "tokenizer/tokenizer.h"

typedef struct {
    const char *model, *adapter, *tokenizer, *input, *output; // paths; adapter, tokenizer may be NULL
    const char *partial_output;  // --partial-output: finished batches' rows as they go, or NULL
    const char *device, *dtype, *quant, *template_name, *truncation; // option values as given
    int threads, max_length, batch_size; // 0 threads = all cores; ids per row; rows per batch
    long batch_tokens;           // 0: batch_size * max_length
} run_opts_t;

/* Print the options of `run` and their defaults to f. */
void cmd_run_usage(FILE *f) {
    fprintf(f,
        "usage: lm-worker run --model DIR --input CSV --output CSV [options]\n"
        "\n"
        "Score every row of a competition CSV (id,prompt,response_a,response_b; other columns are\n"
        "ignored) with a *ForSequenceClassification checkpoint and write id,<labels> probabilities.\n"
        "\n"
        "  --model DIR         checkpoint directory: config.json + *.safetensors (required)\n"
        "  --adapter DIR       PEFT LoRA adapter merged into the weights (default: none)\n"
        "  --tokenizer FILE    tokenizer.json (default: DIR/tokenizer.json)\n"
        "  --input CSV         rows to score (required)\n"
        "  --output CSV        probabilities, written atomically (required)\n"
        "  --partial-output CSV  also append each finished batch's rows there, flushed, so that a\n"
        "                      stopped run keeps them (orchestrate passes it under a deadline)\n"
        "  --device D          auto | cpu | cuda (default: auto = cuda when available)\n"
        "  --dtype T           auto | fp32 | bf16 | fp16 (default: auto)\n"
        "  --quant Q           none | int8 weight quantisation, CUDA only (default: none;\n"
        "                      --int8 is a deprecated alias of --quant int8)\n"
        "  --threads N         CPU threads for tokenising and the CPU backend, 0 = all cores (default: 0)\n"
        "  --max-length N      ids per row, special tokens included (default: 2048)\n"
        "  --batch-size N      most rows in one batch (default: 16)\n"
        "  --batch-tokens N    most ids in one packed batch (default: batch-size * max-length)\n"
        "  --template T        plain | gemma-chat | turns | FILE.json (default: plain)\n"
        "  --truncation P      balanced | keep_end | tail (default: balanced)\n"
        "  -h, --help          this text\n"
        "\n"
        "Exit codes: 0 ok, 64 usage, 65 bad input, 70 internal error, 74 cannot write output,\n"
        "75 out of memory.\n"
        "With ORCHESTRATE_PROGRESS_FD set, writes \"progress <done> <total>\" lines there.\n");
}

/* Parse argv into o. Returns -1 to continue, or an exit status (0 after --help). */
static int run_parse(int argc, char **argv, run_opts_t *o) {
    *o = (run_opts_t){.device = "auto", .dtype = "auto", .quant = "none", .template_name = "plain",
                      .truncation = "balanced", .threads = 0, .max_length = 2048, .batch_size = 16};
    const opt_t opts[] = {
        {"model", OPT_STR, .dst = &o->model, .required = 1},
        {"adapter", OPT_STR, .dst = &o->adapter},
        {"tokenizer", OPT_STR, .dst = &o->tokenizer},
        {"input", OPT_STR, .dst = &o->input, .required = 1},
        {"output", OPT_STR, .dst = &o->output, .required = 1},
        {"partial-output", OPT_STR, .dst = &o->partial_output},
        DEVICE_OPTS(o),
        {"max-length", OPT_INT, .dst = &o->max_length, .lo = 1, .hi = 1 << 24},
        {"batch-size", OPT_INT, .dst = &o->batch_size, .lo = 1, .hi = 1 << 20},
        {"batch-tokens", OPT_LONG, .dst = &o->batch_tokens, .lo = 1, .hi = 1L << 40},
        {"template", OPT_STR, .dst = &o->template_name},
        {"truncation", OPT_STR, .dst = &o->truncation},
    };
    int rc = opts_parse("run", argc, argv, opts, OPTS_N(opts), cmd_run_usage);
    if (rc != -1) return rc;
    if (o->batch_tokens == 0) o->batch_tokens = (long)o->batch_size * o->max_length;
    if (o->batch_tokens < o->max_length) {
        fprintf(stderr, "lm-worker run: --batch-tokens %ld is below --max-length %d: a long row could "
                "not fit in any batch\n", o->batch_tokens, o->max_length);
        cmd_run_usage(stderr);
        return EXIT_USAGE;
    }
    return -1;
}

/* Everything a run owns, so that one cleanup path frees it whatever failed. */
typedef struct {
    run_opts_t o;      // the parsed command line
    csv_table_t table; // the input CSV
    row_cols_t cols;   // where its required columns are
    tokenizer_t *tok;           // the loaded tokenizer
    template_t tmpl;            // the text template
    encoder_t *enc;             // template + tokenizer + truncation
    unsigned char *truncated;   // (n_rows) 1 when encoder_encode cut the row
    batch_encoder_t *pool;      // threads encoding rows ahead of the model
    ids_t *ids;                 // (n_rows) encoded rows
    backend_t *backend;         // CPU or CUDA backend
    model_t *model;             // the loaded classifier
    double *probs;              // (n_rows, n_labels) in input order
    probs_partial_t partial;    // --partial-output, open while the batches run (f NULL otherwise)
} run_t;

/* batch_encode_fn: decode and encode one input row. */
static int encode_row(void *ctx, size_t row, ids_t *out, err_t *err) {
    run_t *r = ctx;
    row_parts_t parts;
    if (rows_decode_row(&r->table, &r->cols, row, r->o.input, &parts, err) < 0) return -1;
    encode_info_t info;
    int rc = encoder_encode(r->enc, &parts, out, &info, err);
    row_parts_free(&parts);
    if (rc < 0) {
        err_prefix(err, "%s: line %zu: id %.64s", r->o.input, r->table.lines[row],
                   csv_cell(&r->table, row, (size_t)r->cols.id));
        err->code = EXIT_DATAERR;
        return -1;
    }
    r->truncated[row] = (unsigned char)info.truncated;
    return 0;
}

/* Check that the output's directory exists and is writable, so that a long run does not fail
 * at its very end. Returns 0, or -1 with err set. */
static int check_output_dir(const char *path, err_t *err) {
    char *copy = xstrdup(path);
    const char *dir = dirname(copy);
    int ok = access(dir, W_OK | X_OK) == 0;
    int rc = ok ? 0 : err_code(err, EXIT_IOERR, "--output %s: directory %s is not writable: %s", path,
                               dir, strerror(errno));
    free(copy);
    return rc;
}

/* Write id,<labels> for every row, in input order, atomically to --output. Returns 0, or -1 with
 * err set (EXIT_IOERR when the file cannot be written). */
static int write_output(run_t *r, const model_config_t *cfg, err_t *err) {
    if (probs_csv_write(r->o.output, (const char *const *)cfg->labels, (size_t)cfg->n_labels, &r->table,
                        (size_t)r->cols.id, r->probs, err) < 0) {
        err->code = EXIT_IOERR;
        return -1;
    }
    return 0;
}

/* Run every batch of the plan through the model; fill r->probs. Returns 0, or -1 with err. */
static int run_batches(run_t *r, const batch_plan_t *plan, const model_config_t *cfg,
                       progress_t *prog, err_t *err) {
    size_t L = (size_t)cfg->n_labels, max_b = 1;
    for (size_t b = 0; b < plan->n_batches; b++)
        if (plan->start[b + 1] - plan->start[b] > max_b) max_b = plan->start[b + 1] - plan->start[b];
    const int32_t **ids = xmalloc(max_b * sizeof *ids);
    int *lens = xmalloc(max_b * sizeof *lens);
    float *logits = xmalloc(max_b * L * sizeof *logits);
    int rc = 0;
    for (size_t b = 0; b < plan->n_batches && rc == 0; b++) {
        size_t k0 = plan->start[b], B = plan->start[b + 1] - k0;
        for (size_t k = 0; k < B; k++) {
            const ids_t *v = &r->ids[plan->order[k0 + k]];
            ids[k] = v->data;
            lens[k] = (int)v->n;
        }
        if (model_forward(r->model, ids, lens, (int)B, logits, err) < 0) {
            err_prefix(err, "batch %zu of %zu (%zu rows, longest %d ids)", b + 1, plan->n_batches, B, lens[0]);
            if (!err->code) err->code = EXIT_SOFTWARE;
            rc = -1;
            break;
        }
        for (size_t k = 0; k < B && rc == 0; k++) {
            size_t row = plan->order[k0 + k];
            if (probs_softmax(logits + k * L, L, r->probs + row * L) < 0) {
                // In fp32 with finite weights (model_load checks them) this is the model files'
                // doing, and every run repeats it: bad input, not retried. In bf16/fp16 it may
                // be the reduced range.
                int fp32 = r->backend->compute == DT_F32;
                rc = err_code(err, fp32 ? EXIT_DATAERR : EXIT_SOFTWARE,
                              "%s: line %zu: id %.64s: the model produced non-finite logits%s", r->o.input,
                              r->table.lines[row], csv_cell(&r->table, row, (size_t)r->cols.id),
                              fp32 ? " in fp32: its activations overflow; check the model files (and an "
                                     "adapter's lora_alpha)"
                                   : " (try --dtype fp32)");
            }
        }
        // The batch's rows go to the partial output before progress counts them as done.
        if (rc == 0 && r->partial.f &&
            probs_partial_append(&r->partial, &r->table, (size_t)r->cols.id, plan->order + k0, B, r->probs, err) < 0) {
            err->code = EXIT_IOERR;
            rc = -1;
        }
        progress_report(prog, k0 + B, plan->n_rows);
    }
    free(ids);
    free(lens);
    free(logits);
    return rc;
}

/* Free everything r holds, stopping the tokenising pool first; safe after any failure. */
static void run_free(run_t *r) {
    batch_encoder_cancel(r->pool);
    if (r->ids)
        for (size_t i = 0; i < r->table.n_rows; i++) ids_free(&r->ids[i]);
    free(r->ids);
    if (r->model) model_free(r->model);
    if (r->backend) r->backend->ops->destroy(r->backend);
    encoder_free(r->enc);
    template_free(&r->tmpl);
    if (r->tok) tokenizer_free(r->tok);
    probs_partial_close(&r->partial);
    csv_table_free(&r->table);
    free(r->truncated);
    free(r->probs);
}

/* The body of cmd_run after option parsing. Returns an exit status; prints the error. */
static int run_main(run_t *r) {
    err_t err = {0};
    run_opts_t *o = &r->o;
    double t0 = clock_mono_s();
    char tok_path[4096];
    progress_t prog;
    progress_init_env(&prog);
    trunc_policy_t policy;
    if (trunc_policy_parse(o->truncation, &policy, &err) < 0) goto fail;
    if (check_output_dir(o->output, &err) < 0) goto fail;
    struct stat st;
    if (stat(o->model, &st) != 0) {
        err_code(&err, EXIT_DATAERR, "--model %s: %s", o->model, strerror(errno));
        goto fail;
    }
    if (!S_ISDIR(st.st_mode)) {
        err_code(&err, EXIT_DATAERR, "--model %s: not a directory", o->model);
        goto fail;
    }
    if (csv_table_read(&r->table, o->input, &err) < 0) {
        err.code = EXIT_DATAERR;
        goto fail;
    }
    if (rows_find_cols(&r->table, o->input, &r->cols, &err) < 0) goto fail;
    if (template_load(&r->tmpl, o->template_name, &err) < 0) goto fail;
    if (o->tokenizer) snprintf(tok_path, sizeof tok_path, "%s", o->tokenizer);
    else snprintf(tok_path, sizeof tok_path, "%s/tokenizer.json", o->model);
    if (!(r->tok = tokenizer_load(tok_path, &err))) {
        err.code = EXIT_DATAERR;
        goto fail;
    }
    tokenizer_no_truncation_padding(r->tok);  // as transformers: our policy sets the lengths
    if (!(r->enc = encoder_create(&r->tmpl, r->tok, policy, o->max_length, &err))) goto fail;

    // Tokenise every row on a pool while the model loads: sorting by length needs every length,
    // and the load (disk-bound for real checkpoints) hides the tokenising time.
    size_t n = r->table.n_rows;
    r->truncated = xcalloc(n ? n : 1, 1);
    json_object_seed(0); // jansson seeds its hash on first use; do it before the threads start
    double t_tok = 0;
    r->pool = batch_encoder_start(n, o->threads, encode_row, r);

    double t_load = clock_mono_s();
    if (!(r->backend = device_open(o->device, o->dtype, strcmp(o->quant, "int8") == 0, o->threads, &err)))
        goto fail;
    model_load_opts_t lo = {.model_dir = o->model, .adapter_dir = o->adapter, .backend = r->backend};
    if (!(r->model = model_load(&lo, &err))) {
        if (!err.code) err.code = EXIT_DATAERR;
        goto fail;
    }
    t_load = clock_mono_s() - t_load;
    const model_config_t *cfg = model_get_config(r->model);

    if (cfg->n_labels < 1) {
        err_code(&err, EXIT_DATAERR, "%s/config.json: the model has no labels (id2label)", o->model);
        goto fail;
    }

    // Whatever tokenising is left after the load is time the device waits; report it.
    double t_wait = clock_mono_s();
    batch_encoder_t *pool = r->pool;
    r->pool = NULL;
    if (batch_encoder_wait(pool, &r->ids, &t_tok, &err) < 0) goto fail;
    t_wait = clock_mono_s() - t_wait;
    size_t *lens = xmalloc((n ? n : 1) * sizeof *lens), total_ids = 0, n_trunc = 0;
    for (size_t i = 0; i < n; i++) {
        lens[i] = r->ids[i].n;
        total_ids += lens[i];
        n_trunc += r->truncated[i];
        for (size_t k = 0; k < lens[i]; k++) {
            if (r->ids[i].data[k] >= 0 && r->ids[i].data[k] < cfg->vocab_size) continue;
            err_code(&err, EXIT_DATAERR, "%s: line %zu: id %.64s: token id %d is outside the model's "
                     "vocabulary of %d; is %s the tokenizer this model was trained with?", o->input,
                     r->table.lines[i], csv_cell(&r->table, i, (size_t)r->cols.id), r->ids[i].data[k],
                     cfg->vocab_size, tok_path);
            free(lens);
            goto fail;
        }
        if (lens[i] == 0) { // only possible with a template without fixed text and no <bos>
            err_code(&err, EXIT_DATAERR, "%s: line %zu: id %.64s: the row encodes to no tokens; "
                     "use a template with fixed text", o->input, r->table.lines[i],
                     csv_cell(&r->table, i, (size_t)r->cols.id));
            free(lens);
            goto fail;
        }
    }
    batch_plan_t plan;
    if (batch_plan_build(&plan, lens, n, o->batch_size, (size_t)o->batch_tokens, &err) < 0) {
        free(lens);
        goto fail;
    }
    free(lens);

    r->probs = xmalloc((n ? n : 1) * (size_t)cfg->n_labels * sizeof *r->probs);
    if (o->partial_output &&
        probs_partial_open(&r->partial, o->partial_output, (const char *const *)cfg->labels, (size_t)cfg->n_labels,
                           &err) < 0) {
        err.code = EXIT_IOERR;
        batch_plan_free(&plan);
        goto fail;
    }
    double t_fwd = clock_mono_s();
    int rc = run_batches(r, &plan, cfg, &prog, &err);
    t_fwd = clock_mono_s() - t_fwd;
    size_t n_batches = plan.n_batches;
    batch_plan_free(&plan);
    if (rc < 0 || write_output(r, cfg, &err) < 0) goto fail;

    fprintf(stderr,
            "lm-worker run: %zu rows (%zu truncated at %d), %zu ids in %zu batches; tokenise %.2f s "
            "(waited %.2f s for it after the load), load %.2f s, forward %.2f s = %.0f ids/s; %s %s, "
            "peak %.1f MiB; total %.2f s\n",
            n, n_trunc, o->max_length, total_ids, n_batches, t_tok, t_wait, t_load, t_fwd,
            t_fwd > 0 ? (double)total_ids / t_fwd : 0.0, r->backend->ops->name, cfg->model_type,
            (double)r->backend->peak_bytes / (1024.0 * 1024.0), clock_mono_s() - t0);
    return EXIT_OK;
fail:
    fprintf(stderr, "lm-worker run: error: %s\n", err.msg);
    if (err.code == EXIT_OOM)
        fprintf(stderr, "lm-worker run: hint: lower --batch-tokens or --batch-size, or use --quant int8\n");
    return err.code ? err.code : EXIT_SOFTWARE;
}

int cmd_run(int argc, char **argv) {
    run_t r;
    memset(&r, 0, sizeof r);
    int st = run_parse(argc, argv, &r.o);
    if (st >= 0) return st;
    st = run_main(&r);
    run_free(&r);
    return st;
}
