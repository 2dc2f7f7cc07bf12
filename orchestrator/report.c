/* report.c: build report.json with jansson as stages finish, write it atomically, and print the
 * summary table (see report.h). It reads job_t fields only; it changes nothing. */
#include "report.h"

#include <jansson.h>
#include <math.h>
#include <unistd.h>

#include "atomic_file.h"
#include "planning.h"
#include "report_html.h"

typedef struct {
    char name[128];           // the stage's model name
    int jobs, reused, attempts, failed;  // jobs in the stage, reused, attempts started, failed for good
    int cut;                  // jobs cut or skipped by the deadline
    size_t rows;              // rows over all the stage's jobs (a row counts once per variant)
    size_t ran_rows;          // rows of the jobs that ran (not reused)
    size_t rows_done;         // rows of the jobs done or reused (the stage's usable result)
    int recorded;             // jobs whose output has a resume record (a rerun reuses them)
    double wall_s, worker_s;  // stage wall time; sum over jobs of first start to last end (seconds)
} stage_sum_t;

struct report {
    json_t *root;             // the report object; "stages" and "jobs" grow as stages are added
    json_t *stages, *jobs;    // borrowed references into root
    json_t *cut, *skipped;    // (owned) names of the jobs the deadline cut / skipped
    json_t *marks, *mem;      // borrowed: "stage_marks" [{label, t}], "gpu_memory_samples" [{gpu, t, used_mib}]
    json_t *deadline;         // (owned) the "deadline" object, or NULL without a deadline
    stage_sum_t *sums;        // (n_sums) for the summary table
    int n_sums;               // entries in sums
    int n_models;             // stages in the plan (those after a failure are never added)
    double t_start;           // wall clock
};

/* The report's word for a job's status ("done", "reused", "stopped", ...; a static string). */
static const char *status_name(const job_t *j) {
    switch (j->status) {
    case JOB_PENDING: return j->attempts > 0 ? "stopped" : "not run";
    case JOB_RUNNING: return "running";
    case JOB_DONE: return "done";
    case JOB_REUSED: return "reused";
    case JOB_FAILED: return "failed";
    case JOB_CUT: return "cut";
    case JOB_SKIPPED: return "skipped";
    }
    return "?";
}

/* A JSON real for v, or JSON null when v is not finite (JSON has no NaN). Returns a new reference. */
static json_t *num(double v) {
    return isfinite(v) ? json_real(v) : json_null();
}

report_t *report_create(const plan_t *plan, const slot_t *slots, int n_slots, double t_start_wall) {
    report_t *r = xcalloc(1, sizeof *r);
    r->t_start = t_start_wall;
    r->n_models = plan->n_models;
    r->root = json_object();
    json_object_set_new(r->root, "orchestrate_version", json_string(ORCH_VERSION));
    json_object_set_new(r->root, "plan", json_string(plan->path ? plan->path : ""));
    json_object_set_new(r->root, "input", json_string(plan->input ? plan->input : ""));
    json_object_set_new(r->root, "output", json_string(plan->output ? plan->output : ""));
    json_object_set_new(r->root, "work_dir", json_string(plan->work_dir ? plan->work_dir : ""));
    json_t *js = json_array();
    for (int s = 0; s < n_slots; s++) {
        json_t *o = json_object();
        json_object_set_new(o, "slot", json_integer(s));
        json_object_set_new(o, "device", json_string(slots[s].device));
        json_object_set_new(o, "gpu", slots[s].gpu >= 0 ? json_integer(slots[s].gpu) : json_null());
        json_object_set_new(o, "cuda_visible_devices", json_string(slots[s].cuda_visible));
        json_array_append_new(js, o);
    }
    json_object_set_new(r->root, "slots", js);
    r->stages = json_array();
    r->jobs = json_array();
    json_object_set_new(r->root, "stages", r->stages);
    json_object_set_new(r->root, "jobs", r->jobs);
    r->cut = json_array();
    r->skipped = json_array();
    r->marks = json_array();
    r->mem = json_array();
    json_object_set_new(r->root, "stage_marks", r->marks);
    json_object_set_new(r->root, "gpu_memory_samples", r->mem);
    return r;
}

void report_destroy(report_t *r) {
    if (!r) return;
    json_decref(r->root);
    json_decref(r->cut), json_decref(r->skipped), json_decref(r->deadline);
    free(r->sums);
    free(r);
}

/* How attempt k of job j ended, for the timeline: "ok", "retried", "oom" (the batch was halved),
 * "timeout", "cut" (by the deadline), "failed" or "stopped" (a static string). */
static const char *attempt_outcome(const job_t *j, int k) {
    int last = k == j->attempts - 1;
    int oom = j->exit_codes[k] == 75 || (!last && j->batch_sizes[k + 1] < j->batch_sizes[k]);
    if (!last) return j->timed_out[k] ? "timeout" : oom ? "oom" : "retried";
    switch (j->status) {
    case JOB_DONE: return "ok";
    case JOB_CUT: return "cut";
    case JOB_FAILED: return j->timed_out[k] ? "timeout" : oom ? "oom" : "failed";
    default: return "stopped";
    }
}

/* One job's entry of report.json: identity, outcome, every attempt's exit code, timeout and batch
 * size, timing and paths. Returns a new reference. */
static json_t *job_json(const plan_t *plan, const job_t *j) {
    json_t *o = json_object();
    json_object_set_new(o, "name", json_string(j->name));
    json_object_set_new(o, "model", json_string(plan->models[j->model].name));
    json_object_set_new(o, "variant", json_string(tta_name(j->variant)));
    json_object_set_new(o, "shard", json_integer(j->shard));  // 0-based, as in the job name and ORCHESTRATE_SHARD
    json_object_set_new(o, "n_shards", json_integer(j->n_shards));
    json_object_set_new(o, "status", json_string(status_name(j)));
    json_object_set_new(o, "reused", json_boolean(j->status == JOB_REUSED));
    json_object_set_new(o, "slot", j->slot >= 0 ? json_integer(j->slot) : json_null());
    json_object_set_new(o, "attempts", json_integer(j->attempts));
    json_t *codes = json_array(), *tos = json_array(), *bss = json_array();
    for (int k = 0; k < j->attempts && k < JOB_MAX_ATTEMPTS; k++) {
        json_array_append_new(codes, json_integer(j->exit_codes[k]));
        json_array_append_new(tos, json_boolean(j->timed_out[k]));
        json_array_append_new(bss, json_integer(j->batch_sizes[k]));
    }
    json_object_set_new(o, "exit_codes", codes);
    json_object_set_new(o, "timed_out", tos);
    json_object_set_new(o, "batch_sizes", bss);
    if (plan->executor == EXECUTOR_SLURM) {
        // Per attempt: the Slurm step and node (null when the step never started). The GPU
        // memory check after a stage needs NVML on the node; through Slurm it is not done.
        json_t *steps = json_array(), *nodes = json_array();
        for (int k = 0; k < j->attempts && k < JOB_MAX_ATTEMPTS; k++) {
            json_array_append_new(steps, j->steps[k][0] ? json_string(j->steps[k]) : json_null());
            json_array_append_new(nodes, j->nodes[k][0] ? json_string(j->nodes[k]) : json_null());
        }
        json_object_set_new(o, "slurm_steps", steps);
        json_object_set_new(o, "slurm_nodes", nodes);
        // Per attempt: the step shim's GPU memory check, or why it was not done.
        json_t *mem = json_array();
        for (int k = 0; k < j->attempts && k < JOB_MAX_ATTEMPTS; k++) {
            json_t *e = json_object();
            if (j->step_mem_state[k] == 1) {
                json_object_set_new(e, "gpu", json_integer(j->step_gpu[k]));
                json_object_set_new(e, "before_mib", num(j->step_mem[k][0]));
                json_object_set_new(e, "after_mib", num(j->step_mem[k][1]));
                json_object_set_new(e, "leaked", json_boolean(j->step_mem[k][1] - j->step_mem[k][0] > plan->mem_tolerance_mib));
            } else {
                json_object_set_new(e, "not_done", json_string(j->step_mem_state[k] == 2 ? j->step_mem_note[k]
                                                                : "the step's shim did not report (the step was killed or never started)"));
            }
            json_array_append_new(mem, e);
        }
        json_object_set_new(o, "gpu_memory", mem);
    }
    json_object_set_new(o, "rows", json_integer((json_int_t)j->n_rows));
    json_object_set_new(o, "cost_bytes", json_integer((json_int_t)j->cost));
    int ran = j->attempts > 0 && j->t_end > j->t_start;
    json_object_set_new(o, "start", ran ? num(j->t_start) : json_null());
    json_object_set_new(o, "end", ran ? num(j->t_end) : json_null());
    double dur = ran ? j->t_end - j->t_start : 0;
    json_object_set_new(o, "duration_s", ran ? num(dur) : json_null());
    json_object_set_new(o, "rows_per_s",
                        ran && j->status == JOB_DONE && dur > 0 ? num((double)j->n_rows / dur) : json_null());
    json_object_set_new(o, "output", json_string(j->output_path ? j->output_path : ""));
    json_object_set_new(o, "log", json_string(j->log_path ? j->log_path : ""));
    if (j->last_error[0]) json_object_set_new(o, "last_error", json_string(j->last_error));
    json_t *spans = json_array();
    for (int k = 0; k < j->attempts && k < JOB_MAX_ATTEMPTS; k++) {
        json_t *a = json_object();
        json_object_set_new(a, "slot", json_integer(j->att_slot[k]));
        json_object_set_new(a, "start", num(j->att_start[k]));
        json_object_set_new(a, "end", j->att_end[k] > 0 ? num(j->att_end[k]) : json_null());
        json_object_set_new(a, "outcome", json_string(attempt_outcome(j, k)));
        json_array_append_new(spans, a);
    }
    json_object_set_new(o, "attempt_spans", spans);
    if (j->status == JOB_CUT)   // rows the worker reported done before the deadline stopped it
        json_object_set_new(o, "rows_reported_done", json_integer((json_int_t)j->rows_done));
    return o;
}

void report_add_stage(report_t *r, const plan_t *plan, int model, const job_t *jobs, int n_jobs,
                      double stage_wall_s, const memcheck_gpu_t *mem, int n_mem) {
    r->sums = xrealloc(r->sums, (size_t)(r->n_sums + 1) * sizeof *r->sums);
    stage_sum_t *sum = &r->sums[r->n_sums++];
    memset(sum, 0, sizeof *sum);
    snprintf(sum->name, sizeof sum->name, "%s", plan->models[model].name);
    sum->wall_s = stage_wall_s;
    for (int i = 0; i < n_jobs; i++) {
        const job_t *j = &jobs[i];
        json_array_append_new(r->jobs, job_json(plan, j));
        sum->jobs++;
        sum->reused += j->status == JOB_REUSED;
        sum->failed += j->status == JOB_FAILED;
        sum->cut += j->status == JOB_CUT || j->status == JOB_SKIPPED;
        if (j->status == JOB_CUT) json_array_append_new(r->cut, json_string(j->name));
        if (j->status == JOB_SKIPPED) json_array_append_new(r->skipped, json_string(j->name));
        sum->attempts += j->attempts;
        sum->rows += j->n_rows;
        if (j->status != JOB_REUSED) sum->ran_rows += j->n_rows;
        if (j->status == JOB_DONE || j->status == JOB_REUSED) sum->rows_done += j->n_rows;
        if (j->key) {
            char *rec = resume_path(plan, j->key);
            sum->recorded += access(rec, F_OK) == 0;
            free(rec);
        }
        if (j->attempts > 0 && j->t_end > j->t_start) sum->worker_s += j->t_end - j->t_start;
    }
    json_t *st = json_object();
    json_object_set_new(st, "model", json_string(sum->name));
    json_object_set_new(st, "wall_s", num(stage_wall_s));
    json_object_set_new(st, "jobs", json_integer(sum->jobs));
    json_object_set_new(st, "jobs_reused", json_integer(sum->reused));
    json_object_set_new(st, "attempts", json_integer(sum->attempts));
    json_object_set_new(st, "rows", json_integer((json_int_t)sum->rows));
    json_object_set_new(st, "rows_done", json_integer((json_int_t)sum->rows_done));
    json_t *jm = json_array();
    for (int g = 0; g < n_mem; g++) {
        json_t *o = json_object();
        json_object_set_new(o, "gpu", json_integer(mem[g].gpu));
        json_object_set_new(o, "before_mib", num(mem[g].baseline_mib));
        json_object_set_new(o, "after_mib", num(mem[g].after_mib));
        json_object_set_new(o, "waited_s", num(mem[g].waited_s));
        json_object_set_new(o, "leaked", json_boolean(mem[g].leaked));
        json_t *h = json_array();
        for (int k = 0; k < mem[g].n_holders; k++) json_array_append_new(h, json_integer(mem[g].holders[k]));
        json_object_set_new(o, "holders", h);
        json_object_set_new(o, "killed", json_integer(mem[g].killed));
        json_array_append_new(jm, o);
    }
    json_object_set_new(st, "memory", jm);
    json_array_append_new(r->stages, st);
}

void report_mark(report_t *r, const char *label, double t_wall) {
    json_t *o = json_object();
    json_object_set_new(o, "label", json_string(label));
    json_object_set_new(o, "t", num(t_wall));
    json_array_append_new(r->marks, o);
}

void report_add_mem_sample(report_t *r, int gpu, double t_wall, double used_mib) {
    json_t *o = json_object();
    json_object_set_new(o, "gpu", json_integer(gpu));
    json_object_set_new(o, "t", num(t_wall));
    json_object_set_new(o, "used_mib", num(used_mib));
    json_array_append_new(r->mem, o);
}

void report_set_deadline(report_t *r, const plan_t *plan, const budget_t *b, const coverage_t *cov,
                         size_t n_rows, size_t fallback_rows) {
    json_t *d = json_object();
    json_object_set_new(d, "deadline_s", num(b->deadline_s));
    json_object_set_new(d, "reserve_s", num(b->reserve_s));
    json_object_set_new(d, "reserve_kill_grace_s", num(b->grace_s));
    json_object_set_new(d, "reserve_merge_s", num(b->merge_s));
    json_object_set_new(d, "reserve_slack_s", num(BUDGET_SLACK_S));
    json_object_set_new(d, "stop_after_s", num(b->deadline_s - b->reserve_s));
    json_object_set_new(d, "rows", json_integer((json_int_t)n_rows));
    json_object_set_new(d, "fallback_rows", json_integer((json_int_t)fallback_rows));
    int degraded = fallback_rows > 0 || json_array_size(r->cut) > 0 || json_array_size(r->skipped) > 0;
    json_t *ms = json_array();
    for (int m = 0; m < plan->n_models; m++) {
        const plan_model_t *pm = &plan->models[m];
        json_t *o = json_object(), *vs = json_object();
        json_object_set_new(o, "model", json_string(pm->name));
        json_object_set_new(o, "rows_covered", json_integer((json_int_t)cov[m].rows));
        json_object_set_new(o, "rows_from_partial_outputs", json_integer((json_int_t)cov[m].partial_rows));
        json_object_set_new(o, "partial_outputs_rejected", json_integer(cov[m].partial_rejected));
        for (int v = 0; v < pm->n_tta; v++) {
            json_object_set_new(vs, tta_name(pm->tta[v]), json_integer((json_int_t)cov[m].variant_rows[v]));
            degraded |= cov[m].variant_rows[v] < n_rows;
        }
        json_object_set_new(o, "variants_rows", vs);
        json_array_append_new(ms, o);
    }
    json_object_set_new(d, "degraded", json_boolean(degraded));
    json_object_set_new(d, "models", ms);
    json_object_set_new(d, "cut", json_deep_copy(r->cut));
    json_object_set_new(d, "skipped", json_deep_copy(r->skipped));
    json_decref(r->deadline);
    r->deadline = d;
    json_object_set(r->root, "deadline", d);
}

int report_write(report_t *r, const char *path, const char *status, const char *failure,
                 const report_times_t *t, err_t *err) {
    json_object_set_new(r->root, "status", json_string(status));
    json_object_set_new(r->root, "failure", failure ? json_string(failure) : json_null());
    json_object_set_new(r->root, "started", num(r->t_start));
    json_object_set_new(r->root, "ended", num(r->t_start + t->wall_s));
    json_t *tot = json_object();
    int jobs = 0, reused = 0, attempts = 0;
    size_t rows = 0;
    for (int s = 0; s < r->n_sums; s++) {
        jobs += r->sums[s].jobs, reused += r->sums[s].reused;
        attempts += r->sums[s].attempts, rows += r->sums[s].rows;
    }
    double overhead = t->wall_s - t->worker_s;
    json_object_set_new(tot, "jobs", json_integer(jobs));
    json_object_set_new(tot, "jobs_reused", json_integer(reused));
    json_object_set_new(tot, "attempts", json_integer(attempts));
    json_object_set_new(tot, "workers_spawned", json_integer(t->spawned));
    json_object_set_new(tot, "rows", json_integer((json_int_t)rows));
    json_object_set_new(tot, "wall_s", num(t->wall_s));
    json_object_set_new(tot, "worker_s", num(t->worker_s));
    json_object_set_new(tot, "overhead_s", num(overhead));
    json_object_set_new(tot, "overhead_fraction", num(t->wall_s > 0 ? overhead / t->wall_s : 0));
    json_t *br = json_object();
    json_object_set_new(br, "read_input_s", num(t->read_input_s));
    json_object_set_new(br, "build_jobs_s", num(t->build_jobs_s));
    json_object_set_new(br, "validate_s", num(t->validate_s));
    json_object_set_new(br, "merge_s", num(t->merge_s));
    json_object_set_new(br, "memory_wait_s", num(t->memory_s));
    json_object_set_new(tot, "overhead_breakdown", br);
    json_object_set_new(r->root, "totals", tot);

    char *text = json_dumps(r->root, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(15));
    if (!text) return err_fmt(err, "%s: cannot serialise the report", path);
    atomic_file_t af;
    if (atomic_file_open(&af, path, err) != 0) {
        free(text);
        return -1;
    }
    fputs(text, af.f);
    fputc('\n', af.f);
    free(text);
    if (atomic_file_commit(&af, err) != 0) return -1;
    // report.html beside it, from the same data.
    size_t n = strlen(path);
    char *html = xmalloc(n + 8);
    memcpy(html, path, n + 1);
    if (n > 5 && strcmp(html + n - 5, ".json") == 0) html[n - 5] = '\0';
    strcat(html, ".html");
    int rc = report_html_write(r->root, html, err);
    free(html);
    return rc;
}

/* Print names (a JSON array of strings) as "a, b, c", or "none". */
static void print_names(const json_t *names, FILE *f) {
    size_t i;
    json_t *v;
    if (json_array_size(names) == 0) fputs("none", f);
    json_array_foreach(names, i, v) fprintf(f, "%s%s", i ? ", " : "", json_string_value(v));
}

/* The summary's deadline lines, from the report's "deadline" object d. */
static void print_deadline(const json_t *d, FILE *f) {
    json_int_t rows = json_integer_value(json_object_get(d, "rows"));
    fprintf(f, "deadline: %.1f s; reserved %.1f s for stopping and merging; workers stop after %.1f s%s\n",
            json_real_value(json_object_get(d, "deadline_s")), json_real_value(json_object_get(d, "reserve_s")),
            json_real_value(json_object_get(d, "stop_after_s")),
            json_is_true(json_object_get(d, "degraded")) ? "; DEGRADED result (see below)" : "; everything fit");
    size_t i;
    json_t *m;
    json_array_foreach(json_object_get(d, "models"), i, m) {
        fprintf(f, "  coverage: %s %lld/%lld rows (", json_string_value(json_object_get(m, "model")),
                (long long)json_integer_value(json_object_get(m, "rows_covered")), (long long)rows);
        const char *k;
        json_t *v;
        int first = 1;
        json_object_foreach(json_object_get(m, "variants_rows"), k, v) {
            fprintf(f, "%s%s %lld", first ? "" : ", ", k, (long long)json_integer_value(v));
            first = 0;
        }
        fputs(")\n", f);
    }
    fputs("  cut by the deadline: ", f);
    print_names(json_object_get(d, "cut"), f);
    fputs("\n  skipped (no time to start): ", f);
    print_names(json_object_get(d, "skipped"), f);
    fprintf(f, "\n  fallback: %lld of %lld rows covered by no model\n",
            (long long)json_integer_value(json_object_get(d, "fallback_rows")), (long long)rows);
}

void report_print_summary(const report_t *r, const report_times_t *t, FILE *f) {
    fprintf(f, "\n%-24s %6s %7s %9s %13s %10s %10s\n", "stage (model)", "jobs", "reused", "attempts", "rows",
            "wall s", "rows/s");
    int jobs = 0, recorded = 0;
    for (int s = 0; s < r->n_sums; s++) {
        const stage_sum_t *x = &r->sums[s];
        // Only a stage whose every job is done (or reused) has a result and a meaningful rate.
        int complete = !x->failed && x->rows_done == x->rows;
        char rows[48], rate[32];
        if (complete) snprintf(rows, sizeof rows, "%zu", x->rows);
        else snprintf(rows, sizeof rows, "%zu/%zu", x->rows_done, x->rows);
        if (complete) snprintf(rate, sizeof rate, "%.1f", x->wall_s > 0 ? (double)x->ran_rows / x->wall_s : 0.0);
        else snprintf(rate, sizeof rate, "-");
        fprintf(f, "%-24.24s %6d %7d %9d %13s %10.2f %10s%s\n", x->name, x->jobs, x->reused, x->attempts, rows,
                x->wall_s, rate, x->failed ? "  FAILED" : complete ? "" : x->cut ? "  CUT" : "  STOPPED");
        jobs += x->jobs, recorded += x->recorded;
    }
    double overhead = t->wall_s - t->worker_s;
    fprintf(f, "total: %.2f s wall, %.2f s with workers running, orchestration overhead %.2f s (%.1f%%: "
               "input %.2f, sharding %.2f, validation %.2f, merge %.2f, GPU memory wait %.2f); "
               "%d worker(s) started\n",
            t->wall_s, t->worker_s, overhead, t->wall_s > 0 ? 100 * overhead / t->wall_s : 0.0,
            t->read_input_s, t->build_jobs_s, t->validate_s, t->merge_s, t->memory_s, t->spawned);
    if (r->deadline) print_deadline(r->deadline, f);
    const char *status = json_string_value(json_object_get(r->root, "status"));
    if (!status || strcmp(status, "ok") != 0) {
        fprintf(f, "a rerun will reuse %d of %d job(s) (their validated outputs are in the work directory's done/)",
                recorded, jobs);
        if (r->n_sums < r->n_models) fprintf(f, "; %d stage(s) not reached", r->n_models - r->n_sums);
        fputs("\n", f);
    }
    fflush(f);
}
