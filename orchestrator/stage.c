/* stage.c: turn one model of the plan into jobs: input checks, shards, shard CSVs, resume.
 *
 * A stage runs one model over the whole input: one job per (TTA variant, shard). Each job's
 * shard is written as a CSV whose file name is the digest of its bytes, so an identical shard
 * (the same rows for another model, or a rerun) is written once and reused (after checking that
 * its bytes are still the shard's). The job's resume key digests the shard bytes, the variant,
 * the model's settings_key and the files the model depends on (fingerprint.h): when
 * work_dir/done/<key>.csv exists and still validates, the job is JOB_REUSED and never runs.
 *
 * The work directory's layout is workdir.h's.
 *
 * It deliberately does not run anything or decide the number of slots; main.c and run.c do.
 */
#include <sys/stat.h>
#include <unistd.h>

#include "atomic_file.h"
#include "digest.h"
#include "fingerprint.h"
#include "idmap.h"
#include "planning.h"
#include "workdir.h"


/* 1 when some model asks for the swap_ab variant (*first: the first such model), else 0. */
static int needs_swap(const plan_t *plan, int *first) {
    for (int i = 0; i < plan->n_models; i++)
        for (int v = 0; v < plan->models[i].n_tta; v++)
            if (plan->models[i].tta[v] == TTA_SWAP_AB) {
                *first = i;
                return 1;
            }
    return 0;
}

int input_validate(const plan_t *plan, const csv_table_t *input, err_t *err) {
    const char *name = plan->input;
    char show[80];
    if (input->n_cols == 0 || strcmp(input->header[0], "id") != 0)
        return err_fmt(err, "%s: line 1: the first column must be 'id', not '%s'", name,
                       input->n_cols ? pf_show(input->header[0], show) : "");
    if (input->n_rows == 0) return err_fmt(err, "%s: no data rows after the header", name);
    int first;
    if (needs_swap(plan, &first)) {
        const char *cols[2] = {"response_a", "response_b"};
        for (int k = 0; k < 2; k++)
            if (csv_table_col(input, cols[k]) < 0)
                return err_fmt(err, "%s: models[%d] ('%s') asks for tta swap_ab, which exchanges columns "
                               "response_a and response_b, but the input has no column '%s'",
                               name, first, plan->models[first].name, cols[k]);
    }
    idmap_t map;
    idmap_init(&map, input->n_rows);
    int rc = 0;
    for (size_t r = 0; r < input->n_rows && rc == 0; r++) {
        const char *id = csv_cell(input, r, 0);
        size_t prev;
        if (csv_cell_len(input, r, 0) == 0) rc = err_fmt(err, "%s: line %zu: empty id", name, input->lines[r]);
        else if (strlen(id) != csv_cell_len(input, r, 0))
            rc = err_fmt(err, "%s: line %zu: id contains a NUL byte", name, input->lines[r]);
        else if (!idmap_put(&map, id, r, &prev))
            rc = err_fmt(err, "%s: line %zu: duplicate id '%s' (first at line %zu)", name, input->lines[r],
                         pf_show(id, show), input->lines[prev]);
    }
    idmap_free(&map);
    return rc;
}

/* Render the shard's CSV (header, then its rows in input order, response_a and response_b
 * exchanged when swap) into a malloc'd buffer. Returns it and sets *len. */
static char *shard_csv(const csv_table_t *input, const size_t *rows, size_t n, int swap, size_t *len) {
    char *buf = NULL;
    size_t cap = 0;
    FILE *f = open_memstream(&buf, &cap);
    ASSERT(f);
    int ca = csv_table_col(input, "response_a"), cb = csv_table_col(input, "response_b");
    int bad = csv_write_row(f, (const char *const *)input->header, input->n_cols);
    for (size_t i = 0; i < n && !bad; i++) {
        for (size_t c = 0; c < input->n_cols && !bad; c++) {
            size_t src = c;
            if (swap && (int)c == ca) src = (size_t)cb;
            else if (swap && (int)c == cb) src = (size_t)ca;
            if (c) bad |= fputc(',', f) == EOF;
            bad |= csv_write_field(f, csv_cell(input, rows[i], src), csv_cell_len(input, rows[i], src));
        }
        bad |= fputc('\n', f) == EOF;
    }
    ASSERT(!bad);  // writes to memory only fail when memory runs out
    ASSERT(fclose(f) == 0);
    *len = cap;
    return buf;
}

/* Write data to path atomically unless the file there already holds exactly these bytes (shard
 * names are content digests, so it usually does; but a file edited on disk, even without a size
 * change, must not reach a worker). Atomic writes leave no partial file behind. */
static int write_shard(const char *path, const char *data, size_t len, err_t *err) {
    struct stat st;
    if (stat(path, &st) == 0 && S_ISREG(st.st_mode) && (size_t)st.st_size == len) {
        size_t have_len = 0;
        char *have = fs_read_all(path, len, &have_len, NULL);
        int same = have && have_len == len && memcmp(have, data, len) == 0;
        free(have);
        if (same) return 0;
    }
    return atomic_file_write(path, data, len, err);
}

/* A copy of the ids of rows[0..n) in one allocation: free(ids) frees the strings too. */
static char **copy_ids(const csv_table_t *input, const size_t *rows, size_t n) {
    size_t bytes = n * sizeof(char *);
    for (size_t i = 0; i < n; i++) bytes += csv_cell_len(input, rows[i], 0) + 1;
    char **ids = xmalloc(bytes ? bytes : 1);
    char *p = (char *)(ids + n);
    for (size_t i = 0; i < n; i++) {
        size_t len = csv_cell_len(input, rows[i], 0);
        memcpy(p, csv_cell(input, rows[i], 0), len + 1);
        ids[i] = p;
        p += len + 1;
    }
    return ids;
}

/* Fill job (already named, with its model and variant) from its shard's rows: shard file, key
 * (from model_parts, fingerprint_model's), paths, and the resume lookup (with why it reruns
 * when an earlier record does not match). Returns 0, or -1 with err set. */
static int job_fill(const plan_t *plan, const csv_table_t *input, const size_t *rows, size_t n,
                    const char *model_parts, job_t *job, err_t *err) {
    const plan_model_t *m = &plan->models[job->model];
    size_t len;
    char *csv = shard_csv(input, rows, n, job->variant == TTA_SWAP_AB, &len);
    digest_t d;
    char content[DIGEST_HEX_LEN + 1], key[DIGEST_HEX_LEN + 1];
    digest_init(&d);
    digest_update(&d, csv, len);
    digest_hex(&d, content);
    job->input_path = workdir_path(plan, WD_SHARDS, content, ".csv");
    int rc = write_shard(job->input_path, csv, len, err);
    free(csv);
    if (rc != 0) return -1;

    // The key digests the job's named parts (fingerprint.h): its rows, its variant, then the
    // model's settings and files.
    FILE *f = open_memstream(&job->parts, &len);
    ASSERT(f);
    fprintf(f, "input rows\t%s\nvariant\t%s\n%s", content, tta_name(job->variant), model_parts);
    ASSERT(fclose(f) == 0);
    digest_init(&d);
    digest_field(&d, "version", "orchestrate-key-2");
    digest_update(&d, job->parts, len);
    digest_hex(&d, key);
    job->key = xstrdup(key);
    job->ids = copy_ids(input, rows, n);
    job->n_rows = n;
    for (size_t i = 0; i < n; i++) job->cost += shard_row_cost(input, rows[i]);
    job->output_path = workdir_output_path(plan, m->name, job->name);
    job->log_path = workdir_path(plan, WD_LOGS, job->name, ".log");
    job->slot = -1;
    job->batch_size = m->batch_size;

    // Resume: a recorded output that still validates replaces the run. One that does not (a
    // user edited it, or the labels changed) is ignored and overwritten when the job succeeds.
    char *done = resume_path(plan, job->key);
    char *pending_out = job->output_path;
    job->output_path = done;
    err_t ignored = {0};
    if (access(done, F_OK) == 0 && validate_output(plan, job, &ignored) == 0) {
        job->status = JOB_REUSED;
        job->rows_done = n;
        free(pending_out);
        return 0;
    }
    job->output_path = pending_out;
    free(done);
    char *parts_path = resume_parts_path(plan, job->name);
    char *old_parts = access(parts_path, F_OK) == 0 ? fs_read_all(parts_path, FS_LIMIT_TEXT, NULL, &ignored) : NULL;
    fingerprint_why(old_parts, job->parts, job->why, sizeof job->why);
    free(old_parts);
    free(parts_path);
    // A stale output from an earlier run must not pass for this run's work.
    if (unlink(job->output_path) != 0 && errno != ENOENT)
        return err_fmt(err, "%s: cannot remove stale output: %s", job->output_path, strerror(errno));
    job->status = JOB_PENDING;
    return 0;
}

int stage_jobs_build(const plan_t *plan, const csv_table_t *input, int model, int n_slots, job_t **jobs,
                     int *n_jobs, err_t *err) {
    ASSERT(model >= 0 && model < plan->n_models);
    *jobs = NULL, *n_jobs = 0;
    if (input_validate(plan, input, err) != 0) return -1;
    const plan_model_t *m = &plan->models[model];
    size_t n_rows = input->n_rows;
    // More shards than rows would only start workers with nothing to do.
    int n = n_slots < 1 ? 1 : (size_t)n_slots > n_rows ? (int)n_rows : n_slots;

    const char *subdirs[] = {WD_SHARDS, WD_OUTPUTS, WD_LOGS, WD_DONE};
    for (int i = 0; i < 4; i++) {
        char *dir = workdir_path(plan, subdirs[i], i == 1 ? m->name : NULL, NULL);
        int rc = fs_mkdir_p(dir, err);
        free(dir);
        if (rc != 0) return -1;
    }

    int *shard_of = xmalloc(n_rows * sizeof *shard_of);
    shard_assign(input, n, shard_of);
    // Rows of each shard, in input order: start[k] .. start[k+1] in `rows`.
    size_t *start = xcalloc((size_t)n + 1, sizeof *start), *rows = xmalloc(n_rows * sizeof *rows);
    for (size_t r = 0; r < n_rows; r++) start[shard_of[r] + 1]++;
    for (int k = 0; k < n; k++) start[k + 1] += start[k];
    size_t *fill = xmalloc((size_t)n * sizeof *fill);
    memcpy(fill, start, (size_t)n * sizeof *fill);
    for (size_t r = 0; r < n_rows; r++) rows[fill[shard_of[r]]++] = r;
    free(fill);
    free(shard_of);

    char *model_parts = fingerprint_model(plan, model);
    job_t *js = xcalloc((size_t)(m->n_tta * n), sizeof *js);
    int count = 0, rc = 0;
    for (int v = 0; v < m->n_tta && rc == 0; v++) {
        for (int k = 0; k < n && rc == 0; k++) {
            job_t *job = &js[count++];
            job->model = model;
            job->variant = m->tta[v];
            job->shard = k, job->n_shards = n;
            snprintf(job->name, sizeof job->name, "%s.%s.s%dof%d", m->name, tta_name(job->variant), k, n);
            rc = job_fill(plan, input, rows + start[k], start[k + 1] - start[k], model_parts, job, err);
        }
    }
    free(model_parts);
    free(start);
    free(rows);
    if (rc != 0) {
        stage_jobs_free(js, count);
        return -1;
    }
    *jobs = js, *n_jobs = count;
    return 0;
}

char *job_partial_path(const job_t *job) {
    size_t n = strlen(job->output_path) + sizeof ".partial";
    char *p = xmalloc(n);
    snprintf(p, n, "%s.partial", job->output_path);
    return p;
}

void stage_jobs_free(job_t *jobs, int n_jobs) {
    for (int i = 0; jobs && i < n_jobs; i++) {
        free(jobs[i].input_path), free(jobs[i].output_path), free(jobs[i].log_path);
        free(jobs[i].key), free(jobs[i].ids), free(jobs[i].parts);
    }
    free(jobs);
}
