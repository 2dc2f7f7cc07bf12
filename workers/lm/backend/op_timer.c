/* op_timer.c: the op-timing wrapper (op_timer_wrap in backend.h): an op table that calls the
 * backend's own ops and around each one either
 *   - queues two timestamps with the backend's mark hooks (OP_TIMER_TIME: CUDA events on the
 *     stream, the monotonic clock on the CPU), read back when forward.c calls sync(); or
 *   - waits for the backend and checks its errors (OP_TIMER_SYNC, LM_SYNC_EVERY_OP=1), so that an
 *     asynchronous CUDA failure is reported naming the op that caused it, timing the op by the
 *     host clock (its exact wall time: nothing else is in flight).
 * Totals are kept per op class (backend_ops_t member) with the FLOPs and bytes each call implies.
 *
 * Adding an op: one entry in OP_TIMER_OPS below (its name, parameters and arguments as in
 * backend_ops_t, and its FLOPs and bytes as expressions of the parameters, 0 when not counted),
 * as XR for an op that returns a value. Load-time ops (weight_concat, the
 * uploads) are not timed.
 * The wrapper, the class name and the installation all come from that entry; a backend that
 * leaves the op NULL keeps it NULL.
 *
 * It changes no result: every op is the backend's own, called with the same arguments in the same
 * order. It holds no printing (cli/cmd_bench.c prints the table) and no statistics beyond sums.
 * The wrapper's state is found from the backend pointer (a short list: one backend per process
 * in lm-worker), so it stays valid when another wrapper (weight_round.c) copies this table.
 */
#include "backend.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock_util.h"
#include "exit_codes.h"

/* ---------------------------------------------------------------------------------------------
 * What each op moves and computes
 * ------------------------------------------------------------------------------------------- */

/* Bytes of w as stored (its per-row scales included). */
static double w_bytes(const bweight_t *w) {
    return (double)w->rows * w->cols * (double)dtype_size(w->dtype) + (w->dtype == DT_I8 ? 4.0 * w->rows : 0.0);
}

/* Query-key pairs attention scores in bt: sum over sequences and queries of the visible keys
 * (causal, within `window` when > 0). */
static double attn_pairs(const bbatch_t *bt, int window) {
    double pairs = 0.0;
    for (int s = 0; s < bt->B; s++) {
        double n = bt->h_cu_seqlens[s + 1] - bt->h_cu_seqlens[s], w = window;
        pairs += window <= 0 || n <= w ? n * (n + 1) / 2 : w * (w + 1) / 2 + (n - w) * w;
    }
    return pairs;
}

/* One GEMM's bytes: W once, in (T, cols) and out (T, rows) of out_es bytes per element. */
static double gemm_bytes(const backend_t *b, const bweight_t *w, int T, double out_es) {
    return w_bytes(w) + (double)T * w->cols * (double)dtype_size(b->compute) + (double)T * w->rows * out_es;
}

#define ES(b) ((double)dtype_size((b)->compute)) // bytes of one ACT_WORK element

/* The timed ops: X(name, (parameters), (arguments), flops, bytes), one entry per backend_ops_t op,
 * parameters as in backend_ops_t (the backend named b), flops and bytes as expressions of them.
 * An op that returns a value is XR(name, return type, the value a skipped call returns,
 * (parameters), (arguments), flops, bytes), whose bytes may use the result, r_: matmul_residual
 * returns NULL when it added its product into x itself (reading x as well), else y.
 * Bytes are the least each op must move: every input read once, every output written once (the
 * "bytes each op moves" table of docs/architecture.md). To time a new op, add its entry here. */
#define OP_TIMER_OPS(X, XR)                                                                                           \
    X(embed, (backend_t *b, float *x, const bweight_t *emb, const bbatch_t *bt, int dim, float scale),                \
      (b, x, emb, bt, dim, scale), 0.0, (double)bt->T * dim * ((double)dtype_size(emb->dtype) + 4.0))                 \
    X(rmsnorm, (backend_t *b, void *out, const float *x, const float *w, int T, int dim, float eps, float offset),    \
      (b, out, x, w, T, dim, eps, offset), 0.0, (double)T * dim * (4.0 + ES(b)) + 4.0 * dim)                          \
    X(matmul, (backend_t *b, void *out, const void *in, const bweight_t *w, int T), (b, out, in, w, T),               \
      2.0 * T * w->rows * w->cols, gemm_bytes(b, w, T, ES(b)))                                                        \
    X(matmul_f32, (backend_t *b, float *out, const void *in, const bweight_t *w, int T), (b, out, in, w, T),          \
      2.0 * T * w->rows * w->cols, gemm_bytes(b, w, T, 4.0))                                                          \
    XR(matmul_residual, float *, y,                                                                                   \
       (backend_t *b, float *x, float *y, const void *in, const bweight_t *w, const float *post_w, int T),            \
       (b, x, y, in, w, post_w, T), 2.0 * T * w->rows * w->cols,                                                      \
       gemm_bytes(b, w, T, 4.0) + (r_ ? 0.0 : 4.0 * T * w->rows))                                                     \
    X(qkv_rope, (backend_t *b, void *q, void *k, void *v, const void *qkv, const bbatch_t *bt, int nh, int nkv,       \
                 int hd, const float *inv_freq),                                                                      \
      (b, q, k, v, qkv, bt, nh, nkv, hd, inv_freq), 0.0, 2.0 * bt->T * (nh + 2 * nkv) * hd * ES(b))                   \
    X(attention, (backend_t *b, void *out, const void *q, const void *k, const void *v, const bbatch_t *bt,           \
                  const attn_params_t *p),                                                                            \
      (b, out, q, k, v, bt, p), 4.0 * p->n_heads * p->head_dim * attn_pairs(bt, p->window),                           \
      (double)bt->T * (2 * p->n_heads + 2 * p->n_kv_heads) * p->head_dim * ES(b))                                     \
    X(gated_act, (backend_t *b, void *out, const void *gu, int T, int hidden, act_t act),                             \
      (b, out, gu, T, hidden, act),                                                                                   \
      0.0, 3.0 * T * hidden * ES(b))                                                                                  \
    X(residual_norm, (backend_t *b, float *x, void *xn, const float *y, const float *post_w, const float *next_w,     \
                      int T, int dim, float eps, float offset),                                                       \
      (b, x, xn, y, post_w, next_w, T, dim, eps, offset), 0.0,                                                        \
      (double)T * dim * (4.0 + (y ? 8.0 : 0.0) + (next_w ? ES(b) : 0.0)) + 4.0 * dim * (!!post_w + !!next_w))         \
    X(pool_score, (backend_t *b, float *logits_host, const float *x, const float *norm_w, float eps,                  \
                   float offset, const bweight_t *score, const bbatch_t *bt, int dim),                                \
      (b, logits_host, x, norm_w, eps, offset, score, bt, dim), 2.0 * bt->B * score->rows * score->cols,              \
      (double)bt->B * dim * 4.0 + w_bytes(score) + 4.0 * bt->B * score->rows)

#define X_ENUM(name, ...) OPC_##name,
enum { OP_TIMER_OPS(X_ENUM, X_ENUM) OPC_N };
#define X_NAME(name, ...) #name,
static const char *const opc_names[OPC_N] = {OP_TIMER_OPS(X_NAME, X_NAME)};

/* ---------------------------------------------------------------------------------------------
 * State
 * ------------------------------------------------------------------------------------------- */

/* One op call since the last sync(). */
typedef struct {
    int cls;             // OPC_*
    int m0, m1;          // the backend's marks before and after it (-1: none), when timed by marks
    double ms;           // its wall time, when timed by the host clock (OP_TIMER_SYNC)
    double flops, bytes; // what it computed and moved
} op_call_t;

typedef struct op_timer {
    backend_ops_t ops;           // the wrapping table b->ops points to
    const backend_ops_t *base;   // the table it wraps
    backend_t *b;                // the wrapped backend
    struct op_timer *next;       // the next wrapper of the process
    int flags;                   // OP_TIMER_TIME | OP_TIMER_SYNC
    op_call_t *calls;            // (n_calls) the ops since the last sync()
    int n_calls, cap_calls;      // entries used / allocated
    int n_ops;                   // ops since the last sync() (recorded or not)
    long batch_class_calls[OPC_N]; // calls of each class since the last sync(), for error messages
    double t_first, t_last;      // host clock at the first op's start / last op's end since sync()
    int failed;                  // OP_TIMER_SYNC: an op failed since the last sync()
    err_t err;                   // that failure, named
    op_stat_t stat[OPC_N];       // totals since op_timer_reset
    op_span_t span;              // their forwards
} op_timer_t;

static op_timer_t *g_timers; // every wrapper of the process

/* The wrapper of b, or NULL. O(wrappers): one in lm-worker. */
static op_timer_t *timer_find(const backend_t *b) {
    for (op_timer_t *t = g_timers; t; t = t->next)
        if (t->b == b) return t;
    return NULL;
}

/* The wrapper of b, which must exist. */
static op_timer_t *timer_of(const backend_t *b) {
    op_timer_t *t = timer_find(b);
    ASSERT(t != NULL);
    return t;
}

/* Start op `cls`: returns its call's index in t->calls (0 when calls are not recorded), or
 * -1 when an earlier op's failure is waiting for sync() (the op is then skipped: its inputs may be
 * garbage). */
static int op_begin(op_timer_t *t, backend_t *b, int cls) {
    if (t->failed) return -1;
    double now = (t->flags & OP_TIMER_SYNC) ? clock_mono_s() : 0.0;
    if (t->n_ops++ == 0) t->t_first = now;
    t->batch_class_calls[cls]++;
    if (!(t->flags & OP_TIMER_TIME)) return 0;
    if (t->n_calls == t->cap_calls) {
        t->cap_calls = t->cap_calls ? 2 * t->cap_calls : 1024;
        t->calls = xrealloc(t->calls, (size_t)t->cap_calls * sizeof *t->calls);
    }
    op_call_t *c = &t->calls[t->n_calls];
    *c = (op_call_t){.cls = cls, .m0 = -1, .m1 = -1, .ms = now}; // ms holds the start until op_end
    if (!(t->flags & OP_TIMER_SYNC)) c->m0 = t->base->mark(b);
    return t->n_calls++;
}

/* End op `cls`, started as call i (op_begin's value): wait and check (OP_TIMER_SYNC) or mark its
 * end, and record its flops and bytes. */
static void op_end(op_timer_t *t, backend_t *b, int i, int cls, double flops, double bytes) {
    op_call_t *c = (t->flags & OP_TIMER_TIME) ? &t->calls[i] : NULL;
    if (t->flags & OP_TIMER_SYNC) {
        err_t e = {0};
        if (t->base->sync(b, &e)) {
            t->failed = 1;
            t->err = e;
            err_prefix(&t->err, "LM_SYNC_EVERY_OP: op %d of this batch (%s, call %ld of it) failed", t->n_ops,
                       opc_names[cls], t->batch_class_calls[cls]);
        }
        t->t_last = clock_mono_s();
        if (c) c->ms = (t->t_last - c->ms) * 1e3;
    } else if (c) {
        c->m1 = t->base->mark(b);
    }
    if (c) c->flops = flops, c->bytes = bytes;
}

/* The wrappers: the backend's op between op_begin and op_end. */
#define X_WRAP(name, params, args, flops, bytes)                                    \
    static void timed_##name params {                                               \
        op_timer_t *t_ = timer_of(b);                                               \
        int i_ = op_begin(t_, b, OPC_##name);                                       \
        if (i_ < 0) return;                                                         \
        t_->base->name args;                                                        \
        op_end(t_, b, i_, OPC_##name, (flops), (bytes));                            \
    }
#define XR_WRAP(name, ret, skipped, params, args, flops, bytes)                     \
    static ret timed_##name params {                                                \
        op_timer_t *t_ = timer_of(b);                                               \
        int i_ = op_begin(t_, b, OPC_##name);                                       \
        if (i_ < 0) return skipped;                                                 \
        ret r_ = t_->base->name args;                                               \
        op_end(t_, b, i_, OPC_##name, (flops), (bytes));                            \
        return r_;                                                                  \
    }
OP_TIMER_OPS(X_WRAP, XR_WRAP)

/* Fold the calls since the last sync into the totals (after a successful sync) and forget them. */
static void timer_collect(op_timer_t *t, backend_t *b, int ok) {
    if (ok && t->n_calls > 0 && (t->flags & OP_TIMER_TIME)) {
        int wall = (t->flags & OP_TIMER_SYNC) != 0;
        for (int i = 0; i < t->n_calls; i++) {
            const op_call_t *c = &t->calls[i];
            op_stat_t *s = &t->stat[c->cls];
            s->calls++;
            s->ms += wall ? c->ms : c->m0 >= 0 && c->m1 >= 0 ? t->base->mark_ms(b, c->m0, c->m1) : 0.0;
            s->flops += c->flops;
            s->bytes += c->bytes;
        }
        const op_call_t *first = &t->calls[0], *last = &t->calls[t->n_calls - 1];
        t->span.ms += wall ? (t->t_last - t->t_first) * 1e3
                           : first->m0 >= 0 && last->m1 >= 0 ? t->base->mark_ms(b, first->m0, last->m1) : 0.0;
        t->span.forwards++;
        t->span.wall = wall;
    }
    t->n_calls = 0;
    t->n_ops = 0;
    memset(t->batch_class_calls, 0, sizeof t->batch_class_calls);
    if (t->base->marks_reset) t->base->marks_reset(b);
}

/* backend_ops_t.sync: the backend's, then the first failure an op reported (OP_TIMER_SYNC), then
 * the timed calls folded into the totals. */
static int timed_sync(backend_t *b, err_t *err) {
    op_timer_t *t = timer_of(b);
    err_t e = {0};
    int rc = t->base->sync(b, &e);
    if (t->failed) {
        e = t->err; // the first failure, named by its op
        t->failed = 0;
        rc = -1;
    }
    if (rc && err) *err = e;
    timer_collect(t, b, rc == 0);
    return rc;
}

/* backend_ops_t.destroy: forget the wrapper, then destroy the backend with its own table. */
static void timed_destroy(backend_t *b) {
    if (!b) return;
    op_timer_t *t = timer_of(b), **pp = &g_timers;
    while (*pp != t) pp = &(*pp)->next;
    *pp = t->next;
    const backend_ops_t *base = t->base;
    free(t->calls);
    free(t);
    b->ops = base;
    base->destroy(b);
}

/* ---------------------------------------------------------------------------------------------
 * Public
 * ------------------------------------------------------------------------------------------- */

int op_timer_wrap(backend_t *b, int flags, err_t *err) {
    ASSERT(flags != 0 && (flags & ~(OP_TIMER_TIME | OP_TIMER_SYNC)) == 0);
    op_timer_t *t = timer_find(b);
    const backend_ops_t *base = t ? t->base : b->ops;
    if ((flags & OP_TIMER_TIME) && !(flags & OP_TIMER_SYNC) && !((t ? t->flags : 0) & OP_TIMER_SYNC) &&
        (!base->mark || !base->mark_ms))
        return err_code(err, EXIT_USAGE, "the %s backend cannot time its ops", base->name);
    if (t) {
        t->flags |= flags;
        return 0;
    }
    t = xcalloc(1, sizeof *t);
    t->base = base;
    t->b = b;
    t->flags = flags;
    t->ops = *base;
#define X_INSTALL(name, ...) \
    if (base->name) t->ops.name = timed_##name;
    OP_TIMER_OPS(X_INSTALL, X_INSTALL)
    t->ops.sync = timed_sync;
    t->ops.destroy = timed_destroy;
    t->next = g_timers;
    g_timers = t;
    b->ops = &t->ops;
    return 0;
}

int op_timer_stats(backend_t *b, op_stat_t *out, int cap, op_span_t *span) {
    op_timer_t *t = timer_of(b);
    ASSERT(t->flags & OP_TIMER_TIME);
    int n = 0;
    for (int c = 0; c < OPC_N && n < cap; c++) {
        if (!t->stat[c].calls) continue;
        out[n] = t->stat[c];
        out[n++].name = opc_names[c];
    }
    *span = t->span;
    return n;
}

void op_timer_reset(backend_t *b) {
    op_timer_t *t = timer_of(b);
    memset(t->stat, 0, sizeof t->stat);
    memset(&t->span, 0, sizeof t->span);
}
