/* report_html.h: report.html, the run's report for a browser or a notebook cell
 * (IPython.display.HTML): one self-contained file (inline style, inline SVG; no script, no
 * network) drawn from report.json's data. See docs/orchestrate.md, "report.html".
 */
#ifndef ORCH_REPORT_HTML_H
#define ORCH_REPORT_HTML_H

#include <jansson.h>

#include "check.h"

/* Write report.html for the report object `root` (as report.c builds it: slots, jobs with their
 * attempt_spans, stage_marks, gpu_memory_samples, deadline, started/ended) to path, atomically:
 * a timeline with one lane per slot and one bar per attempt coloured by outcome, stage
 * boundaries, the deadline and stop lines, GPU memory per GPU over time, and rows/s per model.
 * Returns 0, or -1 with err naming path. */
int report_html_write(const json_t *root, const char *path, err_t *err);

#endif
