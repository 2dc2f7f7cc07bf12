/* run.c: run_stage: put a stage's pending jobs on the slots, longest first, and decide what each
 * finished attempt means: done (after validate_output), retry, retry with the batch halved, or
 * stop the run. Also the run context (one libuv loop, SIGINT/SIGTERM/SIGHUP) and its accounting.
 *
 * The retry rules (docs/workers.md, "Exit codes"):
 *   0           validate the output; a bad output is a failed attempt (retried), except a
 *               wrong header, which every attempt would repeat: the run fails now;
 *   75, or "CUDA out of memory" in a command worker's output
 *               retry with the batch size halved; halvings do not count against `retries`;
 *               at batch size 1 it is an ordinary failure;
 *   65, 64      bad input / bad command line: the run fails now with the worker's last line;
 *   126, 127    the shim could not exec the command: a configuration error, the run fails now;
 *   other, or killed by a signal (timeouts included)
 *               an ordinary failure: retried while failures <= `retries`.
 * A job that fails for good stops the run: no new attempts start and running workers get
 * SIGTERM (SIGKILL after kill_grace_s). Their outputs, if they finish, are still validated and
 * recorded, so that a rerun can reuse them. Under a deadline (budget.h) a job that fails for good
 * is only noted (the run goes on without it), and at the budget's stop time the running workers
 * are stopped the same way (their jobs JOB_CUT) and the jobs not started become JOB_SKIPPED.
 *
 * What it does not do: build command lines (spawn.c), touch processes (attempt.c), or merge.
 */
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "exit_codes.h"
#include "run.h"
#include "run_internal.h"
#include "shim.h"
#include "spawn.h"

#define TICK_TTY_MS 250
#define TICK_PLAIN_MS 1000

const char *run_signal_name(int sig) {
    static char buf[32];
    const char *abbrev = sigabbrev_np(sig);
    if (abbrev) snprintf(buf, sizeof buf, "SIG%s", abbrev);
    else snprintf(buf, sizeof buf, "signal %d", sig);
    return buf;
}

/* Copy src into dst (n bytes), truncating. */
static void copy_str(char *dst, size_t n, const char *src) {
    size_t len = strlen(src);
    if (len >= n) len = n - 1;
    memcpy(dst, src, len);
    dst[len] = '\0';
}

/* ------------------------------------------------------------------ stopping */

/* Mark the run as stopping and stop every running attempt (attempt_stop; hard sends SIGKILL at
 * once). */
static void stop_all(run_ctx_t *ctx, int hard) {
    ctx->stopping = 1;
    for (int s = 0; s < ctx->n_slots; s++)
        if (ctx->running && ctx->running[s]) attempt_stop(ctx->running[s], hard);
}

/* Fail the run with err's message (the first failure wins) and stop every worker. */
static void fail_run(run_ctx_t *ctx, const err_t *err) {
    if (!ctx->failed) {
        ctx->failed = 1;
        ctx->fail = *err;
        progress_note(&ctx->console, "orchestrate: %s", err->msg);
        if (ctx->n_running > 0)
            progress_note(&ctx->console, "orchestrate: stopping %d running worker(s)", ctx->n_running);
    }
    stop_all(ctx, 0);
}

/* A job failed for good (its status already set): without a deadline the run fails (fail_run);
 * with one the run goes on without the job, which the merge leaves out. */
static void give_up(run_ctx_t *ctx, const err_t *err) {
    if (!ctx->budget) {
        fail_run(ctx, err);
        return;
    }
    progress_note(&ctx->console, "orchestrate: %s; with a deadline set, the run goes on without this job", err->msg);
}

/* The deadline timer: the budget's stop time came. Stop every running worker (TERM, grace,
 * KILL) and start nothing more. */
static void on_deadline(uv_timer_t *t) {
    run_ctx_t *ctx = t->data;
    if (ctx->stopping) return;
    ctx->cut = 1;
    progress_note(&ctx->console, "orchestrate: deadline: time to stop (%.1f s reserved for merging): stopping %d "
                  "running worker(s); %d job(s) not started are skipped",
                  ctx->budget->reserve_s, ctx->n_running, ctx->q_tail - ctx->q_head);
    stop_all(ctx, 0);
}

/* SIGINT/SIGTERM/SIGHUP handler: the first signal stops the workers gracefully, a second one kills them. */
static void on_signal(uv_signal_t *h, int signum) {
    run_ctx_t *ctx = h->data;
    if (!ctx->interrupted) {
        ctx->interrupted = signum;
        progress_note(&ctx->console, "orchestrate: %s received: stopping workers (SIGKILL after %g s; "
                      "send it again to kill them now)", run_signal_name(signum), ctx->plan->kill_grace_s);
        stop_all(ctx, 0);
    } else {
        stop_all(ctx, 1);
    }
}

/* ------------------------------------------------------------------ context */

run_ctx_t *run_ctx_create(const plan_t *plan, int quiet, err_t *err) {
    run_ctx_t *ctx = xcalloc(1, sizeof *ctx);
    ctx->plan = plan;
    int rc = uv_loop_init(&ctx->loop);
    if (rc < 0) {
        free(ctx);
        err_fmt(err, "uv_loop_init: %s", uv_strerror(rc));
        return NULL;
    }
    size_t len = sizeof ctx->shim_exe;
    rc = uv_exepath(ctx->shim_exe, &len);
    if (rc < 0) {
        uv_loop_close(&ctx->loop);
        free(ctx);
        err_fmt(err, "cannot find orchestrate's own executable (needed for the worker shim): %s",
                uv_strerror(rc));
        return NULL;
    }
    // SIGHUP (a closed terminal, a killed notebook kernel) stops the run like SIGTERM.
    static const int stop_signals[N_STOP_SIGNALS] = {SIGINT, SIGTERM, SIGHUP};
    for (int i = 0; i < N_STOP_SIGNALS; i++) {
        UV_CHECK(uv_signal_init(&ctx->loop, &ctx->sig_stop[i]));
        ctx->sig_stop[i].data = ctx;
        UV_CHECK(uv_signal_start(&ctx->sig_stop[i], on_signal, stop_signals[i]));
        // Signal watchers must not keep uv_run alive on their own: run_stage returns when the
        // last worker is done.
        uv_unref((uv_handle_t *)&ctx->sig_stop[i]);
    }
    UV_CHECK(uv_timer_init(&ctx->loop, &ctx->tick));
    UV_CHECK(uv_timer_init(&ctx->loop, &ctx->sleeper));
    UV_CHECK(uv_timer_init(&ctx->loop, &ctx->deadline));
    ctx->tick.data = ctx->sleeper.data = ctx->deadline.data = ctx;
    progress_init(&ctx->console, stdout, isatty(STDOUT_FILENO), quiet);
    ctx->rate_rows = xcalloc((size_t)plan->n_models + 1, sizeof *ctx->rate_rows);
    ctx->rate_s = xcalloc((size_t)plan->n_models + 1, sizeof *ctx->rate_s);
    ctx->cpu_threads = spawn_cpu_threads(plan->cpu_workers);
    return ctx;
}

void run_ctx_destroy(run_ctx_t *ctx) {
    if (!ctx) return;
    for (int i = 0; i < N_STOP_SIGNALS; i++) uv_close((uv_handle_t *)&ctx->sig_stop[i], NULL);
    uv_close((uv_handle_t *)&ctx->tick, NULL);
    uv_close((uv_handle_t *)&ctx->sleeper, NULL);
    uv_close((uv_handle_t *)&ctx->deadline, NULL);
    uv_run(&ctx->loop, UV_RUN_DEFAULT);
    int rc = uv_loop_close(&ctx->loop);
    ASSERT(rc == 0);  // every handle closed: no worker can be left unsupervised
    free(ctx->pgids);
    free(ctx->rate_rows), free(ctx->rate_s);
    free(ctx);
}

void run_ctx_set_budget(run_ctx_t *ctx, const budget_t *b) {
    ctx->budget = b;
    progress_set_deadline(&ctx->console, b ? b->stop_at : 0);
}

void run_ctx_set_sampler(run_ctx_t *ctx, void (*fn)(void *), void *data) {
    ctx->sampler = fn;
    ctx->sampler_data = data;
}

int run_ctx_poll_signal(run_ctx_t *ctx) {
    uv_run(&ctx->loop, UV_RUN_NOWAIT);
    return ctx->interrupted;
}

/* The sleeper timer's callback: nothing to do; its expiry lets uv_run in run_ctx_sleep return. */
static void on_sleep_done(uv_timer_t *t) {
    (void)t;
}

/* Poll during run_ctx_sleep: end the sleep early once a signal arrived. */
static void on_sleep_check(uv_timer_t *t) {
    run_ctx_t *ctx = t->data;
    if (ctx->interrupted) UV_CHECK(uv_timer_stop(&ctx->sleeper));
}

int run_ctx_sleep(run_ctx_t *ctx, double seconds) {
    if (ctx->interrupted) return ctx->interrupted;
    UV_CHECK(uv_timer_start(&ctx->sleeper, on_sleep_done, (uint64_t)(seconds * 1000), 0));
    // The tick timer polls for a signal so that the sleep ends early; the signal watchers are
    // unref'ed and would not wake uv_run by themselves.
    UV_CHECK(uv_timer_start(&ctx->tick, on_sleep_check, 50, 50));
    uv_unref((uv_handle_t *)&ctx->tick);
    uv_run(&ctx->loop, UV_RUN_DEFAULT);
    UV_CHECK(uv_timer_stop(&ctx->tick));
    UV_CHECK(uv_timer_stop(&ctx->sleeper));
    return ctx->interrupted;
}

progress_t *run_ctx_console(run_ctx_t *ctx) {
    return &ctx->console;
}

double run_ctx_worker_seconds(const run_ctx_t *ctx) {
    return ctx->busy_s + (ctx->n_live > 0 ? clock_mono_s() - ctx->busy_since : 0);
}

double run_ctx_validate_seconds(const run_ctx_t *ctx) {
    return ctx->validate_s;
}

int run_ctx_validated(const run_ctx_t *ctx) {
    return ctx->validated;
}

int run_ctx_spawned(const run_ctx_t *ctx) {
    return ctx->spawned;
}

int run_ctx_owns_pid(const run_ctx_t *ctx, pid_t pid) {
    pid_t pg = getpgid(pid);
    if (pg < 0) return 0;
    for (int i = 0; i < ctx->n_pgids; i++)
        if (ctx->pgids[i] == pg) return 1;
    return 0;
}

/* ------------------------------------------------------------------ scheduling */

/* qsort_r order of job indices (arg: the jobs): larger cost first, then index order. */
static int cmp_cost_desc(const void *pa, const void *pb, void *arg) {
    const job_t *jobs = arg;
    int a = *(const int *)pa, b = *(const int *)pb;
    if (jobs[a].cost != jobs[b].cost) return jobs[a].cost > jobs[b].cost ? -1 : 1;
    return a < b ? -1 : a > b;  // stable: plan order among equals
}

void run_order_jobs(const job_t *jobs, int *idx, int n) {
    qsort_r(idx, (size_t)n, sizeof *idx, cmp_cost_desc, (void *)jobs);
}

/* Recompute rows and jobs done (reused jobs left out) and pass them to the progress display. */
static void update_progress(run_ctx_t *ctx) {
    size_t done = 0;
    int jobs_done = 0;
    for (int j = 0; j < ctx->n_jobs; j++) {
        if (ctx->jobs[j].status == JOB_REUSED) continue;
        done += ctx->jobs[j].rows_done;
        jobs_done += ctx->jobs[j].status == JOB_DONE;
    }
    progress_set(&ctx->console, done, jobs_done, ctx->n_running);
}

/* Under a deadline: 1 when job j, started now, is predicted to end after the stop time, at its
 * model's measured rate (rows/s per slot over its ended attempts); then the job is marked
 * JOB_SKIPPED and the console says why. 0 without a deadline or a measured rate. */
static int skip_hopeless(run_ctx_t *ctx, int j) {
    job_t *job = &ctx->jobs[j];
    double rows = ctx->rate_rows[job->model], secs = ctx->rate_s[job->model];
    if (!ctx->budget || !(rows > 0) || !(secs > 0)) return 0;
    double rate = rows / secs, need = (double)job->n_rows / rate;
    double left = budget_left(ctx->budget, clock_mono_s());
    if (need <= left) return 0;
    job->status = JOB_SKIPPED;
    progress_note(&ctx->console, "orchestrate: deadline: skipping %s: it cannot finish in time (%zu rows at %.1f "
                  "rows/s per slot measured = %.1f s; %.1f s left before the stop)",
                  job->name, job->n_rows, rate, need, left > 0 ? left : 0);
    return 1;
}

/* Count an ended attempt's rows and time into its model's measured rate (rows_done comes from
 * its progress lines; a finished job counts all its rows). */
static void measure_rate(run_ctx_t *ctx, const attempt_t *a) {
    const job_t *job = &ctx->jobs[a->job];
    double rows = job->status == JOB_DONE ? (double)job->n_rows : (double)job->rows_done;
    double secs = (a->spawned ? a->t_exit : clock_mono_s()) - a->t_start;
    if (rows > 0 && secs > 0) ctx->rate_rows[job->model] += rows, ctx->rate_s[job->model] += secs;
}

/* Start the next pending job on every free slot, unless the run is stopping. */
static void schedule(run_ctx_t *ctx) {
    for (int s = 0; s < ctx->n_slots && !ctx->stopping; s++) {
        if (ctx->running[s] || ctx->q_head == ctx->q_tail) continue;
        int j = ctx->queue[ctx->q_head++];
        if (skip_hopeless(ctx, j)) {
            s--;   // the slot is still free: try the next job on it
            continue;
        }
        err_t err = {0};
        attempt_t *a = attempt_start(ctx, j, s, &err);
        if (!a) {
            ctx->jobs[j].status = JOB_FAILED;
            copy_str(ctx->jobs[j].last_error, sizeof ctx->jobs[j].last_error, err.msg);
            err_prefix(&err, "job %s", ctx->jobs[j].name);
            give_up(ctx, &err);
            if (ctx->stopping) return;
            s--;   // the slot is still free: try the next job on it
            continue;
        }
        ctx->running[s] = a;
        ctx->n_running++;
    }
    update_progress(ctx);
}

/* Put job j back at the head of the queue as pending, to be retried next; it must have been taken
 * from the queue. */
static void requeue_front(run_ctx_t *ctx, int j) {
    ASSERT(ctx->q_head > 0);  // the job was taken from the queue, so there is room in front
    ctx->queue[--ctx->q_head] = j;
    ctx->jobs[j].status = JOB_PENDING;
}

/* Periodic timer: refresh the progress counters, redraw or print the progress line, and call the
 * sampler when one is due. */
static void on_tick(uv_timer_t *t) {
    run_ctx_t *ctx = t->data;
    double now = clock_mono_s();
    update_progress(ctx);
    progress_tick(&ctx->console, now);
    if (ctx->sampler && now - ctx->t_sampled >= RUN_SAMPLE_INTERVAL_S) {
        ctx->t_sampled = now;
        ctx->sampler(ctx->sampler_data);
    }
}

void run_attempt_progress(run_ctx_t *ctx, attempt_t *a, double done, double total) {
    job_t *job = &ctx->jobs[a->job];
    if (!(total > 0) || !(done >= 0)) return;
    double frac = done > total ? 1.0 : done / total;
    // Workers may count batches or tokens; scale to the rows this job owns.
    job->rows_done = (size_t)(frac * (double)job->n_rows);
}

/* ------------------------------------------------------------------ outcomes */

/* Describe how an attempt ended ("not started", "killed by SIGTERM (timeout)", "exit 3") into buf
 * (n bytes). */
static void describe_exit(const attempt_t *a, char *buf, size_t n) {
    if (a->spawn_error) snprintf(buf, n, "not started");
    else if (a->term_signal)
        snprintf(buf, n, "killed by %s%s", run_signal_name(a->term_signal), a->timed_out ? " (timeout)" : "");
    else snprintf(buf, n, "exit %d%s", (int)a->exit_status, a->timed_out ? " (timeout)" : "");
}

/* Validate a finished attempt's output; on success record it for resume and mark the job done.
 * Returns 0, or -1 with why in job->last_error (the output is deleted) and *contract set when a
 * retry would repeat the failure (validate_output's EXIT_DATAERR). */
static int accept_output(run_ctx_t *ctx, attempt_t *a, job_t *job, int *contract) {
    double t0 = clock_mono_s();
    err_t err = {0};
    int rc = validate_output(ctx->plan, job, &err);
    if (rc == 0) {
        err_t rerr = {0};
        if (resume_record(ctx->plan, job, &rerr) != 0)
            progress_note(&ctx->console, "orchestrate: warning: %s: cannot record for resume: %s",
                          job->name, rerr.msg);
        job->status = JOB_DONE;
        job->rows_done = job->n_rows;
        char *partial = job_partial_path(job);   // the full output replaces it
        unlink(partial);
        free(partial);
        attempt_log(a, "output accepted: %s (%zu rows)", job->output_path, job->n_rows);
    } else {
        *contract = err.code == EXIT_DATAERR;
        err_prefix(&err, "output rejected");
        copy_str(job->last_error, sizeof job->last_error, err.msg);
        attempt_log(a, "%s", job->last_error);
        unlink(job->output_path);
    }
    ctx->validate_s += clock_mono_s() - t0;
    ctx->validated++;
    return rc;
}

/* Decide what a finished attempt means for its job and the run. */
static void judge(run_ctx_t *ctx, attempt_t *a) {
    job_t *job = &ctx->jobs[a->job];
    const plan_model_t *m = &ctx->plan->models[job->model];
    int k = a->index;
    int code = a->spawn_error ? -1 : a->term_signal ? -a->term_signal : (int)a->exit_status;
    job->exit_codes[k] = code;
    job->timed_out[k] = a->timed_out;
    job->t_end = job->att_end[k] = clock_wall_s();
    char how[96];
    describe_exit(a, how, sizeof how);
    attempt_log(a, "attempt %d ended: %s after %.1f s", k + 1, how,
                (a->spawned ? a->t_exit : clock_mono_s()) - a->t_start);

    int contract = 0;
    if (code == 0 && !a->timed_out) {
        if (accept_output(ctx, a, job, &contract) == 0) return;
    } else if (a->last_err[0]) {
        copy_str(job->last_error, sizeof job->last_error, a->last_err);
    } else {
        snprintf(job->last_error, sizeof job->last_error, "%s (no output on stderr)", how);
    }

    if (a->stopped && ctx->cut && !ctx->interrupted) {
        job->status = JOB_CUT;  // the deadline stopped it: the merge uses its partial output only
        attempt_remove_outputs(job);
        return;
    }
    if (a->stopped && (ctx->interrupted || ctx->failed)) {
        job->status = JOB_PENDING;  // not a verdict on the job: we stopped it
        attempt_remove_outputs(job);
        return;
    }
    err_t err = {0};
    if (contract) {
        job->status = JOB_FAILED;
        attempt_remove_outputs(job);
        err_fmt(&err, "job %s: the worker's output breaks the contract in a way a retry would repeat, "
                "so it is not retried: %s (docs/workers.md, Output)", job->name, job->last_error);
        give_up(ctx, &err);
        return;
    }
    if (code == EXIT_DATAERR || code == EXIT_USAGE || code == EXIT_UNAVAILABLE) {
        job->status = JOB_FAILED;
        attempt_remove_outputs(job);
        err_fmt(&err, "job %s: worker %s (exit %d): %s (log: %s)", job->name,
                code == EXIT_DATAERR  ? "reported bad input"
                : code == EXIT_USAGE ? "rejected its command line"
                                     : "found a resource missing",
                code,
                job->last_error, job->log_path);
        give_up(ctx, &err);
        return;
    }
    if (code == SHIM_EXIT_NOT_FOUND || code == SHIM_EXIT_NOT_EXECUTABLE) {
        job->status = JOB_FAILED;
        err_fmt(&err, "job %s: the worker command could not be started (exit %d): %s", job->name,
                code, job->last_error);
        give_up(ctx, &err);
        return;
    }
    int oom = code == EXIT_OOM || (!m->is_lm_worker && code != 0 && a->cuda_oom);
    int next_batch = job->batch_size;
    if (oom && job->batch_size > 1) {
        next_batch = job->batch_size / 2;
    } else {
        ctx->failures[a->job]++;
    }
    if (ctx->failures[a->job] > m->retries || job->attempts >= JOB_MAX_ATTEMPTS) {
        job->status = JOB_FAILED;
        attempt_remove_outputs(job);
        err_fmt(&err, "job %s failed after %d attempt(s); last: %s: %s (log: %s)", job->name,
                job->attempts, how, job->last_error, job->log_path);
        give_up(ctx, &err);
        return;
    }
    if (next_batch != job->batch_size) {
        progress_note(&ctx->console, "[%s] out of memory at batch size %d (%s); retrying with batch size %d",
                      job->name, job->batch_size, how, next_batch);
        attempt_log(a, "out of memory at batch size %d: retrying with %d", job->batch_size, next_batch);
        job->batch_size = next_batch;
    } else {
        progress_note(&ctx->console, "[%s] attempt %d failed (%s): %s; retrying (%d of %d retries left)",
                      job->name, k + 1, how, job->last_error, m->retries - ctx->failures[a->job],
                      m->retries);
    }
    requeue_front(ctx, a->job);
}

void run_attempt_done(run_ctx_t *ctx, attempt_t *a) {
    ASSERT(ctx->running[a->slot] == a);
    ctx->running[a->slot] = NULL;
    ctx->n_running--;
    judge(ctx, a);
    measure_rate(ctx, a);
    attempt_free(a);
    schedule(ctx);
    if (ctx->n_running == 0 && (ctx->stopping || ctx->q_head == ctx->q_tail)) UV_CHECK(uv_timer_stop(&ctx->tick));
}

/* ------------------------------------------------------------------ run_stage */

int run_stage(run_ctx_t *ctx, job_t *jobs, int n_jobs, const slot_t *slots, int n_slots, err_t *err) {
    ASSERT(n_slots > 0);
    if (run_ctx_poll_signal(ctx))
        return err_code(err, 128 + ctx->interrupted, "interrupted by %s", run_signal_name(ctx->interrupted));
    ctx->jobs = jobs;
    ctx->n_jobs = n_jobs;
    ctx->slots = slots;
    ctx->n_slots = n_slots;
    ctx->queue = xcalloc((size_t)n_jobs + 1, sizeof *ctx->queue);
    ctx->failures = xcalloc((size_t)n_jobs + 1, sizeof *ctx->failures);
    ctx->running = xcalloc((size_t)n_slots, sizeof *ctx->running);
    ctx->q_head = ctx->q_tail = 0;
    ctx->n_running = 0;
    ctx->stopping = ctx->failed = ctx->cut = 0;
    memset(&ctx->fail, 0, sizeof ctx->fail);

    size_t rows = 0;
    for (int j = 0; j < n_jobs; j++) {
        if (jobs[j].status != JOB_PENDING) continue;
        ctx->queue[ctx->q_tail++] = j;
        rows += jobs[j].n_rows;
        jobs[j].slot = -1;
        jobs[j].rows_done = 0;
        const plan_model_t *m = &ctx->plan->models[jobs[j].model];
        if (jobs[j].batch_size <= 0) jobs[j].batch_size = m->batch_size > 0 ? m->batch_size : 1;
    }
    run_order_jobs(jobs, ctx->queue, ctx->q_tail);

    if (ctx->budget && ctx->q_tail > 0 && budget_left(ctx->budget, clock_mono_s()) <= 0) {
        progress_note(&ctx->console, "orchestrate: deadline: no time left for stage %s: skipping its %d job(s)",
                      ctx->plan->models[jobs[ctx->queue[0]].model].name, ctx->q_tail);
        ctx->cut = ctx->stopping = 1;
    } else if (ctx->q_tail > 0) {
        const char *stage = ctx->plan->models[jobs[ctx->queue[0]].model].name;
        double now = clock_mono_s();
        progress_begin(&ctx->console, stage, rows, ctx->q_tail, now);
        uint64_t tick_ms = ctx->console.tty ? TICK_TTY_MS : TICK_PLAIN_MS;
        UV_CHECK(uv_timer_start(&ctx->tick, on_tick, tick_ms, tick_ms));
        uv_unref((uv_handle_t *)&ctx->tick);
        if (ctx->budget) {
            double left = budget_left(ctx->budget, now);
            UV_CHECK(uv_timer_start(&ctx->deadline, on_deadline, (uint64_t)(left * 1000), 0));
            uv_unref((uv_handle_t *)&ctx->deadline);
        }
        schedule(ctx);
        uv_run(&ctx->loop, UV_RUN_DEFAULT);
        UV_CHECK(uv_timer_stop(&ctx->tick));
        UV_CHECK(uv_timer_stop(&ctx->deadline));
        update_progress(ctx);
        progress_end(&ctx->console, clock_mono_s(),
                     ctx->interrupted ? "interrupted" : ctx->failed ? "failed" : ctx->cut ? "cut by the deadline" : NULL);
    }
    ASSERT(ctx->n_running == 0);
    if (ctx->cut && !ctx->interrupted)   // jobs the deadline left unstarted (or to retry)
        for (int q = ctx->q_head; q < ctx->q_tail; q++) ctx->jobs[ctx->queue[q]].status = JOB_SKIPPED;

    int rc = 0;
    if (ctx->interrupted) {
        rc = err_code(err, 128 + ctx->interrupted, "interrupted by %s; workers stopped",
                      run_signal_name(ctx->interrupted));
    } else if (ctx->failed) {
        *err = ctx->fail;
        err->code = 1;
        rc = -1;
    } else {
        for (int j = 0; j < n_jobs; j++)
            ASSERT(jobs[j].status == JOB_DONE || jobs[j].status == JOB_REUSED ||
                   (ctx->budget && (jobs[j].status == JOB_FAILED || jobs[j].status == JOB_CUT ||
                                    jobs[j].status == JOB_SKIPPED)));
    }
    free(ctx->queue), free(ctx->failures), free(ctx->running);
    ctx->queue = ctx->failures = NULL;
    ctx->running = NULL;
    ctx->jobs = NULL;
    ctx->slots = NULL;
    ctx->n_jobs = ctx->n_slots = 0;
    return rc;
}
