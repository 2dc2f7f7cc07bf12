/* device.c: --device / --dtype / --quant / --threads -> an open backend (see device.h), wrapped by
 * op_timer.c when LM_SYNC_EVERY_OP is set (docs/lm-worker.md). */
#include "device.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "exit_codes.h"

/* Parse --dtype. Returns 0 and sets *dt (DT_F32 for "auto" with *is_auto = 1), or -1. */
static int dtype_parse(const char *s, dtype_t *dt, int *is_auto) {
    *is_auto = !s || strcmp(s, "auto") == 0;
    *dt = DT_F32;
    if (*is_auto) return 0;
    for (dtype_t d = DT_F32; d <= DT_F16; d++) {  // int8 is --quant's business, not a --dtype
        if (strcmp(s, dtype_name(d)) != 0) continue;
        *dt = d;
        return 0;
    }
    return -1;
}

/* CUDA with dtype auto: bf16 where the device has it (sm_80+), else fp16. */
static backend_t *cuda_open(dtype_t dt, int is_auto, int quant_int8, err_t *err) {
    if (!is_auto) return backend_cuda_create(dt, quant_int8, err);
    backend_t *b = backend_cuda_create(DT_BF16, quant_int8, err);
    if (b) return b;
    err_t err16 = {0};
    b = backend_cuda_create(DT_F16, quant_int8, &err16);
    return b; // on failure err keeps the bf16 attempt's reason, the more informative one
}

/* device_open without LM_SYNC_EVERY_OP. */
static backend_t *open_backend(const char *device, const char *dtype, int quant_int8, int threads, err_t *err) {
    dtype_t dt;
    int is_auto;
    if (!device) device = "auto";
    if (dtype_parse(dtype, &dt, &is_auto)) {
        err_code(err, EXIT_USAGE, "--dtype %s: expected one of " DEVICE_DTYPE_CHOICES, dtype);
        return NULL;
    }
    if (threads < 0) {
        err_code(err, EXIT_USAGE, "--threads %d: expected 0 (all cores) or more", threads);
        return NULL;
    }
    if (strcmp(device, "cpu") == 0) {
        if (dt != DT_F32 || quant_int8) {
            err_code(err, EXIT_USAGE,
                     "--device cpu computes in fp32 only: use --dtype auto or fp32, without --quant int8");
            return NULL;
        }
        return backend_cpu_create(threads, err);
    }
    if (strcmp(device, "cuda") == 0) {
        backend_t *b = cuda_open(dt, is_auto, quant_int8, err);
        if (!b) err_prefix(err, "--device cuda");
        return b;
    }
    if (strcmp(device, "auto") != 0) {
        err_code(err, EXIT_USAGE, "--device %s: expected one of " DEVICE_CHOICES, device);
        return NULL;
    }
    err_t cuda_err = {0};
    backend_t *b = cuda_open(dt, is_auto, quant_int8, &cuda_err);
    if (b) return b;
    fprintf(stderr, "note: --device auto: CUDA not usable: %s; running on the CPU in fp32%s\n", cuda_err.msg,
            (!is_auto && dt != DT_F32) || quant_int8 ? ", ignoring --dtype/--quant" : "");
    return backend_cpu_create(threads, err);
}

backend_t *device_open(const char *device, const char *dtype, int quant_int8, int threads, err_t *err) {
    backend_t *b = open_backend(device, dtype, quant_int8, threads, err);
    const char *every = getenv("LM_SYNC_EVERY_OP");
    if (b && every && *every && strcmp(every, "0") != 0) {
        if (op_timer_wrap(b, OP_TIMER_SYNC, err)) { // cannot fail for OP_TIMER_SYNC alone
            b->ops->destroy(b);
            return NULL;
        }
        fprintf(stderr, "note: LM_SYNC_EVERY_OP=%s: waiting for the %s backend and checking errors after every op\n",
                every, b->ops->name);
    }
    return b;
}
