/* progress_fd.h: "progress <done> <total>" lines for the supervisor (docs/workers.md).
 *
 * orchestrate passes a pipe's write end to a worker and names it in ORCHESTRATE_PROGRESS_FD. The
 * worker writes one line per finished batch. Progress is advisory: a closed or broken pipe must
 * never stop or kill the worker, so write errors (EPIPE included) silently turn reporting off and
 * SIGPIPE is ignored once reporting is on. It does not format anything but those lines.
 */
#ifndef LM_PROGRESS_FD_H
#define LM_PROGRESS_FD_H

#include <stddef.h>

typedef struct {
    int fd;          // where lines go, or -1 when reporting is off
} progress_t;

/* Read ORCHESTRATE_PROGRESS_FD. When it names an open descriptor, reporting is on and SIGPIPE
 * is set to ignored for the process; when it is unset, reporting is off; when it is set but
 * unusable, a warning goes to stderr and reporting is off. */
void progress_init_env(progress_t *p);

/* Write "progress <done> <total>\n" when reporting is on. Never fails. */
void progress_report(progress_t *p, size_t done, size_t total);

#endif
