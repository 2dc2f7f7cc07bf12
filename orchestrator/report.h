/* report.h: work_dir/report.json and the summary table printed at the end of a run.
 *
 * main.c adds each stage as it finishes (the jobs are copied, since stage_jobs_free follows),
 * then writes the report once, atomically, whether the run succeeded or not. The report is for
 * people and scripts asking "where did the time go": per job attempts, exit codes, batch sizes,
 * rows/s; per stage GPU memory; and the orchestration overhead (wall time not spent in workers).
 */
#ifndef ORCH_REPORT_H
#define ORCH_REPORT_H

#include <stdio.h>

#include "budget.h"
#include "memcheck.h"
#include "orch.h"

typedef struct report report_t;

/* Wall-clock accounting for the totals (seconds). */
typedef struct {
    double wall_s;          // the whole run
    double worker_s;        // at least one worker alive
    double read_input_s;    // reading the input CSV
    double build_jobs_s;    // sharding and resume lookups (stage_jobs_build)
    double validate_s;      // validating worker outputs
    double merge_s;         // merge_model + merge_ensemble
    double memory_s;        // waiting for GPU memory between stages
    int spawned;            // worker processes started
} report_times_t;

/* Start the report of a run that began at t_start_wall (seconds since the epoch): the plan's
 * paths and the slots. report_destroy frees it. */
report_t *report_create(const plan_t *plan, const slot_t *slots, int n_slots, double t_start_wall);
/* Free the report; NULL is a no-op. */
void report_destroy(report_t *r);

/* Add a finished (or failed) stage: its jobs and the memory readings after it (mem may be NULL
 * when n_mem is 0). */
void report_add_stage(report_t *r, const plan_t *plan, int model, const job_t *jobs, int n_jobs,
                      double stage_wall_s, const memcheck_gpu_t *mem, int n_mem);

/* A stage (or, under a deadline, a pass of one) began at t_wall: a boundary on report.html's
 * timeline ("stage_marks" in report.json). */
void report_mark(report_t *r, const char *label, double t_wall);

/* One NVML reading: GPU gpu used used_mib MiB at t_wall ("gpu_memory_samples"; report.html's
 * memory chart). */
void report_add_mem_sample(report_t *r, int gpu, double t_wall, double used_mib);

/* Record the deadline's outcome in the report ("deadline": the budget and its reserve, per
 * model and variant the rows covered (cov: n_models entries), the jobs cut and skipped, the rows
 * that got the fallback, "degraded") and in the summary. Call it after the last stage. */
void report_set_deadline(report_t *r, const plan_t *plan, const budget_t *b, const coverage_t *cov,
                         size_t n_rows, size_t fallback_rows);

/* Write the report to path atomically, and report.html beside it (path's ".json" replaced by
 * ".html"; report_html.h). status is "ok", "failed" or "interrupted"; failure is the
 * reason (NULL when ok). Returns 0, or -1 with err set. */
int report_write(report_t *r, const char *path, const char *status, const char *failure,
                 const report_times_t *t, err_t *err);

/* Print the per-stage summary table and the totals to f. A stage that did not complete shows
 * rows done/total and no rate; after report_write with a status other than "ok", a last line
 * says how many jobs a rerun will reuse (from the resume records). */
void report_print_summary(const report_t *r, const report_times_t *t, FILE *f);

#endif
