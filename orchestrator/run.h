/* run.h: what the running side offers main.c beyond orch.h's run_ctx_create / run_stage:
 * signal polling outside run_stage, an interruptible sleep (for NVML waits), the console, and
 * the accounting that report.json needs (time spent in workers, in validation). */
#ifndef ORCH_RUN_H
#define ORCH_RUN_H

#include <sys/types.h>

#include "budget.h"
#include "clock_util.h"
#include "orch.h"
#include "progress.h"

/* Run under budget b (not owned; NULL: no deadline): run_stage stops its workers at b->stop_at
 * (SIGTERM, grace, SIGKILL) and marks them JOB_CUT, starts no job after it (JOB_SKIPPED), and a
 * job that fails for good no longer fails the run: it is JOB_FAILED and the rest go on. */
void run_ctx_set_budget(run_ctx_t *ctx, const budget_t *b);

#define RUN_SAMPLE_INTERVAL_S 1.0

/* Call fn(data) while workers run, from the progress tick, at most every RUN_SAMPLE_INTERVAL_S
 * (main samples GPU memory for report.html with it). NULL fn: none. */
void run_ctx_set_sampler(run_ctx_t *ctx, void (*fn)(void *), void *data);

/* Process pending events without blocking. Returns the signal (SIGINT/SIGTERM) received so far,
 * or 0. main calls it before irreversible steps (writing the submission). */
int run_ctx_poll_signal(run_ctx_t *ctx);

/* Sleep for seconds while still handling signals. Returns 0, or the signal that cut it short. */
int run_ctx_sleep(run_ctx_t *ctx, double seconds);

/* The console (worker lines, notes, progress) that main should print through. */
progress_t *run_ctx_console(run_ctx_t *ctx);

/* Wall seconds during which at least one worker process was alive, summed over the run. */
double run_ctx_worker_seconds(const run_ctx_t *ctx);

/* Wall seconds spent validating worker outputs and recording them for resume. */
double run_ctx_validate_seconds(const run_ctx_t *ctx);

/* Outputs validated so far (run_ctx_validate_seconds is their total time). */
int run_ctx_validated(const run_ctx_t *ctx);

/* Workers started so far (attempts that reached uv_spawn successfully). */
int run_ctx_spawned(const run_ctx_t *ctx);

/* 1 when pid belongs to one of the process groups this run started (a worker or one of its
 * children), else 0. Used to decide which GPU memory holders orchestrate may kill. */
int run_ctx_owns_pid(const run_ctx_t *ctx, pid_t pid);

/* "SIGTERM", "SIGKILL", ... ("signal N" when unnamed). The buffer is static: use it at once. */
const char *run_signal_name(int sig);

#endif
