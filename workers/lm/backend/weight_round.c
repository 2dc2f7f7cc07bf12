/* weight_round.c: the weight-rounding CPU backend (weight_round_wrap in backend.h): the CPU op
 * table with weight_upload replaced by one that rounds (or int8-quantises) a copy of the host
 * matrix first, then hands it to the CPU's own upload, and sync replaced by one that also reports
 * a matrix that could not be quantised. It holds no op of its own.
 */
#include "backend.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "exit_codes.h"
#include "quant.h"
#include "weight_raw.h"

enum { ROUND_BF16 = 1, ROUND_F16, ROUND_INT8 };

static backend_ops_t g_ops;     // the CPU table with weight_upload replaced
static const backend_ops_t *g_base; // the CPU backend's own table
static int g_mode;              // ROUND_*
static err_t g_err;             // the first upload that failed (msg empty: none)

float round_bf16(float x) {
    if (!isfinite(x)) return x;
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    u = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
    memcpy(&x, &u, sizeof x);
    return x;
}

float round_f16(float x) {
    if (!isfinite(x) || x == 0.0f) return x;
    float a = fabsf(x);
    int e;
    (void)frexpf(a, &e);          // a = m * 2^e with m in [0.5, 1)
    int q = e - 11;                 // fp16 keeps 11 significant bits ...
    if (q < -24) q = -24;           // ... down to its subnormal step 2^-24
    float r = ldexpf(rintf(ldexpf(a, -q)), q); // exact scaling; rintf rounds ties to even
    if (r > 65504.0f) r = INFINITY; // past fp16's largest finite value: a cast overflows too
    return copysignf(r, x);
}

/* backend_ops_t.weight_upload: widen host to fp32, round it per g_mode, then the CPU upload. A
 * non-finite element is left to the quantiser (which names the row) or to the CPU upload. */
static int round_upload(backend_t *b, bweight_t *w, const void *host, dtype_t src, int rows, int cols,
                        const char *name) {
    size_t n = (size_t)rows * cols;
    float *tmp = xmalloc(n * sizeof *tmp);
    (void)raw_to_f32(tmp, host, src, n);
    if (g_mode == ROUND_INT8 && rows >= QUANT_MIN_ROWS) {
        int8_t *q = xmalloc(n);
        float *scales = xmalloc((size_t)rows * sizeof *scales);
        err_t err = {0};
        int bad = quant_int8_rows(q, scales, tmp, rows, cols, &err);
        if (!bad) quant_dequant_rows(tmp, q, scales, rows, cols);
        free(q), free(scales);
        if (bad) {
            free(tmp);
            if (!g_err.msg[0]) err_code(&g_err, EXIT_DATAERR, "--round-weights int8: tensor '%s': %s", name, err.msg);
            return -1;
        }
    } else {
        for (size_t i = 0; i < n; i++) {
            float r = g_mode == ROUND_BF16 ? round_bf16(tmp[i]) : g_mode == ROUND_F16 ? round_f16(tmp[i]) : tmp[i];
            if (isinf(r) && !isinf(tmp[i])) { // refused as the fp16 GPU upload refuses it
                if (!g_err.msg[0])
                    err_code(&g_err, EXIT_DATAERR,
                             "--round-weights fp16: tensor '%s': row %zu, column %zu holds %g, beyond fp16's range",
                             name, i / (size_t)cols, i % (size_t)cols, (double)tmp[i]);
                free(tmp);
                return -1;
            }
            tmp[i] = r;
        }
    }
    int rc = g_base->weight_upload(b, w, tmp, DT_F32, rows, cols, name);
    free(tmp);
    return rc;
}

/* backend_ops_t.sync: the CPU's, then the first failed upload's reason, if any. */
static int round_sync(backend_t *b, err_t *err) {
    if (g_base->sync(b, err)) return -1;
    if (!g_err.msg[0]) return 0;
    if (err) *err = g_err;
    return -1;
}

int weight_round_wrap(backend_t *b, const char *mode, err_t *err) {
    int m = !strcmp(mode, "bf16")   ? ROUND_BF16
            : !strcmp(mode, "fp16") ? ROUND_F16
            : !strcmp(mode, "int8") ? ROUND_INT8
                                    : 0;
    if (!m) return err_code(err, EXIT_USAGE, "--round-weights '%s': expected bf16, fp16 or int8", mode);
    if (strcmp(b->ops->name, "cpu")) return err_code(err, EXIT_USAGE, "--round-weights needs --device cpu");
    ASSERT(g_base == NULL); // once per process
    g_base = b->ops;
    g_ops = *b->ops;
    g_ops.weight_upload = round_upload;
    g_ops.sync = round_sync;
    g_mode = m;
    b->ops = &g_ops;
    return 0;
}
