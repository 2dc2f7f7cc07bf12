/* progress_fd.c: the progress-line writer of progress_fd.h.
 *
 * A line is short (< PIPE_BUF), so one write() delivers it whole; a short write or any error
 * switches reporting off for the rest of the run rather than risk a torn line. Writes are
 * blocking: the supervisor reads its pipes continuously, and one line per batch is far below a
 * pipe's buffer even if it stalls for a while.
 */
#include "progress_fd.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

void progress_init_env(progress_t *p) {
    p->fd = -1;
    const char *s = getenv("ORCHESTRATE_PROGRESS_FD");
    if (!s || !*s) return;
    char *end;
    errno = 0;
    long fd = strtol(s, &end, 10);
    if (errno || *end || fd < 0 || fd > 1 << 20 || fcntl((int)fd, F_GETFD) < 0) {
        fprintf(stderr, "warning: ORCHESTRATE_PROGRESS_FD=%s is not an open file descriptor; "
                "progress reporting is off\n", s);
        return;
    }
    signal(SIGPIPE, SIG_IGN); // a supervisor that went away must not kill us mid-write
    p->fd = (int)fd;
}

void progress_report(progress_t *p, size_t done, size_t total) {
    if (p->fd < 0) return;
    char line[64];
    int n = snprintf(line, sizeof line, "progress %zu %zu\n", done, total);
    ssize_t w;
    do w = write(p->fd, line, (size_t)n);
    while (w < 0 && errno == EINTR);
    if (w != n) p->fd = -1; // EPIPE, EBADF, short write: stop reporting, keep working
}
