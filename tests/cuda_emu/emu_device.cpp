/* emu_device.cpp: cuda-emu's block runner: every CUDA thread of a block is a fiber (its own
 * stack, switched by a hand-written register switch on x86-64, by ucontext elsewhere or with
 * -DEMU_UCONTEXT; see emu_ctx_switch below), and a small scheduler runs them until each one finishes, switching only where CUDA threads
 * must meet: __syncthreads (the block), and warp collectives (__shfl*_sync, __syncwarp,
 * mma.sync). A collective completes when every lane of its mask has arrived at it; the scheduler
 * then computes every lane's result at once, so a collective costs one switch per lane.
 * ldmatrix is such a collective; cp.async is per thread: each thread queues its copies by
 * commit group, and they land in shared memory only when its cp.async.wait_group retires the
 * group (the latest a GPU may complete them), so a missing or too-weak wait reads stale shared
 * memory (0xff, NaN, when fresh); with CUDA_EMU_ASYNC=early they land at issue instead (the
 * earliest), so a copy into a buffer other warps still read, with no barrier between, corrupts it.
 *
 * It reports, and aborts on, what would be undefined or a hang on a GPU: lanes of one warp
 * waiting at different collectives, a collective whose mask names a lane that has exited, a
 * shuffle from a lane outside the mask, a block whose live threads can never all meet (deadlock),
 * and a segfault inside a kernel (with the kernel, block and thread named). Blocks run one after
 * another, in blockIdx order (x fastest), on the calling OS thread; within a block, the schedule
 * of run_block (CUDA_EMU_ORDER) decides how far warps drift apart.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include <deque>
#include <vector>

#include "emu_internal.h"

namespace emu {

#define STACK_BYTES ((size_t)256 << 10) // per fiber, with a guard page below it
#define MAX_THREADS 1024

enum { F_RUN, F_BLOCK, F_WARP, F_DONE };           // fiber states
enum { W_SHFL = 1, W_SYNCWARP, W_MMA16_BF16, W_MMA16_F16, W_MMA8_F16, W_LDMATRIX }; // warp collectives

/* One cp.async, queued until a cp.async.wait_group retires its group. */
typedef struct {
    unsigned char *dst;       // shared memory
    const unsigned char *src; // global memory
    int bytes, src_bytes;     // copy src_bytes, zero-fill up to bytes
} async_copy_t;

 /* Context switch. On x86-64 a hand-written switch of the callee-saved registers (no system
 * call: glibc's swapcontext saves the signal mask with one, which made the emulator spend most
 * of its time in the kernel); elsewhere, or with -DEMU_UCONTEXT, ucontext. */
#if defined(__x86_64__) && !defined(EMU_UCONTEXT)
#define EMU_ASM_SWITCH 1
#endif
#if EMU_ASM_SWITCH
extern "C" void emu_ctx_switch(void **save_sp, void *load_sp);
__asm__(".text\n"
        ".globl emu_ctx_switch\n"
        ".type emu_ctx_switch,@function\n"
        "emu_ctx_switch:\n"
        "  pushq %rbp\n  pushq %rbx\n  pushq %r12\n  pushq %r13\n  pushq %r14\n  pushq %r15\n"
        "  subq $8, %rsp\n  stmxcsr (%rsp)\n  fnstcw 4(%rsp)\n"
        "  movq %rsp, (%rdi)\n"
        "  movq %rsi, %rsp\n"
        "  ldmxcsr (%rsp)\n  fldcw 4(%rsp)\n  addq $8, %rsp\n"
        "  popq %r15\n  popq %r14\n  popq %r13\n  popq %r12\n  popq %rbx\n  popq %rbp\n"
        "  ret\n"
        ".size emu_ctx_switch, .-emu_ctx_switch\n");
typedef struct {
    void *sp; // saved stack pointer
} ctx_t;
#else
typedef struct {
    ucontext_t uc;
} ctx_t;
#endif

typedef struct {
    ctx_t ctx;
    char *stack;      // (STACK_BYTES) usable stack; a PROT_NONE page sits below it
    int state;        // F_*
    int wop;          // the warp collective it waits at (F_WARP)
    unsigned mask;    // that collective's lane mask
    int src;          // shuffle: source lane asked for (index or xor mask)
    int width, xor_mode;
    uint64_t bits;    // shuffle: value offered; after release, value received
    uint32_t a[4], b[2]; // mma fragments offered
    float *c;         // mma accumulators (the lane's own registers), updated at release
    const unsigned char *ldm_row; // ldmatrix: this lane's row address
    int ldm_num, ldm_trans;       // ldmatrix: matrices (1, 2, 4), .trans
    uint32_t *ldm_d;              // ldmatrix: the lane's destination registers, filled at release
    std::vector<async_copy_t> cp_open;             // cp.async issued, not yet committed
    std::deque<std::vector<async_copy_t>> cp_groups; // committed groups, oldest first
    uint3 tid;
} fiber_t;

static struct {
    std::vector<fiber_t> f; // (n) the block's threads, in linear thread order
    int n;
    fiber_t *cur;
    ctx_t sched;
#if !EMU_ASM_SWITCH
    ucontext_t proto;
    int proto_ok;
#endif
    dim3 grid, block;
    uint3 bidx;
    kernel_body *body;
    const char *name;
    std::vector<unsigned char> smem;
    unsigned char *smem_aligned;
    size_t smem_bytes; // usable bytes at smem_aligned (the launch's dynamic shared memory)
    int in_kernel;
} S;

const uint3 &thread_idx() { return S.cur->tid; }
const uint3 &block_idx() { return S.bidx; }
const dim3 &block_dim() { return S.block; }
const dim3 &grid_dim() { return S.grid; }
void *dyn_smem() { return S.smem_aligned; }
int sm() { return device_cfg().sm; }

/* Print where the running fiber is and abort. */
[[noreturn]] static void fail(const char *fmt, const char *what) {
    fprintf(stderr, "cuda-emu: ");
    fprintf(stderr, fmt, what);
    if (S.in_kernel && S.cur)
        fprintf(stderr, " (kernel %s, block (%u,%u,%u), thread (%u,%u,%u))", S.name, S.bidx.x, S.bidx.y, S.bidx.z,
                S.cur->tid.x, S.cur->tid.y, S.cur->tid.z);
    fprintf(stderr, "\n");
    abort();
}

[[noreturn]] void trap(const char *why) { fail("%s", why); }

/* SIGSEGV/SIGBUS inside a kernel: name the kernel, block and thread (async-signal-safe writes
 * only), then die of the signal as the default action would. */
static void segv_handler(int sig) {
    static const char msg[] = "cuda-emu: segmentation fault inside a kernel: an out-of-bounds device or shared "
                              "memory access, or a host pointer used on the device\n";
    if (S.in_kernel) {
        (void)!write(2, msg, sizeof msg - 1);
        char buf[256];
        int n = snprintf(buf, sizeof buf, "cuda-emu: kernel %s, block (%u,%u,%u), thread (%u,%u,%u)\n", S.name,
                         S.bidx.x, S.bidx.y, S.bidx.z, S.cur ? S.cur->tid.x : 0, S.cur ? S.cur->tid.y : 0,
                         S.cur ? S.cur->tid.z : 0);
        if (n > 0) (void)!write(2, buf, (size_t)n);
    }
    signal(sig, SIG_DFL);
    raise(sig);
}

/* Install the SIGSEGV/SIGBUS reporter on an alternate stack (fiber stacks may be the culprit). */
static void install_segv_handler() {
    static int done;
    if (done) return;
    done = 1;
    static char altstack[64 << 10];
    stack_t ss = {};
    ss.ss_sp = altstack;
    ss.ss_size = sizeof altstack;
    sigaltstack(&ss, NULL);
    struct sigaction sa = {};
    sa.sa_handler = segv_handler;
    sa.sa_flags = SA_ONSTACK;
    sigaction(SIGSEGV, &sa, NULL);
    sigaction(SIGBUS, &sa, NULL);
}

/* Switch from context `from` (saved) to `to`. */
static void ctx_swap(ctx_t *from, ctx_t *to) {
#if EMU_ASM_SWITCH
    emu_ctx_switch(&from->sp, to->sp);
#else
    swapcontext(&from->uc, &to->uc);
#endif
}

/* Give control back to the scheduler; returns when this fiber is resumed. */
static void yield() { ctx_swap(&S.cur->ctx, &S.sched); }

/* A fiber's first frame: run the kernel body, then hand back for good. */
static void fiber_main() {
    S.body->run();
    S.cur->state = F_DONE;
    ctx_swap(&S.cur->ctx, &S.sched); // never resumed
    abort();
}

/* Make f's context start fiber_main on its own stack when first switched to. */
static void ctx_start(fiber_t *f) {
#if EMU_ASM_SWITCH
    /* The frame emu_ctx_switch pops: mxcsr/fpu cw, r15, r14, r13, r12, rbx, rbp, then the
     * return address (fiber_main), which sits 16-byte aligned so that fiber_main starts with
     * the stack alignment of a call. */
    uintptr_t top = ((uintptr_t)f->stack + STACK_BYTES) & ~(uintptr_t)15;
    uint64_t *sp = (uint64_t *)(top - 16);         // fake return address slot of fiber_main, 0
    sp[0] = (uint64_t)(uintptr_t)fiber_main;       // at top - 16: 16-byte aligned
    sp[1] = 0;
    sp -= 7;                                       // rbp rbx r12 r13 r14 r15 (zero) + control word
    memset(sp, 0, 7 * sizeof *sp);
    uint32_t csr[2];
    __asm__ volatile("stmxcsr %0" : "=m"(csr[0]));
    __asm__ volatile("fnstcw %0" : "=m"(csr[1]));
    memcpy(sp, csr, 8);
    f->ctx.sp = sp;
#else
    if (!S.proto_ok) {
        getcontext(&S.proto);
        S.proto_ok = 1;
    }
    f->ctx.uc = S.proto;
    f->ctx.uc.uc_stack.ss_sp = f->stack;
    f->ctx.uc.uc_stack.ss_size = STACK_BYTES;
    f->ctx.uc.uc_link = NULL;
    makecontext(&f->ctx.uc, fiber_main, 0);
#endif
}

void syncthreads() {
    S.cur->state = F_BLOCK;
    yield();
}

/* Wait at warp collective `op` with `mask`; the scheduler fills in the result. */
static void warp_wait(int op, unsigned mask) {
    S.cur->state = F_WARP;
    S.cur->wop = op;
    S.cur->mask = mask;
    yield();
}

void syncwarp(unsigned mask) { warp_wait(W_SYNCWARP, mask); }

uint64_t shfl_bits(unsigned mask, uint64_t bits, int src, int width, int xor_mode) {
    if (width <= 0 || width > 32 || (width & (width - 1))) fail("%s", "shuffle width is not a power of 2 <= 32");
    S.cur->bits = bits;
    S.cur->src = src;
    S.cur->width = width;
    S.cur->xor_mode = xor_mode;
    warp_wait(W_SHFL, mask);
    return S.cur->bits;
}

void mma_m16n8k16(float c[4], const uint32_t a[4], const uint32_t b[2], int is_bf16) {
    if (is_bf16 && sm() < 80) fail("%s", "mma.m16n8k16 .bf16 needs sm_80 or newer");
    if (!is_bf16 && sm() < 80) fail("%s", "mma.m16n8k16 .f16 needs sm_80 or newer (sm_75 has m16n8k8)");
    memcpy(S.cur->a, a, 4 * sizeof *a);
    memcpy(S.cur->b, b, 2 * sizeof *b);
    S.cur->c = c;
    warp_wait(is_bf16 ? W_MMA16_BF16 : W_MMA16_F16, 0xffffffffu);
}

void mma_m16n8k8_f16(float c[4], const uint32_t a[2], uint32_t b) {
    if (sm() < 75) fail("%s", "mma.m16n8k8 needs sm_75 or newer");
    S.cur->a[0] = a[0];
    S.cur->a[1] = a[1];
    S.cur->b[0] = b;
    S.cur->c = c;
    warp_wait(W_MMA8_F16, 0xffffffffu);
}

/* 1 when [p, p + n) lies inside the block's dynamic shared memory. */
static int in_smem(const void *p, size_t n) {
    const unsigned char *b = S.smem_aligned, *q = (const unsigned char *)p;
    return b && q >= b && q + n <= b + S.smem_bytes;
}

void ldmatrix(uint32_t *d, int num, int trans, const void *row) {
    if (sm() < 75) fail("%s", "ldmatrix needs sm_75 or newer");
    if (num != 1 && num != 2 && num != 4) fail("%s", "ldmatrix: .num must be .x1, .x2 or .x4");
    const int lane = (int)((S.cur - &S.f[0]) & 31);
    if (lane < 8 * num) { // the lanes whose row address the instruction uses
        if ((uintptr_t)row & 15u) fail("%s", "ldmatrix: a row address is not 16-byte aligned");
        if (!in_smem(row, 16)) fail("%s", "ldmatrix: a row address is outside the block's shared memory");
    }
    S.cur->ldm_row = (const unsigned char *)row;
    S.cur->ldm_num = num;
    S.cur->ldm_trans = trans;
    S.cur->ldm_d = d;
    warp_wait(W_LDMATRIX, 0xffffffffu);
}

/* Complete an ldmatrix over the 32 lanes at w. PTX ISA ("Warp-level matrix load instruction:
 * ldmatrix"): lane 8*i + r gives the address of row r of 8x8 matrix i (eight 16-bit elements,
 * 16 bytes); lane T receives in d[i] the elements (T/4, 2*(T%4)) and (T/4, 2*(T%4)+1) of matrix
 * i, the lower column in the low half; with .trans those of the transpose, i.e. the elements
 * (2*(T%4), T/4) and (2*(T%4)+1, T/4) of the matrix as stored. */
static void ldmatrix_complete(fiber_t *w) {
    const int num = w[0].ldm_num, trans = w[0].ldm_trans;
    for (int l = 1; l < 32; l++)
        if (w[l].ldm_num != num || w[l].ldm_trans != trans)
            fail("%s", "lanes of one warp run ldmatrix with different .num or .trans");
    uint16_t m[4][8][8];
    for (int i = 0; i < num; i++)
        for (int r = 0; r < 8; r++) memcpy(m[i][r], w[8 * i + r].ldm_row, 16);
    for (int l = 0; l < 32; l++) {
        const int g = l >> 2, c = 2 * (l & 3);
        for (int i = 0; i < num; i++) {
            const uint32_t lo = trans ? m[i][c][g] : m[i][g][c], hi = trans ? m[i][c + 1][g] : m[i][g][c + 1];
            w[l].ldm_d[i] = lo | hi << 16;
        }
    }
}

/* Perform one cp.async: src_bytes from src, zeros up to bytes. */
static void copy_now(const async_copy_t &c) {
    memcpy(c.dst, c.src, (size_t)c.src_bytes);
    memset(c.dst + c.src_bytes, 0, (size_t)(c.bytes - c.src_bytes));
}

void cp_async(void *dst, const void *src, int bytes, int src_bytes, int cg) {
    if (sm() < 80) fail("%s", "cp.async needs sm_80 or newer");
    if (bytes != 4 && bytes != 8 && bytes != 16) fail("%s", "cp.async: cp-size must be 4, 8 or 16");
    if (cg && bytes != 16) fail("%s", "cp.async.cg: cp-size must be 16");
    if (src_bytes < 0 || src_bytes > bytes) fail("%s", "cp.async: src-size outside [0, cp-size]");
    if ((uintptr_t)dst % (unsigned)bytes || (uintptr_t)src % (unsigned)bytes)
        fail("%s", "cp.async: an address is not aligned to cp-size");
    if (!in_smem(dst, (size_t)bytes)) fail("%s", "cp.async: destination outside the block's shared memory");
    if (in_smem(src, 1)) fail("%s", "cp.async: source in shared memory (it must be global)");
    const async_copy_t c = {(unsigned char *)dst, (const unsigned char *)src, bytes, src_bytes};
    if (device_cfg().async_early) copy_now(c); // the earliest a GPU may complete it
    else S.cur->cp_open.push_back(c);          // the latest: at the wait_group that retires it
}

void cp_async_commit() {
    S.cur->cp_groups.push_back(std::move(S.cur->cp_open));
    S.cur->cp_open.clear();
}

void cp_async_wait(int n) {
    if (sm() < 80) fail("%s", "cp.async.wait_group needs sm_80 or newer");
    std::deque<std::vector<async_copy_t>> &q = S.cur->cp_groups;
    while ((int)q.size() > n) {
        for (const async_copy_t &c : q.front()) copy_now(c);
        q.pop_front();
    }
}

/* The 16-bit element `half` (0 low, 1 high) of register r as fp32. */
static float elem(uint32_t r, int half, int is_bf16) {
    uint16_t v = (uint16_t)(half ? r >> 16 : r & 0xffffu);
    if (is_bf16) {
        uint32_t u = (uint32_t)v << 16;
        float f;
        memcpy(&f, &u, sizeof f);
        return f;
    }
    __half_raw raw;
    raw.x = v;
    return __half2float(__half(raw));
}

/* Complete an mma over the 32 lanes at w (all waiting at op). PTX ISA fragment layouts, with
 * g = lane >> 2 and t = lane & 3, two 16-bit elements per .b32 register (lower index low):
 *   m16n8k16 A (16x16): a0 (g, 2t..) a1 (g+8, 2t..) a2 (g, 2t+8..) a3 (g+8, 2t+8..)
 *            B (16x8):  b0 (k = 2t.., n = g)  b1 (k = 2t+8.., n = g)
 *   m16n8k8  A (16x8):  a0 (g, 2t..) a1 (g+8, 2t..);  B (8x8): b0 (k = 2t.., n = g)
 *   C (16x8, fp32, both): c0,c1 (g, 2t..) c2,c3 (g+8, 2t..)
 * Products are exact in fp32; sums run in k order in fp32. */
static void mma_complete(fiber_t *w, int op) {
    const int K = op == W_MMA8_F16 ? 8 : 16, bf = op == W_MMA16_BF16;
    float A[16][16], B[16][8];
    for (int r = 0; r < 16; r++)
        for (int k = 0; k < K; k++) {
            int lane = (r & 7) * 4 + (k & 7) / 2, reg = (r >= 8) + (k >= 8 ? 2 : 0);
            A[r][k] = elem(w[lane].a[reg], k & 1, bf);
        }
    for (int k = 0; k < K; k++)
        for (int n = 0; n < 8; n++) {
            int lane = n * 4 + (k & 7) / 2, reg = k >= 8;
            B[k][n] = elem(w[lane].b[reg], k & 1, bf);
        }
    for (int lane = 0; lane < 32; lane++) {
        int g = lane >> 2, t = lane & 3;
        for (int e = 0; e < 4; e++) {
            int r = g + (e >= 2 ? 8 : 0), n = 2 * t + (e & 1);
            float acc = 0.0f;
            for (int k = 0; k < K; k++) acc += A[r][k] * B[k][n];
            w[lane].c[e] += acc;
        }
    }
}

/* Try to complete the collective the warp starting at thread w0 waits at; 1 when released. */
static int release_warp(int w0) {
    fiber_t *w = &S.f[w0];
    const int nl = S.n - w0 < 32 ? S.n - w0 : 32;
    int first = -1;
    for (int l = 0; l < nl; l++)
        if (w[l].state == F_WARP) {
            first = l;
            break;
        }
    if (first < 0) return 0;
    const unsigned mask = w[first].mask;
    const int op = w[first].wop;
    int ready = 1;
    for (int l = 0; l < nl; l++) {
        if (!(mask >> l & 1u)) continue;
        if (w[l].state == F_DONE) fail("%s", "a warp collective's mask names a lane that has exited");
        if (w[l].state != F_WARP) ready = 0;
        else if (w[l].wop != op || w[l].mask != mask)
            fail("%s", "lanes of one warp wait at different collectives (divergent __shfl/__syncwarp/mma)");
    }
    if (!(mask >> first & 1u)) fail("%s", "a lane calls a warp collective with a mask that excludes itself");
    if (!ready) return 0;
    if (op == W_MMA16_BF16 || op == W_MMA16_F16 || op == W_MMA8_F16) {
        if (nl != 32 || mask != 0xffffffffu) fail("%s", "mma.sync needs all 32 lanes of a full warp");
        mma_complete(w, op);
    } else if (op == W_LDMATRIX) {
        if (nl != 32 || mask != 0xffffffffu) fail("%s", "ldmatrix needs all 32 lanes of a full warp");
        ldmatrix_complete(w);
    } else if (op == W_SHFL) {
        uint64_t got[32];
        for (int l = 0; l < nl; l++) {
            if (!(mask >> l & 1u)) continue;
            const int wd = w[l].width, seg = l & ~(wd - 1);
            int s = w[l].xor_mode ? l ^ w[l].src : seg + (w[l].src & (wd - 1));
            if (w[l].xor_mode && s >= seg + wd) s = l; // xor beyond the segment: own value
            if (s >= nl || !(mask >> s & 1u)) fail("%s", "a shuffle reads a lane outside its mask");
            got[l] = w[s].bits;
        }
        for (int l = 0; l < nl; l++)
            if (mask >> l & 1u) w[l].bits = got[l];
    }
    for (int l = 0; l < nl; l++)
        if (mask >> l & 1u) w[l].state = F_RUN;
    return 1;
}

/* Release __syncthreads when every live thread waits at it; 1 when released. */
static int release_block() {
    int waiting = 0;
    for (int i = 0; i < S.n; i++) {
        if (S.f[i].state == F_RUN || S.f[i].state == F_WARP) return 0;
        waiting += S.f[i].state == F_BLOCK;
    }
    if (!waiting) return 0;
    for (int i = 0; i < S.n; i++)
        if (S.f[i].state == F_BLOCK) S.f[i].state = F_RUN;
    return 1;
}

/* Allocate fiber stacks for n threads (kept for later launches). */
static void fibers_reserve(int n) {
    if ((int)S.f.size() >= n) return;
    size_t old = S.f.size();
    S.f.resize((size_t)n);
    const size_t page = (size_t)sysconf(_SC_PAGESIZE);
    for (size_t i = old; i < (size_t)n; i++) {
        char *m = (char *)mmap(NULL, STACK_BYTES + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                               -1, 0);
        if (m == MAP_FAILED) fail("%s", "cannot map a fiber stack");
        mprotect(m, page, PROT_NONE); // stack overflow faults instead of corrupting a neighbour
        S.f[i].stack = m + page;
    }
}

/* Resume fiber i if it can run, until it blocks or ends; 1 when it ran. */
static int run_fiber(int i) {
    if (S.f[i].state != F_RUN) return 0;
    S.cur = &S.f[i];
    ctx_swap(&S.sched, &S.f[i].ctx);
    return 1;
}

/* Run one block to completion under the schedule CUDA_EMU_ORDER picks (all valid on a GPU):
 *   warps (default)  each warp in turn runs as far as it can (to a __syncthreads or its end)
 *                    before the next one starts, so warp 0 is always far ahead of warp 1;
 *   warps-reverse    the same from the last warp to the first;
 *   lockstep         every thread one step (to its next meeting point) per round, in order.
 * A kernel that lets one warp read shared memory another warp writes, without a barrier in
 * between, reads the wrong value under one of the three. */
static void run_block() {
    for (int i = 0; i < S.n; i++) {
        fiber_t *f = &S.f[i];
        ctx_start(f);
        f->state = F_RUN;
        f->cp_open.clear(); // copies a previous block never waited for are dropped, as its smem is
        f->cp_groups.clear();
        f->tid = make_uint3((unsigned)i % S.block.x, (unsigned)i / S.block.x % S.block.y,
                            (unsigned)i / (S.block.x * S.block.y));
    }
    if (!S.smem.empty() && device_cfg().poison) memset(S.smem_aligned, 0xff, S.smem.size() - 16);
    const int sched = device_cfg().order;
    const int nw = (S.n + 31) / 32;
    for (;;) {
        int ran = 0, rel = 0;
        if (sched == ORDER_LOCKSTEP) {
            for (int i = 0; i < S.n; i++) ran |= run_fiber(i);
            for (int w = 0; w < nw; w++) rel |= release_warp(w * 32);
        } else {
            for (int k = 0; k < nw; k++) {
                const int w = sched == ORDER_WARPS_REVERSE ? nw - 1 - k : k;
                for (;;) { // this warp as far as it goes: to __syncthreads, or its end
                    int r = 0;
                    for (int i = w * 32; i < S.n && i < w * 32 + 32; i++) r |= run_fiber(i);
                    ran |= r;
                    int rw = release_warp(w * 32);
                    rel |= rw;
                    if (!r && !rw) break;
                }
            }
        }
        int live = 0;
        for (int i = 0; i < S.n; i++) live += S.f[i].state != F_DONE;
        if (!live) break;
        rel |= release_block();
        if (!ran && !rel) {
            S.cur = NULL;
            fprintf(stderr, "cuda-emu: deadlock in kernel %s, block (%u,%u,%u):", S.name, S.bidx.x, S.bidx.y, S.bidx.z);
            for (int i = 0; i < S.n; i++)
                if (S.f[i].state != F_DONE)
                    fprintf(stderr, " t%d:%s", i, S.f[i].state == F_BLOCK ? "syncthreads" : "warp-collective");
            fprintf(stderr, "\n");
            abort();
        }
    }
}

void run_kernel(dim3 grid, dim3 block, size_t smem, const char *name, kernel_body *body) {
    install_segv_handler();
    S.grid = grid;
    S.block = block;
    S.name = name;
    S.body = body;
    S.n = (int)(block.x * block.y * block.z);
    fibers_reserve(S.n);
    S.smem.assign(smem ? smem + 16 : 0, 0);
    S.smem_aligned = smem ? (unsigned char *)(((uintptr_t)S.smem.data() + 15) & ~(uintptr_t)15) : NULL;
    S.smem_bytes = smem;
    S.in_kernel = 1;
    for (unsigned z = 0; z < grid.z; z++)
        for (unsigned y = 0; y < grid.y; y++)
            for (unsigned x = 0; x < grid.x; x++) {
                S.bidx = make_uint3(x, y, z);
                run_block();
            }
    S.in_kernel = 0;
    S.cur = NULL;
}

} // namespace emu
