/* orch.h: the data shared by orchestrate's modules: the validated plan, the jobs, the slots,
 * and the interfaces between the planning side (plan, shard, validate, merge, resume) and the
 * running side (run, spawn, nvml, progress, report).
 *
 * Flow (main.c): plan_load -> csv_table_read(input) -> slots_init -> nvml baseline ->
 *   for each model (a stage): stage_jobs_build (shards x TTA variants, resume lookups) ->
 *   run_stage (spawn, supervise, validate each output, retry) -> nvml_check_stage ->
 *   merge_model -> then merge_ensemble -> submission (atomic) -> report_write.
 *
 * Headers: one per module, libuv style. This file is the shared door (data types and the
 * interfaces between the two sides); a module with more to offer has its own header (run.h,
 * spawn.h, slots.h, report.h, progress.h, nvml.h, memcheck.h, shim.h, digest.h, idmap.h) and
 * planning.h serves the planning side's files. Two headers are private to one module and included
 * only by its own files and its tests: plan_fields.h (plan.c, plan_fields.c, plan_runtime.c)
 * and run_internal.h (run.c, attempt.c).
 */
#ifndef ORCH_H
#define ORCH_H

#include <stddef.h>
#include "check.h"
#include "csv_io.h"

/* ---------------------------------------------------------------- plan (plan.c) */

typedef enum { TTA_IDENTITY = 0, TTA_SWAP_AB = 1 } tta_t;
/* The TTA variants' names as written in plans, job names, ORCHESTRATE_VARIANT and report.json,
 * indexed by tta_t and NULL-terminated (plan.c). */
extern const char *const tta_names[];
/* tta_names[t]: the variant's name (a static string). */
const char *tta_name(tta_t t);
typedef enum { ENSEMBLE_MEAN = 0, ENSEMBLE_LOGIT_MEAN, ENSEMBLE_GEOMETRIC } ensemble_method_t;
typedef enum { MEM_LEAK_FAIL = 0, MEM_LEAK_KILL, MEM_LEAK_WARN } mem_leak_policy_t;
/* Where attempts run: child processes here, or Slurm job steps (executor_slurm.h). */
typedef enum { EXECUTOR_LOCAL = 0, EXECUTOR_SLURM = 1 } executor_t;
/* The executors' names as written in plans and --executor, indexed by executor_t, NULL-terminated. */
extern const char *const executor_names[];

typedef struct {
    char *name;                 // unique, [A-Za-z0-9._-]+ (used in file names)
    int is_lm_worker;           // 1: `worker: "lm-worker"`; 0: `command`
    char **command;             // (n_command) argv template with {placeholders}; NULL for lm-worker
    int n_command;              // entries in command
    // lm-worker settings (NULL / 0 = lm-worker's default)
    char *model;                // checkpoint directory ({model} in a command)
    char *adapter;              // PEFT adapter directory
    char *tokenizer;            // tokenizer.json path
    char *dtype;                // auto|fp32|bf16|fp16
    char *quant;                // none|int8
    char *template_name;        // template name or file
    char *truncation;           // truncation policy
    int max_length;             // {max_length}
    int batch_size;             // {batch_size}: the first attempt's batch size
    int threads;                // CPU threads per worker (0 = cores / cpu_workers)
    char **extra_args;          // (n_extra_args) appended to the lm-worker command line
    int n_extra_args;           // entries in extra_args
    // common settings
    double weight;              // ensemble weight (> 0), normalised over models
    tta_t tta[2];               // (n_tta) variants, no duplicates
    int n_tta;                  // entries in tta (1 or 2)
    double timeout_s;           // per attempt; 0 = none
    int retries;                // extra attempts after the first (default 2)
    char **env;                 // (n_env) "KEY=VALUE" added to the worker's environment
    int n_env;                  // entries in env
    char **depends_on;          // (n_depends_on) absolute paths of files/folders whose content the
                                // resume keys digest (fingerprint.h)
    int n_depends_on;           // entries in depends_on
    char *settings_key;         // hex digest of every setting that changes outputs (not weight)
} plan_model_t;

typedef struct {
    char *path;                 // the plan file, for messages
    char *input;                // input CSV (first column "id")
    char *output;               // submission path
    char *work_dir;             // shards, outputs, logs, report.json, resume records
    char **labels;              // (n_labels) default winner_model_a, winner_model_b, winner_tie
    int n_labels;               // entries in labels
    int use_cpu;                // gpus: "cpu"
    int gpus_auto;              // gpus: "auto" (NVML; falls back to cpu when no GPU)
    int *gpus;                  // (n_gpus) explicit GPU indices
    int n_gpus;                 // entries in gpus
    int cpu_workers;            // parallel slots on the CPU (default 1)
    plan_model_t *models;       // (n_models) run one stage each, in this order
    int n_models;               // entries in models
    ensemble_method_t ensemble;  // how model probabilities are combined (default mean)
    double kill_grace_s;        // SIGTERM -> SIGKILL delay (default 5)
    double mem_tolerance_mib;   // allowed growth over the baseline after a stage (default 64)
    double mem_wait_s;          // how long to wait for the driver to release memory (default 10)
    mem_leak_policy_t mem_leak; // what to do when memory did not come back (default fail)
    char *lm_worker_path;       // resolved lm-worker executable (NULL when no model uses it)
    char *base_dir;             // absolute directory of the plan file; relative paths resolve here
    size_t limit_rows;          // --limit N: run on the input's first N rows (0 = all of them)
    executor_t executor;        // `executor` / --executor (default local)
    char **srun_args;           // (n_srun_args) slurm.srun_args: extra srun options per step
    int n_srun_args;            // entries in srun_args
    double deadline_s;          // `deadline` / --deadline: seconds from the start (0 = none; budget.h)
    double *fallback;           // (n_labels) probabilities of a row no model covered (default uniform)
} plan_t;

/* Load and validate the plan at path. Errors name the JSON path and line:column, e.g.
 * "plan.json:7:15: models[1].tta[0]: unknown variant 'flip' (expected identity or swap_ab)".
 * Relative paths in the plan are resolved against the plan file's directory. Returns 0, or -1
 * with err set. */
int plan_load(plan_t *plan, const char *path, err_t *err);
/* Free everything plan_load(_buf) allocated and zero *plan; a zeroed plan is a no-op. */
void plan_free(plan_t *plan);

/* Parse and validate plan JSON text (len bytes); `name` is the file name used in messages and
 * whose directory relative paths resolve against. Unlike plan_load it does not look for the
 * lm-worker executable. On failure plan is left zeroed. Returns 0, or -1 with err set. */
int plan_load_buf(plan_t *plan, const char *buf, size_t len, const char *name, err_t *err);

/* Set plan->lm_worker_path when a model uses `worker: "lm-worker"`: `lm-worker` next to this
 * executable (/proc/self/exe) first, then on PATH. plan_load calls it. Returns 0, or -1 with
 * err naming the model that needs it. */
int plan_resolve_lm_worker(plan_t *plan, err_t *err);

/* The lm-worker executable plan_resolve_lm_worker would use: next to this executable first,
 * then on PATH. Returns a malloc'd path, or NULL; exe_dir receives this executable's directory
 * (for messages). */
char *plan_find_lm_worker(char *exe_dir, size_t exe_dir_len);

/* The real path of the first executable regular file named prog in the ':'-separated folders
 * of path_var (a PATH value; NULL or "" finds nothing; empty entries are skipped), malloc'd, or
 * NULL. */
char *plan_path_search(const char *path_var, const char *prog);

/* Apply the CLI's --gpus: "cpu", "auto" or a comma-separated list of GPU indices ("0,1").
 * Returns 0, or -1 with err set (plan unchanged). */
int plan_apply_gpus_override(plan_t *plan, const char *gpus_arg, err_t *err);

/* Replace plan->work_dir (the CLI's --work-dir; relative to the current directory). Nothing
 * caches the work directory before stage_jobs_build, so call it any time before that. */
void plan_set_work_dir(plan_t *plan, const char *dir);

/* Apply the CLI's --limit n (n >= 1): plan->limit_rows = n (the work directory's layout moves to
 * work_dir/limit-<n>, see workdir.h) and the output becomes "<output minus .csv>.limit-<n>.csv"
 * beside the real one, which a smoke run must neither replace nor delete. */
void plan_apply_limit(plan_t *plan, size_t n);

/* ---------------------------------------------------------------- slots */

typedef struct {
    int gpu;                    // GPU index owned by this slot, or -1 on the CPU
    char device[32];            // "cuda:0" / "cpu" ({device} and ORCHESTRATE_DEVICE)
    char cuda_visible[16];      // CUDA_VISIBLE_DEVICES value ("0" or "")
} slot_t;

/* ---------------------------------------------------------------- jobs */

/* JOB_CUT and JOB_SKIPPED happen only under a deadline (budget.h): CUT = stopped at the deadline
 * while running, SKIPPED = never started because the deadline came first. */
typedef enum { JOB_PENDING = 0, JOB_RUNNING, JOB_DONE, JOB_REUSED, JOB_FAILED, JOB_CUT, JOB_SKIPPED } job_status_t;

#define JOB_MAX_ATTEMPTS 32

typedef struct {
    char name[160];             // "<model>.<variant>.s<k>of<n>", used for logs and console
    int model;                  // index into plan->models
    tta_t variant;              // TTA variant this job runs (swap_ab exchanges the responses)
    int shard, n_shards;        // k (0-based) and n
    char *input_path;           // shard CSV (columns exchanged for swap_ab), written before running
    char *output_path;          // where the worker must write its probability CSV
    char *log_path;             // work_dir/logs/<name>.log
    char *key;                  // resume key: the digest of parts
    char *parts;                // "label\tdigest\n" lines: shard rows, variant, settings, files
                                // (fingerprint.h); kept beside the record to say why a job reran
    char why[320];              // why a job that had a record runs again ("x.py changed"); "" else
    char **ids;                 // (n_rows) ids the output must contain, each exactly once
    size_t n_rows;              // entries in ids (rows of the shard)
    size_t cost;                // text bytes in the shard: longest-first order and ETA
    // filled while running
    job_status_t status;
    int slot;                   // slot that ran the last attempt (-1: none)
    int attempts;                     // attempts started so far (<= JOB_MAX_ATTEMPTS)
    int exit_codes[JOB_MAX_ATTEMPTS]; // per attempt; -SIGNUM when killed by a signal
    int timed_out[JOB_MAX_ATTEMPTS];  // per attempt: 1 when killed for timeout_s
    int batch_size;             // batch size of the last attempt
    int batch_sizes[JOB_MAX_ATTEMPTS]; // per attempt: the batch size it ran with
    int att_slot[JOB_MAX_ATTEMPTS];    // per attempt: the slot it ran on (report.html's lanes)
    double att_start[JOB_MAX_ATTEMPTS], att_end[JOB_MAX_ATTEMPTS]; // per attempt: wall clock span
    double t_start, t_end;      // wall clock (seconds since the epoch) of first start, last end
    char steps[JOB_MAX_ATTEMPTS][48]; // per attempt: Slurm "<jobid>.<stepid>" ("" when local)
    char nodes[JOB_MAX_ATTEMPTS][64]; // per attempt: the node that ran the Slurm step ("" when local)
    signed char step_mem_state[JOB_MAX_ATTEMPTS]; // per Slurm step: 0 no report, 1 checked, 2 not done
    int step_gpu[JOB_MAX_ATTEMPTS];   // per checked step: the NVML index of its GPU
    double step_mem[JOB_MAX_ATTEMPTS][2]; // per checked step: used MiB before, after
    char step_mem_note[JOB_MAX_ATTEMPTS][96]; // per step not checked: why
    size_t rows_done;           // from progress lines, for the progress display
    char last_error[512];       // last worker error line or validation failure
} job_t;

/* ---------------------------------------------------------------- planning side */

/* Split the input's rows into n shards balanced by text length (greedy, longest row first, to
 * the lightest shard). shard_of[r] receives the shard of row r. O(R log R). */
void shard_assign(const csv_table_t *input, int n, int *shard_of);

/* Validate a worker's probability CSV for job: header "id,<labels>", each of job->ids exactly
 * once, values finite and in [0,1], rows summing to 1 within 1e-3. Returns 0, or -1 with err
 * naming the file, line and field of the first offending row; err->code is EXIT_DATAERR for a
 * contract error that every attempt would repeat (a wrong header), else 0. */
int validate_output(const plan_t *plan, const job_t *job, err_t *err);

/* Build the jobs of model `model`'s stage: one per (TTA variant, shard) with n_shards = n_slots.
 * Shards are assigned once per input (shard_assign) and written as CSVs under work_dir/shards,
 * with response_a/response_b exchanged for swap_ab (every other column as in the input). A job
 * whose key has a validated output recorded in the work directory (see resume_record) is marked
 * JOB_REUSED and its output_path points at the recorded file. *jobs is allocated; free with
 * stage_jobs_free. Returns 0, or -1 with err set. */
int stage_jobs_build(const plan_t *plan, const csv_table_t *input, int model, int n_slots,
                     job_t **jobs, int *n_jobs, err_t *err);
/* "<output_path>.partial": where a worker may append its finished rows as it goes, under a
 * deadline (ORCHESTRATE_PARTIAL_OUTPUT, lm-worker's --partial-output; docs/workers.md). Read only
 * for a job the deadline cut. malloc'd. */
char *job_partial_path(const job_t *job);

/* Free the n_jobs jobs from stage_jobs_build and their strings; NULL jobs is a no-op. */
void stage_jobs_free(job_t *jobs, int n_jobs);

/* Check the input table: first column "id", ids non-empty and unique (naming the line of the
 * first duplicate), and, when any model asks for swap_ab, columns response_a and response_b.
 * stage_jobs_build calls it too; main may call it once right after reading the input.
 * Returns 0, or -1 with err naming plan->input and the line. */
int input_validate(const plan_t *plan, const csv_table_t *input, err_t *err);

/* Record that job's output validated, so that a later run with the same key reuses it.
 * Returns 0, or -1 with err set. */
int resume_record(const plan_t *plan, const job_t *job, err_t *err);

/* Which input rows one model covered, when a deadline let some of its jobs go unfinished. */
typedef struct {
    unsigned char *covered;     // (n_rows) 1 when at least one of the model's variants covered row r
    size_t rows;                // rows with covered[r] == 1
    size_t variant_rows[2];     // rows each variant covered, indexed like the model's tta[]
    size_t partial_rows;        // of those, (row, variant) pairs from cut jobs' partial outputs
    int partial_rejected;       // partial outputs that failed validation (their rows left out)
    char partial_error[1024];   // why the last of those was rejected ("" when none)
} coverage_t;

/* Merge one model's job outputs (all shards, all variants; swap_ab's first two label columns
 * swapped back; variants averaged) into probs (input->n_rows, n_labels), in input order, and
 * write work_dir/models/<name>.csv atomically. With cov NULL every job must be done or reused
 * and every row covered by every variant. With cov (its covered array: n_rows bytes, owned by
 * the caller) jobs that did not finish are left out, except for the rows of a cut job's partial
 * output (partial_output_read; one that fails validation is counted and left out): a row gets
 * the mean of the variants that covered it, a row no variant covered stays all zero with covered[r] = 0, and models/<name>.csv
 * is written only when every row is covered (else removed). Returns 0, or -1 with err set. */
int merge_model(const plan_t *plan, const csv_table_t *input, int model, const job_t *jobs,
                int n_jobs, double *probs, coverage_t *cov, err_t *err);

/* Combine the models' probs (n_models arrays of (n_rows, n_labels)) with the plan's ensemble
 * method and normalised weights, and write `id,<labels>` in input order to out_path (temp,
 * fsync, rename). covered NULL: every model covers every row. Else covered[k] (n_rows bytes)
 * says which rows model k covered: a row's weights are renormalised over the models that
 * covered it, and a row no model covered gets plan->fallback; *n_fallback (when not NULL)
 * receives how many rows did. Returns 0, or -1 with err set. */
int merge_ensemble(const plan_t *plan, const csv_table_t *input, double *const *model_probs,
                   const unsigned char *const *covered, const char *out_path, size_t *n_fallback,
                   err_t *err);

/* ---------------------------------------------------------------- running side (run.c) */

typedef struct run_ctx run_ctx_t;   // loop, signal handlers, console, report state

/* Create the run context (one libuv loop, SIGINT/SIGTERM/SIGHUP handlers, console mode). */
run_ctx_t *run_ctx_create(const plan_t *plan, int quiet, err_t *err);
/* Close the context's handles, run the loop until every handle has closed and free ctx; NULL is
 * a no-op. Call it after run_stage has returned. */
void run_ctx_destroy(run_ctx_t *ctx);

/* Sort idx[0..n) (indices into jobs) into the order run_stage starts jobs: larger cost first,
 * then index order. --dry-run's schedule uses it too, so that it shows what a run would do. */
void run_order_jobs(const job_t *jobs, int *idx, int n);

/* Run every job whose status is JOB_PENDING on the slots, longest first, until all are
 * JOB_DONE or one fails for good. Each attempt: spawn (own process group, PDEATHSIG shim),
 * stream its output to job->log_path and the console, enforce timeout_s (TERM, grace, KILL),
 * then validate_output. Exit 75 (or "CUDA out of memory" in its log) halves the batch size;
 * exit 65 fails the run at once; anything else retries up to the model's retries.
 * Returns 0, or -1 with err set: err->code is 128 + the signal after SIGINT/SIGTERM/SIGHUP, else 1. */
int run_stage(run_ctx_t *ctx, job_t *jobs, int n_jobs, const slot_t *slots, int n_slots, err_t *err);

#endif
