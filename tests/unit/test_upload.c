/* test_upload.c: the CUDA load path (backend_cuda_upload.c, kernels/upload.cu) against its
 * plain-C references: upload_convert against round_bf16 / round_f16 (weight_round.c) and exact
 * widening, upload_quant_int8 against quant_int8_rows (quant.c) bit for bit, and weight_upload of
 * raw checkpoint bytes (bf16, fp16, fp32; unaligned, as in a safetensors mapping) on the fp32,
 * bf16, fp16 and int8 backends, including a matrix of more chunks than the pinned ring holds
 * (a pinned buffer overwritten while a queued copy still reads it corrupts the result under
 * cuda-emu). Also the fidelity rules: a value fp16 cannot hold is found on the device and
 * reported by sync() naming the tensor, row and column; a non-finite element fails the upload,
 * naming them too.
 *
 * Skips (exit 77) without CUDA or without a device. ctest runs it on cuda-emu
 * (test_upload_emu_*, three block schedules and sm_75), like test_kernels.
 */
#include <stdio.h>

#define CUDA_TEST_NAME "test_upload"
#include "cuda_test.h"
#ifdef LM_HAVE_CUDA

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "exit_codes.h"
#include "kernels.h"
#include "quant.h"
#include "tinytest.h"

static int g_bf16; // the device has bf16 (sm_80+)

/* ---------------------------------------------------------------------------------------------
 * Host encodings of test values
 * ------------------------------------------------------------------------------------------- */

static uint64_t rng = 0x9e3779b97f4a7c15ull;
/* Normal(0, std) values (Box-Muller over splitmix64). */
static float nrand(float std) {
    double u[2];
    for (int k = 0; k < 2; k++) {
        uint64_t z = (rng += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        u[k] = ((z ^ (z >> 31)) >> 11) * (1.0 / 9007199254740992.0);
    }
    return (float)(std * sqrt(-2.0 * log(u[0] + 1e-300)) * cos(6.283185307179586 * u[1]));
}

/* The bf16 bits of x, which must be bf16-exact. */
static uint16_t bf16_bits(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    ASSERT((u & 0xffffu) == 0);
    return (uint16_t)(u >> 16);
}

/* The fp16 bits of x, which must be fp16-exact and finite. */
static uint16_t f16_bits(float x) {
    uint16_t s = signbit(x) ? 0x8000u : 0;
    float a = fabsf(x);
    if (a == 0.0f) return s;
    int e;
    float m = frexpf(a, &e); // a = m * 2^e, m in [0.5, 1)
    if (e < -13) return (uint16_t)(s | (uint16_t)ldexpf(a, 24)); // subnormal: a / 2^-24
    return (uint16_t)(s | (uint16_t)((e + 14) << 10) | ((uint16_t)ldexpf(m, 11) & 0x3ffu));
}

/* n test values of dtype dt: normal(0, std), made exact in dt, as fp32 in v and as dt's bytes in
 * raw (little-endian). */
static void make_values(float *v, void *raw, dtype_t dt, size_t n, float std) {
    for (size_t i = 0; i < n; i++) {
        float x = nrand(std);
        x = dt == DT_BF16 ? round_bf16(x) : dt == DT_F16 ? round_f16(x) : x;
        v[i] = x;
        if (dt == DT_F32) memcpy((char *)raw + 4 * i, &x, 4);
        else {
            uint16_t h = dt == DT_BF16 ? bf16_bits(x) : f16_bits(x);
            memcpy((char *)raw + 2 * i, &h, 2);
        }
    }
}

/* Write v as element i of raw (dt), v exact in dt (or, for 16-bit dtypes, any NaN / infinity). */
static void put_value(void *raw, dtype_t dt, size_t i, float v) {
    if (dt == DT_F32) {
        memcpy((char *)raw + 4 * i, &v, 4);
        return;
    }
    uint16_t h = isnan(v) ? (dt == DT_BF16 ? 0x7fc0u : 0x7e00u) : dt == DT_BF16 ? bf16_bits(v) : f16_bits(v);
    memcpy((char *)raw + 2 * i, &h, 2);
}

static size_t dsize(dtype_t dt) { return dt == DT_F32 ? 4 : 2; }

/* The device buffer d (n elements of dt) widened to fp32 into host. */
static void device_f32(float *host, const void *d, dtype_t dt, size_t n) {
    float *tmp;
    TCK(cudaMalloc((void **)&tmp, n * 4));
    TCK(convert_to_f32(tmp, d, n, (kdtype_t)dt, 0));
    TCK(cudaMemcpy(host, tmp, n * 4, cudaMemcpyDeviceToHost));
    TCK(cudaFree(tmp));
}

/* Element i of the first pair of a and b (n floats) whose bits differ, or n. */
static size_t first_diff(const float *a, const float *b, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (memcmp(&a[i], &b[i], 4) != 0) return i;
    return n;
}

/* The reference of upload_convert: x rounded to dt, as fp32 (fp16 saturates like the kernel's
 * store; the test's values stay within range unless planted). */
static float ref_round(float x, dtype_t dt) {
    if (dt == DT_BF16) return round_bf16(x);
    if (dt == DT_F16) return fminf(fmaxf(round_f16(x), -65504.0f), 65504.0f);
    return x;
}

/* ---------------------------------------------------------------------------------------------
 * Kernels
 * ------------------------------------------------------------------------------------------- */

/* upload_convert for every source and destination dtype equals the C reference bit for bit, and
 * its fp16 check records the first (lowest) index of a value beyond fp16's range with its value. */
TEST(test_convert_matches_reference) {
    const dtype_t dts[3] = {DT_F32, DT_BF16, DT_F16};
    size_t n = 5000, base = 1000;
    float *v = malloc(n * 4), *got = malloc(n * 4);
    void *raw = malloc(n * 4), *dsrc, *ddst;
    unsigned long long *dbad, bad;
    TCK(cudaMalloc(&dsrc, n * 4));
    TCK(cudaMalloc(&ddst, n * 4));
    TCK(cudaMalloc((void **)&dbad, sizeof *dbad));
    for (int si = 0; si < 3; si++)
        for (int di = 0; di < 3; di++) {
            dtype_t s = dts[si], d = dts[di];
            if (!g_bf16 && (s == DT_BF16 || d == DT_BF16)) continue;
            make_values(v, raw, s, n, 3.0f);
            int planted = d == DT_F16 && s != DT_F16; // only a wider source can exceed fp16
            if (planted) {
                v[4321] = s == DT_F32 ? 70001.5f : 70144.0f, put_value(raw, s, 4321, v[4321]);
                v[1234] = -131072.0f, put_value(raw, s, 1234, v[1234]); // the first: it must win
                v[77] = s == DT_F32 ? 65504.0f : 65280.0f, put_value(raw, s, 77, v[77]); // within fp16: fine
            }
            TCK(cudaMemcpy(dsrc, raw, n * dsize(s), cudaMemcpyHostToDevice));
            TCK(cudaMemset(dbad, 0xff, sizeof *dbad));
            TCK(upload_convert(ddst, (kdtype_t)d, dsrc, (kdtype_t)s, n, base, dbad, 0));
            device_f32(got, ddst, d, n);
            TCK(cudaMemcpy(&bad, dbad, sizeof bad, cudaMemcpyDeviceToHost));
            for (size_t i = 0; i < n; i++) v[i] = ref_round(v[i], d);
            size_t at = first_diff(got, v, n);
            EXPECT_MSG(at == n, "%s -> %s: element %zu is %.9g, reference %.9g", dtype_name(s), dtype_name(d), at,
                       at < n ? got[at] : 0.0, at < n ? v[at] : 0.0);
            if (planted) {
                EXPECT_MSG((bad >> 32) == base + 1234, "%s -> fp16: recorded index %llu", dtype_name(s), bad >> 32);
                uint32_t bits = (uint32_t)bad;
                float rv;
                memcpy(&rv, &bits, 4);
                EXPECT(rv == -131072.0f);
            } else {
                EXPECT_MSG(bad == ~0ull, "%s -> %s: a check fired without a value beyond fp16", dtype_name(s),
                           dtype_name(d));
            }
        }
    TCK(cudaFree(dsrc));
    TCK(cudaFree(ddst));
    TCK(cudaFree(dbad));
    free(v), free(got), free(raw);
}

/* upload_quant_int8 from every source dtype equals quant_int8_rows on the same values, bit for
 * bit, over rows of uneven widths, an all-zero row and rows of tiny values. */
TEST(test_quant_matches_reference) {
    const dtype_t dts[3] = {DT_F32, DT_BF16, DT_F16};
    const int shapes[3][2] = {{70, 333}, {65, 1000}, {3, 31}};
    for (int si = 0; si < 3; si++) {
        dtype_t s = dts[si];
        if (!g_bf16 && s == DT_BF16) continue;
        for (int k = 0; k < 3; k++) {
            int rows = shapes[k][0], cols = shapes[k][1];
            size_t n = (size_t)rows * cols;
            float *v = malloc(n * 4), *s_ref = malloc(rows * 4), *s_got = malloc(rows * 4);
            void *raw = malloc(n * 4), *dsrc;
            int8_t *q_ref = malloc(n), *q_got = malloc(n), *dq;
            float *ds;
            make_values(v, raw, s, n, 0.05f);
            for (int c = 0; c < cols; c++) v[c] = 0.0f, put_value(raw, s, (size_t)c, 0.0f); // row 0: zeros
            if (rows > 2)
                for (int c = 0; c < cols; c++) {
                    float x = ldexpf((float)(c % 5) - 2.0f, -20);
                    v[2 * (size_t)cols + c] = x, put_value(raw, s, 2 * (size_t)cols + c, x);
                }
            ASSERT(quant_int8_rows(q_ref, s_ref, v, rows, cols, NULL) == 0);
            TCK(cudaMalloc(&dsrc, n * 4));
            TCK(cudaMalloc((void **)&dq, n));
            TCK(cudaMalloc((void **)&ds, rows * 4));
            TCK(cudaMemcpy(dsrc, raw, n * dsize(s), cudaMemcpyHostToDevice));
            TCK(upload_quant_int8(dq, ds, dsrc, (kdtype_t)s, rows, cols, 0, NULL, 0));
            TCK(cudaMemcpy(q_got, dq, n, cudaMemcpyDeviceToHost));
            TCK(cudaMemcpy(s_got, ds, rows * 4, cudaMemcpyDeviceToHost));
            EXPECT_MSG(memcmp(q_got, q_ref, n) == 0, "%s %dx%d: int8 values differ", dtype_name(s), rows, cols);
            EXPECT_MSG(memcmp(s_got, s_ref, rows * 4) == 0, "%s %dx%d: scales differ", dtype_name(s), rows, cols);
            TCK(cudaFree(dsrc));
            TCK(cudaFree(dq));
            TCK(cudaFree(ds));
            free(v), free(s_ref), free(s_got), free(raw), free(q_ref), free(q_got);
        }
    }
}

/* ---------------------------------------------------------------------------------------------
 * weight_upload of raw bytes
 * ------------------------------------------------------------------------------------------- */

/* Upload n = rows * cols elements of src (raw, at an odd offset like a safetensors mapping) on a
 * backend of compute dt (int8 when quant), and check what it stores against the reference. */
static void check_upload(dtype_t compute, int quant, dtype_t src, int rows, int cols) {
    err_t err = {0};
    backend_t *g = backend_cuda_create(compute, quant, &err);
    ASSERT(g != NULL);
    size_t n = (size_t)rows * cols;
    float *v = malloc(n * 4), *got = malloc(n * 4);
    char *buf = malloc(n * 4 + 8), *raw = buf + 2; // 2 bytes past malloc's alignment
    make_values(v, raw, src, n, 0.5f);
    bweight_t w;
    EXPECT(g->ops->weight_upload(g, &w, raw, src, rows, cols, "t") == 0);
    EXPECT_MSG(g->ops->sync(g, &err) == 0, "%s", err.msg);
    memset(buf, 0x7f, n * 4 + 8); // the backend may no longer read it
    if (w.dtype == DT_I8) {
        int8_t *q_ref = malloc(n), *q_got = malloc(n);
        float *s_ref = malloc(rows * 4), *s_got = malloc(rows * 4);
        ASSERT(quant_int8_rows(q_ref, s_ref, v, rows, cols, NULL) == 0);
        TCK(cudaMemcpy(q_got, w.data, n, cudaMemcpyDeviceToHost));
        TCK(cudaMemcpy(s_got, w.scales, rows * 4, cudaMemcpyDeviceToHost));
        EXPECT_MSG(memcmp(q_got, q_ref, n) == 0 && memcmp(s_got, s_ref, rows * 4) == 0, "%s -> int8: differs",
                   dtype_name(src));
        free(q_ref), free(q_got), free(s_ref), free(s_got);
    } else {
        EXPECT(w.dtype == compute);
        device_f32(got, w.data, compute, n);
        for (size_t i = 0; i < n; i++) v[i] = ref_round(v[i], compute);
        size_t at = first_diff(got, v, n);
        EXPECT_MSG(at == n, "%s -> %s %dx%d: element %zu is %.9g, reference %.9g", dtype_name(src),
                   dtype_name(compute), rows, cols, at, at < n ? got[at] : 0.0, at < n ? v[at] : 0.0);
    }
    EXPECT(g->upload_bytes == (double)(n * dsize(src)));
    g->ops->weight_free(g, &w);
    g->ops->destroy(g);
    free(v), free(got), free(buf);
}

/* Every source dtype on every backend: stored exactly as the references say. */
TEST(test_weight_upload_raw) {
    const dtype_t srcs[3] = {DT_F32, DT_BF16, DT_F16};
    for (int s = 0; s < 3; s++) {
        if (!g_bf16 && srcs[s] == DT_BF16) continue;
        check_upload(DT_F32, 0, srcs[s], 37, 129);
        if (g_bf16) check_upload(DT_BF16, 0, srcs[s], 37, 129);
        check_upload(DT_F16, 0, srcs[s], 37, 129);
        check_upload(g_bf16 ? DT_BF16 : DT_F16, 1, srcs[s], 96, 333);
    }
}

/* A matrix of more chunks than the ring has buffers (82 MB of fp16: 5 chunks of 16 MiB through
 * 4 pinned buffers), DMA'd straight into an fp16 weight: every byte arrives, so no pinned buffer
 * was refilled while a queued copy still read it. */
TEST(test_weight_upload_ring_wraps) {
    err_t err = {0};
    backend_t *g = backend_cuda_create(DT_F16, 0, &err);
    ASSERT(g != NULL);
    int rows = 10000, cols = 4100; // 82 MB of fp16
    size_t n = (size_t)rows * cols;
    uint16_t *raw = malloc(n * 2), *back = malloc(n * 2);
    for (size_t i = 0; i < n; i++) { // splitmix64 of i: no period a chunk or the ring could hide behind
        uint64_t z = (i + 1) * 0x9e3779b97f4a7c15ull;
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        raw[i] = (uint16_t)((z ^ (z >> 31)) & 0x3bffu); // finite fp16 below 1
    }
    bweight_t w;
    EXPECT(g->ops->weight_upload(g, &w, raw, DT_F16, rows, cols, "big") == 0);
    EXPECT_MSG(g->ops->sync(g, &err) == 0, "%s", err.msg);
    TCK(cudaMemcpy(back, w.data, n * 2, cudaMemcpyDeviceToHost));
    size_t bad = 0;
    while (bad < n && back[bad] == raw[bad]) bad++;
    EXPECT_MSG(bad == n, "element %zu: 0x%04x, sent 0x%04x", bad, bad < n ? back[bad] : 0, bad < n ? raw[bad] : 0);
    g->ops->weight_free(g, &w);
    g->ops->destroy(g);
    free(raw), free(back);
}

/* bf16 (or fp32) bytes beyond fp16's range on the fp16 and fp16+int8 backends: the upload queues
 * fine, and sync() reports EXIT_DATAERR naming the tensor, row and column, once. */
TEST(test_fp16_range_found_on_device) {
    dtype_t src = g_bf16 ? DT_BF16 : DT_F32;
    for (int quant = 0; quant < 2; quant++) {
        err_t err = {0};
        backend_t *g = backend_cuda_create(DT_F16, quant, &err);
        ASSERT(g != NULL);
        int rows = 80, cols = 70;
        size_t n = (size_t)rows * cols;
        float *v = malloc(n * 4);
        void *raw = malloc(n * 4);
        make_values(v, raw, src, n, 1.0f);
        put_value(raw, src, (size_t)23 * cols + 9, -70144.0f);
        put_value(raw, src, (size_t)40 * cols + 1, 1048576.0f);
        bweight_t w, ok;
        (void)g->ops->weight_upload(g, &w, raw, src, rows, cols, "model.layers.3.mlp.down_proj.weight");
        put_value(raw, src, (size_t)23 * cols + 9, 1.0f);
        put_value(raw, src, (size_t)40 * cols + 1, 1.0f);
        EXPECT(g->ops->weight_upload(g, &ok, raw, src, rows, cols, "fine") == 0); // a later, clean upload
        EXPECT(g->ops->sync(g, &err) == -1);
        EXPECT(err.code == EXIT_DATAERR);
        EXPECT_STR_CONTAINS(err.msg, "uploading 'model.layers.3.mlp.down_proj.weight': fp16 weight: row 23, column 9 "
                                     "holds -70144");
        EXPECT_STR_CONTAINS(err.msg, "65504");
        memset(&err, 0, sizeof err);
        EXPECT(g->ops->sync(g, &err) == 0); // reported once
        g->ops->weight_free(g, &w);
        g->ops->weight_free(g, &ok);
        g->ops->destroy(g);
        free(v), free(raw);
    }
}

/* A NaN or infinity in checkpoint bytes fails the upload at once, naming tensor, row and column. */
TEST(test_nonfinite_bytes_rejected) {
    const dtype_t srcs[3] = {DT_BF16, DT_F16, DT_F32};
    for (int s = 0; s < 3; s++) {
        if (!g_bf16 && srcs[s] == DT_BF16) continue;
        err_t err = {0};
        backend_t *g = backend_cuda_create(g_bf16 ? DT_BF16 : DT_F16, s == 2, &err);
        ASSERT(g != NULL);
        int rows = 70, cols = 50;
        size_t n = (size_t)rows * cols;
        float *v = malloc(n * 4);
        void *raw = malloc(n * 4);
        make_values(v, raw, srcs[s], n, 1.0f);
        put_value(raw, srcs[s], (size_t)61 * cols + 17, NAN);
        bweight_t w;
        EXPECT(g->ops->weight_upload(g, &w, raw, srcs[s], rows, cols, "bad.weight") == -1);
        EXPECT(g->ops->sync(g, &err) == -1);
        EXPECT(err.code == EXIT_DATAERR);
        EXPECT_STR_CONTAINS(err.msg, "tensor 'bad.weight': row 61, column 17 is nan: not finite");
        g->ops->weight_free(g, &w);
        g->ops->destroy(g);
        free(v), free(raw);
    }
}

/* Before the first test: skip without a device; note whether it has bf16. */
static int setup(void) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) {
        printf("test_upload: skipped: no CUDA device\n");
        return 77;
    }
    struct cudaDeviceProp prop;
    TCK(cudaGetDeviceProperties(&prop, 0));
    g_bf16 = prop.major >= 8;
    printf("test_upload: device %s (sm_%d%d)\n", prop.name, prop.major, prop.minor);
    return 0;
}

TEST_MAIN_WITH(setup, NULL, test_convert_matches_reference, test_quant_matches_reference, test_weight_upload_raw,
               test_weight_upload_ring_wraps, test_fp16_range_found_on_device, test_nonfinite_bytes_rejected)

#endif
