/* planning.h: helpers shared by the planning side's files (shard.c, stage.c, validate.c,
 * merge.c, resume.c) and their tests and fuzz targets. Not part of orch.h because the running
 * side has no business with them.
 */
#ifndef ORCH_PLANNING_H
#define ORCH_PLANNING_H

#include "orch.h"

/* Text bytes of input row r: the byte lengths of all its cells but the id (column 0). */
size_t shard_row_cost(const csv_table_t *input, size_t r);

/* Check a parsed probability table: header "id,<labels>", each of ids[0..n_ids) exactly once,
 * every value a finite number in [0,1], every row summing to 1 within 1e-3. `name` is the file
 * named in messages. When vals is non-NULL it receives the values as (n_ids, n_labels) in the
 * order of ids. Returns 0, or -1 with err naming the file, line and column. */
int output_table_check(const char *const *labels, int n_labels, char *const *ids, size_t n_ids,
                       const csv_table_t *t, const char *name, double *vals, err_t *err);

/* output_table_check for a partial output: ids may be missing (each present one still at most
 * once, every value checked as there); present (n_ids bytes) receives 1 for each id found. */
int partial_table_check(const char *const *labels, int n_labels, char *const *ids, size_t n_ids,
                        const csv_table_t *t, const char *name, double *vals, unsigned char *present, err_t *err);

/* Read a cut job's partial output at path (job_partial_path): text after the last newline (a
 * line the killed worker did not finish) is dropped, the rest checked by partial_table_check.
 * vals (job->n_rows, n_labels) and present (job->n_rows) are filled in job->ids order, and
 * *n_present counts the rows. A missing file is 0 rows. Returns 0, or -1 with err naming the
 * file and line (present is then all zero: a bad partial file counts for nothing). */
int partial_output_read(const plan_t *plan, const job_t *job, const char *path, double *vals, unsigned char *present,
                        size_t *n_present, err_t *err);

/* work_dir/done/<key>.csv: where resume_record keeps job's validated output. malloc'd. */
char *resume_path(const plan_t *plan, const char *key);

/* Copy s for a message: at most ~60 bytes, control bytes as '?', "..." when cut. Returns buf.
 * (plan_fields.c; every planning-side message that quotes a user string uses it.) */
const char *pf_show(const char *s, char buf[80]);

/* work_dir/done/<job name>.parts: the parts of the key of the job's last record. malloc'd. */
char *resume_parts_path(const plan_t *plan, const char *job_name);

#endif
