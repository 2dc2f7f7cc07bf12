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

int probs_csv_write(const char *path, const char *const *labels, size_t n_labels, const csv_table_t *ids,
                    size_t id_col, const double *probs, err_t *err) {
    atomic_file_t af;
    if (atomic_file_open(&af, path, err) != 0) return -1;
    int bad = fputs("id", af.f) == EOF;
    for (size_t l = 0; l < n_labels && !bad; l++)
        bad |= fputc(',', af.f) == EOF || csv_write_field(af.f, labels[l], strlen(labels[l])) != 0;
    bad |= fputc('\n', af.f) == EOF;
    for (size_t r = 0; r < ids->n_rows && !bad; r++) {
        bad |= csv_write_field(af.f, csv_cell(ids, r, id_col), csv_cell_len(ids, r, id_col)) != 0;
        for (size_t l = 0; l < n_labels && !bad; l++) bad |= fprintf(af.f, ",%.9g", probs[r * n_labels + l]) < 0;
        bad |= fputc('\n', af.f) == EOF;
    }
    if (bad) {
        int e = errno;
        atomic_file_abort(&af);
        return err_fmt(err, "%s: write failed: %s", path, strerror(e));
    }
    return atomic_file_commit(&af, err);
}
