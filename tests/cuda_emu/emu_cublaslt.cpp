/* emu_cublaslt.cpp: cuda-emu's cublasLt: the calls lm-worker's CUDA backend makes
 * (backend_cuda_lt.c), with the real header's signatures, computing exactly like the emulated
 * cublasGemmEx (emu::gemm_enqueue: products exact, sums in fp32, rounded to D's type).
 *
 * Heuristics are fake but behave like cublasLt's where the backend depends on it: up to four
 * algorithms, each with a reduction scheme (none; split-K reduced in the compute type, in place,
 * or in the output type), a workspace size and an alignment need; cublasLtMatmulAlgoGetHeuristic
 * returns only those the preference allows (workspace, reduction-scheme mask, minimum
 * alignments), and cublasLtMatmul refuses an algorithm it did not hand out, too little workspace or
 * a pointer less aligned than the algorithm needs. Every algorithm computes the same result.
 *
 * Settings (environment): CUDA_EMU_LT_REFUSE=1 makes every heuristic query fail with
 * CUBLAS_STATUS_NOT_SUPPORTED (the backend must then fall back to cublasGemmEx);
 * CUDA_EMU_STATS=1 prints, at exit, how many heuristic queries, algorithm checks and matmuls ran
 * (tests count them). It deliberately has no epilogues, batching, transforms or other orders than
 * column-major: the backend uses none.
 */
#include <cublasLt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "emu_internal.h"

namespace {

const uint64_t ALGO_MAGIC = 0xC0DEE11A0000ull;

/* The fake algorithms: reduction scheme, workspace bytes, alignment need in bytes. */
struct fake_algo_t {
    uint32_t scheme;
    uint64_t ws;
    uint32_t align;
};
const fake_algo_t FAKE_ALGOS[] = {
    {CUBLASLT_REDUCTION_SCHEME_NONE, 0, 4},
    {CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE, 1u << 20, 16},
    {CUBLASLT_REDUCTION_SCHEME_INPLACE, 0, 16},
    {CUBLASLT_REDUCTION_SCHEME_OUTPUT_TYPE, 1u << 20, 16},
};
const int N_FAKE = (int)(sizeof FAKE_ALGOS / sizeof FAKE_ALGOS[0]);

struct emu_lt_t {
    int magic; // 0x17
};
struct emu_desc_t {
    cublasComputeType_t compute;
    cudaDataType_t scale;
    int32_t transa, transb; // cublasOperation_t
};
struct emu_layout_t {
    cudaDataType type;
    uint64_t rows, cols;
    int64_t ld;
};
struct emu_pref_t {
    uint64_t max_ws;
    uint32_t scheme_mask;
    uint32_t align[4]; // A, B, C, D
};

long g_heuristic_calls, g_check_calls, g_matmul_calls;

/* The integer value of environment variable name, 0 when unset. */
int env_flag(const char *name) {
    const char *s = getenv(name);
    return s && *s && strcmp(s, "0") != 0;
}

void print_stats() {
    fprintf(stderr, "cuda-emu: cublasLt: %ld heuristic queries, %ld algorithm checks, %ld matmuls\n", g_heuristic_calls,
            g_check_calls, g_matmul_calls);
}

/* CUDA_EMU_STATS=1: print the counts at exit, whether or not cublasLt was ever created. */
const int g_stats_registered = env_flag("CUDA_EMU_STATS") ? atexit(print_stats) : 0;

emu_desc_t *desc_of(cublasLtMatmulDesc_t d) { return reinterpret_cast<emu_desc_t *>(d); }
emu_layout_t *layout_of(cublasLtMatrixLayout_t l) { return reinterpret_cast<emu_layout_t *>(l); }
emu_pref_t *pref_of(cublasLtMatmulPreference_t p) { return reinterpret_cast<emu_pref_t *>(p); }

/* The GEMM a descriptor and its layouts describe: m, n, k; INVALID_VALUE when they do not fit
 * together, NOT_SUPPORTED for a compute or data type the emulator (and the backend) do not use. */
cublasStatus_t shape_of(cublasLtMatmulDesc_t desc, cublasLtMatrixLayout_t a, cublasLtMatrixLayout_t b,
                        cublasLtMatrixLayout_t c, cublasLtMatrixLayout_t d, int *m, int *n, int *k) {
    if (!desc || !a || !b || !c || !d) return CUBLAS_STATUS_INVALID_VALUE;
    const emu_desc_t *o = desc_of(desc);
    const emu_layout_t *A = layout_of(a), *B = layout_of(b), *C = layout_of(c), *D = layout_of(d);
    if (o->compute != CUBLAS_COMPUTE_32F && o->compute != CUBLAS_COMPUTE_32F_PEDANTIC)
        return CUBLAS_STATUS_NOT_SUPPORTED;
    if (o->scale != CUDA_R_32F || A->type != B->type || C->type != D->type) return CUBLAS_STATUS_NOT_SUPPORTED;
    uint64_t am = o->transa == CUBLAS_OP_N ? A->rows : A->cols, ak = o->transa == CUBLAS_OP_N ? A->cols : A->rows;
    uint64_t bk = o->transb == CUBLAS_OP_N ? B->rows : B->cols, bn = o->transb == CUBLAS_OP_N ? B->cols : B->rows;
    if (ak != bk || C->rows != am || C->cols != bn || D->rows != am || D->cols != bn || am > INT32_MAX ||
        bn > INT32_MAX || ak > INT32_MAX)
        return CUBLAS_STATUS_INVALID_VALUE;
    for (const emu_layout_t *l : {A, B, C, D})
        if (l->ld < (int64_t)(l->rows > 1 ? l->rows : 1)) return CUBLAS_STATUS_INVALID_VALUE;
    *m = (int)am, *n = (int)bn, *k = (int)ak;
    return CUBLAS_STATUS_SUCCESS;
}

/* The fake algorithm id in algo, or -1 when it is not one the heuristic handed out. */
int algo_id(const cublasLtMatmulAlgo_t *algo) {
    if (!algo || (algo->data[0] & ~0xffull) != ALGO_MAGIC) return -1;
    int id = (int)(algo->data[0] & 0xff);
    return id < N_FAKE ? id : -1;
}

/* The largest power of two (at most 256) dividing p. */
uint32_t ptr_align(const void *p) {
    uint32_t al = 1;
    while (al < 256 && !((uintptr_t)p & al)) al <<= 1;
    return al;
}

/* Fill r for fake algorithm id. */
void fill_result(cublasLtMatmulHeuristicResult_t *r, int id) {
    memset(r, 0, sizeof *r);
    r->algo.data[0] = ALGO_MAGIC | (uint64_t)id;
    r->workspaceSize = FAKE_ALGOS[id].ws;
    r->state = CUBLAS_STATUS_SUCCESS;
    r->wavesCount = 1.0f;
}

} // namespace

extern "C" {

cublasStatus_t cublasLtCreate(cublasLtHandle_t *h) {
    (void)g_stats_registered;
    if (!h) return CUBLAS_STATUS_INVALID_VALUE;
    *h = reinterpret_cast<cublasLtHandle_t>(new emu_lt_t{0x17});
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtDestroy(cublasLtHandle_t h) {
    emu::queue_flush(); // as cublasLtDestroy synchronises
    delete reinterpret_cast<emu_lt_t *>(h);
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t *d, cublasComputeType_t compute, cudaDataType_t scale) {
    if (!d) return CUBLAS_STATUS_INVALID_VALUE;
    *d = reinterpret_cast<cublasLtMatmulDesc_t>(new emu_desc_t{compute, scale, CUBLAS_OP_N, CUBLAS_OP_N});
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t d) {
    delete desc_of(d);
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t d, cublasLtMatmulDescAttributes_t attr,
                                              const void *buf, size_t size) {
    if (!d || !buf) return CUBLAS_STATUS_INVALID_VALUE;
    int32_t v;
    switch (attr) {
    case CUBLASLT_MATMUL_DESC_TRANSA:
    case CUBLASLT_MATMUL_DESC_TRANSB:
        if (size != sizeof v) return CUBLAS_STATUS_INVALID_VALUE;
        memcpy(&v, buf, sizeof v);
        if (v != CUBLAS_OP_N && v != CUBLAS_OP_T) return CUBLAS_STATUS_INVALID_VALUE;
        (attr == CUBLASLT_MATMUL_DESC_TRANSA ? desc_of(d)->transa : desc_of(d)->transb) = v;
        return CUBLAS_STATUS_SUCCESS;
    case CUBLASLT_MATMUL_DESC_POINTER_MODE:
        if (size != sizeof v) return CUBLAS_STATUS_INVALID_VALUE;
        memcpy(&v, buf, sizeof v);
        return v == CUBLASLT_POINTER_MODE_HOST ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_NOT_SUPPORTED;
    default:
        return CUBLAS_STATUS_NOT_SUPPORTED; // an attribute the emulator does not model
    }
}

cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t *l, cudaDataType type, uint64_t rows, uint64_t cols,
                                          int64_t ld) {
    if (!l) return CUBLAS_STATUS_INVALID_VALUE;
    if (type != CUDA_R_32F && type != CUDA_R_16BF && type != CUDA_R_16F) return CUBLAS_STATUS_NOT_SUPPORTED;
    *l = reinterpret_cast<cublasLtMatrixLayout_t>(new emu_layout_t{type, rows, cols, ld});
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t l) {
    delete layout_of(l);
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t *p) {
    if (!p) return CUBLAS_STATUS_INVALID_VALUE;
    *p = reinterpret_cast<cublasLtMatmulPreference_t>(
        new emu_pref_t{0, CUBLASLT_REDUCTION_SCHEME_MASK, {256, 256, 256, 256}});
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t p) {
    delete pref_of(p);
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t p,
                                                    cublasLtMatmulPreferenceAttributes_t attr, const void *buf,
                                                    size_t size) {
    if (!p || !buf) return CUBLAS_STATUS_INVALID_VALUE;
    emu_pref_t *pr = pref_of(p);
    switch (attr) {
    case CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES:
        if (size != sizeof pr->max_ws) return CUBLAS_STATUS_INVALID_VALUE;
        memcpy(&pr->max_ws, buf, size);
        return CUBLAS_STATUS_SUCCESS;
    case CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK:
        if (size != sizeof pr->scheme_mask) return CUBLAS_STATUS_INVALID_VALUE;
        memcpy(&pr->scheme_mask, buf, size);
        return CUBLAS_STATUS_SUCCESS;
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES:
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES:
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES:
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES:
        if (size != sizeof(uint32_t)) return CUBLAS_STATUS_INVALID_VALUE;
        memcpy(&pr->align[attr - CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES], buf, size);
        return CUBLAS_STATUS_SUCCESS;
    default:
        return CUBLAS_STATUS_NOT_SUPPORTED;
    }
}

cublasStatus_t cublasLtMatmulAlgoGetHeuristic(cublasLtHandle_t h, cublasLtMatmulDesc_t desc, cublasLtMatrixLayout_t a,
                                              cublasLtMatrixLayout_t b, cublasLtMatrixLayout_t c,
                                              cublasLtMatrixLayout_t d, cublasLtMatmulPreference_t pref,
                                              int requested, cublasLtMatmulHeuristicResult_t results[], int *returned) {
    g_heuristic_calls++;
    int m, n, k;
    if (!h || !pref || !results || !returned || requested <= 0) return CUBLAS_STATUS_INVALID_VALUE;
    *returned = 0;
    if (env_flag("CUDA_EMU_LT_REFUSE")) return CUBLAS_STATUS_NOT_SUPPORTED;
    cublasStatus_t s = shape_of(desc, a, b, c, d, &m, &n, &k);
    if (s) return s;
    const emu_pref_t *pr = pref_of(pref);
    uint32_t least = pr->align[0];
    for (uint32_t al : pr->align) least = al < least ? al : least;
    for (int id = 0; id < N_FAKE && *returned < requested; id++) {
        const fake_algo_t &f = FAKE_ALGOS[id];
        if (f.ws > pr->max_ws || (f.scheme && !(f.scheme & pr->scheme_mask)) || f.align > least) continue;
        fill_result(&results[(*returned)++], id);
    }
    return *returned ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_NOT_SUPPORTED;
}

cublasStatus_t cublasLtMatmulAlgoCheck(cublasLtHandle_t h, cublasLtMatmulDesc_t desc, cublasLtMatrixLayout_t a,
                                       cublasLtMatrixLayout_t b, cublasLtMatrixLayout_t c, cublasLtMatrixLayout_t d,
                                       const cublasLtMatmulAlgo_t *algo, cublasLtMatmulHeuristicResult_t *result) {
    g_check_calls++;
    int m, n, k, id = algo_id(algo);
    if (!h || !result || id < 0) return CUBLAS_STATUS_INVALID_VALUE;
    cublasStatus_t s = shape_of(desc, a, b, c, d, &m, &n, &k);
    if (s) return s;
    fill_result(result, id);
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmul(cublasLtHandle_t h, cublasLtMatmulDesc_t desc, const void *alpha, const void *A,
                              cublasLtMatrixLayout_t a, const void *B, cublasLtMatrixLayout_t b, const void *beta,
                              const void *C, cublasLtMatrixLayout_t c, void *D, cublasLtMatrixLayout_t d,
                              const cublasLtMatmulAlgo_t *algo, void *workspace, size_t ws_bytes, cudaStream_t stream) {
    (void)stream; // one queue for every stream (emu_internal.h)
    g_matmul_calls++;
    int m, n, k, id = algo ? algo_id(algo) : 0;
    if (!h || !alpha || !beta || id < 0) return CUBLAS_STATUS_INVALID_VALUE;
    cublasStatus_t s = shape_of(desc, a, b, c, d, &m, &n, &k);
    if (s) return s;
    const fake_algo_t &f = FAKE_ALGOS[id];
    if (f.ws > ws_bytes || (f.ws && !workspace)) return CUBLAS_STATUS_INVALID_VALUE;
    for (const void *p : {A, B, C, (const void *)D})
        if (ptr_align(p) < f.align) return CUBLAS_STATUS_NOT_SUPPORTED; // the algorithm needs more alignment
    const emu_desc_t *o = desc_of(desc);
    const emu_layout_t *la = layout_of(a), *lb = layout_of(b), *lc = layout_of(c), *ld = layout_of(d);
    return emu::gemm_enqueue((cublasOperation_t)o->transa, (cublasOperation_t)o->transb, m, n, k,
                             *(const float *)alpha, A, la->type, (int)la->ld, B, lb->type, (int)lb->ld,
                             *(const float *)beta, C, lc->type, (int)lc->ld, D, ld->type, (int)ld->ld);
}

} // extern "C"
