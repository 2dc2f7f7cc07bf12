/* validate.c: check a worker's probability CSV before anything trusts it.
 *
 * A worker is any command, so its output is untrusted input: a missing or repeated id, a label
 * column in the wrong order, "nan", or a row that does not sum to 1 would silently corrupt the
 * submission. Each check names the file, the line and the column, so a user can open the file
 * at the right place. Cost: one CSV parse (libcsv) plus one hash lookup and a strtod per value;
 * a 25k-row output takes a few milliseconds. It deliberately does not fix anything (no
 * renormalising, no reordering): merge.c does that only to outputs that passed here.
 */
#include <math.h>
#include <sys/stat.h>

#include "exit_codes.h"

#include "atomic_file.h"
#include "idmap.h"
#include "planning.h"

#define SUM_TOLERANCE 1e-3

/* Parse a whole cell (len bytes; it may hold NUL bytes) as a number. Surrounding blanks are
 * accepted; anything else after the number is not. Returns 0 and sets *out, or -1. */
static int parse_value(const char *s, size_t len, double *out) {
    char *end;
    const char *p = s;
    while (*p == ' ' || *p == '\t') p++;
    if (*p == '\0') return -1;
    double v = strtod(p, &end);
    if (end == p) return -1;
    while (*end == ' ' || *end == '\t') end++;
    if ((size_t)(end - s) != len) return -1;
    *out = v;
    return 0;
}

/* "a,b,c" for messages, cut to fit. */
static void join_header(char *out, size_t cap, const char *const *cells, size_t n, const char *first) {
    size_t used = 0;
    out[0] = '\0';
    for (size_t i = 0; i < n + (first ? 1 : 0) && used + 1 < cap; i++) {
        const char *s = first ? (i == 0 ? first : cells[i - 1]) : cells[i];
        char show[80];
        int w = snprintf(out + used, cap - used, "%s%s", i ? "," : "", pf_show(s, show));
        if (w < 0) break;
        used += (size_t)w;
    }
}

/* Check that t's header is exactly "id,<labels>". Returns 0, or -1 with err showing the header
 * found and the one wanted, and err->code = EXIT_DATAERR. */
static int check_header(const char *const *labels, int n_labels, const csv_table_t *t, const char *name,
                        err_t *err) {
    int ok = t->n_cols == (size_t)n_labels + 1 && strcmp(t->header[0], "id") == 0;
    for (int l = 0; ok && l < n_labels; l++) ok = strcmp(t->header[l + 1], labels[l]) == 0;
    if (ok) return 0;
    char got[256], want[256];
    join_header(got, sizeof got, (const char *const *)t->header, t->n_cols, NULL);
    join_header(want, sizeof want, labels, (size_t)n_labels, "id");
    // A header every attempt would write again: a contract error (EXIT_DATAERR), not retried.
    return err_code(err, EXIT_DATAERR, "%s: line 1: header is '%s' but must be '%s'%s", name, got, want,
                    t->n_cols > 1 && t->header[0][0] == '\0'
                        ? " (an empty first field looks like a pandas index column: write the CSV with index=False)"
                        : "");
}

/* output_table_check, and when present is not NULL partial_table_check: ids may be missing, and
 * present[i] is set to 1 for each id i found. */
static int table_check(const char *const *labels, int n_labels, char *const *ids, size_t n_ids,
                       const csv_table_t *t, const char *name, double *vals, unsigned char *present, err_t *err) {
    if (check_header(labels, n_labels, t, name, err) != 0) return -1;
    idmap_t map;
    idmap_init(&map, n_ids);
    for (size_t i = 0; i < n_ids; i++) idmap_put(&map, ids[i], i, NULL);
    size_t *seen_line = xcalloc(n_ids ? n_ids : 1, sizeof *seen_line);  // 0: not seen yet
    int rc = 0;
    char show[80];
    for (size_t r = 0; r < t->n_rows && rc == 0; r++) {
        const char *id = csv_cell(t, r, 0);
        size_t line = t->lines[r], i;
        if (strlen(id) != csv_cell_len(t, r, 0) || !idmap_get(&map, id, &i)) {
            rc = err_fmt(err, "%s: line %zu: id '%s' is not one of this job's %zu ids", name, line,
                         pf_show(id, show), n_ids);
            break;
        }
        if (seen_line[i]) {
            rc = err_fmt(err, "%s: line %zu: id '%s' appears twice (first at line %zu)", name, line,
                         pf_show(id, show), seen_line[i]);
            break;
        }
        seen_line[i] = line;
        if (present) present[i] = 1;
        double sum = 0;
        for (int l = 0; l < n_labels; l++) {
            const char *s = csv_cell(t, r, (size_t)l + 1);
            double v;
            const char *why = NULL;
            if (parse_value(s, csv_cell_len(t, r, (size_t)l + 1), &v) != 0) why = "is not a number";
            else if (!isfinite(v)) why = "is not finite";
            else if (v < 0 || v > 1) why = "is not in [0, 1]";
            if (why) {
                rc = err_fmt(err, "%s: line %zu: column %d '%s': value '%s' %s", name, line, l + 2,
                             labels[l], pf_show(s, show), why);
                break;
            }
            sum += v;
            if (vals) vals[i * (size_t)n_labels + (size_t)l] = v;
        }
        if (rc == 0 && fabs(sum - 1.0) > SUM_TOLERANCE)
            rc = err_fmt(err, "%s: line %zu: id '%s': probabilities sum to %.6g, not 1 (tolerance %g)",
                         name, line, pf_show(id, show), sum, SUM_TOLERANCE);
    }
    if (rc == 0 && !present && t->n_rows != n_ids) {
        size_t first = 0, n_missing = 0;
        for (size_t i = n_ids; i-- > 0;)
            if (!seen_line[i]) first = i, n_missing++;
        rc = err_fmt(err, "%s: id '%s' is missing (%zu of the job's %zu ids are missing)", name,
                     pf_show(ids[first], show), n_missing, n_ids);
    }
    free(seen_line);
    idmap_free(&map);
    return rc;
}

int output_table_check(const char *const *labels, int n_labels, char *const *ids, size_t n_ids,
                       const csv_table_t *t, const char *name, double *vals, err_t *err) {
    return table_check(labels, n_labels, ids, n_ids, t, name, vals, NULL, err);
}

int partial_table_check(const char *const *labels, int n_labels, char *const *ids, size_t n_ids,
                        const csv_table_t *t, const char *name, double *vals, unsigned char *present, err_t *err) {
    memset(present, 0, n_ids);
    return table_check(labels, n_labels, ids, n_ids, t, name, vals, present, err);
}

int partial_output_read(const plan_t *plan, const job_t *job, const char *path, double *vals, unsigned char *present,
                        size_t *n_present, err_t *err) {
    *n_present = 0;
    memset(present, 0, job->n_rows);
    struct stat st;
    if (stat(path, &st) != 0) return 0;   // the worker did not opt in, or finished no batch
    size_t len;
    char *text = fs_read_all(path, FS_LIMIT_CSV, &len, err);
    if (!text) return -1;
    // A worker killed while writing leaves at most one incomplete line: everything after the
    // last newline is dropped (the rows before it were flushed whole).
    while (len > 0 && text[len - 1] != '\n') len--;
    int rc = 0;
    if (len > 0) {
        csv_table_t t;
        rc = csv_table_parse(&t, text, len, path, err);
        if (rc == 0) {
            rc = partial_table_check((const char *const *)plan->labels, plan->n_labels, job->ids, job->n_rows, &t,
                                     path, vals, present, err);
            if (rc == 0) *n_present = t.n_rows;
            csv_table_free(&t);
        }
    }
    free(text);
    if (rc != 0) memset(present, 0, job->n_rows);
    return rc;
}

int validate_output(const plan_t *plan, const job_t *job, err_t *err) {
    // open() on a FIFO blocks until a writer comes, with the whole event loop (signals
    // included) stuck behind it; stat() does not. Anything but a regular file at the output
    // path is a contract error every attempt repeats.
    struct stat st;
    if (stat(job->output_path, &st) == 0 && !S_ISREG(st.st_mode))
        return err_code(err, EXIT_DATAERR, "%s: not a regular file (%s)", job->output_path,
                        S_ISFIFO(st.st_mode) ? "a FIFO" : S_ISDIR(st.st_mode) ? "a directory" : "a special file");
    csv_table_t t;
    if (csv_table_read(&t, job->output_path, err) != 0) return -1;
    int rc = output_table_check((const char *const *)plan->labels, plan->n_labels, job->ids, job->n_rows,
                                &t, job->output_path, NULL, err);
    csv_table_free(&t);
    return rc;
}
