/* proc_util.h: the one way a process asks to die with its parent (orchestrate's shim, the
 * worker the shim forks, lm-worker). It does not supervise anything: orchestrator/shim.c does.
 */
#ifndef PROC_UTIL_H
#define PROC_UTIL_H

#include <sys/types.h>

/* Ask for signal sig when the parent dies (PR_SET_PDEATHSIG), then check that parent (the pid
 * seen before the fork, or getppid() read before this call) is still the parent: it may have
 * died before prctl took effect, and then nobody would ever send sig. Returns 0; 1 when the
 * parent is already gone (the caller should exit); -1 with errno set when prctl failed. */
int proc_die_with_parent(int sig, pid_t parent);

#endif
