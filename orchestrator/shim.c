/* shim.c: `orchestrate --shim PPID CMD...`: the worker's supervisor parent (see shim.h).
 *
 * One process, one thread, no signal handlers: every signal it cares about is blocked and
 * taken with sigwaitinfo / sigtimedwait, so there is no async-signal-safety to get wrong. The
 * subtree is found by scanning /proc/<pid>/stat (every kernel has it; /proc/<pid>/task/<tid>/
 * children needs CONFIG_PROC_CHILDREN). It does not read files, parse plans or talk to
 * orchestrate: what it reports is the worker's exit status, passed through unchanged.
 */
#include "shim.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "executor_slurm.h"
#include "exit_codes.h"
#include "proc_util.h"
#include "spawn.h"

/* Give up on descendants that do not die within this many ms of the SIGKILL (a process stuck
 * in uninterruptible sleep): the shim exits anyway rather than hang the run. */
#define SHIM_GIVE_UP_MS 10000

/* The death signal the shim asks for when orchestrate dies (checked against getppid(), so a
 * stray SIGUSR1 from a worker changes nothing). */
#define SHIM_PARENT_DIED SIGUSR1

typedef struct {
    pid_t pid, ppid, pgrp;  // from /proc/<pid>/stat
    char state;             // 'R', 'S', 'Z', ...
    int mark;               // 1: a descendant of the shim
} proc_t;

/* qsort order of procs by pid. */
static int cmp_pid(const void *a, const void *b) {
    pid_t x = ((const proc_t *)a)->pid, y = ((const proc_t *)b)->pid;
    return x < y ? -1 : x > y;
}

/* Read pid, state, ppid and pgrp from /proc/<name>/stat into p. Returns 0, or -1 (the process
 * is gone, or the line is not as expected). */
static int read_stat(const char *name, proc_t *p) {
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%s/stat", name);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return -1;
    buf[n] = '\0';
    // "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses; the last ')' ends it.
    char *rp = strrchr(buf, ')');
    int pid, ppid, pgrp;
    if (!rp || sscanf(buf, "%d", &pid) != 1 || sscanf(rp + 1, " %c %d %d", &p->state, &ppid, &pgrp) != 3)
        return -1;
    p->pid = pid, p->ppid = ppid, p->pgrp = pgrp;
    p->mark = 0;
    return 0;
}

/* Send sig to every live process below the shim (zombies skipped); with outside_only, only to
 * those outside the shim's process group (the group itself already got the signal). Returns
 * the number of processes signalled. */
static int signal_subtree(int sig, int outside_only) {
    DIR *d = opendir("/proc");
    if (!d) return 0;
    size_t n = 0, cap = 256;
    proc_t *ps = xmalloc(cap * sizeof *ps);
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!isdigit((unsigned char)e->d_name[0])) continue;
        if (n == cap) ps = xrealloc(ps, (cap *= 2) * sizeof *ps);
        if (read_stat(e->d_name, &ps[n]) == 0) n++;
    }
    closedir(d);
    qsort(ps, n, sizeof *ps, cmp_pid);
    pid_t self = getpid(), group = getpgrp();
    proc_t key = {.pid = self};
    proc_t *me = bsearch(&key, ps, n, sizeof *ps, cmp_pid);
    if (me) me->mark = 1;
    // Mark children of marked processes until nothing changes: one pass per tree level.
    for (int changed = 1; changed;) {
        changed = 0;
        for (size_t i = 0; i < n; i++) {
            if (ps[i].mark) continue;
            key.pid = ps[i].ppid;
            proc_t *parent = bsearch(&key, ps, n, sizeof *ps, cmp_pid);
            if (parent && parent->mark) ps[i].mark = changed = 1;
        }
    }
    int count = 0;
    for (size_t i = 0; i < n; i++) {
        if (!ps[i].mark || ps[i].pid == self || ps[i].state == 'Z') continue;
        if (outside_only && ps[i].pgrp == group) continue;
        if (kill(ps[i].pid, sig) == 0) count++;
    }
    free(ps);
    return count;
}

/* Monotonic milliseconds. */
static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* Reap every child that has ended, without blocking; the worker's status goes to *status and
 * *worker_done. Returns 1 when the shim has no child left, else 0. */
static int reap(pid_t worker, int *status, int *worker_done) {
    for (;;) {
        int st;
        pid_t p = waitpid(-1, &st, WNOHANG);
        if (p == 0) return 0;
        if (p < 0) return errno == ECHILD;
        if (p == worker) *status = st, *worker_done = 1;
    }
}

/* End every descendant: SIGTERM, SHIM_GRACE_MS for them to go, then SIGKILL (repeated for
 * processes that appear meanwhile) until the shim has no child left, or SHIM_GIVE_UP_MS later.
 * chld is the blocked set holding SIGCHLD, waited on between checks. */
static void end_subtree(pid_t worker, int *status, int *worker_done, const sigset_t *chld) {
    if (reap(worker, status, worker_done)) return;  // nothing left: no /proc scan needed
    double t0 = now_ms();
    signal_subtree(SIGTERM, 0);
    for (;;) {
        if (reap(worker, status, worker_done)) return;
        double el = now_ms() - t0;
        if (el >= SHIM_GRACE_MS) signal_subtree(SIGKILL, 0);
        if (el >= SHIM_GRACE_MS + SHIM_GIVE_UP_MS) {
            fprintf(stderr, "orchestrate --shim: descendants still alive %d ms after SIGKILL; leaving them\n",
                    SHIM_GIVE_UP_MS);
            return;
        }
        struct timespec wait = {0, 10 * 1000 * 1000};
        sigtimedwait(chld, NULL, &wait);
    }
}

/* End the way the worker ended (status from waitpid): its exit code, or its signal raised on
 * ourselves (without a core dump). Returns only for an exit code, or when the signal did not
 * kill us (then 128 + signal, the shell's convention). */
static int pass_on(int status) {
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    int sig = WTERMSIG(status);
    struct rlimit none = {0, 0};
    setrlimit(RLIMIT_CORE, &none);
    signal(sig, SIG_DFL);
    sigset_t all;
    sigfillset(&all);
    sigprocmask(SIG_UNBLOCK, &all, NULL);
    kill(getpid(), sig);
    return 128 + sig;
}

int shim_main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "orchestrate --shim: usage: orchestrate --shim PPID COMMAND [ARGS...]\n");
        return EXIT_USAGE;
    }
    char *end = NULL;
    long ppid = strtol(argv[0], &end, 10);
    if (!end || *end != '\0' || ppid < 0) {
        fprintf(stderr, "orchestrate --shim: bad parent pid '%s'\n", argv[0]);
        return EXIT_USAGE;
    }
    sigset_t waited, chld, old;
    sigemptyset(&waited);
    int sigs[] = {SIGCHLD, SIGTERM, SIGINT, SIGHUP, SIGQUIT, SHIM_PARENT_DIED};
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) sigaddset(&waited, sigs[i]);
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    sigprocmask(SIG_BLOCK, &waited, &old);
    // The death signal is delivered when the parent *thread* that forked us exits; libuv forks
    // from the loop thread, which is orchestrate's main thread, so that is the process.
    // PPID 0: a Slurm job step's shim (executor_slurm.h), whose parent is slurmstepd: no death
    // signal to ask for; srun and scancel stop it with SIGTERM/SIGKILL.
    int gone = prctl(PR_SET_CHILD_SUBREAPER, 1) != 0 ? -1
               : ppid > 0                           ? proc_die_with_parent(SHIM_PARENT_DIED, (pid_t)ppid)
                                                    : 0;
    if (gone < 0) {
        fprintf(stderr, "orchestrate --shim: prctl: %s\n", strerror(errno));
        return EXIT_SOFTWARE;
    }
    if (gone) return 128 + SIGKILL; // orchestrate died between fork and prctl
    if (ppid == 0) slurm_print_marker();
    pid_t self = getpid();
    int progress_fd = ppid == 0 ? slurm_progress_forwarder() : -1;  // fd 3 does not cross srun
    slurm_mem_t mem;
    if (ppid == 0) slurm_mem_before(&mem);  // a step's GPU is checked here, not by orchestrate
    pid_t worker = fork();
    if (worker < 0) {
        fprintf(stderr, "orchestrate --shim: fork: %s\n", strerror(errno));
        return EXIT_SOFTWARE;
    }
    if (worker == 0) {
        // The worker dies with the shim too, should the shim alone be killed.
        if (proc_die_with_parent(SIGKILL, self) != 0) _exit(128 + SIGKILL);
        signal(SIGPIPE, SIG_DFL);  // orchestrate ignores it; the worker gets the usual default
        // dup2 onto another fd clears O_CLOEXEC; the same fd keeps it, so clear it by hand.
        int pfd = progress_fd < 0 ? -1
                  : progress_fd == SPAWN_PROGRESS_FD ? fcntl(progress_fd, F_SETFD, 0) == 0 ? progress_fd : -1
                  : dup2(progress_fd, SPAWN_PROGRESS_FD);
        // A CPU slot's step (ORCHESTRATE_DEVICE=cpu, spawn.h): Slurm drops the empty
        // CUDA_VISIBLE_DEVICES orchestrate set, which would show a CUDA program every GPU of
        // the node; as locally, it sees none.
        const char *device = getenv("ORCHESTRATE_DEVICE");
        if (ppid == 0 && device && strcmp(device, "cpu") == 0) setenv("CUDA_VISIBLE_DEVICES", "", 1);
        if (pfd == SPAWN_PROGRESS_FD) {
            char num[16];
            snprintf(num, sizeof num, "%d", SPAWN_PROGRESS_FD);
            setenv("ORCHESTRATE_PROGRESS_FD", num, 1);
        }
        sigprocmask(SIG_SETMASK, &old, NULL);
        execvp(argv[1], argv + 1);
        int e = errno;
        fprintf(stderr, "orchestrate: cannot run worker command '%s': %s%s\n", argv[1], strerror(e),
                e == ENOENT && !strchr(argv[1], '/') ? " (not found in PATH)" : "");
        _exit(e == ENOENT || e == ENOTDIR ? SHIM_EXIT_NOT_FOUND : SHIM_EXIT_NOT_EXECUTABLE);
    }

    if (progress_fd >= 0) close(progress_fd);  // the forwarder sees EOF when the worker's tree closes it
    int status = 0, worker_done = 0, parent_gone = 0;
    while (!worker_done && !parent_gone) {
        siginfo_t si;
        int sig = sigwaitinfo(&waited, &si);
        if (sig == SIGCHLD) reap(worker, &status, &worker_done);
        else if (sig == SHIM_PARENT_DIED) parent_gone = ppid > 0 && (long)getppid() != ppid;
        // A stop signal sent to the group reached the worker already; pass it on to the
        // descendants that left the group (setsid daemons), which it did not reach.
        else if (sig > 0) signal_subtree(sig, 1);
    }
    end_subtree(worker, &status, &worker_done, &chld);
    if (ppid == 0) slurm_mem_after(&mem);
    if (!worker_done) return 128 + SIGKILL;  // orchestrate is gone: nobody reads the status
    return pass_on(status);
}
