/* quant.h: int8 weight-only quantisation with per-output-channel (per-row) symmetric scales.
 *
 * A weight matrix W (rows, cols) = (out_features, in_features) becomes int8 q and fp32 scales
 * with W[r][c] ~ q[r][c] * scale[r], scale[r] = max_c |W[r][c]| / 127, q = round(W / scale)
 * (half away from zero) in [-127, 127]. The error per element is at most scale[r] / 2 (up to
 * fp32 rounding, and provided scale[r] is a normal float, i.e. the row max is above ~1.5e-36). An
 * all-zero row gets scale 0 and q = 0, and dequantises to exact zeros.
 *
 * This is the plain-C reference: the GPU quantises at upload with upload_quant_int8
 * (kernels/upload.cu), which tests/unit/test_upload.c checks against it bit for bit, and
 * dequantises in kernels/quant_int8.cu; weight_round.c (--round-weights int8) uses it directly. There is no
 * activation quantisation and no zero point; asymmetric or group-wise schemes are out of scope.
 */
#ifndef LM_QUANT_H
#define LM_QUANT_H

#include <stdint.h>

#include "check.h"

#define QUANT_INT8_MAX 127
#define QUANT_MIN_ROWS 64 // --quant int8 leaves smaller matrices (the score head) in the compute dtype

/* Quantise w (rows, cols) into q (rows, cols) and scales (rows). Returns 0, or -1 with err
 * naming the first row that holds a NaN or infinity (such a row has no meaningful scale). */
int quant_int8_rows(int8_t *q, float *scales, const float *w, int rows, int cols, err_t *err);

/* w (rows, cols) = q[r][c] * scales[r], in fp32. */
void quant_dequant_rows(float *w, const int8_t *q, const float *scales, int rows, int cols);

/* out (T, rows) = in (T, cols) @ (q * scales)^T in fp32: the int8 matmul's reference. */
void quant_matmul_ref(float *out, const float *in, const int8_t *q, const float *scales, int T, int rows, int cols);

#endif
