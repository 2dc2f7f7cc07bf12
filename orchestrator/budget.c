/* budget.c: parse a deadline, size the reserve, describe it (budget.h). No processes, no files. */
#include "budget.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int budget_parse_duration(const char *s, double *out, err_t *err) {
    const char *p = s;
    double total = 0;
    int units_seen = 0, last_rank = -1;   // rank: h 0, m 1, s 2 (each at most once, in order)
    if (!*p) return err_fmt(err, "empty duration (expected seconds, or e.g. \"8h30m\", \"45m\", \"90s\")");
    while (*p) {
        if (!((*p >= '0' && *p <= '9') || *p == '.'))
            return err_fmt(err, "'%s' is not a duration (expected seconds, or e.g. \"8h30m\", \"45m\", \"90s\")", s);
        char *end;
        double v = strtod(p, &end);
        if (end == p || !isfinite(v))
            return err_fmt(err, "'%s' is not a duration (expected seconds, or e.g. \"8h30m\", \"45m\", \"90s\")", s);
        p = end;
        int rank = *p == 'h' ? 0 : *p == 'm' ? 1 : *p == 's' ? 2 : -1;
        if (rank < 0 && *p)
            return err_fmt(err, "'%s': unknown unit '%c' (use h, m or s)", s, *p);
        if (rank < 0) {   // a bare number: seconds, and only on its own
            if (units_seen) return err_fmt(err, "'%s': a number after a unit needs its own unit (h, m or s)", s);
            total = v;
            break;
        }
        if (rank <= last_rank) return err_fmt(err, "'%s': units must come once each, in the order h, m, s", s);
        last_rank = rank;
        units_seen = 1;
        total += v * (rank == 0 ? 3600 : rank == 1 ? 60 : 1);
        p++;
    }
    if (!(total > 0)) return err_fmt(err, "'%s': the deadline must be more than 0 seconds", s);
    if (total > BUDGET_MAX_S) return err_fmt(err, "'%s': more than a year; is that a typo?", s);
    *out = total;
    return 0;
}

/* Outputs the final merge reads: every model variant's, and the submission it writes. */
static int merge_outputs(const plan_t *plan) {
    int outputs = 1;
    for (int m = 0; m < plan->n_models; m++) outputs += plan->models[m].n_tta;
    return outputs;
}

/* Recompute the reserve and the stop time from grace_s and merge_s. */
static void budget_settle(budget_t *b) {
    b->reserve_s = b->grace_s + b->merge_s + BUDGET_SLACK_S;
    b->stop_at = b->t0 + b->deadline_s - b->reserve_s;
}

void budget_init(budget_t *b, const plan_t *plan, double deadline_s, double t0, double read_input_s) {
    ASSERT(deadline_s > 0);
    memset(b, 0, sizeof *b);
    b->deadline_s = deadline_s;
    b->t0 = t0;
    b->grace_s = plan->kill_grace_s;
    b->merge_s = BUDGET_MERGE_MARGIN * read_input_s * merge_outputs(plan);
    if (b->merge_s < BUDGET_MERGE_MIN_S) b->merge_s = BUDGET_MERGE_MIN_S;
    budget_settle(b);
}

int budget_observe(budget_t *b, const plan_t *plan, double per_output_s) {
    double want = BUDGET_MERGE_MARGIN * per_output_s * merge_outputs(plan);
    if (!(want > b->merge_s)) return 0;
    b->merge_s = want;
    budget_settle(b);
    return 1;
}

double budget_left(const budget_t *b, double now) {
    return b->stop_at - now;
}

void budget_describe(const budget_t *b, char *buf, size_t n) {
    snprintf(buf, n, "deadline %.1f s from the start: reserving %.1f s (kill grace %.1f s, merge and validation "
             "%.1f s, slack %.1f s); workers stop %.1f s after the start",
             b->deadline_s, b->reserve_s, b->grace_s, b->merge_s, BUDGET_SLACK_S, b->deadline_s - b->reserve_s);
}
