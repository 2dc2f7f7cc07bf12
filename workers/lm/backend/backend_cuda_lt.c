/* backend_cuda_lt.c: the CUDA backend's GEMMs through cublasLtMatmul, with the algorithm for each
 * GEMM key chosen once per process by timing cublasLt's own top few heuristics on the real
 * operands (backend_cuda_lt.h has the contract).
 *
 * Why: cublasGemmEx takes cuBLAS's first heuristic, which for the skinny or odd shapes of a
 * classifier's packed batches is not always the fastest; timing the top LT_CANDIDATES costs a few
 * GEMMs once per key. Keys with n (the batch's tokens) in the same power-of-two range borrow the
 * first one's choice when cublasLtMatmulAlgoCheck accepts it, so `lm-worker run`, whose batches
 * differ in T, times a handful of ranges rather than every batch.
 *
 * Precision is cublasGemmEx's under CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION: fp32
 * compute, and split-K partial sums never reduced in a 16-bit output type (the preference masks
 * out the OUTPUT_TYPE scheme, and INPLACE where D is 16-bit). Different algorithms sum in
 * different orders, so the last bits of a result depend on which one won the timing.
 *
 * It deliberately has no persistent (on-disk) cache, no epilogues (bias, activation) and no
 * batched or strided GEMMs. Cost: the cache is an open-addressing hash table, O(1) per GEMM;
 * each exact key holds its cublasLt descriptors (a few hundred bytes).
 */
#include "backend_cuda_lt.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

#define LT_CANDIDATES 4 // heuristics timed per key
#define LT_REPS 2       // timed runs of each, after one untimed run

enum { LT_EMPTY = 0, LT_TUNED, LT_HEURISTIC, LT_BORROWED, LT_REFUSED }; // lt_entry_t.state

/* A cache key: every field that can change which algorithm is valid or fastest. Ints only, so it
 * hashes and compares as bytes. */
typedef struct {
    int m, n, k;      // shape; in a range entry n is floor(log2(n))
    int ta;           // cublasOperation_t of A
    int at, bt, dt;   // cudaDataType_t of A, B, D
    int int8;         // A dequantised from int8
    int align;        // the least alignment of A, B and D in bytes (a power of two, at most 256)
    int accumulate;   // beta != 0
    int range;        // 1: the entry of n's power-of-two range, 0: an exact key
} lt_key_t;

typedef struct {
    lt_key_t key;
    int state;                     // LT_*; LT_EMPTY: a free slot
    cublasLtMatmulAlgo_t algo;     // the chosen algorithm (not LT_REFUSED)
    cublasLtMatmulDesc_t desc;     // exact keys: the operation, and the layouts of A, B and D
    cublasLtMatrixLayout_t la, lb, ld;
} lt_entry_t;

struct lt_cache {
    cublasLtHandle_t handle;            // the cublasLt context
    cudaStream_t stream;                // every GEMM and timing event goes here
    void *ws;                           // (ws_bytes) device workspace, the caller's
    size_t ws_bytes;
    int debug;                          // LM_GEMM_DEBUG: a line per choice on stderr
    cudaEvent_t ev[LT_CANDIDATES + 1];  // timing boundaries between candidates
    lt_entry_t *slots;                  // (cap) the hash table; cap a power of two
    size_t cap, used;                   // slots / slots in use
    long tuned, borrowed, refused, hits; // keys chosen by timing, borrowed, refused; cached GEMMs
};

/* ---------------------------------------------------------------------------------------------
 * The table
 * ------------------------------------------------------------------------------------------- */

/* FNV-1a over the key's bytes. */
static uint64_t key_hash(const lt_key_t *k) {
    const unsigned char *p = (const unsigned char *)k;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < sizeof *k; i++) h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

/* The slot holding k, or the free slot where it belongs. */
static lt_entry_t *slot_of(lt_entry_t *slots, size_t cap, const lt_key_t *k) {
    size_t i = (size_t)key_hash(k) & (cap - 1);
    while (slots[i].state != LT_EMPTY && memcmp(&slots[i].key, k, sizeof *k)) i = (i + 1) & (cap - 1);
    return &slots[i];
}

/* The entry of k, or NULL. */
static lt_entry_t *lt_find(lt_cache_t *lt, const lt_key_t *k) {
    lt_entry_t *e = slot_of(lt->slots, lt->cap, k);
    return e->state == LT_EMPTY ? NULL : e;
}

/* Store a copy of e (e->state not LT_EMPTY; its key not yet present), growing the table at half
 * full. */
static void lt_insert(lt_cache_t *lt, const lt_entry_t *e) {
    if (2 * (lt->used + 1) > lt->cap) {
        size_t cap = lt->cap * 2;
        lt_entry_t *slots = xcalloc(cap, sizeof *slots);
        for (size_t i = 0; i < lt->cap; i++)
            if (lt->slots[i].state != LT_EMPTY) *slot_of(slots, cap, &lt->slots[i].key) = lt->slots[i];
        free(lt->slots);
        lt->slots = slots;
        lt->cap = cap;
    }
    *slot_of(lt->slots, lt->cap, &e->key) = *e;
    lt->used++;
}

/* ---------------------------------------------------------------------------------------------
 * Choosing
 * ------------------------------------------------------------------------------------------- */

/* The largest power of two (at most 256) that divides the address p. */
static int ptr_align(const void *p) {
    uintptr_t a = (uintptr_t)p;
    int al = 1;
    while (al < 256 && !(a & (uintptr_t)al)) al <<= 1;
    return al;
}

/* The exact key of g. */
static lt_key_t key_of(const lt_gemm_t *g) {
    lt_key_t k;
    memset(&k, 0, sizeof k);
    int al = ptr_align(g->A), bl = ptr_align(g->B), dl = ptr_align(g->D);
    k.m = g->m, k.n = g->n, k.k = g->k, k.ta = g->ta, k.at = g->at, k.bt = g->bt, k.dt = g->dt, k.int8 = g->int8;
    k.align = al < bl ? (al < dl ? al : dl) : (bl < dl ? bl : dl);
    k.accumulate = g->beta != 0.0f;
    return k;
}

/* The power-of-two range key of an exact key. */
static lt_key_t range_of(lt_key_t k) {
    int lg = 0;
    while ((k.n >> (lg + 1)) > 0) lg++;
    k.n = lg;
    k.range = 1;
    return k;
}

/* The descriptors of g into e. Returns CUBLAS_STATUS_SUCCESS or the failing call's status. */
static cublasStatus_t make_descs(lt_entry_t *e, const lt_gemm_t *g) {
    cublasStatus_t s;
    cublasOperation_t opa = g->ta, opb = CUBLAS_OP_N;
    int a_rows = g->ta == CUBLAS_OP_N ? g->m : g->k, a_cols = g->ta == CUBLAS_OP_N ? g->k : g->m;
    if ((s = cublasLtMatmulDescCreate(&e->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F)) ||
        (s = cublasLtMatmulDescSetAttribute(e->desc, CUBLASLT_MATMUL_DESC_TRANSA, &opa, sizeof opa)) ||
        (s = cublasLtMatmulDescSetAttribute(e->desc, CUBLASLT_MATMUL_DESC_TRANSB, &opb, sizeof opb)) ||
        (s = cublasLtMatrixLayoutCreate(&e->la, g->at, (uint64_t)a_rows, (uint64_t)a_cols, g->lda)) ||
        (s = cublasLtMatrixLayoutCreate(&e->lb, g->bt, (uint64_t)g->k, (uint64_t)g->n, g->ldb)) ||
        (s = cublasLtMatrixLayoutCreate(&e->ld, g->dt, (uint64_t)g->m, (uint64_t)g->n, g->ldd)))
        return s;
    return CUBLAS_STATUS_SUCCESS;
}

/* Destroy e's descriptors (those created). */
static void free_descs(lt_entry_t *e) {
    if (e->desc) cublasLtMatmulDescDestroy(e->desc);
    if (e->la) cublasLtMatrixLayoutDestroy(e->la);
    if (e->lb) cublasLtMatrixLayoutDestroy(e->lb);
    if (e->ld) cublasLtMatrixLayoutDestroy(e->ld);
    e->desc = NULL, e->la = e->lb = e->ld = NULL;
}

/* Queue g on e's descriptors with algo. */
static cublasStatus_t run(lt_cache_t *lt, const lt_entry_t *e, const lt_gemm_t *g, const cublasLtMatmulAlgo_t *algo) {
    return cublasLtMatmul(lt->handle, e->desc, &g->alpha, g->A, e->la, g->B, e->lb, &g->beta, g->D, e->ld, g->D, e->ld,
                          algo, lt->ws, lt->ws_bytes, lt->stream);
}

/* Print a CUDA runtime failure while timing. Returns CUBLAS_STATUS_EXECUTION_FAILED. */
static cublasStatus_t timing_failed(const char *call, cudaError_t c) {
    fprintf(stderr, "lm-worker: cublasLt algorithm timing: %s failed: %s (%s)\n", call, cudaGetErrorString(c),
            cudaGetErrorName(c));
    return CUBLAS_STATUS_EXECUTION_FAILED;
}

/* Which of the n candidates (cublasLtMatmulAlgoGetHeuristic's results) is fastest on g's own
 * operands: each runs once untimed, then LT_REPS times between two events; *best is its index,
 * or -1 when none ran. ms[i] < 0 marks one that failed. Waits for the stream. */
static cublasStatus_t time_candidates(lt_cache_t *lt, const lt_entry_t *e, const lt_gemm_t *g,
                                      const cublasLtMatmulHeuristicResult_t *res, int n, float *ms, int *best) {
    int ok[LT_CANDIDATES];
    cudaError_t c;
    for (int i = 0; i < n; i++) ok[i] = res[i].state == CUBLAS_STATUS_SUCCESS && run(lt, e, g, &res[i].algo) == 0;
    if ((c = cudaEventRecord(lt->ev[0], lt->stream))) return timing_failed("cudaEventRecord", c);
    for (int i = 0; i < n; i++) {
        for (int r = 0; r < LT_REPS && ok[i]; r++) ok[i] = run(lt, e, g, &res[i].algo) == CUBLAS_STATUS_SUCCESS;
        if ((c = cudaEventRecord(lt->ev[i + 1], lt->stream))) return timing_failed("cudaEventRecord", c);
    }
    if ((c = cudaEventSynchronize(lt->ev[n]))) return timing_failed("cudaEventSynchronize", c);
    *best = -1;
    for (int i = 0; i < n; i++) {
        ms[i] = -1.0f;
        if (ok[i] && (c = cudaEventElapsedTime(&ms[i], lt->ev[i], lt->ev[i + 1])))
            return timing_failed("cudaEventElapsedTime", c);
        if (ok[i] && (*best < 0 || ms[i] < ms[*best])) *best = i;
    }
    return CUBLAS_STATUS_SUCCESS;
}

/* Name of a GEMM data type for debug lines. */
static const char *type_name(cudaDataType_t t) {
    return t == CUDA_R_16BF ? "bf16" : t == CUDA_R_16F ? "fp16" : t == CUDA_R_32F ? "fp32" : "?";
}

/* Choose the algorithm of e (exact key, descriptors made) for g: borrow the range's, or ask the
 * heuristic and time its top candidates. Sets e->state (LT_REFUSED when cublasLt has none);
 * *range_new is filled and returns 1 when the range has no entry yet. Returns a status only for a
 * runtime failure while timing. */
static cublasStatus_t choose(lt_cache_t *lt, lt_entry_t *e, const lt_gemm_t *g, lt_entry_t *range_new, int *add_range) {
    lt_key_t rk = range_of(e->key);
    const lt_entry_t *r = lt_find(lt, &rk);
    cublasLtMatmulHeuristicResult_t res[LT_CANDIDATES];
    *add_range = 0;
    if (r) {
        memset(&res[0], 0, sizeof res[0]);
        if (cublasLtMatmulAlgoCheck(lt->handle, e->desc, e->la, e->lb, e->ld, e->ld, &r->algo, &res[0]) == 0 &&
            res[0].workspaceSize <= lt->ws_bytes) {
            e->algo = r->algo;
            e->state = LT_BORROWED;
            lt->borrowed++;
            if (lt->debug)
                fprintf(stderr, "lm-worker: gemm %dx%dx%d: borrowed the algorithm of its n range [%d, %d)\n", g->m,
                        g->n, g->k, 1 << rk.n, 2 << rk.n);
            return CUBLAS_STATUS_SUCCESS;
        }
    }
    cublasLtMatmulPreference_t pref = NULL;
    uint64_t ws = lt->ws_bytes;
    uint32_t mask = CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE; // partial sums in fp32 ...
    if (g->dt == CUDA_R_32F) mask |= CUBLASLT_REDUCTION_SCHEME_INPLACE; // ... or in D when D is fp32
    uint32_t align = (uint32_t)e->key.align;
    int n = 0;
    cublasStatus_t s = cublasLtMatmulPreferenceCreate(&pref);
    if (!s) s = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws);
    if (!s)
        s = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK, &mask, sizeof mask);
    for (int a = CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES; !s && a <= CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES; a++)
        s = cublasLtMatmulPreferenceSetAttribute(pref, (cublasLtMatmulPreferenceAttributes_t)a, &align, sizeof align);
    if (!s)
        s = cublasLtMatmulAlgoGetHeuristic(lt->handle, e->desc, e->la, e->lb, e->ld, e->ld, pref, LT_CANDIDATES, res,
                                           &n);
    if (pref) cublasLtMatmulPreferenceDestroy(pref);
    float ms[LT_CANDIDATES];
    int best = n > 0 ? 0 : -1;
    if (!s && n > 1 && g->beta == 0.0f) {
        cublasStatus_t ts = time_candidates(lt, e, g, res, n, ms, &best);
        if (ts) return ts;
    }
    if (s || best < 0) {
        e->state = LT_REFUSED;
        lt->refused++;
        if (lt->debug)
            fprintf(stderr, "lm-worker: gemm %dx%dx%d %s x %s -> %s: cublasLt has no algorithm (%s); cublasGemmEx\n",
                    g->m, g->n, g->k, type_name(g->at), type_name(g->bt), type_name(g->dt),
                    s ? cublasGetStatusString(s) : "no heuristic result");
        return CUBLAS_STATUS_SUCCESS;
    }
    e->algo = res[best].algo;
    e->state = n > 1 && g->beta == 0.0f ? LT_TUNED : LT_HEURISTIC;
    lt->tuned += e->state == LT_TUNED;
    if (lt->debug) {
        char times[128] = "";
        for (int i = 0, at = 0; e->state == LT_TUNED && i < n && at < (int)sizeof times - 16; i++)
            at += snprintf(times + at, sizeof times - (size_t)at, " %.4g", (double)ms[i]);
        fprintf(stderr, "lm-worker: gemm %dx%dx%d %s x %s -> %s%s: %s %d heuristic algorithms%s%s ms; chose #%d\n",
                g->m, g->n, g->k, type_name(g->at), type_name(g->bt), type_name(g->dt), g->int8 ? " (int8)" : "",
                e->state == LT_TUNED ? "tuned" : "untimed,", n, e->state == LT_TUNED ? ", times" : "", times, best);
    }
    *range_new = (lt_entry_t){.key = rk, .state = e->state, .algo = e->algo};
    *add_range = r == NULL;
    return CUBLAS_STATUS_SUCCESS;
}

/* ---------------------------------------------------------------------------------------------
 * Public
 * ------------------------------------------------------------------------------------------- */

lt_cache_t *lt_cache_create(cudaStream_t stream, void *ws, size_t ws_bytes, int debug, cublasStatus_t *st) {
    lt_cache_t *lt = xcalloc(1, sizeof *lt);
    lt->stream = stream, lt->ws = ws, lt->ws_bytes = ws_bytes, lt->debug = debug;
    lt->cap = 64;
    lt->slots = xcalloc(lt->cap, sizeof *lt->slots);
    *st = cublasLtCreate(&lt->handle);
    for (int i = 0; !*st && i <= LT_CANDIDATES; i++)
        if (cudaEventCreate(&lt->ev[i]) != cudaSuccess) *st = CUBLAS_STATUS_INTERNAL_ERROR;
    if (*st) {
        lt_cache_destroy(lt);
        return NULL;
    }
    return lt;
}

void lt_cache_destroy(lt_cache_t *lt) {
    if (!lt) return;
    if (lt->debug)
        fprintf(stderr,
                "lm-worker: gemm algorithms: %ld keys timed, %ld borrowed, %ld refused; %ld GEMMs from the cache\n",
                lt->tuned, lt->borrowed, lt->refused, lt->hits);
    for (size_t i = 0; i < lt->cap; i++)
        if (lt->slots[i].state != LT_EMPTY) free_descs(&lt->slots[i]);
    for (int i = 0; i <= LT_CANDIDATES; i++)
        if (lt->ev[i]) cudaEventDestroy(lt->ev[i]);
    if (lt->handle) cublasLtDestroy(lt->handle);
    free(lt->slots);
    free(lt);
}

cublasStatus_t lt_gemm(lt_cache_t *lt, const lt_gemm_t *g) {
    lt_key_t k = key_of(g);
    lt_entry_t *e = lt_find(lt, &k);
    if (e) {
        if (e->state == LT_REFUSED) return CUBLAS_STATUS_NOT_SUPPORTED;
        lt->hits++;
        cublasStatus_t s = run(lt, e, g, &e->algo);
        if (s == CUBLAS_STATUS_NOT_SUPPORTED) e->state = LT_REFUSED; // from now on straight to cublasGemmEx
        return s;
    }
    lt_entry_t ne = {.key = k}, range;
    int add_range = 0;
    if (make_descs(&ne, g)) {
        ne.state = LT_REFUSED;
        lt->refused++;
    } else {
        cublasStatus_t s = choose(lt, &ne, g, &range, &add_range);
        if (s) {
            free_descs(&ne);
            return s;
        }
    }
    if (ne.state == LT_REFUSED) free_descs(&ne);
    if (add_range) lt_insert(lt, &range);
    lt_insert(lt, &ne);
    return ne.state == LT_REFUSED ? CUBLAS_STATUS_NOT_SUPPORTED : run(lt, &ne, g, &ne.algo);
}

