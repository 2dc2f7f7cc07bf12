/* test_quant.c: the int8 per-row quantiser of workers/lm/backend/quant.c, on the CPU (runs everywhere).
 *
 * Checks the documented bound |w - q*scale| <= scale/2 row by row on random matrices whose rows
 * span twelve orders of magnitude, exact zeros for all-zero rows, extreme but finite values,
 * the refusal of NaN/Inf with the row named, and that an int8 matmul stays within the bound
 * that follows from the per-element one: |y_q - y| <= sum_c |x_c| * scale_r / 2. Also that
 * --round-weights int8 reports a non-finite weight as an error value, not by exiting.
 */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "quant.h"
#include "backend.h"

#include <sys/wait.h>
#include <unistd.h>

#include "tinytest.h"

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

/* A uniform double in [0, 1) (splitmix64). */
static double urand(void) {
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return (double)(z >> 11) / 9007199254740992.0;
}

static float nrand(void) { // standard normal (Box-Muller)
    double u = urand(), v = urand();
    return (float)(sqrt(-2.0 * log(u + 1e-300)) * cos(6.283185307179586 * v));
}

/* The per-row bound with a little slack for fp32 rounding of w/scale and q*scale. */
static int check_rows(const float *w, const int8_t *q, const float *scales, int rows, int cols, const char *what) {
    float *deq = malloc((size_t)rows * cols * sizeof(float));
    quant_dequant_rows(deq, q, scales, rows, cols);
    int bad = 0;
    for (int r = 0; r < rows; r++) {
        double bound = scales[r] * (0.5 + 1e-4);
        float amax = 0.0f;
        for (int c = 0; c < cols; c++) {
            size_t i = (size_t)r * cols + c;
            if (fabsf(w[i]) > amax) amax = fabsf(w[i]);
            double err = fabs((double)w[i] - (double)deq[i]);
            if (!(err <= bound)) {
                if (bad++ < 10)
                    fprintf(stderr, "  %s: row %d col %d: w %.9g deq %.9g q %d scale %.9g err %.3g > %.3g\n", what, r,
                            c, (double)w[i], (double)deq[i], q[i], (double)scales[r], err, bound);
            }
            if (q[i] == -128) bad++; // the scheme is symmetric: -128 is never produced
        }
        EXPECT_MSG(scales[r] == amax / QUANT_INT8_MAX, "%s: row %d: scale %.9g, expected max|w|/127 = %.9g", what, r,
                   (double)scales[r], (double)(amax / QUANT_INT8_MAX));
    }
    free(deq);
    EXPECT_MSG(bad == 0, "%s: %d elements outside |w - q*scale| <= scale/2", what, bad);
    return bad;
}

TEST(test_round_trip_bound) {
    int rows = 67, cols = 301;
    float *w = malloc((size_t)rows * cols * sizeof(float));
    int8_t *q = malloc((size_t)rows * cols);
    float *s = malloc(rows * sizeof(float));
    for (int r = 0; r < rows; r++) {
        double mag = pow(10.0, -6.0 + 12.0 * r / (rows - 1)); // 1e-6 .. 1e6
        for (int c = 0; c < cols; c++) w[(size_t)r * cols + c] = (float)(mag * nrand());
    }
    EXPECT(quant_int8_rows(q, s, w, rows, cols, NULL) == 0);
    check_rows(w, q, s, rows, cols, "random rows");
    /* The element of largest magnitude maps to +-127 exactly, with its sign. */
    for (int r = 0; r < rows; r++) {
        int best = 0;
        for (int c = 1; c < cols; c++)
            if (fabsf(w[(size_t)r * cols + c]) > fabsf(w[(size_t)r * cols + best])) best = c;
        int8_t qm = q[(size_t)r * cols + best];
        EXPECT_MSG(qm == (w[(size_t)r * cols + best] > 0 ? 127 : -127), "row %d: max element quantised to %d", r, qm);
    }
    free(w), free(q), free(s);
}

TEST(test_zero_rows) {
    int rows = 3, cols = 50;
    float w[150] = {0};
    int8_t q[150];
    float s[3], deq[150];
    memset(q, 5, sizeof q);
    w[1 * 50 + 7] = -2.5f; // only row 1 is non-zero
    w[2 * 50 + 3] = -0.0f; // a negative zero is still zero
    EXPECT(quant_int8_rows(q, s, w, rows, cols, NULL) == 0);
    EXPECT(s[0] == 0.0f && s[2] == 0.0f);
    quant_dequant_rows(deq, q, s, rows, cols);
    for (int c = 0; c < cols; c++) {
        EXPECT(q[c] == 0 && deq[c] == 0.0f);
        EXPECT(q[100 + c] == 0 && deq[100 + c] == 0.0f);
    }
    EXPECT(q[57] == -127);
    EXPECT(deq[57] == -2.5f);
    check_rows(w, q, s, rows, cols, "zero rows");
}

TEST(test_extreme_values) {
    enum { COLS = 8 };
    float w[4][COLS] = {
        {1e38f, -1e38f, 3e37f, 1.0f, -1e-30f, 0.0f, 5e37f, -7e36f}, // near FLT_MAX; small values -> 0
        {1e-30f, -3e-31f, 7e-31f, 0.0f, 1e-30f, -1e-30f, 2e-31f, 9e-31f},  // tiny, but scale stays normal
        {1.0f, -1.0f, 1.0f, -1.0f, 1.0f, -1.0f, 1.0f, -1.0f},         // exactly representable
        {FLT_MIN, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f},          // max/127 underflows to a subnormal
    };
    int8_t q[4 * COLS];
    float s[4];
    EXPECT(quant_int8_rows(q, s, &w[0][0], 3, COLS, NULL) == 0);
    check_rows(&w[0][0], q, s, 3, COLS, "extreme rows");
    for (int c = 0; c < COLS; c++) EXPECT(q[2 * COLS + c] == (c % 2 ? -127 : 127));
    EXPECT(q[4] == 0 && q[3] == 0); // 1.0 and -1e-30 next to 1e38 vanish, within scale/2
    /* The subnormal-scale row still quantises without dividing by zero or overflowing. */
    EXPECT(quant_int8_rows(q, s, &w[0][0], 4, COLS, NULL) == 0);
    EXPECT(s[3] > 0.0f && q[3 * COLS] == 127);
}

TEST(test_non_finite_rejected) {
    float w[2][4] = {{1, 2, 3, 4}, {1, NAN, 3, 4}};
    int8_t q[8];
    float s[2];
    err_t err = {0};
    EXPECT(quant_int8_rows(q, s, &w[0][0], 2, 4, &err) == -1);
    EXPECT_STR_CONTAINS(err.msg, "row 1");
    EXPECT_STR_CONTAINS(err.msg, "column 1");
    w[1][1] = -INFINITY;
    memset(&err, 0, sizeof err);
    EXPECT(quant_int8_rows(q, s, &w[0][0], 2, 4, &err) == -1);
    EXPECT_STR_CONTAINS(err.msg, "not finite");
}

TEST(test_int8_matmul_bound) {
    int T = 9, rows = 70, cols = 257;
    float *w = malloc((size_t)rows * cols * sizeof(float)), *x = malloc((size_t)T * cols * sizeof(float));
    float *deq = malloc((size_t)rows * cols * sizeof(float)), *s = malloc(rows * sizeof(float));
    float *yq = malloc((size_t)T * rows * sizeof(float));
    int8_t *q = malloc((size_t)rows * cols);
    for (size_t i = 0; i < (size_t)rows * cols; i++) w[i] = nrand() / sqrtf((float)cols);
    for (size_t i = 0; i < (size_t)T * cols; i++) x[i] = nrand();
    EXPECT(quant_int8_rows(q, s, w, rows, cols, NULL) == 0);
    quant_matmul_ref(yq, x, q, s, T, rows, cols);
    quant_dequant_rows(deq, q, s, rows, cols);
    int bad = 0;
    double worst = 0.0, total_err = 0.0;
    for (int t = 0; t < T; t++) {
        double xabs = 0.0;
        for (int c = 0; c < cols; c++) xabs += fabs(x[(size_t)t * cols + c]);
        for (int r = 0; r < rows; r++) {
            double y = 0.0, yd = 0.0;
            for (int c = 0; c < cols; c++) {
                y += (double)x[(size_t)t * cols + c] * w[(size_t)r * cols + c];
                yd += (double)x[(size_t)t * cols + c] * deq[(size_t)r * cols + c];
            }
            double got = yq[(size_t)t * rows + r], bound = xabs * s[r] * (0.5 + 1e-4) + 1e-6 * fabs(y);
            double err = fabs(got - y);
            total_err += err;
            if (err / bound > worst) worst = err / bound;
            if (!(err <= bound) && bad++ < 10)
                fprintf(stderr, "  [%d,%d] int8 %.7g fp32 %.7g err %.3g > bound %.3g\n", t, r, got, y, err, bound);
            /* The reference is the exact product with the dequantised matrix. */
            EXPECT_NEAR(got, yd, 1e-6, 1e-6);
        }
    }
    EXPECT_MSG(bad == 0, "%d outputs outside the int8 error bound", bad);
    EXPECT(total_err > 0.0); // quantisation does change the result: the check above is not vacuous
    printf("int8 matmul: worst error / bound = %.3f\n", worst);
    free(w), free(x), free(deq), free(s), free(yq), free(q);
}

/* round_bf16 / round_f16 (weight_round.c, for `bench --round-weights`): nearest, ties to even,
 * at normal and subnormal steps, overflow and specials; and agreement with a bit-exact
 * conversion on a sweep (bf16: keep the high 16 bits after rounding). */
TEST(test_round_to_half_types) {
    EXPECT(round_bf16(1.0f + 0x1p-8f) == 1.0f);              // tie, 1.0 is even
    EXPECT(round_bf16(1.0f + 3 * 0x1p-8f) == 1.0f + 0x1p-6f); // tie, up to even
    EXPECT(round_bf16(1.0f + 0x1p-8f + 0x1p-20f) == 1.0f + 0x1p-7f);
    EXPECT(round_bf16(-3.0f) == -3.0f && isnan(round_bf16(NAN)) && isinf(round_bf16(-INFINITY)));
    EXPECT(round_f16(1.0f + 0x1p-11f) == 1.0f);
    EXPECT(round_f16(1.0f + 3 * 0x1p-11f) == 1.0f + 0x1p-9f);
    EXPECT(round_f16(65519.0f) == 65504.0f);
    EXPECT(isinf(round_f16(65520.0f)) && round_f16(-65520.0f) < 0);
    EXPECT(round_f16(0x1p-25f) == 0.0f);             // tie below the smallest subnormal: to even (0)
    EXPECT(round_f16(3 * 0x1p-26f) == 0x1p-24f);      // above the tie
    EXPECT(round_f16(0x1p-14f * 1.5f) == 0x1p-14f * 1.5f); // a normal fp16 value is kept
    EXPECT(round_f16(-2.5f) == -2.5f && round_f16(0.0f) == 0.0f);
    /* Sweep: every result is representable (bf16: low 16 bits zero; fp16: an integer multiple of
     * its step) and at most half a step away. */
    for (int i = -2000; i <= 2000; i++) {
        float x = ldexpf(1.0f + (float)(i * 7919 % 1000) / 1000.0f, i % 40) * (i < 0 ? -1.0f : 1.0f);
        float b = round_bf16(x), h = round_f16(x);
        uint32_t u;
        memcpy(&u, &b, sizeof u);
        EXPECT((u & 0xffffu) == 0);
        int e;
        (void)frexpf(fabsf(x), &e);
        EXPECT(fabsf(b - x) <= ldexpf(1.0f, e - 9));
        if (fabsf(x) < 65504.0f) EXPECT(fabsf(h - x) <= ldexpf(1.0f, (e - 11 < -24 ? -24 : e - 11) - 1));
    }
}

/* weight_round_wrap int8: a matrix with a NaN fails its upload (the process lives on) and sync
 * names the reason with EXIT_DATAERR (65); a finite matrix uploads as its dequantised self. */
TEST(test_round_weights_nan_is_an_error) {
    err_t err = {0};
    backend_t *b = backend_cpu_create(1, &err);
    EXPECT_MSG(b != NULL, "%s", err.msg);
    if (!b) return;
    EXPECT_MSG(weight_round_wrap(b, "int8", &err) == 0, "%s", err.msg);
    enum { R = QUANT_MIN_ROWS, C = 4 };
    static float w[R * C];
    for (int i = 0; i < R * C; i++) w[i] = (float)(i % 7) - 3.0f;
    bweight_t ok = {0}, bad = {0};
    EXPECT(b->ops->weight_upload(b, &ok, w, DT_F32, R, C, "w") == 0);
    EXPECT(b->ops->sync(b, &err) == 0);
    w[5 * C + 2] = NAN;
    EXPECT(b->ops->weight_upload(b, &bad, w, DT_F32, R, C, "w") == -1);
    err = (err_t){0};
    EXPECT(b->ops->sync(b, &err) == -1);
    EXPECT(err.code == 65);
    EXPECT_STR_CONTAINS(err.msg, "--round-weights int8");
    EXPECT_STR_CONTAINS(err.msg, "row 5");
    b->ops->weight_free(b, &ok);
    b->ops->destroy(b);
}

/* weight_round_wrap fp16: a weight fp16 cannot hold is refused (as the fp16 GPU upload refuses
 * it), naming the tensor, row and column; 65504 itself is fine. In a child process, because the
 * wrap is once per process: listed before test_round_weights_nan_is_an_error, which wraps in
 * this one. */
TEST(test_round_weights_fp16_beyond_range_is_an_error) {
    pid_t pid = fork();
    ASSERT(pid >= 0);
    if (pid == 0) {
        err_t err = {0};
        backend_t *b = backend_cpu_create(1, &err);
        if (!b || weight_round_wrap(b, "fp16", &err)) _exit(2);
        enum { R = 4, C = 5 };
        float w[R * C];
        for (int i = 0; i < R * C; i++) w[i] = (float)i;
        w[3] = 65504.0f;
        bweight_t ok = {0}, bad = {0};
        if (b->ops->weight_upload(b, &ok, w, DT_F32, R, C, "fine") || b->ops->sync(b, &err)) _exit(3);
        w[2 * C + 4] = -70000.0f;
        if (b->ops->weight_upload(b, &bad, w, DT_F32, R, C, "big.weight") != -1 || b->ops->sync(b, &err) != -1) _exit(4);
        if (err.code != 65 || !strstr(err.msg, "tensor 'big.weight': row 2, column 4 holds -70000, beyond fp16's range")) {
            fprintf(stderr, "got: %s\n", err.msg);
            _exit(5);
        }
        _exit(0);
    }
    int st = 0;
    ASSERT(waitpid(pid, &st, 0) == pid);
    EXPECT_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child status %d", st);
}

TEST_MAIN(test_round_trip_bound, test_zero_rows, test_extreme_values, test_non_finite_rejected,
          test_int8_matmul_bound, test_round_to_half_types, test_round_weights_fp16_beyond_range_is_an_error,
          test_round_weights_nan_is_an_error)
