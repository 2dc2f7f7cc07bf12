/* attempt.c: one worker process under libuv: spawn it through the PDEATHSIG shim in its own
 * process group, stream its stdout/stderr to the job's log and the console, read its progress
 * pipe, enforce the timeout (SIGTERM to the group, grace, SIGKILL) and report when it is over.
 *
 * libuv rules this file follows (see docs/architecture.md): no SIGCHLD handler and no
 * waitpid(-1), libuv reaps; a process handle is closed only in its exit callback; an attempt is
 * over only when the exit callback ran AND every pipe reached EOF and every handle is closed;
 * signals go to the whole group (-pid), never to a lone pid, so helper processes a worker
 * forked die with it. It does not decide what an exit code means; run.c does.
 */
#include <dirent.h>
#include <fcntl.h>
#include <libgen.h>
#include <signal.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "atomic_file.h"
#include "executor_slurm.h"
#include "run.h"
#include "run_internal.h"
#include "spawn.h"
#include "shim.h"

extern char **environ;

/* How long the pipes may stay open after the worker exited before we stop waiting for EOF
 * (a process that left the worker's group, e.g. with setsid, may still hold them). */
#define EOF_WAIT_MS 2000

static void on_handle_closed(uv_handle_t *h);

/* ------------------------------------------------------------------ logging */

void attempt_log(attempt_t *a, const char *fmt, ...) {
    if (a->log_fd < 0) return;
    char buf[2048];
    int n = snprintf(buf, sizeof buf, "orchestrate: ");
    va_list ap;
    va_start(ap, fmt);
    n += vsnprintf(buf + n, sizeof buf - (size_t)n - 1, fmt, ap);
    va_end(ap);
    if (n > (int)sizeof buf - 2) n = (int)sizeof buf - 2;
    buf[n++] = '\n';
    // Best effort: a full disk must not stop the run; the console still shows the lines.
    ssize_t w = write(a->log_fd, buf, (size_t)n);
    (void)w;
}

/* Open path for appending (O_CLOEXEC), creating its directory first. Only a regular file will
 * do: the open is non-blocking, so a FIFO there cannot stall the loop. Returns the fd, or -1 with
 * err set. */
static int open_log(const char *path, err_t *err) {
    char *dir = xstrdup(path);
    fs_mkdir_p(dirname(dir), err);
    free(dir);
    struct stat st = {0};
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NONBLOCK, 0644);
    if (fd < 0 && errno == ENXIO) return err_fmt(err, "not a regular file (a FIFO)");  // no reader
    if (fd < 0) return err_fmt(err, "%s", strerror(errno));
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return err_fmt(err, "not a regular file (%s)", S_ISFIFO(st.st_mode) ? "a FIFO" : "a special file");
    }
    return fd;
}

/* ------------------------------------------------------------------ stale outputs */

void attempt_remove_outputs(const job_t *job) {
    unlink(job->output_path);
    char *copy1 = xstrdup(job->output_path), *copy2 = xstrdup(job->output_path);
    const char *dir = dirname(copy1), *base = basename(copy2);
    size_t blen = strlen(base);
    DIR *d = opendir(dir);
    struct dirent *ent;
    while (d && (ent = readdir(d))) {
        if (strncmp(ent->d_name, base, blen) != 0 || strncmp(ent->d_name + blen, ".tmp", 4) != 0) continue;
        size_t n = strlen(dir) + strlen(ent->d_name) + 2;
        char *p = xmalloc(n);
        snprintf(p, n, "%s/%s", dir, ent->d_name);
        unlink(p);
        free(p);
    }
    if (d) closedir(d);
    free(copy1), free(copy2);
}

/* ------------------------------------------------------------------ Slurm steps */

/* Close callback of a scancel process handle: free it. */
static void on_scancel_closed(uv_handle_t *h) {
    free(h);
}

/* Exit callback of scancel: nothing to wait for; close its handle. */
static void on_scancel_exit(uv_process_t *p, int64_t status, int term_signal) {
    (void)status, (void)term_signal;
    uv_close((uv_handle_t *)p, on_scancel_closed);
}

static void kill_group(attempt_t *a, int sig);

/* Send sig (SIGTERM or SIGKILL) to the attempt's Slurm step (a->step): `scancel --signal=SIG
 * <job>.<step>`, started and not waited for (srun, and with it the attempt, ends when the step
 * does). scancel's own complaints go to our stderr. */
static void signal_step(attempt_t *a, int sig) {
    char sigarg[32];
    snprintf(sigarg, sizeof sigarg, "--signal=%s", sig == SIGKILL ? "KILL" : "TERM");
    char *args[] = {"scancel", sigarg, a->step, NULL};
    uv_stdio_container_t stdio[3] = {{.flags = UV_IGNORE}, {.flags = UV_IGNORE},
                                     {.flags = UV_INHERIT_FD, .data.fd = 2}};
    uv_process_options_t opt = {0};
    opt.file = "scancel";
    opt.args = args;
    opt.exit_cb = on_scancel_exit;
    opt.stdio_count = 3;
    opt.stdio = stdio;
    uv_process_t *p = xcalloc(1, sizeof *p);
    int rc = uv_spawn(&a->ctx->loop, p, &opt);
    if (rc < 0) {
        attempt_log(a, "cannot run scancel %s %s: %s; signalling srun instead", sigarg, a->step, uv_strerror(rc));
        uv_close((uv_handle_t *)p, on_scancel_closed);
        kill_group(a, sig);
    } else {
        attempt_log(a, "scancel %s %s", sigarg, a->step);
    }
}

/* Stop signal sig (SIGTERM or SIGKILL) for the attempt: to its Slurm step when it runs as one
 * and the step is known, else to its process group (locally: the shim and the worker; under
 * Slurm before the step started: srun, which then gives up the step). Returns 1 when it went
 * through scancel (then the caller arms the last resort, see on_timer), else 0. */
static int stop_signal(attempt_t *a, int sig) {
    if (a->ctx->plan->executor == EXECUTOR_SLURM && a->step[0]) {
        signal_step(a, sig);
        return 1;
    }
    kill_group(a, sig);
    return 0;
}

/* ------------------------------------------------------------------ streams */

/* libuv alloc callback: every read of a stream goes into its own fixed rbuf. */
static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
    (void)suggested;
    stream_t *s = h->data;
    *buf = uv_buf_init(s->rbuf, sizeof s->rbuf);
}

/* One complete line from a stream (no line end, not NUL-terminated). */
static void on_line(stream_t *s, const char *line, size_t len) {
    attempt_t *a = s->a;
    run_ctx_t *ctx = a->ctx;
    size_t pl = strlen(SLURM_PROGRESS_MARKER);
    int slurm_progress = s->kind == STREAM_ERR && ctx->plan->executor == EXECUTOR_SLURM && len > pl &&
                         memcmp(line, SLURM_PROGRESS_MARKER, pl) == 0;
    if (slurm_progress) line += pl, len -= pl;  // a step's progress line, forwarded on stderr
    if (s->kind == STREAM_PROGRESS || slurm_progress) {
        char tmp[128];
        double done, total;
        if (len < sizeof tmp) {
            memcpy(tmp, line, len);
            tmp[len] = '\0';
            if (sscanf(tmp, "progress %lf %lf", &done, &total) == 2) run_attempt_progress(ctx, a, done, total);
        }
        return;
    }
    job_t *job = &ctx->jobs[a->job];
    if (s->kind == STREAM_ERR && ctx->plan->executor == EXECUTOR_SLURM && !a->step[0] &&
        slurm_parse_marker(line, len, a->step, sizeof a->step, job->nodes[a->index], sizeof job->nodes[a->index])) {
        snprintf(job->steps[a->index], sizeof job->steps[a->index], "%s", a->step);
        if (a->kill_stage > 0) signal_step(a, a->kill_stage == 1 ? SIGTERM : SIGKILL);  // asked to stop before
        return;
    }
    int gpu;
    double before, after;
    char why[96];
    if (s->kind == STREAM_ERR && ctx->plan->executor == EXECUTOR_SLURM &&
        slurm_parse_mem(line, len, &gpu, &before, &after, why, sizeof why)) {
        int k = a->index;
        job->step_mem_state[k] = gpu >= 0 ? 1 : 2;
        job->step_gpu[k] = gpu;
        job->step_mem[k][0] = before, job->step_mem[k][1] = after;
        snprintf(job->step_mem_note[k], sizeof job->step_mem_note[k], "%s", why);
        if (gpu >= 0 && after - before > ctx->plan->mem_tolerance_mib)
            progress_note(&ctx->console, "orchestrate: warning: [%s] step %s: GPU %d on %s holds %.0f MiB after the step, "
                          "%.0f MiB over its %.0f MiB before it (tolerance %.0f)", job->name, a->step, gpu,
                          job->nodes[k], after, after - before, before, ctx->plan->mem_tolerance_mib);
        return;
    }
    progress_worker_line(&ctx->console, job->name, line, len);
    // srun's own messages ("srun: error: node: task 0: Exited with exit code 75") are not the
    // worker's reason.
    if (len >= 6 && memcmp(line, "srun: ", 6) == 0) return;
    if (memmem(line, len, "CUDA out of memory", 18)) a->cuda_oom = 1;
    int blank = 1;
    for (size_t i = 0; i < len && blank; i++) blank = line[i] == ' ' || line[i] == '\t';
    // The last stderr line is usually the reason a worker gives up; a worker that only writes
    // to stdout gets its last stdout line quoted instead.
    if (!blank && (s->kind == STREAM_ERR || !a->err_line_seen)) {
        if (s->kind == STREAM_ERR) a->err_line_seen = 1;
        size_t n = len < sizeof a->last_err - 1 ? len : sizeof a->last_err - 1;
        memcpy(a->last_err, line, n);
        a->last_err[n] = '\0';
    }
}

/* The text in s->line ended with "\r": a progress bar redrawing itself. Show it when none was
 * shown for STREAM_CR_INTERVAL_S, else keep it as the pending latest state (replacing the one
 * before), to be shown if the next line end is "\n" with nothing after the "\r". */
static void cr_line(stream_t *s) {
    double now = clock_mono_s();
    if (s->t_cr_shown == 0 || now - s->t_cr_shown >= STREAM_CR_INTERVAL_S) {
        on_line(s, s->line, s->n);
        s->t_cr_shown = now;
        s->pend_n = 0;
    } else {
        memcpy(s->pend, s->line, s->n);
        s->pend_n = s->n;
    }
}

/* Split data into lines for on_line, keeping an unfinished line in s->line; a line longer than
 * STREAM_LINE_MAX is delivered in pieces. "\n" ends a line; so does "\r" (see cr_line), on the
 * console only: the log gets the bytes as they came. "\r\n" is one line end. */
static void stream_feed(stream_t *s, const char *data, size_t len) {
    for (size_t i = 0; i < len; i++) {
        char c = data[i];
        if (c == '\n') {
            if (s->n) on_line(s, s->line, s->n);
            else if (s->pend_n) on_line(s, s->pend, s->pend_n);  // "...\rlast\r\n": last is final
            else if (!s->after_cr) on_line(s, s->line, 0);       // an empty line
            s->n = s->pend_n = 0;
            s->after_cr = 0;
        } else if (c == '\r') {
            if (s->n && s->kind == STREAM_PROGRESS) on_line(s, s->line, s->n);
            else if (s->n) cr_line(s), s->after_cr = 1;
            s->n = 0;
        } else {
            if (s->n == sizeof s->line) {
                on_line(s, s->line, s->n);
                s->n = 0;
            }
            s->line[s->n++] = c;
            s->after_cr = 0;
        }
    }
}

/* Deliver the pending partial line (or else the latest "\r" state not shown) and close the
 * pipe (once); on_handle_closed counts it. */
static void stream_close(stream_t *s) {
    if (s->closed) return;
    s->closed = 1;
    if (s->n) on_line(s, s->line, s->n);
    else if (s->pend_n) on_line(s, s->pend, s->pend_n);
    s->n = s->pend_n = 0;
    uv_close((uv_handle_t *)&s->pipe, on_handle_closed);
}

/* libuv read callback: copy stdout/stderr bytes to the log, feed the line splitter, and close the
 * stream at EOF or on a read error. */
static void on_read(uv_stream_t *h, ssize_t nread, const uv_buf_t *buf) {
    stream_t *s = h->data;
    if (nread > 0) {
        if (s->kind != STREAM_PROGRESS && s->a->log_fd >= 0) {
            ssize_t w = write(s->a->log_fd, buf->base, (size_t)nread);
            (void)w;  // best effort, as in attempt_log
        }
        stream_feed(s, buf->base, (size_t)nread);
    } else if (nread < 0) {
        stream_close(s);  // UV_EOF, or a read error: either way nothing more will come
    }
}

/* ------------------------------------------------------------------ ending */

/* 1 when uv_close was called on all of the attempt's pipes, else 0. */
static int all_streams_closed(const attempt_t *a) {
    for (int i = 0; i < N_STREAMS; i++)
        if (!a->streams[i].closed) return 0;
    return 1;
}

/* Close the timer once the process handle and every pipe are closed: it is the last handle. */
static void maybe_close_timer(attempt_t *a) {
    if (!a->timer_closed && a->exited && all_streams_closed(a) && a->handles_open == 1) {
        a->timer_closed = 1;
        uv_close((uv_handle_t *)&a->timer, on_handle_closed);
    }
}

/* Close callback of every attempt handle: the last one to close ends the attempt (run_attempt_done,
 * which frees it). */
static void on_handle_closed(uv_handle_t *h) {
    attempt_t *a = h->data;
    if (h->type == UV_NAMED_PIPE) a = ((stream_t *)h->data)->a;
    ASSERT(a->handles_open > 0);
    a->handles_open--;
    if (a->handles_open == 0) run_attempt_done(a->ctx, a);
    else maybe_close_timer(a);
}

/* Send sig to the attempt's whole process group. ESRCH (the group is already empty) is the
 * normal answer after the worker exited; anything else is logged. */
static void kill_group(attempt_t *a, int sig) {
    int rc = uv_kill(-a->pid, sig);
    if (rc < 0 && rc != UV_ESRCH)
        attempt_log(a, "kill(-%ld, %s) failed: %s", (long)a->pid, run_signal_name(sig), uv_strerror(rc));
}

/* Count one worker process gone; closes the current busy span when it was the last one alive. */
static void account_exit(run_ctx_t *ctx) {
    if (--ctx->n_live == 0) ctx->busy_s += clock_mono_s() - ctx->busy_since;
}

static void on_timer(uv_timer_t *t);

/* libuv exit callback: record the exit, kill what is left of the worker's group, close the process
 * handle and give the pipes EOF_WAIT_MS to reach EOF. */
static void on_exit_cb(uv_process_t *p, int64_t status, int term_signal) {
    attempt_t *a = p->data;
    a->exited = 1;
    a->exit_status = status;
    a->term_signal = term_signal;
    a->t_exit = clock_mono_s();
    account_exit(a->ctx);
    // The worker is gone; whatever it left in its group (helpers, a hung grandchild) must not
    // outlive it holding the GPU or our pipes. ESRCH (nothing left) is the usual answer.
    kill_group(a, SIGKILL);
    uv_close((uv_handle_t *)p, on_handle_closed);
    UV_CHECK(uv_timer_stop(&a->timer));
    if (!all_streams_closed(a)) UV_CHECK(uv_timer_start(&a->timer, on_timer, EOF_WAIT_MS, 0));
}

/* The attempt's one timer: after exit, the EOF wait ran out (close the pipes); before it, timeout_s
 * passed (SIGTERM) or then the kill grace (SIGKILL). */
static void on_timer(uv_timer_t *t) {
    attempt_t *a = t->data;
    const plan_t *plan = a->ctx->plan;
    if (a->exited) {
        // EOF wait over: someone outside the group holds the pipes. Stop listening.
        attempt_log(a, "pipes still open %d ms after the worker exited; closing them", EOF_WAIT_MS);
        for (int i = 0; i < N_STREAMS; i++) stream_close(&a->streams[i]);
        return;
    }
    if (a->kill_stage == 0) {
        a->timed_out = 1;
        double limit = plan->models[a->ctx->jobs[a->job].model].timeout_s;
        attempt_log(a, "timeout after %.1f s: SIGTERM to process group %ld", limit, (long)a->pid);
        progress_note(&a->ctx->console, "[%s] timed out after %.1f s; stopping it",
                      a->ctx->jobs[a->job].name, limit);
        stop_signal(a, SIGTERM);
        a->kill_stage = 1;
        UV_CHECK(uv_timer_start(&a->timer, on_timer, (uint64_t)(plan->kill_grace_s * 1000), 0));
    } else if (a->kill_stage == 1) {
        attempt_log(a, "still running %.1f s after SIGTERM: SIGKILL to process group %ld",
                    plan->kill_grace_s, (long)a->pid);
        a->kill_stage = 2;
        if (stop_signal(a, SIGKILL))
            UV_CHECK(uv_timer_start(&a->timer, on_timer, (uint64_t)(plan->kill_grace_s * 1000), 0));
    } else if (a->kill_stage == 2) {
        // The step outlived scancel --signal=KILL by the grace (slurmctld unreachable?): kill
        // srun itself; Slurm ends a step whose srun is gone.
        attempt_log(a, "step %s still running %.1f s after scancel --signal=KILL: SIGKILL to srun's process group %ld",
                    a->step, plan->kill_grace_s, (long)a->pid);
        kill_group(a, SIGKILL);
        a->kill_stage = 3;
    }
}

void attempt_stop(attempt_t *a, int hard) {
    a->stopped = 1;
    if (!a->spawned || a->exited || a->kill_stage >= 2) return;
    if (a->kill_stage == 1 && !hard) return;  // already on its way: SIGKILL follows the grace
    if (hard) {
        a->kill_stage = 2;
        UV_CHECK(uv_timer_stop(&a->timer));
        if (stop_signal(a, SIGKILL))
            UV_CHECK(uv_timer_start(&a->timer, on_timer, (uint64_t)(a->ctx->plan->kill_grace_s * 1000), 0));
        return;
    }
    stop_signal(a, SIGTERM);
    a->kill_stage = 1;
    UV_CHECK(uv_timer_stop(&a->timer));
    UV_CHECK(uv_timer_start(&a->timer, on_timer, (uint64_t)(a->ctx->plan->kill_grace_s * 1000), 0));
}

/* ------------------------------------------------------------------ starting */

/* Remember a process group started by this run (run_ctx_owns_pid uses the list). */
static void record_pgid(run_ctx_t *ctx, pid_t pgid) {
    if (ctx->n_pgids == ctx->cap_pgids) {
        ctx->cap_pgids = ctx->cap_pgids ? 2 * ctx->cap_pgids : 16;
        ctx->pgids = xrealloc(ctx->pgids, (size_t)ctx->cap_pgids * sizeof *ctx->pgids);
    }
    ctx->pgids[ctx->n_pgids++] = pgid;
}

/* Write the attempt's header lines (job, attempt, batch size, slot, UTC time and command) to its
 * log. */
static void write_header(attempt_t *a, const job_t *job, const slot_t *slot, char **argv) {
    char stamp[64];
    time_t now = time(NULL);
    struct tm tm;
    strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&now, &tm));
    char *cmd = spawn_format_argv(argv);
    attempt_log(a, "=== %s attempt %d, batch_size %d, slot %d (%s%s%s), %s", job->name, a->index + 1,
                job->batch_size, a->slot, slot->device, slot->gpu >= 0 ? ", CUDA_VISIBLE_DEVICES=" : "",
                slot->gpu >= 0 ? slot->cuda_visible : "", stamp);
    attempt_log(a, "command: %s", cmd);
    free(cmd);
}

attempt_t *attempt_start(run_ctx_t *ctx, int jobi, int sloti, err_t *err) {
    job_t *job = &ctx->jobs[jobi];
    const slot_t *slot = &ctx->slots[sloti];
    char **argv = spawn_build_argv(ctx->plan, job, slot, job->batch_size, ctx->cpu_threads, err);
    if (!argv) return NULL;
    if (ctx->plan->executor == EXECUTOR_SLURM) {
        // The same local shim starts `srun ... <self> --shim 0 <argv>`: one job step.
        char **step = slurm_step_argv(ctx->plan, job, slot, ctx->cpu_threads, ctx->shim_exe, argv);
        spawn_strv_free(argv);
        argv = step;
    }
    char **env = spawn_build_env(ctx->plan, job, slot, job->batch_size, environ);

    attempt_t *a = xcalloc(1, sizeof *a);
    a->ctx = ctx;
    a->job = jobi;
    a->slot = sloti;
    a->index = job->attempts;
    a->t_start = clock_mono_s();
    err_t log_err = {0};
    a->log_fd = open_log(job->log_path, &log_err);
    if (a->log_fd < 0)
        progress_note(&ctx->console, "orchestrate: warning: cannot open log %s: %s", job->log_path, log_err.msg);
    write_header(a, job, slot, argv);
    attempt_remove_outputs(job);
    char *partial = job_partial_path(job);   // an earlier attempt's rows are not this one's
    unlink(partial);
    free(partial);

    // The shim's argv: [self, --shim, our pid, worker argv...].
    size_t n_argv = 0;
    while (argv[n_argv]) n_argv++;
    char **args = xcalloc(n_argv + 4, sizeof *args);
    char ppid[32];
    snprintf(ppid, sizeof ppid, "%ld", (long)getpid());
    args[0] = ctx->shim_exe;
    args[1] = SHIM_FLAG;
    args[2] = ppid;
    for (size_t i = 0; i < n_argv; i++) args[3 + i] = argv[i];

    uv_stdio_container_t stdio[4];
    stdio[0].flags = UV_IGNORE;
    for (int i = 0; i < N_STREAMS; i++) {
        stream_t *s = &a->streams[i];
        s->a = a;
        s->kind = i;
        UV_CHECK(uv_pipe_init(&ctx->loop, &s->pipe, 0));
        s->pipe.data = s;
        stdio[i + 1].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
        stdio[i + 1].data.stream = (uv_stream_t *)&s->pipe;
    }
    UV_CHECK(uv_timer_init(&ctx->loop, &a->timer));
    a->timer.data = a;
    a->proc.data = a;
    a->handles_open = 2 + N_STREAMS;  // process, timer, pipes

    // Relative paths in a command (a script, a model directory) mean what they mean in the
    // plan: relative to the plan file's directory.
    char *plan_dir_copy = ctx->plan->base_dir ? xstrdup(ctx->plan->base_dir) : NULL;
    uv_process_options_t opt = {0};
    opt.exit_cb = on_exit_cb;
    opt.file = ctx->shim_exe;
    opt.args = args;
    opt.env = env;
    opt.cwd = plan_dir_copy;  // NULL: inherit ours
    opt.stdio_count = 4;
    opt.stdio = stdio;
    opt.flags = UV_PROCESS_DETACHED;  // setsid(): its own session and process group
    int rc = uv_spawn(&ctx->loop, &a->proc, &opt);
    free(plan_dir_copy);
    free(args);
    spawn_strv_free(argv);
    spawn_strv_free(env);

    if (job->attempts == 0) job->t_start = clock_wall_s();
    job->batch_sizes[a->index] = job->batch_size;
    job->att_slot[a->index] = sloti;
    job->att_start[a->index] = clock_wall_s();
    job->att_end[a->index] = 0;
    job->attempts++;
    job->slot = sloti;
    job->status = JOB_RUNNING;
    job->rows_done = 0;
    if (rc < 0) {
        a->spawn_error = rc;
        a->exited = 1;
        snprintf(a->last_err, sizeof a->last_err, "cannot start the worker: %s", uv_strerror(rc));
        attempt_log(a, "%s", a->last_err);
        // libuv initialised the process handle before failing; it must still be closed.
        uv_close((uv_handle_t *)&a->proc, on_handle_closed);
        for (int i = 0; i < N_STREAMS; i++) stream_close(&a->streams[i]);
        return a;
    }
    a->spawned = 1;
    a->pid = a->proc.pid;
    ctx->spawned++;
    record_pgid(ctx, a->pid);
    if (ctx->n_live++ == 0) ctx->busy_since = a->t_start;
    for (int i = 0; i < N_STREAMS; i++)
        UV_CHECK(uv_read_start((uv_stream_t *)&a->streams[i].pipe, on_alloc, on_read));
    double limit = ctx->plan->models[job->model].timeout_s;
    if (limit > 0) UV_CHECK(uv_timer_start(&a->timer, on_timer, (uint64_t)(limit * 1000), 0));
    return a;
}

void attempt_free(attempt_t *a) {
    ASSERT(a->handles_open == 0);
    if (a->log_fd >= 0) close(a->log_fd);
    free(a);
}
