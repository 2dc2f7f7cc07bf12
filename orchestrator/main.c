/* main.c: `orchestrate`, the command line and the run's flow (see orch.h's opening comment):
 *
 *   plan_load -> read input -> slots -> GPU memory baseline ->
 *     for each model: stage_jobs_build -> run_stage -> memcheck_stage -> merge_model ->
 *   merge_ensemble (the submission, atomic) -> report.json -> summary.
 *
 * Exit status: 0 when the submission was written; 64 for a bad command line; 130/143/129 after
 * SIGINT/SIGTERM/SIGHUP; 1 for any other failure. SIGPIPE is ignored: a closed stdout
 * (`orchestrate | head`) loses console lines, never the run. A failure's reason is the last line printed:
 * "orchestrate: failed: ...". It also holds `orchestrate --shim`, the supervisor re-exec that
 * starts every worker (shim.c), which must come before anything else in main.
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "atomic_file.h"
#include "budget.h"
#include "build_info.h"
#include "doctor.h"
#include "exit_codes.h"
#include "memcheck.h"
#include "executor_slurm.h"
#include "nvml.h"
#include "orch.h"
#include "preflight.h"
#include "report.h"
#include "run.h"
#include "shim.h"
#include "slots.h"
#include "workdir.h"

static const char EXAMPLE_PLAN[] =
    "{\n"
    "  \"input\": \"test.csv\",\n"
    "  \"output\": \"submission.csv\",\n"
    "  \"gpus\": \"auto\",\n"
    "  \"models\": [\n"
    "    {\"name\": \"gemma\", \"worker\": \"lm-worker\", \"model\": \"gemma-2-9b-cls\",\n"
    "     \"max_length\": 1024, \"batch_size\": 8, \"tta\": [\"identity\", \"swap_ab\"]},\n"
    "    {\"name\": \"mine\", \"command\": [\"python3\", \"infer.py\", \"--in\", \"{input}\", \"--out\", \"{output}\"],\n"
    "     \"weight\": 0.5}\n"
    "  ]\n"
    "}\n";

/* Print the command line help to f. */
static void usage(FILE *f) {
    fprintf(f,
            "usage: orchestrate [--plan FILE] [--dry-run] [--fresh] [--work-dir DIR] [--gpus LIST|cpu|auto] [--limit N]\n"
            "                   [--executor local|slurm] [--quiet] [--no-preflight] [--deadline DURATION|none]\n"
            "       orchestrate doctor [--plan FILE]   (GPUs, driver, lm-worker's device, can each stage run)\n"
            "       orchestrate -h|--help | -V|--version\n"
            "\n"
            "Runs the plan's models (one stage each) as worker processes, one per GPU (or cpu_workers\n"
            "on the CPU), checks every output, and writes the weighted ensemble as the submission.\n"
            "\n"
            "  --plan FILE      the plan (default: ./plan.json)\n"
            "  --dry-run        print the slots, the jobs (model, variant, shard, rows, cost, reuse)\n"
            "                   and the schedule; start no worker (shard files are still written)\n"
            "  --fresh          discard the work directory's outputs, logs and resume records first\n"
            "                   (only in a work directory orchestrate made; other files are kept)\n"
            "  --work-dir DIR   override the plan's work_dir\n"
            "  --gpus SPEC      override the plan's gpus: \"cpu\", \"auto\" or a list such as 0,1\n"
            "  --executor NAME  override the plan's executor: local, or slurm (job steps; docs/slurm.md)\n"
            "  --limit N        a smoke run on the input's first N rows: its own work_dir/limit-N, and\n"
            "                   the submission beside the real one, as <output>.limit-N.csv\n"
            "  --quiet          do not echo the workers' output (it is still in work_dir/logs)\n"
            "  --no-preflight   skip the checks made before the first stage (workers, lm-worker check,\n"
            "                   output and work_dir writable); --dry-run makes them too\n"
            "  --deadline D     override the plan's deadline: seconds or e.g. 8h30m, 45m, 90s from the\n"
            "                   start (\"none\": no deadline). The run then always writes a valid\n"
            "                   submission in time, leaving out what did not finish (docs/plan.md)\n"
            "\n"
            "Exit status: 0 when the submission was written; 1 on failure (the reason is the last line);\n"
            "64 for a bad command line; 130/143/129 when stopped by SIGINT/SIGTERM/SIGHUP.\n"
            "Docs: docs/plan.md (the plan), docs/workers.md (writing a worker), docs/architecture.md.\n");
}

typedef struct {
    const char *plan_path;    // --plan (default "plan.json")
    const char *work_dir;     // --work-dir, or NULL for the plan's work_dir
    const char *gpus;         // --gpus, or NULL for the plan's gpus
    const char *executor;     // --executor, or NULL for the plan's executor
    const char *deadline;     // --deadline, or NULL for the plan's deadline
    size_t limit;             // --limit N, or 0 for every row
    int dry_run, fresh, quiet; // the flags of the same names
    int no_preflight;          // --no-preflight
} cli_t;

/* Print the failure line last (stdout flushed first, so it cannot come out before). */
static int fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(int code, const char *fmt, ...) {
    fflush(stdout);
    va_list ap;
    va_start(ap, fmt);
    fputs("orchestrate: failed: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return code;
}

/* Parse argv into cli. Exits 0 after -h/--help or -V/--version (which takes no other argument);
 * returns 0, or EXIT_USAGE after printing the usage and the failure line. */
static int parse_cli(int argc, char **argv, cli_t *cli) {
    static const struct option opts[] = {
        {"plan", required_argument, NULL, 'p'},  {"dry-run", no_argument, NULL, 'n'},
        {"fresh", no_argument, NULL, 'f'},       {"work-dir", required_argument, NULL, 'w'},
        {"gpus", required_argument, NULL, 'g'},  {"quiet", no_argument, NULL, 'q'},
        {"limit", required_argument, NULL, 'l'},  {"executor", required_argument, NULL, 'e'},
        {"help", no_argument, NULL, 'h'},        {"version", no_argument, NULL, 'V'},
        {"no-preflight", no_argument, NULL, 'P'}, {"deadline", required_argument, NULL, 'd'},
        {NULL, 0, NULL, 0},
    };
    memset(cli, 0, sizeof *cli);
    cli->plan_path = "plan.json";
    int c, version = 0;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "hV", opts, NULL)) != -1) {
        switch (c) {
        case 'p': cli->plan_path = optarg; break;
        case 'n': cli->dry_run = 1; break;
        case 'f': cli->fresh = 1; break;
        case 'w': cli->work_dir = optarg; break;
        case 'g': cli->gpus = optarg; break;
        case 'e': cli->executor = optarg; break;
        case 'q': cli->quiet = 1; break;
        case 'P': cli->no_preflight = 1; break;
        case 'd': {
            double d;
            err_t derr = {0};
            if (strcmp(optarg, "none") != 0 && budget_parse_duration(optarg, &d, &derr) != 0) {
                usage(stderr);
                return fail(EXIT_USAGE, "--deadline: %s", derr.msg);
            }
            cli->deadline = optarg;
            break;
        }
        case 'l': {
            char *end;
            errno = 0;
            unsigned long long n = strtoull(optarg, &end, 10);
            if (optarg[0] < '0' || optarg[0] > '9' || *end || errno || n == 0 || n > (1ULL << 40)) {
                usage(stderr);
                return fail(EXIT_USAGE, "--limit '%s': expected a number of rows >= 1", optarg);
            }
            cli->limit = (size_t)n;
            break;
        }
        case 'h': usage(stdout); exit(0);
        case 'V': version = 1; break;
        default:
            usage(stderr);
            return fail(EXIT_USAGE, "unknown or incomplete option '%s' (see above)", argv[optind - 1]);
        }
    }
    if (version && argc > 2) return fail(EXIT_USAGE, "--version takes no other arguments");
    if (version) {
        printf("orchestrate %s\n" BUILD_INFO_LINES, ORCH_VERSION);
        exit(0);
    }
    if (optind < argc) {
        usage(stderr);
        return fail(EXIT_USAGE, "unexpected argument '%s' (the plan is given with --plan FILE)", argv[optind]);
    }
    return 0;
}

/* There is no plan at path: print a minimal example plan and where the docs are. Returns 1. */
static int no_plan(const char *path) {
    printf("orchestrate: no plan: '%s' does not exist.\n"
           "Write a plan.json (or pass --plan FILE). A minimal one, for a GPU machine:\n\n%s\n"
           "Relative paths are relative to the plan's directory. \"gpus\": \"cpu\" runs on the CPU.\n"
           "Docs: docs/plan.md (every setting), docs/workers.md (your own worker command),\n"
           "docs/kaggle.md; `orchestrate --help` for the options.\n",
           path, EXAMPLE_PLAN);
    return fail(1, "no plan file '%s'", path);
}

/* ------------------------------------------------------------------ the run */

typedef struct {
    plan_t plan;       // the loaded plan, CLI overrides applied
    csv_table_t input; // the input CSV
    slot_t *slots;     // (n_slots) where workers run
    int n_slots;       // entries in slots
    nvml_t *nvml;      // NVML handle, or NULL when unavailable
    run_ctx_t *ctx;    // the event loop and supervisor state
    memcheck_t mem;    // GPU memory baseline (valid when have_mem)
    int have_mem;             // mem was initialised (NVML present and some slot is a GPU)
    report_t *report;         // report.json being built
    report_times_t times;     // timing breakdown for the report
    double **probs;           // (plan.n_models) per-model (n_rows, n_labels)
    double t0;                // monotonic start
    budget_t budget;          // the deadline's budget (valid when budget.deadline_s > 0)
    coverage_t *cov;          // (plan.n_models) rows each model covered, under a deadline; else NULL
} run_t;

/* --dry-run: print the slots and, per stage, the jobs and their schedule; start no worker (the
 * shard files are written, to know what would be reused). Returns 0, or -1 with err set. */
static int dry_run(run_t *r, const cli_t *cli, err_t *err) {
    const plan_t *plan = &r->plan;
    printf("plan: %s\ninput: %s (%zu rows)\noutput: %s\nwork_dir: %s\n", plan->path, plan->input,
           r->input.n_rows, plan->output, plan->work_dir);
    printf("slots (%d):\n", r->n_slots);
    for (int s = 0; s < r->n_slots; s++)
        printf("  slot %d: %s, CUDA_VISIBLE_DEVICES=\"%s\"\n", s, r->slots[s].device, r->slots[s].cuda_visible);
    if (cli->fresh) printf("(--fresh: every job would run; a dry run deletes nothing)\n");
    for (int m = 0; m < plan->n_models; m++) {
        job_t *jobs = NULL;
        int n_jobs = 0;
        if (stage_jobs_build(plan, &r->input, m, r->n_slots, &jobs, &n_jobs, err) != 0) return -1;
        printf("stage %d/%d: model %s (%s, weight %g), %d job(s):\n", m + 1, plan->n_models,
               plan->models[m].name, plan->models[m].is_lm_worker ? "lm-worker" : "command",
               plan->models[m].weight, n_jobs);
        slots_print_stage_plan(stdout, plan, m, jobs, n_jobs, r->slots, r->n_slots, cli->fresh);
        stage_jobs_free(jobs, n_jobs);
    }
    printf("dry run: no worker started.\n");
    return 0;
}

/* Build model m's jobs (into *jobs, *n_jobs) and print what resume did for them. Returns 0, or -1
 * with err set (code 1). */
static int stage_build(run_t *r, int m, job_t **jobs, int *n_jobs, err_t *err) {
    progress_t *con = run_ctx_console(r->ctx);
    double t = clock_mono_s();
    if (stage_jobs_build(&r->plan, &r->input, m, r->n_slots, jobs, n_jobs, err) != 0) {
        err->code = 1;
        return -1;
    }
    r->times.build_jobs_s += clock_mono_s() - t;
    for (int j = 0; j < *n_jobs; j++) {   // what resume did, and why
        if ((*jobs)[j].status == JOB_REUSED) progress_note(con, "reused: %s (resume key matches)", (*jobs)[j].name);
        else if ((*jobs)[j].why[0]) progress_note(con, "rerun: %s: %s", (*jobs)[j].name, (*jobs)[j].why);
    }
    return 0;
}

/* Run jobs[0..n_jobs) of model m (a stage, or a pass of one under a deadline), then check GPU
 * memory into mem (when NVML watches a GPU). Under a deadline the memory check neither waits
 * past the stop time nor fails the run. Returns 0, or -1 with err set. */
static int stage_run(run_t *r, int m, job_t *jobs, int n_jobs, memcheck_gpu_t *mem, err_t *err) {
    const plan_t *plan = &r->plan;
    int rc = run_stage(r->ctx, jobs, n_jobs, r->slots, r->n_slots, err);
    int validated = run_ctx_validated(r->ctx);
    if (r->cov && validated > 0 &&
        budget_observe(&r->budget, plan, run_ctx_validate_seconds(r->ctx) / validated)) {
        char line[320];
        budget_describe(&r->budget, line, sizeof line);
        progress_note(run_ctx_console(r->ctx), "orchestrate: outputs validate slower than estimated; now %s", line);
    }
    int mem_ok = !r->cov || budget_left(&r->budget, clock_mono_s()) > plan->mem_wait_s;
    if (rc == 0 && r->have_mem && mem_ok) {
        double tm = clock_mono_s();
        rc = memcheck_stage(&r->mem, plan, r->ctx, plan->models[m].name, mem, err);
        r->times.memory_s += clock_mono_s() - tm;
        if (rc != 0 && r->cov && err->code < 128) {
            progress_note(run_ctx_console(r->ctx), "orchestrate: warning: %s (with a deadline set, the run goes on)",
                          err->msg);
            rc = 0;
        }
    }
    return rc;
}

/* Add model m's finished stage to the report and, when rc is 0, merge its outputs into
 * r->probs[m] (with coverage under a deadline). Returns 0, or -1 with err set. */
static int stage_finish(run_t *r, int m, const job_t *jobs, int n_jobs, double wall_s, const memcheck_gpu_t *mem,
                        int rc, err_t *err) {
    const plan_t *plan = &r->plan;
    report_add_stage(r->report, plan, m, jobs, n_jobs, wall_s, mem, r->have_mem ? r->mem.n_gpus : 0);
    if (rc != 0) return rc;
    double tm = clock_mono_s();
    r->probs[m] = xcalloc(r->input.n_rows * (size_t)plan->n_labels, sizeof **r->probs);
    if (r->cov) r->cov[m].covered = xcalloc(r->input.n_rows + 1, 1);
    rc = merge_model(plan, &r->input, m, jobs, n_jobs, r->probs[m], r->cov ? &r->cov[m] : NULL, err);
    if (rc != 0) err->code = 1;
    if (rc == 0 && r->cov && r->cov[m].partial_rejected)
        progress_note(run_ctx_console(r->ctx), "orchestrate: warning: %d partial output(s) of model %s rejected, "
                      "their rows left out; the last: %s", r->cov[m].partial_rejected, plan->models[m].name,
                      r->cov[m].partial_error);
    r->times.merge_s += clock_mono_s() - tm;
    return rc;
}

/* One stage: jobs, run, memory check, merge. Returns 0, or -1 with err set (err->code = the
 * exit status to use). */
static int run_one_stage(run_t *r, int m, err_t *err) {
    const plan_t *plan = &r->plan;
    job_t *jobs = NULL;
    int n_jobs = 0;
    if (stage_build(r, m, &jobs, &n_jobs, err) != 0) return -1;
    int reused = 0;
    for (int j = 0; j < n_jobs; j++) reused += jobs[j].status == JOB_REUSED;
    progress_note(run_ctx_console(r->ctx), "== stage %d/%d: model %s: %d job(s) on %d slot(s), %d reused ==", m + 1,
                  plan->n_models, plan->models[m].name, n_jobs, r->n_slots, reused);
    report_mark(r->report, plan->models[m].name, clock_wall_s());
    double t_stage = clock_mono_s();
    memcheck_gpu_t *mem = r->have_mem ? xcalloc((size_t)r->mem.n_gpus + 1, sizeof *mem) : NULL;
    int rc = stage_run(r, m, jobs, n_jobs, mem, err);
    rc = stage_finish(r, m, jobs, n_jobs, clock_mono_s() - t_stage, mem, rc, err);
    free(mem);
    stage_jobs_free(jobs, n_jobs);
    return rc;
}

/* The variant model m runs in the first pass under a deadline: identity when it has it (a model
 * missing costs more than a TTA variant missing), else its only variant. */
static tta_t first_pass_variant(const plan_model_t *m) {
    for (int v = 0; v < m->n_tta; v++)
        if (m->tta[v] == TTA_IDENTITY) return TTA_IDENTITY;
    return m->tta[0];
}

/* Under a deadline: every model's first-pass variant (identity) before any model's second
 * (swap_ab). Each model's jobs are built up front and reordered so that its first-pass jobs come
 * first; pass p runs each model's segment in plan order; then each model is reported and merged.
 * Returns 0, or -1 with err set. */
static int run_passes(run_t *r, err_t *err) {
    const plan_t *plan = &r->plan;
    int M = plan->n_models, rc = 0;
    job_t **jobs = xcalloc((size_t)M, sizeof *jobs);
    int *n_jobs = xcalloc((size_t)M, sizeof *n_jobs), *n_first = xcalloc((size_t)M, sizeof *n_first);
    double *wall = xcalloc((size_t)M, sizeof *wall);
    memcheck_gpu_t *mem = r->have_mem ? xcalloc((size_t)r->mem.n_gpus + 1, sizeof *mem) : NULL;
    for (int m = 0; m < M && rc == 0; m++) {
        rc = stage_build(r, m, &jobs[m], &n_jobs[m], err);
        if (rc != 0) break;
        // Stable partition: the first-pass variant's jobs first (job_t holds no pointer to itself).
        tta_t first = first_pass_variant(&plan->models[m]);
        job_t *sorted = xmalloc(((size_t)n_jobs[m] + 1) * sizeof *sorted);
        int k = 0;
        for (int pass = 0; pass < 2; pass++)
            for (int j = 0; j < n_jobs[m]; j++)
                if ((jobs[m][j].variant == first) == (pass == 0)) sorted[k++] = jobs[m][j];
        memcpy(jobs[m], sorted, (size_t)n_jobs[m] * sizeof *sorted);
        free(sorted);
        while (n_first[m] < n_jobs[m] && jobs[m][n_first[m]].variant == first) n_first[m]++;
    }
    for (int pass = 0; pass < 2 && rc == 0; pass++) {
        for (int m = 0; m < M && rc == 0; m++) {
            int j0 = pass == 0 ? 0 : n_first[m], n = pass == 0 ? n_first[m] : n_jobs[m] - n_first[m];
            if (n == 0) continue;
            int reused = 0;
            for (int j = j0; j < j0 + n; j++) reused += jobs[m][j].status == JOB_REUSED;
            progress_note(run_ctx_console(r->ctx), "== pass %d/2 (%s): model %s: %d job(s) on %d slot(s), %d reused ==",
                          pass + 1, pass == 0 ? "each model's first variant" : "the other variants",
                          plan->models[m].name, n, r->n_slots, reused);
            char label[160];
            snprintf(label, sizeof label, "%s.%s", plan->models[m].name, pass == 0 ? tta_name(first_pass_variant(&plan->models[m])) : "other");
            report_mark(r->report, label, clock_wall_s());
            double t = clock_mono_s();
            rc = stage_run(r, m, jobs[m] + j0, n, mem, err);
            wall[m] += clock_mono_s() - t;
        }
    }
    for (int m = 0; m < M; m++) {
        if (jobs[m] && rc == 0) rc = stage_finish(r, m, jobs[m], n_jobs[m], wall[m], mem, 0, err);
        else if (jobs[m]) report_add_stage(r->report, plan, m, jobs[m], n_jobs[m], wall[m], NULL, 0);
        stage_jobs_free(jobs[m], n_jobs[m]);
    }
    free(mem), free(wall), free(n_first), free(n_jobs), free(jobs);
    return rc;
}

/* The sampler run.c calls while workers run: one NVML reading per watched GPU into the report. */
static void sample_memory(void *data) {
    run_t *r = data;
    double used[64];
    int n = r->mem.n_gpus < 64 ? r->mem.n_gpus : 64;
    err_t err = {0};
    if (nvml_read_used(r->nvml, r->mem.gpus, n, used, &err) != 0) return;   // a missed sample: no harm
    double t = clock_wall_s();
    for (int g = 0; g < n; g++) report_add_mem_sample(r->report, r->mem.gpus[g], t, used[g]);
}

/* Run every stage, then merge the ensemble into the submission unless a signal arrived. Returns 0,
 * or -1 with err set (err->code 128 + signal when interrupted). */
static int run_all(run_t *r, const cli_t *cli, err_t *err) {
    plan_t *plan = &r->plan;
    char *base = workdir_path(plan, NULL, NULL, NULL);   // work_dir, or work_dir/limit-N
    int rc = fs_mkdir_p(base, err);
    free(base);
    if (rc != 0) return -1;
    r->ctx = run_ctx_create(plan, cli->quiet, err);
    if (!r->ctx) return -1;
    if (r->nvml && slots_use_gpu(r->slots, r->n_slots)) {
        if (memcheck_init(&r->mem, r->nvml, r->slots, r->n_slots, err) != 0) return -1;
        r->have_mem = 1;
        for (int g = 0; g < r->mem.n_gpus; g++)
            printf("orchestrate: GPU %d: %.0f MiB in use before the run\n", r->mem.gpus[g], r->mem.baseline[g]);
    }
    r->report = report_create(plan, r->slots, r->n_slots, clock_wall_s() - (clock_mono_s() - r->t0));
    r->probs = xcalloc((size_t)plan->n_models, sizeof *r->probs);
    // Not with the tests' fake NVML, whose scripted readings answer memcheck's calls in order.
    if (r->have_mem && !nvml_is_fake(r->nvml)) run_ctx_set_sampler(r->ctx, sample_memory, r);
    if (r->budget.deadline_s > 0) {
        char line[320];
        budget_describe(&r->budget, line, sizeof line);
        printf("orchestrate: %s\n", line);
        r->cov = xcalloc((size_t)plan->n_models, sizeof *r->cov);
        run_ctx_set_budget(r->ctx, &r->budget);
    }
    if (r->cov) {
        if (run_passes(r, err) != 0) return -1;
    } else {
        for (int m = 0; m < plan->n_models; m++)
            if (run_one_stage(r, m, err) != 0) return -1;
    }

    int sig = run_ctx_poll_signal(r->ctx);
    if (sig) return err_code(err, 128 + sig, "interrupted by %s; no submission written", run_signal_name(sig));
    double tm = clock_mono_s();
    unsigned char **covered = NULL;
    if (r->cov) {
        covered = xcalloc((size_t)plan->n_models, sizeof *covered);
        for (int m = 0; m < plan->n_models; m++) covered[m] = r->cov[m].covered;
    }
    size_t n_fallback = 0;
    rc = merge_ensemble(plan, &r->input, (double *const *)r->probs, (const unsigned char *const *)covered,
                        plan->output, &n_fallback, err);
    free(covered);
    if (rc != 0) {
        err->code = 1;
        return -1;
    }
    if (r->cov) report_set_deadline(r->report, plan, &r->budget, r->cov, r->input.n_rows, n_fallback);
    r->times.merge_s += clock_mono_s() - tm;
    sig = run_ctx_poll_signal(r->ctx);
    if (sig) {
        unlink(plan->output);
        return err_code(err, 128 + sig, "interrupted by %s; no submission written", run_signal_name(sig));
    }
    return 0;
}

/* Close the report with the run's status ("ok", "failed" or "interrupted" from err) and totals,
 * write report.json into the work directory (a failure to write is a warning) and print the
 * summary table. */
static void finish_report(run_t *r, const err_t *err, int failed) {
    if (!r->report) return;
    r->times.wall_s = clock_mono_s() - r->t0;
    r->times.worker_s = run_ctx_worker_seconds(r->ctx);
    r->times.validate_s = run_ctx_validate_seconds(r->ctx);
    r->times.spawned = run_ctx_spawned(r->ctx);
    int sig = err->code - 128;
    const char *status = !failed ? "ok" : sig == SIGINT || sig == SIGTERM || sig == SIGHUP ? "interrupted" : "failed";
    char *path = workdir_path(&r->plan, WD_REPORT, NULL, NULL);
    err_t werr = {0};
    if (report_write(r->report, path, status, failed ? err->msg : NULL, &r->times, &werr) != 0)
        fprintf(stderr, "orchestrate: warning: %s\n", werr.msg);
    report_print_summary(r->report, &r->times, stdout);
    printf("report: %s (timeline: %s)\n", path, WD_REPORT_HTML);
    free(path);
}

int main(int argc, char **argv) {
    if (argc >= 2 && strcmp(argv[1], SHIM_FLAG) == 0) return shim_main(argc - 2, argv + 2);
    signal(SIGPIPE, SIG_IGN);  // a closed stdout must not kill the run (the shim restores it for workers)
    if (argc >= 2 && strcmp(argv[1], "doctor") == 0) return doctor_main(argc - 1, argv + 1);

    cli_t cli;
    int rc = parse_cli(argc, argv, &cli);
    if (rc) return rc;
    struct stat st;
    if (stat(cli.plan_path, &st) != 0) return no_plan(cli.plan_path);

    run_t r;
    memset(&r, 0, sizeof r);
    r.t0 = clock_mono_s();
    err_t err = {0};
    int failed = 0;
    char note[256];
    if (plan_load(&r.plan, cli.plan_path, &err) != 0) return fail(1, "%s", err.msg);
    if (cli.gpus && plan_apply_gpus_override(&r.plan, cli.gpus, &err) != 0) {
        plan_free(&r.plan);
        return fail(EXIT_USAGE, "--gpus: %s", err.msg);
    }
    if (cli.executor) {
        int e = 0;
        while (executor_names[e] && strcmp(executor_names[e], cli.executor) != 0) e++;
        if (!executor_names[e]) {
            plan_free(&r.plan);
            return fail(EXIT_USAGE, "--executor '%s': expected local or slurm", cli.executor);
        }
        r.plan.executor = (executor_t)e;
    }
    if (r.plan.executor == EXECUTOR_SLURM && !cli.dry_run && slurm_check_allocation(&err) != 0) {
        plan_free(&r.plan);
        return fail(1, "%s", err.msg);
    }
    if (cli.work_dir) plan_set_work_dir(&r.plan, cli.work_dir);
    if (cli.limit) plan_apply_limit(&r.plan, cli.limit);
    if (cli.deadline && strcmp(cli.deadline, "none") == 0) r.plan.deadline_s = 0;
    else if (cli.deadline) budget_parse_duration(cli.deadline, &r.plan.deadline_s, &err);  // checked in parse_cli
    workdir_t wd = {.lock_fd = -1};
    if (workdir_check_paths(&r.plan, &err) != 0) {
        plan_free(&r.plan);
        return fail(1, "%s", err.msg);
    }
    double t = clock_mono_s();
    if (!failed && csv_table_read(&r.input, r.plan.input, &err) != 0) failed = 1;
    if (!failed && cli.limit) {
        csv_table_truncate(&r.input, cli.limit);
        char *base = workdir_path(&r.plan, NULL, NULL, NULL);
        printf("orchestrate: --limit %zu: running on the input's first %zu row(s), in %s; the submission goes "
               "to %s\n", cli.limit, r.input.n_rows, base, r.plan.output);
        free(base);
    }
    if (!failed && input_validate(&r.plan, &r.input, &err) != 0) failed = 1;
    r.times.read_input_s = clock_mono_s() - t;
    if (!failed && r.plan.deadline_s > 0) budget_init(&r.budget, &r.plan, r.plan.deadline_s, r.t0, r.times.read_input_s);
    int slurm = r.plan.executor == EXECUTOR_SLURM;
    // Through Slurm the GPUs are on the nodes, not here: the steps' GPU memory is not checked.
    if (!failed && !r.plan.use_cpu && !slurm) {
        r.nvml = nvml_open(note, sizeof note);
        if (!r.nvml) printf("orchestrate: note: %s\n", note);
    }
    if (!failed && slurm && slurm_slots(&r.plan, &r.slots, &r.n_slots, note, sizeof note, &err) != 0) failed = 1;
    if (!failed && !slurm && slots_init(&r.plan, r.nvml, &r.slots, &r.n_slots, note, sizeof note, &err) != 0) failed = 1;
    if (!failed && note[0]) printf("orchestrate: note: %s\n", note);
    if (failed) err.code = 1;
    if (!failed && !cli.no_preflight) {
        // Through Slurm the GPUs are on the nodes: `lm-worker check` runs here on the CPU (files,
        // tokenizer, labels); the device itself is tried by the first step.
        slot_t here = {.gpu = -1, .device = "cpu", .cuda_visible = ""};
        int problems = slurm ? preflight_run(&r.plan, &here, 1, cli.work_dir ? "--work-dir" : "work_dir", stderr)
                             : preflight_run(&r.plan, r.slots, r.n_slots, cli.work_dir ? "--work-dir" : "work_dir", stderr);
        if (problems) {
            failed = 1;
            err_code(&err, 1, "preflight found %d problem(s), listed above; no stage was started", problems);
        }
    }
    // Only now, with every check passed, does the run take the work directory (its lock, --fresh)
    // and the output's place: a plan that cannot run changes nothing on disk.
    if (!failed && workdir_open(&wd, &r.plan, cli.fresh && !cli.dry_run, &err) != 0) {
        failed = 1;
        err.code = 1;
    }
    if (!failed && cli.fresh && !cli.dry_run) {
        char *base = workdir_path(&r.plan, NULL, NULL, NULL);
        printf("orchestrate: --fresh: discarded earlier outputs, logs and resume records in %s\n", base);
        free(base);
    }
    // A submission from an earlier run must not survive a failed one: exit 0 <=> it is new.
    if (!failed && !cli.dry_run && unlink(r.plan.output) == 0)
        printf("orchestrate: removed the previous %s; it is rewritten when this run succeeds\n", r.plan.output);

    if (!failed && cli.dry_run) {
        failed = dry_run(&r, &cli, &err) != 0;
        if (failed) err.code = 1;
    } else if (!failed) {
        failed = run_all(&r, &cli, &err) != 0;
        if (failed && err.code == 0) err.code = 1;
        finish_report(&r, &err, failed);
    }

    if (!failed && !cli.dry_run)
        printf("orchestrate: wrote %s (%zu rows) in %.1f s\n", r.plan.output, r.input.n_rows, clock_mono_s() - r.t0);
    if (r.probs)
        for (int m = 0; m < r.plan.n_models; m++) free(r.probs[m]);
    free(r.probs);
    if (r.cov)
        for (int m = 0; m < r.plan.n_models; m++) free(r.cov[m].covered);
    free(r.cov);
    report_destroy(r.report);
    if (r.have_mem) memcheck_free(&r.mem);
    run_ctx_destroy(r.ctx);
    nvml_close(r.nvml);
    free(r.slots);
    csv_table_free(&r.input);
    plan_free(&r.plan);
    workdir_close(&wd);
    if (failed) return fail(err.code, "%s", err.msg);
    fflush(stdout);
    return 0;
}
