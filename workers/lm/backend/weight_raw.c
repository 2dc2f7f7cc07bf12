/* weight_raw.c: raw checkpoint element copies with a finiteness check (weight_raw.h).
 *
 * The check reads the exponent bits (all ones: NaN or infinity) of the copied elements with a
 * branch-free count that the compiler vectorises, so checking costs little next to the copy;
 * only a chunk that holds a bad element is scanned again to find the first. One thread: the
 * callers split big tensors into pieces and run pieces on their own threads.
 */
#include "weight_raw.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "exit_codes.h"

/* fp16 bits h as fp32 (exact). The backend cannot reach the model room's safetensors decoder
 * (rooms depend downwards only), so it has this arithmetic one. */
static float f16_value(uint16_t h) {
    int e = (h >> 10) & 0x1f, m = h & 0x3ff;
    float v = e == 0 ? ldexpf((float)m, -24) : e == 31 ? (m ? NAN : INFINITY) : ldexpf((float)(m | 0x400), e - 25);
    return h & 0x8000u ? -v : v;
}

size_t raw_elem_size(dtype_t dt) { return dt == DT_F32 ? 4 : dt == DT_I8 ? 1 : 2; }

/* 1 when the 16-bit pattern u of dt (bf16 or fp16) is NaN or infinity. */
static inline int bad16(uint16_t u, uint16_t exp_mask) { return (u & exp_mask) == exp_mask; }

/* Index of the first non-finite of n aligned elements p of dt, or n. */
static size_t first_bad(const void *p, dtype_t dt, size_t n) {
    if (dt == DT_F32) {
        const uint32_t *u = p;
        size_t bad = 0;
        for (size_t i = 0; i < n; i++) bad += (u[i] & 0x7f800000u) == 0x7f800000u;
        if (!bad) return n;
        for (size_t i = 0; i < n; i++)
            if ((u[i] & 0x7f800000u) == 0x7f800000u) return i;
        return n;
    }
    const uint16_t *u = p, m = dt == DT_BF16 ? 0x7f80u : 0x7c00u;
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) bad += bad16(u[i], m);
    if (!bad) return n;
    for (size_t i = 0; i < n; i++)
        if (bad16(u[i], m)) return i;
    return n;
}

size_t raw_copy_checked(void *dst, const void *src, dtype_t dt, size_t n) {
    ASSERT(dt == DT_F32 || dt == DT_BF16 || dt == DT_F16);
    memcpy(dst, src, n * raw_elem_size(dt));
    if (((uintptr_t)dst & 3) == 0) return first_bad(dst, dt, n);
    for (size_t i = 0; i < n; i++) // an unaligned destination: rare, element by element
        if (!isfinite(raw_value(dst, dt, i))) return i;
    return n;
}

float raw_value(const void *src, dtype_t dt, size_t i) {
    const unsigned char *p = (const unsigned char *)src + i * raw_elem_size(dt);
    if (dt == DT_F32) {
        float v;
        memcpy(&v, p, sizeof v);
        return v;
    }
    uint16_t h = (uint16_t)(p[0] | p[1] << 8); // little-endian, as safetensors stores it
    if (dt == DT_F16) return f16_value(h);
    uint32_t u = (uint32_t)h << 16;             // bf16 is the top half of an fp32
    float v;
    memcpy(&v, &u, sizeof v);
    return v;
}

size_t raw_to_f32(float *dst, const void *src, dtype_t dt, size_t n) {
    ASSERT(dt == DT_F32 || dt == DT_BF16 || dt == DT_F16);
    if (dt == DT_F32) return raw_copy_checked(dst, src, dt, n);
    const unsigned char *p = src;
    if (dt == DT_BF16) {
        for (size_t i = 0; i < n; i++) { // bf16 is the top half of an fp32: a shift, vectorised
            uint32_t u = (uint32_t)(p[2 * i] | p[2 * i + 1] << 8) << 16;
            memcpy(&dst[i], &u, sizeof u);
        }
    } else {
        for (size_t i = 0; i < n; i++) dst[i] = f16_value((uint16_t)(p[2 * i] | p[2 * i + 1] << 8));
    }
    return first_bad(dst, DT_F32, n);
}

int raw_nonfinite_error(err_t *err, const char *name, const void *src, dtype_t dt, size_t at, int cols) {
    size_t c = cols > 0 ? (size_t)cols : 1;
    return err_code(err, EXIT_DATAERR, "tensor '%s': row %zu, column %zu is %g: not finite", name, at / c, at % c,
                    (double)raw_value(src, dt, at));
}
