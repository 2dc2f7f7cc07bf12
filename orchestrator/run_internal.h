/* run_internal.h: the state shared by run.c (scheduling, outcomes, retries) and attempt.c (one
 * worker process under libuv: spawn, pipes, timeout, kill). Not for other modules. */
#ifndef ORCH_RUN_INTERNAL_H
#define ORCH_RUN_INTERNAL_H

#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/types.h>
#include <uv.h>

#include "budget.h"
#include "orch.h"
#include "progress.h"

typedef struct attempt attempt_t;

/* For libuv calls that fail only on a programming error (a closed handle, a bad argument):
 * abort with the statement, file:line and libuv's message, like ASSERT. */
#define UV_CHECK(call)                                                                      \
    do {                                                                                    \
        int uv_check_rc_ = (call);                                                          \
        if (uv_check_rc_ < 0) {                                                             \
            fprintf(stderr, "fatal: %s failed at %s:%d: %s\n", #call, __FILE__, __LINE__,   \
                    uv_strerror(uv_check_rc_));                                             \
            abort();                                                                        \
        }                                                                                   \
    } while (0)

#define N_STOP_SIGNALS 3        // SIGINT, SIGTERM, SIGHUP: each stops the run (run.c)

enum { STREAM_OUT = 0, STREAM_ERR = 1, STREAM_PROGRESS = 2, N_STREAMS = 3 };
#define STREAM_LINE_MAX 4096   // longer lines are split; a progress line is far shorter
#define STREAM_CR_INTERVAL_S 5.0 // "\r"-ended lines (tqdm bars) are shown at most this often

typedef struct {
    uv_pipe_t pipe;             // the worker's end of this stream (stdout, stderr or progress fd)
    attempt_t *a;               // the attempt that owns this stream
    int kind;                   // STREAM_*
    int closed;                 // uv_close called
    char line[STREAM_LINE_MAX]; // the partial line received so far
    size_t n;                   // bytes in line
    char pend[STREAM_LINE_MAX]; // the latest "\r"-ended line not shown yet (superseded by the next)
    size_t pend_n;              // bytes in pend (0: none)
    int after_cr;               // the last line end was a "\r" after text (so "\r\n" is one end)
    double t_cr_shown;          // monotonic time a "\r"-ended line was last shown
    char rbuf[65536];           // libuv read buffer
} stream_t;

struct attempt {
    run_ctx_t *ctx;             // the run this attempt belongs to (not owned)
    int job;                    // index into ctx->jobs
    int slot;                   // index into ctx->slots
    int index;                  // 0-based attempt number of the job
    uv_process_t proc;          // the worker process; closed only in its exit callback
    uv_timer_t timer;           // timeout, then kill grace, then (after exit) the EOF wait
    stream_t streams[N_STREAMS];  // stdout, stderr and progress pipes, by STREAM_*
    int handles_open;           // libuv handles not yet closed; the attempt ends at 0
    int timer_closed;           // uv_close called on timer
    int spawned;                // uv_spawn succeeded
    int spawn_error;            // uv_spawn's negative errno, or 0
    int exited;                 // exit callback ran
    int64_t exit_status;        // exit code from the exit callback (valid when exited)
    int term_signal;            // signal that ended the worker, or 0
    int kill_stage;             // 0 nothing sent, 1 SIGTERM sent to the group (or step), 2 SIGKILL
                                // sent, 3 SIGKILL to srun after the step outlived scancel KILL
    int timed_out;              // killed because the model's timeout_s passed
    int stopped;                // killed because the run is stopping
    int cuda_oom;               // "CUDA out of memory" appeared in the output
    int log_fd;                 // job->log_path opened for append, or -1
    pid_t pid;                  // also the process group id (the worker leads its own group)
    double t_start, t_exit;     // monotonic seconds
    char last_err[512];         // last non-empty stderr line (else stdout line)
    int err_line_seen;          // last_err holds a stderr line (which stdout lines never replace)
    char step[48];              // Slurm "<jobid>.<stepid>" from the step marker, or "" (local / not yet)
};

struct run_ctx {
    const plan_t *plan;         // the plan being run (not owned)
    uv_loop_t loop;             // the one event loop of the run
    uv_signal_t sig_stop[N_STOP_SIGNALS];  // SIGINT, SIGTERM, SIGHUP watchers
    uv_timer_t tick;            // progress redraw / periodic line
    uv_timer_t sleeper;         // run_ctx_sleep
    int interrupted;            // first SIGINT/SIGTERM/SIGHUP received, or 0
    char shim_exe[PATH_MAX];    // this executable, re-run as `--shim`
    progress_t console;         // progress display on stderr
    int cpu_threads;            // --threads for lm-worker on CPU slots
    const budget_t *budget;     // the deadline's budget (not owned), or NULL: no deadline
    uv_timer_t deadline;        // fires at budget->stop_at inside run_stage
    int cut;                    // the deadline stopped the stage's workers (jobs become JOB_CUT)
    void (*sampler)(void *);    // called from the progress tick at most every SAMPLE_INTERVAL_S, or NULL
    void *sampler_data;         // its argument
    double t_sampled;           // monotonic time of the last call
    double *rate_rows;          // (plan->n_models) rows finished by the model's ended attempts
    double *rate_s;             // (plan->n_models) seconds those attempts ran: rows/s per slot
    // the stage being run (valid inside run_stage)
    job_t *jobs;                // (n_jobs) the stage's jobs (not owned)
    int n_jobs;                 // entries in jobs
    const slot_t *slots;        // (n_slots) where attempts may run (not owned)
    int n_slots;                // entries in slots and running
    int *queue;                 // (n_jobs) pending job indices, longest first, from q_head
    int q_head, q_tail;         // queue[q_head..q_tail) is still pending
    int *failures;              // (n_jobs) failed attempts counted against `retries`
    attempt_t **running;        // (n_slots) the attempt on each slot, or NULL
    int n_running;              // non-NULL entries in running
    int stopping;               // start nothing new; running workers are being stopped
    int failed;                 // a job failed for good; `fail` says why
    err_t fail;                 // why the stage failed (valid when failed)
    // accounting for report.json
    int n_live;                 // worker processes alive now
    double busy_since, busy_s;  // monotonic start of the current busy span, total busy time
    double validate_s;          // total seconds spent in validate_output
    int validated;              // outputs validate_output was run on
    int spawned;                // worker processes spawned by this run
    pid_t *pgids;               // (n_pgids) every process group started by this run
    int n_pgids, cap_pgids;     // entries used / allocated in pgids
};

/* attempt.c: start attempt `a->index` of job on slot. Returns the attempt (which finishes later
 * through run_attempt_done, also when uv_spawn fails), or NULL with err set when the command
 * line cannot be built (a configuration error). */
attempt_t *attempt_start(run_ctx_t *ctx, int job, int slot, err_t *err);

/* Stop the attempt's worker: SIGTERM to its group and SIGKILL after the plan's kill_grace_s, or
 * SIGKILL at once when hard. Marks the attempt as stopped. */
void attempt_stop(attempt_t *a, int hard);

/* Append one line to the attempt's log (prefixed "orchestrate: "). */
void attempt_log(attempt_t *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Delete job's output and any "<output>.tmp*" next to it: before every attempt, so that it
 * cannot pass off an earlier attempt's (partial) file as its own, and after a job failed for
 * good, so that nothing half-written stays behind. */
void attempt_remove_outputs(const job_t *job);

/* Close the log and free the attempt. Its handles must all be closed. */
void attempt_free(attempt_t *a);

/* run.c: called exactly once per attempt, after its exit callback and after every handle
 * (process, pipes, timer) is closed. */
void run_attempt_done(run_ctx_t *ctx, attempt_t *a);

/* run.c: progress line from a worker: done of total items. */
void run_attempt_progress(run_ctx_t *ctx, attempt_t *a, double done, double total);

#endif
