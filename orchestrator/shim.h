/* shim.h: the worker's supervisor process, `orchestrate --shim PPID CMD [ARGS...]`.
 * (PPID 0: the shim of a Slurm job step, see executor_slurm.h: no parent watched.)
 *
 * orchestrate starts every worker through a re-exec of its own executable in this mode (libuv's
 * uv_spawn offers no hook between fork and exec). The shim leads the worker's session and
 * process group and stays there as the worker's parent, for the worker's whole life:
 *   - it is a child subreaper (PR_SET_CHILD_SUBREAPER), so every process the worker starts,
 *     setsid() daemons and double-forked helpers included, stays in its subtree: when a
 *     process's parent dies, it is reparented to the shim instead of to init;
 *   - it asks for a death signal (PR_SET_PDEATHSIG) when orchestrate dies, even by SIGKILL;
 *   - when the worker exits, or orchestrate dies, it sends SIGTERM to every process of its
 *     subtree, waits SHIM_GRACE_MS, then SIGKILLs what is left until no descendant remains;
 *   - it then ends the way the worker ended: the same exit code, or the same signal re-raised,
 *     so orchestrate's exit classification does not see the shim at all.
 * The worker is forked in the shim's process group, so orchestrate's signals to the group
 * (timeouts, Ctrl-C) reach it directly; the shim passes SIGTERM/SIGINT/SIGHUP/SIGQUIT on to
 * descendants that left the group. What it cannot catch is in docs/workers.md ("the shim").
 */
#ifndef ORCH_SHIM_H
#define ORCH_SHIM_H

/* The argv[1] that selects shim mode. */
#define SHIM_FLAG "--shim"

/* Exit status of the shim when the command cannot be executed (not found: 127, not
 * executable: 126), as in POSIX shells. orchestrate treats both as configuration errors. */
#define SHIM_EXIT_NOT_FOUND 127
#define SHIM_EXIT_NOT_EXECUTABLE 126

/* How long leftover descendants get between SIGTERM and SIGKILL once the worker has ended. */
#define SHIM_GRACE_MS 300

/* Run shim mode with argv = {PPID, CMD, ARGS..., NULL} (argc counts them). Returns the exit
 * status to use (the worker's, 127/126 when it could not be executed, 64 for a malformed shim
 * command line, 70 when the supervisor cannot be set up); when the worker was killed by a
 * signal, it raises that signal on itself and does not return. */
int shim_main(int argc, char **argv);

#endif
