/* shim.h: the PDEATHSIG shim, `orchestrate --shim PPID CMD [ARGS...]`.
 *
 * orchestrate starts every worker through a re-exec of its own executable in this mode. The
 * shim asks the kernel to SIGKILL it when its parent dies (prctl PR_SET_PDEATHSIG), checks that
 * the parent is still PPID (otherwise the parent died before the request took effect), and
 * execs the worker, which keeps the death signal. So a SIGKILLed orchestrate cannot leave a
 * worker behind holding GPU memory. It is a shim rather than code between fork and exec
 * because libuv's uv_spawn offers no hook there.
 */
#ifndef ORCH_SHIM_H
#define ORCH_SHIM_H

/* The argv[1] that selects shim mode. */
#define SHIM_FLAG "--shim"

/* Exit status of the shim when the command cannot be executed (not found: 127, not
 * executable: 126), as in POSIX shells. orchestrate treats both as configuration errors. */
#define SHIM_EXIT_NOT_FOUND 127
#define SHIM_EXIT_NOT_EXECUTABLE 126

/* Run shim mode with argv = {PPID, CMD, ARGS..., NULL} (argc counts them). Does not return when
 * the exec succeeds; otherwise prints one line naming the command and the reason to stderr and
 * returns the exit status to use (127, 126, or 64 for a malformed shim command line). */
int shim_main(int argc, char **argv);

#endif
