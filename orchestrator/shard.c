/* shard.c: split the input's rows into shards of about equal text length.
 *
 * Worker time grows with the text of a row (more tokens, up to max_length), so balancing row
 * counts would leave one slot idle while another finishes a shard of long conversations. We
 * balance bytes of text instead, with the classic greedy rule: longest row first, each to the
 * currently lightest shard (within 4/3 of the optimum, and far closer with many rows). It
 * deliberately does not look at tokens: tokenizing here would cost more than it saves.
 */
#include "planning.h"

size_t shard_row_cost(const csv_table_t *input, size_t r) {
    size_t cost = 0;
    for (size_t c = 1; c < input->n_cols; c++) cost += csv_cell_len(input, r, c);
    return cost;
}

typedef struct {
    size_t cost;   // text bytes of the row
    size_t row;    // its index in the input
} row_cost_t;

/* Longest first; ties in input order, so the assignment is deterministic. */
static int cmp_cost_desc(const void *pa, const void *pb) {
    const row_cost_t *a = pa, *b = pb;
    if (a->cost != b->cost) return a->cost > b->cost ? -1 : 1;
    return a->row < b->row ? -1 : a->row > b->row;
}

typedef struct {
    size_t load;   // text bytes assigned so far
    size_t rows;   // rows assigned so far: spreads rows without text too
    int shard;     // shard index; breaks ties
} shard_load_t;

/* Heap order: 1 when shard a should receive the next row before b (fewer text bytes, then fewer
 * rows, then lower index). */
static int lighter(const shard_load_t *a, const shard_load_t *b) {
    if (a->load != b->load) return a->load < b->load;
    if (a->rows != b->rows) return a->rows < b->rows;
    return a->shard < b->shard;
}

/* Restore the min-heap property below position i. */
static void sift_down(shard_load_t *h, int n, int i) {
    for (;;) {
        int l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && lighter(&h[l], &h[m])) m = l;
        if (r < n && lighter(&h[r], &h[m])) m = r;
        if (m == i) return;
        shard_load_t t = h[i];
        h[i] = h[m], h[m] = t;
        i = m;
    }
}

void shard_assign(const csv_table_t *input, int n, int *shard_of) {
    ASSERT(n >= 1);
    size_t rows = input->n_rows;
    row_cost_t *order = xmalloc((rows ? rows : 1) * sizeof *order);
    for (size_t r = 0; r < rows; r++) order[r] = (row_cost_t){shard_row_cost(input, r), r};
    qsort(order, rows, sizeof *order, cmp_cost_desc);
    shard_load_t *heap = xmalloc((size_t)n * sizeof *heap);
    for (int k = 0; k < n; k++) heap[k] = (shard_load_t){0, 0, k};  // already a valid heap
    for (size_t i = 0; i < rows; i++) {
        // The root is the lightest shard: give it the row, then push it down.
        shard_of[order[i].row] = heap[0].shard;
        heap[0].load += order[i].cost;
        heap[0].rows++;
        sift_down(heap, n, 0);
    }
    free(heap);
    free(order);
}
