/* quant.c: the int8 per-row symmetric quantiser (see quant.h for the scheme and its bound).
 *
 * Plain loops, one pass to find each row's absolute maximum and one to quantise: the reference
 * that kernels/upload.cu's GPU quantiser (the one the CUDA load path runs) reproduces exactly,
 * and what --round-weights int8 (weight_round.c) runs on the CPU.
 */
#include "quant.h"

#include <math.h>

int quant_int8_rows(int8_t *q, float *scales, const float *w, int rows, int cols, err_t *err) {
    for (int r = 0; r < rows; r++) {
        const float *wr = w + (size_t)r * cols;
        int8_t *qr = q + (size_t)r * cols;
        float amax = 0.0f;
        for (int c = 0; c < cols; c++) {
            float a = fabsf(wr[c]);
            if (!isfinite(a))
                return err_fmt(err, "int8 quantisation: row %d, column %d holds %g; the weight is not finite", r, c,
                               (double)wr[c]);
            if (a > amax) amax = a;
        }
        float s = amax / (float)QUANT_INT8_MAX;
        scales[r] = s;
        if (s == 0.0f) { // all zeros, or values so small that amax/127 underflows
            for (int c = 0; c < cols; c++) qr[c] = 0;
            continue;
        }
        for (int c = 0; c < cols; c++) {
            float v = roundf(wr[c] / s);
            if (v > QUANT_INT8_MAX) v = QUANT_INT8_MAX; // wr/s can exceed 127 by an ulp
            if (v < -QUANT_INT8_MAX) v = -QUANT_INT8_MAX;
            qr[c] = (int8_t)v;
        }
    }
    return 0;
}

void quant_dequant_rows(float *w, const int8_t *q, const float *scales, int rows, int cols) {
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++) w[(size_t)r * cols + c] = (float)q[(size_t)r * cols + c] * scales[r];
}

void quant_matmul_ref(float *out, const float *in, const int8_t *q, const float *scales, int T, int rows, int cols) {
    for (int t = 0; t < T; t++) {
        const float *x = in + (size_t)t * cols;
        for (int r = 0; r < rows; r++) {
            const int8_t *qr = q + (size_t)r * cols;
            double acc = 0.0; // the reference is exact enough that only the tested path's error shows
            for (int c = 0; c < cols; c++) acc += (double)x[c] * (double)((float)qr[c] * scales[r]);
            out[(size_t)t * rows + r] = (float)acc;
        }
    }
}
