/* batcher.h: turn encoded rows into packed batches, and encode rows on a thread pool.
 *
 * Two pieces, both independent of models and tokenizers so that tests can drive them directly:
 *   - batch_plan_build: sort rows by token length, longest first, and pack them greedily into
 *     batches of at most batch_size sequences and batch_tokens ids. Longest first means the
 *     batch most likely to run out of device memory runs first (fail fast, before hours of work),
 *     and sequences of similar length share a batch.
 *   - batch_encoder_*: encode every row (text -> ids) on a pool of threads, started before the
 *     model is loaded so that tokenisation overlaps the load. Sorting by length needs every
 *     length, so rows are encoded up front rather than one batch ahead of the model.
 * Restoring input order is the caller's job: plan.order[k] is the input row of the k-th slot.
 */
#ifndef LM_BATCHER_H
#define LM_BATCHER_H

#include <stddef.h>
#include "check.h"
#include "tokenizer.h"

typedef struct {
    size_t n_rows;       // rows planned
    size_t *order;       // (n_rows) input row indices, longest first (ties: input order)
    size_t n_batches;    // batches planned
    size_t *start;       // (n_batches + 1) batch b holds order[start[b] .. start[b+1])
} batch_plan_t;

/* Plan batches for rows with lens[0..n). Each batch has at most batch_size rows and, unless one
 * row alone is longer, at most batch_tokens ids in all; such a row gets a batch of its own.
 * Returns 0, or -1 with err set when batch_size < 1 or batch_tokens < 1. */
int batch_plan_build(batch_plan_t *plan, const size_t *lens, size_t n, int batch_size,
                     size_t batch_tokens, err_t *err);
/* Free the plan's arrays and zero *plan. */
void batch_plan_free(batch_plan_t *plan);

/* Encode row `row` into out (empty on entry). Called from several threads at once, each with a
 * different row. Returns 0, or -1 with err set. */
typedef int (*batch_encode_fn)(void *ctx, size_t row, ids_t *out, err_t *err);

typedef struct batch_encoder batch_encoder_t;

/* Start encoding rows 0..n_rows-1 with fn on `threads` threads (< 1: one per core). Returns at
 * once; the work proceeds in the background. */
batch_encoder_t *batch_encoder_start(size_t n_rows, int threads, batch_encode_fn fn, void *ctx);

/* Wait for every row. On success returns 0 and hands over the results: *rows is an array of
 * n_rows ids_t (free each with ids_free, then the array with free). On failure returns -1 with
 * err set to the error of the lowest-numbered failing row (so the report does not depend on
 * thread timing) and frees everything. be is freed either way. When busy_s is not NULL it gets
 * the seconds from start until the last thread finished (the pool's own time, whatever the
 * caller did meanwhile). */
int batch_encoder_wait(batch_encoder_t *be, ids_t **rows, double *busy_s, err_t *err);

/* Stop early (e.g. the model failed to load) and free everything. */
void batch_encoder_cancel(batch_encoder_t *be);

#endif
