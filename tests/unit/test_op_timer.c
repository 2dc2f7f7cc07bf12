/* test_op_timer.c: backend/op_timer.c (`lm-worker bench --ops`, LM_SYNC_EVERY_OP) over a fake
 * backend whose ops only log their calls and whose clock is the mark count, so that every total
 * is known exactly: op i of a forward occupies marks 2i and 2i+1, so each call lasts 1 ms, a
 * forward of N ops spans 2N-1 ms and N-1 ms lie between ops. The fake's sync can fail the way an
 * asynchronous CUDA error does: reported by the first sync after the op that caused it.
 * The real backends are exercised by tests/integration/lm_worker_bench_ops.sh.
 */
#include "tinytest.h"

#include "backend/backend.h"
#include "exit_codes.h"

typedef struct {
    char log[512];     // the names of the ops called, space-separated
    const char *fail;  // the op whose call makes the next sync fail (like an async CUDA error)
    int pending;       // a failure waits for sync
    int marks;         // marks since marks_reset
    int destroyed;     // destroy calls
} fake_t;

static fake_t *fk(backend_t *b) { return b->impl; }

/* Log op `name`; arm the failure when it is the failing op. */
static void called(backend_t *b, const char *name) {
    fake_t *f = fk(b);
    strncat(f->log, name, sizeof f->log - strlen(f->log) - 2);
    strcat(f->log, " ");
    if (f->fail && !strcmp(f->fail, name)) f->pending = 1;
}

static void f_embed(backend_t *b, float *x, const bweight_t *e, const bbatch_t *bt, int dim, float s) {
    (void)x, (void)e, (void)bt, (void)dim, (void)s;
    called(b, "embed");
}
static void f_rmsnorm(backend_t *b, void *o, const float *x, const float *w, int T, int d, float e, float off) {
    (void)o, (void)x, (void)w, (void)T, (void)d, (void)e, (void)off;
    called(b, "rmsnorm");
}
static void f_matmul(backend_t *b, void *o, const void *in, const bweight_t *w, int T) {
    (void)o, (void)in, (void)w, (void)T;
    called(b, "matmul");
}
static void f_qkv_rope(backend_t *b, void *q, void *k, void *v, const void *qkv, const bbatch_t *bt, int nh, int nkv,
                       int hd, const float *f) {
    (void)q, (void)k, (void)v, (void)qkv, (void)bt, (void)nh, (void)nkv, (void)hd, (void)f;
    called(b, "qkv_rope");
}
/* Like the backends: NULL (added into x itself) without a post-norm, else y for residual_norm. */
static float *f_mres(backend_t *b, float *x, float *y, const void *in, const bweight_t *w, const float *post_w, int T) {
    (void)x, (void)in, (void)w, (void)T;
    called(b, "matmul_residual");
    return post_w ? y : NULL;
}
static void f_pool(backend_t *b, float *l, const float *x, const float *w, float e, float off, const bweight_t *s,
                   const bbatch_t *bt, int dim) {
    (void)l, (void)x, (void)w, (void)e, (void)off, (void)s, (void)bt, (void)dim;
    called(b, "pool_score");
}
static int f_sync(backend_t *b, err_t *err) {
    if (!fk(b)->pending) return 0;
    fk(b)->pending = 0;
    return err_code(err, EXIT_SOFTWARE, "fake: an illegal memory access was encountered");
}
static int f_mark(backend_t *b) { return fk(b)->marks++; }
static double f_mark_ms(backend_t *b, int i, int j) {
    EXPECT(i >= 0 && j >= i && j < fk(b)->marks);
    return j - i;
}
static void f_marks_reset(backend_t *b) { fk(b)->marks = 0; }
static void f_destroy(backend_t *b) { fk(b)->destroyed++; }

/* A fake backend over f (its ops table static; mark hooks only when with_marks). */
static backend_t make_fake(fake_t *f, int with_marks) {
    static backend_ops_t ops, ops_nomarks;
    ops = (backend_ops_t){.name = "fake", .embed = f_embed, .rmsnorm = f_rmsnorm, .matmul = f_matmul,
                          .qkv_rope = f_qkv_rope, .matmul_residual = f_mres, .pool_score = f_pool,
                          .sync = f_sync, .destroy = f_destroy,
                          .mark = f_mark, .mark_ms = f_mark_ms, .marks_reset = f_marks_reset};
    ops_nomarks = ops;
    ops_nomarks.mark = NULL, ops_nomarks.mark_ms = NULL, ops_nomarks.marks_reset = NULL;
    memset(f, 0, sizeof *f);
    return (backend_t){.ops = with_marks ? &ops : &ops_nomarks, .compute = DT_BF16, .impl = f};
}

static int32_t cu[3] = {0, 3, 8};
static bbatch_t batch = {.B = 2, .T = 8, .max_len = 5, .h_cu_seqlens = cu};
static bweight_t wq = {.rows = 6, .cols = 4, .dtype = DT_BF16}, wv = {.rows = 2, .cols = 4, .dtype = DT_BF16};

/* One "forward" of 7 ops through b's table, then sync. Returns sync's value. */
static int forward(backend_t *b, err_t *err) {
    const backend_ops_t *op = b->ops;
    op->embed(b, NULL, &wq, &batch, 4, 1.0f);
    for (int l = 0; l < 2; l++) {
        op->rmsnorm(b, NULL, NULL, NULL, batch.T, 4, 1e-5f, 0.0f);
        op->matmul(b, NULL, NULL, l ? &wv : &wq, batch.T);
        if (l == 1) op->qkv_rope(b, NULL, NULL, NULL, NULL, &batch, 2, 1, 2, NULL);
    }
    op->pool_score(b, NULL, NULL, NULL, 1e-5f, 0.0f, &wv, &batch, 4);
    return op->sync(b, err);
}

/* Find class name in st[0..n), or NULL. */
static const op_stat_t *stat_of(const op_stat_t *st, int n, const char *name) {
    for (int i = 0; i < n; i++)
        if (!strcmp(st[i].name, name)) return &st[i];
    return NULL;
}

TEST(totals_per_class_from_marks) {
    fake_t f;
    backend_t b = make_fake(&f, 1);
    err_t err = {0};
    EXPECT(op_timer_wrap(&b, OP_TIMER_TIME, &err) == 0);
    EXPECT(b.ops->gated_act == NULL); // the fake has none: the wrapper adds none
    EXPECT(forward(&b, &err) == 0 && forward(&b, &err) == 0);
    EXPECT_STR_CONTAINS(f.log, "embed rmsnorm matmul rmsnorm matmul qkv_rope pool_score embed");
    op_stat_t st[16];
    op_span_t sp;
    int n = op_timer_stats(&b, st, 16, &sp);
    EXPECT(n == 5); // embed rmsnorm matmul qkv_rope pool_score, in backend_ops_t's order
    EXPECT(n == 5 && !strcmp(st[0].name, "embed") && !strcmp(st[2].name, "matmul") &&
           !strcmp(st[4].name, "pool_score"));
    EXPECT(sp.forwards == 2 && sp.wall == 0);
    EXPECT_NEAR(sp.ms, 2 * (2 * 7 - 1), 0, 0); // 7 ops a forward, each 1 ms, marks back to back
    const op_stat_t *mm = stat_of(st, n, "matmul"), *rn = stat_of(st, n, "rmsnorm"), *ro = stat_of(st, n, "qkv_rope");
    EXPECT(mm && mm->calls == 4 && mm->ms == 4.0);
    EXPECT(rn && rn->calls == 4 && rn->ms == 4.0 && ro && ro->calls == 2);
    /* 2 T rows cols per GEMM: (6x4 + 2x4) per forward */
    EXPECT(mm && mm->flops == 2.0 * (2.0 * 8 * (6 * 4 + 2 * 4)));
    /* bf16 weights (2 B), in (T, cols) bf16, out (T, rows) bf16 */
    EXPECT(mm && mm->bytes == 2.0 * ((6 * 4 + 2 * 4) * 2.0 + 2 * 8 * 4 * 2.0 + 8 * (6 + 2) * 2.0));
    /* qkv_rope: q (2 heads), k and v (1 head each) of head_dim 2, read and written */
    EXPECT(ro && ro->bytes == 2.0 * (2.0 * 8 * 4 * 2 * 2));
    op_timer_reset(&b);
    EXPECT(op_timer_stats(&b, st, 16, &sp) == 0 && sp.forwards == 0 && sp.ms == 0.0);
    b.ops->destroy(&b);
    EXPECT(f.destroyed == 1);
}

TEST(sync_every_op_names_the_failing_op) {
    fake_t f;
    backend_t b = make_fake(&f, 1);
    err_t err = {0};
    f.fail = "matmul"; // the first matmul's failure surfaces only at the next sync
    EXPECT(forward(&b, &err) == -1);
    EXPECT(strstr(err.msg, "matmul") == NULL); // unwrapped: the op is not named
    EXPECT(op_timer_wrap(&b, OP_TIMER_SYNC, &err) == 0);
    f.log[0] = 0;
    memset(&err, 0, sizeof err);
    EXPECT(forward(&b, &err) == -1);
    EXPECT_STR_CONTAINS(err.msg, "op 3 of this batch (matmul, call 1 of it)");
    EXPECT_STR_CONTAINS(err.msg, "illegal memory access");
    EXPECT(err.code == EXIT_SOFTWARE);
    EXPECT_MSG(!strcmp(f.log, "embed rmsnorm matmul "), "ops after the failing one ran: %s", f.log);
    f.fail = "qkv_rope";
    f.log[0] = 0;
    EXPECT(forward(&b, &err) == -1); // a fresh batch runs again; this time rope fails
    EXPECT_STR_CONTAINS(err.msg, "op 6 of this batch (qkv_rope, call 1 of it)");
    f.fail = NULL;
    EXPECT(forward(&b, &err) == 0);
    b.ops->destroy(&b);
    EXPECT(f.destroyed == 1);
}

TEST(timing_needs_marks_unless_synced) {
    fake_t f;
    backend_t b = make_fake(&f, 0);
    err_t err = {0};
    EXPECT(op_timer_wrap(&b, OP_TIMER_TIME, &err) == -1 && err.code == EXIT_USAGE);
    EXPECT_STR_CONTAINS(err.msg, "the fake backend cannot time its ops");
    EXPECT(op_timer_wrap(&b, OP_TIMER_SYNC, &err) == 0);
    EXPECT(op_timer_wrap(&b, OP_TIMER_TIME, &err) == 0); // synced: the host clock times the ops
    EXPECT(forward(&b, &err) == 0);
    op_stat_t st[16];
    op_span_t sp;
    int n = op_timer_stats(&b, st, 16, &sp);
    double sum = 0.0;
    for (int i = 0; i < n; i++) sum += st[i].ms;
    EXPECT(n == 5 && sp.forwards == 1 && sp.wall == 1);
    EXPECT(sum >= 0.0 && sp.ms >= sum); // wall times: the ops lie inside the forward's span
    b.ops->destroy(&b);
    EXPECT(f.destroyed == 1);
}

TEST(value_returning_ops_pass_their_result) {
    fake_t f;
    backend_t b = make_fake(&f, 1);
    err_t err = {0};
    float x[1], y[1], post[1];
    EXPECT(op_timer_wrap(&b, OP_TIMER_TIME, &err) == 0);
    EXPECT(b.ops->matmul_residual(&b, x, y, NULL, &wq, NULL, batch.T) == NULL);
    EXPECT(b.ops->matmul_residual(&b, x, y, NULL, &wq, post, batch.T) == y);
    EXPECT(b.ops->sync(&b, &err) == 0);
    op_stat_t st[16];
    op_span_t sp;
    int n = op_timer_stats(&b, st, 16, &sp);
    const op_stat_t *mr = stat_of(st, n, "matmul_residual");
    EXPECT(n == 1 && mr && mr->calls == 2 && mr->flops == 2 * (2.0 * 8 * 6 * 4));
    /* bf16 W and in, fp32 out; the call that added into x also read it */
    double one = 6 * 4 * 2.0 + 8 * 4 * 2.0 + 8 * 6 * 4.0;
    EXPECT(mr && mr->bytes == 2 * one + 8 * 6 * 4.0);
    b.ops->destroy(&b);
    EXPECT(f.destroyed == 1);
}

TEST_MAIN(totals_per_class_from_marks, value_returning_ops_pass_their_result, sync_every_op_names_the_failing_op,
          timing_needs_marks_unless_synced)
