/* shim.c: `orchestrate --shim PPID CMD...`: set PDEATHSIG, then exec the worker (see shim.h).
 *
 * Deliberately tiny: it runs in every worker's process before the worker itself, so it
 * allocates nothing, reads no files and only prints when the exec fails.
 */
#include "shim.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "exit_codes.h"

int shim_main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "orchestrate --shim: usage: orchestrate --shim PPID COMMAND [ARGS...]\n");
        return EXIT_USAGE;
    }
    char *end = NULL;
    long ppid = strtol(argv[0], &end, 10);
    if (!end || *end != '\0' || ppid <= 0) {
        fprintf(stderr, "orchestrate --shim: bad parent pid '%s'\n", argv[0]);
        return EXIT_USAGE;
    }
    // The death signal is delivered when the parent *thread* that forked us exits; libuv forks
    // from the loop thread, which is orchestrate's main thread, so that is the process.
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) {
        fprintf(stderr, "orchestrate --shim: prctl(PR_SET_PDEATHSIG): %s\n", strerror(errno));
        return EXIT_SOFTWARE;
    }
    // The parent may have died between fork and prctl; then nobody will signal us.
    if ((long)getppid() != ppid) _exit(128 + SIGKILL);
    execvp(argv[1], argv + 1);
    int e = errno;
    fprintf(stderr, "orchestrate: cannot run worker command '%s': %s%s\n", argv[1], strerror(e),
            e == ENOENT && !strchr(argv[1], '/') ? " (not found in PATH)" : "");
    return e == ENOENT || e == ENOTDIR ? SHIM_EXIT_NOT_FOUND : SHIM_EXIT_NOT_EXECUTABLE;
}
