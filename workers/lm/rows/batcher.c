/* batcher.c: length-sorted, token-budgeted batch plans, and the row-encoding thread pool.
 *
 * The plan is greedy over rows sorted longest first: a batch closes when adding the next row
 * would exceed batch_size rows or batch_tokens ids. Greedy packing of a sorted list is within
 * one row of optimal for this one-dimensional budget and keeps same-length rows together.
 *
 * The pool hands out rows through an atomic counter, so threads never wait on each other; each
 * result lands in its own slot, which keeps the output independent of scheduling. It does not
 * know what encoding means (the callback does) and never touches the model.
 */
#include "rows.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock_util.h"
#include "exit_codes.h"

/* ---------------------------------------------------------------- plan ------------------ */

typedef struct {
    size_t len, row;  // text length in ids; input row index
} len_row_t;

/* qsort order: longer rows first, then lower row index (so the order is deterministic). */
static int cmp_longest_first(const void *pa, const void *pb) {
    const len_row_t *a = pa, *b = pb;
    if (a->len != b->len) return a->len > b->len ? -1 : 1;
    return a->row < b->row ? -1 : a->row > b->row ? 1 : 0;
}

int batch_plan_build(batch_plan_t *plan, const size_t *lens, size_t n, int batch_size,
                     size_t batch_tokens, err_t *err) {
    memset(plan, 0, sizeof *plan);
    if (batch_size < 1) return err_code(err, EXIT_USAGE, "--batch-size must be at least 1");
    if (batch_tokens < 1) return err_code(err, EXIT_USAGE, "--batch-tokens must be at least 1");
    len_row_t *lr = xmalloc((n ? n : 1) * sizeof *lr);
    for (size_t i = 0; i < n; i++) lr[i] = (len_row_t){lens[i], i};
    qsort(lr, n, sizeof *lr, cmp_longest_first);
    plan->n_rows = n;
    plan->order = xmalloc((n ? n : 1) * sizeof *plan->order);
    for (size_t i = 0; i < n; i++) plan->order[i] = lr[i].row;
    free(lr);

    plan->start = xmalloc((n + 1) * sizeof *plan->start);
    size_t rows = 0, tokens = 0;
    for (size_t k = 0; k < n; k++) {
        size_t len = lens[plan->order[k]];
        if (rows > 0 && (rows == (size_t)batch_size || tokens + len > batch_tokens)) {
            rows = 0;
            tokens = 0;
        }
        if (rows == 0) plan->start[plan->n_batches++] = k;
        rows++;
        tokens += len;
    }
    plan->start[plan->n_batches] = n;
    return 0;
}

void batch_plan_free(batch_plan_t *plan) {
    free(plan->order);
    free(plan->start);
    memset(plan, 0, sizeof *plan);
}

/* ---------------------------------------------------------------- pool ------------------ */

struct batch_encoder {
    size_t n_rows;              // rows to encode
    batch_encode_fn fn;         // encodes one row; called from the pool threads
    void *ctx;                  // fn's argument
    ids_t *rows;                // (n_rows) results
    atomic_size_t next;         // next row to hand out
    atomic_int stop;            // set on the first error or on cancel
    pthread_mutex_t lock;       // guards err_row and err
    size_t err_row;             // lowest failing row so far, or SIZE_MAX
    err_t err;                  // the error of err_row
    double t_start, t_end;      // CLOCK_MONOTONIC seconds: pool start, last thread's finish
    int n_threads;              // entries in threads
    pthread_t *threads;         // (n_threads)
};

/* Pool thread: take rows in increasing order and encode each until none is left or some row failed
 * (the lowest failing row wins); records when it finished. */
static void *encoder_thread(void *arg) {
    batch_encoder_t *be = arg;
    for (;;) {
        if (atomic_load(&be->stop)) break;
        size_t row = atomic_fetch_add(&be->next, 1);
        if (row >= be->n_rows) break;
        err_t e = {0};
        if (be->fn(be->ctx, row, &be->rows[row], &e) < 0) {
            // Rows are handed out in increasing order, so every row below this one was already
            // taken and will finish: the lowest failing row recorded is the true first one.
            pthread_mutex_lock(&be->lock);
            if (row < be->err_row) {
                be->err_row = row;
                be->err = e;
            }
            pthread_mutex_unlock(&be->lock);
            atomic_store(&be->stop, 1);
        }
    }
    double t = clock_mono_s();
    pthread_mutex_lock(&be->lock);
    if (t > be->t_end) be->t_end = t;
    pthread_mutex_unlock(&be->lock);
    return NULL;
}

batch_encoder_t *batch_encoder_start(size_t n_rows, int threads, batch_encode_fn fn, void *ctx) {
    batch_encoder_t *be = xcalloc(1, sizeof *be);
    be->n_rows = n_rows;
    be->fn = fn;
    be->ctx = ctx;
    be->rows = xcalloc(n_rows ? n_rows : 1, sizeof *be->rows);
    atomic_init(&be->next, 0);
    atomic_init(&be->stop, 0);
    pthread_mutex_init(&be->lock, NULL);
    be->err_row = SIZE_MAX;
    be->t_start = be->t_end = clock_mono_s();
    if (threads < 1) {
        long nc = sysconf(_SC_NPROCESSORS_ONLN);
        threads = nc > 0 ? (int)nc : 1;
    }
    if ((size_t)threads > n_rows) threads = n_rows ? (int)n_rows : 1;
    be->threads = xcalloc((size_t)threads, sizeof *be->threads);
    for (int i = 0; i < threads; i++) {
        if (pthread_create(&be->threads[i], NULL, encoder_thread, be) != 0) {
            if (i == 0) encoder_thread(be); // no thread at all: do the work here, still correct
            break;
        }
        be->n_threads++;
    }
    return be;
}

/* Join every thread and free the pool; the encoded rows too unless keep_rows (then the caller owns
 * be->rows). */
static void encoder_join_free(batch_encoder_t *be, int keep_rows) {
    for (int i = 0; i < be->n_threads; i++) pthread_join(be->threads[i], NULL);
    if (!keep_rows) {
        for (size_t i = 0; i < be->n_rows; i++) ids_free(&be->rows[i]);
        free(be->rows);
    }
    pthread_mutex_destroy(&be->lock);
    free(be->threads);
    free(be);
}

int batch_encoder_wait(batch_encoder_t *be, ids_t **rows, double *busy_s, err_t *err) {
    for (int i = 0; i < be->n_threads; i++) pthread_join(be->threads[i], NULL);
    be->n_threads = 0;
    if (busy_s) *busy_s = be->t_end - be->t_start;
    if (be->err_row != SIZE_MAX) {
        if (err) *err = be->err;
        encoder_join_free(be, 0);
        *rows = NULL;
        return -1;
    }
    *rows = be->rows;
    encoder_join_free(be, 1);
    return 0;
}

void batch_encoder_cancel(batch_encoder_t *be) {
    if (!be) return;
    atomic_store(&be->stop, 1);
    encoder_join_free(be, 0);
}
