/* progress.c: the console (see progress.h). Rates are whole-stage averages (rows done divided
 * by time since the stage began): steadier than a windowed rate for the few, large jobs a stage
 * has, and the ETA they give only improves as the stage goes on. */
#include "progress.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

void progress_init(progress_t *p, FILE *out, int tty, int quiet) {
    memset(p, 0, sizeof *p);
    p->out = out;
    p->tty = tty;
    p->quiet = quiet;
    const char *iv = getenv("ORCHESTRATE_PROGRESS_INTERVAL_S");
    p->interval = iv && atof(iv) > 0 ? atof(iv) : PROGRESS_PLAIN_INTERVAL_S;
}

char *progress_format_duration(double s, char *buf, size_t n) {
    if (!(s >= 0) || s > 1e7) {
        snprintf(buf, n, "?");
        return buf;
    }
    long t = (long)(s + 0.5);
    if (t >= 3600) snprintf(buf, n, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else snprintf(buf, n, "%ld:%02ld", t / 60, t % 60);
    return buf;
}

/* The status text, without a line end. */
static void format_status(const progress_t *p, double now, char *buf, size_t n) {
    double el = now - p->t_begin;
    double rate = el > 0 ? (double)p->done / el : 0;
    char eta[32], elapsed[32];
    if (p->done >= p->total) snprintf(eta, sizeof eta, "0:00");
    else if (rate > 0) progress_format_duration((double)(p->total - p->done) / rate, eta, sizeof eta);
    else snprintf(eta, sizeof eta, "?");
    progress_format_duration(el, elapsed, sizeof elapsed);
    int w = snprintf(buf, n, "[%s] %zu/%zu rows (%.0f%%), %.1f rows/s, ETA %s, elapsed %s, jobs %d/%d done, %d running",
                     p->stage, p->done, p->total, p->total ? 100.0 * (double)p->done / (double)p->total : 100.0,
                     rate, eta, elapsed, p->jobs_done, p->jobs_total, p->jobs_running);
    if (p->stop_at > 0 && w > 0 && (size_t)w < n) {
        char left[32], margin[32];
        double to_stop = p->stop_at - now;
        progress_format_duration(to_stop > 0 ? to_stop : 0, left, sizeof left);
        if (p->done >= p->total || rate > 0) {
            double m = to_stop - (p->done >= p->total ? 0 : (double)(p->total - p->done) / rate);
            progress_format_duration(fabs(m), margin, sizeof margin);
            snprintf(buf + w, n - (size_t)w, ", deadline stop in %s, predicted margin %s%s%s", left,
                     m < 0 ? "-" : "+", margin, m < 0 ? " (will be cut)" : "");
        } else {
            snprintf(buf + w, n - (size_t)w, ", deadline stop in %s, margin ? (no rate yet)", left);
        }
    }
}

void progress_set_deadline(progress_t *p, double stop_at) {
    p->stop_at = stop_at;
}

/* Erase the progress line from the terminal when one is shown (tty mode only). */
static void clear_line(progress_t *p) {
    if (p->tty && p->line_shown) {
        fputs("\r\033[K", p->out);
        p->line_shown = 0;
    }
}

/* Redraw the progress line in place, cut to the terminal width so that it never wraps. */
static void draw_line(progress_t *p, double now) {
    char buf[512];
    format_status(p, now, buf, sizeof buf);
    // Never wrap: a wrapped line cannot be redrawn in place with "\r".
    struct winsize ws;
    if (ioctl(fileno(p->out), TIOCGWINSZ, &ws) == 0 && ws.ws_col > 1 && strlen(buf) >= ws.ws_col)
        buf[ws.ws_col - 1] = '\0';
    fprintf(p->out, "\r\033[K%s", buf);
    fflush(p->out);
    p->line_shown = 1;
    p->t_last = now;
}

void progress_begin(progress_t *p, const char *stage, size_t total_rows, int n_jobs, double now) {
    snprintf(p->stage, sizeof p->stage, "%s", stage);
    p->total = total_rows;
    p->done = 0;
    p->jobs_total = n_jobs;
    p->jobs_done = p->jobs_running = 0;
    p->t_begin = p->t_last = now;
    p->active = 1;
    if (p->tty) draw_line(p, now);
}

void progress_set(progress_t *p, size_t done_rows, int jobs_done, int jobs_running) {
    p->done = done_rows > p->total ? p->total : done_rows;
    p->jobs_done = jobs_done;
    p->jobs_running = jobs_running;
}

void progress_tick(progress_t *p, double now) {
    if (!p->active) return;
    if (p->tty) {
        draw_line(p, now);
    } else if (now - p->t_last >= p->interval) {
        char buf[512];
        format_status(p, now, buf, sizeof buf);
        fprintf(p->out, "%s\n", buf);
        fflush(p->out);
        p->t_last = now;
    }
}

void progress_end(progress_t *p, double now, const char *stopped_how) {
    if (!p->active) return;
    clear_line(p);
    double el = now - p->t_begin;
    char elapsed[32];
    progress_format_duration(el, elapsed, sizeof elapsed);
    if (stopped_how)
        fprintf(p->out, "[%s] stage %s after %s: %zu/%zu rows processed, %d/%d job(s) finished\n", p->stage,
                stopped_how, elapsed, p->done, p->total, p->jobs_done, p->jobs_total);
    else
        fprintf(p->out, "[%s] stage finished: %zu/%zu rows in %s (%.1f rows/s)\n", p->stage, p->done,
                p->total, elapsed, el > 0 ? (double)p->done / el : 0.0);
    fflush(p->out);
    p->active = 0;
}

void progress_worker_line(progress_t *p, const char *prefix, const char *text, size_t len) {
    if (p->quiet) return;
    int redraw = p->line_shown;
    clear_line(p);
    fprintf(p->out, "[%s] %.*s\n", prefix, (int)len, text);
    if (redraw) draw_line(p, p->t_last);
    else fflush(p->out);
}

void progress_note(progress_t *p, const char *fmt, ...) {
    int redraw = p->line_shown;
    clear_line(p);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(p->out, fmt, ap);
    va_end(ap);
    fputc('\n', p->out);
    if (redraw) draw_line(p, p->t_last);
    else fflush(p->out);
}
