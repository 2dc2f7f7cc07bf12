/* proc_util.c: see proc_util.h. */
#include "proc_util.h"

#include <sys/prctl.h>
#include <unistd.h>

int proc_die_with_parent(int sig, pid_t parent) {
    if (prctl(PR_SET_PDEATHSIG, sig) != 0) return -1;
    return getppid() == parent ? 0 : 1;
}
