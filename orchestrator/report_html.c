/* report_html.c: report.html from report.json's data (report_html.h). It reads the JSON object
 * only; it does not compute outcomes (report.c does) or know about processes.
 *
 * Layout: a summary paragraph, then one SVG: a time axis (seconds from the start), one lane per
 * slot with a bar per attempt (class "bar outcome-<outcome>", a <title> tooltip), a "resumed"
 * lane with a mark per reused job, dashed stage boundaries, the deadline (and stop) lines, and
 * under it a GPU memory chart (one polyline per GPU). Then the legend and a rows/s table. Every
 * style is inline and scoped to .orch-report, so that it reads the same in a notebook cell.
 */
#include "report_html.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "atomic_file.h"

#define W 1000.0          // SVG width (px)
#define LEFT 150.0        // room for the lane labels
#define RIGHT 20.0
#define TOP 30.0          // room for the stage labels
#define LANE_H 26.0       // lane height
#define LANE_GAP 6.0
#define MEM_H 110.0       // memory chart height (when there are samples)

/* Outcomes, their colours and legend words (report.c's attempt_outcome, plus "resumed"). */
static const char *const OUTCOMES[][3] = {
    {"ok", "#2e9d4f", "ok"},           {"retried", "#f0a202", "failed, retried"},
    {"oom", "#8e44ad", "out of memory"}, {"timeout", "#d7263d", "timeout"},
    {"cut", "#4f6d8f", "cut by deadline"}, {"failed", "#7b1e1e", "failed"},
    {"stopped", "#9e9e9e", "stopped"}, {"resumed", "#7fc8cc", "resumed (reused)"},
};
#define N_OUTCOMES (sizeof OUTCOMES / sizeof OUTCOMES[0])
static const char *const GPU_COLOURS[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b"};

/* Write s to f with &, <, >, " and ' escaped. */
static void esc(FILE *f, const char *s) {
    for (; s && *s; s++) {
        switch (*s) {
        case '&': fputs("&amp;", f); break;
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '"': fputs("&quot;", f); break;
        case '\'': fputs("&#39;", f); break;
        default: fputc(*s, f);
        }
    }
}

/* The number at key of o (integer or real), or def when absent or null. */
static double numv(const json_t *o, const char *key, double def) {
    json_t *v = json_object_get(o, key);
    return json_is_number(v) ? json_number_value(v) : def;
}

/* The string at key of o, or "". */
static const char *strv(const json_t *o, const char *key) {
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : "";
}

typedef struct {
    double t0, t1;        // wall clock span of the time axis
    double plot_w;        // W - LEFT - RIGHT
} axis_t;

/* x coordinate of wall time t. */
static double xat(const axis_t *ax, double t) {
    return LEFT + (t - ax->t0) / (ax->t1 - ax->t0) * ax->plot_w;
}

/* A tick step (1, 2, 5 x 10^k seconds) giving about 8 ticks over span seconds. */
static double tick_step(double span) {
    double raw = span / 8, p = pow(10, floor(log10(raw > 0 ? raw : 1)));
    return raw <= p ? p : raw <= 2 * p ? 2 * p : raw <= 5 * p ? 5 * p : 10 * p;
}

/* The summary paragraph: status, wall time, deadline and coverage. */
static void write_summary(FILE *f, const json_t *root) {
    const json_t *tot = json_object_get(root, "totals"), *d = json_object_get(root, "deadline");
    fprintf(f, "<p><b>status:</b> ");
    esc(f, strv(root, "status"));
    fprintf(f, " &middot; <b>wall:</b> %.1f s &middot; <b>jobs:</b> %lld (%lld reused) &middot; "
               "<b>attempts:</b> %lld</p>\n",
            numv(tot, "wall_s", 0), (long long)numv(tot, "jobs", 0), (long long)numv(tot, "jobs_reused", 0),
            (long long)numv(tot, "attempts", 0));
    if (json_is_string(json_object_get(root, "failure"))) {
        fputs("<p><b>failure:</b> ", f);
        esc(f, strv(root, "failure"));
        fputs("</p>\n", f);
    }
    if (!d) return;
    fprintf(f, "<p><b>deadline:</b> %.1f s, reserve %.1f s, workers stopped after %.1f s; %s; "
               "fallback rows: %lld of %lld</p>\n<ul>\n",
            numv(d, "deadline_s", 0), numv(d, "reserve_s", 0), numv(d, "stop_after_s", 0),
            json_is_true(json_object_get(d, "degraded")) ? "<b>degraded</b>" : "everything fit",
            (long long)numv(d, "fallback_rows", 0), (long long)numv(d, "rows", 0));
    size_t i;
    json_t *m;
    json_array_foreach(json_object_get(d, "models"), i, m) {
        fputs("<li>", f);
        esc(f, strv(m, "model"));
        fprintf(f, ": %lld rows covered", (long long)numv(m, "rows_covered", 0));
        const char *k;
        json_t *v;
        json_object_foreach(json_object_get(m, "variants_rows"), k, v) {
            fputs(", ", f);
            esc(f, k);
            fprintf(f, " %lld", (long long)json_integer_value(v));
        }
        fputs("</li>\n", f);
    }
    fputs("</ul>\n", f);
}

/* One attempt bar (or, with outcome "resumed", a reused job's mark) in lane `lane`. */
static void write_bar(FILE *f, const axis_t *ax, int lane, double t_start, double t_end, const char *outcome,
                      const char *job, int attempt, const char *detail) {
    double x0 = xat(ax, t_start), x1 = xat(ax, t_end);
    if (x1 - x0 < 2) x1 = x0 + 2;   // visible however short
    double y = TOP + lane * (LANE_H + LANE_GAP) + 3;
    fprintf(f, "<rect class=\"%s outcome-%s\" data-job=\"", strcmp(outcome, "resumed") ? "bar" : "reused", outcome);
    esc(f, job);
    fprintf(f, "\" data-attempt=\"%d\" x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\"><title>", attempt, x0, y,
            x1 - x0, LANE_H - 6);
    esc(f, job);
    if (attempt > 0) fprintf(f, ", attempt %d", attempt);
    fprintf(f, ": %s, %.1f s", outcome, t_end - t_start);
    if (detail && *detail) fputs(", ", f), esc(f, detail);
    fputs("</title></rect>\n", f);
}

/* The GPU memory chart under the lanes, at y0: one polyline per GPU, MiB on the y axis. */
static void write_memory(FILE *f, const axis_t *ax, const json_t *samples, double y0) {
    double mx = 1;
    size_t i;
    json_t *s;
    int gpus[16], n_gpus = 0;
    json_array_foreach(samples, i, s) {
        mx = fmax(mx, numv(s, "used_mib", 0));
        int g = (int)numv(s, "gpu", 0), seen = 0;
        for (int k = 0; k < n_gpus; k++) seen |= gpus[k] == g;
        if (!seen && n_gpus < 16) gpus[n_gpus++] = g;
    }
    fprintf(f, "<g class=\"memory\"><text x=\"%.1f\" y=\"%.1f\" class=\"label\">GPU memory</text>\n", 4.0, y0 + 14);
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" class=\"tick\">%.0f MiB</text>\n", 4.0, y0 + 30, mx);
    fprintf(f, "<line class=\"axis\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>\n", LEFT, y0 + MEM_H, W - RIGHT,
            y0 + MEM_H);
    for (int k = 0; k < n_gpus; k++) {
        fprintf(f, "<polyline class=\"mem-line\" data-gpu=\"%d\" stroke=\"%s\" points=\"", gpus[k],
                GPU_COLOURS[k % 6]);
        json_array_foreach(samples, i, s) {
            if ((int)numv(s, "gpu", -1) != gpus[k]) continue;
            fprintf(f, "%.1f,%.1f ", xat(ax, numv(s, "t", ax->t0)), y0 + MEM_H - numv(s, "used_mib", 0) / mx * (MEM_H - 20));
        }
        fprintf(f, "\"><title>GPU %d</title></polyline>\n", gpus[k]);
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" fill=\"%s\" class=\"tick\">GPU %d</text>\n", 4.0, y0 + 48 + 14 * k,
                GPU_COLOURS[k % 6], gpus[k]);
    }
    fputs("</g>\n", f);
}

/* rows/s per slot for each model: rows of its done jobs over the time their last attempt ran. */
static void write_rates(FILE *f, const json_t *root) {
    const json_t *jobs = json_object_get(root, "jobs");
    fputs("<table class=\"rates\"><tr><th>model</th><th>jobs done</th><th>rows</th><th>rows/s per slot</th></tr>\n", f);
    size_t i, k;
    json_t *j, *j2;
    json_array_foreach(jobs, i, j) {
        const char *model = strv(j, "model");
        int first = 1;
        json_array_foreach(jobs, k, j2) {
            if (k >= i) break;
            if (strcmp(strv(j2, "model"), model) == 0) first = 0;
        }
        if (!first) continue;
        double rows = 0, secs = 0;
        int done = 0;
        json_array_foreach(jobs, k, j2) {
            if (strcmp(strv(j2, "model"), model) != 0 || strcmp(strv(j2, "status"), "done") != 0) continue;
            json_t *spans = json_object_get(j2, "attempt_spans");
            json_t *last = json_array_get(spans, json_array_size(spans) - 1);
            rows += numv(j2, "rows", 0);
            secs += numv(last, "end", 0) - numv(last, "start", 0);
            done++;
        }
        fputs("<tr><td>", f);
        esc(f, model);
        if (secs > 0) fprintf(f, "</td><td>%d</td><td>%.0f</td><td>%.1f</td></tr>\n", done, rows, rows / secs);
        else fprintf(f, "</td><td>%d</td><td>%.0f</td><td>-</td></tr>\n", done, rows);
    }
    fputs("</table>\n", f);
}

int report_html_write(const json_t *root, const char *path, err_t *err) {
    const json_t *slots = json_object_get(root, "slots"), *jobs = json_object_get(root, "jobs");
    const json_t *marks = json_object_get(root, "stage_marks"), *mem = json_object_get(root, "gpu_memory_samples");
    const json_t *d = json_object_get(root, "deadline");
    int n_slots = (int)json_array_size(slots);
    axis_t ax = {.t0 = numv(root, "started", 0), .plot_w = W - LEFT - RIGHT};
    ax.t1 = fmax(numv(root, "ended", ax.t0), ax.t0 + 1);
    if (d) ax.t1 = fmax(ax.t1, ax.t0 + numv(d, "deadline_s", 0));
    size_t i, k;
    json_t *j, *a;
    int any_reused = 0;
    json_array_foreach(jobs, i, j) any_reused |= json_is_true(json_object_get(j, "reused"));
    int lanes = n_slots + any_reused;
    double lanes_h = lanes * (LANE_H + LANE_GAP), axis_y = TOP + lanes_h + 4;
    double mem_y = axis_y + 24, h = mem_y + (json_array_size(mem) ? MEM_H + 10 : 0);

    atomic_file_t af;
    if (atomic_file_open(&af, path, err) != 0) return -1;
    FILE *f = af.f;
    fputs("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>orchestrate report</title></head><body>\n"
          "<div class=\"orch-report\">\n<style>\n"
          ".orch-report{font:13px/1.4 system-ui,sans-serif;color:#222;background:#fff;padding:8px;max-width:1020px}\n"
          ".orch-report svg{background:#fff;border:1px solid #ddd}\n"
          ".orch-report .lane-bg{fill:#f4f6f8}.orch-report .label{font-size:12px;fill:#222}\n"
          ".orch-report .tick{font-size:10px;fill:#555}.orch-report .axis{stroke:#888;stroke-width:1}\n"
          ".orch-report .grid{stroke:#e4e4e4;stroke-width:1}\n"
          ".orch-report .stage-mark{stroke:#555;stroke-dasharray:4 3}\n"
          ".orch-report .deadline{stroke:#d7263d;stroke-width:2}.orch-report .stop{stroke:#d7263d;stroke-dasharray:6 3}\n"
          ".orch-report .mem-line{fill:none;stroke-width:1.5}\n"
          ".orch-report table{border-collapse:collapse;margin-top:8px}\n"
          ".orch-report td,.orch-report th{border:1px solid #ccc;padding:2px 8px;text-align:right}\n"
          ".orch-report .legend span{display:inline-block;margin-right:12px}\n"
          ".orch-report .legend i{display:inline-block;width:12px;height:12px;margin-right:4px;vertical-align:-2px}\n",
          f);
    for (size_t o = 0; o < N_OUTCOMES; o++) fprintf(f, ".orch-report .outcome-%s{fill:%s}\n", OUTCOMES[o][0], OUTCOMES[o][1]);
    fputs("</style>\n<h3>orchestrate report</h3>\n", f);
    write_summary(f, root);
    fprintf(f, "<svg class=\"timeline\" xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
               "viewBox=\"0 0 %.0f %.0f\" role=\"img\">\n", W, h, W, h);
    // Lanes: one per slot, then the reused jobs' lane.
    for (int s = 0; s < lanes; s++) {
        double y = TOP + s * (LANE_H + LANE_GAP);
        const json_t *slot = json_array_get(slots, (size_t)s);
        fprintf(f, "<g class=\"%s\" data-slot=\"%d\"><rect class=\"lane-bg\" x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" "
                   "height=\"%.1f\"/><text class=\"label\" x=\"4\" y=\"%.1f\">",
                s < n_slots ? "lane" : "lane-reused", s, LEFT, y, ax.plot_w, LANE_H, y + LANE_H / 2 + 4);
        if (s < n_slots) fprintf(f, "slot %d: ", s), esc(f, strv(slot, "device"));
        else fputs("resumed (reused)", f);
        fputs("</text></g>\n", f);
    }
    // Time axis with ticks (seconds from the start) and grid lines.
    double step = tick_step(ax.t1 - ax.t0);
    fprintf(f, "<line class=\"axis\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>\n", LEFT, axis_y, W - RIGHT, axis_y);
    for (double t = 0; t <= ax.t1 - ax.t0 + 1e-9; t += step) {
        double x = xat(&ax, ax.t0 + t);
        fprintf(f, "<line class=\"grid\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>"
                   "<text class=\"tick\" x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%g s</text>\n",
                x, TOP, x, axis_y, x, axis_y + 14, t);
    }
    // Stage boundaries.
    json_t *m;
    json_array_foreach(marks, i, m) {
        double x = xat(&ax, numv(m, "t", ax.t0));
        fprintf(f, "<line class=\"stage-mark\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>"
                   "<text class=\"tick\" x=\"%.1f\" y=\"%.1f\">", x, TOP - 14 + (double)(i % 2) * 8, x, axis_y, x + 2,
                TOP - 14 + (double)(i % 2) * 8);
        esc(f, strv(m, "label"));
        fputs("</text>\n", f);
    }
    // One bar per attempt; one mark per reused job.
    json_array_foreach(jobs, i, j) {
        const char *name = strv(j, "name");
        if (json_is_true(json_object_get(j, "reused"))) {
            double t = ax.t0;
            json_array_foreach(marks, k, m) if (strstr(name, strv(m, "label"))) t = numv(m, "t", ax.t0);
            write_bar(f, &ax, n_slots, t, t, "resumed", name, 0, "output reused from an earlier run");
            continue;
        }
        json_array_foreach(json_object_get(j, "attempt_spans"), k, a) {
            char detail[96];
            json_t *codes = json_object_get(j, "exit_codes"), *bss = json_object_get(j, "batch_sizes");
            snprintf(detail, sizeof detail, "exit %lld, batch size %lld",
                     (long long)json_integer_value(json_array_get(codes, k)),
                     (long long)json_integer_value(json_array_get(bss, k)));
            double t0 = numv(a, "start", ax.t0), t1 = numv(a, "end", ax.t1);
            write_bar(f, &ax, (int)numv(a, "slot", 0), t0, t1, strv(a, "outcome"), name, (int)k + 1, detail);
        }
    }
    if (d) {
        double xd = xat(&ax, ax.t0 + numv(d, "deadline_s", 0)), xs = xat(&ax, ax.t0 + numv(d, "stop_after_s", 0));
        fprintf(f, "<line class=\"deadline\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"><title>deadline</title></line>\n",
                xd, TOP - 4, xd, axis_y);
        fprintf(f, "<line class=\"stop\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"><title>workers stop (deadline "
                   "minus the reserve)</title></line>\n", xs, TOP - 4, xs, axis_y);
    }
    if (json_array_size(mem)) write_memory(f, &ax, mem, mem_y);
    fputs("</svg>\n<div class=\"legend\">", f);
    for (size_t o = 0; o < N_OUTCOMES; o++)
        fprintf(f, "<span><i class=\"outcome-%s\" style=\"background:%s\"></i>%s</span>", OUTCOMES[o][0],
                OUTCOMES[o][1], OUTCOMES[o][2]);
    fputs("<span>dashed: stage boundaries</span>", f);
    if (d) fputs("<span style=\"color:#d7263d\">red: deadline (solid), workers stop (dashed)</span>", f);
    if (!json_array_size(mem)) fputs("<span>no GPU memory samples (no GPU watched by NVML)</span>", f);
    fputs("</div>\n", f);
    write_rates(f, root);
    fputs("</div>\n</body></html>\n", f);
    if (ferror(f)) {
        atomic_file_abort(&af);
        return err_fmt(err, "%s: write failed", path);
    }
    return atomic_file_commit(&af, err);
}
