/* probs.h: class probabilities, as both programs produce them: the fp64 softmax of a row of
 * logits (lm-worker run, lm-worker bench --golden) and the `id,<labels>` probability CSV
 * (lm-worker's --output, orchestrate's per-model and submission files).
 *
 * It does not validate probability tables (orchestrator/validate.c does) or combine them
 * (orchestrator/merge.c does).
 */
#ifndef COMMON_PROBS_H
#define COMMON_PROBS_H

#include <stddef.h>
#include "check.h"
#include "csv_io.h"

/* out[0..n) = softmax(logits[0..n)) in fp64, max-subtracted (exp(l - max) / sum). Returns 0, or
 * -1 when the max or the sum is not finite (out is filled either way, possibly with NaN). */
int probs_softmax(const float *logits, size_t n, double *out);

/* Write the header "id,<labels>" and then, for every row r of `ids` (a parsed CSV), its cell
 * (r, id_col) followed by probs[r * n_labels .. + n_labels), each with 9 significant digits
 * ("%.9g": enough to round-trip a float, far below the 1e-3 row-sum tolerance). Fields are
 * quoted minimally (csv_write_field). Atomic (common/atomic_file): path holds the old file or
 * the finished one. Returns 0, or -1 with err naming path. */
int probs_csv_write(const char *path, const char *const *labels, size_t n_labels, const csv_table_t *ids,
                    size_t id_col, const double *probs, err_t *err);

/* A partial output (docs/workers.md, "Partial outputs"): the header, then complete rows appended
 * batch by batch, each batch flushed to the kernel, so that a worker killed at a deadline loses
 * at most the batch it was working on. */
typedef struct {
    FILE *f;            // the open file, or NULL when not in use
    const char *path;   // for messages (not owned)
    size_t n_labels;    // values per row
} probs_partial_t;

/* Create (truncate) path and write the header "id,<labels>" (flushed). Returns 0, or -1 with err
 * naming path. */
int probs_partial_open(probs_partial_t *p, const char *path, const char *const *labels, size_t n_labels,
                       err_t *err);

/* Append rows rows[0..n) of `ids` (cell (r, id_col)) with probs[r * n_labels ..] as probs_csv_write
 * formats them, then fflush. Returns 0, or -1 with err naming the file. */
int probs_partial_append(probs_partial_t *p, const csv_table_t *ids, size_t id_col, const size_t *rows, size_t n,
                         const double *probs, err_t *err);

/* Close the file (it stays on disk); a closed or zeroed p is a no-op. */
void probs_partial_close(probs_partial_t *p);

#endif
