/* probs.c: softmax of logits and the id,<labels> probability CSV (see probs.h). */
#include "probs.h"

#include <math.h>

#include "atomic_file.h"

int probs_softmax(const float *logits, size_t n, double *out) {
    double mx = -INFINITY, sum = 0;
    for (size_t l = 0; l < n; l++) mx = fmax(mx, (double)logits[l]);
    for (size_t l = 0; l < n; l++) sum += (out[l] = exp((double)logits[l] - mx));
    for (size_t l = 0; l < n; l++) out[l] /= sum;
    return isfinite(mx) && isfinite(sum) ? 0 : -1;
}

/* Write the header "id,<labels>\n" to f. Returns nonzero on a write error. */
static int write_header(FILE *f, const char *const *labels, size_t n_labels) {
    int bad = fputs("id", f) == EOF;
    for (size_t l = 0; l < n_labels && !bad; l++)
        bad |= fputc(',', f) == EOF || csv_write_field(f, labels[l], strlen(labels[l])) != 0;
    return bad | (fputc('\n', f) == EOF);
}

/* Write row r: its id cell and probs[r * n_labels ..] ("%.9g"). Returns nonzero on a write error. */
static int write_row(FILE *f, const csv_table_t *ids, size_t id_col, size_t r, const double *probs, size_t n_labels) {
    int bad = csv_write_field(f, csv_cell(ids, r, id_col), csv_cell_len(ids, r, id_col)) != 0;
    for (size_t l = 0; l < n_labels && !bad; l++) bad |= fprintf(f, ",%.9g", probs[r * n_labels + l]) < 0;
    return bad | (fputc('\n', f) == EOF);
}

int probs_csv_write(const char *path, const char *const *labels, size_t n_labels, const csv_table_t *ids,
                    size_t id_col, const double *probs, err_t *err) {
    atomic_file_t af;
    if (atomic_file_open(&af, path, err) != 0) return -1;
    int bad = write_header(af.f, labels, n_labels);
    for (size_t r = 0; r < ids->n_rows && !bad; r++) bad |= write_row(af.f, ids, id_col, r, probs, n_labels);
    if (bad) {
        int e = errno;
        atomic_file_abort(&af);
        return err_fmt(err, "%s: write failed: %s", path, strerror(e));
    }
    return atomic_file_commit(&af, err);
}

int probs_partial_open(probs_partial_t *p, const char *path, const char *const *labels, size_t n_labels,
                       err_t *err) {
    memset(p, 0, sizeof *p);
    p->f = fopen(path, "we");
    if (!p->f) return err_fmt(err, "%s: cannot create the partial output: %s", path, strerror(errno));
    p->path = path;
    p->n_labels = n_labels;
    if (write_header(p->f, labels, n_labels) || fflush(p->f) != 0) {
        int e = errno;
        probs_partial_close(p);
        return err_fmt(err, "%s: write failed: %s", path, strerror(e));
    }
    return 0;
}

int probs_partial_append(probs_partial_t *p, const csv_table_t *ids, size_t id_col, const size_t *rows, size_t n,
                         const double *probs, err_t *err) {
    int bad = 0;
    for (size_t i = 0; i < n && !bad; i++) bad |= write_row(p->f, ids, id_col, rows[i], probs, p->n_labels);
    if (bad || fflush(p->f) != 0) return err_fmt(err, "%s: write failed: %s", p->path, strerror(errno));
    return 0;
}

void probs_partial_close(probs_partial_t *p) {
    if (p->f) fclose(p->f);
    p->f = NULL;
}
