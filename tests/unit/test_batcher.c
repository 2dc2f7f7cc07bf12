/* test_batcher.c: batch plans (workers/lm/rows/rows.h, rows/batcher.c) and the row-encoding thread pool.
 *
 * Plans are checked against their contract on pseudo-random lengths: every row exactly once,
 * longest first, no batch over batch_size rows or batch_tokens ids (except a lone long row),
 * greedy (a batch only closes when the next row could not join it), and results scattered
 * through plan.order come back in input order. The pool is checked for identical results at
 * any thread count, for reporting the lowest failing row, and for clean cancellation.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rows.h"
#include "tinytest.h"

static uint64_t rng_ = 0x9e3779b97f4a7c15ull;
static size_t rnd(size_t n) {
    rng_ ^= rng_ << 13, rng_ ^= rng_ >> 7, rng_ ^= rng_ << 17;
    return (size_t)(rng_ % n);
}

static void check_plan(const size_t *lens, size_t n, int bs, size_t bt) {
    batch_plan_t plan;
    err_t err = {0};
    EXPECT(batch_plan_build(&plan, lens, n, bs, bt, &err) == 0);
    EXPECT(plan.n_rows == n && plan.start[0] == 0 && plan.start[plan.n_batches] == n);
    int *seen = calloc(n ? n : 1, sizeof *seen);
    for (size_t k = 0; k < n; k++) {
        EXPECT(plan.order[k] < n);
        if (plan.order[k] < n) seen[plan.order[k]]++;
        if (k) EXPECT(lens[plan.order[k - 1]] >= lens[plan.order[k]]);
        if (k && lens[plan.order[k - 1]] == lens[plan.order[k]]) EXPECT(plan.order[k - 1] < plan.order[k]);
    }
    for (size_t i = 0; i < n; i++) EXPECT_MSG(seen[i] == 1, "row %zu seen %d times", i, seen[i]);
    free(seen);
    for (size_t b = 0; b < plan.n_batches; b++) {
        size_t rows = plan.start[b + 1] - plan.start[b], tokens = 0;
        EXPECT(rows >= 1 && rows <= (size_t)bs);
        for (size_t k = plan.start[b]; k < plan.start[b + 1]; k++) tokens += lens[plan.order[k]];
        EXPECT_MSG(tokens <= bt || rows == 1, "batch %zu: %zu tokens > %zu", b, tokens, bt);
        if (b + 1 < plan.n_batches) { // greedy: the next batch's first row did not fit here
            size_t next = lens[plan.order[plan.start[b + 1]]];
            EXPECT(rows == (size_t)bs || tokens + next > bt);
        }
    }
    // Order restoration: results computed per slot land on their input row.
    size_t *result = calloc(n ? n : 1, sizeof *result);
    for (size_t b = 0; b < plan.n_batches; b++)
        for (size_t k = plan.start[b]; k < plan.start[b + 1]; k++) result[plan.order[k]] = lens[plan.order[k]] * 1000 + plan.order[k];
    for (size_t i = 0; i < n; i++) EXPECT(result[i] == lens[i] * 1000 + i);
    free(result);
    batch_plan_free(&plan);
}

TEST(plan_random) {
    for (int trial = 0; trial < 200; trial++) {
        size_t n = rnd(300);
        size_t maxlen = 1 + rnd(600);
        size_t *lens = malloc((n ? n : 1) * sizeof *lens);
        for (size_t i = 0; i < n; i++) lens[i] = 1 + rnd(maxlen);
        if (n && trial % 5 == 0) lens[rnd(n)] = maxlen; // duplicates of the maximum
        int bs = 1 + (int)rnd(20);
        size_t bt = trial % 3 == 0 ? (size_t)bs * maxlen : 1 + rnd(3 * maxlen);
        check_plan(lens, n, bs, bt);
        free(lens);
    }
}

TEST(plan_exact) {
    size_t lens[] = {5, 9, 1, 9, 3, 7, 2};
    batch_plan_t plan;
    err_t err = {0};
    EXPECT(batch_plan_build(&plan, lens, 7, 3, 16, &err) == 0);
    // Sorted: rows 1(9) 3(9) 5(7) 0(5) 4(3) 6(2) 2(1); 9+9 > 16 closes at once.
    size_t want_order[] = {1, 3, 5, 0, 4, 6, 2}, want_start[] = {0, 1, 3, 6, 7};
    EXPECT(plan.n_batches == 4);
    for (int i = 0; i < 7; i++) EXPECT(plan.order[i] == want_order[i]);
    for (size_t b = 0; b <= plan.n_batches && b < 5; b++) EXPECT(plan.start[b] == want_start[b]);
    batch_plan_free(&plan);
    // A row longer than batch_tokens goes alone; batch_size 1 gives one row per batch.
    size_t big[] = {100, 3, 3};
    EXPECT(batch_plan_build(&plan, big, 3, 8, 10, &err) == 0);
    EXPECT(plan.n_batches == 2 && plan.start[1] == 1);
    batch_plan_free(&plan);
    EXPECT(batch_plan_build(&plan, big, 3, 1, 1000, &err) == 0);
    EXPECT(plan.n_batches == 3);
    batch_plan_free(&plan);
    EXPECT(batch_plan_build(&plan, big, 3, 0, 1000, &err) < 0);
    EXPECT(batch_plan_build(&plan, big, 0, 4, 1000, &err) == 0 && plan.n_batches == 0);
    batch_plan_free(&plan);
}

/* Row i encodes to ids i, i+1, ... (i % 7 + 1 of them); rows listed in fail_rows fail. */
typedef struct {
    size_t fail_a, fail_b;
    int slow;
} enc_ctx_t;

static int fake_encode(void *ctx, size_t row, ids_t *out, err_t *err) {
    enc_ctx_t *c = ctx;
    if (c->slow) usleep(2000);
    if (row == c->fail_a || row == c->fail_b) return err_fmt(err, "row %zu failed", row);
    for (size_t k = 0; k <= row % 7; k++) ids_push(out, (int32_t)(row + k));
    return 0;
}

TEST(pool_results) {
    enc_ctx_t c = {SIZE_MAX, SIZE_MAX, 0};
    for (int threads = 0; threads <= 8; threads += 3) {
        batch_encoder_t *be = batch_encoder_start(1000, threads, fake_encode, &c);
        ids_t *rows;
        err_t err = {0};
        double busy = -1;
        EXPECT(batch_encoder_wait(be, &rows, &busy, &err) == 0);
        EXPECT(busy >= 0 && busy < 60);
        for (size_t i = 0; i < 1000; i++) {
            EXPECT(rows[i].n == i % 7 + 1);
            for (size_t k = 0; k < rows[i].n; k++) EXPECT(rows[i].data[k] == (int32_t)(i + k));
            ids_free(&rows[i]);
        }
        free(rows);
    }
    batch_encoder_t *be = batch_encoder_start(0, 4, fake_encode, &c); // no rows at all
    ids_t *rows;
    err_t err = {0};
    EXPECT(batch_encoder_wait(be, &rows, NULL, &err) == 0);
    free(rows);
}

TEST(pool_first_error) {
    for (int rep = 0; rep < 5; rep++) {
        enc_ctx_t c = {600, 37, 0};
        batch_encoder_t *be = batch_encoder_start(1000, 4, fake_encode, &c);
        ids_t *rows = (ids_t *)1;
        err_t err = {0};
        EXPECT(batch_encoder_wait(be, &rows, NULL, &err) < 0);
        EXPECT(rows == NULL);
        EXPECT_STR_CONTAINS(err.msg, "row 37 failed");
    }
}

TEST(pool_cancel) {
    enc_ctx_t c = {SIZE_MAX, SIZE_MAX, 1};
    batch_encoder_t *be = batch_encoder_start(100000, 2, fake_encode, &c);
    usleep(10000);
    batch_encoder_cancel(be); // must return promptly, with no leak (checked under ASan)
    batch_encoder_cancel(NULL);
}

TEST_MAIN(plan_random, plan_exact, pool_results, pool_first_error, pool_cancel)
