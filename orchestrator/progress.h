/* progress.h: orchestrate's console: worker output lines, notes, and the per-stage progress.
 *
 * On a terminal (isatty), a stage shows one line that is redrawn in place ("rows done/total,
 * rows/s, ETA"); worker lines and notes are printed above it (the line is cleared first and
 * redrawn after). Elsewhere (a log file, a Kaggle cell's captured output) the same numbers are
 * printed as a plain line every PROGRESS_PLAIN_INTERVAL_S seconds, so logs stay readable.
 * Everything goes to one stream so that its order is the order of events. This module does not
 * know about jobs or processes; run.c feeds it numbers.
 */
#ifndef ORCH_PROGRESS_H
#define ORCH_PROGRESS_H

#include <stddef.h>
#include <stdio.h>

#define PROGRESS_PLAIN_INTERVAL_S 10.0   // ORCHESTRATE_PROGRESS_INTERVAL_S overrides it

typedef struct {
    FILE *out;            // the console stream (stdout)
    int tty;              // 1: redraw one line in place; 0: plain periodic lines
    int quiet;            // 1: drop worker output lines (notes and progress still shown)
    int line_shown;       // a progress line is on screen now (tty mode)
    int active;           // between progress_begin and progress_end
    char stage[128];      // stage (model) name
    size_t total, done;   // rows in the stage's pending jobs, rows finished so far
    int jobs_total, jobs_done, jobs_running;  // the stage's jobs: in all, finished, running now
    double t_begin;       // monotonic seconds when the stage began
    double t_last;        // last plain line (plain mode) or redraw (tty mode)
    double interval;      // seconds between plain lines
    double stop_at;       // monotonic seconds when a deadline stops the workers, or 0 (none)
} progress_t;

/* Set up the console on out. tty selects the redrawn line; quiet drops worker lines. */
void progress_init(progress_t *p, FILE *out, int tty, int quiet);

/* Start a stage's display: total rows over n_jobs jobs. now is monotonic seconds. */
void progress_begin(progress_t *p, const char *stage, size_t total_rows, int n_jobs, double now);

/* Under a deadline: the monotonic time the workers stop (0: none). The status line then adds the
 * time left and the margin between the stage's predicted finish (at the measured rate) and it. */
void progress_set_deadline(progress_t *p, double stop_at);

/* Update the numbers (no output by itself; see progress_tick). */
void progress_set(progress_t *p, size_t done_rows, int jobs_done, int jobs_running);

/* Called periodically: redraws the tty line, or prints a plain line every
 * PROGRESS_PLAIN_INTERVAL_S seconds. */
void progress_tick(progress_t *p, double now);

/* End the stage's display with a final line: "stage finished: rows in time (rows/s)" when
 * stopped_how is NULL, else "stage <stopped_how> after <time>: rows processed" with no rate (a
 * rate over an interrupted or failed stage means nothing). */
void progress_end(progress_t *p, double now, const char *stopped_how);

/* Print one worker output line as "[prefix] text" (text need not be NUL-terminated and has no
 * newline). Dropped when quiet. */
void progress_worker_line(progress_t *p, const char *prefix, const char *text, size_t len);

/* Print one orchestrate message line ("orchestrate: ..." is not added). */
void progress_note(progress_t *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Format seconds as "1:02:03" / "2:03" into buf. Returns buf. */
char *progress_format_duration(double s, char *buf, size_t n);

#endif
