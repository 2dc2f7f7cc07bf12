/* weight_raw.h: checkpoint bytes as weight_upload receives them (backend_ops_t.weight_upload):
 * n elements of fp32, bf16 or fp16, little-endian, possibly unaligned (straight from a
 * safetensors mapping). Copies that check finiteness on the way, their conversion to fp32, and
 * the one error message for a non-finite weight. Private to backend/ (backend_cpu.c,
 * weight_round.c, backend_cuda_upload.c); it knows nothing of devices or threads.
 */
#ifndef LM_WEIGHT_RAW_H
#define LM_WEIGHT_RAW_H

#include <stddef.h>

#include "backend.h"

/* Bytes per element of a raw dtype: 4 (DT_F32), 2 (DT_BF16, DT_F16) or 1 (DT_I8). */
size_t raw_elem_size(dtype_t dt);

/* Copy n elements of dt from src to dst (memcpy; either may be unaligned) and return the index of
 * the first that is not finite (NaN or infinity), or n when all are. One pass over src. */
size_t raw_copy_checked(void *dst, const void *src, dtype_t dt, size_t n);

/* dst[i] = src[i] widened to fp32 (exact) for i < n; returns the index of the first non-finite
 * element, or n. */
size_t raw_to_f32(float *dst, const void *src, dtype_t dt, size_t n);

/* Element i of src (dt) as fp32. */
float raw_value(const void *src, dtype_t dt, size_t i);

/* Record in err (code EXIT_DATAERR) that element `at` of tensor `name`, a (rows, cols) matrix
 * held at src in dt, is not finite: "tensor 'NAME': row R, column C is nan: not finite".
 * Returns -1. */
int raw_nonfinite_error(err_t *err, const char *name, const void *src, dtype_t dt, size_t at, int cols);

#endif
