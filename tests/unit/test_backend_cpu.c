/* test_backend_cpu.c: each CPU op against a naive double-precision reference written straight
 * from backend.h's contract, on random inputs and a packed batch of unequal sequences.
 *
 * The CPU ops are the reference the CUDA kernels are tested against, so they must themselves be
 * right: varlen boundaries, GQA head mapping, sliding window edges, softcap, rotate_half rope,
 * norm offset, post-norm residual, both activations, pooling rows. The op results must also not
 * depend on the number of threads.
 */
#include "backend_cpu.h"
#ifdef LM_HAVE_OPENBLAS
#include <cblas.h>
#endif
#include "tinytest.h"

static uint64_t rng = 88172645463325252ull;
static float frand(void) { // xorshift, uniform in [-1, 1)
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((rng >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f;
}
static float *rand_vec(size_t n, float scale) {
    float *v = malloc(n * sizeof(float) + 1);
    for (size_t i = 0; i < n; i++) v[i] = frand() * scale;
    return v;
}

/* Three sequences of lengths 5, 1 and 23 packed into T = 29 rows; pooled rows are the last. */
enum { B = 3, T = 29 };
static int32_t lens[B] = {5, 1, 23}, cu[B + 1], pos[T], toks[T], last[B];
static bbatch_t make_batch(int vocab) {
    int at = 0;
    for (int b = 0; b < B; b++) {
        cu[b] = at;
        for (int i = 0; i < lens[b]; i++) {
            pos[at + i] = i;
            toks[at + i] = (int32_t)((at + i) * 7 % vocab);
        }
        at += lens[b];
        last[b] = at - 1;
    }
    cu[B] = at;
    bbatch_t bt = {.B = B, .T = T, .max_len = 23, .tokens = toks, .pos = pos, .cu_seqlens = cu, .last = last,
                   .h_cu_seqlens = cu};
    return bt;
}

static double max_rel(const float *a, const double *ref, size_t n) {
    double w = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs(a[i] - ref[i]) / (1 + fabs(ref[i]));
        if (d > w) w = d;
    }
    return w;
}

/* Naive attention: full masked score matrix per (sequence, head), in double. */
static void attention_ref(double *out, const float *q, const float *k, const float *v, const attn_params_t *p) {
    int hd = p->head_dim, nh = p->n_heads, nkv = p->n_kv_heads;
    for (int b = 0; b < B; b++)
        for (int h = 0; h < nh; h++) {
            int g = h / (nh / nkv), n = lens[b], s0 = cu[b];
            for (int i = 0; i < n; i++) {
                double sc[64], mx = -INFINITY, sum = 0;
                for (int j = 0; j < n; j++) {
                    int visible = j <= i && (p->window == 0 || i - j < p->window);
                    if (!visible) {
                        sc[j] = -INFINITY;
                        continue;
                    }
                    double d = 0;
                    for (int x = 0; x < hd; x++)
                        d += (double)q[((size_t)(s0 + i) * nh + h) * hd + x] * k[((size_t)(s0 + j) * nkv + g) * hd + x];
                    d *= p->scale;
                    if (p->softcap > 0) d = p->softcap * tanh(d / p->softcap);
                    sc[j] = d;
                    if (d > mx) mx = d;
                }
                for (int j = 0; j < n; j++) sum += sc[j] == -INFINITY ? 0 : exp(sc[j] - mx);
                for (int x = 0; x < hd; x++) {
                    double o = 0;
                    for (int j = 0; j < n; j++)
                        if (sc[j] != -INFINITY) o += exp(sc[j] - mx) / sum * v[((size_t)(s0 + j) * nkv + g) * hd + x];
                    out[((size_t)(s0 + i) * nh + h) * hd + x] = o;
                }
            }
        }
}

TEST(attention_matches_naive_reference) {
    err_t err = {0};
    backend_t *b1 = backend_cpu_create(1, &err), *b3 = backend_cpu_create(3, &err);
    bbatch_t bt = make_batch(50);
    int nh = 4, nkv = 2, hd = 12;
    float *q = rand_vec((size_t)T * nh * hd, 2), *k = rand_vec((size_t)T * nh * hd, 2), *v = rand_vec((size_t)T * nh * hd, 1);
    float *o1 = calloc((size_t)T * nh * hd, sizeof(float)), *o3 = calloc((size_t)T * nh * hd, sizeof(float));
    double *ref = calloc((size_t)T * nh * hd, sizeof(double));
    /* k and v are sized for n_heads kv heads so the multi-head case fits too */
    attn_params_t cases[] = {
        {nh, nkv, hd, 0.3f, 0.0f, 0},  // plain causal
        {nh, nkv, hd, 0.3f, 2.0f, 0},  // softcap that bites
        {nh, nkv, hd, 0.3f, 0.0f, 4},  // sliding window shorter than the long sequence
        {nh, nkv, hd, 0.3f, 5.0f, 1},  // window 1: each token sees only itself
        {nh, nh, hd, 0.3f, 0.0f, 0},   // multi-head (no GQA)
    };
    for (int plain = 0; plain <= 1; plain++) { // sgemv products (when built in), then plain loops
        cpu_set_plain(b1, plain);
        cpu_set_plain(b3, plain);
        for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
            attn_params_t p = cases[c];
            size_t n = (size_t)T * nh * hd;
            attention_ref(ref, q, k, v, &p);
            cpu_attention(b1, o1, q, k, v, &bt, &p);
            cpu_attention(b3, o3, q, k, v, &bt, &p);
            EXPECT_MSG(max_rel(o1, ref, n) < 1e-5, "plain %d case %zu: %.3g", plain, c, max_rel(o1, ref, n));
            EXPECT_MSG(memcmp(o1, o3, n * sizeof(float)) == 0, "plain %d case %zu: threads change the result", plain, c);
        }
    }
    EXPECT(b1->ops->sync(b1, &err) == 0 && b3->ops->sync(b3, &err) == 0);
    free(q), free(k), free(v), free(o1), free(o3), free(ref);
    b1->ops->destroy(b1);
    b3->ops->destroy(b3);
}

TEST(rope_is_rotate_half) {
    err_t err = {0};
    backend_t *be = backend_cpu_create(2, &err);
    bbatch_t bt = make_batch(50);
    int nh = 3, nkv = 1, hd = 8, half = hd / 2;
    float inv[4] = {1.0f, 0.1f, 0.01f, 0.001f};
    /* one fused q|k|v row per token, as the stacked GEMM writes it */
    size_t qd = (size_t)nh * hd, kvd = (size_t)nkv * hd, w = qd + 2 * kvd;
    float *qkv = rand_vec((size_t)T * w, 1);
    float *q = malloc((size_t)T * qd * sizeof(float)), *k = malloc((size_t)T * kvd * sizeof(float));
    float *v = malloc((size_t)T * kvd * sizeof(float));
    float *q0 = malloc((size_t)T * qd * sizeof(float)), *k0 = malloc((size_t)T * kvd * sizeof(float));
    for (int t = 0; t < T; t++) {
        memcpy(q0 + t * qd, qkv + t * w, qd * sizeof(float));
        memcpy(k0 + t * kvd, qkv + t * w + qd, kvd * sizeof(float));
    }
    cpu_qkv_rope(be, q, k, v, qkv, &bt, nh, nkv, hd, inv);
    for (int t = 0; t < T; t++) EXPECT(memcmp(v + t * kvd, qkv + t * w + qd + kvd, kvd * sizeof(float)) == 0);
    double worst = 0;
    for (int t = 0; t < T; t++)
        for (int h = 0; h < nh + nkv; h++) {
            const float *x0 = h < nh ? q0 + ((size_t)t * nh + h) * hd : k0 + ((size_t)t * nkv + h - nh) * hd;
            const float *x = h < nh ? q + ((size_t)t * nh + h) * hd : k + ((size_t)t * nkv + h - nh) * hd;
            for (int i = 0; i < half; i++) {
                double a = (double)pos[t] * inv[i];
                double r1 = x0[i] * cos(a) - x0[i + half] * sin(a), r2 = x0[i + half] * cos(a) + x0[i] * sin(a);
                worst = fmax(worst, fmax(fabs(x[i] - r1), fabs(x[i + half] - r2)));
            }
        }
    EXPECT_MSG(worst < 1e-5, "rope error %.3g", worst);
    /* position 0 is the identity */
    EXPECT(memcmp(q, q0, (size_t)nh * hd * sizeof(float)) == 0);
    free(q), free(k), free(v), free(qkv), free(q0), free(k0);
    be->ops->destroy(be);
}

TEST(norms_activations_embed_pool_matmul) {
    err_t err = {0};
    backend_t *be = backend_cpu_create(2, &err);
    bbatch_t bt = make_batch(50);
    int dim = 20, hidden = 9, vocab = 50, nl = 3;
    float *x = rand_vec((size_t)T * dim, 3), *w = rand_vec(dim, 0.5f), *out = calloc((size_t)T * dim, sizeof(float));
    double *ref = calloc((size_t)T * (dim > hidden ? dim : hidden), sizeof(double));
    for (int off = 0; off <= 1; off++) {
        cpu_rmsnorm(be, out, x, w, T, dim, 1e-5f, (float)off);
        for (int t = 0; t < T; t++) {
            double ss = 0;
            for (int i = 0; i < dim; i++) ss += (double)x[t * dim + i] * x[t * dim + i];
            for (int i = 0; i < dim; i++) ref[t * dim + i] = x[t * dim + i] / sqrt(ss / dim + 1e-5) * (off + w[i]);
        }
        EXPECT(max_rel(out, ref, (size_t)T * dim) < 1e-6);
    }
    /* residual_norm: plain, and with a post-norm (Gemma-2); then the next norm fused */
    float *y = rand_vec((size_t)T * dim, 0.01f), *xr = malloc((size_t)T * dim * sizeof(float));
    memcpy(xr, x, (size_t)T * dim * sizeof(float));
    cpu_residual_norm(be, xr, NULL, y, NULL, NULL, T, dim, 1e-6f, 1.0f);
    for (int i = 0; i < T * dim; i++) ref[i] = (double)x[i] + y[i];
    EXPECT(max_rel(xr, ref, (size_t)T * dim) < 1e-6);
    memcpy(xr, x, (size_t)T * dim * sizeof(float));
    cpu_residual_norm(be, xr, out, y, w, w, T, dim, 1e-6f, 1.0f);
    for (int t = 0; t < T; t++) {
        double ss = 0;
        for (int i = 0; i < dim; i++) ss += (double)y[t * dim + i] * y[t * dim + i];
        for (int i = 0; i < dim; i++)
            ref[t * dim + i] = x[t * dim + i] + y[t * dim + i] / sqrt(ss / dim + 1e-6) * (1.0 + w[i]);
    }
    EXPECT(max_rel(xr, ref, (size_t)T * dim) < 1e-5);
    for (int t = 0; t < T; t++) { // out = rmsnorm(new x) * (1 + w)
        double ss = 0;
        for (int i = 0; i < dim; i++) ss += ref[t * dim + i] * ref[t * dim + i];
        for (int i = 0; i < dim; i++) ref[t * dim + i] = ref[t * dim + i] / sqrt(ss / dim + 1e-6) * (1.0 + w[i]);
    }
    EXPECT(max_rel(out, ref, (size_t)T * dim) < 1e-5);
    /* gated activations over gate|up rows */
    float *g = rand_vec((size_t)T * 2 * hidden, 4), *h = calloc((size_t)T * hidden, 4);
    for (int a = 0; a < 2; a++) {
        cpu_gated_act(be, h, g, T, hidden, a ? ACT_GELU_TANH : ACT_SILU);
        for (int i = 0; i < T * hidden; i++) {
            double z = g[(i / hidden) * 2 * hidden + i % hidden], u = g[(i / hidden) * 2 * hidden + hidden + i % hidden];
            double act = a ? 0.5 * z * (1 + tanh(sqrt(2 / M_PI) * (z + 0.044715 * z * z * z))) : z / (1 + exp(-z));
            ref[i] = act * u;
        }
        EXPECT(max_rel(h, ref, (size_t)T * hidden) < 1e-6);
    }
    /* weight_concat: parts stacked by rows, then freed */
    {
        float a[6] = {1, 2, 3, 4, 5, 6}, c[3] = {7, 8, 9};
        bweight_t parts[2], cat;
        EXPECT(be->ops->weight_upload(be, &parts[0], a, DT_F32, 2, 3, "a") == 0 &&
               be->ops->weight_upload(be, &parts[1], c, DT_F32, 1, 3, "c") == 0);
        EXPECT(be->ops->weight_concat(be, &cat, parts, 2) == 0);
        EXPECT(cat.rows == 3 && cat.cols == 3 && parts[0].data == NULL && parts[1].data == NULL);
        for (int i = 0; i < 9; i++) EXPECT(((float *)cat.data)[i] == (float)(i + 1));
        be->ops->weight_free(be, &cat);
    }
    /* embed with scale */
    float *emb = rand_vec((size_t)vocab * dim, 1);
    bweight_t we = cpu_weight_wrap(emb, vocab, dim);
    cpu_embed(be, out, &we, &bt, dim, 2.5f);
    int ok = 1;
    for (int t = 0; t < T; t++)
        for (int i = 0; i < dim; i++) ok &= out[t * dim + i] == emb[toks[t] * dim + i] * 2.5f;
    EXPECT(ok);
    /* pool_score reads row last[b], normalises, projects */
    float *score = rand_vec((size_t)nl * dim, 1), logits[B * 3];
    bweight_t ws = cpu_weight_wrap(score, nl, dim);
    cpu_pool_score(be, logits, x, w, 1e-6f, 1.0f, &ws, &bt, dim);
    for (int b = 0; b < B; b++) {
        const float *r = x + (size_t)last[b] * dim;
        double ss = 0;
        for (int i = 0; i < dim; i++) ss += (double)r[i] * r[i];
        for (int l = 0; l < nl; l++) {
            double s = 0;
            for (int i = 0; i < dim; i++) s += r[i] / sqrt(ss / dim + 1e-6) * (1.0 + w[i]) * score[l * dim + i];
            EXPECT_NEAR(logits[b * nl + l], s, 1e-5, 1e-5);
        }
    }
    /* matmul: sgemm (when built in) and the plain-C loop agree with the naive product */
    float *W = rand_vec((size_t)hidden * dim, 1), *mm = calloc((size_t)T * hidden, 4);
    bweight_t wm = cpu_weight_wrap(W, hidden, dim);
    for (int t = 0; t < T; t++)
        for (int r = 0; r < hidden; r++) {
            double s = 0;
            for (int i = 0; i < dim; i++) s += (double)x[t * dim + i] * W[r * dim + i];
            ref[t * hidden + r] = s;
        }
    for (int plain = 0; plain <= 1; plain++) {
        cpu_set_plain(be, plain);
        cpu_matmul(be, mm, x, &wm, T);
        EXPECT_MSG(max_rel(mm, ref, (size_t)T * hidden) < 1e-5, "plain=%d", plain);
    }
    EXPECT(be->ops->sync(be, &err) == 0);
    free(x), free(w), free(out), free(ref), free(y), free(xr), free(g), free(h), free(emb), free(score);
    free(W), free(mm);
    be->ops->destroy(be);
}

TEST(memory_ops_and_errors) {
    err_t err = {0};
    EXPECT(backend_cpu_create(-1, &err) == NULL);
    EXPECT_STR_CONTAINS(err.msg, "threads");
    backend_t *be = backend_cpu_create(0, &err);
    EXPECT(be && be->threads >= 1 && be->compute == DT_F32 && strcmp(be->ops->name, "cpu") == 0);
    float host[6] = {1, 2, 3, 4, 5, 6}, back[6];
    bweight_t w;
    EXPECT(be->ops->weight_upload(be, &w, host, DT_F32, 2, 3, "w") == 0 && w.rows == 2 && w.cols == 3 && w.dtype == DT_F32);
    float *v = be->ops->vec_upload(be, host, 6);
    be->ops->to_host(be, back, v, 6);
    EXPECT(memcmp(back, host, sizeof host) == 0 && be->peak_bytes >= 48);
    be->ops->mem_free(be, v);
    be->ops->weight_free(be, &w);
    /* an impossible allocation is recorded and reported by sync as out of memory */
    EXPECT(be->ops->act_alloc(be, SIZE_MAX / 2, ACT_WORK) == NULL);
    EXPECT(be->ops->sync(be, &err) == -1 && err.code == 75);
    EXPECT(be->ops->sync(be, &err) == 0);
    be->ops->destroy(be);
}

/* More --threads than OpenBLAS was built for (MAX_THREADS in its config string; plan.md allows
 * 4096): OpenBLAS gets at most its maximum (more segfaults some builds), the pool gets them all,
 * and a matmul still gives the plain loops' answer. */
TEST(threads_beyond_openblas_max) {
    err_t err = {0};
    int want = 200;
    backend_t *be = backend_cpu_create(want, &err);
    EXPECT(be && be->threads == want);
    int blas = cpu_blas_threads(be);
#ifdef LM_HAVE_OPENBLAS
    const char *cfg = openblas_get_config(), *p = cfg ? strstr(cfg, "MAX_THREADS=") : NULL;
    int max = p ? atoi(p + strlen("MAX_THREADS=")) : openblas_get_num_procs();
    EXPECT(blas >= 1 && blas <= max && blas <= want);
    EXPECT(openblas_get_num_threads() <= max);
#else
    EXPECT(blas == 0);
#endif
    float a[2 * 3] = {1, 2, 3, 4, 5, 6}, wm[2 * 3] = {1, 0, 1, 0, 1, 0}, out[4];
    bweight_t w = cpu_weight_wrap(wm, 2, 3);
    cpu_matmul(be, out, a, &w, 2);
    EXPECT(out[0] == 4 && out[1] == 2 && out[2] == 10 && out[3] == 5);
    be->ops->destroy(be);
}

/* weight_upload of raw checkpoint bytes (bf16, fp16; at an odd address, as in a safetensors
 * mapping) widens them exactly on the pool, over more than one pool piece; a NaN fails the upload
 * with EXIT_DATAERR naming the tensor, row and column. */
TEST(weight_upload_raw_bytes) {
    err_t err = {0};
    backend_t *be = backend_cpu_create(2, &err);
    ASSERT(be != NULL);
    int rows = 1100, cols = 1000; // 1.1M elements: two pool pieces of 2^20
    size_t n = (size_t)rows * cols;
    unsigned char *buf = malloc(2 * n + 3), *raw = buf + 1;
    float *back = malloc(n * sizeof(float));
    for (int f16 = 0; f16 < 2; f16++) {
        for (size_t i = 0; i < n; i++) {
            /* bf16 i % 509 - 254 has the bits of the fp32 value's top half; fp16 the same small
             * integers: sign, exponent 15 + e, 10 mantissa bits */
            float v = (float)(i % 509) - 254.0f;
            uint16_t h;
            if (!f16) {
                uint32_t u;
                memcpy(&u, &v, 4);
                h = (uint16_t)(u >> 16);
            } else {
                float a = fabsf(v);
                int e;
                float m = frexpf(a, &e);
                h = a == 0.0f ? 0 : (uint16_t)(((e + 14) << 10) | ((uint16_t)ldexpf(m, 11) & 0x3ffu));
                if (v < 0) h |= 0x8000u;
            }
            raw[2 * i] = (unsigned char)h, raw[2 * i + 1] = (unsigned char)(h >> 8);
        }
        bweight_t w;
        EXPECT(be->ops->weight_upload(be, &w, raw, f16 ? DT_F16 : DT_BF16, rows, cols, "t") == 0);
        memcpy(back, w.data, n * sizeof(float));
        size_t bad = 0;
        while (bad < n && back[bad] == (float)(bad % 509) - 254.0f) bad++;
        EXPECT_MSG(bad == n, "%s: element %zu is %g", f16 ? "fp16" : "bf16", bad, bad < n ? back[bad] : 0.0);
        be->ops->weight_free(be, &w);
    }
    raw[2 * ((size_t)1050 * cols + 3) + 1] = 0x7f, raw[2 * ((size_t)1050 * cols + 3)] = 0xc0; // bf16 NaN
    bweight_t w;
    EXPECT(be->ops->weight_upload(be, &w, raw, DT_BF16, rows, cols, "model.x.weight") == -1);
    EXPECT(be->ops->sync(be, &err) == -1);
    EXPECT(err.code == 65);
    EXPECT_STR_CONTAINS(err.msg, "tensor 'model.x.weight': row 1050, column 3 is nan: not finite");
    be->ops->destroy(be);
    free(buf), free(back);
}

TEST_MAIN(attention_matches_naive_reference, rope_is_rotate_half, norms_activations_embed_pool_matmul,
          memory_ops_and_errors, threads_beyond_openblas_max, weight_upload_raw_bytes)
