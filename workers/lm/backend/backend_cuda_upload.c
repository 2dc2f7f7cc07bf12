/* backend_cuda_upload.c: the CUDA backend's load path (vec_upload, weight_upload): host bytes ->
 * a ring of pinned buffers -> device, in the checkpoint's own dtype.
 *
 * A weight arrives as its checkpoint bytes (bf16, fp16, or fp32 for fp32 checkpoints and
 * LoRA-merged tensors). Each chunk of CHUNK bytes is copied into the next of RING pinned buffers
 * by COPY_THREADS threads (min(4, cores)), which also check every element is finite, then:
 *   - the dtype the backend stores: DMA'd straight into the weight (bf16 -> bf16, fp16 -> fp16,
 *     fp32 -> fp32);
 *   - another dtype: DMA'd into a device landing buffer of the same ring slot, and converted by
 *     upload_convert (kernels/upload.cu) into the weight;
 *   - --quant int8: chunks of whole rows DMA'd into the landing buffer and quantised per row by
 *     upload_quant_int8, which reproduces quant.c exactly.
 * So PCIe carries the checkpoint's bytes, the host only copies (no fp32 pass), and the copy of
 * one chunk overlaps the DMA and kernel of the previous ones. A ring slot is reused only after
 * its event, recorded behind the last DMA and kernel that read it, has completed.
 *
 * fp16 cannot hold |v| >= 65520; such a value is found by the kernel, which writes the first one
 * into a device check slot owned by the upload (CHK_SLOTS of them, pending until the next
 * sync()). cuda_sync collects them (cuda_upload_collect) and reports the first with the tensor's
 * name, row and column. Non-finite elements are found by the copy threads and fail the upload
 * at once. Vectors (norm weights, rope frequencies) are fp32 and take the same ring.
 *
 * It deliberately does not pin the caller's memory (cudaHostRegister of a multi-GB mapping costs
 * more than the copy), use several streams, or overlap uploads with compute.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "backend_cuda_impl.h"
#include "clock_util.h"
#include "cpu_pool.h"
#include "exit_codes.h"
#include "kernels.h"
#include "quant.h"
#include "weight_raw.h"

#define RING 4                         // pinned buffers (and landing buffers) used in turn
#define CHUNK ((size_t)16 << 20)       // bytes of one pinned buffer and one landing buffer
#define COPY_PIECE ((size_t)1 << 20)   // bytes one copy task moves (a multiple of every element size)
#define COPY_THREADS 4                 // at most; fewer on fewer cores
#define CHK_SLOTS 256                  // pending fp16 range checks before uploads collect them
#define NO_BAD (~0ull)                 // a check slot's value while nothing was found

struct cuda_upload {
    void *pinned[RING];              // (CHUNK) pinned host buffers, filled in turn
    void *landing[RING];             // (CHUNK) device buffers of chunks a kernel converts; NULL until needed
    cudaEvent_t done[RING];          // recorded after the last DMA / kernel reading pinned[i], landing[i]
    int next;                        // ring slot of the next chunk
    cpu_pool_t *pool;                // copy threads, the caller included
    unsigned long long *chk_dev;     // (CHK_SLOTS) device: per pending check, (index << 32 | fp32 bits) or NO_BAD
    unsigned long long chk_host[CHK_SLOTS]; // host copy of chk_dev, read by cuda_upload_collect
    char chk_name[CHK_SLOTS][160];   // tensor of each pending check
    int chk_cols[CHK_SLOTS];         // its columns, to name row and column
    int n_chk;                       // pending checks
};

/* The upload state of b, created on first use (pinned ring, events, threads). NULL with the
 * failure recorded. */
static cuda_upload_t *up_get(backend_t *b) {
    cuda_impl_t *im = impl_of(b);
    if (im->up) return im->up;
    cuda_upload_t *up = xcalloc(1, sizeof *up);
    im->up = up;
    int ncpu = cpu_pool_ncpus();
    if (!(up->pool = cpu_pool_create(ncpu < COPY_THREADS ? ncpu : COPY_THREADS))) {
        cuda_record(b, EXIT_SOFTWARE, "cuda backend: cannot start the upload copy threads");
        return NULL;
    }
    for (int i = 0; i < RING; i++)
        if (CK(b, cudaMallocHost(&up->pinned[i], CHUNK)) ||
            CK(b, cudaEventCreateWithFlags(&up->done[i], cudaEventDisableTiming)))
            return NULL;
    return up;
}

void cuda_upload_free(backend_t *b) {
    cuda_upload_t *up = impl_of(b)->up;
    if (!up) return;
    for (int i = 0; i < RING; i++) {
        if (up->pinned[i]) cudaFreeHost(up->pinned[i]);
        if (up->done[i]) cudaEventDestroy(up->done[i]);
        cuda_mem_free(b, up->landing[i]);
    }
    cuda_mem_free(b, up->chk_dev);
    cpu_pool_destroy(up->pool);
    free(up);
    impl_of(b)->up = NULL;
}

/* ---------------------------------------------------------------------------------------------
 * Device checks of the fp16 range
 * ------------------------------------------------------------------------------------------- */

int cuda_upload_collect(backend_t *b) {
    cuda_upload_t *up = impl_of(b)->up;
    if (!up || up->n_chk == 0) return 0;
    int n = up->n_chk, rc = 0;
    up->n_chk = 0;
    memset(up->chk_host, 0xff, (size_t)n * sizeof up->chk_host[0]); // stays NO_BAD where the device wrote nothing
    if (CK(b, cudaMemcpy(up->chk_host, up->chk_dev, (size_t)n * sizeof up->chk_host[0], cudaMemcpyDeviceToHost)))
        return -1;
    for (int i = 0; i < n && !rc; i++) {
        unsigned long long r = up->chk_host[i];
        if (r == NO_BAD) continue;
        size_t at = (size_t)(r >> 32), cols = (size_t)up->chk_cols[i];
        uint32_t bits = (uint32_t)r;
        float v;
        memcpy(&v, &bits, sizeof v);
        err_t e = {0};
        err_code(&e, EXIT_DATAERR,
                 "uploading '%s': fp16 weight: row %zu, column %zu holds %g, beyond fp16's range (largest finite value "
                 "65504): it would become infinity; use --dtype fp32 (or bf16 on sm_80+)",
                 up->chk_name[i], at / cols, at % cols, (double)v);
        rc = cuda_record(b, EXIT_DATAERR, e.msg);
    }
    return rc;
}

/* A device check slot for an upload of tensor `name` (cols columns), reset to NO_BAD on the
 * stream; when all are pending, the stream is drained and they are collected first. NULL with
 * the failure recorded. */
static unsigned long long *check_slot(backend_t *b, cuda_upload_t *up, const char *name, int cols) {
    cuda_impl_t *im = impl_of(b);
    if (!up->chk_dev && !(up->chk_dev = arena_alloc(b, CHK_SLOTS * sizeof(unsigned long long), 0, "upload checks")))
        return NULL;
    if (up->n_chk == CHK_SLOTS && (CK(b, cudaStreamSynchronize(im->stream)) || cuda_upload_collect(b))) return NULL;
    int k = up->n_chk++;
    snprintf(up->chk_name[k], sizeof up->chk_name[k], "%s", name);
    up->chk_cols[k] = cols;
    if (CK(b, cudaMemsetAsync(up->chk_dev + k, 0xff, sizeof(unsigned long long), im->stream))) return NULL;
    return up->chk_dev + k;
}

/* ---------------------------------------------------------------------------------------------
 * The ring
 * ------------------------------------------------------------------------------------------- */

/* One chunk's copy into pinned memory, split into COPY_PIECE tasks. */
typedef struct {
    void *dst;          // pinned buffer
    const char *src;    // the chunk's first byte in host memory
    size_t n;           // bytes
    dtype_t dt;         // element type (checked when check)
    int check;          // 1: find non-finite elements
    size_t first_bad[CHUNK / COPY_PIECE]; // per task: element index of its first non-finite, or SIZE_MAX
} copy_job_t;

/* cpu_pool task: copy (and check) piece `task` of the chunk. */
static void copy_task(void *ctx, int task, int thread) {
    (void)thread;
    copy_job_t *j = ctx;
    size_t at = (size_t)task * COPY_PIECE, n = j->n - at < COPY_PIECE ? j->n - at : COPY_PIECE;
    j->first_bad[task] = SIZE_MAX;
    if (!j->check) {
        memcpy((char *)j->dst + at, j->src + at, n);
        return;
    }
    size_t es = raw_elem_size(j->dt), cnt = n / es, i = raw_copy_checked((char *)j->dst + at, j->src + at, j->dt, cnt);
    if (i < cnt) j->first_bad[task] = at / es + i;
}

/* Queues what consumes one chunk, now in `pinned` (and, when the stream asked for it, with a
 * landing buffer to DMA it to): bytes [off, off + n) of the upload. Returns 0 or -1 (recorded). */
typedef int (*chunk_sink_fn)(backend_t *b, const void *pinned, void *landing, size_t off, size_t n, void *ctx);

/* Stream `bytes` of host memory (elements of dt) through the ring in chunks of whole `unit`s
 * (unit <= CHUNK), each handed to sink. With name, every element is checked to be finite and the
 * first that is not fails the upload, named as tensor `name` of `cols` columns. Returns 0, or -1
 * with the failure recorded. */
static int ring_stream(backend_t *b, const void *host, dtype_t dt, size_t bytes, size_t unit, int landing,
                       const char *name, int cols, chunk_sink_fn sink, void *ctx) {
    cuda_impl_t *im = impl_of(b);
    cuda_upload_t *up = up_get(b);
    if (!up) return -1;
    ASSERT(unit > 0 && unit <= CHUNK);
    size_t chunk = CHUNK / unit * unit, es = raw_elem_size(dt);
    copy_job_t job;
    for (size_t off = 0; off < bytes; off += chunk) {
        int k = up->next;
        up->next = (k + 1) % RING;
        size_t n = bytes - off < chunk ? bytes - off : chunk;
        if (landing && !up->landing[k] && !(up->landing[k] = arena_alloc(b, CHUNK, 0, "upload landing buffer")))
            return -1;
        if (CK(b, cudaEventSynchronize(up->done[k]))) return -1; // nothing queued still reads slot k
        job.dst = up->pinned[k];
        job.src = (const char *)host + off;
        job.n = n;
        job.dt = dt;
        job.check = name != NULL;
        int tasks = (int)((n + COPY_PIECE - 1) / COPY_PIECE);
        cpu_pool_run(up->pool, tasks, copy_task, &job);
        size_t bad = SIZE_MAX;
        for (int t = 0; t < tasks; t++)
            if (job.first_bad[t] < bad) bad = job.first_bad[t];
        if (bad != SIZE_MAX) {
            err_t e = {0};
            raw_nonfinite_error(&e, name, host, dt, off / es + bad, cols);
            return cuda_record(b, EXIT_DATAERR, e.msg);
        }
        if (sink(b, up->pinned[k], up->landing[k], off, n, ctx) || CK(b, cudaEventRecord(up->done[k], im->stream)))
            return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Sinks: what a chunk becomes on the device
 * ------------------------------------------------------------------------------------------- */

/* Where the chunks of one upload go. */
typedef struct {
    void *dst;                 // the weight's data (or the vector)
    float *scales;             // (rows) int8 scales, else NULL
    dtype_t src, out;          // element type of the host bytes and of dst
    int cols;                  // columns (int8: a chunk holds whole rows)
    unsigned long long *bad;   // device check slot, or NULL
} sink_ctx_t;

/* chunk_sink_fn: DMA straight into dst (the dtypes match). */
static int sink_copy(backend_t *b, const void *pinned, void *landing, size_t off, size_t n, void *ctx) {
    (void)landing;
    sink_ctx_t *s = ctx;
    return CK(b, cudaMemcpyAsync((char *)s->dst + off, pinned, n, cudaMemcpyHostToDevice, impl_of(b)->stream));
}

/* chunk_sink_fn: DMA into the landing buffer, convert into dst (kernels/upload.cu). */
static int sink_convert(backend_t *b, const void *pinned, void *landing, size_t off, size_t n, void *ctx) {
    sink_ctx_t *s = ctx;
    cudaStream_t st = impl_of(b)->stream;
    size_t first = off / dtype_size(s->src);
    return CK(b, cudaMemcpyAsync(landing, pinned, n, cudaMemcpyHostToDevice, st)) ||
           CK(b, upload_convert((char *)s->dst + first * dtype_size(s->out), (kdtype_t)s->out, landing,
                                (kdtype_t)s->src, n / dtype_size(s->src), first, s->bad, st));
}

/* chunk_sink_fn: DMA whole rows into the landing buffer, quantise them into dst and scales. */
static int sink_quant(backend_t *b, const void *pinned, void *landing, size_t off, size_t n, void *ctx) {
    sink_ctx_t *s = ctx;
    cudaStream_t st = impl_of(b)->stream;
    size_t row_bytes = (size_t)s->cols * dtype_size(s->src), r0 = off / row_bytes;
    return CK(b, cudaMemcpyAsync(landing, pinned, n, cudaMemcpyHostToDevice, st)) ||
           CK(b, upload_quant_int8((int8_t *)s->dst + r0 * s->cols, s->scales + r0, landing, (kdtype_t)s->src,
                                   (int)(n / row_bytes), s->cols, r0 * s->cols, s->bad, st));
}

/* ---------------------------------------------------------------------------------------------
 * The ops
 * ------------------------------------------------------------------------------------------- */

/* backend_ops_t.vec_upload: an fp32 vector in device memory, or NULL (failure recorded). */
void *cuda_vec_upload(backend_t *b, const float *host, size_t n) {
    void *p = arena_alloc(b, n * sizeof(float), 0, "vector");
    sink_ctx_t s = {.dst = p};
    if (p && ring_stream(b, host, DT_F32, n * sizeof(float), 1, 0, NULL, 0, sink_copy, &s)) {
        cuda_mem_free(b, p); // nobody else holds it: the caller only sees NULL
        return NULL;
    }
    return p;
}

/* backend_ops_t.weight_upload (backend.h): stored in the compute dtype, or as int8 + per-row
 * scales when quantising a matrix of QUANT_MIN_ROWS rows or more whose row fits a chunk. */
int cuda_weight_upload(backend_t *b, bweight_t *w, const void *host, dtype_t src, int rows, int cols,
                       const char *name) {
    cuda_impl_t *im = impl_of(b);
    ASSERT(src == DT_F32 || src == DT_BF16 || src == DT_F16);
    double t0 = clock_mono_s();
    size_t n = (size_t)rows * (size_t)cols, es = dtype_size(src);
    memset(w, 0, sizeof *w);
    w->rows = rows;
    w->cols = cols;
    cuda_upload_t *up = up_get(b);
    if (!up) return -1;
    sink_ctx_t s = {.src = src, .cols = cols};
    /* Only a value from a wider type can be beyond fp16's range. */
    if (b->compute == DT_F16 && src != DT_F16 && !(s.bad = check_slot(b, up, name, cols))) return -1;
    int rc;
    if (im->quant_int8 && rows >= QUANT_MIN_ROWS && (size_t)cols * es <= CHUNK) {
        w->dtype = s.out = DT_I8;
        if (!(w->data = s.dst = arena_alloc(b, n, 0, "int8 weight")) ||
            !(w->scales = s.scales = arena_alloc(b, (size_t)rows * sizeof(float), 0, "int8 scales")))
            return -1;
        rc = ring_stream(b, host, src, n * es, (size_t)cols * es, 1, name, cols, sink_quant, &s);
    } else {
        w->dtype = s.out = b->compute;
        if (!(w->data = s.dst = arena_alloc(b, n * dtype_size(b->compute), 0, "weight"))) return -1;
        int same = src == b->compute;
        rc = ring_stream(b, host, src, n * es, es, !same, name, cols, same ? sink_copy : sink_convert, &s);
    }
    if (rc) return -1;
    b->upload_bytes += (double)(n * es);
    b->upload_seconds += clock_mono_s() - t0;
    return 0;
}
