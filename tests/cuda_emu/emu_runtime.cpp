/* emu_runtime.cpp: cuda-emu's host side: the CUDA runtime and cuBLAS calls that lm-worker's CUDA
 * backend and test_kernels make, implemented on the CPU with the signatures of the real headers,
 * so that the same backend_cuda.c objects link against this instead of libcudart/libcublas.
 *
 * Device. One emulated device, configured by the environment (read once):
 *   CUDA_EMU_SM=75|80|86|89|90  compute capability (default 80); sets the shared-memory opt-in limit
 *   CUDA_EMU_MEM_MB=N           device memory in MiB (default 16384); cudaMalloc beyond it fails
 *                               with cudaErrorMemoryAllocation, as on a full GPU
 *   CUDA_EMU_DEVICES=0          report no device (cudaGetDeviceCount fails)
 *   CUDA_EMU_ORDER=S            how a block's warps are scheduled: warps (default), warps-reverse,
 *                               lockstep (emu_device.cpp, run_block)
 *   CUDA_EMU_POISON=0           do not fill fresh device and shared memory with 0xff bytes (NaN)
 *
 * Memory. cudaMalloc maps each block on its own, ending at a page boundary followed by a
 * PROT_NONE guard page, so a kernel reading or writing past the end faults (and emu_device.cpp
 * names the kernel). Fresh blocks are filled with 0xff bytes, so a kernel that reads memory no
 * one wrote sees NaN. cudaMallocHost blocks are remembered as pinned.
 *
 * Ordering. Kernel launches, async copies, memsets and GEMMs are queued and run in order only
 * when the host synchronises (stream/event/device synchronise, a synchronous cudaMemcpy, a copy
 * to pageable host memory, cudaFree), as CUDA allows. So host code that reads a result without
 * synchronising reads stale data, and host code that overwrites a pinned buffer while a queued
 * copy still reads it corrupts that copy, which tests then see. Async copies from pageable
 * memory snapshot the source at the call, as the driver's staging does.
 *
 * cuBLAS. cublasGemmEx in column-major with op N/T, fp32/bf16/fp16 operands, fp32 compute
 * (CUBLAS_COMPUTE_32F*): every element converted exactly to fp32, dot products summed in fp32,
 * the result rounded to C's type to nearest even. beta == 0 never reads C (NaN-safe, as cuBLAS).
 * cublasLt (emu_cublaslt.cpp) computes with the same gemm_enqueue.
 *
 * Events. A record is queued like any work; when the queue reaches it, it takes the monotonic
 * clock (never decreasing), so cudaEventElapsedTime between two records is the CPU time the
 * emulated work between them took. Events created with cudaEventDisableTiming refuse it.
 */
#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <time.h>

#include <deque>
#include <map>
#include <memory>
#include <vector>

#include "emu_internal.h"

namespace emu {

/* ---------------------------------------------------------------------------------------------
 * Settings, last error, queue
 * ------------------------------------------------------------------------------------------- */

/* The integer value of environment variable `name`, or dflt when unset or empty; aborts on junk. */
static long env_long(const char *name, long dflt) {
    const char *s = getenv(name);
    if (!s || !*s) return dflt;
    char *end;
    long v = strtol(s, &end, 10);
    if (*end) {
        fprintf(stderr, "cuda-emu: %s=%s is not an integer\n", name, s);
        abort();
    }
    return v;
}

/* The emulated device's settings, read from the environment on first use. */
const device_cfg_t &device_cfg() {
    static device_cfg_t c;
    static int done;
    if (!done) {
        c.sm = (int)env_long("CUDA_EMU_SM", 80);
        c.mem_bytes = (size_t)env_long("CUDA_EMU_MEM_MB", 16384) << 20;
        c.smem_optin = c.sm >= 90 ? 227u << 10 : c.sm >= 89 ? 99u << 10 : c.sm >= 86 ? 99u << 10
                     : c.sm >= 80 ? 163u << 10 : 64u << 10;
        c.dry = (int)env_long("CUDA_EMU_DRY", 0);
        const char *order = getenv("CUDA_EMU_ORDER");
        if (!order || !*order || !strcmp(order, "warps")) c.order = ORDER_WARPS;
        else if (!strcmp(order, "warps-reverse")) c.order = ORDER_WARPS_REVERSE;
        else if (!strcmp(order, "lockstep")) c.order = ORDER_LOCKSTEP;
        else {
            fprintf(stderr, "cuda-emu: CUDA_EMU_ORDER=%s: expected warps, warps-reverse or lockstep\n", order);
            abort();
        }
        c.poison = c.dry ? 0 : (int)env_long("CUDA_EMU_POISON", 1);
        const char *async = getenv("CUDA_EMU_ASYNC");
        if (!async || !*async || !strcmp(async, "late")) c.async_early = 0;
        else if (!strcmp(async, "early")) c.async_early = 1;
        else {
            fprintf(stderr, "cuda-emu: CUDA_EMU_ASYNC=%s: expected late or early\n", async);
            abort();
        }
        done = 1;
    }
    return c;
}

static cudaError_t g_last = cudaSuccess;
void set_last_error(cudaError_t e) {
    if (g_last == cudaSuccess) g_last = e;
}

typedef struct {
    uint64_t seq;
    std::function<void()> op;
} queued_t;
static std::deque<queued_t> g_queue;
static uint64_t g_next_seq = 1;

uint64_t queue_push(std::function<void()> op) {
    if (device_cfg().dry) op = [] {}; // keep the ordering bookkeeping, run nothing
    g_queue.push_back(queued_t{g_next_seq, std::move(op)});
    return g_next_seq++;
}
uint64_t queue_tail() { return g_next_seq - 1; }
void queue_flush(uint64_t upto) {
    while (!g_queue.empty() && g_queue.front().seq <= upto) {
        queued_t q = std::move(g_queue.front());
        g_queue.pop_front();
        q.op();
    }
}

static std::map<const void *, size_t> g_func_smem; // cudaFuncSetAttribute opt-ins
size_t func_dyn_smem_limit(const void *func) {
    auto it = g_func_smem.find(func);
    return it == g_func_smem.end() ? 48u << 10 : it->second;
}

cudaError_t enqueue_launch(dim3 grid, dim3 block, size_t smem, cudaStream_t stream, const void *func,
                           const char *name, kernel_body *body) {
    (void)stream;
    const unsigned long long threads = (unsigned long long)block.x * block.y * block.z;
    cudaError_t e = cudaSuccess;
    if (threads == 0 || threads > 1024 || block.x > 1024 || block.y > 1024 || block.z > 64 || grid.x == 0 ||
        grid.y == 0 || grid.z == 0 || grid.x > 2147483647u || grid.y > 65535u || grid.z > 65535u)
        e = cudaErrorInvalidConfiguration;
    else if (smem > func_dyn_smem_limit(func))
        e = cudaErrorInvalidValue; // as the driver reports a dynamic shared memory request over the limit
    if (e != cudaSuccess) {
        fprintf(stderr, "cuda-emu: launch of %s refused: grid (%u,%u,%u) block (%u,%u,%u) smem %zu: %s\n", name,
                grid.x, grid.y, grid.z, block.x, block.y, block.z, smem, cudaGetErrorName(e));
        delete body;
        set_last_error(e);
        return e;
    }
    if (device_cfg().dry) {
        delete body;
        return cudaSuccess;
    }
    queue_push([=]() {
        run_kernel(grid, block, smem, name, body);
        delete body;
    });
    return cudaSuccess;
}

/* ---------------------------------------------------------------------------------------------
 * Memory
 * ------------------------------------------------------------------------------------------- */

typedef struct {
    void *map;     // start of the mapping
    size_t maplen; // its length, the guard page included
    size_t bytes;  // bytes counted against the device
} dev_block_t;
static std::map<uintptr_t, dev_block_t> g_dev;   // by user pointer
static std::map<uintptr_t, size_t> g_pinned_len; // cudaMallocHost pointers and their lengths
static size_t g_dev_used;

/* 1 when [p, p+n) lies in one pinned allocation. */
static int is_pinned(const void *p, size_t n) {
    auto it = g_pinned_len.upper_bound((uintptr_t)p);
    if (it == g_pinned_len.begin()) return 0;
    --it;
    return (uintptr_t)p + n <= it->first + it->second;
}

} // namespace emu

using namespace emu;

extern "C" {

cudaError_t cudaMalloc(void **ptr, size_t size) {
    const size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t bytes = (size + 255) / 256 * 256;
    if (!ptr) return cudaErrorInvalidValue;
    *ptr = NULL;
    if (size > ((size_t)1 << 46) || g_dev_used + bytes > device_cfg().mem_bytes) {
        set_last_error(cudaErrorMemoryAllocation);
        return cudaErrorMemoryAllocation;
    }
    if (bytes == 0) bytes = 256;
    size_t data = (bytes + page - 1) / page * page;
    void *m = mmap(NULL, data + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED) {
        set_last_error(cudaErrorMemoryAllocation);
        return cudaErrorMemoryAllocation;
    }
    mprotect((char *)m + data, page, PROT_NONE);
    char *p = (char *)m + data - bytes; // the block ends at the guard page
    if (device_cfg().poison) memset(p, 0xff, bytes);
    g_dev[(uintptr_t)p] = dev_block_t{m, data + page, bytes};
    g_dev_used += bytes;
    *ptr = p;
    return cudaSuccess;
}

cudaError_t cudaFree(void *p) {
    if (!p) return cudaSuccess;
    queue_flush(); // cudaFree synchronises with the device
    auto it = g_dev.find((uintptr_t)p);
    if (it == g_dev.end()) {
        fprintf(stderr, "cuda-emu: cudaFree of %p, which cudaMalloc did not return (or a double free)\n", p);
        set_last_error(cudaErrorInvalidValue);
        return cudaErrorInvalidValue;
    }
    munmap(it->second.map, it->second.maplen);
    g_dev_used -= it->second.bytes;
    g_dev.erase(it);
    return cudaSuccess;
}

cudaError_t cudaMallocHost(void **ptr, size_t size) {
    *ptr = malloc(size ? size : 1);
    if (!*ptr) return cudaErrorMemoryAllocation;
    g_pinned_len[(uintptr_t)*ptr] = size;
    return cudaSuccess;
}

cudaError_t cudaFreeHost(void *p) {
    if (!p) return cudaSuccess;
    queue_flush();
    if (!g_pinned_len.erase((uintptr_t)p)) {
        fprintf(stderr, "cuda-emu: cudaFreeHost of %p, which cudaMallocHost did not return\n", p);
        return cudaErrorInvalidValue;
    }
    free(p);
    return cudaSuccess;
}

cudaError_t cudaMemGetInfo(size_t *free_b, size_t *total) {
    *total = device_cfg().mem_bytes;
    *free_b = *total - g_dev_used;
    return cudaSuccess;
}

cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t n, enum cudaMemcpyKind kind, cudaStream_t s) {
    (void)s;
    if (n == 0) return cudaSuccess;
    if (!dst || !src) return cudaErrorInvalidValue;
    if (kind == cudaMemcpyHostToDevice && !is_pinned(src, n) && !device_cfg().dry) {
        /* pageable source: the driver stages it before returning, so snapshot it now */
        std::vector<unsigned char> snap((const unsigned char *)src, (const unsigned char *)src + n);
        queue_push([=]() { memcpy(dst, snap.data(), n); });
        return cudaSuccess;
    }
    if (kind == cudaMemcpyDeviceToHost && !is_pinned(dst, n)) {
        /* pageable destination: the copy is synchronous */
        queue_flush();
        if (!device_cfg().dry) memcpy(dst, src, n);
        return cudaSuccess;
    }
    queue_push([=]() { memmove(dst, src, n); });
    return cudaSuccess;
}

cudaError_t cudaMemcpy(void *dst, const void *src, size_t n, enum cudaMemcpyKind kind) {
    queue_flush();
    cudaError_t e = cudaMemcpyAsync(dst, src, n, kind, 0);
    queue_flush();
    return e;
}

cudaError_t cudaMemsetAsync(void *p, int value, size_t n, cudaStream_t s) {
    (void)s;
    queue_push([=]() { memset(p, value, n); });
    return cudaSuccess;
}

cudaError_t cudaMemset(void *p, int value, size_t n) {
    cudaError_t e = cudaMemsetAsync(p, value, n, 0);
    queue_flush();
    return e;
}

/* ---------------------------------------------------------------------------------------------
 * Errors
 * ------------------------------------------------------------------------------------------- */

cudaError_t cudaGetLastError(void) {
    cudaError_t e = g_last;
    g_last = cudaSuccess;
    return e;
}

cudaError_t cudaPeekAtLastError(void) { return g_last; }

const char *cudaGetErrorName(cudaError_t e) {
    switch (e) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorNoDevice: return "cudaErrorNoDevice";
    case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
    case cudaErrorInvalidResourceHandle: return "cudaErrorInvalidResourceHandle";
    case cudaErrorNotReady: return "cudaErrorNotReady";
    default: return "cudaErrorUnknown";
    }
}

const char *cudaGetErrorString(cudaError_t e) {
    switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    case cudaErrorInvalidResourceHandle: return "invalid resource handle";
    case cudaErrorNotReady: return "device not ready";
    default: return "unknown error";
    }
}

/* ---------------------------------------------------------------------------------------------
 * Device, streams, events
 * ------------------------------------------------------------------------------------------- */

cudaError_t cudaGetDeviceCount(int *n) {
    *n = (int)env_long("CUDA_EMU_DEVICES", 1);
    return *n > 0 ? cudaSuccess : cudaErrorNoDevice;
}

cudaError_t cudaSetDevice(int d) { return d == 0 ? cudaSuccess : cudaErrorInvalidDevice; }

cudaError_t cudaGetDevice(int *d) {
    *d = 0;
    return cudaSuccess;
}

cudaError_t cudaGetDeviceProperties(struct cudaDeviceProp *p, int d) {
    if (d != 0) return cudaErrorInvalidDevice;
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "cuda-emu sm_%d (CPU emulation)", device_cfg().sm);
    p->major = device_cfg().sm / 10;
    p->minor = device_cfg().sm % 10;
    p->totalGlobalMem = device_cfg().mem_bytes;
    p->sharedMemPerBlock = 48u << 10;
    p->sharedMemPerBlockOptin = device_cfg().smem_optin;
    p->multiProcessorCount = 1;
    p->maxThreadsPerBlock = 1024;
    p->warpSize = 32;
    return cudaSuccess;
}

cudaError_t cudaDeviceGetAttribute(int *v, enum cudaDeviceAttr a, int d) {
    if (d != 0) return cudaErrorInvalidDevice;
    switch (a) {
    case cudaDevAttrComputeCapabilityMajor: *v = device_cfg().sm / 10; return cudaSuccess;
    case cudaDevAttrComputeCapabilityMinor: *v = device_cfg().sm % 10; return cudaSuccess;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin: *v = (int)device_cfg().smem_optin; return cudaSuccess;
    case cudaDevAttrMaxSharedMemoryPerBlock: *v = 48 << 10; return cudaSuccess;
    case cudaDevAttrMultiProcessorCount: *v = 1; return cudaSuccess;
    case cudaDevAttrMaxThreadsPerBlock: *v = 1024; return cudaSuccess;
    case cudaDevAttrWarpSize: *v = 32; return cudaSuccess;
    default: return cudaErrorInvalidValue;
    }
}

cudaError_t cudaDeviceSynchronize(void) {
    queue_flush();
    return cudaSuccess;
}

cudaError_t cudaFuncSetAttribute(const void *func, enum cudaFuncAttribute attr, int value) {
    if (attr != cudaFuncAttributeMaxDynamicSharedMemorySize) return cudaSuccess;
    if (value < 0 || (size_t)value > device_cfg().smem_optin) return cudaErrorInvalidValue;
    g_func_smem[func] = (size_t)value;
    return cudaSuccess;
}

static char g_stream_tag;
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned flags) {
    (void)flags;
    *s = (cudaStream_t)&g_stream_tag;
    return cudaSuccess;
}
cudaError_t cudaStreamCreate(cudaStream_t *s) { return cudaStreamCreateWithFlags(s, 0); }
cudaError_t cudaStreamDestroy(cudaStream_t s) {
    (void)s;
    queue_flush();
    return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t s) {
    (void)s;
    queue_flush();
    return cudaSuccess;
}

/* An event: the queue position of its last record and, once the queue has run that far, the
 * (monotonic, never decreasing) time it was reached. The state is shared with the queued stamp,
 * so destroying an event whose record is still queued is safe, as in CUDA. */
typedef struct {
    uint64_t seq;     // the queue position recorded; 0: nothing recorded yet
    uint64_t records; // how many times it was recorded (a stale stamp must not land)
    double ms;        // the time the queue reached the record, valid when done
    int done;         // the record has been reached
    unsigned flags;   // cudaEventCreateWithFlags' flags
} emu_event_state_t;
typedef struct {
    std::shared_ptr<emu_event_state_t> st;
} emu_event_t;

/* Milliseconds on the monotonic clock, never less than the previous value returned. */
static double stamp_ms() {
    static double last;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    double t = ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
    if (t < last) t = last;
    return last = t;
}

static emu_event_state_t *event_of(cudaEvent_t e) { return ((emu_event_t *)(void *)e)->st.get(); }

cudaError_t cudaEventCreateWithFlags(cudaEvent_t *e, unsigned flags) {
    emu_event_t *ev = new emu_event_t{std::make_shared<emu_event_state_t>()};
    ev->st->flags = flags;
    *e = (cudaEvent_t)(void *)ev;
    return cudaSuccess;
}
cudaError_t cudaEventCreate(cudaEvent_t *e) { return cudaEventCreateWithFlags(e, 0); }
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s) {
    (void)s;
    std::shared_ptr<emu_event_state_t> st = ((emu_event_t *)(void *)e)->st;
    uint64_t rec = ++st->records;
    st->done = 0;
    if (device_cfg().dry) { // nothing runs: the record is reached now
        st->seq = queue_tail();
        st->ms = stamp_ms();
        st->done = 1;
        return cudaSuccess;
    }
    st->seq = queue_push([st, rec]() {
        if (st->records != rec) return; // recorded again since: that record's stamp counts
        st->ms = stamp_ms();
        st->done = 1;
    });
    return cudaSuccess;
}
cudaError_t cudaEventSynchronize(cudaEvent_t e) {
    queue_flush(event_of(e)->seq); // only the work queued before the record (and the record)
    return cudaSuccess;
}
cudaError_t cudaEventQuery(cudaEvent_t e) {
    emu_event_state_t *st = event_of(e);
    return !st->records || st->done ? cudaSuccess : cudaErrorNotReady;
}
cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t start, cudaEvent_t end) {
    emu_event_state_t *a = event_of(start), *b = event_of(end);
    if (!ms) return cudaErrorInvalidValue;
    if ((a->flags | b->flags) & cudaEventDisableTiming || !a->records || !b->records) {
        set_last_error(cudaErrorInvalidResourceHandle);
        return cudaErrorInvalidResourceHandle;
    }
    if (!a->done || !b->done) return cudaErrorNotReady;
    *ms = (float)(b->ms - a->ms);
    return cudaSuccess;
}
cudaError_t cudaEventDestroy(cudaEvent_t e) {
    delete (emu_event_t *)(void *)e;
    return cudaSuccess;
}

/* ---------------------------------------------------------------------------------------------
 * cuBLAS
 * ------------------------------------------------------------------------------------------- */

typedef struct {
    void *workspace;
    size_t ws_bytes;
} emu_blas_t;

cublasStatus_t cublasCreate_v2(cublasHandle_t *h) {
    *h = (cublasHandle_t)(void *)new emu_blas_t{NULL, 0};
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasDestroy_v2(cublasHandle_t h) {
    queue_flush();
    delete (emu_blas_t *)(void *)h;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetStream_v2(cublasHandle_t h, cudaStream_t s) {
    (void)h, (void)s;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetMathMode(cublasHandle_t h, cublasMath_t m) {
    (void)h, (void)m;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetWorkspace_v2(cublasHandle_t h, void *ws, size_t bytes) {
    emu_blas_t *b = (emu_blas_t *)(void *)h;
    b->workspace = ws;
    b->ws_bytes = bytes;
    return CUBLAS_STATUS_SUCCESS;
}
const char *cublasGetStatusString(cublasStatus_t s) {
    switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
    default: return "CUBLAS_STATUS_UNKNOWN";
    }
}

} // extern "C"

/* Element i of a matrix of type t, exactly as fp32. */
static float load_elem(const void *p, size_t i, cudaDataType t) {
    switch (t) {
    case CUDA_R_32F: return ((const float *)p)[i];
    case CUDA_R_16BF: return __bfloat162float(((const __nv_bfloat16 *)p)[i]);
    case CUDA_R_16F: return __half2float(((const __half *)p)[i]);
    default: abort();
    }
}

/* Store v at element i, rounded to t (nearest even). */
static void store_elem(void *p, size_t i, cudaDataType t, float v) {
    switch (t) {
    case CUDA_R_32F: ((float *)p)[i] = v; break;
    case CUDA_R_16BF: ((__nv_bfloat16 *)p)[i] = __float2bfloat16_rn(v); break;
    case CUDA_R_16F: ((__half *)p)[i] = __float2half_rn(v); break;
    default: abort();
    }
}

/* D = alpha * op(A) op(B) + beta * C, queued (emu_internal.h). */
cublasStatus_t emu::gemm_enqueue(cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, float al,
                                 const void *A, cudaDataType At, int lda, const void *B, cudaDataType Bt, int ldb,
                                 float be, const void *C, cudaDataType Ct, int ldc, void *D, cudaDataType Dt, int ldd) {
    auto ok_type = [](cudaDataType t) { return t == CUDA_R_32F || t == CUDA_R_16BF || t == CUDA_R_16F; };
    if (m < 0 || n < 0 || k < 0 || (ta != CUBLAS_OP_N && ta != CUBLAS_OP_T) || (tb != CUBLAS_OP_N && tb != CUBLAS_OP_T))
        return CUBLAS_STATUS_INVALID_VALUE;
    if (lda < (ta == CUBLAS_OP_N ? (m > 1 ? m : 1) : (k > 1 ? k : 1)) ||
        ldb < (tb == CUBLAS_OP_N ? (k > 1 ? k : 1) : (n > 1 ? n : 1)) || ldc < (m > 1 ? m : 1) ||
        ldd < (m > 1 ? m : 1))
        return CUBLAS_STATUS_INVALID_VALUE;
    if (!ok_type(At) || !ok_type(Bt) || !ok_type(Ct) || !ok_type(Dt) || At != Bt) return CUBLAS_STATUS_NOT_SUPPORTED;
    queue_push([=]() {
        /* op(A) as rows of k (m of them), op(B) as columns of k (n of them), both fp32 */
        std::vector<float> a((size_t)m * k), b((size_t)n * k);
        for (int i = 0; i < m; i++)
            for (int l = 0; l < k; l++)
                a[(size_t)i * k + l] = load_elem(A, ta == CUBLAS_OP_N ? i + (size_t)l * lda : l + (size_t)i * lda, At);
        for (int j = 0; j < n; j++)
            for (int l = 0; l < k; l++)
                b[(size_t)j * k + l] = load_elem(B, tb == CUBLAS_OP_N ? l + (size_t)j * ldb : j + (size_t)l * ldb, Bt);
        for (int j = 0; j < n; j++)
            for (int i = 0; i < m; i++) {
                const float *ar = &a[(size_t)i * k], *bc = &b[(size_t)j * k];
                float acc = 0.0f;
                for (int l = 0; l < k; l++) acc += ar[l] * bc[l];
                float v = al * acc;
                if (be != 0.0f) v += be * load_elem(C, i + (size_t)j * ldc, Ct);
                store_elem(D, i + (size_t)j * ldd, Dt, v);
            }
    });
    return CUBLAS_STATUS_SUCCESS;
}

extern "C" cublasStatus_t cublasGemmEx(cublasHandle_t handle, cublasOperation_t ta, cublasOperation_t tb, int m,
                                       int n, int k, const void *alpha, const void *A, cudaDataType At, int lda,
                                       const void *B, cudaDataType Bt, int ldb, const void *beta, void *C,
                                       cudaDataType Ct, int ldc, cublasComputeType_t compute, cublasGemmAlgo_t algo) {
    (void)handle, (void)algo;
    if (compute != CUBLAS_COMPUTE_32F && compute != CUBLAS_COMPUTE_32F_PEDANTIC &&
        compute != CUBLAS_COMPUTE_32F_FAST_16F && compute != CUBLAS_COMPUTE_32F_FAST_16BF &&
        compute != CUBLAS_COMPUTE_32F_FAST_TF32)
        return CUBLAS_STATUS_NOT_SUPPORTED;
    const float al = *(const float *)alpha, be = *(const float *)beta; // host pointer mode, fp32 compute
    return gemm_enqueue(ta, tb, m, n, k, al, A, At, lda, B, Bt, ldb, be, C, Ct, ldc, C, Ct, ldc);
}
