/* budget.h: the time budget of a run with a deadline (the plan's `deadline`, --deadline;
 * docs/plan.md, "Deadline").
 *
 * The deadline counts from orchestrate's start. Workers are stopped at the deadline minus a
 * reserve: the kill grace (SIGTERM, then SIGKILL), the time to merge and validate (estimated
 * from the measured time to read the input, with a margin) and a fixed slack. What the stopped
 * and skipped jobs did not cover is filled by the other models or the plan's fallback
 * (merge.c). This module holds the arithmetic and the wording; run.c enforces the stop time,
 * main.c builds the budget. It does not touch processes or files.
 */
#ifndef ORCH_BUDGET_H
#define ORCH_BUDGET_H

#include <stddef.h>

#include "orch.h"

#define BUDGET_MAX_S (366.0 * 86400)   // the longest deadline accepted (a year)
#define BUDGET_SLACK_S 1.0             // reserved beyond grace and merge: pipes closing, the report
#define BUDGET_MERGE_MIN_S 0.5         // the smallest merge + validation estimate
#define BUDGET_MERGE_MARGIN 3.0        // the estimate is this many times the measured cost

typedef struct {
    double deadline_s;      // seconds from the start (> 0)
    double t0;              // monotonic seconds at orchestrate's start
    double grace_s;         // the plan's kill_grace_s (part of the reserve)
    double merge_s;         // estimated seconds to validate the outputs and merge (part of it)
    double reserve_s;       // grace_s + merge_s + BUDGET_SLACK_S
    double stop_at;         // monotonic seconds: stop the workers (t0 + deadline_s - reserve_s)
} budget_t;

/* Parse a duration: a number of seconds ("90", "1.5") or number-unit pairs with units h, m, s
 * in that order ("8h30m", "45m", "90s", "1h0m5s"). Returns 0 with *out in seconds (> 0 and at
 * most BUDGET_MAX_S), or -1 with err saying what is wrong (no file or key: the caller adds it). */
int budget_parse_duration(const char *s, double *out, err_t *err);

/* Set up b for a deadline of deadline_s seconds from t0 (monotonic), for a run of plan over
 * n_rows input rows whose input took read_input_s to read: the merge estimate reads every
 * model and variant output (each about as big as the input's ids and probabilities) and the
 * input, BUDGET_MERGE_MARGIN times, at least BUDGET_MERGE_MIN_S. */
void budget_init(budget_t *b, const plan_t *plan, double deadline_s, double t0, double read_input_s);

/* Raise the merge estimate (and so the reserve; the stop time comes earlier) when outputs took
 * per_output_s each to validate, measured in this run: the merge reads each of them once more.
 * Never lowers it. Returns 1 when the estimate grew, else 0. run_stage arms its stop timer from
 * b->stop_at when a stage (or pass) starts. */
int budget_observe(budget_t *b, const plan_t *plan, double per_output_s);

/* Seconds left before the workers must stop (negative once past). */
double budget_left(const budget_t *b, double now);

/* One line for the console: the deadline, the reserve and its parts, when workers stop. */
void budget_describe(const budget_t *b, char *buf, size_t n);

#endif
