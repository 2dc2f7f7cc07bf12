/* cmd_bench.c: `lm-worker bench`, a hidden developer command with two jobs that tools/gpu-check.sh
 * needs from the real forward pass:
 *
 *   timing:  --batch B --len L: B random sequences of L tokens as one packed batch, `--warmup`
 *            untimed then `--iters` timed forwards; one JSON line with tokens/s, ms per batch,
 *            load time, weight upload GB/s and the backend's peak memory; with --ops, then a
 *            table of the time each op class took (backend/op_timer.c) and its JSON line.
 *   golden:  --golden golden.json: every sequence of a transformers golden file, first packed
 *            into one varlen batch and then one at a time, compared with the reference logits
 *            (|got - ref| <= logit_tol * (1 + |ref|)) and probabilities (|got - ref| <= prob_tol).
 *            Prints each mismatch and exits 1 when there is one.
 *   trace:   --ids FILE --trace OUT: instead of timing, the --ids sequences as one packed batch
 *            through model_forward_trace; OUT gets each sequence's pooled hidden state after the
 *            embedding, after every layer and after the final norm, as one JSON object (gpu-check
 *            compares an fp32 and a bf16 run layer by layer).
 *
 * Timing excludes tokenisation and CSV work on purpose: it measures the model. It deliberately
 * has no statistics beyond the mean of the timed iterations (gpu-check runs it once per shape).
 */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "atomic_file.h"
#include "clock_util.h"
#include "cmds.h"
#include "device.h"
#include "exit_codes.h"
#include "json_util.h"
#include "jsonl.h"
#include "model/model.h"
#include "opts.h"
#include "probs.h"

#define BENCH_MAX_SHAPES 16

typedef struct {
    const char *model, *adapter, *device, *dtype, *quant, *golden, *ids; // the options of the same names (NULL: unset)
    const char *trace;           // --trace OUT: write the --ids sequences' per-layer hidden states, no timing
    const char *round_weights;   // --round-weights bf16|fp16|int8 (CPU only), or NULL
    int int8, threads, iters, warmup;                             // --quant int8 (0/1), --threads, --iters, --warmup
    int ops;                                                      // --ops: per-op table after each shape
    int n_shapes, batch[BENCH_MAX_SHAPES], len[BENCH_MAX_SHAPES]; // timing shapes (B x L)
    double logit_tol, prob_tol; // < 0: the default for the dtype
} bench_opts_t;

/* Print `lm-worker bench`'s options and their defaults to f. */
static void bench_usage(FILE *f) {
    fprintf(f,
            "usage: lm-worker bench --model DIR [options]            (developer tool; see tools/gpu-check.sh)\n"
            "  --model DIR        checkpoint directory; required\n"
            "  --adapter DIR      PEFT LoRA adapter to merge (default: none)\n"
            DEVICE_OPTS_HELP
            "  --shapes BxL,...   timing: batch shapes, each B sequences of L tokens (default: 8x1024)\n"
            "  --iters N          timing: timed forwards (default: 5)\n"
            "  --warmup N         timing: untimed forwards first (default: 1)\n"
            "  --ops              timing: also time each op class (embed, rmsnorm, matmul, ...) and print a\n"
            "                     table and a {\"mode\": \"ops\"} JSON line after each shape's line\n"
            "  --ids FILE         after timing, run the {\"input_ids\": [...]} lines of FILE as one packed batch and\n"
            "                     print their logits as one JSON line (tools/gpu-check.sh compares them)\n"
            "  --trace OUT        with --ids, instead of timing: write each sequence's pooled hidden state after the\n"
            "                     embedding, every layer and the final norm to OUT (JSON; n_layers + 2 rows each)\n"
            "  --golden FILE      check against a golden.json instead of timing\n"
            "  --logit-tol X      golden: |got-ref| <= X*(1+|ref|) (default: 1e-4 in fp32, off otherwise)\n"
            "  --prob-tol X       golden: |got-ref| <= X on probabilities (default: fp32 1e-4, bf16/fp16 5e-3,\n"
            "                     int8 2e-2)\n"
            "  --round-weights M  CPU only: hold the weights as the GPU stores them (bf16, fp16 or int8), fp32\n"
            "                     arithmetic; golden then shows the error the weights alone cause\n"
            "  -h, --help         this text\n");
}

/* Parse "8x1024,4x2048" into o's shapes. Returns 0, or -1 after printing why. */
static int parse_shapes(const char *v, bench_opts_t *o) {
    o->n_shapes = 0;
    for (const char *p = v; *p;) {
        char *end;
        long b = strtol(p, &end, 10), l = -1;
        if (end != p && *end == 'x') {
            const char *q = end + 1;
            l = strtol(q, &end, 10);
            if (end == q) l = -1;
        }
        if (b < 1 || l < 1 || b > 65536 || l > (1L << 20) || (*end && *end != ',') || o->n_shapes == BENCH_MAX_SHAPES) {
            fprintf(stderr, "lm-worker bench: --shapes '%s': expected up to %d BxL pairs like 8x1024,4x2048\n", v,
                    BENCH_MAX_SHAPES);
            return -1;
        }
        o->batch[o->n_shapes] = (int)b;
        o->len[o->n_shapes++] = (int)l;
        p = *end ? end + 1 : end;
    }
    return o->n_shapes ? 0 : -1;
}

/* OPT_FN parser of --shapes into the bench_opts_t dst. */
static int shapes_opt(const char *v, void *dst) {
    return parse_shapes(v, dst);
}

/* Parse argv (argv[0] is "bench"). Returns -1 to continue, or an exit status (0 after --help). */
static int bench_parse(int argc, char **argv, bench_opts_t *o) {
    *o = (bench_opts_t){.device = "auto", .dtype = "auto", .quant = "none", .iters = 5, .warmup = 1,
                        .logit_tol = -1, .prob_tol = -1, .n_shapes = 1, .batch = {8}, .len = {1024}};
    const opt_t opts[] = {
        {"model", OPT_STR, .dst = &o->model, .required = 1},
        {"adapter", OPT_STR, .dst = &o->adapter},
        DEVICE_OPTS(o),
        {"shapes", OPT_FN, .dst = o, .fn = shapes_opt},
        {"iters", OPT_INT, .dst = &o->iters, .lo = 1, .hi = 1 << 24},
        {"warmup", OPT_INT, .dst = &o->warmup, .lo = 0, .hi = 1 << 24},
        {"ids", OPT_STR, .dst = &o->ids},
        {"trace", OPT_STR, .dst = &o->trace},
        {"ops", OPT_FLAG, .dst = &o->ops},
        {"golden", OPT_STR, .dst = &o->golden},
        {"logit-tol", OPT_NUM, .dst = &o->logit_tol, .lo = 0},
        {"prob-tol", OPT_NUM, .dst = &o->prob_tol, .lo = 0},
        {"round-weights", OPT_CHOICE, .dst = &o->round_weights, .choices = "bf16|fp16|int8"},
    };
    int rc = opts_parse("bench", argc, argv, opts, OPTS_N(opts), bench_usage);
    o->int8 = !strcmp(o->quant, "int8");
    if (rc == -1 && o->ops && o->golden) {
        fprintf(stderr, "lm-worker bench: --ops times the --shapes forwards; it does not go with --golden\n");
        bench_usage(stderr);
        return EXIT_USAGE;
    }
    if (rc == -1 && o->trace && (!o->ids || o->golden || o->ops)) {
        fprintf(stderr, "lm-worker bench: --trace needs --ids (the sequences to trace) and goes with neither "
                        "--golden nor --ops\n");
        bench_usage(stderr);
        return EXIT_USAGE;
    }
    return rc;
}

/* --ops: the per-op table of the timed forwards of one shape (B x L), then the same as one
 * {"mode": "ops"} JSON line. Rows are op classes in backend_ops_t's order, then "(between ops)"
 * (the forwards' span not inside any op: launch gaps, host work) and "forward" (their sum). */
static void bench_ops_print(backend_t *be, const bench_opts_t *o, int B, int L) {
    op_stat_t st[32];
    op_span_t sp;
    int n = op_timer_stats(be, st, 32, &sp);
    double f = sp.forwards > 0 ? sp.forwards : 1, sum_ms = 0.0, flops = 0.0, bytes = 0.0;
    long calls = 0;
    for (int i = 0; i < n; i++) sum_ms += st[i].ms, calls += st[i].calls, flops += st[i].flops, bytes += st[i].bytes;
    double between = sp.ms - sum_ms;
    printf("ops %dx%d, %s %s%s, %d forwards, timed by %s:\n", B, L, be->ops->name, dtype_name(be->compute),
           o->int8 ? "+int8" : "", sp.forwards,
           sp.wall ? "the host clock around each op and its wait (LM_SYNC_EVERY_OP)"
                   : !strcmp(be->ops->name, "cuda") ? "CUDA events" : "the host clock");
    printf("%-14s %8s %12s %12s %10s %9s %9s\n", "op", "calls", "total ms", "ms/forward", "% forward", "TFLOP/s",
           "GB/s");
    json_t *rows = json_array();
    for (int i = 0; i <= n + 1; i++) {
        const char *name = i < n ? st[i].name : i == n ? "(between ops)" : "forward";
        double ms = i < n ? st[i].ms : i == n ? between : sp.ms;
        double fl = i < n ? st[i].flops : i == n ? 0.0 : flops, by = i < n ? st[i].bytes : i == n ? 0.0 : bytes;
        long c = i < n ? st[i].calls : i == n ? 0 : calls;
        double pct = sp.ms > 0 ? 100.0 * ms / sp.ms : 0.0;
        char tf[32] = "-", gb[32] = "-", cs[32] = "-";
        if (fl > 0 && ms > 0) snprintf(tf, sizeof tf, "%.2f", fl / (ms * 1e-3) / 1e12);
        if (by > 0 && ms > 0) snprintf(gb, sizeof gb, "%.1f", by / (ms * 1e-3) / 1e9);
        if (i != n) snprintf(cs, sizeof cs, "%ld", c);
        printf("%-14s %8s %12.3f %12.3f %9.1f%% %9s %9s\n", name, cs, ms, ms / f, pct, tf, gb);
        if (i < n)
            json_array_append_new(rows, json_pack("{s:s, s:I, s:f, s:f, s:f, s:f, s:f}", "op", name, "calls",
                                                  (json_int_t)c, "ms", ms, "ms_per_forward", ms / f, "pct", pct,
                                                  "flops", fl, "bytes", by));
    }
    json_t *j = json_pack("{s:s, s:s, s:s, s:s, s:b, s:i, s:i, s:i, s:s, s:f, s:f, s:o}", "mode", "ops", "model",
                          o->model, "device", be->ops->name, "dtype", dtype_name(be->compute), "int8", o->int8,
                          "batch", B, "len", L, "forwards", sp.forwards, "timing",
                          sp.wall ? "wall" : "marks", "forward_ms", sp.ms, "between_ms", between, "ops", rows);
    json_dumpf(j, stdout, JSON_COMPACT);
    fputc('\n', stdout);
    json_decref(j);
}

/* Timing of one shape: B random sequences of L ids (never the pad id, so pooling takes the last
 * token). Prints one JSON line. Returns an exit code. */
static int bench_time(model_t *m, backend_t *be, const bench_opts_t *o, int B, int L, double load_s) {
    const model_config_t *c = model_get_config(m);
    int32_t *ids = xmalloc((size_t)B * L * sizeof(int32_t));
    const int32_t **seqs = xmalloc((size_t)B * sizeof *seqs);
    int *lens = xmalloc((size_t)B * sizeof(int));
    float *logits = xmalloc((size_t)B * c->n_labels * sizeof(float));
    uint64_t st = 0x2545F4914F6CDD1Dull;
    for (size_t i = 0; i < (size_t)B * L; i++) {
        st ^= st << 13, st ^= st >> 7, st ^= st << 17;
        int32_t id = (int32_t)(st % (uint64_t)c->vocab_size);
        ids[i] = id == c->pad_token_id ? (id + 1) % c->vocab_size : id;
    }
    for (int b = 0; b < B; b++) seqs[b] = ids + (size_t)b * L, lens[b] = L;
    err_t err = {0};
    int rc = EXIT_OK;
    double t0 = 0.0;
    for (int it = 0; it < o->warmup + o->iters; it++) {
        if (it == o->warmup) {
            if (o->ops) op_timer_reset(be);
            t0 = clock_mono_s();
        }
        if (model_forward(m, seqs, lens, B, logits, &err)) {
            fprintf(stderr, "lm-worker bench: forward %dx%d: %s\n", B, L, err.msg);
            rc = err.code ? err.code : EXIT_SOFTWARE;
            break;
        }
    }
    if (rc == EXIT_OK) {
        double per = (clock_mono_s() - t0) / o->iters;
        int finite = 1;
        for (int i = 0; i < B * c->n_labels; i++) finite &= isfinite(logits[i]) != 0;
        json_t *j = json_pack("{s:s, s:s, s:s, s:s, s:b, s:i, s:i, s:i, s:f, s:f, s:f, s:f, s:I, s:b, s:{s:i, s:i, "
                              "s:i, s:i, s:i, s:i, s:i}}",
                              "mode", "bench", "model", o->model, "device", be->ops->name, "dtype",
                              dtype_name(be->compute), "int8", o->int8, "batch", B, "len", L, "iters", o->iters,
                              "load_s", load_s, "upload_gbps",
                              be->upload_seconds > 0 ? be->upload_bytes / be->upload_seconds / 1e9 : 0.0,
                              "ms_per_batch", per * 1e3, "tokens_per_s", (double)B * L / per, "peak_bytes",
                              (json_int_t)be->peak_bytes, "logits_finite", finite, "config", "dim", c->dim,
                              "hidden_dim", c->hidden_dim, "n_layers", c->n_layers, "n_heads", c->n_heads,
                              "n_kv_heads", c->n_kv_heads, "head_dim", c->head_dim, "vocab_size", c->vocab_size);
        json_dumpf(j, stdout, JSON_COMPACT);
        fputc('\n', stdout);
        json_decref(j);
        if (o->ops) bench_ops_print(be, o, B, L);
        fflush(stdout); // whole lines before anything the next forward prints on stderr
        if (!finite) {
            fprintf(stderr, "lm-worker bench: non-finite logits\n");
            rc = EXIT_SOFTWARE;
        }
    }
    free(ids), free(seqs), free(lens), free(logits);
    return rc;
}

/* The sequences ids_read collects. */
typedef struct {
    int32_t **ids;    // (B) xmalloc'd id arrays
    int *lens;        // (B) their lengths
    int B;            // sequences so far
    const char *path; // the --ids file, for errors
} ids_acc_t;

/* jsonl_fn_t of ids_read: append obj's non-empty "input_ids" array. */
static int ids_line(json_t *obj, long lineno, void *ctx, err_t *err) {
    ids_acc_t *acc = ctx;
    const json_t *a = json_object_get(obj, "input_ids");
    if (!json_is_array(a) || !json_array_size(a)) {
        err_code(err, EXIT_DATAERR, "%s:%ld: expected {\"input_ids\": [...]} (a non-empty array)", acc->path, lineno);
        return EXIT_DATAERR;
    }
    int n = (int)json_array_size(a), B = acc->B;
    acc->ids = xrealloc(acc->ids, (size_t)(B + 1) * sizeof *acc->ids);
    acc->lens = xrealloc(acc->lens, (size_t)(B + 1) * sizeof *acc->lens);
    acc->ids[B] = xmalloc((size_t)n * sizeof(int32_t));
    acc->lens[B] = n;
    for (int i = 0; i < n; i++) acc->ids[B][i] = (int32_t)json_integer_value(json_array_get(a, i));
    acc->B++;
    return EXIT_OK;
}

/* Read the {"input_ids": [...]} lines of o->ids (blank lines skipped) into *ids (B arrays, each
 * xmalloc'd) and *lens. Returns the count B, or -1 after printing why (the file and line); *ids
 * and *lens are then freed. The ids are not checked against the vocabulary (model_forward does
 * that). */
static int ids_read(const bench_opts_t *o, int32_t ***ids_out, int **lens_out) {
    FILE *f = fopen(o->ids, "r");
    if (!f) {
        fprintf(stderr, "lm-worker bench: %s: %s\n", o->ids, strerror(errno));
        return -1;
    }
    ids_acc_t acc = {.path = o->ids};
    err_t err = {0};
    int rc = jsonl_each(f, o->ids, ids_line, &acc, &err);
    fclose(f);
    if (rc != EXIT_OK) {
        fprintf(stderr, "lm-worker bench: %s\n", err.msg); // "<file>:<line>: ..."
        for (int b = 0; b < acc.B; b++) free(acc.ids[b]);
        free(acc.ids), free(acc.lens);
        return -1;
    }
    *ids_out = acc.ids, *lens_out = acc.lens;
    return acc.B;
}

/* --ids: every line of the file as one packed batch; prints {"mode": "logits", ...}. */
static int bench_ids(model_t *m, backend_t *be, const bench_opts_t *o) {
    const model_config_t *c = model_get_config(m);
    err_t err = {0};
    int32_t **ids = NULL;
    int *lens = NULL, rc = EXIT_OK;
    int B = ids_read(o, &ids, &lens);
    if (B < 0) return EXIT_DATAERR;
    float *logits = xmalloc((size_t)(B ? B : 1) * c->n_labels * sizeof(float));
    if (B > 0 && model_forward(m, (const int32_t *const *)ids, lens, B, logits, &err)) {
        fprintf(stderr, "lm-worker bench: --ids forward: %s\n", err.msg);
        rc = err.code ? err.code : EXIT_SOFTWARE;
    }
    if (rc == EXIT_OK) {
        printf("{\"mode\":\"logits\",\"model\":\"%s\",\"dtype\":\"%s\",\"int8\":%d,\"logits\":[", o->model,
               dtype_name(be->compute), o->int8);
        for (int b = 0; b < B; b++) {
            printf(b ? ",[" : "[");
            for (int l = 0; l < c->n_labels; l++) printf(l ? ",%.7g" : "%.7g", logits[(size_t)b * c->n_labels + l]);
            printf("]");
        }
        printf("]}\n");
        fflush(stdout);
    }
    for (int b = 0; b < B; b++) free(ids[b]);
    free(ids), free(lens), free(logits);
    return rc;
}

/* --trace: the --ids sequences as one packed batch through model_forward_trace, written to
 * o->trace (atomically) as {"model", "device", "dtype", "int8", "n_layers", "dim", "lens",
 * "hidden": [sequence][row][dim]}, rows as model_forward_trace documents them (n_layers + 2).
 * About 12 bytes of text per value: 4 sequences of an 8B model's 32 layers are ~7 MB. */
static int bench_trace(model_t *m, backend_t *be, const bench_opts_t *o) {
    const model_config_t *c = model_get_config(m);
    err_t err = {0};
    int32_t **ids = NULL;
    int *lens = NULL, rc = EXIT_OK;
    int B = ids_read(o, &ids, &lens);
    if (B <= 0) {
        if (B == 0) fprintf(stderr, "lm-worker bench: %s: no sequences to trace\n", o->ids);
        return EXIT_DATAERR;
    }
    size_t rows = (size_t)c->n_layers + 2;
    float *logits = xmalloc((size_t)B * c->n_labels * sizeof(float));
    float *trace = xmalloc((size_t)B * rows * c->dim * sizeof(float));
    atomic_file_t af = {0};
    if (model_forward_trace(m, (const int32_t *const *)ids, lens, B, logits, trace, &err)) {
        fprintf(stderr, "lm-worker bench: --trace forward: %s\n", err.msg);
        rc = err.code ? err.code : EXIT_SOFTWARE;
    } else if (atomic_file_open(&af, o->trace, &err)) {
        fprintf(stderr, "lm-worker bench: --trace: %s\n", err.msg);
        rc = EXIT_IOERR;
    } else {
        FILE *f = af.f;
        fprintf(f, "{\"model\":\"%s\",\"device\":\"%s\",\"dtype\":\"%s\",\"int8\":%d,\"n_layers\":%d,\"dim\":%d,\"lens\":[",
                o->model, be->ops->name, dtype_name(be->compute), o->int8, c->n_layers, c->dim);
        for (int b = 0; b < B; b++) fprintf(f, b ? ",%d" : "%d", lens[b]);
        fprintf(f, "],\"hidden\":[");
        for (int b = 0; b < B; b++) {
            fprintf(f, b ? ",[" : "[");
            for (size_t r = 0; r < rows; r++) {
                const float *h = trace + ((size_t)b * rows + r) * c->dim;
                fprintf(f, r ? ",[" : "[");
                for (int i = 0; i < c->dim; i++) fprintf(f, i ? ",%.7g" : "%.7g", (double)h[i]);
                fprintf(f, "]");
            }
            fprintf(f, "]");
        }
        fprintf(f, "]}\n");
        if (atomic_file_commit(&af, &err)) {
            fprintf(stderr, "lm-worker bench: --trace: %s\n", err.msg);
            rc = EXIT_IOERR;
        } else {
            printf("trace %s: %d sequences x %zu rows (embedding, %d layers, final norm) x %d, %s on %s\n", o->trace, B,
                   rows, c->n_layers, c->dim, dtype_name(be->compute), be->ops->name);
        }
    }
    for (int b = 0; b < B; b++) free(ids[b]);
    free(ids), free(lens), free(logits), free(trace);
    return rc;
}

/* Compare n logits (and their softmax) with the reference. Returns the number of mismatches. */
static int golden_compare(const char *what, const float *got, const json_t *ref_logits, const json_t *ref_probs, int n,
                          double logit_tol, double prob_tol, double *worst_dl, double *worst_dp) {
    double p[MODEL_MAX_LABELS];
    probs_softmax(got, (size_t)n, p);  // non-finite logits give NaN probabilities: mismatches below
    int bad = 0;
    for (int i = 0; i < n; i++) {
        double rl = json_number_value(json_array_get(ref_logits, i));
        double rp = json_number_value(json_array_get(ref_probs, i));
        double dl = fabs(got[i] - rl), dp = fabs(p[i] - rp);
        if (!(dl <= *worst_dl)) *worst_dl = dl; // NaN sticks
        if (!(dp <= *worst_dp)) *worst_dp = dp;
        int lbad = logit_tol >= 0 && !(dl <= logit_tol * (1.0 + fabs(rl)));
        int pbad = !(dp <= prob_tol);
        if (lbad || pbad) {
            printf("  MISMATCH %s label %d: logit %.7g ref %.7g (|d| %.3g), prob %.6g ref %.6g (|d| %.3g)\n", what, i,
                   (double)got[i], rl, dl, p[i], rp, dp);
            bad++;
        }
    }
    return bad;
}

/* Golden: the whole file as one packed batch, then each sequence alone. */
static int bench_golden(model_t *m, backend_t *be, const bench_opts_t *o) {
    const model_config_t *c = model_get_config(m);
    err_t err = {0};
    json_t *g = json_util_load_file(o->golden, &err);
    if (!g) {
        fprintf(stderr, "lm-worker bench: %s\n", err.msg);
        return EXIT_DATAERR;
    }
    const json_t *seqs = json_object_get(g, "sequences");
    int B = json_is_array(seqs) ? (int)json_array_size(seqs) : 0, rc = EXIT_OK;
    if (B == 0) {
        fprintf(stderr, "lm-worker bench: %s: no 'sequences' list\n", o->golden);
        json_decref(g);
        return EXIT_DATAERR;
    }
    int32_t **ids = xcalloc((size_t)B, sizeof *ids);
    int *lens = xcalloc((size_t)B, sizeof *lens);
    float *logits = xmalloc((size_t)B * c->n_labels * sizeof(float));
    for (int b = 0; b < B && rc == EXIT_OK; b++) {
        const json_t *s = json_array_get(seqs, b), *in = json_object_get(s, "input_ids");
        const json_t *rl = json_object_get(s, "logits"), *rp = json_object_get(s, "probs");
        if (!json_is_array(in) || !json_array_size(in) || json_array_size(rl) != (size_t)c->n_labels ||
            json_array_size(rp) != (size_t)c->n_labels) {
            fprintf(stderr, "lm-worker bench: %s: sequences[%d]: needs input_ids and %d logits and probs\n", o->golden,
                    b, c->n_labels);
            rc = EXIT_DATAERR;
            break;
        }
        lens[b] = (int)json_array_size(in);
        ids[b] = xmalloc((size_t)lens[b] * sizeof(int32_t));
        for (int i = 0; i < lens[b]; i++) ids[b][i] = (int32_t)json_integer_value(json_array_get(in, i));
    }
    double ptol = o->prob_tol >= 0 ? o->prob_tol : o->int8 ? 2e-2 : be->compute == DT_F32 ? 1e-4 : 5e-3;
    double ltol = o->logit_tol >= 0 ? o->logit_tol : be->compute == DT_F32 && !o->int8 ? 1e-4 : -1.0;
    int bad = 0;
    double worst_dl = 0.0, worst_dp = 0.0;
    for (int pass = 0; pass < 2 && rc == EXIT_OK; pass++) { // 0: one packed batch, 1: one by one
        for (int b0 = 0; b0 < B; b0 += pass ? 1 : B) {
            int nb = pass ? 1 : B;
            if (model_forward(m, (const int32_t *const *)ids + b0, lens + b0, nb, logits + (size_t)b0 * c->n_labels,
                              &err)) {
                fprintf(stderr, "lm-worker bench: golden forward: %s\n", err.msg);
                rc = err.code ? err.code : EXIT_SOFTWARE;
                break;
            }
        }
        for (int b = 0; b < B && rc == EXIT_OK; b++) {
            const json_t *s = json_array_get(seqs, b);
            char what[96];
            snprintf(what, sizeof what, "%s seq %d (len %d)", pass ? "alone" : "packed", b, lens[b]);
            bad += golden_compare(what, logits + (size_t)b * c->n_labels, json_object_get(s, "logits"),
                                  json_object_get(s, "probs"), c->n_labels, ltol, ptol, &worst_dl, &worst_dp);
        }
    }
    if (rc == EXIT_OK) {
        printf("golden %s: %s%s%s%s on %s: %d sequences x 2 passes, logit tol %g, prob tol %g, worst |dlogit| %.3g, "
               "worst |dprob| %.3g: %s\n",
               o->golden, dtype_name(be->compute), o->int8 ? "+int8" : "", o->round_weights ? " weights-as-" : "",
               o->round_weights ? o->round_weights : "", be->ops->name, B, ltol, ptol, worst_dl, worst_dp,
               bad ? "MISMATCH" : "ok");
        if (bad) rc = 1;
    }
    for (int b = 0; b < B; b++) free(ids[b]);
    free(ids), free(lens), free(logits);
    json_decref(g);
    return rc;
}

int cmd_bench(int argc, char **argv) {
    bench_opts_t o;
    int pr = bench_parse(argc, argv, &o);
    if (pr != -1) return pr;
    err_t err = {0};
    backend_t *be = device_open(o.device, o.dtype, o.int8, o.threads, &err);
    if (!be) {
        fprintf(stderr, "lm-worker bench: %s\n", err.msg);
        return err.code ? err.code : EXIT_USAGE;
    }
    if ((o.round_weights && weight_round_wrap(be, o.round_weights, &err)) ||
        (o.ops && op_timer_wrap(be, OP_TIMER_TIME, &err))) {
        fprintf(stderr, "lm-worker bench: %s\n", err.msg);
        be->ops->destroy(be);
        return EXIT_USAGE;
    }
    double t0 = clock_mono_s();
    model_load_opts_t lo = {.model_dir = o.model, .adapter_dir = o.adapter, .backend = be};
    model_t *m = model_load(&lo, &err);
    if (!m) {
        fprintf(stderr, "lm-worker bench: %s\n", err.msg);
        be->ops->destroy(be);
        return err.code ? err.code : EXIT_DATAERR;
    }
    double load_s = clock_mono_s() - t0;
    if (be->upload_seconds > 0) // only the CUDA backend measures its uploads
        fprintf(stderr, "lm-worker bench: loaded %s in %.1f s (weights uploaded at %.2f GB/s)\n", o.model, load_s,
                be->upload_bytes / be->upload_seconds / 1e9);
    else
        fprintf(stderr, "lm-worker bench: loaded %s in %.1f s\n", o.model, load_s);
    int rc = EXIT_OK;
    if (o.golden)
        rc = bench_golden(m, be, &o);
    else if (o.trace)
        rc = bench_trace(m, be, &o);
    for (int i = 0; !o.golden && !o.trace && i < o.n_shapes && rc == EXIT_OK; i++)
        rc = bench_time(m, be, &o, o.batch[i], o.len[i], load_s);
    if (!o.golden && !o.trace && o.ids && rc == EXIT_OK) rc = bench_ids(m, be, &o);
    model_free(m);
    be->ops->destroy(be);
    return rc;
}
