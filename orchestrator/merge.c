/* merge.c: shards and TTA variants -> one model's probabilities -> the weighted ensemble.
 *
 * merge_model reads every job output of one model again (each passes output_table_check once
 * more, since files can change between validation and merging), maps ids back to input rows,
 * undoes swap_ab (the worker saw response_a and response_b exchanged, so its first two label
 * columns are exchanged back; the other labels, such as a tie, are symmetric), averages the
 * variants, renormalises each row and writes work_dir/models/<name>.csv. merge_ensemble then
 * combines the models with normalised weights by one of three rules (docs/plan.md has the
 * formulas) and writes the submission in the input's row order.
 *
 * Under a deadline (a coverage_t given) jobs that did not finish are left out: a row gets the
 * mean of the variants that covered it, the ensemble renormalises a row's weights over the
 * models that covered it, and a row no model covered gets the plan's fallback. With every row
 * covered the arithmetic is the same as without a deadline, to the bit.
 *
 * Cost: O(rows x labels x (variants + models)) arithmetic plus one CSV parse per output; a
 * 25k-row, 2-model, 2-variant run merges in tens of milliseconds. It deliberately does not
 * validate outputs more loosely than validate.c does.
 */
#include <math.h>
#include <unistd.h>

#include "atomic_file.h"
#include "idmap.h"
#include "planning.h"
#include "probs.h"
#include "workdir.h"

#define P_CLAMP 1e-7   // geometric and logit_mean: probabilities are clamped to [1e-7, 1 - 1e-7]

/* Write the probabilities (input order) to path with probs_csv_write, creating path's directory
 * first. Returns 0, or -1 with err set. */
static int write_probs(const plan_t *plan, const csv_table_t *input, const double *probs, const char *path,
                       err_t *err) {
    char *dir = xstrdup(path), *slash = strrchr(dir, '/');
    int rc = 0;
    if (slash && slash != dir) {
        *slash = '\0';
        rc = fs_mkdir_p(dir, err);
    }
    free(dir);
    if (rc != 0) return -1;
    return probs_csv_write(path, (const char *const *)plan->labels, (size_t)plan->n_labels, input, 0, probs, err);
}

/* Scale row[0..n) to sum 1. Returns 0, or -1 when the sum is not a positive finite number. */
static int renormalise(double *row, size_t n) {
    double sum = 0;
    for (size_t l = 0; l < n; l++) sum += row[l];
    if (!(sum > 0) || !isfinite(sum)) return -1;
    for (size_t l = 0; l < n; l++) row[l] /= sum;
    return 0;
}

/* Add one job's validated values (vals: (job->n_rows, L) in job->ids order) into probs; with
 * present (job->n_rows bytes) only the rows it marks. */
static int accumulate(const plan_t *plan, const csv_table_t *input, const idmap_t *rows_by_id,
                      const job_t *job, int vi, const double *vals, const unsigned char *present,
                      unsigned char *seen, double *probs, err_t *err) {
    const plan_model_t *m = &plan->models[job->model];
    size_t L = (size_t)plan->n_labels;
    char show[80];
    for (size_t i = 0; i < job->n_rows; i++) {
        size_t r;
        if (present && !present[i]) continue;
        if (!idmap_get(rows_by_id, job->ids[i], &r))
            return err_fmt(err, "%s: id '%s' is not in the input %s", job->output_path,
                           pf_show(job->ids[i], show), plan->input);
        unsigned char *s = &seen[r * (size_t)m->n_tta + (size_t)vi];
        if (*s)
            return err_fmt(err, "model '%s': id '%s' (input line %zu) has two %s outputs; the second is in %s",
                           m->name, pf_show(job->ids[i], show), input->lines[r], tta_name(job->variant),
                           job->output_path);
        *s = 1;
        const double *v = vals + i * L;
        double *p = probs + r * L;
        int swap = job->variant == TTA_SWAP_AB;
        p[0] += v[swap ? 1 : 0];
        p[1] += v[swap ? 0 : 1];
        for (size_t l = 2; l < L; l++) p[l] += v[l];
    }
    return 0;
}

/* Accumulate the rows of cut job's partial output (validated by partial_output_read); a file that
 * fails validation is counted in cov and left out. Returns 0, or -1 with err set (two outputs for
 * one row and variant: a bug, not the worker's). */
static int merge_partial(const plan_t *plan, const csv_table_t *input, const idmap_t *rows_by_id, const job_t *job,
                         int vi, unsigned char *seen, double *probs, coverage_t *cov, err_t *err) {
    size_t L = (size_t)plan->n_labels, n = job->n_rows ? job->n_rows : 1, n_present = 0;
    double *vals = xmalloc(n * L * sizeof *vals);
    unsigned char *present = xcalloc(n, 1);
    char *path = job_partial_path(job);
    err_t perr = {0};
    int rc = 0;
    if (partial_output_read(plan, job, path, vals, present, &n_present, &perr) != 0) {
        cov->partial_rejected++;
        snprintf(cov->partial_error, sizeof cov->partial_error, "%s", perr.msg);
    } else if (n_present > 0) {
        rc = accumulate(plan, input, rows_by_id, job, vi, vals, present, seen, probs, err);
        cov->partial_rows += n_present;
    }
    free(path), free(present), free(vals);
    return rc;
}

int merge_model(const plan_t *plan, const csv_table_t *input, int model, const job_t *jobs, int n_jobs,
                double *probs, coverage_t *cov, err_t *err) {
    ASSERT(model >= 0 && model < plan->n_models);
    const plan_model_t *m = &plan->models[model];
    size_t R = input->n_rows, L = (size_t)plan->n_labels, V = (size_t)m->n_tta;
    memset(probs, 0, R * L * sizeof *probs);
    idmap_t rows_by_id;
    idmap_init(&rows_by_id, R);
    for (size_t r = 0; r < R; r++) idmap_put(&rows_by_id, csv_cell(input, r, 0), r, NULL);
    unsigned char *seen = xcalloc(R * V + 1, 1);
    int rc = 0;
    if (cov) {
        cov->rows = cov->partial_rows = 0;
        cov->partial_rejected = 0;
        cov->partial_error[0] = '\0';
        memset(cov->variant_rows, 0, sizeof cov->variant_rows);
    }
    for (int j = 0; j < n_jobs && rc == 0; j++) {
        const job_t *job = &jobs[j];
        if (job->model != model) continue;
        int vi = -1;
        for (int v = 0; v < m->n_tta; v++)
            if (m->tta[v] == job->variant) vi = v;
        if (vi < 0) {
            rc = err_fmt(err, "job %s: model '%s' has no %s variant", job->name, m->name, tta_name(job->variant));
            break;
        }
        if (job->status == JOB_CUT && cov) {   // the rows its partial output holds, if any
            rc = merge_partial(plan, input, &rows_by_id, job, vi, seen, probs, cov, err);
            continue;
        }
        if (job->status != JOB_DONE && job->status != JOB_REUSED && cov) continue;  // skipped, failed
        if (job->status != JOB_DONE && job->status != JOB_REUSED) {
            rc = err_fmt(err, "job %s did not finish; cannot merge model '%s'", job->name, m->name);
            break;
        }
        csv_table_t t;
        if (csv_table_read(&t, job->output_path, err) != 0) {
            rc = -1;
            break;
        }
        double *vals = xmalloc((job->n_rows ? job->n_rows : 1) * L * sizeof *vals);
        rc = output_table_check((const char *const *)plan->labels, plan->n_labels, job->ids, job->n_rows, &t,
                                job->output_path, vals, err);
        csv_table_free(&t);
        if (rc == 0) rc = accumulate(plan, input, &rows_by_id, job, vi, vals, NULL, seen, probs, err);
        free(vals);
    }
    for (size_t r = 0; r < R && rc == 0; r++) {
        if (cov) {
            size_t present = 0;
            for (size_t v = 0; v < V; v++) present += seen[r * V + v], cov->variant_rows[v] += seen[r * V + v];
            cov->covered[r] = present > 0;
            cov->rows += present > 0;
            if (!present) continue;   // no variant: the ensemble leaves this model out of the row
        }
        for (size_t v = 0; v < V && rc == 0; v++) {
            if (seen[r * V + v] || cov) continue;
            char show[80];
            rc = err_fmt(err, "model '%s': id '%s' (%s line %zu) has no %s output", m->name,
                         pf_show(csv_cell(input, r, 0), show), plan->input, input->lines[r], tta_name(m->tta[v]));
        }
        if (rc == 0 && renormalise(probs + r * L, L) != 0)   // validated rows sum to ~1: cannot happen
            rc = err_fmt(err, "model '%s': row at %s line %zu has no probability mass", m->name, plan->input,
                         input->lines[r]);
    }
    free(seen);
    idmap_free(&rows_by_id);
    if (rc != 0) return -1;
    char *path = workdir_path(plan, WD_MODELS, m->name, ".csv");
    if (cov && cov->rows < R) unlink(path);   // no complete model file; an earlier one is stale
    else rc = write_probs(plan, input, probs, path, err);
    free(path);
    return rc;
}

/* p clamped to [P_CLAMP, 1 - P_CLAMP], so that logits and logs stay finite. */
static double clamp_p(double p) { return p < P_CLAMP ? P_CLAMP : p > 1 - P_CLAMP ? 1 - P_CLAMP : p; }

int merge_ensemble(const plan_t *plan, const csv_table_t *input, double *const *model_probs,
                   const unsigned char *const *covered, const char *out_path, size_t *n_fallback, err_t *err) {
    size_t R = input->n_rows, L = (size_t)plan->n_labels, fallbacks = 0;
    int M = plan->n_models;
    double *out = xmalloc((R ? R : 1) * L * sizeof *out);
    for (size_t r = 0; r < R; r++) {
        double *o = out + r * L;
        // The weights of the models that covered this row (all of them without a deadline).
        double total = 0;
        for (int k = 0; k < M; k++)
            if (!covered || covered[k][r]) total += plan->models[k].weight;
        if (!(total > 0)) {   // no model covered the row: the fallback (plan.c made it sum to 1)
            ASSERT(covered);  // without coverage every model counts, and plan.c makes weights > 0
            for (size_t l = 0; l < L; l++) o[l] = plan->fallback[l];
            fallbacks++;
            continue;
        }
        for (size_t l = 0; l < L; l++) {
            double acc = 0;
            for (int k = 0; k < M; k++) {
                if (covered && !covered[k][r]) continue;
                double w = plan->models[k].weight / total, p = model_probs[k][r * L + l];
                switch (plan->ensemble) {
                case ENSEMBLE_MEAN: acc += w * p; break;
                case ENSEMBLE_GEOMETRIC: acc += w * log(clamp_p(p)); break;
                case ENSEMBLE_LOGIT_MEAN: p = clamp_p(p), acc += w * log(p / (1 - p)); break;
                }
            }
            if (plan->ensemble == ENSEMBLE_GEOMETRIC) acc = exp(acc);
            else if (plan->ensemble == ENSEMBLE_LOGIT_MEAN) acc = 1 / (1 + exp(-acc));
            o[l] = acc;
        }
        // Each term is positive (clamped) or a mean of validated probabilities, so the row sum is
        // positive; renormalising only fails on a corrupted probs array.
        if (renormalise(o, L) != 0) {
            free(out);
            return err_fmt(err, "ensemble: row at %s line %zu has no probability mass", plan->input, input->lines[r]);
        }
    }
    int rc = write_probs(plan, input, out, out_path, err);
    free(out);
    if (n_fallback) *n_fallback = fallbacks;
    return rc;
}
